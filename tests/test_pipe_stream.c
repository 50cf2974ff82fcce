/* tests/test_pipe_stream.c - rill_pipe_stream, the bridge between a thread-safe pipe and
 * a loop: a worker thread writes and the loop reads (READ, EOF, framing, zero copy), the
 * loop writes and a thread reads (DRAIN, water marks), backpressure in both directions,
 * and closing the stream while the other thread is still busy.
 *
 * cmocka's assertions run on the main thread only: worker threads record what they did
 * and the test checks it after joining.  Every wait is bounded: blocking pipes carry a
 * timeout, loop runs use TH_RUN_UNTIL, and a worker is joined only once it said so. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h" /* the stream's input buffer, to check the framing bound */

#define SAFE_MS 20000    /* timeout of blocking pipe calls: a bug fails, never hangs */
#define WAIT_MS 60000    /* bound of the long loop runs */
#define PAT_LEN 1048583u /* pattern length, prime so chunks never line up with it */
#define MIB ((size_t)1 << 20)

static char *pattern;

/* Lines the library logs, counted.  Warnings (a reader's close discards bytes) stay off
 * the test output; errors are shown unless a test provokes them. */
static atomic_int log_lines;
static atomic_bool errors_expected;

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)arg;
    atomic_fetch_add(&log_lines, 1);
    if (level == RILL_LOG_ERROR && !atomic_load(&errors_expected))
        fprintf(stderr, "rill error: %s\n", msg);
}

static int setup(void **state)
{
    (void)state;
    pattern = malloc(PAT_LEN);
    if (!pattern)
        return -1;
    th_fill(pattern, PAT_LEN, 42);
    rill_set_log(quiet_log, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(pattern);
    rill_set_log(NULL, NULL);
    return 0;
}

/* The stream's bytes at offset off: the pattern, repeated. */
static const char *pat_at(size_t off, size_t *room)
{
    *room = PAT_LEN - off % PAT_LEN;
    return pattern + off % PAT_LEN;
}

static uint64_t pat_hash(size_t total)
{
    uint64_t h = TH_HASH_INIT;
    for (size_t off = 0, room; off < total; off += room) {
        const char *d = pat_at(off, &room);
        room = RILL__MIN(room, total - off);
        h = th_hash(h, d, room);
    }
    return h;
}

static rill_pipe *pipe_new(size_t bsize)
{
    rill_pipe_opts o = {.bsize = bsize, .timeout_ms = SAFE_MS, .name = "bridge"};
    rill_pipe *p = rill_pipe_new(&o);
    assert_non_null(p);
    return p;
}

/* ---- a worker thread writing the pattern into a pipe ------------------------------------ */

typedef struct {
    pthread_t t;
    rill_pipe *p;
    size_t total;    /* bytes to write; SIZE_MAX: until a write fails */
    size_t maxchunk; /* writes of 1..maxchunk bytes */
    int bytes_every; /* every n-th write goes as a rill_bytes (0: never) */
    bool eof;        /* rill_pipe_write_eof at the end */
    atomic_size_t written;
    atomic_long rc; /* 0, or the error that stopped the writer */
    atomic_bool done;
    uint64_t hash; /* of what the pipe accepted (read after the join) */
} writer;

/* One write of up to `want` bytes at the current offset; bytes taken or a code. */
static ssize_t write_some(writer *w, size_t off, size_t want, int nth)
{
    size_t room;
    const char *d = pat_at(off, &room);
    want = RILL__MIN(want, room);
    if (w->bytes_every && nth % w->bytes_every == 0) {
        rill_bytes *b = rill_bytes_new(d, want);
        if (!b)
            return RILL_ENOMEM;
        int rc = rill_pipe_write_bytes(w->p, b);
        rill_bytes_unref(b);
        return rc < 0 ? rc : (ssize_t)want;
    }
    return rill_pipe_write(w->p, d, want);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    uint64_t h = TH_HASH_INIT, seed = 12345;
    size_t off = 0;
    long rc = 0;
    for (int nth = 1; off < w->total; nth++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t want = RILL__MIN((size_t)(seed >> 33) % w->maxchunk + 1, w->total - off);
        ssize_t r = write_some(w, off, want, nth);
        if (r < 0) {
            rc = (long)r;
            break;
        }
        h = th_hash(h, pattern + off % PAT_LEN, (size_t)r);
        off += (size_t)r;
        atomic_store(&w->written, off);
    }
    if (!rc && w->eof)
        rc = rill_pipe_write_eof(w->p);
    w->hash = h;
    atomic_store(&w->rc, rc);
    atomic_store(&w->done, true);
    return NULL;
}

static void writer_start(writer *w, rill_pipe *p, size_t total, size_t maxchunk, int bytes_every)
{
    memset(w, 0, sizeof *w);
    w->p = p;
    w->total = total;
    w->maxchunk = maxchunk;
    w->bytes_every = bytes_every;
    w->eof = total != SIZE_MAX;
    assert_int_equal(pthread_create(&w->t, NULL, writer_main, w), 0);
}

/* Joins once the writer says it is done, running the loop meanwhile (bounded). */
static void writer_join(rill_loop *loop, writer *w)
{
    TH_RUN_UNTIL(loop, atomic_load(&w->done), WAIT_MS);
    pthread_join(w->t, NULL);
}

/* ---- what the loop side sees ----------------------------------------------------------- */

typedef struct {
    rill_stream *s;
    uint64_t hash;
    size_t got, reads;
    size_t stop_at;    /* READ stops the stream once this many bytes arrived (0: never) */
    size_t close_at;   /* READ closes the stream once this many bytes arrived (0: never) */
    const char *first; /* data pointer and length of the first READ */
    size_t first_len;
    int eofs, closes, errors, err, drains;
} sink;

static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    sink *k = arg;
    if (!k->reads++) {
        k->first = ev->data;
        k->first_len = ev->len;
    }
    k->hash = th_hash(k->hash, ev->data, ev->len);
    k->got += ev->len;
    if (k->stop_at && k->got >= k->stop_at) {
        k->stop_at = 0;
        assert_int_equal(rill_stream_stop(s), 0);
    }
    if (k->close_at && k->got >= k->close_at)
        rill_stream_close(s);
}

