/* tests/test_file.c - file streams: a 50 MiB file copied through a file stream into a
 * socketpair (hash checked), writes in order, O_APPEND, EOF, /dev/null, and open errors
 * (ENOENT, EACCES, EISDIR) as NULL with errno. */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define FILE_SIZE (50u << 20)

static char *temp_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/rill-test-file-%s-%d", tag, (int)getpid());
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fd);
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    size_t got = 0;
    ssize_t n;
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    close(fd);
    return got;
}

typedef struct {
    rill_stream *src, *dst;
    size_t bytes;
    uint64_t hash;
    int eofs, closes, errors, last_err, paused;
} copy;

/* READ of the file: to the socket, pausing the file while the socket's queue is full. */
static void on_file(rill_stream *s, const rill_event *ev, void *arg)
{
    copy *c = arg;
    if (ev->type == RILL_EV_READ) {
        int rc = rill_stream_write(c->dst, ev->data, ev->len, NULL, NULL);
        assert_true(rc >= 0);
        if (rc == 1) {
            c->paused++;
            rill_stream_stop(s);
        }
    } else if (ev->type == RILL_EV_EOF) {
        c->eofs++;
        assert_int_equal(rill_stream_shutdown(c->dst, NULL, NULL), 0);
    } else if (ev->type == RILL_EV_ERROR) {
        c->errors++;
        c->last_err = ev->err;
    }
}

static void on_drain(rill_stream *s, const rill_event *ev, void *arg)
{
    copy *c = arg;
    (void)s;
    (void)ev;
    rill_stream_start(c->src);
}

static void on_sink(rill_stream *s, const rill_event *ev, void *arg)
{
    copy *c = arg;
    (void)s;
    if (ev->type == RILL_EV_READ) {
        c->bytes += ev->len;
        c->hash = th_hash(c->hash, ev->data, ev->len);
    } else if (ev->type == RILL_EV_CLOSE) {
        c->closes++;
    }
}

static void test_50mib_file_into_socketpair(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof path, "big");
    char *data = malloc(FILE_SIZE);
    th_fill(data, FILE_SIZE, 50);
    uint64_t want = th_hash(TH_HASH_INIT, data, FILE_SIZE);
    write_file(path, data, FILE_SIZE);
    free(data);

    rill_loop *loop = th_loop_new();
    rill_stream *f = rill_file_open(loop, path, O_RDONLY, 0);
    assert_non_null(f);
    assert_true(rill_stream_readable(f));
    assert_false(rill_stream_writable(f));
    assert_true(rill_stream_fd(f) >= 0);
    assert_int_equal(rill_stream_timeout(f), 0);
    rill_stream *p[2];
    assert_int_equal(rill_stream_pair(loop, p, 0), 0);
    copy c = {.src = f, .dst = p[0], .hash = TH_HASH_INIT};
    for (int t = RILL_EV_READ; t <= RILL_EV_EOF; t++)
        assert_non_null(rill_stream_on(f, (rill_event_type)t, on_file, &c));
    assert_non_null(rill_stream_on(p[0], RILL_EV_DRAIN, on_drain, &c));
    assert_non_null(rill_stream_on(p[1], RILL_EV_READ, on_sink, &c));
    assert_non_null(rill_stream_on(p[1], RILL_EV_CLOSE, on_sink, &c));
    assert_int_equal(rill_stream_start(f), 0);
    assert_int_equal(rill_stream_start(p[1]), 0);
    TH_RUN_UNTIL(loop, c.closes == 1, 60000); /* EOF on p[1]: no EOF handler, it closes */
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.errors, 0);
    assert_int_equal(c.bytes, FILE_SIZE);
    assert_true(c.hash == want);
    rill_stream_close(f);
    rill_stream_close(p[0]);
    th_loop_free(loop);
    unlink(path);
}

typedef struct {
    int calls, status, order[16], n;
} done_rec;

static void on_done(rill_stream *s, int status, void *arg)
{
    done_rec *r = arg;
    (void)s;
    r->calls++;
    if (status < 0 && !r->status)
        r->status = status;
}

static void test_writes_in_order_then_close_async(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof path, "writes");
    rill_loop *loop = th_loop_new();
    rill_stream *f = rill_file_open(loop, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_non_null(f);
    assert_false(rill_stream_readable(f));
    done_rec r = {0}, closed = {0};
    char expect[64 * 1000];
    size_t len = 0;
    for (int i = 0; i < 1000; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "line %d\n", i);
        memcpy(expect + len, line, (size_t)n);
        len += (size_t)n;
        assert_true(rill_stream_write(f, line, (size_t)n, on_done, &r) >= 0);
    }
    assert_int_equal(rill_stream_close_async(f, 0, NULL, on_done, &closed), 0);
    TH_RUN_UNTIL(loop, closed.calls == 1, 10000);
    assert_int_equal(closed.status, 0);
    assert_int_equal(r.calls, 1000);
    assert_int_equal(r.status, 0);
    th_loop_free(loop);
    char *got = malloc(sizeof expect);
    assert_int_equal(read_file(path, got, sizeof expect), len);
    assert_memory_equal(got, expect, len);
    free(got);
    unlink(path);
}

