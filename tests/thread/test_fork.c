/* test_fork.c - fork() while other attached threads run: the child keeps a
 * working runtime with only the forking thread (same index), can start and
 * attach new threads, stop the world, and synchronise QSBR; the parent's
 * threads go on. Forking while other threads sit in QSBR grace periods
 * neither deadlocks (the forker is one of the readers they wait for) nor
 * leaves the child an urcu lock held by a vanished thread. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/lock.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "thread/thread.h"

#include <pthread.h>
#include <stdatomic.h>

#define N_WORKERS 4

static _Atomic int stop_workers;
static ft_mutex shared_lock = FT_MUTEX_INIT;
static uint64_t shared_count; /* protected by shared_lock */

static void *worker(void *arg)
{
    unsigned n = 0;

    (void)arg;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        ft_mutex_lock(&shared_lock);
        shared_count++;
        ft_mutex_unlock(&shared_lock);
        if ((++n & 7) == 0)
            FT_BLOCKING(sched_yield());
        ft_safepoint();
    }
    return NULL;
}

static _Atomic uint64_t grace_periods;

static void *gp_worker(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        fti_qsbr_synchronize();
        atomic_fetch_add_explicit(&grace_periods, 1, memory_order_relaxed);
        ft_safepoint();
    }
    return NULL;
}

static uint64_t child_work[2]; /* written attached by the child's threads */

static void *child_worker(void *arg)
{
    uint64_t *w = arg;

    for (int i = 0; i < 1000; i++) {
        ft_mutex_lock(&shared_lock);
        shared_count++;
        ft_mutex_unlock(&shared_lock);
        (*w)++;
        ft_safepoint();
    }
    return NULL;
}

static int child_main(uint32_t parent_index)
{
    pthread_t t[2];

    if (!ft_thread_is_attached() || ft_thread_index() != parent_index)
        return 10;
    if (FT_CFG_TSAN) {
        /* ThreadSanitizer cannot follow threads created in the child of a
         * multithreaded fork (glibc reuses the vanished threads' ids: "dup
         * thread with used id"); the debug build covers that part. */
        ft_stop_the_world();
        ft_start_the_world();
        fti_qsbr_synchronize();
        ft_mutex_lock(&shared_lock);
        shared_count++;
        ft_mutex_unlock(&shared_lock);
        return 0;
    }
    if (ft_thread_start(&t[0], child_worker, &child_work[0]) != 0 ||
        ft_thread_start(&t[1], child_worker, &child_work[1]) != 0)
        return 11;
    /* the new threads get fresh indexes: the parent's others are zombies */
    ft_stop_the_world();
    ft_start_the_world();
    fti_qsbr_synchronize();
    if (ft_thread_join(t[0], NULL) != 0 || ft_thread_join(t[1], NULL) != 0)
        return 12;
    if (child_work[0] != 1000 || child_work[1] != 1000)
        return 13;
    return 0;
}

static void test_fork_while_threads_run(void **state)
{
    pthread_t t[N_WORKERS];
    uint32_t me = ft_thread_index();
    int status = 0;
    pid_t pid;

    (void)state;
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < N_WORKERS; i++)
        assert_int_equal(ft_thread_start(&t[i], worker, NULL), 0);
    for (int round = 0; round < 3; round++) {
        FT_BLOCKING(usleep(20000));
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(child_main(me));
        FT_BLOCKING(waitpid(pid, &status, 0));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < N_WORKERS; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    ft_mutex_lock(&shared_lock);
    assert_true(shared_count > 0);
    ft_mutex_unlock(&shared_lock);
}

static void test_fork_during_grace_periods(void **state)
{
    pthread_t t[2];
    uint32_t me = ft_thread_index();
    int status = 0;

    (void)state;
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_start(&t[i], gp_worker, NULL), 0);
    for (int round = 0; round < 20; round++) {
        /* a few grace periods of the workers' need our quiescent states */
        for (int k = 0; k < 50; k++)
            ft_safepoint();
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (ft_thread_index() != me)
                _exit(10);
            fti_qsbr_synchronize();
            ft_stop_the_world();
            ft_start_the_world();
            fti_qsbr_synchronize();
            _exit(0);
        }
        FT_BLOCKING(waitpid(pid, &status, 0));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    assert_true(atomic_load(&grace_periods) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_while_threads_run),
        cmocka_unit_test(test_fork_during_grace_periods),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
