/* tests/test_tcp.c - TCP clients and listeners: addresses, connecting (resolution, Happy
 * Eyeballs, timeouts, options), listening options, and bad input. */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sock.h"

/* ---- helpers ----------------------------------------------------------------------------- */

typedef th_cli cli;
#define cli_watch th_cli_watch
#define on_done th_cli_done

typedef struct {
    rill_server *srv;
    int conns, conn_closes, errors;
    rill_stream *last;
} echo_srv;

static void echo_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)arg;
    assert_true(rill_stream_write(s, ev->data, ev->len, NULL, NULL) >= 0);
}

static void echo_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    ((echo_srv *)arg)->conn_closes++;
}

static void echo_event(rill_server *srv, rill_server_event_type type, rill_stream *conn, int err,
                       void *arg)
{
    echo_srv *e = arg;
    (void)err;
    assert_ptr_equal(srv, e->srv);
    if (type == RILL_SEV_ERROR) {
        e->errors++;
        return;
    }
    e->conns++;
    e->last = conn;
    rill_stream_on(conn, RILL_EV_READ, echo_read, e);
    rill_stream_on(conn, RILL_EV_CLOSE, echo_close, e);
    rill_stream_start(conn);
}

static void echo_start(rill_loop *loop, const char *host, const rill_listen_opts *o, echo_srv *e)
{
    memset(e, 0, sizeof *e);
    e->srv = rill_tcp_listen(loop, host, 0, o);
    if (!e->srv)
        fail_msg("listen %s: %s", host ? host : "(any)", rill_strerror(-errno));
    assert_non_null(rill_server_on(e->srv, RILL_SEV_CONNECTION, echo_event, e));
    assert_non_null(rill_server_on(e->srv, RILL_SEV_ERROR, echo_event, e));
}

static uint16_t addr_port(const rill_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static uint16_t srv_port(rill_server *srv)
{
    rill_addr a;
    assert_int_equal(rill_server_sockname(srv, &a), 0);
    return addr_port(&a);
}

static rill_addr loop_addr(int family, uint16_t port)
{
    char text[64];
    rill_addr a;
    snprintf(text, sizeof text, family == AF_INET ? "127.0.0.1:%u" : "[::1]:%u", (unsigned)port);
    assert_int_equal(rill_addr_parse(text, &a), 0);
    return a;
}

/* A listener whose accept queue is full: further SYNs are dropped, so a connect to it
 * hangs until the client gives up (listen(0) takes one connection, never accepted). */
typedef struct {
    int lfd, filler;
    uint16_t port;
} dropper;

static void dropper_open(dropper *d, int family)
{
    rill_addr a = loop_addr(family, 0);
    d->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(d->lfd >= 0);
    assert_int_equal(bind(d->lfd, (struct sockaddr *)&a.ss, a.len), 0);
    assert_int_equal(listen(d->lfd, 0), 0);
    a.len = sizeof a.ss;
    assert_int_equal(getsockname(d->lfd, (struct sockaddr *)&a.ss, &a.len), 0);
    d->port = addr_port(&a);
    d->filler = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(d->filler, (struct sockaddr *)&a.ss, a.len), 0);
}

static void dropper_close(dropper *d)
{
    close(d->filler);
    close(d->lfd);
}

/* A port nobody listens on (bound, so nobody else takes it meanwhile). */
static int reserve_port(int family, uint16_t *port)
{
    rill_addr a = loop_addr(family, 0);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a.ss, a.len), 0);
    a.len = sizeof a.ss;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a.ss, &a.len), 0);
    *port = addr_port(&a);
    return fd;
}

static int sockopt(rill_stream *s, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(rill_stream_fd(s), level, name, &v, &len), 0);
    return v;
}

/* ---- addresses ---------------------------------------------------------------------------- */

