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
#include "seg.h"
#include "warm.h"

#define ENGINE_DEFAULT_MEM ((size_t)64 * 1024 * 1024)
#define ENGINE_DEFAULT_ITEM ((size_t)1024 * 1024)
#define ENGINE_ITEM_MAX ((size_t)1024 * 1024 * 1024)
#define ENGINE_DEFAULT_SHARDS 64u
#define ENGINE_DEFAULT_DISK ((uint64_t)1 << 30)
#define ENGINE_COMPRESS_MIN 64
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
    cfg->dir = NULL;
    cfg->disk_size = ENGINE_DEFAULT_DISK;
    cfg->durability = TC_DURABILITY_ASYNC;
    cfg->flush_ms = 100;
    cfg->compress_level = 1;
    cfg->io_backend = NULL;
    cfg->direct_writes = TC_DIRECT_AUTO;
    cfg->warm = TC_WARM_HOT;
    cfg->hot_snapshot_s = 60;
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

static uint32_t engine_clock(void *arg)
{
    return engine_now(arg);
}

static tc_status engine_open_disk(tc_engine *e)
{
    const tc_config *c = &e->cfg;
    io_backend backend = IO_BACKEND_AUTO;
    if (c->io_backend != NULL && strcmp(c->io_backend, "io_uring") == 0)
        backend = IO_BACKEND_URING;
    else if (c->io_backend != NULL && strcmp(c->io_backend, "threads") == 0)
        backend = IO_BACKEND_THREADS;
    else if (c->io_backend != NULL && strcmp(c->io_backend, "auto") != 0)
        return TC_EINVAL;
    /* What the journal may hold not yet durable: what a crash may lose
     * under durability "async" beyond flush_ms (writers wait while it is
     * full): at 64 MiB, a fraction of a second of a disk's sequential
     * bandwidth. */
    size_t queue_max = c->mem_limit / 4;
    if (queue_max > ((size_t)64 << 20))
        queue_max = (size_t)64 << 20;
    if (queue_max < 4 * c->item_size_max)
        queue_max = 4 * c->item_size_max;
    /* What it may hold not yet indexed, pinned in memory meanwhile: the
     * larger, the more keys each index commit carries (indexer.c). */
    size_t index_max = c->mem_limit / 4;
    if (index_max > ((size_t)512 << 20))
        index_max = (size_t)512 << 20;
    if (index_max < queue_max)
        index_max = queue_max;
    disk_config dc = {
        .dir = c->dir,
        .disk_size = c->disk_size,
        .durability = c->durability,
        .flush_ms = c->flush_ms,
        .compress_level = c->compress_level,
        .compress_min = ENGINE_COMPRESS_MIN,
        .backend = backend,
        .direct_writes = c->direct_writes,
        .item_max = c->item_size_max,
        .queue_max = queue_max,
        .index_max = index_max,
        /* Reclaim's live maps: 1/256 of the budget, 4 MiB for the
         * default 1 GiB; a budget so large that they would pass this
         * share of memory reclaims its other segments reading every key
         * (reclaim.c). */
        .map_max = c->mem_limit / 16,
        .now = engine_clock,
        .now_arg = e,
        .log = c->log,
        .log_arg = c->log_arg,
    };
    char why[512] = "";
    tc_status st = disk_open(&dc, e->mem, &e->dk, &e->rec, why, sizeof(why));
    if (st != TC_OK && c->errbuf != NULL && c->errbuf_len > 0)
        snprintf(c->errbuf, c->errbuf_len, "%s", why);
    else if (st == TC_OK) {
        mem_set_disk(e->mem, e->dk);
        atomic_store(&e->flush_at, disk_pending_flush(e->dk));
        warm_config wc = {.mode = c->warm,
                          .snapshot_s = c->hot_snapshot_s,
                          .hook = c->debug_warm_hook,
                          .hook_arg = c->debug_warm_arg};
        st = warm_start(e->dk, &wc);
        if (st != TC_OK && c->errbuf != NULL && c->errbuf_len > 0)
            snprintf(c->errbuf, c->errbuf_len, "cannot start warm start: %s",
                     tc_strerror(st));
    }
    return st;
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
    if (c.dir != NULL &&
        ((unsigned)c.durability > TC_DURABILITY_NONE ||
         c.disk_size < 4 * (uint64_t)c.item_size_max ||
         c.compress_level < 0 || c.compress_level > 22 ||
         (unsigned)c.warm > TC_WARM_ALL ||
         (unsigned)c.direct_writes > TC_DIRECT_OFF))
        return TC_EINVAL;

    tc_engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return TC_ENOMEM;
    e->cfg = c;
    e->cfg.dir = NULL; /* set below to the engine's own copy */
    e->cfg.io_backend = NULL;
    atomic_init(&e->flush_at, 0);
    pthread_mutex_init(&e->flush_lock, NULL);
    mem_config mc = {
        .limit = c.mem_limit,
        .item_max = c.item_size_max,
        .shards = c.shards,
        .seed = engine_seed(),
    };
    st = mem_new(&mc, &e->mem);
    if (st == TC_OK && c.dir != NULL) {
        e->dir_copy = strdup(c.dir);
        e->backend_copy = c.io_backend != NULL ? strdup(c.io_backend) : NULL;
        if (e->dir_copy == NULL ||
            (c.io_backend != NULL && e->backend_copy == NULL)) {
            st = TC_ENOMEM;
        } else {
            e->cfg.dir = e->dir_copy;
            e->cfg.io_backend = e->backend_copy;
            st = engine_open_disk(e);
        }
    }
    if (st != TC_OK) {
        tc_close(e);
        return st;
    }
    *out = e;
    return TC_OK;
}

