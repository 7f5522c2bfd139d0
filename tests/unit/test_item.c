/*
 * test_item.c - references to items (engine/item.c): a referenced item's
 * view stays valid and unchanged after its key is deleted, overwritten,
 * evicted or flushed, until tc_item_release; reference-count saturation
 * hands out private copies with the same view; references from many
 * threads at once. ASan in the sanitizer build catches any use after free
 * and any leak; the counts themselves are checked through item.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "item.h"
#include "tcutil.h"

#define SL(s) (s), (sizeof(s) - 1)

static unsigned refs_of(const tc_item *it)
{
    return atomic_load(&it->refs);
}

/* Checks that v still shows key k and value val (flags fl). */
static void view_is(const tc_view *v, const char *k, const char *val,
                    uint32_t fl)
{
    TCT_EQ_MEM(v->key, v->key_len, k);
    TCT_EQ_MEM(v->value, v->value_len, val);
    TCT_EQ_U64(v->flags, fl);
}

static void ref_survives_delete_and_overwrite(void)
{
    tc_engine *e = tcu_open(NULL);
    tc_item *a = NULL, *b = NULL;
    tc_view va, vb;

    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("first"), 1, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_get(e, SL("k"), &a), TC_OK);
    TCT_EQ_U64(refs_of(a), 2); /* the table's and ours */
    tc_item_view(a, &va);
    uint64_t cas_a = va.cas;

    /* Overwritten: the old item is ours alone now. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("second"), 2, 0, 0, NULL),
              TC_OK);
    tc_item_view(a, &va);
    view_is(&va, "k", "first", 1);
    TCT_EQ_U64(va.cas, cas_a);
    TCT_EQ_ST(tc_get(e, SL("k"), &b), TC_OK);
    TCT_CHECK(b != a);
    tc_item_view(b, &vb);
    view_is(&vb, "k", "second", 2);

    /* Deleted: both views still read. */
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_OK);
    tcu_expect_missing(e, "k");
    tc_item_view(a, &va);
    view_is(&va, "k", "first", 1);
    tc_item_view(b, &vb);
    view_is(&vb, "k", "second", 2);

    /* Appended and incremented away. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("n"), SL("41"), 0, 0, 0, NULL), TC_OK);
    tc_item *n = NULL;
    TCT_EQ_ST(tc_get(e, SL("n"), &n), TC_OK);
    TCT_EQ_ST(tc_incr(e, SL("n"), 1, NULL), TC_OK);
    TCT_EQ_ST(tc_store(e, TC_APPEND, SL("n"), SL("0"), 0, 0, 0, NULL), TC_OK);
    tc_view vn;
    tc_item_view(n, &vn);
    view_is(&vn, "n", "41", 0);
    tcu_expect(e, "n", "420");

    tc_item_release(a);
    tc_item_release(b);
    tc_item_release(n);
    tc_close(e);
}

static void ref_survives_flush(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    tc_item *a = NULL, *b = NULL;
    tcu_set(e, "a", "alpha");
    tcu_set(e, "b", "beta");
    TCT_EQ_ST(tc_get(e, SL("a"), &a), TC_OK);
    TCT_EQ_ST(tc_get(e, SL("b"), &b), TC_OK);
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    tcu_expect_missing(e, "a");
    tc_view v;
    tc_item_view(a, &v);
    view_is(&v, "a", "alpha", 0);
    /* A delayed flush too. */
    tcu_set(e, "a", "again");
    tc_item *a2 = NULL;
    TCT_EQ_ST(tc_get(e, SL("a"), &a2), TC_OK);
    TCT_EQ_ST(tc_flush(e, 5), TC_OK);
    tcu_clock_add(&clk, 5);
    tcu_expect_missing(e, "a");
    tc_item_view(a2, &v);
    view_is(&v, "a", "again", 0);
    tc_item_view(b, &v);
    view_is(&v, "b", "beta", 0);
    TCT_EQ_U64(refs_of(a), 1);
    TCT_EQ_U64(refs_of(a2), 1);
    tc_item_release(a);
    tc_item_release(a2);
    tc_item_release(b);
    tc_close(e);
}

/* Expired while held: the view is still readable. */
static void ref_survives_expiry(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("v"), 0, 10, 0, NULL), TC_OK);
    tc_item *it = NULL;
    TCT_EQ_ST(tc_get(e, SL("k"), &it), TC_OK);
    tcu_clock_add(&clk, 10);
    tcu_expect_missing(e, "k"); /* unlinks it */
    tc_view v;
    tc_item_view(it, &v);
    view_is(&v, "k", "v", 0);
    TCT_EQ_INT(v.exptime, TCU_T0 + 10);
    tc_item_release(it);
    tc_close(e);
}

