/* tests/test_compose.c - composed duplex streams (GIO's simple IO stream), the pending flag,
 * and close_async's rules: flush, first error, closed afterwards, closing twice, a
 * cancelled close, and priority ordering of completions. */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int reads, closes, errors, eofs, drains;
    int last_err, close_err;
    char data[256];
    size_t len;
} counts;

static void on_any(rill_stream *s, const rill_event *ev, void *arg)
{
    counts *c = arg;
    (void)s;
    switch (ev->type) {
    case RILL_EV_READ:
        c->reads++;
        if (c->len + ev->len <= sizeof c->data) {
            memcpy(c->data + c->len, ev->data, ev->len);
            c->len += ev->len;
        }
        break;
    case RILL_EV_CLOSE:
        c->closes++;
        c->close_err = ev->err;
        break;
    case RILL_EV_ERROR:
        c->errors++;
        c->last_err = ev->err;
        break;
    case RILL_EV_EOF:
        c->eofs++;
        break;
    case RILL_EV_DRAIN:
        c->drains++;
        break;
    default:
        break;
    }
}

static void watch(rill_stream *s, counts *c, bool with_eof)
{
    assert_non_null(rill_stream_on(s, RILL_EV_READ, on_any, c));
    assert_non_null(rill_stream_on(s, RILL_EV_CLOSE, on_any, c));
    assert_non_null(rill_stream_on(s, RILL_EV_ERROR, on_any, c));
    if (with_eof)
        assert_non_null(rill_stream_on(s, RILL_EV_EOF, on_any, c));
}

typedef struct {
    int calls, status, order[8], norder;
    int tag;
} done_rec;

static void on_done(rill_stream *s, int status, void *arg)
{
    done_rec *r = arg;
    (void)s;
    r->calls++;
    r->status = status;
}

/* A stdin-like pipe (the test writes into *feed) and a stdout-like pipe (the test reads
 * *drain), composed into one duplex stream. */
static rill_stream *stdio_like(rill_loop *loop, rill_stream **in, rill_stream **out, int *feed,
                               int *drain)
{
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    *in = rill_fd_open(loop, a[0], 0);
    *out = rill_fd_open(loop, b[1], 0);
    assert_non_null(*in);
    assert_non_null(*out);
    *feed = a[1];
    *drain = b[0];
    rill_stream *s = rill_stream_compose(loop, *in, *out);
    assert_non_null(s);
    return s;
}

static void echo(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)arg;
    assert_true(rill_stream_write(s, ev->data, ev->len, NULL, NULL) >= 0);
}

static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

/* ---- composed streams ------------------------------------------------------------------- */

static void test_compose_stdio_pipes_echo(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *in, *out;
    int feed, drain;
    rill_stream *s = stdio_like(loop, &in, &out, &feed, &drain);
    assert_ptr_equal(rill_stream_input_stream(s), in);
    assert_ptr_equal(rill_stream_output_stream(s), out);
    assert_ptr_equal(rill_stream_input_stream(in), in); /* not composed: itself */
    assert_ptr_equal(rill_stream_output_stream(out), out);
    assert_true(rill_stream_readable(s) && rill_stream_writable(s));
    counts cs = {0}, ci = {0}, co = {0};
    assert_non_null(rill_stream_on(s, RILL_EV_CLOSE, on_any, &cs));
    assert_non_null(rill_stream_on(in, RILL_EV_CLOSE, on_any, &ci));
    assert_non_null(rill_stream_on(out, RILL_EV_CLOSE, on_any, &co));
    assert_non_null(rill_stream_on(s, RILL_EV_READ, echo, NULL));
    assert_int_equal(rill_stream_start(s), 0);
    assert_int_equal(write(feed, "hello, duplex", 13), 13);
    close(feed); /* EOF on stdin: with no EOF handler the stream closes gracefully */
    TH_RUN_UNTIL(loop, cs.closes == 1 && ci.closes == 1 && co.closes == 1, 2000);
    char buf[64];
    assert_int_equal(read_all(drain, buf, sizeof buf), 13); /* then EOF: out closed */
    assert_memory_equal(buf, "hello, duplex", 13);
    assert_int_equal(cs.close_err, 0);
    close(drain);
    th_loop_free(loop);
}

