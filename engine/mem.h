/*
 * mem.h - the memory tier: a sharded hash table of items, bounded in
 * bytes, with S3-FIFO eviction (evict.c).
 *
 * All operations take the key's hash (hash_key() with the tier's seed) and
 * the current time, so callers hash once and read the clock once. Expiry
 * times here are absolute unix seconds (0 = never); the engine converts
 * memcached's relative forms before calling in.
 */
#ifndef TC_MEM_H
#define TC_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "slab.h"

#include "tiercache.h"

struct tc_item;
typedef struct mem mem;
struct disk;

/* An operation's dealings with the disk tier. */
typedef struct mem_opt {
    /* The key was loaded from disk already (or is known absent there):
     * decide from memory alone. */
    bool disk_checked;
    /* Called when the change's record is durable (disk.h, disk_log). */
    void (*wake)(void *arg, tc_status st);
    void *wake_arg;
    /* Out: the change was logged (so wake will be called). */
    bool logged;
    /* A disk load ran before this run and counted the get (meta get). */
    bool after_load;
} mem_opt;

/* Returned (as a tc_status) by an operation that found no item in memory
 * while the disk tier may hold the key: load it (disk_load) and call the
 * operation again with disk_checked set. */
#define MEM_ON_DISK ((tc_status)100)

typedef struct mem_config {
    size_t limit;    /* bytes */
    size_t item_max; /* largest value */
    unsigned shards; /* power of two, >= 1 */
    uint64_t seed;   /* hash seed */
} mem_config;

/*
 * Counters kept per shard under its lock and summed by mem_stats_get().
 * The names are the stat names the engine reports.
 */
#define MEM_COUNTERS(X)                                                    \
    X(get_hits) X(get_misses) X(get_expired) X(touch_hits) X(touch_misses) \
    X(delete_hits) X(delete_misses) X(incr_hits) X(incr_misses)            \
    X(decr_hits) X(decr_misses) X(cas_hits) X(cas_misses) X(cas_badval)    \
    X(set_cmds) X(total_items) X(evictions) X(reclaimed) X(ghost_hits)

typedef struct mem_counters {
#define MEM_COUNTER_FIELD_(name) uint64_t name;
    MEM_COUNTERS(MEM_COUNTER_FIELD_)
#undef MEM_COUNTER_FIELD_
} mem_counters;

typedef struct mem_stats {
    uint64_t curr_items;  /* items in the tables */
    uint64_t bytes;       /* their cost, with dead ones not yet freed */
    uint64_t small_items; /* S3-FIFO: live items in the small FIFOs */
    uint64_t table_slots; /* slots of all tables */
    mem_counters c;
} mem_stats;

tc_status mem_new(const mem_config *cfg, mem **out);
void mem_destroy(mem **m);

uint64_t mem_hash(const mem *m, const void *key, size_t klen);

/* Starts loading the table slot key's lookup will read first. */
void mem_prefetch(mem *m, uint64_t h);
/* Prefetches the item of the first entry of h's probe sequence whose tag
 * matches, under the shard's lock (tables are freed when they grow). */
void mem_prefetch_item(mem *m, uint64_t h);

/*
 * The options of memcached's meta commands (tiercache.h, tc_meta_opts),
 * times made absolute. An operation given NULL has none: the classic
 * command.
 */
typedef struct mem_meta {
    unsigned set;     /* TC_MO_* */
    uint32_t ttl;     /* TC_MO_TTL: the new expiry */
    uint32_t vivify;  /* TC_MO_VIVIFY: a created item's expiry */
    uint32_t recache; /* TC_MO_RECACHE: win if the item expires before */
    uint64_t cas;     /* TC_MO_CAS */
    uint64_t initial; /* TC_MO_VIVIFY, arith: the number created */
} mem_meta;

/* Called with a live item while its shard is locked. */
typedef void (*mem_visit_fn)(void *arg, struct tc_item *it);

/* Sentinel for mem_get()'s touch argument: do not change the expiry. */
#define MEM_NO_TOUCH UINT64_MAX

/*
 * Finds the live item for key and calls fn with it under the shard lock;
 * with touch != MEM_NO_TOUCH (a gat), first sets its expiry time to touch.
 * Returns TC_OK or TC_ENOTFOUND.
 */
tc_status mem_get(mem *m, uint64_t h, const void *key, size_t klen,
                  uint32_t now, uint64_t touch, mem_visit_fn fn, void *arg,
                  mem_opt *o);

/*
 * A meta get (mg, me): as mem_get, with the options of mm (TC_MO_TTL,
 * _VIVIFY, _RECACHE, _NO_BUMP). res->meta and res->last_access describe
 * the item as it was before the call (TC_META_*); fn is called with the
 * item (a vivified one too) after they are set.
 */
