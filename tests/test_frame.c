/* tests/test_frame.c - framing requests: read_bytes, read_exactly, read_until and
 * read_until_regex; FIFO order, leftovers, the max-buffer bound, EOF, scan cost. */
#include "harness.h"

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXF 64

typedef struct {
    char frames[MAXF][128];
    size_t lens[MAXF];
    int status[MAXF];
    int n;
    int tag[MAXF];
} frames;

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    frames *f = arg;
    assert_true(f->n < MAXF);
    f->status[f->n] = status;
    f->lens[f->n] = len;
    if (len)
        memcpy(f->frames[f->n], data, len < 128 ? len : 128);
    f->n++;
}

static void pair(rill_loop *loop, rill_stream *p[2])
{
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
}

static void send_raw(rill_stream *s, const char *data)
{
    int fd = rill_stream_fd(s);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
}

static size_t g_read_bytes;
static char g_read_data[16];

static void on_read_copy(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)arg;
    if (g_read_bytes + ev->len <= sizeof g_read_data)
        memcpy(g_read_data + g_read_bytes, ev->data, ev->len);
    g_read_bytes += ev->len;
}

/* Bytes read while nobody takes them are kept, and a READ handler subscribed later gets
 * them without waiting for more to arrive (on the next iteration, not inside rill_stream_on). */
static void test_unclaimed_bytes_go_to_a_later_read_handler(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    assert_int_equal(rill_stream_start(p[1]), 0);
    send_raw(p[0], "abc");
    TH_RUN_UNTIL(loop, rill__in_len(p[1]) == 3, 5000);
    g_read_bytes = 0;
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, on_read_copy, NULL));
    assert_int_equal(g_read_bytes, 0);
    TH_RUN_UNTIL(loop, g_read_bytes == 3, 5000);
    assert_memory_equal(g_read_data, "abc", 3);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_fifo_requests_and_leftovers(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    assert_int_equal(rill_stream_read_until(p[1], "\r\n", 2, on_frame, &f), 0);
    assert_int_equal(rill_stream_read_exactly(p[1], 4, on_frame, &f), 0);
    assert_int_equal(rill_stream_read_bytes(p[1], 3, on_frame, &f), 0);
    send_raw(p[0], "GET / HTTP/1.1\r\nabcdefgh");
    TH_RUN_UNTIL(loop, f.n == 3, 5000);
    assert_int_equal(f.lens[0], 16);
    assert_memory_equal(f.frames[0], "GET / HTTP/1.1\r\n", 16); /* delimiter included */
    assert_memory_equal(f.frames[1], "abcd", 4);
    assert_int_equal(f.lens[2], 3); /* at most max */
    assert_memory_equal(f.frames[2], "efg", 3);
    /* "h" stays buffered for the next request, which is served without new input and
     * never inside the call that made it */
    assert_int_equal(rill_stream_read_bytes(p[1], 100, on_frame, &f), 0);
    assert_int_equal(f.n, 3);
    TH_RUN_UNTIL(loop, f.n == 4, 5000);
    assert_int_equal(f.lens[3], 1);
    assert_memory_equal(f.frames[3], "h", 1);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

typedef struct {
    size_t read_bytes;
    int reads;
    char buf[64];
} reads;

static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    reads *r = arg;
    memcpy(r->buf + r->read_bytes, ev->data, ev->len);
    r->read_bytes += ev->len;
    r->reads++;
}

