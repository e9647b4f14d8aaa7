/* bench_builtins.c - scaling of the builtins from 1 to 2 threads.
 *
 * Cases (each at 1 and 2 threads, median of --runs runs, throughput in
 * million operations per second summed over threads):
 *   tuple_churn      each thread creates and drops 3-tuples of its own
 *   dict_churn       each thread creates, fills (3 interned keys) and drops
 *                    dicts of its own
 *   dict_read_immortal  threads look up the same shared dict whose values are
 *                    immortal (small ints): no count is written
 *   dict_read_deferred  the same with deferred values (ft_set_deferred),
 *                    read with ft_dict_get_rooted into a local-roots slot
 *   dict_read_deferred_counted  deferred values read with ft_dict_get (a
 *                    counted reference: an atomic RMW on the shared count)
 *   dict_read_shared the same with ordinary values owned by the main thread:
 *                    every get/decref pair is two atomic RMWs on a shared
 *                    count (the cost of the atomic path)
 * The speedup is throughput(2 threads) / throughput(1 thread) by wall clock;
 * cpu_speedup = n * cpu_ns_per_op(1) / cpu_ns_per_op(n), the same ratio
 * computed from per-thread CPU time (robust to other processes sharing the
 * machine; it assumes our threads did run concurrently). Never asserts
 * on time. Above 2 threads this 2-core machine would be oversubscribed, so the
 * program stops at 2 unless --max-threads says otherwise. */
#include "bench_util.h"

#include "ft_config.h"
#include "ftrt.h"

#include <stdatomic.h>

#define NKEYS 64

typedef struct bench_case {
    const char *name;
    uint64_t ops_per_thread;
    void (*run)(uint64_t ops);
} bench_case;

static void *shared_dict;
static void *keys[NKEYS];
/* Each thread folds what it read into a local and publishes it once, so the
 * compiler keeps the work and no shared line is written in the loop. */
static _Thread_local uintptr_t sink;
static atomic_uintptr_t sink_total;

static void run_tuple_churn(uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        void *t = ft_tuple_new(3);

        ft_tuple_set(t, 0, ft_int_from_i64((int64_t)(i & 127)));
        ft_tuple_set(t, 1, ft_none());
        ft_tuple_set(t, 2, ft_true());
        sink += (uintptr_t)t;
        ft_decref(t);
        if ((i & 255) == 0)
            ft_safepoint();
    }
}

static void run_dict_churn(uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        void *d = ft_dict_new();

        ft_dict_set(d, keys[0], ft_int_from_i64(1));
        ft_dict_set(d, keys[1], ft_none());
        ft_dict_set(d, keys[2], keys[3]);
        sink += (uintptr_t)d;
        ft_decref(d);
        if ((i & 255) == 0)
            ft_safepoint();
    }
}

static void run_dict_read(uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        void *v = ft_dict_get(shared_dict, keys[i & (NKEYS - 1)]);

        sink += (uintptr_t)v;
        ft_decref(v);
        if ((i & 255) == 0)
            ft_safepoint();
    }
}

/* Readers that keep results in a local-roots slot: deferred values are not
 * counted (ft_dict_get_rooted). */
static void run_dict_read_rooted(uint64_t ops)
{
    void *slots[1] = { NULL };
    ft_roots_frame frame;

    ft_roots_push(&frame, slots, 1);
    for (uint64_t i = 0; i < ops; i++) {
        ft_dict_get_rooted(shared_dict, keys[i & (NKEYS - 1)], &slots[0]);
        sink += (uintptr_t)slots[0];
        ft_root_slot_clear(&slots[0]);
        if ((i & 255) == 0)
            ft_safepoint();
    }
    ft_roots_pop(&frame);
}

