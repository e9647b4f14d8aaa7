/* test_gcmodule.c - the gc-module functions: thresholds and automatic
 * collection, enable/disable, counts, stats, callbacks, get_objects,
 * referrers/referents, freeze, is_tracked, and the debugging tools (most
 * common types, DOT export, leak report). */
#include "gc_nodes.h"

#include "gc/gc.h"

#include <stdlib.h>
#include <string.h>

static int teardown(void **state)
{
    ft_gc_disable();
    return node_leak_check(state);
}

static void make_garbage_cycles(int n)
{
    for (int i = 0; i < n; i++) {
        node *a = node_new(), *b = node_new();

        node_set(a, 0, b);
        node_set(b, 0, a);
        ft_decref(a);
        ft_decref(b);
    }
}

static void test_thresholds_and_auto_collection(void **state)
{
    unsigned th[3], count[3];
    ft_gc_stats before, after;
    long live0;

    (void)state;
    ft_gc_set_threshold(100, 3, 0);
    ft_gc_get_threshold(th);
    assert_int_equal(th[0], 100);
    assert_int_equal(th[1], 3);
    assert_int_equal(th[2], 0);
    ft_gc_get_stats(0, &before);

    /* Disabled: allocations alone never collect. */
    ft_gc_disable();
    assert_false(ft_gc_is_enabled());
    live0 = atomic_load(&nodes_live);
    make_garbage_cycles(500);
    for (int i = 0; i < 10; i++)
        ft_safepoint();
    ft_gc_get_stats(0, &after);
    assert_int_equal(after.collections, before.collections);
    assert_int_equal(atomic_load(&nodes_live), live0 + 1000);
    ft_gc_get_count(count);
    assert_true(count[0] >= 900); /* within one unreported batch */

    /* Enabled: the safepoint after crossing the threshold collects. */
    ft_gc_enable();
    assert_true(ft_gc_is_enabled());
    for (int round = 0; round < 20; round++) {
        make_garbage_cycles(60);
        ft_safepoint();
    }
    ft_gc_get_stats(0, &after);
    assert_true(after.collections > before.collections);
    ft_gc_get_count(count);
    assert_true(count[0] < 200);
    /* Full collections happen too (every t1 young ones, t2 = 0: always). */
    {
        ft_gc_stats full;

        ft_gc_get_stats(2, &full);
        assert_true(full.collections > 0);
    }
    ft_gc_disable();
    ft_gc_collect(2);
    assert_int_equal(atomic_load(&nodes_live), live0);
    ft_gc_set_threshold(700, 10, 10);
}

static void test_stats(void **state)
{
    ft_gc_stats before, after;

    (void)state;
    assert_int_equal(ft_gc_get_stats(3, &before), -EINVAL);
    assert_int_equal(ft_gc_get_stats(2, &before), 0);
    make_garbage_cycles(10);
    assert_int_equal(ft_gc_collect(2), 20);
    assert_int_equal(ft_gc_get_stats(2, &after), 0);
    assert_int_equal(after.collections, before.collections + 1);
    assert_int_equal(after.collected, before.collected + 20);
    assert_true(after.pause_last_ns > 0);
    assert_true(after.pause_max_ns >= after.pause_last_ns);
    assert_true(after.pause_total_ns >= before.pause_total_ns + after.pause_last_ns);
}

typedef struct cb_record {
    int starts, stops;
    intptr_t last_collected;
    int last_generation;
} cb_record;

static void gc_cb(ft_gc_phase phase, const ft_gc_info *info, void *arg)
{
    cb_record *r = arg;

    if (phase == FT_GC_PHASE_START) {
        r->starts++;
    } else {
        r->stops++;
        r->last_collected = info->collected;
    }
    r->last_generation = info->generation;
}

static void test_callbacks(void **state)
{
    cb_record r = { 0 };

    (void)state;
    assert_int_equal(ft_gc_callback_add(gc_cb, &r), 0);
    make_garbage_cycles(3);
    ft_gc_collect(1);
    assert_int_equal(r.starts, 1);
    assert_int_equal(r.stops, 1);
    assert_int_equal(r.last_collected, 6);
    assert_int_equal(r.last_generation, 1);
    assert_int_equal(ft_gc_callback_remove(gc_cb, &r), 0);
    assert_int_equal(ft_gc_callback_remove(gc_cb, &r), -ENOENT);
    ft_gc_collect(2);
    assert_int_equal(r.starts, 1);
}

typedef struct find_ctx {
    void *wanted;
    int seen;
    int total;
} find_ctx;

static int find_obj(void *obj, void *arg)
{
    find_ctx *f = arg;

    f->total++;
    if (obj == f->wanted)
        f->seen++;
    return 0;
}

