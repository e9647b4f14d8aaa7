/* dict.c - insertion-ordered hash maps with str and int keys, safe for
 * concurrent use.
 *
 * Layout (CPython's compact dict): a keys block holds an index table of
 * 2^log2_size int32 slots (EMPTY, DUMMY or an entry number) followed by an
 * entries array filled in insertion order. Deleted entries keep their place
 * with key == value == NULL until a resize compacts them away.
 *
 * Writers (set, del, clear, resize) hold the dict's critical section. Lookups
 * (ft_dict_get) take no lock (CPython's lock-free dict reads):
 *
 *   keys = load_acquire(d->keys); probe the index table with acquire loads;
 *   for an entry whose stored hash matches, compare the key (identity, or
 *   contents: immortal keys directly, others after ft_try_incref), read the
 *   value, ft_try_incref it, and re-check that entry key, entry value and
 *   d->keys are unchanged. Any failure falls back to the locked lookup.
 *
 * Why it is correct:
 *   - An entry is written in full (hash, key, value) before the index slot
 *     that points at it is published with a release store; a reader that
 *     acquires the slot sees the entry. An entry number is never reused
 *     within one keys block, so an entry's hash never changes once visible.
 *   - A replaced keys block is freed with fti_qsbr_free_delayed: readers are
 *     attached threads between safepoints, so a block they loaded stays
 *     readable until their next quiescent state.
 *   - Values and keys removed from the dict may be dying or dead, their
 *     blocks even reused by newer objects of the same size: object memory is
 *     type-stable (ftrt/object.h, ft_try_incref). ft_try_incref fails on a
 *     dead header, and both are marked shared-read before they are stored,
 *     so it never fails on a live one; the re-check proves the value was
 *     mapped from the key in the current keys block after we took our
 *     reference, and drops a reference that went to a newer object.
 *   - References are released, and replaced blocks retired, only after the
 *     section ends (a decref may run deallocation that locks this dict
 *     again; a retirement may force a grace period, which must not wait
 *     under the dict's lock).
 * Invariant (under the section): used == number of entries with key != NULL
 * <= nentries <= usable; every entry with key != NULL has exactly one index
 * slot pointing at it. */
#include "builtins_int.h"

#include "ft_atomic.h"
#include "ftrt/lock.h"
#include "ftrt/mem.h"
#include "object/object.h"
#include "thread/thread.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define IX_EMPTY (-1)
#define IX_DUMMY (-2)
#define MIN_LOG2_SIZE 3

typedef struct dict_entry {
    uint64_t hash;                /* written before the index slot is published; then immutable */
    _Atomic(ft_object *) key;     /* writers under the section; NULL once deleted */
    _Atomic(ft_object *) value;   /* writers under the section; NULL once deleted */
} dict_entry;

typedef struct dict_keys {
    unsigned log2_size;           /* immutable: the index table has 2^log2_size slots */
    size_t usable;                /* immutable: capacity of entries (2/3 of the slots) */
    _Atomic size_t nentries;      /* entries used, deleted included (section; release) */
    _Atomic int32_t indices[];    /* writers under the section (release); readers acquire */
    /* followed by dict_entry entries[usable] */
} dict_keys;

typedef struct fti_dict {
    ft_object ob;
    _Atomic(dict_keys *) keys;    /* NULL while never filled; writers under the section (release) */
    _Atomic size_t used;          /* live entries; writers under the section; readers relaxed */
} fti_dict;

static dict_entry *keys_entries(dict_keys *k)
{
    return (dict_entry *)(void *)&k->indices[(size_t)1 << k->log2_size];
}

static size_t keys_bytes(unsigned log2_size)
{
    size_t slots = (size_t)1 << log2_size;

    return sizeof(dict_keys) + slots * sizeof(int32_t) + (slots * 2 / 3) * sizeof(dict_entry);
}

