/*
 * format.c - encoders and decoders of the on-disk layouts in format.h.
 * Pure functions: bytes in, bytes or structs out.
 */
#include "store/format.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/hash.h"

/* ------------------------------------------------------------------------
 * Small helpers for the fixed 64-byte headers with a trailing CRC
 * ------------------------------------------------------------------------ */

static void seal64(uint8_t out[64])
{
	cfx_store_le32(out + 60, cfx_crc32c(0, out, 60));
}

static int check64(const uint8_t in[64], uint32_t magic, uint32_t max_version)
{
	if (cfx_load_le32(in) != magic)
		return CFX_ECORRUPT;
	if (cfx_load_le32(in + 60) != cfx_crc32c(0, in, 60))
		return CFX_ECORRUPT;
	if (cfx_load_le32(in + 4) == 0)
		return CFX_ECORRUPT;
	if (cfx_load_le32(in + 4) > max_version)
		return CFX_EVERSION;
	return 0;
}

/* ------------------------------------------------------------------------
 * Segment header
 * ------------------------------------------------------------------------ */

void cfx_seg_header_encode(uint8_t out[CFX_SEG_HEADER_BYTES], const struct cfx_seg_header *h)
{
	memset(out, 0, CFX_SEG_HEADER_BYTES);
	cfx_store_le32(out + 0, CFX_SEG_MAGIC);
	cfx_store_le32(out + 4, CFX_SEG_VERSION);
	cfx_store_le64(out + 8, h->base_pos);
	cfx_store_le64(out + 16, h->segment_bytes);
	cfx_store_le64(out + 24, (uint64_t)h->created_ms);
	seal64(out);
}

int cfx_seg_header_decode(const uint8_t in[CFX_SEG_HEADER_BYTES], struct cfx_seg_header *h)
{
	int rc = check64(in, CFX_SEG_MAGIC, CFX_SEG_VERSION);
	if (rc)
		return rc;
	h->version = cfx_load_le32(in + 4);
	h->base_pos = cfx_load_le64(in + 8);
	h->segment_bytes = cfx_load_le64(in + 16);
	h->created_ms = (int64_t)cfx_load_le64(in + 24);
	if (h->segment_bytes < CFX_SEG_HEADER_BYTES + CFX_ENTRY_END_BYTES ||
	    h->segment_bytes % CFX_ENTRY_ALIGN || h->base_pos % CFX_ENTRY_ALIGN)
		return CFX_ECORRUPT;
	return 0;
}

/* ------------------------------------------------------------------------
 * Log entries
 * ------------------------------------------------------------------------ */

uint32_t cfx_entry_seal(uint8_t *out, const struct cfx_entry *e)
{
	uint32_t size = cfx_entry_size(e->topic.len, e->payload_bytes);
	size_t end = CFX_ENTRY_HEADER_BYTES + e->topic.len + e->payload_bytes;

	CFX_ASSERT(e->topic.len >= 1 && e->topic.len <= CFX_TOPIC_MAX);
	CFX_ASSERT(e->msg_count >= 1);
	cfx_store_le32(out + 0, size);
	out[8] = CFX_ENTRY_MAGIC;
	out[9] = CFX_ENTRY_VERSION;
	out[10] = CFX_ENTRY_BATCH;
	out[11] = e->attrs;
	cfx_store_le32(out + 12, e->payload_bytes);
	cfx_store_le64(out + 16, e->log_pos);
	cfx_store_le64(out + 24, e->queue_offset);
	cfx_store_le64(out + 32, (uint64_t)e->store_ms);
	cfx_store_le32(out + 40, e->queue_id);
	cfx_store_le32(out + 44, e->msg_count);
	cfx_store_le32(out + 48, e->tag_hash);
	cfx_store_le32(out + 52, e->sys_flags);
	cfx_store_le16(out + 56, (uint16_t)e->topic.len);
	memset(out + 58, 0, 6);
	memcpy(out + CFX_ENTRY_HEADER_BYTES, e->topic.p, e->topic.len);
	memset(out + end, 0, size - end);
	cfx_store_le32(out + 4, cfx_crc32c(0, out + 8, size - 8));
	return size;
}

void cfx_entry_end_encode(uint8_t out[CFX_ENTRY_END_BYTES], uint32_t entry_bytes,
			  int64_t max_store_ms)
{
	memset(out, 0, CFX_ENTRY_END_BYTES);
	cfx_store_le32(out + 0, entry_bytes);
	out[8] = CFX_ENTRY_MAGIC;
	out[9] = CFX_ENTRY_VERSION;
	out[10] = CFX_ENTRY_END;
	cfx_store_le64(out + 16, (uint64_t)max_store_ms);
	cfx_store_le32(out + 4, cfx_crc32c(0, out + 8, CFX_ENTRY_END_BYTES - 8));
}

