/* src/server.c - listening sockets: accepting in batches, the connection set, server
 * events, pausing on fd exhaustion, and closing (a server outlives its connections). */
#include "sock.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAUSE_MS 100 /* how long accepting rests after EMFILE / ENFILE */

/* Handed out as a rill_sub *, an opaque handle for rill_server_off; the type is private to
 * this file. */
typedef struct srv_sub {
    struct srv_sub *next;
    rill_server_event_type type;
    bool dead; /* removed during an emission: unlinked after it */
    rill_server_handler *h;
    void *arg;
} srv_sub;

struct rill_server {
    rill_loop *loop;
    rill__io io; /* the listening socket; fd -1 once closed */
    int family;
    unsigned flags;   /* RILL_IPC: accepted streams carry handles */
    char *path;       /* Unix name for rill_server_pipename, or NULL */
    bool unlink_path; /* remove the socket file on close (if it is still ours) */
    bool closing;
    dev_t dev; /* the socket file we created */
    ino_t ino;
    rill__list conns; /* accepted streams, through srv_link, until their CLOSE has run */
    size_t nconns;
    srv_sub *subs;
    int emitting;      /* nesting depth of emit */
    rill_timer *pause; /* set while accepting rests */
    rill__defer defer; /* the final CLOSE and free, after every connection's CLOSE */
};

static void forget(rill_stream *s);
static void server_final(rill__defer *d);

static pthread_once_t forget_once = PTHREAD_ONCE_INIT;

static void install_forget(void)
{
    rill__server_forget = forget;
}

/* ---- events ---------------------------------------------------------------------------- */

rill_sub *rill_server_on(rill_server *srv, rill_server_event_type ev, rill_server_handler *h,
                         void *arg)
{
    if (!srv || !h || (ev != RILL_SEV_CONNECTION && ev != RILL_SEV_ERROR && ev != RILL_SEV_CLOSE)) {
        errno = EINVAL;
        return NULL;
    }
    srv_sub *sub = rill__malloc(sizeof *sub);
    if (!sub) {
        errno = ENOMEM;
        return NULL;
    }
    *sub = (srv_sub){NULL, ev, false, h, arg};
    srv_sub **pp = &srv->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = sub;
    return (rill_sub *)(void *)sub;
}

/* Unlinks dead subscriptions; only when no emission walks the list. */
static void sweep(rill_server *srv)
{
    srv_sub **pp = &srv->subs;
    while (*pp) {
        srv_sub *sub = *pp;
        if (sub->dead) {
            *pp = sub->next;
            rill__free(sub);
        } else {
            pp = &sub->next;
        }
    }
}

void rill_server_off(rill_server *srv, rill_sub *handle)
{
    if (!srv || !handle)
        return;
    for (srv_sub *sub = srv->subs; sub; sub = sub->next)
        if (sub == (srv_sub *)(void *)handle) { /* only a handle of this server */
            sub->dead = true;
            if (!srv->emitting)
                sweep(srv);
            return;
        }
}

static bool has_subs(const rill_server *srv, rill_server_event_type ev)
{
    for (const srv_sub *sub = srv->subs; sub; sub = sub->next)
        if (sub->type == ev && !sub->dead)
            return true;
    return false;
}

/* Runs the handlers subscribed when the event began.  The server cannot vanish under
 * them: it is only ever freed from its own deferred call. */
static void emit(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err)
{
    srv_sub *last = srv->subs;
    while (last && last->next)
        last = last->next;
    srv->emitting++;
    for (srv_sub *sub = srv->subs; sub; sub = sub->next) {
        if (sub->type == ev && !sub->dead)
            sub->h(srv, ev, conn, err, sub->arg);
        if (sub == last)
            break;
    }
    if (--srv->emitting == 0)
        sweep(srv);
}

static void report(rill_server *srv, int err)
{
    if (has_subs(srv, RILL_SEV_ERROR))
        emit(srv, RILL_SEV_ERROR, NULL, err);
    else
        rill__log(RILL_LOG_WARN, "server: accept failed: %s", rill_strerror(err));
}

/* ---- accepting ------------------------------------------------------------------------- */

static void on_resume(rill_timer *t, void *arg)
{
    rill_server *srv = arg;
    (void)t;
    srv->pause = NULL;
    if (!srv->closing)
        rill__io_set(srv->loop, &srv->io, RILL__IO_READ);
}

/* Out of fds (or memory): the pending connection stays in the backlog and the listening
 * socket stays readable, so watching it would spin.  Rest a moment instead. */
static void pause_accepting(rill_server *srv)
{
    rill__io_set(srv->loop, &srv->io, 0);
    srv->pause = rill_timer_start(srv->loop, PAUSE_MS, 0, on_resume, srv);
    if (!srv->pause)
        rill__io_set(srv->loop, &srv->io, RILL__IO_READ); /* no timer: spinning beats stalling */
}

/* True when accepting should go on after this failure of accept4. */
static bool accept_failed(rill_server *srv, int e)
{
    switch (e) {
    case EAGAIN:
        return false; /* the backlog is empty: the batch is done */
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true; /* that one connection failed (accept(2) says: treat as EAGAIN, retry) */
    default:
        pause_accepting(srv);
        report(srv, -e);
        return false;
    }
}

