/* tests/test_pipe.c - rill_pipe: copied and zero-copy writes, modes, timeouts, EOF,
 * readall, readmatch, the reader flag, reader-closes, the bridge hooks, allocation
 * failures, and producer/consumer stress with hashes.
 *
 * cmocka's assertions must run on the main thread, so helper threads only record what
 * they saw and the test checks it after joining.  Every wait is bounded: blocking pipes
 * in these tests carry a timeout, and helpers are joined after bounded work. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipe.h" /* src/pipe.h: the bridge hooks */

#define SAFE_MS 10000 /* timeout of blocking pipes in tests: a hang fails, never blocks */

static rill_pipe *pipe_new(size_t bsize, bool rnb, bool wnb, int64_t timeout_ms)
{
    rill_pipe_opts o = {
        .bsize = bsize, .rnonblock = rnb, .wnonblock = wnb, .timeout_ms = timeout_ms, .name = "tp"};
    rill_pipe *p = rill_pipe_new(&o);
    assert_non_null(p);
    return p;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- a helper thread that runs one call and records its result ------------------------- */

typedef struct {
    pthread_t t;
    rill_pipe *p;
    int op;
    char buf[256];
    size_t len;
    atomic_long rc;
    atomic_bool done;
} helper;

enum {
    OP_READ,
    OP_WRITE,
    OP_WRITE_EOF_LATER,
    OP_DRAIN_LATER,
    OP_CLOSE_LATER,
    OP_FLUSH,
    OP_WRITE_ALL_EOF, /* writes all of buf, however many calls that takes, then EOF */
    OP_DRAIN,         /* reads into buf until EOF, the way len names; rc: bytes read */
};

/* How OP_DRAIN reads: small reads, lines, rill_bytes of up to 5 bytes, one readall. */
enum { DRAIN_READ, DRAIN_READMATCH, DRAIN_READ_BYTES, DRAIN_READALL };

static long drain_once(rill_pipe *p, int how, char *out, size_t cap)
{
    rill_bytes *b = NULL;
    long n;
    switch (how) {
    case DRAIN_READ:
        return rill_pipe_read(p, out, RILL__MIN(cap, 3));
    case DRAIN_READMATCH:
        return rill_pipe_readmatch(p, NULL, 0, out, cap);
    case DRAIN_READ_BYTES:
        n = rill_pipe_read_bytes(p, 5, &b);
        break;
    default:
        n = rill_pipe_readall(p, &b);
        break;
    }
    if (n > 0 && (size_t)n <= cap)
        memcpy(out, rill_bytes_data(b), (size_t)n);
    rill_bytes_unref(b);
    return n > 0 && (size_t)n > cap ? RILL_ENOBUFS : n;
}

static void *helper_main(void *arg)
{
    helper *h = arg;
    long rc = 0;
    switch (h->op) {
    case OP_READ:
        rc = rill_pipe_read(h->p, h->buf, h->len);
        break;
    case OP_WRITE:
        rc = rill_pipe_write(h->p, h->buf, h->len);
        break;
    case OP_WRITE_EOF_LATER: /* writes buf in pieces with pauses, then EOF */
        for (size_t i = 0; i < h->len && rc >= 0; i++) {
            sleep_ms(2);
            rc = rill_pipe_write(h->p, h->buf + i, 1);
        }
        sleep_ms(20);
        rc = rc < 0 ? rc : rill_pipe_write_eof(h->p);
        break;
    case OP_DRAIN_LATER: {
        char tmp[64];
        sleep_ms(50);
        while ((rc = rill_pipe_read(h->p, tmp, sizeof tmp)) > 0 && !rill_pipe_is_empty(h->p))
            ;
        break;
    }
    case OP_CLOSE_LATER:
        sleep_ms(50);
        rill_pipe_close(h->p);
        break;
    case OP_FLUSH:
        rc = rill_pipe_flush(h->p);
        break;
    case OP_DRAIN: {
        size_t got = 0;
        while ((rc = drain_once(h->p, (int)h->len, h->buf + got, sizeof h->buf - got)) > 0)
            got += (size_t)rc;
        rc = rc < 0 ? rc : (long)got;
        break;
    }
    case OP_WRITE_ALL_EOF:
        for (size_t off = 0; off < h->len && rc >= 0; off += (size_t)rc)
            rc = rill_pipe_write(h->p, h->buf + off, h->len - off);
        rc = rc < 0 ? rc : rill_pipe_write_eof(h->p);
        break;
    }
    atomic_store(&h->rc, rc);
    atomic_store(&h->done, true);
    return NULL;
}

static void helper_start(helper *h, rill_pipe *p, int op, const void *data, size_t len)
{
    memset(h, 0, sizeof *h);
    h->p = p;
    h->op = op;
    h->len = len;
    if (data)
        memcpy(h->buf, data, len);
    assert_int_equal(pthread_create(&h->t, NULL, helper_main, h), 0);
}

static long helper_join(helper *h)
{
    pthread_join(h->t, NULL);
    return atomic_load(&h->rc);
}

/* ---- basics ---------------------------------------------------------------------------- */

static void defaults(void **state)
{
    (void)state;
    rill_pipe *p = rill_pipe_new(NULL);
    assert_non_null(p);
    assert_memory_equal(rill_pipe_name(p), "pipe-", 5);
    assert_true(rill_pipe_rblocking(p));
    assert_true(rill_pipe_wblocking(p));
    assert_int_equal(rill_pipe_canwrite(p), 8192);
    assert_false(rill_pipe_canread(p));
    assert_int_equal(rill_pipe_buffered(p), 0);
    assert_true(rill_pipe_is_empty(p));
    assert_false(rill_pipe_reader_flag(p));
    errno = 0;
    assert_null(rill_pipe_stream(NULL, p, true));
    assert_int_equal(errno, EINVAL); /* no loop: rill_pipe_stream refuses */
    rill_pipe_free(p);
    rill_pipe_free(NULL);

    rill_pipe *q = rill_pipe_new(&(rill_pipe_opts){.name = "named", .bsize = 100});
    assert_string_equal(rill_pipe_name(q), "named");
    assert_int_equal(rill_pipe_canwrite(q), 100);
    rill_pipe_free(q);

    errno = 0;
    assert_null(rill_pipe_new(&(rill_pipe_opts){.timeout_ms = -2}));
    assert_int_equal(errno, EINVAL);
}

static void write_copies_up_to_space(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(16, true, true, 0);
    char data[40], out[40];
    th_fill(data, sizeof data, 7);
    assert_int_equal(rill_pipe_write(p, data, 10), 10);
    assert_int_equal(rill_pipe_canwrite(p), 6);
    assert_int_equal(rill_pipe_write(p, data + 10, 30), 6); /* only the space left */
    assert_int_equal(rill_pipe_write(p, data + 16, 24), RILL_EAGAIN);
    assert_int_equal(rill_pipe_canwrite(p), 0);
    assert_int_equal(rill_pipe_buffered(p), 16);
    assert_int_equal(rill_pipe_write(p, data, 0), 0);
    assert_int_equal(rill_pipe_read(p, out, 5), 5);
    assert_int_equal(rill_pipe_read(p, out + 5, 40), 11);
    assert_memory_equal(out, data, 16);
    assert_int_equal(rill_pipe_read(p, out, 40), RILL_EAGAIN);
    assert_int_equal(rill_pipe_read(p, out, 0), 0);
    rill_pipe_free(p);
}

static void write_bytes_is_zero_copy(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(16, true, true, 0);
    char *mem = malloc(100);
    th_fill(mem, 100, 3);
    rill_bytes *b = rill_bytes_wrap(mem, 100, free);
    assert_int_equal(rill_pipe_write_bytes(p, b), 0); /* past bsize, accepted whole */
    assert_int_equal(rill_pipe_buffered(p), 100);
    assert_int_equal(rill_pipe_canwrite(p), 0);
    rill_bytes *more = rill_bytes_static("x", 1);
    assert_int_equal(rill_pipe_write_bytes(p, more), RILL_EAGAIN); /* bsize already held */
    assert_int_equal(rill_pipe_write(p, "x", 1), RILL_EAGAIN);
    rill_bytes_unref(b); /* the pipe keeps its own reference */

    rill_bytes *got = NULL;
    assert_int_equal(rill_pipe_read_bytes(p, SIZE_MAX, &got), 100);
    assert_ptr_equal(got, b);                    /* the very object ... */
    assert_ptr_equal(rill_bytes_data(got), mem); /* ... and the writer's memory */
    rill_bytes_unref(got);

    assert_int_equal(rill_pipe_write_bytes(p, more), 0);
    rill_bytes_unref(more);
    assert_int_equal(rill_pipe_read_bytes(p, SIZE_MAX, &got), 1);
    assert_ptr_equal(rill_bytes_data(got), rill_bytes_data(more));
    rill_bytes_unref(got);
    assert_int_equal(rill_pipe_write_bytes(p, NULL), RILL_EINVAL);
    rill_bytes *empty = rill_bytes_static("", 0);
    assert_int_equal(rill_pipe_write_bytes(p, empty), 0);
    assert_int_equal(rill_pipe_buffered(p), 0);
    rill_bytes_unref(empty);
    rill_pipe_free(p);
}

static void read_bytes_copies_otherwise(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(64, true, true, 0);
    char data[20], out[20];
    th_fill(data, sizeof data, 9);
    rill_bytes *b = rill_bytes_new(data, 20);
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    assert_int_equal(rill_pipe_read(p, out, 4), 4); /* the front is now part of b */
    rill_bytes *got = NULL;
    assert_int_equal(rill_pipe_read_bytes(p, 6, &got), 6);
    assert_ptr_not_equal(got, b);
    assert_memory_equal(rill_bytes_data(got), data + 4, 6);
    rill_bytes_unref(got);
    assert_int_equal(rill_pipe_write(p, "abc", 3), 3);
    assert_int_equal(rill_pipe_read_bytes(p, 100, &got), 13); /* across segments */
    assert_memory_equal(rill_bytes_data(got), data + 10, 10);
    assert_memory_equal((const char *)rill_bytes_data(got) + 10, "abc", 3);
    rill_bytes_unref(got);
    assert_int_equal(rill_pipe_read_bytes(p, 100, &got), RILL_EAGAIN);
    assert_null(got);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_pipe_read_bytes(p, 100, &got), 0);
    assert_null(got);
    rill_bytes_unref(b);
    rill_pipe_free(p);
}

