/* stw.c - stop-the-world and pause statistics.
 *
 * Guarantee: between ft_stop_the_world() returning and ft_start_the_world(),
 * every other registered thread is held (SUSPENDED, thread_int.h): it is
 * parked at a safepoint or sits in a blocking region it cannot leave, so it
 * touches no object. Why:
 *   - requesters are serialised by stw.mutex (taken while detached, so a
 *     queued requester never delays the current stop);
 *   - under the registry lock the requester sets `countdown` to the number of
 *     other registered threads, then `requested` (seq_cst), then scans: a
 *     DETACHED thread is claimed by CAS (1 -> HOLD_STW), an ATTACHED one gets
 *     FT_PENDING_STOP and holds itself at its next safepoint (ATTACHED ->
 *     HOLD_STW). Either transition happens exactly once per thread per stop
 *     (HOLD_STW is only dropped by the restart), and each decrements
 *     countdown once; so countdown reaches 0 exactly when all are held;
 *   - a thread that detaches during the request is seen by a rescan: the
 *     seq_cst Dekker pair in fti_thread_leave guarantees that it either is
 *     seen DETACHED or bumps `seq`, on which the requester parks;
 *   - a thread that registers during a stop starts held and uncounted.
 * The requester sleeps on the parking lot between events (no busy waiting);
 * it wakes up every cfg->stw_timeout_ms to report late thread indexes, and
 * keeps waiting. */
#include "thread_int.h"

#include "ft_atomic.h"
#include "ft_ck.h"

#include <string.h>
#include <unistd.h>

/* The requester spins this long on `countdown` before it first parks: an
 * attached thread on another core usually reaches its safepoint within
 * microseconds, far less than a futex sleep and wake-up. Only when every
 * thread waited for can have a core of its own: oversubscribed, the spin
 * would steal the CPU the late thread needs. Threads found detached are
 * claimed by the scan itself and need no core, so they do not count.
 * For the same reason, and under the same condition, a thread held at its
 * safepoint spins this long for the restart before it parks: a young
 * collection usually lasts a few microseconds, and a futex wake-up of every
 * stopped thread made a stop at 2 threads cost 16x one at 1 thread
 * (docs/bench-thread.md). */
#define FTI_STW_SPIN_NS 50000u

static struct {
    pthread_mutex_t mutex;      /* one requester at a time */
    _Atomic uint32_t requested; /* 1 from request to restart (requester, seq_cst, registry lock) */
    _Atomic uint32_t stopped;   /* 1 once every other thread is held (requester) */
    _Atomic uint32_t seq;       /* bumped on each event the requester waits for (any thread) */
    _Atomic int32_t countdown;  /* threads still to hold (requester sets; claimers decrement) */
    _Atomic uint32_t requester; /* index of the requester, 0 when none (stw.mutex holder) */
    _Atomic uint32_t spin;      /* 1: the threads waited for each have a core, held threads spin
                                   before they park (requester writes, before it publishes
                                   `requested`; read relaxed: a hint) */
    unsigned depth;             /* nested stops by the requester (requester only) */
    uint64_t request_ns;        /* when the current stop was requested (requester only) */
} stw = { .mutex = PTHREAD_MUTEX_INITIALIZER };

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static ft_pause_stats stats_to_safepoint; /* (stats_lock) */
static ft_pause_stats stats_duration;     /* (stats_lock) */

static int32_t online_cpus(void)
{
    static _Atomic int32_t cached;
    /* relaxed: an idempotent cache of a constant. */
    int32_t n = ft_atomic_load_relaxed(&cached);

    if (n == 0) {
        long v = sysconf(_SC_NPROCESSORS_ONLN);

        n = v > 0 ? (int32_t)v : 1;
        /* relaxed: as above. */
        ft_atomic_store_relaxed(&cached, n);
    }
    return n;
}

bool fti_stw_requested(void)
{
    /* seq_cst: the load half of the Dekker pair (see fti_thread_leave). */
    return ft_atomic_load_seq_cst(&stw.requested) != 0;
}

bool fti_stw_is_requester(const fti_tstate *ts)
{
    /* relaxed: only the requester itself can find its own index here. */
    return ft_atomic_load_relaxed(&stw.requester) == ts->index;
}

