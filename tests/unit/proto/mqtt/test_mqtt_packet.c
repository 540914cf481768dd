/*
 * Unit tests for src/proto/mqtt/packet.c: the MQTT 3.1.1 / 5.0 codec.
 *
 * Byte-exact vectors are written out by hand from the OASIS specifications
 * (the CONNECT and SUBSCRIBE examples of MQTT 3.1.1, and v5 packets laid
 * out from sections 2.2.2 and 3.x); the encoders are then checked against
 * the same bytes. Every packet type goes through encode -> frame check ->
 * decode -> compare -> encode again in both versions; every check the
 * decoder makes is hit with the reason code it must report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/buf.h"
#include "proto/mqtt/packet.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Exact-size copies kept until the test ends (decoded views point into
 * them), so that ASan sees any read past a packet. */
#define KEEP_MAX 1024
static void *keep[KEEP_MAX];
static size_t nkeep;

static uint8_t *copy_exact(const void *p, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	assert_non_null(c);
	assert_true(nkeep < KEEP_MAX);
	if (len)
		memcpy(c, p, len);
	keep[nkeep++] = c;
	return c;
}

static int teardown(void **state)
{
	(void)state;
	while (nkeep)
		free(keep[--nkeep]);
	return 0;
}

#define V(s) CFX_VIEW_STR(s)
#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

/* A whole packet: the first byte, the Remaining Length, the body. */
static struct cfx_view framed(uint8_t b0, const uint8_t *body, size_t n)
{
	struct cfx_writer wr;
	struct cfx_view v;

	cfx_writer_init(&wr, n + 8);
	cfx_write_u8(&wr, b0);
	mqtt_write_varint(&wr, (uint32_t)n);
	if (body)
		cfx_write_bytes(&wr, body, n);
	v.p = copy_exact(wr.p, wr.len);
	v.len = wr.len;
	cfx_writer_free(&wr);
	return v;
}

static int dec(const uint8_t *p, size_t len, int version, enum mqtt_dir dir,
	       struct mqtt_packet *pkt, struct mqtt_err *err)
{
	return mqtt_decode(copy_exact(p, len), len, version, dir, pkt, err);
}

static void expect_fail_at(const uint8_t *p, size_t len, int version, enum mqtt_dir dir,
			   int reason, int line)
{
	struct mqtt_packet pkt;
	struct mqtt_err err;
	int rc = dec(p, len, version, dir, &pkt, &err);

	if (rc != CFX_EPARSE || err.reason != reason)
		fail_msg("line %d: rc %d reason 0x%02x (%s), want 0x%02x", line, rc, err.reason,
			 err.desc ? err.desc : "-", reason);
	assert_non_null(err.desc);
}

static void expect_ok_at(const uint8_t *p, size_t len, int version, enum mqtt_dir dir,
			 struct mqtt_packet *pkt, int line)
{
	struct mqtt_err err;
	int rc = dec(p, len, version, dir, pkt, &err);

	if (rc != 0)
		fail_msg("line %d: rc %d reason 0x%02x (%s)", line, rc, err.reason,
			 err.desc ? err.desc : "-");
}

/* EXPECT_FAIL(first byte, version, dir, reason, body bytes...) */
#define EXPECT_FAIL(b0, ver, dir, reason, ...)                                                  \
	do {                                                                                    \
		struct cfx_view f_ = framed((b0), BYTES(__VA_ARGS__));                          \
		expect_fail_at(f_.p, f_.len, (ver), (dir), (reason), __LINE__);                 \
	} while (0)
#define EXPECT_FAIL0(b0, ver, dir, reason)                                                      \
	do {                                                                                    \
		struct cfx_view f_ = framed((b0), NULL, 0);                                     \
		expect_fail_at(f_.p, f_.len, (ver), (dir), (reason), __LINE__);                 \
	} while (0)
#define EXPECT_OK(b0, ver, dir, pkt, ...)                                                       \
	do {                                                                                    \
		struct cfx_view f_ = framed((b0), BYTES(__VA_ARGS__));                          \
		expect_ok_at(f_.p, f_.len, (ver), (dir), (pkt), __LINE__);                      \
	} while (0)
#define EXPECT_RAW_FAIL(ver, dir, reason, ...) \
	expect_fail_at(BYTES(__VA_ARGS__), (ver), (dir), (reason), __LINE__)

static void assert_bytes(const struct cfx_writer *wr, const void *want, size_t len)
{
	assert_int_equal(wr->len, len);
	assert_memory_equal(wr->p, want, len);
}

#define ASSERT_WROTE(wr, ...) assert_bytes((wr), BYTES(__VA_ARGS__))

static void assert_view(struct cfx_view v, const char *s)
{
	if (!cfx_view_eq_str(v, s))
		fail_msg("view '%.*s' != '%s'", (int)v.len, v.p ? (const char *)v.p : "", s);
}

/*
 * Encodes `in`, frames it, decodes it, compares, and encodes the decoded
 * struct again: the bytes must be the same (the encoding is canonical, and
 * a decoded struct re-encodes from its raw lists). Returns the decoded
 * packet in *out (views into a kept copy).
 */
static void roundtrip(int version, enum mqtt_dir dir, const struct mqtt_packet *in,
		      struct mqtt_packet *out)
{
	struct cfx_writer wr, wr2;
	struct mqtt_err err;
	size_t n, frame = 0;
	uint8_t *p;
	int rc;

	cfx_writer_init(&wr, 0);
	n = mqtt_encode(&wr, version, in);
	assert_int_equal(n, wr.len);
	p = copy_exact(wr.p, wr.len);
	assert_int_equal(mqtt_frame_check(p, n, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame), 0);
	assert_int_equal(frame, n);
	assert_int_equal(mqtt_frame_check(p, n - 1, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame),
			 CFX_NEED_MORE);
	rc = mqtt_decode(p, n, in->type == MQTT_CONNECT ? 0 : version, dir, out, &err);
	if (rc)
		fail_msg("%s v%d: decode failed: 0x%02x %s", mqtt_type_name(in->type), version,
			 err.reason, err.desc);
	assert_int_equal(out->type, in->type);
	assert_true(mqtt_packet_equal(in, out));
	assert_true(mqtt_packet_equal(out, in));

	cfx_writer_init(&wr2, 0);
	mqtt_encode(&wr2, version, out);
	assert_int_equal(wr2.len, wr.len);
	assert_memory_equal(wr2.p, wr.p, wr.len);
	cfx_writer_free(&wr2);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Primitives
 * ------------------------------------------------------------------------ */

static const struct {
	uint32_t v;
	uint8_t b[4];
	size_t n;
} varints[] = {
	{ 0, { 0x00 }, 1 },
	{ 127, { 0x7f }, 1 },
	{ 128, { 0x80, 0x01 }, 2 },
	{ 16383, { 0xff, 0x7f }, 2 },
	{ 16384, { 0x80, 0x80, 0x01 }, 3 },
	{ 2097151, { 0xff, 0xff, 0x7f }, 3 },
	{ 2097152, { 0x80, 0x80, 0x80, 0x01 }, 4 },
	{ 268435455, { 0xff, 0xff, 0xff, 0x7f }, 4 },
};

static void test_varint(void **state)
{
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 0);
	for (size_t i = 0; i < CFX_ARRAY_LEN(varints); i++) {
		struct cfx_reader rd = cfx_reader_make(varints[i].b, varints[i].n);

		assert_int_equal(mqtt_read_varint(&rd), varints[i].v);
		assert_int_equal(rd.err, 0);
		assert_int_equal(rd.pos, varints[i].n);
		assert_int_equal(mqtt_varint_size(varints[i].v), varints[i].n);
		cfx_writer_reset(&wr);
		mqtt_write_varint(&wr, varints[i].v);
		assert_bytes(&wr, varints[i].b, varints[i].n);
		/* Any shorter prefix is truncated. */
		rd = cfx_reader_make(varints[i].b, varints[i].n - 1);
		mqtt_read_varint(&rd);
		assert_int_equal(rd.err, CFX_EPARSE);
	}
	cfx_writer_free(&wr);

	/* Five bytes, and overlong forms, are refused. */
	static const uint8_t bad[][5] = {
		{ 0xff, 0xff, 0xff, 0xff, 0x7f }, /* 5 bytes */
		{ 0x80, 0x80, 0x80, 0x80, 0x01 }, /* 5 bytes */
		{ 0x80, 0x00 },			  /* 0 in 2 bytes */
		{ 0xff, 0x80, 0x00 },		  /* 127 in 3 bytes */
		{ 0x80, 0x80, 0x80, 0x00 },	  /* 0 in 4 bytes */
	};
	static const size_t bad_len[] = { 5, 5, 2, 3, 4 };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		struct cfx_reader rd = cfx_reader_make(bad[i], bad_len[i]);

		assert_int_equal(mqtt_read_varint(&rd), 0);
		assert_int_equal(rd.err, CFX_EPARSE);
		assert_non_null(rd.err_desc);
	}
}

static void test_frame_check(void **state)
{
	uint8_t buf[8];
	size_t frame = 0;
	(void)state;

	/* Every edge of the Remaining Length, with only the header there. */
	for (size_t i = 0; i < CFX_ARRAY_LEN(varints); i++) {
		size_t hdr = 1 + varints[i].n, total = hdr + varints[i].v;

		buf[0] = 0x30;
		memcpy(buf + 1, varints[i].b, varints[i].n);
		for (size_t len = 0; len < hdr; len++)
			assert_int_equal(mqtt_frame_check(buf, len, MQTT_PACKET_BYTES_PROTOCOL_MAX,
							  &frame),
					 CFX_NEED_MORE);
		if (varints[i].v == 0) {
			assert_int_equal(mqtt_frame_check(buf, hdr, 2, &frame), 0);
			assert_int_equal(frame, 2);
			continue;
		}
		assert_int_equal(mqtt_frame_check(buf, hdr, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame),
				 CFX_NEED_MORE);
		/* The limit counts the whole packet. */
		assert_int_equal(mqtt_frame_check(buf, hdr, total, &frame), CFX_NEED_MORE);
		assert_int_equal(mqtt_frame_check(buf, hdr, total - 1, &frame), CFX_E2BIG);
	}
	assert_int_equal(MQTT_PACKET_BYTES_PROTOCOL_MAX, 268435460u);

	/* A whole PINGREQ, with the next packet's first byte behind it. */
	assert_int_equal(mqtt_frame_check((const uint8_t[]){ 0xc0, 0x00, 0xc0 }, 3, 2, &frame), 0);
	assert_int_equal(frame, 2);
	/* A 127-byte body. */
	{
		uint8_t p[2 + 127] = { 0x30, 0x7f };

		assert_int_equal(mqtt_frame_check(p, sizeof p - 1, 1024, &frame), CFX_NEED_MORE);
		assert_int_equal(mqtt_frame_check(p, sizeof p, 1024, &frame), 0);
		assert_int_equal(frame, 129);
	}
	/* Five length bytes; overlong lengths. */
	assert_int_equal(mqtt_frame_check((const uint8_t[]){ 0x30, 0xff, 0xff, 0xff, 0xff, 0x7f },
					  6, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame),
			 CFX_EPARSE);
	assert_int_equal(mqtt_frame_check((const uint8_t[]){ 0x30, 0x80, 0x80, 0x80, 0x80 }, 5,
					  MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame),
			 CFX_EPARSE);
	assert_int_equal(mqtt_frame_check((const uint8_t[]){ 0x30, 0x80, 0x00 }, 3, 100, &frame),
			 CFX_EPARSE);
	assert_int_equal(mqtt_frame_check((const uint8_t[]){ 0x30, 0x80, 0x80, 0x00 }, 4, 100,
					  &frame),
			 CFX_EPARSE);
}

