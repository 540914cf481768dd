/*
 * codec.c - the Kafka wire codec: primitive types, headers, the API
 * table, error names and the RecordBatch v2 inspector (see codec.h).
 *
 * Nothing here allocates, and nothing reads a byte it has not checked is
 * there: reads go through cfx_read_bytes (base/buf.c), and the batch
 * inspector checks the length it is handed before it loads a field.
 */
#include "proto/kafka/codec.h"

#include "base/crc32c.h"

/* ------------------------------------------------------------------------
 * Fixed-width types
 *
 * Kafka is big-endian throughout. The casts from the unsigned loads to
 * the signed types are two's complement conversions (gcc and clang define
 * them so, and -fwrapv is not needed for a conversion).
 * ------------------------------------------------------------------------ */

int8_t kf_read_i8(struct cfx_reader *rd)
{
	return (int8_t)cfx_read_u8(rd);
}

int16_t kf_read_i16(struct cfx_reader *rd)
{
	return (int16_t)cfx_read_be16(rd);
}

int32_t kf_read_i32(struct cfx_reader *rd)
{
	return (int32_t)cfx_read_be32(rd);
}

int64_t kf_read_i64(struct cfx_reader *rd)
{
	return (int64_t)cfx_read_be64(rd);
}

uint32_t kf_read_u32(struct cfx_reader *rd)
{
	return cfx_read_be32(rd);
}

int kf_read_bool(struct cfx_reader *rd)
{
	return cfx_read_u8(rd) != 0;
}

struct kf_uuid kf_read_uuid(struct cfx_reader *rd)
{
	struct kf_uuid id = { { 0 } };
	const uint8_t *p = cfx_read_bytes(rd, sizeof id.b, "truncated uuid");

	if (p)
		memcpy(id.b, p, sizeof id.b);
	return id;
}

void kf_write_i8(struct cfx_writer *wr, int8_t v)
{
	cfx_write_u8(wr, (uint8_t)v);
}

void kf_write_i16(struct cfx_writer *wr, int16_t v)
{
	cfx_write_be16(wr, (uint16_t)v);
}

void kf_write_i32(struct cfx_writer *wr, int32_t v)
{
	cfx_write_be32(wr, (uint32_t)v);
}

void kf_write_i64(struct cfx_writer *wr, int64_t v)
{
	cfx_write_be64(wr, (uint64_t)v);
}

void kf_write_u32(struct cfx_writer *wr, uint32_t v)
{
	cfx_write_be32(wr, v);
}

void kf_write_bool(struct cfx_writer *wr, int v)
{
	cfx_write_u8(wr, v ? 1 : 0);
}

void kf_write_uuid(struct cfx_writer *wr, const struct kf_uuid *id)
{
	cfx_write_bytes(wr, id->b, sizeof id->b);
}

/* ------------------------------------------------------------------------
 * Varints
 *
 * base/buf.c already decodes LEB128 with a bounded length, and rejects
 * overflow and overlong encodings; Kafka's UNSIGNED_VARINT is its 32-bit
 * form, VARINT and VARLONG its zig-zag forms.
 * ------------------------------------------------------------------------ */

uint32_t kf_read_uvarint(struct cfx_reader *rd)
{
	return cfx_read_uvarint32(rd);
}

int32_t kf_read_varint(struct cfx_reader *rd)
{
	return cfx_read_varint32(rd);
}

int64_t kf_read_varlong(struct cfx_reader *rd)
{
	return cfx_read_varint64(rd);
}

void kf_write_uvarint(struct cfx_writer *wr, uint32_t v)
{
	cfx_write_uvarint64(wr, v);
}

void kf_write_varint(struct cfx_writer *wr, int32_t v)
{
	/* Zig-zag in 32 bits: 0, -1, 1, -2 ... -> 0, 1, 2, 3 ... */
	uint32_t u = ((uint32_t)v << 1) ^ (0u - ((uint32_t)v >> 31));

	cfx_write_uvarint64(wr, u);
}

