/*
 * test_engine.c - the synchronous public API (include/tiercache.h) and
 * its memcached semantics: statuses, opening, keys, values and flags,
 * add/replace/append/prepend/cas, CAS uniqueness, incr/decr, expiry with a
 * fake clock, touch and gat, delete, immediate and delayed flush, and
 * stats. Every test opens and closes its own engine.
 */
#include <stdlib.h>
#include <string.h>

#include "tcutil.h"

#define SL(s) (s), (sizeof(s) - 1) /* a string literal and its length */

/* Gets key and fills *v; returns the reference (release it). */
static tc_item *get_view(tc_engine *e, const void *key, size_t klen,
                         tc_view *v)
{
    tc_item *it = NULL;
    TCT_EQ_ST(tc_get(e, key, klen, &it), TC_OK);
    TCT_CHECK(it != NULL);
    tc_item_view(it, v);
    TCT_CHECK(v->item == it);
    return it;
}

/* The CAS of key's live item. */
static uint64_t cas_of(tc_engine *e, const char *key)
{
    tc_view v;
    tc_item *it = get_view(e, key, strlen(key), &v);
    uint64_t cas = v.cas;
    tc_item_release(it);
    return cas;
}

/* ---- statuses, version, open ---- */

static void status_names_and_texts(void)
{
    static const struct {
        tc_status st;
        const char *name;
        const char *text;
    } all[] = {
#define X_(name, value, text) {TC_##name, #name, text},
        TC_STATUS_MAP(X_)
#undef X_
    };
    size_t n = sizeof(all) / sizeof(all[0]);
    TCT_EQ_U64(n, 15);
    for (size_t i = 0; i < n; i++) {
        TCT_CHECK(strcmp(tc_status_name(all[i].st), all[i].name) == 0);
        TCT_CHECK(strcmp(tc_strerror(all[i].st), all[i].text) == 0);
        TCT_CHECK(strlen(all[i].text) > 0);
        for (size_t j = 0; j < i; j++) {
            TCT_CHECK(all[i].st != all[j].st);
            TCT_CHECK(strcmp(tc_strerror(all[i].st),
                             tc_strerror(all[j].st)) != 0);
        }
        if (all[i].st == TC_OK)
            TCT_EQ_INT(all[i].st, 0);
        else if (all[i].st == TC_PENDING)
            TCT_CHECK(all[i].st > 0);
        else
            TCT_CHECK(all[i].st < 0);
    }
    TCT_CHECK(strcmp(tc_status_name(TC_ENOTFOUND), "ENOTFOUND") == 0);
    TCT_CHECK(strcmp(tc_strerror(TC_OK), "success") == 0);
    /* Values outside the list still give a string. */
    TCT_CHECK(tc_strerror((tc_status)-99) != NULL);
    TCT_CHECK(strcmp(tc_status_name((tc_status)-99), "UNKNOWN") == 0);
    TCT_CHECK(strcmp(tc_version(), TC_VERSION_STRING) == 0);
}

static void config_defaults(void)
{
    tc_config cfg;
    memset(&cfg, 0xa5, sizeof(cfg));
    tc_config_init(&cfg);
    TCT_EQ_U64(cfg.mem_limit, 64u * 1024 * 1024);
    TCT_EQ_U64(cfg.item_size_max, 1024u * 1024);
    TCT_EQ_U64(cfg.shards, 0);
    TCT_CHECK(cfg.clock == NULL && cfg.clock_arg == NULL);
    TCT_EQ_INT(cfg.debug_defer, 0);

    tc_engine *e = tcu_open_cfg(&cfg);
    TCT_EQ_U64(tcu_stat(e, "limit_maxbytes"), 64u * 1024 * 1024);
    TCT_EQ_U64(tcu_stat(e, "item_size_max"), 1024u * 1024);
    uint64_t shards = tcu_stat(e, "mem_shards");
    TCT_CHECK(shards >= 1 && shards <= 256 && (shards & (shards - 1)) == 0);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);
    tc_close(e);
    tc_close(NULL);
}

static void open_rejects_invalid_config(void)
{
    tc_config base;
    tc_config_init(&base);
    base.mem_limit = 1 << 20;
    base.item_size_max = 1 << 16;

    struct {
        const char *what;
        size_t mem_limit, item_size_max;
        unsigned shards;
    } bad[] = {
        {"mem_limit 0", 0, 1 << 16, 0},
        {"item_size_max 0", 1 << 20, 0, 0},
        {"item_size_max > mem_limit", 1 << 20, (1 << 20) + 1, 0},
        {"shards 3", 1 << 20, 1 << 16, 3},
        {"shards 6", 1 << 20, 1 << 16, 6},
        {"shards 100", 1 << 20, 1 << 16, 100},
        {"shards 257", 1 << 20, 1 << 16, 257},
        {"shards 512", 1 << 20, 1 << 16, 512},
        {"shards 2^31", 1 << 20, 1 << 16, 1u << 31},
        {"shards UINT_MAX", 1 << 20, 1 << 16, ~0u},
        {"item_size_max > 1 GiB", (size_t)4 << 30, ((size_t)1 << 30) + 1, 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_config cfg = base;
        cfg.mem_limit = bad[i].mem_limit;
        cfg.item_size_max = bad[i].item_size_max;
        cfg.shards = bad[i].shards;
        tc_engine *e = (tc_engine *)&cfg; /* must be overwritten */
        tc_status st = tc_open(&cfg, &e);
        if (st != TC_EINVAL)
            printf("# %s\n", bad[i].what);
        TCT_EQ_ST(st, TC_EINVAL);
        TCT_CHECK(e == NULL);
    }
    /* The edges that are allowed. */
    static const unsigned good_shards[] = {1, 2, 128, 256};
    for (size_t i = 0; i < 4; i++) {
        tc_config cfg = base;
        cfg.shards = good_shards[i];
        tc_engine *e = tcu_open_cfg(&cfg);
        TCT_EQ_U64(tcu_stat(e, "mem_shards"), good_shards[i]);
        tcu_set(e, "k", "v");
        tcu_expect(e, "k", "v");
        tc_close(e);
    }
    tc_config cfg = base;
    cfg.item_size_max = cfg.mem_limit;
    tc_engine *e = tcu_open_cfg(&cfg);
    tc_close(e);
}

/* Two engines in one process share nothing. */
static void two_engines_independent(void)
{
    tc_engine *a = tcu_open(NULL), *b = tcu_open(NULL);
    tcu_set(a, "k", "in a");
    tcu_expect_missing(b, "k");
    tcu_set(b, "k", "in b");
    tcu_expect(a, "k", "in a");
    tcu_expect(b, "k", "in b");
    tc_close(a);
    tcu_expect(b, "k", "in b");
    tc_close(b);
}

/* ---- keys, values, flags ---- */

static void set_get_view(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    uint64_t cas = 0;
    TCT_EQ_ST(tc_store(e, TC_SET, SL("hello"), SL("world"), 0xdeadbeefu, 0,
                       0, &cas),
              TC_OK);
    TCT_CHECK(cas != 0);
    tc_view v;
    tc_item *it = get_view(e, SL("hello"), &v);
    TCT_EQ_MEM(v.key, v.key_len, "hello");
    TCT_EQ_MEM(v.value, v.value_len, "world");
    TCT_EQ_U64(v.flags, 0xdeadbeefu);
    TCT_EQ_U64(v.exptime, 0);
    TCT_EQ_U64(v.cas, cas);
    tc_item_release(it);

    /* Every flag bit survives. */
    static const uint32_t flags[] = {0, 1, 0x80000000u, 0xffffffffu,
                                     0x7fffffffu, 12345};
    for (size_t i = 0; i < 6; i++) {
        TCT_EQ_ST(tc_store(e, TC_SET, SL("f"), SL("x"), flags[i], 0, 0, NULL),
                  TC_OK);
        it = get_view(e, SL("f"), &v);
        TCT_EQ_U64(v.flags, flags[i]);
        tc_item_release(it);
    }
    tc_item_release(NULL);
    tc_close(e);
}

static void empty_value(void)
{
    tc_engine *e = tcu_open(NULL);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("empty"), "", 0, 7, 0, 0, NULL), TC_OK);
    tc_view v;
    tc_item *it = get_view(e, SL("empty"), &v);
    TCT_EQ_U64(v.value_len, 0);
    TCT_EQ_U64(v.flags, 7);
    TCT_CHECK(v.value != NULL);
    tc_item_release(it);
    /* Appending nothing to nothing, then something. */
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("empty"), "", 0, 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("empty"), SL("x"), 0, 0, 0, NULL),
              TC_OK);
    tcu_expect(e, "empty", "x");
    /* An empty value is not a number. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("n"), "", 0, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_incr(e, SL("n"), 1, NULL), TC_ENONNUMERIC);
    tc_close(e);
}

/* An embedder storing an empty value may pass NULL with length 0. */
static void empty_value_null_pointer(void)
{
    tc_engine *e = tcu_open(NULL);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), NULL, 0, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("k"), NULL, 0, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_PREPEND, SL("k"), NULL, 0, 0, 0, 0, NULL),
              TC_OK);
    tcu_expect(e, "k", "");
    tc_close(e);
}

