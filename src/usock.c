/* src/usock.c - stream sockets on a uring loop.  Reading is one multishot receive into the
 * loop's provided buffers, armed while the stream wants bytes and cancelled when it stops;
 * writing sends the front block of the write queue.  Both ride the ring's next submission,
 * the one that also waits, so an echoed message costs no read(2) or write(2) of its own.
 * Every operation in the ring holds a stream reference and a loop reference until its last
 * completion: the memory it names stays valid, and the loop runs until it is reaped. */
#include "internal.h"
#include "rill_config.h"

#ifdef RILL_HAVE_URING
#include "uring.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t ud(rill_stream *s, unsigned tag)
{
    return (uint64_t)(uintptr_t)s | tag;
}

/* An operation in the ring: a flag on the stream (not a reference, so dropping the
 * user's last reference still closes it) and a loop reference (the loop runs until the
 * completion is reaped).  A stream freed meanwhile waits for its last completion. */
static void op_begin(rill_stream *s, uint32_t flag)
{
    s->flags |= flag;
    rill__loop_ref(s->loop);
}

static void op_end(rill_stream *s, uint32_t flag)
{
    s->flags &= ~flag;
    rill__loop_unref(s->loop);
    if ((s->flags & RILL__S_UFREE) && !(s->flags & (RILL__S_URECV | RILL__S_USEND)))
        rill__stream_free(s);
}

static int cancel(rill_stream *s, unsigned tag)
{
    struct io_uring_sqe *sqe = rill__uring_sqe(rill__loop_uring(s->loop));
    if (!sqe)
        return RILL_ENOMEM;
    io_uring_prep_cancel64(sqe, ud(s, tag), 0);
    io_uring_sqe_set_data64(sqe, RILL__UR_NOP);
    return 0;
}

static int arm_recv(rill_stream *s)
{
    rill__uring *u = rill__loop_uring(s->loop);
    int rc = rill__uring_bufs(u);
    if (rc < 0)
        return rc;
    struct io_uring_sqe *sqe = rill__uring_sqe(u);
    if (!sqe)
        return RILL_ENOMEM;
    io_uring_prep_recv_multishot(sqe, s->io.fd, NULL, 0, 0);
    if (s->flags & RILL__S_LOWAT) /* no first try: it would take bytes under the mark */
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RILL__UR_BGID;
    io_uring_sqe_set_data64(sqe, ud(s, RILL__UR_RECV));
    op_begin(s, RILL__S_URECV);
    return 0;
}

static int us_start(rill_stream *s)
{
    /* armed already; or being cancelled, when its last completion arms it again */
    return s->flags & RILL__S_URECV ? 0 : arm_recv(s);
}

/* Cancels the receive unless none is armed or its cancel is already in the ring.  Bytes it
 * received before the cancel still arrive: they are kept. */
static int us_stop(rill_stream *s)
{
    if ((s->flags & (RILL__S_URECV | RILL__S_UCANCEL)) != RILL__S_URECV)
        return 0;
    int rc = cancel(s, RILL__UR_RECV);
    if (rc == 0)
        s->flags |= RILL__S_UCANCEL;
    return rc;
}

