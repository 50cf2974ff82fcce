/* rill/stream.h - the one stream type: events, reading, the write queue, close rules,
 * inactivity timeout and framing.  Every transport (fd, TCP, Unix, TTY, file, pipe,
 * custom, composed) is a rill_stream.  Streams belong to one loop and its thread. */
#ifndef RILL_STREAM_H
#define RILL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "bytes.h"
#include "loop.h"

typedef struct rill_stream rill_stream;
typedef struct rill_sub rill_sub;
typedef struct rill_regex rill_regex;
typedef struct rill_cancel rill_cancel;

typedef enum {
    RILL_EV_READ,    /* data, len: bytes read (borrowed: valid only during the handler) */
    RILL_EV_WRITE,   /* len: bytes of writes the transport accepted (try_write returns its own) */
    RILL_EV_DRAIN,   /* the write queue fell to the low water mark (default: empty) */
    RILL_EV_CLOSE,   /* the last event; err: the stream's error or 0 */
    RILL_EV_ERROR,   /* err: the code; with no ERROR handler the stream closes */
    RILL_EV_TIMEOUT, /* inactivity timeout; the stream closes after the handlers */
    RILL_EV_EOF,     /* the peer finished sending; with no EOF handler the stream closes
                        gracefully, with one it stays open for writing */
    RILL_EV_CONNECT, /* a client connection is up */
    RILL_EV_HANDLE,  /* handle: a stream received over IPC (the handler may keep it with
                        rill_stream_ref; otherwise it is closed after the handlers) */
    RILL_EV__COUNT
} rill_event_type;

typedef struct {
    rill_event_type type;
    const char *data;
    size_t len;
    int err;
    rill_stream *handle;
} rill_event;

typedef void rill_handler(rill_stream *s, const rill_event *ev, void *arg);
/* Completion of a write, shutdown or close: status 0 or a RILL_E* code. */
typedef void rill_done_fn(rill_stream *s, int status, void *arg);
/* Completion of a framing request: data/len is the frame (borrowed), or on error
 * (RILL_EOF, RILL_ENOBUFS, RILL_ECANCELED) the bytes consumed (possibly none). */
typedef void rill_frame_fn(rill_stream *s, int status, const char *data, size_t len, void *arg);

/* Subscribes h to an event; handlers run in subscription order.  Returns a handle for
 * rill_stream_off, or NULL (errno EINVAL, ENOMEM).  Allowed inside handlers; a handler
 * added during an event runs from the next event on. */
RILL_API rill_sub *rill_stream_on(rill_stream *s, rill_event_type ev, rill_handler *h, void *arg);
/* As rill_stream_on, for the next event only. */
RILL_API rill_sub *rill_stream_once(rill_stream *s, rill_event_type ev, rill_handler *h, void *arg);
/* Unsubscribes; allowed from any handler, for itself or others.  NULL is a no-op. */
RILL_API void rill_stream_off(rill_stream *s, rill_sub *sub);
RILL_API bool rill_stream_has_subscribers(const rill_stream *s, rill_event_type ev);

/* Starts reading: READ events (or framing requests) from now on.  Idempotent.
 * RILL_ECLOSED on a closed stream, RILL_EINVAL on a write-only one. */
RILL_API int rill_stream_start(rill_stream *s);
/* Stops reading; bytes stay in the kernel.  Idempotent. */
RILL_API int rill_stream_stop(rill_stream *s);

/* Writes data (copied when it cannot be written at once).  cb (may be NULL) runs exactly
 * once after the bytes were handed to the kernel, or with RILL_ECANCELED when the stream
 * closes first; completions come in order and never inside this call.  Returns 0, 1 when
 * the queue reached the high water mark (wait for DRAIN), or RILL_ECLOSED, RILL_EPIPE
 * (after shutdown), RILL_EINVAL, RILL_ENOMEM - and then cb never runs. */
RILL_API int rill_stream_write(rill_stream *s, const void *data, size_t len, rill_done_fn *cb,
                               void *arg);
/* As rill_stream_write for several buffers, written as one. */
RILL_API int rill_stream_writev(rill_stream *s, const struct iovec *iov, size_t n,
                                rill_done_fn *cb, void *arg);
