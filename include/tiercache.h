/*
 * tiercache.h - the public API of libtiercache, the only header embedders
 * see.
 *
 * tiercache is a cache engine: a memory tier (a sharded hash table bounded
 * in bytes, with S3-FIFO eviction) that later issues put over an on-disk
 * tier. Items follow memcached's semantics: binary keys of 1..250 bytes,
 * 32-bit client flags, an expiry time, a 64-bit CAS unique per
 * modification.
 *
 * Two ways to call it:
 *   - synchronous calls (tc_get, tc_store, ...) for programs that embed the
 *     engine; they return when the operation is done;
 *   - the asynchronous per-thread form (tc_ctx_*) for servers: every call
 *     reports its result through a callback, either before it returns
 *     (TC_OK) or later (TC_PENDING) from tc_ctx_run() on the thread that
 *     owns the context, when the context's fd becomes readable. An event
 *     loop thus never blocks on disk.
 *
 * Ownership: the caller owns every buffer it passes in; the engine copies
 * what it keeps. Items handed out (tc_item) are reference-counted and
 * immutable; a tc_view points into one and is valid only as long as stated
 * where it is handed out.
 *
 * Errors: every call returns a tc_status; TC_OK is 0, TC_PENDING is
 * positive, every error is negative. The library never aborts, exits or
 * prints.
 *
 * Thread safety: a tc_engine may be used from any number of threads at
 * once. A tc_ctx belongs to one thread at a time.
 */
#ifndef TIERCACHE_H
#define TIERCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TC_BUILDING_LIBRARY) && defined(__GNUC__)
#define TC_API __attribute__((visibility("default")))
#else
#define TC_API
#endif

#define TC_VERSION_STRING "0.1.0"

/* The largest key the engine accepts, as in memcached. */
#define TC_KEY_MAX 250

/*
 * Status codes. One list produces the enum, tc_strerror() and
 * tc_status_name().
 */
#define TC_STATUS_MAP(X)                                                   \
    X(OK, 0, "success")                                                    \
    X(PENDING, 1, "the result will be delivered later")                    \
    X(ENOTFOUND, -1, "no such item")                                       \
    X(EEXISTS, -2, "the item was modified since its CAS was read")         \
    X(ENOTSTORED, -3, "the item was not stored")                           \
    X(E2BIG, -4, "the item is larger than the item size limit")            \
    X(ENOMEM, -5, "out of memory")                                         \
    X(EINVAL, -6, "invalid argument")                                      \
    X(ENONNUMERIC, -7, "the value is not a decimal number")                \
    X(EKEY, -8, "the key is empty or longer than 250 bytes")              \
    X(EIO, -9, "input/output error on the data directory")                 \
    X(ENOSPC, -10, "no space left for the data")                           \
    X(EBUSY, -11, "the data directory is in use by another process")       \
    X(EFORMAT, -12, "the data directory has another format version")       \
    X(ECORRUPT, -13, "stored data failed its checks")

typedef enum tc_status {
#define TC_STATUS_ENUM_(name, value, text) TC_##name = (value),
    TC_STATUS_MAP(TC_STATUS_ENUM_)
#undef TC_STATUS_ENUM_
} tc_status;

/* A sentence describing st; a static string, never NULL. */
TC_API const char *tc_strerror(tc_status st);
/* The status' name without its prefix ("ENOTFOUND"); static, never NULL. */
TC_API const char *tc_status_name(tc_status st);
/* The library's version, TC_VERSION_STRING of the build. */
TC_API const char *tc_version(void);

/*
 * Configuration. Fill with tc_config_init(), change what you need, pass to
 * tc_open(), which copies it.
 */

/* Returns the current unix time in seconds. */
typedef int64_t (*tc_clock_fn)(void *arg);

/*
 * What a successful storage call promises about a crash (with a data
 * directory; see README.md, "Durability"):
 *   ASYNC  the change is written at once and made durable (fdatasync)
 *          within flush_ms; a crash of the process or the machine loses at
 *          most the changes of the last flush_ms;
 *   SYNC   the call completes only once the change is on stable storage
 *          (many changes share one fdatasync);
 *   NONE   no fdatasync: a clean close keeps everything, a crash of the
 *          process keeps what reached the kernel, a machine crash may lose
 *          anything not yet written back by the kernel.
 */