static void test_compose_close_closes_both(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *in, *out;
    int feed, drain;
    rill_stream *s = stdio_like(loop, &in, &out, &feed, &drain);
    counts cs = {0}, ci = {0}, co = {0};
    watch(s, &cs, false);
    watch(in, &ci, false);
    watch(out, &co, false);
    rill_stream_close(s);
    rill_stream_close(s);
    assert_true(rill_stream_is_closed(in) && rill_stream_is_closed(out));
    assert_ptr_equal(rill_stream_input_stream(s), s); /* the halves are gone with it */
    TH_RUN_UNTIL(loop, cs.closes && ci.closes && co.closes, 2000);
    assert_int_equal(cs.closes + ci.closes + co.closes, 3);
    char b;
    assert_int_equal(read(drain, &b, 1), 0); /* the write end is closed */
    close(feed);
    close(drain);
    th_loop_free(loop);
}

static void test_compose_error_of_output_half(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *in, *out;
    int feed, drain;
    rill_stream *s = stdio_like(loop, &in, &out, &feed, &drain);
    counts cs = {0};
    watch(s, &cs, false);
    close(drain); /* nobody reads stdout any more */
    done_rec w = {0};
    assert_int_equal(rill_stream_write(s, "lost", 4, on_done, &w), 0);
    TH_RUN_UNTIL(loop, cs.errors == 1 && w.calls == 1, 2000);
    assert_int_equal(cs.last_err, RILL_EPIPE);
    assert_int_equal(w.status, RILL_EPIPE);
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(cs.errors, 1); /* once, not once per symptom */
    rill_stream_close(s);
    TH_RUN_UNTIL(loop, cs.closes == 1, 2000);
    close(feed);
    th_loop_free(loop);
}

static void test_compose_error_of_input_half(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    /* in: a socket whose peer goes away with unread data: reading it gives ECONNRESET */
    rill_stream *p[2], *out;
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    int b[2];
    assert_int_equal(pipe(b), 0);
    assert_non_null(out = rill_fd_open(loop, b[1], 0));
    int peer = rill_stream_steal_fd(p[1]);
    assert_true(peer >= 0);
    rill_stream *s = rill_stream_compose(loop, p[0], out);
    assert_non_null(s);
    counts cs = {0};
    watch(s, &cs, true);
    assert_int_equal(rill_stream_start(s), 0);
    assert_int_equal(write(rill_stream_fd(p[0]), "unread", 6), 6);
    close(peer);
    TH_RUN_UNTIL(loop, cs.errors == 1, 2000);
    assert_int_equal(cs.last_err, RILL_ECONNRESET);
    rill_stream_close(s);
    TH_RUN_UNTIL(loop, cs.closes == 1, 2000);
    close(b[0]);
    th_loop_free(loop);
}

static void test_compose_half_timeout_reaches_composed(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *in, *out;
    int feed, drain;
    rill_stream *s = stdio_like(loop, &in, &out, &feed, &drain);
    counts cs = {0};
    assert_non_null(rill_stream_on(s, RILL_EV_CLOSE, on_any, &cs));
    rill_stream_ref(s);
    rill_stream_ref(out);
    rill_stream_set_timeout(in, 30);
    assert_int_equal(rill_stream_start(s), 0);
    /* no ERROR handler: the error closes the composed stream, and with it the halves */
    TH_RUN_UNTIL(loop, cs.closes == 1, 2000);
    assert_int_equal(cs.close_err, RILL_ETIMEDOUT);
    assert_int_equal(rill_stream_error(s), RILL_ETIMEDOUT);
    assert_true(rill_stream_is_closed(out));
    rill_stream_unref(s);
    rill_stream_unref(out);
    close(feed);
    close(drain);
    th_loop_free(loop);
}

static void on_line(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    counts *c = arg;
    (void)s;
    assert_int_equal(status, 0);
    memcpy(c->data + c->len, data, len);
    c->len += len;
    c->reads++;
}

