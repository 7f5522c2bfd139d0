/*
 * reader.c - loads keys from disk: the disk-read stage.
 *
 * One thread owns an I/O queue (io_uring, or the thread pool) and an index
 * reader. It takes load requests from any thread, looks each key up in
 * the index (an LMDB read, which may fault pages in: that is why it is
 * done here and not on a server's event loop), reads the record with the
 * queue, many at once, checks it (CRC, key, LSN), decompresses it, and
 * promotes the item to the memory tier unless a newer version is there or
 * the index moved on meanwhile (mem_promote checks both under the shard
 * lock, so a promotion never replaces a newer value).
 *
 * A key whose index entry is flushed (LSN below the newest flush) or
 * expired is reported absent without a read.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "disk_int.h"
#include "item.h"

#define RD_DEPTH 64

typedef struct rd_job {
    struct rd_job *next;
    uint64_t h;
    disk_load_fn fn;
    void *arg;
    idx_loc loc;
    unsigned char *buf;
    io_op op;
    size_t klen;
    char key[TC_KEY_MAX];
} rd_job;

typedef struct disk_reader {
    disk *d;
    pthread_t thread;
    bool started;
    int efd;
    pthread_mutex_t lock;
    rd_job *head;
    rd_job *tail;
    bool stop;
    io_queue *q;
    idx_reader *ir;
    zc *z;
    rd_job *blocked; /* looked up, waiting for room in the queue */
    rd_job *blocked_tail;
} disk_reader;

void disk_load(disk *d, uint64_t h, const void *key, size_t klen,
               disk_load_fn fn, void *arg)
{
    disk_reader *r = d->rd;
    rd_job *j = malloc(sizeof(*j));
    if (j == NULL) {
        fn(arg, TC_ENOMEM, NULL);
        return;
    }
    j->next = NULL;
    j->h = h;
    j->fn = fn;
    j->arg = arg;
    j->buf = NULL;
    j->klen = klen;
    memcpy(j->key, key, klen);
    pthread_mutex_lock(&r->lock);
    bool was_empty = r->head == NULL;
    if (was_empty)
        r->head = j;
    else
        r->tail->next = j;
    r->tail = j;
    pthread_mutex_unlock(&r->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t n = write(r->efd, &one, sizeof(one));
        (void)n; /* the counter cannot overflow in practice */
    }
}

static void rd_finish(rd_job *j, tc_status st, struct tc_item *it)
{
    j->fn(j->arg, st, it);
    free(j->buf);
    free(j);
}

/*
 * A read that failed (an I/O error, or a record that fails its checks: a
 * torn or damaged write, a segment cut short by a power cut under
 * durability "none"): the value is lost, and a cache answers a miss, as
 * it would for an evicted key; the caller fetches it from its source and
 * stores it again, which replaces the index entry. Counted in the stats
 * (disk_read_errors); never answered with what was read.
 */
static void rd_failed(disk_reader *r, rd_job *j)
{
    atomic_fetch_add(&r->d->st_disk_read_errors, 1);
    if (j->op.res < 0)
        disk_warn(r->d, (int)-j->op.res, "read of segment %" PRIu64
                  " at offset %" PRIu32 " failed; answered as a miss",
                  j->loc.seg, j->loc.off);
    else
        disk_warn(r->d, 0, "record in segment %" PRIu64 " at offset %" PRIu32
                  " failed its checks; answered as a miss", j->loc.seg,
                  j->loc.off);
    rd_finish(j, TC_ENOTFOUND, NULL);
}

typedef struct rd_check {
    disk_reader *r;
    const rd_job *j;
} rd_check;

/* Under the shard lock: does the index still point at what was read? */
static bool rd_still_current(void *arg)
{
    rd_check *c = arg;
    idx_loc now;
    idx_reader_reset(c->r->ir);
    tc_status st = idx_lookup(c->r->ir, c->j->key, c->j->klen, &now);
    idx_reader_reset(c->r->ir);
    /* A flush_all after the lookup: the value must not come back into
     * memory (the reader still answers the get that asked: it was read
     * before the flush). */
    return st == TC_OK && now.lsn == c->j->loc.lsn && now.seg == c->j->loc.seg &&
           now.off == c->j->loc.off && now.lsn >= disk_flush_lsn(c->r->d);
}

