/* tests/test_timer.c - timers: order, one-shot and repeating, stopping inside callbacks,
 * deadlines a second or more away (the epoll backend keeps those in a timerfd, the uring
 * backend in a timeout entry held in the ring). */
#include "harness.h"
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NT 100000

typedef struct {
    rill_loop *loop;
    uint64_t due[NT];
    int start_order[NT];
    int fired[NT];
    int nfired;
} order_ctx;

static order_ctx *g_ord;

static void order_cb(rill_timer *t, void *arg)
{
    (void)t;
    g_ord->fired[g_ord->nfired++] = (int)(intptr_t)arg;
}

static void test_100k_timers_fire_in_order(void **state)
{
    (void)state;
    g_ord = calloc(1, sizeof *g_ord);
    g_ord->loop = th_loop_new();
    srand(42);
    uint64_t base = rill_loop_now(g_ord->loop);
    for (int i = 0; i < NT; i++) {
        uint64_t after = (uint64_t)(rand() % 64);
        g_ord->due[i] = base + after;
        assert_non_null(rill_timer_start(g_ord->loop, after, 0, order_cb, (void *)(intptr_t)i));
    }
    assert_int_equal(rill_loop_run(g_ord->loop, RILL_RUN_DEFAULT), 0);
    assert_int_equal(g_ord->nfired, NT);
    for (int k = 1; k < NT; k++) {
        int a = g_ord->fired[k - 1], b = g_ord->fired[k];
        assert_true(g_ord->due[a] <= g_ord->due[b]);
        if (g_ord->due[a] == g_ord->due[b])
            assert_true(a < b); /* equal deadlines: start order */
    }
    th_loop_free(g_ord->loop);
    free(g_ord);
}

typedef struct {
    rill_timer *other;
    int self_count, other_count, repeat_count;
} stop_ctx;

static void other_cb(rill_timer *t, void *arg)
{
    (void)t;
    ((stop_ctx *)arg)->other_count++;
}

static void stopper_cb(rill_timer *t, void *arg)
{
    stop_ctx *c = arg;
    c->self_count++;
    rill_timer_stop(c->other); /* another timer, due at the same time */
    rill_timer_stop(t);        /* itself, a repeating timer */
}

static void repeat_cb(rill_timer *t, void *arg)
{
    stop_ctx *c = arg;
    if (++c->repeat_count == 5)
        rill_timer_stop(t);
}

static void test_stop_inside_callbacks(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    stop_ctx c = {0};
    assert_non_null(rill_timer_start(loop, 5, 5, stopper_cb, &c));
    c.other = rill_timer_start(loop, 5, 0, other_cb, &c);
    assert_non_null(rill_timer_start(loop, 1, 2, repeat_cb, &c));
    assert_int_equal(rill_loop_run(loop, RILL_RUN_DEFAULT), 0);
    assert_int_equal(c.self_count, 1);
    assert_int_equal(c.other_count, 0);
    assert_int_equal(c.repeat_count, 5);
    th_loop_free(loop);
}

static void zero_repeat_cb(rill_timer *t, void *arg)
{
    int *n = arg;
    if (++*n == 1000)
        rill_timer_stop(t);
}

static void test_zero_repeat_does_not_starve(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    int n = 0;
    assert_non_null(rill_timer_start(loop, 0, 0 + 1, zero_repeat_cb, &n));
    rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_true(n <= 1); /* re-armed timers wait for the next pass */
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    assert_int_equal(n, 1000);
    th_loop_free(loop);
}

