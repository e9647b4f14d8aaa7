/* test_refcount.c - biased reference counting: owner and non-owner paths,
 * merge queues (owner at a safepoint, owner blocked, owner detaching),
 * immortal and deferred objects, local roots, misuse that must abort. */
#include "ft_config.h"
#include "obj_types.h" /* before ft_test.h: it needs <stdbool.h> */
#include "ft_test.h"

#include "object/object.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

static void init_runtime(void)
{
    ft_config cfg;
    ft_config_default(&cfg);
    cfg.gc_enabled = false; /* no collection behind the tests' backs */
    /* Some tests keep a thread attached without polling (to hold a queue
     * entry), which would starve the others of the GIL. */
    cfg.mode = FT_MODE_FREE_THREADED;
    assert_int_equal(ft_init(&cfg), 0);
}

static int32_t shared_of(void *o)
{
    return atomic_load_explicit(&((ft_object *)o)->ob_ref_shared, memory_order_relaxed);
}

static uint32_t local_of(void *o)
{
    return atomic_load_explicit(&((ft_object *)o)->ob_ref_local, memory_order_relaxed);
}

static uint32_t owner_of(void *o)
{
    return atomic_load_explicit(&((ft_object *)o)->ob_owner, memory_order_relaxed);
}

/* ---- owner path ---------------------------------------------------------- */

static void test_owner_path(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    test_node *n = test_node_new(&test_node_type, NULL, 1);
    assert_non_null(n);
    assert_int_equal(owner_of(n), ft_thread_index());
    assert_int_equal(ft_refcount(n), 1);
    for (int i = 0; i < 5; i++)
        ft_incref(n);
    assert_int_equal(local_of(n), 6);
    assert_int_equal(shared_of(n), 0); /* the owner never touches the shared word */
    assert_int_equal(ft_refcount(n), 6);
    for (int i = 0; i < 5; i++)
        ft_decref(n);
    assert_int_equal(ft_refcount(n), 1);
    assert_int_equal(test_node_deallocs_get(), before);
    ft_decref(n);
    assert_int_equal(test_node_deallocs_get(), before + 1);
    ft_fini();
}

/* ---- non-owner path, merged at the owner's safepoint -------------------- */

typedef struct shared_ctx {
    void *obj;
    _Atomic int step;
    sem_t sem;
    long observed;
} shared_ctx;

typedef struct nonowner_seen {
    int32_t shared_after_incref;
    intptr_t refcount_after_incref;
    int32_t state_after_queue;
} nonowner_seen;

static nonowner_seen seen;

static void *nonowner_thread(void *arg)
{
    shared_ctx *c = arg;
    while (atomic_load(&c->step) != 1)
        ft_safepoint(); /* until the owner is back from ft_thread_start, attached */
    ft_incref(c->obj); /* shared path */
    seen.shared_after_incref = shared_of(c->obj);
    seen.refcount_after_incref = ft_refcount(c->obj);
    ft_decref(c->obj); /* back to a zero shared count */
    ft_decref(c->obj); /* the reference the owner handed us: below zero -> queued */
    seen.state_after_queue = shared_of(c->obj) & FT_SHARED_MASK;
    atomic_store(&c->step, 2);
    return NULL;
}

static void test_nonowner_path_and_safepoint_merge(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    static shared_ctx c;
    atomic_store(&c.step, 0);
    c.obj = test_node_new(&test_node_type, NULL, 2);
    ft_incref(c.obj); /* one reference for the other thread */
    pthread_t t;
    assert_int_equal(ft_thread_start(&t, nonowner_thread, &c), 0);
    atomic_store(&c.step, 1);
    /* Attached and not polling: the other thread cannot merge for us (we
     * are not in a blocking region) and we do not merge before it looked. */
    while (atomic_load(&c.step) != 2) {
    }
    assert_int_equal(seen.shared_after_incref, 1 << FT_SHARED_SHIFT);
    assert_int_equal(seen.refcount_after_incref, 3);
    assert_int_equal(seen.state_after_queue, FT_SHARED_QUEUED);
    assert_int_equal(ft_refcount(c.obj), 1);
    ft_safepoint(); /* FT_PENDING_BRC: our own safepoint merges the queue */
    assert_int_equal(shared_of(c.obj) & FT_SHARED_MASK, FT_SHARED_MERGED);
    assert_int_equal(owner_of(c.obj), 0);
    assert_int_equal(local_of(c.obj), 0);
    assert_int_equal(ft_refcount(c.obj), 1);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_int_equal(test_node_deallocs_get(), before);
    ft_decref(c.obj); /* now unowned: the shared path frees it */
    assert_int_equal(test_node_deallocs_get(), before + 1);
    ft_fini();
}

