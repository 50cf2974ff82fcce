/* src/loop_impl.h - the loop's fields, shared by loop.c, timer.c and pool.c only. */
#ifndef RILL_LOOP_IMPL_H
#define RILL_LOOP_IMPL_H

#include "internal.h"

/* A cross-thread call: allocated by rill_loop_post (owned) or embedded in pool work. */
typedef struct rill__post {
    struct rill__post *next;
    void (*fn)(void *);
    void *arg;
    bool owned;
} rill__post;

struct rill__tgroup {
    rill__list nodes; /* oldest activity first */
    uint64_t ms;
    void (*expire)(rill__tnode *);
};

typedef struct rill__pool rill__pool;

struct rill_loop {
    rill__loop_hot hot; /* first: rill__now and rill__loop_scratch read it (internal.h) */
    const rill__poller *poller;
    void *pstate;
    bool running, stop;
    size_t active;  /* rill__loop_ref */
    size_t handles; /* rill__handle_add */
    rill__list defers;
    rill__squeue squeue;
    rill__heap timers;
    rill__tgroup **tgroups; /* tgroups[i - 1] is group i of rill__tnode.state */
    size_t ntgroups, tgroups_cap;
    pthread_mutex_t post_mu;
    rill__post *post_head, *post_tail;
    atomic_size_t posts_inflight;
    int wake_fd;
    rill__io wake_io;
    rill__pool *pool;
    unsigned nthreads;
    size_t work_pending;
    uint64_t stream_timeout;
};

void rill__post_push(rill_loop *loop, rill__post *p);
void rill__pool_free(rill_loop *loop);

#endif