/* Evicted while held: the tier forgets it, the reference keeps it. */
static void ref_survives_eviction(void)
{
    tc_config cfg;
    tcu_config(&cfg, NULL);
    cfg.mem_limit = 256 * 1024;
    cfg.item_size_max = 4096;
    cfg.shards = 4;
    tc_engine *e = tcu_open_cfg(&cfg);
    static char val[1000];
    memset(val, 'e', sizeof(val));
    enum { HELD = 20 };
    tc_item *held[HELD];
    char key[64];

    for (unsigned i = 0; i < HELD; i++) {
        size_t kl = tcu_key(key, "held:", i);
        val[0] = (char)('A' + i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), i, 0, 0,
                           NULL),
                  TC_OK);
        TCT_EQ_ST(tc_get(e, key, kl, &held[i]), TC_OK);
    }
    /* Ten times the limit in keys read once each, as the held ones
     * were: all of them pass to S3-FIFO's main queue, which must evict. */
    for (unsigned i = 0; i < 2600; i++) {
        size_t kl = tcu_key(key, "fill:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, val, sizeof(val), 0, 0, 0,
                           NULL),
                  TC_OK);
        tc_item *it = NULL;
        if (tc_get(e, key, kl, &it) == TC_OK)
            tc_item_release(it);
    }
    TCT_CHECK(tcu_stat(e, "evictions") > 2000);
    TCT_CHECK(tcu_stat(e, "bytes") <= cfg.mem_limit);
    unsigned evicted = 0;
    for (unsigned i = 0; i < HELD; i++) {
        size_t kl = tcu_key(key, "held:", i);
        tc_item *it = NULL;
        if (tc_get(e, key, kl, &it) == TC_ENOTFOUND) {
            evicted++;
            TCT_EQ_U64(refs_of(held[i]), 1);
        }
        tc_item_release(it);
        tc_view v;
        tc_item_view(held[i], &v);
        TCT_EQ_MEM(v.key, v.key_len, key);
        TCT_EQ_U64(v.value_len, sizeof(val));
        TCT_EQ_INT(((const char *)v.value)[0], 'A' + i);
        TCT_CHECK(memcmp((const char *)v.value + 1, val + 1,
                         sizeof(val) - 1) == 0);
        TCT_EQ_U64(v.flags, i);
    }
    TCT_CHECK(evicted > HELD / 2);
    for (unsigned i = 0; i < HELD; i++)
        tc_item_release(held[i]);
    tc_close(e);
}

/*
 * The count saturates at ITEM_REFS_MAX: past it tc_item_ref returns a
 * private copy with the same view. Every reference and copy is released
 * and the count returns to the table's one.
 */
static void saturate(tc_engine *e, const char *key, size_t vlen)
{
    char *val = malloc(vlen);
    TCT_CHECK(val != NULL);
    for (size_t i = 0; i < vlen; i++)
        val[i] = (char)('a' + i % 26);
    TCT_EQ_ST(tc_store(e, TC_SET, key, strlen(key), val, vlen, 0xf1a9u, 0,
                       0, NULL),
              TC_OK);
    tc_item *it = NULL;
    TCT_EQ_ST(tc_get(e, key, strlen(key), &it), TC_OK);
    tc_view v0;
    tc_item_view(it, &v0);

    enum { N = 0x10000 + 100 };
    tc_item **refs = malloc(N * sizeof(*refs));
    TCT_CHECK(refs != NULL);
    unsigned copies = 0, first_copy = 0;
    for (unsigned i = 0; i < N; i++) {
        refs[i] = tc_item_ref(it);
        TCT_CHECK(refs[i] != NULL);
        if (refs[i] != it) {
            if (copies++ == 0)
                first_copy = i;
            tc_view v;
            tc_item_view(refs[i], &v);
            TCT_CHECK(v.item == refs[i]);
            TCT_EQ_U64(v.key_len, v0.key_len);
            TCT_CHECK(memcmp(v.key, v0.key, v.key_len) == 0);
            TCT_EQ_U64(v.value_len, vlen);
            TCT_CHECK(memcmp(v.value, val, vlen) == 0);
            TCT_CHECK(v.value != v0.value);
            TCT_EQ_U64(v.flags, 0xf1a9u);
            TCT_EQ_U64(v.cas, v0.cas);
            TCT_EQ_INT(v.exptime, v0.exptime);
            /* A copy has its own count. */
            TCT_EQ_U64(refs_of(refs[i]), 1);
        }
    }
    /* The table's reference and ours, then references up to the cap. */
    TCT_EQ_U64(refs_of(it), ITEM_REFS_MAX);
    TCT_EQ_U64(first_copy, ITEM_REFS_MAX - 2);
    TCT_EQ_U64(copies, N - (ITEM_REFS_MAX - 2));

    /* A get of a saturated item also gets a copy. */
    tc_item *g = NULL;
    TCT_EQ_ST(tc_get(e, key, strlen(key), &g), TC_OK);
    TCT_CHECK(g != it);
    tc_view vg;
    tc_item_view(g, &vg);
    TCT_EQ_U64(vg.value_len, vlen);
    TCT_CHECK(memcmp(vg.value, val, vlen) == 0);
    TCT_EQ_U64(vg.cas, v0.cas);
    /* And a reference to a copy is that copy. */
    tc_item *gg = tc_item_ref(g);
    TCT_CHECK(gg == g);
    TCT_EQ_U64(refs_of(g), 2);
    tc_item_release(gg);
    tc_item_release(g);

    for (unsigned i = 0; i < N; i++)
        tc_item_release(refs[i]);
    TCT_EQ_U64(refs_of(it), 2);
    /* Deleted while held: the view still reads; the last release (ours
     * or the small FIFO's) frees it, which ASan would see leak if not. */
    TCT_EQ_ST(tc_delete(e, key, strlen(key)), TC_OK);
    tc_item_view(it, &v0);
    TCT_EQ_U64(v0.value_len, vlen);
    TCT_CHECK(memcmp(v0.value, val, vlen) == 0);
    tc_item_release(it);
    free(refs);
    free(val);
}

