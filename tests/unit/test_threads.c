/*
 * test_threads.c - one engine used by many threads at once.
 *
 *   - mixed_ops_under_eviction: 8 threads do random set/get/delete/incr/
 *     append/prepend on shared keys and on keys of their own, with a
 *     small mem_limit so eviction runs all the time. A thread checks its
 *     own keys as it goes (only it writes them: a hit must show what it
 *     wrote last, a key it deleted must miss) and that every shared value
 *     is made of whole chunks (no torn or mixed writes); at the end every
 *     private key that still exists holds its last value, and the tier's
 *     books balance (memcheck.h).
 *   - incr_counters_add_up: with nothing evicted, incr from all threads
 *     on shared counters adds up exactly, and the values returned by
 *     incr 1 on one counter are each handed out once.
 *   - cas_increment_loop: optimistic get/CAS loops from all threads lose
 *     no update.
 *   - add_has_one_winner: every key added by all threads at once is
 *     stored by exactly one of them.
 *   - flush_during_writes: flushes while others write and read.
 *   - delayed_flush_is_a_barrier: while one thread carries out a due
 *     delayed flush shard by shard, another thread's calls must not see
 *     the shards not yet flushed (stale hits, lost stores).
 *
 * Bounded operation counts, no sleeps. Seeds derive from tct_seed().
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "item.h"
#include "mem_int.h"
#include "memcheck.h"
#include "tcutil.h"

#define SL(s) (s), (sizeof(s) - 1)
#define NTHREADS 8

typedef struct start_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open;
} start_gate;

static void gate_wait(start_gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(start_gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Starts n threads on fn(args[i]) behind a gate, opens it, joins them. */
static void run_threads(unsigned n, void *(*fn)(void *), void *args,
                        size_t arg_size, start_gate *g)
{
    pthread_t th[NTHREADS];
    TCT_CHECK(n <= NTHREADS);
    for (unsigned i = 0; i < n; i++)
        TCT_EQ_INT(pthread_create(&th[i], NULL, fn,
                                  (char *)args + i * arg_size),
                   0);
    gate_open(g);
    for (unsigned i = 0; i < n; i++)
        TCT_EQ_INT(pthread_join(th[i], NULL), 0);
}

/* ---- mixed operations ---- */

/*
 * Shared values are runs of 8-byte chunks: the writer's letter, six
 * digits, and a check letter over the seven. Any value read must be a
 * whole number of valid chunks.
 */
#define CHUNK 8

static void chunk_make(char *c, unsigned tid, uint64_t r)
{
    unsigned sum = 0;
    c[0] = (char)('A' + tid);
    for (int i = 1; i <= 6; i++) {
        c[i] = (char)('0' + r % 10);
        r /= 10;
    }
    for (int i = 0; i < 7; i++)
        sum += (unsigned char)c[i];
    c[7] = (char)('a' + sum % 26);
}

static int chunks_valid(const char *v, size_t len)
{
    if (len == 0 || len % CHUNK != 0)
        return 0;
    for (size_t o = 0; o < len; o += CHUNK) {
        unsigned sum = 0;
        if (v[o] < 'A' || v[o] >= 'A' + NTHREADS)
            return 0;
        for (int i = 0; i < 7; i++)
            sum += (unsigned char)v[o + i];
        if (v[o + 7] != (char)('a' + sum % 26))
            return 0;
    }
    return 1;
}

enum { SHARED_KEYS = 300, PRIVATE_KEYS = 400, PRIV_VMAX = 600 };

typedef struct priv_key {
    int state;              /* 0 absent for sure, 1 present or evicted */
    int numeric;            /* holds a decimal number */
    uint64_t number;
    size_t len;
    char value[PRIV_VMAX + 64];
} priv_key;

typedef struct mixed_arg {
    tc_engine *e;
    start_gate *gate;
    unsigned tid;
    uint64_t seed;
    unsigned ops;
    priv_key *keys;
    /* What went wrong, counted; the first is described. */
    unsigned errors;
    char first_error[200];
    unsigned hits, misses, evicted_seen;
} mixed_arg;

