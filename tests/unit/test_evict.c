/*
 * test_evict.c - the byte bound and S3-FIFO eviction (engine/evict.c):
 * the real per-item cost is what "bytes" counts; filling far past
 * mem_limit with random sizes and mixed operations never leaves "bytes"
 * above the limit by more than one item after a call returns; the
 * newest keys and the keys read often survive; a key read a few times
 * survives a scan of one-time keys several times the cache (and is
 * evicted by the same scan when it was never read); ghost hits; expired
 * items are reclaimed before live ones are evicted.
 *
 * Scan tests use one shard and equal-sized items so the order of
 * eviction does not depend on the engine's random hash seed.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "item.h"
#include "mem_int.h"
#include "memcheck.h"
#include "tcutil.h"

#define SL(s) (s), (sizeof(s) - 1)

static tc_engine *open_limit(tcu_clock *clk, size_t limit, size_t item_max,
                             unsigned shards)
{
    tc_config cfg;
    tcu_config(&cfg, clk);
    cfg.mem_limit = limit;
    cfg.item_size_max = item_max;
    cfg.shards = shards;
    return tcu_open_cfg(&cfg);
}

/* What one item costs the tier: its slab chunk and its table slot. */
static size_t cost_of(size_t klen, size_t vlen)
{
    return slab_cost(item_size(klen, vlen)) + MEM_SLOT_COST;
}

static int present(tc_engine *e, const char *key, size_t kl)
{
    tc_item *it = NULL;
    tc_status st = tc_get(e, key, kl, &it);
    tc_item_release(it);
    TCT_CHECK(st == TC_OK || st == TC_ENOTFOUND);
    return st == TC_OK;
}

/* Looks for key in its shard's table directly (not a read for the
 * eviction policy) and, under the shard's lock, sets and then clears
 * those bits of the item found. Returns how many were found (0 or 1). */
