/* src/loop.c - the event loop: iteration order, deferred calls, cross-thread posts,
 * inactivity-timeout groups and the loop's bookkeeping of active things. */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "loop_impl.h"
#include "rill_config.h"


/* > 0 while this thread runs a loop.  initial-exec: read on every write, it must be one
 * instruction, not a call to __tls_get_addr. */
__attribute__((tls_model("initial-exec"))) _Thread_local int rill__sigpipe_depth;
#define sigpipe_depth rill__sigpipe_depth

static_assert(offsetof(struct rill_loop, hot) == 0, "rill__now reads the clock at offset 0");

static uint64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const rill__poller *pick_poller(const char *name, int *err)
{
    if (!name || !*name)
        name = getenv("RILL_BACKEND");
    if (!name || !*name || strcmp(name, "epoll") == 0)
        return &rill__poller_epoll;
    if (strcmp(name, "poll") == 0)
        return &rill__poller_poll;
#ifdef RILL_HAVE_URING
    if (strcmp(name, "uring") == 0)
        return &rill__poller_uring;
#endif
    *err = strcmp(name, "uring") == 0 || strcmp(name, "kqueue") == 0 ? ENOSYS : EINVAL;
    return NULL;
}

static void wake_cb(rill__io *io, unsigned revents);

static int wake_init(rill_loop *loop)
{
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->wake_fd < 0)
        return rill__errno();
    rill__io_init(&loop->wake_io, loop->wake_fd, wake_cb);
    return rill__io_set(loop, &loop->wake_io, RILL__IO_READ);
}

rill_loop *rill_loop_new(const rill_loop_opts *opts)
{
    int err = 0;
    const rill__poller *p = pick_poller(opts ? opts->backend : NULL, &err);
    if (!p) {
        errno = err;
        return NULL;
    }
    rill_loop *loop = rill__calloc(1, sizeof *loop);
    char *scratch = rill__malloc(RILL__SCRATCH);
    if (!loop || !scratch) {
        rill__free(loop);
        rill__free(scratch);
        errno = ENOMEM;
        return NULL;
    }
    loop->hot.scratch = scratch;
    loop->poller = p;
    loop->wake_fd = -1;
    loop->nthreads = opts && opts->threads ? opts->threads : 4;
    loop->stream_timeout = opts && opts->stream_timeout_ms ? opts->stream_timeout_ms : 15000;
    if (loop->stream_timeout == RILL_NEVER)
        loop->stream_timeout = 0;
    rill__list_init(&loop->defers);
    rill__defer_init(&loop->squeue.defer, rill__stream_run_queue);
    loop->squeue.loop = loop;
    rill__heap_init(&loop->timers);
    pthread_mutex_init(&loop->post_mu, NULL);
    loop->hot.now = clock_ms();
    if ((err = p->init(loop, &loop->pstate)) < 0 || (err = wake_init(loop)) < 0) {
        if (loop->pstate)
            p->done(loop->pstate);
        if (loop->wake_fd >= 0)
            close(loop->wake_fd);
        pthread_mutex_destroy(&loop->post_mu);
        rill__free(scratch);
        rill__free(loop);
        errno = -err;
        return NULL;
    }
    return loop;
}

static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static rill_loop *default_loop;

rill_loop *rill_loop_default(void)
{
    pthread_mutex_lock(&default_mu);
    if (!default_loop)
        default_loop = rill_loop_new(NULL);
    rill_loop *l = default_loop;
    pthread_mutex_unlock(&default_mu);
    return l;
}

/* Something still needs the loop: RILL_RUN_DEFAULT keeps iterating. */
static bool loop_busy_active(const rill_loop *loop)
{
    return loop->active || loop->timers.len || !rill__list_empty(&loop->defers) ||
           loop->work_pending || atomic_load(&loop->posts_inflight);
}

/* Something still lives on the loop: rill_loop_free refuses. */
static bool loop_busy(const rill_loop *loop)
{
    return loop->handles || loop_busy_active(loop);
}

int rill_loop_free(rill_loop *loop)
{
    if (!loop)
        return RILL_EINVAL;
    if (loop->running)
        return RILL_EBUSY;
    if (loop_busy(loop))
        return RILL_EBUSY;
    rill__pool_free(loop);
    rill__io_set(loop, &loop->wake_io, 0);
    close(loop->wake_fd);
    loop->poller->done(loop->pstate);
    for (size_t i = 0; i < loop->ntgroups; i++)
        rill__free(loop->tgroups[i]);
    rill__free(loop->tgroups);
    rill__timers_free(loop);
    rill__heap_free(&loop->timers);
    pthread_mutex_destroy(&loop->post_mu);
    rill__free(loop->hot.scratch);
    pthread_mutex_lock(&default_mu);
    if (loop == default_loop)
        default_loop = NULL;
    pthread_mutex_unlock(&default_mu);
    rill__free(loop);
    return 0;
}

