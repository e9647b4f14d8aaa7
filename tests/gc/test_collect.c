/* test_collect.c - the collector on small, hand-built graphs: cycles,
 * self-references, local roots, finalizers, resurrection, uncollectable
 * objects, generations, re-entrancy, bad traverse functions, and collection
 * while other threads sit in blocking regions. */
#include "gc_nodes.h"

#include "gc/gc.h"
#include "object/object.h"

#include <pthread.h>

static uint8_t gc_bits_of(const void *o)
{
    return atomic_load_explicit(&((ft_object *)o)->ob_gc_bits, memory_order_relaxed);
}

static void test_two_node_cycle(void **state)
{
    node *a = node_new(), *b = node_new();
    uint32_t ida = a->id, idb = b->id;

    (void)state;
    node_set(a, 0, b);
    node_set(b, 0, a);
    ft_decref(a);
    ft_decref(b);
    assert_true(atomic_load(&node_alive[ida]) && atomic_load(&node_alive[idb]));
    assert_int_equal(ft_gc_collect(2), 2);
    ft_safepoint();
    assert_false(atomic_load(&node_alive[ida]));
    assert_false(atomic_load(&node_alive[idb]));
}

static void test_self_reference(void **state)
{
    node *a = node_new();
    uint32_t id = a->id;

    (void)state;
    node_set(a, 1, a);
    ft_decref(a);
    assert_true(atomic_load(&node_alive[id]));
    assert_int_equal(ft_gc_collect(-1), 1);
    assert_false(atomic_load(&node_alive[id]));
}

static void test_reachable_cycle_kept(void **state)
{
    node *holder = node_new();
    node *a = node_new(), *b = node_new();

    (void)state;
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(holder, 0, a);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 0);
    assert_int_equal(a->magic, NODE_MAGIC);
    assert_int_equal(b->magic, NODE_MAGIC);
    assert_int_equal(ft_refcount(a), 2);
    ft_decref(holder); /* frees holder by refcount; a and b become garbage */
    assert_int_equal(ft_gc_collect(2), 2);
}

/* A deferred object in a local root is alive even though the root holds no
 * count; with the frame popped it is collectable like any other. */
static void test_local_root_deferred(void **state)
{
    void *slots[1] = { NULL };
    ft_roots_frame frame;
    node *a = node_new(), *b = node_new();
    uint32_t ida = a->id;

    (void)state;
    ft_set_deferred(a);
    ft_roots_push(&frame, slots, 1);
    slots[0] = a;
    node_set(a, 0, b);
    node_set(b, 0, a);
    ft_decref(b);
    ft_decref(a); /* the root keeps a without counting it */
    assert_int_equal(ft_gc_collect(2), 0);
    assert_int_equal(a->magic, NODE_MAGIC);
    slots[0] = NULL;
    ft_roots_pop(&frame);
    assert_int_equal(ft_gc_collect(2), 2);
    ft_safepoint();
    assert_false(atomic_load(&node_alive[ida]));
}

/* ---- finalizers ---- */

static _Atomic int finalize_calls;
static void *resurrected; /* counted reference stored by a finalizer */
static intptr_t nested_collect_result = -100;
static int finalize_mode; /* 0 count, 1 resurrect, 2 new cycle + nested collect */

static void node_finalize(void *self)
{
    atomic_fetch_add(&finalize_calls, 1);
    if (finalize_mode == 1 && resurrected == NULL) {
        ft_incref(self);
        resurrected = self;
    } else if (finalize_mode == 2) {
        node *c = node_new(), *d = node_new();

        node_set(c, 0, d);
        node_set(d, 0, c);
        node_set(d, 1, self); /* the new cycle also references the dying object */
        ft_decref(c);
        ft_decref(d);
        nested_collect_result = ft_gc_collect(2);
    }
}

static const ft_type fin_type = {
    .name = "test.finalized",
    .size = sizeof(node),
    .flags = FT_TYPE_GC,
    .traverse = node_traverse,
    .clear = node_clear,
    .finalize = node_finalize,
    .dealloc = node_dealloc,
};

