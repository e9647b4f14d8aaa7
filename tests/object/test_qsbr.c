/* test_qsbr.c - ft_try_incref, type-stable object memory and QSBR-delayed
 * frees: failure on a dead object and on an unmarked one of another thread,
 * a stale pointer to a reused block, a race between lock-free readers and
 * the last decref, object pages waiting for a grace period, the budgets
 * forcing grace periods. */
#include "ft_config.h"
#include "obj_types.h" /* before ft_test.h: it needs <stdbool.h> */
#include "ft_test.h"

#include "mem/mem.h"
#include "object/object.h"
#include "thread/thread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static void init_runtime(size_t budget)
{
    ft_config cfg;
    ft_config_default(&cfg);
    cfg.gc_enabled = false;
    cfg.mode = FT_MODE_FREE_THREADED; /* the behaviour under test; FTRT_GIL is ignored */
    if (budget != 0)
        cfg.qsbr_budget_bytes = budget;
    assert_int_equal(ft_init(&cfg), 0);
}

/* ---- try_incref, single thread -------------------------------------------------- */

static void *try_from_other_thread(void *arg)
{
    return ft_try_incref(arg) ? arg : NULL;
}

/* ft_try_incref from a fresh attached thread; drops what it took. */
static bool other_thread_can_take(void *o)
{
    pthread_t t;
    void *got = NULL;
    assert_int_equal(ft_thread_start(&t, try_from_other_thread, o), 0);
    assert_int_equal(ft_thread_join(t, &got), 0);
    return got != NULL;
}

static void test_try_incref_basics(void **state)
{
    (void)state;
    init_runtime(0);
    test_node *n = test_node_new(&test_node_type, NULL, 1);
    /* unmarked: the owner may free it without a CAS, so another thread's
     * try fails on it (the caller falls back to a lock, as in CPython) */
    assert_false(other_thread_can_take(n));
    ft_set_shared_read(n); /* readers will ft_try_incref it */
    assert_int_equal(atomic_load(&n->ob.ob_ref_shared) & FT_SHARED_MASK, FT_SHARED_WEAKREFS);
    assert_true(ft_try_incref(n)); /* owner */
    assert_int_equal(ft_refcount(n), 2);
    assert_true(other_thread_can_take(n)); /* non-owner; the reference stays */
    assert_int_equal(ft_refcount(n), 3);
    ft_decref(n);
    ft_decref(n);
    ft_decref(n); /* dead and freed at once: no delayed free */
    fti_delayed_stats st;
    fti_delayed_get_stats(&st);
    assert_int_equal(st.held_count, 0);
    /* the block keeps a dead header until it is handed out again */
    assert_int_equal(atomic_load(&n->ob.ob_owner), 0);
    assert_int_equal(atomic_load(&n->ob.ob_ref_local), 0);
    assert_false(ft_try_incref(n));
    assert_false(other_thread_can_take(n));

    test_node *imm = test_node_new(&test_node_type, NULL, 2);
    ft_set_immortal(imm);
    assert_true(ft_try_incref(imm));
    assert_true(other_thread_can_take(imm));
    ft_fini();
}

/* A stale pointer whose block now holds a newer object: the reader may take
 * a reference to the newer object (legitimately) or fail, never corrupt it. */
static void test_try_incref_on_reused_block(void **state)
{
    (void)state;
    init_runtime(0);
    test_node *old = test_node_new(&test_node_type, NULL, 1);
    ft_set_shared_read(old);
    void *stale = old;
    ft_decref(old);
    test_node *fresh = NULL, *made[4096];
    int count = 0;
    while (count < 4096) { /* same size class: the block comes back soon */
        made[count] = test_node_new(&test_node_type, NULL, 7);
        if ((void *)made[count++] == stale) {
            fresh = made[count - 1];
            break;
        }
    }
    assert_non_null(fresh);
    /* unmarked newer object: other threads fail, its owner takes a count */
    assert_false(other_thread_can_take(stale));
    assert_true(ft_try_incref(stale));
    ft_decref(stale);
    assert_int_equal(ft_refcount(fresh), 1);
    ft_set_shared_read(fresh);
    assert_true(other_thread_can_take(stale)); /* a reference to fresh */
    assert_int_equal(ft_refcount(fresh), 2);
    ft_decref(fresh); /* the one the other thread took */
    long before = test_node_deallocs_get();
    for (int i = 0; i < count; i++)
        ft_decref(made[i]);
    assert_int_equal(test_node_deallocs_get() - before, count); /* counts stayed exact */
    ft_fini();
}

/* ---- readers race the writer's last decref ----------------------------------------- */

#define READERS 2

typedef struct race_ctx {
    _Atomic(test_node *) slot;
    _Atomic int stop;
    _Atomic long successes, failures, bad;
} race_ctx;

