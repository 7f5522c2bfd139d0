/*
 * kv.h - the keys and values the benchmark tools agree on.
 *
 * tc-load writes these keys and values and checks every value it reads
 * back against them; bench/canned answers with them without storing
 * anything; bench/hitratio uses the same keys. Nothing here is random at
 * run time: the value of a key is a function of the key number and the
 * value-size range alone, so a reader can check a reply with one memcmp
 * and no table of what was written.
 *
 * Key: KV_KEY_PREFIX followed by the key number as KV_KEY_DIGITS decimal
 * digits, zero-padded ("key:0000000042", KV_KEY_LEN = 14 bytes). A fixed
 * width keeps every request of one kind the same size; the length matters
 * to memory-per-item figures, so both servers always get the same keys.
 *
 * Value: a slice of one pattern buffer of printable bytes drawn from a
 * fixed-seed generator. Key n's value starts at kv_value_offset(n) (one of
 * KV_PATTERN_SPAN places) and is kv_value_len(n) bytes long: the minimum
 * size when the range is one size, else a size in [min, max] picked by a
 * hash of n. Its flags are kv_flags(n), so flags are checked too.
 */
#ifndef TC_BENCH_KV_H
#define TC_BENCH_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_KEY_PREFIX "key:"
#define KV_KEY_PREFIX_LEN 4
#define KV_KEY_DIGITS 10
#define KV_KEY_LEN (KV_KEY_PREFIX_LEN + KV_KEY_DIGITS)

/* Values start at one of this many offsets into the pattern. */
#define KV_PATTERN_SPAN 4096u

/* The largest value size the tools accept (memcached's default -I). */
#define KV_VALUE_MAX (1024u * 1024u)

typedef struct kv_values {
    uint32_t vmin;   /* smallest value size */
    uint32_t vmax;   /* largest value size, >= vmin */
    char *pattern;   /* KV_PATTERN_SPAN + vmax bytes */
} kv_values;

/*
 * Parses a value-size argument, "N" or "MIN-MAX", into *vmin and *vmax.
 * Returns false if it is malformed, zero, or above KV_VALUE_MAX.
 */
bool kv_parse_sizes(const char *arg, uint32_t *vmin, uint32_t *vmax);

/* Builds the pattern for sizes [vmin, vmax]; false when out of memory.
 * Free with kv_values_free(). */
bool kv_values_init(kv_values *kv, uint32_t vmin, uint32_t vmax);
void kv_values_free(kv_values *kv);

/* A 64-bit mix of x (the splitmix64 finalizer), used to spread key
 * numbers. */
static inline uint64_t kv_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static inline uint32_t kv_value_len(const kv_values *kv, uint32_t n)
{
    uint32_t span = kv->vmax - kv->vmin + 1;
    if (span == 1)
        return kv->vmin;
    return kv->vmin + (uint32_t)((kv_mix((uint64_t)n + 1) >> 32) % span);
}

static inline const char *kv_value(const kv_values *kv, uint32_t n)
{
    return kv->pattern + (kv_mix(n) & (KV_PATTERN_SPAN - 1));
}

static inline uint32_t kv_flags(uint32_t n)
{
    return (n * 2654435761u) >> 16;
}

/* Writes key n's KV_KEY_LEN bytes at out (no terminator). */
static inline void kv_key(char *out, uint32_t n)
{
    out[0] = 'k';
    out[1] = 'e';
    out[2] = 'y';
    out[3] = ':';
    for (int i = KV_KEY_LEN - 1; i >= KV_KEY_PREFIX_LEN; i--) {
        out[i] = (char)('0' + n % 10);
        n /= 10;
    }
}

/*
 * Parses a key of this scheme. Returns true and sets *n if key[0..len) is
 * exactly KV_KEY_PREFIX and KV_KEY_DIGITS digits of a number below 2^32.
 */
bool kv_key_parse(const char *key, size_t len, uint32_t *n);

/* Writes v in decimal at out, returns the number of digits (at most 10). */
static inline size_t kv_utoa(char *out, uint32_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

#endif /* TC_BENCH_KV_H */