/* PUBLISH packets whose Remaining Length sits on each varint edge. */
static void test_remaining_length_edges(void **state)
{
	static const uint32_t lens[] = { 127, 128, 16383, 16384, 2097151, 2097152 };
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(lens); i++) {
		/* Body: topic "t" (3 bytes), then the payload. */
		size_t payload_len = lens[i] - 3;
		uint8_t *payload = calloc(1, payload_len);
		struct mqtt_packet in = { .type = MQTT_PUBLISH }, out;
		struct cfx_writer wr;

		assert_non_null(payload);
		in.publish.topic = V("t");
		in.publish.payload = (struct cfx_view){ payload, payload_len };
		cfx_writer_init(&wr, 0);
		mqtt_encode(&wr, MQTT_V311, &in);
		assert_int_equal(wr.len, 1 + mqtt_varint_size(lens[i]) + lens[i]);
		assert_int_equal(wr.p[0], 0x30);
		for (size_t k = 0; k < CFX_ARRAY_LEN(varints); k++)
			if (varints[k].v == lens[i])
				assert_memory_equal(wr.p + 1, varints[k].b, varints[k].n);
		roundtrip(MQTT_V311, MQTT_FROM_CLIENT, &in, &out);
		assert_int_equal(out.publish.payload.len, payload_len);
		cfx_writer_free(&wr);
		free(payload);
		teardown(NULL);
	}

	/* A 0-byte body (PINGREQ) and a 268435455-byte one are framed. */
	{
		size_t frame = 0;
		uint8_t p[5] = { 0x30, 0xff, 0xff, 0xff, 0x7f };

		assert_int_equal(mqtt_frame_check(p, 5, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame),
				 CFX_NEED_MORE);
		assert_int_equal(mqtt_frame_check(p, 5, MQTT_PACKET_BYTES_MAX, &frame), CFX_E2BIG);
	}

	/* The decoder refuses the same bad lengths, and lengths that do not
	 * match the packet's size. */
	EXPECT_RAW_FAIL(MQTT_V311, MQTT_FROM_CLIENT, MQTT_RC_MALFORMED_PACKET, 0xc0, 0x80, 0x00);
	EXPECT_RAW_FAIL(MQTT_V311, MQTT_FROM_CLIENT, MQTT_RC_MALFORMED_PACKET, 0xc0, 0x80, 0x80,
			0x80, 0x80, 0x00);
	EXPECT_RAW_FAIL(MQTT_V311, MQTT_FROM_CLIENT, MQTT_RC_MALFORMED_PACKET, 0xc0, 0x01);
	EXPECT_RAW_FAIL(MQTT_V311, MQTT_FROM_CLIENT, MQTT_RC_MALFORMED_PACKET, 0xc0, 0x00, 0x00);
	EXPECT_RAW_FAIL(MQTT_V311, MQTT_FROM_CLIENT, MQTT_RC_MALFORMED_PACKET, 0xc0);
}

static void test_utf8(void **state)
{
	(void)state;
#define OK8(...) assert_int_equal(mqtt_utf8_is_valid(BYTES(__VA_ARGS__)), 1)
#define BAD8(...) assert_int_equal(mqtt_utf8_is_valid(BYTES(__VA_ARGS__)), 0)
	assert_int_equal(mqtt_utf8_is_valid(NULL, 0), 1);
	OK8('a', '/', 'b');
	OK8(0xc2, 0xa9);		   /* U+00A9 */
	OK8(0xe2, 0x82, 0xac);		   /* U+20AC */
	OK8(0xef, 0xbb, 0xbf);		   /* U+FEFF: allowed, and not skipped */
	OK8(0xf0, 0x9f, 0x98, 0x80);	   /* U+1F600 */
	OK8(0xf4, 0x8f, 0xbf, 0xbf);	   /* U+10FFFF */
	OK8(0x01, 0x7f, 0xc2, 0x80);	   /* control characters: the broker's call */
	BAD8(0x00);			   /* U+0000 */
	BAD8('a', 0x00, 'b');
	BAD8(0xc0, 0x80);		   /* overlong U+0000 */
	BAD8(0xc1, 0xbf);		   /* overlong U+007F */
	BAD8(0xe0, 0x80, 0xaf);		   /* overlong '/' */
	BAD8(0xf0, 0x80, 0x80, 0xaf);	   /* overlong '/' */
	BAD8(0xed, 0xa0, 0x80);		   /* U+D800 */
	BAD8(0xed, 0xbf, 0xbf);		   /* U+DFFF */
	BAD8(0xf4, 0x90, 0x80, 0x80);	   /* U+110000 */
	BAD8(0xf8, 0x88, 0x80, 0x80, 0x80); /* 5-byte form */
	BAD8(0x80);			   /* lone continuation */
	BAD8(0xe2, 0x82);		   /* truncated */
	BAD8(0xe2, 0x28, 0xac);		   /* bad continuation */
	BAD8(0xff);
#undef OK8
#undef BAD8
}

static void test_topic_rules(void **state)
{
	struct cfx_view share, tf;
	(void)state;

	assert_int_equal(mqtt_topic_name_check(V("a/b/c")), 0);
	assert_int_equal(mqtt_topic_name_check(V("/")), 0);
	assert_int_equal(mqtt_topic_name_check(V("$SYS/x")), 0);
	assert_int_equal(mqtt_topic_name_check(V("")), MQTT_RC_TOPIC_NAME_INVALID);
	assert_int_equal(mqtt_topic_name_check(V("a/+")), MQTT_RC_TOPIC_NAME_INVALID);
	assert_int_equal(mqtt_topic_name_check(V("#")), MQTT_RC_TOPIC_NAME_INVALID);
	assert_int_equal(mqtt_topic_name_check(V("a#b")), MQTT_RC_TOPIC_NAME_INVALID);

	static const char *const good[] = { "#", "+", "a/#", "a/+/b", "+/+", "/+", "+/", "a//b",
					    "/", "sport/tennis/+", "$SYS/#", "a/b/c" };
	static const char *const bad[] = { "", "a#", "a/#/b", "#/a", "a+", "+a", "a/b+/c",
					   "a/+b", "##", "++", "a/#/", "sport+" };
	for (size_t i = 0; i < CFX_ARRAY_LEN(good); i++)
		assert_int_equal(mqtt_topic_filter_check(V(good[i])), 0);
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++)
		assert_int_equal(mqtt_topic_filter_check(V(bad[i])), MQTT_RC_TOPIC_FILTER_INVALID);

	assert_int_equal(mqtt_topic_filter_parse(V("$share/g1/a/+/c"), &share, &tf), 0);
	assert_view(share, "g1");
	assert_view(tf, "a/+/c");
	assert_int_equal(mqtt_topic_filter_parse(V("$share/g/#"), &share, &tf), 0);
	assert_view(share, "g");
	assert_view(tf, "#");
	assert_int_equal(mqtt_topic_filter_parse(V("a/b"), &share, &tf), 0);
	assert_int_equal(share.len, 0);
	assert_view(tf, "a/b");
	/* "$share" alone or "$sharex/..." are plain filters. */
	assert_int_equal(mqtt_topic_filter_parse(V("$share"), &share, &tf), 0);
	assert_int_equal(share.len, 0);
	assert_int_equal(mqtt_topic_filter_parse(V("$shared/g/a"), &share, &tf), 0);
	assert_int_equal(share.len, 0);
	static const char *const bad_share[] = { "$share/", "$share//a", "$share/g", "$share/g/",
						 "$share/g+/a", "$share/#/a", "$share/g/a#",
						 "$share/a+b/x" };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_share); i++)
		assert_int_equal(mqtt_topic_filter_parse(V(bad_share[i]), &share, &tf),
				 MQTT_RC_TOPIC_FILTER_INVALID);

	assert_int_equal(mqtt_topic_filter_has_wildcard(V("a/+")), 1);
	assert_int_equal(mqtt_topic_filter_has_wildcard(V("a/b")), 0);
	assert_int_equal(mqtt_client_id_is_portable(V("Client123")), 1);
	assert_int_equal(mqtt_client_id_is_portable(V("12345678901234567890123")), 1);
	assert_int_equal(mqtt_client_id_is_portable(V("123456789012345678901234")), 0);
	assert_int_equal(mqtt_client_id_is_portable(V("")), 0);
	assert_int_equal(mqtt_client_id_is_portable(V("a-b")), 0);
}

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