static void eof_rules(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(0, true, true, 0);
    char out[8];
    assert_int_equal(rill_pipe_write(p, "hi", 2), 2);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_pipe_write_eof(p), 0); /* harmless twice */
    assert_int_equal(rill_pipe_write(p, "x", 1), RILL_EPIPE);
    rill_bytes *b = rill_bytes_static("x", 1);
    assert_int_equal(rill_pipe_write_bytes(p, b), RILL_EPIPE);
    rill_bytes_unref(b);
    assert_int_equal(rill_pipe_canwrite(p), RILL_EPIPE);
    assert_int_equal(rill_pipe_write_wait(p, 10), RILL_EPIPE);
    assert_true(rill_pipe_canread(p));
    assert_int_equal(rill_pipe_read(p, out, 8), 2);
    assert_true(rill_pipe_canread(p)); /* at EOF too */
    assert_int_equal(rill_pipe_read(p, out, 8), 0);
    assert_int_equal(rill_pipe_read(p, out, 8), 0);
    assert_int_equal(rill_pipe_read_wait(p, 10), 0);
    assert_int_equal(rill_pipe_flush(p), 0);
    rill_pipe_free(p);
}

static void modes_change_at_run_time(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, false, false, SAFE_MS);
    char out[8];
    rill_pipe_set_rblocking(p, false);
    assert_false(rill_pipe_rblocking(p));
    assert_int_equal(rill_pipe_read(p, out, 8), RILL_EAGAIN);
    rill_pipe_set_wblocking(p, false);
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    assert_int_equal(rill_pipe_write(p, "e", 1), RILL_EAGAIN);
    assert_int_equal(rill_pipe_flush(p), RILL_EAGAIN);
    rill_pipe_set_wblocking(p, true);
    assert_true(rill_pipe_wblocking(p));
    rill_pipe_set_rblocking(p, true);
    assert_int_equal(rill_pipe_read(p, out, 8), 4);

    /* A reader asleep in a blocking read returns RILL_EAGAIN when its end turns
     * non-blocking. */
    helper h;
    helper_start(&h, p, OP_READ, NULL, 8);
    sleep_ms(50);
    assert_false(atomic_load(&h.done));
    rill_pipe_set_rblocking(p, false);
    assert_int_equal(helper_join(&h), RILL_EAGAIN);
    rill_pipe_free(p);
}

/* ---- timeouts -------------------------------------------------------------------------- */

static void expect_timeout(long rc, uint64_t t0, unsigned ms)
{
    uint64_t took = th_now_ms() - t0;
    assert_int_equal(rc, RILL_ETIMEDOUT);
    assert_true(took + 1 >= ms); /* ms granularity of th_now_ms */
    assert_true(took < ms + 2000);
}

static void timeouts(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, false, false, 60);
    char out[8];
    uint64_t t0 = th_now_ms();
    expect_timeout(rill_pipe_read(p, out, 8), t0, 60);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_read_wait(p, 30), t0, 30);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_read_wait(p, 0), t0, 60); /* 0: the pipe's timeout */
    t0 = th_now_ms();
    expect_timeout(rill_pipe_readmatch(p, NULL, 0, out, 8), t0, 60);
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_write(p, "e", 1), t0, 60);
    rill_bytes *b = rill_bytes_static("e", 1);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_write_bytes(p, b), t0, 60);
    rill_bytes_unref(b);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_write_wait(p, 30), t0, 30);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_flush(p), t0, 60);
    t0 = th_now_ms();
    expect_timeout(rill_pipe_flush_wait(p, 25), t0, 25);
    assert_int_equal(rill_pipe_read(p, out, 8), 4); /* nothing lost by the timeouts */
    rill_pipe_free(p);
}

