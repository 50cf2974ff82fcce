/* tests/test_tty.c - terminals on a real pty (read/write, window size, raw mode and its
 * restoring) and the standard streams of a child process whose fds 0/1/2 are files, pipes,
 * /dev/null, a pty or a socket.  The child is this binary run with "--child MODE". */
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const char *self_path;

/* ---- the child side ------------------------------------------------------------------- */

typedef struct {
    rill_stream *in, *out, *err;
} child_ctx;

static void child_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    child_ctx *c = arg;
    rill_stream_write(c->out, ev->data, ev->len, NULL, NULL);
}

static void child_eof(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)ev;
    child_ctx *c = arg;
    rill_stream_close_gracefully(c->out);
    rill_stream_write(c->err, "done\n", 5, NULL, NULL);
    rill_stream_close_gracefully(c->err);
    rill_stream_close(s);
}

static int child_fail(const char *what)
{
    int e = errno;
    dprintf(2, "child: %s: %s\n", what, strerror(e));
    return 2;
}

static bool nonblocking(int fd)
{
    return fcntl(fd, F_GETFL) & O_NONBLOCK;
}

/* Copies stdin to stdout through rill's standard streams, then says "done" on stderr. */
static int child_echo(void)
{
    bool was_nb[3] = {nonblocking(0), nonblocking(1), nonblocking(2)};
    rill_loop *loop = rill_loop_new(NULL);
    child_ctx c = {0};
    if (!(c.in = rill_stdin(loop)))
        return child_fail("rill_stdin");
    if (!(c.out = rill_stdout(loop)))
        return child_fail("rill_stdout");
    if (!(c.err = rill_stderr(loop)))
        return child_fail("rill_stderr");
    struct stat st;
    for (int fd = 0; fd < 3; fd++) /* ttys and pipes get descriptions of their own */
        if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || isatty(fd)) &&
            nonblocking(fd) != was_nb[fd])
            return 3;
    rill_stream_on(c.in, RILL_EV_READ, child_read, &c);
    rill_stream_on(c.in, RILL_EV_EOF, child_eof, &c);
    if (rill_stream_start(c.in) < 0)
        return 4;
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    return rill_loop_free(loop) == 0 ? 0 : 5;
}

static void on_signal_reset(int sig)
{
    (void)sig;
    rill_tty_reset(); /* async-signal-safe: the way an application restores on a signal */
    _exit(0);
}

/* Puts the tty on stdin in raw mode, says so on stdout, and ends without restoring it:
 * by exit (atexit), or by a signal whose handler calls rill_tty_reset. */
static int child_raw(bool by_signal)
{
    rill_loop *loop = rill_loop_new(NULL);
    rill_stream *in = rill_stdin(loop);
    if (!in)
        return child_fail("rill_stdin");
    if (rill_tty_set_raw(in, true) < 0)
        return 6;
    struct termios t;
    if (tcgetattr(0, &t) < 0 || (t.c_lflag & ICANON))
        return 7;
    if (write(1, "raw\n", 4) != 4)
        return 8;
    if (by_signal) {
        signal(SIGUSR1, on_signal_reset);
        raise(SIGUSR1);
    }
    exit(0);
}

static int child_main(const char *mode)
{
    if (strcmp(mode, "echo") == 0)
        return child_echo();
    if (strcmp(mode, "raw-exit") == 0)
        return child_raw(false);
    if (strcmp(mode, "raw-signal") == 0)
        return child_raw(true);
    return 99;
}

/* ---- the parent side ------------------------------------------------------------------ */

/* Runs this binary as a child with fds 0/1/2 from in/out/err (-1: keep ours). */
static pid_t spawn(const char *mode, int in, int out, int err)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fds[3] = {in, out, err};
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0 && fds[i] != i && dup2(fds[i], i) < 0)
                _exit(90);
        /* the raw children end without freeing their loop on purpose */
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
        execl(self_path, self_path, "--child", mode, (char *)NULL);
        _exit(91);
    }
    return pid;
}

