/* headline.c - the project's main comparison: the same CPU-bound object
 * workloads in free-threaded and GIL mode, at 1 and 2 threads, in one run.
 *
 * Workloads (each thread loops, polling ft_safepoint between operations):
 *   churn        build a 3-tuple of fresh ints and drop it (allocation + RC)
 *   dict_update  set/get int keys in a dict of the thread's own
 *   shared_read  get values from one dict shared by all threads; the values
 *                are immortal (a constant table: the way to share read-mostly
 *                data), so a read writes no shared cache line
 *   shared_read_rc  the same with ordinary values owned by the main thread:
 *                every read pays the non-owner atomic count on a cache line
 *                the other core also writes (reported, not a scaling goal)
 * Both modes run in this one process: ft_init(mode) ... ft_fini() per mode.
 * Prints a table and writes JSON lines (--json) for bench/headline/plot.sh.
 * Never asserts on time. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { W_CHURN, W_DICT, W_SHARED, W_SHARED_RC, W_COUNT };
static const char *const workload_names[W_COUNT] = { "churn", "dict_update", "shared_read", "shared_read_rc" };

#define MAX_THREADS 16
#define SHARED_KEYS 1024
#define BATCH 64

typedef struct run {
    int workload;
    int nthreads;
    pthread_barrier_t start;
    _Atomic int stop;
    void *shared_dict;    /* immortal values */
    void *shared_dict_rc; /* ordinary values */
    void *shared_keys[SHARED_KEYS];
    uint64_t ops[MAX_THREADS];
} run;

typedef struct worker_arg {
    run *r;
    int id;
    int cpu; /* pinned to this CPU, or -1 */
} worker_arg;

static void churn_batch(uint64_t *counter)
{
    for (int i = 0; i < BATCH; i++) {
        void *t = ft_tuple_new(3);
        ft_tuple_set(t, 0, ft_int_from_i64(1000 + (int64_t)*counter));
        ft_tuple_set(t, 1, ft_int_from_i64(-1000 - (int64_t)*counter));
        ft_tuple_set(t, 2, ft_int_from_i64(7));
        ft_decref(t);
        (*counter)++;
        ft_safepoint();
    }
}

static void dict_batch(void *dict, uint64_t *counter)
{
    for (int i = 0; i < BATCH; i++) {
        uint64_t n = *counter;
        void *key = ft_int_from_i64(300 + (int64_t)(n & 1023));
        void *value = ft_int_from_i64((int64_t)n + 1000);
        ft_dict_set(dict, key, value);
        ft_decref(value);
        void *got = ft_dict_get(dict, key);
        ft_xdecref(got);
        ft_decref(key);
        (*counter)++;
        ft_safepoint();
    }
}

static void shared_batch(run *r, void *dict, uint64_t *counter)
{
    for (int i = 0; i < BATCH; i++) {
        uint64_t n = *counter;
        void *got = ft_dict_get(dict, r->shared_keys[(n * 7919) & (SHARED_KEYS - 1)]);
        ft_xdecref(got);
        (*counter)++;
        ft_safepoint();
    }
}

static void *worker(void *p)
{
    worker_arg *a = p;
    run *r = a->r;
    uint64_t count = 0;

    bench_pin_self(a->cpu);
    void *own_dict = r->workload == W_DICT ? ft_dict_new() : NULL;

    /* Wait for the others outside the GIL: a blocking region. */
    FT_BLOCKING(pthread_barrier_wait(&r->start));
    /* relaxed: the stop flag only ends the loop; the count is read after join. */
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        switch (r->workload) {
        case W_CHURN:
            churn_batch(&count);
            break;
        case W_DICT:
            dict_batch(own_dict, &count);
            break;
        case W_SHARED:
            shared_batch(r, r->shared_dict, &count);
            break;
        default:
            shared_batch(r, r->shared_dict_rc, &count);
            break;
        }
    }
    r->ops[a->id] = count;
    ft_xdecref(own_dict);
    return NULL;
}

/* CPUs the workers are pinned to (see placements()). */
static int cpus[MAX_THREADS];
static int ncpus;
static int pin = 1;

