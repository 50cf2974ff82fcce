/* src/stream.c - the one stream type: subscriptions and events, the read path, the write
 * queue, shutdown and close rules, and the inactivity timeout.  Transports plug in
 * underneath through rill__transport; framing lives in frame.c. */
#include "internal.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_IOV 64

struct rill_sub {
    rill_sub *next;
    rill_handler *h;
    void *arg;
    uint8_t type;
    bool once, dead;
};

struct rill__wdone {
    rill__list link;
    uint64_t end; /* complete when this many bytes of the queue were written */
    rill_done_fn *cb;
    void *arg;
};

void (*rill__server_forget)(rill_stream *s);

static void stream_dispatch(rill_stream *s);
static void stream_expire(rill__tnode *t);
static void flush(rill_stream *s, bool user_call);
static void finish_shutdown(rill_stream *s, int status);

/* ---- lifetime ------------------------------------------------------------------------ */

rill_stream *rill__stream_new(rill_loop *loop, const rill__transport *tp, int fd, uint32_t flags)
{
    rill_stream *s = rill__calloc(1, sizeof *s);
    if (!s || ((tp->flags & RILL__TP_STATE) && !rill__stream_sx(s))) {
        rill__free(s);
        errno = ENOMEM;
        return NULL;
    }
    s->loop = loop;
    s->tp = tp;
    s->flags = flags;
    s->refs = 1; /* the open state's reference, released after CLOSE */
    rill__io_init(&s->io, fd, rill__stream_io);
    rill__list_init(&s->srv_link);
    rill__tnode_init(&s->tnode);
    s->family = AF_UNSPEC;
    rill__handle_add(loop);
    return s;
}

static_assert(sizeof(struct rill_stream) <= 136, "an idle connection is one 144-byte malloc chunk");

rill__sx *rill__stream_sx(rill_stream *s)
{
    if (s->x)
        return s->x;
    rill__sx *x = rill__calloc(1, sizeof *x);
    if (!x)
        return NULL;
    rill__buf_init(&x->wq);
    rill__buf_init(&x->in);
    rill__list_init(&x->frames);
    rill__list_init(&x->wdone);
    x->high = RILL__DEFAULT_HIGH;
    x->max_buffer = RILL__DEFAULT_MAX_BUFFER;
    return s->x = x;
}

/* Unlinks s from the singly linked list at *head; false when it is not there.  *prev gets
 * its predecessor (NULL: it was first). */
static bool unlink_stream(rill_stream **head, rill_stream *s, rill_stream **prev)
{
    *prev = NULL;
    for (rill_stream **pp = head; *pp; *prev = *pp, pp = &(*pp)->dnext)
        if (*pp == s) {
            *pp = s->dnext;
            return true;
        }
    return false;
}

/* Takes s off the loop's stream queue (rare: a stream is freed from its own dispatch). */
static void unqueue(rill_stream *s)
{
    rill__squeue *q = rill__loop_squeue(s->loop);
    rill_stream *prev;
    s->flags &= ~RILL__S_QUEUED;
    if (unlink_stream(&q->head, s, &prev)) {
        if (q->tail == s)
            q->tail = prev;
        if (q->cut == s)
            q->cut = prev;
    } else {
        unlink_stream(&q->running, s, &prev); /* the batch being run holds it */
    }
}

static void stream_free(rill_stream *s)
{
    assert(s->flags & RILL__S_CLOSE_DONE);
    if (s->flags & (RILL__S_URECV | RILL__S_USEND)) {
        s->flags |= RILL__S_UFREE; /* the ring still names it: its last completion frees it */
        return;
    }
    rill__stream_free(s);
}

void rill__stream_free(rill_stream *s)
{
    if (s->flags & RILL__S_QUEUED)
        unqueue(s);
    if (s->flags & RILL__S_SUBLIST)
        for (rill_sub *n, *sub = s->subs.list.head; sub; sub = n) {
            n = sub->next;
            rill__free(sub);
        }
    if (s->x) {
        rill__buf_free(&s->x->wq);
        rill__buf_free(&s->x->in);
        for (rill__wdone *n, *w = s->x->wfree; w; w = n) {
            n = (rill__wdone *)(void *)w->link.next;
            rill__free(w);
        }
        rill__frame_free(s);
        rill__free(s->x);
    }
    rill__handle_remove(s->loop);
    rill__free(s);
}

/* A reference held around callbacks (Redis's callHandler idea): a handler may close the
 * stream or drop the user's last reference, and the memory stays valid until release.
 * release follows rill_stream_unref's rule, inlined for the read and write paths. */
static inline void hold(rill_stream *s)
{
    s->refs++;
}

static inline void release(rill_stream *s)
{
    if (s->refs == 1 && !(s->flags & RILL__S_CLOSED)) {
        rill_stream_close(s); /* a handler dropped the last other reference */
        return;
    }
    assert(s->refs > 0);
    if (--s->refs == 0)
        stream_free(s);
}

rill_stream *rill_stream_ref(rill_stream *s)
{
    if (s)
        hold(s);
    return s;
}

void rill_stream_unref(rill_stream *s)
{
    if (s)
        release(s); /* the last reference of an open stream closes it; the close drops it */
}

/* ---- state --------------------------------------------------------------------------- */

bool rill__stream_wants_read(const rill_stream *s)
{
    uint32_t f = s->flags;
    if ((f & (RILL__S_CLOSED | RILL__S_EOF | RILL__S_CONNECTING)) || !(f & RILL__S_READABLE))
        return false;
    if (!(f & RILL__S_READING) && !rill__frames_pending(s))
        return false;
    return !s->x || s->x->in.len < s->x->max_buffer; /* backpressure while framing fills */
}

static bool stream_active(const rill_stream *s)
{
    if (s->flags & RILL__S_CLOSE_DONE)
        return false;
    return rill__stream_wants_read(s) || rill__wq_len(s) || s->dflags ||
           (s->flags & (RILL__S_CONNECTING | RILL__S_WBUSY)) ||
           ((s->flags & RILL__S_SHUT) && !(s->flags & RILL__S_SHUT_DONE));
}

