/*
 * gen_corpus.c - writes the seed corpora of the fuzz targets with the
 * store's own encoders (cfx_batch_encode, cfx_entry_seal,
 * cfx_entry_end_encode, cfx_seg_header_encode, cfx_checkpoint_encode,
 * cfx_idx_entry_encode, cfx_kix_*_encode), for fuzz_compress the
 * compression libraries (fz_compress), and for fuzz_mqtt_packet and
 * fuzz_mqtt the MQTT codec's encoders (mqtt_encode_*): valid inputs of each kind, and
 * near-valid ones (truncated, bit-flipped, newer versions, torn tails) that
 * start the fuzzer next to the interesting edges.
 *
 *   gen_corpus [OUT_DIR]      (default: tests/fuzz/corpus of the source tree)
 *
 * Output is deterministic (fixed timestamps, no randomness), so running it
 * again changes nothing unless the formats changed. It only adds or
 * overwrites its own files; inputs added by hand or by a fuzzer stay.
 * The input layouts are described in fuzz_common.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/fileops.h"
#include "fuzz_common.h"
#include "proto/mqtt/packet.h"
#include "store/batch.h"
#include "store/compress.h"
#include "store/format.h"

#ifndef CFX_FUZZ_CORPUS_DIR
#define CFX_FUZZ_CORPUS_DIR "tests/fuzz/corpus"
#endif

#define SEED_BYTES_MAX (32u * 1024)
#define T0_MS 1700000000000LL /* a fixed "now" */

static const char *out_dir;
static unsigned seeds_written;

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus: %s\n", what);
	exit(1);
}

static void write_seed(const char *target, const char *name, const void *p, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	if (len > SEED_BYTES_MAX)
		die("a seed is larger than 32 KiB");
	snprintf(path, sizeof path, "%s/%s", out_dir, target);
	if (cfx_mkdir_p(&cfx_fileops_real, path) != 0)
		die("cannot create the output directory");
	snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0)
		die("cannot write a seed");
	seeds_written++;
}

/* ------------------------------------------------------------------------
 * Message sets
 * ------------------------------------------------------------------------ */

#define V(s) CFX_VIEW_STR(s)

static const struct cfx_prop rich_props[] = {
	{ { (const uint8_t *)"color", 5 }, { (const uint8_t *)"red", 3 } },
	{ { (const uint8_t *)"size", 4 }, { (const uint8_t *)"L", 1 } },
};

enum msgset {
	SET_ONE,    /* one plain message */
	SET_RICH,   /* tags, ids, flags, keys, properties, varied timestamps */
	SET_NULLS,  /* null key, tombstone, empty body */
	SET_PROPS,  /* many properties */
	SET_MIXED,  /* different tags */
	SET_BIG,    /* one large body */
	SET_MANY,   /* forty small messages */
	SET_COUNT,
};

static const char *const set_names[SET_COUNT] = { "one", "rich", "nulls", "props",
						   "mixed", "big", "many" };

/* Fills `m` (room for 40) with message set `set`; returns the count. */
static uint32_t fill_set(enum msgset set, struct cfx_msg *m, struct cfx_prop *props,
			 char (*bufs)[64], uint8_t *big)
{
	uint32_t n = 0;

	memset(m, 0, 40 * sizeof *m);
	switch (set) {
	case SET_ONE:
		m[0].body = V("hello");
		m[0].born_ms = T0_MS;
		return 1;
	case SET_RICH:
		m[0] = (struct cfx_msg){ .key = V("k1 k2"), .body = V("first body"),
					 .tag = V("TagA"), .msg_id = V("ID0001"), .born_ms = T0_MS,
					 .flag = 7, .props = rich_props, .prop_count = 2 };
		m[1] = (struct cfx_msg){ .key = V("k3"), .body = V("second"), .tag = V("TagA"),
					 .msg_id = V("ID0002"), .born_ms = T0_MS - 5000 };
		m[2] = (struct cfx_msg){ .key_null = 1, .body = V("third, later"), .tag = V("TagA"),
					 .born_ms = T0_MS + 123456, .flag = 4294967295u,
					 .props = rich_props + 1, .prop_count = 1 };
		return 3;
	case SET_NULLS:
		m[0] = (struct cfx_msg){ .key_null = 1, .body_null = 1, .born_ms = T0_MS };
		m[1] = (struct cfx_msg){ .key = V(""), .body = V(""), .born_ms = T0_MS };
		m[2] = (struct cfx_msg){ .key = V("only-key"), .body_null = 1, .born_ms = -1 };
		return 3;
	case SET_PROPS:
		for (uint32_t i = 0; i < 20; i++) {
			snprintf(bufs[i], 64, "p%u", i);
			props[i].name = CFX_VIEW_STR(bufs[i]);
			props[i].value = (struct cfx_view){ (const uint8_t *)"value", i % 6 };
		}
		m[0] = (struct cfx_msg){ .body = V("props"), .msg_id = V("ID-PROPS"),
					 .born_ms = T0_MS, .props = props, .prop_count = 20 };
		return 1;
	case SET_MIXED:
		m[0] = (struct cfx_msg){ .body = V("a"), .tag = V("red"), .born_ms = T0_MS };
		m[1] = (struct cfx_msg){ .body = V("b"), .tag = V("blue"), .born_ms = T0_MS + 1 };
		m[2] = (struct cfx_msg){ .body = V("c"), .born_ms = T0_MS + 2 };
		return 3;
	case SET_BIG:
		for (uint32_t i = 0; i < 1500; i++)
			big[i] = (uint8_t)('a' + i % 26);
		m[0] = (struct cfx_msg){ .key = V("big"), .body = { big, 1500 }, .born_ms = T0_MS };
		return 1;
	case SET_MANY:
		for (n = 0; n < 40; n++) {
			snprintf(bufs[n], 64, "m%u", n);
			m[n].body = CFX_VIEW_STR(bufs[n]);
			m[n].key = CFX_VIEW_STR(bufs[n]);
			m[n].born_ms = T0_MS + n;
		}
		return n;
	default:
		return 0;
	}
}

/* Appends the batch of message set `set` to `wr`; returns its info. */
static struct cfx_batch_info put_set(struct cfx_writer *wr, enum msgset set)
{
	static struct cfx_msg msgs[40];
	static struct cfx_prop props[40];
	static char bufs[40][64];
	static uint8_t big[1500];
	struct cfx_batch_info info;
	uint32_t n = fill_set(set, msgs, props, bufs, big);

	if (cfx_batch_encode(wr, msgs, n, &info) != 0)
		die("cfx_batch_encode failed");
	return info;
}

/* ------------------------------------------------------------------------
 * Hand-made records, for batches the encoder would never write
 * ------------------------------------------------------------------------ */

struct rec {
	int64_t ts_delta, offset_delta;
	int64_t key_len; /* -1: null; else the length of key */
	const char *key;
	int64_t value_len;
	const char *value;
	int64_t hdr_count; /* as written; the headers below follow */
	const char *hdr_raw; /* raw header bytes */
	size_t hdr_raw_len;
};

static void put_record(struct cfx_writer *wr, const struct rec *r)
{
	struct cfx_writer body;

	cfx_writer_init(&body, 64);
	cfx_write_u8(&body, 0);
	cfx_write_varint64(&body, r->ts_delta);
	cfx_write_varint64(&body, r->offset_delta);
	/* A length may claim more than the bytes that follow (a broken record). */
	cfx_write_varint64(&body, r->key_len);
	if (r->key_len > 0)
		cfx_write_bytes(&body, r->key, CFX_MIN((size_t)r->key_len, strlen(r->key)));
	cfx_write_varint64(&body, r->value_len);
	if (r->value_len > 0)
		cfx_write_bytes(&body, r->value, CFX_MIN((size_t)r->value_len, strlen(r->value)));
	cfx_write_varint64(&body, r->hdr_count);
	cfx_write_bytes(&body, r->hdr_raw, r->hdr_raw_len);
	cfx_write_varint64(wr, (int64_t)body.len);
	cfx_write_bytes(wr, body.p, body.len);
	cfx_writer_free(&body);
}

/* Recomputes Kafka's CRC of the batch at `p` (after an edit). */
static void refix_batch_crc(uint8_t *p, size_t len)
{
	cfx_store_be32(p + CFX_KBATCH_OFF_CRC, cfx_crc32c(0, p + CFX_KBATCH_OFF_ATTRIBUTES,
							  len - CFX_KBATCH_OFF_ATTRIBUTES));
}

/* A batch header around `records` (count records), with Kafka's CRC. */
static void put_raw_batch(struct cfx_writer *wr, const void *records, size_t len, uint32_t count,
			  uint16_t attributes)
{
	size_t start = wr->len;
	uint8_t *h = cfx_writer_extend(wr, CFX_KBATCH_HEADER_BYTES);

	memset(h, 0, CFX_KBATCH_HEADER_BYTES);
	h[CFX_KBATCH_OFF_MAGIC] = 2;
	cfx_store_be16(h + CFX_KBATCH_OFF_ATTRIBUTES, attributes);
	cfx_store_be32(h + CFX_KBATCH_OFF_LAST_OFFSET_DELTA, count - 1);
	cfx_store_be64(h + CFX_KBATCH_OFF_BASE_TIMESTAMP, (uint64_t)T0_MS);
	cfx_store_be64(h + CFX_KBATCH_OFF_MAX_TIMESTAMP, (uint64_t)T0_MS);
	cfx_store_be64(h + CFX_KBATCH_OFF_PRODUCER_ID, UINT64_MAX);
	cfx_store_be16(h + CFX_KBATCH_OFF_PRODUCER_EPOCH, UINT16_MAX);
	cfx_store_be32(h + CFX_KBATCH_OFF_BASE_SEQUENCE, UINT32_MAX);
	cfx_store_be32(h + CFX_KBATCH_OFF_RECORDS_COUNT, count);
	cfx_write_bytes(wr, records, len);
	h = wr->p + start;
	cfx_store_be32(h + CFX_KBATCH_OFF_LENGTH, (uint32_t)(wr->len - start - 12));
	refix_batch_crc(h, wr->len - start);
}

/* One hand-made record wrapped in a batch of `count` records. */
static void put_one_record_batch(struct cfx_writer *wr, const struct rec *r, uint32_t count)
{
	struct cfx_writer recs;

	cfx_writer_init(&recs, 64);
	put_record(&recs, r);
	put_raw_batch(wr, recs.p, recs.len, count, 0);
	cfx_writer_free(&recs);
}

/* ------------------------------------------------------------------------
 * fuzz_batch seeds
 * ------------------------------------------------------------------------ */

static void batch_seed(const char *name, uint8_t flags, const uint8_t *p, size_t len)
{
	uint8_t *buf = cfx_malloc(len + FZ_BATCH_CTRL_BYTES);

	buf[0] = flags;
	memcpy(buf + FZ_BATCH_CTRL_BYTES, p, len);
	write_seed("fuzz_batch", name, buf, len + FZ_BATCH_CTRL_BYTES);
	cfx_free(buf);
}

