/* examples/proxy.c - a TCP proxy: each client gets a connection to the target, and
 * rill_splice pumps bytes between the two until both directions have ended.
 *
 *   example_proxy PORT TARGET_HOST TARGET_PORT   (PORT 0 picks a free port; printed)
 *
 * Try: `rillcat -k tcp-listen:7000 echo &`, `example_proxy 8000 127.0.0.1 7000 &`, then
 * `rillcat - tcp:127.0.0.1:8000`. */
#include <rill.h>

#include <stdio.h>
#include <stdlib.h>

static const char *target_host;
static uint16_t target_port;

/* The splice is over: status 0 when both directions reached EOF, else the first error
 * (a refused connect to the target lands here too).  With RILL_SPLICE_CLOSE_A and
 * _CLOSE_B it has closed both streams already; nothing is left to free. */
static void on_spliced(rill_stream *client, int status, void *arg)
{
    (void)client;
    (void)arg;
    if (status < 0)
        fprintf(stderr, "example_proxy: %s (%s)\n", rill_strerror(status), rill_err_name(status));
}

/* A client: connect to the target and splice the two streams.  The connect is still under
 * way when rill_splice starts; what the client sends meanwhile waits in the target
 * stream's write queue, which is flushed once the connection is up.  Both streams keep
 * the default 15 s inactivity timeout (traffic in either direction counts). */
static void on_connection(rill_server *srv, rill_server_event_type ev, rill_stream *client,
                          int err, void *arg)
{
    (void)ev, (void)err, (void)arg;
    rill_connect_opts opts = {.nodelay = true};
    rill_stream *target = rill_tcp_connect(rill_server_loop(srv), target_host, target_port, &opts);
    unsigned flags = RILL_SPLICE_CLOSE_A | RILL_SPLICE_CLOSE_B | RILL_SPLICE_WAIT_BOTH;
    if (!target || rill_splice(client, target, flags, 0, NULL, on_spliced, NULL) < 0) {
        rill_stream_close(client); /* closing twice, or NULL, is harmless */
        rill_stream_close(target);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT TARGET_HOST TARGET_PORT\n", argv[0]);
        return 2;
    }
    target_host = argv[2];
    target_port = (uint16_t)atoi(argv[3]);
    rill_loop *loop = rill_loop_new(NULL);
    rill_server *srv = loop ? rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL) : NULL;
    if (!srv) {
        fprintf(stderr, "example_proxy: %s\n", rill_strerror(-errno));
        return 1;
    }
    rill_addr addr;
    char text[64] = "";
    if (rill_server_sockname(srv, &addr) == 0)
        rill_addr_format(&addr, text, sizeof text);
    printf("listening on tcp %s\n", text);
    fflush(stdout);
    rill_server_on(srv, RILL_SEV_CONNECTION, on_connection, NULL);
    rill_loop_run(loop, RILL_RUN_DEFAULT); /* runs until the process is killed */
    return 0;
}