static void roundtrip(const char *in, const char *want)
{
    rill_addr a;
    char out[128];
    assert_int_equal(rill_addr_parse(in, &a), 0);
    int n = rill_addr_format(&a, out, sizeof out);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(out, want);
    rill_addr b; /* and the formatted text parses to the same address */
    assert_int_equal(rill_addr_parse(out, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(&a.ss, &b.ss, a.len);
}

static void test_addr_parse_format(void **state)
{
    (void)state;
    roundtrip("1.2.3.4:80", "1.2.3.4:80");
    roundtrip("0.0.0.0:0", "0.0.0.0:0");
    roundtrip("255.255.255.255:65535", "255.255.255.255:65535");
    roundtrip("[::1]:80", "[::1]:80");
    roundtrip("[2001:DB8:0:0::1]:443", "[2001:db8::1]:443");
    roundtrip("[::ffff:1.2.3.4]:8", "[::ffff:1.2.3.4]:8");
    roundtrip("[fe80::1%1]:9", "[fe80::1%lo]:9");
    roundtrip("/tmp/rill.sock", "/tmp/rill.sock");
    roundtrip("@abstract", "@abstract");
    rill_addr a;
    assert_int_equal(rill_addr_parse("[::1]:80", &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_equal(addr_port(&a), 80);
    assert_int_equal(rill_addr_parse("10.0.0.1:8080", &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(addr_port(&a), 8080);

    static const char *bad[] = {
        "",
        "1.2.3.4",
        "1.2.3.4:",
        ":80",
        "1.2.3.4:65536",
        "1.2.3.4:99999",
        "1.2.3.4:123456",
        "1.2.3.4:-1",
        "1.2.3.4:+80",
        "1.2.3.4:8a",
        "1.2.3.4: 80",
        "1.2.3:80",
        "256.1.1.1:80",
        "01.2.3.4:80",
        "::1:80",
        "[::1]80",
        "[::1",
        "[::1]:",
        "[]:80",
        "[1.2.3.4]:80",
        "[::1%]:80",
        "[::1%nosuchif]:80",
        "localhost:80",
        "1.2.3.4:80:80",
        "@",
        "[::1]:80x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (rill_addr_parse(bad[i], &a) != RILL_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    char longpath[200];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(rill_addr_parse(longpath, &a), RILL_EINVAL);
    /* An abstract name may fill all of sun_path (108 bytes, its '@' being the NUL); a file
     * name may not (its NUL must fit). */
    char full[109];
    memset(full, 'y', 108);
    full[108] = '\0';
    full[0] = '@';
    roundtrip(full, full);
    assert_int_equal(rill_addr_parse(full, &a), 0);
    assert_int_equal(a.len, sizeof(struct sockaddr_un));
    full[0] = '/';
    assert_int_equal(rill_addr_parse(full, &a), RILL_EINVAL);
    full[107] = '\0';
    assert_int_equal(rill_addr_parse(full, &a), 0);
    memset(longpath, 'z', sizeof longpath - 1);
    longpath[0] = '@';
    assert_int_equal(rill_addr_parse(longpath, &a), RILL_EINVAL);
    assert_int_equal(rill_addr_parse(NULL, &a), RILL_EINVAL);
    assert_int_equal(rill_addr_parse("1.2.3.4:80", NULL), RILL_EINVAL);

    char out[64];
    assert_int_equal(rill_addr_parse("[::1]:80", &a), 0);
    assert_int_equal(rill_addr_format(&a, out, 8), RILL_ENOBUFS); /* "[::1]:80" needs 9 */
    assert_int_equal(rill_addr_format(&a, out, 9), 8);
    assert_int_equal(rill_addr_format(NULL, out, sizeof out), RILL_EINVAL);
    a.ss.ss_family = AF_APPLETALK;
    assert_int_equal(rill_addr_format(&a, out, sizeof out), RILL_EINVAL);
    a.ss.ss_family = AF_UNIX; /* an unnamed Unix socket formats as "" */
    a.len = sizeof(sa_family_t);
    assert_int_equal(rill_addr_format(&a, out, sizeof out), 0);
    assert_string_equal(out, "");
}

static void test_interleave(void **state)
{
    (void)state;
    rill_addr v[5];
    const char *in[] = {"[::1]:1", "[::1]:2", "127.0.0.1:3", "127.0.0.1:4", "[::1]:5"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(rill_addr_parse(in[i], &v[i]), 0);
    rill__addr_interleave(v, 5);
    const int want[] = {1, 3, 2, 4, 5};
    for (int i = 0; i < 5; i++)
        assert_int_equal(addr_port(&v[i]), want[i]);
}

/* ---- connecting --------------------------------------------------------------------------- */

static void connect_echo(int family)
{
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    echo_srv e;
    echo_start(loop, family == AF_INET ? "127.0.0.1" : "::1", NULL, &e);
    cli c;
    rill_stream *s =
        rill_tcp_connect(loop, family == AF_INET ? "127.0.0.1" : "::1", srv_port(e.srv), NULL);
    cli_watch(s, &c, true);
    assert_int_equal(c.connects, 0); /* never inside the call */
    assert_int_equal(rill_stream_fd(s), RILL_EINVAL);
    rill_addr a;
    assert_int_equal(rill_stream_peername(s, &a), RILL_ENOTCONN);
    assert_int_equal(rill_stream_write(s, "hello", 5, on_done, &c), 0); /* queued */
    TH_RUN_UNTIL(loop, c.bytes == 5, 3000);
    assert_memory_equal(c.text, "hello", 5);
    assert_int_equal(c.connects, 1);
    assert_int_equal(c.done_ok, 1);
    assert_int_equal(rill_stream_family(s), family);
    assert_int_equal(rill_stream_family(e.last), family);
    assert_int_equal(rill_stream_timeout(s), 15000);
    assert_int_equal(rill_stream_timeout(e.last), 15000);
    assert_ptr_equal(rill_stream_server(e.last), e.srv);
    assert_null(rill_stream_server(s));

    rill_addr cs, cp, ss, sp, l;
    assert_int_equal(rill_stream_sockname(s, &cs), 0);
    assert_int_equal(rill_stream_peername(s, &cp), 0);
    assert_int_equal(rill_stream_sockname(e.last, &ss), 0);
    assert_int_equal(rill_stream_peername(e.last, &sp), 0);
    assert_int_equal(rill_server_sockname(e.srv, &l), 0);
    assert_memory_equal(&cs.ss, &sp.ss, cs.len); /* each end sees the other */
    assert_memory_equal(&cp.ss, &ss.ss, cp.len);
    assert_memory_equal(&cp.ss, &l.ss, cp.len);
    char text[64];
    assert_true(rill_addr_format(&cp, text, sizeof text) > 0);
    const char *prefix = family == AF_INET ? "127.0.0.1:" : "[::1]:";
    assert_memory_equal(text, prefix, strlen(prefix));
    assert_int_equal(rill_stream_peercred(s, NULL, NULL, NULL), RILL_EINVAL); /* TCP */

    rill_stream_ref(s); /* keeps the pointer valid past CLOSE */
    rill_stream_close(s);
    TH_RUN_UNTIL(loop, c.closes == 1 && e.conn_closes == 1, 3000);
    assert_int_equal(rill_stream_write(s, "x", 1, NULL, NULL), RILL_ECLOSED);
    rill_stream_unref(s);
    rill_server_close(e.srv);
    th_loop_free(loop);
    assert_int_equal(c.connects, 1);
    assert_int_equal(c.errors, 0);
    assert_int_equal(th_fd_count(), fds);
}

static void test_connect_echo_ipv4(void **state)
{
    (void)state;
    connect_echo(AF_INET);
}

static void test_connect_echo_ipv6(void **state)
{
    (void)state;
    connect_echo(AF_INET6);
}

/* Bytes written while connecting go out, in order, once the connection is up. */
static void test_writes_before_connect_flushed(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    cli c;
    rill_stream *s =
        cli_watch(rill_tcp_connect(loop, "localhost", srv_port(e.srv), NULL), &c, true);
    size_t big = 300 * 1024;
    char *buf = malloc(big);
    th_fill(buf, big, 7);
    uint64_t want = th_hash(TH_HASH_INIT, buf, big);
    assert_true(rill_stream_write(s, buf, big / 2, on_done, &c) >= 0);
    assert_true(rill_stream_write(s, buf + big / 2, big - big / 2, on_done, &c) >= 0);
    free(buf);
    TH_RUN_UNTIL(loop, c.bytes == big, 5000);
    assert_int_equal(c.hash, want);
    assert_int_equal(c.done_ok, 2);
    assert_int_equal(c.connects, 1);
    rill_stream_close(s);
    rill_server_close(e.srv);
    th_loop_free(loop);
    assert_int_equal(c.connects, 1);
}

/* A timeout the user sets while the stream connects is the one it keeps once connected:
 * connecting must not put the default back over it. */
static void test_timeout_set_while_connecting_kept(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    cli c, d, f;
    rill_stream *s = cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), NULL), &c, true);
    rill_stream *t = cli_watch(rill_tcp_connect(loop, "localhost", srv_port(e.srv), NULL), &d, true);
    rill_stream *u = cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), NULL), &f, true);
    rill_stream_set_timeout(t, 42000);
    rill_stream_set_timeout(u, 0); /* never: the default must not replace it either */
    TH_RUN_UNTIL(loop, c.connects == 1 && d.connects == 1 && f.connects == 1, 5000);
    assert_int_equal(rill_stream_timeout(s), 15000); /* the default, from the connection on */
    assert_int_equal(rill_stream_timeout(t), 42000);
    assert_int_equal(rill_stream_timeout(u), 0);
    rill_stream_close(s);
    rill_stream_close(t);
    rill_stream_close(u);
    rill_server_close(e.srv);
    th_loop_free(loop);
}

static void test_refused(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    uint16_t port;
    int hold = reserve_port(AF_INET, &port);
    cli c, d;
    rill_stream *s = cli_watch(rill_tcp_connect(loop, "127.0.0.1", port, NULL), &c, true);
    assert_int_equal(rill_stream_write(s, "x", 1, on_done, &c), 0);
    TH_RUN_UNTIL(loop, c.closes == 1, 3000);
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.last_err, RILL_ECONNREFUSED);
    assert_int_equal(c.close_err, RILL_ECONNREFUSED);
    assert_int_equal(c.done_err, 1);
    assert_int_equal(c.connects, 0);
    /* Without an ERROR handler the stream just closes, keeping the code. */
    s = rill_stream_ref(cli_watch(rill_tcp_connect(loop, "::1", port, NULL), &d, false));
    TH_RUN_UNTIL(loop, d.closes == 1, 3000);
    assert_int_equal(rill_stream_error(s), RILL_ECONNREFUSED);
    rill_stream_unref(s);
    close(hold);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

static void test_timeout(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    dropper d;
    dropper_open(&d, AF_INET);
    cli c;
    rill_connect_opts o = {.timeout_ms = 300};
    uint64_t t0 = th_now_ms();
    cli_watch(rill_tcp_connect(loop, "127.0.0.1", d.port, &o), &c, true);
    TH_RUN_UNTIL(loop, c.closes == 1, 3000);
    uint64_t took = th_now_ms() - t0;
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.last_err, RILL_ETIMEDOUT);
    assert_true(rill_is_timedout(c.last_err));
    assert_true(took >= 250 && took < 2000);
    dropper_close(&d);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

static void test_unknown_host(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    cli c;
    cli_watch(rill_tcp_connect(loop, "no-such-host.rill-test.invalid", 80, NULL), &c, true);
    TH_RUN_UNTIL(loop, c.closes == 1, 15000);
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.connects, 0);
    /* ".invalid" never resolves; a machine without a resolver says EAI_AGAIN instead. */
    if (c.last_err != RILL_EAI_NONAME && c.last_err != RILL_EAI_AGAIN)
        assert_memory_equal(rill_err_name(c.last_err), "EAI_", 4);
    if (c.last_err == RILL_EAI_NONAME)
        assert_string_equal(rill_err_name(c.last_err), "EAI_NONAME");
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

/* The first address drops SYNs; the second answers 250 ms later, long before the
 * timeout, and the dead attempt is closed. */
static void test_happy_eyeballs_dead_first(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    dropper d;
    dropper_open(&d, AF_INET6);
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    rill_addr addrs[2] = {loop_addr(AF_INET6, d.port), loop_addr(AF_INET, srv_port(e.srv))};
    cli c;
    uint64_t t0 = th_now_ms();
    rill_stream *s = cli_watch(rill__sock_connect(loop, addrs, 2, NULL, NULL), &c, true);
    assert_int_equal(rill_stream_write(s, "he", 2, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, c.connects == 1, 5000);
    uint64_t took = th_now_ms() - t0;
    assert_true(took >= 200 && took < 1500);
    assert_int_equal(rill_stream_family(s), AF_INET);
    TH_RUN_UNTIL(loop, c.bytes == 2, 3000);
    rill_stream_close(s);
    rill_server_close(e.srv);
    th_loop_free(loop);
    dropper_close(&d);
    assert_int_equal(c.errors, 0);
    assert_int_equal(th_fd_count(), fds);
}

/* A refused first address starts the next at once: no 250 ms wait. */
static void test_happy_eyeballs_fast_failure(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    uint16_t port;
    int hold = reserve_port(AF_INET6, &port);
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    rill_addr addrs[3] = {loop_addr(AF_INET6, port), loop_addr(AF_INET, port),
                          loop_addr(AF_INET, srv_port(e.srv))};
    cli c;
    uint64_t t0 = th_now_ms();
    rill_stream *s = cli_watch(rill__sock_connect(loop, addrs, 3, NULL, NULL), &c, true);
    TH_RUN_UNTIL(loop, c.connects == 1, 3000);
    /* Waiting for the stagger instead would take two delays (500 ms) to reach the third
     * address; anything well under that proves the failures moved on at once, with room
     * for a loaded machine. */
    assert_true(th_now_ms() - t0 < 2 * 250 - 50);
    rill_stream_close(s);
    rill_server_close(e.srv);
    th_loop_free(loop);
    close(hold);
    /* Every address refused: the last failure is the error. */
    loop = th_loop_new();
    hold = reserve_port(AF_INET, &port);
    rill_addr dead[2] = {loop_addr(AF_INET, port), loop_addr(AF_INET6, port)};
    cli_watch(rill__sock_connect(loop, dead, 2, NULL, NULL), &c, true);
    TH_RUN_UNTIL(loop, c.closes == 1, 3000);
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.last_err, RILL_ECONNREFUSED);
    th_loop_free(loop);
    close(hold);
}

static void test_source_bind(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    uint16_t sport;
    close(reserve_port(AF_INET, &sport)); /* free now; very likely still free below */
    rill_connect_opts o = {.source_host = "127.0.0.1", .source_port = sport};
    cli c;
    rill_stream *s = cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), &o), &c, true);
    TH_RUN_UNTIL(loop, e.conns == 1 && c.connects == 1, 3000);
    rill_addr a;
    assert_int_equal(rill_stream_peername(e.last, &a), 0);
    assert_int_equal(addr_port(&a), sport);
    assert_int_equal(rill_stream_sockname(s, &a), 0);
    assert_int_equal(addr_port(&a), sport);
    rill_stream_close(s);
    /* A source port alone binds the wildcard address. */
    close(reserve_port(AF_INET, &sport));
    rill_connect_opts p = {.source_port = sport};
    cli d;
    s = cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), &p), &d, true);
    TH_RUN_UNTIL(loop, e.conns == 2 && d.connects == 1, 3000);
    assert_int_equal(rill_stream_peername(e.last, &a), 0);
    assert_int_equal(addr_port(&a), sport);
    rill_stream_close(s);
    /* A source of the other family, or not numeric: bad input. */
    rill_connect_opts q = {.source_host = "::1"};
    errno = 0;
    assert_null(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), &q));
    assert_int_equal(errno, EINVAL);
    q.source_host = "localhost";
    assert_null(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), &q));
    assert_int_equal(errno, EINVAL);
    rill_server_close(e.srv);
    th_loop_free(loop);
}