typedef struct {
    int frames, status[4], eofs, closes;
    char got[4][32];
    size_t len[4];
} frames;

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    frames *f = arg;
    (void)s;
    f->status[f->frames] = status;
    f->len[f->frames] = len;
    if (len) /* a cancelled request has no data */
        if (len) /* the end-of-stream frame may carry no bytes (and no pointer) */
        memcpy(f->got[f->frames], data, len < 32 ? len : 32);
    f->frames++;
}

static void test_append_honoured(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof path, "append");
    write_file(path, "abc", 3);
    rill_loop *loop = th_loop_new();
    rill_stream *f = rill_file_open(loop, path, O_WRONLY | O_APPEND, 0);
    assert_non_null(f);
    /* another writer appends meanwhile: O_APPEND writes still land at the end */
    int other = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(other, "123", 3), 3);
    done_rec closed = {0};
    assert_int_equal(rill_stream_write(f, "def", 3, NULL, NULL), 0);
    assert_int_equal(rill_stream_close_async(f, 0, NULL, on_done, &closed), 0);
    TH_RUN_UNTIL(loop, closed.calls == 1, 5000);
    assert_int_equal(write(other, "456", 3), 3);
    close(other);
    char buf[32];
    assert_int_equal(read_file(path, buf, sizeof buf), 12);
    assert_memory_equal(buf, "abc123def456", 12);
    /* read-write with O_APPEND: reads start at the beginning, writes go to the end */
    f = rill_file_open(loop, path, O_RDWR | O_APPEND, 0);
    assert_non_null(f);
    assert_true(rill_stream_readable(f) && rill_stream_writable(f));
    frames fr = {0};
    assert_int_equal(rill_stream_read_exactly(f, 3, on_frame, &fr), 0);
    TH_RUN_UNTIL(loop, fr.frames == 1, 5000);
    assert_memory_equal(fr.got[0], "abc", 3);
    rill_stream_stop(f);
    closed.calls = 0;
    assert_int_equal(rill_stream_write(f, "789", 3, NULL, NULL), 0);
    assert_int_equal(rill_stream_close_async(f, 0, NULL, on_done, &closed), 0);
    TH_RUN_UNTIL(loop, closed.calls == 1, 5000);
    assert_int_equal(read_file(path, buf, sizeof buf), 15);
    assert_memory_equal(buf, "abc123def456789", 15);
    th_loop_free(loop);
    unlink(path);
}

static void on_ev(rill_stream *s, const rill_event *ev, void *arg)
{
    frames *f = arg;
    (void)s;
    if (ev->type == RILL_EV_EOF)
        f->eofs++;
    if (ev->type == RILL_EV_CLOSE)
        f->closes++;
}

static void test_eof_at_end_and_framing(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof path, "eof");
    write_file(path, "first\nsecond\nrest", 17);
    rill_loop *loop = th_loop_new();
    rill_stream *f = rill_file_open(loop, path, O_RDWR, 0);
    assert_non_null(f);
    frames fr = {0};
    assert_non_null(rill_stream_on(f, RILL_EV_EOF, on_ev, &fr));
    assert_non_null(rill_stream_on(f, RILL_EV_CLOSE, on_ev, &fr));
    assert_int_equal(rill_stream_read_until(f, "\n", 1, on_frame, &fr), 0);
    assert_int_equal(rill_stream_read_until(f, "\n", 1, on_frame, &fr), 0);
    assert_int_equal(rill_stream_read_until(f, "\n", 1, on_frame, &fr), 0);
    TH_RUN_UNTIL(loop, fr.frames == 3 && fr.eofs == 1, 5000);
    assert_memory_equal(fr.got[0], "first\n", 6);
    assert_memory_equal(fr.got[1], "second\n", 7);
    assert_int_equal(fr.status[2], RILL_EOF); /* the partial last line, at EOF */
    assert_memory_equal(fr.got[2], "rest", 4);
    /* with an EOF handler the stream stays open for writing: it writes at the offset
     * the reads left, the end */
    assert_true(rill_stream_writable(f));
    done_rec closed = {0};
    assert_int_equal(rill_stream_write(f, "+more", 5, NULL, NULL), 0);
    assert_int_equal(rill_stream_close_async(f, 0, NULL, on_done, &closed), 0);
    TH_RUN_UNTIL(loop, closed.calls == 1 && fr.closes == 1, 5000);
    assert_int_equal(closed.status, 0);
    th_loop_free(loop);
    char buf[32];
    assert_int_equal(read_file(path, buf, sizeof buf), 22);
    assert_memory_equal(buf, "first\nsecond\nrest+more", 22);
    unlink(path);
}

