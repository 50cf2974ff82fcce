/* src/frame.c - framing requests (read_bytes, read_exactly, read_until, read_until_regex).
 * Requests are served FIFO from the stream's input buffer and from new bytes as they
 * arrive.  No byte is scanned twice: delimiter searches resume where they stopped and
 * regex searches resume at the start of the last partial match (PCRE2 partial matching). */
#include "internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#ifdef RILL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

enum { F_BYTES, F_EXACTLY, F_UNTIL, F_REGEX };
#define INLINE_DELIM 16

struct rill_regex {
    pcre2_code *code;
};

struct rill__freq {
    rill__list link;
    int kind;
    size_t n;                /* BYTES: max; EXACTLY: count; UNTIL: delimiter length */
    size_t resume;           /* REGEX: offset in s->x->in where the next search starts */
    char idelim[INLINE_DELIM];
    char *delim;             /* idelim, or an allocation for long delimiters */
    const rill_regex *re;
    pcre2_match_data *md;    /* REGEX: one ovector pair, kept with the recycled record */
    rill_frame_fn *cb;
    void *arg;
};

/* ---- regexes --------------------------------------------------------------------------- */

rill_regex *rill_regex_new(const char *pattern, int *err, size_t *err_offset)
{
    int e = 0;
    PCRE2_SIZE off = 0;
    if (err)
        *err = 0;
    if (err_offset)
        *err_offset = 0;
    if (!pattern) {
        errno = EINVAL;
        return NULL;
    }
    rill_regex *re = rill__malloc(sizeof *re);
    if (!re) {
        errno = ENOMEM;
        return NULL;
    }
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &e, &off, NULL);
    if (!re->code) {
        rill__free(re);
        if (err)
            *err = e;
        if (err_offset)
            *err_offset = off;
        errno = EINVAL;
        return NULL;
    }
    /* JIT is an optimisation: without it (no executable memory) matching still works.  Not
     * under valgrind: JIT code loads past the end of the subject, which valgrind reports
     * in the caller's program. */
    if (!RUNNING_ON_VALGRIND)
        pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
    return re;
}

int rill_regex_error_text(int err, char *buf, size_t cap)
{
    if (!buf || !cap)
        return RILL_EINVAL;
    int n = pcre2_get_error_message(err, (PCRE2_UCHAR *)buf, cap);
    return n < 0 ? (n == PCRE2_ERROR_NOMEMORY ? RILL_ENOBUFS : RILL_EINVAL) : n;
}

void rill_regex_free(rill_regex *re)
{
    if (re) {
        pcre2_code_free(re->code);
        rill__free(re);
    }
}

/* ---- requests ------------------------------------------------------------------------- */

static rill__freq *freq_get(rill_stream *s)
{
    rill__freq *q = s->x->ffree;
    if (q) {
        s->x->ffree = (rill__freq *)(void *)q->link.next;
        return q;
    }
    q = rill__calloc(1, sizeof *q);
    return q;
}

static void freq_put(rill_stream *s, rill__freq *q)
{
    if (q->delim != q->idelim)
        rill__free(q->delim);
    q->delim = NULL;
    q->link.next = (rill__list *)(void *)s->x->ffree;
    s->x->ffree = q;
}

void rill__frame_free(rill_stream *s)
{
    if (!s->x)
        return;
    for (rill__freq *n, *q = s->x->ffree; q; q = n) {
        n = (rill__freq *)(void *)q->link.next;
        pcre2_match_data_free(q->md);
        rill__free(q);
    }
    s->x->ffree = NULL;
}

static int request(rill_stream *s, rill__freq *q)
{
    rill__sx *x = s->x;
    bool starts_reading = rill__list_empty(&x->frames) && !(s->flags & RILL__S_READING) &&
                          !(s->flags & RILL__S_FEEDING);
    rill__list_insert_tail(&x->frames, &q->link);
    if (!x->in.len) {
        if (starts_reading)
            rill__stream_update(s); /* otherwise reading and activity do not change */
        return 0; /* the re-arm from a frame callback ends here: the feed serves it */
    }
    if (x->frames.next == &q->link)
        rill__buf_find_reset(&x->in);
    /* Buffered bytes may already satisfy it: serve on the next iteration, never inside
     * this call. */
    s->dflags |= RILL__D_FRAME;
    rill__stream_queue(s);
    rill__stream_update(s);
    return 0;
}

