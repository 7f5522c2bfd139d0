/*
 * disk_int.h - the disk tier's private state, shared by disk.c (open,
 * close, segments, stats), journal.c (the queue and the journal writer),
 * indexer.c (the index writer), recover.c and reader.c.
 *
 * A logged change travels as one jr_entry through three lists:
 *   queue   (q_*, under q_lock): logged, not yet written;
 *   written (the journal writer's own): written, waiting for fdatasync
 *           (async durability);
 *   index   (ix_*, under ix_lock): durable, waiting for the index writer.
 * The index writer then gives the entry back. The entry holds a reference
 * on its item for the whole trip. Entries are handed out in LSN order
 * from chunks of JR_CHUNK (journal.c), so that a list of them is mostly
 * consecutive memory, which the writers walk at memory speed.
 *
 * Segments: the table segs[] (under seg_lock) lists every segment file
 * with an fd open for reading; the journal writer appends to the last.
 * Live bytes per segment (bytes of records the index points at) are kept
 * by the index writer, for reclaim and stats.
 */
#ifndef TC_DISK_INT_H
#define TC_DISK_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "disk.h"
#include "filter.h"
#include "idx.h"
#include "io.h"
#include "mem.h"
#include "seg.h"
#include "zc.h"

struct jr_chunk;

typedef struct jr_entry {
    struct jr_entry *next;
    struct jr_chunk *chunk; /* where it was handed out from */
    uint64_t lsn;
    uint64_t h;            /* the key's hash (mem_hash), 0 for SEG_FLUSH */
    uint8_t type;
    bool scheduled;        /* SEG_FLUSH: a delayed flush, not yet due */
    bool coalesced;        /* not written: a later entry of its key in
                            * the same journal batch replaced it */
    bool copy;             /* item is a private copy of the one logged
                            * (its count was saturated: tc_item_ref) */
    struct tc_item *item;  /* a reference; NULL for SEG_FLUSH */
    uint32_t exptime;      /* SEG_TOUCH, SEG_FLUSH */
    uint8_t meta;          /* the item's state as logged (SEG_M_*) */
    size_t cost;           /* bytes counted in d->unindexed */
    disk_wake_fn wake;
    void *wake_arg;
    /* Where the writer put it. */
    uint64_t seg;
    uint32_t off;
    uint32_t len;
    uint8_t codec;
} jr_entry;

/* A hash table over the keys of a batch of entries, kept between batches
 * by its user (zero-initialised; jr_dedup_free frees it). */
typedef struct jr_dedup {
    struct jr_slot *slot;
    size_t cap;
} jr_dedup;

/* The latest entry logged for a slot of key hashes (h & (JR_FOLD_SLOTS -
 * 1)) while it waits in the queue: a set of a key whose latest entry is
 * a set still there is folded into it (disk_fold_begin). A slot is
 * current while its lsn is at least q_fold_from; two keys of one slot
 * keep the later one. The slot's item (fold_item, an array of its own)
 * is the entry's item when the entry may be folded into (a set no one
 * waits for), NULL otherwise; cost is its e->cost (so that a fold need
 * not read the entry). Every set looks at its slot's item, most finding
 * no fold: those 128 KiB stay in the caches better than the 512 KiB of
 * whole slots (disk_fold_begin was 3.7% of the server's samples under
 * 100-byte sets, most of it that one load). */
#define JR_FOLD_SLOTS 16384
struct jr_fold {
    struct jr_entry *e;
    uint64_t lsn;
    size_t cost;
};

typedef struct seg_info {
    uint64_t id;
    int fd;
    uint64_t live; /* bytes of records the index points at */
    /* Its live map: a bit for every SEG_MAP_UNIT bytes of the file, set
     * where a record the index points at starts (no two records start
     * in one unit: a record is longer). Kept by the index writer, from
     * the operations of its commits and, at open, from the index; reclaim
     * reads only the keys of the records it marks (reclaim.c). NULL when
     * the maps' budget (disk_config.map_max) had no room for it: then
     * reclaim reads every key. */
    uint64_t *map;
    size_t map_words;
    /* Written with O_DIRECT (journal.c), so not in the page cache:
     * reclaim reads it with O_DIRECT too. */
    bool direct;
} seg_info;

