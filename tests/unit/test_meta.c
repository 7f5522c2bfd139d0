/*
 * test_meta.c - the engine's meta operations (tc_mget, tc_mstore,
 * tc_mdelete, tc_marith): memcached 1.6's stampede protection (vivify,
 * recache, stale), the fetched flag and last access time, CAS checks, and
 * the stale/win state kept on disk across eviction and restarts, on both
 * I/O backends.
 */
#include <stdio.h>
#include <string.h>

#include "tcbackend.h"
#include "tcutil.h"

static const char *backend = "threads";
static char dir[256];

static tc_meta_opts opts(unsigned set)
{
    tc_meta_opts o = {0};
    o.set = set;
    return o;
}

/* A meta get; returns its status and puts its TC_META_* bits in *meta. */
static tc_status mget(tc_engine *e, const char *k, const tc_meta_opts *o,
                      unsigned *meta, tc_result *res)
{
    tc_result r;
    tc_status st = tc_mget(e, k, strlen(k), o, NULL, &r);
    if (meta != NULL)
        *meta = r.meta;
    if (res != NULL)
        *res = r;
    return st;
}

static tc_engine *open_mem(tcu_clock *clk)
{
    return tcu_open(clk);
}

static tc_engine *open_disk(tcu_clock *clk, size_t mem_limit)
{
    tc_config cfg;
    int64_t t = clk != NULL ? atomic_load(&clk->now) : 0;
    tcu_config(&cfg, clk);
    if (clk != NULL && t >= TCU_T0)
        tcu_clock_set(clk, t); /* keep the time across a reopen */
    cfg.dir = dir;
    cfg.disk_size = (uint64_t)64 << 20;
    cfg.io_backend = backend;
    cfg.flush_ms = 5;
    cfg.warm = TC_WARM_OFF; /* items come back by disk reads */
    if (mem_limit != 0)
        cfg.mem_limit = mem_limit;
    return tcu_open_cfg(&cfg);
}

/* ---- stampede protection ---- */

