/* bench/accept1.h - the hand-written pump receivers' set-up: listen on 127.0.0.1:PORT and
 * take one connection. */
#ifndef BENCH_ACCEPT1_H
#define BENCH_ACCEPT1_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* The one connection, accepted with `flags` (SOCK_NONBLOCK or 0; close-on-exec always),
 * the listener closed; -1 after perror naming `prog` when a step fails. */
static inline int bench_accept1(const char *prog, const char *port, int flags)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 16) < 0) {
        fprintf(stderr, "%s: listen: ", prog);
        perror(NULL);
        return -1;
    }
    int fd = accept4(lfd, NULL, NULL, flags | SOCK_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: accept: ", prog);
        perror(NULL);
    }
    close(lfd);
    return fd;
}

#endif