static void gen_batch(void)
{
	struct cfx_writer wr, mod;
	char name[64];
	uint8_t *p;
	size_t len;

	cfx_writer_init(&wr, 4096);
	cfx_writer_init(&mod, 4096);

	/* Valid batches, checksum verified. */
	for (int s = 0; s < SET_COUNT; s++) {
		cfx_writer_reset(&wr);
		put_set(&wr, (enum msgset)s);
		snprintf(name, sizeof name, "valid-%s", set_names[s]);
		batch_seed(name, FZ_BATCH_VERIFY_CRC, wr.p, wr.len);
	}

	/* Near-valid variants of the rich batch. */
	cfx_writer_reset(&wr);
	put_set(&wr, SET_RICH);
	p = wr.p;
	len = wr.len;
	batch_seed("rich-noverify", 0, p, len);
	batch_seed("rich-fixcrc", FZ_BATCH_VERIFY_CRC | FZ_BATCH_FIX_CRC, p, len);
	batch_seed("trunc-header", 0, p, 30);
	batch_seed("trunc-61", 0, p, CFX_KBATCH_HEADER_BYTES);
	batch_seed("trunc-last-byte", 0, p, len - 1);
	{
		/* Cut inside the records, with the length field and CRC adjusted. */
		size_t cut = len - 20;
		cfx_writer_reset(&mod);
		cfx_write_bytes(&mod, p, cut);
		cfx_store_be32(mod.p + CFX_KBATCH_OFF_LENGTH, (uint32_t)(cut - 12));
		refix_batch_crc(mod.p, cut);
		batch_seed("trunc-records-fixed", FZ_BATCH_VERIFY_CRC, mod.p, cut);
	}

#define EDIT(label, flags, stmt) \
	do { \
		cfx_writer_reset(&mod); \
		cfx_write_bytes(&mod, p, len); \
		{ \
			uint8_t *b = mod.p; \
			(void)b; \
			stmt; \
		} \
		batch_seed(label, flags, mod.p, mod.len); \
	} while (0)

	EDIT("bad-crc", FZ_BATCH_VERIFY_CRC, b[CFX_KBATCH_OFF_CRC] ^= 0x01);
	EDIT("bad-magic", FZ_BATCH_FIX_CRC, b[CFX_KBATCH_OFF_MAGIC] = 1);
	EDIT("compressed", FZ_BATCH_VERIFY_CRC | FZ_BATCH_FIX_CRC,
	     b[CFX_KBATCH_OFF_ATTRIBUTES + 1] |= 0x01);
	EDIT("control", FZ_BATCH_VERIFY_CRC | FZ_BATCH_FIX_CRC,
	     b[CFX_KBATCH_OFF_ATTRIBUTES + 1] |= CFX_KBATCH_ATTR_CONTROL);
	EDIT("transactional", FZ_BATCH_VERIFY_CRC | FZ_BATCH_FIX_CRC,
	     b[CFX_KBATCH_OFF_ATTRIBUTES + 1] |= CFX_KBATCH_ATTR_TRANSACTIONAL);
	EDIT("last-offset-delta", FZ_BATCH_FIX_CRC, b[CFX_KBATCH_OFF_LAST_OFFSET_DELTA + 3] ^= 1);
	EDIT("count-zero", FZ_BATCH_FIX_CRC, cfx_store_be32(b + CFX_KBATCH_OFF_RECORDS_COUNT, 0));
	EDIT("count-more", FZ_BATCH_FIX_CRC, {
		cfx_store_be32(b + CFX_KBATCH_OFF_RECORDS_COUNT, 4);
		cfx_store_be32(b + CFX_KBATCH_OFF_LAST_OFFSET_DELTA, 3);
	});
	EDIT("count-less", FZ_BATCH_FIX_CRC, {
		cfx_store_be32(b + CFX_KBATCH_OFF_RECORDS_COUNT, 2);
		cfx_store_be32(b + CFX_KBATCH_OFF_LAST_OFFSET_DELTA, 1);
	});
	EDIT("length-plus-one", 0, b[CFX_KBATCH_OFF_LENGTH + 3] += 1);
	EDIT("trailing-bytes", FZ_BATCH_VERIFY_CRC | FZ_BATCH_FIX_CRC, {
		cfx_write_bytes(&mod, "\0\0\0", 3);
		b = mod.p;
		cfx_store_be32(b + CFX_KBATCH_OFF_LENGTH, (uint32_t)(mod.len - 12));
	});
	EDIT("bitflip-record", FZ_BATCH_FIX_CRC, b[CFX_KBATCH_HEADER_BYTES + 7] ^= 0x40);
	EDIT("bitflip-header-value", FZ_BATCH_FIX_CRC, b[len - 3] ^= 0x08);
	EDIT("base-offset-high", FZ_BATCH_VERIFY_CRC,
	     cfx_store_be64(b + CFX_KBATCH_OFF_BASE_OFFSET, UINT64_MAX - 1));
#undef EDIT

	/* Hand-made records: the decoder's error paths one by one. */
	{
		static const char hdr_tag[] = "\x08TAGS\x06red";
		static const char hdr_null_name[] = "\x01\x02v";
		static const char hdr_null_value[] = "\x06key\x01";
		static const char hdr_flag_bad[] = "\x08" "FLAG\x06" "12x";
		static const char hdr_flag_big[] = "\x08" "FLAG\x16" "99999999999";
		static const char hdr_trunc[] = "\x08TAGS\x40";
#define HDR(raw) raw, sizeof raw - 1
		struct {
			const char *name;
			struct rec r;
			uint32_t count;
		} recs[] = {
			{ "rec-plain", { 0, 0, 1, "k", 1, "v", 0, NULL, 0 }, 1 },
			{ "rec-null-key-value", { 0, 0, -1, NULL, -1, NULL, 0, NULL, 0 }, 1 },
			{ "rec-tag-header", { 0, 0, 0, "", 3, "abc", 1, HDR(hdr_tag) }, 1 },
			{ "rec-null-hdr-name", { 0, 0, 0, "", 0, "", 1, HDR(hdr_null_name) }, 1 },
			{ "rec-null-hdr-value", { 0, 0, 0, "", 0, "", 1, HDR(hdr_null_value) }, 1 },
			{ "rec-flag-not-digits", { 0, 0, 0, "", 0, "", 1, HDR(hdr_flag_bad) }, 1 },
			{ "rec-flag-too-big", { 0, 0, 0, "", 0, "", 1, HDR(hdr_flag_big) }, 1 },
			{ "rec-header-truncated", { 0, 0, 0, "", 0, "", 1, HDR(hdr_trunc) }, 1 },
			{ "rec-key-len-minus2", { 0, 0, -2, NULL, 0, "", 0, NULL, 0 }, 1 },
			{ "rec-value-too-long", { 0, 0, 0, "", 40, "short", 0, NULL, 0 }, 1 },
			{ "rec-offset-delta-1", { 0, 1, 0, "", 0, "", 0, NULL, 0 }, 1 },
			{ "rec-offset-delta-neg", { 0, -1, 0, "", 0, "", 0, NULL, 0 }, 1 },
			{ "rec-hdr-count-1025", { 0, 0, 0, "", 0, "", 1025, NULL, 0 }, 1 },
			{ "rec-hdr-count-neg", { 0, 0, 0, "", 0, "", -1, NULL, 0 }, 1 },
			{ "rec-ts-delta-max", { INT64_MAX / 4, 0, 0, "", 0, "", 0, NULL, 0 }, 1 },
			{ "rec-ts-delta-min", { INT64_MIN / 4, 0, 0, "", 0, "", 0, NULL, 0 }, 1 },
			{ "rec-missing-second", { 0, 0, 0, "", 0, "", 0, NULL, 0 }, 2 },
		};
		for (size_t i = 0; i < CFX_ARRAY_LEN(recs); i++) {
			cfx_writer_reset(&wr);
			put_one_record_batch(&wr, &recs[i].r, recs[i].count);
			batch_seed(recs[i].name, FZ_BATCH_VERIFY_CRC, wr.p, wr.len);
		}
#undef HDR
	}
	{
		/* Overlong and oversized varints as the record length. */
		static const uint8_t overlong[] = { 0x82, 0x00, 0x00 };
		static const uint8_t too_long[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f };
		static const uint8_t negative[] = { 0x03, 0x00 };
		cfx_writer_reset(&wr);
		put_raw_batch(&wr, overlong, sizeof overlong, 1, 0);
		batch_seed("varint-overlong", FZ_BATCH_VERIFY_CRC, wr.p, wr.len);
		cfx_writer_reset(&wr);
		put_raw_batch(&wr, too_long, sizeof too_long, 1, 0);
		batch_seed("varint-too-long", FZ_BATCH_VERIFY_CRC, wr.p, wr.len);
		cfx_writer_reset(&wr);
		put_raw_batch(&wr, negative, sizeof negative, 1, 0);
		batch_seed("record-len-negative", FZ_BATCH_VERIFY_CRC, wr.p, wr.len);
	}
	batch_seed("empty", 0, NULL, 0);
	cfx_writer_free(&wr);
	cfx_writer_free(&mod);
}

/* ------------------------------------------------------------------------
 * Log images: sealed entries at known positions
 * ------------------------------------------------------------------------ */

struct img {
	struct cfx_writer wr;
	uint64_t base; /* log position of wr.p[0] */
};

static void img_init(struct img *im, uint64_t base)
{
	cfx_writer_init(&im->wr, 8192);
	im->base = base;
}

/* Appends a sealed batch entry; returns its offset in the image. */
static size_t img_entry(struct img *im, const char *topic, uint32_t queue_id, uint64_t queue_offset,
			int64_t store_ms, enum msgset set, uint32_t *count_out)
{
	struct cfx_writer batch;
	struct cfx_batch_info info;
	struct cfx_entry e = { 0 };
	size_t at = im->wr.len, tlen = strlen(topic);
	uint8_t *p;

	cfx_writer_init(&batch, 2048);
	info = put_set(&batch, set);
	cfx_batch_set_base_offset(batch.p, queue_offset);
	e.topic = (struct cfx_view){ (const uint8_t *)topic, tlen };
	e.payload_bytes = (uint32_t)batch.len;
	e.log_pos = im->base + at;
	e.queue_offset = queue_offset;
	e.store_ms = store_ms;
	e.queue_id = queue_id;
	e.msg_count = info.count;
	e.tag_hash = info.tag_hash;
	e.attrs = info.has_keys ? CFX_ENTRY_ATTR_HAS_KEYS : 0;
	p = cfx_writer_extend(&im->wr, cfx_entry_size(tlen, batch.len));
	memcpy(p + CFX_ENTRY_HEADER_BYTES + tlen, batch.p, batch.len);
	cfx_entry_seal(p, &e);
	cfx_writer_free(&batch);
	if (count_out)
		*count_out = info.count;
	return at;
}

/* Appends an end marker covering `entry_bytes` (only its 24 bytes are written). */
static size_t img_end(struct img *im, uint32_t entry_bytes)
{
	size_t at = im->wr.len;
	cfx_entry_end_encode(cfx_writer_extend(&im->wr, CFX_ENTRY_END_BYTES), entry_bytes, T0_MS);
	return at;
}

/* Rewrites the CRC of the entry at offset `at` (after an edit). */
static void img_reseal(struct img *im, size_t at)
{
	uint8_t *p = im->wr.p + at;
	uint32_t size = cfx_load_le32(p);

	if (p[10] == CFX_ENTRY_END)
		cfx_store_le32(p + 4, cfx_crc32c(0, p + 8, CFX_ENTRY_END_BYTES - 8));
	else
		cfx_store_le32(p + 4, cfx_crc32c(0, p + 8, size - 8));
}

/* ------------------------------------------------------------------------
 * fuzz_entry seeds
 * ------------------------------------------------------------------------ */

