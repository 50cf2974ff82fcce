/* tests/test_write_random.c - a randomized differential test of the write path.
 *
 * 150 cases, each from a fixed seed (never the clock).  One end of a real connection (an
 * AF_UNIX socketpair, or a loopback TCP connection with small SO_SNDBUF / SO_RCVBUF set on
 * the raw fds before the stream wraps one, so that writes are partial) is a rill stream;
 * the other end is a raw non-blocking fd that the driver reads at a varying speed (paused
 * for random loop iterations, random read sizes).  The stream gets a random sequence of
 * write operations: rill_stream_write (0 bytes to 256 KiB, the caller's buffer scribbled
 * over right after the call), rill_stream_writev (the same bytes in random pieces, some
 * empty), rill_stream_write_bytes (rill_bytes_wrap, the caller's reference dropped at
 * once), rill_stream_try_write, and new water marks (from the driver, when the queue is
 * empty: see below); most writes have a completion callback.  Operations come in bursts
 * from the driver, from completion callbacks and from DRAIN handlers (until a write says
 * 1).  The case ends with
 * rill_stream_shutdown, rill_stream_close_gracefully, rill_stream_close with writes still
 * queued, or rill_stream_close once everything was written, made from the driver or from
 * the callback that offered the last bytes.
 *
 * Checked against a model of the contract (include/rill/stream.h, docs/guide.md):
 * - the reader gets exactly the accepted bytes (writes, and the prefix try_write took),
 *   in order, then EOF; after rill_stream_close, exactly what had left the queue (on
 *   uring, where a send in flight is still counted as queued, at least that);
 * - write / writev / write_bytes return 1 exactly when the queue reached the high mark;
 * - every completion runs once, in order, never inside a call into the library, with 0
 *   and only once its bytes left the queue (accepted - queued >= its end); after a close,
 *   the writes not written complete with RILL_ECANCELED (on epoll and poll: exactly those
 *   whose end is past what had left the queue), all before CLOSE, none after;
 * - try_write refuses (RILL_EAGAIN) while writes are queued or in flight, never queues,
 *   and, on epoll and poll over AF_UNIX, says RILL_EAGAIN with nothing queued only when
 *   the socket does not poll writable;
 * - what left the queue never decreases, and (epoll, poll) the reader never has more;
 * - DRAIN never fires spuriously: a DRAIN needs the queue to have gone from at or below
 *   the low mark to above it (observed around every write) since the previous one; and
 *   once it went above, a DRAIN follows before the queue is seen empty and idle;
 * - WRITE events add up to the bytes the write calls put out (try_write has no event);
 * - shutdown: its callback runs once with 0, after every write completed; then writes say
 *   RILL_EPIPE and a second shutdown RILL_EPENDING; CLOSE fires once, with 0; after it
 *   writes say RILL_ECLOSED; every rill_bytes is freed.
 *
 * Left out, as the contract does not settle them:
 * - water marks changed inside a completion callback: the queue's fall is measured
 *   against the low mark in force after the completions, so a queue that was never above
 *   the old low mark may report DRAIN when the new one is lower (or none when higher);
 * - DRAIN owed when close_gracefully empties the queue: the stream is closed by then, and
 *   no DRAIN comes;
 * - writes made after close_gracefully (the implementation accepts them and writes them
 *   before closing).
 *
 * On failure the message names the case; RILL_WRITE_CASE=N runs case N alone,
 * RILL_WRITE_SEED=S makes other cases, RILL_WRITE_VERBOSE=1 prints each case and
 * RILL_WRITE_TRACE=1 every operation and event. */
#include "harness.h"
#include "th_rand.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEED 0x72696c6c77726974ull /* fixed: every run makes the same cases */
#define CASE_MS 20000              /* bound for one case */
#define MAX_WRITE (256u * 1024)
#define MAX_RECS 4096        /* write records per case */
#define QUEUE_CAP (1u << 20) /* no new writes while this much is queued */

/* SEED, or RILL_WRITE_SEED to explore other cases (the failure message names it). */
static uint64_t seed = SEED;

