/* delayed_free.c - QSBR-delayed frees and grace-period tickets, bounded per
 * thread.
 *
 * Two things wait for grace periods here:
 *   - raw container storage (a dict's replaced keys block, a list's old item
 *     array) handed to fti_qsbr_free_delayed, which a lock-free reader may
 *     still be reading;
 *   - mem's retired object pages (mem.h, type-stable pages): an object page
 *     that emptied keeps its size class until a grace period, so that a
 *     reader holding a stale object pointer reads an object header. Objects
 *     themselves are freed at once (dealloc.c); mem stamps and releases the
 *     pages with the tickets below, through hooks installed at init.
 *
 * What it guarantees: a block handed to the delayed path is freed only after
 * a grace period that began after it was handed over, so a lock-free reader
 * that loaded a pointer into it before it was retired can still read it. A
 * thread never holds more than its budget (cfg->qsbr_budget_bytes, and
 * budget/16 blocks; for pages, max(4, 8 x budget / page size) retired pages)
 * for longer than the rest of the current deallocation: crossing it forces
 * a grace period (fti_qsbr_synchronize) at the end of the outermost
 * deallocation, outside lock-free reads (CPython gh-132519: unbounded
 * delayed frees held gigabytes).
 *
 * Why it is correct: grace periods are numbered by tickets. A block is
 * stamped with the ticket counter read after it became unreachable; a grace
 * period takes a ticket t (fetch_add) before it starts waiting and, when it
 * ends, raises `done` to t + 1. A block with stamp s is safe once done > s:
 * some grace period with ticket >= s completed, and it took its ticket after
 * the stamp was read (seq_cst total order), hence started after the block
 * died. Any thread's completed grace period frees every thread's older
 * blocks, so threads under budget are drained by others' grace periods, at
 * their safepoints (FT_PENDING_BRC / FT_PENDING_QSBR) and at detach. */
#include "object/object_int.h"

#include "mem/mem.h"
#include "thread/thread.h"

#include <stdlib.h>

#define DELAYED_CHUNK 253

typedef struct fti_delayed_chunk {
    struct fti_delayed_chunk *next; /* younger chunk (owner only) */
    uint64_t stamp;                 /* ticket read at the last push (owner only) */
    size_t bytes;                   /* bytes of the blocks in it (owner only) */
    size_t count;                   /* blocks in it (owner only) */
    void *blocks[DELAYED_CHUNK];
} fti_delayed_chunk;

static _Atomic uint64_t gp_ticket;   /* next grace-period ticket (any thread, seq_cst: see above) */
static _Atomic uint64_t gp_done;     /* 1 + highest ticket whose grace period completed (atomic max) */
static _Atomic uint64_t stat_forced; /* grace periods forced by the budget (relaxed counter) */
static _Atomic uint64_t stat_delayed; /* delayed blocks of threads that detached (relaxed counter;
                                         live threads count in their own state, so that the hot
                                         path writes no shared cache line) */
static size_t budget_bytes = (size_t)1 << 20; /* written at init, read-only after */
static size_t budget_count = ((size_t)1 << 20) / 16;

void fti_delayed_set_budget(size_t bytes, size_t count)
{
    budget_bytes = bytes;
    budget_count = count != 0 ? count : 1;
}

static void grace_period(void)
{
    /* seq_cst fence + RMW: the ticket must follow, in the single total order,
     * the (seq_cst) stamp loads of every block already handed over (see the
     * file comment); an RMW always reads the latest value of gp_ticket. */
    ft_atomic_fence_seq_cst();
    uint64_t ticket = ft_atomic_fetch_add_acq_rel(&gp_ticket, 1);
    fti_qsbr_synchronize();
    /* relaxed: the CAS re-validates. */
    uint64_t done = ft_atomic_load_relaxed(&gp_done);
    /* release: pairs with the acquire in fti_delayed_poll; a block freed
     * because of this value is freed after this grace period (the thread
     * layer makes the grace period itself visible to TSan). */
    while (done < ticket + 1 && !ft_atomic_cas_weak_release(&gp_done, &done, ticket + 1)) {
    }
}

static void free_chunk_blocks(fti_object_tstate *ts, fti_delayed_chunk *c)
{
    for (size_t i = 0; i < c->count; i++)
        fti_mem_free(c->blocks[i]);
    ts->delayed_bytes -= c->bytes;
    ts->delayed_count -= c->count;
    c->bytes = 0;
    c->count = 0;
}

void fti_delayed_poll(fti_object_tstate *ts)
{
    fti_mem_release_retired();
    if (ts->delayed_head == NULL) {
        if (ts->budget_exceeded && !fti_mem_retired_over_limit())
            ts->budget_exceeded = false;
        return;
    }
    /* acquire: pairs with the release in grace_period. */
    uint64_t done = ft_atomic_load_acquire(&gp_done);
    while (ts->delayed_head != NULL && ts->delayed_head->stamp < done) {
        fti_delayed_chunk *c = ts->delayed_head;
        free_chunk_blocks(ts, c);
        ts->delayed_head = c->next;
        if (ts->delayed_head == NULL)
            ts->delayed_tail = NULL;
        /* Keep emptied chunks: a budget's worth is needed again right away,
         * and returning them to libc made its arenas grow and shrink (trim)
         * at every grace period. Freed at detach. */
        c->next = ts->spare;
        ts->spare = c;
    }
    if (ts->delayed_bytes <= budget_bytes && ts->delayed_count <= budget_count && !fti_mem_retired_over_limit())
        ts->budget_exceeded = false;
}

