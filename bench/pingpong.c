/* bench/pingpong.c - the load client: N connections, each sends one message and waits for
 * the whole echo (checking every byte) before sending the next.  Level-triggered epoll, one
 * read and one write per message, so the client costs what the leanest server costs.
 *
 *   pingpong HOST PORT CONNS SECONDS [SIZE [SERVER_PID]]
 *
 * Counts the messages of a SECONDS-long window that starts after a 1 s warm-up and prints
 *   msgs_per_s=... conns=... size=... msgs=... secs=...
 * With SERVER_PID it also reads the server's utime+stime from /proc/PID/stat at both ends
 * of the window and adds  server_cpu_ns_per_msg=...  (whole process, every thread);
 * client_cpu_s=... (its own CPU time in the window) shows when the client is the limit.
 * SIGUSR1 prints  mark msgs=N  (messages so far), so a runner can bracket an strace or
 * callgrind window with exact message counts.  SECONDS 0 runs until killed.
 *
 * Several servers at once: PORT and SERVER_PID as comma-separated lists (same length).
 * CONNS connections go to each, and the client drives one server at a time in turn, in
 * slices of SLICE_MS (environment PINGPONG_SLICE_MS, 250): at a slice's end it stops
 * sending to that server, waits for the echoes in flight, and moves on.  Each server gets
 * a 1 s warm-up, then SECONDS of driven time; the output is one line per server, in the
 * order given, starting  port=PORT.  Whatever slows the machine for a while then slows
 * every server alike, where back-to-back runs of one server at a time each meet their own
 * share of it. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP_S 1.0
#define MAX_EVENTS 1024
#define PATTERN 256 /* messages cycle through 256 shifted views of one pattern */

typedef struct {
    int fd;
    int server;   /* index of its server (several-server mode) */
    uint32_t seq; /* message number on this connection */
    size_t got;   /* bytes of the current echo received */
} conn;

/* One server of the several-server mode: what its driven slices added up to. */
typedef struct {
    const char *port, *pid;
    uint64_t msgs;
    double secs, self_s;
    long long ticks;
    bool ticks_ok;
} target;

#define MAX_TARGETS 16

static size_t size = 64;
static char *pattern; /* PATTERN + size bytes; message k is pattern + (k % PATTERN) */
static volatile sig_atomic_t mark_requested;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* utime + stime of the process in clock ticks, or -1. */
static long long proc_cpu_ticks(const char *pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')'); /* the command name may contain spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The server may still be starting: a refused connect is retried for up to 5 s. */
static int connect_to(const struct addrinfo *ai)
{
    int fd = -1;
    for (int tries = 0; fd < 0; tries++) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno != ECONNREFUSED || tries >= 500)
            die("connect");
        close(fd);
        fd = -1;
        usleep(10000);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_next(conn *c)
{
    const char *msg = pattern + c->seq % PATTERN;
    ssize_t w = write(c->fd, msg, size);
    if (w != (ssize_t)size) /* an idle socket always takes one small message whole */
        die(w < 0 ? "write" : "short write");
    c->got = 0;
}

/* Reads what arrived; returns true when the whole echo is in (and was correct). */
static bool on_readable(conn *c, char *buf, size_t cap)
{
    ssize_t r = read(c->fd, buf, cap);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return false;
        die("read");
    }
    if (r == 0) {
        fprintf(stderr, "pingpong: server closed a connection\n");
        exit(1);
    }
    const char *want = pattern + c->seq % PATTERN + c->got;
    if ((size_t)r > size - c->got || memcmp(buf, want, (size_t)r) != 0) {
        fprintf(stderr, "pingpong: wrong echo bytes\n");
        exit(1);
    }
    c->got += (size_t)r;
    if (c->got < size)
        return false;
    c->seq++;
    return true;
}

static void on_usr1(int sig)
{
    (void)sig;
    mark_requested = 1;
}

/* Splits a comma-separated list in place; returns the number of items (at most max). */
static int split(char *list, const char **out, int max)
{
    int n = 0;
    for (char *p = list; p && n < max; n++) {
        out[n] = p;
        p = strchr(p, ',');
        if (p)
            *p++ = 0;
    }
    return n;
}

/* Drives server k's connections for `secs` seconds: each sends, and sends again after each
 * echo until the slice ends; then the echoes in flight come back.  Adds to t when count. */