static void mixed_error(mixed_arg *a, const char *what, const char *key,
                        int st)
{
    if (a->errors++ == 0)
        snprintf(a->first_error, sizeof(a->first_error),
                 "thread %u: %s (key %s, status %s)", a->tid, what, key,
                 tc_status_name((tc_status)st));
}

static void priv_value(mixed_arg *a, priv_key *k, uint64_t r)
{
    if (r % 4 == 0) {
        k->numeric = 1;
        k->number = r % 1000000;
        k->len = (size_t)snprintf(k->value, sizeof(k->value), "%" PRIu64,
                                  k->number);
        return;
    }
    k->numeric = 0;
    size_t len = 1 + (r >> 8) % PRIV_VMAX;
    for (size_t i = 0; i < len; i++)
        k->value[i] = (char)('a' + (i * 7 + r + a->tid) % 26);
    k->len = len;
}

/* One operation on a private key, checked against the model. */
static void mixed_private(mixed_arg *a, uint64_t r)
{
    unsigned n = (unsigned)(r % PRIVATE_KEYS);
    priv_key *k = &a->keys[n];
    char key[64];
    size_t kl = (size_t)snprintf(key, sizeof(key), "p%u:%u", a->tid, n);
    tc_engine *e = a->e;
    tc_status st;
    tc_item *it = NULL;

    switch ((r >> 32) % 8) {
    case 0:
    case 1: /* set */
        priv_value(a, k, r >> 12);
        st = tc_store(e, TC_SET, key, kl, k->value, k->len, a->tid, 0, 0,
                      NULL);
        if (st != TC_OK)
            mixed_error(a, "private set failed", key, st);
        k->state = 1;
        break;
    case 2:
    case 3: /* get */
        st = tc_get(e, key, kl, &it);
        if (st == TC_OK) {
            a->hits++;
            tc_view v;
            tc_item_view(it, &v);
            if (k->state == 0)
                mixed_error(a, "private key back after delete", key, st);
            else if (v.value_len != k->len ||
                     memcmp(v.value, k->value, k->len) != 0)
                mixed_error(a, "private value is not the last written", key,
                            st);
            else if (v.flags != a->tid)
                mixed_error(a, "private flags changed", key, st);
            tc_item_release(it);
        } else if (st == TC_ENOTFOUND) {
            a->misses++;
            if (k->state == 1)
                a->evicted_seen++;
            k->state = 0;
        } else {
            mixed_error(a, "private get failed", key, st);
        }
        break;
    case 4: /* delete */
        st = tc_delete(e, key, kl);
        if (st != TC_OK && st != TC_ENOTFOUND)
            mixed_error(a, "private delete failed", key, st);
        if (st == TC_OK && k->state == 0)
            mixed_error(a, "deleted a private key that was gone", key, st);
        k->state = 0;
        break;
    case 5: { /* incr or decr */
        uint64_t res = 0, delta = (r >> 40) % 100;
        int decr = (r >> 50) & 1;
        st = decr ? tc_decr(e, key, kl, delta, &res)
                  : tc_incr(e, key, kl, delta, &res);
        if (st == TC_ENOTFOUND) {
            k->state = 0;
        } else if (st == TC_ENONNUMERIC) {
            if (k->numeric)
                mixed_error(a, "numeric private value called non-numeric",
                            key, st);
        } else if (st == TC_OK) {
            if (!k->numeric || k->state == 0) {
                mixed_error(a, "incr of a non-numeric or absent key", key,
                            st);
                break;
            }
            uint64_t want = decr ? (delta > k->number ? 0 : k->number - delta)
                                 : k->number + delta;
            if (res != want)
                mixed_error(a, "incr result", key, st);
            k->number = want;
            k->len = (size_t)snprintf(k->value, sizeof(k->value),
                                      "%" PRIu64, want);
        } else {
            mixed_error(a, "private incr failed", key, st);
        }
        break;
    }
    default: { /* append or prepend a few bytes */
        char add[8];
        size_t alen = 1 + (r >> 40) % 7;
        for (size_t i = 0; i < alen; i++)
            add[i] = (char)('A' + (r >> (i * 3)) % 26);
        int pre = (r >> 50) & 1;
        st = tc_store(e, pre ? TC_PREPEND : TC_APPEND, key, kl, add, alen, 0,
                      0, 0, NULL);
        if (st == TC_ENOTSTORED) {
            k->state = 0;
        } else if (st == TC_OK) {
            if (k->state == 0) {
                mixed_error(a, "append to an absent private key", key, st);
                break;
            }
            if (k->len + alen > sizeof(k->value)) {
                /* Too long for the model: start over with a set. */
                priv_value(a, k, r);
                st = tc_store(e, TC_SET, key, kl, k->value, k->len, a->tid,
                              0, 0, NULL);
                if (st != TC_OK)
                    mixed_error(a, "private set failed", key, st);
                break;
            }
            if (pre) {
                memmove(k->value + alen, k->value, k->len);
                memcpy(k->value, add, alen);
            } else {
                memcpy(k->value + k->len, add, alen);
            }
            k->len += alen;
            k->numeric = 0;
        } else {
            mixed_error(a, "private append failed", key, st);
        }
        break;
    }
    }
}

