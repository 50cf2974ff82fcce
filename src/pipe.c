/* src/pipe.c - rill_pipe: a thread-safe in-memory byte pipe (pyslet's Pipe) with copied
 * and zero-copy writes, blocking or non-blocking ends, timeouts and a reader flag.
 *
 * One mutex guards everything; readers and writers sleep on their own condition variable
 * (CLOCK_MONOTONIC, so a wall-clock jump changes no timeout).  Each side counts its
 * sleepers that no broadcast has reached yet, and the other side signals only while that
 * count is not zero; a call that must wait spins briefly before it sleeps when the other
 * side runs on another CPU, and yields when it waits for this one (pause_on says why):
 * in a busy stream neither side makes a system call. */
#include "pipe.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#ifdef RILL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

/* One run of buffered bytes: either a reference to a writer's rill_bytes or a block the
 * pipe owns and copies into.  Blocks are recycled through a small spare list. */
typedef struct seg {
    struct seg *next;
    rill_bytes *bytes; /* referenced memory; NULL for a copied block */
    const char *data;  /* first unread byte */
    size_t len;        /* unread bytes */
    size_t cap;        /* copied blocks: the size of buf */
    char buf[];
} seg;

#define BLOCK_MAX 16384u
#define BLOCK_MIN 512u
#define SPARE_MAX 16u
#define LEASE_MIN 4096u /* reads at least this big copy outside the lock */
#define LEASE_RUNS 8

/* Where leased bytes lie: the reader copies them with the lock released. */
typedef struct {
    const char *data;
    size_t len;
} run;

/* A reader's visit to report after unlocking: the notification fn may call back in. */
typedef struct {
    void (*fn)(void *);
    void *arg;
} visit;

typedef enum { BY_MODE, NO_WAIT, ALWAYS_WAIT } waitmode;

/* How one blocking call waits: until `at` (unless forever), spinning for up to spin_ns
 * in all before it sleeps. */
typedef struct {
    struct timespec at;
    bool forever;
    long spin_ns;
    long wake_spin_ns; /* spin time left for waits on a thread just woken (spin) */
    unsigned yields;   /* sched_yield calls left (yield_first) */
} deadline;

/* How the threads of one end wait: readers for data, EOF or close; writers for room or
 * close (flushers, for an empty buffer, share the writers' condition variable).
 *
 * `sleepers` counts the threads asleep on cond that no broadcast has reached yet: the
 * waker broadcasts only while it is not zero, and zeroes it.  A writer that appends
 * sixteen times while a reader is being woken signals once, not sixteen times.  A sleeper
 * that leaves on a timeout stays counted until the next broadcast; that costs one
 * needless broadcast, while a count that were too low would lose a wake-up. */
typedef struct {
    pthread_cond_t cond;
    unsigned sleepers;
    bool spinning;      /* a thread of this end spins: its others sleep at once */
    unsigned spin_skip; /* waits left that sleep without spinning, after a spin in vain */
    unsigned backoff;   /* spin_skip after the next spin in vain: doubles while they fail */
    int cpu;            /* the CPU this end last ran on, -1 when unknown */
    bool woken;         /* its sleepers were woken and none has run since: it comes soon */
    unsigned shared;    /* waits in a row that found the other end on this CPU (yield_first) */
} waiters;

struct rill_pipe {
    pthread_mutex_t mu;
    waiters r;          /* readers: data, EOF, close, mode change, a lease's end */
    waiters w;          /* writers: room, close, EOF, mode change */
    unsigned fsleepers; /* flushers asleep on w.cond, not yet woken: for an empty buffer */
    seg *head, *tail;
    size_t len;   /* bytes buffered, including those a reader is copying out */
    size_t lent;  /* of those, the front bytes a reader is copying out (leased) */
    uint64_t gen; /* changes with the front of the buffer: readmatch rescans */
    size_t bsize, blk;
    seg *spare;
    unsigned nspare, spare_max;
    atomic_ulong seq; /* bumped on every change a waiter may wait for; spinners watch it */
    bool rblocking, wblocking;
    bool eof, closed, rflag;
    bool leased;        /* a reader is copying from the front without the lock */
    unsigned owed;      /* WAKE_* broadcasts to make once the lock is released */
    atomic_uint waking; /* threads in the pipe after unlocking (unlock, close): free waits */
    int64_t timeout_ms; /* negative: forever */
    void (*notify)(void *);
    void *notify_arg;
    rill__pipe_hook *hook;
    void *hook_arg;
    unsigned armed; /* RILL__PIPE_* the hook waits for */
    char name[];
};

enum { WAKE_R = 1u, WAKE_W = 2u };

/* ---- deadlines and sleeping ------------------------------------------------------------ */

/* Lock held: makes the broadcasts owed so far (see unlock). */
static void pay_wakes(rill_pipe *p)
{
    if (p->owed & WAKE_R)
        pthread_cond_broadcast(&p->r.cond);
    if (p->owed & WAKE_W)
        pthread_cond_broadcast(&p->w.cond);
    p->owed = 0;
}

/* Releases the lock, then wakes the sleepers owed a wake-up.  Broadcasting after the
 * unlock matters when both threads share a CPU: a sleeper woken while we hold the lock
 * may preempt us, only to block on the lock and hand the CPU straight back, which costs
 * two context switches per hand-off.  `waking` keeps rill_pipe_free from destroying the
 * condition variables under a broadcast still in flight. */
static void unlock(rill_pipe *p)
{
    unsigned owed = p->owed;
    if (!owed) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->owed = 0;
    atomic_fetch_add_explicit(&p->waking, 1, memory_order_relaxed);
    pthread_mutex_unlock(&p->mu);
    if (owed & WAKE_R)
        pthread_cond_broadcast(&p->r.cond);
    if (owed & WAKE_W)
        pthread_cond_broadcast(&p->w.cond);
    atomic_fetch_sub_explicit(&p->waking, 1, memory_order_release);
}

