/*
 * test_zc.c - value compression (engine/zc.c): the "pays" rule and its
 * bound, round trips of compressible (JSON-like) and incompressible
 * (random) values of many sizes, the size threshold, level 0, damaged
 * input (flipped bytes, truncation, a wrong raw length, garbage) that
 * must never crash nor write past the raw length, and the ratio and speed
 * on a JSON-like corpus (printed).
 *
 * Buffers handed to zc are allocated at their exact size, so that the
 * sanitizer build catches any write or read past them; where a test
 * needs to see such a write in the normal build, guard bytes follow.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "tctest.h"
#include "zc.h"

#define MIB ((size_t)1024 * 1024)
#define MIN_SIZE 64
#define GUARD 64

#if defined(__SANITIZE_ADDRESS__)
#define SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SLOW_BUILD 1
#endif
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    TCT_CHECK(p != NULL);
    return p;
}

/* Appends s to buf (at *pos, up to len). */
static void put(char *buf, size_t len, size_t *pos, const char *s)
{
    while (*s != '\0' && *pos < len)
        buf[(*pos)++] = *s++;
}

/*
 * Fills buf with len bytes of JSON-like text: records of a user store
 * with field names that repeat and values drawn from small vocabularies,
 * cut at len.
 */
static void fill_json(char *buf, size_t len, uint64_t *state)
{
    static const char *const names[] = {"alice", "bob", "carol", "dave",
                                        "erin", "frank", "grace", "heidi"};
    static const char *const tags[] = {"premium", "trial", "eu", "us",
                                       "mobile", "web", "beta", "churned"};
    static const char *const words[] = {
        "the", "quick", "order", "shipped", "returned", "payment",
        "failed", "retry", "customer", "asked", "for", "a", "refund",
        "delivery", "was", "late", "again", "thanks"};
    size_t pos = 0;
    char num[64];

    put(buf, len, &pos, "[");
    while (pos < len) {
        uint64_t r = tct_rand(state);
        snprintf(num, sizeof(num), "%llu", (unsigned long long)(r % 1000000));
        put(buf, len, &pos, "{\"id\":");
        put(buf, len, &pos, num);
        put(buf, len, &pos, ",\"name\":\"");
        put(buf, len, &pos, names[r >> 20 & 7]);
        put(buf, len, &pos, "\",\"email\":\"");
        put(buf, len, &pos, names[r >> 23 & 7]);
        snprintf(num, sizeof(num), "%u", (unsigned)(r >> 26 & 0xfff));
        put(buf, len, &pos, num);
        put(buf, len, &pos, "@example.com\",\"active\":");
        put(buf, len, &pos, (r >> 38 & 1) ? "true" : "false");
        snprintf(num, sizeof(num), ",\"score\":%u.%02u",
                 (unsigned)(r >> 39 & 127), (unsigned)(r >> 46 & 63));
        put(buf, len, &pos, num);
        put(buf, len, &pos, ",\"tags\":[\"");
        put(buf, len, &pos, tags[r >> 52 & 7]);
        put(buf, len, &pos, "\",\"");
        put(buf, len, &pos, tags[r >> 55 & 7]);
        snprintf(num, sizeof(num), "\"],\"created\":\"2024-%02u-%02uT%02u:"
                                   "%02u:00Z\",\"note\":\"",
                 (unsigned)(r >> 58 & 7) + 1, (unsigned)(r & 15) + 1,
                 (unsigned)(r >> 4 & 15), (unsigned)(r >> 8 & 31));
        put(buf, len, &pos, num);
        for (int w = 0, nw = (int)(r >> 13 & 7); w < nw; w++) {
            put(buf, len, &pos,
                words[tct_rand(state) % (sizeof(words) / sizeof(words[0]))]);
            put(buf, len, &pos, w + 1 < nw ? " " : "");
        }
        put(buf, len, &pos, "\"},");
    }
}

static void fill_random(unsigned char *buf, size_t len, uint64_t *state)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = tct_rand(state);
        memcpy(buf + i, &r, len - i < 8 ? len - i : 8);
    }
}

