/* src/udp.c - UDP endpoints: bind, send with deferred completions (queued while the socket
 * would block), receive into the loop's scratch buffer, multicast membership. */
#include "internal.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_BATCH 32 /* datagrams read per readiness, so one busy socket cannot starve others */

typedef void udp_send_cb(rill_udp *, int status, void *);
typedef void udp_recv_cb(rill_udp *, const char *, size_t, const rill_addr *, int, void *);

/* A send: queued with a copy of its datagram while the socket would block, then kept (data
 * no longer needed) until its callback runs from the deferred call. */
typedef struct usend {
    rill__list link;
    udp_send_cb *cb;
    void *arg;
    int status;
    rill_addr to;
    size_t len;
    char data[]; /* only for queued sends */
} usend;

enum {
    U_RECV = 1u, /* rill_udp_start: deliver datagrams */
    U_CLOSED = 2u,
    U_ACTIVE = 4u, /* holds a loop reference */
};

struct rill_udp {
    rill_loop *loop;
    rill__io io; /* fd -1 until bound, or until the first send picks a family */
    unsigned state;
    udp_recv_cb *on_dgram;
    void *rarg;
    rill__list sendq; /* waiting for the socket to take them, in order */
    rill__list doneq; /* sent or failed, waiting for their callbacks */
    rill__defer defer;
    size_t recv_max;      /* receive size (tests); 0: the whole scratch buffer */
    unsigned fake_eagain; /* tests: sends that pretend the socket is full */
};

static void udp_io(rill__io *io, unsigned revents);
static void udp_dispatch(rill__defer *d);

rill_udp *rill_udp_new(rill_loop *loop)
{
    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    rill_udp *u = rill__calloc(1, sizeof *u);
    if (!u) {
        errno = ENOMEM;
        return NULL;
    }
    u->loop = loop;
    rill__io_init(&u->io, -1, udp_io);
    rill__list_init(&u->sendq);
    rill__list_init(&u->doneq);
    rill__defer_init(&u->defer, udp_dispatch);
    rill__handle_add(loop);
    return u;
}

/* Test hook: receive at most max bytes per datagram, to see truncation without sending more
 * than the 64 KiB scratch buffer (no UDP datagram is larger). */
void rill__udp_set_recv_max(rill_udp *u, size_t max);
void rill__udp_set_recv_max(rill_udp *u, size_t max)
{
    u->recv_max = max;
}

/* Test hooks.  Loopback never makes a UDP send wait (the loopback device releases the
 * sender's buffer space at once), so tests make the next n sends see EAGAIN instead; and
 * they count the sends waiting in the queue. */
void rill__udp_fake_eagain(rill_udp *u, unsigned n);
size_t rill__udp_queued(const rill_udp *u);
void rill__udp_fake_eagain(rill_udp *u, unsigned n)
{
    u->fake_eagain = n;
}

size_t rill__udp_queued(const rill_udp *u)
{
    size_t n = 0;
    for (const rill__list *l = u->sendq.next; l != &u->sendq; l = l->next)
        n++;
    return n;
}

/* Watches what is wanted now and holds the loop while receiving or sending. */
static void update(rill_udp *u)
{
    if (u->state & U_CLOSED)
        return;
    bool sending = !rill__list_empty(&u->sendq);
    bool active = (u->state & U_RECV) || sending;
    if (active != !!(u->state & U_ACTIVE)) {
        u->state ^= U_ACTIVE;
        if (active)
            rill__loop_ref(u->loop);
        else
            rill__loop_unref(u->loop);
    }
    if (u->io.fd >= 0) {
        unsigned mask = (u->state & U_RECV ? RILL__IO_READ : 0) | (sending ? RILL__IO_WRITE : 0);
        int rc = rill__io_set(u->loop, &u->io, mask);
        if (rc < 0)
            rill__log(RILL_LOG_ERROR, "udp: poller refused the socket: %s", rill_strerror(rc));
    }
}

/* ---- sockets and addresses --------------------------------------------------------------- */