uint64_t rill_loop_now(const rill_loop *loop)
{
    return loop->hot.now;
}

void rill_loop_update_time(rill_loop *loop)
{
    loop->hot.now = clock_ms();
}

void *rill__loop_pstate(rill_loop *loop, const rill__poller *p)
{
    return loop->poller == p ? loop->pstate : NULL;
}

const char *rill_loop_backend(const rill_loop *loop)
{
    return loop->poller->name;
}

bool rill_loop_is_running(const rill_loop *loop)
{
    return loop && loop->running;
}

void rill_loop_stop(rill_loop *loop)
{
    if (loop)
        loop->stop = true;
}

/* ---- bookkeeping ---------------------------------------------------------------------- */

void rill__loop_ref(rill_loop *loop)
{
    loop->active++;
}

void rill__loop_unref(rill_loop *loop)
{
    assert(loop->active > 0);
    loop->active--;
}

void rill__handle_add(rill_loop *loop)
{
    loop->handles++;
}

void rill__handle_remove(rill_loop *loop)
{
    assert(loop->handles > 0);
    loop->handles--;
}

rill__squeue *rill__loop_squeue(rill_loop *loop)
{
    return &loop->squeue;
}

uint64_t rill__loop_stream_timeout(const rill_loop *loop)
{
    return loop->stream_timeout;
}

/* ---- SIGPIPE: blocked in the loop thread while rill_loop_run runs, so a write to a pipe
 * whose reader is gone returns EPIPE instead of killing the process.  The process-wide
 * disposition is never touched. ------------------------------------------------------- */

void rill__sigpipe_consume(void)
{
    sigset_t set;
    struct timespec zero = {0, 0};
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    while (sigtimedwait(&set, NULL, &zero) == SIGPIPE)
        ;
}

/* ---- deferred calls: a list kept sorted by priority, appended at the tail in the common
 * case of equal priorities, so queueing is O(1) and never allocates. -------------------- */

void rill__defer_init(rill__defer *d, void (*fn)(rill__defer *))
{
    rill__list_init(&d->link);
    d->queued = false;
    d->priority = 0;
    d->fn = fn;
}

static void defer_insert(rill__list *list, rill__defer *d)
{
    rill__list *pos = list->prev;
    while (pos != list && rill__container_of(pos, rill__defer, link)->priority > d->priority)
        pos = pos->prev;
    rill__list_insert_head(pos, &d->link); /* after pos */
}

void rill__defer_queue(rill_loop *loop, rill__defer *d, int priority)
{
    if (d->queued) {
        if (priority >= d->priority)
            return;
        rill__list_remove(&d->link);
    }
    d->priority = priority;
    d->queued = true;
    defer_insert(&loop->defers, d);
}

void rill__defer_cancel(rill_loop *loop, rill__defer *d)
{
    (void)loop;
    if (d->queued) {
        rill__list_remove(&d->link);
        d->queued = false;
    }
}

/* Runs what was queued before this phase began; what those calls queue runs next time. */
static void run_defers(rill_loop *loop)
{
    rill__list now;
    rill__list_init(&now);
    rill__list_splice(&now, &loop->defers);
    loop->squeue.cut = loop->squeue.tail; /* streams queued from here on wait, too */
    /* the local list keeps the defers reachable: rill__defer_cancel may unlink from it */
    while (!rill__list_empty(&now)) {
        rill__defer *d = rill__container_of(now.next, rill__defer, link);
        rill__list_remove(&d->link);
        d->queued = false;
        d->fn(d);
    }
}

typedef struct {
    rill__defer d;
    void (*fn)(void *);
    void *arg;
} user_defer;

static void user_defer_run(rill__defer *d)
{
    user_defer *u = rill__container_of(d, user_defer, d);
    void (*fn)(void *) = u->fn;
    void *arg = u->arg;
    rill__free(u);
    fn(arg);
}

