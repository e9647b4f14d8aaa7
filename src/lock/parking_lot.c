/* parking_lot.c - address-keyed waiting (WebKit's ParkingLot, CPython's
 * Python/parking_lot.c).
 *
 * Guarantee: a thread that parks on addr while *addr == expected is woken by
 * any unpark on addr that happens after it parked, and never misses one that
 * happens after the value changed. Why: the value is compared under the
 * bucket lock, and every waker changes the value before it takes that same
 * lock; so either the parker sees the new value (AGAIN) or it is in the queue
 * before the waker looks.
 *
 * Each waiter lives on its parker's stack and sleeps on its own futex word
 * (`woken`), so a wake targets exactly one thread. The waker unlinks the
 * waiter under the bucket lock and only then publishes `woken`; a waiter whose
 * timeout fires checks under the lock whether it is still queued, and if it
 * was already unlinked it waits for `woken` (it was handed the wake-up and its
 * callback has run). The stack frame is therefore never touched after its
 * owner returns: the last access by the waker is the release store of
 * `woken`; the futex wake that follows is a syscall on the address, which is
 * harmless even if the frame is gone. */
#include "lock.h"

#include "ft_atomic.h"
#include "ft_ck.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct fti_waiter {
    struct fti_waiter *next;  /* (bucket lock) */
    struct fti_waiter *prev;  /* (bucket lock) */
    const void *addr;         /* key (written before enqueue, read under bucket lock) */
    void *park_arg;           /* handed to the unparker's callback (bucket lock) */
    bool queued;              /* in its bucket's list (bucket lock) */
    _Atomic uint32_t woken;   /* 0 -> 1 by the waker after unlinking (release); parker acquires */
} fti_waiter;

/* The bucket lock: Drepper's three-state futex mutex ("Futexes Are
 * Tricky", mutex3): 0 free, 1 locked, 2 locked with sleepers. Our own rather
 * than a pthread mutex so that fork's prepare can hold all of them at once
 * (ThreadSanitizer's deadlock detector tracks at most 64 held mutexes). */
typedef struct fti_rawlock {
    _Atomic uint32_t v;
} fti_rawlock;

static void futex_wake_one(_Atomic uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void rawlock_lock(fti_rawlock *l)
{
    ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
    uint32_t c = 0;

    /* acquire: pairs with the release in rawlock_unlock. */
    if (ft_atomic_cas_acquire(&l->v, &c, 1))
        return;
    for (int i = 0; i < 8; i++) {
        ck_backoff_eb(&backoff);
        c = 0;
        /* acquire: as above. */
        if (ft_atomic_cas_acquire(&l->v, &c, 1))
            return;
    }
    /* acquire: as above; 2 marks that a sleeper may need waking. */
    if (c != 2)
        c = ft_atomic_exchange_acquire(&l->v, 2);
    while (c != 0) {
        syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2u, NULL, NULL, 0);
        /* acquire: as above. */
        c = ft_atomic_exchange_acquire(&l->v, 2);
    }
}

static void rawlock_unlock(fti_rawlock *l)
{
    /* release: pairs with the acquires in rawlock_lock. */
    if (ft_atomic_fetch_sub_release(&l->v, 1) != 1) {
        /* release: as above (the value was 2: sleepers may wait). */
        ft_atomic_store_release(&l->v, 0);
        futex_wake_one(&l->v);
    }
}

/* Invariant: a waiter is in bucket_of(addr)'s list iff queued, in FIFO order. */
typedef struct fti_bucket {
    fti_rawlock lock;
    fti_waiter *head; /* (lock) */
    fti_waiter *tail; /* (lock) */
} __attribute__((aligned(64))) fti_bucket;

#define FTI_BUCKET_COUNT 256u

static fti_bucket buckets[FTI_BUCKET_COUNT];

/* Set once by the thread layer at init (release); read acquire per park. */
static _Atomic(fti_before_park_fn) before_park_hook;
static _Atomic(fti_after_park_fn) after_park_hook;

static fti_bucket *bucket_of(const void *addr)
{
    uint64_t h = (uint64_t)(uintptr_t)addr * UINT64_C(0x9E3779B97F4A7C15);

    return &buckets[h >> 56];
}

uint64_t fti_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void fti_lock_set_park_hooks(fti_before_park_fn before, fti_after_park_fn after)
{
    /* release: pairs with the acquire loads in fti_parking_lot_park. */
    ft_atomic_store_release(&before_park_hook, before);
    ft_atomic_store_release(&after_park_hook, after);
}

/* Sleeps until *word != 0 or the absolute CLOCK_MONOTONIC deadline passes
 * (deadline 0: none). Returns false on timeout. */
static bool futex_wait_until(_Atomic uint32_t *word, uint64_t deadline_ns)
{
    struct timespec ts;

    /* acquire: pairs with the release store of `woken` by the waker. */
    while (ft_atomic_load_acquire(word) == 0) {
        if (deadline_ns != 0) {
            if (fti_now_ns() >= deadline_ns)
                return false;
            ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
            ts.tv_nsec = (long)(deadline_ns % 1000000000u);
            /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
            syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, 0u, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
        } else {
            syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0u, NULL, NULL, 0);
        }
    }
    return true;
}

