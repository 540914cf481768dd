/*
 * content.c - what the crash test stores: deterministic messages, their
 * checksums, and the ack log records.
 *
 * A message's content is a pure function of (topic index, queue, offset).
 * The writer knows the offset a batch will get before appending it, because
 * each queue has exactly one appending thread and nothing else appends; so
 * the verifier can regenerate every stored message, including the ones that
 * were written but never acknowledged before the kill.
 *
 * Sizes and shapes vary with the offset's hash so that every encoder path is
 * used: empty and 8 KiB bodies, null bodies, null and empty keys, messages
 * without tag or id, flags, zero to three binary user properties.
 *
 * It does not touch the store; the record layout is in crash.h.
 */
#include <inttypes.h>
#include <stdio.h>

#include "base/crc32c.h"
#include "crash.h"

static const char *const topic_names[CRASH_TOPICS] = { "crash-t0", "crash-t1" };

const char *crash_topic_name(unsigned t)
{
	CFX_ASSERT(t < CRASH_TOPICS);
	return topic_names[t];
}

void crash_store_opts(struct cfx_store_opts *o, const char *store_dir)
{
	cfx_store_opts_default(o);
	o->dir = store_dir;
	o->segment_bytes = CRASH_SEGMENT_BYTES;
	o->batch_bytes_max = CRASH_BATCH_BYTES_MAX;
	o->msg_bytes_max = CRASH_MSG_BYTES_MAX;
	o->index_entries_per_file = CRASH_INDEX_ENTRIES;
	o->key_index_entries = CRASH_KEY_INDEX_ENTRIES;
	o->queues_per_topic_max = 16;
	/* Every acknowledged message must stay: no retention. */
	o->retention_ms = 0;
	o->retention_bytes = 0;
	o->populate_ahead_bytes = 1u << 20;
}

/* ------------------------------------------------------------------------
 * Generating messages
 * ------------------------------------------------------------------------ */

static uint64_t msg_hash(unsigned t, unsigned queue, uint64_t offset)
{
	uint64_t h = crash_mix64(((uint64_t)t << 40) ^ ((uint64_t)queue << 20) ^ 0xc0ff1ceULL);
	return crash_mix64(h ^ offset);
}

/* Fills `n` bytes with a stream derived from `h`. */
static void fill_stream(uint8_t *p, size_t n, uint64_t h)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		h = crash_mix64(h);
		cfx_store_le64(p + i, h);
	}
	if (i < n) {
		uint8_t last[8];
		cfx_store_le64(last, crash_mix64(h));
		memcpy(p + i, last, n - i);
	}
}

static int has_key(uint64_t offset)
{
	return offset % 10 != 9 && offset % 10 != 4;
}

int crash_gen_key_token(unsigned t, unsigned queue, uint64_t offset, char *buf, size_t cap)
{
	if (!has_key(offset))
		return 0;
	snprintf(buf, cap, "k.%u.%u.%" PRIu64, t, queue, offset);
	return 1;
}

void crash_gen_msg(unsigned t, unsigned queue, uint64_t offset, struct crash_msg_buf *b,
		   struct cfx_msg *m)
{
	uint64_t h = msg_hash(t, queue, offset);
	size_t len;
	int n;

	memset(m, 0, sizeof *m);

	/* Body: a readable prefix naming the message, then a byte stream. Mostly
	 * spread over 0..8 KiB, a quarter of them short, a few null. */
	if (offset % 97 == 13) {
		m->body_null = 1;
	} else {
		if ((h & 0xff) < 64)
			len = (size_t)((h >> 8) % 65);
		else
			len = (size_t)((h >> 8) % (CRASH_BODY_BYTES_MAX + 1));
		char prefix[64];
		n = snprintf(prefix, sizeof prefix, "t%u/q%u/o%" PRIu64 ":", t, queue, offset);
		size_t plen = CFX_MIN((size_t)n, len);
		memcpy(b->body, prefix, plen);
		fill_stream(b->body + plen, len - plen, h);
		m->body = (struct cfx_view){ b->body, len };
	}