static void waits_succeed(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, false, false, SAFE_MS);
    helper h;
    helper_start(&h, p, OP_WRITE_EOF_LATER, "ab", 2);
    assert_int_equal(rill_pipe_read_wait(p, -1), 0);
    assert_true(rill_pipe_canread(p));
    assert_int_equal(helper_join(&h), 0);
    char out[8];
    assert_int_equal(rill_pipe_read(p, out, 8), 2);

    rill_pipe *q = pipe_new(4, false, false, SAFE_MS);
    assert_int_equal(rill_pipe_write(q, "abcd", 4), 4);
    helper_start(&h, q, OP_DRAIN_LATER, NULL, 0);
    assert_int_equal(rill_pipe_write_wait(q, SAFE_MS), 0);
    assert_int_equal(rill_pipe_flush(q), 0); /* blocking: until the reader drained it */
    assert_true(rill_pipe_is_empty(q));
    assert_true(helper_join(&h) > 0);
    assert_int_equal(rill_pipe_flush_wait(q, 10), 0);
    rill_pipe_free(p);
    rill_pipe_free(q);
}

/* ---- no busy-waiting ------------------------------------------------------------------- */

static void blocked_reader_uses_no_cpu(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(0, false, false, 1000);
    char out[8];
    double c0 = cpu_ms();
    uint64_t t0 = th_now_ms();
    expect_timeout(rill_pipe_read(p, out, sizeof out), t0, 1000);
    double used = cpu_ms() - c0;
    print_message("blocked 1 s in rill_pipe_read: %.2f ms of CPU\n", used);
    assert_true(used < 50.0);

    /* The same with the reader on its own thread and this one asleep. */
    rill_pipe_free(p);
    p = pipe_new(0, false, false, SAFE_MS);
    helper h;
    helper_start(&h, p, OP_READ, NULL, 8);
    c0 = cpu_ms();
    sleep_ms(1000);
    used = cpu_ms() - c0;
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(helper_join(&h), 0);
    print_message("reader thread blocked 1 s: %.2f ms of CPU\n", used);
    assert_true(used < 50.0);
    rill_pipe_free(p);
}

/* ---- readall --------------------------------------------------------------------------- */

static void readall_waits_for_eof_in_any_mode(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, true, false, SAFE_MS); /* non-blocking reads */
    helper h;
    helper_start(&h, p, OP_WRITE_EOF_LATER, "hello, world", 12);
    rill_bytes *all = NULL;
    assert_int_equal(rill_pipe_readall(p, &all), 12);
    assert_memory_equal(rill_bytes_data(all), "hello, world", 12);
    rill_bytes_unref(all);
    assert_int_equal(helper_join(&h), 0);
    assert_int_equal(rill_pipe_readall(p, &all), 0); /* at EOF: empty */
    assert_int_equal(rill_bytes_len(all), 0);
    rill_bytes_unref(all);
    rill_pipe_free(p);
}

static void readall_zero_copy_and_timeout(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(8, false, false, 50);
    rill_bytes *b = rill_bytes_new("0123456789", 10), *all = NULL;
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_pipe_readall(p, &all), 10);
    assert_ptr_equal(all, b); /* a lone rill_bytes comes back as it is */
    rill_bytes_unref(all);
    rill_bytes_unref(b);
    rill_pipe_free(p);

    /* No EOF: a timeout, and the gathered bytes are back in the pipe. */
    p = pipe_new(8, false, false, 50);
    assert_int_equal(rill_pipe_write(p, "abc", 3), 3);
    uint64_t t0 = th_now_ms();
    expect_timeout(rill_pipe_readall(p, &all), t0, 50);
    assert_null(all);
    assert_int_equal(rill_pipe_buffered(p), 3);
    assert_int_equal(rill_pipe_write(p, "de", 2), 2);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_pipe_readall(p, &all), 5);
    assert_memory_equal(rill_bytes_data(all), "abcde", 5);
    rill_bytes_unref(all);
    rill_pipe_free(p);
}

/* ---- readmatch ------------------------------------------------------------------------- */

static void readmatch_lines(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(32, true, true, 0);
    char out[32];
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), RILL_EAGAIN);
    assert_int_equal(rill_pipe_write(p, "GET /\r", 6), 6);
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), RILL_EAGAIN);
    rill_bytes *b = rill_bytes_static("\nHost: x\r\n", 10); /* the CRLF spans segments */
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    rill_bytes_unref(b);
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), 7);
    assert_memory_equal(out, "GET /\r\n", 7);
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, 5), RILL_ENOBUFS); /* cap */
    assert_int_equal(rill_pipe_buffered(p), 9);                              /* kept */
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), 9);
    assert_memory_equal(out, "Host: x\r\n", 9);

    assert_int_equal(rill_pipe_write(p, "a;b;;c", 6), 6);
    assert_int_equal(rill_pipe_readmatch(p, ";;", 2, out, sizeof out), 5);
    assert_memory_equal(out, "a;b;;", 5);
    assert_int_equal(rill_pipe_readmatch(p, ";", 0, out, sizeof out), RILL_EINVAL);
    assert_int_equal(rill_pipe_readmatch(p, "\n", 1, out, 1), RILL_ENOBUFS); /* can't fit */
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_pipe_readmatch(p, "\n", 1, out, sizeof out), 1); /* the rest */
    assert_int_equal(out[0], 'c');
    assert_int_equal(rill_pipe_readmatch(p, "\n", 1, out, sizeof out), 0);
    rill_pipe_free(p);
}

static void readmatch_full_buffer(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(8, false, true, SAFE_MS);
    char out[64];
    assert_int_equal(rill_pipe_write(p, "abcdefgh", 8), 8);
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), RILL_ENOBUFS);
    assert_int_equal(rill_pipe_read(p, out, sizeof out), 8); /* nothing was consumed */
    rill_pipe_free(p);

    /* Blocking: waits for the rest of the line, written a byte at a time. */
    p = pipe_new(64, false, false, SAFE_MS);
    helper h;
    helper_start(&h, p, OP_WRITE_EOF_LATER, "one\r\ntwo", 8);
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), 5);
    assert_memory_equal(out, "one\r\n", 5);
    assert_int_equal(rill_pipe_readmatch(p, NULL, 0, out, sizeof out), 3);
    assert_memory_equal(out, "two", 3);
    assert_int_equal(helper_join(&h), 0);
    rill_pipe_free(p);
}

static char logged[512];
static int logged_level = -1, log_lines;

static void capture_log(int level, const char *msg, void *arg)
{
    (void)arg;
    if (level > RILL_LOG_WARN)
        return;
    logged_level = level;
    log_lines++;
    snprintf(logged, sizeof logged, "%s", msg);
}

/* ---- the reader flag ------------------------------------------------------------------- */

static atomic_int notified;

