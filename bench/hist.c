/*
 * hist.c - percentiles of the log-linear histogram (see hist.h).
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void hist_reset(hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_merge(hist *dst, const hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* The highest value that falls in bucket i. */
static uint64_t hist_bucket_high(unsigned i)
{
    if (i < HIST_SUB_COUNT)
        return i;
    unsigned shift = (i - HIST_SUB_COUNT) / HIST_HALF + 1;
    uint64_t sub = (i - HIST_SUB_COUNT) % HIST_HALF + HIST_HALF;
    uint64_t low = sub << shift;
    return low + ((UINT64_C(1) << shift) - 1);
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* The rank of the sample wanted, 1-based: the smallest rank whose
     * share of the samples reaches q. */
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