static int wait_child(pid_t pid)
{
    int status;
    uint64_t deadline = th_now_ms() + 15000;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        assert_true(r >= 0);
        if (r == pid)
            break;
        if (th_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("child did not finish");
        }
        usleep(2000);
    }
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

typedef struct {
    char *p;
    size_t len, cap;
} dbuf;

static void dbuf_add(dbuf *b, const char *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

/* Feeds data to wfd (closed when all is written; -1: nothing to feed) while collecting rfd
 * and efd until both reach EOF.  Bounded by 15 s. */
static void exchange(int wfd, const char *data, size_t len, int rfd, dbuf *out, int efd, dbuf *err)
{
    size_t off = 0;
    uint64_t deadline = th_now_ms() + 15000;
    if (wfd >= 0)
        fcntl(wfd, F_SETFL, O_NONBLOCK);
    while (rfd >= 0 || efd >= 0) {
        assert_true(th_now_ms() < deadline);
        if (wfd >= 0 && off == len) {
            close(wfd);
            wfd = -1;
        }
        struct pollfd p[3] = {{rfd, POLLIN, 0}, {efd, POLLIN, 0}, {wfd, POLLOUT, 0}};
        if (poll(p, 3, 100) <= 0)
            continue;
        char buf[8192];
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n > 0) {
                dbuf_add(i ? err : out, buf, (size_t)n);
            } else {
                close(p[i].fd);
                *(i ? &efd : &rfd) = -1;
            }
        }
        if (wfd >= 0 && p[2].revents) {
            ssize_t n = write(wfd, data + off, len - off < 65536 ? len - off : 65536);
            if (n > 0)
                off += (size_t)n;
            else if (errno != EAGAIN)
                fail_msg("write to child: %s", strerror(errno));
        }
    }
}

/* The child exited with 0 (else its stderr tells why) and said "done". */
static void expect_ok(int rc, const dbuf *err)
{
    if (rc != 0)
        fail_msg("child exit %d: %.*s", rc, (int)err->len, err->p ? err->p : "");
}

static void expect_done(const dbuf *err)
{
    if (err->len != 5 || memcmp(err->p, "done\n", 5) != 0)
        fail_msg("child stderr: %.*s", (int)err->len, err->p ? err->p : "");
}

static char *temp_file(size_t len, uint64_t seed, char **data)
{
    static char path[64];
    strcpy(path, "/tmp/rill-tty-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    *data = malloc(len);
    th_fill(*data, len, seed);
    assert_int_equal(write(fd, *data, len), (ssize_t)len);
    close(fd);
    return path;
}

/* stdin from a regular file (thread-pool transport), stdout and stderr to pipes. */
static void test_stdio_file_to_pipe(void **state)
{
    (void)state;
    int before = th_fd_count();
    char *data;
    const size_t len = 300 * 1024;
    char *path = temp_file(len, 7, &data);
    int in = open(path, O_RDONLY | O_CLOEXEC), o[2], e[2];
    assert_true(in >= 0);
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    pid_t pid = spawn("echo", in, o[1], e[1]);
    close(in);
    close(o[1]);
    close(e[1]);
    dbuf out = {0}, err = {0};
    exchange(-1, NULL, 0, o[0], &out, e[0], &err);
    int rc = wait_child(pid);
    unlink(path);
    expect_ok(rc, &err);
    expect_done(&err);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.p, data, len);
    free(data), free(out.p), free(err.p);
    assert_int_equal(th_fd_count(), before);
}

/* stdin and stdout are pipes: data streams through, and the child's own fds 0 and 1 stay
 * blocking (rill reopened the pipes instead of changing the shared descriptions). */