void rill__stream_update(rill_stream *s)
{
    bool active = stream_active(s);
    if (active != !!(s->flags & RILL__S_ACTIVE)) {
        s->flags ^= RILL__S_ACTIVE;
        if (active)
            rill__loop_ref(s->loop);
        else
            rill__loop_unref(s->loop);
    }
    bool reading = rill__stream_wants_read(s);
    if (s->io.fd >= 0 && !(s->flags & RILL__S_CLOSED) && !s->tp->start) {
        unsigned mask = (reading ? RILL__IO_READ : 0) | (s->flags & RILL__S_WATCH_W ? RILL__IO_WRITE : 0);
        int rc = rill__io_set(s->loop, &s->io, mask);
        if (rc < 0)
            rill__stream_error(s, rc);
    } else if (s->tp->start && !(s->flags & RILL__S_CLOSED)) {
        int rc = reading ? s->tp->start(s) : s->tp->stop(s);
        if (rc < 0)
            rill__stream_error(s, rc);
    }
}

void rill__stream_queue(rill_stream *s)
{
    if (s->flags & RILL__S_QUEUED)
        return;
    rill__squeue *q = rill__loop_squeue(s->loop);
    s->flags |= RILL__S_QUEUED;
    s->dnext = NULL;
    if (q->tail)
        q->tail->dnext = s;
    else
        q->head = s;
    q->tail = s;
    rill__defer_queue(s->loop, &q->defer, 0);
}

static void schedule(rill_stream *s, uint32_t what)
{
    s->dflags |= (uint8_t)what;
    rill__stream_queue(s);
    rill__stream_update(s);
}

/* The queue's deferred call: runs the streams queued before this deferred phase began
 * (up to `cut`), in order; what was queued since runs in the next phase, as every
 * deferred call does. */
void rill__stream_run_queue(rill__defer *d)
{
    rill__squeue *q = rill__container_of(d, rill__squeue, defer);
    assert(!q->running);
    if (q->cut) {
        q->running = q->head;
        q->head = q->cut->dnext;
        q->cut->dnext = NULL;
        if (!q->head)
            q->tail = NULL;
        q->cut = NULL;
    }
    if (q->head) /* queued during this phase: the next one */
        rill__defer_queue(q->loop, d, 0);
    while (q->running) {
        rill_stream *s = q->running;
        q->running = s->dnext;
        s->flags &= ~RILL__S_QUEUED;
        stream_dispatch(s);
    }
}

/* ---- events -------------------------------------------------------------------------- */

/* The handle of the subscription stored in the stream itself. */
static inline rill_sub *one_handle(rill_stream *s)
{
    return (rill_sub *)(void *)&s->subs.one;
}

static rill_sub *sub_node(rill_handler *h, void *arg, unsigned type, bool once)
{
    rill_sub *sub = rill__malloc(sizeof *sub);
    if (sub)
        *sub = (rill_sub){NULL, h, arg, (uint8_t)type, once, false};
    return sub;
}

/* The first subscription lives in the stream (an idle connection allocates nothing for
 * it); a second one moves both to a list, keeping the first one's handle valid. */
static rill_sub *subscribe(rill_stream *s, rill_event_type ev, rill_handler *h, void *arg, bool once)
{
    if (!s || !h || (unsigned)ev >= RILL_EV__COUNT) {
        errno = EINVAL;
        return NULL;
    }
    /* WRITE handlers get a byte count kept in the extension */
    if (ev == RILL_EV_WRITE && !rill__stream_sx(s)) {
        errno = ENOMEM;
        return NULL;
    }
    /* bytes kept while nobody took them go to the new READ handler (never in this call) */
    if (ev == RILL_EV_READ && rill__in_len(s) && (s->flags & RILL__S_READING) &&
        !(s->flags & RILL__S_CLOSED)) {
        s->dflags |= RILL__D_FRAME;
        rill__stream_queue(s);
    }
    if (!(s->flags & RILL__S_SUBLIST)) {
        if (!s->subs.one.h && !s->emitting) {
            s->subs.one.h = h;
            s->subs.one.arg = arg;
            s->one_type = (uint8_t)ev;
            s->flags = once ? s->flags | RILL__S_ONE_ONCE : s->flags & ~RILL__S_ONE_ONCE;
            s->submask = (uint16_t)(1u << ev);
            return one_handle(s);
        }
        rill_sub *first = NULL;
        if (s->subs.one.h &&
            !(first = sub_node(s->subs.one.h, s->subs.one.arg, s->one_type,
                               s->flags & RILL__S_ONE_ONCE))) {
            errno = ENOMEM;
            return NULL;
        }
        rill_sub *sub = sub_node(h, arg, ev, once);
        if (!sub) {
            rill__free(first);
            errno = ENOMEM;
            return NULL;
        }
        if (first)
            first->next = sub;
        s->subs.list.head = first ? first : sub;
        s->subs.list.was_one = first;
        s->flags |= RILL__S_SUBLIST;
        s->submask |= (uint16_t)(1u << ev);
        return sub;
    }
    rill_sub *sub = sub_node(h, arg, ev, once);
    if (!sub) {
        errno = ENOMEM;
        return NULL;
    }
    s->submask |= (uint16_t)(1u << ev);
    rill_sub **pp = &s->subs.list.head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = sub;
    return sub;
}

rill_sub *rill_stream_on(rill_stream *s, rill_event_type ev, rill_handler *h, void *arg)
{
    return subscribe(s, ev, h, arg, false);
}

rill_sub *rill_stream_once(rill_stream *s, rill_event_type ev, rill_handler *h, void *arg)
{
    return subscribe(s, ev, h, arg, true);
}

/* Unlinks dead subscriptions from the list; only when no dispatch walks it. */
static void sweep(rill_stream *s)
{
    rill_sub **pp = &s->subs.list.head;
    s->submask = 0;
    while (*pp) {
        rill_sub *sub = *pp;
        if (sub->dead) {
            *pp = sub->next;
            if (s->subs.list.was_one == sub)
                s->subs.list.was_one = NULL;
            rill__free(sub);
        } else {
            s->submask |= (uint16_t)(1u << sub->type);
            pp = &sub->next;
        }
    }
    if (!s->subs.list.head) { /* back to the inline slot */
        s->flags &= ~RILL__S_SUBLIST;
        s->subs.one.h = NULL;
        s->subs.one.arg = NULL;
    }
}