static void on_reader(void *arg)
{
    (void)arg;
    atomic_fetch_add(&notified, 1);
}

/* fn may call back into the pipe: it runs unlocked. */
static void on_reader_reenter(void *arg)
{
    atomic_fetch_add(&notified, 1);
    (void)rill_pipe_buffered(arg);
}

static void reader_notification(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, true, true, 0);
    char out[8];
    atomic_store(&notified, 0);
    rill_pipe_set_reader_notify(p, on_reader, NULL);
    assert_int_equal(rill_pipe_read(p, out, 8), RILL_EAGAIN); /* a reader came by */
    assert_int_equal(atomic_load(&notified), 1);
    assert_true(rill_pipe_reader_flag(p));
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    assert_true(rill_pipe_reader_flag(p));
    assert_int_equal(rill_pipe_canwrite(p), 0); /* full: clears the flag */
    assert_false(rill_pipe_reader_flag(p));
    assert_int_equal(rill_pipe_read(p, out, 2), 2);
    assert_true(rill_pipe_reader_flag(p));
    assert_int_equal(atomic_load(&notified), 2);
    assert_int_equal(rill_pipe_canwrite(p), 2); /* not full: the flag stays */
    assert_true(rill_pipe_reader_flag(p));
    rill_pipe_clear_reader_flag(p);
    assert_false(rill_pipe_reader_flag(p));
    rill_pipe_set_reader_notify(p, on_reader_reenter, p);
    rill_set_log(capture_log, NULL);
    rill_pipe_close(p); /* a warning that the pipe will never be read */
    rill_set_log(NULL, NULL);
    assert_true(rill_pipe_reader_flag(p));
    assert_int_equal(atomic_load(&notified), 3);
    rill_pipe_set_reader_notify(p, NULL, NULL);
    rill_pipe_free(p);
    assert_int_equal(atomic_load(&notified), 3);
}

/* ---- reader closes --------------------------------------------------------------------- */

static void reader_close_discards(void **state)
{
    (void)state;
    rill_pipe *p = rill_pipe_new(&(rill_pipe_opts){.name = "uploads", .wnonblock = true});
    char out[8];
    log_lines = 0;
    rill_set_log(capture_log, NULL);
    assert_int_equal(rill_pipe_write(p, "unread", 6), 6);
    rill_bytes *b = rill_bytes_static("more", 4);
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    rill_pipe_close(p);
    rill_pipe_close(p); /* idempotent: no second warning */
    rill_set_log(NULL, NULL);
    assert_int_equal(log_lines, 1);
    assert_int_equal(logged_level, RILL_LOG_WARN);
    assert_non_null(strstr(logged, "uploads"));
    assert_non_null(strstr(logged, "10"));
    assert_int_equal(rill_pipe_buffered(p), 0);
    assert_int_equal(rill_pipe_write(p, "x", 1), RILL_EPIPE);
    assert_int_equal(rill_pipe_write_bytes(p, b), RILL_EPIPE);
    assert_int_equal(rill_pipe_write_eof(p), RILL_EPIPE);
    assert_int_equal(rill_pipe_canwrite(p), RILL_EPIPE);
    assert_int_equal(rill_pipe_flush(p), RILL_EPIPE);
    assert_int_equal(rill_pipe_flush_wait(p, 10), RILL_EPIPE);
    assert_true(rill_pipe_canread(p));
    assert_int_equal(rill_pipe_read(p, out, 8), RILL_ECLOSED);
    rill_bytes *all = b;
    assert_int_equal(rill_pipe_readall(p, &all), RILL_ECLOSED);
    assert_null(all);
    rill_bytes_unref(b);
    rill_pipe_free(p);

    /* An empty pipe closes quietly. */
    log_lines = 0;
    rill_set_log(capture_log, NULL);
    p = pipe_new(0, false, false, 0);
    rill_pipe_free(p);
    rill_set_log(NULL, NULL);
    assert_int_equal(log_lines, 0);
}

static void close_wakes_blocked_writer(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, false, false, SAFE_MS);
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    helper w, c;
    helper_start(&w, p, OP_WRITE, "efgh", 4);
    rill_set_log(capture_log, NULL);
    helper_start(&c, p, OP_CLOSE_LATER, NULL, 0);
    assert_int_equal(helper_join(&w), RILL_EPIPE);
    helper_join(&c);
    rill_set_log(NULL, NULL);
    rill_pipe_free(p);

    /* ... and a blocked reader, which then sees RILL_ECLOSED. */
    p = pipe_new(4, false, false, SAFE_MS);
    helper_start(&w, p, OP_READ, NULL, 4);
    helper_start(&c, p, OP_CLOSE_LATER, NULL, 0);
    assert_int_equal(helper_join(&w), RILL_ECLOSED);
    helper_join(&c);
    rill_pipe_free(p);
}

/* ---- wake-ups --------------------------------------------------------------------------
 *
 * A side signals the other only while a sleeper that no broadcast has reached yet is
 * counted, and makes the broadcast after unlocking.  A count too low, or a broadcast
 * owed and never made, strands a sleeper until the pipe's timeout (SAFE_MS), and since a
 * call checks its condition one last time before it reports RILL_ETIMEDOUT, the stranded
 * call would then succeed as if nothing had gone wrong.  So each helper here must return
 * within WAKE_MS, well before that timeout: one that returns later was woken by its
 * timeout, not by the pipe.  Nothing hangs either way.  The short naps only let helpers
 * fall asleep first; if one has not yet, the test checks less but cannot fail for it. */

#define WAKE_MS 5000 /* what a wake-up that takes microseconds is allowed (< SAFE_MS) */
#define NAP_MS 30

static bool wait_done(helper *h, unsigned ms)
{
    uint64_t until = th_now_ms() + ms;
    while (!atomic_load(&h->done) && th_now_ms() < until)
        sleep_ms(1);
    return atomic_load(&h->done);
}

/* Joins h, failing when the pipe did not wake it (it then ends on the pipe's timeout). */
static long woken_join(helper *h)
{
    bool woken = wait_done(h, WAKE_MS);
    long rc = helper_join(h); /* bounded by the pipe's timeout */
    if (!woken)
        fail_msg("a helper blocked in the pipe was not woken (it returned %ld on its timeout)", rc);
    return rc;
}

static void readers_wake_on_single_bytes(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(0, false, false, SAFE_MS);
    helper a, b;
    helper_start(&a, p, OP_READ, NULL, 1);
    helper_start(&b, p, OP_READ, NULL, 1);
    sleep_ms(NAP_MS);
    /* One broadcast wakes both; the one that finds nothing must be counted again. */
    assert_int_equal(rill_pipe_write(p, "x", 1), 1);
    uint64_t until = th_now_ms() + WAKE_MS;
    while (!atomic_load(&a.done) && !atomic_load(&b.done) && th_now_ms() < until)
        sleep_ms(1);
    helper *got = atomic_load(&a.done) ? &a : &b, *other = got == &a ? &b : &a;
    assert_int_equal(woken_join(got), 1);
    assert_int_equal(got->buf[0], 'x');
    sleep_ms(NAP_MS);
    assert_false(atomic_load(&other->done));
    assert_int_equal(rill_pipe_write(p, "y", 1), 1);
    assert_int_equal(woken_join(other), 1);
    assert_int_equal(other->buf[0], 'y');

    /* EOF wakes every sleeping reader. */
    helper_start(&a, p, OP_READ, NULL, 8);
    helper_start(&b, p, OP_READ, NULL, 8);
    sleep_ms(NAP_MS);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(woken_join(&a), 0);
    assert_int_equal(woken_join(&b), 0);
    rill_pipe_free(p);
}

