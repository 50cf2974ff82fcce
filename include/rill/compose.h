/* rill/compose.h - GIO-style duplex streams made of two halves, the pending flag,
 * custom transports and file streams. */
#ifndef RILL_COMPOSE_H
#define RILL_COMPOSE_H

#include "stream.h"

/* One duplex stream that reads from `in` and writes to `out` (GIO's simple IO stream):
 * stdin plus stdout become one stream.  It reads what `in` reads (READ, framing, EOF)
 * and writes each batch of its queue to `out`; a write completes when `out` has written
 * it.  shutdown shuts `out` down.  The composed stream takes over the caller's references
 * to both halves (do not unref them); closing it closes both now, close_gracefully and
 * close_async flush its queue through `out` first.  An error of either half, or a half
 * closed or timed out under it, reaches its ERROR handlers once (with none, it closes).
 * NULL with errno EINVAL (a NULL half, in == out, halves of another loop), -RILL_ECLOSED
 * (a closed half) or ENOMEM; the halves then stay the caller's. */
RILL_API rill_stream *rill_stream_compose(rill_loop *loop, rill_stream *in, rill_stream *out);
/* The half that reads: the stream itself unless composed, and once a composed stream has
 * closed (its halves go with it).  Borrowed. */
RILL_API rill_stream *rill_stream_input_stream(rill_stream *s);
/* The half that writes, on the same terms.  Borrowed. */
RILL_API rill_stream *rill_stream_output_stream(rill_stream *s);

/* The pending flag (GIO): set while an operation that must not overlap another runs on
 * the stream.  rill_stream_close_async and rill_splice set it for as long as they run, so
 * a second one (or a close_async during a splice) fails with RILL_EPENDING.  Framing
 * requests (read_until and the others) do not take it: they queue in FIFO order and may
 * overlap freely.  set: RILL_EPENDING when already set, RILL_ECLOSED when closed. */
RILL_API int rill_stream_set_pending(rill_stream *s);
RILL_API void rill_stream_clear_pending(rill_stream *s);
RILL_API bool rill_stream_has_pending(const rill_stream *s);

/* A user transport made of blocking calls; rill runs them on the loop's thread pool.
 *   read:     bytes (0 = EOF) or a RILL_E* code.  At most one read runs at a time, and
 *             only while the stream reads; EOF or an error ends reading.
 *   write:    bytes written (may be fewer than len: rill calls again for the rest) or a
 *             code.  One write at a time, in queue order.  A read and a write may run at
 *             the same time on two pool threads (as on a socket): impl must allow that.
 *   shutdown: ends the write half after the queued writes (NULL: nothing to do).
 *   close:    releases impl; called once when the stream closes, after every call in
 *             progress returned, and nothing is called after it.  Its error becomes the
 *             stream's error and close_async's result.  May be NULL.
 * A call that may wait indefinitely (a read with no data, a write with no room) should
 * return RILL_EAGAIN after a while (say 100 ms): rill calls it again while the stream
 * still wants it, and a close never waits longer than that for a blocked call. */
typedef struct {
    ssize_t (*read)(void *impl, void *buf, size_t len);
    ssize_t (*write)(void *impl, const void *buf, size_t len);
    int (*shutdown)(void *impl);
    int (*close)(void *impl);
} rill_transport_ops;

/* A stream over a custom transport, with every stream feature (events, write queue,
 * framing, close rules).  Readable when ops->read is set, writable when ops->write is.
 * ops must outlive the stream; impl is passed to every op.  No inactivity timeout by
 * default.  NULL with errno EINVAL (no loop, no ops, neither read nor write) or ENOMEM
 * (then close is not called: impl stays the caller's). */
RILL_API rill_stream *rill_stream_new_custom(rill_loop *loop, const rill_transport_ops *ops,
                                             void *impl);
/* A stream over a file (GIO's file IO stream): open(2) flags and mode (O_CLOEXEC is
 * added).  Regular files and devices the poller refuses (/dev/null, /dev/zero) are read
 * and written with blocking calls on the thread pool, one call at a time, in the order they were made
 * (reads and writes share the file offset); reading ends with EOF at the end of the file;
 * O_APPEND writes go to the end whoever else writes.  close(2)'s error is close_async's
 * result.  FIFOs, sockets and pollable devices (ttys) are opened without blocking and
 * polled like rill_fd_open's streams (a write-only FIFO without a reader fails with ENXIO).  rill_stream_fd gives
 * the fd.  Errors of open(2) come back as NULL with errno set (ENOENT, EACCES, EEXIST,
 * ...), plus EISDIR for a directory and EINVAL for a NULL loop or path: no stream, no
 * ERROR event. */
RILL_API rill_stream *rill_file_open(rill_loop *loop, const char *path, int flags, int mode);

#endif
