/*
 * engine_int.h - the engine object, shared by engine.c (open, close,
 * synchronous calls, stats) and ctx.c (the asynchronous form).
 */
#ifndef TC_ENGINE_INT_H
#define TC_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mem.h"
#include "tiercache.h"

struct tc_engine {
    tc_config cfg;
    mem *mem;
    _Atomic int64_t flush_at; /* a delayed flush's time; 0 = none */
    pthread_mutex_t flush_lock; /* held while a due delayed flush runs */
};

/* The current unix time; also carries out a delayed flush that is due. */
uint32_t engine_now(tc_engine *e);

/* Converts a memcached expiry time to an absolute one (0 = never). */
uint32_t engine_exptime(int64_t exptime, uint32_t now);

static inline bool engine_key_ok(size_t klen)
{
    return klen >= 1 && klen <= TC_KEY_MAX;
}

#endif /* TC_ENGINE_INT_H */
