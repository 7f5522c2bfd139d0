/*
 * zc.h - value compression: zstd per value, with a context per thread.
 *
 * A value is compressed when it pays and stored raw otherwise; the record
 * says which (its codec, ZC_RAW or ZC_ZSTD, and a dictionary id).
 *
 * When it pays. A value is stored raw when
 *   - compression is off (level 0), or the value is shorter than the
 *     context's min_size, or
 *   - zstd does not save at least max(8 bytes, 1/16 of the value).
 * Every compressed value costs a decompression on each disk read, so a
 * saving of a few percent is not worth it; and a value that does not
 * shrink at all never costs the reader anything.
 *
 * Measured (tests/unit/test_zc.c, JSON-like records, on the build
 * machine, where the zstd command line tool reaches the same speeds):
 *   values     level  ratio  compress   decompress (of raw bytes)
 *   100-500 B    1    1.54    45 MB/s   110 MB/s
 *   100-500 B    3    1.54    43 MB/s   118 MB/s
 *   1-8 KiB      1    3.80   269 MB/s   656 MB/s
 *   1-8 KiB      3    3.85   224 MB/s   633 MB/s
 *   1-8 KiB      9    4.16    40 MB/s   616 MB/s
 * A small value costs a few microseconds either way, mostly zstd's fixed
 * cost per frame, and shrinks little on its own: trained dictionaries
 * (below) are what make small values pay.
 *
 * Stored format of ZC_ZSTD: one zstd frame without the content size (the
 * record holds the raw length), without a checksum (the record's CRC-32C
 * covers the stored bytes) and without a dictionary id in the frame (the
 * record holds it). Its fixed cost is 9 bytes (magic 4, frame header 2,
 * block header 3). Decompression into a buffer of the record's raw length
 * can never write past it, and a frame that decodes to any other length
 * is refused.
 *
 * Dictionaries. Values name the dictionary they were compressed with; 0
 * is none, the only one so far. Trained dictionaries (ZDICT, kept in the
 * index) will plug in here: zc_dict_id() will name the one zc_compress()
 * used, and zc_decompress_dict() will find the one a record names.
 *
 * Threads. A zc belongs to one thread at a time: it holds zstd's
 * compression and decompression contexts, reused for every value, so no
 * value allocates. zstd sizes its work space for the largest value seen
 * and keeps it; it gives it back only after 128 values in a row would
 * need less than a third of it, and grows again when a large value comes.
 */
#ifndef TC_ZC_H
#define TC_ZC_H

#include <stddef.h>
#include <stdint.h>

#include "tiercache.h"

/* Codecs, as records store them (seg.h: SEG_RAW, SEG_ZSTD). */
enum { ZC_RAW = 0, ZC_ZSTD = 1 };

typedef struct zc zc;

/*
 * Creates a context. level is a zstd level (ZSTD_minCLevel()..
 * ZSTD_maxCLevel(), 1..19 being the usual range, 3 zstd's default), or 0
 * for never compressing; a context of any level decompresses. Values
 * shorter than min_size are stored raw. On TC_OK *out is a new context,
 * to be freed with zc_free(). Errors: TC_EINVAL (level out of range),
 * TC_ENOMEM.
 */
tc_status zc_new(int level, size_t min_size, zc **out);

/* Frees the context; *z becomes NULL. Does nothing when *z is NULL. */
void zc_free(zc **z);

/*
 * The most bytes zc_compress() writes for a value of len bytes: the size
 * a compressed value must fit in to pay (always less than len, 0 for
 * values too short to ever pay). A dst of this size never loses a
 * compression that pays.
 */
size_t zc_bound(size_t len);

/*
 * Compresses the len bytes at src into dst (cap bytes) when it pays:
 * returns ZC_ZSTD with *out_len the stored length, to be recorded with
 * zc_dict_id(z). Otherwise returns ZC_RAW: store src as it is; dst may
 * have been written and holds nothing of use. Never fails: any trouble
 * in zstd (a cap too small included) means ZC_RAW.
 */
int zc_compress(zc *z, const void *src, size_t len, void *dst, size_t cap,
                size_t *out_len);

/* The dictionary that zc_compress() uses, to be recorded with each
 * ZC_ZSTD value; 0 (none) for now. */
uint32_t zc_dict_id(const zc *z);

/*
 * Restores a value stored with codec (ZC_RAW or ZC_ZSTD) and no
 * dictionary: the len stored bytes at src become exactly raw_len bytes at
 * dst. Writes nothing past dst + raw_len, whatever src holds. Errors:
 * TC_ECORRUPT when src does not decode to raw_len bytes (damaged or
 * truncated frame, wrong raw_len, ZC_RAW with len != raw_len) or codec is
 * unknown; dst's content is then undefined.
 */
tc_status zc_decompress(zc *z, int codec, const void *src, size_t len,
                        void *dst, size_t raw_len);

/* As zc_decompress(), for a value recorded with dictionary dict_id. Only
 * 0 is known for now: any other id gives TC_ECORRUPT. */
tc_status zc_decompress_dict(zc *z, int codec, uint32_t dict_id,
                             const void *src, size_t len, void *dst,
                             size_t raw_len);

/* Bytes of memory the context holds (zstd's contexts and work space). */
size_t zc_bytes(const zc *z);

#endif /* TC_ZC_H */
