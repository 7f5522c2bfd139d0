/*
 * test_seg.c - the journal's on-disk format (engine/seg.c) and its
 * checksum (engine/crc32c.c): known CRC-32C values, hardware and table
 * paths agreeing, segment headers and records round-tripping, and every
 * kind of damage (a flipped bit anywhere, a cut record, bad lengths)
 * refused rather than misread.
 */
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "seg.h"
#include "tctest.h"

static void crc_known_values(void)
{
    TCT_EQ_U64(crc32c(0, "123456789", 9), 0xe3069283u);
    TCT_EQ_U64(crc32c(0, "", 0), 0);
    static unsigned char zeros[32];
    TCT_EQ_U64(crc32c(0, zeros, 32), 0x8a9136aau);
    /* Extending in pieces gives the same value as at once. */
    static unsigned char buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    uint32_t whole = crc32c(0, buf, sizeof(buf));
    for (size_t cut = 0; cut <= sizeof(buf); cut += 37) {
        uint32_t c = crc32c(0, buf, cut);
        TCT_EQ_U64(crc32c(c, buf + cut, sizeof(buf) - cut), whole);
    }
}

/* The hardware path (three chains joined over long buffers) and the
 * table agree at every length and alignment, from any starting value. */
static void crc_paths_agree(void)
{
    enum { N = 5000 };
    unsigned char *buf = malloc(N + 8);
    TCT_CHECK(buf != NULL);
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < N + 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    for (size_t len = 0; len <= N; len += len < 1600 ? 1 : 97)
        for (size_t at = 0; at < 8; at += 3) {
            uint32_t from = (uint32_t)(len * 2654435761u);
            TCT_EQ_U64(crc32c(0, buf + at, len),
                       crc32c_table(0, buf + at, len));
            TCT_EQ_U64(crc32c(from, buf + at, len),
                       crc32c_table(from, buf + at, len));
        }
    free(buf);
}

static void segment_names(void)
{
    char name[32];
    uint64_t id;
    seg_name(0x1234abcdULL, name);
    TCT_CHECK(strcmp(name, "seg-000000001234abcd.log") == 0);
    TCT_CHECK(seg_parse_name(name, &id));
    TCT_EQ_U64(id, 0x1234abcdULL);
    TCT_CHECK(!seg_parse_name("seg-000000001234abcd.lo", &id));
    TCT_CHECK(!seg_parse_name("seg-000000001234ABCD.log", &id));
    TCT_CHECK(!seg_parse_name("index", &id));
}

static void header_round_trip(void)
{
    seg_header h = {SEG_FORMAT, 42, 8u << 20, 1000}, g;
    unsigned char buf[SEG_HDR_SIZE];
    seg_header_encode(&h, buf);
    TCT_CHECK(seg_header_decode(buf, &g));
    TCT_EQ_U64(g.format, SEG_FORMAT);
    TCT_EQ_U64(g.id, 42);
    TCT_EQ_U64(g.size, 8u << 20);
    TCT_EQ_U64(g.first_lsn, 1000);
    for (size_t i = 0; i < SEG_HDR_SIZE * 8; i++) {
        unsigned char bad[SEG_HDR_SIZE];
        memcpy(bad, buf, sizeof(bad));
        bad[i / 8] ^= (unsigned char)(1u << (i % 8));
        TCT_CHECK(!seg_header_decode(bad, &g));
    }
    /* Another format version is read (so it can be refused by name). */
    h.format = 7;
    seg_header_encode(&h, buf);
    TCT_CHECK(seg_header_decode(buf, &g));
    TCT_EQ_U64(g.format, 7);
}

static size_t make_record(unsigned char *out, uint8_t type, const char *key,
                          const char *val, uint64_t lsn)
{
    seg_rec r = {0};
    r.lsn = lsn;
    r.type = type;
    r.codec = SEG_RAW;
    r.klen = (uint8_t)strlen(key);
    r.flags = 0xdeadbeef;
    r.exptime = 1234567;
    r.stored_len = r.raw_len = val != NULL ? (uint32_t)strlen(val) : 0;
    r.cas = 99;
    seg_rec_encode(out, &r, key, val);
    return seg_rec_size(r.klen, r.stored_len);
}

static void record_round_trip(void)
{
    unsigned char buf[512];
    memset(buf, 0xee, sizeof(buf));
    size_t n = make_record(buf, SEG_SET, "key", "hello world", 77);
    TCT_EQ_U64(n % SEG_ALIGN, 0);
    TCT_EQ_U64(n, seg_rec_size(3, 11));
    seg_rec r;
    const unsigned char *k, *v;
    TCT_EQ_U64(seg_rec_decode(buf, n, &r, &k, &v), n);
    TCT_EQ_U64(r.lsn, 77);
    TCT_EQ_U64(r.type, SEG_SET);
    TCT_EQ_U64(r.flags, 0xdeadbeef);
    TCT_EQ_U64(r.exptime, 1234567);
    TCT_EQ_U64(r.cas, 99);
    TCT_EQ_MEM(k, r.klen, "key");
    TCT_EQ_MEM(v, r.stored_len, "hello world");
    /* Padding is zeroed, not left as it was. */
    for (size_t i = SEG_REC_HDR + 3 + 11; i < n; i++)
        TCT_EQ_U64(buf[i], 0);
    TCT_CHECK(seg_rec_magic_at(buf));

    n = make_record(buf, SEG_DELETE, "gone", NULL, 78);
    TCT_EQ_U64(seg_rec_decode(buf, n, &r, &k, &v), n);
    TCT_EQ_U64(r.type, SEG_DELETE);
    TCT_EQ_U64(r.stored_len, 0);
}

