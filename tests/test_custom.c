/* tests/test_custom.c - custom transports: a user's blocking in-memory ring (two one-way
 * rings make a duplex pair) run on the thread pool, with framing, backpressure, EOF,
 * close rules and close errors over it. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIN_(a, b) ((a) < (b) ? (a) : (b))
#define MAX_(a, b) ((a) > (b) ? (a) : (b))

/* ---- the user's transport: a bounded ring with blocking calls ----------------------------
 * Calls wait at most 20 ms and then return RILL_EAGAIN, as compose.h asks of calls that
 * may wait indefinitely, so closing a stream never waits long for a blocked call. */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t cap, head, len;
    bool wclosed, rclosed;
} ring;

typedef struct {
    ring *rx, *tx;
    atomic_int closes, calls_after_close;
    atomic_bool closed;
    int close_ret;
    atomic_bool fail_reads;
} end;

static ring *ring_new(size_t cap)
{
    ring *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->buf = malloc(cap);
    r->cap = cap;
    return r;
}

static void ring_free(ring *r)
{
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->buf);
    free(r);
}

/* Waits on r's condition for up to 20 ms; false on timeout. */
static bool ring_wait(ring *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&r->cv, &r->mu, &ts) == 0;
}

static void note_call(end *e)
{
    if (atomic_load(&e->closed))
        atomic_fetch_add(&e->calls_after_close, 1);
}

static ssize_t ring_read(void *impl, void *buf, size_t len)
{
    end *e = impl;
    ring *r = e->rx;
    note_call(e);
    if (atomic_load(&e->fail_reads))
        return RILL_EIO;
    pthread_mutex_lock(&r->mu);
    while (!r->len && !r->wclosed) {
        if (!ring_wait(r) && !r->len && !r->wclosed) {
            pthread_mutex_unlock(&r->mu);
            return RILL_EAGAIN;
        }
    }
    size_t n = MIN_(len, r->len);
    for (size_t i = 0; i < n; i++)
        ((char *)buf)[i] = r->buf[(r->head + i) % r->cap];
    r->head = (r->head + n) % r->cap;
    r->len -= n;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return (ssize_t)n;
}

static ssize_t ring_write(void *impl, const void *buf, size_t len)
{
    end *e = impl;
    ring *r = e->tx;
    note_call(e);
    pthread_mutex_lock(&r->mu);
    while (r->len == r->cap && !r->rclosed) {
        if (!ring_wait(r) && r->len == r->cap && !r->rclosed) {
            pthread_mutex_unlock(&r->mu);
            return RILL_EAGAIN;
        }
    }
    if (r->rclosed || r->wclosed) {
        pthread_mutex_unlock(&r->mu);
        return RILL_EPIPE;
    }
    size_t n = MIN_(len, r->cap - r->len);
    for (size_t i = 0; i < n; i++)
        r->buf[(r->head + r->len + i) % r->cap] = ((const char *)buf)[i];
    r->len += n;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return (ssize_t)n;
}

static void ring_set(ring *r, bool *flag)
{
    pthread_mutex_lock(&r->mu);
    *flag = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int ring_shutdown(void *impl)
{
    end *e = impl;
    note_call(e);
    ring_set(e->tx, &e->tx->wclosed);
    return 0;
}

static int ring_close(void *impl)
{
    end *e = impl;
    note_call(e);
    atomic_store(&e->closed, true);
    ring_set(e->tx, &e->tx->wclosed);
    ring_set(e->rx, &e->rx->rclosed);
    atomic_fetch_add(&e->closes, 1);
    return e->close_ret;
}

static const rill_transport_ops ring_ops = {ring_read, ring_write, ring_shutdown, ring_close};

typedef struct {
    ring *ab, *ba;
    end a, b;
    rill_stream *sa, *sb;
} duo;

static void duo_open(rill_loop *loop, duo *d, size_t cap)
{
    memset(d, 0, sizeof *d);
    d->ab = ring_new(cap);
    d->ba = ring_new(cap);
    d->a.tx = d->ab;
    d->a.rx = d->ba;
    d->b.tx = d->ba;
    d->b.rx = d->ab;
    assert_non_null(d->sa = rill_stream_new_custom(loop, &ring_ops, &d->a));
    assert_non_null(d->sb = rill_stream_new_custom(loop, &ring_ops, &d->b));
}

/* After th_loop_free: every close ran once and nothing was called after it. */
static void duo_free(duo *d)
{
    assert_int_equal(atomic_load(&d->a.closes), 1);
    assert_int_equal(atomic_load(&d->b.closes), 1);
    assert_int_equal(atomic_load(&d->a.calls_after_close), 0);
    assert_int_equal(atomic_load(&d->b.calls_after_close), 0);
    ring_free(d->ab);
    ring_free(d->ba);
}

/* ---- tests ----------------------------------------------------------------------------- */

typedef struct {
    int frames, closes, errors, eofs, drains, reads;
    int last_err, close_err, status[8];
    char got[8][64];
    size_t len[8];
    size_t bytes;
    uint64_t hash;
} rec;

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    rec *r = arg;
    (void)s;
    int i = r->frames++;
    r->status[i] = status;
    r->len[i] = len;
    memcpy(r->got[i], data, MIN_(len, sizeof r->got[i]));
}

