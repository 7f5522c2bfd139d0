/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of journal records.
 *
 * Uses the SSE 4.2 crc32 instruction when the CPU has it (checked once,
 * at run time) and a table otherwise; both give the same values.
 */
#ifndef TC_CRC32C_H
#define TC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t len);
/* The same by the table alone, whatever the CPU: for tests. */
uint32_t crc32c_table(uint32_t crc, const void *p, size_t len);

#endif /* TC_CRC32C_H */
