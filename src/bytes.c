/* src/bytes.c - immutable, reference-counted byte strings (rill/bytes.h). */
#include "internal.h"

/* One struct serves all three kinds: a copy keeps its bytes in `mem` (header and data in
 * one allocation), a wrapped buffer is handed to free_fn at the end, a static one is left
 * alone.  The header itself is always the library's to free. */
struct rill_bytes {
    atomic_size_t refs;
    const char *data;
    size_t len;
    void (*free_fn)(void *); /* wrap: releases data; NULL for copies and statics */
    char mem[];
};

static rill_bytes *bytes_alloc(size_t extra, const void *data, size_t len)
{
    if (extra > SIZE_MAX - sizeof(rill_bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    rill_bytes *b = rill__malloc(sizeof(rill_bytes) + extra);
    if (!b)
        return NULL; /* errno is ENOMEM */
    atomic_init(&b->refs, 1);
    b->data = data;
    b->len = len;
    b->free_fn = NULL;
    return b;
}

rill_bytes *rill_bytes_new(const void *data, size_t len)
{
    if (!data && len) {
        errno = EINVAL;
        return NULL;
    }
    rill_bytes *b = bytes_alloc(len, NULL, len);
    if (!b)
        return NULL;
    if (len)
        memcpy(b->mem, data, len);
    b->data = b->mem;
    return b;
}

rill_bytes *rill_bytes_wrap(void *data, size_t len, void (*free_fn)(void *))
{
    if (!data && len) {
        errno = EINVAL;
        return NULL;
    }
    /* On failure data stays the caller's: freeing it here would surprise a caller that
     * retries or falls back to a copy. */
    rill_bytes *b = bytes_alloc(0, data, len);
    if (b)
        b->free_fn = free_fn;
    return b;
}

rill_bytes *rill_bytes_static(const void *data, size_t len)
{
    if (!data && len) {
        errno = EINVAL;
        return NULL;
    }
    return bytes_alloc(0, data, len);
}

rill_bytes *rill_bytes_ref(rill_bytes *b)
{
    /* Relaxed is enough: whoever passes b on already holds a reference, so the object
     * cannot be freed while this increment is in flight. */
    if (b)
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void rill_bytes_unref(rill_bytes *b)
{
    if (!b)
        return;
    /* acq_rel: this thread's earlier uses of b happen before the free that the thread
     * dropping the last reference performs. */
    size_t old = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old != 1)
        return;
    if (b->free_fn)
        b->free_fn((void *)b->data);
    rill__free(b);
}

const void *rill_bytes_data(const rill_bytes *b)
{
    return b->data;
}

size_t rill_bytes_len(const rill_bytes *b)
{
    return b->len;
}
