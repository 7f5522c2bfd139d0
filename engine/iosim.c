/*
 * iosim.c - the power-cut test layer of io.h. While it is on, it records
 * every change the engine makes to its files through io.c, and
 * io_sim_power_cut() puts the files back the way a machine that lost
 * power could have left them: the most pessimistic way, where nothing
 * reached stable storage that was not made durable by an fdatasync (data)
 * or by an fsync of the directory (names). It is simple and exact rather
 * than fast: one mutex, copies of the data written, and memory in
 * proportion to what is not yet durable.
 *
 * This is the engine's one piece of process-global state, accepted
 * because only tests turn it on (a fault injector must see all queues and
 * file calls of the process at once).
 *
 * Data. A file is known by (st_dev, st_ino), whatever descriptor reaches
 * it; the layer opens its own read-write descriptor for each file it
 * tracks (through /proc/self/fd), which also keeps the inode alive. For
 * each file it keeps:
 *   ds       the file's durable size;
 *   pages    O, pages (SIM_PAGE bytes, sorted by index) of the durable
 *            image D where the file on disk may differ from D;
 *   pending  the changes not yet made durable, in submission order: a
 *            write (with a copy of its bytes), a truncation, a growth by
 *            preallocation; each with the byte range [lo, hi) it may
 *            change (a truncation: from the new or old size, whichever is
 *            lower, to the end).
 * Invariant I: every byte below ds that a pending change may change lies
 * in a page of O; a byte below ds outside O's pages holds D's value in
 * the file, and nothing under way can change it. O has no page wholly at
 * or past ds, and the bytes of an O page past ds are zero. A file first
 * seen has D = its contents then (ds = its size, O empty), so the layer
 * must be on before the engine writes.
 *
 * Keeping I:
 *   - before a change can reach the file (at submission, under the
 *     mutex), the pages holding bytes below ds that it may change, and
 *     that O lacks, are read from the file into O (by I the file holds
 *     D's bytes there);
 *   - a change is complete once its final result is known (a CQE seen by
 *     the consumer, a pool thread's call returned); a failed change is
 *     never made durable (it may have written anything, so it stays
 *     pending and is undone at the power cut);
 *   - an fdatasync covers the changes complete and not failed when it is
 *     submitted (it takes the next ticket and marks those without one).
 *     When it succeeds, the changes marked with its ticket or an earlier
 *     one are applied to D in submission order (a write copies its bytes
 *     into O pages and raises ds; a truncation sets ds and drops what
 *     lies past it; a growth raises ds) and leave the pending list. Then
 *     every page holding bytes below the new ds that a change still
 *     pending may change is put in O, and every O page that no pending
 *     change touches is dropped if the file holds the same bytes. A page
 *     that must join O during a sync takes its bytes below `lim` from the
 *     file (by I they are D's) and zeros past it, where lim is the
 *     durable size when the sync began, lowered by each truncation
 *     applied since: past it D either had nothing or lost it.
 * Writes under way while an fdatasync is submitted are thus not covered
 * by it, even if the kernel happened to order them first: a machine
 * could lose them. Two overlapping writes under way at once are applied
 * in submission order (the result on disk is undefined anyway).
 *
 * Names. Creations (io_file_open with O_CREAT of a missing file),
 * unlinks and renames are recorded in order, each with the directories
 * whose fsync makes it durable. An unlink does not unlink: it renames
 * the file to a hidden name (".tcsim-<pid>-<n>") in its directory, and
 * so does a rename for the file it replaces; io_dir_sync unlinks the
 * hidden names of the operations it makes durable. The power cut undoes
 * the operations not yet durable in reverse order (a creation by
 * unlinking, a hidden file by renaming it back, a rename by renaming
 * back), after restoring the data of every file through the layer's own
 * descriptors. Files whose last name is gone for good (link count 0
 * after a directory sync) are no longer restored.
 *
 * The cut. io_sim_power_cut() sets `cut` under the mutex: from then on
 * every submission, pool call and file call fails with -EIO without
 * touching a file (io.c checks it under the mutex, and hands SQEs to the
 * kernel only under the mutex). It then waits until every registered
 * io_uring ring has no operation left in the kernel (the SQ head the
 * kernel advanced equals the CQ tail it advanced: one CQE per SQE), and
 * a pool thread in a call holds the mutex, so nothing lands after the
 * restore.
 *
 * Not covered: what does not go through io.c (LMDB's own files and
 * syncs, plain write() calls), directories created or removed, O_TMPFILE
 * and cross-file links, metadata other than size and names (modes,
 * times), and torn writes (a write is undone whole or kept whole).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "io.h"
#include "io_int.h"

#define SIM_PAGE 4096u
#define SIM_RING_WAIT_MS 30000

enum { CH_WRITE = 1, CH_TRUNC, CH_GROW };
enum { NS_CREATE = 1, NS_STASH, NS_RENAME };

typedef struct sim_page {
    uint64_t idx;
    uint8_t *b;
} sim_page;

typedef struct sim_file sim_file;

typedef struct sim_change {
    struct sim_change *next;
    int kind;
    uint64_t lo, hi; /* the bytes it may change */
    uint64_t size;   /* TRUNC: the new size */
    uint8_t *data;   /* WRITE: hi - lo bytes */
    bool completed;
    bool failed;
    uint64_t cover; /* the first fdatasync that covers it; 0: none */
    sim_file *f;
} sim_change;

