/* tests/test_buf.c - the chain buffer: round trips against a flat model, contig, the
 * incremental delimiter search, allocation behaviour. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A small deterministic generator, so a failure replays. */
static uint64_t rng_state;
static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? rng_state % n : 0;
}

/* The model: every byte ever appended, in a flat array; [head, tail) is still buffered. */
typedef struct {
    char *data;
    size_t head, tail, cap;
} model;

static void model_add(model *m, const void *p, size_t n)
{
    if (m->tail + n > m->cap) {
        m->cap = (m->tail + n) * 2;
        m->data = realloc(m->data, m->cap);
        assert_non_null(m->data);
    }
    memcpy(m->data + m->tail, p, n);
    m->tail += n;
}

static uint64_t iov_hash(const rill__buf *b)
{
    struct iovec iov[64];
    uint64_t h = TH_HASH_INIT;
    size_t total = 0;
    int n = rill__buf_iov(b, iov, 64);
    for (int i = 0; i < n; i++) {
        assert_true(iov[i].iov_len > 0);
        h = th_hash(h, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    if (n < 64)
        assert_int_equal(total, b->len); /* every byte fits: the iovecs cover them all */
    return h;
}

static void check_equal(const rill__buf *b, const model *m)
{
    size_t len = m->tail - m->head;
    assert_int_equal(b->len, len);
    char *tmp = malloc(len + 1);
    assert_int_equal(rill__buf_peek(b, 0, tmp, len + 1), len);
    assert_int_equal(th_hash(TH_HASH_INIT, tmp, len), th_hash(TH_HASH_INIT, m->data + m->head, len));
    free(tmp);
}

static void free_fn(void *p)
{
    free(p);
}

/* Appends n random bytes, copied or as a slice of a rill_bytes. */
static void add_random(rill__buf *b, model *m, size_t n, uint64_t seed)
{
    char *p = malloc(n + 8);
    th_fill(p, n + 8, seed);
    if (rnd(3) == 0) {
        rill_bytes *bytes = rill_bytes_wrap(p, n + 8, free_fn);
        assert_int_equal(rill__buf_append_bytes(b, bytes, 4, n), 0);
        rill_bytes_unref(bytes); /* the buffer holds its own reference */
        model_add(m, p + 4, n);
    } else {
        assert_int_equal(rill__buf_append(b, p, n), 0);
        model_add(m, p, n);
        free(p);
    }
}

static void round_trip_random(void **state)
{
    (void)state;
    rill__buf b;
    model m = {0};
    rill__buf_init(&b);
    rng_state = 12345;
    for (int i = 0; i < 3000; i++) {
        size_t n = rnd(4) == 0 ? rnd(70000) : rnd(3000);
        add_random(&b, &m, n, (uint64_t)i);
        if (rnd(2)) {
            size_t c = rnd(m.tail - m.head + 1);
            rill__buf_consume(&b, c);
            m.head += c;
        }
        size_t len = m.tail - m.head;
        if (len <= 64 * 1024) { /* iov needs <= 64 segments for a full comparison */
            struct iovec iov[64];
            if (rill__buf_iov(&b, iov, 64) < 64)
                assert_int_equal(iov_hash(&b), th_hash(TH_HASH_INIT, m.data + m.head, len));
        }
        if (i % 50 == 0)
            check_equal(&b, &m);
        if (len) { /* peek at an offset */
            size_t off = rnd(len), want = rnd(len - off + 1);
            char *tmp = malloc(want + 1);
            assert_int_equal(rill__buf_peek(&b, off, tmp, want), want);
            assert_memory_equal(tmp, m.data + m.head + off, want);
            free(tmp);
        }
    }
    check_equal(&b, &m);
    rill__buf_consume(&b, b.len);
    assert_int_equal(b.len, 0);
    assert_null(b.head);
    assert_int_equal(rill__buf_iov(&b, NULL, 0), 0);
    rill__buf_free(&b);
    free(m.data);
}

static void iov_respects_max(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    rill_bytes *bytes = rill_bytes_new("0123456789", 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(rill__buf_append_bytes(&b, bytes, (size_t)i, 1), 0);
    rill_bytes_unref(bytes);
    struct iovec iov[4];
    assert_int_equal(rill__buf_iov(&b, iov, 4), 4);
    assert_memory_equal(iov[3].iov_base, "3", 1);
    assert_int_equal(rill__buf_iov(&b, iov, 0), 0);
    rill__buf_free(&b);
}

/* Referenced strings are released when their bytes are consumed, not before. */
static int wrapped_frees;
static void count_free(void *p)
{
    wrapped_frees++;
    free(p);
}

static void append_bytes_references(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    wrapped_frees = 0;
    char *p = malloc(6);
    memcpy(p, "abcdef", 6);
    rill_bytes *bytes = rill_bytes_wrap(p, 6, count_free);
    assert_int_equal(rill__buf_append_bytes(&b, bytes, 1, 4), 0); /* "bcde" */
    assert_int_equal(rill__buf_append_bytes(&b, bytes, 0, 0), 0); /* empty: nothing */
    rill_bytes_unref(bytes);
    assert_int_equal(wrapped_frees, 0);
    struct iovec iov[2];
    assert_int_equal(rill__buf_iov(&b, iov, 2), 1);
    assert_ptr_equal(iov[0].iov_base, p + 1); /* the very bytes, not a copy */
    rill__buf_consume(&b, 3);
    assert_int_equal(wrapped_frees, 0);
    rill__buf_consume(&b, 1);
    assert_int_equal(wrapped_frees, 1);
    rill__buf_free(&b);
}

static void free_releases_references(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    wrapped_frees = 0;
    rill_bytes *bytes = rill_bytes_wrap(malloc(8), 8, count_free);
    rill__buf_append_bytes(&b, bytes, 0, 8);
    rill__buf_append_bytes(&b, bytes, 2, 3);
    rill_bytes_unref(bytes);
    rill__buf_free(&b);
    assert_int_equal(wrapped_frees, 1);
    assert_int_equal(b.len, 0);
    rill__buf_free(&b); /* a freed buffer is an empty one */
}

static void contig_many_segments(void **state)
{
    (void)state;
    rill__buf b;
    model m = {0};
    rill__buf_init(&b);
    rng_state = 99;
    for (int i = 0; i < 500; i++) /* small copies and slices: hundreds of segments */
        add_random(&b, &m, 1 + rnd(200), (uint64_t)i);
    size_t len = b.len;
    const size_t sizes[] = {1, 7, 300, 4096, 20000, 40000, len};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = RILL__MIN(sizes[i], len);
        const char *p = rill__buf_contig(&b, n);
        assert_non_null(p);
        assert_memory_equal(p, m.data, n);
        struct iovec iov[1];
        rill__buf_iov(&b, iov, 1);
        assert_true(iov[0].iov_len >= n); /* the first segment holds them now */
        check_equal(&b, &m);
    }
    assert_int_equal(iov_hash(&b), th_hash(TH_HASH_INIT, m.data, len));
    rill__buf_free(&b);
    free(m.data);
}

static void contig_referenced(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    wrapped_frees = 0;
    const char *parts[] = {"GET ", "/index", ".html", " HTTP/1.1\r\n"};
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(parts[i]);
        char *p = malloc(n);
        memcpy(p, parts[i], n);
        rill_bytes *bytes = rill_bytes_wrap(p, n, count_free);
        assert_int_equal(rill__buf_append_bytes(&b, bytes, 0, n), 0);
        rill_bytes_unref(bytes);
    }
    const char *line = rill__buf_contig(&b, 15);
    assert_non_null(line);
    assert_memory_equal(line, "GET /index.html", 15);
    assert_int_equal(wrapped_frees, 3); /* the three slices fully copied are released */
    char rest[16] = {0};
    assert_int_equal(b.len, 26);
    assert_int_equal(rill__buf_peek(&b, 0, rest, sizeof rest), 16);
    assert_memory_equal(rest, "GET /index.html HTTP/1.1\r\n", 16);
    assert_int_equal(rill__buf_find(&b, "\r\n", 2), 26);
    assert_ptr_equal(rill__buf_contig(&b, 0), rill__buf_contig(&b, 1));
    rill__buf_free(&b);
    assert_int_equal(wrapped_frees, 4);
}

/* ---- find ------------------------------------------------------------------------------ */

static void find_across_blocks(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    /* One append of 20001 bytes makes a block of exactly that size, so "\r" ends it and
     * "\n" starts the next. */
    char *big = malloc(20001);
    memset(big, 'x', 20000);
    big[20000] = '\r';
    assert_int_equal(rill__buf_append(&b, big, 20001), 0);
    assert_int_equal(rill__buf_find(&b, "\r\n", 2), RILL_ENOMATCH);
    assert_int_equal(rill__buf_append(&b, "\nnext", 5), 0);
    struct iovec iov[4];
    assert_int_equal(rill__buf_iov(&b, iov, 4), 2); /* the delimiter does straddle */
    assert_int_equal(rill__buf_find(&b, "\r\n", 2), 20002);
    assert_int_equal(rill__buf_find(&b, "\r\n", 2), 20002); /* asking again: same frame */
    rill__buf_consume(&b, 20002);
    assert_int_equal(rill__buf_find(&b, "\r\n", 2), RILL_ENOMATCH);
    rill__buf_free(&b);
    free(big);
}

static void find_across_many_segments(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    const char *text = "data--bou--boundary--tail";
    rill_bytes *bytes = rill_bytes_new(text, strlen(text));
    for (size_t i = 0; i < strlen(text); i++) /* one segment per byte */
        assert_int_equal(rill__buf_append_bytes(&b, bytes, i, 1), 0);
    rill_bytes_unref(bytes);
    assert_int_equal(rill__buf_find(&b, "--boundary--", 12), 21);
    rill__buf_find_reset(&b);
    assert_int_equal(rill__buf_find(&b, "--", 2), 6);
    rill__buf_free(&b);
}

static void find_partial_then_complete(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    const char *d = "END!";
    assert_int_equal(rill__buf_append(&b, "abcEN", 5), 0);
    assert_int_equal(rill__buf_find(&b, d, 4), RILL_ENOMATCH);
    assert_int_equal(rill__buf_append(&b, "D", 1), 0);
    assert_int_equal(rill__buf_find(&b, d, 4), RILL_ENOMATCH);
    assert_int_equal(rill__buf_append(&b, "!", 1), 0);
    assert_int_equal(rill__buf_find(&b, d, 4), 7);
    rill__buf_consume(&b, 7);
    /* A false start ("ENDx") and then the real one, arriving in a separate block. */
    assert_int_equal(rill__buf_append(&b, "xxENDxEND", 9), 0);
    assert_int_equal(rill__buf_find(&b, d, 4), RILL_ENOMATCH);
    rill_bytes *bang = rill_bytes_static("!yy", 3);
    assert_int_equal(rill__buf_append_bytes(&b, bang, 0, 3), 0);
    rill_bytes_unref(bang);
    assert_int_equal(rill__buf_find(&b, d, 4), 10);
    rill__buf_free(&b);
}

static void find_after_consume(void **state)
{
    (void)state;
    rill__buf b;
    rill__buf_init(&b);
    assert_int_equal(rill__buf_append(&b, "one\ntwo\nthr", 11), 0);
    assert_int_equal(rill__buf_find(&b, "\n", 1), 4);
    rill__buf_consume(&b, 4);
    assert_int_equal(rill__buf_find(&b, "\n", 1), 4);
    rill__buf_consume(&b, 4);
    assert_int_equal(rill__buf_find(&b, "\n", 1), RILL_ENOMATCH);
    assert_int_equal(b.scanned, 3);
    rill__buf_consume(&b, 1); /* a partial consume keeps the rest searched */
    assert_int_equal(b.scanned, 2);
    size_t before = b.touched;
    assert_int_equal(rill__buf_append(&b, "ee\n", 3), 0);
    assert_int_equal(rill__buf_find(&b, "\n", 1), 5);
    assert_int_equal(b.touched - before, 3); /* only the new bytes */
    assert_int_equal(rill__buf_find(&b, "", 0), RILL_EINVAL);
    rill__buf_free(&b);
}

static ssize_t naive_find(const char *p, size_t len, const char *d, size_t dlen)
{
    const char *hit = memmem(p, len, d, dlen);
    return hit ? (ssize_t)(hit - p + (ptrdiff_t)dlen) : RILL_ENOMATCH;
}

/* Random appends, consumes and searches with a few delimiters against memmem on the
 * model; the alphabet is tiny so partial matches are frequent. */
static void find_matches_model(void **state)
{
    (void)state;
    static const char *const delims[] = {"a", "ab", "aab", "abab", "baaab"};
    rill__buf b;
    model m = {0};
    rill__buf_init(&b);
    rng_state = 777;
    size_t di = 0;
    for (int i = 0; i < 20000; i++) {
        char chunk[40];
        size_t n = rnd(sizeof chunk);
        for (size_t k = 0; k < n; k++)
            chunk[k] = rnd(5) ? 'x' : (char)('a' + rnd(2));
        if (rnd(4) == 0) {
            rill_bytes *bytes = rill_bytes_new(chunk, n);
            assert_int_equal(rill__buf_append_bytes(&b, bytes, 0, n), 0);
            rill_bytes_unref(bytes);
        } else {
            assert_int_equal(rill__buf_append(&b, chunk, n), 0);
        }
        model_add(&m, chunk, n);
        if (rnd(50) == 0) {
            di = rnd(5);
            rill__buf_find_reset(&b);
        }
        const char *d = delims[di];
        size_t dlen = strlen(d);
        ssize_t got = rill__buf_find(&b, d, dlen);
        assert_int_equal(got, naive_find(m.data + m.head, m.tail - m.head, d, dlen));
        if (got > 0 && rnd(3)) {
            rill__buf_consume(&b, (size_t)got);
            m.head += (size_t)got;
        } else if (rnd(8) == 0) {
            size_t c = rnd(m.tail - m.head + 1);
            rill__buf_consume(&b, c);
            m.head += c;
        }
    }
    rill__buf_free(&b);
    free(m.data);
}

/* A 4 MiB line arriving one byte at a time, searched after every byte: a search that
 * restarted from the front would examine ~8 TB; the incremental one stays linear. */
static void find_long_line_linear(void **state)
{
    (void)state;
    static const char *const delims[] = {"\r\n", "\n", "\r\n\r\n"};
    for (int t = 0; t < 3; t++) {
        const size_t len = t == 0 ? 4u << 20 : 256u << 10; /* the others: kept short */
        const char *d = delims[t];
        size_t dlen = strlen(d);
        rill__buf b;
        rill__buf_init(&b);
        for (size_t i = 0; i < len; i++) {
            char c = (char)('a' + i % 26);
            assert_int_equal(rill__buf_append(&b, &c, 1), 0);
            if (rill__buf_find(&b, d, dlen) != RILL_ENOMATCH)
                fail_msg("false match at %zu", i);
            if (i % 4096 == 0 && b.touched > 2 * (i + 1) + 64) /* fail fast, not after hours */
                fail_msg("%zu bytes examined for a %zu-byte line", b.touched, i + 1);
        }
        assert_int_equal(rill__buf_append(&b, d, dlen), 0);
        assert_int_equal(rill__buf_find(&b, d, dlen), (ssize_t)(len + dlen));
        assert_true(b.touched <= 2 * (len + dlen) + 64);
        rill__buf_free(&b);
    }
}

/* ---- allocation behaviour ------------------------------------------------------------- */

static void steady_state_no_allocations(void **state)
{
    (void)state;
    th_alloc_install();
    rill__buf b;
    rill__buf_init(&b);
    char data[3000];
    th_fill(data, sizeof data, 5);
    rng_state = 4242;
    for (int warm = 0; warm < 2; warm++) { /* the spare grows to what the loop below needs */
        assert_int_equal(rill__buf_append(&b, data, 1000), 0);
        assert_int_equal(rill__buf_append(&b, data, sizeof data), 0);
        rill__buf_consume(&b, b.len);
    }
    size_t before = th_alloc_count();
    for (int i = 0; i < 100000; i++) {
        /* A read or two arrives, a frame is found, the buffer empties: an echo loop. */
        size_t n1 = 1 + rnd(sizeof data), n2 = rnd(sizeof data);
        assert_int_equal(rill__buf_append(&b, data, n1), 0);
        assert_int_equal(rill__buf_append(&b, data, n2), 0);
        rill__buf_find(&b, "\n", 1);
        assert_non_null(rill__buf_contig(&b, RILL__MIN(b.len, 100)));
        rill__buf_consume(&b, rnd(b.len + 1));
        rill__buf_consume(&b, b.len);
    }
    assert_int_equal(th_alloc_count(), before);
    rill__buf_free(&b);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

/* A buffer that only ever takes short messages keeps a small block, not a 16 KiB one (an
 * idle connection that echoed one byte on the uring backend kept 16 KiB: 4.6 KB of RSS
 * per connection), and still allocates nothing per message once it has it. */
static void short_messages_keep_a_small_block(void **state)
{
    (void)state;
    th_alloc_install();
    rill__buf b;
    rill__buf_init(&b);
    assert_int_equal(rill__buf_append(&b, "x", 1), 0);
    rill__buf_consume(&b, 1);
    assert_int_equal(th_alloc_count(), 1);
    assert_true(th_alloc_largest() <= 256);
    size_t before = th_alloc_count();
    char msg[64];
    th_fill(msg, sizeof msg, 9);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(rill__buf_append(&b, msg, sizeof msg), 0);
        rill__buf_consume(&b, b.len);
    }
    assert_int_equal(th_alloc_count(), before);
    /* a bigger message grows the spare once, and it stays */
    char big[3000];
    th_fill(big, sizeof big, 3);
    assert_int_equal(rill__buf_append(&b, big, sizeof big), 0);
    rill__buf_consume(&b, b.len);
    before = th_alloc_count();
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(rill__buf_append(&b, i % 2 ? big : msg, i % 2 ? sizeof big : sizeof msg), 0);
        rill__buf_consume(&b, b.len);
    }
    assert_int_equal(th_alloc_count(), before);
    rill__buf_free(&b);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

static void enomem_leaves_buffer_unchanged(void **state)
{
    (void)state;
    th_alloc_install();
    rill__buf b;
    model m = {0};
    rill__buf_init(&b);
    rill_bytes *bytes = rill_bytes_new("0123456789", 10);
    char *big = malloc(100000);
    th_fill(big, 100000, 3);
    assert_int_equal(rill__buf_append(&b, big, 5000), 0);
    model_add(&m, big, 5000);
    assert_int_equal(rill__buf_append_bytes(&b, bytes, 0, 10), 0);
    model_add(&m, "0123456789", 10);
    assert_int_equal(rill__buf_append(&b, big, 70000), 0);
    model_add(&m, big, 70000);
    uint64_t h = iov_hash(&b);

    th_alloc_fail_at(1);
    assert_int_equal(rill__buf_append(&b, big, 100000), RILL_ENOMEM);
    assert_int_equal(rill__buf_append_bytes(&b, bytes, 2, 5), RILL_ENOMEM);
    assert_null(rill__buf_contig(&b, 60000)); /* spans a reference: needs a new block */
    assert_true(th_alloc_failed());
    assert_int_equal(iov_hash(&b), h);
    check_equal(&b, &m);
    th_alloc_fail_at(0);

    assert_non_null(rill__buf_contig(&b, 60000)); /* and works once memory is back */
    check_equal(&b, &m);
    rill__buf_free(&b);
    rill_bytes_unref(bytes);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
    free(big);
    free(m.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_random),
        cmocka_unit_test(iov_respects_max),
        cmocka_unit_test(append_bytes_references),
        cmocka_unit_test(free_releases_references),
        cmocka_unit_test(contig_many_segments),
        cmocka_unit_test(contig_referenced),
        cmocka_unit_test(find_across_blocks),
        cmocka_unit_test(find_across_many_segments),
        cmocka_unit_test(find_partial_then_complete),
        cmocka_unit_test(find_after_consume),
        cmocka_unit_test(find_matches_model),
        cmocka_unit_test(find_long_line_linear),
        cmocka_unit_test(steady_state_no_allocations),
        cmocka_unit_test(short_messages_keep_a_small_block),
        cmocka_unit_test(enomem_leaves_buffer_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