static double measure_at(run *r, double seconds, int first_cpu)
{
    pthread_t threads[MAX_THREADS];
    worker_arg args[MAX_THREADS];
    uint64_t t0, t1, total = 0;

    atomic_store_explicit(&r->stop, 0, memory_order_relaxed);
    pthread_barrier_init(&r->start, NULL, (unsigned)r->nthreads + 1);
    for (int i = 0; i < r->nthreads; i++) {
        args[i] = (worker_arg){ r, i, first_cpu < 0 ? -1 : cpus[(first_cpu + i) % ncpus] };
        if (ft_thread_start(&threads[i], worker, &args[i]) != 0) {
            fprintf(stderr, "headline: cannot start thread\n");
            exit(1);
        }
    }
    ft_blocking_begin();
    pthread_barrier_wait(&r->start);
    t0 = bench_now_ns();
    struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    nanosleep(&ts, NULL);
    /* relaxed: see worker(). */
    atomic_store_explicit(&r->stop, 1, memory_order_relaxed);
    ft_blocking_end();
    for (int i = 0; i < r->nthreads; i++)
        ft_thread_join(threads[i], NULL);
    t1 = bench_now_ns();
    pthread_barrier_destroy(&r->start);
    for (int i = 0; i < r->nthreads; i++)
        total += r->ops[i];
    return (double)total / ((double)(t1 - t0) / 1e9);
}

/* The cores of a shared VM need not be equally fast: on this project's
 * machine one vCPU ran malloc-heavy code at half the speed of the other for
 * long stretches (a busy neighbour on its host core), and a 1-thread cell
 * landed on either. So with n threads on c >= n allowed CPUs, workers are
 * pinned and the cell is measured once per placement (first CPU 0..c-1 when
 * n < c), each for seconds / placements, and the throughputs averaged: the
 * n-thread / 1-thread ratio then compares the same cores. With more threads
 * than CPUs, or --no-pin, threads run where the scheduler puts them. */
static int placements(int nthreads)
{
    if (!pin || nthreads > ncpus)
        return 0;
    return nthreads < ncpus ? ncpus : 1;
}

static double measure(run *r, double seconds)
{
    int k = placements(r->nthreads);
    double sum = 0;

    if (k == 0)
        return measure_at(r, seconds, -1);
    for (int p = 0; p < k; p++)
        sum += measure_at(r, seconds / k, p);
    return sum / k;
}

/* The machine's own ceiling: plain pthreads (not attached, no ftrt call).
 * "alu" only computes (a dependent xorshift chain); "malloc" churns small
 * glibc malloc/free pairs over a private 256 KiB working set, closer to what
 * the object workloads ask of caches and memory. On a shared VM the host may
 * give two vCPUs less than two cores' worth; the object workloads' scaling
 * is read against these. Placement as in measure(). */
enum { PROBE_ALU, PROBE_MALLOC, PROBE_COUNT };
static const char *const probe_names[PROBE_COUNT] = { "alu", "malloc" };

typedef struct ceiling_arg {
    _Atomic int *stop;
    int probe;
    int cpu;
    uint64_t count;
} ceiling_arg;

static void *ceiling_worker(void *p)
{
    ceiling_arg *a = p;
    uint64_t n = 0, x = 88172645463325252u;
    enum { SLOTS = 8192 };
    void **slots = NULL;

    bench_pin_self(a->cpu);
    if (a->probe == PROBE_MALLOC) {
        slots = malloc(SLOTS * sizeof *slots);
        for (int i = 0; slots != NULL && i < SLOTS; i++)
            slots[i] = malloc(32);
        if (slots == NULL)
            return NULL;
    }
    /* relaxed: the flag only ends the loop; the count is read after join. */
    while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
        for (int i = 0; i < 1024; i++) { /* xorshift */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (slots != NULL) {
                void **s = &slots[x % SLOTS];
                free(*s);
                *s = malloc(32);
                memset(*s, (int)(x & 0xff), 32);
            }
        }
        n += 1024;
    }
    if (slots != NULL) {
        for (int i = 0; i < SLOTS; i++)
            free(slots[i]);
        free(slots);
    }
    a->count = n + (x & 1);
    return NULL;
}

static double measure_ceiling_at(int probe, int nthreads, double seconds, int first_cpu)
{
    pthread_t threads[MAX_THREADS];
    ceiling_arg args[MAX_THREADS];
    _Atomic int stop = 0;
    uint64_t total = 0;
    uint64_t t0 = bench_now_ns();

    for (int i = 0; i < nthreads; i++) {
        args[i] = (ceiling_arg){ &stop, probe, first_cpu < 0 ? -1 : cpus[(first_cpu + i) % ncpus], 0 };
        if (pthread_create(&threads[i], NULL, ceiling_worker, &args[i]) != 0) {
            fprintf(stderr, "headline: cannot start thread\n");
            exit(1);
        }
    }
    struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    nanosleep(&ts, NULL);
    /* relaxed: see ceiling_worker(). */
    atomic_store_explicit(&stop, 1, memory_order_relaxed);
    for (int i = 0; i < nthreads; i++) {
        pthread_join(threads[i], NULL);
        total += args[i].count;
    }
    return (double)total / ((double)(bench_now_ns() - t0) / 1e9);
}