static void entry_seed(const char *name, uint8_t flags, uint16_t start, const uint8_t *p,
		       size_t len)
{
	uint8_t *buf = cfx_malloc(len + FZ_ENTRY_CTRL_BYTES);

	buf[0] = flags;
	cfx_store_le16(buf + 1, start);
	if (len)
		memcpy(buf + FZ_ENTRY_CTRL_BYTES, p, len);
	write_seed("fuzz_entry", name, buf, len + FZ_ENTRY_CTRL_BYTES);
	cfx_free(buf);
}

static void gen_entry(void)
{
	const uint8_t all = FZ_ENTRY_VERIFY_CRC | FZ_ENTRY_VERIFY_BATCH_CRC;
	struct img im, mod;
	size_t e1, e2, e3;
	char name[64];

	/* One valid entry per message set. */
	for (int s = 0; s < SET_COUNT; s++) {
		img_init(&im, 0);
		img_entry(&im, "orders", (uint32_t)s, 100, T0_MS, (enum msgset)s, NULL);
		snprintf(name, sizeof name, "valid-%s", set_names[s]);
		entry_seed(name, all, 0, im.wr.p, im.wr.len);
		cfx_writer_free(&im.wr);
	}

	/* A chain, as in a segment: three entries, an end marker, a zero word. */
	img_init(&im, 0);
	e1 = img_entry(&im, "orders", 0, 0, T0_MS, SET_RICH, NULL);
	e2 = img_entry(&im, "payments|eu", 3, 7, T0_MS + 1, SET_MIXED, NULL);
	e3 = img_entry(&im, "orders", 0, 3, T0_MS + 2, SET_NULLS, NULL);
	img_end(&im, 64);
	cfx_writer_extend(&im.wr, 40);
	memset(im.wr.p + im.wr.len - 40, 0, 40);
	entry_seed("chain", all, (uint16_t)e2, im.wr.p, im.wr.len);
	entry_seed("chain-start-third", FZ_ENTRY_VERIFY_CRC, (uint16_t)e3, im.wr.p, im.wr.len);
	entry_seed("chain-start-unaligned", 0, (uint16_t)(e2 + 3), im.wr.p, im.wr.len);
	entry_seed("chain-truncated", all, (uint16_t)e2, im.wr.p, e3 + 40);

#define EDIT(label, flags, start, at, stmt) \
	do { \
		img_init(&mod, 0); \
		cfx_write_bytes(&mod.wr, im.wr.p, im.wr.len); \
		{ \
			uint8_t *b = mod.wr.p + (at); \
			(void)b; \
			stmt; \
		} \
		entry_seed(label, flags, start, mod.wr.p, mod.wr.len); \
		cfx_writer_free(&mod.wr); \
	} while (0)

	EDIT("bad-crc-middle", all, 0, e2, b[70] ^= 0x20);
	EDIT("bad-crc-noverify", 0, 0, e2, b[70] ^= 0x20);
	EDIT("newer-version", FZ_ENTRY_VERIFY_CRC, 0, e2, {
		b[9] = 2;
		img_reseal(&mod, e2);
	});
	EDIT("newer-version-noverify", 0, 0, e2, {
		b[9] = 2;
		img_reseal(&mod, e2);
	});
	EDIT("newer-version-badcrc", 0, 0, e2, b[9] = 2);
	EDIT("version-zero", FZ_ENTRY_FIX_CRC, 0, e1, b[9] = 0);
	EDIT("bad-magic", FZ_ENTRY_FIX_CRC, 0, e1, b[8] = 0xCE);
	EDIT("unknown-type", FZ_ENTRY_FIX_CRC | FZ_ENTRY_VERIFY_CRC, 0, e1, b[10] = 3);
	EDIT("topic-len-zero", FZ_ENTRY_FIX_CRC, 0, e1, cfx_store_le16(b + 56, 0));
	EDIT("topic-len-200", FZ_ENTRY_FIX_CRC, 0, e1, cfx_store_le16(b + 56, 200));
	EDIT("msg-count-zero", FZ_ENTRY_FIX_CRC, 0, e1, cfx_store_le32(b + 44, 0));
	EDIT("payload-bytes-plus8", FZ_ENTRY_FIX_CRC, 0, e1,
	     cfx_store_le32(b + 12, cfx_load_le32(b + 12) + 8));
	EDIT("log-pos-mismatch", FZ_ENTRY_FIX_CRC, 0, e1, cfx_store_le64(b + 16, 64));
	EDIT("size-unaligned", 0, 0, e1, b[0] |= 0x03);
	EDIT("size-huge", 0, 0, e1, cfx_store_le32(b, 0x7ffffff8u));
	EDIT("size-small", 0, 0, e1, cfx_store_le32(b, 32));
	EDIT("end-marker-newer", 0, 0, e3 + cfx_load_le32(im.wr.p + e3), {
		b[9] = 2;
		img_reseal(&mod, e3 + cfx_load_le32(im.wr.p + e3));
	});
	EDIT("end-marker-badcrc", 0, 0, e3 + cfx_load_le32(im.wr.p + e3), b[20] ^= 1);
	EDIT("batch-inside-bad", all | FZ_ENTRY_FIX_CRC, 0, e1,
	     b[CFX_ENTRY_HEADER_BYTES + 6 + CFX_KBATCH_HEADER_BYTES + 2] ^= 0x7f);
	EDIT("batch-inside-compressed", FZ_ENTRY_FIX_CRC, 0, e1,
	     b[CFX_ENTRY_HEADER_BYTES + 6 + CFX_KBATCH_OFF_ATTRIBUTES + 1] = 0x02);
#undef EDIT
	cfx_writer_free(&im.wr);

	/* Small images: a lone end marker, a zero word, nothing. */
	img_init(&im, 0);
	img_end(&im, 24);
	entry_seed("end-marker", all, 0, im.wr.p, im.wr.len);
	cfx_writer_free(&im.wr);
	{
		static const uint8_t zeros[16];
		entry_seed("zero-word", all, 8, zeros, sizeof zeros);
		entry_seed("short", all, 0, zeros, 5);
		entry_seed("empty", all, 0, NULL, 0);
	}
}

/* ------------------------------------------------------------------------
 * fuzz_recovery seeds
 * ------------------------------------------------------------------------ */

struct rseed {
	uint8_t pre[FZ_REC_PREAMBLE_BYTES];
	struct cfx_writer body; /* slices after the preamble */
};

static void rs_init(struct rseed *rs, uint8_t mode, uint8_t mode2)
{
	memset(rs->pre, 0, sizeof rs->pre);
	rs->pre[0] = mode;
	rs->pre[1] = mode2;
	cfx_writer_init(&rs->body, 8192);
}

/* A synthesised checkpoint (FZ_REC_CKPT without FZ_REC_CKPT_RAW). */
static void rs_ckpt(struct rseed *rs, uint64_t durable, uint32_t end_delta, int clean,
		    uint32_t idx_entries, uint32_t key_entries)
{
	uint8_t *c = rs->pre + FZ_REC_CKPT_OFF;

	rs->pre[0] |= FZ_REC_CKPT;
	cfx_store_le64(c, durable);
	cfx_store_le32(c + 8, end_delta);
	c[12] = (uint8_t)clean;
	cfx_store_le32(c + 16, idx_entries);
	cfx_store_le32(c + 20, key_entries);
}

/* A raw checkpoint, encoded by the store's encoder (then maybe edited). */
static void rs_ckpt_raw(struct rseed *rs, const struct cfx_checkpoint *ck)
{
	rs->pre[0] |= FZ_REC_CKPT | FZ_REC_CKPT_RAW;
	cfx_checkpoint_encode(rs->pre + FZ_REC_CKPT_OFF, ck);
}

static void rs_write(struct rseed *rs, const char *name)
{
	struct cfx_writer out;

	cfx_writer_init(&out, FZ_REC_PREAMBLE_BYTES + rs->body.len);
	cfx_write_bytes(&out, rs->pre, sizeof rs->pre);
	cfx_write_bytes(&out, rs->body.p, rs->body.len);
	write_seed("fuzz_recovery", name, out.p, out.len);
	cfx_writer_free(&out);
	cfx_writer_free(&rs->body);
}

/* The log used by most recovery seeds: entries of three queues at position 64. */
struct std_log {
	struct img im;
	size_t at[6];	       /* offsets of the entries in the image */
	uint32_t count[6];     /* messages per entry */
	uint64_t first[6];     /* queue offset of each entry */
	uint32_t n;
};

static void std_log(struct std_log *l, uint64_t base)
{
	static const struct {
		const char *topic;
		uint32_t queue;
		enum msgset set;
	} plan[6] = {
		{ "orders", 0, SET_RICH }, { "orders", 1, SET_ONE },  { "audit", 0, SET_MIXED },
		{ "orders", 0, SET_NULLS }, { "orders", 0, SET_PROPS }, { "audit", 0, SET_MANY },
	};
	uint64_t next[3] = { 0, 0, 0 }; /* orders/0, orders/1, audit/0 */

	img_init(&l->im, base);
	l->n = 6;
	for (uint32_t i = 0; i < l->n; i++) {
		int q = !strcmp(plan[i].topic, "audit") ? 2 : (int)plan[i].queue;
		l->first[i] = next[q];
		l->at[i] = img_entry(&l->im, plan[i].topic, plan[i].queue, next[q], T0_MS + i,
				     plan[i].set, &l->count[i]);
		next[q] += l->count[i];
	}
}