static dict_keys *keys_new(unsigned log2_size)
{
    size_t slots = (size_t)1 << log2_size;
    dict_keys *k = ft_malloc(keys_bytes(log2_size));

    if (k == NULL)
        return NULL;
    k->log2_size = log2_size;
    k->usable = slots * 2 / 3;
    /* relaxed (all): the block is private until published with release. */
    ft_atomic_store_relaxed(&k->nentries, 0);
    for (size_t i = 0; i < slots; i++)
        ft_atomic_store_relaxed(&k->indices[i], IX_EMPTY);
    return k;
}

/* ---- the type ---------------------------------------------------------- */

static int dict_traverse(void *self, ft_visit_fn visit, void *arg)
{
    fti_dict *d = self;
    /* relaxed (all loads here): traverse runs with the world stopped or on
     * a dict being deallocated; no writer runs concurrently. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);

    if (k == NULL)
        return 0;
    size_t n = ft_atomic_load_relaxed(&k->nentries);
    dict_entry *e = keys_entries(k);

    for (size_t i = 0; i < n; i++) {
        ft_object *key = ft_atomic_load_relaxed(&e[i].key);
        ft_object *value = ft_atomic_load_relaxed(&e[i].value);
        int rc;

        if (key != NULL && (rc = visit(key, arg)) != 0)
            return rc;
        if (value != NULL && (rc = visit(value, arg)) != 0)
            return rc;
    }
    return 0;
}

static void keys_release_all(dict_keys *k)
{
    size_t n = ft_atomic_load_relaxed(&k->nentries); /* relaxed: the block is unpublished */
    dict_entry *e = keys_entries(k);

    for (size_t i = 0; i < n; i++) {
        /* relaxed: unpublished block; only we release its references. */
        ft_xdecref(ft_atomic_load_relaxed(&e[i].key));
        ft_xdecref(ft_atomic_load_relaxed(&e[i].value));
    }
}

static void dict_clear(void *self)
{
    fti_dict *d = self;
    dict_keys *k;

    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section, the only writer. */
    k = ft_atomic_load_relaxed(&d->keys);
    /* release: pairs with the acquire of d->keys in lookups (they see NULL,
     * i.e. empty, or the old block that stays readable until a grace period). */
    ft_atomic_store_release(&d->keys, NULL);
    ft_atomic_store_relaxed(&d->used, 0); /* relaxed: len is a snapshot */
    FT_CRITICAL_SECTION_END
    if (k != NULL) {
        keys_release_all(k);
        fti_qsbr_free_delayed(k, keys_bytes(k->log2_size));
    }
}

static void dict_dealloc(void *self)
{
    fti_dict *d = self;
    /* relaxed: count reached zero, no other holder; the references in the
     * block were released through traverse. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);

    if (k != NULL)
        ft_free(k);
}

static size_t dict_size_of(const void *self)
{
    /* relaxed: a size report, racy by nature. */
    dict_keys *k = ft_atomic_load_relaxed(&((fti_dict *)self)->keys);

    return k != NULL ? keys_bytes(k->log2_size) : 0;
}

const ft_type ft_dict_type = {
    .name = "dict",
    .size = sizeof(fti_dict),
    .flags = FT_TYPE_GC,
    .traverse = dict_traverse,
    .clear = dict_clear,
    .dealloc = dict_dealloc,
    .size_of = dict_size_of,
};

static fti_dict *as_dict(void *o, const char *call)
{
    FT_CHECK(o != NULL, "%s: NULL object (expected dict)", call);
    FT_CHECK(ft_type_of(o) == &ft_dict_type, "%s: object is not a dict (%s)", call,
             ft_type_of(o)->name);
    FT_ASSERT_ATTACHED();
    return o;
}

static bool check_key(const void *key, const char *call)
{
    FT_CHECK(key != NULL, "%s: NULL key (dict)", call);
    if (FT_LIKELY(fti_is_key_type(key)))
        return true;
    fti_warn("%s: unhashable key type '%s' (dict keys are str or int)", call,
             ft_type_of(key)->name);
    return false;
}

void *ft_dict_new(void)
{
    FT_ASSERT_ATTACHED();
    return ft_new(&ft_dict_type);
}

/* ---- locked operations ------------------------------------------------- */