static double measure_ceiling(int probe, int nthreads, double seconds)
{
    int k = placements(nthreads);
    double sum = 0;

    if (k == 0)
        return measure_ceiling_at(probe, nthreads, seconds, -1);
    for (int p = 0; p < k; p++)
        sum += measure_ceiling_at(probe, nthreads, seconds / k, p);
    return sum / k;
}

/* Collections of every generation so far (the cost the collector adds). */
static uint64_t collections(void)
{
    uint64_t total = 0;
    for (int gen = 0; gen < 3; gen++) {
        ft_gc_stats st;
        if (ft_gc_get_stats(gen, &st) == 0)
            total += st.collections;
    }
    return total;
}

/* Total collection pause time so far, every generation (ns). */
static uint64_t gc_pause_ns(void)
{
    uint64_t total = 0;
    for (int gen = 0; gen < 3; gen++) {
        ft_gc_stats st;
        if (ft_gc_get_stats(gen, &st) == 0)
            total += st.pause_total_ns;
    }
    return total;
}

/* Median over reps of num[rep] / den[rep]: the cells of one rep run one
 * after the other, so each ratio compares measurements seconds apart, and a
 * drift of the host between reps cancels out (a ratio of medians does not). */
static double rep_ratio(const double *num, const double *den, int reps)
{
    double r[64];

    for (int i = 0; i < reps; i++)
        r[i] = den[i] > 0 ? num[i] / den[i] : 0;
    return bench_median(r, (size_t)reps);
}

/* bench_median sorts in place; the per-rep order is needed by rep_ratio. */
static double median_of(const double *v, int n)
{
    double copy[64];

    memcpy(copy, v, (size_t)n * sizeof *v);
    return bench_median(copy, (size_t)n);
}

/* A JSON number with 3 decimals, or null when x is not finite. */
static void json_number(char *buf, size_t size, double x)
{
    if (isfinite(x) && x != 0)
        snprintf(buf, size, "%.3f", x);
    else
        snprintf(buf, size, "null");
}

