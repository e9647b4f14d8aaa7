/* thread.h - the thread layer's interface to the layers above (private).
 *
 * Higher layers (objects, collector) register hooks here at init, so that a
 * safepoint can service their work without this layer including theirs. */
#ifndef FT_THREAD_INT_H
#define FT_THREAD_INT_H

#ifndef FT_BUILDING
#error "thread.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

/* Thread states (ft_thread_head is the TLS part; the full state is private to
 * this layer). */
typedef enum fti_thread_state {
    FTI_THREAD_ATTACHED = 0,  /* running, touches objects, polls safepoints */
    FTI_THREAD_DETACHED = 1,  /* in a blocking region (or parked on a lock) */
    FTI_THREAD_SUSPENDED = 2, /* stopped: parked for a stop-the-world, or a
                                 detached thread claimed by a stopper/merger */
} fti_thread_state;

/* Hooks of a higher layer. Any may be NULL. They run on the thread concerned. */
typedef struct fti_thread_hooks {
    /* After the thread got its index and heap, before it runs user code. */
    void (*on_attach)(ft_thread_head *self);
    /* Before the index is released: drain queues, merge owned objects. */
    void (*on_detach)(ft_thread_head *self);
    /* At a safepoint with these bits pending (already cleared from pending).
     * Called for the bits in the hooks' mask only. */
    void (*on_safepoint)(ft_thread_head *self, uint32_t bits);
    uint32_t safepoint_mask;
} fti_thread_hooks;

/* Registers hooks (at init, before any thread attaches). Up to 8 sets. */
FT_INTERNAL void fti_thread_add_hooks(const fti_thread_hooks *hooks);

/* A safepoint for a stop-the-world request only, for code that runs long
 * between full safepoints but may sit inside a lock-free read section (the
 * deallocation loop): the thread parks for a pending stop while staying
 * online for QSBR (a grace period cannot end meanwhile), and leaves every
 * other pending bit (QSBR, GIL drop, merges) for its next full safepoint.
 * The caller guarantees that the collector may run: nothing it could treat
 * as garbage is half-freed (see src/object/dealloc.c). */
FT_INTERNAL void fti_safepoint_stop_only(void);

/* True if the index belonged to a thread that vanished in a fork (its TLS
 * is gone; it counts as detached forever). Stable: set in the fork child
 * before any other thread exists, and such indexes are never reused; a
 * caller that knows the index's owner attached (e.g. under a lock the owner
 * took after attaching) reads it race-free. */
FT_INTERNAL bool fti_thread_index_is_zombie(uint32_t index);

/* Sets pending bits on the thread with that index, if attached (release: what
 * the requester wrote before is visible to the safepoint that sees the bit).
 * Returns false when no thread holds the index. */
FT_INTERNAL bool fti_thread_request(uint32_t index, uint32_t bits);
/* Sets pending bits on every attached thread. */
FT_INTERNAL void fti_thread_request_all(uint32_t bits);

/* Visits every attached thread's head. The world must be stopped, or the
 * caller holds the registry (fti_thread_registry_lock). */
FT_INTERNAL void fti_thread_foreach(void (*fn)(ft_thread_head *head, void *arg), void *arg);
FT_INTERNAL void fti_thread_registry_lock(void);
FT_INTERNAL void fti_thread_registry_unlock(void);

/* Highest index handed out so far (indexes are 1..max). */
FT_INTERNAL uint32_t fti_thread_max_index(void);

/* For a merger acting on behalf of a thread in a blocking region: if the
 * thread with that index is DETACHED, moves it to SUSPENDED (so it cannot
 * leave its blocking region) and returns true; fti_thread_resume_suspended
 * gives it back. False if the thread is attached (it will merge itself) or
 * the index is free. */
FT_INTERNAL bool fti_thread_try_suspend_detached(uint32_t index);
FT_INTERNAL void fti_thread_resume_suspended(uint32_t index);

/* Stop-the-world for the collector; like the public pair, plus the check. */
FT_INTERNAL bool fti_world_is_stopped(void);
#define FT_ASSERT_WORLD_STOPPED() FT_ASSERT(fti_world_is_stopped())
#define FT_ASSERT_ATTACHED() FT_CHECK(ft_tls_head.owner_tag != UINT32_MAX, \
                                      "%s: calling thread is not attached (ft_thread_attach first)", __func__)

/* QSBR (liburcu-qsbr; all urcu calls and their TSan annotations live in
 * src/thread/qsbr.c). A safepoint is a quiescent state, a blocking region is
 * offline. fti_qsbr_synchronize waits for a grace period, asking every
 * attached thread to pass a quiescent state; the caller is offline meanwhile. */
FT_INTERNAL void fti_qsbr_synchronize(void);
FT_INTERNAL void fti_qsbr_quiescent(void);

/* Layer init/fini (runtime). */
FT_INTERNAL int fti_thread_init(const ft_config *cfg);
FT_INTERNAL void fti_thread_fini(void);

#endif /* FT_THREAD_INT_H */
