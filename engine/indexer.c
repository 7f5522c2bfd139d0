/*
 * indexer.c - the index writer: applies durable journal records to the
 * LMDB index in large transactions, then updates what depends on the
 * index: the filter of keys on disk, the live bytes of segments, and the
 * items pinned in memory, which it unpins.
 *
 * Records arrive in LSN order and are taken in runs, each applied in one
 * transaction, so only the state at a run's end is ever committed; the
 * meta record (checkpoint LSN, where the next record starts, CAS ceiling,
 * flush state) is written in the same transaction, so a committed
 * checkpoint always matches the keys. Commits are synchronous (idx.h).
 * Within a run, a record that a later one of its key replaces is skipped
 * (jr_supersede, ix_skip), as are those the journal writer did not write
 * for that reason (coalesced), and the rest are applied in key order (ix_order), the
 * records of one key in LSN order.
 *
 * What this costs, measured (1M keys, 100-byte values, Zipf 0.99 sets):
 * in LSN order, a put descended the tree from its root each time, about
 * 1.5 us under random keys; in key order through one cursor, 0.2 us (plus
 * 0.1 us to sort). A commit writes every page the run changed, which
 * under random keys is most of the tree's leaves whatever the run's
 * length, so runs are long: up to three seconds apart (IX_INTERVAL_MS),
 * half of index_max or IX_BATCH_MAX records in size (IX_PUTS_MAX of them
 * applied), where a quarter of 64 MiB used to be the limit. Under that
 * load about 3 records in 4 of a run are superseded.
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
#include "keysort.h"
#include "vmem.h"

/* A run gathers this many records at most, and applies IX_PUTS_MAX of
 * them at most: the ones no later record of the run supersedes
 * (jr_supersede), FLUSH records included; the rest of what it gathered
 * starts the next run. The more records a run gathers, the more of them
 * a skewed load supersedes (Zipf 0.99 sets: 68% of 256k, 77% of 1M); but
 * LMDB keeps, for the life of the process, a buffer for every page its
 * largest commit changed: runs of a million new keys (a fill) left 36 MB
 * more resident, 20 bytes per item of a 1M fill, and runs of IX_PUTS_MAX
 * nothing. */
#define IX_BATCH_MAX (1 << 20)
#define IX_PUTS_MAX (1 << 18)
/* A commit waits this long after the previous one for more records
 * (unless records in memory pass IX_HURRY of the queue's limit, or the
 * journal waits for room). A commit writes every LMDB page it changed:
 * under random keys, most of the tree's leaves for a large run; the
 * longer the run, the more keys each page write carries, and the more of
 * its records a later record of the same key supersedes. Measured (60 s
 * of 100-byte sets, Zipf 0.99, 1M keys, one core for the whole server):
 * the index writer took 7.2 s of CPU in puts and 5.0 s in commits at one
 * second, 4.9 s and 2.0 s at three; 3.4-3.8 us of CPU per set for the
 * whole server at one second, 3.3-3.4 at three. */
#define IX_INTERVAL_MS 3000
#define IX_INTERVAL_TIGHT_MS 1500 /* near the disk budget */
#define IX_HURRY(d) ((d)->cfg.index_max / 2)
/* While reclaim's direct reads are under way, the wait for a run looks
 * at them this often (reclaim.c: rc_plan_poll). */
#define IX_READ_POLL_MS 2
/* CAS values are reserved this far ahead of the highest one logged. */
#define IX_CAS_BLOCK (UINT64_C(1) << 32)
/* Changes of the segments' live bytes applied per hold of seg_lock. */
#define IX_LIVE_GROUP 1024
/* What a run keeps allocated between runs, in entries. */
#define IX_KEEP_ENTRIES 65536

enum { IXOP_ADD, IXOP_REMOVE, IXOP_CLEAR, IXOP_LIVE };

typedef struct ix_op {
    uint64_t x;    /* ADD, REMOVE: the key's hash; LIVE: the segment */
    int32_t delta; /* LIVE: bytes (a record's size at most) */
    uint32_t off;  /* LIVE: the record's offset */
    uint8_t kind;
} ix_op;