typedef enum tc_durability {
    TC_DURABILITY_ASYNC = 0,
    TC_DURABILITY_SYNC = 1,
    TC_DURABILITY_NONE = 2,
} tc_durability;

/*
 * Warm start (with a data directory; see README.md, "Warm start"): the
 * engine keeps a snapshot of its hot keys in the index and, after a
 * start, preloads them into memory in the background while it serves.
 *   OFF  no snapshot, no preload;
 *   HOT  preload the snapshot's keys (nothing when there is none);
 *   ALL  as HOT, and without a usable snapshot fill memory from the
 *        newest data on disk.
 */
typedef enum tc_warm {
    TC_WARM_OFF = 0,
    TC_WARM_HOT = 1,
    TC_WARM_ALL = 2,
} tc_warm;

typedef enum tc_direct {
    TC_DIRECT_AUTO = 0,
    TC_DIRECT_ON = 1,
    TC_DIRECT_OFF = 2,
} tc_direct;

typedef struct tc_config {
    /* Bytes the memory tier may hold, counting each item's real cost
     * (header, key, value, allocator and index slot). Default 64 MiB. */
    size_t mem_limit;
    /* Largest value accepted, in bytes. Default 1 MiB. */
    size_t item_size_max;
    /* Hash shards, a power of two; 0 picks a default. */
    unsigned shards;
    /* Clock; NULL means the system's real-time clock. Tests set it. */
    tc_clock_fn clock;
    void *clock_arg;
    /* Testing aid: when non-zero, every tc_ctx_* call completes through its
     * context (TC_PENDING, callback from tc_ctx_run) as a disk-tier read
     * would, so callers can exercise their deferred-completion paths. */
    int debug_defer;

    /* The disk tier. With dir NULL the engine keeps everything in memory
     * (and loses it at close). The directory is created if missing and
     * locked against other processes. */
    const char *dir;
    /* Bytes the data directory may hold (segments and the index); when
     * full the oldest data is dropped. Default 1 GiB. */
    uint64_t disk_size;
    tc_durability durability; /* default ASYNC */
    unsigned flush_ms;        /* ASYNC: fdatasync period; default 100 */
    /* zstd level for values on disk; 0 stores them raw. Default 1. */
    int compress_level;
    /* "io_uring", "threads" or NULL (io_uring when the system allows it;
     * the environment variable TC_IO_BACKEND overrides NULL). */
    const char *io_backend;
    /* How the journal writes its segments: TC_DIRECT_AUTO (default)
     * with O_DIRECT, not through the page cache, a segment at a time
     * when the records written lately average 2 KiB or more (large
     * values: the page cache's copy and pages cost more than the write;
     * small ones: less); TC_DIRECT_ON always; TC_DIRECT_OFF never.
     * Where the file system refuses O_DIRECT, through the page cache. */
    tc_direct direct_writes;
    /* If not NULL, a failing tc_open() writes a sentence saying why here
     * (which file, which error), NUL-terminated. */
    char *errbuf;
    size_t errbuf_len;
    /* If not NULL, called with a sentence (no newline) for each problem
     * the disk tier meets outside any call: a journal write, fdatasync or
     * index commit that failed, a record that failed its checks when
     * read. At most one a second (the next says how many were not
     * reported); from the engine's own threads, so it must be
     * thread-safe and must not call the engine. Each is also counted in
     * tc_stats (disk_write_errors, disk_read_errors, disk_last_errno). */
    void (*log)(void *arg, const char *msg);
    void *log_arg;

    /* Warm start (above); default HOT. Its progress lines (when the
     * preload starts, every few seconds, at its end, and a snapshot that
     * is missing or fails its checks) also go to log, starting with
     * "warm: ", and are not rate-limited. */
    tc_warm warm;
    /* Seconds between hot-key snapshots; 0 takes one only at tc_close.
     * A snapshot is also taken at tc_close. Default 60. */
    unsigned hot_snapshot_s;
    /* Testing aid: if not NULL, the preload calls it (on its own thread)
     * after looking up each batch of keys and before reading them, so a
     * test can change those keys in between. */
    void (*debug_warm_hook)(void *arg);
    void *debug_warm_arg;
} tc_config;

