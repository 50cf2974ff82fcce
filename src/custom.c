/* src/custom.c - streams over blocking calls (user transports, files): the calls run on
 * the loop's thread pool, results come back on the loop thread.
 *
 * This is GIO's "default async fallback that uses threads".  The transport is ASYNC
 * (internal.h): stream.c hands it one batch of the write queue at a time and learns the
 * result through rill__stream_write_done; reads are delivered with rill__stream_deliver
 * while the stream wants data.  At most one call per direction is on the pool; file
 * streams allow one call in all (reads and writes move the same file offset).
 *
 * The state lives apart from the stream and is reference counted: each call on the pool
 * holds a reference, so a stream may close (and go) while a call blocks.  From the close
 * on nothing is delivered; close(impl) runs once, after the calls in progress returned,
 * and is the last call made on impl.  A write batch is copied into the state before it
 * goes to the pool, because a closing stream frees its queue while the call may still be
 * reading it. */
#include "custom.h"

#define READ_SIZE (64 * 1024)
#define WRITE_MAX (256 * 1024) /* bytes copied per write call; the rest waits its turn */

typedef struct pool_tp {
    rill_stream *s; /* NULL once the stream closed: nothing is delivered after */
    rill_loop *loop;
    const rill_transport_ops *ops;
    void *impl;
    int refs;    /* the stream's, plus one per call on the pool (loop thread only) */
    bool serial; /* one call at a time in all directions */
    bool started;
    int rfail, wfail; /* a read / write (or shutdown) that could not be submitted */
    bool wfail_shut;
    rill__defer defer;
    /* reading */
    bool rbusy, rheld, rend; /* a read runs / its result waits for start / EOF or error */
    char *rbuf;
    ssize_t rres;
    /* writing: a write or a shutdown */
    bool wbusy, wwait, swait; /* a call runs / a write waits / a shutdown waits */
    char *wbuf;
    size_t wcap, wlen;
    ssize_t wres;
    /* closing */
    bool closing, cbusy;
    atomic_bool abandon; /* set at the close: a write retrying RILL_EAGAIN gives up */
    int cres;
    rill_stream *held; /* reference from the close until close(impl) returned */
    void (*closed_fn)(void *, int);
    void *closed_arg;
} pool_tp;

static void pump(pool_tp *p);

static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n);
static int tp_start(rill_stream *s);
static int tp_stop(rill_stream *s);
static int tp_shutdown(rill_stream *s);
static void tp_close(rill_stream *s);

static const rill__transport custom_tp = {.name = "custom",
                                          .flags = RILL__TP_ASYNC | RILL__TP_STATE,
                                          .writev = tp_writev,
                                          .start = tp_start,
                                          .stop = tp_stop,
                                          .shutdown = tp_shutdown,
                                          .close = tp_close};
static const rill__transport file_tp = {.name = "file",
                                        .flags = RILL__TP_ASYNC | RILL__TP_STATE,
                                        .writev = tp_writev,
                                        .start = tp_start,
                                        .stop = tp_stop,
                                        .shutdown = tp_shutdown,
                                        .close = tp_close};

static bool is_pool_stream(const rill_stream *s)
{
    return s->tp == &custom_tp || s->tp == &file_tp;
}

/* ---- state ----------------------------------------------------------------------------- */

static void state_unref(pool_tp *p)
{
    if (--p->refs > 0)
        return;
    rill__defer_cancel(p->loop, &p->defer);
    rill__free(p->rbuf);
    rill__free(p->wbuf);
    rill__free(p);
}

/* A call returned: its reference goes, and a close that waited for it may start. */
static void call_end(pool_tp *p)
{
    if (p->closing)
        pump(p);
    state_unref(p);
}

static int submit(pool_tp *p, void (*work)(void *), void (*done)(void *, int))
{
    int rc = rill_loop_work(p->loop, work, done, p);
    if (rc == 0)
        p->refs++;
    return rc;
}

/* The pool refused a call (out of memory, no threads): the defer completes it with the
 * error, as if the call had failed. */
static void fail_later(pool_tp *p, int *slot, int err)
{
    *slot = err;
    rill__defer_queue(p->loop, &p->defer, 0);
}

/* ---- reading ----------------------------------------------------------------------------- */

static void read_work(void *arg)
{
    pool_tp *p = arg;
    p->rres = p->ops->read(p->impl, p->rbuf, READ_SIZE);
    if (p->rres > READ_SIZE)
        p->rres = RILL_EIO; /* a transport that claims more than it was given is broken */
}