static void test_requests_take_precedence_over_read(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    reads r = {0};
    rill_stream_on(p[1], RILL_EV_READ, on_read, &r);
    rill_stream_start(p[1]);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_frame, &f), 0);
    send_raw(p[0], "line\nrest");
    TH_RUN_UNTIL(loop, f.n == 1 && r.read_bytes == 4, 5000);
    assert_memory_equal(f.frames[0], "line\n", 5);
    assert_memory_equal(r.buf, "rest", 4); /* what no request takes goes to READ */
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_split_delimiter_and_byte_by_byte(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    assert_int_equal(rill_stream_read_until(p[1], "END!", 4, on_frame, &f), 0);
    const char *msg = "abcEN";
    send_raw(p[0], msg);
    rill_timer *t = th_tick_start(loop);
    for (int i = 0; i < 5; i++)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(t);
    assert_int_equal(f.n, 0);
    send_raw(p[0], "D");
    send_raw(p[0], "!tail");
    TH_RUN_UNTIL(loop, f.n == 1, 5000);
    assert_int_equal(f.lens[0], 7);
    assert_memory_equal(f.frames[0], "abcEND!", 7);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_max_buffer_enobufs_consumes_nothing(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    rill_stream_set_max_buffer(p[1], 16);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_frame, &f), 0);
    send_raw(p[0], "0123456789abcdefghij"); /* 20 bytes, no newline */
    TH_RUN_UNTIL(loop, f.n == 1, 5000);
    assert_int_equal(f.status[0], RILL_ENOBUFS);
    assert_int_equal(f.lens[0], 0);
    /* nothing was consumed: the bytes are still there, in order */
    assert_int_equal(rill_stream_read_exactly(p[1], 10, on_frame, &f), 0);
    TH_RUN_UNTIL(loop, f.n == 2, 5000);
    assert_int_equal(f.status[1], 0);
    assert_memory_equal(f.frames[1], "0123456789", 10);
    /* read_exactly larger than the bound fails the same way */
    assert_int_equal(rill_stream_read_exactly(p[1], 100, on_frame, &f), 0);
    TH_RUN_UNTIL(loop, f.n == 3, 5000);
    assert_int_equal(f.status[2], RILL_ENOBUFS);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* read_bytes(max) with max over the bound takes at most the bound: the same bytes give
 * the same frames whether they arrive in one read or are already buffered.  (It failed
 * with RILL_ENOBUFS, consuming nothing, so re-arming it failed for ever.) */
static void test_read_bytes_takes_at_most_the_bound(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    rill_stream_set_max_buffer(p[1], 8);
    assert_int_equal(rill_stream_read_bytes(p[1], 100, on_frame, &f), 0);
    send_raw(p[0], "0123456789"); /* one read of 10: served from the read itself */
    TH_RUN_UNTIL(loop, f.n == 1, 5000);
    assert_int_equal(f.status[0], 0);
    assert_int_equal(f.lens[0], 8);
    assert_memory_equal(f.frames[0], "01234567", 8);
    assert_int_equal(rill_stream_read_bytes(p[1], 100, on_frame, &f), 0); /* buffered: "89" */
    TH_RUN_UNTIL(loop, f.n == 2, 5000);
    assert_int_equal(f.status[1], 0);
    assert_int_equal(f.lens[1], 2);
    assert_memory_equal(f.frames[1], "89", 2);
    /* bytes buffered while no request waits, then a read_bytes over the bound */
    send_raw(p[0], "abcdefgh");
    assert_int_equal(rill_stream_read_exactly(p[1], 1, on_frame, &f), 0);
    TH_RUN_UNTIL(loop, f.n == 3, 5000);
    assert_int_equal(rill_stream_read_bytes(p[1], 1000, on_frame, &f), 0);
    TH_RUN_UNTIL(loop, f.n == 4, 5000);
    assert_int_equal(f.status[3], 0);
    assert_int_equal(f.lens[3], 7);
    assert_memory_equal(f.frames[3], "bcdefgh", 7);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_eof_gives_partial_then_eof(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    rill_stream_ref(p[1]);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_frame, &f), 0);
    assert_int_equal(rill_stream_read_exactly(p[1], 5, on_frame, &f), 0);
    send_raw(p[0], "partial");
    rill_stream_close(p[0]);
    TH_RUN_UNTIL(loop, f.n == 2, 5000);
    assert_int_equal(f.status[0], RILL_EOF);
    assert_int_equal(f.lens[0], 7);
    assert_memory_equal(f.frames[0], "partial", 7);
    assert_int_equal(f.status[1], RILL_EOF);
    assert_int_equal(f.lens[1], 0);
    /* requests after EOF complete with RILL_EOF at once (refused) */
    assert_true(rill_stream_is_closed(p[1]) ||
                rill_stream_read_bytes(p[1], 1, on_frame, &f) == RILL_EOF);
    rill_stream_unref(p[1]);
    th_loop_free(loop);
}

