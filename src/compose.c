/* src/compose.c - GIO's IOStream rules on top of the stream type: composed duplex streams
 * (GIO's simple IO stream), the pending flag, and close_async.
 *
 * A composed stream is a stream like any other whose transport forwards: it is ASYNC
 * (internal.h), so each batch of its write queue goes to `out` as one write and counts
 * as written when `out` has handed it to the kernel; that keeps the composed stream's
 * write callbacks, DRAIN and close_gracefully honest.  Reading subscribes to `in`'s
 * events and delivers what `in` reads.  The composed stream holds one reference on each
 * half from rill_stream_compose until it closes them. */
#include "cancel.h"
#include "custom.h"

enum { IN_READ, IN_EOF, IN_ERROR, IN_CLOSE, OUT_ERROR, OUT_CLOSE, NSUBS };

typedef struct {
    rill_stream *s, *in, *out;
    rill_sub *subs[NSUBS];
    size_t inflight;            /* bytes of the write `out` is doing for s */
    bool in_done;               /* in's EOF or failure reached s: its CLOSE is no news */
    bool in_failed, out_failed; /* one error per half reaches s, not one per symptom */
} compose_tp;

static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n);
static int tp_start(rill_stream *s);
static int tp_stop(rill_stream *s);
static int tp_shutdown(rill_stream *s);
static void tp_close(rill_stream *s);

static const rill__transport compose_transport = {.name = "compose",
                                                  .flags = RILL__TP_ASYNC | RILL__TP_STATE,
                                                  .writev = tp_writev,
                                                  .start = tp_start,
                                                  .stop = tp_stop,
                                                  .shutdown = tp_shutdown,
                                                  .close = tp_close};

/* The composed stream's state, or NULL when s is not composed (or closed). */
static compose_tp *composed(const rill_stream *s)
{
    return s && s->tp == &compose_transport ? rill__tpdata(s) : NULL;
}

/* ---- events of the halves ------------------------------------------------------------------ */

/* An error of a half reaches the composed stream once. */
static void half_failed(compose_tp *c, bool *failed, int err)
{
    if (*failed)
        return;
    *failed = true;
    rill__stream_error(c->s, err);
}

static void on_in(rill_stream *in, const rill_event *ev, void *arg)
{
    compose_tp *c = arg;
    (void)in;
    switch (ev->type) {
    case RILL_EV_READ:
        rill__stream_deliver(c->s, ev->data, (ssize_t)ev->len);
        break;
    case RILL_EV_EOF:
        c->in_done = true;
        rill__stream_deliver(c->s, NULL, 0);
        break;
    case RILL_EV_ERROR:
        c->in_done = true;
        half_failed(c, &c->in_failed, ev->err);
        break;
    default: /* CLOSE: someone closed the half under the composed stream */
        if (!c->in_done)
            half_failed(c, &c->in_failed, ev->err ? ev->err : RILL_ECLOSED);
        break;
    }
}

static void on_out(rill_stream *out, const rill_event *ev, void *arg)
{
    compose_tp *c = arg;
    (void)out;
    half_failed(c, &c->out_failed, ev->err ? ev->err : RILL_ECLOSED);
}

/* ---- transport --------------------------------------------------------------------------- */

static void on_written(rill_stream *out, int status, void *arg)
{
    rill_stream *s = arg;
    compose_tp *c = composed(s);
    (void)out;
    if (c && !(s->flags & RILL__S_CLOSED)) {
        if (status < 0)
            c->out_failed = true; /* write_done reports it; out's ERROR must not again */
        rill__stream_write_done(s, status < 0 ? status : (ssize_t)c->inflight);
    } else {
        rill__stream_write_done(s, RILL_ECANCELED); /* only clears the busy flag */
    }
    rill_stream_unref(s);
}

static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n)
{
    compose_tp *c = rill__tpdata(s);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    int rc = rill_stream_writev(c->out, iov, (size_t)n, on_written, s);
    if (rc < 0) {
        c->out_failed = true;
        return rc;
    }
    c->inflight = total;
    rill_stream_ref(s);
    return RILL_EINPROGRESS;
}

static int tp_start(rill_stream *s)
{
    compose_tp *c = rill__tpdata(s);
    if (rill_stream_is_closed(c->in) || !rill_stream_readable(c->in))
        return 0; /* its CLOSE, EOF or error tells the composed stream */
    return rill_stream_start(c->in);
}

