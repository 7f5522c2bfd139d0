/*
 * test_damage.c - the disk tier against damaged files and against an
 * index that outgrows the segments.
 *
 * random_journal_damage: a data directory of several segments holding
 * hundreds of items (tiny raw values, incompressible ones, zstd-compressed
 * ones; flags and expiry times set), every record of them either past
 * the index's checkpoint (the index deleted: recovery replays them all)
 * or split (the index as it was halfway: recovery replays the second
 * half, the first is read through the index). Each round copies it,
 * damages the copy's segments at random (a cut, flipped bytes, both, a
 * zeroed range), reopens it and checks:
 *   - tc_open succeeds, in bounded time;
 *   - every key reads back its exact value, flags and expiry time, or is
 *     a miss: never another value, never another status;
 *   - every record the damage left intact is served (records in
 *     untouched segments, records before a cut, records after a damaged
 *     one);
 *   - a lost record is reported (recovery_cut_bytes, recovery_skipped,
 *     disk_read_errors, or its segment dropped), except when the damage
 *     is indistinguishable from a journal that ended there (everything
 *     from the record on is zeros or gone);
 *   - with the whole journal replayed, the index holds exactly what is
 *     served (no entry points at a record that fails its checks);
 *   - writing goes on correctly after the damage: new items written,
 *     the engine reopened (in some rounds with the index deleted again),
 *     and the new items and everything served before are still served.
 * Each round's damage comes from the seed (TCT_SEED), the backend and
 * the round number; TCT_DAMAGE_ROUND=n runs round n alone and
 * TCT_DAMAGE_ROUNDS sets how many rounds run.
 *
 * tiny_values_far_past_budget: tiny values (1 to 8 bytes) written far
 * past disk_size, where the index grows faster than the segments; the
 * directory (every file in it) stays within disk_size plus a segment,
 * every store succeeds in bounded time, and the newest keys are read back
 * from disk after a reopen.
 *
 * Every test runs once per I/O backend; where io_uring cannot work, its
 * half reports a named skip.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "seg.h"
#include "tcbackend.h"
#include "tcutil.h"

static const char *backend = "threads";
static int backend_no; /* 0 threads, 1 io_uring: part of the round seeds */
static char dir[256];  /* the test's data directory */
static char work[300]; /* a damaged copy of it */

/* ---- hangs: a round that does not finish is reported, not waited for */

static char hang_msg[2400];

static void on_alarm(int sig)
{
    (void)sig;
    ssize_t n = write(1, hang_msg, strlen(hang_msg));
    (void)n;
    _exit(3);
}

static void watchdog(unsigned seconds, const char *what)
{
    snprintf(hang_msg, sizeof(hang_msg),
             "# HANG: %s did not finish in %u s (backend %s, seed %llu)\n"
             "not ok - hang\n",
             what, seconds, backend, (unsigned long long)tct_seed());
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}

/* ---- files ---- */

static void fresh_dir(void)
{
    tcu_fresh_dir(dir, "tc-damage");
    snprintf(work, sizeof(work), "%s.work", dir);
    tcu_rm_rf(work);
}

static void remove_dirs(void)
{
    if (dir[0] != '\0') {
        tcu_rm_rf(dir);
        tcu_rm_rf(work);
    }
}

/* Bytes of every file under path (what the budget bounds). */
static uint64_t dir_bytes(const char *path)
{
    uint64_t total = 0;
    DIR *dd = opendir(path);
    if (dd == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(dd)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode))
            total += dir_bytes(p);
        else
            total += (uint64_t)sb.st_size;
    }
    closedir(dd);
    return total;
}

/* Reads a whole file; NULL if it cannot be read. */
static unsigned char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat sb;
    unsigned char *buf = NULL;
    if (fstat(fd, &sb) == 0 && (buf = malloc((size_t)sb.st_size + 1)) != NULL &&
        pread(fd, buf, (size_t)sb.st_size, 0) != sb.st_size) {
        free(buf);
        buf = NULL;
    }
    close(fd);
    *len = buf != NULL ? (size_t)sb.st_size : 0;
    return buf;
}

/* Writes len bytes of data, then gives the file size bytes (a sparse
 * tail reads as the zeros of a preallocated segment). */
static void spill(const char *path, const unsigned char *data, size_t len,
                  size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    TCT_CHECK(fd >= 0);
    TCT_CHECK(len == 0 || pwrite(fd, data, len, 0) == (ssize_t)len);
    TCT_CHECK(ftruncate(fd, (off_t)size) == 0);
    close(fd);
}

/* The offset just past the last non-zero byte of buf[0, len). */
static size_t nonzero_end(const unsigned char *buf, size_t len)
{
    while (len > 0 && buf[len - 1] == 0)
        len--;
    return len;
}

/* ---- the items of the damage test ---- */

#define DMG_KEYS 900
#define DMG_PHASE_A 500 /* keys 0..499 indexed before the others */
#define DMG_VALUE_MAX 20000

static uint64_t data_seed;

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ (b * UINT64_C(0x9e3779b97f4a7c15));
    return tct_rand(&s);
}

/* Key i: "dmg:<i>:" padded to 8..80 bytes. */
static size_t dmg_key(unsigned i, char *buf)
{
    int n = snprintf(buf, 96, "dmg:%u:", i);
    size_t len = 8 + mix(data_seed, i) % 73;
    for (size_t k = (size_t)n; k < len; k++)
        buf[k] = (char)('a' + (i * 7 + k) % 26);
    return len > (size_t)n ? len : (size_t)n;
}