static void test_close_cancels_requests(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    rill_stream_ref(p[1]);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_frame, &f), 0);
    assert_int_equal(rill_stream_read_bytes(p[1], 5, on_frame, &f), 0);
    rill_stream_close(p[1]);
    assert_int_equal(f.n, 0);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.status[0], RILL_ECANCELED);
    assert_int_equal(f.status[1], RILL_ECANCELED);
    assert_int_equal(rill_stream_read_bytes(p[1], 5, on_frame, &f), RILL_ECLOSED);
    rill_stream_unref(p[1]);
    assert_int_equal(rill_stream_read_until(p[0], NULL, 0, on_frame, &f), RILL_EINVAL);
    assert_int_equal(rill_stream_read_exactly(p[0], 0, on_frame, &f), RILL_EINVAL);
    rill_stream_close(p[0]);
    th_loop_free(loop);
}

static void test_regex_partial_match_not_decided_early(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    int err = 0;
    size_t off = 0;
    rill_regex *re = rill_regex_new("ab+c", &err, &off);
    assert_non_null(re);
    assert_int_equal(rill_stream_read_until_regex(p[1], re, on_frame, &f), 0);
    send_raw(p[0], "xxabbb");
    rill_timer *t = th_tick_start(loop);
    for (int i = 0; i < 5; i++)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(t);
    assert_int_equal(f.n, 0); /* "ab+" could still grow: not decided */
    send_raw(p[0], "bbc--");
    TH_RUN_UNTIL(loop, f.n == 1, 5000);
    assert_int_equal(f.lens[0], 9);
    assert_memory_equal(f.frames[0], "xxabbbbbc", 9); /* ends at the end of the match */
    /* a greedy pattern at the end of the data waits for more: "[0-9]+;" */
    rill_regex *num = rill_regex_new("[0-9]+;", NULL, NULL);
    assert_int_equal(rill_stream_read_until_regex(p[1], num, on_frame, &f), 0);
    send_raw(p[0], "12");
    send_raw(p[0], "34;");
    TH_RUN_UNTIL(loop, f.n == 2, 5000);
    assert_memory_equal(f.frames[1], "--1234;", 7);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
    rill_regex_free(re);
    rill_regex_free(num);
}

static void test_regex_invalid(void **state)
{
    (void)state;
    int err = 0;
    size_t off = 0;
    errno = 0;
    assert_null(rill_regex_new("ab(c", &err, &off));
    assert_int_equal(errno, EINVAL);
    assert_true(err != 0);
    assert_int_equal(off, 4);
    char msg[128];
    assert_true(rill_regex_error_text(err, msg, sizeof msg) > 0);
    assert_non_null(strstr(msg, "parenthes"));
    assert_null(rill_regex_new(NULL, NULL, NULL));
    rill_regex_free(NULL);
}

/* A 4 MiB line arriving one byte per read: every byte is examined a bounded number of
 * times (the scan resumes where it stopped). */
#define LINE (4u << 20)

typedef struct {
    size_t got;
    int status;
} big_line;

static void on_big(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    big_line *b = arg;
    b->status = status;
    b->got = len;
    assert_int_equal(data[len - 1], '\n');
}

static void test_scan_is_linear(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    big_line b = {0};
    rill_stream_set_max_buffer(p[1], 8u << 20);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_big, &b), 0);
    int fd = rill_stream_fd(p[0]);
    size_t sent = 0;
    /* the first 64 KiB through the socket, one byte per read */
    while (sent < 65536) {
        assert_int_equal(write(fd, "a", 1), 1);
        sent++;
        TH_RUN_UNTIL(loop, !rill_stream_is_readable(p[1]) || rill__in_len(p[1]) == sent, 5000);
    }
    assert_int_equal(rill__in_len(p[1]), sent);
    /* the rest one byte per delivery, through the function the read path calls */
    while (sent < LINE - 1) {
        rill__stream_deliver(p[1], "a", 1);
        sent++;
    }
    rill__stream_deliver(p[1], "\n", 1);
    assert_int_equal(b.got, sent + 1);
    assert_int_equal(b.status, 0);
    size_t touched = p[1]->x->in.touched;
    assert_true(touched <= 2 * (sent + 1) + 4096);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* Byte-by-byte feeding of many lines through the buffered path keeps each frame exact. */
