/* tests/test_splice.c - rill_splice: two TCP connections (and socketpairs) pumped into each
 * other, 256 MiB each way with hashes checked, over the zero-copy path and the copying
 * path, a cancel from another thread in the middle, half-close, flags, backpressure,
 * bytes buffered before the splice, errors, and a file stream as a source.
 *
 * The far ends are plain blocking sockets driven by threads, like real clients: the loop
 * thread runs only the splice. */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "splice.h"

#define MIB ((size_t)1 << 20)
#define PAT_LEN ((4u << 20) + 4093) /* odd: a lost or repeated block changes the hash */

static char *g_pat;

/* The test stream: byte k is g_pat[k % PAT_LEN]. */
static void pat_init(void)
{
    if (!g_pat) {
        g_pat = malloc(PAT_LEN);
        th_fill(g_pat, PAT_LEN, 256);
    }
}

static uint64_t pat_hash(uint64_t h, size_t from, size_t len)
{
    while (len) {
        size_t at = from % PAT_LEN, n = PAT_LEN - at < len ? PAT_LEN - at : len;
        h = th_hash(h, g_pat + at, n);
        from += n;
        len -= n;
    }
    return h;
}

/* Expected hashes, cached: the big runs share them. */
static uint64_t expected_hash(size_t len)
{
    static size_t cached_len;
    static uint64_t cached;
    if (cached_len != len) {
        cached = pat_hash(TH_HASH_INIT, 0, len);
        cached_len = len;
    }
    return cached;
}

static size_t big_size(void)
{
    return getenv("RILL_VALGRIND") ? 16 * MIB : 256 * MIB; /* valgrind: 20x slower */
}

/* ---- far ends ------------------------------------------------------------------------- */

typedef struct {
    int fd;
    size_t total;        /* writer: bytes to send, then shutdown(SHUT_WR) */
    atomic_size_t moved; /* bytes sent / received */
    uint64_t hash;
    int err;
    rill_cancel *cancel; /* reader: trigger it after cancel_after bytes */
    size_t cancel_after;
    pthread_t th;
    atomic_bool ended; /* the thread is about to return */
} peer;

static void *writer(void *p)
{
    peer *w = p;
    size_t off = 0;
    while (off < w->total) {
        size_t at = off % PAT_LEN, n = PAT_LEN - at;
        n = n < 256 * 1024 ? n : 256 * 1024;
        n = n < w->total - off ? n : w->total - off;
        ssize_t r = send(w->fd, g_pat + at, n, MSG_NOSIGNAL);
        if (r < 0) {
            w->err = -errno;
            atomic_store(&w->ended, true);
            return NULL;
        }
        off += (size_t)r;
        atomic_store(&w->moved, off);
    }
    shutdown(w->fd, SHUT_WR);
    atomic_store(&w->ended, true);
    return NULL;
}

static void *reader(void *p)
{
    peer *r = p;
    char *buf = malloc(256 * 1024);
    r->hash = TH_HASH_INIT;
    for (;;) {
        ssize_t n = recv(r->fd, buf, 256 * 1024, 0);
        if (n <= 0) {
            r->err = n < 0 ? -errno : 0;
            break;
        }
        r->hash = th_hash(r->hash, buf, (size_t)n);
        size_t got = atomic_fetch_add(&r->moved, (size_t)n) + (size_t)n;
        if (r->cancel && got >= r->cancel_after && got - (size_t)n < r->cancel_after)
            rill_cancel_trigger(r->cancel); /* from this thread, while the loop runs */
    }
    free(buf);
    atomic_store(&r->ended, true);
    return NULL;
}

/* A connection: the rill stream the splice uses and the plain fd of its far end. */
typedef struct {
    rill_stream *s;
    int far;
} conn;

static int tcp_listener(uint16_t *port)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 8), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return l;
}

static void on_connect(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    (*(int *)arg)++;
}

/* TCP: a rill client connected to a plain listener whose accepted socket is the far end. */
static conn tcp_conn(rill_loop *loop)
{
    uint16_t port;
    int l = tcp_listener(&port);
    conn c;
    int up = 0;
    c.s = rill_tcp_connect(loop, "127.0.0.1", port, NULL);
    assert_non_null(c.s);
    assert_non_null(rill_stream_on(c.s, RILL_EV_CONNECT, on_connect, &up));
    TH_RUN_UNTIL(loop, up == 1, 5000);
    c.far = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(c.far >= 0);
    close(l);
    return c;
}

static conn pair_conn(rill_loop *loop)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    conn c = {rill_fd_open(loop, sv[1], 0), sv[0]};
    assert_non_null(c.s);
    return c;
}