/* ---- the byte stream: byte p of a case is a function of p ------------------------------ */

static void pattern(uint64_t salt, uint64_t off, unsigned char *out, size_t len)
{
    uint64_t word = 0, have = UINT64_MAX;
    for (size_t i = 0; i < len; i++) {
        uint64_t p = off + i;
        if (p >> 3 != have) {
            have = p >> 3;
            word = seed_of(salt ^ have);
        }
        out[i] = (unsigned char)(word >> ((p & 7) * 8));
    }
}

/* ---- a case ------------------------------------------------------------------------------ */

enum { END_SHUTDOWN, END_GRACEFUL, END_CLOSE, END_IDLE_CLOSE, END__COUNT };
static const char *const end_name[END__COUNT] = {"shutdown", "close_gracefully", "close",
                                                 "close when idle"};

typedef struct kase kase;

typedef struct {
    kase *c;
    uint64_t end; /* accepted bytes once this write was accepted */
    int status;
    bool done;
} wrec;

typedef struct {
    const char *name;
    int first, count;
    int tcp_pct; /* cases over loopback TCP */
} group;

typedef struct {
    size_t ops, writes_1, tries, try_eagain, drains, cancelled, partial_ends;
    uint64_t bytes;
} stats;

struct kase {
    int num;
    const group *g;
    bool tcp, deferred, write_ev, end_inline;
    int end_kind, sndbuf, rcvbuf;
    uint64_t ws, rs, salt;
    rill_loop *loop;
    rill_stream *s;
    int rfd;
    size_t budget, maxw, low, high, cb_pct, burst_pct;
    uint64_t acc, acc_try, recv, k_last, k_close;
    bool eof, ended, idle_close, closed_now, shut_called, shut_done, close_called;
    wrec *w;
    size_t nw, next_done, ncb, ndone;
    int depth; /* inside a call into the library */
    int in_cb; /* inside one of the stream's callbacks */
    uint64_t ups, drains;
    bool drain_owed;
    uint64_t wsum;
    int closes, close_err, shut_calls, shut_status;
    size_t pause, rmax;
    unsigned char *scratch, *rbuf, *expect;
    size_t bytes_made, bytes_freed_at_end;
    stats st;
    bool failed;
    char msg[768];
};

static size_t bytes_freed;
static bool trace; /* RILL_WRITE_TRACE=1: every operation and event */

#define TRACE(...)                                                                                 \
    do {                                                                                           \
        if (trace)                                                                                 \
            print_message(__VA_ARGS__);                                                            \
    } while (0) /* rill_bytes buffers freed (free_fn of rill_bytes_wrap) */

