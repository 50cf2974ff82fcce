/* examples/chat.c - a line chat: every line a client sends goes to all the other clients.
 *
 *   example_chat PORT      (PORT 0 picks a free port; the bound one is printed)
 *
 * Try it with two terminals running `rillcat - tcp:127.0.0.1:PORT`.  Shows framing with
 * rill_stream_read_until and broadcasting with rill_server_foreach. */
#include <rill.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What we keep per client, hung on its stream with rill_stream_set_data. */
typedef struct {
    char name[16];
} client;

/* One message to everyone but its sender (foreach calls us once per connection). */
typedef struct {
    rill_stream *from;
    const char *text;
    size_t len;
} message;

static void send_to_one(rill_stream *conn, void *arg)
{
    const message *m = arg;
    if (conn != m->from)
        rill_stream_write(conn, m->text, m->len, NULL, NULL); /* copied if not sent at once */
}

/* Sends "name: text" (text already ends with its newline) to every other client. */
static void broadcast(rill_stream *from, const char *text, size_t len)
{
    client *c = rill_stream_data(from);
    char line[1100];
    int n = snprintf(line, sizeof line, "%s: %.*s", c->name, (int)len, text);
    message m = {from, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1};
    rill_server_foreach(rill_stream_server(from), send_to_one, &m);
}

/* A complete line arrived (data/len include the "\n"); ask for the next one.  Any other
 * status ends the client: RILL_EOF when it hung up, RILL_ENOBUFS when a line is longer
 * than the stream's max buffer, RILL_ECANCELED when the stream closed. */
static void on_line(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    (void)arg;
    if (status < 0) {
        rill_stream_close(s);
        return;
    }
    broadcast(s, data, len);
    rill_stream_read_until(s, "\n", 1, on_line, NULL);
}

/* The last event a stream sends: say goodbye for it and free what we hung on it. */
static void on_close(rill_stream *s, const rill_event *ev, void *arg)
{
    client *c = rill_stream_data(s);
    (void)ev;
    (void)arg;
    broadcast(s, "left\n", 5); /* foreach skips s: it is closed already */
    free(c);
}

static void on_connection(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err,
                          void *arg)
{
    static unsigned joined;
    client *c = malloc(sizeof *c);
    (void)srv, (void)ev, (void)err, (void)arg;
    if (!c) {
        rill_stream_close(conn);
        return;
    }
    snprintf(c->name, sizeof c->name, "user%u", ++joined);
    rill_stream_set_data(conn, c);
    rill_stream_set_max_buffer(conn, 1024);   /* a line longer than this ends the client */
    rill_stream_set_timeout(conn, 0);         /* chat users may be quiet for long */
    rill_stream_on(conn, RILL_EV_CLOSE, on_close, NULL);
    rill_stream_read_until(conn, "\n", 1, on_line, NULL); /* framing starts reading */
    broadcast(conn, "joined\n", 7);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    rill_loop *loop = rill_loop_new(NULL);
    rill_server *srv = loop ? rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL) : NULL;
    if (!srv) {
        fprintf(stderr, "example_chat: %s\n", rill_strerror(-errno));
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
