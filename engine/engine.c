/*
 * engine.c - opening and closing an engine, time and expiry, the
 * synchronous calls, and stats.
 *
 * The synchronous calls hash the key, read the clock once and call the
 * memory tier. Expiry times arrive in memcached's form and are stored as
 * absolute unix seconds in 32 bits (good until 2106).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "item.h"

#define ENGINE_DEFAULT_MEM ((size_t)64 * 1024 * 1024)
#define ENGINE_DEFAULT_ITEM ((size_t)1024 * 1024)
#define ENGINE_ITEM_MAX ((size_t)1024 * 1024 * 1024)
#define ENGINE_DEFAULT_SHARDS 64u
#define ENGINE_REL_MAX 2592000 /* 30 days: larger expiry times are absolute */

void tc_config_init(tc_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mem_limit = ENGINE_DEFAULT_MEM;
    cfg->item_size_max = ENGINE_DEFAULT_ITEM;
    cfg->shards = 0;
    cfg->clock = NULL;
    cfg->clock_arg = NULL;
    cfg->debug_defer = 0;
}

static uint64_t engine_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
           ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)&seed;
}

tc_status tc_open(const tc_config *cfg, tc_engine **out)
{
    tc_config c = *cfg;
    tc_status st;

    *out = NULL;
    if (c.shards == 0)
        c.shards = ENGINE_DEFAULT_SHARDS;
    if (c.mem_limit == 0 || c.item_size_max == 0 ||
        c.item_size_max > ENGINE_ITEM_MAX || c.item_size_max > c.mem_limit)
        return TC_EINVAL;

    tc_engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return TC_ENOMEM;
    e->cfg = c;
    atomic_init(&e->flush_at, 0);
    pthread_mutex_init(&e->flush_lock, NULL);
    mem_config mc = {
        .limit = c.mem_limit,
        .item_max = c.item_size_max,
        .shards = c.shards,
        .seed = engine_seed(),
    };
    st = mem_new(&mc, &e->mem);
    if (st != TC_OK) {
        pthread_mutex_destroy(&e->flush_lock);
        free(e);
        return st;
    }
    *out = e;
    return TC_OK;
}

void tc_close(tc_engine *e)
{
    if (e == NULL)
        return;
    mem_destroy(&e->mem);
    pthread_mutex_destroy(&e->flush_lock);
    free(e);
}

/* ---- time ---- */

/*
 * Carries out the delayed flush due at at. mem_flush empties the shards
 * one after another; every caller that finds the flush due waits here
 * until it is complete, and flush_at reads 0 only after, so no call made
 * after the due time sees a shard the flush has not reached yet.
 */
static void engine_flush_due(tc_engine *e, int64_t at)
{
    pthread_mutex_lock(&e->flush_lock);
    if (atomic_load(&e->flush_at) == at) {
        mem_flush(e->mem);
        /* A flush requested meanwhile replaced this one: keep it. */
        atomic_compare_exchange_strong(&e->flush_at, &at, 0);
    }
    pthread_mutex_unlock(&e->flush_lock);
}

uint32_t engine_now(tc_engine *e)
{
    int64_t now;
    if (e->cfg.clock != NULL) {
        now = e->cfg.clock(e->cfg.clock_arg);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        now = ts.tv_sec;
    }
    int64_t at = atomic_load_explicit(&e->flush_at, memory_order_acquire);
    if (at != 0 && now >= at)
        engine_flush_due(e, at);
    if (now < 1)
        now = 1;
    return now > UINT32_MAX ? UINT32_MAX : (uint32_t)now;
}

uint32_t engine_exptime(int64_t exptime, uint32_t now)
{
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1; /* 1970: already expired */
    if (exptime <= ENGINE_REL_MAX)
        exptime += now;
    return exptime > UINT32_MAX ? UINT32_MAX : (uint32_t)exptime;
}

/* ---- synchronous calls ---- */

static void engine_take_ref(void *arg, struct tc_item *it)
{
    *(tc_item **)arg = tc_item_ref(it);
}

static tc_status engine_lookup(tc_engine *e, const void *key, size_t klen,
                               uint64_t touch_abs, tc_item **out)
{
    *out = NULL;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    uint32_t now = engine_now(e);
    uint64_t h = mem_hash(e->mem, key, klen);
    tc_status st = mem_get(e->mem, h, key, klen, now, touch_abs,
                           engine_take_ref, out);
    if (st == TC_OK && *out == NULL)
        return TC_ENOMEM;
    return st;
}

void tc_prefetch(tc_engine *e, const void *key, size_t klen)
{
    if (engine_key_ok(klen))
        mem_prefetch(e->mem, mem_hash(e->mem, key, klen));
}

tc_status tc_get(tc_engine *e, const void *key, size_t klen, tc_item **out)
{
    return engine_lookup(e, key, klen, MEM_NO_TOUCH, out);
}

tc_status tc_gat(tc_engine *e, const void *key, size_t klen, int64_t exptime,
                 tc_item **out)
{
    /* The clock is read twice (here and in the lookup); a second's step
     * in between only moves the new expiry by that second. */
    uint32_t t = engine_exptime(exptime, engine_now(e));
    return engine_lookup(e, key, klen, t, out);
}