void rill_stream_off(rill_stream *s, rill_sub *sub)
{
    if (!s || !sub)
        return;
    if (sub == one_handle(s)) {
        if (!(s->flags & RILL__S_SUBLIST)) {
            s->subs.one.h = NULL; /* an emit in progress reads it before its call */
            s->submask = 0;
            return;
        }
        sub = s->subs.list.was_one;
        if (!sub)
            return;
    }
    sub->dead = true;
    if (!s->emitting)
        sweep(s);
}

bool rill_stream_has_subscribers(const rill_stream *s, rill_event_type ev)
{
    if (!s || (unsigned)ev >= RILL_EV__COUNT || !(s->submask & (1u << ev)))
        return false;
    if (!(s->flags & RILL__S_SUBLIST))
        return s->subs.one.h && s->one_type == ev;
    /* the mask may still hold a type whose last subscription died during a dispatch */
    for (const rill_sub *sub = s->subs.list.head; sub; sub = sub->next)
        if (sub->type == ev && !sub->dead)
            return true;
    return false;
}

/* Calls the handlers subscribed when the event began, in order, holding a reference so a
 * handler may close the stream or drop the last user reference. */
void rill__stream_emit(rill_stream *s, const rill_event *ev)
{
    if (!(s->submask & (1u << ev->type)))
        return; /* a live subscription always has its bit */
    hold(s);
    assert(s->emitting < UINT8_MAX);
    s->emitting++;
    if (!(s->flags & RILL__S_SUBLIST)) {
        rill_handler *h = s->subs.one.h;
        if (h && s->one_type == ev->type) {
            if (s->flags & RILL__S_ONE_ONCE) {
                s->subs.one.h = NULL;
                s->submask = 0;
            }
            h(s, ev, s->subs.one.arg);
        }
    } else {
        rill_sub *last = s->subs.list.head;
        while (last->next)
            last = last->next;
        for (rill_sub *sub = s->subs.list.head; sub; sub = sub->next) {
            if (!sub->dead && sub->type == ev->type) {
                if (sub->once)
                    sub->dead = true;
                sub->h(s, ev, sub->arg);
            }
            if (sub == last)
                break;
        }
    }
    /* the stream's own slot is kept exact as it changes; a list is swept once at the end */
    if (--s->emitting == 0 && (s->flags & RILL__S_SUBLIST))
        sweep(s);
    release(s);
}

static void emit_simple(rill_stream *s, rill_event_type type, int err, size_t len)
{
    rill_event ev = {type, NULL, len, err, NULL};
    rill__stream_emit(s, &ev);
}

/* ---- errors and completions ---------------------------------------------------------- */

static rill__wdone *wdone_get(rill_stream *s)
{
    rill__wdone *w = s->x->wfree;
    if (w) {
        s->x->wfree = (rill__wdone *)(void *)w->link.next;
        return w;
    }
    return rill__malloc(sizeof *w);
}

static void wdone_put(rill_stream *s, rill__wdone *w)
{
    w->link.next = (rill__list *)(void *)s->x->wfree;
    s->x->wfree = w;
}

/* Completes the writes whose bytes were all written (status 0), or every pending one
 * with `status` when status < 0. */
static void run_completions(rill_stream *s, int status)
{
    if (!s->x)
        return;
    while (!rill__list_empty(&s->x->wdone)) {
        rill__wdone *w = rill__container_of(s->x->wdone.next, rill__wdone, link);
        if (status == 0 && w->end > s->x->wq_written)
            break;
        rill__list_remove(&w->link);
        rill_done_fn *cb = w->cb;
        void *arg = w->arg;
        wdone_put(s, w);
        cb(s, status, arg);
    }
}

/* A transport error: queued writes fail with it, ERROR fires (deferred when found inside
 * a user's call), and with no ERROR handler the stream closes. */
/* Records the first error.  Every RILL_E* code fits in 16 bits; a transport's code that
 * does not (against its contract) is kept as RILL_EIO, never truncated. */
static inline void set_err(rill_stream *s, int err)
{
    if (!s->err)
        s->err = (int16_t)(err >= INT16_MIN ? err : RILL_EIO);
}

static void fail(rill_stream *s, int err, bool user_call)
{
    set_err(s, err);
    if (user_call) {
        /* without memory for the extension, the ERROR event reports the first error */
        if (rill__stream_sx(s))
            s->x->pending_err = err;
        schedule(s, RILL__D_ERROR);
        return;
    }
    rill__stream_error(s, err);
}

void rill__stream_error(rill_stream *s, int err)
{
    if (s->flags & RILL__S_CLOSED)
        return;
    set_err(s, err);
    hold(s);
    s->flags &= ~RILL__S_WATCH_W;
    if (s->x)
        rill__buf_consume(&s->x->wq, s->x->wq.len);
    run_completions(s, err);
    bool fatal = err == RILL_ECONNRESET || err == RILL_EPIPE || err == RILL_ETIMEDOUT;
    s->flags &= ~(fatal ? RILL__S_WRITABLE | RILL__S_READABLE : RILL__S_WRITABLE);
    /* What waited for bytes or for the write half can no longer complete: it ends now
     * with the error (an ERROR handler may keep the stream open for long). */
    if (fatal)
        rill__frame_finish(s, err);
    if ((s->flags & RILL__S_SHUT) && !(s->flags & RILL__S_SHUT_DONE)) {
        s->flags |= RILL__S_SHUT_DONE; /* the write half is gone: the shutdown is over */
        finish_shutdown(s, err);
    }
    if (s->flags & RILL__S_CLOSED) {
        release(s);
        return;
    }
    if (rill_stream_has_subscribers(s, RILL_EV_ERROR))
        emit_simple(s, RILL_EV_ERROR, err, 0);
    else
        rill_stream_close(s);
    if (!(s->flags & RILL__S_CLOSED))
        rill__stream_update(s);
    release(s);
}

/* ---- transport defaults (fds) ---------------------------------------------------------- */

