/*
 * test_slab.c - the item allocator (engine/slab.c): size classes and their
 * cost, allocation and free of many sizes, pages going back to the shared
 * pool, slab_alloc_like, use from several threads, and the figures of
 * slab_stats.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slab.h"
#include "tctest.h"

static void cost_covers_size(void)
{
    for (size_t size = 1; size <= 20000; size++) {
        size_t c = slab_cost(size);
        if (c < size) {
            printf("# slab_cost(%zu) = %zu\n", size, c);
            TCT_CHECK(c >= size);
        }
        if (size <= 1024) {
            size_t want = (size + 7) & ~(size_t)7;
            if (c != want) {
                printf("# slab_cost(%zu) = %zu, want %zu\n", size, c, want);
                TCT_EQ_U64(c, want);
            }
        }
    }
}

/* Above 1 KiB classes are 32 per power of two: at most 1/32 waste, and
 * the cost never decreases with the size. Past SLAB_CHUNK_MAX it is
 * malloc's: the size plus its header, rounded to 16. */
static void cost_classes_large(void)
{
    size_t prev = 0;
    for (size_t size = 1; size <= 3 * SLAB_CHUNK_MAX; size++) {
        size_t c = slab_cost(size);
        TCT_CHECK(c >= prev);
        prev = c;
        if (size > 1024 && size <= SLAB_CHUNK_MAX) {
            /* 32 classes per doubling: the class step at size is at most
             * size / 32 rounded up to a power of two's thirty-second. */
            TCT_CHECK((c - size) * 32 < size);
            TCT_EQ_U64(c % 32, 0);
        }
        if (size > SLAB_CHUNK_MAX) {
            TCT_EQ_U64(c % 16, 0);
            TCT_CHECK(c >= size + 8 && c < size + 8 + 16);
        }
    }
    TCT_EQ_U64(slab_cost(1025), 1056);
    /* An item of a 4 KiB value is a slab chunk (128 bytes apart there),
     * not a malloc'd block (its size plus 8, rounded to 16). */
    TCT_EQ_U64(slab_cost(4096 + 64), 4096 + 128);
    TCT_EQ_U64(slab_cost(4608 - 127), 4608);
    TCT_EQ_U64(slab_cost(SLAB_CHUNK_MAX), SLAB_CHUNK_MAX);
    TCT_EQ_U64(slab_cost(0), 8);
}

/* Fills p with a pattern derived from its size and a tag. */
static void fill(unsigned char *p, size_t size, unsigned tag)
{
    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)(tag * 31u + i * 7u + size);
}

static int intact(const unsigned char *p, size_t size, unsigned tag)
{
    for (size_t i = 0; i < size; i++)
        if (p[i] != (unsigned char)(tag * 31u + i * 7u + size))
            return 0;
    return 1;
}

typedef struct blk {
    unsigned char *p;
    size_t size;
} blk;

/* Random sizes across every class and past the chunk limit: allocations
 * are 8-aligned, distinct, keep their contents while others come and go,
 * and free cleanly (ASan catches overlaps and leaks). */
static void alloc_free_many_sizes(void)
{
    uint64_t rng = tct_seed();
    enum { N = 20000 };
    blk *b = calloc(N, sizeof(*b));
    TCT_CHECK(b != NULL);
    slab *s = slab_new();
    TCT_CHECK(s != NULL);

    for (int round = 0; round < 6; round++) {
        for (unsigned i = 0; i < N; i++) {
            if (b[i].p != NULL && tct_rand(&rng) % 2 == 0) {
                TCT_CHECK(intact(b[i].p, b[i].size, i));
                slab_free(b[i].p, b[i].size);
                b[i].p = NULL;
            }
            if (b[i].p == NULL) {
                uint64_t r = tct_rand(&rng);
                size_t size = r % 16 == 0 ? 1 + r % (2 * SLAB_CHUNK_MAX)
                                          : 1 + (r >> 8) % 2048;
                b[i].p = slab_alloc(s, size);
                TCT_CHECK(b[i].p != NULL);
                TCT_EQ_U64((uintptr_t)b[i].p % 8, 0);
                b[i].size = size;
                fill(b[i].p, size, i);
            }
        }
        for (unsigned i = 0; i < N; i++)
            TCT_CHECK(intact(b[i].p, b[i].size, i));
    }
    for (unsigned i = 0; i < N; i++)
        slab_free(b[i].p, b[i].size);
    slab_destroy(&s);
    TCT_CHECK(s == NULL);
    free(b);
}