static void ref_saturation_small_item(void)
{
    tc_engine *e = tcu_open(NULL);
    saturate(e, "small", 10);
    tc_close(e);
}

/* A value larger than a slab chunk: the copy comes from malloc. */
static void ref_saturation_large_item(void)
{
    tc_engine *e = tcu_open(NULL);
    saturate(e, "large", 20000);
    tc_close(e);
}

/* The item stays in the table while saturated: releasing every reference
 * leaves it readable, with the table's reference only. */
static void ref_saturation_item_stays(void)
{
    tc_engine *e = tcu_open(NULL);
    tcu_set(e, "k", "value");
    tc_item *it = NULL;
    TCT_EQ_ST(tc_get(e, SL("k"), &it), TC_OK);
    enum { N = 0x10000 };
    tc_item **refs = malloc(N * sizeof(*refs));
    TCT_CHECK(refs != NULL);
    for (unsigned i = 0; i < N; i++)
        TCT_CHECK((refs[i] = tc_item_ref(it)) != NULL);
    for (unsigned i = 0; i < N; i++)
        tc_item_release(refs[i]);
    tc_item_release(it);
    TCT_EQ_ST(tc_get(e, SL("k"), &it), TC_OK);
    TCT_EQ_U64(refs_of(it), 2);
    tc_item_release(it);
    tcu_expect(e, "k", "value");
    free(refs);
    tc_close(e);
}

typedef struct ref_thread {
    tc_item *it;
    tc_item **refs;
    unsigned n;
    unsigned copies;
} ref_thread;

static void *ref_worker(void *arg)
{
    ref_thread *t = arg;
    for (unsigned i = 0; i < t->n; i++) {
        t->refs[i] = tc_item_ref(t->it);
        if (t->refs[i] != NULL && t->refs[i] != t->it)
            t->copies++;
        /* Give some back as we go, so the count moves both ways. */
        if (i % 3 == 2) {
            tc_item_release(t->refs[i - 1]);
            t->refs[i - 1] = NULL;
        }
    }
    return NULL;
}

/* Four threads take 30000 references each (two in three kept): the count
 * crosses the cap under contention, never wraps, and every copy is
 * released. */
