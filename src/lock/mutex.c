/* mutex.c - slow paths of the one-byte ft_mutex (CPython's Python/lock.c).
 *
 * bits = LOCKED | HAS_PARKED. Guarantees: mutual exclusion (only a CAS that
 * sets LOCKED on a value without it, or a hand-off, gives ownership), no lost
 * wake-up, and bounded unfairness.
 *   - lock: try the CAS; while the lock is held and nobody is parked, spin a
 *     little with ck exponential backoff (a short critical section ends
 *     sooner than a futex round trip); then set HAS_PARKED and park on the
 *     mutex address, validating that bits is still LOCKED|HAS_PARKED under
 *     the bucket lock (so an unlock in between makes the park return AGAIN).
 *   - unlock with HAS_PARKED: wake one waiter and, under the bucket lock, set
 *     the new bits: HAS_PARKED stays iff more waiters remain. Normally the
 *     lock is released and the woken thread competes again (barging keeps
 *     throughput); but a waiter that has waited more than 1 ms is handed the
 *     lock directly (bits keep LOCKED), as CPython does, so no thread starves.
 * An attached thread parks with detach = true: the thread layer's hooks make
 * it DETACHED while it sleeps (it never delays a stop-the-world, releases the
 * GIL, and its critical sections are suspended). */
#include "lock.h"

#include "ft_atomic.h"
#include "ft_ck.h"

/* Waiters that waited this long are handed the lock on unlock. */
#define FTI_MUTEX_FAIR_NS 1000000u
/* Backoff rounds before parking when nobody is parked yet. */
#define FTI_MUTEX_SPIN_ROUNDS 40

typedef struct fti_mutex_waiter {
    uint64_t start_ns;  /* when the waiter started waiting (its owner) */
    bool handed_off;    /* set by the unlocker under the bucket lock */
} fti_mutex_waiter;

bool ft_mutex_trylock(ft_mutex *m)
{
    /* relaxed: only a first guess for the CAS below, which re-validates. */
    uint8_t bits = ft_atomic_load_relaxed(&m->bits);

    while (!(bits & FT_MUTEX_LOCKED)) {
        /* acquire: pairs with the release of the unlocking thread. */
        if (atomic_compare_exchange_weak_explicit(&m->bits, &bits, (uint8_t)(bits | FT_MUTEX_LOCKED),
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

bool ft_mutex_is_locked(ft_mutex *m)
{
    /* relaxed: a snapshot for assertions and tests. */
    return (ft_atomic_load_relaxed(&m->bits) & FT_MUTEX_LOCKED) != 0;
}

void fti_mutex_lock_ex(ft_mutex *m, bool detach)
{
    ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
    fti_mutex_waiter waiter = { 0, false };
    unsigned spins = 0;
    /* relaxed: only a value to CAS against; the CAS carries the ordering. */
    uint8_t bits = ft_atomic_load_relaxed(&m->bits);

    for (;;) {
        if (!(bits & FT_MUTEX_LOCKED)) {
            /* acquire: pairs with the release in ft_mutex_unlock / the
             * unlock slow path; the previous holder's writes are visible. */
            if (ft_atomic_cas_acquire(&m->bits, &bits, (uint8_t)(bits | FT_MUTEX_LOCKED)))
                return;
            continue;
        }
        if (!(bits & FT_MUTEX_HAS_PARKED) && spins < FTI_MUTEX_SPIN_ROUNDS) {
            ck_backoff_eb(&backoff);
            spins++;
            /* relaxed: re-read before the next CAS attempt. */
            bits = ft_atomic_load_relaxed(&m->bits);
            continue;
        }
        if (!(bits & FT_MUTEX_HAS_PARKED)) {
            /* relaxed: HAS_PARKED only tells the unlocker to take the slow
             * path; the park re-validates under the bucket lock. */
            if (!ft_atomic_cas_relaxed(&m->bits, &bits, (uint8_t)(bits | FT_MUTEX_HAS_PARKED)))
                continue;
            bits = (uint8_t)(bits | FT_MUTEX_HAS_PARKED);
        }
        if (waiter.start_ns == 0)
            waiter.start_ns = fti_now_ns();
        {
            uint8_t expected = FT_MUTEX_LOCKED | FT_MUTEX_HAS_PARKED;
            int rc = fti_parking_lot_park(m, &expected, 1, -1, &waiter, detach);

            /* handed_off, and the previous holder's writes, were published
             * before the wake-up, whose release store of the waiter's `woken`
             * word pairs with the acquire load that ended our park. */
            if (rc == FTI_PARK_OK && waiter.handed_off)
                return;
        }
        /* relaxed: re-read before the next CAS attempt. */
        bits = ft_atomic_load_relaxed(&m->bits);
    }
}

void ft_mutex_lock_slow(ft_mutex *m)
{
    fti_mutex_lock_ex(m, true);
}

/* Runs under the bucket lock with the waiter being woken (or NULL). */
static void unlock_unpark_cb(void *arg, void *park_arg, bool has_more_waiters)
{
    ft_mutex *m = arg;
    fti_mutex_waiter *waiter = park_arg;
    uint8_t parked = has_more_waiters ? FT_MUTEX_HAS_PARKED : 0;

    if (waiter != NULL && fti_now_ns() - waiter->start_ns >= FTI_MUTEX_FAIR_NS) {
        waiter->handed_off = true;
        /* release: the critical section's writes go to the new owner (its
         * acquire fence after waking). LOCKED stays: ownership moves. */
        ft_atomic_store_release(&m->bits, (uint8_t)(FT_MUTEX_LOCKED | parked));
    } else {
        /* release: pairs with the acquire CAS of the next locker. */
        ft_atomic_store_release(&m->bits, parked);
    }
}

void ft_mutex_unlock_slow(ft_mutex *m)
{
    /* relaxed: the CAS / unpark below carries the ordering. */
    uint8_t bits = ft_atomic_load_relaxed(&m->bits);

    for (;;) {
        FT_CHECK(bits & FT_MUTEX_LOCKED, "ft_mutex_unlock: mutex %p is not locked (ft_mutex)", (void *)m);
        if (bits & FT_MUTEX_HAS_PARKED) {
            fti_parking_lot_unpark(m, unlock_unpark_cb, m);
            return;
        }
        /* release: pairs with the acquire CAS of the next locker. */
        if (ft_atomic_cas_release(&m->bits, &bits, 0))
            return;
    }
}
