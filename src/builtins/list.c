/* list.c - growable lists, safe for concurrent use.
 *
 * Writers (append, set, pop, clear) hold the list's critical section.
 * Readers of get and len take no lock (CPython's list_get_item_ref):
 *
 *   size  = load_acquire(list->size)
 *   items = load_acquire(list->items)      storage, with its capacity
 *   item  = load_acquire(items->slots[i])  i < size, i < capacity
 *   ft_try_incref(item), then re-check that slots[i] and list->items still
 *   hold what we read; on any failure fall back to a locked read.
 *
 * Why it is correct:
 *   - Invariant (under the section): size <= capacity, slots[i] != NULL for
 *     i < size and slots[i] == NULL for size <= i < capacity; a slot's object
 *     holds one reference owned by the list.
 *   - A writer fills a slot (release) before it publishes a larger size
 *     (release), and publishes new storage (release) after copying into it,
 *     so a reader that acquires size or items sees initialised slots.
 *   - Old storage is freed with fti_qsbr_free_delayed: a reader is an
 *     attached thread between safepoints, so storage it loaded stays
 *     readable until it passes a quiescent state.
 *   - An item removed from its slot may be dying or dead, its block even
 *     reused by a newer object of the same size: object memory is
 *     type-stable (ftrt/object.h, ft_try_incref). ft_try_incref fails on a
 *     dead header, and items are marked shared-read before they are stored,
 *     so it never fails on a live one. Success plus the re-check means the
 *     item was in the list at the moment of the re-check, and we hold a
 *     reference (to a newer object, the re-check fails and we drop it).
 * References are never released inside the section: a decref can run
 * arbitrary deallocation, which could try to lock this same list. Replaced
 * storage is also retired after the section, so a grace period forced by the
 * QSBR budget never waits while we hold the list's lock. */
#include "builtins_int.h"

#include "ft_atomic.h"
#include "ftrt/lock.h"
#include "ftrt/mem.h"
#include "object/object.h"
#include "thread/thread.h"

#include <errno.h>
#include <string.h>

typedef struct list_storage {
    size_t capacity;                 /* immutable after allocation */
    _Atomic(ft_object *) slots[];    /* writers under the list's section; readers acquire */
} list_storage;

typedef struct fti_list {
    ft_object ob;
    _Atomic(list_storage *) storage; /* writers under the section (release); readers acquire */
    _Atomic size_t size;             /* writers under the section (release); readers acquire */
} fti_list;

static size_t storage_bytes(size_t capacity)
{
    return sizeof(list_storage) + capacity * sizeof(ft_object *);
}

