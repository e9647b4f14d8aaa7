/* bintrees.c - the binary-trees benchmark (Computer Language Benchmarks Game
 * shape) on three memory managers, compiled once per manager:
 *   BT_IMPL_FTRT    ftrt objects (refcounting + the cycle collector running
 *                   automatically), 2 attached threads
 *   BT_IMPL_BOEHM   Boehm GC (GC_MALLOC, threads registered), 2 threads
 *   BT_IMPL_MALLOC  malloc/free, 2 threads
 * A long-lived tree of max depth stays alive; short-lived trees of depths
 * 4..max step 2 are built and checked, their iterations split between the
 * threads. Prints time, peak RSS and (ftrt) GC pause percentiles; one JSON
 * line with the results. bench/gc/run.sh runs all three and prints ratios.
 *     bintrees_<impl> [max_depth]   (default 16) */
#include "bench_util.h"

#include "ft_config.h"

#include <inttypes.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdint.h>

#if defined(BT_IMPL_BOEHM)
#define GC_THREADS 1
#include <gc.h>
#define IMPL_NAME "boehm"
#elif defined(BT_IMPL_FTRT)
#include <ftrt/gc.h>
#include <ftrt/object.h>
#include <ftrt/runtime.h>
#include <ftrt/thread.h>
#define IMPL_NAME "ftrt"
#else
#define IMPL_NAME "malloc"
#endif

typedef struct tnode {
#if defined(BT_IMPL_FTRT)
    ft_object ob;
#endif
    struct tnode *left, *right;
} tnode;

#if defined(BT_IMPL_FTRT)
static int tnode_traverse(void *self, ft_visit_fn visit, void *arg)
{
    tnode *n = self;
    int rc = 0;

    if (n->left != NULL && (rc = visit(n->left, arg)) != 0)
        return rc;
    if (n->right != NULL)
        rc = visit(n->right, arg);
    return rc;
}

static void tnode_clear(void *self)
{
    tnode *n = self;
    tnode *l = n->left, *r = n->right;

    n->left = n->right = NULL;
    if (l != NULL)
        ft_decref(l);
    if (r != NULL)
        ft_decref(r);
}

static const ft_type tnode_type = {
    .name = "bintrees.node",
    .size = sizeof(tnode),
    .flags = FT_TYPE_GC,
    .traverse = tnode_traverse,
    .clear = tnode_clear,
};
#endif

static tnode *node_alloc(void)
{
#if defined(BT_IMPL_FTRT)
    return ft_new(&tnode_type); /* fields zeroed */
#elif defined(BT_IMPL_BOEHM)
    return GC_MALLOC(sizeof(tnode));
#else
    return calloc(1, sizeof(tnode));
#endif
}

static void tree_free(tnode *t)
{
#if defined(BT_IMPL_FTRT)
    ft_decref(t); /* the runtime frees the tree without recursing */
#elif defined(BT_IMPL_BOEHM)
    (void)t; /* the collector finds it */
#else
    if (t->left != NULL) {
        tree_free(t->left);
        tree_free(t->right);
    }
    free(t);
#endif
}

static tnode *bottom_up(int depth)
{
    tnode *n = node_alloc();

    if (n == NULL) {
        fprintf(stderr, "bintrees: out of memory\n");
        exit(1);
    }
    if (depth > 0) {
        n->left = bottom_up(depth - 1);
        n->right = bottom_up(depth - 1);
    }
#if defined(BT_IMPL_FTRT)
    /* A program's loops poll safepoints (as an interpreter's eval loop
     * does); without this, a stop-the-world waits for a whole tree. */
    ft_safepoint();
#endif
    return n;
}

static long check(const tnode *t)
{
    return t->left == NULL ? 1 : 1 + check(t->left) + check(t->right);
}

typedef struct work {
    int depth;
    long iterations;
    long checksum;
} work;

static void *worker(void *arg)
{
    work *w = arg;

    for (long i = 0; i < w->iterations; i++) {
        tnode *t = bottom_up(w->depth);

        w->checksum += check(t);
        tree_free(t);
#if defined(BT_IMPL_FTRT)
        ft_safepoint();
#endif
    }
    return NULL;
}

static int start_thread(pthread_t *t, work *w)
{
#if defined(BT_IMPL_FTRT)
    return ft_thread_start(t, worker, w);
#else
    return pthread_create(t, NULL, worker, w);
#endif
}

static int join_thread(pthread_t t)
{
#if defined(BT_IMPL_FTRT)
    return ft_thread_join(t, NULL);
#else
    return pthread_join(t, NULL);
#endif
}

