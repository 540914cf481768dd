/*
 * fuzz_entry.c - libFuzzer target for the log-entry decoder
 * (store/format.c: cfx_entry_decode) and, for batch entries, the
 * RecordBatch decoder behind it (store/batch.c).
 *
 * Input: three control bytes (FZ_ENTRY_* in fuzz_common.h), then a log
 * image whose byte i sits at log position i. The target walks the chain of
 * entries from position 0, as recovery scans a segment, and again from a
 * start position taken from the control bytes. The image is a private
 * copy that ends where the input ends, so ASan sees any read past it.
 * With FZ_ENTRY_FIX_CRC the CRCs of both chains are resealed first, so
 * mutations reach the checks that come after the checksum.
 *
 * What the decoder accepts must be consistent: the entry lies within the
 * bytes at hand, its views lie within the entry, a newer version is only
 * reported when the checksum vouches for it, and re-sealing the decoded
 * fields with cfx_entry_seal gives back an entry that decodes the same.
 */
#include <stdint.h>
#include <stdlib.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "fuzz_common.h"
#include "store/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The CRC an entry at `p` (of `size` bytes, type at p[10]) should carry. */
static uint32_t entry_crc(const uint8_t *p, uint32_t size)
{
	if (p[10] == CFX_ENTRY_END)
		return cfx_crc32c(0, p + 8, CFX_ENTRY_END_BYTES - 8);
	return cfx_crc32c(0, p + 8, size - 8);
}

/* Rewrites the CRC of each entry of the chain starting at `off`. */
static void reseal_chain(uint8_t *img, size_t len, size_t off)
{
	while (off + 8 <= len) {
		uint32_t size = cfx_load_le32(img + off);
		if (size == 0 || size % CFX_ENTRY_ALIGN || size < CFX_ENTRY_END_BYTES ||
		    size > len - off)
			return;
		if (img[off + 10] != CFX_ENTRY_END && size <= CFX_ENTRY_HEADER_BYTES)
			return;
		cfx_store_le32(img + off + 4, entry_crc(img + off, size));
		off += size;
	}
}

/* Sealing the decoded fields again must give an entry that decodes the same. */
static void check_reseal(const uint8_t *p, const struct cfx_entry *e)
{
	struct cfx_entry e2;
	uint8_t *copy = calloc(1, e->entry_bytes);
	size_t at = CFX_ENTRY_HEADER_BYTES + e->topic.len;

	FZ_CHECK(copy != NULL);
	memcpy(copy + at, e->payload.p, e->payload.len);
	FZ_CHECK(cfx_entry_seal(copy, e) == e->entry_bytes);
	/* Everything the decoder reads is reproduced byte for byte. */
	FZ_CHECK(memcmp(copy, p, 4) == 0);
	FZ_CHECK(memcmp(copy + 8, p + 8, 58 - 8) == 0);
	FZ_CHECK(memcmp(copy + CFX_ENTRY_HEADER_BYTES, p + CFX_ENTRY_HEADER_BYTES,
			e->topic.len + e->payload.len) == 0);
	FZ_CHECK(cfx_entry_decode(copy, e->entry_bytes, e->log_pos, 1, &e2, NULL) == 0);
	FZ_CHECK(e2.entry_bytes == e->entry_bytes && e2.type == e->type && e2.attrs == e->attrs);
	FZ_CHECK(e2.payload_bytes == e->payload_bytes && e2.queue_offset == e->queue_offset);
	FZ_CHECK(e2.store_ms == e->store_ms && e2.queue_id == e->queue_id);
	FZ_CHECK(e2.msg_count == e->msg_count && e2.tag_hash == e->tag_hash);
	FZ_CHECK(e2.sys_flags == e->sys_flags);
	FZ_CHECK(cfx_view_eq(e2.topic, e->topic) && cfx_view_eq(e2.payload, e->payload));
	free(copy);
}

/* Decodes the chain of entries from `off` until it ends or breaks. */
static void walk(const uint8_t *img, size_t len, size_t off, uint8_t flags)
{
	int verify = flags & FZ_ENTRY_VERIFY_CRC;

	while (off <= len) {
		const uint8_t *p = img + off;
		size_t avail = len - off;
		struct cfx_entry e;
		const char *why = NULL;
		int rc = cfx_entry_decode(p, avail, off, verify, &e, &why);

		/* The same answer without a place for the reason. */
		{
			struct cfx_entry e2;
			FZ_CHECK(cfx_entry_decode(p, avail, off, verify, &e2, NULL) == rc);
		}
		if (rc == CFX_NEED_MORE) {
			FZ_CHECK(avail >= 8 && cfx_load_le32(p) == 0);
			return;
		}
		if (rc == CFX_ECORRUPT) {
			FZ_CHECK(why != NULL);
			return;
		}
		if (rc == CFX_EVERSION) {
			/* Only a checksum-valid entry may claim a newer version. */
			FZ_CHECK(p[9] > CFX_ENTRY_VERSION);
			FZ_CHECK(cfx_load_le32(p + 4) == entry_crc(p, cfx_load_le32(p)));
			return;
		}
		FZ_CHECK(rc == 0);
		FZ_CHECK(e.entry_bytes % CFX_ENTRY_ALIGN == 0);
		FZ_CHECK(e.entry_bytes >= CFX_ENTRY_END_BYTES && e.entry_bytes <= avail);
		FZ_CHECK(e.log_pos == off);
		if (verify)
			FZ_CHECK(cfx_load_le32(p + 4) == entry_crc(p, e.entry_bytes));
		if (e.type == CFX_ENTRY_END) {
			fz_touch(p, CFX_ENTRY_END_BYTES);
		} else {
			FZ_CHECK(e.type == CFX_ENTRY_BATCH);
			FZ_CHECK(e.topic.len >= 1 && e.topic.len <= CFX_TOPIC_MAX);
			FZ_CHECK(e.msg_count >= 1);
			FZ_CHECK(e.payload.len == e.payload_bytes);
			FZ_CHECK(e.topic.p == p + CFX_ENTRY_HEADER_BYTES);
			FZ_CHECK(e.payload.p == e.topic.p + e.topic.len);
			FZ_CHECK(fz_view_within(e.topic, p, e.entry_bytes));
			FZ_CHECK(fz_view_within(e.payload, p, e.entry_bytes));
			FZ_CHECK(cfx_entry_size(e.topic.len, e.payload_bytes) == e.entry_bytes);
			fz_touch(p, e.entry_bytes);
			check_reseal(p, &e);
			fz_walk_batch(e.payload.p, e.payload.len, flags & FZ_ENTRY_VERIFY_BATCH_CRC,
				      NULL);
		}
		off += e.entry_bytes;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t flags, *img;
	size_t len, start;

	if (size < FZ_ENTRY_CTRL_BYTES)
		return 0;
	flags = data[0];
	start = cfx_load_le16(data + 1);
	len = size - FZ_ENTRY_CTRL_BYTES;
	img = calloc(1, len ? len : 1);
	FZ_CHECK(img != NULL);
	if (len)
		memcpy(img, data + FZ_ENTRY_CTRL_BYTES, len);
	start = len ? start % len : 0;
	if (flags & FZ_ENTRY_FIX_CRC) {
		reseal_chain(img, len, 0);
		reseal_chain(img, len, start);
	}

	walk(img, len, 0, flags);
	if (start)
		walk(img, len, start, flags);
	free(img);
	return 0;
}
