/* test_cycles.c - traverse and clear of tuple, list and dict: every held
 * reference is visited exactly once, and clear breaks cycles so that plain
 * refcounting frees them. (Collection itself is the collector's tests.) */
#include "ft_config.h"
#include <stdbool.h> /* before ft_test.h, which uses bool */
#include "ft_test.h"

#include "ftrt.h"

static int setup(void **state)
{
    (void)state;
    if (ft_init(NULL) != 0)
        return -1;
    ft_gc_disable(); /* these tests break the cycles by hand */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ft_fini();
    return 0;
}

typedef struct visit_log {
    void *seen[16];
    int count;
} visit_log;

static int record(void *obj, void *arg)
{
    visit_log *log = arg;

    if (log->count < 16)
        log->seen[log->count] = obj;
    log->count++;
    return 0;
}

static int times_seen(const visit_log *log, const void *obj)
{
    int n = 0;

    for (int i = 0; i < log->count && i < 16; i++)
        n += log->seen[i] == obj;
    return n;
}

static int stop_at_first(void *obj, void *arg)
{
    (void)obj;
    (*(int *)arg)++;
    return 42;
}

static void test_list_self_cycle(void **state)
{
    (void)state;
    void *l = ft_list_new();
    void *x = ft_int_from_i64(5000);
    visit_log log = { .count = 0 };

    assert_true(ft_type_of(l)->flags & FT_TYPE_GC);
    assert_int_equal(ft_list_append(l, l), 0);
    assert_int_equal(ft_list_append(l, x), 0);
    assert_int_equal(ft_refcount(l), 2);
    assert_int_equal(ft_list_type.traverse(l, record, &log), 0);
    assert_int_equal(log.count, 2);
    assert_int_equal(times_seen(&log, l), 1);
    assert_int_equal(times_seen(&log, x), 1);
    int calls = 0;
    assert_int_equal(ft_list_type.traverse(l, stop_at_first, &calls), 42);
    assert_int_equal(calls, 1);

    void *wr = ft_weakref_new(l, NULL, NULL);
    ft_list_type.clear(l);
    assert_int_equal(ft_list_len(l), 0);
    assert_int_equal(ft_refcount(l), 1);
    assert_int_equal(ft_refcount(x), 1);
    ft_decref(l);
    assert_null(ft_weakref_get(wr));
    ft_decref(wr);
    ft_decref(x);
}

static void test_dict_cycle(void **state)
{
    (void)state;
    void *d = ft_dict_new();
    void *inner = ft_list_new();
    void *k1 = ft_str_intern("self", 4);
    void *k2 = ft_int_from_i64(99999);
    visit_log log = { .count = 0 };

    assert_int_equal(ft_dict_set(d, k1, d), 0);
    assert_int_equal(ft_dict_set(d, k2, inner), 0);
    assert_int_equal(ft_list_append(inner, d), 0);
    assert_int_equal(ft_dict_type.traverse(d, record, &log), 0);
    assert_int_equal(log.count, 4);
    assert_int_equal(times_seen(&log, k1), 1);
    assert_int_equal(times_seen(&log, d), 1);
    assert_int_equal(times_seen(&log, k2), 1);
    assert_int_equal(times_seen(&log, inner), 1);
    assert_int_equal(ft_refcount(d), 3);

    void *wr_d = ft_weakref_new(d, NULL, NULL);
    void *wr_inner = ft_weakref_new(inner, NULL, NULL);
    ft_dict_type.clear(d);
    assert_int_equal(ft_dict_len(d), 0);
    assert_int_equal(ft_refcount(k2), 1);
    assert_int_equal(ft_refcount(d), 2); /* ours and inner's */
    ft_decref(inner);                    /* inner dies, releasing d */
    assert_null(ft_weakref_get(wr_inner));
    assert_int_equal(ft_refcount(d), 1);
    ft_decref(d);
    assert_null(ft_weakref_get(wr_d));
    /* A cleared dict is usable again (before it died it still was). */
    ft_decref(wr_d);
    ft_decref(wr_inner);
    ft_decref(k2);
}

static void test_tuple_cycle(void **state)
{
    (void)state;
    void *t = ft_tuple_new(2);
    void *l = ft_list_new();
    visit_log log = { .count = 0 };

    ft_incref(l);
    assert_int_equal(ft_tuple_set(t, 0, l), 0);
    assert_int_equal(ft_list_append(l, t), 0);
    /* slot 1 left empty: not visited */
    assert_int_equal(ft_tuple_type.traverse(t, record, &log), 0);
    assert_int_equal(log.count, 1);
    assert_int_equal(times_seen(&log, l), 1);

    void *wr = ft_weakref_new(t, NULL, NULL);
    ft_tuple_type.clear(t);
    assert_int_equal(ft_refcount(l), 1);
    ft_decref(l); /* l dies, releasing t */
    assert_int_equal(ft_refcount(t), 1);
    ft_decref(t);
    assert_null(ft_weakref_get(wr));
    ft_decref(wr);
}

static void test_collector_frees_container_cycles(void **state)
{
    (void)state;
    void *l = ft_list_new();
    void *d = ft_dict_new();
    void *key = ft_str_intern("back", 4);

    assert_int_equal(ft_list_append(l, d), 0);
    assert_int_equal(ft_dict_set(d, key, l), 0);
    void *wr_l = ft_weakref_new(l, NULL, NULL);
    void *wr_d = ft_weakref_new(d, NULL, NULL);
    ft_decref(l);
    ft_decref(d);
    assert_true(ft_weakref_is_alive(wr_l));
    assert_true(ft_gc_collect(-1) >= 2);
    assert_null(ft_weakref_get(wr_l));
    assert_null(ft_weakref_get(wr_d));
    ft_decref(wr_l);
    ft_decref(wr_d);
}

/* A long chain of containers released by one decref: deallocation goes
 * through traverse without recursing on the C stack. */
#define CHAIN (FT_CFG_TSAN ? 50000 : 300000)

/* Puts item into container (list, dict or 1-tuple), taking a reference. */
static void put_into(void *container, void *item)
{
    const ft_type *t = ft_type_of(container);

    if (t == &ft_list_type) {
        assert_int_equal(ft_list_append(container, item), 0);
    } else if (t == &ft_dict_type) {
        assert_int_equal(ft_dict_set(container, ft_int_from_i64(0), item), 0);
    } else {
        ft_incref(item);
        assert_int_equal(ft_tuple_set(container, 0, item), 0);
    }
}

static void test_deep_chain_release(void **state)
{
    (void)state;
    void *head = ft_list_new();
    void *tail = head;

    for (int i = 0; i < CHAIN; i++) {
        void *next = i % 3 == 0 ? ft_list_new() : i % 3 == 1 ? ft_dict_new() : ft_tuple_new(1);

        assert_non_null(next);
        put_into(tail, next);
        if (tail != head)
            ft_decref(tail);
        tail = next;
        if ((i & 1023) == 0)
            ft_safepoint();
    }
    put_into(tail, ft_none());
    void *wr_tail = ft_weakref_new(tail, NULL, NULL);
    ft_decref(tail);
    assert_true(ft_weakref_is_alive(wr_tail));
    ft_decref(head);
    assert_false(ft_weakref_is_alive(wr_tail));
    ft_decref(wr_tail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_self_cycle),
        cmocka_unit_test(test_dict_cycle),
        cmocka_unit_test(test_tuple_cycle),
        cmocka_unit_test(test_collector_frees_container_cycles),
        cmocka_unit_test(test_deep_chain_release),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
