/* object.c - allocation and biased reference counting (PEP 703).
 *
 * What it guarantees: the owner of an object counts in ob_ref_local with
 * plain relaxed loads and stores; every other thread counts in ob_ref_shared
 * with atomic read-modify-writes. The true count is
 *     ob_ref_local + (ob_ref_shared >> 2) - (state == QUEUED ? 1 : 0)
 * (the queue holds the decrement that would have gone below zero).
 *
 * Why it is correct: every decision that an object is dead is made by a
 * compare-and-swap on ob_ref_shared that installs FT_SHARED_MERGED with a
 * zero count - the owner's zero-local merge, a non-owner's last decref, the
 * merge of a queued object - so a concurrent ft_try_incref (also a CAS on
 * ob_ref_shared) either lands first and keeps the object alive, or sees
 * MERGED/0 and fails. ob_owner only ever changes from an index to 0, by the
 * owner or by a merger while the owner cannot run, so a thread that reads its
 * own index there really is the owner. */
#include "object/object_int.h"

#include "mem/mem.h"
#include "thread/thread.h"

#include <stdlib.h>
#include <string.h>

fti_object_hooks fti_object_hooks_current;
static _Atomic uint64_t alloc_threshold; /* (any thread, atomic relaxed: a plain tuning value) */

/* The poison type of freed objects (debug builds): a later incref or decref
 * that reaches a slow path names it and aborts. */
const ft_type fti_freed_type = { .name = "<freed>", .size = sizeof(ft_object) };

void fti_object_set_hooks(const fti_object_hooks *hooks)
{
    fti_object_hooks_current = *hooks;
}

void fti_object_set_alloc_threshold(uint64_t threshold)
{
    /* relaxed: a threshold, no data hangs off it. */
    ft_atomic_store_relaxed(&alloc_threshold, threshold);
}

/* ---- Per-thread state ---------------------------------------------------- */

fti_object_tstate *fti_object_tstate_get(void)
{
    fti_object_tstate *ts = ft_tls_head.object_state;
    if (FT_LIKELY(ts != NULL))
        return ts;
    FT_CHECK(ft_tls_head.owner_tag != UINT32_MAX, "object layer: calling thread is not attached");
    ts = calloc(1, sizeof *ts);
    FT_CHECK(ts != NULL, "object layer: out of memory for the thread state");
    ts->index = ft_tls_head.owner_tag;
    ft_tls_head.object_state = ts;
    fti_brc_attach_self(ts->index);
    return ts;
}

/* ---- Allocation ---------------------------------------------------------- */

void *ft_new_var(const ft_type *t, size_t extra_bytes)
{
    FT_CHECK(ft_tls_head.owner_tag != UINT32_MAX,
             "ft_new: calling thread is not attached (%s object; ft_thread_attach first)",
             t != NULL ? t->name : "NULL type");
    FT_CHECK(t != NULL && t->size >= sizeof(ft_object),
             "ft_new: type %s is smaller than the object header", t != NULL ? t->name : "NULL");
    if (extra_bytes > SIZE_MAX - t->size)
        return NULL;
    size_t size = t->size + extra_bytes;
    bool gc = (t->flags & FT_TYPE_GC) != 0;
    if (FT_UNLIKELY(ft_tls_head.object_state == NULL))
        (void)fti_object_tstate_get(); /* the owner's queue slot must exist before it owns anything */
    ft_object *o = fti_mem_alloc(gc ? FTI_KIND_GC : FTI_KIND_OBJ, size);
    if (o == NULL)
        return NULL;
    /* A lock-free reader holding a stale pointer to the block's previous
     * object may read this header while we write it: it fails on the dead
     * header and on this new one alike (shared word 0: ft_try_incref), so
     * relaxed atomic stores suffice; the caller publishes the object with
     * its own synchronisation. */
    ft_atomic_store_relaxed(&o->ob_owner, ft_tls_head.owner_tag);
    ft_atomic_store_relaxed(&o->ob_mutex, 0);
    ft_atomic_store_relaxed(&o->ob_gc_bits, gc ? FTI_GC_TRACKED : 0);
    ft_atomic_store_relaxed(&o->ob_flags, 0);
    ft_atomic_store_relaxed(&o->ob_ref_local, 1);
    ft_atomic_store_relaxed(&o->ob_ref_shared, FT_SHARED_DEFAULT);
    o->ob_type = t;
    memset((char *)o + sizeof(ft_object), 0, size - sizeof(ft_object));
    if (gc) {
        uint64_t count = ++ft_tls_head.gc_alloc_count;
        /* relaxed: a tuning value set by the collector. */
        uint64_t threshold = ft_atomic_load_relaxed(&alloc_threshold);
        if (FT_UNLIKELY(threshold != 0 && count >= threshold) && fti_object_hooks_current.alloc_threshold)
            fti_object_hooks_current.alloc_threshold();
    }
    return o;
}

