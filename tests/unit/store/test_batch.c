/* Unit tests for src/store/batch.c: Conflux messages in Kafka RecordBatch v2 form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "store/batch.h"
#include "store/format.h"

#define V(s) CFX_VIEW_STR(s)
#define MSGS_MAX 16

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* A decoded batch: the header reader and every message, until the first error. */
struct decoded {
	struct cfx_batch_rd b;
	struct cfx_msg_view m[MSGS_MAX];
	int n;		 /* messages decoded */
	int rc;		 /* result of open, or of the last next (0 = clean end) */
	const char *why; /* reason of a failure */
};

static void decode(struct decoded *d, const uint8_t *p, size_t len, int verify_crc)
{
	memset(d, 0, sizeof *d);
	d->rc = cfx_batch_open(&d->b, p, len, verify_crc, &d->why);
	if (d->rc)
		return;
	while (d->n < MSGS_MAX) {
		d->rc = cfx_batch_next(&d->b, &d->m[d->n], &d->why);
		if (d->rc != 1)
			return;
		d->n++;
	}
	fail_msg("more than %d messages", MSGS_MAX);
}

/* Decodes `p` and requires a failure with `want_rc` after `want_n` good messages. */
static void expect_failure(const uint8_t *p, size_t len, int want_rc, int want_n)
{
	struct decoded *d = cfx_malloc(sizeof *d);

	decode(d, p, len, 1);
	if (d->rc != want_rc || d->n != want_n)
		fail_msg("rc %s after %d messages (%s); expected %s after %d",
			 cfx_err_name(d->rc), d->n, d->why ? d->why : "-", cfx_err_name(want_rc),
			 want_n);
	assert_non_null(d->why);
	cfx_free(d);
}

static void assert_view(struct cfx_view v, const void *p, size_t len)
{
	assert_int_equal(v.len, len);
	if (len)
		assert_memory_equal(v.p, p, len);
}

/* The user properties of `m`, as cfx_msg_view_next_prop yields them. */
static int user_props(const struct cfx_msg_view *m, struct cfx_prop *out, int max)
{
	size_t cursor = 0;
	int n = 0;

	while (n < max && cfx_msg_view_next_prop(m, &cursor, &out[n]))
		n++;
	/* The end is stable. */
	struct cfx_prop extra;
	assert_int_equal(cfx_msg_view_next_prop(m, &cursor, &extra), 0);
	return n;
}

/* ---- Hand-built batches: our own writer of Kafka's format, field by field ---- */

/* Starts a RecordBatch v2 header; kb_end back-patches batchLength and the CRC. */
static void kb_begin(struct cfx_writer *wr, uint32_t count, uint32_t last_offset_delta,
		     int64_t base_ts)
{
	cfx_writer_init(wr, 256);
	cfx_write_be64(wr, 0);			/* baseOffset */
	cfx_write_be32(wr, 0);			/* batchLength (patched) */
	cfx_write_be32(wr, 0);			/* partitionLeaderEpoch */
	cfx_write_u8(wr, 2);			/* magic */
	cfx_write_be32(wr, 0);			/* crc (patched) */
	cfx_write_be16(wr, 0);			/* attributes */
	cfx_write_be32(wr, last_offset_delta);	/* lastOffsetDelta */
	cfx_write_be64(wr, (uint64_t)base_ts);	/* baseTimestamp */
	cfx_write_be64(wr, (uint64_t)base_ts);	/* maxTimestamp */
	cfx_write_be64(wr, UINT64_MAX);		/* producerId -1 */
	cfx_write_be16(wr, UINT16_MAX);		/* producerEpoch -1 */
	cfx_write_be32(wr, UINT32_MAX);		/* baseSequence -1 */
	cfx_write_be32(wr, count);		/* recordsCount */
	assert_int_equal(wr->len, CFX_KBATCH_HEADER_BYTES);
}

static void kb_seal(uint8_t *p, size_t len)
{
	cfx_store_be32(p + 8, (uint32_t)(len - 12));
	cfx_store_be32(p + 17, cfx_crc32c(0, p + 21, len - 21));
}

static void kb_end(struct cfx_writer *wr)
{
	kb_seal(wr->p, wr->len);
}

/* A record body under construction (everything after its length prefix). */
static void rec_begin(struct cfx_writer *r, int64_t ts_delta, int64_t offset_delta)
{
	cfx_writer_init(r, 64);
	cfx_write_u8(r, 0);			/* attributes */
	cfx_write_varint64(r, ts_delta);	/* timestampDelta */
	cfx_write_varint64(r, offset_delta);	/* offsetDelta */
}

/* A length-prefixed field of `len` bytes at `p`; a negative `len` writes just the length
 * (-1 = null). */
static void put_field(struct cfx_writer *r, int64_t len, const char *p)
{
	cfx_write_varint64(r, len);
	if (len > 0)
		cfx_write_bytes(r, p, (size_t)len);
}

static void put_str(struct cfx_writer *r, const char *s)
{
	put_field(r, (int64_t)strlen(s), s);
}

/* Appends the record `r` to the batch with its true length, and frees it. */
static void rec_end(struct cfx_writer *wr, struct cfx_writer *r)
{
	cfx_write_varint64(wr, (int64_t)r->len);
	cfx_write_bytes(wr, r->p, r->len);
	cfx_writer_free(r);
}

/* A minimal valid record: key "k", value "v", no headers. */
static void rec_plain(struct cfx_writer *wr, int64_t offset_delta)
{
	struct cfx_writer r;
	rec_begin(&r, 0, offset_delta);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, 0);
	rec_end(wr, &r);
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

static const struct cfx_prop props0[] = {
	{ { (const uint8_t *)"color", 5 }, { (const uint8_t *)"red", 3 } },
	{ { (const uint8_t *)"size", 4 }, { (const uint8_t *)"XL", 2 } },
	{ { (const uint8_t *)"color", 5 }, { (const uint8_t *)"blue", 4 } }, /* repeated name */
};
static const struct cfx_prop props2[] = {
	{ { (const uint8_t *)"empty", 5 }, { NULL, 0 } },
	{ { (const uint8_t *)"bin", 3 }, { (const uint8_t *)"\0\1\2\377", 4 } },
};

