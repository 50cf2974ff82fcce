/* src/poll/poll.c - the poll(2) backend: a pollfd array with the io pointers beside it,
 * and a map from fd to slot (an fd is registered once, so it names its slot; this keeps
 * the slot index out of every rill__io).  Removal during dispatch leaves a hole that is
 * compacted after the dispatch. */
#include "internal.h"

#include <poll.h>

typedef struct {
    rill_loop *loop;
    struct pollfd *pfd;
    rill__io **ios;
    int *slot; /* slot[fd]: index in pfd/ios, valid while fd is registered */
    int n, cap, nslot;
    bool dispatching, holes;
} pl_state;

static int pl_init(rill_loop *loop, void **state)
{
    pl_state *s = rill__calloc(1, sizeof *s);
    if (!s)
        return RILL_ENOMEM;
    s->loop = loop;
    *state = s;
    return 0;
}

static void pl_done(void *state)
{
    pl_state *s = state;
    rill__free(s->pfd);
    rill__free(s->ios);
    rill__free(s->slot);
    rill__free(s);
}

static short pl_events(unsigned mask)
{
    return (short)((mask & RILL__IO_READ ? POLLIN : 0) | (mask & RILL__IO_WRITE ? POLLOUT : 0));
}

static int pl_grow(pl_state *s)
{
    int cap = s->cap ? s->cap * 2 : 64;
    struct pollfd *pfd = rill__realloc(s->pfd, (size_t)cap * sizeof *pfd);
    if (!pfd)
        return RILL_ENOMEM;
    s->pfd = pfd;
    rill__io **ios = rill__realloc(s->ios, (size_t)cap * sizeof *ios);
    if (!ios)
        return RILL_ENOMEM;
    s->ios = ios;
    s->cap = cap;
    return 0;
}

static void pl_remove(pl_state *s, int i)
{
    if (s->dispatching) {
        s->pfd[i].fd = -1; /* poll ignores negative fds */
        s->ios[i] = NULL;
        s->holes = true;
        return;
    }
    int last = --s->n;
    if (i != last) {
        s->pfd[i] = s->pfd[last];
        s->ios[i] = s->ios[last];
        s->slot[s->ios[i]->fd] = i;
    }
}

/* Makes slot[fd] addressable.  0 or RILL_ENOMEM. */
static int pl_slot_reserve(pl_state *s, int fd)
{
    if (fd < s->nslot)
        return 0;
    int n = s->nslot ? s->nslot : 64;
    while (n <= fd)
        n *= 2;
    int *slot = rill__realloc(s->slot, (size_t)n * sizeof *slot);
    if (!slot)
        return RILL_ENOMEM;
    s->slot = slot;
    s->nslot = n;
    return 0;
}

static int pl_set(void *state, rill__io *io, unsigned mask)
{
    pl_state *s = state;
    if (!io->mask) {
        if ((s->n == s->cap && pl_grow(s) < 0) || pl_slot_reserve(s, io->fd) < 0)
            return RILL_ENOMEM;
        int i = s->n++;
        s->slot[io->fd] = i;
        s->pfd[i] = (struct pollfd){io->fd, pl_events(mask), 0};
        s->ios[i] = io;
    } else if (!mask) {
        pl_remove(s, s->slot[io->fd]);
    } else {
        s->pfd[s->slot[io->fd]].events = pl_events(mask);
    }
    return 0;
}

static void pl_compact(pl_state *s)
{
    int j = 0;
    for (int i = 0; i < s->n; i++) {
        if (!s->ios[i])
            continue;
        s->pfd[j] = s->pfd[i];
        s->ios[j] = s->ios[i];
        s->slot[s->ios[j]->fd] = j;
        j++;
    }
    s->n = j;
    s->holes = false;
}

static int pl_wait(void *state, int timeout_ms)
{
    pl_state *s = state;
    int rc = poll(s->pfd, (nfds_t)s->n, timeout_ms);
    if (rc <= 0)
        return rc < 0 && errno != EINTR ? rill__errno() : 0;
    rill_loop_update_time(s->loop); /* handlers see the time the events arrived */
    int n = s->n; /* entries added during dispatch wait for the next poll */
    s->dispatching = true;
    for (int i = 0; i < n; i++) {
        short e = s->pfd[i].revents;
        rill__io *io = s->ios[i];
        if (!e || !io)
            continue;
        s->pfd[i].revents = 0;
        unsigned r = (e & POLLIN ? RILL__IO_READ : 0) | (e & POLLOUT ? RILL__IO_WRITE : 0);
        if (e & (POLLERR | POLLHUP | POLLNVAL))
            r |= RILL__IO_READ | RILL__IO_WRITE | RILL__IO_ERR;
        r &= io->mask | RILL__IO_ERR;
        if (r & (RILL__IO_READ | RILL__IO_WRITE))
            io->cb(io, r);
    }
    s->dispatching = false;
    if (s->holes)
        pl_compact(s);
    return rc;
}

const rill__poller rill__poller_poll = {"poll", pl_init, pl_done, pl_set, pl_wait};