/* A second READ handler that looks at every byte after on_read: under ASan it would
 * catch memory freed by a close inside the first handler. */
static void on_read_after(rill_stream *s, const rill_event *ev, void *arg)
{
    uint64_t *h = arg;
    (void)s;
    *h = th_hash(*h, ev->data, ev->len);
}

static void on_other(rill_stream *s, const rill_event *ev, void *arg)
{
    sink *k = arg;
    (void)s;
    if (ev->type == RILL_EV_EOF)
        k->eofs++;
    else if (ev->type == RILL_EV_CLOSE)
        k->closes++;
    else if (ev->type == RILL_EV_DRAIN)
        k->drains++;
    else if (ev->type == RILL_EV_ERROR)
        k->errors++;
    if (ev->err && !k->err)
        k->err = ev->err;
}

static rill_stream *sink_open(rill_loop *loop, rill_pipe *p, bool read_end, sink *k)
{
    memset(k, 0, sizeof *k);
    k->hash = TH_HASH_INIT;
    k->s = rill_stream_ref(rill_pipe_stream(loop, p, read_end)); /* finish() drops it */
    assert_non_null(k->s);
    static const rill_event_type evs[] = {RILL_EV_EOF, RILL_EV_CLOSE, RILL_EV_DRAIN, RILL_EV_ERROR};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        assert_non_null(rill_stream_on(k->s, evs[i], on_other, k));
    if (read_end)
        assert_non_null(rill_stream_on(k->s, RILL_EV_READ, on_read, k));
    return k->s;
}