static void failf(kase *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void failf(kase *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    int k = snprintf(c->msg, sizeof c->msg,
                     "case %d (%s; RILL_WRITE_SEED=%#llx RILL_WRITE_CASE=%d runs it alone; %s, "
                     "end by %s%s, low %zu high %zu, %llu accepted, %llu received): ",
                     c->num, c->g->name, (unsigned long long)seed, c->num, c->tcp ? "tcp" : "unix",
                     end_name[c->end_kind], c->end_inline ? " in a callback" : "", c->low, c->high,
                     (unsigned long long)c->acc, (unsigned long long)c->recv);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
}

static size_t qsize(kase *c)
{
    return rill_stream_write_queue_size(c->s);
}

/* After an operation: what left the queue never decreases, the reader never has more
 * (epoll, poll), and an up-crossing of the low mark means a DRAIN is owed. */
static void observe(kase *c, size_t before)
{
    size_t q = qsize(c);
    if (before <= c->low && q > c->low) {
        c->ups++;
        c->drain_owed = true;
    }
    if (q > c->acc) {
        failf(c, "queue %zu bytes, more than the %llu accepted", q, (unsigned long long)c->acc);
        return;
    }
    uint64_t k = c->acc - q;
    if (k < c->k_last)
        failf(c, "bytes out of the queue went from %llu back to %llu",
              (unsigned long long)c->k_last, (unsigned long long)k);
    c->k_last = k;
    if (!c->deferred && c->recv > k)
        failf(c, "the reader has %llu bytes, only %llu left the queue", (unsigned long long)c->recv,
              (unsigned long long)k);
}

static void not_inside(kase *c, const char *what)
{
    if (c->depth)
        failf(c, "%s ran inside a call into the library", what);
}

/* ---- callbacks ---------------------------------------------------------------------------- */

static void issue(kase *c, int n, bool stop_at_high);

static void never_cb(rill_stream *s, int status, void *arg)
{
    (void)s;
    failf(arg, "the callback of a refused write ran (status %s)", rill_err_name(status));
}

static void on_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    wrec *r = arg;
    kase *c = r->c;
    size_t idx = (size_t)(r - c->w);
    not_inside(c, "a completion");
    if (r->done) {
        failf(c, "write #%zu completed twice", idx);
        return;
    }
    TRACE("done #%zu: %s, queue %zu\n", idx, rill_err_name(status), qsize(c));
    r->done = true;
    r->status = status;
    c->ndone++;
    if (c->closes)
        failf(c, "write #%zu completed after CLOSE", idx);
    while (c->next_done < c->nw && c->w[c->next_done].c == NULL)
        c->next_done++; /* (writes without a callback) */
    if (idx != c->next_done)
        failf(c, "write #%zu completed before write #%zu", idx, c->next_done);
    c->next_done = idx + 1;
    uint64_t k = c->acc - qsize(c);
    if (status == 0) {
        if (c->st.cancelled)
            failf(c, "write #%zu completed with 0 after one was cancelled", idx);
        if (r->end > k)
            failf(c, "write #%zu (end %llu) completed when %llu bytes had left the queue", idx,
                  (unsigned long long)r->end, (unsigned long long)k);
    } else if (status == RILL_ECANCELED && c->closed_now) {
        c->st.cancelled++;
    } else {
        failf(c, "write #%zu completed with %s", idx, rill_err_name(status));
    }
    if (!c->ended && c->budget && below(&c->ws, 100) < c->cb_pct) {
        c->in_cb++;
        issue(c, 1 + (int)below(&c->ws, 3), false);
        c->in_cb--;
    }
}

static void on_drain(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    kase *c = arg;
    not_inside(c, "DRAIN");
    c->drains++;
    c->st.drains++;
    TRACE("DRAIN #%llu (ups %llu), queue %zu\n", (unsigned long long)c->drains,
          (unsigned long long)c->ups, qsize(c));
    if (c->closes)
        failf(c, "DRAIN after CLOSE");
    if (c->drains > c->ups)
        failf(c, "DRAIN #%llu, but the queue went above the low mark only %llu times",
              (unsigned long long)c->drains, (unsigned long long)c->ups);
    c->drain_owed = false;
    if (!c->ended && c->budget) {
        c->in_cb++;
        issue(c, 1 + (int)below(&c->ws, 8), true);
        c->in_cb--;
    }
}

static void on_write_ev(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    kase *c = arg;
    not_inside(c, "WRITE");
    c->wsum += ev->len;
    if (ev->len == 0)
        failf(c, "WRITE with len 0");
    if (c->wsum > c->acc - qsize(c))
        failf(c, "WRITE events add up to %llu, only %llu left the queue",
              (unsigned long long)c->wsum, (unsigned long long)(c->acc - qsize(c)));
}

static void on_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    kase *c = arg;
    not_inside(c, "CLOSE");
    c->closes++;
    c->close_err = ev->err;
    if (c->closes > 1)
        failf(c, "CLOSE fired %d times", c->closes);
    if (c->ndone != c->ncb)
        failf(c, "CLOSE with %zu of %zu completions run", c->ndone, c->ncb);
    if (!c->close_called)
        failf(c, "CLOSE (%s) before any close", rill_err_name(ev->err));
}

