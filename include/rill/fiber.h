/* rill/fiber.h - fibers: blocking-style calls that suspend only the calling fiber. */
#ifndef RILL_FIBER_H
#define RILL_FIBER_H

#include "net.h"

typedef struct rill_fiber rill_fiber;

RILL_API rill_fiber *rill_fiber_spawn(rill_loop *loop, void (*fn)(void *), void *arg,
                                      size_t stack_size);
RILL_API rill_fiber *rill_fiber_self(void);
RILL_API int rill_fiber_join(rill_fiber *f, uint64_t deadline);
RILL_API void rill_fiber_cancel(rill_fiber *f);
RILL_API int rill_fiber_sleep(uint64_t ms);
RILL_API ssize_t rill_fiber_read_bytes(rill_stream *s, void *buf, size_t max, uint64_t deadline);
RILL_API ssize_t rill_fiber_read_exactly(rill_stream *s, void *buf, size_t n, uint64_t deadline);
RILL_API ssize_t rill_fiber_read_until(rill_stream *s, const void *delim, size_t dlen, void *buf,
                                       size_t cap, uint64_t deadline);
RILL_API ssize_t rill_fiber_read_until_regex(rill_stream *s, const rill_regex *re, void *buf,
                                             size_t cap, uint64_t deadline);
RILL_API int rill_fiber_write(rill_stream *s, const void *data, size_t len, uint64_t deadline);
RILL_API int rill_fiber_shutdown(rill_stream *s, uint64_t deadline);
RILL_API rill_stream *rill_fiber_connect_tcp(rill_loop *loop, const char *host, uint16_t port,
                                             const rill_connect_opts *opts, int *err);
RILL_API rill_stream *rill_fiber_connect_unix(rill_loop *loop, const char *path,
                                              const rill_connect_opts *opts, int *err);
RILL_API rill_stream *rill_fiber_accept(rill_server *srv, uint64_t deadline, int *err);
RILL_API int rill_server_serve_fibers(rill_server *srv, void (*handle)(rill_stream *, void *),
                                      void *arg);

#endif
