/*
 * compress.c - decompression of RecordBatch records sections: gzip (zlib),
 * snappy raw and xerial-framed (libsnappy), LZ4 frames (liblz4) and zstd
 * frames (libzstd).
 *
 * Every codec writes into the caller's cfx_writer through one bounded
 * growth rule (out_room): the buffer doubles as output arrives, up to the
 * caller's limit plus one byte. Output that reaches that extra byte is
 * "too big" (CFX_E2BIG), which tells it apart from output of exactly the
 * limit without a second pass. Codecs that declare their output size up
 * front (raw snappy blocks) are checked before anything is allocated.
 *
 * The libraries check their own input bounds; this file checks everything
 * around them (lengths of xerial blocks, progress of the streaming loops,
 * trailing bytes) so that no input can make a loop spin or a length run
 * past the input. Layouts: compress.h.
 */
#include "store/compress.h"

#include <limits.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "base/err.h"

/* First allocation for output of unknown size: a guess from the input. */
#define OUT_FIRST_BYTES_MIN 4096u
#define OUT_FIRST_BYTES_MAX (4u << 20)
#define OUT_FIRST_RATIO 4u

static const uint8_t xerial_magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };

const char *cfx_compress_codec_name(int codec)
{
	switch (codec) {
	case CFX_COMPRESS_NONE:
		return "none";
	case CFX_COMPRESS_GZIP:
		return "gzip";
	case CFX_COMPRESS_SNAPPY:
		return "snappy";
	case CFX_COMPRESS_LZ4:
		return "lz4";
	case CFX_COMPRESS_ZSTD:
		return "zstd";
	default:
		return "unknown";
	}
}

/* ------------------------------------------------------------------------
 * Output buffer growth
 * ------------------------------------------------------------------------ */

/* One decode: where it writes, and how far it may go. */
struct out {
	struct cfx_writer *wr;
	size_t start;	  /* wr->len on entry */
	size_t cap_max;	  /* start + bytes_max + 1: the buffer never grows past it */
	size_t first_hint; /* first allocation when the buffer is empty */
};

static void out_grow_to(struct out *o, size_t cap)
{
	if (cap > o->cap_max)
		cap = o->cap_max;
	if (cap <= o->wr->cap)
		return;
	o->wr->p = cfx_realloc(o->wr->p, cap);
	o->wr->cap = cap;
}

/*
 * Room for more output at wr->p + wr->len: grows the buffer when it is
 * full. Returns 0 only when the output already holds bytes_max + 1 bytes.
 */
static size_t out_room(struct out *o)
{
	struct cfx_writer *wr = o->wr;
	size_t limit;

	if (wr->len >= o->cap_max)
		return 0;
	if (wr->cap <= wr->len) {
		size_t want = wr->len - o->start < o->first_hint ? wr->len + o->first_hint
								  : wr->len * 2;
		if (want < wr->len + OUT_FIRST_BYTES_MIN)
			want = wr->len + OUT_FIRST_BYTES_MIN;
		out_grow_to(o, want);
	}
	limit = wr->cap < o->cap_max ? wr->cap : o->cap_max;
	return limit - wr->len;
}

/* Is the output over the limit (it reached the extra byte)? */
static int out_is_over(const struct out *o)
{
	return o->wr->len >= o->cap_max;
}

/* Room for exactly `n` more bytes, or CFX_E2BIG past the limit. */
static int out_reserve_exact(struct out *o, size_t n)
{
	if (n > o->cap_max - 1 - o->wr->len)
		return CFX_E2BIG;
	if (o->wr->cap - o->wr->len < n) {
		size_t want = o->wr->cap * 2;
		if (want < o->wr->len + n)
			want = o->wr->len + n;
		out_grow_to(o, want);
	}
	return 0;
}

#define FAIL(reason) \
	do { \
		*why = (reason); \
		return CFX_ECORRUPT; \
	} while (0)

/* ------------------------------------------------------------------------
 * gzip
 * ------------------------------------------------------------------------ */

