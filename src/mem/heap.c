/* heap.c - thread-local heaps, the alloc/free paths and page life cycle.
 *
 * Guarantees and why they hold (free-list sharding, as in mimalloc):
 *   - A page belongs to at most one heap (page->heap). Only that heap's
 *     thread touches page->free, local_free, capacity, in_full and the heap
 *     queues, so the same-thread alloc and free use no atomic RMW and no lock.
 *   - Any other thread frees by pushing onto page->thread_free with one
 *     release CAS; the owner takes the whole list with one acquire exchange
 *     (pairs with that CAS: the link written by the freer is visible).
 *   - A page found full moves to the heap's full list and gets FTI_TF_FULL in
 *     thread_free; the first remote free clears the bit in the same CAS and
 *     raises heap->full_notice, so the owner learns that a full page got
 *     space without scanning full pages on every refill.
 *   - used counts blocks handed out and not yet taken back; a page whose used
 *     drops to zero has no block on any list of another thread, so it can go
 *     back to its arena (the owner keeps one page per class for churn).
 *   - A departing heap abandons its pages: page->heap becomes a sentinel, the
 *     page goes on a global abandoned list (abandon_lock) and stays walkable.
 *     Remote frees keep working (they only push). A heap that needs a page of
 *     that class adopts one; refills also reclaim abandoned pages whose
 *     blocks all came back. Heap records are recycled, never freed.
 *   - A double free is caught when the block's link slot decodes to a link
 *     of this page (the link key makes that all but impossible for live
 *     data) and the block is found on a free list, or when taking back
 *     remote frees would make used negative or walk out of the page. */
#include "mem/mem_int.h"
#include "ftrt/thread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fti_heap fti_heap_none;
struct fti_heap fti_heap_abandoned;
fti_page fti_page_empty;

/* The thread layer defines the real ft_tls_head; this weak definition (same
 * initial value: not attached) lets the mem layer and its tests link without
 * the layers above. A strong definition always wins at link time. */
__attribute__((weak)) _Thread_local ft_thread_head ft_tls_head = {
    .pending = FT_PENDING_UNATTACHED,
    .owner_tag = UINT32_MAX,
};

static pthread_mutex_t heap_list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fti_heap *heap_all;      /* every heap record (heap_list_lock) */
static pthread_once_t heap_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t heap_key;

static _Atomic size_t retired_pages_total; /* pages with retired set (relaxed: a statistic) */

static pthread_mutex_t abandon_lock = PTHREAD_MUTEX_INITIALIZER;
static fti_page_queue abandoned[FTI_KIND_COUNT][FTI_NCLASS]; /* (abandon_lock) */
static size_t abandoned_pages;          /* (abandon_lock) */
static unsigned reclaim_cursor;         /* next list to reclaim from (abandon_lock) */

/* ==== queues ============================================================ */

static void q_push_front(fti_page_queue *q, fti_page *pg)
{
    pg->prev = NULL;
    pg->next = q->head;
    if (q->head != NULL)
        q->head->prev = pg;
    else
        q->tail = pg;
    q->head = pg;
}

static void q_push_back(fti_page_queue *q, fti_page *pg)
{
    pg->next = NULL;
    pg->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = pg;
    else
        q->head = pg;
    q->tail = pg;
}

static void q_remove(fti_page_queue *q, fti_page *pg)
{
    if (pg->prev != NULL)
        pg->prev->next = pg->next;
    else
        q->head = pg->next;
    if (pg->next != NULL)
        pg->next->prev = pg->prev;
    else
        q->tail = pg->prev;
    pg->next = pg->prev = NULL;
}

static void heap_set_current(struct fti_heap *h, unsigned kind, unsigned cls)
{
    fti_page *head = h->avail[kind][cls].head;
    h->pages[kind][cls] = head != NULL ? head : &fti_page_empty;
}

/* ==== heaps ============================================================= */

static void heap_key_destructor(void *value)
{
    (void)value;
    if (ft_tls_head.heap != NULL)
        fti_heap_abandon_current();
}

/* fork(): hold every mem lock across it (lock order: trace, heap list,
 * abandoned pages, then the arena locks), so that the child, which has only
 * the forking thread, finds them all free. */
static void mem_fork_prepare(void)
{
    fti_trace_fork_prepare();
    pthread_mutex_lock(&heap_list_lock);
    pthread_mutex_lock(&abandon_lock);
    fti_arena_fork_prepare();
}

static void mem_fork_release(void)
{
    fti_arena_fork_release();
    pthread_mutex_unlock(&abandon_lock);
    pthread_mutex_unlock(&heap_list_lock);
    fti_trace_fork_release();
}

static void heap_abandon(struct fti_heap *h);

/* The child has only the forking thread: the heaps of the others would stay
 * live forever, their pages never reused and the blocks the child frees in
 * them (remote frees to an owner that does not exist) never collected. They
 * are abandoned like those of threads that exit, so the child's allocations
 * adopt their pages and ft_mem_collect reclaims them. */
static void mem_fork_child(void)
{
    mem_fork_release();
    pthread_mutex_lock(&heap_list_lock);
    for (struct fti_heap *h = heap_all; h != NULL; h = h->next_all) {
        if (h->live && h != ft_tls_head.heap) {
            heap_abandon(h);
            h->live = 0;
        }
    }
    pthread_mutex_unlock(&heap_list_lock);
}

