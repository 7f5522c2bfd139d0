/*
 * test_filter.c - the filter of keys on disk (engine/filter.c): no false
 * negatives for millions of hashes, the false-positive rate and bytes per
 * key against the bounds filter.h states (both printed), removal,
 * duplicates and keys that share fingerprint and buckets, growth from a
 * tiny filter, readers running beside a writer, and clear.
 *
 * Hashes are drawn from tct_rand() with the run's seed, standing in for
 * hash_key() outputs (both are uniform 64-bit values).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "filter.h"
#include "tctest.h"

/* Sizes: the sanitizer builds run the same tests on fewer keys. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SLOW_BUILD 1
#endif
#endif
#ifdef SLOW_BUILD
#define MANY ((size_t)500 * 1000)
#define MOST ((size_t)1000 * 1000)
#else
#define MANY ((size_t)2 * 1000 * 1000)
#define MOST ((size_t)4 * 1000 * 1000)
#endif

/* The bounds filter.h states, with room for sampling noise. */
#define FP_RATE_MAX 0.0003      /* one level at 90%: about 0.011% */
#define FP_RATE_GROWN_MAX 0.003 /* a chain grown many times */
#define BYTES_PER_KEY_MAX 2.3   /* one level at 90%: 2.22 */
#define BYTES_PER_KEY_GROWN_MAX 4.5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t *random_hashes(size_t n, uint64_t *state)
{
    uint64_t *h = malloc(n * sizeof(*h));
    TCT_CHECK(h != NULL);
    for (size_t i = 0; i < n; i++)
        h[i] = tct_rand(state);
    return h;
}

/* Counts hashes drawn from state (none of them added) that the filter may
 * hold. */
static size_t false_positives(const filter *f, size_t n, uint64_t state)
{
    size_t hits = 0;
    for (size_t i = 0; i < n; i++)
        hits += filter_maybe(f, tct_rand(&state));
    return hits;
}

static void no_false_negatives(void)
{
    uint64_t state = tct_seed() ^ 1;
    uint64_t *h = random_hashes(MOST, &state);
    filter *f = NULL;
    TCT_EQ_INT(filter_new(MOST, &f), TC_OK);

    double t0 = now_s();
    for (size_t i = 0; i < MOST; i++)
        TCT_EQ_INT(filter_add(f, h[i]), TC_OK);
    double t1 = now_s();
    for (size_t i = 0; i < MOST; i++)
        if (!filter_maybe(f, h[i])) {
            printf("# hash %zu (%016llx) not found\n", i,
                   (unsigned long long)h[i]);
            TCT_CHECK(filter_maybe(f, h[i]));
        }
    double t2 = now_s();
    TCT_EQ_U64(filter_count(f), MOST);
    TCT_EQ_U64(filter_levels(f), 1);
    printf("# %zu keys: add %.0f ns, lookup (hit) %.0f ns\n", MOST,
           (t1 - t0) * 1e9 / (double)MOST, (t2 - t1) * 1e9 / (double)MOST);
    filter_free(&f);
    TCT_CHECK(f == NULL);
    free(h);
}