/* Closes the stream (if still open), waits for CLOSE, drops sink_open's reference, then
 * frees the pipe and the loop. */
static void finish(rill_loop *loop, rill_pipe *p, sink *k)
{
    rill_stream_close(k->s);
    TH_RUN_UNTIL(loop, k->closes == 1, WAIT_MS);
    rill_stream_unref(k->s);
    rill_pipe_free(p);
    th_loop_free(loop);
    assert_int_equal(k->closes, 1);
}

/* ---- thread -> loop ---------------------------------------------------------------------- */

/* 64 MiB from a worker, copied and zero-copy writes mixed, arrive in order through READ;
 * EOF follows rill_pipe_write_eof. */
static void thread_to_loop_64mib(void **state)
{
    (void)state;
    const size_t total = 64 * MIB;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(64 * 1024);
    sink k;
    sink_open(loop, p, true, &k);
    writer w;
    writer_start(&w, p, total, 96 * 1024, 5);
    assert_int_equal(rill_stream_start(k.s), 0);
    TH_RUN_UNTIL(loop, k.eofs == 1, WAIT_MS);
    writer_join(loop, &w);
    assert_int_equal(atomic_load(&w.rc), 0);
    assert_int_equal(k.got, total);
    assert_true(k.hash == w.hash);
    assert_true(k.hash == pat_hash(total));
    assert_int_equal(k.errors, 0);
    assert_false(rill_stream_readable(k.s));
    finish(loop, p, &k);
    assert_int_equal(k.eofs, 1);
}

/* Without an EOF handler the stream closes at EOF, and closes the pipe as its reader. */
static void eof_without_handler_closes(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(0);
    sink k = {.hash = TH_HASH_INIT};
    k.s = rill_pipe_stream(loop, p, true);
    assert_non_null(k.s);
    assert_non_null(rill_stream_on(k.s, RILL_EV_READ, on_read, &k));
    assert_non_null(rill_stream_on(k.s, RILL_EV_CLOSE, on_other, &k));
    assert_int_equal(rill_pipe_write(p, "hello", 5), 5);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_stream_start(k.s), 0);
    assert_int_equal(k.reads, 0); /* never inside the call */
    TH_RUN_UNTIL(loop, k.closes == 1, WAIT_MS);
    assert_int_equal(k.got, 5);
    assert_int_equal(k.err, 0);
    char c;
    assert_int_equal(rill_pipe_read(p, &c, 1), RILL_ECLOSED);
    rill_pipe_free(p);
    th_loop_free(loop);
    assert_int_equal(k.closes, 1);
}

/* A rill_bytes written into the pipe reaches the READ handler as the same memory, and a
 * framing request as well. */
static void zero_copy_read(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(8192);
    sink k;
    sink_open(loop, p, true, &k);
    rill_bytes *b = rill_bytes_new(pattern, 200 * 1024); /* past bsize: accepted whole */
    assert_non_null(b);
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    assert_int_equal(rill_stream_start(k.s), 0);
    TH_RUN_UNTIL(loop, k.got == rill_bytes_len(b), WAIT_MS);
    assert_int_equal(k.reads, 1);
    assert_ptr_equal(k.first, rill_bytes_data(b));
    assert_int_equal(k.first_len, rill_bytes_len(b));
    rill_bytes_unref(b);
    finish(loop, p, &k);
}

typedef struct {
    const char *data;
    size_t len;
    int status, calls;
} frame_seen;

static void on_frame_seen(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    frame_seen *f = arg;
    (void)s;
    f->data = data;
    f->len = len;
    f->status = status;
    f->calls++;
}