static void on_shut(rill_stream *s, int status, void *arg)
{
    (void)s;
    *(int *)arg = status + 1;
}

static void test_compose_framing_and_shutdown(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *in, *out;
    int feed, drain;
    rill_stream *s = stdio_like(loop, &in, &out, &feed, &drain);
    counts c = {0};
    assert_int_equal(rill_stream_read_until(s, "\n", 1, on_line, &c), 0);
    assert_int_equal(rill_stream_read_exactly(s, 4, on_line, &c), 0);
    assert_int_equal(write(feed, "one\ntwo", 7), 7);
    TH_RUN_UNTIL(loop, c.reads == 1, 2000);
    assert_int_equal(write(feed, "!", 1), 1);
    TH_RUN_UNTIL(loop, c.reads == 2, 2000);
    assert_memory_equal(c.data, "one\ntwo!", 8);
    /* shutdown of the composed stream ends the output half; it still reads */
    int shut = 0;
    assert_int_equal(rill_stream_write(s, "bye", 3, NULL, NULL), 0);
    assert_int_equal(rill_stream_shutdown(s, on_shut, &shut), 0);
    TH_RUN_UNTIL(loop, shut == 1, 2000);
    char buf[8];
    assert_int_equal(read_all(drain, buf, sizeof buf), 3);
    assert_true(rill_stream_readable(s));
    assert_int_equal(rill_stream_read_exactly(s, 2, on_line, &c), 0);
    assert_int_equal(write(feed, "ok", 2), 2);
    TH_RUN_UNTIL(loop, c.reads == 3, 2000);
    rill_stream_close(s);
    close(feed);
    close(drain);
    th_loop_free(loop);
}

static void test_compose_invalid(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    errno = 0;
    assert_null(rill_stream_compose(loop, p[0], p[0]));
    assert_int_equal(errno, EINVAL);
    assert_null(rill_stream_compose(loop, NULL, p[0]));
    assert_int_equal(errno, EINVAL);
    rill_stream_ref(p[1]);
    rill_stream_close(p[1]);
    assert_null(rill_stream_compose(loop, p[0], p[1]));
    assert_int_equal(-errno, RILL_ECLOSED);
    rill_stream_unref(p[1]);
    rill_stream_close(p[0]);
    th_loop_free(loop);
}

/* ---- pending flag ----------------------------------------------------------------------- */

static void test_pending_flag(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    assert_false(rill_stream_has_pending(p[0]));
    assert_int_equal(rill_stream_set_pending(p[0]), 0);
    assert_true(rill_stream_has_pending(p[0]));
    assert_int_equal(rill_stream_set_pending(p[0]), RILL_EPENDING);
    done_rec r = {0};
    assert_int_equal(rill_stream_close_async(p[0], 0, NULL, on_done, &r), RILL_EPENDING);
    rill_stream_clear_pending(p[0]);
    assert_false(rill_stream_has_pending(p[0]));
    assert_int_equal(rill_stream_set_pending(p[0]), 0);
    rill_stream_clear_pending(p[0]);
    /* close_async holds the flag while it runs */
    assert_int_equal(rill_stream_close_async(p[0], 0, NULL, on_done, &r), 0);
    assert_true(rill_stream_has_pending(p[0]) || rill_stream_is_closed(p[0]));
    rill_stream_ref(p[0]);
    TH_RUN_UNTIL(loop, r.calls == 1, 2000);
    assert_false(rill_stream_has_pending(p[0]));
    assert_int_equal(rill_stream_set_pending(p[0]), RILL_ECLOSED);
    assert_int_equal(rill_stream_set_pending(NULL), RILL_EINVAL);
    rill_stream_unref(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* ---- close_async ------------------------------------------------------------------------ */

#define BIG (4u << 20)

static void reader_count(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    *(size_t *)arg += ev->len;
}

static void test_close_async_flushes_then_closed(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    char *big = calloc(1, BIG);
    done_rec w = {0}, r = {0};
    assert_true(rill_stream_write(p[0], big, BIG, on_done, &w) >= 0);
    assert_true(rill_stream_write_queue_size(p[0]) > 0);
    rill_stream_ref(p[0]);
    assert_int_equal(rill_stream_close_async(p[0], 0, NULL, on_done, &r), 0);
    assert_int_equal(r.calls, 0);
    size_t got = 0;
    counts c1 = {0};
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, reader_count, &got));
    assert_non_null(rill_stream_on(p[1], RILL_EV_CLOSE, on_any, &c1));
    assert_int_equal(rill_stream_start(p[1]), 0);
    TH_RUN_UNTIL(loop, r.calls == 1 && c1.closes == 1, 5000);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0); /* flushed, not cancelled */
    assert_int_equal(r.status, 0);
    assert_int_equal(got, BIG);
    /* closed: every later operation says so */
    assert_true(rill_stream_is_closed(p[0]));
    assert_int_equal(rill_stream_write(p[0], "x", 1, NULL, NULL), RILL_ECLOSED);
    assert_int_equal(rill_stream_start(p[0]), RILL_ECLOSED);
    assert_int_equal(rill_stream_shutdown(p[0], NULL, NULL), RILL_ECLOSED);
    assert_int_equal(rill_stream_read_bytes(p[0], 10, on_line, NULL), RILL_ECLOSED);
    /* closing again is not an error */
    done_rec again = {0};
    assert_int_equal(rill_stream_close_async(p[0], 0, NULL, on_done, &again), 0);
    assert_int_equal(again.calls, 0);
    TH_RUN_UNTIL(loop, again.calls == 1, 2000);
    assert_int_equal(again.status, 0);
    rill_stream_close(p[0]);
    rill_stream_unref(p[0]);
    free(big);
    th_loop_free(loop);
}

