/* rill/udp.h - UDP endpoints. */
#ifndef RILL_UDP_H
#define RILL_UDP_H

#include "net.h"

typedef struct rill_udp rill_udp;

#define RILL_UDP_REUSEADDR 0x1u
#define RILL_UDP_IPV6ONLY 0x2u
#define RILL_UDP_BROADCAST 0x4u
/* on_datagram err: RILL_EMSGSIZE flags a datagram cut to the receive buffer. */
#define RILL_UDP_TRUNCATED RILL_EMSGSIZE

RILL_API rill_udp *rill_udp_new(rill_loop *loop);
RILL_API int rill_udp_bind(rill_udp *u, const char *host, uint16_t port, unsigned flags);
RILL_API int rill_udp_send(rill_udp *u, const void *data, size_t len, const rill_addr *to,
                           void (*cb)(rill_udp *, int status, void *), void *arg);
RILL_API int rill_udp_start(rill_udp *u,
                            void (*on_datagram)(rill_udp *, const char *data, size_t len,
                                                const rill_addr *from, int err, void *arg),
                            void *arg);
RILL_API int rill_udp_stop(rill_udp *u);
RILL_API int rill_udp_sockname(const rill_udp *u, rill_addr *out);
RILL_API int rill_udp_set_membership(rill_udp *u, const char *group, const char *iface, bool join);
RILL_API void rill_udp_close(rill_udp *u);

#endif
