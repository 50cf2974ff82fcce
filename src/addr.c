/* src/addr.c - socket addresses as text ("1.2.3.4:80", "[::1]:80", Unix paths) and the
 * address and credential queries of socket streams, and their read low water mark. */
#include "internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

/* "0".."65535", decimal digits only: no sign, no spaces, no hex, at most 5 digits. */
static int parse_port(const char *p, uint16_t *out)
{
    unsigned v = 0;
    size_t n = 0;
    for (; p[n]; n++) {
        if (p[n] < '0' || p[n] > '9' || n == 5)
            return RILL_EINVAL;
        v = v * 10 + (unsigned)(p[n] - '0');
    }
    if (n == 0 || v > 65535)
        return RILL_EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* "name" or "index" after the '%' of a link-local IPv6 address. */
static int parse_scope(const char *p, uint32_t *out)
{
    if (!*p)
        return RILL_EINVAL;
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (*end == '\0' && p[0] >= '0' && p[0] <= '9' && v <= UINT32_MAX) {
        *out = (uint32_t)v;
        return 0;
    }
    unsigned idx = if_nametoindex(p);
    if (!idx)
        return RILL_EINVAL;
    *out = idx;
    return 0;
}

static int parse_ip6(char *host, uint16_t port, rill_addr *out)
{
    struct sockaddr_in6 sa = {0};
    char *pct = strchr(host, '%');
    if (pct) {
        *pct = '\0';
        if (parse_scope(pct + 1, &sa.sin6_scope_id) < 0)
            return RILL_EINVAL;
    }
    if (inet_pton(AF_INET6, host, &sa.sin6_addr) != 1)
        return RILL_EINVAL;
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    memcpy(&out->ss, &sa, sizeof sa);
    out->len = sizeof sa;
    return 0;
}

static int parse_ip4(const char *host, uint16_t port, rill_addr *out)
{
    struct sockaddr_in sa = {0};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return RILL_EINVAL;
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    memcpy(&out->ss, &sa, sizeof sa);
    out->len = sizeof sa;
    return 0;
}

/* "/path" or "@abstract": what rill_addr_format writes for Unix sockets, so that
 * formatting and parsing round-trip for every family. */
static int parse_unix(const char *path, rill_addr *out)
{
    struct sockaddr_un sa = {0};
    size_t n = strlen(path);
    bool abstract = path[0] == '@';
    /* A file name needs room for its NUL; an abstract name has none and may fill sun_path
     * (as rill_unix_listen allows and rill_addr_format writes). */
    if (n > sizeof sa.sun_path || (!abstract && n == sizeof sa.sun_path) || (abstract && n < 2))
        return RILL_EINVAL;
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* Linux's abstract namespace: no file, no NUL at the end */
    memcpy(&out->ss, &sa, sizeof sa);
    out->len = (socklen_t)(SUN_OFF + n + (path[0] == '@' ? 0 : 1));
    return 0;
}

int rill_addr_parse(const char *hp, rill_addr *out)
{
    if (!hp || !out)
        return RILL_EINVAL;
    if (hp[0] == '/' || hp[0] == '@')
        return parse_unix(hp, out);
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    const char *colon, *start = hp;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':')
            return RILL_EINVAL;
        start = hp + 1;
        colon = close + 1;
    } else {
        colon = strchr(hp, ':');
        if (!colon || strchr(colon + 1, ':'))
            return RILL_EINVAL; /* none, or an IPv6 address without brackets */
    }
    size_t hlen = (size_t)(colon - start) - (hp[0] == '[' ? 1 : 0);
    uint16_t port;
    if (hlen == 0 || hlen >= sizeof host || parse_port(colon + 1, &port) < 0)
        return RILL_EINVAL;
    memcpy(host, start, hlen);
    host[hlen] = '\0';
    return hp[0] == '[' ? parse_ip6(host, port, out) : parse_ip4(host, port, out);
}

static int format_unix(const struct sockaddr_un *sa, socklen_t len, char *tmp, size_t cap)
{
    if (len < SUN_OFF)
        return RILL_EINVAL;
    size_t n = len - SUN_OFF;
    if (n > sizeof sa->sun_path || n >= cap)
        return RILL_EINVAL;
    if (n == 0)
        return 0; /* an unnamed socket (a socketpair, an unbound client) */
    if (sa->sun_path[0] == '\0') {
        tmp[0] = '@';
        memcpy(tmp + 1, sa->sun_path + 1, n - 1);
        return (int)n;
    }
    n = strnlen(sa->sun_path, n);
    memcpy(tmp, sa->sun_path, n);
    return (int)n;
}

