/*
 * test_warm.c - warm start: the hot-key snapshot is written at close and
 * reads back hottest first; a preload after a restart puts the keys in
 * memory so reading them costs no disk read; it stops at the memory
 * limit; a set and a delete that arrive during the preload win over the
 * preloaded values (made deterministic by the engine's preload hook, which
 * holds the preload between its index lookups and its reads); a corrupt
 * or missing snapshot is logged and falls back (ALL: the newest data;
 * HOT: nothing); warm=off does nothing.
 *
 * Every test runs once per I/O backend; where io_uring cannot work, its
 * half reports a named skip.
 */
#include <dirent.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "idx.h"
#include "tcbackend.h"
#include "tcutil.h"

static const char *backend = "threads";
static char dir[256];

static void fresh_dir(void)
{
    tcu_fresh_dir(dir, "tc-warm");
}

/* What the log callback received (the engine calls it from its
 * threads). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];

static void log_cb(void *arg, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof(log_text) - n, "%s\n", msg);
    pthread_mutex_unlock(&log_lock);
}

static bool logged(const char *s)
{
    pthread_mutex_lock(&log_lock);
    bool f = strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return f;
}

static void cfg_warm(tc_config *cfg, tc_warm mode)
{
    tc_config_init(cfg);
    cfg->dir = dir;
    cfg->disk_size = (uint64_t)256 << 20;
    cfg->io_backend = backend;
    cfg->flush_ms = 5;
    cfg->warm = mode;
    cfg->hot_snapshot_s = 0;
    cfg->log = log_cb;
    pthread_mutex_lock(&log_lock);
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

static tc_engine *open_cfg(const tc_config *cfg)
{
    char why[512] = "";
    tc_config c = *cfg;
    c.errbuf = why;
    c.errbuf_len = sizeof(why);
    tc_engine *e = NULL;
    tc_status st = tc_open(&c, &e);
    if (st != TC_OK)
        printf("# tc_open: %s: %s\n", tc_strerror(st), why);
    TCT_EQ_ST(st, TC_OK);
    return e;
}

typedef struct str_find {
    const char *name;
    char value[64];
} str_find;

static void str_cb(void *arg, const char *name, const char *value)
{
    str_find *f = arg;
    if (strcmp(name, f->name) == 0)
        snprintf(f->value, sizeof(f->value), "%s", value);
}

static void stat_str(tc_engine *e, const char *name, char *out, size_t cap)
{
    str_find f = {name, ""};
    TCT_EQ_ST(tc_stats(e, str_cb, &f), TC_OK);
    snprintf(out, cap, "%s", f.value);
}

/* Waits (at most 60 s) for the preload to finish. */
static void wait_warm_done(tc_engine *e)
{
    char st[64] = "";
    for (int i = 0; i < 6000; i++) {
        stat_str(e, "warm_state", st, sizeof(st));
        if (strcmp(st, "done") == 0)
            return;
        usleep(10000);
    }
    printf("# warm_state: %s\n", st);
    TCT_CHECK(!"the preload finished within 60 s");
}

static size_t key_of(unsigned n, char *buf)
{
    return (size_t)snprintf(buf, 64, "warm:key:%u", n);
}

static size_t value_of(unsigned n, char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (n * 7 + i * 13) % 26);
    return len;
}

static void fill(tc_engine *e, unsigned n, size_t vlen)
{
    char k[64], *v = malloc(vlen);
    TCT_CHECK(v != NULL);
    for (unsigned i = 0; i < n; i++) {
        size_t kl = key_of(i, k);
        value_of(i, v, vlen);
        TCT_EQ_ST(tc_store(e, TC_SET, k, kl, v, vlen, i, 0, 0, NULL), TC_OK);
    }
    free(v);
}

static void check_value(tc_engine *e, unsigned i, size_t vlen)
{
    char k[64], v[4096];
    size_t kl = key_of(i, k);
    value_of(i, v, vlen);
    tc_item *it = NULL;
    TCT_EQ_ST(tc_get(e, k, kl, &it), TC_OK);
    tc_view view;
    tc_item_view(it, &view);
    TCT_EQ_U64(view.value_len, vlen);
    TCT_CHECK(memcmp(view.value, v, vlen) == 0);
    TCT_EQ_U64(view.flags, i);
    tc_item_release(it);
}