/* A run: consecutive entries of the queue, applied in one transaction.
 * The entries are gathered in an array once (each pass would otherwise
 * chase the list's pointers again). The arrays stay allocated between
 * runs of a steady load (each allocation of them is page faults again);
 * ix_run_trim frees them when the index writer finds nothing to do. */
typedef struct ix_run {
    jr_entry **ents;
    bool *skip;   /* superseded within the run */
    jr_entry **order; /* the entries to apply, in order */
    ks_key *keys, *tmp; /* order by key (ix_order) */
    size_t n, norder, cap;
    ix_op *ops;
    size_t nops, ops_cap;
    jr_dedup dedup; /* for jr_supersede */
} ix_run;

/* The length of array i of ix_run_resize for cap entries. */
static size_t ix_run_len(size_t cap, size_t i)
{
    if (i >= 2 && cap > IX_PUTS_MAX)
        cap = IX_PUTS_MAX;
    return cap;
}

/* Resizes the arrays of r for cap entries (0: frees them); false when
 * out of memory, r then as it was. The arrays come from vmem.h. */
static bool ix_run_resize(ix_run *r, size_t cap)
{
    struct {
        void **p;
        size_t size;
    } a[] = {
        {(void **)&r->ents, sizeof(*r->ents)},
        {(void **)&r->skip, sizeof(*r->skip)},
        /* These hold the entries applied: IX_PUTS_MAX at most. */
        {(void **)&r->order, sizeof(*r->order)},
        {(void **)&r->keys, sizeof(*r->keys)},
        {(void **)&r->tmp, sizeof(*r->tmp)}, /* for ks_sort */
    };
    size_t n = sizeof(a) / sizeof(a[0]);
    for (size_t i = 0; i < n; i++) {
        size_t old = ix_run_len(r->cap, i), now = ix_run_len(cap, i);
        void *v = vm_resize(*a[i].p, old * a[i].size, now * a[i].size);
        if (v == NULL && now > 0) {
            /* Back to the old size: the ones before this one grew. */
            for (size_t j = 0; j < i; j++) {
                size_t sz = a[j].size;
                *a[j].p = vm_resize(*a[j].p, ix_run_len(cap, j) * sz,
                                    ix_run_len(r->cap, j) * sz);
            }
            return false;
        }
        *a[i].p = v;
    }
    r->cap = cap;
    return true;
}

static void ix_run_free(ix_run *r)
{
    ix_run_resize(r, 0);
    vm_resize(r->ops, r->ops_cap * sizeof(*r->ops), 0);
    jr_dedup_free(&r->dedup);
    *r = (ix_run){0};
}

static bool ix_run_reserve(ix_run *r, size_t n)
{
    return n <= r->cap || ix_run_resize(r, n);
}

static void ix_run_trim(ix_run *r)
{
    if (r->cap > IX_KEEP_ENTRIES || r->ops_cap > 3 * IX_KEEP_ENTRIES)
        ix_run_free(r);
}

/* Room for n operations; false when out of memory. Reserved before a
 * run, so that no operation is ever dropped: a dropped filter add would
 * hide a key that is on disk. */
static bool ops_reserve(ix_run *r, size_t n)
{
    if (n <= r->ops_cap)
        return true;
    ix_op *v = vm_resize(r->ops, r->ops_cap * sizeof(*r->ops),
                         n * sizeof(*r->ops));
    if (v == NULL)
        return false;
    r->ops = v;
    r->ops_cap = n;
    return true;
}

