/*
 * batch.c - Kafka RecordBatch v2 encoding and decoding of Conflux messages.
 *
 * Record layout (Kafka's "Record", all lengths zig-zag varints):
 *   length, attributes (int8), timestampDelta (varlong), offsetDelta,
 *   keyLength, key, valueLength, value, headersCount,
 *   headers: keyLength, key, valueLength, value
 * A length of -1 is a null key, value or header value.
 */
#include "store/batch.h"

#include <inttypes.h>
#include <stdio.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "store/format.h"

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

static int is_reserved(struct cfx_view name)
{
	return cfx_view_eq_str(name, CFX_PROP_TAG) || cfx_view_eq_str(name, CFX_PROP_MSG_ID) ||
	       cfx_view_eq_str(name, CFX_PROP_FLAG);
}

static size_t header_size(size_t name_len, size_t value_len)
{
	return cfx_varint_size((int64_t)name_len) + name_len + cfx_varint_size((int64_t)value_len) +
	       value_len;
}

/* Size of the record's fields after its length prefix. */
static size_t record_body_size(const struct cfx_msg *m, int64_t ts_delta, uint32_t idx,
			       uint32_t hdrs, size_t flag_len)
{
	size_t n = 1 + cfx_varint_size(ts_delta) + cfx_varint_size(idx);

	n += m->key_null ? 1 : cfx_varint_size((int64_t)m->key.len) + m->key.len;
	n += m->body_null ? 1 : cfx_varint_size((int64_t)m->body.len) + m->body.len;
	n += cfx_varint_size(hdrs);
	if (m->tag.len)
		n += header_size(strlen(CFX_PROP_TAG), m->tag.len);
	if (m->msg_id.len)
		n += header_size(strlen(CFX_PROP_MSG_ID), m->msg_id.len);
	if (m->flag)
		n += header_size(strlen(CFX_PROP_FLAG), flag_len);
	for (uint32_t i = 0; i < m->prop_count; i++)
		n += header_size(m->props[i].name.len, m->props[i].value.len);
	return n;
}

static void write_bytes_field(struct cfx_writer *wr, struct cfx_view v)
{
	cfx_write_varint64(wr, (int64_t)v.len);
	cfx_write_bytes(wr, v.p, v.len);
}

static void write_header(struct cfx_writer *wr, const char *name, struct cfx_view value)
{
	write_bytes_field(wr, CFX_VIEW_STR(name));
	write_bytes_field(wr, value);
}

int cfx_batch_encode(struct cfx_writer *wr, const struct cfx_msg *msgs, uint32_t count,
		     struct cfx_batch_info *info)
{
	size_t start = wr->len;
	int64_t base_ts, max_ts;
	uint8_t *h;

	if (count == 0 || count > CFX_BATCH_RECORDS_MAX)
		return CFX_EINVAL;
	memset(info, 0, sizeof *info);
	info->count = count;
	base_ts = max_ts = msgs[0].born_ms;
	for (uint32_t i = 0; i < count; i++) {
		if (msgs[i].prop_count > CFX_MSG_PROPS_MAX - 3)
			return CFX_E2BIG;
		for (uint32_t j = 0; j < msgs[i].prop_count; j++)
			if (is_reserved(msgs[i].props[j].name))
				return CFX_EINVAL;
		if (msgs[i].born_ms > max_ts)
			max_ts = msgs[i].born_ms;
	}

