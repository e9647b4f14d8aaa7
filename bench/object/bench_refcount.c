/* bench_refcount.c - cost of an owner ft_incref+ft_decref pair against a
 * classic non-atomic refcount (++ and -- with a zero check) on the same
 * struct, and of the non-owner (atomic) pair.
 *
 * Instruction counts: run under callgrind and read the inclusive Ir of the
 * pair_* functions divided by their call count (docs/bench-object.md):
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out bench_refcount --iterations 1000000
 *   callgrind_annotate --inclusive=yes cg.out | grep pair_
 * Each pair function holds one pair with a compiler barrier between the two
 * halves (so that the compiler cannot fuse ++ and -- into nothing) and is
 * noinline, so the call overhead is the same for every variant.
 * Without valgrind it prints ns per pair (medians of 5 runs), never asserting
 * on time. */
#include "bench_util.h"
#include "ft_config.h"
#include "ftrt.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct bench_obj {
    ft_object ob;
    long payload;
} bench_obj;

static const ft_type bench_obj_type = { .name = "bench_obj", .size = sizeof(bench_obj) };

/* The classic single-threaded refcount on the same 32-byte struct. */
typedef struct plain_obj {
    uint32_t owner;
    uint32_t pad;
    uint32_t refcnt;
    int32_t pad2;
    const void *type;
    long payload;
} plain_obj;

static long plain_frees;

__attribute__((noinline)) static void plain_free(plain_obj *o)
{
    plain_frees++;
    o->refcnt = 1;
}

#define BARRIER() __asm__ volatile("" ::: "memory")

__attribute__((noinline)) void pair_plain(plain_obj *o)
{
    o->refcnt++;
    BARRIER();
    if (--o->refcnt == 0)
        plain_free(o);
}

__attribute__((noinline)) void pair_ft_owner(void *o)
{
    ft_incref(o);
    BARRIER();
    ft_decref(o);
}

__attribute__((noinline)) void pair_ft_shared(void *o)
{
    ft_incref(o);
    BARRIER();
    ft_decref(o);
}

__attribute__((noinline)) void pair_ft_immortal(void *o)
{
    ft_incref(o);
    BARRIER();
    ft_decref(o);
}

typedef struct run_arg {
    void (*fn)(void *);
    void *obj;
    long iterations;
    double ns;
} run_arg;

static double time_loop(void (*fn)(void *), void *obj, long iterations)
{
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < iterations; i++)
        fn(obj);
    return (double)(bench_now_ns() - t0) / (double)iterations;
}

static void *shared_runner(void *arg)
{
    run_arg *a = arg;
    double samples[5];
    for (int r = 0; r < 5; r++)
        samples[r] = time_loop(a->fn, a->obj, a->iterations);
    a->ns = bench_median(samples, 5);
    return NULL;
}

static void report(const char *variant, double ns, long iterations)
{
    printf("%-22s %8.2f ns/pair\n", variant, ns);
    printf("{\"bench\":\"object_refcount\",\"variant\":\"%s\",\"ns_per_pair\":%.3f,\"iterations\":%ld}\n",
           variant, ns, iterations);
}

int main(int argc, char **argv)
{
    long iterations = 20000000;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--iterations") == 0)
            iterations = atol(argv[i + 1]);
    if (ft_init(NULL) != 0)
        return 1;
    bench_print_machine(stdout, "object_refcount", FT_CFG_BUILDTYPE);

    plain_obj plain = { .refcnt = 1 };
    bench_obj *owned = ft_new(&bench_obj_type);
    bench_obj *immortal = ft_new(&bench_obj_type);
    ft_set_immortal(immortal);
    double samples[5];

    for (int r = 0; r < 5; r++)
        samples[r] = time_loop((void (*)(void *))pair_plain, &plain, iterations);
    report("plain", bench_median(samples, 5), iterations);
    for (int r = 0; r < 5; r++)
        samples[r] = time_loop(pair_ft_owner, owned, iterations);
    report("ft_owner", bench_median(samples, 5), iterations);
    for (int r = 0; r < 5; r++)
        samples[r] = time_loop(pair_ft_immortal, immortal, iterations);
    report("ft_immortal", bench_median(samples, 5), iterations);

    /* the non-owner path: another thread counts atomically */
    run_arg a = { .fn = pair_ft_shared, .obj = owned, .iterations = iterations / 4 };
    pthread_t t;
    ft_thread_start(&t, shared_runner, &a);
    ft_thread_join(t, NULL);
    report("ft_shared_uncontended", a.ns, a.iterations);

    ft_decref(owned);
    ft_fini();
    return plain_frees != 0; /* the plain count never reached zero */
}