void tc_close(tc_engine *e)
{
    if (e == NULL)
        return;
    /* The disk tier first: its last records unpin items in memory. */
    disk_close(&e->dk);
    mem_destroy(&e->mem);
    pthread_mutex_destroy(&e->flush_lock);
    free(e->dir_copy);
    free(e->backend_copy);
    free(e);
}

/* ---- time ---- */

/*
 * Carries out the delayed flush due at at. mem_flush empties the shards
 * one after another; every caller that finds the flush due waits here
 * until it is complete, and flush_at reads 0 only after, so no call made
 * after the due time sees a shard the flush has not reached yet.
 */
static void engine_flush_now(tc_engine *e, uint32_t now);

static void engine_flush_due(tc_engine *e, int64_t at)
{
    pthread_mutex_lock(&e->flush_lock);
    if (atomic_load(&e->flush_at) == at) {
        engine_flush_now(e, (uint32_t)at);
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

void engine_meta(tc_engine *e, engine_op *op, const tc_meta_opts *o)
{
    memset(&op->mm, 0, sizeof(op->mm));
    if (o == NULL)
        return;
    op->mm.set = o->set & (TC_MO_TTL | TC_MO_VIVIFY | TC_MO_RECACHE |
                           TC_MO_CAS | TC_MO_INVALIDATE | TC_MO_NO_BUMP |
                           TC_MO_KEY64);
    if (op->mm.set & (TC_MO_TTL | TC_MO_VIVIFY | TC_MO_RECACHE)) {
        uint32_t now = engine_now(e);
        op->mm.ttl = engine_exptime(o->ttl, now);
        op->mm.vivify = engine_exptime(o->vivify_ttl, now);
        op->mm.recache = engine_exptime(o->recache_ttl, now);
    }
    op->mm.cas = o->cas;
    op->mm.initial = o->initial;
}

/* ---- running an operation ---- */

tc_status engine_run(tc_engine *e, const engine_op *op, uint32_t now,
                     mem_opt *o, mem_visit_fn visit, void *visit_arg,
                     tc_result *res)
{
    mem *m = e->mem;
    tc_status st;
    res->view = NULL;
    res->cas = 0;
    res->number = 0;
    res->exptime = 0;
    res->meta = 0;
    res->last_access = 0;
    switch (op->kind) {
    case OP_GET:
        st = mem_get(m, op->h, op->key, op->klen, now, MEM_NO_TOUCH, visit,
                     visit_arg, o);
        break;
    case OP_GAT:
        st = mem_get(m, op->h, op->key, op->klen, now, op->exptime, visit,
                     visit_arg, o);
        break;
    case OP_STORE:
        st = mem_store(m, op->h, op->mode, op->key, op->klen, op->value,
                       op->vlen, op->flags, op->exptime, op->cas, now,
                       &res->cas, o, &op->mm);
        break;
    case OP_DELETE:
        st = mem_delete(m, op->h, op->key, op->klen, now, o, &op->mm);
        break;
    case OP_ARITH:
        st = mem_arith(m, op->h, op->key, op->klen, op->decr, op->delta, now,
                       res, o, &op->mm);
        break;
    case OP_MGET:
        st = mem_mget(m, op->h, op->key, op->klen, now, &op->mm, res, visit,
                      visit_arg, o);
        break;
    case OP_TOUCH:
        st = mem_touch(m, op->h, op->key, op->klen, op->exptime, now, o);
        break;
    default:
        st = TC_EINVAL;
        break;
    }
    res->status = st;
    return st;
}

int tc_congested(tc_engine *e)
{
    return e->dk != NULL && disk_congested(e->dk);
}

void engine_count_disk_get(tc_engine *e, bool hit)
{
    atomic_fetch_add_explicit(hit ? &e->disk_get_hits : &e->disk_get_misses,
                              1, memory_order_relaxed);
}

/* ---- synchronous calls ---- */

/* Where a synchronous call waits for the disk tier's threads. */
typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    tc_status st;
    tc_item *item;
} sync_wait;

static void sync_wait_init(sync_wait *w)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->done = false;
    w->st = TC_OK;
    w->item = NULL;
}

