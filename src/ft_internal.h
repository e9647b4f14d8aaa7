/* ft_internal.h - what every library source includes first: build
 * configuration, visibility, checks and fatal errors. */
#ifndef FT_INTERNAL_H
#define FT_INTERNAL_H

#ifndef FT_BUILDING
#error "ft_internal.h is private to the ftrt library (define FT_BUILDING only when building it)"
#endif

#include "ft_config.h"
#include "ftrt/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Cross-file internal functions: hidden from the shared library's ABI
 * (Lua's LUAI_FUNC). */
#define FT_INTERNAL __attribute__((visibility("hidden")))

/* Prints "ftrt: fatal: <message>" and aborts. Never returns. */
FT_INTERNAL _Noreturn void fti_fatal_at(const char *file, int line, const char *func,
                                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5), cold));

/* Prints "ftrt: warning: <message>" to stderr; the process continues. */
FT_INTERNAL void fti_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2), cold));

#define ft_fatal(...) fti_fatal_at(__FILE__, __LINE__, __func__, __VA_ARGS__)

/* Always on, in every build: misuse that would corrupt memory. The message
 * names the object's type and the call, e.g.
 *   FT_CHECK(rc > 0, "ft_decref: refcount of %s object %p below zero", name, o) */
#define FT_CHECK(cond, ...) \
    do { \
        if (FT_UNLIKELY(!(cond))) \
            ft_fatal(__VA_ARGS__); \
    } while (0)

/* Internal consistency, on from debug_level >= 1. `if (FT_CFG_...)` rather
 * than #if so that both branches always compile (STYLE.md). */
#define FT_ASSERT(cond) \
    do { \
        if (FT_CFG_DEBUG_LEVEL >= 1 && FT_UNLIKELY(!(cond))) \
            ft_fatal("assertion failed: %s", #cond); \
    } while (0)

#define FT_ASSERT_EXPENSIVE(cond) \
    do { \
        if (FT_CFG_DEBUG_LEVEL >= 2 && FT_UNLIKELY(!(cond))) \
            ft_fatal("expensive assertion failed: %s", #cond); \
    } while (0)

#define FT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif /* FT_INTERNAL_H */
