/* rill/cancel.h - cancellation tokens (GIO's GCancellable). */
#ifndef RILL_CANCEL_H
#define RILL_CANCEL_H

#include <stdbool.h>

#include "stream.h"

/* A new, untriggered token.  NULL with errno ENOMEM. */
RILL_API rill_cancel *rill_cancel_new(void);
/* Triggers the token: every operation it covers completes with RILL_ECANCELED on its
 * loop's thread.  Safe from any thread; triggering twice changes nothing. */
RILL_API void rill_cancel_trigger(rill_cancel *c);
RILL_API bool rill_cancel_is_triggered(const rill_cancel *c);
/* Frees the token.  It must not cover a pending operation any more.  NULL is a no-op. */
RILL_API void rill_cancel_free(rill_cancel *c);

#endif