tc_status disk_record_item(disk *d, zc *z, const idx_loc *loc,
                           const void *k, size_t klen,
                           const unsigned char *buf, int64_t res,
                           struct tc_item **out)
{
    seg_rec rec;
    const unsigned char *key, *val;

    *out = NULL;
    if (res != (int64_t)loc->len ||
        seg_rec_decode(buf, loc->len, &rec, &key, &val) != loc->len ||
        rec.type != SEG_SET || rec.lsn != loc->lsn || rec.klen != klen ||
        memcmp(key, k, klen) != 0 || rec.raw_len != loc->raw_len)
        return TC_ECORRUPT;
    struct tc_item *it = mem_item_alloc(d->m, k, klen, rec.raw_len);
    if (it == NULL)
        return TC_ENOMEM;
    if (rec.codec == SEG_ZSTD) {
        if (z == NULL ||
            zc_decompress(z, ZC_ZSTD, val, rec.stored_len, item_value(it),
                          rec.raw_len) != TC_OK) {
            item_unref(it);
            return TC_ECORRUPT;
        }
    } else if (rec.raw_len > 0) {
        memcpy(item_value(it), val, rec.raw_len);
    }
    it->flags = rec.flags;
    it->cas = rec.cas;
    /* The index may hold a newer expiry than the record (a touch). */
    item_set_exptime(it, loc->exptime);
    /* And a newer state (a touch record carries it too). */
    it->meta = loc->meta & ITEM_M_PERSIST;
    *out = it;
    return TC_OK;
}

/* A read completed: checks, decodes, promotes, answers. */
static void rd_complete(disk_reader *r, rd_job *j)
{
    disk *d = r->d;
    struct tc_item *it;
    tc_status st = disk_record_item(d, r->z, &j->loc, j->key, j->klen,
                                    j->buf, j->op.res, &it);
    if (st == TC_ENOMEM) {
        rd_finish(j, TC_ENOMEM, NULL);
        return;
    }
    if (st != TC_OK) {
        rd_failed(r, j);
        return;
    }
    rd_check c = {r, j};
    mem_promote(d->m, j->h, it, d->cfg.now(d->cfg.now_arg), rd_still_current,
                &c);
    rd_finish(j, TC_OK, it); /* the caller gets our reference */
}

/* Looks a new job up and starts its read (or answers it at once). */
static void rd_start(disk_reader *r, rd_job *j)
{
    disk *d = r->d;
    tc_status st = idx_lookup(r->ir, j->key, j->klen, &j->loc);
    if (st != TC_OK) {
        if (st == TC_ENOTFOUND)
            rd_finish(j, TC_ENOTFOUND, NULL);
        else
            rd_failed(r, j);
        return;
    }
    uint32_t now = d->cfg.now(d->cfg.now_arg);
    if (j->loc.lsn < disk_flush_lsn(d) ||
        (j->loc.exptime != 0 && j->loc.exptime <= now)) {
        rd_finish(j, TC_ENOTFOUND, NULL);
        return;
    }
    int fd = disk_seg_fd(d, j->loc.seg);
    j->buf = malloc(j->loc.len);
    if (fd < 0 || j->buf == NULL) {
        rd_finish(j, fd < 0 ? TC_ENOTFOUND : TC_ENOMEM, NULL);
        return;
    }
    io_prep_read(&j->op, fd, j->buf, j->loc.len, j->loc.off);
    j->op.user = j;
    if (io_submit(r->q, &j->op) != TC_OK) {
        j->next = NULL;
        if (r->blocked_tail != NULL)
            r->blocked_tail->next = j;
        else
            r->blocked = j;
        r->blocked_tail = j;
        return;
    }
    atomic_fetch_add(&d->st_disk_reads, 1);
}

