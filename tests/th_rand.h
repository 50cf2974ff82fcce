/* tests/th_rand.h - the small PRNG of the randomized tests (test_*_random.c): xorshift64*
 * with splitmix64 seeding.  Every case derives its state from a fixed seed, never from
 * the clock, so a failing case can be run again alone. */
#ifndef TH_RAND_H
#define TH_RAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* A state from any 64-bit value (a seed, a case number mixed in). */
static inline uint64_t seed_of(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull; /* splitmix64: any input gives a non-zero state */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x ? x : 1;
}

/* In [0, n); 0 when n is 0. */
static inline size_t below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rnd(s) % n) : 0;
}

/* True with the given percentage. */
static inline bool chance(uint64_t *s, unsigned percent)
{
    return below(s, 100) < percent;
}

/* In [lo, hi], log-uniform: small values as likely as large ranges of big ones. */
static inline size_t logu(uint64_t *s, size_t lo, size_t hi)
{
    if (hi <= lo)
        return lo;
    int bits = 0;
    while (bits < 62 && ((size_t)1 << (bits + 1)) <= hi)
        bits++;
    size_t top = (size_t)1 << below(s, (size_t)bits + 1);
    size_t v = top + below(s, top);
    return v < lo ? lo : v > hi ? hi : v;
}

#endif
