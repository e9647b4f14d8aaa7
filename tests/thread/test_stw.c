/* test_stw.c - stop-the-world: 8 threads spinning on safepoints and 2 in
 * blocking regions; attach/detach churn during stops; nested requests from
 * two threads; holds on detached threads (try_suspend); pause statistics.
 * Every worker writes its progress counter with plain stores while
 * attached and the stopper reads them with plain loads while the world is
 * stopped: under ThreadSanitizer this checks the protocol's
 * happens-before edges, and in every build that nothing moves during a stop. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "thread/thread.h"

#include <pthread.h>
#include <stdatomic.h>

#define N_SPIN 8
#define N_BLOCK 2
#define ROUNDS (FT_CFG_TSAN ? 20 : 100)

static _Atomic int stop_workers;
static uint64_t progress[N_SPIN + N_BLOCK]; /* written attached by its worker only */

static void *spinner(void *arg)
{
    uint64_t *p = arg;

    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        (*p)++;
        ft_safepoint();
    }
    return NULL;
}

static void *blocker(void *arg)
{
    uint64_t *p = arg;

    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        FT_BLOCKING(usleep(200));
        (*p)++;
        ft_safepoint();
    }
    return NULL;
}

static void check_frozen(size_t n)
{
    uint64_t snap[N_SPIN + N_BLOCK];

    assert_true(fti_world_is_stopped());
    for (size_t i = 0; i < n; i++)
        snap[i] = progress[i];
    usleep(500);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(snap[i], progress[i]);
}