void kf_write_varlong(struct cfx_writer *wr, int64_t v)
{
	cfx_write_varint64(wr, v);
}

/* ------------------------------------------------------------------------
 * Strings, bytes, arrays
 *
 * A classic length is a signed integer where -1 means null; a compact
 * length is an unsigned varint holding length + 1, where 0 means null.
 * read_length() turns either into a length or "null" so that strings
 * and bytes share the checks.
 * ------------------------------------------------------------------------ */

#define LEN_NULL (-1)

/* Returns the length, LEN_NULL, or LEN_NULL with rd->err set. */
static int64_t read_length(struct cfx_reader *rd, int flexible, int wide)
{
	int64_t n;

	if (flexible) {
		uint32_t u = kf_read_uvarint(rd);
		if (rd->err)
			return LEN_NULL;
		return u == 0 ? LEN_NULL : (int64_t)u - 1;
	}
	n = wide ? kf_read_i32(rd) : kf_read_i16(rd);
	if (rd->err)
		return LEN_NULL;
	if (n < LEN_NULL) {
		cfx_reader_fail(rd, "negative length");
		return LEN_NULL;
	}
	return n;
}

static struct cfx_view read_sized(struct cfx_reader *rd, int flexible, int wide, int *null,
				  uint64_t len_max, const char *what)
{
	struct cfx_view v = { NULL, 0 };
	int64_t n = read_length(rd, flexible, wide);

	if (null)
		*null = 0;
	if (rd->err)
		return v;
	if (n == LEN_NULL) {
		if (!null)
			cfx_reader_fail(rd, "null in a non-nullable field");
		else
			*null = 1;
		return v;
	}
	if ((uint64_t)n > len_max) {
		cfx_reader_fail(rd, "string longer than 32767 bytes");
		return v;
	}
	v.p = cfx_read_bytes(rd, (size_t)n, what);
	v.len = v.p ? (size_t)n : 0;
	return v;
}

struct cfx_view kf_read_string(struct cfx_reader *rd, int flexible, int *null)
{
	return read_sized(rd, flexible, 0, null, KF_STRING_BYTES_MAX, "truncated string");
}

struct cfx_view kf_read_bytes(struct cfx_reader *rd, int flexible, int *null)
{
	/* A compact length may exceed INT32_MAX; no input that long exists,
	 * and cfx_read_bytes checks it against the bytes left anyway. */
	return read_sized(rd, flexible, 1, null, UINT64_MAX, "truncated bytes");
}

int32_t kf_read_array_len_min(struct cfx_reader *rd, int flexible, size_t elem_bytes_min)
{
	int64_t n;

	CFX_ASSERT(elem_bytes_min >= 1);
	n = read_length(rd, flexible, 1);
	if (rd->err)
		return 0;
	if (n == LEN_NULL)
		return -1;
	if (n > INT32_MAX || (uint64_t)n > cfx_reader_left(rd) / elem_bytes_min) {
		cfx_reader_fail(rd, "array count larger than the bytes left");
		return 0;
	}
	return (int32_t)n;
}

int32_t kf_read_array_len(struct cfx_reader *rd, int flexible)
{
	return kf_read_array_len_min(rd, flexible, 1);
}

uint32_t kf_read_tagged_count(struct cfx_reader *rd)
{
	uint32_t n = kf_read_uvarint(rd);

	if (rd->err)
		return 0;
	/* A field takes at least a tag byte and a size byte. */
	if (n > cfx_reader_left(rd) / 2) {
		cfx_reader_fail(rd, "tagged field count larger than the bytes left");
		return 0;
	}
	return n;
}

