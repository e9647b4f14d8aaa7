/* tuple.c - fixed-size tuples; ft_tuple_new(0) is one immortal empty tuple.
 *
 * A tuple is filled with ft_tuple_set by its creator before it is shared and
 * is read-only afterwards, so ft_tuple_get needs no lock: the caller's
 * reference to the tuple keeps the items alive. The collector's clear runs
 * only on unreachable tuples, which no other thread can read. */
#include "builtins_int.h"

#include "thread/thread.h"

#include <errno.h>

static int tuple_traverse(void *self, ft_visit_fn visit, void *arg)
{
    fti_tuple *t = self;

    for (size_t i = 0; i < t->size; i++) {
        if (t->items[i] != NULL) {
            int rc = visit(t->items[i], arg);

            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static void tuple_clear(void *self)
{
    fti_tuple *t = self;

    for (size_t i = 0; i < t->size; i++) {
        ft_object *item = t->items[i];

        t->items[i] = NULL;
        ft_xdecref(item);
    }
}

static size_t tuple_size_of(const void *self)
{
    return ((const fti_tuple *)self)->size * sizeof(ft_object *);
}

const ft_type ft_tuple_type = {
    .name = "tuple",
    .size = sizeof(fti_tuple),
    .flags = FT_TYPE_GC,
    .traverse = tuple_traverse,
    .clear = tuple_clear,
    .size_of = tuple_size_of,
};

static fti_tuple empty_tuple = {
    .ob = FTI_STATIC_HEAD(&ft_tuple_type),
    .size = 0,
};

void *ft_tuple_new(size_t n)
{
    fti_tuple *t;

    if (n == 0)
        return &empty_tuple;
    FT_ASSERT_ATTACHED();
    if (n > (SIZE_MAX - sizeof(fti_tuple)) / sizeof(ft_object *))
        return NULL;
    t = ft_new_var(&ft_tuple_type, n * sizeof(ft_object *));
    if (t == NULL)
        return NULL;
    t->size = n;
    return t;
}

static fti_tuple *as_tuple(const void *o, const char *call)
{
    FT_CHECK(o != NULL, "%s: NULL object (expected tuple)", call);
    FT_CHECK(ft_type_of(o) == &ft_tuple_type, "%s: object is not a tuple (%s)", call,
             ft_type_of(o)->name);
    return (fti_tuple *)o;
}

int ft_tuple_set(void *tuple, size_t index, void *item)
{
    fti_tuple *t = as_tuple(tuple, "ft_tuple_set");
    ft_object *old;

    FT_ASSERT_ATTACHED();
    FT_CHECK(item != NULL, "ft_tuple_set: NULL item (tuple)");
    if (index >= t->size) {
        /* The reference is stolen in every case (as PyTuple_SetItem). */
        ft_decref(item);
        return -ERANGE;
    }
    old = t->items[index];
    t->items[index] = item;
    ft_xdecref(old);
    return 0;
}

void *ft_tuple_get(const void *tuple, size_t index)
{
    fti_tuple *t = as_tuple(tuple, "ft_tuple_get");
    ft_object *item;

    FT_ASSERT_ATTACHED();
    if (index >= t->size) {
        errno = ERANGE;
        return NULL;
    }
    item = t->items[index];
    if (item != NULL)
        ft_incref(item);
    return item;
}

size_t ft_tuple_len(const void *tuple)
{
    return as_tuple(tuple, "ft_tuple_len")->size;
}
