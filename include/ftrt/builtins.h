/* ftrt/builtins.h - built-in object types: None/True/False, int, str, tuple,
 * list, dict, and a weak-value map.
 *
 * Getters that hand out an object return a new reference. Lists and dicts are
 * safe for concurrent use: writers lock the object (critical section), readers
 * of get/len do not lock. Errors: functions returning int give 0 or a negative
 * errno value; functions returning an object give NULL on failure. */
#ifndef FTRT_BUILTINS_H
#define FTRT_BUILTINS_H

#include "ftrt/common.h"
#include "ftrt/object.h"

#include <sys/types.h>

/* ---- Types (static, immortal) ---- */
FT_API extern const ft_type ft_none_type;
FT_API extern const ft_type ft_bool_type;
FT_API extern const ft_type ft_int_type;
FT_API extern const ft_type ft_str_type;
FT_API extern const ft_type ft_tuple_type;
FT_API extern const ft_type ft_list_type;
FT_API extern const ft_type ft_dict_type;
FT_API extern const ft_type ft_weakvaluemap_type;

/* ---- Singletons (immortal; no reference needs to be taken or released) ---- */
FT_API void *ft_none(void);
FT_API void *ft_true(void);
FT_API void *ft_false(void);
FT_API void *ft_bool(bool v);

/* ---- int: boxed int64; -5..256 are cached immortal objects ---- */
FT_API void *ft_int_from_i64(int64_t v);
/* The value; aborts (one-line error naming the type) if o is not an int. */
FT_API int64_t ft_int_as_i64(const void *o);

/* ---- str: immutable bytes with a cached hash ---- */
FT_API void *ft_str_from(const char *bytes, size_t len);
FT_API void *ft_str_from_cstr(const char *cstr);
/* The interned (immortal, unique per content) string; identity holds across
 * threads: ft_str_intern of equal contents returns the same pointer. */
FT_API void *ft_str_intern(const char *bytes, size_t len);
FT_API const char *ft_str_data(const void *s); /* NUL-terminated */
FT_API size_t ft_str_len(const void *s);
FT_API uint64_t ft_str_hash(const void *s);
FT_API bool ft_str_equal(const void *a, const void *b);

/* ---- tuple: fixed size; ft_tuple_new(0) is the immortal empty tuple ---- */
FT_API void *ft_tuple_new(size_t n);
/* Steals the reference to item; for filling a tuple before sharing it.
 * Returns -ERANGE for an out-of-range index (the reference is still
 * consumed, as PyTuple_SetItem does). */
FT_API int ft_tuple_set(void *tuple, size_t index, void *item);
/* New reference, or NULL with errno = ERANGE when out of range (also NULL
 * for a slot never set). */
FT_API void *ft_tuple_get(const void *tuple, size_t index);
FT_API size_t ft_tuple_len(const void *tuple);

/* ---- list ---- */
FT_API void *ft_list_new(void);
/* Does not steal: the list takes its own reference. */
FT_API int ft_list_append(void *list, void *item);
/* New reference; negative indexes count from the end. Out of range: NULL
 * with errno = ERANGE. Lock-free (see docs/builtins.md). */
FT_API void *ft_list_get(void *list, ssize_t index);
/* Does not steal. 0, or -ERANGE when out of range. */
FT_API int ft_list_set(void *list, ssize_t index, void *item);
FT_API void *ft_list_pop(void *list); /* last item (new reference) or NULL when empty */
FT_API size_t ft_list_len(void *list);

/* ---- dict: str and int keys, insertion order kept ---- */
FT_API void *ft_dict_new(void);
/* Keys of other types: -EINVAL and a one-line error on stderr naming the call
 * and the type. Does not steal. 0, -EINVAL or -ENOMEM. */
FT_API int ft_dict_set(void *dict, void *key, void *value);
/* New reference to the value, or NULL when absent (or for a key of another
 * type, with the one-line error). Lock-free (see docs/builtins.md). */
FT_API void *ft_dict_get(void *dict, const void *key);
/* Lookup for code holding results in local roots (ftrt/object.h): stores the
 * value (or NULL) in *slot, which must belong to the calling thread's pushed
 * roots frame, and returns true when found. A deferred or immortal value is
 * stored without counting (the collector sees the slot), so readers of
 * deferred values on many threads write no shared count; other values are
 * stored as new references. Release with ft_root_slot_clear before the frame
 * is popped, and do not ft_decref such a slot's value directly (a value made
 * deferred while held counted in a slot keeps that one count). */
FT_API bool ft_dict_get_rooted(void *dict, const void *key, void **slot);
/* Releases what ft_dict_get_rooted stored in *slot and sets it to NULL. */
FT_API void ft_root_slot_clear(void **slot);
/* 0, -ENOENT when absent, or -EINVAL for a key of another type. */
FT_API int ft_dict_del(void *dict, const void *key);
FT_API size_t ft_dict_len(void *dict);
/* Iteration in insertion order: start with *pos = 0; returns true and new
 * references in *key and *value (either may be NULL: not wanted) while items
 * remain. Concurrent changes never yield invalid items, but after a resize
 * items may be skipped or repeated. */
FT_API bool ft_dict_next(void *dict, size_t *pos, void **key, void **value);

/* ---- weak-value map: entries disappear when their values die ---- */
FT_API void *ft_weakvaluemap_new(void);
/* Maps key (str or int) to a weak reference to value. 0, -EINVAL (key type,
 * one-line error) or -ENOMEM. */
FT_API int ft_weakvaluemap_set(void *map, void *key, void *value);
FT_API void *ft_weakvaluemap_get(void *map, const void *key); /* new reference or NULL */
/* Entries, including any whose value is dying right now (its weakref callback
 * removes it). */
FT_API size_t ft_weakvaluemap_len(void *map);

#endif /* FTRT_BUILTINS_H */
