/* ftrt/object.h - the object header, types, reference counting, local roots.
 *
 * Reference counting is biased (PEP 703): the owner thread counts in
 * ob_ref_local with plain loads and stores; other threads count atomically in
 * ob_ref_shared. Immortal objects are never counted; deferred objects are not
 * counted for references held in local roots and are freed by the collector. */
#ifndef FTRT_OBJECT_H
#define FTRT_OBJECT_H

#include "ftrt/common.h"
#include "ftrt/thread.h"

#include <stdatomic.h>

typedef struct ft_object ft_object;
typedef struct ft_type ft_type;

/* Called by traverse for every object reference held; a nonzero return stops
 * the traversal and is returned by traverse. */
typedef int (*ft_visit_fn)(void *obj, void *arg);

#define FT_TYPE_GC (1u << 0) /* may be part of cycles: tracked and walked by the collector */
/* (1u << 1) was FT_TYPE_NO_SHARED_READS: every object's memory is now freed
 * at once (type-stable memory, docs/objects.md), so there is nothing left
 * for a type to opt out of. */

struct ft_type {                   /* static and immortal; not itself an object */
    const char *name;
    size_t size;                   /* bytes of the object struct, header included */
    unsigned flags;                /* FT_TYPE_* */
    /* Visits every object reference the object holds. Required for every type
     * that holds references (deallocation releases them through it). */
    int (*traverse)(void *self, ft_visit_fn visit, void *arg);
    /* Drops the references that may form cycles (collector). */
    void (*clear)(void *self);
    /* Optional; called at most once, may resurrect the object. */
    void (*finalize)(void *self);
    /* Optional; releases non-object resources (raw buffers). References are
     * released by the runtime through traverse before this runs. */
    void (*dealloc)(void *self);
    /* Optional; bytes owned beyond the object struct (ft_sizeof). */
    size_t (*size_of)(const void *self);
};

/* The header every object struct starts with: 24 bytes (docs/objects.md).
 *
 * Invariants:
 *   ob_owner != 0  =>  ob_ref_local >= 1 (an owned object's owner holds a count)
 *   total count = ob_ref_local + (ob_ref_shared >> FT_SHARED_SHIFT)
 *   ob_ref_local == FT_REF_IMMORTAL  =>  no count is ever written */
struct ft_object {
    _Atomic uint32_t ob_owner;     /* owner's thread index, 0 = unowned (merged). Written by the
                                      owner (or a merger holding the owner's queue); read relaxed by all */
    _Atomic uint8_t ob_mutex;      /* ft_mutex of the object's critical sections */
    _Atomic uint8_t ob_gc_bits;    /* FT_GC_* (collector; owner at allocation) */
    _Atomic uint16_t ob_flags;     /* FT_OB_* (atomic or/and, any thread) */
    _Atomic uint32_t ob_ref_local; /* owner only (relaxed load/store, never RMW) */
    _Atomic int32_t ob_ref_shared; /* (count << 2) | state, any thread (atomic) */
    const ft_type *ob_type;
};

#define FT_REF_IMMORTAL UINT32_MAX