int rill_loop_defer(rill_loop *loop, int priority, void (*fn)(void *), void *arg)
{
    if (!loop || !fn)
        return RILL_EINVAL;
    user_defer *u = rill__malloc(sizeof *u);
    if (!u)
        return RILL_ENOMEM;
    rill__defer_init(&u->d, user_defer_run);
    u->fn = fn;
    u->arg = arg;
    rill__defer_queue(loop, &u->d, priority);
    return 0;
}

/* ---- posts: a mutex-protected FIFO; the eventfd is written only when the FIFO goes from
 * empty to non-empty, so a burst of posts costs one wake-up. ---------------------------- */

void rill__post_push(rill_loop *loop, rill__post *p)
{
    p->next = NULL;
    atomic_fetch_add(&loop->posts_inflight, 1);
    pthread_mutex_lock(&loop->post_mu);
    bool was_empty = loop->post_head == NULL;
    if (was_empty)
        loop->post_head = p;
    else
        loop->post_tail->next = p;
    loop->post_tail = p;
    pthread_mutex_unlock(&loop->post_mu);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(loop->wake_fd, &one, sizeof one);
        while (n < 0 && errno == EINTR);
    }
}

int rill_loop_post(rill_loop *loop, void (*fn)(void *), void *arg)
{
    if (!loop || !fn)
        return RILL_EINVAL;
    rill__post *p = rill__malloc(sizeof *p);
    if (!p)
        return RILL_ENOMEM;
    p->fn = fn;
    p->arg = arg;
    p->owned = true;
    rill__post_push(loop, p);
    return 0;
}

static void run_posts(rill_loop *loop)
{
    pthread_mutex_lock(&loop->post_mu);
    rill__post *p = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    while (p) {
        rill__post *next = p->next;
        void (*fn)(void *) = p->fn;
        void *arg = p->arg;
        if (p->owned)
            rill__free(p);
        fn(arg);
        atomic_fetch_sub(&loop->posts_inflight, 1);
        p = next;
    }
}

