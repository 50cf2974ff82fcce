/* src/sock.h - private declarations shared by the socket files (tcp.c, unix.c, server.c)
 * and their tests: the connector behind both clients, and the server constructor. */
#ifndef RILL_SOCK_H
#define RILL_SOCK_H

#include "internal.h"

/* Connects to the first of addrs[0..n) that answers, Happy Eyeballs style (RFC 8305):
 * attempts start in list order, 250 ms apart unless the previous one already failed, the
 * first to connect wins and the others are closed.  The list is used as given (callers
 * interleave the families).  Same stream contract as rill_tcp_connect; opts->source_host
 * must be NULL here (bind through a numeric `src` instead, may be NULL).  rill_tcp_connect,
 * rill_unix_connect and the tests go through it.  NULL with errno EINVAL or ENOMEM. */
rill_stream *rill__sock_connect(rill_loop *loop, const rill_addr *addrs, size_t n,
                                const rill_addr *src, const rill_connect_opts *opts);

/* Reorders addresses for Happy Eyeballs (RFC 8305 section 4): families alternate,
 * starting with the first address's.  n <= 32. */
void rill__addr_interleave(rill_addr *v, size_t n);

/* A listening server over fd (bound and listening; the server owns it from now on).
 * path: the Unix name for rill_server_pipename (NULL for TCP); unlink_path: remove that
 * file on close.  flags: RILL_IPC gives accepted streams the IPC flag.  On failure the fd
 * is closed and errno set (ENOMEM). */
rill_server *rill__server_new(rill_loop *loop, int fd, int family, const char *path,
                              bool unlink_path, unsigned flags);

#endif
