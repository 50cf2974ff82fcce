/* src/pipe.h - the private side of rill_pipe, for the loop bridge (rill_pipe_stream).
 *
 * A loop thread must never sleep inside a pipe call, and it learns about the other end's
 * progress only through rill_loop_post.  So the bridge gets three things here:
 *   - calls that never wait, whatever the pipe's blocking modes are (the thread on the
 *     other end keeps its own modes);
 *   - a one-shot readiness hook: rill__pipe_watch arms it, the pipe calls it once when the
 *     state changes, and the hook posts a wake-up to the loop;
 *   - a zero-copy reader path (peek, then consume) that lets the loop hand the pipe's own
 *     memory to READ handlers and framing. */
#ifndef RILL_PIPE_PRIV_H
#define RILL_PIPE_PRIV_H

#include "internal.h"

enum {
    RILL__PIPE_READABLE = 1u, /* data, EOF or the reader's close: a read would not wait */
    RILL__PIPE_WRITABLE = 2u, /* under bsize, EOF written or closed: a write would not wait */
};

/* The hook runs on whichever thread changed the pipe, with the pipe's lock held, so that
 * once rill__pipe_set_hook(p, NULL, NULL) returns no call is running or will start and the
 * bridge may free `arg`.  Holding the lock means the hook must not call any rill_pipe
 * function and must not block; rill_loop_post is what it is for (lock order: pipe, then
 * the loop's post queue; the loop never calls into a pipe while holding that queue). */
typedef void rill__pipe_hook(rill_pipe *p, unsigned events, void *arg);

/* Installs the pipe's single hook (NULL removes it) and disarms every event. */
void rill__pipe_set_hook(rill_pipe *p, rill__pipe_hook *fn, void *arg);
/* Returns which of `events` hold now.  Those that do not are armed: the hook runs once
 * for each of them when it becomes true (then that event is disarmed).  Checking and
 * arming under one lock is what makes a lost wake-up impossible. */
unsigned rill__pipe_watch(rill_pipe *p, unsigned events);

/* rill_pipe_read / rill_pipe_write / rill_pipe_write_bytes that never wait: RILL_EAGAIN
 * where the public calls would sleep. */
ssize_t rill__pipe_read_nb(rill_pipe *p, void *buf, size_t len);
ssize_t rill__pipe_write_nb(rill_pipe *p, const void *data, size_t len);
int rill__pipe_write_bytes_nb(rill_pipe *p, rill_bytes *b);

/* The contiguous run at the front of the buffer, without consuming it: its length (> 0)
 * with *data set, 0 at EOF, RILL_EAGAIN when empty, RILL_ECLOSED after rill_pipe_close.
 * *data stays valid until the same thread calls rill__pipe_consume or rill_pipe_close:
 * writers only append, so this holds as long as the pipe has a single reader. */
ssize_t rill__pipe_peek(rill_pipe *p, const char **data);
/* Drops n bytes (at most rill_pipe_buffered) from the front; counts as a read for the
 * reader notification and wakes writers. */
void rill__pipe_consume(rill_pipe *p, size_t n);

#endif
