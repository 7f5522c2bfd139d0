/*
 * reclaim.c - keeps the data directory within its budget (disk_size).
 *
 * When the segments and the index take more than the budget, the oldest
 * segment is reclaimed, by the index writer, between two of its batches:
 *   1. its records are read; a record the index still points at is live;
 *   2. a live item that is hot (in the memory tier and read since it got
 *      there) is rescued: logged again from memory, so it gets a new
 *      record at the journal's head; the rest, and the expired or flushed,
 *      are dropped from the index (and the filter) in one transaction;
 *   3. once the rescued records are in the index (the index writer has
 *      passed the highest LSN they got), nothing points into the segment:
 *      its file is deleted and the directory synced.
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

static bool reclaim_read(disk *d, int fd, unsigned char **buf, size_t *len)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return false;
    *len = (size_t)sb.st_size;
    *buf = malloc(*len > 0 ? *len : 1);
    if (*buf == NULL)
        return false;
    io_op op, *done;
    io_prep_read(&op, fd, *buf, *len, 0);
    if (io_submit(d->rq, &op) != TC_OK)
        return false;
    while (io_reap(d->rq, &done, 1, 1, -1) == 0)
        ;
    if (done->res < 0) {
        free(*buf);
        *buf = NULL;
        return false;
    }
    *len = (size_t)done->res;
    return true;
}

#define RC_MAX (sizeof(((disk *)0)->rc_segs) / sizeof(uint64_t))

/* Step 3: deletes a drained segment. */
static void reclaim_delete(disk *d, uint64_t id)
{
    int fd = -1;
    pthread_mutex_lock(&d->seg_lock);
    for (size_t i = 0; i < d->nsegs; i++) {
        if (d->segs[i].id != id)
            continue;
        fd = d->segs[i].fd;
        memmove(&d->segs[i], &d->segs[i + 1],
                (d->nsegs - i - 1) * sizeof(*d->segs));
        d->nsegs--;
        break;
    }
    pthread_mutex_unlock(&d->seg_lock);
    char name[32];
    seg_name(id, name);
    if (fd >= 0)
        io_file_close(fd);
    io_file_unlink(d->dirfd, name);
    atomic_fetch_add(&d->st_reclaimed_segs, 1);
}

/* Step 3 for the drained segments, once their rescues are indexed. */
static void reclaim_finish(disk *d)
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

/* Steps 1 and 2 for the oldest segment not being drained yet; false if
 * there is none to reclaim, or it failed. */
