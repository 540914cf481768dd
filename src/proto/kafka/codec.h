/*
 * codec.h - the Kafka wire codec: primitive types, request and response
 * headers, the table of APIs Conflux knows, Kafka's error codes, and a
 * zero-copy look at RecordBatch v2.
 *
 * What it does not do: sockets, framing state, request bodies of
 * particular APIs (those live in api_*.c), decompression, or records
 * inside a batch (store/batch.c). Everything here is a pure function of
 * the bytes it is handed, so it is unit-tested and fuzzed on its own.
 * See docs/design/kafka-codec.md for the flexible-version rules and the
 * bounds-check policy.
 *
 * Facts come from Kafka's message schemas
 * (clients/src/main/resources/common/message/ *.json, Apache Kafka 4.3)
 * and its protocol guide (https://kafka.apache.org/protocol).
 *
 * Reading: every kf_read_* works on a struct cfx_reader (base/buf.h).
 * A failed read sets the reader's sticky `err` (CFX_EPARSE) and a static
 * `err_desc`, and returns 0 / an empty view; later reads on a failed
 * reader do nothing. A decoder reads a whole structure and tests rd.err
 * once, before any side effect. Views point into the input bytes and are
 * valid as long as the caller keeps those bytes.
 *
 * Writing: every kf_write_* appends to a struct cfx_writer and cannot
 * fail; values that cannot be encoded are programmer errors (CFX_ASSERT).
 *
 * @thread any: no global state besides the constant tables.
 */
#ifndef CFX_PROTO_KAFKA_CODEC_H
#define CFX_PROTO_KAFKA_CODEC_H

#include "base/buf.h"
#include "base/common.h"
#include "base/err.h"

/* ------------------------------------------------------------------------
 * Limits on decoded input
 * ------------------------------------------------------------------------ */

/* STRING and COMPACT_STRING: Kafka's own readers refuse longer strings. */
#define KF_STRING_BYTES_MAX 0x7fff
/* A request frame (the i32 size prefix excluded); Kafka's
 * socket.request.max.bytes defaults to 100 MiB. Callers may pass less. */
#define KF_FRAME_BYTES_MAX (100u * 1024 * 1024)

/* ------------------------------------------------------------------------
 * Primitive types
 * ------------------------------------------------------------------------ */

/* Fixed-width big-endian integers (INT8..INT64), BOOLEAN, UUID. */
int8_t kf_read_i8(struct cfx_reader *rd);
int16_t kf_read_i16(struct cfx_reader *rd);
int32_t kf_read_i32(struct cfx_reader *rd);
int64_t kf_read_i64(struct cfx_reader *rd);
uint32_t kf_read_u32(struct cfx_reader *rd);
/* BOOLEAN: 0 is false, any other byte true (as Kafka reads it). */
int kf_read_bool(struct cfx_reader *rd);

struct kf_uuid {
	uint8_t b[16]; /* as on the wire: most significant byte first */
};
struct kf_uuid kf_read_uuid(struct cfx_reader *rd);

/*
 * UNSIGNED_VARINT (LEB128, at most 5 bytes), VARINT and VARLONG (zig-zag).
 * Encodings longer than needed, or whose value does not fit the type, are
 * rejected: no Kafka client writes them, and refusing them keeps every
 * value to exactly one encoding.
 */
uint32_t kf_read_uvarint(struct cfx_reader *rd);
int32_t kf_read_varint(struct cfx_reader *rd);
int64_t kf_read_varlong(struct cfx_reader *rd);

/*
 * STRING / NULLABLE_STRING (i16 length, -1 = null) when !flexible,
 * COMPACT_STRING / COMPACT_NULLABLE_STRING (uvarint length + 1, 0 = null)
 * when flexible. `null` == NULL means the field is not nullable: a null
 * on the wire is then an error. Otherwise *null is set to 1 for a null
 * value (the view is then {NULL, 0}) and to 0 for anything else. Lengths
 * above KF_STRING_BYTES_MAX are rejected in both forms. The bytes are not
 * checked for UTF-8.
 */
struct cfx_view kf_read_string(struct cfx_reader *rd, int flexible, int *null);

/* BYTES / NULLABLE_BYTES (i32 length, -1 = null) or COMPACT_BYTES /
 * COMPACT_NULLABLE_BYTES (uvarint length + 1, 0 = null); `null` as above. */
