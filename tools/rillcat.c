/* tools/rillcat.c - connects two endpoints (stdio, TCP, Unix sockets, UDP, files, echo) and
 * relays bytes both ways until both directions end: rill's netcat, built on the public API.
 *
 * The shape: an ADDRESS becomes an `end` (one rill_stream, or a UDP peer, or nothing for
 * echo); a `session` joins two ends with one `pump` per direction.  Listen addresses fill
 * one end of a session per connection (per peer for UDP); with -k every connection gets a
 * session of its own.  The pumps are written here rather than with rill_splice because
 * rillcat needs what splice does not offer: ends that are not streams (UDP datagrams, echo,
 * a file that discards what it is sent), byte counts per direction for -v and -p, and
 * the name of the end that failed for the error message. */
#include <rill.h>

#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_DGRAM 65507           /* the largest UDP payload over IPv4 */
#define DGRAM_INFLIGHT 64         /* UDP sends not yet done before the source pauses */
#define DGRAM_BACKLOG (8u << 20)  /* bytes queued toward a slow reader before datagrams drop */
#define LINGER_MS 1000            /* UDP: quiet time after our end before theirs counts as ended */
#define QUEUE_HIGH (1u << 20)     /* a destination's queue pauses its source here... */
#define QUEUE_LOW (256u << 10)    /* ...and resumes it here, before it runs dry */
#define TICK_MS 100               /* progress redraws (at most 10 a second), idle checks */
#define METER_WIDTH 64
#define EXIT_USAGE 2

/* ---- addresses --------------------------------------------------------------------------- */

typedef enum {
    A_STDIO, A_ECHO, A_FILE, A_CREATE, A_APPEND,
    A_TCP, A_TCP_LISTEN, A_UNIX, A_UNIX_LISTEN, A_UDP, A_UDP_LISTEN
} kind;

typedef struct {
    kind kind;
    const char *text; /* as typed: messages name endpoints the way the user did */
    const char *path; /* unix, unix-listen, file, create, append */
    char host[256];   /* tcp, udp; empty on a listen address: every local address */
    uint16_t port;
    rill_addr peer;   /* udp: resolved once, before the loop runs */
} address;

static const struct {
    const char *prefix;
    kind kind;
    const char *form;
} schemes[] = {
    {"tcp:", A_TCP, "tcp:HOST:PORT"},
    {"tcp-listen:", A_TCP_LISTEN, "tcp-listen:[HOST:]PORT"},
    {"unix:", A_UNIX, "unix:PATH"},
    {"unix-listen:", A_UNIX_LISTEN, "unix-listen:PATH"},
    {"udp:", A_UDP, "udp:HOST:PORT"},
    {"udp-listen:", A_UDP_LISTEN, "udp-listen:[HOST:]PORT"},
    {"file:", A_FILE, "file:PATH"},
    {"create:", A_CREATE, "create:PATH"},
    {"append:", A_APPEND, "append:PATH"},
};
#define NSCHEMES (sizeof schemes / sizeof schemes[0])

static char why[320]; /* why the last address or option was refused */

static bool refuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return false;
}

static bool is_listen(kind k)
{
    return k == A_TCP_LISTEN || k == A_UNIX_LISTEN || k == A_UDP_LISTEN;
}

static bool all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* A decimal port, or a service name from /etc/services ("http"). */
static bool parse_port(address *a, const char *s, const char *form)
{
    bool listen = is_listen(a->kind);
    if (!*s)
        return refuse("missing port (expected %s)", form);
    if (!all_digits(s)) {
        struct servent *se = getservbyname(s, a->kind <= A_TCP_LISTEN ? "tcp" : "udp");
        if (!se)
            return refuse("'%s' is not a port number or a known service", s);
        a->port = ntohs((uint16_t)se->s_port);
        return true;
    }
    unsigned long v = strtoul(s, NULL, 10);
    if (strlen(s) > 5 || v > 65535 || (v == 0 && !listen))
        return refuse("port %s is out of range (%s-65535)", s, listen ? "0" : "1");
    a->port = (uint16_t)v;
    return true;
}

/* HOST:PORT, [V6]:PORT, and for listen addresses PORT alone. */
static bool parse_host_port(address *a, const char *rest, const char *form)
{
    bool listen = is_listen(a->kind);
    const char *host = rest, *port = strrchr(rest, ':');
    size_t hlen = 0;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (!close)
            return refuse("missing ']' after the IPv6 address (expected %s)", form);
        if (close[1] != ':')
            return refuse("missing ':PORT' after ']' (expected %s)", form);
        host = rest + 1;
        hlen = (size_t)(close - host);
        port = close + 2;
    } else if (port) {
        hlen = (size_t)(port++ - rest);
        if (memchr(host, ':', hlen))
            return refuse("an IPv6 address needs brackets, as in %.*s[::1]:%s",
                          (int)(strchr(a->text, ':') - a->text + 1), a->text, port);
    } else if (listen) {
        port = rest;
    } else {
        return refuse("missing port (expected %s)", form);
    }
    if (!hlen && !listen)
        return refuse("missing host (expected %s)", form);
    if (hlen >= sizeof a->host)
        return refuse("host name too long");
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    return parse_port(a, port, form);
}

static bool parse_path(address *a, const char *rest, const char *form)
{
    if (!*rest)
        return refuse("missing path (expected %s)", form);
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    bool sock = a->kind == A_UNIX || a->kind == A_UNIX_LISTEN;
    if (sock && strlen(rest) > max)
        return refuse("socket path too long (at most %zu bytes)", max);
    if (sock && !strcmp(rest, "@"))
        return refuse("missing name after '@' (expected %s)", form);
    a->path = rest;
    return true;
}

/* Something that is no address: say what it probably was. */
static bool refuse_unknown(const char *text)
{
    const char *colon = strchr(text, ':'), *last = strrchr(text, ':');
    if (!*text)
        return refuse("empty address");
    if (colon && all_digits(last + 1))
        return refuse("unknown address type; did you mean tcp:%s?", text);
    if (colon)
        return refuse("unknown address type '%.*s:'", (int)(colon - text + 1), text);
    if (all_digits(text))
        return refuse("not an address; did you mean tcp-listen:%s?", text);
    if (access(text, F_OK) == 0)
        return refuse("not an address; did you mean file:%s?", text);
    return refuse("not an address (see the list below)");
}

