/*
 * tcutil.h - helpers the engine unit tests share on top of tctest.h: a
 * fake clock, opening an engine with a test configuration, reading one
 * statistic, and checks that print status names.
 *
 * Include after tctest.h. Everything is static so each test binary gets
 * its own copy.
 */
#ifndef TCUTIL_H
#define TCUTIL_H

#include <dirent.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tctest.h"
#include "tiercache.h"

/* Compares two tc_status values and prints their names on a mismatch. */
#define TCT_EQ_ST(a, b)                                                    \
    do {                                                                   \
        tc_status tct_sa_ = (a), tct_sb_ = (b);                            \
        if (tct_sa_ != tct_sb_) {                                          \
            printf("# %s = %s (%d), want %s (%d)\n", #a,                   \
                   tc_status_name(tct_sa_), (int)tct_sa_,                  \
                   tc_status_name(tct_sb_), (int)tct_sb_);                 \
            tct_fail(__FILE__, __LINE__, #a " == " #b);                    \
        }                                                                  \
    } while (0)

/* A clock the test moves by hand; readable from any thread. */
typedef struct tcu_clock {
    _Atomic int64_t now;
} tcu_clock;

/* A fixed starting time well past the 30-day relative window. */
#define TCU_T0 INT64_C(1700000000)

static inline int64_t tcu_clock_fn(void *arg)
{
    tcu_clock *c = arg;
    return atomic_load_explicit(&c->now, memory_order_relaxed);
}

static inline void tcu_clock_set(tcu_clock *c, int64_t t)
{
    atomic_store_explicit(&c->now, t, memory_order_relaxed);
}

static inline void tcu_clock_add(tcu_clock *c, int64_t d)
{
    atomic_fetch_add_explicit(&c->now, d, memory_order_relaxed);
}

/* Fills cfg with the defaults and the fake clock (started at TCU_T0). */
static inline void tcu_config(tc_config *cfg, tcu_clock *clk)
{
    tc_config_init(cfg);
    if (clk != NULL) {
        tcu_clock_set(clk, TCU_T0);
        cfg->clock = tcu_clock_fn;
        cfg->clock_arg = clk;
    }
}

/* Opens an engine from cfg; a failure ends the test. */
static inline tc_engine *tcu_open_cfg(const tc_config *cfg)
{
    tc_engine *e = NULL;
    TCT_EQ_ST(tc_open(cfg, &e), TC_OK);
    TCT_CHECK(e != NULL);
    return e;
}

/* Opens an engine with the defaults and the fake clock clk (may be NULL). */
static inline tc_engine *tcu_open(tcu_clock *clk)
{
    tc_config cfg;
    tcu_config(&cfg, clk);
    return tcu_open_cfg(&cfg);
}

typedef struct tcu_stat_find {
    const char *name;
    int found;
    uint64_t value;
    int parsed;
} tcu_stat_find;

static inline void tcu_stat_cb(void *arg, const char *name, const char *value)
{
    tcu_stat_find *f = arg;
    if (strcmp(name, f->name) != 0)
        return;
    f->found++;
    char *end;
    f->value = strtoull(value, &end, 10);
    f->parsed = *value != '\0' && *end == '\0';
}

/* The value of statistic name; a missing or non-numeric one ends the
 * test. */
#define tcu_stat(e, name) tcu_stat_at((e), (name), __FILE__, __LINE__)

static inline uint64_t tcu_stat_at(tc_engine *e, const char *name,
                                   const char *file, int line)
{
    tcu_stat_find f = {name, 0, 0, 0};
    if (tc_stats(e, tcu_stat_cb, &f) != TC_OK)
        tct_fail(file, line, "tc_stats failed");
    if (f.found != 1 || !f.parsed) {
        printf("# stat \"%s\": found %d times, numeric %d\n", name, f.found,
               f.parsed);
        tct_fail(file, line, "statistic present once and numeric");
    }
    return f.value;
}

/* Waits (ms milliseconds at most) until every change so far is in the
 * index, checks that it is, and returns how many milliseconds it took
 * (to 10 ms). */
static inline unsigned tcu_wait_indexed_for(tc_engine *e, unsigned ms)
{
    unsigned waited = 0;
    while (waited < ms && (tcu_stat(e, "index_lag_records") != 0 ||
                           tcu_stat(e, "journal_lag_bytes") != 0)) {
        usleep(10000);
        waited += 10;
    }
    TCT_EQ_U64(tcu_stat(e, "journal_lag_bytes"), 0);
    return waited;
}

/* tcu_wait_indexed_for with 60 s: over the disk budget, the journal
 * waits for reclaim at each segment, and draining 80 MB written into a
 * 32 MB budget has taken 15 s here (reclaim_rescues_items_read). */
#define TCU_INDEXED_MS 60000u
static inline void tcu_wait_indexed(tc_engine *e)
{
    tcu_wait_indexed_for(e, TCU_INDEXED_MS);
}

/* Key "<prefix><n>" into buf (size >= 64); returns its length. */
static inline size_t tcu_key(char *buf, const char *prefix, uint64_t n)
{
    int len = snprintf(buf, 64, "%s%" PRIu64, prefix, n);
    return (size_t)len;
}

/* Stores with TC_SET, never expiring; a failure ends the test. */
#define tcu_set(e, k, v)                                                   \
    TCT_EQ_ST(tc_store((e), TC_SET, (k), strlen(k), (v), strlen(v), 0, 0,  \
                       0, NULL),                                           \
              TC_OK)

/* Checks that key k holds the string v (tc_get, then release). */
#define tcu_expect(e, k, v)                                                \
    do {                                                                   \
        tc_item *tcu_it_ = NULL;                                           \
        tc_view tcu_v_;                                                    \
        TCT_EQ_ST(tc_get((e), (k), strlen(k), &tcu_it_), TC_OK);           \
        tc_item_view(tcu_it_, &tcu_v_);                                    \
        int tcu_same_ = tcu_v_.value_len == strlen(v) &&                   \
                        memcmp(tcu_v_.value, (v), strlen(v)) == 0;         \
        if (!tcu_same_)                                                    \
            printf("# key %s: got \"%.*s\", want \"%s\"\n", (k),           \
                   (int)(tcu_v_.value_len > 100 ? 100 : tcu_v_.value_len), \
                   (const char *)tcu_v_.value, (v));                       \
        tc_item_release(tcu_it_);                                          \
        TCT_CHECK(tcu_same_);                                              \
    } while (0)

/* Checks that key k holds no live item. */
#define tcu_expect_missing(e, k)                                           \
    do {                                                                   \
        tc_item *tcu_it_ = NULL;                                           \
        tc_status tcu_st_ = tc_get((e), (k), strlen(k), &tcu_it_);         \
        tc_item_release(tcu_it_);                                          \
        TCT_EQ_ST(tcu_st_, TC_ENOTFOUND);                                  \
        TCT_CHECK(tcu_it_ == NULL);                                        \
    } while (0)

/* Removes a directory tree (a test's data directory). */
static inline void tcu_rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char p[1024];
            int n = snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
            struct stat sb;
            if (n < 0 || (size_t)n >= sizeof(p))
                continue;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                tcu_rm_rf(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

/* Makes dir (256 bytes) a new empty directory under /tmp named after
 * prefix, removing the one it named before, if any. */
static inline void tcu_fresh_dir(char *dir, const char *prefix)
{
    if (dir[0] != '\0')
        tcu_rm_rf(dir);
    snprintf(dir, 256, "/tmp/%s-XXXXXX", prefix); /* mkdtemp's template */
    TCT_CHECK(mkdtemp(dir) != NULL);
}

#endif /* TCUTIL_H */
