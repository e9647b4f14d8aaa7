/* str.c - immutable byte strings with a cached hash, and the intern table.
 *
 * A str never changes after ft_str_from returns, so any thread may read it
 * without a lock. ft_str_intern maps contents to one immortal string:
 *
 *   - The table is a ConcurrencyKit ck_hs in SPMC mode: lookups are lock-free
 *     and run concurrently with one writer; writers serialise on
 *     intern_mutex. A miss re-looks-up under the mutex before inserting, so
 *     two threads interning equal contents get the same pointer (identity).
 *   - A string is made immortal before it is published, so its header is
 *     never written again once another thread can see it.
 *   - ck_hs frees a replaced bucket array with defer=true while readers may
 *     still probe it; we route that to fti_qsbr_free_delayed, so the memory
 *     lives until every attached thread passed a quiescent state. Readers
 *     are attached threads between two safepoints: the QSBR read side.
 *   - ck_hs's stores and loads are compiled in libck (invisible to
 *     ThreadSanitizer). Its put is a release store of the entry and its get
 *     an acquire-ordered load, so we annotate exactly that edge
 *     (fti_tsan_publish before the put, fti_tsan_consume on every string a
 *     reader obtains from the table).
 * Interned strings stay until the process ends (they are immortal; ft_fini
 * only drops the table). */
#include "builtins_int.h"

#include "ft_atomic.h"
#include "ft_ck.h"
#include "ftrt/lock.h"
#include "ftrt/mem.h"
#include "object/object.h"
#include "thread/thread.h"

/* ck_hs is not among the headers ft_ck.h pulls in; ck_pr.h was included
 * there first with CK_USE_CC_BUILTINS, which is what matters. */
#include <ck_hs.h>

#include <string.h>

static size_t str_size_of(const void *self)
{
    return ((const fti_str *)self)->len + 1; /* the inline bytes and their NUL */
}

const ft_type ft_str_type = {
    .name = "str",
    .size = sizeof(fti_str),
    .size_of = str_size_of,
};

uint64_t fti_bytes_hash(const char *bytes, size_t len)
{
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)len;
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        uint64_t chunk;

        memcpy(&chunk, bytes + i, 8);
        h = (h ^ chunk) * UINT64_C(0x100000001b3);
        h ^= h >> 29;
    }
    if (i < len) {
        uint64_t chunk = 0;

        memcpy(&chunk, bytes + i, len - i);
        h = (h ^ chunk) * UINT64_C(0x100000001b3);
        h ^= h >> 29;
    }
    return fti_mix64(h);
}

static fti_str *str_new(const char *bytes, size_t len)
{
    fti_str *s;
    char *inline_bytes;

    if (len > SIZE_MAX / 2)
        return NULL; /* no allocator serves this; avoids len + 1 wrapping */
    s = ft_new_var(&ft_str_type, len + 1);
    if (s == NULL)
        return NULL;
    inline_bytes = (char *)(s + 1);
    if (len > 0)
        memcpy(inline_bytes, bytes, len);
    inline_bytes[len] = '\0';
    s->len = len;
    s->data = inline_bytes;
    s->hash = fti_bytes_hash(bytes, len);
    return s;
}

void *ft_str_from(const char *bytes, size_t len)
{
    FT_ASSERT_ATTACHED();
    FT_CHECK(bytes != NULL || len == 0, "ft_str_from: NULL bytes with length %zu (str)", len);
    return str_new(bytes, len);
}

void *ft_str_from_cstr(const char *cstr)
{
    FT_CHECK(cstr != NULL, "ft_str_from_cstr: NULL string (str)");
    return ft_str_from(cstr, strlen(cstr));
}

static const fti_str *as_str(const void *s, const char *call)
{
    FT_CHECK(s != NULL, "%s: NULL object (expected str)", call);
    FT_CHECK(ft_type_of(s) == &ft_str_type, "%s: object is not a str (%s)", call,
             ft_type_of(s)->name);
    return s;
}

const char *ft_str_data(const void *s)
{
    return as_str(s, "ft_str_data")->data;
}

size_t ft_str_len(const void *s)
{
    return as_str(s, "ft_str_len")->len;
}

uint64_t ft_str_hash(const void *s)
{
    return as_str(s, "ft_str_hash")->hash;
}