static void test_close_async_reports_first_error(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    char *big = calloc(1, BIG);
    done_rec w = {0}, r = {0};
    assert_true(rill_stream_write(p[0], big, BIG, on_done, &w) >= 0);
    rill_stream_ref(p[0]);
    assert_int_equal(rill_stream_close_async(p[0], 0, NULL, on_done, &r), 0);
    rill_stream_close(p[1]); /* the peer goes away: the flush fails */
    TH_RUN_UNTIL(loop, r.calls == 1, 5000);
    assert_true(r.status == RILL_EPIPE || r.status == RILL_ECONNRESET);
    assert_int_equal(w.status, r.status);
    assert_int_equal(rill_stream_error(p[0]), r.status);
    assert_true(rill_stream_is_closed(p[0])); /* a failed close still closes */
    assert_int_equal(rill_stream_write(p[0], "x", 1, NULL, NULL), RILL_ECLOSED);
    assert_int_equal(rill_stream_set_pending(p[0]), RILL_ECLOSED);
    done_rec again = {0};
    assert_int_equal(rill_stream_close_async(p[0], 0, NULL, on_done, &again), 0);
    TH_RUN_UNTIL(loop, again.calls == 1, 2000);
    assert_int_equal(again.status, 0);
    rill_stream_unref(p[0]);
    free(big);
    th_loop_free(loop);
}

typedef struct {
    rill_cancel *c;
    int delay_ms;
} trig;

static void *trigger_thread(void *p)
{
    trig *t = p;
    usleep((useconds_t)t->delay_ms * 1000);
    rill_cancel_trigger(t->c);
    return NULL;
}

static void test_close_async_cancelled_still_closes(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    char *big = calloc(1, BIG);
    done_rec w = {0}, r = {0};
    counts c0 = {0};
    assert_non_null(rill_stream_on(p[0], RILL_EV_CLOSE, on_any, &c0));
    assert_true(rill_stream_write(p[0], big, BIG, on_done, &w) >= 0); /* nobody reads it */
    trig t = {rill_cancel_new(), 30};
    assert_int_equal(rill_stream_close_async(p[0], 0, t.c, on_done, &r), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trigger_thread, &t), 0);
    uint64_t t0 = th_now_ms();
    TH_RUN_UNTIL(loop, r.calls == 1, 5000);
    pthread_join(th, NULL);
    assert_true(th_now_ms() - t0 < 2000); /* did not wait for a flush that cannot end */
    assert_int_equal(r.status, RILL_ECANCELED);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, RILL_ECANCELED);
    assert_int_equal(c0.closes, 1); /* CLOSE came before the completion */
    rill_cancel_free(t.c);
    rill_stream_close(p[1]);
    free(big);
    th_loop_free(loop);
}

