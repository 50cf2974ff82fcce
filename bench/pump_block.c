/* bench/pump_block.c - the limit of the pump benchmark: a plain blocking accept and a
 * 64 KiB read loop that discards the bytes, then close.  One connection, then exit.
 *
 *   pump_block PORT        listens on 127.0.0.1:PORT; prints  received=N cpu_ns=T  at the end */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>

#include "cpu_ns.h"

#define READ_SIZE (64 * 1024)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pump_block PORT\n");
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 16) < 0) {
        perror("pump_block: listen");
        return 1;
    }
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        perror("pump_block: accept");
        return 1;
    }
    static char buf[READ_SIZE];
    unsigned long long total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0)
            total += (unsigned long long)r;
    close(fd);
    printf("received=%llu cpu_ns=%llu\n", total, bench_cpu_ns());
    return 0;
}