static void gen_recovery(void)
{
	const uint8_t check_all = FZ_REC_REOPEN | FZ_REC_VERIFY_READ;
	const uint8_t use_all = FZ_REC2_APPEND | FZ_REC2_LOOKUP;
	const uint64_t seg = FZ_REC_SEGMENT_BYTES, hdr = CFX_SEG_HEADER_BYTES;
	struct std_log l;
	struct rseed rs;
	uint64_t end;

	std_log(&l, hdr);
	end = hdr + l.im.wr.len;

	/* Several entries, no checkpoint: the indexes are rebuilt from the log. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs_write(&rs, "entries-no-ckpt");

	/* The same with an unclean checkpoint at the start of the log. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
	rs_ckpt(&rs, hdr, (uint32_t)(end - hdr), 0, 0, 0);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs_write(&rs, "entries-ckpt-start");

	/* A checkpoint in the middle, fewer index entries than vouched for. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_REOPEN, FZ_REC2_LOOKUP);
	rs_ckpt(&rs, hdr + l.at[3], (uint32_t)(end - hdr - l.at[3]), 0, 3, 2);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs_write(&rs, "entries-ckpt-middle");

	/* A clean checkpoint over a log of one queue whose index is present: no scan. */
	{
		uint8_t ie_buf[CFX_IDX_ENTRY_BYTES];
		struct img one;
		uint64_t next = 0;
		const enum msgset sets[3] = { SET_ONE, SET_RICH, SET_MIXED };

		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_INDEXES | check_all, use_all);
		img_init(&one, hdr);
		for (uint32_t i = 0; i < 3; i++) {
			struct cfx_idx_entry ie;
			uint32_t cnt;
			size_t at = img_entry(&one, "orders", 0, next, T0_MS + i, sets[i], &cnt);

			ie.log_pos = hdr + at;
			ie.first_offset = next;
			ie.store_ms = T0_MS + i;
			ie.entry_bytes = cfx_load_le32(one.wr.p + at);
			ie.msg_count = cnt;
			ie.tag_hash = cfx_load_le32(one.wr.p + at + 48);
			cfx_idx_entry_encode(ie_buf, &ie);
			cfx_write_bytes(&rs.body, ie_buf, sizeof ie_buf);
			next += cnt;
		}
		rs.pre[4] = 3;
		rs_ckpt(&rs, hdr + one.wr.len, 0, 1, 3, 0);
		cfx_write_bytes(&rs.body, one.wr.p, one.wr.len);
		rs_write(&rs, "clean-with-index");

		/* The same, but the checkpoint vouches for more index entries. */
		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_INDEXES | check_all, 0);
		rs.pre[4] = 3;
		for (uint32_t i = 0; i < 3; i++) {
			struct cfx_idx_entry ie = { 0 };
			size_t at = 0;
			for (uint32_t k = 0; k < i; k++)
				at += cfx_load_le32(one.wr.p + at);
			ie.log_pos = hdr + at;
			ie.entry_bytes = cfx_load_le32(one.wr.p + at);
			ie.msg_count = cfx_load_le32(one.wr.p + at + 44);
			ie.first_offset = cfx_load_le64(one.wr.p + at + 24);
			ie.store_ms = T0_MS + i;
			ie.tag_hash = cfx_load_le32(one.wr.p + at + 48);
			cfx_idx_entry_encode(ie_buf, &ie);
			cfx_write_bytes(&rs.body, ie_buf, sizeof ie_buf);
		}
		rs_ckpt(&rs, hdr + one.wr.len, 0, 1, 9, 0);
		cfx_write_bytes(&rs.body, one.wr.p, one.wr.len);
		rs_write(&rs, "index-missing-entries");
		cfx_writer_free(&one.wr);

		/* An index damaged after its first entry (CRCs not fixed). */
		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_INDEXES | FZ_REC_REOPEN, 0);
		rs.pre[4] = 3;
		for (uint32_t i = 0; i < 3; i++) {
			struct cfx_idx_entry ie = { .log_pos = hdr + l.at[0], .first_offset = i * 3,
						    .store_ms = T0_MS, .entry_bytes = 64,
						    .msg_count = 3 };
			cfx_idx_entry_encode(ie_buf, &ie);
			if (i == 1)
				ie_buf[5] ^= 0xff;
			cfx_write_bytes(&rs.body, ie_buf, sizeof ie_buf);
		}
		rs_ckpt(&rs, end, 0, 1, 3, 0);
		cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
		rs_write(&rs, "index-damaged");
	}

	/* Index plus key index, CRCs resealed by the target. */
	{
		uint8_t ie_buf[CFX_IDX_ENTRY_BYTES], ke_buf[CFX_KIX_ENTRY_BYTES];
		struct cfx_idx_entry ie = { .log_pos = hdr + l.at[0],
					    .first_offset = 0,
					    .store_ms = T0_MS,
					    .entry_bytes = cfx_load_le32(l.im.wr.p),
					    .msg_count = l.count[0] };
		struct cfx_kix_entry ke = { .log_pos = hdr + l.at[0] };
		uint32_t slots = 8, cap = 4;
		uint8_t slot_tab[8 * 4] = { 0 };

		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_INDEXES | check_all,
			FZ_REC2_KIX | FZ_REC2_FIX_CRC | FZ_REC2_LOOKUP);
		rs.pre[4] = 1;
		rs.pre[5] = (uint8_t)(slots - 1);
		rs.pre[6] = (uint8_t)(cap - 1);
		cfx_idx_entry_encode(ie_buf, &ie);
		cfx_write_bytes(&rs.body, ie_buf, sizeof ie_buf);
		ke.hash = cfx_keyidx_hash(CFX_KEY_KIND_ID, (struct cfx_view){ NULL, 0 },
					  CFX_VIEW_STR("ID0001"));
		cfx_store_le32(slot_tab + (ke.hash % slots) * 4, 1);
		cfx_write_bytes(&rs.body, slot_tab, sizeof slot_tab);
		cfx_kix_entry_encode(ke_buf, &ke);
		cfx_write_bytes(&rs.body, ke_buf, sizeof ke_buf);
		for (uint32_t i = 1; i < cap; i++) {
			memset(ke_buf, 0, sizeof ke_buf);
			cfx_write_bytes(&rs.body, ke_buf, sizeof ke_buf);
		}
		rs_ckpt(&rs, hdr + l.at[1], (uint32_t)(end - hdr - l.at[1]), 0, 1, 1);
		cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
		rs_write(&rs, "index-and-keys");
	}

	/* A torn tail: the last entry is cut off halfway (the rest is zeros). */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.at[5] + (l.im.wr.len - l.at[5]) / 2);
	rs_write(&rs, "torn-tail");

	/* Torn in the header of the last entry. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_REOPEN, 0);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.at[5] + 12);
	rs_write(&rs, "torn-header");

	/* A bad CRC in the middle: everything from the third entry goes. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs.body.p[l.at[2] + 100] ^= 0x10;
	rs_write(&rs, "bad-crc-middle");

	/* The same bad byte, but resealed: the entry is "valid" again. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, FZ_REC2_FIX_CRC | use_all);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs.body.p[l.at[2] + 100] ^= 0x10;
	rs_write(&rs, "bad-byte-resealed");

	/* An entry of a newer version (checksum valid): the open is refused. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR, 0);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs.body.p[l.at[3] + 9] = 2;
	rs_write(&rs, "newer-entry-unsealed");
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR, FZ_REC2_FIX_CRC);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs.body.p[l.at[3] + 9] = 2;
	rs_write(&rs, "newer-entry");

	/* A zero-filled log, with and without a checkpoint. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
	rs_write(&rs, "zero-filled");
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
	rs_ckpt(&rs, hdr, 0, 1, 0, 0);
	rs_write(&rs, "zero-filled-clean");

	/* Garbage after valid entries (not zeros): truncated. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, 0);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.at[2]);
	cfx_write_bytes(&rs.body, "\x48\x00\x00\x00garbage!garbage!", 20);
	rs_write(&rs, "garbage-tail");

	/* An entry that does not continue its queue. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, FZ_REC2_FIX_CRC);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	cfx_store_le64(rs.body.p + l.at[3] + 24, 99);
	rs_write(&rs, "offset-gap");

	/* An entry whose topic is not a valid name (checksum resealed). */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, FZ_REC2_FIX_CRC);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs.body.p[l.at[1] + 64] = '/';
	rs_write(&rs, "bad-topic-name");

	/* Entries up to an end marker and no next segment. */
	{
		struct img im;
		img_init(&im, hdr);
		cfx_write_bytes(&im.wr, l.im.wr.p, l.at[3]);
		img_end(&im, (uint32_t)(seg - hdr - im.wr.len));
		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
		cfx_write_bytes(&rs.body, im.wr.p, im.wr.len);
		rs_write(&rs, "end-marker-no-next");

		/* With an empty next segment: the log continues there. */
		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_EXTRA_SEG | check_all, use_all);
		cfx_write_bytes(&rs.body, im.wr.p, im.wr.len);
		rs_write(&rs, "end-marker-empty-next");
		cfx_writer_free(&im.wr);
	}

	/* No end marker but a later segment: the later segment is deleted. */
	rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | FZ_REC_EXTRA_SEG | check_all, use_all);
	cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
	rs_write(&rs, "later-segment-dropped");

	/* Two segments: entries, an end marker, more entries in segment 1. */
	{
		struct img a, b;
		uint32_t cnt;

		img_init(&a, hdr);
		cfx_write_bytes(&a.wr, l.im.wr.p, l.at[4]);
		img_end(&a, (uint32_t)(seg - hdr - a.wr.len));
		img_init(&b, seg + hdr);
		img_entry(&b, "orders", 0, l.first[4], T0_MS + 10, SET_PROPS, &cnt);
		img_entry(&b, "audit", 0, l.first[2] + l.count[2], T0_MS + 11, SET_MANY, NULL);
		img_entry(&b, "orders", 0, l.first[4] + cnt, T0_MS + 12, SET_BIG, NULL);

		rs_init(&rs, FZ_REC_LAYOUT_SPLIT | check_all, use_all);
		cfx_store_le16(rs.pre + 2, (uint16_t)a.wr.len);
		cfx_write_bytes(&rs.body, a.wr.p, a.wr.len);
		cfx_write_bytes(&rs.body, b.wr.p, b.wr.len);
		rs_write(&rs, "two-segments");

		/* Checkpoint in segment 1, unclean. */
		rs_init(&rs, FZ_REC_LAYOUT_SPLIT | check_all, use_all);
		cfx_store_le16(rs.pre + 2, (uint16_t)a.wr.len);
		rs_ckpt(&rs, seg + hdr + cfx_load_le32(b.wr.p), 0, 0, 0, 0);
		cfx_write_bytes(&rs.body, a.wr.p, a.wr.len);
		cfx_write_bytes(&rs.body, b.wr.p, b.wr.len);
		rs_write(&rs, "two-segments-ckpt");

		/* Segment 1 torn in its second entry; a third, empty segment follows. */
		rs_init(&rs, FZ_REC_LAYOUT_SPLIT | FZ_REC_EXTRA_SEG | check_all, use_all);
		cfx_store_le16(rs.pre + 2, (uint16_t)a.wr.len);
		cfx_write_bytes(&rs.body, a.wr.p, a.wr.len);
		cfx_write_bytes(&rs.body, b.wr.p, cfx_load_le32(b.wr.p) + 100);
		rs_write(&rs, "two-segments-torn");
		cfx_writer_free(&a.wr);
		cfx_writer_free(&b.wr);
	}

	/* Whole first segments, header included. */
	{
		uint8_t *s0 = calloc(1, seg);
		struct cfx_seg_header h = { .version = CFX_SEG_VERSION, .base_pos = 0,
					    .segment_bytes = seg, .created_ms = T0_MS };

		if (!s0)
			die("out of memory");
		cfx_seg_header_encode(s0, &h);
		memcpy(s0 + hdr, l.im.wr.p, l.im.wr.len);
		rs_init(&rs, FZ_REC_LAYOUT_RAW_SEG | check_all, use_all);
		cfx_write_bytes(&rs.body, s0, seg);
		rs_write(&rs, "raw-segment");

		/* Only the used part: the target pads with zeros. */
		rs_init(&rs, FZ_REC_LAYOUT_RAW_SEG | check_all, FZ_REC2_FIX_CRC);
		cfx_write_bytes(&rs.body, s0, hdr + l.at[3]);
		rs_write(&rs, "raw-segment-short");

		/* A segment header of a newer format (the encoder writes only ours). */
		cfx_store_le32(s0 + 4, CFX_SEG_VERSION + 1);
		cfx_store_le32(s0 + 60, cfx_crc32c(0, s0, 60));
		rs_init(&rs, FZ_REC_LAYOUT_RAW_SEG, 0);
		cfx_write_bytes(&rs.body, s0, hdr + l.at[1]);
		rs_write(&rs, "raw-segment-newer");

		/* A header whose base or size disagrees with the file. */
		h.base_pos = 8;
		cfx_seg_header_encode(s0, &h);
		rs_init(&rs, FZ_REC_LAYOUT_RAW_SEG, 0);
		cfx_write_bytes(&rs.body, s0, hdr + l.at[1]);
		rs_write(&rs, "raw-segment-bad-base");

		/* A file of another size with a header that says so. */
		h.base_pos = 0;
		h.segment_bytes = 4096;
		cfx_seg_header_encode(s0, &h);
		rs_init(&rs, FZ_REC_LAYOUT_RAW_FILE | check_all, use_all);
		cfx_write_bytes(&rs.body, s0, 4096);
		rs_write(&rs, "raw-file-4096");

		/* A file shorter than its header. */
		rs_init(&rs, FZ_REC_LAYOUT_RAW_FILE, 0);
		cfx_write_bytes(&rs.body, s0, 40);
		rs_write(&rs, "raw-file-short");
		free(s0);
	}

	/* Raw checkpoints: valid, damaged, newer, beyond the log. */
	{
		struct cfx_checkpoint ck = { .durable_pos = hdr + l.at[2], .log_end_pos = end,
					     .clean = 0, .written_ms = T0_MS };

		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, use_all);
		rs_ckpt_raw(&rs, &ck);
		cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
		rs_write(&rs, "ckpt-raw");

		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR | check_all, 0);
		rs_ckpt_raw(&rs, &ck);
		rs.pre[FZ_REC_CKPT_OFF + 9] ^= 0x01;
		cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
		rs_write(&rs, "ckpt-raw-damaged");

		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR, FZ_REC2_FIX_CRC);
		rs_ckpt_raw(&rs, &ck);
		rs.pre[FZ_REC_CKPT_OFF + 4] = 2;
		cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
		rs_write(&rs, "ckpt-raw-newer");

		ck.durable_pos = 3 * seg;
		ck.log_end_pos = 3 * seg;
		rs_init(&rs, FZ_REC_LAYOUT_AFTER_HDR, 0);
		rs_ckpt_raw(&rs, &ck);
		cfx_write_bytes(&rs.body, l.im.wr.p, l.im.wr.len);
		rs_write(&rs, "ckpt-beyond-log");
	}
	cfx_writer_free(&l.im.wr);
}

