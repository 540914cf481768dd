/*
 * Unit tests for src/proto/kafka/codec.c: Kafka primitives, headers, the
 * API table, error codes and the RecordBatch v2 inspector.
 *
 * Expected encodings are written out byte by byte from Kafka's protocol
 * guide rather than produced by the writers under test; the writers are
 * then checked against the same bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "proto/kafka/codec.h"
#include "store/batch.h"

/* A reader over a malloc'd copy of exactly `len` bytes, so that ASan sees
 * any read past the end. Free with free_rd(). */
static struct cfx_reader rd_of(const void *p, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	if (len)
		memcpy(copy, p, len);
	return cfx_reader_make(copy, len);
}

static void free_rd(struct cfx_reader *rd)
{
	free((void *)rd->p);
}

#define RD(...) rd_of((const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }))

static void assert_bytes(const struct cfx_writer *wr, const void *want, size_t len)
{
	assert_int_equal(wr->len, len);
	assert_memory_equal(wr->p, want, len);
}

#define ASSERT_WROTE(wr, ...)                                       \
	assert_bytes((wr), (const uint8_t[]){ __VA_ARGS__ },        \
		     sizeof((const uint8_t[]){ __VA_ARGS__ }))

/* ------------------------------------------------------------------------
 * Fixed-width types
 * ------------------------------------------------------------------------ */

