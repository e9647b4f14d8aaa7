/* test_walk.c - heap walks find exactly the live blocks of a kind; touched
 * walks; visiting own slots; stats add up. */
#include "ft_config.h"
#include <stdbool.h>
#include "ft_test.h"
#include "mem/mem_int.h"

#include <pthread.h>

#define N 3000

typedef struct seen {
    void **expect;   /* sorted live blocks */
    size_t n;
    size_t visits;
    size_t found;
    bool bad;
} seen;

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

static int visit(void *block, size_t size, void *arg)
{
    seen *s = arg;
    s->visits++;
    if (bsearch(&block, s->expect, s->n, sizeof(void *), ptr_cmp) != NULL)
        s->found++;
    else
        s->bad = true;
    if (size < 16 || (uintptr_t)block % 16 != 0)
        s->bad = true;
    return 0;
}

static int visit_count_slots(void *block, size_t size, void *arg)
{
    uint64_t head;
    memcpy(&head, block, sizeof head);
    assert_true(head == 0 || head == 0x5a5a5a5a5a5a5a5aull);
    assert_true(size >= 16);
    ++*(size_t *)arg;
    return 0;
}

typedef struct remote_job {
    void **blocks;
    size_t n;
} remote_job;

static void *remote_free_main(void *arg)
{
    remote_job *j = arg;
    for (size_t i = 0; i < j->n; i++)
        fti_mem_free(j->blocks[i]);
    return NULL;
}

static void test_walk_exact(void **state)
{
    (void)state;
    static void *gc[N], *live[N], *remote[N];
    size_t nlive = 0, nremote = 0;
    void *raw[100];

    for (size_t i = 0; i < N; i++) {
        size_t sz = 16 + (i * 13) % 700;
        gc[i] = fti_mem_alloc(FTI_KIND_GC, sz);
        assert_non_null(gc[i]);
        memset(gc[i], 0x5a, 16);
    }
    for (int i = 0; i < 100; i++)
        raw[i] = ft_malloc(48);
    void *big = fti_mem_alloc(FTI_KIND_GC, 100000);
    void *big_obj = fti_mem_alloc(FTI_KIND_OBJ, 100000);
    /* Free a third locally, a third from another thread (their pages keep
     * them on thread_free until the owner takes them back), keep a third. */
    for (size_t i = 0; i < N; i++) {
        if (i % 3 == 0) {
            memset(gc[i], 0, 8);
            fti_mem_free(gc[i]);
        } else if (i % 3 == 1) {
            memset(gc[i], 0, 8);
            remote[nremote++] = gc[i];
        } else {
            live[nlive++] = gc[i];
        }
    }
    remote_job job = { remote, nremote };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, remote_free_main, &job), 0);
    pthread_join(t, NULL);
    live[nlive++] = big;

    qsort(live, nlive, sizeof(void *), ptr_cmp);
    seen s = { .expect = live, .n = nlive };
    assert_int_equal(fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, visit, &s), 0);
    assert_false(s.bad);
    assert_int_equal(s.found, nlive);
    assert_int_equal(s.visits, nlive);

    for (size_t i = 0; i < nlive; i++)
        assert_true(fti_mem_is_live_block(live[i]));
    for (size_t i = 0; i < nremote; i++)
        assert_false(fti_mem_is_live_block(remote[i]));
    for (size_t i = 0; i < N; i += 3)
        assert_false(fti_mem_is_live_block(gc[i]));

    /* Touched walks: after clearing, only pages that may have allocated
     * since are walked, and they include every new block. */
    fti_mem_clear_touched(FTI_KIND_GC);
    seen none = { .expect = live, .n = 0 };
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_TOUCHED, visit, &none);
    size_t touched_before = none.visits;
    assert_true(touched_before < nlive);
    void *fresh[200];
    for (int i = 0; i < 200; i++)
        fresh[i] = fti_mem_alloc(FTI_KIND_GC, 208);
    qsort(fresh, 200, sizeof(void *), ptr_cmp);
    seen young = { .expect = fresh, .n = 200 };
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_TOUCHED, visit, &young);
    assert_int_equal(young.found, 200);
    assert_true(young.visits < nlive + 200);

    /* The caller's own slots: every slot of its GC pages, live or free. A
     * free or never-used slot reads zero in bytes 0..7. */
    size_t own = 0;
    fti_heap_visit_own_slots(FTI_KIND_GC, visit_count_slots, &own);
    assert_true(own >= nlive + 200);

    for (int i = 0; i < 200; i++)
        fti_mem_free(fresh[i]);
    for (size_t i = 0; i < nlive; i++)
        fti_mem_free(live[i]);
    for (int i = 0; i < 100; i++)
        ft_free(raw[i]);
    fti_mem_free(big_obj);
    seen empty = { .expect = live, .n = 0 };
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, visit, &empty);
    assert_int_equal(empty.visits, 0);
}