static const char *const words[] = {
    "cache", "tier",  "disk",   "segment", "journal", "record", "index",
    "value", "flags", "expiry", "zstd",    "lmdb",    "uring",  "thread",
    "shard", "key",   "crc",    "lsn",     "reclaim", "budget",
};

/*
 * Value i: one of three kinds, all from the seed: tiny (1..60 bytes,
 * below the compression threshold: stored raw), incompressible noise
 * (500..20000 bytes: zstd does not shrink it, stored raw), or text of
 * repeated words (1000..20000 bytes: stored compressed).
 */
static size_t dmg_value(unsigned i, unsigned char *buf)
{
    uint64_t s = mix(data_seed ^ 0x5eed, i);
    size_t len;
    switch (i % 3) {
    case 0:
        len = 1 + tct_rand(&s) % 60;
        for (size_t k = 0; k < len; k++)
            buf[k] = (unsigned char)tct_rand(&s);
        break;
    case 1:
        len = 500 + tct_rand(&s) % (DMG_VALUE_MAX - 500);
        for (size_t k = 0; k < len; k += 8) {
            uint64_t x = tct_rand(&s);
            size_t n = len - k < 8 ? len - k : 8;
            memcpy(buf + k, &x, n);
        }
        break;
    default:
        len = 1000 + tct_rand(&s) % (DMG_VALUE_MAX - 1000);
        for (size_t k = 0; k < len;) {
            const char *w = words[tct_rand(&s) % 20];
            int n = snprintf((char *)buf + k, len - k + 1, "%s %u ", w, i);
            k += (size_t)n < len - k ? (size_t)n : len - k;
        }
        break;
    }
    return len;
}

static uint32_t dmg_flags(unsigned i)
{
    return (uint32_t)mix(data_seed ^ 0xf1a9, i);
}

/* The expiry time stored (memcached's form) and what reads return. */
static int64_t dmg_exptime(unsigned i, int64_t *absolute)
{
    uint64_t r = mix(data_seed ^ 0xe4e4, i);
    switch (r % 3) {
    case 0:
        *absolute = 0;
        return 0;
    case 1: {
        int64_t rel = 3600 + (int64_t)(r >> 8) % 2000000; /* under 30 days */
        *absolute = TCU_T0 + rel;
        return rel;
    }
    default:
        *absolute = TCU_T0 + 5000000 + (int64_t)(r >> 8) % 1000;
        return *absolute;
    }
}

/* ---- the pristine directory ---- */

typedef struct pseg {
    uint64_t id;
    unsigned char *img;  /* the whole file as written */
    size_t size;         /* its size (the segment size) */
    size_t dend;         /* past the last non-zero byte */
} pseg;

typedef struct prec {
    int seg;       /* index in segs[] */
    size_t off;    /* record offset */
    size_t len;    /* record size, padding included */
} prec;

static pseg *segs;
static size_t nsegs;
static unsigned char *vals[DMG_KEYS]; /* the values, made once */
static size_t vlens[DMG_KEYS];
static prec recs[DMG_KEYS];
static unsigned char *index_a; /* data.mdb as it was after phase A */
static size_t index_a_len;
static uint64_t segment_size;

static void free_pristine(void)
{
    for (size_t i = 0; i < nsegs; i++)
        free(segs[i].img);
    free(segs);
    segs = NULL;
    nsegs = 0;
    free(index_a);
    index_a = NULL;
    for (unsigned i = 0; i < DMG_KEYS; i++) {
        free(vals[i]);
        vals[i] = NULL;
    }
}

static void dmg_config(tc_config *cfg, tcu_clock *clk, const char *path,
                       char *why, size_t why_len)
{
    tcu_config(cfg, clk);
    cfg->dir = path;
    cfg->mem_limit = 4 << 20;
    cfg->item_size_max = 64 << 10;
    cfg->disk_size = 16 << 20; /* segments of 1 MiB */
    cfg->io_backend = backend;
    cfg->flush_ms = 5;
    /* Disk reads are counted here: no preload (see test_warm). */
    cfg->warm = TC_WARM_OFF;
    cfg->errbuf = why;
    cfg->errbuf_len = why_len;
}

static tc_engine *dmg_open(tcu_clock *clk, const char *path)
{
    tc_config cfg;
    char why[512] = "";
    dmg_config(&cfg, clk, path, why, sizeof(why));
    tc_engine *e = NULL;
    tc_status st = tc_open(&cfg, &e);
    if (st != TC_OK)
        printf("# tc_open %s: %s: %s\n", path, tc_strerror(st), why);
    TCT_EQ_ST(st, TC_OK);
    return e;
}

static void dmg_store_range(tc_engine *e, unsigned from, unsigned to)
{
    char key[96];
    for (unsigned i = from; i < to; i++) {
        size_t kl = dmg_key(i, key);
        int64_t abs_exp;
        int64_t exp = dmg_exptime(i, &abs_exp);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, vals[i], vlens[i],
                           dmg_flags(i), exp, 0, NULL),
                  TC_OK);
    }
}

