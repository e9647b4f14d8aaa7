/* test_dealloc.c - deallocation: a 10-million-node chain released by one
 * decref, wide trees, finalizers (at most once, resurrection), the weakref
 * hook, GC tracking bits. */
#include "ft_config.h"
#include "obj_types.h" /* before ft_test.h: it needs <stdbool.h> */
#include "ft_test.h"

#include "object/object.h"
#include "object/object_int.h"

#include <pthread.h>
#include <stdatomic.h>

static void init_runtime(void)
{
    ft_config cfg;
    ft_config_default(&cfg);
    cfg.gc_enabled = false;
    cfg.mode = FT_MODE_FREE_THREADED; /* the behaviour under test; FTRT_GIL is ignored */
    assert_int_equal(ft_init(&cfg), 0);
}

/* ---- chains and trees ------------------------------------------------------- */

/* Builds a chain of n nodes and releases it with one decref; returns how
 * many nodes were deallocated (asserts stay on the main thread). */
static long release_chain(const ft_type *t, long n)
{
    long before = test_node_deallocs_get();
    test_node *head = NULL;
    for (long i = 0; i < n; i++) {
        test_node *next = test_node_new(t, head, (uint32_t)i); /* the node takes our reference */
        if (next == NULL)
            break;
        head = next;
        if ((i & 4095) == 0)
            ft_safepoint();
    }
    if (test_node_deallocs_get() != before)
        return -1;
    ft_decref(head); /* one decref frees them all, with no recursion */
    return test_node_deallocs_get() - before;
}

typedef struct chain_arg {
    const ft_type *type;
    long n;
    long freed;
} chain_arg;

static void *chain_thread(void *arg)
{
    chain_arg *a = arg;
    if (ft_thread_attach() != 0)
        return NULL;
    a->freed = release_chain(a->type, a->n);
    ft_thread_detach();
    return NULL;
}

