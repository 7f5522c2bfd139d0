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
    if (done->res > 0)
        atomic_fetch_add_explicit(&d->st_reclaim_read_bytes,
                                  (uint64_t)done->res, memory_order_relaxed);
    return done->res;
}

/* A segment is read a piece of this size at a time (or twice the largest
 * record) into one buffer, rather than whole into a fresh one (64 MiB of
 * new pages: a page fault for every 4 KiB, and a copy that no longer
 * fits any cache). Reading and decoding a 64 MiB segment took 91 ms of
 * CPU whole, 55 ms in pieces. */
#define RC_PIECE ((size_t)1 << 20)
/* Guided by a live map, one read covers the marked records that follow
 * each other closer than this (the bytes between them read for nothing:
 * about what a read costs, copied), up to RC_PIECE; a marked record
 * farther away starts a read of its own. */
#define RC_GAP ((uint64_t)8 << 10)
/* What a marked unit's record needs read for its key: the unit (the
 * record starts at one of its SEG_ALIGN steps), its header and the
 * longest key. */
#define RC_HEAD ((uint64_t)SEG_MAP_UNIT - SEG_ALIGN + SEG_REC_HDR + 255)

/* Adds the key of the SET record r (key at key) at offset off to j's
 * keys; false when out of memory. */
static bool rc_add_key(rc_job *j, size_t *aused, const seg_rec *r,
                       const unsigned char *key, uint64_t off)
{
    if ((j->nkeys == j->kcap &&
         !rc_grow((void **)&j->keys, &j->kcap, sizeof(*j->keys), 4096)) ||
        (*aused + r->klen > j->acap &&
         !rc_grow((void **)&j->arena, &j->acap, 1, 65536)))
        return false;
    memcpy(j->arena + *aused, key, r->klen);
    /* .key is the offset in the arena until the arena is done */
    j->keys[j->nkeys++] = (ks_key){
        .key = (const unsigned char *)(uintptr_t)*aused,
        .klen = r->klen,
        .i = (uint32_t)off};
    *aused += r->klen;
    return true;
}

