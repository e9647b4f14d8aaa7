/* bench_alloc_threads.c - 1 vs 2 threads (and more, oversubscribed on a
 * 2-core machine), each creating and dropping small objects of its own:
 * a node holding a child (two objects per iteration), marked with
 * ft_set_shared_read (as a container marks what it stores: deaths decide
 * with a CAS) and unmarked (the owner's fast death, no atomic).
 * Prints ops/s per thread count, the speedup over one thread, medians of 5
 * runs, JSON lines. Never asserts on time. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct small_node {
    ft_object ob;
    void *child;
} small_node;

static int small_traverse(void *self, ft_visit_fn visit, void *arg)
{
    small_node *n = self;
    return n->child != NULL ? visit(n->child, arg) : 0;
}

static const ft_type marked_type = {
    .name = "small_node", .size = sizeof(small_node), .traverse = small_traverse,
};
static const ft_type plain_type = {
    .name = "small_node_plain", .size = sizeof(small_node), .traverse = small_traverse,
};

typedef struct worker_arg {
    const ft_type *type;
    long iterations;
    _Atomic int *go;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *a = arg;
    while (!atomic_load_explicit(a->go, memory_order_acquire))
        ft_safepoint();
    for (long i = 0; i < a->iterations; i++) {
        small_node *leaf = ft_new(a->type);
        small_node *n = ft_new(a->type);
        if (a->type == &marked_type) {
            /* as if published to lock-free readers */
            ft_set_shared_read(leaf);
            ft_set_shared_read(n);
        }
        n->child = leaf;
        ft_decref(n);
        if ((i & 63) == 0)
            ft_safepoint();
    }
    return NULL;
}

/* The machine's own ceiling: threads that share nothing and only compute.
 * On a VM whose two vCPUs share one physical core this is ~1x, and no
 * allocator can beat it; the object results are read against it. */
static void *spin(void *arg)
{
    volatile uint64_t sink = 0;
    for (long i = 0; i < *(long *)arg; i++)
        sink += (uint64_t)i;
    return NULL;
}

static double spin_speedup(int threads)
{
    long n = 100000000;
    double secs[2];
    for (int k = 0; k < 2; k++) {
        int count = k == 0 ? 1 : threads;
        pthread_t tid[16];
        uint64_t t0 = bench_now_ns();
        for (int i = 0; i < count; i++)
            pthread_create(&tid[i], NULL, spin, &n);
        for (int i = 0; i < count; i++)
            pthread_join(tid[i], NULL);
        secs[k] = (double)(bench_now_ns() - t0) / 1e9;
    }
    return (double)threads * secs[0] / secs[1];
}

/* Seconds for `threads` threads each running `iterations`. */
static double run(const ft_type *t, int threads, long iterations)
{
    pthread_t tid[16];
    worker_arg args[16];
    _Atomic int go = 0;
    for (int i = 0; i < threads; i++) {
        args[i] = (worker_arg){ t, iterations, &go };
        ft_thread_start(&tid[i], worker, &args[i]);
    }
    uint64_t t0 = bench_now_ns();
    atomic_store_explicit(&go, 1, memory_order_release);
    for (int i = 0; i < threads; i++)
        ft_thread_join(tid[i], NULL);
    return (double)(bench_now_ns() - t0) / 1e9;
}

int main(int argc, char **argv)
{
    long iterations = 2000000;
    int max_threads = 4;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0)
            iterations = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--max-threads") == 0)
            max_threads = atoi(argv[i + 1]);
    }
    if (max_threads > 16)
        max_threads = 16;
    ft_config cfg;
    ft_config_default(&cfg);
    cfg.gc_enabled = false; /* non-GC types anyway; no collector pauses */
    if (ft_init(&cfg) != 0)
        return 1;
    bench_print_machine(stdout, "object_alloc_threads", FT_CFG_BUILDTYPE);
    printf("# qsbr_budget_bytes %zu (FTRT_QSBR_BUDGET)\n", ft_config_get()->qsbr_budget_bytes);
    printf("{\"bench\":\"object_alloc_threads\",\"kind\":\"config\",\"qsbr_budget_bytes\":%zu}\n",
           ft_config_get()->qsbr_budget_bytes);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ft_blocking_begin(); /* the spinning threads are not ours */
    for (int threads = 2; threads <= max_threads; threads *= 2) {
        double samples[3];
        for (int r = 0; r < 3; r++)
            samples[r] = spin_speedup(threads);
        double ceiling = bench_median(samples, 3);
        printf("machine ceiling (pure compute) threads=%d  speedup %.2fx\n", threads, ceiling);
        printf("{\"bench\":\"object_alloc_threads\",\"free\":\"none_compute_only\",\"threads\":%d,"
               "\"speedup\":%.3f}\n", threads, ceiling);
    }
    ft_blocking_end();
    const ft_type *types[2] = { &marked_type, &plain_type };
    const char *names[2] = { "marked", "unmarked" };
    for (int k = 0; k < 2; k++) {
        double base = 0;
        for (int threads = 1; threads <= max_threads; threads *= 2) {
            double samples[5];
            for (int r = 0; r < 5; r++) {
                double secs = run(types[k], threads, iterations);
                samples[r] = (double)threads * (double)iterations * 2.0 / secs; /* objects per second */
            }
            double ops = bench_median(samples, 5);
            if (threads == 1)
                base = ops;
            printf("%-13s threads=%d  %.1f Mobj/s  speedup %.2fx%s\n", names[k], threads, ops / 1e6, ops / base,
                   threads > cores ? "  (oversubscribed)" : "");
            printf("{\"bench\":\"object_alloc_threads\",\"free\":\"%s\",\"threads\":%d,\"objects_per_s\":%.0f,"
                   "\"speedup\":%.3f,\"oversubscribed\":%s}\n",
                   names[k], threads, ops, ops / base, threads > cores ? "true" : "false");
        }
    }
    ft_fini();
    return 0;
}