static void test_tables(void **state)
{
	const struct mqtt_prop_info *pi;
	int nprops = 0;
	(void)state;

	assert_string_equal(mqtt_type_name(MQTT_CONNECT), "CONNECT");
	assert_string_equal(mqtt_type_name(MQTT_AUTH), "AUTH");
	assert_string_equal(mqtt_type_name(0), "RESERVED");
	assert_string_equal(mqtt_type_name(16), "RESERVED");

	assert_string_equal(mqtt_reason_name(0x81), "Malformed Packet");
	assert_string_equal(mqtt_reason_name(0x00), "Success");
	assert_string_equal(mqtt_reason_name(0xA2), "Wildcard Subscriptions not supported");
	assert_string_equal(mqtt_reason_name(0x03), "Unknown reason code");
	assert_true(mqtt_reason_is_allowed(MQTT_PUBACK, 0x10));
	assert_false(mqtt_reason_is_allowed(MQTT_PUBREL, 0x10));
	assert_true(mqtt_reason_is_allowed(MQTT_PUBREL, 0x92));
	assert_false(mqtt_reason_is_allowed(MQTT_PUBACK, 0x92));
	assert_true(mqtt_reason_is_allowed(MQTT_SUBACK, 0x02));
	assert_false(mqtt_reason_is_allowed(MQTT_UNSUBACK, 0x02));
	assert_true(mqtt_reason_is_allowed(MQTT_UNSUBACK, 0x11));
	assert_true(mqtt_reason_is_allowed(MQTT_AUTH, 0x18));
	assert_false(mqtt_reason_is_allowed(MQTT_AUTH, 0x80));
	assert_true(mqtt_reason_is_allowed(MQTT_DISCONNECT, 0x04));
	assert_false(mqtt_reason_is_allowed(MQTT_CONNACK, 0x04));
	assert_true(mqtt_reason_is_allowed(MQTT_CONNACK, 0x84));
	assert_false(mqtt_reason_is_allowed(MQTT_DISCONNECT, 0x84));
	assert_false(mqtt_reason_is_allowed(MQTT_PINGREQ, 0x00));
	assert_false(mqtt_reason_is_allowed(0, 0x00));

	/* v5 CONNACK reason code <-> 3.1.1 return code. */
	assert_int_equal(mqtt_connack_v311_code(0x00), 0);
	assert_int_equal(mqtt_connack_v311_code(0x84), 1);
	assert_int_equal(mqtt_connack_v311_code(0x85), 2);
	assert_int_equal(mqtt_connack_v311_code(0x88), 3);
	assert_int_equal(mqtt_connack_v311_code(0x89), 3);
	assert_int_equal(mqtt_connack_v311_code(0x80), 3);
	assert_int_equal(mqtt_connack_v311_code(0x86), 4);
	assert_int_equal(mqtt_connack_v311_code(0x8C), 4);
	assert_int_equal(mqtt_connack_v311_code(0x87), 5);
	assert_int_equal(mqtt_connack_v311_code(0x8A), 5);
	assert_int_equal(mqtt_connack_v311_code(0x81), -1);
	assert_int_equal(mqtt_connack_v311_code(0x82), -1);
	assert_int_equal(mqtt_connack_v311_code(0x95), -1);
	assert_int_equal(mqtt_connack_v311_code(0x10), -1);
	for (int rc = 0; rc <= 5; rc++) {
		int reason = mqtt_connack_reason_of_v311(rc);

		assert_true(mqtt_reason_is_allowed(MQTT_CONNACK, reason));
		assert_int_equal(mqtt_connack_v311_code(reason), rc);
	}
	assert_int_equal(mqtt_connack_reason_of_v311(6), -1);
	assert_int_equal(mqtt_connack_reason_of_v311(-1), -1);
	/* Every CONNACK reason code has a 3.1.1 answer or an explicit "none". */
	for (int code = 0; code < 256; code++) {
		int rc = mqtt_connack_v311_code(code);

		if (rc >= 0)
			assert_true(mqtt_reason_is_allowed(MQTT_CONNACK, code));
	}

	for (uint32_t id = 0; id < 64; id++) {
		pi = mqtt_prop_lookup(id);
		if (!pi)
			continue;
		nprops++;
		assert_int_equal(pi->id, id);
		assert_non_null(pi->name);
		assert_true(pi->packets != 0);
	}
	assert_int_equal(nprops, 27);
	assert_null(mqtt_prop_lookup(0x00));
	assert_null(mqtt_prop_lookup(0x04));
	assert_null(mqtt_prop_lookup(0x2B));
	assert_null(mqtt_prop_lookup(1000));
	pi = mqtt_prop_lookup(0x26);
	assert_string_equal(pi->name, "User Property");
	assert_int_equal(pi->type, MQTT_PT_PAIR);
	pi = mqtt_prop_lookup(0x0B);
	assert_int_equal(pi->type, MQTT_PT_VARINT);
	assert_true(pi->packets & MQTT_PK(SUBSCRIBE));
	assert_false(pi->packets & MQTT_PK(UNSUBSCRIBE));
	pi = mqtt_prop_lookup(0x18);
	assert_int_equal(pi->packets, MQTT_PK_WILL);
	pi = mqtt_prop_lookup(0x11);
	assert_int_equal(pi->type, MQTT_PT_U32);
	assert_int_equal(pi->offset, offsetof(struct mqtt_props, session_expiry_s));
}

/* ------------------------------------------------------------------------
 * Byte-exact vectors
 * ------------------------------------------------------------------------ */

/* MQTT 3.1.1 section 3.1.2.10, figure 3.6: protocol "MQTT" level 4, flags
 * 0xCE (user name, password, will QoS 1, will, clean session), keep
 * alive 10; the payload fields of 3.1.3 in order. */
static const uint8_t connect_v311[] = {
	0x10, 0x23,					/* CONNECT, Remaining Length 35 */
	0x00, 0x04, 'M', 'Q', 'T', 'T',			/* Protocol Name */
	0x04,						/* Protocol Level */
	0xce,						/* Connect Flags */
	0x00, 0x0a,					/* Keep Alive */
	0x00, 0x03, 'c', 'i', 'd',			/* Client Identifier */
	0x00, 0x03, 'w', '/', 't',			/* Will Topic */
	0x00, 0x03, 'b', 'y', 'e',			/* Will Message */
	0x00, 0x04, 'u', 's', 'e', 'r',			/* User Name */
	0x00, 0x02, 'p', 'w',				/* Password */
};

static void test_connect_v311_vector(void **state)
{
	struct mqtt_packet pkt;
	struct mqtt_err err;
	struct cfx_writer wr;
	const struct mqtt_connect *c = &pkt.connect;
	(void)state;

	assert_int_equal(dec(connect_v311, sizeof connect_v311, 0, MQTT_FROM_CLIENT, &pkt, &err), 0);
	assert_int_equal(pkt.type, MQTT_CONNECT);
	assert_int_equal(c->version, MQTT_V311);
	assert_int_equal(c->clean_start, 1);
	assert_int_equal(c->has_will, 1);
	assert_int_equal(c->will.qos, 1);
	assert_int_equal(c->will.retain, 0);
	assert_int_equal(c->has_username, 1);
	assert_int_equal(c->has_password, 1);
	assert_int_equal(c->keep_alive_s, 10);
	assert_view(c->client_id, "cid");
	assert_view(c->will.topic, "w/t");
	assert_view(c->will.payload, "bye");
	assert_view(c->username, "user");
	assert_view(c->password, "pw");
	assert_int_equal(c->props.present, 0);

	cfx_writer_init(&wr, 0);
	assert_int_equal(mqtt_encode_connect(&wr, c), sizeof connect_v311);
	assert_bytes(&wr, connect_v311, sizeof connect_v311);
	cfx_writer_free(&wr);
}

/* A v5 PUBLISH from a client: QoS 1, RETAIN, topic "a/b", packet id 10,
 * seven properties in identifier order, payload "hi" (3.3). */
static const uint8_t publish_v5[] = {
	0x33, 0x2d,			     /* PUBLISH QoS 1 RETAIN, Remaining Length 45 */
	0x00, 0x03, 'a', '/', 'b',	     /* Topic Name */
	0x00, 0x0a,			     /* Packet Identifier */
	0x23,				     /* Property Length 35 */
	0x01, 0x01,			     /* Payload Format Indicator 1 */
	0x02, 0x00, 0x00, 0x00, 0x3c,	     /* Message Expiry Interval 60 */
	0x03, 0x00, 0x04, 't', 'e', 'x', 't', /* Content Type */
	0x08, 0x00, 0x03, 'r', '/', 's',     /* Response Topic */
	0x09, 0x00, 0x02, 0xca, 0xfe,	     /* Correlation Data */
	0x23, 0x00, 0x07,		     /* Topic Alias 7 */
	0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', /* User Property k=v */
	'h', 'i',			     /* Payload */
};

static void test_publish_v5_vector(void **state)
{
	struct mqtt_packet pkt;
	struct mqtt_err err;
	struct cfx_writer wr;
	struct mqtt_prop_iter it;
	struct mqtt_user_prop up;
	const struct mqtt_publish *pub = &pkt.publish;
	(void)state;

	assert_int_equal(dec(publish_v5, sizeof publish_v5, MQTT_V5, MQTT_FROM_CLIENT, &pkt, &err),
			 0);
	assert_int_equal(pkt.type, MQTT_PUBLISH);
	assert_int_equal(pub->qos, 1);
	assert_int_equal(pub->retain, 1);
	assert_int_equal(pub->dup, 0);
	assert_int_equal(pub->packet_id, 10);
	assert_view(pub->topic, "a/b");
	assert_view(pub->payload, "hi");
	assert_true(pub->props.present & MQTT_PROP_BIT(PAYLOAD_FORMAT_INDICATOR));
	assert_int_equal(pub->props.payload_format, 1);
	assert_int_equal(pub->props.message_expiry_s, 60);
	assert_view(pub->props.content_type, "text");
	assert_view(pub->props.response_topic, "r/s");
	assert_int_equal(pub->props.correlation_data.len, 2);
	assert_int_equal(pub->props.correlation_data.p[0], 0xca);
	assert_int_equal(pub->props.topic_alias, 7);
	assert_int_equal(pub->props.user_prop_count, 1);
	assert_int_equal(pub->props.sub_id_count, 0);
	assert_false(pub->props.present & MQTT_PROP_BIT(SESSION_EXPIRY_INTERVAL));
	mqtt_prop_iter_init(&it, &pub->props);
	assert_int_equal(mqtt_props_next_user(&it, &up), 1);
	assert_view(up.name, "k");
	assert_view(up.value, "v");
	assert_int_equal(mqtt_props_next_user(&it, &up), 0);
	/* The raw property list is a view of the packet. */
	assert_int_equal(pub->props.raw.len, 0x23);
	assert_int_equal(mqtt_props_size(&pub->props), 0x23);

	cfx_writer_init(&wr, 0);
	assert_int_equal(mqtt_encode_publish(&wr, MQTT_V5, pub), sizeof publish_v5);
	assert_bytes(&wr, publish_v5, sizeof publish_v5);

	/* The same publish in 3.1.1 drops the properties. */
	cfx_writer_reset(&wr);
	mqtt_encode_publish(&wr, MQTT_V311, pub);
	ASSERT_WROTE(&wr, 0x33, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0a, 'h', 'i');
	cfx_writer_free(&wr);
}

/* MQTT 3.1.1 section 3.8: packet id 10, "a/b" QoS 1 and "c/d" QoS 2. */
static const uint8_t subscribe_v311[] = {
	0x82, 0x0e, 0x00, 0x0a, 0x00, 0x03, 'a', '/', 'b', 0x01, 0x00, 0x03, 'c', '/', 'd', 0x02,
};

/* v5: packet id 1, Subscription Identifier 5, three entries with options. */
static const uint8_t subscribe_v5[] = {
	0x82, 0x1e,	  /* SUBSCRIBE, Remaining Length 30 */
	0x00, 0x01,	  /* Packet Identifier */
	0x02, 0x0b, 0x05, /* Properties: Subscription Identifier 5 */
	0x00, 0x03, 'a', '/', '+', 0x2d, /* QoS 1, No Local, RAP, Retain Handling 2 */
	0x00, 0x0c, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'x', '/', '#', 0x01,
	0x00, 0x01, '#', 0x1a, /* QoS 2, RAP, Retain Handling 1 */
};

