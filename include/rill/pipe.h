/* rill/pipe.h - a thread-safe in-memory byte pipe (pyslet's Pipe) and a buffered
 * wrapper that makes the start of a stream peekable and, when small, seekable. */
#ifndef RILL_PIPE_H
#define RILL_PIPE_H

#include <stdint.h>
#include <sys/types.h>

#include "bytes.h"
#include "stream.h"

/* ---- rill_pipe ------------------------------------------------------------------------
 *
 * A buffer between threads: one side writes, the other reads; no loop is needed.  Every
 * function may be called from any thread.  The pipe works on the reader-closes principle:
 * the writer ends the data with rill_pipe_write_eof, the reader calls rill_pipe_close when
 * it stops reading (early or not), and whoever owns the pipe frees it once neither side
 * uses it any more.
 *
 * Blocking: an end that blocks (the default) sleeps on a condition variable until it can
 * proceed, the other side closes, or the pipe's timeout passes (RILL_ETIMEDOUT).  Before
 * sleeping, a call may spin on a multi-CPU machine while the other side runs on another
 * CPU, because it usually answers sooner than a sleep and wake-up take: for at most 20 us
 * in all, and 100 us more while the other side was just woken and has not run yet.  When
 * the other side runs on the same CPU, a call may instead yield the CPU to it (at most 4
 * times) before sleeping.  A blocked thread uses no CPU after that.  A non-blocking end
 * returns RILL_EAGAIN instead of waiting.  Modes can be changed at any time; a thread
 * sleeping in a call whose end turns non-blocking wakes and returns RILL_EAGAIN.
 *
 * Timeouts of the *_wait calls: a negative value waits forever, 0 uses the pipe's own
 * timeout (rill_pipe_opts.timeout_ms), a positive value is milliseconds. */

typedef struct rill_pipe rill_pipe;
typedef struct rill_bufwrap rill_bufwrap;

typedef struct {
    size_t bsize;       /* buffer size, a guide (0: 8192) */
    bool rnonblock;     /* reads return RILL_EAGAIN instead of waiting */
    bool wnonblock;     /* writes return RILL_EAGAIN instead of waiting */
    int64_t timeout_ms; /* how long blocking calls wait (0: forever; -1: forever) */
    const char *name;   /* used in messages (copied) */
} rill_pipe_opts;

/* A new, empty pipe (NULL opts: every default).  The name appears in log lines; without
 * one the pipe is called "pipe-N".  NULL with errno EINVAL (timeout_ms below -1, bsize
 * above SSIZE_MAX) or ENOMEM (or what pthread initialisation reported). */
RILL_API rill_pipe *rill_pipe_new(const rill_pipe_opts *opts);

/* Copies up to the space left below bsize and returns how many bytes it took (> 0; 0 only
 * for len 0).  A full pipe makes a blocking writer wait for a reader and a non-blocking one
 * get RILL_EAGAIN.  RILL_EPIPE after rill_pipe_write_eof or once the reader closed,
 * RILL_ETIMEDOUT, RILL_ENOMEM (nothing taken). */
RILL_API ssize_t rill_pipe_write(rill_pipe *p, const void *data, size_t len);
/* Queues b without copying: the pipe takes its own reference (the caller keeps its own)
 * and the reader gets the very same memory.  b is accepted whole even when it takes the
 * pipe past bsize, but while bsize or more is already buffered the call waits (blocking)
 * or returns RILL_EAGAIN.  0 on success; RILL_EPIPE, RILL_ETIMEDOUT, RILL_EINVAL (b NULL),
 * RILL_ENOMEM as rill_pipe_write. */
RILL_API int rill_pipe_write_bytes(rill_pipe *p, rill_bytes *b);
/* Marks the end of the data: readers see EOF once the buffer is drained, and every later
 * write fails with RILL_EPIPE.  Wakes sleeping readers.  Calling it twice is harmless.
 * 0, or RILL_EPIPE when the reader already closed. */
RILL_API int rill_pipe_write_eof(rill_pipe *p);
/* Pushes the data to the reader: a blocking writer waits until the buffer is empty
 * (RILL_ETIMEDOUT when it is not, the timeout after the call began), a non-blocking one gets
 * RILL_EAGAIN while data is left.  0, or RILL_EPIPE once the reader closed. */
RILL_API int rill_pipe_flush(rill_pipe *p);

/* Copies up to len buffered bytes into buf, returning as soon as there is at least one:
 * the count, 0 at EOF (or for len 0), RILL_EAGAIN when empty and non-blocking,
 * RILL_ETIMEDOUT, RILL_ECLOSED after rill_pipe_close.  Every read call with len > 0
 * raises the reader flag (rill_pipe_set_reader_notify); len 0 returns 0 at once. */
RILL_API ssize_t rill_pipe_read(rill_pipe *p, void *buf, size_t len);
/* Zero-copy read.  When the front of the buffer is a whole rill_bytes that a writer queued
 * with rill_pipe_write_bytes and it fits in max, *out is that very object (the pipe's
 * reference passes to the caller).  Otherwise *out is a new rill_bytes holding a copy of
 * up to max buffered bytes.  Returns its length; the caller unrefs *out.  At EOF returns 0
 * with *out NULL; errors as rill_pipe_read (and RILL_ENOMEM, nothing consumed), with *out
 * NULL. */
