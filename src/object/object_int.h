/* object_int.h - declarations shared by the object layer's own files
 * (object.c, brc.c, dealloc.c, delayed_free.c). Private to src/object/. */
#ifndef FT_OBJECT_PRIV_H
#define FT_OBJECT_PRIV_H

#ifndef FT_BUILDING
#error "object_int.h is private to the ftrt library"
#endif

#include "ft_atomic.h"
#include "ft_internal.h"
#include "object/object.h"

#include <pthread.h>

/* Unit of ob_ref_shared: the count sits above the two state bits. */
#define FTI_SHARED_ONE ((int32_t)1 << FT_SHARED_SHIFT)

/* The deferred bias: ft_set_deferred adds one shared count that refcounting
 * never removes, so that refcounting alone can never free a deferred object
 * (CPython adds _Py_REF_DEFERRED for the same purpose). Counts reported by
 * ft_refcount and fti_object_total_refcount exclude it. */
#define FTI_DEFERRED_BIAS 1

/* Per-thread state of the object layer, reached through
 * ft_tls_head.object_state. Owner only, except where said. */
typedef struct fti_object_tstate {
    uint32_t index;                 /* the owner's thread index (owner only) */
    struct fti_delayed_chunk *delayed_head; /* oldest chunk of QSBR-delayed frees (owner only) */
    struct fti_delayed_chunk *delayed_tail; /* newest chunk, receives pushes (owner only) */
    struct fti_delayed_chunk *spare;        /* emptied chunks kept for reuse, linked by next (owner only) */
    size_t delayed_bytes;           /* bytes held in delayed frees (owner only) */
    size_t delayed_count;           /* blocks held in delayed frees (owner only) */
    uint64_t delayed_total;         /* blocks that took the delayed path (owner only; statistic) */
    bool budget_exceeded;           /* a forced grace period is due at the end of the
                                       outermost deallocation (owner only) */
} fti_object_tstate;

/* ---- object.c ---- */
extern fti_object_hooks fti_object_hooks_current; /* written at init, read-only after */
extern const ft_type fti_freed_type;              /* debug poison type "<freed>" */

/* Merges o's local count into its shared count, adds extra, marks it merged
 * and unowned; returns the merged total (deferred bias included). Called by the
 * owner, or by a merger while the owner cannot run (suspended, detached for
 * good, or world stopped). */
FT_INTERNAL intptr_t fti_object_explicit_merge(ft_object *o, int32_t extra);

/* The calling thread's state, created on first use (fatal on OOM). */
FT_INTERNAL fti_object_tstate *fti_object_tstate_get(void);

/* ---- brc.c ---- */
/* o's shared count would go below zero on a non-owner's decref: it was
 * marked FT_SHARED_QUEUED by the caller; hand it to its owner (whose index
 * the caller read from ob_owner). */
FT_INTERNAL void fti_brc_enqueue(ft_object *o, uint32_t owner_index);
/* The calling thread becomes an owner: its queue slot accepts entries. */
FT_INTERNAL void fti_brc_attach_self(uint32_t index);
FT_INTERNAL int fti_brc_init(void);
FT_INTERNAL void fti_brc_fini(void);

/* ---- dealloc.c ---- */
/* True while the calling thread runs a deallocation (its worklist is live). */
FT_INTERNAL bool fti_dealloc_in_progress(void);
/* Releases the calling thread's cached worklist memory (detach). */
FT_INTERNAL void fti_dealloc_thread_cleanup(void);

/* ---- delayed_free.c ---- */
/* Frees whatever delayed blocks a completed grace period covers. */
FT_INTERNAL void fti_delayed_poll(fti_object_tstate *ts);
/* Forces a grace period if the thread is over its budget (between
 * deallocations, never inside one). */
FT_INTERNAL void fti_delayed_enforce_budget(fti_object_tstate *ts);
/* Frees the thread's cached empty chunks (detach). */
FT_INTERNAL void fti_delayed_release_spares(fti_object_tstate *ts);
/* Moves the thread's statistics to the process-wide counters (detach). */
FT_INTERNAL void fti_delayed_retire_stats(fti_object_tstate *ts);
/* Waits for a grace period and frees everything the thread holds. */
FT_INTERNAL void fti_delayed_flush(fti_object_tstate *ts);
FT_INTERNAL void fti_delayed_set_budget(size_t bytes, size_t count);
/* Gives mem the grace-period tickets its type-stable object pages wait on
 * (install at init after the budget is set; remove at fini). */
FT_INTERNAL void fti_delayed_install_mem_hooks(bool install);

#endif /* FT_OBJECT_PRIV_H */
