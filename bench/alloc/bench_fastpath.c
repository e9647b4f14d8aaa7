/* bench_fastpath.c - N pairs of malloc(32) + free on one thread, for counting
 * fast-path instructions with callgrind: run with N and 2N and divide the
 * difference of the totals by N (bench/alloc/run.sh does it).
 * Usage: bench_fastpath --alloc=ftrt|system N */
#include "ftrt/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opaque to the optimiser, so the pair is neither elided nor hoisted. */
static void *volatile sink;

FT_NOINLINE static void pairs_ftrt(unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        void *p = ft_malloc(32);
        sink = p;
        ft_free(p);
    }
}

FT_NOINLINE static void pairs_system(unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        void *p = malloc(32);
        sink = p;
        free(p);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s --alloc=ftrt|system N\n", argv[0]);
        return 2;
    }
    unsigned long n = strtoul(argv[2], NULL, 0);
    if (strcmp(argv[1], "--alloc=ftrt") == 0) {
        pairs_ftrt(1); /* create the heap and the first page outside the count */
        pairs_ftrt(n);
    } else {
        pairs_system(1);
        pairs_system(n);
    }
    return 0;
}
