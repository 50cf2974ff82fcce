/* examples/echo.c - an echo server: every byte a client sends comes back to it.
 *
 *   example_echo tcp PORT      (PORT 0 picks a free port; the bound one is printed)
 *   example_echo unix PATH     ("@name" for Linux's abstract namespace)
 *
 * Pairs may repeat ("tcp 0 unix /tmp/echo.sock") to serve both.  Runs until SIGINT or
 * SIGTERM, then closes its servers and exits. */
#include <rill.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_SERVERS 8

static rill_server *servers[MAX_SERVERS];
static int nservers;

/* A client's write queue grew past its high water mark: stop reading from it until the
 * queue drains, so a client that sends without reading cannot fill our memory. */
static void on_drain(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    (void)arg;
    rill_stream_start(s);
}

/* The data is borrowed: valid only during this call.  rill_stream_write copies whatever
 * the kernel does not take at once, so writing it straight back is safe. */
static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)arg;
    if (rill_stream_write(s, ev->data, ev->len, NULL, NULL) == 1)
        rill_stream_stop(s);
}

/* A new client.  With no EOF handler, a client that finishes sending gets its last bytes
 * echoed and is then closed; idle clients time out after 15 s. */
static void on_connection(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err,
                          void *arg)
{
    (void)srv;
    (void)ev;
    (void)err;
    (void)arg;
    rill_stream_on(conn, RILL_EV_READ, on_read, NULL);
    rill_stream_on(conn, RILL_EV_DRAIN, on_drain, NULL);
    rill_stream_start(conn);
}

/* SIGINT or SIGTERM arrived (as bytes on a signalfd, so it is an ordinary stream event):
 * closing every server ends the loop once their connections are closed too. */
static void on_signal(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    (void)arg;
    for (int i = 0; i < nservers; i++)
        rill_server_close(servers[i]);
    rill_stream_close(s);
}

static rill_server *listen_one(rill_loop *loop, const char *kind, const char *where)
{
    rill_server *srv = NULL;
    if (strcmp(kind, "tcp") == 0)
        srv = rill_tcp_listen(loop, "127.0.0.1", (uint16_t)atoi(where), NULL);
    else if (strcmp(kind, "unix") == 0)
        srv = rill_unix_listen(loop, where, NULL);
    if (!srv) {
        fprintf(stderr, "example_echo: %s %s: %s\n", kind, where,
                errno ? rill_strerror(-errno) : "unknown kind");
        return NULL;
    }
    rill_addr addr;
    char text[128] = "";
    if (rill_server_sockname(srv, &addr) == 0)
        rill_addr_format(&addr, text, sizeof text);
    printf("listening on %s %s\n", kind, text); /* "tcp 127.0.0.1:PORT" / "unix PATH" */
    fflush(stdout);
    rill_server_on(srv, RILL_SEV_CONNECTION, on_connection, NULL);
    return srv;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc % 2 == 0 || argc > 1 + 2 * MAX_SERVERS) {
        fprintf(stderr, "usage: %s tcp PORT | unix PATH [...]\n", argv[0]);
        return 2;
    }
    rill_loop *loop = rill_loop_new(NULL);
    if (!loop)
        return 1;
    /* Signals become readable bytes: block them, then read them from a signalfd. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    rill_stream *sig = rill_fd_open(loop, signalfd(-1, &set, SFD_CLOEXEC), RILL_READONLY);
    if (!sig)
        return 1;
    rill_stream_on(sig, RILL_EV_READ, on_signal, NULL);
    rill_stream_start(sig);
    for (int i = 1; i + 1 < argc; i += 2) {
        errno = 0;
        if (!(servers[nservers] = listen_one(loop, argv[i], argv[i + 1])))
            return 1;
        nservers++;
    }
    rill_loop_run(loop, RILL_RUN_DEFAULT); /* until the signal closed everything */
    return rill_loop_free(loop) == 0 ? 0 : 1;
}