static void binary_keys_and_values(void)
{
    tc_engine *e = tcu_open(NULL);
    static const char k1[] = {'a', '\0', 'b'};
    static const char k2[] = {'a', '\0', 'c'};
    static const char k3[] = {'\r', '\n', ' ', '\0'};
    static const char val[] = {'x', '\0', '\r', '\n', 'y', '\xff', '\0'};
    unsigned char all[256];
    for (unsigned i = 0; i < 256; i++)
        all[i] = (unsigned char)i;

    TCT_EQ_ST(tc_store(e, TC_SET, k1, 3, val, sizeof(val), 1, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, k2, 3, "two", 3, 2, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, k3, 4, all, 256, 3, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, k1, 1, "one byte", 8, 4, 0, 0, NULL),
              TC_OK);
    /* A key of every byte value but NUL... and with it. */
    TCT_EQ_ST(tc_store(e, TC_SET, all + 1, 250, "all", 3, 5, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, all, 250, "all0", 4, 6, 0, 0, NULL), TC_OK);

    tc_view v;
    tc_item *it = get_view(e, k1, 3, &v);
    TCT_EQ_U64(v.key_len, 3);
    TCT_CHECK(memcmp(v.key, k1, 3) == 0);
    TCT_EQ_U64(v.value_len, sizeof(val));
    TCT_CHECK(memcmp(v.value, val, sizeof(val)) == 0);
    TCT_EQ_U64(v.flags, 1);
    tc_item_release(it);
    it = get_view(e, k2, 3, &v);
    TCT_EQ_MEM(v.value, v.value_len, "two");
    tc_item_release(it);
    it = get_view(e, k3, 4, &v);
    TCT_EQ_U64(v.value_len, 256);
    TCT_CHECK(memcmp(v.value, all, 256) == 0);
    tc_item_release(it);
    it = get_view(e, k1, 1, &v);
    TCT_EQ_MEM(v.value, v.value_len, "one byte");
    tc_item_release(it);
    it = get_view(e, all + 1, 250, &v);
    TCT_EQ_MEM(v.value, v.value_len, "all");
    TCT_EQ_U64(v.key_len, 250);
    TCT_CHECK(memcmp(v.key, all + 1, 250) == 0);
    tc_item_release(it);
    it = get_view(e, all, 250, &v);
    TCT_EQ_MEM(v.value, v.value_len, "all0");
    tc_item_release(it);
    /* The key with its NUL cut off is another key. */
    it = (tc_item *)1;
    TCT_EQ_ST(tc_get(e, k3, 3, &it), TC_ENOTFOUND);
    TCT_CHECK(it == NULL);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 6);
    tc_close(e);
}

static void key_length_limits(void)
{
    tc_engine *e = tcu_open(NULL);
    char key[TC_KEY_MAX + 2];
    memset(key, 'k', sizeof(key));
    tc_item *it = (tc_item *)1;
    uint64_t n = 77;

    /* 250 works with every call. */
    TCT_EQ_ST(tc_store(e, TC_SET, key, 250, SL("5"), 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_get(e, key, 250, &it), TC_OK);
    tc_item_release(it);
    TCT_EQ_ST(tc_gat(e, key, 250, 0, &it), TC_OK);
    tc_item_release(it);
    TCT_EQ_ST(tc_incr(e, key, 250, 1, &n), TC_OK);
    TCT_EQ_U64(n, 6);
    TCT_EQ_ST(tc_decr(e, key, 250, 2, &n), TC_OK);
    TCT_EQ_U64(n, 4);
    TCT_EQ_ST(tc_touch(e, key, 250, 100), TC_OK);
    TCT_EQ_ST(tc_delete(e, key, 250), TC_OK);

    /* 0 and 251 fail with TC_EKEY before anything else. */
    static const size_t badlen[] = {0, TC_KEY_MAX + 1};
    for (size_t i = 0; i < 2; i++) {
        size_t kl = badlen[i];
        for (int mode = TC_SET; mode <= TC_CAS; mode++)
            TCT_EQ_ST(tc_store(e, (tc_store_mode)mode, key, kl, SL("v"), 0,
                               0, 1, NULL),
                      TC_EKEY);
        it = (tc_item *)1;
        TCT_EQ_ST(tc_get(e, key, kl, &it), TC_EKEY);
        TCT_CHECK(it == NULL);
        it = (tc_item *)1;
        TCT_EQ_ST(tc_gat(e, key, kl, 0, &it), TC_EKEY);
        TCT_CHECK(it == NULL);
        TCT_EQ_ST(tc_incr(e, key, kl, 1, &n), TC_EKEY);
        TCT_EQ_ST(tc_decr(e, key, kl, 1, &n), TC_EKEY);
        TCT_EQ_ST(tc_touch(e, key, kl, 0), TC_EKEY);
        TCT_EQ_ST(tc_delete(e, key, kl), TC_EKEY);
    }
    /* A key with its 251st byte cut is the 250-byte key, distinct from
     * the 249-byte one. */
    TCT_EQ_ST(tc_store(e, TC_SET, key, 249, SL("249"), 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, key, 250, SL("250"), 0, 0, 0, NULL),
              TC_OK);
    tc_view v;
    it = get_view(e, key, 249, &v);
    TCT_EQ_MEM(v.value, v.value_len, "249");
    tc_item_release(it);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 2);
    tc_close(e);
}