static void *reader(void *arg)
{
    race_ctx *c = arg;
    long ok = 0, failed = 0, bad = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
        /* acquire: pairs with the writer's release store of a new node. */
        test_node *n = atomic_load_explicit(&c->slot, memory_order_acquire);
        if (ft_try_incref(n)) {
            /* the block may hold a newer object by now: only a reference
             * confirmed by the slot is the node we meant */
            if (atomic_load_explicit(&c->slot, memory_order_acquire) == n) {
                ok++;
                if (atomic_load_explicit(&n->magic, memory_order_relaxed) != NODE_MAGIC)
                    bad++; /* a reference to a deallocated object */
            }
            ft_decref(n);
        } else {
            failed++;
        }
        ft_safepoint(); /* quiescent state: no pointer is held across it */
    }
    atomic_fetch_add(&c->successes, ok);
    atomic_fetch_add(&c->failures, failed);
    atomic_fetch_add(&c->bad, bad);
    return NULL;
}

static void test_try_incref_races_last_decref(void **state)
{
    (void)state;
    init_runtime(64 * 1024);
    long before = test_node_deallocs_get();
    static race_ctx c;
    atomic_store(&c.stop, 0);
    atomic_store(&c.successes, 0);
    atomic_store(&c.failures, 0);
    atomic_store(&c.bad, 0);
    test_node *first = test_node_new(&test_node_type, NULL, 0);
    ft_set_shared_read(first);
    atomic_store(&c.slot, first);
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++)
        assert_int_equal(ft_thread_start(&t[i], reader, &c), 0);
    long rounds = FT_CFG_TSAN ? 20000 : 400000;
    for (long i = 1; i <= rounds; i++) {
        test_node *fresh = test_node_new(&test_node_type, NULL, (uint32_t)i);
        ft_set_shared_read(fresh); /* before publishing it to lock-free readers */
        /* release: publishes the node's fields to readers. */
        test_node *old = atomic_exchange_explicit(&c.slot, fresh, memory_order_acq_rel);
        ft_decref(old); /* usually the last reference */
        ft_safepoint();
    }
    atomic_store_explicit(&c.stop, 1, memory_order_release);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    ft_decref(atomic_load(&c.slot));
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_true(atomic_load(&c.successes) > 0);
    /* every node died exactly once */
    assert_int_equal(test_node_deallocs_get() - before, rounds + 1);
    print_message("try_incref: %ld successes, %ld failures\n", atomic_load(&c.successes),
                  atomic_load(&c.failures));
    ft_fini();
}

/* ---- the budget ------------------------------------------------------------------ */

static void test_budget_forces_grace_periods(void **state)
{
    (void)state;
    const size_t budget = 64 * 1024;
    init_runtime(budget);
    fti_delayed_stats st0, st;

    /* objects never take the delayed path, marked or not */
    fti_delayed_get_stats(&st0);
    for (int i = 0; i < 20000; i++) {
        test_node *shared_node = test_node_new(&test_node_type, NULL, 0);
        ft_set_shared_read(shared_node);
        ft_decref(shared_node);
        ft_decref(test_node_new(&test_node_type, NULL, 0));
    }
    fti_delayed_get_stats(&st);
    assert_int_equal(st.delayed_frees, st0.delayed_frees);

    /* raw container storage */
    fti_delayed_get_stats(&st0);
    for (int i = 0; i < 200; i++) {
        void *raw = ft_malloc(4096);
        assert_non_null(raw);
        fti_qsbr_free_delayed(raw, 4096);
        fti_delayed_get_stats(&st);
        assert_true(st.held_bytes <= budget);
    }
    long forced = (long)(st.forced_grace_periods - st0.forced_grace_periods);
    assert_true(forced >= 10); /* 800 KB through a 64 KB budget */
    assert_true(forced <= 200 / 10); /* batched, not one per free */
    ft_fini();
}

/* Empty object pages keep their size class until a grace period: a page
 * emptied while a reader may still hold a pointer into it is not handed to
 * another class, and the retired pages a thread holds stay bounded. */
#define FEW_NODES 8000   /* about 6 pages of 48-byte blocks */
#define MANY_NODES 40000 /* about 30 pages */

static bool reads_dead_header(const test_node *n)
{
    int32_t shared = atomic_load(&n->ob.ob_ref_shared);
    bool dead = atomic_load(&n->ob.ob_owner) == 0 && atomic_load(&n->ob.ob_ref_local) == 0 &&
                (shared == 0 || shared == FT_SHARED_MERGED);
    if (FT_CFG_DEBUG_LEVEL >= 1)
        dead = dead && strcmp(n->ob.ob_type->name, "<freed>") == 0;
    return dead;
}