struct cfx_view kf_read_bytes(struct cfx_reader *rd, int flexible, int *null);

/*
 * ARRAY (i32 count, -1 = null) or COMPACT_ARRAY (uvarint count + 1,
 * 0 = null). Returns the count, -1 for a null array, or 0 with rd->err
 * set. A count larger than the bytes left (every element takes at least
 * one byte) is an error, so a caller may size a loop or an allocation by
 * the count it gets. kf_read_array_len_min tightens that bound with the
 * smallest encoded size of one element (for example 4 for an array of
 * INT32, 2 for classic strings).
 */
int32_t kf_read_array_len(struct cfx_reader *rd, int flexible);
int32_t kf_read_array_len_min(struct cfx_reader *rd, int flexible, size_t elem_bytes_min);

/*
 * Tagged fields (flexible versions only): an uvarint count, then per field
 * an uvarint tag, an uvarint size and that many bytes. kf_skip_tagged_fields
 * reads and ignores them all. To look at them instead:
 *
 *   uint32_t n = kf_read_tagged_count(rd);
 *   for (uint32_t i = 0; i < n && !rd->err; i++)
 *       kf_read_tagged_field(rd, &tag, &data);
 *
 * The count is checked against the bytes left (each field takes at least
 * two). Tags are not required to ascend: Kafka's readers do not require it.
 */
void kf_skip_tagged_fields(struct cfx_reader *rd);
uint32_t kf_read_tagged_count(struct cfx_reader *rd);
void kf_read_tagged_field(struct cfx_reader *rd, uint32_t *tag, struct cfx_view *data);

/* Writers, mirroring the readers. */
void kf_write_i8(struct cfx_writer *wr, int8_t v);
void kf_write_i16(struct cfx_writer *wr, int16_t v);
void kf_write_i32(struct cfx_writer *wr, int32_t v);
void kf_write_i64(struct cfx_writer *wr, int64_t v);
void kf_write_u32(struct cfx_writer *wr, uint32_t v);
void kf_write_bool(struct cfx_writer *wr, int v);
void kf_write_uuid(struct cfx_writer *wr, const struct kf_uuid *id);
void kf_write_uvarint(struct cfx_writer *wr, uint32_t v);
void kf_write_varint(struct cfx_writer *wr, int32_t v);
void kf_write_varlong(struct cfx_writer *wr, int64_t v);
/* Writes `v`, or a null if `null` is set (v is then ignored). Asserts that
 * a string is at most KF_STRING_BYTES_MAX bytes and bytes at most INT32_MAX. */
void kf_write_string(struct cfx_writer *wr, struct cfx_view v, int flexible, int null);
void kf_write_bytes(struct cfx_writer *wr, struct cfx_view v, int flexible, int null);
/* `n` is the element count, or -1 for a null array. */
void kf_write_array_len(struct cfx_writer *wr, int32_t n, int flexible);
/* A tagged field section with no fields: the single byte 0. */
void kf_write_empty_tagged_fields(struct cfx_writer *wr);

/* Encoded sizes, for size-first encoders. */
size_t kf_string_size(size_t len, int flexible, int null);
size_t kf_bytes_size(size_t len, int flexible, int null);

/* ------------------------------------------------------------------------
 * API keys and the API table
 * ------------------------------------------------------------------------ */