static bool value_matches(const void *addr, const void *expected, size_t size)
{
    /* relaxed: the comparison is ordered by the bucket lock, which every
     * waker takes after changing the value (see the file comment). */
    switch (size) {
    case 1:
        return ft_atomic_load_relaxed((_Atomic uint8_t *)(uintptr_t)addr) == *(const uint8_t *)expected;
    case 4:
        return ft_atomic_load_relaxed((_Atomic uint32_t *)(uintptr_t)addr) == *(const uint32_t *)expected;
    case 8:
        return ft_atomic_load_relaxed((_Atomic uint64_t *)(uintptr_t)addr) == *(const uint64_t *)expected;
    default:
        ft_fatal("fti_parking_lot_park: unsupported value size %zu", size);
    }
}

static void unlink_waiter(fti_bucket *b, fti_waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        b->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        b->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
}

int fti_parking_lot_park(const void *addr, const void *expected, size_t size, int64_t timeout_ns,
                         void *park_arg, bool detach)
{
    fti_bucket *b = bucket_of(addr);
    fti_waiter w = { .addr = addr, .park_arg = park_arg };
    uint64_t deadline = 0;
    void *token = NULL;
    fti_after_park_fn after = NULL;
    bool woken;

    if (timeout_ns >= 0)
        deadline = fti_now_ns() + (uint64_t)timeout_ns + 1; /* +1: 0 means "none" */
    atomic_init(&w.woken, 0);
    rawlock_lock(&b->lock);
    if (!value_matches(addr, expected, size)) {
        rawlock_unlock(&b->lock);
        return FTI_PARK_AGAIN;
    }
    w.prev = b->tail;
    if (b->tail != NULL)
        b->tail->next = &w;
    else
        b->head = &w;
    b->tail = &w;
    w.queued = true;
    rawlock_unlock(&b->lock);

    if (detach) {
        /* acquire: pairs with the release in fti_lock_set_park_hooks. */
        fti_before_park_fn before = ft_atomic_load_acquire(&before_park_hook);
        after = ft_atomic_load_acquire(&after_park_hook);
        if (before != NULL)
            token = before();
    }
    woken = futex_wait_until(&w.woken, deadline);
    if (!woken) {
        rawlock_lock(&b->lock);
        if (w.queued) {
            unlink_waiter(b, &w);
            rawlock_unlock(&b->lock);
        } else {
            /* A waker unlinked us and ran its callback: take its wake-up. */
            rawlock_unlock(&b->lock);
            futex_wait_until(&w.woken, 0);
            woken = true;
        }
    }
    if (token != NULL && after != NULL)
        after(token);
    return woken ? FTI_PARK_OK : FTI_PARK_TIMEOUT;
}

static void wake(fti_waiter *w)
{
    /* release: pairs with the acquire in futex_wait_until; the callback's
     * effects (e.g. a mutex handed off) are visible to the woken thread. */
    ft_atomic_store_release(&w->woken, 1);
    futex_wake_one(&w->woken);
}

bool fti_parking_lot_unpark(const void *addr, fti_unpark_fn fn, void *arg)
{
    fti_bucket *b = bucket_of(addr);
    fti_waiter *w;
    fti_waiter *more;

    rawlock_lock(&b->lock);
    for (w = b->head; w != NULL && w->addr != addr; w = w->next)
        ;
    if (w != NULL) {
        for (more = w->next; more != NULL && more->addr != addr; more = more->next)
            ;
        unlink_waiter(b, w);
        if (fn != NULL)
            fn(arg, w->park_arg, more != NULL);
    } else if (fn != NULL) {
        fn(arg, NULL, false);
    }
    rawlock_unlock(&b->lock);
    if (w != NULL)
        wake(w);
    return w != NULL;
}

unsigned fti_parking_lot_unpark_all(const void *addr)
{
    fti_bucket *b = bucket_of(addr);
    fti_waiter *list = NULL;
    fti_waiter *w;
    fti_waiter *next;
    unsigned n = 0;

    rawlock_lock(&b->lock);
    for (w = b->head; w != NULL; w = next) {
        next = w->next;
        if (w->addr == addr) {
            unlink_waiter(b, w);
            w->next = list; /* private list: w is no longer reachable by others */
            list = w;
        }
    }
    rawlock_unlock(&b->lock);
    for (w = list; w != NULL; w = next) {
        next = w->next; /* read before the wake: the frame may vanish after it */
        wake(w);
        n++;
    }
    return n;
}

void fti_parking_lot_fork_prepare(void)
{
    for (unsigned i = 0; i < FTI_BUCKET_COUNT; i++)
        rawlock_lock(&buckets[i].lock);
}

void fti_parking_lot_fork_parent(void)
{
    for (unsigned i = 0; i < FTI_BUCKET_COUNT; i++)
        rawlock_unlock(&buckets[i].lock);
}

void fti_parking_lot_fork_child(void)
{
    /* The parked threads do not exist in the child; their frames are
     * unreachable copies. Forget them. */
    for (unsigned i = 0; i < FTI_BUCKET_COUNT; i++) {
        buckets[i].head = buckets[i].tail = NULL;
        rawlock_unlock(&buckets[i].lock);
    }
}
