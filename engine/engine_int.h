/*
 * engine_int.h - the engine object and the one description of an
 * operation that engine.c (open, close, the synchronous calls, stats) and
 * ctx.c (the asynchronous form) both run.
 *
 * An operation runs against the memory tier (engine_run). With a disk
 * tier it may come back MEM_ON_DISK: the key has to be loaded first
 * (disk_load), then the operation runs again, told the disk was checked.
 * A change the memory tier logged completes, under sync durability, only
 * when its record is durable (the wake of mem_opt).
 */
#ifndef TC_ENGINE_INT_H
#define TC_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "disk.h"
#include "mem.h"
#include "tiercache.h"

struct tc_engine {
    tc_config cfg;
    mem *mem;
    disk *dk;                   /* NULL without a data directory */
    disk_recovery rec;
    char *dir_copy;             /* cfg.dir and cfg.io_backend point here */
    char *backend_copy;
    _Atomic int64_t flush_at;   /* a delayed flush's time; 0 = none */
    pthread_mutex_t flush_lock; /* held while a due delayed flush runs */
    _Atomic uint64_t disk_get_hits;   /* gets answered by a disk read */
    _Atomic uint64_t disk_get_misses; /* gets the disk had no value for */
    /* What stats reset took from the counters, so that the memory-tier
     * hit ratio since the engine opened survives it (under flush_lock). */
    uint64_t reset_gets;
    uint64_t reset_mem_hits;
};

typedef enum engine_opk {
    OP_GET,
    OP_GAT,
    OP_STORE,
    OP_DELETE,
    OP_ARITH,
    OP_TOUCH,
    OP_MGET,
} engine_opk;

typedef struct engine_op {
    engine_opk kind;
    uint64_t h;
    const void *key;
    size_t klen;
    tc_store_mode mode; /* STORE */
    const void *value;
    size_t vlen;
    uint32_t flags;
    uint32_t exptime; /* STORE; GAT, TOUCH: the new expiry; absolute */
    uint64_t cas;
    int decr; /* ARITH */
    uint64_t delta;
    mem_meta mm; /* MGET; STORE, DELETE, ARITH of a meta call (else zero) */
} engine_op;

/* Fills op->mm from a meta call's options (o may be NULL). */
void engine_meta(tc_engine *e, engine_op *op, const tc_meta_opts *o);
/* The same for a meta store, which also sets op->mode (and op->cas). */
void engine_mstore_op(tc_engine *e, engine_op *op, tc_store_mode mode,
                      const tc_meta_opts *o);

/* The current unix time; also carries out a delayed flush that is due. */
uint32_t engine_now(tc_engine *e);

/* Converts a memcached expiry time to an absolute one (0 = never). */
uint32_t engine_exptime(int64_t exptime, uint32_t now);

/*
 * Runs op once against the memory tier. Gets call visit(visit_arg, item)
 * under the shard lock on a hit. res gets the status and, for STORE and
 * ARITH, the CAS or number. Returns res->status, or MEM_ON_DISK.
 */
tc_status engine_run(tc_engine *e, const engine_op *op, uint32_t now,
                     mem_opt *o, mem_visit_fn visit, void *visit_arg,
                     tc_result *res);

/* Counts a get that a disk load answered (hit) or could not (miss). */
void engine_count_disk_get(tc_engine *e, bool hit);

static inline bool engine_key_ok(size_t klen)
{
    return klen >= 1 && klen <= TC_KEY_MAX;
}

#endif /* TC_ENGINE_INT_H */
