/* shared_cache.c - a small "server": worker threads share a session cache
 * (a dict) without a global lock, sessions and users refer to each other
 * (cycles), simulated I/O runs in blocking regions, and the cycle collector
 * reclaims sessions that were dropped while still in a cycle.
 *
 *   ./shared_cache [threads] [requests-per-thread]
 * Run it with FTRT_GIL=1 to compare with the global-lock mode. */
#include "ftrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SESSIONS 256

typedef struct worker_arg {
    void *cache;
    int id;
    long requests;
    long hits;
} worker_arg;

/* One request: look a session up, or create it as a [user, history] pair that
 * refers back to itself through the history list (a cycle). */
static void handle_request(worker_arg *w, unsigned *seed)
{
    long key_n = rand_r(seed) % SESSIONS;
    void *key = ft_int_from_i64(1000 + key_n);
    void *session = ft_dict_get(w->cache, key);

    if (session != NULL) {
        w->hits++;
        void *history = ft_list_get(session, 1);
        if (history != NULL) {
            void *stamp = ft_int_from_i64(w->requests);
            ft_list_append(history, stamp);
            ft_decref(stamp);
            if (ft_list_len(history) > 8) {
                /* Drop the session: the cycle session <-> history keeps it
                 * alive until the collector finds it. */
                ft_dict_del(w->cache, key);
            }
            ft_decref(history);
        }
        ft_decref(session);
    } else {
        void *new_session = ft_list_new();
        void *history = ft_list_new();
        void *user = ft_str_from_cstr("user");
        ft_list_append(new_session, user);
        ft_list_append(new_session, history);
        ft_list_append(history, new_session); /* the cycle */
        ft_dict_set(w->cache, key, new_session);
        ft_decref(user);
        ft_decref(history);
        ft_decref(new_session);
    }
    ft_decref(key);
}

static void *worker(void *p)
{
    worker_arg *w = p;
    unsigned seed = (unsigned)w->id * 7919u + 1;

    for (long i = 0; i < w->requests; i++) {
        handle_request(w, &seed);
        if (i % 1000 == 0) {
            /* Simulated I/O: other threads and the collector never wait for us. */
            struct timespec ts = { 0, 100000 };
            FT_BLOCKING(nanosleep(&ts, NULL));
        }
        ft_safepoint();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 2;
    long requests = argc > 2 ? atol(argv[2]) : 200000;
    pthread_t threads[64];
    worker_arg args[64];
    ft_gc_stats stats;
    long hits = 0;

    if (nthreads < 1 || nthreads > 64 || requests < 1) {
        fprintf(stderr, "usage: shared_cache [threads 1..64] [requests-per-thread]\n");
        return 2;
    }
    if (ft_init(NULL) != 0) {
        fprintf(stderr, "shared_cache: ft_init failed\n");
        return 1;
    }
    void *cache = ft_dict_new();
    for (int i = 0; i < nthreads; i++) {
        args[i] = (worker_arg){ cache, i, requests, 0 };
        ft_thread_start(&threads[i], worker, &args[i]);
    }
    for (int i = 0; i < nthreads; i++) {
        ft_thread_join(threads[i], NULL);
        hits += args[i].hits;
    }
    printf("mode %s: %d threads x %ld requests, %ld cache hits, %zu sessions cached\n",
           ft_mode_get() == FT_MODE_GIL ? "GIL" : "free-threaded", nthreads, requests, hits,
           ft_dict_len(cache));
    ft_decref(cache);
    printf("full collection found %ld unreachable objects\n", (long)ft_gc_collect(2));
    if (ft_gc_get_stats(2, &stats) == 0)
        printf("generation 2: %llu collections\n", (unsigned long long)stats.collections);
    ft_gc_show_most_common_types(stdout, 5);
    ft_fini();
    return 0;
}