enum kf_api_key {
	KF_API_PRODUCE = 0,
	KF_API_FETCH = 1,
	KF_API_LIST_OFFSETS = 2,
	KF_API_METADATA = 3,
	KF_API_CONTROLLED_SHUTDOWN = 7, /* not served; only for its header quirk */
	KF_API_OFFSET_COMMIT = 8,
	KF_API_OFFSET_FETCH = 9,
	KF_API_FIND_COORDINATOR = 10,
	KF_API_JOIN_GROUP = 11,
	KF_API_HEARTBEAT = 12,
	KF_API_LEAVE_GROUP = 13,
	KF_API_SYNC_GROUP = 14,
	KF_API_DESCRIBE_GROUPS = 15,
	KF_API_LIST_GROUPS = 16,
	KF_API_SASL_HANDSHAKE = 17,
	KF_API_API_VERSIONS = 18,
	KF_API_CREATE_TOPICS = 19,
	KF_API_DELETE_TOPICS = 20,
	KF_API_DELETE_RECORDS = 21,
	KF_API_INIT_PRODUCER_ID = 22,
	KF_API_OFFSET_FOR_LEADER_EPOCH = 23,
	KF_API_ADD_PARTITIONS_TO_TXN = 24,
	KF_API_ADD_OFFSETS_TO_TXN = 25,
	KF_API_END_TXN = 26,
	KF_API_TXN_OFFSET_COMMIT = 28,
	KF_API_DESCRIBE_CONFIGS = 32,
	KF_API_ALTER_CONFIGS = 33,
	KF_API_SASL_AUTHENTICATE = 36,
	KF_API_CREATE_PARTITIONS = 37,
	KF_API_DELETE_GROUPS = 42,
	KF_API_INCREMENTAL_ALTER_CONFIGS = 44,
	KF_API_OFFSET_DELETE = 47,
	KF_API_DESCRIBE_CLUSTER = 60,
};

/* flexible_from for an API that has no flexible version (SaslHandshake). */
#define KF_FLEX_NONE INT16_MAX

/*
 * One API as Kafka's schema defines it: the versions the schema declares
 * valid (the "validVersions" of Apache Kafka 4.3, whose minima are the
 * KIP-896 baselines of Kafka 4.0) and the first flexible version
 * ("flexibleVersions": "N+"). This is what the codec can frame; which
 * versions Conflux advertises in ApiVersions is the dispatch table's
 * business and may be narrower.
 */
struct kf_api_info {
	int16_t key;
	const char *name;      /* Kafka's name, "ApiVersions" */
	int16_t min_version;   /* lowest valid version */
	int16_t max_version;   /* highest valid version */
	int16_t flexible_from; /* first flexible version, or KF_FLEX_NONE */
};

/* The known APIs, by ascending key. */
extern const struct kf_api_info kf_apis[];
extern const size_t kf_napis;

/* Returns the entry of `key`, or NULL if the codec does not know it. */
const struct kf_api_info *kf_api_lookup(int16_t key);

/* 1 if `version` of `key` uses the flexible encoding (compact types and
 * tagged fields), else 0 (also for unknown keys). */
int kf_api_is_flexible(int16_t key, int16_t version);

/* ------------------------------------------------------------------------
 * Request and response headers
 * ------------------------------------------------------------------------ */

/*
 * Request header:
 *   v0: RequestApiKey i16, RequestApiVersion i16, CorrelationId i32
 *   v1: v0 + ClientId NULLABLE_STRING (always the i16-length form)
 *   v2: v1 + tagged fields
 * Response header:
 *   v0: CorrelationId i32
 *   v1: v0 + tagged fields
 */
struct kf_req_header {
	int16_t api_key;
	int16_t api_version;
	int32_t correlation_id;
	struct cfx_view client_id; /* {NULL, 0} if null or absent (v0) */
	int client_id_null;	   /* 1 if null or absent */
	int header_version;	   /* 0, 1 or 2; -1 if the key is unknown */
	size_t header_bytes;	   /* bytes the header took */
};

/*
 * The header versions a request and its response use: 2 / 1 from the
 * API's first flexible version on, else 1 / 0. Versions above an API's
 * highest valid version count as flexible if the API has any flexible
 * version (so a too-new ApiVersions request is still parsed and can be
 * answered with UNSUPPORTED_VERSION). Exceptions: ControlledShutdown v0
 * uses request header v0, and an ApiVersions response always uses
 * header v0 (KIP-511: the client cannot yet know what the broker speaks).
 * Returns -1 for a key the codec does not know.
 */
int kf_request_header_version(int16_t api_key, int16_t api_version);
int kf_response_header_version(int16_t api_key, int16_t api_version);

/*
 * Parses the request header at the reader's position (after the i32 size
 * of the frame): the key and version first, then the rest as
 * kf_request_header_version says. Returns 0; CFX_EPARSE if the header is
 * malformed or truncated (rd->err says why); or CFX_EUNSUPPORTED if the
 * key is unknown - api_key, api_version and correlation_id are then
 * filled in (for a log line) but the rest of the header is not read, as
 * its layout is not known. Views point into the reader's bytes.
 */