static void test_round_trip(void **state)
{
	static uint8_t big[3000];
	struct cfx_msg msgs[5];
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct decoded *d = cfx_malloc(sizeof *d);
	struct cfx_prop props[8];
	(void)state;

	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 13);
	memset(msgs, 0, sizeof msgs);
	/* Everything set. */
	msgs[0] = (struct cfx_msg){ .key = V("k1 k2"), .body = V("hello"), .tag = V("TagA"),
				    .msg_id = V("ID-0"), .born_ms = 1000, .flag = 7,
				    .props = props0, .prop_count = 3 };
	/* Nothing set: null key, null body (a tombstone), born earlier than the first. */
	msgs[1] = (struct cfx_msg){ .key_null = 1, .body_null = 1, .born_ms = 900 };
	/* Empty but present key and body, largest flag, properties with odd values. */
	msgs[2] = (struct cfx_msg){ .key = V(""), .body = V(""), .tag = V("TagA"),
				    .born_ms = 5000, .flag = UINT32_MAX, .props = props2,
				    .prop_count = 2 };
	/* A large binary body and a key set while key_null wins. */
	msgs[3] = (struct cfx_msg){ .key = V("ignored"), .key_null = 1,
				    .body = { big, sizeof big }, .msg_id = V("ID-3"),
				    .born_ms = 1000 };
	/* Negative born time (before the epoch) is representable. */
	msgs[4] = (struct cfx_msg){ .key = V("k"), .body = V("b"), .born_ms = -50 };

	cfx_writer_init(&wr, 16);
	cfx_write_bytes(&wr, "prefix", 6); /* the batch is appended after existing bytes */
	assert_int_equal(cfx_batch_encode(&wr, msgs, 5, &info), 0);
	const uint8_t *p = wr.p + 6;
	size_t len = wr.len - 6;
	assert_memory_equal(wr.p, "prefix", 6);
	assert_int_equal(cfx_batch_records_count(p), 5);

	assert_int_equal(info.count, 5);
	assert_int_equal(info.tag_hash, CFX_TAG_HASH_MIXED);
	assert_int_equal(info.has_keys, 1);

	decode(d, p, len, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->n, 5);
	assert_true(d->b.base_offset == 0);
	assert_true(d->b.base_ts == 1000);  /* the first message's */
	assert_true(d->b.max_ts == 5000);   /* the largest */
	assert_int_equal(d->b.attributes, 0);
	assert_int_equal(d->b.count, 5);
	assert_int_equal(d->b.leader_epoch, 0);
	assert_true(d->b.producer_id == -1);
	assert_int_equal(d->b.producer_epoch, -1);
	assert_int_equal(d->b.base_sequence, -1);

	size_t rec_max = 0;
	for (int i = 0; i < 5; i++) {
		assert_true(d->m[i].offset == (uint64_t)i);
		assert_true(d->m[i].born_ms == msgs[i].born_ms);
		assert_true(d->m[i].store_ms == 0);
		if (d->m[i].record_bytes > rec_max)
			rec_max = d->m[i].record_bytes;
	}
	assert_int_equal(info.record_bytes_max, rec_max);

	const struct cfx_msg_view *m = &d->m[0];
	assert_int_equal(m->key_null, 0);
	assert_view(m->key, "k1 k2", 5);
	assert_int_equal(m->body_null, 0);
	assert_view(m->body, "hello", 5);
	assert_view(m->tag, "TagA", 4);
	assert_view(m->msg_id, "ID-0", 4);
	assert_int_equal(m->flag, 7);
	assert_int_equal(m->header_count, 6); /* TAGS, UNIQ_KEY, FLAG + 3 */
	assert_int_equal(user_props(m, props, 8), 3);
	for (int i = 0; i < 3; i++) {
		assert_true(cfx_view_eq(props[i].name, props0[i].name));
		assert_true(cfx_view_eq(props[i].value, props0[i].value));
	}

	m = &d->m[1];
	assert_int_equal(m->key_null, 1);
	assert_int_equal(m->key.len, 0);
	assert_int_equal(m->body_null, 1);
	assert_int_equal(m->body.len, 0);
	assert_int_equal(m->tag.len, 0);
	assert_int_equal(m->msg_id.len, 0);
	assert_int_equal(m->flag, 0);
	assert_int_equal(m->header_count, 0);
	assert_int_equal(user_props(m, props, 8), 0);

	m = &d->m[2];
	assert_int_equal(m->key_null, 0);
	assert_int_equal(m->key.len, 0);
	assert_int_equal(m->body_null, 0);
	assert_int_equal(m->body.len, 0);
	assert_view(m->tag, "TagA", 4);
	assert_int_equal(m->msg_id.len, 0);
	assert_int_equal(m->flag, UINT32_MAX);
	assert_int_equal(m->header_count, 4);
	assert_int_equal(user_props(m, props, 8), 2);
	assert_view(props[0].name, "empty", 5);
	assert_int_equal(props[0].value.len, 0);
	assert_view(props[1].name, "bin", 3);
	assert_view(props[1].value, "\0\1\2\377", 4);

	m = &d->m[3];
	assert_int_equal(m->key_null, 1);
	assert_int_equal(m->key.len, 0);
	assert_view(m->body, big, sizeof big);
	assert_view(m->msg_id, "ID-3", 4);
	assert_int_equal(m->header_count, 1);
	/* The big record is the largest: a 2-byte length prefix plus its body. */
	assert_int_equal(info.record_bytes_max, m->record_bytes);

	m = &d->m[4];
	assert_view(m->key, "k", 1);
	assert_view(m->body, "b", 1);

	/* The records fill the batch exactly. */
	size_t sum = 0;
	for (int i = 0; i < 5; i++)
		sum += d->m[i].record_bytes;
	assert_int_equal(CFX_KBATCH_HEADER_BYTES + sum, len);

	cfx_writer_free(&wr);
	cfx_free(d);
}

/* The store assigns offsets after encoding; the CRC does not cover baseOffset. */
static void test_set_base_offset(void **state)
{
	struct cfx_msg msgs[3] = {
		{ .key = V("a"), .body = V("1"), .born_ms = 10 },
		{ .key = V("b"), .body = V("2"), .born_ms = 11 },
		{ .key = V("c"), .body = V("3"), .born_ms = 12 },
	};
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct decoded *d = cfx_malloc(sizeof *d);
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, 3, &info), 0);
	uint32_t crc = cfx_load_be32(wr.p + CFX_KBATCH_OFF_CRC);
	cfx_batch_set_base_offset(wr.p, 1ull << 40);
	assert_true(cfx_load_be64(wr.p) == 1ull << 40);
	assert_int_equal(cfx_load_be32(wr.p + CFX_KBATCH_OFF_CRC), crc);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->n, 3);
	for (int i = 0; i < 3; i++)
		assert_true(d->m[i].offset == (1ull << 40) + (uint64_t)i);
	assert_true(d->m[2].born_ms == 12);
	cfx_writer_free(&wr);
	cfx_free(d);
}

static void test_single_message(void **state)
{
	struct cfx_msg m = { .key_null = 1, .body = V("only"), .born_ms = 77 };
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct decoded *d = cfx_malloc(sizeof *d);
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, &m, 1, &info), 0);
	assert_int_equal(info.count, 1);
	assert_int_equal(info.tag_hash, CFX_TAG_HASH_NONE);
	assert_int_equal(info.has_keys, 0);
	/* One record: the batch is the header plus that record. */
	assert_int_equal(info.record_bytes_max, wr.len - CFX_KBATCH_HEADER_BYTES);
	assert_int_equal(cfx_load_be32(wr.p + CFX_KBATCH_OFF_LAST_OFFSET_DELTA), 0);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->n, 1);
	assert_true(d->b.base_ts == 77 && d->b.max_ts == 77);
	assert_view(d->m[0].body, "only", 4);
	cfx_writer_free(&wr);
	cfx_free(d);
}

