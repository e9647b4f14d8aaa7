/* collect.c - the stop-the-world cycle collector.
 *
 * Guarantee: an object is cleared (its type's clear called) only if, at the
 * moment the world was stopped, no reference to it existed from outside the
 * collected set (no thread's local roots, no object outside the set, no
 * reference not accounted for by traverse), and no finalizer or weakref
 * callback made it reachable again before the (second) pause.
 *
 * Why it is correct. With every other thread parked at a safepoint or in a
 * blocking region (where it may not touch objects), and every pending biased
 * count merged, fti_object_total_refcount is the exact number of references to
 * each object. For every candidate, gc_refs = total - (references from other
 * candidates, found by traverse). gc_refs > 0 means a reference from outside
 * the set; such objects, objects in any thread's local roots (deferred objects
 * are not counted for those), and everything reachable from them are alive.
 * The rest can only be reached from each other: nobody outside can obtain a
 * reference any more once their weakrefs are cleared, which we do while the
 * world is still stopped (CPython clears them in its pause too: otherwise
 * ft_weakref_get could hand out a garbage object after the restart).
 * Finalizers run with the world running and may store references anywhere;
 * if any ran, a second short pause recomputes gc_refs inside the unreachable
 * set (minus the one reference the collector holds on each) and keeps what
 * became reachable. What is left is cleared and released through ordinary
 * reference counting, so no memory is freed while the collector holds it.
 *
 * Scratch space. gc_refs needs a word per candidate. CPython reuses ob_tid
 * and restores it from the page's owner; here pages change owner (adoption),
 * so ob_owner cannot be rebuilt from the page. Instead every candidate gets a
 * 16-byte entry in a side array {object, saved ob_owner, gc_refs}, and while
 * the world is stopped its ob_owner holds index+1 into that array (marked by
 * FTI_GC_SCRATCH), which makes "is this visited pointer a candidate and
 * where is its counter" one load, with no hash table. Every ob_owner is
 * restored from the entry before the world restarts; no one reads ob_owner
 * meanwhile (the collector takes no references while it is overwritten).
 *
 * Generations. A young collection walks only the GC pages that allocated
 * since the last collection (FTI_WALK_TOUCHED) and only objects without
 * FTI_GC_OLD; references from old objects into the young set are simply not
 * subtracted, so they count as external, as in CPython. Survivors get
 * FTI_GC_OLD. Frozen objects (FTI_GC_FROZEN) are never candidates. */
#include "gc_int.h"

#include "ft_atomic.h"
#include "mem/mem.h"
#include "thread/thread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef fti_gc_entry gc_entry;

/* Per-collection scratch (collecting thread only; kept between collections
 * so that steady-state collections do not allocate). */
typedef struct gc_scratch {
    gc_entry *entries;
    size_t len;
    size_t cap;
    uint32_t *stack; /* marking stack of entry indices; each pushed at most once */
    size_t stack_cap;
    size_t stack_len;
    bool young;   /* young collection: old objects are not candidates */
    size_t young_seen; /* candidates without FTI_GC_OLD (young objects alive at the stop) */
    bool failed;  /* out of memory during the walk: roll back */
    ft_object *traversing; /* the object whose traverse is running (debug messages) */
} gc_scratch;

static gc_scratch scratch;

/* Candidates of the last collection (collector writes, tests read; relaxed). */
static _Atomic size_t last_candidates;

size_t fti_gc_last_candidates(void)
{
    /* relaxed: a statistic. */
    return ft_atomic_load_relaxed(&last_candidates);
}

uint64_t fti_gc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int fti_gc_traverse(ft_object *o, ft_visit_fn visit, void *arg)
{
    const ft_type *t = o->ob_type;

    if (t->traverse == NULL)
        return 0;
    return t->traverse(o, visit, arg);
}

int fti_gc_vec_push(fti_gc_vec *v, void *p)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        void **items = realloc(v->items, cap * sizeof *items);

        if (items == NULL)
            return -ENOMEM;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = p;
    return 0;
}

