/* tests/test_bufwrap.c - rill_bufwrap: seekable when the source fits, streaming when it
 * does not or when it would block, peek without advancing, seek rules, source errors. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* A scripted source: serves data in reads of at most `step` bytes; at offset `stop_at`
 * it answers `stop_rc` once (RILL_EAGAIN, an error) before going on. */
typedef struct {
    const char *data;
    size_t len, pos, step;
    size_t stop_at;
    int stop_rc;
    int reads;
} source;

static ssize_t src_read(void *arg, void *buf, size_t len)
{
    source *s = arg;
    s->reads++;
    if (s->stop_rc && s->pos == s->stop_at) {
        int rc = s->stop_rc;
        s->stop_rc = 0;
        return rc;
    }
    size_t n = MIN(len, s->len - s->pos);
    if (s->step)
        n = MIN(n, s->step);
    if (s->stop_rc && s->pos < s->stop_at)
        n = MIN(n, s->stop_at - s->pos);
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return (ssize_t)n;
}

static source src_of(const char *data, size_t len)
{
    return (source){.data = data, .len = len};
}

/* Reads w to the end (or an error) into out; returns the count or the error. */
static ssize_t drain(rill_bufwrap *w, char *out, size_t cap, size_t step)
{
    size_t got = 0;
    ssize_t n;
    while ((n = rill_bufwrap_read(w, out + got, MIN(step, cap - got))) > 0)
        got += (size_t)n;
    return n < 0 ? n : (ssize_t)got;
}

static void small_source_is_seekable(void **state)
{
    (void)state;
    source s = src_of("hello, world", 12);
    s.step = 5; /* short reads: creation keeps reading */
    rill_bufwrap *w = rill_bufwrap_new(src_read, &s, 64);
    assert_non_null(w);
    assert_true(rill_bufwrap_seekable(w));
    assert_int_equal(rill_bufwrap_length(w), 12);
    int reads = s.reads;

    const char *peek;
    assert_int_equal(rill_bufwrap_peek(w, 5, &peek), 5);
    assert_memory_equal(peek, "hello", 5);
    assert_int_equal(rill_bufwrap_peek(w, 100, &peek), 12); /* peek does not advance */
    char out[32];
    assert_int_equal(rill_bufwrap_read(w, out, 7), 7);
    assert_memory_equal(out, "hello, ", 7);
    assert_int_equal(rill_bufwrap_peek(w, 100, &peek), 5);
    assert_memory_equal(peek, "world", 5);
    assert_int_equal(rill_bufwrap_read(w, out, 32), 5);
    assert_int_equal(rill_bufwrap_read(w, out, 32), 0);
    assert_int_equal(rill_bufwrap_peek(w, 10, &peek), 0);
    assert_int_equal(s.reads, reads); /* everything came from the buffer */

    assert_int_equal(rill_bufwrap_seek(w, 0, SEEK_SET), 0);
    assert_int_equal(rill_bufwrap_read(w, out, 5), 5);
    assert_int_equal(rill_bufwrap_seek(w, 2, SEEK_CUR), 7);
    assert_int_equal(rill_bufwrap_read(w, out, 32), 5);
    assert_memory_equal(out, "world", 5);
    assert_int_equal(rill_bufwrap_seek(w, -5, SEEK_END), 7);
    assert_int_equal(rill_bufwrap_seek(w, 0, SEEK_END), 12);
    assert_int_equal(rill_bufwrap_seek(w, 13, SEEK_SET), RILL_EINVAL);
    assert_int_equal(rill_bufwrap_seek(w, -1, SEEK_SET), RILL_EINVAL);
    assert_int_equal(rill_bufwrap_seek(w, -13, SEEK_END), RILL_EINVAL);
    assert_int_equal(rill_bufwrap_seek(w, INT64_MAX, SEEK_CUR), RILL_EINVAL);
    assert_int_equal(rill_bufwrap_seek(w, INT64_MIN, SEEK_CUR), RILL_EINVAL);
    assert_int_equal(rill_bufwrap_seek(w, 0, 42), RILL_EINVAL);
    assert_int_equal(rill_bufwrap_seek(w, 0, SEEK_CUR), 12); /* failures left it */
    rill_bufwrap_free(w);
    rill_bufwrap_free(NULL);
}