static void writer_and_flusher_wake_in_turn(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, false, false, SAFE_MS);
    char out[8];
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    helper w, f;
    helper_start(&w, p, OP_WRITE, "e", 1);
    helper_start(&f, p, OP_FLUSH, NULL, 0);
    sleep_ms(NAP_MS);
    /* Room but not empty: the writer goes, the flusher (woken by the same broadcast)
     * goes back to sleep and must be counted again. */
    assert_int_equal(rill_pipe_read(p, out, 2), 2);
    assert_int_equal(woken_join(&w), 1);
    sleep_ms(NAP_MS);
    assert_false(atomic_load(&f.done));
    assert_int_equal(rill_pipe_read(p, out, 8), 3);
    assert_memory_equal(out, "cde", 3);
    assert_int_equal(woken_join(&f), 0);

    /* A sleeping writer returns RILL_EAGAIN when its end turns non-blocking. */
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    helper_start(&w, p, OP_WRITE, "e", 1);
    sleep_ms(NAP_MS);
    rill_pipe_set_wblocking(p, false);
    assert_int_equal(woken_join(&w), RILL_EAGAIN);
    assert_int_equal(rill_pipe_read(p, out, 8), 4);
    rill_pipe_free(p);
}

/* Every kind of read that frees room must release a writer asleep on a full pipe, also
 * those that go back to sleep themselves right after (readall, readmatch). */
static void draining_reads_release_the_writer(void **state)
{
    (void)state;
    char text[200];
    for (size_t i = 0; i < sizeof text; i++) /* lines of ten bytes ending in CR LF */
        text[i] = i % 10 == 8 ? '\r' : i % 10 == 9 ? '\n' : (char)('a' + i % 7);
    for (int how = DRAIN_READ; how <= DRAIN_READALL; how++) {
        rill_pipe *p = pipe_new(16, false, false, SAFE_MS);
        helper w, r;
        helper_start(&w, p, OP_WRITE_ALL_EOF, text, sizeof text);
        sleep_ms(NAP_MS); /* the writer fills the pipe and sleeps */
        helper_start(&r, p, OP_DRAIN, NULL, (size_t)how);
        assert_int_equal(woken_join(&r), (long)sizeof text);
        assert_int_equal(woken_join(&w), 0);
        assert_memory_equal(r.buf, text, sizeof text);
        rill_pipe_free(p);
    }
}

static void close_wakes_every_sleeper(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(4, false, false, SAFE_MS);
    assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
    helper w1, w2, f;
    helper_start(&w1, p, OP_WRITE, "e", 1);
    helper_start(&w2, p, OP_WRITE, "f", 1);
    helper_start(&f, p, OP_FLUSH, NULL, 0);
    sleep_ms(NAP_MS);
    rill_set_log(capture_log, NULL); /* close discards "abcd" with a warning */
    rill_pipe_close(p);
    assert_int_equal(woken_join(&w1), RILL_EPIPE);
    assert_int_equal(woken_join(&w2), RILL_EPIPE);
    assert_int_equal(woken_join(&f), RILL_EPIPE);
    rill_set_log(NULL, NULL);
    rill_pipe_free(p);

    p = pipe_new(4, false, false, SAFE_MS);
    helper_start(&w1, p, OP_READ, NULL, 4);
    helper_start(&w2, p, OP_READ, NULL, 4);
    sleep_ms(NAP_MS);
    rill_pipe_close(p);
    assert_int_equal(woken_join(&w1), RILL_ECLOSED);
    assert_int_equal(woken_join(&w2), RILL_ECLOSED);
    rill_pipe_free(p);
}

/* A readall that hands back a lone rill_bytes whole empties the pipe as much as one that
 * copies: a flusher waiting for that must wake. */
static void readall_whole_bytes_wakes_flusher(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(8, false, false, SAFE_MS);
    rill_bytes *b = rill_bytes_new("0123456789", 10), *all = NULL;
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    helper f;
    helper_start(&f, p, OP_FLUSH, NULL, 0);
    sleep_ms(NAP_MS);
    assert_int_equal(rill_pipe_readall(p, &all), 10);
    assert_ptr_equal(all, b);
    assert_int_equal(woken_join(&f), 0);
    rill_bytes_unref(all);
    rill_bytes_unref(b);
    rill_pipe_free(p);
}

static void *close_at_go(void *arg)
{
    helper *h = arg;
    while (!atomic_load(&h->done)) /* main sets it right after creating us */
        ;
    rill_pipe_close(h->p);
    return NULL;
}

/* A writer that got RILL_EPIPE from the reader's close has seen the close's last change
 * of the pipe, and frees it at once while the closing thread may still be on its way out
 * (its warning about the discarded bytes names the pipe).  A race: it shows under ASan,
 * where it was a use-after-free in about every other run of this many rounds. */
static void free_right_after_reader_close(void **state)
{
    (void)state;
    rill_set_log(capture_log, NULL); /* a warning per round */
    for (int i = 0; i < 5000; i++) {
        rill_pipe *p = pipe_new(4, false, false, SAFE_MS);
        assert_int_equal(rill_pipe_write(p, "abcd", 4), 4);
        helper c = {.p = p};
        assert_int_equal(pthread_create(&c.t, NULL, close_at_go, &c), 0);
        atomic_store(&c.done, true);
        long rc = rill_pipe_write(p, "e", 1); /* blocks, spinning or asleep, until the close */
        rill_pipe_free(p);
        pthread_join(c.t, NULL);
        assert_int_equal(rc, RILL_EPIPE);
    }
    rill_set_log(NULL, NULL);
}

/* ---- the bridge's hooks (src/pipe.h) --------------------------------------------------- */

static atomic_uint hook_events;
static atomic_int hook_calls;

static void hook(rill_pipe *p, unsigned events, void *arg)
{
    (void)p;
    (void)arg;
    atomic_fetch_or(&hook_events, events);
    atomic_fetch_add(&hook_calls, 1);
}

/* A pipe with the hook installed and nothing buffered. */
static rill_pipe *hooked_pipe(void)
{
    rill_pipe *p = pipe_new(4, false, false, SAFE_MS); /* blocking: the _nb calls ignore it */
    atomic_store(&hook_events, 0);
    atomic_store(&hook_calls, 0);
    rill__pipe_set_hook(p, hook, NULL);
    return p;
}

