/* qsbr.c - quiescent-state-based reclamation on liburcu-qsbr; the only file
 * that calls urcu, and the home of the ThreadSanitizer annotations for its
 * grace periods.
 *
 * Mapping: an attached thread is a registered, online urcu reader; a
 * blocking region, a lock park and a stop-the-world park are "offline"; the
 * safepoint slow path with FT_PENDING_QSBR is rcu_quiescent_state().
 * fti_qsbr_synchronize asks every attached thread for a quiescent state
 * (FT_PENDING_QSBR, so spinning threads reach their slow path; they keep
 * re-arming it while a synchronize is in progress) and waits in
 * synchronize_rcu() while the caller itself is detached: it neither holds
 * up a stop-the-world nor (GIL mode) keeps the GIL others need to reach a
 * safepoint. Its critical sections stay locked: a writer may force a grace
 * period in the middle of a container update.
 *
 * Why the TSan annotations are sound: urcu's reader counters are plain
 * volatile accesses with hand-written barriers, invisible to TSan. A grace
 * period guarantees that every read a reader made before its quiescent (or
 * offline) point happens before synchronize_rcu() returns. We state exactly
 * that: each quiescent/offline point releases a project-wide token, and
 * fti_qsbr_synchronize acquires it after synchronize_rcu returns.
 *
 * fork: register, unregister and synchronize_rcu take urcu's internal
 * mutexes, so the child must not inherit one held by a thread that does not
 * exist there. Register and unregister run under qsbr_lock, which fork's
 * prepare takes. synchronize_rcu does not: concurrent calls must reach urcu
 * together, which batches them into one grace period (two threads forcing
 * grace periods used to queue on that mutex). Instead each call counts
 * itself in `sync_active` and the fork waits for the count to drain after
 * raising `fork_pending`, which keeps new calls out (a seq_cst Dekker pair:
 * a call either sees the fork pending and backs out, or is seen and waited
 * for). The forking thread goes offline first: a synchronize in progress
 * may be waiting for its quiescent state.
 * Every other thread is offline at fork (stopped or detached), so the
 * child's grace periods do not wait for them. But their reader records stay
 * linked in urcu's registry, and glibc hands their TLS blocks (where those
 * records live) to the child's next threads: registering one of them would
 * link a record that is already linked and corrupt the list. So the child
 * unlinks the vanished threads' records (urcu-qsbr has no API to unregister
 * another thread; the record layout is the one of urcu/static/urcu-qsbr.h,
 * and the list is urcu's cds_list, protected by urcu's registry lock that no
 * thread holds here since qsbr_lock excluded every register/unregister). */
#include "thread_int.h"

#include "ft_atomic.h"

#include <urcu-qsbr.h>
#include <urcu/list.h>
#include <urcu/static/urcu-qsbr.h>

#if FT_CFG_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Serialises register/unregister with each other and with fork. */
static pthread_mutex_t qsbr_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint32_t sync_active;  /* synchronize_rcu calls in progress (any thread, seq_cst) */
static _Atomic uint32_t fork_pending; /* 1 while a fork waits for or holds the urcu state (seq_cst) */
static bool fork_went_offline;        /* the forking thread's own (fork handlers run on one thread) */
#if FT_CFG_TSAN
/* The address TSan's happens-before annotations use. */
static char qsbr_grace_token;
#endif

static void annotate_quiescent(void)
{
#if FT_CFG_TSAN
    __tsan_release(&qsbr_grace_token);
#endif
}

static void annotate_grace_period_end(void)
{
#if FT_CFG_TSAN
    __tsan_acquire(&qsbr_grace_token);
#endif
}

void fti_qsbr_register(fti_tstate *ts)
{
    pthread_mutex_lock(&qsbr_lock);
    rcu_register_thread();
    ts->qsbr_reader = &URCU_TLS(urcu_qsbr_reader);
    rcu_thread_offline(); /* registered online; the thread is still detached */
    pthread_mutex_unlock(&qsbr_lock);
}

void fti_qsbr_unregister(void)
{
    annotate_quiescent();
    pthread_mutex_lock(&qsbr_lock);
    rcu_unregister_thread();
    pthread_mutex_unlock(&qsbr_lock);
}

void fti_qsbr_online(void)
{
    rcu_thread_online();
}