static void test_many_lines_exact(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    for (int i = 0; i < 20; i++)
        assert_int_equal(rill_stream_read_until(p[1], "\r\n", 2, on_frame, &f), 0);
    char all[20 * 16];
    size_t len = 0;
    for (int i = 0; i < 20; i++)
        len += (size_t)sprintf(all + len, "line-%02d\r\n", i);
    int fd = rill_stream_fd(p[0]);
    for (size_t i = 0; i < len; i += 3) {
        size_t n = len - i < 3 ? len - i : 3;
        assert_int_equal(write(fd, all + i, n), (ssize_t)n);
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    }
    TH_RUN_UNTIL(loop, f.n == 20, 5000);
    for (int i = 0; i < 20; i++) {
        char want[16];
        sprintf(want, "line-%02d\r\n", i);
        assert_int_equal(f.lens[i], 9);
        assert_memory_equal(f.frames[i], want, 9);
    }
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_pending_flag_refuses_framing(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    frames f = {0};
    assert_int_equal(rill_stream_set_pending(p[1]), 0);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_frame, &f), RILL_EPENDING);
    rill_stream_clear_pending(p[1]);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, on_frame, &f), 0);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
    assert_int_equal(f.n, 1); /* cancelled by the close */
}

/* Requests made outside their frame callback (here: from a deferred call) while bytes are
 * buffered still find every delimiter in those bytes, whether new bytes or EOF come next. */
typedef struct {
    rill_loop *loop;
    rill_stream *s;
    frames f;
    int refused;
} rearm_ctx;

static void rearm_frame(rill_stream *s, int status, const char *data, size_t len, void *arg);

static void rearm_later(void *arg)
{
    rearm_ctx *c = arg;
    int rc = rill_stream_read_until(c->s, "\n", 1, rearm_frame, c);
    if (rc == RILL_ECLOSED)
        c->refused++; /* every buffered frame was taken; EOF then closed the stream */
    else
        assert_int_equal(rc, 0);
}

static void rearm_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    rearm_ctx *c = arg;
    on_frame(s, status, data, len, &c->f);
    if (status == 0)
        assert_int_equal(rill_loop_defer(c->loop, 0, rearm_later, c), 0);
}

static void test_rearm_from_defer_with_buffered_bytes(void **state)
{
    (void)state;
    rearm_ctx c = {.loop = th_loop_new()};
    rill_stream *p[2];
    pair(c.loop, p);
    c.s = rill_stream_ref(p[1]);
    assert_int_equal(rill_stream_read_until(p[1], "\n", 1, rearm_frame, &c), 0);
    send_raw(p[0], "aa\nb");
    send_raw(p[0], "b\n");
    TH_RUN_UNTIL(c.loop, c.f.n == 2, 5000);
    send_raw(p[0], "cc\ndd\nee\n");
    rill_stream_close_gracefully(p[0]);
    TH_RUN_UNTIL(c.loop, c.f.n == 5 && c.refused == 1, 5000);
    const char *want[] = {"aa\n", "bb\n", "cc\n", "dd\n", "ee\n"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(c.f.status[i], 0);
        assert_int_equal(c.f.lens[i], 3);
        assert_memory_equal(c.f.frames[i], want[i], 3);
    }
    assert_true(rill_stream_is_closed(c.s));
    rill_stream_unref(c.s);
    th_loop_free(c.loop);
}

/* A fatal error on a stream whose ERROR handler keeps it open still ends what waited:
 * framing requests and a pending shutdown complete with the error at once. */
static void keep_open(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    *(int *)arg = ev->err;
}

static void shut_cb(rill_stream *s, int status, void *arg)
{
    (void)s;
    *(int *)arg = status;
}