#ifndef SPIN_NS
#define SPIN_NS 20000L
#endif
#define SPIN_BACKOFF_MAX 64u
#define YIELDS_MAX 4u
#define YIELD_SLEEP_EVERY 8u
#define LOCK_TRIES 128u
#ifndef WAKE_SPIN_NS
#define WAKE_SPIN_NS 100000L /* per call, besides SPIN_NS: spin_first */
#endif

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static atomic_int spin_ok = -1; /* unknown yet */

/* Spinning pays only with another CPU to run the other side, and never under valgrind,
 * which runs one thread at a time. */
static bool spin_allowed(void)
{
    int ok = atomic_load_explicit(&spin_ok, memory_order_relaxed);
    if (ok < 0) {
        ok = sysconf(_SC_NPROCESSORS_ONLN) > 1;
#ifdef RILL_HAVE_VALGRIND_H
        ok = ok && !RUNNING_ON_VALGRIND;
#endif
        atomic_store_explicit(&spin_ok, ok, memory_order_relaxed);
    }
    return ok;
}

/* Takes the lock, trying LOCK_TRIES times before sleeping on it (about 13 us on the AMD
 * EPYC VM of bench/; less where `pause` is shorter).  Holds are short, but glibc's adaptive
 * mutex gives up after a microsecond or two, and on a VM a thread that sleeps on the mutex
 * wakes 40 us or more after the holder lets go: most of the context switches of a slow
 * bench/pipe run were such sleeps.  Not when only one CPU is online (spin_allowed). */
static void lock(rill_pipe *p)
{
    if (spin_allowed())
        for (unsigned i = 0; i < LOCK_TRIES; i++) {
            if (pthread_mutex_trylock(&p->mu) == 0)
                return;
            for (unsigned j = 0; j < 4; j++)
                cpu_relax();
        }
    pthread_mutex_lock(&p->mu);
}