/* Low bits of ob_ref_shared (the BRC state machine of PEP 703). */
#define FT_SHARED_SHIFT    2
#define FT_SHARED_DEFAULT  0 /* owned, nothing queued */
#define FT_SHARED_WEAKREFS 1 /* owned, marked shared-read: may be reached without a counted
                                reference (container slots, weakrefs), so its death takes a CAS
                                and ft_try_incref may count on it (CPython's _Py_REF_MAYBE_WEAKREF) */
#define FT_SHARED_QUEUED   2 /* queued to its owner for a merge */
#define FT_SHARED_MERGED   3 /* counts merged: the shared count is the total */
#define FT_SHARED_MASK     3

/* ob_flags */
#define FT_OB_DEFERRED     (1u << 0) /* local-root references are not counted */
#define FT_OB_HAS_WEAKREFS (1u << 1) /* a weakref points here: clear it at deallocation */
#define FT_OB_FINALIZED    (1u << 2) /* finalize has run (at most once) */
#define FT_OB_STATIC       (1u << 3) /* not heap-allocated (static immortal singletons) */
/* (1u << 4) was FT_OB_SHARED_READ: marking is now the shared state
 * FT_SHARED_WEAKREFS (ft_set_shared_read, ft_is_shared_read). */

/* Out-of-line paths of the inline counting functions. */
FT_API FT_NOINLINE void ft_incref_shared(ft_object *o);
FT_API FT_NOINLINE void ft_decref_shared(ft_object *o);
FT_API FT_NOINLINE void ft_merge_zero_local(ft_object *o);

/* New strong reference.
 * Immortality is tested first, fused with the increment as in CPython's
 * free-threaded Py_INCREF (local + 1 wraps to 0 only for FT_REF_IMMORTAL), so
 * None, small ints and interned strings cost one load and a branch.
 * Callgrind counts of both paths: docs/bench-object.md. */
static inline void ft_incref(void *op)
{
    ft_object *o = (ft_object *)op;
    /* relaxed: only the owner writes ob_ref_local; others read it solely to
     * see FT_REF_IMMORTAL, which is set before the object is published. */
    uint32_t local = atomic_load_explicit(&o->ob_ref_local, memory_order_relaxed) + 1;
    if (FT_UNLIKELY(local == 0))
        return;
    /* relaxed: ob_owner only ever changes from our index to 0 by ourselves
     * (or by a merger standing in for us while we are detached), so a stale
     * value can never make a non-owner look like the owner. */
    if (FT_LIKELY(atomic_load_explicit(&o->ob_owner, memory_order_relaxed) == ft_tls_head.owner_tag))
        atomic_store_explicit(&o->ob_ref_local, local, memory_order_relaxed);
    else
        ft_incref_shared(o);
}

/* Releases a strong reference; the object is freed when none remain. */
static inline void ft_decref(void *op)
{
    ft_object *o = (ft_object *)op;
    /* relaxed: as in ft_incref. */
    uint32_t local = atomic_load_explicit(&o->ob_ref_local, memory_order_relaxed);
    if (FT_UNLIKELY(local == FT_REF_IMMORTAL))
        return;
    /* relaxed: as in ft_incref. */
    if (FT_LIKELY(atomic_load_explicit(&o->ob_owner, memory_order_relaxed) == ft_tls_head.owner_tag)) {
        if (FT_UNLIKELY(local <= 1)) {
            ft_merge_zero_local(o);
            return;
        }
        /* relaxed: owner-only field. */
        atomic_store_explicit(&o->ob_ref_local, local - 1, memory_order_relaxed);
    } else {
        ft_decref_shared(o);
    }
}

/* ft_decref that tolerates NULL. */
static inline void ft_xdecref(void *op)
{
    if (op != NULL)
        ft_decref(op);
}

/* Takes a new reference to an object read from a shared slot without a lock.
 * Fails (returns false) when the object is dead or dying, and may also fail
 * on a live object of another thread that was never marked with
 * ft_set_shared_read: take the slot's lock and incref then, as CPython does.
 * Safe on a stale pointer while the calling thread has not passed a
 * quiescent state since it loaded it: object memory is type-stable (a freed
 * block keeps a dead header until it holds a newer object of the same size,
 * and its page keeps its size class until a QSBR grace period). The
 * reference may thus be to a newer object at the same address: re-check the
 * slot after success, and drop the reference if it changed. Mark objects
 * with ft_set_shared_read before publishing them in such slots (the builtin
 * containers mark everything they store). */
FT_API bool ft_try_incref(void *o);

/* The out-of-line part of ft_set_shared_read. */
FT_API FT_NOINLINE void ft_mark_shared_read(ft_object *o);

/* Marks o as readable lock-free: an owned object with nothing queued gets
 * the shared state FT_SHARED_WEAKREFS (QUEUED and MERGED objects need
 * nothing), so its death decides with a CAS and a concurrent ft_try_incref
 * from any thread either keeps it alive or fails. Call it, holding a
 * reference, before publishing o in a slot that readers load without a lock
 * and then ft_try_incref. Unmarked objects die without an atomic operation.
 * Freed memory is reused at once either way. One relaxed load when there is
 * nothing to do; one CAS (out of line) the first time. */
static inline void ft_set_shared_read(void *op)
{
    ft_object *o = (ft_object *)op;
    /* relaxed: the state only ever leaves DEFAULT, through RMWs; the load
     * spares the common already-marked case any read-modify-write (a stale
     * DEFAULT just costs the call, whose CAS re-validates). */
    if ((atomic_load_explicit(&o->ob_ref_shared, memory_order_relaxed) & FT_SHARED_MASK) == FT_SHARED_DEFAULT)
        ft_mark_shared_read(o);
}

/* True if o is marked (or no longer needs marking: immortal, queued, merged). */
FT_API bool ft_is_shared_read(const void *o);

/* Allocates an object of type t with count 1, owned by the calling thread,
 * tracked by the collector when t has FT_TYPE_GC. Fields after the header are
 * zeroed. NULL on out-of-memory. */
FT_API void *ft_new(const ft_type *t);

/* As ft_new, with extra_bytes after the struct (variable-sized objects). */
FT_API void *ft_new_var(const ft_type *t, size_t extra_bytes);

/* The merged count, like sys.getrefcount (immortal objects: a large value). */
FT_API intptr_t ft_refcount(const void *o);

/* Makes o immortal: never counted, never freed. */
FT_API void ft_set_immortal(void *o);

/* Makes o deferred: references in local roots are not counted, only the
 * collector frees it. */
FT_API void ft_set_deferred(void *o);

FT_API bool ft_is_immortal(const void *o);
FT_API bool ft_is_deferred(const void *o);

/* The type of an object. */
static inline const ft_type *ft_type_of(const void *o)
{
    return ((const ft_object *)o)->ob_type;
}

/* Header plus type-reported size (sys.getsizeof). */
FT_API size_t ft_sizeof(const void *o);

/* ---- Local roots ----------------------------------------------------------
 * A frame of slots a function pushes on entry and pops on exit. The collector
 * treats every attached thread's slots as roots. A slot may hold a reference
 * to a deferred object without counting it (that is what makes deferred
 * objects cheap to share); for other objects a slot holds a counted reference
 * that the function releases itself.
 *
 *     void *slots[2] = {0};
 *     ft_roots_frame frame;
 *     ft_roots_push(&frame, slots, 2);
 *     slots[0] = shared_config;            // deferred: no incref
 *     ...
 *     ft_roots_pop(&frame);
 */
typedef struct ft_roots_frame {
    struct ft_roots_frame *prev;
    size_t count;
    void **slots;
} ft_roots_frame;

static inline void ft_roots_push(ft_roots_frame *frame, void **slots, size_t count)
{
    frame->prev = ft_tls_head.roots;
    frame->count = count;
    frame->slots = slots;
    ft_tls_head.roots = frame;
}

FT_API FT_NOINLINE void ft_roots_pop_mismatch(ft_roots_frame *frame);

static inline void ft_roots_pop(ft_roots_frame *frame)
{
    if (FT_UNLIKELY(ft_tls_head.roots != frame))
        ft_roots_pop_mismatch(frame);
    ft_tls_head.roots = frame->prev;
}

#endif /* FTRT_OBJECT_H */