#define CORRUPT(reason) \
	do { \
		*why = (reason); \
		return CFX_ECORRUPT; \
	} while (0)

int cfx_entry_decode(const uint8_t *p, size_t avail, uint64_t pos, int verify_crc,
		     struct cfx_entry *e, const char **why)
{
	const char *dummy;
	uint32_t size, crc;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (avail < 8)
		CORRUPT("entry header truncated");
	size = cfx_load_le32(p);
	if (size == 0)
		return CFX_NEED_MORE;
	if (size % CFX_ENTRY_ALIGN || size > avail || size < CFX_ENTRY_END_BYTES)
		CORRUPT("bad entry size");
	crc = cfx_load_le32(p + 4);
	if (p[8] != CFX_ENTRY_MAGIC)
		CORRUPT("bad entry magic");
	memset(e, 0, sizeof *e);
	e->entry_bytes = size;
	e->type = p[10];
	e->log_pos = pos;
	if (e->type == CFX_ENTRY_END) {
		if (crc != cfx_crc32c(0, p + 8, CFX_ENTRY_END_BYTES - 8))
			CORRUPT("bad end-marker checksum");
		if (p[9] > CFX_ENTRY_VERSION)
			return CFX_EVERSION;
		e->store_ms = (int64_t)cfx_load_le64(p + 16);
		return 0;
	}
	if (size < CFX_ENTRY_HEADER_BYTES + 1)
		CORRUPT("bad entry size");
	if (verify_crc && crc != cfx_crc32c(0, p + 8, size - 8))
		CORRUPT("bad entry checksum");
	if (p[9] > CFX_ENTRY_VERSION) {
		/* Only trust the version byte when the checksum vouches for it. */
		if (!verify_crc && crc != cfx_crc32c(0, p + 8, size - 8))
			CORRUPT("bad entry checksum");
		return CFX_EVERSION;
	}
	if (p[9] == 0)
		CORRUPT("bad entry version");
	if (e->type != CFX_ENTRY_BATCH)
		CORRUPT("unknown entry type");
	e->attrs = p[11];
	e->payload_bytes = cfx_load_le32(p + 12);
	if (cfx_load_le64(p + 16) != pos)
		CORRUPT("entry position mismatch");
	e->queue_offset = cfx_load_le64(p + 24);
	e->store_ms = (int64_t)cfx_load_le64(p + 32);
	e->queue_id = cfx_load_le32(p + 40);
	e->msg_count = cfx_load_le32(p + 44);
	e->tag_hash = cfx_load_le32(p + 48);
	e->sys_flags = cfx_load_le32(p + 52);
	e->topic.len = cfx_load_le16(p + 56);
	e->topic.p = p + CFX_ENTRY_HEADER_BYTES;
	if (e->topic.len == 0 || e->topic.len > CFX_TOPIC_MAX)
		CORRUPT("bad topic length");
	if (e->msg_count == 0)
		CORRUPT("empty batch");
	if ((uint64_t)CFX_ENTRY_HEADER_BYTES + e->topic.len + e->payload_bytes > size ||
	    cfx_entry_size(e->topic.len, e->payload_bytes) != size)
		CORRUPT("payload size mismatch");
	e->payload.p = e->topic.p + e->topic.len;
	e->payload.len = e->payload_bytes;
	return 0;
}

/* ------------------------------------------------------------------------
 * Batch index entries
 * ------------------------------------------------------------------------ */

void cfx_idx_entry_encode(uint8_t out[CFX_IDX_ENTRY_BYTES], const struct cfx_idx_entry *ie)
{
	cfx_store_le64(out + 0, ie->log_pos);
	cfx_store_le64(out + 8, ie->first_offset);
	cfx_store_le64(out + 16, (uint64_t)ie->store_ms);
	cfx_store_le32(out + 24, ie->entry_bytes);
	cfx_store_le32(out + 28, ie->msg_count);
	cfx_store_le32(out + 32, ie->tag_hash);
	cfx_store_le32(out + 36, cfx_crc32c(0, out, 36));
}

int cfx_idx_entry_decode(const uint8_t in[CFX_IDX_ENTRY_BYTES], struct cfx_idx_entry *ie)
{
	if (cfx_load_le32(in + 24) == 0 || cfx_load_le32(in + 36) != cfx_crc32c(0, in, 36))
		return 0;
	ie->log_pos = cfx_load_le64(in + 0);
	ie->first_offset = cfx_load_le64(in + 8);
	ie->store_ms = (int64_t)cfx_load_le64(in + 16);
	ie->entry_bytes = cfx_load_le32(in + 24);
	ie->msg_count = cfx_load_le32(in + 28);
	ie->tag_hash = cfx_load_le32(in + 32);
	return ie->msg_count != 0;
}

/* ------------------------------------------------------------------------
 * Key index
 * ------------------------------------------------------------------------ */