static void false_positive_rate_and_size(void)
{
    uint64_t state = tct_seed() ^ 2;
    uint64_t *h = random_hashes(MANY, &state);
    filter *f = NULL;
    TCT_EQ_INT(filter_new(MANY, &f), TC_OK);
    for (size_t i = 0; i < MANY; i++)
        TCT_EQ_INT(filter_add(f, h[i]), TC_OK);

    size_t probes = MANY;
    double t0 = now_s();
    size_t fp = false_positives(f, probes, state);
    double t1 = now_s();
    double rate = (double)fp / (double)probes;
    double bpk = (double)filter_bytes(f) / (double)filter_count(f);
    printf("# at expected_keys: false positives %zu of %zu = %.4f%% "
           "(bound %.3f%%), %.2f bytes per key, lookup (miss) %.0f ns\n",
           fp, probes, rate * 100, FP_RATE_MAX * 100, bpk,
           (t1 - t0) * 1e9 / (double)probes);
    TCT_CHECK(rate <= FP_RATE_MAX);
    TCT_CHECK(bpk <= BYTES_PER_KEY_MAX);

    /* Fill the level to the brim: the rate rises with the load, still
     * within the bound, and the level holds at least 95%. */
    size_t extra = MANY / 10;
    uint64_t *more = random_hashes(extra, &state);
    size_t i = 0, level_bytes = filter_bytes(f);
    while (i < extra && filter_levels(f) == 1)
        TCT_EQ_INT(filter_add(f, more[i++]), TC_OK);
    size_t full = filter_count(f) - (filter_levels(f) > 1);
    size_t slots = 4 * ((MANY * 100 + 359) / 360); /* filter.h: 90% */
    fp = false_positives(f, probes, state);
    rate = (double)fp / (double)probes;
    printf("# level full at %zu keys (%.1f%% of slots): false positives "
           "%.4f%%, %.2f bytes per key\n",
           full, 100.0 * (double)full / (double)slots, rate * 100,
           (double)level_bytes / (double)full);
    TCT_CHECK(rate <= FP_RATE_MAX);
    TCT_CHECK(filter_levels(f) == 1 || full * 100 >= slots * 95);
    filter_free(&f);
    free(more);
    free(h);
}

static void removal(void)
{
    uint64_t state = tct_seed() ^ 3;
    size_t n = MANY / 4;
    uint64_t *h = random_hashes(n, &state);
    filter *f = NULL;
    TCT_EQ_INT(filter_new(n, &f), TC_OK);
    for (size_t i = 0; i < n; i++)
        TCT_EQ_INT(filter_add(f, h[i]), TC_OK);
    for (size_t i = 0; i < n; i += 2)
        filter_remove(f, h[i]);
    TCT_EQ_U64(filter_count(f), n / 2);

    size_t still = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 1)
            TCT_CHECK(filter_maybe(f, h[i]));
        else
            still += filter_maybe(f, h[i]);
    }
    /* A removed key hits only through another key's fingerprint. */
    printf("# removed keys still maybe: %zu of %zu\n", still, n / 2);
    TCT_CHECK((double)still <= FP_RATE_MAX * (double)n);

    /* Removing a fingerprint that is not there changes nothing. */
    filter_remove(f, tct_rand(&state));
    filter_remove(f, h[0]);
    TCT_EQ_U64(filter_count(f), n / 2);

    /* The freed slots take new keys without growing. */
    for (size_t i = 0; i < n; i += 2)
        TCT_EQ_INT(filter_add(f, h[i] ^ UINT64_C(0x5555)), TC_OK);
    TCT_EQ_U64(filter_levels(f), 1);
    for (size_t i = 0; i < n; i++)
        TCT_CHECK(filter_maybe(f, i % 2 ? h[i] : h[i] ^ UINT64_C(0x5555)));
    filter_free(&f);
    free(h);
}

static void duplicates(void)
{
    uint64_t state = tct_seed() ^ 4;
    filter *f = NULL;
    TCT_EQ_INT(filter_new(1000, &f), TC_OK);
    for (int i = 0; i < 500; i++)
        TCT_EQ_INT(filter_add(f, tct_rand(&state)), TC_OK);

    uint64_t h = tct_rand(&state);
    TCT_EQ_INT(filter_add(f, h), TC_OK);
    TCT_EQ_INT(filter_add(f, h), TC_OK);
    filter_remove(f, h);
    TCT_CHECK(filter_maybe(f, h));
    filter_remove(f, h);
    TCT_EQ_U64(filter_count(f), 500);

    /* One hash 40 times: a level holds eight copies (two buckets of four),
     * so the chain grows; every copy is found until the last removal. */
    uint64_t d = tct_rand(&state);
    for (int i = 0; i < 40; i++)
        TCT_EQ_INT(filter_add(f, d), TC_OK);
    printf("# 40 copies of one hash: %zu levels\n", filter_levels(f));
    TCT_CHECK(filter_levels(f) > 1);
    for (int i = 0; i < 40; i++) {
        TCT_CHECK(filter_maybe(f, d));
        filter_remove(f, d);
    }
    TCT_EQ_U64(filter_count(f), 500);
    filter_free(&f);
}

