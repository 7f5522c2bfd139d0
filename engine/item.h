/*
 * item.h - the layout of an item in the memory tier.
 *
 * An item is one allocation: a 27-byte header, the key, then the value:
 *
 *   0  cas      u64  unique per modification
 *   8  exptime  u32  absolute unix seconds, 0 = never
 *  12  flags    u32  the client's flags
 *  16  lens     u32  key length << 24 | value length (24 bits)
 *  20  atime    u32  last access, unix seconds (meta "l")
 *  24  bits     u8   S3-FIFO frequency and where the item is
 *  25  refs     u8   reference count
 *  26  meta     u8   ITEM_M_*: stale, win sent, base64 key, fetched
 *  27  key, value
 *
 * A value of 16 MiB - 1 or more has ITEM_LEN_BIG in its 24 bits and its
 * real length in 4 bytes before the key, so the common item pays 4 bytes
 * for its lengths and every size up to the limit still fits. The header is
 * 27 bytes, not sizeof (32): items are allocated from ITEM_HDR_SIZE on, so
 * a 14-byte key and a 100-byte value fit a 144-byte slab class (memory per
 * item is a benchmark target; atime and meta, which memcached's meta
 * commands report, cost that class 8 bytes).
 *
 * Header fields are immutable once the item is published in a shard,
 * except:
 *   - exptime, changed by touch/gat (a relaxed atomic, so readers holding
 *     a reference may read it without the shard lock);
 *   - bits, atime and meta, only ever touched under the lock of the
 *     item's shard;
 *   - refs, atomic.
 *
 * References: the shard holds one reference for as long as the item is in
 * its hash table or its small FIFO (see mem_int.h); every tc_item_ref()
 * adds one. The item is freed when the count reaches zero. The count is 8
 * bits wide; tc_item_ref() hands out a private copy instead of a new
 * reference when it is near saturation.
 */
#ifndef TC_ITEM_H
#define TC_ITEM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "slab.h"

/* bits: the S3-FIFO frequency (0..3) and where the item is. */
#define ITEM_FREQ_MASK 0x03u
#define ITEM_SMALL 0x04u  /* in the small FIFO, not yet in main */
#define ITEM_LINKED 0x08u /* in the hash table */
#define ITEM_RING 0x10u   /* its pointer is in the small FIFO's ring */
/* With a disk tier: the change is logged and not yet in the index, so the
 * item must not be evicted (disk.h). */
#define ITEM_PINNED 0x20u
/* A deletion not yet in the index: the key is absent, whatever the disk
 * still holds. A tombstone has no value and is never returned. */
#define ITEM_TOMB 0x40u

/* meta: the state memcached's meta commands keep per item. All but
 * FETCHED go to disk with the item (seg.h, idx.h). */
#define ITEM_M_STALE 0x01u   /* marked stale (md I, ms I): mg says X */
#define ITEM_M_WON 0x02u     /* a client was told it won the recache (W) */
#define ITEM_M_KEY64 0x04u   /* stored by a call naming its key in base64 */
#define ITEM_M_FETCHED 0x08u /* read since it was stored (mg h) */
#define ITEM_M_PERSIST (ITEM_M_STALE | ITEM_M_WON | ITEM_M_KEY64)

/* Tests only: the next this many private copies (tc_item_ref of an item
 * whose count is saturated) fail as they would for want of memory. */
extern _Atomic unsigned item_copy_fail;

#define ITEM_REFS_MAX 0xf0u
#define ITEM_LEN_BIG 0xffffffu

struct tc_item {
    uint64_t cas;
    _Atomic uint32_t exptime;
    uint32_t flags;
    uint32_t lens;
    uint32_t atime;
    uint8_t bits;
    _Atomic uint8_t refs;
    uint8_t meta;
    char data[];
};

#define ITEM_HDR_SIZE offsetof(struct tc_item, data)

static inline size_t item_size(size_t klen, size_t vlen)
{
    return ITEM_HDR_SIZE + (vlen >= ITEM_LEN_BIG ? 4 : 0) + klen + vlen;
}

static inline size_t item_klen(const struct tc_item *it)
{
    return it->lens >> 24;
}

static inline size_t item_vlen(const struct tc_item *it)
{
    uint32_t v = it->lens & ITEM_LEN_BIG;
    if (v == ITEM_LEN_BIG)
        memcpy(&v, it->data, 4);
    return v;
}

static inline const char *item_key(const struct tc_item *it)
{
    return it->data + ((it->lens & ITEM_LEN_BIG) == ITEM_LEN_BIG ? 4 : 0);
}

static inline char *item_value(struct tc_item *it)
{
    return (char *)item_key(it) + item_klen(it);
}

static inline size_t item_total(const struct tc_item *it)
{
    return item_size(item_klen(it), item_vlen(it));
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