static bool parse_address(const char *text, address *a)
{
    memset(a, 0, sizeof *a);
    a->text = text;
    if (!strcmp(text, "-") || !strcasecmp(text, "stdio")) {
        a->kind = A_STDIO;
        return true;
    }
    if (!strcasecmp(text, "echo")) {
        a->kind = A_ECHO;
        return true;
    }
    for (size_t i = 0; i < NSCHEMES; i++) {
        size_t n = strlen(schemes[i].prefix);
        if (strncasecmp(text, schemes[i].prefix, n))
            continue;
        a->kind = schemes[i].kind;
        if (a->kind == A_UNIX || a->kind == A_UNIX_LISTEN || (a->kind >= A_FILE && a->kind <= A_APPEND))
            return parse_path(a, text + n, schemes[i].form);
        return parse_host_port(a, text + n, schemes[i].form);
    }
    return refuse_unknown(text);
}

/* ---- options ----------------------------------------------------------------------------- */

static struct {
    bool keep, close_on_eof, verbose;
    int progress;        /* 0: off, 1: when stderr is a terminal, 2: always */
    uint64_t timeout_ms; /* idle timeout; 0: none */
} opt;

static const char usage_text[] =
    "usage: rillcat [OPTIONS] ADDRESS ADDRESS\n"
    "Relays bytes both ways between two endpoints until both directions end.\n"
    "Addresses:  - (or stdio)   echo   tcp:HOST:PORT   tcp-listen:[HOST:]PORT\n"
    "            unix:PATH   unix-listen:PATH   (@NAME: abstract socket)\n"
    "            udp:HOST:PORT   udp-listen:[HOST:]PORT\n"
    "            file:PATH   create:PATH   append:PATH\n"
    "Options:    -k  -t SECONDS  -v  -p  --half-close  --close-on-eof  -h  --version\n";

static const char help_text[] =
    "\n"
    "  -                     stdin and stdout (a terminal, pipe or file)\n"
    "  echo                  sends back what it receives\n"
    "  tcp:HOST:PORT         connects (HOST may be a name, or [IPv6])\n"
    "  tcp-listen:[HOST:]PORT  accepts a connection (port 0: any free port, see -v)\n"
    "  unix:PATH, unix-listen:PATH   the same over a Unix socket\n"
    "  udp:HOST:PORT, udp-listen:[HOST:]PORT   one datagram per message; an empty\n"
    "                        datagram marks the end (rillcat sends one at EOF)\n"
    "  file:PATH             sends the file, then EOF; discards what it receives\n"
    "  create:PATH           writes what it receives into PATH (truncated); sends nothing\n"
    "  append:PATH           the same, appending\n"
    "\n"
    "  -k, --keep-listening  serve every connection to the listen address, each with\n"
    "                        a fresh instance of the other address, until interrupted\n"
    "  -t, --timeout SECS    end when no byte moved for SECS seconds (default: never)\n"
    "  -v, --verbose         connection events on stderr; bytes and throughput at the end\n"
    "  -p, --progress        live transfer meter on stderr when it is a terminal;\n"
    "                        -pp or --progress=force: always\n"
    "      --half-close      EOF on one side shuts down the other side's write half;\n"
    "                        the relay ends when both directions ended (the default)\n"
    "      --close-on-eof    end at the first EOF\n"
    "  -h, --help            this text\n"
    "      --version         rill's version\n"
    "\n"
    "Exit status: 0 when both directions ended cleanly, 1 on an error, 2 on a usage\n"
    "error, 128+N when ended by signal N.\n"
    "\n"
    "Examples:\n"
    "  rillcat - tcp:example.com:80             talk to a web server\n"
    "  rillcat -k tcp-listen:7000 echo          an echo server\n"
    "  rillcat -v file:big.iso tcp:host:9000    send a file\n"
    "  rillcat -k tcp-listen:8080 tcp:db:5432   a TCP proxy\n";

enum { O_HALF = 256, O_CLOSE, O_VERSION };

static const struct option longopts[] = {
    {"keep-listening", no_argument, NULL, 'k'}, {"timeout", required_argument, NULL, 't'},
    {"verbose", no_argument, NULL, 'v'},        {"progress", optional_argument, NULL, 'p'},
    {"half-close", no_argument, NULL, O_HALF},  {"close-on-eof", no_argument, NULL, O_CLOSE},
    {"help", no_argument, NULL, 'h'},           {"version", no_argument, NULL, O_VERSION},
    {NULL, 0, NULL, 0}};

/* "rillcat: WHAT: WHY" (or "rillcat: WHY"), then the usage. */
static int usage_error(const char *what)
{
    fprintf(stderr, "rillcat: %s%s%s\n%s", what ? what : "", what ? ": " : "", why, usage_text);
    return EXIT_USAGE;
}

static bool parse_timeout(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || v > 1e9)
        return refuse("'%s' is not a positive number of seconds", s);
    opt.timeout_ms = (uint64_t)(v * 1000) ? (uint64_t)(v * 1000) : 1;
    return true;
}

static bool parse_progress(const char *arg)
{
    if (!arg)
        opt.progress = opt.progress ? 2 : 1; /* -pp forces */
    else if (!strcmp(arg, "force"))
        opt.progress = 2;
    else if (!strcmp(arg, "auto"))
        opt.progress = 1;
    else
        return refuse("expected --progress, --progress=auto or --progress=force");
    return true;
}