static void on_shut(rill_stream *s, int status, void *arg)
{
    (void)s;
    kase *c = arg;
    not_inside(c, "the shutdown's callback");
    c->shut_calls++;
    c->shut_status = status;
    c->shut_done = true;
    if (c->shut_calls > 1)
        failf(c, "the shutdown's callback ran %d times", c->shut_calls);
    if (status != 0)
        failf(c, "shutdown completed with %s", rill_err_name(status));
    if (c->ndone != c->ncb)
        failf(c, "shutdown completed with %zu of %zu writes completed", c->ndone, c->ncb);
    if (qsize(c) != 0)
        failf(c, "shutdown completed with %zu bytes queued", qsize(c));
}

static void free_bytes(void *p)
{
    bytes_freed++;
    free(p);
}

/* ---- operations --------------------------------------------------------------------------- */

static void do_end(kase *c);

static size_t op_len(kase *c)
{
    if (below(&c->ws, 16) == 0)
        return 0;
    size_t n = logu(&c->ws, 1, c->maxw);
    return n < c->budget ? n : c->budget;
}

/* One write of the next len bytes; returns its rc (or -1 on a failure already reported). */
static int op_write(kase *c, int kind)
{
    size_t len = op_len(c);
    bool cb = below(&c->ws, 100) < 80;
    wrec *r = &c->w[c->nw];
    *r = (wrec){.c = cb ? c : NULL};
    size_t before = qsize(c);
    int rc;
    c->depth++;
    if (kind == 0) {
        pattern(c->salt, c->acc, c->scratch, len);
        const void *p = len || below(&c->ws, 2) ? (const void *)c->scratch : NULL;
        rc = rill_stream_write(c->s, p, len, cb ? on_done : NULL, r);
        memset(c->scratch, 0xa5, len); /* a copy must have been taken */
    } else if (kind == 1) {
        pattern(c->salt, c->acc, c->scratch, len);
        struct iovec iov[8];
        size_t n = 1 + below(&c->ws, 8), at = 0;
        for (size_t i = 0; i < n; i++) {
            size_t piece = below(&c->ws, 4) == 0 ? 0 : below(&c->ws, len - at + 1);
            if (i + 1 == n)
                piece = len - at;
            iov[i] = (struct iovec){c->scratch + at, piece};
            at += piece;
        }
        rc = rill_stream_writev(c->s, iov, n, cb ? on_done : NULL, r);
        memset(c->scratch, 0xa5, len);
    } else {
        unsigned char *buf = malloc(len ? len : 1);
        assert_non_null(buf);
        pattern(c->salt, c->acc, buf, len);
        rill_bytes *b = rill_bytes_wrap(buf, len, free_bytes);
        assert_non_null(b);
        c->bytes_made++;
        rc = rill_stream_write_bytes(c->s, b, cb ? on_done : NULL, r);
        rill_bytes_unref(b);
    }
    c->depth--;
    c->st.ops++;
    if (rc < 0) {
        failf(c, "write of %zu bytes (kind %d): %s", len, kind, rill_err_name(rc));
        return -1;
    }
    c->acc += len;
    c->budget -= len;
    c->st.bytes += len;
    r->end = c->acc;
    if (cb)
        c->ncb++;
    c->nw++;
    size_t q = qsize(c);
    if (rc != (q >= c->high ? 1 : 0))
        failf(c, "write returned %d with %zu queued (high mark %zu)", rc, q, c->high);
    if (rc == 1)
        c->st.writes_1++;
    TRACE("write #%zu kind %d, %zu bytes%s: %d, queue %zu -> %zu (low %zu)\n", c->nw - 1, kind, len,
          cb ? " with cb" : "", rc, before, q, c->low);
    observe(c, before);
    return rc;
}

