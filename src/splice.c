/* src/splice.c - rill_splice: pumps two streams into each other (GIO's splice_async).
 *
 * Each direction (a to b, b to a) runs on its own and ends when its source reaches EOF:
 * then the sink's write half is shut down, so half-closed protocols work.  The splice
 * ends at the first direction that ends (or both, with RILL_SPLICE_WAIT_BOTH), at the
 * first error, or when the cancel token fires; done(a, status) then runs once, deferred
 * at the caller's priority.  Both streams carry the pending flag meanwhile.
 *
 * Two ways to move bytes:
 *
 * - Copy (any streams): the source's READ events are written to the sink.  When the sink's
 *   queue could pass its high water mark with one more read (64 KiB), the source stops
 *   until the sink's DRAIN, so a fast side never makes the slow side's queue grow past
 *   its high water mark (when that mark is at least one read).
 *
 * - Zero-copy (Linux, both streams plain sockets or pipes with no framing request waiting,
 *   RILL_SPLICE_COPY not given and the RILL_SPLICE_COPY environment variable unset): bytes
 *   go from the source's fd into a kernel pipe and from there to the sink's fd with
 *   splice(2), never entering user space.  (A waiting request reads the stream itself:
 *   copying lets it take its frame first, then forwards the rest.)  The streams'
 *   own reading is stopped; the splice watches dup(2)s of their fds with its own poller
 *   entries (epoll keys its entries by fd, and the stream's entry may still be in use
 *   for its write queue).  Bytes the source stream had already buffered,
 *   and the sink's queued writes, go first: the buffered bytes are written to the sink as
 *   ordinary writes, and splicing into the sink starts once its queue is empty (a
 *   zero-length write's callback says when).  When the splice ends, bytes still in the
 *   kernel pipe are written to the sink as ordinary writes, so nothing read is lost.
 *   Activity counts for the streams' inactivity timeouts as usual. */
#include "splice.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cancel.h"

#define READ_MAX (64 * 1024) /* the most one READ event carries (the loop's buffer) */
#define PIPE_SIZE (1024 * 1024)
#define ZC_ROUNDS 8 /* fill/drain rounds per wake-up before the loop serves others */

atomic_uint_least64_t rill__splice_zc_bytes;
atomic_uint_least64_t rill__splice_copy_bytes;

typedef struct splice_op splice_op;

typedef struct {
    splice_op *op;
    rill_stream *src, *dst;
    int from;  /* index of src in op->s */
    bool live; /* the direction exists (src can read, dst can write) */
    bool eof;  /* src finished */
    bool done; /* dst's write half is shut down */
    bool shutting;
    bool paused;       /* copy: src stopped until dst's DRAIN */
    rill_sub *subs[3]; /* copy: src READ, dst DRAIN; both paths: src EOF */
    int pipe[2];       /* zero-copy: the kernel pipe between them */
    size_t inpipe, pipecap;
    bool ready;    /* zero-copy: dst's queue is empty, splicing into it may start */
    bool waiting;  /* zero-copy: src's ring receive is still being cancelled */
    bool deferred; /* started from src's own callback: starts once that has returned */
} dir_t;

typedef struct {
    rill__io io; /* on a dup of the stream's fd */
    splice_op *op;
} zfd_t;

struct splice_op {
    rill_loop *loop;
    rill_stream *s[2];
    dir_t dir[2];
    zfd_t z[2];
    bool zc;
    rill_sub *subs[2][2]; /* per stream: ERROR, CLOSE */
    unsigned flags;
    int priority, status, refs;
    bool finished;
    rill_stream *culprit; /* zero-copy: the stream whose fd failed */
    rill__cancel_watch *watch;
    rill__defer defer;
    rill__defer wake; /* a deferred direction may start, or a source's ring receive ended */
    rill_done_fn *done;
    void *arg;
};

static void finish(splice_op *op, int status);
static void zc_update(splice_op *op);
static int forward_buffered(dir_t *d);
static int zc_unwait(dir_t *d);
static int dir_start(dir_t *d);

static void op_unref(splice_op *op)
{
    if (--op->refs == 0)
        rill__free(op);
}

/* ---- ending a direction ------------------------------------------------------------------- */

