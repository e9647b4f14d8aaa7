/* gcmodule.c - the gc-module functions (ftrt/gc.h), automatic triggering,
 * and the layer's init/fini.
 *
 * Triggering: the object layer counts tracked allocations per thread
 * (ft_tls_head.gc_alloc_count) and calls our alloc_threshold hook each time a
 * thread's count reaches a batch of threshold0/8. The hook adds the batch to
 * a global count; when that reaches threshold0 it asks the calling thread to
 * collect at its next safepoint (FT_PENDING_GC), where no lock or half-built
 * object is on its stack. So the trigger is global (allocations of all threads
 * together) at the cost of one atomic add per batch, never per allocation.
 * The first batch a thread reports after a collection also counts it in
 * allocating_threads (one more relaxed add per thread per collection), which
 * scales the trigger's cap (update_young_trigger in collect.c).
 *
 * A request is a hint: the safepoint re-checks that young_count still
 * reaches the trigger, so that a thread whose request was overtaken by
 * another thread's collection (which reset the count) does not run a second,
 * redundant collection right after it.
 *
 * One collection at a time: gc_state.collecting holds the collector's thread
 * index. An automatic collection that finds another one running is skipped; an
 * explicit ft_gc_collect waits for it detached (a blocking region, so it never
 * holds up that collection's stop-the-world); a collection requested from
 * inside the running one (finalizer, callback) returns 0 at once. */
#include "gc_int.h"

#include "ft_atomic.h"
#include "mem/mem.h"
#include "thread/thread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