static const size_t sizes[] = {0,     1,     2,     8,      9,
                               15,    16,    17,    MIN_SIZE - 1,
                               MIN_SIZE,     MIN_SIZE + 1,  100,
                               255,   256,   1000,  4095,   4096,
                               4097,  65535, 65536, 65537,  MIB - 1,
                               MIB};

/*
 * Compresses src and, when it paid, decompresses into a buffer of exactly
 * len bytes and compares. Returns the codec.
 */
static int round_trip(zc *z, const void *src, size_t len, size_t *stored)
{
    size_t cap = zc_bound(len), out_len = 0;
    unsigned char *dst = xmalloc(cap);
    unsigned char *back = xmalloc(len);
    int codec = zc_compress(z, src, len, dst, cap, &out_len);

    TCT_CHECK(codec == ZC_RAW || codec == ZC_ZSTD);
    if (codec == ZC_ZSTD) {
        TCT_CHECK(out_len <= cap);
        TCT_CHECK(out_len + 8 <= len && out_len + len / 16 <= len);
        TCT_EQ_U64(zc_dict_id(z), 0);
        TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, dst, out_len, back, len), TC_OK);
        TCT_CHECK(memcmp(back, src, len) == 0);
        *stored = out_len;
    } else {
        TCT_EQ_INT(zc_decompress(z, ZC_RAW, src, len, back, len), TC_OK);
        TCT_CHECK(len == 0 || memcmp(back, src, len) == 0);
        *stored = len;
    }
    free(back);
    free(dst);
    return codec;
}

static void bound_rules(void)
{
    TCT_EQ_U64(zc_bound(0), 0);
    TCT_EQ_U64(zc_bound(8), 0);
    TCT_EQ_U64(zc_bound(9), 1);
    TCT_EQ_U64(zc_bound(100), 92);
    TCT_EQ_U64(zc_bound(128), 120);
    TCT_EQ_U64(zc_bound(144), 135);
    TCT_EQ_U64(zc_bound(MIB), MIB - MIB / 16);
    for (size_t len = 0; len < 100000; len += 7) {
        size_t b = zc_bound(len);
        TCT_CHECK(b < len || len == 0);
        TCT_CHECK(b + 8 <= len || b == 0);
        TCT_CHECK(b + len / 16 <= len);
    }
}

static void new_checks_level(void)
{
    zc *z = NULL;
    TCT_EQ_INT(zc_new(ZSTD_maxCLevel() + 1, 0, &z), TC_EINVAL);
    TCT_EQ_INT(zc_new(ZSTD_minCLevel() - 1, 0, &z), TC_EINVAL);
    TCT_CHECK(z == NULL);
    const int ok[] = {0, 1, 3, 19, ZSTD_maxCLevel(), -5};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        TCT_EQ_INT(zc_new(ok[i], 0, &z), TC_OK);
        TCT_CHECK(zc_bytes(z) > 0);
        zc_free(&z);
        TCT_CHECK(z == NULL);
    }
    zc_free(&z); /* NULL: nothing */
}

static void round_trips_json(void)
{
    uint64_t state = tct_seed() ^ 1;
    zc *z = NULL;
    TCT_EQ_INT(zc_new(3, MIN_SIZE, &z), TC_OK);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i], stored;
        char *v = xmalloc(len);
        fill_json(v, len, &state);
        int codec = round_trip(z, v, len, &stored);
        if (len < MIN_SIZE)
            TCT_EQ_INT(codec, ZC_RAW);
        if (len >= 256 && codec != ZC_ZSTD) {
            printf("# %zu bytes of JSON-like text stored raw\n", len);
            TCT_EQ_INT(codec, ZC_ZSTD);
        }
        free(v);
    }
    zc_free(&z);
}

static void round_trips_random(void)
{
    uint64_t state = tct_seed() ^ 2;
    zc *z = NULL;
    TCT_EQ_INT(zc_new(3, MIN_SIZE, &z), TC_OK);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i], stored;
        unsigned char *v = xmalloc(len);
        fill_random(v, len, &state);
        /* Random bytes never shrink by 1/16. */
        TCT_EQ_INT(round_trip(z, v, len, &stored), ZC_RAW);
        TCT_EQ_U64(stored, len);
        free(v);
    }
    zc_free(&z);
}

