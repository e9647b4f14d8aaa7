/* bench_cross_drop.c - objects dropped by a thread that does not own them.
 *
 * Two threads, pinned one per CPU, each make N objects per round; then each
 * drops either its own objects ("own": the owner's CAS-free path) or the
 * other thread's ("cross": a non-owner's final decref takes the shared count
 * below zero and queues the object to its owner, which merges and frees it
 * at its next safepoint - the biased-counting path a server pays when one
 * thread builds request objects and another releases them). Reports objects
 * per second (creation included, best of --reps) and cross / own. Never
 * asserts on time. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt.h"

#include <stdatomic.h>

typedef struct xobj {
    ft_object ob;
    long payload;
} xobj;

static const ft_type xobj_type = { .name = "xobj", .size = sizeof(xobj) };

enum { ROUNDS = 10 };
static long n_objects = 200000;
static void **made[2];
static pthread_barrier_t round_barrier;
static int cpus[2];
static int ncpus;

typedef struct worker_arg {
    int id;
    bool cross;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    void **own = made[a->id], **drop = made[a->cross ? 1 - a->id : a->id];

    if (ncpus >= 2)
        bench_pin_self(cpus[a->id]);
    for (int round = 0; round < ROUNDS; round++) {
        for (long i = 0; i < n_objects; i++)
            own[i] = ft_new(&xobj_type);
        FT_BLOCKING(pthread_barrier_wait(&round_barrier));
        for (long i = 0; i < n_objects; i++) {
            ft_decref(drop[i]);
            if ((i & 63) == 0)
                ft_safepoint(); /* merges what the other thread queued to us */
        }
        FT_BLOCKING(pthread_barrier_wait(&round_barrier));
    }
    return NULL;
}

static double run(bool cross, int reps)
{
    double best = 0;

    for (int rep = 0; rep < reps; rep++) {
        pthread_t t[2];
        worker_arg args[2] = { { 0, cross }, { 1, cross } };
        uint64_t t0 = bench_now_ns();

        for (int i = 0; i < 2; i++)
            if (ft_thread_start(&t[i], worker, &args[i]) != 0) {
                fprintf(stderr, "bench_cross_drop: cannot start a thread\n");
                exit(1);
            }
        for (int i = 0; i < 2; i++)
            ft_thread_join(t[i], NULL);
        double per_s = 2.0 * (double)n_objects * ROUNDS / ((double)(bench_now_ns() - t0) / 1e9);
        if (per_s > best)
            best = per_s;
    }
    return best;
}

int main(int argc, char **argv)
{
    int reps = 5;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--objects") == 0 && i + 1 < argc)
            n_objects = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cross_drop [--reps N] [--objects N]\n");
            return 2;
        }
    }
    if (reps < 1 || n_objects < 1)
        return 2;
    made[0] = malloc((size_t)n_objects * sizeof(void *));
    made[1] = malloc((size_t)n_objects * sizeof(void *));
    if (made[0] == NULL || made[1] == NULL || ft_init(NULL) != 0)
        return 1;
    bench_print_machine(stdout, "object_cross_drop", FT_CFG_BUILDTYPE);
    ncpus = bench_allowed_cpus(cpus, 2);
    pthread_barrier_init(&round_barrier, NULL, 2);
    double own = run(false, reps), cross = run(true, reps);
    printf("own drops    %7.2f M objects/s (best of %d; creation included)\n", own / 1e6, reps);
    printf("cross drops  %7.2f M objects/s  = %.2fx own\n", cross / 1e6, cross / own);
    printf("{\"bench\":\"object_cross_drop\",\"own_per_s\":%.0f,\"cross_per_s\":%.0f,\"cross_over_own\":%.3f,"
           "\"reps\":%d,\"objects\":%ld}\n",
           own, cross, cross / own, reps, n_objects);
    pthread_barrier_destroy(&round_barrier);
    ft_fini();
    free(made[0]);
    free(made[1]);
    return 0;
}
