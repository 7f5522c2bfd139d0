/*
 * filter.c - the filter of keys on disk (see filter.h for the design and
 * its numbers).
 *
 * Layout. A level is an array of n buckets, each a 64-bit word holding
 * four 16-bit slots; 0 marks a free slot. From a key's 64-bit hash h:
 *   fingerprint  fp = h >> 48, or 1 when that is 0;
 *   index        x  = the low 48 bits of h;
 *   buckets      i1 = x mod n,  i2 = (H(fp) - i1) mod n,
 * where H is hash_mix(). i2 from i1 and i1 from i2 use the same formula
 * (alt(i) = (H(fp) - i) mod n), so a fingerprint can move to its other
 * bucket knowing only where it is. The modulo form allows any n, so the
 * first level can be sized to fit (XOR with a power-of-two mask cannot).
 *
 * Invariants.
 *   1. Level k+1 has twice the buckets of level k. Hence, for two keys A
 *      and B with the same fingerprint, if their bucket pairs are the
 *      same in a level, they are the same in every older level (i mod n
 *      and H mod n reduce consistently to any divisor of n).
 *   2. Every key added and not removed has one fingerprint copy, in one
 *      of its two buckets of some level, that is "its own"; removal
 *      takes the first copy in its buckets, newest level first. If that
 *      copy is B's own, B shares A's buckets in that level, so by 1 in
 *      every older one, including the level that holds A's own copy:
 *      that copy becomes B's. No key loses its copy.
 *   3. A cuckoo move keeps a fingerprint within its level and its pair
 *      of buckets, so 2 holds through moves.
 *
 * Concurrency. Writers hold f->lock. A reader must not miss a key whose
 * copy a writer moves (a cuckoo path) or replaces by another (removal,
 * see 2): every write that takes a fingerprint out of a slot is done
 * inside a write section of the sequence counter of that fingerprint's
 * stripe (fp mod FILTER_STRIPES), and a reader that found nothing checks
 * its stripe's counter. Writes that only fill a free slot need no write
 * section: a reader sees the slot before or after, both right. Buckets
 * are atomic words read and written relaxed; the counters follow the
 * C11 seqlock recipe (release fence after the odd store, acquire fence
 * before the second read). Levels are only appended (the count is
 * published with release) and freed by filter_free() alone, so a reader
 * never sees a level go away.
 */
#include "filter.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define FILTER_SLOTS 4
#define FILTER_MAX_LEVELS 32
#define FILTER_MIN_BUCKETS ((size_t)1024)
/* The first level's fill at expected_keys, in percent. */
#define FILTER_FILL_PCT 90
/* Buckets a cuckoo path search may visit per level: depth about 5. */
#define FILTER_BFS_NODES 512
/* Sequence counters, chosen by fingerprint (one bit each in a mask). */
#define FILTER_STRIPES 64
/* Optimistic lookups before a reader takes the writers' mutex, and
 * spins waiting for a write section to end (a few microseconds: sections
 * last well under one, unless the writer was preempted in one). */
#define FILTER_READ_TRIES 4
#define FILTER_READ_SPINS 1000

#define LANES_LO UINT64_C(0x0001000100010001)
#define LANES_HI UINT64_C(0x8000800080008000)

typedef struct filter_level {
    size_t n;
    /* n words; calloc'd: all-zero bytes are a valid 0 for a lock-free
     * atomic word on every platform the engine builds on. */
    _Atomic uint64_t *b;
} filter_level;

/* A node of the cuckoo path search: a full bucket, and how it was reached
 * (the slot of its parent's bucket whose fingerprint's other bucket it
 * is). Roots have parent -1. */
typedef struct filter_node {
    size_t bucket;
    int32_t parent;
    uint32_t slot;
} filter_node;

struct filter {
    /* Read by every lookup; written only by write sections. */
    _Atomic uint64_t seq[FILTER_STRIPES];
    _Atomic size_t nlevels;
    atomic_bool lost;
    filter_level lev[FILTER_MAX_LEVELS];
    /* Writers' side, on its own cache line so that adds do not disturb
     * the readers' copies of the counters. */
    _Alignas(64) pthread_mutex_t lock;
    _Atomic size_t count;
    filter_node bfs[FILTER_BFS_NODES];
};

typedef struct filter_probe {
    uint16_t fp;
    uint64_t x;  /* index bits */
    uint64_t hf; /* H(fp) */
} filter_probe;

static filter_probe filter_probe_of(uint64_t h)
{
    filter_probe p;
    p.fp = (uint16_t)(h >> 48);
    if (p.fp == 0)
        p.fp = 1;
    p.x = h & ((UINT64_C(1) << 48) - 1);
    p.hf = hash_mix(p.fp);
    return p;
}