static void test_subscribe_vectors(void **state)
{
	struct mqtt_packet pkt;
	struct mqtt_err err;
	struct cfx_writer wr;
	struct mqtt_topic_iter it;
	struct mqtt_subscription e;
	(void)state;

	assert_int_equal(dec(subscribe_v311, sizeof subscribe_v311, MQTT_V311, MQTT_FROM_CLIENT,
			     &pkt, &err),
			 0);
	assert_int_equal(pkt.subscribe.packet_id, 10);
	assert_int_equal(pkt.subscribe.topic_count, 2);
	mqtt_topic_iter_init(&it, MQTT_SUBSCRIBE, &pkt.subscribe);
	assert_int_equal(mqtt_topic_next(&it, &e), 1);
	assert_view(e.filter, "a/b");
	assert_int_equal(e.qos, 1);
	assert_int_equal(mqtt_topic_next(&it, &e), 1);
	assert_view(e.filter, "c/d");
	assert_int_equal(e.qos, 2);
	assert_int_equal(mqtt_topic_next(&it, &e), 0);
	cfx_writer_init(&wr, 0);
	mqtt_encode_subscribe(&wr, MQTT_V311, MQTT_SUBSCRIBE, &pkt.subscribe);
	assert_bytes(&wr, subscribe_v311, sizeof subscribe_v311);

	assert_int_equal(dec(subscribe_v5, sizeof subscribe_v5, MQTT_V5, MQTT_FROM_CLIENT, &pkt,
			     &err),
			 0);
	assert_int_equal(pkt.subscribe.packet_id, 1);
	assert_int_equal(mqtt_props_first_sub_id(&pkt.subscribe.props), 5);
	assert_int_equal(pkt.subscribe.topic_count, 3);
	mqtt_topic_iter_init(&it, MQTT_SUBSCRIBE, &pkt.subscribe);
	assert_int_equal(mqtt_topic_next(&it, &e), 1);
	assert_view(e.filter, "a/+");
	assert_view(e.topic_filter, "a/+");
	assert_int_equal(e.share_name.len, 0);
	assert_int_equal(e.qos, 1);
	assert_int_equal(e.no_local, 1);
	assert_int_equal(e.retain_as_published, 1);
	assert_int_equal(e.retain_handling, 2);
	assert_int_equal(mqtt_topic_next(&it, &e), 1);
	assert_view(e.filter, "$share/g/x/#");
	assert_view(e.share_name, "g");
	assert_view(e.topic_filter, "x/#");
	assert_int_equal(e.qos, 1);
	assert_int_equal(e.no_local, 0);
	assert_int_equal(mqtt_topic_next(&it, &e), 1);
	assert_view(e.filter, "#");
	assert_int_equal(e.qos, 2);
	assert_int_equal(e.retain_as_published, 1);
	assert_int_equal(e.retain_handling, 1);
	assert_int_equal(mqtt_topic_next(&it, &e), 0);
	cfx_writer_reset(&wr);
	mqtt_encode_subscribe(&wr, MQTT_V5, MQTT_SUBSCRIBE, &pkt.subscribe);
	assert_bytes(&wr, subscribe_v5, sizeof subscribe_v5);

	/* Built from an array: the same bytes. */
	{
		const struct mqtt_subscription subs[] = {
			{ .filter = V("a/+"), .qos = 1, .no_local = 1, .retain_as_published = 1,
			  .retain_handling = 2 },
			{ .filter = V("$share/g/x/#"), .qos = 1 },
			{ .filter = V("#"), .qos = 2, .retain_as_published = 1, .retain_handling = 1 },
		};
		const uint32_t id = 5;
		struct mqtt_subscribe sub = { .packet_id = 1, .topic_count = 3, .topics = subs };

		sub.props.sub_id_count = 1;
		sub.props.sub_ids = &id;
		cfx_writer_reset(&wr);
		mqtt_encode_subscribe(&wr, MQTT_V5, MQTT_SUBSCRIBE, &sub);
		assert_bytes(&wr, subscribe_v5, sizeof subscribe_v5);
	}
	cfx_writer_free(&wr);
}

