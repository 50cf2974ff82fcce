/* tests/test_ipc.c - handle passing over IPC streams: from one loop to another, byte order,
 * CLOEXEC, handles nobody takes, bad input. */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "ipc.h"

/* A RILL_IPC Unix stream carries fds: fd.c gives it the IPC transport by itself. */
static void make_ipc(rill_stream *s)
{
    assert_true(rill_stream_ipc(s));
    assert_ptr_equal(s->tp, &rill__ipc_transport);
}

static rill_stream *ipc_open(rill_loop *loop, int fd)
{
    rill_stream *s = rill_fd_open(loop, fd, RILL_IPC);
    assert_non_null(s);
    make_ipc(s);
    return s;
}

/* Runs two loops in turn until cond holds (bounded). */
#define RUN2_UNTIL(a, b, cond, ms)                                                                 \
    do {                                                                                           \
        uint64_t d_ = th_now_ms() + (ms);                                                          \
        while (!(cond)) {                                                                          \
            if (th_now_ms() > d_)                                                                  \
                fail_msg("timed out waiting for: %s", #cond);                                      \
            rill_loop_run(a, RILL_RUN_NOWAIT);                                                     \
            rill_loop_run(b, RILL_RUN_NOWAIT);                                                     \
            usleep(200);                                                                           \
        }                                                                                          \
    } while (0)

typedef struct {
    rill_stream *got[8];
    size_t before[8]; /* bytes READ on the IPC stream when each HANDLE arrived */
    int handles, closes, write_done, errors;
    char buf[256];
    size_t len;
    bool keep;
} rx;

static void on_rx_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    rx *r = arg;
    assert_true(r->len + ev->len <= sizeof r->buf);
    memcpy(r->buf + r->len, ev->data, ev->len);
    r->len += ev->len;
}

static void on_count_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    (*(int *)arg)++;
}

static void on_rx_handle(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    rx *r = arg;
    assert_int_equal(ev->type, RILL_EV_HANDLE);
    assert_non_null(ev->handle);
    assert_false(rill_stream_is_closed(ev->handle));
    int fd = rill_stream_fd(ev->handle);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC); /* never leaks into a child */
    r->before[r->handles] = r->len;
    r->got[r->handles++] = r->keep ? rill_stream_ref(ev->handle) : NULL;
    assert_non_null(rill_stream_on(ev->handle, RILL_EV_CLOSE, on_count_close, &r->closes));
}

static void on_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    assert_int_equal(status, 0);
    (*(int *)arg)++;
}

typedef struct {
    char buf[256];
    size_t len;
} sink;

static void on_sink(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    sink *k = arg;
    assert_true(k->len + ev->len <= sizeof k->buf);
    memcpy(k->buf + k->len, ev->data, ev->len);
    k->len += ev->len;
}

static void sink_on(rill_stream *s, sink *k)
{
    assert_non_null(rill_stream_on(s, RILL_EV_READ, on_sink, k));
    assert_int_equal(rill_stream_start(s), 0);
}

/* Loop A passes one end of a connected socketpair to loop B, closes its own copy, and the
 * two sides keep talking over the passed connection. */
static void test_pass_connection_between_loops(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *a = th_loop_new(), *b = th_loop_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    rill_stream *ia = ipc_open(a, sv[0]), *ib = ipc_open(b, sv[1]);
    rill_stream *conv[2];
    assert_int_equal(rill_stream_pair(a, conv, 0), 0);

    rx r = {.keep = true};
    assert_non_null(rill_stream_on(ib, RILL_EV_HANDLE, on_rx_handle, &r));
    assert_non_null(rill_stream_on(ib, RILL_EV_READ, on_rx_read, &r));
    assert_int_equal(rill_stream_start(ib), 0);

    int done = 0;
    assert_int_equal(rill_stream_write_handle(ia, "take", 4, conv[1], on_done, &done), 0);
    assert_int_equal(done, 0);  /* never inside the call */
    rill_stream_close(conv[1]); /* ours to close at once: the stream in flight is a dup */
    RUN2_UNTIL(a, b, r.handles == 1 && r.len == 4 && done == 1, 5000);
    assert_int_equal(r.before[0], 0); /* HANDLE came before the READ of its bytes */
    assert_memory_equal(r.buf, "take", 4);

    rill_stream *h = r.got[0];
    assert_int_equal(rill_stream_family(h), AF_UNIX);
    assert_true(rill_stream_readable(h) && rill_stream_writable(h));
    assert_ptr_equal(rill_stream_loop(h), b);
    sink at_a = {0}, at_b = {0};
    sink_on(conv[0], &at_a);
    sink_on(h, &at_b);
    assert_true(rill_stream_write(h, "hello from b", 12, NULL, NULL) >= 0);
    RUN2_UNTIL(a, b, at_a.len == 12, 5000);
    assert_memory_equal(at_a.buf, "hello from b", 12);
    assert_true(rill_stream_write(conv[0], "hi", 2, NULL, NULL) >= 0);
    RUN2_UNTIL(a, b, at_b.len == 2, 5000);
    assert_memory_equal(at_b.buf, "hi", 2);

    rill_stream_close(h);
    rill_stream_unref(h);
    rill_stream_close(conv[0]);
    rill_stream_close(ia);
    rill_stream_close(ib);
    th_loop_free(a);
    th_loop_free(b);
    assert_int_equal(th_fd_count(), before);
}

