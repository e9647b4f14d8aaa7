/* bench_safepoint.c - time to safepoint: from ft_stop_the_world() being
 * called until every other attached thread is parked, with N = 1, 2, 4, 8
 * threads spinning on ft_safepoint() (plus the requester). Median and p99
 * over many stops, per run; several runs, the median of each statistic is
 * reported. Also the stop duration of an empty stop (request to restart).
 *
 *   bench_safepoint [--runs R] [--stops S] [--json FILE]
 * Never asserts on time. Above 2 threads on a 2-core machine the spinners
 * are oversubscribed: a spinner that is not on a CPU must first be
 * scheduled to reach its safepoint, so the figures then measure the
 * scheduler more than the protocol. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static _Atomic int stop_spinners;

static void *spinner(void *arg)
{
    _Atomic uint64_t *n = arg;

    while (!atomic_load_explicit(&stop_spinners, memory_order_relaxed)) {
        /* relaxed: a progress signal for the requester, nothing more. */
        atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
        ft_safepoint();
    }
    return NULL;
}

/* After a restart, waits until every spinner runs attached again, so the
 * next stop measures spinners that must reach a safepoint, not threads that
 * have not woken up yet (those would be claimed at once, detached). */
static void wait_all_running(_Atomic uint64_t *progress, int n)
{
    uint64_t seen[8];

    for (int i = 0; i < n; i++)
        seen[i] = atomic_load_explicit(&progress[i], memory_order_relaxed);
    for (int i = 0; i < n; i++)
        while (atomic_load_explicit(&progress[i], memory_order_relaxed) == seen[i])
            ft_safepoint();
}

static double percentile(double *sorted, size_t n, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);

    return sorted[i < n ? i : n - 1];
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int runs = 5, stops = 2000;
    const int counts[] = { 1, 2, 4, 8 };
    FILE *json = stdout;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--stops") == 0 && i + 1 < argc)
            stops = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = fopen(argv[++i], "w");
            if (json == NULL)
                return 1;
        }
    }
    if (runs < 1 || stops < 10)
        return 2;
    bench_print_machine(json, "thread_safepoint", FT_CFG_BUILDTYPE);
    if (ft_init(NULL) != 0)
        return 1;
    printf("# threads  tts_median_us  tts_p99_us  stop_median_us  (median of %d runs x %d stops)%s\n", runs,
           stops, "");
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        int n = counts[c];
        /* Oversubscribed, a stop waits for the scheduler (milliseconds):
         * fewer stops keep the run short. */
        int nstops = n + 1 > cores ? (stops / 10 > 50 ? stops / 10 : 50) : stops;
        double med[64], p99[64], dmed[64];
        double *tts = malloc(sizeof(double) * (size_t)nstops);
        double *dur = malloc(sizeof(double) * (size_t)nstops);

        for (int r = 0; r < runs && r < 64; r++) {
            pthread_t t[8];
            _Atomic uint64_t progress[8] = { 0 };

            atomic_store(&stop_spinners, 0);
            for (int i = 0; i < n; i++)
                ft_thread_start(&t[i], spinner, &progress[i]);
            FT_BLOCKING(usleep(20000));
            wait_all_running(progress, n);
            for (int s = 0; s < nstops; s++) {
                uint64_t t0 = bench_now_ns(), t1, t2;

                ft_stop_the_world();
                t1 = bench_now_ns();
                ft_start_the_world();
                t2 = bench_now_ns();
                tts[s] = (double)(t1 - t0) / 1000.0;
                dur[s] = (double)(t2 - t0) / 1000.0;
                wait_all_running(progress, n);
            }
            atomic_store(&stop_spinners, 1);
            for (int i = 0; i < n; i++)
                ft_thread_join(t[i], NULL);
            qsort(tts, (size_t)nstops, sizeof *tts, cmp);
            qsort(dur, (size_t)nstops, sizeof *dur, cmp);
            med[r] = percentile(tts, (size_t)nstops, 50);
            p99[r] = percentile(tts, (size_t)nstops, 99);
            dmed[r] = percentile(dur, (size_t)nstops, 50);
        }
        {
            int nr = runs < 64 ? runs : 64;
            double m = bench_median(med, (size_t)nr), p = bench_median(p99, (size_t)nr);
            double d = bench_median(dmed, (size_t)nr);
            bool over = n + 1 > cores;

            printf("  %7d  %13.2f  %10.2f  %14.2f%s\n", n, m, p, d,
                   over ? "  (oversubscribed: more threads than cores)" : "");
            fprintf(json,
                    "{\"bench\":\"thread_safepoint\",\"threads\":%d,\"cores\":%ld,\"oversubscribed\":%s,"
                    "\"runs\":%d,\"stops\":%d,\"tts_median_us\":%.3f,\"tts_p99_us\":%.3f,"
                    "\"stop_median_us\":%.3f}\n",
                    n, cores, over ? "true" : "false", nr, nstops, m, p, d);
        }
        free(tts);
        free(dur);
    }
    ft_fini();
    if (json != stdout)
        fclose(json);
    return 0;
}
