/* bench_free_paths.c - 2-thread scaling of the ways an object can die.
 *
 * Each variant runs at 1 thread (once pinned to each of the first two CPUs,
 * averaged) and at 2 threads (pinned one per CPU); the ratio reported is the
 * median over --reps of 2T / mean(1T). Variants, per operation:
 *   free_now       make an int (not in a container) and drop it: the owner's
 *                  CAS-free death, the block reused at once
 *   free_marked    the same int marked shared-read first (as a container
 *                  marks what it stores): it dies through the merge CAS.
 *                  Until session 3 it also waited for a QSBR grace period
 *                  on a per-thread delayed list ("free_marked"); objects
 *                  are freed at once now (type-stable memory)
 *   dict_immortal  set and get an int key in an own dict whose values are
 *                  immortal (no value is made or freed)
 *   dict_update    the headline's dict_update: a fresh value replaces the old
 *                  one, a marked object, which dies
 * It separates the cost of a marked object's death from the dict's own work.
 * Never asserts on time. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt.h"

#include <stdatomic.h>

enum { V_FREE_NOW, V_FREE_MARKED, V_DICT_IMMORTAL, V_DICT_UPDATE, V_COUNT };
static const char *const names[V_COUNT] = { "free_now", "free_marked", "dict_immortal", "dict_update" };

static _Atomic int stop;
static int variant;
static void *immortal_values[1024];
static int cpus[2];
static int ncpus;

typedef struct worker_arg {
    int cpu;
    uint64_t ops;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    void *d = ft_dict_new();
    uint64_t n = 0;

    bench_pin_self(a->cpu);
    /* relaxed: the flag only ends the loop; the count is read after join. */
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++, n++) {
            if (variant == V_FREE_NOW || variant == V_FREE_MARKED) {
                void *v = ft_int_from_i64((int64_t)n + 1000);
                if (variant == V_FREE_MARKED)
                    ft_set_shared_read(v);
                ft_decref(v);
                continue;
            }
            void *key = ft_int_from_i64(300 + (int64_t)(n & 1023));
            if (variant == V_DICT_IMMORTAL) {
                ft_dict_set(d, key, immortal_values[n & 1023]);
            } else {
                void *v = ft_int_from_i64((int64_t)n + 1000);
                ft_dict_set(d, key, v);
                ft_decref(v);
            }
            ft_xdecref(ft_dict_get(d, key));
            ft_decref(key);
            ft_safepoint();
        }
        ft_safepoint();
    }
    a->ops = n;
    ft_decref(d);
    return NULL;
}

static double run(int nthreads, int first_cpu, double seconds)
{
    pthread_t t[2];
    worker_arg args[2];
    uint64_t total = 0, t0 = bench_now_ns();

    atomic_store(&stop, 0);
    for (int i = 0; i < nthreads; i++) {
        args[i] = (worker_arg){ ncpus >= 2 ? cpus[(first_cpu + i) % 2] : -1, 0 };
        if (ft_thread_start(&t[i], worker, &args[i]) != 0) {
            fprintf(stderr, "bench_free_paths: cannot start a thread\n");
            exit(1);
        }
    }
    ft_blocking_begin();
    struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    ft_blocking_end();
    for (int i = 0; i < nthreads; i++) {
        ft_thread_join(t[i], NULL);
        total += args[i].ops;
    }
    return (double)total / ((double)(bench_now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    int reps = 5;
    double seconds = 0.5;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_free_paths [--reps N] [--seconds S]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 64 || seconds <= 0 || ft_init(NULL) != 0)
        return 2;
    bench_print_machine(stdout, "object_free_paths", FT_CFG_BUILDTYPE);
    ncpus = bench_allowed_cpus(cpus, 2);
    for (int i = 0; i < 1024; i++) {
        immortal_values[i] = ft_int_from_i64(5000 + i);
        ft_set_immortal(immortal_values[i]);
    }
    for (int v = 0; v < V_COUNT; v++) {
        double ratio[64], one[64], two[64];

        variant = v;
        for (int r = 0; r < reps; r++) {
            double a = run(1, 0, seconds / 2), b = run(1, 1, seconds / 2);
            two[r] = run(2, 0, seconds);
            one[r] = (a + b) / 2;
            ratio[r] = two[r] / one[r];
        }
        double m1 = bench_median(one, (size_t)reps), m2 = bench_median(two, (size_t)reps);
        double mr = bench_median(ratio, (size_t)reps);
        printf("%-14s 1T %7.2f M/s  2T %7.2f M/s  2T/1T %.2fx\n", names[v], m1 / 1e6, m2 / 1e6, mr);
        printf("{\"bench\":\"object_free_paths\",\"variant\":\"%s\",\"one_thread_per_s\":%.0f,"
               "\"two_threads_per_s\":%.0f,\"scaling\":%.3f,\"reps\":%d}\n",
               names[v], m1, m2, mr, reps);
    }
    ft_fini();
    return 0;
}