bool ft_str_equal(const void *a, const void *b)
{
    const fti_str *x = as_str(a, "ft_str_equal");
    const fti_str *y = as_str(b, "ft_str_equal");

    return x == y || (x->hash == y->hash && x->len == y->len && memcmp(x->data, y->data, x->len) == 0);
}

bool fti_key_equal(const void *a, const void *b)
{
    const ft_type *t = ft_type_of(a);

    if (a == b)
        return true;
    if (t != ft_type_of(b))
        return false;
    if (t == &ft_int_type)
        return ((const fti_int *)a)->value == ((const fti_int *)b)->value;
    return ft_str_equal(a, b);
}

/* ---- intern table ------------------------------------------------------- */

static ck_hs_t intern_table;           /* lookups: any attached thread; writes: intern_mutex */
static _Atomic bool intern_ready;      /* table initialised (set under intern_mutex, release) */
static ft_mutex intern_mutex = FT_MUTEX_INIT;

static void *intern_malloc(size_t size)
{
    return ft_malloc(size);
}

static void intern_free(void *p, size_t size, bool defer)
{
    if (defer)
        fti_qsbr_free_delayed(p, size);
    else
        ft_free(p);
}

static struct ck_malloc intern_allocator = {
    .malloc = intern_malloc,
    .realloc = NULL,
    .free = intern_free,
};

static unsigned long intern_hash_cb(const void *object, unsigned long seed)
{
    (void)seed;
    return (unsigned long)((const fti_str *)object)->hash;
}

/* stored: a string in the table; probe: the string being looked up (a stack
 * probe or a new string). */
static bool intern_compare_cb(const void *stored, const void *probe)
{
    const fti_str *a = stored;
    const fti_str *b = probe;

    /* See the file comment: the entry was published by a put in libck. */
    fti_tsan_consume(a);
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static fti_str *intern_lookup(const fti_str *probe)
{
    fti_str *found;

    /* acquire: pairs with the release store of intern_ready below; the
     * table's initialisation is visible. */
    if (!ft_atomic_load_acquire(&intern_ready))
        return NULL;
    found = ck_hs_get(&intern_table, (unsigned long)probe->hash, probe);
    if (found != NULL)
        fti_tsan_consume(found);
    return found;
}

void *ft_str_intern(const char *bytes, size_t len)
{
    fti_str probe;
    fti_str *s;

    FT_ASSERT_ATTACHED();
    FT_CHECK(bytes != NULL || len == 0, "ft_str_intern: NULL bytes with length %zu (str)", len);
    memset(&probe, 0, sizeof probe);
    probe.len = len;
    probe.data = len > 0 ? bytes : "";
    probe.hash = fti_bytes_hash(probe.data, len);

    s = intern_lookup(&probe);
    if (s != NULL)
        return s;

    ft_mutex_lock(&intern_mutex);
    /* relaxed: intern_ready is only written under intern_mutex, which we hold. */
    if (!ft_atomic_load_relaxed(&intern_ready)) {
        if (!ck_hs_init(&intern_table, CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT, intern_hash_cb,
                        intern_compare_cb, &intern_allocator, 1024, 0)) {
            ft_mutex_unlock(&intern_mutex);
            return NULL;
        }
        /* release: pairs with the acquire in intern_lookup. */
        ft_atomic_store_release(&intern_ready, true);
    }
    s = ck_hs_get(&intern_table, (unsigned long)probe.hash, &probe);
    if (s == NULL) {
        s = str_new(probe.data, len);
        if (s != NULL) {
            ft_set_immortal(s);
            fti_tsan_publish(s);
            if (!ck_hs_put(&intern_table, (unsigned long)s->hash, s)) {
                /* Out of memory growing the table: nobody saw s, but it is
                 * immortal already and stays allocated (a few bytes, on an
                 * out-of-memory path); the caller gets NULL. */
                s = NULL;
            }
        }
    }
    ft_mutex_unlock(&intern_mutex);
    return s;
}

void fti_str_init(void)
{
    /* relaxed: ft_init runs before any thread is attached. */
    ft_atomic_store_relaxed(&intern_ready, false);
}

void fti_str_fini(void)
{
    /* relaxed: ft_fini runs after every other thread detached. */
    if (ft_atomic_load_relaxed(&intern_ready)) {
        ck_hs_destroy(&intern_table);
        ft_atomic_store_relaxed(&intern_ready, false);
    }
}
