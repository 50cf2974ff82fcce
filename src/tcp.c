/* src/tcp.c - TCP clients and listeners, and the connector both socket clients share:
 * names resolve on the thread pool, then Happy Eyeballs (RFC 8305) runs over the
 * addresses. */
#include "ipc.h"
#include "sock.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define ATTEMPT_DELAY_MS 250 /* RFC 8305's recommended Connection Attempt Delay */
#define UNIX_RETRY_MS 10     /* a Unix listener with a full backlog: try again soon */
#define CONNECT_TIMEOUT_MS 30000
#define KEEPALIVE_IDLE_S 60 /* Linux's default of two hours finds dead peers too late */
#define MAX_ADDRS 32
#define DEFAULT_BACKLOG 511

typedef struct connector connector;

/* One connection attempt: a socket waiting for writability. */
typedef struct {
    rill__io io; /* io.fd -1: not in flight */
    int family;
    connector *c;
} attempt;

/* The state of a connecting stream (its tpdata until it connects or closes). */
struct connector {
    rill_stream *s;
    rill_addr *addrs; /* in attempt order */
    attempt *att;     /* one per address */
    size_t n, next, inflight;
    rill_addr src; /* numeric source address, when have_src */
    bool have_src, dead;
    uint16_t src_port;
    bool nodelay, keepalive;
    char *host; /* a name still to resolve, or NULL */
    uint16_t port;
    rill_timer *stagger, *deadline;
    rill__defer defer; /* starts the work; once dead, frees the memory */
    int err;           /* the most recent attempt's failure */
};

/* A name resolution on the thread pool.  It holds a stream reference, not the connector:
 * when the stream closes meanwhile, the answer is dropped. */
typedef struct {
    rill_stream *s;
    char *host;
    int family, rc, err;
    struct addrinfo *res;
} resolve_job;

static void sock_close(rill_stream *s);

static const rill__transport tcp_transport = {
    .name = "tcp", .flags = RILL__TP_SOCKET | RILL__TP_STATE, .close = sock_close};
static const rill__transport unix_transport = {
    .name = "unix", .flags = RILL__TP_SOCKET | RILL__TP_STATE, .close = sock_close};

static void start_next(connector *c);

/* ---- lifetime of the connector ------------------------------------------------------- */

static void attempt_drop(connector *c, attempt *a)
{
    if (a->io.fd < 0)
        return;
    rill__io_set(c->s->loop, &a->io, 0);
    close(a->io.fd);
    a->io.fd = -1;
    c->inflight--;
}

/* Closes every attempt and stops the timers.  The memory goes in a deferred call, never
 * here: this may run inside the poller's dispatch, which may still hold an event for one
 * of the attempts' io watchers. */
static void connector_release(connector *c)
{
    for (size_t i = 0; i < c->n; i++)
        attempt_drop(c, &c->att[i]);
    rill_timer_stop(c->stagger);
    rill_timer_stop(c->deadline);
    c->stagger = c->deadline = NULL;
    c->dead = true;
    rill__defer_queue(c->s->loop, &c->defer, 0);
}

static void connector_free(connector *c)
{
    rill__free(c->addrs);
    rill__free(c->att);
    rill__free(c->host);
    rill__free(c);
}

static void sock_close(rill_stream *s)
{
    if (rill__tpdata(s)) {
        connector_release(rill__tpdata(s));
        rill__set_tpdata(s, NULL);
    }
    rill__ipc_release(s); /* handles queued while connecting */
    if (s->io.fd >= 0 && !(s->flags & RILL__S_STOLEN))
        close(s->io.fd);
}

/* Gives up: ERROR (or a silent close when unhandled), then CLOSE; the close releases c. */
static void connector_fail(connector *c, int err)
{
    rill__stream_connected(c->s, err ? err : RILL_EAI_NODATA);
}

