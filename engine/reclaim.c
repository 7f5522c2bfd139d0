/*
 * reclaim.c - keeps the data directory within its budget (disk_size).
 *
 * When the segments and the index take more than the budget, the oldest
 * segment is reclaimed by the index writer:
 *   1. the keys of its records are read, before a transaction: only
 *      those of records its live map marks (disk_int.h, seg_info), the
 *      ones the index points at, when it has one;
 *   2. in the transaction of the index writer's next run (or one of its
 *      own if none comes), a record the index still points at is live; a
 *      live item that is hot (in the memory tier and read since it got
 *      there) is rescued: logged again from memory, so it gets a new
 *      record at the journal's head; the rest, and the expired or flushed,
 *      are dropped from the index (and the filter) at the commit;
 *   3. once the rescued records are in the index (the index writer has
 *      passed the highest LSN they got), nothing points into the segment:
 *      its file is deleted and the directory synced. They reach the index
 *      writer when durable, and the journal writer is asked to sync them
 *      at once (journal_sync_soon), not flush_ms later.
 * A rescue never overwrites newer data: it logs the version memory holds,
 * which is the newest, and a write after it has a higher LSN and wins.
 * Rescues are limited to half a segment per reclaim so that reclaiming
 * always frees room, whatever memory holds.
 *
 * The current segment and the segment holding the checkpoint are never
 * reclaimed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_int.h"
#include "item.h"
#include "keysort.h"

#define IDX_GROWTH 3

/* Bytes the directory holds, or is about to: the segments and the index
 * file. The index file never shrinks, and grows to about three times the
 * pages its trees use (a commit copies the pages it changes, up to the
 * whole tree under random keys, and the pages it frees are reused only
 * two commits later), so the index counts at least that
 * much: reclaiming starts before data.mdb has grown past its share, not
 * after, when dropping keys could no longer make it smaller. */
uint64_t disk_usage(disk *d)
{
    pthread_mutex_lock(&d->seg_lock);
    uint64_t n = d->nsegs;
    pthread_mutex_unlock(&d->seg_lock);
    uint64_t file = idx_file_bytes(d->ix);
    uint64_t grows = IDX_GROWTH * idx_live_bytes(d->ix);
    return n * d->cfg.segment_size + (grows > file ? grows : file);
}

#define RC_MAX (sizeof(((disk *)0)->rc_segs) / sizeof(uint64_t))

/* Step 3: deletes a drained segment. */
static void reclaim_delete(disk *d, uint64_t id)
{
    int fd = -1;
    pthread_mutex_lock(&d->seg_lock);
    for (size_t i = 0; i < d->nsegs && fd < 0; i++)
        if (d->segs[i].id == id)
            fd = disk_seg_remove(d, i);
    pthread_mutex_unlock(&d->seg_lock);
    char name[32];
    seg_name(id, name);
    if (fd >= 0)
        io_file_close(fd);
    io_file_unlink(d->dirfd, name);
    atomic_fetch_add(&d->st_reclaimed_segs, 1);
}

/* Step 3 for the drained segments, once their rescues are indexed. */
void reclaim_finish(disk *d)
{
    if (d->rc_n == 0 ||
        atomic_load(&d->st_indexed_lsn) < atomic_load(&d->rc_drain_lsn))
        return;
    for (size_t i = 0; i < d->rc_n; i++)
        reclaim_delete(d, d->rc_segs[i]);
    io_dir_sync(d->dirfd);
    d->rc_n = 0;
    atomic_store(&d->rc_drain_lsn, 0);
}

/* Doubles the array *v of *cap elements of size bytes (first when
 * empty); false when out of memory, *v then as it was. */
static bool rc_grow(void **v, size_t *cap, size_t size, size_t first)
{
    size_t n = *cap == 0 ? first : *cap * 2;
    void *p = realloc(*v, n * size);
    if (p == NULL)
        return false;
    *v = p;
    *cap = n;
    return true;
}

/* A segment being reclaimed: the keys of its SET records, read and
 * sorted by reclaim_plan (step 1), looked up, and dropped or rescued, in
 * the index writer's transaction by reclaim_apply (step 2); what follows
 * from the commit is done by reclaim_applied. */
