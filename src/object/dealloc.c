/* dealloc.c - deallocation without recursion on the C stack.
 *
 * What it guarantees: fti_object_dealloc frees an object whose count reached
 * zero, and every object that dies because of it, with a constant C stack
 * depth: the first call on a thread runs a loop; a deallocation that happens
 * while the loop is active (a reference released through traverse, a
 * finalizer's decref, a merge of a queued object) only pushes the object on
 * the thread's worklist. So a chain of any length costs one frame.
 *
 * Order for one object (CPython's subtype_dealloc and PEP 442):
 *   1. finalize, at most once (FT_OB_FINALIZED), with a temporary shared
 *      reference; if anyone took a reference meanwhile, the object was
 *      resurrected: stop (it stays unowned and merged, counted normally);
 *   2. clear weakrefs through the collector's hook (FT_OB_HAS_WEAKREFS);
 *   3. untrack;
 *   4. release the references it holds through traverse;
 *   5. the type's dealloc (non-object resources);
 *   6. poison (debug: ob_type = "<freed>"), ob_owner = 0, free at once (a
 *      large object, which has its own mapping, after a grace period).
 * The header then reads owner 0, local 0 and a shared word of 0 (the owner's
 * fast death) or MERGED with a zero count, on both of which ft_try_incref
 * fails, and it stays so until the block is handed out again: mem keeps the
 * 24-byte header of a freed object block intact, and an object page keeps
 * its size class until a QSBR grace period after it emptied (mem.h). So a
 * lock-free reader holding a stale pointer finds a dead header, or a newer
 * object of the same size whose count its CAS may take legitimately (its
 * re-check of the slot then fails and it drops that reference); the block
 * itself needs no grace period (CPython frees objects at once on the same
 * grounds).
 *
 * The worklist is a stack of pointers beside the objects, not a link through
 * the dead object's counts: lock-free readers may still read the header of a
 * dead object (their ft_try_incref fails on 0 or MERGED/0, but only if that
 * word still reads so). */
#include "object/object_int.h"

#include "mem/mem.h"
#include "thread/thread.h"

#include <stdlib.h>

#define WORKLIST_CHUNK 510

typedef struct worklist_chunk {
    struct worklist_chunk *prev;
    size_t count;
    ft_object *items[WORKLIST_CHUNK];
} worklist_chunk;

/* The calling thread's worklist (owner only). Invariant: empty whenever
 * dealloc_active is false. */
static _Thread_local worklist_chunk *worklist_top;
static _Thread_local worklist_chunk *worklist_spare;
static _Thread_local bool dealloc_active;

bool fti_dealloc_in_progress(void)
{
    return dealloc_active;
}

void fti_dealloc_thread_cleanup(void)
{
    FT_ASSERT(!dealloc_active && (worklist_top == NULL || worklist_top->count == 0));
    while (worklist_top != NULL) {
        worklist_chunk *prev = worklist_top->prev;
        free(worklist_top);
        worklist_top = prev;
    }
    free(worklist_spare);
    worklist_spare = NULL;
}

/* An object on the worklist has a zero count but still holds its
 * references, so the collector must not see it: a collection while it waits
 * (at the loop's stop-only safepoint, or during a finalizer or a type's
 * dealloc that blocks or polls) would find it unreachable and free it a
 * second time. It is untracked when pushed; FTI_GC_DYING remembers to track
 * it again if its finalizer resurrects it. Its children stay counted by it,
 * so the collector sees them referenced from outside and keeps them. Plain
 * load and store: gc bits change only on the thread deciding the object's
 * fate (here) or with the world stopped. */
static void untrack_dying(ft_object *o)
{
    /* relaxed: see above. */
    uint8_t bits = ft_atomic_load_relaxed(&o->ob_gc_bits);
    if (bits & FTI_GC_TRACKED)
        /* relaxed: see above. */
        ft_atomic_store_relaxed(&o->ob_gc_bits, (uint8_t)((bits & ~FTI_GC_TRACKED) | FTI_GC_DYING));
}

static void worklist_push(ft_object *o)
{
    untrack_dying(o);
    worklist_chunk *c = worklist_top;
    if (c == NULL || c->count == WORKLIST_CHUNK) {
        worklist_chunk *fresh = worklist_spare;
        if (fresh != NULL)
            worklist_spare = NULL;
        else
            fresh = malloc(sizeof *fresh);
        FT_CHECK(fresh != NULL, "ft_decref: out of memory for the deallocation worklist (%s object)",
                 o->ob_type->name);
        fresh->prev = c;
        fresh->count = 0;
        worklist_top = c = fresh;
    }
    c->items[c->count++] = o;
}

static ft_object *worklist_pop(void)
{
    worklist_chunk *c = worklist_top;
    while (c != NULL && c->count == 0) {
        worklist_top = c->prev;
        if (worklist_spare == NULL)
            worklist_spare = c;
        else
            free(c);
        c = worklist_top;
    }
    return c != NULL ? c->items[--c->count] : NULL;
}

