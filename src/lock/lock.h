/* lock.h - the lock layer's interface to the layers above (private).
 *
 * The parking lot (parking_lot.c) lets a thread sleep keyed by an address and
 * be woken by another thread that knows the address; ft_mutex and the thread
 * layer's waits (stop-the-world, held states) are built on it. The lock layer
 * sits below the thread layer, so it cannot detach a thread itself: the thread
 * layer registers "before park / after park" hooks at init
 * (fti_lock_set_park_hooks), called around every sleep that asked to detach. */
#ifndef FT_LOCK_INT_H
#define FT_LOCK_INT_H

#ifndef FT_BUILDING
#error "lock.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/lock.h"
#include "ftrt/thread.h"

/* Results of fti_parking_lot_park. */
#define FTI_PARK_OK      0 /* woken by an unpark (park_arg was handed to its callback) */
#define FTI_PARK_AGAIN   1 /* *addr no longer held the expected value: not parked */
#define FTI_PARK_TIMEOUT 2 /* the timeout expired first */

/* Parks the calling thread on addr if the size-byte value at addr (size 1, 4
 * or 8) still equals *expected, checked under the bucket lock so that an
 * unpark after the caller changed the value is never missed. timeout_ns < 0
 * waits forever. park_arg is handed to the unparker's callback. With detach,
 * the before/after park hooks run around the sleep. */
FT_INTERNAL int fti_parking_lot_park(const void *addr, const void *expected, size_t size,
                                     int64_t timeout_ns, void *park_arg, bool detach);

/* Called by fti_parking_lot_unpark under the bucket lock: park_arg of the
 * waiter being woken (NULL when none waits), and whether more wait on addr. */
typedef void (*fti_unpark_fn)(void *arg, void *park_arg, bool has_more_waiters);

/* Wakes the longest-waiting thread parked on addr (FIFO), calling fn first.
 * Returns true if a thread was woken. */
FT_INTERNAL bool fti_parking_lot_unpark(const void *addr, fti_unpark_fn fn, void *arg);

/* Wakes every thread parked on addr. Returns how many. */
FT_INTERNAL unsigned fti_parking_lot_unpark_all(const void *addr);

/* Hooks of the thread layer. before_park returns a token handed to
 * after_park (NULL: nothing was done). Set once at init. */
typedef void *(*fti_before_park_fn)(void);
typedef void (*fti_after_park_fn)(void *token);
FT_INTERNAL void fti_lock_set_park_hooks(fti_before_park_fn before, fti_after_park_fn after);

/* Locks m; with detach false the wait never calls the park hooks (used while
 * the thread layer re-takes critical sections, where it already handles the
 * thread's state). */
FT_INTERNAL void fti_mutex_lock_ex(ft_mutex *m, bool detach);

/* Critical sections of the calling thread (head = its ft_tls_head).
 * suspend_all unlocks every active section's mutexes and marks them
 * suspended; resume_top re-locks the innermost one if it is suspended (the
 * outer ones are resumed as the inner ones end). */
FT_INTERNAL void fti_critical_section_suspend_all(ft_thread_head *head);
FT_INTERNAL void fti_critical_section_resume_top(ft_thread_head *head);

/* fork: prepare takes every bucket lock, parent releases them, child
 * releases them and forgets the waiters (their threads do not exist there). */
FT_INTERNAL void fti_parking_lot_fork_prepare(void);
FT_INTERNAL void fti_parking_lot_fork_parent(void);
FT_INTERNAL void fti_parking_lot_fork_child(void);

/* Monotonic clock in nanoseconds. */
FT_INTERNAL uint64_t fti_now_ns(void);

#endif /* FT_LOCK_INT_H */