/* Lock held.  Called wherever a sleeper may have something new to look at. */
static void changed(rill_pipe *p)
{
    atomic_store_explicit(&p->seq, atomic_load_explicit(&p->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static long ns_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Watches p->seq without the lock for up to *budget ns, and takes the time spent off it.
 * True when it moved. */
static bool spin_for_change(rill_pipe *p, unsigned long was, long *budget)
{
    struct timespec t0;
    bool moved = false;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 1; !moved; i++) {
        moved = atomic_load_explicit(&p->seq, memory_order_relaxed) != was;
        if (!moved)
            cpu_relax();
        if (!moved && i % 64 == 0 && ns_since(&t0) > *budget)
            break;
    }
    *budget -= ns_since(&t0);
    return moved;
}

static void deadline_set(deadline *d, int64_t ms)
{
    d->spin_ns = spin_allowed() ? SPIN_NS : 0;
    d->wake_spin_ns = WAKE_SPIN_NS;
    d->yields = YIELDS_MAX;
    d->forever = ms < 0;
    if (d->forever)
        return;
    clock_gettime(CLOCK_MONOTONIC, &d->at);
    d->at.tv_sec += (time_t)(ms / 1000);
    d->at.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (d->at.tv_nsec >= 1000000000L) {
        d->at.tv_sec++;
        d->at.tv_nsec -= 1000000000L;
    }
}

/* Timeout argument of the *_wait calls: negative forever, 0 the pipe's own. */
static int64_t wait_ms(const rill_pipe *p, int64_t ms)
{
    return ms == 0 ? p->timeout_ms : ms;
}

/* The CPU the calling thread runs on, or -1 where the system cannot say (cheap: glibc
 * reads it from the thread's rseq area). */
static int this_cpu(void)
{
#if defined(__linux__) && defined(_GNU_SOURCE)
    return sched_getcpu();
#else
    return -1;
#endif
}

/* Lock held: an end notes where it runs on every call and after every pause, for the
 * other end's spin_first and yield_first. */
static void note_cpu(waiters *me)
{
    me->cpu = this_cpu();
    me->woken = false; /* a thread of this end runs */
}

/* Whether this pause spins (lock held): only while the call has spin time left, and
 * only while a spin can pay:
 *   - the other end last ran on another CPU.  On the same CPU it cannot run while we
 *     spin, so the spin is lost whole: this is what happened when outside load or the
 *     scheduler put both threads on one CPU;
 *   - no other thread of the same end spins: with more threads than CPUs a second
 *     spinner only takes the CPU the other end needs.  The other end spinning is no
 *     reason to sleep: a reader and a writer wait for opposite things, and a writer that
 *     just saw room is still flagged as spinning while it takes the lock back, so a
 *     reader that finds the buffer empty then must spin too, not sleep;
 *   - the spins of this end have not been failing: after a spin that saw nothing move,
 *     the next waits sleep at once, 1, 2, 4... up to SPIN_BACKOFF_MAX of them while the
 *     failures go on.  Except while the other end was woken and has not run yet: it
 *     comes, though a VM may take 40 us or more to run it, so the spin may last up to
 *     WAKE_SPIN_NS, and if it is still in vain, that is no failure.  Counted as one, such
 *     spins set off the back-off, whose sleeps made the other end's spins fail in turn:
 *     in bench/pipe both ends then slept at every hand-over.
 * Once a pause sleeps instead, the rest of the call does too. */
static bool spin_first(waiters *me, const waiters *other, deadline *d)
{
    if (d->spin_ns <= 0)
        return false;
    bool coming = other->woken && d->wake_spin_ns > 0;
    bool ok =
        !me->spinning && (coming || !me->spin_skip) && (other->cpu < 0 || other->cpu != this_cpu());
    if (me->spin_skip && !coming)
        me->spin_skip--;
    if (!ok)
        d->spin_ns = 0;
    return ok;
}

/* Lock held: spins with the lock released until the pipe changes or the call's spin time
 * is used up. */
static void spin(rill_pipe *p, waiters *me, const waiters *other, deadline *d)
{
    unsigned long was = atomic_load_explicit(&p->seq, memory_order_relaxed);
    bool coming = other->woken && d->wake_spin_ns > 0;
    long *budget = coming ? &d->wake_spin_ns : &d->spin_ns;
    me->spinning = true;
    unlock(p);
    bool moved = spin_for_change(p, was, budget);
    lock(p);
    me->spinning = false;
    if (moved) {
        me->backoff = 1;
    } else if (coming) {
        d->spin_ns = 0; /* it was woken, not slow: no back-off, but this call sleeps now */
    } else {
        me->spin_skip = me->backoff;
        me->backoff = RILL__MIN(2 * me->backoff, SPIN_BACKOFF_MAX);
        d->spin_ns = 0;
    }
}

/* Whether this pause yields the CPU instead of sleeping (lock held): when the other end
 * last ran on this CPU and none of its threads sleeps in the pipe, it most likely waits
 * for this very CPU (if it is blocked elsewhere, the yields cost a few syscalls).  The
 * scheduler may put a reader and a writer on one CPU and keep them there while the other
 * CPU idles; bench/pipe caught them alternating every 7 us, 4 KiB a turn, two context
 * switches per write (0.1-2 GB/s instead of 13-18, in about half the runs).  A yield lets
 * the other end run on until it must wait itself, so each hand-over moves the buffer
 * whole.  Yet a sleep is what lets the scheduler move a woken thread to an idle CPU, where
 * the two spin instead (zero-copy hand-overs ran 4x faster so): so one such wait in
 * YIELD_SLEEP_EVERY still sleeps.  At most YIELDS_MAX yields per call: if the other end
 * is busy elsewhere, the call sleeps after them. */
static bool yield_first(waiters *me, const waiters *other, bool other_asleep, deadline *d)
{
    if (other->cpu < 0 || other->cpu != this_cpu()) {
        me->shared = 0;
        return false;
    }
    if (!d->yields || me->spinning || other_asleep || me->shared++ % YIELD_SLEEP_EVERY == 0)
        return false;
    d->yields--;
    return true;
}

/* Sleeps on me->cond with the lock held, counted in *sleepers (me->sleepers, or the
 * flushers' count).  True once the deadline has passed: callers then check their
 * condition one last time before reporting RILL_ETIMEDOUT.
 *
 * A pause may spin instead (spin_first), returning as soon as the other side changes
 * anything.  Handing over through the futex costs two context switches on each side
 * (about 12 us per hand-off on a 2-core VM), while a reader or writer that is running
 * answers within a microsecond: with one chunk in flight at a time, that is the
 * difference between 2x and 10x a kernel pipe.  A change need not be the one this call
 * waits for (a writer wanting room sees a reader's copy end before the bytes are taken),
 * so the call may spin again, but for SPIN_NS at most in all (and WAKE_SPIN_NS more while
 * the other end was just woken): that bounds the CPU a long wait burns; after it the
 * caller truly sleeps. */
static bool pause_on(rill_pipe *p, waiters *me, unsigned *sleepers, deadline *d)
{
    int rc;
    const waiters *other = me == &p->r ? &p->w : &p->r;
    if (spin_first(me, other, d)) {
        spin(p, me, other, d);
        return false;
    }
    bool other_asleep = other == &p->w ? p->w.sleepers || p->fsleepers : p->r.sleepers;
    if (yield_first(me, other, other_asleep, d)) {
        unlock(p);
        sched_yield();
        lock(p);
        note_cpu(me); /* (the scheduler may have moved us) */
        return false;
    }
    pay_wakes(p);  /* before we sleep: nobody else would make them */
    (*sleepers)++; /* the waker zeroes it when it broadcasts */
    if (d->forever)
        rc = pthread_cond_wait(&me->cond, &p->mu);
    else
        rc = pthread_cond_timedwait(&me->cond, &p->mu, &d->at);
    note_cpu(me);
    return rc == ETIMEDOUT;
}

static bool may_wait(waitmode m, bool blocking)
{
    return m == ALWAYS_WAIT || (m == BY_MODE && blocking);
}

static int timed_out(const rill_pipe *p, const char *what)
{
    rill__log(RILL_LOG_DEBUG, "pipe %s: %s timed out", p->name, what);
    return RILL_ETIMEDOUT;
}

/* ---- the segment chain ----------------------------------------------------------------- */

static seg *block_get(rill_pipe *p)
{
    seg *s = p->spare;
    if (s) {
        p->spare = s->next;
        p->nspare--;
    } else if (!(s = rill__malloc(sizeof *s + p->blk))) {
        return NULL;
    }
    s->next = NULL;
    s->bytes = NULL;
    s->data = s->buf;
    s->len = 0;
    s->cap = p->blk;
    return s;
}

/* Keeps a few blocks for the next writes: a steady stream then allocates nothing. */
static void block_put(rill_pipe *p, seg *s)
{
    if (p->nspare < p->spare_max) {
        s->next = p->spare;
        p->spare = s;
        p->nspare++;
    } else {
        rill__free(s);
    }
}

static void link_tail(rill_pipe *p, seg *s)
{
    if (p->tail)
        p->tail->next = s;
    else
        p->head = s;
    p->tail = s;
}

static size_t block_room(const seg *s)
{
    return s->cap - (size_t)(s->data - s->buf) - s->len;
}

/* Copies n bytes to the tail, adding blocks as needed.  Returns how many fit in memory. */
static size_t append_copy(rill_pipe *p, const char *src, size_t n)
{
    size_t done = 0;
    while (done < n) {
        seg *t = p->tail;
        if (!t || t->bytes || !block_room(t)) {
            if (!(t = block_get(p)))
                break;
            link_tail(p, t);
        }
        size_t k = RILL__MIN(block_room(t), n - done);
        memcpy(t->buf + (t->data - t->buf) + t->len, src + done, k);
        t->len += k;
        p->len += k;
        done += k;
    }
    return done;
}

/* A lone block the reader emptied stays as the tail for the next copy; a referenced
 * segment must not queue behind it, or the front would be an empty block. */
static void drop_empty_block(rill_pipe *p)
{
    seg *s = p->head;
    if (!s || s != p->tail || s->bytes || s->len)
        return;
    p->head = p->tail = NULL;
    block_put(p, s);
}

static int append_ref(rill_pipe *p, rill_bytes *b)
{
    seg *s = rill__malloc(sizeof *s);
    if (!s)
        return RILL_ENOMEM;
    drop_empty_block(p);
    s->next = NULL;
    s->bytes = rill_bytes_ref(b);
    s->data = rill_bytes_data(b);
    s->len = rill_bytes_len(b);
    s->cap = 0;
    link_tail(p, s);
    p->len += s->len;
    return 0;
}

/* Unlinks the emptied front segment.  Referenced ones go to *gone, to be released after
 * unlocking: dropping the last reference runs the writer's free function, which must not
 * run under our lock.  A lone block stays in place, rewound, for the next write. */
static void pop_front(rill_pipe *p, seg **gone)
{
    seg *s = p->head;
    if (!s->bytes && s == p->tail) {
        s->data = s->buf;
        return;
    }
    p->head = s->next;
    if (!p->head)
        p->tail = NULL;
    if (s->bytes) {
        s->next = *gone;
        *gone = s;
    } else {
        block_put(p, s);
    }
}

/* Consumes n <= p->len bytes from the front, copying them to dst unless it is NULL. */
static void take(rill_pipe *p, char *dst, size_t n, seg **gone)
{
    p->len -= n;
    p->gen++;
    while (n) {
        seg *s = p->head;
        size_t k = RILL__MIN(s->len, n);
        if (dst) {
            memcpy(dst, s->data, k);
            dst += k;
        }
        s->data += k;
        s->len -= k;
        n -= k;
        if (!s->len)
            pop_front(p, gone);
    }
}

/* Detaches every buffered segment (close).  Blocks go to *gone too: freed unlocked. */
static void take_all(rill_pipe *p, seg **gone)
{
    seg *s = p->head;
    while (s) {
        seg *next = s->next;
        s->next = *gone;
        *gone = s;
        s = next;
    }
    p->head = p->tail = NULL;
    p->gen++;
    p->len = 0;
}

/* After unlocking: drops references and frees what take / take_all set aside. */
static void release(seg *gone)
{
    while (gone) {
        seg *next = gone->next;
        rill_bytes_unref(gone->bytes);
        rill__free(gone);
        gone = next;
    }
}

/* ---- wake-ups -------------------------------------------------------------------------- */

static void fire(rill_pipe *p, unsigned events)
{
    events &= p->armed;
    if (events && p->hook) {
        p->armed &= ~events;
        p->hook(p, events, p->hook_arg);
    }
}

/* Bytes that count against bsize: those a reader is copying out are as good as read. */
static size_t queued(const rill_pipe *p)
{
    return p->len - p->lent;
}

static bool has_room(const rill_pipe *p)
{
    return queued(p) < p->bsize;
}

/* Wakes every reader asleep now, once the lock is released (lock held).  Those already
 * woken are not counted, so this is a system call only when a reader sleeps that nobody
 * has woken yet. */
static void wake_rsleepers(rill_pipe *p)
{
    if (p->r.sleepers) {
        p->r.sleepers = 0;
        p->r.woken = true;
        p->owed |= WAKE_R;
    }
}

/* The same for writers and flushers, who share a condition variable. */
static void wake_wsleepers(rill_pipe *p)
{
    if (p->w.sleepers || p->fsleepers)
        p->w.woken = true;
    p->w.sleepers = p->fsleepers = 0;
    p->owed |= WAKE_W;
}

/* Something for readers: data, EOF or close. */
static void wake_readers(rill_pipe *p)
{
    changed(p);
    wake_rsleepers(p);
    fire(p, RILL__PIPE_READABLE);
}

/* Room for writers (below bsize), or an empty buffer for flushers. */
static void wake_writers(rill_pipe *p)
{
    bool room = has_room(p);
    changed(p);
    if ((p->w.sleepers && room) || (p->fsleepers && !p->len))
        wake_wsleepers(p);
    if (room)
        fire(p, RILL__PIPE_WRITABLE);
}

/* Every read call raises the reader flag; the notification runs once unlocked. */
static void reader_visits(rill_pipe *p, visit *v)
{
    p->rflag = true;
    v->fn = p->notify;
    v->arg = p->notify_arg;
}

/* Lock held: waits until no reader copies from the front (a memcpy at most).  Changing the
 * front under a lease would pull memory from under that reader. */
static void lease_wait(rill_pipe *p)
{
    while (p->leased) {
        pay_wakes(p);
        p->r.sleepers++;
        pthread_cond_wait(&p->r.cond, &p->mu);
        p->r.woken = false; /* (woken readers run: see note_cpu) */
    }
}

static void unlock_and_notify(rill_pipe *p, const visit *v, seg *gone)
{
    unlock(p);
    release(gone);
    if (v->fn)
        v->fn(v->arg);
}

/* ---- creation and teardown ------------------------------------------------------------- */

/* Where the C library offers it, the mutex spins a little before it sleeps: the pipe's
 * critical sections are a few hundred nanoseconds, far less than a futex round trip. */
static int mutex_init(pthread_mutex_t *mu)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    pthread_mutexattr_t ma;
    int rc = pthread_mutexattr_init(&ma);
    if (rc)
        return rc;
    rc = pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    if (!rc)
        rc = pthread_mutex_init(mu, &ma);
    pthread_mutexattr_destroy(&ma);
    return rc;
#else
    return pthread_mutex_init(mu, NULL);
#endif
}

static int sync_init(rill_pipe *p)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc)
        return rc;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (!rc)
        rc = mutex_init(&p->mu);
    if (!rc && (rc = pthread_cond_init(&p->r.cond, &ca)))
        pthread_mutex_destroy(&p->mu);
    if (!rc && (rc = pthread_cond_init(&p->w.cond, &ca))) {
        pthread_cond_destroy(&p->r.cond);
        pthread_mutex_destroy(&p->mu);
    }
    pthread_condattr_destroy(&ca);
    return rc;
}

