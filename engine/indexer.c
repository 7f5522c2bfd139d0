/*
 * indexer.c - the index writer: applies durable journal records to the
 * LMDB index in large transactions, then updates what depends on the
 * index: the filter of keys on disk, the live bytes of segments, and the
 * items pinned in memory, which it unpins.
 *
 * Records arrive in LSN order and are applied in it; the meta record
 * (checkpoint LSN, where the next record starts, CAS ceiling, flush
 * state) is written in the same transaction, so a committed checkpoint
 * always matches the keys. Commits are synchronous (idx.h).
 *
 * The filter and the live bytes change only after a commit succeeded: a
 * failed commit (the map is full) is retried with the same records, and
 * the filter must not count a key twice or drop one twice. A key "counts"
 * in the filter when its index entry exists and is not flushed (its LSN is
 * at least meta.flush_lsn).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "disk_int.h"
#include "item.h"

#define IX_BATCH_MAX 65536
#define IX_BATCH_TIGHT 8192 /* near the disk budget */
/* A commit waits this long after the previous one for more records
 * (unless records in memory pass IX_HURRY of the queue's limit, or the
 * journal waits for room): larger commits write each LMDB page they
 * change once for more keys, and take fewer fdatasyncs from the
 * journal's. */
#define IX_INTERVAL_MS 50
#define IX_HURRY(d) ((d)->cfg.queue_max / 4)
/* CAS values are reserved this far ahead of the highest one logged. */
#define IX_CAS_BLOCK (UINT64_C(1) << 32)

enum { IXOP_ADD, IXOP_REMOVE, IXOP_CLEAR, IXOP_LIVE };

typedef struct ix_op {
    uint8_t kind;
    uint64_t h;     /* ADD, REMOVE */
    uint64_t seg;   /* LIVE */
    int64_t delta;  /* LIVE */
} ix_op;

typedef struct ix_ops {
    ix_op *v;
    size_t n;
    size_t cap;
} ix_ops;

/* Room for n more operations; false when out of memory. Reserved before
 * a run, so that no operation is ever dropped: a dropped filter add
 * would hide a key that is on disk. */
static bool ops_reserve(ix_ops *o, size_t n)
{
    if (o->cap - o->n >= n)
        return true;
    size_t cap = o->n + n;
    ix_op *v = realloc(o->v, cap * sizeof(*v));
    if (v == NULL)
        return false;
    o->v = v;
    o->cap = cap;
    return true;
}

static void ops_push(ix_ops *o, ix_op op)
{
    o->v[o->n++] = op; /* ops_reserve made room: 3 per entry at most */
}

void indexer_push(disk *d, jr_entry *head, jr_entry *tail)
{
    pthread_mutex_lock(&d->ix_lock);
    if (d->ix_tail != NULL)
        d->ix_tail->next = head;
    else
        d->ix_head = head;
    d->ix_tail = tail;
    pthread_cond_signal(&d->ix_cond);
    pthread_mutex_unlock(&d->ix_lock);
}

static bool counts(const disk *d, const idx_loc *l)
{
    return l->lsn >= d->meta.flush_lsn;
}

/* Takes a key out of the index, recording what follows from it. */
static tc_status ix_remove(disk *d, ix_ops *ops, const char *key, size_t klen,
                           uint64_t h)
{
    idx_loc old;
    tc_status st = idx_del(d->ix, key, klen, &old);
    if (st == TC_ENOTFOUND)
        return TC_OK;
    if (st != TC_OK)
        return st;
    ops_push(ops, (ix_op){IXOP_LIVE, 0, old.seg, -(int64_t)old.len});
    if (counts(d, &old))
        ops_push(ops, (ix_op){IXOP_REMOVE, h, 0, 0});
    return TC_OK;
}

