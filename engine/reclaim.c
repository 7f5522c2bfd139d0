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
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_int.h"
#include "item.h"
#include "keysort.h"

#define IDX_GROWTH 3
/* Direct reads start and end on this boundary (journal.c: JR_BLOCK). */
#define RC_BLOCK ((size_t)4096)
/* Direct reads in flight per segment (rc_direct_submit), each into a
 * window of RC_DWIN bytes of the job's buffer. */
#define RC_DQ 16
#define RC_DWIN (RC_PIECE / RC_DQ)

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
    /* Direct reads under way (rc_direct_*): the descriptor opened with
     * O_DIRECT (-1: none), the segment's map, its length and fd, the next
     * mark no read covers yet (UINT64_MAX: none left), the reads in
     * flight and the marks each is for, the arena's bytes used. */
    int dfd, fd;
    const uint64_t *map;
    size_t words, aused;
    uint64_t len, bit;
    unsigned inflight;
    bool failed;
    io_op ops[RC_DQ];
    uint64_t bfirst[RC_DQ], bend[RC_DQ];
    bool busy[RC_DQ];
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
    j->dfd = -1;
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

/* j->buf with room for n bytes, aligned for direct reads. */
static bool rc_buf_room(rc_job *j, size_t n)
{
    if (n <= j->bufcap)
        return true;
    void *p;
    if (posix_memalign(&p, RC_BLOCK, n) != 0)
        return false;
    free(j->buf);
    j->buf = p;
    j->bufcap = n;
    return true;
}

