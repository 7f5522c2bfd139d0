/*
 * test_table.c - the memory tier's sharded Robin Hood table, driven
 * through mem.h with a fixed hash seed (so a run repeats exactly) and
 * checked against its private layout (mem_int.h) by memcheck.h: growth
 * keeps every key findable, random inserts, overwrites and deletes keep
 * the Robin Hood distances exact, backward-shift deletion keeps the other
 * keys reachable, probe chains that wrap around the table's end or pass
 * 255 slots are handled; plus mem_parse_u64 and mem_new's checks.
 */
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem_int.h"
#include "memcheck.h"
#include "tcutil.h"

#define NOW 1000u

static mem *table_open(unsigned shards, uint64_t seed)
{
    mem_config cfg = {
        .limit = (size_t)1 << 40, /* never evicts */
        .item_max = 1024 * 1024,
        .shards = shards,
        .seed = seed,
    };
    mem *m = NULL;
    TCT_EQ_ST(mem_new(&cfg, &m), TC_OK);
    TCT_CHECK(m != NULL);
    return m;
}

/* Value of key n: "v<n>" repeated up to a length that varies with n. */
static size_t value_of(char *buf, uint64_t n, unsigned version)
{
    size_t len = (size_t)snprintf(buf, 64, "v%" PRIu64 ".%u", n, version);
    size_t want = len + (n * 7 + version) % 40;
    for (size_t i = len; i < want; i++)
        buf[i] = (char)('a' + (i + n) % 26);
    return want;
}

static void table_set(mem *m, const char *key, size_t klen, const char *v,
                      size_t vlen)
{
    uint64_t h = mem_hash(m, key, klen);
    TCT_EQ_ST(mem_store(m, h, TC_SET, key, klen, v, vlen, 0, 0, 0, NOW,
                        NULL, NULL, NULL),
              TC_OK);
}

typedef struct got {
    char buf[128];
    size_t len;
    int calls;
} got;

static void got_copy(void *arg, struct tc_item *it)
{
    got *g = arg;
    g->calls++;
    g->len = item_vlen(it) < sizeof(g->buf) ? item_vlen(it) : sizeof(g->buf);
    memcpy(g->buf, item_value(it), g->len);
}

/* 1 if key holds exactly v, 0 if it is missing; ends the test on a
 * wrong value. */
static int table_has(mem *m, const char *key, size_t klen, const char *v,
                     size_t vlen)
{
    got g = {.calls = 0};
    uint64_t h = mem_hash(m, key, klen);
    tc_status st = mem_get(m, h, key, klen, NOW, MEM_NO_TOUCH, got_copy, &g,
                           NULL);
    if (st == TC_ENOTFOUND) {
        TCT_EQ_INT(g.calls, 0);
        return 0;
    }
    TCT_EQ_ST(st, TC_OK);
    TCT_EQ_INT(g.calls, 1);
    if (v != NULL && (g.len != vlen || memcmp(g.buf, v, vlen) != 0)) {
        printf("# key %.*s: got \"%.*s\", want \"%.*s\"\n", (int)klen, key,
               (int)g.len, g.buf, (int)vlen, v);
        TCT_CHECK(!"value matches");
    }
    return 1;
}

static uint32_t total_cap(mem *m)
{
    uint32_t c = 0;
    for (unsigned i = 0; i < m->cfg.shards; i++)
        c += m->shards[i].cap;
    return c;
}

/* One shard grows from 64 slots to hundreds of thousands; at every growth
 * the invariant holds, and in the end every key is found with its value. */
