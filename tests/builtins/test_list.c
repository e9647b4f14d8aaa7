/* test_list.c - list API, errors, and 4 concurrent writers and readers with
 * invariants checked. */
#include "ft_config.h"
#include <stdbool.h> /* before ft_test.h, which uses bool */
#include "ft_test.h"

#include "ftrt/builtins.h"
#include "ftrt/gc.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>

#define NTHREADS 4
#define PER_THREAD (FT_CFG_TSAN ? 5000 : 30000)
#define VALUE_BASE 100000 /* above the small-int cache: heap ints, really counted */

static void test_list_api(void **state)
{
    (void)state;
    void *l = ft_list_new();
    void *s = ft_str_from_cstr("item");

    assert_non_null(l);
    assert_int_equal(ft_list_len(l), 0);
    assert_null(ft_list_pop(l));
    errno = 0;
    assert_null(ft_list_get(l, 0));
    assert_int_equal(errno, ERANGE);
    assert_null(ft_list_get(l, -1));

    for (int64_t i = 0; i < 100; i++) {
        void *v = ft_int_from_i64(VALUE_BASE + i);
        assert_int_equal(ft_list_append(l, v), 0);
        ft_decref(v);
    }
    assert_int_equal(ft_list_len(l), 100);
    for (int64_t i = 0; i < 100; i++) {
        void *v = ft_list_get(l, (ssize_t)i);
        assert_int_equal(ft_int_as_i64(v), VALUE_BASE + i);
        assert_int_equal(ft_refcount(v), 2); /* list + us: getters hand out new references */
        ft_decref(v);
    }
    void *last = ft_list_get(l, -1);
    assert_int_equal(ft_int_as_i64(last), VALUE_BASE + 99);
    ft_decref(last);
    void *first = ft_list_get(l, -100);
    assert_int_equal(ft_int_as_i64(first), VALUE_BASE);
    ft_decref(first);
    errno = 0;
    assert_null(ft_list_get(l, -101));
    assert_int_equal(errno, ERANGE);
    assert_null(ft_list_get(l, 100));

    /* set: does not steal, releases the old item, range-checked. */
    assert_int_equal(ft_list_set(l, 5, s), 0);
    assert_int_equal(ft_refcount(s), 2);
    assert_int_equal(ft_list_set(l, -1, s), 0);
    assert_int_equal(ft_refcount(s), 3);
    assert_int_equal(ft_list_set(l, 100, s), -ERANGE);
    assert_int_equal(ft_list_set(l, -101, s), -ERANGE);
    assert_int_equal(ft_refcount(s), 3);
    void *got = ft_list_get(l, 5);
    assert_ptr_equal(got, s);
    ft_decref(got);

    /* pop hands the list's reference to the caller. */
    void *popped = ft_list_pop(l);
    assert_ptr_equal(popped, s);
    assert_int_equal(ft_refcount(s), 3);
    ft_decref(popped);
    assert_int_equal(ft_list_len(l), 99);
    ft_decref(l); /* releases the items */
    assert_int_equal(ft_refcount(s), 1);
    ft_decref(s);
}

/* A list that shrank gives back its storage (ft_sizeof sees it). */
static void test_list_shrinks(void **state)
{
    (void)state;
    void *l = ft_list_new();

    for (int i = 0; i < 10000; i++)
        assert_int_equal(ft_list_append(l, ft_none()), 0);
    size_t peak = ft_sizeof(l);
    for (int i = 0; i < 9990; i++)
        assert_ptr_equal(ft_list_pop(l), ft_none());
    assert_int_equal(ft_list_len(l), 10);
    assert_true(ft_sizeof(l) < peak / 8);
    for (ssize_t i = 0; i < 10; i++) {
        void *v = ft_list_get(l, i);
        assert_ptr_equal(v, ft_none());
    }
    ft_decref(l);
}

static void list_append_to_dict(void *arg)
{
    (void)arg; /* the forked child inherits the attached runtime */
    ft_list_append(ft_dict_new(), ft_none());
}

static void test_list_misuse_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(list_append_to_dict, NULL, "ft_list_append: object is not a list (dict)"));
}

/* ---- concurrency ------------------------------------------------------- */

static void *shared_list;
static atomic_int gate;
static atomic_int bad_reads;
static atomic_int popped_count[NTHREADS * PER_THREAD];

static void wait_gate(void)
{
    atomic_fetch_add(&gate, 1);
    while (atomic_load(&gate) < NTHREADS) {
        ft_safepoint();
        sched_yield();
    }
}

