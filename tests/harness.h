/* tests/harness.h - helpers shared by the tests: bounded loop runs, hashing, fd counts,
 * counting and failing allocators.  Every wait here is bounded. */
#ifndef RILL_TEST_HARNESS_H
#define RILL_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rill.h"

/* A new loop on the backend named by RILL_BACKEND (the suite's); fails the test on error. */
rill_loop *th_loop_new(void);
/* True on the uring backend, where a socket stream's write goes out with the loop's next
 * submission: the call reports it queued (and the extension exists) where the other
 * backends have written it already. */
bool th_writes_deferred(rill_loop *loop);
/* Runs the loop until no handle is left (bounded) and asserts rill_loop_free succeeds. */
void th_loop_free(rill_loop *loop);
/* Monotonic milliseconds. */
uint64_t th_now_ms(void);
/* A repeating 5 ms timer that keeps RILL_RUN_ONCE from sleeping forever; stop it after. */
rill_timer *th_tick_start(rill_loop *loop);

/* Runs the loop one iteration at a time until cond holds; fails after ms milliseconds. */
#define TH_RUN_UNTIL(loop, cond, ms)                                                   \
    do {                                                                               \
        rill_timer *th_t_ = th_tick_start(loop);                                       \
        uint64_t th_d_ = th_now_ms() + (ms);                                           \
        while (!(cond)) {                                                              \
            if (th_now_ms() > th_d_) {                                                 \
                rill_timer_stop(th_t_);                                                \
                fail_msg("timed out after %d ms waiting for: %s", (int)(ms), #cond);   \
            }                                                                          \
            rill_loop_run(loop, RILL_RUN_ONCE);                                        \
        }                                                                              \
        rill_timer_stop(th_t_);                                                        \
    } while (0)

/* Notes a loop iteration seen at `now` (rill_loop_now): *max keeps the longest gap since
 * the one before (*prev; 0: none yet).  A 1 ms repeating timer calling it measures how
 * far apart iterations come, which on a loaded machine bounds how late a deadline shows. */
static inline void th_gap_note(uint64_t now, uint64_t *prev, uint64_t *max)
{
    if (*prev && now - *prev > *max)
        *max = now - *prev;
    *prev = now;
}

/* FNV-1a, 64 bits: start with TH_HASH_INIT. */
#define TH_HASH_INIT 0xcbf29ce484222325ull
uint64_t th_hash(uint64_t h, const void *data, size_t len);
/* Fills buf with a deterministic pattern from seed. */
void th_fill(void *buf, size_t len, uint64_t seed);

/* A recorder of a client stream's events: counts, the last codes, the bytes read (the
 * first 255 kept in text, all of them hashed), and write completions (th_cli_done). */
typedef struct {
    int connects, closes, errors, eofs, done_ok, done_err;
    int last_err, close_err, done_status;
    size_t bytes;
    uint64_t hash;
    char text[256];
} th_cli;

/* Subscribes c to CONNECT, CLOSE, READ (and ERROR when with_error; without it an error
 * closes the stream) and starts reading; never EOF, so EOF closes the stream.  Returns s. */
rill_stream *th_cli_watch(rill_stream *s, th_cli *c, bool with_error);
/* A rill_done_fn counting into the th_cli given as arg. */
void th_cli_done(rill_stream *s, int status, void *arg);

/* Number of open fds of this process (from /proc/self/fd). */
int th_fd_count(void);

/* Installs an allocator that counts calls (and, with th_alloc_fail_at(n) > 0, fails the
 * n-th allocation from now on).  th_alloc_reset restores the default allocator. */
void th_alloc_install(void);
void th_alloc_reset(void);
size_t th_alloc_count(void);   /* malloc + realloc calls since install */
size_t th_alloc_live(void);    /* allocations not yet freed */
size_t th_alloc_largest(void); /* the largest malloc since install, in bytes */
void th_alloc_fail_at(size_t n);
bool th_alloc_failed(void);    /* the planned failure happened */

#endif