/* One operation on a shared key: any result is possible, but values are
 * always whole chunks. */
static void mixed_shared(mixed_arg *a, uint64_t r)
{
    unsigned n = (unsigned)(r % SHARED_KEYS);
    char key[64];
    size_t kl = (size_t)snprintf(key, sizeof(key), "shared:%u", n);
    tc_engine *e = a->e;
    tc_status st;
    tc_item *it = NULL;
    char val[CHUNK * 64];

    switch ((r >> 32) % 7) {
    case 0:
    case 1: { /* set 1..64 chunks */
        unsigned nc = 1 + (unsigned)((r >> 40) % 64);
        for (unsigned c = 0; c < nc; c++)
            chunk_make(val + c * CHUNK, a->tid, (r >> 8) + c);
        st = tc_store(e, (r >> 50) % 4 == 0 ? TC_ADD : TC_SET, key, kl, val,
                      nc * CHUNK, 0, 0, 0, NULL);
        if (st != TC_OK && st != TC_ENOTSTORED)
            mixed_error(a, "shared set failed", key, st);
        break;
    }
    case 2:
    case 3: /* get */
        st = tc_get(e, key, kl, &it);
        if (st == TC_OK) {
            tc_view v;
            tc_item_view(it, &v);
            if (!chunks_valid(v.value, v.value_len))
                mixed_error(a, "torn shared value", key, st);
            if (v.key_len != kl || memcmp(v.key, key, kl) != 0)
                mixed_error(a, "shared item under the wrong key", key, st);
            /* Take and drop a second reference while others write. */
            tc_item *again = tc_item_ref(it);
            tc_item_release(it);
            tc_item_view(again, &v);
            if (!chunks_valid(v.value, v.value_len))
                mixed_error(a, "shared value changed under a ref", key, st);
            tc_item_release(again);
        } else if (st != TC_ENOTFOUND) {
            mixed_error(a, "shared get failed", key, st);
        }
        break;
    case 4:
        st = tc_delete(e, key, kl);
        if (st != TC_OK && st != TC_ENOTFOUND)
            mixed_error(a, "shared delete failed", key, st);
        break;
    case 5:
        st = tc_incr(e, key, kl, 1, NULL);
        if (st != TC_ENONNUMERIC && st != TC_ENOTFOUND)
            mixed_error(a, "incr of a chunked value", key, st);
        break;
    default:
        chunk_make(val, a->tid, r >> 16);
        st = tc_store(e, (r >> 50) & 1 ? TC_APPEND : TC_PREPEND, key, kl, val,
                      CHUNK, 0, 0, 0, NULL);
        if (st != TC_OK && st != TC_ENOTSTORED && st != TC_E2BIG)
            mixed_error(a, "shared append failed", key, st);
        break;
    }
}

static void *mixed_worker(void *p)
{
    mixed_arg *a = p;
    uint64_t rng = a->seed;
    gate_wait(a->gate);
    for (unsigned op = 0; op < a->ops; op++) {
        uint64_t r = tct_rand(&rng);
        if (r % 2 == 0)
            mixed_private(a, tct_rand(&rng));
        else
            mixed_shared(a, tct_rand(&rng));
    }
    return NULL;
}

