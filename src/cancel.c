/* src/cancel.c - cancellation tokens (GIO's GCancellable): any thread triggers, each
 * covered operation hears about it on its own loop's thread.
 *
 * A token keeps a list of watches under a mutex.  Triggering moves every watch out of the
 * list and posts it to its loop; from then on the posted call owns the watch.  The
 * operation may finish on its loop thread before that call arrives: its unregister then
 * only marks the watch dead and the posted call frees it without calling anything.  Both
 * of those happen on the loop thread, so only the hand-over from the list needs the lock. */
#include "cancel.h"

struct rill_cancel {
    pthread_mutex_t mu;
    atomic_bool triggered;
    rill__list watches; /* not fired yet */
};

struct rill__cancel_watch {
    rill__list link;
    _Atomic(rill_cancel *) c; /* NULL once fired: the posted call owns the watch */
    rill_loop *loop;
    void (*fn)(void *);
    void *arg;
    bool dead;      /* loop thread: unregistered while its call was on the way */
    bool delivered; /* loop thread: fn ran; the unregister frees */
};

rill_cancel *rill_cancel_new(void)
{
    rill_cancel *c = rill__calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->triggered, false);
    rill__list_init(&c->watches);
    return c;
}

void rill_cancel_free(rill_cancel *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    bool covers = !rill__list_empty(&c->watches);
    pthread_mutex_unlock(&c->mu);
    if (covers) {
        /* Freeing would leave operations with a dangling token: keep it (a leak is the
         * lesser harm) and say why. */
        rill__log(RILL_LOG_ERROR, "rill_cancel_free: the token still covers an operation");
        return;
    }
    pthread_mutex_destroy(&c->mu);
    rill__free(c);
}

bool rill_cancel_is_triggered(const rill_cancel *c)
{
    return c && atomic_load(&((rill_cancel *)c)->triggered);
}

/* The posted half of a trigger, on the watch's loop thread. */
static void fired(void *p)
{
    rill__cancel_watch *w = p;
    if (w->dead) {
        rill__free(w);
        return;
    }
    w->delivered = true;
    w->fn(w->arg); /* may unregister, which frees w: w is not touched after this */
}

/* Hands w to its loop (c->mu held).  false when the post could not be allocated; w is
 * then still the list's. */
static bool post_watch(rill_cancel *c, rill__cancel_watch *w)
{
    atomic_store(&w->c, NULL);
    if (rill_loop_post(w->loop, fired, w) == 0)
        return true;
    atomic_store(&w->c, c);
    return false;
}

void rill_cancel_trigger(rill_cancel *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->triggered, true);
    rill__list keep;
    rill__list_init(&keep);
    while (!rill__list_empty(&c->watches)) {
        rill__cancel_watch *w = rill__container_of(c->watches.next, rill__cancel_watch, link);
        rill__list_remove(&w->link);
        if (!post_watch(c, w)) {
            rill__list_insert_tail(&keep, &w->link);
            rill__log(RILL_LOG_ERROR, "rill_cancel_trigger: out of memory; an operation "
                                      "stays uncancelled");
        }
    }
    rill__list_splice(&c->watches, &keep);
    pthread_mutex_unlock(&c->mu);
}

rill__cancel_watch *rill__cancel_register(rill_cancel *c, rill_loop *loop, void (*fn)(void *arg),
                                          void *arg)
{
    if (!c || !loop || !fn) {
        errno = EINVAL;
        return NULL;
    }
    rill__cancel_watch *w = rill__calloc(1, sizeof *w);
    if (!w) {
        errno = ENOMEM;
        return NULL;
    }
    rill__list_init(&w->link);
    w->loop = loop;
    w->fn = fn;
    w->arg = arg;
    atomic_init(&w->c, c);
    pthread_mutex_lock(&c->mu);
    bool ok = true;
    if (atomic_load(&c->triggered))
        ok = post_watch(c, w); /* fired before it covered anything: it still counts */
    else
        rill__list_insert_tail(&c->watches, &w->link);
    pthread_mutex_unlock(&c->mu);
    if (!ok) {
        rill__free(w);
        errno = ENOMEM;
        return NULL;
    }
    return w;
}

void rill__cancel_unregister(rill__cancel_watch *w)
{
    if (!w)
        return;
    rill_cancel *c = atomic_load(&w->c);
    if (c) {
        /* Still listed unless a trigger took it since the load: decide under the lock. */
        pthread_mutex_lock(&c->mu);
        bool listed = atomic_load(&w->c) != NULL;
        if (listed)
            rill__list_remove(&w->link);
        pthread_mutex_unlock(&c->mu);
        if (listed) {
            rill__free(w);
            return;
        }
    }
    if (w->delivered)
        rill__free(w);
    else
        w->dead = true; /* the posted call frees it */
}
