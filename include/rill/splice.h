/* rill/splice.h - pump two streams into each other (GIO's splice_async). */
#ifndef RILL_SPLICE_H
#define RILL_SPLICE_H

#include "cancel.h"
#include "stream.h"

#define RILL_SPLICE_CLOSE_A 0x1u   /* close a (gracefully) when the splice ends */
#define RILL_SPLICE_CLOSE_B 0x2u   /* close b (gracefully) when the splice ends */
#define RILL_SPLICE_WAIT_BOTH 0x4u /* end only when both directions reached EOF */
#define RILL_SPLICE_COPY                                                                           \
    0x8u /* never use splice(2); always copy through user space                                    \
            (so does a set RILL_SPLICE_COPY environment variable) */

/* Copies a to b and b to a until EOF, an error, a cancel or a close.
 *
 * - A direction exists when its source can read and its sink can write; bytes the
 *   source had buffered (left over by framing) go first, after what the sink had queued.
 * - Backpressure: a source pauses while its sink's write queue could pass the sink's
 *   high water mark with one more read (64 KiB); it resumes at the sink's DRAIN.
 * - EOF on one side shuts down the other side's write half (half-close).  Without
 *   WAIT_BOTH the splice ends when the first direction has ended that way; with it, when
 *   both have.
 * - The first error of either stream ends it (the stream also reports it as usual: its
 *   ERROR handlers run, or it closes when it has none).  A stream closed under the splice
 *   ends it with that stream's error, or RILL_ECLOSED.  A triggered `cancel` ends it with
 *   RILL_ECANCELED.
 * - done(a, status, arg) runs once, on the loop thread, never inside this call, deferred
 *   at `priority` (lower first among completions ready in one iteration): 0, the first
 *   error, or RILL_ECANCELED.  The streams are then not reading; each has what the
 *   splice read but could not write yet in its write queue; CLOSE_A / CLOSE_B close them
 *   after that queue, when the splice ends (so a stream's CLOSE may come before done).
 * - Both streams carry the pending flag while it runs.  Do not read or write them
 *   meanwhile: READ handlers of a source still see the bytes on the copying path only.
 * - Zero-copy: on Linux, when both streams are plain sockets or pipes (not IPC, not
 *   connecting), bytes move with splice(2) through a kernel pipe and never enter user
 *   space; otherwise they are copied.  RILL_SPLICE_COPY forces copying.
 *
 * Errors (done never runs): RILL_EINVAL (NULL, a == b, other loops, unknown flags, no
 * direction can flow), RILL_ECLOSED, RILL_EPENDING, RILL_ENOMEM or an fd limit. */
RILL_API int rill_splice(rill_stream *a, rill_stream *b, unsigned flags, int priority,
                         rill_cancel *cancel, rill_done_fn *done, void *arg);

#endif
