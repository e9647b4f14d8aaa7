/* ftrt/runtime.h - starting and stopping the runtime, and its configuration.
 *
 * Every field of ft_config has an FTRT_* environment variable; the table is in
 * docs/config.md. */
#ifndef FTRT_RUNTIME_H
#define FTRT_RUNTIME_H

#include "ftrt/common.h"

typedef enum ft_mode {
    FT_MODE_FREE_THREADED = 0, /* no global lock: biased RC, per-object locks */
    FT_MODE_GIL = 1,           /* attached threads hold one global lock */
} ft_mode;

typedef struct ft_config {
    ft_mode mode;                       /* FTRT_GIL=1 selects FT_MODE_GIL */
    unsigned gil_switch_interval_us;    /* FTRT_GIL_SWITCH_US; default 5000 */
    unsigned stw_timeout_ms;            /* FTRT_STW_TIMEOUT_MS; report a late thread after this; default 5000 */
    bool gc_enabled;                    /* FTRT_GC=0 disables automatic collection; default on */
    unsigned gc_threshold[3];           /* FTRT_GC_THRESHOLD="700,10,10" */
    unsigned gc_workers;                /* FTRT_GC_WORKERS: marking threads; 0 = automatic */
    size_t qsbr_budget_bytes;           /* FTRT_QSBR_BUDGET: delayed-free bytes a thread may hold
                                           before it forces a grace period; default 256 KiB */
    unsigned trace_depth;               /* FTRT_TRACEMALLOC=N: start allocation tracing at init */
    bool debug_leaks;                   /* FTRT_DEBUG_LEAKS=1: live objects by type at ft_fini */
} ft_config;

/* Fills *cfg with the defaults, then applies the FTRT_* environment
 * variables. Malformed values are reported on stderr and ignored. */
FT_API void ft_config_default(ft_config *cfg);

/* Starts the runtime and attaches the calling thread. cfg == NULL means
 * ft_config_default(). Returns 0, -EALREADY if already initialised, -EINVAL
 * for an invalid config, or -ENOMEM. */
FT_API int ft_init(const ft_config *cfg);

/* Detaches the calling thread and shuts the runtime down. Other threads must
 * have detached. With debug_leaks, prints live objects by type first. */
FT_API void ft_fini(void);

/* The mode chosen at ft_init. */
FT_API ft_mode ft_mode_get(void);

/* The configuration in effect (valid between ft_init and ft_fini). */
FT_API const ft_config *ft_config_get(void);

#endif /* FTRT_RUNTIME_H */
