/* test_gil.c - GIL mode: attached threads run one at a time (a plain
 * counter incremented by 4 threads stays exact), and the forced switch is
 * fair (each of 2 CPU-bound threads gets >= 30% of the work in 1 s). */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "lock/lock.h"

#include <pthread.h>
#include <stdatomic.h>

#define N_THREADS 4
#define ITERS (FT_CFG_TSAN ? 20000 : 200000)

static long counter; /* protected by the GIL only */

static void *incrementer(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITERS; i++) {
        long v = counter;
        if ((i & 1023) == 0)
            sched_yield(); /* a preemption inside the update changes nothing */
        counter = v + 1;
        ft_safepoint(); /* where the GIL may change hands */
    }
    return NULL;
}

static void test_mode(void **state)
{
    (void)state;
    assert_int_equal(ft_mode_get(), FT_MODE_GIL);
}

static void test_mutual_exclusion(void **state)
{
    pthread_t t[N_THREADS];

    (void)state;
    counter = 0;
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(ft_thread_start(&t[i], incrementer, NULL), 0);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    assert_int_equal(counter, (long)N_THREADS * ITERS);
}

typedef struct worker {
    uint64_t work; /* written by its thread only */
} worker;

static void *cpu_bound(void *arg)
{
    worker *w = arg;
    uint64_t deadline = fti_now_ns() + 1000000000u;
    volatile uint64_t sink = 0;

    while (fti_now_ns() < deadline) {
        for (int i = 0; i < 200; i++)
            sink += (uint64_t)i * 2654435761u;
        w->work++;
        ft_safepoint();
    }
    return NULL;
}

static void test_fairness(void **state)
{
    pthread_t t[2];
    worker w[2] = { { 0 }, { 0 } };
    double share;

    (void)state;
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_start(&t[i], cpu_bound, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    share = (double)w[0].work / (double)(w[0].work + w[1].work);
    print_message("GIL fairness: %llu vs %llu units (%.1f%% / %.1f%%)\n", (unsigned long long)w[0].work,
                  (unsigned long long)w[1].work, 100 * share, 100 * (1 - share));
    assert_true(share >= 0.30 && share <= 0.70);
}

/* A blocking region releases the GIL: another thread runs meanwhile. */
static _Atomic int other_ran;

static void *run_once(void *arg)
{
    (void)arg;
    atomic_store(&other_ran, 1);
    return NULL;
}

static void test_blocking_releases_gil(void **state)
{
    pthread_t t;

    (void)state;
    assert_int_equal(ft_thread_start(&t, run_once, NULL), 0);
    ft_blocking_begin();
    while (!atomic_load(&other_ran))
        usleep(100);
    ft_blocking_end();
    assert_int_equal(ft_thread_join(t, NULL), 0);
}

static int setup(void **state)
{
    ft_config cfg;

    (void)state;
    ft_config_default(&cfg);
    cfg.mode = FT_MODE_GIL;
    return ft_init(&cfg);
}

static int teardown(void **state)
{
    (void)state;
    ft_fini();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mode),
        cmocka_unit_test(test_mutual_exclusion),
        cmocka_unit_test(test_fairness),
        cmocka_unit_test(test_blocking_releases_gil),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