typedef struct worker {
    const bench_case *c;
    int cpu; /* pinned to it, or -1 */
    atomic_int *ready;
    atomic_int *go;
    uint64_t elapsed_ns;
    uint64_t cpu_ns; /* this thread's CPU time over the loop */
} worker;

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *p)
{
    worker *w = p;
    uint64_t t0;

    bench_pin_self(w->cpu);
    atomic_fetch_add(w->ready, 1);
    while (!atomic_load(w->go))
        ft_safepoint();
    uint64_t c0 = thread_cpu_ns();
    t0 = bench_now_ns();
    w->c->run(w->c->ops_per_thread);
    w->elapsed_ns = bench_now_ns() - t0;
    w->cpu_ns = thread_cpu_ns() - c0;
    atomic_fetch_add(&sink_total, sink);
    return NULL;
}

/* One run: million ops per second over all threads (wall clock); *cpu_ns_op
 * receives the mean CPU nanoseconds per operation of one thread, which a
 * loaded machine (other processes taking the cores) inflates far less than
 * wall time, while cache-line contention between our threads still shows. */
static int cpus[8];
static int ncpus;
static int pin = 1;

static double run_once(const bench_case *c, int nthreads, int first_cpu, double *cpu_ns_op)
{
    pthread_t threads[8];
    worker workers[8];
    atomic_int ready = 0, go = 0;
    uint64_t longest = 0;

    for (int t = 0; t < nthreads; t++) {
        workers[t] = (worker){ .c = c, .cpu = first_cpu < 0 ? -1 : cpus[(first_cpu + t) % ncpus], .ready = &ready,
                               .go = &go };
        if (ft_thread_start(&threads[t], worker_main, &workers[t]) != 0) {
            fprintf(stderr, "bench_builtins: cannot start a thread\n");
            exit(1);
        }
    }
    while (atomic_load(&ready) < nthreads)
        ft_safepoint();
    atomic_store(&go, 1);
    uint64_t cpu_total = 0;

    for (int t = 0; t < nthreads; t++) {
        ft_thread_join(threads[t], NULL);
        if (workers[t].elapsed_ns > longest)
            longest = workers[t].elapsed_ns;
        cpu_total += workers[t].cpu_ns;
    }
    *cpu_ns_op = (double)cpu_total / ((double)c->ops_per_thread * nthreads);
    return (double)c->ops_per_thread * nthreads / ((double)longest / 1e3);
}

/* One run per placement, averaged: the vCPUs of a shared VM need not be
 * equally fast (on this project's machine one ran malloc-heavy code at half
 * the other's speed for long stretches), so with fewer threads than CPUs
 * each placement (first CPU 0..c-1) is run and the throughputs averaged,
 * and the n-thread / 1-thread ratio compares the same cores. More threads
 * than CPUs, or --no-pin: unpinned. See bench/headline/headline.c. */
static double run_placed(const bench_case *c, int nthreads, double *cpu_ns_op)
{
    int k = !pin || nthreads > ncpus ? 0 : nthreads < ncpus ? ncpus : 1;
    double sum = 0, cpu_sum = 0, cpu;

    if (k == 0)
        return run_once(c, nthreads, -1, cpu_ns_op);
    for (int p = 0; p < k; p++) {
        sum += run_once(c, nthreads, p, &cpu);
        cpu_sum += cpu;
    }
    *cpu_ns_op = cpu_sum / k;
    return sum / k;
}

/* Collections of all generations so far (to show what the collector cost). */
static uint64_t gc_collections(void)
{
    uint64_t total = 0;

    for (int g = 0; g < 3; g++) {
        ft_gc_stats st;

        if (ft_gc_get_stats(g, &st) == 0)
            total += st.collections;
    }
    return total;
}

static void fill_shared_dict(const char *kind)
{
    shared_dict = ft_dict_new();
    for (int i = 0; i < NKEYS; i++) {
        void *v;

        if (strncmp(kind, "immortal", 8) == 0) {
            v = ft_int_from_i64(i);
        } else {
            v = ft_int_from_i64(1000000 + i);
            if (strncmp(kind, "deferred", 8) == 0)
                ft_set_deferred(v);
        }
        ft_dict_set(shared_dict, keys[i], v);
        ft_decref(v);
    }
}