static void test_nodelay_keepalive(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    echo_srv e;
    echo_start(loop, "::1", NULL, &e);
    rill_connect_opts o = {.nodelay = true, .keepalive = true};
    cli c, d;
    rill_stream *s = cli_watch(rill_tcp_connect(loop, "::1", srv_port(e.srv), &o), &c, true);
    rill_stream *t = cli_watch(rill_tcp_connect(loop, "::1", srv_port(e.srv), NULL), &d, true);
    TH_RUN_UNTIL(loop, c.connects == 1 && d.connects == 1, 3000);
    assert_int_equal(sockopt(s, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(sockopt(s, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(sockopt(t, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(sockopt(t, SOL_SOCKET, SO_KEEPALIVE), 0);
    int fl = fcntl(rill_stream_fd(s), F_GETFL), fdf = fcntl(rill_stream_fd(s), F_GETFD);
    assert_true(fl & O_NONBLOCK);
    assert_true(fdf & FD_CLOEXEC);
    rill_stream_close(s);
    rill_stream_close(t);
    rill_server_close(e.srv);
    th_loop_free(loop);
}

/* The read low water mark: a receiver that records its READs and EOF, and a peer that
 * is a plain blocking socket, so the test decides exactly what arrives and when. */
typedef struct {
    rill_server *srv;
    rill_stream *conn;
    size_t lowat, total, first;
    int reads, eofs, set_rc;
} lowat_rx;

static void lowat_read(rill_stream *s, const rill_event *ev, void *arg)
{
    lowat_rx *r = arg;
    (void)s;
    if (r->reads++ == 0)
        r->first = ev->len;
    r->total += ev->len;
}

static void lowat_eof(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    ((lowat_rx *)arg)->eofs++;
    rill_stream_close(s);
}

static void lowat_conn(rill_server *srv, rill_server_event_type type, rill_stream *conn, int err,
                       void *arg)
{
    lowat_rx *r = arg;
    (void)srv;
    (void)type;
    (void)err;
    r->conn = rill_stream_ref(conn);
    r->set_rc = rill_stream_set_read_lowat(conn, r->lowat);
    rill_stream_on(conn, RILL_EV_READ, lowat_read, r);
    rill_stream_on(conn, RILL_EV_EOF, lowat_eof, r);
    rill_stream_start(conn);
}

/* Runs the loop for ms milliseconds (bounded: a tick timer ends every wait). */
static void run_for(rill_loop *loop, int ms)
{
    uint64_t end = th_now_ms() + (uint64_t)ms;
    TH_RUN_UNTIL(loop, th_now_ms() >= end, ms + 3000);
}

static void send_all(int fd, size_t n)
{
    char buf[8192];
    memset(buf, 'w', sizeof buf);
    while (n) {
        ssize_t w = send(fd, buf, n < sizeof buf ? n : sizeof buf, MSG_NOSIGNAL);
        assert_true(w > 0);
        n -= (size_t)w;
    }
}

/* Bytes under the mark stay in the kernel (no READ, and the stream polls unreadable); the
 * byte that reaches it wakes the stream and one read takes them all; 0 restores the
 * default; EOF still wakes a stream holding fewer bytes than its mark. */
static void read_lowat_on(int family)
{
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    lowat_rx r = {.lowat = 8192};
    r.srv = rill_tcp_listen(loop, family == AF_INET ? "127.0.0.1" : "::1", 0, NULL);
    assert_non_null(r.srv);
    assert_non_null(rill_server_on(r.srv, RILL_SEV_CONNECTION, lowat_conn, &r));
    rill_addr a = loop_addr(family, srv_port(r.srv));
    int peer = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(peer >= 0);
    assert_int_equal(connect(peer, (struct sockaddr *)&a.ss, a.len), 0);
    TH_RUN_UNTIL(loop, r.conn != NULL, 3000);
    assert_int_equal(r.set_rc, 0);
    assert_int_equal(sockopt(r.conn, SOL_SOCKET, SO_RCVLOWAT), 8192);

    send_all(peer, 100);
    run_for(loop, 150); /* without the mark, the READ comes within a millisecond */
    assert_int_equal(r.reads, 0);
    assert_false(rill_stream_is_readable(r.conn));
    send_all(peer, 8092);
    TH_RUN_UNTIL(loop, r.total == 8192, 3000);
    assert_int_equal(r.reads, 1);
    assert_int_equal(r.first, 8192);

    assert_int_equal(rill_stream_set_read_lowat(r.conn, 0), 0); /* back to any byte */
    assert_int_equal(sockopt(r.conn, SOL_SOCKET, SO_RCVLOWAT), 1);
    send_all(peer, 10);
    TH_RUN_UNTIL(loop, r.total == 8202, 3000);

    assert_int_equal(rill_stream_set_read_lowat(r.conn, 8192), 0);
    send_all(peer, 50);
    run_for(loop, 100);
    assert_int_equal(r.total, 8202);
    assert_int_equal(shutdown(peer, SHUT_WR), 0); /* EOF wakes it below the mark */
    TH_RUN_UNTIL(loop, r.eofs == 1, 3000);
    assert_int_equal(r.total, 8252);
    assert_int_equal(rill_stream_set_read_lowat(r.conn, 1), RILL_ECLOSED);
    rill_stream_unref(r.conn);
    close(peer);
    rill_server_close(r.srv);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

static void test_read_lowat_ipv4(void **state)
{
    (void)state;
    read_lowat_on(AF_INET);
}

static void test_read_lowat_ipv6(void **state)
{
    (void)state;
    read_lowat_on(AF_INET6);
}

/* Only TCP streams take a mark: elsewhere the kernel would wake for every byte anyway. */
static void test_read_lowat_bad_input(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    assert_int_equal(rill_stream_set_read_lowat(NULL, 1), RILL_EINVAL);
    rill_stream *pair[2];
    assert_int_equal(rill_stream_pair(loop, pair, 0), 0); /* Unix sockets */
    assert_int_equal(rill_stream_set_read_lowat(pair[0], 4096), RILL_ENOTSUP);
    assert_int_equal(sockopt(pair[0], SOL_SOCKET, SO_RCVLOWAT), 1);
    rill_stream_close(pair[0]);
    rill_stream_close(pair[1]);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    rill_stream *rd = rill_fd_open(loop, p[0], 0);
    assert_non_null(rd);
    assert_int_equal(rill_stream_set_read_lowat(rd, 4096), RILL_ENOTSUP);
    rill_stream_close(rd);
    close(p[1]);
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* an INET socket, not TCP */
    assert_true(u >= 0);
    rill_stream *us = rill_fd_open(loop, u, 0);
    assert_non_null(us);
    assert_int_equal(rill_stream_set_read_lowat(us, 4096), RILL_ENOTSUP);
    rill_stream_close(us);

    dropper d; /* a connect that never completes */
    dropper_open(&d, AF_INET);
    cli c;
    rill_stream *s = cli_watch(rill_tcp_connect(loop, "127.0.0.1", d.port, NULL), &c, true);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(rill_stream_set_read_lowat(s, 4096), RILL_ENOTCONN);
    rill_stream_close(s);

    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    s = cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), NULL), &c, true);
    TH_RUN_UNTIL(loop, c.connects == 1, 3000);
    if ((size_t)-1 > (size_t)INT_MAX)
        assert_int_equal(rill_stream_set_read_lowat(s, (size_t)INT_MAX + 1), RILL_EINVAL);
    assert_int_equal(sockopt(s, SOL_SOCKET, SO_RCVLOWAT), 1);
    assert_int_equal(rill_stream_set_read_lowat(s, 1024), 0); /* from CONNECT on: fine */
    assert_int_equal(sockopt(s, SOL_SOCKET, SO_RCVLOWAT), 1024);
    rill_stream_close(s);
    rill_server_close(e.srv);
    th_loop_free(loop);
    dropper_close(&d);
    assert_int_equal(th_fd_count(), fds);
}

static void on_connect_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    (void)arg;
    rill_stream_close(s);
}

/* Closing while resolving, while connecting, or inside CONNECT: CLOSE once, queued writes
 * cancelled, nothing leaked (the pool job holds its own reference). */
static void test_close_mid_connect(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    dropper d;
    dropper_open(&d, AF_INET);
    cli a, b, c, x;
    rill_stream *s1 = cli_watch(rill_tcp_connect(loop, "localhost", 9, NULL), &a, true);
    rill_stream *s2 = cli_watch(rill_tcp_connect(loop, "127.0.0.1", d.port, NULL), &b, true);
    rill_stream *s3 = cli_watch(rill_tcp_connect(loop, "127.0.0.1", d.port, NULL), &c, true);
    assert_int_equal(rill_stream_write(s2, "x", 1, on_done, &b), 0);
    rill_stream_close(s1); /* before the resolution even started */
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    rill_stream_close(s2); /* attempt in flight */
    rill_stream_close(s3);
    TH_RUN_UNTIL(loop, a.closes && b.closes && c.closes, 3000);
    assert_int_equal(b.done_err, 1);
    assert_int_equal(b.done_status, RILL_ECANCELED);
    assert_int_equal(a.errors + b.errors + c.errors, 0);
    assert_int_equal(a.connects + b.connects + c.connects, 0);
    /* Closed inside CONNECT, and closed while the name resolves on the pool. */
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    rill_stream *s4 =
        cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), NULL), &x, true);
    rill_stream_on(s4, RILL_EV_CONNECT, on_connect_close, NULL);
    TH_RUN_UNTIL(loop, x.closes == 1, 3000);
    assert_int_equal(x.connects, 1);
    cli y;
    rill_stream *s5 =
        cli_watch(rill_tcp_connect(loop, "localhost", srv_port(e.srv), NULL), &y, true);
    rill_loop_run(loop, RILL_RUN_NOWAIT); /* submits the lookup; its answer comes later */
    rill_stream_close(s5);
    TH_RUN_UNTIL(loop, y.closes == 1, 3000);
    assert_int_equal(y.connects + y.errors, 0);
    rill_server_close(e.srv);
    th_loop_free(loop);
    dropper_close(&d);
    assert_int_equal(th_fd_count(), fds);
}

