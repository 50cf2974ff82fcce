/* bench/echo_epoll.c - the practical limit: a minimal hand-written level-triggered epoll
 * echo server.  One recv(2) of up to 64 KiB, one send(2) of what was read (the socket
 * calls: read(2) and write(2) cost about 3% more CPU per message); only when the kernel
 * takes part of it does the connection switch from "readable" to "writable" interest until
 * the rest is out (so a slow peer cannot make it buffer without bound).
 *
 *   echo_epoll PORT        listens on 127.0.0.1:PORT, single-threaded, runs until killed
 *
 * Per echoed message in steady state: one recv, one send, epoll_wait shared by every
 * connection that was ready at once.  Nothing a library does can need fewer syscalls. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024)
#define MAX_EVENTS 256

typedef struct {
    char *pend;      /* bytes the kernel has not taken yet (NULL: none) */
    size_t off, len;
} conn;

static conn *conns; /* indexed by fd */
static size_t nconns;
static int ep;
static char buf[READ_SIZE];

static size_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 511) < 0) {
        perror("echo_epoll: listen");
        exit(1);
    }
    return fd;
}

static void watch(int fd, int op, uint32_t events)
{
    struct epoll_event e = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, op, fd, &e) < 0) {
        perror("echo_epoll: epoll_ctl");
        exit(1);
    }
}

static void drop(int fd)
{
    free(conns[fd].pend);
    conns[fd] = (conn){0};
    close(fd); /* also leaves the epoll set */
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: the listener stays readable */
        if ((size_t)fd >= nconns) {
            close(fd);
            continue;
        }
        watch(fd, EPOLL_CTL_ADD, EPOLLIN);
    }
}

/* Keeps what the kernel did not take and waits for writability instead of more input. */
static void keep(int fd, const char *p, size_t n)
{
    conn *c = &conns[fd];
    c->pend = malloc(n);
    if (!c->pend) {
        drop(fd);
        return;
    }
    memcpy(c->pend, p, n);
    c->off = 0;
    c->len = n;
    watch(fd, EPOLL_CTL_MOD, EPOLLOUT);
}

static void on_readable(int fd)
{
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) {
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            drop(fd);
        return;
    }
    ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
    if (w == r)
        return;
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            drop(fd);
            return;
        }
        w = 0;
    }
    keep(fd, buf + w, (size_t)(r - w));
}

static void on_writable(int fd)
{
    conn *c = &conns[fd];
    ssize_t w = send(fd, c->pend + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            drop(fd);
        return;
    }
    c->off += (size_t)w;
    if (c->off == c->len) {
        free(c->pend);
        c->pend = NULL;
        watch(fd, EPOLL_CTL_MOD, EPOLLIN);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_epoll PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    nconns = raise_nofile();
    conns = calloc(nconns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    int lfd = listen_on(atoi(argv[1]));
    if (!conns || ep < 0) {
        perror("echo_epoll");
        return 1;
    }
    watch(lfd, EPOLL_CTL_ADD, EPOLLIN);
    struct epoll_event ev[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, ev, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd == lfd)
                accept_all(lfd);
            else if (conns[fd].pend)
                on_writable(fd); /* only EPOLLOUT (or an error) is watched now */
            else
                on_readable(fd);
        }
    }
}
