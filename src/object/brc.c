/* brc.c - merge queues of biased reference counting.
 *
 * What it guarantees: an object whose shared count a non-owner would take
 * below zero is marked FT_SHARED_QUEUED (the queue holds that decrement) and
 * handed to its owner's queue slot; the decrement is applied exactly once,
 * by the first of:
 *   - the owner, at its next safepoint (FT_PENDING_BRC) or at detach;
 *   - the queuing thread, on the owner's behalf, when the owner sits in a
 *     blocking region (fti_thread_try_suspend_detached keeps it there while
 *     its objects' local counts are merged), so a blocked owner never holds
 *     garbage hostage;
 *   - the queuing thread itself when no thread holds the index any more;
 *   - a collector, with the world stopped (fti_brc_merge_all_stopped).
 *
 * Why a mutex and an array instead of a wait-free queue: a queued object is
 * live and every word of its header is in use, so a linked queue needs one
 * allocated node per entry; and the slot needs a lock anyway to serialise
 * "the owner left, merge it yourself" against the owner's final drain at
 * detach. An append under an uncontended mutex is cheaper than a node
 * allocation; CPython's brc.c uses the same shape (mutex + object stack).
 *
 * Slot life: `attached` goes true when a thread that will own objects takes
 * the index (fti_brc_attach_self) and false at the very end of its detach,
 * after its queue is drained and every object it owned is merged (ob_owner
 * 0). So an entry found in a slot that is not attached refers to an object
 * that is already merged, and merging it needs no owner. Invariant:
 * !attached => count == 0. */
#include "object/object_int.h"

#include "mem/mem.h"
#include "thread/thread.h"

#include <stdlib.h>
#include <string.h>

#define BRC_MAX_SLOTS 16384

typedef struct fti_brc_slot {
    pthread_mutex_t lock;
    bool attached;          /* an owner holds the index (lock) */
    ft_thread_head *head;   /* the owner's, valid while attached: it closes the slot
                               under the lock before its thread can exit (lock) */
    ft_object **items;      /* queued objects, each holding one decrement (lock) */
    size_t count;           /* (lock) */
    size_t capacity;        /* (lock) */
} fti_brc_slot;

/* Slots by thread index; created on first use, freed at fini (install: CAS). */
static _Atomic(fti_brc_slot *) slots[BRC_MAX_SLOTS];
static _Atomic uint32_t max_index; /* highest index with a slot (atomic max) */

static fti_brc_slot *slot_get(uint32_t index, bool create)
{
    FT_CHECK(index > 0 && index < BRC_MAX_SLOTS, "object layer: thread index %u out of range", index);
    /* acquire: pairs with the release CAS that installed the slot. */
    fti_brc_slot *s = ft_atomic_load_acquire(&slots[index]);
    if (s != NULL || !create)
        return s;
    fti_brc_slot *fresh = calloc(1, sizeof *fresh);
    FT_CHECK(fresh != NULL, "object layer: out of memory for a merge-queue slot");
    pthread_mutex_init(&fresh->lock, NULL);
    fti_brc_slot *expected = NULL;
    /* acq_rel: release publishes the initialised slot; acquire on failure
     * pairs with the winner's release. */
    if (!ft_atomic_cas_acq_rel(&slots[index], &expected, fresh)) {
        pthread_mutex_destroy(&fresh->lock);
        free(fresh);
        return expected;
    }
    /* relaxed: the CAS re-validates; a bound for loops, no data. */
    uint32_t seen = ft_atomic_load_relaxed(&max_index);
    while (seen < index && !ft_atomic_cas_weak_relaxed(&max_index, &seen, index)) {
    }
    return fresh;
}

static void slot_push_locked(fti_brc_slot *s, ft_object *o)
{
    if (s->count == s->capacity) {
        size_t capacity = s->capacity != 0 ? s->capacity * 2 : 64;
        ft_object **items = realloc(s->items, capacity * sizeof *items);
        FT_CHECK(items != NULL, "ft_decref: out of memory for the merge queue (%s object)", o->ob_type->name);
        s->items = items;
        s->capacity = capacity;
    }
    s->items[s->count++] = o;
}

/* Takes the slot's whole queue; the caller frees the returned array. */
static ft_object **slot_take(fti_brc_slot *s, size_t *count, bool and_close)
{
    pthread_mutex_lock(&s->lock);
    ft_object **items = s->items;
    *count = s->count;
    if (s->count == 0) {
        items = NULL;
    } else {
        s->items = NULL;
        s->count = 0;
        s->capacity = 0;
    }
    if (and_close)
        s->attached = false;
    pthread_mutex_unlock(&s->lock);
    return items;
}

/* Applies a queued decrement to the shared word only: whichever of this and
 * the owner's concurrent merge makes the word MERGED with a zero count frees
 * the object, and only one of them can. */
