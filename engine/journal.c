/*
 * journal.c - the queue of logged changes and the journal writer.
 *
 * Producers (worker threads, under a shard lock) append to the queue
 * with disk_log(); the LSN is assigned under the queue's lock, so queue
 * order is LSN order and, because the shard lock is held too, the order
 * of changes to one key.
 *
 * The journal writer takes the whole queue at once (group commit),
 * leaves out the entries a later entry of their key in the batch replaces
 * (writer_coalesce), encodes the rest into one buffer per segment they go
 * to (values of JR_IOV_MIN or more stay in their items: the buffer holds
 * the rest of their records), writes it with one operation (a writev
 * when values stay in their items; pieces of JR_WBUF_MAX bytes or
 * JR_PARTS such values at most), and then, as the durability mode
 * says:
 *   SYNC   fdatasyncs the segment(s) before anything else: the records
 *          are durable, their waiters are woken, the index gets them;
 *   ASYNC  keeps the written records until the next fdatasync, which
 *          starts flush_ms after the previous one started (or at close), or
 *          sooner when half of queue_max waits for it, or when a drain
 *          of reclaim waits for records written (journal_sync_soon, and
 *          writer_next_segment when the writer waits for room);
 *   NONE   treats written records as done, never syncs (except at close
 *          and when a segment is full).
 * The writer sleeps while the queue is empty, and is woken by the first
 * record that arrives then; in ASYNC mode, records that arrive while it
 * waits for the next sync are written with it, or sooner once half the
 * bound on unwritten bytes (JR_WAKE_BYTES at most) waits. The writer
 * goes on writing while an fdatasync runs (writer_sync_start); what it
 * writes then waits for the next one. So a record is durable
 * within flush_ms and one fdatasync (two where one takes longer than
 * flush_ms: the next starts when it ends), and, on a disk slower than the
 * clients, half a flush_ms more (the bound on unwritten bytes, below).
 * A record that does not fit the rest of the current segment starts the
 * next one; the rest of the old one stays zero.
 *
 * Compression is tried on every value at or above compress_min until
 * JR_ZC_MISSES attempts in a row have not paid; from then on only one
 * value in JR_ZC_SAMPLE is tried, one in twice as many after each sample
 * that does not pay either (up to JR_ZC_SAMPLE_MAX), and the first that
 * pays brings back trying them all. An attempt that fails costs as much
 * as one that succeeds (measured here: 3.3 us for a 100-byte value at
 * level 1, which never pays without a dictionary; the rest of a set costs
 * about 1 us), so values that do not compress no longer pay for the
 * attempt (one in 32 still cost 2.3% of the server's CPU under 100-byte
 * sets), and a mix in which even one value in JR_ZC_MISSES compresses is
 * not affected.
 *
 * A batch taken after a writer was held back by the bound on unwritten
 * bytes (disk_congested) is stored uncompressed when compressing costs
 * the writer more time than the smaller writes spare it
 * (journal_zc_pays, from the writer's recent times): the writer is what
 * clients wait for then, and a compressed value serves them no better
 * than a raw one. Behind a slow disk compressing pays and goes on.
 * 4 KiB values of 64 letters (ratio 1.31) at level 1 cost 9 us each here,
 * their write into the page cache under 1 us: compressing made the
 * journal writer the bottleneck of 4 KiB sets (bench/RESULTS.md). The
 * batches taken within JR_ZC_BEHIND_NS of one taken behind are stored
 * raw too: between two such batches the writer caught up for a moment
 * and compressed all it took, a third of the values of a 4 KiB set load
 * that held clients back for 45% of its time; with the window, 4 KiB sets
 * ran 28% faster (bench/RESULTS.md). A writer that stays caught up for
 * longer compresses every value again.
 *
 * Write errors (ENOSPC, EIO): the batch is not retried; its waiters get
 * TC_EIO; the index writer takes its keys out of the index (so no older
 * value of theirs can come back from disk) and unpins its items, which
 * stay in memory until evicted and are lost at a restart; the error is
 * counted (stats: disk_write_errors, disk_last_errno) and the writer
 * goes on with the next batch, which may succeed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "disk_int.h"
#include "hash.h"
#include "item.h"
#include "vmem.h"

_Static_assert(ITEM_M_STALE == SEG_M_STALE && ITEM_M_WON == SEG_M_WON &&
                   ITEM_M_KEY64 == SEG_M_KEY64 &&
                   ITEM_M_PERSIST == SEG_M_ALL,
               "an item's state is logged as it is");

#define JR_WAIT_IDLE_MS 1000
#define JR_ZC_MISSES 32
#define JR_ZC_SAMPLE 32
#define JR_ZC_SAMPLE_MAX 1024
/* The batches taken this long after one taken behind are stored raw as
 * well (when compressing does not pay): a load that held clients back
 * once does so again soon. */
#define JR_ZC_BEHIND_NS ((uint64_t)1000 * 1000 * 1000)
/* The costs journal_zc_pays weighs follow about this many bytes of the
 * latest writes and compressions. */
#define JR_COST_BYTES ((uint64_t)64 << 20)
/* Entries are handed out in order from chunks of JR_CHUNK (about 450
 * KiB), and a chunk is reused once all of its entries came back: the
 * queue, the journal writer's batches and the index writer's runs are
 * then walks through consecutive memory (entries malloc'd one by one and
 * recycled through a free list lie all over the heap, and the index
 * writer, which passes over a million of them a run, waited on memory
 * for most of its time). Emptied chunks are kept for reuse. */
#define JR_CHUNK 4096
/* The encoding buffer: a batch is written in pieces of this size at most
 * (a record larger than it in one piece of its own). */
#define JR_WBUF_MAX ((size_t)4 << 20)
/* Emptied chunks are all kept while the index writer is busy (under a
 * steady load as many chunks empty as fill: a chunk mapped afresh for
 * every 4096 sets cost the workers a page fault every 40 sets), and
 * trimmed to this many when it idles (journal_trim_spares). */
#define JR_SPARE_CHUNKS 4
/* The bound on bytes logged and not yet written (d->unwritten_max)
 * follows the writer's rate: a change logged behind U such bytes is
 * written about U / rate later and durable at the sync after that, so
 * U <= rate x flush_ms / 2 keeps README's async promise (flush_ms and
 * one fdatasync) within half a flush_ms however slow the disk is (or,
 * on a disk that writes less than JR_UNWRITTEN_MIN in that time, within
 * the time it takes to write that much and the largest item). A bound
 * in bytes alone let a change wait behind all of queue_max: 4 MiB at the
 * 11 MB/s of the power-cut test under ASan is 0.38 s. The rate is bytes
 * of entry cost over the writer's busy time, its waits for syncs included
 * (for the one under way before the next can start, and in SYNC mode for
 * each; and while a new segment waits for reclaim to
 * make room), in samples of JR_RATE_US and JR_RATE_BYTES at
 * least, smoothed (each sample counts for a quarter); the bound stays
 * within JR_UNWRITTEN_MIN (where it starts) and queue_max. Syncs keep
 * their own schedule: syncing early at half a bound this small made 4 KiB
 * sets 15-35% slower (bench/RESULTS.md). */
#define JR_RATE_US 20000
#define JR_RATE_BYTES ((uint64_t)256 << 10)
#define JR_UNWRITTEN_MIN ((size_t)64 << 10)
/* A writer waiting for its next sync is woken once this much is queued
 * (or half the bound on unwritten bytes, if less). The longer a record
 * waits in the queue, the likelier a set of its key is folded into it
 * (disk_fold_begin): 100-byte sets of 1M keys, Zipf 0.99, folded 7.4M of
 * 15.8M sets at 8 MiB against 6.4M of 15.9M at 1 MiB (bench/RESULTS.md). */
