/* weakvaluemap.c - a map from str/int keys to weakly held values; an entry
 * disappears when its value dies (Python's WeakValueDictionary).
 *
 * The map holds a dict from key to weakref. Each weakref's callback removes
 * the entry that still holds that weakref. The difficulty is the callback's
 * argument: a callback may run at any time after the value died - even
 * after the map dropped the weakref, because under biased counting a
 * weakref whose last reference was dropped by a non-owner is dead only once
 * its owner merges it, and until then clearing the value's weakrefs can
 * still take a reference to it and run its callback. So the argument must
 * not be a pointer the callback trusts. It is the map's id (never reused);
 * the callback looks the id up in a registry of live maps and takes a
 * reference with ft_try_incref under the registry lock:
 *   - a map is in the registry from creation until its deallocation, which
 *     removes it under the lock before its memory is released, so a
 *     pointer found there is readable;
 *   - the map is marked shared-read, so ft_try_incref from any thread
 *     succeeds while it lives and fails once its count reached zero: a callback
 *     never revives a dying map; if it succeeds the map stays alive while
 *     the callback uses it.
 * A late callback for a weakref the map already replaced finds no entry
 * holding it and does nothing. Every change to the dict is one atomic dict
 * operation (fti_dict_swap, fti_dict_pop_value), never two in a row relying
 * on an outer lock: a critical section is suspended while its thread blocks
 * (PEP 703). */
#include "builtins_int.h"

#include "ft_atomic.h"
#include "ftrt/weakref.h"
#include "thread/thread.h"

#include <errno.h>
#include <pthread.h>

#define REGISTRY_BUCKETS 256

typedef struct fti_weakvaluemap {
    ft_object ob;
    void *dict;                        /* key -> weakref; immutable pointer, released via traverse */
    uint64_t id;                       /* immutable; the callbacks' argument */
    struct fti_weakvaluemap *reg_next; /* registry chain (registry_lock) */
} fti_weakvaluemap;

/* Live maps by id. A plain mutex: held for a few loads and one CAS, never
 * across a safepoint or a blocking call, so it cannot delay a stop-the-world. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static fti_weakvaluemap *registry[REGISTRY_BUCKETS]; /* (registry_lock) */
static _Atomic uint64_t next_map_id = 1;

static void registry_add(fti_weakvaluemap *m)
{
    fti_weakvaluemap **bucket = &registry[m->id % REGISTRY_BUCKETS];

    pthread_mutex_lock(&registry_lock);
    m->reg_next = *bucket;
    *bucket = m;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(fti_weakvaluemap *m)
{
    fti_weakvaluemap **link = &registry[m->id % REGISTRY_BUCKETS];

    pthread_mutex_lock(&registry_lock);
    while (*link != NULL && *link != m)
        link = &(*link)->reg_next;
    if (*link == m)
        *link = m->reg_next;
    pthread_mutex_unlock(&registry_lock);
}

/* A new reference to the live map with this id, or NULL. */
static fti_weakvaluemap *registry_get(uint64_t id)
{
    fti_weakvaluemap *m;

    pthread_mutex_lock(&registry_lock);
    for (m = registry[id % REGISTRY_BUCKETS]; m != NULL; m = m->reg_next)
        if (m->id == id)
            break;
    if (m != NULL && !ft_try_incref(m))
        m = NULL; /* dying: its deallocation is about to unregister it */
    pthread_mutex_unlock(&registry_lock);
    return m;
}

static int map_traverse(void *self, ft_visit_fn visit, void *arg)
{
    fti_weakvaluemap *m = self;

    return m->dict != NULL ? visit(m->dict, arg) : 0;
}

static void map_dealloc(void *self)
{
    /* The dict (and with it every weakref) was released through traverse. */
    registry_remove(self);
}

/* Not a GC type: values are weak and keys are str or int, so no cycle can
 * pass through a map. */
const ft_type ft_weakvaluemap_type = {
    .name = "weakvaluemap",
    .size = sizeof(fti_weakvaluemap),
    .traverse = map_traverse,
    .dealloc = map_dealloc,
};

static fti_weakvaluemap *as_map(void *o, const char *call)
{
    FT_CHECK(o != NULL, "%s: NULL object (expected weakvaluemap)", call);
    FT_CHECK(ft_type_of(o) == &ft_weakvaluemap_type, "%s: object is not a weakvaluemap (%s)", call,
             ft_type_of(o)->name);
    FT_ASSERT_ATTACHED();
    return o;
}

static bool check_map_key(const void *key, const char *call)
{
    FT_CHECK(key != NULL, "%s: NULL key (weakvaluemap)", call);
    if (fti_is_key_type(key))
        return true;
    fti_warn("%s: unhashable key type '%s' (keys are str or int)", call, ft_type_of(key)->name);
    return false;
}

void *ft_weakvaluemap_new(void)
{
    fti_weakvaluemap *m;
    void *dict;

    FT_ASSERT_ATTACHED();
    dict = ft_dict_new();
    if (dict == NULL)
        return NULL;
    m = ft_new(&ft_weakvaluemap_type);
    if (m == NULL) {
        ft_decref(dict);
        return NULL;
    }
    m->dict = dict;
    /* relaxed: a unique number; nothing is published through it. */
    m->id = ft_atomic_fetch_add_relaxed(&next_map_id, 1);
    /* Callbacks on other threads reach it through the registry, without a
     * counted reference, and take one with ft_try_incref. */
    ft_set_shared_read(m);
    registry_add(m);
    return m;
}

/* The value died: remove the entry that still holds this weakref, if the
 * map is alive. */
static void value_died(void *wr, void *arg)
{
    fti_weakvaluemap *m = registry_get((uint64_t)(uintptr_t)arg);

    if (m == NULL)
        return;
    /* The dict's reference to the weakref; the runtime holds another
     * during the call. */
    ft_xdecref(fti_dict_pop_value(m->dict, wr));
    ft_decref(m);
}

int ft_weakvaluemap_set(void *map, void *key, void *value)
{
    fti_weakvaluemap *m = as_map(map, "ft_weakvaluemap_set");
    void *wr;
    void *old = NULL;
    int rc;

    FT_CHECK(value != NULL, "ft_weakvaluemap_set: NULL value (weakvaluemap)");
    if (!check_map_key(key, "ft_weakvaluemap_set"))
        return -EINVAL;
    wr = ft_weakref_new(value, value_died, (void *)(uintptr_t)m->id);
    if (wr == NULL)
        return -ENOMEM;
    rc = fti_dict_swap(m->dict, key, wr, &old);
    ft_xdecref(old); /* a late callback of old finds no entry holding it */
    ft_decref(wr);   /* the dict holds its own reference (on success) */
    return rc;
}

void *ft_weakvaluemap_get(void *map, const void *key)
{
    fti_weakvaluemap *m = as_map(map, "ft_weakvaluemap_get");

    if (!check_map_key(key, "ft_weakvaluemap_get"))
        return NULL;
    /* Inside the dict's section: no reference to the weakref is taken. */
    return fti_dict_get_map(m->dict, key, ft_weakref_get);
}

size_t ft_weakvaluemap_len(void *map)
{
    return ft_dict_len(as_map(map, "ft_weakvaluemap_len")->dict);
}