struct sim_file {
    sim_file *next;
    dev_t dev;
    ino_t ino;
    int fd;
    uint64_t ds;
    sim_page *pages;
    size_t npages, cap;
    sim_change *head, *tail;
    size_t npend;
    unsigned syncs; /* fdatasyncs under way */
    bool gone;
};

typedef struct sim_sync {
    sim_file *f;
    uint64_t ticket;
} sim_sync;

typedef struct sim_dir {
    struct sim_dir *next;
    dev_t dev;
    ino_t ino;
    int fd;
} sim_dir;

typedef struct sim_ns {
    int kind;
    sim_dir *a, *b; /* CREATE, STASH: a; RENAME: from a to b */
    char *na, *nb;  /* CREATE: na; STASH: na hidden as nb; RENAME: na to nb */
    bool synced_a, synced_b;
} sim_ns;

static struct {
    pthread_mutex_t lock;
    atomic_bool on;
    atomic_bool cut;
    _Atomic uint64_t write_bps; /* io_sim_slow_writes; 0: full speed */
    _Atomic uint64_t sync_us;   /* io_sim_slow_syncs; 0: full speed */
    atomic_int sync_err;        /* io_sim_fail_syncs; 0: none */
    atomic_int read_err;        /* io_sim_fail_reads; 0: none */
    bool broken; /* a record could not be kept: the model is not exact */
    sim_file *files;
    sim_dir *dirs;
    sim_ns *ns;
    size_t nns, capns;
    struct io_uring **rings;
    size_t nrings, caprings;
    uint64_t ticket;
    uint64_t stash_seq;
} sim = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------------ */
/* The lock and the hooks' cheap side.                                 */

bool iosim_active(void)
{
    return atomic_load_explicit(&sim.on, memory_order_relaxed);
}

void iosim_lock(void)
{
    pthread_mutex_lock(&sim.lock);
}

void iosim_unlock(void)
{
    pthread_mutex_unlock(&sim.lock);
}

bool iosim_cut_locked(void)
{
    return atomic_load(&sim.cut);
}

void io_sim_slow_writes(uint64_t bytes_per_s)
{
    atomic_store(&sim.write_bps, bytes_per_s);
}

static void sim_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u),
                          (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void iosim_slow_write(size_t len)
{
    uint64_t bps = atomic_load_explicit(&sim.write_bps, memory_order_relaxed);
    if (bps != 0)
        sim_sleep_ns((uint64_t)len * 1000000000u / bps);
}

void io_sim_slow_syncs(uint64_t us)
{
    atomic_store(&sim.sync_us, us);
}

void io_sim_fail_syncs(int err)
{
    atomic_store(&sim.sync_err, err);
}

void io_sim_fail_reads(int err)
{
    atomic_store(&sim.read_err, err);
}

int iosim_read_err(void)
{
    return iosim_active() ? 0 : atomic_load(&sim.read_err);
}

int iosim_slow_sync(void)
{
    uint64_t us = atomic_load_explicit(&sim.sync_us, memory_order_relaxed);
    if (us != 0)
        sim_sleep_ns(us * 1000u);
    return iosim_active() ? 0 : atomic_load(&sim.sync_err);
}

bool iosim_outside_begin(void)
{
    if (!iosim_active())
        return true;
    iosim_lock();
    if (iosim_cut_locked()) {
        iosim_unlock();
        return false;
    }
    return true;
}

void iosim_outside_end(void)
{
    if (iosim_active())
        iosim_unlock();
}

void io_sim_enable(void)
{
    atomic_store(&sim.on, true);
}

bool io_sim_enabled(void)
{
    return atomic_load(&sim.on);
}

static bool grow_array(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t n = *cap == 0 ? 16 : *cap * 2;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * size);
    if (p == NULL)
        return false;
    *arr = p;
    *cap = n;
    return true;
}

