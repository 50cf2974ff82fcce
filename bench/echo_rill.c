/* bench/echo_rill.c - rill's echo server as a user writes it with the public API: a TCP
 * server, a CONNECTION handler that subscribes to READ, and a READ handler that writes the
 * borrowed bytes straight back.  rill writes at once when nothing is queued and copies
 * only what the kernel did not take; when the queue passes its high water mark the
 * connection stops reading until DRAIN (subscribed only then, so an idle connection
 * carries one subscription).  The default 15 s inactivity timeout stays armed.
 *
 *   echo_rill PORT        listens on 127.0.0.1:PORT, single-threaded, runs until killed */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "rill.h"

static void on_drain(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    (void)arg;
    rill_stream_start(s);
}

static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)arg;
    if (rill_stream_write(s, ev->data, ev->len, NULL, NULL) == 1) {
        rill_stream_stop(s); /* backpressure: resume on DRAIN */
        if (!rill_stream_once(s, RILL_EV_DRAIN, on_drain, NULL))
            rill_stream_close(s);
    }
}

static void on_connection(rill_server *srv, rill_server_event_type type, rill_stream *conn,
                          int err, void *arg)
{
    (void)srv;
    (void)type;
    (void)err;
    (void)arg;
    if (!rill_stream_on(conn, RILL_EV_READ, on_read, NULL) || rill_stream_start(conn) < 0)
        rill_stream_close(conn);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_rill PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rill_loop *loop = rill_loop_new(NULL);
    if (!loop) {
        perror("echo_rill: loop");
        return 1;
    }
    rill_server *srv = rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL);
    if (!srv || !rill_server_on(srv, RILL_SEV_CONNECTION, on_connection, NULL)) {
        perror("echo_rill: listen");
        return 1;
    }
    return rill_loop_run(loop, RILL_RUN_DEFAULT) < 0;
}