static void test_visit_referrers_referents(void **state)
{
    node *a = node_new(), *b = node_new(), *c = node_new();
    find_ctx f = { .wanted = b };
    void *out[8];

    (void)state;
    node_set(a, 0, b);
    node_set(c, 2, b);
    node_set(b, 1, c);
    assert_int_equal(ft_gc_visit_objects(-1, find_obj, &f), 0);
    assert_int_equal(f.seen, 1);
    assert_true(f.total >= 3);
    /* young only: b is young; after a collection it is old */
    f.seen = 0;
    ft_gc_visit_objects(0, find_obj, &f);
    assert_int_equal(f.seen, 1);
    ft_gc_collect(2);
    f.seen = 0;
    ft_gc_visit_objects(0, find_obj, &f);
    assert_int_equal(f.seen, 0);
    ft_gc_visit_objects(2, find_obj, &f);
    assert_int_equal(f.seen, 1);

    assert_int_equal(ft_gc_get_referrers(b, out, 8), 2);
    assert_true((out[0] == a && out[1] == c) || (out[0] == c && out[1] == a));
    ft_decref(out[0]);
    ft_decref(out[1]);
    assert_int_equal(ft_gc_get_referrers(b, out, 1), 2); /* count beyond cap */
    ft_decref(out[0]);
    assert_int_equal(ft_gc_get_referents(b, out, 8), 1);
    assert_ptr_equal(out[0], c);
    ft_decref(out[0]);
    ft_decref(a);
    ft_decref(b);
    ft_decref(c);
}

static void test_freeze(void **state)
{
    node *a = node_new(), *b = node_new();

    (void)state;
    assert_true(ft_is_tracked(a));
    node_set(a, 0, b);
    node_set(b, 0, a);
    ft_gc_freeze();
    assert_true(ft_gc_get_freeze_count() >= 2);
    ft_decref(a);
    ft_decref(b);
    assert_int_equal(ft_gc_collect(2), 0); /* frozen: ignored */
    ft_gc_unfreeze();
    assert_int_equal(ft_gc_get_freeze_count(), 0);
    assert_int_equal(ft_gc_collect(2), 2);
}

static const ft_type leaf_type = {
    .name = "test.leaf",
    .size = sizeof(ft_object) + 8,
    .flags = 0,
};

static void test_most_common_types(void **state)
{
    ft_gc_type_count top[64];
    void *leaves[300];
    size_t n;
    bool found_leaf = false, found_node = false;
    node *nodes[5];

    (void)state;
    for (int i = 0; i < 300; i++)
        leaves[i] = ft_new(&leaf_type);
    for (int i = 0; i < 5; i++)
        nodes[i] = node_new();
    assert_false(ft_is_tracked(leaves[0]));
    n = ft_gc_most_common_types(top, 64);
    assert_true(n >= 2);
    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(top[i].name, "test.leaf") == 0) {
            found_leaf = true;
            assert_true(top[i].count >= 300);
        }
        if (strcmp(top[i].name, "test.node") == 0)
            found_node = true;
        if (i > 0)
            assert_true(top[i - 1].count >= top[i].count);
    }
    assert_true(found_leaf && found_node);
    {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);

        ft_gc_show_most_common_types(mem, 3);
        fclose(mem);
        assert_non_null(strstr(text, "test.leaf"));
        free(text);
    }
    for (int i = 0; i < 300; i++)
        ft_decref(leaves[i]);
    for (int i = 0; i < 5; i++)
        ft_decref(nodes[i]);
}

static void test_dot_export(void **state)
{
    node *a = node_new(), *b = node_new(), *c = node_new(), *d = node_new();
    char *text = NULL;
    size_t len = 0;
    FILE *mem;
    char edge[64];
    int nodes;

    (void)state;
    node_set(a, 0, b);
    node_set(b, 0, c);
    node_set(c, 0, d);
    node_set(d, 0, a);
    mem = open_memstream(&text, &len);
    nodes = ft_gc_write_dot(mem, a, 2, 100, FT_GC_DOT_REFS);
    fclose(mem);
    assert_int_equal(nodes, 3); /* a, b, c: depth 2 */
    assert_non_null(strstr(text, "digraph refs"));
    snprintf(edge, sizeof edge, "\"%p\" -> \"%p\"", (void *)a, (void *)b);
    assert_non_null(strstr(text, edge));
    assert_non_null(strstr(text, "test.node"));
    free(text);

    text = NULL;
    mem = open_memstream(&text, &len);
    nodes = ft_gc_write_dot(mem, a, 2, 100, FT_GC_DOT_BACKREFS);
    fclose(mem);
    assert_int_equal(nodes, 3); /* a, d (refers to a), c (refers to d) */
    snprintf(edge, sizeof edge, "\"%p\" -> \"%p\"", (void *)d, (void *)a);
    assert_non_null(strstr(text, edge));
    snprintf(edge, sizeof edge, "\"%p\" -> \"%p\"", (void *)c, (void *)d);
    assert_non_null(strstr(text, edge));
    free(text);
    assert_int_equal(ft_gc_write_dot(NULL, a, 1, 10, 0), -EINVAL);
    node_set(d, 0, NULL);
    ft_decref(a);
    ft_decref(b);
    ft_decref(c);
    ft_decref(d);
}