static void ops_push(ix_run *r, uint8_t kind, uint64_t x, uint32_t off,
                     int64_t delta)
{
    /* ops_reserve made room: 3 per entry at most */
    r->ops[r->nops++] =
        (ix_op){.x = x, .delta = (int32_t)delta, .off = off, .kind = kind};
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
static tc_status ix_remove(disk *d, ix_run *r, const char *key, size_t klen,
                           uint64_t h)
{
    idx_loc old;
    tc_status st = idx_del(d->ix, key, klen, &old);
    if (st == TC_ENOTFOUND)
        return TC_OK;
    if (st != TC_OK)
        return st;
    ops_push(r, IXOP_LIVE, old.seg, old.off, -(int64_t)old.len);
    if (counts(d, &old))
        ops_push(r, IXOP_REMOVE, h, 0, 0);
    return TC_OK;
}

static tc_status ix_apply(disk *d, ix_run *r, jr_entry *e)
{
    struct tc_item *it = e->item;
    const char *key = it != NULL ? item_key(it) : NULL;
    size_t klen = it != NULL ? item_klen(it) : 0;
    idx_loc loc, old;
    bool had;
    tc_status st;

    if (e->seg == 0) /* not written: forget the key (journal.c) */
        return it != NULL ? ix_remove(d, r, key, klen, e->h) : TC_OK;
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
            ops_push(r, IXOP_LIVE, old.seg, old.off, -(int64_t)old.len);
        ops_push(r, IXOP_LIVE, e->seg, e->off, (int64_t)e->len);
        reclaim_list_key(d, e->seg, e->off, key, klen);
        if (!had || !counts(d, &old))
            ops_push(r, IXOP_ADD, e->h, 0, 0);
        return TC_OK;
    case SEG_DELETE:
        return ix_remove(d, r, key, klen, e->h);
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
            ops_push(r, IXOP_CLEAR, 0, 0, 0);
        }
        return TC_OK;
    }
    return TC_OK;
}

/* Appends to order[] the kept entries of [from, to) (no FLUSH among them)
 * in key order (keysort.h); the entries of a key keep their order. */
static void ix_order_keys(ix_run *r, size_t from, size_t to)
{
    size_t nk = 0;
    for (size_t i = from; i < to; i++) {
        if (i + 8 < to)
            __builtin_prefetch(r->ents[i + 8]->item);
        if (r->skip[i])
            continue;
        const struct tc_item *it = r->ents[i]->item;
        r->keys[nk++] = (ks_key){.key = (const unsigned char *)item_key(it),
                                 .klen = (uint32_t)item_klen(it),
                                 .i = (uint32_t)i};
    }
    ks_sort(r->keys, r->tmp, nk);
    for (size_t j = 0; j < nk; j++)
        r->order[r->norder++] = r->ents[r->keys[j].i];
}

/* Fills order[]: the kept entries by key between FLUSH records, which
 * stay where they are (what a key's old entry counts for depends on the
 * flushes before it, counts()). Across keys, the order of application
 * changes nothing: the filter's and the live bytes' operations commute. */
static void ix_order(ix_run *r)
{
    size_t from = 0;
    r->norder = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->ents[i]->item != NULL)
            continue;
        ix_order_keys(r, from, i);
        r->order[r->norder++] = r->ents[i];
        from = i + 1;
    }
    ix_order_keys(r, from, r->n);
}

/* Marks the entries of the run that are skipped: those of keys a later
 * entry of the run decides (the index, the filter and the live bytes end
 * the same without them), and those the journal did not write for the
 * same reason. Then shortens the run to its first IX_PUTS_MAX entries
 * not skipped: an entry skipped for a later one left out is still right
 * to skip, as that one comes in the next run (and after a crash,
 * recovery replays it: its LSN is past this run's checkpoint). */
static void ix_skip(ix_run *r)
{
    jr_supersede(&r->dedup, r->ents, r->n, r->skip, true);
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!r->skip[i] && ++kept > IX_PUTS_MAX) {
            r->n = i;
            break;
        }
    }
}

/* Applies a run (ix_skip done) in one transaction; retries a failed
 * commit until it succeeds or the disk tier stops. */