/* Sockets take recv(2) and send(2), not read(2) and write(2): same result, but they skip
 * the VFS layer (3-4% less server CPU per echoed message at 100 and 1,000 connections,
 * measured paired in bench/), and MSG_NOSIGNAL makes SIGPIPE moot. */
static ssize_t fd_read(rill_stream *s, void *buf, size_t len)
{
    bool sock = s->tp->flags & RILL__TP_SOCKET;
    ssize_t n;
    do
        n = sock ? recv(s->io.fd, buf, len, 0) : read(s->io.fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? rill__errno() : n;
}

/* write(2)/writev(2) that consumes the SIGPIPE an EPIPE raised (the caller has SIGPIPE
 * blocked, so it is pending, never delivered). */
static ssize_t raw_writev(int fd, const struct iovec *iov, int n)
{
    ssize_t r;
    do
        r = n == 1 ? write(fd, iov[0].iov_base, iov[0].iov_len) : writev(fd, iov, n);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    int err = rill__errno();
    if (err == RILL_EPIPE)
        rill__sigpipe_consume();
    return err;
}

/* Writes to a pipe or device: SIGPIPE is blocked in the loop thread while the loop runs;
 * outside rill_loop_run it is blocked around this one call. */
static ssize_t fd_writev_pipe(int fd, const struct iovec *iov, int n)
{
    if (rill__sigpipe_blocked())
        return raw_writev(fd, iov, n);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    ssize_t r = raw_writev(fd, iov, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

/* send(2) with MSG_NOSIGNAL (see fd_read): bytes sent or a code. */
static inline ssize_t sock_send(int fd, const void *p, size_t len)
{
    ssize_t r;
    do
        r = send(fd, p, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? rill__errno() : r;
}

/* sock_send, or sendmsg(2) for several buffers. */
static ssize_t sock_writev(int fd, const struct iovec *iov, int n)
{
    if (n == 1)
        return sock_send(fd, iov[0].iov_base, iov[0].iov_len);
    struct msghdr m = {0};
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)n;
    ssize_t r;
    do
        r = sendmsg(fd, &m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? rill__errno() : r;
}

static ssize_t fd_writev(rill_stream *s, const struct iovec *iov, int n)
{
    if (s->tp->flags & RILL__TP_SOCKET)
        return sock_writev(s->io.fd, iov, n);
    return fd_writev_pipe(s->io.fd, iov, n);
}

static ssize_t tp_read(rill_stream *s, void *buf, size_t len)
{
    return s->tp->read ? s->tp->read(s, buf, len) : fd_read(s, buf, len);
}

static ssize_t tp_writev(rill_stream *s, const struct iovec *iov, int n)
{
    return s->tp->writev ? s->tp->writev(s, iov, n) : fd_writev(s, iov, n);
}

/* ---- reading --------------------------------------------------------------------------- */

int rill_stream_start(rill_stream *s)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    /* after the end, bytes still kept go out first (then EOF, as it waited for them) */
    if (!(s->flags & RILL__S_READABLE) && !rill__in_len(s))
        return (s->flags & RILL__S_EOF) ? RILL_EOF : RILL_EINVAL;
    s->flags |= RILL__S_READING;
    if (rill__in_len(s))
        schedule(s, RILL__D_FRAME); /* buffered bytes go out on the next iteration */
    else
        rill__stream_update(s);
    return 0;
}

int rill_stream_stop(rill_stream *s)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    s->flags &= ~RILL__S_READING;
    rill__stream_update(s);
    return 0;
}

void rill__stream_read_buffered(rill_stream *s)
{
    while (rill__in_len(s) && (s->flags & RILL__S_READING) && !(s->flags & RILL__S_CLOSED) &&
           !rill__frames_pending(s) && rill_stream_has_subscribers(s, RILL_EV_READ)) {
        size_t n = RILL__MIN(s->x->in.len, (size_t)64 * 1024);
        const char *p = rill__buf_contig(&s->x->in, n);
        if (!p) {
            fail(s, RILL_ENOMEM, false);
            return;
        }
        rill_event ev = {RILL_EV_READ, p, n, 0, NULL};
        hold(s);
        rill__stream_emit(s, &ev);
        if (!(s->flags & RILL__S_CLOSED))
            rill__buf_consume(&s->x->in, n);
        release(s);
    }
}

/* Input that framing requests may still take stays for them: EOF is reported when the
 * buffer has been consumed, so bytes are never dropped by the close that follows EOF. */
void rill__stream_eof_settle(rill_stream *s)
{
    if ((s->flags & (RILL__S_EOF | RILL__S_EOF_DONE | RILL__S_CLOSED)) != RILL__S_EOF)
        return;
    /* handing out buffered bytes, as a feed does (a splice started from these callbacks
     * waits for them to return) */
    uint32_t feeding = s->flags & RILL__S_FEEDING;
    s->flags |= RILL__S_FEEDING;
    if (rill__frames_pending(s))
        rill__frame_finish(s, RILL_EOF); /* the first request gets what is left */
    rill__stream_read_buffered(s); /* (nothing once closed) */
    s->flags = (s->flags & ~RILL__S_FEEDING) | feeding;
    if ((s->flags & RILL__S_CLOSED) || rill__in_len(s))
        return; /* buffered bytes wait for a request */
    s->flags |= RILL__S_EOF_DONE;
    if (rill_stream_has_subscribers(s, RILL_EV_EOF))
        emit_simple(s, RILL_EV_EOF, RILL_EOF, 0);
    else
        rill_stream_close_gracefully(s);
}

static void on_eof(rill_stream *s)
{
    s->flags |= RILL__S_EOF;
    s->flags &= ~RILL__S_READABLE;
    rill__stream_update(s);
    if (rill__in_len(s) && rill__frames_pending(s))
        rill__frame_feed(s, NULL, 0); /* whole frames still buffered go out first */
    hold(s);
    rill__stream_eof_settle(s);
    release(s);
}

/* What a read that returned no bytes means: the end, or a failure. */
__attribute__((noinline)) static void deliver_end(rill_stream *s, ssize_t n)
{
    if (n < 0)
        fail(s, (int)n, false);
    else
        on_eof(s);
}

/* rill__stream_deliver's body, inlined into the read path (rill__stream_io). */
__attribute__((always_inline)) static inline void deliver(rill_stream *s, const char *data,
                                                          ssize_t n)
{
    if ((s->flags & RILL__S_CLOSED) || n == RILL_EAGAIN)
        return;
    if (n <= 0) {
        deliver_end(s, n);
        return;
    }
    rill__tnode_touch(s->loop, &s->tnode);
    if (!(s->flags & RILL__S_READING) || !(s->submask & (1u << RILL_EV_READ)) ||
        (s->x && (s->x->in.len || rill__frames_pending(s)))) {
        /* framing, buffered input, nobody to take it now, or a stray read: frame_feed
         * serves requests and buffers the rest */
        rill__frame_feed(s, data, (size_t)n);
        return;
    }
    rill_event ev = {RILL_EV_READ, data, (size_t)n, 0, NULL};
    rill__stream_emit(s, &ev); /* the echo path: a borrowed slice of the loop's buffer */
}

void rill__stream_deliver(rill_stream *s, const char *data, ssize_t n)
{
    deliver(s, data, n);
}

void rill__stream_io(rill__io *io, unsigned revents)
{
    rill_stream *s = rill__container_of(io, rill_stream, io);
    hold(s);
    if (revents & RILL__IO_WRITE)
        flush(s, false);
    /* A read that fills the buffer says more is waiting: read again at once rather than
     * through another poll (bulk transfers then cost one syscall per 64 KiB, not two).
     * A short read means the socket is drained.  Bounded, for fairness between streams. */
    for (int i = 0; i < 16 && (revents & RILL__IO_READ) && rill__stream_wants_read(s); i++) {
        size_t cap = RILL__SCRATCH;
        char *buf = rill__loop_scratch(s->loop);
        ssize_t n = tp_read(s, buf, cap);
        deliver(s, buf, n);
        if (n < (ssize_t)cap)
            break;
    }
    release(s);
}

/* ---- writing --------------------------------------------------------------------------- */

static void watch_write(rill_stream *s, bool on)
{
    if (on == !!(s->flags & RILL__S_WATCH_W))
        return;
    s->flags ^= RILL__S_WATCH_W;
    rill__stream_update(s);
}

static void do_shutdown(rill_stream *s);

/* The queue emptied (or fell to the low mark): DRAIN, then what waited for it. */
static void after_progress(rill_stream *s, size_t before)
{
    size_t len = rill__wq_len(s), low = s->x ? s->x->low : 0;
    if (len == 0)
        watch_write(s, false);
    if (before > low && len <= low && rill_stream_has_subscribers(s, RILL_EV_DRAIN))
        s->dflags |= RILL__D_DRAIN; /* (nobody to tell: no deferred work, as on uring's echo path) */
    if (len == 0 && (s->flags & RILL__S_SHUT) && !(s->flags & RILL__S_SHUT_DONE))
        do_shutdown(s);
    if (len == 0 && (s->flags & RILL__S_GRACEFUL))
        rill_stream_close(s);
}

/* ASYNC transports: hand the front of the queue to the transport if it is idle. */
static void kick_async(rill_stream *s)
{
    if ((s->flags & (RILL__S_WBUSY | RILL__S_CONNECTING | RILL__S_CLOSED)) || !rill__wq_len(s))
        return;
    struct iovec iov[MAX_IOV];
    int n = rill__buf_iov(&s->x->wq, iov, MAX_IOV);
    s->flags |= RILL__S_WBUSY;
    ssize_t r = s->tp->writev(s, iov, n);
    if (r != RILL_EINPROGRESS) {
        s->flags &= ~RILL__S_WBUSY;
        fail(s, r < 0 ? (int)r : RILL_EIO, true);
    }
    rill__stream_update(s);
}

void rill__stream_write_done(rill_stream *s, ssize_t n)
{
    s->flags &= ~RILL__S_WBUSY;
    if (s->flags & RILL__S_CLOSED) {
        rill__stream_update(s);
        return;
    }
    hold(s);
    if (n < 0) {
        fail(s, (int)n, false);
    } else {
        size_t before = s->x->wq.len;
        rill__buf_consume(&s->x->wq, (size_t)n);
        s->x->wq_written += (uint64_t)n;
        s->x->written_pending += (size_t)n;
        if (!(s->tp->flags & RILL__TP_DIRECT)) /* (usock counts the submission instead) */
            rill__tnode_touch(s->loop, &s->tnode);
        run_completions(s, 0);
        after_progress(s, before);
        if (rill_stream_has_subscribers(s, RILL_EV_WRITE) || (s->dflags & RILL__D_DRAIN))
            schedule(s, rill_stream_has_subscribers(s, RILL_EV_WRITE) ? RILL__D_WRITE : 0);
        kick_async(s);
    }
    rill__stream_update(s);
    release(s);
}

/* Writes as much of the queue as the transport takes now. */
static void flush(rill_stream *s, bool user_call)
{
    if (s->flags & (RILL__S_CLOSED | RILL__S_CONNECTING))
        return;
    if (!rill__wq_len(s)) {
        after_progress(s, 0); /* a shutdown or graceful close may wait for this */
        return;
    }
    if (s->tp->flags & RILL__TP_ASYNC) {
        kick_async(s);
        return;
    }
    size_t before = s->x->wq.len, total = 0;
    while (s->x->wq.len) {
        struct iovec iov[MAX_IOV];
        int n = rill__buf_iov(&s->x->wq, iov, MAX_IOV);
        size_t want = 0;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        ssize_t r = tp_writev(s, iov, n);
        if (r < 0) {
            if (r != RILL_EAGAIN) {
                fail(s, (int)r, user_call);
                return;
            }
            break;
        }
        rill__buf_consume(&s->x->wq, (size_t)r);
        s->x->wq_written += (uint64_t)r;
        total += (size_t)r;
        if ((size_t)r < want)
            break; /* the kernel buffer is full: the next call would say EAGAIN */
    }
    watch_write(s, s->x->wq.len > 0);
    if (total) {
        rill__tnode_touch(s->loop, &s->tnode);
        if (rill_stream_has_subscribers(s, RILL_EV_WRITE)) {
            s->x->written_pending += total;
            s->dflags |= RILL__D_WRITE;
        }
    }
    if (user_call) {
        s->dflags |= RILL__D_DONE;
    } else {
        run_completions(s, 0);
    }
    after_progress(s, before);
    if (s->dflags && !(s->flags & RILL__S_CLOSE_DONE))
        schedule(s, 0);
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* Queues iov[] from byte `skip` on: copies, or references `bytes` when given.  On
 * RILL_ENOMEM part of it may be queued already; the caller checks the queue length. */
static int enqueue(rill_stream *s, const struct iovec *iov, size_t n, size_t skip, rill_bytes *bytes)
{
    if (bytes)
        return rill__buf_append_bytes(&s->x->wq, bytes, skip, rill_bytes_len(bytes) - skip);
    for (size_t i = 0; i < n; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        int rc = rill__buf_append(&s->x->wq, (const char *)iov[i].iov_base + skip, l - skip);
        if (rc < 0)
            return rc;
        skip = 0;
    }
    return 0;
}

static int write_check(const rill_stream *s)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if (s->flags & RILL__S_SHUT)
        return RILL_EPIPE;
    if (!(s->flags & RILL__S_WRITABLE))
        return s->err ? s->err : RILL_EINVAL;
    return 0;
}

/* write_common's `pre` when nothing was written yet. */
#define NOT_TRIED ((ssize_t)RILL_EINVAL - 1000000)

/* `pre`: NOT_TRIED, or what the fast path's one write(2) of the whole of iov returned
 * (the fast path checked everything write_check does and that the write may go direct). */
static int write_common(rill_stream *s, const struct iovec *iov, size_t n, rill_bytes *bytes,
                        rill_done_fn *cb, void *arg, ssize_t pre)
{
    int rc = pre == NOT_TRIED ? write_check(s) : 0;
    if (rc < 0)
        return rc;
    size_t total = iov_total(iov, n), done = 0;
    bool direct = !rill__wq_len(s) && !(s->flags & (RILL__S_CONNECTING | RILL__S_WBUSY)) &&
                  !(s->tp->flags & RILL__TP_ASYNC);
    /* A completion record or bytes that must wait need the extension: get it before
     * writing, so running out of memory leaves nothing half done. */
    if ((cb || !direct) && !rill__stream_sx(s))
        return RILL_ENOMEM;
    rill__wdone *w = NULL;
    if (cb && !(w = wdone_get(s)))
        return RILL_ENOMEM;
    if (direct && total) {
        ssize_t r = pre != NOT_TRIED ? pre : tp_writev(s, iov, (int)RILL__MIN(n, (size_t)MAX_IOV));
        if (r >= 0) {
            done = (size_t)r;
        } else if (r != RILL_EAGAIN) {
            if (w)
                wdone_put(s, w);
            fail(s, (int)r, true);
            return (int)r;
        }
    }
    if (done < total) {
        size_t queued_before = rill__wq_len(s);
        rc = rill__stream_sx(s) ? enqueue(s, iov, n, done, bytes) : RILL_ENOMEM;
        if (rc < 0 && done == 0 && rill__wq_len(s) == queued_before) {
            if (w)
                wdone_put(s, w);
            return rc;
        }
        if (rc < 0)
            fail(s, rc, true); /* part went out and the rest cannot be kept: it breaks */
    }
    if (s->x) {
        s->x->wq_written += done;
        s->x->wq_total += total;
    }
    if (w) {
        w->end = s->x->wq_total;
        w->cb = cb;
        w->arg = arg;
        rill__list_insert_tail(&s->x->wdone, &w->link);
    }
    if (done) {
        rill__tnode_touch(s->loop, &s->tnode);
        if (rill_stream_has_subscribers(s, RILL_EV_WRITE)) {
            s->x->written_pending += done; /* WRITE handlers made the extension */
            s->dflags |= RILL__D_WRITE;
        }
    }
    if (w && done == total)
        s->dflags |= RILL__D_DONE;
    if (rill__wq_len(s)) {
        if (s->tp->flags & RILL__TP_ASYNC)
            kick_async(s);
        else if (!(s->flags & RILL__S_CONNECTING))
            watch_write(s, true);
    }
    if (s->dflags)
        schedule(s, 0);
    else if (rill__wq_len(s) && !(s->tp->flags & RILL__TP_ASYNC))
        rill__stream_update(s); /* (kick_async updated, or a write in flight keeps it active) */
    return rill__wq_len(s) >= rill__stream_high(s) ? 1 : 0;
}

/* The echo path's write: open, writable, nothing queued or in flight (no extension, so no
 * WRITE handler either), no completion wanted, a plain fd, and either a socket or SIGPIPE
 * blocked because the loop runs on this thread.  Then one send(2) or write(2), and when it
 * takes everything, only the timeout touch is left to do. */
static inline bool write_fast(const rill_stream *s)
{
    return !s->x && !s->tp->writev &&
           (s->flags & (RILL__S_WRITABLE | RILL__S_CLOSED | RILL__S_SHUT | RILL__S_CONNECTING)) ==
               RILL__S_WRITABLE &&
           ((s->tp->flags & RILL__TP_SOCKET) || rill__sigpipe_blocked());
}

int rill_stream_write(rill_stream *s, const void *data, size_t len, rill_done_fn *cb, void *arg)
{
    if (!data && len)
        return RILL_EINVAL;
    struct iovec iov = {(void *)data, len};
    if (s && !cb && len && write_fast(s)) {
        /* fd_writev's two cases by hand: called, it stays out of line (+30 instructions
         * per echoed message, callgrind) */
        ssize_t r = s->tp->flags & RILL__TP_SOCKET ? sock_send(s->io.fd, data, len)
                                                   : raw_writev(s->io.fd, &iov, 1);
        if (r == (ssize_t)len) {
            rill__tnode_touch(s->loop, &s->tnode);
            return 0;
        }
        return write_common(s, &iov, 1, NULL, NULL, NULL, r);
    }
    return write_common(s, &iov, 1, NULL, cb, arg, NOT_TRIED);
}

int rill_stream_writev(rill_stream *s, const struct iovec *iov, size_t n, rill_done_fn *cb,
                       void *arg)
{
    if ((!iov && n) || n > 1024)
        return RILL_EINVAL;
    return write_common(s, iov, n, NULL, cb, arg, NOT_TRIED);
}

int rill_stream_write_bytes(rill_stream *s, rill_bytes *b, rill_done_fn *cb, void *arg)
{
    if (!b)
        return RILL_EINVAL;
    struct iovec iov = {(void *)rill_bytes_data(b), rill_bytes_len(b)};
    return write_common(s, &iov, 1, b, cb, arg, NOT_TRIED);
}

ssize_t rill_stream_try_write(rill_stream *s, const void *data, size_t len)
{
    int rc = write_check(s);
    if (rc < 0)
        return rc;
    if (!data && len)
        return RILL_EINVAL;
    if (rill__wq_len(s) || (s->flags & (RILL__S_CONNECTING | RILL__S_WBUSY)) ||
        (s->tp->flags & (RILL__TP_ASYNC | RILL__TP_DIRECT)) == RILL__TP_ASYNC)
        return RILL_EAGAIN;
    if (!len)
        return 0;
    struct iovec iov = {(void *)data, len};
    /* a uring socket with nothing in flight: the fd itself, like a plain socket */
    ssize_t r = s->tp->flags & RILL__TP_DIRECT ? fd_writev(s, &iov, 1) : tp_writev(s, &iov, 1);
    if (r > 0) {
        if (s->x) {
            s->x->wq_written += (uint64_t)r;
            s->x->wq_total += (uint64_t)r;
        }
        rill__tnode_touch(s->loop, &s->tnode);
    } else if (r < 0 && r != RILL_EAGAIN) {
        fail(s, (int)r, true);
    }
    return r;
}

size_t rill_stream_write_queue_size(const rill_stream *s)
{
    return s ? rill__wq_len(s) : 0;
}

bool rill_stream_is_writing(const rill_stream *s)
{
    return s && (rill__wq_len(s) > 0 || (s->flags & RILL__S_WBUSY));
}

void rill_stream_set_watermarks(rill_stream *s, size_t low, size_t high)
{
    if (!s)
        return;
    if (!rill__stream_sx(s)) {
        rill__log(RILL_LOG_ERROR, "water marks not set: out of memory");
        return;
    }
    s->x->high = high ? high : RILL__DEFAULT_HIGH;
    s->x->low = low < s->x->high ? low : s->x->high - 1;
}

void rill__stream_connected(rill_stream *s, int status)
{
    if (s->flags & RILL__S_CLOSED)
        return;
    s->flags &= ~RILL__S_CONNECTING;
    hold(s);
    if (status < 0) {
        rill__stream_error(s, status);
        rill_stream_close(s); /* a connection that never came up is of no further use */
    } else {
        rill__tnode_touch(s->loop, &s->tnode);
        rill__stream_update(s);
        emit_simple(s, RILL_EV_CONNECT, 0, 0);
        flush(s, false); /* writes made while connecting */
    }
    release(s);
}

/* ---- ending ---------------------------------------------------------------------------- */

static int default_shutdown(rill_stream *s)
{
    if (s->tp->flags & RILL__TP_SOCKET)
        return shutdown(s->io.fd, SHUT_WR) < 0 ? rill__errno() : 0;
    if (s->flags & RILL__S_READABLE)
        return RILL_ENOTSUP; /* a two-way device has no write half to end */
    /* A write-only pipe ends by closing: the reader sees EOF. */
    rill__io_set(s->loop, &s->io, 0);
    close(s->io.fd);
    s->io.fd = -1;
    return 0;
}

static void do_shutdown(rill_stream *s)
{
    s->flags &= ~RILL__S_WRITABLE;
    int rc = s->tp->shutdown ? s->tp->shutdown(s) : default_shutdown(s);
    if (rc == RILL_EINPROGRESS)
        return; /* rill__stream_shutdown_done follows */
    rill__stream_shutdown_done(s, rc);
}

void rill__stream_shutdown_done(rill_stream *s, int status)
{
    s->flags |= RILL__S_SHUT_DONE;
    if (s->x) /* rill_stream_shutdown made it */
        s->x->pending_err = status;
    schedule(s, RILL__D_SHUT);
}

int rill_stream_shutdown(rill_stream *s, rill_done_fn *cb, void *arg)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if (s->flags & RILL__S_SHUT)
        return RILL_EPENDING;
    if (!(s->flags & RILL__S_WRITABLE))
        return s->err ? s->err : RILL_EINVAL;
    if (!rill__stream_sx(s))
        return RILL_ENOMEM;
    s->flags |= RILL__S_SHUT;
    s->x->shut_cb = cb;
    s->x->shut_arg = arg;
    if (!rill__wq_len(s) && !(s->flags & (RILL__S_CONNECTING | RILL__S_WBUSY)))
        do_shutdown(s);
    rill__stream_update(s);
    return 0;
}

static void finish_shutdown(rill_stream *s, int status)
{
    if (!s->x)
        return;
    rill_done_fn *cb = s->x->shut_cb;
    s->x->shut_cb = NULL;
    if (cb)
        cb(s, status, s->x->shut_arg);
}

void rill_stream_close(rill_stream *s)
{
    if (!s || (s->flags & RILL__S_CLOSED))
        return;
    s->flags |= RILL__S_CLOSED;
    s->flags &= ~(RILL__S_READABLE | RILL__S_WRITABLE | RILL__S_WATCH_W);
    if (s->io.fd >= 0)
        rill__io_set(s->loop, &s->io, 0);
    rill__tnode_disarm(&s->tnode);
    if (s->tp->close)
        s->tp->close(s);
    else if (s->io.fd >= 0 && !(s->flags & RILL__S_STOLEN))
        close(s->io.fd);
    s->io.fd = -1;
    schedule(s, RILL__D_CLOSE);
}

void rill_stream_close_gracefully(rill_stream *s)
{
    if (!s || (s->flags & RILL__S_CLOSED))
        return;
    if (!rill__wq_len(s) && !(s->flags & (RILL__S_CONNECTING | RILL__S_WBUSY)))
        rill_stream_close(s);
    else
        s->flags |= RILL__S_GRACEFUL;
}

int rill_stream_steal_fd(rill_stream *s)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if (s->io.fd < 0 || (s->tp->start && !(s->tp->flags & RILL__TP_DIRECT)))
        return RILL_EINVAL;
    if (s->tp->flags & RILL__TP_DIRECT) {
        int rc = rill__usock_steal(s);
        if (rc < 0)
            return rc;
    }
    int fd = s->io.fd;
    rill__io_set(s->loop, &s->io, 0);
    s->flags |= RILL__S_STOLEN;
    rill_stream_close(s);
    return fd;
}