#define JR_WAKE_BYTES ((size_t)8 << 20)
/* Values of this size or more (stored raw) are not copied into the
 * encoding buffer: the piece is written with writev, each such value
 * from its item, between the headers, keys and padding in the buffer.
 * The items cannot change meanwhile: each entry of the batch holds a
 * reference to its item, a taken batch is no longer folded into
 * (q_fold_from), and an item is rewritten in place only when the table
 * holds the one reference to it, or a queued record the other
 * (mem_rewrite). Under 4 KiB sets the copy was 5% of the server's CPU
 * (bench/RESULTS.md). A piece has at most JR_PARTS such values (two
 * iovecs each, and one for the rest of the buffer: under IOV_MAX), about
 * 1 MiB of 4 KiB values: the values the CRC has just read are still in
 * the core's cache when the kernel copies them. */
#define JR_IOV_MIN ((size_t)1024)
#define JR_PARTS 256
#define JR_PREFETCH_MAX ((size_t)8192)
/* Direct writes start and end on this boundary (file offset, length and
 * memory): the largest logical block size a disk has. */
#define JR_BLOCK ((size_t)4096)
/* Auto mode writes a segment with O_DIRECT when the records written
 * lately stored this many bytes each on average (bench/RESULTS.md,
 * thirteenth pass: 4 KiB values gain, 100-byte ones
 * lose). */
#define JR_DIRECT_MIN ((uint64_t)2048)

struct jr_part {
    size_t wend;              /* the buffer's bytes before the value end here */
    const unsigned char *val; /* the value, in its item */
    size_t vlen;
};

typedef struct jr_chunk {
    struct jr_chunk *next; /* among the spares */
    uint32_t used;         /* entries handed out */
    uint32_t back;         /* entries given back */
    jr_entry e[JR_CHUNK];
} jr_chunk;

jr_entry *journal_entry_new(disk *d)
{
    jr_chunk *c = d->q_chunk;
    if (c == NULL || c->used == JR_CHUNK) {
        c = d->q_spare;
        if (c != NULL) {
            d->q_spare = c->next;
            d->q_nspare--;
        } else if ((c = vm_resize(NULL, 0, sizeof(*c))) == NULL) {
            return NULL;
        }
        c->used = c->back = 0;
        d->q_chunk = c; /* the full one is freed by its last entry */
    }
    jr_entry *e = &c->e[c->used++];
    memset(e, 0, sizeof(*e));
    e->chunk = c;
    return e;
}

/* Counts n entries of c back; with q_lock held. */
static void chunk_back(disk *d, jr_chunk *c, uint32_t n)
{
    c->back += n;
    if (c->back < c->used || c->used < JR_CHUNK)
        return; /* entries still out, or more to hand out */
    if (c == d->q_chunk) {
        c->used = c->back = 0;
    } else {
        c->next = d->q_spare;
        d->q_spare = c;
        d->q_nspare++;
    }
}

void journal_trim_spares(disk *d)
{
    pthread_mutex_lock(&d->q_lock);
    while (d->q_nspare > JR_SPARE_CHUNKS) {
        jr_chunk *c = d->q_spare;
        d->q_spare = c->next;
        d->q_nspare--;
        vm_resize(c, sizeof(*c), 0);
    }
    pthread_mutex_unlock(&d->q_lock);
}

void journal_entries_free(disk *d, jr_entry *const *ents, size_t n)
{
    /* The chunks first, outside the lock: a run has a few hundred. */
    enum { GROUPS = 64 };
    jr_chunk *gc[GROUPS];
    uint32_t gn[GROUPS];
    size_t i = 0;
    while (i < n) {
        size_t g = 0;
        for (; i < n; i++) {
            jr_chunk *c = ents[i]->chunk;
            if (g > 0 && gc[g - 1] == c) {
                gn[g - 1]++;
                continue;
            }
            if (g == GROUPS)
                break;
            gc[g] = c;
            gn[g++] = 1;
        }
        pthread_mutex_lock(&d->q_lock);
        for (size_t k = 0; k < g; k++)
            chunk_back(d, gc[k], gn[k]);
        pthread_mutex_unlock(&d->q_lock);
    }
}

/* Bytes an entry holds in memory until it is indexed. */
static size_t entry_cost(const struct tc_item *it)
{
    return sizeof(jr_entry) +
           (it != NULL ? SEG_REC_HDR + item_klen(it) + item_vlen(it) : 64);
}

/* Queued bytes worth waking the writer for (half the bound on
 * unwritten bytes, JR_WAKE_BYTES at most). */
static size_t writer_wake_bytes(disk *d)
{
    size_t wake_at = atomic_load_explicit(&d->unwritten_max,
                                          memory_order_relaxed) / 2;
    return wake_at > JR_WAKE_BYTES ? JR_WAKE_BYTES : wake_at;
}

/* Whether half of queue_max waits for a sync: one is then due at once
 * (at queue_max the workers stop: disk_congested). */
static bool writer_sync_early(disk *d)
{
    return atomic_load_explicit(&d->unsynced, memory_order_relaxed) >
           d->cfg.queue_max / 2;
}

/* With q_lock held, after the queue grew: wakes the writer when it
 * sleeps with nothing to do, when someone waits for the record (waited),
 * when a batch is worth writing, or when an early sync is due; while it
 * waits for the next sync (async), records join the next batch and no
 * one wakes it: at most one wake per sleep, none per record. A writer
 * that sleeps while a sync runs looks for the early sync itself when
 * that sync ends; one that sleeps for flush_ms is woken for it. Before,
 * it was not: the workers could fill the queue to queue_max (and stop)
 * before half the bound on unwritten bytes waited, and stay stopped
 * until flush_ms was due (a CI run: a minute). */
static void writer_wake(disk *d, bool waited)
{
    if (!d->jr_sleeping)
        return;
    if (d->jr_idle || waited || d->cfg.durability == TC_DURABILITY_SYNC ||
        d->q_bytes >= writer_wake_bytes(d) ||
        (!d->jr_syncing && writer_sync_early(d))) {
        d->jr_sleeping = false;
        pthread_cond_signal(&d->q_cond);
    }
}

/* A change that found no memory for its record: it stays in memory only,
 * like a write the disk refused (counted and warned of). */
static void journal_no_memory(disk *d)
{
    atomic_fetch_add(&d->st_write_errors, 1);
    disk_warn(d, ENOMEM, "no memory to journal a change: it is kept in "
              "memory only");
}