static void test_timestamps_out_of_order(void **state)
{
	struct cfx_msg msgs[4] = {
		{ .body = V("a"), .born_ms = 1700000000500 },
		{ .body = V("b"), .born_ms = 1700000000100 },
		{ .body = V("c"), .born_ms = 1700000009000 },
		{ .body = V("d"), .born_ms = 1700000000000 },
	};
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct decoded *d = cfx_malloc(sizeof *d);
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, 4, &info), 0);
	/* Header fields as Kafka defines them. */
	assert_true((int64_t)cfx_load_be64(wr.p + CFX_KBATCH_OFF_BASE_TIMESTAMP) == 1700000000500);
	assert_true((int64_t)cfx_load_be64(wr.p + CFX_KBATCH_OFF_MAX_TIMESTAMP) == 1700000009000);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, 0);
	for (int i = 0; i < 4; i++)
		assert_true(d->m[i].born_ms == msgs[i].born_ms);
	cfx_writer_free(&wr);
	cfx_free(d);
}

static uint32_t encode_tag_hash(const struct cfx_msg *msgs, uint32_t n)
{
	struct cfx_batch_info info;
	struct cfx_writer wr;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, n, &info), 0);
	cfx_writer_free(&wr);
	return info.tag_hash;
}

static void test_tag_hash(void **state)
{
	struct cfx_msg a = { .body = V("x"), .tag = V("TagA") };
	struct cfx_msg b = { .body = V("x"), .tag = V("TagB") };
	struct cfx_msg none = { .body = V("x") };
	uint32_t ha = cfx_tag_hash(V("TagA"));
	(void)state;

	assert_true(ha >= 2);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ none }, 1), CFX_TAG_HASH_NONE);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ none, none, none }, 3),
			 CFX_TAG_HASH_NONE);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ a }, 1), ha);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ a, a, a }, 3), ha);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ a, b }, 2), CFX_TAG_HASH_MIXED);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ a, a, b }, 3), CFX_TAG_HASH_MIXED);
	/* Some tagged and some not is mixed too, whichever comes first. */
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ a, none }, 2), CFX_TAG_HASH_MIXED);
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ none, a }, 2), CFX_TAG_HASH_MIXED);
	/* Once mixed, stays mixed even if later tags agree with the first. */
	assert_int_equal(encode_tag_hash((struct cfx_msg[]){ a, b, a }, 3), CFX_TAG_HASH_MIXED);
}

static int encode_has_keys(struct cfx_msg m)
{
	struct cfx_batch_info info;
	struct cfx_writer wr;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, &m, 1, &info), 0);
	cfx_writer_free(&wr);
	return info.has_keys;
}

static void test_has_keys(void **state)
{
	(void)state;
	assert_int_equal(encode_has_keys((struct cfx_msg){ .body = V("x"), .key_null = 1 }), 0);
	assert_int_equal(encode_has_keys((struct cfx_msg){ .body = V("x"), .key = V("") }), 0);
	assert_int_equal(encode_has_keys((struct cfx_msg){ .body = V("x"), .key = V("k") }), 1);
	assert_int_equal(encode_has_keys((struct cfx_msg){ .body = V("x"), .key = V("k"),
							    .key_null = 1 }),
			 0);
	assert_int_equal(encode_has_keys((struct cfx_msg){ .body = V("x"), .key_null = 1,
							    .msg_id = V("id") }),
			 1);
	/* A tag or a property is not a key. */
	assert_int_equal(encode_has_keys((struct cfx_msg){ .body = V("x"), .key_null = 1,
							    .tag = V("t"), .props = props0,
							    .prop_count = 1 }),
			 0);
	/* One keyed message among unkeyed ones is enough. */
	struct cfx_msg two[2] = { { .body = V("x"), .key_null = 1 },
				  { .body = V("y"), .key = V("k") } };
	struct cfx_batch_info info;
	struct cfx_writer wr;
	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, two, 2, &info), 0);
	assert_int_equal(info.has_keys, 1);
	cfx_writer_free(&wr);
}

static void test_encode_limits(void **state)
{
	struct cfx_prop *many = cfx_calloc(CFX_MSG_PROPS_MAX + 1, sizeof *many);
	struct cfx_msg m = { .key = V("k"), .body = V("b"), .tag = V("t"), .msg_id = V("i"),
			     .flag = 1, .props = many };
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct decoded *d = cfx_malloc(sizeof *d);
	struct cfx_prop prop;
	size_t cursor = 0;
	int n = 0;
	(void)state;

	for (uint32_t i = 0; i <= CFX_MSG_PROPS_MAX; i++)
		many[i] = (struct cfx_prop){ V("p"), V("v") };

	cfx_writer_init(&wr, 0);
	/* An empty batch. */
	assert_int_equal(cfx_batch_encode(&wr, &m, 0, &info), CFX_EINVAL);
	assert_int_equal(wr.len, 0);
	/* Too many properties: nothing is written. */
	m.prop_count = CFX_MSG_PROPS_MAX + 1;
	assert_int_equal(cfx_batch_encode(&wr, &m, 1, &info), CFX_E2BIG);
	assert_int_equal(wr.len, 0);
	/* The most a message can carry: its headers fill the decoder's limit exactly. */
	m.prop_count = CFX_MSG_PROPS_MAX - 3;
	assert_int_equal(cfx_batch_encode(&wr, &m, 1, &info), 0);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->n, 1);
	assert_int_equal(d->m[0].header_count, CFX_MSG_PROPS_MAX);
	while (cfx_msg_view_next_prop(&d->m[0], &cursor, &prop))
		n++;
	assert_int_equal(n, CFX_MSG_PROPS_MAX - 3);
	cfx_writer_free(&wr);
	cfx_free(many);
	cfx_free(d);
}