int kf_parse_request_header(struct cfx_reader *rd, struct kf_req_header *h);

/* Writes a request header of version `header_version` (0, 1 or 2). */
void kf_write_request_header(struct cfx_writer *wr, const struct kf_req_header *h,
			     int header_version);

/*
 * Looks at the start of a request frame: an i32 size, then that many
 * bytes. Returns 0 and sets *frame_bytes (size prefix included) if the
 * whole frame is in [p, p+len); CFX_NEED_MORE if not yet; CFX_EPARSE for
 * a negative size or one below the smallest header (8 bytes); CFX_E2BIG
 * for a size above `frame_bytes_max`.
 */
int kf_frame_check(const uint8_t *p, size_t len, size_t frame_bytes_max, size_t *frame_bytes);

/*
 * Starts a response: reserves the i32 size and writes the response
 * header of `header_version` (0 or 1). Returns the position of the size,
 * for kf_end_response.
 */
size_t kf_begin_response(struct cfx_writer *wr, int32_t correlation_id, int header_version);

/* Back-patches the size reserved at `start` to cover everything written since. */
void kf_end_response(struct cfx_writer *wr, size_t start);

/* ------------------------------------------------------------------------
 * Error codes
 * ------------------------------------------------------------------------ */

/* X(name, code): Kafka's error codes, all of them up to 128
 * (org.apache.kafka.common.protocol.Errors; 99 is unassigned). */