int main(int argc, char **argv)
{
    int max_depth = argc > 1 ? atoi(argv[1]) : 16;
    int min_depth = 4;
    uint64_t t0;
    double secs, cpu_secs;
    long total_check = 0;
    tnode *long_lived;

    if (max_depth < min_depth + 2)
        max_depth = min_depth + 2;
#if defined(BT_IMPL_BOEHM)
    GC_INIT();
    GC_allow_register_threads();
#elif defined(BT_IMPL_FTRT)
    if (ft_init(NULL) != 0)
        return 1;
    ft_thread_reset_pause_stats();
#endif
    bench_print_machine(stdout, "bintrees_" IMPL_NAME, FT_CFG_BUILDTYPE);
    t0 = bench_now_ns();
    {
        tnode *stretch = bottom_up(max_depth + 1);

        total_check += check(stretch);
        tree_free(stretch);
    }
    long_lived = bottom_up(max_depth);
    for (int d = min_depth; d <= max_depth; d += 2) {
        long iterations = 1L << (max_depth - d + min_depth);
        work w[2] = { { d, iterations / 2, 0 }, { d, iterations - iterations / 2, 0 } };
        pthread_t th[2];

        for (int i = 0; i < 2; i++)
            if (start_thread(&th[i], &w[i]) != 0)
                return 1;
        for (int i = 0; i < 2; i++)
            join_thread(th[i]);
        total_check += w[0].checksum + w[1].checksum;
    }
    total_check += check(long_lived);
    tree_free(long_lived);
    secs = (double)(bench_now_ns() - t0) / 1e9;
    {
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        cpu_secs = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec
                   + (double)ru.ru_stime.tv_usec / 1e6;
    }

    printf("bintrees %s depth %d: %.3f s, CPU %.3f s, peak RSS %ld KiB, check %ld\n", IMPL_NAME, max_depth, secs,
           cpu_secs, bench_peak_rss_kib(), total_check);
#if defined(BT_IMPL_FTRT)
    {
        ft_pause_stats stop;
        ft_gc_stats g0, g2;

        ft_pause_stats tts;

        ft_thread_get_pause_stats(&tts, &stop);
        ft_gc_get_stats(0, &g0);
        ft_gc_get_stats(2, &g2);
        printf("ftrt pauses: %" PRIu64 " stop-the-worlds, p50 %.3f ms, p99 %.3f ms, max %.3f ms, total %.1f ms "
               "(%.2f%% of run); collections gen0 %" PRIu64 " full %" PRIu64 "\n",
               stop.count, (double)ft_pause_stats_percentile(&stop, 50) / 1e6,
               (double)ft_pause_stats_percentile(&stop, 99) / 1e6, (double)stop.max_ns / 1e6,
               (double)stop.total_ns / 1e6, 100.0 * (double)stop.total_ns / 1e9 / secs, g0.collections,
               g2.collections);
        printf("ftrt time-to-safepoint: p50 %.3f ms, p99 %.3f ms, max %.3f ms; gc pause max young %.3f ms, "
               "full %.3f ms; gc pause total young %.1f ms, full %.1f ms\n",
               (double)ft_pause_stats_percentile(&tts, 50) / 1e6, (double)ft_pause_stats_percentile(&tts, 99) / 1e6,
               (double)tts.max_ns / 1e6, (double)g0.pause_max_ns / 1e6, (double)g2.pause_max_ns / 1e6,
               (double)g0.pause_total_ns / 1e6, (double)g2.pause_total_ns / 1e6);
        printf("{\"bench\":\"bintrees\",\"impl\":\"%s\",\"depth\":%d,\"seconds\":%.4f,\"cpu_seconds\":%.4f,\"peak_rss_kib\":%ld,"
               "\"pauses\":%" PRIu64 ",\"pause_p50_ms\":%.4f,\"pause_p99_ms\":%.4f,\"pause_max_ms\":%.4f,"
               "\"gc_young\":%" PRIu64 ",\"gc_full\":%" PRIu64 "}\n",
               IMPL_NAME, max_depth, secs, cpu_secs, bench_peak_rss_kib(), stop.count,
               (double)ft_pause_stats_percentile(&stop, 50) / 1e6,
               (double)ft_pause_stats_percentile(&stop, 99) / 1e6, (double)stop.max_ns / 1e6, g0.collections,
               g2.collections);
        ft_fini();
    }
#else
    printf("{\"bench\":\"bintrees\",\"impl\":\"%s\",\"depth\":%d,\"seconds\":%.4f,\"cpu_seconds\":%.4f,\"peak_rss_kib\":%ld}\n",
           IMPL_NAME, max_depth, secs, cpu_secs, bench_peak_rss_kib());
#endif
    return 0;
}
