/* builtins_int.h - the builtins' interface to the runtime (private), and what
 * the builtins' own files share: object layouts, key hashing, static heads. */
#ifndef FT_BUILTINS_INT_H
#define FT_BUILTINS_INT_H

#ifndef FT_BUILDING
#error "builtins_int.h is private to the ftrt library"
#endif

#include "ft_atomic.h"
#include "ft_internal.h"
#include "ftrt/builtins.h"
#include "ftrt/runtime.h"

/* Layer init/fini (runtime): singletons, small ints, intern table. */
FT_INTERNAL int fti_builtins_init(const ft_config *cfg);
FT_INTERNAL void fti_builtins_fini(void);

/* Header of a static immortal object (never counted, never freed, never
 * tracked by the collector). */
#define FTI_STATIC_HEAD(type_ptr) \
    { \
        .ob_owner = 0, .ob_mutex = 0, .ob_gc_bits = 0, .ob_flags = FT_OB_STATIC, \
        .ob_ref_local = FT_REF_IMMORTAL, .ob_ref_shared = 0, .ob_type = (type_ptr) \
    }

/* int: immutable after ft_int_from_i64 returns. */
typedef struct fti_int {
    ft_object ob;
    int64_t value;
} fti_int;

/* str: immutable after creation. data points at the inline bytes that follow
 * the struct (a lookup probe on the stack points it elsewhere, which lets the
 * intern table compare a probe and a stored string with one function). */
typedef struct fti_str {
    ft_object ob;
    uint64_t hash;    /* fti_bytes_hash(data, len), computed at creation */
    size_t len;       /* bytes, without the terminating NUL */
    const char *data; /* NUL-terminated */
} fti_str;

/* tuple: items are written by ft_tuple_set before the tuple is shared and
 * read-only afterwards (the collector's clear runs only on unreachable
 * tuples). */
typedef struct fti_tuple {
    ft_object ob;
    size_t size;
    ft_object *items[];
} fti_tuple;

/* Before an object is published in a slot that readers load without a lock
 * (list slots, dict keys and values): marks it shared-read, so that
 * ft_try_incref from any thread succeeds on it while it lives (its death
 * decides with a CAS). The caller holds a reference.
 * Immortal objects never die and static ones must not be written: skipped. */
static inline void fti_mark_shared_read(void *o)
{
    /* relaxed: FT_REF_IMMORTAL is set before publication and never undone. */
    if (ft_atomic_load_relaxed(&((ft_object *)o)->ob_ref_local) != FT_REF_IMMORTAL)
        ft_set_shared_read(o);
}

/* Hash of bytes (64-bit multiply-xorshift, then the splitmix64 finalizer). */
FT_INTERNAL uint64_t fti_bytes_hash(const char *bytes, size_t len);

/* Dict keys: str or int. True if k is of a key type. */
static inline bool fti_is_key_type(const void *k)
{
    const ft_type *t = ft_type_of(k);
    return t == &ft_str_type || t == &ft_int_type;
}

/* splitmix64 finalizer: a bijection on 64 bits, so two ints with equal hashes
 * are equal ints. */
static inline uint64_t fti_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* Hash of a key of a key type (str: cached; int: fti_mix64 of the value). */
static inline uint64_t fti_key_hash(const void *k)
{
    if (ft_type_of(k) == &ft_str_type)
        return ((const fti_str *)k)->hash;
    return fti_mix64((uint64_t)((const fti_int *)k)->value);
}

/* Equality of two keys of key types; false across types. Both must be alive
 * (the caller holds references or the world is stopped). */
FT_INTERNAL bool fti_key_equal(const void *a, const void *b);

/* The string layer's part of init/fini (intern table). */
FT_INTERNAL void fti_str_init(void);
FT_INTERNAL void fti_str_fini(void);
FT_INTERNAL void fti_int_init(void);

/* Dict operations the weak-value map builds on; each is atomic under the
 * dict's own critical section. key must be of a key type.
 *   fti_dict_swap: as ft_dict_set, but the replaced value's reference (or
 *     NULL) goes to *old_value instead of being released.
 *   fti_dict_pop: removes key; returns the value's reference, or NULL.
 *   fti_dict_pop_value: removes the first entry whose value is `value`
 *     (identity); returns that reference, or NULL.
 *   fti_dict_get_map: returns fn(value) for key's value (NULL when absent);
 *     fn runs inside the section and must not block or lock objects. */
FT_INTERNAL int fti_dict_swap(void *dict, void *key, void *value, void **old_value);
FT_INTERNAL void *fti_dict_pop(void *dict, const void *key);
FT_INTERNAL void *fti_dict_pop_value(void *dict, const void *value);
FT_INTERNAL void *fti_dict_get_map(void *dict, const void *key, void *(*fn)(void *value));

/* ThreadSanitizer annotations for publication through ConcurrencyKit's
 * uninstrumented code (the intern table): what the publisher wrote before
 * fti_tsan_publish(p) happens-before what a reader reads after
 * fti_tsan_consume(p). Empty outside TSan builds. */
#if FT_CFG_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define fti_tsan_publish(p) __tsan_release((void *)(p))
#define fti_tsan_consume(p) __tsan_acquire((void *)(p))
#else
#define fti_tsan_publish(p) ((void)(p))
#define fti_tsan_consume(p) ((void)(p))
#endif

#endif /* FT_BUILTINS_INT_H */
