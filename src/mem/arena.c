/* arena.c - OS mappings, the arena map, arenas of pages, large blocks.
 *
 * Guarantees: an arena is FTI_ARENA_SIZE bytes aligned to its size, so any
 * block address masks to its arena header; the arena map records every
 * granule we own before a block from it is handed out, and forgets it only
 * after the granule holds no live block. Empty pages go back to their arena;
 * an arena whose last page comes back is kept (at most FTI_ARENA_RETAIN of
 * them, so that churn at an arena boundary does not map and unmap each time)
 * and unmapped beyond that. All arena and page-list changes happen under
 * arena_lock; the fast paths never take it. Large blocks are mappings of
 * their own, found through a hash table under large_lock (exact: a foreign
 * pointer inside a granule that also holds large blocks is not in the table). */
#include "mem/mem_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define FTI_ARENA_RETAIN 1u
/* Free pages an arena keeps resident for quick reuse; beyond that the older
 * free pages are purged (MADV_DONTNEED) so that RSS follows the live set. */
#define FTI_DIRTY_KEEP 8u

fti_mem_counters fti_mem_ctr;
_Atomic(_Atomic uintptr_t *) fti_arena_map[FTI_TOP_SIZE];
_Atomic uint64_t fti_arena_bits[FTI_ARENA_BIT_WORDS];

static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static fti_arena *arena_all;      /* every arena (arena_lock) */
static fti_arena *arena_avail;    /* arenas with a free page (arena_lock) */
static _Atomic uint64_t os_fail_countdown; /* fault injection (any thread, atomic) */
static uint64_t page_key_seed = 0x9e3779b97f4a7c15ull; /* (arena_lock) */

void fti_arena_lock(void)
{
    pthread_mutex_lock(&arena_lock);
}

void fti_arena_unlock(void)
{
    pthread_mutex_unlock(&arena_lock);
}

void fti_counter_add_peak(_Atomic size_t *value, _Atomic size_t *peak, size_t delta)
{
    /* relaxed: statistics only, no data is published through them. */
    size_t now = ft_atomic_fetch_add_relaxed(value, delta) + delta;
    size_t old = ft_atomic_load_relaxed(peak);
    while (old < now && !ft_atomic_cas_weak_relaxed(peak, &old, now))
        ;
}

/* ==== OS ================================================================ */

void ft_mem_fail_os_after(uint64_t n)
{
    /* relaxed: a test arms this on the thread that then allocates. */
    ft_atomic_store_relaxed(&os_fail_countdown, n);
}

static bool os_inject_failure(void)
{
    /* relaxed: the countdown is its own state; fetch_sub keeps it exact when
     * several threads map at once. */
    uint64_t left = ft_atomic_load_relaxed(&os_fail_countdown);
    while (left > 0) {
        if (ft_atomic_cas_weak_relaxed(&os_fail_countdown, &left, left - 1))
            return left == 1;
    }
    return false;
}

void *fti_os_map(size_t size)
{
    void *p;

    if (os_inject_failure()) {
        p = MAP_FAILED;
    } else {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (p == MAP_FAILED) {
        /* relaxed: statistics. */
        ft_atomic_fetch_add_relaxed(&fti_mem_ctr.map_failures, 1);
        errno = ENOMEM;
        return NULL;
    }
    ft_atomic_fetch_add_relaxed(&fti_mem_ctr.map_calls, 1); /* relaxed: statistics */
    fti_counter_add_peak(&fti_mem_ctr.os_mapped, &fti_mem_ctr.os_peak, size);
    return p;
}

void fti_os_unmap(void *p, size_t size)
{
    FT_CHECK(munmap(p, size) == 0, "munmap(%p, %zu) failed", p, size);
    /* relaxed: statistics. */
    ft_atomic_fetch_add_relaxed(&fti_mem_ctr.unmap_calls, 1);
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.os_mapped, size);
}

/* Maps size bytes aligned to FTI_ARENA_SIZE (over-map, then trim). */
static void *os_map_aligned(size_t size)
{
    size_t over = size + FTI_ARENA_SIZE;
    uint8_t *raw = fti_os_map(over);
    if (raw == NULL)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + FTI_ARENA_MASK) & ~FTI_ARENA_MASK;
    size_t head = start - (uintptr_t)raw;
    size_t tail = over - head - size;
    /* Trim without counting two more unmap calls: it is one mapping. */
    if (head > 0)
        FT_CHECK(munmap(raw, head) == 0, "munmap of arena head failed");
    if (tail > 0)
        FT_CHECK(munmap((uint8_t *)start + size, tail) == 0, "munmap of arena tail failed");
    /* relaxed: statistics. */
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.os_mapped, head + tail);
    return (void *)start;
}

