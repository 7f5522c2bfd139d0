/*
 * warm.c - warm start (see warm.h): the hot-key snapshot and the preload.
 *
 * The snapshot's payload (stored by idx_hot_write, which adds a format
 * version and a CRC-32C) is a list of keys, hottest first, each as one
 * length byte and the key. One thread does everything: the preload
 * first, then a snapshot every snapshot_s seconds until warm_stop, which
 * takes the last one itself. A snapshot is never taken while the preload
 * runs (memory then holds only part of the hot set) nor after a preload
 * that was abandoned: the previous snapshot stays.
 *
 * Invariants: the preload inserts only through mem_promote, under the
 * shard lock, and only while the index still holds the LSN it read (so a
 * set, delete or flush that arrived meanwhile wins); it never takes the
 * memory tier past its limit.
 */
#include "warm.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "disk_int.h"
#include "item.h"

/* Keys looked up, sorted and read together. */
#define WARM_BATCH 1024u
/* Reads in flight. */
#define WARM_DEPTH 256u
/* Seconds between progress lines. */
#define WARM_PROGRESS_S 2.0

enum { WARM_STATE_OFF, WARM_STATE_RUNNING, WARM_STATE_DONE };

typedef struct warm_job {
    const unsigned char *key;
    size_t klen;
    uint64_t h;
    idx_loc loc;
    unsigned char *buf;
    io_op op;
} warm_job;

typedef struct warm {
    disk *d;
    warm_config cfg;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;

    /* The preload's own machinery (its thread's). */
    io_queue *q;
    idx_reader *ir;
    zc *z;
    bool full; /* the memory tier reached its limit */
    double t0;
    double last_log;

    _Atomic int state;
    _Atomic uint64_t items;
    _Atomic uint64_t bytes;
    _Atomic uint64_t usecs; /* the preload's time, once done */
    _Atomic uint64_t snapshots; /* written since the start */
    _Atomic uint64_t snapshot_keys; /* in the last one */
} warm;

static double warm_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An information line through the log callback (not rate-limited: a
 * preload writes a handful). */
