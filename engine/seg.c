/*
 * seg.c - encoding and checking segment headers and records (the format
 * is described in seg.h). Pure functions over byte buffers.
 */
#include "seg.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"

static const unsigned char seg_magic[8] = {'T', 'C', 'S', 'E', 'G', 0, 0, 1};

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void seg_name(uint64_t id, char buf[32])
{
    snprintf(buf, 32, "seg-%016" PRIx64 ".log", id);
}

bool seg_parse_name(const char *name, uint64_t *id)
{
    if (strlen(name) != 24 || memcmp(name, "seg-", 4) != 0 ||
        strcmp(name + 20, ".log") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 4; i < 20; i++) {
        char c = name[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *id = v;
    return true;
}

void seg_header_encode(const seg_header *h, unsigned char out[SEG_HDR_SIZE])
{
    memset(out, 0, SEG_HDR_SIZE);
    memcpy(out, seg_magic, 8);
    put32(out + 8, h->format);
    put32(out + 12, SEG_HDR_SIZE);
    put64(out + 16, h->id);
    put64(out + 24, h->size);
    put64(out + 32, h->first_lsn);
    put32(out + 60, crc32c(0, out, 60));
}

bool seg_header_decode(const unsigned char in[SEG_HDR_SIZE], seg_header *h)
{
    if (memcmp(in, seg_magic, 8) != 0)
        return false;
    h->format = get32(in + 8);
    h->id = get64(in + 16);
    h->size = get64(in + 24);
    h->first_lsn = get64(in + 32);
    return get32(in + 12) == SEG_HDR_SIZE &&
           get32(in + 60) == crc32c(0, in, 60) && h->size > SEG_HDR_SIZE;
}

size_t seg_rec_encode_head(unsigned char *out, const seg_rec *r,
                           const void *key, const void *stored)
{
    put32(out, SEG_REC_MAGIC);
    put64(out + 8, r->lsn);
    out[16] = r->type;
    out[17] = r->codec;
    out[18] = r->klen;
    out[19] = r->meta;
    put32(out + 20, r->flags);
    put32(out + 24, r->exptime);
    put32(out + 28, r->stored_len);
    put32(out + 32, r->raw_len);
    put32(out + 36, r->dict);
    put64(out + 40, r->cas);
    if (r->klen > 0)
        memcpy(out + SEG_REC_HDR, key, r->klen);
    size_t head = SEG_REC_HDR + r->klen;
    uint32_t crc = crc32c(0, out + 8, head - 8);
    if (r->stored_len > 0)
        crc = crc32c(crc, stored, r->stored_len);
    put32(out + 4, crc);
    return head;
}

void seg_rec_encode(unsigned char *out, const seg_rec *r, const void *key,
                    const void *stored)
{
    size_t head = seg_rec_encode_head(out, r, key, stored);
    if (r->stored_len > 0)
        memcpy(out + head, stored, r->stored_len);
    size_t body = head + r->stored_len;
    memset(out + body, 0, seg_rec_size(r->klen, r->stored_len) - body);
}

bool seg_rec_magic_at(const unsigned char *p)
{
    return get32(p) == SEG_REC_MAGIC;
}

uint64_t seg_rec_head(const unsigned char *p, seg_rec *r)
{
    if (get32(p) != SEG_REC_MAGIC)
        return 0;
    r->lsn = get64(p + 8);
    r->type = p[16];
    r->codec = p[17];
    r->klen = p[18];
    r->meta = p[19];
    r->flags = get32(p + 20);
    r->exptime = get32(p + 24);
    r->stored_len = get32(p + 28);
    r->raw_len = get32(p + 32);
    r->dict = get32(p + 36);
    r->cas = get64(p + 40);
    if (r->type < SEG_SET || r->type > SEG_FLUSH || r->codec > SEG_ZSTD ||
        (r->meta & ~SEG_M_ALL) != 0)
        return 0;
    if ((r->type == SEG_FLUSH) != (r->klen == 0))
        return 0;
    if (r->type != SEG_SET && (r->stored_len != 0 || r->raw_len != 0))
        return 0;
    if (r->codec == SEG_RAW && r->stored_len != r->raw_len)
        return 0;
    uint64_t n = (uint64_t)SEG_REC_HDR + r->klen + r->stored_len;
    return (n + SEG_ALIGN - 1) & ~(uint64_t)(SEG_ALIGN - 1);
}

size_t seg_rec_decode(const unsigned char *p, size_t avail, seg_rec *r,
                      const unsigned char **key, const unsigned char **stored)
{
    if (avail < SEG_REC_HDR)
        return 0;
    uint64_t head = seg_rec_head(p, r);
    if (head == 0 || head > avail)
        return 0;
    size_t total = (size_t)head;
    *key = p + SEG_REC_HDR;
    size_t body = SEG_REC_HDR + r->klen + (size_t)r->stored_len;
    if (get32(p + 4) != crc32c(0, p + 8, body - 8))
        return 0;
    *stored = p + SEG_REC_HDR + r->klen;
    return total;
}
