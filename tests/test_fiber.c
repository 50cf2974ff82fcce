/* tests/test_fiber.c - fibers: scheduling, sleep and join, blocking-style framing and
 * writes over stream pairs, deadlines, cancellation, the guard page, TCP and Unix servers
 * in blocking style (1,000 concurrent clients), and the ucontext switch in a child. */
#include "harness.h"

#include "internal.h"
#include "rill/fiber.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Checks inside fibers: cmocka's assertions longjmp, which must not cross from a fiber's
 * stack to the test's, so fibers count failures and run() asserts there were none. */
static int fiber_failures;
#define FCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fiber_failures++;                                                                      \
            print_error("%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                   \
        }                                                                                          \
    } while (0)
#define FCHECK_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fiber_failures++;                                                                      \
            print_error("%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_);     \
        }                                                                                          \
    } while (0)
#define FCHECK_MEM(a, b, n) FCHECK(memcmp((a), (b), (n)) == 0)

/* What rill_fiber_write returns for bytes an empty socket takes at once: 1, or 0 on the
 * uring backend, where they go out with the next submission. */
#define WROTE(s) (th_writes_deferred(rill_stream_loop(s)) ? 0 : 1)

static uint64_t deadline_in(rill_loop *loop, uint64_t ms)
{
    return rill_loop_now(loop) + ms;
}

/* Runs the loop until every fiber and handle is done (bounded by the harness watchdog). */
static void run(rill_loop *loop)
{
    fiber_failures = 0;
    assert_int_equal(rill_loop_run(loop, RILL_RUN_DEFAULT), 0);
    assert_int_equal(fiber_failures, 0);
}

/* A stream pair the test holds references on: the streams may close themselves (EOF,
 * abandoned reads) while the test still looks at them. */
static void pair(rill_loop *loop, rill_stream *p[2])
{
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    rill_stream_ref(p[0]);
    rill_stream_ref(p[1]);
}

static void unpair(rill_stream *p[2])
{
    for (int i = 0; i < 2; i++) {
        rill_stream_close(p[i]);
        rill_stream_unref(p[i]);
    }
}

/* ---- calls outside a fiber ------------------------------------------------------------------- */

static void test_outside_fiber(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    char buf[8];
    int err = 0;
    assert_null(rill_fiber_self());
    assert_int_equal(rill_fiber_read_bytes(p[0], buf, sizeof buf, 0), RILL_EINVAL);
    assert_int_equal(rill_fiber_read_exactly(p[0], buf, 4, 0), RILL_EINVAL);
    assert_int_equal(rill_fiber_read_until(p[0], "\n", 1, buf, sizeof buf, 0), RILL_EINVAL);
    assert_int_equal(rill_fiber_write(p[0], "x", 1, 0), RILL_EINVAL);
    assert_int_equal(rill_fiber_shutdown(p[0], 0), RILL_EINVAL);
    assert_int_equal(rill_fiber_sleep(1), RILL_EINVAL);
    assert_int_equal(rill_fiber_join(NULL, 0), RILL_EINVAL);
    assert_null(rill_fiber_connect_tcp(loop, "127.0.0.1", 1, NULL, &err));
    assert_int_equal(err, RILL_EINVAL);
    assert_int_equal(errno, EINVAL);
    err = 0;
    assert_null(rill_fiber_connect_unix(loop, "/nonexistent", NULL, &err));
    assert_int_equal(err, RILL_EINVAL);
    assert_null(rill_fiber_spawn(loop, NULL, NULL, 0));
    assert_int_equal(errno, EINVAL);
    assert_non_null(rill_fiber_mechanism());
    unpair(p);
    th_loop_free(loop);
}

/* ---- spawn, self, sleep, join ---------------------------------------------------------------- */

typedef struct {
    rill_loop *loop;
    rill_fiber *target;
    int steps, rc[4];
    uint64_t t0, t1;
} ctx;

static void set_step(void *arg)
{
    ctx *c = arg;
    FCHECK((rill_fiber_self()) != NULL);
    c->steps++;
}

static void test_spawn_deferred(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    ctx c = {.loop = loop};
    rill_fiber *f = rill_fiber_spawn(loop, set_step, &c, 0);
    assert_non_null(f);
    assert_int_equal(c.steps, 0); /* never inside the spawn */
    assert_int_equal(rill_loop_free(loop), RILL_EBUSY);
    run(loop);
    assert_int_equal(c.steps, 1);
    rill_fiber_detach(f); /* finished: freed now */
    th_loop_free(loop);
}

static void sleeper(void *arg)
{
    ctx *c = arg;
    c->t0 = th_now_ms();
    c->rc[0] = rill_fiber_sleep(40);
    c->t1 = th_now_ms();
}

static void joiner(void *arg)
{
    ctx *c = arg;
    c->rc[1] = rill_fiber_join(c->target, deadline_in(c->loop, 10)); /* too early */
    c->rc[2] = rill_fiber_join(rill_fiber_self(), 0);
    c->rc[3] = rill_fiber_join(c->target, deadline_in(c->loop, 5000));
    c->steps++;
}

static void test_sleep_and_join(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    ctx c = {.loop = loop};
    c.target = rill_fiber_spawn(loop, sleeper, &c, 0);
    rill_fiber *j = rill_fiber_spawn(loop, joiner, &c, 32 * 1024);
    assert_non_null(c.target);
    assert_non_null(j);
    run(loop);
    assert_int_equal(c.rc[0], 0);
    assert_true(c.t1 - c.t0 >= 39);
    assert_int_equal(c.rc[1], RILL_ETIMEDOUT);
    assert_int_equal(c.rc[2], RILL_EDEADLK);
    assert_int_equal(c.rc[3], 0); /* reaped */
    assert_int_equal(c.steps, 1);
    rill_fiber_detach(j);
    th_loop_free(loop);
}

/* Joining a fiber that already finished reaps it at once; yielding lets others run. */
static void quick(void *arg)
{
    ((ctx *)arg)->steps++;
}

static void late_joiner(void *arg)
{
    ctx *c = arg;
    c->target = rill_fiber_spawn(c->loop, quick, c, 0);
    while (c->steps == 0)
        FCHECK_EQ(rill_fiber_sleep(0), 0);
    c->rc[0] = rill_fiber_join(c->target, 0);
}

static void test_join_finished(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    ctx c = {.loop = loop};
    rill_fiber_detach(rill_fiber_spawn(loop, late_joiner, &c, 0));
    run(loop);
    assert_int_equal(c.steps, 1);
    assert_int_equal(c.rc[0], 0);
    th_loop_free(loop);
}

/* ---- a line protocol as a loop of rill_fiber_read_until -------------------------------------- */

typedef struct {
    rill_loop *loop;
    rill_stream *s;
    int lines, replies, status;
    char last[64];
} proto;

static void line_server(void *arg)
{
    proto *p = arg;
    char line[128], reply[160];
    ssize_t n;
    while ((n = rill_fiber_read_until(p->s, "\r\n", 2, line, sizeof line, 0)) > 0) {
        p->lines++;
        if (n == 6 && memcmp(line, "QUIT", 4) == 0)
            break;
        int len = snprintf(reply, sizeof reply, "+%.*s\r\n", (int)n - 2, line);
        FCHECK(rill_fiber_write(p->s, reply, (size_t)len, 0) >= 0);
    }
    FCHECK_EQ(rill_fiber_write(p->s, "+BYE\r\n", 6, 0), WROTE(p->s));
    FCHECK_EQ(rill_fiber_shutdown(p->s, 0), 0);
    p->status = (int)n;
}

static void line_client(void *arg)
{
    proto *p = arg;
    char buf[64];
    for (int i = 0; i < 100; i++) {
        int len = snprintf(buf, sizeof buf, "CMD %d\r\n", i);
        /* the whole line goes out at once on an empty socket (uring: with the next
         * submission, so it reports queued) */
        FCHECK_EQ(rill_fiber_write(p->s, buf, (size_t)len, 0), WROTE(p->s));
        ssize_t n = rill_fiber_read_until(p->s, "\r\n", 2, buf, sizeof buf, 0);
        FCHECK(n > 0);
        char want[64];
        int wl = snprintf(want, sizeof want, "+CMD %d\r\n", i);
        FCHECK_EQ(n, wl);
        FCHECK_MEM(buf, want, (size_t)wl);
        p->replies++;
    }
    FCHECK_EQ(rill_fiber_write(p->s, "QUIT\r\n", 6, 0), WROTE(p->s));
    ssize_t n = rill_fiber_read_until(p->s, "\r\n", 2, buf, sizeof buf, 0);
    FCHECK_EQ(n, 6);
    memcpy(p->last, buf, 6);
    /* the server shut its half down: end of stream, also after the stream closed itself
     * at EOF (streams without an EOF handler do) */
    ssize_t end = rill_fiber_read_until(p->s, "\r\n", 2, buf, sizeof buf, 0);
    FCHECK_EQ(end, RILL_EOF);
    FCHECK_EQ(rill_fiber_read_until(p->s, "\r\n", 2, buf, sizeof buf, 0), RILL_EOF);
}

static void test_line_protocol(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    proto srv = {.loop = loop, .s = s[0]}, cli = {.loop = loop, .s = s[1]};
    rill_fiber_detach(rill_fiber_spawn(loop, line_server, &srv, 0));
    rill_fiber_detach(rill_fiber_spawn(loop, line_client, &cli, 0));
    run(loop);
    assert_int_equal(srv.lines, 101);
    assert_int_equal(cli.replies, 100);
    assert_memory_equal(cli.last, "+BYE\r\n", 6);
    assert_int_equal(srv.status, 6);
    unpair(s);
    th_loop_free(loop);
}

/* ---- framing variants, EOF, cap -------------------------------------------------------------- */

/* Bytes and the end both arrive before the fiber reads: the stream (no EOF handler)
 * closes itself once the bytes are taken; the reader still sees the end as RILL_EOF. */
static void eof_reader(void *arg)
{
    proto *p = arg;
    char buf[16];
    FCHECK_EQ(rill_fiber_read_bytes(p->s, buf, sizeof buf, 0), 3);
    FCHECK_MEM(buf, "abc", 3);
    FCHECK_EQ(rill_fiber_read_bytes(p->s, buf, sizeof buf, 0), RILL_EOF);
    FCHECK_EQ(rill_fiber_read_until(p->s, "\n", 1, buf, sizeof buf, 0), RILL_EOF);
    p->status = 1;
}

static void eof_only_reader(void *arg)
{
    proto *p = arg;
    char buf[16];
    FCHECK_EQ(rill_fiber_read_bytes(p->s, buf, sizeof buf, 0), RILL_EOF);
    p->status = 1;
}

static void got_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    (void)s, (void)data;
    *(int *)arg = status == 0 ? (int)len : status;
}

static void test_eof_after_self_close(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    for (int mode = 0; mode < 2; mode++) {
        rill_stream *s[2];
        pair(loop, s);
        assert_int_equal(rill_stream_write(s[1], "abc", 3, NULL, NULL), 0);
        assert_int_equal(rill_stream_shutdown(s[1], NULL, NULL), 0);
        assert_int_equal(rill_stream_start(s[0]), 0); /* both arrive before any read */
        TH_RUN_UNTIL(loop, rill__in_len(s[0]) == 3 && (s[0]->flags & RILL__S_EOF), 5000);
        proto p = {.loop = loop, .s = s[0]};
        if (mode == 0) {
            rill_fiber_detach(rill_fiber_spawn(loop, eof_reader, &p, 0));
        } else { /* the bytes go to a callback request first; the stream closes itself */
            int got = 0;
            assert_int_equal(rill_stream_read_bytes(s[0], 16, got_frame, &got), 0);
            TH_RUN_UNTIL(loop, got == 3 && rill_stream_is_closed(s[0]), 5000);
            rill_fiber_detach(rill_fiber_spawn(loop, eof_only_reader, &p, 0));
        }
        run(loop);
        assert_int_equal(p.status, 1);
        assert_true(rill_stream_is_closed(s[0]));
        unpair(s);
    }
    th_loop_free(loop);
}

static void framing_reader(void *arg)
{
    proto *p = arg;
    char buf[64];
    rill_regex *re = rill_regex_new("[0-9]+;", NULL, NULL);
    FCHECK((re) != NULL);
    FCHECK_EQ(rill_fiber_read_exactly(p->s, buf, 5, 0), 5);
    FCHECK_MEM(buf, "HELLO", 5);
    FCHECK_EQ(rill_fiber_read_until_regex(p->s, re, buf, sizeof buf, 0), 6);
    FCHECK_MEM(buf, "ab123;", 6);
    FCHECK_EQ(rill_fiber_read_until(p->s, "|", 1, buf, 4, 0), RILL_ENOBUFS); /* "toolong|" */
    FCHECK_EQ(rill_fiber_read_until(p->s, "|", 1, buf, sizeof buf, 0), 3);
    FCHECK_MEM(buf, "ok|", 3);
    ssize_t n = rill_fiber_read_bytes(p->s, buf, 3, 0);
    FCHECK_EQ(n, 3);
    FCHECK_MEM(buf, "tai", 3);
    /* the rest ends without its delimiter: partial frame, then end of stream */
    FCHECK_EQ(rill_fiber_read_until(p->s, "\n", 1, buf, sizeof buf, 0), 1);
    FCHECK_MEM(buf, "l", 1);
    /* end of stream, also when the stream (no EOF handler) already closed itself */
    ssize_t end = rill_fiber_read_until(p->s, "\n", 1, buf, sizeof buf, 0);
    FCHECK_EQ(end, RILL_EOF);
    FCHECK_EQ(rill_fiber_read_bytes(p->s, buf, sizeof buf, 0), RILL_EOF);
    rill_regex_free(re);
    p->status = 1;
}

static void framing_writer(void *arg)
{
    proto *p = arg;
    const char *parts[] = {"HEL", "LOab1", "23;toolong|o", "k|tail"};
    for (size_t i = 0; i < 4; i++) {
        FCHECK(rill_fiber_write(p->s, parts[i], strlen(parts[i]), 0) >= 0);
        FCHECK_EQ(rill_fiber_sleep(2), 0);
    }
    FCHECK_EQ(rill_fiber_shutdown(p->s, 0), 0);
}

static void test_framing(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    proto r = {.loop = loop, .s = s[0]}, w = {.loop = loop, .s = s[1]};
    rill_fiber_detach(rill_fiber_spawn(loop, framing_reader, &r, 0));
    rill_fiber_detach(rill_fiber_spawn(loop, framing_writer, &w, 0));
    run(loop);
    assert_int_equal(r.status, 1);
    unpair(s);
    th_loop_free(loop);
}

/* ---- deadlines and cancellation -------------------------------------------------------------- */

static char late_buf[32];

static void deadline_reader(void *arg)
{
    proto *p = arg;
    uint64_t t0 = th_now_ms();
    memset(late_buf, 'X', sizeof late_buf);
    p->status = (int)rill_fiber_read_until(p->s, "\n", 1, late_buf, sizeof late_buf,
                                           deadline_in(p->loop, 30));
    FCHECK(th_now_ms() - t0 >= 29);
    FCHECK(rill_stream_is_closed(p->s)); /* the queued request went with the stream */
    /* an expired deadline fails before anything starts */
    FCHECK_EQ(rill_fiber_sleep(5), 0);
    p->lines = (int)rill_fiber_read_bytes(p->s, late_buf, 4, rill_loop_now(p->loop) - 1);
}

static void test_deadline(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    proto p = {.loop = loop, .s = s[0]};
    rill_fiber_detach(rill_fiber_spawn(loop, deadline_reader, &p, 0));
    run(loop);
    assert_int_equal(p.status, RILL_ETIMEDOUT);
    assert_int_equal(p.lines, RILL_ETIMEDOUT);
    /* bytes sent after the timeout never land in the caller's buffer */
    (void)rill_stream_write(s[1], "late\n", 5, NULL, NULL);
    TH_RUN_UNTIL(loop, rill_stream_is_closed(s[0]), 1000);
    for (size_t i = 0; i < sizeof late_buf; i++)
        assert_int_equal(late_buf[i], 'X');
    unpair(s);
    th_loop_free(loop);
}

static void blocked_reader(void *arg)
{
    proto *p = arg;
    char buf[16];
    p->lines = 1; /* entered */
    p->status = (int)rill_fiber_read_until(p->s, "\n", 1, buf, sizeof buf, 0);
    /* cancellation is sticky */
    p->replies = rill_fiber_sleep(1);
}

static void cancel_it(rill_timer *t, void *arg)
{
    (void)t;
    rill_fiber_cancel(arg);
}

static void test_cancel_read(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    proto p = {.loop = loop, .s = s[0]};
    rill_fiber *f = rill_fiber_spawn(loop, blocked_reader, &p, 0);
    assert_non_null(f);
    assert_non_null(rill_timer_start(loop, 20, 0, cancel_it, f));
    run(loop);
    assert_int_equal(p.lines, 1);
    assert_int_equal(p.status, RILL_ECANCELED);
    assert_int_equal(p.replies, RILL_ECANCELED);
    rill_fiber_cancel(f); /* finished, not joined: a no-op */
    rill_fiber_detach(f);
    unpair(s);
    th_loop_free(loop);
}

/* A result that is already there when the cancel comes wins; later calls are cancelled. */
static void canceller(void *arg)
{
    ctx *c = arg;
    rill_fiber_cancel(c->target); /* deferred: the target is still asleep after this */
    c->steps++;
}

static void sleepy(void *arg)
{
    ctx *c = arg;
    c->rc[0] = rill_fiber_sleep(10000);
    c->rc[1] = rill_fiber_sleep(0);
}

static void test_cancel_sleep(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    ctx c = {.loop = loop};
    c.target = rill_fiber_spawn(loop, sleepy, &c, 0);
    rill_fiber_detach(rill_fiber_spawn(loop, canceller, &c, 0));
    uint64_t t0 = th_now_ms();
    run(loop);
    assert_true(th_now_ms() - t0 < 5000);
    assert_int_equal(c.rc[0], RILL_ECANCELED);
    assert_int_equal(c.rc[1], RILL_ECANCELED);
    rill_fiber_detach(c.target);
    th_loop_free(loop);
}

/* ---- writes: backpressure and its deadline --------------------------------------------------- */

#define BIG (4u << 20)

static void big_writer(void *arg)
{
    proto *p = arg;
    char *data = malloc(BIG);
    FCHECK((data) != NULL);
    th_fill(data, BIG, 7);
    rill_stream_set_watermarks(p->s, 0, 64 * 1024);
    p->status = rill_fiber_write(p->s, data, BIG, 0); /* waits for the drain */
    free(data);
    rill_stream_close_gracefully(p->s);
}

static void big_reader(void *arg)
{
    proto *p = arg;
    char buf[65536];
    size_t total = 0;
    ssize_t n;
    while ((n = rill_fiber_read_bytes(p->s, buf, sizeof buf, 0)) > 0)
        total += (size_t)n;
    p->status = (int)n;
    p->lines = (int)(total >> 10);
}

static void test_write_backpressure(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    proto w = {.loop = loop, .s = s[0]}, r = {.loop = loop, .s = s[1]};
    rill_fiber_detach(rill_fiber_spawn(loop, big_writer, &w, 0));
    rill_fiber_detach(rill_fiber_spawn(loop, big_reader, &r, 128 * 1024));
    run(loop);
    assert_int_equal(w.status, 1);
    assert_int_equal(r.status, RILL_EOF);
    assert_int_equal(r.lines, (int)(BIG >> 10));
    unpair(s);
    th_loop_free(loop);
}

static void stuck_writer(void *arg)
{
    proto *p = arg;
    char *data = calloc(1, BIG);
    FCHECK((data) != NULL);
    p->status = rill_fiber_write(p->s, data, BIG, deadline_in(p->loop, 20));
    free(data);
    FCHECK(!(rill_stream_is_closed(p->s))); /* the bytes stay queued */
    FCHECK(rill_stream_write_queue_size(p->s) > 0);
    /* the shutdown waits behind the queue: it times out and goes on in the background;
     * its late completion (cancelled by the close) finds the call gone */
    FCHECK_EQ(rill_fiber_shutdown(p->s, deadline_in(p->loop, 20)), RILL_ETIMEDOUT);
    FCHECK(!rill_stream_is_closed(p->s));
    FCHECK_EQ(rill_fiber_write(p->s, "x", 1, 0), RILL_EPIPE); /* shut down for writes */
    rill_stream_close(p->s);
}

static void test_write_deadline(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    proto w = {.loop = loop, .s = s[0]};
    rill_fiber_detach(rill_fiber_spawn(loop, stuck_writer, &w, 0));
    run(loop);
    assert_int_equal(w.status, RILL_ETIMEDOUT);
    unpair(s);
    th_loop_free(loop);
}

/* A write that waits for DRAIN while the peer goes away: the queue fails with the error
 * and no DRAIN ever comes.  With an ERROR handler of the user's the stream stays open, so
 * the wait must end at the ERROR too (it waited forever for a DRAIN or a CLOSE). */
typedef struct {
    proto p;
    int errors, done;
} failing;

static void count_error(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev;
    ((failing *)arg)->errors++;
}

static void failing_writer(void *arg)
{
    failing *f = arg;
    char *data = calloc(1, BIG);
    FCHECK((data) != NULL);
    f->p.status = rill_fiber_write(f->p.s, data, BIG, 0);
    free(data);
    f->done = 1;
}

static void close_peer(rill_timer *t, void *arg)
{
    (void)t;
    rill_stream_close(arg);
}

static void test_write_peer_gone_with_error_handler(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *s[2];
    pair(loop, s);
    failing f = {.p = {.loop = loop, .s = s[0]}};
    assert_non_null(rill_stream_on(s[0], RILL_EV_ERROR, count_error, &f));
    rill_fiber_detach(rill_fiber_spawn(loop, failing_writer, &f, 0));
    assert_non_null(rill_timer_start(loop, 20, 0, close_peer, s[1]));
    fiber_failures = 0;
    TH_RUN_UNTIL(loop, f.done, 3000);
    assert_int_equal(fiber_failures, 0);
    assert_true(f.p.status == RILL_EPIPE || f.p.status == RILL_ECONNRESET);
    assert_int_equal(f.errors, 1);
    assert_false(rill_stream_is_closed(s[0])); /* the user's handler decides */
    unpair(s);
    /* without an ERROR handler the failure closes the stream, as it always does */
    pair(loop, s);
    failing g = {.p = {.loop = loop, .s = s[0]}};
    rill_fiber_detach(rill_fiber_spawn(loop, failing_writer, &g, 0));
    assert_non_null(rill_timer_start(loop, 20, 0, close_peer, s[1]));
    TH_RUN_UNTIL(loop, g.done, 3000);
    assert_int_equal(fiber_failures, 0);
    assert_true(g.p.status == RILL_EPIPE || g.p.status == RILL_ECONNRESET);
    assert_true(rill_stream_is_closed(s[0]));
    unpair(s);
    th_loop_free(loop);
}

/* ---- the guard page -------------------------------------------------------------------------- */

static volatile uintptr_t stack_top;
static int fault_pipe = -1;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    /* Below the 64 KiB stack and within the page under it (plus the first frame's slack). */
    char verdict =
        (a < stack_top - 64 * 1024 + 4096 && a >= stack_top - 64 * 1024 - 8192) ? 'G' : 'O';
    if (write(fault_pipe, &verdict, 1) < 0)
        _exit(3);
    signal(sig, SIG_DFL); /* returning re-runs the access: the default action kills */
}

