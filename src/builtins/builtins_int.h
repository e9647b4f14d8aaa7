/* builtins_int.h - the builtins' interface to the runtime (private). */
#ifndef FT_BUILTINS_INT_H
#define FT_BUILTINS_INT_H

#ifndef FT_BUILDING
#error "builtins_int.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/runtime.h"

/* Layer init/fini (runtime): singletons, small ints, intern table. */
FT_INTERNAL int fti_builtins_init(const ft_config *cfg);
FT_INTERNAL void fti_builtins_fini(void);

#endif /* FT_BUILTINS_INT_H */