uint64_t disk_log(disk *d, uint8_t type, struct tc_item *it, uint64_t h,
                  uint32_t exptime, bool scheduled, disk_wake_fn wake,
                  void *wake_arg)
{
    /* The record's reference to the item, taken before the queue is
     * locked: when the item's count is saturated it is a private copy
     * (item.c), which may find no memory, like the entry below. */
    struct tc_item *ref = it != NULL ? tc_item_ref(it) : NULL;
    pthread_mutex_lock(&d->q_lock);
    jr_entry *e = it == NULL || ref != NULL ? journal_entry_new(d) : NULL;
    uint64_t lsn = d->next_lsn++;
    if (e == NULL) {
        /* Out of memory for the entry or the copy: the change stays in
         * memory only, like a write the disk refused. */
        pthread_mutex_unlock(&d->q_lock);
        tc_item_release(ref);
        journal_no_memory(d);
        if (wake != NULL)
            wake(wake_arg, TC_ENOMEM);
        return lsn;
    }
    e->lsn = lsn;
    e->h = h;
    e->type = type;
    e->scheduled = scheduled;
    e->exptime = exptime;
    e->wake = wake;
    e->wake_arg = wake_arg;
    if (it != NULL) {
        e->item = ref;
        e->copy = ref != it;
        it->bits |= ITEM_PINNED;
        /* Read here, under the shard lock: gets change it later. */
        e->meta = it->meta & ITEM_M_PERSIST;
    }
    e->cost = entry_cost(it);
    bool was_empty = d->q_head == NULL;
    if (was_empty)
        d->q_head = e;
    else
        d->q_tail->next = e;
    d->q_tail = e;
    d->q_bytes += e->cost;
    atomic_fetch_add_explicit(&d->unindexed, e->cost, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->unsynced, e->cost, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->unwritten, e->cost, memory_order_relaxed);
    if (type == SEG_FLUSH && !scheduled)
        atomic_store(&d->flush_lsn, lsn);
    /* The key's latest entry, for disk_fold_begin. A flush ends every
     * fold: an immediate one empties memory after it is logged, so a set
     * racing with it finds no item to fold into or folds into a record
     * the flush then drops with the item (the set ordered before the
     * flush); ending the folds keeps to the simpler rule that a record
     * folded into is the latest of everything that concerns its key. */
    if (type == SEG_FLUSH) {
        d->q_fold_from = d->next_lsn;
    } else {
        /* Only a set no one waits for may be folded into; any other
         * record of the key ends its folds. */
        bool may = type == SEG_SET && wake == NULL;
        size_t slot = h & (JR_FOLD_SLOTS - 1);
        d->fold[slot] = (struct jr_fold){.e = e, .lsn = lsn, .cost = e->cost};
        __atomic_store_n(&d->fold_item[slot], may ? e->item : NULL,
                         __ATOMIC_RELAXED);
    }
    writer_wake(d, wake != NULL);
    pthread_mutex_unlock(&d->q_lock);
    return lsn;
}

struct jr_fold *disk_fold_begin(disk *d, uint64_t h,
                                const struct tc_item *it)
{
    /* The slot alone decides, without a look at the entry (a line most
     * likely out of the caches): it names the entry's item only while
     * the entry is the key's latest record, a set no one waits for (so
     * never under sync durability), and its lsn says whether the writer
     * has taken it. Records of this key are logged under its shard's
     * lock, which the caller holds: a slot that does not name it now
     * will not before that lock is let go, so the queue's lock is taken
     * only when it does (about half the sets of a skewed load). */
    size_t slot = h & (JR_FOLD_SLOTS - 1);
    if (__atomic_load_n(&d->fold_item[slot], __ATOMIC_RELAXED) != it)
        return NULL;
    pthread_mutex_lock(&d->q_lock);
    struct jr_fold *f = &d->fold[slot];
    if (d->fold_item[slot] == it && f->lsn >= d->q_fold_from)
        return f; /* q_lock held until disk_fold_end */
    pthread_mutex_unlock(&d->q_lock);
    return NULL;
}

void disk_fold_end(disk *d, struct jr_fold *f, struct tc_item *it)
{
    jr_entry *e = f->e;
    const struct tc_item **item = &d->fold_item[f - d->fold];
    struct tc_item *was = NULL;
    if (it != *item) {
        /* A new item, whose count cannot be saturated yet: the copy
         * tc_item_ref makes then, and its failure, are not expected. If
         * it fails all the same, the record keeps the value it had, and
         * the change stays in memory only (as in disk_log). */
        struct tc_item *ref = tc_item_ref(it);
        if (ref == NULL) {
            __atomic_store_n(item, NULL, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&d->q_lock);
            journal_no_memory(d);
            return;
        }
        was = e->item;
        e->item = ref;
        e->copy = ref != it;
        it->bits |= ITEM_PINNED;
        __atomic_store_n(item, ref, __ATOMIC_RELAXED);
    }
    e->meta = it->meta & ITEM_M_PERSIST;
    size_t cost = entry_cost(it), old = f->cost;
    e->cost = f->cost = cost;
    if (cost != old) {
        /* Unsigned: adding the difference modulo SIZE_MAX + 1 takes a
         * shorter value's bytes off as well. */
        size_t delta = cost - old;
        d->q_bytes += delta;
        atomic_fetch_add_explicit(&d->unindexed, delta, memory_order_relaxed);
        atomic_fetch_add_explicit(&d->unsynced, delta, memory_order_relaxed);
        atomic_fetch_add_explicit(&d->unwritten, delta, memory_order_relaxed);
        if (cost > old) /* a longer value: as if a record came */
            writer_wake(d, false);
    }
    atomic_fetch_add_explicit(&d->st_journal_folded, 1,
                              memory_order_relaxed);
    pthread_mutex_unlock(&d->q_lock);
    if (was != NULL)
        tc_item_release(was);
}

void disk_fold_cancel(disk *d)
{
    pthread_mutex_unlock(&d->q_lock);
}

uint64_t disk_flush_lsn(disk *d)
{
    return atomic_load(&d->flush_lsn);
}

bool disk_congested(disk *d)
{
    if (atomic_load_explicit(&d->unwritten, memory_order_relaxed) >
        atomic_load_explicit(&d->unwritten_max, memory_order_relaxed)) {
        if (!atomic_load_explicit(&d->held_back, memory_order_relaxed))
            atomic_store_explicit(&d->held_back, true, memory_order_relaxed);
        return true;
    }
    return atomic_load_explicit(&d->unsynced, memory_order_relaxed) >
               d->cfg.queue_max ||
           atomic_load_explicit(&d->unindexed, memory_order_relaxed) >
               d->cfg.index_max;
}

tc_durability disk_durability(const disk *d)
{
    return d->cfg.durability;
}

/* ---- superseded entries ---- */

struct jr_slot {
    uint32_t h; /* 32 bits of the hash: the keys are compared anyway */
    uint32_t i; /* entry index + 1, 0 = free */
    /* The entry's item, whose key a later look compares: read from
     * here, not through the entry (the array of entries, the entry and
     * the item were three misses in a row, the most of this function's
     * time in the index writer). */
    const struct tc_item *it;
};

void jr_dedup_free(jr_dedup *t)
{
    vm_resize(t->slot, t->cap * sizeof(*t->slot), 0);
    t->slot = NULL;
    t->cap = 0;
}

void jr_supersede(jr_dedup *t, jr_entry *const *ents, size_t n, bool *skip,
                  bool written)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    for (size_t i = 0; i < n; i++)
        skip[i] = ents[i]->coalesced;
    if (cap > t->cap) {
        struct jr_slot *v = vm_resize(t->slot, t->cap * sizeof(*v),
                                      cap * sizeof(*v));
        if (v == NULL)
            return;
        t->slot = v;
        t->cap = cap;
    }
    /* Only its first cap slots serve this batch (the table grows, and
     * shrinks only with jr_dedup_free). */
    struct jr_slot *slot = t->slot;
    memset(slot, 0, cap * sizeof(*slot));
    for (size_t i = n; i-- > 0;) {
        if (i >= 8) {
            /* Its slot, and its item: most keys of a skewed batch are
             * found, and then the keys are compared. */
            __builtin_prefetch(&slot[ents[i - 8]->h & (cap - 1)], 1);
            if (ents[i - 8]->item != NULL)
                __builtin_prefetch(ents[i - 8]->item);
        }
        if (i >= 4) {
            /* Half way there, its slot has come: the item of the entry
             * found there, whose key it will be compared with. */
            uint64_t h4 = ents[i - 4]->h;
            const struct jr_slot *s4 = &slot[h4 & (cap - 1)];
            if (s4->i != 0 && s4->h == (uint32_t)(h4 >> 32))
                __builtin_prefetch(s4->it);
        }
        const jr_entry *e = ents[i];
        const struct tc_item *it = e->item;
        if (it == NULL || e->coalesced)
            continue; /* FLUSH; or not written, deciding nothing */
        size_t p = (size_t)e->h & (cap - 1);
        for (; slot[p].i != 0; p = (p + 1) & (cap - 1)) {
            if (slot[p].h != (uint32_t)(e->h >> 32))
                continue;
            const struct tc_item *o = slot[p].it;
            if (item_klen(o) == item_klen(it) &&
                memcmp(item_key(o), item_key(it), item_klen(it)) == 0)
                break;
        }
        if (slot[p].i != 0)
            skip[i] = true;
        else if ((written && e->seg == 0) || e->type == SEG_SET ||
                 e->type == SEG_DELETE)
            slot[p] = (struct jr_slot){(uint32_t)(e->h >> 32),
                                       (uint32_t)(i + 1), it};
    }
}