/* Under the section (or on an unpublished block): the index slot holding the
 * entry for key, or -1. *free_slot receives the first EMPTY/DUMMY slot seen
 * (where an insertion goes). */
static ssize_t keys_find_locked(dict_keys *k, const void *key, uint64_t hash, size_t *free_slot)
{
    size_t mask = ((size_t)1 << k->log2_size) - 1;
    size_t i = (size_t)hash & mask;
    uint64_t perturb = hash;
    dict_entry *e = keys_entries(k);
    bool have_free = false;

    for (;;) {
        /* relaxed: under the section the index table is ours. */
        int32_t ix = ft_atomic_load_relaxed(&k->indices[i]);

        if (ix == IX_EMPTY) {
            if (!have_free && free_slot != NULL)
                *free_slot = i;
            return -1;
        }
        if (ix == IX_DUMMY) {
            if (!have_free && free_slot != NULL) {
                *free_slot = i;
                have_free = true;
            }
        } else if (e[ix].hash == hash) {
            /* relaxed: under the section. */
            ft_object *stored = ft_atomic_load_relaxed(&e[ix].key);

            /* identity first: the common case of a caller reusing the key
             * object spares the out-of-line comparison. */
            if (stored != NULL && (stored == key || fti_key_equal(stored, key)))
                return (ssize_t)i;
        }
        perturb >>= 5;
        i = (i * 5 + (size_t)perturb + 1) & mask;
    }
}

/* Under the section: a new block for at least `need` live entries, holding
 * the live entries of old (if any) in order. NULL on out-of-memory. */
static dict_keys *keys_rebuild(dict_keys *old, size_t need)
{
    unsigned log2_size = MIN_LOG2_SIZE;
    dict_keys *k;

    while ((((size_t)1 << log2_size) * 2 / 3) < need) {
        if (++log2_size > 30)
            return NULL; /* entry numbers are int32 index slots */
    }
    k = keys_new(log2_size);
    if (k == NULL || old == NULL)
        return k;
    size_t n = ft_atomic_load_relaxed(&old->nentries); /* relaxed: under the section */
    dict_entry *src = keys_entries(old);
    dict_entry *dst = keys_entries(k);
    size_t used = 0;
    size_t mask = ((size_t)1 << log2_size) - 1;

    for (size_t i = 0; i < n; i++) {
        /* relaxed (all): old is ours under the section; k is unpublished. */
        ft_object *key = ft_atomic_load_relaxed(&src[i].key);
        size_t slot;
        uint64_t perturb;

        if (key == NULL)
            continue;
        dst[used].hash = src[i].hash;
        ft_atomic_store_relaxed(&dst[used].key, key);
        ft_atomic_store_relaxed(&dst[used].value, ft_atomic_load_relaxed(&src[i].value));
        slot = (size_t)src[i].hash & mask;
        perturb = src[i].hash;
        while (ft_atomic_load_relaxed(&k->indices[slot]) != IX_EMPTY) {
            perturb >>= 5;
            slot = (slot * 5 + (size_t)perturb + 1) & mask;
        }
        ft_atomic_store_relaxed(&k->indices[slot], (int32_t)used);
        used++;
    }
    ft_atomic_store_relaxed(&k->nentries, used);
    return k;
}

/* Under the section, on a block that does not contain key: the first EMPTY
 * slot of key's probe sequence (a rebuilt block has no DUMMY slots). */
static size_t keys_free_slot_locked(dict_keys *k, uint64_t hash)
{
    size_t mask = ((size_t)1 << k->log2_size) - 1;
    size_t i = (size_t)hash & mask;
    uint64_t perturb = hash;

    /* relaxed: under the section the index table is ours. */
    while (ft_atomic_load_relaxed(&k->indices[i]) != IX_EMPTY) {
        perturb >>= 5;
        i = (i * 5 + (size_t)perturb + 1) & mask;
    }
    return i;
}