static int recurse(int depth)
{
    volatile char pad[512];
    for (size_t i = 0; i < sizeof pad; i++)
        pad[sizeof pad - 1 - i] = (char)depth;
    return depth > 1000000 ? pad[0] : recurse(depth + 1) + pad[7];
}

static void overflow(void *arg)
{
    (void)arg;
    /* The frame address, not a local's: under ASan's use-after-return detection locals
     * live on a separate fake stack. */
    stack_top = (uintptr_t)__builtin_frame_address(0);
    recurse(0);
}

static void overflow_child(int wfd)
{
    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core); /* the crash is expected: no core file */
    fault_pipe = wfd;
    sigaltstack(&ss, NULL);
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigaction(SIGSEGV, &sa, NULL);
    rill_loop *loop = rill_loop_new(NULL);
    rill_fiber_spawn(loop, overflow, NULL, 0);
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    _exit(0); /* not reached: the overflow must kill us */
}

static void test_stack_overflow(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        overflow_child(fds[1]);
    }
    close(fds[1]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char verdict = 0;
    ssize_t n = read(fds[0], &verdict, 1);
    close(fds[0]);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSEGV);
    assert_int_equal(n, 1);
    assert_int_equal(verdict, 'G'); /* the fault was on the guard page */
}

/* ---- servers in blocking style --------------------------------------------------------------- */