/* Options in any order around the two addresses.  -1: go on; else the exit status. */
static int parse_options(int argc, char **argv)
{
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hkt:vp", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(usage_text, stdout); fputs(help_text, stdout); return 0;
        case O_VERSION: printf("rillcat %s\n", rill_version()); return 0;
        case 'k': opt.keep = true; break;
        case 'v': opt.verbose = true; break;
        case O_HALF: opt.close_on_eof = false; break;
        case O_CLOSE: opt.close_on_eof = true; break;
        case 't':
            if (!parse_timeout(optarg))
                return usage_error("-t");
            break;
        case 'p':
            if (!parse_progress(optarg))
                return usage_error("--progress");
            break;
        case ':': refuse("needs a value"); return usage_error(argv[optind - 1]);
        default: refuse("unknown option"); return usage_error(argv[optind - 1]);
        }
    }
    return -1;
}

/* ---- the run's state ------------------------------------------------------------------------ */

typedef struct session session;
typedef struct pump pump;
typedef struct listener listener;

/* A UDP end: datagrams to and from one peer, on its own socket (udp:) or on the
 * listener's (udp-listen:, whose datagrams find their session by the sender's address). */
typedef struct dgram {
    listener *lst;      /* NULL: the socket is this end's own */
    rill_udp *u;
    rill_addr peer;
    unsigned inflight;   /* sends whose callback has not run yet */
    rill_timer *linger; /* after our end marker: the peer's end, if it sends none */
    bool shutting, got_eof;
} dgram;

/* One side of a session: a stream, a UDP peer, or nothing (echo). */
typedef struct end {
    session *ss;
    const address *addr;
    rill_stream *s;
    dgram dg;
    bool udp, sends, takes; /* a UDP end; it produces bytes; it accepts bytes */
    bool shared;            /* -k with stdio: stdout is every session's; never ended here */
    bool waiting;           /* a listen end before its connection */
    pump *src, *dst;        /* the pump reading from it, the pump writing into it */
    char name[160];
} end;

/* One direction: what `from` produces is written into `to` (the same end for echo). */
struct pump {
    session *ss;
    end *from, *to;
    uint64_t bytes, dropped;
    bool paused, eof, done;
};

/* Two ends and the pumps between them.  Freed when the last reference goes: the session
 * holds one, and so does every callback still to come (shutdowns, UDP sends). */
struct session {
    session *next, *prev;
    unsigned id, refs;
    end e[2];
    pump p[2];
    int npumps;
    bool started, ended;
    double t0;
    uint64_t last_active; /* loop clock, for -t */
    struct {
        rill_stream *s;
        rill_sub *sub;
    } subs[12];
    int nsubs;
};

struct listener {
    const address *addr;
    int side; /* which end of a session its connections fill */
    rill_server *srv;
    rill_udp *u;
};

static struct {
    rill_loop *loop;
    address addr[2];
    listener lst[2];
    session *sessions;   /* live ones */
    unsigned next_id, served;
    int status;          /* the exit status so far */
    bool ending;
    uint64_t total[2];   /* bytes first address -> second, second -> first */
    double t_start, t_first, t_last;
    rill_stream *sigs, *shared_out;
    rill_timer *tick;
    bool meter_on, meter_drawn;
} app;

static int sig_fds[2] = {-1, -1};
static volatile sig_atomic_t caught;

static void session_fail(session *ss, const char *who, int err);
static void session_finish(session *ss, bool graceful);
static void pump_done(pump *p, int status);
static void app_end(void);

/* ---- messages ------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *human(double n, char *buf, size_t cap)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) {
        n /= 1024;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", n, unit[u]);
    return buf;
}

/* Takes the meter's line off the terminal before a message is printed. */
static void meter_clear(void)
{
    if (app.meter_drawn)
        fprintf(stderr, "\r%*s\r", METER_WIDTH, "");
    app.meter_drawn = false;
}

/* A -v line, written at once so that a reader of stderr never sees half of it. */
static void note(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!opt.verbose)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    meter_clear();
    fprintf(stderr, "rillcat: %s\n", line);
}

/* "rillcat: tcp:127.0.0.1:9: connection refused (ECONNREFUSED)" */
static void complain(const char *who, int err)
{
    const char *m = rill_strerror(err);
    bool word = isupper((unsigned char)m[0]) && islower((unsigned char)m[1]); /* not "I/O" */
    meter_clear();
    fprintf(stderr, "rillcat: %s: %c%s (%s)\n", who, word ? tolower((unsigned char)m[0]) : m[0],
            m + 1, rill_err_name(err));
}

static const char *addr_text(const rill_addr *a, char *buf, size_t cap)
{
    if (rill_addr_format(a, buf, cap) < 0)
        snprintf(buf, cap, "?");
    return buf;
}

/* ---- sessions ------------------------------------------------------------------------------ */

static session *session_new(void)
{
    session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    ss->id = ++app.next_id;
    ss->refs = 1;
    for (int i = 0; i < 2; i++) {
        end *e = &ss->e[i];
        e->ss = ss;
        e->addr = &app.addr[i];
        e->waiting = is_listen(e->addr->kind);
        snprintf(e->name, sizeof e->name, "%s", e->addr->text);
    }
    ss->next = app.sessions;
    if (app.sessions)
        app.sessions->prev = ss;
    app.sessions = ss;
    return ss;
}

static void session_ref(session *ss)
{
    ss->refs++;
}

static void session_unref(session *ss)
{
    if (--ss->refs == 0)
        free(ss);
}

/* Subscribes h to one event of a session's stream; session_finish takes it off again. */
static bool watch(session *ss, rill_stream *s, rill_event_type ev, rill_handler *h, end *e)
{
    rill_sub *sub = rill_stream_on(s, ev, h, e);
    if (!sub)
        return false;
    ss->subs[ss->nsubs].s = s;
    ss->subs[ss->nsubs++].sub = sub;
    return true;
}

static void unwatch_all(session *ss)
{
    for (int i = 0; i < ss->nsubs; i++)
        rill_stream_off(ss->subs[i].s, ss->subs[i].sub);
    ss->nsubs = 0;
}

static bool all_done(const session *ss)
{
    for (int i = 0; i < ss->npumps; i++)
        if (!ss->p[i].done)
            return false;
    return true;
}

/* ---- pumps ---------------------------------------------------------------------------------- */

/* Activity for -t.  The loop's clock is read before it waits for I/O; refreshed here, an
 * event that ends a long wait is not dated from before it. */
