/*
 * compress.h - decompression of the records section of a Kafka
 * RecordBatch v2 (the bytes after its 61-byte header), for the codecs a
 * Kafka producer may choose (attributes bits 0-2).
 *
 * The store keeps compressed batches as they were produced, so that Kafka
 * consumers get them byte for byte; the message read path (store.c) decodes
 * them with this module to hand single messages to every other protocol.
 * Nothing here compresses: Conflux writes uncompressed batches itself.
 *
 * A decoder is a pure function of bytes: no store, no disk, no logging. The
 * input is untrusted (it came from a producer), so every length is checked
 * against the bytes at hand and the output against a caller's limit before
 * it is allocated. Formats, as Kafka uses them:
 *
 *   gzip    a gzip stream (RFC 1952); several members in a row are accepted
 *   snappy  either one raw snappy block, or snappy-java's ("xerial")
 *           framing: 16 bytes of header (magic 0x82 "SNAPPY" 0x00, then
 *           version and compatible version as big-endian int32), then
 *           blocks, each a big-endian int32 length and one raw snappy block
 *   lz4     the LZ4 frame format; several frames in a row are accepted
 *   zstd    zstd frames (content size declared or not)
 *
 * See docs/storage.md ("Compressed batches").
 */
#ifndef CFX_STORE_COMPRESS_H
#define CFX_STORE_COMPRESS_H

#include "base/buf.h"
#include "base/common.h"

/* The compression codec of a batch: RecordBatch attributes & 0x07. */
enum cfx_compress_codec {
	CFX_COMPRESS_NONE = 0,
	CFX_COMPRESS_GZIP = 1,
	CFX_COMPRESS_SNAPPY = 2,
	CFX_COMPRESS_LZ4 = 3,
	CFX_COMPRESS_ZSTD = 4,
};

/*
 * Largest records section the store decompresses for one batch (64 MiB).
 * A batch that expands beyond it is refused, not decoded: it bounds the
 * memory one read can take, whatever a producer sent.
 */
#define CFX_COMPRESS_OUTPUT_BYTES_MAX (64u << 20)

/* Largest zstd window accepted (2^26 = 64 MiB, the output limit above). */
#define CFX_COMPRESS_ZSTD_WINDOW_LOG_MAX 26

/* The xerial snappy header: magic (8 bytes), version, compatible version. */
#define CFX_COMPRESS_XERIAL_HEADER_BYTES 16u

/* "gzip", "snappy", "lz4", "zstd", "none", or "unknown". */
const char *cfx_compress_codec_name(int codec);

/*
 * Decompresses the `len` bytes at `src`, compressed with `codec`, and
 * appends the result to `wr` (which the caller owns and has initialised),
 * appending at most `bytes_max` bytes. The buffer of `wr` grows as the
 * output does, never beyond its length on entry + bytes_max + 1.
 *
 * Returns 0, or with nothing appended (wr->len as on entry):
 *   CFX_ECORRUPT      the input is malformed or truncated (*why says how);
 *   CFX_E2BIG         it expands to more than `bytes_max` bytes;
 *   CFX_EUNSUPPORTED  `codec` is none of gzip, snappy, lz4, zstd.
 * `why` may be NULL; the reasons are static strings. @thread any
 */
int cfx_compress_decode(int codec, const uint8_t *src, size_t len, size_t bytes_max,
			struct cfx_writer *wr, const char **why);

#endif