bool fti_world_is_stopped(void)
{
    /* acquire: pairs with the release store of `stopped` by the requester. */
    return ft_atomic_load_acquire(&stw.stopped) != 0;
}

void fti_stw_notify(void)
{
    /* release: pairs with the acquire load of seq by the requester; the
     * state change made before is visible to its rescan. */
    ft_atomic_fetch_add_release(&stw.seq, 1);
    fti_parking_lot_unpark_all(&stw.seq);
}

static void countdown_done_one(void)
{
    /* acq_rel: release publishes the stopped thread's writes to the
     * requester (its acquire load of countdown, through the release sequence
     * of these decrements). */
    if (ft_atomic_fetch_sub_acq_rel(&stw.countdown, 1) == 1)
        fti_stw_notify();
}

bool fti_stw_claim_locked(fti_tstate *ts)
{
    /* seq_cst: the load half of the Dekker pair with fti_thread_leave. */
    uint32_t w = ft_atomic_load_seq_cst(&ts->state);

    for (;;) {
        uint32_t n;

        if (w == FTI_TS_ATTACHED) {
            /* release: pairs with the acquire exchange in ft_safepoint_slow. */
            ft_atomic_fetch_or_release(&ts->head->pending, FT_PENDING_STOP);
            return false;
        }
        if ((w & FTI_TS_HOLD_STW) || w == FTI_TS_FREE)
            return false; /* already held for this stop, or arrived during it */
        n = w == FTI_TS_DETACHED ? FTI_TS_HOLD_STW : (w | FTI_TS_HOLD_STW);
        /* acq_rel: acquire pairs with the seq_cst exchange in
         * fti_thread_leave (the thread's writes are visible to the stopper);
         * on failure w is reloaded and re-examined. */
        if (ft_atomic_cas_acq_rel(&ts->state, &w, n)) {
            countdown_done_one();
            return true;
        }
    }
}

static void park_held(fti_tstate *ts, bool qsbr_offline)
{
    uint32_t expected = FTI_TS_ATTACHED;

    /* A stale bit (its stop is over) or our own stop: nothing to do. */
    if (!fti_stw_requested() || fti_stw_is_requester(ts))
        return;
    if (qsbr_offline)
        fti_qsbr_offline();
    /* acq_rel: release publishes our writes to the stopper; only this thread
     * leaves ATTACHED, so the CAS cannot fail. */
    if (!ft_atomic_cas_acq_rel(&ts->state, &expected, FTI_TS_HOLD_STW))
        ft_fatal("ft_safepoint: thread %u in state %u at a stop (thread registry)", ts->index, expected);
    if (ts->holds_gil)
        fti_gil_release(ts, false);
    countdown_done_one();
    /* relaxed: a hint; the state word below carries the synchronisation. */
    if (ft_atomic_load_relaxed(&stw.spin)) {
        uint64_t start = fti_now_ns();
        unsigned polls = 0;

        /* acquire: pairs with the release CAS of the restart
         * (fti_thread_release_hold); fti_thread_enter re-checks by CAS. */
        while (ft_atomic_load_acquire(&ts->state) & FTI_TS_HOLD_STW) {
            ck_pr_stall();
            if ((++polls & 63u) == 0 && fti_now_ns() - start >= FTI_STW_SPIN_NS)
                break;
        }
    }
    /* Waits for the restart, then re-attaches (GIL; QSBR online again
     * unless it stayed online). */
    fti_thread_enter(ts, qsbr_offline ? 0 : FTI_ENTER_KEEP_QSBR);
}

void fti_stw_park_at_safepoint(fti_tstate *ts)
{
    park_held(ts, true);
}

void fti_stw_park_online(fti_tstate *ts)
{
    park_held(ts, false);
}

static void record_pause(ft_pause_stats *st, uint64_t ns)
{
    unsigned bucket = ns == 0 ? 0 : (unsigned)(63 - __builtin_clzll(ns));

    if (bucket >= FT_PAUSE_BUCKETS)
        bucket = FT_PAUSE_BUCKETS - 1;
    st->count++;
    st->total_ns += ns;
    if (ns > st->max_ns)
        st->max_ns = ns;
    st->hist[bucket]++;
}

