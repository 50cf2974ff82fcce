/* rill/fiber.h - fibers: blocking-style calls that suspend only the calling fiber.
 *
 * A fiber is a stackful coroutine run by a loop, on the loop's thread.  Code in a fiber
 * reads like blocking code (`n = rill_fiber_read_until(s, "\r\n", 2, buf, cap, 0)`), but
 * a call that has to wait only suspends the fiber: the loop goes on serving everything
 * else and resumes the fiber when the result is there.  One loop serves thousands of
 * fibers; they never run in parallel, so no locks are needed between fibers of a loop.
 *
 * Rules shared by every blocking call below:
 * - Called outside a fiber (or on a stream, server or loop of another loop than the
 *   fiber's) it returns RILL_EINVAL at once instead of blocking the loop.
 * - `deadline` is absolute on the loop clock (rill_loop_now(loop) + ms); 0 means none.
 *   When it passes the call returns RILL_ETIMEDOUT; a deadline already past fails at
 *   once, before anything is started.
 * - After rill_fiber_cancel, the fiber's pending call and every later one return
 *   RILL_ECANCELED (cancellation is sticky: a cancelled fiber is expected to unwind).
 * - A result that arrives before the fiber runs again wins over a timeout or a cancel.
 * - Reads that end by timeout or cancel CLOSE the stream: a framing request, once queued,
 *   cannot be withdrawn and would otherwise take the next frame.  Its late completion is
 *   discarded; it never touches the caller's buffer after the call returned.
 * - While a call waits, a stream that closes makes it return the stream's error
 *   (RILL_ECONNRESET, RILL_ETIMEDOUT for the inactivity timeout, ...) or RILL_ECLOSED.
 * - Do not run the loop (rill_loop_run) from inside a fiber.
 */
#ifndef RILL_FIBER_H
#define RILL_FIBER_H

#include "net.h"

typedef struct rill_fiber rill_fiber;

/* Starts fn(arg) in a new fiber on `loop`.  The fiber first runs from the loop, never
 * inside this call (callable from a fiber or from plain code).  stack_size 0 means 64 KiB;
 * other sizes are rounded up to whole pages, at least 16 KiB.  The stack is mmap'ed with
 * an inaccessible guard page below it: overflowing it kills the process with SIGSEGV
 * instead of corrupting memory.  While any fiber of a loop is alive, RILL_RUN_DEFAULT
 * keeps running and rill_loop_free returns RILL_EBUSY.
 * The fiber is joinable: its record stays after fn returns until rill_fiber_join reaps it
 * or rill_fiber_detach is called (the stack itself is freed as soon as fn returns).
 * NULL with errno EINVAL (NULL loop or fn), ENOMEM. */
RILL_API rill_fiber *rill_fiber_spawn(rill_loop *loop, void (*fn)(void *), void *arg,
                                      size_t stack_size);
/* The calling fiber, or NULL outside fibers. */
RILL_API rill_fiber *rill_fiber_self(void);
/* Waits until f has finished, then frees its record (f is invalid after a 0 return).
 * RILL_ETIMEDOUT / RILL_ECANCELED leave f valid and joinable.  RILL_EDEADLK when f is
 * the caller, RILL_EPENDING when another fiber already joins f, RILL_EINVAL outside a
 * fiber or for a detached fiber. */
RILL_API int rill_fiber_join(rill_fiber *f, uint64_t deadline);
/* Gives up the right to join: f's record is freed when it finishes (now, if it has).
 * f must not be used afterwards.  A fiber being joined is reaped by the join instead.
 * NULL is a no-op. */
RILL_API void rill_fiber_detach(rill_fiber *f);
/* Cancels f: its pending blocking call returns RILL_ECANCELED (its wake-up is deferred
 * to the loop, never inside this call), and so does every later one.  Calling it again,
 * or on a fiber that has finished but is not yet joined, does nothing.  NULL is a no-op. */
RILL_API void rill_fiber_cancel(rill_fiber *f);
/* Suspends the calling fiber for ms milliseconds; 0 yields: the fiber runs again after
 * the loop's pending work.  0, RILL_ECANCELED, RILL_EINVAL (outside a fiber), RILL_ENOMEM. */
RILL_API int rill_fiber_sleep(uint64_t ms);
/* How fibers switch in this process: "asm-x86_64", "asm-aarch64" or "ucontext".  The
 * assembly switch is used where there is one, unless the library was built with
 * -DRILL_FIBER_UCONTEXT, the environment has RILL_FIBER_UCONTEXT=1 at the first spawn,
 * or the kernel enforces shadow stacks for the process. */
RILL_API const char *rill_fiber_mechanism(void);

