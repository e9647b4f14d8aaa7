/* ftrt.h - umbrella header: everything a program using ftrt needs. */
#ifndef FTRT_H
#define FTRT_H

#include "ftrt/common.h"
#include "ftrt/runtime.h"
#include "ftrt/mem.h"
#include "ftrt/thread.h"
#include "ftrt/lock.h"
#include "ftrt/object.h"
#include "ftrt/weakref.h"
#include "ftrt/gc.h"
#include "ftrt/builtins.h"

#endif /* FTRT_H */