#define NCLIENTS 1000
#define NLINES 3

typedef struct {
    rill_loop *loop;
    rill_server *srv;
    uint16_t port;
    int connected, done, echoed, handlers, handler_exits;
    size_t max_conns;
    int status;
} echo_ctx;

static void echo_handler(rill_stream *conn, void *arg)
{
    echo_ctx *e = arg;
    char line[256];
    ssize_t n;
    e->handlers++;
    while ((n = rill_fiber_read_until(conn, "\n", 1, line, sizeof line, 0)) > 0)
        if (rill_fiber_write(conn, line, (size_t)n, 0) < 0)
            break;
    e->handler_exits++;
}

static void echo_client(void *arg)
{
    echo_ctx *e = arg;
    int err = 0;
    rill_stream *s = rill_fiber_connect_tcp(e->loop, "127.0.0.1", e->port, NULL, &err);
    if (!s) {
        FCHECK_EQ(err, 0);
        e->connected++;
        e->done++;
        return;
    }
    e->connected++;
    /* All clients stay connected at once before they talk. */
    while (e->connected < NCLIENTS)
        FCHECK_EQ(rill_fiber_sleep(1), 0);
    char out[64], in[64];
    for (int i = 0; i < NLINES; i++) {
        int len = snprintf(out, sizeof out, "line %d of %p\n", i, (void *)s);
        FCHECK(rill_fiber_write(s, out, (size_t)len, 0) >= 0);
        ssize_t n = rill_fiber_read_until(s, "\n", 1, in, sizeof in, deadline_in(e->loop, 10000));
        FCHECK_EQ(n, len);
        FCHECK_MEM(in, out, (size_t)len);
        e->echoed++;
        /* the server holds them all at once (sampled once it answered: on the uring
         * backend the 1000 connects complete before the listener's poll is reaped) */
        size_t c = rill_server_connection_count(e->srv);
        e->max_conns = c > e->max_conns ? c : e->max_conns;
    }
    rill_stream_close(s);
    if (++e->done == NCLIENTS)
        rill_server_close(e->srv);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4 * NCLIENTS && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4 * NCLIENTS ? rl.rlim_max : 4 * NCLIENTS;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * NCLIENTS + 64)
        skip();
}

