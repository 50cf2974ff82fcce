/* tests/test_timeout.c - inactivity timeouts at scale: 10,000 streams, three timeout
 * values, half of them kept busy; each fires once, never early, within one tick. */
#include "harness.h"

#include <stdlib.h>

#define NS 10000
/* "Within one tick": a timeout fires in the first loop iteration whose clock has reached
 * its deadline, so it is never later than the longest gap between two iterations (which a
 * 1 ms timer measures; on a loaded machine that gap, not rill, sets the lateness). */
static uint64_t g_prev_tick, g_max_gap;

static void gap_tick(rill_timer *t, void *arg)
{
    (void)t;
    th_gap_note(rill_loop_now(arg), &g_prev_tick, &g_max_gap);
}

typedef struct {
    rill_stream *s;
    uint64_t last_activity, timeout, fired_at;
    int fired;
    bool closed_after;
    int closes;
} tstream;

static tstream *g_ts;
static int g_fired;

static void on_timeout(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    tstream *t = arg;
    t->fired++;
    t->fired_at = rill_loop_now(rill_stream_loop(s));
    gap_tick(NULL, rill_stream_loop(s));
    t->closed_after = rill_stream_is_closed(s); /* not yet: TIMEOUT comes first */
    g_fired++;
}

static void on_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    (void)ev;
    ((tstream *)arg)->closes++;
}

static void test_10k_streams_fire_on_time(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    g_ts = calloc(NS, sizeof *g_ts);
    g_fired = 0;
    for (int i = 0; i < NS; i += 2) {
        rill_stream *p[2];
        assert_int_equal(rill_stream_pair(loop, p, 0), 0);
        g_ts[i].s = p[0];
        g_ts[i + 1].s = p[1];
    }
    uint64_t now = rill_loop_now(loop);
    for (int i = 0; i < NS; i++) {
        g_ts[i].timeout = 300 + 100 * (uint64_t)(i % 3);
        g_ts[i].last_activity = now;
        rill_stream_set_timeout(g_ts[i].s, g_ts[i].timeout);
        assert_non_null(rill_stream_on(g_ts[i].s, RILL_EV_TIMEOUT, on_timeout, &g_ts[i]));
        assert_non_null(rill_stream_on(g_ts[i].s, RILL_EV_CLOSE, on_close, &g_ts[i]));
    }
    g_prev_tick = g_max_gap = 0;
    rill_timer *gaps = rill_timer_start(loop, 1, 1, gap_tick, loop);
    /* after 100 ms, activity on every even stream moves its deadline */
    rill_timer *tick = th_tick_start(loop);
    while (rill_loop_now(loop) < now + 100)
        rill_loop_run(loop, RILL_RUN_ONCE);
    rill_timer_stop(tick);
    th_alloc_install();
    for (int i = 0; i < NS; i += 2) {
        if (g_ts[i].fired || g_ts[i + 1].fired)
            continue; /* a starved machine may reach the first deadlines before this */
        assert_int_equal(rill_stream_write(g_ts[i].s, "x", 1, NULL, NULL), 0);
        g_ts[i].last_activity = rill_loop_now(loop);
    }
    if (!th_writes_deferred(loop)) /* (uring: a stream's first write makes its queue) */
        assert_int_equal(th_alloc_count(), 0); /* recording activity allocates nothing */
    th_alloc_reset();
    TH_RUN_UNTIL(loop, g_fired == NS, 20000);
    rill_timer_stop(gaps);
    rill_loop_run(loop, RILL_RUN_NOWAIT); /* the CLOSE events follow */
    for (int i = 0; i < NS; i++) {
        tstream *t = &g_ts[i];
        uint64_t due = t->last_activity + t->timeout;
        assert_int_equal(t->fired, 1);
        assert_true(t->fired_at >= due);
        if (t->fired_at - due > g_max_gap + 1)
            fail_msg("stream %d fired %llu ms late (longest iteration gap %llu ms)", i,
                     (unsigned long long)(t->fired_at - due), (unsigned long long)g_max_gap);
        assert_false(t->closed_after);
        assert_int_equal(t->closes, 1); /* TIMEOUT, then the stream closed */
    }
    th_loop_free(loop);
    free(g_ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_10k_streams_fire_on_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
