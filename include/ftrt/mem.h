/* ftrt/mem.h - the ftrt allocator: malloc-style calls, statistics in the
 * spirit of sys._debugmallocstats, allocation tracing in the spirit of
 * tracemalloc, and a fault-injection hook for tests.
 *
 * Memory from ft_malloc is 16-byte aligned. Requests up to FT_MEM_SMALL_MAX
 * bytes come from 16-byte size classes in thread-local pages, larger ones up
 * to FT_MEM_MEDIUM_MAX from coarser classes of the same pages, and bigger
 * ones from their own mapping. Any thread may free any block; ft_malloc and
 * ft_free work before ft_init and in threads that never attach. */
#ifndef FTRT_MEM_H
#define FTRT_MEM_H

#include "ftrt/common.h"

#include <stdio.h>

#define FT_MEM_SMALL_MAX   512   /* largest request served by the 16-byte classes */
#define FT_MEM_SMALL_CLASSES 32  /* 16, 32, ..., 512 */
#define FT_MEM_CLASSES     52    /* small classes + 20 medium classes up to 16 KiB */
#define FT_MEM_MEDIUM_MAX  16384 /* largest request served from pages (page size / 4 if smaller) */
#define FT_MEM_ALIGNMENT   16
#define FT_TRACE_MAX_DEPTH 64

/* Allocates n bytes (16-byte aligned, uninitialised). n == 0 gives a unique
 * minimal block. Returns NULL with errno = ENOMEM when memory is exhausted or
 * n is absurd (near SIZE_MAX). */
FT_API void *ft_malloc(size_t n);

/* Allocates an array of count elements of size bytes, zeroed. Returns NULL
 * with errno = ENOMEM when count * size overflows or memory is exhausted. */
FT_API void *ft_calloc(size_t count, size_t size);

/* Resizes p to n bytes keeping the common prefix; p == NULL acts as
 * ft_malloc(n); n == 0 frees p and returns NULL. On failure returns NULL
 * with errno = ENOMEM and p is untouched. */
FT_API void *ft_realloc(void *p, size_t n);

/* Frees p (NULL is ignored) from any thread. A pointer ftrt did not allocate,
 * or a double free visible in the page's metadata, aborts with a one-line
 * "ftrt: fatal: ft_free: ..." message. */
FT_API void ft_free(void *p);

/* Bytes usable in the block p (>= the size requested); 0 for NULL. Aborts
 * like ft_free for a pointer ftrt did not allocate. */
FT_API size_t ft_malloc_usable_size(const void *p);

/* Per size class figures of ft_mem_stats. */
typedef struct ft_mem_class_stats {
    size_t block_size;   /* bytes per block of this class */
    size_t pages;        /* pages of this class held by heaps (owned or abandoned) */
    size_t blocks_used;  /* blocks handed out and not yet freed (remote frees not yet
                            taken back by the owner still count as used) */
    size_t blocks_free;  /* blocks of those pages that are free */
} ft_mem_class_stats;

/* A snapshot of the allocator. Figures are read without stopping other
 * threads: each is exact when the process is quiescent, approximate (but
 * race-free) while other threads allocate. */
typedef struct ft_mem_stats {
    size_t arenas;              /* arenas mapped */
    size_t arenas_empty;        /* of which empty, kept for reuse (hysteresis) */
    size_t arena_bytes;         /* bytes of one arena */
    size_t page_bytes;          /* bytes of one page */
    size_t pages_in_use;        /* pages holding a size class */
    size_t pages_abandoned;     /* of which abandoned by departed heaps */
    size_t pages_retired;       /* of which empty object pages waiting for a QSBR grace period
                                   before they may change size class (type-stable memory) */
    size_t heaps;               /* heaps owned by live threads */
    size_t bytes_in_use;        /* block bytes handed out (small, medium, large) */
    size_t peak_bytes_committed;/* peak of page bytes held by heaps + large bytes */
    size_t large_blocks;        /* blocks above FT_MEM_MEDIUM_MAX, each its own mapping */
    size_t large_bytes;         /* their mapped bytes */
    size_t os_bytes_mapped;     /* everything mapped from the OS right now */
    size_t os_bytes_peak;       /* peak of os_bytes_mapped */
    uint64_t os_map_calls;      /* successful OS mapping requests so far */
    uint64_t os_unmap_calls;    /* mappings returned to the OS so far */
    uint64_t os_map_failures;   /* failed (or injected-failure) mapping requests */
    ft_mem_class_stats classes[FT_MEM_CLASSES];
} ft_mem_stats;

/* Fills *out with a snapshot of the allocator. */
FT_API void ft_mem_get_stats(ft_mem_stats *out);

/* Prints the statistics as a table (like sys._debugmallocstats). */
FT_API void ft_mem_print_stats(FILE *out);

/* Returns memory that is free but still held to the OS where possible: takes
 * back remote frees into abandoned pages, releases their empty pages, and
 * unmaps every empty arena (ignoring the hysteresis). */
FT_API void ft_mem_collect(void);

/* Fault injection for tests: the nth next OS mapping request fails with
 * ENOMEM (n == 1: the very next one). n == 0 disarms. */
FT_API void ft_mem_fail_os_after(uint64_t n);

/* ---- Allocation tracing (tracemalloc) ------------------------------------
 * While tracing, every ft_malloc/ft_calloc/ft_realloc and object allocation
 * records its size and the return addresses of its callers (up to depth
 * frames, the first being the caller of the ftrt allocation function). When
 * tracing is off the allocation paths pay one predictable branch. */

/* Starts tracing with depth frames per site (1..FT_TRACE_MAX_DEPTH). Returns
 * 0, -EINVAL for a bad depth, -EALREADY when already tracing. */
FT_API int ft_trace_start(unsigned depth);

/* Stops tracing and forgets every trace. */
FT_API void ft_trace_stop(void);

/* True while tracing. */
FT_API bool ft_trace_is_tracing(void);

/* Current and peak traced bytes (sizes as requested) since ft_trace_start;
 * either pointer may be NULL. */
FT_API void ft_trace_get_traced_memory(size_t *current, size_t *peak);

/* One allocation site: a backtrace and the traced blocks still live from it. */
typedef struct ft_trace_site {
    size_t bytes;                     /* live traced bytes allocated from here */
    size_t count;                     /* live traced blocks */
    unsigned depth;                   /* valid entries of frames */
    void *frames[FT_TRACE_MAX_DEPTH]; /* return addresses, innermost first */
} ft_trace_site;

/* Copies up to max sites into out, largest bytes first. Returns the number
 * copied (0 when not tracing). */
FT_API size_t ft_trace_snapshot(ft_trace_site *out, size_t max);

/* Prints the top n sites with their frames symbolised (dladdr). */
FT_API void ft_trace_print_top(FILE *out, size_t n);

#endif /* FTRT_MEM_H */