/* Every chunk of a class can be used at once: a full page moves off the
 * partial list and comes back when one chunk is freed. */
static void exact_class_sizes(void)
{
    slab *s = slab_new();
    TCT_CHECK(s != NULL);
    enum { N = 3000 };
    static void *ptrs[N];
    static const size_t sizes[] = {8,    24,   1024, 1056,
                                   1984, 4096, 4224, SLAB_CHUNK_MAX};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t size = sizes[k];
        TCT_EQ_U64(slab_cost(size), size);
        for (unsigned i = 0; i < N; i++) {
            ptrs[i] = slab_alloc(s, size);
            TCT_CHECK(ptrs[i] != NULL);
            memset(ptrs[i], (int)(i & 0xff), size);
        }
        /* Chunks of one class never overlap: each still holds its byte. */
        for (unsigned i = 0; i < N; i++) {
            const unsigned char *p = ptrs[i];
            TCT_EQ_INT(p[0], i & 0xff);
            TCT_EQ_INT(p[size - 1], i & 0xff);
        }
        /* Free every other one, reallocate, free all. */
        for (unsigned i = 0; i < N; i += 2)
            slab_free(ptrs[i], size);
        for (unsigned i = 0; i < N; i += 2) {
            ptrs[i] = slab_alloc(s, size);
            TCT_CHECK(ptrs[i] != NULL);
            memset(ptrs[i], (int)(i & 0xff), size);
        }
        for (unsigned i = 1; i < N; i += 2) {
            const unsigned char *p = ptrs[i];
            TCT_EQ_INT(p[size / 2], i & 0xff);
        }
        for (unsigned i = 0; i < N; i++)
            slab_free(ptrs[i], size);
    }
    slab_destroy(&s);
}

/* Pages freed by one class serve another: after filling many pages with
 * one size and freeing them all, a different size fills the same amount
 * without the allocator mapping more. */
static void pages_return_to_pool(void)
{
    slab *s = slab_new();
    TCT_CHECK(s != NULL);
    TCT_EQ_U64(slab_page_bytes(s), 0);
    enum { N = 8000 };
    void **p = calloc(N, sizeof(*p));
    TCT_CHECK(p != NULL);

    for (unsigned i = 0; i < N; i++)
        TCT_CHECK((p[i] = slab_alloc(s, 200)) != NULL);
    size_t held = slab_page_bytes(s);
    /* 8000 * 200 bytes: about 25 pages of 64 KiB. */
    TCT_CHECK(held >= (size_t)N * 200);
    TCT_EQ_U64(held % SLAB_PAGE_SIZE, 0);
    for (unsigned i = 0; i < N; i++)
        slab_free(p[i], 200);
    TCT_EQ_U64(slab_page_bytes(s), held);

    /* Another class, the same total: the pooled pages suffice. */
    for (unsigned i = 0; i < N / 2; i++)
        TCT_CHECK((p[i] = slab_alloc(s, 392)) != NULL);
    TCT_EQ_U64(slab_page_bytes(s), held);
    for (unsigned i = 0; i < N / 2; i++)
        slab_free(p[i], 392);

    /* And again, many times over: no growth. */
    for (int round = 0; round < 20; round++) {
        size_t size = 16 + (size_t)round * 48;
        unsigned n = (unsigned)(((size_t)N * 192) / size);
        if (n > N)
            n = N;
        for (unsigned i = 0; i < n; i++)
            TCT_CHECK((p[i] = slab_alloc(s, size)) != NULL);
        for (unsigned i = 0; i < n; i++)
            slab_free(p[i], size);
    }
    TCT_EQ_U64(slab_page_bytes(s), held);
    free(p);
    slab_destroy(&s);
}

