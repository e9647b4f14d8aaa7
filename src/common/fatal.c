/* fatal.c - the one-line fatal error and warning used by FT_CHECK. */
#include "ft_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void fti_fatal_at(const char *file, int line, const char *func, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One write so that lines from two dying threads do not interleave. */
    fprintf(stderr, "ftrt: fatal: %s (at %s:%d in %s)\n", msg, file, line, func);
    fflush(stderr);
    abort();
}

void fti_warn(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ftrt: warning: %s\n", msg);
}
