/* test_late.c - a thread that never reaches a safepoint does not hang the
 * process silently: a stop that waits longer than cfg->stw_timeout_ms
 * prints which thread index is late, and keeps waiting until it arrives. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

static _Atomic int late_may_poll;
static _Atomic int late_running;
static _Atomic uint32_t late_index;

static void *late_thread(void *arg)
{
    (void)arg;
    atomic_store(&late_index, ft_thread_index());
    atomic_store(&late_running, 1);
    /* Busy without a safepoint until told otherwise. */
    while (!atomic_load(&late_may_poll))
        ;
    ft_safepoint();
    return NULL;
}

static void *releaser(void *arg)
{
    (void)arg;
    usleep(FT_CFG_TSAN ? 400000 : 250000); /* several timeouts of 50 ms */
    atomic_store(&late_may_poll, 1);
    return NULL;
}

static void test_late_thread_is_reported(void **state)
{
    pthread_t t, r;
    char path[] = "/tmp/ftrt-late-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    char buf[4096] = { 0 };
    char expect[128];
    ssize_t n;

    (void)state;
    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(ft_thread_start(&t, late_thread, NULL), 0);
    while (!atomic_load(&late_running))
        FT_BLOCKING(usleep(100));
    assert_int_equal(pthread_create(&r, NULL, releaser, NULL), 0);
    fflush(stderr);
    dup2(fd, 2);
    ft_stop_the_world(); /* returns once the late thread finally polls */
    ft_start_the_world();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(ft_thread_join(t, NULL), 0);
    assert_int_equal(ft_thread_join(r, NULL), 0);
    n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    snprintf(expect, sizeof expect, "ftrt: warning: ft_stop_the_world: thread index %u has not reached a safepoint",
             atomic_load(&late_index));
    if (strstr(buf, expect) == NULL)
        fail_msg("expected \"%s\" in:\n%s", expect, buf);
    /* one line per report: no other thread is named */
    assert_null(strstr(buf, "thread index 1 "));
}

static int setup(void **state)
{
    ft_config cfg;

    (void)state;
    ft_config_default(&cfg);
    /* Free-threaded whatever FTRT_GIL says: in GIL mode a thread that never
     * polls starves every other thread of the GIL, so nobody could even ask
     * for the stop (the same holds for C code that never releases CPython's GIL). */
    cfg.mode = FT_MODE_FREE_THREADED;
    cfg.stw_timeout_ms = 50;
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
        cmocka_unit_test(test_late_thread_is_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