/* ==== the arena map ===================================================== */

/* The leaf slot of an address, creating the leaf if asked. NULL on OOM. */
static _Atomic uintptr_t *map_slot(uintptr_t addr, bool create)
{
    uintptr_t idx = addr >> FTI_ARENA_SHIFT;
    FT_CHECK((idx >> FTI_LEAF_BITS) < FTI_TOP_SIZE, "mem: address %#lx beyond the arena map", (unsigned long)addr);
    /* acquire: pairs with the release that installs a leaf below (its
     * zeroed contents are visible before we index it). */
    _Atomic uintptr_t *leaf = ft_atomic_load_acquire(&fti_arena_map[idx >> FTI_LEAF_BITS]);
    if (leaf == NULL) {
        if (!create)
            return NULL;
        pthread_mutex_lock(&map_lock);
        /* relaxed: map_lock orders creators; readers use the acquire above. */
        leaf = ft_atomic_load_relaxed(&fti_arena_map[idx >> FTI_LEAF_BITS]);
        if (leaf == NULL) {
            leaf = fti_os_map(FTI_LEAF_SIZE * sizeof(uintptr_t));
            if (leaf != NULL) {
                /* release: pairs with the acquire above and the relaxed
                 * fast-path readers, who only follow a leaf for granules
                 * whose blocks reached them through a synchronising handoff. */
                ft_atomic_store_release(&fti_arena_map[idx >> FTI_LEAF_BITS], leaf);
            }
        }
        pthread_mutex_unlock(&map_lock);
        if (leaf == NULL)
            return NULL;
    }
    return &leaf[idx & (FTI_LEAF_SIZE - 1)];
}

/* ==== arenas ============================================================ */

static void avail_push(fti_arena *a)
{
    a->avail_prev = NULL;
    a->avail_next = arena_avail;
    if (arena_avail != NULL)
        arena_avail->avail_prev = a;
    arena_avail = a;
    a->in_avail = 1;
}

static void avail_remove(fti_arena *a)
{
    if (a->avail_prev != NULL)
        a->avail_prev->avail_next = a->avail_next;
    else
        arena_avail = a->avail_next;
    if (a->avail_next != NULL)
        a->avail_next->avail_prev = a->avail_prev;
    a->in_avail = 0;
}

/* Maps and registers a new arena (arena_lock held). */
static fti_arena *arena_new(void)
{
    fti_arena *a = os_map_aligned(FTI_ARENA_SIZE);
    if (a == NULL)
        return NULL;
    _Atomic uintptr_t *slot = map_slot((uintptr_t)a, true);
    if (slot == NULL) {
        fti_os_unmap(a, FTI_ARENA_SIZE);
        return NULL;
    }
    for (unsigned i = 0; i < FTI_PAGES_PER_ARENA; i++) {
        fti_page *pg = &a->pages[i];
        pg->state = i < FTI_META_PAGES ? FTI_PAGE_META : FTI_PAGE_FREE;
        /* relaxed: the arena is not yet published. */
        ft_atomic_store_relaxed(&pg->heap, &fti_heap_none);
    }
    /* Free list in address order, lowest page first. */
    a->free_pages = NULL;
    for (unsigned i = FTI_PAGES_PER_ARENA; i-- > FTI_META_PAGES;) {
        a->pages[i].next = a->free_pages;
        a->free_pages = &a->pages[i];
    }
    a->used_pages = 0;
    a->next = arena_all;
    a->prev = NULL;
    if (arena_all != NULL)
        arena_all->prev = a;
    arena_all = a;
    avail_push(a);
    a->empty = 1;
    /* release: pairs with the acquire in map_slot; the header is written
     * before the granule is known to be ours. */
    ft_atomic_store_release(slot, (uintptr_t)a);
    /* relaxed: the arena lock orders writers; fast-path readers test the bit
     * only for blocks published to them after this (see fti_granule_is_arena). */
    uintptr_t g = (uintptr_t)a >> FTI_ARENA_SHIFT;
    ft_atomic_fetch_or_relaxed(&fti_arena_bits[g >> 6], (uint64_t)1 << (g & 63));
    /* relaxed: statistics. */
    ft_atomic_fetch_add_relaxed(&fti_mem_ctr.arenas, 1);
    ft_atomic_fetch_add_relaxed(&fti_mem_ctr.arenas_empty, 1);
    return a;
}

