/* src/poll/uring.c - the io_uring backend.  Readiness is a one-shot poll per watched fd,
 * armed again after each completion while the fd is still watched (so it behaves
 * level-triggered, like the epoll backend); the re-arm is a queued entry, not a syscall.
 * Stream sockets skip readiness altogether (usock.c): a multishot receive into the loop's
 * provided buffers and a send per queued block, all submitted by the one io_uring_enter
 * that also waits.  An fd maps to its slot (fd and a generation in the poll's user_data),
 * so a completion for an fd that was removed, or removed and registered again, is told
 * apart and dropped. */
#include "internal.h"
#include "rill_config.h"

#ifdef RILL_HAVE_URING
#include "uring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096
/* Provided receive buffers: 256 of 16 KiB (4 MiB of address space, touched as used). */
#define NBUF 256
#define BUF_SIZE (16 * 1024)
#define BATCH 64

typedef struct {
    rill__io *io; /* NULL: the fd is not watched */
    uint32_t gen; /* names the current registration in user_data */
    bool armed;   /* a poll is in the ring (submitted or queued) */
} ur_slot;

struct rill__uring {
    struct io_uring ring;
    rill_loop *loop;
    ur_slot *slots; /* slots[fd] */
    int nslots;
    uint32_t gen;
    bool enabled; /* created disabled: the first submission binds it to the loop's thread */
    struct io_uring_buf_ring *br;
    char *bufs;
    uint64_t to_due; /* when the held timeout entry fires (loop clock, ms); 0: none held */
    bool to_off;     /* a move of it failed: far deadlines go to the wait, as short ones */
    struct __kernel_timespec to_ts; /* its deadline, read by the kernel at submission */
};

static uint64_t poll_ud(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint64_t)(uint32_t)fd << 3 | RILL__UR_POLL;
}

static int ur_init(rill_loop *loop, void **state)
{
    rill__uring *u = rill__calloc(1, sizeof *u);
    if (!u)
        return RILL_ENOMEM;
    u->loop = loop;
    struct io_uring_params p = {0};
    /* Completions are reaped only inside io_uring_enter on the loop's thread: no task-work
     * interrupts while callbacks run.  Older kernels refuse these flags: plain ring then. */
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
              IORING_SETUP_R_DISABLED;
    p.cq_entries = CQ_ENTRIES;
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &p);
        u->enabled = true;
    }
    if (rc < 0) {
        rill__free(u);
        return rc == -ENOMEM ? RILL_ENOMEM : rc;
    }
    /* liburing opens the ring fd with O_CLOEXEC on its own since 2.2; make sure */
    (void)fcntl(u->ring.ring_fd, F_SETFD, FD_CLOEXEC);
    *state = u;
    return 0;
}

static void ur_done(void *state)
{
    rill__uring *u = state;
    io_uring_queue_exit(&u->ring);
    if (u->br)
        munmap(u->br, NBUF * sizeof(struct io_uring_buf));
    if (u->bufs)
        munmap(u->bufs, (size_t)NBUF * BUF_SIZE);
    rill__free(u->slots);
    rill__free(u);
}

static void enable(rill__uring *u)
{
    if (!u->enabled) {
        /* (Debian's liburing 2.3 declares io_uring_enable_rings but does not export it) */
        syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        u->enabled = true;
    }
}

void rill__uring_flush(rill__uring *u)
{
    if (io_uring_sq_ready(&u->ring)) {
        enable(u);
        io_uring_submit(&u->ring);
    }
}

struct io_uring_sqe *rill__uring_sqe(rill__uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        rill__uring_flush(u);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

struct io_uring *rill__uring_ring(rill__uring *u)
{
    enable(u);
    return &u->ring;
}

rill__uring *rill__loop_uring(rill_loop *loop)
{
    return rill__loop_pstate(loop, &rill__poller_uring);
}

/* ---- provided buffers -------------------------------------------------------------------- */

int rill__uring_bufs(rill__uring *u)
{
    if (u->br)
        return 0;
    size_t brsize = NBUF * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, brsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED)
        return RILL_ENOMEM;
    char *bufs = mmap(NULL, (size_t)NBUF * BUF_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (bufs == MAP_FAILED) {
        munmap(br, brsize);
        return RILL_ENOMEM;
    }
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)br, .ring_entries = NBUF, .bgid = RILL__UR_BGID};
    int rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0) {
        munmap(br, brsize);
        munmap(bufs, (size_t)NBUF * BUF_SIZE);
        return rc == -ENOMEM ? RILL_ENOMEM : rc;
    }
    for (unsigned i = 0; i < NBUF; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(NBUF), (int)i);
    io_uring_buf_ring_advance(br, NBUF);
    u->br = br;
    u->bufs = bufs;
    return 0;
}