/* Several handles between plain writes: each arrives before the bytes it was sent with and
 * after the bytes written before it; a pipe comes back as a one-way fd stream. */
static void test_order_and_pipe_handles(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, RILL_IPC), 0);
    make_ipc(p[0]);
    make_ipc(p[1]);
    int pa[2], pb[2];
    assert_int_equal(pipe(pa), 0);
    assert_int_equal(pipe(pb), 0);
    rill_stream *ra = rill_fd_open(loop, pa[0], 0), *wb = rill_fd_open(loop, pb[1], 0);
    assert_non_null(ra);
    assert_non_null(wb);

    rx r = {.keep = true};
    assert_non_null(rill_stream_on(p[1], RILL_EV_HANDLE, on_rx_handle, &r));
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, on_rx_read, &r));
    assert_int_equal(rill_stream_start(p[1]), 0);
    int done = 0;
    assert_true(rill_stream_write(p[0], "A", 1, on_done, &done) >= 0);
    assert_true(rill_stream_write_handle(p[0], "B", 1, ra, on_done, &done) >= 0);
    assert_true(rill_stream_write(p[0], "C", 1, on_done, &done) >= 0);
    assert_true(rill_stream_write_handle(p[0], "D", 1, wb, on_done, &done) >= 0);
    TH_RUN_UNTIL(loop, r.handles == 2 && r.len == 4 && done == 4, 5000);
    assert_memory_equal(r.buf, "ABCD", 4);
    assert_true(r.before[0] <= 1);                     /* before B was read */
    assert_true(r.before[1] >= 2 && r.before[1] <= 3); /* after B, before D */

    /* the received pipe ends work: write into pa, read from the received ra and so on */
    rill_stream *ra2 = r.got[0], *wb2 = r.got[1];
    assert_true(rill_stream_readable(ra2) && !rill_stream_writable(ra2));
    assert_true(rill_stream_writable(wb2) && !rill_stream_readable(wb2));
    rill_stream_close(ra); /* the originals go; the received copies keep the pipes open */
    rill_stream_close(wb);
    sink got = {0};
    sink_on(ra2, &got);
    assert_int_equal(write(pa[1], "via pipe", 8), 8);
    TH_RUN_UNTIL(loop, got.len == 8, 5000);
    assert_true(rill_stream_write(wb2, "back", 4, NULL, NULL) >= 0);
    char buf[8];
    TH_RUN_UNTIL(loop, rill_stream_write_queue_size(wb2) == 0, 5000);
    assert_int_equal(read(pb[0], buf, sizeof buf), 4);
    assert_memory_equal(buf, "back", 4);

    rill_stream_close(ra2); /* kept with a reference: ours to close, then to release */
    rill_stream_close(wb2);
    rill_stream_unref(ra2);
    rill_stream_unref(wb2);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    close(pa[1]);
    close(pb[0]);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

/* A handle with no HANDLE subscriber is closed by the receiver; one whose handler does not
 * keep it is closed after the handlers.  Either way no fd is left behind. */