fti_gc_state fti_gc = {
    .wait_lock = PTHREAD_MUTEX_INITIALIZER,
    .wait_cond = PTHREAD_COND_INITIALIZER,
    .stats_lock = PTHREAD_MUTEX_INITIALIZER,
    .garbage_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* Tracked allocations a thread counts on its own before it reports them to
 * the shared young_count: half of threshold0, at most 512 (CPython's
 * free-threaded LOCAL_ALLOC_COUNT_THRESHOLD). Every report is an atomic add
 * on a cache line all allocating threads write; with batches of t0 / 8 (87
 * at the default 700) a 2-thread tuple churn spent several percent on that
 * line, while the trigger's precision needs no more than this. */
static uint64_t alloc_batch(unsigned t0)
{
    uint64_t batch = t0 / 2;

    if (batch > 512)
        batch = 512;
    return batch == 0 ? 1 : batch;
}

/* ---- Owning a collection ---- */

/* 1: we own it; 0: re-entrant (we already run one); -1: another runs. */
static int try_own(void)
{
    uint32_t me = ft_thread_index();
    uint32_t expected = 0;

    /* acquire: pairs with the release in disown; the previous collection's
     * writes to the collector-only state are visible to us. */
    if (ft_atomic_cas_acquire(&fti_gc.collecting, &expected, me))
        return 1;
    return expected == me ? 0 : -1;
}

static void disown(void)
{
    /* release: pairs with the acquire CAS in try_own. */
    ft_atomic_store_release(&fti_gc.collecting, 0);
    pthread_mutex_lock(&fti_gc.wait_lock);
    pthread_cond_broadcast(&fti_gc.wait_cond);
    pthread_mutex_unlock(&fti_gc.wait_lock);
}

static void wait_for_other_collection(void)
{
    ft_blocking_begin();
    pthread_mutex_lock(&fti_gc.wait_lock);
    /* acquire: pairs with the release in disown. */
    while (ft_atomic_load_acquire(&fti_gc.collecting) != 0)
        pthread_cond_wait(&fti_gc.wait_cond, &fti_gc.wait_lock);
    pthread_mutex_unlock(&fti_gc.wait_lock);
    ft_blocking_end();
}

intptr_t ft_gc_collect(int generation)
{
    intptr_t n;

    FT_ASSERT_ATTACHED();
    if (generation < -1 || generation >= FT_GC_GENERATIONS)
        return -EINVAL;
    if (generation == -1)
        generation = FT_GC_GENERATIONS - 1;
    for (;;) {
        int own = try_own();

        if (own == 1)
            break;
        if (own == 0)
            return 0;
        wait_for_other_collection();
    }
    n = fti_gc_collect_owned(generation);
    disown();
    return n;
}

/* Which generation an automatic collection should be (collector owned). */
static int auto_generation(void)
{
    /* relaxed: thresholds are read once per decision. */
    unsigned t1 = ft_atomic_load_relaxed(&fti_gc.threshold[1]);
    unsigned t2 = ft_atomic_load_relaxed(&fti_gc.threshold[2]);
    /* relaxed: collector-only counter, we own the collection. */
    uint32_t young = ft_atomic_load_relaxed(&fti_gc.young_since_full);

    /* A full collection is due after t1 young ones, and only when the old
     * generation grew by at least 1/t2 since the last full one, so that full
     * collections stay amortised linear in a growing heap (CPython's
     * long_lived_pending rule, with the fraction configurable). */
    if (t1 == 0 || young < t1)
        return 0;
    if (t2 != 0 && fti_gc.promoted_since_full * t2 < fti_gc.long_lived_total * fti_gc.promotions_per_growth)
        return 0;
    return 2;
}

/* Is an automatic collection still due? A request made before another
 * thread's collection reset young_count is stale. */
static bool young_collection_due(void)
{
    /* relaxed: a tuning value read once. */
    unsigned t0 = ft_atomic_load_relaxed(&fti_gc.threshold[0]);

    /* relaxed: both are hints; a stale read costs at most one collection
     * more or one batch later, never correctness. */
    return t0 != 0
           && ft_atomic_load_relaxed(&fti_gc.young_count) >= ft_atomic_load_relaxed(&fti_gc.young_trigger);
}

static void on_safepoint(ft_thread_head *self, uint32_t bits)
{
    (void)self;
    if ((bits & FT_PENDING_GC) == 0 || !ft_gc_is_enabled() || !young_collection_due())
        return;
    if (try_own() != 1)
        return;
    /* Re-checked as the owner: a collection that ended between the check
     * above and try_own reset the count. */
    if (young_collection_due())
        fti_gc_collect_owned(auto_generation());
    disown();
}

/* The collection epoch this thread last counted itself in
 * allocating_threads for (owner only). */
static _Thread_local uint64_t counted_epoch;

static void on_alloc_threshold(void)
{
    uint64_t batch = ft_tls_head.gc_alloc_count;
    /* relaxed: the threshold is a tuning value read once. */
    unsigned t0 = ft_atomic_load_relaxed(&fti_gc.threshold[0]);
    uint64_t total;
    uint64_t epoch;

    ft_tls_head.gc_alloc_count = 0;
    /* relaxed: the collector changes it only with the world stopped, and
     * the stop/start protocol orders that with this (running) hook. */
    epoch = ft_atomic_load_relaxed(&fti_gc.alloc_epoch);
    if (counted_epoch != epoch) {
        counted_epoch = epoch;
        /* relaxed: a count read by the collector with the world stopped
         * (ordered by the stop protocol, as alloc_epoch above). */
        ft_atomic_fetch_add_relaxed(&fti_gc.allocating_threads, 1);
    }
    /* relaxed: a statistic; the decision below tolerates a stale sum. */
    total = ft_atomic_fetch_add_relaxed(&fti_gc.young_count, batch) + batch;
    /* relaxed: a tuning value (see update_young_trigger in collect.c). */
    if (t0 != 0 && total >= ft_atomic_load_relaxed(&fti_gc.young_trigger) && ft_gc_is_enabled())
        fti_thread_request(ft_thread_index(), FT_PENDING_GC);
}

/* ---- enable / thresholds / counts / stats ---- */

void ft_gc_enable(void)
{
    /* relaxed: a switch polled at each trigger. */
    ft_atomic_store_relaxed(&fti_gc.enabled, true);
}

void ft_gc_disable(void)
{
    /* relaxed: as in ft_gc_enable. */
    ft_atomic_store_relaxed(&fti_gc.enabled, false);
}

bool ft_gc_is_enabled(void)
{
    /* relaxed: as in ft_gc_enable. */
    return ft_atomic_load_relaxed(&fti_gc.enabled);
}

void ft_gc_set_threshold(unsigned t0, unsigned t1, unsigned t2)
{
    /* relaxed: tuning values, read once per decision. */
    ft_atomic_store_relaxed(&fti_gc.threshold[0], t0);
    ft_atomic_store_relaxed(&fti_gc.threshold[1], t1);
    ft_atomic_store_relaxed(&fti_gc.threshold[2], t2);
    /* relaxed: as above; the next collection re-scales it. */
    ft_atomic_store_relaxed(&fti_gc.young_trigger, t0);
    fti_object_set_alloc_threshold(t0 == 0 ? 0 : alloc_batch(t0));
}

void ft_gc_get_threshold(unsigned out[3])
{
    for (int i = 0; i < 3; i++)
        /* relaxed: as in ft_gc_set_threshold. */
        out[i] = ft_atomic_load_relaxed(&fti_gc.threshold[i]);
}

void ft_gc_get_count(unsigned out[3])
{
    /* relaxed: statistics; the young count lags by at most one batch per
     * thread (allocations not yet reported by the hook). */
    uint64_t young = ft_atomic_load_relaxed(&fti_gc.young_count) + ft_tls_head.gc_alloc_count;

    out[0] = young > UINT32_MAX ? UINT32_MAX : (unsigned)young;
    out[1] = ft_atomic_load_relaxed(&fti_gc.young_since_full); /* relaxed: as above */
    out[2] = ft_atomic_load_relaxed(&fti_gc.full_count);       /* relaxed: as above */
}

int ft_gc_get_stats(int generation, ft_gc_stats *out)
{
    if (generation < 0 || generation >= FT_GC_GENERATIONS || out == NULL)
        return -EINVAL;
    pthread_mutex_lock(&fti_gc.stats_lock);
    *out = fti_gc.stats[generation];
    pthread_mutex_unlock(&fti_gc.stats_lock);
    return 0;
}

int ft_gc_callback_add(ft_gc_callback cb, void *arg)
{
    int rc = -ENOSPC;

    if (cb == NULL)
        return -EINVAL;
    pthread_mutex_lock(&fti_gc.stats_lock);
    if (fti_gc.ncallbacks < FT_ARRAY_LEN(fti_gc.callbacks)) {
        fti_gc.callbacks[fti_gc.ncallbacks].cb = cb;
        fti_gc.callbacks[fti_gc.ncallbacks].arg = arg;
        fti_gc.ncallbacks++;
        rc = 0;
    }
    pthread_mutex_unlock(&fti_gc.stats_lock);
    return rc;
}

int ft_gc_callback_remove(ft_gc_callback cb, void *arg)
{
    int rc = -ENOENT;

    pthread_mutex_lock(&fti_gc.stats_lock);
    for (size_t i = 0; i < fti_gc.ncallbacks; i++) {
        if (fti_gc.callbacks[i].cb == cb && fti_gc.callbacks[i].arg == arg) {
            memmove(&fti_gc.callbacks[i], &fti_gc.callbacks[i + 1],
                    (fti_gc.ncallbacks - i - 1) * sizeof fti_gc.callbacks[0]);
            fti_gc.ncallbacks--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&fti_gc.stats_lock);
    return rc;
}

/* ---- Walking tracked objects (world stopped inside) ---- */

typedef struct collect_ctx {
    int generation;        /* -1 all (not frozen), 0 young, 1..2 old */
    fti_gc_vec *out;       /* counted references appended here */
    int err;
} collect_ctx;

static bool in_generation(uint8_t bits, int generation)
{
    if ((bits & FTI_GC_TRACKED) == 0 || (bits & FTI_GC_FROZEN) != 0)
        return false;
    if (generation == 0)
        return (bits & FTI_GC_OLD) == 0;
    if (generation > 0)
        return (bits & FTI_GC_OLD) != 0;
    return true;
}

static int collect_tracked(void *block, size_t size, void *arg)
{
    ft_object *o = block;
    collect_ctx *c = arg;

    (void)size;
    /* relaxed: world stopped. */
    if (!in_generation(ft_atomic_load_relaxed(&o->ob_gc_bits), c->generation))
        return 0;
    if (fti_gc_is_dying(o, fti_object_total_refcount(o)))
        return 0; /* being freed by its thread right now: not ours to revive */
    if (fti_gc_vec_push(c->out, o) != 0) {
        c->err = -ENOMEM;
        return 1;
    }
    ft_incref(o);
    return 0;
}

int ft_gc_visit_objects(int generation, int (*fn)(void *obj, void *arg), void *arg)
{
    fti_gc_vec objs = { 0 };
    collect_ctx c = { .generation = generation, .out = &objs, .err = 0 };
    int rc = 0;
    size_t i;

    FT_ASSERT_ATTACHED();
    ft_stop_the_world();
    fti_brc_merge_all_stopped();
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, collect_tracked, &c);
    ft_start_the_world();
    fti_weakref_run_pending(); /* the merge may have freed objects with weakrefs */
    for (i = 0; i < objs.len && c.err == 0 && rc == 0; i++)
        rc = fn(objs.items[i], arg);
    for (i = 0; i < objs.len; i++)
        ft_decref(objs.items[i]);
    fti_gc_vec_free(&objs);
    return c.err != 0 ? c.err : rc;
}

typedef struct referrer_ctx {
    ft_object *target;
    ft_object *current;
    bool found;
} referrer_ctx;

static int visit_find(void *p, void *arg)
{
    referrer_ctx *r = arg;

    if (p == r->target) {
        r->found = true;
        return 1;
    }
    return 0;
}

typedef struct referrers_walk {
    referrer_ctx r;
    void **out;
    size_t cap;
    size_t n;
} referrers_walk;

static int walk_referrers(void *block, size_t size, void *arg)
{
    ft_object *o = block;
    referrers_walk *w = arg;

    (void)size;
    /* relaxed: world stopped. */
    if ((ft_atomic_load_relaxed(&o->ob_gc_bits) & FTI_GC_TRACKED) == 0
        || fti_gc_is_dying(o, fti_object_total_refcount(o)))
        return 0;
    w->r.found = false;
    fti_gc_traverse(o, visit_find, &w->r);
    if (w->r.found) {
        if (w->n < w->cap) {
            ft_incref(o);
            w->out[w->n] = o;
        }
        w->n++;
    }
    return 0;
}

size_t ft_gc_get_referrers(void *o, void **out, size_t cap)
{
    referrers_walk w = { .r = { .target = o }, .out = out, .cap = cap, .n = 0 };

    FT_ASSERT_ATTACHED();
    ft_stop_the_world();
    fti_brc_merge_all_stopped();
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, walk_referrers, &w);
    ft_start_the_world();
    fti_weakref_run_pending(); /* the merge may have freed objects with weakrefs */
    return w.n;
}

