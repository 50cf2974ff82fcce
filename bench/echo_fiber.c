/* bench/echo_fiber.c - the ping-pong echo server written in blocking style: one fiber per
 * connection (rill_server_serve_fibers) that loops rill_fiber_read_bytes and
 * rill_fiber_write.  Compared with echo_rill it adds a framing request, a copy into the
 * fiber's buffer and two context switches per message.  rill_fiber_write only waits when
 * the connection's write queue passes its high water mark, which is the backpressure
 * echo_rill gets by stopping reads until DRAIN.  The default 15 s inactivity timeout stays.
 *
 *   echo_fiber PORT       listens on 127.0.0.1:PORT, single-threaded, runs until killed */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "rill.h"
#include "rill/fiber.h"

static void echo(rill_stream *conn, void *arg)
{
    char buf[16384]; /* on the fiber's 64 KiB stack */
    ssize_t n;
    (void)arg;
    while ((n = rill_fiber_read_bytes(conn, buf, sizeof buf, 0)) > 0)
        if (rill_fiber_write(conn, buf, (size_t)n, 0) < 0)
            break;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_fiber PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rill_loop *loop = rill_loop_new(NULL);
    if (!loop) {
        perror("echo_fiber: loop");
        return 1;
    }
    rill_server *srv = rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL);
    if (!srv || rill_server_serve_fibers(srv, echo, NULL) < 0) {
        perror("echo_fiber: listen");
        return 1;
    }
    return rill_loop_run(loop, RILL_RUN_DEFAULT) < 0;
}