void rill__usock_recv_cqe(rill_stream *s, int res, unsigned flags)
{
    rill__uring *u = rill__loop_uring(s->loop);
    bool more = flags & IORING_CQE_F_MORE;
    bool live = !(s->flags & (RILL__S_CLOSED | RILL__S_UFREE));
    if (live)
        rill_stream_ref(s); /* handlers may close it or drop the last reference */
    if (flags & IORING_CQE_F_BUFFER) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0 && live)
            rill__stream_deliver(s, rill__uring_buf(u, bid), res);
        rill__uring_buf_put(u, bid);
    } else if (res == 0 && live && !rill__stream_wants_read(s)) {
        /* the end, seen by a receive that was being cancelled: the stream stopped, maybe
         * with bytes still to hand out first.  The socket says it again on the next
         * receive, armed when the stream reads again. */
    } else if (live && (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED &&
                                     res != -EAGAIN && res != -EINTR))) {
        rill__stream_deliver(s, NULL, res == -EAGAIN ? RILL_EAGAIN : res); /* EOF, or the error */
    }
    if (!more) {
        s->flags &= ~RILL__S_UCANCEL;
        /* out of buffers, cancelled while a start came, or ended for another reason: armed
         * again when the stream still wants bytes (the buffers are back by now) */
        if (live && !(s->flags & RILL__S_CLOSED) && rill__stream_wants_read(s)) {
            s->flags &= ~RILL__S_URECV; /* the new one takes over the flag and the loop ref */
            rill__loop_unref(s->loop);
            int rc = arm_recv(s);
            if (rc < 0)
                rill__stream_error(s, rc);
        } else {
            if (live && s->x && s->x->quiet) /* a splice waits for the bytes to be in */
                rill__defer_queue(s->loop, s->x->quiet, 0);
            op_end(s, RILL__S_URECV); /* may free s when it is not live */
        }
    }
    if (live)
        rill_stream_unref(s);
}

static ssize_t us_writev(rill_stream *s, const struct iovec *iov, int n)
{
    (void)n; /* one block at a time: the entry must not point at the caller's iovec array */
    struct io_uring_sqe *sqe = rill__uring_sqe(rill__loop_uring(s->loop));
    if (!sqe)
        return RILL_ENOMEM;
    io_uring_prep_send(sqe, s->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(s, RILL__UR_SEND));
    op_begin(s, RILL__S_USEND);
    rill__tnode_touch(s->loop, &s->tnode); /* handed to the kernel: activity, as a write(2) */
    return RILL_EINPROGRESS;
}

void rill__usock_send_cqe(rill_stream *s, int res, unsigned flags)
{
    (void)flags;
    if (s->flags & RILL__S_UFREE) {
        op_end(s, RILL__S_USEND); /* frees it */
        return;
    }
    rill_stream_ref(s);
    op_end(s, RILL__S_USEND);
    rill__stream_write_done(s, res >= 0 ? (ssize_t)res : res == -EAGAIN ? 0 : (ssize_t)res);
    rill_stream_unref(s);
}

static void us_close(rill_stream *s)
{
    rill__uring *u = rill__loop_uring(s->loop);
    (void)us_stop(s);
    if (s->flags & RILL__S_USEND)
        (void)cancel(s, RILL__UR_SEND); /* a send the peer never makes room for */
    /* entries still queued name the fd by number: they go in before the number is free */
    rill__uring_flush(u);
    if (s->io.fd >= 0 && !(s->flags & RILL__S_STOLEN))
        close(s->io.fd);
}

int rill__usock_steal(rill_stream *s)
{
    rill__uring *u = rill__loop_uring(s->loop);
    if (s->flags & RILL__S_USEND)
        return RILL_EBUSY; /* a send in flight would still write to the fd */
    if (s->flags & RILL__S_URECV) {
        rill__uring_flush(u);
        struct io_uring_sync_cancel_reg reg = {.addr = ud(s, RILL__UR_RECV), .timeout = {-1, -1}};
        int rc = io_uring_register_sync_cancel(rill__uring_ring(u), &reg);
        if (rc < 0 && rc != -ENOENT && rc != -EALREADY)
            return rc;
        s->flags |= RILL__S_UCANCEL;
    }
    return 0;
}

const rill__transport *rill__sock_tp(rill_loop *loop, const rill__transport *fallback)
{
    return rill__loop_uring(loop) ? &rill__usock_transport : fallback;
}

const rill__transport rill__usock_transport = {
    .name = "socket",
    .flags = RILL__TP_SOCKET | RILL__TP_ASYNC | RILL__TP_DIRECT,
    .writev = us_writev,
    .start = us_start,
    .stop = us_stop,
    .close = us_close,
};
#else
int rill__usock_steal(rill_stream *s)
{
    (void)s;
    return 0;
}

const rill__transport *rill__sock_tp(rill_loop *loop, const rill__transport *fallback)
{
    (void)loop;
    return fallback;
}
#endif