static void store_bad_mode(void)
{
    tc_engine *e = tcu_open(NULL);
    TCT_EQ_ST(tc_store(e, (tc_store_mode)(TC_CAS + 1), SL("k"), SL("v"), 0,
                       0, 0, NULL),
              TC_EINVAL);
    TCT_EQ_ST(tc_store(e, (tc_store_mode)-1, SL("k"), SL("v"), 0, 0, 0,
                       NULL),
              TC_EINVAL);
    tcu_expect_missing(e, "k");
    tc_close(e);
}

static void item_size_limit(void)
{
    tc_config cfg;
    tcu_config(&cfg, NULL);
    cfg.mem_limit = 1 << 20;
    cfg.item_size_max = 1000;
    tc_engine *e = tcu_open_cfg(&cfg);
    char *big = malloc(2001);
    TCT_CHECK(big != NULL);
    memset(big, 'b', 2001);

    TCT_EQ_ST(tc_store(e, TC_SET, SL("max"), big, 1000, 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("over"), big, 1001, 0, 0, 0, NULL),
              TC_E2BIG);
    tcu_expect_missing(e, "over");
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("over"), big, 2001, 0, 0, 0, NULL),
              TC_E2BIG);
    TCT_EQ_ST(tc_store(e, TC_REPLACE, SL("max"), big, 1001, 0, 0, 0, NULL),
              TC_E2BIG);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("max"), big, 1001, 0, 0, cas_of(e, "max"),
                       NULL),
              TC_E2BIG);

    /* Growing past the limit by append or prepend fails and leaves the
     * item as it was. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("grow"), big, 600, 9, 0, 0, NULL),
              TC_OK);
    uint64_t cas = cas_of(e, "grow");
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("grow"), big, 401, 0, 0, 0, NULL),
              TC_E2BIG);
    TCT_EQ_ST(tc_store(e, TC_PREPEND, SL("grow"), big, 401, 0, 0, 0, NULL),
              TC_E2BIG);
    tc_view v;
    tc_item *it = get_view(e, SL("grow"), &v);
    TCT_EQ_U64(v.value_len, 600);
    TCT_EQ_U64(v.cas, cas);
    tc_item_release(it);
    /* Exactly to the limit is fine. */
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("grow"), big, 400, 0, 0, 0, NULL),
              TC_OK);
    it = get_view(e, SL("grow"), &v);
    TCT_EQ_U64(v.value_len, 1000);
    TCT_EQ_U64(v.flags, 9);
    tc_item_release(it);
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("grow"), big, 1, 0, 0, 0, NULL),
              TC_E2BIG);
    free(big);
    tc_close(e);
}

/* With the default 1 MiB limit, a 1 MiB value is stored and read back
 * intact (larger than a slab chunk: it comes from malloc). */
static void large_values(void)
{
    tc_engine *e = tcu_open(NULL);
    size_t n = 1024 * 1024;
    unsigned char *big = malloc(n + 1);
    TCT_CHECK(big != NULL);
    for (size_t i = 0; i <= n; i++)
        big[i] = (unsigned char)(i * 131 + 7);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("big"), big, n, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("big2"), big, n + 1, 0, 0, 0, NULL),
              TC_E2BIG);
    tc_view v;
    tc_item *it = get_view(e, SL("big"), &v);
    TCT_EQ_U64(v.value_len, n);
    TCT_CHECK(memcmp(v.value, big, n) == 0);
    tc_item_release(it);
    /* Sizes around the slab chunk limit (16 KiB) and class edges. */
    static const size_t sizes[] = {1000, 1024, 1025, 16383, 16384, 16385,
                                   16500, 65536, 100000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char key[64];
        size_t kl = tcu_key(key, "size:", sizes[i]);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, big + i, sizes[i], 0, 0, 0,
                           NULL),
                  TC_OK);
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char key[64];
        size_t kl = tcu_key(key, "size:", sizes[i]);
        it = get_view(e, key, kl, &v);
        TCT_EQ_U64(v.value_len, sizes[i]);
        TCT_CHECK(memcmp(v.value, big + i, sizes[i]) == 0);
        tc_item_release(it);
    }
    free(big);
    tc_close(e);
}

/* ---- storage modes ---- */

static void add_and_replace(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);

    TCT_EQ_ST(tc_store(e, TC_REPLACE, SL("k"), SL("r0"), 0, 0, 0, NULL),
              TC_ENOTSTORED);
    tcu_expect_missing(e, "k");
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("k"), SL("a1"), 1, 0, 0, NULL), TC_OK);
    tcu_expect(e, "k", "a1");
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("k"), SL("a2"), 2, 0, 0, NULL),
              TC_ENOTSTORED);
    tcu_expect(e, "k", "a1");
    TCT_EQ_ST(tc_store(e, TC_REPLACE, SL("k"), SL("r1"), 3, 0, 0, NULL),
              TC_OK);
    tc_view v;
    tc_item *it = get_view(e, SL("k"), &v);
    TCT_EQ_MEM(v.value, v.value_len, "r1");
    TCT_EQ_U64(v.flags, 3);
    tc_item_release(it);

    /* An expired item counts as absent for both. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("x"), SL("old"), 0, 10, 0, NULL), TC_OK);
    tcu_clock_add(&clk, 10);
    TCT_EQ_ST(tc_store(e, TC_REPLACE, SL("x"), SL("r"), 0, 0, 0, NULL),
              TC_ENOTSTORED);
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("x"), SL("new"), 0, 0, 0, NULL), TC_OK);
    tcu_expect(e, "x", "new");

    /* And a deleted one. */
    TCT_EQ_ST(tc_delete(e, SL("x")), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_REPLACE, SL("x"), SL("r"), 0, 0, 0, NULL),
              TC_ENOTSTORED);
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("x"), SL("again"), 0, 0, 0, NULL),
              TC_OK);
    tcu_expect(e, "x", "again");
    tc_close(e);
}

