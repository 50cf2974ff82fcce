/* bench/fiber_switch.c - what a fiber context switch costs, for both mechanisms.
 *
 *   fiber_switch [PAIRS]     (default 10,000,000)
 *
 * raw: two contexts switching back and forth with nothing else in between - the
 *      assembly switch fibers use (src/arch/) against swapcontext, which also saves and
 *      restores the signal mask with a syscall on every switch.
 * yield: rill_fiber_sleep(0) in two fibers on one loop, in a child process per mechanism
 *      (RILL_FIBER_UCONTEXT=1 selects ucontext there): a yield goes through the loop's
 *      ready list, a deferred call and one loop iteration, so it shows the scheduler's
 *      cost on top of the switch.
 * Each raw figure is the best of 5 runs (the machine may be shared); one line per
 * measurement: "fiber_switch MODE MECH: N pairs/s, X ns/switch". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "rill.h"
#include "rill/fiber.h"
#include "arch/switch.h"

#define STACK (64 * 1024)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *mode, const char *mech, unsigned long pairs, double secs)
{
    printf("fiber_switch %s %s: %.0f pairs/s, %.1f ns/switch\n", mode, mech, pairs / secs,
           secs * 1e9 / (2.0 * (double)pairs));
    fflush(stdout);
}

static unsigned long npairs;

/* ---- raw assembly switch ---------------------------------------------------------------- */

#ifdef RILL__CTX_ASM
static void *main_sp, *co_sp;

static void asm_body(void *arg)
{
    (void)arg;
    for (;;)
        rill__ctx_switch(&co_sp, main_sp);
}

static void bench_asm(void)
{
    char *stack = malloc(STACK);
    co_sp = rill__ctx_init(stack + STACK, asm_body, NULL);
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        double t0 = now_s();
        for (unsigned long i = 0; i < npairs; i++)
            rill__ctx_switch(&main_sp, co_sp);
        double t = now_s() - t0;
        best = t < best ? t : best;
    }
    report("raw", RILL__CTX_ASM, npairs, best);
    free(stack); /* the coroutine is parked for good: nothing runs on it any more */
}
#endif

/* ---- raw ucontext ------------------------------------------------------------------------- */

static ucontext_t main_uc, co_uc;

static void uc_body(void)
{
    for (;;)
        swapcontext(&co_uc, &main_uc);
}

static void bench_ucontext(unsigned long pairs)
{
    char *stack = malloc(STACK);
    getcontext(&co_uc);
    co_uc.uc_stack.ss_sp = stack;
    co_uc.uc_stack.ss_size = STACK;
    co_uc.uc_link = NULL;
    makecontext(&co_uc, uc_body, 0);
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        double t0 = now_s();
        for (unsigned long i = 0; i < pairs; i++)
            swapcontext(&main_uc, &co_uc);
        double t = now_s() - t0;
        best = t < best ? t : best;
    }
    report("raw", "ucontext", pairs, best);
    free(stack);
}

/* ---- yields through the library ---------------------------------------------------------------
 */

static void yielder(void *arg)
{
    unsigned long n = *(unsigned long *)arg;
    for (unsigned long i = 0; i < n; i++)
        rill_fiber_sleep(0);
}

static void bench_yield(unsigned long pairs)
{
    rill_loop *loop = rill_loop_new(NULL);
    unsigned long each = pairs / 2; /* two fibers: every yield is a switch out and back in */
    rill_fiber *a = rill_fiber_spawn(loop, yielder, &each, 0);
    rill_fiber *b = rill_fiber_spawn(loop, yielder, &each, 0);
    if (!loop || !a || !b) {
        perror("fiber_switch: spawn");
        exit(1);
    }
    rill_fiber_detach(a);
    rill_fiber_detach(b);
    double t0 = now_s();
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    report("yield", rill_fiber_mechanism(), 2 * each, now_s() - t0);
    rill_loop_free(loop);
}

static void yield_in_child(bool ucontext, unsigned long pairs)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (ucontext)
            setenv("RILL_FIBER_UCONTEXT", "1", 1);
        else
            unsetenv("RILL_FIBER_UCONTEXT");
        bench_yield(pairs);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
}

int main(int argc, char **argv)
{
    npairs = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000000ul;
#ifdef RILL__CTX_ASM
    bench_asm();
#endif
    bench_ucontext(npairs / 10); /* a syscall per switch: a tenth is plenty */
    yield_in_child(false, npairs / 10);
    yield_in_child(true, npairs / 10);
    return 0;
}
