/* config.c - ft_config defaults and FTRT_* environment overrides.
 *
 * The table of variables is docs/config.md; keep both in step. A malformed
 * value is reported once on stderr and the default kept, so that a typo in
 * the environment never changes behaviour silently. */
#include "runtime.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FT_DEFAULT_GIL_SWITCH_US 5000u
#define FT_DEFAULT_STW_TIMEOUT_MS 5000u
#define FT_DEFAULT_QSBR_BUDGET (256u << 10)

/* Parses a whole string as an unsigned decimal within [lo, hi]. */
static int parse_ulong(const char *text, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (text == NULL || *text == '\0' || *text == '-')
        return -EINVAL;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

int fti_config_parse_threshold(const char *text, unsigned out[3])
{
    unsigned long v[3];
    char buf[64];
    char *save = NULL;
    char *tok;
    int n = 0;

    if (text == NULL || strlen(text) >= sizeof buf)
        return -EINVAL;
    strcpy(buf, text);
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n == 3 || parse_ulong(tok, 0, UINT_MAX, &v[n]) != 0)
            return -EINVAL;
        n++;
    }
    if (n == 0)
        return -EINVAL;
    /* "N" alone sets the young threshold only, as gc.set_threshold(N) does. */
    out[0] = (unsigned)v[0];
    if (n > 1)
        out[1] = (unsigned)v[1];
    if (n > 2)
        out[2] = (unsigned)v[2];
    return 0;
}

static void env_bool(const char *name, bool *field)
{
    const char *text = getenv(name);
    unsigned long v;

    if (text == NULL)
        return;
    if (parse_ulong(text, 0, 1, &v) != 0) {
        fti_warn("%s=%s ignored: expected 0 or 1", name, text);
        return;
    }
    *field = v != 0;
}

static void env_unsigned(const char *name, unsigned long lo, unsigned long hi, unsigned *field)
{
    const char *text = getenv(name);
    unsigned long v;

    if (text == NULL)
        return;
    if (parse_ulong(text, lo, hi, &v) != 0) {
        fti_warn("%s=%s ignored: expected an integer in [%lu, %lu]", name, text, lo, hi);
        return;
    }
    *field = (unsigned)v;
}

void ft_config_default(ft_config *cfg)
{
    const char *text;
    bool gil = false;
    unsigned long budget;

    memset(cfg, 0, sizeof *cfg);
    cfg->mode = FT_MODE_FREE_THREADED;
    cfg->gil_switch_interval_us = FT_DEFAULT_GIL_SWITCH_US;
    cfg->stw_timeout_ms = FT_DEFAULT_STW_TIMEOUT_MS;
    cfg->gc_enabled = true;
    cfg->gc_threshold[0] = 700; /* the seeds' (and CPython's) defaults */
    cfg->gc_threshold[1] = 10;
    cfg->gc_threshold[2] = 10;
    cfg->gc_workers = 0;
    cfg->qsbr_budget_bytes = FT_DEFAULT_QSBR_BUDGET;
    cfg->trace_depth = 0;
    cfg->debug_leaks = false;

    env_bool("FTRT_GIL", &gil);
    if (gil)
        cfg->mode = FT_MODE_GIL;
    env_unsigned("FTRT_GIL_SWITCH_US", 1, 10u * 1000 * 1000, &cfg->gil_switch_interval_us);
    env_unsigned("FTRT_STW_TIMEOUT_MS", 1, 3600u * 1000, &cfg->stw_timeout_ms);
    env_bool("FTRT_GC", &cfg->gc_enabled);
    text = getenv("FTRT_GC_THRESHOLD");
    if (text != NULL && fti_config_parse_threshold(text, cfg->gc_threshold) != 0)
        fti_warn("FTRT_GC_THRESHOLD=%s ignored: expected N or N,N,N", text);
    env_unsigned("FTRT_GC_WORKERS", 0, 64, &cfg->gc_workers);
    text = getenv("FTRT_QSBR_BUDGET");
    if (text != NULL) {
        if (parse_ulong(text, 4096, (unsigned long)1 << 40, &budget) != 0)
            fti_warn("FTRT_QSBR_BUDGET=%s ignored: expected bytes in [4096, 2^40]", text);
        else
            cfg->qsbr_budget_bytes = (size_t)budget;
    }
    env_unsigned("FTRT_TRACEMALLOC", 0, 64, &cfg->trace_depth);
    env_bool("FTRT_DEBUG_LEAKS", &cfg->debug_leaks);
}

int fti_config_validate(const ft_config *cfg)
{
    if (cfg->mode != FT_MODE_FREE_THREADED && cfg->mode != FT_MODE_GIL) {
        fti_warn("ft_init: invalid mode %d", (int)cfg->mode);
        return -EINVAL;
    }
    if (cfg->mode == FT_MODE_GIL && cfg->gil_switch_interval_us == 0) {
        fti_warn("ft_init: gil_switch_interval_us must be > 0");
        return -EINVAL;
    }
    if (cfg->stw_timeout_ms == 0) {
        fti_warn("ft_init: stw_timeout_ms must be > 0");
        return -EINVAL;
    }
    if (cfg->trace_depth > 64) {
        fti_warn("ft_init: trace_depth %u above 64", cfg->trace_depth);
        return -EINVAL;
    }
    if (cfg->gc_workers > 64) {
        fti_warn("ft_init: gc_workers %u above 64", cfg->gc_workers);
        return -EINVAL;
    }
    return 0;
}