/* Writes b without copying; the stream holds a reference until it is written. */
RILL_API int rill_stream_write_bytes(rill_stream *s, rill_bytes *b, rill_done_fn *cb, void *arg);
/* Writes data plus the stream `send` (its fd, SCM_RIGHTS) on an IPC stream.  `send` stays
 * the caller's (a duplicate of its fd travels); the peer gets a HANDLE event before the
 * READ of these bytes.  On a client still connecting both wait in the queue.
 * RILL_EINVAL on a non-IPC stream or when `send` has no fd; len must be > 0. */
RILL_API int rill_stream_write_handle(rill_stream *ipc, const void *data, size_t len,
                                      rill_stream *send, rill_done_fn *cb, void *arg);
/* Writes what the transport takes now, queueing nothing (and with no WRITE event).  Bytes
 * written, RILL_EAGAIN when none could be (or writes are queued), RILL_ECLOSED, or the
 * transport's error. */
RILL_API ssize_t rill_stream_try_write(rill_stream *s, const void *data, size_t len);
/* Shuts down the write half after the queued writes; the stream still reads.  cb runs
 * once.  RILL_ECLOSED, RILL_EPENDING (already shutting down), RILL_ENOMEM. */
RILL_API int rill_stream_shutdown(rill_stream *s, rill_done_fn *cb, void *arg);
/* Closes now: queued writes and framing requests complete with RILL_ECANCELED, then
 * CLOSE fires (deferred).  Idempotent; safe inside any handler.  NULL is a no-op. */
RILL_API void rill_stream_close(rill_stream *s);
/* Closes after the queued writes are written (or fail); writes made meanwhile join the
 * queue and go out first.  Idempotent. */
RILL_API void rill_stream_close_gracefully(rill_stream *s);
/* GIO's close_async: flushes, closes, and reports the first error (or 0) to cb.  The
 * stream is closed whatever happens; when `cancel` fires first the flush is abandoned and
 * cb gets RILL_ECANCELED.  Completions ready in one iteration run lower priority first.
 * Uses the pending flag: RILL_EPENDING while another pending operation runs.  A closed
 * stream completes with 0 (closing twice is not an error). */
RILL_API int rill_stream_close_async(rill_stream *s, int priority, rill_cancel *cancel,
                                     rill_done_fn *cb, void *arg);
/* Detaches and returns the fd (left non-blocking and CLOEXEC); the stream closes
 * (CLOSE fires as usual) without closing the fd, which is now the caller's.
 * RILL_ECLOSED, RILL_EINVAL (no fd). */
RILL_API int rill_stream_steal_fd(rill_stream *s);

/* Framing requests: FIFO, served before READ handlers; unconsumed bytes stay buffered.
 * They start reading if needed.  Errors: RILL_ECLOSED, RILL_EINVAL, RILL_ENOMEM, and
 * RILL_EPENDING while the stream's pending flag is set (a splice or close_async owns the
 * stream: see rill_stream_set_pending); cb then never runs.  A frame longer than the max
 * buffer fails with RILL_ENOBUFS and consumes nothing; at EOF cb gets RILL_EOF with the
 * partial bytes (consumed).
 *
 * read_bytes: the frame is what has arrived, up to max bytes and up to the max buffer
 * (so it never fails with RILL_ENOBUFS). */
RILL_API int rill_stream_read_bytes(rill_stream *s, size_t max, rill_frame_fn *cb, void *arg);
RILL_API int rill_stream_read_exactly(rill_stream *s, size_t n, rill_frame_fn *cb, void *arg);
/* The frame ends after the delimiter (included). */
RILL_API int rill_stream_read_until(rill_stream *s, const void *delim, size_t dlen,
                                    rill_frame_fn *cb, void *arg);
/* The frame ends at the end of the first match; re must outlive the request. */
RILL_API int rill_stream_read_until_regex(rill_stream *s, const rill_regex *re, rill_frame_fn *cb,
                                          void *arg);
