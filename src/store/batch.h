/*
 * batch.h - the payload of a log entry: a Kafka RecordBatch v2 holding
 * Conflux messages.
 *
 * The store keeps messages in Kafka's own batch format so that a Kafka
 * consumer can be sent the stored bytes as they are, while every other
 * protocol decodes individual messages from the same bytes. A Conflux
 * message maps onto a Kafka record like this:
 *
 *   message keys (space-separated)  -> record key
 *   body                            -> record value
 *   born timestamp                  -> baseTimestamp + timestampDelta
 *   tag                             -> header "TAGS"
 *   message id                      -> header "UNIQ_KEY"
 *   user flag (if non-zero)         -> header "FLAG" (decimal text)
 *   other properties                -> headers, in order
 *
 * Encoding and decoding are pure functions of bytes; decoding checks every
 * length against the bytes at hand and against the limits below. See
 * docs/storage.md for the byte layout.
 */
#ifndef CFX_STORE_BATCH_H
#define CFX_STORE_BATCH_H

#include "base/buf.h"
#include "base/common.h"

/* RecordBatch v2 header layout (big-endian, Kafka's definition). */
#define CFX_KBATCH_HEADER_BYTES 61u
#define CFX_KBATCH_OFF_BASE_OFFSET 0
#define CFX_KBATCH_OFF_LENGTH 8
#define CFX_KBATCH_OFF_LEADER_EPOCH 12
#define CFX_KBATCH_OFF_MAGIC 16
#define CFX_KBATCH_OFF_CRC 17
#define CFX_KBATCH_OFF_ATTRIBUTES 21
#define CFX_KBATCH_OFF_LAST_OFFSET_DELTA 23
#define CFX_KBATCH_OFF_BASE_TIMESTAMP 27
#define CFX_KBATCH_OFF_MAX_TIMESTAMP 35
#define CFX_KBATCH_OFF_PRODUCER_ID 43
#define CFX_KBATCH_OFF_PRODUCER_EPOCH 51
#define CFX_KBATCH_OFF_BASE_SEQUENCE 53
#define CFX_KBATCH_OFF_RECORDS_COUNT 57

#define CFX_KBATCH_ATTR_COMPRESSION_MASK 0x07
#define CFX_KBATCH_ATTR_LOG_APPEND_TIME 0x08
#define CFX_KBATCH_ATTR_TRANSACTIONAL 0x10
#define CFX_KBATCH_ATTR_CONTROL 0x20

/* Limits on decoded input. */
#define CFX_BATCH_RECORDS_MAX 1000000u /* records in one batch */
#define CFX_MSG_PROPS_MAX 1024u	/* headers of one record */

/* Reserved header names (RocketMQ's property names). */
#define CFX_PROP_TAG "TAGS"
#define CFX_PROP_MSG_ID "UNIQ_KEY"
#define CFX_PROP_FLAG "FLAG"

struct cfx_prop {
	struct cfx_view name;
	struct cfx_view value;
};

/* A message to encode. Views are borrowed for the duration of the call. */
struct cfx_msg {
	struct cfx_view key; /* keys, space-separated; ignored if key_null */
	int key_null;
	struct cfx_view body;
	int body_null; /* a Kafka null value (tombstone) */
	struct cfx_view tag;	/* empty = no tag */
	struct cfx_view msg_id; /* empty = no id */
	int64_t born_ms;
	uint32_t flag;
	const struct cfx_prop *props;
	uint32_t prop_count;
};

/* What the encoder learned about a batch, for the log entry header. */
struct cfx_batch_info {
	uint32_t count;
	uint32_t tag_hash; /* CFX_TAG_HASH_NONE, _MIXED, or the one tag's hash */
	int has_keys;	   /* some message has a key or an id */
	size_t record_bytes_max; /* largest encoded record */
};

/*
 * Appends a RecordBatch v2 holding `count` messages to `wr`. baseOffset is
 * written as 0 (the store sets it when appending; Kafka's CRC does not
 * cover it). Returns 0, or CFX_EINVAL for an empty batch or a property that
 * uses a reserved name (TAGS, UNIQ_KEY, FLAG: set the fields instead), and
 * CFX_E2BIG for a message with more than CFX_MSG_PROPS_MAX - 3 properties.
 */
