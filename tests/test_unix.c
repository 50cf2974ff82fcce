/* tests/test_unix.c - Unix-domain sockets: echo, credentials, file mode, stale and live
 * socket files, the abstract namespace, a full backlog, and bad input. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef th_cli cli;

/* A client recording everything (ERROR included, so an error does not close it). */
static rill_stream *cli_watch(rill_stream *s, cli *c)
{
    return th_cli_watch(s, c, true);
}

typedef struct {
    rill_server *srv;
    int conns, closes;
    rill_stream *last;
} echo_srv;

static void echo_read(rill_stream *s, const rill_event *ev, void *arg)
{
    (void)arg;
    rill_stream_write(s, ev->data, ev->len, NULL, NULL);
}

static void echo_event(rill_server *srv, rill_server_event_type type, rill_stream *conn, int err,
                       void *arg)
{
    echo_srv *e = arg;
    (void)srv;
    (void)err;
    if (type == RILL_SEV_CLOSE) {
        e->closes++;
        return;
    }
    e->conns++;
    e->last = conn;
    rill_stream_on(conn, RILL_EV_READ, echo_read, NULL);
    rill_stream_start(conn);
}

static rill_server *echo_listen(rill_loop *loop, const char *path, const rill_listen_opts *o,
                                echo_srv *e)
{
    memset(e, 0, sizeof *e);
    e->srv = rill_unix_listen(loop, path, o);
    if (e->srv) {
        rill_server_on(e->srv, RILL_SEV_CONNECTION, echo_event, e);
        rill_server_on(e->srv, RILL_SEV_CLOSE, echo_event, e);
    }
    return e->srv;
}

static void echo_close(rill_loop *loop, echo_srv *e)
{
    rill_server_close(e->srv);
    TH_RUN_UNTIL(loop, e->closes == 1, 3000);
}

static const char *tmp_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/rill-test-%d-%s.sock", (int)getpid(), tag);
    unlink(buf);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A socket of `type` bound at path and then forgotten (closed without unlinking when
 * `keep` is false: a stale file, as a crashed server leaves). */
static int bound_socket(const char *path, int type, bool keep)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    if (!keep) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- talking ------------------------------------------------------------------------------ */

static void test_echo_and_peercred(void **state)
{
    (void)state;
    int fds = th_fd_count();
    char path[108];
    tmp_path(path, sizeof path, "echo");
    rill_loop *loop = th_loop_new();
    echo_srv e;
    assert_non_null(echo_listen(loop, path, NULL, &e));
    assert_string_equal(rill_server_pipename(e.srv), path);
    assert_true(exists(path));
    cli c;
    rill_stream *s = cli_watch(rill_unix_connect(loop, path, NULL), &c);
    assert_int_equal(rill_stream_write(s, "ping", 4, NULL, NULL), 0); /* before CONNECT */
    assert_int_equal(c.connects, 0);
    TH_RUN_UNTIL(loop, c.bytes == 4, 3000);
    assert_memory_equal(c.text, "ping", 4);
    assert_int_equal(c.connects, 1);
    assert_int_equal(rill_stream_family(s), AF_UNIX);
    assert_int_equal(rill_stream_family(e.last), AF_UNIX);
    assert_int_equal(rill_stream_timeout(s), 15000);
    assert_int_equal(rill_stream_timeout(e.last), 15000);
    assert_false(rill_stream_ipc(s));

    rill_addr a;
    char text[128];
    assert_int_equal(rill_stream_peername(s, &a), 0);
    assert_true(rill_addr_format(&a, text, sizeof text) > 0);
    assert_string_equal(text, path);
    assert_int_equal(rill_server_sockname(e.srv, &a), 0);
    assert_int_equal(rill_addr_format(&a, text, sizeof text), (int)strlen(path));
    assert_string_equal(text, path);
    assert_int_equal(rill_stream_sockname(s, &a), 0); /* an unbound client: unnamed */
    assert_int_equal(rill_addr_format(&a, text, sizeof text), 0);

    pid_t pid = 0;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    assert_int_equal(rill_stream_peercred(e.last, &pid, &uid, &gid), 0);
    assert_int_equal(pid, getpid());
    assert_int_equal(uid, getuid());
    assert_int_equal(gid, getgid());
    pid = 0;
    assert_int_equal(rill_stream_peercred(s, &pid, NULL, NULL), 0);
    assert_int_equal(pid, getpid());

    rill_stream_close(s);
    echo_close(loop, &e);
    assert_false(exists(path)); /* removed on close */
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

static void test_abstract(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@rill-test-%d", (int)getpid());
    rill_loop *loop = th_loop_new();
    echo_srv e, f;
    assert_non_null(echo_listen(loop, name, NULL, &e));
    assert_string_equal(rill_server_pipename(e.srv), name);
    assert_false(exists(name)); /* no file, in either spelling */
    assert_false(exists(name + 1));
    errno = 0;
    assert_null(echo_listen(loop, name, NULL, &f));
    assert_int_equal(errno, EADDRINUSE);
    cli c;
    rill_stream *s = cli_watch(rill_unix_connect(loop, name, NULL), &c);
    rill_stream_write(s, "abs", 3, NULL, NULL);
    TH_RUN_UNTIL(loop, c.bytes == 3, 3000);
    rill_addr a;
    char text[128];
    assert_int_equal(rill_stream_peername(s, &a), 0);
    assert_true(rill_addr_format(&a, text, sizeof text) > 0);
    assert_string_equal(text, name);
    rill_stream_close(s);
    echo_close(loop, &e);
    th_loop_free(loop);
}

static void test_ipc_flag(void **state)
{
    (void)state;
    char path[108];
    tmp_path(path, sizeof path, "ipc");
    rill_loop *loop = th_loop_new();
    echo_srv e;
    rill_listen_opts lo = {.ipc = true};
    assert_non_null(echo_listen(loop, path, &lo, &e));
    rill_connect_opts co = {.ipc = true};
    cli c;
    rill_stream *s = cli_watch(rill_unix_connect(loop, path, &co), &c);
    TH_RUN_UNTIL(loop, c.connects == 1 && e.conns == 1, 3000);
    assert_true(rill_stream_ipc(s));
    assert_true(rill_stream_ipc(e.last));
    rill_stream_close(s);
    echo_close(loop, &e);
    th_loop_free(loop);
}

/* ---- the socket file ---------------------------------------------------------------------- */

static void test_mode(void **state)
{
    (void)state;
    char path[108];
    tmp_path(path, sizeof path, "mode");
    rill_loop *loop = th_loop_new();
    echo_srv e;
    const unsigned modes[] = {0600, 0660, 0777};
    for (int i = 0; i < 3; i++) {
        rill_listen_opts o = {.mode = modes[i]};
        assert_non_null(echo_listen(loop, path, &o, &e));
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, modes[i]);
        echo_close(loop, &e);
    }
    mode_t um = umask(022);
    assert_non_null(echo_listen(loop, path, NULL, &e)); /* mode 0: the umask decides */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    umask(um);
    echo_close(loop, &e);
    th_loop_free(loop);
}

