/* Unit tests for src/store/format.c: the on-disk layouts, their encoders and decoders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "store/format.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

#define ENTRY_BUF_BYTES 1024

/* A sealed batch entry in a buffer of its own, with the inputs that made it. */
struct sealed {
	uint8_t buf[ENTRY_BUF_BYTES];
	uint32_t size;
	struct cfx_entry in;
	char topic[CFX_TOPIC_MAX + 1];
	uint8_t payload[512];
};

/* Seals an entry for `topic` with `payload_len` bytes of patterned payload. */
static void make_entry(struct sealed *s, const char *topic, uint32_t payload_len, uint64_t pos)
{
	size_t tlen = strlen(topic);

	assert_true(payload_len <= sizeof s->payload);
	memset(s, 0, sizeof *s);
	memcpy(s->topic, topic, tlen);
	for (uint32_t i = 0; i < payload_len; i++)
		s->payload[i] = (uint8_t)(0xa0 ^ (i * 7));
	/* Junk where the header and padding go: seal must overwrite all of it. */
	memset(s->buf, 0xee, sizeof s->buf);
	memcpy(s->buf + CFX_ENTRY_HEADER_BYTES + tlen, s->payload, payload_len);
	s->in = (struct cfx_entry){
		.attrs = CFX_ENTRY_ATTR_HAS_KEYS,
		.payload_bytes = payload_len,
		.log_pos = pos,
		.queue_offset = 0x1122334455667788ull,
		.store_ms = 1700000000123,
		.queue_id = 77,
		.msg_count = 5,
		.tag_hash = 0xdeadbeef,
		.sys_flags = CFX_SYSFLAG_DELAYED | CFX_SYSFLAG_TRANSACTION_COMMIT,
		.topic = { (const uint8_t *)s->topic, tlen },
	};
	s->size = cfx_entry_seal(s->buf, &s->in);
}

/* Recomputes the CRC of a batch entry after a test edited its fields. */
static void reseal(uint8_t *p)
{
	uint32_t size = cfx_load_le32(p);
	cfx_store_le32(p + 4, cfx_crc32c(0, p + 8, size - 8));
}

/* Decodes expecting failure `want_rc`; returns the reason. */
static const char *decode_fails(const uint8_t *p, size_t avail, uint64_t pos, int verify,
				int want_rc)
{
	struct cfx_entry e;
	const char *why = NULL;
	int rc = cfx_entry_decode(p, avail, pos, verify, &e, &why);

	if (rc != want_rc)
		fail_msg("decode returned %s (%s), expected %s", cfx_err_name(rc),
			 why ? why : "-", cfx_err_name(want_rc));
	if (want_rc == CFX_ECORRUPT)
		assert_non_null(why);
	return why;
}

/* ------------------------------------------------------------------------
 * Segment header
 * ------------------------------------------------------------------------ */

static void test_seg_header_round_trip(void **state)
{
	struct cfx_seg_header h = { .base_pos = 1ull << 40, .segment_bytes = 1ull << 30,
				    .created_ms = -12345 }, out;
	uint8_t b[CFX_SEG_HEADER_BYTES];
	(void)state;

	memset(b, 0xff, sizeof b);
	cfx_seg_header_encode(b, &h);
	/* The layout table, byte by byte. */
	assert_memory_equal(b, "CFXL", 4);
	assert_int_equal(cfx_load_le32(b + 4), CFX_SEG_VERSION);
	assert_true(cfx_load_le64(b + 8) == 1ull << 40);
	assert_true(cfx_load_le64(b + 16) == 1ull << 30);
	assert_true((int64_t)cfx_load_le64(b + 24) == -12345);
	for (int i = 32; i < 60; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(cfx_load_le32(b + 60), cfx_crc32c(0, b, 60));

	memset(&out, 0, sizeof out);
	assert_int_equal(cfx_seg_header_decode(b, &out), 0);
	assert_int_equal(out.version, CFX_SEG_VERSION);
	assert_true(out.base_pos == h.base_pos);
	assert_true(out.segment_bytes == h.segment_bytes);
	assert_true(out.created_ms == h.created_ms);
}

static void test_seg_header_rejections(void **state)
{
	struct cfx_seg_header h = { .base_pos = 4096, .segment_bytes = 65536, .created_ms = 1 };
	struct cfx_seg_header out;
	uint8_t good[CFX_SEG_HEADER_BYTES], b[CFX_SEG_HEADER_BYTES];
	(void)state;

	cfx_seg_header_encode(good, &h);

	/* Any damaged byte is caught (magic or CRC). */
	for (int i = 0; i < 64; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(b, good, sizeof b);
			b[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(cfx_seg_header_decode(b, &out), CFX_ECORRUPT);
		}
	}
	/* Bad magic even with a matching CRC. */
	memcpy(b, good, sizeof b);
	b[0] = 'X';
	cfx_store_le32(b + 60, cfx_crc32c(0, b, 60));
	assert_int_equal(cfx_seg_header_decode(b, &out), CFX_ECORRUPT);
	/* All zeros (a never-written file). */
	memset(b, 0, sizeof b);
	assert_int_equal(cfx_seg_header_decode(b, &out), CFX_ECORRUPT);

	/* A newer version with a valid CRC is a version error, not corruption. */
	memcpy(b, good, sizeof b);
	cfx_store_le32(b + 4, CFX_SEG_VERSION + 1);
	cfx_store_le32(b + 60, cfx_crc32c(0, b, 60));
	assert_int_equal(cfx_seg_header_decode(b, &out), CFX_EVERSION);
	/* ... and with a bad CRC it is corruption. */
	b[60] ^= 1;
	assert_int_equal(cfx_seg_header_decode(b, &out), CFX_ECORRUPT);
	/* Version 0 never existed. */
	memcpy(b, good, sizeof b);
	cfx_store_le32(b + 4, 0);
	cfx_store_le32(b + 60, cfx_crc32c(0, b, 60));
	assert_int_not_equal(cfx_seg_header_decode(b, &out), 0);

	/* Sizes that cannot be a segment, with valid CRCs. */
	static const struct {
		uint64_t base_pos, segment_bytes;
	} bad[] = {
		{ 0, 0 },
		{ 0, CFX_SEG_HEADER_BYTES + CFX_ENTRY_END_BYTES - 8 },
		{ 0, 65536 + 4 },
		{ 4, 65536 },
		{ 4097, 65536 },
	};
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		struct cfx_seg_header x = { .base_pos = bad[i].base_pos,
					    .segment_bytes = bad[i].segment_bytes };
		cfx_seg_header_encode(b, &x);
		assert_int_equal(cfx_seg_header_decode(b, &out), CFX_ECORRUPT);
	}
	/* The smallest segment that holds a header and an end marker is fine. */
	struct cfx_seg_header min = { .segment_bytes = CFX_SEG_HEADER_BYTES + CFX_ENTRY_END_BYTES };
	cfx_seg_header_encode(b, &min);
	assert_int_equal(cfx_seg_header_decode(b, &out), 0);
}

