/* tests/test_bufwrap_random.c - a randomized differential test of rill_bufwrap.
 *
 * 300 cases, each from a fixed seed (never the clock): a random byte string (0 to 200 KiB
 * of a small alphabet, a quarter of the cases within 2 bytes of the buffer size, where
 * "the whole source fit" is decided) is served by a scripted source whose reads return
 * random short counts (1 byte up to what was asked, sometimes exactly what was asked), 0
 * only at the real end, and, at a per-case rate, RILL_EAGAIN or a transient error
 * (RILL_EIO, RILL_EINTR, RILL_ECONNRESET, RILL_ETIMEDOUT) that consumes nothing.  The
 * wrapper gets a random buffer size (0 = 8192, or 1 byte to 64 KiB, often smaller than the
 * peeks and reads made), then a random sequence of peek(n), read(len) (len 0 too), seek
 * and tell (seek(0, SEEK_CUR)) with valid and invalid arguments, and length/seekable
 * queries, until the end has been read (then the rest is drained).  Every answer is
 * checked against a model of the contract in include/rill/pipe.h - a cursor into the
 * string, the bytes the source served while the wrapper was created, and the source's
 * last answer:
 *
 * - creation reads until EOF, a full buffer (buffsize + 1 bytes), RILL_EAGAIN or an error,
 *   and stops there: seekable with length = the string's when the source said EOF, else
 *   not seekable and length -1;
 * - peek(n): exactly min(n, buffered bytes left) bytes equal to the string's at the cursor,
 *   0 past the buffer; never advances, never calls the source;
 * - read(len): 1..len bytes equal to the string's at the cursor while buffered bytes are
 *   left; then (not seekable) a creation error once, at the read that reaches it, then the
 *   source's own answers passed through (RILL_EAGAIN and errors as the source returned
 *   them, in the read that called it); 0 exactly at the end; read(0) gives 0;
 * - seekable wrappers never call the source again; seek lands in [0, length] or fails
 *   with RILL_EINVAL and leaves the position; not seekable: RILL_ESPIPE (or RILL_EINVAL for
 *   a bad whence: the header does not order the two);
 * - no byte lost, duplicated or changed across transient errors; no leak (the counting
 *   allocator has nothing live after each case).
 *
 * Read into the contract where the header is loose: peek gives all the buffered bytes it
 * can (its tests expect that, "up to n" alone would allow fewer); read(0) is 0 without a
 * source call; a seekable wrapper, holding the whole source, does not call it again.
 *
 * On failure the message names the case and its last operations; RILL_BUFWRAP_CASE=N runs
 * case N alone, RILL_BUFWRAP_SEED=S makes other cases (the default is fixed),
 * RILL_BUFWRAP_VERBOSE=1 prints each case's counts. */
#include "harness.h"
#include "th_rand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED 0x72696c6c62756677ull /* fixed: every run makes the same cases */
#define NCASES 300
#define CASE_MS 5000          /* bound for one case */
#define MAX_DATA (200u << 10) /* 200 KiB */
#define MAX_BSIZE (64u << 10)
#define MAX_OPS 3000      /* random operations per case before the drain */
#define RBUF (256u << 10) /* reads land at the end of this, so overflows hit its end */

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- the scripted source ---------------------------------------------------------------- */

static const int errs[] = {RILL_EIO, RILL_EINTR, RILL_ECONNRESET, RILL_ETIMEDOUT};

typedef struct {
    const char *data;
    size_t total, pos; /* pos: bytes served so far */
    uint64_t rs;
    int p_eagain, p_err, p_exact; /* per mille */
    size_t short_max;             /* short counts are 1..short_max */
    size_t calls, zero_len_calls;
    ssize_t last; /* the last answer */
    size_t eagains, errors;
} source;

static ssize_t src_read(void *arg, void *buf, size_t len)
{
    source *s = arg;
    s->calls++;
    if (!len) {
        s->zero_len_calls++;
        return s->last = 0; /* reported by the case: 0 here would look like EOF */
    }
    int r = (int)below(&s->rs, 1000);
    if (r < s->p_eagain) {
        s->eagains++;
        return s->last = RILL_EAGAIN;
    }
    if (r < s->p_eagain + s->p_err) {
        s->errors++;
        return s->last = errs[below(&s->rs, sizeof errs / sizeof *errs)];
    }
    size_t rest = s->total - s->pos;
    if (!rest)
        return s->last = 0;
    size_t n = MIN(len, rest);
    if ((int)below(&s->rs, 1000) >= s->p_exact) {
        size_t k = logu(&s->rs, 1, s->short_max);
        n = MIN(n, k);
    }
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return s->last = (ssize_t)n;
}