static void dir_done(dir_t *d)
{
    splice_op *op = d->op;
    d->done = true;
    if (!(op->flags & RILL_SPLICE_WAIT_BOTH) || !op->dir[0].live || !op->dir[1].live ||
        (op->dir[0].done && op->dir[1].done))
        finish(op, 0);
}

/* Shutting down is how EOF travels on; a sink that has no write half to end (a device),
 * or that the user shut down already, has nothing to add. */
static bool shut_ok(int status)
{
    return status >= 0 || status == RILL_ENOTSUP || status == RILL_EPENDING;
}

static void on_shut(rill_stream *dst, int status, void *arg)
{
    dir_t *d = arg;
    splice_op *op = d->op;
    (void)dst;
    if (!op->finished) {
        if (shut_ok(status))
            dir_done(d);
        else
            finish(op, status);
    }
    op_unref(op);
}

static void shut_sink(dir_t *d)
{
    if (d->shutting)
        return;
    d->shutting = true;
    int rc = rill_stream_shutdown(d->dst, on_shut, d);
    if (rc == 0)
        d->op->refs++;
    else if (shut_ok(rc))
        dir_done(d);
    else
        finish(d->op, rc);
}

/* ---- copy path ------------------------------------------------------------------------- */

static void on_drain(rill_stream *dst, const rill_event *ev, void *arg);

/* A queue paused at or under the low water mark never falls to it: no DRAIN comes, so
 * the write of nothing queued behind it says when it emptied. */
static void on_paused_flushed(rill_stream *dst, int status, void *arg)
{
    dir_t *d = arg;
    splice_op *op = d->op;
    (void)status; /* a failure reaches the splice as the stream's error */
    on_drain(dst, NULL, d);
    op_unref(op);
}

static void pause_if_full(dir_t *d)
{
    size_t q = rill_stream_write_queue_size(d->dst);
    if (q && q + READ_MAX > rill__stream_high(d->dst) && !d->paused) {
        if (q <= (d->dst->x ? d->dst->x->low : 0)) {
            if (rill_stream_write(d->dst, NULL, 0, on_paused_flushed, d) < 0)
                return; /* cannot wait for it: keep reading */
            d->op->refs++;
        }
        d->paused = true;
        rill_stream_stop(d->src);
    }
}

static void on_read(rill_stream *src, const rill_event *ev, void *arg)
{
    dir_t *d = arg;
    (void)src;
    int rc = rill_stream_write(d->dst, ev->data, ev->len, NULL, NULL);
    if (rc < 0) {
        finish(d->op, rc);
        return;
    }
    atomic_fetch_add(&rill__splice_copy_bytes, ev->len);
    pause_if_full(d);
}

/* Both paths: the source's end travels on (its EOF handler is ours, so a source without
 * one of the user's does not close itself under the splice).  A direction that has not
 * started yet, or whose kernel pipe still holds bytes, shuts the sink down later. */
static void on_eof(rill_stream *src, const rill_event *ev, void *arg)
{
    dir_t *d = arg;
    (void)src;
    (void)ev;
    d->eof = true;
    if (!d->deferred && !d->waiting && !d->inpipe)
        shut_sink(d);
}

static void on_drain(rill_stream *dst, const rill_event *ev, void *arg)
{
    dir_t *d = arg;
    (void)dst;
    (void)ev;
    if (d->paused && !d->op->finished) {
        d->paused = false;
        rill_stream_start(d->src);
    }
}

static int copy_start(dir_t *d)
{
    d->subs[0] = rill_stream_on(d->src, RILL_EV_READ, on_read, d);
    d->subs[2] = rill_stream_on(d->dst, RILL_EV_DRAIN, on_drain, d);
    if (!d->subs[0] || !d->subs[2])
        return RILL_ENOMEM;
    if (d->eof)
        return 0;
    pause_if_full(d); /* the bytes forwarded from src's buffer may fill dst already */
    return d->paused ? 0 : rill_stream_start(d->src);
}

/* ---- zero-copy path ------------------------------------------------------------------------ */

#ifdef __linux__
/* A stream that is a plain socket or pipe fd: no transport hooks between it and the fd,
 * or only the uring backend's (its receive stops and its queue drains like any other). */
