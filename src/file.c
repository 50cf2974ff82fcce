/* src/file.c - file streams (GIO's file IO stream): regular files and devices that cannot
 * be polled, read and written with blocking calls on the thread pool (custom.c's pool
 * transport, one call at a time so reads and writes keep the order they were made in).
 *
 * The impl given to the pool transport is the fd itself, so a file stream allocates
 * nothing of its own.  The kernel keeps the file offset: reads and writes continue where
 * the previous one stopped, and O_APPEND writes go to the end as write(2) makes them. */
#include "custom.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

static int impl_fd(void *impl)
{
    return (int)(intptr_t)impl;
}

static ssize_t file_read(void *impl, void *buf, size_t len)
{
    ssize_t n;
    do
        n = read(impl_fd(impl), buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? rill__errno() : n;
}

static ssize_t file_write(void *impl, const void *buf, size_t len)
{
    ssize_t n;
    do
        n = write(impl_fd(impl), buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? rill__errno() : n;
}

/* close(2)'s errors matter for files (a delayed write failing on NFS, a full disk): they
 * become the stream's error and close_async's result.  EINTR still closed the fd. */
static int file_close(void *impl)
{
    return close(impl_fd(impl)) < 0 && errno != EINTR ? rill__errno() : 0;
}

static const rill_transport_ops file_ops = {
    .read = file_read, .write = file_write, .shutdown = NULL, .close = file_close};

/* The fd is the caller's again when this fails (NULL, errno ENOMEM): stdio falls back on
 * it.  flags: RILL_READONLY / RILL_WRITEONLY, else both directions. */
rill_stream *rill__file_stream(rill_loop *loop, int fd, unsigned flags)
{
    if (!loop || fd < 0 || ((flags & RILL_READONLY) && (flags & RILL_WRITEONLY))) {
        errno = EINVAL;
        return NULL;
    }
    return rill__pool_stream(loop, &file_ops, (void *)(intptr_t)fd, rill__dir_sflags(flags),
                             RILL__POOL_FILE, fd);
}

static unsigned access_flags(int oflags)
{
    switch (oflags & O_ACCMODE) {
    case O_RDONLY:
        return RILL_READONLY;
    case O_WRONLY:
        return RILL_WRITEONLY;
    default:
        return 0;
    }
}

/* A device the poller can watch (a terminal, a pty, /dev/random).  Devices that are always
 * ready (/dev/null, /dev/zero) are refused by epoll with EPERM: those go to the pool.  A
 * device that may wait indefinitely must not: a pool read of a terminal nobody types into
 * never returns, and the stream's close waits for calls in progress. */
static bool pollable_device(int fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return false; /* cannot tell: the pool serves every device */
    struct epoll_event ev = {.events = EPOLLIN};
    bool ok = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
    close(ep);
    return ok;
}

/* FIFOs, sockets and pollable devices get an fd stream.  The open never blocks (a FIFO
 * without a writer would): O_NONBLOCK is set for it and dropped afterwards for the files
 * the pool reads with blocking calls. */
static rill_stream *wrap(rill_loop *loop, int fd, int oflags)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return NULL;
    }
    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
        (S_ISCHR(st.st_mode) && pollable_device(fd)))
        return rill_fd_open(loop, fd, access_flags(oflags));
    if (!(oflags & O_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        return NULL;
    return rill__file_stream(loop, fd, access_flags(oflags));
}

rill_stream *rill_file_open(rill_loop *loop, const char *path, int flags, int mode)
{
    if (!loop || !path) {
        errno = EINVAL;
        return NULL;
    }
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC | O_NONBLOCK, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return NULL; /* errno from open(2): ENOENT, EACCES, EEXIST, ... */
    rill_stream *s = wrap(loop, fd, flags);
    if (!s) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return s;
}
