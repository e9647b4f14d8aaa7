/* test_dict.c - dict API, insertion order, bad keys, and 4 concurrent
 * writers and readers with invariants checked. */
#include "ft_config.h"
#include <stdbool.h> /* before ft_test.h, which uses bool */
#include "ft_test.h"

#include "ftrt/builtins.h"
#include "ftrt/gc.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>

#define NTHREADS 4
#define PER_THREAD (FT_CFG_TSAN ? 2000 : 10000)
#define ROUNDS (FT_CFG_TSAN ? 2 : 4)

static void test_dict_api(void **state)
{
    (void)state;
    void *d = ft_dict_new();
    void *k1 = ft_str_from_cstr("alpha");
    void *k1_copy = ft_str_from_cstr("alpha");
    void *k2 = ft_int_from_i64(12345);
    void *k2_copy = ft_int_from_i64(12345);
    void *k3 = ft_int_from_i64(7);
    void *v1 = ft_str_from_cstr("one");
    void *v2 = ft_str_from_cstr("two");

    assert_int_equal(ft_dict_len(d), 0);
    assert_null(ft_dict_get(d, k1));
    assert_int_equal(ft_dict_del(d, k1), -ENOENT);

    assert_int_equal(ft_dict_set(d, k1, v1), 0);
    assert_int_equal(ft_refcount(v1), 2);
    assert_int_equal(ft_refcount(k1), 2);
    assert_int_equal(ft_dict_set(d, k2, v2), 0);
    assert_int_equal(ft_dict_len(d), 2);

    /* Lookups by equal, not identical, keys; new references out. */
    void *got = ft_dict_get(d, k1_copy);
    assert_ptr_equal(got, v1);
    assert_int_equal(ft_refcount(v1), 3);
    ft_decref(got);
    got = ft_dict_get(d, k2_copy);
    assert_ptr_equal(got, v2);
    ft_decref(got);
    assert_null(ft_dict_get(d, k3));

    /* Replacing keeps the original key object and releases the old value. */
    assert_int_equal(ft_dict_set(d, k1_copy, v2), 0);
    assert_int_equal(ft_dict_len(d), 2);
    assert_int_equal(ft_refcount(v1), 1);
    assert_int_equal(ft_refcount(k1_copy), 1);
    assert_int_equal(ft_refcount(k1), 2);
    got = ft_dict_get(d, k1);
    assert_ptr_equal(got, v2);
    ft_decref(got);

    /* A str key and an int key never compare equal. */
    void *s7 = ft_str_from_cstr("7");
    assert_int_equal(ft_dict_set(d, k3, v1), 0);
    assert_null(ft_dict_get(d, s7));
    ft_decref(s7);

    assert_int_equal(ft_dict_del(d, k2_copy), 0);
    assert_int_equal(ft_dict_len(d), 2);
    assert_null(ft_dict_get(d, k2));
    assert_int_equal(ft_dict_del(d, k2), -ENOENT);

    ft_decref(d); /* releases keys and values */
    assert_int_equal(ft_refcount(k1), 1);
    assert_int_equal(ft_refcount(v1), 1);
    assert_int_equal(ft_refcount(v2), 1);
    void *objs[] = { k1, k1_copy, k2, k2_copy, k3, v1, v2 };
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        ft_decref(objs[i]);
}

/* The write path's shortcuts: a replace with the identical key object takes
 * no key reference; an insert that grows the block lands in the new block's
 * probe sequence; stored keys and values are marked shared-read. */
static void test_dict_set_paths(void **state)
{
    enum { NKEYS = 200 };
    void *keys[NKEYS];
    void *d = ft_dict_new();
    void *v1 = ft_str_from_cstr("one");
    void *v2 = ft_str_from_cstr("two");

    (void)state;
    for (int i = 0; i < NKEYS; i++) {
        keys[i] = ft_int_from_i64(5000000 + i);
        assert_int_equal(ft_dict_set(d, keys[i], v1), 0);
        assert_int_equal(ft_refcount(keys[i]), 2);
        assert_true(ft_is_shared_read(keys[i]));
        /* every key so far is still found after each resize */
        for (int j = 0; j <= i; j += 17) {
            void *got = ft_dict_get(d, keys[j]);
            assert_ptr_equal(got, v1);
            ft_decref(got);
        }
    }
    assert_true(ft_is_shared_read(v1));
    assert_int_equal(ft_dict_len(d), NKEYS);
    assert_int_equal(ft_refcount(v1), 1 + NKEYS);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ft_dict_set(d, keys[7], v2), 0);
        assert_int_equal(ft_dict_set(d, keys[7], v1), 0);
    }
    assert_int_equal(ft_refcount(keys[7]), 2);
    assert_int_equal(ft_refcount(v1), 1 + NKEYS);
    assert_int_equal(ft_refcount(v2), 1);
    assert_int_equal(ft_dict_len(d), NKEYS);
    ft_decref(d);
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(ft_refcount(keys[i]), 1);
        ft_decref(keys[i]);
    }
    assert_int_equal(ft_refcount(v1), 1);
    ft_decref(v1);
    ft_decref(v2);
}

