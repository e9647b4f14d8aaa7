/* bench_gc_pause.c - collector pauses.
 *
 *  1. Full collection of a heap of N live tracked objects (N = 100k, 1M, 4M):
 *     pause (median of R runs) and throughput (objects examined per second).
 *     The heap is chains of 64 nodes with a back edge (one cycle each), all
 *     reachable from one root array.
 *  2. Young collection of Y freshly allocated objects (half garbage cycles)
 *     with an empty old generation vs with 1M old objects: the ratio is the
 *     cost a young collection pays for the old heap (goal <= 2x).
 *
 * Never asserts on time. Output: a human line per result and one JSON object
 * per line (prefixed with nothing) for the plotting scripts.
 *     bench_gc_pause [--max N] [--runs R] [--young Y] [--workers W]
 * W: marking workers (cfg.gc_workers; 0 = automatic).
 *     bench_gc_pause --one N
 * builds one heap of N objects and runs exactly two full collections, for
 * instruction counts: valgrind --tool=callgrind --toggle-collect=fti_gc_collect_owned */
#include "bench_util.h"

#include "ft_config.h"

#include <ftrt/gc.h>
#include <ftrt/object.h>
#include <ftrt/runtime.h>
#include <ftrt/thread.h>

#include <inttypes.h>

typedef struct bnode {
    ft_object ob;
    void *next;
    void *back;
} bnode;

static int bnode_traverse(void *self, ft_visit_fn visit, void *arg)
{
    bnode *n = self;
    int rc = 0;

    if (n->next != NULL && (rc = visit(n->next, arg)) != 0)
        return rc;
    if (n->back != NULL)
        rc = visit(n->back, arg);
    return rc;
}

static void bnode_clear(void *self)
{
    bnode *n = self;
    void *a = n->next, *b = n->back;

    n->next = n->back = NULL;
    if (a != NULL)
        ft_decref(a);
    if (b != NULL)
        ft_decref(b);
}

static const ft_type bnode_type = {
    .name = "bench.node",
    .size = sizeof(bnode),
    .flags = FT_TYPE_GC,
    .traverse = bnode_traverse,
    .clear = bnode_clear,
};

/* A chain of len nodes whose last points back at the first; returns the
 * head (one reference owned by the caller). */
static bnode *make_cycle(size_t len)
{
    bnode *head = ft_new(&bnode_type), *cur = head;

    for (size_t i = 1; i < len; i++) {
        bnode *n = ft_new(&bnode_type);

        cur->next = n; /* steals the creation reference */
        cur = n;
    }
    ft_incref(head);
    cur->back = head;
    return head;
}

static void **build_heap(size_t n, size_t *count)
{
    size_t chains = n / 64;
    void **roots = calloc(chains ? chains : 1, sizeof *roots);

    for (size_t i = 0; i < chains; i++)
        roots[i] = make_cycle(64);
    *count = chains;
    return roots;
}

