/*
 * kv.c - the pattern buffer and parsers behind kv.h's keys and values.
 *
 * The pattern is generated from a fixed seed, so every tool in every run
 * derives the same bytes: the writer and the reader of a value never need
 * to exchange anything but the value-size range.
 */
#include "kv.h"

#include <errno.h>
#include <stdlib.h>

/* The pattern's alphabet: printable, and no byte a text protocol treats
 * specially (space, CR, LF). */
static const char kv_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define KV_PATTERN_SEED UINT64_C(0x7469657263616368) /* "tiercach" */

static bool kv_parse_u32(const char *s, char **end, uint32_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, end, 10);
    if (errno != 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool kv_parse_sizes(const char *arg, uint32_t *vmin, uint32_t *vmax)
{
    char *end;
    uint32_t lo, hi;

    if (!kv_parse_u32(arg, &end, &lo))
        return false;
    if (*end == '\0') {
        hi = lo;
    } else if (*end == '-') {
        if (!kv_parse_u32(end + 1, &end, &hi) || *end != '\0')
            return false;
    } else {
        return false;
    }
    if (lo == 0 || hi < lo || hi > KV_VALUE_MAX)
        return false;
    *vmin = lo;
    *vmax = hi;
    return true;
}

bool kv_values_init(kv_values *kv, uint32_t vmin, uint32_t vmax)
{
    size_t len = (size_t)KV_PATTERN_SPAN + vmax;
    char *p = malloc(len);
    if (p == NULL)
        return false;

    uint64_t state = KV_PATTERN_SEED;
    for (size_t i = 0; i < len; i += 8) {
        state += UINT64_C(0x9e3779b97f4a7c15);
        uint64_t r = kv_mix(state);
        for (size_t j = 0; j < 8 && i + j < len; j++) {
            p[i + j] = kv_alphabet[r & 63];
            r >>= 8;
        }
    }
    kv->vmin = vmin;
    kv->vmax = vmax;
    kv->pattern = p;
    return true;
}

void kv_values_free(kv_values *kv)
{
    free(kv->pattern);
    kv->pattern = NULL;
}

bool kv_key_parse(const char *key, size_t len, uint32_t *n)
{
    if (len != KV_KEY_LEN || key[0] != 'k' || key[1] != 'e' ||
        key[2] != 'y' || key[3] != ':')
        return false;
    uint64_t v = 0;
    for (size_t i = KV_KEY_PREFIX_LEN; i < KV_KEY_LEN; i++) {
        unsigned d = (unsigned char)key[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + d;
    }
    if (v > UINT32_MAX)
        return false;
    *n = (uint32_t)v;
    return true;
}
