/* rill/pipe.h - a thread-safe in-memory byte pipe (pyslet's Pipe) and a buffered
 * wrapper that makes the start of a stream peekable and, when small, seekable. */
#ifndef RILL_PIPE_H
#define RILL_PIPE_H

#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"
#include "stream.h"

typedef struct rill_pipe rill_pipe;
typedef struct rill_bufwrap rill_bufwrap;

typedef struct {
    size_t bsize;       /* buffer size, a guide (0: 8192) */
    bool rnonblock;     /* reads return RILL_EAGAIN instead of waiting */
    bool wnonblock;     /* writes return RILL_EAGAIN instead of waiting */
    int64_t timeout_ms; /* how long blocking calls wait (0: forever; -1: forever) */
    const char *name;   /* used in messages (copied) */
} rill_pipe_opts;

RILL_API rill_pipe *rill_pipe_new(const rill_pipe_opts *opts);
RILL_API ssize_t rill_pipe_write(rill_pipe *p, const void *data, size_t len);
RILL_API int rill_pipe_write_bytes(rill_pipe *p, rill_bytes *b);
RILL_API int rill_pipe_write_eof(rill_pipe *p);
RILL_API int rill_pipe_flush(rill_pipe *p);
RILL_API ssize_t rill_pipe_read(rill_pipe *p, void *buf, size_t len);
RILL_API ssize_t rill_pipe_readall(rill_pipe *p, rill_bytes **out);
RILL_API ssize_t rill_pipe_readmatch(rill_pipe *p, const void *match, size_t mlen, void *out,
                                     size_t cap);
RILL_API ssize_t rill_pipe_canwrite(rill_pipe *p);
RILL_API bool rill_pipe_canread(rill_pipe *p);
RILL_API size_t rill_pipe_buffered(rill_pipe *p);
RILL_API bool rill_pipe_is_empty(rill_pipe *p);
RILL_API int rill_pipe_write_wait(rill_pipe *p, int64_t timeout_ms);
RILL_API int rill_pipe_flush_wait(rill_pipe *p, int64_t timeout_ms);
RILL_API int rill_pipe_read_wait(rill_pipe *p, int64_t timeout_ms);
RILL_API void rill_pipe_set_rblocking(rill_pipe *p, bool on);
RILL_API bool rill_pipe_rblocking(rill_pipe *p);
RILL_API void rill_pipe_set_wblocking(rill_pipe *p, bool on);
RILL_API bool rill_pipe_wblocking(rill_pipe *p);
RILL_API void rill_pipe_set_reader_notify(rill_pipe *p, void (*fn)(void *), void *arg);
RILL_API const char *rill_pipe_name(const rill_pipe *p);
RILL_API void rill_pipe_close(rill_pipe *p);
RILL_API void rill_pipe_free(rill_pipe *p);
RILL_API rill_stream *rill_pipe_stream(rill_loop *loop, rill_pipe *p, bool read_end);

RILL_API rill_bufwrap *rill_bufwrap_new(ssize_t (*read)(void *src, void *buf, size_t len),
                                        void *src, size_t buffsize);
RILL_API ssize_t rill_bufwrap_peek(rill_bufwrap *w, size_t n, const char **out);
RILL_API ssize_t rill_bufwrap_read(rill_bufwrap *w, void *buf, size_t len);
RILL_API bool rill_bufwrap_seekable(const rill_bufwrap *w);
RILL_API int64_t rill_bufwrap_length(const rill_bufwrap *w);
RILL_API int64_t rill_bufwrap_seek(rill_bufwrap *w, int64_t off, int whence);
RILL_API void rill_bufwrap_free(rill_bufwrap *w);

#endif