static void mixed_ops_under_eviction(void)
{
    tc_config cfg;
    tcu_config(&cfg, NULL);
    cfg.mem_limit = 512 * 1024;
    cfg.item_size_max = 8192;
    cfg.shards = 16;
    tc_engine *e = tcu_open_cfg(&cfg);
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                       0};
    mixed_arg args[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        args[t] = (mixed_arg){.e = e, .gate = &gate, .tid = t,
                              .seed = tct_seed() * 1000003 + t,
                              .ops = 100000};
        args[t].keys = calloc(PRIVATE_KEYS, sizeof(priv_key));
        TCT_CHECK(args[t].keys != NULL);
    }
    run_threads(NTHREADS, mixed_worker, args, sizeof(args[0]), &gate);

    unsigned errors = 0, evicted = 0, hits = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        if (args[t].errors > 0)
            printf("# %u errors; first: %s\n", args[t].errors,
                   args[t].first_error);
        errors += args[t].errors;
        evicted += args[t].evicted_seen;
        hits += args[t].hits;
    }
    printf("# private gets: %u hits, %u found evicted; evictions %" PRIu64
           "\n", hits, evicted, tcu_stat(e, "evictions"));
    TCT_EQ_U64(errors, 0);
    /* The limit was small enough to evict, large enough to hit. */
    TCT_CHECK(tcu_stat(e, "evictions") > 1000);
    TCT_CHECK(evicted > 0);
    TCT_CHECK(hits > 1000);

    /* Every private key still there holds what its thread wrote last. */
    unsigned present = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        for (unsigned n = 0; n < PRIVATE_KEYS; n++) {
            priv_key *k = &args[t].keys[n];
            char key[64];
            size_t kl = (size_t)snprintf(key, sizeof(key), "p%u:%u", t, n);
            tc_item *it = NULL;
            tc_status st = tc_get(e, key, kl, &it);
            if (st == TC_ENOTFOUND)
                continue;
            TCT_EQ_ST(st, TC_OK);
            present++;
            tc_view v;
            tc_item_view(it, &v);
            int same = k->state == 1 && v.value_len == k->len &&
                       memcmp(v.value, k->value, k->len) == 0;
            if (!same)
                printf("# %s: state %d, %zu bytes, want %zu\n", key,
                       k->state, v.value_len, k->len);
            tc_item_release(it);
            TCT_CHECK(same);
        }
        free(args[t].keys);
    }
    TCT_CHECK(present > 0);
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    uint64_t bytes = tcu_stat(e, "bytes");
    TCT_CHECK(bytes <= cfg.mem_limit + NTHREADS * (cfg.item_size_max + 300));
    tc_close(e);
}

/* ---- counters ---- */

enum { COUNTERS = 16, INCRS = 20000 };

typedef struct ctr_arg {
    tc_engine *e;
    start_gate *gate;
    unsigned tid;
    uint64_t seed;
    uint64_t added[COUNTERS];
    uint64_t *unit_results; /* results of incr 1 on "unit" */
    unsigned errors;
} ctr_arg;

