/*
 * crc32c.c - CRC-32C, reflected polynomial 0x82f63b78 (see crc32c.h).
 *
 * The table is built on first use from the polynomial; the hardware path
 * is compiled for SSE 4.2 alone and taken only when cpuid says so. Both
 * are checked against each other and known values in tests/unit.
 *
 * The crc32 instruction takes 3 cycles and depends on the one before, so
 * one chain of them checks 8 bytes per 3 cycles. Over long buffers the
 * hardware path runs three chains side by side, on three adjacent blocks
 * of CRC_BLK bytes, and joins them: the CRC register is linear, so the
 * register after A B C is shift(a, 2 blocks) ^ shift(b, 1 block) ^ c,
 * where a is the register after A, b and c those of B and C from zero,
 * and shift(x, n) the register from x after n zero bytes, a linear map
 * looked up a byte at a time (crc_join).
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define CRC32C_POLY 0x82f63b78u

#define CRC_BLK 256

static uint32_t crc_table[8][256];
/* shift(x, CRC_BLK) and shift(x, 2 * CRC_BLK), a byte of x at a time */
static uint32_t crc_join1[4][256], crc_join2[4][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len);

/* Fills t with shift(x, n) for x a byte at each of the four places: the
 * map is linear, so it is the XOR of its values at the bits set. */
static void crc_join_init(uint32_t t[4][256], size_t n)
{
    static const unsigned char zeros[2 * CRC_BLK];
    uint32_t bit[32];
    for (int b = 0; b < 32; b++)
        bit[b] = crc_sw(1u << b, zeros, n);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t x = 0;
            for (int b = 0; b < 8; b++)
                if (v & (1u << b))
                    x ^= bit[8 * k + b];
            t[k][v] = x;
        }
}

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                              crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_join_init(crc_join1, CRC_BLK);
    crc_join_init(crc_join2, 2 * CRC_BLK);
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* Slicing by 8: eight table lookups per 8 bytes. */
static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len)
{
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
static inline uint32_t crc_join(uint32_t t[4][256], uint32_t x)
{
    return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^
           t[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t
crc_hw_x86(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = crc;
    while (len >= 3 * CRC_BLK) {
        uint64_t a = c, b = 0, d = 0;
        for (size_t i = 0; i < CRC_BLK; i += 8) {
            uint64_t wa, wb, wd;
            memcpy(&wa, p + i, 8);
            memcpy(&wb, p + CRC_BLK + i, 8);
            memcpy(&wd, p + 2 * CRC_BLK + i, 8);
            a = __builtin_ia32_crc32di(a, wa);
            b = __builtin_ia32_crc32di(b, wb);
            d = __builtin_ia32_crc32di(d, wd);
        }
        c = crc_join(crc_join2, (uint32_t)a) ^
            crc_join(crc_join1, (uint32_t)b) ^ (uint32_t)d;
        p += 3 * CRC_BLK;
        len -= 3 * CRC_BLK;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len-- > 0)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t crc32c(uint32_t crc, const void *p, size_t len)
{
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (crc_hw)
        return ~crc_hw_x86(crc, p, len);
#endif
    return ~crc_sw(crc, p, len);
}

uint32_t crc32c_table(uint32_t crc, const void *p, size_t len)
{
    pthread_once(&crc_once, crc_init);
    return ~crc_sw(~crc, p, len);
}
