/*
 * fuzz_common.c - the checks shared by the fuzz targets (fuzz_common.h).
 *
 * The walk over a batch is the heart of fuzz_entry and fuzz_batch: the
 * decoder may reject anything, but what it accepts must be consistent, and
 * every byte it points at must lie in the batch (ASan sees the reads).
 */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "base/err.h"
#include "store/compress.h"

void fz_check_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", expr, file, line);
	abort();
}

uint32_t fz_touch(const void *p, size_t len)
{
	const volatile uint8_t *b = p;
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = sum * 31 + b[i];
	return sum;
}

int fz_view_within(struct cfx_view v, const uint8_t *base, size_t len)
{
	if (v.len == 0)
		return 1;
	return v.p >= base && v.p <= base + len && v.len <= (size_t)(base + len - v.p);
}

static int is_reserved(struct cfx_view name)
{
	return cfx_view_eq_str(name, CFX_PROP_TAG) || cfx_view_eq_str(name, CFX_PROP_MSG_ID) ||
	       cfx_view_eq_str(name, CFX_PROP_FLAG);
}

/* Every view of one decoded message lies in the batch; its properties parse. */
static void check_msg(const struct cfx_msg_view *m, const uint8_t *p, size_t len)
{
	struct cfx_prop prop;
	size_t cursor = 0, last = 0;
	uint32_t props = 0;

	FZ_CHECK(!m->key_null || m->key.len == 0);
	FZ_CHECK(!m->body_null || m->body.len == 0);
	FZ_CHECK(fz_view_within(m->key, p, len));
	FZ_CHECK(fz_view_within(m->body, p, len));
	FZ_CHECK(fz_view_within(m->tag, p, len));
	FZ_CHECK(fz_view_within(m->msg_id, p, len));
	FZ_CHECK(fz_view_within(m->headers, p, len));
	FZ_CHECK(fz_view_within(m->tag, m->headers.p, m->headers.len));
	FZ_CHECK(fz_view_within(m->msg_id, m->headers.p, m->headers.len));
	FZ_CHECK(m->header_count <= CFX_MSG_PROPS_MAX);
	FZ_CHECK(m->record_bytes >= 1 && m->record_bytes <= len);
	if (m->key.len)
		fz_touch(m->key.p, m->key.len);
	if (m->body.len)
		fz_touch(m->body.p, m->body.len);
	if (m->headers.len)
		fz_touch(m->headers.p, m->headers.len);

	while (cfx_msg_view_next_prop(m, &cursor, &prop) == 1) {
		props++;
		FZ_CHECK(props <= m->header_count);
		FZ_CHECK(cursor > last && cursor <= m->headers.len);
		last = cursor;
		FZ_CHECK(fz_view_within(prop.name, m->headers.p, m->headers.len));
		FZ_CHECK(fz_view_within(prop.value, m->headers.p, m->headers.len));
		FZ_CHECK(!is_reserved(prop.name));
	}
}

/* Decodes every message of an opened batch; views must lie in [p, p+len). */
static int walk_messages(struct cfx_batch_rd *b, const uint8_t *p, size_t len, uint32_t *msgs_out);

int fz_walk_batch(const uint8_t *p, size_t len, int verify_crc, uint32_t *msgs_out)
{
	struct cfx_batch_rd b;
	const char *why = NULL;
	int rc;

	if (msgs_out)
		*msgs_out = 0;
	rc = cfx_batch_open(&b, p, len, verify_crc, &why);
	if (rc) {
		FZ_CHECK(rc == CFX_EPARSE || rc == CFX_EUNSUPPORTED);
		FZ_CHECK(why != NULL);
		return rc;
	}
	FZ_CHECK(len >= CFX_KBATCH_HEADER_BYTES);
	FZ_CHECK(!(b.attributes & (CFX_KBATCH_ATTR_COMPRESSION_MASK | CFX_KBATCH_ATTR_CONTROL)));
	return walk_messages(&b, p, len, msgs_out);
}