static void *ctr_worker(void *p)
{
    ctr_arg *a = p;
    uint64_t rng = a->seed;
    char key[64];
    gate_wait(a->gate);
    for (unsigned i = 0; i < INCRS; i++) {
        uint64_t r = tct_rand(&rng);
        unsigned c = (unsigned)(r % COUNTERS);
        uint64_t delta = (r >> 8) % 1000;
        size_t kl = (size_t)snprintf(key, sizeof(key), "ctr:%u", c);
        uint64_t res = 0;
        if (tc_incr(a->e, key, kl, delta, &res) != TC_OK)
            a->errors++;
        a->added[c] += delta;
        if (tc_incr(a->e, SL("unit"), 1, &res) != TC_OK)
            a->errors++;
        a->unit_results[i] = res;
    }
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static void incr_counters_add_up(void)
{
    tc_engine *e = tcu_open(NULL); /* 64 MiB: nothing is evicted */
    char key[64];
    for (unsigned c = 0; c < COUNTERS; c++) {
        size_t kl = (size_t)snprintf(key, sizeof(key), "ctr:%u", c);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, SL("1000"), 0, 0, 0, NULL),
                  TC_OK);
    }
    TCT_EQ_ST(tc_store(e, TC_SET, SL("unit"), SL("0"), 0, 0, 0, NULL), TC_OK);
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                       0};
    ctr_arg args[NTHREADS];
    uint64_t *results = malloc(NTHREADS * INCRS * sizeof(uint64_t));
    TCT_CHECK(results != NULL);
    for (unsigned t = 0; t < NTHREADS; t++) {
        memset(&args[t], 0, sizeof(args[t]));
        args[t].e = e;
        args[t].gate = &gate;
        args[t].tid = t;
        args[t].seed = tct_seed() * 7919 + t;
        args[t].unit_results = results + (size_t)t * INCRS;
    }
    run_threads(NTHREADS, ctr_worker, args, sizeof(args[0]), &gate);

    for (unsigned t = 0; t < NTHREADS; t++)
        TCT_EQ_U64(args[t].errors, 0);
    for (unsigned c = 0; c < COUNTERS; c++) {
        uint64_t want = 1000;
        for (unsigned t = 0; t < NTHREADS; t++)
            want += args[t].added[c];
        size_t kl = (size_t)snprintf(key, sizeof(key), "ctr:%u", c);
        uint64_t got = 0;
        TCT_EQ_ST(tc_incr(e, key, kl, 0, &got), TC_OK);
        TCT_EQ_U64(got, want);
    }
    /* incr 1 from all threads: the results are exactly 1..N. */
    size_t n = (size_t)NTHREADS * INCRS;
    qsort(results, n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if (results[i] != i + 1) {
            printf("# sorted result %zu is %" PRIu64 "\n", i, results[i]);
            TCT_CHECK(!"each incr result once");
        }
    }
    char digits[32];
    snprintf(digits, sizeof(digits), "%zu", n);
    tcu_expect(e, "unit", digits);
    TCT_EQ_U64(tcu_stat(e, "incr_hits"), 2 * n + COUNTERS);
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    free(results);
    tc_close(e);
}

/* ---- CAS loops ---- */

enum { CAS_KEYS = 4, CAS_INCRS = 3000 };

typedef struct cas_arg {
    tc_engine *e;
    start_gate *gate;
    uint64_t seed;
    unsigned done[CAS_KEYS];
    unsigned conflicts;
    unsigned errors;
} cas_arg;

static void *cas_worker(void *p)
{
    cas_arg *a = p;
    uint64_t rng = a->seed;
    char key[64];
    gate_wait(a->gate);
    for (unsigned i = 0; i < CAS_INCRS; i++) {
        unsigned k = (unsigned)(tct_rand(&rng) % CAS_KEYS);
        size_t kl = (size_t)snprintf(key, sizeof(key), "cas:%u", k);
        for (;;) {
            tc_item *it = NULL;
            if (tc_get(a->e, key, kl, &it) != TC_OK) {
                a->errors++;
                break;
            }
            tc_view v;
            tc_item_view(it, &v);
            char num[32];
            size_t len = v.value_len < 31 ? v.value_len : 31;
            memcpy(num, v.value, len);
            num[len] = '\0';
            uint64_t cas = v.cas;
            tc_item_release(it);
            char next[32];
            size_t nl = (size_t)snprintf(next, sizeof(next), "%llu",
                                         strtoull(num, NULL, 10) + 1);
            tc_status st = tc_store(a->e, TC_CAS, key, kl, next, nl, 0, 0,
                                    cas, NULL);
            if (st == TC_OK) {
                a->done[k]++;
                break;
            }
            if (st != TC_EEXISTS) {
                a->errors++;
                break;
            }
            a->conflicts++;
        }
    }
    return NULL;
}

