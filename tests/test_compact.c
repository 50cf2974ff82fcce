/* tests/test_compact.c - the 136-byte stream: the inline first subscription and its move
 * to a list, the loop's queue of streams with deferred work, the write fast path, and
 * the poll backend's fd-to-slot map.  Real sockets and pipes, bounded waits. */
#include "harness.h"

#include "internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void pair(rill_loop *loop, rill_stream *p[2])
{
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
}

/* Runs a few iterations without waiting for a condition (lets bytes arrive). */
static void settle(rill_loop *loop, int ms)
{
    uint64_t end = th_now_ms() + (uint64_t)ms;
    rill_timer *t = th_tick_start(loop);
    while (th_now_ms() < end)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(t);
}

/* ---- subscriptions ------------------------------------------------------------------- */

typedef struct {
    rill_stream *s;
    rill_sub *first, *second, *third;
    int order[64];
    int n;
    int closes;
    bool sub_in_first;      /* A subscribes B from inside its call (once) */
    bool off_first_in_first;/* A offs its own (first) handle after subscribing B */
    bool off_first_in_second;
} subrec;

static void rec(subrec *r, int who)
{
    if (r->n < 64)
        r->order[r->n++] = who;
}

static void h_b(rill_stream *s, const rill_event *ev, void *arg);
static void h_c(rill_stream *s, const rill_event *ev, void *arg);

static void h_a(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    subrec *r = arg;
    rec(r, 1);
    if (r->sub_in_first) {
        r->sub_in_first = false;
        r->second = rill_stream_on(s, RILL_EV_READ, h_b, r);
        assert_non_null(r->second);
        assert_true(rill_stream_has_subscribers(s, RILL_EV_READ));
        if (r->off_first_in_first) {
            rill_stream_off(s, r->first);
            r->first = NULL;
        }
    }
}

static void h_b(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    subrec *r = arg;
    rec(r, 2);
    if (r->off_first_in_second && r->first) {
        rill_stream_off(s, r->first); /* the moved first subscription, earlier in the list */
        r->first = NULL;
        r->third = rill_stream_on(s, RILL_EV_READ, h_c, r); /* runs from the next event */
    }
}

static void h_c(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    rec(arg, 3);
}

static void h_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    ((subrec *)arg)->closes++;
}

/* Sends one byte from w and runs until r's handlers ran `n` times in total. */
static void one_event(rill_loop *loop, rill_stream *w, subrec *r, int n)
{
    assert_int_equal(rill_stream_write(w, "x", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, r->n >= n, 3000);
    settle(loop, 20);
    assert_int_equal(r->n, n);
}

/* Closes both ends, waits for p[1]'s CLOSE (a subscription that must still work after the
 * moves between the stream's slot and the list) and frees the loop. */
static void close_pair(rill_loop *loop, rill_stream *p[2], subrec *r)
{
    assert_non_null(rill_stream_on(p[1], RILL_EV_CLOSE, h_close, r));
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, r->closes == 1, 3000);
    th_loop_free(loop);
}

/* The inline handler subscribes a second handler from inside its own call: the second one
 * does not run for that event, then both run in order; the first handle, now naming the
 * moved node, still removes the first handler. */
static void test_subscribe_inside_inline_handler(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    subrec r = {.s = p[1], .sub_in_first = true};
    r.first = rill_stream_on(p[1], RILL_EV_READ, h_a, &r);
    assert_non_null(r.first);
    assert_int_equal(rill_stream_start(p[1]), 0);
    one_event(loop, p[0], &r, 1);
    assert_int_equal(r.order[0], 1); /* B was added during the event: not called */
    one_event(loop, p[0], &r, 3);
    assert_int_equal(r.order[1], 1);
    assert_int_equal(r.order[2], 2);
    rill_stream_off(p[1], r.first); /* the first handle after the move */
    one_event(loop, p[0], &r, 4);
    assert_int_equal(r.order[3], 2);
    rill_stream_off(p[1], r.second);
    assert_false(rill_stream_has_subscribers(p[1], RILL_EV_READ));
    close_pair(loop, p, &r);
}