typedef struct {
    int calls, status;
    rill_stream *s;
} done_rec;

static void on_done(rill_stream *s, int status, void *arg)
{
    done_rec *d = arg;
    d->calls++;
    d->status = status;
    d->s = s;
}

/* ---- the big runs ---------------------------------------------------------------------- */

typedef enum { ZERO_COPY, COPY_FLAG, COPY_ENV } path;

/* Splices x and y; 'total' bytes go each way (x's far end to y's, and back), or until
 * the cancel that y's far reader triggers after cancel_after bytes. */
static void run_big(conn (*mk)(rill_loop *), path how, size_t total, size_t cancel_after)
{
    pat_init();
    rill_loop *loop = th_loop_new();
    conn x = mk(loop), y = mk(loop);
    rill_cancel *cancel = cancel_after ? rill_cancel_new() : NULL;
    uint64_t zc0 = atomic_load(&rill__splice_zc_bytes);
    uint64_t cp0 = atomic_load(&rill__splice_copy_bytes);
    if (how == COPY_ENV)
        setenv("RILL_SPLICE_COPY", "1", 1);
    done_rec d = {0};
    unsigned flags = RILL_SPLICE_WAIT_BOTH | (how == COPY_FLAG ? RILL_SPLICE_COPY : 0);
    assert_int_equal(rill_splice(x.s, y.s, flags, 0, cancel, on_done, &d), 0);
    unsetenv("RILL_SPLICE_COPY");
    assert_true(rill_stream_has_pending(x.s) && rill_stream_has_pending(y.s));
    assert_int_equal(rill_splice(x.s, y.s, 0, 0, NULL, on_done, &d), RILL_EPENDING);
    assert_int_equal(rill_stream_close_async(x.s, 0, NULL, on_done, &d), RILL_EPENDING);
    peer wx = {.fd = x.far, .total = total}, wy = {.fd = y.far, .total = total};
    peer rx = {.fd = x.far}, ry = {.fd = y.far, .cancel = cancel, .cancel_after = cancel_after};
    pthread_create(&wx.th, NULL, writer, &wx);
    pthread_create(&wy.th, NULL, writer, &wy);
    pthread_create(&rx.th, NULL, reader, &rx);
    pthread_create(&ry.th, NULL, reader, &ry);
    TH_RUN_UNTIL(loop, d.calls == 1, 120000);
    assert_ptr_equal(d.s, x.s);
    assert_false(rill_stream_has_pending(x.s) || rill_stream_has_pending(y.s));
    if (cancel) {
        assert_int_equal(d.status, RILL_ECANCELED);
        rill_stream_close(x.s); /* the far ends see EOF or a reset, their threads end */
        rill_stream_close(y.s);
    }
    /* The far ends' threads end once the streams' fds are really closed (after a cancel)
     * or the EOFs went through: on uring that takes loop iterations (the ring's operations
     * on the fds complete first), so run the loop until they have, within a bound; a join
     * alone could wait for ever on a writer blocked in send. */
    TH_RUN_UNTIL(loop, atomic_load(&wx.ended) && atomic_load(&wy.ended) && atomic_load(&rx.ended) &&
                           atomic_load(&ry.ended),
                 60000);
    pthread_join(wx.th, NULL);
    pthread_join(wy.th, NULL);
    pthread_join(rx.th, NULL);
    pthread_join(ry.th, NULL);
    uint64_t zc = atomic_load(&rill__splice_zc_bytes) - zc0;
    uint64_t cp = atomic_load(&rill__splice_copy_bytes) - cp0;
    if (cancel) {
        assert_true(atomic_load(&ry.moved) >= cancel_after);
        assert_true(atomic_load(&ry.moved) < total); /* it really stopped in the middle */
    } else {
        assert_int_equal(d.status, 0);
        assert_int_equal(atomic_load(&rx.moved), total);
        assert_int_equal(atomic_load(&ry.moved), total);
        assert_true(rx.hash == expected_hash(total));
        assert_true(ry.hash == expected_hash(total));
        if (how == ZERO_COPY)
            assert_true(zc == 2 * total && cp == 0); /* nothing passed through user space */
        else
            assert_true(zc == 0 && cp == 2 * total);
        rill_stream_close(x.s);
        rill_stream_close(y.s);
    }
    close(x.far);
    close(y.far);
    rill_cancel_free(cancel);
    th_loop_free(loop);
}

static void test_tcp_256mib_zero_copy(void **state)
{
    (void)state;
    run_big(tcp_conn, ZERO_COPY, big_size(), 0);
}

