/* ftrt/thread.h - attaching threads, safepoints, blocking regions,
 * stop-the-world, and pause statistics.
 *
 * A thread that touches objects must be attached. An attached thread polls
 * ft_safepoint() in its loops and brackets blocking calls with
 * ft_blocking_begin()/ft_blocking_end(); inside such a region it is detached:
 * it counts as stopped for stop-the-world, releases the GIL in GIL mode and is
 * offline for QSBR, and it must not touch objects. */
#ifndef FTRT_THREAD_H
#define FTRT_THREAD_H

#include "ftrt/common.h"

#include <pthread.h>
#include <stdatomic.h>

struct ft_roots_frame;
struct ft_critical_section;

/* Bits of ft_thread_head.pending: work the thread does at its next safepoint. */
#define FT_PENDING_UNATTACHED (1u << 0) /* set while the thread is not attached: a safepoint reports misuse */
#define FT_PENDING_STOP       (1u << 1) /* a stop-the-world is requested: park */
#define FT_PENDING_GIL_DROP   (1u << 2) /* GIL mode: another thread waited a switch interval */
#define FT_PENDING_BRC        (1u << 3) /* objects were queued to this owner: merge them */
#define FT_PENDING_QSBR       (1u << 4) /* a grace period waits for this thread's quiescent state */
#define FT_PENDING_GC         (1u << 5) /* an allocation count crossed a collector threshold */

/* The part of a thread's state the inline fast paths read. It lives in TLS
 * itself (not behind a pointer), so a safepoint is one %fs-relative load.
 * Other threads reach it through the registry while the thread is attached. */
typedef struct ft_thread_head {
    _Atomic uint32_t pending;   /* FT_PENDING_* (any thread sets with atomic or; owner tests relaxed) */
    uint32_t owner_tag;         /* index while attached (1..), UINT32_MAX when not (owner only) */
    struct ft_roots_frame *roots;             /* top local-roots frame (owner; collector when stopped) */
    struct ft_critical_section *critical_section; /* innermost active critical section (owner) */
    void *heap;                 /* mem layer: this thread's heap, or NULL until first use (owner) */
    void *tstate;               /* thread layer: full state while attached (owner) */
    void *object_state;         /* object layer: BRC queue, delayed frees (owner) */
    uint64_t gc_alloc_count;    /* tracked objects allocated since last collection (owner) */
    uint32_t lockfree_reads;    /* object layer: depth of lock-free read sections (owner) */
} ft_thread_head;

/* The calling thread's head. Initial value: not attached. */
FT_API extern _Thread_local ft_thread_head ft_tls_head;

/* Attaches the calling thread: gives it a small index (reused after detach),
 * a heap, QSBR registration, and in GIL mode the GIL. Returns 0, -EALREADY if
 * already attached, -EINVAL before ft_init, -EAGAIN when the registry is full. */
FT_API int ft_thread_attach(void);

/* Detaches the calling thread: drains its merge queue, merges the counts of
 * the objects it owns, abandons its heap pages. A detached-twice call aborts. */
FT_API void ft_thread_detach(void);

/* True when the calling thread is attached. */
FT_API bool ft_thread_is_attached(void);

/* The calling thread's small index (1..), or 0 when not attached. */
FT_API uint32_t ft_thread_index(void);

/* Out-of-line part of ft_safepoint: services whatever is pending. */
FT_API FT_NOINLINE void ft_safepoint_slow(void);

/* One relaxed load and a predictable branch when nothing is pending.
 * Instruction count with nothing pending: 3 (callgrind, release build, x86-64:
 * mov %fs:..., test, jcc; bench/thread/run.sh, docs/bench-thread.md). */
static inline void ft_safepoint(void)
{
    /* relaxed: a request is noticed at some safepoint, not this one; the
     * slow path re-reads with acquire (pairs with the release in requesters). */
    if (FT_UNLIKELY(atomic_load_explicit(&ft_tls_head.pending, memory_order_relaxed) != 0))
        ft_safepoint_slow();
}

/* Enters a blocking region: the thread becomes DETACHED (see above). */
FT_API void ft_blocking_begin(void);
/* Leaves it; waits while the world is stopped, re-takes the GIL in GIL mode. */
FT_API void ft_blocking_end(void);

/* Runs one statement inside a blocking region. */
#define FT_BLOCKING(stmt) \
    do { \
        ft_blocking_begin(); \
        stmt; \
        ft_blocking_end(); \
    } while (0)

/* Starts a pthread that is attached for its whole life: fn runs attached and
 * the thread detaches when fn returns. Returns 0 or a positive pthread error. */
FT_API int ft_thread_start(pthread_t *thread, void *(*fn)(void *arg), void *arg);

/* Joins a thread inside a blocking region (so the joiner never delays a
 * stop-the-world). Returns pthread_join's result. */
FT_API int ft_thread_join(pthread_t thread, void **result);

/* Stops every other attached thread at a safepoint (detached threads count as
 * stopped and cannot re-attach until the world restarts). One requester at a
 * time; others queue. The caller must be attached. */
FT_API void ft_stop_the_world(void);
FT_API void ft_start_the_world(void);

/* Log2 histogram of pause durations: bucket i counts pauses in [2^i, 2^(i+1)) ns. */
#define FT_PAUSE_BUCKETS 40
typedef struct ft_pause_stats {
    uint64_t count;
    uint64_t total_ns;
    uint64_t max_ns;
    uint64_t hist[FT_PAUSE_BUCKETS];
} ft_pause_stats;

/* Copies the time-to-safepoint (request until all stopped) and stop-duration
 * (request until restart) statistics; either pointer may be NULL. */
FT_API void ft_thread_get_pause_stats(ft_pause_stats *time_to_safepoint, ft_pause_stats *stop_duration);
FT_API void ft_thread_reset_pause_stats(void);

/* Approximate percentile (0..100) of a pause histogram, in nanoseconds. */
FT_API uint64_t ft_pause_stats_percentile(const ft_pause_stats *stats, double percentile);

#endif /* FTRT_THREAD_H */