struct rc_job {
    uint64_t id;
    ks_key *keys; /* in key order; .i: the record's offset */
    size_t nkeys;
    unsigned char *arena; /* the keys' bytes */
    /* reclaim_apply's results */
    uint64_t *gone; /* hashes of the keys to take out of the filter */
    size_t ngone;
    int64_t live_dropped;
    uint64_t dropped, rescued, drain;
    /* The arrays' room (elements), kept with them from job to job. */
    size_t kcap, acap, gcap, tcap, bufcap;
    ks_key *tmp;        /* for ks_sort */
    unsigned char *buf; /* the segment, read a piece at a time */
};

static void rc_job_free(rc_job *j)
{
    if (j == NULL)
        return;
    free(j->keys);
    free(j->arena);
    free(j->gone);
    free(j->tmp);
    free(j->buf);
    free(j);
}

/* A job for segment id, with the arrays of a drained one if one is kept:
 * a segment's keys take tens of megabytes, and memory new to the process
 * costs a page fault per page (in the profile of sustained sets past the
 * budget, 2% of the server's samples were the index writer's faults on
 * them). */
static rc_job *rc_job_new(disk *d, uint64_t id)
{
    rc_job *j;
    if (d->rc_nspare > 0) {
        j = d->rc_spare[--d->rc_nspare];
        rc_job kept = *j;
        *j = (rc_job){
            .keys = kept.keys, .arena = kept.arena, .gone = kept.gone,
            .tmp = kept.tmp, .buf = kept.buf, .kcap = kept.kcap,
            .acap = kept.acap, .gcap = kept.gcap, .tcap = kept.tcap,
            .bufcap = kept.bufcap};
    } else if ((j = calloc(1, sizeof(*j))) == NULL) {
        return NULL;
    }
    j->id = id;
    return j;
}

/* A job done with: kept for the next one while there is room. */
static void rc_job_put(disk *d, rc_job *j)
{
    size_t room = sizeof(d->rc_spare) / sizeof(d->rc_spare[0]);
    if (d->rc_nspare < room)
        d->rc_spare[d->rc_nspare++] = j;
    else
        rc_job_free(j);
}

void reclaim_trim(disk *d)
{
    while (d->rc_nspare > 0)
        rc_job_free(d->rc_spare[--d->rc_nspare]);
}

/* Room for n elements of size bytes in *v (of *cap); false when out of
 * memory, *v then as it was. Contents are not kept. */
static bool rc_room(void **v, size_t *cap, size_t size, size_t n)
{
    if (n <= *cap)
        return true;
    void *p = malloc(n * size);
    if (p == NULL)
        return false;
    free(*v);
    *v = p;
    *cap = n;
    return true;
}

/* Reads len bytes of fd at off into buf: the bytes read, or -errno. */
static int64_t rc_read(disk *d, int fd, unsigned char *buf, size_t len,
                       uint64_t off)
{
    io_op op, *done;
    io_prep_read(&op, fd, buf, len, off);
    if (io_submit(d->rq, &op) != TC_OK)
        return -EIO;
    while (io_reap(d->rq, &done, 1, 1, -1) == 0)
        ;
    return done->res;
}

/* A segment is read a piece of this size at a time (or twice the largest
 * record) into one buffer, rather than whole into a fresh one (64 MiB of
 * new pages: a page fault for every 4 KiB, and a copy that no longer
 * fits any cache). Reading and decoding a 64 MiB segment took 91 ms of
 * CPU whole, 55 ms in pieces. */
#define RC_PIECE ((size_t)1 << 20)

/* Step 1: the keys of the SET records of segment fd, with their offsets,
 * in key order (keysort.h); false if it cannot be read, or out of memory.
 * The records' CRCs are not checked (seg_rec_peek): nothing is taken from
 * a record but its key and where it ends, and a key counts only if the
 * index points at this very record for it (rc_apply), which no damaged
 * key does; a rescue logs the value memory holds, not the bytes here.
 * Damage can only make live records go unseen (a damaged length hides
 * the records it spans, as a failed CRC hides its own): their keys are
 * then left pointing at a deleted segment, which reads as a miss. Checking
 * the CRCs took 4% of the server's CPU under 4 KiB sets past the budget.
 * A record the segment's live map does not mark is passed over: no
 * lookup could find the index pointing at it. Under 100-byte sets of 1M
 * keys (Zipf 0.99) about one record in eight of a reclaimed segment was
 * live; sorting and looking up the others' keys had been most of what
 * reclaiming cost the index writer. */