/* The snapshot as stored, read through the index module. */
static unsigned char *read_snapshot(size_t *len, uint32_t *n, tc_status *st)
{
    idx *x = NULL;
    idx_meta meta;
    char why[256];
    TCT_EQ_ST(idx_open(dir, (size_t)256 << 20, &x, &meta, why, sizeof(why)),
              TC_OK);
    unsigned char *p = NULL;
    *st = idx_hot_read(x, &p, len, n);
    idx_close(&x);
    return p;
}

/* ---- tests ---- */

static void snapshot_written_and_read_back(void)
{
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_HOT);
    tc_engine *e = open_cfg(&cfg);
    wait_warm_done(e);
    fill(e, 300, 100);
    /* Keys 0..49 are read: the policy's frequency makes them hot. */
    for (int round = 0; round < 3; round++)
        for (unsigned i = 0; i < 50; i++)
            check_value(e, i, 100);
    tc_close(e);

    size_t len;
    uint32_t n;
    tc_status st;
    unsigned char *p = read_snapshot(&len, &n, &st);
    TCT_EQ_ST(st, TC_OK);
    TCT_EQ_U64(n, 300);
    /* Every key once; the 50 hot ones first. */
    char seen[300] = {0};
    size_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        TCT_CHECK(at < len);
        size_t kl = p[at];
        char k[64];
        memcpy(k, p + at + 1, kl);
        k[kl] = '\0';
        unsigned num;
        TCT_CHECK(sscanf(k, "warm:key:%u", &num) == 1 && num < 300);
        TCT_CHECK(!seen[num]);
        seen[num] = 1;
        if (i < 50)
            TCT_CHECK(num < 50);
        at += 1 + kl;
    }
    TCT_EQ_U64(at, len);
    free(p);
}

static void preload_serves_from_memory(void)
{
    const unsigned n = 10000;
    const size_t vlen = 1024;
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_HOT);
    tc_engine *e = open_cfg(&cfg);
    wait_warm_done(e);
    fill(e, n, vlen);
    for (unsigned i = 0; i < n; i++)
        check_value(e, i, vlen);
    tc_close(e);

    e = open_cfg(&cfg);
    wait_warm_done(e);
    TCT_EQ_U64(tcu_stat(e, "warm_items"), n);
    TCT_EQ_U64(tcu_stat(e, "warm_bytes"), (uint64_t)n * vlen);
    char secs[64];
    stat_str(e, "warm_seconds", secs, sizeof(secs));
    double s = atof(secs);
    printf("# preload (%s): %u items, %.1f MB in %s s, %.0f MB/s\n", backend,
           n, (double)n * vlen / 1e6, secs,
           s > 0 ? (double)n * vlen / 1e6 / s : 0.0);
    TCT_CHECK(logged("warm: preloading 10000 keys from the hot-key snapshot"));
    TCT_CHECK(logged("warm: done: 10000 items"));
    uint64_t dh = tcu_stat(e, "get_disk_hits");
    uint64_t reads = tcu_stat(e, "disk_reads");
    for (unsigned i = 0; i < n; i++)
        check_value(e, i, vlen);
    TCT_EQ_U64(tcu_stat(e, "get_disk_hits"), dh);
    TCT_EQ_U64(tcu_stat(e, "disk_reads"), reads);
    char ratio[64];
    stat_str(e, "mem_hit_ratio_since_start", ratio, sizeof(ratio));
    TCT_CHECK(strcmp(ratio, "1.0000") == 0);
    tc_close(e);
}

static void preload_stops_at_memory_limit(void)
{
    const unsigned n = 8000;
    const size_t vlen = 1024;
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_ALL);
    cfg.mem_limit = (size_t)4 << 20; /* about half of the data */
    tc_engine *e = open_cfg(&cfg);
    wait_warm_done(e);
    fill(e, n, vlen);
    tc_close(e);

    e = open_cfg(&cfg);
    wait_warm_done(e);
    uint64_t items = tcu_stat(e, "warm_items");
    printf("# %" PRIu64 " of %u items preloaded into 4 MiB\n", items, n);
    TCT_CHECK(items > 1000 && items < n);
    TCT_CHECK(tcu_stat(e, "bytes") <= cfg.mem_limit);
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    tc_close(e);
}

/* The preload hook: holds the preload after its first batch's lookups
 * until the test lets it go. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    bool open;
} gate;

static void gate_hook(void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->calls++;
    pthread_cond_broadcast(&g->cond);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60; /* bounded: a broken test must not hang */
    while (!g->open)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &until) != 0)
            break;
    pthread_mutex_unlock(&g->lock);
}