/* ------------------------------------------------------------------------
 * Log entries: round trips
 * ------------------------------------------------------------------------ */

static void test_entry_size(void **state)
{
	(void)state;
	assert_int_equal(cfx_entry_size(1, 0), 72);
	assert_int_equal(cfx_entry_size(1, 7), 72);
	assert_int_equal(cfx_entry_size(1, 8), 80);
	assert_int_equal(cfx_entry_size(8, 0), 72);
	assert_int_equal(cfx_entry_size(3, 5), 72);
	assert_int_equal(cfx_entry_size(127, 100), 296);
	for (size_t t = 1; t <= CFX_TOPIC_MAX; t += 7)
		for (size_t p = 0; p < 64; p++) {
			uint32_t s = cfx_entry_size(t, p);
			assert_int_equal(s % CFX_ENTRY_ALIGN, 0);
			assert_true(s >= 64 + t + p && s < 64 + t + p + 8);
		}
}

/* The sealed bytes follow the layout table exactly. */
static void test_entry_seal_layout(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	(void)state;

	make_entry(s, "orders", 13, 8192);
	assert_int_equal(s->size, 88); /* 64 + 6 + 13 = 83 -> 88 */
	const uint8_t *b = s->buf;
	assert_int_equal(cfx_load_le32(b + 0), 88);
	assert_int_equal(b[8], 0xCF);
	assert_int_equal(b[9], 1);
	assert_int_equal(b[10], CFX_ENTRY_BATCH);
	assert_int_equal(b[11], CFX_ENTRY_ATTR_HAS_KEYS);
	assert_int_equal(cfx_load_le32(b + 12), 13);
	assert_true(cfx_load_le64(b + 16) == 8192);
	assert_true(cfx_load_le64(b + 24) == 0x1122334455667788ull);
	assert_true(cfx_load_le64(b + 32) == 1700000000123ull);
	assert_int_equal(cfx_load_le32(b + 40), 77);
	assert_int_equal(cfx_load_le32(b + 44), 5);
	assert_int_equal(cfx_load_le32(b + 48), 0xdeadbeef);
	assert_int_equal(cfx_load_le32(b + 52), 0xa);
	assert_int_equal(cfx_load_le16(b + 56), 6);
	for (int i = 58; i < 64; i++)
		assert_int_equal(b[i], 0);
	assert_memory_equal(b + 64, "orders", 6);
	assert_memory_equal(b + 70, s->payload, 13);
	for (int i = 83; i < 88; i++)
		assert_int_equal(b[i], 0); /* padding zeroed over the junk */
	assert_int_equal(b[88], 0xee);	   /* and nothing written past the entry */
	assert_int_equal(cfx_load_le32(b + 4), cfx_crc32c(0, b + 8, 80));
	cfx_free(s);
}

static void test_entry_round_trip(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	char topic[CFX_TOPIC_MAX + 1];
	(void)state;

	/* Every topic length, with payloads that give every padding size. */
	for (size_t tlen = 1; tlen <= CFX_TOPIC_MAX; tlen++) {
		for (uint32_t plen = 0; plen < 40; plen += (tlen % 3) + 1) {
			struct cfx_entry e;
			const char *why = "unset";
			uint64_t pos = 64 + 8 * (uint64_t)tlen * 1000;

			memset(topic, 'a' + (int)(tlen % 26), tlen);
			topic[tlen] = '\0';
			make_entry(s, topic, plen, pos);
			assert_int_equal(s->size, cfx_entry_size(tlen, plen));
			for (int verify = 0; verify <= 1; verify++) {
				memset(&e, 0xcc, sizeof e);
				/* avail beyond the entry: the rest is later entries'. */
				int rc = cfx_entry_decode(s->buf, sizeof s->buf, pos, verify, &e,
							  &why);
				assert_int_equal(rc, 0);
				assert_null(why);
				assert_int_equal(e.entry_bytes, s->size);
				assert_int_equal(e.type, CFX_ENTRY_BATCH);
				assert_int_equal(e.attrs, s->in.attrs);
				assert_int_equal(e.payload_bytes, plen);
				assert_true(e.log_pos == pos);
				assert_true(e.queue_offset == s->in.queue_offset);
				assert_true(e.store_ms == s->in.store_ms);
				assert_int_equal(e.queue_id, s->in.queue_id);
				assert_int_equal(e.msg_count, s->in.msg_count);
				assert_int_equal(e.tag_hash, s->in.tag_hash);
				assert_int_equal(e.sys_flags, s->in.sys_flags);
				assert_ptr_equal(e.topic.p, s->buf + 64);
				assert_int_equal(e.topic.len, tlen);
				assert_memory_equal(e.topic.p, topic, tlen);
				assert_ptr_equal(e.payload.p, s->buf + 64 + tlen);
				assert_int_equal(e.payload.len, plen);
				if (plen)
					assert_memory_equal(e.payload.p, s->payload, plen);
			}
			/* Exactly the entry's bytes are enough. */
			assert_int_equal(cfx_entry_decode(s->buf, s->size, pos, 1, &e, NULL), 0);
		}
	}
	cfx_free(s);
}

