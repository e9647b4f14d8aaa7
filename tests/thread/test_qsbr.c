/* test_qsbr.c - QSBR on liburcu-qsbr: a writer replaces a shared block,
 * waits for a grace period with fti_qsbr_synchronize, then poisons and
 * frees the old block, while attached readers read blocks without locks,
 * polling safepoints (quiescent states) and sometimes sitting in blocking
 * regions (offline). A reader never sees a poisoned block; under
 * ThreadSanitizer the annotations in src/thread/qsbr.c must order the
 * readers' plain reads before the writer's poison and free. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"
#include "thread/thread.h"

#include <pthread.h>
#include <stdatomic.h>

#define N_READERS 3
#define UPDATES (FT_CFG_TSAN ? 100 : 1000)
#define MAGIC 0x5eedf00du

typedef struct block {
    uint32_t magic;   /* MAGIC while published or in a grace period */
    uint32_t version;
} block;

static _Atomic(block *) current;
static _Atomic int stop_readers;
static _Atomic uint64_t reads;

static void *reader(void *arg)
{
    uint64_t n = 0;

    (void)arg;
    while (!atomic_load_explicit(&stop_readers, memory_order_relaxed)) {
        /* acquire: pairs with the writer's release publishing the block. */
        block *b = atomic_load_explicit(&current, memory_order_acquire);

        assert_int_equal(b->magic, MAGIC);
        n++;
        if ((n & 1023) == 0)
            FT_BLOCKING(sched_yield());
        ft_safepoint();
    }
    atomic_fetch_add(&reads, n);
    return NULL;
}

static void test_grace_periods(void **state)
{
    pthread_t t[N_READERS];
    block *first = malloc(sizeof *first);

    (void)state;
    first->magic = MAGIC;
    first->version = 0;
    atomic_store(&current, first);
    for (int i = 0; i < N_READERS; i++)
        assert_int_equal(ft_thread_start(&t[i], reader, NULL), 0);
    for (uint32_t v = 1; v <= UPDATES; v++) {
        block *nb = malloc(sizeof *nb);
        block *old;

        nb->magic = MAGIC;
        nb->version = v;
        /* release: publishes nb's fields to the readers' acquire. */
        old = atomic_exchange_explicit(&current, nb, memory_order_acq_rel);
        fti_qsbr_synchronize();
        old->magic = 0xdeadu; /* a reader still using it would see this */
        free(old);
        ft_safepoint();
    }
    atomic_store(&stop_readers, 1);
    for (int i = 0; i < N_READERS; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    free(atomic_load(&current));
    assert_true(atomic_load(&reads) > 0);
}

/* In GIL-free mode a synchronize from a thread holding no readers' attention
 * (everyone detached) returns at once. */
static void test_synchronize_alone(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++)
        fti_qsbr_synchronize();
    ft_safepoint();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synchronize_alone),
        cmocka_unit_test(test_grace_periods),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