static inline size_t filter_alt(size_t n, size_t i, uint64_t hf)
{
    size_t a = (size_t)(hf % n) + n - i; /* in 1 .. 2n - 1 */
    return a >= n ? a - n : a;
}

static inline uint16_t lane(uint64_t w, unsigned s)
{
    return (uint16_t)(w >> (16 * s));
}

/* Nonzero when some 16-bit lane of w is zero. */
static inline uint64_t lanes_zero(uint64_t w)
{
    return (w - LANES_LO) & ~w & LANES_HI;
}

static inline bool word_has(uint64_t w, uint16_t fp)
{
    return lanes_zero(w ^ (LANES_LO * fp)) != 0;
}

/* The first lane of w equal to v, or -1. */
static int lane_find(uint64_t w, uint16_t v)
{
    for (unsigned s = 0; s < FILTER_SLOTS; s++)
        if (lane(w, s) == v)
            return (int)s;
    return -1;
}

static inline uint64_t lane_set(uint64_t w, unsigned s, uint16_t v)
{
    w &= ~(UINT64_C(0xffff) << (16 * s));
    return w | ((uint64_t)v << (16 * s));
}

static inline uint64_t word_get(const filter_level *lv, size_t i)
{
    return atomic_load_explicit(&lv->b[i], memory_order_relaxed);
}

static inline void word_put(const filter_level *lv, size_t i, uint64_t w)
{
    atomic_store_explicit(&lv->b[i], w, memory_order_relaxed);
}

static inline unsigned stripe_of(uint16_t fp)
{
    return fp % FILTER_STRIPES;
}

/* Opens a write section on every stripe in mask (writer, lock held). */
static void section_begin(filter *f, uint64_t mask)
{
    for (unsigned s = 0; s < FILTER_STRIPES; s++) {
        if (!(mask >> s & 1))
            continue;
        uint64_t v = atomic_load_explicit(&f->seq[s], memory_order_relaxed);
        atomic_store_explicit(&f->seq[s], v + 1, memory_order_relaxed);
    }
    atomic_thread_fence(memory_order_release);
}

static void section_end(filter *f, uint64_t mask)
{
    for (unsigned s = 0; s < FILTER_STRIPES; s++) {
        if (!(mask >> s & 1))
            continue;
        uint64_t v = atomic_load_explicit(&f->seq[s], memory_order_relaxed);
        atomic_store_explicit(&f->seq[s], v + 1, memory_order_release);
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static tc_status level_init(filter_level *lv, size_t n)
{
    if (n > SIZE_MAX / sizeof(uint64_t))
        return TC_ENOMEM;
    lv->b = calloc(n, sizeof(*lv->b));
    if (lv->b == NULL)
        return TC_ENOMEM;
    lv->n = n;
    return TC_OK;
}

tc_status filter_new(size_t expected_keys, filter **out)
{
    tc_status st = TC_ENOMEM;
    filter *f = NULL;
    /* n = ceil(expected_keys * 100 / per) without overflow, per being
     * the keys 100 buckets hold at the fill aimed at. */
    size_t per = FILTER_SLOTS * FILTER_FILL_PCT;
    size_t n = expected_keys / per * 100 +
               (expected_keys % per * 100 + per - 1) / per;

    if (n < FILTER_MIN_BUCKETS)
        n = FILTER_MIN_BUCKETS;
    /* aligned_alloc: the writers' half of the struct is cache-line
     * aligned, which calloc does not promise. */
    f = aligned_alloc(_Alignof(filter), sizeof(*f));
    if (f == NULL)
        goto out;
    memset(f, 0, sizeof(*f));
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        free(f);
        f = NULL;
        goto out;
    }
    for (unsigned s = 0; s < FILTER_STRIPES; s++)
        atomic_init(&f->seq[s], 0);
    atomic_init(&f->lost, false);
    atomic_init(&f->count, 0);
    st = level_init(&f->lev[0], n);
    if (st != TC_OK)
        goto out;
    atomic_init(&f->nlevels, 1);
    *out = f;
    f = NULL;
out:
    filter_free(&f);
    return st;
}

void filter_free(filter **fp)
{
    filter *f = *fp;

    if (f == NULL)
        return;
    for (size_t l = 0; l < FILTER_MAX_LEVELS; l++)
        free((void *)f->lev[l].b);
    pthread_mutex_destroy(&f->lock);
    free(f);
    *fp = NULL;
}

/* Looks for p in every level; the caller makes sure the answer holds. */
static bool filter_scan(const filter *f, size_t nl, const filter_probe *p)
{
    for (size_t l = nl; l-- > 0;) {
        const filter_level *lv = &f->lev[l];
        size_t i1 = (size_t)(p->x % lv->n);
        size_t i2 = filter_alt(lv->n, i1, p->hf);
        if (word_has(word_get(lv, i1), p->fp) ||
            word_has(word_get(lv, i2), p->fp))
            return true;
    }
    return false;
}

bool filter_maybe(const filter *f, uint64_t h)
{
    filter_probe p = filter_probe_of(h);
    const _Atomic uint64_t *seq = &f->seq[stripe_of(p.fp)];
    bool found;

    for (unsigned tries = 0, spins = 0; tries < FILTER_READ_TRIES;) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        if (s1 & 1) {
            if (++spins == FILTER_READ_SPINS)
                break; /* the writer is off the CPU: sleep on the mutex */
            cpu_relax();
            continue;
        }
        size_t nl = atomic_load_explicit(&f->nlevels, memory_order_acquire);
        /* A fingerprint seen is a right answer whatever happens next. */
        if (filter_scan(f, nl, &p))
            return true;
        if (atomic_load_explicit(&f->lost, memory_order_relaxed))
            return true;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(seq, memory_order_relaxed) == s1)
            return false;
        tries++;
    }
    /* Writers kept changing this stripe: look once with them held off.
     * The mutex is not part of the filter's value, so taking it through a
     * const filter is sound (the filter was never defined const). */
    filter *w = (filter *)f;
    pthread_mutex_lock(&w->lock);
    found = filter_scan(f, atomic_load_explicit(&f->nlevels,
                                                memory_order_relaxed),
                        &p) ||
            atomic_load_explicit(&f->lost, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
    return found;
}

