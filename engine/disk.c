/*
 * disk.c - opening and closing the disk tier, the table of segments, and
 * its statistics (the design is in disk.h and disk_int.h).
 *
 * The data directory holds:
 *   LOCK          an flock()ed file: one process per directory (LMDB's own
 *                 lock file does not exclude a second process);
 *   index/        the LMDB environment (idx.h);
 *   seg-*.log     the journal's segments (seg.h).
 * Open order: lock, index (its format is checked there), segments and
 * recovery, filter (rebuilt from the index), then the threads. Close
 * order: journal writer (everything queued becomes durable), index writer
 * (everything durable gets indexed), reader, files.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk_int.h"
#include "warm.h"
#include "item.h"

#define DISK_SEG_MIN ((uint64_t)1 << 20)
#define DISK_SEG_MAX ((uint64_t)64 << 20)

/* ---- segments ---- */

_Atomic bool disk_maps_off;

/* A live map for segment fd (seg_info), zeroed: NULL when the file's
 * size is unknown or the maps' budget has no room for it (with seg_lock
 * held). */
static uint64_t *seg_map_new(disk *d, int fd, size_t *words)
{
    struct stat sb;
    *words = 0;
    if (d->cfg.map_max == 0 ||
        atomic_load_explicit(&disk_maps_off, memory_order_relaxed) ||
        fstat(fd, &sb) != 0 || sb.st_size <= 0)
        return NULL;
    size_t bits = (size_t)sb.st_size / SEG_MAP_UNIT + 1;
    size_t n = (bits + 63) / 64;
    if (d->map_bytes + n * sizeof(uint64_t) > d->cfg.map_max)
        return NULL;
    uint64_t *map = calloc(n, sizeof(*map));
    if (map == NULL)
        return NULL;
    d->map_bytes += n * sizeof(*map);
    *words = n;
    return map;
}

tc_status disk_seg_add(disk *d, uint64_t id, int fd)
{
    pthread_mutex_lock(&d->seg_lock);
    if (d->nsegs == d->segcap) {
        size_t cap = d->segcap == 0 ? 16 : d->segcap * 2;
        seg_info *s = realloc(d->segs, cap * sizeof(*s));
        if (s == NULL) {
            pthread_mutex_unlock(&d->seg_lock);
            return TC_ENOMEM;
        }
        d->segs = s;
        d->segcap = cap;
    }
    seg_info *s = &d->segs[d->nsegs++];
    *s = (seg_info){.id = id, .fd = fd};
    s->map = seg_map_new(d, fd, &s->map_words);
    pthread_mutex_unlock(&d->seg_lock);
    return TC_OK;
}

int disk_seg_remove(disk *d, size_t i)
{
    seg_info *s = &d->segs[i];
    int fd = s->fd;
    free(s->map);
    d->map_bytes -= s->map_words * sizeof(*s->map);
    memmove(s, s + 1, (d->nsegs - i - 1) * sizeof(*s));
    d->nsegs--;
    return fd;
}

/* The table is sorted by id (segments are added in order): binary
 * search. Call with seg_lock held. */
static seg_info *seg_find(disk *d, uint64_t id)
{
    size_t lo = 0, hi = d->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->segs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->nsegs && d->segs[lo].id == id ? &d->segs[lo] : NULL;
}

int disk_seg_fd(disk *d, uint64_t id)
{
    pthread_mutex_lock(&d->seg_lock);
    seg_info *s = seg_find(d, id);
    int fd = s != NULL ? s->fd : -1;
    pthread_mutex_unlock(&d->seg_lock);
    return fd;
}

void disk_seg_live_locked(disk *d, seg_info **last, uint64_t id, uint32_t off,
                          int64_t delta)
{
    seg_info *s = *last;
    if (s == NULL || s->id != id)
        *last = s = seg_find(d, id);
    if (s == NULL)
        return;
    s->live += (uint64_t)delta;
    uint64_t bit = off / SEG_MAP_UNIT, w = bit / 64;
    if (s->map != NULL && off != SEG_OFF_NONE && w < s->map_words) {
        if (delta > 0)
            s->map[w] |= UINT64_C(1) << (bit % 64);
        else
            s->map[w] &= ~(UINT64_C(1) << (bit % 64));
    }
}

void disk_seg_live(disk *d, uint64_t id, uint32_t off, int64_t delta)
{
    seg_info *last = NULL;
    pthread_mutex_lock(&d->seg_lock);
    disk_seg_live_locked(d, &last, id, off, delta);
    pthread_mutex_unlock(&d->seg_lock);
}