static void op_try(kase *c)
{
    size_t len = op_len(c);
    size_t before = qsize(c);
    bool busy = before > 0 || rill_stream_is_writing(c->s);
    pattern(c->salt, c->acc, c->scratch, len);
    c->depth++;
    ssize_t r = rill_stream_try_write(c->s, c->scratch, len);
    c->depth--;
    c->st.ops++;
    c->st.tries++;
    TRACE("try_write %zu bytes: %zd, queue %zu\n", len, r, before);
    if (qsize(c) != before)
        failf(c, "try_write changed the queue from %zu to %zu bytes", before, qsize(c));
    if (busy && r != RILL_EAGAIN) {
        failf(c, "try_write with %zu bytes queued returned %zd", before, r);
        return;
    }
    if (r == RILL_EAGAIN) {
        c->st.try_eagain++;
        /* (AF_UNIX only: there room comes back only with the reader's reads, which are in
         * this thread; TCP frees it when ACKs arrive, at any time) */
        if (!busy && len && !c->deferred && !c->tcp) {
            struct pollfd p = {rill_stream_fd(c->s), POLLOUT, 0};
            if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
                failf(c,
                      "try_write of %zu bytes said RILL_EAGAIN with nothing queued and the "
                      "socket writable",
                      len);
        }
        return;
    }
    if (r < 0 || (size_t)r > len || (r == 0 && len)) {
        failf(c, "try_write of %zu bytes returned %zd", len, r);
        return;
    }
    c->acc += (size_t)r;
    c->acc_try += (size_t)r;
    c->budget -= (size_t)r;
    c->st.bytes += (size_t)r;
    observe(c, before);
}

static void op_marks(kase *c)
{
    if (qsize(c) != 0 || c->in_cb)
        return; /* (not from callbacks: see the comment at the top) */
    c->high = logu(&c->ws, 1, 512 * 1024);
    c->low = below(&c->ws, 3) == 0 ? 0 : below(&c->ws, c->high);
    c->depth++;
    rill_stream_set_watermarks(c->s, c->low, c->high);
    c->depth--;
    TRACE("marks %zu %zu\n", c->low, c->high);
}

/* Up to n operations (fewer when a write says 1 and stop_at_high, the queue is long or the
 * bytes are all offered); the end comes right after the last bytes when end_inline. */
static void issue(kase *c, int n, bool stop_at_high)
{
    for (int i = 0; i < n && !c->failed && !c->ended && c->budget; i++) {
        if (c->nw == MAX_RECS) {
            c->budget = 0;
            break;
        }
        if (qsize(c) >= QUEUE_CAP)
            break;
        size_t k = below(&c->ws, 100);
        int rc = 0;
        if (k < 40)
            rc = op_write(c, 0);
        else if (k < 55)
            rc = op_write(c, 1);
        else if (k < 75)
            rc = op_write(c, 2);
        else if (k < 94)
            op_try(c);
        else
            op_marks(c);
        if (rc == 1 && stop_at_high)
            break;
    }
    if (!c->failed && !c->ended && !c->budget && c->end_inline)
        do_end(c);
}

static void do_end(kase *c)
{
    c->ended = true;
    int rc;
    ssize_t r;
    c->depth++;
    switch (c->end_kind) {
    case END_SHUTDOWN:
        c->shut_called = true;
        if ((rc = rill_stream_shutdown(c->s, on_shut, c)) != 0)
            failf(c, "shutdown: %s", rill_err_name(rc));
        if ((rc = rill_stream_write(c->s, "x", 1, never_cb, c)) != RILL_EPIPE)
            failf(c, "write after shutdown: %d", rc);
        if ((r = rill_stream_try_write(c->s, "x", 1)) != RILL_EPIPE)
            failf(c, "try_write after shutdown: %zd", r);
        if ((rc = rill_stream_shutdown(c->s, on_shut, c)) != RILL_EPENDING)
            failf(c, "a second shutdown: %d", rc);
        break;
    case END_GRACEFUL:
        c->close_called = true;
        rill_stream_close_gracefully(c->s);
        break;
    case END_CLOSE:
        c->close_called = c->closed_now = true;
        c->k_close = c->acc - qsize(c);
        if (qsize(c))
            c->st.partial_ends++;
        rill_stream_close(c->s);
        if ((rc = rill_stream_write(c->s, "x", 1, never_cb, c)) != RILL_ECLOSED)
            failf(c, "write after close: %d", rc);
        if ((r = rill_stream_try_write(c->s, "x", 1)) != RILL_ECLOSED)
            failf(c, "try_write after close: %zd", r);
        break;
    default:
        c->idle_close = true; /* the driver closes once everything is written */
        break;
    }
    c->depth--;
}