static int decode_gzip(struct out *o, const uint8_t *src, size_t len, const char **why)
{
	z_stream zs;
	int zr, rc = 0;

	if (len > UINT_MAX)
		FAIL("gzip input too long");
	memset(&zs, 0, sizeof zs);
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		FAIL("gzip decoder failed to start");
	zs.next_in = (Bytef *)src;
	zs.avail_in = (uInt)len;
	for (;;) {
		size_t room = out_room(o);
		uInt avail;

		if (room == 0) {
			rc = CFX_E2BIG;
			break;
		}
		avail = room > UINT_MAX ? UINT_MAX : (uInt)room;
		zs.next_out = o->wr->p + o->wr->len;
		zs.avail_out = avail;
		zr = inflate(&zs, Z_NO_FLUSH);
		o->wr->len += avail - zs.avail_out;
		if (zr == Z_STREAM_END) {
			if (zs.avail_in == 0)
				break;
			/* Another gzip member follows (Java's GZIPInputStream reads on). */
			if (inflateReset(&zs) != Z_OK) {
				*why = "gzip decoder failed to restart";
				rc = CFX_ECORRUPT;
				break;
			}
			continue;
		}
		if (zr == Z_OK && zs.avail_out == 0)
			continue; /* output full: grow and go on */
		if (zr == Z_OK || zr == Z_BUF_ERROR) {
			if (zs.avail_in == 0) {
				*why = "gzip stream truncated";
				rc = CFX_ECORRUPT;
				break;
			}
			if (zr == Z_OK)
				continue;
		}
		/* zlib's messages are static strings. */
		*why = zs.msg ? zs.msg : "gzip data malformed";
		rc = CFX_ECORRUPT;
		break;
	}
	inflateEnd(&zs);
	if (!rc && out_is_over(o))
		rc = CFX_E2BIG;
	return rc;
}

/* ------------------------------------------------------------------------
 * snappy
 * ------------------------------------------------------------------------ */

/* One raw snappy block: its size is declared, so it is checked before any allocation. */
static int snappy_block(struct out *o, const uint8_t *src, size_t len, const char **why)
{
	size_t n;
	int rc;

	if (snappy_uncompressed_length((const char *)src, len, &n) != SNAPPY_OK)
		FAIL("snappy block length malformed");
	rc = out_reserve_exact(o, n);
	if (rc)
		return rc;
	if (snappy_uncompress((const char *)src, len, (char *)o->wr->p + o->wr->len, &n) !=
	    SNAPPY_OK)
		FAIL("snappy block malformed");
	o->wr->len += n;
	return 0;
}

