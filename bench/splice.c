/* bench/splice.c - throughput of a TCP relay on loopback: the same bytes sent directly
 * (no relay), through a rill splice (zero-copy and forced copy), and through socat doing
 * the same relay (its default 8 KiB buffer, and -b 256 KiB).  Best of 3 runs per case;
 * one line per case with MB/s and the ratio to direct.
 *
 *   bench/splice [MiB per run [case]]    (default 1024; case: a part of a name below)
 *
 * A sender thread connects, sends the bytes, shuts down its write half and waits for
 * EOF; a sink thread accepts, reads until EOF and stamps the time.  A run lasts from the
 * sender's connect to the sink's EOF.  The rill relay is one loop on the main thread:
 * it accepts, connects to the sink and splices the two connections with WAIT_BOTH and
 * CLOSE_A|CLOSE_B, so EOF travels through it both ways. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define RUNS 3
#define CHUNK (256 * 1024)

static size_t total;
static char *payload;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- sink: a plain TCP server that reads each connection to EOF ----------------------------- */

typedef struct {
    int lfd;
    uint16_t port;
    atomic_int runs; /* connections read to EOF */
    double t_end;    /* when the last one ended */
    size_t got;
    _Atomic(rill_loop *) stop_loop; /* posted a stop when set (the rill relay's loop) */
} sink;

static void stop_loop(void *arg)
{
    rill_loop_stop(arg);
}

static void *sink_thread(void *p)
{
    sink *k = p;
    char *buf = malloc(CHUNK);
    for (;;) {
        int fd = accept(k->lfd, NULL, NULL);
        if (fd < 0)
            break;
        size_t got = 0;
        ssize_t n;
        while ((n = recv(fd, buf, CHUNK, 0)) > 0)
            got += (size_t)n;
        k->t_end = now_s();
        k->got = got;
        close(fd);
        rill_loop *l = atomic_load(&k->stop_loop);
        atomic_fetch_add(&k->runs, 1);
        if (l)
            rill_loop_post(l, stop_loop, l);
    }
    free(buf);
    return NULL;
}

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("sink listen");
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- sender ------------------------------------------------------------------------------- */

typedef struct {
    uint16_t port;
    double t_start;
} sender;

static int connect_retry(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 500; i++) { /* socat may still be starting */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
            return fd;
        close(fd);
        usleep(10000);
    }
    die("connect");
    return -1;
}

static void *sender_thread(void *p)
{
    sender *s = p;
    s->t_start = now_s();
    int fd = connect_retry(s->port);
    for (size_t off = 0; off < total;) {
        size_t n = total - off < CHUNK ? total - off : CHUNK;
        ssize_t r = send(fd, payload, n, MSG_NOSIGNAL);
        if (r < 0)
            die("send");
        off += (size_t)r;
    }
    shutdown(fd, SHUT_WR);
    char b[64];
    while (recv(fd, b, sizeof b, 0) > 0)
        ;
    close(fd);
    return NULL;
}

/* One run: send to port while `relay` (may be NULL) does its part; MB/s. */
static double one_run(sink *k, uint16_t port, void (*relay)(void *), void *arg)
{
    int before = atomic_load(&k->runs);
    sender s = {.port = port};
    pthread_t th;
    pthread_create(&th, NULL, sender_thread, &s);
    if (relay)
        relay(arg);
    while (atomic_load(&k->runs) == before)
        usleep(1000);
    pthread_join(th, NULL);
    if (k->got != total) {
        fprintf(stderr, "bench/splice: the sink got %zu of %zu bytes\n", k->got, total);
        exit(1);
    }
    return (double)total / (k->t_end - s.t_start) / 1e6;
}

/* ---- the rill relay ----------------------------------------------------------------------- */

typedef struct {
    rill_loop *loop;
    rill_server *srv;
    uint16_t sink_port;
    unsigned flags;
    int failures;
} relay;

static void on_spliced(rill_stream *s, int status, void *arg)
{
    relay *r = arg;
    (void)s;
    if (status < 0) {
        fprintf(stderr, "bench/splice: splice: %s\n", rill_strerror(status));
        r->failures++;
    }
}

static void on_upstream(rill_stream *up, const rill_event *ev, void *arg)
{
    rill_stream *conn = arg;
    relay *r = rill_stream_data(conn);
    if (ev->type != RILL_EV_CONNECT) {
        fprintf(stderr, "bench/splice: upstream: %s\n", rill_strerror(ev->err));
        rill_stream_close(conn);
        return;
    }
    unsigned f = RILL_SPLICE_WAIT_BOTH | RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B | r->flags;
    if (rill_splice(conn, up, f, 0, NULL, on_spliced, r) < 0) {
        rill_stream_close(conn);
        rill_stream_close(up);
    }
}

static void on_connection(rill_server *srv, rill_server_event_type type, rill_stream *conn, int err,
                          void *arg)
{
    relay *r = arg;
    (void)srv;
    (void)type;
    (void)err;
    rill_stream *up = rill_tcp_connect(r->loop, "127.0.0.1", r->sink_port, NULL);
    rill_stream_set_data(conn, r);
    if (!up || !rill_stream_once(up, RILL_EV_CONNECT, on_upstream, conn) ||
        !rill_stream_once(up, RILL_EV_ERROR, on_upstream, conn))
        rill_stream_close(conn);
}

static void run_relay_loop(void *arg)
{
    relay *r = arg;
    rill_loop_run(r->loop, RILL_RUN_DEFAULT); /* until the sink posts a stop */
}