RILL_API ssize_t rill_pipe_read_bytes(rill_pipe *p, size_t max, rill_bytes **out);
/* Reads until EOF and returns every byte as one rill_bytes in *out (the caller unrefs it)
 * and its length.  It always waits, whatever the read mode: returning part of the data
 * would hide that more is coming.  RILL_ETIMEDOUT when no byte arrives for the pipe's
 * timeout; the bytes gathered so far then go back to the front of the pipe, so nothing
 * is lost (so the pipe may then hold far more than bsize).  RILL_ECLOSED, RILL_ENOMEM
 * (gathered bytes put back too).  *out NULL on error; at EOF with nothing left, 0 and an
 * empty rill_bytes. */
RILL_API ssize_t rill_pipe_readall(rill_pipe *p, rill_bytes **out);
/* Reads a line: copies everything up to and including the first occurrence of
 * match[0..mlen) into out and returns its length.  match NULL means "\r\n" (mlen is then
 * ignored).  Waits per the read mode until the match arrives; at EOF without a match it
 * returns what is left (0 when nothing is).  RILL_ENOBUFS, consuming nothing, when bsize
 * bytes are buffered without a match or the line cannot fit in cap.  Also RILL_EAGAIN,
 * RILL_ETIMEDOUT, RILL_ECLOSED, RILL_EINVAL (mlen 0). */
RILL_API ssize_t rill_pipe_readmatch(rill_pipe *p, const void *match, size_t mlen, void *out,
                                     size_t cap);

/* The bytes one non-blocking rill_pipe_write would accept now: bsize minus what is
 * buffered (bytes a reader is copying out at that moment no longer count), or 0 when
 * full (which also clears the reader flag: a writer that sees 0 waits for the
 * notification).  RILL_EPIPE after write_eof or once the reader closed.  With several
 * writers the answer may be stale by the time it is used. */
RILL_API ssize_t rill_pipe_canwrite(rill_pipe *p);
/* True when the next read will not wait: data is buffered, EOF was written (the read will
 * return 0), or the pipe is closed. */
RILL_API bool rill_pipe_canread(rill_pipe *p);
/* Bytes buffered now, those a reader is copying out included: it may exceed bsize after
 * rill_pipe_write_bytes or a timed-out rill_pipe_readall, and while a big read copies
 * out, bsize more may queue behind. */
RILL_API size_t rill_pipe_buffered(rill_pipe *p);
RILL_API bool rill_pipe_is_empty(rill_pipe *p);
/* Waits until a write would not wait (less than bsize buffered, counted as
 * rill_pipe_canwrite counts).  0, RILL_ETIMEDOUT, or RILL_EPIPE after write_eof or once
 * the reader closed.  Ignores the write mode. */
RILL_API int rill_pipe_write_wait(rill_pipe *p, int64_t timeout_ms);
/* Waits until the buffer is empty.  0, RILL_ETIMEDOUT, RILL_EPIPE once the reader
 * closed.  Ignores the write mode. */
RILL_API int rill_pipe_flush_wait(rill_pipe *p, int64_t timeout_ms);
/* Waits until rill_pipe_canread holds.  0 or RILL_ETIMEDOUT.  Ignores the read mode. */
RILL_API int rill_pipe_read_wait(rill_pipe *p, int64_t timeout_ms);

/* Switches the read (write) end between blocking and non-blocking; any thread, any time. */
RILL_API void rill_pipe_set_rblocking(rill_pipe *p, bool on);
RILL_API bool rill_pipe_rblocking(rill_pipe *p);
RILL_API void rill_pipe_set_wblocking(rill_pipe *p, bool on);
RILL_API bool rill_pipe_wblocking(rill_pipe *p);

/* The reader notification (pyslet's rflag), for writers that wait for a reader by their
 * own means (an eventfd, a condition variable, a loop).  The pipe keeps a flag that is set
 * each time the pipe is read and when it is closed, and cleared when rill_pipe_canwrite
 * reports 0.  fn(arg) runs every time the flag is set, on the reading (or closing) thread,
 * after the pipe's lock is released, so it may call rill_pipe functions.  A writer that saw
 * canwrite 0 sleeps until fn wakes it; a wake-up that finds the pipe still full is stale
 * and it sleeps again.  fn NULL removes it.  A change does not wait for a call of the old
 * fn already running on another thread. */
RILL_API void rill_pipe_set_reader_notify(rill_pipe *p, void (*fn)(void *), void *arg);
/* The flag itself, and a way to clear it by hand. */
RILL_API bool rill_pipe_reader_flag(rill_pipe *p);
RILL_API void rill_pipe_clear_reader_flag(rill_pipe *p);

/* The pipe's name (from the options, or "pipe-N").  Valid until rill_pipe_free. */
RILL_API const char *rill_pipe_name(const rill_pipe *p);
/* The reader is done: buffered bytes are discarded (with a RILL_LOG_WARN line naming the
 * pipe when there were any), sleeping readers and writers wake, the reader flag is set,
 * later reads return RILL_ECLOSED and writes RILL_EPIPE.  Idempotent. */
