/* mem_int.h - data structures of the mem layer, shared by its files only.
 *
 * Address space is carved into arenas of FTI_ARENA_SIZE bytes, aligned to
 * their size, so that a block finds its arena by masking its address and its
 * page by indexing the arena header with the next bits. The first
 * FTI_META_PAGES pages of an arena hold the header (page descriptors); the
 * others hold blocks of one size class each.
 *
 * A global two-level map, keyed by address >> FTI_ARENA_SHIFT, says which
 * arena-sized granules are ours, so ft_free can reject a foreign pointer
 * without touching memory that may not be mapped. A flat bitmap beside it
 * (one bit per granule, set exactly while the granule is an arena, so
 * bit == (map entry is an arena)) answers the free fast path's question in
 * one load; large blocks and foreign pointers read 0 and take the slow path,
 * which consults the map.
 *
 * Page invariants (owner = the heap in page->heap, or whoever holds the
 * abandoned-pages lock for an abandoned page):
 *   used + |free| + |local_free| + (reserved - capacity) == reserved,
 *   where blocks on thread_free (pushed by other threads, not yet taken back)
 *   still count in used;
 *   every block on free/local_free/thread_free lies below capacity;
 *   slots at or above capacity were never handed out since the page was
 *   (re)initialised. */
#ifndef FT_MEM_INT_H
#define FT_MEM_INT_H

#ifndef FT_BUILDING
#error "mem_int.h is private to the ftrt library"
#endif

#include "ft_atomic.h"
#include "mem/mem.h"

#include <pthread.h>

#define FTI_ARENA_SHIFT FT_CFG_ARENA_SHIFT
#define FTI_PAGE_SHIFT  FT_CFG_PAGE_SHIFT
#define FTI_ARENA_SIZE  ((uintptr_t)1 << FTI_ARENA_SHIFT)
#define FTI_PAGE_SIZE   ((uintptr_t)1 << FTI_PAGE_SHIFT)
#define FTI_ARENA_MASK  (FTI_ARENA_SIZE - 1)
#define FTI_PAGES_PER_ARENA ((unsigned)(FTI_ARENA_SIZE >> FTI_PAGE_SHIFT))

#define FTI_NCLASS      FT_MEM_CLASSES
#define FTI_SMALL_MAX   FT_MEM_SMALL_MAX
/* Medium classes stop where a page would hold fewer than four blocks. */
#define FTI_MEDIUM_MAX  ((size_t)(FT_MEM_MEDIUM_MAX < (FTI_PAGE_SIZE / 4) ? FT_MEM_MEDIUM_MAX : (FTI_PAGE_SIZE / 4)))
#define FTI_MAX_BLOCKS_PER_PAGE ((unsigned)(FTI_PAGE_SIZE / 16))

/* Address bits covered by the arena map (x86-64 and AArch64 user space). */
#define FTI_VA_BITS     48
#define FTI_MAP_BITS    (FTI_VA_BITS - FTI_ARENA_SHIFT)
#define FTI_LEAF_BITS   (FTI_MAP_BITS / 2)
#define FTI_TOP_BITS    (FTI_MAP_BITS - FTI_LEAF_BITS)
#define FTI_LEAF_SIZE   ((size_t)1 << FTI_LEAF_BITS)
#define FTI_TOP_SIZE    ((size_t)1 << FTI_TOP_BITS)
#define FTI_MAP_GRANULES ((uintptr_t)1 << FTI_MAP_BITS) /* arena-sized granules the map covers */

/* A block on a free list. The link is stored xor-ed with the page's key, so
 * that stray data in a live block almost never looks like a free-list link
 * (double-free check), at an offset that depends on the page's kind:
 *   - raw blocks (16 bytes and up): offset 8; bytes 0..7 are never written
 *     by mem once the slot was handed out;
 *   - object blocks (32 bytes and up, the header is 24): offset 24, so that
 *     the whole object header (owner, counts, type) of a freed object stays
 *     as the object layer left it until the block is handed out again. A
 *     lock-free reader holding a stale pointer reads a dead header there,
 *     never a link (CPython gives mimalloc a debug_offset for the same
 *     reason). */