void kf_read_tagged_field(struct cfx_reader *rd, uint32_t *tag, struct cfx_view *data)
{
	uint32_t size;

	*tag = kf_read_uvarint(rd);
	size = kf_read_uvarint(rd);
	data->p = cfx_read_bytes(rd, size, "truncated tagged field");
	data->len = data->p ? size : 0;
	if (rd->err)
		*tag = 0;
}

void kf_skip_tagged_fields(struct cfx_reader *rd)
{
	uint32_t n = kf_read_tagged_count(rd), tag;
	struct cfx_view data;

	/* The count is bounded by the bytes left, so the loop is too. */
	for (uint32_t i = 0; i < n && !rd->err; i++)
		kf_read_tagged_field(rd, &tag, &data);
}

static void write_length(struct cfx_writer *wr, int64_t n, int flexible, int wide)
{
	if (flexible)
		kf_write_uvarint(wr, (uint32_t)(n + 1));
	else if (wide)
		kf_write_i32(wr, (int32_t)n);
	else
		kf_write_i16(wr, (int16_t)n);
}

void kf_write_string(struct cfx_writer *wr, struct cfx_view v, int flexible, int null)
{
	if (null) {
		write_length(wr, LEN_NULL, flexible, 0);
		return;
	}
	CFX_ASSERT(v.len <= KF_STRING_BYTES_MAX);
	write_length(wr, (int64_t)v.len, flexible, 0);
	cfx_write_bytes(wr, v.p, v.len);
}

void kf_write_bytes(struct cfx_writer *wr, struct cfx_view v, int flexible, int null)
{
	if (null) {
		write_length(wr, LEN_NULL, flexible, 1);
		return;
	}
	CFX_ASSERT(v.len <= INT32_MAX - 1);
	write_length(wr, (int64_t)v.len, flexible, 1);
	cfx_write_bytes(wr, v.p, v.len);
}

void kf_write_array_len(struct cfx_writer *wr, int32_t n, int flexible)
{
	CFX_ASSERT(n >= -1 && n < INT32_MAX);
	write_length(wr, n, flexible, 1);
}

void kf_write_empty_tagged_fields(struct cfx_writer *wr)
{
	cfx_write_u8(wr, 0);
}

size_t kf_string_size(size_t len, int flexible, int null)
{
	if (flexible)
		return null ? 1 : cfx_uvarint_size((uint64_t)len + 1) + len;
	return 2 + (null ? 0 : len);
}

size_t kf_bytes_size(size_t len, int flexible, int null)
{
	if (flexible)
		return null ? 1 : cfx_uvarint_size((uint64_t)len + 1) + len;
	return 4 + (null ? 0 : len);
}

/* ------------------------------------------------------------------------
 * The API table
 *
 * Versions as Apache Kafka 4.3's message schemas declare them
 * ("validVersions", "flexibleVersions"; requests and responses agree for
 * every API here). The minima are Kafka 4.0's baselines (KIP-896): for
 * example Produce "3-13", Fetch "4-18". Kafka itself still advertises
 * Produce from version 0 in ApiVersions (KAFKA-18659: librdkafka refuses
 * a broker whose Produce minimum is above 0) while rejecting 0-2; that is
 * for the dispatch table to copy, not for this one.
 * ------------------------------------------------------------------------ */