RILL_API void rill_pipe_close(rill_pipe *p);
/* Closes (as rill_pipe_close) and frees.  No other thread may be using the pipe, except
 * one still on its way out of the call whose change the caller saw: a reader may free
 * once it read EOF, a writer once it got RILL_EPIPE from the reader's close (unless that
 * reader's notification uses the pipe).  NULL is a no-op. */
RILL_API void rill_pipe_free(rill_pipe *p);
/* The pipe as a stream of `loop`, used on the loop's thread like any other stream; the
 * loop never waits on the pipe, whatever its blocking modes (those are the threads').
 * Other threads wake the loop through rill_loop_post when they change the pipe.
 *
 * read_end true: the loop is the pipe's reader, and must be its only one while the
 * stream is open.  Threads write with the rill_pipe calls; the stream emits READ with
 * the pipe's own memory (a rill_bytes queued with rill_pipe_write_bytes arrives as that
 * very memory, whole when no framing request is pending), serves framing requests, and
 * reports EOF once rill_pipe_write_eof was called and the data is drained.  Bytes leave
 * the pipe only while the stream reads (rill_stream_start, or framing requests while
 * the max buffer has room): a stopped or slow stream leaves the pipe full and blocking
 * writers wait.  If another party calls rill_pipe_close, the stream gets RILL_ECLOSED.
 *
 * read_end false: the loop writes what threads read.  Writes copy into the pipe up to its
 * bsize; the rest waits in the stream's write queue (water marks, DRAIN) until a reader
 * makes room.  rill_stream_shutdown writes EOF.  RILL_EPIPE once the reader closed.
 *
 * Ownership: the stream does not own the pipe.  Closing a read-end stream closes the pipe
 * as its reader (rill_pipe_close: unread bytes are discarded, writers get RILL_EPIPE);
 * closing a write-end stream writes EOF (rill_pipe_write_eof; bytes still in the
 * stream's queue are cancelled, as for any stream, those already in the pipe stay
 * readable).  The pipe must stay valid until the stream's CLOSE event has fired; free it
 * after that, once no thread uses it.  A pipe serves one stream at a time.
 *
 * NULL with errno EINVAL (loop or p NULL) or ENOMEM. */
RILL_API rill_stream *rill_pipe_stream(rill_loop *loop, rill_pipe *p, bool read_end);

/* ---- rill_bufwrap ----------------------------------------------------------------------
 *
 * Reads the start of a byte source so it can be looked at before it is consumed
 * (pyslet's BufferedStreamWrapper).  At creation the source is read until EOF, until
 * the buffer is full, or until it reports RILL_EAGAIN or an error.  The buffer holds one
 * byte more than buffsize, so that a source of exactly buffsize bytes is known to end
 * there.  When creation saw EOF, the whole source fit: the wrapper is seekable, knows its
 * length and never calls the source again.  Otherwise (also after RILL_EAGAIN or an error
 * at creation, for good) it is a plain stream: reads serve the buffered bytes first and
 * then call the source directly.  Not thread-safe; the source must outlive the wrapper. */

/* read(src, buf, len) returns > 0 bytes, 0 at EOF, or a negative RILL_E* code (RILL_EAGAIN
 * when a non-blocking source has nothing now).  buffsize 0 means 8192.  A source error at
 * creation is kept and returned by the read that reaches it.  NULL with errno EINVAL
 * (read NULL) or ENOMEM. */
RILL_API rill_bufwrap *rill_bufwrap_new(ssize_t (*read)(void *src, void *buf, size_t len),
                                        void *src, size_t buffsize);
/* n bytes from the current position, or all the buffered ones left when fewer, without
 * advancing or calling the source: *out points into the wrapper's buffer (valid until the
 * next call on w) and the count is returned.  Only buffered bytes can be peeked: past the
 * buffer of a non-seekable wrapper it returns 0. */
RILL_API ssize_t rill_bufwrap_peek(rill_bufwrap *w, size_t n, const char **out);
/* Reads up to len bytes: the count, 0 at EOF (or for len 0), or the source's code
 * (RILL_EAGAIN...). */
RILL_API ssize_t rill_bufwrap_read(rill_bufwrap *w, void *buf, size_t len);
/* True when the whole source fit in the buffer at creation. */
RILL_API bool rill_bufwrap_seekable(const rill_bufwrap *w);
/* The source's length when seekable, -1 when unknown. */
RILL_API int64_t rill_bufwrap_length(const rill_bufwrap *w);
/* Moves the position (SEEK_SET, SEEK_CUR, SEEK_END) and returns the new one.  RILL_ESPIPE
 * when not seekable (whatever the whence); RILL_EINVAL for another whence or a position
 * outside [0, length], the position unchanged. */
RILL_API int64_t rill_bufwrap_seek(rill_bufwrap *w, int64_t off, int whence);
/* Frees the wrapper (not the source).  NULL is a no-op. */
RILL_API void rill_bufwrap_free(rill_bufwrap *w);

#endif