static int check(rill_stream *s, rill_frame_fn *cb)
{
    if (!s || !cb)
        return RILL_EINVAL;
    if (s->flags & RILL__S_CLOSED)
        return RILL_ECLOSED;
    if (s->flags & RILL__S_PENDING)
        return RILL_EPENDING; /* a splice or close_async owns the stream */
    if (!(s->flags & RILL__S_READABLE) && !rill__in_len(s))
        return (s->flags & RILL__S_EOF) ? RILL_EOF : RILL_EINVAL;
    return s->x || rill__stream_sx(s) ? 0 : RILL_ENOMEM; /* no call once it exists */
}

/* A fresh request's fields (the delimiter, if any, is the caller's to set). */
static inline void fill(rill__freq *q, int kind, size_t n, rill_frame_fn *cb, void *arg)
{
    q->kind = kind;
    q->n = n;
    q->resume = 0;
    q->cb = cb;
    q->arg = arg;
    q->re = NULL;
    q->delim = NULL;
}

/* A one-byte delimiter, the line case: kept inline, a store rather than a memcpy. */
static inline void delim1(rill__freq *q, const void *delim)
{
    q->idelim[0] = *(const char *)delim;
    q->delim = q->idelim;
}

static rill__freq *prepare(rill_stream *s, int kind, size_t n, rill_frame_fn *cb, void *arg)
{
    rill__freq *q = freq_get(s);
    if (q)
        fill(q, kind, n, cb, arg);
    return q;
}

int rill_stream_read_bytes(rill_stream *s, size_t max, rill_frame_fn *cb, void *arg)
{
    int rc = check(s, cb);
    if (rc < 0)
        return rc;
    if (!max)
        return RILL_EINVAL;
    rill__freq *q = prepare(s, F_BYTES, max, cb, arg);
    return q ? request(s, q) : RILL_ENOMEM;
}

int rill_stream_read_exactly(rill_stream *s, size_t n, rill_frame_fn *cb, void *arg)
{
    int rc = check(s, cb);
    if (rc < 0)
        return rc;
    if (!n)
        return RILL_EINVAL;
    rill__freq *q = prepare(s, F_EXACTLY, n, cb, arg);
    return q ? request(s, q) : RILL_ENOMEM;
}

/* The re-arm from inside a frame callback, the hot path of line protocols: while a feed
 * serves new bytes in place (FEEDING, nothing buffered) a request that check() would
 * accept needs no queueing and no update, only a recycled record at the tail of the
 * queue.  NULL: take the general path. */
static rill__freq *rearm_fast(rill_stream *s, rill_frame_fn *cb)
{
    const uint32_t mask = RILL__S_FEEDING | RILL__S_READABLE | RILL__S_CLOSED | RILL__S_PENDING;
    if (!s || !cb || (s->flags & mask) != (RILL__S_FEEDING | RILL__S_READABLE))
        return NULL;
    rill__sx *x = s->x; /* rill__frame_feed made it before FEEDING */
    rill__freq *q = x->ffree;
    if (x->in.len || !q)
        return NULL;
    x->ffree = (rill__freq *)(void *)q->link.next;
    return q;
}

/* read_until's general path, kept out of line so that the fast path saves no registers. */
__attribute__((noinline)) static int until_request(rill_stream *s, const void *delim, size_t dlen,
                                                   rill_frame_fn *cb, void *arg)
{
    int rc = check(s, cb);
    if (rc < 0)
        return rc;
    if (!delim || !dlen)
        return RILL_EINVAL;
    rill__freq *q = prepare(s, F_UNTIL, dlen, cb, arg);
    if (!q)
        return RILL_ENOMEM;
    if (dlen == 1) {
        delim1(q, delim);
    } else {
        q->delim = dlen <= INLINE_DELIM ? q->idelim : rill__malloc(dlen);
        if (!q->delim) {
            freq_put(s, q);
            return RILL_ENOMEM;
        }
        memcpy(q->delim, delim, dlen);
    }
    return request(s, q);
}

