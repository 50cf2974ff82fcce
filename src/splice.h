/* src/splice.h - what splice.c tells the tests about the path it took. */
#ifndef RILL_SPLICE_INTERNAL_H
#define RILL_SPLICE_INTERNAL_H

#include "internal.h"

/* Bytes moved with splice(2) (zero-copy) and through user space (copy), by every splice
 * of the process since it started.  Loop threads update them; tests read them. */
extern atomic_uint_least64_t rill__splice_zc_bytes;
extern atomic_uint_least64_t rill__splice_copy_bytes;

#endif