static void sync_wait_destroy(sync_wait *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

static void sync_signal(sync_wait *w, tc_status st, tc_item *it)
{
    pthread_mutex_lock(&w->lock);
    w->st = st;
    w->item = it;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void sync_block(sync_wait *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    w->done = false;
    pthread_mutex_unlock(&w->lock);
}

static void sync_on_load(void *arg, tc_status st, struct tc_item *it)
{
    sync_signal(arg, st, it);
}

static void sync_on_wake(void *arg, tc_status st)
{
    sync_signal(arg, st, NULL);
}

static void engine_take_ref(void *arg, struct tc_item *it)
{
    *(tc_item **)arg = tc_item_ref(it);
}

/*
 * Runs op to its end on the calling thread: loads the key from disk when
 * the memory tier asks (MEM_ON_DISK) and runs it again; waits for the
 * record to be durable under sync durability. A get's hit is a reference
 * in *item.
 */
static tc_status engine_sync(tc_engine *e, const engine_op *op,
                             tc_item **item, tc_result *res)
{
    sync_wait w;
    mem_opt o = {0};
    tc_status st;
    tc_item *got = NULL;

    /* A change waits while the journal's queue is full, as a server's
     * connections do (tc_congested): what a crash may lose stays within
     * the durability mode's promise however fast the callers write. */
    if (op->kind != OP_GET && e->dk != NULL) {
        while (disk_congested(e->dk)) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
        }
    }

    sync_wait_init(&w);
    for (unsigned tries = 0;; tries++) {
        uint32_t now = engine_now(e);
        o.logged = false;
        o.after_load = tries > 0;
        if (e->dk != NULL && disk_durability(e->dk) == TC_DURABILITY_SYNC) {
            o.wake = sync_on_wake;
            o.wake_arg = &w;
        }
        st = engine_run(e, op, now, &o, engine_take_ref, &got, res);
        if (st != MEM_ON_DISK)
            break;
        disk_load(e->dk, op->h, op->key, op->klen, sync_on_load, &w);
        sync_block(&w);
        if (op->kind == OP_GET && w.st != TC_ENOTFOUND) {
            /* The value read, whether or not it stayed in memory. */
            st = res->status = w.st;
            got = w.item;
            engine_count_disk_get(e, w.st == TC_OK);
            break;
        }
        tc_item_release(w.item);
        if (op->kind == OP_MGET && !(op->mm.set & TC_MO_TTL) && tries == 0 &&
            (w.st == TC_OK || w.st == TC_ENOTFOUND))
            engine_count_disk_get(e, w.st == TC_OK);
        if (w.st != TC_OK && w.st != TC_ENOTFOUND) {
            st = res->status = w.st;
            break;
        }
        /* Absent on disk, or loaded: decide from memory now (after a few
         * rounds lost to eviction, from memory as it is). */
        o.disk_checked = w.st == TC_ENOTFOUND || tries >= 3;
        if (op->kind == OP_GET && o.disk_checked)
            engine_count_disk_get(e, false);
    }
    if (st == TC_OK && o.logged && o.wake != NULL) {
        sync_block(&w);
        if (w.st != TC_OK)
            st = res->status = w.st;
    }
    sync_wait_destroy(&w);
    if (item != NULL)
        *item = got;
    else
        tc_item_release(got);
    if (st == TC_OK &&
        (op->kind == OP_GET || op->kind == OP_GAT || op->kind == OP_MGET) &&
        got == NULL)
        return TC_ENOMEM;
    return st;
}

static void engine_op_key(tc_engine *e, engine_op *op, engine_opk kind,
                          const void *key, size_t klen)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->key = key;
    op->klen = klen;
    op->h = mem_hash(e->mem, key, klen);
}