/* ---- one case ------------------------------------------------------------------------- */

static uint64_t seed = SEED;

#define NLOG 12

typedef struct {
    int num;
    size_t total, bsize, eff; /* eff: the buffer size in effect (0 means 8192) */
    source src;
    rill_bufwrap *w;
    bool seekable;
    size_t buffered; /* B: bytes the source served at creation */
    int pending;     /* a creation error not yet reported */
    size_t cur;      /* the model's position */
    size_t ops, peeks, reads, seeks, short_reads, passed_errs, bytes, seekables;
    bool failed;
    char log[NLOG][112];
    size_t nlog;
    char msg[4096];
} kase;

static void logop(kase *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logop(kase *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->log[c->nlog++ % NLOG], sizeof c->log[0], fmt, ap);
    va_end(ap);
}

static void failf(kase *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void failf(kase *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    int k = snprintf(c->msg, sizeof c->msg,
                     "case %d (RILL_BUFWRAP_SEED=%#llx RILL_BUFWRAP_CASE=%d runs it alone; %zu "
                     "bytes, buffsize %zu, %s, %zu buffered at creation, source: eagain %d/1000 "
                     "err %d/1000 exact %d/1000 short<=%zu), op %zu at offset %zu: ",
                     c->num, (unsigned long long)seed, c->num, c->total, c->bsize,
                     c->seekable ? "seekable" : "not seekable", c->buffered, c->src.p_eagain,
                     c->src.p_err, c->src.p_exact, c->src.short_max, c->ops, c->cur);
    va_list ap;
    va_start(ap, fmt);
    k += vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
    k += snprintf(c->msg + k, sizeof c->msg - (size_t)k, "\n  last operations:");
    size_t first = c->nlog > NLOG ? c->nlog - NLOG : 0;
    for (size_t i = first; i < c->nlog && (size_t)k < sizeof c->msg; i++)
        k += snprintf(c->msg + k, sizeof c->msg - (size_t)k, "\n    #%zu %s", i, c->log[i % NLOG]);
}

/* The first index where got differs from the string at off, or n when none does. */
static size_t mismatch(const kase *c, const char *got, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != c->src.data[off + i])
            return i;
    return n;
}

static void check_bytes(kase *c, const char *what, const char *got, size_t n)
{
    if (c->cur + n > c->total) {
        failf(c, "%s gave %zu bytes, past the end (%zu)", what, n, c->total);
        return;
    }
    if (c->cur + n > c->src.pos) {
        failf(c, "%s gave %zu bytes, more than the source served (%zu)", what, n, c->src.pos);
        return;
    }
    size_t i = mismatch(c, got, c->cur, n);
    if (i < n)
        failf(c, "%s: byte %zu of %zu (offset %zu) is 0x%02x, the source's is 0x%02x", what, i, n,
              c->cur + i, (unsigned char)got[i], (unsigned char)c->src.data[c->cur + i]);
}

static void op_peek(kase *c, uint64_t *os)
{
    size_t k = below(os, 100), n;
    if (k < 5)
        n = 0;
    else if (k < 10)
        n = SIZE_MAX;
    else if (k < 20)
        n = c->eff + below(os, 3); /* around the buffer */
    else
        n = logu(os, 1, 2 * c->eff + 16);
    size_t calls = c->src.calls;
    const char *p = NULL;
    ssize_t r = rill_bufwrap_peek(c->w, n, &p);
    logop(c, "peek(%zu) at %zu -> %zd", n, c->cur, r);
    c->peeks++;
    size_t end = c->seekable ? c->total : c->buffered;
    size_t want = c->cur < end ? MIN(n, end - c->cur) : 0;
    if (r != (ssize_t)want)
        failf(c, "peek(%zu) gave %zd, want %zu (%zu buffered bytes left)", n, r, want,
              c->cur < end ? end - c->cur : 0);
    else if (r > 0 && !p)
        failf(c, "peek(%zu) gave %zd bytes and a NULL pointer", n, r);
    else if (r > 0)
        check_bytes(c, "peek", p, (size_t)r);
    if (c->src.calls != calls)
        failf(c, "peek(%zu) called the source", n);
}

