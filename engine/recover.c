/*
 * recover.c - recovery at open: brings the index up to the journal.
 *
 * The index's checkpoint says which records it holds (every LSN up to
 * checkpoint_lsn) and where the next one starts (next_seg, next_off).
 * Recovery reads the segments from there on, checks every record, and
 * applies the valid ones to the index, in large transactions, exactly as
 * the index writer would. Then it decides where writing goes on.
 *
 * Damage (the rules of DESIGN.md, "Ordering and crash rules"):
 *   - the end of a segment is the first 8-byte boundary after which the
 *     segment holds only zeros (it was preallocated);
 *   - a record that fails its checks, followed later by a valid record of
 *     a higher LSN, is damage in the middle: recovery skips to that valid
 *     record and counts what it skipped;
 *   - a record that fails its checks with no valid record of a higher LSN
 *     after it starts the torn tail: the bytes from there to the last
 *     non-zero byte of the segment are overwritten with zeros (and
 *     synced), counted as cut, and writing resumes there.
 * A value is never read back from a record that failed its checks, so
 * damage can lose records but never return a wrong value.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk_int.h"

#define RECOVER_TXN_RECORDS 10000

typedef struct rec_state {
    disk *d;
    io_queue *q;
    unsigned char *buf; /* the segment being read */
    size_t buf_cap;
    uint64_t last_lsn;  /* highest valid LSN seen */
    size_t in_txn;
    char *why;
    size_t why_len;
} rec_state;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The ids of the segment files in the directory, sorted. */
static tc_status list_segments(disk *d, uint64_t **ids, size_t *n)
{
    DIR *dir = opendir(d->cfg.dir);
    if (dir == NULL)
        return TC_EIO;
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    struct dirent *de;
    tc_status st = TC_OK;
    while ((de = readdir(dir)) != NULL) {
        uint64_t id;
        if (!seg_parse_name(de->d_name, &id))
            continue;
        if (*n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            uint64_t *v = realloc(*ids, cap * sizeof(*v));
            if (v == NULL) {
                st = TC_ENOMEM;
                break;
            }
            *ids = v;
        }
        (*ids)[(*n)++] = id;
    }
    closedir(dir);
    if (*n > 0)
        qsort(*ids, *n, sizeof(**ids), cmp_u64);
    return st;
}

static int64_t rec_io(rec_state *rs, io_op *op)
{
    io_op *done;
    if (io_submit(rs->q, op) != TC_OK)
        return -EBUSY;
    while (io_reap(rs->q, &done, 1, 1, -1) == 0)
        ;
    return done->res;
}

/* Reads a whole segment into rs->buf; returns the bytes read. */
static int64_t read_segment(rec_state *rs, int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -errno;
    size_t size = (size_t)sb.st_size;
    if (size > rs->buf_cap) {
        unsigned char *b = realloc(rs->buf, size);
        if (b == NULL)
            return -ENOMEM;
        rs->buf = b;
        rs->buf_cap = size;
    }
    io_op op;
    io_prep_read(&op, fd, rs->buf, size, 0);
    return rec_io(rs, &op);
}

static tc_status txn_flush(rec_state *rs, bool final)
{
    disk *d = rs->d;
    if (rs->in_txn == 0 && !final)
        return TC_OK;
    if (rs->in_txn == 0) {
        tc_status st = idx_begin(d->ix);
        if (st != TC_OK)
            return st;
    }
    tc_status st = idx_set_meta(d->ix, &d->meta);
    if (st == TC_OK)
        st = idx_commit(d->ix);
    else
        idx_abort(d->ix);
    rs->in_txn = 0;
    return st;
}

/* Applies one valid record past the checkpoint to the index. */
static tc_status apply(rec_state *rs, uint64_t seg, uint64_t off, size_t size,
                       const seg_rec *r, const unsigned char *key)
{
    disk *d = rs->d;
    tc_status st;
    if (rs->in_txn == 0 && (st = idx_begin(d->ix)) != TC_OK)
        return st;
    rs->in_txn++;
    idx_loc loc;
    switch (r->type) {
    case SEG_SET:
        loc = (idx_loc){seg, (uint32_t)off, (uint32_t)size, r->lsn, r->cas,
                        r->flags, r->exptime, r->raw_len, r->codec,
                        r->meta};
        st = idx_put(d->ix, key, r->klen, &loc, NULL, NULL);
        break;
    case SEG_DELETE:
        st = idx_del(d->ix, key, r->klen, NULL);
        if (st == TC_ENOTFOUND)
            st = TC_OK;
        break;
    case SEG_TOUCH:
        st = idx_get_w(d->ix, key, r->klen, &loc);
        if (st == TC_OK) {
            loc.exptime = r->exptime;
            loc.meta = r->meta;
            st = idx_put(d->ix, key, r->klen, &loc, NULL, NULL);
        } else if (st == TC_ENOTFOUND) {
            st = TC_OK;
        }
        break;
    case SEG_FLUSH:
        if (r->flags & 1) {
            d->meta.flush_at = r->exptime;
        } else {
            d->meta.flush_lsn = r->lsn;
            d->meta.flush_at = 0;
        }
        st = TC_OK;
        break;
    default:
        st = TC_ECORRUPT;
        break;
    }
    if (st != TC_OK) {
        idx_abort(d->ix);
        rs->in_txn = 0;
        return st;
    }
    if (r->cas > d->meta.cas_ceiling)
        d->meta.cas_ceiling = r->cas;
    d->meta.checkpoint_lsn = r->lsn;
    d->meta.next_seg = seg;
    d->meta.next_off = off + size;
    d->rec.records++;
    return rs->in_txn >= RECOVER_TXN_RECORDS ? txn_flush(rs, false) : TC_OK;
}