/* ---- the writer ---- */

/* Room for need bytes in wbuf, and for the zeros that fill a direct
 * write's last block. The buffer is aligned to a block, as direct writes
 * want their memory. */
static bool wbuf_reserve(disk *d, size_t need)
{
    need += JR_BLOCK;
    if (need <= d->wbuf_cap)
        return true;
    size_t cap = d->wbuf_cap < 65536 ? 65536 : d->wbuf_cap;
    while (cap < need)
        cap *= 2;
    void *b;
    if (posix_memalign(&b, JR_BLOCK, cap) != 0)
        return false;
    if (d->wbuf != NULL)
        memcpy(b, d->wbuf, d->wbuf_cap);
    free(d->wbuf);
    d->wbuf = b;
    d->wbuf_cap = cap;
    return true;
}

static void writer_sync_done(disk *d, io_op *op);
static void writer_sync_end(disk *d);

/* Runs op and waits for it; a sync under way that ends meanwhile is
 * handed on (writer_sync_done). */
static int64_t writer_io(disk *d, io_op *op)
{
    if (io_submit(d->wq, op) != TC_OK)
        return -EBUSY;
    for (;;) {
        io_op *done;
        if (io_reap(d->wq, &done, 1, 1, -1) == 0)
            continue;
        if (done == op)
            return done->res;
        writer_sync_done(d, done);
    }
}

static void fsync_record(disk *d, uint64_t us)
{
    atomic_fetch_add(&d->st_fsyncs, 1);
    atomic_fetch_add(&d->st_fsync_us_total, us);
    uint64_t max = atomic_load(&d->st_fsync_us_max);
    while (us > max && !atomic_compare_exchange_weak(&d->st_fsync_us_max,
                                                     &max, us))
        ;
    unsigned b = 0;
    while ((us >> b) > 1 && b < 63)
        b++;
    /* Only the writer writes the histogram; stats read it racily. */
    __atomic_fetch_add(&d->fsync_hist[b], 1, __ATOMIC_RELAXED);
}

/* fdatasync of the current segment (and of a previous one still dirty). */
static int writer_sync(disk *d, int extra_fd)
{
    int fds[2] = {extra_fd, d->cur_fd};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 0 || (i == 0 && fds[0] == fds[1]))
            continue;
        io_op op;
        io_prep_fdatasync(&op, fds[i]);
        uint64_t t0 = disk_now_us();
        if (d->jw_sync_left == 0) /* else the one under way began sooner */
            atomic_store(&d->sync_since, t0);
        int64_t r = writer_io(d, &op);
        atomic_store(&d->sync_since, d->jw_sync_left > 0 ? d->jw_sync_t0 : 0);
        fsync_record(d, disk_now_us() - t0);
        if (r < 0)
            rc = (int)r;
    }
    return rc;
}

/* Direct writes stop for good (err: why, 0 at close). */
static void writer_direct_off(disk *d, int err)
{
    if (d->jw_dfd >= 0)
        io_file_close(d->jw_dfd);
    d->jw_dfd = -1;
    d->jw_carry = 0;
    if (err != 0 && d->jw_direct)
        disk_warn(d, -err, "direct writes to the journal failed; "
                           "writing through the page cache");
    d->jw_direct = false;
}

/* Whether the current segment is written with O_DIRECT from here on: in
 * auto mode, when the records written lately average JR_DIRECT_MIN
 * bytes or more, decided once per segment (at the first piece this
 * process writes to it; the first segment after a start is written
 * through the page cache, as the average is not known yet). */
static bool writer_wants_direct(const disk *d)
{
    if (!d->jw_direct)
        return false;
    if (d->cfg.direct_writes == TC_DIRECT_ON)
        return true;
    return d->jw_rec_avg >= JR_DIRECT_MIN;
}

/* Where the next piece's bytes go in wbuf: after the bytes of the block
 * before cur_off when the segment is written with O_DIRECT (opened for
 * it, and those bytes read, at its first piece of this process), else
 * at its start. */
static size_t writer_piece_base(disk *d)
{
    if (d->jw_dfd >= 0)
        return d->jw_carry;
    if (d->jw_seg_decided)
        return 0;
    d->jw_seg_decided = true;
    if (!writer_wants_direct(d))
        return 0;
    char name[32];
    seg_name(d->cur_seg, name);
    int fd = io_file_open(d->dirfd, name, O_WRONLY | O_DIRECT, 0);
    if (fd < 0) {
        writer_direct_off(d, fd);
        return 0;
    }
    size_t c = (size_t)(d->cur_off & (JR_BLOCK - 1));
    if (!wbuf_reserve(d, c)) {
        io_file_close(fd);
        return 0; /* this segment through the page cache */
    }
    if (c > 0) {
        io_op op;
        io_prep_read(&op, d->cur_fd, d->wbuf, c, d->cur_off - c);
        int64_t r = writer_io(d, &op);
        if (r != (int64_t)c) {
            io_file_close(fd);
            writer_direct_off(d, r < 0 ? (int)r : -EIO);
            return 0;
        }
    }
    disk_seg_set_direct(d, d->cur_seg);
    atomic_fetch_add_explicit(&d->st_direct_segs, 1, memory_order_relaxed);
    d->jw_dfd = fd;
    d->jw_carry = c;
    return c;
}

/* Writes a piece of total bytes at off of the current segment: the n
 * bytes of wbuf, with the values of d->jw_parts between them (writev),
 * and forgets the parts. */
static int writer_write(disk *d, size_t n, size_t total, uint64_t off)
{
    if (total == 0)
        return 0;
    io_op op;
    size_t carry = d->jw_carry;
    if (d->jw_dfd >= 0) {
        /* wbuf holds the block before off (carry bytes) and the piece;
         * the write ends with the rest of its last block, zeros */
        size_t len = (n + JR_BLOCK - 1) & ~(size_t)(JR_BLOCK - 1);
        memset(d->wbuf + n, 0, len - n);
        io_prep_write(&op, d->jw_dfd, d->wbuf, len, off - carry);
    } else if (d->jw_nparts == 0) {
        io_prep_write(&op, d->cur_fd, d->wbuf, n, off);
    } else {
        int k = 0;
        size_t from = 0;
        for (size_t i = 0; i < d->jw_nparts; i++) {
            const struct jr_part *p = &d->jw_parts[i];
            if (p->wend > from)
                d->jw_iov[k++] = (struct iovec){d->wbuf + from, p->wend - from};
            d->jw_iov[k++] = (struct iovec){(void *)(uintptr_t)p->val, p->vlen};
            from = p->wend;
        }
        if (n > from)
            d->jw_iov[k++] = (struct iovec){d->wbuf + from, n - from};
        io_prep_writev(&op, d->cur_fd, d->jw_iov, k, off);
        d->jw_nparts = 0;
    }
    uint64_t t0 = disk_now_ns();
    int64_t r = writer_io(d, &op);
    if (r == -EINVAL && d->jw_dfd >= 0) {
        /* the file system took the O_DIRECT open but not the write:
         * buffered writes from now on */
        writer_direct_off(d, -EINVAL);
        io_prep_write(&op, d->cur_fd, d->wbuf + carry, n - carry, off);
        r = writer_io(d, &op);
    }
    d->wr_ns += disk_now_ns() - t0;
    d->wr_bytes += total;
    if (r < 0 && d->jw_dfd >= 0) {
        /* The block to carry is no longer known (the batch moves
         * cur_off past the piece all the same): the rest of this
         * segment goes through the page cache. */
        io_file_close(d->jw_dfd);
        d->jw_dfd = -1;
        d->jw_carry = 0;
    }
    if (r < 0)
        return (int)r;
    if (d->jw_dfd >= 0) {
        /* the piece's last block, up to its end, starts the next write */
        size_t c = (size_t)((off + total) & (JR_BLOCK - 1));
        memmove(d->wbuf, d->wbuf + n - c, c);
        d->jw_carry = c;
    }
    atomic_fetch_add(&d->st_journal_bytes, (uint64_t)total);
    return 0;
}