static void test_tcp_256mib_copy(void **state)
{
    (void)state;
    run_big(tcp_conn, COPY_FLAG, big_size(), 0);
}

static void test_tcp_cancel_in_the_middle_zero_copy(void **state)
{
    (void)state;
    run_big(tcp_conn, ZERO_COPY, big_size(), 32 * MIB / (getenv("RILL_VALGRIND") ? 8 : 1));
}

static void test_tcp_cancel_in_the_middle_copy(void **state)
{
    (void)state;
    run_big(tcp_conn, COPY_FLAG, big_size(), 32 * MIB / (getenv("RILL_VALGRIND") ? 8 : 1));
}

static void test_socketpairs_both_paths_and_env(void **state)
{
    (void)state;
    run_big(pair_conn, ZERO_COPY, 32 * MIB, 0);
    run_big(pair_conn, COPY_ENV, 32 * MIB, 0);
}

/* ---- behaviour ---------------------------------------------------------------------------- */

static void recv_exact(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

static void expect_eof(int fd)
{
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
}

static bool readable_now(int fd)
{
    char b;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

static void run_until_readable(rill_loop *loop, int fd)
{
    TH_RUN_UNTIL(loop, readable_now(fd), 3000);
}

/* Half-close: x's far end finishes; y's far end sees EOF, answers, finishes; with
 * WAIT_BOTH the splice ends only then. */
static void half_close(unsigned flags)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, flags | RILL_SPLICE_WAIT_BOTH, 0, NULL, on_done, &d), 0);
    assert_int_equal(send(x.far, "request", 7, 0), 7);
    shutdown(x.far, SHUT_WR);
    char buf[16];
    run_until_readable(loop, y.far);
    recv_exact(y.far, buf, 7);
    assert_memory_equal(buf, "request", 7);
    run_until_readable(loop, y.far);
    expect_eof(y.far); /* the EOF travelled on */
    assert_int_equal(d.calls, 0);
    assert_int_equal(send(y.far, "reply", 5, 0), 5);
    shutdown(y.far, SHUT_WR);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_int_equal(d.status, 0);
    recv_exact(x.far, buf, 5);
    assert_memory_equal(buf, "reply", 5);
    expect_eof(x.far);
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_half_close_zero_copy(void **state)
{
    (void)state;
    half_close(0);
}

static void test_half_close_copy(void **state)
{
    (void)state;
    half_close(RILL_SPLICE_COPY);
}

static void close_counter(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    (*(int *)arg)++;
}

static void first_eof_ends(unsigned flags)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    int closes = 0;
    rill_stream_on(x.s, RILL_EV_CLOSE, close_counter, &closes);
    rill_stream_on(y.s, RILL_EV_CLOSE, close_counter, &closes);
    rill_stream_ref(x.s);
    rill_stream_ref(y.s);
    assert_int_equal(rill_splice(x.s, y.s, flags, 7, NULL, on_done, &d), 0);
    shutdown(x.far, SHUT_WR);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_int_equal(d.status, 0);
    expect_eof(y.far);
    assert_false(rill_stream_has_pending(x.s));
    if (flags & RILL_SPLICE_CLOSE_A) {
        TH_RUN_UNTIL(loop, closes == 2, 3000);
        assert_true(rill_stream_is_closed(x.s) && rill_stream_is_closed(y.s));
    } else {
        assert_int_equal(closes, 0);
        assert_false(rill_stream_is_closed(x.s) || rill_stream_is_closed(y.s));
        assert_true(rill_stream_writable(x.s)); /* only y's write half was shut down */
        rill_stream_close(x.s);
        rill_stream_close(y.s);
    }
    rill_stream_unref(x.s);
    rill_stream_unref(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_first_eof_ends_without_wait_both(void **state)
{
    (void)state;
    first_eof_ends(0);
    first_eof_ends(RILL_SPLICE_COPY);
}

static void test_close_flags(void **state)
{
    (void)state;
    first_eof_ends(RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B);
    first_eof_ends(RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B | RILL_SPLICE_COPY);
}

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    assert_int_equal(status, 0);
    memcpy(arg, data, len);
}