#define SEG_MAP_UNIT 32
/* disk_seg_live: a change of live bytes that marks no record. */
#define SEG_OFF_NONE UINT32_MAX

/* Tests only: journal_sync_soon does nothing, so that a drain's rescues
 * are synced by the journal writer's wait for room alone (test_disk). */
extern _Atomic bool journal_sync_soon_off;
/* Tests only: segments get no live map, as when the maps' budget has no
 * room (reclaim then reads whole segments). */
extern _Atomic bool disk_maps_off;
/* Tests only: no key lists (reclaim reads the keys back). */
extern _Atomic bool reclaim_lists_off;
/* Tests only: the journal writer takes no batch while set (what is
 * logged meanwhile is taken in one batch once it is cleared). */
extern _Atomic bool journal_held;

struct disk {
    disk_config cfg;
    mem *m;
    int dirfd;
    int lockfd;
    idx *ix;
    filter *filt;
    idx_meta meta; /* the index writer's (recovery's before it starts) */

    /* The queue of logged records. */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    jr_entry *q_head;
    jr_entry *q_tail;
    size_t q_bytes;
    uint64_t next_lsn;
    uint64_t q_fold_from; /* the first LSN the writer has not taken */
    struct jr_fold fold[JR_FOLD_SLOTS];
    const struct tc_item *fold_item[JR_FOLD_SLOTS]; /* read without q_lock */
    struct jr_chunk *q_chunk; /* entries are handed out from it */
    struct jr_chunk *q_spare; /* emptied chunks (journal_trim_spares) */
    size_t q_nspare;
    bool stopping;
    bool jr_sleeping; /* the writer waits for the queue (or a sync's time) */
    bool jr_idle;     /* ... with nothing written to sync */
    bool jr_syncing;  /* ... while a sync runs (it looks every ms) */
    _Atomic size_t unindexed; /* logged and not yet indexed, bytes */
    _Atomic size_t unsynced;  /* logged and not yet durable, bytes */
    /* Logged and not yet written, bytes, and its bound: what the journal
     * writer writes in flush_ms / 2 at its measured rate (journal.c,
     * writer_rate), so that a change waits that long at most before it
     * is written, however slow the disk. SIZE_MAX under sync durability
     * (each client waits for its own change there). */
    _Atomic size_t unwritten;
    _Atomic size_t unwritten_max;
    /* A writer was held back by that bound since the journal writer last
     * took its queue: the next batch is stored uncompressed if
     * compressing does not pay (journal.c). */
    _Atomic bool held_back;
    _Atomic uint64_t flush_lsn;
    int64_t pending_flush_at; /* meta.flush_at as found at open */