	/* Request: RecordBatch header; CRC and length are back-patched. */
	h = cfx_writer_extend(wr, CFX_KBATCH_HEADER_BYTES);
	memset(h, 0, CFX_KBATCH_HEADER_BYTES);
	cfx_store_be64(h + CFX_KBATCH_OFF_BASE_OFFSET, 0);
	cfx_store_be32(h + CFX_KBATCH_OFF_LEADER_EPOCH, 0);
	h[CFX_KBATCH_OFF_MAGIC] = 2;
	cfx_store_be16(h + CFX_KBATCH_OFF_ATTRIBUTES, 0);
	cfx_store_be32(h + CFX_KBATCH_OFF_LAST_OFFSET_DELTA, count - 1);
	cfx_store_be64(h + CFX_KBATCH_OFF_BASE_TIMESTAMP, (uint64_t)base_ts);
	cfx_store_be64(h + CFX_KBATCH_OFF_MAX_TIMESTAMP, (uint64_t)max_ts);
	cfx_store_be64(h + CFX_KBATCH_OFF_PRODUCER_ID, UINT64_MAX);	  /* -1 */
	cfx_store_be16(h + CFX_KBATCH_OFF_PRODUCER_EPOCH, UINT16_MAX); /* -1 */
	cfx_store_be32(h + CFX_KBATCH_OFF_BASE_SEQUENCE, UINT32_MAX);  /* -1 */
	cfx_store_be32(h + CFX_KBATCH_OFF_RECORDS_COUNT, count);

	for (uint32_t i = 0; i < count; i++) {
		const struct cfx_msg *m = &msgs[i];
		char flag_txt[16];
		size_t flag_len = 0, body;
		uint32_t hdrs = m->prop_count + (m->tag.len != 0) + (m->msg_id.len != 0) +
				(m->flag != 0);
		/* Kafka's timestamps wrap: compute the delta modulo 2^64. */
		int64_t ts_delta = (int64_t)((uint64_t)m->born_ms - (uint64_t)base_ts);
		uint32_t tag_hash;

		if (m->flag)
			flag_len = (size_t)snprintf(flag_txt, sizeof flag_txt, "%" PRIu32, m->flag);
		body = record_body_size(m, ts_delta, i, hdrs, flag_len);
		if (body + cfx_varint_size((int64_t)body) > info->record_bytes_max)
			info->record_bytes_max = body + cfx_varint_size((int64_t)body);

		/* Record: length, attributes, timestampDelta, offsetDelta */
		cfx_write_varint64(wr, (int64_t)body);
		cfx_write_u8(wr, 0);
		cfx_write_varint64(wr, ts_delta);
		cfx_write_varint64(wr, i);
		/* Record: key, value */
		if (m->key_null)
			cfx_write_varint64(wr, -1);
		else
			write_bytes_field(wr, m->key);
		if (m->body_null)
			cfx_write_varint64(wr, -1);
		else
			write_bytes_field(wr, m->body);
		/* Record: headers */
		cfx_write_varint64(wr, hdrs);
		if (m->tag.len)
			write_header(wr, CFX_PROP_TAG, m->tag);
		if (m->msg_id.len)
			write_header(wr, CFX_PROP_MSG_ID, m->msg_id);
		if (m->flag)
			write_header(wr, CFX_PROP_FLAG, (struct cfx_view){ (uint8_t *)flag_txt, flag_len });
		for (uint32_t j = 0; j < m->prop_count; j++) {
			write_bytes_field(wr, m->props[j].name);
			write_bytes_field(wr, m->props[j].value);
		}

		if ((!m->key_null && m->key.len) || m->msg_id.len)
			info->has_keys = 1;
		tag_hash = m->tag.len ? cfx_tag_hash(m->tag) : CFX_TAG_HASH_NONE;
		if (i == 0)
			info->tag_hash = tag_hash;
		else if (info->tag_hash != tag_hash)
			info->tag_hash = CFX_TAG_HASH_MIXED;
	}

