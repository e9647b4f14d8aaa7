/* trace.c - allocation tracing in the spirit of Python's tracemalloc.
 *
 * Guarantees: while tracing, every block allocated through ftrt has one
 * trace (its requested size and its allocation site) until it is freed, and
 * each site's bytes/count are the sums over its live traces; current traced
 * bytes is the sum over all traces and peak its maximum since the start.
 * Everything is under trace_lock. While tracing is off the allocation paths
 * pay no branch of their own for it: the fast paths' bound tests
 * (fti_alloc_fast_limit, fti_free_fast_limit) are closed while tracing, and
 * only the slow paths read fti_trace_on. Tables are
 * libc memory, so tracing never recurses into ftrt. */
#include "mem/mem_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdlib.h>
#include <string.h>

#define SITE_BUCKETS  1024u
#define TRACE_BUCKETS 65536u

typedef struct trace_site {
    struct trace_site *next;   /* hash chain (trace_lock) */
    uint64_t hash;
    size_t bytes, count;       /* live traces from here (trace_lock) */
    unsigned depth;
    void *frames[];
} trace_site;

typedef struct trace_entry {
    struct trace_entry *next;  /* hash chain (trace_lock) */
    void *block;
    size_t size;
    trace_site *site;
} trace_entry;

_Atomic int fti_trace_on;
_Atomic size_t fti_alloc_fast_limit = FTI_SMALL_MAX;
_Atomic uintptr_t fti_free_fast_limit = FTI_MAP_GRANULES - 1;
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned trace_depth;            /* (trace_lock) */
static trace_site **sites;              /* SITE_BUCKETS chains, NULL when off (trace_lock) */
static trace_entry **traces;            /* TRACE_BUCKETS chains, NULL when off (trace_lock) */
static size_t traced_current, traced_peak; /* (trace_lock) */

static unsigned ptr_bucket(const void *p)
{
    return (unsigned)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 48) % TRACE_BUCKETS;
}

static void tables_free(void)
{
    if (sites != NULL) {
        for (unsigned i = 0; i < SITE_BUCKETS; i++) {
            for (trace_site *s = sites[i], *next; s != NULL; s = next) {
                next = s->next;
                free(s);
            }
        }
    }
    if (traces != NULL) {
        for (unsigned i = 0; i < TRACE_BUCKETS; i++) {
            for (trace_entry *t = traces[i], *next; t != NULL; t = next) {
                next = t->next;
                free(t);
            }
        }
    }
    free(sites);
    free(traces);
    sites = NULL;
    traces = NULL;
}

int ft_trace_start(unsigned depth)
{
    if (depth < 1 || depth > FT_TRACE_MAX_DEPTH)
        return -EINVAL;
    pthread_mutex_lock(&trace_lock);
    if (sites != NULL) {
        pthread_mutex_unlock(&trace_lock);
        return -EALREADY;
    }
    sites = calloc(SITE_BUCKETS, sizeof *sites);
    traces = calloc(TRACE_BUCKETS, sizeof *traces);
    if (sites == NULL || traces == NULL) {
        tables_free();
        pthread_mutex_unlock(&trace_lock);
        return -ENOMEM;
    }
    trace_depth = depth;
    traced_current = traced_peak = 0;
    /* Warm up backtrace() (it loads libgcc on first use) outside any
     * allocation path. */
    void *warm[2];
    backtrace(warm, 2);
    /* relaxed: tables are guarded by trace_lock, the flag only routes
     * allocations to the traced path. */
    ft_atomic_store_relaxed(&fti_trace_on, 1);
    /* relaxed: as above; closing the fast paths sends every call to the
     * slow paths, which read fti_trace_on. */
    ft_atomic_store_relaxed(&fti_alloc_fast_limit, 0);
    ft_atomic_store_relaxed(&fti_free_fast_limit, 0);
    pthread_mutex_unlock(&trace_lock);
    return 0;
}

void ft_trace_stop(void)
{
    pthread_mutex_lock(&trace_lock);
    ft_atomic_store_relaxed(&fti_trace_on, 0); /* relaxed: as in ft_trace_start */
    ft_atomic_store_relaxed(&fti_alloc_fast_limit, FTI_SMALL_MAX); /* relaxed: as in ft_trace_start */
    ft_atomic_store_relaxed(&fti_free_fast_limit, FTI_MAP_GRANULES - 1); /* relaxed: as in ft_trace_start */
    tables_free();
    traced_current = traced_peak = 0;
    pthread_mutex_unlock(&trace_lock);
}

bool ft_trace_is_tracing(void)
{
    return ft_atomic_load_relaxed(&fti_trace_on) != 0; /* relaxed: as in ft_trace_start */
}

void ft_trace_get_traced_memory(size_t *current, size_t *peak)
{
    pthread_mutex_lock(&trace_lock);
    if (current != NULL)
        *current = traced_current;
    if (peak != NULL)
        *peak = traced_peak;
    pthread_mutex_unlock(&trace_lock);
}

/* Frames of the allocation site: caller first, then its callers. */
static unsigned capture(void *caller, unsigned depth, void **frames)
{
    frames[0] = caller;
    if (depth == 1)
        return 1;
    void *buf[FT_TRACE_MAX_DEPTH + 16];
    int n = backtrace(buf, (int)(depth + 16));
    for (int i = 0; i < n; i++) {
        if (buf[i] == caller) {
            unsigned k = 0;
            for (int j = i; j < n && k < depth; j++)
                frames[k++] = buf[j];
            return k;
        }
    }
    return 1;
}

