/* src/tty.c - terminals (raw mode, window size, restoring modes at exit) and the standard
 * streams over fds 0/1/2 whatever they are.
 *
 * Non-blocking I/O needs O_NONBLOCK, a flag of the open file description, which is shared
 * with every process that inherited the fd (the shell, the other programs of a pipeline).
 * Setting it on a shared description can break them, so ttys and pipes are reopened through
 * /proc/self/fd/N: that gives a description of our own over the same terminal or pipe.
 * Where that is impossible (a pty master, whose reopening would make a new pty; sockets;
 * no /proc; a pipe with no reader left) the fd is dup'ed and O_NONBLOCK is set on the shared
 * description, as libuv does for pipes.  Regular files and /dev/null are never made
 * non-blocking: they go through the thread-pool file transport. */
#include "ipc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static void tty_close(rill_stream *s);

static const rill__transport tty_transport = {.name = "tty", .close = tty_close};

/* ---- modes the process changed -------------------------------------------------------------
 * rill_tty_reset runs from atexit and may run from a signal handler, so it takes no lock and
 * allocates nothing: it walks a fixed table whose entries are published with an atomic flag
 * after they are filled.  Changes to the table are serialised by a mutex. */

#define MAX_TTYS 16

typedef struct {
    atomic_int used; /* 1: fd's terminal was changed; orig is its mode before */
    int fd;          /* the stream's fd */
    dev_t dev;       /* the terminal, so two streams on one tty share the original */
    struct termios orig;
} saved_mode;

static saved_mode saved[MAX_TTYS];
static pthread_mutex_t saved_mu = PTHREAD_MUTEX_INITIALIZER;
static bool atexit_done;

void rill_tty_reset(void)
{
    for (int i = 0; i < MAX_TTYS; i++)
        if (atomic_load_explicit(&saved[i].used, memory_order_acquire))
            tcsetattr(saved[i].fd, TCSANOW, &saved[i].orig);
}

static void reset_at_exit(void)
{
    rill_tty_reset();
}

static saved_mode *saved_find(int fd)
{
    for (int i = 0; i < MAX_TTYS; i++)
        if (atomic_load_explicit(&saved[i].used, memory_order_relaxed) && saved[i].fd == fd)
            return &saved[i];
    return NULL;
}

/* Records fd's current mode (or the original of another stream on the same terminal). */
static int saved_add(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return rill__errno();
    saved_mode *free_slot = NULL, *same = NULL;
    for (int i = 0; i < MAX_TTYS; i++) {
        bool used = atomic_load_explicit(&saved[i].used, memory_order_relaxed);
        if (!used && !free_slot)
            free_slot = &saved[i];
        if (used && saved[i].dev == st.st_rdev && !same)
            same = &saved[i];
    }
    if (!free_slot)
        return RILL_ENOBUFS; /* the fixed table is full */
    if (same)
        free_slot->orig = same->orig;
    else if (tcgetattr(fd, &free_slot->orig) < 0)
        return rill__errno();
    free_slot->fd = fd;
    free_slot->dev = st.st_rdev;
    atomic_store_explicit(&free_slot->used, 1, memory_order_release);
    if (!atexit_done)
        atexit_done = atexit(reset_at_exit) == 0;
    return 0;
}

/* Puts fd's terminal back as it was and forgets it.  Caller holds saved_mu. */
static int saved_restore(saved_mode *m)
{
    int rc = tcsetattr(m->fd, TCSANOW, &m->orig) < 0 ? rill__errno() : 0;
    atomic_store_explicit(&m->used, 0, memory_order_release);
    return rc;
}

static bool is_tty_stream(const rill_stream *s)
{
    return s && s->tp == &tty_transport;
}

int rill_tty_set_raw(rill_stream *s, bool on)
{
    if (!is_tty_stream(s))
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    int fd = s->io.fd, rc = 0;
    pthread_mutex_lock(&saved_mu);
    saved_mode *m = saved_find(fd);
    if (!on) {
        rc = m ? saved_restore(m) : 0; /* never changed: nothing to undo */
    } else if (m || (rc = saved_add(fd)) == 0) {
        struct termios raw = saved_find(fd)->orig;
        cfmakeraw(&raw);
        raw.c_cc[VMIN] = 1; /* a read returns as soon as one byte is there */
        raw.c_cc[VTIME] = 0;
        if (tcsetattr(fd, TCSANOW, &raw) < 0)
            rc = rill__errno();
    }
    pthread_mutex_unlock(&saved_mu);
    return rc;
}