	h = wr->p + start;
	cfx_store_be32(h + CFX_KBATCH_OFF_LENGTH, (uint32_t)(wr->len - start - 12));
	cfx_store_be32(h + CFX_KBATCH_OFF_CRC,
		       cfx_crc32c(0, h + CFX_KBATCH_OFF_ATTRIBUTES,
				  wr->len - start - CFX_KBATCH_OFF_ATTRIBUTES));
	return 0;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

#define FAIL(reason) \
	do { \
		*why = (reason); \
		return CFX_EPARSE; \
	} while (0)

/* Checks the header of the batch at `p` and fills `b` from it, records aside. */
static int open_header(struct cfx_batch_rd *b, const uint8_t *p, size_t len, int verify_crc,
		       const char **why)
{
	uint32_t batch_len;

	memset(b, 0, sizeof *b);
	if (len < CFX_KBATCH_HEADER_BYTES)
		FAIL("record batch truncated");
	batch_len = cfx_load_be32(p + CFX_KBATCH_OFF_LENGTH);
	if ((uint64_t)batch_len + 12 != len)
		FAIL("record batch length mismatch");
	if (p[CFX_KBATCH_OFF_MAGIC] != 2)
		FAIL("record batch magic is not 2");
	if (verify_crc &&
	    cfx_load_be32(p + CFX_KBATCH_OFF_CRC) !=
		    cfx_crc32c(0, p + CFX_KBATCH_OFF_ATTRIBUTES, len - CFX_KBATCH_OFF_ATTRIBUTES))
		FAIL("record batch checksum mismatch");
	b->base_offset = cfx_load_be64(p + CFX_KBATCH_OFF_BASE_OFFSET);
	b->leader_epoch = (int32_t)cfx_load_be32(p + CFX_KBATCH_OFF_LEADER_EPOCH);
	b->attributes = cfx_load_be16(p + CFX_KBATCH_OFF_ATTRIBUTES);
	b->base_ts = (int64_t)cfx_load_be64(p + CFX_KBATCH_OFF_BASE_TIMESTAMP);
	b->max_ts = (int64_t)cfx_load_be64(p + CFX_KBATCH_OFF_MAX_TIMESTAMP);
	b->producer_id = (int64_t)cfx_load_be64(p + CFX_KBATCH_OFF_PRODUCER_ID);
	b->producer_epoch = (int16_t)cfx_load_be16(p + CFX_KBATCH_OFF_PRODUCER_EPOCH);
	b->base_sequence = (int32_t)cfx_load_be32(p + CFX_KBATCH_OFF_BASE_SEQUENCE);
	b->count = cfx_load_be32(p + CFX_KBATCH_OFF_RECORDS_COUNT);
	if (b->count == 0 || b->count > CFX_BATCH_RECORDS_MAX)
		FAIL("bad record count");
	if (cfx_load_be32(p + CFX_KBATCH_OFF_LAST_OFFSET_DELTA) != b->count - 1)
		FAIL("lastOffsetDelta does not match the record count");
	return 0;
}

int cfx_batch_open(struct cfx_batch_rd *b, const uint8_t *p, size_t len, int verify_crc,
		   const char **why)
{
	const char *dummy;
	int rc;

	if (!why)
		why = &dummy;
	rc = open_header(b, p, len, verify_crc, why);
	if (rc)
		return rc;
	if (b->attributes & CFX_KBATCH_ATTR_CONTROL) {
		*why = "control batches hold no messages";
		return CFX_EUNSUPPORTED;
	}
	if (b->attributes & CFX_KBATCH_ATTR_COMPRESSION_MASK) {
		*why = "compressed batch: decompress its records and use cfx_batch_open_records";
		return CFX_EUNSUPPORTED;
	}
	b->rd = cfx_reader_make(p + CFX_KBATCH_HEADER_BYTES, len - CFX_KBATCH_HEADER_BYTES);
	return 0;
}

int cfx_batch_open_records(struct cfx_batch_rd *b, const uint8_t *p, size_t len, int verify_crc,
			   const uint8_t *records, size_t records_len, const char **why)
{
	const char *dummy;
	int rc;

	if (!why)
		why = &dummy;
	rc = open_header(b, p, len, verify_crc, why);
	if (rc)
		return rc;
	if (b->attributes & CFX_KBATCH_ATTR_CONTROL) {
		*why = "control batches hold no messages";
		return CFX_EUNSUPPORTED;
	}
	b->rd = cfx_reader_make(records, records_len);
	return 0;
}

/* Reads a varint length; -1 means null. Fails on < -1 or beyond the record. */
static const uint8_t *read_nullable(struct cfx_reader *rd, size_t *len, int *is_null)
{
	int32_t n = cfx_read_varint32(rd);

	*is_null = 0;
	*len = 0;
	if (rd->err)
		return NULL;
	if (n == -1) {
		*is_null = 1;
		return NULL;
	}
	if (n < 0) {
		cfx_reader_fail(rd, "negative length");
		return NULL;
	}
	*len = (size_t)n;
	return cfx_read_bytes(rd, (size_t)n, "field beyond record end");
}

static uint32_t parse_flag(struct cfx_view v)
{
	uint64_t x = 0;

	if (v.len == 0 || v.len > 10)
		return 0;
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return 0;
		x = x * 10 + (v.p[i] - '0');
	}
	return x > UINT32_MAX ? 0 : (uint32_t)x;
}

