/* thread.c - the thread registry, attaching and detaching, blocking regions,
 * the safepoint slow path, hooks, and fork safety.
 *
 * Guarantees:
 *   - an attached thread has a small index 1..FTI_MAX_THREADS that no other
 *     attached thread has; indexes are reused after detach (lowest first);
 *   - a thread is ATTACHED only while it may touch objects; every wait
 *     (blocking region, contended lock, GIL, stop) happens DETACHED, so no
 *     wait ever delays a stop-the-world;
 *   - ATTACHED -> DETACHED is an exchange done only by the owner; DETACHED ->
 *     ATTACHED is a CAS that fails while a stopper or merger holds the thread
 *     (thread_int.h), so a held thread cannot leave its blocking region;
 *   - the state change and the stopper's request form a Dekker pair (both
 *     seq_cst): a thread that detaches during a request either is seen
 *     DETACHED by the stopper's scan or sees the request and wakes the
 *     stopper (fti_stw_notify), so the stopper never sleeps past it.
 * A thread that exits attached is detached by a pthread key destructor. After
 * fork() the child keeps only the forking thread: prepare stops the world
 * (every other thread is parked or detached, hence offline for QSBR and
 * outside every lock of ours) and the child turns the other slots into
 * zombies: permanently detached threads whose indexes are never reused, so
 * that the objects they owned are merged on their behalf like those of any
 * blocked owner. */
#include "thread_int.h"

#include "ft_atomic.h"
#include "mem/mem.h"

#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>

_Thread_local ft_thread_head ft_tls_head = {
    .pending = FT_PENDING_UNATTACHED,
    .owner_tag = UINT32_MAX,
};

FT_INTERNAL fti_thread_config fti_thread_cfg;
FT_INTERNAL fti_tstate fti_tstates[FTI_MAX_THREADS + 1];

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
/* Highest index handed out (registry lock writes; relaxed reads bound loops). */
static _Atomic uint32_t max_index;
/* 1 between fti_thread_init and fti_thread_fini (release/acquire). */
static _Atomic uint32_t layer_up;

#define FTI_MAX_HOOKS 8
/* Written at init before any thread attaches; read-only afterwards. */
static fti_thread_hooks hooks[FTI_MAX_HOOKS];
static unsigned hook_count;

