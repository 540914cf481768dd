/*
 * crc32c.c - CRC-32C, hardware and table implementations.
 *
 * The hardware path runs three independent crc32 streams over three
 * adjacent blocks (the instruction has a latency of three cycles and a
 * throughput of one, so one stream leaves two thirds of the unit idle) and
 * joins them with a "shift by one block" operator: appending B zero bytes
 * to a CRC state is a linear map over GF(2), tabulated once at start-up in
 * four 256-entry tables.
 *
 * States below are "raw" (not inverted); the public functions invert on
 * entry and exit as the standard requires.
 */
#include "base/crc32c.h"

#include <pthread.h>
#include <string.h>

#include "base/common.h"

#define POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t sw_table[8][256];

/* A linear operator on raw CRC states: the effect of `len` zero bytes. */
struct shift_op {
	size_t len;
	uint32_t t[4][256];
};

#define BLOCK_LONG 4096
#define BLOCK_SHORT 256

static struct shift_op shift_long = { .len = BLOCK_LONG };
static struct shift_op shift_short = { .len = BLOCK_SHORT };
static int have_sse42;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static uint32_t sw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = sw_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w = cfx_load_le64(p) ^ crc;
		crc = sw_table[7][w & 0xff] ^ sw_table[6][(w >> 8) & 0xff] ^
		      sw_table[5][(w >> 16) & 0xff] ^ sw_table[4][(w >> 24) & 0xff] ^
		      sw_table[3][(w >> 32) & 0xff] ^ sw_table[2][(w >> 40) & 0xff] ^
		      sw_table[1][(w >> 48) & 0xff] ^ sw_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = sw_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

static uint32_t shift_apply(const struct shift_op *op, uint32_t crc)
{
	return op->t[0][crc & 0xff] ^ op->t[1][(crc >> 8) & 0xff] ^
	       op->t[2][(crc >> 16) & 0xff] ^ op->t[3][crc >> 24];
}

static void shift_build(struct shift_op *op)
{
	uint32_t basis[32];
	uint8_t zeros[BLOCK_LONG];

	memset(zeros, 0, sizeof zeros);
	for (int i = 0; i < 32; i++)
		basis[i] = sw_raw(1u << i, zeros, op->len);
	for (int b = 0; b < 4; b++)
		for (int v = 0; v < 256; v++) {
			uint32_t r = 0;
			for (int bit = 0; bit < 8; bit++)
				if (v & (1 << bit))
					r ^= basis[b * 8 + bit];
			op->t[b][v] = r;
		}
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t hw_raw1(uint32_t crc, const uint8_t *p,
							   size_t len)
{
	uint64_t c = crc;
	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		c = _mm_crc32_u64(c, cfx_load_le64(p));
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return (uint32_t)c;
}

/* Three streams over blocks of op->len bytes (a multiple of 8). */
__attribute__((target("sse4.2"))) static uint32_t hw_raw3(uint32_t crc, const uint8_t **pp,
							   size_t *lenp,
							   const struct shift_op *op)
{
	const uint8_t *p = *pp;
	size_t len = *lenp, b = op->len;

	while (len >= 3 * b) {
		uint64_t c0 = crc, c1 = 0, c2 = 0;
		for (size_t i = 0; i < b; i += 8) {
			c0 = _mm_crc32_u64(c0, cfx_load_le64(p + i));
			c1 = _mm_crc32_u64(c1, cfx_load_le64(p + b + i));
			c2 = _mm_crc32_u64(c2, cfx_load_le64(p + 2 * b + i));
		}
		crc = shift_apply(op, shift_apply(op, (uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
		p += 3 * b;
		len -= 3 * b;
	}
	*pp = p;
	*lenp = len;
	return crc;
}

static uint32_t hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	if (len >= 3 * BLOCK_SHORT) {
		crc = hw_raw3(crc, &p, &len, &shift_long);
		crc = hw_raw3(crc, &p, &len, &shift_short);
	}
	return hw_raw1(crc, p, len);
}
#endif

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		sw_table[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (int i = 0; i < 256; i++)
			sw_table[t][i] = (sw_table[t - 1][i] >> 8) ^ sw_table[0][sw_table[t - 1][i] & 0xff];
	shift_build(&shift_long);
	shift_build(&shift_short);
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t cfx_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&init_once, crc_init);
	return ~sw_raw(~crc, buf, len);
}

uint32_t cfx_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&init_once, crc_init);
#if defined(__x86_64__)
	if (CFX_LIKELY(have_sse42))
		return ~hw_raw(~crc, buf, len);
#endif
	return ~sw_raw(~crc, buf, len);
}

const char *cfx_crc32c_impl(void)
{
	pthread_once(&init_once, crc_init);
	return have_sse42 ? "sse4.2" : "table";
}
