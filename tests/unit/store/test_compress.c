/*
 * Unit tests for src/store/compress.c (decompression of RecordBatch records
 * sections), and for the store's message read path over compressed batches
 * (store.c: load_entry; batch.c: cfx_batch_open_records).
 *
 * The compressed inputs are made here with each library's own compressor,
 * the way a Kafka producer makes them: the records section of a batch that
 * cfx_batch_encode wrote is compressed, the attributes get the codec, and
 * Kafka's CRC is computed again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "store/compress.h"
#include "store_test_util.h"

/* Codec variants a producer may write. */
enum variant {
	VAR_GZIP,
	VAR_SNAPPY_RAW,
	VAR_SNAPPY_XERIAL,
	VAR_LZ4,
	VAR_ZSTD,	     /* content size in the frame header */
	VAR_ZSTD_STREAMED,   /* no content size */
	VAR_COUNT,
};

static const char *const var_names[VAR_COUNT] = {
	"gzip", "snappy-raw", "snappy-xerial", "lz4", "zstd", "zstd-streamed",
};

static const int var_codec[VAR_COUNT] = {
	CFX_COMPRESS_GZIP, CFX_COMPRESS_SNAPPY, CFX_COMPRESS_SNAPPY,
	CFX_COMPRESS_LZ4,  CFX_COMPRESS_ZSTD,	CFX_COMPRESS_ZSTD,
};

/* Input bytes per xerial block: small, so a test batch spans several blocks. */
#define XERIAL_BLOCK_BYTES 1000u

/* ------------------------------------------------------------------------
 * Compressors (test side)
 * ------------------------------------------------------------------------ */

static void compress_gzip(struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	z_stream zs;
	uLong bound;

	memset(&zs, 0, sizeof zs);
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
			 Z_OK);
	bound = deflateBound(&zs, (uLong)len) + 32;
	zs.next_in = (Bytef *)p;
	zs.avail_in = (uInt)len;
	zs.next_out = cfx_writer_reserve(wr, bound);
	zs.avail_out = (uInt)bound;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	wr->len += bound - zs.avail_out;
	deflateEnd(&zs);
}

static void compress_snappy_block(struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	size_t n = snappy_max_compressed_length(len);
	uint8_t *d = cfx_writer_reserve(wr, n);

	assert_int_equal(snappy_compress((const char *)p, len, (char *)d, &n), SNAPPY_OK);
	wr->len += n;
}

static void xerial_header(struct cfx_writer *wr)
{
	static const uint8_t magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };

	cfx_write_bytes(wr, magic, sizeof magic);
	cfx_write_be32(wr, 1); /* version */
	cfx_write_be32(wr, 1); /* compatible version */
}

static void compress_snappy_xerial(struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	xerial_header(wr);
	for (size_t off = 0; off < len; off += XERIAL_BLOCK_BYTES) {
		size_t n = len - off < XERIAL_BLOCK_BYTES ? len - off : XERIAL_BLOCK_BYTES;
		size_t at = wr->len;

		cfx_write_be32(wr, 0); /* back-patched */
		compress_snappy_block(wr, p + off, n);
		cfx_store_be32(wr->p + at, (uint32_t)(wr->len - at - 4));
	}
}

static void compress_lz4(struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	size_t bound = LZ4F_compressFrameBound(len, NULL);
	size_t n = LZ4F_compressFrame(cfx_writer_reserve(wr, bound), bound, p, len, NULL);

	assert_false(LZ4F_isError(n));
	wr->len += n;
}

static void compress_zstd(struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	size_t bound = ZSTD_compressBound(len);
	size_t n = ZSTD_compress(cfx_writer_reserve(wr, bound), bound, p, len, 3);

	assert_false(ZSTD_isError(n));
	wr->len += n;
}

/* A zstd frame that does not declare its content size (a streaming producer). */
static void compress_zstd_streamed(struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	size_t bound = ZSTD_compressBound(len) + 64, left;
	ZSTD_inBuffer in = { p, len, 0 };
	ZSTD_outBuffer out = { cfx_writer_reserve(wr, bound), bound, 0 };

	assert_non_null(cctx);
	assert_int_equal(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0), 0);
	do {
		left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
		assert_false(ZSTD_isError(left));
	} while (left != 0);
	wr->len += out.pos;
	ZSTD_freeCCtx(cctx);
	assert_int_equal(ZSTD_getFrameContentSize(wr->p + wr->len - out.pos, out.pos),
			 ZSTD_CONTENTSIZE_UNKNOWN);
}