static void test_stdio_pipe_to_pipe(void **state)
{
    (void)state;
    int before = th_fd_count();
    const size_t len = 1024 * 1024;
    char *data = malloc(len);
    th_fill(data, len, 11);
    int i[2], o[2], e[2];
    assert_int_equal(pipe2(i, O_CLOEXEC), 0);
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    pid_t pid = spawn("echo", i[0], o[1], e[1]);
    close(i[0]);
    close(o[1]);
    close(e[1]);
    dbuf out = {0}, err = {0};
    exchange(i[1], data, len, o[0], &out, e[0], &err);
    expect_ok(wait_child(pid), &err);
    expect_done(&err);
    assert_int_equal(out.len, len);
    assert_int_equal(th_hash(TH_HASH_INIT, out.p, len), th_hash(TH_HASH_INIT, data, len));
    free(data), free(out.p), free(err.p);
    assert_int_equal(th_fd_count(), before);
}

/* /dev/null cannot be polled: as stdin it gives EOF at once, as stdout it swallows. */
static void test_stdio_dev_null(void **state)
{
    (void)state;
    int null_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int null_out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    int o[2], e[2], i[2];
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    pid_t pid = spawn("echo", null_in, o[1], e[1]);
    close(o[1]);
    close(e[1]);
    dbuf out = {0}, err = {0};
    exchange(-1, NULL, 0, o[0], &out, e[0], &err);
    expect_ok(wait_child(pid), &err);
    assert_int_equal(out.len, 0);
    expect_done(&err);
    free(err.p);

    assert_int_equal(pipe2(i, O_CLOEXEC), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    pid = spawn("echo", i[0], null_out, e[1]);
    close(i[0]);
    close(e[1]);
    err = (dbuf){0};
    exchange(i[1], "into the void", 13, -1, NULL, e[0], &err);
    expect_ok(wait_child(pid), &err);
    expect_done(&err);
    free(err.p);
    close(null_in);
    close(null_out);
}

static ssize_t read_timed(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return -1;
    return read(fd, buf, cap);
}

/* stdin is a terminal (a pty slave, not our controlling tty), stdout a socket: a line typed
 * on the master comes out of the socket, and ^D at the start of a line is EOF. */
static void test_stdio_tty_and_socket(void **state)
{
    (void)state;
    int m, sl, sv[2], e[2];
    assert_int_equal(openpty(&m, &sl, NULL, NULL, NULL), 0);
    fcntl(m, F_SETFD, FD_CLOEXEC);
    fcntl(sl, F_SETFD, FD_CLOEXEC);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    pid_t pid = spawn("echo", sl, sv[1], e[1]);
    close(sv[1]);
    close(e[1]);
    assert_int_equal(write(m, "typed line\n", 11), 11);
    char buf[64];
    size_t got = 0;
    uint64_t deadline = th_now_ms() + 10000;
    while (got < 11 && th_now_ms() < deadline) {
        ssize_t n = read_timed(sv[0], buf + got, sizeof buf - got, 100);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "typed line\n", 11);
    assert_int_equal(write(m, "\x04", 1), 1); /* VEOF */
    dbuf err = {0}, rest = {0};
    exchange(-1, NULL, 0, sv[0], &rest, e[0], &err);
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(rest.len, 0);
    expect_done(&err);
    free(err.p);
    close(m);
    close(sl);
}

/* ---- terminals directly --------------------------------------------------------------- */

typedef struct {
    char buf[128];
    size_t len;
} sink;

static void on_sink(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)s;
    sink *k = arg;
    assert_true(k->len + ev->len <= sizeof k->buf);
    memcpy(k->buf + k->len, ev->data, ev->len);
    k->len += ev->len;
}

static void open_pty(int *m, int *sl)
{
    assert_int_equal(openpty(m, sl, NULL, NULL, NULL), 0);
    fcntl(*m, F_SETFD, FD_CLOEXEC);
    fcntl(*sl, F_SETFD, FD_CLOEXEC);
}