static void test_fatal_error_ends_waiting_requests(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    int err = 0, shut = 1;
    frames f = {0};
    rill_stream_on(p[0], RILL_EV_ERROR, keep_open, &err);
    assert_int_equal(rill_stream_read_until(p[0], "\n", 1, on_frame, &f), 0);
    static char big[1 << 20];
    assert_true(rill_stream_write(p[0], big, sizeof big, NULL, NULL) >= 0); /* queued */
    assert_int_equal(rill_stream_shutdown(p[0], shut_cb, &shut), 0);
    rill_stream_close(p[1]); /* the peer goes: the flush fails with EPIPE or ECONNRESET */
    TH_RUN_UNTIL(loop, err != 0 && f.n == 1 && shut != 1, 5000);
    assert_true(err == RILL_EPIPE || err == RILL_ECONNRESET);
    assert_int_equal(f.status[0], err);
    assert_int_equal(shut, err);
    assert_false(rill_stream_is_closed(p[0])); /* the handler kept it */
    rill_stream_close(p[0]);
    th_loop_free(loop);
}

/* ---- requests re-armed from inside frame callbacks ----------------------------------
 * The re-arm during a feed takes a short path (no queueing, no state update); these
 * check that it is taken only when that changes nothing: any kind and delimiter, a
 * stream closed or marked pending by the callback, several requests per callback,
 * delimiters split between reads, and the max-buffer bound. */

typedef struct {
    char kind; /* 'u' read_until, 'x' read_exactly, 'b' read_bytes; 0 ends the script */
    const char *delim;
    size_t n; /* read_exactly / read_bytes */
} step;

typedef struct {
    frames f;
    const step *steps;
    int next;
    int rearms;   /* requests each callback makes */
    int close_at; /* the frame whose callback closes the stream (-1: none) */
    int pend_at;  /* the frame whose callback marks the stream pending (-1: none) */
    int rc[MAXF]; /* what each request made from a callback returned */
    int nrc;
} script;

#define BIGDELIM "<<<<<<<<<<>>>>>>>>>>" /* 20 bytes: longer than the inline delimiter */

static int arm(rill_stream *s, script *c);

static void on_scripted(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    script *c = arg;
    on_frame(s, status, data, len, &c->f);
    if (status < 0 && status != RILL_ENOBUFS)
        return;
    if (c->f.n - 1 == c->close_at)
        rill_stream_close(s);
    if (c->f.n - 1 == c->pend_at)
        assert_int_equal(rill_stream_set_pending(s), 0);
    for (int i = 0; i < c->rearms && c->steps[c->next].kind; i++) {
        assert_true(c->nrc < MAXF);
        c->rc[c->nrc++] = arm(s, c);
    }
}

static int arm(rill_stream *s, script *c)
{
    const step *st = &c->steps[c->next++];
    if (st->kind == 'u')
        return rill_stream_read_until(s, st->delim, strlen(st->delim), on_scripted, c);
    if (st->kind == 'x')
        return rill_stream_read_exactly(s, st->n, on_scripted, c);
    return rill_stream_read_bytes(s, st->n, on_scripted, c);
}

static void script_init(script *c, const step *steps)
{
    memset(c, 0, sizeof *c);
    c->steps = steps;
    c->rearms = 1;
    c->close_at = c->pend_at = -1;
}

static void assert_frames(const script *c, const char *const *want, int n)
{
    assert_int_equal(c->f.n, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(c->f.status[i], 0);
        assert_int_equal(c->f.lens[i], strlen(want[i]));
        assert_memory_equal(c->f.frames[i], want[i], strlen(want[i]));
    }
}

/* One read served in place while every callback asks for another kind or delimiter
 * (including a one-byte read_bytes and read_exactly, which are not lines). */
