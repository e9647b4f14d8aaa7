/* test_basic.c - None/True/False, int (small-int cache), str, tuple. */
#include "ft_config.h"
#include <stdbool.h> /* before ft_test.h, which uses bool */
#include "ft_test.h"

#include "ftrt/builtins.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <errno.h>

static void test_singletons(void **state)
{
    (void)state;
    assert_ptr_equal(ft_none(), ft_none());
    assert_ptr_not_equal(ft_true(), ft_false());
    assert_ptr_equal(ft_bool(true), ft_true());
    assert_ptr_equal(ft_bool(false), ft_false());
    assert_ptr_equal(ft_type_of(ft_none()), &ft_none_type);
    assert_ptr_equal(ft_type_of(ft_true()), &ft_bool_type);
    assert_true(ft_is_immortal(ft_none()));
    assert_true(ft_is_immortal(ft_true()));
    assert_true(ft_is_immortal(ft_false()));
    /* Counting an immortal object writes nothing. */
    ft_object before = *(ft_object *)ft_none();
    for (int i = 0; i < 1000; i++)
        ft_incref(ft_none());
    for (int i = 0; i < 2000; i++)
        ft_decref(ft_none());
    assert_memory_equal(&before, ft_none(), sizeof before);
}

/* Four threads hammer immortal objects with incref/decref: not a byte of
 * their headers changes (no count is written, so no cache-line traffic). */
#define HAMMER_ITERS (FT_CFG_TSAN ? 20000 : 500000)

static void *immortals[5];

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < HAMMER_ITERS; i++) {
        for (int k = 0; k < 5; k++)
            ft_incref(immortals[k]);
        for (int k = 0; k < 5; k++)
            ft_decref(immortals[k]);
        if ((i & 1023) == 0)
            ft_safepoint();
    }
    return NULL;
}

static void test_immortal_headers_untouched(void **state)
{
    (void)state;
    pthread_t threads[4];
    ft_object before[5];

    immortals[0] = ft_none();
    immortals[1] = ft_true();
    immortals[2] = ft_int_from_i64(42);
    immortals[3] = ft_tuple_new(0);
    immortals[4] = ft_str_intern("hammered", 8);
    for (int k = 0; k < 5; k++)
        memcpy(&before[k], immortals[k], sizeof(ft_object));
    for (int t = 0; t < 4; t++)
        assert_int_equal(ft_thread_start(&threads[t], hammer, NULL), 0);
    for (int t = 0; t < 4; t++)
        assert_int_equal(ft_thread_join(threads[t], NULL), 0);
    for (int k = 0; k < 5; k++)
        assert_memory_equal(&before[k], immortals[k], sizeof(ft_object));
}

static void test_int_small_cache(void **state)
{
    (void)state;
    for (int64_t v = -5; v <= 256; v++) {
        void *a = ft_int_from_i64(v);
        void *b = ft_int_from_i64(v);

        assert_ptr_equal(a, b);
        assert_true(ft_is_immortal(a));
        assert_int_equal(ft_int_as_i64(a), v);
        ft_decref(a);
        ft_decref(b);
    }
    void *big1 = ft_int_from_i64(257);
    void *big2 = ft_int_from_i64(257);

    assert_non_null(big1);
    assert_ptr_not_equal(big1, big2);
    assert_false(ft_is_immortal(big1));
    assert_int_equal(ft_int_as_i64(big1), 257);
    assert_int_equal(ft_refcount(big1), 1);
    ft_decref(big1);
    ft_decref(big2);

    void *neg = ft_int_from_i64(-6);
    assert_false(ft_is_immortal(neg));
    assert_int_equal(ft_int_as_i64(neg), -6);
    ft_decref(neg);
    void *extreme = ft_int_from_i64(INT64_MIN);
    assert_true(ft_int_as_i64(extreme) == INT64_MIN);
    ft_decref(extreme);
}

static void int_as_i64_of_str(void *arg)
{
    (void)arg; /* the forked child inherits the attached runtime */
    ft_int_as_i64(ft_str_from_cstr("x"));
}

static void test_int_as_i64_misuse_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(int_as_i64_of_str, NULL, "ft_int_as_i64: object is not an int (str)"));
}

static void test_str(void **state)
{
    (void)state;
    void *a = ft_str_from("hello", 5);
    void *b = ft_str_from_cstr("hello");
    void *c = ft_str_from("hellO", 5);
    void *e = ft_str_from(NULL, 0);
    const char with_nul[] = { 'a', '\0', 'b' };
    void *n = ft_str_from(with_nul, sizeof with_nul);

    assert_non_null(a);
    assert_ptr_not_equal(a, b);
    assert_true(ft_str_equal(a, b));
    assert_false(ft_str_equal(a, c));
    assert_int_equal(ft_str_hash(a), ft_str_hash(b));
    assert_int_not_equal(ft_str_hash(a), ft_str_hash(c));
    assert_int_equal(ft_str_len(a), 5);
    assert_string_equal(ft_str_data(a), "hello");
    assert_int_equal(ft_str_len(e), 0);
    assert_string_equal(ft_str_data(e), "");
    assert_int_equal(ft_str_len(n), 3);
    assert_memory_equal(ft_str_data(n), with_nul, 3);
    assert_int_equal(ft_str_data(n)[3], '\0');
    assert_ptr_equal(ft_type_of(a), &ft_str_type);
    ft_decref(a);
    ft_decref(b);
    ft_decref(c);
    ft_decref(e);
    ft_decref(n);
}