/* What x had buffered and what y had queued before the splice go first, in order. */
static void buffered_first(unsigned flags)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    char head[4] = {0};
    assert_int_equal(send(x.far, "0123456789", 10, 0), 10);
    assert_int_equal(rill_stream_read_exactly(x.s, 3, on_frame, head), 0);
    TH_RUN_UNTIL(loop, head[0] == '0', 3000); /* "3456789" stays in x's buffer */
    char *queued = malloc(MIB);
    memset(queued, 'Q', MIB);
    assert_true(rill_stream_write(y.s, queued, MIB, NULL, NULL) >= 0); /* y's far end is slow */
    assert_true(rill_stream_write_queue_size(y.s) > 0);
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, flags, 0, NULL, on_done, &d), 0);
    assert_int_equal(send(x.far, "ABC", 3, 0), 3);
    shutdown(x.far, SHUT_WR);
    pthread_t th;
    peer r = {.fd = y.far};
    pthread_create(&th, NULL, reader, &r);
    TH_RUN_UNTIL(loop, d.calls == 1, 5000);
    pthread_join(th, NULL);
    assert_int_equal(d.status, 0);
    assert_int_equal(atomic_load(&r.moved), MIB + 10);
    uint64_t want = th_hash(TH_HASH_INIT, queued, MIB);
    want = th_hash(want, "3456789ABC", 10);
    assert_true(r.hash == want);
    free(queued);
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

/* A splice started from the source's first READ while more bytes are already on their
 * way in (on uring: later completions of the same receive), and then nothing more comes:
 * every byte still reaches the sink, in order. */
typedef struct {
    rill_stream *x, *y;
    done_rec *d;
    rill_sub *sub;
    int rc;
} switch_rec;

static void switch_on_first(rill_stream *s, const rill_event *ev, void *arg)
{
    switch_rec *w = arg;
    rill_stream_off(s, w->sub);
    w->rc = rill_stream_write(w->y, ev->data, ev->len, NULL, NULL);
    if (w->rc >= 0)
        w->rc = rill_splice(w->x, w->y, 0, 0, NULL, on_done, w->d);
}

typedef struct {
    int fd;
    size_t got;
    uint64_t hash;
} drain_rec;

static bool drained(drain_rec *r, size_t want)
{
    char buf[16384];
    ssize_t n;
    while ((n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
        r->hash = th_hash(r->hash, buf, (size_t)n);
        r->got += (size_t)n;
    }
    return r->got >= want;
}

static void test_bytes_in_flight_when_started_go_first(void **state)
{
    (void)state;
    pat_init();
    const size_t total = 128 * 1024;
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    switch_rec w = {.x = x.s, .y = y.s, .d = &d};
    assert_non_null(w.sub = rill_stream_on(x.s, RILL_EV_READ, switch_on_first, &w));
    assert_int_equal(rill_stream_start(x.s), 0);
    assert_int_equal(send(x.far, g_pat, total, 0), (ssize_t)total);
    drain_rec r = {.fd = y.far, .hash = TH_HASH_INIT};
    TH_RUN_UNTIL(loop, drained(&r, total), 5000); /* no EOF, no more bytes: nothing else wakes it */
    assert_int_equal(w.rc, 0);
    assert_true(rill_stream_has_pending(x.s));
    assert_int_equal(r.got, total);
    assert_true(r.hash == pat_hash(TH_HASH_INIT, 0, total));
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_int_equal(d.status, RILL_ECLOSED);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_buffered_bytes_go_first(void **state)
{
    (void)state;
    buffered_first(0);
    buffered_first(RILL_SPLICE_COPY);
}

/* A framing request still waits on the source when the splice starts: it takes the first
 * line, the splice every byte after it, in order, and the splice ends at the EOF (on uring
 * the request kept the ring's receive armed, so the zero-copy path waited for its end
 * forever; elsewhere the stream's own reads took bytes past the splice into its buffer). */
typedef struct {
    int calls, status;
    char data[64];
    size_t len;
} line_rec;

static void on_line(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    line_rec *l = arg;
    (void)s;
    l->calls++;
    l->status = status;
    if (len > sizeof l->data - l->len)
        len = sizeof l->data - l->len;
    memcpy(l->data + l->len, data, len);
    l->len += len;
}

/* early: the line's first part is already in x's buffer when the splice starts */
static void frame_pending_at_start(unsigned flags, bool early)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    line_rec l = {0};
    assert_int_equal(rill_stream_read_until(x.s, "\n", 1, on_line, &l), 0);
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT); /* uring: the receive is in the ring */
    static const char sent[] = "first line\nthen the rest, spliced";
    if (early) {
        assert_int_equal(send(x.far, sent, 6, 0), 6);
        TH_RUN_UNTIL(loop, rill__in_len(x.s) == 6, 3000);
    }
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, flags, 0, NULL, on_done, &d), 0);
    if (!early)
        assert_int_equal(send(x.far, sent, 6, 0), 6); /* the line comes in two parts */
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(send(x.far, sent + 6, sizeof sent - 7, 0), (ssize_t)(sizeof sent - 7));
    shutdown(x.far, SHUT_WR);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_int_equal(d.status, 0);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.status, 0);
    char got[64];
    ssize_t n = recv(y.far, got, sizeof got, MSG_DONTWAIT);
    assert_true(n >= 0);
    assert_int_equal(l.len + (size_t)n, sizeof sent - 1);
    assert_memory_equal(l.data, sent, l.len);
    assert_memory_equal(got, sent + l.len, (size_t)n);
    assert_int_equal(l.len, 11); /* the request took its line */
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_frame_request_pending_at_start(void **state)
{
    (void)state;
    frame_pending_at_start(0, false);
    frame_pending_at_start(0, true);
    frame_pending_at_start(RILL_SPLICE_COPY, false);
    frame_pending_at_start(RILL_SPLICE_COPY, true);
}