#define FTI_LINK_OFFSET_RAW    8u
#define FTI_LINK_OFFSET_OBJECT 24u
#define FTI_OBJECT_MIN_BLOCK   32u

typedef struct fti_block fti_block; /* opaque: a free slot, reached through fti_block_link */

typedef enum fti_page_state {
    FTI_PAGE_META = 0,   /* holds the arena header */
    FTI_PAGE_FREE = 1,   /* in its arena's free-page list */
    FTI_PAGE_USED = 2,   /* holds a size class; page->heap says whether a
                            heap owns it or it is abandoned (the state does
                            not change on abandonment, so remote freers that
                            read it never race with the abandoning thread) */
} fti_page_state;

/* thread_free low bit: the page sits in its heap's full list, so the first
 * remote free must tell the heap (delayed-free notice, as in mimalloc). */
#define FTI_TF_FULL ((uintptr_t)1)

typedef struct fti_page fti_page;
struct fti_page {
    /* hot: the alloc/free fast paths read these */
    fti_block *free;          /* blocks to hand out (owner only) */
    fti_block *local_free;    /* blocks freed by the owner (owner only) */
    _Atomic uint32_t used;    /* see the invariant above (owner stores, stats read; relaxed) */
    uint8_t in_full;          /* page is in its heap's full list (owner only) */
    uint8_t kind;             /* fti_kind (set at init under the arena lock) */
    uint8_t cls;              /* size class (set at init under the arena lock) */
    uint8_t touched;          /* handed out a block since fti_mem_clear_touched (owner; collector when stopped) */
    uintptr_t key;            /* free-list link key (set at init) */
    _Atomic(struct fti_heap *) heap; /* owning heap, or a sentinel (owner / abandoned lock; any thread reads) */
    _Atomic uintptr_t thread_free;   /* remote frees: block list | FTI_TF_FULL (any thread, atomic) */
    /* cold */
    uint8_t *start;           /* first block (set at init) */
    uint32_t block_size;      /* bytes per block (set at init) */
    uint32_t reserved;        /* blocks that fit in the page (set at init under the arena lock) */
    uint32_t capacity;        /* blocks linked into the lists so far (owner only) */
    uint8_t state;            /* fti_page_state (arena lock; stable while the page holds live blocks) */
    uint8_t dirty;            /* free page whose memory may be resident (arena lock) */
    uint8_t retired;          /* empty object page waiting for a grace period (owner / abandoned lock) */
    uint8_t pad_[1];
    fti_page *next, *prev;    /* heap queue (owner), abandoned list (abandoned lock) or arena free list (arena lock) */
    uint64_t retire_stamp;    /* grace-period ticket read when it was retired (owner / abandoned lock) */
    /* 128 bytes: indexing is a shift, and remote freers of one page do not
     * share a cache line with the owner of the next. */
    uint8_t pad_tail_[128 - 96];
};

typedef struct fti_arena fti_arena;
struct fti_arena {
    fti_page pages[FTI_PAGES_PER_ARENA]; /* descriptors; pages[0..META) describe the header */
    fti_arena *next, *prev;   /* list of all arenas (arena lock) */
    fti_arena *avail_next, *avail_prev; /* arenas with a free page (arena lock) */
    fti_page *free_pages;     /* free page descriptors (arena lock) */
    uint32_t used_pages;      /* pages not free (arena lock) */
    uint32_t dirty_pages;     /* free pages with dirty set (arena lock) */
    uint8_t in_avail;         /* on the avail list (arena lock) */
    uint8_t empty;            /* counted in arenas_empty (arena lock) */
};

_Static_assert(sizeof(fti_page) == 128, "fti_page is 128 bytes");

