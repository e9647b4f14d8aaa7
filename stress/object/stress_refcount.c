/* stress_refcount.c - threads exchange references to shared objects through
 * a table of slots read lock-free (ft_try_incref + re-check), with random
 * increfs, decrefs, new objects, blocking regions (merges on a blocked
 * owner's behalf), safepoints (queue merges) and detach/re-attach (owners
 * leaving). At the end every object must have been deallocated exactly once,
 * and no reference ever pointed at a deallocated object.
 *
 *   stress_refcount [--seconds S] [--seed N] [--threads T]
 * The seed is printed first; the same seed replays the same per-thread
 * decisions (the interleaving differs). */
#include "ft_config.h"
#include "ftrt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAGIC_ALIVE 0x5a5a1234u
#define MAGIC_DEAD  0xdead0bedu
#define SLOTS 64
#define HELD 32

typedef struct snode {
    ft_object ob;
    void *child;               /* counted reference or NULL */
    _Atomic uint32_t magic;
} snode;

static _Atomic long created, destroyed, violations;

static int snode_traverse(void *self, ft_visit_fn visit, void *arg)
{
    snode *n = self;
    return n->child != NULL ? visit(n->child, arg) : 0;
}

static void snode_dealloc(void *self)
{
    snode *n = self;
    /* relaxed: the magic is checked by holders of counted references only. */
    if (atomic_exchange_explicit(&n->magic, MAGIC_DEAD, memory_order_relaxed) != MAGIC_ALIVE)
        atomic_fetch_add(&violations, 1);
    atomic_fetch_add_explicit(&destroyed, 1, memory_order_relaxed);
}

static const ft_type plain_type = { .name = "snode", .size = sizeof(snode),
                                    .traverse = snode_traverse, .dealloc = snode_dealloc };
static const ft_type gc_type = { .name = "snode_gc", .size = sizeof(snode), .flags = FT_TYPE_GC,
                                 .traverse = snode_traverse, .dealloc = snode_dealloc };
static const ft_type local_type = { .name = "snode_local", .size = sizeof(snode),
                                    .traverse = snode_traverse, .dealloc = snode_dealloc };

static _Atomic(snode *) slots[SLOTS];
static _Atomic int stop;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static snode *snode_new(const ft_type *t, void *child)
{
    snode *n = ft_new(t);
    if (n == NULL)
        return NULL;
    n->child = child;
    ft_set_shared_read(n); /* slots are read lock-free with ft_try_incref */
    atomic_store_explicit(&n->magic, MAGIC_ALIVE, memory_order_relaxed);
    atomic_fetch_add_explicit(&created, 1, memory_order_relaxed);
    return n;
}

static void check(snode *n)
{
    if (atomic_load_explicit(&n->magic, memory_order_relaxed) != MAGIC_ALIVE)
        atomic_fetch_add(&violations, 1);
}

