/* src/fiber.c - fibers: stackful coroutines run by the loop, and blocking-style stream
 * calls that suspend only the calling fiber.  Built on the public stream API alone.
 *
 * Scheduling: fibers only ever switch with the loop's own stack ("main"), never fiber to
 * fiber.  A completion callback (frame, drain, timer) runs on main, so it resumes its
 * fiber at once: the fiber runs until it waits again, then the callback returns.  Wake-ups
 * that start inside a fiber or inside a user's call (cancel, join, spawn, yield) go to the
 * loop's ready list instead, run by one deferred call.
 *
 * Requests handed to a stream carry a heap record (wreq), not a pointer into the fiber's
 * stack: a read abandoned by timeout or cancel closes its stream, and the late completion
 * that follows finds the record marked abandoned and only frees it. */
#include "internal.h"
#include "rill/fiber.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define RILL__CTX_DEFINE
#include "arch/switch.h"

#ifdef RILL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIBER_ASAN 1
#endif
#endif
#ifdef FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define DEFAULT_STACK (64 * 1024)
#define MIN_STACK (16 * 1024)
/* The keep-alive timer makes live fibers count as work.  Its tick also runs fibers whose
 * wake-up could not be deferred (rill_loop_defer out of memory), so it is not longer. */
#define KEEPALIVE_MS (60u * 1000u)
#define WREQ_CACHE 64

enum { F_READY, F_RUNNING, F_SUSPENDED, F_DONE };
enum { MECH_ASM, MECH_UCONTEXT };

typedef struct lstate lstate;

struct rill_fiber {
    rill__list link; /* in its loop's ready list while READY */
    lstate *ls;
    void (*fn)(void *);
    void *arg;
    char *map; /* guard page, then the stack */
    size_t map_len;
    void *sp;          /* saved stack pointer (assembly switch) */
    ucontext_t *uc;    /* saved context (ucontext switch) */
    rill_timer *timer; /* deadline of the current wait */
    rill_fiber *joiner;
    int state;
    int wake; /* why the last wait ended: 0, RILL_ETIMEDOUT, RILL_ECANCELED */
    bool cancelled, detached;
    unsigned vg_stack;
    void *asan_fake;
};

/* Per loop (and so per thread): exists while fibers of the loop live or a record of the
 * loop is still held. */
struct lstate {
    lstate *next;
    rill_loop *loop;
    rill_timer *keepalive; /* makes the fibers count as active work */
    size_t live;           /* fibers not finished */
    size_t holds;          /* run_ready in progress, abandoned requests outstanding */
    rill__list ready;
    bool runner;        /* run_ready is deferred */
    struct wreq *wfree; /* recycled request records */
    size_t nwfree;
};

/* A request handed to the stream API; outlives the call when abandoned (f == NULL). */
typedef struct wreq {
    struct wreq *next;
    lstate *ls;
    rill_fiber *f;
    char *buf;
    size_t cap;
    ssize_t result;
    bool done;
} wreq;

#ifdef RILL__CTX_ASM
static int mech = MECH_UCONTEXT; /* chosen once per process by mech_pick */
#endif
static pthread_once_t mech_once = PTHREAD_ONCE_INIT;
static size_t page_size;

/* The two variables every switch touches use the initial-exec TLS model: in the shared
 * library the default model costs a __tls_get_addr call per access.  16 bytes of static TLS
 * are within what glibc keeps for libraries loaded later with dlopen. */
#define HOT_TLS __attribute__((tls_model("initial-exec")))

static _Thread_local rill_fiber *tl_current HOT_TLS;
static _Thread_local lstate *tl_loops;
#ifdef RILL__CTX_ASM
static _Thread_local void *tl_main_sp HOT_TLS;
#endif
static _Thread_local ucontext_t tl_main_uc;
#ifdef FIBER_ASAN
static _Thread_local const void *tl_main_bottom;
static _Thread_local size_t tl_main_size;
static _Thread_local void *tl_main_fake;
#endif

static void resume(rill_fiber *f);

/* ---- mechanism ------------------------------------------------------------------------------- */

#if defined(RILL__CTX_ASM) && defined(__x86_64__)
/* A kernel that enforces shadow stacks for this process would kill it at the first `ret`
 * into another stack; glibc's swapcontext knows how to switch shadow stacks. */
static bool shadow_stack_on(void)
{
    unsigned long features = 0;
    return syscall(SYS_arch_prctl, 0x5005 /* ARCH_SHSTK_STATUS */, &features) == 0 &&
           (features & 1u);
}
#endif

static void mech_pick(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
#ifdef RILL__CTX_ASM
    const char *e = getenv("RILL_FIBER_UCONTEXT");
    bool forced = e && *e && strcmp(e, "0") != 0;
#ifdef __x86_64__
    forced = forced || shadow_stack_on();
#endif
    mech = forced ? MECH_UCONTEXT : MECH_ASM;
#endif
}

