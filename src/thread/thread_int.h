/* thread_int.h - shared between the thread layer's files (private).
 *
 * The state word of a thread (fti_tstate.state) is the heart of the
 * protocol. Values:
 *   ATTACHED (0)        running; may touch objects; only its owner leaves it.
 *   DETACHED (1)        in a blocking region (or parked on a lock, or waiting
 *                       for the GIL): counts as stopped; may re-attach at will.
 *   held: HOLD_STW (2) and/or HOLD_MERGE (4), never with DETACHED's bit:
 *                       the thread is SUSPENDED and cannot attach until every
 *                       hold is released. HOLD_STW is set by the thread itself
 *                       at a safepoint (ATTACHED -> 2) or by the stopper
 *                       claiming a detached thread (1 -> 2, 4 -> 6); HOLD_MERGE
 *                       by a merger claiming a detached thread (1 -> 4, 2 -> 6).
 *   FREE (8)            the slot holds no thread.
 * Releasing the last hold gives DETACHED, and wakes the waiters parked on the
 * word's address. Re-attaching is the CAS DETACHED -> ATTACHED, so a held
 * thread can never leave its blocking region. */
#ifndef FT_THREAD_PRIV_H
#define FT_THREAD_PRIV_H

#ifndef FT_BUILDING
#error "thread_int.h is private to the ftrt library"
#endif

#include "lock/lock.h"
#include "thread.h"

#include <pthread.h>

#define FTI_MAX_THREADS 1024u

#define FTI_TS_ATTACHED   0u
#define FTI_TS_DETACHED   1u
#define FTI_TS_HOLD_STW   2u
#define FTI_TS_HOLD_MERGE 4u
#define FTI_TS_FREE       8u

/* Full per-thread state, one slot per index in a static table (so a slot's
 * address is stable and other threads may read it at any time). */
typedef struct fti_tstate {
    _Atomic uint32_t state;  /* FTI_TS_* (transitions: see above; any thread, atomic) */
    uint32_t index;          /* 1..FTI_MAX_THREADS (constant) */
    ft_thread_head *head;    /* the owner's TLS head while in use (registry lock; stable while
                                the owner is attached or held) */
    bool in_use;             /* (registry lock) */
    bool zombie;             /* its thread vanished in a fork: permanently detached (registry lock) */
    unsigned blocking_depth; /* nesting of blocking regions and lock parks (owner only) */
    bool holds_gil;          /* (owner only) */
    void *qsbr_reader;       /* its urcu reader record, for fork (owner at attach; registry lock) */
} __attribute__((aligned(64))) fti_tstate;

/* Runtime settings copied at fti_thread_init (written before any attach). */
typedef struct fti_thread_config {
    ft_mode mode;
    unsigned gil_switch_interval_us;
    unsigned stw_timeout_ms;
} fti_thread_config;
extern FT_INTERNAL fti_thread_config fti_thread_cfg;
extern FT_INTERNAL fti_tstate fti_tstates[FTI_MAX_THREADS + 1];

/* The calling thread's slot, or NULL when not attached. */
static inline fti_tstate *fti_tstate_current(void)
{
    return (fti_tstate *)ft_tls_head.tstate;
}

/* Flags of fti_thread_leave / fti_thread_enter. */
#define FTI_LEAVE_SUSPEND_CS 1u /* suspend (and on enter resume) the critical sections */
#define FTI_LEAVE_GIL_FORCED 2u /* a forced GIL switch: do not re-take it before a waiter did */
#define FTI_ENTER_KEEP_QSBR  4u /* enter only: the thread stayed online for QSBR (do not report
                                   a quiescent state by going online again) */

/* ATTACHED -> DETACHED (offline for QSBR, GIL released). */
FT_INTERNAL void fti_thread_leave(fti_tstate *ts, unsigned flags);
/* DETACHED -> ATTACHED, waiting while held (GIL re-taken, online). */
FT_INTERNAL void fti_thread_enter(fti_tstate *ts, unsigned flags);
/* Parks until the state word no longer reads `seen`. */
FT_INTERNAL void fti_thread_wait_state(fti_tstate *ts, uint32_t seen);
/* Clears `hold` from a held state word (DETACHED if no hold remains) and
 * wakes the thread if that released it. */
FT_INTERNAL void fti_thread_release_hold(fti_tstate *ts, uint32_t hold);

/* stw.c */
FT_INTERNAL bool fti_stw_requested(void);
FT_INTERNAL bool fti_stw_is_requester(const fti_tstate *ts);
FT_INTERNAL void fti_stw_notify(void);                     /* a thread detached during a request */
/* Registry lock held: counts a detached (or merge-held) thread as stopped by
 * holding it; sets FT_PENDING_STOP on an attached one. True if claimed. */
FT_INTERNAL bool fti_stw_claim_locked(fti_tstate *ts);
FT_INTERNAL void fti_stw_park_at_safepoint(fti_tstate *ts); /* FT_PENDING_STOP seen */
/* The same, but the thread stays online for QSBR while it is held: it may be
 * inside a lock-free read section (fti_safepoint_stop_only). */
FT_INTERNAL void fti_stw_park_online(fti_tstate *ts);
FT_INTERNAL void fti_stw_reset(void);                       /* init / fini */
FT_INTERNAL void fti_stw_fork_prepare(void);
FT_INTERNAL void fti_stw_fork_parent(void);
FT_INTERNAL void fti_stw_fork_child(bool stopped_by_fork);

/* gil.c */
FT_INTERNAL void fti_gil_init(void);
FT_INTERNAL void fti_gil_acquire(fti_tstate *ts);
FT_INTERNAL void fti_gil_release(fti_tstate *ts, bool forced);
FT_INTERNAL void fti_gil_fork_prepare(void);
FT_INTERNAL void fti_gil_fork_parent(void);
FT_INTERNAL void fti_gil_fork_child(fti_tstate *self);

/* qsbr.c */
FT_INTERNAL void fti_qsbr_register(fti_tstate *ts);
FT_INTERNAL void fti_qsbr_unregister(void);
FT_INTERNAL void fti_qsbr_online(void);
FT_INTERNAL void fti_qsbr_offline(void);
/* online: the forking thread is an attached (online) reader. */
FT_INTERNAL void fti_qsbr_fork_prepare(bool online);
FT_INTERNAL void fti_qsbr_fork_parent(void);
FT_INTERNAL void fti_qsbr_fork_child(void);

#endif /* FT_THREAD_PRIV_H */