static void test_finalizers_in_cycle(void **state)
{
    node *a = node_new_of(&fin_type), *b = node_new_of(&fin_type);
    uint32_t ida = a->id;

    (void)state;
    finalize_mode = 0;
    atomic_store(&finalize_calls, 0);
    node_set(a, 0, b);
    node_set(b, 0, a);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 2);
    assert_int_equal(atomic_load(&finalize_calls), 2);
    assert_false(atomic_load(&node_alive[ida]));
}

static void test_resurrection(void **state)
{
    node *a = node_new_of(&fin_type), *b = node_new_of(&fin_type);
    node *plain = node_new();
    uint32_t ida = a->id, idb = b->id, idp = plain->id;

    (void)state;
    finalize_mode = 1;
    resurrected = NULL;
    atomic_store(&finalize_calls, 0);
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(b, 1, plain);
    ft_decref(plain);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 3);
    assert_int_equal(atomic_load(&finalize_calls), 2);
    /* One of them resurrected itself: it and all it reaches survive. */
    assert_non_null(resurrected);
    assert_true(atomic_load(&node_alive[ida]));
    assert_true(atomic_load(&node_alive[idb]));
    assert_true(atomic_load(&node_alive[idp]));
    assert_int_equal(a->edge[0], b);
    assert_true(atomic_load_explicit(&a->ob.ob_flags, memory_order_relaxed) & FT_OB_FINALIZED);
    /* Drop it: garbage again, but finalizers never run twice. */
    ft_decref(resurrected);
    resurrected = NULL;
    assert_int_equal(ft_gc_collect(2), 3);
    assert_int_equal(atomic_load(&finalize_calls), 2);
    assert_false(atomic_load(&node_alive[ida]));
    assert_false(atomic_load(&node_alive[idp]));
    finalize_mode = 0;
}

static void test_finalizer_new_cycle_and_nested_collect(void **state)
{
    node *a = node_new_of(&fin_type);
    uint32_t ida = a->id;

    (void)state;
    finalize_mode = 2;
    nested_collect_result = -100;
    node_set(a, 0, a);
    ft_decref(a);
    assert_int_equal(ft_gc_collect(2), 1);
    finalize_mode = 0;
    /* The nested call did not deadlock nor recurse. */
    assert_int_equal(nested_collect_result, 0);
    /* The new cycle references a: a was resurrected by it. */
    assert_true(atomic_load(&node_alive[ida]));
    /* Next collection: the new cycle and a are garbage; a is not finalized again. */
    atomic_store(&finalize_calls, 0);
    assert_int_equal(ft_gc_collect(2), 3);
    assert_int_equal(atomic_load(&finalize_calls), 0);
    assert_false(atomic_load(&node_alive[ida]));
}

static void test_uncollectable(void **state)
{
    node *a = node_new_of(&node_noclear_type), *b = node_new_of(&node_noclear_type);
    node *reached = node_new(); /* collectable, but reachable from uncollectable ones */
    void *garbage[4];
    ft_gc_stats before, after;
    size_t n;

    (void)state;
    ft_gc_clear_garbage();
    assert_int_equal(ft_gc_get_stats(2, &before), 0);
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(b, 1, reached);
    ft_decref(reached);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 3);
    assert_int_equal(ft_gc_get_stats(2, &after), 0);
    assert_int_equal(after.uncollectable - before.uncollectable, 2);
    /* Never freed, and what they reach was not cleared. */
    assert_int_equal(a->magic, NODE_MAGIC);
    assert_int_equal(b->edge[1], reached);
    assert_int_equal(reached->magic, NODE_MAGIC);
    n = ft_gc_get_garbage(garbage, 4);
    assert_int_equal(n, 2);
    /* gc.garbage keeps them reachable: a second collection finds nothing. */
    assert_int_equal(ft_gc_collect(2), 0);
    /* The program breaks the cycle itself, as in Python. */
    node_set(garbage[0], 0, NULL);
    node_set(garbage[1], 0, NULL);
    ft_decref(garbage[0]);
    ft_decref(garbage[1]);
    ft_gc_clear_garbage();
    assert_int_equal(ft_gc_get_garbage(garbage, 4), 0);
}