static void bridge_hook_fires_once(void **state)
{
    (void)state;
    rill_pipe *p = hooked_pipe();
    char out[8];
    assert_int_equal(rill__pipe_read_nb(p, out, 8), RILL_EAGAIN);
    assert_int_equal(rill__pipe_watch(p, RILL__PIPE_READABLE | RILL__PIPE_WRITABLE),
                     RILL__PIPE_WRITABLE);
    assert_int_equal(rill__pipe_write_nb(p, "ab", 2), 2);
    assert_int_equal(atomic_load(&hook_calls), 1); /* one shot */
    assert_int_equal(atomic_load(&hook_events), RILL__PIPE_READABLE);
    assert_int_equal(rill__pipe_write_nb(p, "cdef", 4), 2);
    assert_int_equal(atomic_load(&hook_calls), 1);
    assert_int_equal(rill__pipe_write_nb(p, "x", 1), RILL_EAGAIN);
    rill_bytes *b = rill_bytes_static("zz", 2);
    assert_int_equal(rill__pipe_write_bytes_nb(p, b), RILL_EAGAIN);
    rill_bytes_unref(b);

    atomic_store(&hook_events, 0);
    assert_int_equal(rill__pipe_watch(p, RILL__PIPE_WRITABLE), 0);
    assert_int_equal(rill__pipe_read_nb(p, out, 3), 3);
    assert_int_equal(atomic_load(&hook_calls), 2);
    assert_int_equal(atomic_load(&hook_events), RILL__PIPE_WRITABLE);
    assert_int_equal(rill__pipe_read_nb(p, out, 8), 1);

    atomic_store(&hook_events, 0);
    assert_int_equal(rill__pipe_watch(p, RILL__PIPE_READABLE), 0);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(atomic_load(&hook_calls), 3);
    assert_int_equal(atomic_load(&hook_events), RILL__PIPE_READABLE);
    assert_int_equal(rill__pipe_watch(p, RILL__PIPE_READABLE), RILL__PIPE_READABLE);
    rill__pipe_set_hook(p, NULL, NULL);
    rill_pipe_close(p);
    assert_int_equal(atomic_load(&hook_calls), 3); /* removed: never called again */
    rill_pipe_free(p);
}

static void bridge_peek_consume(void **state)
{
    (void)state;
    rill_pipe *p = hooked_pipe();
    const char *front;
    assert_int_equal(rill__pipe_peek(p, &front), RILL_EAGAIN);
    assert_int_equal(rill__pipe_write_nb(p, "abcd", 4), 4);
    assert_int_equal(rill__pipe_watch(p, RILL__PIPE_WRITABLE), 0);
    assert_int_equal(rill__pipe_peek(p, &front), 4);
    assert_memory_equal(front, "abcd", 4);
    rill__pipe_consume(p, 3);
    assert_int_equal(atomic_load(&hook_events), RILL__PIPE_WRITABLE);
    assert_true(rill_pipe_reader_flag(p)); /* consuming is reading */
    rill_bytes *b = rill_bytes_static("zz", 2);
    assert_int_equal(rill__pipe_write_bytes_nb(p, b), 0);
    assert_int_equal(rill__pipe_peek(p, &front), 1);
    rill__pipe_consume(p, 1);
    assert_int_equal(rill__pipe_peek(p, &front), 2);
    assert_ptr_equal(front, rill_bytes_data(b)); /* zero copy for the loop too */
    rill__pipe_consume(p, 2);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill__pipe_peek(p, &front), 0);
    rill_pipe_close(p);
    assert_int_equal(rill__pipe_peek(p, &front), RILL_ECLOSED);
    rill_bytes_unref(b);
    rill_pipe_free(p);
}

/* ---- allocation failures --------------------------------------------------------------- */