void *ft_new(const ft_type *t)
{
    return ft_new_var(t, 0);
}

/* ---- Counting slow paths --------------------------------------------------- */

static const char *type_name(const ft_object *o)
{
    const ft_type *t = o->ob_type;
    return t != NULL && t->name != NULL ? t->name : "?";
}

static inline void check_live(ft_object *o, const char *call)
{
    if (FT_CFG_DEBUG_LEVEL >= 1)
        FT_CHECK(o->ob_type != &fti_freed_type, "%s: use of freed object %p (<freed>)", call, (void *)o);
}

void ft_incref_shared(ft_object *o)
{
    FT_CHECK(ft_tls_head.owner_tag != UINT32_MAX,
             "ft_incref: calling thread is not attached (%s object)", type_name(o));
    check_live(o, "ft_incref");
    /* relaxed: taking a reference publishes nothing; the caller already holds
     * one (or the object is unowned and merged), so it cannot be dying. */
    ft_atomic_fetch_add_relaxed(&o->ob_ref_shared, FTI_SHARED_ONE);
}

void ft_decref_shared(ft_object *o)
{
    FT_CHECK(ft_tls_head.owner_tag != UINT32_MAX,
             "ft_decref: calling thread is not attached (%s object)", type_name(o));
    check_live(o, "ft_decref");
    bool queue;
    int32_t updated;
    /* relaxed: the CAS below re-validates. */
    int32_t shared = ft_atomic_load_relaxed(&o->ob_ref_shared);
    do {
        queue = false;
        if ((shared & FT_SHARED_MASK) == FT_SHARED_MERGED) {
            /* merged: the shared field is the whole count */
            FT_CHECK(shared >= FT_SHARED_MERGED + FTI_SHARED_ONE,
                     "ft_decref: refcount of %s object %p below zero", type_name(o), (void *)o);
            updated = shared - FTI_SHARED_ONE;
        } else if (shared == FT_SHARED_DEFAULT || shared == FT_SHARED_WEAKREFS) {
            /* would go below zero while owned: the owner must merge; the queue
             * holds this reference until then */
            queue = true;
            updated = FT_SHARED_QUEUED;
        } else {
            updated = shared - FTI_SHARED_ONE; /* may go negative while QUEUED */
        }
        /* acq_rel: release publishes our writes to the object to whoever frees
         * it; acquire (when we free it) pairs with every other decref's release. */
    } while (!ft_atomic_cas_weak_acq_rel(&o->ob_ref_shared, &shared, updated));

    if (queue) {
        /* relaxed: either the owner's index (the queue's merge, under the
         * slot lock, orders the rest) or 0 when the owner is merging right
         * now, in which case fti_brc_enqueue touches the shared word only. */
        fti_brc_enqueue(o, ft_atomic_load_relaxed(&o->ob_owner));
    } else if (updated == FT_SHARED_MERGED) {
        /* relaxed: the flag is set before the bias it guards. A deferred
         * object's bias never leaves through a decref: it reaching zero
         * means one decref too many. */
        FT_CHECK(!(ft_atomic_load_relaxed(&o->ob_flags) & FT_OB_DEFERRED),
                 "ft_decref: refcount of %s object %p below zero (deferred)", type_name(o), (void *)o);
        fti_object_dealloc(o);
    }
}