/*
 * Keys that share fingerprint and buckets, so that removing one may take
 * another's copy, in a filter that grows while they come and go. Hashes
 * have one of four fingerprints and an index below 4096, so they collide
 * often in every level; a reference count per hash says which must be
 * found after each step.
 */
static void colliding_keys_balanced(void)
{
    enum { NH = 4 * 4096, STEPS = 200000 };
    uint64_t state = tct_seed() ^ 5;
    unsigned char *refs = calloc(NH, 1);
    uint64_t *present = malloc(NH * 2 * sizeof(*present));
    size_t npresent = 0;
    filter *f = NULL;
    TCT_CHECK(refs != NULL && present != NULL);
    TCT_EQ_INT(filter_new(16, &f), TC_OK);

    for (long step = 0; step < STEPS; step++) {
        uint64_t r = tct_rand(&state);
        if (npresent > 0 && (r & 3) == 0) {
            /* Remove a random held copy. */
            size_t k = (size_t)(r >> 8) % npresent;
            uint64_t id = present[k];
            present[k] = present[--npresent];
            refs[id]--;
            filter_remove(f, ((id & 3) + 1) << 48 | id >> 2);
        } else {
            uint64_t id = (r >> 8) % NH;
            if (refs[id] == 2)
                continue;
            refs[id]++;
            present[npresent++] = id;
            TCT_EQ_INT(filter_add(f, ((id & 3) + 1) << 48 | id >> 2), TC_OK);
        }
        if (step % 1000 == 999 || step == STEPS - 1) {
            for (uint64_t id = 0; id < NH; id++)
                if (refs[id] > 0 &&
                    !filter_maybe(f, ((id & 3) + 1) << 48 | id >> 2)) {
                    printf("# step %ld: hash id %llu (held %d times) "
                           "missing\n",
                           step, (unsigned long long)id, refs[id]);
                    TCT_CHECK(0);
                }
            TCT_EQ_U64(filter_count(f), npresent);
        }
    }
    printf("# %zu copies held at the end, %zu levels\n", npresent,
           filter_levels(f));
    filter_free(&f);
    free(present);
    free(refs);
}

static void growth_from_tiny(void)
{
    uint64_t state = tct_seed() ^ 6;
    uint64_t *h = random_hashes(MANY, &state);
    filter *f = NULL;
    TCT_EQ_INT(filter_new(0, &f), TC_OK);
    size_t levels = filter_levels(f);
    double worst_bpk = 0, t0 = now_s();

    for (size_t i = 0; i < MANY; i++) {
        TCT_EQ_INT(filter_add(f, h[i]), TC_OK);
        if (filter_levels(f) != levels) {
            levels = filter_levels(f);
            double bpk = (double)filter_bytes(f) / (double)(i + 1);
            if (i >= 100000 && bpk > worst_bpk)
                worst_bpk = bpk;
        }
    }
    double t1 = now_s();
    for (size_t i = 0; i < MANY; i++)
        if (!filter_maybe(f, h[i])) {
            printf("# hash %zu not found after growth\n", i);
            TCT_CHECK(0);
        }
    TCT_EQ_U64(filter_count(f), MANY);

    size_t probes = MANY;
    double rate = (double)false_positives(f, probes, state) / (double)probes;
    double bpk = (double)filter_bytes(f) / (double)MANY;
    printf("# grown to %zu keys: %zu levels, %.2f bytes per key (%.2f "
           "just after a growth past 100k keys), false positives %.4f%% "
           "(bound %.2f%%), add %.0f ns\n",
           MANY, filter_levels(f), bpk, worst_bpk, rate * 100,
           FP_RATE_GROWN_MAX * 100, (t1 - t0) * 1e9 / (double)MANY);
    TCT_CHECK(rate <= FP_RATE_GROWN_MAX);
    TCT_CHECK(bpk <= BYTES_PER_KEY_GROWN_MAX);
    TCT_CHECK(worst_bpk <= BYTES_PER_KEY_GROWN_MAX);

    /* Removing from a chain: each key is found in whichever level holds
     * it. */
    for (size_t i = 0; i < MANY; i += 2)
        filter_remove(f, h[i]);
    TCT_EQ_U64(filter_count(f), MANY / 2);
    for (size_t i = 1; i < MANY; i += 2)
        TCT_CHECK(filter_maybe(f, h[i]));
    filter_free(&f);
    free(h);
}

