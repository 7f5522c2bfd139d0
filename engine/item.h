/*
 * item.h - the layout of an item in the memory tier.
 *
 * An item is one allocation: a 24-byte header, the key, then the value.
 * Its header fields are immutable once the item is published in a shard,
 * except:
 *   - exptime, changed by touch/gat (a relaxed atomic, so readers holding
 *     a reference may read it without the shard lock);
 *   - bits, the eviction policy's state, only ever touched under the lock
 *     of the item's shard;
 *   - refs, the reference count, atomic.
 *
 * References: the shard holds one reference for as long as the item is in
 * its hash table or its small FIFO (see mem_int.h); every tc_item_ref()
 * adds one. The item is freed when the count reaches zero. The count is 16
 * bits wide; tc_item_ref() hands out a private copy instead of a new
 * reference when it is near saturation.
 */
#ifndef TC_ITEM_H
#define TC_ITEM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "slab.h"

/* bits: the S3-FIFO frequency (0..3) and where the item is. */
#define ITEM_FREQ_MASK 0x03u
#define ITEM_SMALL 0x04u  /* in the small FIFO, not yet in main */
#define ITEM_LINKED 0x08u /* in the hash table */
#define ITEM_RING 0x10u   /* its pointer is in the small FIFO's ring */

#define ITEM_REFS_MAX 0xfff0u

struct tc_item {
    uint64_t cas;
    _Atomic uint32_t exptime; /* absolute unix seconds; 0 = never */
    uint32_t flags;
    uint32_t vlen;
    uint8_t klen;
    uint8_t bits;
    _Atomic uint16_t refs;
    char data[]; /* key, then value */
};

#define ITEM_HDR_SIZE (sizeof(struct tc_item))

static inline size_t item_size(size_t klen, size_t vlen)
{
    return ITEM_HDR_SIZE + klen + vlen;
}

static inline size_t item_total(const struct tc_item *it)
{
    return item_size(it->klen, it->vlen);
}

static inline const char *item_key(const struct tc_item *it)
{
    return it->data;
}

static inline char *item_value(struct tc_item *it)
{
    return it->data + it->klen;
}

static inline uint32_t item_exptime(const struct tc_item *it)
{
    return atomic_load_explicit(&it->exptime, memory_order_relaxed);
}

static inline void item_set_exptime(struct tc_item *it, uint32_t t)
{
    atomic_store_explicit(&it->exptime, t, memory_order_relaxed);
}

static inline int item_expired(const struct tc_item *it, uint32_t now)
{
    uint32_t t = item_exptime(it);
    return t != 0 && t <= now;
}

/* Allocates an unpublished item with one reference, copying the key; the
 * value is the caller's to fill. NULL when out of memory. */
struct tc_item *item_new(slab *s, const void *key, size_t klen, size_t vlen);

/* Drops a reference; frees the item on the last. */
void item_unref(struct tc_item *it);

#endif /* TC_ITEM_H */