/* The inline handler subscribes B, then offs itself, inside one call. */
static void test_inline_handler_moves_then_offs_itself(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    subrec r = {.s = p[1], .sub_in_first = true, .off_first_in_first = true};
    r.first = rill_stream_on(p[1], RILL_EV_READ, h_a, &r);
    assert_int_equal(rill_stream_start(p[1]), 0);
    one_event(loop, p[0], &r, 1);
    one_event(loop, p[0], &r, 2);
    assert_int_equal(r.order[1], 2); /* only B is left */
    rill_stream_off(p[1], r.second);
    assert_false(rill_stream_has_subscribers(p[1], RILL_EV_READ));
    close_pair(loop, p, &r);
}

/* The second handler offs the first (moved) one and subscribes a third in its call. */
static void test_off_first_from_second_then_subscribe(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    subrec r = {.s = p[1], .off_first_in_second = true};
    r.first = rill_stream_on(p[1], RILL_EV_READ, h_a, &r);
    r.second = rill_stream_on(p[1], RILL_EV_READ, h_b, &r);
    assert_int_equal(rill_stream_start(p[1]), 0);
    one_event(loop, p[0], &r, 2);
    assert_int_equal(r.order[0], 1);
    assert_int_equal(r.order[1], 2);
    one_event(loop, p[0], &r, 4);
    assert_int_equal(r.order[2], 2);
    assert_int_equal(r.order[3], 3);
    rill_stream_off(p[1], r.second);
    rill_stream_off(p[1], r.third);
    assert_false(rill_stream_has_subscribers(p[1], RILL_EV_READ));
    /* back in the stream's slot: one again, then a list again */
    r.first = rill_stream_on(p[1], RILL_EV_READ, h_a, &r);
    r.second = rill_stream_on(p[1], RILL_EV_READ, h_b, &r);
    r.off_first_in_second = false;
    one_event(loop, p[0], &r, 6);
    assert_int_equal(r.order[4], 1);
    assert_int_equal(r.order[5], 2);
    rill_stream_off(p[1], r.first);
    rill_stream_off(p[1], r.second);
    close_pair(loop, p, &r);
}

/* A once handler in the stream's slot re-subscribes itself (once) from its call: it must
 * not run again for the same event, and must run for each later one. */
typedef struct {
    int calls;
    int closes;
} once_rec;

static void h_once_again(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    once_rec *o = arg;
    o->calls++;
    assert_false(rill_stream_has_subscribers(s, RILL_EV_READ)); /* it was the only one */
    assert_non_null(rill_stream_once(s, RILL_EV_READ, h_once_again, o));
}

static void h_once_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    ((once_rec *)arg)->closes++;
}

static void test_once_resubscribes_itself(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    once_rec o = {0};
    assert_non_null(rill_stream_once(p[1], RILL_EV_READ, h_once_again, &o));
    assert_int_equal(rill_stream_start(p[1]), 0);
    for (int i = 1; i <= 4; i++) {
        assert_int_equal(rill_stream_write(p[0], "x", 1, NULL, NULL), 0);
        TH_RUN_UNTIL(loop, o.calls >= i, 3000);
        settle(loop, 10);
        assert_int_equal(o.calls, i);
    }
    assert_non_null(rill_stream_on(p[1], RILL_EV_CLOSE, h_once_close, &o));
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, o.closes == 1, 3000);
    th_loop_free(loop);
}

/* ---- reading: bytes no framing request and no READ handler takes stay buffered -------- */

typedef struct {
    int frames;
    char got[2][8];
    int closes;
} frame_rec;

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    frame_rec *f = arg;
    assert_int_equal(status, 0);
    assert_int_equal(len, 3);
    if (f->frames < 2)
        memcpy(f->got[f->frames], data, 3);
    f->frames++;
}

static void fr_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    ((frame_rec *)arg)->closes++;
}

/* A stream that reads (rill_stream_start) and is served by framing requests, with no READ
 * handler: bytes arriving between two requests stay in the stream's buffer for the next
 * request ("unconsumed bytes stay buffered"), as they did before the echo-path change. */