/* ---- generations ---- */

static void test_generations(void **state)
{
    enum { OLD = 2000, YOUNG = 50 };
    node **keep = calloc(OLD, sizeof *keep);
    node *old_garbage_a, *old_garbage_b;
    uint32_t old_id;
    node *young_survivor;

    (void)state;
    assert_non_null(keep);
    ft_gc_collect(2);
    for (int i = 0; i < OLD; i++) {
        keep[i] = node_new();
        node_set(keep[i], 0, keep[i]);
    }
    old_garbage_a = node_new();
    old_garbage_b = node_new();
    old_id = old_garbage_a->id;
    node_set(old_garbage_a, 0, old_garbage_b);
    node_set(old_garbage_b, 0, old_garbage_a);
    ft_decref(old_garbage_b);
    ft_gc_collect(2); /* everything survives and is promoted */
    assert_true(gc_bits_of(keep[0]) & FTI_GC_OLD);
    assert_true(gc_bits_of(old_garbage_a) & FTI_GC_OLD);
    ft_decref(old_garbage_a); /* an old cycle becomes garbage */

    for (int i = 0; i < YOUNG; i++) {
        node *a = node_new(), *b = node_new();

        node_set(a, 0, b);
        node_set(b, 0, a);
        node_set(a, 1, keep[i]); /* young -> old references are fine */
        ft_decref(a);
        ft_decref(b);
    }
    young_survivor = node_new();
    node_set(keep[0], 1, young_survivor); /* old -> young: counts as external */
    ft_decref(young_survivor);
    assert_false(gc_bits_of(young_survivor) & FTI_GC_OLD);

    /* Young: only the 2*YOUNG + 1 young objects are examined, the old cycle
     * is left alone, the young survivor is promoted. */
    assert_int_equal(ft_gc_collect(0), 2 * YOUNG);
    assert_int_equal(fti_gc_last_candidates(), 2 * YOUNG + 1);
    assert_true(atomic_load(&node_alive[old_id]));
    assert_int_equal(young_survivor->magic, NODE_MAGIC);
    assert_true(gc_bits_of(young_survivor) & FTI_GC_OLD);
    /* A young collection right after examines nothing old. */
    assert_int_equal(ft_gc_collect(0), 0);
    assert_int_equal(fti_gc_last_candidates(), 0);
    /* Full: the old cycle goes. */
    assert_int_equal(ft_gc_collect(2), 2);
    assert_false(atomic_load(&node_alive[old_id]));
    for (int i = 0; i < OLD; i++) {
        node_set(keep[i], 0, NULL);
        node_set(keep[i], 1, NULL);
        ft_decref(keep[i]);
    }
    free(keep);
}

static void test_bad_generation(void **state)
{
    (void)state;
    assert_int_equal(ft_gc_collect(3), -EINVAL);
    assert_int_equal(ft_gc_collect(-2), -EINVAL);
}

/* ---- bad traverse functions (debug builds) ---- */

static void *bad_target;

static int bad_traverse(void *self, ft_visit_fn visit, void *arg)
{
    (void)self;
    return visit(bad_target, arg);
}

static const ft_type bad_type = {
    .name = "test.badtraverse",
    .size = sizeof(node),
    .flags = FT_TYPE_GC,
    .traverse = bad_traverse,
    .clear = node_clear,
};

/* Freed at once, so the block is really free afterwards. */
static const ft_type plain_type = {
    .name = "test.plain",
    .size = sizeof(node),
};

static void collect_with_freed_target(void *arg)
{
    void *victim = ft_new(&plain_type);
    void *bad = ft_new(&bad_type);

    (void)arg;
    ft_decref(victim); /* freed: bad's traverse now visits a dangling pointer */
    bad_target = victim;
    (void)bad;
    ft_gc_collect(2);
}