static void test_fixed_ints(void **state)
{
	struct cfx_reader rd = RD(0xff, 0x80, 0x00, 0x12, 0x34, 0x56, 0x78, 0xff, 0xff, 0xff, 0xfe,
				  0x80, 0, 0, 0, 0, 0, 0, 0, 0x01);
	struct kf_uuid id;
	(void)state;

	assert_int_equal(kf_read_i8(&rd), -1);
	assert_int_equal(kf_read_i16(&rd), INT16_MIN);
	assert_int_equal(kf_read_i32(&rd), 0x12345678);
	assert_int_equal(kf_read_i32(&rd), -2);
	assert_true(kf_read_i64(&rd) == INT64_MIN);
	assert_int_equal(kf_read_bool(&rd), 1);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
	/* Past the end: 0, and the error sticks. */
	assert_int_equal(kf_read_i8(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_non_null(rd.err_desc);
	free_rd(&rd);

	/* A truncated wide read consumes nothing and returns 0. */
	rd = RD(1, 2, 3);
	assert_int_equal(kf_read_i32(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(rd.pos, 0);
	assert_int_equal(kf_read_i8(&rd), 0);
	free_rd(&rd);

	rd = RD(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	id = kf_read_uuid(&rd);
	assert_int_equal(rd.err, 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(id.b[i], i);
	id = kf_read_uuid(&rd);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(id.b[0], 0);
	free_rd(&rd);
}

static void test_fixed_writers(void **state)
{
	struct cfx_writer wr;
	struct kf_uuid id;
	(void)state;

	for (int i = 0; i < 16; i++)
		id.b[i] = (uint8_t)(0xa0 + i);
	cfx_writer_init(&wr, 0);
	kf_write_i8(&wr, -1);
	kf_write_i16(&wr, -2);
	kf_write_i32(&wr, 0x01020304);
	kf_write_i64(&wr, -1);
	kf_write_u32(&wr, 0xdeadbeef);
	kf_write_bool(&wr, 7);
	ASSERT_WROTE(&wr, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		     0xff, 0xde, 0xad, 0xbe, 0xef, 1);
	cfx_writer_reset(&wr);
	kf_write_uuid(&wr, &id);
	assert_bytes(&wr, id.b, 16);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Varints
 * ------------------------------------------------------------------------ */

/* Reads one uvarint from exactly these bytes; returns the value, *err the error. */
static uint32_t uvarint_of(const uint8_t *p, size_t len, int *err, size_t *used)
{
	struct cfx_reader rd = rd_of(p, len);
	uint32_t v = kf_read_uvarint(&rd);

	*err = rd.err;
	*used = rd.pos;
	free_rd(&rd);
	return v;
}

static void test_uvarint(void **state)
{
	static const struct {
		uint32_t v;
		uint8_t enc[5];
		size_t len;
	} cases[] = {
		{ 0, { 0x00 }, 1 },
		{ 1, { 0x01 }, 1 },
		{ 127, { 0x7f }, 1 },
		{ 128, { 0x80, 0x01 }, 2 },
		{ 300, { 0xac, 0x02 }, 2 },
		{ 16383, { 0xff, 0x7f }, 2 },
		{ 16384, { 0x80, 0x80, 0x01 }, 3 },
		{ 0x0fffffff, { 0xff, 0xff, 0xff, 0x7f }, 4 },
		{ 0x10000000, { 0x80, 0x80, 0x80, 0x80, 0x01 }, 5 },
		{ INT32_MAX, { 0xff, 0xff, 0xff, 0xff, 0x07 }, 5 },
		{ UINT32_MAX, { 0xff, 0xff, 0xff, 0xff, 0x0f }, 5 },
	};
	static const struct {
		uint8_t enc[6];
		size_t len;
	} bad[] = {
		{ { 0x80, 0x00 }, 2 },			     /* overlong zero */
		{ { 0x81, 0x00 }, 2 },			     /* overlong one */
		{ { 0xff, 0xff, 0xff, 0xff, 0x00 }, 5 },     /* overlong */
		{ { 0xff, 0xff, 0xff, 0xff, 0x10 }, 5 },     /* 2^32: overflow */
		{ { 0xff, 0xff, 0xff, 0xff, 0x7f }, 5 },     /* overflow */
		{ { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 }, 6 }, /* six bytes */
		{ { 0x80 }, 1 },			     /* truncated */
		{ { 0xff, 0xff, 0xff, 0xff }, 4 },	     /* truncated */
		{ { 0 }, 0 },				     /* empty */
	};
	struct cfx_writer wr;
	int err;
	size_t used;
	(void)state;

	cfx_writer_init(&wr, 0);
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		assert_int_equal(uvarint_of(cases[i].enc, cases[i].len, &err, &used), cases[i].v);
		assert_int_equal(err, 0);
		assert_int_equal(used, cases[i].len);
		cfx_writer_reset(&wr);
		kf_write_uvarint(&wr, cases[i].v);
		assert_bytes(&wr, cases[i].enc, cases[i].len);
		/* Every shorter prefix is truncated. */
		for (size_t cut = 0; cut < cases[i].len; cut++) {
			assert_int_equal(uvarint_of(cases[i].enc, cut, &err, &used), 0);
			assert_int_equal(err, CFX_EPARSE);
		}
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		assert_int_equal(uvarint_of(bad[i].enc, bad[i].len, &err, &used), 0);
		assert_int_equal(err, CFX_EPARSE);
	}
	cfx_writer_free(&wr);
}

static void test_varint_zigzag(void **state)
{
	static const struct {
		int32_t v;
		uint8_t enc[5];
		size_t len;
	} cases[] = {
		{ 0, { 0x00 }, 1 },
		{ -1, { 0x01 }, 1 },
		{ 1, { 0x02 }, 1 },
		{ -2, { 0x03 }, 1 },
		{ 63, { 0x7e }, 1 },
		{ -64, { 0x7f }, 1 },
		{ 64, { 0x80, 0x01 }, 2 },
		{ -65, { 0x81, 0x01 }, 2 },
		{ INT32_MAX, { 0xfe, 0xff, 0xff, 0xff, 0x0f }, 5 },
		{ INT32_MIN, { 0xff, 0xff, 0xff, 0xff, 0x0f }, 5 },
	};
	static const struct {
		int64_t v;
		uint8_t enc[10];
		size_t len;
	} lcases[] = {
		{ 0, { 0x00 }, 1 },
		{ -1, { 0x01 }, 1 },
		{ 1, { 0x02 }, 1 },
		{ (int64_t)INT32_MAX + 1, { 0x80, 0x80, 0x80, 0x80, 0x10 }, 5 },
		{ INT64_MAX, { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10 },
		{ INT64_MIN, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10 },
	};
	struct cfx_writer wr;
	struct cfx_reader rd;
	(void)state;

	cfx_writer_init(&wr, 0);
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		rd = rd_of(cases[i].enc, cases[i].len);
		assert_int_equal(kf_read_varint(&rd), cases[i].v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(rd.pos, cases[i].len);
		free_rd(&rd);
		cfx_writer_reset(&wr);
		kf_write_varint(&wr, cases[i].v);
		assert_bytes(&wr, cases[i].enc, cases[i].len);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(lcases); i++) {
		rd = rd_of(lcases[i].enc, lcases[i].len);
		assert_true(kf_read_varlong(&rd) == lcases[i].v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(rd.pos, lcases[i].len);
		free_rd(&rd);
		cfx_writer_reset(&wr);
		kf_write_varlong(&wr, lcases[i].v);
		assert_bytes(&wr, lcases[i].enc, lcases[i].len);
	}

	/* A varint's value must fit 32 bits; a varlong's 64. */
	rd = RD(0xfe, 0xff, 0xff, 0xff, 0x1f);
	assert_int_equal(kf_read_varint(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03);
	assert_true(kf_read_varlong(&rd) == 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	/* Overlong encodings of -1 are refused. */
	rd = RD(0x81, 0x00);
	assert_int_equal(kf_read_varint(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0x81, 0x80, 0x00);
	assert_true(kf_read_varlong(&rd) == 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Strings and bytes
 * ------------------------------------------------------------------------ */

static void test_string_classic(void **state)
{
	struct cfx_reader rd;
	struct cfx_view v;
	int null = -1;
	(void)state;

	/* "abc", then an empty string, then a null. */
	rd = RD(0x00, 0x03, 'a', 'b', 'c', 0x00, 0x00, 0xff, 0xff);
	v = kf_read_string(&rd, 0, &null);
	assert_int_equal(null, 0);
	assert_true(cfx_view_eq_str(v, "abc"));
	v = kf_read_string(&rd, 0, &null);
	assert_int_equal(null, 0);
	assert_int_equal(v.len, 0);
	assert_non_null(v.p); /* empty, not null */
	v = kf_read_string(&rd, 0, &null);
	assert_int_equal(null, 1);
	assert_null(v.p);
	assert_int_equal(v.len, 0);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
	free_rd(&rd);

	/* A null where the field is not nullable. */
	rd = RD(0xff, 0xff);
	v = kf_read_string(&rd, 0, NULL);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_null(v.p);
	free_rd(&rd);

	/* Lengths below -1. */
	rd = RD(0xff, 0xfe);
	kf_read_string(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(null, 0);
	free_rd(&rd);
	rd = RD(0x80, 0x00);
	kf_read_string(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* Truncated: the length says 4, three bytes follow; and a cut length. */
	rd = RD(0x00, 0x04, 'a', 'b', 'c');
	v = kf_read_string(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_null(v.p);
	assert_int_equal(v.len, 0);
	free_rd(&rd);
	rd = RD(0x00);
	kf_read_string(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
}

static void test_string_compact(void **state)
{
	struct cfx_reader rd;
	struct cfx_view v;
	int null = -1;
	uint8_t big[3 + 0x8000];
	(void)state;

	/* "abc" (length + 1 = 4), empty (1), null (0). */
	rd = RD(0x04, 'a', 'b', 'c', 0x01, 0x00);
	v = kf_read_string(&rd, 1, &null);
	assert_int_equal(null, 0);
	assert_true(cfx_view_eq_str(v, "abc"));
	v = kf_read_string(&rd, 1, &null);
	assert_int_equal(null, 0);
	assert_int_equal(v.len, 0);
	v = kf_read_string(&rd, 1, &null);
	assert_int_equal(null, 1);
	assert_null(v.p);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);

	rd = RD(0x00);
	kf_read_string(&rd, 1, NULL);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* Truncated, and an overlong length varint. */
	rd = RD(0x05, 'a', 'b', 'c');
	kf_read_string(&rd, 1, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0x84, 0x00, 'a', 'b', 'c');
	kf_read_string(&rd, 1, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* 32767 bytes is the longest string, in the compact form too. */
	memset(big, 'x', sizeof big);
	big[0] = 0x80; /* 0x8000 = 32767 + 1 */
	big[1] = 0x80;
	big[2] = 0x02;
	rd = rd_of(big, 3 + 0x7fff);
	v = kf_read_string(&rd, 1, NULL);
	assert_int_equal(rd.err, 0);
	assert_int_equal(v.len, 0x7fff);
	free_rd(&rd);
	big[0] = 0x81; /* 0x8001: 32768 bytes */
	rd = rd_of(big, sizeof big);
	kf_read_string(&rd, 1, NULL);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
}

static void test_bytes(void **state)
{
	struct cfx_reader rd;
	struct cfx_view v;
	int null = -1;
	(void)state;

	rd = RD(0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00);
	v = kf_read_bytes(&rd, 0, &null);
	assert_int_equal(v.len, 2);
	assert_int_equal(v.p[1], 0xbb);
	assert_int_equal(null, 0);
	v = kf_read_bytes(&rd, 0, &null);
	assert_int_equal(null, 1);
	assert_null(v.p);
	v = kf_read_bytes(&rd, 0, &null);
	assert_int_equal(null, 0);
	assert_int_equal(v.len, 0);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);

	rd = RD(0x03, 0xaa, 0xbb, 0x00, 0x01);
	v = kf_read_bytes(&rd, 1, &null);
	assert_int_equal(v.len, 2);
	v = kf_read_bytes(&rd, 1, &null);
	assert_int_equal(null, 1);
	v = kf_read_bytes(&rd, 1, &null);
	assert_int_equal(null, 0);
	assert_int_equal(v.len, 0);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);

	/* A huge length with a few bytes left; -2; truncated. */
	rd = RD(0x7f, 0xff, 0xff, 0xff, 0x00);
	kf_read_bytes(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0xff, 0xff, 0xff, 0xfe);
	kf_read_bytes(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0xff, 0xff, 0xff, 0xff, 0x0f, 0x00);
	kf_read_bytes(&rd, 1, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0x00, 0x00, 0x00);
	kf_read_bytes(&rd, 0, &null);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
}

static void test_string_writers(void **state)
{
	struct cfx_writer wr;
	struct cfx_view abc = CFX_VIEW_STR("abc"), empty = CFX_VIEW_STR("");
	(void)state;

	cfx_writer_init(&wr, 0);
	kf_write_string(&wr, abc, 0, 0);
	kf_write_string(&wr, empty, 0, 0);
	kf_write_string(&wr, abc, 0, 1);
	ASSERT_WROTE(&wr, 0x00, 0x03, 'a', 'b', 'c', 0x00, 0x00, 0xff, 0xff);
	assert_int_equal(kf_string_size(3, 0, 0) + kf_string_size(0, 0, 0) + kf_string_size(3, 0, 1),
			 wr.len);

	cfx_writer_reset(&wr);
	kf_write_string(&wr, abc, 1, 0);
	kf_write_string(&wr, empty, 1, 0);
	kf_write_string(&wr, abc, 1, 1);
	ASSERT_WROTE(&wr, 0x04, 'a', 'b', 'c', 0x01, 0x00);
	assert_int_equal(kf_string_size(3, 1, 0) + kf_string_size(0, 1, 0) + kf_string_size(3, 1, 1),
			 wr.len);

	cfx_writer_reset(&wr);
	kf_write_bytes(&wr, abc, 0, 0);
	kf_write_bytes(&wr, abc, 0, 1);
	kf_write_bytes(&wr, abc, 1, 0);
	kf_write_bytes(&wr, abc, 1, 1);
	ASSERT_WROTE(&wr, 0, 0, 0, 3, 'a', 'b', 'c', 0xff, 0xff, 0xff, 0xff, 0x04, 'a', 'b', 'c',
		     0x00);
	assert_int_equal(kf_bytes_size(3, 0, 0) + kf_bytes_size(3, 0, 1) + kf_bytes_size(3, 1, 0) +
				 kf_bytes_size(3, 1, 1),
			 wr.len);

	/* A compact length that needs two bytes. */
	assert_int_equal(kf_string_size(127, 1, 0), 2 + 127);
	assert_int_equal(kf_string_size(126, 1, 0), 1 + 126);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Arrays and tagged fields
 * ------------------------------------------------------------------------ */

static void test_array_len(void **state)
{
	struct cfx_reader rd;
	struct cfx_writer wr;
	(void)state;

	/* Classic: null, empty, 3 elements with 3 bytes left. */
	rd = RD(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c');
	assert_int_equal(kf_read_array_len(&rd, 0), -1);
	assert_int_equal(kf_read_array_len(&rd, 0), 0);
	assert_int_equal(kf_read_array_len(&rd, 0), 3);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);

	/* 3 elements, 2 bytes left. */
	rd = RD(0, 0, 0, 3, 'a', 'b');
	assert_int_equal(kf_read_array_len(&rd, 0), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* A huge count with few bytes left, classic and compact. */
	rd = RD(0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4);
	assert_int_equal(kf_read_array_len(&rd, 0), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);
	rd = RD(0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3);
	assert_int_equal(kf_read_array_len(&rd, 1), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* Below -1. */
	rd = RD(0xff, 0xff, 0xff, 0xfe, 0);
	assert_int_equal(kf_read_array_len(&rd, 0), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* Compact: 0 is null, 1 empty, 3 two elements. */
	rd = RD(0x00, 0x01, 0x03, 'x', 'y');
	assert_int_equal(kf_read_array_len(&rd, 1), -1);
	assert_int_equal(kf_read_array_len(&rd, 1), 0);
	assert_int_equal(kf_read_array_len(&rd, 1), 2);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);

	/* With a minimum element size: two INT32 need 8 bytes. */
	rd = RD(0x03, 0, 0, 0, 1, 0, 0, 0, 2);
	assert_int_equal(kf_read_array_len_min(&rd, 1, 4), 2);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);
	rd = RD(0x03, 0, 0, 0, 1, 0, 0, 0);
	assert_int_equal(kf_read_array_len_min(&rd, 1, 4), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	cfx_writer_init(&wr, 0);
	kf_write_array_len(&wr, -1, 0);
	kf_write_array_len(&wr, 2, 0);
	kf_write_array_len(&wr, -1, 1);
	kf_write_array_len(&wr, 0, 1);
	kf_write_array_len(&wr, 200, 1);
	ASSERT_WROTE(&wr, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0x00, 0x01, 0xc9, 0x01);
	cfx_writer_free(&wr);
}

static void test_tagged_fields(void **state)
{
	struct cfx_reader rd;
	struct cfx_writer wr;
	struct cfx_view data;
	uint32_t tag;
	/* Two fields: tag 0 with "xyz", tag 300 with nothing; then a marker. */
	static const uint8_t two[] = { 0x02, 0x00, 0x03, 'x', 'y', 'z', 0xac, 0x02, 0x00, 0x5a };
	(void)state;

	rd = rd_of(two, sizeof two);
	kf_skip_tagged_fields(&rd);
	assert_int_equal(rd.err, 0);
	assert_int_equal(kf_read_i8(&rd), 0x5a);
	free_rd(&rd);

	rd = rd_of(two, sizeof two);
	assert_int_equal(kf_read_tagged_count(&rd), 2);
	kf_read_tagged_field(&rd, &tag, &data);
	assert_int_equal(tag, 0);
	assert_true(cfx_view_eq_str(data, "xyz"));
	kf_read_tagged_field(&rd, &tag, &data);
	assert_int_equal(tag, 300);
	assert_int_equal(data.len, 0);
	assert_int_equal(rd.err, 0);
	free_rd(&rd);

	/* Every truncation fails (the marker is not part of the fields). */
	for (size_t cut = 0; cut < sizeof two - 1; cut++) {
		rd = rd_of(two, cut);
		kf_skip_tagged_fields(&rd);
		assert_int_equal(rd.err, CFX_EPARSE);
		free_rd(&rd);
	}

	/* None at all. */
	rd = RD(0x00);
	kf_skip_tagged_fields(&rd);
	assert_int_equal(rd.err, 0);
	assert_int_equal(rd.pos, 1);
	free_rd(&rd);

	/* A count the bytes left cannot hold (a field takes at least 2). */
	rd = RD(0x03, 0x00, 0x00, 0x01, 0x00, 0x02);
	kf_skip_tagged_fields(&rd);
	assert_int_equal(rd.err, CFX_EPARSE);
	assert_int_equal(rd.pos, 1); /* refused at the count, before any field */
	free_rd(&rd);
	rd = RD(0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00);
	assert_int_equal(kf_read_tagged_count(&rd), 0);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	/* A size past the end. */
	rd = RD(0x01, 0x00, 0x7f, 'a');
	kf_skip_tagged_fields(&rd);
	assert_int_equal(rd.err, CFX_EPARSE);
	free_rd(&rd);

	cfx_writer_init(&wr, 0);
	kf_write_empty_tagged_fields(&wr);
	ASSERT_WROTE(&wr, 0x00);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * The API table and header versions
 * ------------------------------------------------------------------------ */

static void test_api_table(void **state)
{
	/* The APIs the broker needs, with Kafka's first flexible version. */
	static const struct {
		int16_t key;
		const char *name;
		int16_t flexible_from;
	} want[] = {
		{ 18, "ApiVersions", 3 },	  { 3, "Metadata", 9 },
		{ 0, "Produce", 9 },		  { 1, "Fetch", 12 },
		{ 2, "ListOffsets", 6 },	  { 10, "FindCoordinator", 3 },
		{ 11, "JoinGroup", 6 },		  { 14, "SyncGroup", 4 },
		{ 12, "Heartbeat", 4 },		  { 13, "LeaveGroup", 4 },
		{ 8, "OffsetCommit", 8 },	  { 9, "OffsetFetch", 6 },
		{ 16, "ListGroups", 3 },	  { 15, "DescribeGroups", 5 },
		{ 19, "CreateTopics", 5 },	  { 20, "DeleteTopics", 4 },
		{ 37, "CreatePartitions", 2 },	  { 32, "DescribeConfigs", 4 },
		{ 22, "InitProducerId", 2 },	  { 23, "OffsetForLeaderEpoch", 4 },
		{ 60, "DescribeCluster", 0 },	  { 17, "SaslHandshake", KF_FLEX_NONE },
		{ 36, "SaslAuthenticate", 2 },
	};
	(void)state;

	assert_true(kf_napis >= CFX_ARRAY_LEN(want));
	for (size_t i = 0; i < kf_napis; i++) {
		assert_non_null(kf_apis[i].name);
		assert_true(kf_apis[i].min_version >= 0);
		assert_true(kf_apis[i].min_version <= kf_apis[i].max_version);
		if (i > 0)
			assert_true(kf_apis[i - 1].key < kf_apis[i].key);
		assert_ptr_equal(kf_api_lookup(kf_apis[i].key), &kf_apis[i]);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(want); i++) {
		const struct kf_api_info *api = kf_api_lookup(want[i].key);

		assert_non_null(api);
		assert_string_equal(api->name, want[i].name);
		assert_int_equal(api->flexible_from, want[i].flexible_from);
	}
	/* A few ranges (Kafka 4.3 schemas). */
	assert_int_equal(kf_api_lookup(0)->min_version, 3);
	assert_int_equal(kf_api_lookup(0)->max_version, 13);
	assert_int_equal(kf_api_lookup(1)->min_version, 4);
	assert_int_equal(kf_api_lookup(18)->max_version, 4);
	assert_int_equal(kf_api_lookup(3)->min_version, 0);

	assert_null(kf_api_lookup(-1));
	assert_null(kf_api_lookup(4)); /* LeaderAndIsr: inter-broker */
	assert_null(kf_api_lookup(7)); /* ControlledShutdown: header rules only */
	assert_null(kf_api_lookup(INT16_MAX));

	assert_true(kf_api_is_flexible(0, 9));
	assert_false(kf_api_is_flexible(0, 8));
	assert_false(kf_api_is_flexible(17, 1));
	assert_false(kf_api_is_flexible(17, INT16_MAX));
	assert_false(kf_api_is_flexible(4, 10));
}

static void test_header_versions(void **state)
{
	static const struct {
		int16_t key, version;
		int req, resp;
	} cases[] = {
		{ 18, 0, 1, 0 },  { 18, 2, 1, 0 },  { 18, 3, 2, 0 },   { 18, 4, 2, 0 },
		{ 18, 9, 2, 0 },  /* a too-new ApiVersions is still parsed */
		{ 0, 3, 1, 0 },	  { 0, 8, 1, 0 },   { 0, 9, 2, 1 },    { 0, 13, 2, 1 },
		{ 1, 11, 1, 0 },  { 1, 12, 2, 1 },  { 3, 8, 1, 0 },    { 3, 9, 2, 1 },
		{ 3, 12, 2, 1 },  { 10, 2, 1, 0 },  { 10, 3, 2, 1 },   { 17, 0, 1, 0 },
		{ 17, 1, 1, 0 },  { 36, 1, 1, 0 },  { 36, 2, 2, 1 },   { 60, 0, 2, 1 },
		{ 7, 0, 0, 0 },	  { 7, 1, 1, 0 },   { 7, 2, 1, 0 },    { 7, 3, 2, 1 },
		{ 4, 0, -1, -1 }, { 99, 0, -1, -1 }, { -1, 0, -1, -1 },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		assert_int_equal(kf_request_header_version(cases[i].key, cases[i].version),
				 cases[i].req);
		assert_int_equal(kf_response_header_version(cases[i].key, cases[i].version),
				 cases[i].resp);
	}
}

/* ------------------------------------------------------------------------
 * Request headers
 * ------------------------------------------------------------------------ */

/* ApiVersions v3 as librdkafka sends it (header v2, client.id "rdkafka"),
 * the body (ClientSoftwareName, ClientSoftwareVersion, tags) after it. */
static const uint8_t api_versions_v3[] = {
	0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,		/* key 18, v3, corr 1 */
	0x00, 0x07, 'r', 'd', 'k', 'a', 'f', 'k', 'a',		/* ClientId */
	0x00,							/* header tags */
	0x0b, 'l', 'i', 'b', 'r', 'd', 'k', 'a', 'f', 'k', 'a', /* body */
	0x06, '2', '.', '6', '.', '0', 0x00,
};

static void test_parse_header_v2(void **state)
{
	struct cfx_reader rd = rd_of(api_versions_v3, sizeof api_versions_v3);
	struct kf_req_header h;
	int null;
	(void)state;

	assert_int_equal(kf_parse_request_header(&rd, &h), 0);
	assert_int_equal(h.api_key, 18);
	assert_int_equal(h.api_version, 3);
	assert_int_equal(h.correlation_id, 1);
	assert_int_equal(h.header_version, 2);
	assert_int_equal(h.client_id_null, 0);
	assert_true(cfx_view_eq_str(h.client_id, "rdkafka"));
	assert_int_equal(h.header_bytes, 18);
	assert_int_equal(rd.pos, 18);
	/* The body follows in compact form. */
	assert_true(cfx_view_eq_str(kf_read_string(&rd, 1, &null), "librdkafka"));
	assert_true(cfx_view_eq_str(kf_read_string(&rd, 1, &null), "2.6.0"));
	kf_skip_tagged_fields(&rd);
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
	free_rd(&rd);

	/* Every truncation of the header fails. */
	for (size_t cut = 0; cut < 18; cut++) {
		rd = rd_of(api_versions_v3, cut);
		assert_int_equal(kf_parse_request_header(&rd, &h), CFX_EPARSE);
		assert_int_equal(rd.err, CFX_EPARSE);
		assert_null(h.client_id.p);
		free_rd(&rd);
	}

	/* Header tagged fields are skipped. */
	rd = RD(0x00, 0x03, 0x00, 0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, /* Metadata v12, null id */
		0x01, 0x00, 0x02, 0xaa, 0xbb, 0x42);
	assert_int_equal(kf_parse_request_header(&rd, &h), 0);
	assert_int_equal(h.header_version, 2);
	assert_int_equal(h.correlation_id, INT32_MAX);
	assert_int_equal(h.client_id_null, 1);
	assert_null(h.client_id.p);
	assert_int_equal(kf_read_i8(&rd), 0x42);
	free_rd(&rd);

	/* The ClientId stays a classic string in header v2: a compact one is misread. */
	rd = RD(0x00, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x08, 'r', 'd', 'k', 'a', 'f', 'k', 'a', 0x00);
	assert_int_equal(kf_parse_request_header(&rd, &h), CFX_EPARSE);
	free_rd(&rd);
}

static void test_parse_header_v0_v1(void **state)
{
	struct kf_req_header h;
	struct cfx_reader rd;
	(void)state;

	/* Produce v8 (header v1), client.id "kafkajs". */
	rd = RD(0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0x07, 'k', 'a', 'f', 'k', 'a',
		'j', 's', 0xee);
	assert_int_equal(kf_parse_request_header(&rd, &h), 0);
	assert_int_equal(h.header_version, 1);
	assert_int_equal(h.correlation_id, 256);
	assert_true(cfx_view_eq_str(h.client_id, "kafkajs"));
	assert_int_equal(h.header_bytes, 17);
	assert_int_equal(kf_read_i8(&rd), (int8_t)0xee); /* no tagged fields in v1 */
	free_rd(&rd);

	/* ApiVersions v2 (kafkajs's newest) with a null client id: header v1. */
	rd = RD(0x00, 0x12, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff);
	assert_int_equal(kf_parse_request_header(&rd, &h), 0);
	assert_int_equal(h.header_version, 1);
	assert_int_equal(h.client_id_null, 1);
	assert_int_equal(cfx_reader_left(&rd), 0);
	free_rd(&rd);

	/* ControlledShutdown v0: header v0, no client id at all. */
	rd = RD(0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01);
	assert_int_equal(kf_parse_request_header(&rd, &h), 0);
	assert_int_equal(h.header_version, 0);
	assert_int_equal(h.correlation_id, 5);
	assert_int_equal(h.client_id_null, 1);
	assert_int_equal(h.header_bytes, 8);
	assert_int_equal(kf_read_i32(&rd), 1); /* BrokerId of the body */
	free_rd(&rd);

	/* An unknown key: what could be read is there, the rest is not read. */
	rd = RD(0x00, 0x04, 0x00, 0x07, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00);
	assert_int_equal(kf_parse_request_header(&rd, &h), CFX_EUNSUPPORTED);
	assert_int_equal(h.api_key, 4);
	assert_int_equal(h.api_version, 7);
	assert_int_equal(h.correlation_id, 9);
	assert_int_equal(h.header_version, -1);
	assert_int_equal(rd.err, 0);
	assert_int_equal(rd.pos, 8);
	free_rd(&rd);

	/* A client id that runs past the end. */
	rd = RD(0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x09, 'a');
	assert_int_equal(kf_parse_request_header(&rd, &h), CFX_EPARSE);
	free_rd(&rd);
}

static void test_write_request_header(void **state)
{
	struct cfx_writer wr;
	struct kf_req_header h = {
		.api_key = 18,
		.api_version = 3,
		.correlation_id = 1,
		.client_id = CFX_VIEW_STR("rdkafka"),
	};
	struct kf_req_header back;
	struct cfx_reader rd;
	(void)state;

	cfx_writer_init(&wr, 0);
	kf_write_request_header(&wr, &h, 2);
	assert_bytes(&wr, api_versions_v3, 18);
	rd = cfx_reader_make(wr.p, wr.len);
	assert_int_equal(kf_parse_request_header(&rd, &back), 0);
	assert_true(cfx_view_eq(back.client_id, h.client_id));
	cfx_writer_reset(&wr);
	h.api_key = 7;
	h.api_version = 0;
	kf_write_request_header(&wr, &h, 0);
	ASSERT_WROTE(&wr, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------ */

static void test_frame_check(void **state)
{
	static const uint8_t frame[] = { 0, 0, 0, 8, 0, 18, 0, 0, 0, 0, 0, 1, 0xaa };
	size_t n = 0;
	(void)state;

	for (size_t len = 0; len < 12; len++)
		assert_int_equal(kf_frame_check(frame, len, KF_FRAME_BYTES_MAX, &n), CFX_NEED_MORE);
	assert_int_equal(kf_frame_check(frame, 12, KF_FRAME_BYTES_MAX, &n), 0);
	assert_int_equal(n, 12);
	assert_int_equal(kf_frame_check(frame, sizeof frame, KF_FRAME_BYTES_MAX, &n), 0);
	assert_int_equal(n, 12);
	assert_int_equal(kf_frame_check(frame, sizeof frame, 7, &n), CFX_E2BIG);
	assert_int_equal(kf_frame_check((const uint8_t[]){ 0xff, 0xff, 0xff, 0xff }, 4,
					KF_FRAME_BYTES_MAX, &n),
			 CFX_EPARSE);
	assert_int_equal(kf_frame_check((const uint8_t[]){ 0, 0, 0, 7 }, 4, KF_FRAME_BYTES_MAX, &n),
			 CFX_EPARSE);
	/* Too big is known from the size alone, before the bytes arrive. */
	assert_int_equal(kf_frame_check((const uint8_t[]){ 0x7f, 0, 0, 0 }, 4, KF_FRAME_BYTES_MAX,
					&n),
			 CFX_E2BIG);
}

static void test_response_framing(void **state)
{
	struct cfx_writer wr;
	size_t start;
	(void)state;

	cfx_writer_init(&wr, 0);
	/* An ApiVersions v3 response: header v0. */
	start = kf_begin_response(&wr, 7, kf_response_header_version(18, 3));
	kf_write_i16(&wr, KF_ERR_NONE);
	kf_end_response(&wr, start);
	ASSERT_WROTE(&wr, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0);

	/* A Metadata v12 response after it: header v1 (tags). */
	start = kf_begin_response(&wr, -2, kf_response_header_version(3, 12));
	assert_int_equal(start, 10);
	kf_write_i32(&wr, 0);
	kf_end_response(&wr, start);
	ASSERT_WROTE(&wr, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xfe, 0x00,
		     0, 0, 0, 0);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Error codes
 * ------------------------------------------------------------------------ */

static void test_error_codes(void **state)
{
	static const struct {
		int code, want;
		const char *name;
	} cases[] = {
		{ KF_ERR_NONE, 0, "NONE" },
		{ KF_ERR_UNKNOWN_SERVER_ERROR, -1, "UNKNOWN_SERVER_ERROR" },
		{ KF_ERR_OFFSET_OUT_OF_RANGE, 1, "OFFSET_OUT_OF_RANGE" },
		{ KF_ERR_CORRUPT_MESSAGE, 2, "CORRUPT_MESSAGE" },
		{ KF_ERR_UNKNOWN_TOPIC_OR_PARTITION, 3, "UNKNOWN_TOPIC_OR_PARTITION" },
		{ KF_ERR_INVALID_FETCH_SIZE, 4, "INVALID_FETCH_SIZE" },
		{ KF_ERR_LEADER_NOT_AVAILABLE, 5, "LEADER_NOT_AVAILABLE" },
		{ KF_ERR_NOT_LEADER_OR_FOLLOWER, 6, "NOT_LEADER_OR_FOLLOWER" },
		{ KF_ERR_REQUEST_TIMED_OUT, 7, "REQUEST_TIMED_OUT" },
		{ KF_ERR_MESSAGE_TOO_LARGE, 10, "MESSAGE_TOO_LARGE" },
		{ KF_ERR_COORDINATOR_NOT_AVAILABLE, 15, "COORDINATOR_NOT_AVAILABLE" },
		{ KF_ERR_NOT_COORDINATOR, 16, "NOT_COORDINATOR" },
		{ KF_ERR_INVALID_TOPIC_EXCEPTION, 17, "INVALID_TOPIC_EXCEPTION" },
		{ KF_ERR_RECORD_LIST_TOO_LARGE, 18, "RECORD_LIST_TOO_LARGE" },
		{ KF_ERR_NOT_ENOUGH_REPLICAS, 19, "NOT_ENOUGH_REPLICAS" },
		{ KF_ERR_INVALID_REQUIRED_ACKS, 21, "INVALID_REQUIRED_ACKS" },
		{ KF_ERR_ILLEGAL_GENERATION, 22, "ILLEGAL_GENERATION" },
		{ KF_ERR_INCONSISTENT_GROUP_PROTOCOL, 23, "INCONSISTENT_GROUP_PROTOCOL" },
		{ KF_ERR_INVALID_GROUP_ID, 24, "INVALID_GROUP_ID" },
		{ KF_ERR_UNKNOWN_MEMBER_ID, 25, "UNKNOWN_MEMBER_ID" },
		{ KF_ERR_INVALID_SESSION_TIMEOUT, 26, "INVALID_SESSION_TIMEOUT" },
		{ KF_ERR_REBALANCE_IN_PROGRESS, 27, "REBALANCE_IN_PROGRESS" },
		{ KF_ERR_TOPIC_AUTHORIZATION_FAILED, 29, "TOPIC_AUTHORIZATION_FAILED" },
		{ KF_ERR_GROUP_AUTHORIZATION_FAILED, 30, "GROUP_AUTHORIZATION_FAILED" },
		{ KF_ERR_UNSUPPORTED_SASL_MECHANISM, 33, "UNSUPPORTED_SASL_MECHANISM" },
		{ KF_ERR_ILLEGAL_SASL_STATE, 34, "ILLEGAL_SASL_STATE" },
		{ KF_ERR_UNSUPPORTED_VERSION, 35, "UNSUPPORTED_VERSION" },
		{ KF_ERR_TOPIC_ALREADY_EXISTS, 36, "TOPIC_ALREADY_EXISTS" },
		{ KF_ERR_INVALID_PARTITIONS, 37, "INVALID_PARTITIONS" },
		{ KF_ERR_INVALID_REQUEST, 42, "INVALID_REQUEST" },
		{ KF_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT, 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT" },
		{ KF_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER" },
		{ KF_ERR_DUPLICATE_SEQUENCE_NUMBER, 46, "DUPLICATE_SEQUENCE_NUMBER" },
		{ KF_ERR_INVALID_PRODUCER_EPOCH, 47, "INVALID_PRODUCER_EPOCH" },
		{ KF_ERR_KAFKA_STORAGE_ERROR, 56, "KAFKA_STORAGE_ERROR" },
		{ KF_ERR_SASL_AUTHENTICATION_FAILED, 58, "SASL_AUTHENTICATION_FAILED" },
		{ KF_ERR_UNKNOWN_PRODUCER_ID, 59, "UNKNOWN_PRODUCER_ID" },
		{ KF_ERR_GROUP_ID_NOT_FOUND, 69, "GROUP_ID_NOT_FOUND" },
		{ KF_ERR_UNSUPPORTED_COMPRESSION_TYPE, 76, "UNSUPPORTED_COMPRESSION_TYPE" },
		{ KF_ERR_MEMBER_ID_REQUIRED, 79, "MEMBER_ID_REQUIRED" },
		{ KF_ERR_INVALID_RECORD, 87, "INVALID_RECORD" },
		{ KF_ERR_PRODUCER_FENCED, 90, "PRODUCER_FENCED" },
		{ KF_ERR_UNKNOWN_TOPIC_ID, 100, "UNKNOWN_TOPIC_ID" },
		{ KF_ERR_TRANSACTION_ABORTABLE, 120, "TRANSACTION_ABORTABLE" },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		assert_int_equal(cases[i].code, cases[i].want);
		assert_string_equal(kf_error_name(cases[i].want), cases[i].name);
	}
	assert_string_equal(kf_error_name(99), "UNKNOWN"); /* never assigned */
	assert_string_equal(kf_error_name(-2), "UNKNOWN");
	assert_string_equal(kf_error_name(10000), "UNKNOWN");
}

/* ------------------------------------------------------------------------
 * RecordBatch v2
 * ------------------------------------------------------------------------ */

/* Writes one record: null key, the value, no headers (Kafka's Record). */
static void put_record(struct cfx_writer *wr, int32_t offset_delta, int64_t ts_delta,
		       const char *value)
{
	struct cfx_writer body;
	size_t vlen = strlen(value);

	cfx_writer_init(&body, 0);
	kf_write_i8(&body, 0);			/* attributes */
	kf_write_varlong(&body, ts_delta);	/* timestampDelta */
	kf_write_varint(&body, offset_delta);	/* offsetDelta */
	kf_write_varint(&body, -1);		/* keyLength: null */
	kf_write_varint(&body, (int32_t)vlen);	/* valueLength */
	cfx_write_bytes(&body, value, vlen);	/* value */
	kf_write_varint(&body, 0);		/* headers count */
	kf_write_varint(wr, (int32_t)body.len); /* length */
	cfx_write_bytes(wr, body.p, body.len);
	cfx_writer_free(&body);
}

struct batch_spec {
	int64_t base_offset;
	int32_t leader_epoch;
	int16_t attributes;
	int64_t base_ts, max_ts;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int nrecords;
};

/* Appends a batch of spec->nrecords records, sealed with its CRC. Returns its offset in wr. */
static size_t put_batch(struct cfx_writer *wr, const struct batch_spec *s)
{
	size_t start = wr->len;

	kf_write_i64(wr, s->base_offset);
	kf_write_i32(wr, 0); /* batchLength, patched below */
	kf_write_i32(wr, s->leader_epoch);
	kf_write_i8(wr, 2);  /* magic */
	kf_write_u32(wr, 0); /* crc, patched below */
	kf_write_i16(wr, s->attributes);
	kf_write_i32(wr, s->nrecords - 1); /* lastOffsetDelta */
	kf_write_i64(wr, s->base_ts);
	kf_write_i64(wr, s->max_ts);
	kf_write_i64(wr, s->producer_id);
	kf_write_i16(wr, s->producer_epoch);
	kf_write_i32(wr, s->base_sequence);
	kf_write_i32(wr, s->nrecords);
	for (int i = 0; i < s->nrecords; i++)
		put_record(wr, i, i * 10, i % 2 ? "world" : "hello");
	cfx_store_be32(wr->p + start + 8, (uint32_t)(wr->len - start - 12));
	cfx_store_be32(wr->p + start + 17, cfx_crc32c(0, wr->p + start + 21, wr->len - start - 21));
	return start;
}

static const struct batch_spec spec_a = {
	.base_offset = 0,
	.leader_epoch = -1,
	.attributes = 0,
	.base_ts = 1700000000000,
	.max_ts = 1700000000010,
	.producer_id = 4000,
	.producer_epoch = 3,
	.base_sequence = 17,
	.nrecords = 2,
};

/* Inspects a malloc'd copy of exactly `len` bytes of `p`. */
static int inspect_copy(const uint8_t *p, size_t len, struct kf_batch_meta *m)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	if (len)
		memcpy(copy, p, len);
	rc = kf_batch_inspect(copy, len, m);
	free(copy);
	return rc;
}

static void reseal(uint8_t *b, size_t len)
{
	cfx_store_be32(b + KF_BATCH_CRC_OFF,
		       cfx_crc32c(0, b + KF_BATCH_ATTRIBUTES_OFF, len - KF_BATCH_ATTRIBUTES_OFF));
}

static void test_batch_inspect(void **state)
{
	struct cfx_writer wr;
	struct kf_batch_meta m;
	uint8_t *b;
	size_t len;
	(void)state;

	cfx_writer_init(&wr, 0);
	put_batch(&wr, &spec_a);
	b = wr.p;
	len = wr.len;

	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_true(m.base_offset == 0);
	assert_int_equal(m.batch_length, (int32_t)(len - 12));
	assert_int_equal(m.partition_leader_epoch, -1);
	assert_int_equal(m.magic, 2);
	assert_int_equal(m.crc, cfx_crc32c(0, b + 21, len - 21));
	assert_int_equal(m.crc_ok, 1);
	assert_int_equal(m.attributes, 0);
	assert_int_equal(m.compression, KF_COMPRESSION_NONE);
	assert_int_equal(m.log_append_time, 0);
	assert_int_equal(m.is_transactional, 0);
	assert_int_equal(m.is_control, 0);
	assert_int_equal(m.last_offset_delta, 1);
	assert_true(m.base_timestamp_ms == 1700000000000);
	assert_true(m.max_timestamp_ms == 1700000000010);
	assert_true(m.producer_id == 4000);
	assert_int_equal(m.producer_epoch, 3);
	assert_int_equal(m.base_sequence, 17);
	assert_int_equal(m.record_count, 2);
	assert_int_equal(m.batch_bytes, len);
	assert_ptr_equal(m.records.p, b + 61);
	assert_int_equal(m.records.len, len - 61);
	assert_true(kf_batch_is_valid_from_client(&m));

	/* Every truncation is rejected, and so is one byte too many. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(inspect_copy(b, cut, &m), CFX_EPARSE);
	{
		uint8_t *longer = malloc(len + 1);
		assert_non_null(longer);
		memcpy(longer, b, len);
		longer[len] = 0;
		assert_int_equal(kf_batch_inspect(longer, len + 1, &m), CFX_EPARSE);
		free(longer);
	}

	/* A bad CRC is reported, not refused. */
	b[len - 1] ^= 1;
	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_int_equal(m.crc_ok, 0);
	b[len - 1] ^= 1;
	/* The leader epoch and base offset are outside the CRC. */
	cfx_store_be32(b + 12, 7);
	cfx_store_be64(b, 1000);
	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_int_equal(m.crc_ok, 1);
	assert_int_equal(m.partition_leader_epoch, 7);
	assert_true(m.base_offset == 1000);

	/* Attribute bits. */
	cfx_store_be16(b + 21, KF_COMPRESSION_ZSTD | KF_BATCH_ATTR_LOG_APPEND_TIME |
				       KF_BATCH_ATTR_TRANSACTIONAL | KF_BATCH_ATTR_CONTROL);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_int_equal(m.crc_ok, 1);
	assert_int_equal(m.compression, KF_COMPRESSION_ZSTD);
	assert_int_equal(m.log_append_time, 1);
	assert_int_equal(m.is_transactional, 1);
	assert_int_equal(m.is_control, 1);
	/* Codecs 5-7 do not exist. */
	for (int codec = 5; codec <= 7; codec++) {
		cfx_store_be16(b + 21, (uint16_t)codec);
		reseal(b, len);
		assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	}
	cfx_store_be16(b + 21, 0);
	reseal(b, len);

	/* Magic 0 and 1 are not supported; anything else but 2 is malformed. */
	b[16] = 1;
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EUNSUPPORTED);
	b[16] = 0;
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EUNSUPPORTED);
	assert_int_equal(inspect_copy(b, 17, &m), CFX_EUNSUPPORTED);
	b[16] = 3;
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	b[16] = 0xff;
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	b[16] = 2;

	/* batchLength must match the buffer exactly. */
	cfx_store_be32(b + 8, (uint32_t)(len - 12 + 1));
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	cfx_store_be32(b + 8, (uint32_t)(len - 12 - 1));
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	cfx_store_be32(b + 8, 0xffffffffu);
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	cfx_store_be32(b + 8, (uint32_t)(len - 12));

	/* Counts: negative, more than lastOffsetDelta + 1, more than the bytes hold. */
	cfx_store_be32(b + 57, 0xffffffffu);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	cfx_store_be32(b + 57, 3);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	cfx_store_be32(b + 23, 1000000);
	cfx_store_be32(b + 57, 1000000);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);
	/* ... which a compressed batch may claim. */
	cfx_store_be16(b + 21, KF_COMPRESSION_GZIP);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_int_equal(m.record_count, 1000000);
	cfx_store_be32(b + 23, 0xffffffffu);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), CFX_EPARSE);

	/* A compacted batch: fewer records than lastOffsetDelta + 1, fine
	 * here but not from a client. */
	cfx_store_be16(b + 21, 0);
	cfx_store_be32(b + 23, 5);
	cfx_store_be32(b + 57, 2);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_false(kf_batch_is_valid_from_client(&m));
	cfx_store_be32(b + 23, 0);
	cfx_store_be32(b + 57, 0);
	reseal(b, len);
	assert_int_equal(kf_batch_inspect(b, len, &m), 0);
	assert_false(kf_batch_is_valid_from_client(&m));

	cfx_writer_free(&wr);
}

/* A batch written by the store's encoder passes the inspector. */
static void test_batch_inspect_store_encoded(void **state)
{
	struct cfx_msg msgs[3] = {
		{ .body = CFX_VIEW_STR("one"), .key_null = 1, .born_ms = 1 },
		{ .body = CFX_VIEW_STR("two"), .key = CFX_VIEW_STR("k"), .born_ms = 2 },
		{ .body = CFX_VIEW_STR("three"), .key_null = 1, .tag = CFX_VIEW_STR("t"), .born_ms = 3 },
	};
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct kf_batch_meta m;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, 3, &info), 0);
	assert_int_equal(kf_batch_inspect(wr.p, wr.len, &m), 0);
	assert_int_equal(m.crc_ok, 1);
	assert_int_equal(m.record_count, 3);
	assert_int_equal(m.last_offset_delta, 2);
	assert_true(kf_batch_is_valid_from_client(&m));
	cfx_writer_free(&wr);
}

static void test_batch_iter(void **state)
{
	struct batch_spec spec_b = spec_a;
	struct kf_batch_iter it;
	struct kf_batch_meta m;
	struct cfx_view b;
	struct cfx_writer wr;
	size_t first_len;
	uint8_t *copy;
	(void)state;

	spec_b.nrecords = 3;
	spec_b.base_sequence = 19;
	cfx_writer_init(&wr, 0);
	put_batch(&wr, &spec_a);
	first_len = wr.len;
	put_batch(&wr, &spec_b);

	kf_batch_iter_init(&it, wr.p, wr.len);
	assert_int_equal(kf_batch_next(&it, &b, &m), 1);
	assert_ptr_equal(b.p, wr.p);
	assert_int_equal(b.len, first_len);
	assert_int_equal(m.record_count, 2);
	assert_int_equal(m.crc_ok, 1);
	assert_int_equal(kf_batch_next(&it, &b, &m), 1);
	assert_ptr_equal(b.p, wr.p + first_len);
	assert_int_equal(b.len, wr.len - first_len);
	assert_int_equal(m.record_count, 3);
	assert_int_equal(m.base_sequence, 19);
	assert_int_equal(m.crc_ok, 1);
	assert_int_equal(kf_batch_next(&it, &b, &m), 0);
	assert_int_equal(kf_batch_next(&it, &b, &m), 0);
	assert_int_equal(kf_batches_count(wr.p, wr.len), 2);

	/* An empty field holds no batches. */
	assert_int_equal(kf_batches_count(wr.p, 0), 0);

	/* Any cut that is not a batch boundary is an error, reached after
	 * the whole batches before it. */
	for (size_t cut = 1; cut < wr.len; cut++) {
		int rc, n = 0;

		copy = malloc(cut);
		assert_non_null(copy);
		memcpy(copy, wr.p, cut);
		kf_batch_iter_init(&it, copy, cut);
		while ((rc = kf_batch_next(&it, &b, &m)) == 1)
			n++;
		if (cut == first_len) {
			assert_int_equal(rc, 0);
			assert_int_equal(n, 1);
		} else {
			assert_int_equal(rc, CFX_EPARSE);
			assert_int_equal(n, cut > first_len ? 1 : 0);
			assert_int_equal(it.pos, cut > first_len ? first_len : 0);
			/* The error sticks. */
			assert_int_equal(kf_batch_next(&it, &b, &m), CFX_EPARSE);
			assert_null(b.p);
		}
		free(copy);
	}

	/* Trailing bytes after the last batch. */
	kf_write_i32(&wr, 0);
	assert_int_equal(kf_batches_count(wr.p, wr.len), CFX_EPARSE);
	wr.len -= 4;

	/* A legacy message set in the middle. */
	wr.p[first_len + 16] = 1;
	kf_batch_iter_init(&it, wr.p, wr.len);
	assert_int_equal(kf_batch_next(&it, &b, &m), 1);
	assert_int_equal(kf_batch_next(&it, &b, &m), CFX_EUNSUPPORTED);
	assert_int_equal(it.pos, first_len);
	cfx_writer_free(&wr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_ints),
		cmocka_unit_test(test_fixed_writers),
		cmocka_unit_test(test_uvarint),
		cmocka_unit_test(test_varint_zigzag),
		cmocka_unit_test(test_string_classic),
		cmocka_unit_test(test_string_compact),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_string_writers),
		cmocka_unit_test(test_array_len),
		cmocka_unit_test(test_tagged_fields),
		cmocka_unit_test(test_api_table),
		cmocka_unit_test(test_header_versions),
		cmocka_unit_test(test_parse_header_v2),
		cmocka_unit_test(test_parse_header_v0_v1),
		cmocka_unit_test(test_write_request_header),
		cmocka_unit_test(test_frame_check),
		cmocka_unit_test(test_response_framing),
		cmocka_unit_test(test_error_codes),
		cmocka_unit_test(test_batch_inspect),
		cmocka_unit_test(test_batch_inspect_store_encoded),
		cmocka_unit_test(test_batch_iter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