static void report_late(uint64_t waited_ns, uint32_t self)
{
    fti_thread_registry_lock();
    for (uint32_t i = 1, n = fti_thread_max_index(); i <= n; i++) {
        fti_tstate *s = &fti_tstates[i];

        /* relaxed: a diagnostic snapshot. */
        if (i != self && s->in_use && ft_atomic_load_relaxed(&s->state) == FTI_TS_ATTACHED)
            fti_warn("ft_stop_the_world: thread index %u has not reached a safepoint after %llu ms "
                     "(still waiting)",
                     i, (unsigned long long)(waited_ns / 1000000u));
    }
    fti_thread_registry_unlock();
}

/* Registry lock held: claims every other thread it can. */
static void scan_locked(const fti_tstate *self)
{
    for (uint32_t i = 1, n = fti_thread_max_index(); i <= n; i++) {
        fti_tstate *s = &fti_tstates[i];

        if (s != self && s->in_use)
            fti_stw_claim_locked(s);
    }
}

void ft_stop_the_world(void)
{
    fti_tstate *ts = fti_tstate_current();
    uint64_t timeout_ns, next_report, now;
    int32_t others = 0, attached = 0;

    FT_CHECK(ts != NULL && ts->blocking_depth == 0,
             "ft_stop_the_world: calling thread is not attached (ft_thread_attach first)");
    if (fti_stw_is_requester(ts)) {
        stw.depth++;
        return;
    }
    if (pthread_mutex_trylock(&stw.mutex) != 0) {
        /* Queue detached: the current stop must not wait for us. */
        ts->blocking_depth++;
        fti_thread_leave(ts, 0);
        pthread_mutex_lock(&stw.mutex);
        fti_thread_enter(ts, 0);
        ts->blocking_depth--;
    }
    stw.depth = 0;
    stw.request_ns = fti_now_ns();

    fti_thread_registry_lock();
    for (uint32_t i = 1, n = fti_thread_max_index(); i <= n; i++) {
        fti_tstate *s = &fti_tstates[i];

        /* relaxed: a hint for the spin decision (a thread detaching now is
         * claimed by a rescan and needs no core either). */
        if (s != ts && s->in_use) {
            others++;
            if (ft_atomic_load_relaxed(&s->state) == FTI_TS_ATTACHED)
                attached++;
        }
    }
    /* relaxed: a hint, read by held threads after `requested` (seq_cst). */
    ft_atomic_store_relaxed(&stw.spin, attached < online_cpus() ? 1u : 0u);
    /* relaxed: published by the seq_cst store of `requested` below, which
     * every decrementer reads first. */
    ft_atomic_store_relaxed(&stw.countdown, others);
    /* relaxed: only this thread compares its own index with it. */
    ft_atomic_store_relaxed(&stw.requester, ts->index);
    /* seq_cst: the store half of the Dekker pair with fti_thread_leave. */
    ft_atomic_store_seq_cst(&stw.requested, 1);
    scan_locked(ts);
    fti_thread_registry_unlock();

    timeout_ns = (uint64_t)fti_thread_cfg.stw_timeout_ms * 1000000u;
    next_report = stw.request_ns + timeout_ns;
    /* acquire: pairs with the acq_rel decrements (see countdown_done_one). */
    /* relaxed: our own hint, written above. */
    while (ft_atomic_load_relaxed(&stw.spin) && ft_atomic_load_acquire(&stw.countdown) != 0 &&
           fti_now_ns() - stw.request_ns < FTI_STW_SPIN_NS)
        ck_pr_stall();
    for (;;) {
        /* acquire: pairs with the release increments in fti_stw_notify. */
        uint32_t seq = ft_atomic_load_acquire(&stw.seq);

        /* acquire: pairs with the acq_rel decrements (see countdown_done_one). */
        if (ft_atomic_load_acquire(&stw.countdown) == 0)
            break;
        fti_thread_registry_lock();
        scan_locked(ts);
        fti_thread_registry_unlock();
        /* acquire: as above. */
        if (ft_atomic_load_acquire(&stw.countdown) == 0)
            break;
        now = fti_now_ns();
        if (now >= next_report) {
            report_late(now - stw.request_ns, ts->index);
            next_report = now + timeout_ns;
        }
        fti_parking_lot_park(&stw.seq, &seq, sizeof seq, (int64_t)(next_report - now), NULL, false);
    }
    /* release: pairs with the acquire in fti_world_is_stopped. */
    ft_atomic_store_release(&stw.stopped, 1);
    now = fti_now_ns();
    pthread_mutex_lock(&stats_lock);
    record_pause(&stats_to_safepoint, now - stw.request_ns);
    pthread_mutex_unlock(&stats_lock);
}