/* Maps key (of a key type) to value, taking a reference to value, and to key
 * when it is inserted (an existing entry keeps the key object it has). When
 * old_out is not NULL the replaced value's reference (or NULL) is handed
 * there instead of released.
 *
 * Work done once: the hash is computed before the section, one probe finds
 * the entry or the insertion slot (after a resize, the slot in the new block
 * is found by a probe for EMPTY, no key comparison), key and value are
 * marked shared-read only when not marked already (ft_set_shared_read
 * tests the shared state before its CAS), and the old value is released after the
 * section. */
static int dict_set_impl(fti_dict *d, void *key, void *value, ft_object **old_out)
{
    ft_object *old_value = NULL;
    dict_keys *retired = NULL; /* replaced block, freed after the section */
    int rc = 0;
    uint64_t hash = fti_key_hash(key);

    ft_incref(value);
    /* Lookups read values lock-free and ft_try_incref them: marked before
     * the release store that publishes it. */
    fti_mark_shared_read(value);
    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section, the only writer. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);
    size_t free_slot = 0;
    ssize_t slot = k != NULL ? keys_find_locked(k, key, hash, &free_slot) : -1;

    if (slot >= 0) {
        /* relaxed: under the section. */
        dict_entry *e = &keys_entries(k)[ft_atomic_load_relaxed(&k->indices[slot])];

        old_value = ft_atomic_load_relaxed(&e->value); /* relaxed: under the section */
        /* release: pairs with the acquire of the value in lookups. */
        ft_atomic_store_release(&e->value, (ft_object *)value);
    } else {
        /* relaxed: under the section. */
        size_t used = ft_atomic_load_relaxed(&d->used);

        if (k == NULL || ft_atomic_load_relaxed(&k->nentries) >= k->usable) {
            dict_keys *grown = keys_rebuild(k, used * 3 < 5 ? 5 : used * 3);

            if (grown == NULL) {
                rc = -ENOMEM;
            } else {
                /* release: pairs with the acquire of d->keys in lookups; the
                 * rebuilt block is complete when it becomes visible. */
                ft_atomic_store_release(&d->keys, grown);
                retired = k;
                k = grown;
                free_slot = keys_free_slot_locked(k, hash);
            }
        }
        if (rc == 0) {
            size_t n = ft_atomic_load_relaxed(&k->nentries); /* relaxed: under the section */
            dict_entry *e = &keys_entries(k)[n];

            /* The dict's reference to key; an incref and a flag test cannot
             * block, so they may run under the section. Lookups read keys
             * lock-free and ft_try_incref them: marked before publication. */
            ft_incref(key);
            fti_mark_shared_read(key);
            e->hash = hash;
            /* relaxed (both): published by the release store of the index. */
            ft_atomic_store_relaxed(&e->key, (ft_object *)key);
            ft_atomic_store_relaxed(&e->value, (ft_object *)value);
            /* relaxed: nentries is read under the section or with the
             * world stopped only. */
            ft_atomic_store_relaxed(&k->nentries, n + 1);
            /* release: pairs with the acquire of the index in lookups; the
             * entry is complete before the slot points at it. */
            ft_atomic_store_release(&k->indices[free_slot], (int32_t)n);
            ft_atomic_store_relaxed(&d->used, used + 1); /* relaxed: len is a snapshot */
        }
    }
    FT_CRITICAL_SECTION_END
    /* QSBR: lock-free lookups may still probe the old block. Freed after the
     * section, so a forced grace period never runs under the dict's lock. */
    if (retired != NULL)
        fti_qsbr_free_delayed(retired, keys_bytes(retired->log2_size));
    if (rc != 0)
        ft_decref(value);
    if (old_out != NULL)
        *old_out = old_value;
    else
        ft_xdecref(old_value);
    return rc;
}

int ft_dict_set(void *dict, void *key, void *value)
{
    fti_dict *d = as_dict(dict, "ft_dict_set");

    FT_CHECK(value != NULL, "ft_dict_set: NULL value (dict)");
    if (!check_key(key, "ft_dict_set"))
        return -EINVAL;
    return dict_set_impl(d, key, value, NULL);
}

int fti_dict_swap(void *dict, void *key, void *value, void **old_value)
{
    ft_object *old = NULL;
    int rc = dict_set_impl(dict, key, value, &old);

    *old_value = old;
    return rc;
}