static void cas_increment_loop(void)
{
    tc_engine *e = tcu_open(NULL);
    char key[64];
    for (unsigned k = 0; k < CAS_KEYS; k++) {
        size_t kl = (size_t)snprintf(key, sizeof(key), "cas:%u", k);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, SL("0"), 0, 0, 0, NULL),
                  TC_OK);
    }
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                       0};
    cas_arg args[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        memset(&args[t], 0, sizeof(args[t]));
        args[t].e = e;
        args[t].gate = &gate;
        args[t].seed = tct_seed() * 31 + t;
    }
    run_threads(NTHREADS, cas_worker, args, sizeof(args[0]), &gate);
    unsigned conflicts = 0;
    for (unsigned k = 0; k < CAS_KEYS; k++) {
        unsigned want = 0;
        for (unsigned t = 0; t < NTHREADS; t++)
            want += args[t].done[k];
        char digits[32];
        snprintf(digits, sizeof(digits), "%u", want);
        snprintf(key, sizeof(key), "cas:%u", k);
        tcu_expect(e, key, digits);
    }
    for (unsigned t = 0; t < NTHREADS; t++) {
        TCT_EQ_U64(args[t].errors, 0);
        conflicts += args[t].conflicts;
    }
    TCT_EQ_U64(tcu_stat(e, "cas_hits"), NTHREADS * CAS_INCRS);
    TCT_EQ_U64(tcu_stat(e, "cas_badval"), conflicts);
    tc_close(e);
}

/* ---- add races ---- */

enum { ADD_KEYS = 5000 };

typedef struct add_arg {
    tc_engine *e;
    start_gate *gate;
    unsigned tid;
    unsigned char *won; /* per key: 1 if this thread's add stored */
    unsigned errors;
} add_arg;

static void *add_worker(void *p)
{
    add_arg *a = p;
    char key[64], val[8];
    size_t vl = (size_t)snprintf(val, sizeof(val), "t%u", a->tid);
    gate_wait(a->gate);
    for (unsigned i = 0; i < ADD_KEYS; i++) {
        /* Threads walk the keys from different starting points. */
        unsigned k = (i + a->tid * (ADD_KEYS / NTHREADS)) % ADD_KEYS;
        size_t kl = (size_t)snprintf(key, sizeof(key), "add:%u", k);
        tc_status st = tc_store(a->e, TC_ADD, key, kl, val, vl, a->tid, 0, 0,
                                NULL);
        if (st == TC_OK)
            a->won[k] = 1;
        else if (st != TC_ENOTSTORED)
            a->errors++;
    }
    return NULL;
}

static void add_has_one_winner(void)
{
    tc_engine *e = tcu_open(NULL);
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                       0};
    add_arg args[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        args[t] = (add_arg){e, &gate, t, calloc(ADD_KEYS, 1), 0};
        TCT_CHECK(args[t].won != NULL);
    }
    run_threads(NTHREADS, add_worker, args, sizeof(args[0]), &gate);
    for (unsigned k = 0; k < ADD_KEYS; k++) {
        unsigned winners = 0, winner = 0;
        for (unsigned t = 0; t < NTHREADS; t++) {
            if (args[t].won[k]) {
                winners++;
                winner = t;
            }
        }
        TCT_EQ_U64(winners, 1);
        char key[64];
        size_t kl = (size_t)snprintf(key, sizeof(key), "add:%u", k);
        tc_item *it = NULL;
        TCT_EQ_ST(tc_get(e, key, kl, &it), TC_OK);
        tc_view v;
        tc_item_view(it, &v);
        TCT_EQ_U64(v.flags, winner);
        tc_item_release(it);
    }
    for (unsigned t = 0; t < NTHREADS; t++) {
        TCT_EQ_U64(args[t].errors, 0);
        free(args[t].won);
    }
    TCT_EQ_U64(tcu_stat(e, "curr_items"), ADD_KEYS);
    TCT_EQ_U64(tcu_stat(e, "total_items"), ADD_KEYS);
    TCT_EQ_U64(tcu_stat(e, "cmd_set"), (uint64_t)ADD_KEYS * NTHREADS);
    tc_close(e);
}

/* ---- flush under load ---- */

typedef struct flush_arg {
    tc_engine *e;
    start_gate *gate;
    unsigned tid;
    uint64_t seed;
    unsigned errors;
} flush_arg;