static void zero_copy_frame(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(8192);
    rill_stream *s = rill_pipe_stream(loop, p, true);
    assert_non_null(s);
    rill_bytes *b = rill_bytes_new(pattern, 100 * 1024);
    assert_non_null(b);
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    frame_seen f = {0};
    assert_int_equal(rill_stream_read_exactly(s, rill_bytes_len(b), on_frame_seen, &f), 0);
    TH_RUN_UNTIL(loop, f.calls == 1, WAIT_MS);
    assert_int_equal(f.status, 0);
    assert_ptr_equal(f.data, rill_bytes_data(b));
    assert_int_equal(f.len, rill_bytes_len(b));
    rill_bytes_unref(b);
    rill_stream_close(s);
    TH_RUN_UNTIL(loop, rill_stream_is_closed(s), WAIT_MS);
    th_loop_free(loop);
    rill_pipe_free(p);
}

/* ---- framing over the bridge ----------------------------------------------------------- */

#define NLINES 2000
#define NRECS 300

/* The byte stream of the framing test: NLINES text lines, then NRECS records of a 4-byte
 * big-endian length and that many pattern bytes. */
static char *framed_build(size_t *len)
{
    size_t cap = NLINES * 16 + NRECS * (4 + 4096), n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < NLINES; i++)
        n += (size_t)snprintf(buf + n, cap - n, "line %d\n", i);
    for (unsigned i = 0; i < NRECS; i++) {
        uint32_t rl = (i * 977u) % 4096u + 1;
        unsigned char hdr[4] = {(unsigned char)(rl >> 24), (unsigned char)(rl >> 16),
                                (unsigned char)(rl >> 8), (unsigned char)rl};
        memcpy(buf + n, hdr, 4);
        memcpy(buf + n + 4, pattern + i, rl);
        n += 4 + rl;
    }
    *len = n;
    return buf;
}

/* A worker dribbles a buffer into the pipe in pieces of 1..13 bytes, then EOF. */
typedef struct {
    pthread_t t;
    rill_pipe *p;
    const char *data;
    size_t len;
    atomic_long rc;
    atomic_bool done;
} dribbler;

static void *dribble_main(void *arg)
{
    dribbler *d = arg;
    long rc = 0;
    unsigned seed = 7;
    for (size_t off = 0; off < d->len && !rc;) {
        seed = seed * 1103515245u + 12345u;
        size_t want = RILL__MIN((size_t)(seed >> 16) % 13 + 1, d->len - off);
        ssize_t r = rill_pipe_write(d->p, d->data + off, want);
        if (r < 0)
            rc = (long)r;
        else
            off += (size_t)r;
    }
    if (!rc)
        rc = rill_pipe_write_eof(d->p);
    atomic_store(&d->rc, rc);
    atomic_store(&d->done, true);
    return NULL;
}

typedef struct {
    const char *expect;
    size_t len, off;
    int lines, recs, bad, eof_status;
    size_t eof_len;
    bool finished;
} framer;

static void next_frame(rill_stream *s, framer *fr);

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    framer *fr = arg;
    if (status < 0) {
        fr->eof_status = status;
        fr->eof_len = len;
        fr->finished = true;
        return;
    }
    if (fr->off + len > fr->len || memcmp(fr->expect + fr->off, data, len) != 0)
        fr->bad++;
    if (fr->lines < NLINES && (len < 2 || data[len - 1] != '\n'))
        fr->bad++;
    fr->off += len;
    next_frame(s, fr);
}

static void on_header(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    framer *fr = arg;
    if (status < 0 || len != 4) {
        on_frame(s, status < 0 ? status : RILL_EIO, data, len, arg);
        return;
    }
    const unsigned char *h = (const unsigned char *)data;
    uint32_t rl = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (memcmp(fr->expect + fr->off, data, 4) != 0)
        fr->bad++;
    fr->off += 4;
    fr->recs++;
    assert_int_equal(rill_stream_read_exactly(s, rl, on_frame, fr), 0);
}

/* Queues the next request: lines first, then header + body pairs, then a read that
 * must end with RILL_EOF. */