static void wake_cb(rill__io *io, unsigned revents)
{
    rill_loop *loop = rill__container_of(io, rill_loop, wake_io);
    uint64_t v;
    (void)revents;
    while (read(loop->wake_fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    run_posts(loop);
}

/* ---- inactivity-timeout groups --------------------------------------------------------- */

void rill__tnode_init(rill__tnode *t)
{
    rill__list_init(&t->link);
    t->state = 0;
}

/* When the node's timeout falls due (saturating: a huge timeout never wraps to the past). */
static inline uint64_t tnode_due(const rill__tgroup *g, const rill__tnode *t)
{
    uint64_t last = t->state >> 16;
    return g->ms > UINT64_MAX - last ? UINT64_MAX : last + g->ms;
}

static inline rill__tgroup *tgroup_of(const rill_loop *loop, const rill__tnode *t)
{
    return loop->tgroups[(t->state & RILL__TG_MASK) - 1];
}

/* The group's 1-based index, or RILL_ENOMEM, or RILL_ENOSPC when 65,535 values are in
 * use.  A group with no node left is reused, so the loop keeps only values in use. */
static int tgroup_get(rill_loop *loop, uint64_t ms, void (*expire)(rill__tnode *))
{
    size_t spare = SIZE_MAX;
    for (size_t i = 0; i < loop->ntgroups; i++) {
        rill__tgroup *g = loop->tgroups[i];
        if (g->ms == ms && g->expire == expire)
            return (int)i + 1;
        if (spare == SIZE_MAX && rill__list_empty(&g->nodes))
            spare = i;
    }
    if (spare != SIZE_MAX) { /* no node names an empty group: it takes the new value */
        loop->tgroups[spare]->ms = ms;
        loop->tgroups[spare]->expire = expire;
        return (int)spare + 1;
    }
    if (loop->ntgroups == RILL__TG_MASK)
        return RILL_ENOSPC;
    if (loop->ntgroups == loop->tgroups_cap) {
        size_t cap = loop->tgroups_cap ? loop->tgroups_cap * 2 : 4;
        rill__tgroup **v = rill__realloc(loop->tgroups, cap * sizeof *v);
        if (!v)
            return RILL_ENOMEM;
        loop->tgroups = v;
        loop->tgroups_cap = cap;
    }
    rill__tgroup *g = rill__malloc(sizeof *g);
    if (!g)
        return RILL_ENOMEM;
    g->ms = ms;
    g->expire = expire;
    rill__list_init(&g->nodes);
    loop->tgroups[loop->ntgroups++] = g;
    return (int)loop->ntgroups;
}

int rill__tnode_arm(rill_loop *loop, rill__tnode *t, uint64_t ms, void (*expire)(rill__tnode *))
{
    rill__tnode_disarm(t);
    if (ms == 0)
        return 0;
    int gi = tgroup_get(loop, ms, expire);
    if (gi < 0)
        return gi;
    t->state = loop->hot.now << 16 | (unsigned)gi;
    rill__list_insert_tail(&loop->tgroups[gi - 1]->nodes, &t->link);
    return 0;
}

uint64_t rill__tnode_ms(const rill_loop *loop, const rill__tnode *t)
{
    return (t->state & RILL__TG_MASK) ? tgroup_of(loop, t)->ms : 0;
}

void rill__tnode_disarm(rill__tnode *t)
{
    rill__list_remove(&t->link);
    t->state = 0;
}

void rill__tnode_move(rill_loop *loop, rill__tnode *t)
{
    /* The list stays sorted by the activity time because the cached clock never goes back. */
    t->state = loop->hot.now << 16 | (t->state & RILL__TG_MASK);
    rill__list_remove(&t->link);
    rill__list_insert_tail(&tgroup_of(loop, t)->nodes, &t->link);
}

static void run_tgroups(rill_loop *loop)
{
    for (size_t i = 0; i < loop->ntgroups; i++) {
        rill__tgroup *g = loop->tgroups[i];
        while (!rill__list_empty(&g->nodes)) {
            rill__tnode *t = rill__container_of(g->nodes.next, rill__tnode, link);
            if (tnode_due(g, t) > loop->hot.now)
                break;
            rill__tnode_disarm(t);
            g->expire(t);
        }
    }
}

/* ---- the iteration --------------------------------------------------------------------- */

static int poll_timeout(rill_loop *loop, rill_run_mode mode)
{
    if (mode == RILL_RUN_NOWAIT || loop->stop || !rill__list_empty(&loop->defers))
        return 0;
    uint64_t due = UINT64_MAX;
    rill__hnode *top = rill__heap_top(&loop->timers);
    if (top)
        due = top->key;
    for (size_t i = 0; i < loop->ntgroups; i++) {
        rill__tgroup *g = loop->tgroups[i];
        if (!rill__list_empty(&g->nodes)) {
            rill__tnode *t = rill__container_of(g->nodes.next, rill__tnode, link);
            due = RILL__MIN(due, tnode_due(g, t));
        }
    }
    if (due == UINT64_MAX)
        return -1;
    if (due <= loop->hot.now)
        return 0;
    return due - loop->hot.now > INT32_MAX ? INT32_MAX : (int)(due - loop->hot.now);
}

static void iterate(rill_loop *loop, rill_run_mode mode)
{
    int timeout = poll_timeout(loop, mode);
    loop->poller->wait(loop->pstate, timeout);
    loop->hot.now = clock_ms();
    rill__timers_run(loop);
    run_tgroups(loop);
    run_defers(loop);
}

static void sigpipe_block(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, old);
    sigpipe_depth++;
}

static void sigpipe_restore(const sigset_t *old)
{
    sigpipe_depth--;
    if (!sigismember(old, SIGPIPE))
        rill__sigpipe_consume(); /* nothing may be left pending when it is unblocked */
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

int rill_loop_run(rill_loop *loop, rill_run_mode mode)
{
    if (!loop || (mode != RILL_RUN_DEFAULT && mode != RILL_RUN_ONCE && mode != RILL_RUN_NOWAIT))
        return RILL_EINVAL;
    if (loop->running)
        return RILL_EBUSY;
    sigset_t old;
    sigpipe_block(&old);
    loop->running = true;
    loop->stop = false;
    loop->hot.now = clock_ms();
    if (mode == RILL_RUN_DEFAULT) {
        while (!loop->stop && loop_busy_active(loop))
            iterate(loop, mode);
    } else {
        iterate(loop, mode);
    }
    loop->running = false;
    loop->stop = false;
    sigpipe_restore(&old);
    return 0;
}

/* ---- io watchers ----------------------------------------------------------------------- */

void rill__io_init(rill__io *io, int fd, rill__io_cb *cb)
{
    io->fd = fd;
    io->mask = 0;
    io->cb = cb;
}

int rill__io_set(rill_loop *loop, rill__io *io, unsigned mask)
{
    if (io->mask == mask)
        return 0;
    int rc = loop->poller->set(loop->pstate, io, mask);
    if (rc == 0)
        io->mask = mask;
    return rc;
}
