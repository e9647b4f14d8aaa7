/* bench_safepoint_instr.c - the instruction count of ft_safepoint() with
 * nothing pending, for callgrind:
 *
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out \
 *       bench_safepoint_instr 1000000
 *   callgrind_annotate cg.out | grep -E 'loop_(with|without)_safepoint'
 *
 * (Ir(loop_with_safepoint) - Ir(loop_without_safepoint)) / N is the cost of
 * the inlined fast path. bench/thread/run.sh does the arithmetic. Run
 * natively it only prints the machine line. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt/runtime.h"
#include "ftrt/thread.h"

FT_NOINLINE static void loop_with_safepoint(long n)
{
    for (long i = 0; i < n; i++) {
        ft_safepoint();
        __asm__ volatile("" ::: "memory");
    }
}

FT_NOINLINE static void loop_without_safepoint(long n)
{
    for (long i = 0; i < n; i++)
        __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;

    bench_print_machine(NULL, "thread_safepoint_instr", FT_CFG_BUILDTYPE);
    if (ft_init(NULL) != 0)
        return 1;
    loop_with_safepoint(n);
    loop_without_safepoint(n);
    printf("{\"bench\":\"thread_safepoint_instr\",\"iterations\":%ld}\n", n);
    ft_fini();
    return 0;
}
