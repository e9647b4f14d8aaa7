/* ftrt/gc.h - the cycle collector: Python's `gc` module for C, plus the
 * debugging tools of objgraph (most common types, reference graphs in DOT).
 *
 * The collector stops the world, finds unreachable cycles among tracked
 * objects (types with FT_TYPE_GC), then with the world running clears weak
 * references to them, finalizes them at most once, keeps whatever a finalizer
 * resurrected and breaks the rest with their type's clear. Generation 0 is the
 * young generation (objects allocated since the last collection); generations
 * 1 and 2 are full collections. Every function here needs an attached thread. */
#ifndef FTRT_GC_H
#define FTRT_GC_H

#include "ftrt/common.h"

#include <stdio.h>

#define FT_GC_GENERATIONS 3

/* Runs a collection of the given generation (0 = young; 1, 2 or -1 = full).
 * Returns the number of unreachable objects found (collected + uncollectable),
 * 0 when called re-entrantly from a finalizer or weakref callback (no nested
 * collection is started), -EINVAL for a bad generation, or -ENOMEM when the
 * collector's scratch memory cannot be had (nothing changed). A collection
 * running on another thread is waited for (detached), then this one runs. */
FT_API intptr_t ft_gc_collect(int generation);

/* Automatic collection (allocation-count triggered) on/off. ft_gc_collect
 * works either way. */
FT_API void ft_gc_enable(void);
FT_API void ft_gc_disable(void);
FT_API bool ft_gc_is_enabled(void);

/* Thresholds (gc.set_threshold). t0: about t0 net new young objects
 * (tracked allocations of all threads, scaled by the survival ratio the last
 * collection measured, and at least a quarter of the old generation) trigger
 * a young collection at the allocating thread's next safepoint. t1: a full
 * collection replaces a young one after t1 young collections, if t2 == 0 or
 * the old generation grew by about 1/t2 since the last full collection.
 * t0 == 0 disables automatic collection, as in Python. Rules in docs/gc.md. */
FT_API void ft_gc_set_threshold(unsigned t0, unsigned t1, unsigned t2);
FT_API void ft_gc_get_threshold(unsigned out[3]);

/* Counts (gc.get_count): [0] tracked allocations since the last collection,
 * [1] young collections since the last full one, [2] full collections. */
FT_API void ft_gc_get_count(unsigned out[3]);

/* Per-generation statistics (gc.get_stats, plus pause times). Pauses are
 * the stop-the-world time of the collection (both pauses when finalizers ran). */
typedef struct ft_gc_stats {
    uint64_t collections;   /* collections of this generation */
    uint64_t collected;     /* unreachable objects freed */
    uint64_t uncollectable; /* unreachable objects kept because their type has no clear */
    uint64_t pause_last_ns;
    uint64_t pause_max_ns;
    uint64_t pause_total_ns;
} ft_gc_stats;

/* Copies the statistics of generation 0..2; -EINVAL for another number. */
FT_API int ft_gc_get_stats(int generation, ft_gc_stats *out);

/* gc.callbacks: called on the collecting thread, with the world running,
 * before ("start") and after ("stop") every collection. */
typedef enum ft_gc_phase { FT_GC_PHASE_START = 0, FT_GC_PHASE_STOP = 1 } ft_gc_phase;
typedef struct ft_gc_info {
    int generation;
    intptr_t collected;     /* STOP only */
    intptr_t uncollectable; /* STOP only */
} ft_gc_info;
typedef void (*ft_gc_callback)(ft_gc_phase phase, const ft_gc_info *info, void *arg);

/* Registers / removes a callback (at most 16). 0, -ENOSPC, or -ENOENT. */
FT_API int ft_gc_callback_add(ft_gc_callback cb, void *arg);
FT_API int ft_gc_callback_remove(ft_gc_callback cb, void *arg);

/* gc.get_objects: calls fn with a borrowed reference to every tracked
 * object (of generation 0..2, or -1 for all), with the world running; the
 * objects are kept alive during the visit. fn returns nonzero to stop.
 * Returns fn's nonzero result, 0, or -ENOMEM. */
FT_API int ft_gc_visit_objects(int generation, int (*fn)(void *obj, void *arg), void *arg);

/* gc.get_referrers: up to cap tracked objects that hold a reference to o,
 * written to out as new references. Returns how many exist (may exceed cap). */
FT_API size_t ft_gc_get_referrers(void *o, void **out, size_t cap);

/* gc.get_referents: up to cap objects o refers to (through its type's
 * traverse), as new references. Returns how many exist (may exceed cap). */
FT_API size_t ft_gc_get_referents(void *o, void **out, size_t cap);

/* gc.freeze / unfreeze / get_freeze_count: move every tracked object to a
 * permanent generation the collector ignores (and back). */
FT_API void ft_gc_freeze(void);
FT_API void ft_gc_unfreeze(void);
FT_API size_t ft_gc_get_freeze_count(void);

/* gc.is_tracked. */
FT_API bool ft_is_tracked(const void *o);

/* gc.garbage: unreachable objects whose type has no clear (kept alive by the
 * collector). Copies up to cap new references; returns how many there are.
 * ft_gc_clear_garbage releases the collector's references to them. */
FT_API size_t ft_gc_get_garbage(void **out, size_t cap);
FT_API void ft_gc_clear_garbage(void);

/* ---- Debugging tools ---- */

typedef struct ft_gc_type_count {
    const char *name; /* the type's name (static) */
    size_t count;     /* live objects of that type */
} ft_gc_type_count;

/* objgraph.most_common_types: live objects (tracked or not) by type, most
 * common first; fills up to cap entries and returns how many types exist. */
FT_API size_t ft_gc_most_common_types(ft_gc_type_count *out, size_t cap);

/* Prints the most common types, one "name count" line each (at most limit). */
FT_API void ft_gc_show_most_common_types(FILE *out, size_t limit);

/* objgraph.show_refs / show_backrefs in Graphviz DOT: the objects o reaches
 * through traverse up to max_depth edges (FT_GC_DOT_REFS), or the objects that
 * reach o up to max_depth edges back (FT_GC_DOT_BACKREFS). At most max_nodes
 * nodes are written. Returns the number of nodes written or a negative errno. */
#define FT_GC_DOT_REFS     0u
#define FT_GC_DOT_BACKREFS 1u
FT_API int ft_gc_write_dot(FILE *out, void *o, unsigned max_depth, size_t max_nodes, unsigned flags);

#endif /* FTRT_GC_H */