static void warm_log(warm *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warm_log(warm *w, const char *fmt, ...)
{
    if (w->d->cfg.log == NULL)
        return;
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "warm: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    w->d->cfg.log(w->d->cfg.log_arg, msg);
}

static bool warm_stopping(warm *w)
{
    pthread_mutex_lock(&w->lock);
    bool s = w->stop;
    pthread_mutex_unlock(&w->lock);
    return s;
}

static void warm_progress(warm *w, const char *what)
{
    double t = warm_clock() - w->t0;
    uint64_t items = atomic_load(&w->items), bytes = atomic_load(&w->bytes);
    warm_log(w, "%s%" PRIu64 " items, %" PRIu64 " bytes (%.1f MB) in %.2f s, "
             "%.1f MB/s", what, items, bytes, (double)bytes / 1e6, t,
             t > 0 ? (double)bytes / 1e6 / t : 0.0);
}

/* ---- the newest data (mode ALL without a snapshot) ---- */

typedef struct newest_key {
    uint64_t lsn;
    size_t cost;
    size_t off; /* of the key in the arena */
    uint8_t klen;
} newest_key;

typedef struct newest_scan {
    disk *d;
    uint64_t flush_lsn;
    uint32_t now;
    newest_key *keys;
    size_t n, cap;
    unsigned char *arena;
    size_t alen, acap;
    bool oom;
} newest_scan;

static bool newest_one(void *arg, const void *key, size_t klen,
                       const idx_loc *loc)
{
    newest_scan *s = arg;
    if (loc->lsn < s->flush_lsn ||
        (loc->exptime != 0 && loc->exptime <= s->now) || klen == 0 ||
        klen > TC_KEY_MAX)
        return true;
    if (s->n == s->cap) {
        size_t cap = s->cap != 0 ? s->cap * 2 : 1024;
        newest_key *k = realloc(s->keys, cap * sizeof(*k));
        if (k == NULL)
            goto oom;
        s->keys = k;
        s->cap = cap;
    }
    if (s->alen + klen > s->acap) {
        size_t cap = s->acap != 0 ? s->acap * 2 : 65536;
        while (cap < s->alen + klen)
            cap *= 2;
        unsigned char *a = realloc(s->arena, cap);
        if (a == NULL)
            goto oom;
        s->arena = a;
        s->acap = cap;
    }
    memcpy(s->arena + s->alen, key, klen);
    s->keys[s->n++] = (newest_key){loc->lsn,
                                   item_size(klen, loc->raw_len) + 16,
                                   s->alen, (uint8_t)klen};
    s->alen += klen;
    return true;
oom:
    s->oom = true;
    return false;
}

static int newest_cmp(const void *a, const void *b)
{
    const newest_key *x = a, *y = b;
    return x->lsn < y->lsn ? 1 : x->lsn > y->lsn ? -1 : 0;
}

/* The keys of the newest records, newest first, until their cost fills
 * the memory tier; in the snapshot's payload format. */
static tc_status warm_newest(warm *w, unsigned char **out, size_t *len,
                             uint32_t *nkeys)
{
    disk *d = w->d;
    newest_scan s = {.d = d, .flush_lsn = disk_flush_lsn(d),
                     .now = d->cfg.now(d->cfg.now_arg)};
    unsigned char *p = NULL;
    tc_status st = idx_scan(d->ix, newest_one, &s);
    if (st == TC_OK && s.oom)
        st = TC_ENOMEM;
    if (st != TC_OK)
        goto out;
    if (s.n > 0)
        qsort(s.keys, s.n, sizeof(*s.keys), newest_cmp);
    size_t limit = mem_limit(d->m), cost = 0, plen = 0, n = 0;
    while (n < s.n && cost < limit) {
        plen += 1 + s.keys[n].klen;
        cost += s.keys[n].cost;
        n++;
    }
    p = malloc(plen > 0 ? plen : 1);
    if (p == NULL) {
        st = TC_ENOMEM;
        goto out;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        p[at] = s.keys[i].klen;
        memcpy(p + at + 1, s.arena + s.keys[i].off, s.keys[i].klen);
        at += 1 + s.keys[i].klen;
    }
    *out = p;
    *len = plen;
    *nkeys = (uint32_t)n;
    p = NULL;
out:
    free(p);
    free(s.keys);
    free(s.arena);
    return st;
}

/* ---- the preload ---- */

typedef struct warm_check {
    warm *w;
    const warm_job *j;
} warm_check;

/* Under the shard lock: does the index still hold what was read, and is
 * it not flushed since (the preload reads for longer than a get)? */
static bool warm_still_current(void *arg)
{
    warm_check *c = arg;
    idx_loc now;
    if (c->j->loc.lsn < disk_flush_lsn(c->w->d))
        return false;
    idx_reader_reset(c->w->ir);
    tc_status st = idx_lookup(c->w->ir, c->j->key, c->j->klen, &now);
    idx_reader_reset(c->w->ir);
    return st == TC_OK && now.lsn == c->j->loc.lsn &&
           now.seg == c->j->loc.seg && now.off == c->j->loc.off;
}

static void warm_complete(warm *w, warm_job *j)
{
    disk *d = w->d;
    struct tc_item *it;
    tc_status st = disk_record_item(d, w->z, &j->loc, j->key, j->klen, j->buf,
                                    j->op.res, &it);
    free(j->buf);
    j->buf = NULL;
    if (st == TC_ECORRUPT) {
        atomic_fetch_add(&d->st_disk_read_errors, 1);
        disk_warn(d, j->op.res < 0 ? (int)-j->op.res : 0,
                  "warm start: record in segment %" PRIu64 " at offset %" PRIu32
                  " failed its checks; not preloaded", j->loc.seg, j->loc.off);
    }
    if (st != TC_OK)
        return;
    size_t cost = item_total(it) + 16;
    if (mem_used(d->m) + cost > mem_limit(d->m)) {
        w->full = true;
    } else {
        warm_check c = {w, j};
        if (mem_promote(d->m, j->h, it, d->cfg.now(d->cfg.now_arg),
                        warm_still_current, &c)) {
            atomic_fetch_add(&w->items, 1);
            atomic_fetch_add(&w->bytes, item_vlen(it));
        }
    }
    item_unref(it);
}

static void warm_reap(warm *w, unsigned min)
{
    io_op *done[WARM_DEPTH];
    unsigned n = io_reap(w->q, done, WARM_DEPTH, min, min > 0 ? 1000 : 0);
    for (unsigned i = 0; i < n; i++)
        warm_complete(w, done[i]->user);
}

static int job_cmp(const void *a, const void *b)
{
    const warm_job *x = a, *y = b;
    if (x->loc.seg != y->loc.seg)
        return x->loc.seg < y->loc.seg ? -1 : 1;
    return x->loc.off < y->loc.off ? -1 : x->loc.off > y->loc.off ? 1 : 0;
}

/* One batch: look up, sort, read, insert. */
static void warm_batch(warm *w, warm_job *jobs, unsigned n)
{
    disk *d = w->d;
    uint64_t flush_lsn = disk_flush_lsn(d);
    uint32_t now = d->cfg.now(d->cfg.now_arg);
    unsigned m = 0;
    for (unsigned i = 0; i < n; i++) {
        warm_job *j = &jobs[i];
        if (idx_lookup(w->ir, j->key, j->klen, &j->loc) != TC_OK ||
            j->loc.lsn < flush_lsn ||
            (j->loc.exptime != 0 && j->loc.exptime <= now))
            continue;
        j->h = mem_hash(d->m, j->key, j->klen);
        if (m != i)
            jobs[m] = *j;
        m++;
    }
    idx_reader_reset(w->ir);
    if (w->cfg.hook != NULL)
        w->cfg.hook(w->cfg.hook_arg);
    qsort(jobs, m, sizeof(*jobs), job_cmp);
    for (unsigned i = 0; i < m && !w->full; i++) {
        warm_job *j = &jobs[i];
        int fd = disk_seg_fd(d, j->loc.seg);
        if (fd < 0)
            continue; /* reclaimed meanwhile */
        j->buf = malloc(j->loc.len);
        if (j->buf == NULL)
            break;
        io_prep_read(&j->op, fd, j->buf, j->loc.len, j->loc.off);
        j->op.user = j;
        while (io_submit(w->q, &j->op) == TC_EBUSY)
            warm_reap(w, 1);
        atomic_fetch_add(&d->st_disk_reads, 1);
    }
    io_flush(w->q);
    while (io_queue_inflight(w->q) > 0)
        warm_reap(w, 1);
}

static void warm_preload(warm *w)
{
    disk *d = w->d;
    unsigned char *keys = NULL;
    size_t len = 0;
    uint32_t nkeys = 0;
    const char *source = "the hot-key snapshot";
    tc_status st = idx_hot_read(d->ix, &keys, &len, &nkeys);
    if (st != TC_OK) {
        if (st == TC_ENOTFOUND)
            warm_log(w, "no hot-key snapshot in the index%s",
                     w->cfg.mode == TC_WARM_ALL
                         ? "; preloading the newest data"
                         : "; nothing to preload");
        else
            warm_log(w, "the hot-key snapshot cannot be used (%s)%s",
                     tc_strerror(st),
                     w->cfg.mode == TC_WARM_ALL
                         ? "; preloading the newest data instead"
                         : "; nothing preloaded");
        if (w->cfg.mode != TC_WARM_ALL)
            return;
        source = "the newest data";
        st = warm_newest(w, &keys, &len, &nkeys);
        if (st != TC_OK) {
            warm_log(w, "cannot scan the index: %s", tc_strerror(st));
            return;
        }
    }
    warm_job *jobs = calloc(WARM_BATCH, sizeof(*jobs));
    if (jobs == NULL) {
        free(keys);
        return;
    }
    warm_log(w, "preloading %" PRIu32 " keys from %s", nkeys, source);
    size_t at = 0;
    while (at < len && !w->full && !warm_stopping(w)) {
        unsigned n = 0;
        while (n < WARM_BATCH && at < len) {
            size_t klen = keys[at];
            if (klen == 0 || at + 1 + klen > len) {
                at = len; /* cannot happen past the CRC; stop cleanly */
                break;
            }
            jobs[n].key = keys + at + 1;
            jobs[n].klen = klen;
            jobs[n].buf = NULL;
            n++;
            at += 1 + klen;
        }
        if (mem_used(d->m) >= mem_limit(d->m)) {
            w->full = true;
            break;
        }
        warm_batch(w, jobs, n);
        double t = warm_clock();
        if (t - w->last_log >= WARM_PROGRESS_S) {
            w->last_log = t;
            warm_progress(w, "progress: ");
        }
    }
    free(jobs);
    free(keys);
}

/* ---- the snapshot ---- */

static void warm_snapshot(warm *w)
{
    disk *d = w->d;
    unsigned char *keys;
    size_t len;
    uint32_t n;
    tc_status st = mem_hot_keys(d->m, d->cfg.now(d->cfg.now_arg), &keys, &len,
                                &n);
    if (st == TC_OK) {
        st = idx_hot_write(d->ix, keys, len, n);
        free(keys);
    }
    if (st == TC_OK) {
        atomic_store(&w->snapshot_keys, n);
        atomic_fetch_add(&w->snapshots, 1);
    }
    if (st != TC_OK)
        disk_warn(d, 0, "warm start: the hot-key snapshot was not written: %s",
                  tc_strerror(st));
}

static void *warm_main(void *arg)
{
    warm *w = arg;
    warm_preload(w);
    double secs = warm_clock() - w->t0;
    atomic_store(&w->usecs, (uint64_t)(secs * 1e6));
    bool stopped = warm_stopping(w);
    io_queue_free(&w->q);
    idx_reader_free(&w->ir);
    zc_free(&w->z);
    if (stopped) {
        warm_log(w, "preload abandoned at close");
        return NULL;
    }
    warm_progress(w, w->full ? "done (memory full): " : "done: ");
    atomic_store(&w->state, WARM_STATE_DONE);

    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        if (w->cfg.snapshot_s == 0) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += w->cfg.snapshot_s;
        int rc = 0;
        while (!w->stop && rc == 0)
            rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->lock);
        warm_snapshot(w);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

tc_status warm_start(disk *d, const warm_config *wc)
{
    if (wc->mode == TC_WARM_OFF)
        return TC_OK;
    warm *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TC_ENOMEM;
    w->d = d;
    w->cfg = *wc;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    atomic_init(&w->state, WARM_STATE_RUNNING);
    w->t0 = warm_clock();
    w->last_log = w->t0;
    d->wm = w;
    io_config ic = {.backend = d->cfg.backend, .depth = WARM_DEPTH,
                    .pool_threads = 4};
    tc_status st = io_queue_new(&ic, &w->q);
    if (st == TC_OK)
        st = idx_reader_new(d->ix, &w->ir);
    if (st == TC_OK)
        st = zc_new(0, 0, &w->z);
    if (st == TC_OK && pthread_create(&w->thread, NULL, warm_main, w) != 0)
        st = TC_ENOMEM;
    if (st == TC_OK)
        pthread_setname_np(w->thread, "tc-warm"); /* for top -H, perf */
    if (st != TC_OK) {
        warm_stop(d);
        return st;
    }
    w->started = true;
    return TC_OK;
}

void warm_stop(disk *d)
{
    warm *w = d->wm;
    if (w == NULL)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        if (atomic_load(&w->state) == WARM_STATE_DONE)
            warm_snapshot(w);
    }
    io_queue_free(&w->q);
    idx_reader_free(&w->ir);
    zc_free(&w->z);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
    d->wm = NULL;
}