static void compress_var(enum variant v, struct cfx_writer *wr, const uint8_t *p, size_t len)
{
	switch (v) {
	case VAR_GZIP:
		compress_gzip(wr, p, len);
		break;
	case VAR_SNAPPY_RAW:
		compress_snappy_block(wr, p, len);
		break;
	case VAR_SNAPPY_XERIAL:
		compress_snappy_xerial(wr, p, len);
		break;
	case VAR_LZ4:
		compress_lz4(wr, p, len);
		break;
	case VAR_ZSTD:
		compress_zstd(wr, p, len);
		break;
	case VAR_ZSTD_STREAMED:
		compress_zstd_streamed(wr, p, len);
		break;
	default:
		fail();
	}
}

/* ------------------------------------------------------------------------
 * Test messages and batches
 * ------------------------------------------------------------------------ */

#define MSGS_N 40

/* Storage for the deterministic messages of one batch. */
struct msgset {
	struct cfx_msg m[MSGS_N];
	struct cfx_prop props[MSGS_N][2];
	char key[MSGS_N][32], body[MSGS_N][400], tag[MSGS_N][16], id[MSGS_N][32], pv[MSGS_N][32];
	uint32_t n;
};

/* Message i of set `salt`: nulls, flags and properties vary from one to the next. */
static void msgset_make(struct msgset *s, uint32_t n, uint32_t salt)
{
	assert_true(n <= MSGS_N);
	memset(s, 0, sizeof *s);
	s->n = n;
	for (uint32_t i = 0; i < n; i++) {
		struct cfx_msg *m = &s->m[i];
		uint32_t k = salt * 1000 + i;
		size_t blen;

		snprintf(s->key[i], sizeof s->key[i], "key-%u other-%u", k, k % 7);
		m->key = CFX_VIEW_STR(s->key[i]);
		m->key_null = i % 5 == 3;
		blen = (size_t)snprintf(s->body[i], sizeof s->body[i], "value %u:", k);
		for (size_t j = blen; j < blen + (k * 13) % 300; j++)
			s->body[i][j] = (char)('a' + (j * 7 + k) % 26);
		m->body = (struct cfx_view){ (const uint8_t *)s->body[i], blen + (k * 13) % 300 };
		m->body_null = i % 7 == 5;
		if (i % 4) {
			snprintf(s->tag[i], sizeof s->tag[i], "tag%u", i % 3);
			m->tag = CFX_VIEW_STR(s->tag[i]);
		}
		snprintf(s->id[i], sizeof s->id[i], "id-%u", k);
		m->msg_id = CFX_VIEW_STR(s->id[i]);
		m->flag = i % 3 ? k : 0;
		/* Timestamps need not increase within a batch. */
		m->born_ms = 1700000000000LL + (int64_t)((k * 7919) % 5000) - 2500;
		snprintf(s->pv[i], sizeof s->pv[i], "pv-%u", k);
		s->props[i][0] = (struct cfx_prop){ CFX_VIEW_STR("p1"), CFX_VIEW_STR(s->pv[i]) };
		s->props[i][1] = (struct cfx_prop){ CFX_VIEW_STR("color"),
						    CFX_VIEW_STR(i % 2 ? "red" : "") };
		m->props = s->props[i];
		m->prop_count = i % 3;
		if (m->prop_count > 2)
			m->prop_count = 2;
	}
}

static void assert_view(struct cfx_view v, struct cfx_view want)
{
	assert_int_equal(v.len, want.len);
	if (want.len)
		assert_memory_equal(v.p, want.p, want.len);
}

/* Checks a decoded message against the one it was encoded from. */
static void assert_msg(const struct cfx_msg_view *v, const struct cfx_msg *m, uint64_t offset)
{
	struct cfx_prop p;
	size_t cursor = 0;
	uint32_t reserved;

	assert_int_equal(v->offset, offset);
	assert_int_equal(v->born_ms, m->born_ms);
	assert_int_equal(v->key_null, m->key_null);
	if (!m->key_null)
		assert_view(v->key, m->key);
	assert_int_equal(v->body_null, m->body_null);
	if (!m->body_null)
		assert_view(v->body, m->body);
	assert_view(v->tag, m->tag);
	assert_view(v->msg_id, m->msg_id);
	assert_int_equal(v->flag, m->flag);
	reserved = (m->tag.len != 0) + (m->msg_id.len != 0) + (m->flag != 0);
	assert_int_equal(v->header_count, m->prop_count + reserved);
	for (uint32_t j = 0; j < m->prop_count; j++) {
		assert_int_equal(cfx_msg_view_next_prop(v, &cursor, &p), 1);
		assert_view(p.name, m->props[j].name);
		assert_view(p.value, m->props[j].value);
	}
	assert_int_equal(cfx_msg_view_next_prop(v, &cursor, &p), 0);
}

