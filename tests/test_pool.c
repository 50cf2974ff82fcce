/* tests/test_pool.c - the thread pool: work off the loop thread, done on it. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct {
    pthread_t loop_thread;
    atomic_int worked;
    int done;
    bool work_on_loop_thread, done_off_loop_thread;
} pool_ctx;

static void work_fn(void *arg)
{
    pool_ctx *c = arg;
    if (pthread_equal(pthread_self(), c->loop_thread))
        c->work_on_loop_thread = true;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&c->worked, 1);
}

static void done_fn(void *arg, int status)
{
    pool_ctx *c = arg;
    assert_int_equal(status, 0);
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->done_off_loop_thread = true;
    c->done++;
}

static void test_work_then_done_on_loop(void **state)
{
    (void)state;
    rill_loop *loop = rill_loop_new(&(rill_loop_opts){.threads = 3});
    assert_non_null(loop);
    pool_ctx c = {.loop_thread = pthread_self()};
    for (int i = 0; i < 200; i++)
        assert_int_equal(rill_loop_work(loop, work_fn, done_fn, &c), 0);
    assert_int_equal(rill_loop_free(loop), RILL_EBUSY); /* work pending */
    assert_int_equal(rill_loop_run(loop, RILL_RUN_DEFAULT), 0); /* stays alive for it */
    assert_int_equal(c.done, 200);
    assert_int_equal(atomic_load(&c.worked), 200);
    assert_false(c.work_on_loop_thread);
    assert_false(c.done_off_loop_thread);
    assert_int_equal(rill_loop_free(loop), 0); /* joins the threads */
}

static void test_bad_input(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    assert_int_equal(rill_loop_work(loop, NULL, done_fn, NULL), RILL_EINVAL);
    assert_int_equal(rill_loop_work(NULL, work_fn, done_fn, NULL), RILL_EINVAL);
    th_loop_free(loop); /* no pool was created */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_work_then_done_on_loop),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