/* A larger payload, and two entries back to back, decoded in sequence. */
static void test_entry_sequence(void **state)
{
	uint8_t *log = cfx_calloc(1, 4096);
	uint8_t payload[300];
	struct cfx_entry in = { .payload_bytes = sizeof payload, .msg_count = 1,
				.topic = { (const uint8_t *)"t%|_-Z9", 7 } };
	struct cfx_entry e;
	uint64_t base = 1ull << 33, pos = base;
	(void)state;

	for (size_t i = 0; i < sizeof payload; i++)
		payload[i] = (uint8_t)i;
	for (int i = 0; i < 3; i++) {
		uint8_t *at = log + (pos - base);
		memcpy(at + 64 + 7, payload, sizeof payload);
		in.log_pos = pos;
		in.queue_offset = (uint64_t)i * 10;
		pos += cfx_entry_seal(at, &in);
	}
	/* Reading them back: each at its position, then the zero word. */
	pos = base;
	for (int i = 0; i < 3; i++) {
		size_t off = (size_t)(pos - base);
		assert_int_equal(cfx_entry_decode(log + off, 4096 - off, pos, 1, &e, NULL), 0);
		assert_true(e.queue_offset == (uint64_t)i * 10);
		assert_memory_equal(e.payload.p, payload, sizeof payload);
		pos += e.entry_bytes;
	}
	size_t end = (size_t)(pos - base);
	assert_int_equal(cfx_entry_decode(log + end, 4096 - end, pos, 1, &e, NULL), CFX_NEED_MORE);
	cfx_free(log);
}

static void test_end_marker(void **state)
{
	uint8_t b[256], c[256];
	struct cfx_entry e;
	const char *why = "unset";
	(void)state;

	memset(b, 0xee, sizeof b);
	cfx_entry_end_encode(b, 200, 1700000000999);
	/* Layout */
	assert_int_equal(cfx_load_le32(b), 200);
	assert_int_equal(b[8], 0xCF);
	assert_int_equal(b[9], 1);
	assert_int_equal(b[10], CFX_ENTRY_END);
	for (int i = 11; i < 16; i++)
		assert_int_equal(b[i], 0);
	assert_true(cfx_load_le64(b + 16) == 1700000000999ull);
	assert_int_equal(cfx_load_le32(b + 4), cfx_crc32c(0, b + 8, 16));
	assert_int_equal(b[24], 0xee); /* only 24 bytes are written */

	for (int verify = 0; verify <= 1; verify++) {
		memset(&e, 0xcc, sizeof e);
		assert_int_equal(cfx_entry_decode(b, 200, 4096, verify, &e, &why), 0);
		assert_null(why);
		assert_int_equal(e.type, CFX_ENTRY_END);
		assert_int_equal(e.entry_bytes, 200);
		assert_true(e.store_ms == 1700000000999);
		assert_true(e.log_pos == 4096);
		assert_int_equal(e.msg_count, 0);
		assert_int_equal(e.topic.len, 0);
		assert_int_equal(e.payload.len, 0);
	}
	/* The smallest end marker: just its defined bytes. */
	cfx_entry_end_encode(c, CFX_ENTRY_END_BYTES, 5);
	assert_int_equal(cfx_entry_decode(c, CFX_ENTRY_END_BYTES, 0, 1, &e, NULL), 0);
	assert_int_equal(e.type, CFX_ENTRY_END);
	/* The bytes after the 24 defined ones are not checked (they are whatever was there). */
	memset(b + 24, 0x5a, 200 - 24);
	assert_int_equal(cfx_entry_decode(b, 200, 4096, 1, &e, NULL), 0);

	/* Every damaged byte of the checked range is caught, with or without verify_crc. */
	for (int i = 4; i < 24; i++) {
		memcpy(c, b, sizeof c);
		c[i] ^= 0x10;
		for (int verify = 0; verify <= 1; verify++)
			assert_int_not_equal(cfx_entry_decode(c, 200, 4096, verify, &e, NULL), 0);
	}
	/* Newer version: trusted only with a valid CRC. */
	memcpy(c, b, sizeof c);
	c[9] = 2;
	cfx_store_le32(c + 4, cfx_crc32c(0, c + 8, 16));
	assert_int_equal(cfx_entry_decode(c, 200, 4096, 1, &e, NULL), CFX_EVERSION);
	c[4] ^= 1;
	decode_fails(c, 200, 4096, 1, CFX_ECORRUPT);
	decode_fails(c, 200, 4096, 0, CFX_ECORRUPT);
	/* An end marker bigger than what is readable is corrupt. */
	decode_fails(b, 192, 4096, 1, CFX_ECORRUPT);
}

/* ------------------------------------------------------------------------
 * Log entries: rejections
 * ------------------------------------------------------------------------ */