/* Short forms of 3.4.2.1, 3.14.2.1, 3.15.2.1, and the fixed packets. */
static void test_short_forms(void **state)
{
	struct cfx_writer wr;
	struct mqtt_ack ack = { .packet_id = 0x1234 };
	struct mqtt_disconnect dc = { 0 };
	struct mqtt_connack ca = { .session_present = 1 };
	struct mqtt_suback sa = { .packet_id = 7, .reasons = { (const uint8_t *)"\x00\x01\x02\x97", 4 } };
	struct mqtt_packet pkt;
	(void)state;

	cfx_writer_init(&wr, 0);
	mqtt_encode_ack(&wr, MQTT_V5, MQTT_PUBACK, &ack);
	ASSERT_WROTE(&wr, 0x40, 0x02, 0x12, 0x34);
	cfx_writer_reset(&wr);
	ack.reason = MQTT_RC_NO_MATCHING_SUBSCRIBERS;
	mqtt_encode_ack(&wr, MQTT_V5, MQTT_PUBREC, &ack);
	ASSERT_WROTE(&wr, 0x50, 0x03, 0x12, 0x34, 0x10);
	cfx_writer_reset(&wr);
	mqtt_encode_ack(&wr, MQTT_V311, MQTT_PUBREC, &ack);
	ASSERT_WROTE(&wr, 0x50, 0x02, 0x12, 0x34);
	cfx_writer_reset(&wr);
	ack.reason = 0;
	mqtt_encode_ack(&wr, MQTT_V311, MQTT_PUBREL, &ack);
	ASSERT_WROTE(&wr, 0x62, 0x02, 0x12, 0x34);
	cfx_writer_reset(&wr);
	ack.props.present = MQTT_PROP_BIT(REASON_STRING);
	ack.props.reason_string = V("no");
	mqtt_encode_ack(&wr, MQTT_V5, MQTT_PUBCOMP, &ack);
	ASSERT_WROTE(&wr, 0x70, 0x09, 0x12, 0x34, 0x00, 0x05, 0x1f, 0x00, 0x02, 'n', 'o');

	cfx_writer_reset(&wr);
	mqtt_encode_disconnect(&wr, MQTT_V5, MQTT_DISCONNECT, &dc);
	ASSERT_WROTE(&wr, 0xe0, 0x00);
	cfx_writer_reset(&wr);
	mqtt_encode_disconnect(&wr, MQTT_V5, MQTT_AUTH, &dc);
	ASSERT_WROTE(&wr, 0xf0, 0x00);
	cfx_writer_reset(&wr);
	dc.reason = MQTT_RC_DISCONNECT_WITH_WILL;
	mqtt_encode_disconnect(&wr, MQTT_V5, MQTT_DISCONNECT, &dc);
	ASSERT_WROTE(&wr, 0xe0, 0x01, 0x04);
	cfx_writer_reset(&wr);
	mqtt_encode_disconnect(&wr, MQTT_V311, MQTT_DISCONNECT, &dc);
	ASSERT_WROTE(&wr, 0xe0, 0x00);
	cfx_writer_reset(&wr);
	mqtt_encode_ping(&wr, MQTT_PINGREQ);
	mqtt_encode_ping(&wr, MQTT_PINGRESP);
	ASSERT_WROTE(&wr, 0xc0, 0x00, 0xd0, 0x00);

	/* CONNACK: v5 always has a property length; 3.1.1 return codes. */
	cfx_writer_reset(&wr);
	mqtt_encode_connack(&wr, MQTT_V5, &ca);
	ASSERT_WROTE(&wr, 0x20, 0x03, 0x01, 0x00, 0x00);
	cfx_writer_reset(&wr);
	mqtt_encode_connack(&wr, MQTT_V311, &ca);
	ASSERT_WROTE(&wr, 0x20, 0x02, 0x01, 0x00);
	cfx_writer_reset(&wr);
	ca.session_present = 0;
	ca.reason = MQTT_RC_BAD_USER_NAME_OR_PASSWORD;
	mqtt_encode_connack(&wr, MQTT_V311, &ca);
	ASSERT_WROTE(&wr, 0x20, 0x02, 0x00, 0x04);
	cfx_writer_reset(&wr);
	ca.reason = MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION;
	mqtt_encode_connack(&wr, MQTT_V311, &ca);
	ASSERT_WROTE(&wr, 0x20, 0x02, 0x00, 0x01);
	cfx_writer_reset(&wr);
	mqtt_encode_connack(&wr, MQTT_V5, &ca);
	ASSERT_WROTE(&wr, 0x20, 0x03, 0x00, 0x84, 0x00);

	/* SUBACK: 3.1.1 folds failures into 0x80; UNSUBACK 3.1.1 has no codes. */
	cfx_writer_reset(&wr);
	mqtt_encode_suback(&wr, MQTT_V311, MQTT_SUBACK, &sa);
	ASSERT_WROTE(&wr, 0x90, 0x06, 0x00, 0x07, 0x00, 0x01, 0x02, 0x80);
	cfx_writer_reset(&wr);
	mqtt_encode_suback(&wr, MQTT_V5, MQTT_SUBACK, &sa);
	ASSERT_WROTE(&wr, 0x90, 0x07, 0x00, 0x07, 0x00, 0x00, 0x01, 0x02, 0x97);
	cfx_writer_reset(&wr);
	mqtt_encode_suback(&wr, MQTT_V311, MQTT_UNSUBACK, &sa);
	ASSERT_WROTE(&wr, 0xb0, 0x02, 0x00, 0x07);
	cfx_writer_free(&wr);

	/* The decoder takes every form. */
	EXPECT_OK(0x40, MQTT_V5, MQTT_FROM_CLIENT, &pkt, 0x00, 0x05);
	assert_int_equal(pkt.ack.reason, 0);
	EXPECT_OK(0x40, MQTT_V5, MQTT_FROM_CLIENT, &pkt, 0x00, 0x05, 0x10);
	assert_int_equal(pkt.ack.reason, 0x10);
	EXPECT_OK(0x40, MQTT_V5, MQTT_FROM_CLIENT, &pkt, 0x00, 0x05, 0x00, 0x00);
	assert_int_equal(pkt.ack.props.present, 0);
	EXPECT_OK(0xe0, MQTT_V5, MQTT_FROM_CLIENT, &pkt, 0x04);
	assert_int_equal(pkt.disconnect.reason, 4);
	EXPECT_OK(0xe0, MQTT_V5, MQTT_FROM_CLIENT, &pkt, 0x00, 0x00);
	{
		struct cfx_view f = framed(0xe0, NULL, 0);

		expect_ok_at(f.p, f.len, MQTT_V5, MQTT_FROM_CLIENT, &pkt, __LINE__);
		assert_int_equal(pkt.type, MQTT_DISCONNECT);
		expect_ok_at(f.p, f.len, MQTT_V311, MQTT_FROM_SERVER, &pkt, __LINE__);
		f = framed(0xf0, NULL, 0);
		expect_ok_at(f.p, f.len, MQTT_V5, MQTT_FROM_SERVER, &pkt, __LINE__);
		assert_int_equal(pkt.type, MQTT_AUTH);
		f = framed(0xc0, NULL, 0);
		expect_ok_at(f.p, f.len, MQTT_V311, MQTT_FROM_CLIENT, &pkt, __LINE__);
		assert_int_equal(pkt.type, MQTT_PINGREQ);
		f = framed(0xd0, NULL, 0);
		expect_ok_at(f.p, f.len, MQTT_V5, MQTT_FROM_SERVER, &pkt, __LINE__);
		assert_int_equal(pkt.type, MQTT_PINGRESP);
	}
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

static const struct mqtt_user_prop ups[] = {
	{ { (const uint8_t *)"region", 6 }, { (const uint8_t *)"eu", 2 } },
	{ { (const uint8_t *)"k", 1 }, { (const uint8_t *)"", 0 } },
	{ { (const uint8_t *)"region", 6 }, { (const uint8_t *)"us", 2 } }, /* names may repeat */
};

static void add_users(struct mqtt_props *p)
{
	p->user_props = ups;
	p->user_prop_count = CFX_ARRAY_LEN(ups);
}

#define SET(p, NAME, field, value)                      \
	do {                                            \
		(p)->present |= MQTT_PROP_BIT(NAME);    \
		(p)->field = (value);                   \
	} while (0)

static void test_roundtrip_connect(void **state)
{
	struct mqtt_packet in = { .type = MQTT_CONNECT }, out;
	struct mqtt_connect *c = &in.connect;
	struct mqtt_props *p = &c->props, *w = &c->will.props;
	(void)state;

	for (int version = MQTT_V311; version <= MQTT_V5; version++) {
		memset(c, 0, sizeof *c);
		c->version = (uint8_t)version;
		c->keep_alive_s = 60;
		c->client_id = V("client-1");
		roundtrip(version, MQTT_FROM_CLIENT, &in, &out);

		c->clean_start = 1;
		c->client_id = V("");
		c->has_will = 1;
		c->will.qos = 2;
		c->will.retain = 1;
		c->will.topic = V("last/will");
		c->will.payload = (struct cfx_view){ (const uint8_t *)"\x00\xff\x01", 3 };
		c->has_username = 1;
		c->username = V("üser");
		c->has_password = 1;
		c->password = (struct cfx_view){ (const uint8_t *)"\x00p\xffw", 4 };
		if (version == MQTT_V5) {
			SET(p, SESSION_EXPIRY_INTERVAL, session_expiry_s, 0xffffffffu);
			SET(p, RECEIVE_MAXIMUM, receive_max, 100);
			SET(p, MAXIMUM_PACKET_SIZE, max_packet_bytes, 65536);
			SET(p, TOPIC_ALIAS_MAXIMUM, topic_alias_max, 10);
			SET(p, REQUEST_RESPONSE_INFORMATION, request_response_info, 1);
			SET(p, REQUEST_PROBLEM_INFORMATION, request_problem_info, 0);
			SET(p, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-256"));
			SET(p, AUTHENTICATION_DATA, auth_data, V("n,,n=user,r=abc"));
			add_users(p);
			SET(w, WILL_DELAY_INTERVAL, will_delay_s, 30);
			SET(w, PAYLOAD_FORMAT_INDICATOR, payload_format, 0);
			SET(w, MESSAGE_EXPIRY_INTERVAL, message_expiry_s, 3600);
			SET(w, CONTENT_TYPE, content_type, V("application/octet-stream"));
			SET(w, RESPONSE_TOPIC, response_topic, V("reply/here"));
			SET(w, CORRELATION_DATA, correlation_data, V("\x01\x02"));
			add_users(w);
		}
		roundtrip(version, MQTT_FROM_CLIENT, &in, &out);
		if (version == MQTT_V5) {
			assert_int_equal(out.connect.props.session_expiry_s, 0xffffffffu);
			assert_int_equal(out.connect.props.user_prop_count, 3);
			assert_int_equal(out.connect.will.props.will_delay_s, 30);
			assert_null(out.connect.props.user_props);
		}
		/* A v5 password needs no user name. */
		if (version == MQTT_V5) {
			c->has_username = 0;
			c->username = V("");
			roundtrip(version, MQTT_FROM_CLIENT, &in, &out);
		}
	}
}

static void test_roundtrip_connack(void **state)
{
	struct mqtt_packet in = { .type = MQTT_CONNACK }, out;
	struct mqtt_connack *ca = &in.connack;
	struct mqtt_props *p = &ca->props;
	(void)state;

	for (int rc = 0; rc <= 5; rc++) {
		memset(ca, 0, sizeof *ca);
		ca->reason = (uint8_t)mqtt_connack_reason_of_v311(rc);
		ca->session_present = rc == 0;
		roundtrip(MQTT_V311, MQTT_FROM_SERVER, &in, &out);
		roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
	}
	memset(ca, 0, sizeof *ca);
	ca->session_present = 1;
	SET(p, SESSION_EXPIRY_INTERVAL, session_expiry_s, 120);
	SET(p, RECEIVE_MAXIMUM, receive_max, 20);
	SET(p, MAXIMUM_QOS, max_qos, 1);
	SET(p, RETAIN_AVAILABLE, retain_available, 0);
	SET(p, MAXIMUM_PACKET_SIZE, max_packet_bytes, 1048576);
	SET(p, ASSIGNED_CLIENT_IDENTIFIER, assigned_client_id, V("auto-4f2a"));
	SET(p, TOPIC_ALIAS_MAXIMUM, topic_alias_max, 0);
	SET(p, REASON_STRING, reason_string, V("welcome"));
	SET(p, WILDCARD_SUBSCRIPTION_AVAILABLE, wildcard_sub_available, 1);
	SET(p, SUBSCRIPTION_IDENTIFIER_AVAILABLE, sub_id_available, 1);
	SET(p, SHARED_SUBSCRIPTION_AVAILABLE, shared_sub_available, 0);
	SET(p, SERVER_KEEP_ALIVE, server_keep_alive_s, 30);
	SET(p, RESPONSE_INFORMATION, response_info, V("resp/"));
	SET(p, SERVER_REFERENCE, server_reference, V("other:1883"));
	SET(p, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-256"));
	SET(p, AUTHENTICATION_DATA, auth_data, V("v=xyz"));
	add_users(p);
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
	assert_view(out.connack.props.assigned_client_id, "auto-4f2a");
	ca->session_present = 0;
	ca->reason = MQTT_RC_USE_ANOTHER_SERVER;
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
}

static void test_roundtrip_publish(void **state)
{
	static const uint32_t sub_ids[] = { 1, 127, 128, 268435455 };
	struct mqtt_packet in = { .type = MQTT_PUBLISH }, out;
	struct mqtt_publish *pub = &in.publish;
	struct mqtt_props *p = &pub->props;
	struct mqtt_prop_iter it;
	uint32_t id;
	(void)state;

	for (int version = MQTT_V311; version <= MQTT_V5; version++) {
		for (int qos = 0; qos <= 2; qos++) {
			memset(pub, 0, sizeof *pub);
			pub->qos = (uint8_t)qos;
			pub->dup = qos > 0;
			pub->retain = qos == 1;
			pub->packet_id = qos ? (uint16_t)(qos * 1000) : 0;
			pub->topic = V("sensors/α/temp");
			pub->payload = V("21.5");
			roundtrip(version, MQTT_FROM_CLIENT, &in, &out);
			roundtrip(version, MQTT_FROM_SERVER, &in, &out);
		}
		pub->payload = V("");
		roundtrip(version, MQTT_FROM_CLIENT, &in, &out);
	}

	SET(p, PAYLOAD_FORMAT_INDICATOR, payload_format, 1);
	SET(p, MESSAGE_EXPIRY_INTERVAL, message_expiry_s, 10);
	SET(p, TOPIC_ALIAS, topic_alias, 3);
	SET(p, RESPONSE_TOPIC, response_topic, V("r"));
	SET(p, CORRELATION_DATA, correlation_data, V("id-1"));
	SET(p, CONTENT_TYPE, content_type, V("text/plain; charset=utf-8"));
	add_users(p);
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	/* With a Topic Alias the topic may be empty. */
	pub->topic = V("");
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	/* From a server: Subscription Identifiers, several, in order. */
	pub->topic = V("t");
	p->sub_ids = sub_ids;
	p->sub_id_count = CFX_ARRAY_LEN(sub_ids);
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
	assert_int_equal(out.publish.props.sub_id_count, 4);
	mqtt_prop_iter_init(&it, &out.publish.props);
	for (size_t i = 0; i < CFX_ARRAY_LEN(sub_ids); i++) {
		assert_int_equal(mqtt_props_next_sub_id(&it, &id), 1);
		assert_int_equal(id, sub_ids[i]);
	}
	assert_int_equal(mqtt_props_next_sub_id(&it, &id), 0);
	assert_int_equal(mqtt_props_first_sub_id(&out.publish.props), 1);
}

/* A forwarded PUBLISH keeps its user properties; count 0 drops them. */
static void test_forward_props(void **state)
{
	struct mqtt_packet pkt, again;
	struct mqtt_err err;
	struct cfx_writer wr;
	struct mqtt_prop_iter it;
	struct mqtt_user_prop up;
	const uint32_t sid = 9;
	uint8_t *p;
	(void)state;

	assert_int_equal(dec(publish_v5, sizeof publish_v5, MQTT_V5, MQTT_FROM_CLIENT, &pkt, &err),
			 0);
	/* The broker clears the alias and adds a subscription identifier. */
	pkt.publish.props.present &= ~MQTT_PROP_BIT(TOPIC_ALIAS);
	pkt.publish.props.sub_ids = &sid;
	pkt.publish.props.sub_id_count = 1;
	cfx_writer_init(&wr, 0);
	mqtt_encode(&wr, MQTT_V5, &pkt);
	p = copy_exact(wr.p, wr.len);
	assert_int_equal(mqtt_decode(p, wr.len, MQTT_V5, MQTT_FROM_SERVER, &again, &err), 0);
	assert_false(again.publish.props.present & MQTT_PROP_BIT(TOPIC_ALIAS));
	assert_int_equal(mqtt_props_first_sub_id(&again.publish.props), 9);
	mqtt_prop_iter_init(&it, &again.publish.props);
	assert_int_equal(mqtt_props_next_user(&it, &up), 1);
	assert_view(up.name, "k");
	assert_view(again.publish.props.content_type, "text");

	pkt.publish.props.user_prop_count = 0;
	pkt.publish.props.sub_id_count = 0;
	cfx_writer_reset(&wr);
	mqtt_encode(&wr, MQTT_V5, &pkt);
	p = copy_exact(wr.p, wr.len);
	assert_int_equal(mqtt_decode(p, wr.len, MQTT_V5, MQTT_FROM_SERVER, &again, &err), 0);
	assert_int_equal(again.publish.props.user_prop_count, 0);
	assert_int_equal(again.publish.props.sub_id_count, 0);
	cfx_writer_free(&wr);
}

static void test_roundtrip_acks(void **state)
{
	static const uint8_t types[] = { MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP };
	struct mqtt_packet in, out;
	(void)state;

	for (size_t t = 0; t < CFX_ARRAY_LEN(types); t++) {
		memset(&in, 0, sizeof in);
		in.type = types[t];
		in.ack.packet_id = 65535;
		roundtrip(MQTT_V311, MQTT_FROM_CLIENT, &in, &out);
		roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
		in.ack.reason = types[t] == MQTT_PUBREL || types[t] == MQTT_PUBCOMP
					? MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND
					: MQTT_RC_QUOTA_EXCEEDED;
		roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
		SET(&in.ack.props, REASON_STRING, reason_string, V("why"));
		add_users(&in.ack.props);
		roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
		in.ack.reason = 0;
		roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
	}
}

static void test_roundtrip_subscribe(void **state)
{
	static const struct mqtt_subscription subs[] = {
		{ .filter = { (const uint8_t *)"a/b", 3 }, .qos = 0 },
		{ .filter = { (const uint8_t *)"+/x/#", 5 }, .qos = 1, .retain_handling = 1 },
		{ .filter = { (const uint8_t *)"$share/grp/s/+", 14 }, .qos = 2,
		  .retain_as_published = 1 },
		{ .filter = { (const uint8_t *)"#", 1 }, .qos = 2, .no_local = 1, .retain_handling = 2 },
	};
	static const struct mqtt_subscription subs_v311[] = {
		{ .filter = { (const uint8_t *)"a/b", 3 }, .qos = 0 },
		{ .filter = { (const uint8_t *)"$share/grp/s/+", 14 }, .qos = 2 },
	};
	static const uint32_t sid = 268435455;
	struct mqtt_packet in = { .type = MQTT_SUBSCRIBE }, out;
	struct mqtt_subscribe *sub = &in.subscribe;
	(void)state;

	sub->packet_id = 1;
	sub->topics = subs_v311;
	sub->topic_count = 2;
	roundtrip(MQTT_V311, MQTT_FROM_CLIENT, &in, &out);
	sub->topics = subs;
	sub->topic_count = 4;
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	sub->props.sub_ids = &sid;
	sub->props.sub_id_count = 1;
	add_users(&sub->props);
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);

	/* UNSUBSCRIBE uses the filters only. */
	memset(&in, 0, sizeof in);
	in.type = MQTT_UNSUBSCRIBE;
	in.unsubscribe.packet_id = 2;
	in.unsubscribe.topics = subs_v311;
	in.unsubscribe.topic_count = 2;
	roundtrip(MQTT_V311, MQTT_FROM_CLIENT, &in, &out);
	add_users(&in.unsubscribe.props);
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	{
		struct mqtt_topic_iter it;
		struct mqtt_subscription e;

		mqtt_topic_iter_init(&it, MQTT_UNSUBSCRIBE, &out.unsubscribe);
		assert_int_equal(mqtt_topic_next(&it, &e), 1);
		assert_view(e.filter, "a/b");
		assert_int_equal(mqtt_topic_next(&it, &e), 1);
		assert_view(e.share_name, "grp");
		assert_view(e.topic_filter, "s/+");
		assert_int_equal(e.qos, 0);
		assert_int_equal(mqtt_topic_next(&it, &e), 0);
	}

	/* As many entries as the limit allows. */
	{
		static struct mqtt_subscription many[MQTT_SUBSCRIBE_TOPICS_MAX];

		for (size_t i = 0; i < MQTT_SUBSCRIBE_TOPICS_MAX; i++)
			many[i] = (struct mqtt_subscription){ .filter = V("x/+"), .qos = 1 };
		memset(&in, 0, sizeof in);
		in.type = MQTT_SUBSCRIBE;
		in.subscribe.packet_id = 3;
		in.subscribe.topics = many;
		in.subscribe.topic_count = MQTT_SUBSCRIBE_TOPICS_MAX;
		roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
		assert_int_equal(out.subscribe.topic_count, MQTT_SUBSCRIBE_TOPICS_MAX);
	}
}

static void test_roundtrip_subacks(void **state)
{
	struct mqtt_packet in, out;
	(void)state;

	memset(&in, 0, sizeof in);
	in.type = MQTT_SUBACK;
	in.suback.packet_id = 9;
	in.suback.reasons = (struct cfx_view){ (const uint8_t *)"\x00\x01\x02\x80", 4 };
	roundtrip(MQTT_V311, MQTT_FROM_SERVER, &in, &out);
	in.suback.reasons =
		(struct cfx_view){ (const uint8_t *)"\x00\x01\x02\x80\x83\x87\x8f\x91\x97\x9e\xa1\xa2",
				   12 };
	SET(&in.suback.props, REASON_STRING, reason_string, V("partly"));
	add_users(&in.suback.props);
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);

	memset(&in, 0, sizeof in);
	in.type = MQTT_UNSUBACK;
	in.unsuback.packet_id = 9;
	roundtrip(MQTT_V311, MQTT_FROM_SERVER, &in, &out);
	in.unsuback.reasons = (struct cfx_view){ (const uint8_t *)"\x00\x11\x80\x83\x87\x8f\x91", 7 };
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
	SET(&in.unsuback.props, REASON_STRING, reason_string, V("ok"));
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
}

static void test_roundtrip_disconnect_auth_ping(void **state)
{
	struct mqtt_packet in, out;
	(void)state;

	memset(&in, 0, sizeof in);
	in.type = MQTT_PINGREQ;
	roundtrip(MQTT_V311, MQTT_FROM_CLIENT, &in, &out);
	in.type = MQTT_PINGRESP;
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);

	in.type = MQTT_DISCONNECT;
	roundtrip(MQTT_V311, MQTT_FROM_CLIENT, &in, &out);
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	in.disconnect.reason = MQTT_RC_DISCONNECT_WITH_WILL;
	SET(&in.disconnect.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 0);
	SET(&in.disconnect.props, REASON_STRING, reason_string, V("bye"));
	add_users(&in.disconnect.props);
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	memset(&in.disconnect, 0, sizeof in.disconnect);
	in.disconnect.reason = MQTT_RC_SERVER_MOVED;
	SET(&in.disconnect.props, SERVER_REFERENCE, server_reference, V("b2:1883"));
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);

	memset(&in, 0, sizeof in);
	in.type = MQTT_AUTH;
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	in.auth.reason = MQTT_RC_CONTINUE_AUTHENTICATION;
	SET(&in.auth.props, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-1"));
	SET(&in.auth.props, AUTHENTICATION_DATA, auth_data, V("c=biws"));
	SET(&in.auth.props, REASON_STRING, reason_string, V("more"));
	add_users(&in.auth.props);
	roundtrip(MQTT_V5, MQTT_FROM_CLIENT, &in, &out);
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
	in.auth.reason = MQTT_RC_SUCCESS;
	roundtrip(MQTT_V5, MQTT_FROM_SERVER, &in, &out);
}