static void test_echo_server_1000(void **state)
{
    (void)state;
    raise_fd_limit();
    rill_loop *loop = th_loop_new();
    echo_ctx e = {.loop = loop};
    rill_listen_opts lo = {.backlog = 4096};
    e.srv = rill_tcp_listen(loop, "127.0.0.1", 0, &lo);
    assert_non_null(e.srv);
    rill_addr a;
    assert_int_equal(rill_server_sockname(e.srv, &a), 0);
    e.port = ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
    assert_int_equal(rill_server_serve_fibers(e.srv, echo_handler, &e), 0);
    assert_int_equal(rill_server_serve_fibers(e.srv, echo_handler, &e), RILL_EPENDING);
    for (int i = 0; i < NCLIENTS; i++)
        rill_fiber_detach(rill_fiber_spawn(loop, echo_client, &e, 32 * 1024));
    uint64_t t0 = th_now_ms();
    run(loop);
    assert_true(th_now_ms() - t0 < 20000);
    assert_int_equal(e.done, NCLIENTS);
    assert_int_equal(e.echoed, NCLIENTS * NLINES);
    assert_int_equal(e.handlers, NCLIENTS);
    assert_int_equal(e.handler_exits, NCLIENTS);
    assert_true(e.max_conns >= NCLIENTS / 2);
    th_loop_free(loop);
}