/*
 * Encodes `s` as a batch, then replaces its records section with `records`
 * (already compressed) and sets the codec: what a Kafka producer sends.
 */
static void batch_with_records(struct cfx_writer *out, const struct cfx_writer *plain,
			       const uint8_t *records, size_t records_len, uint16_t attrs)
{
	uint8_t *h;

	cfx_writer_reset(out);
	cfx_write_bytes(out, plain->p, CFX_KBATCH_HEADER_BYTES);
	cfx_write_bytes(out, records, records_len);
	h = out->p;
	cfx_store_be16(h + CFX_KBATCH_OFF_ATTRIBUTES, attrs);
	cfx_store_be32(h + CFX_KBATCH_OFF_LENGTH, (uint32_t)(out->len - 12));
	cfx_store_be32(h + CFX_KBATCH_OFF_CRC, cfx_crc32c(0, h + CFX_KBATCH_OFF_ATTRIBUTES,
							   out->len - CFX_KBATCH_OFF_ATTRIBUTES));
}

/* A compressed batch of the messages of `s`; *info as the Kafka front end fills it. */
static void compressed_batch(struct cfx_writer *out, const struct msgset *s, enum variant v,
			     struct cfx_batch_info *info)
{
	struct cfx_writer plain, z;

	cfx_writer_init(&plain, 4096);
	cfx_writer_init(&z, 4096);
	assert_int_equal(cfx_batch_encode(&plain, s->m, s->n, info), 0);
	compress_var(v, &z, plain.p + CFX_KBATCH_HEADER_BYTES,
		     plain.len - CFX_KBATCH_HEADER_BYTES);
	batch_with_records(out, &plain, z.p, z.len, (uint16_t)var_codec[v]);
	info->has_keys = 0; /* compressed batches are not key-indexed */
	cfx_writer_free(&z);
	cfx_writer_free(&plain);
}

/* ------------------------------------------------------------------------
 * The decoder alone
 * ------------------------------------------------------------------------ */

/* Deterministic, somewhat compressible bytes. */
static void fill_data(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (i % 64) < 40 ? (uint8_t)('a' + (i / 64) % 26) : (uint8_t)(x >> 24);
	}
}

static void test_decode_every_codec(void **state)
{
	static const size_t sizes[] = { 0, 1, 999, 1000, 1001, 70000, 300000 };
	(void)state;

	for (int v = 0; v < VAR_COUNT; v++)
		for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
			size_t n = sizes[si];
			uint8_t *data = cfx_malloc(n ? n : 1);
			struct cfx_writer z, out;
			const char *why = NULL;

			fill_data(data, n, (uint32_t)(v * 31 + si));
			cfx_writer_init(&z, 256);
			compress_var((enum variant)v, &z, data, n);
			if (n == 0 && v == VAR_SNAPPY_XERIAL)
				assert_int_equal(z.len, CFX_COMPRESS_XERIAL_HEADER_BYTES);

			/* Appended after what the writer holds. */
			cfx_writer_init(&out, 16);
			cfx_write_bytes(&out, "prefix", 6);
			if (cfx_compress_decode(var_codec[v], z.p, z.len, n, &out, &why) != 0)
				fail_msg("%s, %zu bytes: %s", var_names[v], n, why ? why : "-");
			assert_int_equal(out.len, 6 + n);
			assert_memory_equal(out.p, "prefix", 6);
			if (n)
				assert_memory_equal(out.p + 6, data, n);
			/* The buffer grew within the limit (+1 byte). */
			assert_true(out.cap <= 6 + n + 1 || out.cap == 16);

			/* One byte less than the output is refused, and nothing is appended. */
			if (n) {
				int rc = cfx_compress_decode(var_codec[v], z.p, z.len, n - 1,
							     &out, &why);
				assert_int_equal(rc, CFX_E2BIG);
				assert_non_null(why);
				assert_int_equal(out.len, 6 + n);
			}
			cfx_writer_free(&out);
			cfx_writer_free(&z);
			cfx_free(data);
		}
}

