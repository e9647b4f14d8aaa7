/* test_trace.c - tracing attributes bytes to the right call site, tracks
 * current and peak traced bytes, and forgets freed blocks. */
#include "ft_config.h"
#include <stdbool.h>
#include "ft_test.h"
#include "mem/mem_int.h"

#include <dlfcn.h>
#include <errno.h>

/* Non-static and not inlined, so that dladdr names them (export_dynamic). */
FT_NOINLINE void *mem_test_site_small(size_t n);
FT_NOINLINE void *mem_test_site_large(size_t n);
FT_NOINLINE void *mem_test_outer(size_t n);

void *mem_test_site_small(size_t n)
{
    void *p = ft_malloc(n);
    __asm__ volatile("" ::: "memory"); /* keep the call from becoming a tail call */
    return p;
}

void *mem_test_site_large(size_t n)
{
    void *p = ft_calloc(1, n);
    __asm__ volatile("" ::: "memory");
    return p;
}

void *mem_test_outer(size_t n)
{
    void *p = mem_test_site_small(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

static const char *symbol_of(void *pc)
{
    Dl_info info;
    if (dladdr(pc, &info) == 0 || info.dli_sname == NULL)
        return "?";
    return info.dli_sname;
}

static void test_trace_sites(void **state)
{
    (void)state;
    assert_false(ft_trace_is_tracing());
    assert_int_equal(ft_trace_start(0), -EINVAL);
    assert_int_equal(ft_trace_start(4), 0);
    assert_int_equal(ft_trace_start(4), -EALREADY);
    assert_true(ft_trace_is_tracing());

    void *small[100], *large[3];
    /* volatile: no unrolling into several call sites, and no constant
     * propagation into local clones (mem_test_outer.constprop.0) that dladdr
     * cannot name. */
    volatile int nlarge = 3;
    volatile size_t small_size = 100, large_size = 50000;
    for (int i = 0; i < 100; i++)
        small[i] = mem_test_outer(small_size);       /* 10000 bytes from mem_test_site_small */
    for (int i = 0; i < nlarge; i++)
        large[i] = mem_test_site_large(large_size);  /* 150000 bytes from mem_test_site_large */

    size_t current, peak;
    ft_trace_get_traced_memory(&current, &peak);
    assert_int_equal(current, 100 * 100 + 3 * 50000);
    assert_int_equal(peak, current);

    ft_trace_site top[4];
    size_t n = ft_trace_snapshot(top, 4);
    for (size_t i = 0; i < n; i++)
        print_message("site %zu: %zu bytes, %zu blocks, %s (%p) <- %s (%p), depth %u\n", i, top[i].bytes,
                      top[i].count, symbol_of(top[i].frames[0]), top[i].frames[0],
                      top[i].depth > 1 ? symbol_of(top[i].frames[1]) : "-",
                      top[i].depth > 1 ? top[i].frames[1] : NULL, top[i].depth);
    assert_int_equal(n, 2);
    assert_int_equal(top[0].bytes, 150000);
    assert_int_equal(top[0].count, 3);
    assert_string_equal(symbol_of(top[0].frames[0]), "mem_test_site_large");
    assert_int_equal(top[1].bytes, 10000);
    assert_int_equal(top[1].count, 100);
    assert_string_equal(symbol_of(top[1].frames[0]), "mem_test_site_small");
    assert_true(top[1].depth >= 2);
    assert_string_equal(symbol_of(top[1].frames[1]), "mem_test_outer");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ft_trace_print_top(f, 2);
    fclose(f);
    assert_non_null(strstr(text, "mem_test_site_large"));
    free(text);

    for (int i = 0; i < 3; i++)
        ft_free(large[i]);
    for (int i = 0; i < 50; i++)
        ft_free(small[i]);
    ft_trace_get_traced_memory(&current, &peak);
    assert_int_equal(current, 50 * 100);
    assert_int_equal(peak, 100 * 100 + 3 * 50000);
    n = ft_trace_snapshot(top, 4);
    assert_int_equal(n, 1);
    assert_int_equal(top[0].count, 50);

    /* realloc moves the trace. */
    small[0] = ft_realloc(small[50], 400);
    ft_trace_get_traced_memory(&current, NULL);
    assert_int_equal(current, 49 * 100 + 400);
    ft_free(small[0]);

    ft_trace_stop();
    assert_false(ft_trace_is_tracing());
    assert_int_equal(ft_trace_snapshot(top, 4), 0);
    /* Blocks allocated while tracing can be freed after it stopped. */
    for (int i = 51; i < 100; i++)
        ft_free(small[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_sites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
