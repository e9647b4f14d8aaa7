/* ft_ck.h - the one place ConcurrencyKit is included.
 *
 * CK_USE_CC_BUILTINS makes ck's atomics compiler builtins, which
 * ThreadSanitizer understands; its hand-written asm would be invisible to it. */
#ifndef FT_CK_H
#define FT_CK_H

#ifndef FT_BUILDING
#error "ft_ck.h is private to the ftrt library"
#endif

#define CK_USE_CC_BUILTINS 1
#include <ck_backoff.h>
#include <ck_bitmap.h>
#include <ck_pr.h>

#endif /* FT_CK_H */
