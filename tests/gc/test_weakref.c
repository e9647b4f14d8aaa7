/* test_weakref.c - weak references: get before and after death, callbacks
 * (once, not for garbage weakrefs, allowed to drop their own weakref), the
 * collector clearing weakrefs to cycles, and ft_weakref_get racing the
 * target's last decref on another thread. */
#include "gc_nodes.h"

#include <pthread.h>

typedef struct cb_log {
    int calls;
    void *last_weakref;
    bool was_dead; /* ft_weakref_get returned NULL inside the callback */
    bool drop_own; /* the callback releases the only reference to its weakref */
} cb_log;

static void record_cb(void *wr, void *arg)
{
    cb_log *log = arg;
    void *t = ft_weakref_get(wr);

    log->calls++;
    log->last_weakref = wr;
    log->was_dead = t == NULL;
    if (t != NULL)
        ft_decref(t);
    if (log->drop_own)
        ft_decref(wr);
}

static void test_get_and_death(void **state)
{
    node *t = node_new();
    cb_log log = { 0 };
    void *wr = ft_weakref_new(t, record_cb, &log);
    void *got;

    (void)state;
    assert_non_null(wr);
    assert_true(ft_is_tracked(wr));
    assert_int_equal(ft_weakref_count(t), 1);
    assert_true(ft_weakref_is_alive(wr));
    got = ft_weakref_get(wr);
    assert_ptr_equal(got, t);
    ft_decref(got);
    ft_decref(t); /* dies by refcount: callback runs at once */
    assert_int_equal(log.calls, 1);
    assert_ptr_equal(log.last_weakref, wr);
    assert_true(log.was_dead);
    assert_false(ft_weakref_is_alive(wr));
    assert_null(ft_weakref_get(wr));
    ft_decref(wr);
}

static void test_weakref_dies_first(void **state)
{
    node *t = node_new();
    cb_log log = { 0 };
    void *wr1 = ft_weakref_new(t, record_cb, &log);
    void *wr2 = ft_weakref_new(t, record_cb, &log);

    (void)state;
    assert_int_equal(ft_weakref_count(t), 2);
    ft_decref(wr1);
    assert_int_equal(ft_weakref_count(t), 1);
    ft_decref(t);
    assert_int_equal(log.calls, 1); /* only the live weakref's callback */
    assert_ptr_equal(log.last_weakref, wr2);
    ft_decref(wr2);
}

static void test_callback_drops_own_weakref(void **state)
{
    node *t = node_new();
    cb_log log = { .drop_own = true };
    void *wr = ft_weakref_new(t, record_cb, &log);

    (void)state;
    assert_non_null(wr);
    ft_decref(t); /* the callback releases wr's last reference */
    assert_int_equal(log.calls, 1);
    /* and through the collector */
    {
        node *a = node_new(), *b = node_new();
        cb_log log2 = { .drop_own = true };

        node_set(a, 0, b);
        node_set(b, 0, a);
        assert_non_null(ft_weakref_new(a, record_cb, &log2));
        ft_decref(a);
        ft_decref(b);
        assert_int_equal(ft_gc_collect(2), 2);
        assert_int_equal(log2.calls, 1);
        assert_true(log2.was_dead);
    }
}

static void test_collector_clears_weakrefs_to_cycles(void **state)
{
    node *a = node_new(), *b = node_new();
    cb_log log = { 0 };
    void *wr = ft_weakref_new(a, record_cb, &log);

    (void)state;
    node_set(a, 0, b);
    node_set(b, 0, a);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 2);
    assert_int_equal(log.calls, 1);
    assert_true(log.was_dead);
    assert_null(ft_weakref_get(wr));
    ft_decref(wr);
}

/* A weakref inside the garbage cycle, pointing into the cycle: no callback. */
static void test_garbage_weakref_no_callback(void **state)
{
    node *a = node_new(), *b = node_new();
    cb_log log = { 0 };
    void *wr = ft_weakref_new(a, record_cb, &log);

    (void)state;
    node_set(a, 0, b);
    node_set(b, 0, a);
    node_set(b, 1, wr);
    ft_decref(wr);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 3);
    assert_int_equal(log.calls, 0);
}

/* A garbage weakref to a live object that dies later: still no callback. */
static void test_garbage_weakref_to_live_target(void **state)
{
    node *live = node_new();
    node *a = node_new();
    cb_log log = { 0 };
    void *wr = ft_weakref_new(live, record_cb, &log);

    (void)state;
    node_set(a, 0, a);
    node_set(a, 1, wr);
    ft_decref(wr);
    ft_decref(a);
    assert_int_equal(ft_gc_collect(2), 2);
    assert_int_equal(ft_weakref_count(live), 0);
    ft_decref(live);
    assert_int_equal(log.calls, 0);
}

/* ---- racing the last decref ---- */

typedef struct race {
    _Atomic(void *) wr;    /* current round's weakref (a counted reference of the main thread) */
    _Atomic int round;
    _Atomic int done_round; /* the getter saw the round's target die */
    _Atomic bool stop;
    _Atomic long got;       /* successful gets */
    _Atomic bool broken;    /* a get returned a freed object */
} race;

static void *getter_main(void *arg)
{
    race *r = arg;
    int seen = 0;

    while (!atomic_load(&r->stop)) {
        int round = atomic_load(&r->round);

        ft_safepoint();
        if (round == seen)
            continue;
        void *wr = atomic_load(&r->wr);
        for (;;) {
            node *t = ft_weakref_get(wr);

            if (t == NULL)
                break;
            if (t->magic != NODE_MAGIC)
                atomic_store(&r->broken, true);
            atomic_fetch_add(&r->got, 1);
            ft_decref(t);
            ft_safepoint();
        }
        seen = round;
        atomic_store(&r->done_round, round);
    }
    return NULL;
}

static void test_get_races_last_decref(void **state)
{
    race r = { 0 };
    pthread_t t;
    int rounds = FT_CFG_TSAN ? 200 : 2000;

    (void)state;
    assert_int_equal(ft_thread_start(&t, getter_main, &r), 0);
    for (int i = 1; i <= rounds; i++) {
        node *target = node_new();
        void *wr = ft_weakref_new(target, NULL, NULL);

        atomic_store(&r.wr, wr);
        atomic_store(&r.round, i);
        for (int spin = 0; spin < (i % 7) * 50; spin++)
            ft_safepoint();
        ft_decref(target); /* may be the last reference, or the getter's may be */
        while (atomic_load(&r.done_round) != i)
            ft_safepoint();
        ft_decref(wr);
    }
    atomic_store(&r.stop, true);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_false(atomic_load(&r.broken));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_death, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_weakref_dies_first, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_callback_drops_own_weakref, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_collector_clears_weakrefs_to_cycles, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_garbage_weakref_no_callback, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_garbage_weakref_to_live_target, node_leak_mark, node_leak_check),
        cmocka_unit_test_setup_teardown(test_get_races_last_decref, node_leak_mark, node_leak_check),
    };

    return cmocka_run_group_tests(tests, gc_group_setup, gc_group_teardown);
}