static void test_entry_zero_size_is_end_of_log(void **state)
{
	uint8_t b[128];
	struct cfx_entry e;
	const char *why = "unset";
	(void)state;

	memset(b, 0, sizeof b);
	assert_int_equal(cfx_entry_decode(b, sizeof b, 64, 1, &e, &why), CFX_NEED_MORE);
	/* Only the size word decides: whatever follows it. */
	memset(b + 4, 0xab, sizeof b - 4);
	assert_int_equal(cfx_entry_decode(b, sizeof b, 64, 1, &e, &why), CFX_NEED_MORE);
	assert_int_equal(cfx_entry_decode(b, 8, 64, 0, &e, NULL), CFX_NEED_MORE);
	/* Fewer than 8 readable bytes cannot even hold the size and CRC. */
	for (size_t avail = 0; avail < 8; avail++)
		decode_fails(b, avail, 64, 1, CFX_ECORRUPT);
}

static void test_entry_bad_size(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	uint8_t b[ENTRY_BUF_BYTES];
	(void)state;

	make_entry(s, "sizes", 30, 0); /* 99 -> 104 bytes */
	assert_int_equal(s->size, 104);

	/* Not a multiple of 8 (whatever the CRC says). */
	for (uint32_t delta = 1; delta < 8; delta++) {
		memcpy(b, s->buf, sizeof b);
		cfx_store_le32(b, 104 + delta);
		reseal(b);
		decode_fails(b, sizeof b, 0, 1, CFX_ECORRUPT);
		decode_fails(b, sizeof b, 0, 0, CFX_ECORRUPT);
	}
	/* Larger than what is readable: a torn tail. */
	for (size_t avail = 8; avail < 104; avail += 8)
		decode_fails(s->buf, avail, 0, 1, CFX_ECORRUPT);
	decode_fails(s->buf, 103, 0, 0, CFX_ECORRUPT);
	/* Smaller than any entry. */
	memcpy(b, s->buf, sizeof b);
	cfx_store_le32(b, 16);
	decode_fails(b, sizeof b, 0, 0, CFX_ECORRUPT);
	cfx_store_le32(b, 8);
	decode_fails(b, sizeof b, 0, 0, CFX_ECORRUPT);
	/* A batch entry no bigger than its header. */
	cfx_store_le32(b, 64);
	reseal(b);
	decode_fails(b, sizeof b, 0, 0, CFX_ECORRUPT);
	decode_fails(b, sizeof b, 0, 1, CFX_ECORRUPT);
	/* Huge. */
	cfx_store_le32(b, 0xfffffff8u);
	decode_fails(b, sizeof b, 0, 0, CFX_ECORRUPT);
	cfx_free(s);
}

static void test_entry_bad_magic(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	(void)state;

	make_entry(s, "magic", 20, 0);
	s->buf[8] = 0xCE;
	reseal(s->buf); /* the magic is checked on its own, not just by the CRC */
	assert_string_equal(decode_fails(s->buf, s->size, 0, 0, CFX_ECORRUPT), "bad entry magic");
	decode_fails(s->buf, s->size, 0, 1, CFX_ECORRUPT);
	cfx_free(s);
}

/* Damage anywhere in a sealed entry is detected when the CRC is verified. */
static void test_entry_every_byte_flip_detected(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	uint8_t b[ENTRY_BUF_BYTES];
	struct cfx_entry e;
	(void)state;

	make_entry(s, "flip-me", 37, 4096); /* 108 -> 112 bytes, 4 of padding */
	assert_int_equal(s->size, 112);
	for (uint32_t i = 0; i < s->size; i++) {
		for (int mask = 1; mask <= 0x100; mask <<= 1) {
			uint8_t x = mask == 0x100 ? 0xff : (uint8_t)mask;
			const char *why = NULL;

			memcpy(b, s->buf, s->size);
			b[i] ^= x;
			int rc = cfx_entry_decode(b, s->size, 4096, 1, &e, &why);
			if (rc == 0)
				fail_msg("flipping byte %u with 0x%02x was not detected", i, x);
			/* Only a version change may claim to be a newer format, and then
			 * only if the CRC still matches, which it cannot after a flip. */
			assert_int_equal(rc, CFX_ECORRUPT);
			assert_non_null(why);
		}
	}
	cfx_free(s);
}

static void test_entry_position_mismatch(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	(void)state;

	make_entry(s, "pos", 10, 1ull << 36);
	assert_int_equal(cfx_entry_decode(s->buf, s->size, 1ull << 36, 1, &(struct cfx_entry){ 0 },
					  NULL),
			 0);
	assert_string_equal(decode_fails(s->buf, s->size, (1ull << 36) + 8, 1, CFX_ECORRUPT),
			    "entry position mismatch");
	decode_fails(s->buf, s->size, (1ull << 36) - 8, 0, CFX_ECORRUPT);
	decode_fails(s->buf, s->size, 0, 0, CFX_ECORRUPT);
	cfx_free(s);
}