/* The proxy pattern: a frame callback reads the request line and splices the stream on.
 * The bytes that came with the line (the same read, or already buffered) go to the sink
 * first, once each, in order. */
typedef struct {
    rill_stream *y;
    done_rec *d;
    int calls, rc;
    int want; /* the status the frame callback expects: 0, or RILL_EOF at the end */
    char line[32];
} proxy_rec;

static void proxy_on_line(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    proxy_rec *p = arg;
    p->calls++;
    assert_int_equal(status, p->want);
    assert_true(len < sizeof p->line);
    memcpy(p->line, data, len);
    p->rc = rill_splice(s, p->y, 0, 0, NULL, on_done, p->d);
}

static void proxy_after_line(unsigned flags, bool split)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    proxy_rec p = {.y = y.s, .d = &d, .rc = 1};
    if (flags & RILL_SPLICE_COPY)
        setenv("RILL_SPLICE_COPY", "1", 1);
    assert_int_equal(rill_stream_read_until(x.s, "\n", 1, proxy_on_line, &p), 0);
    static const char sent[] = "CONNECT host\npayload that follows";
    if (split) { /* the line ends in a second read: it is served from the buffer */
        assert_int_equal(send(x.far, sent, 4, 0), 4);
        for (int i = 0; i < 3; i++)
            rill_loop_run(loop, RILL_RUN_NOWAIT);
        assert_int_equal(p.calls, 0);
    }
    size_t from = split ? 4 : 0;
    assert_int_equal(send(x.far, sent + from, sizeof sent - 1 - from, 0),
                     (ssize_t)(sizeof sent - 1 - from));
    TH_RUN_UNTIL(loop, p.calls == 1, 3000);
    unsetenv("RILL_SPLICE_COPY");
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.line, "CONNECT host\n");
    shutdown(x.far, SHUT_WR);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_int_equal(d.status, 0);
    char got[64] = {0};
    ssize_t n = recv(y.far, got, sizeof got - 1, MSG_DONTWAIT);
    assert_string_equal(got, "payload that follows");
    assert_int_equal(n, 20);
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_splice_from_frame_callback(void **state)
{
    (void)state;
    proxy_after_line(0, false);
    proxy_after_line(RILL_SPLICE_COPY, false);
    proxy_after_line(0, true);
    proxy_after_line(RILL_SPLICE_COPY, true);
}

/* The same from the callback that gets the last partial frame at the end of the stream:
 * those bytes are the callback's, not forwarded again, and the end travels on. */

static void splice_at_the_end(unsigned flags)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    proxy_rec p = {.y = y.s, .d = &d, .rc = 1, .want = RILL_EOF};
    if (flags & RILL_SPLICE_COPY)
        setenv("RILL_SPLICE_COPY", "1", 1);
    assert_int_equal(rill_stream_read_until(x.s, "\n", 1, proxy_on_line, &p), 0);
    assert_int_equal(send(x.far, "no newline", 10, 0), 10);
    shutdown(x.far, SHUT_WR);
    TH_RUN_UNTIL(loop, p.calls == 1 && d.calls == 1, 3000);
    unsetenv("RILL_SPLICE_COPY");
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.line, "no newline");
    assert_int_equal(d.status, 0);
    char got[16];
    assert_int_equal(recv(y.far, got, sizeof got, MSG_DONTWAIT), 0); /* nothing, then the end */
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_splice_from_the_last_frame(void **state)
{
    (void)state;
    splice_at_the_end(0);
    splice_at_the_end(RILL_SPLICE_COPY);
}

/* The splice ends (cancel, source closed, sink closed) while it still waits for the
 * source's ring receive to end (uring; elsewhere it does not wait): the late receive's
 * completions find no splice (ASan), and after a cancel every byte is either at the sink
 * or still kept by the source, in order. */
