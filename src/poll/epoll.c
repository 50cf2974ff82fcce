/* src/poll/epoll.c - the epoll backend: level-triggered, one epoll_ctl per interest
 * change, up to 256 events per wait.
 *
 * Far deadlines (a second or more away: inactivity timeouts) go to a timerfd in the set,
 * and epoll_wait then sleeps with no timeout.  A timeout in epoll_wait arms and cancels a
 * kernel timer on every sleep; at one connection that cost 1-2% of the server's CPU per
 * message.  The timerfd is re-armed only when the deadline comes earlier: a deadline that
 * moved later (a stream was active) lets it fire early once, and the loop re-arms it. */
#include "internal.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct {
    rill_loop *loop;
    int epfd;
    int tfd;          /* the timerfd; -1: none could be made (timeouts go to epoll_wait) */
    uint64_t tfd_due; /* when it fires (loop clock, ms); 0: not armed */
    struct epoll_event ev[MAX_EVENTS];
} ep_state;

/* Makes the timerfd and adds it to the set.  If either fails, the loop works without it:
 * timeouts go to epoll_wait as before. */
static void tfd_open(ep_state *s)
{
    s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct epoll_event e = {0};
    e.events = EPOLLIN;
    e.data.ptr = &s->tfd;
    if (s->tfd >= 0 && epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->tfd, &e) < 0) {
        close(s->tfd);
        s->tfd = -1;
    }
}

static int ep_init(rill_loop *loop, void **state)
{
    ep_state *s = rill__malloc(sizeof *s);
    if (!s)
        return RILL_ENOMEM;
    s->loop = loop;
    s->tfd = -1;
    s->tfd_due = 0;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int err = rill__errno();
        rill__free(s);
        return err;
    }
    tfd_open(s); /* made now, not at the first far deadline: a full fd table then could
                  * take it away for good, or it could take the slot an accept needed */
    *state = s;
    return 0;
}

static void ep_done(void *state)
{
    ep_state *s = state;
    if (s->tfd >= 0)
        close(s->tfd);
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

/* The timeout epoll_wait gets for timeout_ms: -1 when the timerfd holds the deadline. */
static int far_timeout(ep_state *s, int timeout_ms)
{
    if (s->tfd < 0)
        return timeout_ms;
    uint64_t due = rill__now(s->loop) + (uint64_t)timeout_ms;
    if (s->tfd_due && s->tfd_due <= due)
        return -1; /* armed for then or sooner: it wakes the loop, which re-arms it */
    struct itimerspec it = {{0, 0}, {(time_t)(due / 1000), (long)(due % 1000) * 1000000}};
    if (timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
        return timeout_ms;
    s->tfd_due = due;
    return -1;
}

/* The timerfd fired: clear it (the loop runs its timers after every wait).  If it cannot
 * be read it leaves the set for good, rather than wake every wait. */
static void tfd_fired(ep_state *s)
{
    uint64_t ticks;
    s->tfd_due = 0;
    if (read(s->tfd, &ticks, sizeof ticks) >= 0 || errno == EAGAIN || errno == EINTR)
        return;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->tfd, NULL);
    close(s->tfd);
    s->tfd = -1;
}

static int ep_wait(void *state, int timeout_ms)
{
    ep_state *s = state;
    if (timeout_ms >= RILL__FAR_MS)
        timeout_ms = far_timeout(s, timeout_ms);
    int n = epoll_wait(s->epfd, s->ev, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : rill__errno();
    rill_loop_update_time(s->loop); /* handlers see the time the events arrived */
    for (int i = 0; i < n; i++) {
        if (s->ev[i].data.ptr == &s->tfd) {
            tfd_fired(s);
            continue;
        }
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
