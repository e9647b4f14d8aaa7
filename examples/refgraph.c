/* refgraph.c - objgraph-style debugging with ftrt: build a small object
 * graph with a cycle, print the most common types, write the references
 * from an object (depth 3) and the back-references to it (depth 2) as
 * Graphviz DOT, and render them to PNG with `dot` when graphviz is installed.
 *
 *     ./refgraph [output-prefix]      (default: refgraph)
 * writes <prefix>-refs.dot and <prefix>-backrefs.dot (+ .png with graphviz). */
#include <ftrt/gc.h>
#include <ftrt/object.h>
#include <ftrt/runtime.h>

#include <stdio.h>
#include <stdlib.h>

/* A session holds a user and a cart; the cart points back at its session. */
typedef struct thing {
    ft_object ob;
    void *ref[3]; /* counted references */
} thing;

static int thing_traverse(void *self, ft_visit_fn visit, void *arg)
{
    thing *t = self;

    for (int i = 0; i < 3; i++)
        if (t->ref[i] != NULL) {
            int rc = visit(t->ref[i], arg);

            if (rc != 0)
                return rc;
        }
    return 0;
}

static void thing_clear(void *self)
{
    thing *t = self;

    for (int i = 0; i < 3; i++) {
        void *old = t->ref[i];

        t->ref[i] = NULL;
        if (old != NULL)
            ft_decref(old);
    }
}

#define THING_TYPE(var, label) \
    static const ft_type var = { .name = label, .size = sizeof(thing), .flags = FT_TYPE_GC, \
                                 .traverse = thing_traverse, .clear = thing_clear }
THING_TYPE(session_type, "Session");
THING_TYPE(user_type, "User");
THING_TYPE(cart_type, "Cart");
THING_TYPE(item_type, "Item");

static thing *make(const ft_type *t)
{
    thing *o = ft_new(t);

    if (o == NULL) {
        fprintf(stderr, "refgraph: out of memory\n");
        exit(1);
    }
    return o;
}

/* Stores a new reference to target in o->ref[i]. */
static void link_to(thing *o, int i, void *target)
{
    ft_incref(target);
    o->ref[i] = target;
}

static int write_dot(const char *prefix, const char *kind, void *obj, unsigned depth, unsigned flags)
{
    char path[512], cmd[1200];
    FILE *f;
    int nodes;

    snprintf(path, sizeof path, "%s-%s.dot", prefix, kind);
    f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    nodes = ft_gc_write_dot(f, obj, depth, 50, flags);
    fclose(f);
    printf("wrote %s (%d objects)\n", path, nodes);
    if (system("command -v dot >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "dot -Tpng '%s' -o '%s-%s.png'", path, prefix, kind);
        if (system(cmd) == 0)
            printf("rendered %s-%s.png\n", prefix, kind);
    } else {
        printf("graphviz not installed: render with  dot -Tpng %s -o %s-%s.png\n", path, prefix, kind);
    }
    return nodes;
}

int main(int argc, char **argv)
{
    const char *prefix = argc > 1 ? argv[1] : "refgraph";
    thing *session, *user, *cart;

    if (ft_init(NULL) != 0)
        return 1;
    session = make(&session_type);
    user = make(&user_type);
    cart = make(&cart_type);
    link_to(session, 0, user);
    link_to(session, 1, cart);
    link_to(cart, 0, session); /* the cycle */
    for (int i = 1; i < 3; i++) {
        thing *item = make(&item_type);

        link_to(cart, i, item);
        ft_decref(item);
    }
    printf("most common types:\n");
    ft_gc_show_most_common_types(stdout, 5);
    write_dot(prefix, "refs", session, 3, FT_GC_DOT_REFS);
    write_dot(prefix, "backrefs", cart, 2, FT_GC_DOT_BACKREFS);

    /* Drop our references: only the cycle keeps the objects now. */
    ft_decref(user);
    ft_decref(cart);
    ft_decref(session);
    printf("collected %ld unreachable objects\n", (long)ft_gc_collect(2));
    ft_fini();
    return 0;
}