static void test_stats_add_up(void **state)
{
    (void)state;
    ft_mem_stats a, b;
    enum { M = 1000 };
    static void *p[M];
    ft_mem_get_stats(&a);
    size_t expect_bytes = 0, expect_large = 1;
    size_t per_class[FT_MEM_CLASSES] = { 0 };
    for (int i = 0; i < M; i++) {
        size_t sz = 1 + (size_t)(i * 7919) % 2000;
        p[i] = ft_malloc(sz);
        if (sz > FTI_MEDIUM_MAX) { /* small page_shift builds */
            expect_large++;
            continue;
        }
        unsigned c = fti_size_class(sz);
        per_class[c]++;
        expect_bytes += fti_class_size(c);
    }
    void *big = ft_malloc(1 << 20);
    ft_mem_get_stats(&b);
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++) {
        assert_int_equal(b.classes[c].blocks_used - a.classes[c].blocks_used, per_class[c]);
        /* Every page's blocks are either used or free. */
        assert_int_equal(b.classes[c].blocks_used + b.classes[c].blocks_free,
                         b.classes[c].pages * (b.page_bytes / b.classes[c].block_size));
    }
    assert_int_equal(b.large_blocks, a.large_blocks + expect_large);
    assert_int_equal(b.bytes_in_use - a.bytes_in_use, expect_bytes + (b.large_bytes - a.large_bytes));
    size_t sum = 0, pages = 0;
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++) {
        sum += b.classes[c].blocks_used * b.classes[c].block_size;
        pages += b.classes[c].pages;
    }
    assert_int_equal(sum + b.large_bytes, b.bytes_in_use);
    assert_int_equal(pages, b.pages_in_use);
    assert_true(b.os_bytes_mapped >= b.arenas * b.arena_bytes + b.large_bytes);
    assert_true(b.os_bytes_peak >= b.os_bytes_mapped);
    assert_true(b.peak_bytes_committed >= b.pages_in_use * b.page_bytes + b.large_bytes);
    assert_int_equal(b.heaps, 1);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ft_mem_print_stats(f);
    fclose(f);
    assert_non_null(strstr(text, "# bytes in use"));
    assert_non_null(strstr(text, "blocks used"));
    free(text);

    for (int i = 0; i < M; i++)
        ft_free(p[i]);
    ft_free(big);
    ft_mem_get_stats(&b);
    size_t used = 0, used_before = 0;
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++) {
        used += b.classes[c].blocks_used;
        used_before += a.classes[c].blocks_used;
    }
    assert_int_equal(b.large_blocks, a.large_blocks);
    assert_int_equal(used, used_before);
    assert_int_equal(b.bytes_in_use, a.bytes_in_use);
}

typedef struct departed {
    void *blocks[500];
} departed;

static void *alloc_and_exit_main(void *arg)
{
    departed *d = arg;
    for (int i = 0; i < 500; i++) {
        d->blocks[i] = fti_mem_alloc(FTI_KIND_OBJ, 32 + (size_t)(i % 20) * 16);
        memset(d->blocks[i], 0x5a, 16);
    }
    return NULL; /* thread exit abandons the heap */
}

static void test_abandoned_pages_walkable(void **state)
{
    (void)state;
    static departed d;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, alloc_and_exit_main, &d), 0);
    pthread_join(t, NULL);
    ft_mem_stats st;
    ft_mem_get_stats(&st);
    assert_true(st.pages_abandoned >= 20);

    void *sorted[500];
    memcpy(sorted, d.blocks, sizeof sorted);
    qsort(sorted, 500, sizeof(void *), ptr_cmp);
    seen s = { .expect = sorted, .n = 500 };
    assert_int_equal(fti_mem_walk(FTI_KIND_OBJ, FTI_WALK_ALL, visit, &s), 0);
    assert_false(s.bad);
    assert_int_equal(s.found, 500);
    assert_int_equal(s.visits, 500);

    /* Frees into abandoned pages work; the pages are then reclaimed. */
    for (int i = 0; i < 500; i++) {
        memset(d.blocks[i], 0, 8);
        fti_mem_free(d.blocks[i]);
    }
    seen none = { .expect = sorted, .n = 0 };
    fti_mem_walk(FTI_KIND_OBJ, FTI_WALK_ALL, visit, &none);
    assert_int_equal(none.visits, 0);
    ft_mem_collect();
    ft_mem_get_stats(&st);
    assert_int_equal(st.pages_abandoned, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk_exact),
        cmocka_unit_test(test_abandoned_pages_walkable),
        cmocka_unit_test(test_stats_add_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