/* True when a lookup into a local-roots slot may skip counting v: deferred
 * objects are freed only by the collector, which cannot run before the
 * caller's next safepoint and then sees the slot; immortal ones never die. */
static inline bool uncounted_in_root(ft_object *v)
{
    /* relaxed (both): FT_REF_IMMORTAL is set before publication and never
     * undone; FT_OB_DEFERRED is only ever set. A reader that misses a fresh
     * FT_OB_DEFERRED just counts, which is always safe. */
    return ft_atomic_load_relaxed(&v->ob_ref_local) == FT_REF_IMMORTAL ||
           (ft_atomic_load_relaxed(&v->ob_flags) & FT_OB_DEFERRED) != 0;
}

/* Locked lookup: the value (a new reference unless rooted and uncounted),
 * or NULL. */
static void *dict_get_locked(fti_dict *d, const void *key, uint64_t hash, bool rooted)
{
    ft_object *value = NULL;

    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section; writers are excluded. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);
    ssize_t slot = k != NULL ? keys_find_locked(k, key, hash, NULL) : -1;

    if (slot >= 0) {
        /* relaxed (both): under the section. */
        dict_entry *e = &keys_entries(k)[ft_atomic_load_relaxed(&k->indices[slot])];

        value = ft_atomic_load_relaxed(&e->value);
        if (!rooted || !uncounted_in_root(value))
            ft_incref(value);
    }
    FT_CRITICAL_SECTION_END
    return value;
}

/* Result of a lock-free lookup attempt. */
enum { LOOKUP_FOUND, LOOKUP_ABSENT, LOOKUP_RETRY };

/* Compares a key read from an entry without a lock with the caller's key.
 * Returns 1 equal, 0 different, -1 when the entry changed under us. */
static FT_NOINLINE int key_matches_lockfree(_Atomic(ft_object *) *slot, ft_object *stored, const void *key)
{
    int eq;

    if (stored == key)
        return 1;
    /* acquire: pairs with the release in ft_set_immortal. An immortal key is
     * compared without a count; if the entry changed meanwhile and the block
     * now holds a newer immortal object (type-stable memory), the acquire
     * makes its contents readable, and the caller's re-check of the entry
     * rejects the answer. */
    if (ft_atomic_load_acquire(&stored->ob_ref_local) == FT_REF_IMMORTAL)
        return fti_key_equal(stored, key) ? 1 : 0;
    if (!ft_try_incref(stored))
        return -1;
    /* acquire: pairs with the release stores of writers; the key we hold is
     * still the entry's key (not a recycled one). */
    if (ft_atomic_load_acquire(slot) != stored) {
        ft_decref(stored);
        return -1;
    }
    eq = fti_key_equal(stored, key) ? 1 : 0;
    /* The probe reads on in this storage after the drop: if the drop ends
     * the key's life, its deallocation must not force a grace period here
     * (object/object.h, fti_lockfree_read_begin). */
    fti_lockfree_read_begin();
    ft_decref(stored);
    fti_lockfree_read_end();
    return eq;
}