/* Zeros shrink to a frame of a few bytes: only the threshold and level 0
 * keep them raw. */
static void threshold_and_level_zero(void)
{
    zc *z = NULL, *off = NULL;
    size_t stored;
    unsigned char *v = calloc(1, MIB);
    TCT_CHECK(v != NULL);
    TCT_EQ_INT(zc_new(1, MIN_SIZE, &z), TC_OK);
    TCT_EQ_INT(zc_new(0, 0, &off), TC_OK);

    TCT_EQ_INT(round_trip(z, v, MIN_SIZE - 1, &stored), ZC_RAW);
    TCT_EQ_INT(round_trip(z, v, MIN_SIZE, &stored), ZC_ZSTD);
    TCT_EQ_INT(round_trip(z, v, MIN_SIZE + 1, &stored), ZC_ZSTD);
    TCT_EQ_INT(round_trip(z, v, MIB, &stored), ZC_ZSTD);
    printf("# 1 MiB of zeros: %zu bytes\n", stored);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        TCT_EQ_INT(round_trip(off, v, sizes[i], &stored), ZC_RAW);

    /* Level 0 still reads what another context wrote. */
    size_t out_len = 0, len = 4096;
    unsigned char *dst = xmalloc(zc_bound(len)), *back = xmalloc(len);
    TCT_EQ_INT(zc_compress(z, v, len, dst, zc_bound(len), &out_len),
               ZC_ZSTD);
    memset(back, 1, len);
    TCT_EQ_INT(zc_decompress(off, ZC_ZSTD, dst, out_len, back, len), TC_OK);
    TCT_CHECK(memcmp(back, v, len) == 0);

    /* A small min_size still never compresses what cannot pay. */
    zc *all = NULL;
    TCT_EQ_INT(zc_new(3, 0, &all), TC_OK);
    for (size_t n = 0; n <= 16; n++)
        TCT_EQ_INT(round_trip(all, v, n, &stored), ZC_RAW);
    zc_free(&all);
    free(back);
    free(dst);
    zc_free(&off);
    zc_free(&z);
    free(v);
}

/* A dst too small for the frame: ZC_RAW, nothing written past cap. */
static void small_cap_is_raw(void)
{
    uint64_t state = tct_seed() ^ 3;
    size_t len = 8192, out_len = 0, full = 0;
    char *v = xmalloc(len);
    zc *z = NULL;
    fill_json(v, len, &state);
    TCT_EQ_INT(zc_new(3, 0, &z), TC_OK);
    unsigned char *dst = xmalloc(zc_bound(len));
    TCT_EQ_INT(zc_compress(z, v, len, dst, zc_bound(len), &full), ZC_ZSTD);
    free(dst);
    for (size_t cap = 0; cap < full; cap += cap < 32 ? 1 : 97) {
        dst = xmalloc(cap);
        TCT_EQ_INT(zc_compress(z, v, len, dst, cap, &out_len), ZC_RAW);
        free(dst);
    }
    /* The same value again: the same frame (zstd wants some slack
     * beyond the frame's size, so cap == full need not do). */
    dst = xmalloc(zc_bound(len));
    TCT_EQ_INT(zc_compress(z, v, len, dst, zc_bound(len), &out_len),
               ZC_ZSTD);
    TCT_EQ_U64(out_len, full);
    free(dst);
    zc_free(&z);
    free(v);
}

/* Decompresses into a buffer with guard bytes after raw_len and checks
 * them; returns the status. */
static tc_status guarded(zc *z, const void *src, size_t len, size_t raw_len)
{
    unsigned char *dst = xmalloc(raw_len + GUARD);
    memset(dst + raw_len, 0xa5, GUARD);
    tc_status st = zc_decompress(z, ZC_ZSTD, src, len, dst, raw_len);
    for (size_t i = raw_len; i < raw_len + GUARD; i++)
        if (dst[i] != 0xa5) {
            printf("# byte %zu past raw_len %zu written\n", i - raw_len,
                   raw_len);
            TCT_CHECK(dst[i] == 0xa5);
        }
    free(dst);
    return st;
}