/* Reads len bytes of fd at off into buf: the bytes read, or -errno. */
static int64_t rc_read(disk *d, int fd, unsigned char *buf, size_t len,
                       uint64_t off)
{
    io_op op, *done;
    io_prep_read(&op, fd, buf, len, off);
    op.user = NULL;
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
/* Segments the journal wrote with O_DIRECT are not in the page cache:
 * reclaim reads them with O_DIRECT too, in whole blocks, and each read
 * is a request to the device (a few microseconds of CPU, more in a
 * virtual machine), while the bytes cost next to nothing (no copy): one
 * read covers marks up to this far apart. */
#define RC_GAP_DIRECT ((uint64_t)16 << 10)

/* Adds the key of the SET record r (key at key) at offset off to j's
 * keys; false when out of memory. */
static bool rc_add_key(rc_job *j, size_t *aused, size_t klen,
                       const unsigned char *key, uint64_t off)
{
    if ((j->nkeys == j->kcap &&
         !rc_grow((void **)&j->keys, &j->kcap, sizeof(*j->keys), 4096)) ||
        (*aused + klen > j->acap &&
         !rc_grow((void **)&j->arena, &j->acap, 1, 65536)))
        return false;
    memcpy(j->arena + *aused, key, klen);
    /* .key is the offset in the arena until the arena is done */
    j->keys[j->nkeys++] = (ks_key){
        .key = (const unsigned char *)(uintptr_t)*aused,
        .klen = (uint32_t)klen,
        .i = (uint32_t)off};
    *aused += klen;
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

/* The keys of the records whose headers may start in the map unit at at,
 * from buf, which holds [base, base + have) of the segment: every step
 * of the unit that holds a sane header gives a key. A value's bytes that
 * look like one give a key the index does not point at here, and
 * rc_apply passes it over. False: out of memory. */
static bool rc_unit_keys(rc_job *j, size_t *aused, const unsigned char *buf,
                         uint64_t base, uint64_t have, uint64_t at)
{
    for (uint64_t o = at; o < at + SEG_MAP_UNIT; o += SEG_ALIGN) {
        uint64_t avail = o >= base && o < base + have ? base + have - o : 0;
        if (o < SEG_HDR_SIZE || avail < SEG_REC_HDR)
            continue;
        const unsigned char *p = buf + (o - base);
        seg_rec r;
        if (seg_rec_head(p, &r) == 0 || r.type != SEG_SET ||
            SEG_REC_HDR + (uint64_t)r.klen > avail)
            continue;
        if (!rc_add_key(j, aused, r.klen, p + SEG_REC_HDR, o))
            return false;
    }
    return true;
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
        if (!rc_unit_keys(j, aused, buf, base, have, at))
            return false;
    }
    return true;
}

/* rc_read_marked, asynchronously, for a segment the journal wrote with
 * O_DIRECT (not in the page cache), through a descriptor opened with it:
 * whole blocks, windows of RC_DWIN bytes at most, RC_DQ of them in
 * flight per segment; the index writer commits meanwhile and takes the
 * keys at a later run (reclaim_plan). Waiting for these reads one at a
 * time, or even RC_DQ at a time, kept the index writer from its commits
 * long enough (80-96 ms a plan) that the workers stopped at index_max
 * (bench/RESULTS.md, thirteenth pass). j->buf holds RC_DQ windows.
 * Submits reads while there is room; false if one cannot be submitted. */
static bool rc_direct_submit(disk *d, rc_job *j)
{
    while (!j->failed && j->bit != UINT64_MAX && j->inflight < RC_DQ) {
        uint64_t at = j->bit * SEG_MAP_UNIT, len = j->len;
        if (at >= len) {
            j->bit = UINT64_MAX;
            break;
        }
        uint64_t from = at & ~(uint64_t)(RC_BLOCK - 1);
        uint64_t end = at + RC_HEAD < len ? at + RC_HEAD : len;
        uint64_t nb = rc_map_next(j->map, j->words, j->bit + 1);
        for (; nb != UINT64_MAX; nb = rc_map_next(j->map, j->words, nb + 1)) {
            /* (nb < UINT64_MAX: a bit of the map) */
            uint64_t o = nb * SEG_MAP_UNIT;
            uint64_t e = o + RC_HEAD < len ? o + RC_HEAD : len;
            if (o >= len || o > end + RC_GAP_DIRECT ||
                e + RC_BLOCK - from > RC_DWIN)
                break;
            end = e;
        }
        end = (end + RC_BLOCK - 1) & ~(uint64_t)(RC_BLOCK - 1);
        unsigned k = 0;
        while (j->busy[k])
            k++;
        io_prep_read(&j->ops[k], j->dfd, j->buf + (size_t)k * RC_DWIN,
                     (size_t)(end - from), from);
        j->ops[k].user = j;
        if (io_submit(d->rq, &j->ops[k]) != TC_OK)
            return false;
        j->busy[k] = true;
        j->inflight++;
        j->bfirst[k] = j->bit;
        j->bend[k] = nb;
        j->bit = nb;
    }
    return true;
}

/* A read of job j ended: the keys of the marks it was for. */
static void rc_direct_done(disk *d, rc_job *j, io_op *op)
{
    unsigned k = (unsigned)(op - j->ops);
    j->busy[k] = false;
    j->inflight--;
    if (op->res < 0) {
        j->failed = true;
        return;
    }
    atomic_fetch_add_explicit(&d->st_reclaim_read_bytes, (uint64_t)op->res,
                              memory_order_relaxed);
    /* The map may have lost marks since (the index writer's commits in
     * between): the marks left below the next read's first. */
    for (uint64_t b = j->bfirst[k]; !j->failed && b < j->bend[k];
         b = rc_map_next(j->map, j->words, b + 1))
        if (!rc_unit_keys(j, &j->aused, j->buf + (size_t)k * RC_DWIN,
                          op->off, (uint64_t)op->res, b * SEG_MAP_UNIT))
            j->failed = true;
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
                !rc_add_key(j, aused, r.klen, buf + at + SEG_REC_HDR,
                            base + at))
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
static bool rc_keys_sorted(rc_job *j);

/* ---- key lists ----
 * Reading back the keys of a segment written with O_DIRECT goes to the
 * device: under 4 KiB sets past a 1 GiB budget, those reads held the
 * index writer up long enough that the workers stopped at index_max
 * (bench/RESULTS.md, thirteenth pass). The index writer has the keys
 * when it indexes their records, so for such segments it lists them
 * then (reclaim_list_key), and reclaim takes them from the list. An
 * entry is the record's offset (4 bytes), the key's length (1) and its
 * bytes. A transaction that fails leaves its keys listed, and its retry
 * lists them again: a key listed for a record the index does not point
 * at is passed over by rc_apply, as one read back is. A segment gets a
 * list only if this process created it (kl_from on), so that its list
 * holds every record the index can point at there; reclaim takes only
 * segments wholly indexed (before the checkpoint's), whose records have
 * all been listed. A list that would pass the budget (disk_config.map_max,
 * the live maps' own, once more) is dropped: its segment's keys are read
 * back as before. */
typedef struct kl_seg {
    uint64_t id;
    bool off; /* no list: written through the page cache, or dropped */
    unsigned char *buf;
    size_t len, cap;
} kl_seg;

_Atomic bool reclaim_lists_off;

#define KL_HDR 5
#define KL_FIRST ((size_t)64 << 10)

/* Segment id's list; if it has none, a new one when make is set and id
 * is one of this process's segments not reclaimed yet, else NULL. The
 * lists are kept in id order. */
static kl_seg *kl_find(disk *d, uint64_t id, bool make)
{
    size_t i = d->kl_n;
    while (i > 0 && d->kl[i - 1].id > id)
        i--;
    if (i > 0 && d->kl[i - 1].id == id)
        return &d->kl[i - 1];
    if (!make || id < d->kl_from || id <= d->kl_done)
        return NULL;
    if (d->kl_n == d->kl_cap &&
        !rc_grow((void **)&d->kl, &d->kl_cap, sizeof(*d->kl), 8)) {
        d->kl_done = id; /* a list begun later would lack these keys */
        return NULL;
    }
    memmove(d->kl + i + 1, d->kl + i, (d->kl_n - i) * sizeof(*d->kl));
    d->kl_n++;
    kl_seg *l = &d->kl[i];
    *l = (kl_seg){.id = id,
                  .off = atomic_load(&reclaim_lists_off) ||
                         !disk_seg_direct(d, id)};
    return l;
}

static void kl_drop(disk *d, kl_seg *l)
{
    atomic_fetch_sub_explicit(&d->st_kl_bytes, l->cap, memory_order_relaxed);
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = 0;
    l->off = true;
}

/* Frees the lists of the segments up to id. */
static void kl_forget(disk *d, uint64_t id)
{
    size_t n = 0;
    while (n < d->kl_n && d->kl[n].id <= id)
        kl_drop(d, &d->kl[n++]);
    if (id > d->kl_done)
        d->kl_done = id;
    d->kl_last = NULL;
    if (n > 0) {
        memmove(d->kl, d->kl + n, (d->kl_n - n) * sizeof(*d->kl));
        d->kl_n -= n;
    }
}

static void kl_add(disk *d, kl_seg *l, uint32_t off, const char *key,
                   size_t klen)
{
    size_t need = KL_HDR + klen;
    if (klen > 255) {
        kl_drop(d, l);
        return;
    }
    if (l->len + need > l->cap) {
        size_t cap = l->cap == 0 ? KL_FIRST : l->cap * 2;
        void *p = NULL;
        uint64_t bytes = atomic_load_explicit(&d->st_kl_bytes,
                                              memory_order_relaxed);
        if (bytes - l->cap + cap > d->cfg.map_max ||
            (p = realloc(l->buf, cap)) == NULL) {
            kl_drop(d, l);
            return;
        }
        atomic_fetch_add_explicit(&d->st_kl_bytes, cap - l->cap,
                                  memory_order_relaxed);
        l->buf = p;
        l->cap = cap;
    }
    unsigned char *e = l->buf + l->len;
    memcpy(e, &off, 4);
    e[4] = (unsigned char)klen;
    memcpy(e + KL_HDR, key, klen);
    l->len += need;
}

void reclaim_list_key(disk *d, uint64_t seg, uint32_t off, const char *key,
                      size_t klen)
{
    kl_seg *l = d->kl_last;
    if (l == NULL || l->id != seg)
        d->kl_last = l = kl_find(d, seg, true);
    if (l != NULL && !l->off)
        kl_add(d, l, off, key, klen);
}

void reclaim_lists_free(disk *d)
{
    kl_forget(d, UINT64_MAX);
    free(d->kl);
    d->kl = NULL;
    d->kl_cap = 0;
}

/* j's keys from its segment's list, those of the records map marks (all
 * without one); false if the segment has no list (or out of memory). The
 * lists up to the segment's are freed: nothing is listed there again. */
static bool kl_take(disk *d, rc_job *j, const uint64_t *map, size_t words)
{
    kl_seg *l = kl_find(d, j->id, false);
    bool ok = l != NULL && !l->off;
    size_t aused = 0;
    for (size_t p = 0; ok && p < l->len;) {
        const unsigned char *e = l->buf + p;
        uint32_t off;
        memcpy(&off, e, 4);
        uint64_t bit = off / SEG_MAP_UNIT;
        if (map == NULL || bit / 64 >= words ||
            (map[bit / 64] >> (bit % 64) & 1) != 0)
            ok = rc_add_key(j, &aused, e[4], e + KL_HDR, off);
        p += KL_HDR + e[4];
    }
    if (ok)
        atomic_fetch_add_explicit(&d->st_reclaim_listed, 1,
                                  memory_order_relaxed);
    else
        j->nkeys = 0;
    kl_forget(d, j->id);
    return ok;
}

/* Returns false if the segment cannot be read, or out of memory; else
 * true, with the keys sorted or, for a direct job, its reads under way
 * (j->dfd >= 0: rc_keys_end when they are over). */
static bool rc_read_keys(disk *d, int fd, bool direct, rc_job *j)
{
    size_t words;
    const uint64_t *map = disk_seg_map(d, j->id, &words);
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return false;
    uint64_t len = (uint64_t)sb.st_size;
    size_t maxrec = seg_rec_size(255, d->cfg.item_max);
    size_t cap = 2 * maxrec > RC_PIECE ? 2 * maxrec : RC_PIECE;
    if (!rc_buf_room(j, cap + 2 * RC_BLOCK))
        return false;
    size_t aused = 0;
    /* A map covers its segment unless the file grew past it. */
    bool marked = map != NULL && (uint64_t)words * 64 * SEG_MAP_UNIT >= len;
    if (kl_take(d, j, marked ? map : NULL, words))
        return rc_keys_sorted(j);
    if (marked && direct && len % RC_BLOCK == 0) {
        char name[32];
        seg_name(j->id, name);
        int dfd = io_file_open(d->dirfd, name, O_RDONLY | O_DIRECT, 0);
        if (dfd >= 0) {
            j->dfd = dfd;
            j->fd = fd;
            j->map = map;
            j->words = words;
            j->len = len;
            j->aused = 0;
            j->inflight = 0;
            j->failed = false;
            j->bit = rc_map_next(map, words, 0);
            if (!rc_direct_submit(d, j))
                j->failed = true;
            io_flush(d->rq);
            return true;
        }
    }
    bool ok = marked ? rc_read_marked(d, fd, j, map, words, len, &aused)
                     : rc_read_all(d, fd, j, len, cap, &aused);
    return ok && rc_keys_sorted(j);
}

/* The arena's offsets made pointers, the keys sorted. */
static bool rc_keys_sorted(rc_job *j)
{
    if (j->nkeys == 0)
        return true;
    for (size_t i = 0; i < j->nkeys; i++)
        j->keys[i].key = j->arena + (uintptr_t)j->keys[i].key;
    bool ok = rc_room((void **)&j->tmp, &j->tcap, sizeof(*j->tmp),
                      j->nkeys) &&
              rc_room((void **)&j->gone, &j->gcap, sizeof(*j->gone),
                      j->nkeys);
    if (ok)
        ks_sort(j->keys, j->tmp, j->nkeys);
    return ok;
}

/* A direct job whose reads are over: its keys sorted, or, when a read
 * failed, read again through the page cache; false if that fails too. */
static bool rc_keys_end(disk *d, rc_job *j)
{
    io_file_close(j->dfd);
    j->dfd = -1;
    if (j->failed) {
        j->nkeys = 0;
        size_t aused = 0;
        if (!rc_read_marked(d, j->fd, j, j->map, j->words, j->len, &aused))
            return false;
    }
    return rc_keys_sorted(j);
}

/* Takes the reads of the planned jobs that ended, submits more, for as
 * long as one ends within timeout_ms of the last (0: takes those ended
 * and returns; -1: until all are over); once all are, the plan's jobs
 * are ready for reclaim_apply (rc_njob). */
static void rc_plan_poll(disk *d, int timeout_ms)
{
    while (d->rc_nread > 0) {
        size_t busy = 0;
        for (size_t i = 0; i < d->rc_nread; i++) {
            rc_job *j = d->rc_read[i];
            if (j->dfd >= 0 &&
                (j->inflight > 0 || (!j->failed && j->bit != UINT64_MAX)))
                busy++;
        }
        if (busy == 0)
            break;
        io_op *done[16];
        unsigned n = io_reap(d->rq, done, 16, timeout_ms != 0 ? 1 : 0,
                             timeout_ms);
        for (unsigned k = 0; k < n; k++) {
            rc_job *j = done[k]->user;
            rc_direct_done(d, j, done[k]);
            if (!rc_direct_submit(d, j))
                j->failed = true;
        }
        io_flush(d->rq);
        if (n == 0 && timeout_ms >= 0)
            return;
    }
    /* All read: the plan becomes the jobs to drain, in segment order; a
     * segment that could not be read stays, and so do those after it. */
    size_t i = 0;
    for (; i < d->rc_nread; i++) {
        rc_job *j = d->rc_read[i];
        if (j->dfd >= 0 && !rc_keys_end(d, j)) {
            atomic_fetch_add(&d->st_disk_read_errors, 1);
            disk_warn(d, 0, "reclaim could not read segment %" PRIu64
                      "; it stays", j->id);
            break;
        }
        d->rc_job[d->rc_njob++] = j;
    }
    for (size_t k = i; k < d->rc_nread; k++) {
        rc_job *j = d->rc_read[k];
        if (j->dfd >= 0) {
            io_file_close(j->dfd);
            j->dfd = -1;
        }
        rc_job_put(d, j);
    }
    d->rc_nread = 0;
}

void reclaim_reads_poll(disk *d, int timeout_ms)
{
    if (d->rc_nread > 0)
        rc_plan_poll(d, timeout_ms);
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
    if (d->rc_nread > 0) {
        rc_plan_poll(d, 0);
        return;
    }
    if (d->rc_n != 0 || d->rc_njob != 0)
        return;
    uint64_t usage = disk_usage(d) + d->cfg.segment_size * 3 / 2;
    while (usage > d->cfg.disk_size && d->rc_nread < RC_MAX) {
        /* Direct reads under way share the queue with the reads of
         * rc_read, which would take their completions: the segments
         * after such a one wait for the next plan. */
        bool reading = false;
        for (size_t i = 0; i < d->rc_nread; i++)
            reading |= d->rc_read[i]->dfd >= 0;
        if (reading)
            break;
        uint64_t id = 0;
        int fd = -1;
        bool direct = false;
        pthread_mutex_lock(&d->seg_lock);
        if (d->nsegs > d->rc_nread + 1) {
            id = d->segs[d->rc_nread].id;
            fd = d->segs[d->rc_nread].fd;
            direct = d->segs[d->rc_nread].direct;
        }
        pthread_mutex_unlock(&d->seg_lock);
        /* Segments before the checkpoint's are wholly indexed and not
         * being written. */
        if (id == 0 || id >= d->meta.next_seg)
            break;
        rc_job *j = rc_job_new(d, id);
        if (j == NULL)
            break;
        if (!rc_read_keys(d, fd, direct, j)) {
            rc_job_put(d, j);
            atomic_fetch_add(&d->st_disk_read_errors, 1);
            disk_warn(d, 0, "reclaim could not read segment %" PRIu64
                      "; it stays", id);
            break;
        }
        d->rc_read[d->rc_nread++] = j;
        usage = usage > d->cfg.segment_size ? usage - d->cfg.segment_size
                                            : 0;
    }
    rc_plan_poll(d, 0); /* at once unless direct reads are under way */
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