void disk_seg_set_direct(disk *d, uint64_t id)
{
    pthread_mutex_lock(&d->seg_lock);
    seg_info *s = seg_find(d, id);
    if (s != NULL)
        s->direct = true;
    pthread_mutex_unlock(&d->seg_lock);
}

bool disk_seg_direct(disk *d, uint64_t id)
{
    pthread_mutex_lock(&d->seg_lock);
    seg_info *s = seg_find(d, id);
    bool direct = s != NULL && s->direct;
    pthread_mutex_unlock(&d->seg_lock);
    return direct;
}

const uint64_t *disk_seg_map(disk *d, uint64_t id, size_t *words)
{
    pthread_mutex_lock(&d->seg_lock);
    seg_info *s = seg_find(d, id);
    const uint64_t *map = s != NULL ? s->map : NULL;
    *words = s != NULL ? s->map_words : 0;
    pthread_mutex_unlock(&d->seg_lock);
    return map;
}

tc_status disk_seg_create(disk *d, io_queue *q, uint64_t id, int *fd_out,
                          void (*other)(disk *d, io_op *op))
{
    char name[32];
    seg_name(id, name);
    int fd = io_file_open(d->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                          0644);
    if (fd < 0) {
        disk_warn(d, -fd, "cannot create segment file %s", name);
        return fd == -ENOSPC ? TC_ENOSPC : TC_EIO;
    }
    int rc = io_file_prealloc(fd, d->cfg.segment_size);
    unsigned char hb[SEG_HDR_SIZE];
    seg_header h = {SEG_FORMAT, id, d->cfg.segment_size, 0};
    seg_header_encode(&h, hb);
    if (rc == 0) {
        io_op op, *done;
        io_prep_write(&op, fd, hb, sizeof(hb), 0);
        if (io_submit(q, &op) != TC_OK) {
            rc = -EBUSY;
        } else {
            for (;;) {
                if (io_reap(q, &done, 1, 1, -1) == 0)
                    continue;
                if (done == &op)
                    break;
                other(d, done); /* another of q's operations */
            }
            rc = done->res < 0 ? (int)done->res : 0;
        }
    }
    /* The new name is durable only once the directory is synced. */
    if (rc == 0)
        rc = io_dir_sync(d->dirfd);
    if (rc == 0 && disk_seg_add(d, id, fd) != TC_OK)
        rc = -ENOMEM;
    if (rc != 0) {
        disk_warn(d, -rc, "cannot prepare segment file %s", name);
        io_file_close(fd);
        io_file_unlink(d->dirfd, name);
        return rc == -ENOSPC ? TC_ENOSPC : TC_EIO;
    }
    *fd_out = fd;
    return TC_OK;
}

/* ---- open and close ---- */

/* Creates path and its missing parents (mkdir -p); false with errno set. */
static bool disk_mkdirs(const char *path)
{
    char p[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(p)) {
        errno = len == 0 ? ENOENT : ENAMETOOLONG;
        return false;
    }
    memcpy(p, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return false;
        p[i] = c;
    }
    return true;
}

static uint64_t disk_default_segment(const disk_config *c)
{
    uint64_t s = c->disk_size / 16;
    uint64_t min = 2 * (uint64_t)c->item_max + 4096;
    if (s > DISK_SEG_MAX)
        s = DISK_SEG_MAX;
    if (s < DISK_SEG_MIN)
        s = DISK_SEG_MIN;
    if (s < min)
        s = min;
    return (s + 4095) & ~(uint64_t)4095;
}

static tc_status disk_lock_dir(disk *d, char *why, size_t why_len)
{
    d->lockfd = openat(d->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lockfd < 0) {
        snprintf(why, why_len, "cannot open %s/LOCK: %s", d->cfg.dir,
                 strerror(errno));
        return TC_EIO;
    }
    if (flock(d->lockfd, LOCK_EX | LOCK_NB) != 0) {
        tc_status st = errno == EWOULDBLOCK ? TC_EBUSY : TC_EIO;
        snprintf(why, why_len, "%s is in use by another process (its LOCK "
                 "file is locked)", d->cfg.dir);
        return st;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(d->lockfd, 0) == 0 && write(d->lockfd, pid, (size_t)n) < 0)
        (void)0; /* the pid is only a courtesy to an operator */
    return TC_OK;
}

static bool disk_fill_filter(void *arg, const void *key, size_t klen,
                             const idx_loc *loc)
{
    disk *d = arg;
    if (loc->lsn >= d->meta.flush_lsn) {
        filter_add(d->filt, mem_hash(d->m, key, klen));
        d->rec.keys++;
    }
    disk_seg_live(d, loc->seg, loc->off, (int64_t)loc->len);
    return true;
}