static void writer_finish(disk *d, jr_entry *head, int rc);

/* Entries written, head to tail (rc: the first of their writes that
 * failed, or 0): counted, and kept for the next sync (handed on at once
 * with NONE, which makes none). */
static void writer_written(disk *d, jr_entry *head, jr_entry *tail, int rc)
{
    uint64_t n = 0, coalesced = 0, cost = 0;
    uint64_t max_cas = atomic_load_explicit(&d->jw_max_cas,
                                            memory_order_relaxed);
    for (jr_entry *e = head; e != NULL; e = e->next) {
        n += !e->coalesced;
        coalesced += e->coalesced;
        cost += e->cost;
        if (e->item != NULL && e->item->cas > max_cas)
            max_cas = e->item->cas;
    }
    atomic_store(&d->jw_max_cas, max_cas);
    atomic_fetch_sub(&d->unwritten, (size_t)cost);
    d->jw_cost += cost;
    if (rc != 0) {
        atomic_store(&d->st_last_errno, -rc);
        disk_warn(d, -rc, "journal write to segment %" PRIu64
                  " failed; the changes not written (of %" PRIu64
                  ") are kept in memory only", d->cur_seg, n);
    }
    atomic_fetch_add(&d->st_journal_records, n);
    atomic_fetch_add(&d->st_journal_coalesced, coalesced);
    if (d->cfg.durability == TC_DURABILITY_NONE) {
        writer_finish(d, head, rc);
        return;
    }
    if (d->jw_written_tail != NULL)
        d->jw_written_tail->next = head;
    else
        d->jw_written = head;
    d->jw_written_tail = tail;
    if (rc != 0)
        d->jw_written_rc = rc;
}

/* An fdatasync of the sync under way is done (op, one of jw_sync_op);
 * after the last, the records it covers are handed on. */
static void writer_sync_done(disk *d, io_op *op)
{
    if (op->res < 0 && d->jw_sync_rc == 0)
        d->jw_sync_rc = (int)op->res;
    fsync_record(d, disk_now_us() - d->jw_sync_t0);
    if (--d->jw_sync_left == 0)
        writer_sync_end(d);
}

/* The sync under way has ended: its records are handed on. */
static void writer_sync_end(disk *d)
{
    atomic_store(&d->sync_since, 0);
    int rc = d->jw_sync_rc;
    if (rc != 0) {
        atomic_store(&d->st_last_errno, -rc);
        disk_warn(d, -rc, "journal fdatasync failed; the changes "
                  "since the last one are kept in memory only");
    }
    jr_entry *head = d->jw_syncing;
    d->jw_syncing = NULL;
    writer_finish(d, head, d->jw_syncing_rc != 0 ? d->jw_syncing_rc : rc);
}

/* Waits for the end of the sync under way, if one is. */
static void writer_sync_wait(disk *d)
{
    while (d->jw_sync_left > 0) {
        io_op *done;
        if (io_reap(d->wq, &done, 1, 1, -1) == 1)
            writer_sync_done(d, done);
    }
}

/* Hands on the sync under way if it has ended, without waiting. */
static void writer_sync_poll(disk *d)
{
    io_op *done[2];
    if (d->jw_sync_left == 0)
        return;
    unsigned n = io_reap(d->wq, done, 2, 0, 0);
    for (unsigned i = 0; i < n; i++)
        writer_sync_done(d, done[i]);
}

/* Starts a sync of what was written (of the current segment, and of a
 * previous one still dirty), once the one under way has ended: what is
 * written from now on waits for the next. With ASYNC the writer goes on
 * writing while it runs, and its records are handed on when it ends
 * (writer_sync_poll, writer_io, writer_sync_wait). Before, the writer
 * waited for each fdatasync, and under 4 KiB sets that was a third of
 * its time (20 ms each, the page cache's dirty data reaching the disk),
 * in which the bound on unwritten bytes filled and the workers stopped
 * reading (bench/RESULTS.md). */
static void writer_sync_start(disk *d)
{
    writer_sync_wait(d);
    if (d->jw_written == NULL)
        return;
    d->jw_syncing = d->jw_written;
    d->jw_syncing_rc = d->jw_written_rc;
    d->jw_written = d->jw_written_tail = NULL;
    d->jw_written_rc = 0;
    int fds[2] = {d->jw_extra_fd, d->cur_fd};
    d->jw_extra_fd = -1;
    d->jw_sync_rc = 0;
    d->jw_sync_t0 = disk_now_us();
    d->jw_last_sync = d->jw_sync_t0;
    atomic_store(&d->sync_since, d->jw_sync_t0);
    unsigned n = 0;
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 0 || (i == 0 && fds[0] == fds[1]))
            continue;
        io_prep_fdatasync(&d->jw_sync_op[n], fds[i]);
        if (io_submit(d->wq, &d->jw_sync_op[n]) == TC_OK)
            n++;
        else if (d->jw_sync_rc == 0)
            d->jw_sync_rc = -EBUSY;
    }
    d->jw_sync_left = n;
    if (n == 0)
        writer_sync_end(d); /* none could be started (or no file yet) */
    else
        io_flush(d->wq);
}

/* Syncs what was written and hands it on, and waits for that. */
static void writer_sync_written(disk *d)
{
    writer_sync_start(d);
    writer_sync_wait(d);
}

/* Moves to a new segment after the current one, for the record of LSN
 * lsn. Waits (a second at most) for reclaim to make room within the
 * budget first, so that the directory outgrows disk_size by one segment
 * at most; but not for a reclaim that waits for this record or a later
 * one (its rescues): it cannot end before they are written. */
static int writer_next_segment(disk *d, uint64_t lsn)
{
    int fd;
    for (int i = 0; i < 100 && disk_usage(d) > d->cfg.disk_size &&
                    atomic_load(&d->rc_drain_lsn) < lsn;
         i++) {
        /* A drain waits for its rescues to be indexed, and they reach
         * the index writer only once this writer has synced them: those
         * of earlier batches are synced now, and for those of this batch
         * (not all written yet) waiting is no use. Before, the wait
         * lasted its whole second and the workers stopped meanwhile
         * (4 KiB sets: 9 s of every 17). */
        uint64_t drain = atomic_load(&d->rc_drain_lsn);
        if (drain > atomic_load(&d->st_durable_lsn)) {
            if (drain >= d->jw_batch_lsn)
                break;
            if (d->jw_written != NULL || d->jw_sync_left > 0)
                writer_sync_written(d);
        }
        pthread_mutex_lock(&d->ix_lock);
        d->ix_hurry = true; /* reclaiming waits for its next commit */
        pthread_cond_signal(&d->ix_cond);
        pthread_mutex_unlock(&d->ix_lock);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        if (i == 99)
            atomic_fetch_add(&d->st_room_timeouts, 1);
    }
    if (disk_usage(d) > d->cfg.disk_size)
        atomic_fetch_add(&d->st_over_budget, 1);
    tc_status st = disk_seg_create(d, d->wq, d->cur_seg + 1, &fd,
                                   writer_sync_done);
    if (st != TC_OK)
        return st == TC_ENOSPC ? -ENOSPC : -EIO;
    d->cur_seg++;
    d->cur_fd = fd;
    d->cur_off = SEG_HDR_SIZE;
    if (d->jw_dfd >= 0)
        io_file_close(d->jw_dfd);
    d->jw_dfd = -1; /* the new one's first piece decides (writer_piece_base) */
    d->jw_carry = 0;
    d->jw_seg_decided = false;
    return 0;
}