static bool plain_fd(const rill_stream *s)
{
    const rill__transport *tp = s->tp;
    struct stat st;
    if (s->io.fd < 0)
        return false;
    if (!(tp->flags & RILL__TP_DIRECT) &&
        (tp->read || tp->writev || tp->start || (tp->flags & RILL__TP_ASYNC)))
        return false;
    if (s->flags & (RILL__S_IPC | RILL__S_CONNECTING | RILL__S_CLOSED | RILL__S_STOLEN))
        return false; /* handles would be lost; a connect must finish first */
    if (rill__frames_pending(s))
        return false; /* its reads serve the request first: the copy path forwards the rest */
    if (fstat(s->io.fd, &st) < 0)
        return false;
    return S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode);
}

static bool want_zero_copy(splice_op *op)
{
    const char *env = getenv("RILL_SPLICE_COPY");
    return !(op->flags & RILL_SPLICE_COPY) && !(env && *env) && plain_fd(op->s[0]) &&
           plain_fd(op->s[1]);
}
#else
static bool want_zero_copy(splice_op *op)
{
    (void)op;
    return false;
}
#endif

/* Moves src's fd into the pipe until it is full or src has nothing now.  Progress (bool)
 * or a code. */
static int zc_fill(dir_t *d)
{
    int fd = d->op->z[d->from].io.fd, moved = 0;
    while (!d->eof && d->inpipe < d->pipecap) {
        ssize_t n = splice(fd, NULL, d->pipe[1], NULL, d->pipecap - d->inpipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->inpipe += (size_t)n;
            moved = 1;
        } else if (n == 0) {
            d->eof = true;
            moved = 1;
        } else if (errno == EAGAIN) {
            return moved;
        } else if (errno != EINTR) {
            d->op->culprit = d->src;
            return -errno;
        }
    }
    return moved;
}

/* Moves the pipe into dst's fd until it is empty or dst takes no more now. */
static int zc_drain(dir_t *d)
{
    int fd = d->op->z[!d->from].io.fd, moved = 0;
    while (d->ready && d->inpipe > 0) {
        ssize_t n =
            splice(d->pipe[0], NULL, fd, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->inpipe -= (size_t)n;
            atomic_fetch_add(&rill__splice_zc_bytes, (uint64_t)n);
            moved = 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            int err = n < 0 ? -errno : RILL_EIO;
            if (err == RILL_EPIPE)
                rill__sigpipe_consume(); /* splice(2) has no MSG_NOSIGNAL */
            d->op->culprit = d->dst;
            return err;
        }
    }
    return moved;
}

/* Fill and drain until neither moves or the round limit (the poller is level-triggered:
 * what is left wakes us again on the next iteration). */
static int zc_step(dir_t *d)
{
    if (d->waiting) {
        int rc = zc_unwait(d);
        if (rc <= 0)
            return rc;
    }
    for (int round = 0; round < ZC_ROUNDS && !d->shutting; round++) {
        int f = zc_fill(d);
        int g = f < 0 ? 0 : zc_drain(d);
        if (f < 0 || g < 0)
            return f < 0 ? f : g;
        if (f || g) {
            rill__tnode_touch(d->op->loop, &d->src->tnode);
            rill__tnode_touch(d->op->loop, &d->dst->tnode);
        }
        if (!f && !g)
            break;
    }
    if (d->eof && !d->inpipe)
        shut_sink(d);
    return 0;
}

static void zc_io(rill__io *io, unsigned revents)
{
    zfd_t *z = rill__container_of(io, zfd_t, io);
    splice_op *op = z->op;
    (void)revents;
    op->refs++;
    for (int i = 0; i < 2 && !op->finished; i++) {
        rill_stream *s = op->s[i];
        if (s->flags & RILL__S_CLOSED) /* its CLOSE is on the way: not one byte more */
            finish(op, s->err ? s->err : RILL_ECLOSED);
    }
    for (int i = 0; i < 2 && !op->finished; i++) {
        dir_t *d = &op->dir[i];
        int rc = d->live && !d->done && !d->deferred ? zc_step(d) : 0;
        if (rc < 0) {
            /* The stream learns it too, as it would have on the copy path: its ERROR
             * handlers run, or it closes when it has none.  First: CLOSE_A / CLOSE_B
             * close it at the end, and a closed stream reports nothing. */
            rill__stream_error(op->culprit, rc);
            finish(op, rc);
        }
    }
    if (!op->finished)
        zc_update(op);
    op_unref(op);
}

