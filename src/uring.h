/* src/uring.h - the io_uring backend's completion side, shared by poll/uring.c (the ring,
 * readiness polls, the provided-buffer ring) and usock.c (stream sockets that receive and
 * send through the ring instead of read(2) and write(2)). */
#ifndef RILL_URING_H
#define RILL_URING_H

#include "internal.h"
#include "rill_config.h"

#ifdef RILL_HAVE_URING
#include <liburing.h>

/* What a completion is for: the low 3 bits of its user_data (streams are 16-byte aligned
 * allocations, so a stream pointer carries its tag). */
enum {
    RILL__UR_POLL = 1,        /* a readiness poll: fd and generation in the upper bits */
    RILL__UR_RECV = 2,        /* a stream's multishot receive: the stream pointer */
    RILL__UR_SEND = 3,        /* a stream's send: the stream pointer */
    RILL__UR_NOP = 4,         /* a cancel request: nothing to do with its completion */
    RILL__UR_TIMEOUT = 5,     /* the loop's far deadline (poll/uring.c) */
    RILL__UR_TIMEOUT_UPD = 6, /* a failed move of it (successes post no completion) */
    RILL__UR_TAGS = 7
};

typedef struct rill__uring rill__uring;

/* The loop's ring when it runs the uring backend, else NULL. */
rill__uring *rill__loop_uring(rill_loop *loop);
/* A submission entry for the caller to fill (submitting queued ones first when the queue
 * is full).  NULL: the ring cannot take more now (RILL_ENOMEM for the caller). */
struct io_uring_sqe *rill__uring_sqe(rill__uring *u);
/* The ring itself (for calls liburing makes on it). */
struct io_uring *rill__uring_ring(rill__uring *u);
/* Submits what is queued now (before the fd those entries name is closed). */
void rill__uring_flush(rill__uring *u);
/* The provided-buffer group receives select from; set up on first use.  0 or a code. */
int rill__uring_bufs(rill__uring *u);
/* Buffer `bid` of a receive completion, and giving it back to the kernel. */
char *rill__uring_buf(rill__uring *u, unsigned bid);
void rill__uring_buf_put(rill__uring *u, unsigned bid);
/* The group id receives name in sqe->buf_group. */
#define RILL__UR_BGID 0

/* usock.c: a stream's completions (the poller calls these for RECV / SEND tags). */
void rill__usock_recv_cqe(rill_stream *s, int res, unsigned flags);
void rill__usock_send_cqe(rill_stream *s, int res, unsigned flags);
/* usock.c: the transport of stream sockets on a uring loop. */
extern const rill__transport rill__usock_transport;
#endif

#endif