static void test_ten_million_chain(void **state)
{
    (void)state;
    init_runtime();
    /* 10 million nodes; under TSan (shadow memory, 10x slower) one million. */
    long n = FT_CFG_TSAN ? 1000000 : 10000000;
    assert_int_equal(release_chain(&test_node_type, n), n);
    fti_delayed_stats st;
    fti_delayed_get_stats(&st);
    assert_true(st.held_bytes <= ft_config_get()->qsbr_budget_bytes);
    /* On a thread with a 256 KiB stack: a recursive release would need
     * hundreds of megabytes. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    chain_arg a = { &test_node_type, FT_CFG_TSAN ? 200000 : 2000000, 0 };
    pthread_t t;
    ft_blocking_begin();
    assert_int_equal(pthread_create(&t, &attr, chain_thread, &a), 0);
    pthread_join(t, NULL);
    ft_blocking_end();
    pthread_attr_destroy(&attr);
    assert_int_equal(a.freed, a.n);
    ft_fini();
}

static test_pair *tree(int depth, long *count)
{
    test_pair *p = ft_new(&test_pair_type);
    ++*count;
    if (depth > 0) {
        p->a = tree(depth - 1, count);
        p->b = tree(depth - 1, count);
    } else {
        p->a = test_node_new(&test_node_type, NULL, 0);
    }
    return p;
}

static void test_wide_tree(void **state)
{
    (void)state;
    init_runtime();
    long pairs = 0;
    long nodes_before = test_node_deallocs_get();
    long pairs_before = atomic_load(&test_pair_deallocs);
    test_pair *root = tree(FT_CFG_TSAN ? 12 : 16, &pairs);
    ft_decref(root);
    assert_int_equal(atomic_load(&test_pair_deallocs) - pairs_before, pairs);
    assert_int_equal(test_node_deallocs_get() - nodes_before, (pairs + 1) / 2);
    ft_fini();
}

/* ---- finalizers ---------------------------------------------------------------- */

static _Atomic int finalize_calls;
static void *resurrected;

static void resurrecting_finalize(void *self)
{
    atomic_fetch_add(&finalize_calls, 1);
    ft_incref(self);
    resurrected = self;
}

static void plain_finalize(void *self)
{
    (void)self;
    atomic_fetch_add(&finalize_calls, 1);
}

static const ft_type resurrecting_type = {
    .name = "resurrecting", .size = sizeof(test_node), .flags = FT_TYPE_GC,
    .traverse = test_node_traverse, .finalize = resurrecting_finalize, .dealloc = test_node_dealloc,
};
static const ft_type finalized_type = {
    .name = "finalized", .size = sizeof(test_node),
    .traverse = test_node_traverse, .finalize = plain_finalize, .dealloc = test_node_dealloc,
};

static void test_finalize_once_and_resurrect(void **state)
{
    (void)state;
    init_runtime();
    long before = test_node_deallocs_get();
    atomic_store(&finalize_calls, 0);
    test_node *child = test_node_new(&test_node_type, NULL, 1);
    test_node *n = test_node_new(&resurrecting_type, child, 2);
    ft_decref(n);
    /* resurrected: nothing released, the finalizer's reference keeps it */
    assert_ptr_equal(resurrected, n);
    assert_int_equal(atomic_load(&finalize_calls), 1);
    assert_int_equal(test_node_deallocs_get(), before);
    assert_int_equal(ft_refcount(n), 1);
    assert_true(atomic_load(&n->ob.ob_flags) & FT_OB_FINALIZED);
    assert_true(atomic_load(&n->ob.ob_gc_bits) & FTI_GC_TRACKED);
    assert_int_equal(atomic_load(&n->magic), NODE_MAGIC);
    resurrected = NULL;
    ft_decref(n); /* the finalizer does not run twice */
    assert_int_equal(atomic_load(&finalize_calls), 1);
    assert_int_equal(test_node_deallocs_get() - before, 2);

    test_node *m = test_node_new(&finalized_type, NULL, 3);
    ft_decref(m);
    assert_int_equal(atomic_load(&finalize_calls), 2);
    assert_int_equal(test_node_deallocs_get() - before, 3);
    ft_fini();
}

/* An object that dies on the worklist (released by a dying parent) is
 * untracked while it waits there; if its finalizer resurrects it, it must be
 * tracked again, or the collector would never see its cycles. */
static void test_resurrected_from_worklist_is_tracked(void **state)
{
    (void)state;
    init_runtime();
    atomic_store(&finalize_calls, 0);
    test_node *child = test_node_new(&resurrecting_type, NULL, 1);
    test_node *parent = test_node_new(&test_gc_node_type, child, 2); /* takes our reference */
    assert_true(atomic_load(&child->ob.ob_gc_bits) & FTI_GC_TRACKED);
    ft_decref(parent); /* frees parent; child goes through the worklist and resurrects */
    assert_ptr_equal(resurrected, child);
    assert_int_equal(atomic_load(&finalize_calls), 1);
    assert_int_equal(ft_refcount(child), 1);
    uint8_t bits = atomic_load(&child->ob.ob_gc_bits);
    assert_true(bits & FTI_GC_TRACKED);
    assert_false(bits & FTI_GC_DYING);
    resurrected = NULL;
    ft_decref(child);
    ft_fini();
}

/* ---- weakref hook and tracking --------------------------------------------------- */

static _Atomic int weakref_clears;

static void count_weakref_clear(ft_object *o)
{
    (void)o;
    atomic_fetch_add(&weakref_clears, 1);
}

static void test_weakref_hook_and_untrack(void **state)
{
    (void)state;
    init_runtime();
    fti_object_hooks saved = fti_object_hooks_current;
    fti_object_hooks hooks = saved;
    hooks.clear_weakrefs = count_weakref_clear;
    fti_object_set_hooks(&hooks);
    atomic_store(&weakref_clears, 0);

    test_node *g = test_node_new(&test_gc_node_type, NULL, 1);
    assert_true(atomic_load(&g->ob.ob_gc_bits) & FTI_GC_TRACKED);
    test_node *p = test_node_new(&test_node_type, NULL, 1);
    assert_false(atomic_load(&p->ob.ob_gc_bits) & FTI_GC_TRACKED);
    atomic_fetch_or(&g->ob.ob_flags, FT_OB_HAS_WEAKREFS);
    ft_set_shared_read(g); /* its death takes the CAS path */
    ft_decref(p);
    assert_int_equal(atomic_load(&weakref_clears), 0);
    ft_decref(g);
    assert_int_equal(atomic_load(&weakref_clears), 1);
    /* freed, and mem keeps the dead header until the block is reused */
    assert_false(atomic_load(&g->ob.ob_gc_bits) & FTI_GC_TRACKED);
    assert_int_equal(atomic_load(&g->ob.ob_owner), 0);
    assert_int_equal(atomic_load(&g->ob.ob_ref_shared), FT_SHARED_MERGED);
    if (FT_CFG_DEBUG_LEVEL >= 1)
        assert_string_equal(ft_type_of(g)->name, "<freed>");
    fti_object_set_hooks(&saved);
    ft_fini();
}

static void test_sizeof_and_var(void **state)
{
    (void)state;
    init_runtime();
    test_node *n = ft_new_var(&test_node_type, 100);
    assert_non_null(n);
    unsigned char *tail = (unsigned char *)(n + 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tail[i], 0);
    assert_int_equal(ft_sizeof(n), sizeof(test_node));
    assert_null(ft_new_var(&test_node_type, SIZE_MAX - 8));
    ft_decref(n);
    ft_fini();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ten_million_chain),
        cmocka_unit_test(test_wide_tree),
        cmocka_unit_test(test_finalize_once_and_resurrect),
        cmocka_unit_test(test_resurrected_from_worklist_is_tracked),
        cmocka_unit_test(test_weakref_hook_and_untrack),
        cmocka_unit_test(test_sizeof_and_var),
    };
    if (getenv("FT_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("FT_TEST_FILTER")); /* run one test by name */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
