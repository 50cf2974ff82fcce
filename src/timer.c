/* src/timer.c - user timers on a 4-ary min-heap ordered by (deadline, start order). */
#include "internal.h"

#include "loop_impl.h"

struct rill_timer {
    rill__hnode h;
    rill_loop *loop;
    uint64_t repeat;
    void (*cb)(rill_timer *, void *);
    void *arg;
    bool in_cb, stopped;
};

static bool less(const rill__hnode *a, const rill__hnode *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

void rill__heap_init(rill__heap *h)
{
    h->v = NULL;
    h->len = h->cap = 0;
    h->seq = 0;
}

void rill__heap_free(rill__heap *h)
{
    rill__free(h->v);
    rill__heap_init(h);
}

static void place(rill__heap *h, size_t i, rill__hnode *n)
{
    h->v[i] = n;
    n->idx = i;
}

static void sift_up(rill__heap *h, size_t i, rill__hnode *n)
{
    while (i > 0) {
        size_t parent = (i - 1) / 4;
        if (!less(n, h->v[parent]))
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void sift_down(rill__heap *h, size_t i, rill__hnode *n)
{
    for (;;) {
        size_t first = 4 * i + 1, best = i;
        rill__hnode *bn = n;
        for (size_t c = first; c < first + 4 && c < h->len; c++) {
            if (less(h->v[c], bn)) {
                best = c;
                bn = h->v[c];
            }
        }
        if (best == i)
            break;
        place(h, i, bn);
        i = best;
    }
    place(h, i, n);
}

int rill__heap_push(rill__heap *h, rill__hnode *n)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        rill__hnode **v = rill__realloc(h->v, cap * sizeof *v);
        if (!v)
            return RILL_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    n->seq = h->seq++;
    sift_up(h, h->len++, n);
    return 0;
}

void rill__heap_remove(rill__heap *h, rill__hnode *n)
{
    size_t i = n->idx;
    assert(i < h->len && h->v[i] == n);
    rill__hnode *last = h->v[--h->len];
    n->idx = SIZE_MAX;
    if (last == n)
        return;
    if (i > 0 && less(last, h->v[(i - 1) / 4]))
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}

rill_timer *rill_timer_start(rill_loop *loop, uint64_t after, uint64_t repeat,
                             void (*cb)(rill_timer *, void *), void *arg)
{
    if (!loop || !cb) {
        errno = EINVAL;
        return NULL;
    }
    rill_timer *t = rill__calloc(1, sizeof *t);
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    t->loop = loop;
    t->repeat = repeat;
    t->cb = cb;
    t->arg = arg;
    t->h.key = after > UINT64_MAX - loop->hot.now ? UINT64_MAX : loop->hot.now + after;
    if (rill__heap_push(&loop->timers, &t->h) < 0) {
        rill__free(t);
        errno = ENOMEM;
        return NULL;
    }
    return t;
}

void rill_timer_stop(rill_timer *t)
{
    if (!t || t->stopped)
        return;
    t->stopped = true;
    if (t->in_cb)
        return; /* rill__timers_run frees it when the callback returns */
    rill__heap_remove(&t->loop->timers, &t->h);
    rill__free(t);
}

/* Fires due timers.  Timers started (or re-armed) during this pass wait for the next one,
 * so a zero-delay repeating timer cannot starve the loop. */
void rill__timers_run(rill_loop *loop)
{
    rill__heap *h = &loop->timers;
    uint64_t limit = h->seq;
    rill__hnode *top;
    while ((top = rill__heap_top(h)) && top->key <= loop->hot.now && top->seq < limit) {
        rill_timer *t = rill__container_of(top, rill_timer, h);
        rill__heap_remove(h, top);
        t->in_cb = true;
        t->cb(t, t->arg);
        t->in_cb = false;
        if (t->stopped || !t->repeat) {
            rill__free(t);
            continue;
        }
        t->h.key = loop->hot.now + t->repeat;
        if (rill__heap_push(h, &t->h) < 0) { /* cannot grow: only after a removal, so never */
            rill__log(RILL_LOG_ERROR, "timer dropped: out of memory");
            rill__free(t);
        }
    }
}

void rill__timers_free(rill_loop *loop)
{
    while (loop->timers.len) {
        rill__hnode *n = loop->timers.v[loop->timers.len - 1];
        rill__heap_remove(&loop->timers, n);
        rill__free(rill__container_of(n, rill_timer, h));
    }
}