static void ix_commit_run(disk *d, ix_run *r)
{
    /* At least the CAS of every item of the run: the journal writer
     * stored it before handing them over. (A pass over the run's items
     * for it took 0.25 s of the 9.6-9.9 s of CPU the index writer's
     * phases took in 30 s of sets.) */
    uint64_t max_cas = atomic_load(&d->jw_max_cas);
    const jr_entry *last_written = NULL;
    for (size_t i = r->n; i-- > 0 && last_written == NULL;)
        if (r->ents[i]->seg != 0)
            last_written = r->ents[i];
    ix_order(r);
    for (unsigned attempt = 0;; attempt++) {
        idx_meta saved = d->meta;
        r->nops = 0;
        tc_status st = ops_reserve(r, 3 * r->norder + 1) ? idx_begin(d->ix)
                                                         : TC_ENOMEM;
        for (size_t k = 0; k < r->norder && st == TC_OK; k++) {
            /* In key order the entries and items are all over memory:
             * ask for them ahead (an item once its entry is in). */
            if (k + 16 < r->norder)
                __builtin_prefetch(r->order[k + 16]);
            if (k + 8 < r->norder && r->order[k + 8]->item != NULL)
                __builtin_prefetch(r->order[k + 8]->item);
            st = ix_apply(d, r, r->order[k]);
        }
        /* The segments reclaim_plan read are drained in the same
         * transaction: most of the pages they change, the run changed
         * already, and one commit writes them once. */
        if (st == TC_OK)
            st = reclaim_apply(d);
        if (st == TC_OK) {
            d->meta.checkpoint_lsn = r->ents[r->n - 1]->lsn;
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
        reclaim_applied(d, false); /* read again when it is time */
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
    for (size_t i = 0; i < r->nops; i++) {
        const ix_op *o = &r->ops[i];
        switch (o->kind) {
        case IXOP_ADD:
            filter_add(d->filt, o->x);
            break;
        case IXOP_REMOVE:
            filter_remove(d->filt, o->x);
            break;
        case IXOP_CLEAR:
            filter_clear(d->filt);
            break;
        }
    }
    /* The segments' live bytes and maps, IX_LIVE_GROUP changes per hold
     * of the table's lock (a lock per change was 2% of the server's
     * samples under 100-byte sets; readers look segments up under it, so
     * it is let go now and then). */
    for (size_t i = 0; i < r->nops;) {
        seg_info *last = NULL;
        size_t end = i + IX_LIVE_GROUP < r->nops ? i + IX_LIVE_GROUP : r->nops;
        pthread_mutex_lock(&d->seg_lock);
        for (; i < end; i++) {
            const ix_op *o = &r->ops[i];
            if (o->kind == IXOP_LIVE)
                disk_seg_live_locked(d, &last, o->x, o->off, o->delta);
        }
        pthread_mutex_unlock(&d->seg_lock);
    }
    reclaim_applied(d, true);
    atomic_fetch_add(&d->st_index_batches, 1);
    atomic_fetch_add(&d->st_index_records, r->n);
    atomic_fetch_add(&d->st_index_superseded, r->n - r->norder);
}

/* After the commit: unpins the items, gives the entries back. The item
 * of a superseded entry is not looked for: the later entry of its key
 * either logged the same item (and unpins it) or replaced it in the
 * memory tier for good. */
static void ix_release(disk *d, ix_run *r)
{
    size_t cost = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i + 8 < r->n && r->ents[i + 8]->item != NULL) {
            __builtin_prefetch(r->ents[i + 8]->item);
            if (!r->skip[i + 8])
                mem_prefetch(d->m, r->ents[i + 8]->h);
        }
        jr_entry *e = r->ents[i];
        if (e->item != NULL) {
            if (!r->skip[i])
                mem_unpin(d->m, e->item, e->h, e->copy);
            tc_item_release(e->item);
        }
        cost += e->cost;
    }
    atomic_store(&d->st_indexed_lsn, r->ents[r->n - 1]->lsn);
    atomic_fetch_sub(&d->unindexed, cost);
    journal_entries_free(d, r->ents, r->n);
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
    ix_run run = {0};
    bool ran = true;
    for (;;) {
        /* Nothing to do, and nothing the last time either (a queue
         * found empty just after a run is no lull: the journal writer
         * hands over every flush_ms): the arrays of the last runs go (a
         * burst may have made them hundreds of megabytes). Freed under a
         * steady load, they came back as page faults: 200k in 40 s of
         * sets, 2% of the server's CPU samples. */
        pthread_mutex_lock(&d->ix_lock);
        bool idle = !ran && d->ix_head == NULL && !d->ix_stop;
        pthread_mutex_unlock(&d->ix_lock);
        if (idle) {
            ix_run_trim(&run);
            journal_trim_spares(d);
            reclaim_trim(d);
        }
        pthread_mutex_lock(&d->ix_lock);
        while (d->ix_head == NULL && !d->ix_stop && d->rc_nread > 0) {
            /* reclaim's reads under way, and nothing else to do */
            pthread_mutex_unlock(&d->ix_lock);
            reclaim_reads_poll(d, IX_READ_POLL_MS);
            pthread_mutex_lock(&d->ix_lock);
        }
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
        /* Near the budget, commits come more often: reclaiming a segment
         * takes two of them (reclaim.c). */
        pthread_mutex_unlock(&d->ix_lock);
        bool tight = disk_usage(d) > d->cfg.disk_size - d->cfg.disk_size / 8;
        uint64_t interval = tight ? IX_INTERVAL_TIGHT_MS : IX_INTERVAL_MS;
        pthread_mutex_lock(&d->ix_lock);
        while (d->ix_head != NULL && !d->ix_stop && !d->ix_hurry &&
               atomic_load(&d->unindexed) < IX_HURRY(d)) {
            uint64_t now = now_ms();
            if (now >= last_commit + interval)
                break;
            if (d->rc_nread > 0) {
                /* reclaim's reads under way: taken as they end, so that
                 * the next run can drain their segments */
                pthread_mutex_unlock(&d->ix_lock);
                reclaim_reads_poll(d, IX_READ_POLL_MS);
                pthread_mutex_lock(&d->ix_lock);
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t left_ns = (last_commit + interval - now) * 1000000u;
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
        ran = batch != NULL;
        d->ix_head = d->ix_tail = NULL;
        bool stop = d->ix_stop;
        pthread_mutex_unlock(&d->ix_lock);

        while (batch != NULL) {
            jr_entry *e = batch;
            run.n = 0;
            while (e != NULL && run.n < IX_BATCH_MAX) {
                if (run.n == run.cap) {
                    size_t cap = run.cap < 1024 ? 1024 : 2 * run.cap;
                    if (cap > IX_BATCH_MAX)
                        cap = IX_BATCH_MAX;
                    if (!ix_run_reserve(&run, cap))
                        break; /* out of memory: a shorter run */
                }
                run.ents[run.n++] = e;
                e = e->next;
            }
            if (run.n == 0) {
                usleep(10000); /* out of memory: try again */
                continue;
            }
            size_t gathered = run.n;
            ix_skip(&run);
            if (run.n < gathered)
                e = run.ents[run.n]; /* the rest: the next run */
            reclaim_plan(d);
            ix_commit_run(d, &run);
            ix_release(d, &run);
            reclaim_finish(d);
            last_commit = now_ms();
            batch = e;
        }
        if (stop) {
            reclaim_reads_poll(d, -1);
            ix_run_free(&run);
            reclaim_trim(d);
            reclaim_lists_free(d);
            return NULL;
        }
        /* Reclaiming has a transaction of its own only when no run came
         * to carry it: under load, a run's transaction drains the
         * segments (reclaim_plan above), and the drops cost no commit of
         * their own. One after every run cost the index writer 3.0 s of
         * CPU in 40 s of sets past the budget (0.4 s in the runs). */
        if (!ran)
            reclaim_step(d);
    }
}

tc_status indexer_start(disk *d)
{
    io_config ic = {.backend = d->cfg.backend, .depth = 64, .pool_threads = 1};
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
