/*
 * hitratio.c - hitratio, a trace-driven simulator that runs the engine's
 * eviction policy (the real engine, through include/tiercache.h) and an
 * exact LRU over the same request traces and prints their miss ratios side
 * by side, for caches of several sizes.
 *
 * Each request is a get; on a miss (tc_get() returns TC_ENOTFOUND) the
 * key is stored (tc_store(TC_SET)), as a look-aside cache client does.
 * Both caches are sized to hold the same number of items: the engine's
 * per-item cost for the trace's key and value sizes is first measured
 * (store a sample of items into an engine with a large limit and divide
 * its "bytes" stat by its "curr_items"), and the engine's mem_limit is that
 * cost times the target item count. The engine's own "curr_items" at the
 * end of each run is printed to show what it really held.
 *
 * Traces (generated from a fixed seed, which is printed; one thread):
 *   - zipf: every request draws a key from a Zipf distribution over the
 *     key space;
 *   - scan: the same Zipf requests, with bursts of sequential one-time keys
 *     taken from outside the key space (a scan, as a batch job or a crawl
 *     makes): after every SCAN_GAP Zipf requests, a burst of SCAN_LEN scan
 *     keys, so a sixth of the requests are scan keys that are never asked
 *     for again. Cache sizes are relative to the Zipf key space.
 *
 * The LRU is exact: key numbers are dense, so its "hash map" is an array
 * indexed by key number (a perfect hash), and the recency list a doubly
 * linked list threaded through arrays of 32-bit indices.
 *
 * Miss ratios count every request of the trace, cold misses included; both
 * caches start empty. The engine seeds its hash function at random (its
 * API offers no seed), so its shard assignment, and so its miss ratio,
 * can differ in the fourth digit from one run to the next.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"
#include "kv.h"
#include "tiercache.h"

#define HR_SCAN_GAP 100000u
#define HR_SCAN_LEN 20000u
#define HR_NIL UINT32_MAX
#define HR_COST_SAMPLE 100000u

typedef struct hr_opts {
    uint32_t keys;
    uint64_t requests;
    double skew;
    uint32_t value;
    uint64_t seed;
    unsigned shards;
    const char *traces;
    unsigned sizes[8];
    unsigned nsizes;
} hr_opts;

/* An exact LRU over dense key numbers. */
typedef struct hr_lru {
    uint32_t cap, count;
    uint32_t head, tail; /* most and least recently used */
    uint32_t *prev, *next;
    uint8_t *in;
} hr_lru;

static bool hr_lru_init(hr_lru *l, uint32_t nkeys, uint32_t cap)
{
    l->cap = cap;
    l->count = 0;
    l->head = l->tail = HR_NIL;
    l->prev = malloc((size_t)nkeys * sizeof(*l->prev));
    l->next = malloc((size_t)nkeys * sizeof(*l->next));
    l->in = calloc(nkeys, 1);
    return l->prev != NULL && l->next != NULL && l->in != NULL;
}

static void hr_lru_free(hr_lru *l)
{
    free(l->prev);
    free(l->next);
    free(l->in);
    l->prev = l->next = NULL;
    l->in = NULL;
}

static void hr_lru_unlink(hr_lru *l, uint32_t k)
{
    if (l->prev[k] != HR_NIL)
        l->next[l->prev[k]] = l->next[k];
    else
        l->head = l->next[k];
    if (l->next[k] != HR_NIL)
        l->prev[l->next[k]] = l->prev[k];
    else
        l->tail = l->prev[k];
}

static void hr_lru_push(hr_lru *l, uint32_t k)
{
    l->prev[k] = HR_NIL;
    l->next[k] = l->head;
    if (l->head != HR_NIL)
        l->prev[l->head] = k;
    l->head = k;
    if (l->tail == HR_NIL)
        l->tail = k;
}

/* Returns true on a hit; on a miss the key is inserted, evicting the
 * least recently used key when full. */
