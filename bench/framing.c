/* bench/framing.c - lines per second of rill_stream_read_until("\n") over 1 GiB of 80-byte
 * lines fed through a socketpair, against memchr() over the same bytes in memory (the
 * issue's figure: `ratio`) and against the practical limit of the socketpair itself, a
 * loop of read(2) of 64 KiB and memchr() with no rill (`raw_ratio`): the kernel's copy out
 * of the socket costs more per line than memchr does, so `ratio` cannot reach 1, nor even
 * the raw loop's own share of memchr.
 * Usage: framing [MiB]   (default 1024).  Prints one line per run and the best ratios. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define BLOCK (1u << 20)
#define LINE 80

static char *g_block;
static size_t g_blocks;
static int g_wfd;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *writer(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < g_blocks; i++) {
        size_t off = 0;
        while (off < BLOCK) {
            ssize_t n = write(g_wfd, g_block + off, BLOCK - off);
            if (n <= 0)
                return NULL;
            off += (size_t)n;
        }
    }
    close(g_wfd);
    return NULL;
}

typedef struct {
    size_t lines, bytes;
} counter;

static void on_line(rill_stream *s, int status, const char *data, size_t len, void *arg)
{
    counter *c = arg;
    (void)data;
    if (status < 0)
        return;
    c->lines++;
    c->bytes += len;
    rill_stream_read_until(s, "\n", 1, on_line, c);
}

/* The socketpair both socket runs read from: the writer's end gets big buffers too. */
static int make_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    int big = 4 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    return 0;
}

static double run_rill(size_t *lines)
{
    int sv[2];
    if (make_pair(sv) < 0)
        return 0;
    rill_loop *loop = rill_loop_new(NULL);
    rill_stream *s = rill_fd_open(loop, sv[1], 0);
    counter c = {0};
    rill_stream_read_until(s, "\n", 1, on_line, &c);
    g_wfd = sv[0];
    pthread_t th;
    double t0 = now_s();
    pthread_create(&th, NULL, writer, NULL);
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    rill_loop_free(loop);
    *lines = c.lines;
    return (double)c.lines / dt;
}

/* The limit of the socketpair: blocking read(2) of 64 KiB (the size of rill's read) and
 * memchr() counting, no event loop, no framing, no callback. */
static double run_raw(size_t *lines)
{
    int sv[2];
    if (make_pair(sv) < 0)
        return 0;
    enum { RAW_READ = 64 * 1024 };
    char *buf = malloc(RAW_READ);
    size_t n = 0;
    g_wfd = sv[0];
    pthread_t th;
    double t0 = now_s();
    pthread_create(&th, NULL, writer, NULL);
    for (;;) {
        ssize_t got = read(sv[1], buf, RAW_READ);
        if (got <= 0)
            break;
        const char *p = buf, *end = buf + got, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
            n++;
            p = nl + 1;
        }
    }
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    close(sv[1]);
    free(buf);
    *lines = n;
    return (double)n / dt;
}

static double run_memchr(size_t *lines)
{
    size_t n = 0;
    double t0 = now_s();
    for (size_t i = 0; i < g_blocks; i++) {
        const char *p = g_block, *end = g_block + BLOCK;
        const char *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
            n++;
            p = nl + 1;
        }
    }
    double dt = now_s() - t0;
    *lines = n;
    return (double)n / dt;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    g_blocks = mib;
    g_block = malloc(BLOCK);
    for (size_t i = 0; i < BLOCK; i++)
        g_block[i] = (i % LINE == LINE - 1) ? '\n' : (char)('a' + i % 26);
    double best_r = 0, best_m = 0, best_w = 0;
    for (int run = 0; run < 3; run++) {
        size_t lr = 0, lw = 0, lm = 0;
        double r = run_rill(&lr), w = run_raw(&lw), m = run_memchr(&lm);
        printf("framing run=%d rill_lines_per_s=%.0f memchr_lines_per_s=%.0f raw_lines_per_s=%.0f "
               "lines=%zu/%zu/%zu\n",
               run, r, m, w, lr, lm, lw);
        if (lr != lm || lw != lm) {
            fprintf(stderr, "framing: line counts differ\n");
            return 1;
        }
        best_r = r > best_r ? r : best_r;
        best_m = m > best_m ? m : best_m;
        best_w = w > best_w ? w : best_w;
    }
    /* ratio: rill against memchr in memory (the figure); raw_ratio: rill against
     * the raw read loop, the most any reader of this socketpair gets */
    printf("framing best rill_lines_per_s=%.0f memchr_lines_per_s=%.0f raw_lines_per_s=%.0f "
           "ratio=%.3f raw_ratio=%.3f\n",
           best_r, best_m, best_w, best_r / best_m, best_r / best_w);
    free(g_block);
    return 0;
}