static void test_decode_concatenated(void **state)
{
	static const enum variant vars[] = { VAR_GZIP, VAR_LZ4, VAR_ZSTD, VAR_ZSTD_STREAMED };
	uint8_t a[5000], b[3000];
	(void)state;

	fill_data(a, sizeof a, 1);
	fill_data(b, sizeof b, 2);
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		struct cfx_writer z, out;

		cfx_writer_init(&z, 256);
		cfx_writer_init(&out, 256);
		compress_var(vars[i], &z, a, sizeof a);
		compress_var(vars[i], &z, b, sizeof b);
		assert_int_equal(cfx_compress_decode(var_codec[vars[i]], z.p, z.len, 1 << 20, &out,
						     NULL),
				 0);
		assert_int_equal(out.len, sizeof a + sizeof b);
		assert_memory_equal(out.p, a, sizeof a);
		assert_memory_equal(out.p + sizeof a, b, sizeof b);
		cfx_writer_free(&out);
		cfx_writer_free(&z);
	}
}

/* Every truncation of every codec's stream fails cleanly (or, for snappy, never crashes). */
static void test_decode_truncated_and_flipped(void **state)
{
	uint8_t data[6000];
	(void)state;

	fill_data(data, sizeof data, 7);
	for (int v = 0; v < VAR_COUNT; v++) {
		struct cfx_writer z, out;

		cfx_writer_init(&z, 256);
		cfx_writer_init(&out, 256);
		compress_var((enum variant)v, &z, data, sizeof data);
		for (size_t cut = 0; cut < z.len; cut++) {
			const char *why = NULL;
			uint8_t *copy = cfx_malloc(cut ? cut : 1);
			int rc;

			memcpy(copy, z.p, cut);
			rc = cfx_compress_decode(var_codec[v], copy, cut, sizeof data, &out, &why);
			/* A xerial stream cut between blocks is a shorter valid stream. */
			if (rc == 0) {
				assert_int_equal(v, VAR_SNAPPY_XERIAL);
				assert_true(out.len < sizeof data);
			} else {
				if (rc != CFX_ECORRUPT)
					fail_msg("%s cut at %zu: %s", var_names[v], cut,
						 cfx_err_name(rc));
				assert_non_null(why);
				assert_int_equal(out.len, 0);
			}
			cfx_writer_reset(&out);
			cfx_free(copy);
		}
		/* Bit flips: an error or some output, never a crash or an overrun. */
		for (size_t i = 0; i < z.len; i += 1 + z.len / 200) {
			int rc;

			z.p[i] ^= (uint8_t)(1u << (i % 8));
			rc = cfx_compress_decode(var_codec[v], z.p, z.len, sizeof data, &out, NULL);
			assert_true(rc == 0 || rc == CFX_ECORRUPT || rc == CFX_E2BIG);
			assert_true(out.len <= sizeof data);
			z.p[i] ^= (uint8_t)(1u << (i % 8));
			cfx_writer_reset(&out);
		}
		cfx_writer_free(&out);
		cfx_writer_free(&z);
	}
}