/* An independent walk of the encoder's bytes, following Kafka's spec only. */
static void test_encoding_follows_kafka_spec(void **state)
{
	static const struct cfx_prop up[] = { { { (const uint8_t *)"u", 1 },
						 { (const uint8_t *)"vv", 2 } } };
	struct cfx_msg msgs[2] = {
		{ .key = V("key"), .body = V("body"), .tag = V("T"), .msg_id = V("M"),
		  .born_ms = 1000, .flag = 42, .props = up, .prop_count = 1 },
		{ .key_null = 1, .body_null = 1, .born_ms = 997 },
	};
	struct cfx_batch_info info;
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, 2, &info), 0);

	struct cfx_reader rd = cfx_reader_make(wr.p, wr.len);
	assert_true(cfx_read_be64(&rd) == 0);			/* baseOffset */
	assert_int_equal(cfx_read_be32(&rd), wr.len - 12);	/* batchLength */
	assert_int_equal(cfx_read_be32(&rd), 0);		/* partitionLeaderEpoch */
	assert_int_equal(cfx_read_u8(&rd), 2);			/* magic */
	assert_int_equal(cfx_read_be32(&rd), cfx_crc32c(0, wr.p + 21, wr.len - 21)); /* crc */
	assert_int_equal(cfx_read_be16(&rd), 0);		/* attributes */
	assert_int_equal(cfx_read_be32(&rd), 1);		/* lastOffsetDelta */
	assert_true(cfx_read_be64(&rd) == 1000);		/* baseTimestamp */
	assert_true(cfx_read_be64(&rd) == 1000);		/* maxTimestamp */
	assert_true(cfx_read_be64(&rd) == UINT64_MAX);		/* producerId */
	assert_int_equal(cfx_read_be16(&rd), 0xffff);		/* producerEpoch */
	assert_int_equal(cfx_read_be32(&rd), 0xffffffffu);	/* baseSequence */
	assert_int_equal(cfx_read_be32(&rd), 2);		/* recordsCount */

	/* Record 0 */
	int64_t len0 = cfx_read_varint64(&rd);
	size_t start = rd.pos;
	assert_int_equal(cfx_read_u8(&rd), 0);		/* attributes */
	assert_true(cfx_read_varint64(&rd) == 0);	/* timestampDelta */
	assert_true(cfx_read_varint64(&rd) == 0);	/* offsetDelta */
	assert_true(cfx_read_varint64(&rd) == 3);	/* keyLength */
	assert_memory_equal(cfx_read_bytes(&rd, 3, NULL), "key", 3);
	assert_true(cfx_read_varint64(&rd) == 4);	/* valueLength */
	assert_memory_equal(cfx_read_bytes(&rd, 4, NULL), "body", 4);
	assert_true(cfx_read_varint64(&rd) == 4);	/* headers: TAGS, UNIQ_KEY, FLAG, u */
	static const char *const names[] = { "TAGS", "UNIQ_KEY", "FLAG", "u" };
	static const char *const values[] = { "T", "M", "42", "vv" };
	for (int i = 0; i < 4; i++) {
		size_t nl = strlen(names[i]), vl = strlen(values[i]);
		assert_true(cfx_read_varint64(&rd) == (int64_t)nl);
		assert_memory_equal(cfx_read_bytes(&rd, nl, NULL), names[i], nl);
		assert_true(cfx_read_varint64(&rd) == (int64_t)vl);
		assert_memory_equal(cfx_read_bytes(&rd, vl, NULL), values[i], vl);
	}
	assert_true(len0 == (int64_t)(rd.pos - start));
	assert_int_equal(info.record_bytes_max >= (size_t)len0 + 1, 1);

	/* Record 1: nulls are length -1 (zig-zag 0x01) */
	int64_t len1 = cfx_read_varint64(&rd);
	start = rd.pos;
	assert_int_equal(cfx_read_u8(&rd), 0);
	assert_true(cfx_read_varint64(&rd) == -3);	/* born before the base */
	assert_true(cfx_read_varint64(&rd) == 1);
	assert_int_equal(cfx_read_u8(&rd), 0x01);	/* null key */
	assert_int_equal(cfx_read_u8(&rd), 0x01);	/* null value */
	assert_int_equal(cfx_read_u8(&rd), 0x00);	/* no headers */
	assert_true(len1 == (int64_t)(rd.pos - start));
	assert_int_equal(rd.err, 0);
	assert_int_equal(cfx_reader_left(&rd), 0);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Properties
 * ------------------------------------------------------------------------ */

/* Reserved headers are skipped wherever they appear; user headers come in order. */
static void test_next_prop_skips_reserved(void **state)
{
	struct cfx_writer wr, r;
	struct decoded *d = cfx_malloc(sizeof *d);
	struct cfx_prop props[8];
	(void)state;

	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_field(&r, -1, NULL);
	put_str(&r, "v");
	cfx_write_varint64(&r, 7);
	put_str(&r, "first");
	put_str(&r, "1");
	put_str(&r, "TAGS");
	put_str(&r, "tg");
	put_str(&r, "second");
	put_field(&r, -1, NULL); /* a null header value is allowed */
	put_str(&r, "FLAG");
	put_str(&r, "00042");
	put_str(&r, "UNIQ_KEY");
	put_str(&r, "uid");
	put_str(&r, "");	 /* an empty (not null) name */
	put_str(&r, "e");
	put_str(&r, "tags"); /* reserved names are case-sensitive */
	put_str(&r, "lower");
	rec_end(&wr, &r);
	kb_end(&wr);

	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->n, 1);
	const struct cfx_msg_view *m = &d->m[0];
	assert_view(m->tag, "tg", 2);
	assert_view(m->msg_id, "uid", 3);
	assert_int_equal(m->flag, 42);
	assert_int_equal(m->header_count, 7);
	assert_int_equal(user_props(m, props, 8), 4);
	assert_view(props[0].name, "first", 5);
	assert_view(props[0].value, "1", 1);
	assert_view(props[1].name, "second", 6);
	assert_null(props[1].value.p);
	assert_int_equal(props[1].value.len, 0);
	assert_int_equal(props[2].name.len, 0);
	assert_view(props[2].value, "e", 1);
	assert_view(props[3].name, "tags", 4);
	assert_view(props[3].value, "lower", 5);
	cfx_writer_free(&wr);
	cfx_free(d);
}

/* FLAG text that is not a uint32 in decimal reads as 0. */
static void test_flag_parsing(void **state)
{
	static const struct {
		const char *text;
		uint32_t flag;
	} cases[] = {
		{ "0", 0 },		 { "1", 1 },	      { "4294967295", UINT32_MAX },
		{ "4294967296", 0 },	 { "99999999999", 0 }, { "", 0 },
		{ "12a", 0 },		 { "-1", 0 },	       { " 1", 0 },
		{ "0000000007", 7 },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct cfx_writer wr, r;
		struct decoded *d = cfx_malloc(sizeof *d);

		kb_begin(&wr, 1, 0, 0);
		rec_begin(&r, 0, 0);
		put_str(&r, "k");
		put_str(&r, "v");
		cfx_write_varint64(&r, 1);
		put_str(&r, "FLAG");
		put_str(&r, cases[i].text);
		rec_end(&wr, &r);
		kb_end(&wr);
		decode(d, wr.p, wr.len, 1);
		assert_int_equal(d->rc, 0);
		if (d->m[0].flag != cases[i].flag)
			fail_msg("FLAG \"%s\" read as %u", cases[i].text, d->m[0].flag);
		cfx_writer_free(&wr);
		cfx_free(d);
	}
}

