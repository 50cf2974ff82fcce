/* bench/timers.c - the cost of timers and of inactivity-timeout bookkeeping, rill against
 * libuv in the same run, 3 interleaved runs (best run for the timer cases, medians over
 * every write for the activity case); one line per case:
 *
 *   timer_start_stop lib=... n=1000000 start_ns=... stop_ns=... pair_ns=...
 *       n timers with pseudo-random delays (1 ms .. 60 s) started, then stopped in start
 *       order.  rill: rill_timer_start / rill_timer_stop (the library allocates each timer);
 *       libuv: uv_timer_init + uv_timer_start / uv_timer_stop on handles the caller
 *       allocated before the clock started (libuv's model: the memory is the user's).
 *   timer_rearm lib=... n=100000 ns=...
 *       n armed 15 s timers, each restarted in turn (a few rounds, the clock moving between
 *       rounds): what "activity updates" cost when every connection owns a heap timer.
 *       libuv: uv_timer_again; rill: rill_timer_stop + rill_timer_start.
 *   activity lib=... streams=K timeout=on|off write_ns=...
 *   activity_timeout_cost lib=... ns=...
 *       K streams over socketpairs, one 1-byte write each per pass, the loop clock moved
 *       between passes so every write really touches its timeout.  Half the streams have
 *       a 15 s timeout (alternating halves pass by pass); each write is timed on its own
 *       and the lines give the medians and their difference: the per-activity cost of
 *       keeping a timeout.  rill: rill_stream_write with rill_stream_set_timeout(s, 15000)
 *       or 0 (rill's timeout is a move to the tail of a per-value list, not a heap entry);
 *       libuv: uv_try_write, plus uv_timer_again on the stream's 15 s timer.  The
 *       difference sits next to a ~2 us syscall: expect a resolution of some ns.
 *       K is bounded by the fd limit (100,000 streams would need 200,000 fds; the hard
 *       limit here is 20,000), so rill's public API cannot measure 100k streams; the
 *       heap-timer case above covers 100k for libuv and rill timers.
 *
 *   timers [N]        (default 1000000) */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "rill.h"

#define RUNS 3
#define REARM_N 100000
#define REARM_ROUNDS 5
#define TIMEOUT_MS 15000
#define PASSES 8

static uint64_t *delays;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "timers: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        die("malloc");
    return p;
}

static double min_d(double a, double b)
{
    return a < b ? a : b;
}

static void rill_nop(rill_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

static void uv_nop(uv_timer_t *t)
{
    (void)t;
}

/* Lets the millisecond clocks move on, so the next pass does not hit the same tick. */
static void tick(void)
{
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* ---- start / stop ----------------------------------------------------------------------- */

static void rill_start_stop(size_t n, double *start_ns, double *stop_ns)
{
    rill_loop *loop = rill_loop_new(NULL);
    rill_timer **t = xmalloc(n * sizeof *t);
    if (!loop)
        die("rill_loop_new");
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        if (!(t[i] = rill_timer_start(loop, delays[i], 0, rill_nop, NULL)))
            die("rill_timer_start");
    double t1 = now_ns();
    for (size_t i = 0; i < n; i++)
        rill_timer_stop(t[i]);
    double t2 = now_ns();
    *start_ns = min_d(*start_ns, (t1 - t0) / (double)n);
    *stop_ns = min_d(*stop_ns, (t2 - t1) / (double)n);
    free(t);
    if (rill_loop_free(loop) < 0)
        die("rill_loop_free");
}

static void uv_close_all(uv_loop_t *loop, uv_timer_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        uv_close((uv_handle_t *)&t[i], NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

static void uv_start_stop(size_t n, double *start_ns, double *stop_ns)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t *t = xmalloc(n * sizeof *t);
    memset(t, 0, n * sizeof *t); /* fault the pages in before timing, as rill's are not */
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        uv_timer_init(&loop, &t[i]);
        uv_timer_start(&t[i], uv_nop, delays[i], 0);
    }
    double t1 = now_ns();
    for (size_t i = 0; i < n; i++)
        uv_timer_stop(&t[i]);
    double t2 = now_ns();
    *start_ns = min_d(*start_ns, (t1 - t0) / (double)n);
    *stop_ns = min_d(*stop_ns, (t2 - t1) / (double)n);
    uv_close_all(&loop, t, n);
    free(t);
}

/* ---- re-arming per-connection heap timers ------------------------------------------------ */

static double rill_rearm(size_t n)
{
    rill_loop *loop = rill_loop_new(NULL);
    rill_timer **t = xmalloc(n * sizeof *t);
    if (!loop)
        die("rill_loop_new");
    for (size_t i = 0; i < n; i++)
        t[i] = rill_timer_start(loop, TIMEOUT_MS, 0, rill_nop, NULL);
    double best = 1e30;
    for (int r = 0; r < REARM_ROUNDS; r++) {
        tick();
        rill_loop_update_time(loop);
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            rill_timer_stop(t[i]);
            t[i] = rill_timer_start(loop, TIMEOUT_MS, 0, rill_nop, NULL);
        }
        best = min_d(best, (now_ns() - t0) / (double)n);
    }
    for (size_t i = 0; i < n; i++)
        rill_timer_stop(t[i]);
    free(t);
    rill_loop_free(loop);
    return best;
}

static double uv_rearm(size_t n)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t *t = xmalloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) {
        uv_timer_init(&loop, &t[i]);
        uv_timer_start(&t[i], uv_nop, TIMEOUT_MS, TIMEOUT_MS);
    }
    double best = 1e30;
    for (int r = 0; r < REARM_ROUNDS; r++) {
        tick();
        uv_update_time(&loop);
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++)
            uv_timer_again(&t[i]);
        best = min_d(best, (now_ns() - t0) / (double)n);
    }
    uv_close_all(&loop, t, n);
    free(t);
    return best;
}