/* The offset just past the last non-zero byte of buf[from, len). */
static size_t data_end(const unsigned char *buf, size_t from, size_t len)
{
    size_t end = len;
    while (end > from && buf[end - 1] == 0)
        end--;
    return end;
}

/* Finds the next valid record after a bad one at off: its offset, or 0. */
static size_t resync(rec_state *rs, size_t off, size_t len)
{
    seg_rec r;
    const unsigned char *k, *v;
    for (size_t p = off + SEG_ALIGN; p + SEG_REC_HDR <= len; p += SEG_ALIGN) {
        if (!seg_rec_magic_at(rs->buf + p))
            continue;
        if (seg_rec_decode(rs->buf + p, len - p, &r, &k, &v) > 0 &&
            r.lsn > rs->last_lsn)
            return p;
    }
    return 0;
}

/* True if a later segment holds a valid record of a higher LSN. */
static bool later_valid(rec_state *rs, uint64_t *ids, size_t n, size_t from)
{
    disk *d = rs->d;
    unsigned char hdr[SEG_HDR_SIZE + SEG_REC_HDR];
    for (size_t i = from; i < n; i++) {
        int fd = disk_seg_fd(d, ids[i]);
        if (fd < 0)
            continue;
        ssize_t got = pread(fd, hdr, sizeof(hdr), 0);
        if (got == (ssize_t)sizeof(hdr) && seg_rec_magic_at(hdr + SEG_HDR_SIZE))
            return true;
    }
    return false;
}

/* Zeroes [off, end) of segment fd and syncs it: the torn tail's cut. */
static tc_status cut_tail(rec_state *rs, int fd, size_t off, size_t end)
{
    size_t n = end - off;
    unsigned char *z = calloc(1, n);
    if (z == NULL)
        return TC_ENOMEM;
    io_op op;
    io_prep_write(&op, fd, z, n, off);
    int64_t r = rec_io(rs, &op);
    free(z);
    if (r < 0)
        return TC_EIO;
    io_prep_fdatasync(&op, fd);
    return rec_io(rs, &op) < 0 ? TC_EIO : TC_OK;
}

/* Replays one segment from off. Sets *end to where its records stop. */
static tc_status replay_segment(rec_state *rs, uint64_t *ids, size_t n,
                                size_t i, size_t off, size_t *end)
{
    disk *d = rs->d;
    uint64_t id = ids[i];
    int fd = disk_seg_fd(d, id);
    int64_t len = read_segment(rs, fd);
    if (len < 0) {
        snprintf(rs->why, rs->why_len, "reading segment %" PRIu64 ": %s", id,
                 strerror((int)-len));
        return TC_EIO;
    }
    size_t size = (size_t)len;
    /* Up to the file's end: fewer bytes than a record header that are
     * not all zeros (a file cut short inside a record) are damage too. */
    while (off < size) {
        seg_rec r;
        const unsigned char *key, *val;
        size_t rec = seg_rec_decode(rs->buf + off, size - off, &r, &key, &val);
        if (rec > 0 && r.lsn > rs->last_lsn) {
            if (r.lsn > d->meta.checkpoint_lsn) {
                tc_status st = apply(rs, id, off, rec, &r, key);
                if (st != TC_OK) {
                    snprintf(rs->why, rs->why_len, "applying record %" PRIu64
                             ": %s", r.lsn, tc_strerror(st));
                    return st;
                }
            }
            rs->last_lsn = r.lsn;
            off += rec;
            continue;
        }
        size_t dend = data_end(rs->buf, off, size);
        if (dend == off)
            break; /* zeros: the segment's end */
        size_t next = resync(rs, off, size);
        if (next > 0) {
            d->rec.skipped++;
            off = next;
            continue;
        }
        if (later_valid(rs, ids, n, i + 1)) {
            d->rec.skipped++; /* the rest of this segment is lost */
            off = size;
            break;
        }
        /* The torn tail. */
        d->rec.cut_bytes += dend - off;
        tc_status st = cut_tail(rs, fd, off, dend);
        if (st != TC_OK) {
            snprintf(rs->why, rs->why_len, "cutting the torn tail of "
                     "segment %" PRIu64 ": %s", id, tc_strerror(st));
            return st;
        }
        break;
    }
    *end = off < size ? off : size;
    return TC_OK;
}