static void test_tty_read_write_winsize(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    int m, sl;
    open_pty(&m, &sl);
    rill_stream *t = rill_tty_open(loop, sl, true);
    assert_non_null(t);
    int fd = rill_stream_fd(t);
    assert_true(fd >= 0 && fd != sl);
    assert_true(nonblocking(fd));
    assert_false(nonblocking(sl)); /* the caller's description is left alone */
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_true(rill_stream_readable(t) && rill_stream_writable(t));
    assert_int_equal(rill_stream_timeout(t), 0);

    sink in = {0};
    assert_non_null(rill_stream_on(t, RILL_EV_READ, on_sink, &in));
    assert_int_equal(rill_stream_start(t), 0);
    assert_int_equal(write(m, "a line\n", 7), 7);
    TH_RUN_UNTIL(loop, in.len == 7, 5000);
    assert_memory_equal(in.buf, "a line\n", 7);
    assert_true(rill_stream_write(t, "to master", 9, NULL, NULL) >= 0);
    TH_RUN_UNTIL(loop, rill_stream_write_queue_size(t) == 0, 5000);
    char buf[64];
    /* the master first sees the echo of what it typed ("a line\r\n"), then our bytes */
    size_t got = 0;
    while (got < 9 + 8) {
        ssize_t n = read_timed(m, buf + got, sizeof buf - got, 2000);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf + 8, "to master", 9);

    struct winsize ws = {.ws_row = 40, .ws_col = 100};
    assert_int_equal(ioctl(m, TIOCSWINSZ, &ws), 0);
    int cols = 0, rows = 0;
    assert_int_equal(rill_tty_winsize(t, &cols, &rows), 0);
    assert_int_equal(cols, 100);
    assert_int_equal(rows, 40);
    assert_int_equal(rill_tty_winsize(t, NULL, &rows), 0);

    /* write-only terminal streams, and the master side (a dup: no new pty) */
    rill_stream *w = rill_tty_open(loop, sl, false);
    assert_non_null(w);
    assert_false(rill_stream_readable(w));
    assert_true(rill_stream_writable(w));
    rill_stream *mt = rill_tty_open(loop, m, true);
    assert_non_null(mt);
    assert_true(nonblocking(m)); /* a master cannot be reopened: its description is shared */
    rill_stream_close(mt);
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) & ~O_NONBLOCK);

    rill_stream_close(w);
    rill_stream_close(t);
    assert_int_equal(rill_tty_winsize(t, &cols, &rows), RILL_ECLOSED);
    th_loop_free(loop);
    close(m);
    close(sl);
    assert_int_equal(th_fd_count(), before);
}

static void test_tty_bad_input(void **state)
{
    (void)state;
    int before = th_fd_count();
    rill_loop *loop = th_loop_new();
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    errno = 0;
    assert_null(rill_tty_open(loop, p[0], true));
    assert_int_equal(errno, ENOTTY);
    errno = 0;
    assert_null(rill_tty_open(loop, 9999, true));
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_null(rill_tty_open(NULL, 0, true));
    assert_int_equal(errno, EINVAL);
    rill_stream *r = rill_fd_open(loop, p[0], 0);
    assert_non_null(r);
    int cols;
    assert_int_equal(rill_tty_winsize(r, &cols, NULL), RILL_EINVAL);
    assert_int_equal(rill_tty_set_raw(r, true), RILL_EINVAL);
    assert_int_equal(rill_tty_set_raw(NULL, true), RILL_EINVAL);
    assert_int_equal(rill_tty_winsize(NULL, NULL, NULL), RILL_EINVAL);
    errno = 0;
    assert_null(rill_stdin(NULL));
    assert_int_equal(errno, EINVAL);
    rill_stream_close(r);
    close(p[1]);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), before);
}

static void assert_same_mode(int fd, const struct termios *want)
{
    struct termios t;
    assert_int_equal(tcgetattr(fd, &t), 0);
    assert_int_equal(t.c_iflag, want->c_iflag);
    assert_int_equal(t.c_oflag, want->c_oflag);
    assert_int_equal(t.c_cflag, want->c_cflag);
    assert_int_equal(t.c_lflag, want->c_lflag);
    assert_memory_equal(t.c_cc, want->c_cc, sizeof t.c_cc);
}