static bool hr_lru_access(hr_lru *l, uint32_t k)
{
    if (l->in[k]) {
        if (l->head != k) {
            hr_lru_unlink(l, k);
            hr_lru_push(l, k);
        }
        return true;
    }
    if (l->count == l->cap) {
        uint32_t victim = l->tail;
        hr_lru_unlink(l, victim);
        l->in[victim] = 0;
        l->count--;
    }
    hr_lru_push(l, k);
    l->in[k] = 1;
    l->count++;
    return false;
}

/* Builds a trace; scan keys are numbered from opt->keys up. Returns NULL
 * when out of memory. */
static uint32_t *hr_trace(const hr_opts *o, const dist *d, bool scan,
                          uint64_t *n_out, uint32_t *nkeys_out)
{
    uint32_t *t = malloc((size_t)o->requests * sizeof(*t));
    if (t == NULL)
        return NULL;
    rng r;
    rng_seed(&r, o->seed);
    uint32_t scan_next = 0;
    uint32_t scan_keys = (uint32_t)(o->requests / (HR_SCAN_GAP + HR_SCAN_LEN)
                                    + 1) * HR_SCAN_LEN;
    uint64_t i = 0;
    while (i < o->requests) {
        for (uint32_t j = 0; j < HR_SCAN_GAP && i < o->requests; j++)
            t[i++] = dist_pick(d, rng_next(&r));
        if (!scan)
            continue;
        for (uint32_t j = 0; j < HR_SCAN_LEN && i < o->requests; j++)
            t[i++] = o->keys + scan_next++;
    }
    *n_out = i;
    *nkeys_out = scan ? o->keys + scan_keys : o->keys;
    return t;
}

typedef struct hr_stat_find {
    const char *name;
    uint64_t value;
} hr_stat_find;

static void hr_stat_cb(void *arg, const char *name, const char *value)
{
    hr_stat_find *f = arg;
    if (strcmp(name, f->name) == 0)
        f->value = strtoull(value, NULL, 10);
}

static uint64_t hr_stat(tc_engine *e, const char *name)
{
    hr_stat_find f = {name, 0};
    tc_stats(e, hr_stat_cb, &f);
    return f.value;
}

static tc_status hr_open(const hr_opts *o, size_t limit, tc_engine **out)
{
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.mem_limit = limit;
    cfg.item_size_max = o->value;
    cfg.shards = o->shards;
    return tc_open(&cfg, out);
}

/* The engine's cost of one item of the trace's sizes, in bytes. */
static tc_status hr_item_cost(const hr_opts *o, const kv_values *kv,
                              double *cost, uint64_t *shards)
{
    tc_engine *e = NULL;
    uint32_t n = o->keys < HR_COST_SAMPLE ? o->keys : HR_COST_SAMPLE;
    tc_status st = hr_open(o, (size_t)4 << 30, &e);
    if (st != TC_OK)
        goto out;
    char key[KV_KEY_LEN];
    for (uint32_t k = 0; k < n && st == TC_OK; k++) {
        kv_key(key, k);
        st = tc_store(e, TC_SET, key, KV_KEY_LEN, kv_value(kv, k), o->value,
                      0, 0, 0, NULL);
    }
    if (st != TC_OK)
        goto out;
    uint64_t items = hr_stat(e, "curr_items");
    *shards = hr_stat(e, "mem_shards");
    *cost = items ? (double)hr_stat(e, "bytes") / (double)items : 0;
out:
    tc_close(e);
    return st;
}

typedef struct hr_result {
    uint64_t engine_misses, lru_misses;
    uint64_t engine_items; /* curr_items at the end */
    uint64_t evictions;
} hr_result;

