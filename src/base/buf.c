/*
 * buf.c - bounds-checked reader and growable writer.
 */
#include "base/buf.h"

void cfx_reader_fail(struct cfx_reader *rd, const char *desc)
{
	if (!rd->err) {
		rd->err = CFX_EPARSE;
		rd->err_desc = desc;
	}
}

const uint8_t *cfx_read_bytes(struct cfx_reader *rd, size_t n, const char *what)
{
	const uint8_t *p;

	if (rd->err)
		return NULL;
	if (n > rd->len - rd->pos) {
		cfx_reader_fail(rd, what ? what : "truncated");
		return NULL;
	}
	p = rd->p + rd->pos;
	rd->pos += n;
	return p;
}

void cfx_read_skip(struct cfx_reader *rd, size_t n)
{
	(void)cfx_read_bytes(rd, n, "truncated");
}

#define READ_FIXED(name, type, load) \
	type name(struct cfx_reader *rd) \
	{ \
		const uint8_t *p = cfx_read_bytes(rd, sizeof(type), "truncated"); \
		return p ? load(p) : 0; \
	}

static inline uint8_t load_u8(const uint8_t *p) { return *p; }

READ_FIXED(cfx_read_u8, uint8_t, load_u8)
READ_FIXED(cfx_read_le16, uint16_t, cfx_load_le16)
READ_FIXED(cfx_read_le32, uint32_t, cfx_load_le32)
READ_FIXED(cfx_read_le64, uint64_t, cfx_load_le64)
READ_FIXED(cfx_read_be16, uint16_t, cfx_load_be16)
READ_FIXED(cfx_read_be32, uint32_t, cfx_load_be32)
READ_FIXED(cfx_read_be64, uint64_t, cfx_load_be64)

/* Reads an unsigned LEB128 of at most `max_bytes` bytes and `bits` bits. */
static uint64_t read_uvarint(struct cfx_reader *rd, int max_bytes, int bits)
{
	uint64_t v = 0;

	if (rd->err)
		return 0;
	for (int i = 0; i < max_bytes; i++) {
		if (rd->pos >= rd->len) {
			cfx_reader_fail(rd, "truncated varint");
			return 0;
		}
		uint8_t b = rd->p[rd->pos++];
		int shift = 7 * i;
		/* The last byte may only carry the bits that are left. */
		if (shift + 7 > bits && (b & 0x7f) >> (bits - shift)) {
			cfx_reader_fail(rd, "varint overflow");
			return 0;
		}
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			if (i > 0 && b == 0) {
				cfx_reader_fail(rd, "overlong varint");
				return 0;
			}
			return v;
		}
	}
	cfx_reader_fail(rd, "varint too long");
	return 0;
}

uint32_t cfx_read_uvarint32(struct cfx_reader *rd)
{
	return (uint32_t)read_uvarint(rd, 5, 32);
}

uint64_t cfx_read_uvarint64(struct cfx_reader *rd)
{
	return read_uvarint(rd, 10, 64);
}

int32_t cfx_read_varint32(struct cfx_reader *rd)
{
	uint32_t u = cfx_read_uvarint32(rd);
	return (int32_t)((u >> 1) ^ (0u - (u & 1)));
}

int64_t cfx_read_varint64(struct cfx_reader *rd)
{
	uint64_t u = cfx_read_uvarint64(rd);
	return (int64_t)((u >> 1) ^ (0ull - (u & 1)));
}

void cfx_writer_init(struct cfx_writer *wr, size_t cap_hint)
{
	wr->len = 0;
	wr->cap = cap_hint ? cap_hint : 256;
	wr->p = cfx_malloc(wr->cap);
}

void cfx_writer_free(struct cfx_writer *wr)
{
	CFX_FREE(wr->p);
	wr->len = wr->cap = 0;
}

uint8_t *cfx_writer_reserve(struct cfx_writer *wr, size_t n)
{
	if (wr->cap - wr->len < n) {
		size_t cap = wr->cap ? wr->cap : 256;
		while (cap - wr->len < n) {
			CFX_ASSERT(cap < SIZE_MAX / 2);
			cap *= 2;
		}
		wr->p = cfx_realloc(wr->p, cap);
		wr->cap = cap;
	}
	return wr->p + wr->len;
}

size_t cfx_uvarint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t cfx_uvarint_encode(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

void cfx_write_uvarint64(struct cfx_writer *wr, uint64_t v)
{
	uint8_t tmp[10];
	cfx_write_bytes(wr, tmp, cfx_uvarint_encode(tmp, v));
}