char *rill__uring_buf(rill__uring *u, unsigned bid)
{
    return u->bufs + (size_t)(bid % NBUF) * BUF_SIZE;
}

void rill__uring_buf_put(rill__uring *u, unsigned bid)
{
    bid %= NBUF;
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUF), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* ---- readiness --------------------------------------------------------------------------- */

static unsigned poll_events(unsigned mask)
{
    return (mask & RILL__IO_READ ? POLLIN : 0) | (mask & RILL__IO_WRITE ? POLLOUT : 0);
}

static int arm(rill__uring *u, int fd, ur_slot *sl, unsigned mask)
{
    struct io_uring_sqe *sqe = rill__uring_sqe(u);
    if (!sqe)
        return RILL_ENOMEM;
    io_uring_prep_poll_add(sqe, fd, poll_events(mask));
    io_uring_sqe_set_data64(sqe, poll_ud(fd, sl->gen));
    sl->armed = true;
    return 0;
}

static int disarm(rill__uring *u, int fd, ur_slot *sl)
{
    if (!sl->armed)
        return 0;
    struct io_uring_sqe *sqe = rill__uring_sqe(u);
    if (!sqe)
        return RILL_ENOMEM;
    io_uring_prep_poll_remove(sqe, poll_ud(fd, sl->gen));
    io_uring_sqe_set_data64(sqe, RILL__UR_NOP);
    sl->armed = false;
    return 0;
}

static int ur_set(void *state, rill__io *io, unsigned mask)
{
    rill__uring *u = state;
    int fd = io->fd;
    if (fd < 0)
        return RILL_EBADF;
    if (fd >= u->nslots) {
        if (!mask)
            return 0;
        int n = u->nslots ? u->nslots : 64;
        while (n <= fd)
            n *= 2;
        ur_slot *sl = rill__realloc(u->slots, (size_t)n * sizeof *sl);
        if (!sl)
            return RILL_ENOMEM;
        memset(sl + u->nslots, 0, (size_t)(n - u->nslots) * sizeof *sl);
        u->slots = sl;
        u->nslots = n;
    }
    ur_slot *sl = &u->slots[fd];
    if (sl->io && sl->io != io)
        return RILL_EEXIST;
    int rc = disarm(u, fd, sl);
    if (rc < 0)
        return rc;
    if (!mask) {
        sl->io = NULL;
        return 0;
    }
    sl->io = io;
    if (++u->gen == 0)
        u->gen = 1;
    sl->gen = u->gen;
    return arm(u, fd, sl, mask);
}

static void poll_cqe(rill__uring *u, uint64_t ud, int res)
{
    int fd = (int)(uint32_t)(ud >> 3) & 0x1fffffff;
    uint32_t gen = (uint32_t)(ud >> 32);
    if (fd >= u->nslots || !u->slots[fd].io || u->slots[fd].gen != gen)
        return; /* removed since (the remove's own completion, or one that raced it) */
    ur_slot *sl = &u->slots[fd];
    rill__io *io = sl->io;
    sl->armed = false;
    unsigned r;
    if (res < 0) {
        r = RILL__IO_READ | RILL__IO_WRITE | RILL__IO_ERR; /* the fd went bad: let I/O say why */
    } else {
        r = (res & POLLIN ? RILL__IO_READ : 0) | (res & POLLOUT ? RILL__IO_WRITE : 0);
        if (res & (POLLERR | POLLHUP | POLLNVAL))
            r |= RILL__IO_READ | RILL__IO_WRITE | RILL__IO_ERR;
    }
    r &= io->mask | RILL__IO_ERR;
    if (r & (RILL__IO_READ | RILL__IO_WRITE))
        io->cb(io, r);
    /* still watched by the same registration, and not re-armed by the callback: again
     * (a ready fd completes at once: level-triggered).  The callback may have grown the
     * slot array: look the slot up anew. */
    sl = &u->slots[fd];
    if (sl->io == io && sl->gen == gen && !sl->armed && io->mask && res >= 0 &&
        arm(u, fd, sl, io->mask) < 0)
        io->cb(io, RILL__IO_READ | RILL__IO_WRITE | RILL__IO_ERR);
}