/* Watches each dup for what its directions wait for: readable while the pipe it fills
 * has room, writable while the pipe it drains holds bytes. */
static void zc_update(splice_op *op)
{
    unsigned mask[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        dir_t *d = &op->dir[i];
        if (!d->live || d->done || d->shutting || d->deferred)
            continue;
        if (!d->eof && d->inpipe < d->pipecap)
            mask[d->from] |= RILL__IO_READ;
        if (d->ready && d->inpipe)
            mask[!d->from] |= RILL__IO_WRITE;
    }
    for (int i = 0; i < 2; i++) {
        int rc = rill__io_set(op->loop, &op->z[i].io, mask[i]);
        if (rc < 0) {
            finish(op, rc);
            return;
        }
    }
}

static void on_sink_flushed(rill_stream *dst, int status, void *arg)
{
    dir_t *d = arg;
    splice_op *op = d->op;
    (void)dst;
    if (!op->finished) {
        if (status < 0) {
            finish(op, status);
        } else {
            d->ready = true;
            zc_update(op);
        }
    }
    op_unref(op);
}

/* Bytes src buffered before the splice go to dst first, as ordinary writes. */
static int forward_buffered(dir_t *d)
{
    if (!d->src->x)
        return 0; /* nothing was ever buffered */
    rill__buf *in = &d->src->x->in;
    while (in->len) {
        struct iovec iov[64];
        int n = rill__buf_iov(in, iov, 64);
        size_t len = 0;
        for (int i = 0; i < n; i++)
            len += iov[i].iov_len;
        int rc = rill_stream_writev(d->dst, iov, (size_t)n, NULL, NULL);
        if (rc < 0)
            return rc;
        rill__buf_consume(in, len);
    }
    return 0;
}