void iosim_ring_add(struct io_uring *ring)
{
    iosim_lock();
    if (grow_array((void **)&sim.rings, &sim.caprings, sim.nrings + 1,
                   sizeof(*sim.rings)))
        sim.rings[sim.nrings++] = ring;
    else
        sim.broken = true;
    iosim_unlock();
}

void iosim_ring_del(struct io_uring *ring)
{
    iosim_lock();
    for (size_t i = 0; i < sim.nrings; i++) {
        if (sim.rings[i] == ring) {
            sim.rings[i] = sim.rings[--sim.nrings];
            break;
        }
    }
    iosim_unlock();
}

/* ------------------------------------------------------------------ */
/* Pages of the durable image.                                         */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* The index in f->pages of page idx, or where it would go. */
static size_t page_find(const sim_file *f, uint64_t idx, bool *found)
{
    size_t lo = 0, hi = f->npages;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->pages[mid].idx < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < f->npages && f->pages[lo].idx == idx;
    return lo;
}

static bool page_insert(sim_file *f, size_t at, uint64_t idx, uint8_t *b)
{
    if (!grow_array((void **)&f->pages, &f->cap, f->npages + 1,
                    sizeof(*f->pages)))
        return false;
    memmove(&f->pages[at + 1], &f->pages[at],
            (f->npages - at) * sizeof(*f->pages));
    f->pages[at].idx = idx;
    f->pages[at].b = b;
    f->npages++;
    return true;
}

/* Reads [base, min(base + n, eof)) of fd into b; the rest of b stays as
 * it is. */
static int read_at(int fd, uint8_t *b, size_t n, uint64_t base,
                   size_t *got_out)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)(base + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *got_out = got;
    return 0;
}

static int write_at(int fd, const uint8_t *b, size_t n, uint64_t base)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = pwrite(fd, b + put, n - put, (off_t)(base + put));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        put += (size_t)r;
    }
    return 0;
}

/* Puts in O the pages below ds that [lo, hi) touches and O lacks, read
 * from the file (by I they hold D's bytes there). */
static int save_range(sim_file *f, uint64_t lo, uint64_t hi)
{
    if (lo >= hi || lo >= f->ds)
        return 0;
    uint64_t last = (min_u64(hi, f->ds) - 1) / SIM_PAGE;
    for (uint64_t p = lo / SIM_PAGE; p <= last; p++) {
        bool found;
        size_t at = page_find(f, p, &found);
        if (found)
            continue;
        uint8_t *b = calloc(1, SIM_PAGE);
        size_t got;
        if (b == NULL)
            return -ENOMEM;
        uint64_t base = p * SIM_PAGE;
        int r = read_at(f->fd, b, (size_t)min_u64(SIM_PAGE, f->ds - base),
                        base, &got);
        if (r < 0 || !page_insert(f, at, p, b)) {
            free(b);
            return r < 0 ? r : -ENOMEM;
        }
    }
    return 0;
}

/* Page idx of O; if it was missing, made from the file's bytes below
 * lim (D's bytes there, by I) and zeros past it. NULL when out of memory
 * or the file cannot be read (the model is then broken). */
static uint8_t *page_fill_get(sim_file *f, uint64_t idx, uint64_t lim)
{
    bool found;
    size_t at = page_find(f, idx, &found), got;
    if (found)
        return f->pages[at].b;
    uint8_t *b = calloc(1, SIM_PAGE);
    uint64_t base = idx * SIM_PAGE;
    if (b == NULL ||
        (base < lim &&
         read_at(f->fd, b, (size_t)min_u64(SIM_PAGE, lim - base), base,
                 &got) < 0) ||
        !page_insert(f, at, idx, b)) {
        free(b);
        sim.broken = true;
        return NULL;
    }
    return b;
}