static void test_decode_malformed(void **state)
{
	struct cfx_writer wr, out;
	const char *why;
	uint8_t data[100];
	(void)state;

	fill_data(data, sizeof data, 3);
	cfx_writer_init(&out, 256);
	/* Codecs 5..7 do not exist; 0 is not compressed. */
	for (int codec = 0; codec <= 7; codec++)
		if (codec < 1 || codec > 4)
			assert_int_equal(cfx_compress_decode(codec, data, sizeof data, 1 << 20,
							     &out, NULL),
					 CFX_EUNSUPPORTED);
	/* Garbage is refused by each codec. */
	for (int codec = 1; codec <= 4; codec++) {
		why = NULL;
		assert_int_equal(cfx_compress_decode(codec, (const uint8_t *)"\xff\xff\xff\xff\xff"
									     "\xff\xff\xff\xff\xff",
						     10, 1 << 20, &out, &why),
				 CFX_ECORRUPT);
		assert_non_null(why);
		assert_int_equal(out.len, 0);
	}

	/* xerial: a header cut short, a block length past the input, a bad block. */
	cfx_writer_init(&wr, 256);
	xerial_header(&wr);
	assert_int_equal(cfx_compress_decode(CFX_COMPRESS_SNAPPY, wr.p, 12, 1 << 20, &out, &why),
			 CFX_ECORRUPT);
	cfx_write_be32(&wr, 1000);
	cfx_write_bytes(&wr, data, 10);
	assert_int_equal(cfx_compress_decode(CFX_COMPRESS_SNAPPY, wr.p, wr.len, 1 << 20, &out,
					     &why),
			 CFX_ECORRUPT);
	assert_string_equal(why, "xerial snappy block beyond the input");
	cfx_writer_reset(&wr);
	xerial_header(&wr);
	cfx_write_be32(&wr, 2); /* a block of two bytes that is no snappy */
	cfx_write_bytes(&wr, "\xff\xff", 2);
	assert_int_equal(cfx_compress_decode(CFX_COMPRESS_SNAPPY, wr.p, wr.len, 1 << 20, &out,
					     &why),
			 CFX_ECORRUPT);
	cfx_writer_reset(&wr);
	xerial_header(&wr);
	cfx_write_bytes(&wr, "\x00\x00", 2); /* half a block length */
	assert_int_equal(cfx_compress_decode(CFX_COMPRESS_SNAPPY, wr.p, wr.len, 1 << 20, &out,
					     &why),
			 CFX_ECORRUPT);
	assert_int_equal(out.len, 0);
	/* Trailing garbage after a complete gzip member or lz4 frame. */
	for (int i = 0; i < 2; i++) {
		enum variant v = i ? VAR_LZ4 : VAR_GZIP;
		cfx_writer_reset(&wr);
		compress_var(v, &wr, data, sizeof data);
		cfx_write_bytes(&wr, "junk", 4);
		assert_int_equal(cfx_compress_decode(var_codec[v], wr.p, wr.len, 1 << 20, &out,
						     &why),
				 CFX_ECORRUPT);
		assert_int_equal(out.len, 0);
	}
	cfx_writer_free(&wr);
	cfx_writer_free(&out);
}

/* Small inputs that expand far beyond the limit are refused, with bounded memory. */
static void test_decode_bomb(void **state)
{
	size_t n = 8u << 20, limit = 64u << 10;
	uint8_t *zeros = cfx_calloc(1, n);
	(void)state;

	for (int v = 0; v < VAR_COUNT; v++) {
		struct cfx_writer z, out;
		const char *why = NULL;

		cfx_writer_init(&z, 256);
		cfx_writer_init(&out, 256);
		compress_var((enum variant)v, &z, zeros, n);
		assert_true(z.len < n / 8);
		assert_int_equal(cfx_compress_decode(var_codec[v], z.p, z.len, limit, &out, &why),
				 CFX_E2BIG);
		assert_string_equal(why, "decompressed records exceed the limit");
		assert_int_equal(out.len, 0);
		/* Never more than the limit and its extra byte (snappy: not even that). */
		assert_true(out.cap <= limit + 1);
		cfx_writer_free(&out);
		cfx_writer_free(&z);
	}
	cfx_free(zeros);
}

/* ------------------------------------------------------------------------
 * The store's read path
 * ------------------------------------------------------------------------ */

struct fx {
	char *dir;
	struct cfx_store_opts o;
	struct cfx_store *st;
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);

	cfx_log_set_level(CFX_LOG_ERROR);
	f->dir = tu_tmpdir();
	tu_small_opts(&f->o, f->dir);
	f->o.segment_bytes = 1u << 20;
	f->o.batch_bytes_max = 256u << 10;
	*state = f;
	return cfx_store_open(&f->o, &f->st, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->st)
		cfx_store_close(f->st);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

static void append_cb(void *arg, const struct cfx_append_result *res)
{
	*(struct cfx_append_result *)arg = *res;
}

/* Appends an encoded batch (ASYNC: the callback runs before the return). */
static uint64_t append(struct fx *f, struct cfx_writer *batch, const struct cfx_batch_info *info)
{
	struct cfx_append_result r = { .err = 1 };

	assert_int_equal(cfx_store_append_batch(f->st, TU_TOPIC("kz"), 0, batch->p, batch->len,
						info, 0, CFX_DURABILITY_ASYNC, append_cb, &r),
			 0);
	assert_int_equal(r.err, 0);
	return r.first_offset;
}

