/* weakref.c - weak references and the side table that finds them.
 *
 * Guarantees: ft_weakref_get never returns an object whose count reached
 * zero; every weakref of a dying object is cleared before the object's memory
 * is released; a callback runs at most once, on a live weakref (the weakref
 * is held by a counted reference during the call, so a callback that drops
 * the last other reference to its own weakref is safe), never inside a
 * stop-the-world, and never for a weakref that is itself garbage.
 *
 * Why. A weakref's target pointer is written only under the lock of the
 * target's shard, and set to NULL (forever) by the same lock holder that
 * unlinks the list when the target dies (fti_weakref_clear_hook, called by
 * the object layer before it frees the target) or when the collector finds
 * it garbage (with the world stopped). ft_weakref_get takes that shard lock,
 * re-checks the pointer and then uses ft_try_incref, which fails once the
 * count reached zero; so it either gets a reference before the object dies or
 * sees it dead. Shard locks are plain pthread mutexes held for a few loads and
 * stores with no safepoint inside, so a stop-the-world never waits for a
 * parked holder. The table holds no reference to targets: it maps an address
 * to the head of a doubly-linked list threaded through the weakrefs. */
#include "gc_int.h"

#include "ft_atomic.h"
#include "thread/thread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct fti_weakref {
    ft_object ob;
    /* NULL once the target died (written under the target's shard lock;
     * read relaxed without it only to pick the shard or as a hint). */
    _Atomic(ft_object *) target;
    ft_weakref_callback callback; /* immutable after creation */
    void *callback_arg;           /* immutable after creation */
    struct fti_weakref *prev;     /* list of the target's weakrefs (shard lock) */
    struct fti_weakref *next;     /* (shard lock) */
} fti_weakref;

/* target -> list of its weakrefs. */
typedef struct wr_entry {
    ft_object *target;
    fti_weakref *head;
    struct wr_entry *next; /* bucket chain */
} wr_entry;

#define WR_SHARDS 64

typedef struct wr_shard {
    pthread_mutex_t lock;
    wr_entry **buckets; /* (lock) */
    size_t nbuckets;    /* power of two (lock) */
    size_t count;       /* entries (lock) */
} wr_shard;

static wr_shard shards[WR_SHARDS];

/* Callbacks that became due while the world was stopped (pending_lock). */
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static fti_gc_vec pending_callbacks;