/* Puts fp in a free slot of bucket i; false when the bucket is full. */
static bool bucket_put(const filter_level *lv, size_t i, uint16_t fp)
{
    uint64_t w = word_get(lv, i);
    int s = lane_find(w, 0);

    if (s < 0)
        return false;
    word_put(lv, i, lane_set(w, (unsigned)s, fp));
    return true;
}

/* True when bucket a is node k of the search or one of its ancestors. */
static bool bfs_on_path(const filter *f, int32_t k, size_t a)
{
    for (; k >= 0; k = f->bfs[k].parent)
        if (f->bfs[k].bucket == a)
            return true;
    return false;
}

/*
 * Moves the fingerprints along the path that ends with node k's slot s
 * going to bucket dest (which has a free slot), then puts fp in the root
 * bucket's freed slot. All buckets on the path are distinct and full.
 */
static void bfs_apply(filter *f, const filter_level *lv, int32_t k,
                      unsigned s, size_t dest, uint16_t fp)
{
    uint64_t mask = 0;

    for (int32_t j = k, js = (int32_t)s; j >= 0;) {
        uint16_t v = lane(word_get(lv, f->bfs[j].bucket), (unsigned)js);
        mask |= UINT64_C(1) << stripe_of(v);
        js = (int32_t)f->bfs[j].slot;
        j = f->bfs[j].parent;
    }
    section_begin(f, mask);
    for (;;) {
        size_t from = f->bfs[k].bucket;
        uint64_t w = word_get(lv, from);
        bool ok = bucket_put(lv, dest, lane(w, s));
        assert(ok);
        (void)ok;
        word_put(lv, from, lane_set(w, s, 0));
        if (f->bfs[k].parent < 0)
            break;
        dest = from;
        s = f->bfs[k].slot;
        k = f->bfs[k].parent;
    }
    bool ok = bucket_put(lv, f->bfs[k].bucket, fp);
    assert(ok);
    (void)ok;
    section_end(f, mask);
}

/*
 * Makes room for p in level lv by a breadth-first search for the
 * shortest path of moves ending at a free slot (at most FILTER_BFS_NODES
 * buckets visited), and applies it. The search only reads (writers are
 * held off by the lock); only the moves are inside a write section, so
 * readers wait for a few stores at most. False when no path was found:
 * the level is then unchanged.
 */