void fti_trace_alloc(void *p, size_t size, void *caller)
{
    void *frames[FT_TRACE_MAX_DEPTH];
    /* relaxed read of depth's snapshot is done under the lock below; capture
     * with the maximum and trim afterwards. */
    pthread_mutex_lock(&trace_lock);
    unsigned depth = trace_depth;
    pthread_mutex_unlock(&trace_lock);
    if (depth == 0)
        return;
    unsigned n = capture(caller, depth, frames);
    uint64_t hash = 1469598103934665603ull;
    for (unsigned i = 0; i < n; i++)
        hash = (hash ^ (uint64_t)(uintptr_t)frames[i]) * 1099511628211ull;

    trace_entry *t = malloc(sizeof *t);
    pthread_mutex_lock(&trace_lock);
    if (sites == NULL || t == NULL) {
        pthread_mutex_unlock(&trace_lock);
        free(t);
        return;
    }
    trace_site *s;
    unsigned sb = (unsigned)(hash % SITE_BUCKETS);
    for (s = sites[sb]; s != NULL; s = s->next)
        if (s->hash == hash && s->depth == n && memcmp(s->frames, frames, n * sizeof(void *)) == 0)
            break;
    if (s == NULL) {
        s = calloc(1, sizeof *s + n * sizeof(void *));
        if (s == NULL) {
            pthread_mutex_unlock(&trace_lock);
            free(t);
            return;
        }
        s->hash = hash;
        s->depth = n;
        memcpy(s->frames, frames, n * sizeof(void *));
        s->next = sites[sb];
        sites[sb] = s;
    }
    s->bytes += size;
    s->count++;
    t->block = p;
    t->size = size;
    t->site = s;
    unsigned tb = ptr_bucket(p);
    t->next = traces[tb];
    traces[tb] = t;
    traced_current += size;
    if (traced_current > traced_peak)
        traced_peak = traced_current;
    pthread_mutex_unlock(&trace_lock);
}

void fti_trace_free(void *p)
{
    trace_entry *t = NULL;
    pthread_mutex_lock(&trace_lock);
    if (traces != NULL) {
        for (trace_entry **pp = &traces[ptr_bucket(p)]; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->block == p) {
                t = *pp;
                *pp = t->next;
                t->site->bytes -= t->size;
                t->site->count--;
                traced_current -= t->size;
                break;
            }
        }
    }
    pthread_mutex_unlock(&trace_lock);
    free(t);
}

static int site_cmp(const void *a, const void *b)
{
    const ft_trace_site *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

size_t ft_trace_snapshot(ft_trace_site *out, size_t max)
{
    size_t n = 0, cap = 0;
    ft_trace_site *all = NULL;

    pthread_mutex_lock(&trace_lock);
    if (sites != NULL) {
        for (unsigned i = 0; i < SITE_BUCKETS; i++) {
            for (trace_site *s = sites[i]; s != NULL; s = s->next) {
                if (s->count == 0)
                    continue;
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    ft_trace_site *bigger = realloc(all, cap * sizeof *all);
                    if (bigger == NULL)
                        goto done;
                    all = bigger;
                }
                ft_trace_site *o = &all[n++];
                o->bytes = s->bytes;
                o->count = s->count;
                o->depth = s->depth;
                memcpy(o->frames, s->frames, s->depth * sizeof(void *));
            }
        }
    }
done:
    pthread_mutex_unlock(&trace_lock);
    if (n > 0)
        qsort(all, n, sizeof *all, site_cmp);
    if (n > max)
        n = max;
    if (n > 0)
        memcpy(out, all, n * sizeof *all);
    free(all);
    return n;
}

void ft_trace_print_top(FILE *out, size_t n)
{
    ft_trace_site *top = calloc(n ? n : 1, sizeof *top);
    if (top == NULL)
        return;
    size_t got = ft_trace_snapshot(top, n);
    size_t current, peak;
    ft_trace_get_traced_memory(&current, &peak);
    fprintf(out, "ftrt trace: %zu bytes traced now, peak %zu; top %zu sites\n", current, peak, got);
    for (size_t i = 0; i < got; i++) {
        fprintf(out, "#%zu: %zu bytes in %zu blocks\n", i + 1, top[i].bytes, top[i].count);
        for (unsigned f = 0; f < top[i].depth; f++) {
            Dl_info info;
            void *pc = top[i].frames[f];
            if (dladdr(pc, &info) != 0 && info.dli_sname != NULL)
                fprintf(out, "    %p %s+%#lx (%s)\n", pc, info.dli_sname,
                        (unsigned long)((uintptr_t)pc - (uintptr_t)info.dli_saddr), info.dli_fname);
            else if (dladdr(pc, &info) != 0)
                fprintf(out, "    %p (%s+%#lx)\n", pc, info.dli_fname,
                        (unsigned long)((uintptr_t)pc - (uintptr_t)info.dli_fbase));
            else
                fprintf(out, "    %p\n", pc);
        }
    }
    free(top);
}

void fti_trace_fork_prepare(void)
{
    pthread_mutex_lock(&trace_lock);
}

void fti_trace_fork_release(void)
{
    pthread_mutex_unlock(&trace_lock);
}

