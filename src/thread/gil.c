/* gil.c - the global interpreter lock of FT_MODE_GIL (CPython's
 * Python/ceval_gil.c, with FORCE_SWITCHING).
 *
 * Invariant: in GIL mode a thread is ATTACHED only while it holds the GIL
 * (fti_thread_enter takes the GIL before the state CAS and never waits for
 * the state while holding it; fti_thread_leave leaves the state before the
 * GIL). So attached threads run one at a time, and stop-the-world only ever
 * has the GIL holder attached.
 * Fairness: a thread that waited a whole switch interval without the GIL
 * changing hands sets FT_PENDING_GIL_DROP on the holder; the holder drops it
 * at its next safepoint and, being a forced switch, waits until another
 * thread has taken it before trying again, so it cannot re-take it at once.
 * Blocking regions and lock parks release it (plain, unforced). Everything is
 * under one pthread mutex with two condition variables, which
 * ThreadSanitizer understands. */
#include "thread_int.h"

#include "ft_atomic.h"

#include <errno.h>
#include <time.h>

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t released;  /* signalled when the GIL is dropped */
    pthread_cond_t switched;  /* broadcast when it changes hands */
    bool locked;              /* (mutex) */
    fti_tstate *holder;       /* (mutex); its head is valid while it holds the GIL */
    uint64_t switch_number;   /* times the GIL was taken (mutex) */
    unsigned waiters;         /* threads waiting in fti_gil_acquire (mutex) */
} gil = { .mutex = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t gil_once = PTHREAD_ONCE_INIT;

static void init_conds(void)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&gil.released, &attr);
    pthread_cond_init(&gil.switched, &attr);
    pthread_condattr_destroy(&attr);
}

void fti_gil_init(void)
{
    pthread_once(&gil_once, init_conds);
    pthread_mutex_lock(&gil.mutex);
    gil.locked = false;
    gil.holder = NULL;
    gil.waiters = 0;
    pthread_mutex_unlock(&gil.mutex);
}

void fti_gil_acquire(fti_tstate *ts)
{
    uint64_t interval_ns = (uint64_t)fti_thread_cfg.gil_switch_interval_us * 1000u;

    pthread_mutex_lock(&gil.mutex);
    if (gil.locked) {
        gil.waiters++;
        while (gil.locked) {
            uint64_t before = gil.switch_number;
            uint64_t deadline = fti_now_ns() + interval_ns;
            struct timespec ts_deadline = { .tv_sec = (time_t)(deadline / 1000000000u),
                                            .tv_nsec = (long)(deadline % 1000000000u) };
            int rc = pthread_cond_timedwait(&gil.released, &gil.mutex, &ts_deadline);

            if (rc == ETIMEDOUT && gil.locked && gil.switch_number == before && gil.holder != NULL)
                /* release: pairs with the acquire exchange in
                 * ft_safepoint_slow. The holder's head is valid: it cannot
                 * detach without taking gil.mutex to drop the GIL. */
                ft_atomic_fetch_or_release(&gil.holder->head->pending, FT_PENDING_GIL_DROP);
        }
        gil.waiters--;
    }
    gil.locked = true;
    gil.holder = ts;
    gil.switch_number++;
    pthread_cond_broadcast(&gil.switched);
    pthread_mutex_unlock(&gil.mutex);
    ts->holds_gil = true;
    /* relaxed: a drop request left over from our previous turn is stale;
     * only this thread acts on the bit. */
    ft_atomic_fetch_and_relaxed(&ft_tls_head.pending, ~FT_PENDING_GIL_DROP);
}

void fti_gil_release(fti_tstate *ts, bool forced)
{
    pthread_mutex_lock(&gil.mutex);
    FT_CHECK(gil.locked && gil.holder == ts, "fti_gil_release: thread %u does not hold the GIL (GIL)", ts->index);
    gil.locked = false;
    gil.holder = NULL;
    pthread_cond_signal(&gil.released);
    if (forced) {
        uint64_t before = gil.switch_number;

        while (gil.waiters > 0 && gil.switch_number == before)
            pthread_cond_wait(&gil.switched, &gil.mutex);
    }
    pthread_mutex_unlock(&gil.mutex);
    ts->holds_gil = false;
}

void fti_gil_fork_prepare(void)
{
    pthread_mutex_lock(&gil.mutex);
}

void fti_gil_fork_parent(void)
{
    pthread_mutex_unlock(&gil.mutex);
}

void fti_gil_fork_child(fti_tstate *self)
{
    /* The waiters are gone; only the forking thread may hold the GIL. */
    init_conds();
    gil.waiters = 0;
    if (gil.holder != self) {
        gil.locked = false;
        gil.holder = NULL;
    }
    pthread_mutex_unlock(&gil.mutex);
}
