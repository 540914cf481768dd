/*
 * fuzz_compress.c - libFuzzer target for the decompression of RecordBatch
 * records sections (store/compress.c: cfx_compress_decode) and for batches
 * opened over decompressed records (store/batch.c: cfx_batch_open_records).
 *
 * Input: a codec byte, an argument byte (layout in fuzz_common.h), then the
 * compressed bytes, which end exactly where the input ends so ASan sees any
 * read past them.
 *
 * Beyond "no crash, no out-of-bounds read, no leak, no hang":
 *   - the result is 0, CFX_ECORRUPT or CFX_E2BIG for the four codecs and
 *     CFX_EUNSUPPORTED for the others; a failure appends nothing and says why;
 *   - the output never exceeds the limit, nor the buffer the limit + 1 byte;
 *   - decoding is exact at the limit: the same input with the limit set to
 *     the output's size decodes the same bytes, and one byte less is E2BIG;
 *   - output compressed again with the same codec decodes to itself;
 *   - with FZ_COMP_AS_BATCH, the output read as the records of a batch
 *     hands out only views that lie in the output.
 */
#include <stdint.h>
#include <stdlib.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "fuzz_common.h"
#include "store/batch.h"
#include "store/compress.h"

/* Round trips are for outputs of modest size; bigger ones are only decoded. */
#define ROUNDTRIP_BYTES_MAX (64u << 10)

/* The prefix already in the writer: output is appended after it. */
#define PREFIX "prefix"
#define PREFIX_BYTES 6u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int codec_is_known(int codec)
{
	return codec >= CFX_COMPRESS_GZIP && codec <= CFX_COMPRESS_ZSTD;
}

/* A batch header for `count` records whose section is compressed with `codec`. */
static void put_header(uint8_t *h, int codec, uint32_t count)
{
	memset(h, 0, CFX_KBATCH_HEADER_BYTES);
	cfx_store_be32(h + CFX_KBATCH_OFF_LENGTH, CFX_KBATCH_HEADER_BYTES - 12);
	h[CFX_KBATCH_OFF_MAGIC] = 2;
	cfx_store_be16(h + CFX_KBATCH_OFF_ATTRIBUTES, (uint16_t)codec);
	cfx_store_be32(h + CFX_KBATCH_OFF_LAST_OFFSET_DELTA, count - 1);
	cfx_store_be64(h + CFX_KBATCH_OFF_BASE_TIMESTAMP, 1700000000000ull);
	cfx_store_be64(h + CFX_KBATCH_OFF_MAX_TIMESTAMP, 1700000000000ull);
	cfx_store_be64(h + CFX_KBATCH_OFF_PRODUCER_ID, UINT64_MAX);
	cfx_store_be16(h + CFX_KBATCH_OFF_PRODUCER_EPOCH, UINT16_MAX);
	cfx_store_be32(h + CFX_KBATCH_OFF_BASE_SEQUENCE, UINT32_MAX);
	cfx_store_be32(h + CFX_KBATCH_OFF_RECORDS_COUNT, count);
}

/* The output at exactly its own size as the limit, and one byte under it. */
static void check_exact_limit(int codec, const uint8_t *src, size_t len, const uint8_t *want,
			      size_t want_len)
{
	struct cfx_writer wr;
	int rc;

	cfx_writer_init(&wr, 16);
	FZ_CHECK(cfx_compress_decode(codec, src, len, want_len, &wr, NULL) == 0);
	FZ_CHECK(wr.len == want_len && (want_len == 0 || !memcmp(wr.p, want, want_len)));
	FZ_CHECK(wr.cap <= 16 || wr.cap <= want_len + 1);
	if (want_len) {
		cfx_writer_reset(&wr);
		rc = cfx_compress_decode(codec, src, len, want_len - 1, &wr, NULL);
		FZ_CHECK(rc == CFX_E2BIG);
		FZ_CHECK(wr.len == 0);
	}
	cfx_writer_free(&wr);
}

static void roundtrip(int codec, const uint8_t *p, size_t len)
{
	struct cfx_writer z, out;

	for (int xerial = 0; xerial <= (codec == CFX_COMPRESS_SNAPPY); xerial++) {
		cfx_writer_init(&z, 64);
		cfx_writer_init(&out, 64);
		fz_compress(codec, xerial, 4096, p, len, &z);
		FZ_CHECK(cfx_compress_decode(codec, z.p, z.len, len, &out, NULL) == 0);
		FZ_CHECK(out.len == len && (len == 0 || !memcmp(out.p, p, len)));
		cfx_writer_free(&out);
		cfx_writer_free(&z);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfx_writer wr;
	const char *why = NULL;
	uint8_t *src, ctrl, arg;
	size_t len, limit, out_len;
	int codec, rc;

	if (size < FZ_COMP_CTRL_BYTES)
		return 0;
	ctrl = data[0];
	arg = data[1];
	codec = ctrl & FZ_COMP_CODEC_MASK;
	limit = (ctrl & FZ_COMP_TINY_LIMIT) ? (size_t)arg * 64 : FZ_COMP_BYTES_MAX;
	len = size - FZ_COMP_CTRL_BYTES;
	/* A private copy of exactly the compressed bytes. */
	src = malloc(len ? len : 1);
	FZ_CHECK(src != NULL);
	if (len)
		memcpy(src, data + FZ_COMP_CTRL_BYTES, len);

	cfx_writer_init(&wr, 16);
	cfx_write_bytes(&wr, PREFIX, PREFIX_BYTES);
	rc = cfx_compress_decode(codec, src, len, limit, &wr, &why);
	if (!codec_is_known(codec))
		FZ_CHECK(rc == CFX_EUNSUPPORTED);
	else
		FZ_CHECK(rc == 0 || rc == CFX_ECORRUPT || rc == CFX_E2BIG);
	FZ_CHECK(wr.len >= PREFIX_BYTES && !memcmp(wr.p, PREFIX, PREFIX_BYTES));
	FZ_CHECK(wr.cap <= 16 || wr.cap <= PREFIX_BYTES + limit + 1);
	if (rc) {
		FZ_CHECK(why != NULL);
		FZ_CHECK(wr.len == PREFIX_BYTES);
		goto out;
	}
	out_len = wr.len - PREFIX_BYTES;
	FZ_CHECK(out_len <= limit);
	fz_touch(wr.p, wr.len);

	check_exact_limit(codec, src, len, wr.p + PREFIX_BYTES, out_len);
	if (out_len <= ROUNDTRIP_BYTES_MAX)
		roundtrip(codec, wr.p + PREFIX_BYTES, out_len);
	if (ctrl & FZ_COMP_AS_BATCH) {
		uint8_t h[CFX_KBATCH_HEADER_BYTES];
		uint32_t msgs;

		put_header(h, codec, (uint32_t)(arg % 16) + 1);
		rc = fz_walk_records(h, sizeof h, wr.p + PREFIX_BYTES, out_len, &msgs);
		FZ_CHECK(rc == 0 || rc == CFX_EPARSE);
		FZ_CHECK(rc != 0 || msgs == (uint32_t)(arg % 16) + 1);
	}
out:
	cfx_writer_free(&wr);
	free(src);
	return 0;
}