typedef struct {
    char data[256];
    size_t len;
} kept_rec;

static void kept_read(rill_stream *s, const rill_event *ev, void *arg)
{
    kept_rec *k = arg;
    (void)s;
    memcpy(k->data + k->len, ev->data, ev->len);
    k->len += ev->len;
}

static void end_while_waiting(int how)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    kept_rec k = {0};
    rill_stream_ref(x.s);
    rill_stream_ref(y.s);
    assert_non_null(rill_stream_on(x.s, RILL_EV_READ, kept_read, &k));
    assert_int_equal(rill_stream_start(x.s), 0);
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    rill_cancel *c = rill_cancel_new();
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, 0, 0, c, on_done, &d), 0);
    assert_int_equal(send(x.far, "late bytes", 10, 0), 10);
    if (how == 0)
        rill_cancel_trigger(c);
    else if (how == 1)
        rill_stream_close(x.s);
    else
        rill_stream_close(y.s);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    for (int i = 0; i < 5; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    char got[64] = {0};
    ssize_t n = recv(y.far, got, sizeof got, MSG_DONTWAIT);
    if (n < 0)
        n = 0;
    if (how == 0) {
        assert_int_equal(d.status, RILL_ECANCELED);
        assert_int_equal(rill_stream_start(x.s), 0);
        TH_RUN_UNTIL(loop, (size_t)n + k.len >= 10, 3000);
        memcpy(got + n, k.data, k.len);
        assert_memory_equal(got, "late bytes", 10);
    }
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    rill_stream_unref(x.s);
    rill_stream_unref(y.s);
    rill_cancel_free(c);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_end_while_waiting(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        end_while_waiting(0);
        end_while_waiting(1);
        end_while_waiting(2);
    }
}

/* ---- backpressure --------------------------------------------------------------------------- */

typedef struct {
    rill_stream *s;
    size_t max;
} sampler;

static void sample(rill_timer *t, void *arg)
{
    (void)t;
    sampler *sm = arg;
    size_t q = rill_stream_write_queue_size(sm->s);
    sm->max = q > sm->max ? q : sm->max;
}

static void *slow_reader(void *p)
{
    peer *r = p;
    char buf[16384];
    r->hash = TH_HASH_INIT;
    ssize_t n;
    while ((n = recv(r->fd, buf, sizeof buf, 0)) > 0) {
        r->hash = th_hash(r->hash, buf, (size_t)n);
        atomic_fetch_add(&r->moved, (size_t)n);
        usleep(200);
    }
    return NULL;
}

static void test_backpressure_bounds_sink_queue(void **state)
{
    (void)state;
    pat_init();
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    const size_t high = 256 * 1024, total = 16 * MIB;
    rill_stream_set_watermarks(y.s, 0, high);
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, RILL_SPLICE_COPY, 0, NULL, on_done, &d), 0);
    sampler sm = {y.s, 0};
    rill_timer *t = rill_timer_start(loop, 1, 1, sample, &sm);
    peer w = {.fd = x.far, .total = total}, r = {.fd = y.far};
    pthread_create(&w.th, NULL, writer, &w);
    pthread_create(&r.th, NULL, slow_reader, &r);
    TH_RUN_UNTIL(loop, d.calls == 1, 60000);
    rill_timer_stop(t);
    pthread_join(w.th, NULL);
    pthread_join(r.th, NULL);
    assert_int_equal(d.status, 0);
    assert_int_equal(atomic_load(&r.moved), total);
    assert_true(r.hash == pat_hash(TH_HASH_INIT, 0, total));
    assert_true(sm.max > 0);     /* the sink was the slow side */
    assert_true(sm.max <= high); /* and its queue never grew past the mark */
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

/* ---- inactivity timeouts ------------------------------------------------------------------- */

