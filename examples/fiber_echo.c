/* examples/fiber_echo.c - a line echo server in blocking style: one fiber per client.
 *
 *   example_fiber_echo PORT     (PORT 0 picks a free port; the bound one is printed)
 *
 * Each client gets its lines back with "> " in front; "quit" ends its session.  The code
 * reads like a blocking server, but one thread serves every client: a fiber waiting for
 * a line is suspended and the loop runs the others.  Runs until killed. */
#include <rill.h>
#include <rill/fiber.h>

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void session(rill_stream *conn, void *arg)
{
    char line[1024];
    ssize_t n;
    (void)arg;
    /* Idle for 60 s and the read fails with RILL_ETIMEDOUT (and the connection closes). */
    while ((n = rill_fiber_read_until(conn, "\n", 1, line, sizeof line,
                                      rill_loop_now(rill_stream_loop(conn)) + 60000)) > 0) {
        if (n >= 4 && memcmp(line, "quit", 4) == 0)
            break;
        if (rill_fiber_write(conn, "> ", 2, 0) < 0 ||
            rill_fiber_write(conn, line, (size_t)n, 0) < 0)
            break;
    }
    rill_fiber_write(conn, "bye\n", 4, 0); /* the connection closes when this returns */
}

int main(int argc, char **argv)
{
    rill_loop *loop = rill_loop_new(NULL);
    rill_server *srv =
        loop ? rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(argc > 1 ? argv[1] : "0"), NULL)
             : NULL;
    rill_addr addr;
    if (!srv || rill_server_serve_fibers(srv, session, NULL) < 0 ||
        rill_server_sockname(srv, &addr) < 0) {
        perror("fiber_echo");
        return 1;
    }
    printf("listening on port %d\n", ntohs(((struct sockaddr_in *)&addr.ss)->sin_port));
    fflush(stdout);
    return rill_loop_run(loop, RILL_RUN_DEFAULT) < 0;
}