static void test_bytes_between_requests_stay_buffered(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frame_rec f = {0};
    assert_non_null(rill_stream_on(p[1], RILL_EV_CLOSE, fr_close, &f));
    assert_int_equal(rill_stream_start(p[1]), 0);
    assert_int_equal(rill_stream_read_exactly(p[1], 3, on_frame, &f), 0);
    assert_int_equal(rill_stream_write(p[0], "abc", 3, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, f.frames == 1, 3000);
    assert_memory_equal(f.got[0], "abc", 3);
    /* no request now: these bytes must wait in the stream */
    assert_int_equal(rill_stream_write(p[0], "def", 3, NULL, NULL), 0);
    settle(loop, 50);
    assert_int_equal(rill_stream_read_exactly(p[1], 3, on_frame, &f), 0);
    TH_RUN_UNTIL(loop, f.frames == 2, 2000);
    assert_memory_equal(f.got[1], "def", 3);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, f.closes == 1, 3000);
    th_loop_free(loop);
}

/* Bytes kept while the stream read with nobody to take them, then the peer's end: a
 * stream stopped and started again still hands the kept bytes out, and only then reports
 * EOF.  (On the uring backend a stopped stream's last receive brings bytes and the end
 * this way; a splice pausing its source hit it and stalled.) */
typedef struct {
    char got[8];
    size_t len;
    int eof_at; /* len when EOF came, +1 */
} kept_rec;

static void kept_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    kept_rec *k = arg;
    if (k->len + ev->len <= sizeof k->got)
        memcpy(k->got + k->len, ev->data, ev->len);
    k->len += ev->len;
}

static void kept_eof(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    kept_rec *k = arg;
    k->eof_at = (int)k->len + 1;
}

static void test_start_after_eof_hands_out_kept_bytes(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    rill_stream_ref(p[1]);
    assert_int_equal(rill_stream_start(p[1]), 0);
    assert_int_equal(rill_stream_write(p[0], "abc", 3, NULL, NULL), 0);
    assert_int_equal(rill_stream_shutdown(p[0], NULL, NULL), 0);
    TH_RUN_UNTIL(loop, rill__in_len(p[1]) == 3 && (p[1]->flags & RILL__S_EOF), 3000);
    assert_int_equal(rill_stream_stop(p[1]), 0);
    kept_rec k = {0};
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, kept_read, &k));
    assert_non_null(rill_stream_on(p[1], RILL_EV_EOF, kept_eof, &k));
    assert_int_equal(rill_stream_start(p[1]), 0);
    TH_RUN_UNTIL(loop, k.eof_at != 0, 3000);
    assert_int_equal(k.len, 3);
    assert_memory_equal(k.got, "abc", 3);
    assert_int_equal(k.eof_at, 4); /* the bytes first, then EOF */
    /* with nothing kept, starting after the end says so */
    assert_int_equal(rill_stream_start(p[1]), RILL_EOF);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    rill_stream_unref(p[1]);
    th_loop_free(loop);
}

/* ---- the loop's stream queue ----------------------------------------------------------- */

typedef struct {
    rill_stream *victim;
    int done_a, done_b, status_b;
    int closes_b, close_events;
} qrec;

static void b_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    qrec *q = arg;
    q->done_b++;
    q->status_b = status;
}

/* A's completion (the first stream of the batch) closes B and drops the last reference
 * while B waits later in the same batch with its own completion. */
static void a_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    qrec *q = arg;
    assert_int_equal(status, 0);
    q->done_a++;
    if (q->victim) {
        rill_stream_close(q->victim);
        rill_stream_unref(q->victim);
        q->victim = NULL;
    }
}

static void q_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    ((qrec *)arg)->close_events++;
}

static void test_stream_closed_and_unref_while_queued(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *a[2], *b[2];
    pair(loop, a);
    pair(loop, b);
    qrec q = {0};
    q.victim = rill_stream_ref(b[0]);
    assert_non_null(rill_stream_on(b[0], RILL_EV_CLOSE, q_close, &q));
    /* both completions are queued in one user call: A first, then B */
    assert_int_equal(rill_stream_write(a[0], "a", 1, a_done, &q), 0);
    assert_int_equal(rill_stream_write(b[0], "b", 1, b_done, &q), 0);
    TH_RUN_UNTIL(loop, q.done_a == 1 && q.done_b == 1 && q.close_events == 1, 3000);
    assert_true(q.status_b == 0 || q.status_b == RILL_ECANCELED);
    rill_stream_close(a[0]);
    rill_stream_close(a[1]);
    rill_stream_close(b[1]);
    th_loop_free(loop);
}

/* A stream whose CLOSE handler drops the last reference while another stream's work in
 * the same batch closes it: freed once, no work left behind. */