static void test_unwanted_handles_are_closed(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_stream *p[2], *x[2];
    assert_int_equal(rill_stream_pair(loop, p, RILL_IPC), 0);
    assert_int_equal(rill_stream_pair(loop, x, 0), 0);
    make_ipc(p[0]);
    make_ipc(p[1]);
    int with_pairs = th_fd_count();

    rx r = {0};
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, on_rx_read, &r));
    assert_int_equal(rill_stream_start(p[1]), 0);
    int done = 0;
    assert_int_equal(rill_stream_write_handle(p[0], "nobody", 6, x[1], on_done, &done), 0);
    TH_RUN_UNTIL(loop, r.len == 6 && done == 1, 5000);
    assert_int_equal(th_fd_count(), with_pairs); /* neither our dup nor the received fd */

    /* a handler that looks but does not keep: the stream is closed after it */
    r.keep = false;
    assert_non_null(rill_stream_on(p[1], RILL_EV_HANDLE, on_rx_handle, &r));
    assert_int_equal(rill_stream_write_handle(p[0], "looked", 6, x[1], on_done, &done), 0);
    TH_RUN_UNTIL(loop, r.handles == 1 && r.closes == 1 && r.len == 12 && done == 2, 5000);
    assert_int_equal(th_fd_count(), with_pairs);

    /* a handle still queued when the stream closes is released, never sent */
    assert_int_equal(rill_stream_stop(p[1]), 0);
    static char big[512 * 1024];
    assert_true(rill_stream_write(p[0], big, sizeof big, NULL, NULL) >= 0);
    assert_true(rill_stream_write_queue_size(p[0]) > 0);
    assert_true(rill_stream_write_handle(p[0], "late", 4, x[1], NULL, NULL) >= 0);
    assert_int_equal(th_fd_count(), with_pairs + 1);
    rill_stream_close(p[0]);
    assert_int_equal(th_fd_count(), with_pairs - 1);
    rill_stream_close(p[1]);
    rill_stream_close(x[0]);
    rill_stream_close(x[1]);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