/* Far deadlines (the default 15 s inactivity timeout) go to a timeout entry held in the
 * ring across waits, as the epoll backend's timerfd: a wait given a timeout arms and
 * cancels a kernel timer each time it sleeps (1-2.5% of the server CPU per message at one
 * connection, measured paired).  The entry is moved only when a deadline comes earlier;
 * if the deadline moved later it fires early once and the next wait holds a new one.
 * Returns the timeout to wait with: -1 when the entry holds it. */
static int far_timeout(rill__uring *u, int timeout_ms)
{
    if (u->to_off)
        return timeout_ms;
    uint64_t due = rill__now(u->loop) + (uint64_t)timeout_ms;
    if (u->to_due && u->to_due <= due)
        return -1; /* held for then or sooner: its completion wakes the loop */
    struct io_uring_sqe *sqe = rill__uring_sqe(u);
    if (!sqe)
        return timeout_ms;
    u->to_ts.tv_sec = (long long)(due / 1000);
    u->to_ts.tv_nsec = (long long)(due % 1000) * 1000000;
    if (u->to_due) {
        /* No completion when it works: one would end the very wait it is submitted with.
         * If the entry fired meanwhile, this finds nothing; the -ETIME completion is then
         * in the queue and clears to_due. */
        io_uring_prep_timeout_update(sqe, &u->to_ts, RILL__UR_TIMEOUT, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, RILL__UR_TIMEOUT_UPD);
        io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    } else {
        io_uring_prep_timeout(sqe, &u->to_ts, 0, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, RILL__UR_TIMEOUT);
    }
    u->to_due = due;
    return -1;
}

static int ur_wait(void *state, int timeout_ms)
{
    rill__uring *u = state;
    enable(u);
    int rc;
    if (timeout_ms >= RILL__FAR_MS)
        timeout_ms = far_timeout(u, timeout_ms);
    if (timeout_ms == 0) {
        rc = io_uring_submit_and_get_events(&u->ring);
    } else {
        struct __kernel_timespec ts = {timeout_ms / 1000, (long long)(timeout_ms % 1000) * 1000000};
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    rill_loop_update_time(u->loop); /* handlers see the time the events arrived */
    int total = 0;
    for (int round = 0; round < 16; round++) {
        struct io_uring_cqe *cqes[BATCH];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, BATCH);
        if (!n)
            break;
        struct {
            uint64_t ud;
            int32_t res;
            uint32_t flags;
        } c[BATCH];
        for (unsigned i = 0; i < n; i++) {
            c[i].ud = cqes[i]->user_data;
            c[i].res = cqes[i]->res;
            c[i].flags = cqes[i]->flags;
        }
        io_uring_cq_advance(&u->ring, n); /* callbacks may submit: the CQ is ours no more */
        for (unsigned i = 0; i < n; i++) {
            uint64_t ud = c[i].ud;
            switch (ud & RILL__UR_TAGS) {
            case RILL__UR_POLL:
                poll_cqe(u, ud, c[i].res);
                break;
            case RILL__UR_RECV:
                rill__usock_recv_cqe((rill_stream *)(uintptr_t)(ud & ~(uint64_t)RILL__UR_TAGS),
                                     c[i].res, c[i].flags);
                break;
            case RILL__UR_SEND:
                rill__usock_send_cqe((rill_stream *)(uintptr_t)(ud & ~(uint64_t)RILL__UR_TAGS),
                                     c[i].res, c[i].flags);
                break;
            case RILL__UR_TIMEOUT:
                u->to_due = 0; /* fired (the loop runs its timers after every wait) */
                break;
            case RILL__UR_TIMEOUT_UPD:
                /* -ENOENT, -EALREADY: it had fired (its own completion says so).  Else the
                 * kernel refused the move (no CQE_SKIP_SUCCESS before Linux 5.17): this
                 * completion ends the wait, and from now on far deadlines go to waits. */
                if (c[i].res != -ENOENT && c[i].res != -EALREADY)
                    u->to_off = true;
                break;
            default:
                break;
            }
        }
        total += (int)n;
        if (n < BATCH)
            break;
    }
    return total;
}

const rill__poller rill__poller_uring = {"uring", ur_init, ur_done, ur_set, ur_wait};
#endif
