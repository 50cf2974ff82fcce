/* rill.h - everything of rill in one include. */
#ifndef RILL_H
#define RILL_H

#include "rill/err.h"
#include "rill/core.h"
#include "rill/bytes.h"
#include "rill/loop.h"
#include "rill/stream.h"
#include "rill/cancel.h"
#include "rill/compose.h"
#include "rill/splice.h"
#include "rill/net.h"
#include "rill/tty.h"
#include "rill/udp.h"
#include "rill/pipe.h"
#include "rill/fiber.h"

#endif