static void allocation_failures(void **state)
{
    (void)state;
    th_alloc_install();
    th_alloc_fail_at(1);
    errno = 0;
    assert_null(rill_pipe_new(NULL));
    assert_int_equal(errno, ENOMEM);
    th_alloc_fail_at(0);

    rill_pipe *p = pipe_new(64, true, true, 0);
    char out[64];
    th_alloc_fail_at(1);
    assert_int_equal(rill_pipe_write(p, "abc", 3), RILL_ENOMEM);
    th_alloc_fail_at(0);
    rill_bytes *b = rill_bytes_static("zz", 2);
    th_alloc_fail_at(1);
    assert_int_equal(rill_pipe_write_bytes(p, b), RILL_ENOMEM);
    assert_int_equal(rill_pipe_buffered(p), 0);
    th_alloc_fail_at(0);
    assert_int_equal(rill_pipe_write(p, "abc", 3), 3);
    assert_int_equal(rill_pipe_write_bytes(p, b), 0);
    rill_bytes *got = NULL;
    th_alloc_fail_at(1);
    assert_int_equal(rill_pipe_read_bytes(p, 64, &got), RILL_ENOMEM); /* the copy */
    assert_null(got);
    assert_int_equal(rill_pipe_buffered(p), 5);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    assert_int_equal(rill_pipe_readall(p, &got), RILL_ENOMEM);
    assert_int_equal(rill_pipe_buffered(p), 5); /* nothing lost */
    th_alloc_fail_at(0);
    assert_int_equal(rill_pipe_read(p, out, 64), 5);
    assert_memory_equal(out, "abczz", 5);
    rill_bytes_unref(b);
    rill_pipe_free(p);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

/* ---- stress ---------------------------------------------------------------------------- */

/* The plain build moves 256 MiB; sanitizers and valgrind instrument every access, so they
 * move less (RILL_TEST_QUICK asks for the short run anywhere). */
#if defined(__SANITIZE_THREAD__)
#define STRESS_MIB 8
#elif defined(__SANITIZE_ADDRESS__)
#define STRESS_MIB 64
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_MIB 8
#elif __has_feature(address_sanitizer)
#define STRESS_MIB 64
#endif
#endif
#ifndef STRESS_MIB
#define STRESS_MIB 256
#endif

static size_t stress_total(void)
{
    if (getenv("RILL_VALGRIND"))
        return (size_t)4 << 20;
    if (getenv("RILL_TEST_QUICK"))
        return (size_t)RILL__MIN(STRESS_MIB, 32) << 20;
    return (size_t)STRESS_MIB << 20;
}

#define CHUNK_MAX 65536u
#define NPROD_MAX 3

typedef struct {
    rill_pipe *p;
    bool nonblock;
    int nprod;
    size_t share;    /* bytes each producer writes */
    atomic_int left; /* producers still writing: the last one writes EOF */
    int err[NPROD_MAX];
    uint64_t sent_hash[NPROD_MAX];
} stress;

typedef struct {
    stress *s;
    int id;
} producer;

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* With several producers every byte carries its producer in the top two bits (the rest
 * is random), so the consumer can split the stream and hash each producer's part. */
static void make_chunk(char *buf, size_t n, int id, int nprod, uint64_t *x)
{
    th_fill(buf, n, rng_next(x));
    if (nprod > 1)
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(((unsigned)id << 6) | ((unsigned char)buf[i] & 63u));
}

/* Writes all of buf; copied or as a rill_bytes; waits with *_wait when non-blocking. */
static int put(stress *s, const char *buf, size_t n, bool as_bytes)
{
    rill_bytes *b = as_bytes ? rill_bytes_new(buf, n) : NULL;
    size_t off = 0;
    int rc = 0;
    while (off < n && rc >= 0) {
        ssize_t k = b ? rill_pipe_write_bytes(s->p, b) : rill_pipe_write(s->p, buf + off, n - off);
        if (k == RILL_EAGAIN)
            rc = rill_pipe_write_wait(s->p, SAFE_MS);
        else if (k < 0)
            rc = (int)k;
        else
            off = b ? n : off + (size_t)k;
    }
    rill_bytes_unref(b);
    return rc;
}

static void *produce(void *arg)
{
    producer *pr = arg;
    stress *s = pr->s;
    char *buf = malloc(CHUNK_MAX);
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(pr->id + 1), h = TH_HASH_INIT;
    int rc = 0;
    for (size_t done = 0, i = 0; done < s->share && !rc; i++) {
        size_t want = 1 + rng_next(&x) % CHUNK_MAX;
        size_t n = RILL__MIN(want, s->share - done);
        make_chunk(buf, n, pr->id, s->nprod, &x);
        h = th_hash(h, buf, n);
        rc = put(s, buf, n, i % 3 == 2);
        done += n;
    }
    s->sent_hash[pr->id] = h;
    if (atomic_fetch_sub(&s->left, 1) == 1 && !rc)
        rc = rill_pipe_write_eof(s->p);
    s->err[pr->id] = rc;
    free(buf);
    return NULL;
}

typedef struct {
    uint64_t hash[NPROD_MAX];
    size_t count[NPROD_MAX];
    bool bad_tag;
} tally;

static void account(tally *t, const char *data, size_t n, int nprod)
{
    if (nprod == 1) {
        t->hash[0] = th_hash(t->hash[0], data, n);
        t->count[0] += n;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned id = (unsigned char)data[i] >> 6;
        if (id >= (unsigned)nprod) {
            t->bad_tag = true;
            return;
        }
        t->hash[id] = (t->hash[id] ^ (unsigned char)data[i]) * 0x100000001b3ull; /* th_hash */
        t->count[id]++;
    }
}

/* One read, alternating copied and zero-copy reads.  > 0 bytes, 0 EOF, < 0 error. */
static ssize_t take_some(stress *s, char *buf, unsigned i, tally *t)
{
    ssize_t n;
    if (i % 2) {
        rill_bytes *b = NULL;
        n = rill_pipe_read_bytes(s->p, SIZE_MAX, &b);
        if (n > 0)
            account(t, rill_bytes_data(b), (size_t)n, s->nprod);
        rill_bytes_unref(b);
    } else {
        n = rill_pipe_read(s->p, buf, CHUNK_MAX);
        if (n > 0)
            account(t, buf, (size_t)n, s->nprod);
    }
    if (n == RILL_EAGAIN)
        n = rill_pipe_read_wait(s->p, SAFE_MS) == 0 ? RILL_EAGAIN : RILL_ETIMEDOUT;
    return n;
}

static void run_stress(int nprod, bool nonblock)
{
    size_t total = stress_total();
    stress s = {.nprod = nprod, .nonblock = nonblock, .share = total / (size_t)nprod};
    s.p = pipe_new(65536, nonblock, nonblock, SAFE_MS);
    atomic_init(&s.left, nprod);
    producer pr[NPROD_MAX];
    pthread_t t[NPROD_MAX];
    tally got = {.bad_tag = false};
    for (int i = 0; i < nprod; i++) {
        got.hash[i] = TH_HASH_INIT;
        pr[i] = (producer){&s, i};
        assert_int_equal(pthread_create(&t[i], NULL, produce, &pr[i]), 0);
    }
    char *buf = malloc(CHUNK_MAX);
    ssize_t n;
    uint64_t t0 = th_now_ms();
    for (unsigned i = 0; (n = take_some(&s, buf, i, &got)) != 0 && !got.bad_tag; i++)
        if (n < 0 && n != RILL_EAGAIN)
            break;
    if (n != 0)
        rill_pipe_close(s.p); /* frees blocked producers before the joins */
    for (int i = 0; i < nprod; i++)
        pthread_join(t[i], NULL);
    print_message("%d producer(s), %s: %zu MiB in %llu ms\n", nprod,
                  nonblock ? "non-blocking" : "blocking", total >> 20,
                  (unsigned long long)(th_now_ms() - t0));
    free(buf);
    rill_pipe_free(s.p);
    assert_int_equal(n, 0);
    assert_false(got.bad_tag);
    for (int i = 0; i < nprod; i++) {
        assert_int_equal(s.err[i], 0);
        assert_int_equal(got.count[i], s.share);
        assert_true(got.hash[i] == s.sent_hash[i]);
    }
}

/* ---- one CPU --------------------------------------------------------------------------
 * A reader and a writer on one CPU (the scheduler often puts them there by itself, and
 * keeps them there).  A side that had to wait slept, and the other side's next write or
 * read woke it, often to take part of a buffer and sleep again: pinned here, 4 KiB
 * writes into a 64 KiB pipe came out in about 36 KiB per read (450 reads for 16 MiB);
 * unpinned, bench/pipe caught the two alternating every 7 us, 4 KiB a turn.  The waiting
 * side now mostly yields to the other, which runs on until it must wait itself, so
 * most hand-overs move the whole buffer: about 290 reads (one wait in 8 still sleeps). */
#define ONE_CPU_MIB 16u
#define ONE_CPU_CHUNK 4096u

typedef struct {
    rill_pipe *p;
    cpu_set_t cpu;
    int err;
} one_cpu_writer;

static void *one_cpu_write(void *arg)
{
    one_cpu_writer *w = arg;
    static const char chunk[ONE_CPU_CHUNK];
    if ((w->err = pthread_setaffinity_np(pthread_self(), sizeof w->cpu, &w->cpu)) != 0)
        return NULL;
    for (size_t done = 0; done < (size_t)ONE_CPU_MIB << 20; done += ONE_CPU_CHUNK)
        for (size_t off = 0; off < ONE_CPU_CHUNK;) {
            ssize_t n = rill_pipe_write(w->p, chunk + off, ONE_CPU_CHUNK - off);
            if (n < 0) {
                w->err = (int)n;
                return NULL;
            }
            off += (size_t)n;
        }
    w->err = rill_pipe_write_eof(w->p);
    return NULL;
}

static void one_cpu_hand_overs_move_whole_buffers(void **state)
{
    (void)state;
    cpu_set_t was;
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof was, &was), 0);
    int cpu = sched_getcpu();
    if (cpu < 0) {
        print_message("sched_getcpu: %s; not checked\n", strerror(errno));
        return;
    }
    one_cpu_writer w = {.p = pipe_new(64 * 1024, false, false, SAFE_MS)};
    CPU_ZERO(&w.cpu);
    CPU_SET(cpu, &w.cpu);
    assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof w.cpu, &w.cpu), 0);
    pthread_t t;
    int rc = pthread_create(&t, NULL, one_cpu_write, &w);
    if (rc != 0) /* (unpinned first: the later tests' threads would inherit the pin) */
        pthread_setaffinity_np(pthread_self(), sizeof was, &was);
    assert_int_equal(rc, 0);
    static char buf[64 * 1024];
    size_t got = 0, reads = 0;
    ssize_t n;
    while ((n = rill_pipe_read(w.p, buf, sizeof buf)) > 0) {
        got += (size_t)n;
        reads++;
    }
    pthread_join(t, NULL);
    assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof was, &was), 0);
    assert_int_equal(n, 0);
    assert_int_equal(w.err, 0);
    assert_int_equal(got, (size_t)ONE_CPU_MIB << 20);
    size_t writes = ((size_t)ONE_CPU_MIB << 20) / ONE_CPU_CHUNK;
    print_message("one CPU: %zu writes of 4 KiB, %zu reads (%.1f KiB each)\n", writes, reads,
                  (double)got / (double)reads / 1024);
    /* (valgrind runs one thread at a time on its own schedule: nothing to measure there) */
    size_t whole = ((size_t)ONE_CPU_MIB << 20) / (64 * 1024); /* one read per full buffer */
    if (!getenv("RILL_VALGRIND"))
        assert_true(reads <= whole * 3 / 2);
    rill_pipe_free(w.p);
}