/* ------------------------------------------------------------------------
 * Malformed input and the reason codes it gets
 * ------------------------------------------------------------------------ */

#define C MQTT_FROM_CLIENT
#define S MQTT_FROM_SERVER
#define R_MAL MQTT_RC_MALFORMED_PACKET
#define R_PROTO MQTT_RC_PROTOCOL_ERROR

/* CONNECT header bytes for level `lvl` and flags `fl`, keep alive 0. */
#define CONNECT_HDR(lvl, fl) 0x00, 0x04, 'M', 'Q', 'T', 'T', (lvl), (fl), 0x00, 0x00

static void test_bad_fixed_header(void **state)
{
	(void)state;
	/* Reserved type 0; AUTH in 3.1.1 */
	EXPECT_FAIL0(0x00, MQTT_V311, C, R_MAL);
	EXPECT_FAIL0(0x00, MQTT_V5, S, R_MAL);
	EXPECT_FAIL0(0xf0, MQTT_V311, C, R_MAL);
	/* Reserved flags: SUBSCRIBE, UNSUBSCRIBE and PUBREL need 0010; others 0000. */
	EXPECT_FAIL(0x80, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
	EXPECT_FAIL(0x83, MQTT_V5, C, R_MAL, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x00);
	EXPECT_FAIL(0xa0, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x01, 'a');
	EXPECT_FAIL(0x60, MQTT_V311, C, R_MAL, 0x00, 0x01);
	EXPECT_FAIL(0x42, MQTT_V311, C, R_MAL, 0x00, 0x01);
	EXPECT_FAIL0(0xc1, MQTT_V311, C, R_MAL);
	EXPECT_FAIL0(0xe8, MQTT_V5, C, R_MAL);
	EXPECT_FAIL(0x12, 0, C, R_MAL, CONNECT_HDR(4, 0x02), 0x00, 0x00);
	/* PUBLISH: QoS 3; DUP on QoS 0 */
	EXPECT_FAIL(0x36, MQTT_V311, C, R_MAL, 0x00, 0x01, 'a', 0x00, 0x01);
	EXPECT_FAIL(0x38, MQTT_V311, C, R_MAL, 0x00, 0x01, 'a');
	/* Bytes after the packet's end */
	EXPECT_FAIL(0xc0, MQTT_V311, C, R_MAL, 0x00);
	EXPECT_FAIL(0xe0, MQTT_V311, C, R_MAL, 0x00);
	EXPECT_FAIL(0x40, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00);
	EXPECT_FAIL(0xb0, MQTT_V311, S, R_MAL, 0x00, 0x01, 0x00);
	EXPECT_FAIL(0x20, MQTT_V311, S, R_MAL, 0x00, 0x00, 0x00);
	/* Truncated */
	EXPECT_FAIL(0x40, MQTT_V311, C, R_MAL, 0x00);
	EXPECT_FAIL(0x30, MQTT_V311, C, R_MAL, 0x00, 0x05, 'a');
}

static void test_bad_state_and_direction(void **state)
{
	struct mqtt_packet pkt;
	(void)state;

	/* Before CONNECT only CONNECT; after it no second one. */
	EXPECT_FAIL0(0xc0, 0, C, R_PROTO);
	EXPECT_FAIL(0x30, 0, C, R_PROTO, 0x00, 0x01, 'a');
	EXPECT_FAIL0(0xf0, 0, C, R_PROTO);
	EXPECT_OK(0x10, 0, C, &pkt, CONNECT_HDR(4, 0x02), 0x00, 0x00);
	EXPECT_FAIL(0x10, MQTT_V311, C, R_PROTO, CONNECT_HDR(4, 0x02), 0x00, 0x00);
	/* Packets the other side never sends */
	EXPECT_FAIL(0x20, MQTT_V311, C, R_PROTO, 0x00, 0x00);
	EXPECT_FAIL(0x90, MQTT_V311, C, R_PROTO, 0x00, 0x01, 0x00);
	EXPECT_FAIL(0xb0, MQTT_V311, C, R_PROTO, 0x00, 0x01);
	EXPECT_FAIL0(0xd0, MQTT_V311, C, R_PROTO);
	EXPECT_FAIL(0x82, MQTT_V311, S, R_PROTO, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
	EXPECT_FAIL(0xa2, MQTT_V311, S, R_PROTO, 0x00, 0x01, 0x00, 0x01, 'a');
	EXPECT_FAIL0(0xc0, MQTT_V5, S, R_PROTO);
	EXPECT_FAIL(0x10, MQTT_V5, S, R_PROTO, CONNECT_HDR(5, 0x02), 0x00, 0x00, 0x00);
}

static void test_bad_connect(void **state)
{
	struct mqtt_packet pkt;
	struct mqtt_err err;
	struct cfx_view f;
	(void)state;

	/* Protocol versions: 3.1 ("MQIsdp" 3) and unknown levels or names get
	 * 0x84 (3.1.1: return code 1), with the level read for the answer. */
	f = framed(0x10, BYTES(0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c,
			       0x00, 0x01, 'a'));
	assert_int_equal(dec(f.p, f.len, 0, C, &pkt, &err), CFX_EPARSE);
	assert_int_equal(err.reason, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
	assert_int_equal(err.version, 3);
	assert_int_equal(mqtt_connack_v311_code(err.reason), MQTT_V311_REFUSED_PROTOCOL_VERSION);
	f = framed(0x10, BYTES(CONNECT_HDR(6, 0x02), 0x00, 0x00));
	assert_int_equal(dec(f.p, f.len, 0, C, &pkt, &err), CFX_EPARSE);
	assert_int_equal(err.reason, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
	assert_int_equal(err.version, 6);
	EXPECT_FAIL(0x10, 0, C, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, CONNECT_HDR(3, 0x02), 0x00,
		    0x00);
	EXPECT_FAIL(0x10, 0, C, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, 0x00, 0x04, 'M', 'Q', 'T',
		    'X', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00);
	/* The version of a malformed v5 CONNECT is known: answer in v5. */
	f = framed(0x10, BYTES(CONNECT_HDR(5, 0x03), 0x00, 0x00, 0x00));
	assert_int_equal(dec(f.p, f.len, 0, C, &pkt, &err), CFX_EPARSE);
	assert_int_equal(err.reason, R_MAL);
	assert_int_equal(err.version, 5);

	/* Connect Flags */
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x03), 0x00, 0x00);  /* reserved bit */
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x1e), 0x00, 0x01, 'a', 0x00, 0x01, 't',
		    0x00, 0x00); /* will QoS 3 */
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x0a), 0x00, 0x00);  /* QoS, no will */
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(5, 0x22), 0x00, 0x00, 0x00); /* retain, no will */
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x42), 0x00, 0x00, 0x00, 0x01, 'p');
	EXPECT_OK(0x10, 0, C, &pkt, CONNECT_HDR(5, 0x42), 0x00, 0x00, 0x00, 0x00, 0x01, 'p');
	assert_view(pkt.connect.password, "p");
	/* Missing payload fields */
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x82), 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x06), 0x00, 0x00, 0x00, 0x01, 't');
	/* Client identifier: empty needs Clean Session in 3.1.1 (0x85 -> 2). */
	f = framed(0x10, BYTES(CONNECT_HDR(4, 0x00), 0x00, 0x00));
	assert_int_equal(dec(f.p, f.len, 0, C, &pkt, &err), CFX_EPARSE);
	assert_int_equal(err.reason, MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID);
	assert_int_equal(err.version, 4);
	assert_int_equal(mqtt_connack_v311_code(err.reason),
			 MQTT_V311_REFUSED_IDENTIFIER_REJECTED);
	EXPECT_OK(0x10, 0, C, &pkt, CONNECT_HDR(5, 0x00), 0x00, 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x02), 0x00, 0x02, 'a', 0x00);
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x02), 0x00, 0x02, 0xc0, 0xaf);
	/* Will topic: a topic name (0x90), UTF-8 (0x81) */
	EXPECT_FAIL(0x10, 0, C, MQTT_RC_TOPIC_NAME_INVALID, CONNECT_HDR(4, 0x06), 0x00, 0x01, 'c',
		    0x00, 0x03, 'a', '/', '#', 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, MQTT_RC_TOPIC_NAME_INVALID, CONNECT_HDR(4, 0x06), 0x00, 0x01, 'c',
		    0x00, 0x00, 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_MAL, CONNECT_HDR(4, 0x06), 0x00, 0x01, 'c', 0x00, 0x03, 0xed,
		    0xa0, 0x80, 0x00, 0x00);
	/* Protocol name that is not UTF-8 */
	EXPECT_FAIL(0x10, 0, C, R_MAL, 0x00, 0x04, 'M', 0x00, 'T', 'T', 0x04, 0x02, 0x00, 0x00,
		    0x00, 0x00);
	/* Properties: not allowed here, data without method, will props */
	EXPECT_FAIL(0x10, 0, C, R_PROTO, CONNECT_HDR(5, 0x02), 0x03, 0x23, 0x00, 0x01, 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_PROTO, CONNECT_HDR(5, 0x02), 0x04, 0x16, 0x00, 0x01, 'x', 0x00,
		    0x00);
	EXPECT_OK(0x10, 0, C, &pkt, CONNECT_HDR(5, 0x02), 0x08, 0x15, 0x00, 0x01, 'm', 0x16, 0x00,
		  0x01, 'x', 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_PROTO, CONNECT_HDR(5, 0x06), 0x00, 0x00, 0x01, 'c', 0x05, 0x11,
		    0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 't', 0x00, 0x00);
	EXPECT_OK(0x10, 0, C, &pkt, CONNECT_HDR(5, 0x06), 0x00, 0x00, 0x01, 'c', 0x05, 0x18, 0x00,
		  0x00, 0x00, 0x05, 0x00, 0x01, 't', 0x00, 0x00);
	assert_int_equal(pkt.connect.will.props.will_delay_s, 5);
	EXPECT_FAIL(0x10, 0, C, MQTT_RC_TOPIC_NAME_INVALID, CONNECT_HDR(5, 0x06), 0x00, 0x00,
		    0x01, 'c', 0x04, 0x08, 0x00, 0x01, '+', 0x00, 0x01, 't', 0x00, 0x00);
}