void ft_start_the_world(void)
{
    fti_tstate *ts = fti_tstate_current();
    uint64_t now;

    FT_CHECK(ts != NULL && fti_stw_is_requester(ts),
             "ft_start_the_world: the world is not stopped by this thread (ft_stop_the_world first)");
    if (stw.depth > 0) {
        stw.depth--;
        return;
    }
    fti_thread_registry_lock();
    /* release: pairs with the acquire in fti_world_is_stopped. */
    ft_atomic_store_release(&stw.stopped, 0);
    /* relaxed: only the requester compares its index with it. */
    ft_atomic_store_relaxed(&stw.requester, 0);
    /* seq_cst: cleared before the holds are released, so that a released
     * thread that still carries FT_PENDING_STOP sees the stop is over. */
    ft_atomic_store_seq_cst(&stw.requested, 0);
    for (uint32_t i = 1, n = fti_thread_max_index(); i <= n; i++) {
        fti_tstate *s = &fti_tstates[i];

        /* relaxed: only the restart removes HOLD_STW; the CAS in
         * fti_thread_release_hold orders the release. */
        if (s != ts && s->in_use && (ft_atomic_load_relaxed(&s->state) & FTI_TS_HOLD_STW))
            fti_thread_release_hold(s, FTI_TS_HOLD_STW);
    }
    fti_thread_registry_unlock();
    now = fti_now_ns();
    pthread_mutex_lock(&stats_lock);
    record_pause(&stats_duration, now - stw.request_ns);
    pthread_mutex_unlock(&stats_lock);
    pthread_mutex_unlock(&stw.mutex);
}

void fti_stw_reset(void)
{
    pthread_mutex_lock(&stats_lock);
    memset(&stats_to_safepoint, 0, sizeof stats_to_safepoint);
    memset(&stats_duration, 0, sizeof stats_duration);
    pthread_mutex_unlock(&stats_lock);
}

void ft_thread_get_pause_stats(ft_pause_stats *time_to_safepoint, ft_pause_stats *stop_duration)
{
    pthread_mutex_lock(&stats_lock);
    if (time_to_safepoint != NULL)
        *time_to_safepoint = stats_to_safepoint;
    if (stop_duration != NULL)
        *stop_duration = stats_duration;
    pthread_mutex_unlock(&stats_lock);
}

void ft_thread_reset_pause_stats(void)
{
    fti_stw_reset();
}

uint64_t ft_pause_stats_percentile(const ft_pause_stats *stats, double percentile)
{
    uint64_t target, seen = 0;

    if (stats == NULL || stats->count == 0)
        return 0;
    if (percentile <= 0)
        percentile = 0;
    if (percentile >= 100)
        return stats->max_ns;
    target = (uint64_t)(percentile / 100.0 * (double)stats->count);
    if (target == 0)
        target = 1;
    for (unsigned i = 0; i < FT_PAUSE_BUCKETS; i++) {
        seen += stats->hist[i];
        if (seen >= target) {
            /* The bucket's upper bound, never above the largest pause seen. */
            uint64_t upper = i + 1 >= 64 ? UINT64_MAX : (UINT64_C(1) << (i + 1)) - 1;

            return upper < stats->max_ns ? upper : stats->max_ns;
        }
    }
    return stats->max_ns;
}

void fti_stw_fork_prepare(void)
{
    pthread_mutex_lock(&stats_lock);
}

void fti_stw_fork_parent(void)
{
    pthread_mutex_unlock(&stats_lock);
}

void fti_stw_fork_child(bool stopped_by_fork)
{
    pthread_mutex_unlock(&stats_lock);
    if (!stopped_by_fork)
        return;
    /* The forking thread stopped the world in prepare and is the only
     * thread left: end that stop without touching the zombies further. */
    stw.depth = 0;
    /* relaxed: the child is single-threaded here. */
    ft_atomic_store_relaxed(&stw.stopped, 0);
    ft_atomic_store_relaxed(&stw.requester, 0);
    ft_atomic_store_relaxed(&stw.requested, 0);
    ft_atomic_store_relaxed(&stw.countdown, 0);
    pthread_mutex_unlock(&stw.mutex);
}
