/* tests/test_timer_random.c - a randomized test of timers.
 *
 * 100 cases, each from a fixed seed (never the clock).  A case starts up to a few
 * thousand timers with random delays (0..200 ms, most cases far shorter; many equal ones, so many
 * equal deadlines), some repeating (1..50 ms, each stopping itself after its k-th firing, k <= 3),
 * then runs the loop.  Callbacks randomly stop other timers (often ones at the top of the heap, due
 * in the same iteration; also repeating ones that have fired already), stop themselves, start new
 * timers (a third of them 0 ms) and restart one (stop, then start with a new delay).  A quarter of
 * the cases run the loop with RILL_RUN_ONCE and, between iterations, stop and start timers from
 * outside any callback.  Every firing is checked against a model of the contract
 * (include/rill/loop.h, src/timer.c):
 *
 * - a stopped timer never fires, a one-shot one fires once, a repeating one until stopped;
 * - rill_loop_now in the callback is at least the deadline: rill_loop_now at the start
 *   plus `after` (for a re-armed repeating timer: rill_loop_now when it last fired plus
 *   `repeat`);
 * - the firing timer is the first of all armed ones by (deadline, start order), a
 *   repeating timer counting as started again when it is re-armed (after its callback);
 * - a timer started (or re-armed) inside a callback never fires in the same pass (a
 *   deferred call marks the end of each pass: defers run after the timers of an
 *   iteration);
 * - RILL_RUN_DEFAULT returns once no timer is left, with every timer of the model done.
 * Nothing depends on how late a timer is; every case is bounded by alarm(2).
 *
 * The cases are fixed, but which timers come due together depends on timing, and the
 * callbacks' random choices follow the firing order: a rerun of one case makes the same
 * starting set, not necessarily the same run.
 *
 * On failure the message names the case; RILL_TIMER_CASE=N runs case N alone, RILL_TIMER_SEED=S
 * makes other cases, RILL_TIMER_VERBOSE=1 prints each case. */
#include "harness.h"
#include "th_rand.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEED 0x72696c6c74696d72ull /* fixed: every run makes the same cases */
#define CASE_S 30                  /* alarm(2) bound for one case, in seconds */
#define MAX_GEN 1                  /* timers started from callbacks nest this deep at most */

static uint64_t g_seed;
static int g_only = -1;
static bool g_verbose;
static volatile sig_atomic_t g_case_no;
static const char *volatile g_group_name;

static void on_alarm(int sig)
{
    (void)sig;
    char m[160];
    int n = snprintf(m, sizeof m,
                     "test_timer_random: %s case %d did not end within %d s "
                     "(RILL_TIMER_CASE=%d runs it alone)\n",
                     g_group_name, (int)g_case_no, CASE_S, (int)g_case_no);
    if (n > 0)
        (void)!write(2, m, (size_t)n);
    abort();
}

static void setup_run(void)
{
    const char *s = getenv("RILL_TIMER_SEED");
    g_seed = s ? strtoull(s, NULL, 0) : SEED;
    const char *only = getenv("RILL_TIMER_CASE");
    g_only = only ? atoi(only) : -1;
    g_verbose = getenv("RILL_TIMER_VERBOSE") != NULL;
    signal(SIGALRM, on_alarm);
}

/* ==== timers ============================================================================= */

enum { ARMED, DONE, STOPPED };

typedef struct {
    rill_timer *t;    /* the handle while the timer is armed */
    uint64_t key;     /* deadline (ms, loop clock) */
    uint64_t seq;     /* start order, as the model counts it */
    uint64_t repeat;  /* 0: one-shot */
    uint64_t pass;    /* started in a callback: the pass it was started in; else UINT64_MAX */
    int fires, limit; /* repeating: stops itself at its limit-th firing */
    int gen;          /* 0: started by the driver; else its starter's gen + 1 */
    int state;
} mtimer;

typedef struct {
    uint64_t key, seq;
    size_t id;
} hent;

typedef struct tcase {
    rill_loop *loop;
    uint64_t rng;
    int n;
    mtimer *m;
    size_t nm, cap; /* timers made / room (new ones are not made past cap) */
    hent *heap;     /* the model's armed timers, with stale entries left in */
    size_t hlen, hcap;
    uint64_t seq;
    uint64_t pass; /* passes ended (counted by a deferred call) */
    bool defer_queued, in_cb;
    int cur_gen;          /* gen of the timer whose callback runs */
    size_t driver_starts; /* starts between RILL_RUN_ONCE iterations */
    uint64_t max_after, max_repeat;
    size_t fires, stops, starts_in_cb, zero_in_cb, same_pass_checks;
    bool failed;
    char msg[512];
} tcase;