void fti_gc_vec_free(fti_gc_vec *v)
{
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

/* ---- gc bits (world stopped, or objects only the collector can reach) ---- */

static inline uint8_t gc_bits(const ft_object *o)
{
    /* relaxed: the collector is the only writer of these bits on tracked
     * live objects; the stop/start protocol orders them with other threads. */
    return ft_atomic_load_relaxed(&((ft_object *)o)->ob_gc_bits);
}

static inline void gc_bits_set(ft_object *o, uint8_t set, uint8_t clear)
{
    /* relaxed: as in gc_bits. */
    ft_atomic_store_relaxed(&o->ob_gc_bits, (uint8_t)((gc_bits(o) | set) & ~clear));
}

static inline uint32_t entry_index(const ft_object *o)
{
    /* relaxed: world stopped; we wrote index+1 there ourselves. */
    return ft_atomic_load_relaxed(&((ft_object *)o)->ob_owner) - 1;
}

/* ---- Debug: a traverse must visit live objects only ---- */

void fti_gc_check_visited(const ft_object *traversing, const ft_object *target)
{
    int kind;

    if (fti_mem_is_live_block(target))
        return;
    kind = fti_mem_kind_of(target);
    /* Not one of mem's blocks: only static immortal objects may live
     * outside the heaps (builtin singletons). Reading the header of a truly
     * foreign pointer is what the type's bug already does. */
    if (kind < 0 && (ft_atomic_load_relaxed(&((ft_object *)target)->ob_flags) & FT_OB_STATIC) != 0)
        return;
    ft_fatal("ft_gc_collect: traverse of %s object %p visited %p, which is not a live object (%s)",
             traversing ? traversing->ob_type->name : "?", (const void *)traversing, (const void *)target,
             kind < 0 ? "foreign pointer" : "freed block");
}

/* ---- Phase 1 (stopped): collect candidates, compute total counts ---- */

static int grow_entries(void)
{
    /* 1.5x: the array is part of the collector's peak memory (bench-gc.md);
     * large reallocs are mremaps, so growing more often copies nothing. */
    size_t cap = scratch.cap ? scratch.cap + scratch.cap / 2 : 4096;
    gc_entry *e = realloc(scratch.entries, cap * sizeof *e);

    if (e == NULL)
        return -ENOMEM;
    scratch.entries = e;
    scratch.cap = cap;
    return 0;
}

static int walk_candidate(void *block, size_t block_size, void *arg)
{
    ft_object *o = block;
    uint8_t bits = gc_bits(o);
    intptr_t total;
    gc_entry *e;

    (void)block_size;
    (void)arg;
    if ((bits & FTI_GC_TRACKED) == 0 || (bits & FTI_GC_FROZEN) != 0)
        return 0;
    if ((bits & FTI_GC_OLD) == 0)
        scratch.young_seen++;
    else if (scratch.young)
        return 0;
    if (scratch.len == scratch.cap && grow_entries() != 0) {
        scratch.failed = true;
        return 1;
    }
    total = fti_object_total_refcount(o);
    if (fti_gc_is_dying(o, total))
        return 0; /* on its thread's deallocation worklist */
    e = &scratch.entries[scratch.len];
    e->obj = o;
    /* relaxed: world stopped. */
    e->saved_owner = ft_atomic_load_relaxed(&o->ob_owner);
    /* relaxed: world stopped, collector only (helpers start later). */
    ft_atomic_store_relaxed(&e->gc_refs, total > INT32_MAX ? INT32_MAX : (int32_t)total);
    scratch.len++;
    /* relaxed: world stopped; restored before it restarts. */
    ft_atomic_store_relaxed(&o->ob_owner, (uint32_t)scratch.len);
    gc_bits_set(o, FTI_GC_SCRATCH, FTI_GC_ALIVE | FTI_GC_UNREACHABLE);
    return 0;
}

static void restore_owners(void)
{
    for (size_t i = 0; i < scratch.len; i++)
        /* relaxed: world stopped (see the file comment). */
        ft_atomic_store_relaxed(&scratch.entries[i].obj->ob_owner, scratch.entries[i].saved_owner);
}

/* ---- Phase 2 (stopped): subtract internal references ---- */

static int visit_decref(void *p, void *arg)
{
    ft_object *t = p;

    (void)arg;
    if (t == NULL)
        return 0;
    /* Debug level 2 (an expensive check: a page lookup per edge). */
    if (FT_CFG_DEBUG_LEVEL >= 2)
        fti_gc_check_visited(scratch.traversing, t);
    if (gc_bits(t) & FTI_GC_SCRATCH) {
        gc_entry *e = &scratch.entries[entry_index(t)];

        /* relaxed: one worker here; a load and a store, no locked RMW. */
        ft_atomic_store_relaxed(&e->gc_refs, ft_atomic_load_relaxed(&e->gc_refs) - 1);
    }
    return 0;
}

/* ---- Phase 3 (stopped): mark what is reachable from outside ---- */

static inline void mark_alive(ft_object *o)
{
    gc_bits_set(o, FTI_GC_ALIVE, 0);
    scratch.stack[scratch.stack_len++] = entry_index(o);
}

static int visit_mark(void *p, void *arg)
{
    ft_object *t = p;

    (void)arg;
    if (t != NULL && (gc_bits(t) & (FTI_GC_SCRATCH | FTI_GC_ALIVE)) == FTI_GC_SCRATCH)
        mark_alive(t);
    return 0;
}

static void mark_roots_of(ft_thread_head *head, void *arg)
{
    (void)arg;
    for (ft_roots_frame *f = head->roots; f != NULL; f = f->prev) {
        for (size_t i = 0; i < f->count; i++) {
            ft_object *o = f->slots[i];

            if (o != NULL && (gc_bits(o) & (FTI_GC_SCRATCH | FTI_GC_ALIVE)) == FTI_GC_SCRATCH)
                mark_alive(o);
        }
    }
    /* The collector resets the allocation counters it is about to account
     * for (world stopped: the owner is parked or detached). */
    head->gc_alloc_count = 0;
}

static void propagate(void)
{
    while (scratch.stack_len > 0) {
        ft_object *o = scratch.entries[scratch.stack[--scratch.stack_len]].obj;

        fti_gc_traverse(o, visit_mark, NULL);
    }
}

static int ensure_stack(size_t n)
{
    if (n > scratch.stack_cap) {
        uint32_t *s = realloc(scratch.stack, n * sizeof *s);

        if (s == NULL)
            return -ENOMEM;
        scratch.stack = s;
        scratch.stack_cap = n;
    }
    scratch.stack_len = 0;
    return 0;
}

/* Computes ALIVE for every entry; world stopped, owners overwritten. The
 * first pause of a big collection runs the two traversal phases on the
 * parallel workers (parallel.c); the roots are marked by the collector. */
static void find_alive(bool with_roots)
{
    unsigned workers = with_roots ? fti_gc_par_workers_for(scratch.len) : 1;

    if (workers > 1) {
        fti_gc_par_decref(scratch.entries, scratch.len, workers);
    } else {
        for (size_t i = 0; i < scratch.len; i++) {
            scratch.traversing = scratch.entries[i].obj;
            fti_gc_traverse(scratch.entries[i].obj, visit_decref, NULL);
        }
        scratch.traversing = NULL;
    }
    if (with_roots) {
        /* The registry lock too, not only the stopped world: a thread that
         * attaches during the stop fills in its registry slot under that
         * lock (and then waits for the restart), so this reads the slot
         * after it was written. Holders of the lock never wait for a stop. */
        fti_thread_registry_lock();
        fti_thread_foreach(mark_roots_of, NULL);
        fti_thread_registry_unlock();
    }
    /* The roots are on scratch.stack now. */
    if (workers > 1 && fti_gc_par_mark(scratch.entries, scratch.len, workers, scratch.stack, scratch.stack_len) == 0) {
        scratch.stack_len = 0;
        return;
    }
    for (size_t i = 0; i < scratch.len; i++) {
        ft_object *o = scratch.entries[i].obj;

        /* gc_refs < 0 means a traverse visits references it does not own
         * (a type bug): keep such objects, never free on a wrong count.
         * relaxed: the decref phase is over (joined under the pool lock). */
        if (ft_atomic_load_relaxed(&scratch.entries[i].gc_refs) != 0 && (gc_bits(o) & FTI_GC_ALIVE) == 0)
            mark_alive(o);
    }
    propagate();
}

/* ---- The collection ---- */

static void run_callbacks(ft_gc_phase phase, const ft_gc_info *info)
{
    struct {
        ft_gc_callback cb;
        void *arg;
    } copy[FT_ARRAY_LEN(fti_gc.callbacks)];
    size_t n;

    pthread_mutex_lock(&fti_gc.stats_lock);
    n = fti_gc.ncallbacks;
    memcpy(copy, fti_gc.callbacks, n * sizeof copy[0]);
    pthread_mutex_unlock(&fti_gc.stats_lock);
    for (size_t i = 0; i < n; i++)
        copy[i].cb(phase, info, copy[i].arg);
}

/* Objects of the unreachable set (counted references held by the collector). */
static fti_gc_vec unreachable;

static int visit_keep(void *p, void *arg)
{
    ft_object *t = p;
    fti_gc_vec *work = arg;

    /* Uncollectable objects are roots of this walk themselves (and go to
     * gc.garbage); collectable ones they reach are kept uncleared. */
    if (t != NULL && t->ob_type->clear != NULL
        && (gc_bits(t) & (FTI_GC_UNREACHABLE | FTI_GC_ALIVE)) == FTI_GC_UNREACHABLE) {
        gc_bits_set(t, FTI_GC_ALIVE, 0);
        if (fti_gc_vec_push(work, t) != 0)
            ft_fatal("ft_gc_collect: out of memory while keeping uncollectable objects");
    }
    return 0;
}

/* Second pause: which finalized objects were resurrected? World stopped. */
static int check_resurrection(void)
{
    size_t n = unreachable.len;

    if (n > scratch.cap) {
        gc_entry *e = realloc(scratch.entries, n * sizeof *e);

        if (e == NULL)
            return -ENOMEM;
        scratch.entries = e;
        scratch.cap = n;
    }
    if (ensure_stack(n) != 0)
        return -ENOMEM;
    scratch.len = 0;
    for (size_t i = 0; i < n; i++) {
        ft_object *o = unreachable.items[i];
        intptr_t total = fti_object_total_refcount(o) - 1; /* minus the collector's reference */
        gc_entry *e = &scratch.entries[scratch.len++];

        e->obj = o;
        /* relaxed: world stopped. */
        e->saved_owner = ft_atomic_load_relaxed(&o->ob_owner);
        /* relaxed: world stopped, collector only. */
        ft_atomic_store_relaxed(&e->gc_refs, total > INT32_MAX ? INT32_MAX : (int32_t)total);
        /* relaxed: world stopped; restored below. */
        ft_atomic_store_relaxed(&o->ob_owner, (uint32_t)scratch.len);
        gc_bits_set(o, FTI_GC_SCRATCH, FTI_GC_ALIVE);
    }
    /* Local roots are not consulted: a finalizer that stores a garbage object
     * in a root slot also holds a counted reference (only deferred objects
     * are uncounted there, and unreachable objects lost FT_OB_DEFERRED). */
    find_alive(false);
    restore_owners();
    for (size_t i = 0; i < scratch.len; i++)
        gc_bits_set(scratch.entries[i].obj, 0, FTI_GC_SCRATCH);
    return 0;
}

/* CPython triggers on the net number of young objects (allocations minus
 * deallocations). Our object layer reports allocations only, so the net count
 * is estimated: the young objects still alive at this stop, per allocation
 * reported since the last one, is the survival ratio; the next collection
 * waits for threshold0 / ratio allocations (at most FTI_GC_TRIGGER_MAX_SCALE
 * times threshold0 per thread that allocated during the interval just
 * measured), i.e. for about threshold0 net young objects. Programs
 * that create garbage cycles keep a high ratio and collect often; programs
 * whose objects die by refcounting stop paying a pause per 700 allocations. */
static void update_young_trigger(uint64_t allocations, size_t young_alive, uint32_t allocating_threads)
{
    /* relaxed: a tuning value read once. */
    uint64_t t0 = ft_atomic_load_relaxed(&fti_gc.threshold[0]);
    uint64_t trigger = t0;

    if (allocations > young_alive && t0 != 0) {
        uint64_t alive = young_alive ? young_alive : 1;
        /* The cap is per allocating thread (FTI_GC_TRIGGER_MAX_SCALE): with
         * n threads churning, a pause (which stops all n) still comes once
         * per 64 * threshold0 allocations of each, as with one thread. */
        uint64_t cap = t0 * FTI_GC_TRIGGER_MAX_SCALE * (allocating_threads ? allocating_threads : 1);

        trigger = t0 * allocations / alive;
        if (trigger > cap)
            trigger = cap;
        if (trigger < t0)
            trigger = t0;
    }
    /* And, as CPython's free-threaded gc_should_collect, not before a
     * quarter of the old generation (as of the last full collection) was
     * allocated anew: every pause stops all threads, so pauses must be
     * amortised against the heap, not only against the young objects. */
    if (t0 != 0 && trigger < fti_gc.long_lived_total / 4)
        trigger = fti_gc.long_lived_total / 4;
    /* relaxed: read by the allocation hook as a hint. */
    ft_atomic_store_relaxed(&fti_gc.young_trigger, trigger);
}

intptr_t fti_gc_collect_owned(int gen)
{
    bool young = gen == 0;
    uint64_t t_start, pause_ns, t_stop;
    ft_gc_info info = { .generation = gen, .collected = 0, .uncollectable = 0 };
    size_t n_unreachable = 0, n_survivors = 0;
    bool finalized = false;
    uint64_t allocations;
    uint32_t allocating_threads;
    intptr_t collected = 0, uncollectable_n = 0;

    run_callbacks(FT_GC_PHASE_START, &info);

    t_start = fti_gc_now_ns();
    ft_stop_the_world();
    fti_brc_merge_all_stopped();
    if (FT_CFG_DEBUG_LEVEL >= 2)
        fti_gc_check_heap_stopped("before a collection", false);

    scratch.len = 0;
    scratch.young_seen = 0;
    scratch.young = young;
    scratch.failed = false;
    fti_mem_walk(FTI_KIND_GC, young ? FTI_WALK_TOUCHED : FTI_WALK_ALL, walk_candidate, NULL);
    if (scratch.failed || ensure_stack(scratch.len) != 0) {
        /* Roll back: nothing was decided yet. */
        restore_owners();
        for (size_t i = 0; i < scratch.len; i++)
            gc_bits_set(scratch.entries[i].obj, 0, FTI_GC_SCRATCH);
        ft_start_the_world();
        fti_warn("ft_gc_collect: out of memory for %zu candidates; collection skipped", scratch.len);
        run_callbacks(FT_GC_PHASE_STOP, &info);
        return -ENOMEM;
    }
    /* relaxed: a statistic. */
    ft_atomic_store_relaxed(&last_candidates, scratch.len);
    find_alive(true);

    /* One pass restores every owner, promotes survivors and holds the
     * unreachable set by counted references (taken only once the owner is
     * back), so that nothing in it is freed under our feet. */
    unreachable.len = 0;
    for (size_t i = 0; i < scratch.len; i++) {
        ft_object *o = scratch.entries[i].obj;

        /* relaxed: world stopped (see the file comment). */
        ft_atomic_store_relaxed(&o->ob_owner, scratch.entries[i].saved_owner);
        if (gc_bits(o) & FTI_GC_ALIVE) {
            gc_bits_set(o, FTI_GC_OLD, FTI_GC_SCRATCH | FTI_GC_ALIVE);
            n_survivors++;
            continue;
        }
        gc_bits_set(o, FTI_GC_UNREACHABLE, FTI_GC_SCRATCH);
        if (fti_gc_vec_push(&unreachable, o) != 0) {
            /* Keep it: promoting an unreachable object is always safe. */
            gc_bits_set(o, FTI_GC_OLD, FTI_GC_UNREACHABLE);
            continue;
        }
        ft_incref(o);
        /* Deferred objects are freed by the collector only: from here on
         * ordinary counting frees it (CPython disables deferral likewise).
         * Our reference above keeps the count from reaching zero.
         * relaxed: world stopped. */
        if (ft_atomic_load_relaxed(&o->ob_flags) & FT_OB_DEFERRED)
            fti_object_undefer(o);
    }
    n_unreachable = unreachable.len;
    /* Weakrefs: garbage weakrefs never fire; weakrefs to garbage are cleared
     * now (so nothing can obtain a garbage object after the restart), their
     * callbacks run once the world is running. */
    for (size_t i = 0; i < unreachable.len; i++) {
        ft_object *o = unreachable.items[i];

        if (o->ob_type == &fti_weakref_type)
            fti_weakref_detach_stopped(o);
    }
    for (size_t i = 0; i < unreachable.len; i++) {
        ft_object *o = unreachable.items[i];

        /* relaxed: world stopped; set by ft_weakref_new before. */
        if (ft_atomic_load_relaxed(&o->ob_flags) & FT_OB_HAS_WEAKREFS)
            fti_weakref_clear_stopped(o);
    }
    if (FT_CFG_DEBUG_LEVEL >= 2)
        fti_gc_check_heap_stopped("end of the first pause", true);
    fti_mem_clear_touched(FTI_KIND_GC);
    /* relaxed: world stopped. */
    allocations = ft_atomic_load_relaxed(&fti_gc.young_count);
    /* relaxed: world stopped; the hook's adds that follow count afresh. */
    ft_atomic_store_relaxed(&fti_gc.young_count, 0);
    /* relaxed: world stopped (see fti_gc_state): a new epoch, in which
     * every thread counts itself again at its first batch. */
    allocating_threads = ft_atomic_load_relaxed(&fti_gc.allocating_threads);
    ft_atomic_store_relaxed(&fti_gc.allocating_threads, 0);
    ft_atomic_fetch_add_relaxed(&fti_gc.alloc_epoch, 1);
    ft_start_the_world();
    t_stop = fti_gc_now_ns();
    pause_ns = t_stop - t_start;

    if (young) {
        fti_gc.promoted_since_full += n_survivors;
        /* relaxed: collector-only counter; readers want an estimate. */
        ft_atomic_fetch_add_relaxed(&fti_gc.young_since_full, 1);
    } else {
        uint64_t promoted = fti_gc.promoted_since_full;
        uint64_t grown = n_survivors > fti_gc.long_lived_total ? n_survivors - fti_gc.long_lived_total : 0;

        if (promoted > 0) {
            uint64_t per = grown == 0 ? FTI_GC_TRIGGER_MAX_SCALE : promoted / grown;

            fti_gc.promotions_per_growth = per < 1 ? 1 : per > FTI_GC_TRIGGER_MAX_SCALE ? FTI_GC_TRIGGER_MAX_SCALE : per;
        }
        fti_gc.long_lived_total = n_survivors;
        fti_gc.promoted_since_full = 0;
        /* relaxed: as above. */
        ft_atomic_store_relaxed(&fti_gc.young_since_full, 0);
        ft_atomic_fetch_add_relaxed(&fti_gc.full_count, 1);
    }
    update_young_trigger(allocations, scratch.young_seen, allocating_threads);

    fti_weakref_run_pending();

    /* Finalizers, at most once per object (FT_OB_FINALIZED). */
    for (size_t i = 0; i < unreachable.len; i++) {
        ft_object *o = unreachable.items[i];

        if (o->ob_type->finalize == NULL)
            continue;
        /* acq_rel: pairs with the same or in the object layer's dealloc,
         * so exactly one of us runs the finalizer. */
        if (ft_atomic_fetch_or_acq_rel(&o->ob_flags, FT_OB_FINALIZED) & FT_OB_FINALIZED)
            continue;
        o->ob_type->finalize(o);
        finalized = true;
    }

    if (finalized) {
        uint64_t t2 = fti_gc_now_ns();
        int rc;

        ft_stop_the_world();
        fti_brc_merge_all_stopped();
        rc = check_resurrection();
        if (rc != 0) {
            /* Cannot tell what was resurrected: keep the whole set. */
            for (size_t i = 0; i < unreachable.len; i++)
                gc_bits_set(unreachable.items[i], FTI_GC_ALIVE, 0);
        }
        ft_start_the_world();
        pause_ns += fti_gc_now_ns() - t2;
    }

    /* Objects whose type has no clear are uncollectable; they and what they
     * reach are kept (gc.garbage holds the former). Resurrected objects are
     * already marked ALIVE. */
    {
        fti_gc_vec work = { 0 };

        for (size_t i = 0; i < unreachable.len; i++) {
            ft_object *o = unreachable.items[i];

            if (o->ob_type->clear == NULL && (gc_bits(o) & FTI_GC_ALIVE) == 0) {
                fti_gc_traverse(o, visit_keep, &work);
            }
        }
        while (work.len > 0) {
            ft_object *o = work.items[--work.len];

            fti_gc_traverse(o, visit_keep, &work);
        }
        fti_gc_vec_free(&work);
    }

    for (size_t i = 0; i < unreachable.len; i++) {
        ft_object *o = unreachable.items[i];
        uint8_t bits = gc_bits(o);

        if (bits & FTI_GC_ALIVE) {
            /* Resurrected, or reachable from an uncollectable object: our
             * reference is released below without a clear. */
            gc_bits_set(o, FTI_GC_OLD, FTI_GC_ALIVE | FTI_GC_UNREACHABLE);
        } else if (o->ob_type->clear == NULL) {
            gc_bits_set(o, FTI_GC_OLD, FTI_GC_UNREACHABLE);
            pthread_mutex_lock(&fti_gc.garbage_lock);
            if (fti_gc_vec_push(&fti_gc.garbage, o) == 0)
                unreachable.items[i] = NULL; /* the garbage list owns our reference */
            pthread_mutex_unlock(&fti_gc.garbage_lock);
            uncollectable_n++;
        }
    }
    /* Break the cycles; ordinary counting frees the members as the last
     * references go. Our own reference on each is released right after its
     * clear, as CPython's delete_garbage does: others in the set are still
     * held by us, so nothing is freed while we look at it. */
    for (size_t i = 0; i < unreachable.len; i++) {
        ft_object *o = unreachable.items[i];
        uint8_t bits;

        if (o == NULL)
            continue;
        bits = gc_bits(o);
        if ((bits & FTI_GC_UNREACHABLE) && o->ob_type->clear != NULL) {
            gc_bits_set(o, 0, FTI_GC_UNREACHABLE);
            o->ob_type->clear(o);
            collected++;
        }
        ft_decref(o);
    }
    /* Scratch memory is kept while it is proportionate to the tracked heap
     * (16 bytes per candidate, like a mark stack), so that steady-state full
     * collections neither page-fault nor copy it again; it is released when
     * the heap shrank to a quarter of it. */
    if (unreachable.cap > 65536 && unreachable.cap > 4 * n_unreachable)
        fti_gc_vec_free(&unreachable);
    unreachable.len = 0;
    if (scratch.cap > 65536 && scratch.cap > 4 * (n_unreachable + n_survivors)) {
        free(scratch.entries);
        free(scratch.stack);
        scratch.entries = NULL;
        scratch.stack = NULL;
        scratch.cap = scratch.stack_cap = 0;
    }

    pthread_mutex_lock(&fti_gc.stats_lock);
    {
        ft_gc_stats *s = &fti_gc.stats[gen];

        s->collections++;
        s->collected += (uint64_t)collected;
        s->uncollectable += (uint64_t)uncollectable_n;
        s->pause_last_ns = pause_ns;
        if (pause_ns > s->pause_max_ns)
            s->pause_max_ns = pause_ns;
        s->pause_total_ns += pause_ns;
    }
    pthread_mutex_unlock(&fti_gc.stats_lock);

    info.collected = collected;
    info.uncollectable = uncollectable_n;
    run_callbacks(FT_GC_PHASE_STOP, &info);
    return (intptr_t)n_unreachable;
}

void fti_gc_collect_release_scratch(void)
{
    free(scratch.entries);
    free(scratch.stack);
    memset(&scratch, 0, sizeof scratch);
    fti_gc_vec_free(&unreachable);
}