/* Fills cfg with the defaults. */
TC_API void tc_config_init(tc_config *cfg);

typedef struct tc_engine tc_engine;

/*
 * Opens an engine. On TC_OK, *out is a new engine to be closed with
 * tc_close(). With a data directory this recovers it first (see
 * tc_stats: recovery_*). Errors: TC_EINVAL (a setting out of range),
 * TC_ENOMEM, and for the data directory TC_EBUSY (another process has it
 * open), TC_EFORMAT (written by an incompatible version), TC_EIO,
 * TC_ENOSPC; cfg->errbuf then says more.
 */
TC_API tc_status tc_open(const tc_config *cfg, tc_engine **out);

/* Closes an engine and frees everything it holds. Items still referenced
 * by the caller must be released before. tc_close(NULL) does nothing. */
TC_API void tc_close(tc_engine *e);

/*
 * Items.
 */
typedef struct tc_item tc_item;

/* A look at an item. The pointers are valid as long as the reference or
 * callback that produced the view. */
typedef struct tc_view {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    uint32_t flags;
    int64_t exptime; /* absolute unix time; 0 = never expires */
    uint64_t cas;
    tc_item *item;   /* pass to tc_item_ref() to keep the bytes */
} tc_view;

/* Takes a reference to it, to be dropped with tc_item_release(). It may be
 * it itself or a private copy of it; NULL on out of memory. */
TC_API tc_item *tc_item_ref(tc_item *it);
/* Drops a reference. tc_item_release(NULL) does nothing. */
TC_API void tc_item_release(tc_item *it);
/* Fills *v from an item the caller holds a reference to; the view is valid
 * until that reference is released. */
TC_API void tc_item_view(const tc_item *it, tc_view *v);

/*
 * Expiry times follow memcached: 0 never expires; 1..2592000 (30 days) is
 * relative to now in seconds; larger values are absolute unix times; a
 * negative value or an absolute time in the past means already expired.
 */

typedef enum tc_store_mode {
    TC_SET = 0,   /* store unconditionally */
    TC_ADD,       /* store only if the key holds no live item */
    TC_REPLACE,   /* store only if the key holds a live item */
    TC_APPEND,    /* add the data after the existing item's value */
    TC_PREPEND,   /* add the data before the existing item's value */
    TC_CAS        /* store only if the item's CAS is still the one given */
} tc_store_mode;

/*
 * Meta operations: memcached 1.6's meta commands (mg, ms, md, ma) as
 * calls, with the caching patterns they carry. A stampede: many clients
 * miss on one key at once and all recompute it. With these options one
 * caller "wins" the right to recompute (TC_META_WIN) and the others learn
 * that someone else has (TC_META_WON_BEFORE), while they serve the old
 * value if it is stale rather than missing:
 *   - TC_MO_VIVIFY on a get: a missing key is created empty (expiring
 *     after vivify_ttl) and the caller wins;
 *   - TC_MO_RECACHE on a get: the caller wins if the item expires within
 *     recache_ttl (refresh ahead of expiry);
 *   - TC_MO_INVALIDATE on a delete: the item is marked stale and kept;
 *     the next get wins and every get reports TC_META_STALE until a new
 *     value is stored.
 * One win is handed out per item until it is stored again (or marked
 * stale again). The state is kept on disk with the item.
 */
typedef struct tc_meta_opts {
    unsigned set;         /* TC_MO_*: which options apply */
    int64_t ttl;          /* TC_MO_TTL: a new expiry time */
    int64_t vivify_ttl;   /* TC_MO_VIVIFY: a created item's expiry time */
    int64_t recache_ttl;  /* TC_MO_RECACHE */
    uint64_t cas;         /* TC_MO_CAS: act only if the item's CAS is this */
    uint64_t initial;     /* TC_MO_VIVIFY on an arith: the number created */
} tc_meta_opts;

/* Options (tc_meta_opts.set). */
#define TC_MO_TTL 0x01u        /* get: touch; arith: on success; delete:
                                * with TC_MO_INVALIDATE only */