static int release_reference(void *child, void *arg)
{
    (void)arg;
    if (child != NULL)
        ft_decref(child); /* nested deaths only push: dealloc_active is set */
    return 0;
}

/* Runs the finalizer with a temporary reference; true if it resurrected. */
static bool finalize_resurrects(ft_object *o, const ft_type *t)
{
    /* relaxed: the object is dead; nobody else sets flags on it. */
    ft_atomic_fetch_or_relaxed(&o->ob_flags, FT_OB_FINALIZED);
    /* relaxed: the temporary reference; readers see it through their CAS. */
    ft_atomic_store_relaxed(&o->ob_ref_shared, FTI_SHARED_ONE | FT_SHARED_MERGED);
    t->finalize(o);
    /* acq_rel: acquire pairs with the release of the decrefs of anyone who
     * took and dropped a reference during finalize; the CAS-free fetch_sub is
     * enough because the object is merged (every thread counts here). */
    int32_t before = ft_atomic_fetch_sub_acq_rel(&o->ob_ref_shared, FTI_SHARED_ONE);
    return before != (FTI_SHARED_ONE | FT_SHARED_MERGED);
}

static void dealloc_one(ft_object *o)
{
    const ft_type *t = o->ob_type;
    if (FT_CFG_DEBUG_LEVEL >= 1)
        FT_CHECK(t != &fti_freed_type, "ft_decref: use of freed object %p (<freed>)", (void *)o);
    /* relaxed: immortality is set before publication. */
    FT_ASSERT(ft_atomic_load_relaxed(&o->ob_ref_local) != FT_REF_IMMORTAL);
    /* relaxed: the object is dead; these only normalise the header (the owner
     * path's fast death leaves them as they were). */
    ft_atomic_store_relaxed(&o->ob_owner, 0);
    ft_atomic_store_relaxed(&o->ob_ref_local, 0);

    /* relaxed: flags of a dead object change only here. */
    uint16_t flags = ft_atomic_load_relaxed(&o->ob_flags);
    if (t->finalize != NULL && !(flags & FT_OB_FINALIZED)) {
        if (finalize_resurrects(o, t)) {
            /* relaxed: as in untrack_dying. */
            uint8_t bits = ft_atomic_load_relaxed(&o->ob_gc_bits);
            if (bits & FTI_GC_DYING)
                /* relaxed: as in untrack_dying. */
                ft_atomic_store_relaxed(&o->ob_gc_bits, (uint8_t)((bits & ~FTI_GC_DYING) | FTI_GC_TRACKED));
            return;
        }
        flags = ft_atomic_load_relaxed(&o->ob_flags); /* relaxed: as above */
    }
    if ((flags & FT_OB_HAS_WEAKREFS) && fti_object_hooks_current.clear_weakrefs != NULL)
        fti_object_hooks_current.clear_weakrefs(o);
    /* relaxed: gc bits change only on the thread that owns the object's fate
     * (here) or with the world stopped, so a plain load and store suffice (a
     * locked read-modify-write here cost most of a tuple's deallocation). */
    uint8_t gc_bits = ft_atomic_load_relaxed(&o->ob_gc_bits);
    if (gc_bits & FTI_GC_TRACKED)
        ft_atomic_store_relaxed(&o->ob_gc_bits, (uint8_t)(gc_bits & ~FTI_GC_TRACKED));
    if (t->traverse != NULL)
        (void)t->traverse(o, release_reference, NULL);
    if (t->dealloc != NULL)
        t->dealloc(o);
    if (FT_CFG_DEBUG_LEVEL >= 1)
        o->ob_type = &fti_freed_type;
    /* A large object has a mapping of its own, unmapped when freed: a reader
     * holding a stale pointer would fault, so it waits for a grace period
     * (rare: objects above the medium classes, 16 KiB by default). */
    if (FT_LIKELY(fti_mem_in_arena(o)))
        fti_mem_free(o);
    else
        fti_qsbr_free_delayed(o, fti_mem_usable_size(o));
}

void fti_object_dealloc(ft_object *o)
{
    if (dealloc_active) {
        worklist_push(o);
        return;
    }
    dealloc_active = true;
    dealloc_one(o);
    unsigned done = 0;
    while ((o = worklist_pop()) != NULL) {
        dealloc_one(o);
        /* Freeing a large structure takes milliseconds: let a stop-the-world
         * in between objects (the worklist's objects are untracked, see
         * untrack_dying). Stop only, staying online for QSBR: our caller may
         * be inside a lock-free read (a reader's failed re-check decref).
         * relaxed: a hint; fti_safepoint_stop_only re-reads with acquire. */
        if (FT_UNLIKELY((++done & 255u) == 0) &&
            (ft_atomic_load_relaxed(&ft_tls_head.pending) & FT_PENDING_STOP))
            fti_safepoint_stop_only();
    }
    dealloc_active = false;
    fti_object_tstate *ts = ft_tls_head.object_state;
    if (ts != NULL && FT_UNLIKELY(ts->budget_exceeded))
        fti_delayed_enforce_budget(ts);
}