const struct kf_api_info kf_apis[] = {
	{ KF_API_PRODUCE, "Produce", 3, 13, 9 },
	{ KF_API_FETCH, "Fetch", 4, 18, 12 },
	{ KF_API_LIST_OFFSETS, "ListOffsets", 1, 11, 6 },
	{ KF_API_METADATA, "Metadata", 0, 13, 9 },
	{ KF_API_OFFSET_COMMIT, "OffsetCommit", 2, 10, 8 },
	{ KF_API_OFFSET_FETCH, "OffsetFetch", 1, 10, 6 },
	{ KF_API_FIND_COORDINATOR, "FindCoordinator", 0, 6, 3 },
	{ KF_API_JOIN_GROUP, "JoinGroup", 0, 9, 6 },
	{ KF_API_HEARTBEAT, "Heartbeat", 0, 4, 4 },
	{ KF_API_LEAVE_GROUP, "LeaveGroup", 0, 5, 4 },
	{ KF_API_SYNC_GROUP, "SyncGroup", 0, 5, 4 },
	{ KF_API_DESCRIBE_GROUPS, "DescribeGroups", 0, 6, 5 },
	{ KF_API_LIST_GROUPS, "ListGroups", 0, 5, 3 },
	{ KF_API_SASL_HANDSHAKE, "SaslHandshake", 0, 1, KF_FLEX_NONE },
	{ KF_API_API_VERSIONS, "ApiVersions", 0, 4, 3 },
	{ KF_API_CREATE_TOPICS, "CreateTopics", 2, 7, 5 },
	{ KF_API_DELETE_TOPICS, "DeleteTopics", 1, 6, 4 },
	{ KF_API_DELETE_RECORDS, "DeleteRecords", 0, 2, 2 },
	{ KF_API_INIT_PRODUCER_ID, "InitProducerId", 0, 6, 2 },
	{ KF_API_OFFSET_FOR_LEADER_EPOCH, "OffsetForLeaderEpoch", 2, 4, 4 },
	{ KF_API_ADD_PARTITIONS_TO_TXN, "AddPartitionsToTxn", 0, 5, 3 },
	{ KF_API_ADD_OFFSETS_TO_TXN, "AddOffsetsToTxn", 0, 4, 3 },
	{ KF_API_END_TXN, "EndTxn", 0, 5, 3 },
	{ KF_API_TXN_OFFSET_COMMIT, "TxnOffsetCommit", 0, 5, 3 },
	{ KF_API_DESCRIBE_CONFIGS, "DescribeConfigs", 1, 4, 4 },
	{ KF_API_ALTER_CONFIGS, "AlterConfigs", 0, 2, 2 },
	{ KF_API_SASL_AUTHENTICATE, "SaslAuthenticate", 0, 2, 2 },
	{ KF_API_CREATE_PARTITIONS, "CreatePartitions", 0, 3, 2 },
	{ KF_API_DELETE_GROUPS, "DeleteGroups", 0, 2, 2 },
	{ KF_API_INCREMENTAL_ALTER_CONFIGS, "IncrementalAlterConfigs", 0, 1, 1 },
	{ KF_API_OFFSET_DELETE, "OffsetDelete", 0, 0, KF_FLEX_NONE },
	{ KF_API_DESCRIBE_CLUSTER, "DescribeCluster", 0, 2, 0 },
};
const size_t kf_napis = CFX_ARRAY_LEN(kf_apis);

const struct kf_api_info *kf_api_lookup(int16_t key)
{
	/* Few entries, sorted: a linear scan that stops early is enough. */
	for (size_t i = 0; i < kf_napis && kf_apis[i].key <= key; i++)
		if (kf_apis[i].key == key)
			return &kf_apis[i];
	return NULL;
}

/* KF_FLEX_NONE is INT16_MAX, itself a version: test it by name. */
static int api_is_flexible(const struct kf_api_info *api, int16_t version)
{
	return api->flexible_from != KF_FLEX_NONE && version >= api->flexible_from;
}

int kf_api_is_flexible(int16_t key, int16_t version)
{
	const struct kf_api_info *api = kf_api_lookup(key);

	return api && api_is_flexible(api, version);
}

/* ------------------------------------------------------------------------
 * Headers
 * ------------------------------------------------------------------------ */

/*
 * ControlledShutdown is not in the table (a broker-to-controller API that
 * Kafka 4.0 removed), but its version 0 is the one request that uses
 * header v0, which the header rules must know. Versions 1-3 (the last
 * schema, Kafka 3.9) are flexible from 3.
 */
#define CONTROLLED_SHUTDOWN_FLEX_FROM 3

