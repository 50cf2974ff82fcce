/* src/fd.c - streams over existing fds: pipes, socketpairs, sockets and character devices. */
#include "internal.h"
#include "ipc.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

const rill__transport rill__fd_transport = {.name = "fd"};
static const rill__transport sock_transport = {.name = "socket", .flags = RILL__TP_SOCKET};

int rill__fd_prepare(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return rill__errno();
    int fdf = fcntl(fd, F_GETFD);
    if (fdf < 0 || (!(fdf & FD_CLOEXEC) && fcntl(fd, F_SETFD, fdf | FD_CLOEXEC) < 0))
        return rill__errno();
    return 0;
}

static int sock_family(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return AF_UNSPEC;
    return ss.ss_family;
}

rill_stream *rill__fd_stream(rill_loop *loop, int fd, unsigned flags, int family)
{
    uint32_t sf = rill__dir_sflags(flags) | (flags & RILL_IPC ? RILL__S_IPC : 0);
    const rill__transport *tp = family != AF_UNSPEC ? &sock_transport : &rill__fd_transport;
    if (family != AF_UNSPEC && !(flags & RILL__FD_NOT_STREAM))
        tp = rill__sock_tp(loop, tp); /* a stream socket: through the ring on a uring loop */
    if ((flags & RILL_IPC) && family == AF_UNIX)
        tp = &rill__ipc_transport; /* recvmsg/sendmsg with SCM_RIGHTS */
    rill_stream *s = rill__stream_new(loop, tp, fd, sf);
    if (s)
        s->family = family;
    return s;
}

int rill__fd_direction(int fd, unsigned *flags)
{
    int acc = fcntl(fd, F_GETFL) & O_ACCMODE;
    if (acc == O_RDONLY)
        *flags |= RILL_READONLY;
    else if (acc == O_WRONLY)
        *flags |= RILL_WRITEONLY;
    if ((*flags & RILL_READONLY) && (*flags & RILL_WRITEONLY))
        return RILL_EBADF; /* asked for a direction the fd was not opened for */
    return 0;
}

rill_stream *rill_fd_open(rill_loop *loop, int fd, unsigned flags)
{
    struct stat st;
    if (!loop || (flags & RILL_READONLY && flags & RILL_WRITEONLY)) {
        errno = EINVAL;
        return NULL;
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        errno = EBADF;
        return NULL;
    }
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        errno = EPERM; /* always "ready": the poller cannot watch it (use rill_file_open) */
        return NULL;
    }
    int rc = rill__fd_direction(fd, &flags);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    int family = S_ISSOCK(st.st_mode) ? sock_family(fd) : AF_UNSPEC;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (family != AF_UNSPEC &&
        (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_STREAM))
        flags |= RILL__FD_NOT_STREAM; /* datagrams keep their boundaries: one read each */
    if ((flags & RILL_IPC) && family != AF_UNIX) {
        errno = EINVAL;
        return NULL;
    }
    rc = rill__fd_prepare(fd);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    return rill__fd_stream(loop, fd, flags, family);
}

int rill_stream_pair(rill_loop *loop, rill_stream *out[2], unsigned flags)
{
    if (!loop || !out || (flags & ~RILL_IPC))
        return RILL_EINVAL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return rill__errno();
    out[0] = rill__fd_stream(loop, sv[0], flags, AF_UNIX);
    out[1] = out[0] ? rill__fd_stream(loop, sv[1], flags, AF_UNIX) : NULL;
    if (!out[1]) {
        if (out[0]) {
            rill_stream_close(out[0]); /* releases sv[0]; its CLOSE runs on the loop */
            out[0] = NULL;
        } else {
            close(sv[0]);
        }
        close(sv[1]);
        return RILL_ENOMEM;
    }
    return 0;
}
