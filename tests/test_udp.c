/* tests/test_udp.c - UDP endpoints: echo on 127.0.0.1 and ::1, send callbacks, truncation,
 * queueing while the socket would block, broadcast, multicast membership, close rules and
 * bad input. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* udp.c's test hook: receive at most max bytes per datagram (no real datagram is larger
 * than the loop's 64 KiB buffer, so truncation cannot be seen otherwise). */
void rill__udp_set_recv_max(rill_udp *u, size_t max);
/* udp.c's test hooks: the next n sends see EAGAIN (loopback never makes a UDP send wait),
 * and how many sends wait in the queue. */
void rill__udp_fake_eagain(rill_udp *u, unsigned n);
size_t rill__udp_queued(const rill_udp *u);

typedef struct {
    int datagrams, sends, send_errors, last_status, last_err;
    size_t bytes, last_len;
    uint64_t hash;
    rill_addr last_from;
    char last[256];
    bool echo;    /* send every datagram back to its sender */
    bool in_call; /* set around rill_udp_send: callbacks must not run inside it */
} peer;

static void on_sent(rill_udp *u, int status, void *arg)
{
    (void)u;
    peer *p = arg;
    assert_false(p->in_call);
    p->sends++;
    p->last_status = status;
    if (status < 0)
        p->send_errors++;
}

static void on_dgram(rill_udp *u, const char *data, size_t len, const rill_addr *from, int err,
                     void *arg)
{
    peer *p = arg;
    p->datagrams++;
    p->bytes += len;
    p->last_len = len;
    p->last_err = err;
    p->hash = th_hash(p->hash, data, len);
    memcpy(p->last, data, len < sizeof p->last ? len : sizeof p->last);
    if (from)
        p->last_from = *from;
    if (p->echo)
        assert_int_equal(rill_udp_send(u, data, len, from, on_sent, p), 0);
}