static void rd_reap(disk_reader *r, int timeout_ms)
{
    io_op *done[RD_DEPTH];
    unsigned n = io_reap(r->q, done, RD_DEPTH, 0, timeout_ms);
    for (unsigned i = 0; i < n; i++)
        rd_complete(r, done[i]->user);
    /* Room again: start the reads that waited for it. */
    while (r->blocked != NULL &&
           io_queue_inflight(r->q) < RD_DEPTH) {
        rd_job *j = r->blocked;
        r->blocked = j->next;
        if (r->blocked == NULL)
            r->blocked_tail = NULL;
        if (io_submit(r->q, &j->op) != TC_OK) {
            j->next = r->blocked;
            r->blocked = j;
            if (r->blocked_tail == NULL)
                r->blocked_tail = j;
            break;
        }
        atomic_fetch_add(&r->d->st_disk_reads, 1);
    }
    /* io_uring: reads queued here reach the kernel now, not at the next
     * turn of the loop, which may be a poll timeout away. */
    io_flush(r->q);
}

static void *rd_main(void *arg)
{
    disk_reader *r = arg;
    for (;;) {
        struct pollfd pf[2] = {{r->efd, POLLIN, 0},
                               {io_queue_fd(r->q), POLLIN, 0}};
        poll(pf, 2, 1000);
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            ssize_t n = read(r->efd, &v, sizeof(v));
            (void)n;
        }
        pthread_mutex_lock(&r->lock);
        rd_job *jobs = r->head;
        r->head = r->tail = NULL;
        bool stop = r->stop;
        pthread_mutex_unlock(&r->lock);

        while (jobs != NULL) {
            rd_job *next = jobs->next;
            rd_start(r, jobs);
            jobs = next;
        }
        idx_reader_reset(r->ir);
        io_flush(r->q);
        rd_reap(r, 0);
        if (stop && io_queue_inflight(r->q) == 0 && r->blocked == NULL) {
            pthread_mutex_lock(&r->lock);
            bool more = r->head != NULL;
            pthread_mutex_unlock(&r->lock);
            if (!more)
                return NULL;
        }
        if (stop)
            rd_reap(r, 10);
    }
}

/* ---- the fast path: a load on the caller's thread ---- */

/* After an index lookup that faulted a page in from the device, the fast
 * path rests this long: the index is not all in memory. */
#define RD_FAST_REST_NS 1000000000ll
/* How often the fast path looks at the thread's major faults. */
#define RD_FAST_CHECK_NS 1000000ll

struct disk_fast {
    idx_reader *ir;
    zc *z;
    unsigned char *buf;
    size_t cap;
    int64_t rest_until; /* monotonic ns */
    int64_t checked_at; /* when majflt was last read (monotonic ns) */
    long majflt;        /* the thread's major faults then */
};

tc_status disk_fast_new(disk *d, disk_fast **out)
{
    disk_fast *f = calloc(1, sizeof(*f));
    *out = NULL;
    if (f == NULL)
        return TC_ENOMEM;
    tc_status st = idx_reader_new(d->ix, &f->ir);
    if (st == TC_OK)
        st = zc_new(0, 0, &f->z);
    if (st != TC_OK) {
        disk_fast_free(&f);
        return st;
    }
    *out = f;
    return TC_OK;
}

void disk_fast_free(disk_fast **fp)
{
    disk_fast *f = *fp;
    if (f == NULL)
        return;
    idx_reader_free(&f->ir);
    zc_free(&f->z);
    free(f->buf);
    free(f);
    *fp = NULL;
}

static int64_t rd_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static long rd_majflt(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_majflt : 0;
}

typedef struct rd_fast_check {
    disk *d;
    disk_fast *f;
    const idx_loc *loc;
    const void *key;
    size_t klen;
} rd_fast_check;

/* Under the shard lock, as rd_still_current. */
static bool rd_fast_current(void *arg)
{
    rd_fast_check *c = arg;
    idx_loc now;
    tc_status st = idx_lookup(c->f->ir, c->key, c->klen, &now);
    idx_reader_reset(c->f->ir);
    return st == TC_OK && now.lsn == c->loc->lsn &&
           now.seg == c->loc->seg && now.off == c->loc->off &&
           now.lsn >= disk_flush_lsn(c->d);
}

