/* src/poll/epoll.c - the epoll backend: level-triggered, one epoll_ctl per interest
 * change, up to 256 events per wait. */
#include "internal.h"

#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct {
    rill_loop *loop;
    int epfd;
    struct epoll_event ev[MAX_EVENTS];
} ep_state;

static int ep_init(rill_loop *loop, void **state)
{
    ep_state *s = rill__malloc(sizeof *s);
    if (!s)
        return RILL_ENOMEM;
    s->loop = loop;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int err = rill__errno();
        rill__free(s);
        return err;
    }
    *state = s;
    return 0;
}

static void ep_done(void *state)
{
    ep_state *s = state;
    close(s->epfd);
    rill__free(s);
}

static int ep_set(void *state, rill__io *io, unsigned mask)
{
    ep_state *s = state;
    struct epoll_event e = {0};
    e.events = (mask & RILL__IO_READ ? EPOLLIN : 0) | (mask & RILL__IO_WRITE ? EPOLLOUT : 0);
    e.data.ptr = io;
    int op = !io->mask ? EPOLL_CTL_ADD : !mask ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(s->epfd, op, io->fd, &e) == 0)
        return 0;
    if (op == EPOLL_CTL_DEL && (errno == ENOENT || errno == EBADF))
        return 0; /* already gone with its fd */
    return rill__errno();
}

static int ep_wait(void *state, int timeout_ms)
{
    ep_state *s = state;
    int n = epoll_wait(s->epfd, s->ev, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : rill__errno();
    rill_loop_update_time(s->loop); /* handlers see the time the events arrived */
    for (int i = 0; i < n; i++) {
        rill__io *io = s->ev[i].data.ptr;
        uint32_t e = s->ev[i].events;
        unsigned r = (e & EPOLLIN ? RILL__IO_READ : 0) | (e & EPOLLOUT ? RILL__IO_WRITE : 0);
        if (e & (EPOLLERR | EPOLLHUP))
            r |= RILL__IO_READ | RILL__IO_WRITE | RILL__IO_ERR;
        r &= io->mask | RILL__IO_ERR; /* an io removed during this dispatch has mask 0 */
        if (r & (RILL__IO_READ | RILL__IO_WRITE))
            io->cb(io, r);
    }
    return n;
}

const rill__poller rill__poller_epoll = {"epoll", ep_init, ep_done, ep_set, ep_wait};
