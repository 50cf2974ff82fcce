/* bench/idle.c - holds many idle connections open against an echo server, so a runner can
 * read the server's memory before and after.  Each connection exchanges one byte first
 * (sent on all, then each echo awaited), which proves the server accepted it and set it
 * up for reading; then everything stays quiet.
 *
 *   idle HOST PORT [CONNS]        (default 10000)
 *
 * Raises RLIMIT_NOFILE to its hard limit, prints  ready conns=N  once every echo is back,
 * then sleeps until killed (the connections close with the process). */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "idle: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: idle HOST PORT [CONNS]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 10000;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int gai = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (gai) {
        fprintf(stderr, "idle: %s: %s\n", argv[1], gai_strerror(gai));
        return 1;
    }
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds)
        die("calloc");
    for (int i = 0; i < n; i++) {
        fds[i] = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0)
            die("socket");
        if (connect(fds[i], ai->ai_addr, ai->ai_addrlen) < 0)
            die("connect");
        if (write(fds[i], "x", 1) != 1)
            die("write");
    }
    freeaddrinfo(ai);
    for (int i = 0; i < n; i++) {
        char c;
        ssize_t r;
        while ((r = read(fds[i], &c, 1)) < 0 && errno == EINTR)
            ;
        if (r != 1 || c != 'x') {
            fprintf(stderr, "idle: connection %d: no echo\n", i);
            return 1;
        }
    }
    printf("ready conns=%d\n", n);
    fflush(stdout);
    for (;;)
        pause();
}