static bool rc_read_keys(disk *d, int fd, rc_job *j)
{
    size_t words;
    const uint64_t *map = disk_seg_map(d, j->id, &words);
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return false;
    uint64_t len = (uint64_t)sb.st_size;
    /* A record that starts at least this far before the end of what was
     * read lies wholly in it. */
    size_t maxrec = seg_rec_size(255, d->cfg.item_max);
    size_t cap = 2 * maxrec > RC_PIECE ? 2 * maxrec : RC_PIECE;
    bool ok = rc_room((void **)&j->buf, &j->bufcap, 1, cap);
    unsigned char *buf = j->buf;
    size_t aused = 0;
    uint64_t base = 0; /* the file offset of buf[0] */
    size_t have = 0, p = SEG_HDR_SIZE;
    while (ok) {
        size_t want = cap - have;
        if (base + have + want > len)
            want = (size_t)(len - (base + have));
        int64_t got = want > 0 ? rc_read(d, fd, buf + have, want, base + have)
                               : 0;
        if (got < 0) {
            ok = false;
            break;
        }
        have += (size_t)got;
        bool end = got == 0 || base + have >= len;
        while (p + SEG_REC_HDR <= have && (end || p + maxrec <= have)) {
            seg_rec r;
            const unsigned char *key;
            size_t n = seg_rec_peek(buf + p, have - p, &r, &key);
            if (n == 0) {
                p += SEG_ALIGN; /* damage or the end: look further */
                continue;
            }
            size_t at = p;
            p += n;
            if (r.type != SEG_SET ||
                (map != NULL && !seg_map_has(map, words, base + at)))
                continue; /* the index points elsewhere for its key */
            if ((j->nkeys == j->kcap &&
                 !rc_grow((void **)&j->keys, &j->kcap, sizeof(*j->keys),
                          4096)) ||
                (aused + r.klen > j->acap &&
                 !rc_grow((void **)&j->arena, &j->acap, 1, 65536))) {
                ok = false;
                break;
            }
            memcpy(j->arena + aused, key, r.klen);
            /* .key is the offset in the arena until the arena is done */
            j->keys[j->nkeys++] = (ks_key){
                .key = (const unsigned char *)(uintptr_t)aused,
                .klen = r.klen,
                .i = (uint32_t)(base + at)};
            aused += r.klen;
        }
        if (end || !ok)
            break;
        /* What is left (a record the piece cut) goes to the front. */
        memmove(buf, buf + p, have - p);
        base += p;
        have -= p;
        p = 0;
    }
    if (!ok || j->nkeys == 0)
        return ok;
    for (size_t i = 0; i < j->nkeys; i++)
        j->keys[i].key = j->arena + (uintptr_t)j->keys[i].key;
    ok = rc_room((void **)&j->tmp, &j->tcap, sizeof(*j->tmp), j->nkeys) &&
         rc_room((void **)&j->gone, &j->gcap, sizeof(*j->gone), j->nkeys);
    if (ok)
        ks_sort(j->keys, j->tmp, j->nkeys);
    return ok;
}

/* A segment and a half early: the index grows by a commit's pages
 * before the next look, the promise is one segment past the budget at
 * most, and the journal should not have to wait for room: it goes on
 * writing into the current segment while the drain lasts. As many
 * segments as that takes (RC_MAX at most) are drained together: a drain
 * lasts two commits of the index writer, which come 1.5 s apart near the
 * budget under a steady load (indexer.c), and the journal may fill more
 * than a segment meanwhile. Nothing new is planned while a drain lasts. */
void reclaim_plan(disk *d)
{
    if (d->rc_n != 0 || d->rc_njob != 0)
        return;
    uint64_t usage = disk_usage(d) + d->cfg.segment_size * 3 / 2;
    while (usage > d->cfg.disk_size && d->rc_njob < RC_MAX) {
        uint64_t id = 0;
        int fd = -1;
        pthread_mutex_lock(&d->seg_lock);
        if (d->nsegs > d->rc_njob + 1) {
            id = d->segs[d->rc_njob].id;
            fd = d->segs[d->rc_njob].fd;
        }
        pthread_mutex_unlock(&d->seg_lock);
        /* Segments before the checkpoint's are wholly indexed and not
         * being written. */
        if (id == 0 || id >= d->meta.next_seg)
            return;
        rc_job *j = rc_job_new(d, id);
        if (j == NULL)
            return;
        if (!rc_read_keys(d, fd, j)) {
            rc_job_put(d, j);
            atomic_fetch_add(&d->st_disk_read_errors, 1);
            disk_warn(d, 0, "reclaim could not read segment %" PRIu64
                      "; it stays", id);
            return;
        }
        d->rc_job[d->rc_njob++] = j;
        usage = usage > d->cfg.segment_size ? usage - d->cfg.segment_size
                                            : 0;
    }
}