static void test_leak_report(void **state)
{
    void *leaf = ft_new(&leaf_type);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    (void)state;
    fti_gc_report_leaks(mem);
    fclose(mem);
    assert_non_null(strstr(text, "ftrt: leak report:"));
    assert_non_null(strstr(text, "test.leaf"));
    free(text);
    /* Freed (its memory may wait for a QSBR grace period): not a leak. */
    ft_decref(leaf);
    text = NULL;
    mem = open_memstream(&text, &len);
    fti_gc_report_leaks(mem);
    fclose(mem);
    assert_null(strstr(text, "test.leaf"));
    assert_null(strstr(text, "<freed>"));
    free(text);
}

/* The young trigger rule (docs/gc.md, "Automatic collection"): short-lived
 * churn raises the trigger to at most FTI_GC_TRIGGER_MAX_SCALE x threshold0
 * per allocating thread, and a garbage cycle created among such churn is
 * still collected within that many allocations (plus the batch slack). */
#define CHURN_CAP (700u * 64u)

static void churn(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        ft_decref(node_new());
        ft_safepoint();
    }
}

static void test_cycle_among_churn_collected(void **state)
{
    ft_gc_stats before, after;
    unsigned a_id, b_id, allocs = 0;

    (void)state;
    ft_gc_set_threshold(700, 10, 10);
    ft_gc_enable();
    churn(3 * CHURN_CAP); /* the trigger reaches its cap */
    {
        node *a = node_new(), *b = node_new();

        a_id = a->id;
        b_id = b->id;
        assert_true(b_id < MAX_IDS);
        node_set(a, 0, b);
        node_set(b, 0, a);
        ft_decref(a);
        ft_decref(b);
    }
    ft_gc_get_stats(0, &before);
    while ((atomic_load(&node_alive[a_id]) || atomic_load(&node_alive[b_id])) && allocs < 4 * CHURN_CAP) {
        churn(100);
        allocs += 100;
    }
    ft_gc_get_stats(0, &after);
    /* Collected by the first automatic collection: within the cap plus one
     * threshold0 of slack (batches, the trigger measured before). */
    assert_false(atomic_load(&node_alive[a_id]));
    assert_false(atomic_load(&node_alive[b_id]));
    assert_true(allocs <= CHURN_CAP + 700);
    assert_true(after.collections - before.collections <= 2);
    ft_gc_disable();
}

typedef struct churn_arg {
    unsigned n;
} churn_arg;

static void *churn_main(void *p)
{
    churn(((churn_arg *)p)->n);
    return NULL;
}

/* Two threads churning: one collection per allocating thread's cap at most
 * (a request overtaken by the other thread's collection is dropped, and the
 * cap scales with the threads that allocate), so collections per allocation
 * are no more than with one thread. */
static void test_two_thread_churn_collections(void **state)
{
    pthread_t threads[2];
    churn_arg arg = { .n = 4 * CHURN_CAP };
    ft_gc_stats before, after, full_before, full_after;
    uint64_t n;

    (void)state;
    ft_gc_set_threshold(700, 10, 10);
    ft_gc_enable();
    ft_gc_get_stats(0, &before);
    ft_gc_get_stats(2, &full_before);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_start(&threads[i], churn_main, &arg), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ft_thread_join(threads[i], NULL), 0);
    ft_gc_get_stats(0, &after);
    ft_gc_get_stats(2, &full_after);
    n = (after.collections - before.collections) + (full_after.collections - full_before.collections);
    /* 8 caps of allocations in all; the first interval may still run at
     * the threshold of the previous test's last measurement. */
    assert_true(n <= 8 + 3);
    ft_gc_disable();
}

/* A second ft_init registers the collector's hooks again. */
static void test_reinit_keeps_auto_collection(void **state)
{
    ft_gc_stats st;

    (void)state;
    ft_fini();
    gc_test_init(true);
    assert_true(ft_gc_is_enabled());
    ft_gc_set_threshold(50, 10, 10);
    assert_int_equal(ft_gc_get_stats(0, &st), 0);
    assert_int_equal(st.collections, 0); /* statistics start afresh */
    make_garbage_cycles(100);
    ft_safepoint();
    assert_int_equal(ft_gc_get_stats(0, &st), 0);
    assert_true(st.collections >= 1);
    ft_gc_set_threshold(700, 10, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thresholds_and_auto_collection, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_stats, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_visit_referrers_referents, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_freeze, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_most_common_types, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_dot_export, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_leak_report, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_cycle_among_churn_collected, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_two_thread_churn_collections, node_leak_mark, teardown),
        cmocka_unit_test_setup_teardown(test_reinit_keeps_auto_collection, node_leak_mark, teardown),
    };

    return cmocka_run_group_tests(tests, gc_group_setup, gc_group_teardown);
}