static void deliver(pool_tp *p)
{
    ssize_t r = p->rres;
    if (r <= 0)
        p->rend = true; /* EOF or an error: no more reads */
    rill__stream_deliver(p->s, p->rbuf, r);
}

static void read_done(void *arg, int status)
{
    pool_tp *p = arg;
    (void)status;
    p->rbusy = false;
    if (p->s && p->rres != RILL_EAGAIN) {
        if (p->started)
            deliver(p);
        else
            p->rheld = true; /* the stream paused meanwhile: keep it for the next start */
    }
    pump(p);
    call_end(p);
}

static int tp_start(rill_stream *s)
{
    pool_tp *p = rill__tpdata(s);
    p->started = true;
    if (p->rheld)
        rill__defer_queue(p->loop, &p->defer, 0); /* never inside the user's call */
    else
        pump(p);
    return 0;
}

static int tp_stop(rill_stream *s)
{
    pool_tp *p = rill__tpdata(s);
    p->started = false;
    return 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

static void write_work(void *arg)
{
    pool_tp *p = arg;
    size_t off = 0;
    ssize_t r = 0;
    while (off < p->wlen) {
        r = p->ops->write(p->impl, p->wbuf + off, p->wlen - off);
        if (r == RILL_EAGAIN && !atomic_load(&p->abandon))
            continue; /* a write that timed out: call again until the stream closes */
        if (r <= 0 || (size_t)r > p->wlen - off)
            break;
        off += (size_t)r;
    }
    if (off)
        p->wres = (ssize_t)off; /* an error after progress shows up on the next call */
    else
        p->wres = r < 0 ? r : RILL_EIO; /* 0 bytes or an impossible count */
}

static void write_done(void *arg, int status)
{
    pool_tp *p = arg;
    (void)status;
    p->wbusy = false;
    if (p->s)
        rill__stream_write_done(p->s, p->wres); /* may hand over the next batch */
    pump(p);
    call_end(p);
}

static int copy_batch(pool_tp *p, const struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    total = RILL__MIN(total, (size_t)WRITE_MAX);
    if (total > p->wcap) {
        char *b = rill__realloc(p->wbuf, total);
        if (!b)
            return RILL_ENOMEM;
        p->wbuf = b;
        p->wcap = total;
    }
    p->wlen = 0;
    for (int i = 0; i < n && p->wlen < total; i++) {
        size_t k = RILL__MIN(iov[i].iov_len, total - p->wlen);
        memcpy(p->wbuf + p->wlen, iov[i].iov_base, k);
        p->wlen += k;
    }
    return 0;
}

static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n)
{
    pool_tp *p = rill__tpdata(s);
    int rc = copy_batch(p, iov, n);
    if (rc < 0)
        return rc;
    p->wwait = true;
    pump(p);
    return RILL_EINPROGRESS;
}

static void shutdown_work(void *arg)
{
    pool_tp *p = arg;
    p->wres = p->ops->shutdown(p->impl);
}

static void shutdown_done(void *arg, int status)
{
    pool_tp *p = arg;
    (void)status;
    p->wbusy = false;
    if (p->s)
        rill__stream_shutdown_done(p->s, (int)p->wres);
    pump(p);
    call_end(p);
}

static int tp_shutdown(rill_stream *s)
{
    pool_tp *p = rill__tpdata(s);
    if (!p->ops->shutdown)
        return 0; /* nothing to end: no more writes is all it means */
    p->swait = true;
    pump(p);
    return RILL_EINPROGRESS;
}

/* ---- closing ----------------------------------------------------------------------------- */

static void close_work(void *arg)
{
    pool_tp *p = arg;
    p->cres = p->ops->close(p->impl);
}

/* close(impl) returned (or there was none): the last word on the stream. */
static void close_finish(pool_tp *p, int status)
{
    rill_stream *s = p->held;
    p->held = NULL;
    if (!s->err && status < 0)
        s->err = (int16_t)status; /* rill_stream_error tells it even after CLOSE */
    rill__set_tpdata(s, NULL);
    if (p->closed_fn)
        p->closed_fn(p->closed_arg, status);
    rill_stream_unref(s);
}

static void close_done(void *arg, int status)
{
    pool_tp *p = arg;
    (void)status;
    p->cbusy = false;
    close_finish(p, p->cres);
    state_unref(p);
}

static void tp_close(rill_stream *s)
{
    pool_tp *p = rill__tpdata(s);
    p->s = NULL;
    p->closing = true;
    atomic_store(&p->abandon, true);
    p->started = false;
    p->held = rill_stream_ref(s);
    pump(p);
    state_unref(p); /* the stream's reference */
}

/* ---- scheduling ---------------------------------------------------------------------------- */

