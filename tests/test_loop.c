/* tests/test_loop.c - loop creation, run modes, stop, deferred calls and cross-thread posts. */
#include "harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static void test_new_free_backends(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    assert_int_equal(rill_loop_run(loop, RILL_RUN_DEFAULT), 0); /* nothing active: returns */
    assert_false(rill_loop_is_running(loop));
    assert_int_equal(rill_loop_free(loop), 0);
    assert_int_equal(rill_loop_free(NULL), RILL_EINVAL);

    errno = 0;
    assert_null(rill_loop_new(&(rill_loop_opts){.backend = "nosuch"}));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(rill_loop_new(&(rill_loop_opts){.backend = "kqueue"}));
    assert_int_equal(errno, ENOSYS);
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "poll" : "epoll";
        loop = rill_loop_new(&(rill_loop_opts){.backend = name});
        assert_non_null(loop);
        assert_string_equal(rill_loop_backend(loop), name);
        assert_int_equal(rill_loop_free(loop), 0);
    }
    assert_int_equal(rill_loop_run(NULL, RILL_RUN_ONCE), RILL_EINVAL);
}

static void test_default_loop(void **state)
{
    (void)state;
    rill_loop *a = rill_loop_default();
    assert_non_null(a);
    assert_ptr_equal(a, rill_loop_default());
    assert_int_equal(rill_loop_free(a), 0);
}

typedef struct {
    int order[16];
    int n;
} rec;

static rec g_rec;
static void rec_fn(void *arg)
{
    g_rec.order[g_rec.n++] = (int)(intptr_t)arg;
}

static void test_defer_priority_order(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    g_rec.n = 0;
    assert_int_equal(rill_loop_defer(loop, 5, rec_fn, (void *)50), 0);
    assert_int_equal(rill_loop_defer(loop, 1, rec_fn, (void *)10), 0);
    assert_int_equal(rill_loop_defer(loop, 3, rec_fn, (void *)30), 0);
    assert_int_equal(rill_loop_defer(loop, 1, rec_fn, (void *)11), 0);
    assert_int_equal(rill_loop_defer(loop, -2, rec_fn, (void *)-20), 0);
    assert_int_equal(g_rec.n, 0); /* never inside the call */
    assert_int_equal(rill_loop_run(loop, RILL_RUN_NOWAIT), 0);
    assert_int_equal(g_rec.n, 5);
    int want[] = {-20, 10, 11, 30, 50};
    for (int i = 0; i < 5; i++)
        assert_int_equal(g_rec.order[i], want[i]);
    assert_int_equal(rill_loop_defer(NULL, 0, rec_fn, NULL), RILL_EINVAL);
    assert_int_equal(rill_loop_defer(loop, 0, NULL, NULL), RILL_EINVAL);
    th_loop_free(loop);
}

static rill_loop *g_loop;
static void defer_again(void *arg)
{
    int *count = arg;
    if (++*count < 3)
        assert_int_equal(rill_loop_defer(g_loop, 0, defer_again, arg), 0);
}

static void test_defer_from_defer_runs_next_iteration(void **state)
{
    (void)state;
    int count = 0;
    g_loop = th_loop_new();
    assert_int_equal(rill_loop_defer(g_loop, 0, defer_again, &count), 0);
    rill_loop_run(g_loop, RILL_RUN_NOWAIT);
    assert_int_equal(count, 1);
    rill_loop_run(g_loop, RILL_RUN_NOWAIT);
    assert_int_equal(count, 2);
    rill_loop_run(g_loop, RILL_RUN_DEFAULT); /* pending defers keep it running */
    assert_int_equal(count, 3);
    th_loop_free(g_loop);
}

typedef struct {
    rill_loop *loop;
    int ticks;
    bool running_inside;
    int nested_rc;
} stop_ctx;

static void stop_tick(rill_timer *t, void *arg)
{
    stop_ctx *c = arg;
    c->running_inside = rill_loop_is_running(c->loop);
    c->nested_rc = rill_loop_run(c->loop, RILL_RUN_NOWAIT);
    if (++c->ticks == 3) {
        rill_loop_stop(c->loop);
        rill_timer_stop(t);
    }
}

