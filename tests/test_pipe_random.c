/* tests/test_pipe_random.c - a randomized test of rill_pipe with real threads.
 *
 * 100 cases, each from a fixed seed (never the clock; every thread has its own PRNG derived
 * from its case's seed).  A case makes one pipe with a random buffer size (1 byte to
 * 256 KiB), random initial modes and a random timeout (1..20 ms, 50..500 ms, 2..4 s or
 * none), and runs over it:
 *
 * - a writer and a reader (cases 0-44);
 * - two writers and a reader (45-64): each writer's bytes carry its tag in their top bit,
 *   so the reader splits the stream into the two writers' streams;
 * - a writer, a reader and a flusher that calls rill_pipe_flush / rill_pipe_flush_wait at
 *   random (65-79);
 * - any of these where the reader closes the pipe early, at a random byte (80-99).
 *
 * The writers mix copied writes of random sizes, zero-copy writes (rill_pipe_write_bytes of
 * rill_bytes_wrap'd memory with a counting free function), canwrite-guided non-blocking
 * writes, write_wait, flush and flush_wait, mode switches and pauses, and end with
 * write_eof (the last writer).  The reader mixes reads and read_bytes of random sizes,
 * canread, read_wait, mode switches and pauses, and in some cases a readall from a random
 * byte on.  Each thread switches its own end's mode at random times.  Some cases first
 * probe, on the main thread, the calls that must time out or return RILL_EAGAIN on an
 * empty and on a full pipe (with short timeouts).
 *
 * Checked, against include/rill/pipe.h:
 * - the reader's bytes are exactly the writers' accepted bytes, in each writer's order
 *   (a write's count says what it took; RILL_EAGAIN, RILL_ETIMEDOUT and RILL_EPIPE take
 *   nothing), and with two writers no write is split by the other writer's bytes;
 * - read and read_bytes return 0 only once write_eof was called and every accepted byte
 *   was read; readall returns all the rest then;
 * - read_bytes of a whole rill_bytes queued by write_bytes, within max, is that very
 *   object (one writer, unless a readall put bytes back);
 * - each result is one the header allows in that state: RILL_EAGAIN only in non-blocking
 *   mode (never right after canread or read_wait said a read would not wait, never for a
 *   lone writer's write of what canwrite offered), RILL_ETIMEDOUT only with a finite
 *   timeout and not before it passed, RILL_EPIPE only once the reader closed or after
 *   write_eof, RILL_ECLOSED only after the close; canread true once EOF was written;
 *   buffered at most bsize plus one write_bytes (plus a read being copied out, asked from
 *   another thread; no bound once a readall ran: one that times out puts back all it
 *   gathered); a lone writer's successful flush leaves the pipe empty (unless a readall
 *   may have put bytes back);
 * - a write_eof or a close that comes while the other side sleeps wakes it: the last
 *   writer sometimes pauses before write_eof, and in early-close cases the writers keep
 *   to blocking writes once the reader is about to close (with no timeout, a lost
 *   wake-up is a hang, which the watchdog reports);
 * - no call with a finite timeout takes more than SLACK_MS past it (readall excepted: its
 *   timeout counts from the last byte), and no non-blocking call more than SLACK_MS;
 * - after write_eof: write, write_bytes, canwrite and write_wait give RILL_EPIPE; after the
 *   reader's close: reads RILL_ECLOSED, canread true, read_wait 0;
 * - the reader notification runs once per read call (and once for the close);
 * - after rill_pipe_free every wrapped rill_bytes was freed once (ASan/valgrind see the
 *   rest, TSan the races).
 *
 * Every wait is bounded: a case that has not finished in CASE_MS fails with its number
 * (the pipe is closed to wake the threads).  On failure the message names the case;
 * RILL_PIPE_CASE=N runs case N alone, RILL_PIPE_SEED=S makes other cases (for exploring;
 * the default is fixed), RILL_PIPE_VERBOSE=1 prints each case. */
#include "harness.h"
#include "th_rand.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rill_config.h"
#ifdef RILL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#define SEED 0x72696c6c70697065ull /* fixed: every run makes the same cases */
#define BSIZE_MAX (256u << 10)
#define RW_MAX (256u << 10) /* the largest copied write or read */
#define WB_MAX (64u << 10)  /* the largest write_bytes */
#define PAT 65521u          /* the writers' byte pattern repeats (changed) every PAT bytes */

#if defined(__SANITIZE_THREAD__)
#define TOTAL_MAX (256u << 10)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TOTAL_MAX (256u << 10)
#endif
#endif
#ifndef TOTAL_MAX
#define TOTAL_MAX (1u << 20)
#endif

static bool valgrind;
static int64_t slack_ms = 5000; /* how far past its timeout a call may return */
static int64_t case_ms = 20000; /* bound for one case */

static bool under_valgrind(void)
{
    if (getenv("RILL_VALGRIND"))
        return true;
#ifdef RILL_HAVE_VALGRIND_H
    return RUNNING_ON_VALGRIND;
#else
    return false;
#endif
}