static void op_read(kase *c, uint64_t *os, char *rbuf, size_t scale)
{
    size_t len = below(os, 40) == 0 ? 0 : logu(os, 1, scale);
    if (below(os, 20) == 0)
        len = c->eff + below(os, 3) - 1; /* around the buffer size */
    if (len > RBUF)
        len = RBUF;
    char *buf = rbuf + RBUF - len; /* a write past len leaves the allocation */
    size_t calls = c->src.calls, spos = c->src.pos;
    ssize_t r = rill_bufwrap_read(c->w, buf, len);
    logop(c, "read(%zu) at %zu -> %zd (%s; source called %zu times, last %zd)", len, c->cur, r,
          r < 0 ? rill_err_name((int)r) : "count", c->src.calls - calls, c->src.last);
    c->reads++;
    size_t end = c->seekable ? c->total : c->buffered;
    if (len == 0) {
        if (r != 0)
            failf(c, "read(0) gave %zd", r);
        if (c->src.calls != calls)
            failf(c, "read(0) called the source");
        return;
    }
    if (r > (ssize_t)len) {
        failf(c, "read(%zu) gave %zd", len, r);
        return;
    }
    if (c->seekable && c->src.calls != calls) {
        failf(c, "a seekable wrapper called the source again");
        return;
    }
    if (c->cur < end) { /* buffered bytes left: they come first */
        if (r <= 0) {
            failf(c, "read(%zu) gave %zd (%s) with %zu buffered bytes left", len, r,
                  r < 0 ? rill_err_name((int)r) : "EOF", end - c->cur);
            return;
        }
    } else if (c->seekable) {
        if (r != 0)
            failf(c, "read(%zu) at the end of a seekable wrapper gave %zd", len, r);
        return;
    } else if (c->pending) {
        if (r != c->pending)
            failf(c, "read(%zu) reaching the creation error %s gave %zd (%s)", len,
                  rill_err_name(c->pending), r, r < 0 ? rill_err_name((int)r) : "count");
        else if (c->src.calls != calls)
            failf(c, "the read reporting the creation error called the source");
        c->pending = 0;
        c->passed_errs++;
        return;
    } else if (r <= 0) { /* passed through from the source */
        if (c->src.calls == calls)
            failf(c, "read(%zu) past the buffer gave %zd without calling the source", len, r);
        else if (r != c->src.last)
            failf(c, "read(%zu) gave %zd, the source's answer was %zd", len, r, c->src.last);
        else if (r == 0 && c->cur != c->total)
            failf(c, "EOF at %zu of %zu", c->cur, c->total);
        else if (r < 0)
            c->passed_errs++;
        return;
    } else if (spos != c->cur) {
        failf(c, "past the buffer, the source is at %zu and the wrapper at %zu", spos, c->cur);
        return;
    }
    check_bytes(c, "read", buf, (size_t)r);
    if (!c->failed) {
        if ((size_t)r < len && c->cur + (size_t)r < c->total)
            c->short_reads++;
        c->cur += (size_t)r;
        c->bytes += (size_t)r;
    }
}

static void op_seek(kase *c, uint64_t *os)
{
    static const int bad[] = {-1, 3, 4, 42, 0x7fffffff};
    int whence;
    size_t k = below(os, 100);
    if (k < 8)
        whence = bad[below(os, sizeof bad / sizeof *bad)];
    else
        whence = k < 40 ? SEEK_SET : k < 80 ? SEEK_CUR : SEEK_END;
    int64_t len = (int64_t)c->total, off;
    k = below(os, 100);
    if (k < 15)
        off = 0; /* tell, or the start, or the end */
    else if (k < 20)
        off = below(os, 2) ? INT64_MAX : INT64_MIN;
    else
        off = (int64_t)below(os, (size_t)(2 * len + 7)) - len - 3; /* [-len-3, len+3] */
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (int64_t)c->cur : len, want;
    int64_t target;
    bool okw = whence == SEEK_SET || whence == SEEK_CUR || whence == SEEK_END;
    if (!c->seekable)
        want = RILL_ESPIPE;
    else if (!okw || __builtin_add_overflow(base, off, &target) || target < 0 || target > len)
        want = RILL_EINVAL;
    else
        want = target;
    int64_t r = rill_bufwrap_seek(c->w, off, whence);
    logop(c, "seek(%lld, %d) at %zu -> %lld", (long long)off, whence, c->cur, (long long)r);
    c->seeks++;
    if (r != want && !(!c->seekable && !okw && r == RILL_EINVAL))
        failf(c, "seek(%lld, %d) gave %lld, want %lld", (long long)off, whence, (long long)r,
              (long long)want);
    else if (r >= 0)
        c->cur = (size_t)r;
    if (rill_bufwrap_seekable(c->w) != c->seekable)
        failf(c, "seekable changed to %d", !c->seekable);
    if (rill_bufwrap_length(c->w) != (c->seekable ? len : -1))
        failf(c, "length became %lld", (long long)rill_bufwrap_length(c->w));
}

