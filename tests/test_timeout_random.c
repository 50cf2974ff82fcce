/* tests/test_timeout_random.c - a randomized test of stream inactivity timeouts.
 *
 * 40 cases, each from a fixed seed (never the clock).  A case makes 1..200 stream pairs
 * (rill_stream_pair); the first end of each pair is watched (READ, TIMEOUT and CLOSE
 * handlers, reading), the second (the peer) is written to by the test.  Watched ends get
 * random timeouts (20..150 ms, drawn from a few popular values so lists are shared, some 0 =
 * never).  Each pair plays one role:
 *
 * - IDLE: the peer writes random sizes at random intervals (some longer than the
 *   timeout), then stops: the stream must get TIMEOUT;
 * - BUSY: the peer writes every timeout/4 until a random point, then stops: no TIMEOUT
 *   while it writes, one after;
 * - CLOSE: like IDLE, but the test closes the stream at a random time (from a timer);
 *   after that no TIMEOUT may fire;
 * - NEVER: timeout 0 with writes; closed by the test at the end, never a TIMEOUT.
 *
 * Timeouts change at random: from a timer, from the stream's own READ handler and from
 * other streams' TIMEOUT handlers (set_timeout on an active stream, longer, shorter, 0, or
 * the same value), and a TIMEOUT handler sometimes sets its own stream's timeout (it must
 * close anyway).  BUSY streams only get longer values or 0, so they stay busy.
 *
 * Checks (include/rill/stream.h, src/loop.c):
 * - TIMEOUT fires at most once per stream, the stream is still open in the handler, and
 *   CLOSE follows; no READ after it;
 * - never on a stream the test closed, nor on one whose timeout is 0;
 * - never early.  The allowance comes from what the code does: activity (a read) is
 *   stamped with the loop's cached clock (rill_loop_now as the READ handler sees it: I/O
 *   callbacks run before the clock is refreshed), set_timeout re-arms from the cached clock
 *   too, and a node expires in the first iteration whose refreshed clock reaches stamp +
 *   ms.  So in loop-clock terms the bound is exact: rill_loop_now in the TIMEOUT handler
 *   >= max(last READ's rill_loop_now, last set_timeout's rill_loop_now) + ms.  In real
 *   time a stream may fire up to (real time of the read - its cached stamp) early; that
 *   slack is measured and reported, not assumed.  A write counts only once the watched end
 *   has read it (on uring the write goes out with the next submission, and a timeout due in
 *   the iteration of the write may fire before the data is read);
 * - every stream left with a timeout gets TIMEOUT, at most LATE_MS (+ the longest loop
 *   iteration gap) after its deadline;
 * - a BUSY stream never gets TIMEOUT while it is being written to, unless the loop itself
 *   stalled for 3/8 of its timeout (measured with a 1 ms timer, as in test_timeout.c; then
 *   the activity could not run and the check is skipped and counted).
 *
 * Cases run 8 at a time in one loop (sharing its timeout lists) to keep the run short;
 * every failure names its case.  RILL_TIMEOUT_CASE=N runs case N alone (timing differs, so
 * a rerun makes the same streams, not necessarily the same run), RILL_TIMEOUT_SEED=S makes
 * other cases, RILL_TIMEOUT_VERBOSE=1 prints each case.  Every wait is bounded, and each
 * batch by alarm(2). */
#include "harness.h"
#include "th_rand.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEED 0x72696c6c746d6f75ull /* fixed: every run makes the same cases */
#define NCASES 40
#define BATCH 8
#define BATCH_S 30    /* alarm(2) bound for one batch, in seconds */
#define LATE_MS 1500  /* generous: a noisy 2-CPU VM */
#define WAIT_MS 4000  /* bound on a batch's final wait, after its last scheduled event */
#define ACT_MAX 150   /* activity phases end within this many ms of the start */
#define EVENT_MAX 200 /* scheduled closes and changes happen within this */

static uint64_t g_seed;
static int g_only = -1;
static bool g_verbose;
static volatile sig_atomic_t g_batch_no;