/* Inlined into its two callers: it is the whole fast path of a lookup. */
static inline __attribute__((always_inline)) int dict_get_lockfree(fti_dict *d, const void *key,
                                                               uint64_t hash, bool rooted, void **out)
{
    /* acquire: pairs with the release store of a new block in ft_dict_set
     * (the block is complete) and with dict_clear. */
    dict_keys *k = ft_atomic_load_acquire(&d->keys);

    if (k == NULL)
        return LOOKUP_ABSENT;
    size_t mask = ((size_t)1 << k->log2_size) - 1;
    size_t i = (size_t)hash & mask;
    uint64_t perturb = hash;
    dict_entry *entries = keys_entries(k);

    for (;;) {
        /* acquire: pairs with the release store of the index in ft_dict_set;
         * the entry it names is filled. */
        int32_t ix = ft_atomic_load_acquire(&k->indices[i]);

        if (ix == IX_EMPTY)
            return LOOKUP_ABSENT;
        if (ix >= 0 && entries[ix].hash == hash) {
            dict_entry *e = &entries[ix];
            /* acquire: pairs with the release stores of writers. */
            ft_object *stored = ft_atomic_load_acquire(&e->key);

            if (stored == NULL)
                return LOOKUP_RETRY;
            /* identity first, inline: interned and int-cache keys */
            int m = stored == key ? 1 : key_matches_lockfree(&e->key, stored, key);

            if (m < 0)
                return LOOKUP_RETRY;
            if (m == 1) {
                /* acquire: pairs with the release store of the value. */
                ft_object *value = ft_atomic_load_acquire(&e->value);

                if (value == NULL)
                    return LOOKUP_RETRY;
                /* relaxed: FT_REF_IMMORTAL is set before publication; an
                 * immortal value needs no count (ft_incref would write
                 * nothing), so skip the call. */
                bool counted = ft_atomic_load_relaxed(&value->ob_ref_local) != FT_REF_IMMORTAL &&
                               (!rooted || !uncounted_in_root(value));

                if (counted && !ft_try_incref(value))
                    return LOOKUP_RETRY;
                /* acquire (all three): the re-check; see the file comment. */
                if (ft_atomic_load_acquire(&e->value) != value ||
                    ft_atomic_load_acquire(&e->key) != stored ||
                    ft_atomic_load_acquire(&d->keys) != k) {
                    if (counted)
                        ft_decref(value);
                    return LOOKUP_RETRY;
                }
                *out = value;
                return LOOKUP_FOUND;
            }
        }
        perturb >>= 5;
        i = (i * 5 + (size_t)perturb + 1) & mask;
    }
}

void *ft_dict_get(void *dict, const void *key)
{
    fti_dict *d = as_dict(dict, "ft_dict_get");
    void *value = NULL;

    if (!check_key(key, "ft_dict_get"))
        return NULL;
    uint64_t hash = fti_key_hash(key);

    switch (dict_get_lockfree(d, key, hash, false, &value)) {
    case LOOKUP_FOUND:
        return value;
    case LOOKUP_ABSENT:
        return NULL;
    default:
        return dict_get_locked(d, key, hash, false);
    }
}

bool ft_dict_get_rooted(void *dict, const void *key, void **slot)
{
    fti_dict *d = as_dict(dict, "ft_dict_get_rooted");
    void *value = NULL;

    FT_CHECK(slot != NULL, "ft_dict_get_rooted: NULL slot (dict)");
    if (!check_key(key, "ft_dict_get_rooted"))
        return false;
    uint64_t hash = fti_key_hash(key);

    switch (dict_get_lockfree(d, key, hash, true, &value)) {
    case LOOKUP_FOUND:
        break;
    case LOOKUP_ABSENT:
        value = NULL;
        break;
    default:
        value = dict_get_locked(d, key, hash, true);
        break;
    }
    *slot = value;
    return value != NULL;
}

void ft_root_slot_clear(void **slot)
{
    ft_object *v = *slot;

    *slot = NULL;
    if (v != NULL && !uncounted_in_root(v))
        ft_decref(v);
}

/* Under the section: removes the entry at index slot; returns its key and
 * value references through the out-parameters. */
static void keys_remove_locked(fti_dict *d, dict_keys *k, ssize_t slot, ft_object **key,
                               ft_object **value)
{
    /* relaxed: under the section. */
    dict_entry *e = &keys_entries(k)[ft_atomic_load_relaxed(&k->indices[slot])];

    *key = ft_atomic_load_relaxed(&e->key);     /* relaxed: under the section */
    *value = ft_atomic_load_relaxed(&e->value); /* relaxed: under the section */
    /* release (all three): pairs with the acquire loads and re-checks of
     * lock-free lookups, which then fail over to the locked path. */
    ft_atomic_store_release(&e->key, NULL);
    ft_atomic_store_release(&e->value, NULL);
    ft_atomic_store_release(&k->indices[slot], IX_DUMMY);
    /* relaxed: len is a snapshot. */
    ft_atomic_store_relaxed(&d->used, ft_atomic_load_relaxed(&d->used) - 1);
}

