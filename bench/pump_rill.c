/* bench/pump_rill.c - the rill receiver of the pump benchmark, written with the public API:
 * a TCP server whose one connection counts and drops what READ hands it.  At EOF the
 * stream closes by itself (no EOF handler); its CLOSE handler closes the server, and the
 * loop, with nothing left to do, returns.
 *
 * With LOWAT, the connection takes a read low water mark of that many bytes
 * (rill_stream_set_read_lowat), the way the guide teaches for bulk receivers.
 *
 *   pump_rill PORT [LOWAT]  listens on 127.0.0.1:PORT; prints  received=N cpu_ns=T  at the end */
#include <stdio.h>
#include <stdlib.h>

#include "rill.h"

#include "cpu_ns.h"

static unsigned long long total;
static size_t lowat;

static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)arg;
    total += ev->len;
}

static void on_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    rill_server_close(arg);
}

static void on_connection(rill_server *srv, rill_server_event_type type, rill_stream *conn,
                          int err, void *arg)
{
    (void)type;
    (void)err;
    (void)arg;
    if (lowat && rill_stream_set_read_lowat(conn, lowat) < 0)
        fprintf(stderr, "pump_rill: read low water mark not set\n");
    if (!rill_stream_on(conn, RILL_EV_READ, on_read, NULL) ||
        !rill_stream_on(conn, RILL_EV_CLOSE, on_close, srv) || rill_stream_start(conn) < 0)
        rill_stream_close(conn);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pump_rill PORT [LOWAT]\n");
        return 2;
    }
    if (argc > 2)
        lowat = (size_t)strtoul(argv[2], NULL, 10);
    rill_loop *loop = rill_loop_new(NULL);
    rill_server *srv = loop ? rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL) : NULL;
    if (!srv || !rill_server_on(srv, RILL_SEV_CONNECTION, on_connection, NULL)) {
        perror("pump_rill: listen");
        return 1;
    }
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    printf("received=%llu cpu_ns=%llu\n", total, bench_cpu_ns());
    return 0;
}
