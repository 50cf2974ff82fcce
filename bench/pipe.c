/* bench/pipe.c - thread-to-thread throughput of rill_pipe against a kernel pipe(2) moving
 * the same bytes in the same run: 64 KiB rill_bytes writes (zero copy) and 4 KiB copied
 * writes.  Best of 3 runs per case; one line per case with MB/s and the ratio to pipe(2).
 *
 *   bench/pipe [MiB per run]     (default 512)
 *
 * Both sides get the same deal: the kernel pipe keeps its default 64 KiB capacity and
 * rill_pipe gets bsize 64 KiB; readers ask for up to 64 KiB per call.  The zero-copy
 * reader checks that it receives the writer's own memory, in order. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define KIB 1024u
#define RING 16u /* distinct source buffers the writers cycle through */
#define READ_SIZE (64 * KIB)
#define BSIZE (64 * KIB)
#define RUNS 3

static char *ring[RING];
static size_t total;

typedef struct {
    size_t chunk;
    int fd;       /* kernel pipe: the write end */
    rill_pipe *p; /* rill pipe */
} writer_arg;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench/pipe: %s\n", what);
    exit(1);
}

/* ---- kernel pipe ----------------------------------------------------------------------- */

static void *kernel_writer(void *argp)
{
    writer_arg *a = argp;
    for (size_t done = 0, i = 0; done < total; i++) {
        const char *src = ring[i % RING];
        for (size_t off = 0; off < a->chunk;) {
            ssize_t n = write(a->fd, src + off, a->chunk - off);
            if (n < 0)
                die("write(2) failed");
            off += (size_t)n;
        }
        done += a->chunk;
    }
    close(a->fd);
    return NULL;
}

static size_t kernel_run(size_t chunk)
{
    int fds[2];
    char *buf = malloc(READ_SIZE);
    pthread_t t;
    size_t got = 0;
    ssize_t n;
    if (!buf || pipe(fds))
        die("pipe(2) failed");
    writer_arg a = {.chunk = chunk, .fd = fds[1]};
    pthread_create(&t, NULL, kernel_writer, &a);
    while ((n = read(fds[0], buf, READ_SIZE)) > 0)
        got += (size_t)n;
    pthread_join(t, NULL);
    close(fds[0]);
    free(buf);
    return got;
}

/* ---- rill_pipe, zero copy -------------------------------------------------------------- */

static void *bytes_writer(void *argp)
{
    writer_arg *a = argp;
    for (size_t done = 0, i = 0; done < total; done += a->chunk, i++) {
        rill_bytes *b = rill_bytes_static(ring[i % RING], a->chunk);
        if (!b || rill_pipe_write_bytes(a->p, b) < 0)
            die("rill_pipe_write_bytes failed");
        rill_bytes_unref(b);
    }
    rill_pipe_write_eof(a->p);
    return NULL;
}

static size_t bytes_run(size_t chunk)
{
    rill_pipe *p = rill_pipe_new(&(rill_pipe_opts){.bsize = BSIZE, .name = "bench"});
    pthread_t t;
    rill_bytes *b;
    size_t got = 0, i = 0;
    ssize_t n;
    if (!p)
        die("rill_pipe_new failed");
    writer_arg a = {.chunk = chunk, .p = p};
    pthread_create(&t, NULL, bytes_writer, &a);
    while ((n = rill_pipe_read_bytes(p, SIZE_MAX, &b)) > 0) {
        if (rill_bytes_data(b) != ring[i++ % RING])
            die("zero-copy read returned other memory");
        got += (size_t)n;
        rill_bytes_unref(b);
    }
    pthread_join(t, NULL);
    rill_pipe_free(p);
    return got;
}

/* ---- rill_pipe, copied ----------------------------------------------------------------- */

static void *copy_writer(void *argp)
{
    writer_arg *a = argp;
    for (size_t done = 0, i = 0; done < total; done += a->chunk, i++) {
        const char *src = ring[i % RING];
        for (size_t off = 0; off < a->chunk;) {
            ssize_t n = rill_pipe_write(a->p, src + off, a->chunk - off);
            if (n < 0)
                die("rill_pipe_write failed");
            off += (size_t)n;
        }
    }
    rill_pipe_write_eof(a->p);
    return NULL;
}

static size_t copy_run(size_t chunk)
{
    rill_pipe *p = rill_pipe_new(&(rill_pipe_opts){.bsize = BSIZE, .name = "bench"});
    char *buf = malloc(READ_SIZE);
    pthread_t t;
    size_t got = 0;
    ssize_t n;
    if (!p || !buf)
        die("setup failed");
    writer_arg a = {.chunk = chunk, .p = p};
    pthread_create(&t, NULL, copy_writer, &a);
    while ((n = rill_pipe_read(p, buf, READ_SIZE)) > 0)
        got += (size_t)n;
    pthread_join(t, NULL);
    rill_pipe_free(p);
    free(buf);
    return got;
}

/* ---- driver ---------------------------------------------------------------------------- */

typedef struct {
    const char *label;
    size_t (*run)(size_t chunk);
    size_t chunk;
    int base;      /* index of the pipe(2) case it is compared with */
    double target; /* wanted ratio (0: it is a baseline) */
    double best;   /* MB/s */
} bench_case;

static bench_case cases[] = {
    {"pipe(2), 64 KiB writes", kernel_run, 64 * KIB, 0, 0, 0},
    {"rill_pipe, 64 KiB rill_bytes (zero copy)", bytes_run, 64 * KIB, 0, 5.0, 0},
    {"pipe(2), 4 KiB writes", kernel_run, 4 * KIB, 2, 0, 0},
    {"rill_pipe, 4 KiB copied writes", copy_run, 4 * KIB, 2, 1.5, 0},
};
#define NCASES (sizeof cases / sizeof cases[0])

static void measure(bench_case *c)
{
    double t0 = now_s();
    size_t got = c->run(c->chunk);
    double mbs = (double)got / (now_s() - t0) / 1e6;
    if (got != total)
        die("a run lost bytes");
    if (mbs > c->best)
        c->best = mbs;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 512;
    total = (mib ? mib : 512) << 20;
    for (unsigned i = 0; i < RING; i++) {
        if (!(ring[i] = malloc(64 * KIB)))
            die("out of memory");
        memset(ring[i], (int)('a' + i), 64 * KIB);
    }
    /* Runs take turns, so a slow moment of the machine hits every case alike. */
    for (int r = 0; r < RUNS; r++)
        for (size_t i = 0; i < NCASES; i++)
            measure(&cases[i]);
    printf("rill_pipe vs pipe(2), %zu MiB per run, best of %d\n", total >> 20, RUNS);
    for (size_t i = 0; i < NCASES; i++) {
        bench_case *c = &cases[i];
        double ratio = c->best / cases[c->base].best;
        printf("%-42s %8.0f MB/s  %5.2fx pipe(2)", c->label, c->best, ratio);
        if (c->target > 0)
            printf("  (target %.1fx: %s)", c->target, ratio >= c->target ? "met" : "MISSED");
        printf("\n");
    }
    for (unsigned i = 0; i < RING; i++)
        free(ring[i]);
    return 0;
}