static void touch(session *ss)
{
    if (!opt.timeout_ms)
        return;
    rill_loop_update_time(app.loop);
    ss->last_active = rill_loop_now(app.loop);
}

static void count(pump *p, size_t len)
{
    p->bytes += len;
    if (p->from == p->to) { /* echo: the bytes went both ways */
        app.total[0] += len;
        app.total[1] += len;
    } else {
        app.total[p->from != &p->ss->e[0]] += len;
    }
}

static void pump_pause(pump *p, bool on)
{
    if (p->paused == on)
        return;
    p->paused = on;
    if (p->from->s && !p->eof)
        (on ? rill_stream_stop : rill_stream_start)(p->from->s);
}

static void pump_resume(pump *p)
{
    if (!p || p->ss->ended)
        return;
    touch(p->ss); /* a slow reader is not an idle one */
    pump_pause(p, false);
}

static int dgram_write(end *e, const char *data, size_t len);

/* Bytes `from` produced: into `to`, pausing `from` while `to` is full (a stream's high water
 * mark, or too many UDP sends in flight).  UDP sources are never paused: a listener's socket
 * is shared, so a slow reader loses datagrams past DGRAM_BACKLOG instead, as UDP may. */
static void pump_data(pump *p, const char *data, size_t len)
{
    session *ss = p->ss;
    end *to = p->to;
    if (ss->ended || p->eof)
        return;
    touch(ss);
    count(p, len);
    if (!to->takes)
        return; /* file: discards what it is sent */
    if (p->from->udp && to->s && rill_stream_write_queue_size(to->s) > DGRAM_BACKLOG) {
        p->dropped++;
        return;
    }
    if (to->addr->kind == A_STDIO)
        meter_clear(); /* stdout may be the meter's terminal: data goes on a line of its own */
    int rc = to->udp ? dgram_write(to, data, len) : rill_stream_write(to->s, data, len, NULL, NULL);
    if (rc < 0)
        session_fail(ss, to->name, rc);
    else if (rc == 1 && !p->from->udp)
        pump_pause(p, true);
}

/* stdout has ended: let whoever reads it see EOF now, not when rillcat exits (our stream
 * wrote through a file description of its own; fd 1 kept the pipe open). */
static void release_stdout(void)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && fd != STDOUT_FILENO) {
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
}

static void on_shut(rill_stream *s, int status, void *arg)
{
    end *e = arg;
    session *ss = e->ss;
    (void)s;
    if (!ss->ended) {
        if (status == 0 && e->addr->kind == A_STDIO)
            release_stdout();
        pump_done(e->dst, status);
    }
    session_unref(ss);
}

/* The pump into e has nothing more: end e's write half once what is queued is written. */
static void end_shutdown(end *e, pump *p)
{
    if (!e->takes || e->shared) {
        pump_done(p, 0);
    } else if (e->udp) {
        e->dg.shutting = true;
        int rc = dgram_write(e, "", 0); /* the empty datagram that marks the end */
        if (rc < 0)
            pump_done(p, rc);
    } else {
        int rc = rill_stream_shutdown(e->s, on_shut, e);
        if (rc < 0)
            pump_done(p, rc);
        else
            session_ref(e->ss);
    }
}

static void pump_eof(pump *p)
{
    if (p->eof || p->ss->ended)
        return;
    p->eof = true;
    if (p->from->sends)
        note("%s: end of input after %" PRIu64 " bytes", p->from->name, p->bytes);
    end_shutdown(p->to, p);
}

static void pump_done(pump *p, int status)
{
    session *ss = p->ss;
    if (ss->ended)
        return;
    if (status < 0) {
        session_fail(ss, p->to->name, status);
        return;
    }
    p->done = true;
    if (opt.close_on_eof || all_done(ss))
        session_finish(ss, true);
}

static void pump_init(pump *p, end *from, end *to)
{
    p->ss = from->ss;
    p->from = from;
    p->to = to;
    from->src = p;
    to->dst = p;
}

/* ---- UDP ends ----------------------------------------------------------------------------- */

static void dgram_deliver(end *e, const char *data, size_t len);

/* A peer that is not rillcat sends no end marker: once ours is sent, a second without a
 * datagram ends its direction too (each datagram restarts the wait). */
static void on_linger(rill_timer *t, void *arg)
{
    end *e = arg;
    (void)t;
    e->dg.linger = NULL;
    dgram_deliver(e, "", 0);
}

static void linger_arm(end *e)
{
    rill_timer_stop(e->dg.linger);
    e->dg.linger = NULL;
    if (!e->dg.got_eof)
        e->dg.linger = rill_timer_start(app.loop, LINGER_MS, 0, on_linger, e);
}

static void on_sent(rill_udp *u, int status, void *arg)
{
    end *e = arg;
    session *ss = e->ss;
    (void)u;
    e->dg.inflight--;
    if (!ss->ended && status < 0)
        session_fail(ss, e->name, status);
    else if (!ss->ended && !e->dg.inflight && e->dg.shutting)
        linger_arm(e), pump_done(e->dst, 0);
    else if (!ss->ended && !e->dg.inflight)
        pump_resume(e->dst);
    session_unref(ss);
}

/* One datagram per MAX_DGRAM bytes; an empty write sends one empty datagram.  Returns 1
 * when enough sends are in flight that the source should wait. */
static int dgram_write(end *e, const char *data, size_t len)
{
    do {
        size_t n = len < MAX_DGRAM ? len : MAX_DGRAM;
        int rc = rill_udp_send(e->dg.u, data, n, &e->dg.peer, on_sent, e);
        if (rc < 0)
            return rc;
        e->dg.inflight++;
        session_ref(e->ss);
        data += n;
        len -= n;
    } while (len);
    return e->dg.inflight >= DGRAM_INFLIGHT;
}

static void dgram_deliver(end *e, const char *data, size_t len)
{
    session *ss = e->ss;
    if (!ss->started || ss->ended || e->dg.got_eof || !e->src)
        return; /* nothing reads before the session starts: such a datagram is lost */
    if (e->dg.linger)
        linger_arm(e);
    if (len == 0) {
        e->dg.got_eof = true;
        linger_arm(e); /* stops it */
        pump_eof(e->src);
    } else {
        pump_data(e->src, data, len);
    }
}