/* ---- owner blocked: the queuing thread merges on its behalf -------------- */

static void *release_while_owner_blocked(void *arg)
{
    shared_ctx *c = arg;
    while (atomic_load(&c->step) == 0)
        ft_safepoint();
    long before = test_node_deallocs_get();
    ft_decref(c->obj); /* the only reference; the owner sleeps in a blocking region */
    c->observed = test_node_deallocs_get() - before;
    sem_post(&c->sem);
    return NULL;
}

static void test_blocked_owner_does_not_hold_garbage(void **state)
{
    (void)state;
    init_runtime();
    shared_ctx c = { .obj = test_node_new(&test_node_type, NULL, 3) };
    sem_init(&c.sem, 0, 0);
    pthread_t t;
    assert_int_equal(ft_thread_start(&t, release_while_owner_blocked, &c), 0);
    ft_blocking_begin();
    atomic_store(&c.step, 1); /* our reference now belongs to the other thread */
    while (sem_wait(&c.sem) != 0) {
    }
    ft_blocking_end();
    assert_int_equal(c.observed, 1); /* freed before we woke up */
    assert_int_equal(ft_thread_join(t, NULL), 0);
    sem_destroy(&c.sem);
    ft_fini();
}

/* ---- owner detaches with queued objects and references held elsewhere --- */

#define DETACH_N 1000

typedef struct detach_ctx {
    test_node *objs[DETACH_N];
    _Atomic int step;
} detach_ctx;

static void *owner_that_leaves(void *arg)
{
    detach_ctx *c = arg;
    for (int i = 0; i < DETACH_N; i++) {
        c->objs[i] = test_node_new(i % 2 ? &test_gc_node_type : &test_node_type, NULL, (uint32_t)i);
        ft_incref(c->objs[i]); /* one for the main thread */
    }
    atomic_store(&c->step, 1);
    /* Attached, no safepoint: what main queues stays queued. */
    while (atomic_load(&c->step) != 2) {
    }
    for (int i = 0; i < DETACH_N; i++)
        ft_decref(c->objs[i]); /* our own references: local 2 -> 1 */
    return NULL; /* detach: drain the queue, merge what we still own */
}

static void test_owner_detach_merges(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    static detach_ctx c;
    atomic_store(&c.step, 0);
    pthread_t t;
    assert_int_equal(ft_thread_start(&t, owner_that_leaves, &c), 0);
    while (atomic_load(&c.step) != 1)
        ft_safepoint();
    for (int i = 0; i < DETACH_N / 2; i++) {
        ft_decref(c.objs[i]);
        assert_int_equal(shared_of(c.objs[i]) & FT_SHARED_MASK, FT_SHARED_QUEUED);
    }
    atomic_store(&c.step, 2);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    /* the queued half died at the owner's detach; the rest is unowned */
    assert_int_equal(test_node_deallocs_get() - before, DETACH_N / 2);
    for (int i = DETACH_N / 2; i < DETACH_N; i++) {
        assert_int_equal(owner_of(c.objs[i]), 0);
        assert_int_equal(shared_of(c.objs[i]), (1 << FT_SHARED_SHIFT) | FT_SHARED_MERGED);
        assert_int_equal(ft_refcount(c.objs[i]), 1);
        ft_decref(c.objs[i]);
    }
    assert_int_equal(test_node_deallocs_get() - before, DETACH_N);
    ft_fini();
}

/* ---- many threads exchanging references ------------------------------------ */

#define EXCHANGE_THREADS 4
#define EXCHANGE_OBJS 64

typedef struct exchange_ctx {
    test_node *objs[EXCHANGE_OBJS];
    _Atomic int ready;
    int rounds;
} exchange_ctx;

static void *exchange_thread(void *arg)
{
    exchange_ctx *c = arg;
    atomic_fetch_add(&c->ready, 1);
    while (atomic_load(&c->ready) < EXCHANGE_THREADS)
        ft_safepoint();
    for (int r = 0; r < c->rounds; r++) {
        for (int i = 0; i < EXCHANGE_OBJS; i++)
            ft_incref(c->objs[i]);
        ft_safepoint();
        for (int i = 0; i < EXCHANGE_OBJS; i++)
            ft_decref(c->objs[i]);
    }
    return NULL;
}