tc_status disk_open(const disk_config *cfg, mem *m, disk **out,
                    disk_recovery *rec, char *why, size_t why_len)
{
    tc_status st = TC_ENOMEM;
    *out = NULL;
    disk *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return TC_ENOMEM;
    d->cfg = *cfg;
    d->m = m;
    d->dirfd = d->lockfd = d->cur_fd = -1;
    pthread_mutex_init(&d->q_lock, NULL);
    pthread_cond_init(&d->q_cond, NULL);
    pthread_mutex_init(&d->ix_lock, NULL);
    pthread_cond_init(&d->ix_cond, NULL);
    pthread_mutex_init(&d->seg_lock, NULL);
    pthread_mutex_init(&d->warn_lock, NULL);
    if (d->cfg.segment_size == 0)
        d->cfg.segment_size = disk_default_segment(cfg);
    if (d->cfg.flush_ms == 0)
        d->cfg.flush_ms = 100;

    if (!disk_mkdirs(cfg->dir)) {
        snprintf(why, why_len, "cannot create %s: %s", cfg->dir,
                 strerror(errno));
        st = TC_EIO;
        goto fail;
    }
    d->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        snprintf(why, why_len, "cannot open %s: %s", cfg->dir,
                 strerror(errno));
        st = TC_EIO;
        goto fail;
    }
    if ((st = disk_lock_dir(d, why, why_len)) != TC_OK)
        goto fail;
    /* The index may use what the segments leave of the budget: reclaim
     * (which counts the index file) keeps the two within it, so the map
     * (address space; the file grows as pages are used) is the whole
     * budget and some slack for the moment reclaim runs behind. Small
     * values make the index the larger part: about 100 bytes a key. */
    uint64_t map = cfg->disk_size + ((uint64_t)64 << 20);
    if ((st = idx_open(cfg->dir, (size_t)map, &d->ix, &d->meta, why,
                       why_len)) != TC_OK)
        goto fail;
    if ((st = recover_run(d, why, why_len)) != TC_OK)
        goto fail;
    /* Reserve the CAS values this run may hand out, durably, before any
     * is handed out: they never go backwards across a restart. */
    uint64_t cas_base = d->meta.cas_ceiling;
    d->meta.cas_ceiling = cas_base + (UINT64_C(1) << 32);
    if ((st = idx_begin(d->ix)) != TC_OK ||
        (st = idx_set_meta(d->ix, &d->meta)) != TC_OK ||
        (st = idx_commit(d->ix)) != TC_OK) {
        snprintf(why, why_len, "writing the index state: %s",
                 tc_strerror(st));
        goto fail;
    }
    mem_set_cas_base(m, cas_base);
    atomic_store(&d->flush_lsn, d->meta.flush_lsn);
    d->pending_flush_at = d->meta.flush_at;

    /* Sized for what the index holds and for what the budget may hold
     * (about a key per KiB), so that a growing tier seldom has to chain
     * a second filter (filter.h). */
    uint64_t keys = idx_count(d->ix) * 5 / 4;
    if (keys < cfg->disk_size / 1024)
        keys = cfg->disk_size / 1024;
    if ((st = filter_new((size_t)keys + 1024, &d->filt)) != TC_OK)
        goto fail;
    if ((st = idx_scan(d->ix, disk_fill_filter, d)) != TC_OK) {
        snprintf(why, why_len, "reading the index: %s", tc_strerror(st));
        goto fail;
    }
    /* Segments this process creates, and the current one if it holds
     * no record yet. */
    d->kl_from = d->cur_off <= SEG_HDR_SIZE ? d->cur_seg : d->cur_seg + 1;
    if ((st = indexer_start(d)) != TC_OK ||
        (st = journal_start(d)) != TC_OK || (st = reader_start(d)) != TC_OK) {
        snprintf(why, why_len, "starting the disk threads: %s",
                 tc_strerror(st));
        goto fail;
    }
    if (rec != NULL)
        *rec = d->rec;
    *out = d;
    return TC_OK;
fail:
    disk_close(&d);
    return st;
}