/* rill_server_close cancels handlers that wait on something else than their connection. */
static void idle_handler(rill_stream *conn, void *arg)
{
    echo_ctx *e = arg;
    (void)conn;
    e->handlers++;
    e->status = rill_fiber_sleep(60000);
    e->handler_exits++;
}

static void close_when_entered(rill_timer *t, void *arg)
{
    echo_ctx *e = arg;
    if (e->handlers == 0)
        return;
    rill_timer_stop(t);
    rill_server_close(e->srv);
}

static void test_server_close_cancels(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    echo_ctx e = {.loop = loop};
    e.srv = rill_tcp_listen(loop, "127.0.0.1", 0, NULL);
    assert_non_null(e.srv);
    rill_addr a;
    assert_int_equal(rill_server_sockname(e.srv, &a), 0);
    assert_int_equal(rill_server_serve_fibers(e.srv, idle_handler, &e), 0);
    rill_stream *c =
        rill_tcp_connect(loop, "127.0.0.1", ntohs(((struct sockaddr_in *)&a.ss)->sin_port), NULL);
    assert_non_null(c);
    assert_non_null(rill_timer_start(loop, 1, 1, close_when_entered, &e));
    uint64_t t0 = th_now_ms();
    TH_RUN_UNTIL(loop, e.handler_exits == 1, 5000);
    assert_true(th_now_ms() - t0 < 5000);
    assert_int_equal(e.status, RILL_ECANCELED);
    rill_stream_close(c);
    th_loop_free(loop);
}