static void growth_keeps_keys_findable(void)
{
    mem *m = table_open(1, tct_seed());
    enum { N = 150000 };
    char key[64], val[128];
    uint32_t cap = m->shards[0].cap, growths = 0;

    for (uint64_t n = 0; n < N; n++) {
        size_t kl = tcu_key(key, "grow:", n);
        size_t vl = value_of(val, n, 0);
        table_set(m, key, kl, val, vl);
        if (m->shards[0].cap != cap) {
            growths++;
            cap = m->shards[0].cap;
            TCT_EQ_INT(memcheck_tier(m), 0);
            /* Spot-check the keys stored so far. */
            for (uint64_t j = 0; j <= n; j += 1 + n / 64) {
                kl = tcu_key(key, "grow:", j);
                vl = value_of(val, j, 0);
                TCT_CHECK(table_has(m, key, kl, val, vl));
            }
        }
    }
    TCT_CHECK(growths >= 15);
    TCT_EQ_U64(m->shards[0].count, N);
    TCT_CHECK(m->shards[0].cap >= N);
    TCT_EQ_INT(memcheck_tier(m), 0);
    for (uint64_t n = 0; n < N; n++) {
        size_t kl = tcu_key(key, "grow:", n);
        size_t vl = value_of(val, n, 0);
        TCT_CHECK(table_has(m, key, kl, val, vl));
    }
    for (uint64_t n = N; n < N + 1000; n++) {
        size_t kl = tcu_key(key, "grow:", n);
        TCT_CHECK(!table_has(m, key, kl, NULL, 0));
    }
    mem_stats s;
    mem_stats_get(m, &s);
    TCT_EQ_U64(s.curr_items, N);
    TCT_EQ_U64(s.table_slots, m->shards[0].cap);
    mem_destroy(&m);
    TCT_CHECK(m == NULL);
}

/*
 * Random inserts, overwrites and deletes against a model, in 4 shards;
 * the Robin Hood invariant is checked every few hundred operations and
 * every key is looked up at the end.
 */
static void random_ops_keep_invariant(void)
{
    uint64_t rng = tct_seed() ^ 0x1234;
    mem *m = table_open(4, tct_seed());
    enum { KEYS = 6000, OPS = 200000 };
    unsigned *version = calloc(KEYS, sizeof(*version)); /* 0 = absent */
    TCT_CHECK(version != NULL);
    char key[64], val[128];
    uint64_t present = 0;

    for (unsigned op = 0; op < OPS; op++) {
        /* Phases: mostly inserting, then mostly deleting, and so on, so
         * the tables both grow and empty out. */
        unsigned phase = (op / 25000) % 2;
        uint64_t n = tct_rand(&rng) % KEYS;
        size_t kl = tcu_key(key, "rh:", n);
        uint64_t h = mem_hash(m, key, kl);
        unsigned r = (unsigned)(tct_rand(&rng) % 100);
        if (r < (phase == 0 ? 70u : 25u)) {
            unsigned v = version[n] + 1;
            size_t vl = value_of(val, n, v);
            TCT_EQ_ST(mem_store(m, h, TC_SET, key, kl, val, vl, 0, 0, 0, NOW,
                                NULL, NULL, NULL),
                      TC_OK);
            present += version[n] == 0;
            version[n] = v;
        } else {
            tc_status st = mem_delete(m, h, key, kl, NOW, NULL, NULL);
            TCT_EQ_ST(st, version[n] != 0 ? TC_OK : TC_ENOTFOUND);
            present -= version[n] != 0;
            version[n] = 0;
        }
        if (op % 499 == 0) {
            if (memcheck_tier(m) != 0) {
                printf("# after op %u\n", op);
                TCT_CHECK(!"table consistent");
            }
        }
    }
    TCT_EQ_INT(memcheck_tier(m), 0);
    uint64_t count = 0;
    for (unsigned i = 0; i < 4; i++)
        count += m->shards[i].count;
    TCT_EQ_U64(count, present);
    for (uint64_t n = 0; n < KEYS; n++) {
        size_t kl = tcu_key(key, "rh:", n);
        if (version[n] == 0) {
            TCT_CHECK(!table_has(m, key, kl, NULL, 0));
        } else {
            size_t vl = value_of(val, n, version[n]);
            TCT_CHECK(table_has(m, key, kl, val, vl));
        }
    }
    free(version);
    mem_destroy(&m);
}