/*
 * Readers beside a writer. The filter holds a set of keys before the
 * readers start; while they look those up over and over, the writer adds
 * as many again (cuckoo paths, then growth) and removes them (write
 * sections on every stripe). No reader may ever miss a key of the first
 * set.
 */
typedef struct reader_arg {
    const filter *f;
    const uint64_t *h;
    size_t n;
    atomic_bool *stop;
    size_t misses;
    size_t lookups;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    size_t i = 0;
    while (!atomic_load(a->stop)) {
        for (int k = 0; k < 256; k++) {
            if (!filter_maybe(a->f, a->h[i]))
                a->misses++;
            a->lookups++;
            if (++i == a->n)
                i = 0;
        }
    }
    return NULL;
}

static void readers_beside_writer(void)
{
    enum { READERS = 3 };
#ifdef SLOW_BUILD
    size_t n = 50000;
#else
    size_t n = 200000;
#endif
    uint64_t state = tct_seed() ^ 7;
    uint64_t *old = random_hashes(n, &state);
    uint64_t *young = random_hashes(2 * n, &state);
    filter *f = NULL;
    atomic_bool stop;
    pthread_t tid[READERS];
    reader_arg arg[READERS];

    atomic_init(&stop, false);
    TCT_EQ_INT(filter_new(n, &f), TC_OK);
    for (size_t i = 0; i < n; i++)
        TCT_EQ_INT(filter_add(f, old[i]), TC_OK);
    for (int r = 0; r < READERS; r++) {
        /* Each reader starts at its own place in the set. */
        size_t start = n / READERS * (size_t)r;
        arg[r] = (reader_arg){f, old + start, n - start, &stop, 0, 0};
        TCT_CHECK(pthread_create(&tid[r], NULL, reader_main, &arg[r]) == 0);
    }
    for (size_t i = 0; i < 2 * n; i++)
        TCT_EQ_INT(filter_add(f, young[i]), TC_OK);
    for (size_t i = 0; i < 2 * n; i++)
        filter_remove(f, young[i]);
    atomic_store(&stop, true);
    size_t misses = 0, lookups = 0;
    for (int r = 0; r < READERS; r++) {
        pthread_join(tid[r], NULL);
        misses += arg[r].misses;
        lookups += arg[r].lookups;
    }
    printf("# %zu lookups by %d readers beside the writer, %zu misses, "
           "%zu levels\n",
           lookups, READERS, misses, filter_levels(f));
    TCT_EQ_U64(misses, 0);
    TCT_CHECK(filter_levels(f) > 1);
    TCT_EQ_U64(filter_count(f), n);
    filter_free(&f);
    free(young);
    free(old);
}

/*
 * The same on a small filter kept near full, so that the writer's cuckoo
 * paths keep moving the fingerprints the readers look for: the writer
 * fills it from 88% to 95% with young keys, removes them, and again, for a
 * while. A lookup that raced with a move and missed would show here.
 */