#define TC_MO_VIVIFY 0x02u     /* get, arith: create a missing key */
#define TC_MO_RECACHE 0x04u    /* get */
#define TC_MO_CAS 0x08u        /* store (SET and REPLACE become CAS,
                                * APPEND/PREPEND check it), delete, arith */
#define TC_MO_INVALIDATE 0x10u /* delete: mark stale; store in CAS mode: a
                                * CAS lower than the item's stores the
                                * value, marked stale */
#define TC_MO_NO_BUMP 0x20u    /* get: leave the item's fetched flag, last
                                * access time and eviction rank as they are */
#define TC_MO_KEY64 0x40u      /* the caller shows its keys in base64: an
                                * item this call creates remembers it
                                * (TC_META_KEY64), as memcached's "b" */

/* What a meta get reports (tc_result.meta), as of before the call. */
#define TC_META_WIN 0x01u        /* this caller won the recache */
#define TC_META_STALE 0x02u      /* the item is stale */
#define TC_META_WON_BEFORE 0x04u /* another caller won it already */
#define TC_META_FETCHED 0x08u    /* the item had been read */
#define TC_META_KEY64 0x10u      /* mget: created with TC_MO_KEY64 */
#define TC_META_CREATED 0x20u    /* marith: created by TC_MO_VIVIFY */

/*
 * A hint that key is about to be used: starts loading the memory its
 * lookup reads first, so that a caller with a batch of requests can
 * overlap their cache misses (hint them all, then run them). Never blocks,
 * never fails, changes nothing. Returns a token for tc_prefetch_item.
 */
TC_API uint64_t tc_prefetch(tc_engine *e, const void *key, size_t klen);
/*
 * The second step of the hint, once the first has had time to load (a
 * batch: tc_prefetch of all its keys, then tc_prefetch_item of all their
 * tokens, then run them): starts loading the item the key's table entry
 * points at. Takes the key's shard lock briefly; changes nothing.
 */
TC_API void tc_prefetch_item(tc_engine *e, uint64_t token);

/*
 * Synchronous calls. All copy their inputs.
 */

/*
 * Looks up key. On TC_OK, *out holds a reference to the item (release it
 * with tc_item_release()). TC_ENOTFOUND if there is no live item; TC_EKEY.
 */
TC_API tc_status tc_get(tc_engine *e, const void *key, size_t klen,
                        tc_item **out);

/* As tc_get(), and sets the item's expiry time (get-and-touch). */
TC_API tc_status tc_gat(tc_engine *e, const void *key, size_t klen,
                        int64_t exptime, tc_item **out);

/*
 * Stores a value. mode picks the condition; cas is used by TC_CAS only.
 * APPEND and PREPEND keep the existing item's flags and expiry time and
 * ignore the ones given. On TC_OK, *cas_out (if not NULL) is the new CAS.
 * Errors: TC_ENOTSTORED (ADD on a live key, REPLACE/APPEND/PREPEND on a
 * missing one), TC_ENOTFOUND (CAS on a missing key), TC_EEXISTS (CAS
 * mismatch), TC_E2BIG, TC_EKEY, TC_ENOMEM, TC_EINVAL (bad mode).
 */
TC_API tc_status tc_store(tc_engine *e, tc_store_mode mode, const void *key,
                          size_t klen, const void *value, size_t vlen,
                          uint32_t flags, int64_t exptime, uint64_t cas,
                          uint64_t *cas_out);

/* Removes an item. TC_ENOTFOUND if there was no live item. */
TC_API tc_status tc_delete(tc_engine *e, const void *key, size_t klen);

/*
 * Adds delta to (incr) or subtracts it from (decr) a value holding a
 * decimal 64-bit unsigned number. incr wraps at 2^64, decr stops at 0.
 * *result (if not NULL) receives the new number. Errors: TC_ENOTFOUND,
 * TC_ENONNUMERIC, TC_EKEY, TC_ENOMEM.
 */
TC_API tc_status tc_incr(tc_engine *e, const void *key, size_t klen,
                         uint64_t delta, uint64_t *result);
TC_API tc_status tc_decr(tc_engine *e, const void *key, size_t klen,
                         uint64_t delta, uint64_t *result);