static void settle_sizes(rill_pipe *p, size_t bsize)
{
    p->bsize = bsize ? bsize : 8192;
    p->blk = RILL__MAX(RILL__MIN(p->bsize, BLOCK_MAX), BLOCK_MIN);
    /* Up to bsize may be queued behind a reader copying out as much: spares for both. */
    p->spare_max = (unsigned)RILL__MIN(2 * (p->bsize / p->blk + 1), SPARE_MAX);
}

rill_pipe *rill_pipe_new(const rill_pipe_opts *opts)
{
    static atomic_uint serial;
    rill_pipe_opts o = opts ? *opts : (rill_pipe_opts){0};
    char defname[32];
    if (o.timeout_ms < -1 || o.bsize > (size_t)SSIZE_MAX) {
        errno = EINVAL;
        return NULL;
    }
    if (!o.name) {
        snprintf(defname, sizeof defname, "pipe-%u", atomic_fetch_add(&serial, 1) + 1);
        o.name = defname;
    }
    size_t nlen = strlen(o.name) + 1;
    rill_pipe *p = rill__calloc(1, sizeof *p + nlen);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = sync_init(p);
    if (rc) {
        rill__free(p);
        errno = rc;
        return NULL;
    }
    memcpy(p->name, o.name, nlen);
    settle_sizes(p, o.bsize);
    p->rblocking = !o.rnonblock;
    p->wblocking = !o.wnonblock;
    p->timeout_ms = o.timeout_ms == 0 ? -1 : o.timeout_ms;
    p->r.cpu = p->w.cpu = -1;
    p->r.backoff = p->w.backoff = 1;
    return p;
}