/*
 * Backward-shift deletion: a table near its growth point (long chains),
 * keys deleted one at a time in random order; after each delete the
 * invariant holds and every remaining key is found.
 */
static void delete_backward_shift(void)
{
    uint64_t rng = tct_seed() ^ 0xdead;
    mem *m = table_open(1, tct_seed() + 1);
    char key[64], val[128];
    /* Fill to just below the growth point of a table of some size. */
    unsigned n = 0;
    for (;;) {
        mem_shard *sh = &m->shards[0];
        if (sh->cap >= 1000 && sh->count == sh->grow_at)
            break;
        size_t kl = tcu_key(key, "bs:", n);
        size_t vl = value_of(val, n, 1);
        table_set(m, key, kl, val, vl);
        n++;
    }
    uint32_t cap = m->shards[0].cap;
    unsigned max_dist = 0;
    for (uint32_t i = 0; i < cap; i++)
        if (m->shards[0].slots[i] != 0 &&
            slot_dist(m->shards[0].slots[i]) > max_dist)
            max_dist = slot_dist(m->shards[0].slots[i]);
    TCT_CHECK(max_dist >= 3); /* at 90% load chains are real */

    unsigned *order = malloc(n * sizeof(*order));
    char *gone = calloc(n, 1);
    TCT_CHECK(order != NULL && gone != NULL);
    for (unsigned i = 0; i < n; i++)
        order[i] = i;
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)(tct_rand(&rng) % (i + 1));
        unsigned t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (unsigned d = 0; d < n; d++) {
        unsigned k = order[d];
        size_t kl = tcu_key(key, "bs:", k);
        TCT_EQ_ST(mem_delete(m, mem_hash(m, key, kl), key, kl, NOW, NULL, NULL), TC_OK);
        gone[k] = 1;
        TCT_EQ_ST(mem_delete(m, mem_hash(m, key, kl), key, kl, NOW, NULL, NULL),
                  TC_ENOTFOUND);
        if (d % 7 == 0 || n - d < 50) {
            if (memcheck_tier(m) != 0) {
                printf("# after %u deletes\n", d + 1);
                TCT_CHECK(!"table consistent");
            }
        }
        if (d % 97 == 0) {
            for (unsigned j = 0; j < n; j++) {
                kl = tcu_key(key, "bs:", j);
                size_t vl = value_of(val, j, 1);
                TCT_EQ_INT(table_has(m, key, kl, val, vl), !gone[j]);
            }
        }
    }
    TCT_EQ_U64(m->shards[0].count, 0);
    TCT_EQ_U64(m->shards[0].cap, cap); /* deletes never shrink */
    for (uint32_t i = 0; i < cap; i++)
        TCT_EQ_U64(m->shards[0].slots[i], 0);
    /* Deleted items still in the small FIFO stay counted, dead, until
     * the FIFO reaches them (mem_int.h): nothing else is. */
    TCT_EQ_INT(memcheck_tier(m), 0);
    mem_stats s;
    mem_stats_get(m, &s);
    TCT_EQ_U64(s.curr_items, 0);
    TCT_EQ_U64(s.small_items, 0);
    TCT_EQ_U64(s.bytes, m->shards[0].small_bytes);
    TCT_EQ_U64(atomic_load(&m->used), s.bytes);
    free(order);
    free(gone);
    mem_destroy(&m);
}

/* Finds count keys "<prefix><n>" whose hash's low 32 bits are within
 * [lo, lo + span) (so their home slot is the same in every small table);
 * returns them in keys (64 bytes each). */
static void find_clustered(mem *m, const char *prefix, uint64_t lo,
                           uint64_t span, unsigned count, char (*keys)[64])
{
    unsigned found = 0;
    for (uint64_t n = 0; found < count; n++) {
        char key[64];
        size_t kl = tcu_key(key, prefix, n);
        uint64_t low = (uint32_t)mem_hash(m, key, kl);
        if (low >= lo && low - lo < span)
            memcpy(keys[found++], key, kl + 1);
        TCT_CHECK(n < ((uint64_t)1 << 34));
    }
}