static void exact_fit_and_default_size(void **state)
{
    (void)state;
    char data[8193];
    th_fill(data, sizeof data, 5);
    source s = src_of(data, 16);
    rill_bufwrap *w = rill_bufwrap_new(src_read, &s, 16);
    assert_true(rill_bufwrap_seekable(w)); /* exactly buffsize: known to end there */
    assert_int_equal(rill_bufwrap_length(w), 16);
    rill_bufwrap_free(w);

    s = src_of(data, 8192);
    w = rill_bufwrap_new(src_read, &s, 0); /* 0: 8192 */
    assert_true(rill_bufwrap_seekable(w));
    assert_int_equal(rill_bufwrap_length(w), 8192);
    rill_bufwrap_free(w);

    s = src_of(data, 8193);
    w = rill_bufwrap_new(src_read, &s, 0);
    assert_false(rill_bufwrap_seekable(w));
    assert_int_equal(rill_bufwrap_length(w), -1);
    char out[8193];
    assert_int_equal(drain(w, out, sizeof out, 4096), 8193);
    assert_memory_equal(out, data, 8193);
    rill_bufwrap_free(w);

    source empty = src_of("", 0);
    w = rill_bufwrap_new(src_read, &empty, 16);
    assert_true(rill_bufwrap_seekable(w));
    assert_int_equal(rill_bufwrap_length(w), 0);
    assert_int_equal(rill_bufwrap_read(w, out, 8), 0);
    rill_bufwrap_free(w);
}

static void large_source_streams(void **state)
{
    (void)state;
    size_t len = 100000;
    char *data = malloc(len), *out = malloc(len);
    th_fill(data, len, 11);
    source s = src_of(data, len);
    s.step = 3000;
    rill_bufwrap *w = rill_bufwrap_new(src_read, &s, 1000);
    assert_non_null(w);
    assert_false(rill_bufwrap_seekable(w));
    assert_int_equal(rill_bufwrap_length(w), -1);
    assert_int_equal(rill_bufwrap_seek(w, 0, SEEK_SET), RILL_ESPIPE);
    assert_int_equal(rill_bufwrap_seek(w, 0, 42), RILL_ESPIPE);
    assert_true(s.pos <= 1001); /* only the buffer was read at creation */

    const char *peek;
    assert_int_equal(rill_bufwrap_peek(w, 10, &peek), 10);
    assert_memory_equal(peek, data, 10);
    assert_int_equal(rill_bufwrap_read(w, out, 600), 600);
    assert_true(rill_bufwrap_peek(w, 1000, &peek) > 0); /* the buffer's rest */
    assert_memory_equal(peek, data + 600, 10);
    ssize_t n = drain(w, out + 600, len - 600, 7777);
    assert_int_equal(n, len - 600);
    assert_true(th_hash(TH_HASH_INIT, out, len) == th_hash(TH_HASH_INIT, data, len));
    assert_int_equal(rill_bufwrap_peek(w, 10, &peek), 0); /* past the buffer */
    assert_int_equal(rill_bufwrap_read(w, out, 10), 0);
    rill_bufwrap_free(w);
    free(data);
    free(out);
}

static void would_block_is_not_seekable(void **state)
{
    (void)state;
    source s = src_of("abcdefghij", 10);
    s.stop_at = 4;
    s.stop_rc = RILL_EAGAIN;
    rill_bufwrap *w = rill_bufwrap_new(src_read, &s, 64);
    assert_false(rill_bufwrap_seekable(w)); /* all of it would have fit */
    assert_int_equal(rill_bufwrap_length(w), -1);
    assert_int_equal(rill_bufwrap_seek(w, 0, SEEK_SET), RILL_ESPIPE);
    const char *peek;
    assert_int_equal(rill_bufwrap_peek(w, 64, &peek), 4);
    char out[16];
    assert_int_equal(rill_bufwrap_read(w, out, 16), 4);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(rill_bufwrap_read(w, out, 16), 6); /* now from the source */
    assert_memory_equal(out, "efghij", 6);
    assert_int_equal(rill_bufwrap_read(w, out, 16), 0);
    rill_bufwrap_free(w);

    /* Would-block later, after the buffer: passed through as it is. */
    s = src_of("abcdefghij", 10);
    s.stop_at = 8;
    s.stop_rc = RILL_EAGAIN;
    w = rill_bufwrap_new(src_read, &s, 4);
    assert_int_equal(drain(w, out, 16, 16), RILL_EAGAIN);
    assert_int_equal(drain(w, out, 16, 16), 2);
    rill_bufwrap_free(w);
}