uint64_t tc_prefetch(tc_engine *e, const void *key, size_t klen)
{
    if (!engine_key_ok(klen))
        return 0;
    uint64_t h = mem_hash(e->mem, key, klen);
    mem_prefetch(e->mem, h);
    return h;
}

void tc_prefetch_item(tc_engine *e, uint64_t token)
{
    if (token != 0)
        mem_prefetch_item(e->mem, token);
}

tc_status tc_get(tc_engine *e, const void *key, size_t klen, tc_item **out)
{
    engine_op op;
    tc_result res;
    *out = NULL;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    engine_op_key(e, &op, OP_GET, key, klen);
    return engine_sync(e, &op, out, &res);
}

tc_status tc_gat(tc_engine *e, const void *key, size_t klen, int64_t exptime,
                 tc_item **out)
{
    engine_op op;
    tc_result res;
    *out = NULL;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    engine_op_key(e, &op, OP_GAT, key, klen);
    op.exptime = engine_exptime(exptime, engine_now(e));
    return engine_sync(e, &op, out, &res);
}

tc_status tc_store(tc_engine *e, tc_store_mode mode, const void *key,
                   size_t klen, const void *value, size_t vlen, uint32_t flags,
                   int64_t exptime, uint64_t cas, uint64_t *cas_out)
{
    engine_op op;
    tc_result res;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    engine_op_key(e, &op, OP_STORE, key, klen);
    op.mode = mode;
    op.value = value;
    op.vlen = vlen;
    op.flags = flags;
    op.exptime = engine_exptime(exptime, engine_now(e));
    op.cas = cas;
    tc_status st = engine_sync(e, &op, NULL, &res);
    if (st == TC_OK && cas_out != NULL)
        *cas_out = res.cas;
    return st;
}

tc_status tc_delete(tc_engine *e, const void *key, size_t klen)
{
    engine_op op;
    tc_result res;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    engine_op_key(e, &op, OP_DELETE, key, klen);
    return engine_sync(e, &op, NULL, &res);
}

static tc_status engine_arith(tc_engine *e, const void *key, size_t klen,
                              int decr, uint64_t delta, uint64_t *result)
{
    engine_op op;
    tc_result res;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    engine_op_key(e, &op, OP_ARITH, key, klen);
    op.decr = decr;
    op.delta = delta;
    tc_status st = engine_sync(e, &op, NULL, &res);
    if (st == TC_OK && result != NULL)
        *result = res.number;
    return st;
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
    engine_op op;
    tc_result res;
    if (!engine_key_ok(klen))
        return TC_EKEY;
    engine_op_key(e, &op, OP_TOUCH, key, klen);
    op.exptime = engine_exptime(exptime, engine_now(e));
    return engine_sync(e, &op, NULL, &res);
}

/* ---- meta operations ---- */

void engine_mstore_op(tc_engine *e, engine_op *op, tc_store_mode mode,
                      const tc_meta_opts *o)
{
    engine_meta(e, op, o);
    op->mode = mode;
    /* As memcached's ms: a CAS makes a set or a replace a CAS store, an
     * add ignores it, an append or prepend checks it. */
    if (op->mm.set & TC_MO_CAS) {
        if (mode == TC_SET || mode == TC_REPLACE) {
            op->mode = TC_CAS;
            op->cas = op->mm.cas;
        } else if (mode == TC_ADD) {
            op->mm.set &= ~TC_MO_CAS;
        }
    }
}