static int zc_pipe(dir_t *d)
{
    if (pipe2(d->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return rill__errno();
    (void)fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE); /* best effort: a bigger batch */
    int cap = fcntl(d->pipe[1], F_GETPIPE_SZ);
    d->pipecap = cap > 0 ? (size_t)cap : 65536;
    return 0;
}

/* Splicing into dst starts once what its queue holds is written. */
static int zc_sink(dir_t *d)
{
    rill_stream *dst = d->dst;
    if (!rill__wq_len(dst) && !(dst->flags & RILL__S_WBUSY)) {
        d->ready = true;
        return 0;
    }
    int rc = rill_stream_write(dst, NULL, 0, on_sink_flushed, d);
    if (rc < 0)
        return rc;
    d->op->refs++;
    return 0;
}

static int zc_start(dir_t *d)
{
    int rc = zc_pipe(d);
    if (rc < 0)
        return rc;
    rill_stream_stop(d->src);
    /* A receive in the ring (uring backend) is cancelled by the stop, but bytes it took
     * before that still arrive and are kept: reading the fd waits for them to be in. */
    if (!(d->src->flags & RILL__S_URECV))
        return zc_sink(d);
    if (!rill__stream_sx(d->src))
        return RILL_ENOMEM;
    d->waiting = true;
    d->src->x->quiet = &d->op->wake;
    return 0;
}

/* Directions deferred by dir_start begin; zero-copy ones whose source's receive has ended
 * take over from it. */
static void zc_wake(rill__defer *dfr)
{
    splice_op *op = rill__container_of(dfr, splice_op, wake);
    for (int i = 0; i < 2 && !op->finished; i++) {
        dir_t *d = &op->dir[i];
        int rc = 0;
        if (d->deferred) {
            d->deferred = false;
            rc = dir_start(d);
        }
        if (rc >= 0 && d->waiting && !op->finished)
            rc = zc_unwait(d);
        if (rc < 0)
            finish(op, rc);
    }
    if (op->zc && !op->finished)
        zc_update(op);
}

/* src's receive has ended: the bytes it kept go to dst first, then the splice takes over.
 * 1: go on; 0: still waiting (the readable fd wakes us again); or a code. */
static int zc_unwait(dir_t *d)
{
    if (d->src->flags & RILL__S_URECV)
        return 0;
    d->waiting = false;
    d->src->x->quiet = NULL;
    int rc = forward_buffered(d);
    if (rc < 0 || (rc = zc_sink(d)) < 0)
        return rc;
    if (d->eof) /* an EOF event came while it waited (on_eof left the shutdown to us) */
        shut_sink(d);
    return 1;
}

static int zfd_open(splice_op *op, int i)
{
    int fd = fcntl(op->s[i]->io.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return rill__errno();
    rill__io_init(&op->z[i].io, fd, zc_io);
    op->z[i].op = op;
    return 0;
}

/* Hands what the pipe still holds to the sink's queue, then closes the pipe.  A sink
 * whose fd failed gets nothing more: its error is reported once, by the caller. */
static void zc_stop(dir_t *d)
{
    while (d->inpipe > 0 && d->dst != d->op->culprit && rill_stream_writable(d->dst)) {
        char buf[16384];
        ssize_t n = read(d->pipe[0], buf, RILL__MIN(sizeof buf, d->inpipe));
        if (n <= 0 || rill_stream_write(d->dst, buf, (size_t)n, NULL, NULL) < 0)
            break;
        d->inpipe -= (size_t)n;
    }
    close(d->pipe[0]);
    close(d->pipe[1]);
    d->pipe[0] = d->pipe[1] = -1;
}

/* ---- the operation ---------------------------------------------------------------------- */

static void report(rill__defer *dfr)
{
    splice_op *op = rill__container_of(dfr, splice_op, defer);
    if (op->done)
        op->done(op->s[0], op->status, op->arg);
    rill_stream_unref(op->s[0]);
    rill_stream_unref(op->s[1]);
    op_unref(op);
}

static void release_dir(splice_op *op, dir_t *d)
{
    if (d->waiting)
        d->src->x->quiet = NULL;
    for (int k = 0; k < 3; k++)
        rill_stream_off(k < 2 ? d->src : d->dst, d->subs[k]);
    if (d->live && op->zc && d->pipe[0] >= 0)
        zc_stop(d);
    if (d->live && !rill_stream_is_closed(d->src))
        rill_stream_stop(d->src);
}

static void release_stream(splice_op *op, int i)
{
    rill_stream_off(op->s[i], op->subs[i][0]);
    rill_stream_off(op->s[i], op->subs[i][1]);
    if (op->z[i].io.fd >= 0) {
        rill__io_set(op->loop, &op->z[i].io, 0);
        close(op->z[i].io.fd);
        op->z[i].io.fd = -1;
    }
    rill_stream_clear_pending(op->s[i]);
}

/* Ends the splice once: the first status wins.  Leaves the streams stopped (not reading),
 * closes them gracefully when asked, and reports from a deferred call. */
static void finish(splice_op *op, int status)
{
    if (op->finished)
        return;
    op->finished = true;
    op->status = status;
    rill__cancel_unregister(op->watch);
    op->watch = NULL;
    rill__defer_cancel(op->loop, &op->wake);
    for (int i = 0; i < 2; i++)
        release_dir(op, &op->dir[i]);
    for (int i = 0; i < 2; i++)
        release_stream(op, i);
    if (op->flags & RILL_SPLICE_CLOSE_A)
        rill_stream_close_gracefully(op->s[0]);
    if (op->flags & RILL_SPLICE_CLOSE_B)
        rill_stream_close_gracefully(op->s[1]);
    rill__defer_queue(op->loop, &op->defer, op->priority);
}

static void on_stream(rill_stream *s, const rill_event *ev, void *arg)
{
    int err = ev->err;
    if (ev->type == RILL_EV_CLOSE && !err)
        err = RILL_ECLOSED; /* closed under the splice */
    finish(arg, err);
    /* Our handler kept an error from closing the stream; without the user's, it closes
     * as any stream does. */
    if (ev->type == RILL_EV_ERROR && !rill_stream_has_subscribers(s, RILL_EV_ERROR))
        rill_stream_close(s);
}

static void on_cancel(void *arg)
{
    finish(arg, RILL_ECANCELED);
}

static int check(rill_stream *a, rill_stream *b, unsigned flags)
{
    if (!a || !b || a == b || a->loop != b->loop ||
        (flags &
         ~(RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B | RILL_SPLICE_WAIT_BOTH | RILL_SPLICE_COPY)))
        return RILL_EINVAL;
    if ((a->flags | b->flags) & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if ((a->flags | b->flags) & RILL__S_PENDING)
        return RILL_EPENDING;
    return 0;
}

static bool can_read(const rill_stream *s)
{
    return (s->flags & RILL__S_READABLE) || rill__in_len(s) || (s->flags & RILL__S_EOF);
}

static splice_op *op_new(rill_stream *a, rill_stream *b, unsigned flags)
{
    splice_op *op = rill__calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->loop = a->loop;
    op->s[0] = a;
    op->s[1] = b;
    op->flags = flags;
    op->refs = 1;
    rill__defer_init(&op->defer, report);
    rill__defer_init(&op->wake, zc_wake);
    for (int i = 0; i < 2; i++) {
        dir_t *d = &op->dir[i];
        d->op = op;
        d->from = i;
        d->src = op->s[i];
        d->dst = op->s[!i];
        d->live = can_read(d->src) && rill_stream_writable(d->dst);
        d->pipe[0] = d->pipe[1] = -1;
        op->z[i].io.fd = -1;
    }
    return op;
}

/* A direction begins: what src buffered goes first, an EOF that came before the splice
 * travels on at once, then the chosen path starts. */
static int dir_start(dir_t *d)
{
    if (d->src->flags & RILL__S_FEEDING) {
        /* Called from a READ or frame callback of src's: the bytes it hands out are still
         * in src's buffer, and the rest of that read is not in it yet.  src stops reading
         * now; the direction starts once the callback has returned. */
        d->deferred = true;
        rill__defer_queue(d->op->loop, &d->op->wake, 0);
        return rill_stream_stop(d->src);
    }
    /* A framing request still waiting takes its frame from the buffer first; the copying
     * path (the only one then) gets the rest as READ events after it. */
    int rc = rill__frames_pending(d->src) ? 0 : forward_buffered(d);
    if (rc < 0)
        return rc;
    d->eof = (d->src->flags & RILL__S_EOF) != 0;
    if ((rc = d->op->zc ? zc_start(d) : copy_start(d)) < 0)
        return rc;
    if (d->eof)
        shut_sink(d);
    return 0;
}

/* Subscriptions, cancel watch and the directions.  A code: nothing was reported yet and
 * the caller undoes it all. */
static int op_start(splice_op *op, rill_cancel *cancel)
{
    for (int i = 0; i < 2; i++) {
        op->subs[i][0] = rill_stream_on(op->s[i], RILL_EV_ERROR, on_stream, op);
        op->subs[i][1] = rill_stream_on(op->s[i], RILL_EV_CLOSE, on_stream, op);
        if (!op->subs[i][0] || !op->subs[i][1])
            return RILL_ENOMEM;
    }
    if (cancel && !(op->watch = rill__cancel_register(cancel, op->loop, on_cancel, op)))
        return RILL_ENOMEM;
    for (int i = 0; i < 2; i++) {
        dir_t *d = &op->dir[i];
        if (d->live && !(d->subs[1] = rill_stream_on(d->src, RILL_EV_EOF, on_eof, d)))
            return RILL_ENOMEM;
    }
    op->zc = want_zero_copy(op);
    for (int i = 0; op->zc && i < 2; i++) {
        int rc = zfd_open(op, i);
        if (rc < 0)
            return rc;
    }
    for (int i = 0; i < 2 && !op->finished; i++) {
        int rc = op->dir[i].live ? dir_start(&op->dir[i]) : 0;
        if (rc < 0)
            return rc;
    }
    if (op->zc && !op->finished)
        zc_update(op);
    return 0;
}

int rill_splice(rill_stream *a, rill_stream *b, unsigned flags, int priority, rill_cancel *cancel,
                rill_done_fn *done, void *arg)
{
    int rc = check(a, b, flags);
    if (rc < 0)
        return rc;
    splice_op *op = op_new(a, b, flags);
    if (!op)
        return RILL_ENOMEM;
    if (!op->dir[0].live && !op->dir[1].live) {
        rill__free(op);
        return RILL_EINVAL; /* neither side can feed the other */
    }
    op->priority = priority;
    op->done = done;
    op->arg = arg;
    a->flags |= RILL__S_PENDING;
    b->flags |= RILL__S_PENDING;
    rill_stream_ref(a);
    rill_stream_ref(b);
    if ((rc = op_start(op, cancel)) < 0 && !op->finished) {
        op->done = NULL; /* the call fails: its callback never runs */
        op->flags &= ~(RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B);
        finish(op, rc);
        return rc;
    }
    return 0;
}