typedef struct referents_ctx {
    void **out;
    size_t cap;
    size_t n;
} referents_ctx;

static int visit_referent(void *p, void *arg)
{
    referents_ctx *c = arg;

    if (p == NULL)
        return 0;
    if (c->n < c->cap) {
        ft_incref(p);
        c->out[c->n] = p;
    }
    c->n++;
    return 0;
}

size_t ft_gc_get_referents(void *o, void **out, size_t cap)
{
    referents_ctx c = { .out = out, .cap = cap, .n = 0 };

    FT_ASSERT_ATTACHED();
    /* Stopped, so that a container's traverse sees a consistent state and
     * what it visits cannot be freed before we hold it. */
    ft_stop_the_world();
    fti_gc_traverse(o, visit_referent, &c);
    ft_start_the_world();
    return c.n;
}

/* ---- freeze ---- */

typedef struct freeze_ctx {
    bool freeze;
    size_t n;
} freeze_ctx;

static int walk_freeze(void *block, size_t size, void *arg)
{
    ft_object *o = block;
    freeze_ctx *f = arg;
    /* relaxed: world stopped. */
    uint8_t bits = ft_atomic_load_relaxed(&o->ob_gc_bits);

    (void)size;
    if ((bits & FTI_GC_TRACKED) == 0)
        return 0;
    if (f->freeze && (bits & FTI_GC_FROZEN) == 0) {
        bits |= FTI_GC_FROZEN | FTI_GC_OLD;
        f->n++;
    } else if (!f->freeze && (bits & FTI_GC_FROZEN) != 0) {
        bits &= (uint8_t)~FTI_GC_FROZEN;
        f->n++;
    }
    /* relaxed: world stopped. */
    ft_atomic_store_relaxed(&o->ob_gc_bits, bits);
    return 0;
}

