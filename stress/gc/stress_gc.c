/* stress_gc.c - collector torture: threads build and cut cycles in a shared
 * graph, take weak references to graph nodes and resolve them, finalize
 * (sometimes resurrecting), hold deferred nodes in local roots, and sleep in
 * blocking regions, while automatic collections and an explicit collector
 * thread run. Checks: every node a thread touches is alive, every weakref get
 * returns a live node or NULL, and when everything is dropped nothing is left.
 *
 * Usage: stress_gc [--seconds S] [--seed N] [--threads T]
 * The seed is printed first; the same seed replays the same per-thread
 * decisions (thread interleavings still vary). */
#include "ft_config.h"

#include <ftrt/gc.h>
#include <ftrt/lock.h>
#include <ftrt/object.h>
#include <ftrt/runtime.h>
#include <ftrt/thread.h>
#include <ftrt/weakref.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EDGES 4
#define MAGIC 0x73747265u
#define ROOTS 16

typedef struct snode {
    ft_object ob;
    void *edge[EDGES]; /* counted; writers hold the node's critical section */
    uint32_t magic;
    uint32_t resurrect; /* finalizer resurrects once when nonzero */
} snode;

static _Atomic long live;
static _Atomic long failures;
static _Atomic long resurrections;
static _Atomic long callbacks;

/* Resurrected nodes parked here (a counted reference each), released later. */
static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;
static void *parked[64];
static int nparked;

static int snode_traverse(void *self, ft_visit_fn visit, void *arg)
{
    snode *n = self;

    for (int i = 0; i < EDGES; i++)
        if (n->edge[i] != NULL) {
            int rc = visit(n->edge[i], arg);

            if (rc)
                return rc;
        }
    return 0;
}

static void snode_clear(void *self)
{
    snode *n = self;

    for (int i = 0; i < EDGES; i++) {
        void *old;
        ft_critical_section cs;

        ft_critical_section_begin(&cs, n);
        old = n->edge[i];
        n->edge[i] = NULL;
        ft_critical_section_end(&cs);
        if (old != NULL)
            ft_decref(old);
    }
}

static void snode_finalize(void *self)
{
    snode *n = self;

    if (n->resurrect) {
        pthread_mutex_lock(&parked_lock);
        if (nparked < 64) {
            ft_incref(n);
            parked[nparked++] = n;
            atomic_fetch_add(&resurrections, 1);
        }
        pthread_mutex_unlock(&parked_lock);
    }
}

static void snode_dealloc(void *self)
{
    snode *n = self;

    n->magic = 0;
    atomic_fetch_sub(&live, 1);
}

static const ft_type snode_type = {
    .name = "stress.node",
    .size = sizeof(snode),
    .flags = FT_TYPE_GC,
    .traverse = snode_traverse,
    .clear = snode_clear,
    .finalize = snode_finalize,
    .dealloc = snode_dealloc,
};

static snode *snode_new(uint64_t r)
{
    snode *n = ft_new(&snode_type);

    if (n == NULL) {
        fprintf(stderr, "stress_gc: out of memory\n");
        exit(1);
    }
    n->magic = MAGIC;
    n->resurrect = (r % 97) == 0;
    atomic_fetch_add(&live, 1);
    return n;
}

static void check(const void *p, const char *what)
{
    const snode *n = p;

    if (n->magic != MAGIC || ft_type_of(n) != &snode_type) {
        atomic_fetch_add(&failures, 1);
        fprintf(stderr, "stress_gc: FAILURE: %s: node %p is not alive\n", what, p);
    }
}

static void set_edge(snode *n, int i, void *t)
{
    void *old;
    ft_critical_section cs;

    if (t != NULL)
        ft_incref(t);
    ft_critical_section_begin(&cs, n);
    old = n->edge[i];
    n->edge[i] = t;
    ft_critical_section_end(&cs);
    if (old != NULL)
        ft_decref(old);
}

static void *get_edge(snode *n, int i)
{
    void *t;
    ft_critical_section cs;

    ft_critical_section_begin(&cs, n);
    t = n->edge[i];
    if (t != NULL)
        ft_incref(t);
    ft_critical_section_end(&cs);
    return t;
}

