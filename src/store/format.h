/*
 * format.h - Conflux's on-disk layouts, byte by byte, and their pure
 * encoders and decoders. Nothing here touches files: callers hand in
 * bytes. docs/storage.md explains how the pieces fit together.
 *
 * All of Conflux's own fields are little-endian. The payload of a batch
 * entry is a Kafka RecordBatch v2 (big-endian, as Kafka defines it; see
 * store/batch.h), so that Kafka consumers can be served stored bytes.
 *
 * Log positions are global byte positions: a segment covers
 * [base_pos, base_pos + segment_bytes), its header occupies the first
 * CFX_SEG_HEADER_BYTES, and entries follow, 8-byte aligned.
 */
#ifndef CFX_STORE_FORMAT_H
#define CFX_STORE_FORMAT_H

#include "base/buf.h"
#include "base/common.h"

/* ------------------------------------------------------------------------
 * Segment header: the first 64 bytes of every commit-log segment file.
 *
 * OFFSET | SIZE | FIELD
 *      0 |    4 | magic          "CFXL" (0x4c584643)
 *      4 |    4 | version        1
 *      8 |    8 | base_pos       log position of byte 0 of this file
 *     16 |    8 | segment_bytes  file size
 *     24 |    8 | created_ms     wall-clock creation time
 *     32 |   28 | reserved       zero
 *     60 |    4 | crc            CRC32C of bytes [0, 60)
 * ------------------------------------------------------------------------ */
#define CFX_SEG_MAGIC 0x4c584643u
#define CFX_SEG_VERSION 1u
#define CFX_SEG_HEADER_BYTES 64u

struct cfx_seg_header {
	uint32_t version;
	uint64_t base_pos;
	uint64_t segment_bytes;
	int64_t created_ms;
};

void cfx_seg_header_encode(uint8_t out[CFX_SEG_HEADER_BYTES], const struct cfx_seg_header *h);
/* Returns 0, CFX_ECORRUPT (bad magic/CRC) or CFX_EVERSION (newer format). */
int cfx_seg_header_decode(const uint8_t in[CFX_SEG_HEADER_BYTES], struct cfx_seg_header *h);

/* ------------------------------------------------------------------------
 * Log entry: one batch of messages of one (topic, queue), or the end
 * marker of a segment. Entries are padded with zeros to a multiple of 8.
 *
 * Batch entry (type 1):
 * OFFSET | SIZE | FIELD
 *      0 |    4 | entry_bytes    total size including padding (multiple of 8)
 *      4 |    4 | crc            CRC32C of bytes [8, entry_bytes)
 *      8 |    1 | magic          0xCF
 *      9 |    1 | version        1
 *     10 |    1 | type           1 = batch
 *     11 |    1 | attrs          CFX_ENTRY_ATTR_* bits
 *     12 |    4 | payload_bytes  length of the record batch
 *     16 |    8 | log_pos        position of this entry (guards misplaced reads)
 *     24 |    8 | queue_offset   offset of the first message in its queue
 *     32 |    8 | store_ms       store timestamp, ms since the epoch
 *     40 |    4 | queue_id
 *     44 |    4 | msg_count      messages in the batch (>= 1)
 *     48 |    4 | tag_hash       CFX_TAG_HASH_* or the hash of the batch's one tag
 *     52 |    4 | sys_flags      CFX_SYSFLAG_* (message semantics, kept for the broker)
 *     56 |    2 | topic_len      1..CFX_TOPIC_MAX
 *     58 |    6 | reserved       zero
 *     64 |    N | topic          topic name bytes
 *   64+N |    P | payload        Kafka RecordBatch v2, P = payload_bytes
 *      … |  0-7 | padding        zero
 *
 * Segment end marker (type 2): written where the next entry does not fit;
 * it covers the rest of the segment. Only its first 24 bytes are defined.
 * OFFSET | SIZE | FIELD
 *      0 |    4 | entry_bytes    bytes from here to the end of the segment
 *      4 |    4 | crc            CRC32C of bytes [8, 24)
 *      8 |    1 | magic          0xCF
 *      9 |    1 | version        1
 *     10 |    1 | type           2 = end of segment
 *     11 |    5 | reserved       zero
 *     16 |    8 | max_store_ms   newest store timestamp in the segment
 *
 * A zero entry_bytes word marks the end of the written log.
 * ------------------------------------------------------------------------ */
#define CFX_ENTRY_MAGIC 0xCFu
#define CFX_ENTRY_VERSION 1u
#define CFX_ENTRY_HEADER_BYTES 64u
#define CFX_ENTRY_END_BYTES 24u
#define CFX_ENTRY_ALIGN 8u

