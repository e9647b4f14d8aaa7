/* object.h - the object layer's interface to the collector and builtins
 * (private). The object core (counting, allocation, deallocation, local
 * roots, QSBR-delayed frees) sits below the collector: the collector needs
 * the header; the core calls up into it only through hooks registered here. */
#ifndef FT_OBJECT_INT_H
#define FT_OBJECT_INT_H

#ifndef FT_BUILDING
#error "object.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"

/* ob_gc_bits. FTI_GC_TRACKED is set by ft_new for FT_TYPE_GC types and
 * cleared at deallocation; the others belong to the collector. */
#define FTI_GC_TRACKED     (1u << 0)
#define FTI_GC_OLD         (1u << 1) /* survived a collection */
#define FTI_GC_FROZEN      (1u << 2) /* ft_gc_freeze: permanent generation */
#define FTI_GC_UNREACHABLE (1u << 3) /* collector scratch */
#define FTI_GC_ALIVE       (1u << 4) /* collector scratch */
#define FTI_GC_SCRATCH     (1u << 5) /* collector scratch */
#define FTI_GC_DYING       (1u << 6) /* untracked while on a deallocation worklist; re-tracked
                                        if its finalizer resurrects it (dealloc.c) */

/* Hooks the collector registers at init. */
typedef struct fti_object_hooks {
    /* An object with FT_OB_HAS_WEAKREFS is being deallocated: clear the
     * weakrefs pointing at it and schedule their callbacks. */
    void (*clear_weakrefs)(ft_object *o);
    /* The calling thread's gc_alloc_count reached the young threshold. */
    void (*alloc_threshold)(void);
} fti_object_hooks;
FT_INTERNAL void fti_object_set_hooks(const fti_object_hooks *hooks);

/* Young-generation threshold compared with ft_tls_head.gc_alloc_count at each
 * tracked allocation (0 = never call alloc_threshold). */
FT_INTERNAL void fti_object_set_alloc_threshold(uint64_t threshold);

/* World stopped: merges every object queued to any owner (so that counts
 * read by the collector are complete). */
FT_INTERNAL void fti_brc_merge_all_stopped(void);

/* World stopped: local + shared count of o (immortal: INTPTR_MAX / 2). */
FT_INTERNAL intptr_t fti_object_total_refcount(const ft_object *o);

/* o's count reached zero: finalize (once), clear weakrefs, release the
 * references it holds through traverse without recursing on the C stack,
 * run the type's dealloc, free the memory. */
FT_INTERNAL void fti_object_dealloc(ft_object *o);

/* Frees raw (ft_malloc) memory after a QSBR grace period: for containers
 * whose lock-free readers may still be reading old storage. Bounded: a thread
 * holding more than cfg->qsbr_budget_bytes forces a grace period. */
FT_INTERNAL void fti_qsbr_free_delayed(void *raw, size_t bytes);

/* Waits for a grace period (the caller is attached and outside lock-free
 * reads), then frees the calling thread's delayed blocks and releases its
 * retired object pages that it covers. */
FT_INTERNAL void fti_qsbr_barrier(void);

/* World stopped (collector): makes a deferred object ordinary again by
 * removing the deferred bias, so that refcounting frees it once the
 * collector's clear has dropped the references that kept it alive. A count
 * reaching zero here is not freed while the world is stopped: it is queued to
 * the calling thread, which frees it at its next safepoint. */
FT_INTERNAL void fti_object_undefer(ft_object *o);

/* Counters of the QSBR-delayed frees (tests, stats). */
typedef struct fti_delayed_stats {
    uint64_t forced_grace_periods; /* fti_qsbr_synchronize calls forced by the budget */
    uint64_t delayed_frees;        /* blocks that went through the delayed path */
    uint64_t held_bytes;           /* bytes the calling thread holds now */
    uint64_t held_count;           /* blocks the calling thread holds now */
} fti_delayed_stats;
/* Process-wide counters, plus the calling thread's holdings. */
FT_INTERNAL void fti_delayed_get_stats(fti_delayed_stats *out);

/* Merges every object queued to the calling thread now (what its safepoint
 * does when FT_PENDING_BRC is pending). */
FT_INTERNAL void fti_brc_merge_self(void);

/* Layer init/fini (runtime). */
FT_INTERNAL int fti_object_init(const ft_config *cfg);
FT_INTERNAL void fti_object_fini(void);

/* Lock-free read sections. A container lookup that reads shared storage
 * without a lock, takes ft_try_incref references and may drop one (a failed
 * re-check, a compared key) *and then keeps reading that storage* must run
 * inside one: a deallocation started by such a drop must not force a QSBR
 * grace period there, since the thread would report a quiescent state while
 * it still holds pointers into storage the grace period lets others free.
 * Inside a section the delayed-free budget is enforced later (the next
 * safepoint, or the next deallocation outside any section). Nests; owner only. */
static inline void fti_lockfree_read_begin(void)
{
    ft_tls_head.lockfree_reads++;
}

static inline void fti_lockfree_read_end(void)
{
    ft_tls_head.lockfree_reads--;
}

#endif /* FT_OBJECT_INT_H */
