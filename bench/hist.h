/*
 * hist.h - a log-linear latency histogram (the HdrHistogram layout).
 *
 * Values are nanoseconds. Below 2^HIST_SUB_BITS (128 ns) every value has
 * its own bucket; above, each power of two is split into 2^(HIST_SUB_BITS
 * - 1) = 64 equal buckets, so a bucket is at most 1/64 (1.6%) of its
 * value wide. Recording is a few instructions and no allocation; the
 * histogram is a fixed 30 KiB whatever the number of samples, and
 * percentiles are read from the counts, never from sorted samples.
 */
#ifndef TC_BENCH_HIST_H
#define TC_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB_COUNT / 2)
/* Buckets up to values of 2^64 - 1. */
#define HIST_BUCKETS (HIST_SUB_COUNT + (64 - HIST_SUB_BITS) * HIST_HALF)

typedef struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_reset(hist *h);

static inline unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB_COUNT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS + 1;
    return HIST_SUB_COUNT + (shift - 1) * HIST_HALF +
           (unsigned)((v >> shift) - HIST_HALF);
}

static inline void hist_add(hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* Adds every sample of src to dst. */
void hist_merge(hist *dst, const hist *src);

/*
 * The value at or below which a fraction q (0..1) of the samples lie: the
 * highest value of the bucket holding that sample, capped at the largest
 * sample seen. 0 when there are no samples.
 */
uint64_t hist_quantile(const hist *h, double q);

#endif /* TC_BENCH_HIST_H */