static size_t freeze_all(bool freeze)
{
    freeze_ctx f = { .freeze = freeze, .n = 0 };

    FT_ASSERT_ATTACHED();
    ft_stop_the_world();
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, walk_freeze, &f);
    ft_start_the_world();
    return f.n;
}

void ft_gc_freeze(void)
{
    freeze_all(true);
}

void ft_gc_unfreeze(void)
{
    freeze_all(false);
}

static int walk_count_frozen(void *block, size_t size, void *arg)
{
    ft_object *o = block;
    size_t *n = arg;

    (void)size;
    /* relaxed: world stopped. */
    if ((ft_atomic_load_relaxed(&o->ob_gc_bits) & (FTI_GC_TRACKED | FTI_GC_FROZEN)) ==
        (FTI_GC_TRACKED | FTI_GC_FROZEN))
        (*n)++;
    return 0;
}

size_t ft_gc_get_freeze_count(void)
{
    size_t n = 0;

    FT_ASSERT_ATTACHED();
    ft_stop_the_world();
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, walk_count_frozen, &n);
    ft_start_the_world();
    return n;
}

bool ft_is_tracked(const void *o)
{
    /* relaxed: TRACKED is set at allocation, before the object is shared. */
    return (ft_atomic_load_relaxed(&((ft_object *)o)->ob_gc_bits) & FTI_GC_TRACKED) != 0;
}