_Atomic bool journal_sync_soon_off;
_Atomic bool journal_held;

void journal_sync_soon(disk *d, uint64_t lsn)
{
    if (atomic_load_explicit(&journal_sync_soon_off, memory_order_relaxed))
        return;
    pthread_mutex_lock(&d->q_lock);
    if (lsn > atomic_load(&d->sync_for_lsn))
        atomic_store(&d->sync_for_lsn, lsn);
    pthread_cond_signal(&d->q_cond);
    pthread_mutex_unlock(&d->q_lock);
}

/* Whether a drain waits for records this writer has written and not
 * synced (journal_sync_soon). */
static bool writer_sync_wanted(disk *d)
{
    return d->jw_written != NULL && atomic_load(&d->sync_for_lsn) >
                                        atomic_load(&d->st_durable_lsn);
}

bool journal_zc_pays(uint64_t zc_ns, uint64_t zc_in, uint64_t zc_saved,
                     uint64_t wr_ns, uint64_t wr_bytes)
{
    if (zc_in == 0 || wr_bytes == 0)
        return true;
    /* Per byte in: compressing costs zc_ns / zc_in, and spares writing
     * zc_saved / zc_in of a byte, at wr_ns / wr_bytes each. */
    return (double)zc_ns * (double)wr_bytes <
           (double)wr_ns * (double)zc_saved;
}

/* The value bytes of a record: the item's, compressed when it pays. */
static const unsigned char *record_value(disk *d, jr_entry *e, seg_rec *r,
                                         unsigned char **scratch,
                                         size_t *scratch_cap,
                                         uint64_t *hurried)
{
    struct tc_item *it = e->item;
    size_t vlen = item_vlen(it);
    const unsigned char *v = (const unsigned char *)item_value(it);
    r->codec = SEG_RAW;
    r->stored_len = r->raw_len = (uint32_t)vlen;
    if (d->wz == NULL || vlen < d->cfg.compress_min)
        return v;
    /* One in JR_ZC_SAMPLE is still tried, to keep journal_zc_pays's
     * figures current. */
    if (d->zc_hurry && ++d->zc_hurried % JR_ZC_SAMPLE != 0) {
        (*hurried)++;
        return v;
    }
    if (d->zc_misses >= JR_ZC_MISSES) {
        if (++d->zc_skipped < d->zc_every)
            return v;
        d->zc_skipped = 0;
    }
    size_t bound = zc_bound(vlen);
    if (bound > *scratch_cap) {
        unsigned char *s = realloc(*scratch, bound);
        if (s == NULL)
            return v;
        *scratch = s;
        *scratch_cap = bound;
    }
    size_t out_len;
    uint64_t t0 = disk_now_ns();
    int codec = zc_compress(d->wz, v, vlen, *scratch, bound, &out_len);
    d->zc_ns += disk_now_ns() - t0;
    d->zc_in += vlen;
    if (codec != ZC_ZSTD) {
        if (d->zc_misses < JR_ZC_MISSES) {
            if (++d->zc_misses == JR_ZC_MISSES)
                d->zc_every = JR_ZC_SAMPLE;
        } else if (d->zc_every < JR_ZC_SAMPLE_MAX) {
            d->zc_every *= 2;
        }
        return v;
    }
    d->zc_saved += vlen - out_len;
    d->zc_misses = 0;
    r->codec = SEG_ZSTD;
    r->stored_len = (uint32_t)out_len;
    return *scratch;
}

/* Whether values may be written from their items: the arrays for it are
 * allocated at the first use (out of memory, values are copied). */
static bool jw_parts_ready(disk *d)
{
    if (d->jw_parts == NULL) {
        d->jw_parts = malloc(JR_PARTS * sizeof(*d->jw_parts));
        d->jw_iov = malloc((2 * JR_PARTS + 1) * sizeof(*d->jw_iov));
        if (d->jw_parts == NULL || d->jw_iov == NULL) {
            free(d->jw_parts);
            free(d->jw_iov);
            d->jw_parts = NULL;
            d->jw_iov = NULL;
            return false;
        }
    }
    return true;
}

/*
 * Encodes and writes a batch, and hands it on (writer_written). A failed
 * write fails the entries from it on (seg 0).
 */