typedef struct {
    rill_stream *s[4];
    int closes;
} many_rec;

static void m_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    many_rec *m = arg;
    m->closes++;
    for (int i = 0; i < 4; i++)
        if (m->s[i] == s)
            m->s[i] = NULL; /* freed after its CLOSE */
    for (int i = 0; i < 4; i++) /* closing the others from inside a CLOSE handler */
        if (m->s[i] && m->s[i] != s)
            rill_stream_close(m->s[i]);
}

static void test_close_cascade_in_one_batch(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2], *q[2];
    pair(loop, p);
    pair(loop, q);
    many_rec m = {{p[0], p[1], q[0], q[1]}, 0};
    for (int i = 0; i < 4; i++)
        assert_non_null(rill_stream_on(m.s[i], RILL_EV_CLOSE, m_close, &m));
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, m.closes == 4, 3000);
    settle(loop, 20);
    assert_int_equal(m.closes, 4);
    th_loop_free(loop);
}

/* A WRITE handler (run from the stream's own deferred dispatch) writes with a completion
 * (which queues the stream again) and closes it: the stream is freed at the end of that
 * dispatch while it is on the queue for the next one, which must not touch it. */
typedef struct {
    int writes, dones, done_status, closes;
} self_rec;

static void self_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    self_rec *r = arg;
    r->dones++;
    r->done_status = status;
}

static void self_any(rill_stream *s, const rill_event *ev, void *arg)
{
    self_rec *r = arg;
    if (ev->type == RILL_EV_CLOSE) {
        r->closes++;
        return;
    }
    if (ev->type != RILL_EV_WRITE || r->writes++)
        return;
    assert_int_equal(rill_stream_write(s, "b", 1, self_done, r), 0);
    rill_stream_close(s);
}

