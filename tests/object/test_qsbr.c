/* test_qsbr.c - ft_try_incref and QSBR-delayed frees: failure on a dead
 * object, a race between lock-free readers and the last decref, the
 * delayed-free budget forcing grace periods. */
#include "ft_config.h"
#include "obj_types.h" /* before ft_test.h: it needs <stdbool.h> */
#include "ft_test.h"

#include "object/object.h"

#include <pthread.h>
#include <stdatomic.h>

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

static void test_try_incref_basics(void **state)
{
    (void)state;
    init_runtime(0);
    test_node *n = test_node_new(&test_node_type, NULL, 1);
    ft_set_shared_read(n); /* readers will ft_try_incref it */
    assert_true(ft_try_incref(n)); /* owner */
    assert_int_equal(ft_refcount(n), 2);
    pthread_t t;
    void *got = NULL;
    assert_int_equal(ft_thread_start(&t, try_from_other_thread, n), 0); /* non-owner */
    assert_int_equal(ft_thread_join(t, &got), 0);
    assert_ptr_equal(got, n);
    assert_int_equal(ft_refcount(n), 3);
    ft_decref(n);
    ft_decref(n);
    ft_decref(n); /* dead; its memory waits for a grace period */
    fti_delayed_stats st;
    fti_delayed_get_stats(&st);
    assert_true(st.held_count >= 1);
    assert_false(ft_try_incref(n));
    assert_int_equal(ft_thread_start(&t, try_from_other_thread, n), 0);
    assert_int_equal(ft_thread_join(t, &got), 0);
    assert_null(got);

    test_node *imm = test_node_new(&test_node_type, NULL, 2);
    ft_set_immortal(imm);
    assert_true(ft_try_incref(imm));
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
            if (atomic_load_explicit(&n->magic, memory_order_relaxed) != NODE_MAGIC)
                bad++; /* a reference to a deallocated object */
            if (atomic_load_explicit(&c->slot, memory_order_acquire) == n)
                ok++;
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
    fti_delayed_get_stats(&st0);
    long n = 20000; /* 20000 nodes of 32+ bytes: at least 640 KB, ten budgets */
    size_t max_held = 0;
    for (long i = 0; i < n; i++) {
        test_node *shared_node = test_node_new(&test_node_type, NULL, 0);
        ft_set_shared_read(shared_node);
        ft_decref(shared_node);
        fti_delayed_get_stats(&st);
        if (st.held_bytes > max_held)
            max_held = st.held_bytes;
    }
    fti_delayed_get_stats(&st);
    long forced = (long)(st.forced_grace_periods - st0.forced_grace_periods);
    print_message("objects: %ld forced grace periods, max held %zu bytes\n", forced, max_held);
    assert_true(forced >= 9);
    assert_true(forced <= n / 100); /* batched, not one per free */
    assert_true(max_held <= budget);
    assert_true(st.delayed_frees - st0.delayed_frees >= (uint64_t)n);

    /* raw container storage */
    fti_delayed_get_stats(&st0);
    for (int i = 0; i < 200; i++) {
        void *raw = ft_malloc(4096);
        assert_non_null(raw);
        fti_qsbr_free_delayed(raw, 4096);
        fti_delayed_get_stats(&st);
        assert_true(st.held_bytes <= budget);
    }
    forced = (long)(st.forced_grace_periods - st0.forced_grace_periods);
    assert_true(forced >= 10); /* 800 KB through a 64 KB budget */

    /* objects of a type without lock-free readers skip the delay, even when
     * marked; unmarked objects of any type skip it too */
    fti_delayed_get_stats(&st0);
    for (int i = 0; i < 1000; i++) {
        test_node *fast = test_node_new(&test_fast_node_type, NULL, 0);
        ft_set_shared_read(fast);
        ft_decref(fast);
        ft_decref(test_node_new(&test_node_type, NULL, 0));
    }
    fti_delayed_get_stats(&st);
    assert_int_equal(st.delayed_frees, st0.delayed_frees);
    ft_fini();
}

/* Inside a lock-free read section a deallocation never forces a grace
 * period (the reader would report a quiescent state while it still reads
 * shared storage); the budget is enforced at the next safepoint. */
static void test_no_grace_period_inside_lockfree_read(void **state)
{
    (void)state;
    const size_t budget = 16 * 1024;
    init_runtime(budget);
    fti_delayed_stats st0, st;
    fti_delayed_get_stats(&st0);
    fti_lockfree_read_begin();
    for (int i = 0; i < 2000; i++) { /* 64 KB and more: four budgets */
        test_node *shared_node = test_node_new(&test_node_type, NULL, 0);
        ft_set_shared_read(shared_node);
        ft_decref(shared_node);
    }
    fti_delayed_get_stats(&st);
    assert_int_equal(st.forced_grace_periods, st0.forced_grace_periods);
    assert_true(st.held_bytes > budget);
    fti_lockfree_read_end();
    ft_safepoint(); /* nothing pending: the next deallocation enforces it */
    test_node *shared_node = test_node_new(&test_node_type, NULL, 0);
    ft_set_shared_read(shared_node);
    ft_decref(shared_node);
    fti_delayed_get_stats(&st);
    assert_true(st.forced_grace_periods > st0.forced_grace_periods);
    assert_true(st.held_bytes <= budget);
    ft_fini();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_try_incref_basics),
        cmocka_unit_test(test_try_incref_races_last_decref),
        cmocka_unit_test(test_budget_forces_grace_periods),
        cmocka_unit_test(test_no_grace_period_inside_lockfree_read),
    };
    if (getenv("FT_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("FT_TEST_FILTER")); /* run one test by name */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