/* Chains that run past the last slot wrap to slot 0; deleting in them
 * shifts entries back across the wrap. */
static void chain_wraps_around(void)
{
    mem *m = table_open(1, tct_seed() + 2);
    TCT_EQ_U64(m->shards[0].cap, 64);
    enum { K = 30 }; /* below the growth point of 64 slots (57) */
    static char keys[K][64];
    /* Home 63 of 64 slots: the top 1/64 of the low 32 bits. */
    find_clustered(m, "wrap:", (uint64_t)63 << 26, (uint64_t)1 << 26, K,
                   keys);
    for (unsigned i = 0; i < K; i++)
        table_set(m, keys[i], strlen(keys[i]), keys[i], strlen(keys[i]));
    TCT_EQ_U64(m->shards[0].cap, 64);
    TCT_EQ_INT(memcheck_tier(m), 0);
    /* The chain occupies slot 63 and then 0..K-2. */
    TCT_CHECK(m->shards[0].slots[63] != 0);
    TCT_CHECK(m->shards[0].slots[K - 2] != 0);
    TCT_EQ_U64(slot_dist(m->shards[0].slots[K - 2]), K - 1);
    for (unsigned i = 0; i < K; i++)
        TCT_CHECK(table_has(m, keys[i], strlen(keys[i]), keys[i],
                            strlen(keys[i])));
    /* Delete from the front of the chain (slot 63): everything shifts
     * back across the wrap. */
    for (unsigned i = 0; i < K; i += 2) {
        size_t kl = strlen(keys[i]);
        TCT_EQ_ST(mem_delete(m, mem_hash(m, keys[i], kl), keys[i], kl, NOW, NULL, NULL),
                  TC_OK);
        TCT_EQ_INT(memcheck_tier(m), 0);
    }
    for (unsigned i = 0; i < K; i++)
        TCT_EQ_INT(table_has(m, keys[i], strlen(keys[i]), keys[i],
                             strlen(keys[i])),
                   i % 2 == 1);
    TCT_EQ_U64(m->shards[0].count, K / 2);
    mem_destroy(&m);
}

/*
 * More than 255 keys with the same home slot in any table under 4096
 * slots: a probe distance would pass the 8 bits a slot holds, so the
 * table must grow (repeatedly) until the chains fit, losing no key.
 */
static void long_chain_forces_growth(void)
{
    mem *m = table_open(1, tct_seed() + 3);
    enum { K = 400 };
    static char keys[K][64];
    find_clustered(m, "chain:", 0, (uint64_t)1 << 20, K, keys);
    for (unsigned i = 0; i < K; i++) {
        table_set(m, keys[i], strlen(keys[i]), keys[i], strlen(keys[i]));
        if (i % 50 == 0 || i > 250)
            TCT_EQ_INT(memcheck_tier(m), 0);
    }
    /* Growth at 90% load alone would stop near 500 slots; the chain
     * needed more. */
    TCT_CHECK(m->shards[0].cap >= 4096);
    TCT_EQ_U64(m->shards[0].count, K);
    for (unsigned i = 0; i < K; i++)
        TCT_CHECK(table_has(m, keys[i], strlen(keys[i]), keys[i],
                            strlen(keys[i])));
    for (unsigned i = 0; i < K; i += 3) {
        size_t kl = strlen(keys[i]);
        TCT_EQ_ST(mem_delete(m, mem_hash(m, keys[i], kl), keys[i], kl, NOW, NULL, NULL),
                  TC_OK);
    }
    TCT_EQ_INT(memcheck_tier(m), 0);
    for (unsigned i = 0; i < K; i++)
        TCT_EQ_INT(table_has(m, keys[i], strlen(keys[i]), keys[i],
                             strlen(keys[i])),
                   i % 3 != 0);
    mem_destroy(&m);
}