static uint16_t relay_open(relay *r, sink *k, unsigned flags)
{
    *r = (relay){.loop = rill_loop_new(NULL), .sink_port = k->port, .flags = flags};
    rill_addr a;
    if (!r->loop || !(r->srv = rill_tcp_listen(r->loop, "127.0.0.1", 0, NULL)) ||
        !rill_server_on(r->srv, RILL_SEV_CONNECTION, on_connection, r) ||
        rill_server_sockname(r->srv, &a) < 0)
        die("rill relay");
    return ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
}

static void relay_close(relay *r)
{
    rill_server_close(r->srv);
    rill_loop_run(r->loop, RILL_RUN_DEFAULT);
    if (rill_loop_free(r->loop) < 0 || r->failures)
        exit(1);
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A run through a rill relay; *cpu grows by the CPU time its loop thread used. */
static double rill_run(sink *k, relay *r, uint16_t port, double *cpu)
{
    atomic_store(&k->stop_loop, r->loop);
    double c0 = thread_cpu_s();
    double v = one_run(k, port, run_relay_loop, r);
    *cpu += thread_cpu_s() - c0;
    atomic_store(&k->stop_loop, NULL);
    return v;
}

/* ---- socat ------------------------------------------------------------------------------- */

/* socat relaying a free port to the sink; bopt NULL: socat's default buffer. */
static pid_t socat_start(sink *k, const char *bopt, uint16_t *port)
{
    int probe = listen_any(port); /* a free port for socat */
    close(probe);
    char listen_arg[80], conn_arg[64];
    snprintf(listen_arg, sizeof listen_arg, "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork", *port);
    snprintf(conn_arg, sizeof conn_arg, "TCP:127.0.0.1:%u", k->port);
    pid_t pid = fork();
    if (pid == 0) {
        if (bopt)
            execlp("socat", "socat", "-b", bopt, listen_arg, conn_arg, (char *)NULL);
        else
            execlp("socat", "socat", listen_arg, conn_arg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Stops socat; the CPU time it and its per-connection children used, in seconds. */
static double socat_stop(pid_t pid)
{
    struct rusage ru;
    kill(pid, SIGTERM);
    if (wait4(pid, NULL, 0, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

enum { DIRECT, ZC, COPY, SOCAT, SOCAT_BIG, NCASES };
static const char *const names[NCASES] = {"direct (no relay)", "rill splice (zero-copy)",
                                          "rill splice (copy)", "socat (default -b 8192)",
                                          "socat -b 262144"};

int main(int argc, char **argv)
{
    total = (argc > 1 ? (size_t)atol(argv[1]) : 1024) << 20;
    payload = malloc(CHUNK);
    memset(payload, 'r', CHUNK);
    signal(SIGPIPE, SIG_IGN);
    sink k = {0};
    k.lfd = listen_any(&k.port);
    pthread_t th;
    pthread_create(&th, NULL, sink_thread, &k);
    const char *only = argc > 2 ? argv[2] : NULL; /* one case, e.g. "zero-copy", "socat" */

    /* The cases take turns, round after round, so that a busy machine slows them all
     * alike; each keeps its best run. */
    relay rz, rc;
    uint16_t port[NCASES];
    port[DIRECT] = k.port;
    port[ZC] = relay_open(&rz, &k, 0);
    port[COPY] = relay_open(&rc, &k, RILL_SPLICE_COPY);
    pid_t p1 = socat_start(&k, NULL, &port[SOCAT]);
    pid_t p2 = socat_start(&k, "262144", &port[SOCAT_BIG]);
    double best[NCASES] = {0}, cpu[NCASES] = {0};
    int runs[NCASES] = {0};
    for (int round = 0; round < RUNS; round++) {
        for (int c = 0; c < NCASES; c++) {
            if (only && !strstr(names[c], only))
                continue;
            double v = c == ZC     ? rill_run(&k, &rz, port[c], &cpu[c])
                       : c == COPY ? rill_run(&k, &rc, port[c], &cpu[c])
                                   : one_run(&k, port[c], NULL, NULL);
            best[c] = v > best[c] ? v : best[c];
            runs[c]++;
        }
    }
    cpu[SOCAT] = socat_stop(p1);
    cpu[SOCAT_BIG] = socat_stop(p2);
    relay_close(&rz);
    relay_close(&rc);
    printf("splice relay over loopback TCP, %zu MiB per run, best of %d (runs interleaved)\n",
           total >> 20, RUNS);
    for (int c = 0; c < NCASES; c++) {
        if (!best[c])
            continue;
        printf("  %-26s %7.0f MB/s", names[c], best[c]);
        if (c != DIRECT && best[DIRECT])
            printf("  %.2fx direct", best[c] / best[DIRECT]);
        if (c != DIRECT) /* what the relay itself costs, whatever else the machine runs */
            printf("  relay CPU %4.0f ms/GiB",
                   cpu[c] * 1e3 / ((double)runs[c] * (double)total / (1 << 30)));
        printf("\n");
    }
    if (best[ZC] && best[SOCAT] && best[SOCAT_BIG])
        printf("  rill zero-copy / socat: %.2fx (default buffer), %.2fx (-b 262144)\n",
               best[ZC] / best[SOCAT], best[ZC] / best[SOCAT_BIG]);
    shutdown(k.lfd, SHUT_RDWR);
    close(k.lfd);
    pthread_join(th, NULL);
    free(payload);
    return 0;
}
