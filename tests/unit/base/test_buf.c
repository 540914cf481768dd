/* Unit tests for src/base/buf.c: the bounds-checked reader and the growable writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/buf.h"

/* The edge values every varint round trip goes through. */
static const uint64_t uedges[] = {
	0,
	1,
	2,
	63,
	64,
	127,
	128,
	129,
	255,
	256,
	16383,
	16384,
	(1u << 21) - 1,
	1u << 21,
	(1u << 28) - 1,
	1u << 28,
	INT32_MAX,
	(uint64_t)INT32_MAX + 1,
	UINT32_MAX,
	(uint64_t)UINT32_MAX + 1,
	(1ull << 35) - 1,
	1ull << 35,
	(1ull << 56) - 1,
	1ull << 56,
	(1ull << 63) - 1,
	1ull << 63,
	UINT64_MAX - 1,
	UINT64_MAX,
};

static const int64_t sedges[] = {
	0,
	1,
	-1,
	2,
	-2,
	63,
	-64,
	64,
	-65,
	127,
	-127,
	128,
	-128,
	8191,
	-8192,
	8192,
	INT32_MAX,
	INT32_MIN,
	(int64_t)INT32_MAX + 1,
	(int64_t)INT32_MIN - 1,
	INT64_MAX,
	INT64_MIN,
	INT64_MAX - 1,
	INT64_MIN + 1,
};

/* The size of the LEB128 encoding of `v`, computed independently of buf.c. */
static size_t leb_size(uint64_t v)
{
	size_t n = 1;
	for (; v >> 7; v >>= 7)
		n++;
	return n;
}

static uint64_t zigzag(int64_t v)
{
	return v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
}

/* ------------------------------------------------------------------------
 * Reader: bounds and the sticky error
 * ------------------------------------------------------------------------ */

static void test_reader_make_and_left(void **state)
{
	static const uint8_t b[5] = { 1, 2, 3, 4, 5 };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	(void)state;

	assert_ptr_equal(rd.p, b);
	assert_int_equal(rd.len, 5);
	assert_int_equal(rd.pos, 0);
	assert_int_equal(rd.err, 0);
	assert_null(rd.err_desc);
	assert_int_equal(cfx_reader_left(&rd), 5);
	assert_int_equal(cfx_read_u8(&rd), 1);
	assert_int_equal(cfx_reader_left(&rd), 4);
	cfx_read_skip(&rd, 4);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
}

static void test_read_bytes_bounds(void **state)
{
	static const uint8_t b[4] = { 10, 20, 30, 40 };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	const uint8_t *p;
	(void)state;

	/* A zero-length read at any position succeeds and does not move. */
	p = cfx_read_bytes(&rd, 0, "zero");
	assert_ptr_equal(p, b);
	assert_int_equal(rd.pos, 0);

	p = cfx_read_bytes(&rd, 3, "three");
	assert_ptr_equal(p, b);
	assert_int_equal(rd.pos, 3);

	/* One byte too many fails without moving and names the field. */
	p = cfx_read_bytes(&rd, 2, "two");
	assert_null(p);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_string_equal(rd.err_desc, "two");
	assert_int_equal(rd.pos, 3);
	assert_int_equal(cfx_reader_left(&rd), 0);
}

static void test_read_bytes_default_reason(void **state)
{
	struct cfx_reader rd = cfx_reader_make("ab", 2);
	(void)state;

	assert_null(cfx_read_bytes(&rd, 3, NULL));
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_string_equal(rd.err_desc, "truncated");
}

static void test_read_bytes_huge_length(void **state)
{
	static const uint8_t b[8] = { 0 };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	(void)state;

	/* A length near SIZE_MAX must not wrap pos + n around. */
	cfx_read_skip(&rd, 1);
	assert_null(cfx_read_bytes(&rd, SIZE_MAX, "huge"));
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(rd.pos, 1);
}

