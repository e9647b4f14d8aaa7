/* test_alloc.c - every size class, alignment, usable size, calloc, realloc
 * across classes, large blocks, bad sizes. */
#include "ft_config.h"
#include <stdbool.h>
#include "ft_test.h"
#include "mem/mem_int.h"

#include <errno.h>

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static bool check(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            return false;
    return true;
}

static void test_every_size_class(void **state)
{
    (void)state;
    /* Every small request size maps to the class of the next 16-byte step. */
    for (size_t n = 1; n <= FT_MEM_SMALL_MAX; n++) {
        unsigned cls = fti_size_class(n);
        assert_true(cls < FT_MEM_SMALL_CLASSES);
        assert_int_equal(fti_class_size(cls), (n + 15) / 16 * 16);
    }
    /* Medium classes: monotone, tight (next class size never below n). */
    for (size_t n = FT_MEM_SMALL_MAX + 1; n <= FTI_MEDIUM_MAX; n++) {
        unsigned cls = fti_size_class(n);
        assert_true(cls >= FT_MEM_SMALL_CLASSES && cls < FT_MEM_CLASSES);
        assert_true(fti_class_size(cls) >= n);
        assert_true(fti_class_size(cls - 1) < n);
    }
    /* Allocate, fill and check many blocks of every class at once. */
    enum { PER_CLASS = 40 };
    static unsigned char *blocks[FT_MEM_CLASSES][PER_CLASS];
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++) {
        size_t sz = fti_class_size(c);
        if (sz > FTI_MEDIUM_MAX)
            continue;
        for (unsigned i = 0; i < PER_CLASS; i++) {
            size_t n = sz - (i % 16);
            blocks[c][i] = ft_malloc(n);
            assert_non_null(blocks[c][i]);
            assert_int_equal((uintptr_t)blocks[c][i] % 16, 0);
            assert_int_equal(ft_malloc_usable_size(blocks[c][i]), sz);
            fill(blocks[c][i], n, c * 31 + i);
        }
    }
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++) {
        size_t sz = fti_class_size(c);
        if (sz > FTI_MEDIUM_MAX)
            continue;
        for (unsigned i = 0; i < PER_CLASS; i++) {
            assert_true(check(blocks[c][i], sz - (i % 16), c * 31 + i));
            assert_int_equal(fti_mem_kind_of(blocks[c][i]), FTI_KIND_RAW);
        }
        for (unsigned i = 0; i < PER_CLASS; i++)
            ft_free(blocks[c][i]);
    }
}

static void test_zero_and_distinct(void **state)
{
    (void)state;
    void *a = ft_malloc(0), *b = ft_malloc(0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_true(ft_malloc_usable_size(a) >= 1);
    ft_free(a);
    ft_free(b);
    ft_free(NULL);
    assert_int_equal(ft_malloc_usable_size(NULL), 0);
}

static void test_calloc_zero_and_overflow(void **state)
{
    (void)state;
    /* Dirty a block, free it, calloc the same class: must read zero. */
    unsigned char *d = ft_malloc(200);
    memset(d, 0xab, 200);
    ft_free(d);
    unsigned char *z = ft_calloc(25, 8);
    assert_non_null(z);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(z[i], 0);
    ft_free(z);
    z = ft_calloc(1, 100000);
    assert_non_null(z);
    for (size_t i = 0; i < 100000; i += 997)
        assert_int_equal(z[i], 0);
    ft_free(z);
    errno = 0;
    assert_null(ft_calloc(SIZE_MAX / 2, 3));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(ft_calloc((size_t)1 << 33, (size_t)1 << 33));
    assert_int_equal(errno, ENOMEM);
}

static void test_huge_sizes(void **state)
{
    (void)state;
    size_t bad[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2 + 1, (size_t)1 << 62 };
    for (size_t i = 0; i < FT_ARRAY_LEN(bad); i++) {
        errno = 0;
        assert_null(ft_malloc(bad[i]));
        assert_int_equal(errno, ENOMEM);
    }
    void *p = ft_malloc(64);
    errno = 0;
    assert_null(ft_realloc(p, SIZE_MAX - 8));
    assert_int_equal(errno, ENOMEM);
    /* p untouched and still usable. */
    memset(p, 1, 64);
    ft_free(p);
}

static void test_realloc_across_classes(void **state)
{
    (void)state;
    size_t sizes[] = { 1, 16, 17, 100, 512, 513, 1000, 4096, 16384, 16385, 100000, 3000000, 700, 48, 8 };
    unsigned char *p = ft_realloc(NULL, 5);
    fill(p, 5, 3);
    size_t have = 5;
    for (size_t i = 0; i < FT_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *q = ft_realloc(p, n);
        assert_non_null(q);
        assert_int_equal((uintptr_t)q % 16, 0);
        assert_true(ft_malloc_usable_size(q) >= n);
        assert_true(check(q, have < n ? have : n, 3));
        fill(q, n, 3);
        have = n;
        p = q;
    }
    assert_null(ft_realloc(p, 0));
}

static void test_large_blocks(void **state)
{
    (void)state;
    ft_mem_stats before, during, after;
    ft_mem_get_stats(&before);
    unsigned char *big[4];
    for (int i = 0; i < 4; i++) {
        big[i] = ft_malloc((size_t)(i + 1) * 50000);
        assert_non_null(big[i]);
        assert_int_equal((uintptr_t)big[i] % 16, 0);
        fill(big[i], (size_t)(i + 1) * 50000, (unsigned)i);
        assert_int_equal(fti_mem_kind_of(big[i]), FTI_KIND_RAW);
        assert_true(fti_mem_is_live_block(big[i]));
    }
    ft_mem_get_stats(&during);
    assert_int_equal(during.large_blocks, before.large_blocks + 4);
    for (int i = 0; i < 4; i++) {
        assert_true(check(big[i], (size_t)(i + 1) * 50000, (unsigned)i));
        ft_free(big[i]);
    }
    ft_mem_get_stats(&after);
    assert_int_equal(after.large_blocks, before.large_blocks);
    assert_int_equal(after.large_bytes, before.large_bytes);
}

static void test_object_kinds_contract(void **state)
{
    (void)state;
    /* Never-allocated object slots read zero at bytes 0..7; a freed object
     * block keeps bytes 0..7. */
    uint64_t *o[64];
    for (int i = 0; i < 64; i++) {
        o[i] = fti_mem_alloc(FTI_KIND_GC, 48);
        assert_non_null(o[i]);
        assert_int_equal(o[i][0], 0);
        assert_int_equal(fti_mem_kind_of(o[i]), FTI_KIND_GC);
        assert_int_equal(fti_mem_usable_size(o[i]), 48);
        o[i][0] = 0x1234 + (uint64_t)i;
    }
    for (int i = 0; i < 64; i++) {
        fti_mem_free(o[i]);
        assert_int_equal(o[i][0], 0x1234 + (uint64_t)i);
    }
    int x;
    assert_int_equal(fti_mem_kind_of(&x), -1);
    assert_int_equal(fti_mem_usable_size(&x), 0);
    assert_false(fti_mem_is_live_block(&x));
}

static void test_init_fini_repeat(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fti_mem_init(), 0);
        void *p = ft_malloc(32);
        assert_non_null(p);
        ft_free(p);
        fti_mem_fini();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_size_class),
        cmocka_unit_test(test_zero_and_distinct),
        cmocka_unit_test(test_calloc_zero_and_overflow),
        cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test(test_realloc_across_classes),
        cmocka_unit_test(test_large_blocks),
        cmocka_unit_test(test_object_kinds_contract),
        cmocka_unit_test(test_init_fini_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
