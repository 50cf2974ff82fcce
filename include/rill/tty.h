/* rill/tty.h - terminals and the standard streams. */
#ifndef RILL_TTY_H
#define RILL_TTY_H

#include "stream.h"

/* A stream over a terminal fd (dup'ed: fd stays the caller's).  NULL with errno ENOTTY,
 * EBADF, ENOMEM. */
RILL_API rill_stream *rill_tty_open(rill_loop *loop, int fd, bool readable);
RILL_API int rill_tty_winsize(rill_stream *s, int *cols, int *rows);
/* Raw mode on or off; the original mode is remembered for rill_tty_reset. */
RILL_API int rill_tty_set_raw(rill_stream *s, bool on);
/* Restores every terminal the process changed (also runs at exit).  Async-signal-safe. */
RILL_API void rill_tty_reset(void);
/* Streams over dups of fds 0/1/2, whatever they are (tty, pipe, socket, regular file or
 * /dev/null through the thread-pool file transport).  NULL with errno. */
RILL_API rill_stream *rill_stdin(rill_loop *loop);
RILL_API rill_stream *rill_stdout(rill_loop *loop);
RILL_API rill_stream *rill_stderr(rill_loop *loop);

#endif
