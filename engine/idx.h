/*
 * idx.h - the LMDB index of the disk tier.
 *
 * An LMDB environment in <dir>/index holds three databases:
 *   keys  key -> where its live record is (idx_loc, 48 bytes, below);
 *   meta  the journal's state (idx_meta), updated in the same write
 *         transaction as the keys it describes;
 *   hot   the hot-key snapshot of warm start (warm.c): a header with a
 *         format version and a CRC-32C, and the payload in chunks.
 *
 * One thread writes (the index writer, plus recovery before it starts),
 * in large transactions; any thread reads through an idx_reader (a read
 * transaction it renews). Commits are synchronous: a committed checkpoint
 * is on stable storage. The environment's directory is fsynced after
 * creation (LMDB never does it).
 *
 * The map size is the data.mdb size limit: set from the disk budget.
 * Stale reader slots of dead processes are cleared at open.
 */
#ifndef TC_IDX_H
#define TC_IDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tiercache.h"

#define IDX_FORMAT 1

/* Where a key's live record is, and its metadata. */
typedef struct idx_loc {
    uint64_t seg;     /* segment id */
    uint32_t off;     /* record offset in the segment */
    uint32_t len;     /* record size in the segment (seg_rec_size) */
    uint64_t lsn;     /* the record's LSN */
    uint64_t cas;
    uint32_t flags;
    uint32_t exptime; /* absolute, 0 = never */
    uint32_t raw_len; /* value length */
    uint8_t codec;
    uint8_t meta;     /* item state, SEG_M_* (0 in entries of format 1) */
} idx_loc;

/* The journal's state, as of the last commit. */
typedef struct idx_meta {
    uint32_t format;
    uint64_t checkpoint_lsn; /* every record up to it is in keys */
    uint64_t next_seg;       /* where the record after it starts */
    uint64_t next_off;
    uint64_t cas_ceiling;    /* no CAS above it was handed out */
    uint64_t flush_lsn;      /* records of a lower LSN are flushed */
    int64_t flush_at;        /* a delayed flush not yet due (0 = none) */
} idx_meta;

typedef struct idx idx;
typedef struct idx_reader idx_reader;

/*
 * Opens or creates the index in dir/index with map_size bytes of map.
 * On TC_OK *meta holds the stored state (zeroed for a new index, with
 * format IDX_FORMAT). Errors: TC_EFORMAT (another format version),
 * TC_EIO (LMDB's error is logged in *why), TC_ENOMEM.
 */
tc_status idx_open(const char *dir, size_t map_size, idx **out,
                   idx_meta *meta, char *why, size_t why_len);
void idx_close(idx **x);

/* Writer side: one write transaction at a time, from one thread. */
tc_status idx_begin(idx *x);
/* Sets key's location; *old (if not NULL) receives the previous one and
 * the return is TC_OK with *had_old telling whether there was one. */
tc_status idx_put(idx *x, const void *key, size_t klen, const idx_loc *loc,
                  idx_loc *old, bool *had_old);
/* Removes key; TC_ENOTFOUND if absent, *old gets what was there. */
tc_status idx_del(idx *x, const void *key, size_t klen, idx_loc *old);
/* Reads key inside the write transaction. */
tc_status idx_get_w(idx *x, const void *key, size_t klen, idx_loc *loc);
tc_status idx_set_meta(idx *x, const idx_meta *m);
/* Commits (synchronously). TC_ENOSPC when the map is full: the
 * transaction is then aborted. */
tc_status idx_commit(idx *x);
void idx_abort(idx *x);

/* Calls fn for every key, in key order, in a read transaction. fn
 * returns false to stop. */
typedef bool (*idx_scan_fn)(void *arg, const void *key, size_t klen,
                            const idx_loc *loc);
tc_status idx_scan(idx *x, idx_scan_fn fn, void *arg);

/* Reader side: a reader belongs to one thread at a time. */
tc_status idx_reader_new(idx *x, idx_reader **out);
void idx_reader_free(idx_reader **r);
/* Looks key up in a fresh snapshot (the transaction is renewed when the
 * reader was idle). TC_ENOTFOUND if absent. */
tc_status idx_lookup(idx_reader *r, const void *key, size_t klen,
                     idx_loc *loc);
/* Ends the reader's snapshot so that it does not pin old pages. */
void idx_reader_reset(idx_reader *r);

/*
 * The hot-key snapshot. idx_hot_write replaces it in a write transaction
 * of its own (any thread; LMDB serialises it with the index writer's;
 * never call it inside idx_begin..idx_commit on the same thread).
 * idx_hot_read returns a malloc'd copy of the payload (the caller frees
 * it): TC_ENOTFOUND when there is none, TC_ECORRUPT when its header,
 * chunks or CRC do not match, TC_ENOMEM, TC_EIO.
 */
tc_status idx_hot_write(idx *x, const void *payload, size_t len,
                        uint32_t nkeys);
tc_status idx_hot_read(idx *x, unsigned char **payload, size_t *len,
                       uint32_t *nkeys);

/* Entries in keys; the size of data.mdb; the bytes of the pages its
 * trees use (as of the last commit). */
uint64_t idx_count(idx *x);
uint64_t idx_file_bytes(idx *x);
uint64_t idx_live_bytes(idx *x);

#endif /* TC_IDX_H */
