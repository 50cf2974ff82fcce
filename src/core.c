/* src/core.c - process-wide hooks: the allocator every allocation goes through, the log
 * sink, and the version string. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* ---- allocator ------------------------------------------------------------------------ */

static const rill_allocator default_alloc = {malloc, realloc, free};

/* The installed allocator is a copy (callers may pass a stack struct).  The hook contract
 * says it is set before any other call, so writing the copy cannot race with readers; the
 * pointer is still atomic so a reader on another thread sees either the old table or the
 * new one, complete, and thread sanitizers agree. */
static rill_allocator user_alloc;
static _Atomic(const rill_allocator *) current = &default_alloc;

static const rill_allocator *alloc_get(void)
{
    return atomic_load_explicit(&current, memory_order_acquire);
}

int rill_set_allocator(const rill_allocator *a)
{
    if (!a) {
        atomic_store_explicit(&current, &default_alloc, memory_order_release);
        return 0;
    }
    if (!a->malloc || !a->realloc || !a->free)
        return RILL_EINVAL;
    user_alloc = *a;
    atomic_store_explicit(&current, &user_alloc, memory_order_release);
    return 0;
}

/* A zero size is bumped to one byte: malloc(0) may return NULL, which callers would take
 * for a failure.  A user allocator need not set errno, so failures set it here. */
void *rill__malloc(size_t n)
{
    void *p = alloc_get()->malloc(n ? n : 1);
    if (!p)
        errno = ENOMEM;
    return p;
}

void *rill__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = rill__malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* Zero is bumped to one byte here too: realloc(p, 0) is implementation-defined. */
void *rill__realloc(void *p, size_t n)
{
    void *q = alloc_get()->realloc(p, n ? n : 1);
    if (!q)
        errno = ENOMEM;
    return q;
}

void rill__free(void *p)
{
    if (p)
        alloc_get()->free(p);
}

char *rill__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = rill__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- log ------------------------------------------------------------------------------ */

typedef void log_fn(int level, const char *msg, void *arg);

/* fn and arg change together, so they sit behind one mutex; rill__log copies the pair and
 * calls the hook outside the lock, which lets a hook call rill_set_log itself. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_fn *log_hook;
static void *log_arg;

void rill_set_log(log_fn *fn, void *arg)
{
    pthread_mutex_lock(&log_lock);
    log_hook = fn;
    log_arg = fn ? arg : NULL;
    pthread_mutex_unlock(&log_lock);
}

/* The default sink: warnings and errors only, one line each on stderr. */
static void log_default(int level, const char *msg)
{
    if (level <= RILL_LOG_WARN)
        fprintf(stderr, "rill: %s: %s\n", level == RILL_LOG_ERROR ? "error" : "warning", msg);
}

void rill__log(int level, const char *fmt, ...)
{
    int saved = errno; /* logging sits in error paths; the caller's errno must survive */
    pthread_mutex_lock(&log_lock);
    log_fn *fn = log_hook;
    void *arg = log_arg;
    pthread_mutex_unlock(&log_lock);
    if (fn || level <= RILL_LOG_WARN) {
        char msg[1024]; /* longer lines are cut: a log line must never allocate */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (fn)
            fn(level, msg, arg);
        else
            log_default(level, msg);
    }
    errno = saved;
}

/* ---- version -------------------------------------------------------------------------- */

#define STR_(x) #x
#define STR(x) STR_(x)

const char *rill_version(void)
{
    return STR(RILL_VERSION_MAJOR) "." STR(RILL_VERSION_MINOR) "." STR(RILL_VERSION_PATCH);
}