/* Blocking-style reads: the same framing as rill_stream_read_* (FIFO with other requests
 * on the stream, RILL_ENOBUFS when a frame exceeds the stream's max buffer, nothing
 * consumed).  The frame is copied into buf; the result is its length.
 * - read_bytes: whatever is available, 1..max bytes.
 * - read_exactly: n bytes.
 * - read_until: up to and including the delimiter (dlen >= 1).
 * - read_until_regex: up to the end of the first match of re (re must outlive the call).
 * A frame longer than cap (read_until, read_until_regex) is consumed and discarded:
 * RILL_ENOBUFS.  To have such frames refused without consuming them instead, set the
 * stream's max buffer to cap (rill_stream_set_max_buffer).
 * At end of stream a partial frame is returned as it is (shorter than n, or without the
 * delimiter); the next calls return RILL_EOF, also once the stream has closed itself (a
 * stream without an EOF handler closes at EOF, after its queued writes).
 * Errors: RILL_EOF, RILL_ECLOSED (closed before or during the call, other than by reaching
 * the end), RILL_ETIMEDOUT, RILL_ECANCELED
 * (both close the stream, see above), RILL_ENOBUFS, RILL_EINVAL, RILL_ENOMEM, or the stream's
 * error. */
RILL_API ssize_t rill_fiber_read_bytes(rill_stream *s, void *buf, size_t max, uint64_t deadline);
RILL_API ssize_t rill_fiber_read_exactly(rill_stream *s, void *buf, size_t n, uint64_t deadline);
RILL_API ssize_t rill_fiber_read_until(rill_stream *s, const void *delim, size_t dlen, void *buf,
                                       size_t cap, uint64_t deadline);
RILL_API ssize_t rill_fiber_read_until_regex(rill_stream *s, const rill_regex *re, void *buf,
                                             size_t cap, uint64_t deadline);
/* Writes data (copied when it cannot be written at once, as rill_stream_write).  Returns
 * 1 when the bytes reached the kernel, 0 when they were queued and will be sent later
 * (also before a connection is up).  Blocks only for backpressure: when the write queue
 * reaches its high water mark it waits for DRAIN, then returns 1 if the queue emptied,
 * else 0.  RILL_ETIMEDOUT / RILL_ECANCELED from that wait leave the bytes queued and the
 * stream open.  Errors: those of rill_stream_write, RILL_ECLOSED or the stream's error
 * when it closes during the wait, RILL_ETIMEDOUT, RILL_ECANCELED, RILL_EINVAL. */
RILL_API int rill_fiber_write(rill_stream *s, const void *data, size_t len, uint64_t deadline);
/* Shuts the write half down after the queued writes and waits for that to finish.
 * 0, or the errors of rill_stream_shutdown, RILL_ETIMEDOUT / RILL_ECANCELED (the
 * shutdown still completes in the background; the stream stays open). */
RILL_API int rill_fiber_shutdown(rill_stream *s, uint64_t deadline);
/* Connects and waits until the connection is up.  opts->timeout_ms bounds the attempt
 * (the connect functions take no deadline).  Returns the connected stream (one reference,
 * held by its open state, as rill_tcp_connect), or NULL with *err (err may be NULL) and
 * errno set: the connect error (RILL_ECONNREFUSED, RILL_ETIMEDOUT, RILL_EAI_NONAME, ...),
 * RILL_ECANCELED (the attempt is abandoned and its stream closed), RILL_EINVAL. */
RILL_API rill_stream *rill_fiber_connect_tcp(rill_loop *loop, const char *host, uint16_t port,
                                             const rill_connect_opts *opts, int *err);
RILL_API rill_stream *rill_fiber_connect_unix(rill_loop *loop, const char *path,
                                              const rill_connect_opts *opts, int *err);
/* Waits for the next connection of srv.  Connections that arrive while no fiber waits
 * queue up (in order) for later calls.  Returns the accepted stream (it keeps its own
 * reference until it closes, as in a CONNECTION handler), or NULL with *err (may be NULL)
 * and errno: RILL_ETIMEDOUT, RILL_ECANCELED, RILL_ECLOSED (the server closed),
 * RILL_EINVAL (also on a server given to rill_server_serve_fibers), RILL_ENOMEM. */
RILL_API rill_stream *rill_fiber_accept(rill_server *srv, uint64_t deadline, int *err);
/* evergreen's StreamServer: from now on every connection of srv runs handle(conn, arg)
 * in a new fiber (default stack).  Returns at once (it does not block: run the loop).
 * When handle returns, conn is closed gracefully (queued writes first).  When conn
 * closes while handle still runs (peer, inactivity timeout, or handle itself), the fiber
 * is cancelled: its blocking calls return RILL_ECANCELED.  rill_server_close closes every
 * connection and so cancels every such fiber; the connection list is the server's
 * (rill_server_connection_count, rill_server_foreach).
 * 0, RILL_EINVAL, RILL_EPENDING (already serving), RILL_ENOMEM. */
RILL_API int rill_server_serve_fibers(rill_server *srv, void (*handle)(rill_stream *, void *),
                                      void *arg);

#endif