static void heap_key_create(void)
{
    FT_CHECK(pthread_key_create(&heap_key, heap_key_destructor) == 0, "mem: pthread_key_create failed");
    FT_CHECK(pthread_atfork(mem_fork_prepare, mem_fork_release, mem_fork_child) == 0,
             "mem: pthread_atfork failed");
}

static void heap_reset(struct fti_heap *h)
{
    for (unsigned k = 0; k < FTI_KIND_COUNT; k++) {
        for (unsigned c = 0; c < FTI_NCLASS; c++) {
            h->pages[k][c] = &fti_page_empty;
            h->avail[k][c].head = h->avail[k][c].tail = NULL;
            h->full[k][c].head = h->full[k][c].tail = NULL;
            /* relaxed: a stale freer may still set it; a spurious notice
             * only costs one scan of an empty full list. */
            ft_atomic_store_relaxed(&h->full_notice[k][c], 0);
        }
    }
    h->retire_hold = 0;
    h->retired.head = h->retired.tail = NULL;
    h->retired_count = 0;
}

static FT_NOINLINE struct fti_heap *heap_create(void)
{
    struct fti_heap *h;

    pthread_once(&heap_key_once, heap_key_create);
    pthread_mutex_lock(&heap_list_lock);
    for (h = heap_all; h != NULL; h = h->next_all)
        if (!h->live)
            break;
    if (h == NULL) {
        h = calloc(1, sizeof *h);
        if (h != NULL) {
            h->next_all = heap_all;
            heap_all = h;
        }
    }
    if (h != NULL)
        h->live = 1;
    pthread_mutex_unlock(&heap_list_lock);
    if (h == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    heap_reset(h);
    ft_tls_head.heap = h;
    pthread_setspecific(heap_key, h);
    return h;
}

fti_heap *fti_heap_current(void)
{
    struct fti_heap *h = ft_tls_head.heap;
    return h != NULL ? h : heap_create();
}

void fti_heap_stats(size_t *live_heaps, size_t *abandoned_count, size_t *retired_count)
{
    /* relaxed: a statistic. */
    *retired_count = ft_atomic_load_relaxed(&retired_pages_total);
    size_t n = 0;
    pthread_mutex_lock(&heap_list_lock);
    for (struct fti_heap *h = heap_all; h != NULL; h = h->next_all)
        n += h->live;
    pthread_mutex_unlock(&heap_list_lock);
    *live_heaps = n;
    pthread_mutex_lock(&abandon_lock);
    *abandoned_count = abandoned_pages;
    pthread_mutex_unlock(&abandon_lock);
}

/* ==== pages ============================================================= */

/* Links the next never-used slots (about 4 KiB worth) into page->free, which
 * is empty. Object kinds get bytes 0..15 (owner and counts) zeroed: the page
 * may have held another class before (mem.h's contract). */
static void page_extend(fti_page *pg)
{
    uint32_t bs = pg->block_size;
    uint32_t n = (uint32_t)(4096 / bs);
    if (n == 0)
        n = 1;
    if (n > pg->reserved - pg->capacity)
        n = pg->reserved - pg->capacity;
    uint8_t *first = pg->start + (size_t)pg->capacity * bs;
    bool zero_head = pg->kind != FTI_KIND_RAW;
    for (uint32_t i = 0; i < n; i++) {
        fti_block *b = (fti_block *)(first + (size_t)i * bs);
        if (zero_head)
            memset(b, 0, 16);
        fti_block_set_next(pg, b, i + 1 < n ? (fti_block *)(first + (size_t)(i + 1) * bs) : pg->free);
    }
    pg->free = (fti_block *)first;
    pg->capacity += n;
}

static bool block_in_page(const fti_page *pg, const fti_block *b)
{
    return (uintptr_t)b - (uintptr_t)pg->start < (size_t)pg->reserved * pg->block_size;
}

/* Takes back the remote frees of a page (owner, or abandoned-list holder).
 * Returns how many blocks came back. Clears FTI_TF_FULL. */
static uint32_t page_collect(fti_page *pg)
{
    /* relaxed pre-check: skips the exchange when nothing was pushed. */
    if ((ft_atomic_load_relaxed(&pg->thread_free) & ~FTI_TF_FULL) == 0) {
        if (ft_atomic_load_relaxed(&pg->thread_free) != 0)
            ft_atomic_fetch_and_relaxed(&pg->thread_free, ~FTI_TF_FULL); /* relaxed: flag only */
        return 0;
    }
    /* acquire: pairs with the release CAS in free_remote, so the links the
     * freers wrote into the blocks are visible. */
    uintptr_t tf = ft_atomic_exchange_acquire(&pg->thread_free, 0);
    fti_block *list = (fti_block *)(tf & ~FTI_TF_FULL);
    if (list == NULL)
        return 0;
    uint32_t count = 1;
    fti_block *tail = list;
    for (;;) {
        FT_CHECK(block_in_page(pg, tail), "ft_free: corrupted remote free list in page %p (double free or write after free)", (void *)pg->start);
        fti_block *next = fti_block_next(pg, tail);
        if (next == NULL)
            break;
        tail = next;
        FT_CHECK(++count <= pg->reserved, "ft_free: double free into page %p (remote free list loops)", (void *)pg->start);
    }
    /* relaxed: used is written by the owner only; others read it for stats. */
    uint32_t used = ft_atomic_load_relaxed(&pg->used);
    FT_CHECK(count <= used, "ft_free: double free into page %p of %u-byte blocks (more frees than allocations)",
             (void *)pg->start, pg->block_size);
    ft_atomic_store_relaxed(&pg->used, used - count);
    fti_block_set_next(pg, tail, pg->free);
    pg->free = list;
    return count;
}

/* ==== type-stable object pages ========================================= */

/* Written at runtime init and fini while no other thread allocates (mem.h);
 * read-only in between. */
static fti_mem_qsbr_hooks qsbr_hooks;
static uint32_t retire_limit_pages;

void fti_mem_set_qsbr_hooks(const fti_mem_qsbr_hooks *hooks)
{
    if (hooks == NULL) {
        memset(&qsbr_hooks, 0, sizeof qsbr_hooks);
        retire_limit_pages = 0;
        return;
    }
    qsbr_hooks = *hooks;
    size_t pages = hooks->retire_limit_bytes / FTI_PAGE_SIZE;
    retire_limit_pages = pages < 4 ? 4 : pages > 4096 ? 4096 : (uint32_t)pages;
}

/* True if an empty page must wait for a grace period before it leaves its
 * class (mem.h's type-stable pages). */
static bool page_needs_grace(const fti_page *pg)
{
    return pg->kind != FTI_KIND_RAW && qsbr_hooks.stamp != NULL;
}

/* True if the empty page pg, retired earlier, may leave its class now. */
static bool retired_page_safe(const fti_page *pg, uint64_t done)
{
    return !page_needs_grace(pg) || (pg->retired && pg->retire_stamp < done);
}

/* Marks an empty page retired with a fresh stamp (once). */
static void page_stamp(fti_page *pg)
{
    if (!pg->retired) {
        pg->retired = 1;
        pg->retire_stamp = qsbr_hooks.stamp();
        /* relaxed: a statistic. */
        ft_atomic_fetch_add_relaxed(&retired_pages_total, 1);
    }
}

/* The page is in use again, in the class it never left, or released. */
static void page_unretire(fti_page *pg)
{
    if (pg->retired) {
        pg->retired = 0;
        /* relaxed: a statistic. */
        ft_atomic_fetch_sub_relaxed(&retired_pages_total, 1);
    }
}

bool fti_mem_has_retired(void)
{
    struct fti_heap *h = ft_tls_head.heap;
    return h != NULL && h->retired_count != 0;
}

void fti_mem_release_retired(void)
{
    struct fti_heap *h = ft_tls_head.heap;
    if (h == NULL || h->retired.head == NULL)
        return;
    uint64_t done = qsbr_hooks.done != NULL ? qsbr_hooks.done() : UINT64_MAX;
    fti_page *pg;
    /* Stamps grow along the queue: stop at the first one still unsafe. */
    while ((pg = h->retired.head) != NULL && retired_page_safe(pg, done)) {
        q_remove(&h->retired, pg);
        h->retired_count--;
        page_unretire(pg);
        fti_arena_page_free(pg);
    }
}

bool fti_mem_retired_over_limit(void)
{
    struct fti_heap *h = ft_tls_head.heap;
    return h != NULL && h->retired_count > retire_limit_pages;
}

/* Takes a retired page of the class back into use (it never left it), or
 * NULL. The queue is short: at most retire_limit_pages plus what one
 * deallocation retires before its end enforces the limit. */
static fti_page *retired_take(struct fti_heap *h, unsigned kind, unsigned cls)
{
    for (fti_page *pg = h->retired.head; pg != NULL; pg = pg->next) {
        if (pg->kind == kind && pg->cls == cls) {
            q_remove(&h->retired, pg);
            h->retired_count--;
            page_unretire(pg);
            return pg;
        }
    }
    return NULL;
}

/* Releases an empty page of heap h (which holds it in queue q): to its arena
 * at once, or, for an object page, to the heap's retired queue until a grace
 * period has passed. */
static FT_NOINLINE void page_release(struct fti_heap *h, fti_page_queue *q, fti_page *pg)
{
    unsigned kind = pg->kind, cls = pg->cls;
    q_remove(q, pg);
    pg->in_full = 0;
    heap_set_current(h, kind, cls);
    if (!page_needs_grace(pg)) {
        fti_arena_page_free(pg);
        return;
    }
    page_stamp(pg);
    q_push_back(&h->retired, pg);
    h->retired_count++;
    fti_mem_release_retired();
    if (h->retired_count > retire_limit_pages && qsbr_hooks.pressure != NULL)
        qsbr_hooks.pressure();
}

/* ==== abandoned pages =================================================== */

static void abandon_page(fti_page *pg)
{
    pthread_mutex_lock(&abandon_lock);
    /* relaxed: abandon_lock publishes the page's lists to the adopter; remote
     * freers read heap only to address a notice. */
    ft_atomic_store_relaxed(&pg->heap, &fti_heap_abandoned);
    q_push_back(&abandoned[pg->kind][pg->cls], pg);
    abandoned_pages++;
    pthread_mutex_unlock(&abandon_lock);
}

static fti_page *adopt_page(struct fti_heap *h, unsigned kind, unsigned cls)
{
    fti_page_queue *q = &abandoned[kind][cls];
    pthread_mutex_lock(&abandon_lock);
    fti_page *pg = q->head;
    if (pg != NULL) {
        q_remove(q, pg);
        abandoned_pages--;
        ft_atomic_store_relaxed(&pg->heap, h); /* relaxed: as in abandon_page */
    }
    pthread_mutex_unlock(&abandon_lock);
    if (pg != NULL) {
        pg->in_full = 0;
        page_unretire(pg);
        page_collect(pg);
    }
    return pg;
}

void fti_heap_reclaim_abandoned(unsigned max_pages)
{
    unsigned lists = FTI_KIND_COUNT * FTI_NCLASS;
    unsigned seen = 0;
    uint64_t done = qsbr_hooks.done != NULL ? qsbr_hooks.done() : UINT64_MAX;

    pthread_mutex_lock(&abandon_lock);
    for (unsigned n = 0; n < lists && seen < max_pages && abandoned_pages > 0; n++) {
        unsigned i = reclaim_cursor;
        reclaim_cursor = (reclaim_cursor + 1) % lists;
        fti_page_queue *q = &abandoned[i / FTI_NCLASS][i % FTI_NCLASS];
        fti_page *pg = q->head;
        while (pg != NULL && seen < max_pages) {
            fti_page *next = pg->next;
            seen++;
            page_collect(pg);
            /* relaxed: under abandon_lock nobody else owns the page. */
            if (ft_atomic_load_relaxed(&pg->used) == 0) {
                if (page_needs_grace(pg))
                    page_stamp(pg);
                if (retired_page_safe(pg, done)) {
                    q_remove(q, pg);
                    abandoned_pages--;
                    page_unretire(pg);
                    fti_arena_page_free(pg);
                }
            }
            pg = next;
        }
    }
    pthread_mutex_unlock(&abandon_lock);
}

/* Gives every page of h up: empty ones to their arena, the others to the
 * abandoned lists, where later allocations adopt them and ft_mem_collect
 * reclaims them. The caller owns h (its thread, or the only thread left). */
static void heap_abandon(struct fti_heap *h)
{
    for (unsigned k = 0; k < FTI_KIND_COUNT; k++) {
        for (unsigned c = 0; c < FTI_NCLASS; c++) {
            fti_page_queue *queues[2] = { &h->avail[k][c], &h->full[k][c] };
            for (unsigned qi = 0; qi < 2; qi++) {
                fti_page *pg;
                while ((pg = queues[qi]->head) != NULL) {
                    q_remove(queues[qi], pg);
                    pg->in_full = 0;
                    page_collect(pg);
                    /* relaxed: own page. */
                    if (ft_atomic_load_relaxed(&pg->used) == 0 && !page_needs_grace(pg))
                        fti_arena_page_free(pg);
                    else
                        abandon_page(pg); /* an empty object page waits there */
                }
            }
            h->pages[k][c] = &fti_page_empty;
        }
    }
    /* Retired pages wait for their grace period on the abandoned lists,
     * where fti_heap_reclaim_abandoned releases them (or a heap adopts
     * them). */
    fti_page *pg;
    while ((pg = h->retired.head) != NULL) {
        q_remove(&h->retired, pg);
        abandon_page(pg);
    }
    h->retired_count = 0;
}

void fti_heap_abandon_current(void)
{
    struct fti_heap *h = ft_tls_head.heap;
    if (h == NULL)
        return;
    heap_abandon(h);
    ft_tls_head.heap = NULL;
    pthread_once(&heap_key_once, heap_key_create);
    pthread_setspecific(heap_key, NULL);
    pthread_mutex_lock(&heap_list_lock);
    h->live = 0;
    pthread_mutex_unlock(&heap_list_lock);
}

/* ==== allocation ======================================================== */

/* Moves full pages of a class that received remote frees back to avail. */
static bool heap_take_notices(struct fti_heap *h, unsigned kind, unsigned cls)
{
    /* relaxed pre-check, then acquire: pairs with the release store of the
     * freer that found FTI_TF_FULL, so its push is visible below. */
    if (ft_atomic_load_relaxed(&h->full_notice[kind][cls]) == 0)
        return false;
    if (ft_atomic_exchange_acquire(&h->full_notice[kind][cls], 0) == 0)
        return false;
    bool moved = false;
    fti_page_queue *fq = &h->full[kind][cls];
    for (fti_page *pg = fq->head, *next; pg != NULL; pg = next) {
        next = pg->next;
        /* acquire: pairs with the freer's release CAS. */
        if ((ft_atomic_load_acquire(&pg->thread_free) & ~FTI_TF_FULL) != 0) {
            q_remove(fq, pg);
            pg->in_full = 0;
            q_push_back(&h->avail[kind][cls], pg);
            moved = true;
        }
    }
    return moved;
}

/* The current page of a class with at least one block on page->free, or
 * NULL (errno = ENOMEM). */
static fti_page *heap_find_page(struct fti_heap *h, unsigned kind, unsigned cls)
{
    fti_page_queue *q = &h->avail[kind][cls];
    for (;;) {
        fti_page *pg;
        while ((pg = q->head) != NULL) {
            if (pg->free != NULL)
                goto found;
            if (pg->local_free != NULL) {
                pg->free = pg->local_free;
                pg->local_free = NULL;
                goto found;
            }
            if (page_collect(pg) > 0)
                goto found;
            if (pg->capacity < pg->reserved) {
                page_extend(pg);
                goto found;
            }
            /* Full: flag it so that the first remote free tells us. relaxed:
             * the flag carries no data; a failed CAS means a remote free
             * arrived, which the next round collects. */
            uintptr_t expected = 0;
            if (!ft_atomic_cas_relaxed(&pg->thread_free, &expected, FTI_TF_FULL) && expected != FTI_TF_FULL)
                continue;
            q_remove(q, pg);
            pg->in_full = 1;
            q_push_back(&h->full[kind][cls], pg);
        }
        if (heap_take_notices(h, kind, cls))
            continue;
        pg = retired_take(h, kind, cls);
        if (pg == NULL)
            pg = adopt_page(h, kind, cls);
        if (pg == NULL) {
            fti_heap_reclaim_abandoned(4);
            pg = fti_arena_page_alloc(h, (fti_kind)kind, cls);
            if (pg == NULL) {
                heap_set_current(h, kind, cls);
                errno = ENOMEM;
                return NULL;
            }
        }
        q_push_front(q, pg);
    }
found:;
    fti_page *pg = q->head;
    h->pages[kind][cls] = pg;
    pg->touched = 1;
    return pg;
}

void *fti_alloc_slow(fti_kind kind, size_t size)
{
    if (size == 0)
        size = 1;
    struct fti_heap *h = fti_heap_current();
    if (size > FTI_MEDIUM_MAX)
        return fti_large_alloc(h, kind, size);
    if (h == NULL)
        return NULL;
    unsigned cls = fti_size_class(size);
    fti_page *pg = h->pages[kind][cls];
    if (pg->free == NULL) {
        pg = heap_find_page(h, kind, cls);
        if (pg == NULL)
            return NULL;
    }
    fti_block *b = pg->free;
    pg->free = fti_block_next(pg, b);
    fti_block_clear_link(pg, b);
    /* relaxed: owner-only counter (stats read it). */
    ft_atomic_store_relaxed(&pg->used, ft_atomic_load_relaxed(&pg->used) + 1);
    return b;
}

/* ==== free ============================================================== */

/* The owner saw b's link slot decode to a link of this page: confirm by
 * looking for b on the page's lists. */
static FT_NOINLINE void free_check_double(fti_page *pg, fti_block *b, const char *call)
{
    fti_block *lists[3] = {
        pg->free, pg->local_free,
        /* acquire: pairs with the freers' release CAS (links readable). */
        (fti_block *)(ft_atomic_load_acquire(&pg->thread_free) & ~FTI_TF_FULL),
    };
    for (unsigned i = 0; i < 3; i++) {
        uint32_t steps = 0;
        for (fti_block *x = lists[i]; x != NULL && steps <= pg->reserved; x = fti_block_next(pg, x), steps++) {
            FT_CHECK(x != b, "%s: double free of %p (%u-byte block)", call, (void *)b, pg->block_size);
            if (!block_in_page(pg, x))
                break;
        }
    }
}

static void check_block_start(const fti_page *pg, const void *p, const char *call)
{
    FT_CHECK(pg->state == FTI_PAGE_USED, "%s: %p was not allocated by ftrt (points into an unused ftrt page)", call, p);
    size_t off = (uintptr_t)p - (uintptr_t)pg->start;
    FT_CHECK(off % pg->block_size == 0 && off < (size_t)pg->reserved * pg->block_size,
             "%s: %p is not the start of an ftrt block (%u-byte blocks)", call, p, pg->block_size);
}

static FT_NOINLINE void free_local_page_change(fti_page *pg);

/* The owner freed into a full page, or emptied a page. */
static FT_NOINLINE void free_local_slow(fti_page *pg)
{
    /* The only page of its class (alone in the avail queue): keep it, even
     * empty, so that churn does not refill. Tested before any frame is set
     * up: churn on one page comes here on every free. */
    if (!pg->in_full && pg->next == NULL && pg->prev == NULL)
        return;
    free_local_page_change(pg);
}

/* free_local_slow's work: a full page is full no more, or a page emptied. */
static FT_NOINLINE void free_local_page_change(fti_page *pg)
{
    struct fti_heap *h = ft_tls_head.heap;
    unsigned kind = pg->kind, cls = pg->cls;
    fti_page_queue *avail = &h->avail[kind][cls];

    if (pg->in_full) {
        q_remove(&h->full[kind][cls], pg);
        pg->in_full = 0;
        /* relaxed: flag only; we own the page again as an avail page. */
        ft_atomic_fetch_and_relaxed(&pg->thread_free, ~FTI_TF_FULL);
        q_push_back(avail, pg);
        heap_set_current(h, kind, cls);
    }
    /* relaxed: own page. */
    if (ft_atomic_load_relaxed(&pg->used) != 0 || h->retire_hold != 0)
        return;
    /* Keep the current page of a class even when it empties (and the only
     * page), so that churn - one object allocated and freed per operation -
     * does not return a page to its arena and take it back on every
     * operation (mimalloc retires such pages lazily for the same reason).
     * At most one empty page per class and kind is kept this way. */
    if (h->pages[kind][cls] == pg || (avail->head == pg && pg->next == NULL))
        return;
    page_release(h, avail, pg);
}

static FT_NOINLINE void free_remote(fti_page *pg, void *p, const char *call)
{
    check_block_start(pg, p, call);
    fti_block *b = p;
    unsigned kind = pg->kind, cls = pg->cls;
    /* relaxed load; the release CAS pairs with the owner's acquire exchange
     * in page_collect, publishing the link written into b. */
    uintptr_t old = ft_atomic_load_relaxed(&pg->thread_free);
    do {
        fti_block_set_next(pg, b, (fti_block *)(old & ~FTI_TF_FULL));
    } while (!ft_atomic_cas_weak_release(&pg->thread_free, &old, (uintptr_t)b));
    if (old & FTI_TF_FULL) {
        /* relaxed: any heap record is valid memory (records are never
         * freed); a wrong one just scans in vain. */
        struct fti_heap *h = ft_atomic_load_relaxed(&pg->heap);
        if (h != &fti_heap_abandoned && h != &fti_heap_none) {
            /* release: pairs with the acquire exchange in heap_take_notices. */
            ft_atomic_store_release(&h->full_notice[kind][cls], 1);
        }
    }
}

void fti_free_slow(void *p, const char *call)
{
    uintptr_t e = fti_map_entry((uintptr_t)p);
    FT_CHECK(e != 0, "%s: %p is not a live ftrt block (foreign pointer, or double free of a large block)", call, p);
    if (fti_map_is_large(e)) {
        fti_large_free(p, call);
        return;
    }
    free_remote(fti_page_of(fti_map_arena(e), (uintptr_t)p), p, call);
}

/* ==== the fast paths ==================================================== */

static FT_NOINLINE void *alloc_traced(fti_kind kind, size_t size, void *caller)
{
    void *p = fti_alloc_slow(kind, size);
    if (p != NULL)
        fti_trace_alloc(p, size, caller);
    return p;
}

/* Everything mem_alloc's one test sends away: tracing, sizes above the small
 * classes, n == 0, no heap yet, an exhausted page. The commonest case in
 * churn, a current page whose free list ran out while its owner freed blocks
 * onto local_free, is served here without fti_alloc_slow: the swap is the
 * first thing heap_find_page would do, since the current page is the head
 * of its avail queue. */
static FT_NOINLINE void *alloc_not_fast(fti_kind kind, size_t n, void *caller)
{
    /* relaxed: tracing starts "from about now" (trace.c). */
    if (ft_atomic_load_relaxed(&fti_trace_on))
        return alloc_traced(kind, n, caller);
    struct fti_heap *h = ft_tls_head.heap;
    if (n - 1 < FTI_SMALL_MAX && h != NULL) {
        fti_page *pg = h->pages[kind][(n - 1) >> 4];
        if (pg->free == NULL && pg->local_free != NULL) {
            pg->free = pg->local_free;
            pg->local_free = NULL;
            pg->touched = 1;
            fti_block *b = pg->free;
            pg->free = fti_block_next(pg, b);
            fti_block_clear_link(pg, b);
            /* relaxed: owner-only counter (stats read it). */
            ft_atomic_store_relaxed(&pg->used, ft_atomic_load_relaxed(&pg->used) + 1);
            return b;
        }
    }
    return fti_alloc_slow(kind, n);
}

/* Same-thread allocation: a class from the size, a pop from the current
 * page's free list, no atomic RMW. The tracing test is folded into the size
 * test (fti_alloc_fast_limit is 0 while tracing), so tracing costs the fast
 * path no branch of its own. ft_malloc's fast path is 23 instructions on
 * x86-64 (release build, callgrind; docs/bench-mem.md). */
static inline void *mem_alloc(fti_kind kind, size_t n, void *caller)
{
    /* relaxed: pairs with nothing; trace.c zeroes the limit "from about
     * now", and the slow path reads fti_trace_on itself. */
    if (FT_LIKELY(n - 1 < ft_atomic_load_relaxed(&fti_alloc_fast_limit))) {
        struct fti_heap *h = ft_tls_head.heap;
        if (FT_LIKELY(h != NULL)) {
            fti_page *pg = h->pages[kind][(n - 1) >> 4];
            fti_block *b = pg->free;
            if (FT_LIKELY(b != NULL)) {
                /* kind is a constant in ft_malloc: the offset folds. */
                uintptr_t *link = (uintptr_t *)((uintptr_t)b + fti_link_offset(kind));
                pg->free = (fti_block *)(*link ^ pg->key);
                *link = 0; /* a stale link would look like a double free */
                /* relaxed: owner-only counter (stats read it). */
                ft_atomic_store_relaxed(&pg->used, ft_atomic_load_relaxed(&pg->used) + 1);
                return b;
            }
        }
    }
    return alloc_not_fast(kind, n, caller);
}

/* The owner's free of b, after the link check found b's link slot looking
 * like a free-list link, or in debug builds: checks, then frees. */
static FT_NOINLINE void free_local_checked(fti_page *pg, fti_block *b, const char *call)
{
    check_block_start(pg, b, call);
    free_check_double(pg, b, call);
    fti_block_set_next(pg, b, pg->local_free);
    pg->local_free = b;
    /* relaxed: owner-only counter (stats read it). */
    uint32_t used = ft_atomic_load_relaxed(&pg->used) - 1;
    ft_atomic_store_relaxed(&pg->used, used);
    if (used == 0 || pg->in_full)
        free_local_slow(pg);
}

/* Same-thread free of p, whose map index idx (p >> FTI_ARENA_SHIFT) the
 * caller checked to lie in [1, FTI_MAP_GRANULES): the arena bitmap says the
 * pointer is ours, the page says we own it, a push onto local_free. Every
 * slow case is a tail call, so the fast path needs no saved registers. */
static FT_NOINLINE void free_any_kind(void *p, uintptr_t idx, const char *call);

/* kind_hint: FTI_KIND_RAW for ft_free (a block of another kind takes the
 * generic path), FTI_KIND_COUNT when unknown; the link offset then folds to
 * a constant for ft_free. */
static inline void mem_free_in_map(void *p, uintptr_t idx, const char *call, unsigned kind_hint)
{
    /* The arena bitmap (one load) says whether p's granule is an arena; if
     * so the arena is p masked. Large blocks and foreign pointers read 0 and
     * go to fti_free_slow, which asks the map. */
    if (FT_UNLIKELY(!fti_granule_is_arena(idx))) {
        fti_free_slow(p, call);
        return;
    }
    fti_arena *arena = (fti_arena *)((uintptr_t)p & ~FTI_ARENA_MASK);
    fti_page *pg = fti_page_of(arena, (uintptr_t)p);
    fti_block *b = p;
    /* relaxed: equal only if this thread stored its own heap there. */
    if (FT_UNLIKELY(ft_atomic_load_relaxed(&pg->heap) != (struct fti_heap *)ft_tls_head.heap)) {
        free_remote(pg, p, call);
        return;
    }
    size_t link_offset;
    if (kind_hint == FTI_KIND_RAW) {
        if (FT_UNLIKELY(pg->kind != FTI_KIND_RAW)) {
            free_any_kind(p, idx, call);
            return;
        }
        link_offset = FTI_LINK_OFFSET_RAW;
    } else {
        link_offset = fti_link_offset(pg->kind);
    }
    /* A free block's link decodes to NULL or to a block of the same page;
     * live data almost never does (the link is keyed). Interior pointers
     * are checked here only in debug builds; remote frees always check. */
    uintptr_t *link_slot = (uintptr_t *)((uintptr_t)b + link_offset);
    uintptr_t link = *link_slot ^ pg->key;
    if (FT_UNLIKELY((link ^ (uintptr_t)b) < FTI_PAGE_SIZE || link == 0 || FT_CFG_DEBUG_LEVEL >= 2)) {
        free_local_checked(pg, b, call);
        return;
    }
    *link_slot = (uintptr_t)pg->local_free ^ pg->key;
    pg->local_free = b;
    /* relaxed: owner-only counter (stats read it). */
    uint32_t used = ft_atomic_load_relaxed(&pg->used) - 1;
    ft_atomic_store_relaxed(&pg->used, used);
    if (FT_UNLIKELY(used == 0 || pg->in_full))
        free_local_slow(pg);
}

/* ft_free of a block that is not raw memory: the link offset of its kind. */
static FT_NOINLINE void free_any_kind(void *p, uintptr_t idx, const char *call)
{
    mem_free_in_map(p, idx, call, FTI_KIND_COUNT);
}

/* mem_free_in_map after the bound test with a constant bound: granule 0
 * (no arena can live there) and addresses above the map go to fti_free_slow,
 * which aborts on them. */
static void mem_free_bounded(void *p, const char *call)
{
    uintptr_t idx = (uintptr_t)p >> FTI_ARENA_SHIFT;
    if (idx - 1 >= FTI_MAP_GRANULES - 1) {
        fti_free_slow(p, call);
        return;
    }
    mem_free_in_map(p, idx, call, FTI_KIND_COUNT);
}

static FT_NOINLINE void free_traced(void *p, const char *call)
{
    fti_trace_free(p);
    mem_free_bounded(p, call);
}

/* Everything mem_free's bound test sends away: NULL (ft_free ignores it),
 * tracing, granule 0 or an address above the map (not ours). */
static FT_NOINLINE void free_not_fast(void *p, const char *call)
{
    if (p == NULL)
        return;
    /* relaxed: as in alloc_not_fast. */
    if (ft_atomic_load_relaxed(&fti_trace_on)) {
        free_traced(p, call);
        return;
    }
    mem_free_bounded(p, call);
}

/* Free: one bound test on the map index rejects NULL and granule 0 (idx - 1
 * wraps), addresses above the map, and, since fti_free_fast_limit is 0 while
 * tracing, doubles as the tracing test. ft_free's fast path is 42
 * instructions on x86-64 (release build, callgrind; docs/bench-mem.md).
 * Callers other than ft_free never pass NULL. */
static inline void mem_free(void *p, const char *call, unsigned kind_hint)
{
    uintptr_t idx = (uintptr_t)p >> FTI_ARENA_SHIFT;
    /* relaxed: as in mem_alloc. */
    if (FT_UNLIKELY(idx - 1 >= ft_atomic_load_relaxed(&fti_free_fast_limit))) {
        free_not_fast(p, call);
        return;
    }
    mem_free_in_map(p, idx, call, kind_hint);
}

void *fti_mem_alloc(fti_kind kind, size_t size)
{
    /* Object blocks hold a header and the link after it (mem.h). */
    if (FT_UNLIKELY(size < FTI_OBJECT_MIN_BLOCK) && kind != FTI_KIND_RAW)
        size = FTI_OBJECT_MIN_BLOCK;
    return mem_alloc(kind, size, __builtin_return_address(0));
}

void fti_mem_free(void *p)
{
    FT_CHECK(p != NULL, "fti_mem_free: NULL pointer");
    mem_free(p, "fti_mem_free", FTI_KIND_COUNT);
}

void *ft_malloc(size_t n)
{
    return mem_alloc(FTI_KIND_RAW, n, __builtin_return_address(0));
}

void ft_free(void *p)
{
    mem_free(p, "ft_free", FTI_KIND_RAW); /* NULL takes the slow path, which ignores it */
}

void *ft_calloc(size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = mem_alloc(FTI_KIND_RAW, n, __builtin_return_address(0));
    /* Large blocks are fresh mappings, already zero. */
    if (p != NULL && n <= FTI_MEDIUM_MAX)
        memset(p, 0, n);
    return p;
}

/* Usable size, or 0 when p is not a live-looking ftrt block. */
static size_t block_usable_size(const void *p)
{
    uintptr_t e = fti_map_entry((uintptr_t)p);
    if (e == 0)
        return 0;
    if (fti_map_is_large(e)) {
        fti_large *l = fti_large_find(p);
        return l != NULL ? l->size : 0;
    }
    fti_page *pg = fti_page_of(fti_map_arena(e), (uintptr_t)p);
    if (pg->state != FTI_PAGE_USED)
        return 0;
    size_t off = (uintptr_t)p - (uintptr_t)pg->start;
    if (off % pg->block_size != 0 || off >= (size_t)pg->reserved * pg->block_size)
        return 0;
    return pg->block_size;
}

size_t fti_mem_usable_size(const void *p)
{
    return p != NULL ? block_usable_size(p) : 0;
}

size_t ft_malloc_usable_size(const void *p)
{
    if (p == NULL)
        return 0;
    size_t n = block_usable_size(p);
    FT_CHECK(n != 0, "ft_malloc_usable_size: %p was not allocated by ftrt (foreign pointer)", p);
    return n;
}

void *ft_realloc(void *p, size_t n)
{
    void *caller = __builtin_return_address(0);
    if (p == NULL)
        return mem_alloc(FTI_KIND_RAW, n, caller);
    if (n == 0) {
        mem_free(p, "ft_realloc", FTI_KIND_RAW);
        return NULL;
    }
    size_t old = block_usable_size(p);
    FT_CHECK(old != 0, "ft_realloc: %p was not allocated by ftrt (foreign pointer)", p);
    FT_CHECK(fti_mem_kind_of(p) == FTI_KIND_RAW, "ft_realloc: %p is an object, not ft_malloc memory", p);
    /* Stay in place when the block fits and is not more than half wasted. */
    if (n <= old && n >= old / 2) {
        /* relaxed: as in mem_alloc. */
        if (FT_UNLIKELY(ft_atomic_load_relaxed(&fti_trace_on))) {
            fti_trace_free(p);
            fti_trace_alloc(p, n, caller);
        }
        return p;
    }
    void *q = mem_alloc(FTI_KIND_RAW, n, caller);
    if (q == NULL)
        return NULL;
    memcpy(q, p, n < old ? n : old);
    mem_free(p, "ft_realloc", FTI_KIND_RAW);
    return q;
}

/* ==== visiting the caller's own slots =================================== */

int fti_heap_visit_own_slots(fti_kind kind, fti_block_visit_fn fn, void *arg)
{
    struct fti_heap *h = ft_tls_head.heap;
    int rc = 0;

    if (h != NULL) {
        size_t n = 0, cap = 0;
        fti_page **pages = NULL;
        for (unsigned c = 0; c < FTI_NCLASS; c++) {
            fti_page_queue *queues[2] = { &h->avail[kind][c], &h->full[kind][c] };
            for (unsigned qi = 0; qi < 2; qi++) {
                for (fti_page *pg = queues[qi]->head; pg != NULL; pg = pg->next) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 64;
                        fti_page **bigger = realloc(pages, cap * sizeof *pages);
                        FT_CHECK(bigger != NULL, "fti_heap_visit_own_slots: out of memory");
                        pages = bigger;
                    }
                    pages[n++] = pg;
                }
            }
        }
        /* Pages stay put while the visitor runs (it may free blocks). */
        h->retire_hold++;
        for (size_t i = 0; i < n && rc == 0; i++) {
            fti_page *pg = pages[i];
            for (uint32_t s = 0; s < pg->capacity && rc == 0; s++)
                rc = fn(pg->start + (size_t)s * pg->block_size, pg->block_size, arg);
        }
        h->retire_hold--;
        for (size_t i = 0; i < n; i++) {
            fti_page *pg = pages[i];
            fti_page_queue *q = pg->in_full ? &h->full[pg->kind][pg->cls] : &h->avail[pg->kind][pg->cls];
            /* relaxed: own page. */
            if (ft_atomic_load_relaxed(&pg->used) == 0 && !(q->head == pg && pg->next == NULL))
                page_release(h, q, pg);
        }
        free(pages);
    }
    if (rc == 0) {
        size_t count;
        fti_large **large = fti_large_snapshot(kind, h != NULL ? h : &fti_heap_none, false, &count);
        for (size_t i = 0; i < count && rc == 0; i++)
            rc = fn((uint8_t *)large[i] + FTI_LARGE_HEADER, large[i]->size, arg);
        free(large);
    }
    return rc;
}

/* ==== init ============================================================== */

int fti_mem_init(void)
{
    pthread_once(&heap_key_once, heap_key_create);
    return 0;
}

void fti_mem_fini(void)
{
    fti_heap_reclaim_abandoned(UINT32_MAX);
    fti_arena_trim();
}

void ft_mem_collect(void)
{
    fti_heap_reclaim_abandoned(UINT32_MAX);
    fti_arena_trim();
}
