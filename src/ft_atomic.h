/* ft_atomic.h - C11 atomics with the memory order in the name.
 *
 * Every call site must carry a comment naming what it pairs with (STYLE.md).
 * No defaulted orders: a plain atomic_load() would be seq_cst by accident. */
#ifndef FT_ATOMIC_H
#define FT_ATOMIC_H

#ifndef FT_BUILDING
#error "ft_atomic.h is private to the ftrt library"
#endif

#include <stdatomic.h>

#define ft_atomic_load_relaxed(p)  atomic_load_explicit((p), memory_order_relaxed)
#define ft_atomic_load_acquire(p)  atomic_load_explicit((p), memory_order_acquire)
#define ft_atomic_load_seq_cst(p)  atomic_load_explicit((p), memory_order_seq_cst)

#define ft_atomic_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define ft_atomic_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define ft_atomic_store_seq_cst(p, v) atomic_store_explicit((p), (v), memory_order_seq_cst)

#define ft_atomic_exchange_relaxed(p, v) atomic_exchange_explicit((p), (v), memory_order_relaxed)
#define ft_atomic_exchange_acquire(p, v) atomic_exchange_explicit((p), (v), memory_order_acquire)
#define ft_atomic_exchange_release(p, v) atomic_exchange_explicit((p), (v), memory_order_release)
#define ft_atomic_exchange_acq_rel(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define ft_atomic_exchange_seq_cst(p, v) atomic_exchange_explicit((p), (v), memory_order_seq_cst)

#define ft_atomic_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define ft_atomic_fetch_add_release(p, v) atomic_fetch_add_explicit((p), (v), memory_order_release)
#define ft_atomic_fetch_add_acq_rel(p, v) atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#define ft_atomic_fetch_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define ft_atomic_fetch_sub_release(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_release)
#define ft_atomic_fetch_sub_acq_rel(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_acq_rel)
#define ft_atomic_fetch_or_relaxed(p, v)  atomic_fetch_or_explicit((p), (v), memory_order_relaxed)
#define ft_atomic_fetch_or_release(p, v)  atomic_fetch_or_explicit((p), (v), memory_order_release)
#define ft_atomic_fetch_or_acq_rel(p, v)  atomic_fetch_or_explicit((p), (v), memory_order_acq_rel)
#define ft_atomic_fetch_and_relaxed(p, v) atomic_fetch_and_explicit((p), (v), memory_order_relaxed)
#define ft_atomic_fetch_and_release(p, v) atomic_fetch_and_explicit((p), (v), memory_order_release)
#define ft_atomic_fetch_and_acq_rel(p, v) atomic_fetch_and_explicit((p), (v), memory_order_acq_rel)

/* Compare-and-swap; on failure *expected receives the current value. The
 * failure order is the weakest legal one for the given success order. */
#define ft_atomic_cas_relaxed(p, expected, desired) \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), \
        memory_order_relaxed, memory_order_relaxed)
#define ft_atomic_cas_acquire(p, expected, desired) \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), \
        memory_order_acquire, memory_order_relaxed)
#define ft_atomic_cas_release(p, expected, desired) \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), \
        memory_order_release, memory_order_relaxed)
#define ft_atomic_cas_acq_rel(p, expected, desired) \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), \
        memory_order_acq_rel, memory_order_acquire)
#define ft_atomic_cas_weak_relaxed(p, expected, desired) \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), \
        memory_order_relaxed, memory_order_relaxed)
#define ft_atomic_cas_weak_acquire(p, expected, desired) \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), \
        memory_order_acquire, memory_order_relaxed)
#define ft_atomic_cas_weak_release(p, expected, desired) \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), \
        memory_order_release, memory_order_relaxed)
#define ft_atomic_cas_weak_acq_rel(p, expected, desired) \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), \
        memory_order_acq_rel, memory_order_acquire)

#define ft_atomic_fence_acquire() atomic_thread_fence(memory_order_acquire)
#define ft_atomic_fence_release() atomic_thread_fence(memory_order_release)
#define ft_atomic_fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)

#endif /* FT_ATOMIC_H */
