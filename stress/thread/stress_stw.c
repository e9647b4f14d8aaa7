/* stress_stw.c - torture of the thread layer: attached workers take random
 * steps (safepoint spins, blocking regions, contended ft_mutex sections,
 * one- and two-object critical sections, nested sections, detach and
 * re-attach) while several requesters stop the world at random moments and
 * check that nothing moves while it is stopped, and QSBR grace periods run.
 * At the end every lock-protected counter must equal the sum of the
 * increments the workers made.
 *
 *   stress_stw [--seconds S] [--seed N] [--threads T] [--gil]
 * The seed is printed first; the same seed replays the same per-thread
 * decisions (the interleaving differs). */
#include "ft_config.h"
#include "ftrt/lock.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "thread/thread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 32
#define N_LOCKS 4
#define N_OBJS 4
#define N_REQUESTERS 2

static ft_mutex locks[N_LOCKS];
static long lock_data[N_LOCKS];      /* protected by locks[i] */
static ft_object objs[N_OBJS];       /* only ob_mutex is used */
static long obj_data[N_OBJS];        /* protected by objs[i]'s sections */

typedef struct worker {
    uint64_t seed;
    uint64_t progress;               /* written only while attached */
    long lock_incs[N_LOCKS];         /* own tallies, read after join */
    long obj_incs[N_OBJS];
    uint64_t steps;
} worker;