static void on_ev(rill_stream *s, const rill_event *ev, void *arg)
{
    rec *r = arg;
    (void)s;
    switch (ev->type) {
    case RILL_EV_READ:
        r->reads++;
        r->bytes += ev->len;
        r->hash = th_hash(r->hash, ev->data, ev->len);
        break;
    case RILL_EV_CLOSE:
        r->closes++;
        r->close_err = ev->err;
        break;
    case RILL_EV_ERROR:
        r->errors++;
        r->last_err = ev->err;
        break;
    case RILL_EV_EOF:
        r->eofs++;
        break;
    case RILL_EV_DRAIN:
        r->drains++;
        break;
    default:
        break;
    }
}

static void watch(rill_stream *s, rec *r)
{
    for (int t = RILL_EV_READ; t <= RILL_EV_EOF; t++)
        assert_non_null(rill_stream_on(s, (rill_event_type)t, on_ev, r));
}

static void test_framing_over_ring(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    duo d;
    duo_open(loop, &d, 16); /* tiny: frames arrive in pieces */
    rec r = {0};
    assert_int_equal(rill_stream_read_until(d.sb, "\r\n", 2, on_frame, &r), 0);
    assert_int_equal(rill_stream_read_until(d.sb, "\r\n", 2, on_frame, &r), 0);
    assert_int_equal(rill_stream_read_exactly(d.sb, 10, on_frame, &r), 0);
    assert_int_equal(rill_stream_read_bytes(d.sb, 100, on_frame, &r), 0);
    const char *msg = "GET / HTTP/1.1\r\nHost: ring\r\n0123456789tail";
    assert_true(rill_stream_write(d.sa, msg, strlen(msg), NULL, NULL) >= 0);
    TH_RUN_UNTIL(loop, r.frames == 4, 3000);
    assert_int_equal(r.len[0], 16);
    assert_memory_equal(r.got[0], "GET / HTTP/1.1\r\n", 16);
    assert_memory_equal(r.got[1], "Host: ring\r\n", 12);
    assert_memory_equal(r.got[2], "0123456789", 10);
    assert_memory_equal(r.got[3], "tail", r.len[3]);
    /* EOF through the ring: shutdown ends a's write half; b's request gets RILL_EOF */
    assert_int_equal(rill_stream_read_exactly(d.sb, 5, on_frame, &r), 0);
    assert_true(rill_stream_write(d.sa, "ab", 2, NULL, NULL) >= 0);
    assert_int_equal(rill_stream_shutdown(d.sa, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, r.frames == 5, 3000);
    assert_int_equal(r.status[4], RILL_EOF);
    assert_int_equal(r.len[4], 2);
    rill_stream_close(d.sa);
    rill_stream_close(d.sb);
    th_loop_free(loop);
    duo_free(&d);
}

#define BIG (8u << 20)

typedef struct {
    int calls, last, in_order;
} wdone;

static void on_written(rill_stream *s, int status, void *arg)
{
    wdone *w = arg;
    (void)s;
    assert_int_equal(status, 0);
    w->calls++;
}

static void test_bulk_with_backpressure(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    duo d;
    duo_open(loop, &d, 64 * 1024);
    char *data = malloc(BIG);
    th_fill(data, BIG, 7);
    uint64_t want = th_hash(TH_HASH_INIT, data, BIG);
    rec ra = {0}, rb = {0};
    rb.hash = TH_HASH_INIT;
    watch(d.sa, &ra);
    watch(d.sb, &rb);
    assert_int_equal(rill_stream_start(d.sb), 0);
    wdone w = {0};
    size_t off = 0, chunk = 256 * 1024, max_q = 0;
    while (off < BIG) {
        int rc = rill_stream_write(d.sa, data + off, chunk, on_written, &w);
        assert_true(rc >= 0);
        off += chunk;
        if (rc == 1) { /* the high water mark: wait for DRAIN, as a good writer does */
            int drains = ra.drains;
            TH_RUN_UNTIL(loop, ra.drains > drains, 5000);
        }
        max_q = MAX_(max_q, rill_stream_write_queue_size(d.sa));
    }
    assert_true(max_q <= 64 * 1024 + chunk);
    assert_int_equal(rill_stream_shutdown(d.sa, NULL, NULL), 0);
    TH_RUN_UNTIL(loop, rb.eofs == 1, 20000);
    assert_int_equal(rb.bytes, BIG);
    assert_true(rb.hash == want);
    assert_int_equal(w.calls, BIG / chunk);
    assert_true(rill_stream_writable(d.sb)); /* half-closed: b still writes */
    rill_stream_close(d.sa);
    rill_stream_close(d.sb);
    TH_RUN_UNTIL(loop, ra.closes == 1 && rb.closes == 1, 2000);
    free(data);
    th_loop_free(loop);
    duo_free(&d);
}

static void test_close_while_read_blocks(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    duo d;
    duo_open(loop, &d, 1024);
    rec ra = {0}, rb = {0};
    watch(d.sa, &ra);
    watch(d.sb, &rb);
    assert_int_equal(rill_stream_start(d.sa), 0); /* its read blocks in the pool: empty ring */
    for (int i = 0; i < 3; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    rill_stream_close(d.sa);
    TH_RUN_UNTIL(loop, ra.closes == 1, 2000);
    TH_RUN_UNTIL(loop, atomic_load(&d.a.closes) == 1, 2000); /* after the read returned */
    /* b's bytes go nowhere now: a delivers nothing after its close */
    assert_true(rill_stream_write(d.sb, "late", 4, NULL, NULL) >= 0);
    TH_RUN_UNTIL(loop, rb.errors == 1, 2000);
    assert_int_equal(rb.last_err, RILL_EPIPE);
    assert_int_equal(ra.reads, 0);
    rill_stream_close(d.sb);
    th_loop_free(loop);
    duo_free(&d);
}

static void on_done(rill_stream *s, int status, void *arg)
{
    (void)s;
    int *p = arg;
    p[0]++;
    p[1] = status;
}

static void test_close_async_reports_close_error(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    duo d;
    duo_open(loop, &d, 1024);
    d.a.close_ret = RILL_EIO;
    rill_stream_ref(d.sa);
    int r[2] = {0, 0}, r2[2] = {0, 0};
    assert_true(rill_stream_write(d.sa, "flush me", 8, NULL, NULL) >= 0);
    assert_int_equal(rill_stream_close_async(d.sa, 0, NULL, on_done, r), 0);
    TH_RUN_UNTIL(loop, r[0] == 1, 3000);
    assert_int_equal(r[1], RILL_EIO); /* close(impl) failed: the first error */
    assert_int_equal(rill_stream_error(d.sa), RILL_EIO);
    char buf[8];
    assert_int_equal(ring_read(&d.b, buf, sizeof buf), 8); /* flushed before the close */
    assert_memory_equal(buf, "flush me", 8);
    assert_int_equal(rill_stream_close_async(d.sa, 0, NULL, on_done, r2), 0);
    TH_RUN_UNTIL(loop, r2[0] == 1, 2000);
    assert_int_equal(r2[1], 0); /* closing again is not an error */
    rill_stream_unref(d.sa);
    /* a read error of the transport is an ERROR event */
    rec rb = {0};
    watch(d.sb, &rb);
    atomic_store(&d.b.fail_reads, true);
    assert_int_equal(rill_stream_start(d.sb), 0);
    TH_RUN_UNTIL(loop, rb.errors == 1, 2000);
    assert_int_equal(rb.last_err, RILL_EIO);
    rill_stream_close(d.sb);
    th_loop_free(loop);
    duo_free(&d);
}

static void test_one_way_and_invalid(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    static const rill_transport_ops wonly = {NULL, ring_write, NULL, ring_close};
    ring *r = ring_new(64);
    end e = {.tx = r, .rx = r};
    rill_stream *s = rill_stream_new_custom(loop, &wonly, &e);
    assert_non_null(s);
    assert_false(rill_stream_readable(s));
    assert_true(rill_stream_writable(s));
    assert_int_equal(rill_stream_start(s), RILL_EINVAL);
    assert_int_equal(rill_stream_fd(s), RILL_EINVAL);
    int shut[2] = {0, 0};
    assert_int_equal(rill_stream_write(s, "x", 1, NULL, NULL), 0);
    assert_int_equal(rill_stream_shutdown(s, on_done, shut), 0); /* no shutdown op: fine */
    TH_RUN_UNTIL(loop, shut[0] == 1, 2000);
    assert_int_equal(shut[1], 0);
    rill_stream_close(s);
    static const rill_transport_ops none = {NULL, NULL, NULL, NULL};
    errno = 0;
    assert_null(rill_stream_new_custom(loop, &none, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(rill_stream_new_custom(loop, NULL, NULL));
    assert_null(rill_stream_new_custom(NULL, &ring_ops, NULL));
    th_loop_free(loop);
    assert_int_equal(atomic_load(&e.closes), 1);
    ring_free(r);
}

static void test_unref_closes_custom(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    duo d;
    duo_open(loop, &d, 256);
    rec rb = {0};
    watch(d.sb, &rb);
    assert_int_equal(rill_stream_start(d.sb), 0);
    rill_stream_unref(d.sa);                /* the last reference of an open stream closes it */
    TH_RUN_UNTIL(loop, rb.eofs == 1, 2000); /* b sees EOF: a's close ended its ring */
    rill_stream_close(d.sb);
    th_loop_free(loop);
    duo_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_over_ring),
        cmocka_unit_test(test_bulk_with_backpressure),
        cmocka_unit_test(test_close_while_read_blocks),
        cmocka_unit_test(test_close_async_reports_close_error),
        cmocka_unit_test(test_one_way_and_invalid),
        cmocka_unit_test(test_unref_closes_custom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