int rill_stream_read_until(rill_stream *s, const void *delim, size_t dlen, rill_frame_fn *cb,
                           void *arg)
{
    rill__freq *q;
    if (dlen != 1 || !delim || !(q = rearm_fast(s, cb)))
        return until_request(s, delim, dlen, cb, arg);
    fill(q, F_UNTIL, 1, cb, arg);
    delim1(q, delim);
    rill__list_insert_tail(&s->x->frames, &q->link);
    return 0;
}

int rill_stream_read_until_regex(rill_stream *s, const rill_regex *re, rill_frame_fn *cb, void *arg)
{
    int rc = check(s, cb);
    if (rc < 0)
        return rc;
    if (!re)
        return RILL_EINVAL;
    rill__freq *q = prepare(s, F_REGEX, 0, cb, arg);
    if (!q)
        return RILL_ENOMEM;
    if (!q->md && !(q->md = pcre2_match_data_create(1, NULL))) {
        freq_put(s, q);
        return RILL_ENOMEM;
    }
    q->re = re;
    return request(s, q);
}

/* ---- serving --------------------------------------------------------------------------- */

static rill__freq *head(rill_stream *s)
{
    return rill__list_empty(&s->x->frames) ? NULL : rill__container_of(s->x->frames.next, rill__freq, link);
}

/* Removes the head request and runs its callback; true when the stream still serves
 * requests afterwards (not closed). */
static inline bool complete(rill_stream *s, rill__freq *q, int status, const char *data, size_t len)
{
    rill__list_remove(&q->link);
    rill_frame_fn *cb = q->cb;
    void *arg = q->arg;
    freq_put(s, q);
    cb(s, status, data, len, arg);
    return !(s->flags & RILL__S_CLOSED);
}

/* Length of the frame q takes from p[0..n) (0: not complete yet).  `from` is where the
 * search may start; *next tells where the next search should start.  Out of line: inlined
 * into serve_direct, its memmem and PCRE2 calls cost the line loop registers. */
