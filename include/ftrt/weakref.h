/* ftrt/weakref.h - weak references.
 *
 * A weakref is itself an object. ft_weakref_get returns a new strong
 * reference or NULL once the target died; it is safe against the target's
 * last decref racing on another thread. Callbacks run once, outside any
 * stop-the-world, when the target dies (not when the weakref died first). */
#ifndef FTRT_WEAKREF_H
#define FTRT_WEAKREF_H

#include "ftrt/common.h"

typedef void (*ft_weakref_callback)(void *weakref, void *arg);

/* New weak reference to target (whose type must not be immortal-static-only
 * rules aside: any heap object). cb may be NULL. NULL on out-of-memory. */
FT_API void *ft_weakref_new(void *target, ft_weakref_callback cb, void *arg);

/* New strong reference to the target, or NULL once it is dead. */
FT_API void *ft_weakref_get(void *weakref);

/* True while the target is alive (a hint: it may die right after). */
FT_API bool ft_weakref_is_alive(void *weakref);

/* Number of weak references currently pointing at o. */
FT_API size_t ft_weakref_count(const void *o);

#endif /* FTRT_WEAKREF_H */
