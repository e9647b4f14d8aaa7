/* test_random_graph.c - random object graphs checked against a reachability
 * oracle computed independently in the test: after the program drops every
 * reference except a random set of external ones (counted references and
 * uncounted local roots of deferred objects), a full collection must free
 * exactly the nodes the oracle finds unreachable and nothing else, and must
 * report exactly the unreachable nodes refcounting alone had not freed. */
#include "gc_nodes.h"

#include <stdlib.h>

/* xorshift64*: deterministic, seed printed on failure. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* The oracle: an adjacency list of indices, kept by the test alongside the
 * real graph, and a plain BFS over it. */
static void run_graph(uint64_t seed, int n, int young)
{
    node **nodes = calloc((size_t)n, sizeof *nodes);
    int *adj = malloc((size_t)n * NODE_EDGES * sizeof *adj);
    bool *external = calloc((size_t)n, sizeof *external);
    bool *rooted = calloc((size_t)n, sizeof *rooted);
    bool *reach = calloc((size_t)n, sizeof *reach);
    int *queue = malloc((size_t)n * sizeof *queue);
    void **slots = calloc((size_t)n, sizeof *slots);
    uint32_t *ids = calloc((size_t)n, sizeof *ids);
    ft_roots_frame frame;
    int head = 0, tail = 0;
    intptr_t expect_found = 0, found;

    assert_true(nodes && adj && external && rooted && reach && queue && slots && ids);
    rng_state = seed * 2654435761u + 1;
    if (young)
        ft_gc_collect(2); /* a clean young generation: older garbage is not ours */
    for (int i = 0; i < n; i++) {
        nodes[i] = node_new();
        ids[i] = nodes[i]->id;
    }
    /* Random edges with a bias towards cycles among neighbours. */
    for (int i = 0; i < n; i++) {
        for (int e = 0; e < NODE_EDGES; e++) {
            int target = -1;
            uint64_t r = rng() % 100;

            if (r < 35)
                target = (int)(rng() % (uint64_t)n);
            else if (r < 55)
                target = (i + 1 + (int)(rng() % 4)) % n;
            else if (r < 60)
                target = i;
            adj[i * NODE_EDGES + e] = target;
            if (target >= 0)
                node_set(nodes[i], e, nodes[target]);
        }
    }
    /* A few external references, some as deferred objects in local roots. */
    ft_roots_push(&frame, slots, (size_t)n);
    for (int i = 0; i < n; i++) {
        uint64_t r = rng() % 100;

        if (r < 3) {
            external[i] = true;
        } else if (r < 5) {
            rooted[i] = true;
            ft_set_deferred(nodes[i]);
            slots[i] = nodes[i];
        }
    }
    /* Oracle BFS from the externals and roots. */
    for (int i = 0; i < n; i++) {
        if (external[i] || rooted[i]) {
            reach[i] = true;
            queue[tail++] = i;
        }
    }
    while (head < tail) {
        int i = queue[head++];

        for (int e = 0; e < NODE_EDGES; e++) {
            int t = adj[i * NODE_EDGES + e];

            if (t >= 0 && !reach[t]) {
                reach[t] = true;
                queue[tail++] = t;
            }
        }
    }
    /* Drop the creation references of everything not external. */
    for (int i = 0; i < n; i++)
        if (!external[i])
            ft_decref(nodes[i]);
    ft_safepoint();
    for (int i = 0; i < n; i++) {
        /* Reachable nodes must have survived refcounting; unreachable ones
         * still alive are what the collector must find. */
        bool alive = atomic_load(&node_alive[ids[i]]);

        if (reach[i] && !alive)
            fail_msg("seed %llu: reachable node %d freed by refcounting", (unsigned long long)seed, i);
        if (!reach[i] && alive)
            expect_found++;
    }
    found = ft_gc_collect(young ? 0 : 2);
    ft_safepoint();
    if (found != expect_found)
        fail_msg("seed %llu: collector found %ld unreachable, oracle %ld", (unsigned long long)seed,
                 (long)found, (long)expect_found);
    for (int i = 0; i < n; i++) {
        bool alive = atomic_load(&node_alive[ids[i]]);

        if (alive != reach[i])
            fail_msg("seed %llu: node %d alive=%d but oracle says reachable=%d", (unsigned long long)seed, i,
                     alive, reach[i]);
        if (alive)
            assert_int_equal(nodes[i]->magic, NODE_MAGIC);
    }
    /* Release the survivors: everything goes. */
    for (int i = 0; i < n; i++)
        slots[i] = NULL;
    ft_roots_pop(&frame);
    for (int i = 0; i < n; i++)
        if (external[i])
            ft_decref(nodes[i]);
    ft_gc_collect(2);
    ft_safepoint();
    for (int i = 0; i < n; i++)
        if (atomic_load(&node_alive[ids[i]]))
            fail_msg("seed %llu: node %d leaked", (unsigned long long)seed, i);
    free(nodes);
    free(adj);
    free(external);
    free(rooted);
    free(reach);
    free(queue);
    free(slots);
    free(ids);
}

static void test_small_graphs(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= (FT_CFG_TSAN ? 40u : 200u); seed++)
        run_graph(seed, 2 + (int)(seed % 40), 0);
}

/* Large graphs with the default (single) marking worker. */
static void test_large_graphs(void **state)
{
    (void)state;
    for (uint64_t seed = 1000; seed < 1000 + (FT_CFG_TSAN ? 1u : 6u); seed++)
        run_graph(seed, 40000, 0);
}

static void reinit_with_workers(unsigned workers)
{
    ft_config cfg;

    ft_fini();
    ft_config_default(&cfg);
    cfg.gc_enabled = false;
    cfg.gc_workers = workers;
    assert_int_equal(ft_init(&cfg), 0);
}

/* Large graphs (>= 32768 candidates, so the parallel phases run) with one
 * marking worker and with four (oversubscribed on small machines: still
 * correct). */
static void test_large_graphs_worker_counts(void **state)
{
    (void)state;
    reinit_with_workers(1);
    run_graph(2000, 40000, 0);
    reinit_with_workers(4);
    run_graph(2001, 40000, 0);
    if (!FT_CFG_TSAN)
        run_graph(2002, 100000, 0);
}

/* The same oracle holds for young collections of a fresh generation. */
static void test_young_graphs(void **state)
{
    (void)state;
    for (uint64_t seed = 500; seed < (FT_CFG_TSAN ? 520u : 600u); seed++)
        run_graph(seed, 50 + (int)(seed % 500), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_graphs),
        cmocka_unit_test(test_large_graphs),
        cmocka_unit_test(test_young_graphs),
        cmocka_unit_test(test_large_graphs_worker_counts),
    };

    return cmocka_run_group_tests(tests, gc_group_setup, gc_group_teardown);
}