/*
 * Flipped bits in a stored frame. Without a frame checksum (zc.h: the
 * record's CRC covers the stored bytes) a flip in literal bytes can
 * decode to raw_len bytes of wrong data; what must never happen is a
 * crash, a write past raw_len, or an OK of another length. Prints how
 * many flips zstd itself detected.
 */
static void corrupt_flipped(void)
{
    uint64_t state = tct_seed() ^ 4;
    zc *z = NULL;
    TCT_EQ_INT(zc_new(3, 0, &z), TC_OK);
    const size_t lens[] = {300, 4096, MIB};
    size_t detected = 0, tried = 0;

    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t len = lens[k], out_len = 0;
        char *v = xmalloc(len);
        fill_json(v, len, &state);
        unsigned char *frame = xmalloc(zc_bound(len));
        TCT_EQ_INT(zc_compress(z, v, len, frame, zc_bound(len), &out_len),
                   ZC_ZSTD);
        /* Every byte of small frames, a sample of the large one. */
        size_t step = out_len > 4096 ? out_len / 1500 : 1;
        for (size_t i = 0; i < out_len; i += step) {
            unsigned bit = (unsigned)(tct_rand(&state) & 7);
            frame[i] ^= (unsigned char)(1u << bit);
            tc_status st = guarded(z, frame, out_len, len);
            TCT_CHECK(st == TC_OK || st == TC_ECORRUPT);
            detected += st == TC_ECORRUPT;
            tried++;
            frame[i] ^= (unsigned char)(1u << bit);
        }
        /* Whole bytes replaced at once, in a buffer of the exact size. */
        unsigned char *exact = xmalloc(len);
        for (int t = 0; t < 200; t++) {
            size_t i = (size_t)(tct_rand(&state) % out_len);
            unsigned char old = frame[i];
            frame[i] = (unsigned char)tct_rand(&state);
            tc_status st = zc_decompress(z, ZC_ZSTD, frame, out_len, exact,
                                         len);
            TCT_CHECK(st == TC_OK || st == TC_ECORRUPT);
            frame[i] = old;
        }
        TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, frame, out_len, exact, len),
                   TC_OK);
        TCT_CHECK(memcmp(exact, v, len) == 0);
        free(exact);
        free(frame);
        free(v);
    }
    printf("# flipped bits: %zu of %zu detected by zstd itself (the rest "
           "decode to raw_len bytes; the record's CRC-32C catches them)\n",
           detected, tried);
    zc_free(&z);
}

/* Every truncation of a frame is an error. */
static void corrupt_truncated(void)
{
    uint64_t state = tct_seed() ^ 5;
    zc *z = NULL;
    TCT_EQ_INT(zc_new(3, 0, &z), TC_OK);
    const size_t lens[] = {300, 5000, 300000};

    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t len = lens[k], out_len = 0;
        char *v = xmalloc(len);
        fill_json(v, len, &state);
        unsigned char *frame = xmalloc(zc_bound(len));
        TCT_EQ_INT(zc_compress(z, v, len, frame, zc_bound(len), &out_len),
                   ZC_ZSTD);
        unsigned char *exact = xmalloc(len);
        size_t step = out_len > 2000 ? out_len / 1000 : 1;
        for (size_t cut = 0; cut < out_len; cut += step) {
            /* A copy of exactly cut bytes: reading past it would show. */
            unsigned char *part = xmalloc(cut);
            memcpy(part, frame, cut);
            TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, part, cut, exact, len),
                       TC_ECORRUPT);
            free(part);
        }
        TCT_EQ_INT(guarded(z, frame, out_len - 1, len), TC_ECORRUPT);
        free(exact);
        free(frame);
        free(v);
    }
    zc_free(&z);
}