/* Sets an item's expiry time. TC_ENOTFOUND if there is no live item. */
TC_API tc_status tc_touch(tc_engine *e, const void *key, size_t klen,
                          int64_t exptime);

/*
 * Invalidates every item stored before the flush takes effect: now when
 * delay <= 0, else delay seconds from now (a memcached expiry time: up to
 * 30 days relative, larger absolute). A later flush replaces a pending one.
 */
TC_API tc_status tc_flush(tc_engine *e, int64_t delay);

/*
 * Statistics: calls fn once per statistic, in a fixed order, with its name
 * and its value formatted as text. Both strings are valid only during the
 * call. Names follow memcached where it has one (curr_items, bytes,
 * get_hits, ...).
 */
typedef void (*tc_stat_fn)(void *arg, const char *name, const char *value);
TC_API tc_status tc_stats(tc_engine *e, tc_stat_fn fn, void *arg);

/*
 * The memory tier's item allocator, in the shape of memcached's "stats
 * slabs" and "stats items" (so that the tools that read those read these).
 * tc_stats_slabs: for each size class that holds memory, by its id (1 is
 * the smallest), "<id>:chunk_size", "<id>:chunks_per_page",
 * "<id>:total_pages", "<id>:total_chunks", "<id>:used_chunks",
 * "<id>:free_chunks" and "<id>:free_chunks_end" (chunks never handed
 * out); then "active_slabs" (the classes listed) and "total_malloced"
 * (the bytes of pages the allocator holds, those waiting for a class
 * included). tc_stats_items: "items:<id>:number" for each class that
 * holds items: the items stored in memory, and the replaced ones still
 * held (by a reader, or by a journal record not yet indexed). Items of
 * more than 2 KiB are allocated one by one, outside the classes, and
 * counted in neither (tc_stats counts every item).
 */
TC_API tc_status tc_stats_slabs(tc_engine *e, tc_stat_fn fn, void *arg);
TC_API tc_status tc_stats_items(tc_engine *e, tc_stat_fn fn, void *arg);

/*
 * Non-zero while changes are logged faster than the disk takes them (the
 * journal's queue is over its bound). The blocking calls (tc_store,
 * tc_delete, ...) wait for room by themselves; the context API (tc_ctx)
 * keeps accepting changes, so a server on it should stop reading
 * requests until this returns 0 again (check it every millisecond or
 * so), which keeps what a crash may lose within the durability mode's
 * promise (README.md, "Durability": the bound on changes not yet written
 * follows the journal's measured rate, so that none waits much more than
 * half of flush_ms to be written, or than the disk takes to write 64 KiB
 * and the largest item where that is longer).
 */
TC_API int tc_congested(tc_engine *e);

/* Resets the counters that memcached's "stats reset" resets. */
TC_API void tc_stats_reset(tc_engine *e);

/*
 * Asynchronous per-thread form.
 *
 * A context belongs to one thread. Each tc_ctx_* call takes a callback that
 * is called exactly once with the result:
 *   - before the call returns, which then returns TC_OK; for a get hit the
 *     callback then runs while the item's shard is locked: it must be
 *     short, must not call into the engine, and must take a reference
 *     (tc_item_ref) to use the bytes after it returns;
 *   - or later, from tc_ctx_run() on the context's thread, in which case
 *     the call returned TC_PENDING; the view is valid during the callback.
 * The key and value are copied before the call returns.
 */
typedef struct tc_ctx tc_ctx;

typedef struct tc_result {
    tc_status status;
    const tc_view *view; /* get/gat/mget hits, else NULL */
    uint64_t cas;        /* storage, marith: the new item's CAS */
    uint64_t number;     /* incr/decr/marith: the new value */
    int64_t exptime;     /* mget, marith: the item's expiry before the
                          * call's TC_MO_TTL (absolute, 0 = never) */
    unsigned meta;       /* mget: TC_META_* */
    uint32_t last_access; /* mget: seconds since the item was last read */
} tc_result;

typedef void (*tc_done_fn)(void *arg, const tc_result *res);

/* Creates a context for the calling thread. Errors: TC_ENOMEM, and an
 * error from the system when its wakeup fd cannot be made (TC_EINVAL). */
