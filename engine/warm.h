/*
 * warm.h - warm start: a snapshot of the memory tier's hot keys in the
 * index (taken periodically and at a clean close), and a preload of it
 * into the memory tier in the background after a start.
 *
 * The hot keys come from the eviction policy's own state (mem_hot_keys:
 * main FIFO before small, then the frequency bits every get already
 * updates), so tracking costs the get path nothing.
 *
 * The preload runs on its own thread while the engine serves: it takes
 * the snapshot's keys in batches, looks them up in the index, sorts each
 * batch by segment and offset, reads it with a deep I/O queue (io_uring
 * or the thread pool), checks and decompresses each record
 * (disk_record_item) and inserts it with mem_promote, which never
 * replaces a newer write or a deletion that arrived meanwhile. It stops
 * at the memory limit. Without a usable snapshot, mode ALL fills memory
 * from the newest records of the index instead; mode HOT preloads
 * nothing. Progress goes to the log callback (lines starting "warm: ").
 */
#ifndef TC_WARM_H
#define TC_WARM_H

#include "disk.h"
#include "tiercache.h"

typedef struct warm_config {
    tc_warm mode;
    unsigned snapshot_s; /* 0: only at close */
    void (*hook)(void *arg); /* testing aid, see tc_config */
    void *hook_arg;
} warm_config;

/* Starts the warm thread (nothing for TC_WARM_OFF). Call once the memory
 * tier has the disk tier (mem_set_disk). TC_ENOMEM. */
tc_status warm_start(disk *d, const warm_config *wc);

/* Stops the thread (a preload still running is abandoned) and, if the
 * preload had finished, writes a last snapshot. Called by disk_close
 * before anything else shuts down. */
void warm_stop(disk *d);

/* warm_state, warm_items, warm_bytes, warm_seconds; hot_snapshots
 * (written since the start) and hot_snapshot_keys (in the last). */
void warm_stats(disk *d, tc_stat_fn fn, void *arg);

#endif /* TC_WARM_H */
