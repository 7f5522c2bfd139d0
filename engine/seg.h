/*
 * seg.h - the on-disk format of the journal: segment files and records.
 *
 * The data directory holds the journal as a row of segment files, each
 * named seg-<id as 16 hex digits>.log, ids increasing, each preallocated
 * to the same size (tc_config.segment_size, at least twice the largest
 * item). A segment is written once, front to back, by the journal writer;
 * records never span two segments. The LMDB index beside them (idx.h)
 * says where the live record of each key is.
 *
 * A segment starts with a 64-byte header (all integers little-endian):
 *
 *    0  8  magic "TCSEG\0\0\1"
 *    8  4  format version (SEG_FORMAT, 2; format 1 is read too)
 *   12  4  header size (64)
 *   16  8  segment id
 *   24  8  segment size in bytes
 *   32  8  LSN of the first record (0 when none yet)
 *   40 20  reserved, zero
 *   60  4  CRC-32C of bytes 0..59
 *
 * Records follow from offset 64, each starting on an 8-byte boundary:
 *
 *    0  4  magic 0x31524354 ("TCR1")
 *    4  4  CRC-32C of bytes 8 .. 8 + 40 + klen + stored length
 *    8  8  LSN, unique, increasing in the order records are written
 *   16  1  type: SEG_SET, SEG_DELETE, SEG_TOUCH, SEG_FLUSH
 *   17  1  codec of the value: 0 raw, 1 zstd
 *   18  1  key length (1..250; 0 for SEG_FLUSH)
 *   19  1  item state: SEG_M_* (format 2; zero in format 1)
 *   20  4  client flags
 *   24  4  expiry time, absolute unix seconds, 0 = never
 *   28  4  stored length: value bytes in the record (compressed or not)
 *   32  4  raw length: the value's length
 *   36  4  dictionary id (0 = none)
 *   40  8  CAS
 *   48  .. key, then the stored value, then zero padding to 8 bytes
 *
 * A SEG_DELETE names a key and carries no value. A SEG_TOUCH names a key
 * and carries its new expiry time and item state. A SEG_FLUSH carries no key: every
 * record of a lower LSN is flushed; its expiry field is the time the
 * flush took effect.
 *
 * After the last record a segment holds zeros (it was preallocated), so
 * its end is the first 8-byte boundary whose 4 bytes are not the magic.
 * Recovery (recover.c) tells a torn tail from damage in the middle by
 * whether any valid record follows.
 */
#ifndef TC_SEG_H
#define TC_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_FORMAT 2
/* The oldest format this build reads: format 1 differs only in having no
 * item state (byte 19 is zero there). */
#define SEG_FORMAT_MIN 1
#define SEG_HDR_SIZE 64
#define SEG_REC_HDR 48
#define SEG_REC_MAGIC 0x31524354u
#define SEG_ALIGN 8

enum { SEG_SET = 1, SEG_DELETE = 2, SEG_TOUCH = 3, SEG_FLUSH = 4 };
enum { SEG_RAW = 0, SEG_ZSTD = 1 };
/* Item state bits (memcached's meta commands: a stale item, a recache
 * win already handed out, a key the client names in base64); the same
 * values as ITEM_M_*. */
#define SEG_M_STALE 0x01u
#define SEG_M_WON 0x02u
#define SEG_M_KEY64 0x04u
#define SEG_M_ALL (SEG_M_STALE | SEG_M_WON | SEG_M_KEY64)

typedef struct seg_header {
    uint32_t format;
    uint64_t id;
    uint64_t size;
    uint64_t first_lsn;
} seg_header;

/* A record's header fields, decoded. */
typedef struct seg_rec {
    uint64_t lsn;
    uint8_t type;
    uint8_t codec;
    uint8_t klen;
    uint8_t meta;  /* SEG_M_* */
    uint32_t flags;
    uint32_t exptime;
    uint32_t stored_len;
    uint32_t raw_len;
    uint32_t dict;
    uint64_t cas;
} seg_rec;

/* Bytes a record takes in a segment, padding included. */
static inline size_t seg_rec_size(size_t klen, size_t stored_len)
{
    size_t n = SEG_REC_HDR + klen + stored_len;
    return (n + SEG_ALIGN - 1) & ~(size_t)(SEG_ALIGN - 1);
}

/* The file name of segment id ("seg-%016llx.log"); buf holds 32 bytes. */
void seg_name(uint64_t id, char buf[32]);
/* Parses a segment file name; false if name is not one. */
bool seg_parse_name(const char *name, uint64_t *id);

void seg_header_encode(const seg_header *h, unsigned char out[SEG_HDR_SIZE]);
/* Decodes and checks a header: false if its magic, CRC or sizes are
 * wrong. *format is set even when it is not SEG_FORMAT (the caller
 * refuses such a directory). */
bool seg_header_decode(const unsigned char in[SEG_HDR_SIZE], seg_header *h);

/*
 * Writes a whole record at out (seg_rec_size() bytes, padding zeroed):
 * the header from r, the key, and the stored value. Computes the CRC.
 */
void seg_rec_encode(unsigned char *out, const seg_rec *r, const void *key,
                    const void *stored);
/*
 * The same record without its stored value and padding: writes the
 * header and the key at out, with the CRC of the whole record (stored
 * is read, not copied), and returns their size (SEG_REC_HDR + klen). The
 * caller puts the stored value after them, then seg_rec_size() - head -
 * stored_len zero bytes (the journal writer writes values from their
 * items this way, without copying them).
 */
size_t seg_rec_encode_head(unsigned char *out, const seg_rec *r,
                           const void *key, const void *stored);

/*
 * Checks the record at p, of which avail bytes are readable: magic,
 * sane lengths, and the CRC. Returns its total size (seg_rec_size) and
 * fills *r, *key and *stored (pointers into p); 0 if it is not a whole
 * valid record.
 */
size_t seg_rec_decode(const unsigned char *p, size_t avail, seg_rec *r,
                      const unsigned char **key,
                      const unsigned char **stored);
/*
 * seg_rec_decode's checks of the header alone (magic and sane lengths,
 * not the CRC), of the SEG_REC_HDR bytes at p, which must be readable;
 * the rest of the record need not be. For a reader that trusts nothing
 * in the record but where it ends and which key it names, and checks the
 * key elsewhere (reclaim: against the index). Returns the record's total
 * size (which may pass the bytes at hand; the key, if SEG_REC_HDR +
 * r->klen of them are, is at p + SEG_REC_HDR), or 0 if the header is not
 * sane.
 */
uint64_t seg_rec_head(const unsigned char *p, seg_rec *r);

/* True when the 8 bytes at p can start a record (its magic). */
bool seg_rec_magic_at(const unsigned char *p);

#endif /* TC_SEG_H */
