/* gc_int.h - state shared by the files of the gc layer (private to src/gc).
 *
 * Files: collect.c (the collector proper), weakref.c (weak references and
 * their side table), gcmodule.c (the public gc-module functions), debug.c
 * (most common types, DOT export, leak report). */
#ifndef FT_GC_PRIV_H
#define FT_GC_PRIV_H

#ifndef FT_BUILDING
#error "gc_int.h is private to the ftrt library"
#endif

#include "ft_atomic.h"
#include "ft_internal.h"
#include "gc/gc.h"
#include "ftrt/gc.h"
#include "ftrt/weakref.h"
#include "object/object.h"

#include <pthread.h>

/* ---- A growable array of object pointers (malloc memory, not ft_malloc:
 * the collector must not allocate from the heaps it is walking). ---- */
typedef struct fti_gc_vec {
    void **items;
    size_t len;
    size_t cap;
} fti_gc_vec;

/* Appends p; -ENOMEM when the array cannot grow. */
FT_INTERNAL int fti_gc_vec_push(fti_gc_vec *v, void *p);
FT_INTERNAL void fti_gc_vec_free(fti_gc_vec *v);

/* ---- Collector (collect.c) ---- */

/* A candidate of the collection (16 bytes; see collect.c). While the world
 * is stopped a candidate's ob_owner holds its index + 1 in the entry array
 * (FTI_GC_SCRATCH set). */
typedef struct fti_gc_entry {
    ft_object *obj;
    uint32_t saved_owner;    /* ob_owner before the collection overwrote it */
    _Atomic int32_t gc_refs; /* total count - internal references, clamped at INT32_MAX;
                                relaxed: one worker, or atomic decrements by several */
} fti_gc_entry;

/* Reports a traverse of `traversing` that visited something that is not a
 * live object (debug level 2); never returns in that case. */
FT_INTERNAL void fti_gc_check_visited(const ft_object *traversing, const ft_object *target);

/* Heap validator (debug.c; the collector runs it at debug level 2 at the
 * start and the end of its first pause). World stopped: every tracked object
 * has a type, no leftover collector bits (FTI_GC_UNREACHABLE allowed when
 * in_collection), a real owner index, a non-negative count, and a traverse
 * that visits live objects only. Aborts with one line naming the object. */
FT_INTERNAL void fti_gc_check_heap_stopped(const char *when, bool in_collection);

/* ---- Parallel marking (parallel.c) ---- */

/* Workers to use for a collection of n candidates (1 = the collector alone). */
FT_INTERNAL unsigned fti_gc_par_workers_for(size_t n);

/* World stopped, owners overwritten: subtracts internal references with
 * `workers` threads (the caller is one of them). */
FT_INTERNAL void fti_gc_par_decref(fti_gc_entry *entries, size_t n, unsigned workers);

/* World stopped, after fti_gc_par_decref and with the roots already marked
 * FTI_GC_ALIVE (their indices in roots[0..nroots)): marks everything
 * reachable from an entry with gc_refs != 0 or from a root. Returns -ENOMEM
 * (nothing marked beyond the roots) when the workers' stacks cannot be had. */
FT_INTERNAL int fti_gc_par_mark(fti_gc_entry *entries, size_t n, unsigned workers, const uint32_t *roots,
                                size_t nroots);

FT_INTERNAL void fti_gc_par_init(unsigned configured_workers);
FT_INTERNAL void fti_gc_par_fini(void);

/* Runs a collection of generation gen (0 young, 1..2 full) on the calling
 * thread, which must own the collection (gc_state.collecting). Returns the
 * number of unreachable objects found, or -ENOMEM (nothing changed). */
FT_INTERNAL intptr_t fti_gc_collect_owned(int gen);

/* Most the measured survival ratio may raise the young trigger, as a
 * multiple of threshold0 per thread that allocated during the last interval
 * (a pause stops every thread, so the cap is per allocating thread: each
 * thread pays one pause per at most this many times threshold0 of its own
 * allocations, however many threads there are). */
#define FTI_GC_TRIGGER_MAX_SCALE 64

/* Frees the collector's scratch buffers (fini). */
FT_INTERNAL void fti_gc_collect_release_scratch(void);

