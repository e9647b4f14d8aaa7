/* ftrt/lock.h - the one-byte mutex and per-object critical sections.
 *
 * ft_mutex spins briefly (ck backoff), then parks on an address-keyed parking
 * lot (futex). An attached thread that parks detaches while it waits, so it
 * never delays a stop-the-world. Critical sections lock an object's ob_mutex
 * and are suspended when the thread blocks (PEP 703), so two threads holding
 * each other's objects cannot deadlock through them.
 *
 * ft_critical_section_begin/end are inline fast paths for the uncontended
 * one-object section (push + one CAS; one CAS + pop); re-entry, contention,
 * suspended sections and two-object sections go to out-of-line _slow
 * functions in src/lock/critical_section.c that keep the PEP 703 semantics. */
#ifndef FTRT_LOCK_H
#define FTRT_LOCK_H

#include "ftrt/common.h"
#include "ftrt/thread.h"

#include <stdatomic.h>

typedef struct ft_mutex {
    _Atomic uint8_t bits; /* FT_MUTEX_LOCKED | FT_MUTEX_HAS_PARKED */
} ft_mutex;

#define FT_MUTEX_INIT { 0 }
#define FT_MUTEX_LOCKED     1u
#define FT_MUTEX_HAS_PARKED 2u

FT_API FT_NOINLINE void ft_mutex_lock_slow(ft_mutex *m);
FT_API FT_NOINLINE void ft_mutex_unlock_slow(ft_mutex *m);

static inline void ft_mutex_lock(ft_mutex *m)
{
    uint8_t expected = 0;
    /* acquire: pairs with the release in ft_mutex_unlock; the previous
     * holder's writes are visible inside the section. */
    if (FT_UNLIKELY(!atomic_compare_exchange_strong_explicit(&m->bits, &expected, FT_MUTEX_LOCKED,
                                                             memory_order_acquire, memory_order_relaxed)))
        ft_mutex_lock_slow(m);
}

static inline void ft_mutex_unlock(ft_mutex *m)
{
    uint8_t expected = FT_MUTEX_LOCKED;
    /* release: pairs with the acquire in ft_mutex_lock. */
    if (FT_UNLIKELY(!atomic_compare_exchange_strong_explicit(&m->bits, &expected, 0,
                                                             memory_order_release, memory_order_relaxed)))
        ft_mutex_unlock_slow(m);
}

/* True if the lock was taken without waiting. */
FT_API bool ft_mutex_trylock(ft_mutex *m);
FT_API bool ft_mutex_is_locked(ft_mutex *m);

/* A per-object critical section; lives on the caller's stack. */
typedef struct ft_critical_section {
    struct ft_critical_section *prev; /* enclosing section of this thread */
    ft_mutex *m1;                     /* first lock (lower address for two-object sections) */
    ft_mutex *m2;                     /* second lock or NULL */
    bool suspended;                   /* unlocked while the thread blocks */
} ft_critical_section;

/* Byte offset of ob_mutex in ft_object (checked against ftrt/object.h by a
 * static assertion in critical_section.c); the lock layer sits below the
 * object layer and cannot include its header. */
#define FT_OBJECT_MUTEX_OFFSET 4

/* Out-of-line parts of ft_critical_section_begin/end (not for direct use). */
FT_API FT_NOINLINE void ft_critical_section_begin_slow(ft_critical_section *cs, void *obj);
FT_API FT_NOINLINE void ft_critical_section_end_slow(ft_critical_section *cs);
FT_API FT_NOINLINE void ft_critical_section_resume_slow(void);

/* Locks obj's mutex as the thread's innermost critical section. Re-entering
 * the object the innermost section holds locks nothing. Fast path (an
 * unlocked mutex): the push and one CAS, 13 instructions with callgrind
 * (release build, x86-64). */
static inline void ft_critical_section_begin(ft_critical_section *cs, void *obj)
{
    ft_mutex *m;
    uint8_t expected = 0;

    if (FT_UNLIKELY(obj == NULL)) {
        ft_critical_section_begin_slow(cs, obj); /* reports the misuse */
        return;
    }
    m = (ft_mutex *)(void *)((char *)obj + FT_OBJECT_MUTEX_OFFSET);
    /* Pushed before the lock with no mutex recorded (see critical_section.c). */
    cs->prev = ft_tls_head.critical_section;
    cs->m1 = NULL;
    cs->m2 = NULL;
    cs->suspended = false;
    ft_tls_head.critical_section = cs;
    /* acquire: pairs with the release in ft_mutex_unlock / the unlock slow
     * path; the previous holder's writes are visible inside the section. A
     * failed CAS writes nothing, so a mutex this thread already holds (re-entry)
     * is left as it is and the slow path recognises it. */
    if (FT_LIKELY(atomic_compare_exchange_strong_explicit(&m->bits, &expected, FT_MUTEX_LOCKED,
                                                          memory_order_acquire, memory_order_relaxed)))
        cs->m1 = m;
    else
        ft_critical_section_begin_slow(cs, obj);
}

/* Locks two objects' mutexes in address order (one mutex if a == b). */
FT_API void ft_critical_section_begin2(ft_critical_section *cs, void *a, void *b);

/* Ends the innermost section, resuming the enclosing one if it was suspended.
 * Fast path (a one-mutex section, not suspended, nobody parked): one CAS and
 * the pop, 16 instructions with callgrind (release build, x86-64). */
static inline void ft_critical_section_end(ft_critical_section *cs)
{
    ft_critical_section *prev = cs->prev;

    if (FT_UNLIKELY(ft_tls_head.critical_section != cs || cs->suspended || cs->m2 != NULL ||
                    cs->m1 == NULL)) {
        ft_critical_section_end_slow(cs);
        return;
    }
    ft_mutex_unlock(cs->m1);
    ft_tls_head.critical_section = prev;
    if (FT_UNLIKELY(prev != NULL && prev->suspended))
        ft_critical_section_resume_slow();
}

#define FT_CRITICAL_SECTION_BEGIN(obj) \
    { \
        ft_critical_section ft_cs_; \
        ft_critical_section_begin(&ft_cs_, (obj));
#define FT_CRITICAL_SECTION_END \
        ft_critical_section_end(&ft_cs_); \
    }
#define FT_CRITICAL_SECTION2_BEGIN(a, b) \
    { \
        ft_critical_section ft_cs2_; \
        ft_critical_section_begin2(&ft_cs2_, (a), (b));
#define FT_CRITICAL_SECTION2_END \
        ft_critical_section_end(&ft_cs2_); \
    }

#endif /* FTRT_LOCK_H */