static void test_dict_order(void **state)
{
    (void)state;
    void *d = ft_dict_new();
    enum { N = 1000 };

    /* Insert, delete every third, re-insert some: order is insertion order
     * of the live keys (through several resizes). */
    for (int64_t i = 0; i < N; i++) {
        void *k = ft_int_from_i64(N - i);
        assert_int_equal(ft_dict_set(d, k, k), 0);
        ft_decref(k);
    }
    for (int64_t i = 0; i < N; i += 3) {
        void *k = ft_int_from_i64(N - i);
        assert_int_equal(ft_dict_del(d, k), 0);
        ft_decref(k);
    }
    void *again = ft_int_from_i64(N); /* was deleted (i == 0): goes last */
    assert_int_equal(ft_dict_set(d, again, again), 0);
    ft_decref(again);

    size_t pos = 0, count = 0;
    void *k, *v;
    int64_t prev = N + 1;
    bool saw_again = false;
    while (ft_dict_next(d, &pos, &k, &v)) {
        int64_t x = ft_int_as_i64(k);
        assert_ptr_equal(k, v);
        if (x == N) {
            saw_again = true;
            assert_int_equal(count, ft_dict_len(d) - 1); /* last */
        } else {
            assert_true(x < prev); /* inserted in decreasing order */
            assert_int_not_equal((N - x) % 3, 0);
            prev = x;
        }
        count++;
        ft_decref(k);
        ft_decref(v);
    }
    assert_true(saw_again);
    assert_int_equal(count, ft_dict_len(d));
    assert_int_equal(count, N - (N + 2) / 3 + 1);
    ft_decref(d);
}

static void test_dict_get_rooted(void **state)
{
    (void)state;
    void *d = ft_dict_new();
    void *k_def = ft_str_intern("deferred", 8);
    void *k_ord = ft_str_intern("ordinary", 8);
    void *k_imm = ft_str_intern("immortal", 8);
    void *k_missing = ft_str_intern("missing", 7);
    void *deferred = ft_list_new();
    void *ordinary = ft_list_new();
    void *slots[3] = { NULL, NULL, NULL };
    ft_roots_frame frame;

    ft_set_deferred(deferred);
    assert_int_equal(ft_dict_set(d, k_def, deferred), 0);
    assert_int_equal(ft_dict_set(d, k_ord, ordinary), 0);
    assert_int_equal(ft_dict_set(d, k_imm, ft_true()), 0);
    intptr_t def_count = ft_refcount(deferred);
    assert_int_equal(ft_refcount(ordinary), 2);

    ft_roots_push(&frame, slots, 3);
    assert_true(ft_dict_get_rooted(d, k_def, &slots[0]));
    assert_ptr_equal(slots[0], deferred);
    assert_int_equal(ft_refcount(deferred), def_count); /* not counted */
    assert_true(ft_dict_get_rooted(d, k_ord, &slots[1]));
    assert_ptr_equal(slots[1], ordinary);
    assert_int_equal(ft_refcount(ordinary), 3); /* counted */
    assert_true(ft_dict_get_rooted(d, k_imm, &slots[2]));
    assert_ptr_equal(slots[2], ft_true());
    for (int i = 0; i < 3; i++)
        ft_root_slot_clear(&slots[i]);
    assert_null(slots[0]);
    assert_int_equal(ft_refcount(deferred), def_count);
    assert_int_equal(ft_refcount(ordinary), 2);
    assert_false(ft_dict_get_rooted(d, k_missing, &slots[0]));
    assert_null(slots[0]);
    ft_roots_pop(&frame);

    ft_decref(d);
    assert_int_equal(ft_refcount(ordinary), 1);
    ft_decref(ordinary);
    ft_decref(deferred); /* deferred: left to the collector */
}

