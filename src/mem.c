/* src/mem.c - rill_pipe as a loop stream: the bridge between a thread-safe in-memory
 * pipe and one loop.
 *
 * The read end hands the pipe's own memory to the stream (peek, deliver, then consume),
 * so READ handlers and framing see what the writer wrote without a copy, and bytes leave
 * the pipe only while the stream wants them: a stopped stream, or framing that filled
 * its max buffer, leaves the pipe full and blocking writers asleep.  The write end is a
 * readiness transport: writes copy into the pipe while it has room and the stream's own
 * queue keeps the rest.
 *
 * The loop learns about the other threads through the pipe's one-shot readiness hook,
 * which posts a wake-up (rill_loop_post).  The hook runs on a foreign thread, so the
 * bridge state is apart from the stream and reference counted: the stream holds one
 * reference and every post in flight another.  After the close, rill__pipe_set_hook(p,
 * NULL, NULL) guarantees no hook runs any more; posts already queued find the stream
 * gone and only drop their reference. */
#include "pipe.h"

#define PUMP_BUDGET (1024 * 1024) /* bytes delivered per turn before other work runs */

typedef struct bridge {
    atomic_int refs;    /* the stream's, plus one per wake-up post in flight */
    atomic_bool posted; /* a wake-up is queued and has not run yet */
    atomic_bool lost;   /* a wake-up could not be posted (out of memory) */
    rill_loop *loop;
    rill_pipe *p;
    const char *name;  /* the pipe's, for log lines written inside the hook */
    rill_stream *s;    /* NULL once the stream closed: late wake-ups do nothing */
    rill__defer defer; /* wake-ups found on the loop thread, run outside user calls */
    bool read_end;
    bool started;       /* read end: the stream wants bytes */
    bool ended;         /* read end: EOF or an error was delivered */
    bool delivering;    /* read end: inside rill__stream_deliver */
    bool close_pending; /* read end: closed while delivering; close the pipe after */
    bool wwatch;        /* write end: the WRITABLE hook is armed */
} bridge;

static int tp_start(rill_stream *s);
static int tp_stop(rill_stream *s);
static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n);
static int tp_shutdown(rill_stream *s);
static void tp_close(rill_stream *s);

static const rill__transport mem_tp = {.name = "pipe",
                                       .flags = RILL__TP_STATE,
                                       .writev = tp_writev,
                                       .start = tp_start,
                                       .stop = tp_stop,
                                       .shutdown = tp_shutdown,
                                       .close = tp_close};

/* ---- the bridge's lifetime ------------------------------------------------------------ */

static void bridge_ref(bridge *b)
{
    atomic_fetch_add(&b->refs, 1);
}

/* Loop thread only: the last reference always goes there (the stream's at its close, a
 * post's when it has run). */