static size_t min_z(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t max_z(size_t a, size_t b)
{
    return a > b ? a : b;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {0, (long)us * 1000L};
    nanosleep(&ts, NULL);
}

/* ---- wrapped rill_bytes, counted ---------------------------------------------------------- */

static atomic_size_t wraps, frees;

static void counted_free(void *p)
{
    free(p);
    atomic_fetch_add(&frees, 1);
}

/* ---- one case ------------------------------------------------------------------------- */

enum { K_ONE, K_TWO, K_FLUSH };
static const char *const kind_name[] = {"one writer", "two writers", "writer and flusher"};

enum {
    OP_NONE,
    OP_WRITE,
    OP_WRITE_BYTES,
    OP_CANWRITE,
    OP_WRITE_WAIT,
    OP_FLUSH,
    OP_FLUSH_WAIT,
    OP_WRITE_EOF,
    OP_READ,
    OP_READ_BYTES,
    OP_READALL,
    OP_READ_WAIT,
    OP_CANREAD,
    OP_CLOSE,
    OP_OTHER,
    OP_DONE,
};
static const char *const op_name[] = {
    "nothing", "write",      "write_bytes", "canwrite", "write_wait",
    "flush",   "flush_wait", "write_eof",   "read",     "read_bytes",
    "readall", "read_wait",  "canread",     "close",    "a mode switch, probe or pause",
    "done"};

typedef struct {
    size_t off, len;
    rill_bytes *b;
} reg_entry;

typedef struct kase kase;

typedef struct {
    kase *c;
    int id; /* writer 0 / 1; the reader and the flusher have their own */
    const char *name;
    pthread_t th;
    uint64_t rs;
    atomic_int doing;
    atomic_size_t at; /* for the watchdog's message */
    bool blocking;
    char *buf;
    /* writer */
    size_t pos;
    bool epipe;
    /* reader */
    size_t rpos[2];
    bool must_not_wait, put_back, at_eof, closed;
    size_t readall_at, reg_cur;
    int last_tag;
    size_t calls; /* read calls: the notification runs once per call */
    /* counts, summed after the join */
    size_t ops, eagain, timeouts, zerocopy, readalls, readall_timeouts;
    int64_t max_over_ms; /* the largest lateness of a timed-out call */
} thr;

struct kase {
    int num, kind;
    uint64_t seed;
    bool early;
    size_t close_at;
    size_t bsize;
    int64_t tmo;  /* the pipe's option (0: forever) */
    int64_t ptmo; /* the same as a wait: -1 forever */
    int nw;
    size_t total[2];
    unsigned char *pat[2];
    unsigned char *wends[2], *rends[2]; /* bitmaps: chunk ends of each writer, run ends */
    rill_pipe *p;
    atomic_size_t accepted[2];
    atomic_int writers_left, finished;
    atomic_bool eof_called, eof_done, closing, stop;
    atomic_bool readall_called; /* a timed-out readall puts back more than bsize */
    atomic_uint notified;
    pthread_mutex_t reg_mu;
    reg_entry *reg;
    size_t nreg, capreg;
    pthread_mutex_t fmu;
    bool failed;
    char msg[1024];
};

typedef struct {
    size_t bytes, ops, eagain, timeouts, zerocopy, readalls, readall_timeouts, early;
    int64_t max_over_ms;
} totals;

static uint64_t seed = SEED;

static void failf(thr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void failf(thr *t, const char *fmt, ...)
{
    kase *c = t->c;
    pthread_mutex_lock(&c->fmu);
    if (!c->failed) {
        c->failed = true;
        int k = snprintf(c->msg, sizeof c->msg,
                         "case %d (%s%s; RILL_PIPE_SEED=%#llx RILL_PIPE_CASE=%d runs it alone; "
                         "bsize %zu, timeout %lld ms, %zu+%zu bytes): %s at byte %zu: ",
                         c->num, kind_name[c->kind], c->early ? ", early close" : "",
                         (unsigned long long)seed, c->num, c->bsize, (long long)c->tmo, c->total[0],
                         c->total[1], t->name, atomic_load(&t->at));
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&c->fmu);
    atomic_store(&c->stop, true);
}

#define CHECK(t, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failf((t), __VA_ARGS__);                                                               \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static const char *ename(long rc)
{
    return rc >= 0 ? "a count" : rill_err_name((int)rc);
}

/* Byte i of writer w's stream.  With two writers the top bit is the writer's tag. */
static unsigned char gen_byte(const kase *c, int w, size_t i)
{
    unsigned char x = c->pat[w][i % PAT] ^ (unsigned char)(i / PAT);
    return c->nw == 2 ? (unsigned char)((w << 7) | (x & 0x7f)) : x;
}

static void gen(const kase *c, int w, size_t off, unsigned char *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gen_byte(c, w, off + i);
}

static void bit_set(unsigned char *map, size_t i)
{
    map[i / 8] |= (unsigned char)(1u << (i % 8));
}

static bool bit_get(const unsigned char *map, size_t i)
{
    return map[i / 8] & (1u << (i % 8));
}

/* Checks how long a call took: RILL_ETIMEDOUT only with a finite timeout and not before
 * it passed; with a finite timeout (tmo >= 0; 0 for calls that must not wait) no more
 * than slack_ms past it when `bounded`. */
static bool timing(thr *t, const char *what, uint64_t t0, int64_t tmo, long rc, bool bounded)
{
    int64_t ms = (int64_t)((now_ns() - t0) / 1000000u);
    if (rc == RILL_ETIMEDOUT) {
        CHECK(t, tmo > 0, "%s returned RILL_ETIMEDOUT with no timeout (%lld) after %lld ms", what,
              (long long)tmo, (long long)ms);
        CHECK(t, ms + 1 >= tmo, "%s timed out after %lld ms, before its %lld ms", what,
              (long long)ms, (long long)tmo);
        t->timeouts++;
        if (ms - tmo > t->max_over_ms)
            t->max_over_ms = ms - tmo;
    }
    CHECK(t, !bounded || tmo < 0 || ms <= tmo + slack_ms,
          "%s (%s) took %lld ms with a timeout of %lld ms", what, ename(rc), (long long)ms,
          (long long)tmo);
    return true;
}

/* A *_wait timeout: mostly short, sometimes the pipe's own (0), rarely forever (-1). */
static int64_t wait_arg(thr *t)
{
    size_t r = below(&t->rs, 20);
    return r == 0 ? -1 : r < 3 ? 0 : (int64_t)logu(&t->rs, 1, 20);
}

static int64_t wait_eff(const kase *c, int64_t tw)
{
    return tw < 0 ? -1 : tw == 0 ? c->ptmo : tw;
}

/* A yield, a short sleep, or now and then one of 1-25 ms: long enough for the other side's
 * short timeouts to pass. */
static void pause_some(thr *t, bool yield)
{
    if (yield)
        sched_yield();
    else if (below(&t->rs, 8))
        sleep_us((unsigned)below(&t->rs, 300));
    else
        sleep_us(1000u * (unsigned)logu(&t->rs, 1, 25));
}

/* buffered is at most bsize plus one write_bytes, plus what the reader is copying out
 * when another thread asks (a read of RW_MAX at most); no bound once a readall may have
 * put back what it gathered. */
static bool buffered_bound(thr *t, bool other)
{
    kase *c = t->c;
    bool readall = atomic_load(&c->readall_called);
    size_t n = rill_pipe_buffered(c->p);
    size_t most = c->bsize + WB_MAX + (other ? RW_MAX : 0);
    CHECK(t, n <= most || readall || atomic_load(&c->readall_called), /* (before or after) */
          "buffered %zu, over bsize + one write_bytes%s", n, other ? " + one read" : "");
    return true;
}

/* ---- the writers ------------------------------------------------------------------------ */

static void accept_bytes(thr *t, size_t n)
{
    kase *c = t->c;
    t->pos += n;
    bit_set(c->wends[t->id], t->pos);
    atomic_store(&c->accepted[t->id], t->pos);
    atomic_store(&t->at, t->pos);
}

/* How long a write may wait.  Two writers share the write end's mode, so each may find
 * it as the other set it. */
static int64_t w_tmo(const thr *t)
{
    return t->blocking || t->c->nw == 2 ? t->c->ptmo : 0;
}

/* A refused write: which refusals are allowed now. */
static bool refused(thr *t, const char *what, long rc, bool guided)
{
    kase *c = t->c;
    switch (rc) {
    case RILL_EAGAIN:
        CHECK(t, !t->blocking || c->nw == 2, "%s returned RILL_EAGAIN in blocking mode", what);
        CHECK(t, !guided || c->nw == 2,
              "%s of what canwrite offered returned RILL_EAGAIN (one writer)", what);
        t->eagain++;
        return true;
    case RILL_ETIMEDOUT:
        CHECK(t, t->blocking || c->nw == 2, "%s returned RILL_ETIMEDOUT in non-blocking mode",
              what);
        return true; /* (timing checks the rest) */
    case RILL_EPIPE:
        CHECK(t, atomic_load(&c->closing), "%s returned RILL_EPIPE before the reader closed", what);
        t->epipe = true;
        return true;
    default:
        CHECK(t, false, "%s returned %s", what, ename(rc));
    }
    return false;
}

static bool w_write(thr *t, size_t len, bool guided)
{
    kase *c = t->c;
    gen(c, t->id, t->pos, (unsigned char *)t->buf, len);
    atomic_store(&t->doing, OP_WRITE);
    uint64_t t0 = now_ns();
    ssize_t n = rill_pipe_write(c->p, t->buf, len);
    atomic_store(&t->doing, OP_NONE);
    if (!timing(t, "write", t0, w_tmo(t), n, true))
        return false;
    if (n < 0)
        return refused(t, "write", n, guided);
    CHECK(t, len ? n > 0 : n == 0, "write of %zu returned %zd", len, n);
    CHECK(t, (size_t)n <= len && (size_t)n <= c->bsize, "write of %zu took %zd (bsize %zu)", len, n,
          c->bsize);
    CHECK(t, !guided || c->nw == 2 || (size_t)n == len,
          "write of the %zu bytes canwrite offered took %zd (one writer)", len, n);
    accept_bytes(t, (size_t)n);
    return true;
}

static void reg_add(kase *c, size_t off, size_t len, rill_bytes *b)
{
    pthread_mutex_lock(&c->reg_mu);
    if (c->nreg == c->capreg) {
        c->capreg = c->capreg ? 2 * c->capreg : 64;
        c->reg = realloc(c->reg, c->capreg * sizeof *c->reg);
    }
    if (c->reg) /* (out of memory: the test fails at the end) */
        c->reg[c->nreg++] = (reg_entry){off, len, b};
    pthread_mutex_unlock(&c->reg_mu);
}

static void reg_drop_last(kase *c)
{
    pthread_mutex_lock(&c->reg_mu);
    c->nreg--;
    pthread_mutex_unlock(&c->reg_mu);
}

static bool w_write_bytes(thr *t, size_t len)
{
    kase *c = t->c;
    char *mem = malloc(len ? len : 1);
    CHECK(t, mem, "out of memory");
    gen(c, t->id, t->pos, (unsigned char *)mem, len);
    rill_bytes *b = rill_bytes_wrap(mem, len, counted_free);
    if (!b)
        free(mem);
    CHECK(t, b, "rill_bytes_wrap failed");
    atomic_fetch_add(&wraps, 1);
    bool reg = c->nw == 1 && len; /* the reader checks it gets this very object */
    if (reg)
        reg_add(c, t->pos, len, b);
    atomic_store(&t->doing, OP_WRITE_BYTES);
    uint64_t t0 = now_ns();
    int rc = rill_pipe_write_bytes(c->p, b);
    atomic_store(&t->doing, OP_NONE);
    rill_bytes_unref(b); /* the pipe keeps its own reference */
    if (rc && reg)
        reg_drop_last(c);
    if (!timing(t, "write_bytes", t0, w_tmo(t), rc, true))
        return false;
    if (rc)
        return refused(t, "write_bytes", rc, false);
    accept_bytes(t, len);
    return true;
}

/* flush or flush_wait from thread t, timed (flush waits up to flush_tmo); false when the
 * timing check failed. */
static bool timed_flush(thr *t, bool wait, int64_t flush_tmo, int *rc)
{
    kase *c = t->c;
    int64_t tw = wait ? wait_arg(t) : 0;
    int64_t tmo = wait ? wait_eff(c, tw) : flush_tmo;
    atomic_store(&t->doing, wait ? OP_FLUSH_WAIT : OP_FLUSH);
    uint64_t t0 = now_ns();
    *rc = wait ? rill_pipe_flush_wait(c->p, tw) : rill_pipe_flush(c->p);
    atomic_store(&t->doing, OP_NONE);
    return timing(t, wait ? "flush_wait" : "flush", t0, tmo, *rc, true);
}

static bool w_flush(thr *t, bool wait)
{
    kase *c = t->c;
    const char *what = wait ? "flush_wait" : "flush";
    int rc;
    if (!timed_flush(t, wait, w_tmo(t), &rc))
        return false;
    switch (rc) {
    case 0:
        /* nobody else writes: the reader can only take (but a readall that times out puts
         * back what it took, and flush may have seen the pipe empty in between) */
        if (c->nw == 1 && !atomic_load(&c->readall_called)) {
            size_t n = rill_pipe_buffered(c->p);
            CHECK(t, n == 0, "%s returned 0, then buffered said %zu", what, n);
            CHECK(t, rill_pipe_is_empty(c->p), "%s returned 0, then is_empty said false", what);
        }
        return true;
    case RILL_EAGAIN:
        CHECK(t, !wait && (!t->blocking || c->nw == 2), "%s returned RILL_EAGAIN", what);
        t->eagain++;
        return true;
    case RILL_ETIMEDOUT:
        CHECK(t, wait || t->blocking || c->nw == 2,
              "%s returned RILL_ETIMEDOUT in non-blocking mode", what);
        return true;
    case RILL_EPIPE:
        CHECK(t, atomic_load(&c->closing), "%s returned RILL_EPIPE before the reader closed", what);
        return true;
    default:
        CHECK(t, false, "%s returned %s", what, ename(rc));
    }
    return false;
}

static bool w_write_wait(thr *t)
{
    kase *c = t->c;
    int64_t tw = wait_arg(t);
    atomic_store(&t->doing, OP_WRITE_WAIT);
    uint64_t t0 = now_ns();
    int rc = rill_pipe_write_wait(c->p, tw);
    atomic_store(&t->doing, OP_NONE);
    if (!timing(t, "write_wait", t0, wait_eff(c, tw), rc, true))
        return false;
    CHECK(t, rc == 0 || rc == RILL_ETIMEDOUT || (rc == RILL_EPIPE && atomic_load(&c->closing)),
          "write_wait(%lld) returned %s", (long long)tw, ename(rc));
    t->epipe = rc == RILL_EPIPE;
    return true;
}

static void w_mode(thr *t, bool blocking)
{
    rill_pipe_set_wblocking(t->c->p, blocking);
    t->blocking = blocking;
}

/* What canwrite offers, written without waiting (a lone writer gets all of it); a full
 * pipe waits in write_wait instead. */
static bool w_guided(thr *t)
{
    kase *c = t->c;
    atomic_store(&t->doing, OP_CANWRITE);
    ssize_t k = rill_pipe_canwrite(c->p);
    atomic_store(&t->doing, OP_NONE);
    if (k == RILL_EPIPE && atomic_load(&c->closing)) {
        t->epipe = true;
        return true;
    }
    CHECK(t, k >= 0 && (size_t)k <= c->bsize, "canwrite returned %zd (%s), bsize %zu", k, ename(k),
          c->bsize);
    if (!k)
        return w_write_wait(t);
    if (t->blocking)
        w_mode(t, false);
    return w_write(t, min_z(min_z((size_t)k, RW_MAX), c->total[t->id] - t->pos), true);
}

static bool writer_step(thr *t, bool after_eagain)
{
    kase *c = t->c;
    size_t left = c->total[t->id] - t->pos;
    size_t r = below(&t->rs, 100);
    t->ops++;
    if (c->early && atomic_load(&c->accepted[0]) + atomic_load(&c->accepted[1]) >= c->close_at) {
        /* the reader is about to close: block in writes, so that the close must wake us */
        if (!t->blocking)
            w_mode(t, true);
        if (r < 50)
            return w_write(t, min_z(left, logu(&t->rs, 1, min_z(RW_MAX, max_z(64, 2 * c->bsize)))),
                           false);
        return w_write_bytes(t, min_z(left, logu(&t->rs, 1, WB_MAX)));
    }
    if (after_eagain && r < 60) { /* wait for room rather than poll */
        if (r < 40)
            return w_write_wait(t);
        sched_yield();
        return true;
    }
    if (r < 35)
        return w_write(t, min_z(left, logu(&t->rs, 1, min_z(RW_MAX, max_z(64, 2 * c->bsize)))),
                       false);
    if (r < 55)
        return w_write_bytes(t, min_z(left, logu(&t->rs, 1, WB_MAX)));
    if (r < 70)
        return w_guided(t);
    if (r < 74)
        return w_flush(t, r & 1);
    if (r < 78)
        return w_write_wait(t);
    if (r < 88) {
        w_mode(t, below(&t->rs, 2));
        CHECK(t, c->nw == 2 || rill_pipe_wblocking(c->p) == t->blocking,
              "wblocking is not what was set");
        return true;
    }
    if (r < 92)
        return buffered_bound(t, true);
    if (r < 94) /* nothing to write: 0, whatever the mode */
        return r & 1 ? w_write(t, 0, false) : w_write_bytes(t, 0);
    pause_some(t, r < 97);
    return true;
}

/* Writes after EOF are refused for good. */
static bool after_eof(thr *t)
{
    kase *c = t->c;
    char x = 'x';
    static const char one[1] = "y";
    ssize_t n = rill_pipe_write(c->p, &x, 1);
    CHECK(t, n == RILL_EPIPE, "write after write_eof returned %s", ename(n));
    rill_bytes *b = rill_bytes_static(one, 1);
    int rc = rill_pipe_write_bytes(c->p, b);
    rill_bytes_unref(b);
    CHECK(t, rc == RILL_EPIPE, "write_bytes after write_eof returned %s", ename(rc));
    n = rill_pipe_canwrite(c->p);
    CHECK(t, n == RILL_EPIPE, "canwrite after write_eof returned %s", ename(n));
    rc = rill_pipe_write_wait(c->p, 1);
    CHECK(t, rc == RILL_EPIPE, "write_wait after write_eof returned %s", ename(rc));
    rc = rill_pipe_write_eof(c->p);
    CHECK(t, rc == 0 || (rc == RILL_EPIPE && atomic_load(&c->closing)),
          "write_eof a second time returned %s", ename(rc));
    return true;
}

static bool writer_end(thr *t)
{
    kase *c = t->c;
    if (!t->epipe && below(&t->rs, 4) == 0 && !w_flush(t, true))
        return false;
    if (atomic_fetch_sub(&c->writers_left, 1) != 1)
        return true;      /* the other writer ends the data */
    if (below(&t->rs, 2)) /* the reader may fall asleep first: write_eof must wake it */
        sleep_us(1000u * (unsigned)logu(&t->rs, 1, 4));
    atomic_store(&c->eof_called, true);
    atomic_store(&t->doing, OP_WRITE_EOF);
    int rc = rill_pipe_write_eof(c->p);
    atomic_store(&t->doing, OP_NONE);
    CHECK(t, rc == 0 || (rc == RILL_EPIPE && atomic_load(&c->closing)), "write_eof returned %s",
          ename(rc));
    CHECK(t, !t->epipe || rc == RILL_EPIPE, "write_eof returned 0 after a write's RILL_EPIPE");
    if (!rc)
        atomic_store(&c->eof_done, true);
    if (!after_eof(t))
        return false;
    if (below(&t->rs, 3) == 0) /* the reader drains the rest, or closed */
        return w_flush(t, true);
    return true;
}

static void *writer_main(void *arg)
{
    thr *t = arg;
    kase *c = t->c;
    bool ok = true, eagain = false;
    while (ok && !atomic_load(&c->stop) && !t->epipe && t->pos < c->total[t->id]) {
        size_t before = t->eagain;
        ok = writer_step(t, eagain);
        eagain = t->eagain != before;
    }
    if (ok && !atomic_load(&c->stop))
        ok = writer_end(t);
    if (!ok || atomic_load(&c->stop))
        rill_pipe_write_eof(c->p); /* a failure: wake the reader (it reports nothing more) */
    atomic_store(&t->doing, OP_DONE);
    atomic_fetch_add(&c->finished, 1);
    return NULL;
}

/* ---- the reader ------------------------------------------------------------------------- */

/* Checks n bytes that arrived, against each writer's stream. */
static bool r_data(thr *t, const unsigned char *d, size_t n)
{
    kase *c = t->c;
    if (c->nw == 1) {
        size_t at = t->rpos[0];
        CHECK(t, at + n <= c->total[0], "%zu bytes more than the writer has (%zu)", n, c->total[0]);
        for (size_t i = 0; i < n; i++)
            CHECK(t, d[i] == gen_byte(c, 0, at + i),
                  "byte %zu of this read of %zu is %#x, the writer's byte %zu is %#x (lost, "
                  "duplicated or reordered bytes)",
                  i, n, d[i], at + i, gen_byte(c, 0, at + i));
        t->rpos[0] += n;
    } else {
        for (size_t i = 0; i < n; i++) {
            int w = d[i] >> 7;
            if (t->last_tag >= 0 && w != t->last_tag) /* a run of the other writer ends */
                bit_set(c->rends[t->last_tag], t->rpos[t->last_tag]);
            t->last_tag = w;
            CHECK(t, t->rpos[w] < c->total[w], "more bytes than writer %d has (%zu)", w,
                  c->total[w]);
            CHECK(t, (d[i] & 0x7f) == (gen_byte(c, w, t->rpos[w]) & 0x7f),
                  "byte %zu of this read of %zu is %#x, writer %d's byte %zu is %#x (lost, "
                  "duplicated or reordered bytes)",
                  i, n, d[i], w, t->rpos[w], gen_byte(c, w, t->rpos[w]));
            t->rpos[w]++;
        }
    }
    atomic_store(&t->at, t->rpos[0] + t->rpos[1]);
    return true;
}

/* Reads returned 0 or readall ended: EOF must have been written after every byte. */
static bool r_eof(thr *t, const char *what)
{
    kase *c = t->c;
    CHECK(t, atomic_load(&c->eof_called), "%s returned EOF before write_eof", what);
    for (int w = 0; w < c->nw; w++)
        CHECK(t, t->rpos[w] == atomic_load(&c->accepted[w]),
              "%s returned EOF after %zu of writer %d's %zu accepted bytes", what, t->rpos[w], w,
              atomic_load(&c->accepted[w]));
    t->at_eof = true;
    return true;
}

/* A read that gave nothing: which results are allowed now. */
static bool r_refused(thr *t, const char *what, long rc)
{
    if (rc == RILL_EAGAIN) {
        CHECK(t, !t->blocking, "%s returned RILL_EAGAIN in blocking mode", what);
        CHECK(t, !t->must_not_wait, "%s returned RILL_EAGAIN after canread / read_wait", what);
        t->eagain++;
        return true;
    }
    if (rc == RILL_ETIMEDOUT) {
        CHECK(t, t->blocking, "%s returned RILL_ETIMEDOUT in non-blocking mode", what);
        CHECK(t, !t->must_not_wait, "%s returned RILL_ETIMEDOUT after canread / read_wait", what);
        return true;
    }
    CHECK(t, false, "%s returned %s", what, ename(rc));
    return false;
}

static size_t rsize(thr *t)
{
    return min_z(RW_MAX, logu(&t->rs, 1, max_z(64, 2 * t->c->bsize)));
}

static bool r_read(thr *t)
{
    kase *c = t->c;
    size_t len = rsize(t);
    atomic_store(&t->doing, OP_READ);
    uint64_t t0 = now_ns();
    ssize_t n = rill_pipe_read(c->p, t->buf, len);
    atomic_store(&t->doing, OP_NONE);
    t->calls++;
    if (!timing(t, "read", t0, t->blocking ? c->ptmo : 0, n, true))
        return false;
    bool mnw = t->must_not_wait;
    t->must_not_wait = false;
    if (n > 0) {
        CHECK(t, (size_t)n <= len, "read of %zu returned %zd", len, n);
        return r_data(t, (unsigned char *)t->buf, (size_t)n);
    }
    if (n == 0)
        return r_eof(t, "read");
    t->must_not_wait = mnw;
    bool ok = r_refused(t, "read", n);
    t->must_not_wait = false;
    return ok;
}

/* The write_bytes queued at the reader's position, if any (one writer). */
static rill_bytes *reg_at(thr *t, size_t pos, size_t max)
{
    kase *c = t->c;
    rill_bytes *b = NULL;
    pthread_mutex_lock(&c->reg_mu);
    if (t->reg_cur > c->nreg)
        t->reg_cur = c->nreg;
    while (t->reg_cur < c->nreg && c->reg[t->reg_cur].off < pos)
        t->reg_cur++;
    if (t->reg_cur < c->nreg && c->reg[t->reg_cur].off == pos && c->reg[t->reg_cur].len <= max)
        b = c->reg[t->reg_cur].b;
    pthread_mutex_unlock(&c->reg_mu);
    return b;
}

static bool r_read_bytes(thr *t)
{
    kase *c = t->c;
    size_t max = below(&t->rs, 3) == 0 ? SIZE_MAX : rsize(t);
    rill_bytes *b = (rill_bytes *)&b; /* must be overwritten */
    atomic_store(&t->doing, OP_READ_BYTES);
    uint64_t t0 = now_ns();
    ssize_t n = rill_pipe_read_bytes(c->p, max, &b);
    atomic_store(&t->doing, OP_NONE);
    t->calls++;
    if (!timing(t, "read_bytes", t0, t->blocking ? c->ptmo : 0, n, true))
        return false;
    if (n <= 0)
        CHECK(t, !b, "read_bytes returned %s with *out set", n ? ename(n) : "0");
    bool mnw = t->must_not_wait;
    t->must_not_wait = false;
    if (n > 0) {
        bool ok = b && rill_bytes_len(b) == (size_t)n && (size_t)n <= max;
        if (!ok)
            rill_bytes_unref(b);
        CHECK(t, ok, "read_bytes(%zu) returned %zd with a rill_bytes of %zu", max, n,
              b ? rill_bytes_len(b) : 0);
        rill_bytes *want = c->nw == 1 && !t->put_back ? reg_at(t, t->rpos[0], max) : NULL;
        if (want && b != want) {
            rill_bytes_unref(b);
            CHECK(t, false,
                  "read_bytes(%zu) returned a copy of %zd bytes, not the rill_bytes written "
                  "there whole",
                  max, n);
        }
        t->zerocopy += want != NULL;
        ok = r_data(t, rill_bytes_data(b), (size_t)n);
        rill_bytes_unref(b);
        return ok;
    }
    if (n == 0)
        return r_eof(t, "read_bytes");
    t->must_not_wait = mnw;
    bool ok = r_refused(t, "read_bytes", n);
    t->must_not_wait = false;
    return ok;
}

static bool r_readall(thr *t)
{
    kase *c = t->c;
    rill_bytes *b = NULL;
    atomic_store(&c->readall_called, true);
    atomic_store(&t->doing, OP_READALL);
    uint64_t t0 = now_ns();
    ssize_t n = rill_pipe_readall(c->p, &b);
    atomic_store(&t->doing, OP_NONE);
    t->calls++;
    t->must_not_wait = false;
    /* (its timeout counts from the last byte: no upper bound but the case's) */
    if (!timing(t, "readall", t0, c->ptmo, n, false))
        return false;
    if (n >= 0) {
        bool ok = !b || rill_bytes_len(b) == (size_t)n;
        CHECK(t, ok, "readall returned %zd with a rill_bytes of %zu", n, rill_bytes_len(b));
        ok = !n || r_data(t, rill_bytes_data(b), (size_t)n);
        rill_bytes_unref(b);
        t->readalls++;
        return ok && r_eof(t, "readall");
    }
    CHECK(t, !b, "readall returned %s with *out set", ename(n));
    CHECK(t, n == RILL_ETIMEDOUT, "readall returned %s", ename(n));
    t->put_back = true; /* the bytes went back as the pipe's own rill_bytes */
    t->readall_timeouts++;
    return true;
}

static bool r_canread(thr *t)
{
    kase *c = t->c;
    bool eof = atomic_load(&c->eof_done);
    atomic_store(&t->doing, OP_CANREAD);
    bool ok = rill_pipe_canread(c->p);
    atomic_store(&t->doing, OP_NONE);
    CHECK(t, ok || !eof, "canread false after write_eof");
    t->must_not_wait = ok;
    return true;
}

static bool r_read_wait(thr *t)
{
    kase *c = t->c;
    int64_t tw = wait_arg(t);
    bool eof = atomic_load(&c->eof_done);
    atomic_store(&t->doing, OP_READ_WAIT);
    uint64_t t0 = now_ns();
    int rc = rill_pipe_read_wait(c->p, tw);
    atomic_store(&t->doing, OP_NONE);
    if (!timing(t, "read_wait", t0, wait_eff(c, tw), rc, true))
        return false;
    CHECK(t, rc == 0 || rc == RILL_ETIMEDOUT, "read_wait(%lld) returned %s", (long long)tw,
          ename(rc));
    CHECK(t, !rc || !eof, "read_wait returned %s after write_eof", ename(rc));
    t->must_not_wait = rc == 0;
    return true;
}

static bool reader_step(thr *t)
{
    kase *c = t->c;
    size_t r = below(&t->rs, 100);
    t->ops++;
    if (t->rpos[0] + t->rpos[1] >= t->readall_at && below(&t->rs, 4) == 0)
        return r_readall(t);
    if (r < 35)
        return r_read(t);
    if (r < 62)
        return r_read_bytes(t);
    if (r < 70)
        return r_canread(t);
    if (r < 78)
        return r_read_wait(t);
    if (r < 90) {
        bool on = below(&t->rs, 2);
        rill_pipe_set_rblocking(c->p, on);
        t->blocking = on;
        CHECK(t, rill_pipe_rblocking(c->p) == on, "rblocking is not what was set");
        return true;
    }
    if (r < 93) {
        if (!buffered_bound(t, false))
            return false;
        size_t n = rill_pipe_buffered(c->p);
        CHECK(t, !n || !rill_pipe_is_empty(c->p), "is_empty true with %zu buffered", n);
        return true;
    }
    pause_some(t, r < 97);
    return true;
}

/* The reader's end: after EOF every read says EOF again; after the close, RILL_ECLOSED. */
static bool reader_end(thr *t)
{
    kase *c = t->c;
    char x;
    rill_bytes *b = NULL;
    ssize_t n;
    if (t->at_eof) {
        n = rill_pipe_read(c->p, &x, 1);
        CHECK(t, n == 0, "read after EOF returned %s", ename(n));
        n = rill_pipe_read_bytes(c->p, 7, &b);
        CHECK(t, n == 0 && !b, "read_bytes after EOF returned %s", ename(n));
        CHECK(t, rill_pipe_canread(c->p), "canread false at EOF");
        int rc = rill_pipe_read_wait(c->p, 1);
        CHECK(t, rc == 0, "read_wait at EOF returned %s", ename(rc));
        n = rill_pipe_readall(c->p, &b);
        rill_bytes_unref(b);
        CHECK(t, n == 0, "readall at EOF returned %s", ename(n));
        t->calls += 3;
        if (below(&t->rs, 2))
            return true; /* rill_pipe_free closes */
    }
    if (!t->at_eof) /* writers may fall asleep first: the close must wake them */
        sleep_us(1000u * (unsigned)logu(&t->rs, 1, 4));
    atomic_store(&c->closing, true);
    atomic_store(&t->doing, OP_CLOSE);
    rill_pipe_close(c->p);
    atomic_store(&t->doing, OP_NONE);
    t->closed = true;
    t->calls++;            /* the close raises the flag too */
    rill_pipe_close(c->p); /* idempotent: no second notification */
    n = rill_pipe_read(c->p, &x, 1);
    CHECK(t, n == RILL_ECLOSED, "read after close returned %s", ename(n));
    n = rill_pipe_read_bytes(c->p, 7, &b);
    CHECK(t, n == RILL_ECLOSED && !b, "read_bytes after close returned %s", ename(n));
    n = rill_pipe_readall(c->p, &b);
    CHECK(t, n == RILL_ECLOSED && !b, "readall after close returned %s", ename(n));
    t->calls += 3;
    CHECK(t, rill_pipe_canread(c->p), "canread false after close");
    int rc = rill_pipe_read_wait(c->p, 1);
    CHECK(t, rc == 0, "read_wait after close returned %s", ename(rc));
    n = (ssize_t)rill_pipe_buffered(c->p);
    CHECK(t, n == 0, "%zd bytes buffered after close", n);
    return true;
}

static void *reader_main(void *arg)
{
    thr *t = arg;
    kase *c = t->c;
    bool ok = true;
    while (ok && !atomic_load(&c->stop) && !t->at_eof &&
           !(c->early && t->rpos[0] + t->rpos[1] >= c->close_at))
        ok = reader_step(t);
    if (ok && !atomic_load(&c->stop))
        ok = reader_end(t);
    if (!ok || atomic_load(&c->stop)) { /* a failure: wake the writers */
        atomic_store(&c->closing, true);
        rill_pipe_close(c->p);
        t->closed = true;
    }
    atomic_store(&t->doing, OP_DONE);
    atomic_fetch_add(&c->finished, 1);
    return NULL;
}

/* ---- the flusher ------------------------------------------------------------------------ */

static bool flusher_step(thr *t)
{
    kase *c = t->c;
    size_t r = below(&t->rs, 10);
    if (r < 6) {
        bool wait = r < 4;
        const char *what = wait ? "flush_wait" : "flush";
        int rc;
        /* flush follows the writer's mode, which this thread cannot know */
        if (!timed_flush(t, wait, c->ptmo, &rc))
            return false;
        CHECK(t,
              rc == 0 || rc == RILL_ETIMEDOUT || (!wait && rc == RILL_EAGAIN) ||
                  (rc == RILL_EPIPE && atomic_load(&c->closing)),
              "%s returned %s", what, ename(rc));
        return true;
    }
    if (r < 8)
        return buffered_bound(t, true);
    sleep_us((unsigned)below(&t->rs, 500));
    return true;
}

static void *flusher_main(void *arg)
{
    thr *t = arg;
    kase *c = t->c;
    bool ok = true;
    while (ok && !atomic_load(&c->stop) && atomic_load(&c->finished) == 0)
        ok = flusher_step(t); /* until a writer or the reader is done */
    atomic_store(&t->doing, OP_DONE);
    atomic_fetch_add(&c->finished, 1);
    return NULL;
}

/* ---- the main thread: probes, the watchdog, the checks after the join -------------------- */

static void notified(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
}

/* Calls on an empty and on a full pipe that must not wait, or must time out (short).  Run
 * on a thread of its own (the prober, before the others start), so that a hang is caught
 * by the watchdog like any other. */
static bool probe(thr *t)
{
    kase *c = t->c;
    thr *w0 = t - 4; /* th[0] */
    rill_pipe *p = c->p;
    int64_t ts = (int64_t)logu(&t->rs, 1, 10);
    char x;
    rill_bytes *b = NULL;
    uint64_t t0;
    int64_t ms;
    long rc_;
#define TIMED(call, want, tmo)                                                                     \
    do {                                                                                           \
        atomic_store(&t->doing, OP_OTHER);                                                         \
        t0 = now_ns();                                                                             \
        rc_ = (long)(call);                                                                        \
        ms = (int64_t)((now_ns() - t0) / 1000000u);                                                \
        atomic_store(&t->doing, OP_NONE);                                                          \
        CHECK(t,                                                                                   \
              rc_ == (want) && ms <= (tmo) + slack_ms &&                                           \
                  ((want) != RILL_ETIMEDOUT || ms + 1 >= (tmo)),                                   \
              "probe %s returned %s after %lld ms, want %s (timeout %lld ms)", #call, ename(rc_),  \
              (long long)ms, ename(want), (long long)(tmo));                                       \
    } while (0)

    rill_pipe_set_rblocking(p, false);
    TIMED(rill_pipe_read(p, &x, 1), RILL_EAGAIN, 0);
    TIMED(rill_pipe_read_bytes(p, 5, &b), RILL_EAGAIN, 0);
    CHECK(t, !b, "read_bytes set *out with RILL_EAGAIN");
    t->calls += 2;
    CHECK(t, !rill_pipe_canread(p), "canread true on a new pipe");
    TIMED(rill_pipe_read_wait(p, ts), RILL_ETIMEDOUT, ts);
    if (c->ptmo > 0 && c->ptmo <= 20) {
        rill_pipe_set_rblocking(p, true);
        TIMED(rill_pipe_read(p, &x, 1), RILL_ETIMEDOUT, c->ptmo);
        TIMED(rill_pipe_readall(p, &b), RILL_ETIMEDOUT, c->ptmo);
        CHECK(t, !b, "readall set *out with RILL_ETIMEDOUT");
        t->calls += 2;
    }
    if (c->total[0] < c->bsize)
        return true;
    /* fill it with writer 0's first bsize bytes: one write takes them all */
    rill_pipe_set_wblocking(p, below(&t->rs, 2));
    ssize_t k = rill_pipe_canwrite(p);
    CHECK(t, k == (ssize_t)c->bsize, "canwrite on a new pipe returned %zd", k);
    gen(c, 0, 0, (unsigned char *)w0->buf, c->bsize);
    TIMED(rill_pipe_write(p, w0->buf, c->bsize), (long)c->bsize, 0);
    accept_bytes(w0, c->bsize);
    CHECK(t, (k = rill_pipe_canwrite(p)) == 0, "canwrite on a full pipe returned %zd", k);
    CHECK(t, rill_pipe_buffered(p) == c->bsize, "buffered %zu", rill_pipe_buffered(p));
    CHECK(t, rill_pipe_canread(p), "canread false on a full pipe");
    rill_bytes *one = rill_bytes_static("z", 1);
    bool ok = false;
    rill_pipe_set_wblocking(p, false);
    TIMED(rill_pipe_write(p, "z", 1), RILL_EAGAIN, 0);
    TIMED(rill_pipe_write_bytes(p, one), RILL_EAGAIN, 0);
    TIMED(rill_pipe_flush(p), RILL_EAGAIN, 0);
    TIMED(rill_pipe_write_wait(p, ts), RILL_ETIMEDOUT, ts);
    TIMED(rill_pipe_flush_wait(p, ts), RILL_ETIMEDOUT, ts);
    if (c->ptmo > 0 && c->ptmo <= 20) {
        rill_pipe_set_wblocking(p, true);
        TIMED(rill_pipe_write(p, "z", 1), RILL_ETIMEDOUT, c->ptmo);
        TIMED(rill_pipe_write_bytes(p, one), RILL_ETIMEDOUT, c->ptmo);
        TIMED(rill_pipe_flush(p), RILL_ETIMEDOUT, c->ptmo);
    }
    ok = rill_pipe_buffered(p) == c->bsize; /* nothing more was taken */
    rill_bytes_unref(one);
    CHECK(t, ok, "buffered %zu after the refused writes", rill_pipe_buffered(p));
    return true;
#undef TIMED
}

static void *prober_main(void *arg)
{
    thr *t = arg;
    probe(t);
    atomic_store(&t->doing, OP_DONE);
    atomic_fetch_add(&t->c->finished, 1);
    return NULL;
}

/* Runs the threads marked in used[] and waits for them, for case_ms at most: then the
 * case fails with the watchdog's message (the pipe is closed to wake them).  0 when they
 * all ran, 1 after a failure, 2 when some are stuck even after the close (not joined: they
 * still use the case). */
static int run_threads(kase *c, thr *th, const bool *used)
{
    static void *(*const fn[5])(void *) = {writer_main, writer_main, reader_main, flusher_main,
                                           prober_main};
    int nthr = 0;
    atomic_store(&c->finished, 0);
    for (int i = 0; i < 5; i++)
        if (used[i]) {
            assert_int_equal(pthread_create(&th[i].th, NULL, fn[i], &th[i]), 0);
            nthr++;
        }
    uint64_t t0 = th_now_ms();
    while (atomic_load(&c->finished) < nthr && th_now_ms() - t0 <= (uint64_t)case_ms)
        sleep_us(1000);
    if (atomic_load(&c->finished) < nthr) {
        pthread_mutex_lock(&c->fmu); /* this message wins over what the close then causes */
        c->failed = true;
        size_t k = (size_t)snprintf(
            c->msg, sizeof c->msg,
            "case %d (%s%s; RILL_PIPE_SEED=%#llx RILL_PIPE_CASE=%d runs it alone; bsize %zu, "
            "timeout %lld ms): not done after %lld ms",
            c->num, kind_name[c->kind], c->early ? ", early close" : "", (unsigned long long)seed,
            c->num, c->bsize, (long long)c->tmo, (long long)case_ms);
        for (int i = 0; i < 5; i++)
            if (used[i] && k < sizeof c->msg)
                k += (size_t)snprintf(c->msg + k, sizeof c->msg - k, "; %s in %s at byte %zu",
                                      th[i].name, op_name[atomic_load(&th[i].doing)],
                                      atomic_load(&th[i].at));
        pthread_mutex_unlock(&c->fmu);
        atomic_store(&c->stop, true);
        atomic_store(&c->closing, true);
        rill_pipe_close(c->p); /* wakes every sleeper */
        uint64_t t1 = th_now_ms();
        while (atomic_load(&c->finished) < nthr && th_now_ms() - t1 < 2000)
            sleep_us(1000);
        if (atomic_load(&c->finished) < nthr)
            return 2;
    }
    for (int i = 0; i < 5; i++)
        if (used[i])
            pthread_join(th[i].th, NULL);
    return atomic_load(&c->stop) ? 1 : 0;
}

static void thr_init(thr *t, kase *c, int id, const char *name, uint64_t salt, size_t buf)
{
    t->c = c;
    t->id = id;
    t->name = name;
    t->rs = seed_of(c->seed ^ salt);
    t->last_tag = -1;
    t->readall_at = SIZE_MAX;
    t->blocking = true;
    if (buf)
        assert_non_null(t->buf = malloc(buf));
}

static bool run_case(int kind, bool early, int num, totals *sum, char *msg, size_t cap)
{
    kase *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->num = num;
    c->kind = kind;
    c->early = early;
    c->seed = seed_of(seed ^ ((uint64_t)num * 0x9e3779b97f4a7c15ull));
    c->nw = kind == K_TWO ? 2 : 1;
    c->bsize = logu(&c->seed, 1, BSIZE_MAX);
    size_t r = below(&c->seed, 20);
    c->tmo = r < 5    ? (int64_t)logu(&c->seed, 1, 20)
             : r < 10 ? (int64_t)logu(&c->seed, 50, 500)
             : r < 14 ? (int64_t)(2000 + below(&c->seed, 2000))
                      : 0;
    c->ptmo = c->tmo ? c->tmo : -1;
    /* about 1500 hand-overs at most (300 under valgrind, which runs one thread at a time) */
    size_t cap_total = valgrind ? (128u << 10) : TOTAL_MAX;
    size_t hand = valgrind ? 300 : 1500;
    for (int w = 0; w < c->nw; w++) {
        size_t hi = min_z(cap_total, c->bsize * hand + 4096);
        c->total[w] = below(&c->seed, 10) == 0 ? logu(&c->seed, 0, 64) /* a few bytes */
                                               : logu(&c->seed, min_z(hi, 16 * c->bsize), hi);
        assert_non_null(c->pat[w] = malloc(PAT));
        for (size_t i = 0; i < PAT; i++)
            c->pat[w][i] = (unsigned char)rnd(&c->seed);
        assert_non_null(c->wends[w] = calloc(c->total[w] / 8 + 1, 1));
        assert_non_null(c->rends[w] = calloc(c->total[w] / 8 + 1, 1));
        bit_set(c->wends[w], 0);
    }
    size_t both = c->total[0] + c->total[1];
    c->close_at =
        below(&c->seed, 2) ? logu(&c->seed, 0, both) : below(&c->seed, both - both / 8 + 1);
    atomic_store(&c->writers_left, c->nw);
    pthread_mutex_init(&c->reg_mu, NULL);
    pthread_mutex_init(&c->fmu, NULL);
    size_t wraps0 = atomic_load(&wraps), frees0 = atomic_load(&frees);

    char name[32];
    snprintf(name, sizeof name, "rand-%d", num);
    bool rnb = below(&c->seed, 2), wnb = below(&c->seed, 2);
    c->p = rill_pipe_new(&(rill_pipe_opts){
        .bsize = c->bsize, .rnonblock = rnb, .wnonblock = wnb, .timeout_ms = c->tmo, .name = name});
    assert_non_null(c->p);
    rill_pipe_set_reader_notify(c->p, notified, &c->notified);

    thr th[5];
    memset(th, 0, sizeof th);
    thr_init(&th[0], c, 0, "writer 0", 1, RW_MAX);
    thr_init(&th[1], c, 1, "writer 1", 2, c->nw == 2 ? RW_MAX : 0);
    thr_init(&th[2], c, 0, "the reader", 3, RW_MAX);
    thr_init(&th[3], c, 0, "the flusher", 4, 0);
    thr_init(&th[4], c, 0, "the prober", 5, 0);
    thr *rd = &th[2];
    if (below(&c->seed, 3) == 0 && !early) /* (readall would read past close_at) */
        rd->readall_at = logu(&c->seed, 0, c->total[0] + c->total[1]);
    bool probing[5] = {false, false, false, false, true};
    bool used[5] = {true, c->nw == 2, true, kind == K_FLUSH, false};
    uint64_t t0 = th_now_ms();
    int res = below(&c->seed, 3) ? 0 : run_threads(c, th, probing);
    if (!res) {
        rill_pipe_set_rblocking(c->p, !rnb);
        rill_pipe_set_wblocking(c->p, !wnb);
        th[0].blocking = th[1].blocking = !wnb;
        rd->blocking = !rnb;
        res = run_threads(c, th, used);
    }
    uint64_t ms = th_now_ms() - t0;
    if (res == 2) {
        pthread_mutex_lock(&c->fmu);
        snprintf(msg, cap, "%.900s (stuck even after the close)", c->msg);
        pthread_mutex_unlock(&c->fmu);
        return false; /* the threads still use the case: it is left to the process */
    }

    bool ok = !c->failed;
    if (c->failed)
        snprintf(msg, cap, "%s", c->msg);
    /* what arrived is what was accepted (a prefix of it when the reader left early) */
    for (int w = 0; ok && w < c->nw; w++) {
        size_t acc = atomic_load(&c->accepted[w]);
        if (rd->rpos[w] > acc || (!early && (rd->rpos[w] != acc || acc != c->total[w]))) {
            snprintf(msg, cap, "case %d: writer %d: %zu of %zu bytes accepted, %zu read", num, w,
                     acc, c->total[w], rd->rpos[w]);
            ok = false;
        }
    }
    /* two writers: every run of one writer's bytes ends where one of its writes ended */
    if (ok && c->nw == 2) {
        if (rd->last_tag >= 0 && !early) /* (an early close cuts anywhere) */
            bit_set(c->rends[rd->last_tag], rd->rpos[rd->last_tag]);
        for (int w = 0; ok && w < 2; w++)
            for (size_t i = 0; ok && i <= rd->rpos[w]; i++)
                if (bit_get(c->rends[w], i) && !bit_get(c->wends[w], i)) {
                    snprintf(msg, cap,
                             "case %d: writer %d's bytes are cut at its byte %zu, inside one of "
                             "its writes, by the other writer's",
                             num, w, i);
                    ok = false;
                }
    }
    size_t calls = rd->calls + th[4].calls + (rd->closed ? 0 : 1); /* (free closes) */
    rill_pipe_free(c->p);
    if (ok && atomic_load(&c->notified) != calls) {
        snprintf(msg, cap, "case %d: the reader notification ran %u times for %zu read calls", num,
                 atomic_load(&c->notified), calls);
        ok = false;
    }
    if (ok && atomic_load(&frees) - frees0 != atomic_load(&wraps) - wraps0) {
        snprintf(msg, cap, "case %d: %zu wrapped rill_bytes, %zu freed after rill_pipe_free", num,
                 atomic_load(&wraps) - wraps0, atomic_load(&frees) - frees0);
        ok = false;
    }
    thr all = {0};
    for (int i = 0; i < 5; i++) {
        all.ops += th[i].ops;
        all.eagain += th[i].eagain;
        all.timeouts += th[i].timeouts;
        all.zerocopy += th[i].zerocopy;
        all.readalls += th[i].readalls;
        all.readall_timeouts += th[i].readall_timeouts;
        all.max_over_ms = (int64_t)max_z((size_t)all.max_over_ms, (size_t)th[i].max_over_ms);
    }
    if (getenv("RILL_PIPE_VERBOSE"))
        print_message("case %d (%s%s): bsize %zu, timeout %lld, %zu+%zu bytes, %zu read, %zu "
                      "ops, %zu EAGAIN, %zu timeouts, %zu zero-copy, readall %zu/%zu timed "
                      "out, %llu ms\n",
                      num, kind_name[kind], early ? ", early close" : "", c->bsize,
                      (long long)c->tmo, c->total[0], c->total[1], rd->rpos[0] + rd->rpos[1],
                      all.ops, all.eagain, all.timeouts, all.zerocopy, all.readalls,
                      all.readall_timeouts, (unsigned long long)ms);
    sum->bytes += rd->rpos[0] + rd->rpos[1];
    sum->ops += all.ops;
    sum->eagain += all.eagain;
    sum->timeouts += all.timeouts;
    sum->zerocopy += all.zerocopy;
    sum->readalls += all.readalls;
    sum->readall_timeouts += all.readall_timeouts;
    sum->early += early;
    sum->max_over_ms = (int64_t)max_z((size_t)sum->max_over_ms, (size_t)all.max_over_ms);
    for (int i = 0; i < 5; i++)
        free(th[i].buf);
    for (int w = 0; w < c->nw; w++) {
        free(c->pat[w]);
        free(c->wends[w]);
        free(c->rends[w]);
    }
    free(c->reg);
    pthread_mutex_destroy(&c->reg_mu);
    pthread_mutex_destroy(&c->fmu);
    free(c);
    return ok;
}

static void run_group(const char *gname, int kind, int first, int count, bool early)
{
    valgrind = under_valgrind();
    if (valgrind) {
        slack_ms = 20000;
        case_ms = 60000;
    }
    const char *alt_seed = getenv("RILL_PIPE_SEED");
    seed = alt_seed ? strtoull(alt_seed, NULL, 0) : SEED;
    const char *only = getenv("RILL_PIPE_CASE");
    int one = only ? atoi(only) : -1;
    totals sum = {0};
    static char msg[1024];
    uint64_t t0 = th_now_ms();
    int ran = 0;
    bool ok = true;
    for (int n = first; ok && n < first + count; n++) {
        if (one >= 0 && n != one)
            continue;
        /* the early-close group draws its kind per case */
        int k = kind >= 0 ? kind : (int)(seed_of(seed + (uint64_t)n) % 3);
        ok = run_case(k, early, n, &sum, msg, sizeof msg); /* the first failure ends it */
        ran++;
    }
    print_message("%s: %d cases, %zu bytes, %zu operations, %zu EAGAIN, %zu timeouts (at most "
                  "%lld ms late), %zu zero-copy reads, %zu readall (%zu timed out), %llu ms\n",
                  gname, ran, sum.bytes, sum.ops, sum.eagain, sum.timeouts,
                  (long long)sum.max_over_ms, sum.zerocopy, sum.readalls, sum.readall_timeouts,
                  (unsigned long long)(th_now_ms() - t0));
    if (!ok)
        fail_msg("%s", msg);
}

static void test_one_writer(void **state)
{
    (void)state;
    run_group("one writer", K_ONE, 0, 45, false);
}

/* Each writer's bytes carry its tag: the reader splits them into the two streams. */
static void test_two_writers(void **state)
{
    (void)state;
    run_group("two writers", K_TWO, 45, 20, false);
}

static void test_flusher(void **state)
{
    (void)state;
    run_group("writer and flusher", K_FLUSH, 65, 15, false);
}

/* The reader closes at a random byte: the writers get RILL_EPIPE, and nobody hangs. */
static void test_early_close(void **state)
{
    (void)state;
    run_group("early close", -1, 80, 20, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_writer),
        cmocka_unit_test(test_two_writers),
        cmocka_unit_test(test_flusher),
        cmocka_unit_test(test_early_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