static void source_error_comes_in_order(void **state)
{
    (void)state;
    source s = src_of("abcdef", 6);
    s.stop_at = 3;
    s.stop_rc = RILL_EIO;
    rill_bufwrap *w = rill_bufwrap_new(src_read, &s, 64);
    assert_non_null(w);
    assert_false(rill_bufwrap_seekable(w));
    char out[8];
    assert_int_equal(rill_bufwrap_read(w, out, 8), 3); /* the bytes before the error */
    assert_int_equal(rill_bufwrap_read(w, out, 8), RILL_EIO);
    assert_int_equal(rill_bufwrap_read(w, out, 8), 3); /* later reads ask the source */
    assert_memory_equal(out, "def", 3);
    assert_int_equal(rill_bufwrap_read(w, out, 0), 0);
    rill_bufwrap_free(w);
}

/* The wrapper over a rill_pipe: a thread's small answer becomes seekable. */
static ssize_t pipe_src(void *p, void *buf, size_t len)
{
    return rill_pipe_read(p, buf, len);
}

static void over_a_pipe(void **state)
{
    (void)state;
    rill_pipe *p = rill_pipe_new(&(rill_pipe_opts){.rnonblock = true, .timeout_ms = 10000});
    assert_int_equal(rill_pipe_write(p, "{\"ok\":1}", 8), 8);
    rill_bufwrap *w = rill_bufwrap_new(pipe_src, p, 64);
    assert_false(rill_bufwrap_seekable(w)); /* the pipe said RILL_EAGAIN: no EOF yet */
    rill_bufwrap_free(w);
    assert_int_equal(rill_pipe_write(p, "{\"ok\":2}", 8), 8);
    assert_int_equal(rill_pipe_write_eof(p), 0);
    w = rill_bufwrap_new(pipe_src, p, 64);
    assert_true(rill_bufwrap_seekable(w));
    assert_int_equal(rill_bufwrap_length(w), 8);
    const char *peek;
    assert_int_equal(rill_bufwrap_peek(w, 1, &peek), 1);
    assert_int_equal(peek[0], '{');
    rill_bufwrap_free(w);
    rill_pipe_free(p);
}

static void bad_arguments_and_allocation(void **state)
{
    (void)state;
    errno = 0;
    assert_null(rill_bufwrap_new(NULL, NULL, 16));
    assert_int_equal(errno, EINVAL);
    source s = src_of("abc", 3);
    th_alloc_install();
    for (size_t at = 1; at <= 2; at++) {
        th_alloc_fail_at(at);
        errno = 0;
        assert_null(rill_bufwrap_new(src_read, &s, 16));
        assert_int_equal(errno, ENOMEM);
        assert_int_equal(th_alloc_live(), 0);
    }
    th_alloc_fail_at(3); /* only the shrink fails: harmless */
    rill_bufwrap *w = rill_bufwrap_new(src_read, &s, 1000);
    assert_non_null(w);
    assert_int_equal(rill_bufwrap_length(w), 3);
    rill_bufwrap_free(w);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_source_is_seekable),
        cmocka_unit_test(exact_fit_and_default_size),
        cmocka_unit_test(large_source_streams),
        cmocka_unit_test(would_block_is_not_seekable),
        cmocka_unit_test(source_error_comes_in_order),
        cmocka_unit_test(over_a_pipe),
        cmocka_unit_test(bad_arguments_and_allocation),
    };
    return cmocka_run_group_tests_name("bufwrap", tests, NULL, NULL);
}