void rill_pipe_close(rill_pipe *p)
{
    seg *gone = NULL;
    visit v;
    lock(p);
    if (p->closed) {
        unlock(p);
        return;
    }
    lease_wait(p); /* a reader may be copying out of the blocks we are about to free */
    size_t lost = p->len;
    p->closed = true;
    take_all(p, &gone);
    reader_visits(p, &v);
    changed(p);
    wake_rsleepers(p);
    wake_wsleepers(p);
    fire(p, RILL__PIPE_READABLE | RILL__PIPE_WRITABLE);
    if (lost) /* a writer that sees the close may free the pipe before the line names it */
        atomic_fetch_add_explicit(&p->waking, 1, memory_order_relaxed);
    unlock(p);
    if (lost) {
        rill__log(RILL_LOG_WARN, "pipe %s: closed by the reader; %zu unread bytes discarded",
                  p->name, lost);
        atomic_fetch_sub_explicit(&p->waking, 1, memory_order_release);
    }
    release(gone);
    if (v.fn)
        v.fn(v.arg);
}

void rill_pipe_free(rill_pipe *p)
{
    if (!p)
        return;
    rill_pipe_close(p);
    while (atomic_load_explicit(&p->waking, memory_order_acquire)) /* microseconds */
        sched_yield();
    while (p->spare) {
        seg *s = p->spare;
        p->spare = s->next;
        rill__free(s);
    }
    pthread_cond_destroy(&p->w.cond);
    pthread_cond_destroy(&p->r.cond);
    pthread_mutex_destroy(&p->mu);
    rill__free(p);
}

const char *rill_pipe_name(const rill_pipe *p)
{
    return p->name;
}

/* ---- the write side -------------------------------------------------------------------- */

/* Writes are refused for good once EOF was written or the reader left. */
static int write_refused(const rill_pipe *p)
{
    return p->closed || p->eof ? RILL_EPIPE : 0;
}

/* Lock held, below bsize: queues b, or as much of data as fits.  Bytes taken (0 for b),
 * or RILL_ENOMEM with nothing taken. */
static ssize_t append(rill_pipe *p, const void *data, size_t len, rill_bytes *b)
{
    ssize_t rc;
    if (b) {
        rc = append_ref(p, b);
    } else {
        size_t n = append_copy(p, data, RILL__MIN(len, p->bsize - queued(p)));
        rc = n ? (ssize_t)n : RILL_ENOMEM;
    }
    if (rc >= 0)
        wake_readers(p);
    return rc;
}

/* Writes a copy of data[0..len), or b by reference when b is not NULL. */
static ssize_t write_any(rill_pipe *p, const void *data, size_t len, rill_bytes *b, waitmode m)
{
    ssize_t rc;
    deadline d;
    deadline_set(&d, p->timeout_ms);
    lock(p);
    note_cpu(&p->w);
    for (bool late = false;; late = pause_on(p, &p->w, &p->w.sleepers, &d)) {
        if ((rc = write_refused(p)) || !len)
            break;
        if (has_room(p)) {
            rc = append(p, data, len, b);
            break;
        }
        if (!may_wait(m, p->wblocking)) {
            rc = RILL_EAGAIN;
            break;
        }
        if (late) {
            rc = timed_out(p, "write");
            break;
        }
    }
    unlock(p);
    return rc;
}

ssize_t rill_pipe_write(rill_pipe *p, const void *data, size_t len)
{
    if (!data && len)
        return RILL_EINVAL;
    return write_any(p, data, len, NULL, BY_MODE);
}

int rill_pipe_write_bytes(rill_pipe *p, rill_bytes *b)
{
    if (!b)
        return RILL_EINVAL;
    return (int)write_any(p, NULL, rill_bytes_len(b), b, BY_MODE);
}

int rill_pipe_write_eof(rill_pipe *p)
{
    int rc = 0;
    lock(p);
    if (p->closed) {
        rc = RILL_EPIPE;
    } else if (!p->eof) {
        p->eof = true;
        wake_readers(p);
        if (p->w.sleepers) /* writers waiting for room will never get it now */
            wake_wsleepers(p);
        fire(p, RILL__PIPE_WRITABLE);
    }
    unlock(p);
    return rc;
}

static int flush_until(rill_pipe *p, waitmode m, int64_t ms)
{
    int rc = 0;
    deadline d;
    deadline_set(&d, ms);
    lock(p);
    for (bool late = false;; late = pause_on(p, &p->w, &p->fsleepers, &d)) {
        if (p->closed) {
            rc = RILL_EPIPE;
            break;
        }
        if (!p->len)
            break;
        if (!may_wait(m, p->wblocking)) {
            rc = RILL_EAGAIN;
            break;
        }
        if (late) {
            rc = timed_out(p, "flush");
            break;
        }
    }
    unlock(p);
    return rc;
}

int rill_pipe_flush(rill_pipe *p)
{
    return flush_until(p, BY_MODE, p->timeout_ms);
}

int rill_pipe_flush_wait(rill_pipe *p, int64_t timeout_ms)
{
    return flush_until(p, ALWAYS_WAIT, wait_ms(p, timeout_ms));
}