static void *flush_worker(void *p)
{
    flush_arg *a = p;
    uint64_t rng = a->seed;
    char key[64], val[64];
    gate_wait(a->gate);
    for (unsigned i = 0; i < 20000; i++) {
        uint64_t r = tct_rand(&rng);
        if (a->tid == 0 && r % 500 == 0) {
            if (tc_flush(a->e, 0) != TC_OK)
                a->errors++;
            continue;
        }
        size_t kl = tcu_key(key, "fl:", r % 2000);
        if (r & (1u << 20)) {
            size_t vl = tcu_key(val, key, a->tid);
            if (tc_store(a->e, TC_SET, key, kl, val, vl, 0, 0, 0, NULL) !=
                TC_OK)
                a->errors++;
        } else {
            tc_item *it = NULL;
            tc_status st = tc_get(a->e, key, kl, &it);
            if (st == TC_OK) {
                tc_view v;
                tc_item_view(it, &v);
                /* A value is its key followed by a thread number. */
                if (v.value_len < kl + 1 || memcmp(v.value, key, kl) != 0)
                    a->errors++;
                tc_item_release(it);
            } else if (st != TC_ENOTFOUND) {
                a->errors++;
            }
        }
    }
    return NULL;
}

static void flush_during_writes(void)
{
    tc_config cfg;
    tcu_config(&cfg, NULL);
    cfg.mem_limit = 256 * 1024;
    cfg.item_size_max = 4096;
    tc_engine *e = tcu_open_cfg(&cfg);
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                       0};
    flush_arg args[4];
    for (unsigned t = 0; t < 4; t++)
        args[t] = (flush_arg){e, &gate, t, tct_seed() * 5 + t, 0};
    run_threads(4, flush_worker, args, sizeof(args[0]), &gate);
    for (unsigned t = 0; t < 4; t++)
        TCT_EQ_U64(args[t].errors, 0);
    TCT_EQ_INT(memcheck_tier(e->mem), 0);
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    TCT_EQ_U64(tcu_stat(e, "curr_items"), 0);
    TCT_EQ_U64(tcu_stat(e, "bytes"), 0);
    tc_close(e);
}

/* ---- delayed flush ---- */

/* A key of the form "<prefix><n>" that lands in shard want. */
static size_t key_in_shard(tc_engine *e, char *key, const char *prefix,
                           unsigned want)
{
    mem *m = e->mem;
    for (uint64_t n = 0;; n++) {
        size_t kl = tcu_key(key, prefix, n);
        if (((mem_hash(m, key, kl) >> 56) & (m->cfg.shards - 1)) == want)
            return kl;
    }
}

typedef struct flush_race {
    tc_engine *e;
    char trigger[64], old[64], fresh[64];
    size_t trigger_len, old_len, fresh_len;
    tc_status old_get;  /* the late thread's get of a pre-flush key */
    tc_status fresh_set;
    _Atomic int done;
} flush_race;

/* Its first call sees the delayed flush due and carries it out. */
static void *flush_race_flusher(void *p)
{
    flush_race *r = p;
    tc_item *it = NULL;
    (void)tc_get(r->e, r->trigger, r->trigger_len, &it);
    tc_item_release(it);
    return NULL;
}

