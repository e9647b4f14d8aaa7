/* int.c - boxed 64-bit integers with a cache of immortal small ints.
 *
 * -5..256 are static objects, so ft_int_from_i64 of a small value allocates
 * nothing and returns the same pointer on every thread (identity). They are
 * filled in by fti_int_init, which runs in ft_init before any thread is
 * attached; attaching synchronises with ft_init, so every attached thread
 * sees them complete. Other values are fresh heap objects, immutable once
 * returned. */
#include "builtins_int.h"

#include "thread/thread.h"

#define SMALL_INT_MIN (-5)
#define SMALL_INT_MAX 256

const ft_type ft_int_type = {
    .name = "int",
    .size = sizeof(fti_int),
};

/* Written by fti_int_init only (single-threaded, in ft_init); read-only after. */
static fti_int small_ints[SMALL_INT_MAX - SMALL_INT_MIN + 1];

void fti_int_init(void)
{
    for (int64_t v = SMALL_INT_MIN; v <= SMALL_INT_MAX; v++) {
        fti_int *o = &small_ints[v - SMALL_INT_MIN];
        ft_object head = FTI_STATIC_HEAD(&ft_int_type);

        o->ob = head;
        o->value = v;
    }
}

void *ft_int_from_i64(int64_t v)
{
    fti_int *o;

    if (v >= SMALL_INT_MIN && v <= SMALL_INT_MAX)
        return &small_ints[v - SMALL_INT_MIN];
    FT_ASSERT_ATTACHED();
    o = ft_new(&ft_int_type);
    if (o == NULL)
        return NULL;
    o->value = v;
    return o;
}

int64_t ft_int_as_i64(const void *o)
{
    FT_CHECK(o != NULL, "ft_int_as_i64: NULL object (expected int)");
    FT_CHECK(ft_type_of(o) == &ft_int_type, "ft_int_as_i64: object is not an int (%s)",
             ft_type_of(o)->name);
    return ((const fti_int *)o)->value;
}