#define KF_ERR_MAP(X)                                   \
	X(UNKNOWN_SERVER_ERROR, -1)                     \
	X(NONE, 0)                                      \
	X(OFFSET_OUT_OF_RANGE, 1)                       \
	X(CORRUPT_MESSAGE, 2)                           \
	X(UNKNOWN_TOPIC_OR_PARTITION, 3)                \
	X(INVALID_FETCH_SIZE, 4)                        \
	X(LEADER_NOT_AVAILABLE, 5)                      \
	X(NOT_LEADER_OR_FOLLOWER, 6)                    \
	X(REQUEST_TIMED_OUT, 7)                         \
	X(BROKER_NOT_AVAILABLE, 8)                      \
	X(REPLICA_NOT_AVAILABLE, 9)                     \
	X(MESSAGE_TOO_LARGE, 10)                        \
	X(STALE_CONTROLLER_EPOCH, 11)                   \
	X(OFFSET_METADATA_TOO_LARGE, 12)                \
	X(NETWORK_EXCEPTION, 13)                        \
	X(COORDINATOR_LOAD_IN_PROGRESS, 14)             \
	X(COORDINATOR_NOT_AVAILABLE, 15)                \
	X(NOT_COORDINATOR, 16)                          \
	X(INVALID_TOPIC_EXCEPTION, 17)                  \
	X(RECORD_LIST_TOO_LARGE, 18)                    \
	X(NOT_ENOUGH_REPLICAS, 19)                      \
	X(NOT_ENOUGH_REPLICAS_AFTER_APPEND, 20)         \
	X(INVALID_REQUIRED_ACKS, 21)                    \
	X(ILLEGAL_GENERATION, 22)                       \
	X(INCONSISTENT_GROUP_PROTOCOL, 23)              \
	X(INVALID_GROUP_ID, 24)                         \
	X(UNKNOWN_MEMBER_ID, 25)                        \
	X(INVALID_SESSION_TIMEOUT, 26)                  \
	X(REBALANCE_IN_PROGRESS, 27)                    \
	X(INVALID_COMMIT_OFFSET_SIZE, 28)               \
	X(TOPIC_AUTHORIZATION_FAILED, 29)               \
	X(GROUP_AUTHORIZATION_FAILED, 30)               \
	X(CLUSTER_AUTHORIZATION_FAILED, 31)             \
	X(INVALID_TIMESTAMP, 32)                        \
	X(UNSUPPORTED_SASL_MECHANISM, 33)               \
	X(ILLEGAL_SASL_STATE, 34)                       \
	X(UNSUPPORTED_VERSION, 35)                      \
	X(TOPIC_ALREADY_EXISTS, 36)                     \
	X(INVALID_PARTITIONS, 37)                       \
	X(INVALID_REPLICATION_FACTOR, 38)               \
	X(INVALID_REPLICA_ASSIGNMENT, 39)               \
	X(INVALID_CONFIG, 40)                           \
	X(NOT_CONTROLLER, 41)                           \
	X(INVALID_REQUEST, 42)                          \
	X(UNSUPPORTED_FOR_MESSAGE_FORMAT, 43)           \
	X(POLICY_VIOLATION, 44)                         \
	X(OUT_OF_ORDER_SEQUENCE_NUMBER, 45)             \
	X(DUPLICATE_SEQUENCE_NUMBER, 46)                \
	X(INVALID_PRODUCER_EPOCH, 47)                   \
	X(INVALID_TXN_STATE, 48)                        \
	X(INVALID_PRODUCER_ID_MAPPING, 49)              \
	X(INVALID_TRANSACTION_TIMEOUT, 50)              \
	X(CONCURRENT_TRANSACTIONS, 51)                  \
	X(TRANSACTION_COORDINATOR_FENCED, 52)           \
	X(TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 53)    \
	X(SECURITY_DISABLED, 54)                        \
	X(OPERATION_NOT_ATTEMPTED, 55)                  \
	X(KAFKA_STORAGE_ERROR, 56)                      \
	X(LOG_DIR_NOT_FOUND, 57)                        \
	X(SASL_AUTHENTICATION_FAILED, 58)               \
	X(UNKNOWN_PRODUCER_ID, 59)                      \
	X(REASSIGNMENT_IN_PROGRESS, 60)                 \
	X(DELEGATION_TOKEN_AUTH_DISABLED, 61)           \
	X(DELEGATION_TOKEN_NOT_FOUND, 62)               \
	X(DELEGATION_TOKEN_OWNER_MISMATCH, 63)          \
	X(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, 64)     \
	X(DELEGATION_TOKEN_AUTHORIZATION_FAILED, 65)    \
	X(DELEGATION_TOKEN_EXPIRED, 66)                 \
	X(INVALID_PRINCIPAL_TYPE, 67)                   \
	X(NON_EMPTY_GROUP, 68)                          \
	X(GROUP_ID_NOT_FOUND, 69)                       \
	X(FETCH_SESSION_ID_NOT_FOUND, 70)               \
	X(INVALID_FETCH_SESSION_EPOCH, 71)              \
	X(LISTENER_NOT_FOUND, 72)                       \
	X(TOPIC_DELETION_DISABLED, 73)                  \
	X(FENCED_LEADER_EPOCH, 74)                      \
	X(UNKNOWN_LEADER_EPOCH, 75)                     \
	X(UNSUPPORTED_COMPRESSION_TYPE, 76)             \
	X(STALE_BROKER_EPOCH, 77)                       \
	X(OFFSET_NOT_AVAILABLE, 78)                     \
	X(MEMBER_ID_REQUIRED, 79)                       \
	X(PREFERRED_LEADER_NOT_AVAILABLE, 80)           \
	X(GROUP_MAX_SIZE_REACHED, 81)                   \
	X(FENCED_INSTANCE_ID, 82)                       \
	X(ELIGIBLE_LEADERS_NOT_AVAILABLE, 83)           \
	X(ELECTION_NOT_NEEDED, 84)                      \
	X(NO_REASSIGNMENT_IN_PROGRESS, 85)              \
	X(GROUP_SUBSCRIBED_TO_TOPIC, 86)                \
	X(INVALID_RECORD, 87)                           \
	X(UNSTABLE_OFFSET_COMMIT, 88)                   \
	X(THROTTLING_QUOTA_EXCEEDED, 89)                \
	X(PRODUCER_FENCED, 90)                          \
	X(RESOURCE_NOT_FOUND, 91)                       \
	X(DUPLICATE_RESOURCE, 92)                       \
	X(UNACCEPTABLE_CREDENTIAL, 93)                  \
	X(INCONSISTENT_VOTER_SET, 94)                   \
	X(INVALID_UPDATE_VERSION, 95)                   \
	X(FEATURE_UPDATE_FAILED, 96)                    \
	X(PRINCIPAL_DESERIALIZATION_FAILURE, 97)        \
	X(SNAPSHOT_NOT_FOUND, 98)                       \
	X(UNKNOWN_TOPIC_ID, 100)                        \
	X(DUPLICATE_BROKER_REGISTRATION, 101)           \
	X(BROKER_ID_NOT_REGISTERED, 102)                \
	X(INCONSISTENT_TOPIC_ID, 103)                   \
	X(INCONSISTENT_CLUSTER_ID, 104)                 \
	X(TRANSACTIONAL_ID_NOT_FOUND, 105)              \
	X(FETCH_SESSION_TOPIC_ID_ERROR, 106)            \
	X(INELIGIBLE_REPLICA, 107)                      \
	X(NEW_LEADER_ELECTED, 108)                      \
	X(OFFSET_MOVED_TO_TIERED_STORAGE, 109)          \
	X(FENCED_MEMBER_EPOCH, 110)                     \
	X(UNRELEASED_INSTANCE_ID, 111)                  \
	X(UNSUPPORTED_ASSIGNOR, 112)                    \
	X(STALE_MEMBER_EPOCH, 113)                      \
	X(MISMATCHED_ENDPOINT_TYPE, 114)                \
	X(UNSUPPORTED_ENDPOINT_TYPE, 115)               \
	X(UNKNOWN_CONTROLLER_ID, 116)                   \
	X(UNKNOWN_SUBSCRIPTION_ID, 117)                 \
	X(TELEMETRY_TOO_LARGE, 118)                     \
	X(INVALID_REGISTRATION, 119)                    \
	X(TRANSACTION_ABORTABLE, 120)                   \
	X(INVALID_RECORD_STATE, 121)                    \
	X(SHARE_SESSION_NOT_FOUND, 122)                 \
	X(INVALID_SHARE_SESSION_EPOCH, 123)             \
	X(FENCED_STATE_EPOCH, 124)                      \
	X(INVALID_VOTER_KEY, 125)                       \
	X(DUPLICATE_VOTER, 126)                         \
	X(VOTER_NOT_FOUND, 127)                         \
	X(INVALID_REGULAR_EXPRESSION, 128)