	/* Keys: a unique token and a token shared by 16 neighbours; some
	 * messages have a null key, some an empty one. */
	if (offset % 10 == 9) {
		m->key_null = 1;
	} else if (offset % 10 == 4) {
		m->key = (struct cfx_view){ (const uint8_t *)"", 0 };
	} else {
		snprintf(b->key, sizeof b->key, "k.%u.%u.%" PRIu64 " g.%u.%" PRIu64, t, queue,
			 offset, queue, offset / 16);
		m->key = CFX_VIEW_STR(b->key);
	}

	if (offset % 3 != 0) {
		snprintf(b->tag, sizeof b->tag, "tag-%u", (unsigned)((h >> 20) % 7));
		m->tag = CFX_VIEW_STR(b->tag);
	}
	if (offset % 11 != 10) {
		snprintf(b->msg_id, sizeof b->msg_id, "id-%u-%u-%" PRIu64, t, queue, offset);
		m->msg_id = CFX_VIEW_STR(b->msg_id);
	}
	m->flag = ((h >> 24) & 3) == 0 ? 0 : (uint32_t)(h >> 32);
	m->born_ms = 1700000000000LL + (int64_t)(offset * 3) + t;

	m->prop_count = (uint32_t)((h >> 40) % (CRASH_PROPS_MAX + 1));
	for (uint32_t i = 0; i < m->prop_count; i++) {
		uint64_t ph = crash_mix64(h ^ (0x100 + i));
		size_t vlen = (size_t)(ph % (CRASH_PROP_VALUE_BYTES_MAX + 1));
		b->prop_name[i][0] = 'p';
		b->prop_name[i][1] = (char)('0' + i);
		b->prop_name[i][2] = '\0';
		fill_stream(b->prop_value[i], vlen, ph);
		b->props[i].name = CFX_VIEW_STR(b->prop_name[i]);
		b->props[i].value = (struct cfx_view){ b->prop_value[i], vlen };
	}
	m->props = b->props;
}

/* ------------------------------------------------------------------------
 * Checksums: the same bytes fed in the same order from either side
 * ------------------------------------------------------------------------ */

static uint32_t dig_u64(uint32_t crc, uint64_t v)
{
	uint8_t b[8];
	cfx_store_le64(b, v);
	return cfx_crc32c(crc, b, sizeof b);
}

static uint32_t dig_view(uint32_t crc, struct cfx_view v)
{
	crc = dig_u64(crc, v.len);
	return v.len ? cfx_crc32c(crc, v.p, v.len) : crc;
}

static uint32_t dig_head(uint32_t crc, int key_null, int body_null, uint32_t flag, int64_t born,
			 struct cfx_view key, struct cfx_view body, struct cfx_view tag,
			 struct cfx_view id)
{
	struct cfx_view none = { NULL, 0 };

	crc = dig_u64(crc,
		      (uint64_t) !!key_null | (uint64_t) !!body_null << 1 | (uint64_t)flag << 32);
	crc = dig_u64(crc, (uint64_t)born);
	crc = dig_view(crc, key_null ? none : key);
	crc = dig_view(crc, body_null ? none : body);
	crc = dig_view(crc, tag);
	return dig_view(crc, id);
}

uint32_t crash_digest_msg(uint32_t crc, const struct cfx_msg *m)
{
	crc = dig_head(crc, m->key_null, m->body_null, m->flag, m->born_ms, m->key, m->body, m->tag,
		       m->msg_id);
	crc = dig_u64(crc, m->prop_count);
	for (uint32_t i = 0; i < m->prop_count; i++) {
		crc = dig_view(crc, m->props[i].name);
		crc = dig_view(crc, m->props[i].value);
	}
	return crc;
}

uint32_t crash_digest_view(uint32_t crc, const struct cfx_msg_view *v)
{
	struct cfx_prop p;
	size_t cur = 0;
	uint64_t n = 0;

	crc = dig_head(crc, v->key_null, v->body_null, v->flag, v->born_ms, v->key, v->body, v->tag,
		       v->msg_id);
	while (cfx_msg_view_next_prop(v, &cur, &p) == 1)
		n++;
	crc = dig_u64(crc, n);
	cur = 0;
	while (cfx_msg_view_next_prop(v, &cur, &p) == 1) {
		crc = dig_view(crc, p.name);
		crc = dig_view(crc, p.value);
	}
	return crc;
}