static bool addr_same(const rill_addr *a, const rill_addr *b)
{
    const struct sockaddr_in *a4 = (const void *)&a->ss, *b4 = (const void *)&b->ss;
    const struct sockaddr_in6 *a6 = (const void *)&a->ss, *b6 = (const void *)&b->ss;
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET)
        return a4->sin_port == b4->sin_port && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    return a6->sin6_port == b6->sin6_port && a6->sin6_scope_id == b6->sin6_scope_id &&
           !memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof a6->sin6_addr);
}

static void on_client_dgram(rill_udp *u, const char *data, size_t len, const rill_addr *from,
                            int err, void *arg)
{
    end *e = arg;
    char buf[80];
    (void)u;
    if (err && err != RILL_UDP_TRUNCATED)
        return; /* a failed receive says nothing about the peer */
    if (!addr_same(from, &e->dg.peer)) {
        note("ignoring a datagram from %s", addr_text(from, buf, sizeof buf));
        return;
    }
    if (err)
        note("%s: a datagram was cut to the receive buffer", e->name);
    dgram_deliver(e, data, len);
}

/* udp:HOST:PORT - a socket of its own, bound to any local address of the peer's family. */
static int dgram_open(end *e)
{
    dgram *d = &e->dg;
    char buf[80];
    d->peer = e->addr->peer;
    if (!(d->u = rill_udp_new(app.loop)))
        return -errno;
    int rc = rill_udp_bind(d->u, d->peer.ss.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0, 0);
    if (rc == 0)
        rc = rill_udp_start(d->u, on_client_dgram, e);
    if (rc < 0) {
        rill_udp_close(d->u);
        d->u = NULL;
        return rc;
    }
    e->udp = e->sends = e->takes = true;
    note("sending datagrams to %s (%s)", e->name, addr_text(&d->peer, buf, sizeof buf));
    return 0;
}

static void dgram_close(end *e)
{
    rill_timer_stop(e->dg.linger);
    e->dg.linger = NULL;
    if (!e->dg.lst)
        rill_udp_close(e->dg.u); /* sends still queued complete with RILL_ECANCELED */
}

/* ---- stream ends ---------------------------------------------------------------------------- */

static int stdio_open(end *e)
{
    if (opt.keep) { /* every connection writes into the one stdout; stdin is not read */
        if (!app.shared_out && !(app.shared_out = rill_stdout(app.loop)))
            return -errno;
        e->s = app.shared_out;
        e->shared = e->takes = true;
        return 0;
    }
    rill_stream *in = rill_stdin(app.loop), *out = in ? rill_stdout(app.loop) : NULL;
    if (in && out)
        e->s = rill_stream_compose(app.loop, in, out);
    if (!e->s) {
        int err = -errno;
        rill_stream_unref(in);
        rill_stream_unref(out);
        return err;
    }
    e->sends = e->takes = true;
    return 0;
}

static int file_open(end *e, int flags)
{
    e->s = rill_file_open(app.loop, e->addr->path, flags | O_CLOEXEC, 0666);
    if (!e->s)
        return -errno;
    e->sends = (flags & O_ACCMODE) == O_RDONLY;
    e->takes = !e->sends;
    return 0;
}

static int connect_open(end *e)
{
    const address *a = e->addr;
    rill_connect_opts o = {.timeout_ms = opt.timeout_ms, .nodelay = a->kind == A_TCP};
    e->s = a->kind == A_TCP ? rill_tcp_connect(app.loop, a->host, a->port, &o)
                            : rill_unix_connect(app.loop, a->path, &o);
    if (!e->s)
        return -errno;
    e->sends = e->takes = true;
    return 0;
}

/* Opens what an address names, for one session.  Listen ends are filled by listeners. */
static int end_open(end *e)
{
    switch (e->addr->kind) {
    case A_STDIO: return stdio_open(e);
    case A_FILE: return file_open(e, O_RDONLY);
    case A_CREATE: return file_open(e, O_WRONLY | O_CREAT | O_TRUNC);
    case A_APPEND: return file_open(e, O_WRONLY | O_CREAT | O_APPEND);
    case A_TCP:
    case A_UNIX: return connect_open(e);
    case A_UDP: return dgram_open(e);
    default: return 0; /* echo, and listen ends */
    }
}

static void end_close(end *e, bool graceful)
{
    if (e->udp && e->dg.u)
        dgram_close(e);
    if (!e->s || e->shared)
        return;
    if (graceful)
        rill_stream_close_gracefully(e->s);
    else
        rill_stream_close(e->s);
    e->s = NULL;
}

static void on_connect(end *e)
{
    char buf[120] = "";
    rill_addr peer;
    if (rill_stream_peername(e->s, &peer) == 0)
        addr_text(&peer, buf, sizeof buf);
    note("connected to %s%s%s%s", e->name, *buf ? " (" : "", buf, *buf ? ")" : "");
}

/* Every event of every stream of a session comes here; arg is the end. */
static void on_event(rill_stream *s, const rill_event *ev, void *arg)
{
    end *e = arg;
    (void)s;
    switch (ev->type) {
    case RILL_EV_READ: pump_data(e->src, ev->data, ev->len); break;
    case RILL_EV_EOF: pump_eof(e->src); break;
    case RILL_EV_DRAIN: pump_resume(e->dst); break;
    case RILL_EV_CONNECT: on_connect(e); break;
    case RILL_EV_ERROR: session_fail(e->ss, e->name, ev->err); break;
    case RILL_EV_CLOSE: /* closed under us: session_finish unsubscribes before it closes */
        session_fail(e->ss, e->name, ev->err ? ev->err : RILL_ECLOSED);
        break;
    default: break;
    }
}