static void test_entry_bad_fields(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	uint8_t b[ENTRY_BUF_BYTES];
	(void)state;

	make_entry(s, "fields", 26, 0); /* 96 bytes */

	/* Topic length 0 and beyond the limit (CRC kept valid). */
	static const uint16_t bad_tlen[] = { 0, CFX_TOPIC_MAX + 1, 0xffff };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_tlen); i++) {
		memcpy(b, s->buf, sizeof b);
		cfx_store_le16(b + 56, bad_tlen[i]);
		reseal(b);
		assert_string_equal(decode_fails(b, s->size, 0, 1, CFX_ECORRUPT),
				    "bad topic length");
		decode_fails(b, s->size, 0, 0, CFX_ECORRUPT);
	}

	/* No messages. */
	memcpy(b, s->buf, sizeof b);
	cfx_store_le32(b + 44, 0);
	reseal(b);
	assert_string_equal(decode_fails(b, s->size, 0, 1, CFX_ECORRUPT), "empty batch");

	/* payload_bytes that does not fit the entry or does not explain its size. */
	static const uint32_t bad_plen[] = { 27, 34, 35, 18, 17, 0, 0xffffffffu, 0xfffffff0u };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_plen); i++) {
		memcpy(b, s->buf, sizeof b);
		cfx_store_le32(b + 12, bad_plen[i]);
		reseal(b);
		const char *why = decode_fails(b, s->size, 0, 1, CFX_ECORRUPT);
		if (strcmp(why, "payload size mismatch") != 0)
			fail_msg("payload_bytes %u: %s", bad_plen[i], why);
	}
	/* 19..26 pad to the same size, so they are consistent. */
	for (uint32_t plen = 19; plen <= 26; plen++) {
		memcpy(b, s->buf, sizeof b);
		cfx_store_le32(b + 12, plen);
		reseal(b);
		struct cfx_entry e;
		assert_int_equal(cfx_entry_decode(b, s->size, 0, 1, &e, NULL), 0);
		assert_int_equal(e.payload.len, plen);
	}

	/* Unknown type and version 0. */
	memcpy(b, s->buf, sizeof b);
	b[10] = 3;
	reseal(b);
	decode_fails(b, s->size, 0, 1, CFX_ECORRUPT);
	b[10] = 0;
	reseal(b);
	decode_fails(b, s->size, 0, 1, CFX_ECORRUPT);
	memcpy(b, s->buf, sizeof b);
	b[9] = 0;
	reseal(b);
	decode_fails(b, s->size, 0, 1, CFX_ECORRUPT);
	cfx_free(s);
}

static void test_entry_newer_version(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	uint8_t b[ENTRY_BUF_BYTES];
	(void)state;

	make_entry(s, "future", 44, 0);
	for (int v = CFX_ENTRY_VERSION + 1; v <= 255; v += 50) {
		memcpy(b, s->buf, sizeof b);
		b[9] = (uint8_t)v;
		/* A future entry may have any layout after the common prefix. */
		b[10] = 9;
		cfx_store_le16(b + 56, 0);
		reseal(b);
		/* Valid CRC: the version byte can be trusted, with or without verify_crc. */
		decode_fails(b, s->size, 0, 1, CFX_EVERSION);
		decode_fails(b, s->size, 0, 0, CFX_EVERSION);
		/* Damaged: corruption, never a version claim. */
		b[s->size - 1] ^= 0x40;
		decode_fails(b, s->size, 0, 1, CFX_ECORRUPT);
		decode_fails(b, s->size, 0, 0, CFX_ECORRUPT);
	}
	cfx_free(s);
}

/* Without verify_crc, only the structural checks run. */
static void test_entry_no_verify_skips_crc(void **state)
{
	struct sealed *s = cfx_malloc(sizeof *s);
	struct cfx_entry e;
	(void)state;

	make_entry(s, "noverify", 16, 0);
	s->buf[64 + 8] ^= 0xff; /* first payload byte */
	assert_int_equal(cfx_entry_decode(s->buf, s->size, 0, 0, &e, NULL), 0);
	assert_string_equal(decode_fails(s->buf, s->size, 0, 1, CFX_ECORRUPT),
			    "bad entry checksum");
	cfx_free(s);
}

/* ------------------------------------------------------------------------
 * Batch index entries
 * ------------------------------------------------------------------------ */

static void test_idx_entry(void **state)
{
	struct cfx_idx_entry ie = { .log_pos = 0x0102030405060708ull,
				    .first_offset = 1ull << 50,
				    .store_ms = 1700000000000,
				    .entry_bytes = 4096,
				    .msg_count = 64,
				    .tag_hash = CFX_TAG_HASH_MIXED },
			     out;
	uint8_t b[CFX_IDX_ENTRY_BYTES], c[CFX_IDX_ENTRY_BYTES];
	(void)state;

	cfx_idx_entry_encode(b, &ie);
	assert_true(cfx_load_le64(b) == ie.log_pos);
	assert_true(cfx_load_le64(b + 8) == ie.first_offset);
	assert_true(cfx_load_le64(b + 16) == (uint64_t)ie.store_ms);
	assert_int_equal(cfx_load_le32(b + 24), 4096);
	assert_int_equal(cfx_load_le32(b + 28), 64);
	assert_int_equal(cfx_load_le32(b + 32), 1);
	assert_int_equal(cfx_load_le32(b + 36), cfx_crc32c(0, b, 36));

	memset(&out, 0, sizeof out);
	assert_int_equal(cfx_idx_entry_decode(b, &out), 1);
	assert_true(out.log_pos == ie.log_pos);
	assert_true(out.first_offset == ie.first_offset);
	assert_true(out.store_ms == ie.store_ms);
	assert_int_equal(out.entry_bytes, ie.entry_bytes);
	assert_int_equal(out.msg_count, ie.msg_count);
	assert_int_equal(out.tag_hash, ie.tag_hash);

	/* Torn: any byte damaged, or the entry only partly written over zeros. */
	for (int i = 0; i < (int)CFX_IDX_ENTRY_BYTES; i++) {
		memcpy(c, b, sizeof c);
		c[i] ^= 0x01;
		assert_int_equal(cfx_idx_entry_decode(c, &out), 0);
		memset(c, 0, sizeof c);
		memcpy(c, b, (size_t)i);
		assert_int_equal(cfx_idx_entry_decode(c, &out), 0);
	}
	/* A zeroed check field, and an all-zero (never written) slot. */
	memcpy(c, b, sizeof c);
	memset(c + 36, 0, 4);
	assert_int_equal(cfx_idx_entry_decode(c, &out), 0);
	memset(c, 0, sizeof c);
	assert_int_equal(cfx_idx_entry_decode(c, &out), 0);
	/* Zero entry_bytes or msg_count cannot be a real entry, even with a valid check. */
	struct cfx_idx_entry z = ie;
	z.entry_bytes = 0;
	cfx_idx_entry_encode(c, &z);
	assert_int_equal(cfx_idx_entry_decode(c, &out), 0);
	z = ie;
	z.msg_count = 0;
	cfx_idx_entry_encode(c, &z);
	assert_int_equal(cfx_idx_entry_decode(c, &out), 0);
}