static void vivify_one_winner(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    tc_meta_opts o = opts(TC_MO_VIVIFY);
    o.vivify_ttl = 30;
    unsigned meta;
    tc_result r;
    TCT_EQ_ST(mget(e, "v", &o, &meta, &r), TC_OK);
    TCT_EQ_U64(meta, TC_META_WIN);
    for (int i = 0; i < 5; i++) {
        TCT_EQ_ST(mget(e, "v", &o, &meta, NULL), TC_OK);
        TCT_EQ_U64(meta & (TC_META_WIN | TC_META_WON_BEFORE),
                   TC_META_WON_BEFORE);
    }
    /* The stub is empty and expires with the vivify TTL. */
    tc_item *it;
    TCT_EQ_ST(tc_get(e, "v", 1, &it), TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    TCT_EQ_U64(v.value_len, 0);
    TCT_EQ_U64((uint64_t)v.exptime, (uint64_t)(TCU_T0 + 30));
    tc_item_release(it);
    /* The winner's store ends it: no flags for anyone after. */
    tcu_set(e, "v", "fresh");
    TCT_EQ_ST(mget(e, "v", &o, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & ~(unsigned)TC_META_FETCHED, 0);
    /* Without N a miss stays a miss and creates nothing. */
    tc_meta_opts none = opts(0);
    TCT_EQ_ST(mget(e, "absent", &none, &meta, NULL), TC_ENOTFOUND);
    tcu_expect_missing(e, "absent");
    tc_close(e);
}

static void recache_wins_before_expiry(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    TCT_EQ_ST(tc_store(e, TC_SET, "r", 1, "old", 3, 0, 100, 0, NULL), TC_OK);
    tc_meta_opts o = opts(TC_MO_RECACHE);
    unsigned meta;
    o.recache_ttl = 50; /* 100 s left: no win yet */
    TCT_EQ_ST(mget(e, "r", &o, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_WIN | TC_META_WON_BEFORE), 0);
    tcu_clock_add(&clk, 60); /* 40 s left, under the token */
    TCT_EQ_ST(mget(e, "r", &o, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_WIN | TC_META_WON_BEFORE), TC_META_WIN);
    TCT_EQ_ST(mget(e, "r", &o, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_WIN | TC_META_WON_BEFORE),
               TC_META_WON_BEFORE);
    /* An item that never expires is never due. */
    tcu_set(e, "forever", "x");
    o.recache_ttl = 1000;
    TCT_EQ_ST(mget(e, "forever", &o, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & TC_META_WIN, 0);
    tc_close(e);
}

static void invalidate_marks_stale(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    uint64_t cas;
    TCT_EQ_ST(tc_store(e, TC_SET, "s", 1, "val", 3, 7, 0, 0, &cas), TC_OK);
    tc_meta_opts inv = opts(TC_MO_INVALIDATE | TC_MO_TTL);
    inv.ttl = 20;
    TCT_EQ_ST(tc_mdelete(e, "s", 1, &inv, NULL), TC_OK);
    tc_meta_opts none = opts(0);
    unsigned meta;
    tc_result r;
    tc_item *it;
    TCT_EQ_ST(tc_mget(e, "s", 1, &none, &it, &r), TC_OK);
    TCT_EQ_U64(r.meta & (TC_META_STALE | TC_META_WIN), 
               TC_META_STALE | TC_META_WIN);
    tc_view v;
    tc_item_view(it, &v);
    /* The stale value is served, with a new CAS and the new TTL. */
    TCT_CHECK(v.value_len == 3 && memcmp(v.value, "val", 3) == 0);
    TCT_EQ_U64(v.flags, 7);
    TCT_CHECK(v.cas > cas);
    TCT_EQ_U64((uint64_t)v.exptime, (uint64_t)(TCU_T0 + 20));
    uint64_t stale_cas = v.cas;
    tc_item_release(it);
    TCT_EQ_ST(mget(e, "s", &none, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_STALE | TC_META_WIN | TC_META_WON_BEFORE),
               TC_META_STALE | TC_META_WON_BEFORE);
    /* Marking again lets the next reader win again. */
    tc_meta_opts inv2 = opts(TC_MO_INVALIDATE);
    TCT_EQ_ST(tc_mdelete(e, "s", 1, &inv2, NULL), TC_OK);
    TCT_EQ_ST(mget(e, "s", &none, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_WIN | TC_META_WON_BEFORE), TC_META_WIN);
    /* A CAS store with a CAS lower than the item's, and I: stored, still
     * stale, the TTL kept; without I it is refused. */
    tc_meta_opts c = opts(TC_MO_CAS);
    c.cas = stale_cas - 1;
    TCT_EQ_ST(tc_mstore(e, TC_SET, "s", 1, "new", 3, 0, 0, &c, NULL),
              TC_EEXISTS);
    c.set |= TC_MO_INVALIDATE;
    TCT_EQ_ST(tc_mstore(e, TC_SET, "s", 1, "new", 3, 0, 0, &c, NULL),
              TC_OK);
    TCT_EQ_ST(tc_mget(e, "s", 1, &none, &it, &r), TC_OK);
    tc_item_view(it, &v);
    TCT_CHECK(v.value_len == 3 && memcmp(v.value, "new", 3) == 0);
    TCT_EQ_U64((uint64_t)v.exptime, (uint64_t)(TCU_T0 + 20));
    TCT_CHECK(r.meta & TC_META_STALE);
    TCT_CHECK(r.meta & TC_META_WON_BEFORE);
    tc_item_release(it);
    /* A plain store clears it all. */
    tcu_set(e, "s", "fresh");
    TCT_EQ_ST(mget(e, "s", &none, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & ~(unsigned)TC_META_FETCHED, 0);
    tc_close(e);
}

/* ---- fetched flag, last access, no bump ---- */

static void fetched_and_last_access(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    tcu_set(e, "h", "v");
    tcu_clock_add(&clk, 5);
    tc_meta_opts peek = opts(TC_MO_NO_BUMP), none = opts(0);
    tc_result r;
    TCT_EQ_ST(mget(e, "h", &peek, NULL, &r), TC_OK);
    TCT_EQ_U64(r.meta & TC_META_FETCHED, 0);
    TCT_EQ_U64(r.last_access, 5);
    TCT_EQ_ST(mget(e, "h", &peek, NULL, &r), TC_OK); /* no bump: same */
    TCT_EQ_U64(r.meta & TC_META_FETCHED, 0);
    TCT_EQ_U64(r.last_access, 5);
    TCT_EQ_ST(mget(e, "h", &none, NULL, &r), TC_OK); /* reports before */
    TCT_EQ_U64(r.meta & TC_META_FETCHED, 0);
    TCT_EQ_U64(r.last_access, 5);
    tcu_clock_add(&clk, 3);
    TCT_EQ_ST(mget(e, "h", &none, NULL, &r), TC_OK);
    TCT_EQ_U64(r.meta & TC_META_FETCHED, TC_META_FETCHED);
    TCT_EQ_U64(r.last_access, 3);
    /* A classic get counts as an access too. */
    tcu_clock_add(&clk, 2);
    tcu_expect(e, "h", "v");
    TCT_EQ_ST(mget(e, "h", &peek, NULL, &r), TC_OK);
    TCT_EQ_U64(r.last_access, 0);
    tc_close(e);
}

static void touch_through_mget(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    tcu_set(e, "t", "v");
    tc_meta_opts o = opts(TC_MO_TTL);
    o.ttl = 10;
    tc_item *it;
    tc_result r;
    TCT_EQ_ST(tc_mget(e, "t", 1, &o, &it, &r), TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    TCT_EQ_U64((uint64_t)v.exptime, (uint64_t)(TCU_T0 + 10));
    tc_item_release(it);
    tcu_clock_add(&clk, 11);
    tcu_expect_missing(e, "t");
    tc_close(e);
}

/* ---- CAS checks ---- */

static void cas_checks(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    uint64_t cas;
    TCT_EQ_ST(tc_store(e, TC_SET, "c", 1, "ab", 2, 0, 0, 0, &cas), TC_OK);
    tc_meta_opts bad = opts(TC_MO_CAS), good = opts(TC_MO_CAS);
    bad.cas = cas + 1;
    good.cas = cas;
    /* Append and prepend check a CAS; an add ignores it. */
    TCT_EQ_ST(tc_mstore(e, TC_APPEND, "c", 1, "x", 1, 0, 0, &bad, NULL),
              TC_EEXISTS);
    tc_result r;
    TCT_EQ_ST(tc_mstore(e, TC_APPEND, "c", 1, "cd", 2, 0, 0, &good, &r),
              TC_OK);
    tcu_expect(e, "c", "abcd");
    TCT_EQ_ST(tc_mstore(e, TC_ADD, "new", 3, "n", 1, 0, 0, &bad, NULL),
              TC_OK);
    /* A CAS on a missing key: NOT_FOUND, as memcached's cas. */
    TCT_EQ_ST(tc_mstore(e, TC_SET, "nokey", 5, "n", 1, 0, 0, &good, NULL),
              TC_ENOTFOUND);
    /* Delete. */
    tc_meta_opts d = opts(TC_MO_CAS);
    d.cas = r.cas + 1;
    TCT_EQ_ST(tc_mdelete(e, "c", 1, &d, NULL), TC_EEXISTS);
    d.cas = r.cas;
    TCT_EQ_ST(tc_mdelete(e, "c", 1, &d, NULL), TC_OK);
    tcu_expect_missing(e, "c");
    tc_close(e);
}

/* ---- arithmetic ---- */

static void marith_vivify_and_ttl(void)
{
    tcu_clock clk;
    tc_engine *e = open_mem(&clk);
    tc_meta_opts o = opts(TC_MO_VIVIFY);
    o.vivify_ttl = 100;
    o.initial = 41;
    tc_result r;
    /* Created holding the initial number; delta not applied. */
    TCT_EQ_ST(tc_marith(e, "n", 1, 0, 5, &o, &r), TC_OK);
    TCT_EQ_U64(r.number, 41);
    TCT_EQ_U64((uint64_t)r.exptime, (uint64_t)(TCU_T0 + 100));
    TCT_EQ_ST(tc_marith(e, "n", 1, 0, 1, &o, &r), TC_OK);
    TCT_EQ_U64(r.number, 42);
    uint64_t cas = r.cas;
    tc_meta_opts c = opts(TC_MO_CAS | TC_MO_TTL);
    c.cas = cas + 1;
    c.ttl = 0;
    TCT_EQ_ST(tc_marith(e, "n", 1, 1, 50, &c, &r), TC_EEXISTS);
    c.cas = cas;
    TCT_EQ_ST(tc_marith(e, "n", 1, 1, 50, &c, &r), TC_OK);
    TCT_EQ_U64(r.number, 0);
    /* res.exptime is the expiry before the call's TTL; the item has the
     * new one. */
    TCT_EQ_U64((uint64_t)r.exptime, (uint64_t)(TCU_T0 + 100));
    TCT_CHECK(r.cas > cas);
    tc_item *it;
    TCT_EQ_ST(tc_mget(e, "n", 1, NULL, &it, NULL), TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    TCT_EQ_U64((uint64_t)v.exptime, 0);
    tc_item_release(it);
    tc_meta_opts none = opts(0);
    TCT_EQ_ST(tc_marith(e, "missing", 7, 0, 1, &none, &r), TC_ENOTFOUND);
    tcu_set(e, "text", "abc");
    TCT_EQ_ST(tc_marith(e, "text", 4, 0, 1, &none, &r), TC_ENONNUMERIC);
    tc_close(e);
}

/* ---- with a disk tier ---- */

/* Stale and win state survive a restart, and an eviction: the item read
 * back from disk says what it said in memory. */
static void state_kept_on_disk(void)
{
    tcu_clock clk = {0};
    tcu_fresh_dir(dir, "tc-meta");
    tc_engine *e = open_disk(&clk, 0);
    tcu_set(e, "stale", "s-value");
    tcu_set(e, "won", "w-value");
    tc_meta_opts inv = opts(TC_MO_INVALIDATE), rec = opts(TC_MO_RECACHE);
    TCT_EQ_ST(tc_mdelete(e, "stale", 5, &inv, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, "won", 3, "w-value", 7, 0, 60, 0, NULL),
              TC_OK);
    rec.recache_ttl = 120;
    unsigned meta;
    TCT_EQ_ST(mget(e, "won", &rec, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & TC_META_WIN, TC_META_WIN);
    tc_close(e);

    e = open_disk(&clk, 0);
    tc_meta_opts none = opts(0);
    TCT_EQ_ST(mget(e, "stale", &none, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_STALE | TC_META_WIN),
               TC_META_STALE | TC_META_WIN);
    TCT_EQ_ST(mget(e, "won", &rec, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_WIN | TC_META_WON_BEFORE),
               TC_META_WON_BEFORE);
    TCT_CHECK(tcu_stat(e, "disk_reads") >= 2); /* both came from disk */
    tc_close(e);

    /* The win handed out after the restart (on "stale") was logged too. */
    e = open_disk(&clk, 0);
    TCT_EQ_ST(mget(e, "stale", &none, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_STALE | TC_META_WIN | TC_META_WON_BEFORE),
               TC_META_STALE | TC_META_WON_BEFORE);
    tc_close(e);
}

static void meta_on_disk_only_items(void)
{
    tcu_clock clk = {0};
    tcu_fresh_dir(dir, "tc-meta");
    tc_engine *e = open_disk(&clk, 1 << 20);
    char key[64], val[1024];
    const unsigned n = 4096; /* 4 MiB of values for 1 MiB of memory */
    memset(val, 'm', sizeof(val));
    for (unsigned i = 0; i < n; i++) {
        size_t kl = tcu_key(key, "d:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
    }
    TCT_CHECK(tcu_stat(e, "evictions") > 0);
    /* The first keys are long gone from memory. */
    tc_meta_opts inv = opts(TC_MO_INVALIDATE), none = opts(0);
    unsigned meta;
    TCT_EQ_ST(tc_mdelete(e, "d:0", 3, &inv, NULL), TC_OK);
    TCT_EQ_ST(mget(e, "d:0", &none, &meta, NULL), TC_OK);
    TCT_EQ_U64(meta & (TC_META_STALE | TC_META_WIN),
               TC_META_STALE | TC_META_WIN);
    tc_result r;
    TCT_EQ_ST(tc_mdelete(e, "d:1", 3, &none, &r), TC_OK);
    tcu_expect_missing(e, "d:1");
    tcu_clock_add(&clk, 1);
    TCT_EQ_ST(tc_store(e, TC_SET, "num", 3, "10", 2, 0, 0, 0, NULL), TC_OK);
    for (unsigned i = n; i < 2 * n; i++) { /* push "num" out too */
        size_t kl = tcu_key(key, "d:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
    }
    TCT_EQ_ST(tc_marith(e, "num", 3, 0, 5, &none, &r), TC_OK);
    TCT_EQ_U64(r.number, 15);
    tc_meta_opts peek = opts(TC_MO_NO_BUMP);
    TCT_EQ_ST(mget(e, "d:2", &peek, NULL, &r), TC_OK);
    TCT_EQ_U64(r.meta & TC_META_FETCHED, 0);
    tc_close(e);
}

typedef struct mg_got {
    int calls;
    tc_status st;
    unsigned meta;
    size_t vlen;
} mg_got;

static void mg_done(void *arg, const tc_result *r)
{
    mg_got *g = arg;
    g->calls++;
    g->st = r->status;
    g->meta = r->meta;
    g->vlen = r->view != NULL ? r->view->value_len : 0;
}

/* The context form reads a record the page cache holds on the calling
 * thread: a meta get of an item only on disk completes before the call
 * returns, with the item's state, and counts as a disk hit. */
static void ctx_mget_of_disk_item_inline(void)
{
    tcu_clock clk = {0};
    tcu_fresh_dir(dir, "tc-meta");
    tc_engine *e = open_disk(&clk, 0);
    char val[700];
    memset(val, 'q', sizeof(val));
    TCT_EQ_ST(tc_store(e, TC_SET, "dk", 2, val, sizeof(val), 0, 0, 0, NULL),
              TC_OK);
    tc_meta_opts inv = opts(TC_MO_INVALIDATE);
    TCT_EQ_ST(tc_mdelete(e, "dk", 2, &inv, NULL), TC_OK);
    tc_close(e);
    e = open_disk(&clk, 0); /* nothing in memory; the files are cached */
    tc_ctx *ctx;
    TCT_EQ_ST(tc_ctx_new(e, &ctx), TC_OK);
    tc_meta_opts none = opts(0);
    mg_got g = {0};
    TCT_EQ_ST(tc_ctx_mget(ctx, "dk", 2, &none, mg_done, &g), TC_OK);
    TCT_EQ_INT(g.calls, 1);
    TCT_EQ_ST(g.st, TC_OK);
    TCT_EQ_U64(g.vlen, sizeof(val));
    TCT_EQ_U64(g.meta & (TC_META_STALE | TC_META_WIN),
               TC_META_STALE | TC_META_WIN);
    TCT_EQ_U64(tcu_stat(e, "disk_reads_inline"), 1);
    TCT_EQ_U64(tcu_stat(e, "get_disk_hits"), 1);
    /* In memory now: the next one is a memory hit, and the win is gone. */
    g.calls = 0;
    TCT_EQ_ST(tc_ctx_mget(ctx, "dk", 2, &none, mg_done, &g), TC_OK);
    TCT_EQ_INT(g.calls, 1);
    TCT_EQ_U64(g.meta & (TC_META_WIN | TC_META_WON_BEFORE),
               TC_META_WON_BEFORE);
    TCT_EQ_U64(tcu_stat(e, "disk_reads"), 1);
    TCT_EQ_U64(tcu_stat(e, "get_disk_hits"), 1);
    /* A key nowhere: a miss, no read. */
    g.calls = 0;
    TCT_EQ_ST(tc_ctx_mget(ctx, "none", 4, &none, mg_done, &g), TC_OK);
    TCT_EQ_ST(g.st, TC_ENOTFOUND);
    tc_ctx_free(ctx);
    tc_close(e);
}

/* ---- the run ---- */

static bool use_uring(void)
{
    if (!tcu_uring_usable())
        return false;
    backend = "io_uring";
    return true;
}

static const tct_case mem_cases[] = {
    TCT(vivify_one_winner),      TCT(recache_wins_before_expiry),
    TCT(invalidate_marks_stale), TCT(fetched_and_last_access),
    TCT(touch_through_mget),     TCT(cas_checks),
    TCT(marith_vivify_and_ttl),
};

static const tct_case disk_cases[] = {
    TCT(state_kept_on_disk),
    TCT(meta_on_disk_only_items),
    TCT(ctx_mget_of_disk_item_inline),
};

int main(int argc, char **argv)
{
    size_t nm = sizeof(mem_cases) / sizeof(mem_cases[0]);
    size_t nd = sizeof(disk_cases) / sizeof(disk_cases[0]);
    int num = 0, failed = 0;
    tct_seed_init();
    tct_run(argc, argv, mem_cases, nm, &num, &failed);
    printf("# backend: threads\n");
    tct_run(argc, argv, disk_cases, nd, &num, &failed);
    if (use_uring()) {
        printf("# backend: io_uring\n");
        tct_run(argc, argv, disk_cases, nd, &num, &failed);
    } else {
        tcu_skip_uring(argc, argv, disk_cases, nd, &num);
    }
    printf("1..%d\n", num);
    if (dir[0] != '\0')
        tcu_rm_rf(dir);
    return failed != 0;
}
