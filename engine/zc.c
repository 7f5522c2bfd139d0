/*
 * zc.c - value compression with zstd (see zc.h for the rules and the
 * stored format).
 *
 * Invariants: cctx is NULL exactly when level is 0 (the context never
 * compresses); dctx is never NULL. Both keep their parameters for the
 * context's life: zstd's one-shot calls reset the session, not the
 * parameters.
 */
#include "zc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* A frame's fixed cost (zc.h): no shorter value can pay. */
#define ZC_FRAME_MIN 9

struct zc {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    int level;
    size_t min_size;
};

static size_t zc_margin(size_t len)
{
    return len / 16 > 8 ? len / 16 : 8;
}

size_t zc_bound(size_t len)
{
    size_t m = zc_margin(len);
    return len > m ? len - m : 0;
}

static bool zc_set(ZSTD_CCtx *c, ZSTD_cParameter p, int v)
{
    return !ZSTD_isError(ZSTD_CCtx_setParameter(c, p, v));
}

tc_status zc_new(int level, size_t min_size, zc **out)
{
    tc_status st = TC_ENOMEM;
    zc *z = NULL;

    if (level != 0 && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
        return TC_EINVAL;
    z = calloc(1, sizeof(*z));
    if (z == NULL)
        goto out;
    z->level = level;
    z->min_size = min_size;
    z->dctx = ZSTD_createDCtx();
    if (z->dctx == NULL)
        goto out;
    if (level != 0) {
        z->cctx = ZSTD_createCCtx();
        if (z->cctx == NULL)
            goto out;
        if (!zc_set(z->cctx, ZSTD_c_compressionLevel, level) ||
            !zc_set(z->cctx, ZSTD_c_contentSizeFlag, 0) ||
            !zc_set(z->cctx, ZSTD_c_checksumFlag, 0) ||
            !zc_set(z->cctx, ZSTD_c_dictIDFlag, 0)) {
            st = TC_EINVAL;
            goto out;
        }
    }
    *out = z;
    z = NULL;
    st = TC_OK;
out:
    zc_free(&z);
    return st;
}

void zc_free(zc **zp)
{
    zc *z = *zp;

    if (z == NULL)
        return;
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeDCtx(z->dctx);
    free(z);
    *zp = NULL;
}

int zc_compress(zc *z, const void *src, size_t len, void *dst, size_t cap,
                size_t *out_len)
{
    size_t room = zc_bound(len);
    size_t n;

    if (z->cctx == NULL || len < z->min_size)
        return ZC_RAW;
    if (cap < room)
        room = cap;
    if (room < ZC_FRAME_MIN)
        return ZC_RAW;
    /* With room below the raw size, zstd gives up (dstSize_tooSmall) as
     * soon as the frame cannot fit: a value that does not pay costs at
     * most one pass over it. */
    n = ZSTD_compress2(z->cctx, dst, room, src, len);
    if (ZSTD_isError(n) || n > room)
        return ZC_RAW;
    *out_len = n;
    return ZC_ZSTD;
}

uint32_t zc_dict_id(const zc *z)
{
    (void)z;
    return 0;
}

tc_status zc_decompress_dict(zc *z, int codec, uint32_t dict_id,
                             const void *src, size_t len, void *dst,
                             size_t raw_len)
{
    unsigned char none[1];
    size_t n;

    if (dict_id != 0)
        return TC_ECORRUPT;
    switch (codec) {
    case ZC_RAW:
        if (len != raw_len)
            return TC_ECORRUPT;
        if (raw_len > 0)
            memcpy(dst, src, raw_len);
        return TC_OK;
    case ZC_ZSTD:
        /* zstd is not given a null pointer even for no bytes. */
        if (raw_len == 0)
            dst = none;
        n = ZSTD_decompressDCtx(z->dctx, dst, raw_len, src, len);
        if (ZSTD_isError(n) || n != raw_len)
            return TC_ECORRUPT;
        return TC_OK;
    default:
        return TC_ECORRUPT;
    }
}

tc_status zc_decompress(zc *z, int codec, const void *src, size_t len,
                        void *dst, size_t raw_len)
{
    return zc_decompress_dict(z, codec, 0, src, len, dst, raw_len);
}

size_t zc_bytes(const zc *z)
{
    return sizeof(*z) + ZSTD_sizeof_CCtx(z->cctx) +
           ZSTD_sizeof_DCtx(z->dctx);
}