int main(int argc, char **argv)
{
    int runs = 5;
    int max_threads = 2;
    double scale = 1.0;
    const char *only = NULL;
    char buf[32];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-threads") == 0 && i + 1 < argc)
            max_threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--no-pin") == 0)
            pin = 0;
        else {
            fprintf(stderr, "usage: %s [--runs N] [--max-threads N] [--scale X] [--case NAME] [--no-pin]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 101 || max_threads < 1 || max_threads > 8 || scale <= 0) {
        fprintf(stderr, "bench_builtins: bad arguments\n");
        return 2;
    }
    if (ft_init(NULL) != 0) {
        fprintf(stderr, "bench_builtins: ft_init failed\n");
        return 1;
    }
    bench_print_machine(stdout, "builtins", FT_CFG_BUILDTYPE);
    ncpus = bench_allowed_cpus(cpus, 8);
    if (ncpus == 0)
        pin = 0;
    printf("# %s\n", pin ? "threads pinned one per CPU; fewer threads than CPUs: averaged over placements"
                          : "threads not pinned");
    printf("# mode %s, gc %s\n", ft_mode_get() == FT_MODE_GIL ? "gil" : "free-threaded",
           ft_gc_is_enabled() ? "enabled" : "disabled");
    for (int i = 0; i < NKEYS; i++) {
        int len = snprintf(buf, sizeof buf, "key%d", i);
        keys[i] = ft_str_intern(buf, (size_t)len);
    }

    const bench_case cases[] = {
        { "tuple_churn", (uint64_t)(3e6 * scale), run_tuple_churn },
        { "dict_churn", (uint64_t)(1e6 * scale), run_dict_churn },
        { "dict_read_immortal", (uint64_t)(1e7 * scale), run_dict_read },
        { "dict_read_deferred", (uint64_t)(1e7 * scale), run_dict_read_rooted },
        { "dict_read_deferred_counted", (uint64_t)(3e6 * scale), run_dict_read },
        { "dict_read_shared", (uint64_t)(3e6 * scale), run_dict_read },
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const bench_case *c = &cases[ci];
        double base = 0;
        double base_cpu = 0;

        if (only != NULL && strcmp(only, c->name) != 0)
            continue;
        if (strncmp(c->name, "dict_read_", 10) == 0)
            fill_shared_dict(c->name + 10);
        for (int nthreads = 1; nthreads <= max_threads; nthreads++) {
            double samples[101];
            double cpu_samples[101];
            uint64_t gc_before = gc_collections();

            for (int r = 0; r < runs; r++)
                samples[r] = run_placed(c, nthreads, &cpu_samples[r]);
            uint64_t gc_runs = gc_collections() - gc_before;
            double median = bench_median(samples, (size_t)runs);
            double cpu_ns_op = bench_median(cpu_samples, (size_t)runs);
            double lo = samples[0], hi = samples[runs - 1]; /* sorted by bench_median */

            if (nthreads == 1) {
                base = median;
                base_cpu = cpu_ns_op;
            }
            printf("{\"bench\":\"builtins\",\"case\":\"%s\",\"threads\":%d,\"runs\":%d,"
                   "\"ops_per_thread\":%llu,\"median_mops\":%.3f,\"min_mops\":%.3f,"
                   "\"max_mops\":%.3f,\"speedup\":%.3f,\"cpu_ns_per_op\":%.2f,"
                   "\"cpu_speedup\":%.3f,\"gc_collections\":%llu,\"oversubscribed\":%s}\n",
                   c->name, nthreads, runs, (unsigned long long)c->ops_per_thread, median, lo, hi,
                   median / base, cpu_ns_op, nthreads * base_cpu / cpu_ns_op,
                   (unsigned long long)gc_runs,
                   nthreads > sysconf(_SC_NPROCESSORS_ONLN) ? "true" : "false");
            fflush(stdout);
        }
        if (strncmp(c->name, "dict_read_", 10) == 0) {
            ft_decref(shared_dict);
            shared_dict = NULL;
        }
    }
    printf("# checksum %lu\n", (unsigned long)atomic_load(&sink_total));
    ft_fini();
    return 0;
}
