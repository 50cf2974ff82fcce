/* rill/splice.h - pump two streams into each other (GIO's splice_async). */
#ifndef RILL_SPLICE_H
#define RILL_SPLICE_H

#include "cancel.h"
#include "stream.h"

#define RILL_SPLICE_CLOSE_A 0x1u   /* close a when the splice ends */
#define RILL_SPLICE_CLOSE_B 0x2u   /* close b when the splice ends */
#define RILL_SPLICE_WAIT_BOTH 0x4u /* end only when both directions reached EOF */
#define RILL_SPLICE_COPY 0x8u      /* never use splice(2); always copy through user space */

/* Copies a to b and b to a with backpressure until EOF, error or cancel.  EOF on one side
 * shuts down the other's write half.  done(a, status, arg) runs once: 0, the first error,
 * or RILL_ECANCELED.  Sets both streams' pending flag while it runs.
 * Errors: RILL_EINVAL, RILL_ECLOSED, RILL_EPENDING, RILL_ENOMEM. */
RILL_API int rill_splice(rill_stream *a, rill_stream *b, unsigned flags, int priority,
                         rill_cancel *cancel, rill_done_fn *done, void *arg);

#endif