/* The close's second half, on the next iteration: pending operations end with
 * RILL_ECANCELED, then CLOSE, the last event; then the open state's reference goes. */
static void finish_close(rill_stream *s)
{
    if (s->x)
        rill__buf_consume(&s->x->wq, s->x->wq.len);
    run_completions(s, RILL_ECANCELED);
    rill__frame_finish(s, RILL_ECANCELED);
    if (s->x && s->x->shut_cb)
        finish_shutdown(s, RILL_ECANCELED);
    emit_simple(s, RILL_EV_CLOSE, s->err, 0);
    s->flags |= RILL__S_CLOSE_DONE;
    if (s->server && rill__server_forget)
        rill__server_forget(s);
    rill__stream_update(s);
    release(s);
}

static void stream_dispatch(rill_stream *s)
{
    hold(s);
    while (s->dflags && !(s->flags & RILL__S_CLOSE_DONE)) {
        uint32_t f = s->dflags;
        s->dflags = 0;
        if (f & RILL__D_DONE)
            run_completions(s, 0);
        if ((f & RILL__D_WRITE) && s->x && s->x->written_pending) {
            size_t n = s->x->written_pending;
            s->x->written_pending = 0;
            emit_simple(s, RILL_EV_WRITE, 0, n);
        }
        if ((f & RILL__D_DRAIN) && !(s->flags & RILL__S_CLOSED))
            emit_simple(s, RILL_EV_DRAIN, 0, 0);
        if (f & RILL__D_ERROR)
            rill__stream_error(s, s->x && s->x->pending_err ? s->x->pending_err : s->err);
        if ((f & RILL__D_FRAME) && !(s->flags & RILL__S_CLOSED))
            rill__frame_feed(s, NULL, 0);
        if (f & RILL__D_SHUT)
            finish_shutdown(s, s->x ? s->x->pending_err : 0);
        if (f & RILL__D_CLOSE) {
            s->dflags = 0;
            finish_close(s);
        }
    }
    if (!(s->flags & RILL__S_CLOSE_DONE))
        rill__stream_update(s);
    release(s);
}

