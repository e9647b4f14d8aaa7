/* gc_nodes.h - node types shared by the gc tests: a GC object with a few
 * edges, whose deallocation is recorded so tests can tell what was freed. */
#ifndef GC_NODES_H
#define GC_NODES_H

#include <errno.h>
#include <stdbool.h>

#include "ft_config.h"
#include "ft_test.h"

#include <ftrt/gc.h>
#include <ftrt/lock.h>
#include <ftrt/object.h>
#include <ftrt/runtime.h>
#include <ftrt/thread.h>
#include <ftrt/weakref.h>

#include <stdatomic.h>

#define NODE_EDGES 4
#define NODE_MAGIC 0x6e6f6465u
#define NODE_DEAD  0xdeadu

typedef struct node {
    ft_object ob;
    void *edge[NODE_EDGES]; /* counted references; writers hold the node's critical section */
    uint32_t magic;
    uint32_t id;
} node;

/* Freed-node bookkeeping: live count, and per-id liveness for the oracles. */
#define MAX_IDS (1u << 20)
static _Atomic long nodes_live;
static _Atomic unsigned char node_alive[MAX_IDS];
static _Atomic unsigned node_next_id;

static inline int node_traverse(void *self, ft_visit_fn visit, void *arg)
{
    node *n = self;

    for (int i = 0; i < NODE_EDGES; i++) {
        if (n->edge[i] != NULL) {
            int rc = visit(n->edge[i], arg);

            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static inline void node_clear(void *self)
{
    node *n = self;

    for (int i = 0; i < NODE_EDGES; i++) {
        void *old;

        ft_critical_section cs;
        ft_critical_section_begin(&cs, n);
        old = n->edge[i];
        n->edge[i] = NULL;
        ft_critical_section_end(&cs);
        if (old != NULL)
            ft_decref(old);
    }
}

static inline void node_dealloc(void *self)
{
    node *n = self;

    n->magic = NODE_DEAD;
    if (n->id < MAX_IDS)
        atomic_store(&node_alive[n->id], 0);
    atomic_fetch_sub(&nodes_live, 1);
}

__attribute__((unused)) static const ft_type node_type = {
    .name = "test.node",
    .size = sizeof(node),
    .flags = FT_TYPE_GC,
    .traverse = node_traverse,
    .clear = node_clear,
    .dealloc = node_dealloc,
};

/* Like node_type but without clear: cycles of these are uncollectable. */
__attribute__((unused)) static const ft_type node_noclear_type = {
    .name = "test.noclear",
    .size = sizeof(node),
    .flags = FT_TYPE_GC,
    .traverse = node_traverse,
    .dealloc = node_dealloc,
};

static inline node *node_new_of(const ft_type *t)
{
    node *n = ft_new(t);

    assert_non_null(n);
    n->magic = NODE_MAGIC;
    n->id = atomic_fetch_add(&node_next_id, 1);
    if (n->id < MAX_IDS)
        atomic_store(&node_alive[n->id], 1);
    atomic_fetch_add(&nodes_live, 1);
    return n;
}

static inline node *node_new(void)
{
    return node_new_of(&node_type);
}

/* n->edge[i] = target (a new reference is taken; the old one released). */
static inline void node_set(node *n, int i, void *target)
{
    void *old;

    if (target != NULL)
        ft_incref(target);
    ft_critical_section cs;
    ft_critical_section_begin(&cs, n);
    old = n->edge[i];
    n->edge[i] = target;
    ft_critical_section_end(&cs);
    if (old != NULL)
        ft_decref(old);
}

/* New reference to n->edge[i], or NULL. */
static inline void *node_get(node *n, int i)
{
    void *t;

    ft_critical_section cs;
    ft_critical_section_begin(&cs, n);
    t = n->edge[i];
    if (t != NULL)
        ft_incref(t);
    ft_critical_section_end(&cs);
    return t;
}

static inline void gc_test_init(bool auto_gc)
{
    ft_config cfg;

    ft_config_default(&cfg);
    cfg.gc_enabled = auto_gc;
    assert_int_equal(ft_init(&cfg), 0);
}

/* cmocka group fixtures: the runtime with automatic collection off, so that
 * each test decides when to collect. */
static inline int gc_group_setup(void **state)
{
    (void)state;
    gc_test_init(false);
    return 0;
}

static inline int gc_group_teardown(void **state)
{
    (void)state;
    ft_fini();
    return 0;
}

/* Per-test fixtures: every test ends with nothing of its own left alive
 * (cmocka_unit_test_setup_teardown(test, node_leak_mark, node_leak_check)). */
static long node_live_at_start;

__attribute__((unused)) static int node_leak_mark(void **state)
{
    (void)state;
    node_live_at_start = atomic_load(&nodes_live);
    return 0;
}

__attribute__((unused)) static int node_leak_check(void **state)
{
    (void)state;
    ft_gc_collect(2);
    ft_safepoint();
    if (atomic_load(&nodes_live) != node_live_at_start) {
        fprintf(stderr, "leak: %ld nodes live, %ld at start\n", atomic_load(&nodes_live), node_live_at_start);
        return -1;
    }
    return 0;
}

#endif /* GC_NODES_H */