static int make_socket(rill_udp *u, int family, unsigned flags)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rill__errno();
    int one = 1, v6only = !!(flags & RILL_UDP_IPV6ONLY);
    if (((flags & RILL_UDP_REUSEADDR) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
        ((flags & RILL_UDP_BROADCAST) &&
         setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0) ||
        (family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)) {
        int err = rill__errno();
        close(fd);
        return err;
    }
    rill__io_init(&u->io, fd, udp_io);
    return 0;
}

/* Numeric addresses only: bind never waits for a resolver. */
static int resolve(const char *host, uint16_t port, rill_addr *out)
{
    struct addrinfo hints = {0}, *res;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return rill__gai_error(rc);
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    if (out->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons(port);
    return 0;
}

int rill_udp_bind(rill_udp *u, const char *host, uint16_t port, unsigned flags)
{
    if (!u || (flags & ~(RILL_UDP_REUSEADDR | RILL_UDP_IPV6ONLY | RILL_UDP_BROADCAST)))
        return RILL_EINVAL;
    if (u->state & U_CLOSED)
        return RILL_ECLOSED;
    if (u->io.fd >= 0)
        return RILL_EINVAL; /* bound already, or a send picked a local address */
    rill_addr a;
    int rc = resolve(host ? host : "::", port, &a); /* NULL: every address, both families */
    if (rc == 0)
        rc = make_socket(u, a.ss.ss_family, flags);
    if (rc == RILL_EAFNOSUPPORT && !host && (rc = resolve("0.0.0.0", port, &a)) == 0)
        rc = make_socket(u, AF_INET, flags); /* a machine without IPv6 */
    if (rc == 0 && bind(u->io.fd, (struct sockaddr *)&a.ss, a.len) < 0) {
        rc = rill__errno();
        close(u->io.fd);
        u->io.fd = -1; /* unbound again: the caller may try another address */
    }
    return rc;
}

int rill_udp_sockname(const rill_udp *u, rill_addr *out)
{
    if (!u || !out)
        return RILL_EINVAL;
    if (u->state & U_CLOSED)
        return RILL_ECLOSED;
    if (u->io.fd < 0)
        return RILL_EINVAL;
    out->len = sizeof out->ss;
    if (getsockname(u->io.fd, (struct sockaddr *)&out->ss, &out->len) < 0)
        return rill__errno();
    return 0;
}

/* ---- sending ------------------------------------------------------------------------------ */

static socklen_t addr_len(const rill_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (a->ss.ss_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

static int send_now(rill_udp *u, const void *data, size_t len, const rill_addr *to)
{
    if (u->fake_eagain) {
        u->fake_eagain--;
        return RILL_EAGAIN;
    }
    ssize_t r;
    do
        r = sendto(u->io.fd, data, len, MSG_NOSIGNAL, (const struct sockaddr *)&to->ss,
                   addr_len(to));
    while (r < 0 && errno == EINTR);
    return r < 0 ? rill__errno() : 0;
}

static void complete(rill_udp *u, usend *q, int status)
{
    q->status = status;
    rill__list_insert_tail(&u->doneq, &q->link);
    rill__defer_queue(u->loop, &u->defer, 0);
}

/* Sends what the socket takes now, in order; the rest waits for writability. */
static void flush_sends(rill_udp *u)
{
    while (!rill__list_empty(&u->sendq)) {
        usend *q = rill__container_of(u->sendq.next, usend, link);
        int rc = send_now(u, q->data, q->len, &q->to);
        if (rc == RILL_EAGAIN)
            break;
        rill__list_remove(&q->link);
        complete(u, q, rc);
    }
}

/* A datagram the socket would not take now: keep a copy and wait for writability. */
static int enqueue(rill_udp *u, const void *data, size_t len, const rill_addr *to, udp_send_cb *cb,
                   void *arg)
{
    usend *q = rill__malloc(sizeof *q + len);
    if (!q)
        return RILL_ENOMEM;
    *q = (usend){.cb = cb, .arg = arg, .to = *to, .len = len};
    if (len)
        memcpy(q->data, data, len);
    rill__list_insert_tail(&u->sendq, &q->link);
    update(u);
    return 0;
}

int rill_udp_send(rill_udp *u, const void *data, size_t len, const rill_addr *to, udp_send_cb *cb,
                  void *arg)
{
    if (!u || (!data && len) || !to || !addr_len(to))
        return RILL_EINVAL;
    if (u->state & U_CLOSED)
        return RILL_ECLOSED;
    int rc = u->io.fd < 0 ? make_socket(u, to->ss.ss_family, 0) : 0;
    if (rc < 0)
        return rc;
    if (!rill__list_empty(&u->sendq))
        return enqueue(u, data, len, to, cb, arg); /* keep the order */
    usend *q = cb ? rill__malloc(sizeof *q) : NULL;
    if (cb && !q)
        return RILL_ENOMEM;
    rc = send_now(u, data, len, to);
    if (rc == RILL_EAGAIN) {
        rill__free(q);
        return enqueue(u, data, len, to, cb, arg);
    }
    if (q) { /* sent, or failed for this datagram: the callback says which, later */
        *q = (usend){.cb = cb, .arg = arg};
        complete(u, q, rc);
        return 0;
    }
    return rc < 0 ? rc : 0; /* no callback to tell: the failure is the return value */
}

/* ---- receiving ------------------------------------------------------------------------------ */

int rill_udp_start(rill_udp *u, udp_recv_cb *on_datagram, void *arg)
{
    if (!u || !on_datagram)
        return RILL_EINVAL;
    if (u->state & U_CLOSED)
        return RILL_ECLOSED;
    if (u->io.fd < 0)
        return RILL_EINVAL; /* nothing to receive on: bind (or send) first */
    if (u->state & U_RECV)
        return RILL_EALREADY;
    u->on_dgram = on_datagram;
    u->rarg = arg;
    u->state |= U_RECV;
    update(u);
    return 0;
}

int rill_udp_stop(rill_udp *u)
{
    if (!u)
        return RILL_EINVAL;
    if (u->state & U_CLOSED)
        return RILL_ECLOSED;
    u->state &= ~U_RECV;
    update(u);
    return 0;
}

/* Reads one datagram into the loop's scratch buffer and hands it over; false when there is
 * nothing more to read now.  A datagram longer than the buffer arrives cut, flagged with
 * RILL_EMSGSIZE (MSG_TRUNC), never silently. */
static bool receive_one(rill_udp *u)
{
    size_t cap = RILL__SCRATCH;
    char *buf = rill__loop_scratch(u->loop);
    if (u->recv_max && u->recv_max < cap)
        cap = u->recv_max;
    rill_addr from;
    struct iovec iov = {buf, cap};
    struct msghdr m = {0};
    m.msg_name = &from.ss;
    m.msg_namelen = sizeof from.ss;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    ssize_t n;
    do
        n = recvmsg(u->io.fd, &m, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = rill__errno();
        if (err != RILL_EAGAIN) /* a pending socket error (ICMP): reported once, then gone */
            u->on_dgram(u, NULL, 0, NULL, err, u->rarg);
        return false;
    }
    from.len = m.msg_namelen;
    u->on_dgram(u, buf, (size_t)n, &from, m.msg_flags & MSG_TRUNC ? RILL_EMSGSIZE : 0, u->rarg);
    return true;
}

/* Poller callback.  A callback may close the endpoint: the memory stays until the deferred
 * call frees it, so checking the state after each callback is safe. */
static void udp_io(rill__io *io, unsigned revents)
{
    rill_udp *u = rill__container_of(io, rill_udp, io);
    if (revents & RILL__IO_WRITE)
        flush_sends(u);
    for (int i = 0; i < RECV_BATCH && (revents & RILL__IO_READ); i++)
        if ((u->state & (U_RECV | U_CLOSED)) != U_RECV || !receive_one(u))
            break;
    update(u);
}

/* ---- multicast ------------------------------------------------------------------------------ */

static int join_v4(rill_udp *u, const struct in_addr *group, const char *iface, bool join)
{
    struct ip_mreq mr = {0};
    mr.imr_multiaddr = *group;
    mr.imr_interface.s_addr = htonl(INADDR_ANY);
    if (iface && inet_pton(AF_INET, iface, &mr.imr_interface) != 1)
        return RILL_EINVAL;
    int opt = join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP;
    return setsockopt(u->io.fd, IPPROTO_IP, opt, &mr, sizeof mr) < 0 ? rill__errno() : 0;
}

static int join_v6(rill_udp *u, const struct in6_addr *group, const char *iface, bool join)
{
    struct ipv6_mreq mr = {0};
    mr.ipv6mr_multiaddr = *group;
    if (iface) { /* an interface name ("eth0") or its index ("2") */
        char *end;
        unsigned long idx = strtoul(iface, &end, 10);
        mr.ipv6mr_interface = *iface && !*end ? (unsigned)idx : if_nametoindex(iface);
        if (!mr.ipv6mr_interface)
            return RILL_ENODEV;
    }
    int opt = join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP;
    return setsockopt(u->io.fd, IPPROTO_IPV6, opt, &mr, sizeof mr) < 0 ? rill__errno() : 0;
}

int rill_udp_set_membership(rill_udp *u, const char *group, const char *iface, bool join)
{
    struct in_addr g4;
    struct in6_addr g6;
    if (!u || !group)
        return RILL_EINVAL;
    if (u->state & U_CLOSED)
        return RILL_ECLOSED;
    if (u->io.fd < 0)
        return RILL_EINVAL; /* bind first: membership belongs to a socket */
    if (inet_pton(AF_INET, group, &g4) == 1)
        return IN_MULTICAST(ntohl(g4.s_addr)) ? join_v4(u, &g4, iface, join) : RILL_EINVAL;
    if (inet_pton(AF_INET6, group, &g6) == 1)
        return IN6_IS_ADDR_MULTICAST(&g6) ? join_v6(u, &g6, iface, join) : RILL_EINVAL;
    return RILL_EINVAL;
}

/* ---- closing ------------------------------------------------------------------------------ */

/* Closes at once; sends still queued complete with RILL_ECANCELED, and the endpoint is freed
 * from its deferred call once their callbacks ran (never inside a poller callback, which may
 * be the caller). */
void rill_udp_close(rill_udp *u)
{
    if (!u || (u->state & U_CLOSED))
        return;
    u->state &= ~U_RECV;
    if (u->state & U_ACTIVE) {
        u->state &= ~U_ACTIVE;
        rill__loop_unref(u->loop);
    }
    if (u->io.fd >= 0) {
        rill__io_set(u->loop, &u->io, 0);
        close(u->io.fd);
        u->io.fd = -1;
    }
    u->state |= U_CLOSED;
    while (!rill__list_empty(&u->sendq)) {
        usend *q = rill__container_of(u->sendq.next, usend, link);
        rill__list_remove(&q->link);
        complete(u, q, RILL_ECANCELED);
    }
    rill__defer_queue(u->loop, &u->defer, 0);
}

static void udp_dispatch(rill__defer *d)
{
    rill_udp *u = rill__container_of(d, rill_udp, defer);
    rill__list ready;
    rill__list_init(&ready);
    rill__list_splice(&ready, &u->doneq); /* what callbacks send now completes next time */
    while (!rill__list_empty(&ready)) {
        usend *q = rill__container_of(ready.next, usend, link);
        rill__list_remove(&q->link);
        if (q->cb)
            q->cb(u, q->status, q->arg);
        rill__free(q);
    }
    if ((u->state & U_CLOSED) && rill__list_empty(&u->doneq)) {
        rill__defer_cancel(u->loop, &u->defer);
        rill__handle_remove(u->loop);
        rill__free(u);
    }
}