int cfx_batch_encode(struct cfx_writer *wr, const struct cfx_msg *msgs, uint32_t count,
		     struct cfx_batch_info *info);

/* A decoded message. Views point into the batch bytes. */
struct cfx_msg_view {
	uint64_t offset;       /* queue offset */
	int64_t born_ms;
	int64_t store_ms;      /* filled by the store, not by the batch decoder */
	struct cfx_view key;
	int key_null;
	struct cfx_view body;
	int body_null;
	struct cfx_view tag;
	struct cfx_view msg_id;
	uint32_t flag;
	struct cfx_view headers; /* raw encoded headers, for cfx_msg_view_next_prop */
	uint32_t header_count;
	uint32_t record_bytes;   /* size of the encoded record */
};

/* An open batch being iterated. */
struct cfx_batch_rd {
	struct cfx_reader rd;
	uint64_t base_offset;
	int64_t base_ts;
	int64_t max_ts;
	uint16_t attributes;
	uint32_t count;
	uint32_t next_idx;
	int32_t leader_epoch;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
};

/*
 * Parses the batch header of the `len` bytes at `p` (exactly one batch).
 * With `verify_crc`, checks Kafka's CRC. Returns 0, CFX_EPARSE (with *why),
 * or CFX_EUNSUPPORTED for a compressed or control batch; with the latter
 * the header fields of `b` are filled, so cfx_batch_is_compressed(b) tells
 * a batch cfx_batch_open_records can decode once its records are
 * decompressed (store/compress.h). Views point into `p`.
 */
int cfx_batch_open(struct cfx_batch_rd *b, const uint8_t *p, size_t len, int verify_crc,
		   const char **why);

/*
 * As cfx_batch_open, but the records are the `records_len` bytes at
 * `records` (the batch's records section once decompressed, which the
 * caller keeps alive while `b` and its views are used) instead of the bytes
 * after the header. Returns 0, CFX_EPARSE (with *why), or CFX_EUNSUPPORTED
 * for a control batch. Message views point into `records`.
 */
int cfx_batch_open_records(struct cfx_batch_rd *b, const uint8_t *p, size_t len, int verify_crc,
			   const uint8_t *records, size_t records_len, const char **why);

/* The compression codec of an opened batch (0 = none; compress.h). */
static inline int cfx_batch_codec(const struct cfx_batch_rd *b)
{
	return b->attributes & CFX_KBATCH_ATTR_COMPRESSION_MASK;
}

/* Does an opened batch hold compressed messages (not a control batch)? */
static inline int cfx_batch_is_compressed(const struct cfx_batch_rd *b)
{
	return cfx_batch_codec(b) != 0 && !(b->attributes & CFX_KBATCH_ATTR_CONTROL);
}

/*
 * Decodes the next message. Returns 1 with `m` filled, 0 after the last
 * message, or CFX_EPARSE (with *why) for a malformed record.
 */
int cfx_batch_next(struct cfx_batch_rd *b, struct cfx_msg_view *m, const char **why);

/*
 * Iterates a message's user properties (reserved headers are skipped).
 * Start with *cursor = 0. Returns 1 with `prop` filled, 0 at the end.
 */
int cfx_msg_view_next_prop(const struct cfx_msg_view *m, size_t *cursor, struct cfx_prop *prop);

/* Sets baseOffset of an encoded batch (after the store assigns offsets). */
static inline void cfx_batch_set_base_offset(uint8_t *batch, uint64_t base_offset)
{
	cfx_store_be64(batch + CFX_KBATCH_OFF_BASE_OFFSET, base_offset);
}

/* Counts the records of a batch without decoding them (the header field). */
static inline uint32_t cfx_batch_records_count(const uint8_t *batch)
{
	return cfx_load_be32(batch + CFX_KBATCH_OFF_RECORDS_COUNT);
}

#endif