/* The first unit at or after bit from that map marks, or UINT64_MAX. */
static uint64_t rc_map_next(const uint64_t *map, size_t words, uint64_t from)
{
    size_t w = (size_t)(from / 64);
    if (w >= words)
        return UINT64_MAX;
    uint64_t bits = map[w] & (~(uint64_t)0 << (from % 64));
    while (bits == 0) {
        if (++w == words)
            return UINT64_MAX;
        bits = map[w];
    }
    return (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(bits);
}

/* The keys of the records map marks, reading only around them: under
 * 4 KiB sets of 100k keys, reading whole segments for the keys of the
 * records still live (about one in six: 2,470 of some 16,000 a segment)
 * took 7% of the server's samples (bench/RESULTS.md, eleventh pass). */
static bool rc_read_marked(disk *d, int fd, rc_job *j, const uint64_t *map,
                           size_t words, uint64_t len, size_t *aused)
{
    unsigned char *buf = j->buf;
    uint64_t base = 0, have = 0; /* buf holds [base, base + have) */
    for (uint64_t bit = rc_map_next(map, words, 0); bit != UINT64_MAX;
         bit = rc_map_next(map, words, bit + 1)) {
        uint64_t at = bit * SEG_MAP_UNIT;
        if (at >= len)
            break;
        uint64_t want = len - at < RC_HEAD ? len - at : RC_HEAD;
        if (at < base || at + want > base + have) {
            /* A read from here over the marks that follow closely. */
            uint64_t end = at + want;
            for (uint64_t nb = rc_map_next(map, words, bit + 1);
                 nb != UINT64_MAX; nb = rc_map_next(map, words, nb + 1)) {
                uint64_t o = nb * SEG_MAP_UNIT;
                uint64_t e = o + RC_HEAD < len ? o + RC_HEAD : len;
                if (o >= len || o > end + RC_GAP || e - at > RC_PIECE)
                    break;
                end = e;
            }
            int64_t got = rc_read(d, fd, buf, (size_t)(end - at), at);
            if (got < 0)
                return false;
            base = at;
            have = (uint64_t)got;
        }
        /* The record starts somewhere in the unit: every step of it that
         * holds a sane header gives a key. A value's bytes that look like
         * one give a key the index does not point at here, and rc_apply
         * passes it over. */
        for (uint64_t o = at; o < at + SEG_MAP_UNIT; o += SEG_ALIGN) {
            uint64_t avail = o < base + have ? base + have - o : 0;
            if (o < SEG_HDR_SIZE || avail < SEG_REC_HDR)
                continue;
            const unsigned char *p = buf + (o - base);
            seg_rec r;
            if (seg_rec_head(p, &r) == 0 || r.type != SEG_SET ||
                SEG_REC_HDR + (uint64_t)r.klen > avail)
                continue;
            if (!rc_add_key(j, aused, &r, p + SEG_REC_HDR, o))
                return false;
        }
    }
    return true;
}

/* The keys of every SET record, reading the whole segment: for a segment
 * without a live map. */
static bool rc_read_all(disk *d, int fd, rc_job *j, uint64_t len,
                        size_t cap, size_t *aused)
{
    unsigned char *buf = j->buf;
    uint64_t base = 0; /* the file offset of buf[0] */
    size_t have = 0, p = SEG_HDR_SIZE;
    for (;;) {
        size_t want = cap - have;
        if (base + have + want > len)
            want = (size_t)(len - (base + have));
        int64_t got = want > 0 ? rc_read(d, fd, buf + have, want, base + have)
                               : 0;
        if (got < 0)
            return false;
        have += (size_t)got;
        bool end = got == 0 || base + have >= len;
        while (p + SEG_REC_HDR <= have) {
            seg_rec r;
            uint64_t n = seg_rec_head(buf + p, &r);
            if (n == 0 || n > cap || (end && p + n > have)) {
                p += SEG_ALIGN; /* damage or the end: look further */
                continue;
            }
            if (p + n > have)
                break; /* cut by the piece: read on */
            size_t at = p;
            p += (size_t)n;
            if (r.type == SEG_SET &&
                !rc_add_key(j, aused, &r, buf + at + SEG_REC_HDR, base + at))
                return false;
        }
        if (end)
            return true;
        /* What is left (a record the piece cut) goes to the front. */
        memmove(buf, buf + p, have - p);
        base += p;
        have -= p;
        p = 0;
    }
}

/* Step 1: the keys of the SET records of segment fd, with their offsets,
 * in key order (keysort.h); false if it cannot be read, or out of memory.
 * The records' CRCs are not checked (seg_rec_head): nothing is taken from
 * a record but its key and where it ends, and a key counts only if the
 * index points at this very record for it (rc_apply), which no damaged
 * key does; a rescue logs the value memory holds, not the bytes here.
 * Damage can only make live records go unseen (a damaged length hides
 * the records it spans, as a failed CRC hides its own): their keys are
 * then left pointing at a deleted segment, which reads as a miss. Checking
 * the CRCs took 4% of the server's CPU under 4 KiB sets past the budget.
 * Only the records the segment's live map marks are read: no lookup
 * could find the index pointing at another. Under 100-byte sets of 1M
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
    size_t maxrec = seg_rec_size(255, d->cfg.item_max);
    size_t cap = 2 * maxrec > RC_PIECE ? 2 * maxrec : RC_PIECE;
    if (!rc_room((void **)&j->buf, &j->bufcap, 1, cap))
        return false;
    size_t aused = 0;
    /* A map covers its segment unless the file grew past it. */
    bool ok = map != NULL && (uint64_t)words * 64 * SEG_MAP_UNIT >= len
                  ? rc_read_marked(d, fd, j, map, words, len, &aused)
                  : rc_read_all(d, fd, j, len, cap, &aused);
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