static void test_bad_input(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    errno = 0;
    assert_null(rill_timer_start(loop, 1, 0, NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(rill_timer_start(NULL, 1, 0, other_cb, NULL));
    rill_timer_stop(NULL);
    rill_timer *t = rill_timer_start(loop, 100000, 0, other_cb, NULL);
    assert_int_equal(rill_loop_free(loop), RILL_EBUSY);
    rill_timer_stop(t);
    th_loop_free(loop);
}

/* ---- far deadlines ---------------------------------------------------------------------
 * A thread posts `action` to the loop 150 ms in, while the loop sleeps towards a far
 * deadline, and posts `give_up` if the loop still runs after 6 s (so a deadline the loop
 * lost cannot hang the test). */
typedef struct far_ctx {
    rill_loop *loop;
    rill_timer *first, *second;
    uint64_t t0, posted_at, first_at, second_at; /* CLOCK_MONOTONIC ms, like the loop's */
    int first_fired, second_fired, gave_up;
    bool timerfd_armed; /* seen from the posted action: the epoll backend armed a timerfd */
    bool late; /* the action came after the timer it changes had fired (a stalled thread) */
    void (*action)(void *);
    atomic_bool done;
} far_ctx;

static void far_first_cb(rill_timer *t, void *arg)
{
    (void)t;
    far_ctx *c = arg;
    c->first = NULL; /* a one-shot timer is freed after its callback */
    c->first_fired++;
    c->first_at = th_now_ms();
    rill_timer_stop(c->second);
    c->second = NULL;
}

static void far_second_cb(rill_timer *t, void *arg)
{
    (void)t;
    far_ctx *c = arg;
    c->second = NULL;
    c->second_fired++;
    c->second_at = th_now_ms();
    rill_timer_stop(c->first);
    c->first = NULL;
}

static void far_give_up(void *arg)
{
    far_ctx *c = arg;
    c->gave_up = 1;
    rill_timer_stop(c->first);
    rill_timer_stop(c->second);
    c->first = c->second = NULL;
}

/* The posted call: runs the action, unless the timer it changes has fired already. */
static void far_posted(void *arg)
{
    far_ctx *c = arg;
    if (!c->first) {
        c->late = true;
        return;
    }
    c->posted_at = rill_loop_now(c->loop); /* what the action's new deadline counts from */
    c->action(c);
}

static void *far_thread(void *arg)
{
    far_ctx *c = arg;
    usleep(150 * 1000);
    rill_loop_post(c->loop, far_posted, c);
    for (int i = 0; i < 600 && !atomic_load(&c->done); i++)
        usleep(10 * 1000);
    if (!atomic_load(&c->done))
        rill_loop_post(c->loop, far_give_up, c);
    return NULL;
}

/* Whether this process has a timerfd whose it_value is non-zero (from /proc/self/fdinfo). */
static bool timerfd_armed(void)
{
    DIR *d = opendir("/proc/self/fd");
    bool armed = false;
    struct dirent *e;
    while (d && !armed && (e = readdir(d))) {
        char path[300], link[64] = "", line[128];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0 || !strstr(link, "timerfd"))
            continue;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "it_value:", 9) == 0)
                armed = !strstr(line, "(0, 0)");
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return armed;
}

static void far_run(far_ctx *c)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, far_thread, c), 0);
    rill_loop_run(c->loop, RILL_RUN_DEFAULT); /* ends when both timers are gone */
    atomic_store(&c->done, true);
    pthread_join(th, NULL);
    rill_loop_run(c->loop, RILL_RUN_NOWAIT); /* a give_up posted just before done */
    assert_int_equal(c->gave_up, 0);
}

/* A loop with one timer `first_ms` away, run while the thread posts `action`.  The
 * returned context says what happened; late: the thread stalled until the timer the action
 * changes had fired, so there is nothing to check. */
static far_ctx *far_start(const char *name, void (*action)(void *), uint64_t first_ms)
{
    far_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->loop = th_loop_new();
    c->action = action;
    c->t0 = th_now_ms();
    c->first = rill_timer_start(c->loop, first_ms, 0, far_first_cb, c);
    assert_non_null(c->first);
    far_run(c);
    if (c->late)
        print_message("%s: the post came late; not checked\n", name);
    return c;
}

static void far_free(far_ctx *c)
{
    th_loop_free(c->loop);
    free(c);
}

/* From the post: a deadline earlier than the one the loop sleeps towards. */
static void far_bring_forward(void *arg)
{
    far_ctx *c = arg;
    c->timerfd_armed = timerfd_armed();
    c->second = rill_timer_start(c->loop, 1100, 0, far_second_cb, c);
    assert_non_null(c->second);
}

