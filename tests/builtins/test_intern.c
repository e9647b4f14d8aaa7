/* test_intern.c - ft_str_intern identity across 4 threads racing on the same
 * contents while the table grows. */
#include "ft_config.h"
#include <stdbool.h> /* before ft_test.h, which uses bool */
#include "ft_test.h"

#include "ftrt/builtins.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <stdatomic.h>

#define NTHREADS 4
#define NSTRINGS (FT_CFG_TSAN ? 4000 : 20000)

static void *results[NTHREADS][NSTRINGS];
static atomic_int start_gate;

typedef struct { int index; } worker_arg;

static void *intern_worker(void *p)
{
    worker_arg *w = p;
    char buf[48];

    atomic_fetch_add(&start_gate, 1);
    while (atomic_load(&start_gate) < NTHREADS)
        ft_safepoint();
    for (int k = 0; k < NSTRINGS; k++) {
        /* Each thread walks the strings in a different order, so first
         * insertions come from every thread. */
        static const int stride[NTHREADS] = { 1, 7, 11, 13 }; /* coprime with NSTRINGS */
        int i = (k * stride[w->index] + w->index * 97) % NSTRINGS;
        int len = snprintf(buf, sizeof buf, "shared-%d", i);

        results[w->index][i] = ft_str_intern(buf, (size_t)len);
        ft_safepoint();
    }
    return NULL;
}

static void test_intern_identity_across_threads(void **state)
{
    pthread_t threads[NTHREADS];
    worker_arg args[NTHREADS];
    char buf[48];

    (void)state;
    assert_int_equal(ft_init(NULL), 0);
    atomic_store(&start_gate, 0);
    for (int t = 0; t < NTHREADS; t++) {
        args[t].index = t;
        assert_int_equal(ft_thread_start(&threads[t], intern_worker, &args[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_join(threads[t], NULL), 0);
    for (int i = 0; i < NSTRINGS; i++) {
        int len = snprintf(buf, sizeof buf, "shared-%d", i);
        void *mine = ft_str_intern(buf, (size_t)len);

        assert_non_null(mine);
        assert_string_equal(ft_str_data(mine), buf);
        assert_true(ft_is_immortal(mine));
        for (int t = 0; t < NTHREADS; t++)
            assert_ptr_equal(results[t][i], mine);
    }
    ft_fini();
}

/* ft_fini drops the table; a later ft_init starts a fresh one. */
static void test_intern_across_reinit(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ft_init(NULL), 0);
        void *a = ft_str_intern("again", 5);
        assert_non_null(a);
        assert_ptr_equal(ft_str_intern("again", 5), a);
        assert_string_equal(ft_str_data(a), "again");
        void *n = ft_int_from_i64(7);
        assert_int_equal(ft_int_as_i64(n), 7);
        ft_fini();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intern_identity_across_threads),
        cmocka_unit_test(test_intern_across_reinit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