/* ---- timeout ----------------------------------------------------------------------------- */

static void stream_expire(rill__tnode *t)
{
    rill_stream *s = rill__container_of(t, rill_stream, tnode);
    hold(s);
    set_err(s, RILL_ETIMEDOUT);
    emit_simple(s, RILL_EV_TIMEOUT, RILL_ETIMEDOUT, 0);
    rill_stream_close(s);
    release(s);
}

void rill_stream_set_timeout(rill_stream *s, uint64_t ms)
{
    if (!s || (s->flags & RILL__S_CLOSED))
        return;
    s->flags |= RILL__S_TIMEOUT_SET; /* a transport's default must not replace it */
    int rc = rill__tnode_arm(s->loop, &s->tnode, ms == RILL_NEVER ? 0 : ms, stream_expire);
    if (rc < 0)
        rill__log(RILL_LOG_ERROR, "stream timeout not armed: %s", rill_strerror(rc));
}

uint64_t rill_stream_timeout(const rill_stream *s)
{
    return s ? rill__tnode_ms(s->loop, &s->tnode) : 0; /* the armed value: no copy kept */
}

void rill_stream_set_max_buffer(rill_stream *s, size_t max)
{
    if (!s || (!max && !s->x))
        return; /* the default already holds */
    if (!rill__stream_sx(s)) {
        rill__log(RILL_LOG_ERROR, "max buffer not set: out of memory");
        return;
    }
    s->x->max_buffer = max ? max : RILL__DEFAULT_MAX_BUFFER;
    if (!(s->flags & RILL__S_CLOSED))
        rill__stream_update(s);
}