void ft_merge_zero_local(ft_object *o)
{
    /* relaxed: owner-only field. */
    uint32_t local = ft_atomic_load_relaxed(&o->ob_ref_local);
    check_live(o, "ft_decref");
    FT_CHECK(local >= 1, "ft_decref: refcount of %s object %p below zero", type_name(o), (void *)o);
    /* Fast death (CPython's _Py_MergeZeroLocalRefcount): no shared count and
     * nothing that reaches the object without a counted reference (a lock-free
     * reader of a container slot, or a weakref) can race with us, so no CAS.
     * acquire: pairs with the release of the last non-owner decref, making
     * its writes to the object (and a flag it set) visible before the free. */
    int32_t shared_now = ft_atomic_load_acquire(&o->ob_ref_shared);
    /* relaxed: a flag is set by a thread holding a counted reference, before
     * the release decref that the acquire above synchronises with. */
    uint16_t flags = ft_atomic_load_relaxed(&o->ob_flags);
    if (shared_now == 0 && !(flags & FT_OB_HAS_WEAKREFS)) {
        /* relaxed: owner-only field; the object is dead. */
        ft_atomic_store_relaxed(&o->ob_ref_local, 0);
        fti_object_dealloc(o);
        return;
    }
    /* relaxed: owner-only field; no other thread reads it for a decision. */
    ft_atomic_store_relaxed(&o->ob_ref_local, 0);
    /* relaxed: unowned from now on (before the shared field is merged, as in
     * CPython gh-119999: whoever sees MERGED must not take the owner path). */
    ft_atomic_store_relaxed(&o->ob_owner, 0);
    /* relaxed: the CAS re-validates. */
    int32_t shared = ft_atomic_load_relaxed(&o->ob_ref_shared);
    int32_t merged;
    do {
        /* A QUEUED object keeps the queue's pending decrement out of the
         * count; whoever holds the entry applies it to the merged word (the
         * queuer itself if it sees ob_owner == 0 now). So the count here is
         * at least zero in a correct program. */
        FT_CHECK(shared >= 0, "ft_decref: refcount of %s object %p below zero", type_name(o), (void *)o);
        merged = (shared & ~FT_SHARED_MASK) | FT_SHARED_MERGED;
        /* acq_rel: acquire pairs with the release of other threads' decrefs
         * (their writes to the object precede our free); release for a
         * later non-owner that frees it. A CAS, not a load, so that a racing
         * ft_try_incref is either seen here or fails on MERGED/0. */
    } while (!ft_atomic_cas_weak_acq_rel(&o->ob_ref_shared, &shared, merged));
    if (merged == FT_SHARED_MERGED)
        fti_object_dealloc(o);
}

intptr_t fti_object_explicit_merge(ft_object *o, int32_t extra)
{
    /* relaxed: owner-only field; the caller is the owner or stands in for it. */
    uint32_t local = ft_atomic_load_relaxed(&o->ob_ref_local);
    FT_ASSERT(local != FT_REF_IMMORTAL);
    /* relaxed: as in ft_merge_zero_local (before the shared field is merged). */
    ft_atomic_store_relaxed(&o->ob_owner, 0);
    /* relaxed: owner-only field, folded into the shared count by the CAS
     * below; cleared before it, because once the CAS publishes the total
     * another thread may free the object. */
    ft_atomic_store_relaxed(&o->ob_ref_local, 0);
    /* relaxed: the CAS re-validates. */
    int32_t shared = ft_atomic_load_relaxed(&o->ob_ref_shared);
    int64_t total;
    do {
        total = (int64_t)(shared >> FT_SHARED_SHIFT) + (int64_t)local + extra;
        FT_CHECK(total >= 0, "ft_decref: refcount of %s object %p below zero (at merge)",
                 type_name(o), (void *)o);
        FT_CHECK(total < (INT32_MAX >> FT_SHARED_SHIFT), "ft_incref: refcount of %s object %p overflows",
                 type_name(o), (void *)o);
        /* acq_rel: as in ft_merge_zero_local. */
    } while (!ft_atomic_cas_weak_acq_rel(&o->ob_ref_shared, &shared,
                                         (int32_t)(total << FT_SHARED_SHIFT) | FT_SHARED_MERGED));
    return (intptr_t)total;
}