/* Step 2 for one segment, in the open write transaction: a key whose
 * index entry points at one of its records here is live; a hot live item
 * is rescued (logged again from memory), the rest are dropped. */
static tc_status rc_apply(disk *d, rc_job *j)
{
    uint64_t flush_lsn = d->meta.flush_lsn;
    uint32_t now = d->cfg.now(d->cfg.now_arg);
    uint64_t rescued_bytes = 0;
    j->ngone = 0;
    j->live_dropped = 0;
    j->dropped = j->rescued = j->drain = 0;
    for (size_t k = 0, next; k < j->nkeys; k = next) {
        /* A key written many times has many records here: one lookup
         * for them all, at most one of them live. */
        next = k + 1;
        while (next < j->nkeys && ks_equal(&j->keys[k], &j->keys[next]))
            next++;
        const void *key = j->keys[k].key;
        size_t klen = j->keys[k].klen;
        idx_loc loc;
        if (idx_get_w(d->ix, key, klen, &loc) != TC_OK || loc.seg != j->id)
            continue; /* overwritten or deleted since: not live */
        bool here = false;
        for (size_t i = k; i < next && !here; i++)
            here = loc.off == j->keys[i].i;
        if (!here)
            continue;
        bool dead = loc.lsn < flush_lsn ||
                    (loc.exptime != 0 && loc.exptime <= now);
        uint64_t h = mem_hash(d->m, key, klen);
        if (!dead && rescued_bytes + loc.len <= d->cfg.segment_size / 2) {
            uint64_t lsn = mem_relog(d->m, h, key, klen, now);
            if (lsn != 0) {
                j->rescued++;
                rescued_bytes += loc.len;
                if (lsn > j->drain)
                    j->drain = lsn;
                continue;
            }
        }
        tc_status st = idx_del(d->ix, key, klen, NULL);
        if (st != TC_OK)
            return st;
        j->live_dropped += loc.len;
        if (loc.lsn >= flush_lsn)
            j->gone[j->ngone++] = h;
        j->dropped++;
    }
    return TC_OK;
}

tc_status reclaim_apply(disk *d)
{
    for (size_t i = 0; i < d->rc_njob; i++) {
        tc_status st = rc_apply(d, d->rc_job[i]);
        if (st != TC_OK)
            return st;
    }
    return TC_OK;
}

void reclaim_applied(disk *d, bool committed)
{
    for (size_t i = 0; i < d->rc_njob; i++) {
        rc_job *j = d->rc_job[i];
        if (committed) {
            for (size_t g = 0; g < j->ngone; g++)
                filter_remove(d->filt, j->gone[g]);
            disk_seg_live(d, j->id, SEG_OFF_NONE, -j->live_dropped);
            atomic_fetch_add(&d->st_reclaim_dropped, j->dropped);
            atomic_fetch_add(&d->st_reclaim_rescued, j->rescued);
            d->rc_segs[d->rc_n++] = j->id;
            if (j->drain > atomic_load(&d->rc_drain_lsn))
                atomic_store(&d->rc_drain_lsn, j->drain);
            if (j->drain > atomic_load(&d->st_durable_lsn))
                journal_sync_soon(d, j->drain);
        }
        rc_job_put(d, j);
        d->rc_job[i] = NULL;
    }
    d->rc_njob = 0;
}

void reclaim_step(disk *d)
{
    reclaim_finish(d);
    reclaim_plan(d);
    if (d->rc_njob == 0)
        return;
    tc_status st = idx_begin(d->ix);
    if (st == TC_OK)
        st = reclaim_apply(d);
    if (st == TC_OK)
        st = idx_commit(d->ix);
    else
        idx_abort(d->ix); /* nothing begun, or undone */
    reclaim_applied(d, st == TC_OK);
    if (st != TC_OK) {
        atomic_fetch_add(&d->st_write_errors, 1);
        disk_warn(d, 0, "reclaim failed (%s); its segments stay",
                  tc_strerror(st));
        return;
    }
    reclaim_finish(d);
}