static int cmp_pseg(const void *a, const void *b)
{
    const pseg *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Reads the segments of dir and where each key's record is. */
static void load_pristine(void)
{
    DIR *dd = opendir(dir);
    TCT_CHECK(dd != NULL);
    struct dirent *de;
    size_t cap = 0;
    while ((de = readdir(dd)) != NULL) {
        uint64_t id;
        if (!seg_parse_name(de->d_name, &id))
            continue;
        if (nsegs == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            segs = realloc(segs, cap * sizeof(*segs));
            TCT_CHECK(segs != NULL);
        }
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        pseg *s = &segs[nsegs++];
        s->id = id;
        s->img = slurp(p, &s->size);
        TCT_CHECK(s->img != NULL);
        s->dend = nonzero_end(s->img, s->size);
    }
    closedir(dd);
    qsort(segs, nsegs, sizeof(*segs), cmp_pseg);
    for (unsigned i = 0; i < DMG_KEYS; i++)
        recs[i].seg = -1;
    unsigned found = 0;
    for (size_t si = 0; si < nsegs; si++) {
        pseg *s = &segs[si];
        TCT_EQ_U64(s->size, segment_size);
        size_t off = SEG_HDR_SIZE;
        while (off + SEG_REC_HDR <= s->size) {
            seg_rec r;
            const unsigned char *k, *v;
            size_t n = seg_rec_decode(s->img + off, s->size - off, &r, &k, &v);
            if (n == 0)
                break;
            unsigned i;
            TCT_CHECK(r.type == SEG_SET &&
                      sscanf((const char *)k, "dmg:%u:", &i) == 1 &&
                      i < DMG_KEYS && recs[i].seg < 0);
            recs[i] = (prec){(int)si, off, n};
            found++;
            off += n;
        }
        TCT_CHECK(s->dend <= off);
    }
    TCT_EQ_U64(found, DMG_KEYS);
}

/* Builds the directory: phase A, a copy of its index, phase B. */
static void build_pristine(tcu_clock *clk)
{
    unsigned char *val = malloc(DMG_VALUE_MAX + 1);
    TCT_CHECK(val != NULL);
    for (unsigned i = 0; i < DMG_KEYS; i++) {
        vlens[i] = dmg_value(i, val);
        vals[i] = malloc(vlens[i]);
        TCT_CHECK(vals[i] != NULL);
        memcpy(vals[i], val, vlens[i]);
    }
    free(val);
    tc_engine *e = dmg_open(clk, dir);
    dmg_store_range(e, 0, DMG_PHASE_A);
    tc_close(e);
    char p[600];
    snprintf(p, sizeof(p), "%s/index/data.mdb", dir);
    index_a = slurp(p, &index_a_len);
    TCT_CHECK(index_a != NULL);
    e = dmg_open(clk, dir);
    dmg_store_range(e, DMG_PHASE_A, DMG_KEYS);
    TCT_EQ_U64(tcu_stat(e, "disk_reclaimed_segments"), 0);
    tc_close(e);
    char seg1[600], name[32];
    seg_name(1, name);
    snprintf(seg1, sizeof(seg1), "%s/%s", dir, name);
    struct stat sb;
    TCT_CHECK(stat(seg1, &sb) == 0);
    segment_size = (uint64_t)sb.st_size;
    load_pristine();
}

/* ---- one round of damage ---- */

typedef struct dseg {
    unsigned char *img; /* the damaged file (NULL: untouched) */
    size_t size;        /* its size after the damage */
} dseg;

typedef struct round_log {
    char text[2048];
    size_t len;
} round_log;

static void logf_(round_log *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void logf_(round_log *l, const char *fmt, ...)
{
    if (l->len >= sizeof(l->text) - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->len, sizeof(l->text) - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n;
    if (l->len > sizeof(l->text) - 1)
        l->len = sizeof(l->text) - 1;
}

/* A random record of segment si, or NULL when it holds none. */
static const prec *pick_record(int si, uint64_t *rng)
{
    unsigned n = 0;
    for (unsigned i = 0; i < DMG_KEYS; i++)
        n += recs[i].seg == si;
    if (n == 0)
        return NULL;
    unsigned want = (unsigned)(tct_rand(rng) % n);
    for (unsigned i = 0; i < DMG_KEYS; i++)
        if (recs[i].seg == si && want-- == 0)
            return &recs[i];
    return NULL;
}

/* Where a cut goes: inside a record, inside a record's header, exactly
 * at a record, inside the segment header, or anywhere up to past the
 * data. */
static size_t cut_offset(int si, uint64_t *rng)
{
    const pseg *s = &segs[si];
    const prec *r = pick_record(si, rng);
    unsigned how = (unsigned)(tct_rand(rng) % 10);
    if (r != NULL && how < 4)
        return r->off + tct_rand(rng) % r->len;
    if (r != NULL && how == 4)
        return r->off + tct_rand(rng) % SEG_REC_HDR;
    if (r != NULL && how == 5)
        return r->off;
    if (how == 6)
        return tct_rand(rng) % (SEG_HDR_SIZE + 8);
    size_t span = s->dend + 4096 < s->size ? s->dend + 4096 : s->size;
    return tct_rand(rng) % span;
}

/* Where a flipped byte goes. */
static size_t flip_offset(int si, uint64_t *rng)
{
    const pseg *s = &segs[si];
    const prec *r = pick_record(si, rng);
    unsigned how = (unsigned)(tct_rand(rng) % 10);
    if (how == 0 || r == NULL)
        return how == 9 ? tct_rand(rng) % s->size
                        : tct_rand(rng) % SEG_HDR_SIZE;
    size_t klen = s->img[r->off + 18];
    switch (how) {
    case 1:
    case 2:
        return r->off + tct_rand(rng) % SEG_REC_HDR; /* header fields */
    case 3:
        return r->off + 4 + tct_rand(rng) % 4; /* the CRC */
    case 4:
    case 5:
        return r->off + SEG_REC_HDR + tct_rand(rng) % klen; /* the key */
    case 6:
    case 7:
        if (r->len > SEG_REC_HDR + klen)
            return r->off + SEG_REC_HDR + klen +
                   tct_rand(rng) % (r->len - SEG_REC_HDR - klen);
        return r->off + tct_rand(rng) % r->len;
    case 8:
        return tct_rand(rng) % s->dend;
    default:
        return tct_rand(rng) % s->size; /* mostly the zeros past the data */
    }
}

static void do_cut(dseg *d, int si, uint64_t *rng, round_log *log)
{
    size_t at = cut_offset(si, rng);
    if (at < d->size)
        d->size = at;
    logf_(log, " cut seg %d at %zu;", si, at);
}

static void do_flips(dseg *d, int si, uint64_t *rng, round_log *log)
{
    unsigned n = 1 + (unsigned)(tct_rand(rng) % 4);
    for (unsigned k = 0; k < n; k++) {
        size_t at = flip_offset(si, rng);
        unsigned char mask = tct_rand(rng) % 2
                                 ? (unsigned char)(1u << (tct_rand(rng) % 8))
                                 : (unsigned char)(1 + tct_rand(rng) % 255);
        if (at < d->size)
            d->img[at] ^= mask;
        logf_(log, " flip seg %d at %zu ^0x%02x;", si, at, mask);
    }
}

static void do_zero(dseg *d, int si, uint64_t *rng, round_log *log)
{
    const pseg *s = &segs[si];
    const prec *r = pick_record(si, rng);
    size_t from, len;
    unsigned how = (unsigned)(tct_rand(rng) % 10);
    if (r != NULL && how == 0) {
        from = r->off; /* from a record to the end of the data */
        len = s->dend > from ? s->dend - from : 1;
    } else {
        from = r != NULL && how < 5
                   ? r->off + (how < 3 ? 0 : tct_rand(rng) % r->len)
                   : SEG_HDR_SIZE + tct_rand(rng) % (s->dend + 64);
        len = 1 + tct_rand(rng) % (how % 2 ? 64 : 8192);
    }
    for (size_t k = from; k < from + len && k < d->size; k++)
        d->img[k] = 0;
    logf_(log, " zero seg %d [%zu, %zu);", si, from, from + len);
}

/* Damages one segment (a copy of it in d) with kind 0..3. */
static void damage_segment(dseg *d, int si, unsigned kind, uint64_t *rng,
                           round_log *log)
{
    if (d->img == NULL) {
        d->img = malloc(segs[si].size);
        TCT_CHECK(d->img != NULL);
        memcpy(d->img, segs[si].img, segs[si].size);
        d->size = segs[si].size;
    }
    switch (kind) {
    case 0:
        do_cut(d, si, rng, log);
        break;
    case 1:
        do_flips(d, si, rng, log);
        break;
    case 2:
        do_flips(d, si, rng, log);
        do_cut(d, si, rng, log);
        break;
    default:
        do_zero(d, si, rng, log);
        break;
    }
}

/* Flips a byte of segment si's header. */
static void damage_header(dseg *d, int si, uint64_t *rng, round_log *log)
{
    if (d->img == NULL) {
        d->img = malloc(segs[si].size);
        TCT_CHECK(d->img != NULL);
        memcpy(d->img, segs[si].img, segs[si].size);
        d->size = segs[si].size;
    }
    size_t at = tct_rand(rng) % SEG_HDR_SIZE;
    if (at < d->size)
        d->img[at] ^= (unsigned char)(1 + tct_rand(rng) % 255);
    logf_(log, " flip seg %d at %zu;", si, at);
}

/* True if the bytes of [off, off + len) of segment si are not as
 * written. */
static bool changed(const dseg *d, int si, size_t off, size_t len)
{
    if (d[si].img == NULL)
        return false;
    if (off + len > d[si].size)
        return true;
    return memcmp(d[si].img + off, segs[si].img + off, len) != 0;
}

/* True if nothing but zeros is left of segment si from off on: a loss
 * that looks like a journal that ended there. */
static bool zeros_from(const dseg *d, int si, size_t off)
{
    if (d[si].img == NULL || off >= d[si].size)
        return d[si].img != NULL;
    return nonzero_end(d[si].img + off, d[si].size - off) == 0;
}

/* Writes the damaged copy: segments, and the phase-A index or none. */
static void write_copy(const dseg *d, bool with_index)
{
    tcu_rm_rf(work);
    TCT_CHECK(mkdir(work, 0755) == 0);
    for (size_t si = 0; si < nsegs; si++) {
        char p[600], name[32];
        seg_name(segs[si].id, name);
        snprintf(p, sizeof(p), "%s/%s", work, name);
        const unsigned char *img = d[si].img != NULL ? d[si].img : segs[si].img;
        size_t size = d[si].img != NULL ? d[si].size : segs[si].size;
        spill(p, img, nonzero_end(img, size), size);
    }
    if (with_index) {
        char p[600];
        snprintf(p, sizeof(p), "%s/index", work);
        TCT_CHECK(mkdir(p, 0755) == 0);
        snprintf(p, sizeof(p), "%s/index/data.mdb", work);
        spill(p, index_a, index_a_len, index_a_len);
    }
}

typedef struct totals {
    unsigned rounds;
    unsigned long intact;    /* records left intact: all served */
    unsigned long lost;      /* damaged records not served */
    unsigned long survived;  /* damaged (padding only) and still valid */
    unsigned reported;       /* rounds whose damage was reported */
    unsigned dropped;        /* segments dropped */
    unsigned rewritten;      /* rounds that wrote after the damage */
    unsigned slow_reads;     /* read passes of a second or more */
    double read_secs;        /* all read passes */
} totals;

/* Reads key i: 1 if it holds exactly its value, 0 if it is a miss; a
 * wrong value or another status fails the test. */
static int read_key(tc_engine *e, unsigned i, const round_log *log)
{
    char key[96];
    size_t kl = dmg_key(i, key);
    const unsigned char *val = vals[i];
    size_t vl = vlens[i];
    int64_t abs_exp;
    dmg_exptime(i, &abs_exp);
    tc_item *it = NULL;
    tc_status st = tc_get(e, key, kl, &it);
    if (st == TC_ENOTFOUND)
        return 0;
    if (st != TC_OK)
        printf("# key %u: %s;%s\n", i, tc_status_name(st), log->text);
    TCT_EQ_ST(st, TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    bool same = v.value_len == vl && memcmp(v.value, val, vl) == 0 &&
                v.flags == dmg_flags(i) && v.exptime == abs_exp;
    if (!same)
        printf("# key %u (seg %d off %zu): WRONG value (%zu bytes, want "
               "%zu; flags %u want %u; exptime %lld want %lld);%s\n",
               i, recs[i].seg, recs[i].off, v.value_len, vl, v.flags,
               dmg_flags(i), (long long)v.exptime, (long long)abs_exp,
               log->text);
    tc_item_release(it);
    TCT_CHECK(same);
    return 1;
}

/* A read through the context API: what its callback saw. */
typedef struct rd_slot {
    unsigned i;
    bool done;
    tc_status st;
    bool same;
    size_t len;
    uint32_t flags;
    int64_t exptime;
} rd_slot;

static void rd_done(void *arg, const tc_result *r)
{
    rd_slot *s = arg;
    s->done = true;
    s->st = r->status;
    if (r->status != TC_OK || r->view == NULL)
        return;
    const tc_view *v = r->view;
    int64_t abs_exp;
    dmg_exptime(s->i, &abs_exp);
    s->len = v->value_len;
    s->flags = v->flags;
    s->exptime = v->exptime;
    s->same = v->value_len == vlens[s->i] &&
              memcmp(v->value, vals[s->i], vlens[s->i]) == 0 &&
              v->flags == dmg_flags(s->i) && v->exptime == abs_exp;
}

/* Reads every key at once through a context (the disk reads overlap);
 * served[i] is 1 for the exact value, 0 for a miss; a wrong value or
 * another status fails the test. */
static void read_all(tc_engine *e, bool *served, const round_log *log)
{
    tc_ctx *ctx = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &ctx), TC_OK);
    rd_slot *slots = calloc(DMG_KEYS, sizeof(*slots));
    TCT_CHECK(slots != NULL);
    unsigned pending = 0;
    for (unsigned i = 0; i < DMG_KEYS; i++) {
        char key[96];
        size_t kl = dmg_key(i, key);
        slots[i].i = i;
        tc_status st = tc_ctx_get(ctx, key, kl, rd_done, &slots[i]);
        if (st == TC_PENDING)
            pending++;
    }
    while (pending > 0) {
        struct pollfd pf = {tc_ctx_fd(ctx), POLLIN, 0};
        poll(&pf, 1, 100);
        pending -= tc_ctx_run(ctx);
    }
    tc_ctx_free(ctx);
    bool ok = true;
    for (unsigned i = 0; i < DMG_KEYS && ok; i++) {
        rd_slot *s = &slots[i];
        int64_t abs_exp;
        dmg_exptime(i, &abs_exp);
        served[i] = s->st == TC_OK && s->same;
        if (!s->done || (s->st != TC_OK && s->st != TC_ENOTFOUND)) {
            printf("# key %u: %s (done %d);%s\n", i, tc_status_name(s->st),
                   s->done, log->text);
            ok = false;
        } else if (s->st == TC_OK && !s->same) {
            printf("# key %u (seg %d off %zu): WRONG value (%zu bytes, want "
                   "%zu; flags %u want %u; exptime %lld want %lld);%s\n",
                   i, recs[i].seg, recs[i].off, s->len, vlens[i], s->flags,
                   dmg_flags(i), (long long)s->exptime, (long long)abs_exp,
                   log->text);
            ok = false;
        }
    }
    free(slots);
    TCT_CHECK(ok);
}

#define POST_KEYS 16

/* The new items written after the damage: key "post:<round>:<j>". */
static size_t post_item(unsigned round, unsigned j, char *key, size_t *kl,
                        unsigned char *val)
{
    *kl = (size_t)snprintf(key, 96, "post:%u:%u", round, j);
    size_t vl = 1 + (j * 977 + round) % 3000;
    for (size_t k = 0; k < vl; k++)
        val[k] = (unsigned char)(j % 2 ? 'a' + (k + j) % 7 : (k * 131 + j) >> 3);
    return vl;
}

/* One round: damage, reopen, check; then write, reopen, check again. */
static void damage_round(tcu_clock *clk, unsigned round, uint64_t rseed,
                         unsigned char *val, totals *t)
{
    uint64_t rng = rseed;
    round_log log = {{0}, 0};
    dseg *d = calloc(nsegs, sizeof(*d));
    TCT_CHECK(d != NULL);
    bool with_index = tct_rand(&rng) % 10 < 3;
    logf_(&log, " [round %u, %s, %s]", round, backend,
          with_index ? "replay from the phase-A checkpoint" : "replay all");

    /* Damage one segment, sometimes two or three. */
    unsigned nhits = 1 + (tct_rand(&rng) % 4 == 0) + (tct_rand(&rng) % 8 == 0);
    for (unsigned h = 0; h < nhits; h++) {
        int si = (int)(tct_rand(&rng) % nsegs);
        if (segs[si].dend <= SEG_HDR_SIZE && tct_rand(&rng) % 4 != 0)
            si = recs[tct_rand(&rng) % DMG_KEYS].seg; /* mostly data */
        damage_segment(&d[si], si, (unsigned)(tct_rand(&rng) % 4), &rng,
                       &log);
    }
    if (with_index && tct_rand(&rng) % 4 == 0) {
        /* The headers of the checkpoint's segment and of every later one:
         * recovery finds nothing at or past the checkpoint. */
        int from = recs[DMG_PHASE_A - 1].seg;
        logf_(&log, " headers of seg %d on:", from);
        for (int si = from; si < (int)nsegs; si++)
            damage_header(&d[si], si, &rng, &log);
    }
    write_copy(d, with_index);

    snprintf(hang_msg, sizeof(hang_msg),
             "# HANG in round %u (seed %llu, backend %s):%s\nnot ok - hang\n",
             round, (unsigned long long)tct_seed(), backend, log.text);
    alarm(60);

    tc_engine *e = dmg_open(clk, work);
    uint64_t cut = tcu_stat(e, "recovery_cut_bytes");
    uint64_t skipped = tcu_stat(e, "recovery_skipped");
    unsigned dropped = 0;
    bool *gone = calloc(nsegs, sizeof(*gone));
    TCT_CHECK(gone != NULL);
    for (size_t si = 0; si < nsegs; si++) {
        char p[600], name[32];
        seg_name(segs[si].id, name);
        snprintf(p, sizeof(p), "%s/%s", work, name);
        gone[si] = access(p, F_OK) != 0;
        dropped += gone[si];
    }
    logf_(&log, " => cut %llu bytes, skipped %llu, dropped %u segment(s)",
          (unsigned long long)cut, (unsigned long long)skipped, dropped);

    /* Every key: its exact value, or a miss. */
    bool served[DMG_KEYS];
    unsigned hits = 0;
    struct timespec r0, r1;
    clock_gettime(CLOCK_MONOTONIC, &r0);
    read_all(e, served, &log);
    clock_gettime(CLOCK_MONOTONIC, &r1);
    double rsecs = (double)(r1.tv_sec - r0.tv_sec) +
                   (double)(r1.tv_nsec - r0.tv_nsec) / 1e9;
    t->slow_reads += rsecs >= 1.0;
    t->read_secs += rsecs;
    for (unsigned i = 0; i < DMG_KEYS; i++)
        hits += served[i];
    uint64_t read_errors = tcu_stat(e, "disk_read_errors");
    bool reported = cut > 0 || skipped > 0 || dropped > 0 || read_errors > 0;

    for (unsigned i = 0; i < DMG_KEYS; i++) {
        const prec *r = &recs[i];
        bool hit = changed(d, r->seg, 0, SEG_HDR_SIZE) ||
                   changed(d, r->seg, r->off, r->len);
        if (!hit) {
            /* Intact: it must be served. */
            if (!served[i])
                printf("# key %u (seg %d off %zu len %zu) intact but not "
                       "served;%s\n",
                       i, r->seg, r->off, r->len, log.text);
            TCT_CHECK(served[i]);
            t->intact++;
            continue;
        }
        if (served[i]) {
            t->survived++;
            continue;
        }
        t->lost++;
        /* Lost: reported, unless it looks like the journal's end. */
        if (!reported && !zeros_from(d, r->seg, r->off))
            printf("# key %u (seg %d off %zu) lost and the damage not "
                   "reported;%s\n",
                   i, r->seg, r->off, log.text);
        TCT_CHECK(reported || zeros_from(d, r->seg, r->off));
    }
    if (!with_index) {
        /* The whole journal was replayed: what the index holds is what
         * passed the checks, and all of it is served. */
        TCT_EQ_U64(tcu_stat(e, "disk_items"), hits);
        TCT_EQ_U64(tcu_stat(e, "recovery_records"), hits);
        TCT_EQ_U64(read_errors, 0);
    }
    t->reported += reported;
    t->dropped += dropped;

    /* Writing goes on after the damage without harming what is left. */
    if (round % 2 == 0) {
        char key[96];
        size_t kl;
        for (unsigned j = 0; j < POST_KEYS; j++) {
            size_t vl = post_item(round, j, key, &kl, val);
            TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, vl, j, 0, 0, NULL),
                      TC_OK);
        }
        tc_close(e);
        bool replay = round % 4 == 0;
        if (replay) {
            char p[600];
            snprintf(p, sizeof(p), "%s/index", work);
            tcu_rm_rf(p);
        }
        e = dmg_open(clk, work);
        if (replay) {
            /* What recovery cut is gone for good; what it skipped is
             * damage again. Nothing new may be cut. */
            uint64_t cut2 = tcu_stat(e, "recovery_cut_bytes");
            if (cut2 != 0)
                printf("# after the writes, the replay cut %llu bytes "
                       "(skipped %llu);%s\n",
                       (unsigned long long)cut2,
                       (unsigned long long)tcu_stat(e, "recovery_skipped"),
                       log.text);
            TCT_EQ_U64(cut2, 0);
        }
        for (unsigned j = 0; j < POST_KEYS; j++) {
            size_t vl = post_item(round, j, key, &kl, val);
            tc_item *it = NULL;
            tc_status st = tc_get(e, key, kl, &it);
            if (st != TC_OK)
                printf("# new key %s: %s;%s\n", key, tc_status_name(st),
                       log.text);
            TCT_EQ_ST(st, TC_OK);
            tc_view v;
            tc_item_view(it, &v);
            bool same = v.value_len == vl && memcmp(v.value, val, vl) == 0 &&
                        v.flags == j;
            tc_item_release(it);
            if (!same)
                printf("# new key %s: wrong value;%s\n", key, log.text);
            TCT_CHECK(same);
        }
        for (unsigned i = 0; i < DMG_KEYS; i++) {
            int now = read_key(e, i, &log);
            if (served[i] && !now)
                printf("# key %u served before the writes, lost after "
                       "(%s);%s\n",
                       i, replay ? "index rebuilt" : "index kept", log.text);
            TCT_EQ_INT(now, served[i]);
        }
        t->rewritten++;
    }
    tc_close(e);
    alarm(0);
    free(gone);
    for (size_t si = 0; si < nsegs; si++)
        free(d[si].img);
    free(d);
    t->rounds++;
}