bool ft_try_incref(void *op)
{
    ft_object *o = op;
    /* relaxed: FT_REF_IMMORTAL is set before publication. */
    uint32_t local = ft_atomic_load_relaxed(&o->ob_ref_local);
    if (local == FT_REF_IMMORTAL)
        return true;
    /* relaxed: as in ft_incref. */
    if (ft_atomic_load_relaxed(&o->ob_owner) == ft_tls_head.owner_tag) {
        if (local == 0)
            return false; /* our own object in the middle of its deallocation */
        /* relaxed: owner-only field. */
        ft_atomic_store_relaxed(&o->ob_ref_local, local + 1);
        return true;
    }
    /* an unattached reader is not covered by QSBR: the object may be freed
     * under it */
    FT_CHECK(ft_tls_head.owner_tag != UINT32_MAX,
             "ft_try_incref: calling thread is not attached (%s object)", type_name(o));
    /* relaxed: the CAS re-validates. */
    int32_t shared = ft_atomic_load_relaxed(&o->ob_ref_shared);
    do {
        /* 0: owned with no shared count and not marked shared-read, so its
         * owner may free it without a CAS (fast death); or a freed block, or
         * a new object being initialised in a reused block. Never touch it
         * (CPython's _Py_TryIncRefShared fails on it too). Readers of
         * container slots see marked objects (ft_set_shared_read sets
         * FT_SHARED_WEAKREFS), whose death always goes through a CAS. */
        if (shared == 0)
            return false;
        if ((shared & FT_SHARED_MASK) == FT_SHARED_MERGED && shared < FT_SHARED_MERGED + FTI_SHARED_ONE)
            return false; /* merged with a zero count: dead or dying */
        /* acquire: pairs with the release of ft_set_shared_read's marking
         * CAS (the head of the release sequence our CAS reads from), so that
         * when the block holds a newer object than the one the reader meant,
         * the reference we take (and may be the last to drop) sees that
         * object initialised. Atomicity alone decides the race with the
         * zero CAS of the death paths. */
    } while (!ft_atomic_cas_weak_acquire(&o->ob_ref_shared, &shared, shared + FTI_SHARED_ONE));
    return true;
}

void ft_mark_shared_read(ft_object *o)
{
    /* relaxed: set before publication. Immortal objects are never counted. */
    if (ft_atomic_load_relaxed(&o->ob_ref_local) == FT_REF_IMMORTAL)
        return;
    /* relaxed: the CAS re-validates. */
    int32_t shared = ft_atomic_load_relaxed(&o->ob_ref_shared);
    /* Only an owned object with nothing queued needs the state: QUEUED and
     * MERGED already die through a CAS (CPython's _PyObject_SetMaybeWeakref). */
    while ((shared & FT_SHARED_MASK) == FT_SHARED_DEFAULT) {
        /* release: heads the release sequence that ft_try_incref's acquire
         * CAS reads from (object.c, ft_try_incref). */
        if (ft_atomic_cas_weak_release(&o->ob_ref_shared, &shared, shared | FT_SHARED_WEAKREFS))
            break;
    }
}

bool ft_is_shared_read(const void *op)
{
    ft_object *o = (ft_object *)op;
    /* relaxed: a snapshot; the state never returns to DEFAULT. */
    return ft_is_immortal(o) || (ft_atomic_load_relaxed(&o->ob_ref_shared) & FT_SHARED_MASK) != FT_SHARED_DEFAULT;
}

/* ---- Queries and modes ------------------------------------------------------ */

static intptr_t counted(const ft_object *o, uint32_t local, int32_t shared)
{
    intptr_t total = (intptr_t)local + (shared >> FT_SHARED_SHIFT);
    if ((shared & FT_SHARED_MASK) == FT_SHARED_QUEUED)
        total -= 1;
    /* relaxed: the flag is set once, before or with the bias. */
    if (ft_atomic_load_relaxed(&((ft_object *)o)->ob_flags) & FT_OB_DEFERRED)
        total -= FTI_DEFERRED_BIAS;
    return total;
}