static void bridge_unref(bridge *b)
{
    if (atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    rill__defer_cancel(b->loop, &b->defer);
    rill__free(b);
}

/* ---- reading: the pipe's bytes go to the stream in place ------------------------------- */

/* How much of a run of n bytes to hand over.  READ handlers borrow all of it; framing
 * keeps what no request takes, so give it no more than its max buffer has room for. */
static size_t chunk(const rill_stream *s, size_t n)
{
    if (!rill__frames_pending(s) && !rill__in_len(s))
        return n;
    return RILL__MIN(n, rill__stream_max_buffer(s) - rill__in_len(s));
}

/* Delivers n bytes (or EOF, or an error) and then consumes them.  A handler that closes
 * the stream must not free the memory under the handlers after it, so tp_close leaves
 * the pipe's close to us. */
static void deliver(bridge *b, const char *data, ssize_t n)
{
    if (n <= 0)
        b->ended = true;
    b->delivering = true;
    rill__stream_deliver(b->s, data, n);
    b->delivering = false;
    if (n > 0)
        rill__pipe_consume(b->p, (size_t)n);
    if (b->close_pending) {
        b->close_pending = false;
        rill_pipe_close(b->p);
    }
}

/* Moves bytes while the stream wants them.  Caller holds a bridge reference. */
static void pump(bridge *b)
{
    size_t budget = PUMP_BUDGET;
    while (b->s && b->started && !b->ended && rill__stream_wants_read(b->s)) {
        if (!budget) { /* a busy writer must not keep the loop from other work */
            rill__defer_queue(b->loop, &b->defer, 0);
            return;
        }
        const char *data = NULL;
        ssize_t n = rill__pipe_peek(b->p, &data);
        if (n == RILL_EAGAIN) {
            /* Arming re-checks under the pipe's lock: a write in between is not lost. */
            if (rill__pipe_watch(b->p, RILL__PIPE_READABLE))
                rill__defer_queue(b->loop, &b->defer, 0);
            return;
        }
        if (n > 0)
            n = (ssize_t)chunk(b->s, (size_t)n);
        deliver(b, data, n); /* n 0: EOF; RILL_ECLOSED: someone closed the pipe */
        budget -= RILL__MIN(budget, n > 0 ? (size_t)n : 0);
    }
}

/* ---- wake-ups ------------------------------------------------------------------------- */

/* Write end: arms the WRITABLE hook while the stream waits for room. */
static void arm_write(bridge *b)
{
    if (b->wwatch || !(b->s->flags & RILL__S_WATCH_W))
        return;
    b->wwatch = true;
    if (rill__pipe_watch(b->p, RILL__PIPE_WRITABLE))
        rill__defer_queue(b->loop, &b->defer, 0); /* room already: flush next turn */
}

/* Loop thread, never inside a user's call: the pipe may have changed. */
static void wake(bridge *b)
{
    if (b->read_end) {
        pump(b);
        return;
    }
    b->wwatch = false;
    if (b->s->flags & RILL__S_WATCH_W)
        rill__stream_io(&b->s->io, RILL__IO_WRITE); /* flush as an fd stream would */
    if (b->s && !(b->s->flags & RILL__S_CLOSED))
        arm_write(b); /* the queue may still wait: the flag stayed, so no update told us */
}

static void on_post(void *arg)
{
    bridge *b = arg;
    atomic_store(&b->posted, false); /* before looking: a later change posts again */
    if (b->s)
        wake(b);
    bridge_unref(b); /* the post's reference */
}

static void on_defer(rill__defer *d)
{
    bridge *b = rill__container_of(d, bridge, defer);
    bridge_ref(b); /* a handler may close the stream, dropping its reference */
    if (b->s)
        wake(b);
    bridge_unref(b);
}

/* The pipe's hook: any thread, with the pipe's lock held, while the stream is open (its
 * reference keeps b alive).  One post at a time is enough: it looks at the pipe after
 * clearing `posted`. */
static void on_ready(rill_pipe *p, unsigned events, void *arg)
{
    bridge *b = arg;
    (void)p;
    (void)events;
    if (atomic_exchange(&b->posted, true))
        return;
    bridge_ref(b);
    if (rill_loop_post(b->loop, on_post, b) == 0)
        return;
    atomic_fetch_sub(&b->refs, 1); /* the stream's reference remains: never the last */
    atomic_store(&b->posted, false);
    atomic_store(&b->lost, true);
    rill__log(RILL_LOG_ERROR, "pipe %s: out of memory; its stream waits for its next state change",
              b->name);
}

/* A lost wake-up is made good at the stream's next state change (start, stop, write). */
static void recover(bridge *b)
{
    if (!atomic_load(&b->lost) || !atomic_exchange(&b->lost, false))
        return;
    b->wwatch = false;
    rill__defer_queue(b->loop, &b->defer, 0);
}

/* ---- transport ------------------------------------------------------------------------ */

/* stream.c calls start or stop on every state change: note the change, act later. */
static int tp_sync(rill_stream *s, bool reading)
{
    bridge *b = rill__tpdata(s);
    recover(b);
    if (!b->read_end) {
        arm_write(b);
        return 0;
    }
    if (reading && !b->started)
        rill__defer_queue(b->loop, &b->defer, 0); /* never deliver inside the user's call */
    b->started = reading;
    return 0;
}

static int tp_start(rill_stream *s)
{
    return tp_sync(s, true);
}

static int tp_stop(rill_stream *s)
{
    return tp_sync(s, false);
}

/* Copies what fits below the pipe's bsize; RILL_EAGAIN when nothing does. */
static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n)
{
    bridge *b = rill__tpdata(s);
    size_t done = 0;
    for (int i = 0; i < n; i++) {
        if (!iov[i].iov_len)
            continue;
        ssize_t r = rill__pipe_write_nb(b->p, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return done ? (ssize_t)done : r; /* an error after progress shows next time */
        done += (size_t)r;
        if ((size_t)r < iov[i].iov_len)
            break;
    }
    return (ssize_t)done;
}

static int tp_shutdown(rill_stream *s)
{
    bridge *b = rill__tpdata(s);
    return rill_pipe_write_eof(b->p);
}

/* Read end: closes the pipe as its reader (now, or once the delivery in progress has
 * returned).  Write end: ends the data.  The pipe is not touched after this. */
static void tp_close(rill_stream *s)
{
    bridge *b = rill__tpdata(s);
    rill__pipe_set_hook(b->p, NULL, NULL);
    rill__defer_cancel(b->loop, &b->defer);
    b->s = NULL;
    if (!b->read_end)
        (void)rill_pipe_write_eof(b->p); /* RILL_EPIPE when the reader left: nothing to do */
    else if (b->delivering)
        b->close_pending = true;
    else
        rill_pipe_close(b->p);
    bridge_unref(b);
}

/* ---- construction --------------------------------------------------------------------- */

rill_stream *rill_pipe_stream(rill_loop *loop, rill_pipe *p, bool read_end)
{
    if (!loop || !p) {
        errno = EINVAL;
        return NULL;
    }
    bridge *b = rill__calloc(1, sizeof *b);
    uint32_t flags = read_end ? RILL__S_READABLE : RILL__S_WRITABLE;
    rill_stream *s = b ? rill__stream_new(loop, &mem_tp, -1, flags) : NULL;
    if (!s) {
        rill__free(b);
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&b->refs, 1);
    atomic_init(&b->posted, false);
    atomic_init(&b->lost, false);
    b->loop = loop;
    b->p = p;
    b->name = rill_pipe_name(p);
    b->s = s;
    b->read_end = read_end;
    rill__defer_init(&b->defer, on_defer);
    rill__set_tpdata(s, b);
    rill__pipe_set_hook(p, on_ready, b);
    return s;
}