    /* The journal writer. */
    pthread_t writer;
    bool writer_started;
    io_queue *wq;
    zc *wz;
    unsigned char *wbuf;
    size_t wbuf_cap;
    /* The values of the piece being encoded that are written from their
     * items (journal.c: JR_IOV_MIN), and the iovecs of its write. */
    struct jr_part *jw_parts;
    size_t jw_nparts;
    struct iovec *jw_iov;
    /* The writer's batch as an array, for jr_supersede. */
    jr_entry **jw_ents;
    bool *jw_skip;
    size_t jw_cap;
    jr_dedup jw_dedup;
    /* The highest CAS of the items of the entries the journal writer has
     * taken, stored before it hands them on: the index writer's CAS
     * ceiling, without a pass over the items of each run. */
    _Atomic uint64_t jw_max_cas;
    /* The writer's rate, bytes of entry cost per second of its busy
     * time (writes and syncs), smoothed; 0 until measured. */
    _Atomic uint64_t jw_rate;
    uint64_t jw_rate_bytes; /* the sample being gathered */
    uint64_t jw_rate_us;
    uint64_t cur_seg; /* the segment being appended to */
    int cur_fd;
    uint64_t cur_off; /* where the next record goes */
    /* Direct writes (O_DIRECT, journal.c: writer_piece_base): the
     * current segment opened for them, or -1 (buffered writes through
     * cur_fd); whether that was decided for the current segment;
     * jw_direct false once they are off (by config, or after one
     * failed). The bytes of the segment's last block before cur_off are
     * wbuf's first jw_carry: every direct write starts at a block's
     * start. jw_rec_avg: the stored bytes of the records written lately,
     * per record (auto mode's measure). */
    int jw_dfd;
    bool jw_seg_decided;
    bool jw_direct;
    size_t jw_carry;
    uint64_t jw_rec_avg;
    unsigned zc_misses;  /* compressions in a row that did not pay */
    unsigned zc_skipped; /* values stored raw untried since (journal.c) */
    unsigned zc_every;   /* then one value in this many is tried */
    bool zc_hurry;       /* this batch is stored raw: the writer is behind */
    uint64_t zc_behind_ns; /* when a batch was last taken behind */
    unsigned zc_hurried; /* values met while so (one in 32 is tried) */
    /* What compressing costs and saves, and what writing costs (the
     * writer's time, ns; bytes), halved now and then: journal_zc_pays. */
    uint64_t zc_ns, zc_in, zc_saved, wr_ns, wr_bytes;
    /* Records written and not yet synced, in LSN order (none with NONE,
     * which hands them on at once), and the first error of their writes;
     * a previous segment written to and not yet synced (or -1); when the
     * last sync began; the cost of the entries written since the writer
     * last took its queue (for its rate). The writer's alone. */
    jr_entry *jw_written, *jw_written_tail;
    int jw_written_rc;
    int jw_extra_fd;
    uint64_t jw_last_sync;
    /* The sync under way (ASYNC: the writer goes on writing meanwhile):
     * the records it makes durable and the first error of their writes,
     * its fdatasyncs, how many of them are not done yet, the first of
     * their errors, and when it began. */
    jr_entry *jw_syncing;
    int jw_syncing_rc;
    io_op jw_sync_op[2];
    unsigned jw_sync_left;
    int jw_sync_rc;
    uint64_t jw_sync_t0;
    uint64_t jw_cost;
    uint64_t jw_batch_lsn; /* the first LSN of the batch being written */

    /* The index writer. */
    pthread_t indexer;
    bool indexer_started;
    pthread_mutex_t ix_lock;
    pthread_cond_t ix_cond;
    jr_entry *ix_head;
    jr_entry *ix_tail;
    bool ix_stop;
    bool ix_idle; /* waiting, with nothing to do: disk_close's barrier */
    bool ix_hurry; /* the journal waits for reclaim: commit now */

    /* The reader. */
    struct disk_reader *rd;

    /* Warm start (warm.c), or NULL. */
    struct warm *wm;

    /* Reclaim (reclaim.c), done by the index writer. */
    io_queue *rq;
    struct rc_job *rc_read[4]; /* segments planned, their keys being read */
    size_t rc_nread;
    struct rc_job *rc_job[4]; /* segments read, to drain (reclaim.c) */
    size_t rc_njob;
    struct rc_job *rc_spare[4]; /* drained jobs whose arrays are kept */
    size_t rc_nspare;
    uint64_t rc_segs[4];   /* segments drained, waiting to be deleted */
    size_t rc_n;
    _Atomic uint64_t rc_drain_lsn; /* when their rescues are all indexed */
    /* Key lists (reclaim.c): for each segment written with O_DIRECT since
     * open (ids from kl_from on), the keys of the SET records the index
     * writer indexed in it, so that reclaim need not read them back from
     * the device; st_kl_bytes of them, within disk_config.map_max. */
    struct kl_seg *kl, *kl_last; /* kl_last: the one listed to last */
    size_t kl_n, kl_cap;
    uint64_t kl_from;
    uint64_t kl_done; /* the segments up to it are reclaimed */
    /* A drain waits for the records up to this LSN to be durable: the
     * journal writer syncs without waiting for flush_ms until they are. */
    _Atomic uint64_t sync_for_lsn;

    /* Segments. */
    pthread_mutex_t seg_lock;
    seg_info *segs;
    size_t nsegs;
    size_t segcap;
    size_t map_bytes; /* of the segments' live maps */

    /* disk_warn's rate limit. */
    pthread_mutex_t warn_lock;
    uint64_t warn_last_us;
    uint64_t warn_dropped;

