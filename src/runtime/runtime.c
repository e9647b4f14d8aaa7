/* runtime.c - ft_init / ft_fini: bringing the layers up in order and down in
 * reverse.
 *
 * Layers start lowest first (mem, thread, object, gc, builtins), each
 * registering its hooks with the layers below, and only then is the caller
 * attached, so no thread ever runs against a half-initialised layer. The
 * runtime state moves DOWN -> STARTING -> UP -> STOPPING -> DOWN with CAS, so
 * that two racing ft_init calls cannot both initialise. */
#include "runtime.h"

#include "builtins/builtins_int.h"
#include "ft_atomic.h"
#include "gc/gc.h"
#include "mem/mem.h"
#include "object/object.h"
#include "thread/thread.h"

#include <errno.h>
#include <stdio.h>

enum runtime_state { RT_DOWN = 0, RT_STARTING = 1, RT_UP = 2, RT_STOPPING = 3 };

static _Atomic int runtime_state = RT_DOWN;
/* Written once in ft_init before runtime_state becomes RT_UP (release);
 * read-only afterwards until ft_fini. */
static ft_config runtime_config;

int ft_init(const ft_config *cfg)
{
    int expected = RT_DOWN;
    int rc;

    /* acquire: pairs with the release that set RT_DOWN in ft_fini, so a
     * re-init sees the previous shutdown complete. */
    if (!ft_atomic_cas_acquire(&runtime_state, &expected, RT_STARTING))
        return -EALREADY;
    if (cfg != NULL)
        runtime_config = *cfg;
    else
        ft_config_default(&runtime_config);
    rc = fti_config_validate(&runtime_config);
    if (rc != 0)
        goto fail_config;

    rc = fti_mem_init();
    if (rc != 0)
        goto fail_config;
    rc = fti_thread_init(&runtime_config);
    if (rc != 0)
        goto fail_mem;
    rc = fti_object_init(&runtime_config);
    if (rc != 0)
        goto fail_thread;
    rc = fti_gc_init(&runtime_config);
    if (rc != 0)
        goto fail_object;
    rc = fti_builtins_init(&runtime_config);
    if (rc != 0)
        goto fail_gc;
    /* release: pairs with the acquire in ft_config_get/ft_mode_get readers
     * on other threads; the configuration is published before RT_UP. */
    ft_atomic_store_release(&runtime_state, RT_UP);
    rc = ft_thread_attach();
    if (rc != 0) {
        ft_atomic_store_release(&runtime_state, RT_STARTING);
        goto fail_builtins;
    }
    if (runtime_config.trace_depth > 0)
        ft_trace_start(runtime_config.trace_depth);
    return 0;

fail_builtins:
    fti_builtins_fini();
fail_gc:
    fti_gc_fini();
fail_object:
    fti_object_fini();
fail_thread:
    fti_thread_fini();
fail_mem:
    fti_mem_fini();
fail_config:
    /* release: pairs with the acquire CAS of the next ft_init. */
    ft_atomic_store_release(&runtime_state, RT_DOWN);
    return rc;
}

void ft_fini(void)
{
    int expected = RT_UP;

    /* acq_rel: acquire pairs with ft_init's release of RT_UP; release orders
     * our prior work before the shutdown. */
    if (!ft_atomic_cas_acq_rel(&runtime_state, &expected, RT_STOPPING))
        ft_fatal("ft_fini: runtime is not running (ft_init first, and ft_fini only once)");
    if (runtime_config.debug_leaks)
        fti_gc_report_leaks(stderr);
    if (ft_trace_is_tracing())
        ft_trace_stop();
    if (ft_thread_is_attached())
        ft_thread_detach();
    fti_builtins_fini();
    fti_gc_fini();
    fti_object_fini();
    fti_thread_fini();
    fti_mem_fini();
    /* release: pairs with the acquire CAS of the next ft_init. */
    ft_atomic_store_release(&runtime_state, RT_DOWN);
}

static void check_up(const char *call)
{
    /* acquire: pairs with the release of RT_UP in ft_init (config published). */
    int state = ft_atomic_load_acquire(&runtime_state);

    FT_CHECK(state == RT_UP || state == RT_STOPPING, "%s: runtime is not running (ft_init first)", call);
}

ft_mode ft_mode_get(void)
{
    check_up("ft_mode_get");
    return runtime_config.mode;
}

const ft_config *ft_config_get(void)
{
    check_up("ft_config_get");
    return &runtime_config;
}