enum kf_err {
#define KF_ERR_ENUM_(name, code) KF_ERR_##name = (code),
	KF_ERR_MAP(KF_ERR_ENUM_)
#undef KF_ERR_ENUM_
};

/* Kafka's name of `code` ("UNSUPPORTED_VERSION"); "UNKNOWN" if not in the map. */
const char *kf_error_name(int code);

/* ------------------------------------------------------------------------
 * RecordBatch v2
 * ------------------------------------------------------------------------ */

/*
 * RecordBatch header (big-endian):
 *
 * OFFSET | SIZE | FIELD
 *      0 |    8 | baseOffset
 *      8 |    4 | batchLength           bytes after this field
 *     12 |    4 | partitionLeaderEpoch
 *     16 |    1 | magic                 2 (the byte sits here in formats 0 and 1 too)
 *     17 |    4 | crc                   CRC-32C of bytes 21 .. end
 *     21 |    2 | attributes            KF_BATCH_ATTR_*
 *     23 |    4 | lastOffsetDelta
 *     27 |    8 | baseTimestamp
 *     35 |    8 | maxTimestamp
 *     43 |    8 | producerId
 *     51 |    2 | producerEpoch
 *     53 |    4 | baseSequence
 *     57 |    4 | recordsCount
 *     61 |    N | records               compressed as the attributes say
 */
#define KF_BATCH_HEADER_BYTES 61u
#define KF_BATCH_LOG_OVERHEAD 12u /* baseOffset + batchLength */
#define KF_BATCH_LEADER_EPOCH_OFF 12u /* partitionLeaderEpoch: not covered by the CRC */
#define KF_BATCH_CRC_OFF 17u
#define KF_BATCH_ATTRIBUTES_OFF 21u

#define KF_BATCH_ATTR_COMPRESSION_MASK 0x07 /* KF_COMPRESSION_* */
#define KF_BATCH_ATTR_LOG_APPEND_TIME 0x08  /* timestampType: 0 CreateTime, 1 LogAppendTime */
#define KF_BATCH_ATTR_TRANSACTIONAL 0x10
#define KF_BATCH_ATTR_CONTROL 0x20
#define KF_BATCH_ATTR_DELETE_HORIZON 0x40 /* baseTimestamp is the delete horizon (KIP-534) */