TC_API tc_status tc_ctx_new(tc_engine *e, tc_ctx **out);
/* Frees a context; deferred completions not yet run are dropped without
 * their callbacks. tc_ctx_free(NULL) does nothing. */
TC_API void tc_ctx_free(tc_ctx *ctx);
/* A file descriptor that is readable while completions wait to be run. */
TC_API int tc_ctx_fd(const tc_ctx *ctx);
/* Runs the waiting completions' callbacks; returns how many ran. */
TC_API unsigned tc_ctx_run(tc_ctx *ctx);

TC_API tc_status tc_ctx_get(tc_ctx *ctx, const void *key, size_t klen,
                            tc_done_fn fn, void *arg);
TC_API tc_status tc_ctx_gat(tc_ctx *ctx, const void *key, size_t klen,
                            int64_t exptime, tc_done_fn fn, void *arg);
TC_API tc_status tc_ctx_store(tc_ctx *ctx, tc_store_mode mode,
                              const void *key, size_t klen, const void *value,
                              size_t vlen, uint32_t flags, int64_t exptime,
                              uint64_t cas, tc_done_fn fn, void *arg);
TC_API tc_status tc_ctx_delete(tc_ctx *ctx, const void *key, size_t klen,
                               tc_done_fn fn, void *arg);
/* incr when decr is 0, decr otherwise. */
TC_API tc_status tc_ctx_arith(tc_ctx *ctx, const void *key, size_t klen,
                              int decr, uint64_t delta, tc_done_fn fn,
                              void *arg);
TC_API tc_status tc_ctx_touch(tc_ctx *ctx, const void *key, size_t klen,
                              int64_t exptime, tc_done_fn fn, void *arg);

/*
 * Meta operations (above), asynchronous. o may be NULL (no options).
 * mget: a hit's view, res->meta and res->last_access; TC_ENOTFOUND.
 * mstore: as tc_ctx_store; TC_EEXISTS when o's CAS does not match.
 * mdelete: TC_OK, TC_ENOTFOUND, TC_EEXISTS.
 * marith: res->number, cas and exptime (TC_META_CREATED in res->meta
 * when vivified); TC_ENOTFOUND, TC_EEXISTS, TC_ENONNUMERIC.
 */
TC_API tc_status tc_ctx_mget(tc_ctx *ctx, const void *key, size_t klen,
                             const tc_meta_opts *o, tc_done_fn fn, void *arg);
TC_API tc_status tc_ctx_mstore(tc_ctx *ctx, tc_store_mode mode,
                               const void *key, size_t klen,
                               const void *value, size_t vlen, uint32_t flags,
                               int64_t exptime, const tc_meta_opts *o,
                               tc_done_fn fn, void *arg);
TC_API tc_status tc_ctx_mdelete(tc_ctx *ctx, const void *key, size_t klen,
                                const tc_meta_opts *o, tc_done_fn fn,
                                void *arg);
TC_API tc_status tc_ctx_marith(tc_ctx *ctx, const void *key, size_t klen,
                               int decr, uint64_t delta,
                               const tc_meta_opts *o, tc_done_fn fn,
                               void *arg);

/*
 * The same, synchronous. res (may be NULL) gets what the callback would;
 * its view is left NULL: tc_mget hands out the item in *out instead (a
 * reference, as tc_get; out may be NULL).
 */
TC_API tc_status tc_mget(tc_engine *e, const void *key, size_t klen,
                         const tc_meta_opts *o, tc_item **out,
                         tc_result *res);
TC_API tc_status tc_mstore(tc_engine *e, tc_store_mode mode, const void *key,
                           size_t klen, const void *value, size_t vlen,
                           uint32_t flags, int64_t exptime,
                           const tc_meta_opts *o, tc_result *res);
TC_API tc_status tc_mdelete(tc_engine *e, const void *key, size_t klen,
                            const tc_meta_opts *o, tc_result *res);
TC_API tc_status tc_marith(tc_engine *e, const void *key, size_t klen,
                           int decr, uint64_t delta, const tc_meta_opts *o,
                           tc_result *res);

#ifdef __cplusplus
}
#endif

#endif /* TIERCACHE_H */
