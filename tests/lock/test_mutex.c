/* test_mutex.c - ft_mutex and the parking lot: mutual exclusion under
 * contention, trylock, misuse, parking validation/timeouts, and that a
 * thread parked on a lock never delays a stop-the-world. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/lock.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "lock/lock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define N_THREADS 4
#define ITERS (FT_CFG_TSAN ? 20000 : 200000)

static ft_mutex counter_lock = FT_MUTEX_INIT;
static long counter; /* protected by counter_lock */

static void *contend(void *arg)
{
    bool attach = arg != NULL;

    if (attach)
        assert_int_equal(ft_thread_attach(), 0);
    for (int i = 0; i < ITERS; i++) {
        ft_mutex_lock(&counter_lock);
        long v = counter;
        if ((i & 255) == 0)
            sched_yield(); /* widen the window inside the section */
        counter = v + 1;
        ft_mutex_unlock(&counter_lock);
        if (attach)
            ft_safepoint();
    }
    if (attach)
        ft_thread_detach();
    return NULL;
}

static void run_contention(bool attach)
{
    pthread_t t[N_THREADS];

    counter = 0;
    ft_blocking_begin();
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, contend, attach ? (void *)1 : NULL), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    ft_blocking_end();
    assert_int_equal(counter, (long)N_THREADS * ITERS);
    assert_false(ft_mutex_is_locked(&counter_lock));
}

static void test_mutual_exclusion_unattached(void **state)
{
    (void)state;
    run_contention(false);
}

static void test_mutual_exclusion_attached(void **state)
{
    (void)state;
    run_contention(true);
}

static void test_trylock(void **state)
{
    ft_mutex m = FT_MUTEX_INIT;

    (void)state;
    assert_false(ft_mutex_is_locked(&m));
    assert_true(ft_mutex_trylock(&m));
    assert_true(ft_mutex_is_locked(&m));
    assert_false(ft_mutex_trylock(&m));
    ft_mutex_unlock(&m);
    assert_false(ft_mutex_is_locked(&m));
    ft_mutex_lock(&m);
    assert_true(ft_mutex_is_locked(&m));
    ft_mutex_unlock(&m);
    assert_int_equal(sizeof(ft_mutex), 1);
}

static void unlock_unlocked(void *arg)
{
    ft_mutex m = FT_MUTEX_INIT;

    (void)arg;
    ft_mutex_unlock(&m);
}

static void test_unlock_unlocked_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(unlock_unlocked, NULL, "ft_mutex_unlock: mutex"));
}

static void test_park_validation_and_timeout(void **state)
{
    _Atomic uint32_t word = 5;
    uint32_t expected = 4;
    uint64_t t0;

    (void)state;
    assert_int_equal(fti_parking_lot_park(&word, &expected, 4, -1, NULL, false), FTI_PARK_AGAIN);
    expected = 5;
    t0 = fti_now_ns();
    assert_int_equal(fti_parking_lot_park(&word, &expected, 4, 20 * 1000000, NULL, false), FTI_PARK_TIMEOUT);
    assert_true(fti_now_ns() - t0 >= 20 * 1000000u);
    assert_false(fti_parking_lot_unpark(&word, NULL, NULL));
}

typedef struct park_ctx {
    _Atomic uint32_t word;
    _Atomic int parked_result;
    int token;
} park_ctx;

static void *parker(void *arg)
{
    park_ctx *c = arg;
    uint32_t expected = 0;
    int rc;

    do {
        rc = fti_parking_lot_park(&c->word, &expected, 4, -1, &c->token, false);
        /* a spurious AGAIN cannot happen: word stays 0 until the unpark */
    } while (rc != FTI_PARK_OK);
    atomic_store(&c->parked_result, 1);
    return NULL;
}

static void unpark_cb(void *arg, void *park_arg, bool more)
{
    park_ctx *c = arg;

    /* NULL when the parker has not parked yet: the caller retries. */
    assert_true(park_arg == NULL || park_arg == &c->token);
    assert_false(more);
}

static void test_park_unpark(void **state)
{
    park_ctx c = { .word = 0, .parked_result = 0 };
    pthread_t t;

    (void)state;
    ft_blocking_begin();
    assert_int_equal(pthread_create(&t, NULL, parker, &c), 0);
    while (!fti_parking_lot_unpark(&c.word, unpark_cb, &c))
        usleep(1000);
    pthread_join(t, NULL);
    ft_blocking_end();
    assert_int_equal(atomic_load(&c.parked_result), 1);
}

/* A thread parked on a contended mutex is detached: a stop-the-world
 * completes while the lock is still held by a thread in a blocking region. */
static ft_mutex held_lock = FT_MUTEX_INIT;
static _Atomic int holder_has_lock;
static _Atomic int holder_released;
static _Atomic int waiter_started;
static int waiter_got_lock; /* written attached by the waiter, read after join */

static void *holder(void *arg)
{
    (void)arg;
    ft_mutex_lock(&held_lock);
    atomic_store(&holder_has_lock, 1);
    FT_BLOCKING(usleep(FT_CFG_TSAN ? 800000 : 400000));
    atomic_store(&holder_released, 1);
    ft_mutex_unlock(&held_lock);
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    atomic_store(&waiter_started, 1);
    ft_mutex_lock(&held_lock);
    waiter_got_lock = 1;
    ft_mutex_unlock(&held_lock);
    return NULL;
}

static void test_parked_waiter_does_not_delay_stop(void **state)
{
    pthread_t h, w;

    (void)state;
    assert_int_equal(ft_thread_start(&h, holder, NULL), 0);
    while (!atomic_load(&holder_has_lock))
        FT_BLOCKING(usleep(1000));
    assert_int_equal(ft_thread_start(&w, waiter, NULL), 0);
    while (!atomic_load(&waiter_started))
        FT_BLOCKING(usleep(1000));
    FT_BLOCKING(usleep(50000)); /* let the waiter spin out and park */
    ft_stop_the_world();
    /* Stopped although the waiter is still waiting for the lock. */
    assert_int_equal(atomic_load(&holder_released), 0);
    assert_true(ft_mutex_is_locked(&held_lock));
    ft_start_the_world();
    assert_int_equal(ft_thread_join(h, NULL), 0);
    assert_int_equal(ft_thread_join(w, NULL), 0);
    assert_int_equal(waiter_got_lock, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trylock),
        cmocka_unit_test(test_mutual_exclusion_unattached),
        cmocka_unit_test(test_mutual_exclusion_attached),
        cmocka_unit_test(test_unlock_unlocked_aborts),
        cmocka_unit_test(test_park_validation_and_timeout),
        cmocka_unit_test(test_park_unpark),
        cmocka_unit_test(test_parked_waiter_does_not_delay_stop),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