static void collect_with_foreign_target(void *arg)
{
    static char foreign[64] __attribute__((aligned(16)));
    void *bad = ft_new(&bad_type);

    (void)arg;
    bad_target = foreign;
    (void)bad;
    ft_gc_collect(2);
}

/* Not under TSan: forking runs the library's atfork handlers, which take
 * every parking-lot bucket lock at once, more locks than TSan's deadlock
 * detector can track in one thread (a CHECK failure inside TSan, not a race). */
static void test_traverse_freed_pointer(void **state)
{
    (void)state;
    if (FT_CFG_DEBUG_LEVEL < 2 || FT_CFG_TSAN)
        skip();
    assert_true(ft_test_aborts_with(collect_with_freed_target, NULL,
                                    "traverse of test.badtraverse object"));
    assert_true(ft_test_aborts_with(collect_with_freed_target, NULL, "freed block"));
}

static void test_traverse_foreign_pointer(void **state)
{
    (void)state;
    if (FT_CFG_DEBUG_LEVEL < 2 || FT_CFG_TSAN)
        skip();
    assert_true(ft_test_aborts_with(collect_with_foreign_target, NULL, "foreign pointer"));
}

/* ---- other threads in blocking regions ---- */

typedef struct blocker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int phase; /* 0 starting, 1 blocked, 2 released */
    uint32_t id;
    bool broken; /* the thread found its cycle freed (checked by the main thread) */
} blocker;

static void *blocker_main(void *arg)
{
    blocker *bl = arg;
    void *slots[1] = { NULL };
    ft_roots_frame frame;
    node *a = node_new(), *b = node_new();

    bl->id = a->id;
    ft_set_deferred(a);
    ft_roots_push(&frame, slots, 1);
    slots[0] = a;
    node_set(a, 0, b);
    node_set(b, 0, a);
    ft_decref(b);
    ft_decref(a); /* only the (uncounted) local root keeps the cycle */
    ft_blocking_begin();
    pthread_mutex_lock(&bl->lock);
    bl->phase = 1;
    pthread_cond_broadcast(&bl->cond);
    while (bl->phase != 2)
        pthread_cond_wait(&bl->cond, &bl->lock);
    pthread_mutex_unlock(&bl->lock);
    ft_blocking_end();
    if (a->magic != NODE_MAGIC || ((node *)a->edge[0])->magic != NODE_MAGIC)
        bl->broken = true;
    slots[0] = NULL;
    ft_roots_pop(&frame);
    return NULL;
}

static void test_collect_while_others_block(void **state)
{
    blocker bl = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .phase = 0 };
    pthread_t t;

    (void)state;
    assert_int_equal(ft_thread_start(&t, blocker_main, &bl), 0);
    ft_blocking_begin();
    pthread_mutex_lock(&bl.lock);
    while (bl.phase != 1)
        pthread_cond_wait(&bl.cond, &bl.lock);
    pthread_mutex_unlock(&bl.lock);
    ft_blocking_end();
    /* The blocked thread's local roots still count. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(ft_gc_collect(i % 2 == 0 ? 2 : 0), 0);
    assert_true(atomic_load(&node_alive[bl.id]));
    pthread_mutex_lock(&bl.lock);
    bl.phase = 2;
    pthread_cond_broadcast(&bl.cond);
    pthread_mutex_unlock(&bl.lock);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_false(bl.broken);
    assert_int_equal(ft_gc_collect(2), 2);
    ft_safepoint();
    assert_false(atomic_load(&node_alive[bl.id]));
}

/* ---- two threads collecting at once: one waits for the other ---- */

static void *collect_loop(void *arg)
{
    _Atomic long *found = arg;

    for (int i = 0; i < (FT_CFG_TSAN ? 20 : 200); i++) {
        node *a = node_new(), *b = node_new();

        node_set(a, 0, b);
        node_set(b, 0, a);
        ft_decref(a);
        ft_decref(b);
        atomic_fetch_add(found, (long)ft_gc_collect(i % 2 ? 0 : 2));
    }
    return NULL;
}

