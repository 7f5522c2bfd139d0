/*
 * test_bench.c - unit tests of the benchmark tools' building blocks: the
 * histogram's percentiles, the key distributions, the key and value
 * scheme, and tc-load's rate allowance (--bg-rate). Prints TAP; runs in
 * the 'bench' suite. Seeds are fixed and printed with any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "hist.h"
#include "kv.h"
#include "load.h"

static int tb_n, tb_failed;

static void tb_ok(int cond, const char *name)
{
    tb_n++;
    if (!cond)
        tb_failed++;
    printf("%sok %d - %s\n", cond ? "" : "not ", tb_n, name);
}

/* Percentiles of 1..1000000 ns must be within one bucket (1/64) of the
 * exact ones, never below them, and exact below 128 ns. */
static void test_hist_uniform(void)
{
    hist *h = malloc(sizeof(*h));
    int good = h != NULL;
    if (good) {
        hist_reset(h);
        for (uint64_t v = 1; v <= 1000000; v++)
            hist_add(h, v);
        const double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
            double exact = qs[i] * 1000000;
            double got = (double)hist_quantile(h, qs[i]);
            if (got < exact || got > exact * (1 + 1.0 / 64) + 1) {
                printf("# q %.3f: got %.0f, exact %.0f\n", qs[i], got, exact);
                good = 0;
            }
        }
        good = good && h->count == 1000000 && h->min == 1 &&
               h->max == 1000000;
        hist_reset(h);
        for (uint64_t v = 0; v < 100; v++)
            hist_add(h, v);
        good = good && hist_quantile(h, 0.5) == 49 &&
               hist_quantile(h, 1.0) == 99;
    }
    tb_ok(good, "hist: percentiles within one bucket, exact below 128 ns");
    free(h);
}

/* Buckets never decrease as values grow, and stay in the array up to
 * 2^64 - 1. */
static void test_hist_buckets(void)
{
    int good = 1;
    unsigned last = 0;
    for (unsigned shift = 2; shift < 64 && good; shift++) {
        for (uint64_t off = 0; off < 3; off++) {
            uint64_t v = (UINT64_C(1) << shift) - 1 + off;
            unsigned i = hist_index(v);
            if (i >= HIST_BUCKETS || i < last) {
                printf("# value %llu: bucket %u\n", (unsigned long long)v, i);
                good = 0;
            }
            last = i;
        }
    }
    good = good && hist_index(UINT64_MAX) == HIST_BUCKETS - 1;
    tb_ok(good, "hist: buckets grow with the value and cover 2^64");
}

/* The alias table gives each key its Zipf probability, and sampling
 * follows it. */
static void test_dist_zipf(void)
{
    const uint32_t n = 1000;
    const double s = 0.99;
    const uint64_t seed = 42;
    dist d;
    int good = dist_init(&d, n, s);
    double h = 0;
    for (uint32_t k = 1; k <= n; k++)
        h += pow(k, -s);
    for (uint32_t k = 0; k < n && good; k++) {
        double want = pow(k + 1, -s) / h;
        if (fabs(dist_prob(&d, k) - want) > 1e-9) {
            printf("# key %u: probability %g, want %g\n", k,
                   dist_prob(&d, k), want);
            good = 0;
        }
    }
    uint32_t *count = calloc(n, sizeof(*count));
    rng r;
    rng_seed(&r, seed);
    const uint32_t draws = 2000000;
    for (uint32_t i = 0; good && count != NULL && i < draws; i++)
        count[dist_pick(&d, rng_next(&r))]++;
    /* Key 0 has p = 0.134: its count is within 5 sigma. */
    double p0 = pow(1, -s) / h;
    double sigma = sqrt(draws * p0 * (1 - p0));
    if (good && count != NULL && fabs(count[0] - draws * p0) > 5 * sigma) {
        printf("# seed %llu: key 0 drawn %u times, want %.0f\n",
               (unsigned long long)seed, count[0], draws * p0);
        good = 0;
    }
    tb_ok(good && count != NULL, "dist: Zipf alias table is exact, sampling "
          "follows it");
    free(count);
    dist_free(&d);
}

static void test_dist_uniform(void)
{
    dist d;
    int good = dist_init(&d, 10, 0);
    rng r;
    uint32_t count[10] = {0};
    rng_seed(&r, 1);
    for (int i = 0; good && i < 100000; i++) {
        uint32_t k = dist_pick(&d, rng_next(&r));
        if (k >= 10)
            good = 0;
        else
            count[k]++;
    }
    for (int k = 0; good && k < 10; k++)
        good = count[k] > 9500 && count[k] < 10500;
    tb_ok(good, "dist: uniform keys stay in range and are even");
    dist_free(&d);
}