#define FTI_META_PAGES ((unsigned)((sizeof(fti_arena) + FTI_PAGE_SIZE - 1) >> FTI_PAGE_SHIFT))

/* Doubly linked queue of pages (owner only). */
typedef struct fti_page_queue {
    fti_page *head, *tail;
} fti_page_queue;

/* A thread's heap. Heap records are never freed: an abandoned record is
 * recycled by a later thread, so a remote freeer that still reads an old
 * page->heap writes into valid memory (at worst a spurious notice). */
struct fti_heap {
    fti_page *pages[FTI_KIND_COUNT][FTI_NCLASS]; /* current page per class, or the empty sentinel (owner) */
    fti_page_queue avail[FTI_KIND_COUNT][FTI_NCLASS]; /* pages that may have free blocks; head == current (owner) */
    fti_page_queue full[FTI_KIND_COUNT][FTI_NCLASS];  /* pages found full (owner) */
    _Atomic uint8_t full_notice[FTI_KIND_COUNT][FTI_NCLASS]; /* a full page got a remote free (any thread sets, owner clears) */
    uint32_t retire_hold;     /* > 0: do not release empty pages (owner; heap visit in progress) */
    uint32_t retired_count;   /* pages in retired (owner) */
    fti_page_queue retired;   /* empty object pages waiting for a grace period, oldest first (owner) */
    uint8_t live;             /* owned by a thread (heap-list lock) */
    struct fti_heap *next_all; /* list of all heap records (heap-list lock) */
};

/* Sentinels for page->heap: never equal to a real heap, so the fast free
 * path's ownership test fails for free, metadata and abandoned pages. */
FT_INTERNAL extern struct fti_heap fti_heap_none;
FT_INTERNAL extern struct fti_heap fti_heap_abandoned;

/* The page every class starts with: no blocks, so the fast path falls
 * through to the slow one (read only). */
FT_INTERNAL extern fti_page fti_page_empty;

/* Large blocks: each its own mapping with this header just before the block. */
typedef struct fti_large fti_large;
struct fti_large {
    fti_large *next, *prev;   /* per-kind list (large lock) */
    fti_large *hash_next;     /* lookup chain (large lock) */
    struct fti_heap *heap;    /* allocating heap (set at allocation) */
    size_t size;              /* usable bytes */
    size_t map_size;          /* bytes mapped, header included */
    uint8_t kind;             /* fti_kind */
    uint8_t touched;          /* allocated since fti_mem_clear_touched (large lock) */
    uint8_t pad_[14];
};
#define FTI_LARGE_HEADER ((size_t)sizeof(fti_large))

/* ---- size classes ------------------------------------------------------ */

/* Class of a request of n bytes, 1 <= n <= FTI_MEDIUM_MAX. Small: 16-byte
 * steps; medium: four classes per power of two. */
static inline unsigned fti_size_class(size_t n)
{
    if (n <= FTI_SMALL_MAX)
        return (unsigned)((n - 1) >> 4);
    size_t m = n - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)m);
    return 32u + (b - 9u) * 4u + (unsigned)((m >> (b - 2u)) & 3u);
}

static inline size_t fti_class_size(unsigned cls)
{
    if (cls < 32)
        return (size_t)(cls + 1) * 16;
    unsigned g = (cls - 32) / 4, i = (cls - 32) % 4;
    return (size_t)(5 + i) << (g + 7);
}

/* ---- the arena map ----------------------------------------------------- */

FT_INTERNAL extern _Atomic(_Atomic uintptr_t *) fti_arena_map[FTI_TOP_SIZE];

/* Map entry of an address: 0 (not ours), the arena pointer itself (arenas
 * are aligned to their size, so its low bit is clear and the free fast path
 * compares the entry with the masked address in one instruction), or
 * (count << 1) | FTI_MAP_LARGE for a granule holding count > 0 large
 * mappings. relaxed: a valid pointer was published to this thread together
 * with its block (the handoff synchronises); for a foreign pointer any value
 * read is safe. */