/* The winner's socket becomes the stream's; the other attempts are closed. */
static void connector_win(connector *c, attempt *a)
{
    rill_stream *s = c->s;
    int fd = a->io.fd, family = a->family;
    rill__io_set(s->loop, &a->io, 0);
    a->io.fd = -1;
    c->inflight--;
    rill__set_tpdata(s, NULL);
    connector_release(c);
    s->io.fd = fd;
    s->family = family;
    if (s->flags & RILL__S_IPC)
        s->tp = &rill__ipc_transport; /* connected: fds may travel with the bytes now */
    else
        s->tp = rill__sock_tp(s->loop, s->tp); /* through the ring on a uring loop */
    /* The inactivity timeout starts now (connecting has its own deadline), unless the user
     * armed one meanwhile: that one stays.  (A 0 set while connecting cannot be told from
     * "never set": the stream keeps no copy of the value, only the armed node.) */
    if (!(s->flags & RILL__S_TIMEOUT_SET)) /* the user's choice, 0 included, stands */
        rill_stream_set_timeout(s, rill__loop_stream_timeout(s->loop));
    rill__stream_connected(s, 0);
}

/* ---- attempts ------------------------------------------------------------------------ */

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v) < 0 ? rill__errno() : 0;
}

/* Binds the local end: the numeric source address, or the wildcard with a source port. */
static int bind_source(connector *c, int fd, int family)
{
    rill_addr any = {0};
    const rill_addr *a = &c->src;
    if (!c->have_src) {
        if (!c->src_port)
            return 0;
        any.ss.ss_family = (sa_family_t)family;
        any.len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        if (family == AF_INET)
            ((struct sockaddr_in *)&any.ss)->sin_port = htons(c->src_port);
        else
            ((struct sockaddr_in6 *)&any.ss)->sin6_port = htons(c->src_port);
        a = &any;
    }
    int rc = 0;
    if (c->src_port) /* parallel attempts of one family share the port */
        rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    else /* the port is chosen at connect time, so it may be reused for other peers */
        set_int(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
    if (rc == 0 && bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        rc = rill__errno();
    return rc;
}

static int prepare(connector *c, int fd, int family)
{
    if (family == AF_UNIX)
        return 0;
    int rc = 0;
    if (c->nodelay)
        rc = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (rc == 0 && c->keepalive && (rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1)) == 0)
        rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
    return rc == 0 ? bind_source(c, fd, family) : rc;
}

static void attempt_io(rill__io *io, unsigned revents);

/* Starts one attempt: 1 connected at once, 0 in flight, or the failure's code. */
static int attempt_start(connector *c, attempt *a, const rill_addr *addr)
{
    int family = addr->ss.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rill__errno();
    int rc = prepare(c, fd, family);
    if (rc == 0 && connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
        rc = errno == EINPROGRESS || errno == EINTR ? RILL_EINPROGRESS : rill__errno();
    rill__io_init(&a->io, fd, attempt_io);
    a->family = family;
    a->c = c;
    if (rc == RILL_EINPROGRESS)
        rc = rill__io_set(c->s->loop, &a->io, RILL__IO_WRITE);
    else if (rc == 0)
        rc = 1;
    if (rc < 0) {
        close(fd);
        a->io.fd = -1;
        return rc;
    }
    c->inflight++;
    return rc;
}

static void on_stagger(rill_timer *t, void *arg)
{
    connector *c = arg;
    (void)t;
    c->stagger = NULL;
    start_next(c);
}

static bool arm_stagger(connector *c, uint64_t ms)
{
    c->stagger = rill_timer_start(c->s->loop, ms, 0, on_stagger, c);
    return c->stagger != NULL;
}

/* Starts attempts in order until one is in flight (the next waits for the stagger timer
 * or for a failure), one connects, or none is left. */
static void start_next(connector *c)
{
    rill_timer_stop(c->stagger);
    c->stagger = NULL;
    while (c->next < c->n) {
        size_t i = c->next;
        int rc = attempt_start(c, &c->att[i], &c->addrs[i]);
        if (rc == RILL_EAGAIN && c->att[i].family == AF_UNIX) {
            if (!arm_stagger(c, UNIX_RETRY_MS)) /* same address again, a moment later */
                connector_fail(c, RILL_ENOMEM);
            return;
        }
        c->next++;
        if (rc == 1) {
            connector_win(c, &c->att[i]);
            return;
        }
        if (rc == 0) {
            if (c->next < c->n && !arm_stagger(c, ATTEMPT_DELAY_MS))
                connector_fail(c, RILL_ENOMEM);
            return;
        }
        c->err = rc; /* failed at once: the next address starts now */
    }
    if (c->inflight == 0)
        connector_fail(c, c->err);
}

static void attempt_io(rill__io *io, unsigned revents)
{
    attempt *a = rill__container_of(io, attempt, io);
    connector *c = a->c;
    int err = 0;
    socklen_t len = sizeof err;
    (void)revents;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0) {
        connector_win(c, a);
        return;
    }
    attempt_drop(c, a);
    c->err = -err;
    if (c->next < c->n || c->inflight == 0)
        start_next(c); /* a failure frees the slot: no need to wait for the stagger */
}

static void on_deadline(rill_timer *t, void *arg)
{
    connector *c = arg;
    (void)t;
    c->deadline = NULL;
    connector_fail(c, RILL_ETIMEDOUT);
}

/* ---- name resolution ------------------------------------------------------------------ */

static void resolve_work(void *arg)
{
    resolve_job *j = arg;
    struct addrinfo hints = {0};
    hints.ai_family = j->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    j->rc = getaddrinfo(j->host, NULL, &hints, &j->res);
    j->err = errno;
}

/* RFC 8305 section 4: alternate the families, starting with the resolver's first choice
 * (getaddrinfo already sorted by RFC 6724), so one dead family costs one delay at most. */
void rill__addr_interleave(rill_addr *v, size_t n)
{
    rill_addr tmp[MAX_ADDRS];
    bool used[MAX_ADDRS] = {false};
    assert(n <= MAX_ADDRS);
    int want = n ? v[0].ss.ss_family : AF_UNSPEC;
    for (size_t k = 0; k < n; k++) {
        size_t pick = SIZE_MAX, any = SIZE_MAX;
        for (size_t i = 0; i < n && pick == SIZE_MAX; i++) {
            if (used[i])
                continue;
            if (any == SIZE_MAX)
                any = i;
            if (v[i].ss.ss_family == want)
                pick = i;
        }
        if (pick == SIZE_MAX)
            pick = any;
        used[pick] = true;
        tmp[k] = v[pick];
        want = v[pick].ss.ss_family == AF_INET6 ? AF_INET : AF_INET6;
    }
    memcpy(v, tmp, n * sizeof *v);
}

static void set_port(rill_addr *a, uint16_t port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
    else if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

static int connector_set_addrs(connector *c, const struct addrinfo *res)
{
    size_t n = 0;
    for (const struct addrinfo *p = res; p && n < MAX_ADDRS; p = p->ai_next)
        if ((p->ai_family == AF_INET || p->ai_family == AF_INET6) &&
            p->ai_addrlen <= sizeof c->src.ss)
            n++;
    c->addrs = rill__calloc(n ? n : 1, sizeof *c->addrs);
    c->att = rill__calloc(n ? n : 1, sizeof *c->att);
    if (!c->addrs || !c->att)
        return RILL_ENOMEM;
    for (const struct addrinfo *p = res; p && c->n < n; p = p->ai_next) {
        if ((p->ai_family != AF_INET && p->ai_family != AF_INET6) ||
            p->ai_addrlen > sizeof c->src.ss)
            continue;
        rill_addr *a = &c->addrs[c->n];
        memcpy(&a->ss, p->ai_addr, p->ai_addrlen);
        a->len = p->ai_addrlen;
        set_port(a, c->port);
        c->att[c->n++].io.fd = -1;
    }
    rill__addr_interleave(c->addrs, c->n);
    return n ? 0 : RILL_EAI_NODATA;
}

static void resolve_done(void *arg, int status)
{
    resolve_job *j = arg;
    rill_stream *s = j->s;
    if (!(s->flags & RILL__S_CLOSED)) { /* closed meanwhile: nobody wants the answer */
        connector *c = rill__tpdata(s);
        assert(c); /* attempts start only after the answer: nothing connected meanwhile */
        int rc = status;
        if (rc == 0 && j->rc) {
            errno = j->err; /* EAI_SYSTEM reads the cause from errno */
            rc = rill__gai_error(j->rc);
        }
        if (rc == 0)
            rc = connector_set_addrs(c, j->res);
        if (rc < 0)
            connector_fail(c, rc);
        else
            start_next(c);
    }
    if (j->res)
        freeaddrinfo(j->res);
    rill__free(j->host);
    rill__free(j);
    rill_stream_unref(s);
}

static void resolve_start(connector *c)
{
    resolve_job *j = rill__calloc(1, sizeof *j);
    if (!j) {
        connector_fail(c, RILL_ENOMEM);
        return;
    }
    j->host = c->host;
    c->host = NULL;
    j->family = c->have_src ? c->src.ss.ss_family : AF_UNSPEC;
    j->s = rill_stream_ref(c->s);
    int rc = rill_loop_work(c->s->loop, resolve_work, resolve_done, j);
    if (rc < 0) {
        rill__free(j->host);
        rill__free(j);
        rill_stream_unref(c->s);
        connector_fail(c, rc);
    }
}

/* The connector's deferred call: starts the work outside the user's call, so that no
 * event can fire inside rill_tcp_connect; after release it frees the memory. */
static void connector_defer(rill__defer *d)
{
    connector *c = rill__container_of(d, connector, defer);
    if (c->dead)
        connector_free(c);
    else if (c->host)
        resolve_start(c);
    else
        start_next(c);
}

/* ---- connecting ------------------------------------------------------------------------ */

static connector *connector_new(const rill_addr *addrs, size_t n, const rill_addr *src,
                                const rill_connect_opts *opts)
{
    connector *c = rill__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->addrs = n ? rill__malloc(n * sizeof *addrs) : NULL;
    c->att = n ? rill__calloc(n, sizeof *c->att) : NULL;
    if (n && (!c->addrs || !c->att)) {
        connector_free(c);
        return NULL;
    }
    if (n)
        memcpy(c->addrs, addrs, n * sizeof *addrs);
    for (size_t i = 0; i < n; i++)
        c->att[i].io.fd = -1;
    c->n = n;
    if (src) {
        c->src = *src;
        c->have_src = true;
    }
    c->src_port = opts ? opts->source_port : 0;
    c->nodelay = opts && opts->nodelay;
    c->keepalive = opts && opts->keepalive;
    rill__defer_init(&c->defer, connector_defer);
    return c;
}

static uint64_t connect_timeout(const rill_connect_opts *opts)
{
    return opts && opts->timeout_ms ? opts->timeout_ms : CONNECT_TIMEOUT_MS;
}

/* Creates the connecting stream for c (addresses known, or c->host to resolve). */
static rill_stream *connect_start(rill_loop *loop, connector *c, const rill_connect_opts *opts,
                                  bool is_unix)
{
    uint64_t ms = connect_timeout(opts);
    if (ms != RILL_NEVER && !(c->deadline = rill_timer_start(loop, ms, 0, on_deadline, c))) {
        connector_free(c);
        errno = ENOMEM;
        return NULL;
    }
    uint32_t f = RILL__S_READABLE | RILL__S_WRITABLE | RILL__S_CONNECTING;
    if (opts && opts->ipc)
        f |= RILL__S_IPC;
    rill_stream *s = rill__stream_new(loop, is_unix ? &unix_transport : &tcp_transport, -1, f);
    if (!s) {
        rill_timer_stop(c->deadline);
        connector_free(c);
        errno = ENOMEM;
        return NULL;
    }
    rill__set_tpdata(s, c);
    c->s = s;
    rill__defer_queue(loop, &c->defer, 0);
    rill__stream_update(s); /* connecting keeps the loop running */
    return s;
}

rill_stream *rill__sock_connect(rill_loop *loop, const rill_addr *addrs, size_t n,
                                const rill_addr *src, const rill_connect_opts *opts)
{
    bool is_unix = n && addrs[0].ss.ss_family == AF_UNIX;
    if (!loop || !addrs || n == 0 || n > MAX_ADDRS || (opts && opts->source_host) ||
        (opts && opts->ipc && !is_unix)) {
        errno = EINVAL;
        return NULL;
    }
    connector *c = connector_new(addrs, n, src, opts);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    return connect_start(loop, c, opts, is_unix);
}

/* A numeric host ("1.2.3.4", "::1", "[::1]", "fe80::1%eth0") as an address: no lookup. */
static int numeric_addr(const char *host, uint16_t port, int flags, rill_addr *out)
{
    char buf[INET6_ADDRSTRLEN + 64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | flags;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return rill__gai_error(rc);
    if (res->ai_addrlen > sizeof out->ss) {
        freeaddrinfo(res);
        return RILL_EINVAL;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    set_port(out, port);
    freeaddrinfo(res);
    return 0;
}

rill_stream *rill_tcp_connect(rill_loop *loop, const char *host, uint16_t port,
                              const rill_connect_opts *opts)
{
    rill_addr addr, src;
    bool have_src = opts && opts->source_host;
    if (!loop || !host || !*host || (opts && opts->ipc) ||
        (have_src && numeric_addr(opts->source_host, opts->source_port, AI_PASSIVE, &src) < 0)) {
        errno = EINVAL;
        return NULL;
    }
    rill_connect_opts o = opts ? *opts : (rill_connect_opts){0};
    o.source_host = NULL; /* parsed into src */
    if (numeric_addr(host, port, 0, &addr) == 0) {
        if (have_src && src.ss.ss_family != addr.ss.ss_family) {
            errno = EINVAL; /* an IPv4 source cannot reach an IPv6 peer, and back */
            return NULL;
        }
        return rill__sock_connect(loop, &addr, 1, have_src ? &src : NULL, &o);
    }
    connector *c = connector_new(NULL, 0, have_src ? &src : NULL, &o);
    if (!c || !(c->host = rill__strdup(host))) {
        if (c)
            connector_free(c);
        errno = ENOMEM;
        return NULL;
    }
    c->port = port;
    return connect_start(loop, c, &o, false);
}

/* ---- listening -------------------------------------------------------------------------- */

/* A listening socket on addr, or a code. */
static int listen_on(const rill_addr *addr, const rill_listen_opts *opts, int backlog)
{
    int family = addr->ss.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rill__errno();
    int rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc == 0 && opts && opts->reuseport)
        rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (rc == 0 && family == AF_INET6)
        rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts && opts->ipv6_only);
    if (rc == 0 && bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
        rc = rill__errno();
    if (rc == 0 && listen(fd, backlog) < 0)
        rc = rill__errno();
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* host NULL: "::" dual-stack, or 0.0.0.0 on a machine without IPv6. */
static int listen_any(uint16_t port, const rill_listen_opts *opts, int backlog, int *family)
{
    rill_addr a;
    numeric_addr("::", port, AI_PASSIVE, &a);
    int fd = listen_on(&a, opts, backlog);
    *family = AF_INET6;
    if ((fd == RILL_EAFNOSUPPORT || fd == RILL_EADDRNOTAVAIL) && !(opts && opts->ipv6_only)) {
        numeric_addr("0.0.0.0", port, AI_PASSIVE, &a);
        fd = listen_on(&a, opts, backlog);
        *family = AF_INET;
    }
    return fd;
}

/* A name or numeric host: the first of its addresses that binds (resolved here, blocking:
 * listening happens once, at start-up). */
static int listen_host(const char *host, uint16_t port, const rill_listen_opts *opts, int backlog,
                       int *family)
{
    char svc[8];
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(svc, sizeof svc, "%u", (unsigned)port);
    int rc = getaddrinfo(host, svc, &hints, &res);
    if (rc != 0)
        return rill__gai_error(rc);
    int fd = RILL_EAI_NODATA;
    for (const struct addrinfo *p = res; p && fd < 0; p = p->ai_next) {
        if (p->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        rill_addr a = {.len = p->ai_addrlen};
        memcpy(&a.ss, p->ai_addr, p->ai_addrlen);
        fd = listen_on(&a, opts, backlog);
        *family = p->ai_family;
    }
    freeaddrinfo(res);
    return fd;
}

rill_server *rill_tcp_listen(rill_loop *loop, const char *host, uint16_t port,
                             const rill_listen_opts *opts)
{
    if (!loop || (host && !*host) || (opts && (opts->ipc || opts->backlog < 0))) {
        errno = EINVAL;
        return NULL;
    }
    int backlog = opts && opts->backlog ? opts->backlog : DEFAULT_BACKLOG;
    int family = AF_UNSPEC;
    int fd = host ? listen_host(host, port, opts, backlog, &family)
                  : listen_any(port, opts, backlog, &family);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    return rill__server_new(loop, fd, family, NULL, false, 0);
}