static void test_tty_raw_mode_and_reset(void **state)
{
    (void)state;
    rill_loop *loop = th_loop_new();
    int m, sl;
    open_pty(&m, &sl);
    struct termios orig, t;
    assert_int_equal(tcgetattr(sl, &orig), 0);
    rill_stream *s = rill_tty_open(loop, sl, true);
    assert_non_null(s);
    assert_int_equal(rill_tty_set_raw(s, false), 0); /* never changed: nothing to do */
    assert_same_mode(sl, &orig);

    assert_int_equal(rill_tty_set_raw(s, true), 0);
    assert_int_equal(tcgetattr(sl, &t), 0);
    assert_false(t.c_lflag & (ICANON | ECHO | ISIG));
    assert_int_equal(t.c_cc[VMIN], 1);
    assert_int_equal(rill_tty_set_raw(s, true), 0); /* twice keeps the first original */
    /* raw: a byte arrives without a newline */
    sink in = {0};
    assert_non_null(rill_stream_on(s, RILL_EV_READ, on_sink, &in));
    assert_int_equal(rill_stream_start(s), 0);
    assert_int_equal(write(m, "k", 1), 1);
    TH_RUN_UNTIL(loop, in.len == 1, 5000);
    assert_int_equal(in.buf[0], 'k');

    assert_int_equal(rill_tty_set_raw(s, false), 0);
    assert_same_mode(sl, &orig);
    assert_int_equal(rill_tty_set_raw(s, true), 0);
    rill_tty_reset();
    assert_same_mode(sl, &orig);
    rill_tty_reset(); /* twice is harmless */

    /* two streams on one terminal: the original is the one before the first change */
    rill_stream *s2 = rill_tty_open(loop, sl, false);
    assert_non_null(s2);
    assert_int_equal(rill_tty_set_raw(s, true), 0);
    assert_int_equal(rill_tty_set_raw(s2, true), 0);
    rill_tty_reset();
    assert_same_mode(sl, &orig);

    /* closing a stream puts back what it changed */
    assert_int_equal(rill_tty_set_raw(s2, true), 0);
    rill_stream_close(s2);
    assert_same_mode(sl, &orig);
    assert_int_equal(rill_tty_set_raw(s2, true), RILL_ECLOSED);
    assert_int_equal(rill_tty_set_raw(s, true), 0);
    rill_stream_close(s);
    assert_same_mode(sl, &orig);
    th_loop_free(loop);
    close(m);
    close(sl);
}

/* A process that exits with a terminal in raw mode gets it restored by the atexit hook; one
 * that dies of a signal restores it with rill_tty_reset from its handler. */
static void test_tty_restored_at_exit(void **state)
{
    (void)state;
    const char *modes[] = {"raw-exit", "raw-signal"};
    for (int i = 0; i < 2; i++) {
        int m, sl, o[2];
        open_pty(&m, &sl);
        struct termios orig;
        assert_int_equal(tcgetattr(sl, &orig), 0);
        assert_int_equal(pipe2(o, O_CLOEXEC), 0);
        pid_t pid = spawn(modes[i], sl, o[1], -1);
        close(o[1]);
        dbuf out = {0};
        exchange(-1, NULL, 0, o[0], &out, -1, NULL);
        assert_int_equal(wait_child(pid), 0);
        assert_int_equal(out.len, 4); /* the child saw raw mode before it ended */
        assert_same_mode(sl, &orig);
        free(out.p);
        close(m);
        close(sl);
    }
}

int main(int argc, char **argv)
{
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    self_path = strchr(argv[0], '/') || n <= 0 ? argv[0] : (exe[n] = 0, exe);
    if (argc >= 3 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2]);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tty_read_write_winsize),
        cmocka_unit_test(test_tty_bad_input),
        cmocka_unit_test(test_tty_raw_mode_and_reset),
        cmocka_unit_test(test_tty_restored_at_exit),
        cmocka_unit_test(test_stdio_file_to_pipe),
        cmocka_unit_test(test_stdio_pipe_to_pipe),
        cmocka_unit_test(test_stdio_dev_null),
        cmocka_unit_test(test_stdio_tty_and_socket),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