enum cfx_entry_type {
	CFX_ENTRY_BATCH = 1,
	CFX_ENTRY_END = 2,
};

/* attrs: facts about the payload the dispatcher needs without decoding it */
#define CFX_ENTRY_ATTR_HAS_KEYS 0x01u /* some message has a key or id to index */

/* tag_hash values with a meaning of their own */
#define CFX_TAG_HASH_NONE 0u  /* no message in the batch has a tag */
#define CFX_TAG_HASH_MIXED 1u /* messages carry different tags: inspect them */

/* sys_flags: message semantics recorded for the broker (opaque to the store) */
#define CFX_SYSFLAG_TRANSACTION_PREPARED 0x1u
#define CFX_SYSFLAG_TRANSACTION_COMMIT 0x2u
#define CFX_SYSFLAG_TRANSACTION_ROLLBACK 0x4u
#define CFX_SYSFLAG_DELAYED 0x8u

/* Limits of names (as RocketMQ: ^[%|a-zA-Z0-9_-]{1,127}$). */
#define CFX_TOPIC_MAX 127u

struct cfx_entry {
	uint32_t entry_bytes;
	uint8_t type;
	uint8_t attrs;
	uint32_t payload_bytes;
	uint64_t log_pos;
	uint64_t queue_offset;
	int64_t store_ms;
	uint32_t queue_id;
	uint32_t msg_count;
	uint32_t tag_hash;
	uint32_t sys_flags;
	struct cfx_view topic;	 /* points into the decoded bytes */
	struct cfx_view payload; /* points into the decoded bytes */
};

/* Size of a batch entry with this topic and payload, padding included. */
static inline uint32_t cfx_entry_size(size_t topic_len, size_t payload_len)
{
	return (uint32_t)CFX_ALIGN_UP(CFX_ENTRY_HEADER_BYTES + topic_len + payload_len,
				      (size_t)CFX_ENTRY_ALIGN);
}

/*
 * Writes a batch entry's header, topic and padding into `out` (which has
 * room for cfx_entry_size(...) bytes and already holds the payload at
 * offset 64 + topic_len) and computes its CRC. Returns entry_bytes.
 */
uint32_t cfx_entry_seal(uint8_t *out, const struct cfx_entry *e);

/* Writes an end marker at `out` covering `entry_bytes` bytes. */
void cfx_entry_end_encode(uint8_t out[CFX_ENTRY_END_BYTES], uint32_t entry_bytes,
			  int64_t max_store_ms);

/*
 * Decodes the entry at `p`, of which `avail` bytes are readable, expected
 * at log position `pos`. With `verify_crc`, checks the checksum.
 *
 * Returns 0 and fills `e` (views point into p), or:
 *   CFX_NEED_MORE  entry_bytes is 0: the end of the written log
 *   CFX_ECORRUPT   anything invalid (torn write, bad CRC, bad field); `why` says what
 *   CFX_EVERSION   a valid entry of a newer format version
 */
int cfx_entry_decode(const uint8_t *p, size_t avail, uint64_t pos, int verify_crc,
		     struct cfx_entry *e, const char **why);

/* ------------------------------------------------------------------------
 * Batch index entry: one per log entry, in the queue's index files.
 *
 * OFFSET | SIZE | FIELD
 *      0 |    8 | log_pos        position of the log entry
 *      8 |    8 | first_offset   queue offset of its first message
 *     16 |    8 | store_ms       store timestamp
 *     24 |    4 | entry_bytes    size of the log entry
 *     28 |    4 | msg_count      messages in the entry
 *     32 |    4 | tag_hash       as in the log entry
 *     36 |    4 | check          CRC32C of bytes [0, 36); detects torn entries
 * ------------------------------------------------------------------------ */
#define CFX_IDX_ENTRY_BYTES 40u

struct cfx_idx_entry {
	uint64_t log_pos;
	uint64_t first_offset;
	int64_t store_ms;
	uint32_t entry_bytes;
	uint32_t msg_count;
	uint32_t tag_hash;
};

void cfx_idx_entry_encode(uint8_t out[CFX_IDX_ENTRY_BYTES], const struct cfx_idx_entry *ie);
/* Returns 1 if the bytes hold a complete, valid entry (then fills ie), else 0. */
int cfx_idx_entry_decode(const uint8_t in[CFX_IDX_ENTRY_BYTES], struct cfx_idx_entry *ie);

