/* rill/err.h - error codes: negative errno values plus the library's own codes. */
#ifndef RILL_ERR_H
#define RILL_ERR_H

#include <errno.h>
#include <stdbool.h>

#ifndef RILL_API
#define RILL_API __attribute__((visibility("default")))
#endif

/* Every errno Linux defines, by name.  Aliases (EWOULDBLOCK, EDEADLOCK, ENOTSUP)
 * share a value with their canonical name and are spelled out after the enum. */
#define RILL_ERRNO_MAP(X)                                                                  \
    X(EPERM) X(ENOENT) X(ESRCH) X(EINTR) X(EIO) X(ENXIO) X(E2BIG) X(ENOEXEC) X(EBADF)      \
    X(ECHILD) X(EAGAIN) X(ENOMEM) X(EACCES) X(EFAULT) X(ENOTBLK) X(EBUSY) X(EEXIST)        \
    X(EXDEV) X(ENODEV) X(ENOTDIR) X(EISDIR) X(EINVAL) X(ENFILE) X(EMFILE) X(ENOTTY)        \
    X(ETXTBSY) X(EFBIG) X(ENOSPC) X(ESPIPE) X(EROFS) X(EMLINK) X(EPIPE) X(EDOM) X(ERANGE)  \
    X(EDEADLK) X(ENAMETOOLONG) X(ENOLCK) X(ENOSYS) X(ENOTEMPTY) X(ELOOP) X(ENOMSG)         \
    X(EIDRM) X(ECHRNG) X(EL2NSYNC) X(EL3HLT) X(EL3RST) X(ELNRNG) X(EUNATCH) X(ENOCSI)      \
    X(EL2HLT) X(EBADE) X(EBADR) X(EXFULL) X(ENOANO) X(EBADRQC) X(EBADSLT) X(EBFONT)        \
    X(ENOSTR) X(ENODATA) X(ETIME) X(ENOSR) X(ENONET) X(ENOPKG) X(EREMOTE) X(ENOLINK)       \
    X(EADV) X(ESRMNT) X(ECOMM) X(EPROTO) X(EMULTIHOP) X(EDOTDOT) X(EBADMSG) X(EOVERFLOW)   \
    X(ENOTUNIQ) X(EBADFD) X(EREMCHG) X(ELIBACC) X(ELIBBAD) X(ELIBSCN) X(ELIBMAX)           \
    X(ELIBEXEC) X(EILSEQ) X(ERESTART) X(ESTRPIPE) X(EUSERS) X(ENOTSOCK) X(EDESTADDRREQ)    \
    X(EMSGSIZE) X(EPROTOTYPE) X(ENOPROTOOPT) X(EPROTONOSUPPORT) X(ESOCKTNOSUPPORT)         \
    X(EOPNOTSUPP) X(EPFNOSUPPORT) X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL)           \
    X(ENETDOWN) X(ENETUNREACH) X(ENETRESET) X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS)       \
    X(EISCONN) X(ENOTCONN) X(ESHUTDOWN) X(ETOOMANYREFS) X(ETIMEDOUT) X(ECONNREFUSED)       \
    X(EHOSTDOWN) X(EHOSTUNREACH) X(EALREADY) X(EINPROGRESS) X(ESTALE) X(EUCLEAN)           \
    X(ENOTNAM) X(ENAVAIL) X(EISNAM) X(EREMOTEIO) X(EDQUOT) X(ENOMEDIUM) X(EMEDIUMTYPE)     \
    X(ECANCELED) X(ENOKEY) X(EKEYEXPIRED) X(EKEYREVOKED) X(EKEYREJECTED) X(EOWNERDEAD)     \
    X(ENOTRECOVERABLE) X(ERFKILL) X(EHWPOISON)

/* The library's own codes, outside errno's range: name, value, message.
 * Name-resolution failures (getaddrinfo's EAI_*) are library codes too. */
#define RILL_LIBERR_MAP(X)                                                                 \
    X(EOF, -4095, "end of stream")                                                         \
    X(ECLOSED, -4094, "operation on a closed handle")                                      \
    X(EPENDING, -4093, "an operation is already pending")                                  \
    X(ENOMATCH, -4092, "no match")                                                         \
    X(EAI_ADDRFAMILY, -3001, "host has no address in the requested family")                \
    X(EAI_AGAIN, -3002, "temporary failure in name resolution")                            \
    X(EAI_BADFLAGS, -3003, "bad flags for name resolution")                                \
    X(EAI_FAIL, -3004, "permanent failure in name resolution")                             \
    X(EAI_FAMILY, -3005, "address family not supported by name resolution")                \
    X(EAI_MEMORY, -3006, "out of memory in name resolution")                               \
    X(EAI_NODATA, -3007, "host has no address")                                            \
    X(EAI_NONAME, -3008, "unknown host or service")                                        \
    X(EAI_SERVICE, -3009, "service not available for socket type")                         \
    X(EAI_SOCKTYPE, -3010, "socket type not supported")

typedef enum {
#define RILL_X_ERRNO(name) RILL_##name = -name,
    RILL_ERRNO_MAP(RILL_X_ERRNO)
#undef RILL_X_ERRNO
#define RILL_X_LIB(name, value, msg) RILL_##name = value,
    RILL_LIBERR_MAP(RILL_X_LIB)
#undef RILL_X_LIB
    RILL_EWOULDBLOCK = -EWOULDBLOCK,
    RILL_EDEADLOCK = -EDEADLOCK,
    RILL_ENOTSUP = -ENOTSUP,
} rill_errcode;

/* A human-readable message for a RILL_E* code (or 0).  Never NULL; the string is static. */
RILL_API const char *rill_strerror(int err);
/* The code's name without the RILL_ prefix ("ECONNRESET", "EOF", "EAI_NONAME");
 * "UNKNOWN" for a value that is no code.  Static string. */
RILL_API const char *rill_err_name(int err);
/* The inverse of rill_err_name: "ECONNRESET" -> RILL_ECONNRESET.  Aliases such as
 * "EWOULDBLOCK" are accepted too.  0 for an unknown name or NULL. */
RILL_API int rill_err_code(const char *name);
/* True for EAGAIN and EWOULDBLOCK (also on systems where the two differ). */
RILL_API bool rill_is_blocked(int err);
/* True for ETIMEDOUT. */
RILL_API bool rill_is_timedout(int err);

#endif