int rill_pipe_write_wait(rill_pipe *p, int64_t timeout_ms)
{
    int rc;
    deadline d;
    deadline_set(&d, wait_ms(p, timeout_ms));
    lock(p);
    for (bool late = false;; late = pause_on(p, &p->w, &p->w.sleepers, &d)) {
        if ((rc = write_refused(p)) || has_room(p))
            break;
        if (late) {
            rc = timed_out(p, "write_wait");
            break;
        }
    }
    unlock(p);
    return rc;
}

ssize_t rill_pipe_canwrite(rill_pipe *p)
{
    ssize_t rc;
    lock(p);
    rc = write_refused(p);
    if (!rc) {
        rc = has_room(p) ? (ssize_t)(p->bsize - queued(p)) : 0;
        if (!rc)
            p->rflag = false;
    }
    unlock(p);
    return rc;
}

/* ---- the read side --------------------------------------------------------------------- */

/* Sleeps until data, EOF or close, and no other reader holds a lease (lock held).  0 when there is
 * something to look at, else RILL_EAGAIN or RILL_ETIMEDOUT.  `late` carries over between calls of
 * one read. */
static int await_data(rill_pipe *p, waitmode m, deadline *d, bool *late, const char *what)
{
    if ((p->len || p->eof || p->closed) && !p->leased)
        return 0;
    if (!may_wait(m, p->rblocking))
        return RILL_EAGAIN;
    if (*late)
        return timed_out(p, what);
    *late = pause_on(p, &p->r, &p->r.sleepers, d);
    return 1; /* woke: look again */
}

/* Begins a read: locks (the caller unlocks), raises the reader flag and waits per m.
 * 0 with data buffered or at EOF, else RILL_ECLOSED, RILL_EAGAIN or RILL_ETIMEDOUT. */
static int read_begin(rill_pipe *p, waitmode m, visit *v)
{
    int rc;
    deadline d;
    bool late = false;
    deadline_set(&d, p->timeout_ms);
    lock(p);
    note_cpu(&p->r);
    reader_visits(p, v);
    while ((rc = await_data(p, m, &d, &late, "read")) > 0)
        ;
    return !rc && p->closed ? RILL_ECLOSED : rc;
}

/* Lock held: leases the first bytes (up to len, over at most LEASE_RUNS segments) and
 * notes where they lie.  Returns how many.  While the lease lasts no other reader and no
 * close touches the front, and writers only append past it, so the runs stay valid. */
static size_t lease_front(rill_pipe *p, size_t len, run *r, int *nr)
{
    size_t n = 0;
    int i = 0;
    for (const seg *s = p->head; s && n < len && i < LEASE_RUNS; s = s->next) {
        if (!s->len)
            continue;
        r[i].data = s->data;
        r[i].len = RILL__MIN(s->len, len - n);
        n += r[i++].len;
    }
    *nr = i;
    p->leased = true;
    p->lent = n;
    changed(p); /* room: a spinning writer appends while we copy */
    return n;
}

/* Lock held again: the reader is done copying.  Sleeping writers are woken once the
 * bytes are taken (wake_writers), not at the lease's start: on one CPU a writer woken
 * then would only take the CPU from the copy that frees its blocks. */
static void lease_end(rill_pipe *p)
{
    p->leased = false;
    p->lent = 0;
    changed(p);
    wake_rsleepers(p);
}

/* A big read copies with the lock released, so writers keep appending meanwhile instead
 * of queueing on the mutex behind a 64 KiB memcpy. */
static size_t copy_unlocked(rill_pipe *p, char *buf, size_t len)
{
    run r[LEASE_RUNS];
    int nr;
    size_t n = lease_front(p, len, r, &nr);
    unlock(p);
    for (int i = 0; i < nr; i++) {
        memcpy(buf, r[i].data, r[i].len);
        buf += r[i].len;
    }
    lock(p);
    lease_end(p);
    return n;
}

static ssize_t read_copy(rill_pipe *p, void *buf, size_t len, waitmode m)
{
    seg *gone = NULL;
    visit v;
    if (!len)
        return 0;
    ssize_t rc = read_begin(p, m, &v);
    if (!rc && p->len) {
        size_t n = RILL__MIN(len, p->len);
        if (n < LEASE_MIN)
            take(p, buf, n, &gone);
        else
            take(p, NULL, n = copy_unlocked(p, buf, n), &gone);
        wake_writers(p);
        rc = (ssize_t)n;
    }
    unlock_and_notify(p, &v, gone);
    return rc;
}

ssize_t rill_pipe_read(rill_pipe *p, void *buf, size_t len)
{
    if (!buf && len)
        return RILL_EINVAL;
    return read_copy(p, buf, len, BY_MODE);
}

/* The front segment when it is a writer's rill_bytes, untouched and within max. */
static rill_bytes *front_whole(const rill_pipe *p, size_t max)
{
    const seg *s = p->head;
    if (!s || !s->bytes || s->len > max || s->data != rill_bytes_data(s->bytes) ||
        s->len != rill_bytes_len(s->bytes))
        return NULL;
    return s->bytes;
}

/* Hands over the front rill_bytes: the segment's reference becomes the caller's. */
static rill_bytes *take_whole(rill_pipe *p, seg **gone)
{
    seg *s = p->head;
    rill_bytes *b = s->bytes;
    size_t n = s->len;
    p->head = s->next;
    if (!p->head)
        p->tail = NULL;
    p->len -= n;
    p->gen++;
    s->bytes = NULL;
    s->next = *gone;
    *gone = s;
    return b;
}

/* Copies up to max bytes into a new rill_bytes (nothing consumed on failure). */
static ssize_t take_copy(rill_pipe *p, size_t max, rill_bytes **out, seg **gone)
{
    size_t n = RILL__MIN(max, p->len);
    char *buf = rill__malloc(n);
    rill_bytes *b = buf ? rill_bytes_wrap(buf, n, rill__free) : NULL;
    if (!b) {
        rill__free(buf);
        return RILL_ENOMEM;
    }
    take(p, buf, n, gone);
    *out = b;
    return (ssize_t)n;
}