void cfx_kix_header_encode(uint8_t out[CFX_KIX_HEADER_BYTES], const struct cfx_kix_header *h)
{
	memset(out, 0, CFX_KIX_HEADER_BYTES);
	cfx_store_le32(out + 0, CFX_KIX_MAGIC);
	cfx_store_le32(out + 4, CFX_KIX_VERSION);
	cfx_store_le32(out + 8, h->slot_count);
	cfx_store_le32(out + 12, h->entry_cap);
	seal64(out);
}

int cfx_kix_header_decode(const uint8_t in[CFX_KIX_HEADER_BYTES], struct cfx_kix_header *h)
{
	int rc = check64(in, CFX_KIX_MAGIC, CFX_KIX_VERSION);
	if (rc)
		return rc;
	h->version = cfx_load_le32(in + 4);
	h->slot_count = cfx_load_le32(in + 8);
	h->entry_cap = cfx_load_le32(in + 12);
	if (h->slot_count == 0 || h->entry_cap == 0 || h->entry_cap >= UINT32_MAX - 1)
		return CFX_ECORRUPT;
	return 0;
}

void cfx_kix_entry_encode(uint8_t out[CFX_KIX_ENTRY_BYTES], const struct cfx_kix_entry *ke)
{
	cfx_store_le64(out + 0, ke->hash);
	cfx_store_le64(out + 8, ke->log_pos);
	cfx_store_le32(out + 16, ke->prev);
	cfx_store_le32(out + 20, cfx_crc32c(0, out, 20));
}

int cfx_kix_entry_decode(const uint8_t in[CFX_KIX_ENTRY_BYTES], struct cfx_kix_entry *ke)
{
	if (cfx_load_le64(in) == 0 || cfx_load_le32(in + 20) != cfx_crc32c(0, in, 20))
		return 0;
	ke->hash = cfx_load_le64(in + 0);
	ke->log_pos = cfx_load_le64(in + 8);
	ke->prev = cfx_load_le32(in + 16);
	return 1;
}

uint64_t cfx_keyidx_hash(enum cfx_key_kind kind, struct cfx_view topic, struct cfx_view key)
{
	uint8_t k = (uint8_t)kind, sep = 0;
	uint64_t h = cfx_hash_bytes(CFX_HASH_SEED, &k, 1);

	if (kind == CFX_KEY_KIND_KEY) {
		h = cfx_hash_bytes(h, topic.p, topic.len);
		h = cfx_hash_bytes(h, &sep, 1);
	}
	h = cfx_hash_mix64(cfx_hash_bytes(h, key.p, key.len));
	return h ? h : 1;
}

/* ------------------------------------------------------------------------
 * Checkpoint
 * ------------------------------------------------------------------------ */

void cfx_checkpoint_encode(uint8_t out[CFX_CKPT_BYTES], const struct cfx_checkpoint *c)
{
	memset(out, 0, CFX_CKPT_BYTES);
	cfx_store_le32(out + 0, CFX_CKPT_MAGIC);
	cfx_store_le32(out + 4, CFX_CKPT_VERSION);
	cfx_store_le64(out + 8, c->durable_pos);
	cfx_store_le64(out + 16, c->log_end_pos);
	cfx_store_le32(out + 24, c->clean);
	cfx_store_le64(out + 32, (uint64_t)c->written_ms);
	cfx_store_le64(out + 40, c->idx_entries);
	cfx_store_le64(out + 48, c->key_entries);
	seal64(out);
}

int cfx_checkpoint_decode(const uint8_t *in, size_t len, struct cfx_checkpoint *c)
{
	int rc;

	if (len != CFX_CKPT_BYTES)
		return CFX_ECORRUPT;
	rc = check64(in, CFX_CKPT_MAGIC, CFX_CKPT_VERSION);
	if (rc)
		return rc;
	c->durable_pos = cfx_load_le64(in + 8);
	c->log_end_pos = cfx_load_le64(in + 16);
	c->clean = cfx_load_le32(in + 24);
	c->written_ms = (int64_t)cfx_load_le64(in + 32);
	c->idx_entries = cfx_load_le64(in + 40);
	c->key_entries = cfx_load_le64(in + 48);
	if (c->log_end_pos < c->durable_pos)
		return CFX_ECORRUPT;
	return 0;
}

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

int cfx_topic_name_is_valid(struct cfx_view topic)
{
	if (topic.len < 1 || topic.len > CFX_TOPIC_MAX)
		return 0;
	for (size_t i = 0; i < topic.len; i++) {
		uint8_t c = topic.p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '%' || c == '|'))
			return 0;
	}
	return 1;
}

uint32_t cfx_tag_hash(struct cfx_view tag)
{
	uint32_t h = (uint32_t)cfx_hash64(tag.p, tag.len);
	return h < 2 ? h + 2 : h;
}