static void test_stream_freed_while_requeued_by_itself(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    self_rec r = {0};
    assert_non_null(rill_stream_on(p[0], RILL_EV_WRITE, self_any, &r));
    assert_non_null(rill_stream_on(p[0], RILL_EV_CLOSE, self_any, &r));
    assert_int_equal(rill_stream_write(p[0], "a", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, r.closes == 1, 3000);
    settle(loop, 20); /* the next batches run without it */
    assert_int_equal(r.dones, 1);
    assert_true(r.done_status == 0 || r.done_status == RILL_ECANCELED);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* ---- the write fast path (inside rill_loop_run: SIGPIPE blocked) ----------------------- */

typedef struct {
    rill_stream *w;
    int rc;
    bool fired;
    int errors, closes, last_err, close_err;
    bool error_inside_call;
    bool in_call;
} fp_rec;

static void fp_any(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    fp_rec *f = arg;
    if (ev->type == RILL_EV_ERROR) {
        f->errors++;
        f->last_err = ev->err;
        if (f->in_call)
            f->error_inside_call = true;
    } else if (ev->type == RILL_EV_CLOSE) {
        f->closes++;
        f->close_err = ev->err;
    }
}

static void fp_write_once(rill_timer *t, void *arg)
{
    (void)t;
    fp_rec *f = arg;
    if (f->fired)
        return;
    f->fired = true;
    f->in_call = true;
    f->rc = rill_stream_write(f->w, "hello", 5, NULL, NULL);
    f->in_call = false;
}

/* A socketpair whose peer is gone: the fast path's write(2) fails with EPIPE; the call
 * says so, SIGPIPE is consumed (SIG_DFL would kill us), and ERROR comes later, once. */
static void test_fast_path_epipe_socket(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    fp_rec f = {.w = p[0]};
    rill_stream_on(p[0], RILL_EV_ERROR, fp_any, &f);
    rill_stream_on(p[0], RILL_EV_CLOSE, fp_any, &f);
    rill_stream_close(p[1]);
    settle(loop, 10); /* the peer's fd is closed now */
    rill_timer *t = rill_timer_start(loop, 1, 1, fp_write_once, &f);
    TH_RUN_UNTIL(loop, f.fired && f.errors == 1, 3000);
    rill_timer_stop(t);
    /* (uring: the call may say 0, queued, when the send's failure came as the ERROR) */
    int err = f.rc ? f.rc : f.last_err;
    assert_true(err == RILL_EPIPE || err == RILL_ECONNRESET);
    assert_true(f.rc == err || (f.rc == 0 && th_writes_deferred(loop)));
    assert_false(f.error_inside_call);
    assert_int_equal(f.last_err, err);
    assert_int_equal(rill_stream_error(p[0]), err);
    settle(loop, 20);
    assert_int_equal(f.errors, 1);
    rill_stream_close(p[0]);
    TH_RUN_UNTIL(loop, f.closes == 1, 3000);
    th_loop_free(loop);
}

/* The same through a pipe (no MSG_NOSIGNAL possible), without an ERROR handler: the
 * stream closes with EPIPE. */
static void test_fast_path_epipe_pipe_closes(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    rill_loop *loop = th_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    rill_stream *w = rill_fd_open(loop, fds[1], 0);
    assert_non_null(w);
    fp_rec f = {.w = w};
    rill_stream_on(w, RILL_EV_CLOSE, fp_any, &f);
    rill_timer *t = rill_timer_start(loop, 1, 1, fp_write_once, &f);
    TH_RUN_UNTIL(loop, f.fired && f.closes == 1, 3000);
    rill_timer_stop(t);
    assert_int_equal(f.rc, RILL_EPIPE);
    assert_int_equal(f.close_err, RILL_EPIPE);
    th_loop_free(loop);
}

/* A large write from inside the loop to a peer that does not read: a short write, the
 * rest queued; 1 when over the high mark; DRAIN then; every byte arrives in order. */
typedef struct {
    rill_stream *w;
    char *buf;
    size_t len;
    int rc;
    bool fired;
    int drains, closes;
    size_t got;
    uint64_t hash;
} big_rec;

static void big_write(rill_timer *t, void *arg)
{
    (void)t;
    big_rec *b = arg;
    if (b->fired)
        return;
    b->fired = true;
    b->rc = rill_stream_write(b->w, b->buf, b->len, NULL, NULL);
}

static void big_any(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    big_rec *b = arg;
    if (ev->type == RILL_EV_DRAIN)
        b->drains++;
    else if (ev->type == RILL_EV_CLOSE)
        b->closes++;
    else if (ev->type == RILL_EV_READ) {
        b->got += ev->len;
        b->hash = th_hash(b->hash, ev->data, ev->len);
    }
}

static void test_fast_path_short_write_queues_rest(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    big_rec b = {.w = p[0], .len = 4u << 20, .hash = TH_HASH_INIT};
    b.buf = malloc(b.len);
    assert_non_null(b.buf);
    th_fill(b.buf, b.len, 42);
    uint64_t want = th_hash(TH_HASH_INIT, b.buf, b.len);
    rill_stream_on(p[0], RILL_EV_DRAIN, big_any, &b);
    rill_stream_on(p[0], RILL_EV_CLOSE, big_any, &b);
    rill_stream_on(p[1], RILL_EV_READ, big_any, &b);
    rill_stream_on(p[1], RILL_EV_CLOSE, big_any, &b);
    rill_timer *t = rill_timer_start(loop, 1, 1, big_write, &b);
    TH_RUN_UNTIL(loop, b.fired, 3000);
    rill_timer_stop(t);
    assert_int_equal(b.rc, 1); /* the rest is queued, above the high mark */
    assert_true(rill_stream_write_queue_size(p[0]) > 0);
    memset(b.buf, 0, b.len); /* the queue holds a copy */
    assert_int_equal(rill_stream_start(p[1]), 0);
    TH_RUN_UNTIL(loop, b.got == b.len && b.drains >= 1, 10000);
    assert_true(b.hash == want);
    assert_int_equal(b.drains, 1);
    free(b.buf);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, b.closes == 2, 3000);
    th_loop_free(loop);
}

/* EAGAIN on the fast path's first write (the socket buffer already full): all of it is
 * queued and goes out in order after what was queued before... nothing was, so the queue
 * is the order; the next write goes behind it, never around it. */
typedef struct {
    rill_stream *w;
    int step;
    int rc[3];
    size_t got;
    char tail[8];
    int closes;
} eagain_rec;

static void ea_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    eagain_rec *e = arg;
    if (ev->type == RILL_EV_CLOSE) {
        e->closes++;
        return;
    }
    for (size_t i = 0; i < ev->len; i++) {
        memmove(e->tail, e->tail + 1, sizeof e->tail - 1);
        e->tail[sizeof e->tail - 1] = ev->data[i];
    }
    e->got += ev->len;
}