static void append_prepend_keep_flags_and_exptime(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);

    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("k"), SL("x"), 0, 0, 0, NULL),
              TC_ENOTSTORED);
    TCT_EQ_ST(tc_store(e, TC_PREPEND, SL("k"), SL("x"), 0, 0, 0, NULL),
              TC_ENOTSTORED);
    tcu_expect_missing(e, "k");

    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("mid"), 0xabcd1234u, 100, 0,
                       NULL),
              TC_OK);
    uint64_t c0 = cas_of(e, "k"), c1 = 0, c2 = 0;
    /* The flags and exptime given are ignored. */
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("k"), SL("-end"), 7, 5, 0, &c1),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_PREPEND, SL("k"), SL("start-"), 8, -1, 0, &c2),
              TC_OK);
    tc_view v;
    tc_item *it = get_view(e, SL("k"), &v);
    TCT_EQ_MEM(v.value, v.value_len, "start-mid-end");
    TCT_EQ_U64(v.flags, 0xabcd1234u);
    TCT_EQ_INT(v.exptime, TCU_T0 + 100);
    TCT_EQ_U64(v.cas, c2);
    tc_item_release(it);
    TCT_CHECK(c0 != c1 && c1 != c2 && c0 != c2);

    /* The original expiry still applies. */
    tcu_clock_add(&clk, 99);
    tcu_expect(e, "k", "start-mid-end");
    tcu_clock_add(&clk, 1);
    tcu_expect_missing(e, "k");
    /* Appending to an expired item: not stored. */
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("k"), SL("x"), 0, 0, 0, NULL),
              TC_ENOTSTORED);

    /* Binary data on both sides. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("b"), "\0\r", 2, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("b"), "\n\0", 2, 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_PREPEND, SL("b"), "\xff", 1, 0, 0, 0, NULL),
              TC_OK);
    it = get_view(e, SL("b"), &v);
    TCT_EQ_U64(v.value_len, 5);
    TCT_CHECK(memcmp(v.value, "\xff\0\r\n\0", 5) == 0);
    tc_item_release(it);
    tc_close(e);
}

static void cas_semantics(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    uint64_t c1 = 0, c2 = 0, out = 0;

    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("v"), 0, 0, 1, NULL),
              TC_ENOTFOUND);
    tcu_expect_missing(e, "k");
    TCT_EQ_U64(tcu_stat(e, "cas_misses"), 1);

    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("v1"), 1, 0, 0, &c1), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("bad"), 2, 0, c1 + 1, &out),
              TC_EEXISTS);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("bad"), 2, 0, 0, &out),
              TC_EEXISTS);
    tcu_expect(e, "k", "v1");
    TCT_EQ_U64(cas_of(e, "k"), c1);
    TCT_EQ_U64(tcu_stat(e, "cas_badval"), 2);

    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("v2"), 5, 0, c1, &c2), TC_OK);
    TCT_CHECK(c2 != c1);
    tc_view v;
    tc_item *it = get_view(e, SL("k"), &v);
    TCT_EQ_MEM(v.value, v.value_len, "v2");
    TCT_EQ_U64(v.flags, 5);
    TCT_EQ_U64(v.cas, c2);
    tc_item_release(it);
    TCT_EQ_U64(tcu_stat(e, "cas_hits"), 1);
    /* The old CAS is now stale. */
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("v3"), 0, 0, c1, NULL),
              TC_EEXISTS);

    /* Any modification in between makes the CAS stale. */
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("k"), SL("+"), 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("v3"), 0, 0, c2, NULL),
              TC_EEXISTS);

    /* Deleted or expired: not found. */
    uint64_t c3 = cas_of(e, "k");
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("k"), SL("v"), 0, 0, c3, NULL),
              TC_ENOTFOUND);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("t"), SL("v"), 0, 5, 0, &c1), TC_OK);
    tcu_clock_add(&clk, 5);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("t"), SL("v"), 0, 0, c1, NULL),
              TC_ENOTFOUND);
    tcu_expect_missing(e, "t");
    TCT_EQ_U64(tcu_stat(e, "cas_misses"), 3);
    tc_close(e);
}

/* Every modification gives a CAS no item had before, over many keys (so
 * many shards): stores of all modes, incr, decr, append, prepend. Touch
 * and gat change no CAS. */
static void cas_unique_per_modification(void)
{
    tc_engine *e = tcu_open(NULL);
    enum { KEYS = 3000, MODS = 7 };
    uint64_t *seen = malloc(KEYS * MODS * sizeof(*seen));
    TCT_CHECK(seen != NULL);
    size_t n = 0;
    char key[64];

    for (unsigned i = 0; i < KEYS; i++) {
        size_t kl = tcu_key(key, "cas:", i);
        uint64_t c = 0, prev;
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, SL("1"), 0, 0, 0, &c), TC_OK);
        seen[n++] = c;
        TCT_EQ_ST(tc_incr(e, key, kl, 5, NULL), TC_OK);
        prev = c;
        c = cas_of(e, key);
        TCT_CHECK(c != prev);
        seen[n++] = c;
        TCT_EQ_ST(tc_decr(e, key, kl, 1, NULL), TC_OK);
        seen[n++] = cas_of(e, key);
        TCT_EQ_ST(tc_store(e, TC_APPEND, key, kl, SL("0"), 0, 0, 0, &c),
                  TC_OK);
        TCT_EQ_U64(c, cas_of(e, key));
        seen[n++] = c;
        TCT_EQ_ST(tc_store(e, TC_PREPEND, key, kl, SL("1"), 0, 0, 0, &c),
                  TC_OK);
        seen[n++] = c;
        TCT_EQ_ST(tc_store(e, TC_REPLACE, key, kl, SL("r"), 0, 0, 0, &c),
                  TC_OK);
        seen[n++] = c;
        prev = c;
        TCT_EQ_ST(tc_store(e, TC_CAS, key, kl, SL("c"), 0, 0, prev, &c),
                  TC_OK);
        seen[n++] = c;
        /* touch and gat keep it. */
        TCT_EQ_ST(tc_touch(e, key, kl, 1000), TC_OK);
        TCT_EQ_U64(cas_of(e, key), c);
        tc_item *it = NULL;
        TCT_EQ_ST(tc_gat(e, key, kl, 2000, &it), TC_OK);
        tc_view v;
        tc_item_view(it, &v);
        TCT_EQ_U64(v.cas, c);
        tc_item_release(it);
        /* Values went 1 -> 6 -> 5 -> 50 -> 150 -> r -> c. */
        if (i == 0)
            tcu_expect(e, key, "c");
    }
    TCT_EQ_U64(n, KEYS * MODS);
    for (size_t i = 0; i < n; i++)
        TCT_CHECK(seen[i] != 0);
    /* Sort and look for duplicates. */
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && seen[j - gap] > seen[j]; j -= gap) {
                uint64_t t = seen[j];
                seen[j] = seen[j - gap];
                seen[j - gap] = t;
            }
    for (size_t i = 1; i < n; i++)
        if (seen[i] == seen[i - 1]) {
            printf("# CAS %" PRIu64 " handed out twice\n", seen[i]);
            TCT_CHECK(!"unique CAS");
        }
    free(seen);
    tc_close(e);
}

/* ---- incr / decr ---- */

static void set_str(tc_engine *e, const char *key, const char *v,
                    size_t vlen)
{
    TCT_EQ_ST(tc_store(e, TC_SET, key, strlen(key), v, vlen, 0, 0, 0, NULL),
              TC_OK);
}

