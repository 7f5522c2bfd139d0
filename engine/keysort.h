/*
 * keysort.h - sorts keys into LMDB's order (memcmp, then the shorter
 * first), for the writers of the index: puts, gets and deletes of keys
 * in that order go through one cursor, each finding its key on the page
 * the one before it left the cursor on, instead of descending the tree
 * from its root into pages spread over the map (several times faster
 * under random keys, idx.c).
 *
 * Each key carries 16 bytes of itself past the prefix that all keys of
 * the batch share (most keys of an application start alike), big-endian,
 * so that the sort compares integers and reads the keys themselves only
 * to break a tie. The sort is stable (keys that are equal keep their
 * order): a radix sort on the first 8 of those bytes, then a merge sort
 * of the keys that share them (all of a small batch: keysort.c).
 */
#ifndef TC_KEYSORT_H
#define TC_KEYSORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct ks_key {
    uint64_t a, b;            /* set by ks_sort */
    const unsigned char *key; /* set by the caller */
    uint32_t klen;
    uint32_t i;               /* the caller's, carried along */
} ks_key;

/* Sorts v[0..n); tmp has room for n keys. */
void ks_sort(ks_key *v, ks_key *tmp, size_t n);

/* Whether two keys of one sorted batch are the same key. */
static inline bool ks_equal(const ks_key *x, const ks_key *y)
{
    return x->klen == y->klen && x->a == y->a && x->b == y->b &&
           memcmp(x->key, y->key, x->klen) == 0;
}

#endif /* TC_KEYSORT_H */