/* ---- the reader ----------------------------------------------------------------------------- */

static void reader_step(kase *c)
{
    if (c->eof)
        return;
    if (c->pause) {
        c->pause--;
        return;
    }
    if (below(&c->rs, 8) == 0) {
        c->pause = logu(&c->rs, 1, 64);
        return;
    }
    for (size_t n = 1 + below(&c->rs, 3); n && !c->eof; n--) {
        size_t want = logu(&c->rs, 1, c->rmax);
        ssize_t r = read(c->rfd, c->rbuf, want);
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                failf(c, "reader: %s", strerror(errno));
            return;
        }
        if (r == 0) {
            c->eof = true;
            return;
        }
        if (c->recv + (uint64_t)r > c->acc) {
            failf(c, "the reader got %zd bytes at %llu, past the accepted ones", r,
                  (unsigned long long)c->recv);
            return;
        }
        pattern(c->salt, c->recv, c->expect, (size_t)r);
        if (memcmp(c->expect, c->rbuf, (size_t)r) != 0) {
            size_t i = 0;
            while (c->expect[i] == c->rbuf[i])
                i++;
            failf(c, "byte %llu differs (read %zd bytes at %llu)",
                  (unsigned long long)(c->recv + i), r, (unsigned long long)c->recv);
            return;
        }
        c->recv += (uint64_t)r;
    }
}

/* ---- setting up --------------------------------------------------------------------------- */

static void make_unix(kase *c, int *wfd)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (c->sndbuf)
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &c->sndbuf, sizeof c->sndbuf), 0);
    *wfd = sv[0];
    c->rfd = sv[1];
}

static void make_tcp(kase *c, int *wfd)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    if (c->rcvbuf) /* accepted sockets inherit it; set before the handshake (window scale) */
        assert_int_equal(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, sizeof c->rcvbuf), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    int w = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(w >= 0);
    if (c->sndbuf)
        assert_int_equal(setsockopt(w, SOL_SOCKET, SO_SNDBUF, &c->sndbuf, sizeof c->sndbuf), 0);
    assert_int_equal(connect(w, (struct sockaddr *)&a, sizeof a), 0);
    c->rfd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(c->rfd >= 0);
    close(l);
    *wfd = w;
}

/* True when the driver has nothing left to wait for. */
static bool finished(kase *c)
{
    return c->ended && c->closes && c->eof && c->ndone == c->ncb;
}

static bool idle(kase *c)
{
    return qsize(c) == 0 && !rill_stream_is_writing(c->s) && c->ndone == c->ncb && !c->drain_owed;
}