static void test_dev_null(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    rill_stream *f = rill_file_open(loop, "/dev/null", O_RDWR, 0);
    assert_non_null(f);
    frames fr = {0};
    assert_non_null(rill_stream_on(f, RILL_EV_EOF, on_ev, &fr));
    assert_int_equal(rill_stream_start(f), 0);
    static char mib[1 << 20];
    done_rec w = {0};
    for (int i = 0; i < 8; i++)
        assert_true(rill_stream_write(f, mib, sizeof mib, on_done, &w) >= 0);
    TH_RUN_UNTIL(loop, fr.eofs == 1 && w.calls == 8, 5000);
    assert_int_equal(w.status, 0);
    rill_stream_close(f);
    /* the internal constructor used by stdio for regular-file fds */
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    rill_stream *s = rill__file_stream(loop, fd, RILL_WRITEONLY);
    assert_non_null(s);
    assert_false(rill_stream_readable(s));
    assert_int_equal(rill_stream_write(s, "x", 1, on_done, &w), 0);
    TH_RUN_UNTIL(loop, w.calls == 9, 2000);
    rill_stream_close(s);
    th_loop_free(loop);
    assert_int_equal(fcntl(fd, F_GETFD), -1); /* the stream closed it */
}

/* EACCES: a file only its owner may read, opened by someone else.  Root reads anything,
 * so the open runs in a child that drops to nobody when root.  The child owns nothing of
 * the parent's loop (it forks first) and frees what it made, so leak checkers stay quiet. */
static int open_as_other(const char *path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (getuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
            _exit(2);
        rill_loop *l = rill_loop_new(NULL);
        errno = 0;
        rill_stream *s = l ? rill_file_open(l, path, O_RDONLY, 0) : NULL;
        int e = errno;
        if (l)
            rill_loop_free(l);
        _exit(!s && e == EACCES ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_open_errors(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof path, "acces");
    write_file(path, "secret", 6);
    assert_int_equal(chmod(path, getuid() == 0 ? 0600 : 0), 0);
    assert_int_equal(open_as_other(path), 0);
    unlink(path);

    rill_loop *loop = th_loop_new();
    int fds = th_fd_count();
    errno = 0;
    assert_null(rill_file_open(loop, "/nonexistent/rill/file", O_RDONLY, 0));
    assert_int_equal(errno, ENOENT);
    assert_int_equal(-errno, RILL_ENOENT);
    errno = 0;
    assert_null(rill_file_open(loop, "/tmp", O_RDONLY, 0));
    assert_int_equal(errno, EISDIR);
    errno = 0;
    assert_null(rill_file_open(loop, NULL, O_RDONLY, 0));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(th_fd_count(), fds); /* nothing leaked */
    th_loop_free(loop);
}

static void test_fifo_is_polled(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof path, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    rill_loop *loop = th_loop_new();
    rill_stream *r = rill_file_open(loop, path, O_RDONLY, 0); /* no writer yet: no block */
    assert_non_null(r);
    int w = open(path, O_WRONLY);
    assert_true(w >= 0);
    frames fr = {0};
    assert_int_equal(rill_stream_read_exactly(r, 4, on_frame, &fr), 0);
    assert_int_equal(write(w, "fifo", 4), 4);
    TH_RUN_UNTIL(loop, fr.frames == 1, 2000);
    assert_memory_equal(fr.got[0], "fifo", 4);
    close(w);
    rill_stream_close(r);
    th_loop_free(loop);
    unlink(path);
}

/* A terminal can wait forever for input: a blocking read of it on the pool would hold the
 * close (which waits for calls in progress) and the loop with it.  It is polled instead,
 * so closing a terminal stream that waits for a line is immediate. */
static void test_tty_is_polled(void **state)
{
    (void)state;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    rill_loop *loop = th_loop_new();
    rill_stream *t = rill_file_open(loop, ptsname(m), O_RDWR | O_NOCTTY, 0);
    assert_non_null(t);
    frames fr = {0};
    assert_int_equal(rill_stream_read_exactly(t, 5, on_frame, &fr), 0);
    assert_int_equal(write(m, "ping\n", 5), 5);
    TH_RUN_UNTIL(loop, fr.frames == 1, 2000);
    assert_memory_equal(fr.got[0], "ping\n", 5);
    /* nobody types: the next read waits; closing must not wait with it */
    assert_int_equal(rill_stream_read_exactly(t, 5, on_frame, &fr), 0);
    for (int i = 0; i < 5; i++)
        rill_loop_run(loop, RILL_RUN_NOWAIT);
    done_rec c = {0};
    assert_int_equal(rill_stream_close_async(t, 0, NULL, on_done, &c), 0);
    TH_RUN_UNTIL(loop, c.calls == 1, 2000);
    assert_int_equal(c.status, 0);
    assert_int_equal(rill_loop_free(loop), 0); /* nothing left running on the pool */
    close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_50mib_file_into_socketpair),
        cmocka_unit_test(test_writes_in_order_then_close_async),
        cmocka_unit_test(test_append_honoured),
        cmocka_unit_test(test_eof_at_end_and_framing),
        cmocka_unit_test(test_dev_null),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_fifo_is_polled),
        cmocka_unit_test(test_tty_is_polled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