static void tfail(tcase *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    int k =
        snprintf(c->msg, sizeof c->msg,
                 "timers case %d (RILL_TIMER_SEED=%#llx RILL_TIMER_CASE=%d runs it alone): ", c->n,
                 (unsigned long long)g_seed, c->n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
    rill_loop_stop(c->loop);
}

static bool hless(const hent *a, const hent *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static void hpush(tcase *c, hent e)
{
    if (c->hlen == c->hcap) {
        c->hcap = c->hcap ? 2 * c->hcap : 256;
        c->heap = realloc(c->heap, c->hcap * sizeof *c->heap);
        assert_non_null(c->heap);
    }
    size_t i = c->hlen++;
    while (i > 0 && hless(&e, &c->heap[(i - 1) / 2])) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = e;
}

static void hpop(tcase *c)
{
    hent e = c->heap[--c->hlen];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, b = i;
        const hent *bv = &e;
        if (l < c->hlen && hless(&c->heap[l], bv))
            bv = &c->heap[b = l];
        if (l + 1 < c->hlen && hless(&c->heap[l + 1], bv))
            bv = &c->heap[b = l + 1];
        if (b == i)
            break;
        c->heap[i] = c->heap[b];
        i = b;
    }
    if (c->hlen)
        c->heap[i] = e;
}

static bool hvalid(const tcase *c, const hent *e)
{
    const mtimer *m = &c->m[e->id];
    return m->state == ARMED && m->seq == e->seq;
}

/* The model's first armed timer, stale entries dropped; NULL when none. */
static const hent *htop(tcase *c)
{
    while (c->hlen && !hvalid(c, &c->heap[0]))
        hpop(c);
    return c->hlen ? &c->heap[0] : NULL;
}

static void pass_end(void *arg)
{
    tcase *c = arg;
    c->pass++;
    c->defer_queued = false;
}

static tcase *g_tc; /* the running case */

static void fired(rill_timer *t, void *arg);

/* A delay: inside callbacks at most 30 ms, to keep cases short. */
static uint64_t pick_after(tcase *c)
{
    uint64_t max = c->in_cb && c->max_after > 30 ? 30 : c->max_after;
    if (chance(&c->rng, 40)) /* popular values: equal deadlines */
        return (uint64_t)below(&c->rng, 4) * (max / 4 + 1) % (max + 1);
    return below(&c->rng, max + 1);
}

/* Starts timer number nm in the model and the loop. */
static size_t tstart(tcase *c, uint64_t after, uint64_t repeat, int limit)
{
    size_t id = c->nm++;
    mtimer *m = &c->m[id];
    memset(m, 0, sizeof *m);
    m->repeat = repeat;
    m->limit = limit;
    m->key = rill_loop_now(c->loop) + after;
    m->seq = c->seq++;
    m->pass = c->in_cb ? c->pass : UINT64_MAX;
    m->gen = c->in_cb ? c->cur_gen + 1 : 0;
    m->state = ARMED;
    m->t = rill_timer_start(c->loop, after, repeat, fired, (void *)(uintptr_t)id);
    if (!m->t) {
        tfail(c, "rill_timer_start failed");
        m->state = DONE;
        return id;
    }
    hpush(c, (hent){m->key, m->seq, id});
    return id;
}

static void random_start(tcase *c)
{
    if (c->nm == c->cap || (c->in_cb && c->cur_gen >= MAX_GEN))
        return;
    uint64_t after = chance(&c->rng, 33) ? 0 : pick_after(c);
    uint64_t repeat = 0;
    int limit = 0;
    if (chance(&c->rng, 20)) {
        repeat = 1 + below(&c->rng, c->max_repeat);
        limit = 1 + (int)below(&c->rng, 3);
    }
    if (c->in_cb) {
        c->starts_in_cb++;
        c->zero_in_cb += after == 0;
    }
    tstart(c, after, repeat, limit);
}

/* An armed timer other than `self`: often one at the top of the model's heap (due in this
 * iteration), else any.  SIZE_MAX when none was found. */
static size_t pick_armed(tcase *c, size_t self)
{
    for (int tries = 0; tries < 8; tries++) {
        size_t id;
        if (c->hlen && chance(&c->rng, 50))
            id = c->heap[below(&c->rng, c->hlen < 16 ? c->hlen : 16)].id;
        else
            id = below(&c->rng, c->nm);
        if (id != self && c->m[id].state == ARMED)
            return id;
    }
    return SIZE_MAX;
}

static void tstop(tcase *c, size_t id)
{
    mtimer *m = &c->m[id];
    rill_timer_stop(m->t);
    m->t = NULL;
    m->state = STOPPED;
    c->stops++;
}

static void fired(rill_timer *t, void *arg)
{
    size_t id = (uintptr_t)arg;
    tcase *c = g_tc;
    if (c->failed)
        return;
    mtimer *m = &c->m[id];
    uint64_t now = rill_loop_now(c->loop);
    c->fires++;
    if (m->state != ARMED || m->t != t) {
        tfail(c, "timer %zu fired while %s (fired %d times, repeat %llu)", id,
              m->state == DONE ? "done" : "stopped", m->fires, (unsigned long long)m->repeat);
        return;
    }
    if (now < m->key) {
        tfail(c, "timer %zu fired at %llu, before its deadline %llu", id, (unsigned long long)now,
              (unsigned long long)m->key);
        return;
    }
    if (m->pass != UINT64_MAX) {
        c->same_pass_checks++;
        if (m->pass == c->pass) {
            tfail(c, "timer %zu (deadline - now %lld) fired in the pass that started it", id,
                  (long long)(m->key - now));
            return;
        }
    }
    const hent *top = htop(c);
    if (!top || top->id != id) {
        tfail(c,
              "timer %zu (deadline %llu, start #%llu) fired before timer %zu (deadline %llu, "
              "start #%llu), now %llu",
              id, (unsigned long long)m->key, (unsigned long long)m->seq, top ? top->id : SIZE_MAX,
              top ? (unsigned long long)top->key : 0ull, top ? (unsigned long long)top->seq : 0ull,
              (unsigned long long)now);
        return;
    }
    hpop(c);
    m->fires++;
    if (!c->defer_queued) {
        if (rill_loop_defer(c->loop, 0, pass_end, c) != 0) {
            tfail(c, "rill_loop_defer failed");
            return;
        }
        c->defer_queued = true;
    }
    c->in_cb = true;
    c->cur_gen = m->gen;
    bool self_stopped = false;
    if (m->repeat && m->fires == m->limit) {
        tstop(c, id);
        self_stopped = true;
    }
    int actions = (int)below(&c->rng, 4);
    for (int a = 0; a < actions && !c->failed; a++) {
        unsigned r = (unsigned)below(&c->rng, 100);
        if (r < 35) {
            size_t o = pick_armed(c, id);
            if (o != SIZE_MAX)
                tstop(c, o);
        } else if (r < 40) {
            if (!self_stopped) {
                tstop(c, id); /* a one-shot one too: safe in its own callback */
                self_stopped = true;
            }
        } else if (r < 85) {
            random_start(c);
        } else {
            size_t o = pick_armed(c, id); /* restart: stop, then start with a new delay */
            if (o != SIZE_MAX && c->nm < c->cap && c->cur_gen < MAX_GEN) {
                uint64_t repeat = c->m[o].repeat;
                int limit = c->m[o].limit;
                tstop(c, o);
                c->starts_in_cb++;
                tstart(c, chance(&c->rng, 25) ? 0 : pick_after(c), repeat, limit);
            }
        }
    }
    c->in_cb = false;
    if (m->state == ARMED) {
        if (!m->repeat) { /* a one-shot timer is freed after its callback */
            m->state = DONE;
            m->t = NULL;
        } else { /* re-armed after the callback: a new start */
            m->key = now + m->repeat;
            m->seq = c->seq++;
            m->pass = c->pass;
            hpush(c, (hent){m->key, m->seq, id});
        }
    } else if (m->state == STOPPED && !m->repeat) {
        m->state = DONE; /* it fired, then stopped itself */
    }
}

static void run_timer_case(int n, char *msg, size_t cap, size_t *sum_fires)
{
    tcase *c = calloc(1, sizeof *c);
    assert_non_null(c);
    g_tc = c;
    c->n = n;
    c->rng = seed_of(g_seed ^ (uint64_t)n * 0x100000001b3ull);
    c->loop = th_loop_new();
    static const uint64_t afters[] = {0, 1, 3, 5, 10, 10, 20, 30, 30, 60, 100, 200};
    static const uint64_t repeats[] = {1, 2, 5, 10, 20, 50};
    c->max_after = afters[below(&c->rng, 12)];
    c->max_repeat = repeats[below(&c->rng, 6)];
    size_t n0 = logu(&c->rng, 1, 3000);
    c->cap = 2 * n0 + 64;
    c->m = calloc(c->cap, sizeof *c->m);
    assert_non_null(c->m);
    bool once = chance(&c->rng, 25);
    for (size_t i = 0; i < n0; i++)
        random_start(c);
    uint64_t t0 = th_now_ms();
    if (!once) {
        int rc = rill_loop_run(c->loop, RILL_RUN_DEFAULT);
        if (rc != 0)
            tfail(c, "rill_loop_run returned %d", rc);
    } else {
        /* one iteration at a time; between them, stops and starts from outside callbacks */
        while (!c->failed && htop(c)) {
            rill_loop_run(c->loop, RILL_RUN_ONCE);
            if (chance(&c->rng, 30))
                rill_loop_update_time(c->loop);
            if (chance(&c->rng, 20)) {
                size_t o = pick_armed(c, SIZE_MAX);
                if (o != SIZE_MAX)
                    tstop(c, o);
            }
            if (c->driver_starts < 8 + c->nm / 8 && chance(&c->rng, 20)) {
                c->driver_starts++;
                random_start(c);
            }
        }
        if (!c->failed) { /* nothing left: DEFAULT returns at once */
            uint64_t before = c->fires;
            rill_loop_run(c->loop, RILL_RUN_DEFAULT);
            if (c->fires != before)
                tfail(c, "a timer fired after the model had none left");
        }
    }
    for (size_t i = 0; i < c->nm && !c->failed; i++) {
        mtimer *m = &c->m[i];
        if (m->state == ARMED)
            tfail(c, "the loop returned with timer %zu still armed (repeat %llu, fired %d)", i,
                  (unsigned long long)m->repeat, m->fires);
        else if (!m->repeat && m->state == DONE && m->fires != 1)
            tfail(c, "one-shot timer %zu fired %d times", i, m->fires);
        else if (!m->repeat && m->state == STOPPED && m->fires != 0)
            tfail(c, "one-shot timer %zu stopped before firing fired %d times", i, m->fires);
        else if (m->repeat && m->fires > m->limit)
            tfail(c, "repeating timer %zu fired %d times, stopped at %d", i, m->fires, m->limit);
    }
    if (g_verbose)
        print_message("timers case %d: %zu timers (%zu at first), max after %llu, repeat "
                      "%llu, %s, %zu firings, %zu stops, %zu started in callbacks (%zu of 0 "
                      "ms), %llu passes, %llu ms\n",
                      n, c->nm, n0, (unsigned long long)c->max_after,
                      (unsigned long long)c->max_repeat, once ? "ONCE" : "DEFAULT", c->fires,
                      c->stops, c->starts_in_cb, c->zero_in_cb, (unsigned long long)c->pass,
                      (unsigned long long)(th_now_ms() - t0));
    *sum_fires += c->fires;
    if (c->failed) {
        snprintf(msg, cap, "%s", c->msg); /* the loop is left as it is */
    } else {
        th_loop_free(c->loop);
    }
    free(c->m);
    free(c->heap);
    free(c);
    g_tc = NULL;
}

static void test_random_timers(void **state)
{
    (void)state;
    setup_run();
    g_group_name = "timers";
    static char msg[512];
    size_t fires = 0;
    int ran = 0;
    uint64_t t0 = th_now_ms();
    for (int n = 0; n < 100 && !msg[0]; n++) {
        if (g_only >= 0 && n != g_only)
            continue;
        g_case_no = n;
        alarm(CASE_S);
        run_timer_case(n, msg, sizeof msg, &fires);
        alarm(0);
        ran++;
    }
    print_message("timers: %d cases, %zu firings, %llu ms\n", ran, fires,
                  (unsigned long long)(th_now_ms() - t0));
    if (msg[0])
        fail_msg("%s", msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_timers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
