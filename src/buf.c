/* src/buf.c - the chain buffer behind stream input and write queues: a list of segments,
 * each an owned block of copied bytes or a reference into a rill_bytes. */
#include "internal.h"

/* Invariant: every segment in the chain holds at least one byte, so walking the chain
 * never meets an empty one.  `prev` lets rill__buf_find start from the tail, where a
 * resumed search nearly always begins. */
struct rill__seg {
    rill__seg *next, *prev;
    rill_bytes *ref; /* the referenced string, or NULL for an owned block */
    char *base;      /* the bytes are base[start..end) */
    size_t start, end;
    size_t cap; /* owned blocks: size of mem; references: end (no room to append) */
    char mem[];
};

/* A block is one 16 KiB allocation, header included: big enough that a socket read fills
 * few of them, small enough to keep as the spare of every buffer.  An empty buffer that
 * takes a few bytes gets a small block instead (256 bytes, doubled until they fit): a
 * connection that queued one short message keeps that as its spare, not 16 KiB. */
#define BLOCK_ALLOC 16384u
#define BLOCK_CAP (BLOCK_ALLOC - sizeof(rill__seg))
#define SMALL_ALLOC 256u

static size_t seg_len(const rill__seg *s)
{
    return s->end - s->start;
}

static size_t seg_room(const rill__seg *s)
{
    return s->ref ? 0 : s->cap - s->end;
}

static const char *seg_data(const rill__seg *s)
{
    return s->base + s->start;
}

/* ---- segment list --------------------------------------------------------------------- */

static void link_tail(rill__buf *b, rill__seg *s)
{
    s->next = NULL;
    s->prev = b->tail;
    if (b->tail)
        b->tail->next = s;
    else
        b->head = s;
    b->tail = s;
}

static void link_head(rill__buf *b, rill__seg *s)
{
    s->prev = NULL;
    s->next = b->head;
    if (b->head)
        b->head->prev = s;
    else
        b->tail = s;
    b->head = s;
}

static void unlink_seg(rill__buf *b, rill__seg *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        b->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        b->tail = s->prev;
}

/* An empty owned block with room for at least `need` bytes.  The spare serves any need it
 * can hold; bigger needs get a block of exactly their size. */
static rill__seg *block_new(rill__buf *b, size_t need)
{
    rill__seg *s = b->spare;
    if (s && need <= s->cap) {
        b->spare = NULL;
    } else {
        size_t cap = need > BLOCK_CAP ? need : BLOCK_CAP;
        if (b->len == 0 && need <= BLOCK_CAP) {
            size_t a = SMALL_ALLOC;
            while (a - sizeof(rill__seg) < need)
                a *= 2; /* at most BLOCK_ALLOC */
            cap = a - sizeof(rill__seg);
        }
        if (cap > SIZE_MAX - sizeof(rill__seg))
            return NULL;
        s = rill__malloc(sizeof(rill__seg) + cap);
        if (!s)
            return NULL;
        s->ref = NULL;
        s->base = s->mem;
        s->cap = cap;
    }
    s->start = s->end = 0;
    return s;
}

/* Gives back an unlinked segment: the biggest block up to the standard size stays as the
 * spare, so a buffer that keeps emptying and refilling stops calling malloc. */
static void seg_release(rill__buf *b, rill__seg *s)
{
    if (s->ref) {
        rill_bytes_unref(s->ref);
        rill__free(s);
    } else if (s->cap <= BLOCK_CAP && (!b->spare || b->spare->cap < s->cap)) {
        rill__free(b->spare);
        b->spare = s;
    } else {
        rill__free(s);
    }
}

void rill__buf_init(rill__buf *b)
{
    memset(b, 0, sizeof *b);
}

void rill__buf_free(rill__buf *b)
{
    rill__seg *s = b->head;
    while (s) {
        rill__seg *next = s->next;
        if (s->ref)
            rill_bytes_unref(s->ref);
        rill__free(s);
        s = next;
    }
    rill__free(b->spare);
    rill__buf_init(b);
}

/* ---- adding and removing bytes -------------------------------------------------------- */

int rill__buf_append(rill__buf *b, const void *data, size_t len)
{
    size_t room = b->tail ? seg_room(b->tail) : 0;
    size_t first = RILL__MIN(len, room);
    rill__seg *s = NULL;
    if (len > room && !(s = block_new(b, len - room)))
        return RILL_ENOMEM; /* allocated before any copy: nothing appended */
    if (first) {
        memcpy(b->tail->base + b->tail->end, data, first);
        b->tail->end += first;
    }
    if (s) {
        memcpy(s->mem, (const char *)data + first, len - first);
        s->end = len - first;
        link_tail(b, s);
    }
    b->len += len;
    return 0;
}

int rill__buf_append_bytes(rill__buf *b, rill_bytes *bytes, size_t off, size_t len)
{
    assert(off <= rill_bytes_len(bytes) && len <= rill_bytes_len(bytes) - off);
    if (!len)
        return 0;
    rill__seg *s = rill__malloc(sizeof(rill__seg));
    if (!s)
        return RILL_ENOMEM;
    s->ref = rill_bytes_ref(bytes);
    s->base = (char *)rill_bytes_data(bytes) + off; /* never written through: cap == end */
    s->start = 0;
    s->end = s->cap = len;
    link_tail(b, s);
    b->len += len;
    return 0;
}