/* ------------------------------------------------------------------------
 * Key index
 * ------------------------------------------------------------------------ */

static void test_kix_header(void **state)
{
	struct cfx_kix_header h = { .slot_count = 1u << 20, .entry_cap = 1u << 21 }, out;
	uint8_t b[CFX_KIX_HEADER_BYTES], c[CFX_KIX_HEADER_BYTES];
	(void)state;

	cfx_kix_header_encode(b, &h);
	assert_memory_equal(b, "CFXK", 4);
	assert_int_equal(cfx_load_le32(b + 4), CFX_KIX_VERSION);
	assert_int_equal(cfx_load_le32(b + 8), 1u << 20);
	assert_int_equal(cfx_load_le32(b + 12), 1u << 21);
	for (int i = 16; i < 60; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(cfx_kix_header_decode(b, &out), 0);
	assert_int_equal(out.version, CFX_KIX_VERSION);
	assert_int_equal(out.slot_count, h.slot_count);
	assert_int_equal(out.entry_cap, h.entry_cap);

	for (int i = 0; i < 64; i++) {
		memcpy(c, b, sizeof c);
		c[i] ^= 0x80;
		assert_int_equal(cfx_kix_header_decode(c, &out), CFX_ECORRUPT);
	}
	/* A segment header is not a key-index header. */
	struct cfx_seg_header sh = { .segment_bytes = 65536 };
	cfx_seg_header_encode(c, &sh);
	assert_int_equal(cfx_kix_header_decode(c, &out), CFX_ECORRUPT);

	memcpy(c, b, sizeof c);
	cfx_store_le32(c + 4, CFX_KIX_VERSION + 1);
	cfx_store_le32(c + 60, cfx_crc32c(0, c, 60));
	assert_int_equal(cfx_kix_header_decode(c, &out), CFX_EVERSION);

	static const struct cfx_kix_header bad[] = {
		{ .slot_count = 0, .entry_cap = 16 },
		{ .slot_count = 16, .entry_cap = 0 },
		{ .slot_count = 16, .entry_cap = UINT32_MAX - 1 },
		{ .slot_count = 16, .entry_cap = UINT32_MAX },
	};
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		cfx_kix_header_encode(c, &bad[i]);
		assert_int_equal(cfx_kix_header_decode(c, &out), CFX_ECORRUPT);
	}
	struct cfx_kix_header edge = { .slot_count = 1, .entry_cap = UINT32_MAX - 2 };
	cfx_kix_header_encode(c, &edge);
	assert_int_equal(cfx_kix_header_decode(c, &out), 0);
}

static void test_kix_entry(void **state)
{
	struct cfx_kix_entry ke = { .hash = 0x8877665544332211ull, .log_pos = 123456,
				    .prev = 42 },
			     out;
	uint8_t b[CFX_KIX_ENTRY_BYTES], c[CFX_KIX_ENTRY_BYTES];
	(void)state;

	cfx_kix_entry_encode(b, &ke);
	assert_true(cfx_load_le64(b) == ke.hash);
	assert_true(cfx_load_le64(b + 8) == ke.log_pos);
	assert_int_equal(cfx_load_le32(b + 16), 42);
	assert_int_equal(cfx_load_le32(b + 20), cfx_crc32c(0, b, 20));
	memset(&out, 0, sizeof out);
	assert_int_equal(cfx_kix_entry_decode(b, &out), 1);
	assert_true(out.hash == ke.hash);
	assert_true(out.log_pos == ke.log_pos);
	assert_int_equal(out.prev, ke.prev);

	/* prev 0 (first in its slot) is valid. */
	struct cfx_kix_entry first = ke;
	first.prev = 0;
	cfx_kix_entry_encode(c, &first);
	assert_int_equal(cfx_kix_entry_decode(c, &out), 1);
	assert_int_equal(out.prev, 0);

	for (int i = 0; i < (int)CFX_KIX_ENTRY_BYTES; i++) {
		memcpy(c, b, sizeof c);
		c[i] ^= 0x04;
		assert_int_equal(cfx_kix_entry_decode(c, &out), 0);
		memset(c, 0, sizeof c);
		memcpy(c, b, (size_t)i);
		assert_int_equal(cfx_kix_entry_decode(c, &out), 0);
	}
	memcpy(c, b, sizeof c);
	memset(c + 20, 0, 4);
	assert_int_equal(cfx_kix_entry_decode(c, &out), 0);
	memset(c, 0, sizeof c);
	assert_int_equal(cfx_kix_entry_decode(c, &out), 0);
	/* Hash 0 is never produced, so it marks an empty entry even with a valid check. */
	struct cfx_kix_entry zero = ke;
	zero.hash = 0;
	cfx_kix_entry_encode(c, &zero);
	assert_int_equal(cfx_kix_entry_decode(c, &out), 0);
}