static void ea_tick(rill_timer *t, void *arg)
{
    (void)t;
    eagain_rec *e = arg;
    if (e->step != 0)
        return;
    e->step = 1;
    /* fill the kernel buffer with try_write (no queue) */
    char blk[65536];
    memset(blk, 'z', sizeof blk);
    while (rill_stream_try_write(e->w, blk, sizeof blk) > 0)
        ;
    e->rc[0] = rill_stream_write(e->w, "ABCD", 4, NULL, NULL); /* EAGAIN: queued */
    e->rc[1] = rill_stream_write(e->w, "EFGH", 4, NULL, NULL); /* behind it */
    e->step = 2;
}

static void test_fast_path_eagain_keeps_order(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    eagain_rec e = {.w = p[0]};
    rill_stream_on(p[1], RILL_EV_READ, ea_read, &e);
    rill_stream_on(p[1], RILL_EV_CLOSE, ea_read, &e);
    rill_timer *t = rill_timer_start(loop, 1, 1, ea_tick, &e);
    TH_RUN_UNTIL(loop, e.step == 2, 3000);
    rill_timer_stop(t);
    assert_int_equal(e.rc[0], 0);
    assert_int_equal(e.rc[1], 0);
    assert_int_equal(rill_stream_write_queue_size(p[0]), 8);
    assert_int_equal(rill_stream_start(p[1]), 0);
    TH_RUN_UNTIL(loop, memcmp(e.tail, "ABCDEFGH", 8) == 0, 5000);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, e.closes == 1, 3000);
    th_loop_free(loop);
}

/* Writes through the fast path count as activity: a writer that writes every 50 ms with a
 * 300 ms inactivity timeout never times out. */
typedef struct {
    rill_stream *w;
    int writes, timeouts, closes;
} act_rec;

static void act_tick(rill_timer *t, void *arg)
{
    (void)t;
    act_rec *a = arg;
    if (a->closes)
        return;
    assert_int_equal(rill_stream_write(a->w, "k", 1, NULL, NULL), 0);
    a->writes++;
}

static void act_any(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    act_rec *a = arg;
    if (ev->type == RILL_EV_TIMEOUT)
        a->timeouts++;
    else if (ev->type == RILL_EV_CLOSE)
        a->closes++;
}

static void test_fast_path_touches_timeout(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    act_rec a = {.w = p[0]};
    rill_stream_on(p[0], RILL_EV_TIMEOUT, act_any, &a);
    rill_stream_on(p[0], RILL_EV_CLOSE, act_any, &a);
    rill_stream_set_timeout(p[0], 300);
    rill_timer *t = rill_timer_start(loop, 50, 50, act_tick, &a);
    uint64_t end = th_now_ms() + 1000;
    while (th_now_ms() < end && !a.closes)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(t);
    assert_int_equal(a.timeouts, 0);
    assert_int_equal(a.closes, 0);
    assert_true(a.writes >= 10);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, a.closes == 1, 3000);
    th_loop_free(loop);
}

/* A WRITE handler subscribed after fast-path writes: later writes report their bytes. */
typedef struct {
    rill_stream *w;
    int n, closes;
    size_t written;
} wev_rec;

static void wev_any(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    wev_rec *w = arg;
    if (ev->type == RILL_EV_WRITE)
        w->written += ev->len;
    else if (ev->type == RILL_EV_CLOSE)
        w->closes++;
}

static void wev_tick(rill_timer *t, void *arg)
{
    (void)t;
    wev_rec *w = arg;
    if (w->n >= 3)
        return;
    w->n++;
    if (w->n == 2)
        assert_non_null(rill_stream_on(w->w, RILL_EV_WRITE, wev_any, w));
    assert_int_equal(rill_stream_write(w->w, "12345", 5, NULL, NULL), 0);
}

static void test_write_event_after_fast_path(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    wev_rec w = {.w = p[0]};
    rill_stream_on(p[1], RILL_EV_CLOSE, wev_any, &w);
    rill_timer *t = rill_timer_start(loop, 1, 1, wev_tick, &w);
    TH_RUN_UNTIL(loop, w.n == 3 && w.written == 10, 3000);
    rill_timer_stop(t);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, w.closes == 1, 3000);
    th_loop_free(loop);
}