static bool reclaim_start(disk *d)
{
    uint64_t id = 0;
    int fd = -1;
    pthread_mutex_lock(&d->seg_lock);
    if (d->nsegs > d->rc_n + 1) {
        id = d->segs[d->rc_n].id;
        fd = d->segs[d->rc_n].fd;
    }
    pthread_mutex_unlock(&d->seg_lock);
    /* Segments before the checkpoint's are wholly indexed and not being
     * written. */
    if (id == 0 || id >= d->meta.next_seg)
        return false;

    unsigned char *buf = NULL;
    size_t len = 0;
    if (!reclaim_read(d, fd, &buf, &len)) {
        atomic_fetch_add(&d->st_disk_read_errors, 1);
        disk_warn(d, 0, "reclaim could not read segment %" PRIu64
                  "; it stays", id);
        return false;
    }
    uint64_t flush_lsn = d->meta.flush_lsn;
    uint32_t now = d->cfg.now(d->cfg.now_arg);
    uint64_t drain = 0, rescued_bytes = 0, dropped = 0, rescued = 0;
    int64_t live_dropped = 0;
    /* Keys to take out of the filter once the deletions are committed. */
    uint64_t *gone = NULL;
    size_t ngone = 0, capgone = 0;
    /* The segment's sets, looked up in key order (keysort.h). */
    ks_key *keys = NULL, *tmp = NULL;
    size_t nkeys = 0, capkeys = 0;
    tc_status st = TC_OK;
    for (size_t off = SEG_HDR_SIZE; off + SEG_REC_HDR <= len;) {
        seg_rec r;
        const unsigned char *key, *val;
        size_t n = seg_rec_decode(buf + off, len - off, &r, &key, &val);
        if (n == 0) {
            off += SEG_ALIGN; /* damage or the end: look further */
            continue;
        }
        size_t at = off;
        off += n;
        if (r.type != SEG_SET)
            continue;
        if (nkeys == capkeys &&
            !rc_grow((void **)&keys, &capkeys, sizeof(*keys), 4096)) {
            st = TC_ENOMEM;
            break;
        }
        keys[nkeys++] = (ks_key){.key = key, .klen = r.klen,
                                 .i = (uint32_t)at};
    }
    if (st == TC_OK && nkeys > 1 &&
        (tmp = malloc((nkeys / 2 + 1) * sizeof(*tmp))) == NULL)
        st = TC_ENOMEM;
    if (st == TC_OK) {
        ks_sort(keys, tmp, nkeys);
        st = idx_begin(d->ix);
    }
    for (size_t k = 0, next; st == TC_OK && k < nkeys; k = next) {
        /* A key written many times has many records here: one lookup
         * for them all, at most one of them live. */
        next = k + 1;
        while (next < nkeys && ks_equal(&keys[k], &keys[next]))
            next++;
        const void *key = keys[k].key;
        size_t klen = keys[k].klen;
        idx_loc loc;
        if (idx_get_w(d->ix, key, klen, &loc) != TC_OK || loc.seg != id)
            continue; /* overwritten or deleted since: not live */
        bool here = false;
        for (size_t j = k; j < next && !here; j++)
            here = loc.off == keys[j].i;
        if (!here)
            continue;
        bool dead = loc.lsn < flush_lsn ||
                    (loc.exptime != 0 && loc.exptime <= now);
        uint64_t h = mem_hash(d->m, key, klen);
        if (!dead && rescued_bytes + loc.len <= d->cfg.segment_size / 2) {
            uint64_t lsn = mem_relog(d->m, h, key, klen, now);
            if (lsn != 0) {
                rescued++;
                rescued_bytes += loc.len;
                if (lsn > drain)
                    drain = lsn;
                continue;
            }
        }
        if (loc.lsn >= flush_lsn && ngone == capgone &&
            !rc_grow((void **)&gone, &capgone, sizeof(*gone), 1024)) {
            st = TC_ENOMEM;
            break;
        }
        st = idx_del(d->ix, key, klen, NULL);
        if (st == TC_OK) {
            live_dropped += loc.len;
            if (loc.lsn >= flush_lsn)
                gone[ngone++] = h;
            dropped++;
        }
    }
    free(keys);
    free(tmp);
    free(buf);
    if (st == TC_OK)
        st = idx_commit(d->ix);
    else
        idx_abort(d->ix); /* nothing begun, or undone */
    if (st != TC_OK) {
        free(gone);
        atomic_fetch_add(&d->st_write_errors, 1);
        disk_warn(d, 0, "reclaim of segment %" PRIu64 " failed (%s); it "
                  "stays", id, tc_strerror(st));
        return false;
    }
    for (size_t i = 0; i < ngone; i++)
        filter_remove(d->filt, gone[i]);
    free(gone);
    disk_seg_live(d, id, -live_dropped);
    atomic_fetch_add(&d->st_reclaim_dropped, dropped);
    atomic_fetch_add(&d->st_reclaim_rescued, rescued);
    d->rc_segs[d->rc_n++] = id;
    if (drain > atomic_load(&d->rc_drain_lsn))
        atomic_store(&d->rc_drain_lsn, drain);
    return true;
}

void reclaim_step(disk *d)
{
    if (d->rc_n != 0) {
        reclaim_finish(d);
        return;
    }
    /* A segment and a half early: the index grows by a commit's pages
     * before the next look, the promise is one segment past the budget
     * at most, and the journal should not have to wait for room: it goes
     * on writing into the current segment while the drain lasts. As
     * many segments as that takes (RC_MAX at most) are drained together:
     * a drain lasts two commits of the index writer, which come 1.5 s
     * apart near the budget under a steady load (indexer.c), and the
     * journal may fill more than a segment meanwhile. */
    uint64_t usage = disk_usage(d) + d->cfg.segment_size * 3 / 2;
    while (usage > d->cfg.disk_size && d->rc_n < RC_MAX && reclaim_start(d))
        usage = usage > d->cfg.segment_size ? usage - d->cfg.segment_size : 0;
    reclaim_finish(d);
}