/* Appends the messages of `s` uncompressed. */
static uint64_t append_plain(struct fx *f, const struct msgset *s)
{
	struct cfx_batch_info info;
	struct cfx_writer wr;
	uint64_t first;

	cfx_writer_init(&wr, 4096);
	assert_int_equal(cfx_batch_encode(&wr, s->m, s->n, &info), 0);
	first = append(f, &wr, &info);
	cfx_writer_free(&wr);
	return first;
}

static uint64_t append_compressed(struct fx *f, const struct msgset *s, enum variant v)
{
	struct cfx_batch_info info;
	struct cfx_writer wr;
	uint64_t first;

	cfx_writer_init(&wr, 4096);
	compressed_batch(&wr, s, v, &info);
	first = append(f, &wr, &info);
	cfx_writer_free(&wr);
	return first;
}

/* The batches of one test queue, in order, and where each message came from. */
struct layout {
	struct msgset sets[2 * VAR_COUNT + 1];
	uint64_t first[2 * VAR_COUNT + 1];
	uint32_t nsets;
	uint64_t end;
};

static const struct cfx_msg *layout_msg(const struct layout *l, uint64_t offset)
{
	for (uint32_t i = 0; i < l->nsets; i++)
		if (offset >= l->first[i] && offset < l->first[i] + l->sets[i].n)
			return &l->sets[i].m[offset - l->first[i]];
	fail_msg("offset %" PRIu64 " is in no batch", offset);
	return NULL;
}

/*
 * Reads the queue from `from` to its end, `per_read` messages at a time,
 * checking every message, and with all views of a read checked only after
 * the read has decoded every batch it touched.
 */
static void read_and_check(struct fx *f, const struct layout *l, uint64_t from,
			   uint32_t per_read)
{
	struct cfx_read_result res;
	uint64_t off = from;

	cfx_read_result_init(&res);
	while (off < l->end) {
		assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, off, per_read, 1 << 20,
						&res),
				 0);
		assert_true(res.count > 0);
		for (uint32_t i = 0; i < res.count; i++)
			assert_msg(&res.msgs[i], layout_msg(l, off + i), off + i);
		off += res.count;
		assert_int_equal(res.next_offset, off);
	}
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, off, per_read, 1 << 20, &res),
			 0);
	assert_int_equal(res.count, 0);
	cfx_read_result_free(&res);
}

/* Every codec, between plain batches: all messages, from every start, in any read size. */
static void test_store_reads_compressed(void **state)
{
	struct fx *f = *state;
	struct layout *l = cfx_calloc(1, sizeof *l);

	for (int v = 0; v < VAR_COUNT; v++) {
		struct msgset *plain = &l->sets[l->nsets], *z = &l->sets[l->nsets + 1];

		msgset_make(plain, 3 + (uint32_t)v, (uint32_t)l->nsets);
		l->first[l->nsets++] = append_plain(f, plain);
		msgset_make(z, MSGS_N - (uint32_t)v, (uint32_t)l->nsets);
		l->first[l->nsets++] = append_compressed(f, z, (enum variant)v);
	}
	msgset_make(&l->sets[l->nsets], 2, 99);
	l->first[l->nsets] = append_plain(f, &l->sets[l->nsets]);
	l->end = l->first[l->nsets] + l->sets[l->nsets].n;
	l->nsets++;
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);

	read_and_check(f, l, 0, 1000); /* many batches in one read */
	read_and_check(f, l, 0, 7);
	read_and_check(f, l, 0, 1);
	/* From the middle of each compressed batch. */
	for (uint32_t i = 1; i < l->nsets; i += 2)
		read_and_check(f, l, l->first[i] + l->sets[i].n / 2, 5);
	cfx_free(l);
}

/* The result keeps decompressed records alive and reuses its buffers across reads. */
static void test_store_read_result_owns_records(void **state)
{
	struct fx *f = *state;
	struct msgset *s = cfx_malloc(2 * sizeof *s);
	struct cfx_read_result res;
	uint64_t first[2];

	msgset_make(&s[0], MSGS_N, 1);
	msgset_make(&s[1], MSGS_N, 2);
	first[0] = append_compressed(f, &s[0], VAR_ZSTD);
	first[1] = append_compressed(f, &s[1], VAR_GZIP);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, 0, 1000, 1 << 20, &res),
				 0);
		assert_int_equal(res.count, 2 * MSGS_N);
		assert_int_equal(res.nbufs, 2);
		assert_true(res.cap_bufs >= 2);
		for (uint32_t i = 0; i < res.count; i++) {
			uint32_t b = i / MSGS_N;
			assert_msg(&res.msgs[i], &s[b].m[i % MSGS_N], first[b] + i % MSGS_N);
		}
	}
	cfx_read_result_release(&res);
	assert_int_equal(res.nbufs, 0);
	cfx_read_result_free(&res);
	assert_null(res.bufs);
	cfx_free(s);
}