static void next_frame(rill_stream *s, framer *fr)
{
    int rc;
    if (fr->lines < NLINES) {
        fr->lines++;
        rc = rill_stream_read_until(s, "\n", 1, on_frame, fr);
    } else if (fr->recs < NRECS) {
        rc = rill_stream_read_exactly(s, 4, on_header, fr);
    } else {
        rc = rill_stream_read_bytes(s, 1, on_frame, fr);
    }
    assert_int_equal(rc, 0);
}

static void framing_over_bridge(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(1024);
    framer fr = {0};
    fr.expect = framed_build(&fr.len);
    rill_stream *s = rill_stream_ref(rill_pipe_stream(loop, p, true)); /* it closes at EOF */
    assert_non_null(s);
    dribbler d = {.p = p, .data = fr.expect, .len = fr.len};
    assert_int_equal(pthread_create(&d.t, NULL, dribble_main, &d), 0);
    next_frame(s, &fr);
    TH_RUN_UNTIL(loop, fr.finished, WAIT_MS);
    TH_RUN_UNTIL(loop, atomic_load(&d.done), WAIT_MS);
    pthread_join(d.t, NULL);
    assert_int_equal(atomic_load(&d.rc), 0);
    assert_int_equal(fr.bad, 0);
    assert_int_equal(fr.lines, NLINES);
    assert_int_equal(fr.recs, NRECS);
    assert_int_equal(fr.off, fr.len);
    assert_int_equal(fr.eof_status, RILL_EOF);
    assert_int_equal(fr.eof_len, 0);
    TH_RUN_UNTIL(loop, rill_stream_is_closed(s), WAIT_MS);
    rill_stream_unref(s);
    th_loop_free(loop);
    rill_pipe_free(p);
    free((void *)fr.expect);
}

/* ---- backpressure on the read side ---------------------------------------------------------- */

/* Runs the loop for ms milliseconds; true when the writer made no progress meanwhile. */
static bool writer_stalls(rill_loop *loop, writer *w, unsigned ms)
{
    size_t before = atomic_load(&w->written);
    rill_timer *t = th_tick_start(loop);
    uint64_t end = th_now_ms() + ms;
    while (th_now_ms() < end)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(t);
    return atomic_load(&w->written) == before && !atomic_load(&w->done);
}

/* Waits (bounded) until the pipe is full and the writer has recorded every byte it put
 * there (the stream took `taken`), then checks that it stays blocked. */
static void wait_blocked(rill_loop *loop, rill_pipe *p, writer *w, size_t taken, size_t bsize)
{
    TH_RUN_UNTIL(loop, rill_pipe_buffered(p) >= bsize, WAIT_MS);
    assert_int_equal(rill_pipe_canwrite(p), 0);
    assert_int_equal(rill_pipe_buffered(p), bsize); /* copied writes never pass bsize */
    TH_RUN_UNTIL(loop, atomic_load(&w->written) == taken + bsize, WAIT_MS);
    assert_true(writer_stalls(loop, w, 150));
    assert_int_equal(rill_pipe_buffered(p), bsize);
}

/* The loop stops reading: the pipe fills, the writer blocks; reading again drains it. */
static void stop_blocks_the_writer(void **state)
{
    (void)state;
    const size_t total = 8 * MIB, bsize = 64 * 1024;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(bsize);
    sink k;
    sink_open(loop, p, true, &k);
    k.stop_at = 512 * 1024;
    writer w;
    writer_start(&w, p, total, 32 * 1024, 0);
    assert_int_equal(rill_stream_start(k.s), 0);
    TH_RUN_UNTIL(loop, k.stop_at == 0, WAIT_MS);
    size_t got = k.got;
    wait_blocked(loop, p, &w, got, bsize);
    assert_int_equal(k.got, got); /* no READ while stopped */
    assert_int_equal(rill_stream_start(k.s), 0);
    TH_RUN_UNTIL(loop, k.eofs == 1, WAIT_MS);
    writer_join(loop, &w);
    assert_int_equal(atomic_load(&w.rc), 0);
    assert_int_equal(k.got, total);
    assert_true(k.hash == pat_hash(total));
    finish(loop, p, &k);
}

