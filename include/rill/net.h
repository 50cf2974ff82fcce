/* rill/net.h - addresses, TCP and Unix-socket clients and servers, fd streams. */
#ifndef RILL_NET_H
#define RILL_NET_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "stream.h"

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} rill_addr;

/* Parses "1.2.3.4:80" or "[::1]:80" (numeric only).  0 or RILL_EINVAL. */
RILL_API int rill_addr_parse(const char *host_port, rill_addr *out);
/* Formats as rill_addr_parse reads it (Unix: the path, '@' for abstract).  Returns the
 * length, or RILL_EINVAL, RILL_ENOBUFS (cap too small; nothing useful written). */
RILL_API int rill_addr_format(const rill_addr *addr, char *buf, size_t cap);

typedef struct {
    const char *source_host; /* bind the local end to this address */
    uint16_t source_port;
    uint64_t timeout_ms;     /* whole attempt, resolution included; 0: 30 s; RILL_NEVER */
    bool nodelay, keepalive, ipc;
} rill_connect_opts;

typedef struct {
    int backlog;           /* 0: 511 */
    bool reuseport, ipv6_only, ipc;
    unsigned mode;         /* Unix sockets: file permissions (0: umask's) */
} rill_listen_opts;

typedef struct rill_server rill_server;

/* Connects; returns the stream at once (writes queue until connected).  CONNECT fires when
 * up; failures are ERROR events (RILL_ECONNREFUSED, RILL_ETIMEDOUT, RILL_ENETUNREACH,
 * RILL_EAI_NONAME, ...).  NULL with errno EINVAL or ENOMEM for bad input. */
RILL_API rill_stream *rill_tcp_connect(rill_loop *loop, const char *host, uint16_t port,
                                       const rill_connect_opts *opts);
/* Listens (host NULL: all addresses, dual-stack; port 0 picks one).  NULL with errno
 * EADDRINUSE, EACCES, EINVAL, EAI_* (as positive), ENOMEM. */
RILL_API rill_server *rill_tcp_listen(rill_loop *loop, const char *host, uint16_t port,
                                      const rill_listen_opts *opts);
/* path "@name" is Linux's abstract namespace.  NULL with errno ENAMETOOLONG, EINVAL. */
RILL_API rill_stream *rill_unix_connect(rill_loop *loop, const char *path,
                                        const rill_connect_opts *opts);
/* A stale socket file is replaced; a live one gives EADDRINUSE.  The file is removed on
 * close. */
RILL_API rill_server *rill_unix_listen(rill_loop *loop, const char *path,
                                       const rill_listen_opts *opts);

typedef enum { RILL_SEV_CONNECTION, RILL_SEV_ERROR, RILL_SEV_CLOSE } rill_server_event_type;
/* conn: the accepted stream (CONNECTION; it holds its own reference: the server keeps it
 * in its connection set until it closes).  err: the code (ERROR). */
typedef void rill_server_handler(rill_server *srv, rill_server_event_type ev, rill_stream *conn,
                                 int err, void *arg);
RILL_API rill_sub *rill_server_on(rill_server *srv, rill_server_event_type ev,
                                  rill_server_handler *h, void *arg);
/* Removes a subscription made with rill_server_on on this server (allowed inside a
 * handler, itself included: an emission in progress skips it).  A handle of another server,
 * or one already removed, is ignored; the handle is invalid afterwards.  With no
 * CONNECTION handler left, new connections are closed as they arrive. */
RILL_API void rill_server_off(rill_server *srv, rill_sub *sub);
/* Stops listening and closes every active connection (each gets CLOSE); the server is
 * freed after its CLOSE handlers.  Idempotent. */
RILL_API void rill_server_close(rill_server *srv);
RILL_API size_t rill_server_connection_count(const rill_server *srv);
/* Calls fn for each active connection; fn may close the one it is given. */
RILL_API void rill_server_foreach(rill_server *srv, void (*fn)(rill_stream *, void *), void *arg);
RILL_API int rill_server_sockname(const rill_server *srv, rill_addr *out);
/* The Unix socket path ("@name" for abstract), or NULL for TCP servers. */
RILL_API const char *rill_server_pipename(const rill_server *srv);
RILL_API rill_loop *rill_server_loop(const rill_server *srv);
/* The server that accepted s, or NULL. */
RILL_API rill_server *rill_stream_server(const rill_stream *s);
RILL_API int rill_stream_sockname(const rill_stream *s, rill_addr *out);
RILL_API int rill_stream_peername(const rill_stream *s, rill_addr *out);
/* Unix sockets: the peer's credentials (SO_PEERCRED); any pointer may be NULL. */
RILL_API int rill_stream_peercred(const rill_stream *s, pid_t *pid, uid_t *uid, gid_t *gid);
/* TCP: the kernel wakes the stream for reading only once at least `bytes` are waiting, or
 * at EOF or an error (SO_RCVLOWAT; 0 or 1 restores the default of any byte).  For bulk
 * receivers: fewer wake-ups and fuller reads (docs/guide.md, bench/).  Never use it where
 * the peer may wait for an answer to fewer bytes: they stay in the kernel, unseen, until
 * more arrive or the peer closes; bytes waiting there are not activity for the inactivity
 * timeout, nor do they make rill_stream_is_readable true.  READ events still carry what
 * one read finds, which can be less (the kernel also wakes under memory pressure, and
 * caps the mark at half its largest receive buffer).  Errors: RILL_EINVAL (no socket, or
 * bytes > INT_MAX), RILL_ENOTCONN (still connecting: set it in the CONNECT handler),
 * RILL_ECLOSED, RILL_ENOTSUP (not a TCP stream: Unix sockets and pipes wake for every byte
 * whatever the mark). */
RILL_API int rill_stream_set_read_lowat(rill_stream *s, size_t bytes);

#endif