static void test_str_intern(void **state)
{
    (void)state;
    void *a = ft_str_intern("key", 3);
    void *b = ft_str_intern("key", 3);
    void *c = ft_str_intern("kez", 3);
    void *plain = ft_str_from_cstr("key");

    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_true(ft_is_immortal(a));
    assert_true(ft_str_equal(a, plain));
    assert_string_equal(ft_str_data(a), "key");
    /* Many distinct strings make the table grow; all stay unique. */
    char buf[32];
    void *first[600];
    for (int i = 0; i < 600; i++) {
        int len = snprintf(buf, sizeof buf, "intern-%d", i);
        first[i] = ft_str_intern(buf, (size_t)len);
        assert_non_null(first[i]);
    }
    for (int i = 0; i < 600; i++) {
        int len = snprintf(buf, sizeof buf, "intern-%d", i);
        assert_ptr_equal(ft_str_intern(buf, (size_t)len), first[i]);
        ft_safepoint();
    }
    ft_decref(plain);
}

static void str_len_of_int(void *arg)
{
    (void)arg; /* the forked child inherits the attached runtime */
    ft_str_len(ft_int_from_i64(1));
}

static void test_str_misuse_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(str_len_of_int, NULL, "ft_str_len: object is not a str (int)"));
}

static void test_tuple(void **state)
{
    (void)state;
    void *empty = ft_tuple_new(0);

    assert_ptr_equal(empty, ft_tuple_new(0));
    assert_true(ft_is_immortal(empty));
    assert_int_equal(ft_tuple_len(empty), 0);
    errno = 0;
    assert_null(ft_tuple_get(empty, 0));
    assert_int_equal(errno, ERANGE);

    void *t = ft_tuple_new(3);
    void *s = ft_str_from_cstr("x");
    void *big = ft_int_from_i64(1000);

    assert_int_equal(ft_tuple_len(t), 3);
    assert_int_equal(ft_tuple_set(t, 0, ft_int_from_i64(1)), 0);
    ft_incref(s);
    assert_int_equal(ft_tuple_set(t, 1, s), 0);
    ft_incref(big);
    assert_int_equal(ft_tuple_set(t, 2, big), 0);
    assert_int_equal(ft_refcount(big), 2);
    /* Out of range: -ERANGE, and the reference is still consumed. */
    ft_incref(big);
    assert_int_equal(ft_tuple_set(t, 3, big), -ERANGE);
    assert_int_equal(ft_refcount(big), 2);

    void *got = ft_tuple_get(t, 1);
    assert_ptr_equal(got, s);
    assert_int_equal(ft_refcount(s), 3);
    ft_decref(got);
    errno = 0;
    assert_null(ft_tuple_get(t, 3));
    assert_int_equal(errno, ERANGE);
    assert_int_equal(ft_int_as_i64(ft_tuple_get(t, 0)), 1);

    /* A tuple releases its items when it dies. */
    ft_decref(t);
    assert_int_equal(ft_refcount(s), 1);
    assert_int_equal(ft_refcount(big), 1);
    ft_decref(s);
    ft_decref(big);
}

static void test_sizeof(void **state)
{
    (void)state;
    void *s0 = ft_str_from("", 0);
    void *s5 = ft_str_from("hello", 5);
    void *t1 = ft_tuple_new(1);
    void *t3 = ft_tuple_new(3);
    void *l = ft_list_new();

    assert_int_equal(ft_sizeof(s5) - ft_sizeof(s0), 5);
    assert_int_equal(ft_sizeof(t3) - ft_sizeof(t1), 2 * sizeof(void *));
    size_t empty = ft_sizeof(l);
    assert_int_equal(ft_list_append(l, ft_none()), 0);
    assert_true(ft_sizeof(l) > empty);
    ft_decref(s0);
    ft_decref(s5);
    ft_decref(t1);
    ft_decref(t3);
    ft_decref(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_singletons),
        cmocka_unit_test(test_immortal_headers_untouched),
        cmocka_unit_test(test_int_small_cache),
        cmocka_unit_test(test_int_as_i64_misuse_aborts),
        cmocka_unit_test(test_str),
        cmocka_unit_test(test_str_intern),
        cmocka_unit_test(test_str_misuse_aborts),
        cmocka_unit_test(test_tuple),
        cmocka_unit_test(test_sizeof),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
