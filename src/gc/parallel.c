/* parallel.c - the collector's marking phases on several threads.
 *
 * Guarantee: the same result as the collector's single-threaded phases:
 * every entry's gc_refs ends as total - internal references, and exactly the
 * entries reachable from a root or from an entry with gc_refs != 0 end with
 * FTI_GC_ALIVE.
 *
 * Why. Decref: the entry array is split into contiguous ranges, one per
 * worker; a visited candidate's counter may be decremented by several
 * workers, so decrements are atomic (relaxed: only the sum matters, and the
 * pool's mutex orders every worker's decrements before the collector reads
 * them). Mark: a worker claims an object by an atomic fetch_or of FTI_GC_ALIVE
 * and pushes it only if the bit was clear, so each object is pushed (and
 * traversed) by exactly one worker; a worker stops when its own stack is empty
 * and all workers are joined before the result is read, so everything
 * reachable from a claimed object is claimed by someone. There is no work
 * stealing: a worker whose range reaches a big subgraph does it alone (the
 * imbalance costs time, never correctness). Stacks are sized for the worst
 * case before the phase starts, so nothing can fail halfway.
 *
 * The helpers are plain pthreads, not attached: they read object headers and
 * run types' traverse functions while every attached thread is stopped, and
 * never touch counts. They sleep on a condition variable between phases. */
#include "gc_int.h"

#include "ft_atomic.h"
#include "mem/mem.h"

#include <errno.h>
#include <stdlib.h>

#define MAX_WORKERS 8
#define PARALLEL_MIN_CANDIDATES 32768 /* below this, waking helpers costs more than it saves */

enum { JOB_DECREF = 0, JOB_MARK = 1 };

typedef struct worker_ctx {
    uint32_t *stack; /* indices of claimed, not yet traversed entries (this worker only) */
    size_t len;
    size_t cap;
    const ft_object *traversing; /* debug messages */
} worker_ctx;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t start;   /* a new job (generation changed) or quit */
    pthread_cond_t done;    /* pending reached zero */
    unsigned configured;    /* workers wanted, the collector included (init) */
    unsigned started;       /* helper threads running (lock) */
    pthread_t threads[MAX_WORKERS];
    uint64_t generation;    /* job number (lock) */
    unsigned pending;       /* helpers still working on the job (lock) */
    bool quit;              /* (lock) */
    /* The job (written under lock before the generation changes). */
    int phase;
    unsigned workers;
    fti_gc_entry *entries;
    size_t n;
    worker_ctx ctx[MAX_WORKERS];
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .start = PTHREAD_COND_INITIALIZER,
           .done = PTHREAD_COND_INITIALIZER };

static inline uint32_t index_of(const ft_object *o)
{
    /* relaxed: world stopped; the collector wrote index + 1 there before the
     * job was published under the pool lock. */
    return ft_atomic_load_relaxed(&((ft_object *)o)->ob_owner) - 1;
}

static int visit_decref(void *p, void *arg)
{
    ft_object *t = p;
    worker_ctx *c = arg;

    if (t == NULL)
        return 0;
    if (FT_CFG_DEBUG_LEVEL >= 2)
        fti_gc_check_visited(c->traversing, t);
    /* relaxed: the scratch bit was set before the job was published. */
    if (ft_atomic_load_relaxed(&t->ob_gc_bits) & FTI_GC_SCRATCH)
        /* relaxed: only the final sum matters; the pool lock publishes it. */
        ft_atomic_fetch_sub_relaxed(&pool.entries[index_of(t)].gc_refs, 1);
    return 0;
}

static inline void claim(worker_ctx *c, ft_object *o)
{
    /* relaxed: atomicity alone decides which worker owns the object. */
    uint8_t old = ft_atomic_fetch_or_relaxed(&o->ob_gc_bits, FTI_GC_ALIVE);

    if ((old & FTI_GC_ALIVE) == 0)
        c->stack[c->len++] = index_of(o); /* at most n pushes: cap is n */
}

static int visit_mark(void *p, void *arg)
{
    ft_object *t = p;

    /* relaxed: SCRATCH is stable during the phase; ALIVE is re-decided by claim. */
    if (t != NULL && (ft_atomic_load_relaxed(&t->ob_gc_bits) & (FTI_GC_SCRATCH | FTI_GC_ALIVE)) == FTI_GC_SCRATCH)
        claim(arg, t);
    return 0;
}