static void incr_decr_basic(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    uint64_t r = 99;

    TCT_EQ_ST(tc_incr(e, SL("n"), 1, &r), TC_ENOTFOUND);
    TCT_EQ_ST(tc_decr(e, SL("n"), 1, &r), TC_ENOTFOUND);
    TCT_EQ_U64(r, 99);
    tcu_expect_missing(e, "n");

    TCT_EQ_ST(tc_store(e, TC_SET, SL("n"), SL("10"), 0x55u, 500, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_incr(e, SL("n"), 5, &r), TC_OK);
    TCT_EQ_U64(r, 15);
    tcu_expect(e, "n", "15");
    TCT_EQ_ST(tc_incr(e, SL("n"), 0, &r), TC_OK);
    TCT_EQ_U64(r, 15);
    TCT_EQ_ST(tc_decr(e, SL("n"), 6, &r), TC_OK);
    TCT_EQ_U64(r, 9);
    tcu_expect(e, "n", "9");
    TCT_EQ_ST(tc_incr(e, SL("n"), 991, NULL), TC_OK);
    tcu_expect(e, "n", "1000");
    TCT_EQ_ST(tc_decr(e, SL("n"), 1, &r), TC_OK);
    TCT_EQ_U64(r, 999);
    /* A shorter number: no padding, the value is the digits. */
    tcu_expect(e, "n", "999");

    /* Flags and expiry are kept. */
    tc_view v;
    tc_item *it = get_view(e, SL("n"), &v);
    TCT_EQ_U64(v.flags, 0x55u);
    TCT_EQ_INT(v.exptime, TCU_T0 + 500);
    tc_item_release(it);
    tcu_clock_add(&clk, 500);
    TCT_EQ_ST(tc_incr(e, SL("n"), 1, &r), TC_ENOTFOUND);
    tc_close(e);
}

static void incr_wraps_decr_floors(void)
{
    tc_engine *e = tcu_open(NULL);
    uint64_t r = 0;

    set_str(e, "n", SL("18446744073709551615"));
    TCT_EQ_ST(tc_incr(e, SL("n"), 1, &r), TC_OK);
    TCT_EQ_U64(r, 0);
    tcu_expect(e, "n", "0");
    set_str(e, "n", SL("18446744073709551610"));
    TCT_EQ_ST(tc_incr(e, SL("n"), 10, &r), TC_OK);
    TCT_EQ_U64(r, 4);
    TCT_EQ_ST(tc_incr(e, SL("n"), UINT64_MAX, &r), TC_OK);
    TCT_EQ_U64(r, 3);
    TCT_EQ_ST(tc_incr(e, SL("n"), UINT64_MAX - 3, &r), TC_OK);
    TCT_EQ_U64(r, UINT64_MAX);
    tcu_expect(e, "n", "18446744073709551615");

    set_str(e, "d", SL("5"));
    TCT_EQ_ST(tc_decr(e, SL("d"), 5, &r), TC_OK);
    TCT_EQ_U64(r, 0);
    TCT_EQ_ST(tc_decr(e, SL("d"), 1, &r), TC_OK);
    TCT_EQ_U64(r, 0);
    tcu_expect(e, "d", "0");
    set_str(e, "d", SL("7"));
    TCT_EQ_ST(tc_decr(e, SL("d"), UINT64_MAX, &r), TC_OK);
    TCT_EQ_U64(r, 0);
    set_str(e, "d", SL("18446744073709551615"));
    TCT_EQ_ST(tc_decr(e, SL("d"), UINT64_MAX, &r), TC_OK);
    TCT_EQ_U64(r, 0);
    tc_close(e);
}

/* The operand follows mem_parse_u64's rules; the result is stored as
 * plain digits. */
static void incr_operand_forms(void)
{
    tc_engine *e = tcu_open(NULL);
    static const struct {
        const char *v;
        uint64_t want; /* after incr 1 */
    } good[] = {
        {" 12", 13}, {"12 ", 13}, {"+5", 6}, {"-0", 1}, {"0", 1},
        {"\t7\t", 8}, {"007", 8}, {"41\r\n", 42},
        {"18446744073709551614", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t r = 0;
        set_str(e, "n", good[i].v, strlen(good[i].v));
        tc_status st = tc_incr(e, SL("n"), 1, &r);
        if (st != TC_OK || r != good[i].want)
            printf("# value \"%s\"\n", good[i].v);
        TCT_EQ_ST(st, TC_OK);
        TCT_EQ_U64(r, good[i].want);
        char digits[32];
        snprintf(digits, sizeof(digits), "%" PRIu64, good[i].want);
        tcu_expect(e, "n", digits);
    }
    static const char *bad[] = {"-1", "12abc", "", "abc", " ", "1 2", "+",
                                "-", "0x1", "1.0", "100000000000000000000",
                                "18446744073709551616", "-18446744073709551615"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t r = 4242;
        set_str(e, "n", bad[i], strlen(bad[i]));
        uint64_t cas = cas_of(e, "n");
        tc_status st = tc_incr(e, SL("n"), 1, &r);
        if (st != TC_ENONNUMERIC)
            printf("# value \"%s\"\n", bad[i]);
        TCT_EQ_ST(st, TC_ENONNUMERIC);
        TCT_EQ_ST(tc_decr(e, SL("n"), 1, &r), TC_ENONNUMERIC);
        TCT_EQ_U64(r, 4242);
        /* Untouched. */
        tcu_expect(e, "n", bad[i]);
        TCT_EQ_U64(cas_of(e, "n"), cas);
    }
    /* Binary junk after digits. */
    set_str(e, "n", "12\0", 3);
    TCT_EQ_ST(tc_incr(e, SL("n"), 1, NULL), TC_ENONNUMERIC);
    tc_close(e);
}

/* ---- expiry ---- */

static void expiry_forms(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    const int64_t t0 = TCU_T0;
    tc_view v;
    tc_item *it;

    TCT_EQ_ST(tc_store(e, TC_SET, SL("never"), SL("v"), 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("rel10"), SL("v"), 0, 10, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("rel30d"), SL("v"), 0, 2592000, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("abs"), SL("v"), 0, t0 + 20, 0, NULL),
              TC_OK);
    /* Just past 30 days: an absolute time in 1970, already expired. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("abs1970"), SL("v"), 0, 2592001, 0,
                       NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("neg"), SL("v"), 0, -1, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("negbig"), SL("v"), 0, INT64_MIN, 0,
                       NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("past"), SL("v"), 0, t0 - 1, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("now"), SL("v"), 0, t0, 0, NULL), TC_OK);

    it = get_view(e, SL("rel10"), &v);
    TCT_EQ_INT(v.exptime, t0 + 10);
    tc_item_release(it);
    it = get_view(e, SL("rel30d"), &v);
    TCT_EQ_INT(v.exptime, t0 + 2592000);
    tc_item_release(it);
    it = get_view(e, SL("abs"), &v);
    TCT_EQ_INT(v.exptime, t0 + 20);
    tc_item_release(it);

    tcu_expect_missing(e, "abs1970");
    tcu_expect_missing(e, "neg");
    tcu_expect_missing(e, "negbig");
    tcu_expect_missing(e, "past");
    tcu_expect_missing(e, "now");
    TCT_EQ_U64(tcu_stat(e, "get_expired"), 5);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 4);

    tcu_clock_set(&clk, t0 + 9);
    tcu_expect(e, "rel10", "v");
    tcu_clock_set(&clk, t0 + 10);
    tcu_expect_missing(e, "rel10");
    tcu_clock_set(&clk, t0 + 19);
    tcu_expect(e, "abs", "v");
    tcu_clock_set(&clk, t0 + 20);
    tcu_expect_missing(e, "abs");
    tcu_clock_set(&clk, t0 + 2592000 - 1);
    tcu_expect(e, "rel30d", "v");
    tcu_clock_set(&clk, t0 + 2592000);
    tcu_expect_missing(e, "rel30d");
    /* Ten years on. */
    tcu_clock_set(&clk, t0 + INT64_C(10) * 365 * 86400);
    tcu_expect(e, "never", "v");
    TCT_EQ_U64(tcu_stat(e, "get_expired"), 8);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 1);
    tc_close(e);
}

/* Relative times count from the clock at the time of the call. */
static void expiry_relative_to_now(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    tcu_clock_add(&clk, 1000);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("v"), 0, 60, 0, NULL), TC_OK);
    tc_view v;
    tc_item *it = get_view(e, SL("k"), &v);
    TCT_EQ_INT(v.exptime, TCU_T0 + 1060);
    tc_item_release(it);
    tcu_clock_add(&clk, 59);
    tcu_expect(e, "k", "v");
    tcu_clock_add(&clk, 1);
    tcu_expect_missing(e, "k");
    /* An expired item is gone for every call. */
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_ENOTFOUND);
    TCT_EQ_ST(tc_touch(e, SL("k"), 0), TC_ENOTFOUND);
    TCT_EQ_ST(tc_incr(e, SL("k"), 1, NULL), TC_ENOTFOUND);
    tc_close(e);
}