static inline uint64_t hash_ptr(const void *p)
{
    return ((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull;
}

static inline wr_shard *shard_of(const void *target)
{
    return &shards[hash_ptr(target) >> 58]; /* top 6 bits: 64 shards */
}

static wr_entry **bucket_of(wr_shard *s, const void *target)
{
    return &s->buckets[(hash_ptr(target) >> 20) & (s->nbuckets - 1)];
}

static wr_entry *find_entry(wr_shard *s, const void *target)
{
    if (s->nbuckets == 0)
        return NULL;
    for (wr_entry *e = *bucket_of(s, target); e != NULL; e = e->next)
        if (e->target == target)
            return e;
    return NULL;
}

static wr_entry *remove_entry(wr_shard *s, const void *target)
{
    if (s->nbuckets == 0)
        return NULL;
    for (wr_entry **pe = bucket_of(s, target); *pe != NULL; pe = &(*pe)->next) {
        wr_entry *e = *pe;

        if (e->target == target) {
            *pe = e->next;
            s->count--;
            return e;
        }
    }
    return NULL;
}

static int grow_shard(wr_shard *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 16;
    wr_entry **b = calloc(n, sizeof *b);

    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < s->nbuckets; i++) {
        wr_entry *e = s->buckets[i];

        while (e != NULL) {
            wr_entry *next = e->next;
            wr_entry **slot = &b[(hash_ptr(e->target) >> 20) & (n - 1)];

            e->next = *slot;
            *slot = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

/* Unlinks wr from its entry's list (shard lock held). */
static void unlink_wr(wr_shard *s, fti_weakref *wr, ft_object *target)
{
    if (wr->prev != NULL) {
        wr->prev->next = wr->next;
    } else {
        wr_entry *e = find_entry(s, target);

        FT_ASSERT(e != NULL && e->head == wr);
        e->head = wr->next;
        if (e->head == NULL)
            free(remove_entry(s, target));
    }
    if (wr->next != NULL)
        wr->next->prev = wr->prev;
    wr->prev = wr->next = NULL;
}

/* ---- The weakref type ---- */

static int weakref_traverse(void *self, ft_visit_fn visit, void *arg)
{
    /* The target is weak and the callback argument is opaque: no strong
     * references to visit. The type is tracked so that a weakref inside a
     * garbage cycle is known to be garbage (its callback must not run). */
    (void)self;
    (void)visit;
    (void)arg;
    return 0;
}

static void weakref_clear(void *self)
{
    (void)self; /* holds no strong references */
}

static void weakref_dealloc(void *self)
{
    fti_weakref *wr = self;
    /* acquire: pairs with the release store of NULL in detach_all, whose
     * accesses to this weakref then happen before its memory is freed and
     * reused (right after this dealloc). Non-NULL: the shard to lock. */
    ft_object *target = ft_atomic_load_acquire(&wr->target);
    wr_shard *s;

    if (target == NULL)
        return;
    s = shard_of(target);
    pthread_mutex_lock(&s->lock);
    /* relaxed: the shard lock orders it with the clearer. */
    if (ft_atomic_load_relaxed(&wr->target) == target) {
        unlink_wr(s, wr, target);
        /* relaxed: under the shard lock. */
        ft_atomic_store_relaxed(&wr->target, NULL);
    }
    pthread_mutex_unlock(&s->lock);
}

const ft_type fti_weakref_type = {
    .name = "weakref",
    .size = sizeof(fti_weakref),
    .flags = FT_TYPE_GC,
    .traverse = weakref_traverse,
    .clear = weakref_clear,
    .finalize = NULL,
    .dealloc = weakref_dealloc,
    .size_of = NULL,
};

/* ---- Public functions ---- */

void *ft_weakref_new(void *target_ptr, ft_weakref_callback cb, void *arg)
{
    ft_object *target = target_ptr;
    fti_weakref *wr;
    wr_shard *s;
    wr_entry *e;

    FT_CHECK(target != NULL, "ft_weakref_new: target is NULL");
    wr = ft_new(&fti_weakref_type);
    if (wr == NULL)
        return NULL;
    /* Clearing a target's weakrefs takes a reference to them with
     * ft_try_incref (for their callbacks) while they may be dying. */
    ft_set_shared_read(wr);
    wr->callback = cb;
    wr->callback_arg = arg;
    s = shard_of(target);
    pthread_mutex_lock(&s->lock);
    e = find_entry(s, target);
    if (e == NULL) {
        e = malloc(sizeof *e);
        if (e == NULL || (s->count + 1 > s->nbuckets && grow_shard(s) != 0)) {
            pthread_mutex_unlock(&s->lock);
            free(e);
            ft_decref(wr); /* target still NULL: its dealloc has nothing to unlink */
            return NULL;
        }
        e->target = target;
        e->head = NULL;
        e->next = *bucket_of(s, target);
        *bucket_of(s, target) = e;
        s->count++;
    }
    wr->prev = NULL;
    wr->next = e->head;
    if (e->head != NULL)
        e->head->prev = wr;
    e->head = wr;
    /* relaxed: published by the shard lock to every reader that matters. */
    ft_atomic_store_relaxed(&wr->target, target);
    /* release: pairs with the acquire load of ob_flags in the object layer's
     * dealloc (after the count reaches zero, which the caller's reference
     * orders after this). */
    ft_atomic_fetch_or_release(&target->ob_flags, FT_OB_HAS_WEAKREFS);
    /* ft_weakref_get takes its reference with ft_try_incref, which fails on
     * an unmarked object of another thread (ftrt/object.h). */
    ft_set_shared_read(target);
    pthread_mutex_unlock(&s->lock);
    return wr;
}

static fti_weakref *as_weakref(void *p, const char *call)
{
    FT_CHECK(p != NULL && ((ft_object *)p)->ob_type == &fti_weakref_type,
             "%s: argument is not a weakref (%s object)", call,
             p != NULL ? ((ft_object *)p)->ob_type->name : "NULL");
    return p;
}

void *ft_weakref_get(void *weakref)
{
    fti_weakref *wr = as_weakref(weakref, "ft_weakref_get");
    /* relaxed: a hint that picks the shard; decided under its lock. */
    ft_object *target = ft_atomic_load_relaxed(&wr->target);
    ft_object *result = NULL;
    wr_shard *s;

    if (target == NULL)
        return NULL;
    s = shard_of(target);
    pthread_mutex_lock(&s->lock);
    /* relaxed: the shard lock orders it with the clearer. */
    if (ft_atomic_load_relaxed(&wr->target) == target && ft_try_incref(target))
        result = target;
    pthread_mutex_unlock(&s->lock);
    return result;
}

bool ft_weakref_is_alive(void *weakref)
{
    fti_weakref *wr = as_weakref(weakref, "ft_weakref_is_alive");

    /* relaxed: documented as a hint. */
    return ft_atomic_load_relaxed(&wr->target) != NULL;
}

size_t ft_weakref_count(const void *o)
{
    wr_shard *s = shard_of(o);
    size_t n = 0;
    wr_entry *e;

    pthread_mutex_lock(&s->lock);
    e = find_entry(s, o);
    if (e != NULL)
        for (fti_weakref *wr = e->head; wr != NULL; wr = wr->next)
            n++;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- Clearing ---- */

static void call_callbacks(fti_gc_vec *due)
{
    for (size_t i = 0; i < due->len; i++) {
        fti_weakref *wr = due->items[i];

        wr->callback(wr, wr->callback_arg);
        ft_decref(wr); /* the reference taken when it became due */
    }
    due->len = 0;
}

/* Detaches the whole list of target (shard lock held by the caller) and
 * appends to `due` a counted reference to each weakref whose callback must
 * run. */
static void detach_all(wr_shard *s, ft_object *target, fti_gc_vec *due)
{
    wr_entry *e = remove_entry(s, target);
    fti_weakref *wr;

    if (e == NULL)
        return;
    wr = e->head;
    free(e);
    while (wr != NULL) {
        fti_weakref *next = wr->next;
        /* relaxed: garbage weakrefs are marked with the world stopped. */
        bool call = wr->callback != NULL
                    && (ft_atomic_load_relaxed(&wr->ob.ob_gc_bits) & FTI_GC_UNREACHABLE) == 0
                    && ft_try_incref(wr);

        wr->prev = wr->next = NULL;
        /* release: the last access to a weakref we hold no reference to. A
         * weakref dying meanwhile on another thread sees NULL in its dealloc
         * (acquire) and is freed at once, its block reused: every access
         * above must happen before that (see weakref_dealloc). */
        ft_atomic_store_release(&wr->target, NULL);
        if (call && fti_gc_vec_push(due, wr) != 0) {
            fti_warn("weakref: out of memory; a callback of %p is dropped", (void *)wr);
            ft_decref(wr);
        }
        wr = next;
    }
}

void fti_weakref_run_pending(void)
{
    fti_gc_vec due;

    pthread_mutex_lock(&pending_lock);
    due = pending_callbacks;
    memset(&pending_callbacks, 0, sizeof pending_callbacks);
    pthread_mutex_unlock(&pending_lock);
    call_callbacks(&due);
    fti_gc_vec_free(&due);
}

void fti_weakref_clear_hook(ft_object *o)
{
    wr_shard *s = shard_of(o);
    fti_gc_vec due = { 0 };

    pthread_mutex_lock(&s->lock);
    detach_all(s, o, &due);
    pthread_mutex_unlock(&s->lock);
    if (due.len == 0) {
        fti_gc_vec_free(&due);
        return;
    }
    if (fti_world_is_stopped()) {
        /* Never call user code inside a stop-the-world. */
        pthread_mutex_lock(&pending_lock);
        for (size_t i = 0; i < due.len; i++)
            if (fti_gc_vec_push(&pending_callbacks, due.items[i]) != 0)
                ft_fatal("weakref: out of memory queueing a callback");
        pthread_mutex_unlock(&pending_lock);
    } else {
        call_callbacks(&due);
        fti_weakref_run_pending();
    }
    fti_gc_vec_free(&due);
}

void fti_weakref_clear_stopped(ft_object *o)
{
    wr_shard *s = shard_of(o);

    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&pending_lock);
    detach_all(s, o, &pending_callbacks);
    pthread_mutex_unlock(&pending_lock);
    pthread_mutex_unlock(&s->lock);
}

void fti_weakref_detach_stopped(ft_object *wr_obj)
{
    fti_weakref *wr = (fti_weakref *)wr_obj;
    /* relaxed: world stopped. */
    ft_object *target = ft_atomic_load_relaxed(&wr->target);
    wr_shard *s;

    if (target == NULL)
        return;
    s = shard_of(target);
    pthread_mutex_lock(&s->lock);
    unlink_wr(s, wr, target);
    /* relaxed: under the shard lock. */
    ft_atomic_store_relaxed(&wr->target, NULL);
    pthread_mutex_unlock(&s->lock);
}

int fti_weakref_init(void)
{
    for (size_t i = 0; i < WR_SHARDS; i++) {
        pthread_mutex_init(&shards[i].lock, NULL);
        shards[i].buckets = NULL;
        shards[i].nbuckets = 0;
        shards[i].count = 0;
    }
    return 0;
}

void fti_weakref_fini(void)
{
    /* Entries left belong to targets that are still alive at shutdown (the
     * heaps go away with them); the table's own memory is released. */
    for (size_t i = 0; i < WR_SHARDS; i++) {
        wr_shard *s = &shards[i];

        for (size_t b = 0; b < s->nbuckets; b++) {
            wr_entry *e = s->buckets[b];

            while (e != NULL) {
                wr_entry *next = e->next;

                free(e);
                e = next;
            }
        }
        free(s->buckets);
        s->buckets = NULL;
        s->nbuckets = s->count = 0;
        pthread_mutex_destroy(&s->lock);
    }
    pthread_mutex_lock(&pending_lock);
    fti_gc_vec_free(&pending_callbacks);
    pthread_mutex_unlock(&pending_lock);
}