static void run_job(unsigned w)
{
    worker_ctx *c = &pool.ctx[w];
    size_t lo = pool.n * w / pool.workers, hi = pool.n * (w + 1) / pool.workers;

    if (pool.phase == JOB_DECREF) {
        for (size_t i = lo; i < hi; i++) {
            c->traversing = pool.entries[i].obj;
            fti_gc_traverse(pool.entries[i].obj, visit_decref, c);
        }
        c->traversing = NULL;
        return;
    }
    for (size_t i = lo; i < hi; i++) {
        ft_object *o = pool.entries[i].obj;

        /* relaxed: written in the decref phase, published by the pool lock. */
        if (ft_atomic_load_relaxed(&pool.entries[i].gc_refs) != 0
            && (ft_atomic_load_relaxed(&o->ob_gc_bits) & FTI_GC_ALIVE) == 0) /* relaxed: as in visit_mark */
            claim(c, o);
    }
    while (c->len > 0)
        fti_gc_traverse(pool.entries[c->stack[--c->len]].obj, visit_mark, c);
}

static void *helper_main(void *arg)
{
    unsigned w = (unsigned)(uintptr_t)arg;
    uint64_t seen = 0;

    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen && !pool.quit)
            pthread_cond_wait(&pool.start, &pool.lock);
        if (pool.quit)
            break;
        seen = pool.generation;
        if (w < pool.workers) {
            pthread_mutex_unlock(&pool.lock);
            run_job(w);
            pthread_mutex_lock(&pool.lock);
            if (--pool.pending == 0)
                pthread_cond_signal(&pool.done);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

/* Starts helpers up to workers - 1; returns how many workers can run. */
static unsigned ensure_helpers(unsigned workers)
{
    pthread_mutex_lock(&pool.lock);
    while (pool.started + 1 < workers) {
        if (pthread_create(&pool.threads[pool.started + 1], NULL, helper_main,
                           (void *)(uintptr_t)(pool.started + 1)) != 0)
            break;
        pool.started++;
    }
    pthread_mutex_unlock(&pool.lock);
    return pool.started + 1 < workers ? pool.started + 1 : workers;
}

static void run_parallel(int phase, fti_gc_entry *entries, size_t n, unsigned workers)
{
    pthread_mutex_lock(&pool.lock);
    pool.phase = phase;
    pool.entries = entries;
    pool.n = n;
    pool.workers = workers;
    pool.pending = workers - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    run_job(0);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

unsigned fti_gc_par_workers_for(size_t n)
{
    unsigned w = pool.configured;

    if (w <= 1 || n < PARALLEL_MIN_CANDIDATES)
        return 1;
    return ensure_helpers(w);
}

void fti_gc_par_decref(fti_gc_entry *entries, size_t n, unsigned workers)
{
    run_parallel(JOB_DECREF, entries, n, workers);
}

int fti_gc_par_mark(fti_gc_entry *entries, size_t n, unsigned workers, const uint32_t *roots, size_t nroots)
{
    for (unsigned w = 0; w < workers; w++) {
        worker_ctx *c = &pool.ctx[w];

        if (c->cap < n) {
            uint32_t *s = realloc(c->stack, n * sizeof *s);

            if (s == NULL)
                return -ENOMEM;
            c->stack = s;
            c->cap = n;
        }
        c->len = 0;
    }
    /* The roots were claimed by the collector: they start on its stack. */
    for (size_t i = 0; i < nroots; i++)
        pool.ctx[0].stack[pool.ctx[0].len++] = roots[i];
    run_parallel(JOB_MARK, entries, n, workers);
    return 0;
}

void fti_gc_par_init(unsigned configured_workers)
{
    unsigned w = configured_workers;

    /* Automatic: the collector alone. Helpers must be woken and scheduled in
     * every pause; on the 2-core reference machine that cost more than it
     * saved whenever other processes competed for the cores (bench-gc.md),
     * so parallel marking is opt-in (FTRT_GC_WORKERS=2..8). */
    if (w == 0)
        w = 1;
    pool.configured = w > MAX_WORKERS ? MAX_WORKERS : w;
}

void fti_gc_par_fini(void)
{
    unsigned started;

    pthread_mutex_lock(&pool.lock);
    pool.quit = true;
    pthread_cond_broadcast(&pool.start);
    started = pool.started;
    pthread_mutex_unlock(&pool.lock);
    for (unsigned i = 1; i <= started; i++)
        pthread_join(pool.threads[i], NULL);
    pthread_mutex_lock(&pool.lock);
    pool.started = 0;
    pool.quit = false;
    pool.generation = 0;
    pthread_mutex_unlock(&pool.lock);
    for (unsigned w = 0; w < MAX_WORKERS; w++) {
        free(pool.ctx[w].stack);
        pool.ctx[w].stack = NULL;
        pool.ctx[w].cap = pool.ctx[w].len = 0;
    }
}