static void *trickle(void *p)
{
    peer *w = p;
    for (int i = 0; i < 20; i++) { /* 1 s of traffic, 50 ms apart: each gap < the timeout */
        if (send(w->fd, g_pat, 4096, MSG_NOSIGNAL) != 4096)
            break;
        atomic_fetch_add(&w->moved, 4096);
        usleep(50000);
    }
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

/* Bytes moving through the splice count as activity for both streams, also when they
 * never pass through the streams themselves (zero-copy). */
static void timeouts_see_activity(unsigned flags)
{
    pat_init();
    rill_loop *loop = th_loop_new();
    conn x = tcp_conn(loop), y = tcp_conn(loop);
    rill_stream_set_timeout(x.s, 300);
    rill_stream_set_timeout(y.s, 300);
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, flags, 0, NULL, on_done, &d), 0);
    peer w = {.fd = x.far}, r = {.fd = y.far};
    pthread_create(&w.th, NULL, trickle, &w);
    pthread_create(&r.th, NULL, reader, &r);
    TH_RUN_UNTIL(loop, d.calls == 1, 5000);
    pthread_join(w.th, NULL);
    pthread_join(r.th, NULL);
    assert_int_equal(d.status, 0); /* not RILL_ETIMEDOUT */
    assert_int_equal(atomic_load(&r.moved), 20 * 4096);
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_activity_keeps_timeouts_away(void **state)
{
    (void)state;
    timeouts_see_activity(0);
    timeouts_see_activity(RILL_SPLICE_COPY);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_invalid_and_pending(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, x.s, 0, 0, NULL, on_done, &d), RILL_EINVAL);
    assert_int_equal(rill_splice(NULL, x.s, 0, 0, NULL, on_done, &d), RILL_EINVAL);
    assert_int_equal(rill_splice(x.s, y.s, 0x100, 0, NULL, on_done, &d), RILL_EINVAL);
    assert_int_equal(rill_stream_set_pending(x.s), 0);
    assert_int_equal(rill_splice(x.s, y.s, 0, 0, NULL, on_done, &d), RILL_EPENDING);
    rill_stream_clear_pending(x.s);
    rill_stream_ref(y.s);
    rill_stream_close(y.s);
    assert_int_equal(rill_splice(x.s, y.s, 0, 0, NULL, on_done, &d), RILL_ECLOSED);
    rill_stream_unref(y.s);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(d.calls, 0); /* failed calls never call back */
    rill_stream_close(x.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void count_error(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    (*(int *)arg)++;
}

/* y's far end goes away: writing y fails.  Without an ERROR handler y closes; with one
 * (which keeps it open) the handler runs exactly once, even when bytes still wait in the
 * zero-copy path's kernel pipe. */
static void peer_gone(unsigned flags, bool handled)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    int errors = 0;
    rill_stream_ref(y.s);
    if (handled)
        assert_non_null(rill_stream_on(y.s, RILL_EV_ERROR, count_error, &errors));
    assert_int_equal(rill_splice(x.s, y.s, flags | RILL_SPLICE_WAIT_BOTH, 0, NULL, on_done, &d), 0);
    close(y.far); /* y's far end is gone: writing to y fails */
    static char chunk[65536];
    for (int i = 0; i < 16 && d.calls == 0; i++) {
        assert_int_equal(send(x.far, chunk, sizeof chunk, MSG_NOSIGNAL | MSG_DONTWAIT) > 0 ||
                             errno == EAGAIN,
                         1);
        for (int k = 0; k < 3; k++)
            rill_loop_run(loop, RILL_RUN_NOWAIT);
    }
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_true(d.status == RILL_EPIPE || d.status == RILL_ECONNRESET);
    if (handled) {
        for (int k = 0; k < 5; k++)
            rill_loop_run(loop, RILL_RUN_NOWAIT);
        assert_int_equal(errors, 1);
        assert_false(rill_stream_is_closed(y.s)); /* the handler kept it */
        rill_stream_close(y.s);
    } else {
        /* on either path the broken stream knows: no ERROR handler, so it closed */
        TH_RUN_UNTIL(loop, rill_stream_is_closed(y.s), 2000);
        assert_int_equal(rill_stream_error(y.s), d.status);
    }
    rill_stream_unref(y.s);
    rill_stream_close(x.s);
    close(x.far);
    th_loop_free(loop);
}

static void test_peer_gone_is_an_error(void **state)
{
    (void)state;
    peer_gone(0, false);
    peer_gone(RILL_SPLICE_COPY, false);
}

static void test_peer_gone_error_reported_once(void **state)
{
    (void)state;
    peer_gone(0, true);
    peer_gone(RILL_SPLICE_COPY, true);
}

