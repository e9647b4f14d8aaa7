/* critical_section.c - per-object critical sections (PEP 703).
 *
 * A section locks an object's ob_mutex (or two, in address order). The
 * thread's sections form a stack through ft_tls_head.critical_section.
 * Guarantee: two threads cannot deadlock through sections. A thread that
 * must wait (a contended lock parks with detach, or a blocking region) first
 * suspends ALL its sections, unlocking their mutexes; when it resumes, only
 * the innermost section is re-locked, the outer ones being re-locked as the
 * inner ones end. So a thread never waits while holding a section's lock,
 * except for the first lock of a two-object section while it takes the
 * second; those are always taken in address order, hence no cycle.
 *
 * A section is pushed BEFORE its lock is taken, with no mutex recorded, so a
 * park during the lock (which suspends and then resumes the innermost
 * section) finds nothing to re-lock; the mutexes are recorded once held.
 * Re-entering the object the innermost section already holds locks nothing.
 *
 * The uncontended one-object begin/end are inline in ftrt/lock.h (push + one
 * CAS; one CAS + pop). The inline begin tries the CAS before looking for
 * re-entry: a CAS on a mutex this thread holds fails without writing, and
 * the slow path below then finds it held by the enclosing section. */
#include "lock.h"

#include "ftrt/object.h"

#include <stddef.h>

_Static_assert(offsetof(ft_object, ob_mutex) == FT_OBJECT_MUTEX_OFFSET,
               "FT_OBJECT_MUTEX_OFFSET in ftrt/lock.h must match ft_object.ob_mutex");

static ft_mutex *mutex_of(void *obj, const char *call)
{
    FT_CHECK(obj != NULL, "%s: NULL object (ft_object)", call);
    /* ft_mutex is a struct of one _Atomic uint8_t, laid out as ob_mutex. */
    return (ft_mutex *)(void *)&((ft_object *)obj)->ob_mutex;
}

static bool top_holds(const ft_critical_section *top, const ft_mutex *m)
{
    return top != NULL && !top->suspended && (top->m1 == m || top->m2 == m);
}

static void push(ft_critical_section *cs)
{
    cs->prev = ft_tls_head.critical_section;
    cs->m1 = NULL;
    cs->m2 = NULL;
    cs->suspended = false;
    ft_tls_head.critical_section = cs;
}

/* The inline ft_critical_section_begin has pushed cs (no mutex recorded) and
 * its CAS failed: either the enclosing section holds the mutex (re-entry:
 * lock nothing), or another thread does (wait; a park suspends all sections,
 * cs included, which records nothing yet). obj == NULL: not pushed, fatal. */
void ft_critical_section_begin_slow(ft_critical_section *cs, void *obj)
{
    ft_mutex *m = mutex_of(obj, "ft_critical_section_begin");

    if (top_holds(cs->prev, m))
        return;
    ft_mutex_lock(m);
    cs->m1 = m;
}

void ft_critical_section_begin2(ft_critical_section *cs, void *a, void *b)
{
    ft_mutex *ma = mutex_of(a, "ft_critical_section_begin2");
    ft_mutex *mb = mutex_of(b, "ft_critical_section_begin2");
    ft_mutex *lo = (uintptr_t)ma < (uintptr_t)mb ? ma : mb;
    ft_mutex *hi = lo == ma ? mb : ma;
    ft_critical_section *top = ft_tls_head.critical_section;

    if (ma == mb) {
        push(cs);
        if (!top_holds(cs->prev, ma)) {
            ft_mutex_lock(ma);
            cs->m1 = ma;
        }
        return;
    }
    if (top_holds(top, lo) && top_holds(top, hi)) {
        push(cs);
        return;
    }
    push(cs);
    ft_mutex_lock(lo);
    ft_mutex_lock(hi);
    cs->m1 = lo;
    cs->m2 = hi;
}

static void unlock_section(ft_critical_section *cs)
{
    if (cs->m2 != NULL)
        ft_mutex_unlock(cs->m2);
    if (cs->m1 != NULL)
        ft_mutex_unlock(cs->m1);
}

/* Everything the inline ft_critical_section_end leaves out: misuse (cs not
 * innermost), a suspended section, two mutexes, or a re-entered section that
 * holds none. */
void ft_critical_section_end_slow(ft_critical_section *cs)
{
    FT_CHECK(ft_tls_head.critical_section == cs,
             "ft_critical_section_end: section %p is not the innermost one of this thread (ft_critical_section)",
             (void *)cs);
    if (!cs->suspended)
        unlock_section(cs);
    ft_tls_head.critical_section = cs->prev;
    if (cs->prev != NULL && cs->prev->suspended)
        fti_critical_section_resume_top(&ft_tls_head);
}

void ft_critical_section_resume_slow(void)
{
    fti_critical_section_resume_top(&ft_tls_head);
}

void fti_critical_section_suspend_all(ft_thread_head *head)
{
    for (ft_critical_section *cs = head->critical_section; cs != NULL; cs = cs->prev) {
        if (cs->suspended)
            continue;
        unlock_section(cs);
        cs->suspended = true;
    }
}

/* True while this thread re-locks a suspended section: a park inside does
 * not resume again from its after-park hook (owner only). */
static _Thread_local bool resuming;

void fti_critical_section_resume_top(ft_thread_head *head)
{
    ft_critical_section *cs = head->critical_section;

    if (resuming || cs == NULL || !cs->suspended)
        return;
    /* Taken with detach: a park here suspends nothing new (the section is
     * still marked suspended) and does not recurse (resuming). m1 < m2: the
     * same order as at begin. */
    resuming = true;
    if (cs->m1 != NULL)
        ft_mutex_lock(cs->m1);
    if (cs->m2 != NULL)
        ft_mutex_lock(cs->m2);
    cs->suspended = false;
    resuming = false;
}