/* ------------------------------------------------------------------------
 * fuzz_compress seeds
 * ------------------------------------------------------------------------ */

/* Codec variants: the four codecs, snappy in both framings. */
static const struct {
	const char *name;
	int codec, xerial;
} comp_vars[] = {
	{ "gzip", CFX_COMPRESS_GZIP, 0 },     { "snappy", CFX_COMPRESS_SNAPPY, 0 },
	{ "xerial", CFX_COMPRESS_SNAPPY, 1 }, { "lz4", CFX_COMPRESS_LZ4, 0 },
	{ "zstd", CFX_COMPRESS_ZSTD, 0 },
};

static void comp_seed(const char *name, uint8_t ctrl, uint8_t arg, const uint8_t *p, size_t len)
{
	uint8_t *buf = cfx_malloc(len + FZ_COMP_CTRL_BYTES);

	buf[0] = ctrl;
	buf[1] = arg;
	if (len)
		memcpy(buf + FZ_COMP_CTRL_BYTES, p, len);
	write_seed("fuzz_compress", name, buf, len + FZ_COMP_CTRL_BYTES);
	cfx_free(buf);
}

static void gen_compress(void)
{
	static uint8_t zeros[16384];
	struct cfx_writer wr, z;
	char name[64];

	cfx_writer_init(&wr, 4096);
	cfx_writer_init(&z, 4096);
	for (size_t v = 0; v < sizeof comp_vars / sizeof comp_vars[0]; v++) {
		int codec = comp_vars[v].codec, xerial = comp_vars[v].xerial;

		/* Records sections of every message set, read back as batches. */
		for (int set = 0; set < SET_COUNT; set++) {
			struct cfx_batch_info info;
			uint8_t ctrl = (uint8_t)codec;

			cfx_writer_reset(&wr);
			cfx_writer_reset(&z);
			info = put_set(&wr, (enum msgset)set);
			fz_compress(codec, xerial, 256, wr.p + CFX_KBATCH_HEADER_BYTES,
				    wr.len - CFX_KBATCH_HEADER_BYTES, &z);
			if (info.count <= 16)
				ctrl |= FZ_COMP_AS_BATCH;
			snprintf(name, sizeof name, "%s-%s", comp_vars[v].name, set_names[set]);
			comp_seed(name, ctrl, (uint8_t)(info.count - 1), z.p, z.len);
			if (set == SET_RICH) {
				/* Cut in half; one byte short. */
				snprintf(name, sizeof name, "%s-truncated", comp_vars[v].name);
				comp_seed(name, ctrl, (uint8_t)(info.count - 1), z.p, z.len / 2);
				snprintf(name, sizeof name, "%s-short-1", comp_vars[v].name);
				comp_seed(name, ctrl, (uint8_t)(info.count - 1), z.p, z.len - 1);
				/* Two streams in a row. */
				fz_compress(codec, xerial, 256, wr.p + CFX_KBATCH_HEADER_BYTES,
					    wr.len - CFX_KBATCH_HEADER_BYTES, &z);
				snprintf(name, sizeof name, "%s-twice", comp_vars[v].name);
				comp_seed(name, (uint8_t)codec, 0, z.p, z.len);
			}
		}
		/* Much more output than the limit (512 bytes), from little input. */
		cfx_writer_reset(&z);
		fz_compress(codec, xerial, 4096, zeros, sizeof zeros, &z);
		snprintf(name, sizeof name, "%s-bomb", comp_vars[v].name);
		comp_seed(name, (uint8_t)(codec | FZ_COMP_TINY_LIMIT), 8, z.p, z.len);
		/* Nothing at all. */
		snprintf(name, sizeof name, "%s-empty", comp_vars[v].name);
		comp_seed(name, (uint8_t)codec, 0, NULL, 0);
	}
	/* Codecs that do not exist. */
	comp_seed("codec-5", 5, 0, (const uint8_t *)"\x1f\x8b\x08\x00", 4);
	comp_seed("codec-7", 7, 0, NULL, 0);
	cfx_writer_free(&z);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * fuzz_mqtt_packet seeds
 *
 * Whole sessions in both versions and both directions, written by the
 * codec's encoders with every property set, then near misses written by
 * hand: each names the check it sits next to.
 * ------------------------------------------------------------------------ */

static void mq_seed(const char *name, uint8_t ctrl, const uint8_t *p, size_t len)
{
	uint8_t *buf = cfx_malloc(len + FZ_MQTT_CTRL_BYTES);

	buf[0] = ctrl;
	if (len)
		memcpy(buf + FZ_MQTT_CTRL_BYTES, p, len);
	write_seed("fuzz_mqtt_packet", name, buf, len + FZ_MQTT_CTRL_BYTES);
	cfx_free(buf);
}

#define MQ_RAW(name, ctrl, ...) \
	mq_seed((name), (ctrl), (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }))

static const struct mqtt_user_prop mq_users[] = {
	{ { (const uint8_t *)"region", 6 }, { (const uint8_t *)"eu-west", 7 } },
	{ { (const uint8_t *)"trace", 5 }, { (const uint8_t *)"00f067aa0ba902b7", 16 } },
};
static const uint32_t mq_sub_ids[] = { 1, 300, 268435455 };

#define MQ_SET(p, NAME, field, value)                   \
	do {                                            \
		(p)->present |= MQTT_PROP_BIT(NAME);    \
		(p)->field = (value);                   \
	} while (0)

static void mq_users_on(struct mqtt_props *p)
{
	p->user_props = mq_users;
	p->user_prop_count = 2;
}