static void touch_and_gat(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    const int64_t t0 = TCU_T0;
    tc_item *it = (tc_item *)1;
    tc_view v;

    TCT_EQ_ST(tc_touch(e, SL("k"), 10), TC_ENOTFOUND);
    TCT_EQ_ST(tc_gat(e, SL("k"), 10, &it), TC_ENOTFOUND);
    TCT_CHECK(it == NULL);

    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("v"), 3, 10, 0, NULL), TC_OK);
    uint64_t cas = cas_of(e, "k");
    TCT_EQ_ST(tc_touch(e, SL("k"), 100), TC_OK);
    it = get_view(e, SL("k"), &v);
    TCT_EQ_INT(v.exptime, t0 + 100);
    TCT_EQ_U64(v.cas, cas);
    TCT_EQ_U64(v.flags, 3);
    tc_item_release(it);
    tcu_clock_set(&clk, t0 + 50);
    tcu_expect(e, "k", "v");

    /* gat returns the item with its new expiry. */
    TCT_EQ_ST(tc_gat(e, SL("k"), 30, &it), TC_OK);
    tc_item_view(it, &v);
    TCT_EQ_MEM(v.value, v.value_len, "v");
    TCT_EQ_INT(v.exptime, t0 + 80);
    tc_item_release(it);
    tcu_clock_set(&clk, t0 + 79);
    tcu_expect(e, "k", "v");
    tcu_clock_set(&clk, t0 + 80);
    tcu_expect_missing(e, "k");

    /* touch 0: never expires; negative: expires now. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("v"), 0, 5, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_touch(e, SL("k"), 0), TC_OK);
    tcu_clock_add(&clk, 100000);
    tcu_expect(e, "k", "v");
    TCT_EQ_ST(tc_touch(e, SL("k"), -1), TC_OK);
    tcu_expect_missing(e, "k");

    /* gat with a negative time returns the item, which then expires. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("n"), SL("v"), 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_gat(e, SL("n"), -1, &it), TC_OK);
    tc_item_view(it, &v);
    TCT_EQ_MEM(v.value, v.value_len, "v");
    tc_item_release(it);
    tcu_expect_missing(e, "n");

    /* gat 0 clears an expiry; gat with an absolute time sets it. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("g"), SL("v"), 0, 5, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_gat(e, SL("g"), 0, &it), TC_OK);
    tc_item_view(it, &v);
    TCT_EQ_INT(v.exptime, 0);
    tc_item_release(it);
    int64_t now = tcu_clock_fn(&clk);
    TCT_EQ_ST(tc_gat(e, SL("g"), now + 3000000, &it), TC_OK);
    tc_item_view(it, &v);
    TCT_EQ_INT(v.exptime, now + 3000000);
    tc_item_release(it);
    tc_close(e);
}

/* A view taken before a touch still reads the item; the expiry shown is
 * the item's current one (it is the one field that changes in place). */
static void touch_while_referenced(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("v"), 0, 10, 0, NULL), TC_OK);
    tc_view v;
    tc_item *it = get_view(e, SL("k"), &v);
    TCT_EQ_ST(tc_touch(e, SL("k"), 500), TC_OK);
    tc_view v2;
    tc_item_view(it, &v2);
    TCT_EQ_INT(v2.exptime, TCU_T0 + 500);
    TCT_EQ_MEM(v2.value, v2.value_len, "v");
    tc_item_release(it);
    tc_close(e);
}

/* ---- delete and flush ---- */

static void delete_semantics(void)
{
    tc_engine *e = tcu_open(NULL);
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_ENOTFOUND);
    tcu_set(e, "k", "v");
    tcu_set(e, "other", "o");
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_OK);
    tcu_expect_missing(e, "k");
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_ENOTFOUND);
    tcu_expect(e, "other", "o");
    tcu_set(e, "k", "again");
    tcu_expect(e, "k", "again");
    TCT_EQ_U64(tcu_stat(e, "delete_hits"), 1);
    TCT_EQ_U64(tcu_stat(e, "delete_misses"), 2);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 2);
    tc_close(e);
}

static void flush_now(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    char key[64];
    for (unsigned i = 0; i < 1000; i++) {
        size_t kl = tcu_key(key, "f:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, SL("v"), 0, 0, 0, NULL),
                  TC_OK);
    }
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 1000);
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);
    for (unsigned i = 0; i < 1000; i++) {
        size_t kl = tcu_key(key, "f:", i);
        tc_item *it = NULL;
        TCT_EQ_ST(tc_get(e, key, kl, &it), TC_ENOTFOUND);
    }
    /* Storing works after a flush, and a negative delay is "now". */
    tcu_set(e, "after", "a");
    tcu_expect(e, "after", "a");
    TCT_EQ_ST(tc_flush(e, -5), TC_OK);
    tcu_expect_missing(e, "after");
    /* Flushing an empty engine is fine, twice. */
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    tcu_set(e, "k", "v");
    tcu_expect(e, "k", "v");
    tc_close(e);
}

static void flush_delayed(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    const int64_t t0 = TCU_T0;

    tcu_set(e, "a", "1");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    tcu_expect(e, "a", "1");
    tcu_clock_set(&clk, t0 + 5);
    tcu_set(e, "b", "2"); /* before the due time: flushed too */
    tcu_clock_set(&clk, t0 + 9);
    tcu_expect(e, "a", "1");
    tcu_expect(e, "b", "2");
    tcu_clock_set(&clk, t0 + 10);
    tcu_expect_missing(e, "a");
    tcu_expect_missing(e, "b");
    tcu_set(e, "c", "3"); /* after: survives */
    tcu_clock_set(&clk, t0 + 1000);
    tcu_expect(e, "c", "3");
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 1);
    tc_close(e);
}

/* The clock passes the due time while the engine is idle: the first call
 * after, of any kind, sees the flush done. */
static void flush_delayed_seen_by_every_call(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    const int64_t t0 = TCU_T0;

    tcu_set(e, "a", "1");
    tcu_set(e, "n", "5");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    tcu_clock_set(&clk, t0 + 11);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);

    tcu_clock_set(&clk, t0);
    tcu_set(e, "a", "1");
    tcu_set(e, "n", "5");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    tcu_clock_set(&clk, t0 + 10);
    TCT_EQ_ST(tc_incr(e, SL("n"), 1, NULL), TC_ENOTFOUND);
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("a"), SL("new"), 0, 0, 0, NULL), TC_OK);
    tcu_expect(e, "a", "new");

    tcu_set(e, "d", "1");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    tcu_clock_add(&clk, 10);
    TCT_EQ_ST(tc_delete(e, SL("d")), TC_ENOTFOUND);
    tcu_set(e, "t", "1");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    tcu_clock_add(&clk, 10);
    TCT_EQ_ST(tc_touch(e, SL("t"), 0), TC_ENOTFOUND);
    tc_close(e);
}