static int list_traverse(void *self, ft_visit_fn visit, void *arg)
{
    fti_list *l = self;
    /* relaxed: traverse runs with the world stopped or on an object being
     * deallocated, so no writer runs concurrently. */
    list_storage *st = ft_atomic_load_relaxed(&l->storage);
    size_t n = ft_atomic_load_relaxed(&l->size);

    for (size_t i = 0; i < n; i++) {
        /* relaxed: as above. */
        ft_object *item = ft_atomic_load_relaxed(&st->slots[i]);

        if (item != NULL) {
            int rc = visit(item, arg);

            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static void list_clear(void *self)
{
    fti_list *l = self;
    list_storage *st;
    size_t n;

    FT_CRITICAL_SECTION_BEGIN(l)
    /* relaxed: we hold the section, the only writer. */
    st = ft_atomic_load_relaxed(&l->storage);
    n = ft_atomic_load_relaxed(&l->size);
    /* release: pairs with the acquire loads of lock-free readers. */
    ft_atomic_store_release(&l->size, 0);
    ft_atomic_store_release(&l->storage, NULL);
    FT_CRITICAL_SECTION_END
    if (st == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        /* relaxed: the storage is unpublished; only we release its items. */
        ft_xdecref(ft_atomic_load_relaxed(&st->slots[i]));
    }
    fti_qsbr_free_delayed(st, storage_bytes(st->capacity));
}

static void list_dealloc(void *self)
{
    fti_list *l = self;
    /* relaxed: the count reached zero; no other thread holds the list, and
     * readers only reach the storage through a reference. Items were already
     * released through traverse. */
    list_storage *st = ft_atomic_load_relaxed(&l->storage);

    if (st != NULL)
        ft_free(st);
}

static size_t list_size_of(const void *self)
{
    /* relaxed: a size report, racy by nature (sys.getsizeof). */
    list_storage *st = ft_atomic_load_relaxed(&((fti_list *)self)->storage);

    return st != NULL ? storage_bytes(st->capacity) : 0;
}

const ft_type ft_list_type = {
    .name = "list",
    .size = sizeof(fti_list),
    .flags = FT_TYPE_GC,
    .traverse = list_traverse,
    .clear = list_clear,
    .dealloc = list_dealloc,
    .size_of = list_size_of,
};

static fti_list *as_list(void *o, const char *call)
{
    FT_CHECK(o != NULL, "%s: NULL object (expected list)", call);
    FT_CHECK(ft_type_of(o) == &ft_list_type, "%s: object is not a list (%s)", call,
             ft_type_of(o)->name);
    FT_ASSERT_ATTACHED();
    return o;
}

void *ft_list_new(void)
{
    FT_ASSERT_ATTACHED();
    return ft_new(&ft_list_type);
}

/* Under the section: makes room for one more item. Replaced storage goes
 * to *retired, for the caller to free through QSBR once the section ended
 * (a forced grace period never runs while we hold the list's lock, and the
 * list is never left half-updated across a call that may wait). */
static int list_reserve_one(fti_list *l, size_t n, list_storage **retired)
{
    /* relaxed: we hold the section, the only writer. */
    list_storage *old = ft_atomic_load_relaxed(&l->storage);
    size_t cap = old != NULL ? old->capacity : 0;
    list_storage *st;

    if (n < cap)
        return 0;
    cap = cap < 4 ? 4 : cap + cap / 2 + 4;
    if (cap > (SIZE_MAX - sizeof(list_storage)) / sizeof(ft_object *))
        return -ENOMEM;
    st = ft_malloc(storage_bytes(cap));
    if (st == NULL)
        return -ENOMEM;
    st->capacity = cap;
    for (size_t i = 0; i < cap; i++) {
        /* relaxed (both): the old slots are ours to read under the section;
         * the new storage is published by the release store below. */
        ft_object *item = i < n ? ft_atomic_load_relaxed(&old->slots[i]) : NULL;

        ft_atomic_store_relaxed(&st->slots[i], item);
    }
    /* release: pairs with the acquire in list_get; the copied slots are
     * visible to whoever sees the new storage. */
    ft_atomic_store_release(&l->storage, st);
    *retired = old;
    return 0;
}

/* After the section: frees storage replaced under it, once every thread has
 * passed a quiescent state (lock-free readers may still hold it). */
static void list_retire(list_storage *old)
{
    if (old != NULL)
        fti_qsbr_free_delayed(old, storage_bytes(old->capacity));
}

int ft_list_append(void *list, void *item)
{
    fti_list *l = as_list(list, "ft_list_append");
    list_storage *retired = NULL;
    int rc;

    FT_CHECK(item != NULL, "ft_list_append: NULL item (list)");
    ft_incref(item);
    fti_mark_shared_read(item); /* ft_list_get reads slots lock-free */
    FT_CRITICAL_SECTION_BEGIN(l)
    /* relaxed: we hold the section, the only writer. */
    size_t n = ft_atomic_load_relaxed(&l->size);

    rc = list_reserve_one(l, n, &retired);
    if (rc == 0) {
        /* relaxed: we hold the section. */
        list_storage *st = ft_atomic_load_relaxed(&l->storage);

        /* release: pairs with the acquire of the slot in list_get (the
         * item's contents are visible with the pointer). */
        ft_atomic_store_release(&st->slots[n], (ft_object *)item);
        /* release: pairs with the acquire of size in list_get; the slot is
         * filled before the size covers it. */
        ft_atomic_store_release(&l->size, n + 1);
    }
    FT_CRITICAL_SECTION_END
    list_retire(retired);
    if (rc != 0)
        ft_decref(item);
    return rc;
}

/* Normalises a possibly negative index against n; false when out of range. */
static bool list_index(ssize_t index, size_t n, size_t *out)
{
    if (index < 0) {
        if ((size_t)(-(index + 1)) >= n)
            return false;
        *out = n - (size_t)(-(index + 1)) - 1;
        return true;
    }
    if ((size_t)index >= n)
        return false;
    *out = (size_t)index;
    return true;
}

static void *list_get_locked(fti_list *l, ssize_t index)
{
    ft_object *item = NULL;
    size_t i;

    FT_CRITICAL_SECTION_BEGIN(l)
    /* relaxed (both): we hold the section, writers are excluded. */
    size_t n = ft_atomic_load_relaxed(&l->size);

    if (list_index(index, n, &i)) {
        list_storage *st = ft_atomic_load_relaxed(&l->storage);

        /* relaxed: as above. */
        item = ft_atomic_load_relaxed(&st->slots[i]);
        ft_incref(item);
    }
    FT_CRITICAL_SECTION_END
    if (item == NULL)
        errno = ERANGE;
    return item;
}

void *ft_list_get(void *list, ssize_t index)
{
    fti_list *l = as_list(list, "ft_list_get");
    /* acquire: pairs with the release of size in append/pop. */
    size_t n = ft_atomic_load_acquire(&l->size);
    /* acquire: pairs with the release of new storage in list_reserve_one. */
    list_storage *st = ft_atomic_load_acquire(&l->storage);
    size_t i;

    if (!list_index(index, n, &i)) {
        errno = ERANGE;
        return NULL;
    }
    if (st != NULL && i < st->capacity) {
        /* acquire: pairs with the release store that put the item there. */
        ft_object *item = ft_atomic_load_acquire(&st->slots[i]);

        if (item != NULL && ft_try_incref(item)) {
            /* acquire (both): re-check; an item still in its slot, in the
             * current storage, after we took our reference, was in the list
             * at that moment. */
            if (item == ft_atomic_load_acquire(&st->slots[i]) &&
                st == ft_atomic_load_acquire(&l->storage))
                return item;
            ft_decref(item);
        }
    }
    return list_get_locked(l, index);
}

int ft_list_set(void *list, ssize_t index, void *item)
{
    fti_list *l = as_list(list, "ft_list_set");
    ft_object *old = NULL;
    int rc = 0;
    size_t i;

    FT_CHECK(item != NULL, "ft_list_set: NULL item (list)");
    ft_incref(item);
    fti_mark_shared_read(item); /* ft_list_get reads slots lock-free */
    FT_CRITICAL_SECTION_BEGIN(l)
    /* relaxed (both): we hold the section, the only writer. */
    size_t n = ft_atomic_load_relaxed(&l->size);

    if (list_index(index, n, &i)) {
        list_storage *st = ft_atomic_load_relaxed(&l->storage);

        /* relaxed: our own slot under the section. */
        old = ft_atomic_load_relaxed(&st->slots[i]);
        /* release: pairs with the acquire of the slot in ft_list_get. */
        ft_atomic_store_release(&st->slots[i], (ft_object *)item);
    } else {
        rc = -ERANGE;
    }
    FT_CRITICAL_SECTION_END
    if (rc != 0)
        ft_decref(item);
    else
        ft_decref(old);
    return rc;
}

/* Under the section, after a pop left n items: storage more than four
 * times too large is replaced by one with half its capacity (as CPython's
 * list_resize), so a list that shrank does not pin its peak memory. Returns
 * the replaced storage (to retire after the section) or NULL; on
 * out-of-memory the old storage simply stays. */
static list_storage *list_maybe_shrink(fti_list *l, size_t n)
{
    /* relaxed: we hold the section, the only writer. */
    list_storage *old = ft_atomic_load_relaxed(&l->storage);
    size_t cap;
    list_storage *st;

    if (old == NULL || old->capacity <= 16 || n >= old->capacity / 4)
        return NULL;
    cap = old->capacity / 2;
    st = ft_malloc(storage_bytes(cap));
    if (st == NULL)
        return NULL;
    st->capacity = cap;
    for (size_t i = 0; i < cap; i++) {
        /* relaxed (both): as in list_reserve_one. */
        ft_object *item = i < n ? ft_atomic_load_relaxed(&old->slots[i]) : NULL;

        ft_atomic_store_relaxed(&st->slots[i], item);
    }
    /* release: pairs with the acquire in ft_list_get, as in list_reserve_one. */
    ft_atomic_store_release(&l->storage, st);
    return old; /* retired: the caller frees it after the section */
}

void *ft_list_pop(void *list)
{
    fti_list *l = as_list(list, "ft_list_pop");
    ft_object *item = NULL;
    list_storage *retired = NULL;

    FT_CRITICAL_SECTION_BEGIN(l)
    /* relaxed: we hold the section, the only writer. */
    size_t n = ft_atomic_load_relaxed(&l->size);

    if (n > 0) {
        /* relaxed: as above. */
        list_storage *st = ft_atomic_load_relaxed(&l->storage);

        /* relaxed: our own slot under the section. */
        item = ft_atomic_load_relaxed(&st->slots[n - 1]);
        /* release (both): pairs with the acquire loads in ft_list_get; a
         * reader that still sees the old size finds NULL and locks. */
        ft_atomic_store_release(&st->slots[n - 1], NULL);
        ft_atomic_store_release(&l->size, n - 1);
        retired = list_maybe_shrink(l, n - 1);
    }
    FT_CRITICAL_SECTION_END
    list_retire(retired);
    return item; /* the list's reference passes to the caller */
}

size_t ft_list_len(void *list)
{
    fti_list *l = as_list(list, "ft_list_len");

    /* acquire: pairs with the release of size in append/pop, so a caller
     * that then reads index len-1 sees that slot filled. */
    return ft_atomic_load_acquire(&l->size);
}
