/* test_weakvaluemap.c - entries vanish when their values die; overwrite,
 * map death before its values, and values dying on other threads. */
#include "ft_config.h"
#include <stdbool.h> /* before ft_test.h, which uses bool */
#include "ft_test.h"

#include "ftrt.h"

#include <errno.h>
#include <stdatomic.h>

#define NTHREADS 4
#define PER_THREAD (FT_CFG_TSAN ? 1500 : 10000)

static void test_entries_vanish(void **state)
{
    (void)state;
    void *m = ft_weakvaluemap_new();
    void *k1 = ft_str_intern("a", 1);
    void *k2 = ft_int_from_i64(123456);
    void *v1 = ft_list_new();
    void *v2 = ft_str_from_cstr("value");

    assert_non_null(m);
    assert_int_equal(ft_weakvaluemap_len(m), 0);
    assert_int_equal(ft_weakvaluemap_set(m, k1, v1), 0);
    assert_int_equal(ft_weakvaluemap_set(m, k2, v2), 0);
    assert_int_equal(ft_refcount(v1), 1); /* held weakly */
    assert_int_equal(ft_weakvaluemap_len(m), 2);

    void *got = ft_weakvaluemap_get(m, k1);
    assert_ptr_equal(got, v1);
    ft_decref(got);

    ft_decref(v1);
    assert_null(ft_weakvaluemap_get(m, k1));
    assert_int_equal(ft_weakvaluemap_len(m), 1);

    /* Overwrite: the old value no longer maps, and its later death does not
     * remove the new entry. */
    void *v3 = ft_str_from_cstr("three");
    assert_int_equal(ft_weakvaluemap_set(m, k2, v3), 0);
    assert_int_equal(ft_weakvaluemap_len(m), 1);
    ft_decref(v2);
    got = ft_weakvaluemap_get(m, k2);
    assert_ptr_equal(got, v3);
    ft_decref(got);
    ft_decref(v3);
    assert_int_equal(ft_weakvaluemap_len(m), 0);

    /* Bad key type. */
    void *l = ft_list_new();
    assert_int_equal(ft_weakvaluemap_set(m, l, l), -EINVAL);
    ft_decref(l);
    ft_decref(k2);
    ft_decref(m);
}

static void test_map_dies_first(void **state)
{
    (void)state;
    void *m = ft_weakvaluemap_new();
    void *values[50];

    for (int i = 0; i < 50; i++) {
        void *k = ft_int_from_i64(1000 + i);
        values[i] = ft_str_from_cstr("v");
        assert_int_equal(ft_weakvaluemap_set(m, k, values[i]), 0);
        ft_decref(k);
    }
    assert_int_equal(ft_weakvaluemap_len(m), 50);
    /* Some values die first, then the map, then the rest: no callback may
     * touch a dead map (ASan/TSan and the heap checks would see it). */
    for (int i = 0; i < 10; i++)
        ft_decref(values[i]);
    assert_int_equal(ft_weakvaluemap_len(m), 40);
    ft_decref(m);
    for (int i = 10; i < 50; i++) {
        assert_int_equal(ft_refcount(values[i]), 1);
        ft_decref(values[i]);
    }
}

static void *shared_map;
static atomic_int start_gate;

/* All workers are attached before any of them allocates, so no collection
 * (a stop-the-world) overlaps a thread attaching. */
static void wait_start_gate(void)
{
    atomic_fetch_add(&start_gate, 1);
    while (atomic_load(&start_gate) < NTHREADS)
        ft_safepoint();
}

/* Each thread maps its own keys to its own values, drops half of them, and
 * reads the other threads' keys (a hit must be the value for that key). */
static void *map_worker(void *p)
{
    int t = (int)(intptr_t)p;
    void *mine[PER_THREAD];
    int bad = 0;

    wait_start_gate();
    for (int i = 0; i < PER_THREAD; i++) {
        void *k = ft_int_from_i64(10000 + t * PER_THREAD + i);
        mine[i] = ft_int_from_i64(10000 + t * PER_THREAD + i);
        if (ft_weakvaluemap_set(shared_map, k, mine[i]) != 0)
            bad++;
        ft_decref(k);
        ft_safepoint();
    }
    for (int i = 0; i < PER_THREAD; i += 2) {
        ft_decref(mine[i]);
        mine[i] = NULL;
    }
    for (int i = 0; i < PER_THREAD; i++) {
        int other = (t + 1) % NTHREADS;
        void *k = ft_int_from_i64(10000 + other * PER_THREAD + i);
        void *v = ft_weakvaluemap_get(shared_map, k);
        if (v != NULL) {
            if (ft_int_as_i64(v) != ft_int_as_i64(k))
                bad++;
            ft_decref(v);
        }
        ft_decref(k);
        void *own_k = ft_int_from_i64(10000 + t * PER_THREAD + i);
        v = ft_weakvaluemap_get(shared_map, own_k);
        if ((v != NULL) != (mine[i] != NULL) || (v != NULL && v != mine[i]))
            bad++;
        ft_xdecref(v);
        ft_decref(own_k);
        ft_safepoint();
    }
    for (int i = 1; i < PER_THREAD; i += 2)
        ft_decref(mine[i]);
    return (void *)(intptr_t)bad;
}

static void test_concurrent_deaths(void **state)
{
    pthread_t threads[NTHREADS];

    (void)state;
    shared_map = ft_weakvaluemap_new();
    atomic_store(&start_gate, 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_start(&threads[t], map_worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < NTHREADS; t++) {
        void *bad;
        assert_int_equal(ft_thread_join(threads[t], &bad), 0);
        assert_int_equal((intptr_t)bad, 0);
    }
    /* Every value died: every entry vanished. */
    assert_int_equal(ft_weakvaluemap_len(shared_map), 0);
    ft_decref(shared_map);
}

/* The map dies on the main thread while workers drop the values: callbacks
 * racing with the map's deallocation must neither touch freed memory nor
 * lose a credit (TSan and the debug heap checks watch this one). */
static atomic_int race_stage;
static void *race_map;

static void *race_worker(void *p)
{
    int t = (int)(intptr_t)p;
    void *mine[PER_THREAD];

    wait_start_gate();
    for (int i = 0; i < PER_THREAD; i++) {
        void *k = ft_int_from_i64(500000 + t * PER_THREAD + i);
        mine[i] = ft_list_new();
        assert_int_equal(ft_weakvaluemap_set(race_map, k, mine[i]), 0);
        ft_decref(k);
    }
    atomic_fetch_add(&race_stage, 1);
    while (atomic_load(&race_stage) < NTHREADS + 1) /* the main thread's go */
        ft_safepoint();
    for (int i = 0; i < PER_THREAD; i++) {
        ft_decref(mine[i]);
        if ((i & 31) == 0)
            ft_safepoint();
    }
    return NULL;
}

static void test_map_dies_while_values_die(void **state)
{
    pthread_t threads[NTHREADS];

    (void)state;
    race_map = ft_weakvaluemap_new();
    atomic_store(&race_stage, 0);
    atomic_store(&start_gate, 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_start(&threads[t], race_worker, (void *)(intptr_t)t), 0);
    while (atomic_load(&race_stage) < NTHREADS)
        ft_safepoint();
    assert_int_equal(ft_weakvaluemap_len(race_map), NTHREADS * PER_THREAD);
    atomic_fetch_add(&race_stage, 1);
    ft_decref(race_map); /* races with the workers' value deaths */
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_join(threads[t], NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_vanish),
        cmocka_unit_test(test_map_dies_first),
        cmocka_unit_test(test_concurrent_deaths),
        cmocka_unit_test(test_map_dies_while_values_die),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