ssize_t rill_pipe_read_bytes(rill_pipe *p, size_t max, rill_bytes **out)
{
    seg *gone = NULL;
    visit v;
    if (!out)
        return RILL_EINVAL;
    *out = NULL;
    if (!max)
        return 0;
    ssize_t rc = read_begin(p, BY_MODE, &v);
    if (!rc && p->len) {
        if (front_whole(p, max)) {
            *out = take_whole(p, &gone);
            rc = (ssize_t)rill_bytes_len(*out);
        } else {
            rc = take_copy(p, max, out, &gone);
        }
        wake_writers(p);
    }
    unlock_and_notify(p, &v, gone);
    return rc;
}

int rill_pipe_read_wait(rill_pipe *p, int64_t timeout_ms)
{
    int rc;
    deadline d;
    bool late = false;
    deadline_set(&d, wait_ms(p, timeout_ms));
    lock(p);
    while ((rc = await_data(p, ALWAYS_WAIT, &d, &late, "read_wait")) > 0)
        ;
    unlock(p);
    return rc;
}

bool rill_pipe_canread(rill_pipe *p)
{
    lock(p);
    bool ok = p->len || p->eof || p->closed;
    unlock(p);
    return ok;
}

size_t rill_pipe_buffered(rill_pipe *p)
{
    lock(p);
    size_t n = p->len;
    unlock(p);
    return n;
}

bool rill_pipe_is_empty(rill_pipe *p)
{
    return rill_pipe_buffered(p) == 0;
}

/* ---- modes and the reader flag --------------------------------------------------------- */

void rill_pipe_set_rblocking(rill_pipe *p, bool on)
{
    lock(p);
    p->rblocking = on;
    changed(p);
    if (!on) /* sleeping readers return RILL_EAGAIN now */
        wake_rsleepers(p);
    unlock(p);
}

bool rill_pipe_rblocking(rill_pipe *p)
{
    lock(p);
    bool on = p->rblocking;
    unlock(p);
    return on;
}

void rill_pipe_set_wblocking(rill_pipe *p, bool on)
{
    lock(p);
    p->wblocking = on;
    changed(p);
    if (!on)
        wake_wsleepers(p);
    unlock(p);
}

bool rill_pipe_wblocking(rill_pipe *p)
{
    lock(p);
    bool on = p->wblocking;
    unlock(p);
    return on;
}

void rill_pipe_set_reader_notify(rill_pipe *p, void (*fn)(void *), void *arg)
{
    lock(p);
    p->notify = fn;
    p->notify_arg = arg;
    unlock(p);
}

bool rill_pipe_reader_flag(rill_pipe *p)
{
    lock(p);
    bool on = p->rflag;
    unlock(p);
    return on;
}

void rill_pipe_clear_reader_flag(rill_pipe *p)
{
    lock(p);
    p->rflag = false;
    unlock(p);
}

/* ---- readall --------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} gather;

/* Moves everything buffered into g (lock held).  0 or RILL_ENOMEM (nothing moved). */
static int gather_more(rill_pipe *p, gather *g, seg **gone)
{
    size_t need = g->len + p->len;
    if (need > g->cap) {
        size_t cap = RILL__MAX(need, g->cap * 2);
        char *nb = rill__realloc(g->buf, cap);
        if (!nb)
            return RILL_ENOMEM;
        g->buf = nb;
        g->cap = cap;
    }
    size_t n = p->len;
    take(p, g->buf + g->len, n, gone);
    g->len += n;
    wake_writers(p);
    return 0;
}

/* After a failed readall: the gathered bytes go back to the front, as one segment. */
static void put_back(rill_pipe *p, gather *g)
{
    if (!g->len) {
        rill__free(g->buf);
        return;
    }
    rill_bytes *b = rill_bytes_wrap(g->buf, g->len, rill__free);
    seg *s = b ? rill__malloc(sizeof *s) : NULL;
    if (!s) {
        rill__log(RILL_LOG_ERROR, "pipe %s: out of memory; %zu bytes read by readall lost", p->name,
                  g->len);
        if (b)
            rill_bytes_unref(b); /* frees g->buf */
        else
            rill__free(g->buf);
        return;
    }
    lease_wait(p);   /* a timeout may come while another reader holds the front */
    if (p->closed) { /* closed meanwhile: its unread bytes are gone, these too */
        rill_bytes_unref(b);
        rill__free(s);
        return;
    }
    drop_empty_block(p);
    s->bytes = b;
    s->data = g->buf;
    s->len = g->len;
    s->cap = 0;
    s->next = p->head;
    p->head = s;
    if (!p->tail)
        p->tail = s;
    p->len += g->len;
    p->gen++;
    wake_readers(p);
}

/* At EOF: the result.  A lone writer's rill_bytes is returned as it is. */
static ssize_t gather_done(rill_pipe *p, gather *g, rill_bytes **out, seg **gone)
{
    if (!g->len && p->head == p->tail && front_whole(p, SIZE_MAX)) {
        *out = take_whole(p, gone);
        wake_writers(p); /* the pipe is empty now: flushers wait for that */
        return (ssize_t)rill_bytes_len(*out);
    }
    int rc = p->len ? gather_more(p, g, gone) : 0;
    if (!rc && (*out = rill_bytes_wrap(g->buf, g->len, rill__free)))
        return (ssize_t)g->len;
    put_back(p, g);
    return RILL_ENOMEM;
}

ssize_t rill_pipe_readall(rill_pipe *p, rill_bytes **out)
{
    ssize_t rc;
    gather g = {0};
    seg *gone = NULL;
    visit v;
    deadline d;
    if (!out)
        return RILL_EINVAL;
    *out = NULL;
    lock(p);
    note_cpu(&p->r);
    reader_visits(p, &v);
    for (;;) {
        bool late = false;
        deadline_set(&d, p->timeout_ms); /* the timeout counts from the last progress */
        while ((rc = await_data(p, ALWAYS_WAIT, &d, &late, "readall")) > 0)
            ;
        if (!rc && p->closed)
            rc = RILL_ECLOSED;
        if (rc || p->eof)
            break;
        if ((rc = gather_more(p, &g, &gone)))
            break;
    }
    if (!rc)
        rc = gather_done(p, &g, out, &gone);
    else if (rc == RILL_ECLOSED)
        rill__free(g.buf);
    else
        put_back(p, &g);
    unlock_and_notify(p, &v, gone);
    return rc;
}