typedef struct {
    int seq[4], n, iter[4];
    int *cur_iter;
} order_rec;

static order_rec g_order;
static int g_iter;

static void on_ordered(rill_stream *s, int status, void *arg)
{
    (void)s;
    assert_int_equal(status, 0);
    g_order.iter[g_order.n] = g_iter;
    g_order.seq[g_order.n++] = (int)(intptr_t)arg;
}

static void test_close_async_priority_orders_completions(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *a[2], *b[2];
    assert_int_equal(rill_stream_pair(loop, a, 0), 0);
    assert_int_equal(rill_stream_pair(loop, b, 0), 0);
    memset(&g_order, 0, sizeof g_order);
    /* 'a' is asked first with priority 5, 'b' second with priority 1: both become ready
     * in the same iteration and 'b' (lower number) completes first */
    assert_int_equal(rill_stream_close_async(a[0], 5, NULL, on_ordered, (void *)'a'), 0);
    assert_int_equal(rill_stream_close_async(b[0], 1, NULL, on_ordered, (void *)'b'), 0);
    for (g_iter = 0; g_order.n < 2 && g_iter < 100; g_iter++)
        rill_loop_run(loop, RILL_RUN_ONCE);
    assert_int_equal(g_order.n, 2);
    assert_int_equal(g_order.seq[0], 'b');
    assert_int_equal(g_order.seq[1], 'a');
    assert_int_equal(g_order.iter[0], g_order.iter[1]); /* one iteration */
    /* and the other way round: the order follows the priority, not the calls */
    memset(&g_order, 0, sizeof g_order);
    assert_int_equal(rill_stream_close_async(a[1], 1, NULL, on_ordered, (void *)'a'), 0);
    assert_int_equal(rill_stream_close_async(b[1], 5, NULL, on_ordered, (void *)'b'), 0);
    for (g_iter = 0; g_order.n < 2 && g_iter < 100; g_iter++)
        rill_loop_run(loop, RILL_RUN_ONCE);
    assert_int_equal(g_order.seq[0], 'a');
    assert_int_equal(g_order.seq[1], 'b');
    assert_int_equal(g_order.iter[0], g_order.iter[1]);
    th_loop_free(loop);
}

static void test_close_async_composed(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *in, *out;
    int feed, drain;
    rill_stream *s = stdio_like(loop, &in, &out, &feed, &drain);
    counts ci = {0}, co = {0};
    watch(in, &ci, false);
    watch(out, &co, false);
    done_rec r = {0};
    assert_int_equal(rill_stream_write(s, "flushed first", 13, NULL, NULL), 0);
    assert_int_equal(rill_stream_close_async(s, 0, NULL, on_done, &r), 0);
    TH_RUN_UNTIL(loop, r.calls == 1 && ci.closes == 1 && co.closes == 1, 2000);
    assert_int_equal(r.status, 0);
    char buf[32];
    assert_int_equal(read_all(drain, buf, sizeof buf), 13);
    close(feed);
    close(drain);
    th_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compose_stdio_pipes_echo),
        cmocka_unit_test(test_compose_close_closes_both),
        cmocka_unit_test(test_compose_error_of_output_half),
        cmocka_unit_test(test_compose_error_of_input_half),
        cmocka_unit_test(test_compose_half_timeout_reaches_composed),
        cmocka_unit_test(test_compose_framing_and_shutdown),
        cmocka_unit_test(test_compose_invalid),
        cmocka_unit_test(test_pending_flag),
        cmocka_unit_test(test_close_async_flushes_then_closed),
        cmocka_unit_test(test_close_async_reports_first_error),
        cmocka_unit_test(test_close_async_cancelled_still_closes),
        cmocka_unit_test(test_close_async_priority_orders_completions),
        cmocka_unit_test(test_close_async_composed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