/* ---- activity on streams with and without a timeout ------------------------------------ */

/* Per-write times, in two bins: streams with a timeout and streams without.  Which half
 * of the streams has one alternates pass by pass, and every write is timed on its own, so
 * both bins see the same machine at the same moments; medians drop preempted writes. */
typedef struct {
    double *v;
    size_t n;
} bin;

static void bin_add(bin *b, double x)
{
    b->v[b->n++] = x;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(bin *b)
{
    if (!b->n)
        return 0;
    qsort(b->v, b->n, sizeof *b->v, cmp_d);
    return b->n % 2 ? b->v[b->n / 2] : (b->v[b->n / 2 - 1] + b->v[b->n / 2]) / 2;
}

static void drain(const int *peer, size_t k)
{
    char c[64];
    for (size_t i = 0; i < k; i++)
        while (read(peer[i], c, sizeof c) > 0)
            ;
}

static int *make_pairs(size_t k, int *peer)
{
    int *mine = xmalloc(k * sizeof *mine);
    for (size_t i = 0; i < k; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
            die("socketpair");
        mine[i] = sv[0];
        peer[i] = sv[1];
    }
    return mine;
}

static void rill_activity(size_t k, bin *on, bin *off)
{
    rill_loop *loop = rill_loop_new(NULL);
    int *peer = xmalloc(k * sizeof *peer), *fd = make_pairs(k, peer);
    rill_stream **s = xmalloc(k * sizeof *s);
    for (size_t i = 0; i < k; i++)
        if (!(s[i] = rill_fd_open(loop, fd[i], 0)))
            die("rill_fd_open");
    for (int p = 0; p < PASSES; p++) {
        for (size_t i = 0; i < k; i++)
            rill_stream_set_timeout(s[i], (i + (size_t)p) % 2 ? TIMEOUT_MS : 0);
        tick();
        rill_loop_update_time(loop);
        for (size_t i = 0; i < k; i++) {
            double t0 = now_ns();
            if (rill_stream_write(s[i], "x", 1, NULL, NULL) < 0)
                die("rill_stream_write");
            bin_add((i + (size_t)p) % 2 ? on : off, now_ns() - t0);
        }
        drain(peer, k);
    }
    for (size_t i = 0; i < k; i++) {
        rill_stream_close(s[i]);
        close(peer[i]);
    }
    rill_loop_run(loop, RILL_RUN_NOWAIT); /* CLOSE events, then the streams are freed */
    if (rill_loop_free(loop) < 0)
        die("rill_loop_free (streams left)");
    free(s);
    free(fd);
    free(peer);
}

static void uv_activity(size_t k, bin *on, bin *off)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    int *peer = xmalloc(k * sizeof *peer), *fd = make_pairs(k, peer);
    uv_pipe_t *s = xmalloc(k * sizeof *s);
    uv_timer_t *t = xmalloc(k * sizeof *t);
    for (size_t i = 0; i < k; i++) {
        uv_pipe_init(&loop, &s[i], 0);
        if (uv_pipe_open(&s[i], fd[i]) < 0)
            die("uv_pipe_open");
        uv_timer_init(&loop, &t[i]);
        uv_timer_start(&t[i], uv_nop, TIMEOUT_MS, TIMEOUT_MS);
    }
    for (int p = 0; p < PASSES; p++) {
        tick();
        uv_update_time(&loop);
        for (size_t i = 0; i < k; i++) {
            bool with = (i + (size_t)p) % 2;
            uv_buf_t b = uv_buf_init("x", 1);
            double t0 = now_ns();
            if (uv_try_write((uv_stream_t *)&s[i], &b, 1) != 1)
                die("uv_try_write");
            if (with)
                uv_timer_again(&t[i]);
            bin_add(with ? on : off, now_ns() - t0);
        }
        drain(peer, k);
    }
    for (size_t i = 0; i < k; i++) {
        uv_close((uv_handle_t *)&s[i], NULL);
        uv_close((uv_handle_t *)&t[i], NULL);
        close(peer[i]);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(s);
    free(t);
    free(fd);
    free(peer);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 1000000;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    delays = xmalloc(n * sizeof *delays);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; /* xorshift: the same delays for both libraries */
        x ^= x >> 7;
        x ^= x << 17;
        delays[i] = 1 + x % 60000;
    }

    double rs = 1e30, rp = 1e30, us = 1e30, up = 1e30;
    for (int r = 0; r < RUNS; r++) {
        rill_start_stop(n, &rs, &rp);
        uv_start_stop(n, &us, &up);
    }
    printf("timer_start_stop lib=rill n=%zu start_ns=%.1f stop_ns=%.1f pair_ns=%.1f\n", n, rs, rp,
           rs + rp);
    printf("timer_start_stop lib=libuv n=%zu start_ns=%.1f stop_ns=%.1f pair_ns=%.1f\n", n, us,
           up, us + up);

    double rr = 1e30, ur = 1e30;
    for (int r = 0; r < RUNS; r++) {
        rr = min_d(rr, rill_rearm(REARM_N));
        ur = min_d(ur, uv_rearm(REARM_N));
    }
    printf("timer_rearm lib=rill n=%d ns=%.1f\n", REARM_N, rr);
    printf("timer_rearm lib=libuv n=%d ns=%.1f\n", REARM_N, ur);

    /* each pair takes 2 fds; keep room for the loops' own fds */
    size_t k = rl.rlim_cur > 400 ? (size_t)(rl.rlim_cur - 200) / 2 : 100;
    if (k > 8000)
        k = 8000;
    size_t cap = (size_t)RUNS * PASSES * (k / 2 + 1);
    bin ron = {xmalloc(cap * sizeof(double)), 0}, roff = {xmalloc(cap * sizeof(double)), 0};
    bin uon = {xmalloc(cap * sizeof(double)), 0}, uoff = {xmalloc(cap * sizeof(double)), 0};
    for (int r = 0; r < RUNS; r++) {
        rill_activity(k, &ron, &roff);
        uv_activity(k, &uon, &uoff);
    }
    double a = median(&ron), b = median(&roff), c = median(&uon), d = median(&uoff);
    printf("activity lib=rill streams=%zu timeout=on write_ns=%.1f\n", k, a);
    printf("activity lib=rill streams=%zu timeout=off write_ns=%.1f\n", k, b);
    printf("activity lib=libuv streams=%zu timeout=on write_ns=%.1f\n", k, c);
    printf("activity lib=libuv streams=%zu timeout=off write_ns=%.1f\n", k, d);
    printf("activity_timeout_cost lib=rill ns=%.1f\n", a - b);
    printf("activity_timeout_cost lib=libuv ns=%.1f\n", c - d);
    free(ron.v);
    free(roff.v);
    free(uon.v);
    free(uoff.v);
    free(delays);
    return 0;
}