/* Unregisters and unmaps an empty arena (arena_lock held). */
static void arena_release(fti_arena *a)
{
    FT_ASSERT(a->used_pages == 0);
    if (a->in_avail)
        avail_remove(a);
    if (a->prev != NULL)
        a->prev->next = a->next;
    else
        arena_all = a->next;
    if (a->next != NULL)
        a->next->prev = a->prev;
    _Atomic uintptr_t *slot = map_slot((uintptr_t)a, false);
    /* relaxed: no block of this arena is live, only a foreign or stale
     * pointer could still look it up. */
    ft_atomic_store_relaxed(slot, 0);
    /* relaxed: as the map entry above; cleared before the arena is unmapped. */
    uintptr_t g = (uintptr_t)a >> FTI_ARENA_SHIFT;
    ft_atomic_fetch_and_relaxed(&fti_arena_bits[g >> 6], ~((uint64_t)1 << (g & 63)));
    /* relaxed: statistics. */
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.arenas, 1);
    if (a->empty)
        ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.arenas_empty, 1);
    fti_os_unmap(a, FTI_ARENA_SIZE);
}

/* Purges the free pages of an arena beyond the FTI_DIRTY_KEEP most recently
 * freed (the list is LIFO, so those are the likeliest to be reused). */
static void arena_purge(fti_arena *a)
{
    unsigned seen = 0;
    for (fti_page *pg = a->free_pages; pg != NULL; pg = pg->next) {
        if (!pg->dirty || seen++ < FTI_DIRTY_KEEP)
            continue;
        uint8_t *mem = (uint8_t *)a + ((uintptr_t)(pg - a->pages) << FTI_PAGE_SHIFT);
        /* A failed purge only leaves memory resident. */
        (void)madvise(mem, FTI_PAGE_SIZE, MADV_DONTNEED);
        pg->dirty = 0;
        a->dirty_pages--;
    }
}

fti_page *fti_arena_page_alloc(struct fti_heap *heap, fti_kind kind, unsigned cls)
{
    pthread_mutex_lock(&arena_lock);
    fti_arena *a = arena_avail;
    if (a == NULL) {
        a = arena_new();
        if (a == NULL) {
            pthread_mutex_unlock(&arena_lock);
            return NULL;
        }
    }
    fti_page *pg = a->free_pages;
    a->free_pages = pg->next;
    if (pg->dirty) {
        pg->dirty = 0;
        a->dirty_pages--;
    }
    if (a->free_pages == NULL)
        avail_remove(a);
    if (a->used_pages++ == 0 && a->empty) {
        a->empty = 0;
        /* relaxed: statistics. */
        ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.arenas_empty, 1);
    }
    size_t bs = fti_class_size(cls);
    /* Object blocks keep their 24-byte header across a free (mem.h). */
    FT_CHECK(kind == FTI_KIND_RAW || bs >= FTI_OBJECT_MIN_BLOCK,
             "mem: object blocks of %zu bytes are below the %u-byte minimum", bs, FTI_OBJECT_MIN_BLOCK);
    unsigned idx = (unsigned)(pg - a->pages);
    pg->free = NULL;
    pg->local_free = NULL;
    /* relaxed: the page is not visible to other threads until a block of it
     * is handed out, which synchronises. */
    ft_atomic_store_relaxed(&pg->used, 0);
    pg->in_full = 0;
    pg->kind = (uint8_t)kind;
    pg->cls = (uint8_t)cls;
    pg->touched = 1;
    pg->retired = 0;
    pg->retire_stamp = 0;
    page_key_seed = page_key_seed * 6364136223846793005ull + 1442695040888963407ull;
    pg->key = (uintptr_t)(page_key_seed ^ ((uintptr_t)pg >> 4)) | 1u;
    ft_atomic_store_relaxed(&pg->thread_free, 0); /* relaxed: as for used */
    pg->start = (uint8_t *)a + ((uintptr_t)idx << FTI_PAGE_SHIFT);
    pg->block_size = (uint32_t)bs;
    pg->reserved = (uint32_t)(FTI_PAGE_SIZE / bs);
    pg->capacity = 0;
    pg->state = FTI_PAGE_USED;
    pg->next = pg->prev = NULL;
    ft_atomic_store_relaxed(&pg->heap, heap); /* relaxed: as for used */
    pthread_mutex_unlock(&arena_lock);
    fti_counter_add_peak(&fti_mem_ctr.committed, &fti_mem_ctr.committed_peak, FTI_PAGE_SIZE);
    return pg;
}

