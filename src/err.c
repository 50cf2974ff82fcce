/* src/err.c - names and messages of rill's error codes, from the X-macro maps in rill/err.h. */
#include <netdb.h>
#include <string.h>

#include "internal.h"

/* One table serves both directions (code -> name/message, name -> code).  Errno entries
 * carry no message of their own: glibc's strerrordesc_np supplies it, untranslated and
 * thread-safe, so the text matches what strerror prints in the C locale. */
typedef struct {
    int code;
    const char *name;
    const char *msg; /* NULL: ask glibc */
} errent;

static const errent table[] = {
#define X_ERRNO(name) {-(name), #name, NULL},
    RILL_ERRNO_MAP(X_ERRNO)
#undef X_ERRNO
#define X_LIB(name, value, msg) {(value), #name, (msg)},
    RILL_LIBERR_MAP(X_LIB)
#undef X_LIB
};

#define TABLE_LEN (sizeof table / sizeof table[0])

/* Spellings that share a value with a canonical name; accepted by rill_err_code only, so
 * rill_err_name stays a function (one name per code). */
static const errent aliases[] = {
    {RILL_EWOULDBLOCK, "EWOULDBLOCK", NULL},
    {RILL_EDEADLOCK, "EDEADLOCK", NULL},
    {RILL_ENOTSUP, "ENOTSUP", NULL},
};

/* A linear scan: about 150 entries, and none of these functions is on a hot path. */
static const errent *by_code(int err)
{
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (table[i].code == err)
            return &table[i];
    return NULL;
}

const char *rill_strerror(int err)
{
    if (err == 0)
        return "success";
    const errent *e = by_code(err);
    if (!e)
        return "unknown error";
    if (e->msg)
        return e->msg;
    const char *msg = strerrordesc_np(-err);
    return msg ? msg : "unknown error";
}

const char *rill_err_name(int err)
{
    const errent *e = by_code(err);
    return e ? e->name : "UNKNOWN";
}

int rill_err_code(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].code;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].name, name) == 0)
            return aliases[i].code;
    return 0;
}

bool rill_is_blocked(int err)
{
    /* Written as two tests so it stays right on systems where the values differ. */
    return err == RILL_EAGAIN || err == RILL_EWOULDBLOCK;
}

bool rill_is_timedout(int err)
{
    return err == RILL_ETIMEDOUT;
}

int rill__gai_error(int eai)
{
    switch (eai) {
    case 0: return 0;
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return RILL_EAI_ADDRFAMILY;
#endif
    case EAI_AGAIN: return RILL_EAI_AGAIN;
    case EAI_BADFLAGS: return RILL_EAI_BADFLAGS;
    case EAI_FAIL: return RILL_EAI_FAIL;
    case EAI_FAMILY: return RILL_EAI_FAMILY;
    case EAI_MEMORY: return RILL_EAI_MEMORY;
#ifdef EAI_NODATA
    case EAI_NODATA: return RILL_EAI_NODATA;
#endif
    case EAI_NONAME: return RILL_EAI_NONAME;
    case EAI_SERVICE: return RILL_EAI_SERVICE;
    case EAI_SOCKTYPE: return RILL_EAI_SOCKTYPE;
    case EAI_OVERFLOW: return RILL_ENOBUFS; /* getnameinfo: the caller's buffer is short */
    case EAI_SYSTEM: return errno ? -errno : RILL_EIO; /* the cause is in errno */
    default: return RILL_EAI_FAIL; /* a value this table does not know: still a failure */
    }
}