int rill_tty_winsize(rill_stream *s, int *cols, int *rows)
{
    if (!is_tty_stream(s))
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    struct winsize ws;
    if (ioctl(s->io.fd, TIOCGWINSZ, &ws) < 0)
        return rill__errno();
    if (cols)
        *cols = ws.ws_col;
    if (rows)
        *rows = ws.ws_row;
    return 0;
}

/* A closing stream puts its terminal back: its fd is about to go, and a later reset must not
 * write to whatever reuses the number. */
static void tty_close(rill_stream *s)
{
    pthread_mutex_lock(&saved_mu);
    saved_mode *m = saved_find(s->io.fd);
    if (m)
        saved_restore(m);
    pthread_mutex_unlock(&saved_mu);
    if (s->io.fd >= 0 && !(s->flags & RILL__S_STOLEN))
        close(s->io.fd);
}

/* ---- opening --------------------------------------------------------------------------- */

rill_stream *rill__tty_stream(rill_loop *loop, int fd, unsigned flags)
{
    int rc = rill__fd_direction(fd, &flags);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    if ((rc = rill__fd_prepare(fd)) < 0) {
        errno = -rc;
        return NULL;
    }
    return rill__stream_new(loop, &tty_transport, fd, rill__dir_sflags(flags));
}

/* A new open file description of what fd refers to, non-blocking, or -1.  The result is
 * checked to be the same file, so a surprise from /proc never changes what we talk to. */
static int reopen(int fd, int acc)
{
    char path[40];
    struct stat a, b;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, acc | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (nfd < 0)
        return -1;
    if (fstat(fd, &a) < 0 || fstat(nfd, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino ||
        a.st_rdev != b.st_rdev) {
        close(nfd);
        return -1;
    }
    return nfd;
}

static bool is_pty_master(int fd)
{
    int n;
    return ioctl(fd, TIOCGPTN, &n) == 0; /* only masters have a pty number to tell */
}

/* Our own fd for the caller's: reopened when that is safe, else a dup.  -1 with errno. */
static int own_fd(int fd, int acc, bool may_reopen)
{
    int nfd = may_reopen ? reopen(fd, acc) : -1;
    if (nfd < 0)
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return nfd;
}

static rill_stream *tty_open_dir(rill_loop *loop, int fd, unsigned flags)
{
    int fl = fcntl(fd, F_GETFL);
    if (!loop || fl < 0) {
        errno = loop ? EBADF : EINVAL;
        return NULL;
    }
    if (!isatty(fd)) {
        errno = ENOTTY;
        return NULL;
    }
    int nfd = own_fd(fd, fl & O_ACCMODE, !is_pty_master(fd));
    if (nfd < 0)
        return NULL;
    rill_stream *s = rill__tty_stream(loop, nfd, flags);
    if (!s) {
        int e = errno;
        close(nfd);
        errno = e;
    }
    return s;
}

rill_stream *rill_tty_open(rill_loop *loop, int fd, bool readable)
{
    return tty_open_dir(loop, fd, readable ? 0 : RILL_WRITEONLY);
}

/* ---- standard streams ------------------------------------------------------------------- */

static rill_stream *stdio_open(rill_loop *loop, int fd, unsigned dir)
{
    struct stat st;
    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        errno = EBADF;
        return NULL;
    }
    if (isatty(fd))
        return tty_open_dir(loop, fd, dir);
    /* Pipes can be reopened like ttys; sockets cannot (their dup shares O_NONBLOCK). */
    int nfd = own_fd(fd, dir == RILL_READONLY ? O_RDONLY : O_WRONLY, S_ISFIFO(st.st_mode));
    if (nfd < 0)
        return NULL;
    return rill__adopt_fd(loop, nfd, dir);
}

rill_stream *rill_stdin(rill_loop *loop)
{
    return stdio_open(loop, 0, RILL_READONLY);
}

rill_stream *rill_stdout(rill_loop *loop)
{
    return stdio_open(loop, 1, RILL_WRITEONLY);
}

rill_stream *rill_stderr(rill_loop *loop)
{
    return stdio_open(loop, 2, RILL_WRITEONLY);
}