static tc_status ix_apply(disk *d, ix_ops *ops, jr_entry *e,
                          uint64_t *max_cas)
{
    struct tc_item *it = e->item;
    const char *key = it != NULL ? item_key(it) : NULL;
    size_t klen = it != NULL ? item_klen(it) : 0;
    uint64_t h = it != NULL ? mem_hash(d->m, key, klen) : 0;
    idx_loc loc, old;
    bool had;
    tc_status st;

    if (it != NULL && it->cas > *max_cas)
        *max_cas = it->cas;
    if (e->seg == 0) /* not written: forget the key (journal.c) */
        return it != NULL ? ix_remove(d, ops, key, klen, h) : TC_OK;
    switch (e->type) {
    case SEG_SET:
        loc = (idx_loc){
            .seg = e->seg,
            .off = e->off,
            .len = e->len,
            .lsn = e->lsn,
            .cas = it->cas,
            .flags = it->flags,
            .exptime = item_exptime(it),
            .raw_len = (uint32_t)item_vlen(it),
            .codec = e->codec,
            .meta = e->meta,
        };
        st = idx_put(d->ix, key, klen, &loc, &old, &had);
        if (st != TC_OK)
            return st;
        if (had)
            ops_push(ops, (ix_op){IXOP_LIVE, 0, old.seg, -(int64_t)old.len});
        ops_push(ops, (ix_op){IXOP_LIVE, 0, e->seg, (int64_t)e->len});
        if (!had || !counts(d, &old))
            ops_push(ops, (ix_op){IXOP_ADD, h, 0, 0});
        return TC_OK;
    case SEG_DELETE:
        return ix_remove(d, ops, key, klen, h);
    case SEG_TOUCH:
        st = idx_get_w(d->ix, key, klen, &loc);
        if (st == TC_ENOTFOUND)
            return TC_OK;
        if (st != TC_OK)
            return st;
        loc.exptime = e->exptime;
        loc.meta = e->meta;
        return idx_put(d->ix, key, klen, &loc, NULL, NULL);
    case SEG_FLUSH:
        if (e->scheduled) {
            d->meta.flush_at = e->exptime;
        } else {
            d->meta.flush_lsn = e->lsn;
            d->meta.flush_at = 0;
            ops_push(ops, (ix_op){IXOP_CLEAR, 0, 0, 0});
        }
        return TC_OK;
    }
    return TC_OK;
}

/* Marks in skip[] the entries of a run whose key a later entry of the run
 * decides: a SET, a DELETE, or a failed write (which takes the key out).
 * The index, the filter and the live bytes end the same without them (a
 * TOUCH depends on what it touches, so it decides nothing, and a record
 * before it is kept). Under a skewed load most of a run's records are of
 * keys written again in it. Out of memory, nothing is skipped. */
static void ix_superseded(disk *d, jr_entry *first, size_t n, bool *skip)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    uint32_t *slot = calloc(cap, sizeof(*slot)); /* entry index + 1 */
    jr_entry **ents = malloc(n * sizeof(*ents));
    memset(skip, 0, n * sizeof(*skip));
    if (slot == NULL || ents == NULL) {
        free(slot);
        free(ents);
        return;
    }
    jr_entry *e = first;
    for (size_t i = 0; i < n; i++, e = e->next)
        ents[i] = e;
    for (size_t i = n; i-- > 0;) {
        const struct tc_item *it = ents[i]->item;
        if (it == NULL)
            continue; /* FLUSH */
        const char *key = item_key(it);
        size_t klen = item_klen(it);
        size_t p = (size_t)mem_hash(d->m, key, klen) & (cap - 1);
        for (; slot[p] != 0; p = (p + 1) & (cap - 1)) {
            const struct tc_item *o = ents[slot[p] - 1]->item;
            if (item_klen(o) == klen && memcmp(item_key(o), key, klen) == 0)
                break;
        }
        if (slot[p] != 0)
            skip[i] = true;
        else if (ents[i]->seg == 0 || ents[i]->type == SEG_SET ||
                 ents[i]->type == SEG_DELETE)
            slot[p] = (uint32_t)(i + 1);
    }
    free(slot);
    free(ents);
}

/* Applies a run of entries in one transaction; retries a failed commit
 * until it succeeds or the disk tier stops. */
static void ix_commit_run(disk *d, jr_entry *first, size_t n)
{
    ix_ops ops = {0};
    bool *skip = malloc(n * sizeof(*skip));
    if (skip != NULL)
        ix_superseded(d, first, n, skip);
    for (unsigned attempt = 0;; attempt++) {
        idx_meta saved = d->meta;
        uint64_t max_cas = 0;
        ops.n = 0;
        tc_status st = ops_reserve(&ops, 3 * n + 1) ? idx_begin(d->ix)
                                                   : TC_ENOMEM;
        jr_entry *e = first, *last_written = NULL, *last = NULL;
        for (size_t i = 0; i < n && st == TC_OK; i++, e = e->next) {
            if (skip != NULL && skip[i]) {
                if (e->item != NULL && e->item->cas > max_cas)
                    max_cas = e->item->cas;
            } else {
                st = ix_apply(d, &ops, e, &max_cas);
            }
            if (e->seg != 0)
                last_written = e;
            last = e;
        }
        if (st == TC_OK) {
            d->meta.checkpoint_lsn = last->lsn;
            if (last_written != NULL) {
                d->meta.next_seg = last_written->seg;
                d->meta.next_off = (uint64_t)last_written->off +
                                   last_written->len;
            }
            if (max_cas + IX_CAS_BLOCK / 2 > d->meta.cas_ceiling)
                d->meta.cas_ceiling = max_cas + IX_CAS_BLOCK;
            st = idx_set_meta(d->ix, &d->meta);
        }
        if (st == TC_OK)
            st = idx_commit(d->ix);
        else
            idx_abort(d->ix);
        if (st == TC_OK)
            break;
        d->meta = saved;
        atomic_store(&d->st_last_errno, st == TC_ENOSPC ? ENOSPC : EIO);
        atomic_fetch_add(&d->st_write_errors, 1);
        disk_warn(d, 0, "index commit failed (%s); retrying", tc_strerror(st));
        pthread_mutex_lock(&d->ix_lock);
        bool stop = d->ix_stop;
        pthread_mutex_unlock(&d->ix_lock);
        if (stop && attempt > 3)
            break; /* give up at close: recovery replays them at open */
        if (st == TC_ENOSPC)
            reclaim_step(d); /* the index filled the map: drop old keys */
        usleep(attempt < 10 ? 10000 : 100000);
    }
    for (size_t i = 0; i < ops.n; i++) {
        ix_op *o = &ops.v[i];
        switch (o->kind) {
        case IXOP_ADD:
            filter_add(d->filt, o->h);
            break;
        case IXOP_REMOVE:
            filter_remove(d->filt, o->h);
            break;
        case IXOP_CLEAR:
            filter_clear(d->filt);
            break;
        case IXOP_LIVE:
            disk_seg_live(d, o->seg, o->delta);
            break;
        }
    }
    free(ops.v);
    free(skip);
    atomic_fetch_add(&d->st_index_batches, 1);
    atomic_fetch_add(&d->st_index_records, n);
}