static void test_sticky_error(void **state)
{
	static const uint8_t b[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
	struct cfx_reader rd = cfx_reader_make(b, 3);
	(void)state;

	assert_int_equal(cfx_read_le32(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_string_equal(rd.err_desc, "truncated");
	/* Every later read returns zero and leaves the cursor and reason alone,
	 * even a read that would have fitted. */
	assert_int_equal(cfx_read_u8(&rd), 0);
	assert_int_equal(cfx_read_le16(&rd), 0);
	assert_int_equal(cfx_read_be16(&rd), 0);
	assert_int_equal(cfx_read_uvarint32(&rd), 0);
	assert_int_equal(cfx_read_uvarint64(&rd), 0);
	assert_int_equal(cfx_read_varint32(&rd), 0);
	assert_int_equal(cfx_read_varint64(&rd), 0);
	assert_null(cfx_read_bytes(&rd, 0, "later"));
	assert_int_equal(rd.pos, 0);
	assert_string_equal(rd.err_desc, "truncated");

	/* An explicit failure after the first does not replace it. */
	cfx_reader_fail(&rd, "second");
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_string_equal(rd.err_desc, "truncated");
}

static void test_reader_fail_explicit(void **state)
{
	struct cfx_reader rd = cfx_reader_make("xyz", 3);
	(void)state;

	cfx_reader_fail(&rd, "semantic check");
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_string_equal(rd.err_desc, "semantic check");
	assert_int_equal(cfx_reader_left(&rd), 0);
	assert_int_equal(cfx_read_u8(&rd), 0);
}

static void test_skip_past_end(void **state)
{
	struct cfx_reader rd = cfx_reader_make("abcd", 4);
	(void)state;

	cfx_read_skip(&rd, 4);
	assert_int_equal(rd.err, 0);
	cfx_read_skip(&rd, 1);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(rd.pos, 4);
}

static void test_empty_reader(void **state)
{
	struct cfx_reader rd = cfx_reader_make(NULL, 0);
	(void)state;

	assert_int_equal(cfx_reader_left(&rd), 0);
	assert_int_equal(cfx_read_u8(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
}

/* ------------------------------------------------------------------------
 * Fixed-width reads
 * ------------------------------------------------------------------------ */

static void test_fixed_le(void **state)
{
	static const uint8_t b[] = { 0xab, 0x01, 0x02, 0x01, 0x02, 0x03, 0x04,
				     0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88 };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	(void)state;

	assert_int_equal(cfx_read_u8(&rd), 0xab);
	assert_int_equal(cfx_read_le16(&rd), 0x0201);
	assert_int_equal(cfx_read_le32(&rd), 0x04030201u);
	assert_true(cfx_read_le64(&rd) == 0x8807060504030201ull);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
}

static void test_fixed_be(void **state)
{
	static const uint8_t b[] = { 0x01, 0x02, 0x01, 0x02, 0x03, 0x04,
				     0x81, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	(void)state;

	assert_int_equal(cfx_read_be16(&rd), 0x0102);
	assert_int_equal(cfx_read_be32(&rd), 0x01020304u);
	assert_true(cfx_read_be64(&rd) == 0x8102030405060708ull);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
}

/* Each fixed-width read fails on every shorter input and does not advance. */
static void test_fixed_truncated(void **state)
{
	static const uint8_t b[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	(void)state;

	for (size_t len = 0; len < 8; len++) {
		struct cfx_reader rd;

		if (len < 2) {
			rd = cfx_reader_make(b, len);
			assert_int_equal(cfx_read_le16(&rd), 0);
			assert_int_equal(rd.err, CFX_EPARSE);
			rd = cfx_reader_make(b, len);
			assert_int_equal(cfx_read_be16(&rd), 0);
			assert_int_equal(rd.err, CFX_EPARSE);
			assert_int_equal(rd.pos, 0);
		}
		if (len < 4) {
			rd = cfx_reader_make(b, len);
			assert_int_equal(cfx_read_le32(&rd), 0);
			assert_int_equal(rd.err, CFX_EPARSE);
			rd = cfx_reader_make(b, len);
			assert_int_equal(cfx_read_be32(&rd), 0);
			assert_int_equal(rd.err, CFX_EPARSE);
			assert_int_equal(rd.pos, 0);
		}
		rd = cfx_reader_make(b, len);
		assert_true(cfx_read_le64(&rd) == 0);
		assert_int_equal(rd.err, CFX_EPARSE);
		rd = cfx_reader_make(b, len);
		assert_true(cfx_read_be64(&rd) == 0);
		assert_int_equal(rd.err, CFX_EPARSE);
		assert_int_equal(rd.pos, 0);
	}
}

/* ------------------------------------------------------------------------
 * Varints: valid encodings
 * ------------------------------------------------------------------------ */

static void test_uvarint_known_bytes(void **state)
{
	static const struct {
		uint8_t b[10];
		size_t len;
		uint64_t v;
	} cases[] = {
		{ { 0x00 }, 1, 0 },
		{ { 0x01 }, 1, 1 },
		{ { 0x7f }, 1, 127 },
		{ { 0x80, 0x01 }, 2, 128 },
		{ { 0xac, 0x02 }, 2, 300 },
		{ { 0xff, 0x7f }, 2, 16383 },
		{ { 0x80, 0x80, 0x01 }, 3, 16384 },
		{ { 0xff, 0xff, 0xff, 0xff, 0x0f }, 5, UINT32_MAX },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10, UINT64_MAX },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		uint8_t out[10];
		struct cfx_reader rd = cfx_reader_make(cases[i].b, cases[i].len);

		assert_true(cfx_read_uvarint64(&rd) == cases[i].v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(rd.pos, cases[i].len);
		if (cases[i].v <= UINT32_MAX) {
			rd = cfx_reader_make(cases[i].b, cases[i].len);
			assert_int_equal(cfx_read_uvarint32(&rd), cases[i].v);
			assert_int_equal(rd.err, 0);
			assert_int_equal(rd.pos, cases[i].len);
		}
		assert_int_equal(cfx_uvarint_encode(out, cases[i].v), cases[i].len);
		assert_memory_equal(out, cases[i].b, cases[i].len);
		assert_int_equal(cfx_uvarint_size(cases[i].v), cases[i].len);
	}
}

/* Kafka's zig-zag: 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ... */
static void test_varint_known_bytes(void **state)
{
	static const struct {
		uint8_t b[10];
		size_t len;
		int64_t v;
	} cases[] = {
		{ { 0x00 }, 1, 0 },
		{ { 0x01 }, 1, -1 },
		{ { 0x02 }, 1, 1 },
		{ { 0x03 }, 1, -2 },
		{ { 0x7f }, 1, -64 },
		{ { 0x80, 0x01 }, 2, 64 },
		{ { 0xfe, 0xff, 0xff, 0xff, 0x0f }, 5, INT32_MAX },
		{ { 0xff, 0xff, 0xff, 0xff, 0x0f }, 5, INT32_MIN },
		{ { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10, INT64_MAX },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10, INT64_MIN },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct cfx_writer wr;
		struct cfx_reader rd = cfx_reader_make(cases[i].b, cases[i].len);

		assert_true(cfx_read_varint64(&rd) == cases[i].v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(rd.pos, cases[i].len);
		if (cases[i].v >= INT32_MIN && cases[i].v <= INT32_MAX) {
			rd = cfx_reader_make(cases[i].b, cases[i].len);
			assert_true(cfx_read_varint32(&rd) == (int32_t)cases[i].v);
			assert_int_equal(rd.err, 0);
		}
		cfx_writer_init(&wr, 1);
		cfx_write_varint64(&wr, cases[i].v);
		assert_int_equal(wr.len, cases[i].len);
		assert_memory_equal(wr.p, cases[i].b, cases[i].len);
		assert_int_equal(cfx_varint_size(cases[i].v), cases[i].len);
		cfx_writer_free(&wr);
	}
}

static void test_uvarint_round_trip_edges(void **state)
{
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 0);
	for (size_t i = 0; i < CFX_ARRAY_LEN(uedges); i++) {
		uint64_t v = uedges[i];
		uint8_t out[10];
		size_t n = cfx_uvarint_encode(out, v);

		assert_int_equal(n, leb_size(v));
		assert_int_equal(cfx_uvarint_size(v), n);
		/* Every byte but the last has the continuation bit. */
		for (size_t j = 0; j < n; j++)
			assert_int_equal(!!(out[j] & 0x80), j + 1 < n);

		struct cfx_reader rd = cfx_reader_make(out, n);
		assert_true(cfx_read_uvarint64(&rd) == v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(rd.pos, n);

		rd = cfx_reader_make(out, n);
		uint32_t v32 = cfx_read_uvarint32(&rd);
		if (v <= UINT32_MAX) {
			assert_int_equal(rd.err, 0);
			assert_int_equal(v32, v);
		} else {
			assert_int_equal(rd.err, CFX_EPARSE);
			assert_int_equal(v32, 0);
		}
		cfx_write_uvarint64(&wr, v);
	}
	/* The same values written back to back read back in order. */
	struct cfx_reader rd = cfx_reader_make(wr.p, wr.len);
	for (size_t i = 0; i < CFX_ARRAY_LEN(uedges); i++)
		assert_true(cfx_read_uvarint64(&rd) == uedges[i]);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
	cfx_writer_free(&wr);
}

static void test_varint_round_trip_edges(void **state)
{
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 4);
	for (size_t i = 0; i < CFX_ARRAY_LEN(sedges); i++) {
		int64_t v = sedges[i];
		size_t start = wr.len;

		cfx_write_varint64(&wr, v);
		assert_int_equal(wr.len - start, leb_size(zigzag(v)));
		assert_int_equal(cfx_varint_size(v), wr.len - start);

		struct cfx_reader rd = cfx_reader_make(wr.p + start, wr.len - start);
		assert_true(cfx_read_varint64(&rd) == v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(cfx_reader_left(&rd), 0);

		rd = cfx_reader_make(wr.p + start, wr.len - start);
		int32_t v32 = cfx_read_varint32(&rd);
		if (v >= INT32_MIN && v <= INT32_MAX) {
			assert_int_equal(rd.err, 0);
			assert_true(v32 == (int32_t)v);
		} else {
			assert_int_equal(rd.err, CFX_EPARSE);
			assert_int_equal(v32, 0);
		}
	}
	struct cfx_reader rd = cfx_reader_make(wr.p, wr.len);
	for (size_t i = 0; i < CFX_ARRAY_LEN(sedges); i++)
		assert_true(cfx_read_varint64(&rd) == sedges[i]);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
	cfx_writer_free(&wr);
}

/* Sizes at every 7-bit boundary, independent of the edge list. */
static void test_uvarint_size_boundaries(void **state)
{
	(void)state;
	for (int bits = 0; bits <= 64; bits++) {
		uint64_t below = bits == 64 ? UINT64_MAX : (bits ? (1ull << bits) - 1 : 0);
		size_t want = bits <= 7 ? 1 : (size_t)(bits + 6) / 7;

		assert_int_equal(cfx_uvarint_size(below), want);
		if (bits < 64 && bits > 0) {
			uint64_t at = 1ull << bits;
			assert_int_equal(cfx_uvarint_size(at), (size_t)(bits + 1 + 6) / 7);
		}
	}
	assert_int_equal(cfx_varint_size(0), 1);
	assert_int_equal(cfx_varint_size(-64), 1);
	assert_int_equal(cfx_varint_size(64), 2);
	assert_int_equal(cfx_varint_size(INT32_MIN), 5);
	assert_int_equal(cfx_varint_size(INT64_MIN), 10);
	assert_int_equal(cfx_varint_size(INT64_MAX), 10);
}

/* A varint is read exactly, leaving the bytes after it for the next read. */
static void test_varint_then_fixed(void **state)
{
	static const uint8_t b[] = { 0xac, 0x02, 0xde, 0xad };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	(void)state;

	assert_int_equal(cfx_read_uvarint32(&rd), 300);
	assert_int_equal(cfx_read_be16(&rd), 0xdead);
	assert_int_equal(rd.err, 0);
}

/* ------------------------------------------------------------------------
 * Varints: rejected encodings
 * ------------------------------------------------------------------------ */

/* Reads with the 32- or 64-bit reader; returns rd.err and the reason. */
static int read_u(const uint8_t *b, size_t len, int bits, const char **desc, uint64_t *v)
{
	struct cfx_reader rd = cfx_reader_make(b, len);

	*v = bits == 32 ? cfx_read_uvarint32(&rd) : cfx_read_uvarint64(&rd);
	*desc = rd.err_desc;
	return rd.err;
}

static void test_varint_truncated(void **state)
{
	static const uint8_t b[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	const char *desc;
	uint64_t v;
	(void)state;

	/* Every proper prefix of a valid encoding is truncated. */
	for (size_t len = 0; len < sizeof b; len++) {
		assert_int_equal(read_u(b, len, 64, &desc, &v), CFX_EPARSE);
		assert_true(v == 0);
		assert_string_equal(desc, "truncated varint");
	}
	for (size_t len = 0; len < 5; len++) {
		static const uint8_t b32[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
		assert_int_equal(read_u(b32, len, 32, &desc, &v), CFX_EPARSE);
		assert_true(v == 0);
		assert_string_equal(desc, "truncated varint");
	}
	/* The signed readers share the checks. */
	struct cfx_reader rd = cfx_reader_make(b, 3);
	assert_int_equal(cfx_read_varint32(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	rd = cfx_reader_make(b, 9);
	assert_true(cfx_read_varint64(&rd) == 0);
	assert_int_equal(rd.err, CFX_EPARSE);
}

static void test_varint_overlong(void **state)
{
	static const struct {
		uint8_t b[10];
		size_t len;
	} cases[] = {
		{ { 0x80, 0x00 }, 2 },			     /* 0 in two bytes */
		{ { 0x81, 0x00 }, 2 },			     /* 1 in two bytes */
		{ { 0xff, 0x80, 0x00 }, 3 },		     /* 127 in three bytes */
		{ { 0x80, 0x80, 0x80, 0x80, 0x00 }, 5 },   /* 0 in five bytes */
	};
	const char *desc;
	uint64_t v;
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		assert_int_equal(read_u(cases[i].b, cases[i].len, 32, &desc, &v), CFX_EPARSE);
		assert_true(v == 0);
		assert_string_equal(desc, "overlong varint");
		assert_int_equal(read_u(cases[i].b, cases[i].len, 64, &desc, &v), CFX_EPARSE);
		assert_true(v == 0);
		assert_string_equal(desc, "overlong varint");
	}
	/* 64-bit: a ten-byte zero. */
	static const uint8_t z10[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
	assert_int_equal(read_u(z10, sizeof z10, 64, &desc, &v), CFX_EPARSE);
	assert_string_equal(desc, "overlong varint");

	/* Signed: zig-zag of 0 padded to two bytes. */
	struct cfx_reader rd = cfx_reader_make(cases[0].b, 2);
	assert_int_equal(cfx_read_varint32(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	rd = cfx_reader_make(cases[0].b, 2);
	assert_true(cfx_read_varint64(&rd) == 0);
	assert_int_equal(rd.err, CFX_EPARSE);
}

static void test_varint32_overflow(void **state)
{
	static const struct {
		uint8_t b[6];
		size_t len;
	} cases[] = {
		{ { 0x80, 0x80, 0x80, 0x80, 0x10 }, 5 }, /* 2^32 */
		{ { 0xff, 0xff, 0xff, 0xff, 0x1f }, 5 }, /* 2^33 - 1 */
		{ { 0xff, 0xff, 0xff, 0xff, 0x7f }, 5 }, /* 2^35 - 1 */
		{ { 0xff, 0xff, 0xff, 0xff, 0x4f }, 5 }, /* high bits, low nibble fine */
	};
	const char *desc;
	uint64_t v;
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		assert_int_equal(read_u(cases[i].b, cases[i].len, 32, &desc, &v), CFX_EPARSE);
		assert_true(v == 0);
		assert_string_equal(desc, "varint overflow");
		/* The 64-bit reader takes them. */
		assert_int_equal(read_u(cases[i].b, cases[i].len, 64, &desc, &v), 0);
		assert_true(v > UINT32_MAX);
	}
	/* Six bytes is too long for 32 bits however small the value. */
	static const uint8_t six[] = { 0x81, 0x80, 0x80, 0x80, 0x8f, 0x00 };
	assert_int_equal(read_u(six, sizeof six, 32, &desc, &v), CFX_EPARSE);
	assert_true(v == 0);
	assert_string_equal(desc, "varint too long");
	/* A 5th byte with the continuation bit set is too long as well. */
	static const uint8_t cont[] = { 0xff, 0xff, 0xff, 0xff, 0x8f, 0x01 };
	assert_int_equal(read_u(cont, sizeof cont, 32, &desc, &v), CFX_EPARSE);
	assert_true(v == 0);
	/* Signed 32-bit overflow. */
	struct cfx_reader rd = cfx_reader_make(cases[0].b, cases[0].len);
	assert_int_equal(cfx_read_varint32(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
}

static void test_varint64_overflow(void **state)
{
	static const struct {
		uint8_t b[11];
		size_t len;
	} cases[] = {
		/* 2^64: the last byte may carry only one bit. */
		{ { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02 }, 10 },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f }, 10 },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03 }, 10 },
	};
	const char *desc;
	uint64_t v;
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		assert_int_equal(read_u(cases[i].b, cases[i].len, 64, &desc, &v), CFX_EPARSE);
		assert_true(v == 0);
		assert_string_equal(desc, "varint overflow");
	}
	/* Eleven bytes, or a 10th byte that continues. */
	static const uint8_t eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
					  0x80, 0x80, 0x80, 0x81, 0x00 };
	assert_int_equal(read_u(eleven, sizeof eleven, 64, &desc, &v), CFX_EPARSE);
	assert_true(v == 0);
	assert_string_equal(desc, "varint too long");

	struct cfx_reader rd = cfx_reader_make(cases[0].b, cases[0].len);
	assert_true(cfx_read_varint64(&rd) == 0);
	assert_int_equal(rd.err, CFX_EPARSE);
}

/* A failed varint leaves the error sticky for the reads after it. */
static void test_varint_error_is_sticky(void **state)
{
	static const uint8_t b[] = { 0x80, 0x00, 0x05, 0x06 };
	struct cfx_reader rd = cfx_reader_make(b, sizeof b);
	(void)state;

	assert_int_equal(cfx_read_uvarint32(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(cfx_read_u8(&rd), 0);
	assert_int_equal(cfx_read_uvarint32(&rd), 0);
	assert_string_equal(rd.err_desc, "overlong varint");
}

/* ------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------ */

static void test_writer_fixed_and_back_patch(void **state)
{
	static const uint8_t want[] = { 0x7e, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12,
					0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
					0x12, 0x34, 0x12, 0x34, 0x56, 0x78,
					0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
					'h', 'i' };
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_non_null(wr.p);
	assert_int_equal(wr.len, 0);
	assert_true(wr.cap > 0);
	cfx_write_u8(&wr, 0x7e);
	cfx_write_le16(&wr, 0x1234);
	cfx_write_le32(&wr, 0x12345678u);
	cfx_write_le64(&wr, 0x0102030405060708ull);
	cfx_write_be16(&wr, 0x1234);
	cfx_write_be32(&wr, 0x12345678u);
	cfx_write_be64(&wr, 0x0102030405060708ull);
	cfx_write_bytes(&wr, "hi", 2);
	cfx_write_bytes(&wr, NULL, 0);
	assert_int_equal(wr.len, sizeof want);
	assert_memory_equal(wr.p, want, sizeof want);

	/* Back-patch a length at a remembered position. */
	cfx_store_be32(wr.p + 17, 0xa1b2c3d4u);
	struct cfx_reader rd = cfx_reader_make(wr.p, wr.len);
	cfx_read_skip(&rd, 17);
	assert_int_equal(cfx_read_be32(&rd), 0xa1b2c3d4u);

	cfx_writer_reset(&wr);
	assert_int_equal(wr.len, 0);
	assert_non_null(wr.p);
	cfx_writer_free(&wr);
	assert_null(wr.p);
	assert_int_equal(wr.len, 0);
	assert_int_equal(wr.cap, 0);
}

static void test_writer_growth(void **state)
{
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 1);
	assert_int_equal(wr.cap, 1);
	/* Many small writes cross many capacity doublings; content survives. */
	for (uint32_t i = 0; i < 100000; i++)
		cfx_write_le32(&wr, i * 2654435761u);
	assert_int_equal(wr.len, 400000);
	assert_true(wr.cap >= wr.len);
	for (uint32_t i = 0; i < 100000; i++)
		assert_int_equal(cfx_load_le32(wr.p + 4 * i), i * 2654435761u);

	/* One big extend jumps straight past the current capacity. */
	size_t before = wr.len;
	uint8_t *d = cfx_writer_extend(&wr, 3u << 20);
	assert_ptr_equal(d, wr.p + before);
	memset(d, 0x5a, 3u << 20);
	assert_int_equal(wr.len, before + (3u << 20));
	assert_true(wr.cap >= wr.len);
	assert_int_equal(wr.p[wr.len - 1], 0x5a);
	assert_int_equal(cfx_load_le32(wr.p + 4 * 99999), 99999u * 2654435761u);
	cfx_writer_free(&wr);
}

static void test_writer_reserve(void **state)
{
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 8);
	cfx_write_bytes(&wr, "abcdef", 6);
	uint8_t *r = cfx_writer_reserve(&wr, 100);
	/* Reserve makes room but does not change the length. */
	assert_int_equal(wr.len, 6);
	assert_true(wr.cap >= 106);
	assert_ptr_equal(r, wr.p + 6);
	size_t cap = wr.cap;
	uint8_t *r2 = cfx_writer_reserve(&wr, 100);
	assert_ptr_equal(r2, r);
	assert_int_equal(wr.cap, cap);
	memcpy(r, "gh", 2);
	(void)cfx_writer_extend(&wr, 2);
	assert_int_equal(wr.len, 8);
	assert_memory_equal(wr.p, "abcdefgh", 8);
	cfx_writer_free(&wr);
}

/* A freed writer may be used again: it grows from nothing. */
static void test_writer_reuse_after_free(void **state)
{
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 16);
	cfx_write_bytes(&wr, "x", 1);
	cfx_writer_free(&wr);
	cfx_write_uvarint64(&wr, 300);
	assert_int_equal(wr.len, 2);
	assert_int_equal(wr.p[0], 0xac);
	assert_int_equal(wr.p[1], 0x02);
	cfx_writer_free(&wr);
}

static void test_views(void **state)
{
	struct cfx_view a = CFX_VIEW_STR("abc"), b = CFX_VIEW_STR("abd"), e1 = { NULL, 0 };
	struct cfx_view e2 = CFX_VIEW_STR("");
	(void)state;

	assert_int_equal(a.len, 3);
	assert_true(cfx_view_eq(a, a));
	assert_false(cfx_view_eq(a, b));
	assert_true(cfx_view_eq_str(a, "abc"));
	assert_false(cfx_view_eq_str(a, "ab"));
	assert_false(cfx_view_eq_str(a, "abcd"));
	assert_true(cfx_view_eq(e1, e2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_make_and_left),
		cmocka_unit_test(test_read_bytes_bounds),
		cmocka_unit_test(test_read_bytes_default_reason),
		cmocka_unit_test(test_read_bytes_huge_length),
		cmocka_unit_test(test_sticky_error),
		cmocka_unit_test(test_reader_fail_explicit),
		cmocka_unit_test(test_skip_past_end),
		cmocka_unit_test(test_empty_reader),
		cmocka_unit_test(test_fixed_le),
		cmocka_unit_test(test_fixed_be),
		cmocka_unit_test(test_fixed_truncated),
		cmocka_unit_test(test_uvarint_known_bytes),
		cmocka_unit_test(test_varint_known_bytes),
		cmocka_unit_test(test_uvarint_round_trip_edges),
		cmocka_unit_test(test_varint_round_trip_edges),
		cmocka_unit_test(test_uvarint_size_boundaries),
		cmocka_unit_test(test_varint_then_fixed),
		cmocka_unit_test(test_varint_truncated),
		cmocka_unit_test(test_varint_overlong),
		cmocka_unit_test(test_varint32_overflow),
		cmocka_unit_test(test_varint64_overflow),
		cmocka_unit_test(test_varint_error_is_sticky),
		cmocka_unit_test(test_writer_fixed_and_back_patch),
		cmocka_unit_test(test_writer_growth),
		cmocka_unit_test(test_writer_reserve),
		cmocka_unit_test(test_writer_reuse_after_free),
		cmocka_unit_test(test_views),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