/* A value is valid when it is an int that some writer appended. */
static bool valid_value(void *v)
{
    if (ft_type_of(v) != &ft_int_type)
        return false;
    int64_t x = ft_int_as_i64(v);
    return x >= VALUE_BASE && x < VALUE_BASE + NTHREADS * PER_THREAD;
}

static void *append_and_read(void *p)
{
    int index = (int)(intptr_t)p;
    unsigned seed = (unsigned)index * 7919u + 1;

    wait_gate();
    for (int i = 0; i < PER_THREAD; i++) {
        void *v = ft_int_from_i64(VALUE_BASE + index * PER_THREAD + i);
        if (ft_list_append(shared_list, v) != 0)
            atomic_fetch_add(&bad_reads, 1);
        ft_decref(v);
        /* Read a random slot below the length we observe. */
        size_t n = ft_list_len(shared_list);
        seed = seed * 1103515245u + 12345u;
        void *r = ft_list_get(shared_list, (ssize_t)((seed >> 8) % n));
        if (r == NULL || !valid_value(r))
            atomic_fetch_add(&bad_reads, 1);
        if (r != NULL)
            ft_decref(r);
        r = ft_list_get(shared_list, -1);
        if (r == NULL || !valid_value(r))
            atomic_fetch_add(&bad_reads, 1);
        if (r != NULL)
            ft_decref(r);
        ft_safepoint();
    }
    return NULL;
}

static void *pop_and_read(void *p)
{
    int index = (int)(intptr_t)p;
    unsigned seed = (unsigned)index * 31u + 7;

    wait_gate();
    for (;;) {
        void *v = ft_list_pop(shared_list);
        if (v == NULL)
            break;
        if (!valid_value(v)) {
            atomic_fetch_add(&bad_reads, 1);
        } else {
            atomic_fetch_add(&popped_count[ft_int_as_i64(v) - VALUE_BASE], 1);
        }
        ft_decref(v);
        /* Concurrent readers: either a valid item or out of range. */
        seed = seed * 1103515245u + 12345u;
        void *r = ft_list_get(shared_list, (ssize_t)((seed >> 8) % (NTHREADS * PER_THREAD)));
        if (r != NULL) {
            if (!valid_value(r))
                atomic_fetch_add(&bad_reads, 1);
            ft_decref(r);
        }
        ft_safepoint();
    }
    return NULL;
}

static void *set_and_read(void *p)
{
    int index = (int)(intptr_t)p;
    unsigned seed = (unsigned)index * 131u + 3;
    size_t n = ft_list_len(shared_list);

    wait_gate();
    for (int i = 0; i < PER_THREAD; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t at = (seed >> 8) % n;
        void *v = ft_int_from_i64(VALUE_BASE + index * PER_THREAD + i);
        if (ft_list_set(shared_list, (ssize_t)at, v) != 0)
            atomic_fetch_add(&bad_reads, 1);
        ft_decref(v);
        seed = seed * 1103515245u + 12345u;
        void *r = ft_list_get(shared_list, (ssize_t)((seed >> 8) % n));
        if (r == NULL || !valid_value(r))
            atomic_fetch_add(&bad_reads, 1);
        if (r != NULL)
            ft_decref(r);
        ft_safepoint();
    }
    return NULL;
}

static void run_threads(void *(*fn)(void *))
{
    pthread_t threads[NTHREADS];

    atomic_store(&gate, 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_start(&threads[t], fn, (void *)(intptr_t)t), 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_join(threads[t], NULL), 0);
}