static void test_object_pages_wait_for_grace_period(void **state)
{
    (void)state;
    init_runtime(1 << 20); /* a limit of 128 retired pages */
    static test_node *nodes[MANY_NODES];
    ft_mem_stats ms;
    for (int i = 0; i < FEW_NODES; i++) {
        nodes[i] = test_node_new(&test_node_type, NULL, 0);
        ft_set_shared_read(nodes[i]);
    }
    for (int i = 0; i < FEW_NODES; i++)
        ft_decref(nodes[i]);
    ft_mem_get_stats(&ms);
    assert_true(ms.pages_retired >= 3);
    /* other classes take free pages (and would take released ones) */
    void *raw[512];
    for (int i = 0; i < 512; i++) {
        raw[i] = ft_malloc(4000);
        assert_non_null(raw[i]);
        memset(raw[i], 0xab, 4000);
    }
    size_t dead = 0;
    for (int i = 0; i < FEW_NODES; i++)
        dead += reads_dead_header(nodes[i]);
    assert_int_equal(dead, FEW_NODES); /* no block was reused: nothing allocated 48 bytes */
    for (int i = 0; i < 512; i++)
        ft_free(raw[i]);
    /* after a grace period the pages go back to their arenas */
    fti_qsbr_barrier();
    ft_mem_get_stats(&ms);
    assert_int_equal(ms.pages_retired, 0);

    /* the limit: a thread never holds more than it for long */
    const size_t budget = 64 * 1024; /* 8 x 64 KiB: 8 pages */
    ft_fini();
    init_runtime(budget);
    fti_delayed_stats st0, st;
    fti_delayed_get_stats(&st0);
    size_t max_retired = 0;
    for (int i = 0; i < MANY_NODES; i++)
        nodes[i] = test_node_new(&test_node_type, NULL, 0);
    for (int i = 0; i < MANY_NODES; i++) {
        ft_decref(nodes[i]);
        if (i % 1000 == 0) {
            ft_mem_get_stats(&ms);
            if (ms.pages_retired > max_retired)
                max_retired = ms.pages_retired;
        }
    }
    fti_delayed_get_stats(&st);
    print_message("max retired pages %zu, forced grace periods %llu\n", max_retired,
                  (unsigned long long)(st.forced_grace_periods - st0.forced_grace_periods));
    assert_true(st.forced_grace_periods > st0.forced_grace_periods);
    assert_true(max_retired <= 8 + 1);
    ft_fini();
}

/* Inside a lock-free read section a free never forces a grace period (the
 * reader would report a quiescent state while it still reads shared
 * storage); the budget is enforced by the next free outside it. */
static void test_no_grace_period_inside_lockfree_read(void **state)
{
    (void)state;
    const size_t budget = 16 * 1024;
    init_runtime(budget);
    fti_delayed_stats st0, st;
    fti_delayed_get_stats(&st0);
    fti_lockfree_read_begin();
    for (int i = 0; i < 16; i++) { /* 64 KB: four budgets */
        void *raw = ft_malloc(4096);
        assert_non_null(raw);
        fti_qsbr_free_delayed(raw, 4096);
    }
    /* and object pages emptied inside it (the retire limit is 4 pages, the
     * minimum: 8 x 16 KiB is 2 pages) */
    static test_node *nodes[MANY_NODES];
    for (int i = 0; i < MANY_NODES; i++)
        nodes[i] = test_node_new(&test_node_type, NULL, 0);
    for (int i = 0; i < MANY_NODES; i++)
        ft_decref(nodes[i]);
    fti_delayed_get_stats(&st);
    assert_int_equal(st.forced_grace_periods, st0.forced_grace_periods);
    assert_true(st.held_bytes > budget);
    ft_mem_stats ms;
    ft_mem_get_stats(&ms);
    assert_true(ms.pages_retired > 4 + 1);
    fti_lockfree_read_end();
    ft_safepoint(); /* nothing pending: the next free enforces it */
    void *raw = ft_malloc(4096);
    fti_qsbr_free_delayed(raw, 4096);
    fti_delayed_get_stats(&st);
    assert_true(st.forced_grace_periods > st0.forced_grace_periods);
    assert_true(st.held_bytes <= budget);
    ft_mem_get_stats(&ms);
    assert_true(ms.pages_retired <= 4 + 1);
    ft_fini();
}

/* A large object has a mapping of its own, which a free unmaps: it waits
 * for a grace period instead, so a stale pointer can still be tried. */
static void test_large_object_waits_for_grace_period(void **state)
{
    (void)state;
    init_runtime(1 << 20);
    test_node *big = ft_new_var(&test_node_type, 100000);
    assert_non_null(big);
    ft_set_shared_read(big);
    fti_delayed_stats st0, st;
    fti_delayed_get_stats(&st0);
    ft_decref(big);
    fti_delayed_get_stats(&st);
    assert_int_equal(st.held_count, st0.held_count + 1);
    assert_true(reads_dead_header(big)); /* still mapped */
    assert_false(ft_try_incref(big));
    assert_false(other_thread_can_take(big));
    fti_qsbr_barrier();
    fti_delayed_get_stats(&st);
    assert_int_equal(st.held_count, 0);
    ft_fini();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_try_incref_basics),
        cmocka_unit_test(test_try_incref_on_reused_block),
        cmocka_unit_test(test_try_incref_races_last_decref),
        cmocka_unit_test(test_budget_forces_grace_periods),
        cmocka_unit_test(test_object_pages_wait_for_grace_period),
        cmocka_unit_test(test_large_object_waits_for_grace_period),
        cmocka_unit_test(test_no_grace_period_inside_lockfree_read),
    };
    if (getenv("FT_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("FT_TEST_FILTER")); /* run one test by name */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