static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void thread_exit_cleanup(void *arg);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void once_init(void)
{
    if (pthread_key_create(&exit_key, thread_exit_cleanup) != 0)
        ft_fatal("fti_thread_init: pthread_key_create failed (thread registry)");
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ------------------------------------------------------------------ */
/* Park hooks: a thread that parks on a contended lock detaches. */

static void *before_park(void)
{
    fti_tstate *ts = fti_tstate_current();

    /* Not attached, already detached, or the stopper (which must stay
     * attached: it owns the stopped world; it must not wait for locks that
     * stopped threads hold). */
    if (ts == NULL || ts->blocking_depth > 0 || fti_stw_is_requester(ts))
        return NULL;
    ts->blocking_depth++;
    fti_thread_leave(ts, FTI_LEAVE_SUSPEND_CS);
    return ts;
}

static void after_park(void *token)
{
    fti_tstate *ts = token;

    ts->blocking_depth--;
    fti_thread_enter(ts, FTI_LEAVE_SUSPEND_CS);
}

/* ------------------------------------------------------------------ */
/* Init / fini, hooks */

int fti_thread_init(const ft_config *cfg)
{
    pthread_once(&once, once_init);
    pthread_mutex_lock(&registry_lock);
    for (uint32_t i = 0; i <= FTI_MAX_THREADS; i++) {
        fti_tstate *s = &fti_tstates[i];

        s->index = i;
        s->head = NULL;
        s->in_use = false;
        s->zombie = false;
        s->blocking_depth = 0;
        s->holds_gil = false;
        s->qsbr_reader = NULL;
        /* relaxed: the registry lock publishes the slot. */
        ft_atomic_store_relaxed(&s->state, FTI_TS_FREE);
    }
    /* relaxed: readers hold the registry lock or run after an attach. */
    ft_atomic_store_relaxed(&max_index, 0);
    pthread_mutex_unlock(&registry_lock);
    hook_count = 0;
    fti_thread_cfg.mode = cfg->mode;
    fti_thread_cfg.gil_switch_interval_us = cfg->gil_switch_interval_us ? cfg->gil_switch_interval_us : 5000;
    fti_thread_cfg.stw_timeout_ms = cfg->stw_timeout_ms ? cfg->stw_timeout_ms : 5000;
    fti_gil_init();
    fti_stw_reset();
    fti_lock_set_park_hooks(before_park, after_park);
    /* release: pairs with the acquire in ft_thread_attach; the settings
     * above are visible to every thread that attaches. */
    ft_atomic_store_release(&layer_up, 1);
    return 0;
}

void fti_thread_fini(void)
{
    unsigned live = 0;

    pthread_mutex_lock(&registry_lock);
    for (uint32_t i = 1; i <= FTI_MAX_THREADS; i++)
        if (fti_tstates[i].in_use && !fti_tstates[i].zombie)
            live++;
    pthread_mutex_unlock(&registry_lock);
    if (live > 0)
        fti_warn("ft_fini: %u thread(s) still attached", live);
    fti_lock_set_park_hooks(NULL, NULL);
    /* release: pairs with the acquire in ft_thread_attach. */
    ft_atomic_store_release(&layer_up, 0);
}

void fti_thread_add_hooks(const fti_thread_hooks *h)
{
    FT_CHECK(hook_count < FTI_MAX_HOOKS, "fti_thread_add_hooks: more than %d hook sets (thread hooks)",
             FTI_MAX_HOOKS);
    hooks[hook_count++] = *h;
}

/* ------------------------------------------------------------------ */
/* State transitions */

void fti_thread_wait_state(fti_tstate *ts, uint32_t seen)
{
    /* The releaser changes the word, then unparks its address. */
    fti_parking_lot_park(&ts->state, &seen, sizeof seen, -1, NULL, false);
}

void fti_thread_release_hold(fti_tstate *ts, uint32_t hold)
{
    /* relaxed: the CAS below carries the ordering. */
    uint32_t w = ft_atomic_load_relaxed(&ts->state);
    uint32_t n;

    do {
        FT_CHECK(w & hold, "fti_thread_release_hold: thread %u is not held (state %u)", ts->index, w);
        n = w & ~hold;
        if (n == 0)
            n = FTI_TS_DETACHED;
        /* release: pairs with the acquire CAS in fti_thread_enter; what the
         * holder wrote (collector, merger) is visible when the thread runs. */
    } while (!ft_atomic_cas_release(&ts->state, &w, n));
    fti_parking_lot_unpark_all(&ts->state);
}

void fti_thread_leave(fti_tstate *ts, unsigned flags)
{
    uint32_t prev;

    if (flags & FTI_LEAVE_SUSPEND_CS)
        fti_critical_section_suspend_all(&ft_tls_head);
    fti_qsbr_offline();
    /* seq_cst: Dekker pair with ft_stop_the_world (seq_cst store of
     * `requested`, then seq_cst loads of states): either the stopper sees us
     * DETACHED, or we see its request below and wake it. Also a release: our
     * writes are visible to a stopper or merger that claims us. */
    prev = ft_atomic_exchange_seq_cst(&ts->state, FTI_TS_DETACHED);
    FT_ASSERT(prev == FTI_TS_ATTACHED);
    (void)prev;
    if (ts->holds_gil)
        fti_gil_release(ts, (flags & FTI_LEAVE_GIL_FORCED) != 0);
    if (fti_stw_requested())
        fti_stw_notify();
}

void fti_thread_enter(fti_tstate *ts, unsigned flags)
{
    for (;;) {
        uint32_t seen = FTI_TS_DETACHED;

        /* The GIL first, the state second, and never wait for the state
         * while holding the GIL: in GIL mode ATTACHED implies holding it. */
        if (fti_thread_cfg.mode == FT_MODE_GIL && !ts->holds_gil)
            fti_gil_acquire(ts);
        /* acq_rel: acquire pairs with the release that dropped the last hold
         * (restart, merger), so their writes are visible; release orders our
         * detached-time writes before we count as attached again. */
        if (ft_atomic_cas_acq_rel(&ts->state, &seen, FTI_TS_ATTACHED))
            break;
        if (ts->holds_gil)
            fti_gil_release(ts, false);
        fti_thread_wait_state(ts, seen);
    }
    if (!(flags & FTI_ENTER_KEEP_QSBR))
        fti_qsbr_online();
    if (flags & FTI_LEAVE_SUSPEND_CS)
        fti_critical_section_resume_top(&ft_tls_head);
}

/* ------------------------------------------------------------------ */
/* Attach / detach */

int ft_thread_attach(void)
{
    fti_tstate *ts = NULL;
    uint32_t i;

    /* acquire: pairs with the release in fti_thread_init. */
    if (ft_atomic_load_acquire(&layer_up) == 0)
        return -EINVAL;
    if (ft_tls_head.tstate != NULL)
        return -EALREADY;
    if (fti_heap_current() == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&registry_lock);
    for (i = 1; i <= FTI_MAX_THREADS; i++) {
        if (!fti_tstates[i].in_use) {
            ts = &fti_tstates[i];
            break;
        }
    }
    if (ts == NULL) {
        pthread_mutex_unlock(&registry_lock);
        return -EAGAIN;
    }
    ts->in_use = true;
    ts->zombie = false;
    ts->head = &ft_tls_head;
    ts->blocking_depth = 0;
    ts->holds_gil = false;
    /* relaxed: published by the registry lock. A thread arriving during a
     * stop starts held: it was not counted and must not run until restart. */
    ft_atomic_store_relaxed(&ts->state, fti_stw_requested() ? FTI_TS_HOLD_STW : FTI_TS_DETACHED);
    /* relaxed: bounds loops; the registry lock orders the slot itself. */
    if (i > ft_atomic_load_relaxed(&max_index))
        ft_atomic_store_relaxed(&max_index, i);
    pthread_mutex_unlock(&registry_lock);

    ft_tls_head.tstate = ts;
    pthread_setspecific(exit_key, ts);
    fti_qsbr_register(ts);
    fti_thread_enter(ts, 0);
    ft_tls_head.owner_tag = ts->index;
    /* relaxed: only this thread tests the bit; requests set since the slot
     * was published stay pending. */
    ft_atomic_fetch_and_relaxed(&ft_tls_head.pending, ~FT_PENDING_UNATTACHED);
    for (unsigned h = 0; h < hook_count; h++)
        if (hooks[h].on_attach != NULL)
            hooks[h].on_attach(&ft_tls_head);
    return 0;
}

/* Removes the detached caller from the registry, waiting out any hold. */
static void unregister_slot(fti_tstate *ts)
{
    pthread_mutex_lock(&registry_lock);
    for (;;) {
        /* acquire: pairs with the release of whoever changed the word. */
        uint32_t w = ft_atomic_load_acquire(&ts->state);

        if (w == FTI_TS_DETACHED && !fti_stw_requested())
            break;
        if (w == FTI_TS_DETACHED) {
            /* A stop counted us and has not claimed us yet: claim ourselves,
             * then wait for the restart like any held thread. */
            fti_stw_claim_locked(ts);
            continue;
        }
        pthread_mutex_unlock(&registry_lock);
        fti_thread_wait_state(ts, w);
        pthread_mutex_lock(&registry_lock);
    }
    ts->in_use = false;
    ts->head = NULL;
    /* relaxed: published by the registry lock. */
    ft_atomic_store_relaxed(&ts->state, FTI_TS_FREE);
    pthread_mutex_unlock(&registry_lock);
}

void ft_thread_detach(void)
{
    fti_tstate *ts = fti_tstate_current();

    FT_CHECK(ts != NULL, "ft_thread_detach: calling thread is not attached (detached twice?)");
    FT_CHECK(ts->blocking_depth == 0, "ft_thread_detach: called inside a blocking region (ft_blocking_end first)");
    FT_CHECK(ft_tls_head.critical_section == NULL,
             "ft_thread_detach: a critical section is still active (ft_critical_section_end first)");
    FT_CHECK(!fti_stw_is_requester(ts),
             "ft_thread_detach: this thread has stopped the world (ft_start_the_world first)");
    for (unsigned h = hook_count; h-- > 0;)
        if (hooks[h].on_detach != NULL)
            hooks[h].on_detach(&ft_tls_head);
    fti_heap_abandon_current();
    fti_thread_leave(ts, 0);
    fti_qsbr_unregister();
    unregister_slot(ts);
    ft_tls_head.tstate = NULL;
    ft_tls_head.owner_tag = UINT32_MAX;
    /* release: nobody can set bits any more (the slot is gone); a later
     * safepoint on this thread reports misuse. */
    ft_atomic_store_release(&ft_tls_head.pending, FT_PENDING_UNATTACHED);
    pthread_setspecific(exit_key, NULL);
}

bool ft_thread_is_attached(void)
{
    return ft_tls_head.tstate != NULL;
}

uint32_t ft_thread_index(void)
{
    fti_tstate *ts = fti_tstate_current();

    return ts != NULL ? ts->index : 0;
}

static void thread_exit_cleanup(void *arg)
{
    fti_tstate *ts = arg;

    if (fti_tstate_current() != ts)
        return;
    if (ft_tls_head.critical_section != NULL) {
        /* The sections lived in frames that are gone: never touch them. */
        fti_warn("thread %u exited inside a critical section; its locks stay held", ts->index);
        ft_tls_head.critical_section = NULL;
    }
    if (ts->blocking_depth > 0) {
        ts->blocking_depth = 1;
        ft_blocking_end();
    }
    ft_thread_detach();
}

/* ------------------------------------------------------------------ */
/* Safepoints and blocking regions */

/* The inline fast path costs 3 instructions (callgrind, see the comment
 * above ft_safepoint in include/ftrt/thread.h). Services, in order: a stop,
 * a QSBR quiescent state, a GIL drop, then the higher layers' bits. */
void ft_safepoint_slow(void)
{
    fti_tstate *ts = fti_tstate_current();
    uint32_t bits;

    if (ts == NULL)
        ft_fatal("ft_safepoint: calling thread is not attached (ft_thread_attach first)");
    FT_CHECK(ts->blocking_depth == 0, "ft_safepoint: called inside a blocking region (ft_blocking_end first)");
    /* acquire: pairs with the release of the requester's fetch_or (stopper,
     * fti_thread_request, GIL waiter): what it wrote first is visible. */
    bits = ft_atomic_exchange_acquire(&ft_tls_head.pending, 0);
    if (bits & FT_PENDING_STOP)
        fti_stw_park_at_safepoint(ts);
    if (bits & FT_PENDING_QSBR)
        fti_qsbr_quiescent();
    if ((bits & FT_PENDING_GIL_DROP) && ts->holds_gil) {
        fti_thread_leave(ts, FTI_LEAVE_GIL_FORCED);
        fti_thread_enter(ts, 0);
    }
    for (unsigned h = 0; h < hook_count; h++) {
        uint32_t mine = bits & hooks[h].safepoint_mask;

        if (mine != 0 && hooks[h].on_safepoint != NULL)
            hooks[h].on_safepoint(&ft_tls_head, mine);
    }
}

void fti_safepoint_stop_only(void)
{
    fti_tstate *ts = fti_tstate_current();

    if (ts == NULL || ts->blocking_depth != 0)
        return; /* not attached: no stop waits for this thread */
    /* acq_rel: acquire as the exchange in ft_safepoint_slow (pairs with the
     * stopper's release fetch_or); only the STOP bit is taken, the others
     * stay for the next full safepoint. */
    uint32_t bits = ft_atomic_fetch_and_acq_rel(&ft_tls_head.pending, ~FT_PENDING_STOP);
    if (bits & FT_PENDING_STOP)
        fti_stw_park_online(ts);
}

void ft_blocking_begin(void)
{
    fti_tstate *ts = fti_tstate_current();

    FT_CHECK(ts != NULL, "ft_blocking_begin: calling thread is not attached (ft_thread_attach first)");
    if (ts->blocking_depth++ > 0)
        return;
    fti_thread_leave(ts, FTI_LEAVE_SUSPEND_CS);
    /* relaxed: only this thread tests it; a safepoint inside the region
     * then reaches the slow path and reports the misuse. */
    ft_atomic_fetch_or_relaxed(&ft_tls_head.pending, FT_PENDING_UNATTACHED);
}

void ft_blocking_end(void)
{
    fti_tstate *ts = fti_tstate_current();

    FT_CHECK(ts != NULL && ts->blocking_depth > 0,
             "ft_blocking_end: no matching ft_blocking_begin (blocking region)");
    if (--ts->blocking_depth > 0)
        return;
    /* relaxed: as in ft_blocking_begin. */
    ft_atomic_fetch_and_relaxed(&ft_tls_head.pending, ~FT_PENDING_UNATTACHED);
    fti_thread_enter(ts, FTI_LEAVE_SUSPEND_CS);
}

/* ------------------------------------------------------------------ */
/* Requests and registry access for higher layers */

bool fti_thread_index_is_zombie(uint32_t index)
{
    return index != 0 && index <= FTI_MAX_THREADS && fti_tstates[index].zombie;
}

bool fti_thread_request(uint32_t index, uint32_t bits)
{
    bool found = false;

    if (index == 0 || index > FTI_MAX_THREADS)
        return false;
    pthread_mutex_lock(&registry_lock);
    if (fti_tstates[index].in_use && fti_tstates[index].head != NULL) {
        /* release: pairs with the acquire exchange in ft_safepoint_slow. */
        ft_atomic_fetch_or_release(&fti_tstates[index].head->pending, bits);
        found = true;
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

void fti_thread_request_all(uint32_t bits)
{
    pthread_mutex_lock(&registry_lock);
    /* relaxed: the registry lock orders max_index with the slots. */
    for (uint32_t i = 1, n = ft_atomic_load_relaxed(&max_index); i <= n; i++)
        if (fti_tstates[i].in_use && fti_tstates[i].head != NULL)
            /* release: pairs with the acquire exchange in ft_safepoint_slow. */
            ft_atomic_fetch_or_release(&fti_tstates[i].head->pending, bits);
    pthread_mutex_unlock(&registry_lock);
}

void fti_thread_foreach(void (*fn)(ft_thread_head *head, void *arg), void *arg)
{
    /* relaxed: the caller holds the registry or has stopped the world. */
    for (uint32_t i = 1, n = ft_atomic_load_relaxed(&max_index); i <= n; i++)
        if (fti_tstates[i].in_use && fti_tstates[i].head != NULL)
            fn(fti_tstates[i].head, arg);
}

void fti_thread_registry_lock(void)
{
    pthread_mutex_lock(&registry_lock);
}

void fti_thread_registry_unlock(void)
{
    pthread_mutex_unlock(&registry_lock);
}

uint32_t fti_thread_max_index(void)
{
    /* relaxed: a bound for loops; slots are checked under their own rules. */
    return ft_atomic_load_relaxed(&max_index);
}

bool fti_thread_try_suspend_detached(uint32_t index)
{
    fti_tstate *ts;
    uint32_t w;

    if (index == 0 || index > FTI_MAX_THREADS)
        return false;
    ts = &fti_tstates[index];
    /* relaxed: the CAS below carries the ordering. */
    w = ft_atomic_load_relaxed(&ts->state);
    while (w == FTI_TS_DETACHED || w == FTI_TS_HOLD_STW) {
        uint32_t n = w == FTI_TS_DETACHED ? FTI_TS_HOLD_MERGE : (w | FTI_TS_HOLD_MERGE);

        /* acq_rel: acquire pairs with the seq_cst exchange in
         * fti_thread_leave (the owner's writes before it detached are
         * visible to the merger); release orders our claim. */
        if (ft_atomic_cas_acq_rel(&ts->state, &w, n))
            return true;
    }
    return false;
}

void fti_thread_resume_suspended(uint32_t index)
{
    FT_CHECK(index != 0 && index <= FTI_MAX_THREADS,
             "fti_thread_resume_suspended: bad thread index %u (thread registry)", index);
    fti_thread_release_hold(&fti_tstates[index], FTI_TS_HOLD_MERGE);
}

/* ------------------------------------------------------------------ */
/* Starting and joining threads */

typedef struct start_block {
    void *(*fn)(void *arg);
    void *arg;
    int rc;      /* attach result (child writes before posting) */
    sem_t ready; /* posted by the child once attached (or failed) */
} start_block;

static void *start_trampoline(void *p)
{
    start_block *sb = p;
    void *(*fn)(void *) = sb->fn;
    void *arg = sb->arg;
    int rc = ft_thread_attach();
    void *result;

    sb->rc = rc;
    sem_post(&sb->ready); /* sb belongs to the starter from here on */
    if (rc != 0)
        return NULL;
    result = fn(arg);
    if (ft_thread_is_attached())
        ft_thread_detach();
    return result;
}

int ft_thread_start(pthread_t *thread, void *(*fn)(void *arg), void *arg)
{
    start_block sb = { .fn = fn, .arg = arg, .rc = 0 };
    fti_tstate *ts = fti_tstate_current();
    bool block = ts != NULL && ts->blocking_depth == 0;
    int rc;

    FT_CHECK(ts == NULL || !fti_stw_is_requester(ts),
             "ft_thread_start: the world is stopped by this thread (ft_start_the_world first)");
    sem_init(&sb.ready, 0, 0);
    rc = pthread_create(thread, NULL, start_trampoline, &sb);
    if (rc != 0) {
        sem_destroy(&sb.ready);
        return rc;
    }
    if (block)
        ft_blocking_begin();
    while (sem_wait(&sb.ready) != 0 && errno == EINTR)
        ;
    if (block)
        ft_blocking_end();
    sem_destroy(&sb.ready);
    if (sb.rc != 0) {
        pthread_join(*thread, NULL);
        return -sb.rc;
    }
    return 0;
}

int ft_thread_join(pthread_t thread, void **result)
{
    fti_tstate *ts = fti_tstate_current();
    bool block = ts != NULL && ts->blocking_depth == 0;
    int rc;

    if (block)
        ft_blocking_begin();
    rc = pthread_join(thread, result);
    if (block)
        ft_blocking_end();
    return rc;
}

/* ------------------------------------------------------------------ */
/* fork */

/* Forking thread only, between prepare and parent/child. */
static bool fork_stopped;
static bool fork_reentered;

static void fork_prepare(void)
{
    fti_tstate *ts = fti_tstate_current();

    fork_stopped = false;
    fork_reentered = false;
    /* acquire: pairs with the release in fti_thread_init. */
    if (ft_atomic_load_acquire(&layer_up) == 0)
        return;
    if (ts != NULL && !fti_stw_is_requester(ts)) {
        if (ts->blocking_depth > 0) {
            fti_thread_enter(ts, 0);
            fork_reentered = true;
        }
        ft_stop_the_world();
        fork_stopped = true;
    }
    /* attached here whenever ts != NULL (re-entered above) */
    fti_qsbr_fork_prepare(ts != NULL);
    pthread_mutex_lock(&registry_lock);
    fti_gil_fork_prepare();
    fti_stw_fork_prepare();
    fti_parking_lot_fork_prepare();
}

static void fork_parent(void)
{
    fti_tstate *ts = fti_tstate_current();

    /* relaxed: this thread stored it in fork_prepare. */
    if (ft_atomic_load_relaxed(&layer_up) == 0)
        return;
    fti_parking_lot_fork_parent();
    fti_stw_fork_parent();
    fti_gil_fork_parent();
    pthread_mutex_unlock(&registry_lock);
    fti_qsbr_fork_parent();
    if (fork_stopped)
        ft_start_the_world();
    if (fork_reentered)
        fti_thread_leave(ts, 0);
}

static void fork_child(void)
{
    fti_tstate *ts = fti_tstate_current();

    /* relaxed: this thread stored it in fork_prepare. */
    if (ft_atomic_load_relaxed(&layer_up) == 0)
        return;
    fti_parking_lot_fork_child();
    for (uint32_t i = 1; i <= FTI_MAX_THREADS; i++) {
        fti_tstate *s = &fti_tstates[i];

        if (!s->in_use || s == ts)
            continue;
        s->zombie = true;
        s->holds_gil = false;
        /* Its TLS (head included) is memory glibc reuses for the child's
         * next threads: never reach it through the slot again. */
        s->head = NULL;
        /* relaxed: the child is single-threaded here. */
        ft_atomic_store_relaxed(&s->state, FTI_TS_DETACHED);
    }
    fti_gil_fork_child(ts);
    pthread_mutex_unlock(&registry_lock);
    fti_qsbr_fork_child();
    fti_stw_fork_child(fork_stopped);
    if (fork_reentered)
        fti_thread_leave(ts, 0);
}
