/* src/bufwrap.c - rill_bufwrap: reads the start of a byte source into memory so it can be
 * peeked at, and makes it seekable when the whole source fits (pyslet's
 * BufferedStreamWrapper). */
#include "internal.h"

#include <limits.h>
#include <stdio.h>

struct rill_bufwrap {
    ssize_t (*read)(void *src, void *buf, size_t len);
    void *src;
    char *buf;
    size_t len;    /* bytes held */
    size_t pos;    /* next byte to read from buf */
    int err;       /* a source error met while filling; returned once buf is drained */
    bool seekable; /* the source ended inside buf */
};

/* Reads until EOF, a full buffer, would-block or an error.  The buffer has room for one
 * byte more than buffsize: a source of exactly buffsize bytes is then known to end and
 * stays seekable, where stopping at buffsize would leave that unknown. */
static void fill(rill_bufwrap *w, size_t cap)
{
    while (w->len < cap) {
        ssize_t n = w->read(w->src, w->buf + w->len, cap - w->len);
        if (n > 0) {
            w->len += (size_t)n;
        } else if (n == 0) {
            w->seekable = true;
            return;
        } else {
            if (!rill_is_blocked((int)n)) /* would-block: just not seekable */
                w->err = (int)n;
            return;
        }
    }
}

rill_bufwrap *rill_bufwrap_new(ssize_t (*read)(void *src, void *buf, size_t len), void *src,
                               size_t buffsize)
{
    if (!read || buffsize >= SIZE_MAX) {
        errno = EINVAL;
        return NULL;
    }
    size_t cap = (buffsize ? buffsize : 8192) + 1;
    rill_bufwrap *w = rill__calloc(1, sizeof *w);
    if (!w || !(w->buf = rill__malloc(cap))) {
        rill__free(w);
        errno = ENOMEM;
        return NULL;
    }
    w->read = read;
    w->src = src;
    fill(w, cap);
    if (w->len < cap / 2) { /* give back what a short source did not use */
        char *small = rill__realloc(w->buf, w->len ? w->len : 1);
        if (small)
            w->buf = small;
    }
    return w;
}

ssize_t rill_bufwrap_peek(rill_bufwrap *w, size_t n, const char **out)
{
    size_t k = RILL__MIN(n, w->len - w->pos);
    *out = w->buf + w->pos;
    return (ssize_t)RILL__MIN(k, (size_t)SSIZE_MAX);
}

ssize_t rill_bufwrap_read(rill_bufwrap *w, void *buf, size_t len)
{
    if (!len)
        return 0;
    if (w->pos < w->len) {
        size_t k = RILL__MIN(RILL__MIN(len, w->len - w->pos), (size_t)SSIZE_MAX);
        memcpy(buf, w->buf + w->pos, k);
        w->pos += k;
        return (ssize_t)k;
    }
    if (w->seekable)
        return 0;
    if (w->err) { /* reported once, where the source reported it; later reads retry */
        int err = w->err;
        w->err = 0;
        return err;
    }
    return w->read(w->src, buf, len);
}

bool rill_bufwrap_seekable(const rill_bufwrap *w)
{
    return w->seekable;
}

int64_t rill_bufwrap_length(const rill_bufwrap *w)
{
    return w->seekable ? (int64_t)w->len : -1;
}

int64_t rill_bufwrap_seek(rill_bufwrap *w, int64_t off, int whence)
{
    int64_t base;
    if (!w->seekable)
        return RILL_ESPIPE;
    if (whence == SEEK_SET)
        base = 0;
    else if (whence == SEEK_CUR)
        base = (int64_t)w->pos;
    else if (whence == SEEK_END)
        base = (int64_t)w->len;
    else
        return RILL_EINVAL;
    if (off < -base || off > (int64_t)w->len - base) /* stays in [0, length] */
        return RILL_EINVAL;
    w->pos = (size_t)(base + off);
    return (int64_t)w->pos;
}

void rill_bufwrap_free(rill_bufwrap *w)
{
    if (!w)
        return;
    rill__free(w->buf);
    rill__free(w);
}
