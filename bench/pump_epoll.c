/* bench/pump_epoll.c - the readiness-model limit of the pump benchmark: a minimal
 * hand-written level-triggered epoll receiver.  One non-blocking connection; on each
 * wake-up it reads 64 KiB at a time while reads fill the buffer (at most 16), since a
 * short read means the socket is drained.  Bytes are counted and dropped; at EOF it exits.
 *
 *   pump_epoll PORT        listens on 127.0.0.1:PORT; prints  received=N cpu_ns=T  at the end
 *
 * Against the blocking loop it shows what any epoll receiver pays (an epoll_wait per
 * wake-up, and a read that finds nothing after a full one); against rill, what rill adds. */
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept1.h"
#include "cpu_ns.h"

#define READ_SIZE (64 * 1024)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pump_epoll PORT\n");
        return 2;
    }
    int fd = bench_accept1("pump_epoll", argv[1], SOCK_NONBLOCK);
    if (fd < 0)
        return 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        perror("pump_epoll: epoll");
        return 1;
    }
    static char buf[READ_SIZE];
    unsigned long long total = 0;
    for (;;) {
        if (epoll_wait(ep, &ev, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("pump_epoll: epoll_wait");
            return 1;
        }
        ssize_t r = READ_SIZE;
        for (int i = 0; i < 16 && r == READ_SIZE; i++) {
            r = recv(fd, buf, READ_SIZE, 0);
            if (r > 0)
                total += (unsigned long long)r;
        }
        if (r == 0)
            break;
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            perror("pump_epoll: recv");
            return 1;
        }
    }
    close(fd);
    printf("received=%llu cpu_ns=%llu\n", total, bench_cpu_ns());
    return 0;
}