static void drive(int ep, conn *cs, int nconn, target *t, double secs, bool count, char *buf,
                  size_t cap)
{
    struct epoll_event ev[MAX_EVENTS];
    long long c0 = t->pid ? proc_cpu_ticks(t->pid) : -1;
    double self0 = self_cpu_s(), start = now_s(), end = start + secs;
    uint64_t msgs = 0;
    int busy = nconn;
    for (int i = 0; i < nconn; i++)
        send_next(&cs[i]);
    while (busy) {
        int n = epoll_wait(ep, ev, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        bool over = now_s() >= end;
        for (int i = 0; i < n; i++) {
            conn *c = ev[i].data.ptr;
            if (!on_readable(c, buf, cap))
                continue;
            msgs++;
            if (over)
                busy--;
            else
                send_next(c);
        }
    }
    if (!count)
        return;
    long long c1 = t->pid ? proc_cpu_ticks(t->pid) : -1;
    t->msgs += msgs;
    t->secs += now_s() - start;
    t->self_s += self_cpu_s() - self0;
    if (c0 < 0 || c1 < 0)
        t->ticks_ok = false;
    else
        t->ticks += c1 - c0;
}

static int run_several(const char *host, char *ports, char *pids, int nconn, double secs)
{
    target ts[MAX_TARGETS] = {0};
    const char *pv[MAX_TARGETS], *dv[MAX_TARGETS];
    int nt = split(ports, pv, MAX_TARGETS);
    int nd = pids ? split(pids, dv, MAX_TARGETS) : 0;
    if (nt < 1 || (pids && nd != nt) || secs <= 0) {
        fprintf(stderr, "pingpong: several servers need as many pids as ports, and SECONDS > 0\n");
        return 2;
    }
    const char *env = getenv("PINGPONG_SLICE_MS");
    double slice = (env ? atof(env) : 250) / 1000;
    if (slice <= 0)
        slice = 0.25;
    size_t cap = size < 65536 ? 65536 : size;
    char *buf = malloc(cap);
    conn *conns = calloc((size_t)nconn * (size_t)nt, sizeof *conns);
    if (!buf || !conns)
        die("malloc");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (int k = 0; k < nt; k++) {
        ts[k].port = pv[k];
        ts[k].pid = pids ? dv[k] : NULL;
        ts[k].ticks_ok = true;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
        int gai = getaddrinfo(host, pv[k], &hints, &ai);
        if (gai) {
            fprintf(stderr, "pingpong: %s: %s\n", host, gai_strerror(gai));
            return 1;
        }
        for (int i = 0; i < nconn; i++) {
            conn *c = &conns[k * nconn + i];
            c->fd = connect_to(ai);
            c->server = k;
            c->seq = (uint32_t)i;
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
                die("epoll_ctl");
        }
        freeaddrinfo(ai);
    }
    /* warm-up, in slices too, so no server waits idle for long before its window */
    for (double w = 0; w < WARMUP_S; w += slice)
        for (int k = 0; k < nt; k++)
            drive(ep, &conns[k * nconn], nconn, &ts[k], slice, false, buf, cap);
    for (double d = 0; d < secs - 1e-9; d += slice)
        for (int k = 0; k < nt; k++)
            drive(ep, &conns[k * nconn], nconn, &ts[k], secs - d < slice ? secs - d : slice,
                  true, buf, cap);
    for (int k = 0; k < nt; k++) {
        target *t = &ts[k];
        printf("port=%s msgs_per_s=%.0f conns=%d size=%zu msgs=%llu secs=%.3f client_cpu_s=%.2f",
               t->port, (double)t->msgs / t->secs, nconn, size, (unsigned long long)t->msgs,
               t->secs, t->self_s);
        if (t->pid && t->ticks_ok && t->msgs)
            printf(" server_cpu_ns_per_msg=%.0f server_cpu_s=%.2f",
                   (double)t->ticks * 1e9 / (double)sysconf(_SC_CLK_TCK) / (double)t->msgs,
                   (double)t->ticks / (double)sysconf(_SC_CLK_TCK));
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: pingpong HOST PORT CONNS SECONDS [SIZE [SERVER_PID]]\n");
        return 2;
    }
    int nconn = atoi(argv[3]);
    double secs = atof(argv[4]);
    if (argc > 5)
        size = (size_t)atol(argv[5]);
    const char *spid = argc > 6 ? argv[6] : NULL;
    if (nconn < 1 || size < 1 || secs < 0) {
        fprintf(stderr, "pingpong: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    pattern = malloc(PATTERN + size);
    if (!pattern)
        die("malloc");
    for (size_t i = 0; i < PATTERN + size; i++)
        pattern[i] = (char)(i * 7 + (i >> 8));
    if (strchr(argv[2], ','))
        return run_several(argv[1], argv[2], argc > 6 ? argv[6] : NULL, nconn, secs);

    size_t cap = size < 65536 ? 65536 : size;
    char *buf = malloc(cap);
    conn *conns = calloc((size_t)nconn, sizeof *conns);
    if (!buf || !conns)
        die("malloc");

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int gai = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (gai) {
        fprintf(stderr, "pingpong: %s: %s\n", argv[1], gai_strerror(gai));
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = connect_to(ai);
        conns[i].seq = (uint32_t)i; /* connections start at different patterns */
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &e) < 0)
            die("epoll_ctl");
    }
    freeaddrinfo(ai);
    for (int i = 0; i < nconn; i++)
        send_next(&conns[i]);

    uint64_t msgs = 0, msgs0 = 0;
    long long cpu0 = -1;
    double start = now_s(), t0 = start + WARMUP_S, t1 = t0 + secs, w0 = 0, self0 = 0;
    bool measuring = false;
    struct epoll_event ev[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, ev, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn *c = ev[i].data.ptr;
            if (on_readable(c, buf, cap)) {
                msgs++;
                send_next(c);
            }
        }
        if (mark_requested) {
            mark_requested = 0;
            printf("mark msgs=%llu\n", (unsigned long long)msgs);
            fflush(stdout);
        }
        double t = now_s();
        if (!measuring && t >= t0) {
            measuring = true;
            msgs0 = msgs;
            w0 = t;
            self0 = self_cpu_s();
            cpu0 = spid ? proc_cpu_ticks(spid) : -1;
        }
        if (measuring && secs > 0 && t >= t1) {
            uint64_t m = msgs - msgs0;
            double dt = t - w0;
            printf("msgs_per_s=%.0f conns=%d size=%zu msgs=%llu secs=%.3f client_cpu_s=%.2f",
                   (double)m / dt, nconn, size, (unsigned long long)m, dt, self_cpu_s() - self0);
            long long cpu1 = spid ? proc_cpu_ticks(spid) : -1;
            if (cpu0 >= 0 && cpu1 >= 0 && m)
                printf(" server_cpu_ns_per_msg=%.0f server_cpu_s=%.2f",
                       (double)(cpu1 - cpu0) * 1e9 / (double)sysconf(_SC_CLK_TCK) / (double)m,
                       (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK));
            printf("\n");
            return 0;
        }
    }
}