static void test_rearm_changes_kind_and_delimiter(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    static const step steps[] = {{'u', "\n", 0}, {'u', ";", 0},    {'x', NULL, 3},
                                 {'u', "\r\n", 0}, {'b', NULL, 1},  {'x', NULL, 1},
                                 {'u', "\n", 0}, {'u', BIGDELIM, 0}, {'u', "\n", 0},
                                 {0, NULL, 0}};
    script c;
    script_init(&c, steps);
    assert_int_equal(arm(p[1], &c), 0);
    /* the one-byte reads follow a "\r\n" request and meet a '\r': they are not lines */
    send_raw(p[0], "ab\ncd;efgh\r\nXYz\r\n0123" BIGDELIM "tail\n");
    TH_RUN_UNTIL(loop, c.f.n == 9, 5000);
    const char *want[] = {"ab\n", "cd;", "efg", "h\r\n", "X", "Y", "z\r\n", ("0123" BIGDELIM),
                          "tail\n"};
    assert_frames(&c, want, 9);
    for (int i = 0; i < c.nrc; i++)
        assert_int_equal(c.rc[i], 0);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* A callback that closes the stream: requests made after the close are refused, the
 * ones queued before are cancelled, and the rest of the read is never framed. */
static void test_rearm_after_close_in_callback(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    static const step steps[] = {{'u', "\n", 0}, {'u', "\n", 0}, {'u', "\n", 0},
                                 {'u', "\n", 0}, {'u', "\n", 0}, {0, NULL, 0}};
    script c;
    script_init(&c, steps);
    c.rearms = 2;
    c.close_at = 1;
    rill_stream_ref(p[1]);
    assert_int_equal(arm(p[1], &c), 0);
    send_raw(p[0], "a\nb\nc\nd\n");
    TH_RUN_UNTIL(loop, c.f.n == 3, 5000);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(c.f.n, 3);
    assert_int_equal(c.f.status[2], RILL_ECANCELED); /* the second request made for "a" */
    c.f.n = 2;
    const char *want[] = {"a\n", "b\n"};
    assert_frames(&c, want, 2);
    assert_int_equal(c.nrc, 4);
    assert_int_equal(c.rc[0], 0);
    assert_int_equal(c.rc[1], 0);
    assert_int_equal(c.rc[2], RILL_ECLOSED);
    assert_int_equal(c.rc[3], RILL_ECLOSED);
    assert_true(rill_stream_is_closed(p[1]));
    rill_stream_unref(p[1]);
    rill_stream_close(p[0]);
    th_loop_free(loop);
}

/* Two requests per callback, alternating delimiters: frames still go out in request
 * order, across reads, and the requests left waiting are cancelled by the close. */
static void test_rearm_twice_in_callback(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    step steps[16];
    steps[0] = (step){'u', "\n", 0};
    for (int i = 1; i < 15; i++)
        steps[i] = (step){'u', i % 2 ? ";" : "\n", 0};
    steps[15] = (step){0, NULL, 0};
    script c;
    script_init(&c, steps);
    c.rearms = 2;
    rill_stream_ref(p[1]);
    assert_int_equal(arm(p[1], &c), 0);
    send_raw(p[0], "1;2\n3;4\n5;6\n");
    TH_RUN_UNTIL(loop, c.f.n == 5, 5000);
    send_raw(p[0], "7;8\n");
    TH_RUN_UNTIL(loop, c.f.n == 7, 5000);
    const char *want[] = {"1;2\n", "3;", "4\n", "5;", "6\n", "7;", "8\n"};
    assert_frames(&c, want, 7);
    assert_int_equal(c.nrc, 14);
    rill_stream_close(p[1]);
    TH_RUN_UNTIL(loop, c.f.n == 15, 5000); /* 1 + 14 requests, 7 frames, 8 cancelled */
    for (int i = 7; i < 15; i++)
        assert_int_equal(c.f.status[i], RILL_ECANCELED);
    rill_stream_unref(p[1]);
    rill_stream_close(p[0]);
    th_loop_free(loop);
}

/* A callback that marks the stream pending: its request is refused, the rest of the read
 * stays buffered, and a request made once the mark is cleared gets it. */
static void test_rearm_while_pending_in_callback(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    static const step steps[] = {{'u', "\n", 0}, {'u', "\n", 0}, {'u', "\n", 0},
                                 {'u', "\n", 0}, {0, NULL, 0}};
    script c;
    script_init(&c, steps);
    c.pend_at = 1;
    assert_int_equal(arm(p[1], &c), 0);
    send_raw(p[0], "a\nb\nc\n");
    TH_RUN_UNTIL(loop, c.f.n == 2 && rill__in_len(p[1]) == 2, 5000);
    assert_int_equal(c.nrc, 2);
    assert_int_equal(c.rc[0], 0);
    assert_int_equal(c.rc[1], RILL_EPENDING);
    rill_stream_clear_pending(p[1]);
    assert_int_equal(arm(p[1], &c), 0);
    TH_RUN_UNTIL(loop, c.f.n == 3, 5000);
    const char *want[] = {"a\n", "b\n", "c\n"};
    assert_frames(&c, want, 3);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* Delimiters split between reads, re-armed from the callbacks: two bytes, one byte after
 * a partial line, and a delimiter too long for the inline copy. */
static void test_rearm_with_delimiters_split_between_reads(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    static const step steps[] = {{'u', "\r\n", 0}, {'u', "\r\n", 0}, {'u', "\r\n", 0},
                                 {'u', "\n", 0},   {'u', BIGDELIM, 0}, {'u', "\n", 0},
                                 {0, NULL, 0}};
    script c;
    script_init(&c, steps);
    assert_int_equal(arm(p[1], &c), 0);
    send_raw(p[0], "aa\r\nbb\r");
    TH_RUN_UNTIL(loop, c.f.n == 1 && rill__in_len(p[1]) == 3, 5000);
    send_raw(p[0], "\ncc\r\nd");
    TH_RUN_UNTIL(loop, c.f.n == 3 && rill__in_len(p[1]) == 1, 5000);
    send_raw(p[0], "d\nee<<<<<<<<<<>>>>");
    TH_RUN_UNTIL(loop, c.f.n == 4 && rill__in_len(p[1]) == 16, 5000);
    send_raw(p[0], ">>>>>>x\n");
    TH_RUN_UNTIL(loop, c.f.n == 6, 5000);
    const char *want[] = {"aa\r\n", "bb\r\n", "cc\r\n", "dd\n", ("ee" BIGDELIM), "x\n"};
    assert_frames(&c, want, 6);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

/* A line longer than the bound, found in a read served in place: RILL_ENOBUFS takes
 * nothing, and the requests made from that callback get the same bytes. */
static void test_rearm_after_enobufs_in_place(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    pair(loop, p);
    static const step steps[] = {{'u', "\n", 0}, {'x', NULL, 8}, {'u', "\n", 0},
                                 {'u', "\n", 0}, {0, NULL, 0}};
    script c;
    script_init(&c, steps);
    rill_stream_set_max_buffer(p[1], 8);
    assert_int_equal(arm(p[1], &c), 0);
    send_raw(p[0], "0123456789\nab\n");
    TH_RUN_UNTIL(loop, c.f.n == 4, 5000);
    assert_int_equal(c.f.status[0], RILL_ENOBUFS);
    assert_int_equal(c.f.lens[0], 0);
    c.f.status[0] = 0;
    const char *want[] = {"", "01234567", "89\n", "ab\n"};
    assert_frames(&c, want, 4);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_requests_and_leftovers),
        cmocka_unit_test(test_unclaimed_bytes_go_to_a_later_read_handler),
        cmocka_unit_test(test_requests_take_precedence_over_read),
        cmocka_unit_test(test_split_delimiter_and_byte_by_byte),
        cmocka_unit_test(test_max_buffer_enobufs_consumes_nothing),
        cmocka_unit_test(test_read_bytes_takes_at_most_the_bound),
        cmocka_unit_test(test_eof_gives_partial_then_eof),
        cmocka_unit_test(test_close_cancels_requests),
        cmocka_unit_test(test_regex_partial_match_not_decided_early),
        cmocka_unit_test(test_regex_invalid),
        cmocka_unit_test(test_scan_is_linear),
        cmocka_unit_test(test_many_lines_exact),
        cmocka_unit_test(test_pending_flag_refuses_framing),
        cmocka_unit_test(test_rearm_from_defer_with_buffered_bytes),
        cmocka_unit_test(test_fatal_error_ends_waiting_requests),
        cmocka_unit_test(test_rearm_changes_kind_and_delimiter),
        cmocka_unit_test(test_rearm_after_close_in_callback),
        cmocka_unit_test(test_rearm_twice_in_callback),
        cmocka_unit_test(test_rearm_while_pending_in_callback),
        cmocka_unit_test(test_rearm_with_delimiters_split_between_reads),
        cmocka_unit_test(test_rearm_after_enobufs_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
