/* mem.h - the mem layer's interface to the layers above (private).
 *
 * Three kinds of pages, so that a heap walk visits only what it should:
 *   FTI_KIND_RAW  ft_malloc memory, never walked by the collector
 *   FTI_KIND_OBJ  objects of non-GC types
 *   FTI_KIND_GC   objects the collector must walk
 *
 * Contract with the object layer (what makes walks, merges and lock-free
 * readers safe):
 *   - mem never writes bytes 0..23 of a freed object block (the object
 *     header): the free-list link lives at offset 24 (offset 8 in raw
 *     blocks). The object layer leaves a freed object's header reading
 *     owner 0, local 0 and a shared word on which ft_try_incref fails, so a
 *     freed slot of an object kind reads ob_owner == 0 and stays so until it
 *     is handed out again.
 *   - a slot of an object kind that was never handed out reads zero in its
 *     bytes 0..15.
 *   - object-kind blocks are 16-byte aligned and at least 32 bytes.
 *   - type-stable pages: an object page that empties keeps its kind and size
 *     class, reusable by its heap, until a QSBR grace period that began after
 *     it emptied has completed (the hooks below); only then may its memory
 *     become a page of another class, be purged or be unmapped. So a reader
 *     that loaded a pointer to an object before its last quiescent state
 *     finds an object header there (the object, a dead one, or a newer object
 *     of the same size), never arbitrary bytes. */
#ifndef FT_MEM_H
#define FT_MEM_H

#ifndef FT_BUILDING
#error "mem.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/mem.h"

typedef enum fti_kind {
    FTI_KIND_RAW = 0,
    FTI_KIND_OBJ = 1,
    FTI_KIND_GC = 2,
    FTI_KIND_COUNT
} fti_kind;

typedef struct fti_heap fti_heap;

/* Allocates size bytes of the given kind from the calling thread's heap
 * (created on first use). NULL on out-of-memory or absurd size. Object kinds
 * are not zeroed beyond what the contract above says; callers zero. */
FT_INTERNAL void *fti_mem_alloc(fti_kind kind, size_t size);

/* Frees a block of any kind, from any thread. Aborts with a one-line message
 * on a pointer mem did not allocate or a detectable double free. */
FT_INTERNAL void fti_mem_free(void *p);

/* The arena bitmap (mem_int.h): bit g set exactly while granule g (an
 * address >> FT_CFG_ARENA_SHIFT) is an arena. */
FT_INTERNAL extern _Atomic uint64_t fti_arena_bits[];

/* True if p, a block mem handed out, lies in an arena page (a small or
 * medium block); false for a large block, which has its own mapping and is
 * unmapped when freed, so it is not type-stable memory. One load. */
static inline bool fti_mem_in_arena(const void *p)
{
    uintptr_t idx = (uintptr_t)p >> FT_CFG_ARENA_SHIFT;
    /* relaxed: p is a live block of ours, whose bit was set before the block
     * was handed out (the handoff synchronises). */
    return ((atomic_load_explicit(&fti_arena_bits[idx >> 6], memory_order_relaxed) >> (idx & 63)) & 1) != 0;
}

/* Usable size of a block; 0 for a pointer mem did not allocate. */
FT_INTERNAL size_t fti_mem_usable_size(const void *p);

/* True if p is the start of a block mem handed out and has not freed
 * (debug checks: a traverse visiting a freed or foreign pointer). Exact when
 * the world is stopped; otherwise a hint. */
FT_INTERNAL bool fti_mem_is_live_block(const void *p);

/* Kind of the page p lies in, or -1 when p is not mem's. */
FT_INTERNAL int fti_mem_kind_of(const void *p);

/* The calling thread's heap, creating it if needed (NULL on OOM). */
FT_INTERNAL fti_heap *fti_heap_current(void);

/* Abandons the calling thread's heap: its pages stay walkable and are adopted
 * or reclaimed by later activity; ft_tls_head.heap becomes NULL. Called by
 * thread detach and at thread exit. */
FT_INTERNAL void fti_heap_abandon_current(void);

/* Visits every slot of the given object kind in pages the calling thread's
 * heap owns, and the large blocks that heap allocated, whether live or free
 * (see the contract above: a free slot reads ob_owner == 0). Owner only. The
 * visitor returns nonzero to stop. */
typedef int (*fti_block_visit_fn)(void *block, size_t block_size, void *arg);
FT_INTERNAL int fti_heap_visit_own_slots(fti_kind kind, fti_block_visit_fn fn, void *arg);

/* Walk flags */
#define FTI_WALK_ALL     0u
#define FTI_WALK_TOUCHED 1u /* only pages that allocated a block since the last fti_mem_clear_touched */

/* Visits every live (allocated, not freed) block of a kind in every heap,
 * abandoned pages and large blocks included. The world must be stopped (or
 * the process single-threaded). Returns the visitor's nonzero result, or 0. */
FT_INTERNAL int fti_mem_walk(fti_kind kind, unsigned flags, fti_block_visit_fn fn, void *arg);

/* Forgets which pages were touched (collector, world stopped). */
FT_INTERNAL void fti_mem_clear_touched(fti_kind kind);

/* Grace periods for type-stable pages, provided by a higher layer (the
 * object layer's grace-period tickets). Without hooks (mem used alone) empty
 * pages are released at once. */
typedef struct fti_mem_qsbr_hooks {
    /* A ticket read now: a page retired with stamp s is safe once done() > s. */
    uint64_t (*stamp)(void);
    uint64_t (*done)(void);
    /* The calling thread holds more than retire_limit_bytes of retired pages:
     * a grace period is due (the callee decides when, never inside mem). */
    void (*pressure)(void);
    size_t retire_limit_bytes;
} fti_mem_qsbr_hooks;

/* Installs (or, with NULL, removes) the hooks; called at runtime init and
 * fini while no other thread allocates. */
FT_INTERNAL void fti_mem_set_qsbr_hooks(const fti_mem_qsbr_hooks *hooks);

/* Releases the calling thread's retired pages whose grace period completed. */
FT_INTERNAL void fti_mem_release_retired(void);

/* True if the calling thread holds more retired pages than the limit / any. */
FT_INTERNAL bool fti_mem_retired_over_limit(void);
FT_INTERNAL bool fti_mem_has_retired(void);

/* Layer init/fini, called by the runtime (mem also works before ft_init). */
FT_INTERNAL int fti_mem_init(void);
FT_INTERNAL void fti_mem_fini(void);

#endif /* FT_MEM_H */
