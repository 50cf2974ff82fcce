/* bench/pump_send.c - the sender of the pump benchmark: pushes BYTES (default 2 GiB) over
 * one loopback TCP connection in 64 KiB blocking writes, ends its write half, and waits
 * until the receiver has read everything and closed.  The time from connect to that close
 * is the receiver's throughput (the socket buffers hold a few MB: noise against 2 GiB).
 *
 *   pump_send HOST PORT [BYTES]
 *   prints  mb_per_s=... bytes=... secs=...   (MB = 10^6 bytes) */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "pump_send: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* The receiver may still be starting: retry a refused connect for up to 5 s. */
static int connect_retry(const struct addrinfo *ai)
{
    for (int i = 0; i < 500; i++) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return fd;
        close(fd);
        if (errno != ECONNREFUSED)
            die("connect");
        usleep(10000);
    }
    die("connect");
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pump_send HOST PORT [BYTES]\n");
        return 2;
    }
    uint64_t total = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)2 << 30;
    static char chunk[CHUNK];
    for (size_t i = 0; i < CHUNK; i++)
        chunk[i] = (char)(i * 13);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int gai = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (gai) {
        fprintf(stderr, "pump_send: %s: %s\n", argv[1], gai_strerror(gai));
        return 1;
    }
    int fd = connect_retry(ai);
    freeaddrinfo(ai);
    double t0 = now_s();
    for (uint64_t sent = 0; sent < total;) {
        size_t n = total - sent < CHUNK ? (size_t)(total - sent) : CHUNK;
        ssize_t w = write(fd, chunk, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        sent += (uint64_t)w;
    }
    if (shutdown(fd, SHUT_WR) < 0)
        die("shutdown");
    char b[16];
    ssize_t r;
    while ((r = read(fd, b, sizeof b)) > 0 || (r < 0 && errno == EINTR))
        ;
    double dt = now_s() - t0;
    printf("mb_per_s=%.0f bytes=%llu secs=%.3f\n", (double)total / 1e6 / dt,
           (unsigned long long)total, dt);
    return 0;
}
