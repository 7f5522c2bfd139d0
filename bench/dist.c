/*
 * dist.c - builds the Zipf alias table (see dist.h).
 *
 * Vose's algorithm: scale every key's probability by n, so a column holds
 * exactly 1; pair a key below 1 (small) with one at or above 1 (large),
 * give the small key's column the rest of its room as an alias to the
 * large key, and take that much off the large key, which may then turn
 * small. Keys left at the end (rounding) keep their whole column.
 */
#include "dist.h"

#include <math.h>
#include <stdlib.h>

bool dist_init(dist *d, uint32_t n, double skew)
{
    bool ok = false;
    double *w = NULL;
    uint32_t *small = NULL, *large = NULL;
    dist_col *cols = NULL;

    d->n = n;
    d->skew = skew;
    d->cols = NULL;
    if (n == 0)
        goto out;
    if (skew <= 0) {
        ok = true;
        goto out;
    }

    w = malloc((size_t)n * sizeof(*w));
    small = malloc((size_t)n * sizeof(*small));
    large = malloc((size_t)n * sizeof(*large));
    cols = malloc((size_t)n * sizeof(*cols));
    if (w == NULL || small == NULL || large == NULL || cols == NULL)
        goto out;

    double sum = 0;
    for (uint32_t k = 0; k < n; k++) {
        w[k] = pow((double)k + 1, -skew);
        sum += w[k];
    }
    uint32_t ns = 0, nl = 0;
    for (uint32_t k = 0; k < n; k++) {
        w[k] = w[k] * n / sum;
        if (w[k] < 1)
            small[ns++] = k;
        else
            large[nl++] = k;
    }
    while (ns > 0 && nl > 0) {
        uint32_t s = small[--ns];
        uint32_t l = large[--nl];
        double keep = w[s] * 4294967296.0;
        cols[s].keep = keep >= 4294967295.0 ? UINT32_MAX : (uint32_t)keep;
        cols[s].alias = l;
        w[l] = (w[l] + w[s]) - 1;
        if (w[l] < 1)
            small[ns++] = l;
        else
            large[nl++] = l;
    }
    while (nl > 0) {
        uint32_t l = large[--nl];
        cols[l].keep = UINT32_MAX;
        cols[l].alias = l;
    }
    while (ns > 0) {
        uint32_t s = small[--ns];
        cols[s].keep = UINT32_MAX;
        cols[s].alias = s;
    }

    d->cols = cols;
    cols = NULL;
    ok = true;
out:
    free(cols);
    free(large);
    free(small);
    free(w);
    return ok;
}

void dist_free(dist *d)
{
    free(d->cols);
    d->cols = NULL;
}

double dist_prob(const dist *d, uint32_t k)
{
    if (d->cols == NULL)
        return 1.0 / d->n;
    /* Its own column's share plus every column aliased to it. */
    double p = ((double)d->cols[k].keep + 1) / 4294967296.0;
    for (uint32_t c = 0; c < d->n; c++)
        if (c != k && d->cols[c].alias == k && d->cols[c].keep != UINT32_MAX)
            p += 1 - ((double)d->cols[c].keep + 1) / 4294967296.0;
    return p / d->n;
}
