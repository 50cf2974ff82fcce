/* rill/loop.h - the event loop: run modes, deferred calls, cross-thread posts, the thread
 * pool and timers.  A loop is used from one thread; rill_loop_post is the exception. */
#ifndef RILL_LOOP_H
#define RILL_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

typedef struct rill_loop rill_loop;
typedef struct rill_timer rill_timer;

typedef struct {
    const char *backend;        /* "epoll", "poll"; NULL: env RILL_BACKEND, else the best */
    unsigned threads;           /* thread-pool size; 0: 4 (created on first use) */
    uint64_t stream_timeout_ms; /* default inactivity timeout of socket streams; 0: 15000;
                                   RILL_NEVER: none */
} rill_loop_opts;

typedef enum {
    RILL_RUN_DEFAULT = 0, /* until nothing active is left, or rill_loop_stop */
    RILL_RUN_ONCE,        /* one iteration, waiting for I/O if nothing is ready; it may
                             end with no callback run (a signal, an internal wake-up) */
    RILL_RUN_NOWAIT,      /* one iteration without waiting */
} rill_run_mode;

/* A new loop.  opts NULL: defaults.  NULL with errno EINVAL for an unknown backend,
 * ENOSYS for one this machine lacks, ENOMEM, or the poller's own error.  The loop's fds
 * are close-on-exec; a child made by fork(2) must not use the parent's loops. */
RILL_API rill_loop *rill_loop_new(const rill_loop_opts *opts);
/* The process-wide loop, created on first call (thread-safe); NULL and errno on failure.
 * rill_loop_free on it is allowed; the next call then makes a new one. */
RILL_API rill_loop *rill_loop_default(void);
/* Runs the loop.  Returns 0, or RILL_EBUSY when called while it already runs, RILL_EINVAL
 * for a bad mode.  DEFAULT returns when no handle, timer, deferred call or pool work is
 * active, or after rill_loop_stop.  While it runs, SIGPIPE is blocked in this thread. */
RILL_API int rill_loop_run(rill_loop *loop, rill_run_mode mode);
/* Makes the running rill_loop_run return after the current iteration.  Loop thread only. */
RILL_API void rill_loop_stop(rill_loop *loop);
RILL_API bool rill_loop_is_running(const rill_loop *loop);
/* Frees the loop and joins its thread pool.  RILL_EBUSY (nothing freed) while streams,
 * servers, timers, deferred calls or pool work are still open; RILL_EINVAL for NULL. */
RILL_API int rill_loop_free(rill_loop *loop);
/* The monotonic clock in ms, cached once per iteration. */
RILL_API uint64_t rill_loop_now(const rill_loop *loop);
/* Re-reads the clock into the cache. */
RILL_API void rill_loop_update_time(rill_loop *loop);
/* "epoll" or "poll". */
RILL_API const char *rill_loop_backend(const rill_loop *loop);

/* Runs fn(arg) on the loop thread in the next iteration, never inside this call.
 * Lower priority runs first; equal priorities in call order.  Loop thread only.
 * Errors: RILL_EINVAL (NULL), RILL_ENOMEM. */
RILL_API int rill_loop_defer(rill_loop *loop, int priority, void (*fn)(void *), void *arg);
/* Runs fn(arg) on the loop thread soon.  Safe from any thread, including signal-free
 * worker threads; each call runs exactly once, in order per posting thread.
 * Errors: RILL_EINVAL, RILL_ENOMEM. */
RILL_API int rill_loop_post(rill_loop *loop, void (*fn)(void *), void *arg);
/* Runs work(arg) on the loop's thread pool, then done(arg, status) on the loop thread
 * (status 0, or RILL_ECANCELED when the loop is freed first - it cannot be, see
 * rill_loop_free).  Errors: RILL_EINVAL, RILL_ENOMEM, RILL_EAGAIN (no thread). */
RILL_API int rill_loop_work(rill_loop *loop, void (*work)(void *), void (*done)(void *, int status),
                            void *arg);

/* Starts a timer: cb runs `after` ms from now, then every `repeat` ms if repeat > 0.
 * A one-shot timer frees itself after cb returns; a repeating one lives until
 * rill_timer_stop.  Timers with equal deadlines fire in start order (a repeating timer's
 * next run counts as started when its cb returns).  A timer started during the loop's
 * pass over due timers (from a callback), even with after 0, waits for the next pass.
 * NULL with errno EINVAL or ENOMEM. */
RILL_API rill_timer *rill_timer_start(rill_loop *loop, uint64_t after, uint64_t repeat,
                                      void (*cb)(rill_timer *, void *), void *arg);
/* Stops and frees the timer.  Safe inside its own callback or another timer's; calling it
 * on a one-shot timer after that has fired is a use-after-free.  NULL is a no-op. */
RILL_API void rill_timer_stop(rill_timer *t);

#endif