/* rill_fiber_accept: a deadline, then connections taken in order (TCP and Unix). */
typedef struct {
    rill_loop *loop;
    rill_server *srv;
    const char *path;
    uint16_t port;
    int rc[4];
    int got;
} acc_ctx;

static void acceptor_fiber(void *arg)
{
    acc_ctx *a = arg;
    int err = 0;
    FCHECK((rill_fiber_accept(a->srv, deadline_in(a->loop, 20), &err)) == NULL);
    a->rc[0] = err;
    for (int i = 0; i < 2; i++) {
        rill_stream *conn = rill_fiber_accept(a->srv, deadline_in(a->loop, 5000), &err);
        if (!conn) {
            FCHECK_EQ(err, 0);
            break;
        }
        char buf[8];
        FCHECK_EQ(rill_fiber_read_exactly(conn, buf, 3, 0), 3);
        a->got = a->got * 10 + (buf[2] - '0');
        rill_stream_close(conn);
    }
    rill_server_close(a->srv);
}

static void connector_fiber(void *arg)
{
    acc_ctx *a = arg;
    int err = 0;
    FCHECK_EQ(rill_fiber_sleep(40), 0); /* after the acceptor's deadline */
    for (int i = 1; i <= 2; i++) {
        rill_stream *s = a->path
                             ? rill_fiber_connect_unix(a->loop, a->path, NULL, &err)
                             : rill_fiber_connect_tcp(a->loop, "127.0.0.1", a->port, NULL, &err);
        if (!s) {
            FCHECK_EQ(err, 0);
            return;
        }
        char msg[4] = {'n', 'o', (char)('0' + i), 0};
        FCHECK(rill_fiber_write(s, msg, 3, 0) >= 0);
        rill_stream_close_gracefully(s);
    }
}

