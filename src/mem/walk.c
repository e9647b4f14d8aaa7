/* walk.c - heap walks for the collector, block queries, statistics.
 *
 * Guarantees: fti_mem_walk visits exactly the live blocks of a kind. With the
 * world stopped no owner changes its lists, so marking every block on a
 * page's free, local_free and thread_free lists in a bitmap, and visiting the
 * slots below capacity that are not marked, gives the live set (slots at or
 * above capacity were never handed out). The page list is copied under the
 * arena lock first, so a visitor may free blocks (even empty a page) without
 * deadlocking on that lock. Statistics read only fields that are stable under
 * the arena lock or atomic, so they are race-free while threads allocate. */
#include "mem/mem_int.h"

#include <stdlib.h>
#include <string.h>

/* ==== walks ============================================================= */

typedef struct page_list {
    fti_page **pages;
    size_t n, cap;
    int kind;
    bool only_touched;
    bool failed;
} page_list;

static void collect_page(fti_page *pg, void *arg)
{
    page_list *l = arg;
    if (pg->kind != l->kind || (l->only_touched && !pg->touched))
        return;
    /* No live block (exact with the world stopped): nothing to visit. Empty
     * pages are common here - retired object pages wait for a grace period,
     * and each heap keeps an empty current page per class - and building
     * their free bitmap costs a walk of every free block. relaxed: owner
     * counter, stable while the world is stopped. */
    if (ft_atomic_load_relaxed(&pg->used) == 0)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        fti_page **bigger = realloc(l->pages, cap * sizeof *bigger);
        if (bigger == NULL) {
            l->failed = true;
            return;
        }
        l->pages = bigger;
        l->cap = cap;
    }
    l->pages[l->n++] = pg;
}

static void mark_list(const fti_page *pg, const fti_block *b, uint64_t *bits)
{
    uint32_t steps = 0;
    while (b != NULL) {
        size_t off = (uintptr_t)b - (uintptr_t)pg->start;
        FT_CHECK(off < (size_t)pg->capacity * pg->block_size && off % pg->block_size == 0 && steps++ < pg->capacity,
                 "fti_mem_walk: corrupted free list in page %p (double free or write after free)", (void *)pg->start);
        size_t slot = off / pg->block_size;
        bits[slot / 64] |= (uint64_t)1 << (slot % 64);
        b = fti_block_next(pg, b);
    }
}

/* Marks the free slots of a page in bits (FTI_MAX_BLOCKS_PER_PAGE bits). */
static void page_free_bitmap(const fti_page *pg, uint64_t *bits)
{
    memset(bits, 0, FTI_MAX_BLOCKS_PER_PAGE / 8);
    mark_list(pg, pg->free, bits);
    mark_list(pg, pg->local_free, bits);
    /* acquire: pairs with the freers' release CAS (links readable). */
    mark_list(pg, (fti_block *)(ft_atomic_load_acquire(&pg->thread_free) & ~FTI_TF_FULL), bits);
}

int fti_mem_walk(fti_kind kind, unsigned flags, fti_block_visit_fn fn, void *arg)
{
    page_list l = { .kind = (int)kind, .only_touched = (flags & FTI_WALK_TOUCHED) != 0 };
    uint64_t bits[FTI_MAX_BLOCKS_PER_PAGE / 64];
    int rc = 0;

    fti_arena_lock();
    fti_arena_foreach_page(collect_page, &l);
    fti_arena_unlock();
    FT_CHECK(!l.failed, "fti_mem_walk: out of memory listing pages");
    for (size_t i = 0; i < l.n && rc == 0; i++) {
        fti_page *pg = l.pages[i];
        /* A visitor's free may have emptied and released the page. */
        if (pg->state != FTI_PAGE_USED || pg->kind != (uint8_t)kind)
            continue;
        page_free_bitmap(pg, bits);
        uint8_t *start = pg->start;
        uint32_t bs = pg->block_size, cap = pg->capacity;
        for (uint32_t s = 0; s < cap && rc == 0; s++)
            if (!(bits[s / 64] & ((uint64_t)1 << (s % 64))))
                rc = fn(start + (size_t)s * bs, bs, arg);
    }
    free(l.pages);
    if (rc == 0) {
        size_t count;
        fti_large **large = fti_large_snapshot(kind, NULL, l.only_touched, &count);
        for (size_t i = 0; i < count && rc == 0; i++)
            rc = fn((uint8_t *)large[i] + FTI_LARGE_HEADER, large[i]->size, arg);
        free(large);
    }
    return rc;
}

typedef struct clear_arg {
    int kind;
} clear_arg;

static void clear_page(fti_page *pg, void *arg)
{
    const clear_arg *c = arg;
    /* A page with blocks on its free list may hand them out through the fast
     * path, which does not mark pages: it stays "touched". Every other page
     * must pass the slow path (which marks) before it allocates again. */
    if (pg->kind == c->kind)
        pg->touched = pg->free != NULL;
}

void fti_mem_clear_touched(fti_kind kind)
{
    clear_arg c = { .kind = (int)kind };
    fti_arena_lock();
    fti_arena_foreach_page(clear_page, &c);
    fti_arena_unlock();
    fti_large_clear_touched(kind);
}

/* ==== block queries ===================================================== */

static bool list_contains(const fti_page *pg, const fti_block *b, const fti_block *x)
{
    for (uint32_t steps = 0; x != NULL && steps <= pg->reserved; x = fti_block_next(pg, x), steps++) {
        if (x == b)
            return true;
        if ((uintptr_t)x - (uintptr_t)pg->start >= (size_t)pg->reserved * pg->block_size)
            return false;
    }
    return false;
}