/* A damaged compressed payload: an error, nothing of it returned, the batch skippable. */
static void test_store_corrupt_compressed(void **state)
{
	struct fx *f = *state;
	struct msgset *s = cfx_malloc(3 * sizeof *s);
	struct cfx_read_result res;
	struct cfx_batch_info info;
	struct cfx_writer wr;
	uint64_t bad;

	msgset_make(&s[0], 5, 1);
	msgset_make(&s[1], 10, 2);
	msgset_make(&s[2], 5, 3);
	append_plain(f, &s[0]);
	for (int v = 0; v < VAR_COUNT; v++) {
		/* Damage the compressed bytes, then seal the batch: CRCs vouch for garbage. */
		cfx_writer_init(&wr, 4096);
		compressed_batch(&wr, &s[1], (enum variant)v, &info);
		if (v == VAR_SNAPPY_RAW || v == VAR_SNAPPY_XERIAL)
			memset(wr.p + wr.len - 40, 0xff, 40); /* snappy has no checksum */
		else
			wr.p[wr.len - 3] ^= 0x5a;
		cfx_store_be32(wr.p + CFX_KBATCH_OFF_CRC,
			       cfx_crc32c(0, wr.p + CFX_KBATCH_OFF_ATTRIBUTES,
					  wr.len - CFX_KBATCH_OFF_ATTRIBUTES));
		bad = append(f, &wr, &info);
		cfx_writer_free(&wr);
		assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);

		cfx_read_result_init(&res);
		assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, bad, 100, 1 << 20, &res),
				 CFX_ECORRUPT);
		assert_int_equal(res.count, 0);
		assert_int_equal(res.next_offset, bad + 10);
		assert_int_equal(res.nbufs, 0);
		/* From the middle too. */
		assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, bad + 4, 100, 1 << 20,
						&res),
				 CFX_ECORRUPT);
		assert_int_equal(res.next_offset, bad + 10);
		cfx_read_result_free(&res);
	}
	/* What comes before and after is read as usual. */
	append_plain(f, &s[2]);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, 0, 100, 1 << 20, &res), 0);
	assert_int_equal(res.count, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_msg(&res.msgs[i], &s[0].m[i], i);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, 5 + 10 * VAR_COUNT, 100, 1 << 20,
					&res),
			 0);
	assert_int_equal(res.count, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_msg(&res.msgs[i], &s[2].m[i], 5 + 10 * VAR_COUNT + i);
	cfx_read_result_free(&res);
	cfx_free(s);
}