/* ------------------------------------------------------------------------
 * Key index file: a fixed-size hash table of message keys and ids, named
 * keys/<ordinal of its first entry, 20 digits>.kix. Entries are appended in
 * log order; each slot chains its entries newest first.
 *
 * OFFSET              | SIZE          | FIELD
 *                   0 |             4 | magic "CFXK" (0x4b584643)
 *                   4 |             4 | version 1
 *                   8 |             4 | slot_count
 *                  12 |             4 | entry_cap
 *                  16 |            44 | reserved zero
 *                  60 |             4 | crc of [0, 60)
 *                  64 | 4*slot_count  | slots: newest entry number + 1 (0 = empty)
 *  64 + 4*slot_count  | 24*entry_cap  | entries (below)
 *
 * Entry:  0 | 8 | hash     cfx_keyidx_hash(kind, topic, key)
 *         8 | 8 | log_pos  position of the log entry holding the message
 *        16 | 4 | prev     previous entry number + 1 in the same slot (0 = none)
 *        20 | 4 | check    CRC32C of bytes [0, 20)
 * ------------------------------------------------------------------------ */
#define CFX_KIX_MAGIC 0x4b584643u
#define CFX_KIX_VERSION 1u
#define CFX_KIX_HEADER_BYTES 64u
#define CFX_KIX_ENTRY_BYTES 24u

struct cfx_kix_header {
	uint32_t version;
	uint32_t slot_count;
	uint32_t entry_cap;
};

void cfx_kix_header_encode(uint8_t out[CFX_KIX_HEADER_BYTES], const struct cfx_kix_header *h);
int cfx_kix_header_decode(const uint8_t in[CFX_KIX_HEADER_BYTES], struct cfx_kix_header *h);

struct cfx_kix_entry {
	uint64_t hash;
	uint64_t log_pos;
	uint32_t prev;
};

void cfx_kix_entry_encode(uint8_t out[CFX_KIX_ENTRY_BYTES], const struct cfx_kix_entry *ke);
int cfx_kix_entry_decode(const uint8_t in[CFX_KIX_ENTRY_BYTES], struct cfx_kix_entry *ke);

enum cfx_key_kind {
	CFX_KEY_KIND_KEY = 1, /* a message key, scoped by topic */
	CFX_KEY_KIND_ID = 2,  /* a message id, global */
};

/* The hash under which a key or id is indexed (never 0). */
uint64_t cfx_keyidx_hash(enum cfx_key_kind kind, struct cfx_view topic, struct cfx_view key);

/* ------------------------------------------------------------------------
 * Checkpoint file: "checkpoint" in the data directory, written atomically.
 *
 * OFFSET | SIZE | FIELD
 *      0 |    4 | magic "CFXC" (0x43584643)
 *      4 |    4 | version 1
 *      8 |    8 | durable_pos    log and all indexes are durable below this position
 *     16 |    8 | log_end_pos    end of the written log (== durable_pos when clean)
 *     24 |    4 | clean          1 if written by a clean shutdown
 *     28 |    4 | reserved
 *     32 |    8 | written_ms     wall-clock time of writing
 *     40 |    8 | idx_entries    batch-index entries below durable_pos, all queues
 *        |      |                (sum of each queue's next ordinal)
 *     48 |    8 | key_entries    key-index entries below durable_pos (next ordinal)
 *     56 |    4 | reserved
 *     60 |    4 | crc of [0, 60)
 *
 * The two counts let recovery notice index files that went missing: if the
 * indexes hold fewer entries than the checkpoint vouched for, they are
 * rebuilt from the log.
 * ------------------------------------------------------------------------ */
#define CFX_CKPT_MAGIC 0x43584643u
#define CFX_CKPT_VERSION 1u
#define CFX_CKPT_BYTES 64u

struct cfx_checkpoint {
	uint64_t durable_pos;
	uint64_t log_end_pos;
	uint32_t clean;
	int64_t written_ms;
	uint64_t idx_entries;
	uint64_t key_entries;
};

void cfx_checkpoint_encode(uint8_t out[CFX_CKPT_BYTES], const struct cfx_checkpoint *c);
int cfx_checkpoint_decode(const uint8_t *in, size_t len, struct cfx_checkpoint *c);

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

/* Returns 1 if `topic` matches ^[%|a-zA-Z0-9_-]{1,127}$. */
int cfx_topic_name_is_valid(struct cfx_view topic);

/* The tag hash of one tag (>= 2; 0 and 1 are reserved). */
uint32_t cfx_tag_hash(struct cfx_view tag);

#endif