static uint16_t port_of(const rill_addr *a)
{
    return ntohs(a->ss.ss_family == AF_INET ? ((const struct sockaddr_in *)&a->ss)->sin_port
                                            : ((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* A numeric address (this file does not depend on addr.c's parser). */
static int addr_of(const char *ip, uint16_t port, rill_addr *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        out->len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        out->len = sizeof *a6;
        return 0;
    }
    return -1;
}

static bool same_addr(const rill_addr *a, const rill_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || port_of(a) != port_of(b))
        return false;
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) == 0;
}

static rill_udp *bound(rill_loop *loop, const char *host, rill_addr *addr)
{
    rill_udp *u = rill_udp_new(loop);
    assert_non_null(u);
    assert_int_equal(rill_udp_bind(u, host, 0, 0), 0);
    assert_int_equal(rill_udp_sockname(u, addr), 0);
    assert_true(port_of(addr) != 0); /* port 0 picked one */
    return u;
}

static void echo_on(const char *host, int family)
{
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_addr saddr, caddr;
    peer srv = {.echo = true, .hash = TH_HASH_INIT}, cli = {.hash = TH_HASH_INIT};
    rill_udp *s = bound(loop, host, &saddr), *c = bound(loop, host, &caddr);
    assert_int_equal(saddr.ss.ss_family, family);
    assert_int_equal(rill_udp_start(s, on_dgram, &srv), 0);
    assert_int_equal(rill_udp_start(c, on_dgram, &cli), 0);

    enum { N = 20 };
    uint64_t sent_hash = TH_HASH_INIT;
    static char buf[N * 3000];
    th_fill(buf, sizeof buf, (uint64_t)family);
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)i * 3000 / N + 1;
        sent_hash = th_hash(sent_hash, buf + i * 3000, len);
        cli.in_call = true;
        assert_int_equal(rill_udp_send(c, buf + i * 3000, len, &saddr, on_sent, &cli), 0);
        cli.in_call = false;
        assert_int_equal(cli.sends, 0); /* completions are deferred */
    }
    TH_RUN_UNTIL(loop, cli.datagrams == N && srv.sends == N && cli.sends == N, 5000);
    assert_int_equal(cli.send_errors + srv.send_errors, 0);
    assert_int_equal(srv.datagrams, N);
    assert_int_equal(srv.hash, sent_hash); /* loopback keeps the order */
    assert_int_equal(cli.hash, sent_hash);
    assert_int_equal(port_of(&srv.last_from), port_of(&caddr)); /* the sender's address */
    assert_int_equal(port_of(&cli.last_from), port_of(&saddr));
    assert_true(same_addr(&cli.last_from, &saddr));

    /* an empty datagram is a datagram */
    assert_int_equal(rill_udp_send(c, "", 0, &saddr, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, cli.datagrams == N + 1, 5000);
    assert_int_equal(cli.last_len, 0);

    assert_int_equal(rill_udp_stop(s), 0);
    assert_int_equal(rill_udp_stop(s), 0); /* idempotent */
    rill_udp_close(s);
    rill_udp_close(c);
    rill_udp_close(c); /* twice is fine */
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

static void test_echo_ipv4(void **state)
{
    (void)state;
    echo_on("127.0.0.1", AF_INET);
}

static void test_echo_ipv6(void **state)
{
    (void)state;
    echo_on("::1", AF_INET6);
}

/* A datagram longer than the receive buffer arrives cut and flagged, never silently. */
static void test_truncation_flagged(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_addr saddr, caddr;
    peer srv = {0};
    rill_udp *s = bound(loop, "127.0.0.1", &saddr), *c = bound(loop, "127.0.0.1", &caddr);
    rill__udp_set_recv_max(s, 100);
    assert_int_equal(rill_udp_start(s, on_dgram, &srv), 0);
    char big[300];
    memset(big, 'x', sizeof big);
    assert_int_equal(rill_udp_send(c, big, sizeof big, &saddr, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, srv.datagrams == 1, 5000);
    assert_int_equal(srv.last_len, 100);
    assert_int_equal(srv.last_err, RILL_UDP_TRUNCATED);
    assert_int_equal(srv.last_err, RILL_EMSGSIZE);
    assert_int_equal(rill_udp_send(c, big, 100, &saddr, NULL, NULL), 0); /* exactly fits */
    TH_RUN_UNTIL(loop, srv.datagrams == 2, 5000);
    assert_int_equal(srv.last_len, 100);
    assert_int_equal(srv.last_err, 0);
    rill_udp_close(s);
    rill_udp_close(c);
    th_loop_free(loop);
}

/* A socket that would block queues copies of the datagrams and sends them, in order, when it
 * becomes writable; every callback runs once, in order. */
static int order_next;
static void on_sent_ordered(rill_udp *u, int status, void *arg)
{
    (void)u;
    assert_int_equal(status, 0);
    assert_int_equal((int)(intptr_t)arg, order_next);
    order_next++;
}

static void test_queue_while_blocked(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_addr saddr, caddr;
    rill_udp *s = bound(loop, "127.0.0.1", &saddr), *c = bound(loop, "127.0.0.1", &caddr);
    peer srv = {.hash = TH_HASH_INIT};
    assert_int_equal(rill_udp_start(s, on_dgram, &srv), 0);
    enum { N = 50 };
    uint64_t sent_hash = TH_HASH_INIT;
    order_next = 0;
    rill__udp_fake_eagain(c, 3); /* the 1st send waits: the 2nd and later queue behind it */
    for (int i = 0; i < N; i++) {
        char d[4] = {'d', (char)i, 0, 0};
        sent_hash = th_hash(sent_hash, d, sizeof d);
        assert_int_equal(
            rill_udp_send(c, d, sizeof d, &saddr, on_sent_ordered, (void *)(intptr_t)i), 0);
        assert_int_equal(rill__udp_queued(c), (size_t)i + 1); /* copied: d may change */
    }
    TH_RUN_UNTIL(loop, order_next == N && srv.datagrams == N, 5000);
    assert_int_equal(rill__udp_queued(c), 0);
    assert_int_equal(srv.hash, sent_hash); /* in order, intact */
    rill_udp_close(s);
    rill_udp_close(c);
    th_loop_free(loop);
}

/* Sends to nowhere valid report their error in the callback, not from the call. */
static void test_send_errors_in_callback(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_addr caddr, to;
    peer cli = {0};
    rill_udp *c = bound(loop, "127.0.0.1", &caddr);
    assert_int_equal(addr_of("127.0.0.1", 0, &to), 0); /* port 0: not a destination */
    assert_int_equal(rill_udp_send(c, "x", 1, &to, on_sent, &cli), 0);
    TH_RUN_UNTIL(loop, cli.sends == 1, 5000);
    assert_int_equal(cli.last_status, RILL_EINVAL);
    /* broadcast needs the flag */
    assert_int_equal(addr_of("127.255.255.255", 9, &to), 0);
    assert_int_equal(rill_udp_send(c, "x", 1, &to, on_sent, &cli), 0);
    TH_RUN_UNTIL(loop, cli.sends == 2, 5000);
    assert_int_equal(cli.last_status, RILL_EACCES);
    rill_udp *b = rill_udp_new(loop);
    assert_non_null(b);
    assert_int_equal(rill_udp_bind(b, "127.0.0.1", 0, RILL_UDP_BROADCAST | RILL_UDP_REUSEADDR), 0);
    assert_int_equal(rill_udp_send(b, "x", 1, &to, on_sent, &cli), 0);
    TH_RUN_UNTIL(loop, cli.sends == 3, 5000);
    assert_int_equal(cli.last_status, 0);
    /* an IPv6 destination from an IPv4 socket */
    assert_int_equal(addr_of("::1", 9, &to), 0);
    assert_int_equal(rill_udp_send(c, "x", 1, &to, on_sent, &cli), 0);
    TH_RUN_UNTIL(loop, cli.sends == 4, 5000);
    assert_true(cli.last_status < 0);
    /* with no callback to report it, the failure is the return value */
    assert_int_equal(addr_of("127.255.255.255", 9, &to), 0);
    assert_int_equal(rill_udp_send(c, "x", 1, &to, NULL, NULL), RILL_EACCES);
    rill_udp_close(b);
    rill_udp_close(c);
    th_loop_free(loop);
}

/* An endpoint that was never bound picks its family and port on its first send, and can
 * then receive the replies; a dual-stack one (host NULL) talks to IPv4 peers. */
static void test_unbound_send_and_dual_stack(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_addr saddr, any;
    peer srv = {.echo = true}, cli = {0};
    rill_udp *s = bound(loop, "127.0.0.1", &saddr);
    assert_int_equal(rill_udp_start(s, on_dgram, &srv), 0);
    rill_udp *c = rill_udp_new(loop);
    assert_non_null(c);
    assert_int_equal(rill_udp_sockname(c, &any), RILL_EINVAL);
    assert_int_equal(rill_udp_start(c, on_dgram, &cli), RILL_EINVAL); /* nothing to read */
    assert_int_equal(rill_udp_send(c, "hello", 5, &saddr, on_sent, &cli), 0);
    assert_int_equal(rill_udp_start(c, on_dgram, &cli), 0);
    assert_int_equal(rill_udp_start(c, on_dgram, &cli), RILL_EALREADY);
    TH_RUN_UNTIL(loop, cli.datagrams == 1 && cli.sends == 1, 5000);
    assert_memory_equal(cli.last, "hello", 5);
    assert_int_equal(rill_udp_bind(c, "127.0.0.1", 0, 0), RILL_EINVAL); /* already has one */

    rill_udp *d = rill_udp_new(loop);
    assert_int_equal(rill_udp_bind(d, NULL, 0, 0), 0);
    assert_int_equal(rill_udp_sockname(d, &any), 0);
    peer dp = {0};
    assert_int_equal(rill_udp_start(d, on_dgram, &dp), 0);
    assert_int_equal(rill_udp_send(d, "v4", 2, &saddr, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, dp.datagrams == 1, 5000);
    assert_memory_equal(dp.last, "v4", 2);
    rill_udp_close(d);
    rill_udp_close(s);
    rill_udp_close(c);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

/* Join and leave on loopback. */
static void test_multicast_membership(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_udp *u = rill_udp_new(loop);
    assert_non_null(u);
    assert_int_equal(rill_udp_set_membership(u, "239.255.0.1", NULL, true),
                     RILL_EINVAL); /* unbound */
    assert_int_equal(rill_udp_bind(u, "0.0.0.0", 0, RILL_UDP_REUSEADDR), 0);
    assert_int_equal(rill_udp_set_membership(u, "239.255.0.1", "127.0.0.1", true), 0);
    assert_int_equal(rill_udp_set_membership(u, "239.255.0.1", "127.0.0.1", false), 0);
    assert_int_equal(rill_udp_set_membership(u, "239.255.0.1", "127.0.0.1", false),
                     RILL_EADDRNOTAVAIL);
    int rc = rill_udp_set_membership(u, "239.255.0.2", NULL, true);
    /* with no interface named, the kernel picks one by route: a machine without a
     * multicast or default route has none to give (ENODEV); anything else is a failure */
    assert_true(rc == 0 || rc == RILL_ENODEV);
    assert_int_equal(rill_udp_set_membership(u, "10.0.0.1", NULL, true), RILL_EINVAL); /* unicast */
    assert_int_equal(rill_udp_set_membership(u, "nonsense", NULL, true), RILL_EINVAL);
    assert_int_equal(rill_udp_set_membership(u, "239.255.0.1", "not-an-ip", true), RILL_EINVAL);
    rill_udp_close(u);

    rill_udp *v6 = rill_udp_new(loop);
    assert_int_equal(rill_udp_bind(v6, "::", 0, RILL_UDP_IPV6ONLY), 0);
    assert_int_equal(rill_udp_set_membership(v6, "ff02::1:3", "lo", true), 0);
    assert_int_equal(rill_udp_set_membership(v6, "ff02::1:3", "lo", false), 0);
    assert_int_equal(rill_udp_set_membership(v6, "ff02::1:3", "no-such-if0", true), RILL_ENODEV);
    assert_int_equal(rill_udp_set_membership(v6, "::1", "lo", true), RILL_EINVAL);
    rill_udp_close(v6);
    th_loop_free(loop);
}

/* Closing from inside a callback, sends queued at close, and use after close. */
static void close_in_dgram(rill_udp *u, const char *data, size_t len, const rill_addr *from,
                           int err, void *arg)
{
    on_dgram(u, data, len, from, err, arg);
    rill_udp_close(u);
    assert_int_equal(rill_udp_send(u, "x", 1, from, NULL, NULL), RILL_ECLOSED);
}

static void test_close_rules(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    rill_addr saddr, caddr;
    peer srv = {0}, cli = {0};
    rill_udp *s = bound(loop, "127.0.0.1", &saddr), *c = bound(loop, "127.0.0.1", &caddr);
    assert_int_equal(rill_udp_start(s, close_in_dgram, &srv), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rill_udp_send(c, "abc", 3, &saddr, on_sent, &cli), 0);
    TH_RUN_UNTIL(loop, srv.datagrams >= 1 && cli.sends == 5, 5000);
    for (int i = 0; i < 5; i++) /* more of them wait in the closed socket: never delivered */
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(srv.datagrams, 1);

    /* the callback of a send made just before close still runs, once */
    cli.sends = 0;
    assert_int_equal(rill_udp_send(c, "abc", 3, &saddr, on_sent, &cli), 0);
    rill_udp_close(c);
    assert_int_equal(rill_udp_send(c, "abc", 3, &saddr, on_sent, &cli), RILL_ECLOSED);
    assert_int_equal(rill_udp_bind(c, "127.0.0.1", 0, 0), RILL_ECLOSED);
    assert_int_equal(rill_udp_start(c, on_dgram, &cli), RILL_ECLOSED);
    assert_int_equal(rill_udp_stop(c), RILL_ECLOSED);
    TH_RUN_UNTIL(loop, cli.sends == 1, 5000);
    assert_true(cli.last_status == 0 || cli.last_status == RILL_ECANCELED);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

static void test_bad_input(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    errno = 0;
    assert_null(rill_udp_new(NULL));
    assert_int_equal(errno, EINVAL);
    rill_udp *u = rill_udp_new(loop);
    assert_non_null(u);
    assert_int_equal(rill_udp_bind(u, "127.0.0.1", 0, 0x80), RILL_EINVAL);
    assert_int_equal(rill_udp_bind(u, "localhost", 0, 0), RILL_EAI_NONAME); /* numeric only */
    assert_int_equal(rill_udp_bind(u, "1.2.3.4.5", 0, 0), RILL_EAI_NONAME);
    assert_int_equal(rill_udp_bind(u, "192.0.2.1", 0, 0), RILL_EADDRNOTAVAIL); /* not ours */
    assert_int_equal(rill_udp_bind(NULL, "127.0.0.1", 0, 0), RILL_EINVAL);
    rill_addr a;
    assert_int_equal(addr_of("127.0.0.1", 9, &a), 0);
    assert_int_equal(rill_udp_send(u, NULL, 3, &a, NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_udp_send(u, "x", 1, NULL, NULL, NULL), RILL_EINVAL);
    rill_addr unix_addr = {.len = sizeof(sa_family_t)};
    unix_addr.ss.ss_family = AF_UNIX;
    assert_int_equal(rill_udp_send(u, "x", 1, &unix_addr, NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_udp_start(u, NULL, NULL), RILL_EINVAL);
    assert_int_equal(rill_udp_sockname(u, NULL), RILL_EINVAL);
    assert_int_equal(rill_udp_set_membership(NULL, "239.1.1.1", NULL, true), RILL_EINVAL);
    /* the port taken by another socket */
    rill_addr taken;
    rill_udp *v = bound(loop, "127.0.0.1", &taken);
    assert_int_equal(rill_udp_bind(u, "127.0.0.1", port_of(&taken), 0), RILL_EADDRINUSE);
    assert_int_equal(rill_udp_bind(u, "127.0.0.1", 0, 0), 0); /* a failed bind left it unbound */
    rill_udp_close(v);
    rill_udp_close(u);
    rill_udp_close(NULL);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_ipv4),
        cmocka_unit_test(test_echo_ipv6),
        cmocka_unit_test(test_truncation_flagged),
        cmocka_unit_test(test_queue_while_blocked),
        cmocka_unit_test(test_send_errors_in_callback),
        cmocka_unit_test(test_unbound_send_and_dual_stack),
        cmocka_unit_test(test_multicast_membership),
        cmocka_unit_test(test_close_rules),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