/* Records that are valid compression but not valid records are corrupt too. */
static void test_store_compressed_bad_records(void **state)
{
	struct fx *f = *state;
	struct msgset s;
	struct cfx_read_result res;
	struct cfx_batch_info info;
	struct cfx_writer plain, z, wr;
	uint64_t bad;

	msgset_make(&s, 4, 1);
	cfx_writer_init(&plain, 4096);
	cfx_writer_init(&z, 4096);
	cfx_writer_init(&wr, 4096);
	assert_int_equal(cfx_batch_encode(&plain, s.m, s.n, &info), 0);
	/* The records section minus its last byte, compressed correctly. */
	compress_zstd(&z, plain.p + CFX_KBATCH_HEADER_BYTES,
		      plain.len - CFX_KBATCH_HEADER_BYTES - 1);
	batch_with_records(&wr, &plain, z.p, z.len, CFX_COMPRESS_ZSTD);
	bad = append(f, &wr, &info);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	/* The messages before the damaged record come back, as in a plain batch. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, bad, 100, 1 << 20, &res), 0);
	assert_int_equal(res.count, 3);
	for (uint32_t i = 0; i < 3; i++)
		assert_msg(&res.msgs[i], &s.m[i], bad + i);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, bad + 3, 100, 1 << 20, &res),
			 CFX_ECORRUPT);
	assert_int_equal(res.count, 0);
	assert_int_equal(res.next_offset, bad + 4);
	cfx_read_result_free(&res);
	cfx_writer_free(&wr);
	cfx_writer_free(&z);
	cfx_writer_free(&plain);
}

/* A batch that expands beyond CFX_COMPRESS_OUTPUT_BYTES_MAX is refused and skippable. */
static void test_store_refuses_bomb(void **state)
{
	struct fx *f = *state;
	size_t n = (size_t)CFX_COMPRESS_OUTPUT_BYTES_MAX + 1;
	uint8_t *zeros = cfx_calloc(1, n);
	struct cfx_read_result res;
	struct cfx_batch_info info;
	struct cfx_writer plain, z, wr;
	struct msgset s;
	uint64_t bomb, after;

	msgset_make(&s, 1, 1);
	cfx_writer_init(&plain, 4096);
	cfx_writer_init(&z, 4096);
	cfx_writer_init(&wr, 4096);
	assert_int_equal(cfx_batch_encode(&plain, s.m, s.n, &info), 0);
	for (int v = 0; v < 2; v++) {
		cfx_writer_reset(&z);
		compress_var(v ? VAR_GZIP : VAR_ZSTD_STREAMED, &z, zeros, n);
		assert_true(z.len < f->o.batch_bytes_max - CFX_KBATCH_HEADER_BYTES);
		batch_with_records(&wr, &plain, z.p, z.len,
				   v ? CFX_COMPRESS_GZIP : CFX_COMPRESS_ZSTD);
		bomb = append(f, &wr, &info);
		after = append_plain(f, &s);
		assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);

		cfx_read_result_init(&res);
		assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, bomb, 100, 1 << 20, &res),
				 CFX_EUNSUPPORTED);
		assert_int_equal(res.count, 0);
		assert_int_equal(res.next_offset, after);
		assert_int_equal(res.nbufs, 0);
		assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, after, 100, 1 << 20,
						&res),
				 0);
		assert_int_equal(res.count, 1);
		assert_msg(&res.msgs[0], &s.m[0], after);
		cfx_read_result_free(&res);
	}
	cfx_writer_free(&wr);
	cfx_writer_free(&z);
	cfx_writer_free(&plain);
	cfx_free(zeros);
}

/* Control batches stay unsupported, compressed or not; the Kafka bytes are served as stored. */
static void test_store_control_batch_unsupported(void **state)
{
	struct fx *f = *state;
	struct cfx_read_result res;
	struct cfx_batch_info info;
	struct cfx_batch_ref ref;
	struct cfx_writer wr;
	struct msgset s;
	uint32_t nref;
	uint64_t first;

	msgset_make(&s, 2, 1);
	cfx_writer_init(&wr, 4096);
	compressed_batch(&wr, &s, VAR_LZ4, &info);
	cfx_store_be16(wr.p + CFX_KBATCH_OFF_ATTRIBUTES,
		       CFX_COMPRESS_LZ4 | CFX_KBATCH_ATTR_CONTROL | CFX_KBATCH_ATTR_TRANSACTIONAL);
	cfx_store_be32(wr.p + CFX_KBATCH_OFF_CRC,
		       cfx_crc32c(0, wr.p + CFX_KBATCH_OFF_ATTRIBUTES,
				  wr.len - CFX_KBATCH_OFF_ATTRIBUTES));
	first = append(f, &wr, &info);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("kz"), 0, first, 100, 1 << 20, &res),
			 CFX_EUNSUPPORTED);
	assert_int_equal(res.next_offset, first + 2);
	assert_int_equal(cfx_store_read_batches(f->st, TU_TOPIC("kz"), 0, first, 1 << 20, &ref, 1,
						&nref, &res),
			 0);
	assert_int_equal(nref, 1);
	assert_int_equal(ref.len, wr.len);
	assert_memory_equal(ref.p + 8, wr.p + 8, wr.len - 8); /* baseOffset set by the store */
	cfx_read_result_free(&res);
	cfx_writer_free(&wr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_every_codec),
		cmocka_unit_test(test_decode_concatenated),
		cmocka_unit_test(test_decode_truncated_and_flipped),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_decode_bomb),
		cmocka_unit_test_setup_teardown(test_store_reads_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_read_result_owns_records, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_store_corrupt_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_compressed_bad_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_refuses_bomb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_control_batch_unsupported, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