/* Runs case num; false (with the message in msg) when it failed. */
static bool run_case(const group *g, int num, stats *sum, char *msg, size_t cap)
{
    kase *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->num = num;
    c->g = g;
    uint64_t ds = seed_of(seed ^ ((uint64_t)num << 32));
    c->ws = seed_of(rnd(&ds));
    c->rs = seed_of(rnd(&ds));
    c->salt = rnd(&ds);
    c->tcp = (int)below(&ds, 100) < g->tcp_pct;
    c->end_kind = (int)below(&ds, END__COUNT);
    c->end_inline = below(&ds, 3) == 0;
    c->write_ev = below(&ds, 2) == 0;
    size_t top = (size_t)1024 << below(&ds, 10); /* 1 KiB to 1 MiB, log-uniform */
    c->budget = below(&ds, 8) == 0 ? logu(&ds, 0, 4096) : top + below(&ds, top);
    c->maxw = logu(&ds, 1, MAX_WRITE);
    c->rmax = logu(&ds, 16, 65536);
    c->cb_pct = below(&ds, 60);
    c->burst_pct = 5 + below(&ds, 60);
    c->sndbuf = below(&ds, 2) ? 1024 << below(&ds, 7) : 0;
    c->rcvbuf = c->tcp && below(&ds, 2) ? 1024 << below(&ds, 7) : 0;
    bool marks = below(&ds, 3) != 0;
    c->low = 0;
    c->high = 64 * 1024; /* the documented defaults */
    c->w = calloc(MAX_RECS, sizeof *c->w);
    c->scratch = malloc(MAX_WRITE);
    c->rbuf = malloc(65536);
    c->expect = malloc(65536);
    assert_true(c->w && c->scratch && c->rbuf && c->expect);
    size_t freed0 = bytes_freed;

    c->loop = th_loop_new();
    c->deferred = th_writes_deferred(c->loop);
    int wfd;
    if (c->tcp)
        make_tcp(c, &wfd);
    else
        make_unix(c, &wfd);
    int fl = fcntl(c->rfd, F_GETFL);
    assert_int_equal(fcntl(c->rfd, F_SETFL, fl | O_NONBLOCK), 0);
    c->s = rill_fd_open(c->loop, wfd, 0);
    assert_non_null(c->s);
    rill_stream_ref(c->s); /* to look at it after CLOSE */
    rill_stream_set_timeout(c->s, 0);
    assert_non_null(rill_stream_on(c->s, RILL_EV_DRAIN, on_drain, c));
    assert_non_null(rill_stream_on(c->s, RILL_EV_CLOSE, on_close, c));
    if (c->write_ev)
        assert_non_null(rill_stream_on(c->s, RILL_EV_WRITE, on_write_ev, c));
    if (marks)
        op_marks(c);

    uint64_t t0 = th_now_ms(), deadline = t0 + CASE_MS;
    size_t iters = 0, settle = 0;
    while (!c->failed) {
        if (th_now_ms() > deadline) {
            failf(c,
                  "timed out: %zu of %zu completions, %zu queued, %s, %d CLOSE, reader %s, "
                  "DRAIN %s",
                  c->ndone, c->ncb, qsize(c), c->ended ? "ended" : "not ended", c->closes,
                  c->eof ? "at EOF" : "not at EOF", c->drain_owed ? "owed" : "not owed");
            break;
        }
        if (!c->ended && c->budget && below(&c->ws, 100) < c->burst_pct)
            issue(c, 1 + (int)below(&c->ws, 6), below(&c->ws, 2) == 0);
        if (!c->ended && !c->budget)
            do_end(c);
        if (c->idle_close && !c->close_called && idle(c)) {
            c->close_called = true;
            rill_stream_close(c->s);
        }
        if (c->shut_done && !c->close_called && c->eof && idle(c)) {
            c->close_called = true;
            rill_stream_close(c->s);
        }
        reader_step(c);
        rill_loop_run(c->loop, RILL_RUN_NOWAIT);
        iters++;
        if (finished(c) && ++settle > 8) /* a few more turns: nothing may come after CLOSE */
            break;
    }
    if (!c->failed) {
        if (c->close_err)
            failf(c, "CLOSE with %s", rill_err_name(c->close_err));
        else if (c->end_kind == END_SHUTDOWN && c->shut_calls != 1)
            failf(c, "the shutdown's callback ran %d times", c->shut_calls);
        else if (!c->closed_now && c->recv != c->acc)
            failf(c, "the reader got %llu of %llu bytes", (unsigned long long)c->recv,
                  (unsigned long long)c->acc);
        else if (c->closed_now && !c->deferred && c->recv != c->k_close)
            failf(c, "closed with %llu bytes out of the queue, the reader got %llu",
                  (unsigned long long)c->k_close, (unsigned long long)c->recv);
        else if (c->closed_now && c->recv < c->k_close)
            failf(c, "closed with %llu bytes out of the queue, the reader got only %llu",
                  (unsigned long long)c->k_close, (unsigned long long)c->recv);
        else if (c->write_ev && !c->closed_now && c->wsum != c->acc - c->acc_try)
            failf(c, "WRITE events add up to %llu, the writes put out %llu",
                  (unsigned long long)c->wsum, (unsigned long long)(c->acc - c->acc_try));
    }
    for (size_t i = 0; i < c->nw && !c->failed; i++) {
        wrec *r = &c->w[i];
        if (!r->c)
            continue;
        if (!r->done)
            failf(c, "write #%zu never completed", i);
        else if (r->status == 0 && r->end > c->recv)
            failf(c, "write #%zu (end %llu) completed with 0, the reader got %llu", i,
                  (unsigned long long)r->end, (unsigned long long)c->recv);
        else if (c->closed_now && !c->deferred && (r->status == 0) != (r->end <= c->k_close))
            failf(c,
                  "write #%zu (end %llu) completed with %s, %llu bytes had left the queue "
                  "at the close",
                  i, (unsigned long long)r->end, rill_err_name(r->status),
                  (unsigned long long)c->k_close);
    }

    rill_stream_close(c->s); /* (after a failure; a no-op otherwise) */
    rill_stream_unref(c->s);
    close(c->rfd);
    th_loop_free(c->loop);
    if (!c->failed && bytes_freed - freed0 != c->bytes_made)
        failf(c, "%zu of %zu rill_bytes freed", bytes_freed - freed0, c->bytes_made);
    if (getenv("RILL_WRITE_VERBOSE"))
        print_message("case %d: %s, end by %s%s, %llu bytes (%llu by try_write), %zu writes, "
                      "%zu DRAIN, %zu cancelled, %zu iterations, %llu ms\n",
                      c->num, c->tcp ? "tcp" : "unix", end_name[c->end_kind],
                      c->end_inline ? " inline" : "", (unsigned long long)c->acc,
                      (unsigned long long)c->acc_try, c->nw, c->st.drains, c->st.cancelled, iters,
                      (unsigned long long)(th_now_ms() - t0));
    sum->ops += c->st.ops;
    sum->writes_1 += c->st.writes_1;
    sum->tries += c->st.tries;
    sum->try_eagain += c->st.try_eagain;
    sum->drains += c->st.drains;
    sum->cancelled += c->st.cancelled;
    sum->partial_ends += c->st.partial_ends;
    sum->bytes += c->st.bytes;
    bool ok = !c->failed;
    if (!ok)
        snprintf(msg, cap, "%s", c->msg);
    free(c->w);
    free(c->scratch);
    free(c->rbuf);
    free(c->expect);
    free(c);
    return ok;
}

