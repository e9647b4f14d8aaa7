/* test_attach.c - attaching, indexes, blocking regions, thread start/join,
 * the exit destructor, and the misuse paths that must abort with one line. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "thread/thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

static void test_main_attached(void **state)
{
    (void)state;
    assert_true(ft_thread_is_attached());
    assert_int_equal(ft_thread_index(), 1);
    assert_int_equal(ft_tls_head.owner_tag, 1);
    assert_int_equal(ft_thread_attach(), -EALREADY);
    ft_safepoint();
}

static void *report_index(void *arg)
{
    *(uint32_t *)arg = ft_thread_index();
    assert_int_equal(ft_tls_head.owner_tag, ft_thread_index());
    return arg;
}

static void test_start_join_and_index_reuse(void **state)
{
    pthread_t t;
    uint32_t first = 0, second = 0;
    void *result = NULL;

    (void)state;
    assert_int_equal(ft_thread_start(&t, report_index, &first), 0);
    assert_int_equal(ft_thread_join(t, &result), 0);
    assert_ptr_equal(result, &first);
    assert_int_equal(first, 2);
    assert_int_equal(ft_thread_start(&t, report_index, &second), 0);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_int_equal(second, 2); /* index 2 was released and reused */
    assert_true(fti_thread_max_index() >= 2);
}

static void *attach_and_exit(void *arg)
{
    (void)arg;
    assert_int_equal(ft_thread_attach(), 0);
    *(uint32_t *)arg = ft_thread_index();
    return NULL; /* exits attached: the key destructor detaches */
}

static void *exit_in_blocking_region(void *arg)
{
    assert_int_equal(ft_thread_attach(), 0);
    *(uint32_t *)arg = ft_thread_index();
    ft_blocking_begin();
    return NULL;
}

static void test_exit_while_attached_is_cleaned_up(void **state)
{
    pthread_t t;
    uint32_t idx = 0, again = 0;

    (void)state;
    ft_blocking_begin();
    assert_int_equal(pthread_create(&t, NULL, attach_and_exit, &idx), 0);
    pthread_join(t, NULL);
    assert_int_equal(pthread_create(&t, NULL, exit_in_blocking_region, &again), 0);
    pthread_join(t, NULL);
    ft_blocking_end();
    assert_int_equal(idx, 2);
    assert_int_equal(again, 2); /* the first thread's index was freed at exit */
    /* and stop-the-world does not wait for the vanished threads */
    ft_stop_the_world();
    ft_start_the_world();
}

static void test_blocking_regions_nest(void **state)
{
    (void)state;
    ft_blocking_begin();
    ft_blocking_begin();
    ft_blocking_end();
    ft_blocking_end();
    FT_BLOCKING(usleep(10));
    ft_safepoint();
}

static void *raw_thread_view(void *arg)
{
    (void)arg;
    assert_false(ft_thread_is_attached());
    assert_int_equal(ft_thread_index(), 0);
    assert_int_equal(ft_tls_head.owner_tag, UINT32_MAX);
    assert_int_equal(atomic_load(&ft_tls_head.pending), FT_PENDING_UNATTACHED);
    return NULL;
}

static void test_raw_thread_is_unattached(void **state)
{
    pthread_t t;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, raw_thread_view, NULL), 0);
    assert_int_equal(ft_thread_join(t, NULL), 0);
}

/* ---- misuse: each runs in a forked child and must abort with one line ---- */

static void safepoint_unattached(void *arg)
{
    (void)arg;
    ft_thread_detach();
    ft_safepoint();
}

static void detach_twice(void *arg)
{
    (void)arg;
    ft_thread_detach();
    ft_thread_detach();
}

static void blocking_end_without_begin(void *arg)
{
    (void)arg;
    ft_blocking_end();
}

static void safepoint_in_blocking_region(void *arg)
{
    (void)arg;
    ft_blocking_begin();
    ft_safepoint();
}

static void start_world_not_stopped(void *arg)
{
    (void)arg;
    ft_start_the_world();
}

static void test_misuse_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(safepoint_unattached, NULL,
                                    "ftrt: fatal: ft_safepoint: calling thread is not attached"));
    assert_true(ft_test_aborts_with(detach_twice, NULL,
                                    "ftrt: fatal: ft_thread_detach: calling thread is not attached (detached twice?)"));
    assert_true(ft_test_aborts_with(blocking_end_without_begin, NULL,
                                    "ftrt: fatal: ft_blocking_end: no matching ft_blocking_begin"));
    assert_true(ft_test_aborts_with(safepoint_in_blocking_region, NULL,
                                    "ftrt: fatal: ft_safepoint: called inside a blocking region"));
    assert_true(ft_test_aborts_with(start_world_not_stopped, NULL,
                                    "ftrt: fatal: ft_start_the_world: the world is not stopped by this thread"));
}

/* ---- hooks ---- */
static _Atomic int hook_bits_seen;

static void on_safepoint(ft_thread_head *self, uint32_t bits)
{
    (void)self;
    atomic_fetch_or(&hook_bits_seen, (int)bits);
}

static void test_request_reaches_hook(void **state)
{
    static const fti_thread_hooks h = { .on_safepoint = on_safepoint, .safepoint_mask = FT_PENDING_GC };

    (void)state;
    fti_thread_add_hooks(&h);
    assert_true(fti_thread_request(ft_thread_index(), FT_PENDING_GC));
    assert_false(fti_thread_request(777, FT_PENDING_GC));
    ft_safepoint();
    assert_int_equal(atomic_load(&hook_bits_seen), FT_PENDING_GC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_attached),
        cmocka_unit_test(test_start_join_and_index_reuse),
        cmocka_unit_test(test_exit_while_attached_is_cleaned_up),
        cmocka_unit_test(test_blocking_regions_nest),
        cmocka_unit_test(test_raw_thread_is_unattached),
        cmocka_unit_test(test_misuse_aborts),
        cmocka_unit_test(test_request_reaches_hook),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