static tc_status hr_run(const hr_opts *o, const kv_values *kv,
                        const uint32_t *t, uint64_t n, uint32_t nkeys,
                        uint32_t cap, double cost, hr_result *res)
{
    tc_engine *e = NULL;
    hr_lru lru = {0};
    tc_status st = TC_ENOMEM;
    char key[KV_KEY_LEN];

    memset(res, 0, sizeof(*res));
    if (!hr_lru_init(&lru, nkeys, cap))
        goto out;
    st = hr_open(o, (size_t)(cost * cap), &e);
    if (st != TC_OK)
        goto out;

    for (uint64_t i = 0; i < n; i++) {
        uint32_t k = t[i];
        if (!hr_lru_access(&lru, k))
            res->lru_misses++;
        kv_key(key, k);
        tc_item *it = NULL;
        st = tc_get(e, key, KV_KEY_LEN, &it);
        if (st == TC_OK) {
            tc_item_release(it);
            continue;
        }
        if (st != TC_ENOTFOUND)
            goto out;
        res->engine_misses++;
        st = tc_store(e, TC_SET, key, KV_KEY_LEN, kv_value(kv, k), o->value,
                      0, 0, 0, NULL);
        if (st != TC_OK)
            goto out;
    }
    res->engine_items = hr_stat(e, "curr_items");
    res->evictions = hr_stat(e, "evictions");
    st = TC_OK;
out:
    tc_close(e);
    hr_lru_free(&lru);
    return st;
}

static void hr_usage(FILE *f)
{
    fprintf(f,
"usage: hitratio [options]\n"
"  -k, --keys N          key space of the Zipf requests (1000000)\n"
"  -n, --requests N      requests per trace (10000000)\n"
"  -z, --zipf S          Zipf skew (0.99)\n"
"  -V, --value-size N    value size in bytes (100)\n"
"  -s, --sizes A,B,...   cache sizes in percent of the key space\n"
"                        (1,5,10,25)\n"
"  -t, --traces LIST     zipf, scan or zipf,scan (zipf,scan)\n"
"      --shards N        engine hash shards, 0 for its default (0)\n"
"      --seed N          trace seed (1)\n");
}

static bool hr_parse_sizes(const char *s, hr_opts *o)
{
    char *end;
    o->nsizes = 0;
    while (*s != '\0') {
        if (o->nsizes == 8 || *s < '0' || *s > '9')
            return false;
        unsigned long v = strtoul(s, &end, 10);
        if (v == 0 || v > 100)
            return false;
        o->sizes[o->nsizes++] = (unsigned)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return false;
    }
    return o->nsizes > 0;
}