void disk_close(disk **dp)
{
    disk *d = *dp;
    if (d == NULL)
        return;
    warm_stop(d); /* its last snapshot needs the index and memory */
    journal_stop(d);
    indexer_stop(d);
    reader_stop(d);
    journal_free_entries(d);
    while (d->nsegs > 0)
        io_file_close(disk_seg_remove(d, d->nsegs - 1));
    free(d->segs);
    idx_close(&d->ix);
    filter_free(&d->filt);
    if (d->lockfd >= 0)
        close(d->lockfd); /* releases the flock */
    if (d->dirfd >= 0)
        close(d->dirfd);
    pthread_mutex_destroy(&d->q_lock);
    pthread_cond_destroy(&d->q_cond);
    pthread_mutex_destroy(&d->ix_lock);
    pthread_cond_destroy(&d->ix_cond);
    pthread_mutex_destroy(&d->seg_lock);
    pthread_mutex_destroy(&d->warn_lock);
    free(d);
    *dp = NULL;
}

void disk_warn(disk *d, int err, const char *fmt, ...)
{
    if (d->cfg.log == NULL)
        return;
    uint64_t now = disk_now_us();
    pthread_mutex_lock(&d->warn_lock);
    if (d->warn_last_us != 0 && now - d->warn_last_us < 1000000u) {
        d->warn_dropped++;
        pthread_mutex_unlock(&d->warn_lock);
        return;
    }
    uint64_t dropped = d->warn_dropped;
    d->warn_dropped = 0;
    d->warn_last_us = now;
    /* Under the lock: messages stay in order, one at a time. */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    if (err != 0 && len < sizeof(msg))
        len += (size_t)snprintf(msg + len, sizeof(msg) - len, ": %s",
                                strerror(err));
    if (dropped > 0 && len < sizeof(msg))
        snprintf(msg + len, sizeof(msg) - len,
                 " (%" PRIu64 " more problems in the last second not shown)",
                 dropped);
    d->cfg.log(d->cfg.log_arg, msg);
    pthread_mutex_unlock(&d->warn_lock);
}

int64_t disk_pending_flush(const disk *d)
{
    return d->pending_flush_at;
}

bool disk_maybe(disk *d, uint64_t h)
{
    return filter_maybe(d->filt, h);
}

const char *disk_backend_name(const disk *d)
{
    return d->wq != NULL ? io_backend_name(io_queue_backend(d->wq)) : "none";
}

/* ---- statistics ---- */

static void stat_u64(tc_stat_fn fn, void *arg, const char *name, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    fn(arg, name, buf);
}

/* The 99th percentile of fdatasync latency from the log2 histogram: the
 * upper edge of the bucket it falls in. */
static uint64_t fsync_p99(disk *d)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < 64; i++)
        total += __atomic_load_n(&d->fsync_hist[i], __ATOMIC_RELAXED);
    if (total == 0)
        return 0;
    for (int i = 0; i < 64; i++) {
        seen += __atomic_load_n(&d->fsync_hist[i], __ATOMIC_RELAXED);
        if (seen * 100 >= total * 99)
            return (uint64_t)2 << i;
    }
    return 0;
}

