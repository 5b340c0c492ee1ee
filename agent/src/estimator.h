// Per-call sampling of a byte stream (allocations, copies), as tcmalloc, jemalloc and Go's heap
// profiler do it. Think of sample points scattered over the bytes a thread allocates (or copies) as a
// Poisson process with one point per `mean` bytes on average. A call of s bytes is sampled when at
// least one point falls inside it, which happens with probability
//
//     p(s) = 1 - exp(-s / mean),
//
// and a sampled call is weighted s / p(s): the expected weight of every call is p * s / p = s, so the
// sum of the weights of a call site's samples is an unbiased estimate of the bytes it allocated,
// whatever the sizes of its calls and whatever the other call sites of the thread do. A thread keeps
// the distance to the next point as a countdown: each call subtracts its size, and the call that takes
// it below zero is the sampled one. The distance from the end of that call to the next point is again
// exponential (the process is memoryless), so a fresh countdown is simply drawn.
//
// The variance of one call's weight is s^2 (1 - p) / p; for n calls of s bytes (volume V = n s) the
// relative standard error of the estimate is sqrt((1 - p) / (n p)): about sqrt(mean / V) for calls much
// smaller than the window, and nearly zero for calls much larger (p -> 1, weight -> s).
//
// Everything here runs inside hooks: no libm (the agent links only libc), no allocation, no locks.
// The random state is the calling thread's own (xorshift64*, seeded per thread).
#ifndef SCALENE_AGENT_ESTIMATOR_H
#define SCALENE_AGENT_ESTIMATOR_H

#include <stdint.h>
#include <string.h>

static inline uint64_t estimator_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// xorshift64*: 64 bits of state, never 0.
static inline uint64_t estimator_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

// A uniform double in (0, 1].
static inline double estimator_uniform(uint64_t *state) {
    return (double)((estimator_next(state) >> 11) + 1) * 0x1.0p-53;
}

// -ln(u) for u in (0, 1]: u = m 2^e with m in [1, 2), ln m = 2 atanh((m - 1) / (m + 1)), whose series
// in t = (m - 1) / (m + 1) < 1/3 is summed to about 1e-12.
static inline double estimator_neg_log(double u) {
    uint64_t bits;
    memcpy(&bits, &u, sizeof bits);
    int exponent = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m;
    memcpy(&m, &bits, sizeof m);
    double t = (m - 1) / (m + 1), t2 = t * t, term = t, sum = 0;
    for (int k = 1; k <= 25; k += 2) {
        sum += term / k;
        term *= t2;
    }
    return -(exponent * 0.69314718055994530942 + 2 * sum);
}

// 1 - exp(-x) for x >= 0, to about 1e-12 relative: exp(-x) = 2^-n exp(-r) with r = x - n ln 2 in
// [-ln 2 / 2, ln 2 / 2] (Taylor series for exp(-r)); small x by its own series (no cancellation).
static inline double estimator_one_minus_exp_neg(double x) {
    if (x <= 0) return 0;
    if (x < 1e-3) return x * (1 - x * (0.5 - x * (1.0 / 6 - x / 24)));
    if (x > 50) return 1;
    int n = (int)(x / 0.69314718055994530942 + 0.5);
    double r = x - n * 0.69314718055994530942;
    double term = 1, e = 1;
    for (int k = 1; k <= 16; k++) {
        term *= -r / k;
        e += term;
    }
    uint64_t bits = (uint64_t)(1023 - n) << 52; // 2^-n, n <= 73
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return 1 - e * scale;
}

// A fresh countdown: exponentially distributed with the given mean, in whole bytes (floor: a call of
// s bytes then crosses it with probability exactly 1 - exp(-s / mean)).
static inline int64_t estimator_countdown(uint64_t *state, uint64_t mean) {
    double d = estimator_neg_log(estimator_uniform(state)) * (double)mean;
    if (d > 4.0e18) d = 4.0e18;
    return (int64_t)d;
}

// The weight of a sampled call of `size` bytes: size / p(size), in bytes (at least `size`).
static inline uint64_t estimator_weight(uint64_t size, uint64_t mean) {
    if (mean == 0) return size;
    double p = estimator_one_minus_exp_neg((double)size / (double)mean);
    if (p <= 0) return size;
    double w = (double)size / p;
    if (w > 1.8e19) return UINT64_MAX;
    uint64_t rounded = (uint64_t)(w + 0.5);
    return rounded < size ? size : rounded;
}

#endif // SCALENE_AGENT_ESTIMATOR_H