static void on_alarm(int sig)
{
    (void)sig;
    char m[160];
    int n = snprintf(m, sizeof m,
                     "test_timeout_random: the batch of case %d did not end within %d s "
                     "(RILL_TIMEOUT_CASE=N runs case N alone)\n",
                     (int)g_batch_no, BATCH_S);
    if (n > 0)
        (void)!write(2, m, (size_t)n);
    abort();
}

/* ==== the model ========================================================================== */

enum { IDLE, BUSY, CLOSE, NEVER };
static const char *const kind_names[] = {"idle", "busy", "close", "never"};

struct tcase;

typedef struct {
    struct tcase *c;
    int idx, kind;
    rill_stream *w, *p;    /* watched end, peer (both referenced by the test) */
    rill_timer *drv, *ev;  /* the writer (one-shot chain), the close / change timer */
    uint64_t ms;           /* the model's timeout (0: never) */
    uint64_t last_act;     /* loop clock: the later of the last READ and set_timeout */
    uint64_t act_end;      /* loop clock: the peer stops writing then */
    uint64_t lo, hi;       /* IDLE / CLOSE / NEVER: write intervals */
    uint64_t ev_at, ev_to; /* the scheduled event: close (CLOSE) or a change to ev_to */
    int change_on_read;    /* > 0: set_timeout(ev_to) from the n-th READ handler */
    int reads, timeouts, closes, sets;
    bool test_closed, writing, busy_fired;
    uint64_t fired_at, late;
    size_t wrote, read;
} sst;

typedef struct tcase {
    int n;
    rill_loop *loop;
    uint64_t rng;
    size_t ns;
    sst *s;
    uint64_t t0;
    bool failed;
    char msg[640];
    size_t fired, test_closes, sets, busy_skipped;
} tcase;

static tcase *g_cases[NCASES];
static size_t g_ncases;
static char g_msg[640];
static uint64_t g_prev_tick, g_max_gap, g_max_slack;