static void stress_1p1c_blocking(void **state)
{
    (void)state;
    run_stress(1, false);
}

static void stress_1p1c_nonblocking(void **state)
{
    (void)state;
    run_stress(1, true);
}

static void stress_3p1c_blocking(void **state)
{
    (void)state;
    run_stress(3, false);
}

static void stress_3p1c_nonblocking(void **state)
{
    (void)state;
    run_stress(3, true);
}

/* ---- several readers, and close while reads copy outside the lock ---------------------- */

typedef struct {
    rill_pipe *p;
    size_t total; /* writer: bytes to write (0: until the pipe refuses) */
    uint64_t sum; /* sum of the byte values moved */
    size_t count;
    long rc; /* how it ended */
} mover;

static void *write_pattern(void *arg)
{
    mover *m = arg;
    char buf[8192];
    th_fill(buf, sizeof buf, 77);
    long rc = 0;
    while (rc >= 0 && (!m->total || m->count < m->total)) {
        size_t want = m->total ? RILL__MIN(sizeof buf, m->total - m->count) : sizeof buf;
        rc = rill_pipe_write(m->p, buf, want);
        for (long i = 0; i < rc; i++)
            m->sum += (unsigned char)buf[i];
        if (rc > 0)
            m->count += (size_t)rc;
    }
    m->rc = rc < 0 ? rc : rill_pipe_write_eof(m->p);
    return NULL;
}

static void *read_pattern(void *arg)
{
    mover *m = arg;
    char *buf = malloc(CHUNK_MAX);
    long rc;
    while ((rc = rill_pipe_read(m->p, buf, CHUNK_MAX)) > 0) {
        for (long i = 0; i < rc; i++)
            m->sum += (unsigned char)buf[i];
        m->count += (size_t)rc;
    }
    m->rc = rc;
    free(buf);
    return NULL;
}

static void two_readers_share_a_pipe(void **state)
{
    (void)state;
    rill_pipe *p = pipe_new(65536, false, false, SAFE_MS);
    mover w = {.p = p, .total = stress_total() / 4}, r[2] = {{.p = p}, {.p = p}};
    pthread_t tw, tr[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&tr[i], NULL, read_pattern, &r[i]), 0);
    assert_int_equal(pthread_create(&tw, NULL, write_pattern, &w), 0);
    pthread_join(tw, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(tr[i], NULL);
    rill_pipe_free(p);
    assert_int_equal(w.rc, 0);
    assert_int_equal(r[0].rc, 0);
    assert_int_equal(r[1].rc, 0);
    assert_int_equal(r[0].count + r[1].count, w.total);
    assert_true(r[0].sum + r[1].sum == w.sum);
}

static void close_while_reading(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        rill_pipe *p = pipe_new(65536, false, false, SAFE_MS);
        mover w = {.p = p}, r = {.p = p};
        pthread_t tw, tr;
        assert_int_equal(pthread_create(&tr, NULL, read_pattern, &r), 0);
        assert_int_equal(pthread_create(&tw, NULL, write_pattern, &w), 0);
        sleep_ms(5);
        rill_set_log(capture_log, NULL);
        rill_pipe_close(p); /* waits for a read copying outside the lock */
        pthread_join(tw, NULL);
        pthread_join(tr, NULL);
        rill_set_log(NULL, NULL);
        rill_pipe_free(p);
        assert_int_equal(w.rc, RILL_EPIPE);
        assert_int_equal(r.rc, RILL_ECLOSED);
        assert_true(r.count <= w.count);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(write_copies_up_to_space),
        cmocka_unit_test(write_bytes_is_zero_copy),
        cmocka_unit_test(read_bytes_copies_otherwise),
        cmocka_unit_test(eof_rules),
        cmocka_unit_test(modes_change_at_run_time),
        cmocka_unit_test(timeouts),
        cmocka_unit_test(waits_succeed),
        cmocka_unit_test(blocked_reader_uses_no_cpu),
        cmocka_unit_test(readall_waits_for_eof_in_any_mode),
        cmocka_unit_test(readall_zero_copy_and_timeout),
        cmocka_unit_test(readmatch_lines),
        cmocka_unit_test(readmatch_full_buffer),
        cmocka_unit_test(reader_notification),
        cmocka_unit_test(reader_close_discards),
        cmocka_unit_test(close_wakes_blocked_writer),
        cmocka_unit_test(readers_wake_on_single_bytes),
        cmocka_unit_test(writer_and_flusher_wake_in_turn),
        cmocka_unit_test(draining_reads_release_the_writer),
        cmocka_unit_test(close_wakes_every_sleeper),
        cmocka_unit_test(readall_whole_bytes_wakes_flusher),
        cmocka_unit_test(free_right_after_reader_close),
        cmocka_unit_test(bridge_hook_fires_once),
        cmocka_unit_test(bridge_peek_consume),
        cmocka_unit_test(allocation_failures),
        cmocka_unit_test(one_cpu_hand_overs_move_whole_buffers),
        cmocka_unit_test(stress_1p1c_blocking),
        cmocka_unit_test(stress_1p1c_nonblocking),
        cmocka_unit_test(stress_3p1c_blocking),
        cmocka_unit_test(stress_3p1c_nonblocking),
        cmocka_unit_test(two_readers_share_a_pipe),
        cmocka_unit_test(close_while_reading),
    };
    return cmocka_run_group_tests_name("pipe", tests, NULL, NULL);
}
