/* lockfree_slot.c - readers take references to a shared object from a slot of
 * their own without any lock while a writer keeps replacing it (a
 * configuration reloaded at run time).
 *
 * The contract it shows (ftrt/object.h, docs/objects.md):
 *   - the writer marks each new object with ft_set_shared_read before it
 *     publishes it (release), and drops the old one right after: it is freed
 *     at once, no grace period;
 *   - a reader loads the pointer (acquire), takes a reference with
 *     ft_try_incref, and re-checks the slot: if it changed, the reference may
 *     be to a newer object that reuses the block, so it drops it and retries;
 *   - a reader holds no uncounted pointer across ft_safepoint (a quiescent
 *     state) or across a decref.
 *
 *   ./lockfree_slot [readers] [updates]
 * Exits 1 if a reader ever saw an inconsistent object or a count went wrong. */
#include "ftrt.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct config {
    ft_object ob;
    uint64_t version;
    uint64_t limits[4];
    uint64_t checksum; /* a function of the fields above: a torn or freed object fails it */
} config;

static _Atomic long configs_freed;

static void config_dealloc(void *self)
{
    config *c = self;
    c->checksum = 0; /* a reader that used a dead object would see this */
    /* relaxed: a counter, read after every thread was joined. */
    atomic_fetch_add_explicit(&configs_freed, 1, memory_order_relaxed);
}

static const ft_type config_type = {
    .name = "config", .size = sizeof(config), .dealloc = config_dealloc,
};

static uint64_t checksum_of(const config *c)
{
    uint64_t h = c->version * 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 4; i++)
        h = (h ^ c->limits[i]) * 0xff51afd7ed558ccdu;
    return h | 1; /* never 0, the dead value */
}

static config *config_new(uint64_t version)
{
    config *c = ft_new(&config_type);
    if (c == NULL)
        return NULL;
    c->version = version;
    for (int i = 0; i < 4; i++)
        c->limits[i] = version * 10 + (uint64_t)i;
    c->checksum = checksum_of(c);
    return c;
}

static _Atomic(config *) slot;
static _Atomic int done;

typedef struct reader_arg {
    long reads, retries, bad;
    uint64_t last_version;
} reader_arg;

/* A counted reference to the current configuration. */
static config *config_get(reader_arg *r)
{
    for (;;) {
        /* acquire: pairs with the writer's release exchange. */
        config *c = atomic_load_explicit(&slot, memory_order_acquire);
        if (ft_try_incref(c)) {
            /* acquire: the re-check; a changed slot means our reference may
             * be to another object that now lives at this address. */
            if (atomic_load_explicit(&slot, memory_order_acquire) == c)
                return c;
            ft_decref(c);
        }
        r->retries++;
    }
}

static void *reader_main(void *p)
{
    reader_arg *r = p;
    /* acquire: pairs with the writer's release store of done. */
    while (!atomic_load_explicit(&done, memory_order_acquire)) {
        for (int i = 0; i < 64; i++) {
            config *c = config_get(r);
            if (c->checksum != checksum_of(c) || c->version < r->last_version)
                r->bad++;
            r->last_version = c->version;
            r->reads++;
            ft_decref(c);
        }
        ft_safepoint(); /* no uncounted pointer is held here */
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int readers = argc > 1 ? atoi(argv[1]) : 2;
    long updates = argc > 2 ? atol(argv[2]) : 200000;
    if (readers < 1 || readers > 64 || updates < 1) {
        fprintf(stderr, "usage: %s [readers 1-64] [updates]\n", argv[0]);
        return 2;
    }
    if (ft_init(NULL) != 0) {
        fprintf(stderr, "lockfree_slot: ft_init failed\n");
        return 1;
    }
    config *first = config_new(1);
    if (first == NULL)
        return 1;
    ft_set_shared_read(first);
    atomic_store_explicit(&slot, first, memory_order_release);

    pthread_t threads[64];
    reader_arg args[64] = { { 0 } };
    for (int i = 0; i < readers; i++) {
        if (ft_thread_start(&threads[i], reader_main, &args[i]) != 0) {
            fprintf(stderr, "lockfree_slot: ft_thread_start failed\n");
            return 1;
        }
    }
    for (long v = 2; v <= updates + 1; v++) {
        config *fresh = config_new((uint64_t)v);
        if (fresh == NULL)
            return 1;
        ft_set_shared_read(fresh); /* before it is published */
        /* acq_rel: release publishes fresh's fields; acquire for the old one. */
        config *old = atomic_exchange_explicit(&slot, fresh, memory_order_acq_rel);
        ft_decref(old); /* freed at once unless a reader holds it */
        if ((v & 63) == 0)
            ft_safepoint();
    }
    /* release: pairs with the readers' acquire loads. */
    atomic_store_explicit(&done, 1, memory_order_release);

    long reads = 0, retries = 0, bad = 0;
    for (int i = 0; i < readers; i++) {
        ft_thread_join(threads[i], NULL);
        reads += args[i].reads;
        retries += args[i].retries;
        bad += args[i].bad;
    }
    /* relaxed (both): every reader was joined; only this thread is left. */
    ft_decref(atomic_load_explicit(&slot, memory_order_relaxed));
    long freed = atomic_load_explicit(&configs_freed, memory_order_relaxed);
    ft_fini();

    printf("lockfree_slot: %d readers, %ld updates, %ld reads, %ld retries, %ld configs freed\n", readers,
           updates, reads, retries, freed);
    if (bad != 0 || freed != updates + 1) {
        printf("lockfree_slot: FAILED (%ld inconsistent reads, %ld of %ld configs freed)\n", bad, freed,
               updates + 1);
        return 1;
    }
    printf("lockfree_slot: ok\n");
    return 0;
}
