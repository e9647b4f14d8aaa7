/* stress_mem.c - seeded multi-thread torture of the allocator: random sizes
 * across small, medium and large classes, content checks, cross-thread frees
 * through a shared exchange, reallocs, callocs and heaps abandoned midway (a
 * thread "detaching"). Prints its seed; --seed N reproduces a run's choices
 * per thread, --seconds S bounds it. Exits non-zero on any corruption or if
 * blocks are left over at the end. */
#include "ft_config.h"
#include "mem/mem_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS   4
#define SLOTS     (FT_CFG_TSAN ? 256 : 2048)
#define EXCHANGE  1024

typedef struct block_ref {
    unsigned char *p;
    size_t size;
    uint8_t tag;
} block_ref;

static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static block_ref exchange[EXCHANGE]; /* (exchange_lock) */
static size_t exchange_n;            /* (exchange_lock) */
static atomic_bool stop;
static atomic_ulong failures;
static atomic_ulong total_ops;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t random_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 1000;
    if (r < 800)
        return 1 + rng_next(rng) % 512;       /* small */
    if (r < 990)
        return 513 + rng_next(rng) % 16000;   /* medium */
    return 16385 + rng_next(rng) % 300000;    /* large */
}

static void fill(block_ref *b)
{
    memset(b->p, b->tag, b->size);
}

static bool verify(const block_ref *b)
{
    for (size_t i = 0; i < b->size; i++)
        if (b->p[i] != b->tag) {
            fprintf(stderr, "stress_mem: block %p (%zu bytes) corrupted at %zu: %02x != %02x\n",
                    (void *)b->p, b->size, i, b->p[i], b->tag);
            return false;
        }
    return true;
}

static void release(block_ref *b)
{
    if (!verify(b))
        atomic_fetch_add(&failures, 1);
    ft_free(b->p);
    b->p = NULL;
}

typedef struct worker {
    uint64_t seed;
    block_ref slots[SLOTS];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    uint64_t rng = w->seed;
    unsigned long ops = 0;

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int burst = 0; burst < 256; burst++, ops++) {
            block_ref *b = &w->slots[rng_next(&rng) % SLOTS];
            uint64_t op = rng_next(&rng) % 100;
            if (b->p == NULL) {
                b->size = random_size(&rng);
                b->tag = (uint8_t)rng_next(&rng);
                if (op < 10) {
                    b->p = ft_calloc(1, b->size);
                    if (b->p != NULL)
                        for (size_t i = 0; i < b->size; i++)
                            if (b->p[i] != 0) {
                                fprintf(stderr, "stress_mem: calloc block not zero\n");
                                atomic_fetch_add(&failures, 1);
                                break;
                            }
                } else {
                    b->p = ft_malloc(b->size);
                }
                if (b->p == NULL) {
                    fprintf(stderr, "stress_mem: allocation of %zu bytes failed\n", b->size);
                    atomic_fetch_add(&failures, 1);
                    continue;
                }
                fill(b);
            } else if (op < 45) {
                release(b);
            } else if (op < 60) {
                /* Hand the block to whichever thread takes it next. */
                block_ref taken = { 0 };
                pthread_mutex_lock(&exchange_lock);
                if (exchange_n < EXCHANGE) {
                    exchange[exchange_n++] = *b;
                } else {
                    size_t i = rng_next(&rng) % EXCHANGE;
                    taken = exchange[i];
                    exchange[i] = *b;
                }
                pthread_mutex_unlock(&exchange_lock);
                b->p = NULL;
                if (taken.p != NULL)
                    release(&taken);
            } else if (op < 70) {
                block_ref taken = { 0 };
                pthread_mutex_lock(&exchange_lock);
                if (exchange_n > 0)
                    taken = exchange[--exchange_n];
                pthread_mutex_unlock(&exchange_lock);
                if (taken.p != NULL)
                    release(&taken);
            } else if (op < 80) {
                if (!verify(b))
                    atomic_fetch_add(&failures, 1);
                size_t n = random_size(&rng);
                unsigned char *q = ft_realloc(b->p, n);
                if (q == NULL) {
                    atomic_fetch_add(&failures, 1);
                    continue;
                }
                for (size_t i = 0; i < (n < b->size ? n : b->size); i++)
                    if (q[i] != b->tag) {
                        fprintf(stderr, "stress_mem: realloc lost content\n");
                        atomic_fetch_add(&failures, 1);
                        break;
                    }
                b->p = q;
                b->size = n;
                fill(b);
            } else if (op < 81 && rng_next(&rng) % 64 == 0) {
                /* Detach: abandon the heap; its pages stay usable. */
                fti_heap_abandon_current();
            } else if (!verify(b)) {
                atomic_fetch_add(&failures, 1);
            }
        }
    }
    for (size_t i = 0; i < SLOTS; i++)
        if (w->slots[i].p != NULL)
            release(&w->slots[i]);
    atomic_fetch_add(&total_ops, ops);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    double seconds = 5;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else {
            fprintf(stderr, "usage: %s [--seed N] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    if (FT_CFG_TSAN && seconds > 10)
        seconds = 10;
    printf("stress_mem: seed %" PRIu64 " seconds %.1f threads %d slots %d\n", seed, seconds, THREADS, SLOTS);
    fflush(stdout);

    static worker workers[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i].seed = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0x632be59bd9b4e019ull + 1;
        pthread_create(&threads[i], NULL, worker_main, &workers[i]);
    }
    struct timespec ts = { .tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    for (size_t i = 0; i < exchange_n; i++)
        release(&exchange[i]);
    exchange_n = 0;

    ft_mem_collect();
    ft_mem_stats st;
    ft_mem_get_stats(&st);
    size_t used = 0;
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++)
        used += st.classes[c].blocks_used;
    printf("stress_mem: %lu ops, %lu failures; left over: %zu blocks, %zu large, %zu abandoned pages, %zu arenas\n",
           atomic_load(&total_ops), atomic_load(&failures), used, st.large_blocks, st.pages_abandoned, st.arenas);
    if (used != 0 || st.large_blocks != 0 || st.pages_abandoned != 0)
        atomic_fetch_add(&failures, 1);
    if (atomic_load(&failures) != 0) {
        printf("stress_mem: FAILED (reproduce with --seed %" PRIu64 ")\n", seed);
        return 1;
    }
    printf("stress_mem: OK\n");
    return 0;
}
