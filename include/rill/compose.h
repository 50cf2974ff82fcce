/* rill/compose.h - GIO-style duplex streams made of two halves, the pending flag,
 * custom transports and file streams. */
#ifndef RILL_COMPOSE_H
#define RILL_COMPOSE_H

#include "stream.h"

/* One duplex stream that reads from `in` and writes to `out` (GIO's simple IO stream).
 * The composed stream takes over the caller's references to both halves; closing it
 * closes both; an error on either half reaches its ERROR handlers.  NULL with errno
 * EINVAL (NULL half, halves of another loop) or ENOMEM (the halves stay the caller's). */
RILL_API rill_stream *rill_stream_compose(rill_loop *loop, rill_stream *in, rill_stream *out);
/* The half that reads (the stream itself unless composed).  Borrowed. */
RILL_API rill_stream *rill_stream_input_stream(rill_stream *s);
/* The half that writes (the stream itself unless composed).  Borrowed. */
RILL_API rill_stream *rill_stream_output_stream(rill_stream *s);

/* The pending flag (GIO): set while an operation that cannot overlap runs.
 * RILL_EPENDING when already set, RILL_ECLOSED when closed. */
RILL_API int rill_stream_set_pending(rill_stream *s);
RILL_API void rill_stream_clear_pending(rill_stream *s);
RILL_API bool rill_stream_has_pending(const rill_stream *s);

/* A user transport made of blocking calls; rill runs them on the loop's thread pool, one
 * at a time per direction.  read returns bytes (0 = EOF) or a RILL_E* code; write returns
 * bytes written or a code; shutdown / close return 0 or a code (any may be NULL). */
typedef struct {
    ssize_t (*read)(void *impl, void *buf, size_t len);
    ssize_t (*write)(void *impl, const void *buf, size_t len);
    int (*shutdown)(void *impl);
    int (*close)(void *impl);
} rill_transport_ops;

/* A stream over a custom transport; ops must outlive it; impl is passed to every op and
 * close(impl) runs once when the stream closes.  NULL with errno EINVAL, ENOMEM. */
RILL_API rill_stream *rill_stream_new_custom(rill_loop *loop, const rill_transport_ops *ops,
                                             void *impl);
/* A stream over a regular file (GIO's file IO stream): open(2) flags and mode; reads and
 * writes run on the thread pool in order; O_APPEND is honoured; EOF at end of file.
 * Errors of open(2) come back as NULL with errno set (ENOENT, EACCES, ...). */
RILL_API rill_stream *rill_file_open(rill_loop *loop, const char *path, int flags, int mode);

#endif