void fti_arena_page_free(fti_page *pg)
{
    fti_arena *a = (fti_arena *)((uintptr_t)pg & ~FTI_ARENA_MASK);

    pthread_mutex_lock(&arena_lock);
    FT_ASSERT(pg->state == FTI_PAGE_USED);
    pg->state = FTI_PAGE_FREE;
    /* relaxed: a stale reader of a free page can only be an invalid free,
     * which the state check under this lock's protection rejects. */
    ft_atomic_store_relaxed(&pg->heap, &fti_heap_none);
    pg->next = a->free_pages;
    a->free_pages = pg;
    pg->dirty = 1;
    if (++a->dirty_pages > 2 * FTI_DIRTY_KEEP)
        arena_purge(a);
    if (!a->in_avail)
        avail_push(a);
    if (--a->used_pages == 0) {
        size_t empty = ft_atomic_load_relaxed(&fti_mem_ctr.arenas_empty); /* relaxed: under arena_lock */
        if (empty >= FTI_ARENA_RETAIN) {
            arena_release(a);
        } else {
            a->empty = 1;
            ft_atomic_fetch_add_relaxed(&fti_mem_ctr.arenas_empty, 1); /* relaxed: statistics */
        }
    }
    pthread_mutex_unlock(&arena_lock);
    /* relaxed: statistics. */
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.committed, FTI_PAGE_SIZE);
}

void fti_arena_trim(void)
{
    pthread_mutex_lock(&arena_lock);
    fti_arena *a = arena_all;
    while (a != NULL) {
        fti_arena *next = a->next;
        if (a->used_pages == 0)
            arena_release(a);
        a = next;
    }
    pthread_mutex_unlock(&arena_lock);
}

void fti_arena_foreach_page(void (*fn)(fti_page *page, void *arg), void *arg)
{
    for (fti_arena *a = arena_all; a != NULL; a = a->next) {
        if (a->used_pages == 0)
            continue;
        for (unsigned i = FTI_META_PAGES; i < FTI_PAGES_PER_ARENA; i++) {
            fti_page *pg = &a->pages[i];
            if (pg->state == FTI_PAGE_USED)
                fn(pg, arg);
        }
    }
}

/* ==== large blocks ====================================================== */

#define LARGE_HASH_BITS 12
static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static fti_large *large_hash[1u << LARGE_HASH_BITS]; /* (large_lock) */
static fti_large *large_list[FTI_KIND_COUNT];         /* (large_lock) */

static unsigned large_bucket(const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> (64 - LARGE_HASH_BITS));
}

/* Adds delta (+1/-1) to the large-mapping count of each granule of
 * [base, base + size) (large_lock held). false on OOM (nothing changed). */
static bool large_map_granules(uintptr_t base, size_t size, int delta)
{
    uintptr_t first = base >> FTI_ARENA_SHIFT, last = (base + size - 1) >> FTI_ARENA_SHIFT;
    if (delta > 0) {
        for (uintptr_t g = first; g <= last; g++)
            if (map_slot(g << FTI_ARENA_SHIFT, true) == NULL)
                return false;
    }
    for (uintptr_t g = first; g <= last; g++) {
        _Atomic uintptr_t *slot = map_slot(g << FTI_ARENA_SHIFT, false);
        /* relaxed: large_lock orders writers; readers see a granule as ours
         * only through a block handed to them with synchronisation. */
        uintptr_t e = ft_atomic_load_relaxed(slot);
        FT_ASSERT(e == 0 || fti_map_is_large(e));
        uintptr_t count = e >> 1;
        count = delta > 0 ? count + 1 : count - 1;
        ft_atomic_store_release(slot, fti_map_large_entry(count)); /* pairs with map_slot's acquire */
    }
    return true;
}