static void drop_heap(void **roots, size_t count)
{
    for (size_t i = 0; i < count; i++)
        ft_decref(roots[i]);
    free(roots);
    ft_gc_collect(2);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the collecting thread in the last time_collect: unlike the wall
 * time it does not grow when other processes compete for the cores. */
static double last_cpu_ms;

static double time_collect(int gen, intptr_t *found)
{
    uint64_t c0 = thread_cpu_ns();
    uint64_t t0 = bench_now_ns();
    intptr_t n = ft_gc_collect(gen);
    uint64_t t1 = bench_now_ns();

    last_cpu_ms = (double)(thread_cpu_ns() - c0) / 1e6;
    if (found != NULL)
        *found = n;
    return (double)(t1 - t0) / 1e6;
}

int main(int argc, char **argv)
{
    size_t max = 4000000, young = 20000;
    int runs = 5;
    unsigned workers = 0;
    size_t one = 0;
    size_t sizes[] = { 100000, 1000000, 4000000 };
    ft_config cfg;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            max = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--young") == 0 && i + 1 < argc)
            young = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--one") == 0 && i + 1 < argc)
            one = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = (unsigned)atoi(argv[++i]);
    }
    if (runs < 1 || runs > 101)
        runs = 5;
    ft_config_default(&cfg);
    cfg.gc_enabled = false; /* only the collections we time */
    cfg.gc_workers = workers;
    if (ft_init(&cfg) != 0)
        return 1;
    bench_print_machine(stdout, "gc_pause", FT_CFG_BUILDTYPE);
    if (one > 0) {
        size_t count;
        void **roots = build_heap(one, &count);

        time_collect(2, NULL);
        time_collect(2, NULL);
        printf("two full collections of %zu objects done\n", count * 64);
        free(roots); /* the heap goes with ft_fini: no third collection */
        ft_fini();
        return 0;
    }

    /* 1. Full collections of live heaps. */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s], count;
        double ms[101], cpu[101];
        void **roots;
        ft_gc_stats st;

        if (n > max)
            continue;
        roots = build_heap(n, &count);
        time_collect(2, NULL); /* warm-up: promotes everything */
        for (int r = 0; r < runs; r++) {
            ms[r] = time_collect(2, NULL);
            cpu[r] = last_cpu_ms;
        }
        ft_gc_get_stats(2, &st);
        {
            double med = bench_median(ms, (size_t)runs);
            double cpu_med = bench_median(cpu, (size_t)runs);
            double rate = (double)(count * 64) / (med / 1e3);

            printf("full collection, %zu live tracked objects, workers %u: median %.2f ms (%d runs), %.1f M objects/s; "
                   "collector CPU %.2f ms\n", count * 64, workers, med, runs, rate / 1e6, cpu_med);
            printf("{\"bench\":\"gc_full_pause\",\"workers\":%u,\"objects\":%zu,\"median_ms\":%.3f,\"min_ms\":%.3f,"
                   "\"max_ms\":%.3f,\"objects_per_s\":%.0f,\"runs\":%d,\"stw_pause_last_ms\":%.3f,\"cpu_median_ms\":%.3f}\n",
                   workers, count * 64, med, ms[0], ms[runs - 1], rate, runs, (double)st.pause_last_ns / 1e6, cpu_med);
        }
        drop_heap(roots, count);
    }

    /* 2. Young collections, empty old generation vs 1M old objects. */
    for (int with_old = 0; with_old < 2; with_old++) {
        size_t old_count = 0;
        void **old = NULL;
        double ms[101], cpu[101];
        intptr_t found = 0;

        if (with_old) {
            old = build_heap(1000000 < max ? 1000000 : max, &old_count);
        }
        time_collect(2, NULL); /* everything so far is old */
        for (int r = 0; r < runs; r++) {
            /* Y young objects: half live (kept in a list), half garbage cycles. */
            size_t keep_n = young / 2 / 64 ? young / 2 / 64 : 1;
            void **keep = calloc(keep_n, sizeof *keep);

            for (size_t i = 0; i < keep_n; i++)
                keep[i] = make_cycle(64);
            for (size_t i = 0; i < keep_n; i++)
                ft_decref(make_cycle(64));
            ms[r] = time_collect(0, &found);
            cpu[r] = last_cpu_ms;
            for (size_t i = 0; i < keep_n; i++)
                ft_decref(keep[i]);
            free(keep);
            time_collect(2, NULL); /* reset: the next round starts from the same old heap */
        }
        {
            double med = bench_median(ms, (size_t)runs);
            double cpu_med = bench_median(cpu, (size_t)runs);

            printf("young collection of %zu objects (%ld garbage), %zu old objects: median %.3f ms, collector CPU %.3f ms\n",
                   young, (long)found, old_count * 64, med, cpu_med);
            printf("{\"bench\":\"gc_young_pause\",\"young\":%zu,\"old\":%zu,\"median_ms\":%.4f,\"cpu_median_ms\":%.4f,"
                   "\"runs\":%d}\n", young, old_count * 64, med, cpu_med, runs);
        }
        if (with_old)
            drop_heap(old, old_count);
    }
    ft_fini();
    return 0;
}