typedef struct worker {
    pthread_t thread;
    uint64_t seed;
    long ops;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    uint64_t rng = w->seed;
    snode *held[HELD] = { 0 };
    long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_acquire)) {
        uint64_t r = rng_next(&rng);
        int h = (int)(r % HELD);
        int s = (int)((r >> 8) % SLOTS);
        switch ((r >> 16) % 16) {
        case 0: case 1: case 2: { /* take a reference from a slot, lock-free */
            /* acquire: pairs with the release exchange that stored it. */
            snode *n = atomic_load_explicit(&slots[s], memory_order_acquire);
            if (n != NULL && ft_try_incref(n)) {
                if (atomic_load_explicit(&slots[s], memory_order_acquire) != n) {
                    ft_decref(n); /* replaced meanwhile: retry later */
                    break;
                }
                check(n);
                if (held[h] != NULL)
                    ft_decref(held[h]);
                held[h] = n;
            }
            break;
        }
        case 3: case 4: { /* publish a held reference in a slot */
            snode *n = held[h];
            if (n == NULL || ft_type_of(n) == &local_type)
                break;
            held[h] = NULL;
            /* acq_rel: release publishes n; acquire for the old one we drop. */
            snode *old = atomic_exchange_explicit(&slots[s], n, memory_order_acq_rel);
            if (old != NULL)
                ft_decref(old);
            break;
        }
        case 5: case 6: { /* a new object, maybe holding another as its child */
            void *child = NULL;
            if (held[(h + 1) % HELD] != NULL && (r >> 24) % 2) {
                child = held[(h + 1) % HELD];
                held[(h + 1) % HELD] = NULL; /* the reference moves into the new node */
            }
            const ft_type *t = (r >> 28) % 3 == 0 ? &gc_type : (r >> 28) % 3 == 1 ? &plain_type : &local_type;
            if (t == &local_type && child != NULL && ft_type_of(child) != &local_type)
                t = &plain_type;
            snode *n = snode_new(t, child);
            if (n == NULL) {
                ft_xdecref(child);
                break;
            }
            if (held[h] != NULL)
                ft_decref(held[h]);
            held[h] = n;
            break;
        }
        case 7: case 8: /* drop */
            if (held[h] != NULL) {
                check(held[h]);
                ft_decref(held[h]);
                held[h] = NULL;
            }
            break;
        case 9: case 10: case 11: /* incref / decref pairs */
            if (held[h] != NULL) {
                for (int i = 0; i < 4; i++)
                    ft_incref(held[h]);
                check(held[h]);
                for (int i = 0; i < 4; i++)
                    ft_decref(held[h]);
            }
            break;
        case 12: /* a blocking region: others merge on our behalf */
            ft_blocking_begin();
            if ((r >> 32) % 8 == 0)
                usleep(50);
            ft_blocking_end();
            break;
        case 13:
            ft_safepoint();
            break;
        case 14: /* leave and come back: our objects become unowned */
            if ((r >> 32) % 64 == 0) {
                ft_thread_detach();
                if (ft_thread_attach() != 0)
                    atomic_fetch_add(&violations, 1);
            }
            break;
        default:
            ft_safepoint();
            break;
        }
        ops++;
    }
    for (int i = 0; i < HELD; i++)
        ft_xdecref(held[i]);
    w->ops = ops;
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    uint64_t seed = (uint64_t)time(NULL);
    int nthreads = FT_CFG_TSAN ? 3 : 4;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0)
            nthreads = atoi(argv[++i]);
    }
    if (nthreads < 1 || nthreads > 64)
        nthreads = 4;
    printf("stress_refcount: seed %llu, %d threads, %.1f s\n", (unsigned long long)seed, nthreads, seconds);
    fflush(stdout);
    ft_config cfg;
    ft_config_default(&cfg);
    cfg.qsbr_budget_bytes = 64 * 1024; /* small: exercise forced grace periods */
    if (ft_init(&cfg) != 0)
        return 2;
    worker w[64];
    for (int i = 0; i < nthreads; i++) {
        w[i].seed = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i + 1;
        if (ft_thread_start(&w[i].thread, run_worker, &w[i]) != 0)
            return 2;
    }
    ft_blocking_begin();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store_explicit(&stop, 1, memory_order_release);
    ft_blocking_end();
    long ops = 0;
    for (int i = 0; i < nthreads; i++) {
        ft_thread_join(w[i].thread, NULL);
        ops += w[i].ops;
    }
    for (int s = 0; s < SLOTS; s++) {
        /* relaxed: the workers are joined. */
        snode *n = atomic_exchange_explicit(&slots[s], NULL, memory_order_relaxed);
        ft_xdecref(n);
    }
    ft_safepoint();
    /* Cycles are impossible (children are older than parents), so counting
     * alone must have freed everything. */
    long c = atomic_load(&created), d = atomic_load(&destroyed), v = atomic_load(&violations);
    printf("stress_refcount: %ld ops, %ld objects created, %ld deallocated, %ld violations\n", ops, c, d, v);
    ft_fini();
    if (c != d || v != 0) {
        printf("stress_refcount: FAILED (seed %llu)\n", (unsigned long long)seed);
        return 1;
    }
    printf("stress_refcount: OK\n");
    return 0;
}