__attribute__((noinline)) static size_t match(rill_stream *s, rill__freq *q, const char *p,
                                              size_t n, size_t from, size_t *next)
{
    *next = n;
    switch (q->kind) {
    case F_BYTES: /* what is there, up to max and never past the bound: no RILL_ENOBUFS */
        return RILL__MIN(RILL__MIN(n, q->n), s->x->max_buffer);
    case F_EXACTLY:
        return n >= q->n ? q->n : 0;
    case F_UNTIL: {
        size_t start = from >= q->n - 1 ? from - (q->n - 1) : 0;
        const char *m = q->n == 1 ? memchr(p + start, q->delim[0], n - start)
                                  : memmem(p + start, n - start, q->delim, q->n);
        size_t end = m ? (size_t)(m - p) + q->n : 0;
        s->x->in.touched += (m ? end : n) - start;
        return end;
    }
    default: {
        /* A match that more bytes could still change waits for them; after EOF none can
         * come, and the bytes are the whole rest of the stream: match them as they are. */
        uint32_t partial = (s->flags & RILL__S_EOF) ? 0 : PCRE2_PARTIAL_HARD;
        int rc = pcre2_match(q->re->code, (PCRE2_SPTR)p, n, from, partial, q->md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(q->md);
        if (rc >= 0 && ov[1] > 0)
            return ov[1];
        if (rc == PCRE2_ERROR_PARTIAL)
            *next = ov[0]; /* a match may start here: resume from it when more arrives */
        return 0;
    }
    }
}

/* Serves requests from contiguous new bytes while nothing is buffered (the common case:
 * no copy).  Returns how many bytes were taken.  A one-byte delimiter, the line case, is
 * searched here with memchr directly: per frame, this loop and the re-arm in
 * rill_stream_read_until are all that framing costs.  Kept out of line so that its
 * registers serve this loop rather than the whole of rill__frame_feed. */
__attribute__((noinline)) static size_t serve_direct(rill_stream *s, const char *data, size_t n)
{
    rill__sx *x = s->x; /* stays while the feed holds its reference */
    const char *p = data, *end = data + n;
    if (s->flags & RILL__S_CLOSED)
        return 0;
    while (p < end && !rill__list_empty(&x->frames)) {
        rill__freq *q = rill__container_of(x->frames.next, rill__freq, link);
        size_t avail = (size_t)(end - p), next = avail, len;
        if (q->kind == F_UNTIL && q->n == 1) {
            const char *m = memchr(p, q->idelim[0], avail);
            len = m ? (size_t)(m - p) + 1 : 0;
            x->in.touched += m ? len : avail;
        } else {
            len = match(s, q, p, avail, 0, &next);
        }
        if (!len) {
            q->resume = next; /* relative to what goes into s->x->in next */
            if (q->kind == F_UNTIL)
                x->in.scanned = avail;
            break;
        }
        if (len > x->max_buffer) { /* takes nothing: the next request sees the same bytes */
            if (!complete(s, q, RILL_ENOBUFS, NULL, 0))
                return n;
            continue;
        }
        p += len;
        if (!complete(s, q, 0, p - len, len))
            return n; /* closed: complete() does not touch x after the callback */
    }
    return (size_t)(p - data);
}

/* Serves requests from s->x->in. */
static void serve_buffered(rill_stream *s)
{
    rill__freq *q;
    while (s->x->in.len && (q = head(s)) && !(s->flags & RILL__S_CLOSED)) {
        size_t next, len = 0;
        if (q->kind == F_UNTIL) {
            ssize_t r = rill__buf_find(&s->x->in, q->delim, q->n);
            len = r > 0 ? (size_t)r : 0;
        } else if (q->kind == F_REGEX) {
            const char *p = rill__buf_contig(&s->x->in, s->x->in.len);
            if (!p) {
                rill__stream_error(s, RILL_ENOMEM);
                return;
            }
            len = match(s, q, p, s->x->in.len, q->resume, &next);
            if (!len)
                q->resume = next;
        } else {
            len = match(s, q, NULL, s->x->in.len, 0, &next);
        }
        if (!len || len > s->x->max_buffer) {
            bool full = s->x->in.len >= s->x->max_buffer || (q->kind == F_EXACTLY && q->n > s->x->max_buffer);
            if (!full && (!len || len <= s->x->max_buffer))
                return; /* wait for more */
            rill__buf_find_reset(&s->x->in);
            if (!complete(s, q, RILL_ENOBUFS, NULL, 0))
                return;
            continue;
        }
        const char *p = rill__buf_contig(&s->x->in, len);
        if (!p) {
            rill__stream_error(s, RILL_ENOMEM);
            return;
        }
        s->refs++;
        bool alive = complete(s, q, 0, p, len);
        if (alive)
            rill__buf_consume(&s->x->in, len);
        rill__buf_find_reset(&s->x->in);
        rill_stream_unref(s);
        if (!alive)
            return;
    }
}

/* Where in data[0..n) a delimiter ends whose first bytes may still sit at the end of
 * s->x->in (the scan of s->x->in already found no whole delimiter).  0: none. */
static size_t until_end(rill_stream *s, rill__freq *q, const char *data, size_t n)
{
    size_t dlen = q->n;
    for (size_t j = RILL__MIN(dlen - 1, s->x->in.len); j > 0; j--) { /* earliest start first */
        char tail[INLINE_DELIM];
        if (j > sizeof tail || dlen - j > n)
            continue;
        rill__buf_peek(&s->x->in, s->x->in.len - j, tail, j);
        if (memcmp(tail, q->delim, j) == 0 && memcmp(data, q->delim + j, dlen - j) == 0)
            return dlen - j;
    }
    size_t next;
    return match(s, q, data, n, 0, &next);
}

/* The head request has bytes in s->x->in: take from data only what completes it, so the
 * rest of data can be served in place.  Returns bytes taken (all of data when the frame
 * is still incomplete, or for kinds that need the whole buffer). */
static size_t complete_straddling(rill_stream *s, const char *data, size_t n)
{
    rill__freq *q = head(s);
    size_t take = n;
    bool none = false; /* searched, and no delimiter ends in s->x->in + data */
    if (q->kind == F_EXACTLY && q->n > s->x->in.len) {
        take = RILL__MIN(n, q->n - s->x->in.len);
    } else if (q->kind == F_UNTIL && q->n <= INLINE_DELIM) {
        size_t end = until_end(s, q, data, n);
        take = end ? end : n;
        none = !end;
    }
    if (rill__buf_append(&s->x->in, data, take) < 0) {
        rill__stream_error(s, RILL_ENOMEM);
        return n;
    }
    if (none)
        s->x->in.scanned = s->x->in.len; /* never look at these bytes again */
    serve_buffered(s);
    return take;
}

void rill__frame_feed(rill_stream *s, const char *data, size_t n)
{
    if (!rill__stream_sx(s)) {
        rill__stream_error(s, RILL_ENOMEM);
        return;
    }
    uint32_t feeding = s->flags & RILL__S_FEEDING;
    s->flags |= RILL__S_FEEDING;
    s->refs++;
    if (s->x->in.len && head(s))
        serve_buffered(s); /* a request made since the last feed: its bytes are here */
    if (n && s->x->in.len && head(s) && !(s->flags & RILL__S_CLOSED)) {
        size_t took = complete_straddling(s, data, n);
        data += took;
        n -= took;
        if (s->flags & RILL__S_CLOSED)
            n = 0;
    }
    if (n && !s->x->in.len && head(s)) {
        size_t took = serve_direct(s, data, n);
        data += took;
        n -= took;
        if (s->flags & RILL__S_CLOSED)
            n = 0;
        if (n && !head(s) && (s->flags & RILL__S_READING) &&
            rill_stream_has_subscribers(s, RILL_EV_READ)) {
            rill_event ev = {RILL_EV_READ, data, n, 0, NULL};
            rill__stream_emit(s, &ev);
            n = 0;
        }
        size_t scanned = s->x->in.scanned;
        if (n && rill__buf_append(&s->x->in, data, n) < 0)
            rill__stream_error(s, RILL_ENOMEM);
        s->x->in.scanned = scanned;
    } else if (n) {
        if (rill__buf_append(&s->x->in, data, n) < 0)
            rill__stream_error(s, RILL_ENOMEM);
    }
    if (!(s->flags & RILL__S_CLOSED)) {
        serve_buffered(s);
        rill__stream_read_buffered(s);
    }
    s->flags = (s->flags & ~RILL__S_FEEDING) | feeding;
    if (!feeding && (s->flags & RILL__S_EOF))
        rill__stream_eof_settle(s); /* requests after EOF: served, then EOF */
    if (!(s->flags & RILL__S_CLOSED))
        rill__stream_update(s);
    rill_stream_unref(s);
}

void rill__frame_finish(rill_stream *s, int status)
{
    if (!s->x)
        return;
    rill__freq *q;
    s->refs++;
    while ((q = head(s))) {
        size_t len = 0;
        const char *p = NULL;
        if (status == RILL_EOF && s->x->in.len) {
            len = RILL__MIN(s->x->in.len, s->x->max_buffer);
            p = rill__buf_contig(&s->x->in, len);
            if (!p)
                len = 0;
        }
        complete(s, q, status, p, len);
        if (len && s->x->in.len >= len)
            rill__buf_consume(&s->x->in, len);
        if (status == RILL_EOF && (s->flags & RILL__S_CLOSED))
            status = RILL_ECANCELED;
    }
    rill_stream_unref(s);
}