static void test_stale_and_live(void **state)
{
    (void)state;
    int fds = th_fd_count();
    char path[108];
    tmp_path(path, sizeof path, "stale");
    rill_loop *loop = th_loop_new();
    echo_srv e, f;
    bound_socket(path, SOCK_STREAM, false); /* a dead server's file */
    assert_true(exists(path));
    assert_non_null(echo_listen(loop, path, NULL, &e)); /* replaced */
    errno = 0;
    assert_null(echo_listen(loop, path, NULL, &f)); /* live: refused, and left alone */
    assert_int_equal(errno, EADDRINUSE);
    cli c;
    rill_stream *s = cli_watch(rill_unix_connect(loop, path, NULL), &c);
    TH_RUN_UNTIL(loop, c.connects == 1 && e.conns == 1, 3000);
    rill_stream_close(s);
    echo_close(loop, &e);
    assert_false(exists(path));

    /* Not a socket file, or a socket some process still holds: never removed. */
    FILE *fp = fopen(path, "w");
    fputs("precious", fp);
    fclose(fp);
    errno = 0;
    assert_null(echo_listen(loop, path, NULL, &f));
    assert_int_equal(errno, EADDRINUSE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    unlink(path);
    int dg = bound_socket(path, SOCK_DGRAM, true);
    errno = 0;
    assert_null(echo_listen(loop, path, NULL, &f));
    assert_int_equal(errno, EADDRINUSE);
    assert_true(exists(path));
    close(dg);
    unlink(path);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

/* Close removes the socket file only while it is still the server's own. */
static void test_replaced_file_survives_close(void **state)
{
    (void)state;
    char path[108];
    tmp_path(path, sizeof path, "replaced");
    rill_loop *loop = th_loop_new();
    echo_srv e;
    assert_non_null(echo_listen(loop, path, NULL, &e));
    unlink(path);
    FILE *fp = fopen(path, "w");
    fclose(fp);
    echo_close(loop, &e);
    assert_true(exists(path));
    unlink(path);
    th_loop_free(loop);
}

/* ---- connecting to a busy or absent listener ------------------------------------------ */

/* A Unix connect to a full backlog fails with EAGAIN at once; the client retries until
 * the listener takes connections again, or until the timeout. */
static void test_full_backlog(void **state)
{
    (void)state;
    int fds = th_fd_count();
    char path[108];
    tmp_path(path, sizeof path, "backlog");
    int lfd = bound_socket(path, SOCK_STREAM, true);
    assert_int_equal(listen(lfd, 0), 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fill[8], nfill = 0;
    for (; nfill < 8; nfill++) {
        fill[nfill] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (connect(fill[nfill], (struct sockaddr *)&sa, sizeof sa) < 0) {
            assert_int_equal(errno, EAGAIN);
            close(fill[nfill]);
            break;
        }
    }
    assert_true(nfill >= 1 && nfill < 8);
    rill_loop *loop = th_loop_new();
    cli c, d;
    rill_connect_opts quick = {.timeout_ms = 150};
    cli_watch(rill_unix_connect(loop, path, &quick), &d);
    rill_stream *s = cli_watch(rill_unix_connect(loop, path, NULL), &c);
    TH_RUN_UNTIL(loop, d.closes == 1, 3000);
    assert_int_equal(d.last_err, RILL_ETIMEDOUT);
    assert_int_equal(c.connects, 0);
    int a = accept(lfd, NULL, NULL); /* room for one more */
    assert_true(a >= 0);
    TH_RUN_UNTIL(loop, c.connects == 1, 3000);
    rill_stream_close(s);
    TH_RUN_UNTIL(loop, c.closes == 1, 3000);
    th_loop_free(loop);
    close(a);
    while (nfill > 0)
        close(fill[--nfill]);
    close(lfd);
    unlink(path);
    assert_int_equal(th_fd_count(), fds);
}

static void expect_connect_error(rill_loop *loop, const char *path, int want)
{
    cli c;
    rill_stream *s = rill_stream_ref(cli_watch(rill_unix_connect(loop, path, NULL), &c));
    TH_RUN_UNTIL(loop, c.closes == 1, 3000);
    assert_int_equal(c.errors, 1);
    if (c.last_err != want)
        fail_msg("%s: got %s, want %s", path, rill_err_name(c.last_err), rill_err_name(want));
    assert_int_equal(c.connects, 0);
    assert_int_equal(rill_stream_write(s, "x", 1, NULL, NULL), RILL_ECLOSED);
    rill_stream_unref(s);
}

static void test_bad_input(void **state)
{
    (void)state;
    int fds = th_fd_count();
    rill_loop *loop = th_loop_new();
    char longpath[120], path[108];
    memset(longpath, 'a', sizeof longpath);
    longpath[0] = '/';
    longpath[108] = '\0'; /* 108 characters: no room for the NUL */
    errno = 0;
    assert_null(rill_unix_connect(loop, longpath, NULL));
    assert_int_equal(errno, ENAMETOOLONG);
    errno = 0;
    assert_null(rill_unix_listen(loop, longpath, NULL));
    assert_int_equal(errno, ENAMETOOLONG);
    longpath[0] = '@'; /* an abstract name may use all 108 bytes (its '@' is the NUL) */
    /* unique per process: the suites of both backends run at the same time */
    int tag = snprintf(longpath + 1, 32, "rill-test-%d-", (int)getpid());
    longpath[1 + tag] = 'a';
    echo_srv e;
    assert_non_null(echo_listen(loop, longpath, NULL, &e));
    echo_close(loop, &e);
    longpath[108] = 'a';
    longpath[109] = '\0';
    errno = 0;
    assert_null(rill_unix_listen(loop, longpath, NULL));
    assert_int_equal(errno, ENAMETOOLONG);
    const char *bad[] = {NULL, "", "@"};
    for (int i = 0; i < 3; i++) {
        errno = 0;
        assert_null(rill_unix_connect(loop, bad[i], NULL));
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_null(rill_unix_listen(loop, bad[i], NULL));
        assert_int_equal(errno, EINVAL);
    }
    rill_connect_opts src = {.source_port = 80};
    errno = 0;
    assert_null(rill_unix_connect(loop, "/tmp/x", &src));
    assert_int_equal(errno, EINVAL);

    expect_connect_error(loop, tmp_path(path, sizeof path, "absent"), RILL_ENOENT);
    FILE *fp = fopen(path, "w"); /* a regular file: nobody listens there */
    fclose(fp);
    expect_connect_error(loop, path, RILL_ECONNREFUSED);
    unlink(path);
    int dg = bound_socket(path, SOCK_DGRAM, true); /* the wrong kind of socket */
    expect_connect_error(loop, path, RILL_EPROTOTYPE);
    close(dg);
    unlink(path);
    th_loop_free(loop);
    assert_int_equal(th_fd_count(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_peercred),
        cmocka_unit_test(test_abstract),
        cmocka_unit_test(test_ipc_flag),
        cmocka_unit_test(test_mode),
        cmocka_unit_test(test_stale_and_live),
        cmocka_unit_test(test_replaced_file_survives_close),
        cmocka_unit_test(test_full_backlog),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