enum kf_compression {
	KF_COMPRESSION_NONE = 0,
	KF_COMPRESSION_GZIP = 1,
	KF_COMPRESSION_SNAPPY = 2,
	KF_COMPRESSION_LZ4 = 3,
	KF_COMPRESSION_ZSTD = 4,
};

/* The smallest record (length, attributes, timestampDelta, offsetDelta,
 * null key, null value, no headers: one byte each). */
#define KF_RECORD_BYTES_MIN 7u

/* What kf_batch_inspect learned. The views point into the batch. */
struct kf_batch_meta {
	int64_t base_offset;
	int32_t batch_length;		/* bytes after the batchLength field */
	int32_t partition_leader_epoch;
	int8_t magic;			/* 2 */
	uint32_t crc;			/* as stored */
	int crc_ok;			/* 1 if crc matches CRC-32C of attributes .. end;
					 * -1 if not checked (kf_batch_iter.check_crc 0) */
	int16_t attributes;		/* raw */
	int compression;		/* enum kf_compression (attributes bits 0-2) */
	int log_append_time;		/* timestampType (bit 3) */
	int is_transactional;		/* bit 4 */
	int is_control;			/* bit 5 */
	int32_t last_offset_delta;
	int64_t base_timestamp_ms;
	int64_t max_timestamp_ms;
	int64_t producer_id;		/* -1 if none */
	int16_t producer_epoch;		/* -1 if none */
	int32_t base_sequence;		/* -1 if none */
	int32_t record_count;
	size_t batch_bytes;		/* whole batch: KF_BATCH_LOG_OVERHEAD + batch_length */
	struct cfx_view records;	/* bytes after the header, as stored */
};

/*
 * Validates and describes the one RecordBatch v2 that is exactly the
 * `len` bytes at `p`, copying nothing. Returns 0 (check m->crc_ok: a
 * mismatch is the caller's CORRUPT_MESSAGE, so that it can still log the
 * header), CFX_EUNSUPPORTED for message formats 0 and 1, or CFX_EPARSE for
 * anything else that is wrong: fewer than 61 bytes, a batchLength that
 * does not match `len`, an unknown magic, compression codec 5-7, a
 * negative recordsCount or lastOffsetDelta, or (uncompressed batches)
 * more records than their bytes could hold. `m` is filled as far as it
 * could be read. Records themselves are not decoded (store/batch.c).
 */
int kf_batch_inspect(const uint8_t *p, size_t len, struct kf_batch_meta *m);

/*
 * 1 if an inspected batch meets what Kafka also demands of a batch that a
 * client produces (LogValidator): at least one record, and exactly
 * lastOffsetDelta + 1 of them. Fetched or compacted batches need not.
 */
int kf_batch_is_valid_from_client(const struct kf_batch_meta *m);

/*
 * Walks a records field (a Produce request's Records, a Fetch response's
 * records) holding batches back to back. Strict: every batch must be
 * whole and valid, and the last must end exactly at the field's end.
 *
 *   struct kf_batch_iter it;
 *   kf_batch_iter_init(&it, records.p, records.len);
 *   while ((rc = kf_batch_next(&it, &b, &m)) == 1)
 *       append(b, m);
 *   if (rc < 0) ... CORRUPT_MESSAGE / UNSUPPORTED_FOR_MESSAGE_FORMAT
 *
 * kf_batch_next returns 1 with the next batch in *batch (a view into the
 * field) and its description in *m; 0 at the end; or the error of
 * kf_batch_inspect (CFX_EPARSE also for a length that runs past the end),
 * after which it keeps returning that error. it->pos is the offset of the
 * batch that failed.
 */
struct kf_batch_iter {
	const uint8_t *p;
	size_t len;
	size_t pos; /* offset of the next batch */
	int err;    /* sticky: 0 or the first error */
	int check_crc; /* 1 (kf_batch_iter_init's default): compute crc_ok; 0: skip it */
};

void kf_batch_iter_init(struct kf_batch_iter *it, const uint8_t *p, size_t len);
int kf_batch_next(struct kf_batch_iter *it, struct cfx_view *batch, struct kf_batch_meta *m);

/* Counts the batches of a records field; returns the count or a negative error. */
int kf_batches_count(const uint8_t *p, size_t len);

#endif
