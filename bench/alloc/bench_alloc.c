/* bench_alloc.c - issue 2's allocator workloads, for ftrt or for whatever
 * malloc the process runs with (glibc, or an LD_PRELOADed mimalloc, jemalloc,
 * tcmalloc). bench/alloc/run.sh runs it once per allocator and workload.
 *
 *   churn     same-thread churn of random sizes 16..512 B, bounded live set
 *   prodcons  blocks allocated on one thread, freed on another (xmalloc-test)
 *   larson    threads replace random blocks and hand a share of their live
 *             blocks to the next thread each round (larson-style)
 *   rss       RSS before, at peak and after allocating and freeing 1 GiB of
 *             small blocks
 *
 * Usage: bench_alloc --alloc=ftrt|system [--name NAME] --workload=W
 *        [--threads N] [--seconds S]
 * Never asserts on time; prints the machine, then one JSON line per result. */
#include "ft_config.h"
#include "ftrt/mem.h"
#include "bench_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>

typedef struct alloc_ops {
    void *(*alloc)(size_t n);
    void (*release)(void *p);
} alloc_ops;

static const alloc_ops ftrt_ops = { ft_malloc, ft_free };
static const alloc_ops system_ops = { malloc, free };

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* CPU time of the whole process (all threads), in ns: on a shared machine
 * ops per CPU-second is steadier than ops per wall-clock second. */