static void engine_meta_result(tc_result *res, const tc_result *got)
{
    if (res != NULL) {
        *res = *got;
        res->view = NULL;
    }
}

tc_status tc_mget(tc_engine *e, const void *key, size_t klen,
                  const tc_meta_opts *o, tc_item **out, tc_result *res)
{
    engine_op op;
    tc_result r = {0};
    tc_item *it = NULL;
    if (out != NULL)
        *out = NULL;
    if (!engine_key_ok(klen)) {
        r.status = TC_EKEY;
        engine_meta_result(res, &r);
        return TC_EKEY;
    }
    engine_op_key(e, &op, OP_MGET, key, klen);
    engine_meta(e, &op, o);
    tc_status st = engine_sync(e, &op, &it, &r);
    r.status = st;
    engine_meta_result(res, &r);
    if (out != NULL)
        *out = it;
    else
        tc_item_release(it);
    return st;
}

tc_status tc_mstore(tc_engine *e, tc_store_mode mode, const void *key,
                    size_t klen, const void *value, size_t vlen,
                    uint32_t flags, int64_t exptime, const tc_meta_opts *o,
                    tc_result *res)
{
    engine_op op;
    tc_result r = {0};
    tc_status st = TC_EKEY;
    if (engine_key_ok(klen)) {
        engine_op_key(e, &op, OP_STORE, key, klen);
        engine_mstore_op(e, &op, mode, o);
        op.value = value;
        op.vlen = vlen;
        op.flags = flags;
        op.exptime = engine_exptime(exptime, engine_now(e));
        st = engine_sync(e, &op, NULL, &r);
    }
    r.status = st;
    engine_meta_result(res, &r);
    return st;
}

tc_status tc_mdelete(tc_engine *e, const void *key, size_t klen,
                     const tc_meta_opts *o, tc_result *res)
{
    engine_op op;
    tc_result r = {0};
    tc_status st = TC_EKEY;
    if (engine_key_ok(klen)) {
        engine_op_key(e, &op, OP_DELETE, key, klen);
        engine_meta(e, &op, o);
        st = engine_sync(e, &op, NULL, &r);
    }
    r.status = st;
    engine_meta_result(res, &r);
    return st;
}

tc_status tc_marith(tc_engine *e, const void *key, size_t klen, int decr,
                    uint64_t delta, const tc_meta_opts *o, tc_result *res)
{
    engine_op op;
    tc_result r = {0};
    tc_status st = TC_EKEY;
    if (engine_key_ok(klen)) {
        engine_op_key(e, &op, OP_ARITH, key, klen);
        engine_meta(e, &op, o);
        op.decr = decr;
        op.delta = delta;
        st = engine_sync(e, &op, NULL, &r);
    }
    r.status = st;
    engine_meta_result(res, &r);
    return st;
}

/*
 * Flushes now. With a disk tier the flush record is logged first: its
 * LSN marks every record before it flushed, and only then is memory
 * emptied, so a write racing with the flush either has a lower LSN and is
 * dropped from memory too, or a higher one and survives on disk.
 */
static void engine_flush_now(tc_engine *e, uint32_t now)
{
    if (e->dk != NULL)
        disk_log(e->dk, SEG_FLUSH, NULL, 0, now, false, NULL, NULL);
    mem_flush(e->mem);
}

