/* bench_util.h - helpers shared by the benchmark programs: clocks, the
 * machine description printed with every result, medians. */
#ifndef FT_BENCH_UTIL_H
#define FT_BENCH_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "Intel(R) Xeon(R) ..." from /proc/cpuinfo, or "unknown". */
static inline void bench_cpu_model(char *out, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];

    snprintf(out, len, "unknown");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon != NULL) {
                colon += 2;
                colon[strcspn(colon, "\n")] = '\0';
                snprintf(out, len, "%s", colon);
            }
            break;
        }
    }
    fclose(f);
}

/* The CPUs this process may run on (its affinity mask, e.g. from taskset),
 * in order, at most max of them; returns how many. */
static inline int bench_allowed_cpus(int *out, int max)
{
    cpu_set_t set;
    int n = 0;

    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            out[n++] = c;
    return n;
}

/* Pins the calling thread to one CPU; cpu < 0 leaves it free. */
static inline void bench_pin_self(int cpu)
{
    cpu_set_t set;

    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Prints the machine and build as a comment line and a JSON line. */
static inline void bench_print_machine(FILE *json, const char *bench, const char *buildtype)
{
    char cpu[256];
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    bench_cpu_model(cpu, sizeof cpu);
    printf("# %s: %ld cores, %s, build %s\n", bench, cores, cpu, buildtype);
    if (json != NULL)
        fprintf(json, "{\"bench\":\"%s\",\"kind\":\"machine\",\"cores\":%ld,\"cpu\":\"%s\",\"build\":\"%s\"}\n",
                bench, cores, cpu, buildtype);
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static inline double bench_median(double *values, size_t n)
{
    qsort(values, n, sizeof *values, bench_cmp_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2.0;
}

/* Peak resident set size of this process in KiB (VmHWM). */
static inline long bench_peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

#endif /* FT_BENCH_UTIL_H */
