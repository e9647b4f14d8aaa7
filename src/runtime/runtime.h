/* runtime.h - the runtime layer's private declarations. */
#ifndef FT_RUNTIME_INT_H
#define FT_RUNTIME_INT_H

#ifndef FT_BUILDING
#error "runtime.h is private to the ftrt library"
#endif

#include "ft_internal.h"
#include "ftrt/runtime.h"

/* Parses "a,b,c" into three unsigned values; 0 or -EINVAL. */
FT_INTERNAL int fti_config_parse_threshold(const char *text, unsigned out[3]);

/* Checks a configuration's ranges; 0 or -EINVAL with a one-line warning. */
FT_INTERNAL int fti_config_validate(const ft_config *cfg);

#endif /* FT_RUNTIME_INT_H */