static void start_close(pool_tp *p)
{
    p->closing = false; /* started: nothing more to schedule */
    if (p->ops->close) {
        int rc = submit(p, close_work, close_done);
        if (rc == 0) {
            p->cbusy = true;
            return;
        }
        rill__log(RILL_LOG_WARN, "pool transport: closing on the loop thread (%s)",
                  rill_strerror(rc));
        p->cres = p->ops->close(p->impl); /* blocking, but nothing may leak */
        close_finish(p, p->cres);
        return;
    }
    close_finish(p, 0);
}

static void pump_write(pool_tp *p)
{
    if (!p->wwait && !p->swait)
        return;
    bool shut = !p->wwait;
    int rc = shut ? submit(p, shutdown_work, shutdown_done) : submit(p, write_work, write_done);
    if (shut)
        p->swait = false;
    else
        p->wwait = false;
    if (rc == 0) {
        p->wbusy = true;
        return;
    }
    p->wfail_shut = shut;
    fail_later(p, &p->wfail, rc);
}

static void pump_read(pool_tp *p)
{
    int rc = RILL_ENOMEM;
    if (p->rbuf || (p->rbuf = rill__malloc(READ_SIZE)))
        rc = submit(p, read_work, read_done);
    if (rc == 0)
        p->rbusy = true;
    else
        fail_later(p, &p->rfail, rc);
}

/* Starts what may run now: the close once every call returned; else a waiting write or
 * shutdown, then a read while the stream wants data. */
static void pump(pool_tp *p)
{
    if (p->closing) {
        if (!p->rbusy && !p->wbusy)
            start_close(p);
        return;
    }
    if (!p->s)
        return;
    if (!p->wbusy && !p->wfail && !(p->serial && p->rbusy))
        pump_write(p);
    if (p->started && !p->rbusy && !p->rheld && !p->rend && !p->rfail && p->ops->read &&
        !(p->serial && p->wbusy))
        pump_read(p);
}

/* Deferred work: calls the pool refused complete with their error; a held read result
 * goes out once the stream reads again.  Each step may close the stream. */
static void on_defer(rill__defer *d)
{
    pool_tp *p = rill__container_of(d, pool_tp, defer);
    p->refs++;
    if (p->s && p->wfail) {
        int e = p->wfail;
        p->wfail = 0;
        if (p->wfail_shut)
            rill__stream_shutdown_done(p->s, e);
        else
            rill__stream_write_done(p->s, e);
    }
    if (p->s && p->rfail) {
        p->rres = p->rfail;
        p->rfail = 0;
        deliver(p);
    }
    if (p->s && p->rheld && p->started) {
        p->rheld = false;
        deliver(p);
    }
    pump(p);
    state_unref(p);
}

/* ---- construction -------------------------------------------------------------------------- */

rill_stream *rill__pool_stream(rill_loop *loop, const rill_transport_ops *ops, void *impl,
                               uint32_t sflags, int kind, int fd)
{
    pool_tp *p = rill__calloc(1, sizeof *p);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    const rill__transport *tp = kind == RILL__POOL_FILE ? &file_tp : &custom_tp;
    rill_stream *s = rill__stream_new(loop, tp, fd, sflags);
    if (!s) {
        rill__free(p);
        errno = ENOMEM;
        return NULL;
    }
    p->s = s;
    p->loop = loop;
    p->ops = ops;
    p->impl = impl;
    p->refs = 1;
    p->serial = kind == RILL__POOL_FILE;
    atomic_init(&p->abandon, false);
    rill__defer_init(&p->defer, on_defer);
    rill__set_tpdata(s, p);
    return s;
}

rill_stream *rill_stream_new_custom(rill_loop *loop, const rill_transport_ops *ops, void *impl)
{
    if (!loop || !ops || (!ops->read && !ops->write)) {
        errno = EINVAL;
        return NULL;
    }
    uint32_t sflags = (ops->read ? RILL__S_READABLE : 0) | (ops->write ? RILL__S_WRITABLE : 0);
    return rill__pool_stream(loop, ops, impl, sflags, RILL__POOL_CUSTOM, -1);
}

int rill__pool_close_wait(rill_stream *s, void (*fn)(void *arg, int status), void *arg)
{
    if (!s || !is_pool_stream(s) || !rill__tpdata(s) || !(s->flags & RILL__S_CLOSED))
        return RILL_EINVAL;
    pool_tp *p = rill__tpdata(s);
    if (p->closed_fn)
        return RILL_EINVAL; /* one waiter is all close_async needs */
    p->closed_fn = fn;
    p->closed_arg = arg;
    return 0;
}
