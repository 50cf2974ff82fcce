/* bench/pump_uv.c - the libuv receiver of the pump benchmark: one connection read with a
 * program-owned 64 KiB buffer, bytes counted and dropped; at EOF the connection and the
 * server close and uv_run returns.
 *
 *   pump_uv PORT        listens on 127.0.0.1:PORT; prints  received=N cpu_ns=T  at the end */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "cpu_ns.h"

#define READ_SIZE (64 * 1024)

static uv_tcp_t server, conn;
static char rbuf[READ_SIZE];
static unsigned long long total;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(rbuf, READ_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread > 0) {
        total += (unsigned long long)nread;
    } else if (nread < 0) {
        uv_close((uv_handle_t *)s, NULL);
        uv_close((uv_handle_t *)&server, NULL);
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0 || uv_is_active((uv_handle_t *)&conn))
        return;
    uv_tcp_init(srv->loop, &conn);
    if (uv_accept(srv, (uv_stream_t *)&conn) == 0)
        uv_read_start((uv_stream_t *)&conn, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pump_uv PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* as the library asks: a write to a closed peer is EPIPE */
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_in addr;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 16, on_connection);
    if (rc < 0) {
        fprintf(stderr, "pump_uv: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    printf("received=%llu cpu_ns=%llu\n", total, bench_cpu_ns());
    return 0;
}