/* ---- listening ---------------------------------------------------------------------------- */

static void test_listen_any_and_ipv6_only(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    echo_srv e, f;
    echo_start(loop, NULL, NULL, &e); /* "::", dual-stack */
    rill_listen_opts o = {.ipv6_only = true};
    echo_start(loop, NULL, &o, &f);
    cli c[4];
    cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(e.srv), NULL), &c[0], true);
    cli_watch(rill_tcp_connect(loop, "::1", srv_port(e.srv), NULL), &c[1], true);
    cli_watch(rill_tcp_connect(loop, "127.0.0.1", srv_port(f.srv), NULL), &c[2], true);
    cli_watch(rill_tcp_connect(loop, "::1", srv_port(f.srv), NULL), &c[3], true);
    TH_RUN_UNTIL(loop, c[0].connects && c[1].connects && c[3].connects && c[2].closes, 3000);
    assert_int_equal(c[2].last_err, RILL_ECONNREFUSED); /* IPv4 is not served */
    TH_RUN_UNTIL(loop, e.conns == 2 && f.conns == 1, 3000);
    rill_server_close(e.srv);
    rill_server_close(f.srv);
    TH_RUN_UNTIL(loop, c[0].closes && c[1].closes && c[3].closes, 3000);
    th_loop_free(loop);
}