intptr_t ft_refcount(const void *op)
{
    ft_object *o = (ft_object *)op;
    /* relaxed: a snapshot, like sys.getrefcount; exact when nothing races. */
    uint32_t local = ft_atomic_load_relaxed(&o->ob_ref_local);
    if (local == FT_REF_IMMORTAL)
        return INTPTR_MAX / 2;
    /* relaxed: as above. */
    return counted(o, local, ft_atomic_load_relaxed(&o->ob_ref_shared));
}

intptr_t fti_object_total_refcount(const ft_object *o)
{
    return ft_refcount(o);
}

void ft_set_immortal(void *op)
{
    ft_object *o = op;
    /* release: set by the creator before the object is shared (the header's
     * contract); pairs with the acquire of a lock-free reader that holds a
     * stale pointer to the block and finds an immortal object there (dict.c,
     * key_matches_lockfree), which then reads its contents. The owner field
     * is cleared so that merges skip it. */
    ft_atomic_store_release(&o->ob_ref_local, FT_REF_IMMORTAL);
    ft_atomic_store_relaxed(&o->ob_owner, 0);
    /* relaxed: gc bits change only on the owner (here) or with the world stopped. */
    ft_atomic_fetch_and_relaxed(&o->ob_gc_bits, (uint8_t)~FTI_GC_TRACKED); /* never collected */
}

bool ft_is_immortal(const void *op)
{
    /* relaxed: set before publication. */
    return ft_atomic_load_relaxed(&((ft_object *)op)->ob_ref_local) == FT_REF_IMMORTAL;
}

void ft_set_deferred(void *op)
{
    ft_object *o = op;
    if (ft_is_immortal(o))
        return;
    /* relaxed: only the first caller adds the bias; the count carries no data. */
    uint16_t old = ft_atomic_fetch_or_relaxed(&o->ob_flags, FT_OB_DEFERRED);
    if (!(old & FT_OB_DEFERRED))
        ft_atomic_fetch_add_relaxed(&o->ob_ref_shared, FTI_DEFERRED_BIAS * FTI_SHARED_ONE);
}

bool ft_is_deferred(const void *op)
{
    /* relaxed: a flag, no data hangs off it. */
    return (ft_atomic_load_relaxed(&((ft_object *)op)->ob_flags) & FT_OB_DEFERRED) != 0;
}

void fti_object_undefer(ft_object *o)
{
    /* relaxed: world stopped, or the collector's own thread. */
    uint16_t old = ft_atomic_fetch_and_relaxed(&o->ob_flags, (uint16_t)~FT_OB_DEFERRED);
    if (!(old & FT_OB_DEFERRED))
        return;
    if (fti_world_is_stopped()) {
        /* Free nothing while stopped: fold the counts, then let the queue
         * carry the bias's decrement to our next safepoint. */
        if (fti_object_explicit_merge(o, 0) >= 2)
            (void)fti_object_explicit_merge(o, -1);
        else
            fti_brc_enqueue(o, ft_tls_head.owner_tag);
        return;
    }
    ft_decref_shared(o);
}

size_t ft_sizeof(const void *op)
{
    const ft_type *t = ft_type_of(op);
    return t->size + (t->size_of != NULL ? t->size_of(op) : 0);
}

void ft_roots_pop_mismatch(ft_roots_frame *frame)
{
    ft_fatal("ft_roots_pop: frame %p is not the innermost local-roots frame (top is %p)",
             (void *)frame, (void *)ft_tls_head.roots);
}

/* ---- Init / fini ------------------------------------------------------------- */

int fti_object_init(const ft_config *cfg)
{
    size_t budget = cfg != NULL && cfg->qsbr_budget_bytes != 0 ? cfg->qsbr_budget_bytes : (size_t)1 << 20;
    fti_delayed_set_budget(budget, budget / 16);
    fti_delayed_install_mem_hooks(true);
    return fti_brc_init();
}

void fti_object_fini(void)
{
    fti_brc_fini();
    /* Every thread is detached: no reader is left, so pages need no grace. */
    fti_delayed_install_mem_hooks(false);
    memset(&fti_object_hooks_current, 0, sizeof fti_object_hooks_current);
    fti_object_set_alloc_threshold(0);
}