static void push(fti_object_tstate *ts, void *block, size_t bytes)
{
    fti_delayed_chunk *c = ts->delayed_tail;
    if (c == NULL || c->count == DELAYED_CHUNK) {
        fti_delayed_poll(ts); /* a cheap moment to free what has become safe */
        c = ts->delayed_tail;
    }
    if (c == NULL || c->count == DELAYED_CHUNK) {
        fti_delayed_chunk *fresh = ts->spare;
        if (fresh != NULL)
            ts->spare = fresh->next;
        else
            fresh = malloc(sizeof *fresh);
        FT_CHECK(fresh != NULL, "ft_decref: out of memory for the delayed-free list");
        fresh->next = NULL;
        fresh->bytes = 0;
        fresh->count = 0;
        if (c != NULL)
            c->next = fresh;
        else
            ts->delayed_head = fresh;
        ts->delayed_tail = c = fresh;
    }
    c->blocks[c->count++] = block;
    c->bytes += bytes;
    /* seq_cst: read after the block became unreachable, ordered before the
     * fetch_add of any grace period that counts for it (file comment). */
    c->stamp = ft_atomic_load_seq_cst(&gp_ticket);
    ts->delayed_bytes += bytes;
    ts->delayed_count += 1;
    ts->delayed_total += 1;
    if (ts->delayed_bytes > budget_bytes || ts->delayed_count > budget_count)
        ts->budget_exceeded = true;
}

void fti_delayed_enforce_budget(fti_object_tstate *ts)
{
    if (!ts->budget_exceeded)
        return;
    fti_delayed_poll(ts); /* another thread's grace period may have been enough */
    if (!ts->budget_exceeded || fti_world_is_stopped())
        return; /* never wait for a grace period while the world is stopped */
    if (ft_tls_head.lockfree_reads != 0)
        return; /* inside a lock-free read: later (object.h, fti_lockfree_read_begin) */
    grace_period();
    /* relaxed: a statistic. */
    ft_atomic_fetch_add_relaxed(&stat_forced, 1);
    fti_delayed_poll(ts);
}

void fti_qsbr_barrier(void)
{
    FT_CHECK(ft_tls_head.lockfree_reads == 0, "fti_qsbr_barrier: inside a lock-free read");
    grace_period();
    fti_delayed_poll(fti_object_tstate_get());
}

void fti_delayed_release_spares(fti_object_tstate *ts)
{
    while (ts->spare != NULL) {
        fti_delayed_chunk *next = ts->spare->next;
        free(ts->spare);
        ts->spare = next;
    }
}

void fti_delayed_retire_stats(fti_object_tstate *ts)
{
    /* relaxed: a statistic. */
    ft_atomic_fetch_add_relaxed(&stat_delayed, ts->delayed_total);
    ts->delayed_total = 0;
}

void fti_delayed_flush(fti_object_tstate *ts)
{
    if (ts->delayed_head == NULL && !fti_mem_has_retired())
        return;
    fti_delayed_poll(ts);
    if ((ts->delayed_count != 0 || fti_mem_has_retired()) && !fti_world_is_stopped()) {
        grace_period();
        fti_delayed_poll(ts);
    }
}

void fti_qsbr_free_delayed(void *raw, size_t bytes)
{
    if (raw == NULL)
        return;
    fti_object_tstate *ts = fti_object_tstate_get();
    push(ts, raw, bytes);
    /* Inside a deallocation the outermost one enforces the budget (never in
     * the middle of a type's dealloc). */
    if (ts->budget_exceeded && !fti_dealloc_in_progress())
        fti_delayed_enforce_budget(ts);
}

/* ---- grace periods for mem's type-stable object pages (mem.h) ---- */

static uint64_t mem_stamp(void)
{
    /* seq_cst: as the stamp of a pushed block (file comment): read after the
     * page's last block was freed, ordered before the fetch_add of any grace
     * period that counts for it. */
    return ft_atomic_load_seq_cst(&gp_ticket);
}

static uint64_t mem_done(void)
{
    /* acquire: pairs with the release in grace_period, as in fti_delayed_poll. */
    return ft_atomic_load_acquire(&gp_done);
}

static void mem_pressure(void)
{
    /* Enforced where the delayed-free budget is: at the end of the outermost
     * deallocation, outside lock-free reads (fti_delayed_enforce_budget). */
    fti_object_tstate *ts = ft_tls_head.object_state;
    if (ts != NULL)
        ts->budget_exceeded = true;
}

void fti_delayed_install_mem_hooks(bool install)
{
    if (!install) {
        fti_mem_set_qsbr_hooks(NULL);
        return;
    }
    fti_mem_qsbr_hooks hooks = {
        .stamp = mem_stamp,
        .done = mem_done,
        .pressure = mem_pressure,
        /* 8x the block budget (2 MiB by default): at 1x, the grace periods
         * that 2-thread binary-trees forced to release pages cost it 5 %
         * (docs/bench-gc.md). */
        .retire_limit_bytes = budget_bytes * 8,
    };
    fti_mem_set_qsbr_hooks(&hooks);
}

void fti_delayed_get_stats(fti_delayed_stats *out)
{
    /* relaxed: statistics. */
    out->forced_grace_periods = ft_atomic_load_relaxed(&stat_forced);
    out->delayed_frees = ft_atomic_load_relaxed(&stat_delayed);
    fti_object_tstate *ts = ft_tls_head.object_state;
    if (ts != NULL)
        out->delayed_frees += ts->delayed_total;
    out->held_bytes = ts != NULL ? ts->delayed_bytes : 0;
    out->held_count = ts != NULL ? ts->delayed_count : 0;
}