tc_status mem_mget(mem *m, uint64_t h, const void *key, size_t klen,
                   uint32_t now, const mem_meta *mm, tc_result *res,
                   mem_visit_fn fn, void *arg, mem_opt *o);

/* With mm (may be NULL): TC_MO_CAS for APPEND/PREPEND, TC_MO_INVALIDATE
 * for CAS (a lower CAS stores the value as stale). */
tc_status mem_store(mem *m, uint64_t h, tc_store_mode mode, const void *key,
                    size_t klen, const void *value, size_t vlen,
                    uint32_t flags, uint32_t exptime, uint64_t cas,
                    uint32_t now, uint64_t *cas_out, mem_opt *o,
                    const mem_meta *mm);

/* With mm (may be NULL): TC_MO_CAS; TC_MO_INVALIDATE marks the item stale
 * (a new CAS; TC_MO_TTL: a new expiry) instead of removing it. */
tc_status mem_delete(mem *m, uint64_t h, const void *key, size_t klen,
                     uint32_t now, mem_opt *o, const mem_meta *mm);

/* res (may be NULL) gets the number, and the new item's CAS and expiry.
 * With mm (may be NULL): TC_MO_CAS, TC_MO_TTL (on success), TC_MO_VIVIFY
 * (a missing key is created holding mm->initial). */
tc_status mem_arith(mem *m, uint64_t h, const void *key, size_t klen,
                    int decr, uint64_t delta, uint32_t now, tc_result *res,
                    mem_opt *o, const mem_meta *mm);

tc_status mem_touch(mem *m, uint64_t h, const void *key, size_t klen,
                    uint32_t exptime, uint32_t now, mem_opt *o);

/*
 * The disk tier's side (disk.h). Every operation above logs its change
 * with disk_log() under the shard lock once mem_set_disk() gave it a
 * disk tier, and keeps the item pinned until mem_unpin().
 */
void mem_set_disk(mem *m, struct disk *d);
/* CAS values handed out from now on are above base. */
void mem_set_cas_base(mem *m, uint64_t base);
/* An unpublished item with one reference (to fill, then mem_promote). */
struct tc_item *mem_item_alloc(mem *m, const void *key, size_t klen,
                               size_t vlen);
/* The index now has the item's record: it may be evicted; a tombstone
 * goes. copy: it is the record's private copy of the item logged (whose
 * count was saturated), which then names the table's item of the same
 * key and CAS. */
void mem_unpin(mem *m, struct tc_item *it, uint64_t h, bool copy);
/*
 * Reclaim's rescue: if key's item is in memory, clean (not pinned), live
 * and was read since it got there, logs it again (a new record of the
 * same version). Returns the record's LSN, or 0 when nothing was logged.
 */
uint64_t mem_relog(mem *m, uint64_t h, const void *key, size_t klen,
                   uint32_t now);
/*
 * Puts an item read from disk into the tier, unless the key is in memory
 * already (a newer write, or a tombstone) or current(arg), called under
 * the shard lock, says the index moved on. The item keeps its CAS. The
 * caller keeps its own reference. Returns whether it was inserted.
 */
bool mem_promote(mem *m, uint64_t h, struct tc_item *it, uint32_t now,
                 bool (*current)(void *arg), void *arg);

/* Bytes the tier holds now (the sum its limit bounds). */
size_t mem_used(const mem *m);
/* The limit it was made with. */
size_t mem_limit(const mem *m);

/*
 * The hot keys, for warm start's snapshot: the keys of live items, main
 * FIFO before small, higher frequency (the eviction policy's own
 * counter) first, until their cost reaches the tier's limit. Walks each
 * shard under its lock a few thousand slots at a time, so gets are held
 * up no longer than that. *out (malloc'd, the caller frees it) holds
 * *nkeys keys, each as one length byte and the key. TC_ENOMEM.
 */
tc_status mem_hot_keys(mem *m, uint32_t now, unsigned char **out,
                       size_t *out_len, uint32_t *nkeys);

/* Drops every item. */
void mem_flush(mem *m);

void mem_stats_get(mem *m, mem_stats *out);
void mem_stats_reset(mem *m);
/* The item allocator's figures, per size class (slab_stats), and the
 * bytes of pages it holds. */
void mem_slab_stats(mem *m, slab_stats_fn fn, void *arg);
size_t mem_slab_bytes(mem *m);

/* Parses a memcached incr/decr operand: optional leading blanks, an
 * optional sign, digits, then only blanks. Returns 0 and the number, or -1
 * (not a number, negative, or over 2^64-1). */
int mem_parse_u64(const char *s, size_t len, uint64_t *out);

#endif /* TC_MEM_H */