int kf_request_header_version(int16_t api_key, int16_t api_version)
{
	const struct kf_api_info *api;

	if (api_key == KF_API_CONTROLLED_SHUTDOWN) {
		if (api_version == 0)
			return 0;
		return api_version >= CONTROLLED_SHUTDOWN_FLEX_FROM ? 2 : 1;
	}
	api = kf_api_lookup(api_key);
	if (!api)
		return -1;
	return api_is_flexible(api, api_version) ? 2 : 1;
}

int kf_response_header_version(int16_t api_key, int16_t api_version)
{
	const struct kf_api_info *api;

	/* KIP-511: the client parses this before it knows what we speak. */
	if (api_key == KF_API_API_VERSIONS)
		return 0;
	if (api_key == KF_API_CONTROLLED_SHUTDOWN)
		return api_version >= CONTROLLED_SHUTDOWN_FLEX_FROM ? 1 : 0;
	api = kf_api_lookup(api_key);
	if (!api)
		return -1;
	return api_is_flexible(api, api_version) ? 1 : 0;
}

int kf_parse_request_header(struct cfx_reader *rd, struct kf_req_header *h)
{
	size_t start = rd->pos;
	int null = 1;

	memset(h, 0, sizeof *h);
	h->client_id_null = 1;
	h->header_version = -1;

	/* Request: RequestApiKey, RequestApiVersion, CorrelationId */
	h->api_key = kf_read_i16(rd);
	h->api_version = kf_read_i16(rd);
	h->correlation_id = kf_read_i32(rd);
	if (rd->err)
		return CFX_EPARSE;

	h->header_version = kf_request_header_version(h->api_key, h->api_version);
	h->header_bytes = rd->pos - start;
	if (h->header_version < 0)
		return CFX_EUNSUPPORTED;

	/* Request: ClientId (v1+), always the classic i16-length form, so that
	 * any broker can read the header of any ApiVersions request. */
	if (h->header_version >= 1)
		h->client_id = kf_read_string(rd, 0, &null);
	/* Request: _tagged_fields (v2) */
	if (h->header_version >= 2)
		kf_skip_tagged_fields(rd);
	if (rd->err) {
		h->client_id = (struct cfx_view){ NULL, 0 };
		return CFX_EPARSE;
	}
	h->client_id_null = null;
	h->header_bytes = rd->pos - start;
	return 0;
}

void kf_write_request_header(struct cfx_writer *wr, const struct kf_req_header *h,
			     int header_version)
{
	CFX_ASSERT(header_version >= 0 && header_version <= 2);
	kf_write_i16(wr, h->api_key);
	kf_write_i16(wr, h->api_version);
	kf_write_i32(wr, h->correlation_id);
	if (header_version >= 1)
		kf_write_string(wr, h->client_id, 0, h->client_id_null);
	if (header_version >= 2)
		kf_write_empty_tagged_fields(wr);
}

/* The smallest request header: v0, key + version + correlation id. */
#define REQ_HEADER_BYTES_MIN 8u

int kf_frame_check(const uint8_t *p, size_t len, size_t frame_bytes_max, size_t *frame_bytes)
{
	int32_t size;

	if (len < 4)
		return CFX_NEED_MORE;
	size = (int32_t)cfx_load_be32(p);
	if (size < 0)
		return CFX_EPARSE;
	if ((size_t)size > frame_bytes_max)
		return CFX_E2BIG;
	if ((size_t)size < REQ_HEADER_BYTES_MIN)
		return CFX_EPARSE;
	if (len - 4 < (size_t)size)
		return CFX_NEED_MORE;
	*frame_bytes = 4 + (size_t)size;
	return 0;
}

