/* src/cancel.h - how an operation of the GIO layer (close_async, splice) learns that its
 * rill_cancel fired: a watch that calls back on the operation's loop thread. */
#ifndef RILL_CANCEL_INTERNAL_H
#define RILL_CANCEL_INTERNAL_H

#include "internal.h"

typedef struct rill__cancel_watch rill__cancel_watch;

/* Arranges fn(arg) on loop's thread once c triggers; if c has triggered already, fn is
 * posted at once.  fn never runs inside this call, and never after rill__cancel_unregister.
 * Loop thread only.  Returns the watch, or NULL with errno EINVAL (c NULL) or ENOMEM. */
rill__cancel_watch *rill__cancel_register(rill_cancel *c, rill_loop *loop, void (*fn)(void *arg),
                                          void *arg);
/* Ends the watch: fn will not run any more (even if c triggered and its call is already on
 * its way).  Loop thread only; NULL is a no-op.  Call it before telling the user the
 * operation finished: the user may free c right after. */
void rill__cancel_unregister(rill__cancel_watch *w);

#endif
