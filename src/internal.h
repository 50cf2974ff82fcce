/* src/internal.h - private declarations shared between rill's source files.  Nothing here
 * is public; tests may include it to check internal counters. */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "rill.h"
#include "rill_config.h"

#define rill__container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define RILL__MIN(a, b) ((a) < (b) ? (a) : (b))
#define RILL__MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- core.c: allocation and logging ------------------------------------------------- */

/* Every allocation of the library goes through these (rill_set_allocator). */
void *rill__malloc(size_t n);
void *rill__calloc(size_t n, size_t size); /* zeroed; overflow-checked */
void *rill__realloc(void *p, size_t n);
void rill__free(void *p);
char *rill__strdup(const char *s);
/* Logs through the rill_set_log hook (default: WARN and ERROR on stderr). */
void rill__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- intrusive doubly linked list (circular, with a head node) ----------------------- */

typedef struct rill__list {
    struct rill__list *next, *prev;
} rill__list;

static inline void rill__list_init(rill__list *h)
{
    h->next = h->prev = h;
}
static inline bool rill__list_empty(const rill__list *h)
{
    return h->next == h;
}
static inline void rill__list_insert_tail(rill__list *h, rill__list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void rill__list_insert_head(rill__list *h, rill__list *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}
/* Unlinks n and makes it a self-loop, so removing twice is harmless. */
static inline void rill__list_remove(rill__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
/* Moves every node of `from` to the tail of `to`; `from` becomes empty. */
static inline void rill__list_splice(rill__list *to, rill__list *from)
{
    if (rill__list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    rill__list_init(from);
}

/* ---- timer.c: 4-ary min-heap ordered by (key, seq) ----------------------------------- */

typedef struct {
    uint64_t key; /* deadline */
    uint64_t seq; /* insertion order breaks ties: FIFO among equal keys */
    size_t idx;   /* position in the heap, SIZE_MAX when not in it */
} rill__hnode;

typedef struct {
    rill__hnode **v;
    size_t len, cap;
    uint64_t seq;
} rill__heap;

void rill__heap_init(rill__heap *h);
void rill__heap_free(rill__heap *h);
/* 0 or RILL_ENOMEM (only when the array must grow). */
int rill__heap_push(rill__heap *h, rill__hnode *n);
void rill__heap_remove(rill__heap *h, rill__hnode *n);
static inline rill__hnode *rill__heap_top(const rill__heap *h)
{
    return h->len ? h->v[0] : NULL;
}

/* Runs due timers (loop.c calls it once per iteration). */
void rill__timers_run(rill_loop *loop);
/* Frees timers left at loop destruction (there are none when rill_loop_free succeeds). */
void rill__timers_free(rill_loop *loop);

/* ---- loop.c: deferred calls, activity, handles --------------------------------------- */

/* A deferred call embedded in its owner: queueing never allocates.  Lower priority first,
 * FIFO among equals; queued calls run in the next iteration's defer phase. */
typedef struct rill__defer {
    rill__list link;
    int priority;
    bool queued;
    void (*fn)(struct rill__defer *d);
} rill__defer;

void rill__defer_init(rill__defer *d, void (*fn)(rill__defer *));
/* Queues d unless it already is (then only a lower priority moves it earlier). */
void rill__defer_queue(rill_loop *loop, rill__defer *d, int priority);
void rill__defer_cancel(rill_loop *loop, rill__defer *d);

/* Active things keep RILL_RUN_DEFAULT running (reading streams, pending writes and
 * connects, listening servers, timers, pool work). */
void rill__loop_ref(rill_loop *loop);
void rill__loop_unref(rill_loop *loop);
/* Open objects (streams, servers, UDP endpoints, timers) make rill_loop_free refuse. */
void rill__handle_add(rill_loop *loop);
void rill__handle_remove(rill_loop *loop);
/* The stream inactivity default from rill_loop_opts (0 = never). */
uint64_t rill__loop_stream_timeout(const rill_loop *loop);
/* True when the calling thread runs rill_loop_run with SIGPIPE blocked. */
extern __attribute__((tls_model("initial-exec"))) _Thread_local int rill__sigpipe_depth;
static inline bool rill__sigpipe_blocked(void)
{
    return rill__sigpipe_depth > 0;
}
/* The loop's first member: what the read path needs without a call. */
typedef struct rill__loop_hot {
    uint64_t now;  /* the cached clock (rill_loop_now) */
    char *scratch; /* the read buffer: RILL__SCRATCH bytes, reused by every read */
} rill__loop_hot;
#define RILL__SCRATCH (64 * 1024)

static inline uint64_t rill__now(const rill_loop *loop)
{
    return ((const rill__loop_hot *)(const void *)loop)->now;
}
/* The loop's read buffer, RILL__SCRATCH bytes (loop thread only). */
static inline char *rill__loop_scratch(rill_loop *loop)
{
    return ((rill__loop_hot *)(void *)loop)->scratch;
}
/* After an EPIPE from a pipe write: consumes the SIGPIPE that write raised, if the thread
 * had it blocked, so it is never delivered. */
void rill__sigpipe_consume(void);

/* ---- inactivity timeouts: one list per distinct timeout value, oldest activity first.
 * Touching a node is O(1) (move to the tail); no heap re-arm per read. ---------------- */

typedef struct rill__tgroup rill__tgroup;
/* 24 bytes: the time and the group share one word (a 48-bit millisecond clock lasts
 * thousands of years; 16 bits number the loop's distinct timeout values). */
typedef struct rill__tnode {
    rill__list link;
    uint64_t state; /* last activity (loop ms) << 16 | group index, 0 when not armed */
} rill__tnode;
#define RILL__TG_MASK 0xffffu

/* expire(node) runs on the loop thread when now >= last + ms; the node is disarmed first. */
void rill__tnode_init(rill__tnode *t);
/* Arms with `ms` (0 disarms); `expire` is the group's callback.  0, RILL_ENOMEM, or
 * RILL_ENOSPC when the loop already has 65,535 distinct timeout values in use. */
int rill__tnode_arm(rill_loop *loop, rill__tnode *t, uint64_t ms, void (*expire)(rill__tnode *));
void rill__tnode_disarm(rill__tnode *t);
/* The armed timeout in ms, 0 when not armed. */
uint64_t rill__tnode_ms(const rill_loop *loop, const rill__tnode *t);
void rill__tnode_move(rill_loop *loop, rill__tnode *t);
/* Records activity: O(1), and only a compare when the node was touched this iteration. */
static inline void rill__tnode_touch(rill_loop *loop, rill__tnode *t)
{
    if ((t->state & RILL__TG_MASK) && (t->state >> 16) != rill__now(loop))
        rill__tnode_move(loop, t);
}

/* ---- pollers (src/poll/): one table per backend --------------------------------------- */

enum { RILL__IO_READ = 1u, RILL__IO_WRITE = 2u, RILL__IO_ERR = 4u };

typedef struct rill__io rill__io;
/* revents: READ / WRITE readiness; errors and hang-ups are reported as READ|WRITE|ERR for
 * the directions being watched, so the next read or write finds the cause. */
typedef void rill__io_cb(rill__io *io, unsigned revents);

struct rill__io {
    rill__io_cb *cb;
    int fd;           /* registered with a poller at most once at a time */
    unsigned mask;    /* what the poller watches now */
};

typedef struct {
    const char *name;
    int (*init)(rill_loop *loop, void **state);
    void (*done)(void *state);
    /* Changes interest from io->mask to mask (0 removes).  0 or a RILL_E* code. */
    int (*set)(void *state, rill__io *io, unsigned mask);
    /* Waits up to timeout_ms (-1 forever) and calls each ready io's cb.  An io whose
     * mask became 0 during dispatch gets no further callback.  Returns events or code. */
    int (*wait)(void *state, int timeout_ms);
} rill__poller;
/* Waits this long or longer are "far": the epoll and uring pollers keep their deadline in
 * a timer that lasts across waits (a timerfd, a ring timeout entry) instead of giving each
 * wait a timeout, which arms and cancels a kernel timer every time it sleeps. */
#define RILL__FAR_MS 1000

extern const rill__poller rill__poller_epoll;
extern const rill__poller rill__poller_poll;
extern const rill__poller rill__poller_uring; /* built with liburing only */
/* The loop's backend state when it runs poller p, else NULL. */
void *rill__loop_pstate(rill_loop *loop, const rill__poller *p);

void rill__io_init(rill__io *io, int fd, rill__io_cb *cb);
/* Sets the watched directions; a no-op when unchanged.  0 or a RILL_E* code. */
int rill__io_set(rill_loop *loop, rill__io *io, unsigned mask);

/* ---- err.c -------------------------------------------------------------------------- */

/* -errno, with EAGAIN/EWOULDBLOCK mapped to RILL_EAGAIN. */
static inline int rill__errno(void)
{
    return errno == EWOULDBLOCK ? RILL_EAGAIN : -errno;
}
/* getaddrinfo's EAI_* (and EAI_SYSTEM with errno) as a RILL_E* code. */
int rill__gai_error(int eai);

/* ---- bytes.c -------------------------------------------------------------------------- */

/* ---- buf.c: a chain of segments (copied blocks or referenced rill_bytes) --------------- */

typedef struct rill__seg rill__seg;

typedef struct {
    rill__seg *head, *tail;
    size_t len;      /* bytes buffered */
    size_t scanned;  /* rill__buf_find: bytes from the start already searched */
    size_t touched;  /* statistics: bytes the finder has examined in total */
    rill__seg *spare; /* one free block kept to avoid malloc churn */
} rill__buf;

void rill__buf_init(rill__buf *b);
/* Releases every segment (and references). */
void rill__buf_free(rill__buf *b);
/* Appends a copy.  0, or RILL_ENOMEM with nothing appended. */
int rill__buf_append(rill__buf *b, const void *data, size_t len);
/* Appends a reference to bytes[off..off+len) (takes a new reference). 0 or RILL_ENOMEM. */
int rill__buf_append_bytes(rill__buf *b, rill_bytes *bytes, size_t off, size_t len);
/* Drops n <= len bytes from the front; adjusts `scanned`. */
void rill__buf_consume(rill__buf *b, size_t n);
/* Copies up to n bytes starting at off into dst; returns how many. */
size_t rill__buf_peek(const rill__buf *b, size_t off, void *dst, size_t n);
/* Fills up to max iovecs with the buffered bytes from the front; returns the count. */
int rill__buf_iov(const rill__buf *b, struct iovec *iov, int max);
/* Makes the first n <= len bytes contiguous and returns them (NULL: RILL_ENOMEM). */
const char *rill__buf_contig(rill__buf *b, size_t n);
/* Searches for delim, resuming where the previous search of this buffer stopped (the
 * caller resets with rill__buf_find_reset when the delimiter changes).  Returns the length
 * of the frame up to and including the delimiter, or RILL_ENOMATCH. */
ssize_t rill__buf_find(rill__buf *b, const void *delim, size_t dlen);
static inline void rill__buf_find_reset(rill__buf *b)
{
    b->scanned = 0;
}

/* ---- streams ------------------------------------------------------------------------- */

/* Transport flags. */
enum {
    RILL__TP_ASYNC = 1u, /* writes complete later (rill__stream_write_done); always queued */
    RILL__TP_SOCKET = 2u, /* the fd is a socket: send with MSG_NOSIGNAL, shutdown(2) */
    RILL__TP_STATE = 4u,  /* keeps state in tpdata: the extension exists from creation */
    RILL__TP_DIRECT = 8u  /* ASYNC over a plain socket fd (usock.c): try_write may send
                           * directly while nothing is queued or in flight */
};

/* What differs between kinds of stream.  NULL entries take the fd defaults (stream.c). */
typedef struct rill__transport {
    const char *name;
    unsigned flags;
    /* Readiness transports: read into buf; >0 bytes, 0 EOF, <0 code (RILL_EAGAIN). */
    ssize_t (*read)(rill_stream *s, void *buf, size_t len);
    /* Bytes accepted, or a code (RILL_EAGAIN: none now).  ASYNC transports: submit and
     * return RILL_EINPROGRESS; the iovec memory stays valid until write_done. */
    ssize_t (*writev)(rill_stream *s, const struct iovec *iov, int n);
    /* Non-fd transports: begin / pause delivering data with rill__stream_deliver.  Called
     * on every state change (must be idempotent); deliver only while started. */
    int (*start)(rill_stream *s);
    int (*stop)(rill_stream *s);
    /* Ends the write half once the queue is empty. 0, RILL_EINPROGRESS (ASYNC) or code. */
    int (*shutdown)(rill_stream *s);
    /* Releases the transport (closes the fd unless stolen).  Runs once. */
    void (*close)(rill_stream *s);
} rill__transport;

extern const rill__transport rill__fd_transport;

/* Stream state flags. */
enum {
    RILL__S_READABLE = 1u << 0,   /* may read at all */
    RILL__S_WRITABLE = 1u << 1,   /* may write at all */
    RILL__S_READING = 1u << 2,    /* user asked to read (start, or framing requests) */
    RILL__S_CONNECTING = 1u << 3, /* writes queue until rill__stream_connected */
    RILL__S_EOF = 1u << 4,        /* the peer finished */
    RILL__S_SHUT = 1u << 5,       /* shutdown requested (no more writes) */
    RILL__S_SHUT_DONE = 1u << 6,
    RILL__S_GRACEFUL = 1u << 7,   /* close once the queue is empty */
    RILL__S_CLOSED = 1u << 8,     /* closed: the transport is released */
    RILL__S_CLOSE_DONE = 1u << 9, /* CLOSE emitted */
    RILL__S_IPC = 1u << 10,
    RILL__S_STOLEN = 1u << 11,    /* fd detached: close must not close it */
    RILL__S_ACTIVE = 1u << 12,    /* holds a loop reference */
    RILL__S_PENDING = 1u << 13,   /* GIO pending flag */
    RILL__S_WATCH_W = 1u << 14,   /* waiting for writability */
    RILL__S_WBUSY = 1u << 15,     /* ASYNC transports: a write is in flight */
    RILL__S_FEEDING = 1u << 16,   /* inside rill__frame_feed: it updates the state once at its end */
    RILL__S_EOF_DONE = 1u << 17,  /* EOF reported (event or graceful close) */
    RILL__S_TIMEOUT_SET = 1u << 18, /* the user chose the inactivity timeout (0 included) */
    RILL__S_QUEUED = 1u << 19,    /* on the loop's queue of streams with deferred work */
    RILL__S_SUBLIST = 1u << 20,   /* subscriptions are in subs.list, not subs.one */
    RILL__S_ONE_ONCE = 1u << 21,  /* subs.one is a once subscription */
    RILL__S_URECV = 1u << 22,     /* usock.c: a multishot receive is in the ring */
    RILL__S_UCANCEL = 1u << 23,   /* usock.c: and its cancel too */
    RILL__S_USEND = 1u << 24,     /* usock.c: a send is in the ring */
    RILL__S_UFREE = 1u << 25,     /* the last reference went while the ring still names the
                                   * stream: the last completion frees it */
    RILL__S_LOWAT = 1u << 26,     /* a read low water mark is set (uring's receive polls first) */
};

/* Work that the stream's deferred call does (never inside the user's call). */
enum {
    RILL__D_DONE = 1u,   /* write completions ready */
    RILL__D_WRITE = 2u,  /* WRITE event with pending byte count */
    RILL__D_DRAIN = 4u,
    RILL__D_ERROR = 8u,  /* an error found inside a user call */
    RILL__D_CLOSE = 16u, /* finish closing: cancel requests, CLOSE, release */
    RILL__D_FRAME = 32u, /* buffered input may satisfy a new framing request */
    RILL__D_SHUT = 64u,  /* shutdown completion */
};

typedef struct rill__wdone rill__wdone;
typedef struct rill__freq rill__freq;

/* A stream's write queue, framing and completion state, allocated on first use: an idle
 * connection (or one whose writes always complete at once) never has one. */
typedef struct rill__sx {
    rill__buf wq;            /* write queue bytes */
    rill__buf in;            /* unconsumed input (framing) */
    rill__list frames;       /* framing requests */
    rill__list wdone;        /* completions, by cumulative byte offset */
    uint64_t wq_written;     /* bytes of the queue written since the extension exists */
    uint64_t wq_total;       /* bytes queued or written since then */
    size_t low, high, max_buffer;
    rill__wdone *wfree;      /* recycled completion records */
    rill__freq *ffree;       /* recycled framing requests */
    rill_done_fn *shut_cb;
    void *shut_arg;
    void *tpdata;            /* the transport's own state (RILL__TP_STATE) */
    void *ipc;               /* ipc.c: fds waiting to go out with the queue's bytes */
    size_t written_pending;  /* for the WRITE event (exists once WRITE has a handler) */
    int pending_err;         /* RILL__D_ERROR, RILL__D_SHUT */
    rill__defer *quiet;      /* usock.c queues it when the ring's receive has ended */
} rill__sx;

#define RILL__DEFAULT_HIGH (64 * 1024)
#define RILL__DEFAULT_MAX_BUFFER (1024 * 1024)

/* 136 bytes: an idle connection is this one allocation (subscribe once, default timeout
 * armed).  Everything else lives in the extension `x`. */
struct rill_stream {
    /* The echo path reads and writes the first cache line, and tnode on the second. */
    rill_loop *loop;
    const rill__transport *tp;
    rill__io io;             /* io.fd: the fd, or -1 */
    uint32_t flags;          /* RILL__S_* */
    int refs;
    uint16_t submask;        /* bit per event type with a live subscription */
    int16_t err;             /* first error (every code fits: they are above -4096) */
    uint8_t dflags;          /* RILL__D_* */
    uint8_t emitting;        /* nesting depth of event dispatch */
    uint8_t one_type;        /* subs.one's event type */
    uint8_t family;          /* AF_* (all fit in a byte) */
    union {
        /* Without RILL__S_SUBLIST: at most one subscription, stored here (h NULL: none).
         * Its handle is &subs.one. */
        struct {
            rill_handler *h;
            void *arg;
        } one;
        /* With it: the list, in order; `was_one` is the node that took over the handle
         * &subs.one when the list began (NULL once that subscription is gone). */
        struct {
            rill_sub *head;
            rill_sub *was_one;
        } list;
    } subs;
    rill__tnode tnode;
    rill__sx *x;             /* NULL until a write queues, a framing request, ... */
    void *data;
    rill_stream *dnext;      /* the loop's stream queue (RILL__S_QUEUED) */
    rill_server *server;     /* the server that accepted it */
    rill__list srv_link;     /* in the server's connection set */
};

/* The stream's extension, created on first use.  NULL: out of memory. */
rill__sx *rill__stream_sx(rill_stream *s);
static inline size_t rill__wq_len(const rill_stream *s)
{
    return s->x ? s->x->wq.len : 0;
}
static inline size_t rill__in_len(const rill_stream *s)
{
    return s->x ? s->x->in.len : 0;
}
static inline bool rill__frames_pending(const rill_stream *s)
{
    return s->x && !rill__list_empty(&s->x->frames);
}
static inline size_t rill__stream_high(const rill_stream *s)
{
    return s->x ? s->x->high : RILL__DEFAULT_HIGH;
}
static inline size_t rill__stream_max_buffer(const rill_stream *s)
{
    return s->x ? s->x->max_buffer : RILL__DEFAULT_MAX_BUFFER;
}
/* The transport's state: set only on RILL__TP_STATE streams (whose extension exists) or
 * after rill__stream_sx succeeded. */
static inline void *rill__tpdata(const rill_stream *s)
{
    return s->x ? s->x->tpdata : NULL;
}
static inline void rill__set_tpdata(rill_stream *s, void *p)
{
    assert(s->x || !p);
    if (s->x)
        s->x->tpdata = p;
}

/* The loop's queue of streams with deferred work (loop.c owns it, stream.c runs it): a
 * singly linked FIFO, so a stream carries one pointer for it, not a deferred call. */
typedef struct rill__squeue {
    rill_stream *head, *tail;
    rill_stream *cut;     /* the tail when the deferred phase began (loop.c sets it) */
    rill_stream *running; /* the batch being run: what it still holds */
    rill_loop *loop;
    rill__defer defer;    /* runs the batch, at priority 0 */
} rill__squeue;
rill__squeue *rill__loop_squeue(rill_loop *loop);
/* Puts s on the queue (a no-op when it is on it): its dflags work runs in the next
 * deferred phase. */
void rill__stream_queue(rill_stream *s);
/* The queue's deferred call (stream.c). */
void rill__stream_run_queue(rill__defer *d);

/* Creates a stream over transport tp (refs 1, open).  fd may be -1.  The caller sets the
 * READABLE / WRITABLE / IPC flags and tpdata (RILL__TP_STATE transports get the extension
 * here).  NULL with errno ENOMEM. */
rill_stream *rill__stream_new(rill_loop *loop, const rill__transport *tp, int fd,
                              uint32_t flags);
/* Readiness transports: the fd's poller callback (shared by every fd transport). */
void rill__stream_io(rill__io *io, unsigned revents);
/* Data arrived (non-fd transports, or a transport's own read path): n > 0 bytes, 0 EOF,
 * < 0 an error.  Runs READ handlers / framing. */
void rill__stream_deliver(rill_stream *s, const char *data, ssize_t n);
/* ASYNC transports: a submitted write finished (n bytes, or a code). */
void rill__stream_write_done(rill_stream *s, ssize_t n);
/* ASYNC transports: a submitted shutdown finished. */
void rill__stream_shutdown_done(rill_stream *s, int status);
/* Connecting transports: the connection is up (status 0: CONNECT, flush queued writes)
 * or failed (ERROR, then close). */
void rill__stream_connected(rill_stream *s, int status);
/* Reports an error from the loop's side: ERROR event (or close when unhandled). */
void rill__stream_error(rill_stream *s, int err);
/* Emits an event to the stream's handlers with a reference held around them. */
void rill__stream_emit(rill_stream *s, const rill_event *ev);
/* Re-evaluates poller interest and the loop reference after a state change. */
void rill__stream_update(rill_stream *s);

/* frame.c: serves queued framing requests from s->in plus new bytes data[0..n) (n may be
 * 0: serve from s->in only).  What no request takes goes to READ handlers when the stream
 * reads for them, else stays in s->in. */
void rill__frame_feed(rill_stream *s, const char *data, size_t n);
/* At EOF / close: completes every request with status (RILL_EOF gives the first request
 * the buffered bytes; RILL_ECANCELED gives none). */
void rill__frame_finish(rill_stream *s, int status);
/* Frees the recycled request records. */
void rill__frame_free(rill_stream *s);
/* True when the stream wants bytes from its transport now. */
bool rill__stream_wants_read(const rill_stream *s);
/* Emits READ for buffered bytes (s->in) when READ handlers read. */
void rill__stream_read_buffered(rill_stream *s);
/* After EOF: once no buffered input is left for requests, reports EOF (event, or a
 * graceful close when nobody handles EOF).  A no-op before EOF or after reporting. */
void rill__stream_eof_settle(rill_stream *s);

/* server.c sets this when it creates its first server: a closed connection leaves its
 * server's set (stream.c calls it for streams whose `server` is set). */
extern void (*rill__server_forget)(rill_stream *s);
/* file.c: a stream over an fd that cannot be polled (regular file, /dev/null): reads and
 * writes run on the thread pool.  Takes ownership of fd.  flags: RILL_READONLY /
 * RILL_WRITEONLY.  NULL with errno. */
rill_stream *rill__file_stream(rill_loop *loop, int fd, unsigned flags);
/* fd.c: adds RILL_READONLY / RILL_WRITEONLY to *flags from fd's access mode.  RILL_EBADF
 * when *flags ask for a direction the fd was not opened for. */
int rill__fd_direction(int fd, unsigned *flags);
/* fd.c: sets O_NONBLOCK and FD_CLOEXEC on fd.  0 or a RILL_E* code. */
int rill__fd_prepare(int fd);
/* The stream flags for a direction given as RILL_READONLY / RILL_WRITEONLY. */
static inline uint32_t rill__dir_sflags(unsigned flags)
{
    return (flags & RILL_WRITEONLY ? 0 : RILL__S_READABLE) |
           (flags & RILL_READONLY ? 0 : RILL__S_WRITABLE);
}
/* Frees a stream whose last reference went while usock operations were in flight. */
void rill__stream_free(rill_stream *s);
/* usock.c: before the fd of a uring socket stream is stolen, stops its receive (waits
 * for the cancel).  0, RILL_EBUSY while a send is in flight, or a code. */
int rill__usock_steal(rill_stream *s);
/* usock.c: the transport for a stream socket on loop (fd.c, tcp.c): the uring one when
 * the loop runs that backend, else `fallback`. */
const rill__transport *rill__sock_tp(rill_loop *loop, const rill__transport *fallback);
/* rill__fd_stream's flags: a socket that is not SOCK_STREAM (never through the ring). */
#define RILL__FD_NOT_STREAM 0x80000000u
/* fd.c: stream over an fd of a known kind (sockets, pipes, devices). */
rill_stream *rill__fd_stream(rill_loop *loop, int fd, unsigned flags, int family);

#endif