/* ------------------------------------------------------------------------
 * Kafka CRC
 * ------------------------------------------------------------------------ */

static void test_kafka_crc(void **state)
{
	struct cfx_msg msgs[2] = {
		{ .key = V("k"), .body = V("some body"), .tag = V("t"), .born_ms = 5 },
		{ .key = V("k2"), .body = V("more"), .msg_id = V("m"), .born_ms = 6 },
	};
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	uint8_t *c;
	const char *why;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, 2, &info), 0);
	/* Bytes 17..20 are CRC32C (Castagnoli) of bytes 21..end. */
	assert_int_equal(cfx_load_be32(wr.p + 17), cfx_crc32c(0, wr.p + 21, wr.len - 21));
	assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, NULL), 0);

	c = cfx_malloc(wr.len);
	/* Any flipped bit from the CRC to the end is detected... */
	for (size_t i = 17; i < wr.len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			memcpy(c, wr.p, wr.len);
			c[i] ^= (uint8_t)(1u << bit);
			why = NULL;
			assert_int_equal(cfx_batch_open(&b, c, wr.len, 1, &why), CFX_EPARSE);
			assert_non_null(why);
			assert_string_equal(why, "record batch checksum mismatch");
		}
	}
	/* ... and only skipped without verify_crc. */
	memcpy(c, wr.p, wr.len);
	c[wr.len - 1] ^= 0xff;
	assert_int_equal(cfx_batch_open(&b, c, wr.len, 0, NULL), 0);
	assert_int_equal(cfx_batch_open(&b, c, wr.len, 1, &why), CFX_EPARSE);
	assert_string_equal(why, "record batch checksum mismatch");
	/* baseOffset and partitionLeaderEpoch are outside the CRC, as in Kafka. */
	memcpy(c, wr.p, wr.len);
	cfx_store_be64(c, 123456789);
	cfx_store_be32(c + 12, 77);
	assert_int_equal(cfx_batch_open(&b, c, wr.len, 1, NULL), 0);
	assert_true(b.base_offset == 123456789);
	assert_int_equal(b.leader_epoch, 77);
	cfx_free(c);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Batch-level rejections
 * ------------------------------------------------------------------------ */

static void test_batch_truncated_and_length(void **state)
{
	struct cfx_msg m = { .key = V("k"), .body = V("body"), .born_ms = 1 };
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	const char *why;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, &m, 1, &info), 0);
	/* Shorter than a header. */
	for (size_t len = 0; len < CFX_KBATCH_HEADER_BYTES; len++) {
		why = NULL;
		assert_int_equal(cfx_batch_open(&b, wr.p, len, 0, &why), CFX_EPARSE);
		assert_string_equal(why, "record batch truncated");
	}
	/* Any length but the batch's own. */
	for (size_t len = CFX_KBATCH_HEADER_BYTES; len < wr.len; len++) {
		assert_int_equal(cfx_batch_open(&b, wr.p, len, 0, &why), CFX_EPARSE);
		assert_string_equal(why, "record batch length mismatch");
	}
	uint8_t *c = cfx_malloc(wr.len + 8);
	memcpy(c, wr.p, wr.len);
	memset(c + wr.len, 0, 8);
	assert_int_equal(cfx_batch_open(&b, c, wr.len + 1, 0, &why), CFX_EPARSE);
	assert_string_equal(why, "record batch length mismatch");
	/* batchLength itself off by one either way, or absurd. */
	const int64_t deltas[] = { -1, 1, 8, -(int64_t)wr.len };
	for (size_t i = 0; i < CFX_ARRAY_LEN(deltas); i++) {
		memcpy(c, wr.p, wr.len);
		cfx_store_be32(c + 8, (uint32_t)((int64_t)(wr.len - 12) + deltas[i]));
		assert_int_equal(cfx_batch_open(&b, c, wr.len, 0, &why), CFX_EPARSE);
		assert_string_equal(why, "record batch length mismatch");
	}
	memcpy(c, wr.p, wr.len);
	cfx_store_be32(c + 8, UINT32_MAX);
	assert_int_equal(cfx_batch_open(&b, c, wr.len, 0, &why), CFX_EPARSE);
	/* why may be NULL. */
	assert_int_equal(cfx_batch_open(&b, c, 3, 1, NULL), CFX_EPARSE);
	cfx_free(c);
	cfx_writer_free(&wr);
}

static void test_batch_bad_magic(void **state)
{
	struct cfx_msg m = { .body = V("x") };
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	const char *why;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, &m, 1, &info), 0);
	static const uint8_t magics[] = { 0, 1, 3, 0xff };
	for (size_t i = 0; i < CFX_ARRAY_LEN(magics); i++) {
		wr.p[CFX_KBATCH_OFF_MAGIC] = magics[i];
		/* magic is outside the CRC: checked on its own */
		assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, &why), CFX_EPARSE);
		assert_string_equal(why, "record batch magic is not 2");
	}
	cfx_writer_free(&wr);
}

static void test_batch_bad_counts(void **state)
{
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	const char *why;
	(void)state;

	static const struct {
		uint32_t count, last_delta;
		const char *why;
	} cases[] = {
		{ 0, 0, "bad record count" },
		{ 0, UINT32_MAX, "bad record count" },
		{ CFX_BATCH_RECORDS_MAX + 1, CFX_BATCH_RECORDS_MAX, "bad record count" },
		{ UINT32_MAX, UINT32_MAX - 1, "bad record count" },
		{ 0x80000000u, 0x7fffffffu, "bad record count" },
		{ 1, 1, "lastOffsetDelta does not match the record count" },
		{ 2, 0, "lastOffsetDelta does not match the record count" },
		{ 2, 2, "lastOffsetDelta does not match the record count" },
		{ 3, UINT32_MAX, "lastOffsetDelta does not match the record count" },
	};
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		kb_begin(&wr, cases[i].count, cases[i].last_delta, 0);
		rec_plain(&wr, 0);
		kb_end(&wr);
		why = NULL;
		assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, &why), CFX_EPARSE);
		assert_string_equal(why, cases[i].why);
		cfx_writer_free(&wr);
	}
	/* The limit itself opens (the records are then missing). */
	kb_begin(&wr, CFX_BATCH_RECORDS_MAX, CFX_BATCH_RECORDS_MAX - 1, 0);
	rec_plain(&wr, 0);
	kb_end(&wr);
	assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, &why), 0);
	assert_int_equal(b.count, CFX_BATCH_RECORDS_MAX);
	cfx_writer_free(&wr);
}