/* Comes in while the flush is under way. */
static void *flush_race_late(void *p)
{
    flush_race *r = p;
    tc_item *it = NULL;
    r->old_get = tc_get(r->e, r->old, r->old_len, &it);
    tc_item_release(it);
    r->fresh_set = tc_store(r->e, TC_SET, r->fresh, r->fresh_len, "new", 3,
                            0, 0, 0, NULL);
    atomic_store(&r->done, 1);
    return NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The flush is held up at shard 3 (the test holds its lock) after it
 * emptied shard 0. Meanwhile a late thread, whose clock is past the due
 * time, reads a key stored before the flush and stores a new one, both
 * in shard 6, which the flush has not reached. The read must miss and
 * the store must survive. (If the late thread is made to wait for the
 * flush, the test waits 300 ms before letting the flush go
 * on; the outcome does not depend on that wait.)
 */
static void delayed_flush_is_a_barrier(void)
{
    tcu_clock clk;
    tc_config cfg;
    tcu_config(&cfg, &clk);
    cfg.shards = 8;
    tc_engine *e = tcu_open_cfg(&cfg);
    flush_race r;
    memset(&r, 0, sizeof(r));
    r.e = e;
    char k0[64];
    size_t k0l = key_in_shard(e, k0, "s0:", 0);
    r.trigger_len = key_in_shard(e, r.trigger, "trig:", 1);
    r.old_len = key_in_shard(e, r.old, "old:", 6);
    r.fresh_len = key_in_shard(e, r.fresh, "fresh:", 6);
    TCT_EQ_ST(tc_store(e, TC_SET, k0, k0l, "v", 1, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, r.old, r.old_len, "v", 1, 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_flush(e, 10), TC_OK);
    tcu_clock_add(&clk, 11);

    mem_shard *s0 = &e->mem->shards[0], *s3 = &e->mem->shards[3];
    pthread_mutex_lock(&s3->lock);
    pthread_t flusher, late;
    TCT_EQ_INT(pthread_create(&flusher, NULL, flush_race_flusher, &r), 0);
    /* Wait until the flush has emptied shard 0: it is now stuck at 3. */
    for (;;) {
        pthread_mutex_lock(&s0->lock);
        uint32_t n = s0->count;
        pthread_mutex_unlock(&s0->lock);
        if (n == 0)
            break;
        sched_yield();
    }
    TCT_EQ_INT(pthread_create(&late, NULL, flush_race_late, &r), 0);
    int64_t deadline = mono_ms() + 300;
    while (!atomic_load(&r.done) && mono_ms() < deadline)
        sched_yield();
    pthread_mutex_unlock(&s3->lock);
    pthread_join(flusher, NULL);
    pthread_join(late, NULL);

    TCT_EQ_ST(r.old_get, TC_ENOTFOUND);
    TCT_EQ_ST(r.fresh_set, TC_OK);
    tcu_expect(e, r.fresh, "new");
    tcu_expect_missing(e, r.old);
    tcu_expect_missing(e, k0);
    tc_close(e);
}

/* tc_prefetch_item reads a table that another thread may replace (a
 * table grows by a new one, the old freed): one thread hints keys over
 * and over while another stores enough keys to grow every shard's table
 * many times. Under AddressSanitizer a read of a freed table fails the
 * test; the hints change nothing. */
typedef struct {
    tc_engine *e;
    atomic_bool stop;
    uint64_t hints;
} hint_race;

static void *hint_race_hinter(void *arg)
{
    hint_race *h = arg;
    char key[64];
    for (uint64_t i = 0; !atomic_load(&h->stop); i++) {
        size_t kl = tcu_key(key, "grow:", i % 50000);
        tc_prefetch_item(h->e, tc_prefetch(h->e, key, kl));
        h->hints++;
    }
    return NULL;
}

static void prefetch_item_while_tables_grow(void)
{
    tc_config cfg;
    tcu_config(&cfg, NULL);
    cfg.shards = 4;
    tc_engine *e = tcu_open_cfg(&cfg);
    hint_race h = {.e = e};
    pthread_t t;
    TCT_EQ_INT(pthread_create(&t, NULL, hint_race_hinter, &h), 0);
    char key[64];
    for (unsigned i = 0; i < 50000; i++) {
        size_t kl = tcu_key(key, "grow:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, "v", 1, 0, 0, 0, NULL),
                  TC_OK);
    }
    atomic_store(&h.stop, true);
    pthread_join(t, NULL);
    TCT_CHECK(h.hints > 0);
    TCT_EQ_U64(tc_prefetch(e, key, 0), 0); /* not a key: no token */
    tc_prefetch_item(e, 0);
    for (unsigned i = 0; i < 50000; i += 499) {
        size_t kl = tcu_key(key, "grow:", i);
        tc_item *it = NULL;
        TCT_EQ_ST(tc_get(e, key, kl, &it), TC_OK);
        tc_item_release(it);
    }
    tc_close(e);
}

TCT_MAIN(TCT(mixed_ops_under_eviction), TCT(incr_counters_add_up),
         TCT(cas_increment_loop), TCT(add_has_one_winner),
         TCT(flush_during_writes), TCT(delayed_flush_is_a_barrier),
         TCT(prefetch_item_while_tables_grow))