/* The events a session needs from one end's stream. */
static bool watch_end(end *e)
{
    rill_event_type evs[6];
    int n = 0;
    if (!e->s)
        return true;
    rill_stream_set_timeout(e->s, 0); /* sockets default to 15 s; -t is rillcat's own */
    rill_stream_set_watermarks(e->s, QUEUE_LOW, QUEUE_HIGH);
    evs[n++] = RILL_EV_ERROR;
    if (!e->shared)
        evs[n++] = RILL_EV_CLOSE;
    if (e->sends) {
        evs[n++] = RILL_EV_READ;
        evs[n++] = RILL_EV_EOF;
    }
    if (e->takes)
        evs[n++] = RILL_EV_DRAIN;
    if (e->addr->kind == A_TCP || e->addr->kind == A_UNIX)
        evs[n++] = RILL_EV_CONNECT;
    for (int i = 0; i < n; i++)
        if (!watch(e->ss, e->s, evs[i], on_event, e))
            return false;
    return true;
}

/* ---- starting and ending sessions ------------------------------------------------------------- */

/* Both ends are open: wire the pumps and let bytes flow.  An end that sends nothing (create:,
 * the stdout of -k) ends its direction at once. */
static void session_start(session *ss)
{
    end *a = &ss->e[0], *b = &ss->e[1];
    if (a->addr->kind == A_ECHO || b->addr->kind == A_ECHO) {
        end *x = a->addr->kind == A_ECHO ? b : a;
        pump_init(&ss->p[0], x, x);
        ss->npumps = 1;
    } else {
        pump_init(&ss->p[0], a, b);
        pump_init(&ss->p[1], b, a);
        ss->npumps = 2;
    }
    if (!watch_end(a) || !watch_end(b)) {
        session_fail(ss, "rillcat", RILL_ENOMEM);
        return;
    }
    ss->started = true;
    ss->t0 = now_s();
    if (!app.t_first)
        app.t_first = ss->t0;
    touch(ss);
    session_ref(ss); /* a pump may end the session in here */
    for (int i = 0; i < ss->npumps && !ss->ended; i++) {
        pump *p = &ss->p[i];
        int rc = p->from->sends && p->from->s ? rill_stream_start(p->from->s) : 0;
        if (rc < 0)
            session_fail(ss, p->from->name, rc);
        else if (!p->from->sends)
            pump_eof(p);
    }
    session_unref(ss);
}

/* Starts a session once every listen end has its connection.  The other ends open only then,
 * so that each connection gets a connect, a file or a stdout of its own. */
static void session_try_start(session *ss)
{
    for (int i = 0; i < 2; i++)
        if (ss->e[i].waiting)
            return;
    for (int i = 0; i < 2; i++) {
        int rc = is_listen(ss->e[i].addr->kind) ? 0 : end_open(&ss->e[i]);
        if (rc < 0) {
            session_fail(ss, ss->e[i].name, rc);
            return;
        }
    }
    session_start(ss);
}

static void session_fail(session *ss, const char *who, int err)
{
    if (ss->ended)
        return;
    complain(who, err);
    if (!opt.keep)
        app.status = 1;
    session_finish(ss, false);
}

/* -k -v: one line per connection when it ends. */
static void session_report(const session *ss)
{
    const end *l = is_listen(ss->e[0].addr->kind) ? &ss->e[0] : &ss->e[1];
    uint64_t in = l->src ? l->src->bytes : 0, out = l->dst ? l->dst->bytes : 0;
    uint64_t dropped = ss->p[0].dropped + ss->p[1].dropped;
    note("#%u %s: %" PRIu64 " bytes in, %" PRIu64 " out, %.3f s%s", ss->id, l->name, in, out,
         app.t_last - ss->t0, dropped ? " (datagrams dropped)" : "");
}

/* Ends a session: graceful when both directions finished (queued bytes are still written),
 * abrupt after an error or a signal. */
static void session_finish(session *ss, bool graceful)
{
    ss->ended = true;
    unwatch_all(ss);
    end_close(&ss->e[0], graceful);
    end_close(&ss->e[1], graceful);
    if (ss->prev)
        ss->prev->next = ss->next;
    else
        app.sessions = ss->next;
    if (ss->next)
        ss->next->prev = ss->prev;
    app.t_last = now_s();
    app.served += ss->started;
    if (ss->started && opt.keep)
        session_report(ss);
    session_unref(ss);
    if (!opt.keep)
        app_end();
}

/* ---- listeners ----------------------------------------------------------------------------- */

/* The session a new connection on l joins: a new one with -k, else the one session while
 * its end still waits.  NULL: turn the connection away. */
static session *session_for(const listener *l)
{
    if (app.ending)
        return NULL;
    if (opt.keep)
        return session_new();
    session *ss = app.sessions;
    return ss && ss->e[l->side].waiting ? ss : NULL;
}

static void name_connection(end *e, unsigned id)
{
    char buf[120];
    rill_addr peer;
    pid_t pid;
    if (e->addr->kind == A_TCP_LISTEN && rill_stream_peername(e->s, &peer) == 0)
        snprintf(e->name, sizeof e->name, "tcp:%s", addr_text(&peer, buf, sizeof buf));
    else if (rill_stream_peercred(e->s, &pid, NULL, NULL) == 0)
        snprintf(e->name, sizeof e->name, "%s (pid %ld)", e->addr->text, (long)pid);
    note("connection #%u from %s", id, e->name);
}

static void on_server(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err,
                      void *arg)
{
    listener *l = arg;
    (void)srv;
    if (ev == RILL_SEV_ERROR)
        complain(l->addr->text, err); /* a failed accept; the server goes on */
    if (ev != RILL_SEV_CONNECTION)
        return;
    session *ss = session_for(l);
    if (!ss) {
        note("%s: turning a connection away (one at a time without -k)", l->addr->text);
        rill_stream_close(conn);
        return;
    }
    end *e = &ss->e[l->side];
    e->s = conn;
    e->sends = e->takes = true;
    e->waiting = false;
    name_connection(e, ss->id);
    session_try_start(ss);
}

