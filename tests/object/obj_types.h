/* obj_types.h - small object types shared by the object-layer tests (and
 * meant to be reused by the collector's tests): a node with one child
 * pointer, a pair, and counters of their deallocations. */
#ifndef FT_TEST_OBJ_TYPES_H
#define FT_TEST_OBJ_TYPES_H

#include "ftrt.h"

#include <stdatomic.h>

#define TEST_UNUSED __attribute__((unused))

#define NODE_MAGIC 0x6e6f6465u
#define NODE_DEAD  0xdeaddeadu

typedef struct test_node {
    ft_object ob;
    void *child;           /* counted reference or NULL */
    _Atomic uint32_t magic; /* NODE_MAGIC while alive, NODE_DEAD after dealloc */
    uint32_t value;
} test_node;

typedef struct test_pair {
    ft_object ob;
    void *a, *b;           /* counted references or NULL */
} test_pair;

static TEST_UNUSED _Atomic long test_node_deallocs;
static TEST_UNUSED _Atomic long test_pair_deallocs;

static TEST_UNUSED int test_node_traverse(void *self, ft_visit_fn visit, void *arg)
{
    test_node *n = self;
    return n->child != NULL ? visit(n->child, arg) : 0;
}

static TEST_UNUSED void test_node_clear(void *self)
{
    test_node *n = self;
    void *c = n->child;
    n->child = NULL;
    ft_xdecref(c);
}

static TEST_UNUSED void test_node_dealloc(void *self)
{
    test_node *n = self;
    atomic_store_explicit(&n->magic, NODE_DEAD, memory_order_relaxed);
    atomic_fetch_add_explicit(&test_node_deallocs, 1, memory_order_relaxed);
}

static TEST_UNUSED int test_pair_traverse(void *self, ft_visit_fn visit, void *arg)
{
    test_pair *p = self;
    int rc = 0;
    if (p->a != NULL && (rc = visit(p->a, arg)) != 0)
        return rc;
    if (p->b != NULL)
        rc = visit(p->b, arg);
    return rc;
}

static TEST_UNUSED void test_pair_clear(void *self)
{
    test_pair *p = self;
    void *a = p->a, *b = p->b;
    p->a = p->b = NULL;
    ft_xdecref(a);
    ft_xdecref(b);
}

static TEST_UNUSED void test_pair_dealloc(void *self)
{
    (void)self;
    atomic_fetch_add_explicit(&test_pair_deallocs, 1, memory_order_relaxed);
}

/* A plain node and a GC node. */
static TEST_UNUSED const ft_type test_node_type = {
    .name = "test_node", .size = sizeof(test_node), .flags = 0,
    .traverse = test_node_traverse, .clear = test_node_clear, .dealloc = test_node_dealloc,
};
static TEST_UNUSED const ft_type test_gc_node_type = {
    .name = "test_gc_node", .size = sizeof(test_node), .flags = FT_TYPE_GC,
    .traverse = test_node_traverse, .clear = test_node_clear, .dealloc = test_node_dealloc,
};
static TEST_UNUSED const ft_type test_pair_type = {
    .name = "test_pair", .size = sizeof(test_pair), .flags = FT_TYPE_GC,
    .traverse = test_pair_traverse, .clear = test_pair_clear, .dealloc = test_pair_dealloc,
};

static inline test_node *test_node_new(const ft_type *t, void *child, uint32_t value)
{
    test_node *n = ft_new(t);
    if (n != NULL) {
        n->child = child;
        n->value = value;
        atomic_store_explicit(&n->magic, NODE_MAGIC, memory_order_relaxed);
    }
    return n;
}

static inline long test_node_deallocs_get(void)
{
    return atomic_load_explicit(&test_node_deallocs, memory_order_relaxed);
}

#endif /* FT_TEST_OBJ_TYPES_H */
