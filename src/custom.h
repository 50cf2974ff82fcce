/* src/custom.h - the pool transport of custom.c: streams whose blocking calls run on the
 * loop's thread pool.  file.c builds file streams on it; compose.c (close_async) waits
 * for the user's close call through it. */
#ifndef RILL_CUSTOM_H
#define RILL_CUSTOM_H

#include "internal.h"

enum {
    RILL__POOL_CUSTOM = 0, /* read and write may run at the same time (one of each) */
    RILL__POOL_FILE = 1,   /* one call at a time: reads and writes share the file offset */
};

/* A stream over ops/impl (ops must outlive it).  sflags: RILL__S_READABLE / _WRITABLE.
 * fd: reported by rill_stream_fd (-1: none); the transport never polls it.  NULL with
 * errno ENOMEM; then ops->close is not called: impl stays the caller's. */
rill_stream *rill__pool_stream(rill_loop *loop, const rill_transport_ops *ops, void *impl,
                               uint32_t sflags, int kind, int fd);

/* After s closed: calls fn(arg, status) on the loop thread when the transport's close
 * call has returned (status: its result).  0, or RILL_EINVAL when s is not a pool stream
 * or that call already returned (its error, if any, is then in rill_stream_error). */
int rill__pool_close_wait(rill_stream *s, void (*fn)(void *arg, int status), void *arg);

#endif
