/* test_critical_section.c - per-object critical sections: nesting,
 * re-entry, the two-object form, suspension while blocking, and the
 * classic deadlock (each thread holds one object's section and then wants
 * the other's) that suspension must prevent. */
#include <stdbool.h>

#include "ft_test.h"

#include "ft_config.h"
#include "ftrt/lock.h"
#include "ftrt/object.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

#include <pthread.h>
#include <stdatomic.h>

/* Only ob_mutex of these headers is used by critical sections. */
static ft_object obj_x;
static ft_object obj_y;

static ft_mutex *mutex_of(ft_object *o)
{
    return (ft_mutex *)(void *)&o->ob_mutex;
}

static void test_nesting_and_reentry(void **state)
{
    ft_critical_section a, b, c;

    (void)state;
    ft_critical_section_begin(&a, &obj_x);
    assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
    ft_critical_section_begin(&b, &obj_x); /* re-entry: no self-deadlock */
    ft_critical_section_begin(&c, &obj_y);
    assert_true(ft_mutex_is_locked(mutex_of(&obj_y)));
    ft_critical_section_end(&c);
    assert_false(ft_mutex_is_locked(mutex_of(&obj_y)));
    ft_critical_section_end(&b);
    assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
    ft_critical_section_end(&a);
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
    assert_null(ft_tls_head.critical_section);
}

static void test_two_object_form(void **state)
{
    (void)state;
    FT_CRITICAL_SECTION2_BEGIN(&obj_y, &obj_x)
        assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
        assert_true(ft_mutex_is_locked(mutex_of(&obj_y)));
    FT_CRITICAL_SECTION2_END
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
    assert_false(ft_mutex_is_locked(mutex_of(&obj_y)));
    FT_CRITICAL_SECTION2_BEGIN(&obj_x, &obj_x) /* same object: one lock */
        assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
    FT_CRITICAL_SECTION2_END
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
}

static void end_wrong_section(void *arg)
{
    ft_critical_section a, b;

    (void)arg;
    ft_critical_section_begin(&a, &obj_x);
    ft_critical_section_begin(&b, &obj_y);
    ft_critical_section_end(&a);
}

static void test_end_not_innermost_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(end_wrong_section, NULL,
                                    "ft_critical_section_end: section"));
}

static void begin_null(void *arg)
{
    ft_critical_section a;

    (void)arg;
    ft_critical_section_begin(&a, NULL);
}

static void test_begin_null_aborts(void **state)
{
    (void)state;
    assert_true(ft_test_aborts_with(begin_null, NULL, "ft_critical_section_begin: NULL object"));
}

/* The inline begin tries its CAS first: re-entering an object held by an
 * enclosing two-object section must lock nothing (the CAS fails, the slow
 * path finds the mutex held by the innermost section). */
static void test_reentry_into_two_object_section(void **state)
{
    ft_critical_section a, b, c;

    (void)state;
    ft_critical_section_begin2(&a, &obj_x, &obj_y);
    ft_critical_section_begin(&b, &obj_y);
    ft_critical_section_begin(&c, &obj_x);
    ft_critical_section_end(&c);
    ft_critical_section_end(&b);
    assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
    assert_true(ft_mutex_is_locked(mutex_of(&obj_y)));
    ft_critical_section_end(&a);
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
    assert_false(ft_mutex_is_locked(mutex_of(&obj_y)));
    assert_null(ft_tls_head.critical_section);
}

/* A blocking region suspends both sections and resumes only the innermost;
 * the inline end of the inner one re-locks the suspended outer one. */
static void test_inline_end_resumes_outer(void **state)
{
    ft_critical_section outer, inner;

    (void)state;
    ft_critical_section_begin(&outer, &obj_x);
    ft_critical_section_begin(&inner, &obj_y);
    ft_blocking_begin();
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
    assert_false(ft_mutex_is_locked(mutex_of(&obj_y)));
    ft_blocking_end();
    assert_true(ft_mutex_is_locked(mutex_of(&obj_y)));
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
    ft_critical_section_end(&inner);
    assert_false(ft_mutex_is_locked(mutex_of(&obj_y)));
    assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
    ft_critical_section_end(&outer);
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
    assert_null(ft_tls_head.critical_section);
}

/* Suspension while blocking: the section's lock is free during the
 * blocking region and held again after it. */
static _Atomic int other_locked_x;

static void *lock_x_once(void *arg)
{
    (void)arg;
    FT_CRITICAL_SECTION_BEGIN(&obj_x)
        atomic_store(&other_locked_x, 1);
    FT_CRITICAL_SECTION_END
    return NULL;
}