/* slab_alloc_like allocates from the allocator its pointer came from, and
 * slab_free returns the chunk there. */
static void alloc_like_uses_owner(void)
{
    slab *a = slab_new();
    slab *b = slab_new();
    TCT_CHECK(a != NULL && b != NULL);
    void *pa = slab_alloc(a, 8);
    void *pb = slab_alloc(b, 8);
    TCT_CHECK(pa != NULL && pb != NULL);
    size_t a0 = slab_page_bytes(a), b0 = slab_page_bytes(b);
    TCT_CHECK(a0 > 0 && b0 > 0);

    /* Each new class needs a page of its own: 100 classes and the first
     * need 101 pages, which must all come from a (b holds fewer). */
    enum { NC = 100 };
    void *like[NC];
    size_t sizes[NC];
    for (unsigned i = 0; i < NC; i++) {
        sizes[i] = 16 + (size_t)i * 8; /* classes 2..101 */
        like[i] = slab_alloc_like(pa, sizes[i]);
        TCT_CHECK(like[i] != NULL);
        memset(like[i], 0x5a, sizes[i]);
    }
    TCT_CHECK(slab_page_bytes(a) >= (NC + 1) * SLAB_PAGE_SIZE);
    TCT_CHECK(b0 < (NC + 1) * SLAB_PAGE_SIZE);
    TCT_EQ_U64(slab_page_bytes(b), b0);

    /* A chunk allocated like another one from a itself. */
    void *again = slab_alloc_like(like[NC - 1], 24);
    TCT_CHECK(again != NULL);
    TCT_EQ_U64(slab_page_bytes(b), b0);

    /* Larger than a chunk: malloc, freed by slab_free with its size. */
    void *big = slab_alloc_like(pa, SLAB_CHUNK_MAX + 1);
    TCT_CHECK(big != NULL);
    memset(big, 1, SLAB_CHUNK_MAX + 1);
    void *big2 = slab_alloc_like(big, SLAB_CHUNK_MAX * 3);
    TCT_CHECK(big2 != NULL);
    memset(big2, 2, SLAB_CHUNK_MAX * 3);
    slab_free(big2, SLAB_CHUNK_MAX * 3);
    slab_free(big, SLAB_CHUNK_MAX + 1);

    /* Free b first: a's chunks must not touch it. */
    slab_free(pb, 8);
    slab_destroy(&b);
    for (unsigned i = 0; i < NC; i++)
        slab_free(like[i], sizes[i]);
    slab_free(again, 24);
    slab_free(pa, 8);
    slab_destroy(&a);
}

/* slab_destroy frees pages still holding live chunks. */
static void destroy_with_live_chunks(void)
{
    slab *s = slab_new();
    TCT_CHECK(s != NULL);
    for (unsigned i = 0; i < 5000; i++)
        TCT_CHECK(slab_alloc(s, 1 + i % SLAB_CHUNK_MAX) != NULL);
    slab_destroy(&s);
    TCT_CHECK(s == NULL);
    slab_destroy(&s); /* NULL: nothing */
}

typedef struct slab_thread {
    slab *s;
    uint64_t seed;
    int failures;
} slab_thread;