static void test_keyidx_hash(void **state)
{
	struct cfx_view t1 = CFX_VIEW_STR("orders"), t2 = CFX_VIEW_STR("orders2");
	struct cfx_view k = CFX_VIEW_STR("customer-17");
	(void)state;

	uint64_t key1 = cfx_keyidx_hash(CFX_KEY_KIND_KEY, t1, k);
	/* Deterministic. */
	assert_true(key1 == cfx_keyidx_hash(CFX_KEY_KIND_KEY, t1, k));
	/* Keys are scoped by topic... */
	assert_true(key1 != cfx_keyidx_hash(CFX_KEY_KIND_KEY, t2, k));
	/* ... ids are global: the topic does not matter. */
	uint64_t id1 = cfx_keyidx_hash(CFX_KEY_KIND_ID, t1, k);
	assert_true(id1 == cfx_keyidx_hash(CFX_KEY_KIND_ID, t2, k));
	/* The same bytes as a key and as an id are different entries. */
	assert_true(key1 != id1);
	/* The topic/key boundary matters: ("ab", "c") is not ("a", "bc"). */
	assert_true(cfx_keyidx_hash(CFX_KEY_KIND_KEY, CFX_VIEW_STR("ab"), CFX_VIEW_STR("c")) !=
		    cfx_keyidx_hash(CFX_KEY_KIND_KEY, CFX_VIEW_STR("a"), CFX_VIEW_STR("bc")));
	assert_true(cfx_keyidx_hash(CFX_KEY_KIND_KEY, t1, CFX_VIEW_STR("")) !=
		    cfx_keyidx_hash(CFX_KEY_KIND_ID, t1, CFX_VIEW_STR("")));

	/* Never 0 (0 marks an empty key-index entry), over many keys. */
	char key[32];
	uint64_t prev = 0;
	int same = 0;
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(key, sizeof key, "k%d", i);
		struct cfx_view kv = { (const uint8_t *)key, (size_t)n };
		uint64_t a = cfx_keyidx_hash(CFX_KEY_KIND_KEY, t1, kv);
		uint64_t b = cfx_keyidx_hash(CFX_KEY_KIND_ID, t1, kv);
		assert_true(a != 0 && b != 0);
		assert_true(a != b);
		same += a == prev;
		prev = a;
	}
	assert_int_equal(same, 0);
	assert_true(cfx_keyidx_hash(CFX_KEY_KIND_ID, (struct cfx_view){ NULL, 0 },
				    (struct cfx_view){ NULL, 0 }) != 0);
}

/* ------------------------------------------------------------------------
 * Checkpoint
 * ------------------------------------------------------------------------ */

static void test_checkpoint(void **state)
{
	struct cfx_checkpoint ck = { .durable_pos = 1ull << 32, .log_end_pos = (1ull << 32) + 4096,
				     .clean = 1, .written_ms = 1700000000001,
				     .idx_entries = 999, .key_entries = 12345 },
			      out;
	uint8_t b[CFX_CKPT_BYTES + 8], c[CFX_CKPT_BYTES + 8];
	(void)state;

	memset(b, 0xee, sizeof b);
	cfx_checkpoint_encode(b, &ck);
	assert_memory_equal(b, "CFXC", 4);
	assert_int_equal(cfx_load_le32(b + 4), CFX_CKPT_VERSION);
	assert_true(cfx_load_le64(b + 8) == ck.durable_pos);
	assert_true(cfx_load_le64(b + 16) == ck.log_end_pos);
	assert_int_equal(cfx_load_le32(b + 24), 1);
	assert_int_equal(cfx_load_le32(b + 28), 0);
	assert_true(cfx_load_le64(b + 32) == (uint64_t)ck.written_ms);
	assert_true(cfx_load_le64(b + 40) == 999);
	assert_true(cfx_load_le64(b + 48) == 12345);
	assert_int_equal(cfx_load_le32(b + 56), 0);
	assert_int_equal(cfx_load_le32(b + 60), cfx_crc32c(0, b, 60));
	assert_int_equal(b[64], 0xee);

	memset(&out, 0, sizeof out);
	assert_int_equal(cfx_checkpoint_decode(b, CFX_CKPT_BYTES, &out), 0);
	assert_true(out.durable_pos == ck.durable_pos);
	assert_true(out.log_end_pos == ck.log_end_pos);
	assert_int_equal(out.clean, 1);
	assert_true(out.written_ms == ck.written_ms);
	assert_true(out.idx_entries == ck.idx_entries);
	assert_true(out.key_entries == ck.key_entries);

	/* A clean checkpoint has durable == end. */
	struct cfx_checkpoint eq = ck;
	eq.log_end_pos = eq.durable_pos;
	cfx_checkpoint_encode(c, &eq);
	assert_int_equal(cfx_checkpoint_decode(c, CFX_CKPT_BYTES, &out), 0);

	/* Wrong file sizes. */
	static const size_t bad_len[] = { 0, 1, 60, 63, 65, 72 };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_len); i++)
		assert_int_equal(cfx_checkpoint_decode(b, bad_len[i], &out), CFX_ECORRUPT);
	/* Every damaged byte. */
	for (int i = 0; i < 64; i++) {
		memcpy(c, b, sizeof c);
		c[i] ^= 0x20;
		assert_int_equal(cfx_checkpoint_decode(c, CFX_CKPT_BYTES, &out), CFX_ECORRUPT);
	}
	/* Newer version with a valid CRC, then with a bad one. */
	memcpy(c, b, sizeof c);
	cfx_store_le32(c + 4, CFX_CKPT_VERSION + 1);
	cfx_store_le32(c + 60, cfx_crc32c(0, c, 60));
	assert_int_equal(cfx_checkpoint_decode(c, CFX_CKPT_BYTES, &out), CFX_EVERSION);
	c[59] ^= 1;
	assert_int_equal(cfx_checkpoint_decode(c, CFX_CKPT_BYTES, &out), CFX_ECORRUPT);
	/* The end of the log cannot be below what is durable. */
	struct cfx_checkpoint back = ck;
	back.log_end_pos = back.durable_pos - 8;
	cfx_checkpoint_encode(c, &back);
	assert_int_equal(cfx_checkpoint_decode(c, CFX_CKPT_BYTES, &out), CFX_ECORRUPT);
}

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