tc_status tc_flush(tc_engine *e, int64_t delay)
{
    uint32_t now = engine_now(e);
    uint32_t at = delay <= 0 ? now : engine_exptime(delay, now);
    if (at <= now) {
        atomic_store(&e->flush_at, 0);
        engine_flush_now(e, now);
    } else {
        atomic_store(&e->flush_at, (int64_t)at);
        if (e->dk != NULL) /* it survives a restart */
            disk_log(e->dk, SEG_FLUSH, NULL, 0, at, true, NULL, NULL);
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

typedef struct slab_emit {
    tc_stat_fn fn;
    void *arg;
    unsigned active;
} slab_emit;

static void slab_emit_u64(const slab_emit *x, unsigned id, const char *what,
                          uint64_t v)
{
    char name[48];
    snprintf(name, sizeof(name), "%u:%s", id, what);
    stat_u64(x->fn, x->arg, name, v);
}

static void slab_class_emit(void *arg, unsigned id, const slab_class_stats *st)
{
    slab_emit *x = arg;
    uint64_t total = (uint64_t)st->pages * st->chunks_per_page;
    slab_emit_u64(x, id, "chunk_size", st->chunk_size);
    slab_emit_u64(x, id, "chunks_per_page", st->chunks_per_page);
    slab_emit_u64(x, id, "total_pages", st->pages);
    slab_emit_u64(x, id, "total_chunks", total);
    slab_emit_u64(x, id, "used_chunks", st->used);
    slab_emit_u64(x, id, "free_chunks", total - st->used);
    slab_emit_u64(x, id, "free_chunks_end", st->uncarved);
    x->active++;
}

tc_status tc_stats_slabs(tc_engine *e, tc_stat_fn fn, void *arg)
{
    slab_emit x = {fn, arg, 0};
    mem_slab_stats(e->mem, slab_class_emit, &x);
    stat_u64(fn, arg, "active_slabs", x.active);
    stat_u64(fn, arg, "total_malloced", mem_slab_bytes(e->mem));
    return TC_OK;
}

static void item_class_emit(void *arg, unsigned id, const slab_class_stats *st)
{
    const slab_emit *x = arg;
    if (st->used == 0)
        return;
    char name[48];
    snprintf(name, sizeof(name), "items:%u:number", id);
    stat_u64(x->fn, x->arg, name, st->used);
}

tc_status tc_stats_items(tc_engine *e, tc_stat_fn fn, void *arg)
{
    slab_emit x = {fn, arg, 0};
    mem_slab_stats(e->mem, item_class_emit, &x);
    return TC_OK;
}

tc_status tc_stats(tc_engine *e, tc_stat_fn fn, void *arg)
{
    mem_stats s;
    engine_now(e); /* a due delayed flush shows in the counts */
    mem_stats_get(e->mem, &s);
    const mem_counters *c = &s.c;

    uint64_t dh = atomic_load_explicit(&e->disk_get_hits, memory_order_relaxed);
    uint64_t dm = atomic_load_explicit(&e->disk_get_misses,
                                       memory_order_relaxed);
    stat_u64(fn, arg, "cmd_get", c->get_hits + c->get_misses + dh + dm);
    stat_u64(fn, arg, "cmd_set", c->set_cmds);
    stat_u64(fn, arg, "cmd_touch", c->touch_hits + c->touch_misses);
    stat_u64(fn, arg, "get_hits", c->get_hits + dh);
    stat_u64(fn, arg, "get_misses", c->get_misses + dm);
    stat_u64(fn, arg, "get_disk_hits", dh);
    {
        /* Gets answered from memory over all gets, since the engine
         * opened (stats reset does not restart it): the warm start's
         * effect. Computed here; the get path counts nothing more. */
        pthread_mutex_lock(&e->flush_lock);
        uint64_t gets = e->reset_gets + c->get_hits + c->get_misses + dh + dm;
        uint64_t hits = e->reset_mem_hits + c->get_hits;
        pthread_mutex_unlock(&e->flush_lock);
        char buf[32];
        snprintf(buf, sizeof(buf), "%.4f",
                 gets > 0 ? (double)hits / (double)gets : 0.0);
        fn(arg, "mem_hit_ratio_since_start", buf);
    }
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
    if (e->dk != NULL)
        disk_stats(e->dk, fn, arg);
    else
        fn(arg, "io_backend", "none");
    return TC_OK;
}

void tc_stats_reset(tc_engine *e)
{
    mem_stats s;
    mem_stats_get(e->mem, &s);
    uint64_t dh = atomic_load(&e->disk_get_hits);
    uint64_t dm = atomic_load(&e->disk_get_misses);
    pthread_mutex_lock(&e->flush_lock);
    e->reset_gets += s.c.get_hits + s.c.get_misses + dh + dm;
    e->reset_mem_hits += s.c.get_hits;
    pthread_mutex_unlock(&e->flush_lock);
    mem_stats_reset(e->mem);
    atomic_store(&e->disk_get_hits, 0);
    atomic_store(&e->disk_get_misses, 0);
}