/* ---- readmatch ------------------------------------------------------------------------- */

/* True when m[0..mlen) starts at offset off of segment s (it may span segments). */
static bool match_at(const seg *s, size_t off, const char *m, size_t mlen)
{
    while (mlen) {
        if (!s)
            return false;
        size_t k = RILL__MIN(s->len - off, mlen);
        if (memcmp(s->data + off, m, k))
            return false;
        m += k;
        mlen -= k;
        s = s->next;
        off = 0;
    }
    return true;
}

/* The offset just past the first match at or after `from`, or 0 when there is none. */
static size_t find(const rill_pipe *p, const char *m, size_t mlen, size_t from)
{
    size_t base = 0;
    for (const seg *s = p->head; s; base += s->len, s = s->next) {
        if (from >= base + s->len)
            continue;
        for (size_t off = from > base ? from - base : 0; off < s->len; off++) {
            const char *hit = memchr(s->data + off, m[0], s->len - off);
            if (!hit)
                break;
            off = (size_t)(hit - s->data);
            if (match_at(s, off, m, mlen))
                return base + off + mlen;
        }
    }
    return 0;
}

/* Where a readmatch has searched up to; stale once the front of the buffer changed. */
typedef struct {
    size_t from;
    uint64_t gen;
} scan;

/* One look at the buffer: the line's length once complete (the rest at EOF), or
 * RILL_ENOBUFS, RILL_ECLOSED, or RILL_ENOMATCH to wait for more. */
static ssize_t find_line(rill_pipe *p, const char *m, size_t mlen, size_t cap, scan *sc)
{
    if (p->closed)
        return RILL_ECLOSED;
    if (p->leased) /* another reader is mid-copy: look once it is done */
        return RILL_ENOMATCH;
    if (sc->gen != p->gen) {
        sc->from = 0;
        sc->gen = p->gen;
    }
    size_t end = find(p, m, mlen, sc->from);
    if (!end && p->eof)
        end = p->len;
    if (end || p->eof)
        return end > cap ? RILL_ENOBUFS : (ssize_t)end;
    sc->from = p->len >= mlen ? p->len - mlen + 1 : 0; /* only new bytes next time */
    if (p->len >= p->bsize || p->len >= cap)
        return RILL_ENOBUFS;
    return RILL_ENOMATCH;
}

ssize_t rill_pipe_readmatch(rill_pipe *p, const void *match, size_t mlen, void *out, size_t cap)
{
    ssize_t rc;
    seg *gone = NULL;
    visit v;
    deadline d;
    scan sc = {0, 0};
    if (!match) {
        match = "\r\n";
        mlen = 2;
    } else if (!mlen) {
        return RILL_EINVAL;
    }
    if (!out && cap)
        return RILL_EINVAL;
    deadline_set(&d, p->timeout_ms);
    lock(p);
    note_cpu(&p->r);
    reader_visits(p, &v);
    sc.gen = p->gen;
    for (bool late = false;; late = pause_on(p, &p->r, &p->r.sleepers, &d)) {
        if ((rc = find_line(p, match, mlen, cap, &sc)) != RILL_ENOMATCH)
            break;
        if (!may_wait(BY_MODE, p->rblocking)) {
            rc = RILL_EAGAIN;
            break;
        }
        if (late) {
            rc = timed_out(p, "readmatch");
            break;
        }
    }
    if (rc > 0) {
        take(p, out, (size_t)rc, &gone);
        wake_writers(p);
    }
    unlock_and_notify(p, &v, gone);
    return rc;
}

/* ---- the loop bridge's side (src/pipe.h) ----------------------------------------------- */

void rill__pipe_set_hook(rill_pipe *p, rill__pipe_hook *fn, void *arg)
{
    lock(p);
    p->hook = fn;
    p->hook_arg = arg;
    p->armed = 0;
    unlock(p);
}

static unsigned ready_now(const rill_pipe *p)
{
    unsigned ev = 0;
    if (p->len || p->eof || p->closed)
        ev |= RILL__PIPE_READABLE;
    if (has_room(p) || p->eof || p->closed)
        ev |= RILL__PIPE_WRITABLE;
    return ev;
}

unsigned rill__pipe_watch(rill_pipe *p, unsigned events)
{
    lock(p);
    unsigned now = ready_now(p) & events;
    p->armed |= events & ~now;
    unlock(p);
    return now;
}

ssize_t rill__pipe_read_nb(rill_pipe *p, void *buf, size_t len)
{
    return read_copy(p, buf, len, NO_WAIT);
}

ssize_t rill__pipe_write_nb(rill_pipe *p, const void *data, size_t len)
{
    if (!data && len)
        return RILL_EINVAL;
    return write_any(p, data, len, NULL, NO_WAIT);
}

int rill__pipe_write_bytes_nb(rill_pipe *p, rill_bytes *b)
{
    if (!b)
        return RILL_EINVAL;
    return (int)write_any(p, NULL, rill_bytes_len(b), b, NO_WAIT);
}

ssize_t rill__pipe_peek(rill_pipe *p, const char **data)
{
    ssize_t rc;
    lock(p);
    if (p->closed) {
        rc = RILL_ECLOSED;
    } else if (p->len && !p->leased) {
        seg *s = p->head;
        while (!s->len) /* an emptied block may still sit in front */
            s = s->next;
        *data = s->data;
        rc = (ssize_t)s->len;
    } else {
        rc = p->eof ? 0 : RILL_EAGAIN;
    }
    unlock(p);
    return rc;
}

void rill__pipe_consume(rill_pipe *p, size_t n)
{
    seg *gone = NULL;
    visit v;
    lock(p);
    assert(!p->leased); /* the bridge is the pipe's only reader */
    reader_visits(p, &v);
    take(p, NULL, RILL__MIN(n, p->len), &gone);
    wake_writers(p);
    unlock_and_notify(p, &v, gone);
}