static void test_batch_attributes(void **state)
{
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	const char *why;
	(void)state;

	kb_begin(&wr, 1, 0, 0);
	rec_plain(&wr, 0);
	kb_end(&wr);
	/* gzip, snappy, lz4, zstd and the unused codes 5..7; and control batches. */
	for (uint16_t attrs = 1; attrs <= 7; attrs++) {
		cfx_store_be16(wr.p + CFX_KBATCH_OFF_ATTRIBUTES, attrs);
		kb_end(&wr);
		why = NULL;
		assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, &why), CFX_EUNSUPPORTED);
		assert_non_null(why);
		cfx_store_be16(wr.p + CFX_KBATCH_OFF_ATTRIBUTES,
			       attrs | CFX_KBATCH_ATTR_TRANSACTIONAL);
		kb_end(&wr);
		assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, NULL), CFX_EUNSUPPORTED);
	}
	cfx_store_be16(wr.p + CFX_KBATCH_OFF_ATTRIBUTES, CFX_KBATCH_ATTR_CONTROL);
	kb_end(&wr);
	assert_int_equal(cfx_batch_open(&b, wr.p, wr.len, 1, &why), CFX_EUNSUPPORTED);
	/* Transactional and log-append-time batches are plain records: decoded. */
	static const uint16_t fine[] = {
		CFX_KBATCH_ATTR_TRANSACTIONAL,
		CFX_KBATCH_ATTR_LOG_APPEND_TIME,
		CFX_KBATCH_ATTR_TRANSACTIONAL | CFX_KBATCH_ATTR_LOG_APPEND_TIME,
	};
	for (size_t i = 0; i < CFX_ARRAY_LEN(fine); i++) {
		struct decoded *d = cfx_malloc(sizeof *d);
		cfx_store_be16(wr.p + CFX_KBATCH_OFF_ATTRIBUTES, fine[i]);
		kb_end(&wr);
		decode(d, wr.p, wr.len, 1);
		assert_int_equal(d->rc, 0);
		assert_int_equal(d->n, 1);
		assert_int_equal(d->b.attributes, fine[i]);
		cfx_free(d);
	}
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Record-level rejections (hand-built with cfx_writer)
 * ------------------------------------------------------------------------ */

static void test_record_bad_lengths(void **state)
{
	struct cfx_writer wr, r;
	(void)state;

	/* A negative record length (-1 and -2). */
	for (int64_t neg = -1; neg >= -2; neg--) {
		kb_begin(&wr, 1, 0, 0);
		cfx_write_varint64(&wr, neg);
		cfx_write_bytes(&wr, "\0\0\0\2k\2v\0", 8);
		kb_end(&wr);
		expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
		cfx_writer_free(&wr);
	}
	/* A record length beyond the batch. */
	kb_begin(&wr, 1, 0, 0);
	cfx_write_varint64(&wr, 9);
	cfx_write_bytes(&wr, "\0\0\0\2k\2v\0", 8);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
	/* A record length of 0: not even the attributes byte. */
	kb_begin(&wr, 1, 0, 0);
	cfx_write_varint64(&wr, 0);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
	/* A record length varint that overflows 32 bits, or is cut off. */
	kb_begin(&wr, 1, 0, 0);
	cfx_write_bytes(&wr, "\xff\xff\xff\xff\x7f", 5);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
	kb_begin(&wr, 1, 0, 0);
	cfx_write_u8(&wr, 0x80);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);

	/* Key and value lengths: negative other than -1, or beyond the record. */
	static const struct {
		int64_t klen, vlen;
	} fields[] = {
		{ -2, 1 }, { INT32_MIN, 1 }, { 1, -2 }, { 1, -100 }, { 50, 1 }, { 1, 50 },
		{ INT32_MAX, 1 }, { 1, INT32_MAX },
	};
	for (size_t i = 0; i < CFX_ARRAY_LEN(fields); i++) {
		kb_begin(&wr, 2, 1, 0);
		rec_plain(&wr, 0); /* a good record first */
		rec_begin(&r, 0, 1);
		cfx_write_varint64(&r, fields[i].klen);
		if (fields[i].klen == 1) {
			cfx_write_u8(&r, 'k');
			cfx_write_varint64(&r, fields[i].vlen);
			if (fields[i].vlen == 1)
				cfx_write_u8(&r, 'v');
		}
		cfx_write_varint64(&r, 0);
		rec_end(&wr, &r);
		kb_end(&wr);
		expect_failure(wr.p, wr.len, CFX_EPARSE, 1);
		cfx_writer_free(&wr);
	}
	/* An overlong varint inside a record. */
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	cfx_write_bytes(&r, "\x82\x00", 2); /* keyLength 1, padded */
	cfx_write_bytes(&r, "k\2v\0", 4);
	rec_end(&wr, &r);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
	/* A timestampDelta of 11 bytes. */
	kb_begin(&wr, 1, 0, 0);
	cfx_writer_init(&r, 32);
	cfx_write_u8(&r, 0);
	cfx_write_bytes(&r, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11);
	cfx_write_bytes(&r, "\0\2k\2v\0", 6);
	rec_end(&wr, &r);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
}

static void test_record_offset_delta(void **state)
{
	static const struct {
		int64_t first, second;
		int ok_msgs;
	} cases[] = {
		{ 1, 1, 0 },	       /* the first must be 0 */
		{ -1, 1, 0 },	       /* negative */
		{ 0, 0, 1 },	       /* repeated */
		{ 0, 2, 1 },	       /* a gap */
		{ 0, INT32_MIN, 1 },
		{ 0, INT32_MAX, 1 },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct cfx_writer wr;
		kb_begin(&wr, 2, 1, 0);
		rec_plain(&wr, cases[i].first);
		rec_plain(&wr, cases[i].second);
		kb_end(&wr);
		expect_failure(wr.p, wr.len, CFX_EPARSE, cases[i].ok_msgs);
		cfx_writer_free(&wr);
	}
}

static void test_record_headers(void **state)
{
	struct cfx_writer wr, r;
	struct decoded *d = cfx_malloc(sizeof *d);
	(void)state;

	/* Header counts: negative, or above the limit. */
	static const int64_t bad_counts[] = { -1, -2, CFX_MSG_PROPS_MAX + 1, INT32_MAX };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_counts); i++) {
		kb_begin(&wr, 1, 0, 0);
		rec_begin(&r, 0, 0);
		put_str(&r, "k");
		put_str(&r, "v");
		cfx_write_varint64(&r, bad_counts[i]);
		for (int j = 0; j < 4; j++) {
			put_str(&r, "h");
			put_str(&r, "x");
		}
		rec_end(&wr, &r);
		kb_end(&wr);
		expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
		cfx_writer_free(&wr);
	}
	/* Exactly the limit decodes. */
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, CFX_MSG_PROPS_MAX);
	for (uint32_t j = 0; j < CFX_MSG_PROPS_MAX; j++) {
		put_str(&r, "h");
		put_field(&r, -1, NULL);
	}
	rec_end(&wr, &r);
	kb_end(&wr);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->m[0].header_count, CFX_MSG_PROPS_MAX);
	cfx_writer_free(&wr);

	/* A null header name. */
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, 2);
	put_str(&r, "ok");
	put_str(&r, "1");
	put_field(&r, -1, NULL);
	put_str(&r, "x");
	rec_end(&wr, &r);
	kb_end(&wr);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, CFX_EPARSE);
	assert_string_equal(d->why, "null header name");
	cfx_writer_free(&wr);

	/* Fewer headers than counted, and a header value beyond the record. */
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, 3);
	put_str(&r, "a");
	put_str(&r, "1");
	rec_end(&wr, &r);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, 1);
	put_str(&r, "a");
	cfx_write_varint64(&r, 5);
	cfx_write_bytes(&r, "ab", 2);
	rec_end(&wr, &r);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);
	cfx_free(d);
}