static void test_kv(void)
{
    char key[KV_KEY_LEN + 1];
    uint32_t n = 0, lo = 0, hi = 0;
    int good = 1;

    kv_key(key, 42);
    key[KV_KEY_LEN] = '\0';
    good = good && strcmp(key, "key:0000000042") == 0;
    good = good && kv_key_parse(key, KV_KEY_LEN, &n) && n == 42;
    kv_key(key, UINT32_MAX);
    good = good && kv_key_parse(key, KV_KEY_LEN, &n) && n == UINT32_MAX;
    good = good && !kv_key_parse("key:000000004", 13, &n);
    good = good && !kv_key_parse("kez:0000000042", 14, &n);
    good = good && !kv_key_parse("key:99999999999", 15, &n);
    good = good && kv_parse_sizes("100", &lo, &hi) && lo == 100 && hi == 100;
    good = good && kv_parse_sizes("1-4096", &lo, &hi) && lo == 1 && hi == 4096;
    good = good && !kv_parse_sizes("0", &lo, &hi);
    good = good && !kv_parse_sizes("10-5", &lo, &hi);
    good = good && !kv_parse_sizes("2000000", &lo, &hi);
    good = good && !kv_parse_sizes("5x", &lo, &hi);
    tb_ok(good, "kv: key format round-trips, size arguments parse");

    kv_values a, b;
    good = kv_values_init(&a, 10, 5000) && kv_values_init(&b, 10, 5000);
    for (uint32_t k = 0; good && k < 10000; k++) {
        uint32_t len = kv_value_len(&a, k);
        good = len >= 10 && len <= 5000 && len == kv_value_len(&b, k) &&
               memcmp(kv_value(&a, k), kv_value(&b, k), len) == 0 &&
               memchr(kv_value(&a, k), ' ', len) == NULL &&
               memchr(kv_value(&a, k), '\n', len) == NULL;
    }
    /* Neighbouring keys get different values. */
    int differ = 0;
    for (uint32_t k = 0; good && k < 1000; k++)
        differ += memcmp(kv_value(&a, k), kv_value(&a, k + 1), 10) != 0;
    tb_ok(good && differ > 990, "kv: values are deterministic, in range, "
          "printable, and differ between keys");
    kv_values_free(&a);
    kv_values_free(&b);
}

/* The background group's rate: one request due at the start, then rate
 * a second; what was issued is taken off; no limit at rate 0. */
static void test_allowance(void)
{
    int good = 1;
    good = good && ld_allowance(0, 123456789, 1000000) == UINT64_MAX;
    good = good && ld_allowance(1000, 0, 0) == 1;
    good = good && ld_allowance(1000, 0, 1) == 0;
    good = good && ld_allowance(1000, 999999, 1) == 0;   /* 1.999 due */
    good = good && ld_allowance(1000, 1000000, 1) == 1;  /* 2 due */
    good = good && ld_allowance(1000, 1000000000, 0) == 1001;
    good = good && ld_allowance(1000, 1000000000, 2000) == 0;
    good = good && ld_allowance(2.5, 2000000000, 3) == 3; /* 6 due */
    /* A long run at a high rate neither overflows nor stops. */
    good = good && ld_allowance(1e9, UINT64_C(3600) * 1000000000, 0) ==
                   UINT64_C(3600) * 1000000000 + 1;
    /* Issuing whatever is allowed, step by step, keeps the rate. */
    uint64_t issued = 0;
    for (uint64_t t = 0; t <= 1000000000; t += 50000)
        issued += ld_allowance(20000, t, issued);
    good = good && issued == 20001; /* the last step was at exactly 1 s */
    tb_ok(good, "tc-load: --bg-rate allowance keeps the rate, none below "
          "0, no limit at 0");
}

/* The background group's keys: uniform in [offset, offset + n). */
static void test_bg_keys(void)
{
    const uint64_t seed = 9;
    const uint32_t n = 7, offset = 4000000000u;
    uint32_t count[7] = {0};
    rng r;
    int good = 1;
    rng_seed(&r, seed);
    for (int i = 0; good && i < 70000; i++) {
        uint32_t k = offset + rng_below(rng_next(&r), n);
        if (k < offset || k - offset >= n)
            good = 0;
        else
            count[k - offset]++;
    }
    for (uint32_t k = 0; good && k < n; k++)
        good = count[k] > 9500 && count[k] < 10500;
    if (!good)
        printf("# seed %llu\n", (unsigned long long)seed);
    tb_ok(good, "tc-load: background keys stay in their offset range and "
          "are even");
}

int main(void)
{
    test_hist_uniform();
    test_hist_buckets();
    test_dist_zipf();
    test_dist_uniform();
    test_kv();
    test_allowance();
    test_bg_keys();
    printf("1..%d\n", tb_n);
    return tb_failed ? 1 : 0;
}