/* D loses everything from byte s on. */
static void cut_pages(sim_file *f, uint64_t s)
{
    size_t w = 0;
    for (size_t i = 0; i < f->npages; i++) {
        sim_page *pg = &f->pages[i];
        uint64_t base = pg->idx * SIM_PAGE;
        if (base >= s) {
            free(pg->b);
            continue;
        }
        if (base + SIM_PAGE > s)
            memset(pg->b + (s - base), 0, (size_t)(base + SIM_PAGE - s));
        f->pages[w++] = *pg;
    }
    f->npages = w;
}

static bool touches(const sim_change *c, uint64_t p)
{
    return c->lo < c->hi && p >= c->lo / SIM_PAGE &&
           p <= (c->hi - 1) / SIM_PAGE;
}

static bool touched_by_pending(const sim_file *f, uint64_t p)
{
    for (const sim_change *c = f->head; c != NULL; c = c->next)
        if (touches(c, p))
            return true;
    return false;
}

/*
 * Makes c part of D. *lim bounds the bytes that a page missing from O
 * takes from the file: the durable size when the sync began (past it D
 * had nothing), lowered by every truncation applied since (D lost what
 * lay past it).
 */
static void apply(sim_file *f, const sim_change *c, uint64_t *lim)
{
    switch (c->kind) {
    case CH_WRITE:
        for (uint64_t pos = c->lo; pos < c->hi;) {
            uint64_t idx = pos / SIM_PAGE;
            size_t in = (size_t)(pos % SIM_PAGE);
            size_t n = (size_t)min_u64(SIM_PAGE - in, c->hi - pos);
            uint8_t *b = page_fill_get(f, idx, *lim);
            if (b != NULL)
                memcpy(b + in, c->data + (pos - c->lo), n);
            pos += n;
        }
        if (c->hi > f->ds)
            f->ds = c->hi;
        break;
    case CH_TRUNC:
        if (c->size < f->ds)
            cut_pages(f, c->size);
        if (c->size < *lim)
            *lim = c->size;
        f->ds = c->size;
        break;
    default:
        if (c->hi > f->ds)
            f->ds = c->hi;
        break;
    }
}

/* Restores I after changes were applied (see the top of the file); lim
 * as for apply(). */
static void reestablish(sim_file *f, uint64_t lim)
{
    for (const sim_change *c = f->head; c != NULL; c = c->next) {
        if (c->lo >= c->hi || c->lo >= f->ds)
            continue;
        uint64_t last = (min_u64(c->hi, f->ds) - 1) / SIM_PAGE;
        for (uint64_t p = c->lo / SIM_PAGE; p <= last; p++)
            page_fill_get(f, p, lim);
    }
    uint8_t *tmp = malloc(SIM_PAGE);
    size_t w = 0;
    for (size_t i = 0; i < f->npages; i++) {
        sim_page pg = f->pages[i];
        uint64_t base = pg.idx * SIM_PAGE;
        bool keep = false;
        if (base < f->ds) {
            size_t n = (size_t)min_u64(SIM_PAGE, f->ds - base), got = 0;
            keep = tmp == NULL || touched_by_pending(f, pg.idx) ||
                   read_at(f->fd, tmp, n, base, &got) < 0 || got != n ||
                   memcmp(tmp, pg.b, n) != 0;
        }
        if (keep)
            f->pages[w++] = pg;
        else
            free(pg.b);
    }
    f->npages = w;
    free(tmp);
}

/* ------------------------------------------------------------------ */
/* Files.                                                              */

static sim_file *file_find(dev_t dev, ino_t ino)
{
    for (sim_file *f = sim.files; f != NULL; f = f->next)
        if (f->dev == dev && f->ino == ino)
            return f;
    return NULL;
}

/* The record of the regular file behind fd (made if create): *out NULL
 * when fd is no regular file (the operation will fail on its own or
 * changes nothing the layer models). Returns 0 or -errno. */