static void test_spinners_and_blockers(void **state)
{
    pthread_t t[N_SPIN + N_BLOCK];
    ft_pause_stats tts, dur;

    (void)state;
    atomic_store(&stop_workers, 0);
    ft_thread_reset_pause_stats();
    for (int i = 0; i < N_SPIN; i++)
        assert_int_equal(ft_thread_start(&t[i], spinner, &progress[i]), 0);
    for (int i = N_SPIN; i < N_SPIN + N_BLOCK; i++)
        assert_int_equal(ft_thread_start(&t[i], blocker, &progress[i]), 0);
    for (int r = 0; r < ROUNDS; r++) {
        ft_stop_the_world();
        check_frozen(N_SPIN + N_BLOCK);
        ft_start_the_world();
        assert_false(fti_world_is_stopped());
        FT_BLOCKING(usleep(1000));
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < N_SPIN + N_BLOCK; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    for (int i = 0; i < N_SPIN + N_BLOCK; i++)
        assert_true(progress[i] > 0);
    ft_thread_get_pause_stats(&tts, &dur);
    assert_int_equal(tts.count, ROUNDS);
    assert_int_equal(dur.count, ROUNDS);
    assert_true(dur.max_ns >= tts.max_ns);
    assert_true(ft_pause_stats_percentile(&tts, 50) <= tts.max_ns);
    assert_int_equal(ft_pause_stats_percentile(&tts, 100), tts.max_ns);
    print_message("time to safepoint (10 threads, 2 cores): median <= %llu ns, max %llu ns\n",
                  (unsigned long long)ft_pause_stats_percentile(&tts, 50), (unsigned long long)tts.max_ns);
}

/* ---- churn: raw threads attach and detach repeatedly during stops ---- */
#define N_CHURN 4
static uint64_t churn_progress[N_CHURN]; /* written attached only */
static _Atomic uint64_t churn_cycles;

static void *churner(void *arg)
{
    uint64_t *p = arg;

    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        assert_int_equal(ft_thread_attach(), 0);
        for (int i = 0; i < 50; i++) {
            (*p)++;
            ft_safepoint();
        }
        ft_thread_detach();
        atomic_fetch_add_explicit(&churn_cycles, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_attach_detach_churn_during_stops(void **state)
{
    pthread_t t[N_CHURN];

    (void)state;
    atomic_store(&stop_workers, 0);
    ft_blocking_begin();
    for (int i = 0; i < N_CHURN; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churner, &churn_progress[i]), 0);
    ft_blocking_end();
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t snap[N_CHURN];

        ft_stop_the_world();
        for (int i = 0; i < N_CHURN; i++)
            snap[i] = churn_progress[i];
        usleep(300);
        for (int i = 0; i < N_CHURN; i++)
            assert_int_equal(snap[i], churn_progress[i]);
        ft_start_the_world();
        FT_BLOCKING(usleep(500));
    }
    atomic_store(&stop_workers, 1);
    ft_blocking_begin();
    for (int i = 0; i < N_CHURN; i++)
        pthread_join(t[i], NULL);
    ft_blocking_end();
    assert_true(atomic_load(&churn_cycles) > 0);
}

/* ---- two requesters: each stop is exclusive, nested stops count ---- */
static uint32_t world_owner;  /* written only while the world is stopped */
static uint64_t stops_done;   /* idem */

static void *requester(void *arg)
{
    uint32_t me = ft_thread_index();

    for (int r = 0; r < ROUNDS; r++) {
        ft_stop_the_world();
        ft_stop_the_world(); /* nested by the same thread */
        world_owner = me;
        usleep(100);
        assert_int_equal(world_owner, me);
        stops_done++;
        ft_start_the_world();
        assert_true(fti_world_is_stopped()); /* still stopped: depth 1 */
        ft_start_the_world();
        ft_safepoint();
    }
    (void)arg;
    return NULL;
}

static void test_nested_requests_from_two_threads(void **state)
{
    pthread_t t[2 + 2];

    (void)state;
    atomic_store(&stop_workers, 0);
    stops_done = 0;
    assert_int_equal(ft_thread_start(&t[2], spinner, &progress[0]), 0);
    assert_int_equal(ft_thread_start(&t[3], blocker, &progress[N_SPIN]), 0);
    assert_int_equal(ft_thread_start(&t[0], requester, NULL), 0);
    assert_int_equal(ft_thread_start(&t[1], requester, NULL), 0);
    for (int r = 0; r < ROUNDS / 2; r++) {
        ft_stop_the_world(); /* the main thread competes too */
        world_owner = 0;
        stops_done++;
        ft_start_the_world();
        ft_safepoint();
    }
    assert_int_equal(ft_thread_join(t[0], NULL), 0);
    assert_int_equal(ft_thread_join(t[1], NULL), 0);
    atomic_store(&stop_workers, 1);
    assert_int_equal(ft_thread_join(t[2], NULL), 0);
    assert_int_equal(ft_thread_join(t[3], NULL), 0);
    ft_stop_the_world();
    assert_int_equal(stops_done, 2 * ROUNDS + ROUNDS / 2);
    ft_start_the_world();
}

/* ---- merge holds on a detached thread ---- */
static _Atomic int sleeper_in_region;
static _Atomic int sleeper_left_region;
static _Atomic uint32_t sleeper_index;

static void *sleeper(void *arg)
{
    (void)arg;
    atomic_store(&sleeper_index, ft_thread_index());
    ft_blocking_begin();
    atomic_store(&sleeper_in_region, 1);
    usleep(20000);
    ft_blocking_end(); /* waits while held */
    atomic_store(&sleeper_left_region, 1);
    return NULL;
}

static void test_try_suspend_detached(void **state)
{
    pthread_t t;
    uint32_t idx;

    (void)state;
    assert_false(fti_thread_try_suspend_detached(ft_thread_index())); /* attached: no */
    assert_false(fti_thread_try_suspend_detached(999));               /* free index */
    assert_int_equal(ft_thread_start(&t, sleeper, NULL), 0);
    while (!atomic_load(&sleeper_in_region))
        FT_BLOCKING(usleep(100));
    idx = atomic_load(&sleeper_index);
    assert_true(fti_thread_try_suspend_detached(idx));
    assert_false(fti_thread_try_suspend_detached(idx)); /* already held */
    /* a stop while the merger holds it still completes */
    ft_stop_the_world();
    ft_start_the_world();
    FT_BLOCKING(usleep(60000)); /* the sleeper's region is over; it must still wait */
    assert_int_equal(atomic_load(&sleeper_left_region), 0);
    fti_thread_resume_suspended(idx);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&sleeper_left_region), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spinners_and_blockers),
        cmocka_unit_test(test_attach_detach_churn_during_stops),
        cmocka_unit_test(test_nested_requests_from_two_threads),
        cmocka_unit_test(test_try_suspend_detached),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
