/*
 * disk.h - the disk tier: the journal of segment files, the LMDB index,
 * the filter of keys on disk, and the threads that move data between
 * them and the memory tier.
 *
 * Write path. A change to an item (set, delete, touch, flush) is made in
 * the memory tier and, under the same shard lock, logged with disk_log():
 * that assigns the record's LSN and queues it for the journal writer. The
 * item stays pinned in memory (never evicted) until the index points at
 * its record, so a read always finds the newest version: in memory, or,
 * once indexed and evicted, on disk. The journal writer batches records
 * into the current segment (group commit) and makes them durable as the
 * durability mode says; the index writer then applies durable records to
 * LMDB in large transactions, updates the filter, and unpins the items.
 *
 * Read path. A key missing from memory whose hash the filter may hold is
 * loaded by disk_load(): a reader thread looks the key up in the index,
 * reads the record, checks it, decompresses it, and promotes the item to
 * the memory tier unless a newer version got there first. A caller that
 * must not wait tries disk_load_fast() first, which does the same on its
 * own thread when no step needs the device (the record is in the page
 * cache), and says TC_PENDING otherwise.
 *
 * Ordering and crash rules, as DESIGN.md has them, except:
 *   - durability "none" indexes records once written, not once durable
 *     (nothing is ever durable there before close): after a machine
 *     crash the index may point at records the crash took; they fail
 *     the reader's checks (CRC, key, LSN) and are answered as misses;
 *   - a rescue (reclaim.c) does not rewrite the index entry in place: it
 *     logs the version memory holds as a new record, whose higher LSN
 *     wins in the index like any write; the segment is deleted only once
 *     that record is indexed (durable);
 *   - the journal writer waits for each write to complete before the
 *     next, and an fdatasync covers everything written before it, so the
 *     journal's durable part is always a prefix: records are acknowledged
 *     ("sync") and indexed in LSN order.
 *
 * Thread ownership: disk_log() and disk_maybe() may be called from any
 * thread; the callbacks of disk_load() and of waiters run on the disk
 * tier's threads and must be short.
 */
#ifndef TC_DISK_H
#define TC_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "mem.h"
#include "tiercache.h"

struct tc_item;
typedef struct disk disk;

typedef struct disk_config {
    const char *dir;
    uint64_t disk_size;    /* segments + data.mdb, bytes */
    uint64_t segment_size; /* 0: chosen from disk_size and item_max */
    tc_durability durability;
    unsigned flush_ms;     /* async: fdatasync period */
    int compress_level;    /* 0: off */
    size_t compress_min;   /* values below it are stored raw */
    io_backend backend;
    tc_direct direct_writes; /* journal writes with O_DIRECT (journal.c) */
    size_t item_max;
    size_t queue_max;      /* bytes logged and not yet durable, at most */
    size_t index_max;      /* bytes logged and not yet indexed, at most
                            * (pinned in memory meanwhile; >= queue_max) */
    size_t map_max;        /* bytes of segment live maps, at most (0: none;
                            * a map is 1/256 of its segment) */
    uint32_t (*now)(void *arg); /* the engine's clock, unix seconds */
    void *now_arg;
    void (*log)(void *arg, const char *msg); /* tc_config.log */
    void *log_arg;
} disk_config;

/* What the recovery at open found. */
typedef struct disk_recovery {
    uint64_t records;   /* replayed into the index */
    uint64_t skipped;   /* damaged records passed over */
    uint64_t cut_bytes; /* torn tail removed */
    double seconds;
    uint64_t keys;      /* keys in the index after it */
} disk_recovery;

/*
 * Opens (or creates) the data directory: takes its lock, checks its
 * format, recovers, starts the threads. mem is the memory tier the disk
 * tier pins and promotes items in; seed its hash seed. On failure *why
 * says what went wrong. Errors: TC_EBUSY (another process holds the
 * directory), TC_EFORMAT, TC_EIO, TC_ENOSPC, TC_ENOMEM, TC_EINVAL.
 */
tc_status disk_open(const disk_config *cfg, mem *m, disk **out,
                    disk_recovery *rec, char *why, size_t why_len);

/* Writes what is queued, makes it durable, indexes it, stops the threads
 * and closes the directory. disk_close(NULL) does nothing. */
void disk_close(disk **d);

/* Called when a logged record is durable (or could not be written: then
 * st is the error). Runs on the journal writer's thread. */
