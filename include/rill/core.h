/* rill/core.h - process-wide hooks: allocator, log, version. */
#ifndef RILL_CORE_H
#define RILL_CORE_H

#include <stddef.h>

#include "err.h"

/* The allocator every allocation of the library goes through.  All three functions
 * must be set.  realloc(p, n) follows the C contract (p may be NULL). */
typedef struct {
    void *(*malloc)(size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} rill_allocator;

/* Installs `a` (copied) as the library's allocator; NULL restores malloc/realloc/free.
 * Call it before any other rill call, or after every rill object is gone.
 * Errors: RILL_EINVAL when a function pointer is missing. */
RILL_API int rill_set_allocator(const rill_allocator *a);

enum { RILL_LOG_ERROR = 0, RILL_LOG_WARN = 1, RILL_LOG_INFO = 2, RILL_LOG_DEBUG = 3 };

/* Sends the library's log lines to fn (level, message, arg).  NULL restores the default:
 * warnings and errors printed on stderr.  fn may be called from any thread. */
RILL_API void rill_set_log(void (*fn)(int level, const char *msg, void *arg), void *arg);

/* The library's version, "MAJOR.MINOR.PATCH".  Static string. */
RILL_API const char *rill_version(void);

#define RILL_VERSION_MAJOR 0
#define RILL_VERSION_MINOR 1
#define RILL_VERSION_PATCH 0

/* No timeout, in option fields (unsigned: UINT64_MAX; signed fields use -1). */
#define RILL_NEVER UINT64_MAX

#endif