static void run_accept(const char *path)
{
    rill_loop *loop = th_loop_new();
    acc_ctx a = {.loop = loop, .path = path};
    if (path) {
        a.srv = rill_unix_listen(loop, path, NULL);
    } else {
        a.srv = rill_tcp_listen(loop, "127.0.0.1", 0, NULL);
        rill_addr ad;
        assert_int_equal(rill_server_sockname(a.srv, &ad), 0);
        a.port = ntohs(((struct sockaddr_in *)&ad.ss)->sin_port);
    }
    assert_non_null(a.srv);
    rill_fiber_detach(rill_fiber_spawn(loop, acceptor_fiber, &a, 0));
    rill_fiber_detach(rill_fiber_spawn(loop, connector_fiber, &a, 0));
    run(loop);
    assert_int_equal(a.rc[0], RILL_ETIMEDOUT);
    assert_int_equal(a.got, 12);
    th_loop_free(loop);
}

static void test_accept_tcp(void **state)
{
    (void)state;
    run_accept(NULL);
}

static void test_accept_unix(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "@rill-test-fiber-%d", (int)getpid());
    run_accept(path);
}

static void refused_fiber(void *arg)
{
    acc_ctx *a = arg;
    int err = 0;
    FCHECK((rill_fiber_connect_tcp(a->loop, "127.0.0.1", a->port, NULL, &err)) == NULL);
    a->rc[0] = err;
}

static void test_connect_refused(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    acc_ctx a = {.loop = loop};
    /* a port that was just free: listen, learn it, close */
    rill_server *srv = rill_tcp_listen(loop, "127.0.0.1", 0, NULL);
    assert_non_null(srv);
    rill_addr ad;
    assert_int_equal(rill_server_sockname(srv, &ad), 0);
    a.port = ntohs(((struct sockaddr_in *)&ad.ss)->sin_port);
    rill_server_close(srv);
    rill_fiber_detach(rill_fiber_spawn(loop, refused_fiber, &a, 0));
    run(loop);
    assert_int_equal(a.rc[0], RILL_ECONNREFUSED);
    th_loop_free(loop);
}

/* ---- one loop per thread ------------------------------------------------------------------ */

typedef struct {
    int done;
    int failures;
} thread_ctx;

static void thread_fiber(void *arg)
{
    thread_ctx *t = arg;
    for (int i = 0; i < 20; i++)
        if (rill_fiber_sleep(i % 2) != 0)
            t->failures++;
    t->done++;
}

static void *thread_main(void *arg)
{
    thread_ctx *t = arg;
    rill_loop *loop = rill_loop_new(NULL);
    if (!loop)
        return NULL;
    for (int i = 0; i < 50; i++)
        rill_fiber_detach(rill_fiber_spawn(loop, thread_fiber, t, 0));
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    if (rill_loop_free(loop) != 0)
        t->failures++;
    return NULL;
}

/* Fibers of loops in different threads never meet: the scheduler's state is per thread. */
static void test_threads(void **state)
{
    (void)state;
    pthread_t th[3];
    thread_ctx t[3] = {{0, 0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].done, 50);
        assert_int_equal(t[i].failures, 0);
    }
}

/* ---- every allocation may fail --------------------------------------------------------------- */

typedef struct {
    rill_stream *s[2];
    rill_loop *loop;
    ssize_t got, wrote;
} alloc_ctx;

static void alloc_reader(void *arg)
{
    alloc_ctx *a = arg;
    char buf[8];
    a->got = rill_fiber_read_until(a->s[0], "\n", 1, buf, sizeof buf, deadline_in(a->loop, 200));
}

static void alloc_writer(void *arg)
{
    alloc_ctx *a = arg;
    a->wrote = rill_fiber_write(a->s[1], "x\n", 2, 0);
}

/* Spawns a reader and a writer on a fresh loop; true when nothing failed.  Whatever fails,
 * the run must end and free everything. */
static bool alloc_scenario(void)
{
    alloc_ctx a = {.got = 1, .wrote = 1};
    if (!(a.loop = rill_loop_new(NULL)))
        return false;
    bool ok = rill_stream_pair(a.loop, a.s, 0) == 0;
    if (ok) {
        /* held: a stream that reaches its end closes itself, maybe within the run */
        rill_stream_ref(a.s[0]);
        rill_stream_ref(a.s[1]);
        rill_fiber *r = rill_fiber_spawn(a.loop, alloc_reader, &a, 0);
        rill_fiber *w = rill_fiber_spawn(a.loop, alloc_writer, &a, 0);
        ok = r && w;
        rill_fiber_detach(r);
        rill_fiber_detach(w);
        rill_loop_run(a.loop, RILL_RUN_DEFAULT);
        ok = ok && a.got == 2 && (a.wrote == 1 || (a.wrote == 0 && th_writes_deferred(a.loop)));
        /* the reader got its line, or failed cleanly (never ran, no memory, or no data
         * because the writer failed) */
        assert_true(a.got == 2 || a.got == 1 || a.got == RILL_ENOMEM || a.got == RILL_ETIMEDOUT);
        assert_true(a.wrote == 1 || a.wrote == RILL_ENOMEM || (a.wrote == 0 && th_writes_deferred(a.loop)));
        unpair(a.s);
    }
    for (int i = 0; i < 100 && rill_loop_free(a.loop) == RILL_EBUSY; i++)
        rill_loop_run(a.loop, RILL_RUN_NOWAIT);
    return ok;
}