/* ---- queries ------------------------------------------------------------------------------ */

bool rill_stream_is_closed(const rill_stream *s)
{
    return !s || (s->flags & RILL__S_CLOSED);
}

bool rill_stream_is_readable(rill_stream *s)
{
    if (!s || (s->flags & RILL__S_CLOSED))
        return false;
    if (rill__in_len(s) || (s->flags & RILL__S_EOF))
        return true;
    if (s->io.fd < 0)
        return false;
    struct pollfd p = {s->io.fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR));
}

bool rill_stream_readable(const rill_stream *s)
{
    return s && (s->flags & RILL__S_READABLE) && !(s->flags & RILL__S_CLOSED);
}

bool rill_stream_writable(const rill_stream *s)
{
    return s && (s->flags & RILL__S_WRITABLE) && !(s->flags & (RILL__S_CLOSED | RILL__S_SHUT));
}

bool rill_stream_ipc(const rill_stream *s)
{
    return s && (s->flags & RILL__S_IPC);
}

int rill_stream_family(const rill_stream *s)
{
    return s ? s->family : AF_UNSPEC;
}

int rill_stream_fd(const rill_stream *s)
{
    if (!s)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    return s->io.fd >= 0 ? s->io.fd : RILL_EINVAL;
}

int rill_stream_error(const rill_stream *s)
{
    return s ? s->err : RILL_EINVAL;
}

rill_loop *rill_stream_loop(const rill_stream *s)
{
    return s ? s->loop : NULL;
}

void rill_stream_set_data(rill_stream *s, void *data)
{
    if (s)
        s->data = data;
}

void *rill_stream_data(const rill_stream *s)
{
    return s ? s->data : NULL;
}