static void test_concurrent_counts_balance(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    static exchange_ctx c;
    atomic_store(&c.ready, 0);
    c.rounds = FT_CFG_TSAN ? 300 : 3000;
    for (int i = 0; i < EXCHANGE_OBJS; i++)
        c.objs[i] = test_node_new(&test_node_type, NULL, (uint32_t)i);
    pthread_t t[EXCHANGE_THREADS];
    for (int i = 0; i < EXCHANGE_THREADS; i++)
        assert_int_equal(ft_thread_start(&t[i], exchange_thread, &c), 0);
    for (int i = 0; i < EXCHANGE_THREADS; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    ft_safepoint();
    for (int i = 0; i < EXCHANGE_OBJS; i++)
        assert_int_equal(ft_refcount(c.objs[i]), 1);
    assert_int_equal(test_node_deallocs_get(), before);
    for (int i = 0; i < EXCHANGE_OBJS; i++)
        ft_decref(c.objs[i]);
    assert_int_equal(test_node_deallocs_get() - before, EXCHANGE_OBJS);
    ft_fini();
}

/* ---- immortal objects --------------------------------------------------------- */

typedef struct immortal_ctx {
    void *obj;
    _Atomic int ready;
    _Atomic int try_failures;
    int iterations;
} immortal_ctx;

static void *hammer_immortal(void *arg)
{
    immortal_ctx *c = arg;
    atomic_fetch_add(&c->ready, 1);
    while (atomic_load(&c->ready) < 4)
        ft_safepoint();
    for (int i = 0; i < c->iterations; i++) {
        ft_incref(c->obj);
        ft_incref(c->obj);
        if (!ft_try_incref(c->obj))
            atomic_fetch_add(&c->try_failures, 1); /* checked by the main thread */
        ft_decref(c->obj);
        ft_decref(c->obj);
        ft_decref(c->obj);
        ft_decref(c->obj); /* more decrefs than increfs: still nothing happens */
        if ((i & 1023) == 0)
            ft_safepoint();
    }
    return NULL;
}

static void test_immortal_untouched(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    static immortal_ctx c;
    atomic_store(&c.ready, 0);
    atomic_store(&c.try_failures, 0);
    c.iterations = FT_CFG_TSAN ? 20000 : 500000;
    c.obj = test_node_new(&test_gc_node_type, NULL, 4);
    ft_set_immortal(c.obj);
    assert_true(ft_is_immortal(c.obj));
    unsigned char header[sizeof(ft_object)];
    memcpy(header, c.obj, sizeof header);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(ft_thread_start(&t[i], hammer_immortal, &c), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    assert_memory_equal(header, c.obj, sizeof header);
    assert_int_equal(atomic_load(&c.try_failures), 0);
    assert_true(ft_refcount(c.obj) > (intptr_t)1 << 40);
    assert_int_equal(test_node_deallocs_get(), before);
    ft_fini();
}

/* ---- deferred objects and local roots ------------------------------------------ */

typedef struct deferred_ctx {
    void *obj;
    intptr_t seen_before, seen_inside;
} deferred_ctx;

static void *use_deferred_through_roots(void *arg)
{
    deferred_ctx *c = arg;
    void *slots[2] = { NULL, NULL };
    ft_roots_frame frame;
    c->seen_before = ft_refcount(c->obj);
    ft_roots_push(&frame, slots, 2);
    slots[0] = c->obj; /* deferred: held without a count */
    ft_safepoint();
    c->seen_inside = ft_refcount(c->obj);
    ft_incref(slots[0]); /* an ordinary counted reference on top */
    ft_decref(slots[0]);
    ft_roots_pop(&frame);
    return NULL;
}

static void test_deferred_not_counted_never_freed_by_rc(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    deferred_ctx c = { .obj = test_node_new(&test_gc_node_type, NULL, 5) };
    ft_set_deferred(c.obj);
    ft_set_deferred(c.obj); /* idempotent */
    assert_true(ft_is_deferred(c.obj));
    assert_int_equal(ft_refcount(c.obj), 1);

    void *slots[1] = { c.obj };
    ft_roots_frame frame;
    ft_roots_push(&frame, slots, 1);
    assert_int_equal(ft_refcount(c.obj), 1);
    pthread_t t;
    assert_int_equal(ft_thread_start(&t, use_deferred_through_roots, &c), 0);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_int_equal(c.seen_before, 1);
    assert_int_equal(c.seen_inside, 1);

    ft_decref(c.obj); /* our counted reference: the count is 0, yet it lives */
    assert_int_equal(ft_refcount(c.obj), 0);
    assert_int_equal(test_node_deallocs_get(), before);
    ft_incref(c.obj); /* still usable: refcounting never freed it */
    ft_decref(c.obj);
    assert_int_equal(test_node_deallocs_get(), before);
    ft_roots_pop(&frame);

    /* What the collector does once it finds it unreachable: undefer, and
     * ordinary counting frees it. */
    fti_object_undefer((ft_object *)c.obj);
    assert_int_equal(test_node_deallocs_get(), before + 1);
    ft_fini();
}

/* ---- the collector's view: merging with the world stopped ------------------- */

static void *queue_then_park(void *arg)
{
    shared_ctx *c = arg;
    while (atomic_load(&c->step) != 1)
        ft_safepoint();
    ft_decref(c->obj); /* queued to the main thread, which does not poll */
    atomic_store(&c->step, 2);
    while (atomic_load(&c->step) != 3)
        ft_safepoint(); /* parks here while the world is stopped */
    return NULL;
}

static void test_merge_all_stopped_frees_nothing(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    static shared_ctx c;
    atomic_store(&c.step, 0);
    c.obj = test_node_new(&test_node_type, NULL, 9); /* its only reference goes to the thread */
    test_node *deferred = test_node_new(&test_gc_node_type, NULL, 10);
    ft_set_deferred(deferred);
    pthread_t t;
    assert_int_equal(ft_thread_start(&t, queue_then_park, &c), 0);
    atomic_store(&c.step, 1);
    while (atomic_load(&c.step) != 2) {
        /* attached, not polling: the entry stays in our queue */
    }
    assert_int_equal(shared_of(c.obj) & FT_SHARED_MASK, FT_SHARED_QUEUED);
    ft_stop_the_world();
    fti_brc_merge_all_stopped();
    /* merged, and its count is zero, but nothing is freed while stopped */
    assert_int_equal(shared_of(c.obj) & FT_SHARED_MASK, FT_SHARED_MERGED);
    assert_int_equal(test_node_deallocs_get(), before);
    /* the collector un-defers an unreachable deferred object while stopped */
    fti_object_undefer((ft_object *)deferred);
    assert_false(ft_is_deferred(deferred));
    assert_int_equal(ft_refcount(deferred), 1);
    assert_int_equal(fti_object_total_refcount((ft_object *)deferred), 1);
    assert_int_equal(test_node_deallocs_get(), before);
    ft_start_the_world();
    ft_safepoint(); /* our own queue: the re-queued decrement frees it now */
    assert_int_equal(test_node_deallocs_get(), before + 1);
    ft_decref(deferred); /* ordinary counting from now on */
    assert_int_equal(test_node_deallocs_get(), before + 2);
    atomic_store(&c.step, 3);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    ft_fini();
}

/* ---- misuse ------------------------------------------------------------------- */

static void misuse_deferred_below_zero(void *arg)
{
    (void)arg;
    init_runtime();
    void *o = test_node_new(&test_node_type, NULL, 6);
    ft_set_deferred(o);
    ft_decref(o);
    ft_decref(o); /* one decref too many */
}

static void *queue_two_decrefs(void *arg)
{
    shared_ctx *c = arg;
    while (atomic_load(&c->step) != 1)
        ft_safepoint(); /* until the owner is back from ft_thread_start, attached */
    ft_decref(c->obj);
    ft_decref(c->obj);
    atomic_store(&c->step, 2);
    return NULL;
}

static void misuse_merge_below_zero(void *arg)
{
    (void)arg;
    init_runtime();
    static shared_ctx c;
    c.obj = test_node_new(&test_node_type, NULL, 7);
    pthread_t t;
    ft_thread_start(&t, queue_two_decrefs, &c); /* two decrefs of a count of 1 */
    atomic_store(&c.step, 1);
    while (atomic_load(&c.step) != 2) {
        /* attached, no safepoint: both decrefs stay queued */
    }
    ft_safepoint(); /* the merge finds a total of -1 */
    fti_brc_merge_self();
}

static void misuse_incref_freed(void *arg)
{
    (void)arg;
    init_runtime();
    void *o = test_node_new(&test_node_type, NULL, 8);
    ft_decref(o); /* freed at once; mem keeps the dead header until reuse */
    ft_incref(o);
}

static void *call_ft_new(void *arg)
{
    (void)arg;
    (void)ft_new(&test_pair_type);
    return NULL;
}

static void misuse_unattached_new(void *arg)
{
    (void)arg;
    init_runtime();
    pthread_t t;
    pthread_create(&t, NULL, call_ft_new, NULL);
    pthread_join(t, NULL);
}

static void misuse_roots_pop(void *arg)
{
    (void)arg;
    init_runtime();
    void *a[1] = { NULL }, *b[1] = { NULL };
    ft_roots_frame outer, inner;
    ft_roots_push(&outer, a, 1);
    ft_roots_push(&inner, b, 1);
    ft_roots_pop(&outer);
}

/* ---- fork: objects of an owner that did not follow the child ------------ */

enum { ORPHANS = 64 };

typedef struct orphan_ctx {
    void *objs[ORPHANS];
    sem_t made, quit;
} orphan_ctx;

static void *orphan_owner(void *arg)
{
    orphan_ctx *c = arg;
    for (int i = 0; i < ORPHANS; i++)
        c->objs[i] = test_node_new(&test_node_type, NULL, (uint32_t)i); /* our only reference: given away */
    sem_post(&c->made);
    FT_BLOCKING(sem_wait(&c->quit));
    return NULL;
}

/* In the child the owner thread does not exist (a zombie index): dropping
 * its objects queues them to an owner that can never merge, so the dropper
 * must merge them on its behalf and free them. */
static void test_fork_child_drops_vanished_owners_objects(void **state)
{
    (void)state;
    init_runtime();
    static orphan_ctx c;
    sem_init(&c.made, 0, 0);
    sem_init(&c.quit, 0, 0);
    pthread_t t;
    assert_int_equal(ft_thread_start(&t, orphan_owner, &c), 0);
    FT_BLOCKING(sem_wait(&c.made));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long before = test_node_deallocs_get();
        for (int i = 0; i < ORPHANS; i++)
            ft_decref(c.objs[i]);
        ft_safepoint();
        _exit(test_node_deallocs_get() - before == ORPHANS ? 0 : 1);
    }
    int status = 0;
    FT_BLOCKING(waitpid(pid, &status, 0));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    sem_post(&c.quit);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    long before = test_node_deallocs_get();
    for (int i = 0; i < ORPHANS; i++)
        ft_decref(c.objs[i]); /* unowned since the owner detached */
    assert_int_equal(test_node_deallocs_get() - before, ORPHANS);
    sem_destroy(&c.made);
    sem_destroy(&c.quit);
    ft_fini();
}

static void test_misuse_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(misuse_deferred_below_zero, NULL,
                                    "ft_decref: refcount of test_node object"));
    assert_true(ft_test_aborts_with(misuse_deferred_below_zero, NULL, "below zero"));
    assert_true(ft_test_aborts_with(misuse_merge_below_zero, NULL,
                                    "ft_decref: refcount of test_node object"));
    if (FT_CFG_DEBUG_LEVEL >= 1)
        assert_true(ft_test_aborts_with(misuse_incref_freed, NULL, "ft_incref: use of freed object"));
    assert_true(ft_test_aborts_with(misuse_unattached_new, NULL,
                                    "ft_new: calling thread is not attached (test_pair object"));
    assert_true(ft_test_aborts_with(misuse_roots_pop, NULL, "ft_roots_pop: frame"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_path),
        cmocka_unit_test(test_nonowner_path_and_safepoint_merge),
        cmocka_unit_test(test_blocked_owner_does_not_hold_garbage),
        cmocka_unit_test(test_owner_detach_merges),
        cmocka_unit_test(test_concurrent_counts_balance),
        cmocka_unit_test(test_immortal_untouched),
        cmocka_unit_test(test_deferred_not_counted_never_freed_by_rc),
        cmocka_unit_test(test_merge_all_stopped_frees_nothing),
        cmocka_unit_test(test_fork_child_drops_vanished_owners_objects),
        cmocka_unit_test(test_misuse_aborts),
    };
    if (getenv("FT_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("FT_TEST_FILTER")); /* run one test by name */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
