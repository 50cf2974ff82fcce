/* src/pool.c - the loop's thread pool: blocking work off the loop thread, completion
 * back on it through the loop's post queue.  Threads start on first use. */
#include "internal.h"

#include <signal.h>

#include "loop_impl.h"

typedef struct {
    rill__list link;
    rill__post post; /* completion, posted back without allocating */
    rill_loop *loop;
    void (*work)(void *);
    void (*done)(void *, int);
    void *arg;
} work_item;

struct rill__pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rill__list queue;
    bool quit;
    unsigned n;
    pthread_t threads[];
};

static void *worker(void *p)
{
    rill__pool *pool = p;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (rill__list_empty(&pool->queue) && !pool->quit)
            pthread_cond_wait(&pool->cv, &pool->mu);
        if (rill__list_empty(&pool->queue))
            break; /* quit, and nothing left */
        work_item *w = rill__container_of(pool->queue.next, work_item, link);
        rill__list_remove(&w->link);
        pthread_mutex_unlock(&pool->mu);
        w->work(w->arg);
        rill__post_push(w->loop, &w->post);
        pthread_mutex_lock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

static void work_finish(void *p)
{
    work_item *w = p;
    rill_loop *loop = w->loop;
    void (*done)(void *, int) = w->done;
    void *arg = w->arg;
    rill__free(w);
    loop->work_pending--;
    if (done)
        done(arg, 0);
}

/* Workers never take signals meant for the process (SIGINT, SIGPIPE, ...). */
static int start_threads(rill__pool *pool, unsigned n)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (pool->n = 0; pool->n < n; pool->n++) {
        if ((rc = pthread_create(&pool->threads[pool->n], NULL, worker, pool)) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool->n ? 0 : -rc;
}

static rill__pool *pool_get(rill_loop *loop)
{
    if (loop->pool)
        return loop->pool;
    rill__pool *pool = rill__calloc(1, sizeof *pool + loop->nthreads * sizeof(pthread_t));
    if (!pool)
        return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    rill__list_init(&pool->queue);
    if (start_threads(pool, loop->nthreads) < 0) {
        pthread_cond_destroy(&pool->cv);
        pthread_mutex_destroy(&pool->mu);
        rill__free(pool);
        errno = EAGAIN;
        return NULL;
    }
    return loop->pool = pool;
}

int rill_loop_work(rill_loop *loop, void (*work)(void *), void (*done)(void *, int), void *arg)
{
    if (!loop || !work)
        return RILL_EINVAL;
    work_item *w = rill__malloc(sizeof *w);
    if (!w)
        return RILL_ENOMEM;
    errno = ENOMEM;
    rill__pool *pool = pool_get(loop);
    if (!pool) {
        int err = -errno;
        rill__free(w);
        return err;
    }
    w->loop = loop;
    w->work = work;
    w->done = done;
    w->arg = arg;
    w->post.fn = work_finish;
    w->post.arg = w;
    w->post.owned = false;
    loop->work_pending++;
    pthread_mutex_lock(&pool->mu);
    rill__list_insert_tail(&pool->queue, &w->link);
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

void rill__pool_free(rill_loop *loop)
{
    rill__pool *pool = loop->pool;
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->quit = true;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (unsigned i = 0; i < pool->n; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    rill__free(pool);
    loop->pool = NULL;
}