static void writer_write_batch(disk *d, jr_entry *batch)
{
    static const unsigned char no_key[1] = {0};
    unsigned char *scratch = NULL;
    /* used: bytes in wbuf; piece: bytes of the piece, its values written
     * from their items included. */
    size_t scratch_cap = 0, used = writer_piece_base(d), piece = 0;
    uint64_t start = d->cur_off, raw = 0, stored = 0, hurried = 0, nrec = 0;
    int rc = 0;
    /* The items were written by the workers long enough ago to have left
     * the caches: each is asked for this many entries ahead (the header
     * and key, and the value's first lines), not waited for in turn. */
    enum { AHEAD = 8 };
    jr_entry *ahead = batch;
    for (int k = 0; k < AHEAD && ahead != NULL; k++)
        ahead = ahead->next;

    jr_entry *tail = NULL;
    d->jw_batch_lsn = batch->lsn;
    for (jr_entry *e = batch; e != NULL; e = e->next) {
        tail = e;
        if (ahead != NULL) {
            if (ahead->item != NULL && !ahead->coalesced) {
                const char *p = (const char *)ahead->item;
                __builtin_prefetch(p);
                __builtin_prefetch(p + 64);
                __builtin_prefetch(p + 128);
            }
            ahead = ahead->next;
        }
        /* and the whole of the next item, read by the CRC after this one
         * (its header came AHEAD entries ago) */
        jr_entry *n = e->next;
        if (n != NULL && n->item != NULL && !n->coalesced) {
            const char *p = (const char *)n->item;
            size_t len = item_total(n->item);
            for (size_t at = 192; at < len && at < JR_PREFETCH_MAX; at += 64)
                __builtin_prefetch(p + at);
        }
        if (e->coalesced)
            continue;
        seg_rec r = {0};
        const unsigned char *key = no_key, *val = NULL;
        r.lsn = e->lsn;
        r.type = e->type;
        if (e->item != NULL) {
            key = (const unsigned char *)item_key(e->item);
            r.klen = (uint8_t)item_klen(e->item);
            r.flags = e->item->flags;
            r.cas = e->item->cas;
            r.meta = e->meta;
            r.exptime = e->type == SEG_TOUCH ? e->exptime
                                             : item_exptime(e->item);
        } else {
            r.exptime = e->exptime;
            r.flags = e->scheduled ? 1 : 0;
        }
        if (e->type == SEG_SET)
            val = record_value(d, e, &r, &scratch, &scratch_cap, &hurried);
        size_t size = seg_rec_size(r.klen, r.stored_len);
        bool by_ref = val != NULL && r.codec == SEG_RAW &&
                      r.stored_len >= JR_IOV_MIN && jw_parts_ready(d);
        if (rc == 0 && d->cur_off + piece + size > d->cfg.segment_size) {
            rc = writer_write(d, used, piece, start);
            if (rc == 0) {
                if (d->jw_extra_fd >= 0 && d->jw_extra_fd != d->cur_fd)
                    rc = writer_sync(d, d->jw_extra_fd); /* one pending */
                d->jw_extra_fd = d->cur_fd;
                if (rc == 0)
                    rc = writer_next_segment(d, e->lsn);
            }
            piece = 0;
            used = rc == 0 ? writer_piece_base(d) : 0;
            start = d->cur_off;
        } else if (rc == 0 && piece > 0 &&
                   (piece + size > JR_WBUF_MAX ||
                    (by_ref && d->jw_nparts == JR_PARTS))) {
            /* A large batch goes out in pieces: the buffer stays small. */
            rc = writer_write(d, used, piece, start);
            d->cur_off = start + piece;
            used = d->jw_carry;
            piece = 0;
            start = d->cur_off;
        }
        if (d->jw_dfd >= 0)
            by_ref = false; /* written directly: every byte from wbuf */
        size_t in_buf = by_ref ? size - r.stored_len : size;
        if (rc == 0 && !wbuf_reserve(d, used + in_buf))
            rc = -ENOMEM;
        if (rc != 0) {
            e->seg = 0; /* not written */
            continue;
        }
        if (by_ref) {
            size_t head = seg_rec_encode_head(d->wbuf + used, &r, key, val);
            d->jw_parts[d->jw_nparts++] =
                (struct jr_part){used + head, val, r.stored_len};
            memset(d->wbuf + used + head, 0, in_buf - head); /* padding */
        } else {
            seg_rec_encode(d->wbuf + used, &r, key, val);
        }
        e->seg = d->cur_seg;
        e->off = (uint32_t)(d->cur_off + piece);
        e->len = (uint32_t)size;
        e->codec = r.codec;
        used += in_buf;
        piece += size;
        raw += r.raw_len;
        stored += r.stored_len;
        nrec++;
    }
    atomic_fetch_add_explicit(&d->st_raw_bytes, raw, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->st_stored_bytes, stored,
                              memory_order_relaxed);
    if (nrec > 0) { /* a batch counts for a quarter */
        uint64_t avg = stored / nrec;
        d->jw_rec_avg = d->jw_rec_avg == 0 ? avg
                                           : (3 * d->jw_rec_avg + avg) / 4;
    }
    if (hurried != 0)
        atomic_fetch_add_explicit(&d->st_raw_hurried, hurried,
                                  memory_order_relaxed);
    if (rc == 0)
        rc = writer_write(d, used, piece, start);
    if (rc == 0)
        d->cur_off = start + piece;
    if (rc != 0 && d->jw_dfd >= 0) {
        /* The carried block may hold bytes of a piece written after
         * cur_off (a segment switch that failed after its write): the
         * next batch decides again, and reads the block at cur_off. */
        io_file_close(d->jw_dfd);
        d->jw_dfd = -1;
        d->jw_carry = 0;
        d->jw_seg_decided = false;
    }
    d->jw_nparts = 0; /* a failed batch leaves some */
    free(scratch);
    writer_written(d, batch, tail, rc);
}

/* Marks the entries of a batch that a later entry of their key in it
 * replaces (jr_supersede): they are not written, and the index writer
 * skips them. Under a skewed load this is a large part of a batch (about
 * 40% of batches of 5000 sets under Zipf 0.99), and whatever is not
 * written costs nothing more: no compression, no journal bytes, no
 * segment space to reclaim later. What a crash can lose does not change:
 * an entry and the one replacing it become durable with the same
 * fdatasync. Out of memory, none is marked. */
static void writer_coalesce(disk *d, jr_entry *batch)
{
    size_t n = 0;
    for (jr_entry *e = batch; e != NULL; e = e->next)
        n++;
    if (n > d->jw_cap) {
        size_t cap = d->jw_cap < 1024 ? 1024 : d->jw_cap;
        while (cap < n)
            cap *= 2;
        jr_entry **ents = realloc(d->jw_ents, cap * sizeof(*ents));
        if (ents == NULL)
            return;
        d->jw_ents = ents;
        bool *skip = realloc(d->jw_skip, cap * sizeof(*skip));
        if (skip == NULL)
            return;
        d->jw_skip = skip;
        d->jw_cap = cap;
    }
    n = 0;
    for (jr_entry *e = batch; e != NULL; e = e->next)
        d->jw_ents[n++] = e;
    jr_supersede(&d->jw_dedup, d->jw_ents, n, d->jw_skip, false);
    for (size_t i = 0; i < n; i++)
        d->jw_ents[i]->coalesced = d->jw_skip[i];
}

/* Entries done with the journal: wakes their waiters and hands them all
 * to the index writer, the failed ones marked (seg 0): it takes their
 * keys out of the index, so that once their items leave memory no older
 * value of theirs can be read back from disk. */
static void writer_finish(disk *d, jr_entry *head, int rc)
{
    jr_entry *tail = NULL;
    size_t cost = 0;
    for (jr_entry *e = head; e != NULL; e = e->next) {
        cost += e->cost;
        if (rc != 0)
            e->seg = 0;
        /* A coalesced entry shares the fate of the batch it was in: the
         * entry that replaced it was written with it, or rc says not. */
        bool failed = e->coalesced ? rc != 0 : e->seg == 0;
        if (failed && !e->coalesced)
            atomic_fetch_add(&d->st_write_errors, 1);
        else if (!failed && e->lsn > atomic_load(&d->st_durable_lsn))
            atomic_store(&d->st_durable_lsn, e->lsn); /* the writer's */
        if (e->wake != NULL)
            e->wake(e->wake_arg, failed ? TC_EIO : TC_OK);
        e->wake = NULL;
        tail = e;
    }
    atomic_fetch_sub(&d->unsynced, cost);
    if (head != NULL)
        indexer_push(d, head, tail);
}

/* Adds bytes written in us of busy time to the writer's rate; a full
 * sample moves the rate and the bound on unwritten bytes. */
static void writer_rate(disk *d, uint64_t bytes, uint64_t us)
{
    d->jw_rate_bytes += bytes;
    d->jw_rate_us += us;
    if (d->jw_rate_us < JR_RATE_US || d->jw_rate_bytes < JR_RATE_BYTES)
        return;
    uint64_t sample = d->jw_rate_bytes * 1000000u / d->jw_rate_us;
    d->jw_rate_bytes = d->jw_rate_us = 0;
    uint64_t rate = atomic_load_explicit(&d->jw_rate, memory_order_relaxed);
    rate = rate == 0 ? sample : rate - rate / 4 + sample / 4;
    atomic_store(&d->jw_rate, rate);
    if (d->cfg.durability == TC_DURABILITY_SYNC)
        return;
    /* flush_ms is not capped in the library: no overflow for any. */
    uint64_t max = rate > UINT64_MAX / d->cfg.flush_ms
                       ? UINT64_MAX
                       : rate * d->cfg.flush_ms / 2000u;
    if (max > d->cfg.queue_max)
        max = d->cfg.queue_max;
    if (max > d->cfg.segment_size / 2)
        max = d->cfg.segment_size / 2;
    if (max < JR_UNWRITTEN_MIN)
        max = JR_UNWRITTEN_MIN;
    atomic_store(&d->unwritten_max, (size_t)max);
}

/* Halves the figures journal_zc_pays weighs once they span more than
 * JR_COST_BYTES, so that they follow the latest writes. */
static void writer_costs_age(disk *d)
{
    if (d->wr_bytes > JR_COST_BYTES) {
        d->wr_ns /= 2;
        d->wr_bytes /= 2;
    }
    if (d->zc_in > JR_COST_BYTES) {
        d->zc_ns /= 2;
        d->zc_in /= 2;
        d->zc_saved /= 2;
    }
}