static void shared_decrement(ft_object *o)
{
    /* relaxed: the CAS re-validates. */
    int32_t shared = ft_atomic_load_relaxed(&o->ob_ref_shared);
    int32_t updated;
    do {
        updated = shared - FTI_SHARED_ONE;
        FT_CHECK((shared & FT_SHARED_MASK) != FT_SHARED_MERGED || updated >= FT_SHARED_MERGED,
                 "ft_decref: refcount of %s object %p below zero", o->ob_type->name, (void *)o);
        /* acq_rel: as in ft_decref_shared. */
    } while (!ft_atomic_cas_weak_acq_rel(&o->ob_ref_shared, &shared, updated));
    if (updated == FT_SHARED_MERGED)
        fti_object_dealloc(o);
}

/* Applies a queued decrement; frees the object if that was the last. */
static void merge_entry(ft_object *o)
{
    if (fti_object_explicit_merge(o, -1) == 0)
        fti_object_dealloc(o);
}

/* Processes the slot's queue until it stays empty. */
static void slot_drain(fti_brc_slot *s)
{
    for (;;) {
        size_t count;
        ft_object **items = slot_take(s, &count, false);
        if (items == NULL)
            return;
        for (size_t i = 0; i < count; i++)
            merge_entry(items[i]);
        free(items);
    }
}

void fti_brc_attach_self(uint32_t index)
{
    fti_brc_slot *s = slot_get(index, true);
    pthread_mutex_lock(&s->lock);
    FT_ASSERT(s->count == 0);
    s->attached = true;
    s->head = &ft_tls_head;
    pthread_mutex_unlock(&s->lock);
}

void fti_brc_enqueue(ft_object *o, uint32_t owner_index)
{
    uint32_t self = ft_tls_head.owner_tag;
    if (owner_index == 0) {
        /* The owner is merging the object concurrently (it dropped its last
         * local reference, or it is detaching): apply our decrement to the
         * shared word alone, as CPython's brc.c does. Never fold the local
         * count here: the owner may be folding it at this very moment. */
        shared_decrement(o);
        return;
    }
    fti_brc_slot *s = slot_get(owner_index, owner_index == self);
    FT_CHECK(s != NULL, "ft_decref: %s object %p names owner %u, which never owned objects",
             o->ob_type->name, (void *)o, owner_index);
    pthread_mutex_lock(&s->lock);
    if (!s->attached) {
        /* No thread holds the index: the owner merged the object when it
         * left. Merge under the slot lock, so that no new owner of the index
         * can start its own detach merge meanwhile; free outside it (a
         * deallocation may queue to this slot again). */
        intptr_t total = fti_object_explicit_merge(o, -1);
        pthread_mutex_unlock(&s->lock);
        if (total == 0)
            fti_object_dealloc(o);
        return;
    }
    slot_push_locked(s, o);
    if (owner_index == self) {
        pthread_mutex_unlock(&s->lock);
        /* our own queue: used with the world stopped; merged at our next
         * safepoint. relaxed: our own pending word. */
        ft_atomic_fetch_or_relaxed(&ft_tls_head.pending, FT_PENDING_BRC);
        return;
    }
    /* Ask first, then try to stand in: an owner that was attached when we
     * asked sees the bit at its next safepoint. Asked under the slot lock,
     * which keeps the owner's thread (its TLS head) alive: it must take the
     * lock to close the slot before it can exit. Without the thread
     * registry's global lock (fti_thread_request), queuers of different
     * owners share no lock. A zombie index (its thread vanished in a fork)
     * has no head; it is always detached and merged on its behalf below. */
    if (!fti_thread_index_is_zombie(owner_index))
        /* release: pairs with the acquire exchange in ft_safepoint_slow. */
        ft_atomic_fetch_or_release(&s->head->pending, FT_PENDING_BRC);
    pthread_mutex_unlock(&s->lock);
    if (fti_thread_try_suspend_detached(owner_index)) {
        /* The owner is parked in a blocking region and cannot leave it until
         * we resume it: its local counts are ours to merge. */
        slot_drain(s);
        fti_thread_resume_suspended(owner_index);
    }
}

void fti_brc_merge_self(void)
{
    uint32_t self = ft_tls_head.owner_tag;
    if (self == UINT32_MAX || self >= BRC_MAX_SLOTS)
        return;
    fti_brc_slot *s = slot_get(self, false);
    if (s != NULL)
        slot_drain(s);
}