void disk_stats(disk *d, tc_stat_fn fn, void *arg)
{
    char buf[64];
    uint64_t durable = atomic_load(&d->st_durable_lsn);
    uint64_t indexed = atomic_load(&d->st_indexed_lsn);
    uint64_t raw = atomic_load(&d->st_raw_bytes);
    uint64_t stored = atomic_load(&d->st_stored_bytes);

    fn(arg, "io_backend", disk_backend_name(d));
    stat_u64(fn, arg, "disk_items", idx_count(d->ix));
    stat_u64(fn, arg, "disk_bytes", disk_usage(d));
    stat_u64(fn, arg, "disk_limit_bytes", d->cfg.disk_size);
    stat_u64(fn, arg, "disk_index_bytes", idx_file_bytes(d->ix));
    stat_u64(fn, arg, "disk_index_live_bytes", idx_live_bytes(d->ix));
    pthread_mutex_lock(&d->seg_lock);
    size_t nsegs = d->nsegs; /* the journal writer adds to them */
    size_t map_bytes = d->map_bytes;
    pthread_mutex_unlock(&d->seg_lock);
    stat_u64(fn, arg, "disk_segments", nsegs);
    stat_u64(fn, arg, "disk_live_map_bytes", map_bytes);
    stat_u64(fn, arg, "disk_reads", atomic_load(&d->st_disk_reads));
    stat_u64(fn, arg, "disk_reads_inline", atomic_load(&d->st_fast_reads));
    stat_u64(fn, arg, "disk_reads_not_cached",
             atomic_load(&d->st_fast_misses));
    stat_u64(fn, arg, "disk_index_faults", atomic_load(&d->st_fast_rests));
    stat_u64(fn, arg, "disk_read_errors",
             atomic_load(&d->st_disk_read_errors));
    stat_u64(fn, arg, "disk_write_errors", atomic_load(&d->st_write_errors));
    stat_u64(fn, arg, "disk_last_errno", (uint64_t)atomic_load(&d->st_last_errno));
    stat_u64(fn, arg, "disk_filter_keys", filter_count(d->filt));
    stat_u64(fn, arg, "disk_filter_bytes", filter_bytes(d->filt));
    stat_u64(fn, arg, "journal_bytes", atomic_load(&d->st_journal_bytes));
    stat_u64(fn, arg, "journal_records", atomic_load(&d->st_journal_records));
    stat_u64(fn, arg, "journal_coalesced",
             atomic_load(&d->st_journal_coalesced));
    stat_u64(fn, arg, "journal_folded",
             atomic_load(&d->st_journal_folded));
    stat_u64(fn, arg, "journal_lag_bytes",
             atomic_load_explicit(&d->unindexed, memory_order_relaxed));
    stat_u64(fn, arg, "journal_unsynced_bytes",
             atomic_load_explicit(&d->unsynced, memory_order_relaxed));
    stat_u64(fn, arg, "journal_unwritten_bytes",
             atomic_load_explicit(&d->unwritten, memory_order_relaxed));
    size_t uw_max = atomic_load_explicit(&d->unwritten_max,
                                         memory_order_relaxed);
    stat_u64(fn, arg, "journal_unwritten_max",
             uw_max == SIZE_MAX ? 0 : uw_max);
    stat_u64(fn, arg, "journal_write_rate", atomic_load(&d->jw_rate));
    stat_u64(fn, arg, "index_lag_records",
             durable > indexed ? durable - indexed : 0);
    stat_u64(fn, arg, "index_batches", atomic_load(&d->st_index_batches));
    stat_u64(fn, arg, "index_records", atomic_load(&d->st_index_records));
    stat_u64(fn, arg, "index_superseded",
             atomic_load(&d->st_index_superseded));
    stat_u64(fn, arg, "fsyncs", atomic_load(&d->st_fsyncs));
    stat_u64(fn, arg, "fsync_us_p99", fsync_p99(d));
    stat_u64(fn, arg, "fsync_us_max", atomic_load(&d->st_fsync_us_max));
    uint64_t since = atomic_load(&d->sync_since), now = disk_now_us();
    stat_u64(fn, arg, "fsync_running_us",
             since != 0 && now > since ? now - since : 0);
    snprintf(buf, sizeof(buf), "%.2f",
             stored > 0 ? (double)raw / (double)stored : 1.0);
    fn(arg, "compress_ratio", buf);
    stat_u64(fn, arg, "compress_skipped_behind",
             atomic_load(&d->st_raw_hurried));
    stat_u64(fn, arg, "journal_direct_segments",
             atomic_load(&d->st_direct_segs));
    stat_u64(fn, arg, "journal_writer_behind",
             atomic_load(&d->st_writer_behind));
    stat_u64(fn, arg, "disk_reclaimed_segments",
             atomic_load(&d->st_reclaimed_segs));
    stat_u64(fn, arg, "disk_reclaim_dropped",
             atomic_load(&d->st_reclaim_dropped));
    stat_u64(fn, arg, "disk_reclaim_rescued",
             atomic_load(&d->st_reclaim_rescued));
    stat_u64(fn, arg, "disk_reclaim_read_bytes",
             atomic_load(&d->st_reclaim_read_bytes));
    stat_u64(fn, arg, "disk_reclaim_listed_segs",
             atomic_load(&d->st_reclaim_listed));
    stat_u64(fn, arg, "disk_key_list_bytes", atomic_load(&d->st_kl_bytes));
    stat_u64(fn, arg, "disk_over_budget", atomic_load(&d->st_over_budget));
    stat_u64(fn, arg, "disk_room_wait_timeouts",
             atomic_load(&d->st_room_timeouts));
    stat_u64(fn, arg, "recovery_records", d->rec.records);
    stat_u64(fn, arg, "recovery_cut_bytes", d->rec.cut_bytes);
    stat_u64(fn, arg, "recovery_skipped", d->rec.skipped);
    snprintf(buf, sizeof(buf), "%.3f", d->rec.seconds);
    fn(arg, "recovery_seconds", buf);
    warm_stats(d, fn, arg);
    fn(arg, "durability",
       d->cfg.durability == TC_DURABILITY_SYNC   ? "sync"
       : d->cfg.durability == TC_DURABILITY_NONE ? "none"
                                                 : "async");
    fn(arg, "direct_writes",
       d->cfg.direct_writes == TC_DIRECT_ON    ? "on"
       : d->cfg.direct_writes == TC_DIRECT_OFF ? "off"
                                               : "auto");
}