/* Framing keeps at most max_buffer bytes of the pipe: once no request wants more, the
 * stream takes nothing and the writer blocks. */
static void framing_bound_blocks_the_writer(void **state)
{
    (void)state;
    const size_t total = 2 * MIB, bsize = 16 * 1024, maxbuf = 4096;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(bsize);
    sink k;
    rill_stream *s = sink_open(loop, p, true, &k);
    rill_stream_set_max_buffer(s, maxbuf);
    writer w;
    writer_start(&w, p, total, 8192, 0);
    frame_seen f = {0};
    assert_int_equal(rill_stream_read_exactly(s, 10, on_frame_seen, &f), 0);
    TH_RUN_UNTIL(loop, f.calls == 1, WAIT_MS);
    assert_int_equal(f.status, 0);
    assert_memory_equal(f.data, pattern, 10);
    TH_RUN_UNTIL(loop, rill_pipe_buffered(p) >= bsize, WAIT_MS);
    assert_true(rill__in_len(s) < maxbuf);
    wait_blocked(loop, p, &w, 10 + rill__in_len(s), bsize);
    assert_true(rill__in_len(s) < maxbuf);
    /* the rest flows once READ handlers read */
    k.hash = th_hash(TH_HASH_INIT, pattern, 10);
    k.got = 10;
    assert_int_equal(rill_stream_start(s), 0);
    TH_RUN_UNTIL(loop, k.eofs == 1, WAIT_MS);
    writer_join(loop, &w);
    assert_int_equal(k.got, total);
    assert_true(k.hash == pat_hash(total));
    finish(loop, p, &k);
}

/* ---- closing while the writer writes ------------------------------------------------------ */

/* The stream closes inside a READ handler (a later handler still reads the bytes) or from
 * outside; the writer gets RILL_EPIPE; posts in flight find the stream gone. */
static void close_round(int round)
{
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(round % 2 ? 4096 : 64 * 1024);
    sink k;
    sink_open(loop, p, true, &k);
    uint64_t after = TH_HASH_INIT;
    assert_non_null(rill_stream_on(k.s, RILL_EV_READ, on_read_after, &after));
    bool inside = round % 3 != 2;
    if (inside)
        k.close_at = (size_t)(round + 1) * 37 * 1024;
    writer w;
    writer_start(&w, p, SIZE_MAX, 24 * 1024, round % 4 ? 3 : 0);
    assert_int_equal(rill_stream_start(k.s), 0);
    if (inside) {
        TH_RUN_UNTIL(loop, rill_stream_is_closed(k.s), WAIT_MS);
    } else {
        TH_RUN_UNTIL(loop, k.got > 100 * 1024, WAIT_MS);
        rill_stream_close(k.s);
    }
    writer_join(loop, &w);
    assert_int_equal(atomic_load(&w.rc), RILL_EPIPE);
    assert_true(after == k.hash);
    TH_RUN_UNTIL(loop, k.closes == 1, WAIT_MS);
    rill_stream_unref(k.s);
    rill_pipe_free(p);
    th_loop_free(loop);
    assert_int_equal(k.closes, 1);
    assert_int_equal(k.errors, 0);
}

static void close_while_writing(void **state)
{
    (void)state;
    for (int round = 0; round < 24; round++)
        close_round(round);
}

/* ---- loop -> thread -------------------------------------------------------------------- */