static void weak_cb(void *wr, void *arg)
{
    (void)wr;
    (void)arg;
    atomic_fetch_add(&callbacks, 1);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct worker {
    pthread_t thread;
    uint64_t seed;
    snode **roots;
    _Atomic bool *stop;
    long steps;
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    uint64_t s = w->seed;
    void *weak[8] = { 0 };   /* counted references to weakrefs */
    void *slots[2] = { 0 };  /* local roots: deferred nodes, uncounted */
    ft_roots_frame frame;

    ft_roots_push(&frame, slots, 2);
    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        snode *cur = w->roots[xorshift(&s) % ROOTS];

        ft_incref(cur);
        for (int step = 0; step < 32; step++) {
            uint64_t r = xorshift(&s);
            int e = (int)(r % EDGES);
            void *next;

            check(cur, "walk");
            switch ((r >> 8) % 16) {
            case 0:
            case 1: { /* new node closing a cycle back to cur */
                snode *n = snode_new(r >> 20);

                set_edge(n, 0, cur);
                set_edge(cur, e, n);
                ft_decref(n);
                break;
            }
            case 2:
                set_edge(cur, e, NULL);
                break;
            case 3: { /* weak reference to cur */
                int k = (int)((r >> 16) % 8);

                if (weak[k] != NULL)
                    ft_decref(weak[k]);
                weak[k] = ft_weakref_new(cur, (r >> 24) % 2 ? weak_cb : NULL, NULL);
                break;
            }
            case 4: { /* resolve a weak reference */
                int k = (int)((r >> 16) % 8);

                if (weak[k] != NULL) {
                    void *t = ft_weakref_get(weak[k]);

                    if (t != NULL) {
                        check(t, "weakref get");
                        ft_decref(t);
                    }
                }
                break;
            }
            case 5: { /* a deferred local root, swapped */
                snode *n = snode_new(r >> 20);
                int k = (int)((r >> 16) % 2);

                ft_set_deferred(n);
                set_edge(n, 1, cur);
                slots[k] = n; /* the previous occupant becomes collectable */
                ft_decref(n);
                break;
            }
            case 6: /* a short blocking region */
                if ((r >> 32) % 8 == 0) {
                    struct timespec ts = { 0, 20000 };

                    FT_BLOCKING(nanosleep(&ts, NULL));
                }
                break;
            case 7: /* release parked resurrected nodes */
                pthread_mutex_lock(&parked_lock);
                if (nparked > 0) {
                    void *pnode = parked[--nparked];

                    pthread_mutex_unlock(&parked_lock);
                    check(pnode, "resurrected");
                    ft_decref(pnode);
                } else {
                    pthread_mutex_unlock(&parked_lock);
                }
                break;
            default:
                break;
            }
            if (slots[0] != NULL)
                check(slots[0], "local root");
            next = get_edge(cur, e);
            if (next != NULL) {
                ft_decref(cur);
                cur = next;
            }
            w->steps++;
            ft_safepoint();
        }
        ft_decref(cur);
    }
    slots[0] = slots[1] = NULL;
    ft_roots_pop(&frame);
    for (int k = 0; k < 8; k++)
        if (weak[k] != NULL)
            ft_decref(weak[k]);
    return NULL;
}

typedef struct collector {
    pthread_t thread;
    _Atomic bool *stop;
    long collections;
} collector;

static void *collector_main(void *p)
{
    collector *c = p;
    int i = 0;

    while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
        struct timespec ts = { 0, 2000000 };

        ft_gc_collect(i++ % 4 == 0 ? 2 : 0);
        c->collections++;
        FT_BLOCKING(nanosleep(&ts, NULL));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    uint64_t seed = (uint64_t)time(NULL);
    int nthreads = FT_CFG_TSAN ? 3 : 4;
    snode *roots[ROOTS];
    worker *workers;
    collector col = { 0 };
    _Atomic bool stop = false;
    struct timespec budget;
    long steps = 0;
    ft_gc_stats st[3];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nthreads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--seed N] [--threads T]\n", argv[0]);
            return 2;
        }
    }
    printf("stress_gc: seed %" PRIu64 " seconds %.1f threads %d\n", seed, seconds, nthreads);
    fflush(stdout);
    if (ft_init(NULL) != 0) {
        fprintf(stderr, "stress_gc: ft_init failed\n");
        return 1;
    }
    ft_gc_set_threshold(FT_CFG_TSAN ? 300 : 700, 10, 10);
    ft_gc_enable();
    for (int i = 0; i < ROOTS; i++)
        roots[i] = snode_new(1);
    for (int i = 0; i < ROOTS; i++)
        set_edge(roots[i], 0, roots[(i + 1) % ROOTS]);
    workers = calloc((size_t)nthreads, sizeof *workers);
    for (int i = 0; i < nthreads; i++) {
        workers[i].seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i + 1;
        workers[i].roots = roots;
        workers[i].stop = &stop;
        ft_thread_start(&workers[i].thread, worker_main, &workers[i]);
    }
    col.stop = &stop;
    ft_thread_start(&col.thread, collector_main, &col);
    budget.tv_sec = (time_t)seconds;
    budget.tv_nsec = (long)((seconds - (double)budget.tv_sec) * 1e9);
    FT_BLOCKING(nanosleep(&budget, NULL));
    atomic_store(&stop, true);
    for (int i = 0; i < nthreads; i++) {
        ft_thread_join(workers[i].thread, NULL);
        steps += workers[i].steps;
    }
    ft_thread_join(col.thread, NULL);
    ft_gc_disable();
    for (int i = 0; i < ROOTS; i++)
        ft_decref(roots[i]);
    for (int round = 0; round < 4; round++) {
        pthread_mutex_lock(&parked_lock);
        while (nparked > 0)
            ft_decref(parked[--nparked]);
        pthread_mutex_unlock(&parked_lock);
        ft_gc_collect(2);
        ft_safepoint();
    }
    for (int g = 0; g < 3; g++)
        ft_gc_get_stats(g, &st[g]);
    printf("stress_gc: %ld steps, %ld explicit collections; gen0 %" PRIu64 " gen2 %" PRIu64
           " collections, %" PRIu64 " collected, max pause %.3f ms; %ld resurrections, %ld callbacks\n",
           steps, col.collections, st[0].collections, st[2].collections, st[0].collected + st[2].collected,
           (double)(st[0].pause_max_ns > st[2].pause_max_ns ? st[0].pause_max_ns : st[2].pause_max_ns) / 1e6,
           atomic_load(&resurrections), atomic_load(&callbacks));
    if (atomic_load(&live) != 0) {
        fprintf(stderr, "stress_gc: FAILURE: %ld nodes leaked (seed %" PRIu64 ")\n", atomic_load(&live), seed);
        atomic_fetch_add(&failures, 1);
    }
    free(workers);
    ft_fini();
    if (atomic_load(&failures) != 0) {
        fprintf(stderr, "stress_gc: %ld failures (seed %" PRIu64 ")\n", atomic_load(&failures), seed);
        return 1;
    }
    printf("stress_gc: ok\n");
    return 0;
}