tc_status disk_load_fast(disk *d, disk_fast *f, uint64_t h, const void *key,
                         size_t klen, struct tc_item **out)
{
    *out = NULL;
    if (f == NULL)
        return TC_PENDING;
    int64_t t = rd_mono_ns();
    if (f->rest_until != 0 && t < f->rest_until)
        return TC_PENDING;
    f->rest_until = 0;
    if (t - f->checked_at >= RD_FAST_CHECK_NS) {
        /* The thread's major faults, read once per RD_FAST_CHECK_NS: its
         * only file mapping is the index, so a new one means a lookup
         * since the last look waited for the device, and the index is
         * not all in memory: lookups go to the reader thread for a
         * while. (Two getrusage calls around every lookup: __getrusage
         * alone was 1.8% of the server's samples in disk-get, besides
         * its share of the kernel's system call entry, 2.6%.) */
        long faults = rd_majflt();
        bool faulted = f->checked_at != 0 && faults != f->majflt;
        f->majflt = faults;
        f->checked_at = t;
        if (faulted) {
            f->rest_until = t + RD_FAST_REST_NS;
            atomic_fetch_add(&d->st_fast_rests, 1);
            return TC_PENDING;
        }
    }
    idx_loc loc;
    tc_status st = idx_lookup(f->ir, key, klen, &loc);
    idx_reader_reset(f->ir);
    if (st != TC_OK)
        return st == TC_ENOTFOUND ? TC_ENOTFOUND : TC_PENDING;
    uint32_t now = d->cfg.now(d->cfg.now_arg);
    if (loc.lsn < disk_flush_lsn(d) ||
        (loc.exptime != 0 && loc.exptime <= now))
        return TC_ENOTFOUND;
    int fd = disk_seg_fd(d, loc.seg);
    if (fd < 0)
        return TC_PENDING; /* the reader thread decides */
    if (f->cap < loc.len) {
        unsigned char *nb = realloc(f->buf, loc.len);
        if (nb == NULL)
            return TC_PENDING;
        f->buf = nb;
        f->cap = loc.len;
    }
    ssize_t n = io_file_read_nowait(fd, f->buf, loc.len, loc.off);
    if (n != (ssize_t)loc.len) {
        atomic_fetch_add(&d->st_fast_misses, 1);
        return TC_PENDING; /* not (all) in the page cache, or an error */
    }
    atomic_fetch_add(&d->st_disk_reads, 1);
    atomic_fetch_add(&d->st_fast_reads, 1);
    struct tc_item *it;
    st = disk_record_item(d, f->z, &loc, key, klen, f->buf, n, &it);
    if (st == TC_ENOMEM)
        return TC_ENOMEM;
    if (st != TC_OK) {
        /* Damaged, or no longer what the index said: the reader thread
         * reads it again and reports it. */
        return TC_PENDING;
    }
    rd_fast_check c = {d, f, &loc, key, klen};
    mem_promote(d->m, h, it, now, rd_fast_current, &c);
    *out = it;
    return TC_OK;
}

tc_status reader_start(disk *d)
{
    disk_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TC_ENOMEM;
    r->d = d;
    d->rd = r;
    pthread_mutex_init(&r->lock, NULL);
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0)
        return TC_EIO;
    io_config ic = {.backend = d->cfg.backend, .depth = RD_DEPTH,
                    .pool_threads = 4};
    tc_status st = io_queue_new(&ic, &r->q);
    if (st == TC_OK)
        st = idx_reader_new(d->ix, &r->ir);
    if (st == TC_OK)
        st = zc_new(0, 0, &r->z);
    if (st != TC_OK)
        return st;
    if (pthread_create(&r->thread, NULL, rd_main, r) != 0)
        return TC_ENOMEM;
    pthread_setname_np(r->thread, "tc-reader"); /* for top -H, perf */
    r->started = true;
    return TC_OK;
}

void reader_stop(disk *d)
{
    disk_reader *r = d->rd;
    if (r == NULL)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->lock);
        r->stop = true;
        pthread_mutex_unlock(&r->lock);
        uint64_t one = 1;
        ssize_t n = write(r->efd, &one, sizeof(one));
        (void)n;
        pthread_join(r->thread, NULL);
    }
    io_queue_free(&r->q);
    idx_reader_free(&r->ir);
    zc_free(&r->z);
    if (r->efd >= 0)
        close(r->efd);
    pthread_mutex_destroy(&r->lock);
    free(r);
    d->rd = NULL;
}