static void record_damage_refused(void)
{
    unsigned char buf[256], bad[256];
    size_t n = make_record(buf, SEG_SET, "k1", "some value bytes", 5);
    seg_rec r;
    const unsigned char *k, *v;
    /* Any flipped bit before the padding is caught. */
    size_t body = SEG_REC_HDR + 2 + 16;
    for (size_t i = 0; i < body * 8; i++) {
        memcpy(bad, buf, n);
        bad[i / 8] ^= (unsigned char)(1u << (i % 8));
        TCT_EQ_U64(seg_rec_decode(bad, n, &r, &k, &v), 0);
    }
    /* A record cut short anywhere. */
    for (size_t cut = 0; cut < n; cut++)
        TCT_EQ_U64(seg_rec_decode(buf, cut, &r, &k, &v), 0);
    /* Zeros (a preallocated segment's end). */
    memset(bad, 0, sizeof(bad));
    TCT_EQ_U64(seg_rec_decode(bad, sizeof(bad), &r, &k, &v), 0);
    TCT_CHECK(!seg_rec_magic_at(bad));
}

/* Lengths that would overflow or point outside are refused before the
 * checksum is computed over them. */
static void record_lengths_checked(void)
{
    unsigned char buf[256];
    size_t n = make_record(buf, SEG_SET, "k", "v", 1);
    seg_rec r;
    const unsigned char *k, *v;
    unsigned char bad[256];
    memcpy(bad, buf, n);
    bad[28] = 0xff; bad[29] = 0xff; bad[30] = 0xff; bad[31] = 0xff;
    TCT_EQ_U64(seg_rec_decode(bad, n, &r, &k, &v), 0);
    memcpy(bad, buf, n);
    bad[16] = 9; /* unknown type */
    TCT_EQ_U64(seg_rec_decode(bad, n, &r, &k, &v), 0);
}

/* seg_rec_head checks the header alone, not the CRC: it reads where a
 * record ends and its key whatever its value holds, with no more of the
 * record at hand (reclaim reads a marked record's header and key only),
 * and refuses what seg_rec_decode refuses for its header. */
static void record_head(void)
{
    unsigned char buf[256], bad[256];
    size_t n = make_record(buf, SEG_SET, "k1", "some value bytes", 5);
    seg_rec r;
    TCT_EQ_U64(seg_rec_head(buf, &r), n);
    TCT_CHECK(r.type == SEG_SET && r.klen == 2 &&
              memcmp(buf + SEG_REC_HDR, "k1", 2) == 0);
    TCT_EQ_U64(r.stored_len, 16);
    memcpy(bad, buf, n);
    bad[SEG_REC_HDR + 2 + 3] ^= 0x10; /* in the value */
    const unsigned char *k, *v;
    TCT_EQ_U64(seg_rec_decode(bad, n, &r, &k, &v), 0);
    TCT_EQ_U64(seg_rec_head(bad, &r), n);
    memcpy(bad, buf, n);
    bad[0] ^= 1; /* the magic */
    TCT_EQ_U64(seg_rec_head(bad, &r), 0);
    memcpy(bad, buf, n);
    bad[28] = 0xff; bad[29] = 0xff; bad[30] = 0xff; bad[31] = 0xff;
    TCT_EQ_U64(seg_rec_head(bad, &r), 0); /* raw: stored != raw length */
    memcpy(bad, buf, n);
    bad[16] = 9; /* unknown type */
    TCT_EQ_U64(seg_rec_head(bad, &r), 0);
    /* Decoding asks for the whole record. */
    for (size_t cut = 0; cut < n; cut++)
        TCT_EQ_U64(seg_rec_decode(buf, cut, &r, &k, &v), 0);
    TCT_EQ_U64(seg_rec_decode(buf, n, &r, &k, &v), n);
}

/* seg_rec_encode_head, with the value and zero padding put after it (as
 * the journal writer's writev does), makes the bytes seg_rec_encode
 * makes, whatever the padding, and the record decodes. */
static void record_head_then_value(void)
{
    unsigned char whole[2048], parts[2048], val[1100];
    for (size_t i = 0; i < sizeof(val); i++)
        val[i] = (unsigned char)(i * 31 + 7);
    static const size_t lens[] = {0, 1, 7, 8, 9, 15, 1023, 1024, 1025, 1031};
    for (size_t t = 0; t < sizeof(lens) / sizeof(lens[0]); t++) {
        seg_rec r = {0};
        r.lsn = 1000 + t;
        r.type = SEG_SET;
        r.klen = (uint8_t)(3 + t);
        r.stored_len = r.raw_len = (uint32_t)lens[t];
        r.cas = 42;
        const char *key = "abcdefghijklmnop";
        size_t n = seg_rec_size(r.klen, r.stored_len);
        memset(whole, 0xee, sizeof(whole));
        memset(parts, 0x55, sizeof(parts));
        seg_rec_encode(whole, &r, key, val);
        size_t head = seg_rec_encode_head(parts, &r, key, val);
        TCT_EQ_U64(head, SEG_REC_HDR + r.klen);
        memcpy(parts + head, val, lens[t]);
        memset(parts + head + lens[t], 0, n - head - lens[t]);
        TCT_CHECK(memcmp(whole, parts, n) == 0);
        seg_rec d;
        const unsigned char *k, *v;
        TCT_EQ_U64(seg_rec_decode(parts, n, &d, &k, &v), n);
        TCT_EQ_U64(d.stored_len, lens[t]);
    }
}

TCT_MAIN(TCT(crc_known_values), TCT(crc_paths_agree), TCT(segment_names), TCT(header_round_trip),
         TCT(record_round_trip), TCT(record_damage_refused),
         TCT(record_lengths_checked), TCT(record_head),
         TCT(record_head_then_value))