typedef void (*disk_wake_fn)(void *arg, tc_status st);

/*
 * Logs a change; call with the item's shard lock held. type is a SEG_*
 * record type; it is the item changed (SET: the new item; DELETE: the
 * tombstone naming the key; TOUCH: the item, exptime its new expiry) or
 * NULL for SEG_FLUSH (exptime: when it takes effect; scheduled: a delayed
 * flush not yet due). The journal takes a reference on it and sets
 * ITEM_PINNED; h is its key's hash (mem_hash). wake, if not NULL, is called once the record is durable
 * (sync durability) or written (other modes). Returns the record's LSN.
 */
uint64_t disk_log(disk *d, uint8_t type, struct tc_item *it, uint64_t h,
                  uint32_t exptime, bool scheduled, disk_wake_fn wake,
                  void *wake_arg);

/*
 * Folding a change into the record that waits for it. Call with the
 * shard lock of it's key held, it the item a set is about to replace (or
 * rewrite in place; worth a call only when it is ITEM_PINNED, and when
 * no one waits for the new change), h its key's hash. When the latest record logged for
 * the key is a set of it that the journal writer has not taken yet, and
 * no one waits for it (not under sync durability), returns that record
 * with the queue locked: the caller then rewrites it in place (it holds
 * the only reference besides the record's and the memory tier's) or puts
 * a new item in its place, and calls disk_fold_end with the item now
 * current, or disk_fold_cancel to log the change as usual after all.
 * Otherwise returns NULL, and the change is logged with disk_log.
 *
 * The record keeps its LSN and takes the new value: nothing had been
 * written of the old one, and both would have become durable with the
 * same fdatasync; a record logged in between for another key changes
 * nothing about this key (a flush, which does, ends every fold). A
 * re-set of a hot key then costs no new record, no journal bytes, and
 * nothing in either writer. Counted in stats as journal_folded.
 */
struct jr_fold;
struct jr_fold *disk_fold_begin(disk *d, uint64_t h,
                                const struct tc_item *it);
void disk_fold_end(disk *d, struct jr_fold *f, struct tc_item *it);
void disk_fold_cancel(disk *d);

/* A delayed flush not yet due when the directory was opened (its unix
 * time), or 0. */
int64_t disk_pending_flush(const disk *d);

/* The LSN of the newest flush: records of a lower LSN are flushed. */
uint64_t disk_flush_lsn(disk *d);

/* True when so much is logged and not yet indexed that the server should
 * stop taking requests until the journal catches up. A true answer for
 * the journal writer's bound is taken as its being behind (journal.c). */
bool disk_congested(disk *d);

/* The durability mode writes wait for. */
tc_durability disk_durability(const disk *d);

/* False only when no key of hash h is on disk. */
bool disk_maybe(disk *d, uint64_t h);

/* Completion of a load: TC_OK with a reference to the item (the caller
 * releases it), TC_ENOTFOUND, or an error (TC_EIO, TC_ECORRUPT). */
typedef void (*disk_load_fn)(void *arg, tc_status st, struct tc_item *it);

/*
 * Loads key from disk and promotes it to the memory tier; fn is called
 * once, on a reader thread (or before disk_load returns, for an error).
 * The key is copied.
 */
void disk_load(disk *d, uint64_t h, const void *key, size_t klen,
               disk_load_fn fn, void *arg);

/*
 * A load on the caller's own thread, for an event loop that must not
 * wait: done only when it needs no device read (the record is in the page
 * cache) and the index lookup took no major page fault (after one, the
 * fast path rests for a second). Returns TC_OK with a reference to the
 * item (promoted as by disk_load), TC_ENOTFOUND, or TC_PENDING: it would
 * have waited, use disk_load. f holds the calling thread's index reader
 * and buffers (disk_fast_new; one per thread).
 */
typedef struct disk_fast disk_fast;
tc_status disk_fast_new(disk *d, disk_fast **out);
void disk_fast_free(disk_fast **f);
tc_status disk_load_fast(disk *d, disk_fast *f, uint64_t h, const void *key,
                         size_t klen, struct tc_item **out);

/* The disk tier's statistics (names in disk.c). */
void disk_stats(disk *d, tc_stat_fn fn, void *arg);

/* The I/O backend in use: "io_uring" or "threads". */
const char *disk_backend_name(const disk *d);

#endif /* TC_DISK_H */