void *fti_dict_pop(void *dict, const void *key)
{
    fti_dict *d = dict;
    ft_object *old_key = NULL;
    ft_object *old_value = NULL;
    uint64_t hash = fti_key_hash(key);

    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section, the only writer. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);
    ssize_t slot = k != NULL ? keys_find_locked(k, key, hash, NULL) : -1;

    if (slot >= 0)
        keys_remove_locked(d, k, slot, &old_key, &old_value);
    FT_CRITICAL_SECTION_END
    ft_xdecref(old_key);
    return old_value;
}

int ft_dict_del(void *dict, const void *key)
{
    fti_dict *d = as_dict(dict, "ft_dict_del");
    ft_object *value;

    if (!check_key(key, "ft_dict_del"))
        return -EINVAL;
    value = fti_dict_pop(d, key);
    if (value == NULL)
        return -ENOENT;
    ft_decref(value);
    return 0;
}

size_t ft_dict_len(void *dict)
{
    fti_dict *d = as_dict(dict, "ft_dict_len");

    /* relaxed: a snapshot; writers update it under the section. */
    return ft_atomic_load_relaxed(&d->used);
}

bool ft_dict_next(void *dict, size_t *pos, void **key, void **value)
{
    fti_dict *d = as_dict(dict, "ft_dict_next");
    bool found = false;

    FT_CHECK(pos != NULL, "ft_dict_next: NULL pos (dict)");
    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section; writers are excluded. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);

    if (k != NULL) {
        size_t n = ft_atomic_load_relaxed(&k->nentries); /* relaxed: under the section */
        dict_entry *e = keys_entries(k);

        for (size_t i = *pos; i < n; i++) {
            /* relaxed (both): under the section. */
            ft_object *ek = ft_atomic_load_relaxed(&e[i].key);

            if (ek == NULL)
                continue;
            ft_object *ev = ft_atomic_load_relaxed(&e[i].value);

            if (key != NULL) {
                ft_incref(ek);
                *key = ek;
            }
            if (value != NULL) {
                ft_incref(ev);
                *value = ev;
            }
            *pos = i + 1;
            found = true;
            break;
        }
    }
    FT_CRITICAL_SECTION_END
    return found;
}

void *fti_dict_pop_value(void *dict, const void *value)
{
    fti_dict *d = dict;
    ft_object *old_key = NULL;
    ft_object *old_value = NULL;

    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section, the only writer. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);

    if (k != NULL) {
        size_t n = ft_atomic_load_relaxed(&k->nentries); /* relaxed: under the section */
        dict_entry *e = keys_entries(k);

        for (size_t i = 0; i < n; i++) {
            /* relaxed: under the section. */
            if (ft_atomic_load_relaxed(&e[i].value) != value)
                continue;
            ssize_t slot = keys_find_locked(k, ft_atomic_load_relaxed(&e[i].key), e[i].hash, NULL);

            FT_ASSERT(slot >= 0);
            keys_remove_locked(d, k, slot, &old_key, &old_value);
            break;
        }
    }
    FT_CRITICAL_SECTION_END
    ft_xdecref(old_key);
    return old_value;
}

void *fti_dict_get_map(void *dict, const void *key, void *(*fn)(void *value))
{
    fti_dict *d = dict;
    void *result = NULL;
    uint64_t hash = fti_key_hash(key);

    FT_CRITICAL_SECTION_BEGIN(d)
    /* relaxed: we hold the section; writers are excluded. */
    dict_keys *k = ft_atomic_load_relaxed(&d->keys);
    ssize_t slot = k != NULL ? keys_find_locked(k, key, hash, NULL) : -1;

    if (slot >= 0) {
        /* relaxed (both): under the section. */
        dict_entry *e = &keys_entries(k)[ft_atomic_load_relaxed(&k->indices[slot])];

        result = fn(ft_atomic_load_relaxed(&e->value));
    }
    FT_CRITICAL_SECTION_END
    return result;
}