void fti_brc_merge_all_stopped(void)
{
    FT_ASSERT_WORLD_STOPPED();
    uint32_t self = ft_tls_head.owner_tag;
    /* relaxed: slots are created by threads that are now stopped (or gone);
     * the stop-the-world handshake ordered their creation before us. */
    uint32_t top = ft_atomic_load_relaxed(&max_index);
    size_t total = 0, capacity = 0;
    ft_object **all = NULL;
    for (uint32_t i = 1; i <= top; i++) {
        fti_brc_slot *s = slot_get(i, false);
        if (s == NULL)
            continue;
        size_t count;
        ft_object **items = slot_take(s, &count, false);
        if (items == NULL)
            continue;
        if (total + count > capacity) {
            capacity = (total + count) * 2;
            ft_object **grown = realloc(all, capacity * sizeof *grown);
            FT_CHECK(grown != NULL, "gc: out of memory merging queued reference counts");
            all = grown;
        }
        memcpy(all + total, items, count * sizeof *items);
        total += count;
        free(items);
    }
    for (size_t i = 0; i < total; i++) {
        ft_object *o = all[i];
        /* Nothing is freed while the world is stopped: an entry whose
         * decrement would free the object stays queued, to us. */
        intptr_t merged = fti_object_explicit_merge(o, 0);
        FT_ASSERT(merged >= 1);
        if (merged >= 2)
            (void)fti_object_explicit_merge(o, -1);
        else
            fti_brc_enqueue(o, self);
    }
    free(all);
}

/* ---- Thread hooks ------------------------------------------------------------ */

typedef struct detach_walk {
    uint32_t self;
    ft_object **dead;      /* merged to zero during the walk: freed after it */
    size_t count, capacity;
} detach_walk;

static int merge_owned_slot(void *block, size_t block_size, void *arg)
{
    (void)block_size;
    ft_object *o = block;
    detach_walk *w = arg;
    /* relaxed: our own objects carry our index; freed slots read 0. */
    if (ft_atomic_load_relaxed(&o->ob_owner) != w->self)
        return 0;
    /* relaxed: owner-only field. */
    if (ft_atomic_load_relaxed(&o->ob_ref_local) == FT_REF_IMMORTAL)
        return 0;
    /* Zero is possible: a queuer that saw ob_owner == 0 applied its
     * decrement to the shared word just before our merge. */
    if (fti_object_explicit_merge(o, 0) == 0) {
        if (w->count == w->capacity) {
            w->capacity = w->capacity != 0 ? w->capacity * 2 : 16;
            ft_object **grown = realloc(w->dead, w->capacity * sizeof *grown);
            FT_CHECK(grown != NULL, "ft_thread_detach: out of memory merging owned objects");
            w->dead = grown;
        }
        w->dead[w->count++] = o;
    }
    return 0;
}

static void on_attach(ft_thread_head *self)
{
    (void)self;
    (void)fti_object_tstate_get();
}

static void on_detach(ft_thread_head *self)
{
    fti_object_tstate *ts = self->object_state;
    if (ts == NULL)
        return; /* never owned an object */
    uint32_t index = ts->index;
    fti_brc_slot *s = slot_get(index, false);
    /* 1. what others queued to us */
    slot_drain(s);
    /* 2. every object we own becomes unowned (merged) */
    detach_walk walk = { .self = index };
    (void)fti_heap_visit_own_slots(FTI_KIND_OBJ, merge_owned_slot, &walk);
    (void)fti_heap_visit_own_slots(FTI_KIND_GC, merge_owned_slot, &walk);
    for (size_t i = 0; i < walk.count; i++)
        fti_object_dealloc(walk.dead[i]); /* not during the walk: a free edits the pages walked */
    free(walk.dead);
    /* 3. close the slot; what arrived meanwhile refers to merged objects */
    size_t count;
    ft_object **items = slot_take(s, &count, true);
    for (size_t i = 0; i < count; i++)
        merge_entry(items[i]);
    free(items);
    /* 4. delayed frees: wait for a grace period and free them all */
    fti_delayed_flush(ts);
    FT_ASSERT(ts->delayed_count == 0);
    fti_delayed_retire_stats(ts);
    fti_delayed_release_spares(ts);
    free(ts);
    self->object_state = NULL;
    fti_dealloc_thread_cleanup();
}

static void on_safepoint(ft_thread_head *self, uint32_t bits)
{
    if (bits & FT_PENDING_BRC)
        fti_brc_merge_self();
    fti_object_tstate *ts = self->object_state;
    if (ts != NULL) {
        fti_delayed_poll(ts);
        fti_delayed_enforce_budget(ts);
    }
}

int fti_brc_init(void)
{
    static const fti_thread_hooks hooks = {
        .on_attach = on_attach,
        .on_detach = on_detach,
        .on_safepoint = on_safepoint,
        .safepoint_mask = FT_PENDING_BRC | FT_PENDING_QSBR,
    };
    fti_thread_add_hooks(&hooks);
    return 0;
}

void fti_brc_fini(void)
{
    /* relaxed: every thread has detached (ft_fini's contract). */
    uint32_t top = ft_atomic_load_relaxed(&max_index);
    for (uint32_t i = 1; i <= top; i++) {
        /* relaxed: as above. */
        fti_brc_slot *s = ft_atomic_exchange_relaxed(&slots[i], NULL);
        if (s == NULL)
            continue;
        FT_ASSERT(s->count == 0);
        pthread_mutex_destroy(&s->lock);
        free(s->items);
        free(s);
    }
    /* relaxed: as above. */
    ft_atomic_store_relaxed(&max_index, 0);
}
