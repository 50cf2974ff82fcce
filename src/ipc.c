/* src/ipc.c - handle passing: the IPC transport of Unix stream sockets (fds travel with
 * SCM_RIGHTS next to the bytes they belong to), and making a stream of the right kind for a
 * received fd. */
#include "ipc.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PART 64     /* iovecs per sendmsg: stream.c never hands over more */
#define MAX_RECV_FDS 32 /* fds accepted per recvmsg; the kernel closes any beyond */

/* An fd waiting to be sent: it goes with the byte at `off` of the write queue (counted as
 * s->x->wq_written / wq_total count), so it reaches the peer with the bytes of its
 * rill_stream_write_handle and not a byte earlier or later. */
typedef struct {
    uint64_t off;
    int fd; /* our dup: the caller may close the stream it sent at once */
} pending_fd;

/* FIFO of pending fds, ordered by offset (writes are queued in order). */
typedef struct {
    pending_fd *v;
    size_t head, len, cap;
} ipc_state;

/* ---- the pending-fd FIFO --------------------------------------------------------------- */

static pending_fd *pending_at(ipc_state *st, size_t i)
{
    return st && i < st->len ? &st->v[st->head + i] : NULL;
}

static int pending_push(ipc_state *st, uint64_t off, int fd)
{
    if (st->head + st->len == st->cap) {
        if (st->head > 0) {
            memmove(st->v, st->v + st->head, st->len * sizeof *st->v);
            st->head = 0;
        } else {
            size_t cap = st->cap ? st->cap * 2 : 4;
            pending_fd *v = rill__realloc(st->v, cap * sizeof *v);
            if (!v)
                return RILL_ENOMEM;
            st->v = v;
            st->cap = cap;
        }
    }
    st->v[st->head + st->len++] = (pending_fd){off, fd};
    return 0;
}

/* Closes our dup of the first fd: it was sent, or can no longer be. */
static void pending_pop(ipc_state *st)
{
    close(st->v[st->head].fd);
    st->head++;
    if (--st->len == 0)
        st->head = 0;
}

static ipc_state *state_get(rill_stream *s)
{
    if (!rill__stream_sx(s))
        return NULL;
    if (!s->x->ipc)
        s->x->ipc = rill__calloc(1, sizeof(ipc_state));
    return s->x->ipc;
}

/* ---- writing ------------------------------------------------------------------------------ */

static ssize_t send_part(int sock, const struct iovec *iov, int n, int passfd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr m = {0};
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)n;
    if (passfd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passfd, sizeof(int));
    }
    ssize_t r;
    do
        r = sendmsg(sock, &m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? rill__errno() : r;
}

/* Copies the bytes [skip, skip + limit) of iov[] as iovecs into out; returns the count and
 * their total in *got (less than limit only when out is full). */
static int iov_slice(const struct iovec *iov, int n, size_t skip, size_t limit, struct iovec *out,
                     size_t *got)
{
    int k = 0;
    *got = 0;
    for (int i = 0; i < n && k < MAX_PART && *got < limit; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        size_t take = RILL__MIN(l - skip, limit - *got);
        out[k++] = (struct iovec){(char *)iov[i].iov_base + skip, take};
        *got += take;
        skip = 0;
    }
    return k;
}

/* How many bytes from offset `at` may go in one sendmsg, and which fd goes with them: a
 * sendmsg carrying an fd starts exactly at its offset and stops before the next one's. */
static size_t next_part(rill_stream *s, uint64_t at, size_t left, int *fd)
{
    ipc_state *st = s->x ? s->x->ipc : NULL;
    pending_fd *p = pending_at(st, 0);
    while (p && p->off < at) { /* only when bytes were dropped after an error */
        pending_pop(st);
        p = pending_at(st, 0);
    }
    *fd = -1;
    if (!p)
        return left;
    if (p->off > at)
        return (size_t)RILL__MIN((uint64_t)left, p->off - at);
    *fd = p->fd;
    pending_fd *next = pending_at(st, 1);
    return next ? (size_t)RILL__MIN((uint64_t)left, next->off - at) : left;
}

/* The transport's writev: as many sendmsg calls as the pending fds split the bytes into.
 * stream.c hands over the queue from its front, whose offset is s->x->wq_written. */
static ssize_t ipc_writev(rill_stream *s, const struct iovec *iov, int n)
{
    ipc_state *st = s->x ? s->x->ipc : NULL;
    if (!st || !st->len)
        return send_part(s->io.fd, iov, n, -1); /* the common case: nothing to attach */
    size_t total = 0, sent = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    while (sent < total) {
        int fd;
        /* records exist only once the stream has its extension (write_handle made it) */
        size_t limit = next_part(s, s->x->wq_written + sent, total - sent, &fd), want;
        struct iovec part[MAX_PART];
        int k = iov_slice(iov, n, sent, limit, part, &want);
        ssize_t r = send_part(s->io.fd, part, k, fd);
        if (r < 0)
            return sent ? (ssize_t)sent : r; /* the error shows again on the next call */
        if (fd >= 0)
            pending_pop(st); /* a partial send still carried the fd with its first byte */
        sent += (size_t)r;
        if ((size_t)r < want)
            break; /* the socket buffer is full */
    }
    return (ssize_t)sent;
}