static int tp_stop(rill_stream *s)
{
    compose_tp *c = rill__tpdata(s);
    if (!rill_stream_is_closed(c->in))
        rill_stream_stop(c->in);
    return 0;
}

static void on_shut(rill_stream *out, int status, void *arg)
{
    rill_stream *s = arg;
    (void)out;
    if (!(s->flags & RILL__S_CLOSED))
        rill__stream_shutdown_done(s, status);
    rill_stream_unref(s);
}

static int tp_shutdown(rill_stream *s)
{
    compose_tp *c = rill__tpdata(s);
    int rc = rill_stream_shutdown(c->out, on_shut, s);
    if (rc < 0)
        return rc;
    rill_stream_ref(s);
    return RILL_EINPROGRESS;
}

/* Closing the composed stream closes both halves now (the composed stream's own queue,
 * which close_gracefully flushes, is all that waits for `out`). */
static void tp_close(rill_stream *s)
{
    compose_tp *c = rill__tpdata(s);
    rill__set_tpdata(s, NULL);
    for (int i = 0; i < NSUBS; i++)
        rill_stream_off(i < OUT_ERROR ? c->in : c->out, c->subs[i]);
    rill_stream_close(c->in);
    rill_stream_close(c->out);
    rill_stream_unref(c->in);
    rill_stream_unref(c->out);
    rill__free(c);
}

/* ---- construction ---------------------------------------------------------------------- */

static bool subscribe(compose_tp *c)
{
    static const rill_event_type in_ev[] = {RILL_EV_READ, RILL_EV_EOF, RILL_EV_ERROR,
                                            RILL_EV_CLOSE};
    for (int i = 0; i < NSUBS; i++) {
        if (i < OUT_ERROR)
            c->subs[i] = rill_stream_on(c->in, in_ev[i], on_in, c);
        else
            c->subs[i] =
                rill_stream_on(c->out, i == OUT_ERROR ? RILL_EV_ERROR : RILL_EV_CLOSE, on_out, c);
        if (!c->subs[i])
            return false;
    }
    return true;
}

static void unsubscribe(compose_tp *c)
{
    for (int i = 0; i < NSUBS; i++)
        rill_stream_off(i < OUT_ERROR ? c->in : c->out, c->subs[i]);
}

static int compose_check(rill_loop *loop, rill_stream *in, rill_stream *out)
{
    if (!loop || !in || !out || in == out || in->loop != loop || out->loop != loop)
        return RILL_EINVAL;
    if (rill_stream_is_closed(in) || rill_stream_is_closed(out))
        return RILL_ECLOSED;
    return 0;
}

rill_stream *rill_stream_compose(rill_loop *loop, rill_stream *in, rill_stream *out)
{
    int rc = compose_check(loop, in, out);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    compose_tp *c = rill__calloc(1, sizeof *c);
    uint32_t sf = (rill_stream_readable(in) ? RILL__S_READABLE : 0) |
                  (rill_stream_writable(out) ? RILL__S_WRITABLE : 0);
    rill_stream *s = c ? rill__stream_new(loop, &compose_transport, -1, sf) : NULL;
    if (c) {
        c->s = s;
        c->in = in;
        c->out = out;
    }
    if (!s || !subscribe(c)) {
        if (c)
            unsubscribe(c);
        if (s) {
            s->tp = &rill__fd_transport; /* nothing of ours to release */
            rill_stream_close(s);
        }
        rill__free(c);
        errno = ENOMEM;
        return NULL;
    }
    rill_stream_ref(in);
    rill_stream_ref(out);
    rill__set_tpdata(s, c);
    return s;
}

rill_stream *rill_stream_input_stream(rill_stream *s)
{
    compose_tp *c = composed(s);
    return c ? c->in : s;
}

rill_stream *rill_stream_output_stream(rill_stream *s)
{
    compose_tp *c = composed(s);
    return c ? c->out : s;
}

/* ---- the pending flag -------------------------------------------------------------------- */

int rill_stream_set_pending(rill_stream *s)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if (s->flags & RILL__S_PENDING)
        return RILL_EPENDING;
    s->flags |= RILL__S_PENDING;
    return 0;
}

void rill_stream_clear_pending(rill_stream *s)
{
    if (s)
        s->flags &= ~RILL__S_PENDING;
}