static void tfail(tcase *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    int k = snprintf(c->msg, sizeof c->msg,
                     "timeout case %d (RILL_TIMEOUT_SEED=%#llx RILL_TIMEOUT_CASE=%d runs it "
                     "alone): ",
                     c->n, (unsigned long long)g_seed, c->n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
    if (!g_msg[0])
        snprintf(g_msg, sizeof g_msg, "%s", c->msg);
}

static void gap_tick(rill_timer *t, void *arg)
{
    (void)t;
    th_gap_note(rill_loop_now(arg), &g_prev_tick, &g_max_gap);
}

/* Timeout values: mostly popular ones (shared lists), else any in 20..150. */
static uint64_t pick_ms(tcase *c)
{
    static const uint64_t popular[] = {20, 40, 40, 75, 100, 100, 150};
    if (chance(&c->rng, 70))
        return popular[below(&c->rng, sizeof popular / sizeof popular[0])];
    return 20 + below(&c->rng, 131);
}

/* set_timeout on an open stream, and the model with it: the clock restarts from now. */
static void set_to(sst *t, uint64_t ms)
{
    if (rill_stream_is_closed(t->w))
        return; /* a no-op on a closed stream */
    uint64_t now = rill_loop_now(t->c->loop);
    rill_stream_set_timeout(t->w, ms);
    if (rill_stream_timeout(t->w) != ms)
        tfail(t->c, "stream %d: rill_stream_timeout is %llu after setting %llu", t->idx,
              (unsigned long long)rill_stream_timeout(t->w), (unsigned long long)ms);
    t->ms = ms;
    if (now > t->last_act)
        t->last_act = now;
    t->sets++;
    t->c->sets++;
}

/* A new value for a change: BUSY streams get only longer ones or 0. */
static uint64_t pick_change(tcase *c, const sst *t)
{
    if (chance(&c->rng, 20))
        return 0;
    if (chance(&c->rng, 15))
        return t->ms; /* the same value: the stream moves within its list */
    uint64_t v = pick_ms(c);
    if (t->kind == BUSY && t->ms && v < t->ms)
        v = t->ms + below(&c->rng, 50);
    return v;
}

/* ---- the peer's writer ------------------------------------------------------------------ */

static void drive(rill_timer *tm, void *arg);

static void write_some(sst *t)
{
    static char buf[65536];
    static bool filled;
    if (!filled) {
        th_fill(buf, sizeof buf, 7);
        filled = true;
    }
    size_t len =
        chance(&t->c->rng, 90) ? logu(&t->c->rng, 1, 4096) : logu(&t->c->rng, 4096, sizeof buf);
    int rc = rill_stream_write(t->p, buf, len, NULL, NULL);
    if (rc < 0) {
        if (!rill_stream_is_closed(t->w))
            tfail(t->c, "stream %d: the peer's write failed: %s", t->idx, rill_strerror(rc));
        return;
    }
    t->wrote += len;
}

static void drive(rill_timer *tm, void *arg)
{
    (void)tm;
    sst *t = arg;
    tcase *c = t->c;
    t->drv = NULL; /* a one-shot timer: freed after this callback */
    uint64_t now = rill_loop_now(c->loop);
    if (c->failed || rill_stream_is_closed(t->w) || now >= t->act_end) {
        t->writing = false;
        return;
    }
    write_some(t);
    uint64_t next;
    if (t->kind == BUSY)
        next = t->ms ? t->ms / 4 : 5; /* activity at 4 times the timeout's rate */
    else
        next = t->lo + below(&c->rng, t->hi - t->lo + 1);
    t->drv = rill_timer_start(c->loop, next, 0, drive, t);
    if (!t->drv)
        tfail(c, "rill_timer_start failed");
}

/* The scheduled event: the test closes the stream, or changes its timeout. */
static void event(rill_timer *tm, void *arg)
{
    (void)tm;
    sst *t = arg;
    t->ev = NULL;
    if (t->c->failed || rill_stream_is_closed(t->w))
        return;
    if (t->kind == CLOSE) {
        t->test_closed = true;
        t->c->test_closes++;
        rill_stream_close(t->w);
    } else {
        set_to(t, t->ev_to);
    }
}

/* ---- the watched end's handlers --------------------------------------------------------- */

static void on_read(rill_stream *s, const rill_event *ev, void *arg)
{
    sst *t = arg;
    tcase *c = t->c;
    uint64_t now = rill_loop_now(c->loop); /* the stamp the read's activity gets */
    uint64_t real = th_now_ms();
    if (real - now > g_max_slack)
        g_max_slack = real - now;
    if (t->timeouts || t->test_closed)
        tfail(c, "stream %d: READ after %s", t->idx,
              t->timeouts ? "TIMEOUT" : "the test closed it");
    t->reads++;
    t->read += ev->len;
    if (now > t->last_act)
        t->last_act = now;
    if (t->change_on_read && t->reads == t->change_on_read)
        set_to(t, t->ev_to); /* set_timeout from the stream's own READ handler */
    (void)s;
}

static void on_timeout(rill_stream *s, const rill_event *ev, void *arg)
{
    sst *t = arg;
    tcase *c = t->c;
    uint64_t now = rill_loop_now(c->loop);
    t->timeouts++;
    c->fired++;
    if (t->timeouts > 1) {
        tfail(c, "stream %d (%s, %llu ms): TIMEOUT %d times", t->idx, kind_names[t->kind],
              (unsigned long long)t->ms, t->timeouts);
        return;
    }
    t->fired_at = now;
    if (ev->err != RILL_ETIMEDOUT)
        tfail(c, "stream %d: TIMEOUT with err %d", t->idx, ev->err);
    if (t->test_closed)
        tfail(c, "stream %d (%s): TIMEOUT after the test closed it", t->idx, kind_names[t->kind]);
    if (t->closes)
        tfail(c, "stream %d: TIMEOUT after CLOSE", t->idx);
    if (rill_stream_is_closed(s))
        tfail(c, "stream %d: closed already in its TIMEOUT handler", t->idx);
    if (t->ms == 0) {
        tfail(c, "stream %d (%s): TIMEOUT with timeout 0 (set %d times)", t->idx,
              kind_names[t->kind], t->sets);
        return;
    }
    if (now < t->last_act + t->ms) {
        tfail(c,
              "stream %d (%s, %llu ms): TIMEOUT at %llu, %llu ms after its last activity "
              "(%llu, %d reads, %d sets): %llu ms early",
              t->idx, kind_names[t->kind], (unsigned long long)t->ms, (unsigned long long)now,
              (unsigned long long)(now - t->last_act), (unsigned long long)t->last_act, t->reads,
              t->sets, (unsigned long long)(t->last_act + t->ms - now));
        return;
    }
    t->late = now - (t->last_act + t->ms);
    if (t->kind == BUSY && now < t->act_end)
        t->busy_fired = true; /* judged at the end, against the loop's longest stall */
    /* set_timeout from the handler: on another open stream of the case, or on itself */
    unsigned r = (unsigned)below(&c->rng, 100);
    if (r < 25) {
        sst *o = &c->s[below(&c->rng, c->ns)];
        if (o != t && !rill_stream_is_closed(o->w))
            set_to(o, pick_change(c, o));
    } else if (r < 35) {
        rill_stream_set_timeout(s, chance(&c->rng, 50) ? 0 : pick_ms(c)); /* still closes */
    }
}

static void on_close(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    sst *t = arg;
    tcase *c = t->c;
    t->closes++;
    if (t->closes > 1)
        tfail(c, "stream %d: CLOSE %d times", t->idx, t->closes);
    else if (!t->timeouts && !t->test_closed)
        tfail(c, "stream %d (%s): closed without TIMEOUT nor the test closing it (err %d)", t->idx,
              kind_names[t->kind], ev->err);
}

/* ---- a case ----------------------------------------------------------------------------- */

static tcase *make_case(rill_loop *loop, int n)
{
    tcase *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->n = n;
    c->loop = loop;
    c->rng = seed_of(g_seed ^ (uint64_t)n * 0x100000001b3ull);
    c->ns = logu(&c->rng, 1, 200);
    c->s = calloc(c->ns, sizeof *c->s);
    assert_non_null(c->s);
    c->t0 = rill_loop_now(loop);
    for (size_t i = 0; i < c->ns; i++) {
        sst *t = &c->s[i];
        t->c = c;
        t->idx = (int)i;
        rill_stream *p[2];
        int rc = rill_stream_pair(loop, p, 0);
        if (rc != 0)
            fail_msg("case %d: rill_stream_pair: %s", n, rill_strerror(rc));
        t->w = rill_stream_ref(p[0]);
        t->p = rill_stream_ref(p[1]);
        rill_stream_set_timeout(t->p, 0); /* the peer never times out */
        unsigned r = (unsigned)below(&c->rng, 100);
        t->kind = r < 40 ? IDLE : r < 65 ? BUSY : r < 85 ? CLOSE : NEVER;
        assert_non_null(rill_stream_on(t->w, RILL_EV_READ, on_read, t));
        assert_non_null(rill_stream_on(t->w, RILL_EV_TIMEOUT, on_timeout, t));
        assert_non_null(rill_stream_on(t->w, RILL_EV_CLOSE, on_close, t));
        assert_int_equal(rill_stream_start(t->w), 0);
        t->ms = t->kind == NEVER ? 0 : pick_ms(c); /* armed by arm_case */
        t->act_end = below(&c->rng, ACT_MAX + 1);  /* an offset until arm_case */
        if (chance(&c->rng, 10))
            t->act_end = 0; /* idle from the start */
        t->lo = 1 + below(&c->rng, 30);
        t->hi = t->lo + below(&c->rng, chance(&c->rng, 20) ? 200 : 40); /* some gaps > ms */
        /* the scheduled event */
        if (t->kind == CLOSE) {
            t->ev_at = 1 + below(&c->rng, EVENT_MAX);
        } else if (chance(&c->rng, 35)) {
            t->ev_to = pick_change(c, t);
            if (chance(&c->rng, 40))
                t->change_on_read = 1 + (int)below(&c->rng, 5);
            else
                t->ev_at = 1 + below(&c->rng, EVENT_MAX);
        }
    }
    return c;
}

/* Arms the timeouts and starts the timers, after every pair of the batch is made (making
 * them takes long under ASan or valgrind: arming first would start the clocks early). */
static void arm_case(tcase *c)
{
    c->t0 = rill_loop_now(c->loop);
    for (size_t i = 0; i < c->ns; i++) {
        sst *t = &c->s[i];
        t->last_act = c->t0;
        uint64_t ms = t->ms;
        t->ms = 0;
        set_to(t, ms);
        t->act_end += c->t0;
        t->writing = true;
        t->drv = rill_timer_start(c->loop, below(&c->rng, 10), 0, drive, t);
        assert_non_null(t->drv);
        if (t->ev_at) {
            t->ev = rill_timer_start(c->loop, t->ev_at, 0, event, t);
            assert_non_null(t->ev);
        }
    }
}

/* Nothing left to happen: no writer or event pending, every stream closed or with no
 * timeout. */
static bool case_settled(const tcase *c)
{
    if (c->failed)
        return true;
    for (size_t i = 0; i < c->ns; i++) {
        const sst *t = &c->s[i];
        if (t->drv || t->ev)
            return false;
        if (!rill_stream_is_closed(t->w) && t->ms)
            return false;
        if (rill_stream_is_closed(t->w) && !t->closes)
            return false; /* CLOSE is on its way */
    }
    return true;
}

static void finish_case(tcase *c, bool timed_out)
{
    for (size_t i = 0; i < c->ns; i++) {
        sst *t = &c->s[i];
        if (t->drv)
            rill_timer_stop(t->drv);
        if (t->ev)
            rill_timer_stop(t->ev);
        t->drv = t->ev = NULL;
    }
    for (size_t i = 0; i < c->ns && !c->failed; i++) {
        sst *t = &c->s[i];
        if (!rill_stream_is_closed(t->w) && t->ms)
            tfail(c,
                  "stream %d (%s, %llu ms, last activity %llu ms after the start): no TIMEOUT "
                  "within %llu ms%s",
                  t->idx, kind_names[t->kind], (unsigned long long)t->ms,
                  (unsigned long long)(t->last_act - c->t0),
                  (unsigned long long)(rill_loop_now(c->loop) - t->last_act),
                  timed_out ? " (the wait timed out)" : "");
        else if (t->timeouts && t->late > LATE_MS + g_max_gap)
            tfail(c,
                  "stream %d (%s, %llu ms): TIMEOUT %llu ms late (longest iteration gap %llu ms)",
                  t->idx, kind_names[t->kind], (unsigned long long)t->ms,
                  (unsigned long long)t->late, (unsigned long long)g_max_gap);
        else if (t->busy_fired) {
            if (g_max_gap * 8 < t->ms * 3)
                tfail(c,
                      "busy stream %d (%llu ms, written to every %llu ms): TIMEOUT at %llu, "
                      "while written to until %llu (longest iteration gap %llu ms)",
                      t->idx, (unsigned long long)t->ms, (unsigned long long)(t->ms / 4),
                      (unsigned long long)(t->fired_at - c->t0),
                      (unsigned long long)(t->act_end - c->t0), (unsigned long long)g_max_gap);
            else
                c->busy_skipped++;
        }
    }
}

static void close_case(tcase *c)
{
    for (size_t i = 0; i < c->ns; i++) {
        sst *t = &c->s[i];
        if (!rill_stream_is_closed(t->w)) {
            t->test_closed = true;
            rill_stream_close(t->w);
        }
        rill_stream_close(t->p);
    }
}

static void free_case(tcase *c)
{
    for (size_t i = 0; i < c->ns; i++) {
        sst *t = &c->s[i];
        if (!c->failed && t->closes != 1)
            tfail(c, "stream %d: %d CLOSE events", t->idx, t->closes);
        rill_stream_unref(t->w);
        rill_stream_unref(t->p);
    }
}

static bool all_settled(void)
{
    for (size_t i = 0; i < g_ncases; i++)
        if (!case_settled(g_cases[i]))
            return false;
    return true;
}

static void run_batch(const int *ns, size_t k, size_t *streams, size_t *fired)
{
    rill_loop *loop = th_loop_new();
    g_ncases = 0;
    g_prev_tick = g_max_gap = 0;
    for (size_t i = 0; i < k; i++)
        g_cases[g_ncases++] = make_case(loop, ns[i]);
    rill_loop_update_time(loop);
    for (size_t i = 0; i < k; i++)
        arm_case(g_cases[i]);
    g_prev_tick = rill_loop_now(loop); /* a stall before the first iteration counts too */
    rill_timer *gaps = rill_timer_start(loop, 1, 1, gap_tick, loop);
    assert_non_null(gaps);
    uint64_t deadline = th_now_ms() + EVENT_MAX + WAIT_MS;
    bool timed_out = false;
    while (!all_settled()) {
        if (th_now_ms() > deadline) {
            timed_out = true;
            break;
        }
        rill_loop_run(loop, RILL_RUN_ONCE);
    }
    rill_timer_stop(gaps);
    for (size_t i = 0; i < g_ncases; i++)
        finish_case(g_cases[i], timed_out);
    for (size_t i = 0; i < g_ncases; i++)
        close_case(g_cases[i]);
    for (int i = 0; i < 10; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT); /* the CLOSE events follow */
    for (size_t i = 0; i < g_ncases; i++) {
        tcase *c = g_cases[i];
        free_case(c);
        *streams += c->ns;
        *fired += c->fired;
        if (g_verbose) {
            size_t kinds[4] = {0};
            for (size_t j = 0; j < c->ns; j++)
                kinds[c->s[j].kind]++;
            print_message("timeout case %d: %zu pairs (%zu idle, %zu busy, %zu closed, %zu "
                          "never), %zu TIMEOUTs, %zu closed by the test, %zu sets, %zu busy "
                          "checks skipped, longest gap %llu ms%s\n",
                          c->n, c->ns, kinds[IDLE], kinds[BUSY], kinds[CLOSE], kinds[NEVER],
                          c->fired, c->test_closes, c->sets, c->busy_skipped,
                          (unsigned long long)g_max_gap, c->failed ? " FAILED" : "");
        }
        free(c->s);
        free(c);
    }
    g_ncases = 0;
    th_loop_free(loop);
}

static void test_random_timeouts(void **state)
{
    (void)state;
    const char *s = getenv("RILL_TIMEOUT_SEED");
    g_seed = s ? strtoull(s, NULL, 0) : SEED;
    const char *only = getenv("RILL_TIMEOUT_CASE");
    g_only = only ? atoi(only) : -1;
    g_verbose = getenv("RILL_TIMEOUT_VERBOSE") != NULL;
    signal(SIGALRM, on_alarm);
    g_msg[0] = 0;
    g_max_slack = 0;
    size_t streams = 0, fired = 0;
    int ran = 0;
    uint64_t t0 = th_now_ms();
    int batch[BATCH];
    size_t k = 0;
    for (int n = 0; n < NCASES && !g_msg[0]; n++) {
        if (g_only >= 0 && n != g_only)
            continue;
        batch[k++] = n;
        ran++;
        if (k == BATCH || n == NCASES - 1 || g_only >= 0) {
            g_batch_no = batch[0];
            alarm(BATCH_S);
            run_batch(batch, k, &streams, &fired);
            alarm(0);
            k = 0;
        }
    }
    print_message("timeouts: %d cases, %zu pairs, %zu TIMEOUTs, largest cached-clock slack %llu "
                  "ms, %llu ms\n",
                  ran, streams, fired, (unsigned long long)g_max_slack,
                  (unsigned long long)(th_now_ms() - t0));
    if (g_msg[0])
        fail_msg("%s", g_msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_timeouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
