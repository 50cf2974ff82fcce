/* tests/test_stream.c - the stream type over fds: events, reading, writing, ending. */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int reads, closes, errors, eofs, drains, writes_ev, timeouts;
    int last_err, close_err;
    size_t bytes, written;
    uint64_t hash;
    int order[32];
    int norder;
} counts;

static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    counts *c = arg;
    assert_int_equal(ev->type, RILL_EV_READ);
    assert_true(ev->len > 0); /* an empty read is never delivered */
    c->reads++;
    c->bytes += ev->len;
    c->hash = th_hash(c->hash, ev->data, ev->len);
}

static void on_any(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    counts *c = arg;
    switch (ev->type) {
    case RILL_EV_CLOSE: c->closes++; c->close_err = ev->err; break;
    case RILL_EV_ERROR: c->errors++; c->last_err = ev->err; break;
    case RILL_EV_EOF: c->eofs++; break;
    case RILL_EV_DRAIN: c->drains++; break;
    case RILL_EV_WRITE: c->writes_ev++; c->written += ev->len; break;
    case RILL_EV_TIMEOUT: c->timeouts++; break;
    default: break;
    }
    if (c->norder < 32)
        c->order[c->norder++] = ev->type;
}

static void pair(rill_loop *loop, rill_stream *p[2])
{
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
}

/* ---- fds ------------------------------------------------------------------------------- */