const char *rill_fiber_mechanism(void)
{
    pthread_once(&mech_once, mech_pick);
#ifdef RILL__CTX_ASM
    if (mech == MECH_ASM)
        return RILL__CTX_ASM;
#endif
    return "ucontext";
}

/* ---- stacks ---------------------------------------------------------------------------------- */

static char *stack_lo(const rill_fiber *f)
{
    return f->map + page_size;
}

static size_t stack_len(const rill_fiber *f)
{
    return f->map_len - page_size;
}

static int stack_new(rill_fiber *f, size_t size)
{
    size = size ? size : DEFAULT_STACK;
    size = size < MIN_STACK ? MIN_STACK : size;
    if (size > SIZE_MAX / 2)
        return RILL_EINVAL;
    size = (size + page_size - 1) & ~(page_size - 1);
    f->map_len = size + page_size;
    void *m = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return RILL_ENOMEM;
    f->map = m;
    if (mprotect(f->map, page_size, PROT_NONE) < 0) { /* the guard page */
        munmap(f->map, f->map_len);
        f->map = NULL;
        return RILL_ENOMEM;
    }
#ifdef RILL_HAVE_VALGRIND_H
    f->vg_stack = VALGRIND_STACK_REGISTER(stack_lo(f), f->map + f->map_len);
#endif
    return 0;
}

static void stack_free(rill_fiber *f)
{
    if (!f->map)
        return;
#ifdef RILL_HAVE_VALGRIND_H
    VALGRIND_STACK_DEREGISTER(f->vg_stack);
#endif
#ifdef FIBER_ASAN
    /* Frames that never returned (the entry's) leave poisoned redzones behind; a later
     * mapping at this address must not inherit them. */
    ASAN_UNPOISON_MEMORY_REGION(stack_lo(f), stack_len(f));
#endif
    munmap(f->map, f->map_len);
    f->map = NULL;
    rill__free(f->uc);
    f->uc = NULL;
}

/* ---- switching ------------------------------------------------------------------------------- */