static worker workers[MAX_WORKERS];
static _Atomic int stop_all;
static _Atomic long stops_done;
static _Atomic long violations;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void step(worker *w)
{
    uint64_t r = rng_next(&w->seed);
    unsigned a = (unsigned)(r >> 8) % N_OBJS, b = (unsigned)(r >> 16) % N_OBJS;

    w->progress++;
    switch (r % 8) {
    case 0: /* spin on safepoints */
        for (int i = 0; i < 50; i++) {
            w->progress++;
            ft_safepoint();
        }
        break;
    case 1: /* blocking region */
        FT_BLOCKING(usleep((useconds_t)(r >> 40) % 200));
        break;
    case 2: { /* contended mutex */
        unsigned i = (unsigned)(r >> 24) % N_LOCKS;
        ft_mutex_lock(&locks[i]);
        lock_data[i]++;
        w->lock_incs[i]++;
        ft_mutex_unlock(&locks[i]);
        break;
    }
    case 3: /* one-object section */
        FT_CRITICAL_SECTION_BEGIN(&objs[a])
            obj_data[a]++;
            w->obj_incs[a]++;
        FT_CRITICAL_SECTION_END
        break;
    case 4: /* two-object section: both held */
        FT_CRITICAL_SECTION2_BEGIN(&objs[a], &objs[b])
            obj_data[a]++;
            w->obj_incs[a]++;
            if (b != a) {
                obj_data[b]++;
                w->obj_incs[b]++;
            }
        FT_CRITICAL_SECTION2_END
        break;
    case 5: /* nested: only the innermost is guaranteed held */
        FT_CRITICAL_SECTION_BEGIN(&objs[a])
            FT_CRITICAL_SECTION_BEGIN(&objs[b])
                obj_data[b]++;
                w->obj_incs[b]++;
            FT_CRITICAL_SECTION_END
            obj_data[a]++; /* the outer is re-held once the inner ends */
            w->obj_incs[a]++;
        FT_CRITICAL_SECTION_END
        break;
    case 6: /* a section that blocks inside: it is suspended meanwhile */
        FT_CRITICAL_SECTION_BEGIN(&objs[a])
            obj_data[a]++;
            w->obj_incs[a]++;
            FT_BLOCKING(sched_yield());
            obj_data[a]++;
            w->obj_incs[a]++;
        FT_CRITICAL_SECTION_END
        break;
    default: /* leave and come back */
        if ((r >> 32) % 16 == 0) {
            ft_thread_detach();
            usleep(50);
            if (ft_thread_attach() != 0)
                atomic_fetch_add(&violations, 1);
        }
        ft_safepoint();
        break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    bool attached_here = !ft_thread_is_attached();

    if (attached_here && ft_thread_attach() != 0) {
        atomic_fetch_add(&violations, 1);
        return NULL;
    }
    while (!atomic_load_explicit(&stop_all, memory_order_relaxed)) {
        step(w);
        w->steps++;
    }
    ft_thread_detach();
    return NULL;
}

typedef struct requester {
    uint64_t seed;
    int n_workers;
} requester;

static void *requester_main(void *arg)
{
    requester *q = arg;
    uint64_t snap[MAX_WORKERS];

    while (!atomic_load_explicit(&stop_all, memory_order_relaxed)) {
        uint64_t r = rng_next(&q->seed);

        FT_BLOCKING(usleep((useconds_t)(r % 3000)));
        if (r % 16 == 0) {
            fti_qsbr_synchronize();
            continue;
        }
        ft_stop_the_world();
        if (r % 4 == 0)
            ft_stop_the_world(); /* nested */
        for (int i = 0; i < q->n_workers; i++)
            snap[i] = workers[i].progress;
        usleep((useconds_t)(r >> 20) % 300);
        for (int i = 0; i < q->n_workers; i++)
            if (snap[i] != workers[i].progress)
                atomic_fetch_add(&violations, 1);
        if (r % 4 == 0)
            ft_start_the_world();
        ft_start_the_world();
        atomic_fetch_add(&stops_done, 1);
        ft_safepoint();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    uint64_t seed = (uint64_t)time(NULL);
    int n_workers = FT_CFG_TSAN ? 4 : 8;
    bool gil = false;
    pthread_t wt[MAX_WORKERS], rt[N_REQUESTERS];
    requester reqs[N_REQUESTERS];
    ft_config cfg;
    ft_pause_stats tts, dur;
    long bad = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            n_workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--gil") == 0)
            gil = true;
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--seed N] [--threads T] [--gil]\n", argv[0]);
            return 2;
        }
    }
    if (n_workers < 1 || n_workers > MAX_WORKERS)
        n_workers = 8;
    if (FT_CFG_TSAN && seconds > 3)
        seconds = 3;
    printf("stress_stw: seed %llu, %d workers, %d requesters, %.1f s, %s mode\n", (unsigned long long)seed,
           n_workers, N_REQUESTERS, seconds, gil ? "GIL" : "free-threaded");
    fflush(stdout);

    ft_config_default(&cfg);
    cfg.mode = gil ? FT_MODE_GIL : FT_MODE_FREE_THREADED;
    if (ft_init(&cfg) != 0) {
        fprintf(stderr, "stress_stw: ft_init failed\n");
        return 1;
    }
    for (int i = 0; i < n_workers; i++) {
        workers[i].seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i + 1;
        if (ft_thread_start(&wt[i], worker_main, &workers[i]) != 0)
            return 1;
    }
    for (int i = 0; i < N_REQUESTERS; i++) {
        reqs[i].seed = seed ^ (0xabcdefull * (uint64_t)(i + 1));
        reqs[i].n_workers = n_workers;
        if (ft_thread_start(&rt[i], requester_main, &reqs[i]) != 0)
            return 1;
    }
    FT_BLOCKING(usleep((useconds_t)(seconds * 1e6)));
    atomic_store(&stop_all, 1);
    for (int i = 0; i < N_REQUESTERS; i++)
        ft_thread_join(rt[i], NULL);
    for (int i = 0; i < n_workers; i++)
        ft_thread_join(wt[i], NULL);

    for (int l = 0; l < N_LOCKS; l++) {
        long sum = 0;
        for (int i = 0; i < n_workers; i++)
            sum += workers[i].lock_incs[l];
        if (sum != lock_data[l]) {
            fprintf(stderr, "stress_stw: lock %d counted %ld, workers made %ld\n", l, lock_data[l], sum);
            bad++;
        }
    }
    for (int o = 0; o < N_OBJS; o++) {
        long sum = 0;
        for (int i = 0; i < n_workers; i++)
            sum += workers[i].obj_incs[o];
        if (sum != obj_data[o]) {
            fprintf(stderr, "stress_stw: object %d counted %ld, workers made %ld\n", o, obj_data[o], sum);
            bad++;
        }
    }
    ft_thread_get_pause_stats(&tts, &dur);
    printf("stress_stw: %ld stops, time to safepoint p50 <= %llu ns, p99 <= %llu ns, max %llu ns; "
           "%ld violations\n",
           atomic_load(&stops_done), (unsigned long long)ft_pause_stats_percentile(&tts, 50),
           (unsigned long long)ft_pause_stats_percentile(&tts, 99), (unsigned long long)tts.max_ns,
           atomic_load(&violations));
    ft_fini();
    if (bad != 0 || atomic_load(&violations) != 0 || atomic_load(&stops_done) == 0) {
        printf("stress_stw: FAILED (seed %llu)\n", (unsigned long long)seed);
        return 1;
    }
    printf("stress_stw: OK\n");
    return 0;
}