/* Bad keys: -EINVAL and a one-line message naming the type and the call. */
static void test_dict_bad_key(void **state)
{
    (void)state;
    void *d = ft_dict_new();
    void *l = ft_list_new();
    int fds[2];
    char buf[512];
    int saved;
    ssize_t n;

    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fds[1], 2);
    int rc_set = ft_dict_set(d, l, ft_none());
    void *got = ft_dict_get(d, ft_none());
    int rc_del = ft_dict_del(d, ft_tuple_new(0));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(rc_set, -EINVAL);
    assert_null(got);
    assert_int_equal(rc_del, -EINVAL);
    assert_non_null(strstr(buf, "ft_dict_set: unhashable key type 'list'"));
    assert_non_null(strstr(buf, "ft_dict_get: unhashable key type 'NoneType'"));
    assert_non_null(strstr(buf, "ft_dict_del: unhashable key type 'tuple'"));
    assert_int_equal(ft_dict_len(d), 0);
    assert_int_equal(ft_refcount(l), 1); /* not retained on failure */
    ft_decref(l);
    ft_decref(d);
}

static void dict_get_on_list(void *arg)
{
    (void)arg; /* the forked child inherits the attached runtime */
    ft_dict_get(ft_list_new(), ft_int_from_i64(1));
}

static void test_dict_misuse_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(dict_get_on_list, NULL, "ft_dict_get: object is not a dict (list)"));
}

/* ---- concurrency ------------------------------------------------------- */

static void *shared_dict;
static void *str_keys[NTHREADS * PER_THREAD];
static atomic_int gate;
static atomic_int errors;

static void wait_gate(void)
{
    atomic_fetch_add(&gate, 1);
    while (atomic_load(&gate) < NTHREADS) {
        ft_safepoint();
        sched_yield();
    }
}

/* Keys are k (int) or str_keys[k] (interned str for even k); values are
 * tuples (k, writer, round): a reader checks that the value belongs to the
 * key it looked up. */
static void *key_of(int k)
{
    return (k & 1) ? ft_int_from_i64(1000000 + k) : str_keys[k];
}

static void release_key(int k, void *key)
{
    if (k & 1)
        ft_decref(key);
}

static void *make_value(int k, int writer, int round)
{
    void *t = ft_tuple_new(3);
    ft_tuple_set(t, 0, ft_int_from_i64(1000000 + k));
    ft_tuple_set(t, 1, ft_int_from_i64(writer));
    ft_tuple_set(t, 2, ft_int_from_i64(round));
    return t;
}

static bool value_is_for(void *v, int k)
{
    if (ft_type_of(v) != &ft_tuple_type || ft_tuple_len(v) != 3)
        return false;
    void *kk = ft_tuple_get(v, 0);
    bool ok = ft_int_as_i64(kk) == 1000000 + k;
    ft_decref(kk);
    return ok;
}

static void check_lookup(int k, bool must_exist)
{
    void *key = key_of(k);
    void *v = ft_dict_get(shared_dict, key);

    if (v == NULL) {
        if (must_exist)
            atomic_fetch_add(&errors, 1);
    } else {
        if (!value_is_for(v, k))
            atomic_fetch_add(&errors, 1);
        ft_decref(v);
    }
    release_key(k, key);
}

/* Each thread owns keys [t*PER_THREAD, (t+1)*PER_THREAD): inserts them all,
 * overwrites them each round, deletes the odd-positioned ones in the last
 * round; meanwhile it reads its own keys (must exist) and others' keys (any
 * value must match its key). */
static void *dict_worker(void *p)
{
    int t = (int)(intptr_t)p;
    int base = t * PER_THREAD;
    unsigned seed = (unsigned)t * 2654435761u + 1;

    wait_gate();
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PER_THREAD; i++) {
            int k = base + i;
            void *key = key_of(k);
            void *v = make_value(k, t, round);

            if (ft_dict_set(shared_dict, key, v) != 0)
                atomic_fetch_add(&errors, 1);
            ft_decref(v);
            release_key(k, key);
            check_lookup(k, true);
            seed = seed * 1103515245u + 12345u;
            check_lookup((int)((seed >> 8) % (NTHREADS * PER_THREAD)), false);
            ft_safepoint();
        }
    }
    for (int i = 1; i < PER_THREAD; i += 2) {
        int k = base + i;
        void *key = key_of(k);
        if (ft_dict_del(shared_dict, key) != 0)
            atomic_fetch_add(&errors, 1);
        release_key(k, key);
        check_lookup(k - 1, true);
        ft_safepoint();
    }
    return NULL;
}

static void init_str_keys(void)
{
    char buf[32];

    for (int k = 0; k < NTHREADS * PER_THREAD; k += 2) {
        int len = snprintf(buf, sizeof buf, "key-%d", k);
        str_keys[k] = ft_str_intern(buf, (size_t)len);
    }
}