tc_status tc_store(tc_engine *e, tc_store_mode mode, const void *key,
                   size_t klen, const void *value, size_t vlen, uint32_t flags,
                   int64_t exptime, uint64_t cas, uint64_t *cas_out)
{
    if (!engine_key_ok(klen))
        return TC_EKEY;
    uint32_t now = engine_now(e);
    return mem_store(e->mem, mem_hash(e->mem, key, klen), mode, key, klen,
                     value, vlen, flags, engine_exptime(exptime, now), cas,
                     now, cas_out);
}

tc_status tc_delete(tc_engine *e, const void *key, size_t klen)
{
    if (!engine_key_ok(klen))
        return TC_EKEY;
    uint32_t now = engine_now(e);
    return mem_delete(e->mem, mem_hash(e->mem, key, klen), key, klen, now);
}

static tc_status engine_arith(tc_engine *e, const void *key, size_t klen,
                              int decr, uint64_t delta, uint64_t *result)
{
    if (!engine_key_ok(klen))
        return TC_EKEY;
    uint32_t now = engine_now(e);
    return mem_arith(e->mem, mem_hash(e->mem, key, klen), key, klen, decr,
                     delta, now, result);
}

tc_status tc_incr(tc_engine *e, const void *key, size_t klen, uint64_t delta,
                  uint64_t *result)
{
    return engine_arith(e, key, klen, 0, delta, result);
}

tc_status tc_decr(tc_engine *e, const void *key, size_t klen, uint64_t delta,
                  uint64_t *result)
{
    return engine_arith(e, key, klen, 1, delta, result);
}

tc_status tc_touch(tc_engine *e, const void *key, size_t klen,
                   int64_t exptime)
{
    if (!engine_key_ok(klen))
        return TC_EKEY;
    uint32_t now = engine_now(e);
    return mem_touch(e->mem, mem_hash(e->mem, key, klen), key, klen,
                     engine_exptime(exptime, now), now);
}

tc_status tc_flush(tc_engine *e, int64_t delay)
{
    uint32_t now = engine_now(e);
    if (delay <= 0) {
        atomic_store(&e->flush_at, 0);
        mem_flush(e->mem);
        return TC_OK;
    }
    uint32_t at = engine_exptime(delay, now);
    if (at <= now) {
        atomic_store(&e->flush_at, 0);
        mem_flush(e->mem);
    } else {
        atomic_store(&e->flush_at, (int64_t)at);
    }
    return TC_OK;
}

/* ---- stats ---- */

static void stat_u64(tc_stat_fn fn, void *arg, const char *name, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    fn(arg, name, buf);
}

tc_status tc_stats(tc_engine *e, tc_stat_fn fn, void *arg)
{
    mem_stats s;
    engine_now(e); /* a due delayed flush shows in the counts */
    mem_stats_get(e->mem, &s);
    const mem_counters *c = &s.c;

    stat_u64(fn, arg, "cmd_get", c->get_hits + c->get_misses);
    stat_u64(fn, arg, "cmd_set", c->set_cmds);
    stat_u64(fn, arg, "cmd_touch", c->touch_hits + c->touch_misses);
    stat_u64(fn, arg, "get_hits", c->get_hits);
    stat_u64(fn, arg, "get_misses", c->get_misses);
    stat_u64(fn, arg, "get_expired", c->get_expired);
    stat_u64(fn, arg, "delete_misses", c->delete_misses);
    stat_u64(fn, arg, "delete_hits", c->delete_hits);
    stat_u64(fn, arg, "incr_misses", c->incr_misses);
    stat_u64(fn, arg, "incr_hits", c->incr_hits);
    stat_u64(fn, arg, "decr_misses", c->decr_misses);
    stat_u64(fn, arg, "decr_hits", c->decr_hits);
    stat_u64(fn, arg, "cas_misses", c->cas_misses);
    stat_u64(fn, arg, "cas_hits", c->cas_hits);
    stat_u64(fn, arg, "cas_badval", c->cas_badval);
    stat_u64(fn, arg, "touch_hits", c->touch_hits);
    stat_u64(fn, arg, "touch_misses", c->touch_misses);
    stat_u64(fn, arg, "limit_maxbytes", e->cfg.mem_limit);
    stat_u64(fn, arg, "bytes", s.bytes);
    stat_u64(fn, arg, "curr_items", s.curr_items);
    stat_u64(fn, arg, "total_items", c->total_items);
    stat_u64(fn, arg, "evictions", c->evictions);
    stat_u64(fn, arg, "reclaimed", c->reclaimed);
    stat_u64(fn, arg, "item_size_max", e->cfg.item_size_max);
    stat_u64(fn, arg, "mem_shards", e->cfg.shards);
    stat_u64(fn, arg, "mem_table_slots", s.table_slots);
    stat_u64(fn, arg, "mem_small_items", s.small_items);
    stat_u64(fn, arg, "mem_ghost_hits", c->ghost_hits);
    return TC_OK;
}

void tc_stats_reset(tc_engine *e)
{
    mem_stats_reset(e->mem);
}
