/*
 * test_keysort.c - the key order of the index writers (engine/keysort.c):
 * ks_sort must give LMDB's order (memcmp over the shorter length, then
 * the shorter key first) for any keys, whatever prefix they share, with
 * equal keys in their input order (the index writer relies on it: the
 * records of one key are applied in LSN order), and ks_equal must tell
 * the same keys apart exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keysort.h"
#include "tctest.h"

/* LMDB's default key comparison (mdb_cmp_memn). */
static int lmdb_cmp(const ks_key *x, const ks_key *y)
{
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Sorts keys[0..n) and checks the order, the stability and ks_equal
 * against the plain comparison. */
static void check_sorted(ks_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        keys[i].i = (uint32_t)i;
    ks_key *tmp = malloc((n + 1) * sizeof(*tmp));
    TCT_CHECK(tmp != NULL);
    ks_sort(keys, tmp, n);
    free(tmp);
    size_t bad_order = 0, bad_stable = 0, bad_equal = 0;
    for (size_t i = 1; i < n; i++) {
        int c = lmdb_cmp(&keys[i - 1], &keys[i]);
        if (c > 0)
            bad_order++;
        if (c == 0 && keys[i - 1].i > keys[i].i)
            bad_stable++;
        if (ks_equal(&keys[i - 1], &keys[i]) != (c == 0))
            bad_equal++;
    }
    TCT_EQ_U64(bad_order, 0);
    TCT_EQ_U64(bad_stable, 0);
    TCT_EQ_U64(bad_equal, 0);
}

/* Keys made of few symbols (0, 1 and 'a'), so that equal keys, keys that
 * are prefixes of others and keys ending in zero bytes are frequent; all
 * behind a shared prefix of plen bytes. */
static void random_keys(size_t n, size_t plen, size_t maxlen)
{
    static const unsigned char sym[] = {0, 1, 'a'};
    unsigned char *store = malloc(n * (plen + maxlen));
    ks_key *keys = malloc(n * sizeof(*keys));
    TCT_CHECK(store != NULL && keys != NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned char *k = store + i * (plen + maxlen);
        memset(k, 'p', plen);
        size_t len = (size_t)(rng() % (maxlen + 1));
        for (size_t j = 0; j < len; j++)
            k[plen + j] = sym[rng() % 3];
        keys[i] = (ks_key){.key = k, .klen = (uint32_t)(plen + len)};
    }
    check_sorted(keys, n);
    free(keys);
    free(store);
}

static void short_keys_any_prefix(void)
{
    random_keys(5000, 0, 6);
    random_keys(5000, 9, 6);
    random_keys(17, 3, 4); /* one merge above the insertion sort */
    random_keys(1023, 2, 5); /* the merge sort alone (KS_RADIX_MIN) */
    random_keys(1024, 2, 5); /* the radix sort first */
}

/* Past the 16 bytes the integers hold, the keys themselves decide. */
static void long_keys(void)
{
    random_keys(5000, 0, 40);
    random_keys(5000, 30, 24);
}

static void many_equal_keys(void)
{
    enum { N = 20000 };
    static char names[8][8] = {"k1", "k2", "k10", "k", "k1\0", "k2x",
                               "k10", "kk"};
    static const uint32_t lens[8] = {2, 2, 3, 1, 3, 3, 3, 2};
    ks_key *keys = malloc(N * sizeof(*keys));
    TCT_CHECK(keys != NULL);
    for (size_t i = 0; i < N; i++) {
        size_t w = (size_t)(rng() % 8);
        keys[i] = (ks_key){.key = (const unsigned char *)names[w],
                           .klen = lens[w]};
    }
    check_sorted(keys, N);
    free(keys);
}

/* The keys of the benchmarks: one prefix, then digits. */
static void numbered_keys(void)
{
    enum { N = 100000 };
    char (*store)[16] = malloc(N * sizeof(*store));
    ks_key *keys = malloc(N * sizeof(*keys));
    TCT_CHECK(store != NULL && keys != NULL);
    for (size_t i = 0; i < N; i++) {
        unsigned long v = (unsigned long)(rng() % 1000000);
        int len = snprintf(store[i], sizeof(store[i]), "key:%010lu", v);
        keys[i] = (ks_key){.key = (const unsigned char *)store[i],
                           .klen = (uint32_t)len};
    }
    check_sorted(keys, N);
    free(keys);
    free(store);
}

static void tiny_inputs(void)
{
    ks_key one = {.key = (const unsigned char *)"x", .klen = 1};
    ks_key tmp[1];
    ks_sort(NULL, tmp, 0);
    ks_sort(&one, tmp, 1);
    TCT_EQ_U64(one.klen, 1);
    ks_key two[2] = {{.key = (const unsigned char *)"b", .klen = 1, .i = 0},
                     {.key = (const unsigned char *)"a", .klen = 1, .i = 1}};
    ks_sort(two, tmp, 2);
    TCT_EQ_U64(two[0].i, 1);
    TCT_EQ_U64(two[1].i, 0);
}

TCT_MAIN(TCT(short_keys_any_prefix), TCT(long_keys), TCT(many_equal_keys),
         TCT(numbered_keys), TCT(tiny_inputs))