    /* Statistics (relaxed atomics). */
    _Atomic uint64_t st_journal_bytes;
    _Atomic uint64_t st_journal_records;
    _Atomic uint64_t st_journal_coalesced;
    _Atomic uint64_t st_journal_folded;
    _Atomic uint64_t st_fsyncs;
    _Atomic uint64_t st_fsync_us_total;
    _Atomic uint64_t st_fsync_us_max;
    _Atomic uint64_t sync_since; /* the running fdatasync's start, or 0 */
    _Atomic uint64_t st_disk_reads;
    _Atomic uint64_t st_fast_reads;  /* disk_reads done on the caller */
    _Atomic uint64_t st_fast_misses; /* fast path left to the reader */
    _Atomic uint64_t st_fast_rests;  /* index lookups that faulted */
    _Atomic uint64_t st_disk_read_errors;
    _Atomic uint64_t st_write_errors;
    _Atomic uint64_t st_index_batches;
    _Atomic uint64_t st_index_records;
    _Atomic uint64_t st_index_superseded;
    _Atomic uint64_t st_raw_bytes;
    _Atomic uint64_t st_stored_bytes;
    _Atomic uint64_t st_raw_hurried; /* values stored raw untried, behind */
    _Atomic uint64_t st_writer_behind; /* batches taken after a hold-back */
    _Atomic uint64_t st_direct_segs; /* segments written with O_DIRECT */
    _Atomic uint64_t st_reclaimed_segs;
    _Atomic uint64_t st_reclaim_dropped;
    _Atomic uint64_t st_reclaim_rescued;
    _Atomic uint64_t st_reclaim_read_bytes;
    _Atomic uint64_t st_reclaim_listed; /* segments whose keys were listed */
    _Atomic uint64_t st_kl_bytes; /* the key lists' bytes (reclaim.c) */
    _Atomic uint64_t st_over_budget;
    _Atomic uint64_t st_room_timeouts; /* the writer waited its second */
    _Atomic uint64_t st_durable_lsn;
    _Atomic uint64_t st_indexed_lsn;
    _Atomic int st_last_errno;
    disk_recovery rec;
    uint32_t fsync_hist[64]; /* fdatasync latency, log2 buckets of us */
};

/* journal.c */
/* Marks in skip[] the entries of ents[] (in LSN order) whose key a later
 * entry of ents[] decides: a SET or a DELETE, and when written is true a
 * failed write too (seg 0: it takes the key out). A TOUCH depends on
 * what it touches, so it decides nothing and the entries before it stay.
 * FLUSH entries are never marked, coalesced ones always (they decide
 * nothing). Out of memory, only the coalesced are marked. */
void jr_supersede(jr_dedup *t, jr_entry *const *ents, size_t n, bool *skip,
                  bool written);
void jr_dedup_free(jr_dedup *t);
tc_status journal_start(disk *d);
void journal_stop(disk *d);
jr_entry *journal_entry_new(disk *d); /* with q_lock held */
/* Gives back the n entries of ents[] (any order; best in LSN order). */
void journal_entries_free(disk *d, jr_entry *const *ents, size_t n);
/* Frees the emptied chunks of entries but a few (the index writer, when
 * it has nothing to do). */
void journal_trim_spares(disk *d);
/* Frees the chunks of entries (at close, once every entry came back). */
void journal_free_entries(disk *d);

/* indexer.c */
tc_status indexer_start(disk *d);
void indexer_stop(disk *d);
/* Hands durable entries to the index writer. */
void indexer_push(disk *d, jr_entry *head, jr_entry *tail);

/* reclaim.c: keeps the directory within disk_size, from the index
 * writer's thread. reclaim_plan reads the segments to reclaim, if it is
 * time; reclaim_apply drains them in the index writer's open transaction;
 * reclaim_applied says whether that transaction committed (if not, they
 * are planned again later); reclaim_finish deletes the drained segments
 * once their rescued records are indexed. reclaim_step does all of it in
 * a transaction of its own (when there is no run to join). */
typedef struct rc_job rc_job;
void reclaim_plan(disk *d);
tc_status reclaim_apply(disk *d);
void reclaim_applied(disk *d, bool committed);
void reclaim_finish(disk *d);
void reclaim_step(disk *d);
/* Frees the arrays kept for the next segments to reclaim (when the
 * index writer idles, and at its end). */