int cfx_batch_next(struct cfx_batch_rd *b, struct cfx_msg_view *m, const char **why)
{
	const char *dummy;
	struct cfx_reader rec;
	const uint8_t *body;
	int32_t rec_len, offset_delta, hdr_count;
	int64_t ts_delta;
	size_t len, rec_start;
	int is_null;

	if (!why)
		why = &dummy;
	if (b->next_idx >= b->count) {
		if (cfx_reader_left(&b->rd) != 0)
			FAIL("bytes after the last record");
		return 0;
	}
	rec_start = b->rd.pos;
	rec_len = cfx_read_varint32(&b->rd);
	if (b->rd.err || rec_len < 0)
		FAIL("bad record length");
	body = cfx_read_bytes(&b->rd, (size_t)rec_len, NULL);
	if (!body)
		FAIL("record beyond batch end");
	memset(m, 0, sizeof *m);
	m->record_bytes = (uint32_t)(b->rd.pos - rec_start);

	rec = cfx_reader_make(body, (size_t)rec_len);
	(void)cfx_read_u8(&rec); /* attributes: unused */
	ts_delta = cfx_read_varint64(&rec);
	offset_delta = cfx_read_varint32(&rec);
	m->key.p = read_nullable(&rec, &len, &m->key_null);
	m->key.len = len;
	m->body.p = read_nullable(&rec, &len, &m->body_null);
	m->body.len = len;
	hdr_count = cfx_read_varint32(&rec);
	if (rec.err)
		FAIL(rec.err_desc ? rec.err_desc : "malformed record");
	if (offset_delta < 0 || (uint32_t)offset_delta != b->next_idx)
		FAIL("offsetDelta out of sequence");
	if (hdr_count < 0 || (uint32_t)hdr_count > CFX_MSG_PROPS_MAX)
		FAIL("bad header count");

	m->headers.p = rec.p + rec.pos;
	for (int32_t i = 0; i < hdr_count; i++) {
		struct cfx_view name, value;
		int value_null;

		name.p = read_nullable(&rec, &name.len, &is_null);
		if (is_null)
			cfx_reader_fail(&rec, "null header name");
		value.p = read_nullable(&rec, &value.len, &value_null);
		if (rec.err)
			FAIL(rec.err_desc ? rec.err_desc : "malformed header");
		if (cfx_view_eq_str(name, CFX_PROP_TAG))
			m->tag = value;
		else if (cfx_view_eq_str(name, CFX_PROP_MSG_ID))
			m->msg_id = value;
		else if (cfx_view_eq_str(name, CFX_PROP_FLAG))
			m->flag = parse_flag(value);
	}
	m->headers.len = (size_t)(rec.p + rec.pos - m->headers.p);
	m->header_count = (uint32_t)hdr_count;
	if (cfx_reader_left(&rec) != 0)
		FAIL("bytes after the last header");
	m->offset = b->base_offset + b->next_idx;
	m->born_ms = (int64_t)((uint64_t)b->base_ts + (uint64_t)ts_delta);
	b->next_idx++;
	return 1;
}

int cfx_msg_view_next_prop(const struct cfx_msg_view *m, size_t *cursor, struct cfx_prop *prop)
{
	struct cfx_reader rd = cfx_reader_make(m->headers.p, m->headers.len);
	int is_null;

	rd.pos = *cursor;
	while (cfx_reader_left(&rd) > 0) {
		prop->name.p = read_nullable(&rd, &prop->name.len, &is_null);
		prop->value.p = read_nullable(&rd, &prop->value.len, &is_null);
		if (rd.err)
			return 0; /* validated by cfx_batch_next; cannot happen */
		*cursor = rd.pos;
		if (!is_reserved(prop->name))
			return 1;
	}
	return 0;
}