static void readers_beside_moves(void)
{
    enum { READERS = 2, OLD = 3600, YOUNG = 300 };
#ifdef SLOW_BUILD
    int rounds = 1000;
#else
    int rounds = 3000;
#endif
    uint64_t state = tct_seed() ^ 10;
    uint64_t *old = random_hashes(OLD, &state);
    uint64_t *young = random_hashes(YOUNG, &state);
    filter *f = NULL;
    atomic_bool stop;
    pthread_t tid[READERS];
    reader_arg arg[READERS];

    atomic_init(&stop, false);
    TCT_EQ_INT(filter_new(0, &f), TC_OK); /* 1024 buckets, 4096 slots */
    for (size_t i = 0; i < OLD; i++)
        TCT_EQ_INT(filter_add(f, old[i]), TC_OK);
    for (int r = 0; r < READERS; r++) {
        arg[r] = (reader_arg){f, old, OLD, &stop, 0, 0};
        TCT_CHECK(pthread_create(&tid[r], NULL, reader_main, &arg[r]) == 0);
    }
    for (int round = 0; round < rounds; round++) {
        for (size_t i = 0; i < YOUNG; i++)
            TCT_EQ_INT(filter_add(f, young[i] + (uint64_t)round), TC_OK);
        for (size_t i = 0; i < YOUNG; i++)
            filter_remove(f, young[i] + (uint64_t)round);
    }
    atomic_store(&stop, true);
    size_t misses = 0, lookups = 0;
    for (int r = 0; r < READERS; r++) {
        pthread_join(tid[r], NULL);
        misses += arg[r].misses;
        lookups += arg[r].lookups;
    }
    printf("# %zu lookups beside %d rounds of moves, %zu misses, %zu "
           "levels\n",
           lookups, rounds, misses, filter_levels(f));
    TCT_EQ_U64(misses, 0);
    TCT_EQ_U64(filter_count(f), OLD);
    filter_free(&f);
    free(young);
    free(old);
}

static void clear_empties(void)
{
    uint64_t state = tct_seed() ^ 8;
    size_t n = 100000;
    uint64_t *h = random_hashes(n, &state);
    filter *f = NULL;
    TCT_EQ_INT(filter_new(n / 4, &f), TC_OK);
    for (size_t i = 0; i < n; i++)
        TCT_EQ_INT(filter_add(f, h[i]), TC_OK);
    size_t bytes = filter_bytes(f), levels = filter_levels(f);
    TCT_CHECK(levels > 1);

    filter_clear(f);
    TCT_EQ_U64(filter_count(f), 0);
    TCT_EQ_U64(filter_bytes(f), bytes);
    TCT_EQ_U64(filter_levels(f), levels);
    size_t hits = 0;
    for (size_t i = 0; i < n; i++)
        hits += filter_maybe(f, h[i]);
    TCT_EQ_U64(hits, 0);

    /* Refilled, it holds them again in the levels it has. */
    for (size_t i = 0; i < n; i++)
        TCT_EQ_INT(filter_add(f, h[i]), TC_OK);
    for (size_t i = 0; i < n; i++)
        TCT_CHECK(filter_maybe(f, h[i]));
    TCT_EQ_U64(filter_levels(f), levels);
    TCT_EQ_U64(filter_count(f), n);
    filter_free(&f);
    filter_free(&f); /* a NULL filter: nothing */
    free(h);
}

static void empty_filter(void)
{
    uint64_t state = tct_seed() ^ 9;
    filter *f = NULL;
    TCT_EQ_INT(filter_new(0, &f), TC_OK);
    TCT_EQ_U64(filter_count(f), 0);
    TCT_EQ_U64(filter_levels(f), 1);
    TCT_CHECK(filter_bytes(f) > 0);
    for (int i = 0; i < 10000; i++)
        TCT_CHECK(!filter_maybe(f, tct_rand(&state)));
    /* Hashes whose top 16 bits are zero still get a fingerprint. */
    TCT_EQ_INT(filter_add(f, 0), TC_OK);
    TCT_EQ_INT(filter_add(f, 12345), TC_OK);
    TCT_CHECK(filter_maybe(f, 0));
    TCT_CHECK(filter_maybe(f, 12345));
    filter_remove(f, 0);
    filter_remove(f, 12345);
    TCT_EQ_U64(filter_count(f), 0);
    filter_free(&f);
}

TCT_MAIN(TCT(no_false_negatives), TCT(false_positive_rate_and_size),
         TCT(removal), TCT(duplicates), TCT(colliding_keys_balanced),
         TCT(growth_from_tiny), TCT(readers_beside_writer),
         TCT(readers_beside_moves), TCT(clear_empties), TCT(empty_filter))