/* Opens every segment file, checks its header, fills the table. */
static tc_status open_segments(rec_state *rs, uint64_t *ids, size_t n)
{
    disk *d = rs->d;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        seg_name(ids[i], name);
        int fd = io_file_open(d->dirfd, name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(rs->why, rs->why_len, "opening %s: %s", name,
                     strerror(-fd));
            return TC_EIO;
        }
        unsigned char hb[SEG_HDR_SIZE];
        seg_header h;
        ssize_t got = pread(fd, hb, sizeof(hb), 0);
        bool ok = got == (ssize_t)sizeof(hb) && seg_header_decode(hb, &h);
        if (ok && (h.format < SEG_FORMAT_MIN || h.format > SEG_FORMAT)) {
            io_file_close(fd);
            snprintf(rs->why, rs->why_len, "%s has format %u; this build "
                     "reads formats %u to %u", name, h.format,
                     SEG_FORMAT_MIN, SEG_FORMAT);
            return TC_EFORMAT;
        }
        if (!ok || h.id != ids[i]) {
            /* A segment whose creation was cut short (its header never
             * reached the disk) holds no record: drop it. */
            io_file_close(fd);
            io_file_unlink(d->dirfd, name);
            io_dir_sync(d->dirfd);
            ids[i] = 0;
            continue;
        }
        tc_status st = disk_seg_add(d, ids[i], fd);
        if (st != TC_OK)
            return st;
    }
    return TC_OK;
}

tc_status recover_run(disk *d, char *why, size_t why_len)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rec_state rs = {.d = d, .why = why, .why_len = why_len};
    uint64_t *ids = NULL;
    size_t n = 0, w = 0;
    io_config ic = {.backend = d->cfg.backend, .depth = 4, .pool_threads = 1};
    tc_status st = io_queue_new(&ic, &rs.q);
    if (st == TC_OK)
        st = list_segments(d, &ids, &n);
    if (st == TC_OK)
        st = open_segments(&rs, ids, n);
    if (st != TC_OK)
        goto out;
    for (size_t i = 0; i < n; i++) /* drop the ids of dropped files */
        if (ids[i] != 0)
            ids[w++] = ids[i];
    n = w;
    rs.last_lsn = 0;

    size_t end = SEG_HDR_SIZE;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < d->meta.next_seg)
            continue;
        size_t from = ids[i] == d->meta.next_seg && d->meta.next_off > 0
                          ? (size_t)d->meta.next_off
                          : SEG_HDR_SIZE;
        st = replay_segment(&rs, ids, n, i, from, &end);
        if (st != TC_OK)
            goto out;
    }
    st = txn_flush(&rs, true);
    if (st != TC_OK) {
        snprintf(why, why_len, "committing the recovered index: %s",
                 tc_strerror(st));
        goto out;
    }
    uint64_t top = rs.last_lsn > d->meta.checkpoint_lsn ? rs.last_lsn
                                                        : d->meta.checkpoint_lsn;
    d->next_lsn = top + 1;
    if (n == 0 || ids[n - 1] < d->meta.next_seg) {
        /* No segment at or past the checkpoint's (a new directory, or
         * their headers were damaged and they were dropped above): the
         * segments left are wholly indexed and where their records end
         * is not known, so writing must not go on in one of them (it
         * would overwrite records the index points at). It starts a new
         * segment after every id the index may name, and the checkpoint
         * moves there (disk_open commits d->meta), so that the next
         * recovery reads what is written from now on. */
        uint64_t id = d->meta.next_seg + 1;
        int fd;
        st = disk_seg_create(d, rs.q, id, &fd, NULL);
        if (st != TC_OK) {
            snprintf(why, why_len, "creating segment %" PRIu64 ": %s", id,
                     tc_strerror(st));
            goto out;
        }
        d->meta.next_seg = id;
        d->meta.next_off = SEG_HDR_SIZE;
        d->cur_seg = id;
        d->cur_fd = fd;
        d->cur_off = SEG_HDR_SIZE;
    } else {
        /* Writing goes on where the last segment's records stop (after
         * any cut). The loop above replayed it: every segment from the
         * checkpoint's on is read. */
        d->cur_seg = ids[n - 1];
        d->cur_fd = disk_seg_fd(d, d->cur_seg);
        d->cur_off = end < SEG_HDR_SIZE ? SEG_HDR_SIZE : end;
    }
out:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    d->rec.seconds = (double)(t1.tv_sec - t0.tv_sec) +
                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    io_queue_free(&rs.q);
    free(rs.buf);
    free(ids);
    return st;
}