int rill_stream_write_handle(rill_stream *s, const void *data, size_t len, rill_stream *send,
                             rill_done_fn *cb, void *arg)
{
    /* a connecting IPC client queues the bytes, and the fd at their offset, until it is up */
    if (!s || !send || !data || !len || !(s->flags & RILL__S_IPC) ||
        (s->tp != &rill__ipc_transport && !(s->flags & RILL__S_CONNECTING)))
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    int sfd = rill_stream_fd(send);
    if (sfd < 0)
        return sfd;
    ipc_state *st = state_get(s);
    if (!st || !rill__stream_sx(s)) /* the queue's byte offsets place the fd */
        return RILL_ENOMEM;
    int dup = fcntl(sfd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0)
        return rill__errno();
    uint64_t off = s->x->wq_total;
    int rc = pending_push(st, off, dup);
    if (rc < 0) {
        close(dup);
        return rc;
    }
    rc = rill_stream_write(s, data, len, cb, arg);
    pending_fd *last = pending_at(st, st->len ? st->len - 1 : 0);
    if (rc < 0 && last && last->fd == dup && last->off == off) {
        close(dup); /* refused: nothing of it was sent */
        st->len--;
    }
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Hands a received fd to the HANDLE handlers as a new stream, or closes it when nobody
 * listens.  The handlers keep the stream with rill_stream_ref; otherwise it is closed. */
static void emit_handle(rill_stream *s, int fd)
{
    if ((s->flags & RILL__S_CLOSED) || !rill_stream_has_subscribers(s, RILL_EV_HANDLE)) {
        close(fd);
        return;
    }
    rill_stream *h = rill__adopt_fd(s->loop, fd, RILL_IPC);
    if (!h) {
        rill__log(RILL_LOG_WARN, "ipc: received fd dropped: %s", rill_strerror(-errno));
        return;
    }
    rill_event ev = {RILL_EV_HANDLE, NULL, 0, 0, h};
    rill__stream_emit(s, &ev);
    if (h->refs == 1)
        rill_stream_close(h); /* only its open state holds it: nobody kept it */
}

static void take_fds(rill_stream *s, struct msghdr *m)
{
    int fds[MAX_RECV_FDS];
    size_t nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < MAX_RECV_FDS; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (m->msg_flags & MSG_CTRUNC)
        rill__log(RILL_LOG_WARN, "ipc: more fds arrived than fit; the kernel closed the rest");
    for (size_t i = 0; i < nfds; i++)
        emit_handle(s, fds[i]);
}

/* The transport's read: recvmsg, so the fds that came with these bytes become HANDLE events
 * before stream.c delivers the bytes.  (The kernel ends a read at the bytes that carry fds,
 * so the fds of a later write_handle never arrive with earlier bytes.) */
static ssize_t ipc_read(rill_stream *s, void *buf, size_t len)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, len};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    ssize_t n;
    do
        n = recvmsg(s->io.fd, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return rill__errno();
    if (m.msg_controllen)
        take_fds(s, &m);
    return n;
}

void rill__ipc_release(rill_stream *s)
{
    ipc_state *st = s->x ? s->x->ipc : NULL;
    if (st) {
        while (st->len)
            pending_pop(st); /* never sent: the stream closed first */
        rill__free(st->v);
        rill__free(st);
        s->x->ipc = NULL;
    }
}

static void ipc_close(rill_stream *s)
{
    rill__ipc_release(s);
    if (s->io.fd >= 0 && !(s->flags & RILL__S_STOLEN))
        close(s->io.fd);
}

const rill__transport rill__ipc_transport = {
    .name = "ipc",
    .flags = RILL__TP_SOCKET,
    .read = ipc_read,
    .writev = ipc_writev,
    .close = ipc_close,
};

/* ---- a stream for an fd of any kind ----------------------------------------------------- */

/* epoll refuses what is always ready (regular files, /dev/null): such fds need the
 * thread-pool transport even on the poll backend, so both backends behave alike. */
static bool pollable(int fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return true; /* cannot tell; the poller will complain if it must */
    struct epoll_event ev = {.events = EPOLLIN};
    bool ok = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 || errno != EPERM;
    close(ep);
    return ok;
}

static rill_stream *file_stream(rill_loop *loop, int fd, unsigned flags)
{
    flags &= ~RILL_IPC;
    if (rill__fd_direction(fd, &flags) < 0) {
        errno = EINVAL;
        return NULL;
    }
    return rill__file_stream(loop, fd, flags);
}

static rill_stream *socket_stream(rill_loop *loop, int fd, unsigned flags)
{
    int type = 0, dom = 0, listening = 0;
    socklen_t l1 = sizeof type, l2 = sizeof dom, l3 = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l2) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3) < 0)
        return NULL;
    if (type != SOCK_STREAM || listening) {
        errno = ENOTSUP; /* datagram and listening sockets are not streams */
        return NULL;
    }
    bool ipc = (flags & RILL_IPC) && dom == AF_UNIX;
    rill_stream *s = rill_fd_open(loop, fd, ipc ? flags : flags & ~RILL_IPC);
    if (s && ipc)
        s->tp = &rill__ipc_transport; /* before any I/O: the two differ only in hooks */
    return s;
}

rill_stream *rill__adopt_fd(rill_loop *loop, int fd, unsigned flags)
{
    struct stat st;
    rill_stream *s = NULL;
    if (fstat(fd, &st) < 0)
        errno = EBADF;
    else if (isatty(fd))
        s = rill__tty_stream(loop, fd, flags & ~RILL_IPC);
    else if (S_ISSOCK(st.st_mode))
        s = socket_stream(loop, fd, flags);
    else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || (S_ISCHR(st.st_mode) && !pollable(fd)))
        s = file_stream(loop, fd, flags);
    else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))
        s = rill_fd_open(loop, fd, flags & ~RILL_IPC);
    else
        errno = S_ISDIR(st.st_mode) ? EISDIR : ENOTSUP;
    if (!s) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return s;
}