static void asan_start(void **fake, const void *bottom, size_t size)
{
#ifdef FIBER_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}

/* On a fiber's stack after a switch from main: remembers main's bounds for the way back. */
static void asan_arrived_on_fiber(void *fake)
{
#ifdef FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, &tl_main_bottom, &tl_main_size);
#else
    (void)fake;
#endif
}

static void asan_arrived_on_main(void)
{
#ifdef FIBER_ASAN
    __sanitizer_finish_switch_fiber(tl_main_fake, NULL, NULL);
#endif
}

/* main -> f; returns when f waits or finishes. */
static void switch_in(rill_fiber *f)
{
#ifdef FIBER_ASAN
    asan_start(&tl_main_fake, stack_lo(f), stack_len(f));
#else
    asan_start(NULL, stack_lo(f), stack_len(f));
#endif
#ifdef RILL__CTX_ASM
    if (mech == MECH_ASM)
        rill__ctx_switch(&tl_main_sp, f->sp);
    else
#endif
        swapcontext(&tl_main_uc, f->uc);
    asan_arrived_on_main();
}

/* f -> main; returns when f is resumed (never, when f finished). */
static void switch_out(rill_fiber *f, bool finished)
{
#ifdef FIBER_ASAN
    asan_start(finished ? NULL : &f->asan_fake, tl_main_bottom, tl_main_size);
#else
    asan_start(finished ? NULL : &f->asan_fake, NULL, 0);
#endif
#ifdef RILL__CTX_ASM
    if (mech == MECH_ASM)
        rill__ctx_switch(&f->sp, tl_main_sp);
    else
#endif
        swapcontext(f->uc, &tl_main_uc);
    asan_arrived_on_fiber(f->asan_fake);
}

/* The first function on a fiber's stack. */
static void fiber_main(void *arg)
{
    rill_fiber *f = arg;
    asan_arrived_on_fiber(NULL);
    f->fn(f->arg);
    f->state = F_DONE;
    switch_out(f, true);
    abort(); /* a finished fiber is never resumed */
}

/* makecontext passes int arguments only: the pointer travels in two halves. */
static void uc_main(int lo, int hi)
{
    uint64_t p = ((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo;
    fiber_main((void *)(uintptr_t)p);
}

static int ctx_new(rill_fiber *f)
{
#ifdef RILL__CTX_ASM
    if (mech == MECH_ASM) {
        f->sp = rill__ctx_init(f->map + f->map_len, fiber_main, f);
        return 0;
    }
#endif
    if (!(f->uc = rill__malloc(sizeof *f->uc)) || getcontext(f->uc) < 0)
        return RILL_ENOMEM;
    f->uc->uc_stack.ss_sp = stack_lo(f);
    f->uc->uc_stack.ss_size = stack_len(f);
    f->uc->uc_link = NULL;
    uint64_t p = (uint64_t)(uintptr_t)f;
    makecontext(f->uc, (void (*)(void))uc_main, 2, (int)(uint32_t)p, (int)(uint32_t)(p >> 32));
    return 0;
}

/* ---- per-loop state -------------------------------------------------------------------------- */

static void run_ready(void *arg);

static void keepalive(rill_timer *t, void *arg)
{
    lstate *ls = arg;
    (void)t;
    if (!ls->runner && !rill__list_empty(&ls->ready))
        run_ready(ls); /* wake-ups that found no memory for their deferred call */
}

static lstate *lstate_find(rill_loop *loop)
{
    for (lstate *ls = tl_loops; ls; ls = ls->next)
        if (ls->loop == loop)
            return ls;
    return NULL;
}

static lstate *lstate_get(rill_loop *loop)
{
    lstate *ls = lstate_find(loop);
    if (ls || !(ls = rill__calloc(1, sizeof *ls)))
        return ls;
    ls->loop = loop;
    rill__list_init(&ls->ready);
    ls->next = tl_loops;
    tl_loops = ls;
    return ls;
}

/* Frees ls once nothing needs it. */
static void lstate_release(lstate *ls)
{
    if (ls->live || ls->holds || ls->runner)
        return;
    for (lstate **pp = &tl_loops; *pp; pp = &(*pp)->next) {
        if (*pp == ls) {
            *pp = ls->next;
            break;
        }
    }
    for (wreq *n, *w = ls->wfree; w; w = n) {
        n = w->next;
        rill__free(w);
    }
    rill__free(ls);
}

static int live_add(lstate *ls)
{
    if (!ls->live &&
        !(ls->keepalive = rill_timer_start(ls->loop, KEEPALIVE_MS, KEEPALIVE_MS, keepalive, ls)))
        return RILL_ENOMEM;
    ls->live++;
    return 0;
}

static void live_drop(lstate *ls)
{
    if (--ls->live == 0) {
        rill_timer_stop(ls->keepalive);
        ls->keepalive = NULL;
    }
}

/* ---- scheduling ------------------------------------------------------------------------------ */

/* Resumes the fibers that were ready when it started; later ones wait for the next run. */
static void run_ready(void *arg)
{
    lstate *ls = arg;
    rill__list batch;
    rill__list_init(&batch);
    rill__list_splice(&batch, &ls->ready);
    ls->runner = false;
    ls->holds++;
    while (!rill__list_empty(&batch)) {
        rill_fiber *f = rill__container_of(batch.next, rill_fiber, link);
        rill__list_remove(&f->link);
        resume(f);
    }
    ls->holds--;
    lstate_release(ls);
}

/* Queues f to run from the loop.  RILL_ENOMEM: f is queued all the same, but only the
 * keep-alive tick will run it. */
static int make_ready(rill_fiber *f)
{
    lstate *ls = f->ls;
    int rc = 0;
    if (!ls->runner && (rc = rill_loop_defer(ls->loop, 0, run_ready, ls)) == 0)
        ls->runner = true;
    f->state = F_READY;
    rill__list_insert_tail(&ls->ready, &f->link);
    return rc;
}

/* Takes f back out of the ready list after make_ready failed (it is running). */
static void unready(rill_fiber *f)
{
    rill__list_remove(&f->link);
    f->state = F_RUNNING;
}

/* Ends a wait of f with `reason`.  `direct`: the caller is a loop callback, so f may run
 * right now on this stack; otherwise it runs from the ready list. */
static void wake(rill_fiber *f, int reason, bool direct)
{
    if (f->state != F_SUSPENDED)
        return; /* already woken: the first reason stands */
    f->wake = reason;
    if (direct && !tl_current) {
        resume(f);
    } else if (make_ready(f) < 0) {
        rill__log(RILL_LOG_ERROR, "fiber wake-up delayed to the keep-alive tick: out of memory");
    }
}

/* f finished (back on main): free the stack, wake a joiner, maybe free the record. */
static void finish(rill_fiber *f)
{
    lstate *ls = f->ls;
    rill_fiber *joiner = f->joiner;
    stack_free(f);
    live_drop(ls);
    f->ls = NULL;
    if (f->detached && !joiner)
        rill__free(f);
    ls->holds++; /* the joiner may run to its end right here */
    if (joiner)
        wake(joiner, 0, true); /* the joiner reaps f */
    ls->holds--;
    lstate_release(ls);
}

static void resume(rill_fiber *f)
{
    assert(!tl_current && f->state != F_DONE);
    f->state = F_RUNNING;
    tl_current = f;
    switch_in(f);
    tl_current = NULL;
    if (f->state == F_DONE)
        finish(f);
}

static void on_deadline(rill_timer *t, void *arg)
{
    rill_fiber *f = arg;
    (void)t;
    f->timer = NULL; /* a one-shot timer frees itself */
    wake(f, RILL_ETIMEDOUT, true);
}

/* The checks every blocking call starts with: 0, or the code to return at once. */
static int precheck(rill_fiber *f, rill_loop *loop, uint64_t deadline)
{
    if (!f || !loop || f->ls->loop != loop)
        return RILL_EINVAL;
    if (f->cancelled)
        return RILL_ECANCELED;
    if (deadline && deadline <= rill_loop_now(loop))
        return RILL_ETIMEDOUT;
    return 0;
}

/* Arms the deadline before anything that cannot be taken back is started. */
static int arm(rill_fiber *f, uint64_t deadline)
{
    if (!deadline)
        return 0;
    rill_loop *loop = f->ls->loop;
    uint64_t now = rill_loop_now(loop);
    f->timer = rill_timer_start(loop, deadline > now ? deadline - now : 0, 0, on_deadline, f);
    return f->timer ? 0 : RILL_ENOMEM;
}

static void disarm(rill_fiber *f)
{
    if (f->timer) { /* most waits have no deadline: skip the call */
        rill_timer_stop(f->timer);
        f->timer = NULL;
    }
}

/* Suspends f until wake(); returns the reason (0, RILL_ETIMEDOUT, RILL_ECANCELED). */
static int park(rill_fiber *f)
{
    f->wake = 0;
    f->state = F_SUSPENDED;
    switch_out(f, false);
    disarm(f);
    return f->wake;
}

/* ---- fibers ---------------------------------------------------------------------------------- */

static void fiber_discard(rill_fiber *f)
{
    lstate *ls = f->ls;
    stack_free(f);
    rill__free(f);
    lstate_release(ls);
}

rill_fiber *rill_fiber_spawn(rill_loop *loop, void (*fn)(void *), void *arg, size_t stack_size)
{
    if (!loop || !fn) {
        errno = EINVAL;
        return NULL;
    }
    pthread_once(&mech_once, mech_pick);
    lstate *ls = lstate_get(loop);
    rill_fiber *f = ls ? rill__calloc(1, sizeof *f) : NULL;
    if (!f) {
        if (ls)
            lstate_release(ls);
        errno = ENOMEM;
        return NULL;
    }
    *f = (rill_fiber){.ls = ls, .fn = fn, .arg = arg};
    rill__list_init(&f->link);
    int rc = stack_new(f, stack_size);
    if (rc == 0)
        rc = ctx_new(f);
    if (rc == 0 && (rc = make_ready(f)) < 0)
        rill__list_remove(&f->link);
    if (rc == 0 && (rc = live_add(ls)) < 0)
        rill__list_remove(&f->link);
    if (rc < 0) {
        fiber_discard(f);
        errno = -rc;
        return NULL;
    }
    return f;
}

rill_fiber *rill_fiber_self(void)
{
    return tl_current;
}

void rill_fiber_detach(rill_fiber *f)
{
    if (!f)
        return;
    if (f->state == F_DONE && !f->joiner)
        rill__free(f);
    else
        f->detached = true;
}

void rill_fiber_cancel(rill_fiber *f)
{
    if (!f || f->state == F_DONE)
        return;
    f->cancelled = true;
    wake(f, RILL_ECANCELED, false);
}

int rill_fiber_sleep(uint64_t ms)
{
    rill_fiber *f = tl_current;
    if (!f)
        return RILL_EINVAL;
    if (f->cancelled)
        return RILL_ECANCELED;
    if (ms == 0) { /* yield: to the back of the ready list */
        int rc = make_ready(f);
        if (rc < 0) {
            unready(f);
            return rc;
        }
        switch_out(f, false);
        return f->cancelled ? RILL_ECANCELED : 0;
    }
    uint64_t now = rill_loop_now(f->ls->loop);
    int rc = arm(f, ms > UINT64_MAX - now ? UINT64_MAX : now + ms);
    if (rc < 0)
        return rc;
    rc = park(f);
    return rc == RILL_ETIMEDOUT ? 0 : rc;
}

int rill_fiber_join(rill_fiber *t, uint64_t deadline)
{
    rill_fiber *f = tl_current;
    if (!f || !t || t->detached)
        return RILL_EINVAL;
    if (t == f)
        return RILL_EDEADLK;
    if (t->joiner)
        return RILL_EPENDING;
    int rc = t->state == F_DONE ? 0 : precheck(f, f->ls->loop, deadline);
    if (rc == 0 && t->state != F_DONE && (rc = arm(f, deadline)) == 0) {
        t->joiner = f;
        rc = park(f);
        t->joiner = NULL;
    }
    if (t->state != F_DONE)
        return rc < 0 ? rc : RILL_ECANCELED;
    rill__free(t); /* reaped: a result that came in wins */
    return 0;
}

/* ---- request records ------------------------------------------------------------------------- */

static wreq *wreq_get(rill_fiber *f, void *buf, size_t cap)
{
    lstate *ls = f->ls;
    wreq *w = ls->wfree;
    if (w) {
        ls->wfree = w->next;
        ls->nwfree--;
    } else if (!(w = rill__malloc(sizeof *w))) {
        return NULL;
    }
    *w = (wreq){.ls = ls, .f = f, .buf = buf, .cap = cap};
    return w;
}

static void wreq_put(wreq *w)
{
    lstate *ls = w->ls;
    if (ls->nwfree < WREQ_CACHE) {
        w->next = ls->wfree;
        ls->wfree = w;
        ls->nwfree++;
    } else {
        rill__free(w);
    }
}

/* The call gives up on w: the late completion frees it.  Holds the loop state until then. */
static void wreq_abandon(wreq *w)
{
    w->f = NULL;
    w->ls->holds++;
}

/* Late completion of an abandoned request. */
static void wreq_drop(wreq *w)
{
    lstate *ls = w->ls;
    ls->holds--;
    rill__free(w);
    lstate_release(ls);
}

/* ---- reads ----------------------------------------------------------------------------------- */

/* A stream that closed under a waiting call: its error, else RILL_ECLOSED. */
static int closed_code(const rill_stream *s)
{
    int e = rill_stream_error(s);
    return e ? e : RILL_ECLOSED;
}

static void on_frame(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    wreq *w = arg;
    if (!w->f) {
        wreq_drop(w);
        return;
    }
    w->done = true;
    if (status == 0 || (status == RILL_EOF && len)) {
        if (len > w->cap) {
            w->result = RILL_ENOBUFS;
        } else {
            memcpy(w->buf, data, len);
            w->result = (ssize_t)len;
        }
    } else {
        w->result = status == RILL_ECANCELED ? closed_code(s) : status;
    }
    wake(w->f, 0, true);
}

typedef enum { R_BYTES, R_EXACTLY, R_UNTIL, R_REGEX } rkind;

typedef struct {
    rkind kind;
    const void *p; /* delimiter or regex */
    size_t n;      /* delimiter length, max or count */
} rspec;

static int read_start(rill_stream *s, const rspec *r, wreq *w)
{
    switch (r->kind) {
    case R_BYTES:
        return rill_stream_read_bytes(s, r->n, on_frame, w);
    case R_EXACTLY:
        return rill_stream_read_exactly(s, r->n, on_frame, w);
    case R_UNTIL:
        return rill_stream_read_until(s, r->p, r->n, on_frame, w);
    default:
        return rill_stream_read_until_regex(s, r->p, on_frame, w);
    }
}

static ssize_t read_common(rill_stream *s, const rspec *r, void *buf, size_t cap, uint64_t deadline)
{
    rill_fiber *f = tl_current;
    int rc = precheck(f, s ? rill_stream_loop(s) : NULL, deadline);
    if (rc < 0)
        return rc;
    if (!buf)
        return RILL_EINVAL;
    wreq *w = wreq_get(f, buf, cap);
    if (!w)
        return RILL_ENOMEM;
    if ((rc = arm(f, deadline)) < 0 || (rc = read_start(s, r, w)) < 0) {
        disarm(f);
        wreq_put(w);
        /* a stream without an EOF handler closes itself once the peer finished and its
         * bytes were read: to the reader that is still the end of the stream */
        if (rc == RILL_ECLOSED && (s->flags & RILL__S_EOF_DONE) && !s->err)
            return RILL_EOF;
        return rc;
    }
    rc = park(f);
    if (!w->done) { /* the request stays queued: abandon it and the stream */
        wreq_abandon(w);
        rill_stream_close(s);
        return rc < 0 ? rc : RILL_ECANCELED;
    }
    ssize_t n = w->result;
    wreq_put(w);
    return n;
}

ssize_t rill_fiber_read_bytes(rill_stream *s, void *buf, size_t max, uint64_t deadline)
{
    rspec r = {R_BYTES, NULL, max};
    return read_common(s, &r, buf, max, deadline);
}

ssize_t rill_fiber_read_exactly(rill_stream *s, void *buf, size_t n, uint64_t deadline)
{
    rspec r = {R_EXACTLY, NULL, n};
    return read_common(s, &r, buf, n, deadline);
}

ssize_t rill_fiber_read_until(rill_stream *s, const void *delim, size_t dlen, void *buf, size_t cap,
                              uint64_t deadline)
{
    rspec r = {R_UNTIL, delim, dlen};
    return read_common(s, &r, buf, cap, deadline);
}

ssize_t rill_fiber_read_until_regex(rill_stream *s, const rill_regex *re, void *buf, size_t cap,
                                    uint64_t deadline)
{
    rspec r = {R_REGEX, re, 0};
    return read_common(s, &r, buf, cap, deadline);
}

/* ---- waiting for stream events --------------------------------------------------------------- */

/* Lives on the fiber's stack: the subscriptions are removed before the call returns. */
typedef struct {
    rill_fiber *f;
    rill_sub *subs[3];
    rill_event_type type; /* the event that ended the wait */
    int err;
    bool fired;
} evwait;

static void on_event(rill_stream *s, const rill_event *ev, void *arg)
{
    evwait *ew = arg;
    (void)s;
    if (ew->fired)
        return;
    ew->fired = true;
    ew->type = ev->type;
    ew->err = ev->err;
    wake(ew->f, 0, true);
}

/* Waits for one of `types` (CLOSE is always among them).  0 when an event fired (see
 * ew->type), else the wake reason or RILL_ENOMEM.  Holds a reference on s meanwhile. */
static int wait_events(rill_fiber *f, rill_stream *s, const rill_event_type *types, int n,
                       evwait *ew, uint64_t deadline)
{
    *ew = (evwait){.f = f};
    int rc = 0;
    rill_stream_ref(s);
    for (int i = 0; i < n && rc == 0; i++)
        if (!(ew->subs[i] = rill_stream_on(s, types[i], on_event, ew)))
            rc = RILL_ENOMEM;
    if (rc == 0 && (rc = arm(f, deadline)) == 0)
        rc = park(f);
    for (int i = 0; i < n; i++)
        rill_stream_off(s, ew->subs[i]);
    rill_stream_unref(s);
    return ew->fired ? 0 : rc;
}

int rill_fiber_write(rill_stream *s, const void *data, size_t len, uint64_t deadline)
{
    rill_fiber *f = tl_current;
    int rc = precheck(f, s ? rill_stream_loop(s) : NULL, deadline);
    if (rc < 0)
        return rc;
    if ((rc = rill_stream_write(s, data, len, NULL, NULL)) < 0)
        return rc;
    if (!rill_stream_write_queue_size(s))
        return 1;
    if (rc == 0)
        return 0; /* queued below the high water mark: no need to wait */
    /* A failure empties the queue without a DRAIN; with an ERROR handler of the user's
     * the stream stays open, so no CLOSE comes either: the ERROR ends the wait. */
    static const rill_event_type types[] = {RILL_EV_DRAIN, RILL_EV_ERROR, RILL_EV_CLOSE};
    evwait ew;
    if ((rc = wait_events(f, s, types, 3, &ew, deadline)) < 0)
        return rc;
    if (ew.type == RILL_EV_ERROR) {
        /* Our handler kept the error from closing the stream; without the user's, it
         * closes as any stream does. */
        if (!rill_stream_has_subscribers(s, RILL_EV_ERROR))
            rill_stream_close(s);
        return ew.err < 0 ? ew.err : RILL_EIO;
    }
    if (ew.type == RILL_EV_CLOSE)
        return closed_code(s);
    return rill_stream_write_queue_size(s) ? 0 : 1;
}

static void on_done(rill_stream *s, int status, void *arg)
{
    wreq *w = arg;
    (void)s;
    if (!w->f) {
        wreq_drop(w);
        return;
    }
    w->done = true;
    w->result = status;
    wake(w->f, 0, true);
}

int rill_fiber_shutdown(rill_stream *s, uint64_t deadline)
{
    rill_fiber *f = tl_current;
    int rc = precheck(f, s ? rill_stream_loop(s) : NULL, deadline);
    if (rc < 0)
        return rc;
    wreq *w = wreq_get(f, NULL, 0);
    if (!w)
        return RILL_ENOMEM;
    if ((rc = arm(f, deadline)) < 0 || (rc = rill_stream_shutdown(s, on_done, w)) < 0) {
        disarm(f);
        wreq_put(w);
        return rc;
    }
    rc = park(f);
    if (!w->done) {
        wreq_abandon(w); /* the shutdown goes on; its completion frees w */
        return rc < 0 ? rc : RILL_ECANCELED;
    }
    rc = (int)w->result;
    wreq_put(w);
    return rc;
}

/* ---- connecting ------------------------------------------------------------------------------ */

static rill_stream *fail_ptr(int *err, int code)
{
    if (err)
        *err = code;
    errno = -code;
    return NULL;
}

/* Waits for s (just created by a connect call) to come up; closes it on failure. */
static rill_stream *connect_wait(rill_fiber *f, rill_stream *s, int *err)
{
    static const rill_event_type types[] = {RILL_EV_CONNECT, RILL_EV_ERROR, RILL_EV_CLOSE};
    evwait ew;
    int rc = wait_events(f, s, types, 3, &ew, 0);
    if (rc == 0 && ew.type == RILL_EV_CONNECT) {
        if (err)
            *err = 0;
        return s;
    }
    if (rc == 0)
        rc = ew.type == RILL_EV_ERROR && ew.err ? ew.err : closed_code(s);
    rill_stream_close(s); /* a failed or abandoned attempt is of no further use */
    return fail_ptr(err, rc);
}

rill_stream *rill_fiber_connect_tcp(rill_loop *loop, const char *host, uint16_t port,
                                    const rill_connect_opts *opts, int *err)
{
    rill_fiber *f = tl_current;
    int rc = precheck(f, loop, 0);
    if (rc < 0)
        return fail_ptr(err, rc);
    rill_stream *s = rill_tcp_connect(loop, host, port, opts);
    return s ? connect_wait(f, s, err) : fail_ptr(err, -errno);
}

rill_stream *rill_fiber_connect_unix(rill_loop *loop, const char *path,
                                     const rill_connect_opts *opts, int *err)
{
    rill_fiber *f = tl_current;
    int rc = precheck(f, loop, 0);
    if (rc < 0)
        return fail_ptr(err, rc);
    rill_stream *s = rill_unix_connect(loop, path, opts);
    return s ? connect_wait(f, s, err) : fail_ptr(err, -errno);
}

/* ---- servers --------------------------------------------------------------------------------- */

/* What fiber.c keeps per server: one CONNECTION and one CLOSE subscription for its life. */
typedef struct srec {
    struct srec *next; /* in tl_servers while the server is open */
    rill_server *srv;
    int refs; /* the open server + one per serving fiber */
    bool closed;
    void (*handle)(rill_stream *, void *); /* serve mode */
    void *arg;
    rill__list jobs;      /* fibers serving connections */
    rill__list backlog;   /* accepted, waiting for rill_fiber_accept */
    rill__list acceptors; /* fibers waiting in rill_fiber_accept */
} srec;

typedef struct { /* a connection that waits for rill_fiber_accept */
    rill__list link;
    rill_stream *conn;
} pending_conn;

typedef struct { /* a fiber waiting in rill_fiber_accept (on its stack) */
    rill__list link;
    rill_fiber *f;
    rill_stream *conn;
    int err;
} acceptor;

typedef struct { /* a fiber running the serve handler for one connection */
    rill__list link;
    srec *r;
    rill_stream *conn;
    rill_sub *close_sub;
    rill_fiber *f;
} job;

static _Thread_local srec *tl_servers;

static void srec_unref(srec *r)
{
    if (--r->refs == 0)
        rill__free(r);
}

static void serve_main(void *arg)
{
    job *j = arg;
    srec *r = j->r;
    r->handle(j->conn, r->arg);
    rill_stream_off(j->conn, j->close_sub);
    rill_stream_close_gracefully(j->conn);
    rill_stream_unref(j->conn);
    rill__list_remove(&j->link);
    rill__free(j);
    srec_unref(r);
}

static void on_conn_close(rill_stream *s, const rill_event *ev, void *arg)
{
    job *j = arg;
    (void)s, (void)ev;
    rill_fiber_cancel(j->f);
}

/* Runs the serve handler for conn in a new fiber. */
static void serve_conn(srec *r, rill_stream *conn)
{
    job *j = rill__calloc(1, sizeof *j);
    if (!j || !(j->close_sub = rill_stream_on(conn, RILL_EV_CLOSE, on_conn_close, j)))
        goto fail;
    j->f = rill_fiber_spawn(rill_stream_loop(conn), serve_main, j, 0);
    if (!j->f) {
        rill_stream_off(conn, j->close_sub);
        goto fail;
    }
    rill_fiber_detach(j->f);
    j->r = r;
    j->conn = rill_stream_ref(conn);
    rill__list_insert_tail(&r->jobs, &j->link);
    r->refs++;
    return;
fail:
    rill__free(j);
    rill__log(RILL_LOG_ERROR, "fiber server: connection dropped: out of memory");
    rill_stream_close(conn);
}

static void on_server_conn(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err,
                           void *arg)
{
    srec *r = arg;
    (void)srv, (void)ev, (void)err;
    if (r->handle) {
        serve_conn(r, conn);
    } else if (!rill__list_empty(&r->acceptors)) {
        acceptor *a = rill__container_of(r->acceptors.next, acceptor, link);
        rill__list_remove(&a->link);
        a->conn = conn;
        wake(a->f, 0, true);
    } else {
        pending_conn *p = rill__malloc(sizeof *p);
        if (!p) {
            rill__log(RILL_LOG_ERROR, "fiber accept: connection dropped: out of memory");
            rill_stream_close(conn);
            return;
        }
        p->conn = rill_stream_ref(conn);
        rill__list_insert_tail(&r->backlog, &p->link);
    }
}

static void on_server_close(rill_server *srv, rill_server_event_type ev, rill_stream *conn, int err,
                            void *arg)
{
    srec *r = arg;
    (void)srv, (void)ev, (void)conn, (void)err;
    r->closed = true;
    for (srec **pp = &tl_servers; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    for (rill__list *n = r->jobs.next; n != &r->jobs; n = n->next)
        rill_fiber_cancel(rill__container_of(n, job, link)->f);
    while (!rill__list_empty(&r->acceptors)) {
        acceptor *a = rill__container_of(r->acceptors.next, acceptor, link);
        rill__list_remove(&a->link);
        a->err = RILL_ECLOSED;
        wake(a->f, 0, true);
    }
    while (!rill__list_empty(&r->backlog)) {
        pending_conn *p = rill__container_of(r->backlog.next, pending_conn, link);
        rill__list_remove(&p->link);
        rill_stream_unref(p->conn); /* the server closes it */
        rill__free(p);
    }
    srec_unref(r);
}

static srec *srec_get(rill_server *srv)
{
    for (srec *r = tl_servers; r; r = r->next)
        if (r->srv == srv)
            return r;
    srec *r = rill__calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (srec){.srv = srv, .refs = 1};
    rill__list_init(&r->jobs);
    rill__list_init(&r->backlog);
    rill__list_init(&r->acceptors);
    /* Servers have no "off": CLOSE first, so that r is freed at the server's close even
     * when the CONNECTION subscription fails (r then serves nothing). */
    if (!rill_server_on(srv, RILL_SEV_CLOSE, on_server_close, r)) {
        rill__free(r);
        return NULL;
    }
    if (!rill_server_on(srv, RILL_SEV_CONNECTION, on_server_conn, r))
        return NULL;
    r->next = tl_servers;
    tl_servers = r;
    return r;
}

int rill_server_serve_fibers(rill_server *srv, void (*handle)(rill_stream *, void *), void *arg)
{
    if (!srv || !handle)
        return RILL_EINVAL;
    srec *r = srec_get(srv);
    if (!r)
        return RILL_ENOMEM;
    if (r->handle)
        return RILL_EPENDING;
    if (!rill__list_empty(&r->acceptors))
        return RILL_EINVAL;
    r->handle = handle;
    r->arg = arg;
    while (!rill__list_empty(&r->backlog)) { /* accepted before: serve them too */
        pending_conn *p = rill__container_of(r->backlog.next, pending_conn, link);
        rill__list_remove(&p->link);
        if (!rill_stream_is_closed(p->conn))
            serve_conn(r, p->conn);
        rill_stream_unref(p->conn);
        rill__free(p);
    }
    return 0;
}

/* The oldest queued connection that is still open, or NULL. */
static rill_stream *backlog_pop(srec *r)
{
    while (!rill__list_empty(&r->backlog)) {
        pending_conn *p = rill__container_of(r->backlog.next, pending_conn, link);
        rill_stream *conn = p->conn;
        rill__list_remove(&p->link);
        rill__free(p);
        bool open = !rill_stream_is_closed(conn);
        rill_stream_unref(conn); /* an open one keeps its open state's reference */
        if (open)
            return conn;
    }
    return NULL;
}

rill_stream *rill_fiber_accept(rill_server *srv, uint64_t deadline, int *err)
{
    rill_fiber *f = tl_current;
    int rc = precheck(f, srv ? rill_server_loop(srv) : NULL, deadline);
    if (rc < 0)
        return fail_ptr(err, rc);
    srec *r = srec_get(srv);
    if (!r)
        return fail_ptr(err, RILL_ENOMEM);
    if (r->handle || r->closed)
        return fail_ptr(err, r->closed ? RILL_ECLOSED : RILL_EINVAL);
    rill_stream *conn = backlog_pop(r);
    if (conn) {
        if (err)
            *err = 0;
        return conn;
    }
    acceptor a = {.f = f};
    rill__list_insert_tail(&r->acceptors, &a.link);
    if ((rc = arm(f, deadline)) == 0)
        rc = park(f);
    rill__list_remove(&a.link);
    if (a.conn) {
        if (err)
            *err = 0;
        return a.conn;
    }
    return fail_ptr(err, a.err ? a.err : rc < 0 ? rc : RILL_ECANCELED);
}