/* What a client sends in one session, CONNECT first. */
static void mq_client_session(struct cfx_writer *wr, int version, int auth)
{
	static const struct mqtt_subscription subs[] = {
		{ .filter = { (const uint8_t *)"sensors/+/temp", 14 }, .qos = 1, .retain_handling = 1 },
		{ .filter = { (const uint8_t *)"$share/workers/jobs/#", 21 }, .qos = 2,
		  .retain_as_published = 1 },
		{ .filter = { (const uint8_t *)"#", 1 }, .qos = 0, .no_local = 1 },
	};
	int v5 = version == MQTT_V5;
	struct mqtt_connect c = { .version = (uint8_t)version, .clean_start = 1, .keep_alive_s = 30 };
	struct mqtt_subscribe sub = { .packet_id = 1, .topic_count = v5 ? 3 : 2, .topics = subs };
	struct mqtt_publish pub = { .topic = V("sensors/kitchen/temp"), .payload = V("21.5") };
	struct mqtt_ack ack = { .packet_id = 2 };
	struct mqtt_disconnect dc = { 0 };

	c.client_id = V("seed-client");
	c.has_will = 1;
	c.will.qos = 1;
	c.will.retain = 1;
	c.will.topic = V("clients/seed-client/status");
	c.will.payload = V("offline");
	c.has_username = 1;
	c.username = V("user");
	c.has_password = 1;
	c.password = V("secret");
	if (v5) {
		MQ_SET(&c.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 3600);
		MQ_SET(&c.props, RECEIVE_MAXIMUM, receive_max, 32);
		MQ_SET(&c.props, MAXIMUM_PACKET_SIZE, max_packet_bytes, 1048576);
		MQ_SET(&c.props, TOPIC_ALIAS_MAXIMUM, topic_alias_max, 8);
		MQ_SET(&c.props, REQUEST_RESPONSE_INFORMATION, request_response_info, 1);
		MQ_SET(&c.props, REQUEST_PROBLEM_INFORMATION, request_problem_info, 1);
		if (auth) {
			MQ_SET(&c.props, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-256"));
			MQ_SET(&c.props, AUTHENTICATION_DATA, auth_data, V("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
		}
		mq_users_on(&c.props);
		MQ_SET(&c.will.props, WILL_DELAY_INTERVAL, will_delay_s, 10);
		MQ_SET(&c.will.props, PAYLOAD_FORMAT_INDICATOR, payload_format, 1);
		MQ_SET(&c.will.props, MESSAGE_EXPIRY_INTERVAL, message_expiry_s, 600);
		MQ_SET(&c.will.props, CONTENT_TYPE, content_type, V("text/plain"));
		MQ_SET(&c.will.props, RESPONSE_TOPIC, response_topic, V("clients/replies"));
		MQ_SET(&c.will.props, CORRELATION_DATA, correlation_data, V("\x01\x02\x03"));
		mq_users_on(&c.will.props);
	}
	mqtt_encode_connect(wr, &c);
	if (auth) {
		struct mqtt_disconnect a = { .reason = MQTT_RC_CONTINUE_AUTHENTICATION };

		MQ_SET(&a.props, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-256"));
		MQ_SET(&a.props, AUTHENTICATION_DATA, auth_data, V("c=biws,r=rOprNGfwEbeRWgbNEkqO"));
		mqtt_encode_disconnect(wr, version, MQTT_AUTH, &a);
	}
	if (v5) {
		sub.props.sub_ids = mq_sub_ids;
		sub.props.sub_id_count = 1;
		mq_users_on(&sub.props);
	}
	mqtt_encode_subscribe(wr, version, MQTT_SUBSCRIBE, &sub);
	mqtt_encode_publish(wr, version, &pub);
	pub.qos = 1;
	pub.packet_id = 2;
	pub.retain = 1;
	if (v5) {
		MQ_SET(&pub.props, PAYLOAD_FORMAT_INDICATOR, payload_format, 1);
		MQ_SET(&pub.props, MESSAGE_EXPIRY_INTERVAL, message_expiry_s, 60);
		MQ_SET(&pub.props, TOPIC_ALIAS, topic_alias, 1);
		MQ_SET(&pub.props, RESPONSE_TOPIC, response_topic, V("replies/kitchen"));
		MQ_SET(&pub.props, CORRELATION_DATA, correlation_data, V("req-17"));
		MQ_SET(&pub.props, CONTENT_TYPE, content_type, V("application/json"));
		mq_users_on(&pub.props);
	}
	mqtt_encode_publish(wr, version, &pub);
	if (v5) {
		/* The alias stands in for the topic now. */
		pub.topic = V("");
		pub.dup = 1;
	}
	pub.qos = 2;
	pub.packet_id = 3;
	mqtt_encode_publish(wr, version, &pub);
	mqtt_encode_ack(wr, version, MQTT_PUBACK, &ack);
	ack.packet_id = 3;
	mqtt_encode_ack(wr, version, MQTT_PUBREC, &ack);
	if (v5) {
		ack.reason = MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND;
		MQ_SET(&ack.props, REASON_STRING, reason_string, V("unknown packet id"));
		mq_users_on(&ack.props);
	}
	mqtt_encode_ack(wr, version, MQTT_PUBREL, &ack);
	mqtt_encode_ack(wr, version, MQTT_PUBCOMP, &ack);
	sub.packet_id = 4;
	sub.props.sub_id_count = 0;
	mqtt_encode_subscribe(wr, version, MQTT_UNSUBSCRIBE, &sub);
	mqtt_encode_ping(wr, MQTT_PINGREQ);
	if (v5) {
		dc.reason = MQTT_RC_DISCONNECT_WITH_WILL;
		MQ_SET(&dc.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 0);
		MQ_SET(&dc.props, REASON_STRING, reason_string, V("going away"));
		mq_users_on(&dc.props);
	}
	mqtt_encode_disconnect(wr, version, MQTT_DISCONNECT, &dc);
}

/* What a server sends to a client. */
static void mq_server_session(struct cfx_writer *wr, int version)
{
	int v5 = version == MQTT_V5;
	struct mqtt_connack ca = { .session_present = 1 };
	struct mqtt_suback sa = { .packet_id = 1, .reasons = { (const uint8_t *)"\x01\x02\x80", 3 } };
	struct mqtt_publish pub = { .qos = 1, .packet_id = 7, .topic = V("jobs/42"),
				    .payload = V("{\"run\":true}") };
	struct mqtt_ack ack = { .packet_id = 2 };
	struct mqtt_disconnect dc = { .reason = MQTT_RC_SERVER_MOVED };

	if (v5) {
		MQ_SET(&ca.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 600);
		MQ_SET(&ca.props, RECEIVE_MAXIMUM, receive_max, 16);
		MQ_SET(&ca.props, MAXIMUM_QOS, max_qos, 1);
		MQ_SET(&ca.props, RETAIN_AVAILABLE, retain_available, 1);
		MQ_SET(&ca.props, MAXIMUM_PACKET_SIZE, max_packet_bytes, 262144);
		MQ_SET(&ca.props, ASSIGNED_CLIENT_IDENTIFIER, assigned_client_id, V("auto-7f3c"));
		MQ_SET(&ca.props, TOPIC_ALIAS_MAXIMUM, topic_alias_max, 10);
		MQ_SET(&ca.props, REASON_STRING, reason_string, V("welcome"));
		MQ_SET(&ca.props, WILDCARD_SUBSCRIPTION_AVAILABLE, wildcard_sub_available, 1);
		MQ_SET(&ca.props, SUBSCRIPTION_IDENTIFIER_AVAILABLE, sub_id_available, 1);
		MQ_SET(&ca.props, SHARED_SUBSCRIPTION_AVAILABLE, shared_sub_available, 1);
		MQ_SET(&ca.props, SERVER_KEEP_ALIVE, server_keep_alive_s, 60);
		MQ_SET(&ca.props, RESPONSE_INFORMATION, response_info, V("resp/auto-7f3c"));
		MQ_SET(&ca.props, SERVER_REFERENCE, server_reference, V("broker-2:1883"));
		MQ_SET(&ca.props, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-256"));
		MQ_SET(&ca.props, AUTHENTICATION_DATA, auth_data, V("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="));
		mq_users_on(&ca.props);
		sa.reasons = (struct cfx_view){ (const uint8_t *)"\x01\x02\x97\x9e", 4 };
		MQ_SET(&sa.props, REASON_STRING, reason_string, V("partly granted"));
		pub.props.sub_ids = mq_sub_ids;
		pub.props.sub_id_count = 3;
		MQ_SET(&pub.props, TOPIC_ALIAS, topic_alias, 2);
		mq_users_on(&pub.props);
		MQ_SET(&dc.props, SERVER_REFERENCE, server_reference, V("broker-3:1883"));
		MQ_SET(&dc.props, REASON_STRING, reason_string, V("moved"));
	}
	mqtt_encode_connack(wr, version, &ca);
	mqtt_encode_suback(wr, version, MQTT_SUBACK, &sa);
	mqtt_encode_publish(wr, version, &pub);
	mqtt_encode_ack(wr, version, MQTT_PUBACK, &ack);
	mqtt_encode_ack(wr, version, MQTT_PUBREC, &ack);
	mqtt_encode_ack(wr, version, MQTT_PUBCOMP, &ack);
	sa.packet_id = 4;
	sa.reasons = (struct cfx_view){ (const uint8_t *)"\x00\x11", 2 };
	mqtt_encode_suback(wr, version, MQTT_UNSUBACK, &sa);
	mqtt_encode_ping(wr, MQTT_PINGRESP);
	if (v5) {
		struct mqtt_disconnect a = { .reason = MQTT_RC_SUCCESS };

		MQ_SET(&a.props, AUTHENTICATION_METHOD, auth_method, V("SCRAM-SHA-256"));
		mqtt_encode_disconnect(wr, version, MQTT_AUTH, &a);
	}
	mqtt_encode_disconnect(wr, version, MQTT_DISCONNECT, &dc);
}

static void gen_mqtt(void)
{
	struct cfx_writer wr;

	cfx_writer_init(&wr, 4096);
	mq_client_session(&wr, MQTT_V311, 0);
	mq_seed("v311-client-session", FZ_MQTT_BEFORE_CONNECT, wr.p, wr.len);
	mq_seed("v311-client-session-cut", FZ_MQTT_BEFORE_CONNECT, wr.p, wr.len / 2);
	mq_seed("v311-client-session-small-limit", FZ_MQTT_BEFORE_CONNECT | FZ_MQTT_SMALL_LIMIT,
		wr.p, wr.len);
	cfx_writer_reset(&wr);
	mq_client_session(&wr, MQTT_V5, 0);
	mq_seed("v5-client-session", FZ_MQTT_BEFORE_CONNECT, wr.p, wr.len);
	cfx_writer_reset(&wr);
	mq_client_session(&wr, MQTT_V5, 1);
	mq_seed("v5-client-session-auth", FZ_MQTT_BEFORE_CONNECT, wr.p, wr.len);
	cfx_writer_reset(&wr);
	mq_server_session(&wr, MQTT_V311);
	mq_seed("v311-server-session", FZ_MQTT_FROM_SERVER, wr.p, wr.len);
	cfx_writer_reset(&wr);
	mq_server_session(&wr, MQTT_V5);
	mq_seed("v5-server-session", FZ_MQTT_V5 | FZ_MQTT_FROM_SERVER, wr.p, wr.len);
	/* The same bytes in the wrong direction. */
	mq_seed("v5-server-packets-from-client", FZ_MQTT_V5, wr.p, wr.len);
	cfx_writer_free(&wr);

	/* Near misses, each next to one check (connected v5 unless named). */
	MQ_RAW("connect-mqisdp-3", FZ_MQTT_BEFORE_CONNECT, 0x10, 0x0f, 0x00, 0x06, 'M', 'Q', 'I',
	       's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c, 0x00, 0x01, 'a');
	MQ_RAW("connect-level-6", FZ_MQTT_BEFORE_CONNECT, 0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T',
	       'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x01, 'a');
	MQ_RAW("connect-v311-empty-id-no-clean", FZ_MQTT_BEFORE_CONNECT, 0x10, 0x0c, 0x00, 0x04,
	       'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x3c, 0x00, 0x00);
	MQ_RAW("connect-v311-password-only", FZ_MQTT_BEFORE_CONNECT, 0x10, 0x0f, 0x00, 0x04, 'M',
	       'Q', 'T', 'T', 0x04, 0x42, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x01, 'p');
	MQ_RAW("connect-reserved-flag", FZ_MQTT_BEFORE_CONNECT, 0x10, 0x0d, 0x00, 0x04, 'M', 'Q',
	       'T', 'T', 0x05, 0x03, 0x00, 0x3c, 0x00, 0x00, 0x00);
	MQ_RAW("publish-before-connect", FZ_MQTT_BEFORE_CONNECT, 0x30, 0x03, 0x00, 0x01, 't');
	MQ_RAW("publish-wildcard-topic", FZ_MQTT_V5, 0x30, 0x06, 0x00, 0x03, 'a', '/', '#', 0x00);
	MQ_RAW("publish-qos3", FZ_MQTT_V5, 0x36, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 0x00);
	MQ_RAW("publish-surrogate-topic", 0, 0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80);
	MQ_RAW("publish-duplicate-property", FZ_MQTT_V5, 0x30, 0x08, 0x00, 0x01, 't', 0x04, 0x01,
	       0x01, 0x01, 0x00);
	MQ_RAW("publish-alias-empty-topic", FZ_MQTT_V5, 0x32, 0x09, 0x00, 0x00, 0x00, 0x01, 0x03,
	       0x23, 0x00, 0x05, 'x');
	MQ_RAW("subscribe-no-topic", FZ_MQTT_V5, 0x82, 0x03, 0x00, 0x01, 0x00);
	MQ_RAW("subscribe-bad-filters", FZ_MQTT_V5, 0x82, 0x17, 0x00, 0x01, 0x00, 0x00, 0x05, 'a',
	       '/', '#', '/', 'b', 0x00, 0x00, 0x09, '$', 's', 'h', 'a', 'r', 'e', '/', '/', 'a',
	       0x00);
	MQ_RAW("subscribe-retain-handling-3", FZ_MQTT_V5, 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01,
	       'a', 0x30);
	MQ_RAW("pubrel-bad-flags", 0, 0x60, 0x02, 0x00, 0x01);
	MQ_RAW("length-overlong", 0, 0xc0, 0x80, 0x00);
	MQ_RAW("length-five-bytes", 0, 0x30, 0xff, 0xff, 0xff, 0xff, 0x7f);
	MQ_RAW("length-max", 0, 0x30, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01, 't');
	MQ_RAW("auth-in-v311", 0, 0xf0, 0x00, 0xc0, 0x00);
	MQ_RAW("disconnect-from-server-session-expiry", FZ_MQTT_V5 | FZ_MQTT_FROM_SERVER, 0xe0,
	       0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01);
}

/* ------------------------------------------------------------------------
 * fuzz_mqtt seeds
 *
 * Sessions against the whole front end: a flags byte, then one record per
 * packet, [len u16][first byte][body]: the encoders' packets with their
 * Remaining Length taken out (the target puts it back), or whole frames
 * when the seed's flags say FZ_MQTT_E2E_RAW. Records for the second
 * connection have FZ_MQTT_E2E_CONN_B in their length. Most seeds settle
 * after each record, so that the server's deliveries reach the client
 * before its next packet, which acknowledges them by their packet ids
 * (1, 2... in the order the server sends them).
 * ------------------------------------------------------------------------ */

static struct cfx_writer mqe_seed; /* the seed being written */
static struct cfx_writer mqe_pk;   /* packets encoded, not yet turned into records */

#define MQE_A 0
#define MQE_B 1
#define MQE_SETTLE FZ_MQTT_E2E_SETTLE_EACH

static void mqe_begin(uint8_t flags)
{
	cfx_writer_reset(&mqe_seed);
	cfx_writer_reset(&mqe_pk);
	cfx_write_u8(&mqe_seed, flags);
}

static void mqe_end(const char *name)
{
	write_seed("fuzz_mqtt", name, mqe_seed.p, mqe_seed.len);
}

/* One record of `n` bytes for connection `b`. */
static void mqe_record(int b, const uint8_t *p, size_t n)
{
	if (n > FZ_MQTT_E2E_LEN_MASK)
		die("an MQTT record is too long");
	cfx_write_be16(&mqe_seed, (uint16_t)(n | (b ? FZ_MQTT_E2E_CONN_B : 0)));
	cfx_write_bytes(&mqe_seed, p, n);
}

/* Turns the packets in mqe_pk into records for connection `b`. */
static void mqe_put(int b)
{
	int raw = (mqe_seed.p[0] & FZ_MQTT_E2E_RAW) != 0;
	size_t at = 0, frame;

	while (at < mqe_pk.len) {
		const uint8_t *f = mqe_pk.p + at;
		size_t hdr = 1;
		if (mqtt_frame_check(f, mqe_pk.len - at, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame))
			die("the MQTT encoder wrote a bad frame");
		while (f[hdr] & 0x80)
			hdr++;
		hdr++; /* the type byte and the Remaining Length */
		if (raw) {
			mqe_record(b, f, frame);
		} else {
			cfx_write_be16(&mqe_seed,
				       (uint16_t)((frame - hdr + 1) | (b ? FZ_MQTT_E2E_CONN_B : 0)));
			cfx_write_u8(&mqe_seed, f[0]);
			cfx_write_bytes(&mqe_seed, f + hdr, frame - hdr);
		}
		at += frame;
	}
	cfx_writer_reset(&mqe_pk);
}

#define MQE_RAW(b, ...) \
	mqe_record((b), (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }))

static void mqe_connect(int b, const struct mqtt_connect *c)
{
	mqtt_encode_connect(&mqe_pk, c);
	mqe_put(b);
}

/* A plain CONNECT: no will, no credentials, no properties. */
static void mqe_connect_simple(int b, int version, const char *id, int clean, uint16_t keep_alive_s)
{
	struct mqtt_connect c = { .version = (uint8_t)version, .clean_start = (uint8_t)clean,
				  .keep_alive_s = keep_alive_s, .client_id = V(id) };
	mqe_connect(b, &c);
}

static void mqe_subscribe(int b, int version, uint16_t pid, const char *filter, uint8_t qos)
{
	struct mqtt_subscription e = { .filter = V(filter), .qos = qos };
	struct mqtt_subscribe sub = { .packet_id = pid, .topic_count = 1, .topics = &e };

	mqtt_encode_subscribe(&mqe_pk, version, MQTT_SUBSCRIBE, &sub);
	mqe_put(b);
}

static void mqe_unsubscribe(int b, int version, uint16_t pid, const char *filter)
{
	struct mqtt_subscription e = { .filter = V(filter) };
	struct mqtt_subscribe un = { .packet_id = pid, .topic_count = 1, .topics = &e };

	mqtt_encode_subscribe(&mqe_pk, version, MQTT_UNSUBSCRIBE, &un);
	mqe_put(b);
}

static void mqe_publish(int b, int version, const char *topic, const char *payload, uint8_t qos,
			uint16_t pid, int retain)
{
	struct mqtt_publish pub = { .qos = qos, .packet_id = pid, .retain = (uint8_t)retain,
				    .topic = V(topic), .payload = V(payload) };

	mqtt_encode_publish(&mqe_pk, version, &pub);
	mqe_put(b);
}

static void mqe_ack(int b, int version, int type, uint16_t pid)
{
	struct mqtt_ack ack = { .packet_id = pid };

	mqtt_encode_ack(&mqe_pk, version, type, &ack);
	mqe_put(b);
}

static void mqe_ping(int b)
{
	mqtt_encode_ping(&mqe_pk, MQTT_PINGREQ);
	mqe_put(b);
}

static void mqe_disconnect(int b, int version, uint8_t reason)
{
	struct mqtt_disconnect dc = { .reason = reason };

	mqtt_encode_disconnect(&mqe_pk, version, MQTT_DISCONNECT, &dc);
	mqe_put(b);
}

/* 3.1.1: subscribe a/#, publish QoS 0, 1, 2 to it (and get them back), ping, unsubscribe. */
static void mqe_v311_session(uint8_t flags, const char *name)
{
	int v = MQTT_V311;

	mqe_begin(flags);
	mqe_connect_simple(MQE_A, v, "fz-311", 1, 60);
	mqe_subscribe(MQE_A, v, 1, "a/#", 2);
	mqe_publish(MQE_A, v, "a/b", "zero", 0, 0, 0);
	mqe_publish(MQE_A, v, "a/b", "one", 1, 2, 0);
	mqe_ack(MQE_A, v, MQTT_PUBACK, 1); /* the delivery of "one" */
	mqe_publish(MQE_A, v, "a/b/c", "two", 2, 3, 0);
	mqe_ack(MQE_A, v, MQTT_PUBREL, 3);
	mqe_ack(MQE_A, v, MQTT_PUBREC, 2); /* the delivery of "two" */
	mqe_ack(MQE_A, v, MQTT_PUBCOMP, 2);
	mqe_ping(MQE_A);
	mqe_unsubscribe(MQE_A, v, 4, "a/#");
	mqe_publish(MQE_A, v, "a/b", "unheard", 1, 5, 0);
	mqe_disconnect(MQE_A, v, 0);
	mqe_end(name);
}

/* 5.0 with properties everywhere: topic alias, user properties, subscription
 * identifier, message expiry, session expiry, receive maximum, packet size. */
static void mqe_v5_session(void)
{
	static const struct mqtt_subscription subs[] = {
		{ .filter = { (const uint8_t *)"v5/#", 4 }, .qos = 2, .retain_as_published = 1 },
		{ .filter = { (const uint8_t *)"v5/+/temp", 9 }, .qos = 1, .no_local = 1,
		  .retain_handling = 1 },
	};
	static const uint32_t sub_id[] = { 42 };
	int v = MQTT_V5;
	struct mqtt_connect c = { .version = MQTT_V5, .clean_start = 1, .keep_alive_s = 0,
				  .client_id = V("fz-v5") };
	struct mqtt_subscribe sub = { .packet_id = 1, .topic_count = 2, .topics = subs };
	struct mqtt_publish pub = { .qos = 1, .packet_id = 2, .topic = V("v5/kitchen/temp"),
				    .payload = V("{\"t\":21.5}") };
	struct mqtt_disconnect dc = { .reason = MQTT_RC_NORMAL_DISCONNECTION };

	mqe_begin(MQE_SETTLE);
	MQ_SET(&c.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 60);
	MQ_SET(&c.props, RECEIVE_MAXIMUM, receive_max, 2);
	MQ_SET(&c.props, MAXIMUM_PACKET_SIZE, max_packet_bytes, 2048);
	MQ_SET(&c.props, TOPIC_ALIAS_MAXIMUM, topic_alias_max, 4);
	MQ_SET(&c.props, REQUEST_PROBLEM_INFORMATION, request_problem_info, 1);
	mq_users_on(&c.props);
	mqe_connect(MQE_A, &c);
	sub.props.sub_ids = sub_id;
	sub.props.sub_id_count = 1;
	mq_users_on(&sub.props);
	mqtt_encode_subscribe(&mqe_pk, v, MQTT_SUBSCRIBE, &sub);
	mqe_put(MQE_A);
	MQ_SET(&pub.props, TOPIC_ALIAS, topic_alias, 1);
	MQ_SET(&pub.props, MESSAGE_EXPIRY_INTERVAL, message_expiry_s, 30);
	MQ_SET(&pub.props, PAYLOAD_FORMAT_INDICATOR, payload_format, 1);
	MQ_SET(&pub.props, CONTENT_TYPE, content_type, V("application/json"));
	MQ_SET(&pub.props, RESPONSE_TOPIC, response_topic, V("v5/replies"));
	MQ_SET(&pub.props, CORRELATION_DATA, correlation_data, V("req-1"));
	mq_users_on(&pub.props);
	mqtt_encode_publish(&mqe_pk, v, &pub);
	mqe_put(MQE_A);
	mqe_ack(MQE_A, v, MQTT_PUBACK, 1);
	/* The alias alone names the topic now. */
	pub.topic = V("");
	pub.qos = 2;
	pub.packet_id = 3;
	pub.props.present &= ~MQTT_PROP_BIT(RESPONSE_TOPIC);
	mqtt_encode_publish(&mqe_pk, v, &pub);
	mqe_put(MQE_A);
	mqe_ack(MQE_A, v, MQTT_PUBREL, 3);
	mqe_ack(MQE_A, v, MQTT_PUBREC, 2);
	mqe_ack(MQE_A, v, MQTT_PUBCOMP, 2);
	mqe_ping(MQE_A);
	mqe_unsubscribe(MQE_A, v, 4, "v5/+/temp");
	mqe_unsubscribe(MQE_A, v, 5, "never/subscribed");
	MQ_SET(&dc.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 0);
	MQ_SET(&dc.props, REASON_STRING, reason_string, V("done"));
	mq_users_on(&dc.props);
	mqtt_encode_disconnect(&mqe_pk, v, MQTT_DISCONNECT, &dc);
	mqe_put(MQE_A);
	mqe_end("v5-session-props");
}

/* A persistent session: messages while it is online but unacknowledged,
 * then the same client again on the second connection (session present,
 * the messages sent again). */
static void mqe_persistent(int version, const char *name)
{
	int v = version;
	struct mqtt_connect c = { .version = (uint8_t)version, .clean_start = 0, .keep_alive_s = 30,
				  .client_id = V("fz-persist") };

	mqe_begin(MQE_SETTLE);
	if (v == MQTT_V5)
		MQ_SET(&c.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 3600);
	mqe_connect(MQE_A, &c);
	mqe_subscribe(MQE_A, v, 1, "p/#", 1);
	mqe_publish(MQE_A, v, "p/1", "kept", 1, 1, 0);
	mqe_publish(MQE_A, v, "p/2", "kept too", 2, 2, 0);
	mqe_ack(MQE_A, v, MQTT_PUBREL, 2);
	mqe_disconnect(MQE_A, v, 0);
	mqe_connect(MQE_B, &c);
	mqe_ack(MQE_B, v, MQTT_PUBACK, 1);
	mqe_ack(MQE_B, v, MQTT_PUBACK, 2);
	mqe_ping(MQE_B);
	mqe_disconnect(MQE_B, v, 0);
	mqe_end(name);
}

/* The same client id on both connections while the first is online. */
static void mqe_takeover(uint8_t flags, int clean, const char *name)
{
	int v = MQTT_V5;
	struct mqtt_connect c = { .version = MQTT_V5, .clean_start = (uint8_t)clean,
				  .keep_alive_s = 30, .client_id = V("fz-take") };

	mqe_begin(flags);
	MQ_SET(&c.props, SESSION_EXPIRY_INTERVAL, session_expiry_s, 10);
	mqe_connect(MQE_A, &c);
	mqe_subscribe(MQE_A, v, 1, "t/#", 1);
	mqe_publish(MQE_A, v, "t/1", "before", 1, 1, 0);
	mqe_connect(MQE_B, &c);
	mqe_ping(MQE_A); /* the first connection was taken over */
	mqe_publish(MQE_B, v, "t/2", "after", 1, 1, 0);
	mqe_ack(MQE_B, v, MQTT_PUBACK, 1);
	mqe_disconnect(MQE_B, v, 0);
	mqe_end(name);
}

/* Retained messages: set, delivered on subscribe, cleared, not delivered. */
static void mqe_retained(int version, const char *name)
{
	int v = version;

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, v, "fz-retain", 1, 0);
	mqe_publish(MQE_A, v, "r/lamp", "on", 1, 1, 1);
	mqe_publish(MQE_A, v, "r/door", "open", 0, 0, 1);
	mqe_subscribe(MQE_A, v, 2, "r/#", 1);
	mqe_ack(MQE_A, v, MQTT_PUBACK, 1);
	mqe_publish(MQE_A, v, "r/lamp", "", 1, 3, 1); /* clears it */
	mqe_unsubscribe(MQE_A, v, 4, "r/#");
	mqe_subscribe(MQE_A, v, 5, "r/+", 2);
	mqe_disconnect(MQE_A, v, 0);
	mqe_end(name);
}

/* A will, published when its connection ends badly, to the other client. */
static void mqe_will(int version, int disconnect_with_will, const char *name)
{
	int v = version;
	struct mqtt_connect c = { .version = (uint8_t)version, .clean_start = 1, .keep_alive_s = 10,
				  .client_id = V("fz-will"), .has_will = 1 };

	mqe_begin(MQE_SETTLE);
	c.will.topic = V("w/fz-will/status");
	c.will.payload = V("gone");
	c.will.qos = 1;
	c.will.retain = 1;
	if (v == MQTT_V5) {
		MQ_SET(&c.will.props, WILL_DELAY_INTERVAL, will_delay_s, 0);
		MQ_SET(&c.will.props, MESSAGE_EXPIRY_INTERVAL, message_expiry_s, 60);
		MQ_SET(&c.will.props, CONTENT_TYPE, content_type, V("text/plain"));
		mq_users_on(&c.will.props);
	}
	mqe_connect(MQE_A, &c);
	mqe_connect_simple(MQE_B, v, "fz-watcher", 1, 0);
	mqe_subscribe(MQE_B, v, 1, "w/#", 1);
	if (disconnect_with_will)
		mqe_disconnect(MQE_A, v, MQTT_RC_DISCONNECT_WITH_WILL);
	else
		mqe_publish(MQE_A, v, "w/#", "a wildcard in a topic name", 0, 0, 0);
	mqe_ack(MQE_B, v, MQTT_PUBACK, 1);
	mqe_disconnect(MQE_B, v, 0);
	mqe_end(name);
}

/* Two members of one shared subscription, and a plain subscriber. */
static void mqe_shared(int version, const char *name)
{
	int v = version;

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, v, "fz-share-1", 1, 0);
	mqe_connect_simple(MQE_B, v, "fz-share-2", 1, 0);
	mqe_subscribe(MQE_A, v, 1, "$share/workers/jobs/#", 1);
	mqe_subscribe(MQE_B, v, 1, "$share/workers/jobs/#", 1);
	mqe_subscribe(MQE_B, v, 2, "jobs/+", 0);
	mqe_publish(MQE_A, v, "jobs/1", "first", 1, 2, 0);
	mqe_publish(MQE_A, v, "jobs/2", "second", 1, 3, 0);
	mqe_publish(MQE_B, v, "jobs/3", "third", 0, 0, 0);
	mqe_ack(MQE_A, v, MQTT_PUBACK, 1);
	mqe_ack(MQE_B, v, MQTT_PUBACK, 1);
	mqe_unsubscribe(MQE_A, v, 4, "$share/workers/jobs/#");
	mqe_disconnect(MQE_A, v, 0);
	mqe_disconnect(MQE_B, v, 0);
	mqe_end(name);
}

static void gen_mqtt_e2e(void)
{
	cfx_writer_init(&mqe_seed, 1024);
	cfx_writer_init(&mqe_pk, 1024);

	mqe_v311_session(MQE_SETTLE, "v311-session");
	mqe_v311_session(0, "v311-session-no-settle");
	mqe_v311_session(MQE_SETTLE | 1, "v311-session-bytewise");
	mqe_v311_session(MQE_SETTLE | 3, "v311-session-pieces");
	mqe_v311_session(MQE_SETTLE | FZ_MQTT_E2E_RAW, "v311-session-raw");
	mqe_v311_session(FZ_MQTT_E2E_CLOSE_FIRST, "v311-session-close-first");
	mqe_v5_session();
	mqe_persistent(MQTT_V311, "v311-persistent");
	mqe_persistent(MQTT_V5, "v5-persistent");
	mqe_takeover(MQE_SETTLE, 0, "v5-takeover");
	mqe_takeover(MQE_SETTLE, 1, "v5-takeover-clean");
	/* The first connection's PINGREQ arrives before the kick runs. */
	mqe_takeover(FZ_MQTT_E2E_BATCH, 0, "v5-takeover-batch");
	mqe_v311_session(FZ_MQTT_E2E_BATCH | 2, "v311-session-batch");
	mqe_retained(MQTT_V311, "v311-retained");
	mqe_retained(MQTT_V5, "v5-retained");
	mqe_will(MQTT_V311, 0, "v311-will");
	mqe_will(MQTT_V5, 0, "v5-will");
	mqe_will(MQTT_V5, 1, "v5-will-disconnect");
	mqe_shared(MQTT_V311, "v311-shared");
	mqe_shared(MQTT_V5, "v5-shared");

	/* Near misses (records: first byte, then the body). */
	mqe_begin(0);
	mqe_publish(MQE_A, MQTT_V311, "early", "x", 0, 0, 0);
	mqe_end("bad-publish-before-connect");

	mqe_begin(0);
	MQE_RAW(MQE_A, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x01,
		'a');
	mqe_end("bad-connect-level-6");

	mqe_begin(0);
	MQE_RAW(MQE_A, 0x10, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c, 0x00,
		0x01, 'a');
	mqe_end("bad-connect-mqisdp");

	mqe_begin(0);
	mqe_connect_simple(MQE_A, MQTT_V5, "", 0, 0);
	mqe_end("bad-connect-v5-empty-id-not-clean");

	mqe_begin(0);
	mqe_connect_simple(MQE_A, MQTT_V5, "", 1, 0); /* an id is assigned */
	mqe_connect_simple(MQE_A, MQTT_V5, "again", 1, 0);
	mqe_end("bad-second-connect");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V5, "fz-alias", 1, 0);
	/* alias 1 unknown: an empty topic it cannot name */
	MQE_RAW(MQE_A, 0x30, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, 'x');
	mqe_end("bad-alias-unknown");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V5, "fz-alias", 1, 0);
	MQE_RAW(MQE_A, 0x30, 0x00, 0x01, 't', 0x03, 0x23, 0x00, 0x41, 'x'); /* alias 65 */
	mqe_end("bad-alias-too-large");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V311, "fz-sys", 1, 0);
	mqe_publish(MQE_A, MQTT_V311, "$SYS/broker/load", "1", 1, 1, 0);
	mqe_end("bad-publish-dollar-topic");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V5, "fz-qos2", 1, 0);
	mqe_publish(MQE_A, MQTT_V5, "d/1", "once", 2, 7, 0);
	mqe_publish(MQE_A, MQTT_V5, "d/1", "once", 2, 7, 0); /* a resend: stored already */
	mqe_ack(MQE_A, MQTT_V5, MQTT_PUBREL, 7);
	mqe_ack(MQE_A, MQTT_V5, MQTT_PUBREL, 7);  /* unknown now */
	mqe_ack(MQE_A, MQTT_V5, MQTT_PUBREC, 99); /* nothing sent with 99 */
	mqe_ack(MQE_A, MQTT_V5, MQTT_PUBACK, 98);
	mqe_end("qos2-resend-and-unknown-ids");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V5, "fz-big", 1, 0);
	{
		static char big[5000];
		memset(big, 'z', sizeof big - 1);
		mqe_publish(MQE_A, MQTT_V5, "big/one", big, 0, 0, 0); /* over 4096: too large */
	}
	mqe_end("bad-packet-too-large");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V5, "fz-auth", 1, 0);
	MQE_RAW(MQE_A, 0xf0, 0x18, 0x00);
	mqe_end("bad-auth");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V5, "fz-filters", 1, 0);
	/* SUBSCRIBE pid 1: "a/#/b" (invalid), "+" QoS 1, "$share/g/#" QoS 2 */
	MQE_RAW(MQE_A, 0x82, 0x00, 0x01, 0x00, 0x00, 0x05, 'a', '/', '#', '/', 'b', 0x00, 0x00, 0x01,
		'+', 0x01, 0x00, 0x0a, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', '#', 0x02);
	mqe_end("subscribe-mixed-filters");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V311, "fz-pubrel", 1, 0);
	MQE_RAW(MQE_A, 0x60, 0x00, 0x01); /* PUBREL without its flags */
	mqe_end("bad-pubrel-flags");

	mqe_begin(MQE_SETTLE | FZ_MQTT_E2E_RAW);
	mqe_connect_simple(MQE_A, MQTT_V311, "fz-varint", 1, 0);
	MQE_RAW(MQE_A, 0xc0, 0x80, 0x00); /* an overlong Remaining Length */
	mqe_end("bad-overlong-length");

	mqe_begin(MQE_SETTLE);
	mqe_connect_simple(MQE_A, MQTT_V311, "fz-torn", 1, 0);
	mqe_subscribe(MQE_A, MQTT_V311, 1, "torn/#", 0);
	cfx_write_be16(&mqe_seed, 40); /* a PUBLISH announced longer than what follows */
	cfx_write_bytes(&mqe_seed, "\x30\x00\x04torn", 7);
	mqe_end("torn-last-record");

	mqe_begin(MQE_SETTLE);
	{
		struct mqtt_connect c = { .version = MQTT_V5, .clean_start = 1,
					  .client_id = V("fz-tiny") };
		MQ_SET(&c.props, MAXIMUM_PACKET_SIZE, max_packet_bytes, 16);
		MQ_SET(&c.props, RECEIVE_MAXIMUM, receive_max, 1);
		mqe_connect(MQE_A, &c);
	}
	mqe_subscribe(MQE_A, MQTT_V5, 1, "tiny/#", 1);
	mqe_publish(MQE_A, MQTT_V5, "tiny/a", "a payload too long to deliver", 1, 2, 0);
	mqe_publish(MQE_A, MQTT_V5, "tiny/b", "x", 1, 3, 0);
	mqe_ack(MQE_A, MQTT_V5, MQTT_PUBACK, 1);
	mqe_end("v5-client-max-packet-small");

	cfx_writer_free(&mqe_pk);
	cfx_writer_free(&mqe_seed);
}

int main(int argc, char **argv)
{
	out_dir = argc > 1 ? argv[1] : CFX_FUZZ_CORPUS_DIR;
	gen_batch();
	gen_entry();
	gen_recovery();
	gen_compress();
	gen_mqtt();
	gen_mqtt_e2e();
	printf("gen_corpus: wrote %u seeds under %s\n", seeds_written, out_dir);
	return 0;
}
