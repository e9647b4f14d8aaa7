/* debug.c - debugging tools: live objects by type (objgraph's
 * most_common_types and the FTRT_DEBUG_LEAKS report) and reference graphs in
 * Graphviz DOT (show_refs / show_backrefs).
 *
 * Each tool looks at the heap with the world stopped (fti_mem_walk needs it,
 * and a traverse must not race with mutators), and writes its output after
 * the world restarted so that a slow FILE never lengthens the pause. The
 * collector's memory is libc malloc, never the heaps being walked. */
#include "gc_int.h"

#include "ft_atomic.h"
#include "mem/mem.h"
#include "thread/thread.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- A pointer-keyed open-addressing map (value: size_t) ---- */

typedef struct ptr_map {
    const void **keys;
    size_t *values;
    size_t cap; /* power of two */
    size_t len;
    bool failed; /* out of memory: results are incomplete */
} ptr_map;

static size_t ptr_hash(const void *p, size_t cap)
{
    return (size_t)((((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static bool map_grow(ptr_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    const void **keys = calloc(cap, sizeof *keys);
    size_t *values = calloc(cap, sizeof *values);

    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        m->failed = true;
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] != NULL) {
            size_t j = ptr_hash(m->keys[i], cap);

            while (keys[j] != NULL)
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            values[j] = m->values[i];
        }
    }
    free(m->keys);
    free(m->values);
    m->keys = keys;
    m->values = values;
    m->cap = cap;
    return true;
}

/* The value slot of key, inserted with 0 if absent; NULL on out-of-memory. */
static size_t *map_slot(ptr_map *m, const void *key, bool *inserted)
{
    size_t j;

    if ((m->len + 1) * 2 > m->cap && !map_grow(m))
        return NULL;
    j = ptr_hash(key, m->cap);
    while (m->keys[j] != NULL && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    if (inserted != NULL)
        *inserted = m->keys[j] == NULL;
    if (m->keys[j] == NULL) {
        m->keys[j] = key;
        m->values[j] = 0;
        m->len++;
    }
    return &m->values[j];
}

static const size_t *map_find(const ptr_map *m, const void *key)
{
    size_t j;

    if (m->cap == 0)
        return NULL;
    j = ptr_hash(key, m->cap);
    while (m->keys[j] != NULL) {
        if (m->keys[j] == key)
            return &m->values[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

static void map_free(ptr_map *m)
{
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

/* ---- Live objects by type ---- */

static int count_by_type(void *block, size_t size, void *arg)
{
    ft_object *o = block;
    ptr_map *types = arg;
    size_t *slot;

    (void)size;
    /* relaxed: world stopped. Immortal objects are not leaks. */
    if (ft_atomic_load_relaxed(&o->ob_ref_local) == FT_REF_IMMORTAL)
        return 0;
    /* Dead objects whose memory waits for a QSBR grace period (delayed
     * frees) are still mem blocks: their count is zero. */
    if (fti_gc_is_dying(o, fti_object_total_refcount(o)))
        return 0;
    slot = map_slot(types, o->ob_type, NULL);
    if (slot == NULL)
        return 1;
    (*slot)++;
    return 0;
}

static int cmp_type_count(const void *a, const void *b)
{
    const ft_gc_type_count *x = a, *y = b;

    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* Fills a sorted array of every type's count (malloc'd, *n entries). */
static ft_gc_type_count *type_counts(size_t *n, bool stop_world)
{
    ptr_map types = { 0 };
    ft_gc_type_count *all;
    size_t k = 0;

    if (stop_world)
        ft_stop_the_world();
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, count_by_type, &types);
    fti_mem_walk(FTI_KIND_OBJ, FTI_WALK_ALL, count_by_type, &types);
    if (stop_world)
        ft_start_the_world();
    all = calloc(types.len ? types.len : 1, sizeof *all);
    if (all == NULL) {
        map_free(&types);
        *n = 0;
        return NULL;
    }
    for (size_t i = 0; i < types.cap; i++) {
        if (types.keys[i] != NULL) {
            all[k].name = ((const ft_type *)types.keys[i])->name;
            all[k].count = types.values[i];
            k++;
        }
    }
    map_free(&types);
    qsort(all, k, sizeof *all, cmp_type_count);
    *n = k;
    return all;
}

size_t ft_gc_most_common_types(ft_gc_type_count *out, size_t cap)
{
    size_t n;
    ft_gc_type_count *all;

    FT_ASSERT_ATTACHED();
    all = type_counts(&n, true);
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = all[i];
    free(all);
    return n;
}

void ft_gc_show_most_common_types(FILE *out, size_t limit)
{
    size_t n;
    ft_gc_type_count *all;

    FT_ASSERT_ATTACHED();
    all = type_counts(&n, true);
    for (size_t i = 0; i < n && i < limit; i++)
        fprintf(out, "%-24s %zu\n", all[i].name, all[i].count);
    free(all);
}

void fti_gc_report_leaks(FILE *out)
{
    size_t n, total = 0;
    bool attached = ft_thread_is_attached();
    ft_gc_type_count *all;

    if (attached) {
        /* Pending biased decrefs would show freed objects as live. */
        ft_stop_the_world();
        fti_brc_merge_all_stopped();
        ft_start_the_world();
        fti_weakref_run_pending(); /* the merge may have freed objects with weakrefs */
    }
    all = type_counts(&n, attached);
    for (size_t i = 0; i < n; i++)
        total += all[i].count;
    fprintf(out, "ftrt: leak report: %zu live objects of %zu types\n", total, n);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "ftrt:   %-24s %zu\n", all[i].name, all[i].count);
    free(all);
}

/* ---- DOT export ---- */

typedef struct dot_edge {
    const ft_object *from;
    const ft_object *to;
} dot_edge;

typedef struct dot_ctx {
    ptr_map nodes;     /* object -> depth at which it was reached */
    fti_gc_vec frontier;
    fti_gc_vec next;
    dot_edge *edges;
    size_t nedges, edges_cap;
    size_t max_nodes;
    size_t depth;      /* depth of the level being expanded + 1 */
    const ft_object *current;
    bool failed;
} dot_ctx;

static void add_edge(dot_ctx *d, const ft_object *from, const ft_object *to)
{
    if (d->nedges == d->edges_cap) {
        size_t cap = d->edges_cap ? d->edges_cap * 2 : 64;
        dot_edge *e = realloc(d->edges, cap * sizeof *e);

        if (e == NULL) {
            d->failed = true;
            return;
        }
        d->edges = e;
        d->edges_cap = cap;
    }
    d->edges[d->nedges].from = from;
    d->edges[d->nedges].to = to;
    d->nedges++;
}

/* Reaches obj at d->depth: records it as a node (if room) and queues it. */
static bool reach(dot_ctx *d, const ft_object *obj)
{
    bool inserted = false;
    size_t *slot;

    if (map_find(&d->nodes, obj) != NULL)
        return true;
    if (d->nodes.len >= d->max_nodes)
        return false;
    slot = map_slot(&d->nodes, obj, &inserted);
    if (slot == NULL) {
        d->failed = true;
        return false;
    }
    *slot = d->depth;
    if (fti_gc_vec_push(&d->next, (void *)obj) != 0)
        d->failed = true;
    return true;
}

static int visit_ref(void *p, void *arg)
{
    dot_ctx *d = arg;

    if (p != NULL && reach(d, p))
        add_edge(d, d->current, p);
    return 0;
}

static int visit_is_in_frontier(void *p, void *arg)
{
    dot_ctx *d = arg;
    const size_t *depth;

    if (p == NULL)
        return 0;
    depth = map_find(&d->nodes, p);
    /* An edge from the walked object to a node of the previous level. */
    if (depth != NULL && *depth == d->depth - 1 && reach(d, d->current))
        add_edge(d, d->current, p);
    return 0;
}

static int walk_backrefs(void *block, size_t size, void *arg)
{
    dot_ctx *d = arg;
    ft_object *o = block;

    (void)size;
    /* relaxed: world stopped. */
    if ((ft_atomic_load_relaxed(&o->ob_gc_bits) & FTI_GC_TRACKED) == 0)
        return 0;
    d->current = o;
    fti_gc_traverse(o, visit_is_in_frontier, d);
    return 0;
}

static void write_node(FILE *out, const ft_object *o, bool root)
{
    intptr_t rc = fti_object_total_refcount(o);

    fprintf(out, "  \"%p\" [label=\"%s\\n%p\\nrefcount %" PRIdPTR "\"%s];\n", (const void *)o,
            o->ob_type->name, (const void *)o, rc,
            root ? ", style=filled, fillcolor=\"#ffd27f\"" : "");
}

int ft_gc_write_dot(FILE *out, void *o, unsigned max_depth, size_t max_nodes, unsigned flags)
{
    dot_ctx d = { .max_nodes = max_nodes ? max_nodes : 1 };
    bool backrefs = (flags & FT_GC_DOT_BACKREFS) != 0;
    size_t written = 0;
    char *text = NULL;
    size_t text_len = 0;
    FILE *mem;

    FT_ASSERT_ATTACHED();
    if (out == NULL || o == NULL)
        return -EINVAL;
    /* Node labels are formatted while stopped (counts are exact then) into
     * a memory stream, and copied to `out` after the restart. */
    mem = open_memstream(&text, &text_len);
    if (mem == NULL)
        return -ENOMEM;
    ft_stop_the_world();
    fti_brc_merge_all_stopped();
    d.depth = 0;
    reach(&d, o);
    for (unsigned level = 0; level < max_depth && d.next.len > 0 && !d.failed; level++) {
        fti_gc_vec tmp = d.frontier;

        d.frontier = d.next;
        d.next = tmp;
        d.next.len = 0;
        d.depth = level + 1;
        if (backrefs) {
            fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, walk_backrefs, &d);
        } else {
            for (size_t i = 0; i < d.frontier.len; i++) {
                d.current = d.frontier.items[i];
                fti_gc_traverse(d.frontier.items[i], visit_ref, &d);
            }
        }
    }
    fprintf(mem, "digraph %s {\n  node [shape=box, fontname=\"monospace\"];\n",
            backrefs ? "backrefs" : "refs");
    for (size_t i = 0; i < d.nodes.cap; i++) {
        if (d.nodes.keys[i] != NULL) {
            write_node(mem, d.nodes.keys[i], d.nodes.keys[i] == o);
            written++;
        }
    }
    for (size_t i = 0; i < d.nedges; i++)
        fprintf(mem, "  \"%p\" -> \"%p\";\n", (const void *)d.edges[i].from, (const void *)d.edges[i].to);
    fprintf(mem, "}\n");
    ft_start_the_world();
    fti_weakref_run_pending(); /* the merge may have freed objects with weakrefs */
    fclose(mem);
    fwrite(text, 1, text_len, out);
    free(text);
    map_free(&d.nodes);
    fti_gc_vec_free(&d.frontier);
    fti_gc_vec_free(&d.next);
    free(d.edges);
    if (d.failed)
        return -ENOMEM;
    return (int)written;
}

/* ---- Heap validator (debug level 2, world stopped) ---- */

typedef struct check_ctx {
    const char *when;
    uint8_t forbidden_bits;
    uint32_t max_owner;
    const ft_object *current;
} check_ctx;

static int visit_check(void *p, void *arg)
{
    check_ctx *c = arg;

    if (p != NULL)
        fti_gc_check_visited(c->current, p);
    return 0;
}

static int check_one(void *block, size_t size, void *arg)
{
    ft_object *o = block;
    check_ctx *c = arg;
    /* relaxed: world stopped (all three). */
    uint8_t bits = ft_atomic_load_relaxed(&o->ob_gc_bits);
    uint32_t owner = ft_atomic_load_relaxed(&o->ob_owner);
    intptr_t total;

    (void)size;
    FT_CHECK(o->ob_type != NULL && o->ob_type->name != NULL,
             "gc heap check (%s): object %p has no type", c->when, (void *)o);
    if ((bits & FTI_GC_TRACKED) == 0)
        return 0;
    FT_CHECK((bits & c->forbidden_bits) == 0, "gc heap check (%s): %s object %p has collector bits 0x%x left",
             c->when, o->ob_type->name, (void *)o, (unsigned)bits);
    FT_CHECK(owner <= c->max_owner, "gc heap check (%s): %s object %p has owner %u beyond the last thread index %u",
             c->when, o->ob_type->name, (void *)o, owner, c->max_owner);
    total = fti_object_total_refcount(o);
    FT_CHECK(total >= 0, "gc heap check (%s): %s object %p has a negative count %ld", c->when, o->ob_type->name,
             (void *)o, (long)total);
    c->current = o;
    fti_gc_traverse(o, visit_check, c);
    return 0;
}

void fti_gc_check_heap_stopped(const char *when, bool in_collection)
{
    check_ctx c = {
        .when = when,
        .forbidden_bits = (uint8_t)(FTI_GC_SCRATCH | FTI_GC_ALIVE | (in_collection ? 0 : FTI_GC_UNREACHABLE)),
        .max_owner = fti_thread_max_index(),
    };

    FT_ASSERT_WORLD_STOPPED();
    fti_mem_walk(FTI_KIND_GC, FTI_WALK_ALL, check_one, &c);
}