/* ------------------------------------------------------------------------
 * Comparing, with the first difference spelled out
 * ------------------------------------------------------------------------ */

static int view_equal(const char *field, struct cfx_view want, struct cfx_view got, char *why,
		      size_t cap)
{
	size_t i;

	if (want.len != got.len) {
		snprintf(why, cap, "%s is %zu bytes, expected %zu", field, got.len, want.len);
		return 0;
	}
	for (i = 0; i < want.len && want.p[i] == got.p[i]; i++)
		;
	if (i < want.len) {
		snprintf(why, cap, "%s differs at byte %zu of %zu (0x%02x, expected 0x%02x)", field,
			 i, want.len, got.p[i], want.p[i]);
		return 0;
	}
	return 1;
}

int crash_msg_equal(const struct cfx_msg *want, const struct cfx_msg_view *got, char *why,
		    size_t cap)
{
	struct cfx_prop p;
	size_t cur = 0;
	uint32_t i = 0;

	if (!!want->key_null != !!got->key_null) {
		snprintf(why, cap, "key is %snull, expected %snull", got->key_null ? "" : "not ",
			 want->key_null ? "" : "not ");
		return 0;
	}
	if (!!want->body_null != !!got->body_null) {
		snprintf(why, cap, "body is %snull, expected %snull", got->body_null ? "" : "not ",
			 want->body_null ? "" : "not ");
		return 0;
	}
	if (!want->key_null && !view_equal("key", want->key, got->key, why, cap))
		return 0;
	if (!want->body_null && !view_equal("body", want->body, got->body, why, cap))
		return 0;
	if (!view_equal("tag", want->tag, got->tag, why, cap) ||
	    !view_equal("msg id", want->msg_id, got->msg_id, why, cap))
		return 0;
	if (want->flag != got->flag) {
		snprintf(why, cap, "flag is %" PRIu32 ", expected %" PRIu32, got->flag, want->flag);
		return 0;
	}
	if (want->born_ms != got->born_ms) {
		snprintf(why, cap, "born time is %" PRId64 ", expected %" PRId64, got->born_ms,
			 want->born_ms);
		return 0;
	}
	while (cfx_msg_view_next_prop(got, &cur, &p) == 1) {
		if (i >= want->prop_count) {
			snprintf(why, cap, "more than the %" PRIu32 " expected properties",
				 want->prop_count);
			return 0;
		}
		if (!view_equal("property name", want->props[i].name, p.name, why, cap) ||
		    !view_equal("property value", want->props[i].value, p.value, why, cap))
			return 0;
		i++;
	}
	if (i != want->prop_count) {
		snprintf(why, cap, "%" PRIu32 " properties, expected %" PRIu32, i,
			 want->prop_count);
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * Ack records
 * ------------------------------------------------------------------------ */

void crash_ack_encode(uint8_t out[CRASH_ACK_BYTES], const struct crash_ack *a)
{
	memset(out, 0, CRASH_ACK_BYTES);
	cfx_store_le32(out + 0, CRASH_ACK_MAGIC);
	out[4] = a->topic;
	cfx_store_le16(out + 6, a->queue);
	cfx_store_le64(out + 8, a->first_offset);
	cfx_store_le32(out + 16, a->count);
	cfx_store_le32(out + 20, a->digest);
	cfx_store_le32(out + 24, a->run);
	cfx_store_le32(out + 28, cfx_crc32c(0, out, 28));
}

const char *crash_ack_decode(const uint8_t in[CRASH_ACK_BYTES], struct crash_ack *a)
{
	if (cfx_load_le32(in + 0) != CRASH_ACK_MAGIC)
		return "bad magic";
	if (cfx_load_le32(in + 28) != cfx_crc32c(0, in, 28))
		return "bad checksum";
	a->topic = in[4];
	a->queue = cfx_load_le16(in + 6);
	a->first_offset = cfx_load_le64(in + 8);
	a->count = cfx_load_le32(in + 16);
	a->digest = cfx_load_le32(in + 20);
	a->run = cfx_load_le32(in + 24);
	if (a->topic >= CRASH_TOPICS || a->queue >= CRASH_QUEUES)
		return "topic or queue out of range";
	if (a->count == 0 || a->count > CRASH_BATCH_MSGS_MAX)
		return "message count out of range";
	return NULL;
}