static bool filter_kick(filter *f, const filter_level *lv,
                        const filter_probe *p)
{
    size_t n = lv->n;
    size_t i1 = (size_t)(p->x % n);
    size_t i2 = filter_alt(n, i1, p->hf);
    int32_t head = 0, tail = 0;

    f->bfs[tail++] = (filter_node){i1, -1, 0};
    if (i2 != i1)
        f->bfs[tail++] = (filter_node){i2, -1, 0};
    for (; head < tail; head++) {
        size_t b = f->bfs[head].bucket;
        uint64_t w = word_get(lv, b);
        for (unsigned s = 0; s < FILTER_SLOTS; s++) {
            uint16_t v = lane(w, s);
            size_t a = filter_alt(n, b, hash_mix(v));
            if (a == b)
                continue;
            if (lanes_zero(word_get(lv, a)) != 0) {
                bfs_apply(f, lv, head, s, a, p->fp);
                return true;
            }
            if (tail < FILTER_BFS_NODES && !bfs_on_path(f, head, a))
                f->bfs[tail++] = (filter_node){a, head, s};
        }
    }
    return false;
}

/* Appends a level twice the size of the newest (writer, lock held). */
static tc_status filter_grow(filter *f)
{
    size_t nl = atomic_load_explicit(&f->nlevels, memory_order_relaxed);
    size_t n = f->lev[nl - 1].n;

    if (nl == FILTER_MAX_LEVELS || n > SIZE_MAX / 2)
        return TC_ENOMEM;
    if (level_init(&f->lev[nl], 2 * n) != TC_OK)
        return TC_ENOMEM;
    atomic_store_explicit(&f->nlevels, nl + 1, memory_order_release);
    return TC_OK;
}

tc_status filter_add(filter *f, uint64_t h)
{
    filter_probe p = filter_probe_of(h);
    tc_status st = TC_OK;
    size_t nl;

    pthread_mutex_lock(&f->lock);
    nl = atomic_load_explicit(&f->nlevels, memory_order_relaxed);
    for (size_t l = nl; l-- > 0;) {
        const filter_level *lv = &f->lev[l];
        size_t i1 = (size_t)(p.x % lv->n);
        if (bucket_put(lv, i1, p.fp) ||
            bucket_put(lv, filter_alt(lv->n, i1, p.hf), p.fp))
            goto added;
    }
    for (size_t l = nl; l-- > 0;)
        if (filter_kick(f, &f->lev[l], &p))
            goto added;
    st = filter_grow(f);
    if (st != TC_OK) {
        atomic_store(&f->lost, true);
        goto out;
    }
    {
        const filter_level *lv = &f->lev[nl];
        bool ok = bucket_put(lv, (size_t)(p.x % lv->n), p.fp);
        assert(ok); /* a new level is empty */
        (void)ok;
    }
added:
    atomic_fetch_add_explicit(&f->count, 1, memory_order_relaxed);
out:
    pthread_mutex_unlock(&f->lock);
    return st;
}

void filter_remove(filter *f, uint64_t h)
{
    filter_probe p = filter_probe_of(h);
    uint64_t mask = UINT64_C(1) << stripe_of(p.fp);
    size_t nl;

    pthread_mutex_lock(&f->lock);
    nl = atomic_load_explicit(&f->nlevels, memory_order_relaxed);
    for (size_t l = nl; l-- > 0;) {
        const filter_level *lv = &f->lev[l];
        size_t i[2];
        i[0] = (size_t)(p.x % lv->n);
        i[1] = filter_alt(lv->n, i[0], p.hf);
        for (int k = 0; k < 2; k++) {
            uint64_t w = word_get(lv, i[k]);
            int s = lane_find(w, p.fp);
            if (s < 0)
                continue;
            section_begin(f, mask);
            word_put(lv, i[k], lane_set(w, (unsigned)s, 0));
            section_end(f, mask);
            atomic_fetch_sub_explicit(&f->count, 1, memory_order_relaxed);
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&f->lock);
}

size_t filter_count(const filter *f)
{
    return atomic_load_explicit(&f->count, memory_order_relaxed);
}

size_t filter_bytes(const filter *f)
{
    size_t nl = atomic_load_explicit(&f->nlevels, memory_order_acquire);
    size_t bytes = sizeof(*f);

    for (size_t l = 0; l < nl; l++)
        bytes += f->lev[l].n * sizeof(uint64_t);
    return bytes;
}

size_t filter_levels(const filter *f)
{
    return atomic_load_explicit(&f->nlevels, memory_order_acquire);
}

void filter_clear(filter *f)
{
    size_t nl;

    pthread_mutex_lock(&f->lock);
    nl = atomic_load_explicit(&f->nlevels, memory_order_relaxed);
    for (size_t l = 0; l < nl; l++)
        for (size_t i = 0; i < f->lev[l].n; i++)
            word_put(&f->lev[l], i, 0);
    atomic_store_explicit(&f->count, 0, memory_order_relaxed);
    atomic_store(&f->lost, false);
    pthread_mutex_unlock(&f->lock);
}