static void flush_later_replaces_pending(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    const int64_t t0 = TCU_T0;

    /* A later, longer delay replaces the pending one. */
    tcu_set(e, "a", "1");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    TCT_EQ_ST(tc_flush(e, 100), TC_OK);
    tcu_clock_set(&clk, t0 + 50);
    tcu_expect(e, "a", "1");
    tcu_clock_set(&clk, t0 + 100);
    tcu_expect_missing(e, "a");

    /* A shorter one too. */
    tcu_set(e, "b", "2");
    TCT_EQ_ST(tc_flush(e, 100), TC_OK);
    TCT_EQ_ST(tc_flush(e, 20), TC_OK);
    tcu_clock_set(&clk, t0 + 120);
    tcu_expect_missing(e, "b");

    /* An immediate flush replaces a pending one: items stored after it
     * survive the old due time. */
    tcu_set(e, "c", "3");
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    tcu_expect_missing(e, "c");
    tcu_set(e, "d", "4");
    tcu_clock_set(&clk, t0 + 1000);
    tcu_expect(e, "d", "4");

    /* An absolute due time works like a relative one. */
    int64_t now = t0 + 1000;
    TCT_EQ_ST(tc_flush(e, now + 2592000 + 5), TC_OK);
    tcu_clock_set(&clk, now + 2592000 + 4);
    tcu_expect(e, "d", "4");
    tcu_clock_set(&clk, now + 2592000 + 5);
    tcu_expect_missing(e, "d");

    /* An absolute time in the past flushes at once. */
    tcu_set(e, "e", "5");
    TCT_EQ_ST(tc_flush(e, t0), TC_OK);
    tcu_expect_missing(e, "e");
    tc_close(e);
}

/* ---- stats ---- */

typedef struct stat_list {
    char names[64][32];
    char values[64][32];
    unsigned n;
    int overflow;
} stat_list;

static void stat_collect(void *arg, const char *name, const char *value)
{
    stat_list *l = arg;
    if (l->n == 64 || strlen(name) >= 32 || strlen(value) >= 32) {
        l->overflow = 1;
        return;
    }
    strcpy(l->names[l->n], name);
    strcpy(l->values[l->n], value);
    l->n++;
}

static void stats_names(void)
{
    tc_engine *e = tcu_open(NULL);
    stat_list a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    TCT_EQ_ST(tc_stats(e, stat_collect, &a), TC_OK);
    tcu_set(e, "k", "v");
    TCT_EQ_ST(tc_stats(e, stat_collect, &b), TC_OK);
    TCT_EQ_INT(a.overflow, 0);
    /* The same names in the same order every time. */
    TCT_EQ_U64(a.n, b.n);
    for (unsigned i = 0; i < a.n; i++)
        TCT_CHECK(strcmp(a.names[i], b.names[i]) == 0);
    /* Each once, each a decimal number but for the few that name a
     * setting (the I/O backend: "none" without a data directory). */
    for (unsigned i = 0; i < a.n; i++) {
        for (unsigned j = 0; j < i; j++)
            TCT_CHECK(strcmp(a.names[i], a.names[j]) != 0);
        TCT_CHECK(a.values[i][0] != '\0');
        if (strcmp(a.names[i], "io_backend") == 0) {
            TCT_CHECK(strcmp(a.values[i], "none") == 0);
            continue;
        }
        if (strcmp(a.names[i], "mem_hit_ratio_since_start") == 0) {
            TCT_CHECK(strcmp(a.values[i], "0.0000") == 0); /* no get yet */
            continue;
        }
        TCT_CHECK(strspn(a.values[i], "0123456789") == strlen(a.values[i]));
    }
    /* memcached's names for what the memory tier keeps. */
    static const char *want[] = {
        "cmd_get", "cmd_set", "cmd_touch", "get_hits", "get_misses",
        "get_expired", "delete_misses", "delete_hits", "incr_misses",
        "incr_hits", "decr_misses", "decr_hits", "cas_misses", "cas_hits",
        "cas_badval", "touch_hits", "touch_misses", "limit_maxbytes",
        "bytes", "curr_items", "total_items", "evictions", "reclaimed",
    };
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        unsigned i = 0;
        while (i < a.n && strcmp(a.names[i], want[w]) != 0)
            i++;
        if (i == a.n)
            printf("# missing stat %s\n", want[w]);
        TCT_CHECK(i < a.n);
    }
    tc_close(e);
}

static void stats_counters(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    tc_item *it = NULL;

    TCT_EQ_U64(tcu_stat(e, "cmd_get"), 0);
    TCT_EQ_ST(tc_get(e, SL("a"), &it), TC_ENOTFOUND);
    tcu_set(e, "a", "1");
    tcu_set(e, "a", "22");
    tcu_set(e, "b", "333");
    TCT_EQ_ST(tc_store(e, TC_ADD, SL("a"), SL("x"), 0, 0, 0, NULL),
              TC_ENOTSTORED);
    for (int i = 0; i < 3; i++) {
        TCT_EQ_ST(tc_get(e, SL("a"), &it), TC_OK);
        tc_item_release(it);
    }
    TCT_EQ_U64(tcu_stat(e, "get_hits"), 3);
    TCT_EQ_U64(tcu_stat(e, "get_misses"), 1);
    TCT_EQ_U64(tcu_stat(e, "cmd_get"), 4);
    /* Every storage command counts, stored or not. */
    TCT_EQ_U64(tcu_stat(e, "cmd_set"), 4);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 2);
    TCT_EQ_U64(tcu_stat(e, "total_items"), 3);

    TCT_EQ_ST(tc_incr(e, SL("a"), 1, NULL), TC_OK);
    TCT_EQ_ST(tc_incr(e, SL("zz"), 1, NULL), TC_ENOTFOUND);
    TCT_EQ_ST(tc_decr(e, SL("a"), 1, NULL), TC_OK);
    TCT_EQ_ST(tc_decr(e, SL("a"), 1, NULL), TC_OK);
    TCT_EQ_ST(tc_decr(e, SL("zz"), 1, NULL), TC_ENOTFOUND);
    TCT_EQ_U64(tcu_stat(e, "incr_hits"), 1);
    TCT_EQ_U64(tcu_stat(e, "incr_misses"), 1);
    TCT_EQ_U64(tcu_stat(e, "decr_hits"), 2);
    TCT_EQ_U64(tcu_stat(e, "decr_misses"), 1);

    TCT_EQ_ST(tc_touch(e, SL("a"), 100), TC_OK);
    TCT_EQ_ST(tc_touch(e, SL("zz"), 100), TC_ENOTFOUND);
    TCT_EQ_ST(tc_gat(e, SL("b"), 100, &it), TC_OK);
    tc_item_release(it);
    TCT_EQ_ST(tc_gat(e, SL("zz"), 100, &it), TC_ENOTFOUND);
    TCT_EQ_U64(tcu_stat(e, "touch_hits"), 2);
    TCT_EQ_U64(tcu_stat(e, "touch_misses"), 2);
    TCT_EQ_U64(tcu_stat(e, "cmd_touch"), 4);
    /* gat counts as a touch, not as a get (as in memcached). */
    TCT_EQ_U64(tcu_stat(e, "cmd_get"), 4);

    /* Expired on read. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("t"), SL("v"), 0, 1, 0, NULL), TC_OK);
    tcu_clock_add(&clk, 1);
    TCT_EQ_ST(tc_get(e, SL("t"), &it), TC_ENOTFOUND);
    TCT_EQ_U64(tcu_stat(e, "get_expired"), 1);
    TCT_EQ_U64(tcu_stat(e, "get_misses"), 2);

    TCT_EQ_ST(tc_delete(e, SL("b")), TC_OK);
    TCT_EQ_ST(tc_delete(e, SL("b")), TC_ENOTFOUND);
    TCT_EQ_U64(tcu_stat(e, "delete_hits"), 1);
    TCT_EQ_U64(tcu_stat(e, "delete_misses"), 1);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 1);
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    tc_close(e);
}

/* "bytes" is the real cost of what is held: it grows with the values,
 * by at least their size, and goes back to 0 on flush. */