/* Keys that differ only in bytes the tag or hash might ignore: a prefix
 * of another key, embedded NULs, the same bytes in another length. */
static void similar_keys_distinct(void)
{
    mem *m = table_open(2, tct_seed() + 4);
    static const char k[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char buf[8];
    for (size_t len = 1; len < sizeof(k); len++) {
        snprintf(buf, sizeof(buf), "%zu", len);
        table_set(m, k, len, buf, strlen(buf));
    }
    static const char nul1[4] = {'a', 0, 'b', 0}, nul2[4] = {'a', 0, 'b', 1};
    table_set(m, nul1, 4, "n1", 2);
    table_set(m, nul2, 4, "n2", 2);
    table_set(m, nul1, 3, "n3", 2);
    TCT_EQ_INT(memcheck_tier(m), 0);
    for (size_t len = 1; len < sizeof(k); len++) {
        snprintf(buf, sizeof(buf), "%zu", len);
        TCT_CHECK(table_has(m, k, len, buf, strlen(buf)));
    }
    TCT_CHECK(table_has(m, nul1, 4, "n1", 2));
    TCT_CHECK(table_has(m, nul2, 4, "n2", 2));
    TCT_CHECK(table_has(m, nul1, 3, "n3", 2));
    TCT_CHECK(!table_has(m, nul1, 2, NULL, 0));
    mem_destroy(&m);
}

/* The hash is seeded: the same key hashes differently under two seeds,
 * identically under one. */
static void hash_is_seeded(void)
{
    uint64_t a = hash_key("key", 3, 1), b = hash_key("key", 3, 2);
    TCT_CHECK(a != b);
    TCT_EQ_U64(hash_key("key", 3, 1), a);
    /* Every length up to 250 reads all of its bytes. */
    char k[250];
    memset(k, 'x', sizeof(k));
    for (size_t len = 1; len <= sizeof(k); len++) {
        uint64_t h0 = hash_key(k, len, 7);
        k[len - 1] = 'y';
        TCT_CHECK(hash_key(k, len, 7) != h0);
        k[len - 1] = 'x';
    }
}

static void parse_ok(const char *s, size_t len, uint64_t want)
{
    uint64_t v = 12345;
    if (mem_parse_u64(s, len, &v) != 0 || v != want) {
        printf("# mem_parse_u64(\"%.*s\") -> %" PRIu64 ", want %" PRIu64
               "\n", (int)len, s, v, want);
        TCT_CHECK(!"parses");
    }
}

static void parse_bad(const char *s, size_t len)
{
    uint64_t v = 12345;
    if (mem_parse_u64(s, len, &v) != -1 || v != 12345) {
        printf("# mem_parse_u64(\"%.*s\") accepted\n", (int)len, s);
        TCT_CHECK(!"rejected");
    }
}

#define OK_(lit, want) parse_ok(lit, sizeof(lit) - 1, want)
#define BAD_(lit) parse_bad(lit, sizeof(lit) - 1)

/* mem_parse_u64's documented rules: leading blanks, a sign, digits, then
 * only blanks (CR and LF count as trailing blanks); negative numbers other
 * than zero, and values past 2^64-1, are rejected. */
static void parse_u64_rules(void)
{
    OK_("0", 0);
    OK_("12", 12);
    OK_(" 12", 12);
    OK_("\t12", 12);
    OK_("12 ", 12);
    OK_("12\r\n", 12);
    OK_("+5", 5);
    OK_("-0", 0);
    OK_("  +0  ", 0);
    OK_("0000000000000000000000000042", 42);
    OK_("18446744073709551615", UINT64_MAX);
    OK_("18446744073709551614", UINT64_MAX - 1);
    BAD_("");
    BAD_(" ");
    BAD_("+");
    BAD_("-");
    BAD_("-1");
    BAD_("12abc");
    BAD_("abc");
    BAD_("1 2");
    BAD_("+-1");
    BAD_("0x10");
    BAD_("1.5");
    BAD_("18446744073709551616");
    BAD_("99999999999999999999");
    BAD_("100000000000000000000"); /* 21 digits */
    BAD_("\n12");
    /* An embedded NUL ends nothing: it is a non-blank byte. */
    parse_bad("1\0002", 3);
    /* Length, not NUL termination, bounds the parse. */
    parse_ok("123456", 3, 123);
}

/* mem_new checks its configuration. */
static void mem_new_rejects_bad_config(void)
{
    static const mem_config bad[] = {
        {.limit = 1 << 20, .item_max = 1024, .shards = 0},
        {.limit = 1 << 20, .item_max = 1024, .shards = 3},
        {.limit = 1 << 20, .item_max = 1024, .shards = 512},
        {.limit = 0, .item_max = 1024, .shards = 1},
        {.limit = 1 << 20, .item_max = 0, .shards = 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mem *m = (mem *)1;
        TCT_EQ_ST(mem_new(&bad[i], &m), TC_EINVAL);
    }
    mem_config good = {.limit = 1 << 20, .item_max = 1024, .shards = 256};
    mem *m = NULL;
    TCT_EQ_ST(mem_new(&good, &m), TC_OK);
    TCT_EQ_INT(memcheck_tier(m), 0);
    TCT_EQ_U64(total_cap(m), 256u * 64u);
    mem_destroy(&m);
    mem_destroy(&m); /* NULL: nothing */
}

/* The checker itself catches a wrong distance, a wrong tag, a hole in a
 * chain and a wrong byte count (each planted, checked, then undone). */
static void checker_detects_corruption(void)
{
    mem *m = table_open(1, tct_seed() + 5);
    char key[64];
    for (unsigned n = 0; n < 50; n++) {
        size_t kl = tcu_key(key, "cc:", n);
        table_set(m, key, kl, "v", 1);
    }
    mem_shard *sh = &m->shards[0];
    TCT_EQ_INT(memcheck_tier(m), 0);
    uint32_t at = 0, chained = UINT32_MAX;
    for (uint32_t i = 0; i < sh->cap; i++) {
        if (sh->slots[i] != 0)
            at = i;
        if (sh->slots[i] != 0 && slot_dist(sh->slots[i]) > 0 &&
            chained == UINT32_MAX)
            chained = i;
    }
    TCT_CHECK(chained != UINT32_MAX);
    uint64_t saved = sh->slots[at];

    printf("# expect complaints from the checker:\n");
    sh->slots[at] = saved ^ ((uint64_t)1 << SLOT_DIST_SHIFT);
    TCT_EQ_INT(memcheck_tier(m), -1);
    sh->slots[at] = saved ^ ((uint64_t)1 << SLOT_TAG_SHIFT);
    TCT_EQ_INT(memcheck_tier(m), -1);
    sh->slots[at] = saved;

    /* A hole: the slot before a displaced entry emptied. */
    uint32_t before = chained == 0 ? sh->cap - 1 : chained - 1;
    uint64_t saved_before = sh->slots[before];
    sh->slots[before] = 0;
    sh->count--;
    TCT_EQ_INT(memcheck_tier(m), -1);
    sh->slots[before] = saved_before;
    sh->count++;

    sh->bytes += 8;
    TCT_EQ_INT(memcheck_tier(m), -1);
    sh->bytes -= 8;
    TCT_EQ_INT(memcheck_tier(m), 0);
    mem_destroy(&m);
}

TCT_MAIN(TCT(growth_keeps_keys_findable), TCT(random_ops_keep_invariant),
         TCT(delete_backward_shift), TCT(chain_wraps_around),
         TCT(long_chain_forces_growth), TCT(similar_keys_distinct),
         TCT(hash_is_seeded), TCT(parse_u64_rules),
         TCT(mem_new_rejects_bad_config), TCT(checker_detects_corruption))