static int format_ip6(const struct sockaddr_in6 *sa, char *tmp, size_t cap)
{
    char ip[INET6_ADDRSTRLEN], scope[IF_NAMESIZE + 1] = "";
    inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof ip);
    if (sa->sin6_scope_id) {
        char name[IF_NAMESIZE];
        if (if_indextoname(sa->sin6_scope_id, name))
            snprintf(scope, sizeof scope, "%%%s", name);
        else
            snprintf(scope, sizeof scope, "%%%u", (unsigned)sa->sin6_scope_id);
    }
    return snprintf(tmp, cap, "[%s%s]:%u", ip, scope, (unsigned)ntohs(sa->sin6_port));
}

static int format_ip4(const struct sockaddr_in *sa, char *tmp, size_t cap)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
    return snprintf(tmp, cap, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
}

int rill_addr_format(const rill_addr *addr, char *buf, size_t cap)
{
    if (!addr || (!buf && cap))
        return RILL_EINVAL;
    char tmp[sizeof(struct sockaddr_un) + 8];
    const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
    int n;
    if (sa->sa_family == AF_INET && addr->len >= sizeof(struct sockaddr_in))
        n = format_ip4((const struct sockaddr_in *)sa, tmp, sizeof tmp);
    else if (sa->sa_family == AF_INET6 && addr->len >= sizeof(struct sockaddr_in6))
        n = format_ip6((const struct sockaddr_in6 *)sa, tmp, sizeof tmp);
    else if (sa->sa_family == AF_UNIX && addr->len <= sizeof(struct sockaddr_un))
        n = format_unix((const struct sockaddr_un *)sa, addr->len, tmp, sizeof tmp);
    else
        return RILL_EINVAL;
    if (n < 0)
        return n;
    if ((size_t)n >= cap)
        return RILL_ENOBUFS;
    memcpy(buf, tmp, (size_t)n);
    buf[n] = '\0';
    return n;
}

/* The stream's socket, or why there is none. */
static int stream_sock(const rill_stream *s, rill_addr *out)
{
    if (!s || !out)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if (s->io.fd < 0)
        return (s->flags & RILL__S_CONNECTING) ? RILL_ENOTCONN : RILL_EINVAL;
    memset(out, 0, sizeof *out);
    out->len = sizeof out->ss;
    return s->io.fd;
}

int rill_stream_sockname(const rill_stream *s, rill_addr *out)
{
    int fd = stream_sock(s, out);
    if (fd < 0)
        return fd;
    return getsockname(fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? rill__errno() : 0;
}

int rill_stream_peername(const rill_stream *s, rill_addr *out)
{
    int fd = stream_sock(s, out);
    if (fd < 0)
        return fd;
    return getpeername(fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? rill__errno() : 0;
}

int rill_stream_peercred(const rill_stream *s, pid_t *pid, uid_t *uid, gid_t *gid)
{
    rill_addr unused;
    int fd = stream_sock(s, &unused);
    if (fd < 0)
        return fd;
    if (s->family != AF_UNIX)
        return RILL_EINVAL; /* TCP peers have no credentials the kernel can vouch for */
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return rill__errno();
    if (pid)
        *pid = cred.pid;
    if (uid)
        *uid = cred.uid;
    if (gid)
        *gid = cred.gid;
    return 0;
}

int rill_stream_set_read_lowat(rill_stream *s, size_t bytes)
{
    rill_addr unused;
    int fd = stream_sock(s, &unused);
    if (fd < 0)
        return fd;
    if (bytes > INT_MAX)
        return RILL_EINVAL;
    /* only TCP's readiness waits for the mark: Unix sockets and pipes would take it and
     * still wake for every byte, so saying yes would mislead */
    if (s->family != AF_INET && s->family != AF_INET6)
        return RILL_ENOTSUP;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return rill__errno();
    if (type != SOCK_STREAM)
        return RILL_ENOTSUP;
    int v = bytes ? (int)bytes : 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) < 0)
        return rill__errno();
    if (v > 1)
        s->flags |= RILL__S_LOWAT;
    else
        s->flags &= ~RILL__S_LOWAT;
    return 0;
}
