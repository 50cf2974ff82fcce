/* rill/bytes.h - immutable, reference-counted byte strings shared without copying. */
#ifndef RILL_BYTES_H
#define RILL_BYTES_H

#include <stddef.h>

#include "core.h"

typedef struct rill_bytes rill_bytes;

/* A new byte string holding a copy of data[0..len).  Starts with one reference.
 * NULL with errno ENOMEM on allocation failure, EINVAL for data NULL with len > 0. */
RILL_API rill_bytes *rill_bytes_new(const void *data, size_t len);
/* Takes ownership of data: free_fn(data) runs exactly once, when the last reference goes
 * (free_fn may be NULL).  On failure (NULL, errno ENOMEM) free_fn is NOT called. */
RILL_API rill_bytes *rill_bytes_wrap(void *data, size_t len, void (*free_fn)(void *));
/* Refers to memory that outlives every use (a string literal); nothing is freed. */
RILL_API rill_bytes *rill_bytes_static(const void *data, size_t len);
/* Adds a reference (atomic; any thread).  Returns b.  NULL is passed through. */
RILL_API rill_bytes *rill_bytes_ref(rill_bytes *b);
/* Drops a reference (atomic; any thread); the last one frees.  NULL is a no-op. */
RILL_API void rill_bytes_unref(rill_bytes *b);
RILL_API const void *rill_bytes_data(const rill_bytes *b);
RILL_API size_t rill_bytes_len(const rill_bytes *b);

#endif