typedef struct {
    rill_loop *loop;
    rill_server *srv;
    uint16_t port;
    ssize_t got;
} alloc_srv_ctx;

static void alloc_echo(rill_stream *conn, void *arg)
{
    char buf[8];
    ssize_t n = rill_fiber_read_until(conn, "\n", 1, buf, sizeof buf, 0);
    (void)arg;
    if (n > 0)
        rill_fiber_write(conn, buf, (size_t)n, 0);
}

static void alloc_client(void *arg)
{
    alloc_srv_ctx *a = arg;
    char buf[8];
    rill_stream *s = rill_fiber_connect_tcp(a->loop, "127.0.0.1", a->port, NULL, NULL);
    if (s && rill_fiber_write(s, "x\n", 2, 0) >= 0)
        a->got = rill_fiber_read_until(s, "\n", 1, buf, sizeof buf, deadline_in(a->loop, 2000));
    rill_stream_close(s);
    rill_server_close(a->srv);
}

/* A fiber server and a fiber client; true when nothing failed. */
static bool alloc_server_scenario(void)
{
    alloc_srv_ctx a = {.got = 0};
    if (!(a.loop = rill_loop_new(NULL)))
        return false;
    bool ok = false;
    rill_addr ad;
    if ((a.srv = rill_tcp_listen(a.loop, "127.0.0.1", 0, NULL)) &&
        rill_server_sockname(a.srv, &ad) == 0) {
        a.port = ntohs(((struct sockaddr_in *)&ad.ss)->sin_port);
        rill_fiber *c = NULL;
        if (rill_server_serve_fibers(a.srv, alloc_echo, NULL) == 0)
            c = rill_fiber_spawn(a.loop, alloc_client, &a, 0);
        if (!c)
            rill_server_close(a.srv);
        rill_fiber_detach(c);
        rill_loop_run(a.loop, RILL_RUN_DEFAULT);
        ok = a.got == 2;
    } else {
        rill_server_close(a.srv);
    }
    for (int i = 0; i < 100 && rill_loop_free(a.loop) == RILL_EBUSY; i++)
        rill_loop_run(a.loop, RILL_RUN_NOWAIT);
    return ok;
}

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level, (void)msg, (void)arg;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    bool (*scenarios[])(void) = {alloc_scenario, alloc_server_scenario};
    rill_set_log(quiet_log, NULL); /* the out-of-memory lines are expected here */
    th_alloc_install();
    for (size_t k = 0; k < 2; k++) {
        th_alloc_fail_at(0);
        assert_true(scenarios[k]()); /* with no failure it all works */
        size_t total = th_alloc_count();
        assert_int_equal(th_alloc_live(), 0);
        for (size_t n = 1; n <= total; n++) {
            th_alloc_fail_at(n);
            scenarios[k]();
            th_alloc_fail_at(0);
            if (th_alloc_live() != 0)
                fail_msg("scenario %zu: allocation %zu failing leaked %zu blocks", k, n,
                         th_alloc_live());
        }
    }
    th_alloc_reset();
    rill_set_log(NULL, NULL);
}

/* ---- the other switch mechanism -------------------------------------------------------------- */

static const struct CMUnitTest core_tests[] = {
    cmocka_unit_test(test_outside_fiber),  cmocka_unit_test(test_spawn_deferred),
    cmocka_unit_test(test_sleep_and_join), cmocka_unit_test(test_join_finished),
    cmocka_unit_test(test_line_protocol),  cmocka_unit_test(test_eof_after_self_close),
    cmocka_unit_test(test_framing),
    cmocka_unit_test(test_deadline),       cmocka_unit_test(test_cancel_read),
    cmocka_unit_test(test_cancel_sleep),   cmocka_unit_test(test_write_backpressure),
    cmocka_unit_test(test_write_deadline), cmocka_unit_test(test_stack_overflow),
    cmocka_unit_test(test_write_peer_gone_with_error_handler),
    cmocka_unit_test(test_alloc_failures), cmocka_unit_test(test_threads),
};

static char self_path[4096];

/* Runs the core group again in a fresh process with RILL_FIBER_UCONTEXT=1 (the mechanism
 * is chosen once per process), unless this process already is that run. */
static void test_ucontext_child(void **state)
{
    (void)state;
    const char *mech = rill_fiber_mechanism();
    if (strcmp(mech, "ucontext") == 0)
        skip(); /* this build or run uses ucontext already */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("RILL_FIBER_UCONTEXT", "1", 1);
        execl(self_path, self_path, "--core-only", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv)
{
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc > 1 && strcmp(argv[1], "--core-only") == 0) {
        if (strcmp(rill_fiber_mechanism(), "ucontext") != 0)
            return 2;
        return cmocka_run_group_tests_name("fiber-ucontext", core_tests, NULL, NULL);
    }
    const struct CMUnitTest net_tests[] = {
        cmocka_unit_test(test_echo_server_1000), cmocka_unit_test(test_server_close_cancels),
        cmocka_unit_test(test_accept_tcp),       cmocka_unit_test(test_accept_unix),
        cmocka_unit_test(test_connect_refused),  cmocka_unit_test(test_ucontext_child),
    };
    int rc = cmocka_run_group_tests_name("fiber", core_tests, NULL, NULL);
    return rc | cmocka_run_group_tests_name("fiber-net", net_tests, NULL, NULL);
}
