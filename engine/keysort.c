/*
 * keysort.c - keys into LMDB's order (keysort.h).
 */
#include "keysort.h"

#include <string.h>

static uint64_t be64(const unsigned char *p, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (i < len ? p[i] : 0);
    return v;
}

/* The integers are zero-padded bytes of the keys: when they differ, the
 * keys differ the same way (a key that ends where the other has a byte
 * is the shorter, so the smaller); when they are equal, the keys say,
 * past the cover bytes the integers hold (equal keys are many in a
 * segment of a skewed load: they cost no memcmp when short). */
static int ks_cmp(const ks_key *x, const ks_key *y, size_t cover)
{
    if (x->a != y->a)
        return x->a < y->a ? -1 : 1;
    if (x->b != y->b)
        return x->b < y->b ? -1 : 1;
    if (x->klen <= cover && y->klen <= cover)
        return x->klen < y->klen ? -1 : x->klen > y->klen;
    int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    if (c != 0)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static void ks_merge_sort(ks_key *v, ks_key *tmp, size_t n, size_t cover)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            ks_key k = v[i];
            size_t j = i;
            for (; j > 0 && ks_cmp(&v[j - 1], &k, cover) > 0; j--)
                v[j] = v[j - 1];
            v[j] = k;
        }
        return;
    }
    size_t h = n / 2;
    ks_merge_sort(v, tmp, h, cover);
    ks_merge_sort(v + h, tmp, n - h, cover);
    if (ks_cmp(&v[h - 1], &v[h], cover) <= 0)
        return; /* already in order */
    memcpy(tmp, v, h * sizeof(*v));
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n)
        v[o++] = ks_cmp(&v[j], &tmp[i], cover) < 0 ? v[j++] : tmp[i++];
    while (i < h)
        v[o++] = tmp[i++];
}

/* From this many keys on, they are ordered by a with a radix sort (a
 * counting pass per byte of a in which they differ, least significant
 * first; each stable), then the keys of one a by the merge sort. On 250k
 * keys "key:" + 10 digits (a: the 6 digits past "key:0000"), 46 ms
 * by the merge sort alone, 17 ms so (tests/unit/test_keysort.c checks
 * the order; the figures from a loop over ks_sort on this machine). */
#define KS_RADIX_MIN 1024

static void ks_radix(ks_key *v, ks_key *tmp, size_t n)
{
    size_t count[8][256];
    memset(count, 0, sizeof(count));
    uint64_t all = ~UINT64_C(0), any = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = v[i].a;
        all &= a;
        any |= a;
        for (unsigned b = 0; b < 8; b++)
            count[b][(a >> (8 * b)) & 0xff]++;
    }
    uint64_t differ = all ^ any;
    ks_key *src = v, *dst = tmp;
    for (unsigned b = 0; b < 8; b++) {
        if (((differ >> (8 * b)) & 0xff) == 0)
            continue; /* every key has the same byte here */
        size_t at = 0;
        for (unsigned c = 0; c < 256; c++) {
            size_t k = count[b][c];
            count[b][c] = at;
            at += k;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[b][(src[i].a >> (8 * b)) & 0xff]++] = src[i];
        ks_key *t = src;
        src = dst;
        dst = t;
    }
    if (src != v)
        memcpy(v, src, n * sizeof(*v));
}

void ks_sort(ks_key *v, ks_key *tmp, size_t n)
{
    if (n < 2)
        return;
    /* The keys are read in two passes (their common prefix, then the
     * integers past it), each key a miss when they lie all over memory
     * (the index writer's keys are in the items): asked for ahead. */
    enum { AHEAD = 16 };
    size_t lcp = v[0].klen;
    for (size_t i = 1; i < n && lcp > 0; i++) {
        if (i + AHEAD < n)
            __builtin_prefetch(v[i + AHEAD].key);
        size_t l = 0, m = v[i].klen < lcp ? v[i].klen : lcp;
        while (l < m && v[0].key[l] == v[i].key[l])
            l++;
        lcp = l;
    }
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n)
            __builtin_prefetch(v[i + AHEAD].key + lcp);
        const unsigned char *p = v[i].key + lcp;
        size_t len = v[i].klen - lcp;
        v[i].a = be64(p, len);
        v[i].b = len > 8 ? be64(p + 8, len - 8) : 0;
    }
    if (n < KS_RADIX_MIN) {
        ks_merge_sort(v, tmp, n, lcp + 16);
        return;
    }
    ks_radix(v, tmp, n);
    /* Keys of one a are in their first order: sorted by what follows. */
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && v[j].a == v[i].a; j++)
            ;
        if (j - i > 1)
            ks_merge_sort(v + i, tmp, j - i, lcp + 16);
    }
}
