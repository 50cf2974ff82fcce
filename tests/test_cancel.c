/* tests/test_cancel.c - cancellation tokens: triggering from another thread while the loop
 * runs, completions on the loop thread, cancels that come too late, and the race between
 * an operation finishing and a trigger (through the private watch API). */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "cancel.h"

typedef struct {
    int calls, status;
    pthread_t thread;
} done_rec;

static void on_done(rill_stream *s, int status, void *arg)
{
    done_rec *r = arg;
    (void)s;
    r->calls++;
    r->status = status;
    r->thread = pthread_self();
}

static void test_basics(void **state)
{
    (void)state;
    rill_cancel *c = rill_cancel_new();
    assert_non_null(c);
    assert_false(rill_cancel_is_triggered(c));
    assert_false(rill_cancel_is_triggered(NULL));
    rill_cancel_trigger(c);
    assert_true(rill_cancel_is_triggered(c));
    rill_cancel_trigger(c); /* twice changes nothing */
    assert_true(rill_cancel_is_triggered(c));
    rill_cancel_trigger(NULL);
    rill_cancel_free(c);
    rill_cancel_free(NULL);
}

/* A stream whose queue cannot drain: its peer never reads. */
static rill_stream *stuck_stream(rill_loop *loop, rill_stream **peer)
{
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    static char chunk[1 << 20];
    for (int i = 0; i < 4; i++)
        assert_true(rill_stream_write(p[0], chunk, sizeof chunk, NULL, NULL) >= 0);
    *peer = p[1];
    return p[0];
}

typedef struct {
    rill_cancel *c;
    atomic_bool go;
} trigger_arg;

static void *trigger_later(void *p)
{
    trigger_arg *t = p;
    while (!atomic_load(&t->go))
        usleep(1000);
    usleep(20000); /* the loop is inside its poll by now */
    rill_cancel_trigger(t->c);
    return NULL;
}

static void test_trigger_from_thread_while_running(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *peer, *s = stuck_stream(loop, &peer);
    trigger_arg t = {rill_cancel_new(), false};
    done_rec r = {0};
    rill_stream_ref(s); /* to look at it after it closed */
    assert_int_equal(rill_stream_close_async(s, 0, t.c, on_done, &r), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trigger_later, &t), 0);
    atomic_store(&t.go, true);
    TH_RUN_UNTIL(loop, r.calls == 1, 5000);
    pthread_join(th, NULL);
    assert_int_equal(r.status, RILL_ECANCELED);
    assert_true(pthread_equal(r.thread, pthread_self())); /* on the loop thread */
    assert_true(rill_stream_is_closed(s));
    rill_stream_unref(s);
    rill_cancel_free(t.c);
    rill_stream_close(peer);
    th_loop_free(loop);
    assert_int_equal(r.calls, 1);
}

static void test_trigger_after_finish_changes_nothing(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    rill_cancel *c = rill_cancel_new();
    done_rec r = {0};
    assert_int_equal(rill_stream_close_async(p[0], 0, c, on_done, &r), 0);
    TH_RUN_UNTIL(loop, r.calls == 1, 2000);
    assert_int_equal(r.status, 0);
    rill_cancel_trigger(c);
    for (int i = 0; i < 5; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    rill_cancel_free(c);
    rill_stream_close(p[1]);
    th_loop_free(loop);
}

static void test_already_triggered(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *peer, *s = stuck_stream(loop, &peer);
    rill_cancel *c = rill_cancel_new();
    rill_cancel_trigger(c);
    done_rec r = {0};
    rill_stream_ref(s);
    assert_int_equal(rill_stream_close_async(s, 0, c, on_done, &r), 0);
    assert_int_equal(r.calls, 0); /* never inside the call */
    TH_RUN_UNTIL(loop, r.calls == 1, 2000);
    assert_int_equal(r.status, RILL_ECANCELED);
    assert_true(rill_stream_is_closed(s));
    rill_stream_unref(s);
    rill_cancel_free(c);
    rill_stream_close(peer);
    th_loop_free(loop);
}

/* ---- the private watch API under a racing trigger ------------------------------------- */

#define NW 200

typedef struct {
    int calls[NW];
    bool unregistered[NW];
    rill__cancel_watch *w[NW];
} race;

static race *g_race;

static void watch_fn(void *arg)
{
    int i = (int)(intptr_t)arg;
    assert_false(g_race->unregistered[i]); /* never after unregister */
    g_race->calls[i]++;
}

static bool odd_ones_called(const race *rc)
{
    for (int i = 1; i < NW; i += 2)
        if (rc->calls[i] != 1)
            return false;
    return true;
}

static void *trigger_now(void *p)
{
    rill_cancel_trigger(p);
    return NULL;
}

static void test_unregister_races_trigger(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    race *rc = calloc(1, sizeof *rc);
    g_race = rc;
    for (int round = 0; round < 20; round++) {
        memset(rc, 0, sizeof *rc);
        rill_cancel *c = rill_cancel_new();
        for (int i = 0; i < NW; i++)
            assert_non_null(rc->w[i] =
                                rill__cancel_register(c, loop, watch_fn, (void *)(intptr_t)i));
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, trigger_now, c), 0);
        for (int i = 0; i < NW; i += 2) { /* the even ones finish while the trigger runs */
            rill__cancel_unregister(rc->w[i]);
            rc->unregistered[i] = true;
        }
        pthread_join(th, NULL);
        TH_RUN_UNTIL(loop, odd_ones_called(rc), 2000);
        for (int i = 0; i < NW; i++) {
            assert_true(rc->calls[i] <= 1);
            if (i % 2)
                rill__cancel_unregister(rc->w[i]); /* after its call: frees */
        }
        rill_cancel_free(c);
    }
    th_loop_free(loop);
    free(rc);
}

static void test_register_after_trigger_posts(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    race *rc = calloc(1, sizeof *rc);
    g_race = rc;
    rill_cancel *c = rill_cancel_new();
    rill_cancel_trigger(c);
    rc->w[0] = rill__cancel_register(c, loop, watch_fn, (void *)(intptr_t)0);
    rc->w[1] = rill__cancel_register(c, loop, watch_fn, (void *)(intptr_t)1);
    assert_non_null(rc->w[0]);
    assert_int_equal(rc->calls[0], 0); /* posted, not called inline */
    rill__cancel_unregister(rc->w[1]); /* its call is on the way: it must not run */
    rc->unregistered[1] = true;
    TH_RUN_UNTIL(loop, rc->calls[0] == 1, 2000);
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(rc->calls[1], 0);
    rill__cancel_unregister(rc->w[0]);
    assert_null(rill__cancel_register(NULL, loop, watch_fn, NULL));
    rill_cancel_free(c);
    th_loop_free(loop);
    free(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_trigger_from_thread_while_running),
        cmocka_unit_test(test_trigger_after_finish_changes_nothing),
        cmocka_unit_test(test_already_triggered),
        cmocka_unit_test(test_unregister_races_trigger),
        cmocka_unit_test(test_register_after_trigger_posts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