static uint64_t cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t rss_now_kib(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* The workloads are written once and instantiated per allocator, so that the
 * calls are direct (an indirect call would add the same cost to every
 * allocator but blur the fast-path comparison). */
#define DEFINE_WORKLOADS(SUFFIX, ALLOC, FREE)                                                      \
    static double churn_##SUFFIX(uint64_t ops)                                                     \
    {                                                                                              \
        enum { LIVE = 10000 };                                                                     \
        static unsigned char *slots[LIVE];                                                         \
        uint64_t rng = 42;                                                                         \
        uint64_t t0 = bench_now_ns();                                                              \
        for (uint64_t i = 0; i < ops; i++) {                                                       \
            uint64_t r = rng_next(&rng);                                                           \
            size_t k = (size_t)(r % LIVE);                                                         \
            if (slots[k] != NULL)                                                                  \
                FREE(slots[k]);                                                                    \
            size_t n = 16 + (size_t)((r >> 32) % 497);                                             \
            slots[k] = ALLOC(n);                                                                   \
            slots[k][0] = (unsigned char)i;                                                        \
        }                                                                                          \
        uint64_t t1 = bench_now_ns();                                                              \
        for (size_t k = 0; k < LIVE; k++) {                                                        \
            FREE(slots[k]);                                                                        \
            slots[k] = NULL;                                                                       \
        }                                                                                          \
        return (double)ops * 1e9 / (double)(t1 - t0);                                              \
    }                                                                                              \
    static void *producer_##SUFFIX(void *arg)                                                      \
    {                                                                                              \
        ring *r = arg;                                                                             \
        uint64_t rng = 7;                                                                          \
        for (uint64_t i = 0; i < r->total; i++) {                                                  \
            size_t n = 16 + (size_t)(rng_next(&rng) % 497);                                        \
            unsigned char *p = ALLOC(n);                                                           \
            p[0] = (unsigned char)i;                                                               \
            ring_put(r, p);                                                                        \
        }                                                                                          \
        return NULL;                                                                               \
    }                                                                                              \
    static void *consumer_##SUFFIX(void *arg)                                                      \
    {                                                                                              \
        ring *r = arg;                                                                             \
        for (uint64_t i = 0; i < r->total; i++)                                                    \
            FREE(ring_get(r));                                                                     \
        return NULL;                                                                               \
    }                                                                                              \
    static void *larson_##SUFFIX(void *arg)                                                        \
    {                                                                                              \
        larson_thread *t = arg;                                                                    \
        uint64_t rng = 1000 + t->index;                                                            \
        uint64_t ops = 0;                                                                          \
        for (size_t k = 0; k < LARSON_LIVE; k++)                                                   \
            t->live[k] = ALLOC(16 + (size_t)(rng_next(&rng) % 497));                               \
        while (!atomic_load_explicit(&larson_stop, memory_order_relaxed)) {                        \
            for (int i = 0; i < 10000; i++, ops++) {                                               \
                size_t k = (size_t)(rng_next(&rng) % LARSON_LIVE);                                 \
                FREE(t->live[k]);                                                                  \
                t->live[k] = ALLOC(16 + (size_t)(rng_next(&rng) % 497));                           \
                t->live[k][0] = 1;                                                                 \
            }                                                                                      \
            larson_exchange(t, &rng);                                                              \
        }                                                                                          \
        for (size_t k = 0; k < LARSON_LIVE; k++)                                                   \
            FREE(t->live[k]);                                                                      \
        t->ops = ops;                                                                              \
        return NULL;                                                                               \
    }                                                                                              \
    static void rss_##SUFFIX(size_t *before, size_t *peak, size_t *after)                          \
    {                                                                                              \
        size_t total = (size_t)1 << 30, n = 0, cap = total / 16, bytes = 0;                        \
        /* The pointer array comes from mmap so that it is the same for all \
         * allocators, and is unmapped before the last reading. */            \
        unsigned char **blocks = mmap(NULL, cap * sizeof *blocks, PROT_READ | PROT_WRITE,          \
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);                         \
        uint64_t rng = 99;                                                                         \
        *before = rss_now_kib();                                                                   \
        while (bytes < total) {                                                                    \
            size_t sz = 16 + (size_t)(rng_next(&rng) % 497);                                       \
            blocks[n] = ALLOC(sz);                                                                 \
            memset(blocks[n], 1, sz);                                                              \
            n++;                                                                                   \
            bytes += sz;                                                                           \
        }                                                                                          \
        *peak = rss_now_kib();                                                                     \
        for (size_t i = 0; i < n; i++)                                                             \
            FREE(blocks[i]);                                                                       \
        munmap(blocks, cap * sizeof *blocks);                                                      \
        *after = rss_now_kib();                                                                    \
    }

/* Single-producer single-consumer ring of pointers (batched waiting). */
#define RING 4096
typedef struct ring {
    void *slot[RING];
    _Atomic uint64_t head; /* written by the producer */
    char pad_[64];
    _Atomic uint64_t tail; /* written by the consumer */
    uint64_t total;
} ring;

static void ring_put(ring *r, void *p)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (h - atomic_load_explicit(&r->tail, memory_order_acquire) == RING)
        sched_yield();
    r->slot[h % RING] = p;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

static void *ring_get(ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    while (atomic_load_explicit(&r->head, memory_order_acquire) == t)
        sched_yield();
    void *p = r->slot[t % RING];
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return p;
}

#define LARSON_LIVE 1000
#define LARSON_SHARE 100
typedef struct larson_thread {
    unsigned index, nthreads;
    unsigned char *live[LARSON_LIVE];
    uint64_t ops;
} larson_thread;

static atomic_bool larson_stop;
static pthread_mutex_t larson_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *larson_pool[LARSON_SHARE * 64]; /* (larson_lock) */
static size_t larson_pool_n;                         /* (larson_lock) */

/* Gives LARSON_SHARE random live blocks to the pool and takes as many that
 * other threads put there: those get freed here, far from their owner. */
static void larson_exchange(larson_thread *t, uint64_t *rng)
{
    pthread_mutex_lock(&larson_lock);
    for (int i = 0; i < LARSON_SHARE; i++) {
        size_t k = (size_t)(rng_next(rng) % LARSON_LIVE);
        if (larson_pool_n > 0 && (rng_next(rng) & 1)) {
            size_t j = (size_t)(rng_next(rng) % larson_pool_n);
            unsigned char *theirs = larson_pool[j];
            larson_pool[j] = t->live[k];
            t->live[k] = theirs;
        } else if (larson_pool_n < LARSON_SHARE * 64) {
            unsigned char *tmp = t->live[k];
            larson_pool[larson_pool_n++] = tmp;
            t->live[k] = NULL;
        }
    }
    pthread_mutex_unlock(&larson_lock);
}

DEFINE_WORKLOADS(ftrt, ft_malloc, ft_free)
DEFINE_WORKLOADS(sys, malloc, free)

int main(int argc, char **argv)
{
    bool use_ftrt = true;
    const char *name = NULL, *workload = "churn";
    unsigned threads = 2;
    double seconds = 2;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--alloc=ftrt") == 0)
            use_ftrt = true;
        else if (strcmp(argv[i], "--alloc=system") == 0)
            use_ftrt = false;
        else if (strncmp(argv[i], "--name=", 7) == 0)
            name = argv[i] + 7;
        else if (strncmp(argv[i], "--workload=", 11) == 0)
            workload = argv[i] + 11;
        else if (strncmp(argv[i], "--threads=", 10) == 0)
            threads = (unsigned)atoi(argv[i] + 10);
        else if (strncmp(argv[i], "--seconds=", 10) == 0)
            seconds = atof(argv[i] + 10);
        else {
            fprintf(stderr, "usage: %s --alloc=ftrt|system [--name=N] --workload=churn|prodcons|larson|rss "
                            "[--threads=N] [--seconds=S]\n", argv[0]);
            return 2;
        }
    }
    if (name == NULL)
        name = use_ftrt ? "ftrt" : "system";
    if (threads < 1 || threads > 64)
        threads = 2;
    bench_print_machine(stdout, "alloc", FT_CFG_BUILDTYPE);
    (void)ftrt_ops;
    (void)system_ops;

    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double ops_per_sec = 0, total_ops = 0;
    uint64_t cpu0 = cpu_now_ns();
    size_t before = 0, peak = 0, after = 0;

    if (strcmp(workload, "churn") == 0) {
        uint64_t ops = (uint64_t)(seconds * 2e7);
        ops_per_sec = use_ftrt ? churn_ftrt(ops) : churn_sys(ops);
        total_ops = (double)ops;
    } else if (strcmp(workload, "prodcons") == 0) {
        static ring r;
        r.total = (uint64_t)(seconds * 5e6);
        pthread_t p, c;
        uint64_t t0 = bench_now_ns();
        pthread_create(&p, NULL, use_ftrt ? producer_ftrt : producer_sys, &r);
        pthread_create(&c, NULL, use_ftrt ? consumer_ftrt : consumer_sys, &r);
        pthread_join(p, NULL);
        pthread_join(c, NULL);
        ops_per_sec = (double)r.total * 1e9 / (double)(bench_now_ns() - t0);
        total_ops = (double)r.total;
    } else if (strcmp(workload, "larson") == 0) {
        larson_thread *ts = calloc(threads, sizeof *ts);
        pthread_t *tids = calloc(threads, sizeof *tids);
        uint64_t t0 = bench_now_ns();
        for (unsigned i = 0; i < threads; i++) {
            ts[i].index = i;
            ts[i].nthreads = threads;
            pthread_create(&tids[i], NULL, use_ftrt ? larson_ftrt : larson_sys, &ts[i]);
        }
        struct timespec nap = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
        nanosleep(&nap, NULL);
        atomic_store(&larson_stop, true);
        uint64_t ops = 0;
        for (unsigned i = 0; i < threads; i++) {
            pthread_join(tids[i], NULL);
            ops += ts[i].ops;
        }
        double elapsed = (double)(bench_now_ns() - t0);
        for (size_t i = 0; i < larson_pool_n; i++)
            (use_ftrt ? ft_free : free)(larson_pool[i]);
        ops_per_sec = (double)ops * 1e9 / elapsed;
        total_ops = (double)ops;
        free(ts);
        free(tids);
    } else if (strcmp(workload, "rss") == 0) {
        if (use_ftrt)
            rss_ftrt(&before, &peak, &after);
        else
            rss_sys(&before, &peak, &after);
    } else {
        fprintf(stderr, "unknown workload %s\n", workload);
        return 2;
    }
    uint64_t cpu_ns = cpu_now_ns() - cpu0;
    double ops_per_cpu_sec = cpu_ns > 0 ? total_ops * 1e9 / (double)cpu_ns : 0;
    long peak_rss = bench_peak_rss_kib();
    printf("%-10s %-9s threads=%u ops/s=%.0f ops/cpu-s=%.0f peak_rss_kib=%ld rss_before/peak/after_kib=%zu/%zu/%zu%s\n",
           name, workload, threads, ops_per_sec, ops_per_cpu_sec, peak_rss, before, peak, after,
           threads > (unsigned)cores && strcmp(workload, "larson") == 0 ? " (oversubscribed)" : "");
    printf("{\"bench\":\"alloc\",\"alloc\":\"%s\",\"workload\":\"%s\",\"threads\":%u,\"ops_per_sec\":%.0f,"
           "\"ops_per_cpu_sec\":%.0f,"
           "\"peak_rss_kib\":%ld,\"rss_before_kib\":%zu,\"rss_peak_kib\":%zu,\"rss_after_kib\":%zu,"
           "\"cores\":%ld,\"cpu\":\"%s\",\"build\":\"%s\"}\n",
           name, workload, threads, ops_per_sec, ops_per_cpu_sec, peak_rss, before, peak, after, cores, cpu,
           FT_CFG_BUILDTYPE);
    return 0;
}