static int topic_ok(const char *s)
{
	return cfx_topic_name_is_valid((struct cfx_view){ (const uint8_t *)s, strlen(s) });
}

static void test_topic_names(void **state)
{
	char name[200];
	(void)state;

	assert_true(topic_ok("a"));
	assert_true(topic_ok("Orders_2024-eu"));
	assert_true(topic_ok("%RETRY%group|x"));
	assert_true(topic_ok("0123456789"));
	assert_true(topic_ok("-"));
	assert_true(topic_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-%|"));

	assert_false(topic_ok(""));
	assert_false(cfx_topic_name_is_valid((struct cfx_view){ NULL, 0 }));
	assert_false(topic_ok("a.b"));
	assert_false(topic_ok("a/b"));
	assert_false(topic_ok("../x"));
	assert_false(topic_ok("a b"));
	assert_false(topic_ok(" a"));
	assert_false(topic_ok("a\n"));
	assert_false(topic_ok("caf\xc3\xa9"));
	assert_false(topic_ok("a+b"));
	assert_false(topic_ok("a*"));
	assert_false(topic_ok("a:b"));
	assert_false(topic_ok("a\\b"));
	/* An embedded NUL counts as a byte of the view. */
	assert_false(cfx_topic_name_is_valid((struct cfx_view){ (const uint8_t *)"ab\0c", 4 }));

	/* Lengths 1..127 are fine; 128 is not. */
	memset(name, 'x', sizeof name);
	for (size_t len = 1; len <= 127; len++) {
		struct cfx_view v = { (const uint8_t *)name, len };
		assert_true(cfx_topic_name_is_valid(v));
	}
	assert_false(cfx_topic_name_is_valid((struct cfx_view){ (const uint8_t *)name, 128 }));
	assert_false(cfx_topic_name_is_valid((struct cfx_view){ (const uint8_t *)name, 200 }));

	/* Every byte value, alone and after a valid prefix, against the class [%|a-zA-Z0-9_-]. */
	for (int c = 0; c < 256; c++) {
		uint8_t one[1] = { (uint8_t)c }, two[2] = { 'q', (uint8_t)c };
		int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '%' || c == '|';
		if (cfx_topic_name_is_valid((struct cfx_view){ one, 1 }) != want)
			fail_msg("byte 0x%02x: expected %s", c, want ? "valid" : "invalid");
		assert_int_equal(cfx_topic_name_is_valid((struct cfx_view){ two, 2 }), want);
	}
}

static void test_tag_hash(void **state)
{
	char tag[32];
	uint32_t prev = 0;
	int collisions_with_prev = 0;
	(void)state;

	/* Reserved values are never produced. */
	assert_true(cfx_tag_hash((struct cfx_view){ NULL, 0 }) >= 2);
	assert_true(cfx_tag_hash(CFX_VIEW_STR("TagA")) >= 2);
	for (int i = 0; i < 200000; i++) {
		int n = snprintf(tag, sizeof tag, "tag-%d", i);
		uint32_t h = cfx_tag_hash((struct cfx_view){ (const uint8_t *)tag, (size_t)n });
		assert_true(h != CFX_TAG_HASH_NONE && h != CFX_TAG_HASH_MIXED);
		collisions_with_prev += h == prev;
		prev = h;
	}
	assert_int_equal(collisions_with_prev, 0);
	/* Deterministic, and sensitive to every byte. */
	assert_int_equal(cfx_tag_hash(CFX_VIEW_STR("TagA")), cfx_tag_hash(CFX_VIEW_STR("TagA")));
	uint32_t a = cfx_tag_hash(CFX_VIEW_STR("TagA"));
	assert_int_not_equal(a, cfx_tag_hash(CFX_VIEW_STR("TagB")));
	assert_int_not_equal(a, cfx_tag_hash(CFX_VIEW_STR("tagA")));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seg_header_round_trip),
		cmocka_unit_test(test_seg_header_rejections),
		cmocka_unit_test(test_entry_size),
		cmocka_unit_test(test_entry_seal_layout),
		cmocka_unit_test(test_entry_round_trip),
		cmocka_unit_test(test_entry_sequence),
		cmocka_unit_test(test_end_marker),
		cmocka_unit_test(test_entry_zero_size_is_end_of_log),
		cmocka_unit_test(test_entry_bad_size),
		cmocka_unit_test(test_entry_bad_magic),
		cmocka_unit_test(test_entry_every_byte_flip_detected),
		cmocka_unit_test(test_entry_position_mismatch),
		cmocka_unit_test(test_entry_bad_fields),
		cmocka_unit_test(test_entry_newer_version),
		cmocka_unit_test(test_entry_no_verify_skips_crc),
		cmocka_unit_test(test_idx_entry),
		cmocka_unit_test(test_kix_header),
		cmocka_unit_test(test_kix_entry),
		cmocka_unit_test(test_keyidx_hash),
		cmocka_unit_test(test_checkpoint),
		cmocka_unit_test(test_topic_names),
		cmocka_unit_test(test_tag_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