static int hr_options(int argc, char **argv, hr_opts *o)
{
    static const struct option longopts[] = {
        {"keys", required_argument, NULL, 'k'},
        {"requests", required_argument, NULL, 'n'},
        {"zipf", required_argument, NULL, 'z'},
        {"value-size", required_argument, NULL, 'V'},
        {"sizes", required_argument, NULL, 's'},
        {"traces", required_argument, NULL, 't'},
        {"shards", required_argument, NULL, 'S'},
        {"seed", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (hr_opts){.keys = 1000000, .requests = 10000000, .skew = 0.99,
                   .value = 100, .seed = 1, .traces = "zipf,scan",
                   .sizes = {1, 5, 10, 25}, .nsizes = 4};
    int ch;
    while ((ch = getopt_long(argc, argv, "k:n:z:V:s:t:h", longopts, NULL)) !=
           -1) {
        char *end = NULL;
        bool ok = true;
        errno = 0;
        switch (ch) {
        case 'k':
            o->keys = (uint32_t)strtoul(optarg, &end, 10);
            ok = o->keys >= 100 && o->keys <= 100000000;
            break;
        case 'n':
            o->requests = strtoull(optarg, &end, 10);
            ok = o->requests > 0 && o->requests <= 1000000000;
            break;
        case 'z':
            o->skew = strtod(optarg, &end);
            ok = o->skew > 0 && o->skew < 10;
            break;
        case 'V':
            o->value = (uint32_t)strtoul(optarg, &end, 10);
            ok = o->value > 0 && o->value <= KV_VALUE_MAX;
            break;
        case 's':
            ok = hr_parse_sizes(optarg, o);
            break;
        case 't':
            o->traces = optarg;
            ok = strcmp(optarg, "zipf") == 0 || strcmp(optarg, "scan") == 0 ||
                 strcmp(optarg, "zipf,scan") == 0;
            break;
        case 'S':
            o->shards = (unsigned)strtoul(optarg, &end, 10);
            break;
        case 'r':
            o->seed = strtoull(optarg, &end, 10);
            break;
        case 'h':
            return -1;
        default:
            return 2;
        }
        if (!ok || errno != 0 || (end != NULL && *end != '\0')) {
            fprintf(stderr, "hitratio: bad value for -%c: %s\n",
                    ch < 128 ? ch : '-', optarg);
            return 2;
        }
    }
    return optind == argc ? 0 : 2;
}

int main(int argc, char **argv)
{
    int rc = 2;
    hr_opts o;
    dist d = {0};
    kv_values kv = {0};
    uint32_t *trace = NULL;

    int st = hr_options(argc, argv, &o);
    if (st != 0) {
        hr_usage(st < 0 ? stdout : stderr);
        rc = st < 0 ? 0 : 2;
        goto out;
    }
    rc = 1;
    if (!dist_init(&d, o.keys, o.skew) ||
        !kv_values_init(&kv, o.value, o.value)) {
        fprintf(stderr, "hitratio: out of memory\n");
        goto out;
    }
    double cost = 0;
    uint64_t shards = 0;
    tc_status ts = hr_item_cost(&o, &kv, &cost, &shards);
    if (ts != TC_OK || cost <= 0) {
        fprintf(stderr, "hitratio: measuring the item cost: %s\n",
                tc_strerror(ts));
        goto out;
    }
    printf("hitratio: %" PRIu32 " keys (\"" KV_KEY_PREFIX "\" + %d digits), "
           "%" PRIu64 " requests per trace, zipf %.2f, values %" PRIu32
           " bytes, seed %" PRIu64 ", engine: %" PRIu64 " shards, %.1f "
           "bytes per item\n",
           o.keys, KV_KEY_DIGITS, o.requests, o.skew, o.value, o.seed,
           shards, cost);
    printf("\n| trace | cache size | items | engine miss ratio | "
           "LRU miss ratio | engine / LRU | engine items held | "
           "engine better |\n"
           "|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);

    for (int scan = 0; scan < 2; scan++) {
        if (strstr(o.traces, scan ? "scan" : "zipf") == NULL)
            continue;
        uint64_t n;
        uint32_t nkeys;
        free(trace);
        trace = hr_trace(&o, &d, scan, &n, &nkeys);
        if (trace == NULL) {
            fprintf(stderr, "hitratio: out of memory for the trace\n");
            goto out;
        }
        for (unsigned i = 0; i < o.nsizes; i++) {
            uint32_t cap = (uint32_t)((uint64_t)o.keys * o.sizes[i] / 100);
            hr_result r;
            if (cap == 0)
                cap = 1;
            ts = hr_run(&o, &kv, trace, n, nkeys, cap, cost, &r);
            if (ts != TC_OK) {
                fprintf(stderr, "hitratio: engine: %s\n", tc_strerror(ts));
                goto out;
            }
            double em = (double)r.engine_misses / (double)n;
            double lm = (double)r.lru_misses / (double)n;
            printf("| %s | %u%% | %" PRIu32 " | %.4f | %.4f | %.3f | %" PRIu64
                   " | %s |\n",
                   scan ? "scan" : "zipf", o.sizes[i], cap, em, lm,
                   lm > 0 ? em / lm : 0, r.engine_items,
                   em < lm ? "yes" : "no");
            fflush(stdout);
        }
    }
    rc = 0;
out:
    free(trace);
    kv_values_free(&kv);
    dist_free(&d);
    return rc;
}