void *fti_large_alloc(struct fti_heap *heap, fti_kind kind, size_t size)
{
    if (size > SIZE_MAX / 2) {
        errno = ENOMEM;
        return NULL;
    }
    size_t map_size = (size + FTI_LARGE_HEADER + 4095) & ~(size_t)4095;
    fti_large *h = fti_os_map(map_size);
    if (h == NULL)
        return NULL;
    h->heap = heap;
    h->size = map_size - FTI_LARGE_HEADER;
    h->map_size = map_size;
    h->kind = (uint8_t)kind;
    h->touched = 1;
    pthread_mutex_lock(&large_lock);
    if (!large_map_granules((uintptr_t)h, map_size, +1)) {
        pthread_mutex_unlock(&large_lock);
        fti_os_unmap(h, map_size);
        errno = ENOMEM;
        return NULL;
    }
    void *block = (uint8_t *)h + FTI_LARGE_HEADER;
    unsigned b = large_bucket(block);
    h->hash_next = large_hash[b];
    large_hash[b] = h;
    h->prev = NULL;
    h->next = large_list[kind];
    if (large_list[kind] != NULL)
        large_list[kind]->prev = h;
    large_list[kind] = h;
    pthread_mutex_unlock(&large_lock);
    /* relaxed: statistics. */
    ft_atomic_fetch_add_relaxed(&fti_mem_ctr.large_blocks, 1);
    ft_atomic_fetch_add_relaxed(&fti_mem_ctr.large_bytes, map_size);
    fti_counter_add_peak(&fti_mem_ctr.committed, &fti_mem_ctr.committed_peak, map_size);
    return block;
}

static fti_large *large_find_locked(const void *p)
{
    for (fti_large *h = large_hash[large_bucket(p)]; h != NULL; h = h->hash_next)
        if ((const uint8_t *)h + FTI_LARGE_HEADER == (const uint8_t *)p)
            return h;
    return NULL;
}

fti_large *fti_large_find(const void *p)
{
    pthread_mutex_lock(&large_lock);
    fti_large *h = large_find_locked(p);
    pthread_mutex_unlock(&large_lock);
    return h;
}

void fti_large_free(void *p, const char *call)
{
    pthread_mutex_lock(&large_lock);
    fti_large *h = large_find_locked(p);
    if (h == NULL) {
        pthread_mutex_unlock(&large_lock);
        ft_fatal("%s: %p is not a live ftrt block (foreign pointer, or double free of a large block)", call, p);
    }
    fti_large **pp = &large_hash[large_bucket(p)];
    while (*pp != h)
        pp = &(*pp)->hash_next;
    *pp = h->hash_next;
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        large_list[h->kind] = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    size_t map_size = h->map_size;
    large_map_granules((uintptr_t)h, map_size, -1);
    pthread_mutex_unlock(&large_lock);
    /* relaxed: statistics. */
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.large_blocks, 1);
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.large_bytes, map_size);
    ft_atomic_fetch_sub_relaxed(&fti_mem_ctr.committed, map_size);
    fti_os_unmap(h, map_size);
}

fti_large **fti_large_snapshot(fti_kind kind, struct fti_heap *heap, bool only_touched, size_t *count)
{
    size_t n = 0, cap = 16;
    fti_large **out = malloc(cap * sizeof *out);

    pthread_mutex_lock(&large_lock);
    for (fti_large *h = large_list[kind]; h != NULL && out != NULL; h = h->next) {
        if (heap != NULL && h->heap != heap)
            continue;
        if (only_touched && !h->touched)
            continue;
        if (n == cap) {
            fti_large **bigger = realloc(out, 2 * cap * sizeof *out);
            if (bigger == NULL) {
                free(out);
                out = NULL;
                break;
            }
            out = bigger;
            cap *= 2;
        }
        out[n++] = h;
    }
    pthread_mutex_unlock(&large_lock);
    FT_CHECK(out != NULL, "mem: out of memory taking a snapshot of large blocks");
    *count = n;
    return out;
}

void fti_large_clear_touched(fti_kind kind)
{
    pthread_mutex_lock(&large_lock);
    for (fti_large *h = large_list[kind]; h != NULL; h = h->next)
        h->touched = 0;
    pthread_mutex_unlock(&large_lock);
}

/* ==== fork ============================================================== */

/* A child of fork() has only the forking thread: locks another thread held at
 * the fork would never be released. Holding every mem lock across fork (in a
 * fixed order consistent with the nesting arena -> map and large -> map)
 * keeps the child's allocator usable. */
void fti_arena_fork_prepare(void)
{
    pthread_mutex_lock(&arena_lock);
    pthread_mutex_lock(&large_lock);
    pthread_mutex_lock(&map_lock);
}

void fti_arena_fork_release(void)
{
    pthread_mutex_unlock(&map_lock);
    pthread_mutex_unlock(&large_lock);
    pthread_mutex_unlock(&arena_lock);
}

