/* src/ipc.h - private declarations shared by ipc.c, tty.c and fd.c: the transport of Unix
 * stream sockets that carry fds, and turning an fd of any kind into a stream. */
#ifndef RILL_IPC_H
#define RILL_IPC_H

#include "internal.h"

/* Unix stream sockets opened with RILL_IPC: reads use recvmsg and turn received fds into
 * HANDLE events; rill_stream_write_handle attaches fds with SCM_RIGHTS.  Its state
 * (x->ipc) is created on the first write_handle, so a stream may be created with it like
 * any socket stream (rill__fd_stream should pick it when RILL_IPC is set). */
extern const rill__transport rill__ipc_transport;
/* Closes the fds still waiting to be sent and frees the state (a connecting IPC client's
 * transport calls it when the stream closes before it ever connected). */
void rill__ipc_release(rill_stream *s);

/* A stream of the right kind over fd, which the caller owns and hands over (closed on
 * failure): a tty, a pipe or character device, a stream socket (RILL_IPC in flags makes a
 * Unix socket an IPC stream), or something that cannot be polled (regular file,
 * /dev/null: the thread-pool file transport).  flags: RILL_READONLY / RILL_WRITEONLY
 * narrow the direction; otherwise it follows the fd's access mode.  NULL with errno. */
rill_stream *rill__adopt_fd(rill_loop *loop, int fd, unsigned flags);

/* tty.c: a tty stream over fd (taken over; O_NONBLOCK is set on it).  flags as above. */
rill_stream *rill__tty_stream(rill_loop *loop, int fd, unsigned flags);

#endif