/* An accepted socket becomes a stream in the set, handed to the CONNECTION handlers. */
static void adopt(rill_server *srv, int fd)
{
    rill_stream *s = rill__fd_stream(srv->loop, fd, srv->flags, srv->family);
    if (!s) {
        close(fd);
        report(srv, RILL_ENOMEM);
        return;
    }
    s->server = srv;
    rill__list_insert_tail(&srv->conns, &s->srv_link);
    srv->nconns++;
    rill_stream_set_timeout(s, rill__loop_stream_timeout(srv->loop));
    if (!has_subs(srv, RILL_SEV_CONNECTION)) {
        rill_stream_close(s); /* nobody would ever serve it */
        return;
    }
    emit(srv, RILL_SEV_CONNECTION, s, 0);
}

/* Readiness of the listening socket: accepts until the backlog is empty, so a burst of
 * connections costs one wake-up (the poller is level-triggered, nothing is lost). */
static void on_accept(rill__io *io, unsigned revents)
{
    rill_server *srv = rill__container_of(io, rill_server, io);
    (void)revents;
    while (!srv->closing && !srv->pause) {
        int fd = accept4(srv->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            adopt(srv, fd);
        else if (!accept_failed(srv, errno == EWOULDBLOCK ? EAGAIN : errno))
            break;
    }
}

/* ---- lifetime -------------------------------------------------------------------------- */

rill_server *rill__server_new(rill_loop *loop, int fd, int family, const char *path,
                              bool unlink_path, unsigned flags)
{
    pthread_once(&forget_once, install_forget);
    rill_server *srv = rill__calloc(1, sizeof *srv);
    int rc = RILL_ENOMEM;
    if (srv && (!path || (srv->path = rill__strdup(path)))) {
        rill__io_init(&srv->io, fd, on_accept);
        rc = rill__io_set(loop, &srv->io, RILL__IO_READ);
    }
    if (rc < 0) {
        if (unlink_path)
            unlink(path);
        close(fd);
        if (srv)
            rill__free(srv->path);
        rill__free(srv);
        errno = -rc;
        return NULL;
    }
    struct stat st;
    if (unlink_path && stat(path, &st) == 0) {
        srv->unlink_path = true;
        srv->dev = st.st_dev;
        srv->ino = st.st_ino;
    }
    srv->loop = loop;
    srv->family = family;
    srv->flags = flags;
    rill__list_init(&srv->conns);
    rill__defer_init(&srv->defer, server_final);
    rill__handle_add(loop);
    rill__loop_ref(loop); /* listening keeps the loop running */
    return srv;
}

/* Removes the socket file, unless another server has replaced it meanwhile. */
static void remove_file(rill_server *srv)
{
    struct stat st;
    if (srv->unlink_path && stat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
        st.st_ino == srv->ino)
        unlink(srv->path);
}

static void server_final(rill__defer *d)
{
    rill_server *srv = rill__container_of(d, rill_server, defer);
    if (!rill__list_empty(&srv->conns))
        return; /* forget() queues this again when the last connection has left */
    emit(srv, RILL_SEV_CLOSE, NULL, 0);
    for (srv_sub *n, *sub = srv->subs; sub; sub = n) {
        n = sub->next;
        rill__free(sub);
    }
    rill__handle_remove(srv->loop);
    rill__free(srv->path);
    rill__free(srv);
}

/* A connection's CLOSE has run (stream.c calls this through rill__server_forget). */
static void forget(rill_stream *s)
{
    rill_server *srv = s->server;
    rill__list_remove(&s->srv_link);
    s->server = NULL;
    srv->nconns--;
    if (srv->closing && rill__list_empty(&srv->conns))
        rill__defer_queue(srv->loop, &srv->defer, 0);
}

void rill_server_close(rill_server *srv)
{
    if (!srv || srv->closing)
        return;
    srv->closing = true;
    rill_timer_stop(srv->pause);
    srv->pause = NULL;
    rill__io_set(srv->loop, &srv->io, 0);
    close(srv->io.fd);
    srv->io.fd = -1;
    remove_file(srv);
    rill__loop_unref(srv->loop);
    /* Closing never unlinks a stream from the set (its CLOSE comes later), so the walk
     * is safe. */
    for (rill__list *n = srv->conns.next; n != &srv->conns; n = n->next)
        rill_stream_close(rill__container_of(n, rill_stream, srv_link));
    /* Deferred even with no connection: CLOSE never fires inside the call, and the
     * server is never freed inside the poller's dispatch. */
    rill__defer_queue(srv->loop, &srv->defer, 0);
}

/* ---- queries ---------------------------------------------------------------------------- */

size_t rill_server_connection_count(const rill_server *srv)
{
    return srv ? srv->nconns : 0;
}

void rill_server_foreach(rill_server *srv, void (*fn)(rill_stream *, void *), void *arg)
{
    if (!srv || !fn)
        return;
    /* fn may close streams, but nothing leaves the set before the loop's next deferred
     * phase, so `next` stays valid. */
    for (rill__list *next, *n = srv->conns.next; n != &srv->conns; n = next) {
        next = n->next;
        rill_stream *s = rill__container_of(n, rill_stream, srv_link);
        if (!rill_stream_is_closed(s))
            fn(s, arg);
    }
}

int rill_server_sockname(const rill_server *srv, rill_addr *out)
{
    if (!srv || !out)
        return RILL_EINVAL;
    if (srv->closing)
        return RILL_ECLOSED;
    memset(out, 0, sizeof *out);
    out->len = sizeof out->ss;
    if (getsockname(srv->io.fd, (struct sockaddr *)&out->ss, &out->len) < 0)
        return rill__errno();
    return 0;
}

const char *rill_server_pipename(const rill_server *srv)
{
    return srv ? srv->path : NULL;
}

rill_loop *rill_server_loop(const rill_server *srv)
{
    return srv ? srv->loop : NULL;
}

rill_server *rill_stream_server(const rill_stream *s)
{
    return s ? s->server : NULL;
}