static void test_concurrent_explicit_collections(void **state)
{
    _Atomic long found = 0;
    pthread_t t[2];
    int rounds = FT_CFG_TSAN ? 20 : 200;

    (void)state;
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_start(&t[i], collect_loop, &found), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    /* Each cycle is found by exactly one collection; none is lost. */
    atomic_fetch_add(&found, (long)ft_gc_collect(2));
    assert_int_equal(atomic_load(&found), 2 * 2 * rounds);
}

/* ---- a stop in the middle of a long deallocation ---- */

/* Freeing a long chain must let a stop-the-world in between objects (a
 * thread freeing a large structure used to hold every stop for
 * milliseconds), and a collection during that stop must not see the object
 * waiting on the worklist (count zero, still holding the rest of the chain)
 * as garbage: that would free the rest of the chain twice. */
enum { LONG_CHAIN = FT_CFG_TSAN ? 20000 : 200000, CHAIN_SIGNAL_AT = 1000 };
static _Atomic long chain_deallocs;
static _Atomic int chain_freeing;

static void chain_dealloc(void *self)
{
    if (atomic_fetch_add(&chain_deallocs, 1) + 1 == CHAIN_SIGNAL_AT) {
        atomic_store(&chain_freeing, 1);
        /* Wait until a stop is requested of us: the loop must then park
         * within its polling interval, long before the chain is gone. */
        while (!(atomic_load_explicit(&ft_tls_head.pending, memory_order_acquire) & FT_PENDING_STOP)) {
        }
    }
    node_dealloc(self);
}

static const ft_type chain_type = {
    .name = "test.chain",
    .size = sizeof(node),
    .flags = FT_TYPE_GC,
    .traverse = node_traverse,
    .clear = node_clear,
    .dealloc = chain_dealloc,
};

static void *chain_freer(void *arg)
{
    node *head = NULL;

    (void)arg;
    for (long i = 0; i < LONG_CHAIN; i++) {
        node *n = node_new_of(&chain_type);

        n->edge[0] = head; /* our reference to the previous head moves into n */
        head = n;
        if ((i & 1023) == 0)
            ft_safepoint();
    }
    ft_decref(head); /* frees the whole chain, one object at a time */
    return NULL;
}

static void test_stop_inside_long_deallocation(void **state)
{
    pthread_t t;

    (void)state;
    atomic_store(&chain_deallocs, 0);
    atomic_store(&chain_freeing, 0);
    assert_int_equal(ft_thread_start(&t, chain_freer, NULL), 0);
    while (!atomic_load(&chain_freeing))
        ft_safepoint();
    ft_stop_the_world();
    long mid = atomic_load(&chain_deallocs);
    assert_true(mid >= CHAIN_SIGNAL_AT && mid < LONG_CHAIN); /* stopped halfway */
    /* The rest of the chain is referenced from the worklist: not garbage. */
    assert_int_equal(ft_gc_collect(2), 0);
    assert_int_equal(atomic_load(&chain_deallocs), mid);
    ft_start_the_world();
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&chain_deallocs), LONG_CHAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_node_cycle, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_self_reference, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_reachable_cycle_kept, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_local_root_deferred, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_finalizers_in_cycle, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_resurrection, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_finalizer_new_cycle_and_nested_collect, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_uncollectable, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_generations, node_leak_mark, node_leak_check),
        cmocka_unit_test(test_bad_generation),
        cmocka_unit_test(test_traverse_freed_pointer),
        cmocka_unit_test(test_traverse_foreign_pointer),
        cmocka_unit_test_setup_teardown(test_collect_while_others_block, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_concurrent_explicit_collections, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_stop_inside_long_deallocation, node_leak_mark, node_leak_check),
    };

    return cmocka_run_group_tests(tests, gc_group_setup, gc_group_teardown);
}