static void test_list_concurrent(void **state)
{
    (void)state;
    unsigned saved_threshold[3];

    /* Frequent young collections: the collector traverses these containers
     * with the world stopped while the workers are mid-way through writes. */
    ft_gc_get_threshold(saved_threshold);
    ft_gc_set_threshold(50, 2, 2);
    shared_list = ft_list_new();
    atomic_store(&bad_reads, 0);

    /* Phase 1: 4 appenders that also read. No lost items, each once. */
    run_threads(append_and_read);
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_int_equal(ft_list_len(shared_list), NTHREADS * PER_THREAD);
    static unsigned char seen[NTHREADS * PER_THREAD];
    memset(seen, 0, sizeof seen);
    for (ssize_t i = 0; i < NTHREADS * PER_THREAD; i++) {
        void *v = ft_list_get(shared_list, i);
        assert_non_null(v);
        assert_true(valid_value(v));
        int64_t x = ft_int_as_i64(v) - VALUE_BASE;
        assert_int_equal(seen[x], 0);
        seen[x] = 1;
        assert_int_equal(ft_refcount(v), 2);
        ft_decref(v);
    }
    /* Each thread's items keep their relative order. */
    int64_t last[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        last[t] = -1;
    for (ssize_t i = 0; i < NTHREADS * PER_THREAD; i++) {
        void *v = ft_list_get(shared_list, i);
        int64_t x = ft_int_as_i64(v) - VALUE_BASE;
        assert_true(x > last[x / PER_THREAD]);
        last[x / PER_THREAD] = x;
        ft_decref(v);
    }

    /* Phase 2: 4 setters that also read; the length never changes. */
    run_threads(set_and_read);
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_int_equal(ft_list_len(shared_list), NTHREADS * PER_THREAD);
    for (ssize_t i = 0; i < NTHREADS * PER_THREAD; i++) {
        void *v = ft_list_get(shared_list, i);
        assert_true(valid_value(v));
        ft_decref(v);
    }

    /* Phase 3: 4 poppers that also read: every item popped exactly once. */
    static int expect[NTHREADS * PER_THREAD];
    memset(expect, 0, sizeof expect);
    for (ssize_t i = 0; i < NTHREADS * PER_THREAD; i++) {
        void *v = ft_list_get(shared_list, i);
        expect[ft_int_as_i64(v) - VALUE_BASE]++;
        ft_decref(v);
    }
    for (int i = 0; i < NTHREADS * PER_THREAD; i++)
        atomic_store(&popped_count[i], 0);
    run_threads(pop_and_read);
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_int_equal(ft_list_len(shared_list), 0);
    for (int i = 0; i < NTHREADS * PER_THREAD; i++)
        assert_int_equal(atomic_load(&popped_count[i]), expect[i]);
    ft_gc_set_threshold(saved_threshold[0], saved_threshold[1], saved_threshold[2]);
    ft_decref(shared_list);
}

/* Appenders and poppers at the same time (threads 0,1 append their values,
 * threads 2,3 pop, everyone reads): every appended value ends up popped or
 * still in the list, exactly once. */
static atomic_int appenders_done;

static void *mixed_worker(void *p)
{
    int index = (int)(intptr_t)p;
    unsigned seed = (unsigned)index * 977u + 5;

    wait_gate();
    if (index < 2) {
        for (int i = 0; i < PER_THREAD; i++) {
            void *v = ft_int_from_i64(VALUE_BASE + index * PER_THREAD + i);
            if (ft_list_append(shared_list, v) != 0)
                atomic_fetch_add(&bad_reads, 1);
            ft_decref(v);
            ft_safepoint();
        }
        atomic_fetch_add(&appenders_done, 1);
        return NULL;
    }
    for (;;) {
        bool done = atomic_load(&appenders_done) == 2;
        void *v = ft_list_pop(shared_list);
        if (v != NULL) {
            if (valid_value(v))
                atomic_fetch_add(&popped_count[ft_int_as_i64(v) - VALUE_BASE], 1);
            else
                atomic_fetch_add(&bad_reads, 1);
            ft_decref(v);
        } else if (done) {
            break;
        } else {
            sched_yield(); /* empty for now: let the appenders run */
        }
        seed = seed * 1103515245u + 12345u;
        void *r = ft_list_get(shared_list, -(ssize_t)(1 + (seed >> 8) % 8));
        if (r != NULL) {
            if (!valid_value(r))
                atomic_fetch_add(&bad_reads, 1);
            ft_decref(r);
        }
        ft_safepoint();
    }
    return NULL;
}

static void test_list_append_pop_mixed(void **state)
{
    (void)state;
    shared_list = ft_list_new();
    atomic_store(&bad_reads, 0);
    atomic_store(&appenders_done, 0);
    for (int i = 0; i < NTHREADS * PER_THREAD; i++)
        atomic_store(&popped_count[i], 0);
    run_threads(mixed_worker);
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_int_equal(ft_list_len(shared_list), 0); /* poppers ran until empty after the appenders */
    for (int i = 0; i < 2 * PER_THREAD; i++)
        assert_int_equal(atomic_load(&popped_count[i]), 1);
    ft_decref(shared_list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_api),
        cmocka_unit_test(test_list_shrinks),
        cmocka_unit_test(test_list_misuse_aborts),
        cmocka_unit_test(test_list_concurrent),
        cmocka_unit_test(test_list_append_pop_mixed),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