typedef struct {
    uint16_t port;
    atomic_int ready, accepted;
    atomic_bool stop;
} rp_side;

static void rp_conn(rill_server *srv, rill_server_event_type t, rill_stream *conn, int err,
                    void *arg)
{
    (void)srv;
    (void)t;
    (void)err;
    atomic_fetch_add(&((rp_side *)arg)->accepted, 1);
    rill_stream_close(conn);
}

static void rp_tick(rill_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

/* One loop per thread, each with its own reuseport listener on the shared port. */
static void *rp_thread(void *arg)
{
    rp_side *r = arg;
    rill_loop *loop = rill_loop_new(NULL);
    rill_listen_opts o = {.reuseport = true};
    rill_server *srv = loop ? rill_tcp_listen(loop, "127.0.0.1", r->port, &o) : NULL;
    if (!srv) {
        atomic_store(&r->ready, -1);
        return NULL;
    }
    rill_addr a;
    rill_server_sockname(srv, &a);
    r->port = addr_port(&a);
    rill_server_on(srv, RILL_SEV_CONNECTION, rp_conn, r);
    rill_timer *tick = rill_timer_start(loop, 5, 5, rp_tick, NULL);
    atomic_store(&r->ready, 1);
    uint64_t end = th_now_ms() + 10000;
    while (!atomic_load(&r->stop) && th_now_ms() < end)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(tick);
    rill_server_close(srv);
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    rill_loop_free(loop);
    return NULL;
}

static void rp_wait_ready(rp_side *r)
{
    uint64_t end = th_now_ms() + 3000;
    while (atomic_load(&r->ready) == 0 && th_now_ms() < end)
        usleep(1000);
    assert_int_equal(atomic_load(&r->ready), 1);
}

static void test_reuseport_two_loops(void **state)
{
    (void)state;
    rp_side a = {0}, b = {0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, rp_thread, &a);
    rp_wait_ready(&a);
    b.port = a.port;
    pthread_create(&tb, NULL, rp_thread, &b);
    rp_wait_ready(&b);
    rill_addr addr = loop_addr(AF_INET, a.port);
    enum { N = 48 };
    int fds[N];
    for (int i = 0; i < N; i++) { /* the kernel spreads them by a hash of the 4-tuple */
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&addr.ss, addr.len), 0);
    }
    uint64_t end = th_now_ms() + 5000;
    while (atomic_load(&a.accepted) + atomic_load(&b.accepted) < N && th_now_ms() < end)
        usleep(1000);
    int na = atomic_load(&a.accepted), nb = atomic_load(&b.accepted);
    atomic_store(&a.stop, true);
    atomic_store(&b.stop, true);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    assert_int_equal(na + nb, N);
    assert_true(na > 0);
    assert_true(nb > 0);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    errno = 0;
    assert_null(rill_tcp_connect(loop, NULL, 80, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(rill_tcp_connect(loop, "", 80, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(rill_tcp_connect(NULL, "127.0.0.1", 80, NULL));
    assert_int_equal(errno, EINVAL);
    rill_connect_opts ipc = {.ipc = true}; /* handles travel over Unix sockets only */
    errno = 0;
    assert_null(rill_tcp_connect(loop, "127.0.0.1", 80, &ipc));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(rill_tcp_listen(loop, "", 0, NULL));
    assert_int_equal(errno, EINVAL);
    rill_listen_opts neg = {.backlog = -1};
    errno = 0;
    assert_null(rill_tcp_listen(loop, "127.0.0.1", 0, &neg));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(rill_tcp_listen(loop, "no-such-host.rill-test.invalid", 0, NULL));
    assert_memory_equal(rill_err_name(-errno), "EAI_", 4);
    /* A port in use, without reuseport. */
    echo_srv e;
    echo_start(loop, "127.0.0.1", NULL, &e);
    errno = 0;
    assert_null(rill_tcp_listen(loop, "127.0.0.1", srv_port(e.srv), NULL));
    assert_int_equal(errno, EADDRINUSE);
    /* The wrong family: an IPv4 listener is not there on ::1. */
    cli c;
    rill_stream *s = rill_stream_ref(
        cli_watch(rill_tcp_connect(loop, "[::1]", srv_port(e.srv), NULL), &c, true));
    TH_RUN_UNTIL(loop, c.closes == 1, 3000);
    assert_int_equal(c.last_err, RILL_ECONNREFUSED);
    assert_int_equal(rill_stream_write(s, "x", 1, NULL, NULL), RILL_ECLOSED);
    rill_stream_unref(s);
    rill_server_close(e.srv);
    rill_server_close(e.srv); /* idempotent */
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_format),
        cmocka_unit_test(test_interleave),
        cmocka_unit_test(test_connect_echo_ipv4),
        cmocka_unit_test(test_connect_echo_ipv6),
        cmocka_unit_test(test_writes_before_connect_flushed),
        cmocka_unit_test(test_timeout_set_while_connecting_kept),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_unknown_host),
        cmocka_unit_test(test_happy_eyeballs_dead_first),
        cmocka_unit_test(test_happy_eyeballs_fast_failure),
        cmocka_unit_test(test_source_bind),
        cmocka_unit_test(test_nodelay_keepalive),
        cmocka_unit_test(test_read_lowat_ipv4),
        cmocka_unit_test(test_read_lowat_ipv6),
        cmocka_unit_test(test_read_lowat_bad_input),
        cmocka_unit_test(test_close_mid_connect),
        cmocka_unit_test(test_listen_any_and_ipv6_only),
        cmocka_unit_test(test_reuseport_two_loops),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