/* ---- the poll backend's fd-to-slot map ------------------------------------------------- */

typedef struct {
    rill_loop *loop;
    rill_stream *a, *a_peer;
    rill_stream *c[2];
    int stolen;
    int reads_new, closes;
    bool done;
} slot_rec;

static void new_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    slot_rec *r = arg;
    if (ev->type == RILL_EV_READ)
        r->reads_new += (int)ev->len;
    else if (ev->type == RILL_EV_CLOSE)
        r->closes++;
}

/* Inside A's READ handler (the poller's dispatch): A's fd is stolen and handed to a new
 * stream (same fd number), and A's peer's fd number is reused by a fresh socketpair.
 * The new registrations must be the ones the poller watches afterwards. */
static void a_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    slot_rec *r = arg;
    if (r->done)
        return;
    r->done = true;
    r->stolen = rill_stream_steal_fd(s);
    assert_true(r->stolen >= 0);
    rill_stream *n = rill_fd_open(r->loop, r->stolen, 0);
    assert_non_null(n);
    rill_stream_on(n, RILL_EV_READ, new_read, r);
    rill_stream_on(n, RILL_EV_CLOSE, new_read, r);
    assert_int_equal(rill_stream_start(n), 0);
    r->a = n;
    /* free a number and take it again at once, both inside the dispatch */
    rill_stream_close(r->a_peer);
    r->a_peer = NULL;
}

static void test_poll_slots_across_steal_and_reuse(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2], *others[6];
    /* streams around it, so slots move when entries leave */
    for (int i = 0; i < 3; i++)
        pair(loop, &others[2 * i]);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rill_stream_start(others[i]), 0);
        rill_stream_ref(others[i]); /* a peer's EOF closes it: kept for the close below */
    }
    pair(loop, p);
    slot_rec r = {.loop = loop, .a = p[1], .a_peer = p[0]};
    rill_stream_on(p[1], RILL_EV_READ, a_read, &r);
    assert_int_equal(rill_stream_start(p[1]), 0);
    assert_int_equal(rill_stream_write(p[0], "x", 1, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, r.done, 3000);
    /* the peer closed: the new stream over the stolen fd sees EOF and closes (no EOF
     * handler); first a new pair takes the freed numbers */
    rill_stream *q[2];
    pair(loop, q);
    subrec sr = {0};
    rill_stream_on(q[1], RILL_EV_READ, h_c, &sr);
    assert_int_equal(rill_stream_start(q[1]), 0);
    TH_RUN_UNTIL(loop, r.closes == 1, 3000);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rill_stream_write(q[0], "y", 1, NULL, NULL), 0);
        TH_RUN_UNTIL(loop, sr.n >= i + 1, 3000);
    }
    /* close the surrounding streams one by one; q keeps working */
    for (int i = 0; i < 6; i++) {
        rill_stream_close(others[i]);
        rill_stream_unref(others[i]);
        settle(loop, 2);
        assert_int_equal(rill_stream_write(q[0], "z", 1, NULL, NULL), 0);
        TH_RUN_UNTIL(loop, sr.n >= 6 + i, 3000);
    }
    rill_stream_close(q[0]);
    rill_stream_close(q[1]);
    th_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_inside_inline_handler),
        cmocka_unit_test(test_inline_handler_moves_then_offs_itself),
        cmocka_unit_test(test_off_first_from_second_then_subscribe),
        cmocka_unit_test(test_once_resubscribes_itself),
        cmocka_unit_test(test_bytes_between_requests_stay_buffered),
        cmocka_unit_test(test_start_after_eof_hands_out_kept_bytes),
        cmocka_unit_test(test_stream_closed_and_unref_while_queued),
        cmocka_unit_test(test_close_cascade_in_one_batch),
        cmocka_unit_test(test_stream_freed_while_requeued_by_itself),
        cmocka_unit_test(test_fast_path_epipe_socket),
        cmocka_unit_test(test_fast_path_epipe_pipe_closes),
        cmocka_unit_test(test_fast_path_short_write_queues_rest),
        cmocka_unit_test(test_fast_path_eagain_keeps_order),
        cmocka_unit_test(test_fast_path_touches_timeout),
        cmocka_unit_test(test_write_event_after_fast_path),
        cmocka_unit_test(test_poll_slots_across_steal_and_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