static void *slab_worker(void *arg)
{
    slab_thread *t = arg;
    enum { N = 2000 };
    blk *b = calloc(N, sizeof(*b));
    if (b == NULL) {
        t->failures++;
        return NULL;
    }
    uint64_t rng = t->seed;
    for (int op = 0; op < 100000; op++) {
        unsigned i = (unsigned)(tct_rand(&rng) % N);
        if (b[i].p != NULL) {
            if (!intact(b[i].p, b[i].size, i))
                t->failures++;
            slab_free(b[i].p, b[i].size);
            b[i].p = NULL;
        } else {
            size_t size = 1 + tct_rand(&rng) % 3000;
            b[i].p = slab_alloc(t->s, size);
            if (b[i].p == NULL) {
                t->failures++;
                continue;
            }
            b[i].size = size;
            fill(b[i].p, size, i);
        }
    }
    for (unsigned i = 0; i < N; i++) {
        if (b[i].p != NULL) {
            if (!intact(b[i].p, b[i].size, i))
                t->failures++;
            slab_free(b[i].p, b[i].size);
        }
    }
    free(b);
    return NULL;
}

/* Four threads allocate and free in one allocator, sharing classes and
 * the page pool; no chunk is handed out twice (contents stay intact). */
static void threads_share_allocator(void)
{
    enum { T = 4 };
    slab *s = slab_new();
    TCT_CHECK(s != NULL);
    pthread_t th[T];
    slab_thread st[T];
    for (unsigned i = 0; i < T; i++) {
        st[i] = (slab_thread){s, tct_seed() * 31 + i, 0};
        TCT_EQ_INT(pthread_create(&th[i], NULL, slab_worker, &st[i]), 0);
    }
    for (unsigned i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < T; i++)
        TCT_EQ_INT(st[i].failures, 0);
    slab_destroy(&s);
}

/* slab_stats: what one class holds follows its allocations and frees. */
typedef struct class_seen {
    unsigned id;
    slab_class_stats st;
    unsigned classes;
} class_seen;

static void seen_cb(void *arg, unsigned id, const slab_class_stats *st)
{
    class_seen *c = arg;
    c->classes++;
    if (st->chunk_size == 136) {
        c->id = id;
        c->st = *st;
    }
}

static class_seen seen(slab *s)
{
    class_seen c;
    memset(&c, 0, sizeof(c));
    slab_stats(s, seen_cb, &c);
    return c;
}

static void stats_follow_a_class(void)
{
    slab *s = slab_new();
    TCT_CHECK(s != NULL);
    TCT_EQ_U64(seen(s).classes, 0);
    enum { N = 1000 };
    void *p[N];
    for (unsigned i = 0; i < N; i++)
        TCT_CHECK((p[i] = slab_alloc(s, 134)) != NULL);
    class_seen c = seen(s);
    TCT_EQ_U64(c.classes, 1);
    TCT_EQ_U64(c.id, 17); /* 8, 16, ..., 136: the 17th */
    size_t per = c.st.chunks_per_page;
    TCT_EQ_U64(per, (SLAB_PAGE_SIZE - 64) / 136);
    TCT_EQ_U64(c.st.used, N);
    TCT_EQ_U64(c.st.pages, (N + per - 1) / per);
    TCT_EQ_U64(c.st.uncarved, c.st.pages * per - N);
    /* Frees leave holes (not uncarved); a page emptied leaves the class. */
    for (unsigned i = 0; i < per; i++)
        slab_free(p[i], 134);
    slab_free(p[N - 1], 134);
    c = seen(s);
    TCT_EQ_U64(c.st.used, N - per - 1);
    TCT_EQ_U64(c.st.pages, (N + per - 1) / per - 1);
    TCT_EQ_U64(c.st.uncarved, ((N + per - 1) / per) * per - N);
    for (unsigned i = per; i < N - 1; i++)
        slab_free(p[i], 134);
    TCT_EQ_U64(seen(s).classes, 0);
    slab_destroy(&s);
}

TCT_MAIN(TCT(cost_covers_size), TCT(cost_classes_large),
         TCT(alloc_free_many_sizes), TCT(exact_class_sizes),
         TCT(pages_return_to_pool), TCT(alloc_like_uses_owner),
         TCT(destroy_with_live_chunks), TCT(threads_share_allocator),
         TCT(stats_follow_a_class))