static void usage(void)
{
    fprintf(stderr, "usage: headline [--seconds S] [--reps N] [--threads 1,2] [--only WORKLOAD] [--mode ft|gil] [--json FILE] [--dat FILE] [--no-pin]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    int reps = 5;
    int thread_counts[8] = { 1, 2 };
    int nthread_counts = 2;
    const char *json_path = NULL;
    const char *dat_path = NULL;
    const char *only = NULL;
    int mode_first = 0, mode_last = 1;
    FILE *json = NULL;
    /* [mode][workload][thread-count index] = median ops/s */
    static double result[2][W_COUNT][8];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "ft") == 0)
                mode_last = 0;
            else if (strcmp(argv[i], "gil") == 0)
                mode_first = 1;
            else
                usage();
        } else if (strcmp(argv[i], "--no-pin") == 0) {
            pin = 0;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--dat") == 0 && i + 1 < argc) {
            dat_path = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *list = argv[++i], *save = NULL;
            nthread_counts = 0;
            for (char *tok = strtok_r(list, ",", &save); tok != NULL && nthread_counts < 8;
                 tok = strtok_r(NULL, ",", &save)) {
                int n = atoi(tok);
                if (n < 1 || n > MAX_THREADS)
                    usage();
                thread_counts[nthread_counts++] = n;
            }
        } else {
            usage();
        }
    }
    if (seconds <= 0 || reps < 1 || nthread_counts == 0)
        usage();
    if (json_path != NULL && (json = fopen(json_path, "w")) == NULL) {
        fprintf(stderr, "headline: cannot write %s: %s\n", json_path, strerror(errno));
        return 1;
    }
    bench_print_machine(json, "headline", FT_CFG_BUILDTYPE);
    ncpus = bench_allowed_cpus(cpus, MAX_THREADS);
    if (ncpus == 0)
        pin = 0;
    if (pin)
        printf("# workers pinned, one per CPU; cells with fewer threads than the %d CPUs are averaged over placements\n",
               ncpus);
    printf("# %d reps of %.2f s per cell, median reported; above %ld threads the machine is oversubscribed\n",
           reps, seconds, sysconf(_SC_NPROCESSORS_ONLN));

    /* Modes alternate within each repetition (ft_init/ft_fini per mode), so
     * that drift of the machine (frequency, neighbours) hits both alike; one
     * short warm-up pass per mode is discarded. */
    static double samples[2][W_COUNT][8][64];
    static double ceiling[PROBE_COUNT][8][64];
    if (reps > 64)
        reps = 64;
    for (int rep = -1; rep < reps; rep++) {
        for (int probe = 0; probe < PROBE_COUNT; probe++) {
            for (int t = 0; t < nthread_counts && rep >= 0; t++) {
                ceiling[probe][t][rep] = measure_ceiling(probe, thread_counts[t], seconds / 4);
                if (json != NULL)
                    fprintf(json,
                            "{\"bench\":\"headline\",\"kind\":\"ceiling\",\"probe\":\"%s\",\"threads\":%d,"
                            "\"rep\":%d,\"ops_per_s\":%.0f}\n",
                            probe_names[probe], thread_counts[t], rep, ceiling[probe][t][rep]);
            }
        }
        for (int mode = mode_first; mode <= mode_last; mode++) {
            ft_config cfg;
            run *r = calloc(1, sizeof *r);

            ft_config_default(&cfg);
            cfg.mode = mode == 0 ? FT_MODE_FREE_THREADED : FT_MODE_GIL;
            if (r == NULL || ft_init(&cfg) != 0) {
                fprintf(stderr, "headline: ft_init failed\n");
                return 1;
            }
            r->shared_dict = ft_dict_new();
            r->shared_dict_rc = ft_dict_new();
            for (int k = 0; k < SHARED_KEYS; k++) {
                char name[32];
                int len = snprintf(name, sizeof name, "key-%d", k);
                r->shared_keys[k] = ft_str_from(name, (size_t)len);
                void *value = ft_int_from_i64(100000 + k);
                ft_dict_set(r->shared_dict_rc, r->shared_keys[k], value);
                ft_decref(value);
                value = ft_int_from_i64(200000 + k);
                ft_set_immortal(value);
                ft_dict_set(r->shared_dict, r->shared_keys[k], value);
            }
            for (int w = 0; w < W_COUNT; w++) {
                if (only != NULL && strcmp(only, workload_names[w]) != 0)
                    continue;
                for (int t = 0; t < nthread_counts; t++) {
                    r->workload = w;
                    r->nthreads = thread_counts[t];
                    uint64_t gc_before = collections(), pause_before = gc_pause_ns();
                    double ops = measure(r, rep < 0 ? seconds / 4 : seconds);
                    uint64_t gc_runs = collections() - gc_before;
                    uint64_t gc_pause = gc_pause_ns() - pause_before;
                    if (rep < 0)
                        continue;
                    samples[mode][w][t][rep] = ops;
                    if (json != NULL)
                        fprintf(json,
                                "{\"bench\":\"headline\",\"mode\":\"%s\",\"workload\":\"%s\",\"threads\":%d,"
                                "\"rep\":%d,\"ops_per_s\":%.0f,\"collections\":%llu,\"gc_pause_ms\":%.3f}\n",
                                mode == 0 ? "free-threaded" : "gil", workload_names[w], r->nthreads, rep, ops,
                                (unsigned long long)gc_runs, (double)gc_pause / 1e6);
                }
            }
            for (int k = 0; k < SHARED_KEYS; k++)
                ft_decref(r->shared_keys[k]);
            ft_decref(r->shared_dict);
            ft_decref(r->shared_dict_rc);
            ft_fini();
            free(r);
        }
    }
    for (int mode = 0; mode < 2; mode++)
        for (int w = 0; w < W_COUNT; w++)
            for (int t = 0; t < nthread_counts; t++)
                result[mode][w][t] = median_of(samples[mode][w][t], reps);

    /* FT/GIL, like the scaling below, is the median of each rep's own ratio:
     * the two modes' cells of one rep run seconds apart. */
    printf("\n%-15s %7s %16s %16s %8s\n", "workload", "threads", "free-threaded/s", "GIL/s", "FT/GIL");
    printf("(ops/s: medians over reps; FT/GIL: median of each rep's ratio)\n");
    for (int w = 0; w < W_COUNT; w++)
        for (int t = 0; t < nthread_counts && (only == NULL || strcmp(only, workload_names[w]) == 0); t++)
        {
            char ratio[16] = "-"; /* "-": a mode left out by --mode */
            if (result[0][w][t] > 0 && result[1][w][t] > 0)
                snprintf(ratio, sizeof ratio, "%.2fx", rep_ratio(samples[0][w][t], samples[1][w][t], reps));
            printf("%-15s %7d %16.0f %16.0f %8s\n", workload_names[w], thread_counts[t], result[0][w][t],
                   result[1][w][t], ratio);
        }
    printf("\nmachine ceiling: plain threads without ftrt, scaling vs 1 thread\n");
    for (int probe = 0; probe < PROBE_COUNT; probe++) {
        printf("  %-7s", probe_names[probe]);
        for (int t = 0; t < nthread_counts; t++) {
            double c = rep_ratio(ceiling[probe][t], ceiling[probe][0], reps);
            printf(" %dT %.2fx", thread_counts[t], c);
            if (json != NULL)
                fprintf(json,
                        "{\"bench\":\"headline\",\"kind\":\"ceiling_summary\",\"probe\":\"%s\",\"threads\":%d,"
                        "\"scaling\":%.3f}\n",
                        probe_names[probe], thread_counts[t], c);
        }
        printf("\n");
    }
    printf("(below 2.0x at 2 threads: the host gave this VM less than two cores' worth while it ran)\n");
    printf("\nscaling vs 1 thread, median of each rep's ratio (goals at 2 threads: free-threaded >= 1.9x,\n"
           "GIL <= 1.05x)\n");
    printf("%-15s %7s %14s %10s\n", "workload", "threads", "free-threaded", "GIL");
    for (int w = 0; w < W_COUNT; w++) {
        for (int t = 0; t < nthread_counts && (only == NULL || strcmp(only, workload_names[w]) == 0); t++) {
            double ft = rep_ratio(samples[0][w][t], samples[0][w][0], reps);
            double gil = rep_ratio(samples[1][w][t], samples[1][w][0], reps);
            char ft_txt[16] = "-", gil_txt[16] = "-"; /* "-": mode left out by --mode */
            if (ft > 0)
                snprintf(ft_txt, sizeof ft_txt, "%.2fx", ft);
            if (gil > 0)
                snprintf(gil_txt, sizeof gil_txt, "%.2fx", gil);
            printf("%-15s %7d %14s %10s\n", workload_names[w], thread_counts[t], ft_txt, gil_txt);
            if (json != NULL) {
                /* a mode left out by --mode has no figures: null, not nan/inf */
                char ft_s[32], gil_s[32], ratio_s[32];
                json_number(ft_s, sizeof ft_s, ft);
                json_number(gil_s, sizeof gil_s, gil);
                json_number(ratio_s, sizeof ratio_s,
                            result[0][w][t] > 0 && result[1][w][t] > 0
                                ? rep_ratio(samples[0][w][t], samples[1][w][t], reps)
                                : 0);
                fprintf(json,
                        "{\"bench\":\"headline\",\"kind\":\"summary\",\"workload\":\"%s\",\"threads\":%d,"
                        "\"ft_ops_per_s\":%.0f,\"gil_ops_per_s\":%.0f,\"ft_scaling\":%s,\"gil_scaling\":%s,"
                        "\"ft_over_gil\":%s}\n",
                        workload_names[w], thread_counts[t], result[0][w][t], result[1][w][t], ft_s, gil_s,
                        ratio_s);
            }
        }
    }
    if (json != NULL)
        fclose(json);
    if (dat_path != NULL) {
        /* gnuplot input for bench/headline/plot.gp: one row per cell. */
        FILE *dat = fopen(dat_path, "w");
        if (dat == NULL) {
            fprintf(stderr, "headline: cannot write %s: %s\n", dat_path, strerror(errno));
            return 1;
        }
        fprintf(dat, "# label free_threaded_mops gil_mops\n");
        for (int w = 0; w < W_COUNT; w++)
            for (int t = 0; t < nthread_counts && (only == NULL || strcmp(only, workload_names[w]) == 0); t++)
                fprintf(dat, "\"%s %dT\" %.4f %.4f\n", workload_names[w], thread_counts[t],
                        result[0][w][t] / 1e6, result[1][w][t] / 1e6);
        fclose(dat);
    }
    return 0;
}