static void test_far_deadline_brought_forward(void **state)
{
    (void)state;
    far_ctx *c = far_start("far_deadline_brought_forward", far_bring_forward, 4000);
    if (!c->late) {
        /* the later timer never fired: the new, earlier deadline woke the loop */
        assert_int_equal(c->second_fired, 1);
        assert_int_equal(c->first_fired, 0);
        assert_true(c->second_at >= c->posted_at + 1100);
        assert_true(c->second_at < c->t0 + 4000);
        if (strcmp(rill_loop_backend(c->loop), "epoll") == 0)
            assert_true(c->timerfd_armed); /* it slept on the timerfd, not a timeout */
    }
    far_free(c);
}

/* From the post: the deadline the loop sleeps towards moves later (as an inactivity
 * timeout does on activity), so the timerfd (or the ring's timeout entry) fires early and
 * the loop must sleep again. */
static void far_push_back(void *arg)
{
    far_ctx *c = arg;
    rill_timer_stop(c->first);
    c->first = rill_timer_start(c->loop, 3000, 0, far_first_cb, c);
    assert_non_null(c->first);
}

static void test_far_deadline_pushed_back(void **state)
{
    (void)state;
    far_ctx *c = far_start("far_deadline_pushed_back", far_push_back, 2000);
    if (!c->late) {
        assert_int_equal(c->first_fired, 1); /* once, at the later deadline */
        assert_true(c->first_at >= c->posted_at + 3000);
    }
    far_free(c);
}

/* ---- the ring's held timeout entry ----------------------------------------------------
 * On uring, a far deadline is one timeout entry held across waits.  Seen from outside: the
 * ring's submission count (SqTail in its fdinfo) grows by one for it, however many waits
 * sleep towards it, by one more when the deadline comes earlier, and by none when it moves
 * later (the entry then fires early once). */

/* SqTail of this process's io_uring, or -1 if there is not exactly one ring. */
static long ring_sq_tail(void)
{
    DIR *d = opendir("/proc/self/fd");
    long tail = -1;
    int rings = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], link[64] = "", line[128];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0 || !strstr(link, "io_uring"))
            continue;
        rings++;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "SqTail:", 7) == 0)
                tail = strtol(line + 7, NULL, 10);
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return rings == 1 ? tail : -1;
}

static int held_wakes;

static void held_io_cb(rill__io *io, unsigned revents)
{
    (void)io;
    if (revents & RILL__IO_READ)
        held_wakes++;
}

/* Submissions made by `n` waits, each ended at once by a pipe that stays readable. */
static long held_waits(rill_loop *loop, int n)
{
    long before = ring_sq_tail();
    for (int i = 0; i < n; i++)
        rill_loop_run(loop, RILL_RUN_ONCE);
    return ring_sq_tail() - before;
}

static void test_far_deadline_held_across_waits(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    if (strcmp(rill_loop_backend(loop), "uring") != 0) {
        th_loop_free(loop); /* the epoll backend's timerfd is checked above */
        skip();
    }
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    rill__io io;
    rill__io_init(&io, p[0], held_io_cb);
    assert_int_equal(rill__io_set(loop, &io, RILL__IO_READ), 0);
    assert_true(ring_sq_tail() >= 0);
    held_waits(loop, 2); /* the watch is in place */
    const int n = 20;
    held_wakes = 0;
    long plain = held_waits(loop, n); /* no deadline: the re-armed watch only */
    assert_int_equal(held_wakes, n);
    rill_timer *far = rill_timer_start(loop, 60000, 0, other_cb, NULL);
    assert_non_null(far);
    assert_int_equal(held_waits(loop, n), plain + 1); /* one entry for all n waits */
    rill_timer *sooner = rill_timer_start(loop, 30000, 0, other_cb, NULL);
    assert_non_null(sooner);
    assert_int_equal(held_waits(loop, n), plain + 1); /* moved earlier once */
    rill_timer_stop(sooner);
    assert_int_equal(held_waits(loop, n), plain); /* later now: the entry fires early once */
    assert_int_equal(held_wakes, 4 * n);
    rill_timer_stop(far);
    assert_int_equal(rill__io_set(loop, &io, 0), 0);
    close(p[0]);
    close(p[1]);
    th_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_100k_timers_fire_in_order),
        cmocka_unit_test(test_stop_inside_callbacks),
        cmocka_unit_test(test_zero_repeat_does_not_starve),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_far_deadline_brought_forward),
        cmocka_unit_test(test_far_deadline_pushed_back),
        cmocka_unit_test(test_far_deadline_held_across_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