static void random_journal_damage(void)
{
    tcu_clock clk = {0};
    free_pristine(); /* a failed run of the other backend may leave it */
    fresh_dir();
    data_seed = mix(tct_seed(), 0xda7a);
    watchdog(120, "building the directory");
    build_pristine(&clk);
    alarm(0);
    unsigned rounds = 128;
    const char *env = getenv("TCT_DAMAGE_ROUNDS");
    if (env != NULL)
        rounds = (unsigned)strtoul(env, NULL, 10);
    const char *only = getenv("TCT_DAMAGE_ROUND");
    unsigned first = 0;
    if (only != NULL) {
        first = (unsigned)strtoul(only, NULL, 10);
        rounds = first + 1;
    }
    printf("# %zu segments of %llu bytes, %u keys (%u indexed at the "
           "phase-A checkpoint); rounds %u..%u; repeat one with "
           "TCT_SEED=%llu TCT_DAMAGE_ROUND=n\n",
           nsegs, (unsigned long long)segment_size, DMG_KEYS, DMG_PHASE_A,
           first, rounds - 1, (unsigned long long)tct_seed());
    TCT_CHECK(nsegs >= 3);
    unsigned char *val = malloc(DMG_VALUE_MAX + 1);
    TCT_CHECK(val != NULL);
    totals t = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned round = first; round < rounds; round++) {
        uint64_t rseed = mix(mix(tct_seed(), (uint64_t)backend_no + 1), round);
        damage_round(&clk, round, rseed, val, &t);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(val);
    printf("# %u rounds in %.1f s: %lu intact records all served, %lu "
           "damaged records lost, %lu damaged only in padding and served; "
           "%u rounds reported damage, %u segments dropped, %u rounds "
           "wrote after the damage\n",
           t.rounds,
           (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
           t.intact, t.lost, t.survived, t.reported, t.dropped, t.rewritten);
    printf("# a read pass (%u keys at once) took %.0f ms on average; %u "
           "of them a second or more\n",
           DMG_KEYS, t.rounds > 0 ? t.read_secs * 1000 / t.rounds : 0.0,
           t.slow_reads);
    TCT_CHECK(t.rounds < 10 || t.lost > 0);
    /* Reads queued beyond the reader's depth once waited for its poll
     * timeout (a second) on io_uring. */
    TCT_CHECK(t.slow_reads * 4 <= t.rounds);
    free_pristine();
    remove_dirs();
}

/* ---- tiny values far past the budget ---- */

/* Key i of the tiny test: "tiny:<i>:" padded to 10..40 bytes. */
static size_t tiny_key(unsigned i, char *key)
{
    size_t kl = (size_t)snprintf(key, 64, "tiny:%u:", i);
    size_t want = 10 + (i * 7) % 31;
    while (kl < want) {
        key[kl] = (char)('a' + (i + kl) % 26);
        kl++;
    }
    return kl;
}

/* Value i: 1..8 bytes. */
static size_t tiny_value(unsigned i, unsigned char *val)
{
    size_t vl = 1 + i % 8;
    for (size_t k = 0; k < vl; k++)
        val[k] = (unsigned char)(i >> (k % 4 * 8));
    return vl;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/*
 * Records of about 80 bytes, index entries of about 100: the index
 * outgrows the segments. Writes five budgets' worth of index entries;
 * the directory must stay within disk_size plus a segment all along (it
 * is measured every 5000 writes; the first excess ends the writes), every
 * store succeeds within a time bound, and after a reopen the newest
 * thousand keys are read back from disk.
 */
static void tiny_values_far_past_budget(void)
{
    tcu_clock clk = {0};
    fresh_dir();
    tc_config cfg;
    char why[512] = "";
    tcu_config(&cfg, &clk);
    cfg.dir = dir;
    cfg.mem_limit = 4 << 20;
    cfg.item_size_max = 64 << 10;
    cfg.disk_size = 16 << 20; /* segments of 1 MiB */
    cfg.io_backend = backend;
    cfg.flush_ms = 5;
    cfg.warm = TC_WARM_OFF; /* disk reads are counted: no preload */
    cfg.errbuf = why;
    cfg.errbuf_len = sizeof(why);
    /* ThreadSanitizer runs these stores about twenty times slower (2 s
     * become 35-45 s under tools/tsan): its bounds are five times as
     * long. The bound catches stalls, not a slow build. */
#if defined(__SANITIZE_THREAD__)
    const double slower = 5;
#else
    const double slower = 1;
#endif
    watchdog((unsigned)(100 * slower), "tiny_values_far_past_budget");
    tc_engine *e = NULL;
    TCT_EQ_ST(tc_open(&cfg, &e), TC_OK);
    char p[600], name[32];
    seg_name(1, name);
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    const uint64_t seg = file_size(p);
    const uint64_t limit = cfg.disk_size + seg;
    snprintf(p, sizeof(p), "%s/index/data.mdb", dir);
    const unsigned n = (unsigned)(5 * cfg.disk_size / 100);
    const double max_secs = 40 * slower;
    char key[64];
    unsigned char val[8];
    uint64_t worst = 0;
    unsigned written = 0;
    bool over = false, slow = false;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double secs = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t kl = tiny_key(i, key);
        size_t vl = tiny_value(i, val);
        tc_status st = tc_store(e, TC_SET, key, kl, val, vl, i, 0, 0, NULL);
        if (st != TC_OK)
            printf("# store %u of %u: %s\n", i, n, tc_status_name(st));
        TCT_EQ_ST(st, TC_OK);
        written = i + 1;
        if (i % 5000 != 4999)
            continue;
        uint64_t b = dir_bytes(dir);
        worst = b > worst ? b : worst;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (b > limit || secs > max_secs) {
            over = b > limit;
            slow = secs > max_secs;
            printf("# after %u stores (%.1f s): the directory holds %llu "
                   "bytes (limit %llu): data.mdb %llu, %llu segments of "
                   "%llu; %llu keys on disk, %llu segments reclaimed, %llu "
                   "new segments made over the budget%s\n",
                   written, secs, (unsigned long long)b,
                   (unsigned long long)limit,
                   (unsigned long long)file_size(p),
                   (unsigned long long)tcu_stat(e, "disk_segments"),
                   (unsigned long long)seg,
                   (unsigned long long)tcu_stat(e, "disk_items"),
                   (unsigned long long)tcu_stat(e, "disk_reclaimed_segments"),
                   (unsigned long long)tcu_stat(e, "disk_over_budget"),
                   slow ? "; too slow, stopped" : "; over, stopped");
            break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# index: data.mdb %llu bytes, its trees use %llu\n",
           (unsigned long long)tcu_stat(e, "disk_index_bytes"),
           (unsigned long long)tcu_stat(e, "disk_index_live_bytes"));
    printf("# %u of %u stores in %.1f s; reclaimed %llu segments, dropped "
           "%llu keys, %llu segments made over the budget, %llu index "
           "write errors; %llu keys on disk\n",
           written, n, secs,
           (unsigned long long)tcu_stat(e, "disk_reclaimed_segments"),
           (unsigned long long)tcu_stat(e, "disk_reclaim_dropped"),
           (unsigned long long)tcu_stat(e, "disk_over_budget"),
           (unsigned long long)tcu_stat(e, "disk_write_errors"),
           (unsigned long long)tcu_stat(e, "disk_items"));
    tc_close(e);
    uint64_t b = dir_bytes(dir);
    worst = b > worst ? b : worst;

    /* Memory starts empty: the newest thousand are read from disk. */
    e = NULL;
    TCT_EQ_ST(tc_open(&cfg, &e), TC_OK);
    b = dir_bytes(dir);
    worst = b > worst ? b : worst;
    printf("# directory at most %llu bytes for a budget of %llu (+ a "
           "segment: %llu); data.mdb %llu bytes at the end\n",
           (unsigned long long)worst, (unsigned long long)cfg.disk_size,
           (unsigned long long)seg, (unsigned long long)file_size(p));
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    unsigned missing = 0, newest = written < 1000 ? written : 1000;
    for (unsigned i = written - newest; i < written; i++) {
        size_t kl = tiny_key(i, key);
        size_t vl = tiny_value(i, val);
        tc_item *it = NULL;
        tc_status st = tc_get(e, key, kl, &it);
        if (st != TC_OK) {
            if (missing++ < 5)
                printf("# key %u of %u: %s\n", i, written,
                       tc_status_name(st));
            continue;
        }
        tc_view v;
        tc_item_view(it, &v);
        bool same = v.value_len == vl && memcmp(v.value, val, vl) == 0 &&
                    v.flags == i;
        tc_item_release(it);
        TCT_CHECK(same);
    }
    /* The oldest were dropped to make room: misses, never other values. */
    for (unsigned i = 0; i < 1000 && i < written; i++) {
        size_t kl = tiny_key(i, key);
        size_t vl = tiny_value(i, val);
        tc_item *it = NULL;
        tc_status st = tc_get(e, key, kl, &it);
        if (st == TC_ENOTFOUND)
            continue;
        TCT_EQ_ST(st, TC_OK);
        tc_view v;
        tc_item_view(it, &v);
        bool same = v.value_len == vl && memcmp(v.value, val, vl) == 0 &&
                    v.flags == i;
        tc_item_release(it);
        TCT_CHECK(same);
    }
    TCT_EQ_U64(missing, 0);
    TCT_EQ_U64(tcu_stat(e, "get_disk_hits"), newest);
    tc_close(e);
    alarm(0);
    TCT_CHECK(!slow);
    TCT_CHECK(!over);
    TCT_CHECK(worst <= limit);
    TCT_EQ_U64(written, n);
    remove_dirs();
}

/* ---- the run, once per backend ---- */

static bool use_uring(void)
{
    if (!tcu_uring_usable())
        return false;
    backend = "io_uring";
    backend_no = 1;
    return true;
}

static const tct_case cases[] = {
    TCT(random_journal_damage),
    TCT(tiny_values_far_past_budget),
};

int main(int argc, char **argv)
{
    size_t n = sizeof(cases) / sizeof(cases[0]);
    int num = 0, failed = 0;
    tct_seed_init();
    backend = "threads";
    printf("# backend: threads\n");
    tct_run(argc, argv, cases, n, &num, &failed);
    alarm(0);
    if (use_uring()) {
        printf("# backend: io_uring\n");
        tct_run(argc, argv, cases, n, &num, &failed);
        alarm(0);
    } else {
        tcu_skip_uring(argc, argv, cases, n, &num);
    }
    printf("1..%d\n", num);
    remove_dirs();
    return failed > 0 ? 1 : 0;
}
