/* test_concurrent.c - four threads mutate a shared graph (creating and
 * breaking cycles, walking edges) while a fifth collects repeatedly, young and
 * full. Every node a mutator touches must be alive (magic intact; debug builds
 * also poison freed objects so a counting slow path would abort), and after
 * the threads stop and the roots go, nothing is left. */
#include "gc_nodes.h"

#include <pthread.h>

#define ROOTS 8

typedef struct shared {
    node *roots[ROOTS];  /* counted references owned by the test; immutable during the run */
    _Atomic bool stop;
    _Atomic long steps;
    _Atomic long collections;
    _Atomic long found;
    _Atomic bool broken;
    uint64_t seed;
} shared;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct mutator_arg {
    shared *sh;
    uint64_t seed;
} mutator_arg;

static void check_node(shared *sh, node *n)
{
    if (n->magic != NODE_MAGIC || ft_type_of(n) != &node_type)
        atomic_store(&sh->broken, true);
}

static void *mutator_main(void *p)
{
    mutator_arg *a = p;
    shared *sh = a->sh;
    uint64_t s = a->seed;
    node *held[4] = { NULL, NULL, NULL, NULL }; /* counted references of this thread */

    while (!atomic_load(&sh->stop)) {
        node *cur = sh->roots[next_rand(&s) % ROOTS];

        ft_incref(cur);
        for (int step = 0; step < 16; step++) {
            uint64_t r = next_rand(&s);
            int e = (int)(r % NODE_EDGES);
            node *next;

            check_node(sh, cur);
            switch ((r >> 8) % 8) {
            case 0: { /* a new node, linked into the graph, with a back edge: a cycle */
                node *n = node_new();

                node_set(n, 0, cur);
                node_set(cur, e, n);
                ft_decref(n);
                break;
            }
            case 1: /* cut an edge: may orphan a cycle */
                node_set(cur, e, NULL);
                break;
            case 2: { /* remember this node */
                int k = (int)((r >> 16) % 4);

                if (held[k] != NULL)
                    ft_decref(held[k]);
                ft_incref(cur);
                held[k] = cur;
                break;
            }
            case 3: { /* link a remembered node here */
                int k = (int)((r >> 16) % 4);

                if (held[k] != NULL) {
                    check_node(sh, held[k]);
                    node_set(cur, e, held[k]);
                }
                break;
            }
            default:
                break;
            }
            next = node_get(cur, e);
            if (next != NULL) {
                ft_decref(cur);
                cur = next;
            }
            atomic_fetch_add(&sh->steps, 1);
            ft_safepoint();
        }
        ft_decref(cur);
    }
    for (int k = 0; k < 4; k++)
        if (held[k] != NULL)
            ft_decref(held[k]);
    return NULL;
}

static void *collector_main(void *p)
{
    shared *sh = p;
    int i = 0;

    while (!atomic_load(&sh->stop)) {
        intptr_t n = ft_gc_collect(i++ % 3 == 0 ? 2 : 0);

        if (n > 0)
            atomic_fetch_add(&sh->found, n);
        atomic_fetch_add(&sh->collections, 1);
        ft_safepoint();
    }
    return NULL;
}

static void run(bool auto_gc_too)
{
    shared sh = { .seed = 12345 };
    mutator_arg args[4];
    pthread_t mut[4], col;
    long live_before = atomic_load(&nodes_live);
    struct timespec ts = { .tv_sec = FT_CFG_TSAN ? 0 : 1, .tv_nsec = FT_CFG_TSAN ? 500000000 : 0 };

    if (auto_gc_too) {
        ft_gc_set_threshold(200, 5, 4);
        ft_gc_enable();
    }
    for (int i = 0; i < ROOTS; i++)
        sh.roots[i] = node_new();
    for (int i = 0; i < ROOTS; i++)
        node_set(sh.roots[i], 0, sh.roots[(i + 1) % ROOTS]); /* a ring of roots */
    for (int i = 0; i < 4; i++) {
        args[i].sh = &sh;
        args[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        assert_int_equal(ft_thread_start(&mut[i], mutator_main, &args[i]), 0);
    }
    assert_int_equal(ft_thread_start(&col, collector_main, &sh), 0);
    FT_BLOCKING(nanosleep(&ts, NULL));
    atomic_store(&sh.stop, true);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ft_thread_join(mut[i], NULL), 0);
    assert_int_equal(ft_thread_join(col, NULL), 0);
    ft_gc_disable();
    assert_false(atomic_load(&sh.broken));
    assert_true(atomic_load(&sh.collections) > 0);
    print_message("steps %ld, collections %ld, unreachable found %ld\n", atomic_load(&sh.steps),
                  atomic_load(&sh.collections), atomic_load(&sh.found));
    for (int i = 0; i < ROOTS; i++)
        ft_decref(sh.roots[i]);
    ft_gc_collect(2);
    ft_safepoint();
    assert_int_equal(atomic_load(&nodes_live), live_before);
}

static void test_mutators_and_collector(void **state)
{
    (void)state;
    run(false);
}

static void test_with_automatic_collections(void **state)
{
    (void)state;
    run(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutators_and_collector),
        cmocka_unit_test(test_with_automatic_collections),
    };

    return cmocka_run_group_tests(tests, gc_group_setup, gc_group_teardown);
}