/* Compiles a PCRE2 pattern (JIT when available).  NULL on error, with *err the PCRE2
 * error code (positive: use rill_regex_error_text) and *err_offset its offset; errno
 * EINVAL.  err / err_offset may be NULL. */
RILL_API rill_regex *rill_regex_new(const char *pattern, int *err, size_t *err_offset);
/* PCRE2's message for an error code from rill_regex_new, copied into buf. */
RILL_API int rill_regex_error_text(int err, char *buf, size_t cap);
RILL_API void rill_regex_free(rill_regex *re);

/* Inactivity timeout in ms (0 = never): TIMEOUT fires, then the stream closes.  It counts
 * on the loop's clock (rill_loop_now, read once per iteration) from the last bytes read
 * or handed to the kernel, or the last call of this function, which restarts it even
 * with the same value; inside the TIMEOUT handler it reads 0.  Streams with equal values
 * share a list; a loop holds up to 65,535 values in use at once (one more, or no memory,
 * logs an error and leaves the stream without a timeout). */
RILL_API void rill_stream_set_timeout(rill_stream *s, uint64_t ms);
RILL_API uint64_t rill_stream_timeout(const rill_stream *s);
/* Bound for buffered input while framing (default 1 MiB; 0 restores the default). */
RILL_API void rill_stream_set_max_buffer(rill_stream *s, size_t max);
/* Write-queue water marks (defaults: low 0, high 64 KiB). */
RILL_API void rill_stream_set_watermarks(rill_stream *s, size_t low, size_t high);
RILL_API size_t rill_stream_write_queue_size(const rill_stream *s);

RILL_API bool rill_stream_is_closed(const rill_stream *s);
/* Data or EOF is waiting right now (zero-timeout poll).  An idle connection that reports
 * readable is tainted: the peer closed it or sent something unexpected. */
RILL_API bool rill_stream_is_readable(rill_stream *s);
/* Writes are queued. */
RILL_API bool rill_stream_is_writing(const rill_stream *s);
/* The stream can read / write at all (not closed, not after EOF / shutdown). */
RILL_API bool rill_stream_readable(const rill_stream *s);
RILL_API bool rill_stream_writable(const rill_stream *s);
RILL_API bool rill_stream_ipc(const rill_stream *s);
/* AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for non-sockets. */
RILL_API int rill_stream_family(const rill_stream *s);
/* The fd, or RILL_EINVAL when the stream has none, RILL_ECLOSED when closed. */
RILL_API int rill_stream_fd(const rill_stream *s);
/* The error that ended or broke the stream, or 0. */
RILL_API int rill_stream_error(const rill_stream *s);
RILL_API rill_loop *rill_stream_loop(const rill_stream *s);
RILL_API void rill_stream_set_data(rill_stream *s, void *data);
RILL_API void *rill_stream_data(const rill_stream *s);
/* Adds a reference: the pointer stays valid until the matching unref. */
RILL_API rill_stream *rill_stream_ref(rill_stream *s);
/* Drops a reference.  Dropping the last reference of an open stream closes it first. */
RILL_API void rill_stream_unref(rill_stream *s);

/* Flags for rill_fd_open and rill_stream_pair. */
#define RILL_IPC 0x1u       /* socket streams that carry handles (SCM_RIGHTS) */
#define RILL_READONLY 0x2u  /* rill_fd_open: only read */
#define RILL_WRITEONLY 0x4u /* rill_fd_open: only write */

/* A stream over an open fd (pipe, socketpair, socket, character device); the stream owns
 * it from now on and sets O_NONBLOCK and FD_CLOEXEC.  Direction comes from the fd's access
 * mode unless flags say.  NULL with errno EBADF, EPERM (the poller cannot watch it, e.g. a
 * regular file: use rill_file_open), EINVAL, ENOMEM. */
RILL_API rill_stream *rill_fd_open(rill_loop *loop, int fd, unsigned flags);
/* Two connected streams over a socketpair (RILL_IPC: able to pass handles).
 * 0 or RILL_EINVAL, RILL_EMFILE, RILL_ENOMEM. */
RILL_API int rill_stream_pair(rill_loop *loop, rill_stream *out[2], unsigned flags);

#endif