/* A raw length other than the value's is an error, never an overrun. */
static void corrupt_raw_len(void)
{
    uint64_t state = tct_seed() ^ 6;
    zc *z = NULL;
    TCT_EQ_INT(zc_new(3, 0, &z), TC_OK);
    const size_t lens[] = {300, 1000, 70000, MIB};

    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t len = lens[k], out_len = 0;
        char *v = xmalloc(len);
        fill_json(v, len, &state);
        unsigned char *frame = xmalloc(zc_bound(len));
        TCT_EQ_INT(zc_compress(z, v, len, frame, zc_bound(len), &out_len),
                   ZC_ZSTD);
        const size_t wrong[] = {0, 1, len - 1, len + 1, 2 * len, len / 2};
        for (size_t w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++) {
            unsigned char *exact = xmalloc(wrong[w]);
            TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, frame, out_len, exact,
                                     wrong[w]),
                       TC_ECORRUPT);
            free(exact);
            TCT_EQ_INT(guarded(z, frame, out_len, wrong[w]), TC_ECORRUPT);
        }
        /* The context is fine after the errors. */
        TCT_EQ_INT(guarded(z, frame, out_len, len), TC_OK);
        free(frame);
        free(v);
    }
    zc_free(&z);
}

/* Random bytes, alone or behind a zstd magic, and other misuse. */
static void corrupt_garbage_and_misuse(void)
{
    uint64_t state = tct_seed() ^ 7;
    static const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    zc *z = NULL;
    unsigned char junk[512], out[1024];
    size_t errors = 0, tries = 0;

    TCT_EQ_INT(zc_new(3, 0, &z), TC_OK);
    for (int t = 0; t < 20000; t++) {
        size_t len = 4 + (size_t)(tct_rand(&state) % (sizeof(junk) - 4));
        fill_random(junk, len, &state);
        if (t % 2 == 0)
            memcpy(junk, magic, sizeof(magic));
        size_t raw_len = (size_t)(tct_rand(&state) % sizeof(out));
        tc_status st = guarded(z, junk, len, raw_len);
        TCT_CHECK(st == TC_OK || st == TC_ECORRUPT);
        errors += st == TC_ECORRUPT;
        tries++;
    }
    printf("# garbage frames: %zu of %zu refused\n", errors, tries);
    TCT_CHECK(errors * 100 >= tries * 99);

    /* Raw values are copied only at their length. */
    fill_random(junk, sizeof(junk), &state);
    TCT_EQ_INT(zc_decompress(z, ZC_RAW, junk, 100, out, 100), TC_OK);
    TCT_CHECK(memcmp(out, junk, 100) == 0);
    TCT_EQ_INT(zc_decompress(z, ZC_RAW, junk, 100, out, 99), TC_ECORRUPT);
    TCT_EQ_INT(zc_decompress(z, ZC_RAW, junk, 0, NULL, 0), TC_OK);
    /* Unknown codecs and dictionaries. */
    TCT_EQ_INT(zc_decompress(z, 2, junk, 100, out, 100), TC_ECORRUPT);
    TCT_EQ_INT(zc_decompress(z, -1, junk, 100, out, 100), TC_ECORRUPT);
    TCT_EQ_INT(zc_decompress_dict(z, ZC_ZSTD, 7, junk, 100, out, 100),
               TC_ECORRUPT);
    TCT_EQ_INT(zc_decompress_dict(z, ZC_RAW, 0, junk, 10, out, 10), TC_OK);
    /* An empty stored value of a non-empty raw one. */
    TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, junk, 0, out, 10), TC_ECORRUPT);
    zc_free(&z);
}

/*
 * The context's memory settles once it has seen its largest value:
 * values of that size or the same mix again allocate nothing (its size
 * stays put). Prints the sizes.
 */
static void context_reused(void)
{
    uint64_t state = tct_seed() ^ 8;
    zc *z = NULL;
    size_t len = 64 * 1024, out_len;
    char *v = xmalloc(len);
    unsigned char *dst = xmalloc(zc_bound(len));
    unsigned char *back = xmalloc(len);
    fill_json(v, len, &state);
    TCT_EQ_INT(zc_new(3, 0, &z), TC_OK);
    size_t fresh = zc_bytes(z);

    TCT_EQ_INT(zc_compress(z, v, len, dst, zc_bound(len), &out_len),
               ZC_ZSTD);
    TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, dst, out_len, back, len), TC_OK);
    size_t warm = zc_bytes(z);
    size_t changes = 0, prev = warm;
    for (int i = 0; i < 2000; i++) {
        /* Sizes from 1/4 of the largest to all of it, as a run of values
         * of one workload would be. */
        size_t n = len / 4 + (size_t)(tct_rand(&state) % (len * 3 / 4));
        TCT_CHECK(zc_compress(z, v, n, dst, zc_bound(n), &out_len) ==
                  ZC_ZSTD);
        TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, dst, out_len, back, n), TC_OK);
        changes += zc_bytes(z) != prev;
        prev = zc_bytes(z);
    }
    printf("# context: %zu bytes new, %zu after a 64 KiB value, %zu "
           "changes of size over 2000 values of 16-64 KiB\n",
           fresh, warm, changes);
    TCT_EQ_U64(changes, 0);
    free(back);
    free(dst);
    free(v);
    zc_free(&z);
}

