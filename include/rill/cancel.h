/* rill/cancel.h - cancellation tokens (GIO's GCancellable). */
#ifndef RILL_CANCEL_H
#define RILL_CANCEL_H

#include <stdbool.h>

#include "stream.h"

/* A new, untriggered token.  One token may cover any number of operations, on any
 * loops.  NULL with errno ENOMEM. */
RILL_API rill_cancel *rill_cancel_new(void);
/* Triggers the token: every operation it covers (rill_stream_close_async, rill_splice)
 * completes with RILL_ECANCELED, on its own loop's thread and never inside this call.
 * An operation that already finished is not affected; one started with a token already
 * triggered completes with RILL_ECANCELED.  Safe from any thread, also while the loops
 * run; triggering twice changes nothing. */
RILL_API void rill_cancel_trigger(rill_cancel *c);
/* Whether the token was triggered.  Any thread. */
RILL_API bool rill_cancel_is_triggered(const rill_cancel *c);
/* Frees the token once every operation it covered has completed (its callback ran).
 * A token that still covers an operation is kept (and the mistake logged) rather than
 * freed under it.  NULL is a no-op. */
RILL_API void rill_cancel_free(rill_cancel *c);

#endif