size_t kf_begin_response(struct cfx_writer *wr, int32_t correlation_id, int header_version)
{
	size_t start = wr->len;

	CFX_ASSERT(header_version == 0 || header_version == 1);
	/* Response: Size, patched by kf_end_response */
	kf_write_i32(wr, 0);
	/* Response: CorrelationId */
	kf_write_i32(wr, correlation_id);
	/* Response: _tagged_fields (v1) */
	if (header_version == 1)
		kf_write_empty_tagged_fields(wr);
	return start;
}

void kf_end_response(struct cfx_writer *wr, size_t start)
{
	size_t size;

	CFX_ASSERT(start <= wr->len && wr->len - start >= 8);
	size = wr->len - start - 4;
	CFX_ASSERT(size <= INT32_MAX);
	cfx_store_be32(wr->p + start, (uint32_t)size);
}

/* ------------------------------------------------------------------------
 * Error names
 * ------------------------------------------------------------------------ */

const char *kf_error_name(int code)
{
	switch (code) {
#define KF_ERR_NAME_(name, code) \
	case code: \
		return #name;
		KF_ERR_MAP(KF_ERR_NAME_)
#undef KF_ERR_NAME_
	}
	return "UNKNOWN";
}

/* ------------------------------------------------------------------------
 * RecordBatch v2
 *
 * The inspector reads the fixed header with plain loads once the length
 * is known to cover it, and never looks inside the records: that is the
 * store's decoder, and for compressed batches it needs a decompressor.
 * The CRC covers attributes .. end, not the leader epoch (which a broker
 * assigns) nor the base offset.
 * ------------------------------------------------------------------------ */

#define OFF_BASE_OFFSET 0u
#define OFF_LENGTH 8u
#define OFF_LEADER_EPOCH 12u
#define OFF_MAGIC 16u
#define OFF_LAST_OFFSET_DELTA 23u
#define OFF_BASE_TIMESTAMP 27u
#define OFF_MAX_TIMESTAMP 35u
#define OFF_PRODUCER_ID 43u
#define OFF_PRODUCER_EPOCH 51u
#define OFF_BASE_SEQUENCE 53u
#define OFF_RECORDS_COUNT 57u

static int inspect(const uint8_t *p, size_t len, struct kf_batch_meta *m, int check_crc);

int kf_batch_inspect(const uint8_t *p, size_t len, struct kf_batch_meta *m)
{
	return inspect(p, len, m, 1);
}

