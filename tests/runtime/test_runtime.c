/* test_runtime.c - ft_init/ft_fini life cycle and the configuration. */
#include "ft_test.h"

#include "ftrt.h"
#include "runtime/runtime.h"

#include <errno.h>

static void test_defaults(void **state)
{
    ft_config cfg;

    (void)state;
    unsetenv("FTRT_GIL");
    unsetenv("FTRT_GC_THRESHOLD");
    ft_config_default(&cfg);
    assert_int_equal(cfg.mode, FT_MODE_FREE_THREADED);
    assert_int_equal(cfg.gil_switch_interval_us, 5000);
    assert_int_equal(cfg.gc_threshold[0], 700);
    assert_int_equal(cfg.gc_threshold[1], 10);
    assert_int_equal(cfg.gc_threshold[2], 10);
    assert_true(cfg.gc_enabled);
}

static void test_environment(void **state)
{
    ft_config cfg;

    (void)state;
    setenv("FTRT_GIL", "1", 1);
    setenv("FTRT_GC_THRESHOLD", "2000,5,3", 1);
    setenv("FTRT_GIL_SWITCH_US", "250", 1);
    ft_config_default(&cfg);
    assert_int_equal(cfg.mode, FT_MODE_GIL);
    assert_int_equal(cfg.gil_switch_interval_us, 250);
    assert_int_equal(cfg.gc_threshold[0], 2000);
    assert_int_equal(cfg.gc_threshold[1], 5);
    assert_int_equal(cfg.gc_threshold[2], 3);

    /* Malformed values keep the defaults. */
    setenv("FTRT_GIL", "yes", 1);
    setenv("FTRT_GC_THRESHOLD", "12,abc", 1);
    setenv("FTRT_GIL_SWITCH_US", "-5", 1);
    ft_config_default(&cfg);
    assert_int_equal(cfg.mode, FT_MODE_FREE_THREADED);
    assert_int_equal(cfg.gc_threshold[0], 700);
    assert_int_equal(cfg.gil_switch_interval_us, 5000);
    unsetenv("FTRT_GIL");
    unsetenv("FTRT_GC_THRESHOLD");
    unsetenv("FTRT_GIL_SWITCH_US");
}

static void test_parse_threshold(void **state)
{
    unsigned t[3] = { 1, 2, 3 };

    (void)state;
    assert_int_equal(fti_config_parse_threshold("900", t), 0);
    assert_int_equal(t[0], 900);
    assert_int_equal(t[1], 2);
    assert_int_equal(fti_config_parse_threshold("", t), -EINVAL);
    assert_int_equal(fti_config_parse_threshold("1,2,3,4", t), -EINVAL);
    assert_int_equal(fti_config_parse_threshold("1,,", t), 0); /* strtok skips empties */
    assert_int_equal(fti_config_parse_threshold("99999999999999", t), -EINVAL);
}

static void test_init_fini_cycles(void **state)
{
    ft_config cfg;

    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        ft_config_default(&cfg);
        cfg.mode = mode ? FT_MODE_GIL : FT_MODE_FREE_THREADED;
        assert_int_equal(ft_init(&cfg), 0);
        assert_int_equal(ft_mode_get(), cfg.mode);
        assert_true(ft_thread_is_attached());
        assert_int_equal(ft_init(&cfg), -EALREADY);
        void *p = ft_malloc(100);
        assert_non_null(p);
        ft_free(p);
        ft_fini();
        assert_false(ft_thread_is_attached());
    }
}

static void test_invalid_config(void **state)
{
    ft_config cfg;

    (void)state;
    ft_config_default(&cfg);
    cfg.stw_timeout_ms = 0;
    assert_int_equal(ft_init(&cfg), -EINVAL);
    /* A failed init leaves the runtime startable. */
    ft_config_default(&cfg);
    assert_int_equal(ft_init(&cfg), 0);
    ft_fini();
}

static void fini_without_init(void *arg)
{
    (void)arg;
    ft_fini();
}

static void test_fini_without_init_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(fini_without_init, NULL, "ft_fini: runtime is not running"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_parse_threshold),
        cmocka_unit_test(test_init_fini_cycles),
        cmocka_unit_test(test_invalid_config),
        cmocka_unit_test(test_fini_without_init_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