static void gen_data(char *d, size_t n, uint64_t *ds)
{
    static const char *const alphas[] = {"ab\n", "abc\r\n", "xy", "a", "0123456789\n;"};
    const char *a = alphas[below(ds, sizeof alphas / sizeof *alphas)];
    size_t alen = strlen(a);
    bool binary = below(ds, 8) == 0;
    for (size_t i = 0; i < n;) {
        uint64_t x = rnd(ds);
        for (int j = 0; j < 8 && i < n; j++, x >>= 8)
            d[i++] = binary ? (char)x : a[(x & 0xff) % alen];
    }
}

static bool run_case(int num, kase *sum, char *rbuf, char *msg, size_t cap)
{
    static kase c;
    memset(&c, 0, sizeof c);
    c.num = num;
    uint64_t ds = seed_of(seed ^ ((uint64_t)num << 32));
    uint64_t os = seed_of(rnd(&ds));
    c.src.rs = seed_of(rnd(&ds));

    c.bsize = below(&ds, 10) == 0 ? 0 : logu(&ds, 1, MAX_BSIZE);
    c.eff = c.bsize ? c.bsize : 8192;
    if (below(&ds, 4) == 0) { /* at the edge of "the whole source fit" */
        size_t d = below(&ds, 5);
        c.total = c.eff + d >= 2 ? c.eff + d - 2 : 0;
    } else {
        c.total = below(&ds, 20) == 0 ? 0 : logu(&ds, 1, MAX_DATA);
    }
    char *data = malloc(c.total ? c.total : 1);
    assert_non_null(data);
    gen_data(data, c.total, &ds);
    static const int rates[] = {0, 0, 5, 50, 300};
    c.src.data = data;
    c.src.total = c.total;
    c.src.p_eagain = rates[below(&ds, 5)];
    c.src.p_err = rates[below(&ds, 5)];
    c.src.p_exact = (int)below(&ds, 1001);
    /* short counts small enough to straddle everything, big enough to end in time */
    c.src.short_max = logu(&ds, 1 + c.total / 8000, 1 + c.total);
    size_t scale = logu(&ds, 1, 2 * c.eff + 64); /* typical read length */
    if (scale < c.total / 1000)
        scale = c.total / 1000;

    c.w = rill_bufwrap_new(src_read, &c.src, c.bsize);
    assert_non_null(c.w);
    c.buffered = c.src.pos;
    ssize_t last = c.src.last;
    c.seekable = last == 0;
    if (c.src.calls == 0)
        failf(&c, "creation never called the source");
    else if (c.buffered > c.eff + 1)
        failf(&c, "creation buffered %zu bytes, more than buffsize + 1", c.buffered);
    else if (last > 0 && c.buffered != c.eff + 1)
        failf(&c, "creation stopped after %zu bytes with no EOF, error or full buffer", c.buffered);
    else if (rill_bufwrap_seekable(c.w) != c.seekable)
        failf(&c, "seekable %d after a creation that ended with %zd", rill_bufwrap_seekable(c.w),
              last);
    else if (rill_bufwrap_length(c.w) != (c.seekable ? (int64_t)c.total : -1))
        failf(&c, "length %lld after a creation that ended with %zd",
              (long long)rill_bufwrap_length(c.w), last);
    if (last < 0 && !rill_is_blocked((int)last))
        c.pending = (int)last;
    logop(&c, "new(%zu): %zu buffered, last source answer %zd", c.bsize, c.buffered, last);

    uint64_t t0 = th_now_ms(), deadline = t0 + CASE_MS;
    bool at_end = false;
    size_t after_end = 0;
    while (!c.failed && c.ops < MAX_OPS && !(at_end && after_end == 0)) {
        if ((c.ops & 255) == 0 && th_now_ms() > deadline)
            failf(&c, "timed out");
        c.ops++;
        size_t k = below(&os, 100);
        if (k < 30)
            op_peek(&c, &os);
        else if (k < 90 || !c.seekable)
            op_read(&c, &os, rbuf, scale);
        else
            op_seek(&c, &os);
        if (k >= 90 && !c.seekable && below(&os, 3) == 0)
            op_seek(&c, &os); /* always RILL_ESPIPE */
        if (at_end)
            after_end--;
        else if (c.cur == c.total && !c.pending && c.src.last == 0)
            at_end = true, after_end = below(&os, 30);
    }
    /* the drain: the rest in large reads, transient errors passed over */
    size_t tries = 0;
    while (!c.failed) {
        if ((++tries & 255) == 0 && th_now_ms() > deadline)
            failf(&c, "timed out draining");
        size_t before = c.cur;
        int pend = c.pending;
        c.ops++;
        op_read(&c, &os, rbuf, RBUF);
        ssize_t got = (ssize_t)(c.cur - before);
        if (!got && !pend && c.cur >= (c.seekable ? c.total : c.buffered) &&
            (c.seekable || c.src.last == 0))
            break; /* EOF seen */
    }
    if (!c.failed && c.cur != c.total)
        failf(&c, "ended at %zu of %zu", c.cur, c.total);
    if (!c.failed && c.src.zero_len_calls)
        failf(&c, "the source was asked for 0 bytes %zu times", c.src.zero_len_calls);
    rill_bufwrap_free(c.w);
    if (!c.failed && th_alloc_live() != 0)
        failf(&c, "%zu allocations live after rill_bufwrap_free", th_alloc_live());
    free(data);
    if (getenv("RILL_BUFWRAP_VERBOSE"))
        print_message("case %d: %zu bytes, buffsize %zu, %s, %zu buffered; %zu ops (%zu peeks, "
                      "%zu reads, %zu seeks), %zu short reads, %zu source calls, %zu errors "
                      "passed on, %llu ms\n",
                      num, c.total, c.bsize, c.seekable ? "seekable" : "stream", c.buffered, c.ops,
                      c.peeks, c.reads, c.seeks, c.short_reads, c.src.calls, c.passed_errs,
                      (unsigned long long)(th_now_ms() - t0));
    sum->ops += c.ops;
    sum->peeks += c.peeks;
    sum->reads += c.reads;
    sum->seeks += c.seeks;
    sum->passed_errs += c.passed_errs;
    sum->bytes += c.bytes;
    sum->short_reads += c.short_reads;
    sum->seekables += c.seekable;
    if (c.failed)
        snprintf(msg, cap, "%s", c.msg);
    return !c.failed;
}