static void test_stop_and_busy(void **state)
{
    (void)state;
    stop_ctx c = {th_loop_new(), 0, false, 0};
    rill_timer *t = rill_timer_start(c.loop, 1, 1, stop_tick, &c);
    assert_non_null(t);
    assert_int_equal(rill_loop_free(c.loop), RILL_EBUSY); /* an active timer */
    assert_int_equal(rill_loop_run(c.loop, RILL_RUN_DEFAULT), 0);
    assert_int_equal(c.ticks, 3);
    assert_true(c.running_inside);
    assert_int_equal(c.nested_rc, RILL_EBUSY);
    assert_int_equal(rill_loop_run(c.loop, RILL_RUN_DEFAULT), 0);
    assert_int_equal(c.ticks, 3);
    th_loop_free(c.loop);
}

static void never(rill_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    fail_msg("timer fired");
}

static void test_nowait_does_not_wait(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_timer *t = rill_timer_start(loop, 60000, 0, never, NULL);
    uint64_t t0 = th_now_ms();
    assert_int_equal(rill_loop_run(loop, RILL_RUN_NOWAIT), 0);
    assert_true(th_now_ms() - t0 < 10000); /* bounded: it would be 60 s if it waited */
    rill_timer_stop(t);
    th_loop_free(loop);
}

static void now_check(rill_timer *t, void *arg)
{
    (void)t;
    rill_loop *loop = arg;
    uint64_t a = rill_loop_now(loop);
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    assert_int_equal(rill_loop_now(loop), a); /* cached for the iteration */
    rill_loop_update_time(loop);
    assert_true(rill_loop_now(loop) >= a + 20);
}

static void test_now_is_cached(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    assert_non_null(rill_timer_start(loop, 0, 0, now_check, loop));
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    th_loop_free(loop);
}

#define POSTERS 4
#define POSTS 100000

typedef struct {
    rill_loop *loop;
    pthread_t loop_thread;
    long count;
    long last_seen[POSTERS];
    bool wrong_thread, out_of_order;
} post_ctx;

typedef struct {
    post_ctx *ctx;
    int id;
} poster;

static post_ctx g_post;

static void post_fn(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    int id = (int)(v >> 32);
    long seq = (long)(v & 0xffffffffu);
    if (!pthread_equal(pthread_self(), g_post.loop_thread))
        g_post.wrong_thread = true;
    if (seq != g_post.last_seen[id] + 1)
        g_post.out_of_order = true;
    g_post.last_seen[id] = seq;
    g_post.count++;
}

static void *poster_main(void *arg)
{
    poster *p = arg;
    for (long i = 0; i < POSTS; i++) {
        uintptr_t v = ((uintptr_t)p->id << 32) | (uintptr_t)i;
        while (rill_loop_post(p->ctx->loop, post_fn, (void *)v) != 0)
            ;
    }
    return NULL;
}

static void test_post_from_threads(void **state)
{
    (void)state;
    g_post = (post_ctx){.loop = th_loop_new(), .loop_thread = pthread_self()};
    for (int i = 0; i < POSTERS; i++)
        g_post.last_seen[i] = -1;
    pthread_t th[POSTERS];
    poster ps[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        ps[i] = (poster){&g_post, i};
        assert_int_equal(pthread_create(&th[i], NULL, poster_main, &ps[i]), 0);
    }
    TH_RUN_UNTIL(g_post.loop, g_post.count == (long)POSTERS * POSTS, 120000);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    rill_loop_run(g_post.loop, RILL_RUN_NOWAIT);
    assert_int_equal(g_post.count, (long)POSTERS * POSTS); /* exactly once each */
    assert_false(g_post.wrong_thread);
    assert_false(g_post.out_of_order);
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(g_post.last_seen[i], POSTS - 1);
    assert_int_equal(rill_loop_post(NULL, post_fn, NULL), RILL_EINVAL);
    th_loop_free(g_post.loop);
}

static void test_post_keeps_default_running(void **state)
{
    (void)state;
    g_post = (post_ctx){.loop = th_loop_new(), .loop_thread = pthread_self()};
    g_post.last_seen[0] = -1;
    assert_int_equal(rill_loop_post(g_post.loop, post_fn, (void *)0), 0);
    assert_int_equal(rill_loop_run(g_post.loop, RILL_RUN_DEFAULT), 0);
    assert_int_equal(g_post.count, 1);
    th_loop_free(g_post.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free_backends),
        cmocka_unit_test(test_default_loop),
        cmocka_unit_test(test_defer_priority_order),
        cmocka_unit_test(test_defer_from_defer_runs_next_iteration),
        cmocka_unit_test(test_stop_and_busy),
        cmocka_unit_test(test_nowait_does_not_wait),
        cmocka_unit_test(test_now_is_cached),
        cmocka_unit_test(test_post_from_threads),
        cmocka_unit_test(test_post_keeps_default_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