static void test_dict_concurrent(void **state)
{
    pthread_t threads[NTHREADS];

    (void)state;
    unsigned saved_threshold[3];

    /* Frequent young collections: the collector traverses these containers
     * with the world stopped while the workers are mid-way through writes. */
    ft_gc_get_threshold(saved_threshold);
    ft_gc_set_threshold(50, 2, 2);
    init_str_keys();
    shared_dict = ft_dict_new();
    atomic_store(&gate, 0);
    atomic_store(&errors, 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_start(&threads[t], dict_worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_join(threads[t], NULL), 0);
    assert_int_equal(atomic_load(&errors), 0);

    /* Exactly the even-positioned keys remain, each with its last value. */
    assert_int_equal(ft_dict_len(shared_dict), NTHREADS * PER_THREAD / 2);
    for (int k = 0; k < NTHREADS * PER_THREAD; k++) {
        void *key = key_of(k);
        void *v = ft_dict_get(shared_dict, key);
        if ((k % PER_THREAD) % 2 == 0) {
            assert_non_null(v);
            assert_true(value_is_for(v, k));
            void *round = ft_tuple_get(v, 2);
            assert_int_equal(ft_int_as_i64(round), ROUNDS - 1);
            ft_decref(v);
        } else {
            assert_null(v);
        }
        release_key(k, key);
    }
    size_t pos = 0, count = 0;
    void *k, *v;
    while (ft_dict_next(shared_dict, &pos, &k, &v)) {
        count++;
        ft_decref(k);
        ft_decref(v);
    }
    assert_int_equal(count, NTHREADS * PER_THREAD / 2);
    ft_gc_set_threshold(saved_threshold[0], saved_threshold[1], saved_threshold[2]);
    ft_decref(shared_dict);
}

/* All threads write the same few keys (set, overwrite, delete) and read
 * them: every value read belongs to its key; at the end len equals the
 * number of keys found, and iteration yields exactly those. */
#define HOT_KEYS 16
#define HOT_OPS (FT_CFG_TSAN ? 3000 : 40000)

static void *hot_worker(void *p)
{
    int t = (int)(intptr_t)p;
    unsigned seed = (unsigned)t * 747796405u + 2891336453u;

    wait_gate();
    for (int i = 0; i < HOT_OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 8) % HOT_KEYS);
        unsigned op = (seed >> 20) % 8;
        void *key = key_of(k);

        if (op < 3) {
            void *v = make_value(k, t, i);
            if (ft_dict_set(shared_dict, key, v) != 0)
                atomic_fetch_add(&errors, 1);
            ft_decref(v);
        } else if (op == 3) {
            int rc = ft_dict_del(shared_dict, key);
            if (rc != 0 && rc != -ENOENT)
                atomic_fetch_add(&errors, 1);
        } else {
            check_lookup(k, false);
        }
        release_key(k, key);
        if ((i & 63) == 0)
            ft_safepoint();
    }
    return NULL;
}

static void test_dict_contended_keys(void **state)
{
    pthread_t threads[NTHREADS];

    (void)state;
    init_str_keys();
    shared_dict = ft_dict_new();
    atomic_store(&gate, 0);
    atomic_store(&errors, 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_start(&threads[t], hot_worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(ft_thread_join(threads[t], NULL), 0);
    assert_int_equal(atomic_load(&errors), 0);
    size_t found = 0;
    for (int k = 0; k < HOT_KEYS; k++) {
        void *key = key_of(k);
        void *v = ft_dict_get(shared_dict, key);
        if (v != NULL) {
            assert_true(value_is_for(v, k));
            found++;
            ft_decref(v);
        }
        release_key(k, key);
    }
    assert_int_equal(ft_dict_len(shared_dict), found);
    size_t pos = 0, count = 0;
    void *k, *v;
    while (ft_dict_next(shared_dict, &pos, &k, &v)) {
        count++;
        ft_decref(k);
        ft_decref(v);
    }
    assert_int_equal(count, found);
    ft_decref(shared_dict);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dict_api),
        cmocka_unit_test(test_dict_set_paths),
        cmocka_unit_test(test_dict_order),
        cmocka_unit_test(test_dict_get_rooted),
        cmocka_unit_test(test_dict_bad_key),
        cmocka_unit_test(test_dict_misuse_aborts),
        cmocka_unit_test(test_dict_concurrent),
        cmocka_unit_test(test_dict_contended_keys),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