static int inspect(const uint8_t *p, size_t len, struct kf_batch_meta *m, int check_crc)
{
	memset(m, 0, sizeof *m);
	/* The magic byte is at the same place in every message format. */
	if (len < OFF_MAGIC + 1)
		return CFX_EPARSE;
	m->base_offset = (int64_t)cfx_load_be64(p + OFF_BASE_OFFSET);
	m->batch_length = (int32_t)cfx_load_be32(p + OFF_LENGTH);
	m->partition_leader_epoch = (int32_t)cfx_load_be32(p + OFF_LEADER_EPOCH);
	m->magic = (int8_t)p[OFF_MAGIC];
	if (m->magic == 0 || m->magic == 1)
		return CFX_EUNSUPPORTED;
	if (m->magic != 2)
		return CFX_EPARSE;
	if (len < KF_BATCH_HEADER_BYTES || m->batch_length < 0 ||
	    (uint64_t)m->batch_length + KF_BATCH_LOG_OVERHEAD != len)
		return CFX_EPARSE;

	m->crc = cfx_load_be32(p + KF_BATCH_CRC_OFF);
	m->attributes = (int16_t)cfx_load_be16(p + KF_BATCH_ATTRIBUTES_OFF);
	m->compression = m->attributes & KF_BATCH_ATTR_COMPRESSION_MASK;
	m->log_append_time = !!(m->attributes & KF_BATCH_ATTR_LOG_APPEND_TIME);
	m->is_transactional = !!(m->attributes & KF_BATCH_ATTR_TRANSACTIONAL);
	m->is_control = !!(m->attributes & KF_BATCH_ATTR_CONTROL);
	m->last_offset_delta = (int32_t)cfx_load_be32(p + OFF_LAST_OFFSET_DELTA);
	m->base_timestamp_ms = (int64_t)cfx_load_be64(p + OFF_BASE_TIMESTAMP);
	m->max_timestamp_ms = (int64_t)cfx_load_be64(p + OFF_MAX_TIMESTAMP);
	m->producer_id = (int64_t)cfx_load_be64(p + OFF_PRODUCER_ID);
	m->producer_epoch = (int16_t)cfx_load_be16(p + OFF_PRODUCER_EPOCH);
	m->base_sequence = (int32_t)cfx_load_be32(p + OFF_BASE_SEQUENCE);
	m->record_count = (int32_t)cfx_load_be32(p + OFF_RECORDS_COUNT);
	m->batch_bytes = len;
	m->records = (struct cfx_view){ p + KF_BATCH_HEADER_BYTES, len - KF_BATCH_HEADER_BYTES };
	m->crc_ok = !check_crc ? -1
				: cfx_crc32c(0, p + KF_BATCH_ATTRIBUTES_OFF,
					     len - KF_BATCH_ATTRIBUTES_OFF) == m->crc;

	if (m->compression > KF_COMPRESSION_ZSTD)
		return CFX_EPARSE;
	/* Offset deltas ascend from 0 and end at lastOffsetDelta, so there
	 * cannot be more records than lastOffsetDelta + 1 (compaction may
	 * leave fewer, down to none). */
	if (m->record_count < 0 || m->last_offset_delta < 0 ||
	    (int64_t)m->record_count > (int64_t)m->last_offset_delta + 1)
		return CFX_EPARSE;
	if (m->compression == KF_COMPRESSION_NONE &&
	    (uint64_t)m->record_count * KF_RECORD_BYTES_MIN > m->records.len)
		return CFX_EPARSE;
	return 0;
}

int kf_batch_is_valid_from_client(const struct kf_batch_meta *m)
{
	return m->record_count > 0 && (int64_t)m->record_count == (int64_t)m->last_offset_delta + 1;
}

void kf_batch_iter_init(struct kf_batch_iter *it, const uint8_t *p, size_t len)
{
	it->p = p;
	it->len = len;
	it->pos = 0;
	it->err = 0;
	it->check_crc = 1;
}

int kf_batch_next(struct kf_batch_iter *it, struct cfx_view *batch, struct kf_batch_meta *m)
{
	size_t left, size;
	int32_t length;
	int rc;

	*batch = (struct cfx_view){ NULL, 0 };
	if (it->err)
		return it->err;
	left = it->len - it->pos;
	if (left == 0)
		return 0;
	if (left < KF_BATCH_LOG_OVERHEAD) {
		memset(m, 0, sizeof *m);
		return it->err = CFX_EPARSE;
	}
	length = (int32_t)cfx_load_be32(it->p + it->pos + OFF_LENGTH);
	if (length < 0 || (uint64_t)length > left - KF_BATCH_LOG_OVERHEAD) {
		memset(m, 0, sizeof *m);
		return it->err = CFX_EPARSE;
	}
	size = KF_BATCH_LOG_OVERHEAD + (size_t)length;
	rc = inspect(it->p + it->pos, size, m, it->check_crc);
	if (rc)
		return it->err = rc;
	*batch = (struct cfx_view){ it->p + it->pos, size };
	it->pos += size;
	return 1;
}

int kf_batches_count(const uint8_t *p, size_t len)
{
	struct kf_batch_iter it;
	struct kf_batch_meta m;
	struct cfx_view b;
	int n = 0, rc;

	kf_batch_iter_init(&it, p, len);
	it.check_crc = 0; /* counting: the checksums are checked where the batches are used */
	while ((rc = kf_batch_next(&it, &b, &m)) == 1)
		n++;
	return rc < 0 ? rc : n;
}
