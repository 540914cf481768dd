/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every commit-log entry
 * and of Kafka record batches.
 *
 * Uses the SSE4.2 crc32 instruction where the CPU has it (three streams in
 * parallel for long buffers) and a slicing-by-8 table otherwise; both give
 * identical results. The value is the standard one: crc32c("123456789")
 * is 0xE3069283, and cfx_crc32c(cfx_crc32c(0, a), b) equals the checksum
 * of a followed by b.
 */
#ifndef CFX_BASE_CRC32C_H
#define CFX_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (0 for a new checksum) with `len` bytes at `buf`. @thread any */
uint32_t cfx_crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table implementation (exposed for tests and benchmarks). */
uint32_t cfx_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* "sse4.2" or "table": which implementation cfx_crc32c uses on this CPU. */
const char *cfx_crc32c_impl(void);

#endif