/* x's far end goes away with bytes unread: reading x fails with ECONNRESET. */
static void source_reset(unsigned flags)
{
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    rill_stream_ref(x.s);
    assert_int_equal(rill_splice(x.s, y.s, flags | RILL_SPLICE_WAIT_BOTH, 0, NULL, on_done, &d), 0);
    assert_int_equal(send(y.far, "unread", 6, 0), 6); /* spliced to x's far end */
    char b;
    TH_RUN_UNTIL(loop, recv(x.far, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1, 3000);
    close(x.far);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_true(d.status == RILL_ECONNRESET || d.status == RILL_EPIPE);
    TH_RUN_UNTIL(loop, rill_stream_is_closed(x.s), 2000); /* no ERROR handler: it closed */
    assert_int_equal(rill_stream_error(x.s), d.status);
    rill_stream_unref(x.s);
    rill_stream_close(y.s);
    close(y.far);
    th_loop_free(loop);
}

static void test_source_reset_is_an_error(void **state)
{
    (void)state;
    source_reset(0);
    source_reset(RILL_SPLICE_COPY);
}

static void test_cancel_before_start(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    rill_cancel *c = rill_cancel_new();
    rill_cancel_trigger(c);
    done_rec d = {0};
    assert_int_equal(rill_splice(x.s, y.s, 0, 0, c, on_done, &d), 0);
    assert_int_equal(d.calls, 0);
    TH_RUN_UNTIL(loop, d.calls == 1, 2000);
    assert_int_equal(d.status, RILL_ECANCELED);
    assert_false(rill_stream_has_pending(x.s) || rill_stream_has_pending(y.s));
    rill_cancel_free(c);
    rill_stream_close(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

static void test_stream_closed_under_splice(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    conn x = pair_conn(loop), y = pair_conn(loop);
    done_rec d = {0};
    rill_stream_ref(x.s);
    assert_int_equal(rill_splice(x.s, y.s, 0, 0, NULL, on_done, &d), 0);
    rill_stream_close(x.s);
    TH_RUN_UNTIL(loop, d.calls == 1, 3000);
    assert_int_equal(d.status, RILL_ECLOSED);
    assert_false(rill_stream_has_pending(y.s));
    rill_stream_unref(x.s);
    rill_stream_close(y.s);
    close(x.far);
    close(y.far);
    th_loop_free(loop);
}

/* ---- a file stream as the source (copy path: it cannot be polled) --------------------------- */

static void test_file_into_socket(void **state)
{
    (void)state;
    pat_init();
    char path[64];
    snprintf(path, sizeof path, "/tmp/rill-test-splice-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const size_t len = 8 * MIB;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < PAT_LEN ? len - off : PAT_LEN;
        assert_int_equal(write(fd, g_pat, n), (ssize_t)n);
        off += n;
    }
    close(fd);
    rill_loop *loop = th_loop_new();
    rill_stream *f = rill_file_open(loop, path, O_RDONLY, 0);
    assert_non_null(f);
    conn y = pair_conn(loop);
    done_rec d = {0};
    uint64_t zc0 = atomic_load(&rill__splice_zc_bytes);
    assert_int_equal(
        rill_splice(f, y.s, RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B, 0, NULL, on_done, &d), 0);
    peer r = {.fd = y.far};
    pthread_create(&r.th, NULL, reader, &r);
    TH_RUN_UNTIL(loop, d.calls == 1, 10000);
    pthread_join(r.th, NULL); /* EOF: CLOSE_B closed y after its queue */
    assert_int_equal(d.status, 0);
    assert_int_equal(atomic_load(&r.moved), len);
    assert_true(r.hash == pat_hash(TH_HASH_INIT, 0, len));
    assert_true(atomic_load(&rill__splice_zc_bytes) == zc0);
    close(y.far);
    th_loop_free(loop);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_close_zero_copy),
        cmocka_unit_test(test_half_close_copy),
        cmocka_unit_test(test_first_eof_ends_without_wait_both),
        cmocka_unit_test(test_close_flags),
        cmocka_unit_test(test_buffered_bytes_go_first),
        cmocka_unit_test(test_bytes_in_flight_when_started_go_first),
        cmocka_unit_test(test_frame_request_pending_at_start),
        cmocka_unit_test(test_splice_from_frame_callback),
        cmocka_unit_test(test_splice_from_the_last_frame),
        cmocka_unit_test(test_end_while_waiting),
        cmocka_unit_test(test_backpressure_bounds_sink_queue),
        cmocka_unit_test(test_activity_keeps_timeouts_away),
        cmocka_unit_test(test_invalid_and_pending),
        cmocka_unit_test(test_peer_gone_is_an_error),
        cmocka_unit_test(test_peer_gone_error_reported_once),
        cmocka_unit_test(test_source_reset_is_an_error),
        cmocka_unit_test(test_cancel_before_start),
        cmocka_unit_test(test_stream_closed_under_splice),
        cmocka_unit_test(test_file_into_socket),
        cmocka_unit_test(test_socketpairs_both_paths_and_env),
        cmocka_unit_test(test_tcp_256mib_zero_copy),
        cmocka_unit_test(test_tcp_256mib_copy),
        cmocka_unit_test(test_tcp_cancel_in_the_middle_zero_copy),
        cmocka_unit_test(test_tcp_cancel_in_the_middle_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