static void warm_stat_u64(tc_stat_fn fn, void *arg, const char *name,
                          uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    fn(arg, name, buf);
}

void warm_stats(disk *d, tc_stat_fn fn, void *arg)
{
    warm *w = d->wm;
    int state = w != NULL ? atomic_load(&w->state) : WARM_STATE_OFF;
    char buf[32];
    fn(arg, "warm_state", state == WARM_STATE_RUNNING ? "running"
                          : state == WARM_STATE_DONE  ? "done"
                                                      : "off");
    warm_stat_u64(fn, arg, "warm_items", w != NULL ? atomic_load(&w->items) : 0);
    warm_stat_u64(fn, arg, "warm_bytes", w != NULL ? atomic_load(&w->bytes) : 0);
    double secs = 0;
    if (state == WARM_STATE_DONE)
        secs = (double)atomic_load(&w->usecs) / 1e6;
    else if (state == WARM_STATE_RUNNING)
        secs = warm_clock() - w->t0;
    snprintf(buf, sizeof(buf), "%.3f", secs);
    fn(arg, "warm_seconds", buf);
    warm_stat_u64(fn, arg, "hot_snapshots",
                  w != NULL ? atomic_load(&w->snapshots) : 0);
    warm_stat_u64(fn, arg, "hot_snapshot_keys",
                  w != NULL ? atomic_load(&w->snapshot_keys) : 0);
}