static void test_record_trailing_bytes(void **state)
{
	struct cfx_writer wr, r;
	struct decoded *d = cfx_malloc(sizeof *d);
	(void)state;

	/* Bytes after the last header, inside the record's length. */
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, 1);
	put_str(&r, "h");
	put_str(&r, "x");
	cfx_write_u8(&r, 0);
	rec_end(&wr, &r);
	kb_end(&wr);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, CFX_EPARSE);
	assert_int_equal(d->n, 0);
	assert_string_equal(d->why, "bytes after the last header");
	cfx_writer_free(&wr);

	/* The same with no headers at all. */
	kb_begin(&wr, 1, 0, 0);
	rec_begin(&r, 0, 0);
	put_str(&r, "k");
	put_str(&r, "v");
	cfx_write_varint64(&r, 0);
	cfx_write_bytes(&r, "zz", 2);
	rec_end(&wr, &r);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 0);
	cfx_writer_free(&wr);

	/* Bytes after the last record: every record decodes, then the end is refused. */
	kb_begin(&wr, 2, 1, 0);
	rec_plain(&wr, 0);
	rec_plain(&wr, 1);
	cfx_write_u8(&wr, 0);
	kb_end(&wr);
	decode(d, wr.p, wr.len, 1);
	assert_int_equal(d->rc, CFX_EPARSE);
	assert_int_equal(d->n, 2);
	assert_string_equal(d->why, "bytes after the last record");
	/* ... and the same batch with a correct count of 3 fails on the third record. */
	cfx_store_be32(wr.p + CFX_KBATCH_OFF_RECORDS_COUNT, 3);
	cfx_store_be32(wr.p + CFX_KBATCH_OFF_LAST_OFFSET_DELTA, 2);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 2);
	cfx_writer_free(&wr);

	/* Fewer records than counted. */
	kb_begin(&wr, 3, 2, 0);
	rec_plain(&wr, 0);
	rec_plain(&wr, 1);
	kb_end(&wr);
	expect_failure(wr.p, wr.len, CFX_EPARSE, 2);
	cfx_writer_free(&wr);
	cfx_free(d);
}

/* ------------------------------------------------------------------------
 * Interoperability: a batch written from Kafka's spec alone
 * ------------------------------------------------------------------------ */

/*
 * Two records as a Kafka producer writes them (KIP-98 RecordBatch v2), with
 * baseOffset 100 and partitionLeaderEpoch 9 as a broker would set them.
 * Byte-for-byte the same as kafka-python's DefaultRecordBatchBuilder makes
 * for these inputs (producerId 12345, producerEpoch 3, baseSequence 7).
 */
static const uint8_t kafka_batch[] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, /* baseOffset 100 */
	0x00, 0x00, 0x00, 0x54,				/* batchLength 84 */
	0x00, 0x00, 0x00, 0x09,				/* partitionLeaderEpoch 9 */
	0x02,						/* magic 2 */
	0xca, 0x34, 0x21, 0x1d,				/* crc (CRC32C of attributes..end) */
	0x00, 0x00,					/* attributes: none, create time */
	0x00, 0x00, 0x00, 0x01,				/* lastOffsetDelta 1 */
	0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, /* baseTimestamp 1700000000000 */
	0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05, /* maxTimestamp 1700000000005 */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x39, /* producerId 12345 */
	0x00, 0x03,					/* producerEpoch 3 */
	0x00, 0x00, 0x00, 0x07,				/* baseSequence 7 */
	0x00, 0x00, 0x00, 0x02,				/* recordsCount 2 */
	/* Record 0 */
	0x28,			      /* length 20 */
	0x00,			      /* attributes */
	0x00,			      /* timestampDelta 0 */
	0x00,			      /* offsetDelta 0 */
	0x02, 'k',		      /* key "k" */
	0x04, 'v', '1',		      /* value "v1" */
	0x04,			      /* 2 headers */
	0x08, 'T', 'A', 'G', 'S',     /*   "TAGS" */
	0x02, 't',		      /*   = "t" */
	0x02, 'h',		      /*   "h" */
	0x02, 'x',		      /*   = "x" */
	/* Record 1 */
	0x1a,			      /* length 13 */
	0x00,			      /* attributes */
	0x0a,			      /* timestampDelta 5 */
	0x02,			      /* offsetDelta 1 */
	0x01,			      /* key null */
	0x04, 'v', '2',		      /* value "v2" */
	0x02,			      /* 1 header */
	0x06, 'n', 'u', 'l',	      /*   "nul" */
	0x01,			      /*   = null */
};

static void test_decode_kafka_spec_batch(void **state)
{
	struct decoded *d = cfx_malloc(sizeof *d);
	struct cfx_prop props[4];
	(void)state;

	assert_int_equal(sizeof kafka_batch, 96);
	/* Our CRC32C agrees with the checksum in the spec-built bytes. */
	assert_int_equal(cfx_crc32c(0, kafka_batch + 21, sizeof kafka_batch - 21), 0xca34211du);
	assert_int_equal(cfx_batch_records_count(kafka_batch), 2);

	decode(d, kafka_batch, sizeof kafka_batch, 1);
	assert_int_equal(d->rc, 0);
	assert_int_equal(d->n, 2);
	assert_true(d->b.base_offset == 100);
	assert_int_equal(d->b.leader_epoch, 9);
	assert_int_equal(d->b.attributes, 0);
	assert_true(d->b.base_ts == 1700000000000);
	assert_true(d->b.max_ts == 1700000000005);
	assert_true(d->b.producer_id == 12345);
	assert_int_equal(d->b.producer_epoch, 3);
	assert_int_equal(d->b.base_sequence, 7);
	assert_int_equal(d->b.count, 2);

	const struct cfx_msg_view *m = &d->m[0];
	assert_true(m->offset == 100);
	assert_true(m->born_ms == 1700000000000);
	assert_int_equal(m->key_null, 0);
	assert_view(m->key, "k", 1);
	assert_view(m->body, "v1", 2);
	assert_view(m->tag, "t", 1);
	assert_int_equal(m->msg_id.len, 0);
	assert_int_equal(m->flag, 0);
	assert_int_equal(m->header_count, 2);
	assert_int_equal(m->record_bytes, 21);
	assert_int_equal(user_props(m, props, 4), 1);
	assert_view(props[0].name, "h", 1);
	assert_view(props[0].value, "x", 1);

	m = &d->m[1];
	assert_true(m->offset == 101);
	assert_true(m->born_ms == 1700000000005);
	assert_int_equal(m->key_null, 1);
	assert_view(m->body, "v2", 2);
	assert_int_equal(m->body_null, 0);
	assert_int_equal(m->tag.len, 0);
	assert_int_equal(m->header_count, 1);
	assert_int_equal(m->record_bytes, 14);
	assert_int_equal(user_props(m, props, 4), 1);
	assert_view(props[0].name, "nul", 3);
	assert_null(props[0].value.p);
	assert_int_equal(props[0].value.len, 0);
	cfx_free(d);
}