bool fti_mem_is_live_block(const void *p)
{
    uintptr_t e = fti_map_entry((uintptr_t)p);
    if (e == 0)
        return false;
    if (fti_map_is_large(e))
        return fti_large_find(p) != NULL;
    fti_page *pg = fti_page_of(fti_map_arena(e), (uintptr_t)p);
    if (pg->state != FTI_PAGE_USED)
        return false;
    size_t off = (uintptr_t)p - (uintptr_t)pg->start;
    if (off % pg->block_size != 0 || off >= (size_t)pg->capacity * pg->block_size)
        return false;
    const fti_block *b = p;
    /* acquire: pairs with the freers' release CAS (links readable). */
    const fti_block *remote = (const fti_block *)(ft_atomic_load_acquire(&pg->thread_free) & ~FTI_TF_FULL);
    return !list_contains(pg, b, pg->free) && !list_contains(pg, b, pg->local_free) && !list_contains(pg, b, remote);
}

int fti_mem_kind_of(const void *p)
{
    uintptr_t e = fti_map_entry((uintptr_t)p);
    if (e == 0)
        return -1;
    if (fti_map_is_large(e)) {
        fti_large *l = fti_large_find(p);
        return l != NULL ? (int)l->kind : -1;
    }
    fti_page *pg = fti_page_of(fti_map_arena(e), (uintptr_t)p);
    return pg->state == FTI_PAGE_USED ? (int)pg->kind : -1;
}

/* ==== statistics ======================================================== */

static void stats_page(fti_page *pg, void *arg)
{
    ft_mem_stats *s = arg;
    ft_mem_class_stats *c = &s->classes[pg->cls];
    /* relaxed: owner-written counter, read for statistics. */
    size_t used = ft_atomic_load_relaxed(&pg->used);
    if (used > pg->reserved)
        used = pg->reserved;
    c->pages++;
    c->blocks_used += used;
    c->blocks_free += pg->reserved - used;
    s->pages_in_use++;
    s->bytes_in_use += used * pg->block_size;
}

void ft_mem_get_stats(ft_mem_stats *s)
{
    memset(s, 0, sizeof *s);
    s->arena_bytes = FTI_ARENA_SIZE;
    s->page_bytes = FTI_PAGE_SIZE;
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++)
        s->classes[c].block_size = fti_class_size(c);
    fti_arena_lock();
    fti_arena_foreach_page(stats_page, s);
    fti_arena_unlock();
    fti_heap_stats(&s->heaps, &s->pages_abandoned, &s->pages_retired);
    /* relaxed: statistics. */
    s->arenas = ft_atomic_load_relaxed(&fti_mem_ctr.arenas);
    s->arenas_empty = ft_atomic_load_relaxed(&fti_mem_ctr.arenas_empty);
    s->large_blocks = ft_atomic_load_relaxed(&fti_mem_ctr.large_blocks);
    s->large_bytes = ft_atomic_load_relaxed(&fti_mem_ctr.large_bytes);
    s->bytes_in_use += s->large_bytes;
    s->peak_bytes_committed = ft_atomic_load_relaxed(&fti_mem_ctr.committed_peak);
    s->os_bytes_mapped = ft_atomic_load_relaxed(&fti_mem_ctr.os_mapped);
    s->os_bytes_peak = ft_atomic_load_relaxed(&fti_mem_ctr.os_peak);
    s->os_map_calls = ft_atomic_load_relaxed(&fti_mem_ctr.map_calls);
    s->os_unmap_calls = ft_atomic_load_relaxed(&fti_mem_ctr.unmap_calls);
    s->os_map_failures = ft_atomic_load_relaxed(&fti_mem_ctr.map_failures);
}

void ft_mem_print_stats(FILE *out)
{
    ft_mem_stats s;
    ft_mem_get_stats(&s);
    fprintf(out, "ftrt allocator: %zu-byte arenas of %zu-byte pages, 16-byte alignment\n",
            s.arena_bytes, s.page_bytes);
    fprintf(out, "%-6s %10s %8s %12s %12s %14s\n", "class", "block size", "pages", "blocks used", "blocks free", "bytes in use");
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++) {
        const ft_mem_class_stats *k = &s.classes[c];
        if (k->pages == 0)
            continue;
        fprintf(out, "%-6u %10zu %8zu %12zu %12zu %14zu\n", c, k->block_size, k->pages, k->blocks_used,
                k->blocks_free, k->blocks_used * k->block_size);
    }
    fprintf(out, "# arenas mapped          = %zu (%zu empty, kept for reuse)\n", s.arenas, s.arenas_empty);
    fprintf(out, "# pages in use           = %zu (%zu abandoned by departed threads, %zu retired until a grace period)\n",
            s.pages_in_use, s.pages_abandoned, s.pages_retired);
    fprintf(out, "# heaps of live threads  = %zu\n", s.heaps);
    fprintf(out, "# large blocks           = %zu (%zu bytes mapped)\n", s.large_blocks, s.large_bytes);
    fprintf(out, "# bytes in use           = %zu\n", s.bytes_in_use);
    fprintf(out, "# peak bytes committed   = %zu\n", s.peak_bytes_committed);
    fprintf(out, "# OS bytes mapped        = %zu (peak %zu)\n", s.os_bytes_mapped, s.os_bytes_peak);
    fprintf(out, "# OS map/unmap/failed    = %llu/%llu/%llu\n", (unsigned long long)s.os_map_calls,
            (unsigned long long)s.os_unmap_calls, (unsigned long long)s.os_map_failures);
}