bool rill_stream_has_pending(const rill_stream *s)
{
    return s && (s->flags & RILL__S_PENDING);
}

/* ---- close_async --------------------------------------------------------------------------
 * Flush, close, report the first error.  The flush is a zero-length write whose callback
 * runs once every byte queued before it was written (or with the error that stopped
 * them), plus close_gracefully, which closes when the queue is empty.  CLOSE ends the
 * operation, except that a pool stream (custom, file) is waited for until its close call
 * returned, whose error counts too.  The completion is a deferred call at the caller's
 * priority, so completions that become ready together run lower priority first. */

typedef struct {
    rill__defer defer;
    rill_stream *s;
    rill_done_fn *cb;
    void *arg;
    int priority;
    int status;     /* the first error */
    int err_before; /* the stream's error when the close began: not news */
    rill__cancel_watch *watch;
    bool cancelled;
} close_op;

static void first_error(close_op *op, int err)
{
    if (!op->status && err < 0)
        op->status = err;
}

static void close_report(rill__defer *d)
{
    close_op *op = rill__container_of(d, close_op, defer);
    rill_stream *s = op->s;
    rill_stream_clear_pending(s);
    if (op->cb)
        op->cb(s, op->status, op->arg);
    rill_stream_unref(s);
    rill__free(op);
}

static void close_complete(close_op *op)
{
    rill__cancel_unregister(op->watch); /* from now on the token may go */
    op->watch = NULL;
    rill__defer_init(&op->defer, close_report);
    rill__defer_queue(op->s->loop, &op->defer, op->priority);
}

static void on_flushed(rill_stream *s, int status, void *arg)
{
    close_op *op = arg;
    if (status == RILL_ECANCELED && !op->err_before && s->err)
        status = s->err; /* a timeout or a failure closed it first: that is the cause */
    first_error(op, status);
}

static void on_tp_closed(void *arg, int status)
{
    first_error(arg, status);
    close_complete(arg);
}

static void on_closed(rill_stream *s, const rill_event *ev, void *arg)
{
    close_op *op = arg;
    if (!op->err_before)
        first_error(op, ev->err);
    if (op->cancelled || rill__pool_close_wait(s, on_tp_closed, op) < 0)
        close_complete(op);
}

static void on_cancel(void *arg)
{
    close_op *op = arg;
    if (op->s->flags & RILL__S_CLOSED)
        return; /* the close itself happened: too late to change anything */
    op->cancelled = true;
    first_error(op, RILL_ECANCELED);
    rill_stream_close(op->s); /* abandons the flush: queued writes end with ECANCELED */
}

static void close_start(close_op *op, rill_cancel *cancel)
{
    rill_stream *s = op->s;
    if (rill_cancel_is_triggered(cancel)) {
        on_cancel(op);
        return;
    }
    /* With nothing queued there is nothing to flush: the close is immediate.  The write
     * fails on a stream already shut down or broken; close_gracefully still waits for
     * its queue and CLOSE brings the error. */
    if (rill__wq_len(s) || (s->flags & (RILL__S_WBUSY | RILL__S_CONNECTING)))
        (void)rill_stream_write(s, NULL, 0, on_flushed, op);
    rill_stream_close_gracefully(s);
}

int rill_stream_close_async(rill_stream *s, int priority, rill_cancel *cancel, rill_done_fn *cb,
                            void *arg)
{
    if (!s)
        return RILL_EINVAL;
    bool closed = s->flags & RILL__S_CLOSED;
    if (!closed && (s->flags & RILL__S_PENDING))
        return RILL_EPENDING;
    close_op *op = rill__calloc(1, sizeof *op);
    if (!op)
        return RILL_ENOMEM;
    *op = (close_op){.s = s, .cb = cb, .arg = arg, .priority = priority, .err_before = s->err};
    if (!closed) {
        if (cancel && !(op->watch = rill__cancel_register(cancel, s->loop, on_cancel, op))) {
            rill__free(op);
            return RILL_ENOMEM;
        }
        if (!rill_stream_on(s, RILL_EV_CLOSE, on_closed, op)) {
            rill__cancel_unregister(op->watch);
            rill__free(op);
            return RILL_ENOMEM;
        }
        s->flags |= RILL__S_PENDING;
    }
    rill_stream_ref(s);
    if (closed)
        close_complete(op); /* closing again is not an error */
    else
        close_start(op, cancel);
    return 0;
}