static inline uintptr_t fti_map_entry(uintptr_t addr)
{
    uintptr_t idx = addr >> FTI_ARENA_SHIFT;
    if (FT_UNLIKELY((idx >> FTI_LEAF_BITS) >= FTI_TOP_SIZE))
        return 0;
    _Atomic uintptr_t *leaf = ft_atomic_load_relaxed(&fti_arena_map[idx >> FTI_LEAF_BITS]);
    if (leaf == NULL)
        return 0;
    return ft_atomic_load_relaxed(&leaf[idx & (FTI_LEAF_SIZE - 1)]);
}

/* The arena bitmap: bit (g & 63) of word g >> 6 is set exactly while granule
 * g holds an arena. 2^(48 - FTI_ARENA_SHIFT) bits (8 MiB of zero-filled bss
 * with 4 MiB arenas; only words of granules ever used get touched). Set and
 * cleared by arena.c under the arena lock with atomic RMW (relaxed); read by
 * any thread (relaxed, as fti_map_entry). */
#define FTI_ARENA_BIT_WORDS ((size_t)(FTI_MAP_GRANULES / 64))
FT_INTERNAL extern _Atomic uint64_t fti_arena_bits[FTI_ARENA_BIT_WORDS];

static inline bool fti_granule_is_arena(uintptr_t idx)
{
    /* relaxed: as in fti_map_entry. A valid pointer's bit was set before
     * its block was handed out (the handoff synchronises); a foreign pointer
     * reads 0 and goes to the map. A set bit can be stale only for an arena
     * that was released with no live block, i.e. for a use after free. */
    return ((ft_atomic_load_relaxed(&fti_arena_bits[idx >> 6]) >> (idx & 63)) & 1) != 0;
}

#define FTI_MAP_LARGE ((uintptr_t)1)

static inline bool fti_map_is_arena(uintptr_t e)
{
    return e != 0 && (e & FTI_MAP_LARGE) == 0;
}

static inline bool fti_map_is_large(uintptr_t e)
{
    return (e & FTI_MAP_LARGE) != 0;
}

static inline fti_arena *fti_map_arena(uintptr_t e)
{
    return (fti_arena *)e;
}

/* Map entry of a granule holding count large mappings. */
static inline uintptr_t fti_map_large_entry(uintptr_t count)
{
    return count != 0 ? (count << 1) | FTI_MAP_LARGE : 0;
}

static inline fti_page *fti_page_of(fti_arena *arena, uintptr_t addr)
{
    return &arena->pages[(addr >> FTI_PAGE_SHIFT) & (FTI_PAGES_PER_ARENA - 1)];
}

static inline size_t fti_link_offset(unsigned kind)
{
    return kind == FTI_KIND_RAW ? FTI_LINK_OFFSET_RAW : FTI_LINK_OFFSET_OBJECT;
}

/* The link slot of a block of page (see fti_block). */
static inline uintptr_t *fti_block_link(const fti_page *page, const fti_block *b)
{
    return (uintptr_t *)((uintptr_t)b + fti_link_offset(page->kind));
}

static inline fti_block *fti_block_next(const fti_page *page, const fti_block *b)
{
    return (fti_block *)(*fti_block_link(page, b) ^ page->key);
}

static inline void fti_block_set_next(const fti_page *page, fti_block *b, const fti_block *next)
{
    *fti_block_link(page, b) = (uintptr_t)next ^ page->key;
}

/* Clears the link slot of a block being handed out: a stale link would look
 * like a double free. */
static inline void fti_block_clear_link(const fti_page *page, fti_block *b)
{
    *fti_block_link(page, b) = 0;
}

/* ---- arena.c ------------------------------------------------------------ */

/* OS mapping with fault injection; NULL + ENOMEM on failure. */
FT_INTERNAL void *fti_os_map(size_t size);
FT_INTERNAL void fti_os_unmap(void *p, size_t size);