static void run_group(const group *g)
{
    const char *alt_seed = getenv("RILL_WRITE_SEED");
    seed = alt_seed ? strtoull(alt_seed, NULL, 0) : SEED;
    const char *only = getenv("RILL_WRITE_CASE");
    trace = getenv("RILL_WRITE_TRACE") != NULL;
    int one = only ? atoi(only) : -1;
    stats sum = {0};
    uint64_t t0 = th_now_ms();
    int ran = 0;
    bool ok = true;
    static char msg[1024];
    for (int n = g->first; ok && n < g->first + g->count; n++) {
        if (one >= 0 && n != one)
            continue;
        ok = run_case(g, n, &sum, msg, sizeof msg); /* the first failure ends the group */
        ran++;
    }
    print_message("%s: %d cases, %zu operations, %llu bytes, %zu writes at the high mark, "
                  "%zu try_write (%zu RILL_EAGAIN), %zu DRAIN, %zu cancelled (%zu closes with "
                  "a queue), %llu ms\n",
                  g->name, ran, sum.ops, (unsigned long long)sum.bytes, sum.writes_1, sum.tries,
                  sum.try_eagain, sum.drains, sum.cancelled, sum.partial_ends,
                  (unsigned long long)(th_now_ms() - t0));
    if (!ok)
        fail_msg("%s", msg);
}

/* An AF_UNIX socketpair, sometimes with a small send buffer. */
static void test_random_unix(void **state)
{
    (void)state;
    static const group g = {"unix", 0, 100, 0};
    run_group(&g);
}

/* Loopback TCP with small buffers: partial writes all the time. */
static void test_random_tcp(void **state)
{
    (void)state;
    static const group g = {"tcp", 100, 50, 100};
    run_group(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_unix),
        cmocka_unit_test(test_random_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