void rill__buf_consume(rill__buf *b, size_t n)
{
    assert(n <= b->len);
    b->len -= n;
    /* The dropped bytes were the front of the searched region: what stays searched is
     * the rest of it. */
    b->scanned = b->scanned > n ? b->scanned - n : 0;
    while (n) {
        rill__seg *s = b->head;
        if (n < seg_len(s)) {
            s->start += n;
            return;
        }
        n -= seg_len(s);
        unlink_seg(b, s);
        seg_release(b, s);
    }
}

/* ---- reading without consuming -------------------------------------------------------- */

size_t rill__buf_peek(const rill__buf *b, size_t off, void *dst, size_t n)
{
    size_t done = 0;
    for (const rill__seg *s = b->head; s && done < n; s = s->next) {
        size_t len = seg_len(s);
        if (off >= len) {
            off -= len;
            continue;
        }
        size_t k = RILL__MIN(len - off, n - done);
        memcpy((char *)dst + done, seg_data(s) + off, k);
        done += k;
        off = 0;
    }
    return done;
}

int rill__buf_iov(const rill__buf *b, struct iovec *iov, int max)
{
    int i = 0;
    for (const rill__seg *s = b->head; s && i < max; s = s->next, i++) {
        iov[i].iov_base = (void *)seg_data(s);
        iov[i].iov_len = seg_len(s);
    }
    return i;
}

/* Moves `need` bytes from the segments after s into s's free room, releasing every
 * segment emptied on the way.  The caller checked that the room and the bytes exist. */
static void pull_into(rill__buf *b, rill__seg *s, size_t need)
{
    while (need) {
        rill__seg *nx = s->next;
        size_t k = RILL__MIN(need, seg_len(nx));
        memcpy(s->mem + s->end, seg_data(nx), k);
        s->end += k;
        nx->start += k;
        need -= k;
        if (!seg_len(nx)) {
            unlink_seg(b, nx);
            seg_release(b, nx);
        }
    }
}

const char *rill__buf_contig(rill__buf *b, size_t n)
{
    assert(n <= b->len);
    rill__seg *s = b->head;
    if (!s)
        return "";
    if (seg_len(s) >= n)
        return seg_data(s);
    if (!s->ref && s->cap >= n) {
        /* The head block can hold the frame: slide its bytes to the front if they sit
         * too far back, then top it up.  No allocation. */
        if (s->cap - s->start < n) {
            memmove(s->mem, seg_data(s), seg_len(s));
            s->end -= s->start;
            s->start = 0;
        }
    } else {
        if (!(s = block_new(b, n)))
            return NULL; /* nothing moved yet: the buffer is unchanged */
        link_head(b, s);
    }
    pull_into(b, s, n - seg_len(s));
    return seg_data(s);
}

/* ---- delimiter search ----------------------------------------------------------------- */

/* `scanned` means: no delimiter ends within the first `scanned` bytes.  A search resumes
 * at the first start position that could still end beyond them, and only tries positions
 * whose whole delimiter is buffered; so a delimiter that is partly buffered is found on
 * the call after the rest arrives, and no byte is examined twice except by the short
 * comparisons after a first-byte hit. */

/* The segment holding position pos (< len) and pos's offset in it.  Resumed searches
 * start near the end, so the walk starts from whichever end is closer. */
static rill__seg *seg_at(const rill__buf *b, size_t pos, size_t *off)
{
    rill__seg *s;
    if (pos < b->len / 2) {
        for (s = b->head; pos >= seg_len(s); s = s->next)
            pos -= seg_len(s);
        *off = pos;
        return s;
    }
    s = b->tail;
    size_t start = b->len - seg_len(s);
    while (start > pos) {
        s = s->prev;
        start -= seg_len(s);
    }
    *off = pos - start;
    return s;
}

/* Whether d[1..dlen) follows the byte at s[o]; the bytes exist (the caller checked). */
static bool rest_matches(rill__buf *b, const rill__seg *s, size_t o, const char *d,
                         size_t dlen)
{
    size_t i = 1;
    o++; /* the byte after the first-byte hit */
    while (i < dlen) {
        if (o == seg_len(s)) { /* the delimiter straddles a segment boundary */
            s = s->next;
            o = 0;
        }
        size_t k = RILL__MIN(dlen - i, seg_len(s) - o);
        b->touched += k;
        if (memcmp(seg_data(s) + o, d + i, k) != 0)
            return false;
        i += k;
        o += k;
    }
    return true;
}

ssize_t rill__buf_find(rill__buf *b, const void *delim, size_t dlen)
{
    const char *d = delim;
    if (!dlen)
        return RILL_EINVAL;
    assert(b->scanned <= b->len);
    size_t pos = b->scanned >= dlen - 1 ? b->scanned - (dlen - 1) : 0;
    if (b->len < dlen || pos > b->len - dlen) {
        b->scanned = b->len;
        return RILL_ENOMATCH;
    }
    size_t last = b->len - dlen; /* the last start position with the whole delimiter */
    size_t o;
    const rill__seg *s = seg_at(b, pos, &o);
    while (pos <= last) {
        size_t lim = RILL__MIN(seg_len(s) - o, last - pos + 1);
        const char *p = seg_data(s) + o;
        const char *hit = memchr(p, d[0], lim);
        size_t k = hit ? (size_t)(hit - p) : lim;
        b->touched += k + (hit != NULL);
        if (hit && rest_matches(b, s, o + k, d, dlen)) {
            b->scanned = pos + k + dlen - 1;
            return (ssize_t)(pos + k + dlen);
        }
        k += hit != NULL; /* past the examined bytes, and past a failed candidate */
        pos += k;
        o += k;
        if (o == seg_len(s)) {
            s = s->next;
            o = 0;
        }
    }
    b->scanned = b->len;
    return RILL_ENOMATCH;
}
