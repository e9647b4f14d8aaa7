/* ftrt/common.h - macros shared by every public header. */
#ifndef FTRT_COMMON_H
#define FTRT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FT_VERSION_MAJOR 0
#define FT_VERSION_MINOR 1
#define FT_VERSION_PATCH 0

#define FT_LIKELY(x)   __builtin_expect(!!(x), 1)
#define FT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FT_NOINLINE    __attribute__((noinline))
#define FT_API         __attribute__((visibility("default")))

#endif /* FTRT_COMMON_H */