/* ---- gc.garbage ---- */

size_t ft_gc_get_garbage(void **out, size_t cap)
{
    size_t n;

    pthread_mutex_lock(&fti_gc.garbage_lock);
    n = fti_gc.garbage.len;
    for (size_t i = 0; i < n && i < cap; i++) {
        ft_incref(fti_gc.garbage.items[i]);
        out[i] = fti_gc.garbage.items[i];
    }
    pthread_mutex_unlock(&fti_gc.garbage_lock);
    return n;
}

void ft_gc_clear_garbage(void)
{
    fti_gc_vec g;

    pthread_mutex_lock(&fti_gc.garbage_lock);
    g = fti_gc.garbage;
    memset(&fti_gc.garbage, 0, sizeof fti_gc.garbage);
    pthread_mutex_unlock(&fti_gc.garbage_lock);
    for (size_t i = 0; i < g.len; i++)
        ft_decref(g.items[i]);
    fti_gc_vec_free(&g);
}

/* ---- init / fini ---- */

int fti_gc_init(const ft_config *cfg)
{
    static const fti_thread_hooks thread_hooks = {
        .on_attach = NULL,
        .on_detach = NULL,
        .on_safepoint = on_safepoint,
        .safepoint_mask = FT_PENDING_GC,
    };
    static const fti_object_hooks object_hooks = {
        .clear_weakrefs = fti_weakref_clear_hook,
        .alloc_threshold = on_alloc_threshold,
    };
    int rc = fti_weakref_init();

    if (rc != 0)
        return rc;
    fti_gc_par_init(cfg->gc_workers);
    /* relaxed: init runs before any thread attaches. */
    ft_atomic_store_relaxed(&fti_gc.collecting, 0);
    ft_atomic_store_relaxed(&fti_gc.young_count, 0);
    ft_atomic_store_relaxed(&fti_gc.allocating_threads, 0);
    /* Not reset: a thread's counted_epoch from a previous ft_init must not
     * match it again (it only grows). */
    ft_atomic_fetch_add_relaxed(&fti_gc.alloc_epoch, 1);
    ft_atomic_store_relaxed(&fti_gc.young_since_full, 0);
    ft_atomic_store_relaxed(&fti_gc.full_count, 0);
    fti_gc.long_lived_total = 0;
    fti_gc.promoted_since_full = 0;
    fti_gc.promotions_per_growth = 1;
    memset(fti_gc.stats, 0, sizeof fti_gc.stats);
    fti_gc.ncallbacks = 0;
    /* fti_thread_init forgot the hooks of a previous ft_init. */
    fti_thread_add_hooks(&thread_hooks);
    fti_object_set_hooks(&object_hooks);
    ft_gc_set_threshold(cfg->gc_threshold[0], cfg->gc_threshold[1], cfg->gc_threshold[2]);
    if (cfg->gc_enabled)
        ft_gc_enable();
    else
        ft_gc_disable();
    return 0;
}

void fti_gc_fini(void)
{
    /* The calling thread is detached by now: the references held by
     * gc.garbage are dropped without decrefs (the heaps go away next). */
    pthread_mutex_lock(&fti_gc.garbage_lock);
    fti_gc_vec_free(&fti_gc.garbage);
    pthread_mutex_unlock(&fti_gc.garbage_lock);
    fti_gc_collect_release_scratch();
    fti_gc_par_fini();
    fti_weakref_fini();
}