static void test_random(void **state)
{
    (void)state;
    const char *alt_seed = getenv("RILL_BUFWRAP_SEED");
    seed = alt_seed ? strtoull(alt_seed, NULL, 0) : SEED;
    const char *only = getenv("RILL_BUFWRAP_CASE");
    int one = only ? atoi(only) : -1;
    char *rbuf = malloc(RBUF);
    assert_non_null(rbuf);
    static kase sum;
    static char msg[sizeof sum.msg];
    memset(&sum, 0, sizeof sum);
    uint64_t t0 = th_now_ms();
    int ran = 0;
    bool ok = true;
    th_alloc_install();
    for (int n = 0; ok && n < NCASES; n++) {
        if (one >= 0 && n != one)
            continue;
        ok = run_case(n, &sum, rbuf, msg, sizeof msg); /* the first failure ends the test */
        ran++;
    }
    th_alloc_reset();
    free(rbuf);
    print_message("bufwrap_random: %d cases (%zu seekable), %zu ops: %zu peeks, %zu reads "
                  "(%zu short), %zu seeks; %zu bytes read, %zu source errors passed on, %llu ms\n",
                  ran, sum.seekables, sum.ops, sum.peeks, sum.reads, sum.short_reads, sum.seeks,
                  sum.bytes, sum.passed_errs, (unsigned long long)(th_now_ms() - t0));
    if (!ok)
        fail_msg("%s", msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests_name("bufwrap_random", tests, NULL, NULL);
}