static void test_bad_properties(void **state)
{
	struct mqtt_packet pkt;
	(void)state;

	/* A PUBLISH "t" QoS 0 with the property list given. */
#define PUB_PROPS(reason, ...) \
	EXPECT_FAIL(0x30, MQTT_V5, C, (reason), 0x00, 0x01, 't', __VA_ARGS__)
	PUB_PROPS(R_PROTO, 0x04, 0x01, 0x01, 0x01, 0x00);	     /* repeated */
	PUB_PROPS(R_PROTO, 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02); /* repeated alias */
	PUB_PROPS(R_PROTO, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01);	     /* session expiry */
	PUB_PROPS(R_PROTO, 0x02, 0x17, 0x01);			     /* CONNECT-only */
	PUB_PROPS(R_PROTO, 0x02, 0x01, 0x02);			     /* format 2 */
	PUB_PROPS(R_PROTO, 0x03, 0x23, 0x00, 0x00);		     /* alias 0 */
	PUB_PROPS(R_PROTO, 0x02, 0x0b, 0x01);			     /* sub id from a client */
	PUB_PROPS(R_MAL, 0x02, 0x05, 0x00);			     /* unknown id 5 */
	PUB_PROPS(R_MAL, 0x02, 0x00, 0x00);			     /* unknown id 0 */
	PUB_PROPS(R_MAL, 0x03, 0x80, 0x01, 0x00);		     /* id 128 */
	PUB_PROPS(R_MAL, 0x03, 0x81, 0x00, 0x00);		     /* overlong id */
	PUB_PROPS(R_MAL, 0x05, 0x02, 0x00, 0x00);		     /* length past the end */
	PUB_PROPS(R_MAL, 0x02, 0x02, 0x00, 0x00, 0x00);		     /* value past the list */
	PUB_PROPS(R_MAL, 0x05, 0x03, 0x00, 0x02, 0xc0, 0x80);	     /* bad UTF-8 */
	PUB_PROPS(R_MAL, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 0x00); /* U+0000 */
	PUB_PROPS(R_MAL, 0x80, 0x80, 0x80, 0x80, 0x01);		     /* 5-byte length */
	PUB_PROPS(MQTT_RC_TOPIC_NAME_INVALID, 0x04, 0x08, 0x00, 0x01, '#');
#undef PUB_PROPS
	/* From a server, several subscription ids; 0 is a Protocol Error. */
	EXPECT_OK(0x30, MQTT_V5, S, &pkt, 0x00, 0x01, 't', 0x04, 0x0b, 0x01, 0x0b, 0x02);
	assert_int_equal(pkt.publish.props.sub_id_count, 2);
	EXPECT_FAIL(0x30, MQTT_V5, S, R_PROTO, 0x00, 0x01, 't', 0x02, 0x0b, 0x00);
	EXPECT_FAIL(0x30, MQTT_V5, S, R_MAL, 0x00, 0x01, 't', 0x03, 0x0b, 0x80, 0x00);
	/* Values with ranges */
	EXPECT_FAIL(0x10, 0, C, R_PROTO, CONNECT_HDR(5, 0x02), 0x03, 0x21, 0x00, 0x00, 0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_PROTO, CONNECT_HDR(5, 0x02), 0x05, 0x27, 0x00, 0x00, 0x00, 0x00,
		    0x00, 0x00);
	EXPECT_FAIL(0x10, 0, C, R_PROTO, CONNECT_HDR(5, 0x02), 0x02, 0x19, 0x02, 0x00, 0x00);
	EXPECT_FAIL(0x20, MQTT_V5, S, R_PROTO, 0x00, 0x00, 0x02, 0x24, 0x02);
	EXPECT_FAIL(0x20, MQTT_V5, S, R_PROTO, 0x00, 0x00, 0x02, 0x2a, 0x05);
	/* Not allowed in the packet */
	EXPECT_FAIL(0x40, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x00, 0x02, 0x01, 0x00);
	EXPECT_FAIL(0xa2, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x02, 0x0b, 0x01, 0x00, 0x01, 'a');
	EXPECT_FAIL(0xe0, MQTT_V5, C, R_PROTO, 0x00, 0x03, 0x15, 0x00, 0x00);
	/* Repeatable user properties, in order, up to the limit */
	EXPECT_OK(0x40, MQTT_V5, C, &pkt, 0x00, 0x01, 0x00, 0x0d, 0x26, 0x00, 0x01, 'a', 0x00,
		  0x00, 0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b');
	assert_int_equal(pkt.ack.props.user_prop_count, 2);
	{
		/* MQTT_USER_PROPERTIES_MAX + 1 -> Quota exceeded */
		uint8_t body[3 + 1 + 5 * (MQTT_USER_PROPERTIES_MAX + 1) + 2];
		size_t n = 0, list = 5 * (MQTT_USER_PROPERTIES_MAX + 1);
		struct cfx_view f;

		body[n++] = 0x00;
		body[n++] = 0x01;
		body[n++] = 0x00;
		assert_true(list < 16384);
		body[n++] = (uint8_t)(list | 0x80);
		body[n++] = (uint8_t)(list >> 7);
		for (size_t i = 0; i <= MQTT_USER_PROPERTIES_MAX; i++) {
			body[n++] = 0x26;
			body[n++] = 0;
			body[n++] = 0;
			body[n++] = 0;
			body[n++] = 0;
		}
		f = framed(0x40, body, n);
		expect_fail_at(f.p, f.len, MQTT_V5, C, MQTT_RC_QUOTA_EXCEEDED, __LINE__);
		/* One fewer is fine. */
		body[3] = (uint8_t)((list - 5) | 0x80);
		body[4] = (uint8_t)((list - 5) >> 7);
		f = framed(0x40, body, n - 5);
		expect_ok_at(f.p, f.len, MQTT_V5, C, &pkt, __LINE__);
		assert_int_equal(pkt.ack.props.user_prop_count, MQTT_USER_PROPERTIES_MAX);
	}
}

static void test_bad_publish(void **state)
{
	struct mqtt_packet pkt;
	(void)state;

	/* Packet identifier 0 with QoS 1 and 2 */
	EXPECT_FAIL(0x32, MQTT_V311, C, R_PROTO, 0x00, 0x01, 't', 0x00, 0x00);
	EXPECT_FAIL(0x34, MQTT_V5, C, R_PROTO, 0x00, 0x01, 't', 0x00, 0x00, 0x00);
	/* Wildcards and bad UTF-8 in the topic name */
	EXPECT_FAIL(0x30, MQTT_V311, C, MQTT_RC_TOPIC_NAME_INVALID, 0x00, 0x03, 'a', '/', '+');
	EXPECT_FAIL(0x30, MQTT_V5, C, MQTT_RC_TOPIC_NAME_INVALID, 0x00, 0x01, '#', 0x00);
	EXPECT_FAIL(0x30, MQTT_V311, C, R_MAL, 0x00, 0x02, 'a', 0x00);
	EXPECT_FAIL(0x30, MQTT_V311, C, R_MAL, 0x00, 0x03, 0xed, 0xbf, 0xbf);
	EXPECT_FAIL(0x30, MQTT_V311, C, R_MAL, 0x00, 0x02, 0xc1, 0x81);
	/* Empty topic: 3.1.1 never; v5 only with a Topic Alias */
	EXPECT_FAIL(0x30, MQTT_V311, C, MQTT_RC_TOPIC_NAME_INVALID, 0x00, 0x00, 'x');
	EXPECT_FAIL(0x30, MQTT_V5, C, R_PROTO, 0x00, 0x00, 0x00, 'x');
	EXPECT_OK(0x30, MQTT_V5, C, &pkt, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, 'x');
	assert_int_equal(pkt.publish.topic.len, 0);
	assert_int_equal(pkt.publish.props.topic_alias, 1);
	assert_view(pkt.publish.payload, "x");
	/* Control characters are the broker's business, not the codec's */
	EXPECT_OK(0x30, MQTT_V311, C, &pkt, 0x00, 0x02, 'a', 0x01);
}

static void test_bad_acks(void **state)
{
	(void)state;
	EXPECT_FAIL(0x40, MQTT_V311, C, R_PROTO, 0x00, 0x00);
	EXPECT_FAIL(0x62, MQTT_V5, S, R_PROTO, 0x00, 0x00);
	EXPECT_FAIL(0x40, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x92);
	EXPECT_FAIL(0x50, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x01);
	EXPECT_FAIL(0x62, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x10);
	EXPECT_FAIL(0x70, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x80);
	EXPECT_FAIL(0x70, MQTT_V5, C, R_MAL, 0x00, 0x01, 0x00, 0x03, 0x1f, 0x00);
	/* CONNACK */
	EXPECT_FAIL(0x20, MQTT_V311, S, R_PROTO, 0x00, 0x06);
	EXPECT_FAIL(0x20, MQTT_V311, S, R_PROTO, 0x01, 0x05);
	EXPECT_FAIL(0x20, MQTT_V311, S, R_MAL, 0x02, 0x00);
	EXPECT_FAIL(0x20, MQTT_V5, S, R_PROTO, 0x00, 0x10, 0x00);
	EXPECT_FAIL(0x20, MQTT_V5, S, R_PROTO, 0x01, 0x87, 0x00);
	EXPECT_FAIL(0x20, MQTT_V5, S, R_MAL, 0x00, 0x00);
	/* SUBACK / UNSUBACK */
	EXPECT_FAIL(0x90, MQTT_V311, S, R_PROTO, 0x00, 0x01);
	EXPECT_FAIL(0x90, MQTT_V311, S, R_PROTO, 0x00, 0x01, 0x03);
	EXPECT_FAIL(0x90, MQTT_V311, S, R_PROTO, 0x00, 0x01, 0x87);
	EXPECT_FAIL(0x90, MQTT_V311, S, R_PROTO, 0x00, 0x00, 0x00);
	EXPECT_FAIL(0x90, MQTT_V5, S, R_PROTO, 0x00, 0x01, 0x00, 0x11);
	EXPECT_FAIL(0x90, MQTT_V5, S, R_PROTO, 0x00, 0x01, 0x00);
	EXPECT_FAIL(0xb0, MQTT_V5, S, R_PROTO, 0x00, 0x01, 0x00, 0x02);
	EXPECT_FAIL(0xb0, MQTT_V5, S, R_PROTO, 0x00, 0x01, 0x00);
	/* DISCONNECT and AUTH */
	EXPECT_FAIL(0xe0, MQTT_V5, C, R_PROTO, 0x84);
	EXPECT_FAIL(0xe0, MQTT_V5, S, R_PROTO, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00);
	EXPECT_FAIL(0xf0, MQTT_V5, C, R_PROTO, 0x80, 0x00);
	EXPECT_FAIL(0xf0, MQTT_V5, C, R_PROTO, 0x18, 0x00);
	EXPECT_FAIL(0xf0, MQTT_V5, C, R_PROTO, 0x18);
	EXPECT_FAIL(0xf0, MQTT_V5, C, R_PROTO, 0x18, 0x03, 0x16, 0x00, 0x00);
}

static void test_bad_subscribe(void **state)
{
	struct mqtt_packet pkt;
	(void)state;

	/* No entry; packet identifier 0 */
	EXPECT_FAIL(0x82, MQTT_V311, C, R_PROTO, 0x00, 0x01);
	EXPECT_FAIL(0x82, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x00);
	EXPECT_FAIL(0xa2, MQTT_V311, C, R_PROTO, 0x00, 0x01);
	EXPECT_FAIL(0xa2, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x00);
	EXPECT_FAIL(0x82, MQTT_V311, C, R_PROTO, 0x00, 0x00, 0x00, 0x01, 'a', 0x00);
	EXPECT_FAIL(0xa2, MQTT_V311, C, R_PROTO, 0x00, 0x00, 0x00, 0x01, 'a');
	/* Options byte missing or reserved bits */
	EXPECT_FAIL(0x82, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x01, 'a');
	EXPECT_FAIL(0x82, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x04);
	EXPECT_FAIL(0x82, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x80);
	EXPECT_FAIL(0x82, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x03);
	EXPECT_FAIL(0x82, MQTT_V5, C, R_MAL, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x40);
	EXPECT_FAIL(0x82, MQTT_V5, C, R_MAL, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x80);
	EXPECT_FAIL(0x82, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x03);
	EXPECT_FAIL(0x82, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30);
	EXPECT_OK(0x82, MQTT_V5, C, &pkt, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x2e);
	/* No Local on a shared subscription */
	EXPECT_FAIL(0x82, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x00, 0x00, 0x0a, '$', 's', 'h', 'a',
		    'r', 'e', '/', 'g', '/', 'a', 0x04);
	EXPECT_OK(0x82, MQTT_V311, C, &pkt, 0x00, 0x01, 0x00, 0x0a, '$', 's', 'h', 'a', 'r', 'e',
		  '/', 'g', '/', 'a', 0x01);
	/* Topic filters */
	EXPECT_FAIL(0x82, MQTT_V311, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x00);
	EXPECT_FAIL(0x82, MQTT_V311, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x03, 'a',
		    '/', 'b', 0x00, 0x00, 0x05, 'a', '/', '#', '/', 'b', 0x00);
	EXPECT_FAIL(0x82, MQTT_V5, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x02,
		    'a', '+', 0x00);
	EXPECT_FAIL(0xa2, MQTT_V5, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x02,
		    '#', 'a');
	EXPECT_FAIL(0xa2, MQTT_V311, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x08, '$',
		    's', 'h', 'a', 'r', 'e', '/', 'g');
	EXPECT_FAIL(0x82, MQTT_V5, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x09,
		    '$', 's', 'h', 'a', 'r', 'e', '/', '/', 'a', 0x00);
	EXPECT_FAIL(0x82, MQTT_V5, C, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x0b,
		    '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '+', '/', 'a', 0x00);
	EXPECT_FAIL(0x82, MQTT_V311, C, R_MAL, 0x00, 0x01, 0x00, 0x02, 0xc0, 0x80, 0x00);
	/* Two subscription identifiers */
	EXPECT_FAIL(0x82, MQTT_V5, C, R_PROTO, 0x00, 0x01, 0x04, 0x0b, 0x01, 0x0b, 0x02, 0x00,
		    0x01, 'a', 0x00);
	/* More entries than MQTT_SUBSCRIBE_TOPICS_MAX: Quota exceeded */
	{
		uint8_t body[2 + 4 * (MQTT_SUBSCRIBE_TOPICS_MAX + 1)];
		size_t n = 0;
		struct cfx_view f;

		body[n++] = 0x00;
		body[n++] = 0x01;
		for (size_t i = 0; i <= MQTT_SUBSCRIBE_TOPICS_MAX; i++) {
			body[n++] = 0x00;
			body[n++] = 0x01;
			body[n++] = 'a';
			body[n++] = 0x00;
		}
		f = framed(0x82, body, n);
		expect_fail_at(f.p, f.len, MQTT_V311, C, MQTT_RC_QUOTA_EXCEEDED, __LINE__);
		f = framed(0x82, body, n - 4);
		expect_ok_at(f.p, f.len, MQTT_V311, C, &pkt, __LINE__);
		assert_int_equal(pkt.subscribe.topic_count, MQTT_SUBSCRIBE_TOPICS_MAX);
	}
}

/* The decoder's views lie inside the packet it was handed. */
static void test_views_in_packet(void **state)
{
	struct mqtt_packet pkt;
	struct mqtt_err err;
	uint8_t *p = copy_exact(connect_v311, sizeof connect_v311);
	(void)state;

	assert_int_equal(mqtt_decode(p, sizeof connect_v311, 0, C, &pkt, &err), 0);
	assert_ptr_equal(pkt.connect.client_id.p, p + 14);
	assert_ptr_equal(pkt.connect.password.p, p + sizeof connect_v311 - 2);
	p = copy_exact(publish_v5, sizeof publish_v5);
	assert_int_equal(mqtt_decode(p, sizeof publish_v5, MQTT_V5, C, &pkt, &err), 0);
	assert_ptr_equal(pkt.publish.topic.p, p + 4);
	assert_ptr_equal(pkt.publish.props.raw.p, p + 10);
	assert_ptr_equal(pkt.publish.payload.p, p + sizeof publish_v5 - 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_varint, teardown),
		cmocka_unit_test_teardown(test_frame_check, teardown),
		cmocka_unit_test_teardown(test_remaining_length_edges, teardown),
		cmocka_unit_test_teardown(test_utf8, teardown),
		cmocka_unit_test_teardown(test_topic_rules, teardown),
		cmocka_unit_test_teardown(test_tables, teardown),
		cmocka_unit_test_teardown(test_connect_v311_vector, teardown),
		cmocka_unit_test_teardown(test_publish_v5_vector, teardown),
		cmocka_unit_test_teardown(test_subscribe_vectors, teardown),
		cmocka_unit_test_teardown(test_short_forms, teardown),
		cmocka_unit_test_teardown(test_roundtrip_connect, teardown),
		cmocka_unit_test_teardown(test_roundtrip_connack, teardown),
		cmocka_unit_test_teardown(test_roundtrip_publish, teardown),
		cmocka_unit_test_teardown(test_forward_props, teardown),
		cmocka_unit_test_teardown(test_roundtrip_acks, teardown),
		cmocka_unit_test_teardown(test_roundtrip_subscribe, teardown),
		cmocka_unit_test_teardown(test_roundtrip_subacks, teardown),
		cmocka_unit_test_teardown(test_roundtrip_disconnect_auth_ping, teardown),
		cmocka_unit_test_teardown(test_bad_fixed_header, teardown),
		cmocka_unit_test_teardown(test_bad_state_and_direction, teardown),
		cmocka_unit_test_teardown(test_bad_connect, teardown),
		cmocka_unit_test_teardown(test_bad_properties, teardown),
		cmocka_unit_test_teardown(test_bad_publish, teardown),
		cmocka_unit_test_teardown(test_bad_acks, teardown),
		cmocka_unit_test_teardown(test_bad_subscribe, teardown),
		cmocka_unit_test_teardown(test_views_in_packet, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
