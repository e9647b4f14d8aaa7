/* test_fault.c - injected OS mapping failures give NULL + ENOMEM and leave
 * the heap usable; foreign, interior and double frees abort with one line. */
#include "ft_config.h"
#include <stdbool.h>
#include "ft_test.h"
#include "mem/mem_int.h"

#include <errno.h>
#include <pthread.h>

static void test_fail_large_mapping(void **state)
{
    (void)state;
    ft_mem_stats a, b;
    ft_mem_get_stats(&a);
    ft_mem_fail_os_after(1);
    errno = 0;
    assert_null(ft_malloc(1 << 20));
    assert_int_equal(errno, ENOMEM);
    void *p = ft_malloc(1 << 20);
    assert_non_null(p);
    memset(p, 1, 1 << 20);
    ft_free(p);
    ft_mem_get_stats(&b);
    assert_int_equal(b.os_map_failures, a.os_map_failures + 1);
}

static void test_fail_arena_mapping_keeps_heap_consistent(void **state)
{
    (void)state;
    /* Allocate three arenas' worth; the third OS request from now (an arena
     * or a map leaf) fails. Allocation returns NULL once, then goes on. */
    size_t maxb = 3 * ((size_t)1 << FT_CFG_ARENA_SHIFT) / 256; /* three arenas' worth */
    unsigned char **blocks = calloc(maxb, sizeof *blocks);
    size_t n = 0, failures = 0;
    ft_mem_fail_os_after(3);
    while (n < maxb) {
        errno = 0;
        unsigned char *p = ft_malloc(256);
        if (p == NULL) {
            assert_int_equal(errno, ENOMEM);
            failures++;
            continue;
        }
        memset(p, (int)(n & 0xff), 256);
        blocks[n++] = p;
    }
    assert_int_equal(failures, 1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(blocks[i][0], (unsigned char)(i & 0xff));
        assert_int_equal(blocks[i][255], (unsigned char)(i & 0xff));
        ft_free(blocks[i]);
    }
    free(blocks);
    ft_mem_fail_os_after(0);
}

static void free_stack_pointer(void *arg)
{
    (void)arg;
    int x = 0;
    ft_free(&x);
}

static void free_libc_pointer(void *arg)
{
    (void)arg;
    ft_free(malloc(32));
}

static void free_interior(void *arg)
{
    (void)arg;
    char *p = ft_malloc(64);
    ft_free(p + 16);
}

static void *free_arg_main(void *arg)
{
    ft_free(arg);
    return NULL;
}

static void free_interior_remote(void *arg)
{
    (void)arg;
    char *p = ft_malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, free_arg_main, p + 16);
    pthread_join(t, NULL);
}

static void double_free_small(void *arg)
{
    (void)arg;
    void *keep = ft_malloc(32);
    void *p = ft_malloc(32);
    ft_free(p);
    ft_free(p);
    ft_free(keep);
}

static void double_free_large(void *arg)
{
    (void)arg;
    void *p = ft_malloc(100000);
    ft_free(p);
    ft_free(p);
}

static void *free_twice_main(void *arg)
{
    ft_free(arg);
    ft_free(arg);
    return NULL;
}

static void double_free_remote(void *arg)
{
    (void)arg;
    void *p = ft_malloc(16);
    pthread_t t;
    pthread_create(&t, NULL, free_twice_main, p);
    pthread_join(t, NULL);
    /* The owner takes the remote frees back when its page runs dry. */
    for (int i = 0; i < 100000; i++)
        ft_malloc(16);
}

static void usable_size_foreign(void *arg)
{
    (void)arg;
    int x = 0;
    ft_malloc_usable_size(&x);
}

static void test_bad_frees_abort(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(free_stack_pointer, NULL, "ftrt: fatal: ft_free: "));
    assert_true(ft_test_aborts_with(free_stack_pointer, NULL, "is not a live ftrt block (foreign pointer"));
    assert_true(ft_test_aborts_with(free_libc_pointer, NULL, "is not a live ftrt block (foreign pointer"));
    /* The owner's fast path checks block starts in debug builds only. */
    if (FT_CFG_DEBUG_LEVEL >= 2)
        assert_true(ft_test_aborts_with(free_interior, NULL, "is not the start of an ftrt block"));
    assert_true(ft_test_aborts_with(free_interior_remote, NULL, "is not the start of an ftrt block"));
    assert_true(ft_test_aborts_with(double_free_small, NULL, "ft_free: double free of"));
    assert_true(ft_test_aborts_with(double_free_large, NULL, "double free of a large block"));
    assert_true(ft_test_aborts_with(double_free_remote, NULL, "double free"));
    assert_true(ft_test_aborts_with(usable_size_foreign, NULL, "ft_malloc_usable_size: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_large_mapping),
        cmocka_unit_test(test_fail_arena_mapping_keeps_heap_consistent),
        cmocka_unit_test(test_bad_frees_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