static void ref_threads_saturate(void)
{
    tc_engine *e = tcu_open(NULL);
    tcu_set(e, "k", "shared");
    tc_item *it = NULL;
    TCT_EQ_ST(tc_get(e, SL("k"), &it), TC_OK);
    enum { T = 4, N = 30000 };
    pthread_t th[T];
    ref_thread rt[T];
    for (unsigned i = 0; i < T; i++) {
        rt[i] = (ref_thread){it, calloc(N, sizeof(tc_item *)), N, 0};
        TCT_CHECK(rt[i].refs != NULL);
        TCT_EQ_INT(pthread_create(&th[i], NULL, ref_worker, &rt[i]), 0);
    }
    for (unsigned i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    unsigned kept = 0, copies = 0;
    for (unsigned i = 0; i < T; i++) {
        copies += rt[i].copies;
        for (unsigned j = 0; j < N; j++) {
            if (rt[i].refs[j] == NULL)
                continue;
            if (rt[i].refs[j] == it)
                kept++;
            tc_view v;
            tc_item_view(rt[i].refs[j], &v);
            TCT_EQ_MEM(v.value, v.value_len, "shared");
        }
    }
    /* 80000 kept in all: the original holds as many as the cap allows. */
    TCT_EQ_U64(refs_of(it), kept + 2);
    TCT_CHECK(refs_of(it) <= ITEM_REFS_MAX);
    TCT_CHECK(copies > 0);
    for (unsigned i = 0; i < T; i++) {
        for (unsigned j = 0; j < N; j++)
            tc_item_release(rt[i].refs[j]);
        free(rt[i].refs);
    }
    TCT_EQ_U64(refs_of(it), 2);
    tc_item_release(it);
    tc_close(e);
}

/* An overwrite that fits the old item's chunk rewrites it in place, but
 * only when nobody holds a reference: a held item never changes. */
static void rewrite_in_place_only_unreferenced(void)
{
    tc_engine *e = tcu_open(NULL);
    tc_item *a = NULL, *b = NULL;
    tc_view va, vb;
    uint64_t cas1, cas2, cas3;

    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("one"), 1, 0, 0, &cas1), TC_OK);
    TCT_EQ_ST(tc_get(e, SL("k"), &a), TC_OK);
    /* Held: the overwrite makes a new item; ours keeps its bytes. */
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("two"), 2, 0, 0, &cas2), TC_OK);
    tc_item_view(a, &va);
    view_is(&va, "k", "one", 1);
    TCT_EQ_U64(va.cas, cas1);
    TCT_EQ_ST(tc_get(e, SL("k"), &b), TC_OK);
    TCT_CHECK(b != a);
    tc_item_release(a);
    tc_item_release(b);
    /* Not held: the same chunk is rewritten, with a new CAS. */
    TCT_EQ_ST(tc_get(e, SL("k"), &b), TC_OK);
    struct tc_item *before = b;
    tc_item_release(b);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), SL("six"), 6, 0, 0, &cas3), TC_OK);
    TCT_CHECK(cas3 != cas2 && cas3 != cas1);
    TCT_EQ_ST(tc_get(e, SL("k"), &b), TC_OK);
    TCT_CHECK(b == before);
    tc_item_view(b, &vb);
    view_is(&vb, "k", "six", 6);
    TCT_EQ_U64(vb.cas, cas3);
    tc_item_release(b);
    /* A value of another size class cannot be rewritten in place. */
    static char big[300];
    memset(big, 'b', sizeof(big));
    TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), big, sizeof(big), 0, 0, 0, NULL),
              TC_OK);
    TCT_EQ_ST(tc_get(e, SL("k"), &b), TC_OK);
    TCT_CHECK(b != before);
    tc_item_view(b, &vb);
    TCT_EQ_U64(vb.value_len, sizeof(big));
    tc_item_release(b);
    tc_close(e);
}

/* Regression: a malloc'd item (over the slab's chunk size) was rewritten
 * in place by a value a few bytes longer whose malloc bucket cost the
 * same: a write past the allocation (ASan: heap-buffer-overflow). */
static void rewrite_never_outgrows_malloc_items(void)
{
    tc_engine *e = tcu_open(NULL);
    static char v1[2017], v2[2024];
    memset(v1, '1', sizeof(v1));
    memset(v2, '2', sizeof(v2));
    TCT_EQ_ST(tc_store(e, TC_SET, SL("0123456789"), v1, sizeof(v1), 0, 0, 0,
                       NULL),
              TC_OK);
    TCT_EQ_ST(tc_store(e, TC_SET, SL("0123456789"), v2, sizeof(v2), 0, 0, 0,
                       NULL),
              TC_OK);
    tc_item *it;
    TCT_EQ_ST(tc_get(e, SL("0123456789"), &it), TC_OK);
    tc_view v;
    tc_item_view(it, &v);
    TCT_EQ_U64(v.value_len, sizeof(v2));
    TCT_CHECK(memcmp(v.value, v2, sizeof(v2)) == 0);
    tc_item_release(it);
    tc_close(e);
}

TCT_MAIN(TCT(ref_survives_delete_and_overwrite),
         TCT(rewrite_never_outgrows_malloc_items),
         TCT(rewrite_in_place_only_unreferenced), TCT(ref_survives_flush),
         TCT(ref_survives_expiry), TCT(ref_survives_eviction),
         TCT(ref_saturation_small_item), TCT(ref_saturation_large_item),
         TCT(ref_saturation_item_stays), TCT(ref_threads_saturate))