/* Collector-wide state. */
typedef struct fti_gc_state {
    /* Index of the thread running a collection, 0 when none (any thread,
     * atomic CAS). A thread finding its own index is re-entrant: no-op. */
    _Atomic uint32_t collecting;
    /* Threads waiting for another thread's collection to end wait here,
     * detached (blocking region). */
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;

    _Atomic bool enabled;          /* automatic collection (any thread, relaxed) */
    _Atomic unsigned threshold[3]; /* any thread, relaxed: read once per decision */
    /* Tracked allocations reported in batches by the alloc_threshold hook
     * since the last collection (any thread, atomic add; reset by the
     * collector with the world stopped). The only field every allocating
     * thread writes: alone on its cache line, so that the read-mostly fields
     * around it (enabled, thresholds, trigger, epoch) are not invalidated by
     * every other thread's report. */
    _Alignas(64) _Atomic uint64_t young_count;
    char young_count_pad[64 - sizeof(uint64_t)];
    /* young_count that triggers a young collection: threshold0 scaled by
     * the allocations-per-surviving-young-object ratio the last collection
     * measured (collector writes, hook reads; relaxed). See docs/gc.md. */
    _Alignas(64) _Atomic uint64_t young_trigger;
    /* Threads that reported at least one allocation batch since the last
     * collection (hook adds 1 the first time per epoch; the collector reads
     * and resets it with the world stopped), and the collection epoch those
     * reports belong to (collector increments it with the world stopped;
     * hook reads; relaxed: the stop/start protocol orders both with every
     * hook, which never runs while the world is stopped). */
    _Atomic uint32_t allocating_threads;
    _Atomic uint64_t alloc_epoch;
    _Atomic uint32_t young_since_full; /* young collections since the last full one (collector) */
    _Atomic uint32_t full_count;       /* full collections (collector) */
    /* Old objects counted by the last full collection, and objects promoted
     * by young collections since (collector only: written under `collecting`). */
    uint64_t long_lived_total;
    uint64_t promoted_since_full;
    /* How many promotions it took, at the last full collection, for the old
     * generation to grow by one object (1..FTI_GC_TRIGGER_MAX_SCALE): objects
     * promoted while in flight and freed by refcounting soon after do not
     * make full collections due (collector only). See docs/gc.md. */
    uint64_t promotions_per_growth;

    pthread_mutex_t stats_lock; /* guards stats, callbacks */
    ft_gc_stats stats[FT_GC_GENERATIONS];
    struct {
        ft_gc_callback cb;
        void *arg;
    } callbacks[16];
    size_t ncallbacks;

    pthread_mutex_t garbage_lock; /* guards garbage */
    fti_gc_vec garbage;           /* counted references to uncollectable objects */
} fti_gc_state;

FT_INTERNAL extern fti_gc_state fti_gc;

/* ---- Weak references (weakref.c) ---- */

FT_INTERNAL extern const ft_type fti_weakref_type;

/* object layer hook: o (with FT_OB_HAS_WEAKREFS) is being deallocated. */
FT_INTERNAL void fti_weakref_clear_hook(ft_object *o);

/* World stopped, o unreachable: clears the weakrefs to o; their callbacks
 * (except those of weakrefs that are themselves unreachable) are queued and
 * run by fti_weakref_run_pending after the world restarts. */
FT_INTERNAL void fti_weakref_clear_stopped(ft_object *o);

/* World stopped, wr (a weakref) unreachable: detaches it from its target so
 * its callback can never fire. */
FT_INTERNAL void fti_weakref_detach_stopped(ft_object *wr);

/* Runs the callbacks queued while the world was stopped (world running). */
FT_INTERNAL void fti_weakref_run_pending(void);

FT_INTERNAL int fti_weakref_init(void);
FT_INTERNAL void fti_weakref_fini(void);

/* ---- Helpers shared by gcmodule.c and debug.c ---- */

/* Traverses o with visit (no-op for types without traverse). */
FT_INTERNAL int fti_gc_traverse(ft_object *o, ft_visit_fn visit, void *arg);

/* World stopped: o's count reached zero and its thread has it on a
 * deallocation worklist (deferred objects held only by local roots count zero
 * but are alive). Such objects are not the collector's. */
static inline bool fti_gc_is_dying(const ft_object *o, intptr_t total)
{
    /* relaxed: world stopped. */
    return total <= 0 && (ft_atomic_load_relaxed(&((ft_object *)o)->ob_flags) & FT_OB_DEFERRED) == 0;
}

/* Monotonic clock in nanoseconds. */
FT_INTERNAL uint64_t fti_gc_now_ns(void);

#endif /* FT_GC_PRIV_H */