static void *writer_main(void *arg)
{
    disk *d = arg;
    const uint64_t period = (uint64_t)d->cfg.flush_ms * 1000u;

    d->jw_extra_fd = -1;
    d->jw_dfd = -1;
    d->jw_carry = 0;
    d->jw_seg_decided = false;
    d->jw_rec_avg = 0;
    d->jw_direct = d->cfg.direct_writes != TC_DIRECT_OFF &&
                   d->cfg.segment_size % JR_BLOCK == 0;
    d->jw_last_sync = disk_now_us();
    for (;;) {
        pthread_mutex_lock(&d->q_lock);
        /* While a sync runs, what arrives waits for its end (it could
         * not be synced sooner: the next sync starts after it), as it
         * did when the writer waited for each sync, and joins one
         * batch, so that later sets of its keys fold into it; unless
         * so much waits that the workers would soon stop (writer_wake's
         * measure) or the writer is woken for it. The sync's end comes
         * on d->wq, not on q_cond: it is looked for every millisecond. */
        bool woken = false;
        while (!d->stopping) {
            bool syncing = false;
            if (d->jw_sync_left > 0) {
                pthread_mutex_unlock(&d->q_lock);
                writer_sync_poll(d);
                pthread_mutex_lock(&d->q_lock);
                syncing = d->jw_sync_left > 0;
            }
            bool held = atomic_load_explicit(&journal_held,
                                             memory_order_relaxed);
            if (d->q_head != NULL && !held &&
                (!syncing || woken || d->q_bytes >= writer_wake_bytes(d)))
                break;
            uint64_t wait_ms = syncing || held ? 1 : JR_WAIT_IDLE_MS;
            if (d->jw_written != NULL && !syncing) {
                uint64_t due = d->jw_last_sync + period, now = disk_now_us();
                if (due <= now || writer_sync_wanted(d) ||
                    writer_sync_early(d))
                    break;
                wait_ms = (due - now + 999) / 1000;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait_ms / 1000);
            ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            d->jr_idle = d->jw_written == NULL && !syncing;
            d->jr_syncing = syncing;
            d->jr_sleeping = true;
            pthread_cond_timedwait(&d->q_cond, &d->q_lock, &ts);
            woken = !d->jr_sleeping; /* writer_wake's signal */
            d->jr_sleeping = d->jr_idle = d->jr_syncing = false;
        }
        /* A sync due ends the wait of a held writer too: it takes no
         * batch then, unless the engine is stopping. */
        bool hold = !d->stopping &&
                    atomic_load_explicit(&journal_held, memory_order_relaxed);
        jr_entry *batch = hold ? NULL : d->q_head;
        bool behind = atomic_exchange_explicit(&d->held_back, false,
                                               memory_order_relaxed);
        if (behind)
            atomic_fetch_add_explicit(&d->st_writer_behind, 1,
                                      memory_order_relaxed);
        uint64_t taken = disk_now_ns();
        if (behind)
            d->zc_behind_ns = taken;
        d->zc_hurry = d->zc_behind_ns != 0 &&
                      taken - d->zc_behind_ns < JR_ZC_BEHIND_NS &&
                      !journal_zc_pays(d->zc_ns, d->zc_in, d->zc_saved,
                                       d->wr_ns, d->wr_bytes);
        if (batch != NULL) {
            d->q_head = d->q_tail = NULL;
            d->q_bytes = 0;
            d->q_fold_from = d->next_lsn; /* what it takes: no more folds */
        }
        bool stopping = d->stopping;
        pthread_mutex_unlock(&d->q_lock);

        uint64_t busy_from = 0;
        d->jw_cost = 0;
        if (batch != NULL) {
            busy_from = disk_now_us();
            writer_coalesce(d, batch);
            writer_write_batch(d, batch);
            writer_costs_age(d);
            writer_sync_poll(d);
        }
        /* Early, too, once half of what may wait for durability does:
         * at the limit the workers stop reading (disk_congested) until a
         * sync, which would otherwise come only flush_ms after the last
         * one (a burst past the limit then stalled writers for all of a
         * long flush_ms). Measured, 4 KiB sets on one core, 15 s runs,
         * four each: 73,277-87,435 sets/s against 61,709-69,497, p99
         * 54-62 ms against 74-83. */
        bool due = d->jw_written != NULL &&
                   (d->cfg.durability == TC_DURABILITY_SYNC || stopping ||
                    writer_sync_wanted(d) ||
                    disk_now_us() >= d->jw_last_sync + period ||
                    writer_sync_early(d));
        if (due) {
            if (batch == NULL) /* a sync on its own holds up writes too */
                busy_from = disk_now_us();
            /* SYNC's clients wait for this one: a write of the next batch
             * beside it would only split the next group commit. */
            if (d->cfg.durability == TC_DURABILITY_SYNC || stopping)
                writer_sync_written(d);
            else if (d->jw_sync_left == 0)
                writer_sync_start(d);
            /* else: once the one under way ends, the writer still
             * writing meanwhile */
        }
        if (busy_from != 0)
            writer_rate(d, d->jw_cost, disk_now_us() - busy_from);
        if (stopping && batch == NULL && d->jw_written == NULL) {
            writer_sync_wait(d);
            if (d->cfg.durability == TC_DURABILITY_NONE)
                writer_sync(d, d->jw_extra_fd); /* a clean close keeps it */
            writer_direct_off(d, 0);
            return NULL;
        }
    }
}

tc_status journal_start(disk *d)
{
    /* Until the rate is known, the smallest bound: a slow disk must not
     * take a whole queue_max before its first sample. NONE keeps it too:
     * its promise for a process crash is async's. */
    atomic_store(&d->unwritten_max,
                 d->cfg.durability == TC_DURABILITY_SYNC ? SIZE_MAX
                                                         : JR_UNWRITTEN_MIN);
    /* Two threads for the fallback: a write beside a sync under way. */
    io_config ic = {.backend = d->cfg.backend, .depth = 8, .pool_threads = 2};
    tc_status st = io_queue_new(&ic, &d->wq);
    if (st != TC_OK)
        return st;
    if (d->cfg.compress_level > 0) {
        st = zc_new(d->cfg.compress_level, d->cfg.compress_min, &d->wz);
        if (st != TC_OK)
            return st;
    }
    if (pthread_create(&d->writer, NULL, writer_main, d) != 0)
        return TC_ENOMEM;
    pthread_setname_np(d->writer, "tc-journal"); /* for top -H, perf */
    d->writer_started = true;
    return TC_OK;
}

void journal_stop(disk *d)
{
    if (d->writer_started) {
        pthread_mutex_lock(&d->q_lock);
        d->stopping = true;
        pthread_cond_signal(&d->q_cond);
        pthread_mutex_unlock(&d->q_lock);
        pthread_join(d->writer, NULL);
        d->writer_started = false;
    }
    io_queue_free(&d->wq);
    zc_free(&d->wz);
    free(d->wbuf);
    d->wbuf = NULL;
    d->wbuf_cap = 0;
    free(d->jw_parts);
    free(d->jw_iov);
    d->jw_parts = NULL;
    d->jw_iov = NULL;
    free(d->jw_ents);
    free(d->jw_skip);
    d->jw_ents = NULL;
    d->jw_skip = NULL;
    d->jw_cap = 0;
    jr_dedup_free(&d->jw_dedup);
}

void journal_free_entries(disk *d)
{
    while (d->q_spare != NULL) {
        jr_chunk *next = d->q_spare->next;
        vm_resize(d->q_spare, sizeof(*d->q_spare), 0);
        d->q_spare = next;
    }
    d->q_nspare = 0;
    /* Every entry came back (the index writer has stopped): the current
     * chunk is the only one left. */
    vm_resize(d->q_chunk, sizeof(*d->q_chunk), 0);
    d->q_chunk = NULL;
}