/*
 * The ratio (raw bytes / stored bytes, raw values counted at their size)
 * and the speed on a JSON-like corpus, per level and for small and larger
 * values. Checks only that JSON-like text of a few KiB shrinks well.
 */
static void ratio_and_speed_json(void)
{
#ifdef SLOW_BUILD
    enum { NVAL = 300 };
#else
    enum { NVAL = 3000 };
#endif
    static const struct {
        const char *name;
        size_t lo, hi;
    } bands[] = {{"100-500 B", 100, 500}, {"1-8 KiB", 1024, 8192}};
    static const int levels[] = {1, 3, 9};
    uint64_t state = tct_seed() ^ 9;

    for (size_t b = 0; b < sizeof(bands) / sizeof(bands[0]); b++) {
        char **vals = xmalloc(NVAL * sizeof(*vals));
        size_t *lens = xmalloc(NVAL * sizeof(*lens));
        size_t raw = 0;
        for (int i = 0; i < NVAL; i++) {
            lens[i] = bands[b].lo +
                      (size_t)(tct_rand(&state) % (bands[b].hi - bands[b].lo));
            vals[i] = xmalloc(lens[i]);
            fill_json(vals[i], lens[i], &state);
            raw += lens[i];
        }
        unsigned char *dst = xmalloc(bands[b].hi);
        unsigned char *back = xmalloc(bands[b].hi);
        for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
            zc *z = NULL;
            TCT_EQ_INT(zc_new(levels[l], MIN_SIZE, &z), TC_OK);
            size_t stored = 0, compressed = 0, out_len = 0, zraw = 0;
            double tc = 0, td = 0;
            for (int i = 0; i < NVAL; i++) {
                double t0 = now_s();
                int codec = zc_compress(z, vals[i], lens[i], dst,
                                        zc_bound(lens[i]), &out_len);
                double t1 = now_s();
                tc += t1 - t0;
                if (codec == ZC_ZSTD) {
                    stored += out_len;
                    compressed++;
                    zraw += lens[i];
                    t0 = now_s();
                    TCT_EQ_INT(zc_decompress(z, ZC_ZSTD, dst, out_len, back,
                                             lens[i]),
                               TC_OK);
                    td += now_s() - t0;
                    TCT_CHECK(memcmp(back, vals[i], lens[i]) == 0);
                } else {
                    stored += lens[i];
                }
            }
            double ratio = (double)raw / (double)stored;
            printf("# JSON-like %s, level %d: ratio %.2f (%zu of %d "
                   "compressed), compress %.0f MB/s, decompress %.0f MB/s\n",
                   bands[b].name, levels[l], ratio, compressed, NVAL,
                   (double)raw / tc / 1e6,
                   td > 0 ? (double)zraw / td / 1e6 : 0.0);
            if (bands[b].lo >= 1024)
                TCT_CHECK(ratio >= 2.0);
            zc_free(&z);
        }
        for (int i = 0; i < NVAL; i++)
            free(vals[i]);
        free(back);
        free(dst);
        free(lens);
        free(vals);
    }
}

TCT_MAIN(TCT(bound_rules), TCT(new_checks_level), TCT(round_trips_json),
         TCT(round_trips_random), TCT(threshold_and_level_zero),
         TCT(small_cap_is_raw), TCT(corrupt_flipped), TCT(corrupt_truncated),
         TCT(corrupt_raw_len), TCT(corrupt_garbage_and_misuse),
         TCT(context_reused), TCT(ratio_and_speed_json))