/* Takes a free page from an arena (mapping one if needed) and initialises
 * it for heap/kind/class. NULL on OOM. */
FT_INTERNAL fti_page *fti_arena_page_alloc(struct fti_heap *heap, fti_kind kind, unsigned cls);
/* Returns an empty page to its arena; may release the arena (hysteresis). */
FT_INTERNAL void fti_arena_page_free(fti_page *page);
/* Unmaps every empty arena. */
FT_INTERNAL void fti_arena_trim(void);
/* Calls fn on every page in state USED (caller holds the arena lock: fn
 * must not allocate or release pages). */
FT_INTERNAL void fti_arena_foreach_page(void (*fn)(fti_page *page, void *arg), void *arg);
/* The arena lock, for walks that must not race with arena changes. */
FT_INTERNAL void fti_arena_lock(void);
FT_INTERNAL void fti_arena_unlock(void);

/* Take / release every arena, large-block and map lock around fork(). */
FT_INTERNAL void fti_arena_fork_prepare(void);
FT_INTERNAL void fti_arena_fork_release(void);

/* Large blocks. */
FT_INTERNAL void *fti_large_alloc(struct fti_heap *heap, fti_kind kind, size_t size);
/* Frees a large block; aborts (naming call) if p is not a live large block. */
FT_INTERNAL void fti_large_free(void *p, const char *call);
/* The header of a live large block, or NULL. */
FT_INTERNAL fti_large *fti_large_find(const void *p);
/* Snapshot of the large blocks of a kind (of one heap if heap != NULL;
 * touched only if only_touched): a malloc'ed array, *count entries. */
FT_INTERNAL fti_large **fti_large_snapshot(fti_kind kind, struct fti_heap *heap, bool only_touched, size_t *count);
FT_INTERNAL void fti_large_clear_touched(fti_kind kind);

/* Global counters (any thread, relaxed atomics). */
typedef struct fti_mem_counters {
    _Atomic size_t os_mapped, os_peak;
    _Atomic uint64_t map_calls, unmap_calls, map_failures;
    _Atomic size_t committed, committed_peak; /* page bytes held by heaps + large bytes */
    _Atomic size_t arenas, arenas_empty, large_blocks, large_bytes;
} fti_mem_counters;
FT_INTERNAL extern fti_mem_counters fti_mem_ctr;
FT_INTERNAL void fti_counter_add_peak(_Atomic size_t *value, _Atomic size_t *peak, size_t delta);

/* ---- heap.c ------------------------------------------------------------- */

FT_INTERNAL void *fti_alloc_slow(fti_kind kind, size_t size);
FT_INTERNAL void fti_free_slow(void *p, const char *call);
/* Takes back remote frees of an abandoned page and releases it if empty
 * (abandoned lock). */
FT_INTERNAL void fti_heap_reclaim_abandoned(unsigned max_pages);
FT_INTERNAL void fti_heap_stats(size_t *live_heaps, size_t *abandoned_pages, size_t *retired_pages);

/* ---- trace.c ------------------------------------------------------------ */

FT_INTERNAL extern _Atomic int fti_trace_on;
/* The fast paths' bounds, which double as the tracing test: FTI_SMALL_MAX and
 * FTI_MAP_GRANULES - 1 while tracing is off, 0 while it is on (so that every
 * call takes the path that reads fti_trace_on). Written by trace.c under its lock
 * (relaxed); read by every allocation and free (relaxed). */
FT_INTERNAL extern _Atomic size_t fti_alloc_fast_limit;
FT_INTERNAL extern _Atomic uintptr_t fti_free_fast_limit;
FT_INTERNAL void fti_trace_fork_prepare(void);
FT_INTERNAL void fti_trace_fork_release(void);
FT_INTERNAL void fti_trace_alloc(void *p, size_t size, void *caller);
FT_INTERNAL void fti_trace_free(void *p);

#endif /* FT_MEM_INT_H */