static void test_suspended_while_blocking(void **state)
{
    pthread_t t;

    (void)state;
    FT_CRITICAL_SECTION_BEGIN(&obj_x)
        assert_int_equal(ft_thread_start(&t, lock_x_once, NULL), 0);
        ft_blocking_begin();
        while (!atomic_load(&other_locked_x))
            usleep(1000);
        pthread_join(t, NULL);
        ft_blocking_end();
        assert_true(ft_mutex_is_locked(mutex_of(&obj_x)));
        assert_non_null(ft_tls_head.critical_section);
    FT_CRITICAL_SECTION_END
    assert_false(ft_mutex_is_locked(mutex_of(&obj_x)));
}

/* Each thread holds one object's section, waits until the other holds its
 * own, then enters the other object's section: without suspension this is
 * the textbook deadlock. Both variants: a plain contended lock (park) and an
 * explicit blocking region. */
#define ROUNDS (FT_CFG_TSAN ? 50 : 300)

static _Atomic int barrier_count;
/* Written only in the innermost section of their object: an outer section
 * may be suspended while an inner one waits (PEP 703), so only the innermost
 * lock is guaranteed held. */
static long shared_x; /* protected by obj_x's sections */
static long shared_y; /* protected by obj_y's sections */

/* Waiting for the other thread is blocking: the outer section is suspended
 * meanwhile (a thread one round behind may need it) and re-taken after. */
static void rendezvous(int round)
{
    atomic_fetch_add(&barrier_count, 1);
    while (atomic_load(&barrier_count) < 2 * (round + 1))
        FT_BLOCKING(sched_yield());
}

static void *cross(void *arg)
{
    bool x_first = arg != NULL;
    ft_object *first = x_first ? &obj_x : &obj_y;
    ft_object *second = x_first ? &obj_y : &obj_x;

    for (int r = 0; r < ROUNDS; r++) {
        ft_critical_section outer, inner;

        ft_critical_section_begin(&outer, first);
        rendezvous(r);
        if (r & 1)
            FT_BLOCKING(sched_yield());
        ft_critical_section_begin(&inner, second);
        if (x_first)
            shared_y++;
        else
            shared_x++;
        ft_critical_section_end(&inner);
        ft_critical_section_end(&outer);
    }
    return NULL;
}

static void test_no_deadlock_between_two_sections(void **state)
{
    pthread_t a, b;

    (void)state;
    atomic_store(&barrier_count, 0);
    shared_x = shared_y = 0;
    assert_int_equal(ft_thread_start(&a, cross, (void *)1), 0);
    assert_int_equal(ft_thread_start(&b, cross, NULL), 0);
    assert_int_equal(ft_thread_join(a, NULL), 0);
    assert_int_equal(ft_thread_join(b, NULL), 0);
    assert_int_equal(shared_x, ROUNDS);
    assert_int_equal(shared_y, ROUNDS);
}

/* Writers under the two-object form against writers of single sections:
 * every update of the pair is atomic. */
#define PAIR_ITERS (FT_CFG_TSAN ? 5000 : 50000)
static long pair_a, pair_b; /* pair_a == pair_b whenever both sections are free */

static void *pair_writer(void *arg)
{
    for (int i = 0; i < PAIR_ITERS; i++) {
        if (arg != NULL) {
            FT_CRITICAL_SECTION2_BEGIN(&obj_x, &obj_y)
                assert_int_equal(pair_a, pair_b);
                pair_a++;
                pair_b++;
            FT_CRITICAL_SECTION2_END
        } else {
            FT_CRITICAL_SECTION_BEGIN(&obj_x)
                FT_CRITICAL_SECTION_BEGIN(&obj_y)
                    assert_int_equal(pair_a, pair_b);
                    pair_a++;
                    pair_b++;
                FT_CRITICAL_SECTION_END
            FT_CRITICAL_SECTION_END
        }
        ft_safepoint();
    }
    return NULL;
}

static void test_two_object_writers(void **state)
{
    pthread_t t[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(ft_thread_start(&t[i], pair_writer, (i & 1) ? (void *)1 : NULL), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ft_thread_join(t[i], NULL), 0);
    assert_int_equal(pair_a, 4L * PAIR_ITERS);
    assert_int_equal(pair_b, 4L * PAIR_ITERS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nesting_and_reentry),
        cmocka_unit_test(test_two_object_form),
        cmocka_unit_test(test_end_not_innermost_aborts),
        cmocka_unit_test(test_begin_null_aborts),
        cmocka_unit_test(test_reentry_into_two_object_section),
        cmocka_unit_test(test_inline_end_resumes_outer),
        cmocka_unit_test(test_suspended_while_blocking),
        cmocka_unit_test(test_no_deadlock_between_two_sections),
        cmocka_unit_test(test_two_object_writers),
    };
    return cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down);
}