/* After the commit: unpins the items, gives the entries back. */
static void ix_release(disk *d, jr_entry *first, size_t n)
{
    jr_entry *e = first, *last = first;
    size_t cost = 0;
    for (size_t i = 0; i < n; i++, e = e->next) {
        if (e->item != NULL) {
            mem_unpin(d->m, e->item);
            tc_item_release(e->item);
        }
        cost += e->cost;
        last = e;
    }
    atomic_store(&d->st_indexed_lsn, last->lsn);
    atomic_fetch_sub(&d->unindexed, cost);
    journal_entries_free(d, first, n);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *indexer_main(void *arg)
{
    disk *d = arg;
    uint64_t last_commit = 0;
    for (;;) {
        pthread_mutex_lock(&d->ix_lock);
        if (d->ix_head == NULL && !d->ix_stop) {
            /* Idle: wake now and then to keep the directory within its
             * budget (and when the journal writer asks). */
            d->ix_idle = true;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&d->ix_cond, &d->ix_lock, &ts);
        }
        d->ix_idle = false;
        /* Near the budget, commits stay small and frequent, so that the
         * index grows little between two looks at the budget. */
        pthread_mutex_unlock(&d->ix_lock);
        bool tight = disk_usage(d) > d->cfg.disk_size - d->cfg.disk_size / 8;
        size_t run_max = tight ? IX_BATCH_TIGHT : IX_BATCH_MAX;
        pthread_mutex_lock(&d->ix_lock);
        while (!tight && d->ix_head != NULL && !d->ix_stop && !d->ix_hurry &&
               atomic_load(&d->unindexed) < IX_HURRY(d)) {
            uint64_t now = now_ms();
            if (now >= last_commit + IX_INTERVAL_MS)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t left_ns = (last_commit + IX_INTERVAL_MS - now) * 1000000u;
            ts.tv_sec += (time_t)(left_ns / 1000000000u);
            ts.tv_nsec += (long)(left_ns % 1000000000u);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&d->ix_cond, &d->ix_lock, &ts);
        }
        d->ix_hurry = false;
        jr_entry *batch = d->ix_head;
        d->ix_head = d->ix_tail = NULL;
        bool stop = d->ix_stop;
        pthread_mutex_unlock(&d->ix_lock);

        while (batch != NULL) {
            size_t n = 0;
            jr_entry *e = batch, *rest;
            while (e != NULL && n < run_max) {
                e = e->next;
                n++;
            }
            rest = e;
            ix_commit_run(d, batch, n);
            ix_release(d, batch, n);
            last_commit = now_ms();
            batch = rest;
        }
        if (stop)
            return NULL;
        reclaim_step(d);
    }
}

tc_status indexer_start(disk *d)
{
    io_config ic = {.backend = d->cfg.backend, .depth = 4, .pool_threads = 1};
    tc_status st = io_queue_new(&ic, &d->rq);
    if (st != TC_OK)
        return st;
    if (pthread_create(&d->indexer, NULL, indexer_main, d) != 0)
        return TC_ENOMEM;
    pthread_setname_np(d->indexer, "tc-index"); /* for top -H, perf */
    d->indexer_started = true;
    return TC_OK;
}

void indexer_stop(disk *d)
{
    if (!d->indexer_started)
        return;
    pthread_mutex_lock(&d->ix_lock);
    d->ix_stop = true;
    pthread_cond_broadcast(&d->ix_cond);
    pthread_mutex_unlock(&d->ix_lock);
    pthread_join(d->indexer, NULL);
    d->indexer_started = false;
    io_queue_free(&d->rq);
}