static int table_touch(tc_engine *e, const char *key, size_t kl,
                       uint8_t set, uint8_t clear)
{
    mem *m = e->mem;
    uint64_t h = mem_hash(m, key, kl);
    mem_shard *sh = &m->shards[(h >> 56) & (m->cfg.shards - 1)];
    int found = 0;
    pthread_mutex_lock(&sh->lock);
    for (uint32_t i = 0; i < sh->cap; i++) {
        uint64_t s = sh->slots[i];
        if (s == 0)
            continue;
        struct tc_item *it = slot_item(s);
        if (item_klen(it) == kl && memcmp(item_key(it), key, kl) == 0) {
            it->bits = (uint8_t)((it->bits | set) & ~clear);
            found++;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    TCT_CHECK(found <= 1);
    return found;
}

/* Like present(), without counting as a read for the eviction policy. */
static int resident(tc_engine *e, const char *key, size_t kl)
{
    return table_touch(e, key, kl, 0, 0);
}

/* The cost counted per item is its real one. */
static void bytes_counts_real_cost(void)
{
    tc_engine *e = open_limit(NULL, 1 << 24, 1 << 20, 4);
    static char val[70000];
    memset(val, 'c', sizeof(val));
    static const size_t vlens[] = {0, 1, 7, 8, 100, 1000, 1024, 5000,
                                   16000, 16384, 20000, 70000};
    uint64_t want = 0;
    char key[64];
    for (size_t i = 0; i < sizeof(vlens) / sizeof(vlens[0]); i++) {
        size_t kl = tcu_key(key, "cost:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlens[i], 0, 0, 0, NULL),
                  TC_OK);
        want += cost_of(kl, vlens[i]);
        TCT_EQ_U64(tcu_stat(e, "bytes"), want);
        /* At least the bytes themselves, header and slot. */
        TCT_CHECK(cost_of(kl, vlens[i]) >= kl + vlens[i] + 8);
    }
    /* An overwrite replaces one cost by the other (the replaced item may
     * wait dead in the small FIFO: its bytes are counted until freed). */
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 12);
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/*
 * Random keys, random sizes (mostly small, some up to 16 KiB), random
 * operations, 20 times the limit stored: after every call "bytes" is at
 * most the limit plus one largest item, the tier's books balance, and
 * evictions grow.
 */
static void byte_bound_random_sizes(void)
{
    uint64_t rng = tct_seed();
    const size_t limit = 2 << 20, item_max = 16384;
    tc_engine *e = open_limit(NULL, limit, item_max, 8);
    char *val = malloc(item_max);
    TCT_CHECK(val != NULL);
    memset(val, '7', item_max);
    char key[64];
    uint64_t stored = 0, over = 0, max_bytes = 0;
    const uint64_t slack = cost_of(TC_KEY_MAX, item_max);

    for (unsigned op = 0; stored < 20 * (uint64_t)limit; op++) {
        uint64_t r = tct_rand(&rng);
        size_t kl = tcu_key(key, "rnd:", r % 20000);
        size_t vlen = (r >> 20) % 8 == 0 ? (r >> 24) % item_max
                                          : 1 + (r >> 24) % 300;
        switch ((r >> 16) % 10) {
        case 0:
            (void)tc_delete(e, key, kl);
            break;
        case 1: {
            tc_status st = tc_store(e, TC_APPEND, key, kl, val, vlen % 200,
                                    0, 0, 0, NULL);
            TCT_CHECK(st == TC_OK || st == TC_ENOTSTORED || st == TC_E2BIG);
            break;
        }
        case 2: {
            tc_status st = tc_incr(e, key, kl, 1, NULL);
            TCT_CHECK(st == TC_OK || st == TC_ENOTFOUND ||
                      st == TC_ENONNUMERIC);
            break;
        }
        case 3:
            (void)present(e, key, kl);
            break;
        default:
            TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                      TC_OK);
            stored += cost_of(kl, vlen);
        }
        uint64_t b = tcu_stat(e, "bytes");
        if (b > max_bytes)
            max_bytes = b;
        if (b > limit)
            over++;
        if (b > limit + slack) {
            printf("# op %u: bytes %" PRIu64 ", limit %zu\n", op, b, limit);
            TCT_CHECK(b <= limit + slack);
        }
        if (op % 5000 == 0)
            TCT_EQ_INT(memcheck_tier(e->mem), 0);
    }
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    printf("# bytes %" PRIu64 ", slab pages %zu, limit %zu\n",
           tcu_stat(e, "bytes"), slab_page_bytes(e->mem->slab), limit);
    TCT_CHECK(tcu_stat(e, "evictions") > 1000);
    /* The cache was used, not emptied. */
    TCT_CHECK(max_bytes > limit / 2);
    TCT_CHECK(tcu_stat(e, "bytes") > limit / 2);
    TCT_CHECK(tcu_stat(e, "curr_items") > 1000);
    free(val);
    tc_close(e);
}

/* Every store lands in one shard while the other shards hold the bytes:
 * the bound still holds and each new item is there after its store.
 * (The shard evicts its own items first, so it keeps about the share it
 * had when the limit was first reached; shards do not rebalance.) */
static void byte_bound_one_hot_shard(void)
{
    const size_t limit = 1 << 20;
    tc_engine *e = open_limit(NULL, limit, 8192, 8);
    static char val[8000];
    memset(val, 's', sizeof(val));
    char key[64];
    for (unsigned i = 0; i < 2000; i++) {
        size_t kl = tcu_key(key, "spread:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, 400, 0, 0, 0, NULL),
                  TC_OK);
    }
    unsigned stored = 0;
    for (unsigned i = 0; stored < 600; i++) {
        size_t kl = tcu_key(key, "hot:", i);
        if (((mem_hash(e->mem, key, kl) >> 56) & 7) != 0)
            continue;
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
        stored++;
        TCT_CHECK(tcu_stat(e, "bytes") <= limit + cost_of(kl, sizeof(val)));
        TCT_CHECK(resident(e, key, kl));
    }
    TCT_CHECK(tcu_stat(e, "evictions") > 400);
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/*
 * Repeated incr, append and overwrite of one key: each makes a new item
 * and leaves the old one dead in the small FIFO until the FIFO reaches
 * it. The dead ones must not pile up past the limit.
 */
static void byte_bound_rewrites_of_one_key(void)
{
    const size_t limit = 256 * 1024;
    tc_engine *e = open_limit(NULL, limit, 4096, 1);
    const uint64_t slack = cost_of(10, 4096);
    uint64_t r = 0;

    TCT_EQ_ST(tc_store(e, TC_SET, SL("counter"), SL("0"), 0, 0, 0, NULL),
              TC_OK);
    for (unsigned i = 0; i < 50000; i++) {
        TCT_EQ_ST(tc_incr(e, SL("counter"), 1, &r), TC_OK);
        uint64_t b = tcu_stat(e, "bytes");
        if (b > limit + slack) {
            printf("# incr %u: bytes %" PRIu64 ", limit %zu\n", i, b, limit);
            TCT_CHECK(b <= limit + slack);
        }
    }
    TCT_EQ_U64(r, 50000);
    tcu_expect(e, "counter", "50000");

    TCT_EQ_ST(tc_store(e, TC_SET, SL("s"), SL("x"), 0, 0, 0, NULL), TC_OK);
    for (unsigned i = 0; i < 50000; i++) {
        TCT_EQ_ST(tc_store(e, TC_SET, SL("s"), SL("overwritten"), 0, 0, 0,
                           NULL),
                  TC_OK);
        TCT_CHECK(tcu_stat(e, "bytes") <= limit + slack);
    }
    TCT_EQ_ST(tc_store(e, TC_SET, SL("a"), SL("x"), 0, 0, 0, NULL), TC_OK);
    for (unsigned i = 0; i < 2000; i++) {
        TCT_EQ_ST(tc_store(e, TC_APPEND, SL("a"), SL("y"), 0, 0, 0, NULL),
                  TC_OK);
        TCT_CHECK(tcu_stat(e, "bytes") <= limit + slack);
    }
    tcu_expect(e, "counter", "50000");
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/*
 * The keys stored last survive a fill far past the limit, and so do keys
 * read often during it.
 */
static void recent_and_frequent_survive(void)
{
    const size_t limit = 4 << 20;
    tc_engine *e = open_limit(NULL, limit, 4096, 0); /* default shards */
    static char val[100];
    memset(val, 'r', sizeof(val));
    char key[64];
    enum { HOT = 64 };
    const size_t cost = cost_of(12, sizeof(val));
    const unsigned total = (unsigned)(5 * limit / cost);

    for (unsigned i = 0; i < HOT; i++) {
        size_t kl = tcu_key(key, "hot:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
    }
    for (unsigned i = 0; i < total; i++) {
        size_t kl = tcu_key(key, "seq:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
        if (i % 500 == 0) {
            for (unsigned h = 0; h < HOT; h++) {
                kl = tcu_key(key, "hot:", h);
                TCT_CHECK(present(e, key, kl));
            }
        }
    }
    TCT_CHECK(tcu_stat(e, "evictions") > total / 2);
    /* The newest quarter of a cache's worth is all there. */
    unsigned recent = (unsigned)(limit / 4 / cost);
    for (unsigned i = total - recent; i < total; i++) {
        size_t kl = tcu_key(key, "seq:", i);
        if (!resident(e, key, kl)) {
            printf("# seq:%u of %u missing\n", i, total);
            TCT_CHECK(!"recent key present");
        }
    }
    /* The oldest are gone. */
    unsigned old = 0;
    for (unsigned i = 0; i < total / 2; i++) {
        size_t kl = tcu_key(key, "seq:", i);
        old += resident(e, key, kl);
    }
    TCT_CHECK(old < total / 100);
    for (unsigned h = 0; h < HOT; h++) {
        size_t kl = tcu_key(key, "hot:", h);
        TCT_CHECK(present(e, key, kl));
    }
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/*
 * A store followed at once by a get of the same key finds it, even when
 * the item is large for its shard and everything else in the small FIFO
 * was read (so moves to main first).
 */
static void stored_item_readable_at_once(void)
{
    const size_t limit = 256 * 1024;
    tc_engine *e = open_limit(NULL, limit, 64 * 1024, 1);
    static char val[64 * 1024];
    memset(val, 'b', sizeof(val));
    char key[64];
    unsigned missing = 0;

    /* Keys read once each: S3-FIFO moves them into main as they leave
     * the small FIFO, so main holds nearly the whole cache. */
    for (unsigned i = 0; i < 3000; i++) {
        size_t kl = tcu_key(key, "warm:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, 200, 0, 0, 0, NULL),
                  TC_OK);
        (void)present(e, key, kl);
    }
    static const size_t sizes[] = {100, 1000, 10000, 30000, 60000};
    for (unsigned i = 0; i < 50; i++) {
        size_t vlen = sizes[i % 5];
        size_t kl = tcu_key(key, "new:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
        if (!resident(e, key, kl)) {
            printf("# %s (%zu bytes) gone right after its store\n", key,
                   vlen);
            missing++;
        }
        /* Read it, as a client would, and keep the warm set read. */
        (void)present(e, key, kl);
        for (unsigned j = 0; j < 40; j++) {
            kl = tcu_key(key, "warm:", 2960 + j);
            (void)present(e, key, kl);
        }
    }
    TCT_EQ_U64(missing, 0);
    TCT_CHECK(tcu_stat(e, "bytes") <= limit + cost_of(8, 60000));
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/* The same with many shards, each smaller than the items stored: the
 * store's own shard cannot make room alone, others must give. */
static void stored_item_readable_at_once_sharded(void)
{
    const size_t limit = 256 * 1024;
    tc_engine *e = open_limit(NULL, limit, 32 * 1024, 64);
    static char val[32 * 1024];
    memset(val, 'b', sizeof(val));
    char key[64];
    for (unsigned i = 0; i < 3000; i++) {
        size_t kl = tcu_key(key, "warm:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, 100, 0, 0, 0, NULL),
                  TC_OK);
    }
    unsigned missing = 0;
    for (unsigned i = 0; i < 100; i++) {
        size_t vlen = 4000 + (i % 8) * 4000;
        size_t kl = tcu_key(key, "big:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
        if (!resident(e, key, kl)) {
            printf("# %s (%zu bytes) gone right after its store\n", key,
                   vlen);
            missing++;
        }
        TCT_CHECK(tcu_stat(e, "bytes") <= limit + cost_of(kl, vlen));
    }
    TCT_EQ_U64(missing, 0);
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/* item_size_max may equal mem_limit: a value that large costs more than
 * the limit with its header; it is kept (the bound may be passed by one
 * item) until the next store makes room. */
static void item_as_large_as_the_limit(void)
{
    const size_t limit = 64 * 1024;
    tc_engine *e = open_limit(NULL, limit, limit, 1);
    char *val = malloc(limit);
    TCT_CHECK(val != NULL);
    memset(val, 'L', limit);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("small"), SL("s"), 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("huge"), val, limit, 0, 0, 0, NULL),
              TC_OK);
    TCT_CHECK(resident(e, SL("huge")));
    TCT_CHECK(!resident(e, SL("small")));
    TCT_EQ_U64(tcu_stat(e, "bytes"), cost_of(4, limit));
    TCT_EQ_ST(tc_store(e, TC_SET, SL("next"), SL("n"), 0, 0, 0, NULL), TC_OK);
    TCT_CHECK(!resident(e, SL("huge")));
    tcu_expect(e, "next", "n");
    TCT_EQ_U64(tcu_stat(e, "bytes"), cost_of(4, 1));
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    free(val);
    tc_close(e);
}

/* Stores n one-time keys "<prefix><i>" of vlen bytes. */
static void scan(tc_engine *e, const char *prefix, unsigned n, size_t vlen)
{
    static char val[256];
    memset(val, 'x', sizeof(val));
    char key[64];
    for (unsigned i = 0; i < n; i++) {
        size_t kl = tcu_key(key, prefix, 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
    }
}

/*
 * Scan resistance. One shard, equal items, a cache of about 1800 items.
 * 40 hot keys and 40 cold keys are stored; the hot ones are read twice.
 * Then 3 cache-sizes of one-time keys are stored, with no reads at all.
 * Under LRU or FIFO the hot keys would be gone (nothing touched them
 * during the scan); S3-FIFO moved them to its main queue when they left
 * the small one, and one-time keys only ever leave through the small
 * queue, so every hot key survives, and every cold one is gone.
 */
static void scan_resistance(void)
{
    const size_t limit = 256 * 1024, vlen = 100;
    tc_engine *e = open_limit(NULL, limit, 4096, 1);
    char key[64];
    enum { HOT = 40 };
    const size_t cost = cost_of(10, vlen);
    const unsigned cache_items = (unsigned)(limit / cost);

    for (unsigned i = 0; i < HOT; i++) {
        size_t kl = tcu_key(key, "hot:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, key, kl, 0, 0, 0, NULL),
                  TC_OK);
        kl = tcu_key(key, "cld:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, key, kl, 0, 0, 0, NULL),
                  TC_OK);
    }
    for (int round = 0; round < 2; round++)
        for (unsigned i = 0; i < HOT; i++) {
            size_t kl = tcu_key(key, "hot:", 100000 + i);
            TCT_CHECK(present(e, key, kl));
        }
    scan(e, "scan:", 3 * cache_items, vlen);
    TCT_CHECK(tcu_stat(e, "evictions") >= 2 * cache_items);

    unsigned hot_left = 0, cold_left = 0;
    for (unsigned i = 0; i < HOT; i++) {
        size_t kl = tcu_key(key, "hot:", 100000 + i);
        hot_left += resident(e, key, kl);
        kl = tcu_key(key, "cld:", 100000 + i);
        cold_left += resident(e, key, kl);
    }
    TCT_EQ_U64(hot_left, HOT);
    TCT_EQ_U64(cold_left, 0);
    /* The hot keys still hold their values. */
    for (unsigned i = 0; i < HOT; i++) {
        tcu_key(key, "hot:", 100000 + i);
        tcu_expect(e, key, key);
    }
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/* The same scan with the hot keys never read: they go like the rest
 * (so the test above measures the reads, not luck). */
static void scan_evicts_unread(void)
{
    const size_t limit = 256 * 1024, vlen = 100;
    tc_engine *e = open_limit(NULL, limit, 4096, 1);
    char key[64];
    const unsigned cache_items = (unsigned)(limit / cost_of(10, vlen));
    for (unsigned i = 0; i < 40; i++) {
        size_t kl = tcu_key(key, "hot:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, key, kl, 0, 0, 0, NULL),
                  TC_OK);
    }
    scan(e, "scan:", 3 * cache_items, vlen);
    for (unsigned i = 0; i < 40; i++) {
        size_t kl = tcu_key(key, "hot:", 100000 + i);
        TCT_CHECK(!resident(e, key, kl));
    }
    tc_close(e);
}

/* Scan resistance with the default shard count and several scans, the
 * hot keys read once between scans. */
static void scan_resistance_sharded(void)
{
    const size_t limit = 2 << 20, vlen = 100;
    tc_engine *e = open_limit(NULL, limit, 4096, 0);
    char key[64];
    enum { HOT = 200 };
    const unsigned cache_items = (unsigned)(limit / cost_of(10, vlen));
    for (unsigned i = 0; i < HOT; i++) {
        size_t kl = tcu_key(key, "hot:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, key, kl, 0, 0, 0, NULL),
                  TC_OK);
        TCT_CHECK(present(e, key, kl));
    }
    for (int round = 0; round < 3; round++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "scan%d:", round);
        scan(e, prefix, 2 * cache_items, vlen);
        for (unsigned i = 0; i < HOT; i++) {
            size_t kl = tcu_key(key, "hot:", 100000 + i);
            if (!present(e, key, kl)) {
                printf("# round %d: %s evicted\n", round, key);
                TCT_CHECK(!"hot key survives");
            }
        }
    }
    tc_close(e);
}

/*
 * A key evicted from the small FIFO and stored again soon is a ghost
 * hit: it goes straight to main, so a following scan leaves it alone.
 * Items are of equal cost, so each store evicts exactly one item and the
 * ghost of the key is the last one written when it comes back.
 */
static void ghost_hit_goes_to_main(void)
{
    const size_t limit = 128 * 1024, vlen = 100;
    tc_engine *e = open_limit(NULL, limit, 4096, 1);
    char key[64], gkey[64];
    const unsigned cache_items = (unsigned)(limit / cost_of(10, vlen));
    static char val[100];
    memset(val, 'g', sizeof(val));

    size_t gl = tcu_key(gkey, "gst:", 100000);
    TCT_EQ_ST(tc_store(e, TC_SET, gkey, gl, val, vlen, 0, 0, 0, NULL), TC_OK);
    unsigned i = 0;
    while (resident(e, gkey, gl)) {
        size_t kl = tcu_key(key, "one:", 100000 + i++);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
        TCT_CHECK(i < 2 * cache_items);
    }
    /* Evicted after about a cache's worth of newer keys. */
    TCT_CHECK(i > cache_items * 9 / 10);
    /* One of the one-time keys may have hit the ghost too: it keeps a
     * 16-bit fingerprint per slot, and the hash seed is random (one CI
     * run in hundreds). */
    uint64_t ghost0 = tcu_stat(e, "mem_ghost_hits");
    TCT_CHECK(ghost0 <= 2);
    uint64_t small0 = tcu_stat(e, "mem_small_items");
    TCT_EQ_ST(tc_store(e, TC_SET, gkey, gl, val, vlen, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_U64(tcu_stat(e, "mem_ghost_hits"), ghost0 + 1);
    /* It did not join the small FIFO (which lost one to make room). */
    TCT_EQ_U64(tcu_stat(e, "mem_small_items"), small0 - 1);
    scan(e, "scan:", 3 * cache_items, vlen);
    TCT_CHECK(resident(e, gkey, gl));
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/* Expired items are dropped (reclaimed) before live ones are evicted. */
static void expired_reclaimed_first(void)
{
    tcu_clock clk;
    const size_t limit = 128 * 1024, vlen = 100;
    tc_engine *e = open_limit(&clk, limit, 4096, 1);
    char key[64];
    static char val[100];
    memset(val, 't', sizeof(val));
    const unsigned cache_items = (unsigned)(limit / cost_of(10, vlen));

    for (unsigned i = 0; i < cache_items * 9 / 10; i++) {
        size_t kl = tcu_key(key, "ttl:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 10, 0, NULL),
                  TC_OK);
    }
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    tcu_clock_add(&clk, 10);
    for (unsigned i = 0; i < cache_items * 8 / 10; i++) {
        size_t kl = tcu_key(key, "new:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
    }
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    TCT_CHECK(tcu_stat(e, "reclaimed") > cache_items / 2);
    for (unsigned i = 0; i < cache_items * 8 / 10; i++) {
        size_t kl = tcu_key(key, "new:", 100000 + i);
        TCT_CHECK(resident(e, key, kl));
    }
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/*
 * Deleted items wait dead in the small FIFO and are freed when it reaches
 * them: a storm of store-then-delete of three cache sizes keeps the bound
 * and leaves alone the live keys that were read (they moved to main).
 */
static void dead_items_freed_before_live(void)
{
    const size_t limit = 128 * 1024, vlen = 100;
    tc_engine *e = open_limit(NULL, limit, 4096, 1);
    char key[64];
    static char val[100];
    memset(val, 'd', sizeof(val));
    const unsigned cache_items = (unsigned)(limit / cost_of(10, vlen));

    /* A few live keys, read once, then many stored-and-deleted ones. */
    for (unsigned i = 0; i < 50; i++) {
        size_t kl = tcu_key(key, "live:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
        TCT_CHECK(present(e, key, kl));
    }
    for (unsigned i = 0; i < 3 * cache_items; i++) {
        size_t kl = tcu_key(key, "dead:", 100000 + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
        TCT_EQ_ST(tc_delete(e, key, kl), TC_OK);
    }
    TCT_CHECK(tcu_stat(e, "bytes") <= limit);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 50);
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    for (unsigned i = 0; i < 50; i++) {
        size_t kl = tcu_key(key, "live:", 100000 + i);
        TCT_CHECK(resident(e, key, kl));
    }
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/* Regression: deleted and overwritten items gave their bytes back only
 * when the small FIFO reached them, so "bytes" stayed high after deletes
 * and garbage could push live items out. */
static void deleted_bytes_given_back(void)
{
    tc_engine *e = open_limit(NULL, 64u << 20, 1u << 20, 1);
    char key[64];
    static char big[1000];
    memset(big, 'b', sizeof(big));

    size_t kl = tcu_key(key, "k:", 1);
    TCT_EQ_ST(tc_store(e, TC_SET, key, kl, big, 1000, 0, 0, 0, NULL), TC_OK);
    uint64_t one_big = tcu_stat(e, "bytes");
    TCT_EQ_ST(tc_store(e, TC_SET, key, kl, "x", 1, 0, 0, 0, NULL), TC_OK);
    TCT_CHECK(tcu_stat(e, "bytes") < one_big);
    TCT_EQ_ST(tc_delete(e, key, kl), TC_OK);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);

    /* Many keys deleted oldest first: most are far from the ring's tail. */
    for (unsigned i = 0; i < 5000; i++) {
        kl = tcu_key(key, "m:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, big, 100, 0, 0, 0, NULL),
                  TC_OK);
    }
    for (unsigned i = 0; i < 5000; i++) {
        kl = tcu_key(key, "m:", i);
        TCT_EQ_ST(tc_delete(e, key, kl), TC_OK);
        TCT_EQ_INT(memcheck_tier(e->mem), 0);
    }
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);
    tc_close(e);
}

/* Regression: each shard made room for its own stores, so a shard that
 * took all the writes churned inside its first share of memory while the
 * others kept their old items for ever. Memory must flow to it. */
static void memory_flows_to_written_shard(void)
{
    const size_t limit = 1 << 20;
    tc_engine *e = open_limit(NULL, limit, 8192, 8);
    static char val[400];
    memset(val, 'f', sizeof(val));
    char key[64];
    for (unsigned i = 0; i < 4000; i++) {
        size_t kl = tcu_key(key, "old:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
    }
    /* Write only keys of shard 0, five caches' worth. */
    size_t target = 5 * limit / cost_of(10, sizeof(val));
    for (unsigned i = 0, stored = 0; stored < target; i++) {
        size_t kl = tcu_key(key, "new:", i);
        if (((mem_hash(e->mem, key, kl) >> 56) & 7) != 0)
            continue;
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
        stored++;
    }
    mem_shard *sh0 = &e->mem->shards[0];
    pthread_mutex_lock(&sh0->lock);
    size_t bytes0 = sh0->bytes;
    pthread_mutex_unlock(&sh0->lock);
    printf("# shard 0 holds %zu of %zu bytes\n", bytes0, limit);
    TCT_CHECK(bytes0 > limit / 2);
    TCT_CHECK(tcu_stat(e, "bytes") <= limit + cost_of(10, sizeof(val)));
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

/* Sets or clears ITEM_PINNED on key's item, as the journal and the
 * index writer do (journal.c, mem_unpin). */
static void set_pinned(tc_engine *e, const char *key, size_t kl, bool on)
{
    TCT_EQ_INT(table_touch(e, key, kl, on ? ITEM_PINNED : 0,
                           on ? 0 : ITEM_PINNED),
               1);
}

/* Stores n values of vlen bytes under "<prefix><i>", pinning each
 * (as the journal does until the index has it) when pin is set. */
static void store_run(tc_engine *e, const char *prefix, unsigned n,
                      size_t vlen, bool pin)
{
    static char val[30000];
    memset(val, prefix[0], sizeof(val));
    TCT_CHECK(vlen <= sizeof(val));
    char key[64];
    for (unsigned i = 0; i < n; i++) {
        size_t kl = tcu_key(key, prefix, i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vlen, 0, 0, 0, NULL),
                  TC_OK);
        if (pin)
            set_pinned(e, key, kl, true);
    }
}

/* Unpins the n keys store_run stored under prefix, as the index writer
 * does once it has them. */
static void unpin_run(tc_engine *e, const char *prefix, unsigned n)
{
    char key[64];
    for (unsigned i = 0; i < n; i++) {
        size_t kl = tcu_key(key, prefix, i);
        set_pinned(e, key, kl, false);
    }
}

/* While the index lags, every large item stored is pinned and, leaving
 * the small FIFO, waits in main. Small items stored then, never read and
 * not pinned, must still make room. (Before the fix, with the small FIFO
 * under a tenth of the shard's bytes, eviction asked only main, which
 * could give nothing: the small items stayed, with the tier over its
 * limit.) */
static void pinned_main_does_not_shield_small(void)
{
    const size_t limit = 1 << 20;
    const size_t big = 30000;
    tc_engine *e = open_limit(NULL, limit, 65536, 1);
    unsigned nbig = 2 * limit / big;
    store_run(e, "b:", nbig, big, true); /* main: all pinned */
    store_run(e, "s:", 20, 100, false);
    store_run(e, "c:", 4, big, true);
    unsigned left = 0;
    char key[64];
    for (unsigned i = 0; i < 20; i++) {
        size_t kl = tcu_key(key, "s:", i);
        left += (unsigned)resident(e, key, kl);
    }
    printf("# %u of 20 unpinned small items left; bytes %llu, limit %zu\n",
           left, (unsigned long long)tcu_stat(e, "bytes"), limit);
    TCT_EQ_INT(left, 0);
    unpin_run(e, "b:", nbig);
    unpin_run(e, "c:", 4);
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    tc_close(e);
}

TCT_MAIN(TCT(bytes_counts_real_cost), TCT(byte_bound_random_sizes),
         TCT(byte_bound_one_hot_shard), TCT(byte_bound_rewrites_of_one_key),
         TCT(recent_and_frequent_survive), TCT(stored_item_readable_at_once),
         TCT(stored_item_readable_at_once_sharded),
         TCT(item_as_large_as_the_limit),
         TCT(scan_resistance), TCT(scan_evicts_unread),
         TCT(scan_resistance_sharded), TCT(ghost_hit_goes_to_main),
         TCT(expired_reclaimed_first), TCT(dead_items_freed_before_live),
         TCT(deleted_bytes_given_back), TCT(memory_flows_to_written_shard),
         TCT(pinned_main_does_not_shield_small))