/* A datagram from a peer no session knows yet: the end it fills, or NULL. */
static end *dgram_accept(listener *l, const rill_addr *from)
{
    char buf[80];
    session *ss = session_for(l);
    if (!ss) {
        note("ignoring a datagram from %s", addr_text(from, buf, sizeof buf));
        return NULL;
    }
    end *e = &ss->e[l->side];
    e->dg = (dgram){.lst = l, .u = l->u, .peer = *from};
    e->udp = e->sends = e->takes = true;
    e->waiting = false;
    snprintf(e->name, sizeof e->name, "udp:%s", addr_text(from, buf, sizeof buf));
    note("datagrams from %s (#%u)", e->name, ss->id);
    return e;
}

static end *dgram_owner(listener *l, const rill_addr *from)
{
    for (session *ss = app.sessions; ss; ss = ss->next) {
        end *e = &ss->e[l->side];
        if (e->udp && e->dg.lst == l && addr_same(&e->dg.peer, from))
            return e;
    }
    return NULL;
}

static void on_listen_dgram(rill_udp *u, const char *data, size_t len, const rill_addr *from,
                            int err, void *arg)
{
    listener *l = arg;
    (void)u;
    if (err && err != RILL_UDP_TRUNCATED)
        return;
    end *e = dgram_owner(l, from);
    bool fresh = !e;
    if (fresh && (!len || !(e = dgram_accept(l, from))))
        return; /* an end marker opens nothing */
    session *ss = e->ss;
    session_ref(ss);
    if (fresh)
        session_try_start(ss);
    dgram_deliver(e, data, len);
    session_unref(ss);
}

static void announce(const listener *l)
{
    rill_addr a;
    char buf[120];
    int rc = l->srv ? rill_server_sockname(l->srv, &a) : rill_udp_sockname(l->u, &a);
    if (l->addr->kind == A_UNIX_LISTEN || rc < 0)
        note("listening on %s", l->addr->text);
    else
        note("listening on %s (%s)", addr_text(&a, buf, sizeof buf), l->addr->text);
}

static int udp_listen(listener *l)
{
    const address *a = l->addr;
    if (!(l->u = rill_udp_new(app.loop)))
        return -errno;
    int rc = rill_udp_bind(l->u, *a->host ? a->host : NULL, a->port, 0);
    if (rc == 0)
        rc = rill_udp_start(l->u, on_listen_dgram, l);
    if (rc < 0) {
        rill_udp_close(l->u);
        l->u = NULL;
    }
    return rc;
}

static int listener_open(listener *l)
{
    const address *a = l->addr;
    int rc = 0;
    if (a->kind == A_UDP_LISTEN)
        rc = udp_listen(l);
    else if (a->kind == A_TCP_LISTEN)
        l->srv = rill_tcp_listen(app.loop, *a->host ? a->host : NULL, a->port, NULL);
    else
        l->srv = rill_unix_listen(app.loop, a->path, NULL);
    if (a->kind != A_UDP_LISTEN && !l->srv)
        rc = -errno;
    else if (l->srv && (!rill_server_on(l->srv, RILL_SEV_CONNECTION, on_server, l) ||
                        !rill_server_on(l->srv, RILL_SEV_ERROR, on_server, l)))
        rc = RILL_ENOMEM;
    if (rc == 0)
        announce(l);
    return rc;
}

/* ---- the whole run: signals, meter, idle timeout, the end --------------------------------------- */

/* Closes what keeps the loop running, so that rill_loop_run returns once the sessions' last
 * bytes are written. */
static void app_end(void)
{
    if (app.ending)
        return;
    app.ending = true;
    for (int i = 0; i < 2; i++) {
        if (app.lst[i].srv)
            rill_server_close(app.lst[i].srv);
        if (app.lst[i].u)
            rill_udp_close(app.lst[i].u);
    }
    rill_stream_close(app.sigs);
    rill_timer_stop(app.tick);
    app.tick = NULL;
    if (app.shared_out)
        rill_stream_close_gracefully(app.shared_out);
}

static void app_stop(int sig)
{
    note("%s: stopping", strsignal(sig));
    app.status = 128 + sig;
    while (app.sessions)
        session_finish(app.sessions, false);
    app_end();
}

/* The handler only writes a byte into a pipe the loop watches (nothing else is safe in
 * a signal handler); a second signal leaves at once. */
static void on_signal(int sig)
{
    int saved = errno;
    if (caught) {
        rill_tty_reset();
        _exit(128 + sig);
    }
    caught = sig;
    ssize_t n = write(sig_fds[1], "!", 1);
    (void)n;
    errno = saved;
}

static void on_sigs(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev, (void)arg;
    if (caught && !app.ending)
        app_stop(caught);
}