/* Our encoder produces the same record bytes for the same messages. */
static void test_encode_matches_kafka_spec_batch(void **state)
{
	struct cfx_msg msgs[2] = {
		{ .key = V("k"), .body = V("v1"), .tag = V("t"), .born_ms = 1700000000000,
		  .props = (const struct cfx_prop[]){ { V("h"), V("x") } }, .prop_count = 1 },
		{ .key_null = 1, .body = V("v2"), .born_ms = 1700000000005 },
	};
	struct cfx_batch_info info;
	struct cfx_writer wr;
	(void)state;

	cfx_writer_init(&wr, 0);
	assert_int_equal(cfx_batch_encode(&wr, msgs, 2, &info), 0);
	/* Record 0 is identical; record 1 differs only by the "nul" header we left out. */
	assert_memory_equal(wr.p + 61, kafka_batch + 61, 21);
	static const uint8_t rec1[] = { 0x10, 0x00, 0x0a, 0x02, 0x01, 0x04, 'v', '2', 0x00 };
	assert_int_equal(wr.len, 61 + 21 + sizeof rec1);
	assert_memory_equal(wr.p + 82, rec1, sizeof rec1);
	/* Header fields from lastOffsetDelta to maxTimestamp as well. */
	assert_memory_equal(wr.p + 23, kafka_batch + 23, 20);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * Extreme born timestamps
 * ------------------------------------------------------------------------ */

/*
 * Runs `fn` in a child process, so that a sanitizer abort fails this test
 * alone; `fn` returns 0 for success or a code for the failure it saw.
 */
static void run_isolated(int (*fn)(void), const char *what)
{
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status))
		fail_msg("%s: child killed by signal %d", what, WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("%s: child exited with %d (a sanitizer report above means undefined "
			 "behaviour)",
			 what, WEXITSTATUS(status));
}

/* Born times at the ends of int64 must round-trip (deltas wrap as in Kafka's Java). */
static int extreme_encode_round_trip(void)
{
	static const int64_t born[] = { INT64_MAX, INT64_MIN, 0, -1, INT64_MIN + 1 };
	struct cfx_msg msgs[5];
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	struct cfx_msg_view m;
	int rc;

	for (int i = 0; i < 5; i++)
		msgs[i] = (struct cfx_msg){ .body = V("x"), .born_ms = born[i] };
	cfx_writer_init(&wr, 0);
	rc = cfx_batch_encode(&wr, msgs, 5, &info);
	if (rc == CFX_EINVAL)
		return 0; /* refusing such timestamps is acceptable too */
	if (rc != 0)
		return 2;
	if (cfx_batch_open(&b, wr.p, wr.len, 1, NULL) != 0)
		return 3;
	if (b.max_ts != INT64_MAX)
		return 4;
	for (int i = 0; i < 5; i++)
		if (cfx_batch_next(&b, &m, NULL) != 1 || m.born_ms != born[i])
			return 5;
	cfx_writer_free(&wr);
	return 0;
}

/* A hostile batch: baseTimestamp INT64_MAX and a timestampDelta of +1. */
static int extreme_decode(void)
{
	struct cfx_writer wr, r;
	struct cfx_batch_rd b;
	struct cfx_msg_view m;
	int rc;

	kb_begin(&wr, 1, 0, INT64_MAX);
	cfx_writer_init(&r, 32);
	cfx_write_u8(&r, 0);
	cfx_write_varint64(&r, 1);
	cfx_write_varint64(&r, 0);
	cfx_write_varint64(&r, -1);
	cfx_write_varint64(&r, -1);
	cfx_write_varint64(&r, 0);
	cfx_write_varint64(&wr, (int64_t)r.len);
	cfx_write_bytes(&wr, r.p, r.len);
	cfx_writer_free(&r);
	kb_seal(wr.p, wr.len);
	if (cfx_batch_open(&b, wr.p, wr.len, 1, NULL) != 0)
		return 2;
	rc = cfx_batch_next(&b, &m, NULL);
	/* Either refused as malformed, or wrapped to INT64_MIN: never undefined. */
	if (rc == CFX_EPARSE)
		return 0;
	return rc == 1 && m.born_ms == INT64_MIN ? 0 : 3;
}

/*
 * Born timestamps at the ends of int64 must round-trip without signed
 * overflow (undefined behaviour): timestamp deltas wrap modulo 2^64, as in
 * Kafka. Run in a child so that a UBSan abort fails only this test.
 */
static void test_extreme_born_encode(void **state)
{
	(void)state;
	run_isolated(extreme_encode_round_trip, "encode/decode of born times at the ends of int64");
}

/* Untrusted bytes: baseTimestamp INT64_MAX plus a delta of 1 wraps, never overflows. */
static void test_extreme_born_decode(void **state)
{
	(void)state;
	run_isolated(extreme_decode, "decode of baseTimestamp INT64_MAX + timestampDelta 1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_set_base_offset),
		cmocka_unit_test(test_single_message),
		cmocka_unit_test(test_timestamps_out_of_order),
		cmocka_unit_test(test_tag_hash),
		cmocka_unit_test(test_has_keys),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_encoding_follows_kafka_spec),
		cmocka_unit_test(test_next_prop_skips_reserved),
		cmocka_unit_test(test_flag_parsing),
		cmocka_unit_test(test_kafka_crc),
		cmocka_unit_test(test_batch_truncated_and_length),
		cmocka_unit_test(test_batch_bad_magic),
		cmocka_unit_test(test_batch_bad_counts),
		cmocka_unit_test(test_batch_attributes),
		cmocka_unit_test(test_record_bad_lengths),
		cmocka_unit_test(test_record_offset_delta),
		cmocka_unit_test(test_record_headers),
		cmocka_unit_test(test_record_trailing_bytes),
		cmocka_unit_test(test_decode_kafka_spec_batch),
		cmocka_unit_test(test_encode_matches_kafka_spec_batch),
		cmocka_unit_test(test_extreme_born_encode),
		cmocka_unit_test(test_extreme_born_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