static void write_and_delete_during_preload_win(void)
{
    const unsigned n = 200;
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_HOT);
    tc_engine *e = open_cfg(&cfg);
    wait_warm_done(e);
    fill(e, n, 100);
    tc_close(e);

    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};
    cfg.debug_warm_hook = gate_hook;
    cfg.debug_warm_arg = &g;
    e = open_cfg(&cfg);
    /* The preload has looked the keys up and waits to read them. */
    pthread_mutex_lock(&g.lock);
    for (int i = 0; i < 600 && g.calls == 0; i++) {
        pthread_mutex_unlock(&g.lock);
        usleep(100000);
        pthread_mutex_lock(&g.lock);
    }
    int calls = g.calls;
    pthread_mutex_unlock(&g.lock);
    TCT_EQ_INT(calls, 1);
    char state[64];
    stat_str(e, "warm_state", state, sizeof(state));
    TCT_CHECK(strcmp(state, "running") == 0);

    char k[64];
    size_t kl = key_of(3, k);
    TCT_EQ_ST(tc_store(e, TC_SET, k, kl, "newer", 5, 0, 0, 0, NULL), TC_OK);
    kl = key_of(4, k);
    TCT_EQ_ST(tc_delete(e, k, kl), TC_OK);
    /* Key 5 is changed too, and its change indexed (so its memory copy
     * may go), before the preload goes on. */
    kl = key_of(5, k);
    TCT_EQ_ST(tc_store(e, TC_SET, k, kl, "indexed", 7, 0, 0, 0, NULL), TC_OK);
    tcu_wait_indexed(e);

    pthread_mutex_lock(&g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    wait_warm_done(e);

    /* Keys 3 and 5 were not overwritten, 4 was not brought back. */
    TCT_EQ_U64(tcu_stat(e, "warm_items"), n - 3);
    tc_item *it = NULL;
    kl = key_of(3, k);
    TCT_EQ_ST(tc_get(e, k, kl, &it), TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    TCT_EQ_MEM(v.value, v.value_len, "newer");
    tc_item_release(it);
    kl = key_of(5, k);
    TCT_EQ_ST(tc_get(e, k, kl, &it), TC_OK);
    tc_item_view(it, &v);
    TCT_EQ_MEM(v.value, v.value_len, "indexed");
    tc_item_release(it);
    kl = key_of(4, k);
    TCT_EQ_ST(tc_get(e, k, kl, &it), TC_ENOTFOUND);
    for (unsigned i = 6; i < n; i++)
        check_value(e, i, 100);
    tc_close(e);
}

static void flush_during_preload_wins(void)
{
    const unsigned n = 100;
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_HOT);
    tc_engine *e = open_cfg(&cfg);
    wait_warm_done(e);
    fill(e, n, 100);
    tc_close(e);

    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};
    cfg.debug_warm_hook = gate_hook;
    cfg.debug_warm_arg = &g;
    e = open_cfg(&cfg);
    pthread_mutex_lock(&g.lock);
    for (int i = 0; i < 600 && g.calls == 0; i++) {
        pthread_mutex_unlock(&g.lock);
        usleep(100000);
        pthread_mutex_lock(&g.lock);
    }
    int calls = g.calls;
    pthread_mutex_unlock(&g.lock);
    TCT_EQ_INT(calls, 1);
    /* flush_all between the preload's lookups and its reads. */
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    pthread_mutex_lock(&g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    wait_warm_done(e);
    TCT_EQ_U64(tcu_stat(e, "warm_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    char k[64];
    tc_item *it = NULL;
    for (unsigned i = 0; i < n; i += 7) {
        size_t kl = key_of(i, k);
        TCT_EQ_ST(tc_get(e, k, kl, &it), TC_ENOTFOUND);
    }
    tc_close(e);
}

/* Changes the stored snapshot with LMDB itself: flip a byte of its first
 * chunk, or drop it. */
static void tamper_snapshot(bool drop)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/index", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi hot;
    TCT_EQ_INT(mdb_env_create(&env), 0);
    TCT_EQ_INT(mdb_env_set_maxdbs(env, 4), 0);
    TCT_EQ_INT(mdb_env_set_mapsize(env, (size_t)256 << 20), 0);
    TCT_EQ_INT(mdb_env_open(env, path, 0, 0644), 0);
    TCT_EQ_INT(mdb_txn_begin(env, NULL, 0, &txn), 0);
    TCT_EQ_INT(mdb_dbi_open(txn, "hot", 0, &hot), 0);
    if (drop) {
        TCT_EQ_INT(mdb_drop(txn, hot, 0), 0);
    } else {
        unsigned char kb[5] = {'c', 0, 0, 0, 0};
        MDB_val k = {sizeof(kb), kb}, v;
        TCT_EQ_INT(mdb_get(txn, hot, &k, &v), 0);
        unsigned char *copy = malloc(v.mv_size);
        TCT_CHECK(copy != NULL);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[v.mv_size / 2] ^= 0x20;
        MDB_val nv = {v.mv_size, copy};
        TCT_EQ_INT(mdb_put(txn, hot, &k, &nv, 0), 0);
        free(copy);
    }
    TCT_EQ_INT(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void bad_snapshot_case(bool drop)
{
    const unsigned n = 500;
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_HOT);
    tc_engine *e = open_cfg(&cfg);
    wait_warm_done(e);
    fill(e, n, 200);
    tc_close(e);
    tamper_snapshot(drop);
    const char *what = drop ? "warm: no hot-key snapshot"
                            : "warm: the hot-key snapshot cannot be used";

    /* HOT: the start works, the problem is logged, nothing preloaded. */
    cfg_warm(&cfg, TC_WARM_HOT);
    e = open_cfg(&cfg);
    wait_warm_done(e);
    TCT_CHECK(logged(what));
    TCT_EQ_U64(tcu_stat(e, "warm_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    check_value(e, 7, 200); /* from disk */
    tc_close(e);
    /* That close wrote a fresh snapshot (of key 7): damage it again. */
    tamper_snapshot(drop);

    /* ALL: falls back to the newest data, which all fits. */
    cfg_warm(&cfg, TC_WARM_ALL);
    e = open_cfg(&cfg);
    wait_warm_done(e);
    TCT_CHECK(logged(what));
    TCT_CHECK(logged("from the newest data"));
    TCT_EQ_U64(tcu_stat(e, "warm_items"), n);
    uint64_t dh = tcu_stat(e, "get_disk_hits");
    for (unsigned i = 0; i < n; i++)
        check_value(e, i, 200);
    TCT_EQ_U64(tcu_stat(e, "get_disk_hits"), dh);
    tc_close(e);
}

static void corrupt_snapshot_falls_back(void)
{
    bad_snapshot_case(false);
}

static void missing_snapshot_falls_back(void)
{
    bad_snapshot_case(true);
}

static void warm_off_does_nothing(void)
{
    fresh_dir();
    tc_config cfg;
    cfg_warm(&cfg, TC_WARM_OFF);
    tc_engine *e = open_cfg(&cfg);
    fill(e, 100, 100);
    char state[64];
    stat_str(e, "warm_state", state, sizeof(state));
    TCT_CHECK(strcmp(state, "off") == 0);
    tc_close(e);
    /* No snapshot was written. */
    size_t len;
    uint32_t n;
    tc_status st;
    free(read_snapshot(&len, &n, &st));
    TCT_EQ_ST(st, TC_ENOTFOUND);

    e = open_cfg(&cfg);
    usleep(100000);
    stat_str(e, "warm_state", state, sizeof(state));
    TCT_CHECK(strcmp(state, "off") == 0);
    TCT_EQ_U64(tcu_stat(e, "warm_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    TCT_CHECK(!logged("warm:"));
    check_value(e, 1, 100);
    tc_close(e);
}

/* ---- the run, once per backend ---- */

static bool use_uring(void)
{
    if (!tcu_uring_usable())
        return false;
    backend = "io_uring";
    return true;
}

static const tct_case cases[] = {
    TCT(snapshot_written_and_read_back),
    TCT(preload_serves_from_memory),
    TCT(preload_stops_at_memory_limit),
    TCT(write_and_delete_during_preload_win),
    TCT(flush_during_preload_wins),
    TCT(corrupt_snapshot_falls_back),
    TCT(missing_snapshot_falls_back),
    TCT(warm_off_does_nothing),
};

int main(int argc, char **argv)
{
    size_t n = sizeof(cases) / sizeof(cases[0]);
    int num = 0, failed = 0;
    tct_seed_init();
    backend = "threads";
    printf("# backend: threads\n");
    tct_run(argc, argv, cases, n, &num, &failed);
    if (use_uring()) {
        printf("# backend: io_uring\n");
        tct_run(argc, argv, cases, n, &num, &failed);
    } else {
        tcu_skip_uring(argc, argv, cases, n, &num);
    }
    printf("1..%d\n", num);
    if (dir[0] != '\0')
        tcu_rm_rf(dir);
    return failed > 0 ? 1 : 0;
}
