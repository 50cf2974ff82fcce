/* tests/harness.c - see harness.h. */
#include "harness.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* No test may hang: a process still running after four minutes dies by SIGALRM. */
__attribute__((constructor)) static void th_watchdog(void)
{
    alarm(240);
}

uint64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

rill_loop *th_loop_new(void)
{
    rill_loop *loop = rill_loop_new(NULL);
    const char *backend = getenv("RILL_BACKEND");
    if (!loop && backend && strcmp(backend, "uring") == 0 && (errno == ENOSYS || errno == EPERM))
        skip(); /* io_uring is off on this kernel (or refused by a seccomp filter) */
    if (!loop)
        fail_msg("rill_loop_new: %s", rill_strerror(-errno));
    const char *want = getenv("RILL_BACKEND");
    if (want)
        assert_string_equal(rill_loop_backend(loop), want);
    return loop;
}

bool th_writes_deferred(rill_loop *loop)
{
    return strcmp(rill_loop_backend(loop), "uring") == 0;
}

void th_loop_free(rill_loop *loop)
{
    uint64_t deadline = th_now_ms() + 5000;
    int rc;
    while ((rc = rill_loop_free(loop)) == RILL_EBUSY && th_now_ms() < deadline)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    assert_int_equal(rc, 0);
}

static void th_tick(rill_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

rill_timer *th_tick_start(rill_loop *loop)
{
    rill_timer *t = rill_timer_start(loop, 5, 5, th_tick, NULL);
    assert_non_null(t);
    return t;
}

uint64_t th_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void th_fill(void *buf, size_t len, uint64_t seed)
{
    unsigned char *p = buf;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

static void th_cli_ev(rill_stream *s, const rill_event *ev, void *arg)
{
    th_cli *c = arg;
    (void)s;
    switch (ev->type) {
    case RILL_EV_CONNECT:
        c->connects++;
        break;
    case RILL_EV_CLOSE:
        c->closes++;
        c->close_err = ev->err;
        break;
    case RILL_EV_ERROR:
        c->errors++;
        c->last_err = ev->err;
        break;
    case RILL_EV_READ:
        if (c->bytes + ev->len < sizeof c->text)
            memcpy(c->text + c->bytes, ev->data, ev->len);
        c->bytes += ev->len;
        c->hash = th_hash(c->hash, ev->data, ev->len);
        break;
    default:
        break;
    }
}

rill_stream *th_cli_watch(rill_stream *s, th_cli *c, bool with_error)
{
    assert_non_null(s);
    memset(c, 0, sizeof *c);
    c->hash = TH_HASH_INIT;
    assert_non_null(rill_stream_on(s, RILL_EV_CONNECT, th_cli_ev, c));
    assert_non_null(rill_stream_on(s, RILL_EV_CLOSE, th_cli_ev, c));
    assert_non_null(rill_stream_on(s, RILL_EV_READ, th_cli_ev, c));
    if (with_error)
        assert_non_null(rill_stream_on(s, RILL_EV_ERROR, th_cli_ev, c));
    assert_int_equal(rill_stream_start(s), 0);
    return s;
}

void th_cli_done(rill_stream *s, int status, void *arg)
{
    th_cli *c = arg;
    (void)s;
    if (status == 0)
        c->done_ok++;
    else
        c->done_err++;
    c->done_status = status;
}

int th_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR's own fd */
}

static atomic_size_t th_calls, th_live, th_fail_at, th_largest;
static atomic_bool th_did_fail;

static bool th_should_fail(void)
{
    size_t at = atomic_load(&th_fail_at);
    size_t n = atomic_fetch_add(&th_calls, 1) + 1;
    if (at && n >= at) {
        atomic_store(&th_did_fail, true);
        return true;
    }
    return false;
}

static void *th_malloc(size_t n)
{
    if (th_should_fail())
        return NULL;
    void *p = malloc(n);
    if (p)
        atomic_fetch_add(&th_live, 1);
    for (size_t m = atomic_load(&th_largest); n > m && !atomic_compare_exchange_weak(&th_largest, &m, n);)
        ;
    return p;
}

static void *th_realloc(void *old, size_t n)
{
    if (th_should_fail())
        return NULL;
    void *p = realloc(old, n);
    if (p && !old)
        atomic_fetch_add(&th_live, 1);
    return p;
}

static void th_free(void *p)
{
    if (p)
        atomic_fetch_sub(&th_live, 1);
    free(p);
}

void th_alloc_install(void)
{
    static const rill_allocator a = {th_malloc, th_realloc, th_free};
    atomic_store(&th_calls, 0);
    atomic_store(&th_live, 0);
    atomic_store(&th_largest, 0);
    atomic_store(&th_fail_at, 0);
    atomic_store(&th_did_fail, false);
    assert_int_equal(rill_set_allocator(&a), 0);
}

void th_alloc_reset(void)
{
    assert_int_equal(rill_set_allocator(NULL), 0);
}

size_t th_alloc_count(void)
{
    return atomic_load(&th_calls);
}

size_t th_alloc_live(void)
{
    return atomic_load(&th_live);
}

size_t th_alloc_largest(void)
{
    return atomic_load(&th_largest);
}

void th_alloc_fail_at(size_t n)
{
    atomic_store(&th_calls, 0);
    atomic_store(&th_did_fail, false);
    atomic_store(&th_fail_at, n);
}

bool th_alloc_failed(void)
{
    return atomic_load(&th_did_fail);
}
