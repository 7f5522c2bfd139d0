/*
 * memcheck.h - a consistency checker for the memory tier's private
 * structures (mem_int.h), shared by the table, eviction and thread tests.
 *
 * memcheck_tier() walks every shard under its lock and verifies:
 *   - Robin Hood: each slot's stored distance is its distance from the home
 *     slot of its key's hash, no empty slot lies between an entry and its
 *     home, and each slot's tag is the tag of its key's hash;
 *   - each entry belongs to its shard and has ITEM_LINKED set, at most one
 *     entry per key (checked by the callers that know the keys);
 *   - count is the number of occupied slots, below the growth point;
 *   - the small FIFO: every ring entry has ITEM_RING; small_bytes is the
 *     cost of the ring entries; small_count the number of linked items
 *     marked ITEM_SMALL, each of which is in the ring;
 *   - bytes is the cost of the linked items plus the dead ones still in
 *     the ring, and the tier's used total is the sum of the shards' bytes.
 * It returns 0, or prints what is wrong and returns -1.
 */
#ifndef MEMCHECK_H
#define MEMCHECK_H

#include <stdio.h>

#include "hash.h"
#include "mem_int.h"

static inline int memcheck_shard(const mem *m, mem_shard *sh, unsigned si)
{
    uint32_t cap = sh->cap;
    uint32_t occupied = 0, small_linked = 0, fill_items = 0;
    size_t linked_bytes = 0, ring_bytes = 0, dead_ring_bytes = 0, fill_bytes = 0;
    int bad = 0;

    for (uint32_t i = 0; i < cap && bad < 5; i++) {
        uint64_t s = sh->slots[i];
        if (s == 0)
            continue;
        occupied++;
        const struct tc_item *it = slot_item(s);
        uint64_t h = hash_key(item_key(it), item_klen(it), m->cfg.seed);
        uint32_t home = hash_home(h, cap);
        uint32_t dist = i >= home ? i - home : i + cap - home;
        if (slot_dist(s) != dist) {
            printf("# shard %u slot %u: stored distance %u, real %u\n", si,
                   i, slot_dist(s), dist);
            bad++;
        }
        for (uint32_t d = 1; d <= dist; d++) {
            uint32_t j = i >= d ? i - d : i + cap - d;
            if (sh->slots[j] == 0) {
                printf("# shard %u slot %u: empty slot %u between it and "
                       "its home %u\n", si, i, j, home);
                bad++;
                break;
            }
        }
        if ((unsigned)(s >> SLOT_TAG_SHIFT) != hash_tag(h)) {
            printf("# shard %u slot %u: wrong tag\n", si, i);
            bad++;
        }
        if (((h >> 56) & (m->cfg.shards - 1)) != si) {
            printf("# shard %u slot %u: key of another shard\n", si, i);
            bad++;
        }
        if (!(it->bits & ITEM_LINKED)) {
            printf("# shard %u slot %u: item not marked linked\n", si, i);
            bad++;
        }
        if (it->bits & ITEM_SMALL) {
            small_linked++;
            if (!(it->bits & ITEM_RING)) {
                /* A fill item (mem_int.h). */
                fill_items++;
                fill_bytes += mem_item_cost(it);
            }
        }
        linked_bytes += mem_item_cost(it);
    }
    if (occupied != sh->count) {
        printf("# shard %u: count %u, occupied slots %u\n", si, sh->count,
               occupied);
        bad++;
    }
    if (sh->count > sh->grow_at) {
        printf("# shard %u: count %u past growth point %u\n", si, sh->count,
               sh->grow_at);
        bad++;
    }
    uint32_t holes = 0, dead = 0;
    for (uint32_t i = sh->ring_head; i != sh->ring_tail; i++) {
        const struct tc_item *it = sh->ring[i & sh->ring_mask];
        if (it == NULL) {
            holes++; /* an entry whose item was freed */
            continue;
        }
        if (!(it->bits & ITEM_LINKED))
            dead++;
        if (!(it->bits & ITEM_RING)) {
            printf("# shard %u: ring entry without ITEM_RING\n", si);
            bad++;
            break;
        }
        ring_bytes += mem_item_cost(it);
        if (!(it->bits & ITEM_LINKED))
            dead_ring_bytes += mem_item_cost(it);
    }
    if (holes != sh->ring_holes || dead != sh->ring_dead) {
        printf("# shard %u: ring_holes %u ring_dead %u, ring has %u and %u\n",
               si, sh->ring_holes, sh->ring_dead, holes, dead);
        bad++;
    }
    if (ring_bytes != sh->small_bytes) {
        printf("# shard %u: small_bytes %zu, ring holds %zu\n", si,
               sh->small_bytes, ring_bytes);
        bad++;
    }
    if (fill_items != sh->fill_count || fill_bytes != sh->fill_bytes) {
        printf("# shard %u: fill_count %u fill_bytes %zu, table has %u, %zu\n",
               si, sh->fill_count, sh->fill_bytes, fill_items, fill_bytes);
        bad++;
    }
    if (small_linked != sh->small_count) {
        printf("# shard %u: small_count %u, small linked items %u\n", si,
               sh->small_count, small_linked);
        bad++;
    }
    if (linked_bytes + dead_ring_bytes != sh->bytes) {
        printf("# shard %u: bytes %zu, linked %zu + dead in ring %zu\n", si,
               sh->bytes, linked_bytes, dead_ring_bytes);
        bad++;
    }
    return bad == 0 ? 0 : -1;
}

static inline int memcheck_tier(mem *m)
{
    size_t total = 0;
    int rc = 0;
    for (unsigned i = 0; i < m->cfg.shards; i++) {
        mem_shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->lock);
        if (memcheck_shard(m, sh, i) != 0)
            rc = -1;
        total += sh->bytes;
        pthread_mutex_unlock(&sh->lock);
    }
    size_t used = atomic_load(&m->used);
    if (used != total) {
        printf("# tier used %zu, shards' bytes %zu\n", used, total);
        rc = -1;
    }
    return rc;
}

#endif /* MEMCHECK_H */
