/* gc.h - the collector's interface to the builtins and the runtime (private). */
#ifndef FT_GC_INT_H
#define FT_GC_INT_H

#ifndef FT_BUILDING
#error "gc.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/runtime.h"

#include <stdio.h>

/* Layer init/fini (runtime). */
FT_INTERNAL int fti_gc_init(const ft_config *cfg);
FT_INTERNAL void fti_gc_fini(void);

/* Live objects by type, most common first (FTRT_DEBUG_LEAKS at ft_fini). */
FT_INTERNAL void fti_gc_report_leaks(FILE *out);

/* Candidates examined by the last collection (white-box tests: a young
 * collection must not look at old objects). */
FT_INTERNAL size_t fti_gc_last_candidates(void);

#endif /* FT_GC_INT_H */