static int decode_snappy(struct out *o, const uint8_t *src, size_t len, const char **why)
{
	struct cfx_reader rd;
	int rc;

	/*
	 * A raw block starting with the magic's bytes and shorter than the
	 * header cannot exist (0x82 0x53 declares 10626 bytes, more than 15
	 * bytes of snappy can hold), so such input is a truncated header.
	 */
	if (len < CFX_COMPRESS_XERIAL_HEADER_BYTES && len > 0 &&
	    memcmp(src, xerial_magic, len < sizeof xerial_magic ? len : sizeof xerial_magic) == 0)
		FAIL("xerial snappy header truncated");
	if (len < sizeof xerial_magic || memcmp(src, xerial_magic, sizeof xerial_magic) != 0)
		return snappy_block(o, src, len, why);

	/* xerial framing: header, then [int32 length][raw block] until the end. */
	rd = cfx_reader_make(src + CFX_COMPRESS_XERIAL_HEADER_BYTES,
			     len - CFX_COMPRESS_XERIAL_HEADER_BYTES);
	while (cfx_reader_left(&rd) > 0) {
		uint32_t n = cfx_read_be32(&rd);
		const uint8_t *block;

		if (rd.err)
			FAIL("xerial snappy block length truncated");
		block = cfx_read_bytes(&rd, n, NULL);
		if (!block)
			FAIL("xerial snappy block beyond the input");
		rc = snappy_block(o, block, n, why);
		if (rc)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * LZ4 frames
 * ------------------------------------------------------------------------ */

static int decode_lz4(struct out *o, const uint8_t *src, size_t len, const char **why)
{
	LZ4F_dctx *dctx = NULL;
	size_t pos = 0;
	int rc = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		FAIL("lz4 decoder failed to start");
	for (;;) {
		size_t room = out_room(o), dst_n = room, src_n = len - pos, hint;

		if (room == 0) {
			rc = CFX_E2BIG;
			break;
		}
		hint = LZ4F_decompress(dctx, o->wr->p + o->wr->len, &dst_n, src + pos, &src_n,
				       NULL);
		if (LZ4F_isError(hint)) {
			*why = "lz4 frame malformed";
			rc = CFX_ECORRUPT;
			break;
		}
		pos += src_n;
		o->wr->len += dst_n;
		if (hint == 0 && pos == len)
			break; /* the last frame ended with the input */
		if (hint == 0)
			continue; /* another frame follows; the context starts it afresh */
		if (dst_n == room)
			continue; /* output full: grow and go on */
		if (pos == len) {
			*why = "lz4 frame truncated";
			rc = CFX_ECORRUPT;
			break;
		}
		if (src_n == 0 && dst_n == 0) {
			*why = "lz4 decoder made no progress";
			rc = CFX_ECORRUPT;
			break;
		}
	}
	LZ4F_freeDecompressionContext(dctx);
	if (!rc && out_is_over(o))
		rc = CFX_E2BIG;
	return rc;
}

/* ------------------------------------------------------------------------
 * zstd frames
 * ------------------------------------------------------------------------ */

static int decode_zstd(struct out *o, const uint8_t *src, size_t len, const char **why)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	ZSTD_inBuffer in = { src, len, 0 };
	size_t zr;
	int rc = 0;

	CFX_ASSERT(dctx); /* allocation only */
	/* A window wider than the output limit is of no use to a valid batch. */
	zr = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, CFX_COMPRESS_ZSTD_WINDOW_LOG_MAX);
	CFX_ASSERT(!ZSTD_isError(zr));
	if (len == 0) {
		*why = "zstd frame truncated";
		rc = CFX_ECORRUPT;
	}
	while (!rc) {
		size_t room = out_room(o), in_before = in.pos;
		ZSTD_outBuffer out;

		if (room == 0) {
			rc = CFX_E2BIG;
			break;
		}
		out = (ZSTD_outBuffer){ o->wr->p + o->wr->len, room, 0 };
		zr = ZSTD_decompressStream(dctx, &out, &in);
		if (ZSTD_isError(zr)) {
			/* zstd's error names are static strings. */
			*why = ZSTD_getErrorName(zr);
			rc = CFX_ECORRUPT;
			break;
		}
		o->wr->len += out.pos;
		if (zr == 0 && in.pos == in.size)
			break; /* the last frame ended with the input */
		if (zr == 0 || out.pos == out.size)
			continue; /* another frame follows, or the output is full */
		if (in.pos == in.size) {
			*why = "zstd frame truncated";
			rc = CFX_ECORRUPT;
			break;
		}
		if (in.pos == in_before && out.pos == 0) {
			*why = "zstd decoder made no progress";
			rc = CFX_ECORRUPT;
			break;
		}
	}
	ZSTD_freeDCtx(dctx);
	if (!rc && out_is_over(o))
		rc = CFX_E2BIG;
	return rc;
}

/* ------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------ */

int cfx_compress_decode(int codec, const uint8_t *src, size_t len, size_t bytes_max,
			struct cfx_writer *wr, const char **why)
{
	const char *dummy;
	struct out o;
	int rc;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (bytes_max > SIZE_MAX / 4 - wr->len)
		bytes_max = SIZE_MAX / 4 - wr->len;
	o.wr = wr;
	o.start = wr->len;
	o.cap_max = wr->len + bytes_max + 1;
	o.first_hint = len < OUT_FIRST_BYTES_MAX / OUT_FIRST_RATIO ? len * OUT_FIRST_RATIO
								    : OUT_FIRST_BYTES_MAX;
	if (o.first_hint < OUT_FIRST_BYTES_MIN)
		o.first_hint = OUT_FIRST_BYTES_MIN;

	switch (codec) {
	case CFX_COMPRESS_GZIP:
		rc = decode_gzip(&o, src, len, why);
		break;
	case CFX_COMPRESS_SNAPPY:
		rc = decode_snappy(&o, src, len, why);
		break;
	case CFX_COMPRESS_LZ4:
		rc = decode_lz4(&o, src, len, why);
		break;
	case CFX_COMPRESS_ZSTD:
		rc = decode_zstd(&o, src, len, why);
		break;
	default:
		*why = "unknown compression codec";
		return CFX_EUNSUPPORTED;
	}
	if (rc == CFX_E2BIG)
		*why = "decompressed records exceed the limit";
	if (rc)
		wr->len = o.start;
	return rc;
}