int fz_walk_records(const uint8_t *p, size_t len, const uint8_t *records, size_t records_len,
		    uint32_t *msgs_out)
{
	struct cfx_batch_rd b;
	const char *why = NULL;
	int rc;

	if (msgs_out)
		*msgs_out = 0;
	rc = cfx_batch_open_records(&b, p, len, 0, records, records_len, &why);
	if (rc) {
		FZ_CHECK(rc == CFX_EPARSE || rc == CFX_EUNSUPPORTED);
		FZ_CHECK(rc != CFX_EUNSUPPORTED || (b.attributes & CFX_KBATCH_ATTR_CONTROL));
		FZ_CHECK(why != NULL);
		return rc;
	}
	return walk_messages(&b, records, records_len, msgs_out);
}

static int walk_messages(struct cfx_batch_rd *bp, const uint8_t *p, size_t len, uint32_t *msgs_out)
{
	struct cfx_batch_rd b = *bp;
	struct cfx_msg_view m;
	const char *why = NULL;
	uint32_t n = 0;
	int rc;

	FZ_CHECK(b.count >= 1 && b.count <= CFX_BATCH_RECORDS_MAX);

	for (;;) {
		why = NULL;
		rc = cfx_batch_next(&b, &m, &why);
		if (rc != 1)
			break;
		FZ_CHECK(n < b.count);
		FZ_CHECK(m.offset == b.base_offset + n);
		n++;
		check_msg(&m, p, len);
	}
	if (rc == 0) {
		/* The end is sticky and every record was seen. */
		FZ_CHECK(n == b.count);
		FZ_CHECK(cfx_batch_next(&b, &m, &why) == 0);
	} else {
		FZ_CHECK(rc == CFX_EPARSE);
		FZ_CHECK(why != NULL);
	}
	if (msgs_out)
		*msgs_out = n;
	return rc;
}

/* ------------------------------------------------------------------------
 * Compression, as producers do it (for seeds and round trips)
 * ------------------------------------------------------------------------ */

static void compress_snappy_block(const uint8_t *p, size_t len, struct cfx_writer *wr)
{
	size_t n = snappy_max_compressed_length(len);
	uint8_t *d = cfx_writer_reserve(wr, n);

	FZ_CHECK(snappy_compress((const char *)p, len, (char *)d, &n) == SNAPPY_OK);
	wr->len += n;
}

void fz_compress(int codec, int xerial, size_t xerial_block, const uint8_t *p, size_t len,
		 struct cfx_writer *wr)
{
	static const uint8_t magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };
	size_t bound, n;
	z_stream zs;

	switch (codec) {
	case CFX_COMPRESS_GZIP:
		memset(&zs, 0, sizeof zs);
		FZ_CHECK(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) ==
			 Z_OK);
		bound = deflateBound(&zs, (uLong)len) + 32;
		zs.next_in = (Bytef *)p;
		zs.avail_in = (uInt)len;
		zs.next_out = cfx_writer_reserve(wr, bound);
		zs.avail_out = (uInt)bound;
		FZ_CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
		wr->len += bound - zs.avail_out;
		deflateEnd(&zs);
		break;
	case CFX_COMPRESS_SNAPPY:
		if (!xerial) {
			compress_snappy_block(p, len, wr);
			break;
		}
		cfx_write_bytes(wr, magic, sizeof magic);
		cfx_write_be32(wr, 1); /* version */
		cfx_write_be32(wr, 1); /* compatible version */
		for (size_t off = 0; off < len; off += xerial_block) {
			size_t at = wr->len;

			n = len - off < xerial_block ? len - off : xerial_block;
			cfx_write_be32(wr, 0); /* back-patched */
			compress_snappy_block(p + off, n, wr);
			cfx_store_be32(wr->p + at, (uint32_t)(wr->len - at - 4));
		}
		break;
	case CFX_COMPRESS_LZ4:
		bound = LZ4F_compressFrameBound(len, NULL);
		n = LZ4F_compressFrame(cfx_writer_reserve(wr, bound), bound, p, len, NULL);
		FZ_CHECK(!LZ4F_isError(n));
		wr->len += n;
		break;
	case CFX_COMPRESS_ZSTD:
		bound = ZSTD_compressBound(len);
		n = ZSTD_compress(cfx_writer_reserve(wr, bound), bound, p, len, 3);
		FZ_CHECK(!ZSTD_isError(n));
		wr->len += n;
		break;
	default:
		FZ_CHECK(!"a codec to compress with");
	}
}