void reclaim_trim(disk *d);
/* Lists the key of a SET record the index writer indexes at off of
 * segment seg, if that segment is written with O_DIRECT, for reclaim. */
void reclaim_list_key(disk *d, uint64_t seg, uint32_t off, const char *key,
                      size_t klen);
/* Frees the key lists (at the index writer's end). */
void reclaim_lists_free(disk *d);
/* Bytes the directory holds: segments and the index file. */
uint64_t disk_usage(disk *d);

/* Reports a problem through tc_config.log (printf-style; err, when not
 * 0, is an errno whose text is appended), at most once a second. */
void disk_warn(disk *d, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* recover.c: replays the journal past the checkpoint into the index and
 * finds where the next record goes (d->cur_seg, d->cur_off). */
tc_status recover_run(disk *d, char *why, size_t why_len);

/* reader.c */
tc_status reader_start(disk *d);
void reader_stop(disk *d);
/* Checks a record read for loc (res: the read's result, buf its bytes:
 * length, CRC, type, key and LSN against the index entry), decompresses
 * it with z and makes an unpublished item of it, with the index's
 * expiry. TC_OK (*out: one reference), TC_ECORRUPT, TC_ENOMEM. */
tc_status disk_record_item(disk *d, zc *z, const idx_loc *loc,
                           const void *key, size_t klen,
                           const unsigned char *buf, int64_t res,
                           struct tc_item **out);

/* warm.c: the warm start (warm.h). */
struct warm;

/* disk.c: the segment table. */
tc_status disk_seg_add(disk *d, uint64_t id, int fd);
/* Takes reclaim's direct reads that ended, for as long as one ends
 * within timeout_ms of the last (-1: until all are over, as before its
 * queue goes). */
void reclaim_reads_poll(disk *d, int timeout_ms);
/* Marks segment id as written with O_DIRECT (seg_info.direct). */
void disk_seg_set_direct(disk *d, uint64_t id);
/* Whether segment id is written with O_DIRECT. */
bool disk_seg_direct(disk *d, uint64_t id);
/* An fd of segment id for reading, or -1. */
int disk_seg_fd(disk *d, uint64_t id);
/* Adds delta to the live bytes of segment id; marks the record at off
 * live (delta > 0) or not (delta < 0) in its map, unless off is
 * SEG_OFF_NONE. */
void disk_seg_live(disk *d, uint64_t id, uint32_t off, int64_t delta);
/* The same with seg_lock held, for many changes in a row: *last (NULL at
 * first) keeps the segment of the previous one, valid while the lock is
 * held. */
void disk_seg_live_locked(disk *d, seg_info **last, uint64_t id, uint32_t off,
                          int64_t delta);
/* Segment id's live map (seg_info), or NULL; for the index writer, the
 * only thread that changes it or frees it (with the segment). */
const uint64_t *disk_seg_map(disk *d, uint64_t id, size_t *words);
/* Takes segment i out of the table (seg_lock held); returns its fd. */
int disk_seg_remove(disk *d, size_t i);
/* Creates segment id (file, preallocation, header, directory fsync),
 * writing through q, and adds it to the table. Another operation of q
 * that completes meanwhile goes to other (NULL when q has none in
 * flight). */
tc_status disk_seg_create(disk *d, io_queue *q, uint64_t id, int *fd_out,
                          void (*other)(disk *d, io_op *op));

/* Asks the journal writer to make the records up to lsn durable without
 * waiting for flush_ms: a drain waits for its rescues (reclaim.c). */
void journal_sync_soon(disk *d, uint64_t lsn);

/* Whether compressing values makes the journal writer faster: it costs
 * zc_ns per zc_in bytes compressed and saves zc_saved of them, and a
 * write costs wr_ns per wr_bytes (journal.c). True while it knows no
 * better. */
bool journal_zc_pays(uint64_t zc_ns, uint64_t zc_in, uint64_t zc_saved,
                     uint64_t wr_ns, uint64_t wr_bytes);

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t disk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC in microseconds. */
static inline uint64_t disk_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif /* TC_DISK_INT_H */