void fti_qsbr_offline(void)
{
    annotate_quiescent();
    rcu_thread_offline();
}

/* fti_qsbr_synchronize calls in progress (any thread, atomic). While one is,
 * a thread that reports a quiescent state at its safepoint asks itself for
 * another: a report made between the request and the start of urcu's grace
 * period does not count for that grace period, and a thread that never
 * blocks would otherwise never make one that does. */
static _Atomic uint32_t qsbr_sync_waiting;

void fti_qsbr_quiescent(void)
{
    annotate_quiescent();
    rcu_quiescent_state();
    /* acquire: pairs with the release increment in fti_qsbr_synchronize,
     * which precedes the request this safepoint answers, so the answer to
     * that request always re-arms while the grace period may still wait. */
    if (ft_atomic_load_acquire(&qsbr_sync_waiting) != 0)
        /* relaxed: our own pending word; only this thread acts on the bit. */
        ft_atomic_fetch_or_relaxed(&ft_tls_head.pending, FT_PENDING_QSBR);
}

static void sync_done(void)
{
    /* seq_cst: the fork's wait loads the count after raising fork_pending;
     * the wake-up below is keyed on the count's address. */
    if (atomic_fetch_sub_explicit(&sync_active, 1, memory_order_seq_cst) == 1 &&
        ft_atomic_load_seq_cst(&fork_pending) != 0)
        fti_parking_lot_unpark_all(&sync_active);
}

void fti_qsbr_synchronize(void)
{
    fti_tstate *ts = fti_tstate_current();
    bool attached = ts != NULL && ts->blocking_depth == 0;

    /* release: see fti_qsbr_quiescent. */
    ft_atomic_fetch_add_release(&qsbr_sync_waiting, 1);
    fti_thread_request_all(FT_PENDING_QSBR);
    if (attached) {
        ts->blocking_depth++;
        fti_thread_leave(ts, 0);
    }
    for (;;) {
        /* seq_cst (both): the Dekker pair with fti_qsbr_fork_prepare. */
        atomic_fetch_add_explicit(&sync_active, 1, memory_order_seq_cst);
        if (ft_atomic_load_seq_cst(&fork_pending) == 0)
            break;
        sync_done();
        uint32_t pending = 1;
        /* detach false: we are detached already (or never attached). */
        fti_parking_lot_park(&fork_pending, &pending, sizeof pending, -1, NULL, false);
    }
    synchronize_rcu();
    sync_done();
    annotate_grace_period_end();
    /* relaxed: only stops the re-arming; no data hangs off it. */
    ft_atomic_fetch_sub_relaxed(&qsbr_sync_waiting, 1);
    if (attached) {
        fti_thread_enter(ts, 0);
        ts->blocking_depth--;
    }
}

void fti_qsbr_fork_prepare(bool online)
{
    if (online)
        fti_qsbr_offline();
    fork_went_offline = online;
    pthread_mutex_lock(&qsbr_lock);
    /* seq_cst (both): the Dekker pair with fti_qsbr_synchronize. */
    ft_atomic_store_seq_cst(&fork_pending, 1);
    for (;;) {
        uint32_t active = ft_atomic_load_seq_cst(&sync_active);

        if (active == 0)
            break;
        fti_parking_lot_park(&sync_active, &active, sizeof active, -1, NULL, false);
    }
}

static void fork_done(void)
{
    /* seq_cst: the Dekker pair above. */
    ft_atomic_store_seq_cst(&fork_pending, 0);
    pthread_mutex_unlock(&qsbr_lock);
    if (fork_went_offline)
        fti_qsbr_online();
}

void fti_qsbr_fork_parent(void)
{
    fork_done();
    fti_parking_lot_unpark_all(&fork_pending);
}

void fti_qsbr_fork_child(void)
{
    for (uint32_t i = 1; i <= FTI_MAX_THREADS; i++) {
        fti_tstate *s = &fti_tstates[i];

        if (s->in_use && s->zombie && s->qsbr_reader != NULL) {
            struct urcu_qsbr_reader *r = s->qsbr_reader;

            cds_list_del(&r->node);
            s->qsbr_reader = NULL;
        }
    }
    fork_done(); /* no other thread exists in the child: nothing to wake */
}