typedef struct {
    pthread_t t;
    rill_pipe *p;
    size_t limit; /* close the pipe after this many bytes (0: read to EOF) */
    size_t got;
    uint64_t hash;
    long rc; /* 0 at EOF, or the error */
    atomic_bool done;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    char buf[24 * 1024];
    r->hash = TH_HASH_INIT;
    for (;;) {
        size_t want = r->limit ? RILL__MIN(sizeof buf, r->limit - r->got) : sizeof buf;
        ssize_t n = rill_pipe_read(r->p, buf, want);
        if (n <= 0) {
            r->rc = (long)n;
            break;
        }
        r->hash = th_hash(r->hash, buf, (size_t)n);
        r->got += (size_t)n;
        if (r->limit && r->got >= r->limit) {
            rill_pipe_close(r->p);
            break;
        }
    }
    atomic_store(&r->done, true);
    return NULL;
}

/* The loop's producer: writes 1 MiB pieces of the pattern, waiting for DRAIN whenever a
 * write says the queue reached its high water mark. */
typedef struct {
    size_t off, total;
    int writes, full, done_cbs, done_err;
} producer;

static void on_written(rill_stream *s, int status, void *arg)
{
    producer *pr = arg;
    (void)s;
    pr->done_cbs++;
    if (status < 0 && !pr->done_err)
        pr->done_err = status;
}

static void produce(rill_stream *s, producer *pr)
{
    while (pr->off < pr->total) {
        size_t room;
        const char *d = pat_at(pr->off, &room);
        size_t n = RILL__MIN(RILL__MIN(room, MIB), pr->total - pr->off);
        int rc = rill_stream_write(s, d, n, on_written, pr);
        assert_true(rc >= 0);
        pr->off += n;
        pr->writes++;
        if (rc == 1) {
            pr->full++;
            return; /* DRAIN brings us back */
        }
    }
}

static void on_drain(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    produce(s, arg);
}

/* Before the reader starts, the pipe holds exactly bsize and the stream's queue the rest;
 * then 32 MiB flow with DRAIN pacing the producer, and shutdown ends the data. */
static void loop_to_thread(void **state)
{
    (void)state;
    const size_t total = 32 * MIB, bsize = 64 * 1024;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(bsize);
    sink k;
    rill_stream *s = sink_open(loop, p, false, &k);
    assert_int_equal(rill_stream_start(s), RILL_EINVAL); /* write-only */
    producer pr = {.total = total};
    assert_int_equal(rill_stream_write(s, pattern, MIB, on_written, &pr), 1);
    pr.off = MIB;
    pr.writes = pr.full = 1;
    assert_int_equal(rill_pipe_buffered(p), bsize);
    assert_int_equal(rill_stream_write_queue_size(s), MIB - bsize);
    assert_non_null(rill_stream_on(s, RILL_EV_DRAIN, on_drain, &pr));
    reader r = {.p = p};
    assert_int_equal(pthread_create(&r.t, NULL, reader_main, &r), 0);
    TH_RUN_UNTIL(loop, pr.off == total && rill_stream_write_queue_size(s) == 0, WAIT_MS);
    assert_int_equal(rill_stream_shutdown(s, on_written, &pr), 0);
    TH_RUN_UNTIL(loop, atomic_load(&r.done), WAIT_MS);
    pthread_join(r.t, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.got, total);
    assert_true(r.hash == pat_hash(total));
    assert_true(k.drains >= pr.full - 1);
    assert_true(pr.full > 1);
    TH_RUN_UNTIL(loop, pr.done_cbs == pr.writes + 1, WAIT_MS);
    assert_int_equal(pr.done_err, 0);
    finish(loop, p, &k);
    assert_int_equal(k.errors, 0);
}

/* The reader closes the pipe: the stream's writes fail with RILL_EPIPE. */
static void reader_leaves(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(16 * 1024);
    sink k;
    rill_stream *s = sink_open(loop, p, false, &k);
    producer pr = {.total = 64 * MIB};
    assert_non_null(rill_stream_on(s, RILL_EV_DRAIN, on_drain, &pr));
    reader r = {.p = p, .limit = 300 * 1024};
    assert_int_equal(pthread_create(&r.t, NULL, reader_main, &r), 0);
    produce(s, &pr);
    TH_RUN_UNTIL(loop, k.errors == 1, WAIT_MS);
    assert_int_equal(k.err, RILL_EPIPE);
    TH_RUN_UNTIL(loop, atomic_load(&r.done), WAIT_MS);
    pthread_join(r.t, NULL);
    assert_int_equal(r.got, 300 * 1024);
    TH_RUN_UNTIL(loop, pr.done_cbs == pr.writes, WAIT_MS);
    assert_int_equal(pr.done_err, RILL_EPIPE);
    finish(loop, p, &k);
}

