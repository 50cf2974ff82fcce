/* bench/pump_block.c - the limit of the pump benchmark: a plain blocking accept and a
 * 64 KiB read loop that discards the bytes, then close.  One connection, then exit.
 *
 * With LOWAT, the socket takes SO_RCVLOWAT of that many bytes first: a read then waits
 * for that many (or EOF), so the reference for rill's read low water mark is the same
 * kernel feature on the blocking side.
 *
 *   pump_block PORT [LOWAT] listens on 127.0.0.1:PORT; prints  received=N cpu_ns=T  at the end */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept1.h"
#include "cpu_ns.h"

#define READ_SIZE (64 * 1024)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pump_block PORT [LOWAT]\n");
        return 2;
    }
    int fd = bench_accept1("pump_block", argv[1], 0);
    if (fd < 0)
        return 1;
    int lowat = argc > 2 ? atoi(argv[2]) : 0;
    if (lowat > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) < 0) {
        perror("pump_block: SO_RCVLOWAT");
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
