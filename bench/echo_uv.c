/* bench/echo_uv.c - the libuv peer: an echo server written the way libuv's documentation
 * and its users write one.  Reads land in one 64 KiB buffer owned by the program (libuv's
 * alloc callback hands it out); each read is sent back with uv_try_write, and only what
 * the kernel did not take is copied into a uv_write request.  While such a request is in
 * flight the connection stops reading, so a slow peer cannot make it buffer without bound.
 *
 *   echo_uv PORT        listens on 127.0.0.1:PORT, single-threaded, runs until killed */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define READ_SIZE (64 * 1024)

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
    char data[]; /* the copied remainder */
} write_req;

static uv_loop_t *loop;
static char rbuf[READ_SIZE];
static int rbuf_busy; /* the single buffer is lent to one read at a time */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    if (rbuf_busy) { /* cannot happen with one loop thread, but libuv does not promise it */
        *buf = uv_buf_init(malloc(READ_SIZE), READ_SIZE);
        return;
    }
    rbuf_busy = 1;
    *buf = uv_buf_init(rbuf, READ_SIZE);
}

static void release(const uv_buf_t *buf)
{
    if (buf->base == rbuf)
        rbuf_busy = 0;
    else
        free(buf->base);
}

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    uv_stream_t *s = req->handle;
    free(w);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)s) && uv_stream_get_write_queue_size(s) == 0)
        uv_read_start(s, on_alloc, on_read);
}

/* uv_try_write first; the rest is copied into a uv_write. */
static void echo(uv_stream_t *s, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int w = uv_try_write(s, &b, 1);
    if (w == UV_EAGAIN)
        w = 0;
    if (w < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if ((size_t)w == n)
        return;
    write_req *req = malloc(sizeof *req + n - (size_t)w);
    if (!req) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    memcpy(req->data, p + w, n - (size_t)w);
    req->buf = uv_buf_init(req->data, (unsigned)(n - (size_t)w));
    if (uv_write(&req->req, s, &req->buf, 1, on_written) < 0) {
        free(req);
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    uv_read_stop(s);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0)
        echo(s, buf->base, (size_t)nread);
    else if (nread < 0 && !uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, on_close);
    release(buf);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    if (!c)
        return;
    uv_tcp_init(loop, c);
    if (uv_accept(server, (uv_stream_t *)c) < 0) {
        uv_close((uv_handle_t *)c, on_close);
        return;
    }
    uv_read_start((uv_stream_t *)c, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_uv PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN); /* as the library asks: a write to a closed peer is EPIPE */
    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 511, on_connection);
    if (rc < 0) {
        fprintf(stderr, "echo_uv: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