static void test_fd_open_and_properties(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    rill_stream *r = rill_fd_open(loop, fds[0], 0);
    rill_stream *w = rill_fd_open(loop, fds[1], 0);
    assert_non_null(r);
    assert_non_null(w);
    assert_true(rill_stream_readable(r));
    assert_false(rill_stream_writable(r));
    assert_true(rill_stream_writable(w));
    assert_false(rill_stream_readable(w));
    assert_int_equal(rill_stream_fd(r), fds[0]);
    assert_true(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(rill_stream_family(r), AF_UNSPEC);
    assert_ptr_equal(rill_stream_loop(r), loop);
    int x;
    rill_stream_set_data(r, &x);
    assert_ptr_equal(rill_stream_data(r), &x);
    assert_int_equal(rill_stream_timeout(r), 0); /* pipes: no inactivity timeout */
    assert_int_equal(rill_stream_write(r, "x", 1, NULL, NULL), RILL_EINVAL); /* read end */
    assert_int_equal(rill_stream_start(w), RILL_EINVAL);

    rill_stream *p[2];
    pair(loop, p);
    assert_int_equal(rill_stream_family(p[0]), AF_UNIX);
    assert_true(rill_stream_readable(p[0]) && rill_stream_writable(p[0]));
    assert_false(rill_stream_ipc(p[0]));

    /* a regular file cannot be polled: refused with a clear code */
    char path[] = "/tmp/rill-test-XXXXXX";
    int f = mkstemp(path);
    unlink(path);
    errno = 0;
    assert_null(rill_fd_open(loop, f, 0));
    assert_int_equal(errno, EPERM);
    close(f);
    errno = 0;
    assert_null(rill_fd_open(loop, 12345, 0));
    assert_int_equal(errno, EBADF);
    assert_int_equal(rill_stream_pair(loop, NULL, 0), RILL_EINVAL);

    rill_stream_unref(r); /* the last reference of an open stream closes it */
    assert_true(rill_stream_is_closed(r)); /* still valid until its CLOSE has run */
    rill_stream_close(w);
    rill_stream_close(w); /* twice is fine */
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
    assert_int_equal(fcntl(fds[0], F_GETFD), -1); /* the streams closed their fds */
}

/* ---- events ---------------------------------------------------------------------------- */

static void rec_a(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    counts *c = arg;
    c->order[c->norder++] = 1;
}

static rill_sub *g_sub_b, *g_sub_c;
static void rec_b(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    counts *c = arg;
    c->order[c->norder++] = 2;
    rill_stream_off(s, g_sub_b); /* itself */
    rill_stream_off(s, g_sub_c); /* another, later in the list */
}

static void rec_b_plain(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    counts *c = arg;
    c->order[c->norder++] = 2;
}

static void rec_c(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    counts *c = arg;
    c->order[c->norder++] = 3;
}

static void test_handlers_order_once_off(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c = {0};
    assert_false(rill_stream_has_subscribers(p[1], RILL_EV_READ));
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, rec_a, &c));
    g_sub_b = rill_stream_on(p[1], RILL_EV_READ, rec_b, &c);
    g_sub_c = rill_stream_on(p[1], RILL_EV_READ, rec_c, &c);
    assert_non_null(rill_stream_once(p[1], RILL_EV_READ, rec_c, &c));
    assert_true(rill_stream_has_subscribers(p[1], RILL_EV_READ));
    assert_null(rill_stream_on(p[1], (rill_event_type)99, rec_a, &c));
    assert_int_equal(rill_stream_start(p[1]), 0);
    assert_int_equal(rill_stream_write(p[0], "a", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, c.norder >= 3, 5000);
    assert_int_equal(c.norder, 3); /* a, b, then the once-handler; c was removed by b */
    assert_int_equal(c.order[0], 1);
    assert_int_equal(c.order[1], 2);
    assert_int_equal(c.order[2], 3);
    assert_int_equal(rill_stream_write(p[0], "b", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, c.norder >= 4, 5000);
    assert_int_equal(c.order[3], 1); /* only a is left */
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(c.norder, 4);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* The first subscription is stored in the stream: it costs no allocation, and its handle
 * stays valid when a second subscription moves both to a list; once the list empties the
 * stream's own slot is used again. */
static void test_first_subscription_inline(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c = {0};
    th_alloc_install();
    rill_sub *a = rill_stream_on(p[1], RILL_EV_READ, rec_a, &c);
    assert_non_null(a);
    assert_int_equal(th_alloc_count(), 0);
    rill_sub *b = rill_stream_on(p[1], RILL_EV_READ, rec_b_plain, &c);
    assert_non_null(b);
    assert_int_equal(th_alloc_count(), 2); /* both moved to the list */
    rill_stream_off(p[1], a);              /* the first handle names the moved one */
    assert_int_equal(rill_stream_start(p[1]), 0);
    assert_int_equal(rill_stream_write(p[0], "a", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, c.norder >= 1, 5000);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(c.norder, 1);
    assert_int_equal(c.order[0], 2); /* only b */
    rill_stream_off(p[1], a);        /* twice: harmless */
    rill_stream_off(p[1], b);
    assert_false(rill_stream_has_subscribers(p[1], RILL_EV_READ));
    size_t before = th_alloc_count();
    rill_sub *o = rill_stream_once(p[1], RILL_EV_READ, rec_c, &c);
    assert_ptr_equal(o, a); /* the stream's own slot again */
    assert_int_equal(th_alloc_count(), before);
    assert_int_equal(rill_stream_write(p[0], "b", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, c.norder >= 2, 5000);
    assert_int_equal(c.order[1], 3);
    assert_false(rill_stream_has_subscribers(p[1], RILL_EV_READ)); /* once: gone */
    assert_non_null(rill_stream_on(p[1], RILL_EV_CLOSE, on_any, &c));
    th_alloc_reset();
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, c.closes == 1, 5000);
    th_loop_free(loop);
}

static void test_unhandled_error_closes_and_no_sigpipe(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
    rill_loop *loop = th_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    rill_stream *w = rill_stream_ref(rill_fd_open(loop, fds[1], 0)); /* kept past CLOSE */
    counts c = {0};
    rill_stream_on(w, RILL_EV_CLOSE, on_any, &c);
    /* outside rill_loop_run: the write guards SIGPIPE itself */
    assert_int_equal(rill_stream_write(w, "x", 1, NULL, NULL), RILL_EPIPE);
    TH_RUN_UNTIL(loop, c.closes == 1, 5000);
    assert_int_equal(rill_stream_error(w), RILL_EPIPE);
    assert_int_equal(c.close_err, RILL_EPIPE);
    rill_stream_unref(w);

    /* with an ERROR handler the stream stays open and the handler sees the code */
    rill_stream *p[2];
    pair(loop, p);
    counts d = {0};
    rill_stream_on(p[0], RILL_EV_ERROR, on_any, &d);
    rill_stream_on(p[0], RILL_EV_CLOSE, on_any, &d);
    rill_stream_close(p[1]);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    int rc = 0;
    for (int i = 0; i < 100 && rc >= 0; i++)
        rc = rill_stream_write(p[0], "yyyy", 4, NULL, NULL);
    TH_RUN_UNTIL(loop, d.errors == 1, 5000);
    assert_true(d.last_err == RILL_EPIPE || d.last_err == RILL_ECONNRESET);
    assert_false(rill_stream_is_closed(p[0]));
    rill_stream_close(p[0]);
    TH_RUN_UNTIL(loop, d.closes == 1, 5000);
    th_loop_free(loop);
}

static void test_pipe_epipe_inside_loop(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    rill_loop *loop = th_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    rill_stream *r = rill_fd_open(loop, fds[0], 0);
    rill_stream *w = rill_fd_open(loop, fds[1], 0);
    counts c = {0};
    rill_stream_on(w, RILL_EV_ERROR, on_any, &c);
    /* fill the pipe so the next bytes queue, then close the reader: the flush inside the
     * loop hits EPIPE */
    char big[4096] = {0};
    while (rill_stream_write(w, big, sizeof big, NULL, NULL) == 0 && !rill_stream_is_writing(w))
        ;
    rill_stream_close(r);
    TH_RUN_UNTIL(loop, c.errors == 1, 5000);
    assert_int_equal(c.last_err, RILL_EPIPE);
    rill_stream_close(w);
    th_loop_free(loop);
}

/* ---- reading and the zero-allocation echo path ------------------------------------------ */

typedef struct {
    rill_stream *client;
    int round, rounds;
    size_t got;
    size_t allocs_at_10;
    char msg[64];
} echo_ctx;

static void echo_back(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)arg;
    assert_true(rill_stream_write(s, ev->data, ev->len, NULL, NULL) >= 0);
}

static void client_read(rill_stream *s, const rill_event *ev, void *arg)
{
    echo_ctx *e = arg;
    assert_memory_equal(ev->data, e->msg + e->got, ev->len);
    e->got += ev->len;
    if (e->got < sizeof e->msg)
        return;
    e->got = 0;
    if (++e->round == 10)
        e->allocs_at_10 = th_alloc_count();
    if (e->round < e->rounds)
        assert_int_equal(rill_stream_write(s, e->msg, sizeof e->msg, NULL, NULL), 0);
}

static void test_echo_path_allocates_nothing(void **state)
{
    (void)state;
    th_alloc_install();
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    echo_ctx e = {.client = p[0], .rounds = 2000};
    th_fill(e.msg, sizeof e.msg, 7);
    rill_stream_on(p[1], RILL_EV_READ, echo_back, NULL);
    rill_stream_on(p[0], RILL_EV_READ, client_read, &e);
    rill_stream_start(p[0]);
    rill_stream_start(p[1]);
    assert_int_equal(rill_stream_write(p[0], e.msg, sizeof e.msg, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, e.round == e.rounds, 30000);
    assert_int_equal(th_alloc_count() - e.allocs_at_10, 0); /* 1990 echoes, no allocation */
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct {
    int order[16];
    int status[16];
    int n;
} done_rec;

static void on_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    done_rec *d = arg;
    d->status[d->n] = status;
    d->order[d->n] = d->n;
    d->n++;
}

typedef struct {
    rill_stream *s;
    done_rec *rec;
} later_write;

static void write_later(void *arg)
{
    later_write *w = arg;
    assert_int_equal(rill_stream_write(w->s, "b", 1, on_done, w->rec), 0);
}

/* Deferred stream work queued by a deferred call runs in the next deferred phase, even
 * when other streams' work of the current phase has not run yet. */
static void test_work_queued_in_a_phase_waits_for_the_next(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *a[2], *b[2];
    pair(loop, a);
    pair(loop, b);
    done_rec ra = {0}, rb = {0};
    later_write w = {b[0], &rb};
    assert_int_equal(rill_loop_defer(loop, 0, write_later, &w), 0);
    assert_int_equal(rill_stream_write(a[0], "a", 1, on_done, &ra), 0); /* after the defer */
    assert_int_equal(ra.n + rb.n, 0); /* never inside the call */
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(ra.n, 1);
    assert_int_equal(rb.n, 0); /* b was queued during that phase */
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(rb.n, 1);
    assert_int_equal(rb.status[0], 0);
    for (int i = 0; i < 2; i++) {
        rill_stream_close(a[i]);
        rill_stream_close(b[i]);
    }
    th_loop_free(loop);
}

static void test_write_forms_and_completions(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c = {.hash = TH_HASH_INIT};
    rill_stream_on(p[1], RILL_EV_READ, on_read, &c);
    rill_stream_on(p[0], RILL_EV_WRITE, on_any, &c);
    rill_stream_start(p[1]);
    done_rec d = {0};
    assert_int_equal(rill_stream_write(p[0], "hello ", 6, on_done, &d), 0);
    if (!th_writes_deferred(loop))
        assert_int_equal(rill_stream_write_queue_size(p[0]), 0); /* written at once */
    assert_int_equal(d.n, 0); /* never inside the call */
    struct iovec iov[2] = {{"wor", 3}, {"ld ", 3}};
    assert_int_equal(rill_stream_writev(p[0], iov, 2, on_done, &d), 0);
    rill_bytes *b = rill_bytes_new("bytes!", 6);
    assert_int_equal(rill_stream_write_bytes(p[0], b, on_done, &d), 0);
    rill_bytes_unref(b);
    if (th_writes_deferred(loop)) /* try_write refuses while sends are in flight */
        TH_RUN_UNTIL(loop, !rill_stream_is_writing(p[0]), 5000);
    assert_int_equal(rill_stream_try_write(p[0], "+try", 4), 4);
    TH_RUN_UNTIL(loop, c.bytes == 22 && d.n == 3, 5000);
    uint64_t want = th_hash(TH_HASH_INIT, "hello world bytes!+try", 22);
    assert_int_equal(c.hash, want);
    for (int i = 0; i < 3; i++)
        assert_int_equal(d.status[i], 0);
    TH_RUN_UNTIL(loop, c.written >= 18, 5000);
    assert_true(c.writes_ev >= 1);
    assert_int_equal(rill_stream_write(p[0], NULL, 3, NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_stream_write(NULL, "x", 1, NULL, NULL), RILL_EINVAL);
    rill_stream_close(p[0]);
    assert_int_equal(rill_stream_write(p[0], "x", 1, on_done, &d), RILL_ECLOSED);
    assert_int_equal(rill_stream_try_write(p[0], "x", 1), RILL_ECLOSED);
    rill_stream_close(p[1]);
    th_loop_free(loop);
    assert_int_equal(d.n, 3); /* a refused write never calls back */
}

#define BIG (64u << 20)
#define CHUNK (64u << 10)

typedef struct {
    rill_loop *loop;
    rill_stream *w, *r;
    char *chunk;
    size_t sent, received;
    uint64_t hsend, hrecv;
    size_t max_queue;
    int told_to_wait, drains;
    bool paused;
    rill_timer *pacer;
} bulk_ctx;

static void bulk_pump(bulk_ctx *b)
{
    while (b->sent < BIG) {
        th_fill(b->chunk, CHUNK, b->sent / CHUNK);
        b->hsend = th_hash(b->hsend, b->chunk, CHUNK);
        int rc = rill_stream_write(b->w, b->chunk, CHUNK, NULL, NULL);
        assert_true(rc >= 0);
        b->sent += CHUNK;
        size_t q = rill_stream_write_queue_size(b->w);
        if (q > b->max_queue)
            b->max_queue = q;
        if (rc == 1) {
            b->told_to_wait++;
            return; /* wait for DRAIN */
        }
    }
    rill_stream_close_gracefully(b->w);
}

static void bulk_drain(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    bulk_ctx *b = arg;
    b->drains++;
    bulk_pump(b);
}

static void bulk_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    bulk_ctx *b = arg;
    b->hrecv = th_hash(b->hrecv, ev->data, ev->len);
    b->received += ev->len;
}

/* The slow reader: reads in bursts, pausing between them. */
static void bulk_pace(rill_timer *t, void *arg)
{
    (void)t;
    bulk_ctx *b = arg;
    b->paused = !b->paused;
    if (b->paused)
        rill_stream_stop(b->r);
    else
        rill_stream_start(b->r);
}

static void test_64mib_to_slow_reader(void **state)
{
    (void)state;
    bulk_ctx b = {.loop = th_loop_new(), .hsend = TH_HASH_INIT, .hrecv = TH_HASH_INIT};
    rill_stream *p[2];
    pair(b.loop, p);
    b.w = p[0];
    b.r = rill_stream_ref(p[1]); /* held: at the end it closes itself, maybe within the run */
    b.chunk = malloc(CHUNK);
    rill_stream_set_watermarks(b.w, 0, 256 * 1024);
    rill_stream_on(b.w, RILL_EV_DRAIN, bulk_drain, &b);
    rill_stream_on(b.r, RILL_EV_READ, bulk_read, &b);
    rill_stream_start(b.r);
    b.pacer = rill_timer_start(b.loop, 1, 1, bulk_pace, &b);
    bulk_pump(&b);
    TH_RUN_UNTIL(b.loop, b.received == BIG, 120000);
    rill_timer_stop(b.pacer);
    assert_int_equal(b.hrecv, b.hsend);
    assert_true(b.told_to_wait > 0);
    assert_true(b.drains > 0);
    /* the writer stopped when told: the queue never grew past high + one chunk */
    assert_true(b.max_queue < 256 * 1024 + CHUNK);
    rill_stream_close(b.r);
    rill_stream_unref(b.r);
    th_loop_free(b.loop);
    free(b.chunk);
}

static void test_try_write_eagain(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    char buf[65536] = {0};
    ssize_t r;
    size_t total = 0;
    while ((r = rill_stream_try_write(p[0], buf, sizeof buf)) > 0)
        total += (size_t)r;
    assert_int_equal(r, RILL_EAGAIN);
    assert_true(total > 0);
    assert_int_equal(rill_stream_write_queue_size(p[0]), 0); /* try_write never queues */
    assert_int_equal(rill_stream_write(p[0], buf, 10, NULL, NULL), 0);
    assert_true(rill_stream_is_writing(p[0]));
    assert_int_equal(rill_stream_try_write(p[0], buf, 1), RILL_EAGAIN); /* keeps order */
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* ---- ending ----------------------------------------------------------------------------- */

static void shut_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    *(int *)arg = status + 1000;
}

static void test_shutdown_half_close(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c0 = {.hash = TH_HASH_INIT}, c1 = {.hash = TH_HASH_INIT};
    rill_stream_on(p[1], RILL_EV_READ, on_read, &c1);
    rill_stream_on(p[1], RILL_EV_EOF, on_any, &c1);
    rill_stream_on(p[0], RILL_EV_READ, on_read, &c0);
    rill_stream_start(p[0]);
    rill_stream_start(p[1]);
    int shut = 0;
    assert_int_equal(rill_stream_write(p[0], "last words", 10, NULL, NULL), 0);
    assert_int_equal(rill_stream_shutdown(p[0], shut_done, &shut), 0);
    assert_int_equal(rill_stream_shutdown(p[0], shut_done, &shut), RILL_EPENDING);
    assert_int_equal(rill_stream_write(p[0], "x", 1, NULL, NULL), RILL_EPIPE);
    assert_int_equal(shut, 0);
    TH_RUN_UNTIL(loop, c1.eofs == 1 && shut == 1000, 5000);
    assert_int_equal(c1.bytes, 10);
    /* the peer may still answer: half-close */
    assert_false(rill_stream_is_closed(p[1]));
    assert_int_equal(rill_stream_write(p[1], "reply", 5, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, c0.bytes == 5, 5000);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void frame_never(rill_stream *s, int st, const char *d, size_t n, void *arg)
{
    (void)s, (void)st, (void)d, (void)n, (void)arg;
    fail_msg("frame callback of a refused request");
}

static void test_eof_without_handler_closes(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c = {0};
    rill_stream_ref(p[1]);
    rill_stream_on(p[1], RILL_EV_CLOSE, on_any, &c);
    rill_stream_start(p[1]);
    rill_stream_close(p[0]);
    TH_RUN_UNTIL(loop, c.closes == 1, 5000);
    assert_int_equal(c.close_err, 0);
    assert_int_equal(rill_stream_read_bytes(p[1], 10, frame_never, NULL), RILL_ECLOSED);
    rill_stream_unref(p[1]);
    th_loop_free(loop);
}

static void test_close_cancels_writes_then_close_once(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    static char big[1 << 20];
    done_rec d = {0};
    counts c = {0};
    rill_stream_on(p[0], RILL_EV_CLOSE, on_any, &c);
    for (int i = 0; i < 4; i++)
        assert_true(rill_stream_write(p[0], big, sizeof big, on_done, &d) >= 0);
    assert_true(rill_stream_is_writing(p[0]));
    rill_stream_close(p[0]);
    rill_stream_close(p[0]);
    assert_int_equal(c.closes, 0); /* deferred */
    assert_int_equal(d.n, 0);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(c.closes, 1);
    assert_int_equal(d.n, 4);
    int cancelled = 0;
    for (int i = 0; i < 4; i++)
        cancelled += d.status[i] == RILL_ECANCELED;
    assert_true(cancelled >= 3); /* the first may have gone out whole */
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(c.closes, 1);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void close_in_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    counts *c = arg;
    c->reads++;
    rill_stream_close(s);
    rill_stream_close(s);
}

static void unref_in_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    counts *c = arg;
    c->reads++;
    rill_stream_unref(s); /* the last reference, inside its own handler */
}

static void close_in_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    counts *c = arg;
    c->closes++;
    rill_stream_close(s);
    assert_int_equal(rill_stream_write(s, "x", 1, NULL, NULL), RILL_ECLOSED);
}

static void test_close_or_unref_inside_handlers(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2], *q[2];
    pair(loop, p);
    pair(loop, q);
    counts a = {0}, b = {0};
    rill_stream_on(p[1], RILL_EV_READ, close_in_read, &a);
    rill_stream_on(p[1], RILL_EV_CLOSE, close_in_close, &a);
    rill_stream_on(q[1], RILL_EV_READ, unref_in_read, &b);
    rill_stream_on(q[1], RILL_EV_CLOSE, close_in_close, &b);
    rill_stream_start(p[1]);
    rill_stream_start(q[1]);
    rill_stream_write(p[0], "x", 1, NULL, NULL);
    rill_stream_write(q[0], "x", 1, NULL, NULL);
    TH_RUN_UNTIL(loop, a.closes == 1 && b.closes == 1, 5000);
    assert_int_equal(a.reads, 1);
    assert_int_equal(b.reads, 1);
    rill_stream_close(p[0]);
    rill_stream_close(q[0]);
    th_loop_free(loop); /* ASan / valgrind: nothing used after free, nothing leaked */
}

static void test_steal_fd(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c = {0};
    rill_stream_ref(p[0]);
    rill_stream_on(p[0], RILL_EV_CLOSE, on_any, &c);
    int fd = rill_stream_steal_fd(p[0]);
    assert_true(fd >= 0);
    TH_RUN_UNTIL(loop, c.closes == 1, 5000);
    assert_int_equal(write(fd, "ok", 2), 2); /* still open and usable */
    counts r = {.hash = TH_HASH_INIT};
    rill_stream_on(p[1], RILL_EV_READ, on_read, &r);
    rill_stream_start(p[1]);
    TH_RUN_UNTIL(loop, r.bytes == 2, 5000);
    close(fd);
    rill_stream_close(p[1]);
    assert_int_equal(rill_stream_steal_fd(p[0]), RILL_ECLOSED);
    rill_stream_unref(p[0]);
    th_loop_free(loop);
}

static void test_is_readable_detects_peer_close(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    assert_false(rill_stream_is_readable(p[0])); /* idle, healthy */
    rill_stream_close(p[1]);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_true(rill_stream_is_readable(p[0])); /* tainted: the peer is gone */
    rill_stream_close(p[0]);
    assert_false(rill_stream_is_readable(p[0]));
    th_loop_free(loop);
}

static void test_inactivity_timeout(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    counts c = {0};
    counts c2 = {0};
    rill_stream_ref(p[0]);
    rill_stream_on(p[0], RILL_EV_TIMEOUT, on_any, &c);
    rill_stream_on(p[0], RILL_EV_CLOSE, on_any, &c);
    rill_stream_set_timeout(p[0], 80);
    assert_int_equal(rill_stream_timeout(p[0]), 80);
    rill_stream_set_timeout(p[1], 0); /* never */
    rill_stream_on(p[1], RILL_EV_READ, on_any, &c2); /* drained: the writes never block */
    rill_stream_start(p[1]);
    uint64_t t0 = th_now_ms();
    /* activity for a while keeps it open */
    while (th_now_ms() - t0 < 200) {
        rill_stream_write(p[0], "k", 1, NULL, NULL);
        rill_timer *tick = th_tick_start(loop);
        rill_loop_run(loop, RILL_RUN_ONCE);
        rill_timer_stop(tick);
    }
    assert_int_equal(c.timeouts, 0);
    TH_RUN_UNTIL(loop, c.closes == 1, 5000);
    assert_int_equal(c.timeouts, 1);
    assert_int_equal(c.order[0], RILL_EV_TIMEOUT);
    assert_int_equal(c.order[1], RILL_EV_CLOSE);
    assert_int_equal(rill_stream_error(p[0]), RILL_ETIMEDOUT);
    rill_stream_unref(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* Handlers see the time their event arrived, and activity after a long wait moves the
 * inactivity deadline from that time (not from before the wait). */
typedef struct {
    int fd;
    uint64_t wrote_at;
} late_writer;

static void *write_late(void *arg)
{
    late_writer *w = arg;
    struct timespec ts = {0, 600 * 1000000};
    nanosleep(&ts, NULL);
    w->wrote_at = th_now_ms();
    assert_int_equal(write(w->fd, "z", 1), 1);
    return NULL;
}

typedef struct {
    uint64_t read_now, timeout_at;
    int reads, timeouts;
} clock_ctx;

static void clock_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    clock_ctx *c = arg;
    c->read_now = rill_loop_now(rill_stream_loop(s));
    c->reads++;
}

static void clock_timeout(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    clock_ctx *c = arg;
    c->timeout_at = rill_loop_now(rill_stream_loop(s));
    c->timeouts++;
}

/* Timeout values share lists by value; a list no stream uses any more takes the next new
 * value, so a program may use any number of values over time. */
static void test_timeout_values_are_reused(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    rill_stream_set_timeout(p[0], 1000000);
    for (uint64_t ms = 1; ms <= 70000; ms++) {
        rill_stream_set_timeout(p[1], 2000000 + ms);
        if (rill_stream_timeout(p[1]) != 2000000 + ms)
            fail_msg("value %llu not armed", (unsigned long long)ms);
    }
    assert_int_equal(rill_stream_timeout(p[0]), 1000000); /* in use: kept */
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_clock_fresh_in_handlers(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    clock_ctx c = {0};
    rill_stream_on(p[1], RILL_EV_READ, clock_read, &c);
    rill_stream_on(p[1], RILL_EV_TIMEOUT, clock_timeout, &c);
    rill_stream_start(p[1]);
    rill_stream_set_timeout(p[1], 1000);
    late_writer w = {rill_stream_fd(p[0]), 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_late, &w), 0);
    /* blocking iterations, no tick timer: nothing else is due for 1000 ms, so the read
     * wakes the loop (each iteration is bounded by that timeout; the whole by 5 s) */
    uint64_t deadline = th_now_ms() + 5000;
    while (!c.reads) {
        assert_true(th_now_ms() < deadline);
        rill_loop_run(loop, RILL_RUN_ONCE);
    }
    pthread_join(th, NULL);
    assert_true(c.read_now >= w.wrote_at); /* not the time before the wait */
    TH_RUN_UNTIL(loop, c.timeouts == 1, 5000);
    assert_true(c.timeout_at >= c.read_now + 1000); /* the activity moved the deadline */
    rill_stream_close(p[0]);
    th_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_open_and_properties),
        cmocka_unit_test(test_handlers_order_once_off),
        cmocka_unit_test(test_first_subscription_inline),
        cmocka_unit_test(test_unhandled_error_closes_and_no_sigpipe),
        cmocka_unit_test(test_pipe_epipe_inside_loop),
        cmocka_unit_test(test_echo_path_allocates_nothing),
        cmocka_unit_test(test_write_forms_and_completions),
        cmocka_unit_test(test_work_queued_in_a_phase_waits_for_the_next),
        cmocka_unit_test(test_64mib_to_slow_reader),
        cmocka_unit_test(test_try_write_eagain),
        cmocka_unit_test(test_shutdown_half_close),
        cmocka_unit_test(test_eof_without_handler_closes),
        cmocka_unit_test(test_close_cancels_writes_then_close_once),
        cmocka_unit_test(test_close_or_unref_inside_handlers),
        cmocka_unit_test(test_steal_fd),
        cmocka_unit_test(test_is_readable_detects_peer_close),
        cmocka_unit_test(test_inactivity_timeout),
        cmocka_unit_test(test_timeout_values_are_reused),
        cmocka_unit_test(test_clock_fresh_in_handlers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