static void stats_bytes(void)
{
    tc_engine *e = tcu_open(NULL);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);
    char key[64];
    static char val[1000];
    memset(val, 'v', sizeof(val));
    uint64_t prev = 0;
    for (unsigned i = 0; i < 100; i++) {
        size_t kl = tcu_key(key, "bytes:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, 1000, 0, 0, 0, NULL),
                  TC_OK);
        uint64_t b = tcu_stat(e, "bytes");
        /* Value, key and some header, at most ~7% slab rounding, slot. */
        TCT_CHECK(b >= prev + 1000 + kl + 8);
        TCT_CHECK(b <= prev + 1100 + kl + 64 + 8);
        prev = b;
    }
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);
    tc_close(e);
}

static void stats_reset_zeroes_counters(void)
{
    tc_engine *e = tcu_open(NULL);
    tc_item *it = NULL;
    tcu_set(e, "a", "1");
    tcu_set(e, "b", "2");
    TCT_EQ_ST(tc_get(e, SL("a"), &it), TC_OK);
    tc_item_release(it);
    TCT_EQ_ST(tc_get(e, SL("zz"), &it), TC_ENOTFOUND);
    TCT_EQ_ST(tc_incr(e, SL("a"), 1, NULL), TC_OK);
    TCT_EQ_ST(tc_delete(e, SL("b")), TC_OK);
    TCT_EQ_ST(tc_touch(e, SL("a"), 0), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_CAS, SL("a"), SL("x"), 0, 0, UINT64_MAX, NULL),
              TC_EEXISTS);
    uint64_t bytes = tcu_stat(e, "bytes");
    TCT_CHECK(bytes > 0);

    tc_stats_reset(e);
    static const char *zeroed[] = {
        "cmd_get", "cmd_set", "cmd_touch", "get_hits", "get_misses",
        "get_expired", "delete_misses", "delete_hits", "incr_misses",
        "incr_hits", "decr_misses", "decr_hits", "cas_misses", "cas_hits",
        "cas_badval", "touch_hits", "touch_misses", "evictions", "reclaimed",
        /* memcached's "stats reset" zeroes total_items too. */
        "total_items",
    };
    for (size_t i = 0; i < sizeof(zeroed) / sizeof(zeroed[0]); i++) {
        uint64_t v = tcu_stat(e, zeroed[i]);
        if (v != 0)
            printf("# %s = %" PRIu64 " after reset\n", zeroed[i], v);
        TCT_EQ_U64(v, 0);
    }
    /* What the engine holds is not a counter. */
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 1);
    TCT_EQ_U64(tcu_stat(e, "bytes"), bytes);
    TCT_EQ_U64(tcu_stat(e, "limit_maxbytes"), 64u * 1024 * 1024);
    tcu_expect(e, "a", "2");
    TCT_EQ_U64(tcu_stat(e, "get_hits"), 1);
    tc_close(e);
}

/* Values of 16 MiB - 1 bytes and more keep their length outside the
 * header's 24 bits (item.h): they store, read back, append and stay
 * distinct from one byte less. */
static void values_past_24_bit_length(void)
{
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.mem_limit = (size_t)128 << 20;
    cfg.item_size_max = (size_t)40 << 20;
    tc_engine *e = tcu_open_cfg(&cfg);
    const size_t sizes[] = {(1u << 24) - 2, (1u << 24) - 1, 1u << 24,
                            (1u << 24) + 12345};
    char *buf = malloc((1u << 24) + 20000);
    TCT_CHECK(buf != NULL);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(i * 7 + k);
        char key[16];
        int kl = snprintf(key, sizeof(key), "big%zu", k);
        TCT_EQ_ST(tc_store(e, TC_SET, key, (size_t)kl, buf, n, 7, 0, 0,
                           NULL),
                  TC_OK);
        tc_item *it;
        TCT_EQ_ST(tc_get(e, key, (size_t)kl, &it), TC_OK);
        tc_view v;
        tc_item_view(it, &v);
        TCT_EQ_U64(v.value_len, n);
        TCT_EQ_MEM(v.key, v.key_len, key);
        TCT_CHECK(memcmp(v.value, buf, n) == 0);
        TCT_EQ_U64(v.flags, 7);
        tc_item_release(it);
    }
    /* Crossing the boundary by append. */
    TCT_EQ_ST(tc_store(e, TC_APPEND, "big0", 4, "xyz", 3, 0, 0, 0, NULL),
              TC_OK);
    tc_item *it;
    TCT_EQ_ST(tc_get(e, "big0", 4, &it), TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    TCT_EQ_U64(v.value_len, (1u << 24) + 1);
    TCT_CHECK(memcmp((const char *)v.value + v.value_len - 3, "xyz", 3) == 0);
    tc_item_release(it);
    free(buf);
    tc_close(e);
}

TCT_MAIN(TCT(status_names_and_texts), TCT(config_defaults),
         TCT(open_rejects_invalid_config), TCT(two_engines_independent),
         TCT(set_get_view), TCT(empty_value), TCT(empty_value_null_pointer),
         TCT(binary_keys_and_values), TCT(key_length_limits),
         TCT(store_bad_mode), TCT(item_size_limit), TCT(large_values),
         TCT(values_past_24_bit_length),
         TCT(add_and_replace), TCT(append_prepend_keep_flags_and_exptime),
         TCT(cas_semantics), TCT(cas_unique_per_modification),
         TCT(incr_decr_basic), TCT(incr_wraps_decr_floors),
         TCT(incr_operand_forms), TCT(expiry_forms),
         TCT(expiry_relative_to_now), TCT(touch_and_gat),
         TCT(touch_while_referenced), TCT(delete_semantics), TCT(flush_now),
         TCT(flush_delayed), TCT(flush_delayed_seen_by_every_call),
         TCT(flush_later_replaces_pending), TCT(stats_names),
         TCT(stats_counters), TCT(stats_bytes),
         TCT(stats_reset_zeroes_counters))
