/* test_threads.c - cross-thread frees from 4 threads while the owner
 * abandons its heap midway; attach/detach churn does not leak pages; the
 * child of a fork reclaims the pages of the threads that did not follow it. */
#include "ft_config.h"
#include <stdbool.h>
#include "ft_test.h"
#include "mem/mem_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FREERS = 4 };
#define NBLOCKS (FT_CFG_TSAN ? 4000 : 40000)

typedef struct shared {
    unsigned char **blocks;
    size_t n;
    _Atomic size_t published;   /* blocks[0..published) are ready */
    _Atomic size_t next_free;   /* next index a freer claims */
} shared;

static size_t block_size_of(size_t i)
{
    return 16 + (i * 37) % 600; /* small and medium classes */
}

static void *owner_main(void *arg)
{
    shared *s = arg;
    for (size_t i = 0; i < s->n; i++) {
        size_t sz = block_size_of(i);
        unsigned char *b = ft_malloc(sz);
        assert_non_null(b);
        memset(b, (int)(i & 0xff), sz);
        s->blocks[i] = b;
        /* release: the block contents are written before it is claimed. */
        atomic_store_explicit(&s->published, i + 1, memory_order_release);
        if (i == s->n / 2)
            fti_heap_abandon_current(); /* the owner detaches midway... */
    }
    /* ...and its new heap departs at thread exit (key destructor). */
    return NULL;
}

static void *freer_main(void *arg)
{
    shared *s = arg;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&s->next_free, 1, memory_order_relaxed);
        if (i >= s->n)
            break;
        while (atomic_load_explicit(&s->published, memory_order_acquire) <= i)
            sched_yield();
        unsigned char *b = s->blocks[i];
        size_t sz = block_size_of(i);
        for (size_t k = 0; k < sz; k++)
            if (b[k] != (unsigned char)(i & 0xff))
                fail_msg("block %zu corrupted at byte %zu", i, k);
        ft_free(b);
    }
    return NULL;
}

static void test_cross_thread_frees_with_owner_detaching(void **state)
{
    (void)state;
    shared s = { .n = NBLOCKS };
    s.blocks = calloc(s.n, sizeof *s.blocks);
    pthread_t owner, freers[FREERS];
    assert_int_equal(pthread_create(&owner, NULL, owner_main, &s), 0);
    for (int i = 0; i < FREERS; i++)
        assert_int_equal(pthread_create(&freers[i], NULL, freer_main, &s), 0);
    pthread_join(owner, NULL);
    for (int i = 0; i < FREERS; i++)
        pthread_join(freers[i], NULL);
    free(s.blocks);

    /* Every block came back: after reclaiming, no page holds a block. */
    ft_mem_collect();
    ft_mem_stats st;
    ft_mem_get_stats(&st);
    size_t used = 0;
    for (unsigned c = 0; c < FT_MEM_CLASSES; c++)
        used += st.classes[c].blocks_used;
    assert_int_equal(used, 0);
    assert_int_equal(st.pages_abandoned, 0);
    assert_int_equal(st.pages_in_use, 0);
}

/* Threads that allocate, keep some blocks alive for the next generation and
 * exit: abandoned pages are adopted, nothing accumulates. */
typedef struct churn {
    void *keep[64];
    int round;
} churn;

static void *churn_main(void *arg)
{
    churn *c = arg;
    for (int i = 0; i < 64; i++) {
        if (c->keep[i] != NULL)
            ft_free(c->keep[i]);
        c->keep[i] = ft_malloc(32 + (size_t)(i % 8) * 16);
        memset(c->keep[i], c->round, 32);
    }
    void *tmp[500];
    for (int i = 0; i < 500; i++)
        tmp[i] = ft_malloc(64);
    for (int i = 0; i < 500; i++)
        ft_free(tmp[i]);
    return NULL;
}

static void test_attach_detach_churn_no_leak(void **state)
{
    (void)state;
    churn c = { 0 };
    size_t max_pages = 0;
    int rounds = FT_CFG_TSAN ? 40 : 200;
    for (c.round = 0; c.round < rounds; c.round++) {
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, churn_main, &c), 0);
        pthread_join(t, NULL);
        ft_mem_stats st;
        ft_mem_get_stats(&st);
        if (c.round >= 5 && st.pages_in_use > max_pages)
            max_pages = st.pages_in_use;
        assert_true(st.heaps <= 1); /* only this thread's heap, if any */
    }
    /* 64 kept blocks span 8 classes: bounded by a handful of pages, not by
     * the number of rounds. */
    assert_true(max_pages <= 16);
    for (int i = 0; i < 64; i++)
        ft_free(c.keep[i]);
    ft_mem_collect();
    ft_mem_stats st;
    ft_mem_get_stats(&st);
    assert_int_equal(st.pages_abandoned, 0);
}

enum { FORK_BLOCKS = FT_CFG_TSAN ? 5000 : 20000 };

typedef struct fork_owner {
    void *blocks[FORK_BLOCKS];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready, quit; /* (lock) */
} fork_owner;

static void *fork_owner_main(void *arg)
{
    fork_owner *o = arg;
    for (int i = 0; i < FORK_BLOCKS; i++) {
        o->blocks[i] = ft_malloc(64);
        assert_non_null(o->blocks[i]);
    }
    pthread_mutex_lock(&o->lock);
    o->ready = true;
    pthread_cond_broadcast(&o->cond);
    while (!o->quit)
        pthread_cond_wait(&o->cond, &o->lock);
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* In the child: the owner thread is gone. Its heap must not count as live,
 * and once the child frees its blocks the pages must come back. */
static int fork_child_check(fork_owner *o)
{
    ft_mem_stats st;
    ft_mem_get_stats(&st);
    if (st.heaps > 1)
        return 10; /* the vanished thread's heap still counts as owned */
    for (int i = 0; i < FORK_BLOCKS; i++)
        ft_free(o->blocks[i]);
    ft_mem_collect();
    ft_mem_get_stats(&st);
    if (st.pages_abandoned != 0)
        return 11;
    /* 20000 blocks of 64 bytes filled about 20 pages */
    if (st.pages_in_use > 4)
        return 12;
    return 0;
}

static void test_fork_child_reclaims_vanished_heaps(void **state)
{
    (void)state;
    static fork_owner o = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    pthread_t t;
    int status = 0;

    ft_mem_collect();
    assert_int_equal(pthread_create(&t, NULL, fork_owner_main, &o), 0);
    pthread_mutex_lock(&o.lock);
    while (!o.ready)
        pthread_cond_wait(&o.cond, &o.lock);
    pthread_mutex_unlock(&o.lock);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fork_child_check(&o));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    pthread_mutex_lock(&o.lock);
    o.quit = true;
    pthread_cond_broadcast(&o.cond);
    pthread_mutex_unlock(&o.lock);
    pthread_join(t, NULL);
    for (int i = 0; i < FORK_BLOCKS; i++)
        ft_free(o.blocks[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_thread_frees_with_owner_detaching),
        cmocka_unit_test(test_attach_detach_churn_no_leak),
        cmocka_unit_test(test_fork_child_reclaims_vanished_heaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