static void test_bad_input(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_stream *plain[2], *p[2];
    assert_int_equal(rill_stream_pair(loop, plain, 0), 0);
    assert_int_equal(rill_stream_pair(loop, p, RILL_IPC), 0);
    make_ipc(p[0]);
    make_ipc(p[1]);
    assert_true(rill_stream_ipc(p[0]));
    assert_false(rill_stream_ipc(plain[0]));

    assert_int_equal(rill_stream_write_handle(plain[0], "x", 1, plain[1], NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_stream_write_handle(p[0], "x", 0, plain[1], NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_stream_write_handle(p[0], NULL, 1, plain[1], NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_stream_write_handle(p[0], "x", 1, NULL, NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_stream_write_handle(NULL, "x", 1, plain[1], NULL, NULL), RILL_EINVAL);
    /* a stream without an fd (as in-memory and custom streams are) */
    static const rill__transport nofd = {.name = "nofd"};
    rill_stream *mem = rill__stream_new(loop, &nofd, -1, RILL__S_READABLE);
    assert_non_null(mem);
    assert_int_equal(rill_stream_write_handle(p[0], "x", 1, mem, NULL, NULL), RILL_EINVAL);
    rill_stream_close(mem);
    /* a closed stream to send, or to send on */
    rill_stream_close(plain[1]);
    assert_int_equal(rill_stream_write_handle(p[0], "x", 1, plain[1], NULL, NULL), RILL_ECLOSED);
    rill_stream_close(p[1]);
    rill_stream_close(p[0]);
    assert_int_equal(rill_stream_write_handle(p[0], "x", 1, plain[0], NULL, NULL), RILL_ECLOSED);
    assert_int_equal(rill_stream_write(p[0], "x", 1, NULL, NULL), RILL_ECLOSED);
    rill_stream_close(plain[0]);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

/* Many handles in a row while the receiver is slow: every one arrives, each before its
 * bytes, none lost or doubled, in order. */
static void test_many_handles_in_order(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, RILL_IPC), 0);
    make_ipc(p[0]);
    make_ipc(p[1]);
    enum { N = 6 };
    int fds[N][2];
    rill_stream *src[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        src[i] = rill_fd_open(loop, fds[i][0], 0);
        assert_non_null(src[i]);
    }
    rx r = {.keep = true};
    assert_non_null(rill_stream_on(p[1], RILL_EV_HANDLE, on_rx_handle, &r));
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, on_rx_read, &r));
    int done = 0;
    for (int i = 0; i < N; i++) {
        char tag[2] = {(char)('0' + i), '.'};
        assert_true(rill_stream_write_handle(p[0], tag, 2, src[i], on_done, &done) >= 0);
        rill_stream_close(src[i]);
    }
    assert_int_equal(rill_stream_start(p[1]), 0);
    TH_RUN_UNTIL(loop, r.handles == N && r.len == 2 * N && done == N, 5000);
    for (int i = 0; i < N; i++) {
        assert_true(r.before[i] <= (size_t)(2 * i)); /* before its own tag */
        /* the handle carries pipe i: write to it and read through the received stream */
        assert_int_equal(write(fds[i][1], "z", 1), 1);
        char c;
        assert_int_equal(read(rill_stream_fd(r.got[i]), &c, 1), 1);
        assert_int_equal(c, 'z');
        rill_stream_close(r.got[i]);
        rill_stream_unref(r.got[i]);
        close(fds[i][1]);
    }
    assert_memory_equal(r.buf, "0.1.2.3.4.5.", 12);
    rill_stream_close(p[0]);
    rill_stream_close(p[1]);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

typedef struct {
    rill_stream *conn;
} accepted;

static void on_conn(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err,
                    void *arg)
{
    (void)srv;
    (void)err;
    if (ev == RILL_SEV_CONNECTION)
        ((accepted *)arg)->conn = conn;
}

/* The case: an accepted TCP connection goes from loop A to loop B, which keeps
 * talking with the client. */
static void test_pass_accepted_tcp(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *a = th_loop_new(), *b = th_loop_new();
    rill_server *srv = rill_tcp_listen(a, "127.0.0.1", 0, NULL);
    assert_non_null(srv);
    accepted acc = {0};
    assert_non_null(rill_server_on(srv, RILL_SEV_CONNECTION, on_conn, &acc));
    rill_addr addr;
    assert_int_equal(rill_server_sockname(srv, &addr), 0);
    uint16_t port = ntohs(((struct sockaddr_in *)&addr.ss)->sin_port);
    rill_stream *cli = rill_tcp_connect(a, "127.0.0.1", port, NULL);
    assert_non_null(cli);
    TH_RUN_UNTIL(a, acc.conn != NULL, 5000);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    rill_stream *ia = ipc_open(a, sv[0]), *ib = ipc_open(b, sv[1]);
    rx r = {.keep = true};
    assert_non_null(rill_stream_on(ib, RILL_EV_HANDLE, on_rx_handle, &r));
    assert_non_null(rill_stream_on(ib, RILL_EV_READ, on_rx_read, &r));
    assert_int_equal(rill_stream_start(ib), 0);
    assert_int_equal(rill_stream_write_handle(ia, "conn", 4, acc.conn, NULL, NULL), 0);
    rill_stream_close(acc.conn);
    RUN2_UNTIL(a, b, r.handles == 1, 5000);
    rill_stream *h = r.got[0];
    assert_int_equal(rill_stream_family(h), AF_INET);

    sink at_cli = {0}, at_h = {0};
    sink_on(cli, &at_cli);
    sink_on(h, &at_h);
    assert_true(rill_stream_write(h, "served by b", 11, NULL, NULL) >= 0);
    RUN2_UNTIL(a, b, at_cli.len == 11, 5000);
    assert_true(rill_stream_write(cli, "ping", 4, NULL, NULL) >= 0);
    RUN2_UNTIL(a, b, at_h.len == 4, 5000);
    assert_memory_equal(at_h.buf, "ping", 4);

    rill_stream_close(h);
    rill_stream_unref(h);
    rill_stream_close(cli);
    rill_stream_close(ia);
    rill_stream_close(ib);
    rill_server_close(srv);
    th_loop_free(a);
    th_loop_free(b);
    assert_int_equal(th_fd_count(), before);
}

/* A Unix IPC server on path whose connections land in acc. */
static rill_server *ipc_server(rill_loop *loop, const char *path, accepted *acc)
{
    rill_server *srv = rill_unix_listen(loop, path, &(rill_listen_opts){.ipc = true});
    assert_non_null(srv);
    assert_non_null(rill_server_on(srv, RILL_SEV_CONNECTION, on_conn, acc));
    return srv;
}

/* Records conn's handles and bytes into r, and starts reading. */
static void rx_watch(rill_stream *conn, rx *r)
{
    assert_non_null(rill_stream_on(conn, RILL_EV_HANDLE, on_rx_handle, r));
    assert_non_null(rill_stream_on(conn, RILL_EV_READ, on_rx_read, r));
    assert_int_equal(rill_stream_start(conn), 0);
}

/* Unix sockets opened with `ipc`: a connected client and the connection its server
 * accepted both carry handles. */
static void test_unix_ipc_client_and_server(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    char path[64];
    snprintf(path, sizeof path, "@rill-ipc-test-%d", (int)getpid());
    accepted acc = {0};
    rill_server *srv = ipc_server(loop, path, &acc);
    rill_stream *cli = rill_unix_connect(loop, path, &(rill_connect_opts){.ipc = true});
    assert_non_null(cli);
    TH_RUN_UNTIL(loop, acc.conn != NULL && rill_stream_fd(cli) >= 0, 5000);
    make_ipc(cli);
    make_ipc(acc.conn);
    rx r = {.keep = true};
    rx_watch(acc.conn, &r);
    int pa[2];
    assert_int_equal(pipe(pa), 0);
    rill_stream *ra = rill_fd_open(loop, pa[0], 0);
    assert_int_equal(rill_stream_write_handle(cli, "h", 1, ra, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, r.handles == 1 && r.len == 1, 5000);
    sink got = {0};
    sink_on(r.got[0], &got);
    rill_stream_close(ra);
    assert_int_equal(write(pa[1], "through", 7), 7);
    TH_RUN_UNTIL(loop, got.len == 7, 5000);
    rill_stream_close(r.got[0]);
    rill_stream_unref(r.got[0]);
    close(pa[1]);
    rill_stream_close(cli);
    rill_server_close(srv);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

/* A handle written while the IPC client is still connecting waits with the bytes and goes
 * out with them once the connection is up; a client that never connects closes the
 * handles it held. */
static void test_handle_written_while_connecting(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    char path[64];
    snprintf(path, sizeof path, "@rill-ipc-early-%d", (int)getpid());
    accepted acc = {0};
    rill_server *srv = ipc_server(loop, path, &acc);
    rill_stream *cli = rill_unix_connect(loop, path, &(rill_connect_opts){.ipc = true});
    assert_non_null(cli);
    int pa[2];
    assert_int_equal(pipe2(pa, O_CLOEXEC), 0);
    rill_stream *ra = rill_fd_open(loop, pa[0], 0);
    assert_non_null(ra);
    assert_true(rill_stream_fd(cli) < 0); /* not connected yet */
    assert_int_equal(rill_stream_write_handle(cli, "h", 1, ra, NULL, NULL), 0);
    rill_stream_close(ra); /* the queued handle is a duplicate: it stays open */
    TH_RUN_UNTIL(loop, acc.conn != NULL, 5000);
    rx r = {.keep = true};
    rx_watch(acc.conn, &r);
    TH_RUN_UNTIL(loop, r.handles == 1 && r.len == 1, 5000);
    sink got = {0};
    sink_on(r.got[0], &got);
    assert_int_equal(write(pa[1], "early", 5), 5);
    TH_RUN_UNTIL(loop, got.len == 5, 5000);
    rill_stream_close(r.got[0]);
    rill_stream_unref(r.got[0]);
    rill_stream_close(cli);

    /* nobody listens here: the connect fails and the queued handle is closed */
    snprintf(path, sizeof path, "@rill-ipc-nobody-%d", (int)getpid());
    rill_stream *lost = rill_unix_connect(loop, path, &(rill_connect_opts){.ipc = true});
    assert_non_null(lost);
    int pb[2];
    assert_int_equal(pipe2(pb, O_CLOEXEC), 0);
    rill_stream *rb = rill_fd_open(loop, pb[0], 0);
    assert_non_null(rb);
    assert_int_equal(rill_stream_write_handle(lost, "h", 1, rb, NULL, NULL), 0);
    rill_stream_close(rb);
    TH_RUN_UNTIL(loop, rill_stream_is_closed(lost), 5000);
    close(pa[1]);
    close(pb[1]);
    rill_server_close(srv);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass_connection_between_loops),
        cmocka_unit_test(test_order_and_pipe_handles),
        cmocka_unit_test(test_unwanted_handles_are_closed),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_many_handles_in_order),
        cmocka_unit_test(test_pass_accepted_tcp),
        cmocka_unit_test(test_unix_ipc_client_and_server),
        cmocka_unit_test(test_handle_written_while_connecting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
