/* tests/test_alloc.c - fault injection: every public constructor, with the N-th
 * allocation failing for every N, returns NULL / RILL_ENOMEM cleanly and leaks nothing. */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

static void noop(void *arg)
{
    (void)arg;
}

static void noop_timer(rill_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

static void noop_handler(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s, (void)ev, (void)arg;
}

static void noop_frame(rill_stream *s, int st, const char *d, size_t n, void *arg)
{
    (void)s, (void)st, (void)d, (void)n, (void)arg;
}

/* One scenario: build objects with the library, free them all; returns false when an
 * allocation failure made it stop early (after cleaning up). */
static bool scenario(void)
{
    rill_loop *loop = rill_loop_new(NULL);
    if (!loop) {
        assert_int_equal(errno, ENOMEM);
        return false;
    }
    bool ok = true;
    rill_timer *t = rill_timer_start(loop, 1000, 0, noop_timer, NULL);
    if (!t) {
        assert_int_equal(errno, ENOMEM);
        ok = false;
    }
    int rc = rill_loop_defer(loop, 0, noop, NULL);
    if (rc < 0) {
        assert_int_equal(rc, RILL_ENOMEM);
        ok = false;
    }
    rc = rill_loop_post(loop, noop, NULL);
    if (rc < 0) {
        assert_int_equal(rc, RILL_ENOMEM);
        ok = false;
    }
    rill_bytes *b = rill_bytes_new("abc", 3);
    if (!b) {
        assert_int_equal(errno, ENOMEM);
        ok = false;
    }
    rill_stream *p[2] = {NULL, NULL};
    rc = rill_stream_pair(loop, p, 0);
    if (rc < 0) {
        assert_int_equal(rc, RILL_ENOMEM);
        ok = false;
    } else {
        if (!rill_stream_on(p[0], RILL_EV_READ, noop_handler, NULL)) {
            assert_int_equal(errno, ENOMEM);
            ok = false;
        }
        rc = rill_stream_read_until(p[1], "\n", 1, noop_frame, NULL);
        if (rc < 0) {
            assert_int_equal(rc, RILL_ENOMEM);
            ok = false;
        }
        rc = rill_stream_write(p[0], "x\n", 2, (rill_done_fn *)NULL, NULL);
        assert_true(rc >= 0 || rc == RILL_ENOMEM);
        rill_stream_close(p[0]);
        rill_stream_close(p[1]);
    }
    rill_regex *re = rill_regex_new("a+b", NULL, NULL);
    if (!re)
        ok = false;
    rill_regex_free(re);
    rill_bytes_unref(b);
    rill_timer_stop(t);
    for (int i = 0; i < 10 && rill_loop_free(loop) == RILL_EBUSY; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    return ok;
}

static void test_every_allocation_can_fail(void **state)
{
    (void)state;
    th_alloc_install();
    assert_true(scenario()); /* with no failure it all works */
    size_t total = th_alloc_count();
    assert_true(total > 5);
    for (size_t n = 1; n <= total; n++) {
        th_alloc_fail_at(n);
        scenario();
        th_alloc_fail_at(0);
        if (th_alloc_live() != 0)
            fail_msg("allocation %zu failing leaked %zu blocks", n, th_alloc_live());
    }
    th_alloc_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_can_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
