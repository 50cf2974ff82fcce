/* src/unix.c - Unix-domain stream sockets: clients, and listeners with a file mode,
 * stale-file replacement and Linux's abstract namespace ("@name"). */
#include "sock.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)
#define DEFAULT_BACKLOG 511

/* path as a socket address: "/file", "relative/file" or "@abstract". */
static int unix_addr(const char *path, rill_addr *out)
{
    if (!path || !*path || (path[0] == '@' && !path[1]))
        return RILL_EINVAL;
    struct sockaddr_un sa = {0};
    bool abstract = path[0] == '@';
    size_t n = strlen(path);
    /* A file name needs its NUL inside sun_path; an abstract name (whose '@' becomes the
     * leading NUL byte) may fill it. */
    if (n > sizeof sa.sun_path || (!abstract && n == sizeof sa.sun_path))
        return RILL_ENAMETOOLONG;
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (abstract)
        sa.sun_path[0] = '\0';
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, &sa, sizeof sa);
    out->len = (socklen_t)(SUN_OFF + n + !abstract);
    return 0;
}

rill_stream *rill_unix_connect(rill_loop *loop, const char *path, const rill_connect_opts *opts)
{
    rill_addr a;
    int rc = unix_addr(path, &a);
    if (rc == 0 && (!loop || (opts && (opts->source_host || opts->source_port))))
        rc = RILL_EINVAL; /* no local address to bind for a Unix client */
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    return rill__sock_connect(loop, &a, 1, NULL, opts);
}

/* Is a server answering at addr?  0 no (the file is stale), RILL_EADDRINUSE yes. */
static int probe(const rill_addr *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rill__errno();
    int rc = connect(fd, (const struct sockaddr *)&addr->ss, addr->len);
    int e = rc < 0 ? errno : 0;
    close(fd);
    return e == ECONNREFUSED || e == ENOENT ? 0 : RILL_EADDRINUSE;
}

/* Binds, replacing a socket file that no server answers on any more (left by one that
 * died).  Anything that is not a socket file is never removed. */
static int bind_path(int fd, const rill_addr *addr, const char *path)
{
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == 0)
        return 0;
    if (errno != EADDRINUSE || path[0] == '@')
        return rill__errno();
    struct stat st;
    int rc = probe(addr);
    if (rc < 0)
        return rc;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        return RILL_EADDRINUSE;
    if (unlink(path) < 0 && errno != ENOENT)
        return rill__errno();
    return bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 ? rill__errno() : 0;
}

/* Binds and listens.  The mode is set between bind and listen: until listen, a client's
 * connect is refused, so nobody can get in under the umask's permissions. */
static int listen_path(int fd, const rill_addr *addr, const char *path,
                       const rill_listen_opts *opts)
{
    int rc = bind_path(fd, addr, path);
    if (rc < 0)
        return rc;
    int backlog = opts && opts->backlog ? opts->backlog : DEFAULT_BACKLOG;
    if ((path[0] != '@' && opts && opts->mode && chmod(path, opts->mode & 07777) < 0) ||
        listen(fd, backlog) < 0) {
        rc = rill__errno();
        if (path[0] != '@')
            unlink(path);
    }
    return rc;
}

rill_server *rill_unix_listen(rill_loop *loop, const char *path, const rill_listen_opts *opts)
{
    rill_addr a;
    int rc = unix_addr(path, &a);
    if (rc == 0 && (!loop || (opts && opts->backlog < 0)))
        rc = RILL_EINVAL;
    int fd = -1;
    if (rc == 0 && (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        rc = rill__errno();
    if (rc == 0 && (rc = listen_path(fd, &a, path, opts)) < 0)
        close(fd);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    unsigned flags = opts && opts->ipc ? RILL_IPC : 0;
    return rill__server_new(loop, fd, AF_UNIX, path, path[0] != '@', flags);
}