static int signals_open(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa = {.sa_handler = on_signal};
    if (pipe2(sig_fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    if (!(app.sigs = rill_fd_open(app.loop, sig_fds[0], RILL_READONLY)))
        return -errno;
    if (!rill_stream_on(app.sigs, RILL_EV_READ, on_sigs, NULL))
        return RILL_ENOMEM;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return rill_stream_start(app.sigs);
}

/* One line, redrawn in place: bytes each way, the rate over the last second, the time. */
static void meter_draw(bool final)
{
    static uint64_t ring[1000 / TICK_MS], drawn;
    static unsigned ticks;
    char a[24], b[24], r[24], line[METER_WIDTH + 32];
    uint64_t cur = app.total[0] + app.total[1];
    unsigned slot = ticks++ % (1000 / TICK_MS);
    double window = ticks < 1000 / TICK_MS ? ticks * TICK_MS / 1000.0 : 1.0;
    double rate = (double)(cur - ring[slot]) / window, el = now_s() - app.t_start;
    ring[slot] = cur;
    if (!final && cur == drawn && slot) /* unchanged: redraw once a second for the clock */
        return;
    drawn = cur;
    int n = snprintf(line, sizeof line, "-> %-10s <- %-10s %10s/s  %u:%02u",
                     human((double)app.total[0], a, sizeof a), human((double)app.total[1], b, sizeof b),
                     human(rate, r, sizeof r), (unsigned)el / 60, (unsigned)el % 60);
    if (opt.keep && n > 0)
        snprintf(line + n, sizeof line - (size_t)n, "  %u served", app.served);
    fprintf(stderr, "\r%-*s", METER_WIDTH, line);
    app.meter_drawn = !final;
    if (final)
        fputc('\n', stderr);
}

static void idle_check(void)
{
    uint64_t now = rill_loop_now(app.loop);
    char who[sizeof ((end *)0)->name + 40];
    for (session *ss = app.sessions, *next; ss; ss = next) {
        next = ss->next;
        if (!ss->started || now - ss->last_active < opt.timeout_ms)
            continue;
        snprintf(who, sizeof who, "%s%sno data for %g s", opt.keep ? ss->e[0].name : "",
                 opt.keep ? ": " : "", (double)opt.timeout_ms / 1000);
        session_fail(ss, who, RILL_ETIMEDOUT);
    }
}

static void on_tick(rill_timer *t, void *arg)
{
    (void)t, (void)arg;
    if (opt.timeout_ms)
        idle_check();
    if (app.meter_on && !app.ending)
        meter_draw(false);
}

static void summary(void)
{
    char h[24];
    double secs = app.t_first ? app.t_last - app.t_first : 0;
    uint64_t all = app.total[0] + app.total[1];
    if (app.meter_on)
        meter_draw(true);
    note("%s -> %s: %" PRIu64 " bytes (%s)", app.addr[0].text, app.addr[1].text, app.total[0],
         human((double)app.total[0], h, sizeof h));
    note("%s -> %s: %" PRIu64 " bytes (%s)", app.addr[1].text, app.addr[0].text, app.total[1],
         human((double)app.total[1], h, sizeof h));
    if (opt.keep)
        note("%u connection%s served", app.served, app.served == 1 ? "" : "s");
    if (secs >= 0.001)
        note("%.3f s, %s/s", secs, human((double)all / secs, h, sizeof h));
}

/* ---- main ---------------------------------------------------------------------------------- */

/* Two addresses that make sense together.  -1: go on; else the exit status. */
static int check_pair(int n, char **args)
{
    int listens = 0;
    if (n != 2) {
        refuse("expected two addresses, got %d", n);
        return usage_error(NULL);
    }
    for (int i = 0; i < 2; i++) {
        if (!parse_address(args[i], &app.addr[i]))
            return usage_error(*args[i] ? args[i] : NULL);
        listens += is_listen(app.addr[i].kind);
    }
    if (app.addr[0].kind == app.addr[1].kind && app.addr[0].kind <= A_ECHO)
        refuse("%s on both sides", app.addr[0].kind == A_ECHO ? "echo" : "stdio");
    else if (opt.keep && listens != 1)
        refuse("needs exactly one listen address (%s)", listens ? "there are two" : "there is none");
    else
        return -1;
    return usage_error(opt.keep && listens != 1 ? "-k" : NULL);
}

static int gai_code(int rc)
{
    switch (rc) {
    case EAI_AGAIN: return RILL_EAI_AGAIN;
    case EAI_FAIL: return RILL_EAI_FAIL;
    case EAI_FAMILY: return RILL_EAI_FAMILY;
    case EAI_MEMORY: return RILL_EAI_MEMORY;
    case EAI_SYSTEM: return -errno;
    default: return RILL_EAI_NONAME;
    }
}

static int resolve_peer(address *a)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res;
    int rc = getaddrinfo(a->host, NULL, &hints, &res);
    if (rc != 0)
        return gai_code(rc);
    memcpy(&a->peer.ss, res->ai_addr, res->ai_addrlen);
    a->peer.len = res->ai_addrlen;
    freeaddrinfo(res);
    if (a->peer.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->peer.ss)->sin_port = htons(a->port);
    else
        ((struct sockaddr_in6 *)&a->peer.ss)->sin6_port = htons(a->port);
    return 0;
}

/* What can fail before anything runs: a file to send that cannot be read, a UDP peer whose
 * name does not resolve.  Failing here saves waiting for a connection to learn it. */
static bool prepare(void)
{
    for (int i = 0; i < 2; i++) {
        address *a = &app.addr[i];
        int rc = 0;
        if (a->kind == A_FILE && access(a->path, R_OK) < 0)
            rc = -errno;
        else if (a->kind == A_UDP)
            rc = resolve_peer(a);
        if (rc < 0) {
            complain(a->text, rc);
            return false;
        }
    }
    return true;
}

static void run(void)
{
    int rc = signals_open();
    if (rc < 0) {
        complain("signals", rc);
        app.status = 1;
        app_end();
    }
    for (int i = 0; i < 2 && !app.ending; i++) {
        app.lst[i] = (listener){.addr = &app.addr[i], .side = i};
        if (is_listen(app.addr[i].kind) && (rc = listener_open(&app.lst[i])) < 0) {
            complain(app.addr[i].text, rc);
            app.status = 1;
            app_end();
        }
    }
    if (!app.ending && !opt.keep) {
        session *ss = session_new();
        if (ss)
            session_try_start(ss);
        else
            complain("rillcat", RILL_ENOMEM), app.status = 1, app_end();
    }
    app.meter_on = opt.progress == 2 || (opt.progress == 1 && isatty(STDERR_FILENO));
    if (!app.ending && (app.meter_on || opt.timeout_ms))
        app.tick = rill_timer_start(app.loop, TICK_MS, TICK_MS, on_tick, NULL);
    rill_loop_run(app.loop, RILL_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
    int rc = parse_options(argc, argv);
    if (rc < 0)
        rc = check_pair(argc - optind, argv + optind);
    if (rc >= 0)
        return rc;
    if (!prepare())
        return 1;
    if (!(app.loop = rill_loop_new(NULL))) {
        complain("rillcat", -errno);
        return 1;
    }
    app.t_start = now_s();
    run();
    summary();
    rc = rill_loop_free(app.loop);
    if (rc < 0)
        complain("rillcat: freeing the loop", rc);
    for (int i = 0; i < 2; i++)
        if (sig_fds[i] >= 0)
            close(sig_fds[i]);
    rill_tty_reset();
    return app.status;
}