static int file_get(int fd, bool create, sim_file **out)
{
    struct stat st;
    char path[64];
    sim_file *f;
    int own;

    *out = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    f = file_find(st.st_dev, st.st_ino);
    if (f != NULL || !create) {
        *out = f;
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    own = open(path, O_RDWR | O_CLOEXEC);
    if (own < 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
            return -EACCES;
        own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (own < 0)
            return -errno;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        close(own);
        return -ENOMEM;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->fd = own;
    f->ds = (uint64_t)st.st_size;
    f->next = sim.files;
    sim.files = f;
    *out = f;
    return 0;
}

static void change_free(sim_change *c)
{
    free(c->data);
    free(c);
}

/* Frees f's record once it holds nothing an operation under way refers
 * to and nothing a power cut needs. */
static void file_maybe_free(sim_file *f)
{
    if (f->syncs > 0)
        return;
    for (sim_change *c = f->head; c != NULL; c = c->next)
        if (!c->completed)
            return;
    if (!f->gone && (f->npend > 0 || f->npages > 0))
        return;
    for (sim_file **pp = &sim.files; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    while (f->head != NULL) {
        sim_change *c = f->head;
        f->head = c->next;
        change_free(c);
    }
    for (size_t i = 0; i < f->npages; i++)
        free(f->pages[i].b);
    free(f->pages);
    close(f->fd);
    free(f);
}

/* Records a change of f before it is made; NULL with *err when it cannot
 * be recorded. */
static sim_change *change_add(sim_file *f, int kind, uint64_t lo,
                              uint64_t hi, int *err)
{
    sim_change *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    c->kind = kind;
    c->lo = lo;
    c->hi = hi;
    c->f = f;
    *err = save_range(f, lo, hi);
    if (*err != 0) {
        free(c);
        return NULL;
    }
    if (f->tail != NULL)
        f->tail->next = c;
    else
        f->head = c;
    f->tail = c;
    f->npend++;
    return c;
}

/* The next fdatasync of f covers what is complete now. */
static uint64_t sync_mark(sim_file *f)
{
    uint64_t t = ++sim.ticket;
    for (sim_change *c = f->head; c != NULL; c = c->next)
        if (c->completed && !c->failed && c->cover == 0)
            c->cover = t;
    f->syncs++;
    return t;
}

static void sync_done(sim_file *f, uint64_t ticket, int64_t res)
{
    f->syncs--;
    if (res == 0) {
        uint64_t lim = f->ds;
        sim_change **pp = &f->head;
        f->tail = NULL;
        while (*pp != NULL) {
            sim_change *c = *pp;
            if (c->cover != 0 && c->cover <= ticket) {
                apply(f, c, &lim);
                *pp = c->next;
                change_free(c);
                f->npend--;
            } else {
                f->tail = c;
                pp = &c->next;
            }
        }
        reestablish(f, lim);
    }
    file_maybe_free(f);
}

/* ------------------------------------------------------------------ */
/* Queue hooks.                                                        */

int iosim_submit_locked(io_op *op)
{
    sim_file *f;
    int err;

    op->sim = NULL;
    if (atomic_load(&sim.cut))
        return -EIO;
    if (op->opcode == IO_OP_READ)
        return 0;
    if (op->opcode == IO_OP_FDATASYNC) {
        sim_sync *s;
        file_get(op->fd, false, &f);
        if (f == NULL)
            return 0;
        s = malloc(sizeof(*s));
        if (s == NULL)
            return -ENOMEM;
        s->f = f;
        s->ticket = sync_mark(f);
        op->sim = s;
        return 0;
    }
    if (op->len == 0)
        return 0;
    err = file_get(op->fd, true, &f);
    if (err != 0 || f == NULL)
        return err;
    uint8_t *data = malloc(op->len);
    if (data == NULL)
        return -ENOMEM;
    if (op->opcode == IO_OP_WRITE) {
        memcpy(data, op->buf, op->len);
    } else {
        size_t at = 0;
        for (int i = 0; i < op->iovcnt; i++) {
            if (op->iov[i].iov_len > 0)
                memcpy(data + at, op->iov[i].iov_base, op->iov[i].iov_len);
            at += op->iov[i].iov_len;
        }
    }
    sim_change *c = change_add(f, CH_WRITE, op->off, op->off + op->len, &err);
    if (c == NULL) {
        free(data);
        return err;
    }
    c->data = data;
    op->sim = c;
    return 0;
}

void iosim_complete_locked(io_op *op)
{
    if (op->sim == NULL)
        return;
    /* An io_uring operation the kernel finished around the cut, seen only
     * now: the files were restored without it, so its caller must not
     * learn that it succeeded (an fdatasync reported done would have its
     * writes acknowledged, and they are gone). The machine lost power
     * before the result came back. */
    if (iosim_cut_locked())
        op->res = -EIO;
    if (op->opcode == IO_OP_FDATASYNC) {
        sim_sync *s = op->sim;
        sync_done(s->f, s->ticket, op->res);
        free(s);
    } else {
        sim_change *c = op->sim;
        c->completed = true;
        c->failed = op->res < 0;
    }
    op->sim = NULL;
}

/* ------------------------------------------------------------------ */
/* Names.                                                              */

/* The directory record of the directory that holds name (relative to
 * dirfd); *base is name's last component. */
static int dir_get(int dirfd, const char *name, const char **base,
                   sim_dir **out)
{
    const char *slash = strrchr(name, '/');
    struct stat st;
    sim_dir *d;
    int fd;

    *out = NULL;
    if (slash == NULL) {
        *base = name;
        fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        size_t n = slash == name ? 1 : (size_t)(slash - name);
        char *parent = strndup(name, n);
        if (parent == NULL)
            return -ENOMEM;
        *base = slash + 1;
        fd = openat(dirfd, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(parent);
    }
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    for (d = sim.dirs; d != NULL; d = d->next) {
        if (d->dev == st.st_dev && d->ino == st.st_ino) {
            close(fd);
            *out = d;
            return 0;
        }
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        close(fd);
        return -ENOMEM;
    }
    d->dev = st.st_dev;
    d->ino = st.st_ino;
    d->fd = fd;
    d->next = sim.dirs;
    sim.dirs = d;
    *out = d;
    return 0;
}

static int ns_add(int kind, sim_dir *a, const char *na, sim_dir *b,
                  const char *nb)
{
    sim_ns *op;
    if (!grow_array((void **)&sim.ns, &sim.capns, sim.nns + 1,
                    sizeof(*sim.ns)))
        return -ENOMEM;
    op = &sim.ns[sim.nns];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->a = a;
    op->b = b;
    op->synced_b = b == NULL;
    op->na = strdup(na);
    op->nb = nb != NULL ? strdup(nb) : NULL;
    if (op->na == NULL || (nb != NULL && op->nb == NULL)) {
        free(op->na);
        free(op->nb);
        return -ENOMEM;
    }
    sim.nns++;
    return 0;
}

static void ns_drop_last(void)
{
    sim.nns--;
    free(sim.ns[sim.nns].na);
    free(sim.ns[sim.nns].nb);
}

static void stash_name(char *buf, size_t size)
{
    snprintf(buf, size, ".tcsim-%ld-%llu", (long)getpid(),
             (unsigned long long)++sim.stash_seq);
}

/* Under the lock: a truncation of fd to size, recorded. */
static int truncate_locked(int fd, uint64_t size)
{
    sim_file *f;
    struct stat st;
    int r = file_get(fd, true, &f);
    if (r != 0)
        return r;
    if (f == NULL)
        return io_sys_truncate(fd, size);
    if (fstat(fd, &st) != 0)
        return -errno;
    sim_change *c =
        change_add(f, CH_TRUNC, min_u64(size, (uint64_t)st.st_size),
                   UINT64_MAX, &r);
    if (c == NULL)
        return r;
    c->size = size;
    r = io_sys_truncate(fd, size);
    c->completed = true;
    c->failed = r != 0;
    return r;
}

int iosim_file_open(int dirfd, const char *name, int flags, mode_t mode)
{
    bool creat = (flags & O_CREAT) != 0;
    bool trunc = (flags & O_TRUNC) != 0 && (flags & O_ACCMODE) != O_RDONLY;
    bool existed = true;
    const char *base = NULL;
    sim_dir *d = NULL;
    int fd = -1, r;

    iosim_lock();
    if (atomic_load(&sim.cut)) {
        r = -EIO;
        goto out;
    }
    if (creat) {
        struct stat st;
        if (fstatat(dirfd, name, &st, 0) != 0) {
            if (errno != ENOENT) {
                r = -errno;
                goto out;
            }
            existed = false;
            r = dir_get(dirfd, name, &base, &d);
            if (r != 0)
                goto out;
        }
    }
    fd = io_sys_open(dirfd, name, trunc ? flags & ~O_TRUNC : flags, mode);
    if (fd < 0) {
        r = fd;
        goto out;
    }
    if (!existed) {
        r = ns_add(NS_CREATE, d, base, NULL, NULL);
        if (r != 0) {
            unlinkat(d->fd, base, 0);
            goto out;
        }
    }
    if (trunc && existed) {
        r = truncate_locked(fd, 0);
        if (r != 0)
            goto out;
    }
    r = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    iosim_unlock();
    return r;
}

int iosim_file_prealloc(int fd, uint64_t size)
{
    sim_file *f = NULL;
    sim_change *c = NULL;
    struct stat st;
    int r;

    iosim_lock();
    if (atomic_load(&sim.cut)) {
        r = -EIO;
        goto out;
    }
    r = file_get(fd, true, &f);
    if (r != 0)
        goto out;
    if (f != NULL) {
        if (fstat(fd, &st) != 0) {
            r = -errno;
            goto out;
        }
        if ((uint64_t)st.st_size < size) {
            c = change_add(f, CH_GROW, (uint64_t)st.st_size, size, &r);
            if (c == NULL)
                goto out;
        }
    }
    r = io_sys_prealloc(fd, size);
    if (c != NULL) {
        c->completed = true;
        c->failed = r != 0;
    }
out:
    if (f != NULL)
        file_maybe_free(f);
    iosim_unlock();
    return r;
}

int iosim_file_truncate(int fd, uint64_t size)
{
    int r;
    iosim_lock();
    r = atomic_load(&sim.cut) ? -EIO : truncate_locked(fd, size);
    iosim_unlock();
    return r;
}

int iosim_file_unlink(int dirfd, const char *name)
{
    const char *base;
    char stash[64];
    struct stat st;
    sim_dir *d;
    int r;

    iosim_lock();
    if (atomic_load(&sim.cut)) {
        r = -EIO;
        goto out;
    }
    r = dir_get(dirfd, name, &base, &d);
    if (r != 0)
        goto out;
    if (fstatat(d->fd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        r = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        r = -EISDIR;
        goto out;
    }
    stash_name(stash, sizeof(stash));
    if (renameat(d->fd, base, d->fd, stash) != 0) {
        r = -errno;
        goto out;
    }
    r = ns_add(NS_STASH, d, base, NULL, stash);
    if (r != 0)
        renameat(d->fd, stash, d->fd, base);
out:
    iosim_unlock();
    return r;
}

int iosim_file_rename(int dirfd, const char *from, const char *to)
{
    const char *fb, *tb;
    char stash[64];
    struct stat fs, ts;
    sim_dir *da, *db;
    bool stashed = false;
    int r;

    iosim_lock();
    if (atomic_load(&sim.cut)) {
        r = -EIO;
        goto out;
    }
    r = dir_get(dirfd, from, &fb, &da);
    if (r == 0)
        r = dir_get(dirfd, to, &tb, &db);
    if (r != 0)
        goto out;
    if (fstatat(da->fd, fb, &fs, AT_SYMLINK_NOFOLLOW) != 0) {
        r = -errno;
        goto out;
    }
    if (fstatat(db->fd, tb, &ts, AT_SYMLINK_NOFOLLOW) == 0) {
        if (ts.st_dev == fs.st_dev && ts.st_ino == fs.st_ino) {
            /* Two names of one file: rename() does nothing. */
            r = renameat(da->fd, fb, db->fd, tb) == 0 ? 0 : -errno;
            goto out;
        }
        if (S_ISDIR(ts.st_mode)) {
            r = -EISDIR;
            goto out;
        }
        stash_name(stash, sizeof(stash));
        if (renameat(db->fd, tb, db->fd, stash) != 0) {
            r = -errno;
            goto out;
        }
        r = ns_add(NS_STASH, db, tb, NULL, stash);
        if (r != 0) {
            renameat(db->fd, stash, db->fd, tb);
            goto out;
        }
        stashed = true;
    }
    if (renameat(da->fd, fb, db->fd, tb) != 0) {
        r = -errno;
        goto undo;
    }
    r = ns_add(NS_RENAME, da, fb, db, tb);
    if (r == 0)
        goto out;
    renameat(db->fd, tb, da->fd, fb);
undo:
    if (stashed) {
        renameat(db->fd, stash, db->fd, tb);
        ns_drop_last();
    }
out:
    iosim_unlock();
    return r;
}

int iosim_dir_sync(int dirfd)
{
    struct stat st;
    sim_dir *d;
    int r;

    iosim_lock();
    if (atomic_load(&sim.cut)) {
        r = -EIO;
        goto out;
    }
    r = io_sys_fsync(dirfd, false);
    if (r != 0 || fstat(dirfd, &st) != 0)
        goto out;
    for (d = sim.dirs; d != NULL; d = d->next)
        if (d->dev == st.st_dev && d->ino == st.st_ino)
            break;
    if (d == NULL)
        goto out;
    size_t w = 0;
    for (size_t i = 0; i < sim.nns; i++) {
        sim_ns *op = &sim.ns[i];
        if (op->a == d)
            op->synced_a = true;
        if (op->b == d)
            op->synced_b = true;
        if (!op->synced_a || !op->synced_b) {
            sim.ns[w++] = *op;
            continue;
        }
        if (op->kind == NS_STASH)
            unlinkat(op->a->fd, op->nb, 0);
        free(op->na);
        free(op->nb);
    }
    sim.nns = w;
    /* Files whose last name went for good need no restoring. */
    for (sim_file *f = sim.files, *next; f != NULL; f = next) {
        next = f->next;
        if (fstat(f->fd, &st) == 0 && st.st_nlink == 0) {
            f->gone = true;
            file_maybe_free(f);
        }
    }
out:
    iosim_unlock();
    return r;
}

int iosim_file_sync(int fd)
{
    sim_file *f;
    uint64_t t = 0;
    int r;

    iosim_lock();
    if (atomic_load(&sim.cut)) {
        r = -EIO;
        goto out;
    }
    file_get(fd, false, &f);
    if (f != NULL)
        t = sync_mark(f);
    r = io_sys_fsync(fd, true);
    if (f != NULL)
        sync_done(f, t, r);
out:
    iosim_unlock();
    return r;
}

/* ------------------------------------------------------------------ */
/* The power cut.                                                      */

/* Waits until the kernel has finished every operation it took from the
 * registered rings; false if that took too long. */
static bool rings_quiet(void)
{
    for (size_t i = 0; i < sim.nrings; i++) {
        struct io_uring *r = sim.rings[i];
        int waited = 0;
        while (__atomic_load_n(r->sq.khead, __ATOMIC_ACQUIRE) !=
               __atomic_load_n(r->cq.ktail, __ATOMIC_ACQUIRE)) {
            struct timespec ts = {0, 1000000L};
            if (waited++ >= SIM_RING_WAIT_MS)
                return false;
            nanosleep(&ts, NULL);
        }
    }
    return true;
}

static bool restore_file(const sim_file *f)
{
    bool ok = io_sys_truncate(f->fd, f->ds) == 0;
    for (size_t i = 0; i < f->npages; i++) {
        uint64_t base = f->pages[i].idx * SIM_PAGE;
        if (base >= f->ds)
            continue;
        if (write_at(f->fd, f->pages[i].b,
                     (size_t)min_u64(SIM_PAGE, f->ds - base), base) != 0)
            ok = false;
    }
    return ok;
}

static bool undo_ns(const sim_ns *op)
{
    switch (op->kind) {
    case NS_CREATE:
        return unlinkat(op->a->fd, op->na, 0) == 0;
    case NS_STASH:
        return renameat(op->a->fd, op->nb, op->a->fd, op->na) == 0;
    default:
        return renameat(op->b->fd, op->nb, op->a->fd, op->na) == 0;
    }
}

unsigned io_sim_power_cut(void)
{
    unsigned count = 0;
    bool ok;

    if (!atomic_load(&sim.on))
        return 0;
    iosim_lock();
    atomic_store(&sim.cut, true);
    ok = rings_quiet() && !sim.broken;
    for (sim_file *f = sim.files; f != NULL; f = f->next) {
        if (f->gone)
            continue;
        count += (unsigned)f->npend;
        if (!restore_file(f))
            ok = false;
    }
    for (size_t i = sim.nns; i-- > 0;) {
        if (!undo_ns(&sim.ns[i]))
            ok = false;
        count++;
    }
    iosim_unlock();
    return ok ? count : UINT_MAX;
}
