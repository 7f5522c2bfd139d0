/*
 * mem_int.h - the memory tier's private structures, shared by mem.c (the
 * table and the operations) and evict.c (the eviction policy).
 *
 * A shard is a Robin Hood hash table of item pointers plus the state of
 * S3-FIFO, all guarded by the shard's mutex.
 *
 * Table slots are 64 bits: the item pointer in the low 48 bits, the
 * distance from the slot the hash wants (0..255) in the next 8, and an
 * 8-bit tag of the hash in the top 8, so most non-matching slots are
 * rejected without touching the item. 0 is an empty slot. The table grows
 * by half when 90% full; Robin Hood ordering keeps probe sequences short at
 * that load and lets a lookup for an absent key stop early.
 *
 * S3-FIFO (Yang et al., SOSP 2023): a new item enters the small FIFO (the
 * ring), about a tenth of the shard's bytes. Leaving the small FIFO, an
 * item that was read again moves to main; one that was not is dropped and
 * its hash fingerprint remembered in the ghost array, so that if it comes
 * back soon it goes straight to main. Main is a CLOCK over the table slots
 * themselves: the hand skips small items, spares an item with a non-zero
 * frequency (decrementing it) and evicts one at zero. Main thus needs no
 * list and no per-item pointer. An item pinned for the disk tier (its
 * change not yet in the index) is never evicted: leaving the small FIFO
 * it waits in main, and when main has nothing else to give, the small
 * FIFO gives instead, however small (evict_one).
 *
 * The small FIFO's members are ITEM_SMALL. Those stored while the tier is
 * far from its limit are fill items: ITEM_SMALL without ITEM_RING, the
 * oldest members, taken out by a hand over the table when eviction
 * starts. The others are in the ring, in order.
 *
 * Reference rule: the shard holds one reference on an item while it is
 * ITEM_LINKED (in the table) or ITEM_RING (its pointer in the ring). When
 * an item still in the ring is deleted or replaced, it is looked for among
 * the ring's newest entries (where a recent write is): found, its entry
 * becomes a hole and the item is freed at once; otherwise it stays, dead
 * and counted, until the FIFO reaches it or the ring is compacted, which
 * happens whenever a quarter of the ring is dead or holes.
 */
#ifndef TC_MEM_INT_H
#define TC_MEM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "item.h"
#include "disk.h"
#include "mem.h"
#include "slab.h"

#define SLOT_PTR_MASK ((UINT64_C(1) << 48) - 1)
#define SLOT_DIST_SHIFT 48
#define SLOT_TAG_SHIFT 56
#define SLOT_DIST_MAX 255u

/* Per-item cost beyond its allocation: its table slot. */
#define MEM_SLOT_COST 8

typedef struct mem_shard {
    pthread_mutex_t lock;
    uint64_t *slots;
    uint32_t cap;
    uint32_t count;   /* items in the table */
    uint32_t tombs;   /* tombstones among them (not counted as items) */
    size_t tomb_bytes; /* their cost (in bytes, not in the bytes stat) */
    uint32_t grow_at; /* count that triggers growth */
    uint32_t hand;    /* CLOCK hand over the slots */

    struct tc_item **ring; /* the small FIFO */
    uint32_t ring_mask;
    uint32_t ring_head;  /* next to leave */
    uint32_t ring_tail;  /* next free */
    uint32_t ring_dead;  /* entries of unlinked items, not yet freed */
    uint32_t ring_holes; /* NULL entries of items already freed */

    uint16_t *ghost;
    uint32_t ghost_cap;

    uint32_t fill_count; /* small-FIFO items not in the ring */
    size_t fill_bytes;
    uint32_t fill_hand;  /* finds them when they leave */
    size_t bytes;       /* cost of every item the shard references */
    size_t small_bytes; /* cost of the items in the ring, dead or alive */
    uint32_t small_count; /* live items in the small FIFO */
    uint64_t cas_next;
    mem_counters st;
    unsigned index;
} mem_shard;

struct mem {
    mem_config cfg;
    disk *dk; /* the disk tier, or NULL (mem_set_disk) */
    unsigned shard_shift; /* 64 - log2(shards) */
    slab *slab;
    atomic_size_t used; /* sum of the shards' bytes */
    atomic_uint reclaim_cursor;
    mem_shard *shards;
};

static inline struct tc_item *slot_item(uint64_t s)
{
    return (struct tc_item *)(uintptr_t)(s & SLOT_PTR_MASK);
}

static inline unsigned slot_dist(uint64_t s)
{
    return (unsigned)((s >> SLOT_DIST_SHIFT) & 0xff);
}

static inline unsigned hash_tag(uint64_t h)
{
    return (unsigned)((h >> 32) & 0xff);
}

static inline uint32_t hash_home(uint64_t h, uint32_t cap)
{
    return (uint32_t)(((uint64_t)(uint32_t)h * cap) >> 32);
}

static inline size_t mem_item_cost(const struct tc_item *it)
{
    return slab_cost(item_total(it)) + MEM_SLOT_COST;
}

static inline bool mem_over_limit(const mem *m)
{
    return atomic_load_explicit(&m->used, memory_order_relaxed) >
           m->cfg.limit;
}

/* mem.c, used by evict.c */
void mem_table_remove_at(mem_shard *sh, uint32_t pos);
bool mem_table_find_ptr(const mem *m, mem_shard *sh, const struct tc_item *it,
                        uint32_t *pos);
/* Drops the shard's reference on an item it no longer links or rings. */
void mem_release(mem *m, mem_shard *sh, struct tc_item *it);
/* Takes a linked item out of the table at pos and out of the small FIFO's
 * live count; releases it unless the ring still holds it. */
void mem_unlink_at(mem *m, mem_shard *sh, struct tc_item *it, uint32_t pos);

/* evict.c */
bool evict_ring_push(mem_shard *sh, struct tc_item *it);
/* An item in the ring was unlinked: takes it out of the ring if it is
 * among the newest entries (clearing ITEM_RING), else counts it dead. */
void evict_ring_forget(mem_shard *sh, struct tc_item *it);
/* Compacts the ring, freeing dead items, when a quarter of it is waste. */
void evict_ring_tidy(mem *m, mem_shard *sh);
/* Places a newly linked item in S3-FIFO (small FIFO, or main on a ghost
 * hit). Returns false only when the ring cannot grow (out of memory). */
bool evict_admit(mem *m, mem_shard *sh, uint64_t h, struct tc_item *it);
/* An overwrite of old by it: it inherits old's place and frequency. */
bool evict_inherit(mem *m, mem_shard *sh, struct tc_item *old,
                   struct tc_item *it);
/* Takes an item out of the small FIFO's membership (not out of the ring:
 * ITEM_RING stays as it is). */
void evict_leave_small(mem_shard *sh, struct tc_item *it);
/* Frees at least one item's bytes if the shard has any; false if not.
 * keep is the address of the item the caller just stored (0 if none),
 * which is spared: a store must not evict what it stored. It is only
 * compared, never followed, so it may name an item freed since. */
bool evict_one(mem *m, mem_shard *sh, uint32_t now, uintptr_t keep);
/* Resizes the ghost array to fit a table of cap slots. */
void evict_ghost_resize(mem_shard *sh, uint32_t cap);
void evict_shard_free(mem_shard *sh);

#endif /* TC_MEM_INT_H */