/* Closing a write-end stream writes EOF: the reader gets what reached the pipe, then 0. */
static void write_end_close_writes_eof(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(0);
    sink k;
    rill_stream *s = sink_open(loop, p, false, &k);
    assert_int_equal(rill_stream_write(s, "abc", 3, NULL, NULL), 0);
    rill_stream_close(s);
    char buf[8];
    assert_int_equal(rill_pipe_read(p, buf, sizeof buf), 3);
    assert_int_equal(rill_pipe_read(p, buf, sizeof buf), 0);
    assert_int_equal(rill_pipe_write(p, "x", 1), RILL_EPIPE);
    finish(loop, p, &k);
}

/* ---- odds and ends -------------------------------------------------------------------------- */

/* A wake-up whose post cannot be allocated is not lost for good: the stream's next state
 * change looks at the pipe again. */
static void lost_wakeup_recovers(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(0);
    char c;
    assert_int_equal(rill_pipe_write(p, "w", 1), 1); /* leaves a block: writes allocate no more */
    assert_int_equal(rill_pipe_read(p, &c, 1), 1);
    sink k;
    sink_open(loop, p, true, &k);
    assert_int_equal(rill_stream_start(k.s), 0);
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT); /* the stream finds the pipe empty and waits */
    atomic_store(&log_lines, 0);
    atomic_store(&errors_expected, true);
    th_alloc_install();
    th_alloc_fail_at(1);
    assert_int_equal(rill_pipe_write(p, "x", 1), 1); /* the hook's post fails */
    bool failed = th_alloc_failed();
    th_alloc_fail_at(0);
    th_alloc_reset();
    atomic_store(&errors_expected, false);
    assert_true(failed);
    assert_int_equal(atomic_load(&log_lines), 1);
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(k.got, 0);
    assert_int_equal(rill_stream_stop(k.s), 0);
    assert_int_equal(rill_stream_start(k.s), 0);
    TH_RUN_UNTIL(loop, k.got == 1, WAIT_MS);
    finish(loop, p, &k);
}

static void bad_arguments(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_pipe *p = pipe_new(0);
    errno = 0;
    assert_null(rill_pipe_stream(NULL, p, true));
    assert_int_equal(errno, EINVAL);
    assert_null(rill_pipe_stream(loop, NULL, false));
    rill_stream *s = rill_pipe_stream(loop, p, true);
    assert_non_null(s);
    assert_int_equal(rill_stream_write(s, "x", 1, NULL, NULL), RILL_EINVAL); /* read-only */
    assert_int_equal(rill_stream_fd(s), RILL_EINVAL);
    rill_stream_close(s);
    TH_RUN_UNTIL(loop, rill_stream_is_closed(s), WAIT_MS);
    th_loop_free(loop);
    rill_pipe_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thread_to_loop_64mib),
        cmocka_unit_test(eof_without_handler_closes),
        cmocka_unit_test(zero_copy_read),
        cmocka_unit_test(zero_copy_frame),
        cmocka_unit_test(framing_over_bridge),
        cmocka_unit_test(stop_blocks_the_writer),
        cmocka_unit_test(framing_bound_blocks_the_writer),
        cmocka_unit_test(close_while_writing),
        cmocka_unit_test(loop_to_thread),
        cmocka_unit_test(reader_leaves),
        cmocka_unit_test(write_end_close_writes_eof),
        cmocka_unit_test(lost_wakeup_recovers),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
