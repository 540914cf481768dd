/*
 * packet.h - the MQTT wire codec: control packets of MQTT 3.1.1 (protocol
 * level 4) and MQTT 5.0 (level 5), bytes to structs and back.
 *
 * What it does: the fixed header and its Remaining Length, a frame check
 * for the receive buffer, a decoder for every control packet (in the
 * direction it travels), an encoder for every control packet, MQTT 5
 * properties, the reason-code table, and the checks the specifications
 * put on UTF-8 strings, topic names and topic filters.
 *
 * What it does not do: sockets, sessions, keep-alive timers, packet-id
 * bookkeeping, topic aliases, authorization, or anything else that needs
 * connection state beyond the protocol version. The one piece of state a
 * decoder takes is that version (0 before CONNECT) and the direction the
 * packet travels. See docs/design/mqtt-codec.md.
 *
 * Facts come from the OASIS standards "MQTT Version 3.1.1" (2014) and
 * "MQTT Version 5.0" (2019); section numbers below are of MQTT 5.0.
 *
 * Decoding: mqtt_decode() takes one whole packet, as mqtt_frame_check()
 * delimits it, and fills a struct mqtt_packet whose strings and binary
 * fields are views into those bytes: valid as long as the caller keeps
 * them. Nothing is allocated. Repeatable things (user properties,
 * subscription identifiers, SUBSCRIBE/UNSUBSCRIBE entries) are validated
 * and counted by the decoder, and kept as a view of their wire bytes that
 * the iterators below walk. A failure returns CFX_EPARSE and fills a
 * struct mqtt_err: a static reason and the MQTT 5 reason code to answer
 * with.
 *
 * Encoding: mqtt_encode() and the mqtt_encode_* helpers append one whole
 * packet to a struct cfx_writer and return its size. They size the body
 * first, then write it (no back-patching, no copy). What the codec cannot
 * encode (a string over 65535 bytes, a packet over the protocol maximum,
 * QoS 3, a zero packet identifier where one is required) is a programmer
 * error (CFX_ASSERT). They do not re-check UTF-8 or topic rules: a struct
 * that came from the decoder passes them, one built by the caller should.
 *
 * @thread any: no global state besides the constant tables.
 */
#ifndef CFX_PROTO_MQTT_PACKET_H
#define CFX_PROTO_MQTT_PACKET_H

#include "base/buf.h"
#include "base/common.h"
#include "base/err.h"

/* ------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------ */

/* Remaining Length is a Variable Byte Integer of at most 4 bytes (1.5.5). */
#define MQTT_VARINT_BYTES_MAX 4u
#define MQTT_VARINT_MAX 268435455u
#define MQTT_REMAINING_LENGTH_MAX MQTT_VARINT_MAX
/* The largest packet the protocol can express: 1 + 4 header bytes. */
#define MQTT_PACKET_BYTES_PROTOCOL_MAX (1u + MQTT_VARINT_BYTES_MAX + MQTT_REMAINING_LENGTH_MAX)
/* Default largest packet a broker accepts (its Maximum Packet Size). */
#define MQTT_PACKET_BYTES_MAX (1024u * 1024)
/* Largest CONNECT accepted before authentication: room for a will payload,
 * its topic and credentials of common sizes. Pass it to mqtt_frame_check()
 * while the connection has not yet sent a CONNECT. */
#define MQTT_CONNECT_BYTES_MAX (128u * 1024)
/* UTF-8 strings and binary data have a two-byte length (1.5.4, 1.5.6). */
#define MQTT_STRING_BYTES_MAX 65535u
#define MQTT_TOPIC_BYTES_MAX 65535u
/* Clients of 3.1.1 may rely on ids of 1-23 bytes of [0-9a-zA-Z] (3.1.3-5). */
#define MQTT_CLIENT_ID_PORTABLE_BYTES 23u
/* Entries in one SUBSCRIBE or UNSUBSCRIBE, each answered in the ack. */
#define MQTT_SUBSCRIBE_TOPICS_MAX 256u
/* User Properties in one property list (CONNECT, will, PUBLISH ...). */
#define MQTT_USER_PROPERTIES_MAX 64u
/* Subscription Identifiers in one PUBLISH (one per matching subscription). */
#define MQTT_SUBSCRIPTION_IDS_MAX 64u

/* ------------------------------------------------------------------------
 * Protocol versions, packet types, direction
 * ------------------------------------------------------------------------ */

#define MQTT_V31 3  /* "MQIsdp": recognised only to be refused */
#define MQTT_V311 4 /* "MQTT" 3.1.1 */
#define MQTT_V5 5   /* "MQTT" 5.0 */

/*
 * X(NAME, type, flags, dir, v5_only)
 *   flags: the fixed-header flags the packet must carry (2.1.3), or -1 for
 *          PUBLISH, whose flags are DUP, QoS and RETAIN;
 *   dir:   who may send it (MQTT_FROM_CLIENT, MQTT_FROM_SERVER or both).
 */
#define MQTT_TYPE_MAP(X)                                    \
	X(CONNECT, 1, 0x0, MQTT_FROM_CLIENT, 0)             \
	X(CONNACK, 2, 0x0, MQTT_FROM_SERVER, 0)             \
	X(PUBLISH, 3, -1, MQTT_FROM_EITHER, 0)              \
	X(PUBACK, 4, 0x0, MQTT_FROM_EITHER, 0)              \
	X(PUBREC, 5, 0x0, MQTT_FROM_EITHER, 0)              \
	X(PUBREL, 6, 0x2, MQTT_FROM_EITHER, 0)              \
	X(PUBCOMP, 7, 0x0, MQTT_FROM_EITHER, 0)             \
	X(SUBSCRIBE, 8, 0x2, MQTT_FROM_CLIENT, 0)           \
	X(SUBACK, 9, 0x0, MQTT_FROM_SERVER, 0)              \
	X(UNSUBSCRIBE, 10, 0x2, MQTT_FROM_CLIENT, 0)        \
	X(UNSUBACK, 11, 0x0, MQTT_FROM_SERVER, 0)           \
	X(PINGREQ, 12, 0x0, MQTT_FROM_CLIENT, 0)            \
	X(PINGRESP, 13, 0x0, MQTT_FROM_SERVER, 0)           \
	X(DISCONNECT, 14, 0x0, MQTT_FROM_EITHER, 0)         \
	X(AUTH, 15, 0x0, MQTT_FROM_EITHER, 1)

/* Who sent the bytes being decoded; a bit mask in the type table. */
enum mqtt_dir {
	MQTT_FROM_CLIENT = 1, /* the broker decodes what a client sent */
	MQTT_FROM_SERVER = 2, /* a client (or a test) decodes what a broker sent */
	MQTT_FROM_EITHER = 3,
};

enum mqtt_type {
#define MQTT_TYPE_ENUM_(name, type, flags, dir, v5) MQTT_##name = (type),
	MQTT_TYPE_MAP(MQTT_TYPE_ENUM_)
#undef MQTT_TYPE_ENUM_
};

/* "PUBLISH", or "RESERVED" for 0 and values above 15. */
const char *mqtt_type_name(int type);

/* ------------------------------------------------------------------------
 * Reason codes (2.4)
 * ------------------------------------------------------------------------ */

/* Bit of a packet type in the masks of the reason-code and property tables. */
#define MQTT_PK(name) (1u << MQTT_##name)
#define MQTT_PK_ACKS (MQTT_PK(PUBACK) | MQTT_PK(PUBREC))
#define MQTT_PK_REFUSALS \
	(MQTT_PK(CONNACK) | MQTT_PK_ACKS | MQTT_PK(SUBACK) | MQTT_PK(UNSUBACK) | MQTT_PK(DISCONNECT))

/*
 * X(NAME, code, "Name", packets): every MQTT 5 reason code and the packets
 * that may carry it. 0x00 is also "Normal disconnection" (DISCONNECT) and
 * "Granted QoS 0" (SUBACK): see the aliases below.
 */
#define MQTT_REASON_MAP(X)                                                                   \
	X(SUCCESS, 0x00, "Success",                                                          \
	  MQTT_PK(CONNACK) | MQTT_PK_ACKS | MQTT_PK(PUBREL) | MQTT_PK(PUBCOMP) |             \
		  MQTT_PK(SUBACK) | MQTT_PK(UNSUBACK) | MQTT_PK(DISCONNECT) | MQTT_PK(AUTH)) \
	X(GRANTED_QOS_1, 0x01, "Granted QoS 1", MQTT_PK(SUBACK))                             \
	X(GRANTED_QOS_2, 0x02, "Granted QoS 2", MQTT_PK(SUBACK))                             \
	X(DISCONNECT_WITH_WILL, 0x04, "Disconnect with Will Message", MQTT_PK(DISCONNECT))   \
	X(NO_MATCHING_SUBSCRIBERS, 0x10, "No matching subscribers", MQTT_PK_ACKS)            \
	X(NO_SUBSCRIPTION_EXISTED, 0x11, "No subscription existed", MQTT_PK(UNSUBACK))       \
	X(CONTINUE_AUTHENTICATION, 0x18, "Continue authentication", MQTT_PK(AUTH))           \
	X(REAUTHENTICATE, 0x19, "Re-authenticate", MQTT_PK(AUTH))                            \
	X(UNSPECIFIED_ERROR, 0x80, "Unspecified error", MQTT_PK_REFUSALS)                    \
	X(MALFORMED_PACKET, 0x81, "Malformed Packet", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT)) \
	X(PROTOCOL_ERROR, 0x82, "Protocol Error", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))    \
	X(IMPLEMENTATION_SPECIFIC_ERROR, 0x83, "Implementation specific error",             \
	  MQTT_PK_REFUSALS)                                                                  \
	X(UNSUPPORTED_PROTOCOL_VERSION, 0x84, "Unsupported Protocol Version", MQTT_PK(CONNACK)) \
	X(CLIENT_IDENTIFIER_NOT_VALID, 0x85, "Client Identifier not valid", MQTT_PK(CONNACK)) \
	X(BAD_USER_NAME_OR_PASSWORD, 0x86, "Bad User Name or Password", MQTT_PK(CONNACK))    \
	X(NOT_AUTHORIZED, 0x87, "Not authorized", MQTT_PK_REFUSALS)                          \
	X(SERVER_UNAVAILABLE, 0x88, "Server unavailable", MQTT_PK(CONNACK))                  \
	X(SERVER_BUSY, 0x89, "Server busy", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))          \
	X(BANNED, 0x8A, "Banned", MQTT_PK(CONNACK))                                          \
	X(SERVER_SHUTTING_DOWN, 0x8B, "Server shutting down", MQTT_PK(DISCONNECT))           \
	X(BAD_AUTHENTICATION_METHOD, 0x8C, "Bad authentication method",                     \
	  MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))                                            \
	X(KEEP_ALIVE_TIMEOUT, 0x8D, "Keep Alive timeout", MQTT_PK(DISCONNECT))               \
	X(SESSION_TAKEN_OVER, 0x8E, "Session taken over", MQTT_PK(DISCONNECT))               \
	X(TOPIC_FILTER_INVALID, 0x8F, "Topic Filter invalid",                                \
	  MQTT_PK(SUBACK) | MQTT_PK(UNSUBACK) | MQTT_PK(DISCONNECT))                         \
	X(TOPIC_NAME_INVALID, 0x90, "Topic Name invalid",                                    \
	  MQTT_PK(CONNACK) | MQTT_PK_ACKS | MQTT_PK(DISCONNECT))                             \
	X(PACKET_IDENTIFIER_IN_USE, 0x91, "Packet Identifier in use",                        \
	  MQTT_PK_ACKS | MQTT_PK(SUBACK) | MQTT_PK(UNSUBACK))                                \
	X(PACKET_IDENTIFIER_NOT_FOUND, 0x92, "Packet Identifier not found",                  \
	  MQTT_PK(PUBREL) | MQTT_PK(PUBCOMP))                                                \
	X(RECEIVE_MAXIMUM_EXCEEDED, 0x93, "Receive Maximum exceeded", MQTT_PK(DISCONNECT))   \
	X(TOPIC_ALIAS_INVALID, 0x94, "Topic Alias invalid", MQTT_PK(DISCONNECT))             \
	X(PACKET_TOO_LARGE, 0x95, "Packet too large", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT)) \
	X(MESSAGE_RATE_TOO_HIGH, 0x96, "Message rate too high", MQTT_PK(DISCONNECT))         \
	X(QUOTA_EXCEEDED, 0x97, "Quota exceeded",                                            \
	  MQTT_PK(CONNACK) | MQTT_PK_ACKS | MQTT_PK(SUBACK) | MQTT_PK(DISCONNECT))           \
	X(ADMINISTRATIVE_ACTION, 0x98, "Administrative action", MQTT_PK(DISCONNECT))         \
	X(PAYLOAD_FORMAT_INVALID, 0x99, "Payload format invalid",                            \
	  MQTT_PK(CONNACK) | MQTT_PK_ACKS | MQTT_PK(DISCONNECT))                             \
	X(RETAIN_NOT_SUPPORTED, 0x9A, "Retain not supported",                                \
	  MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))                                            \
	X(QOS_NOT_SUPPORTED, 0x9B, "QoS not supported", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT)) \
	X(USE_ANOTHER_SERVER, 0x9C, "Use another server", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT)) \
	X(SERVER_MOVED, 0x9D, "Server moved", MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))        \
	X(SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, 0x9E, "Shared Subscriptions not supported",    \
	  MQTT_PK(SUBACK) | MQTT_PK(DISCONNECT))                                             \
	X(CONNECTION_RATE_EXCEEDED, 0x9F, "Connection rate exceeded",                        \
	  MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))                                            \
	X(MAXIMUM_CONNECT_TIME, 0xA0, "Maximum connect time", MQTT_PK(DISCONNECT))           \
	X(SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, 0xA1,                                      \
	  "Subscription Identifiers not supported", MQTT_PK(SUBACK) | MQTT_PK(DISCONNECT))   \
	X(WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, 0xA2, "Wildcard Subscriptions not supported", \
	  MQTT_PK(SUBACK) | MQTT_PK(DISCONNECT))

enum mqtt_reason {
#define MQTT_REASON_ENUM_(name, code, str, pk) MQTT_RC_##name = (code),
	MQTT_REASON_MAP(MQTT_REASON_ENUM_)
#undef MQTT_REASON_ENUM_
	MQTT_RC_NORMAL_DISCONNECTION = 0x00,
	MQTT_RC_GRANTED_QOS_0 = 0x00,
};

/* The name of a reason code ("Protocol Error"), or "Unknown reason code". */
const char *mqtt_reason_name(int code);

/* 1 if MQTT 5 allows `code` in a packet of `type`, else 0. */
int mqtt_reason_is_allowed(int type, int code);

/*
 * MQTT 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3). Structs always
 * hold MQTT 5 reason codes; the codec translates for level 4 both ways.
 */
enum mqtt_v311_connack {
	MQTT_V311_ACCEPTED = 0,
	MQTT_V311_REFUSED_PROTOCOL_VERSION = 1,
	MQTT_V311_REFUSED_IDENTIFIER_REJECTED = 2,
	MQTT_V311_REFUSED_SERVER_UNAVAILABLE = 3,
	MQTT_V311_REFUSED_BAD_USER_NAME_OR_PASSWORD = 4,
	MQTT_V311_REFUSED_NOT_AUTHORIZED = 5,
};

/*
 * The 3.1.1 return code for a v5 CONNACK reason code, or -1 when 3.1.1 has
 * no CONNACK for it: a 3.1.1 server closes the connection without one on a
 * malformed packet or protocol violation (0x81, 0x82, 0x90, 0x95, 0x99).
 * Refusals without an own 3.1.1 code become 3 (server unavailable), or 4 /
 * 5 for the authentication and authorization ones. Codes that are not
 * CONNACK codes also give -1.
 */
int mqtt_connack_v311_code(int reason);

/* The v5 reason code of a 3.1.1 return code 0-5, or -1 for others. */
int mqtt_connack_reason_of_v311(int rc);

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/*
 * Why a decode failed. `reason` is the MQTT 5 reason code a broker answers
 * with: in a CONNACK while the connection has no CONNECT yet, else in a
 * DISCONNECT (or, for 3.1.1, it just closes the connection; see
 * mqtt_connack_v311_code). `version` is the protocol level a CONNECT
 * declared (0 if it could not be read): it says whether to answer in the
 * v5 format (5) or the 3.1.1 one (any other value).
 */
struct mqtt_err {
	uint8_t reason;	  /* MQTT_RC_MALFORMED_PACKET, MQTT_RC_PROTOCOL_ERROR ... */
	uint8_t version;  /* CONNECT only: the declared protocol level, or 0 */
	const char *desc; /* static, for a log line */
};

/* ------------------------------------------------------------------------
 * Primitives
 * ------------------------------------------------------------------------ */

/*
 * Variable Byte Integer (1.5.5): 1-4 bytes, at most MQTT_VARINT_MAX.
 * The reader refuses 5-byte and overlong encodings (a last byte of 0x00
 * after the first), so that every value has exactly one encoding.
 */
uint32_t mqtt_read_varint(struct cfx_reader *rd);
void mqtt_write_varint(struct cfx_writer *wr, uint32_t v);
size_t mqtt_varint_size(uint32_t v);

/*
 * 1 if [p, p+len) is well-formed UTF-8 as MQTT requires (1.5.4): RFC 3629
 * (no overlong forms, no surrogates U+D800-U+DFFF, nothing above
 * U+10FFFF) and no U+0000. Control characters and non-characters are
 * allowed (the specification says SHOULD NOT, and the receiver MAY
 * refuse them): that is the broker's choice.
 */
int mqtt_utf8_is_valid(const uint8_t *p, size_t len);

/*
 * Topic rules (4.7). A topic name is 1-65535 bytes without '+' or '#'.
 * A topic filter is 1-65535 bytes where '+' fills a whole level and '#'
 * is the whole last level. Both are assumed to be valid UTF-8 already.
 * Return 0 if valid, else MQTT_RC_TOPIC_NAME_INVALID / _FILTER_INVALID.
 */
int mqtt_topic_name_check(struct cfx_view topic);
int mqtt_topic_filter_check(struct cfx_view filter);

/*
 * Splits a SUBSCRIBE/UNSUBSCRIBE filter: "$share/{ShareName}/{filter}"
 * (4.8.2) gives the share name and the filter after it; anything else an
 * empty share name and the filter itself. Checks the filter and, for a
 * shared one, that the share name is non-empty without '/', '+' or '#'.
 * Returns 0 or MQTT_RC_TOPIC_FILTER_INVALID.
 */
int mqtt_topic_filter_parse(struct cfx_view filter, struct cfx_view *share_name,
			    struct cfx_view *topic_filter);

/* 1 if the filter has '+' or '#'. */
int mqtt_topic_filter_has_wildcard(struct cfx_view filter);

/* 1 if the client id is 1-23 bytes of [0-9a-zA-Z]: what every server must take. */
int mqtt_client_id_is_portable(struct cfx_view client_id);

/* ------------------------------------------------------------------------
 * Properties (MQTT 5, 2.2.2)
 * ------------------------------------------------------------------------ */

enum mqtt_prop_type {
	MQTT_PT_BYTE = 1,
	MQTT_PT_U16,	/* Two Byte Integer */
	MQTT_PT_U32,	/* Four Byte Integer */
	MQTT_PT_VARINT, /* Variable Byte Integer */
	MQTT_PT_UTF8,	/* UTF-8 Encoded String */
	MQTT_PT_BINARY, /* Binary Data */
	MQTT_PT_PAIR,	/* UTF-8 String Pair */
};

/* The will properties of a CONNECT payload; no packet type uses bit 0. */
#define MQTT_PK_WILL (1u << 0)
/* Every property list: the will's and those of all packets that have one. */
#define MQTT_PK_ANY 0xffffu

/*
 * X(NAME, id, "Name", type, field, packets): every property, the field of
 * struct mqtt_props that holds it and the packets that may carry it. The
 * two repeatable ones (USER_PROPERTY, SUBSCRIPTION_IDENTIFIER) name their
 * count field; their values are read with the iterators below.
 */
#define MQTT_PROP_MAP(X)                                                                      \
	X(PAYLOAD_FORMAT_INDICATOR, 0x01, "Payload Format Indicator", BYTE, payload_format,   \
	  MQTT_PK(PUBLISH) | MQTT_PK_WILL)                                                    \
	X(MESSAGE_EXPIRY_INTERVAL, 0x02, "Message Expiry Interval", U32, message_expiry_s,    \
	  MQTT_PK(PUBLISH) | MQTT_PK_WILL)                                                    \
	X(CONTENT_TYPE, 0x03, "Content Type", UTF8, content_type,                             \
	  MQTT_PK(PUBLISH) | MQTT_PK_WILL)                                                    \
	X(RESPONSE_TOPIC, 0x08, "Response Topic", UTF8, response_topic,                       \
	  MQTT_PK(PUBLISH) | MQTT_PK_WILL)                                                    \
	X(CORRELATION_DATA, 0x09, "Correlation Data", BINARY, correlation_data,               \
	  MQTT_PK(PUBLISH) | MQTT_PK_WILL)                                                    \
	X(SUBSCRIPTION_IDENTIFIER, 0x0B, "Subscription Identifier", VARINT, sub_id_count,     \
	  MQTT_PK(PUBLISH) | MQTT_PK(SUBSCRIBE))                                              \
	X(SESSION_EXPIRY_INTERVAL, 0x11, "Session Expiry Interval", U32, session_expiry_s,    \
	  MQTT_PK(CONNECT) | MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))                          \
	X(ASSIGNED_CLIENT_IDENTIFIER, 0x12, "Assigned Client Identifier", UTF8,               \
	  assigned_client_id, MQTT_PK(CONNACK))                                               \
	X(SERVER_KEEP_ALIVE, 0x13, "Server Keep Alive", U16, server_keep_alive_s,             \
	  MQTT_PK(CONNACK))                                                                   \
	X(AUTHENTICATION_METHOD, 0x15, "Authentication Method", UTF8, auth_method,            \
	  MQTT_PK(CONNECT) | MQTT_PK(CONNACK) | MQTT_PK(AUTH))                                \
	X(AUTHENTICATION_DATA, 0x16, "Authentication Data", BINARY, auth_data,                \
	  MQTT_PK(CONNECT) | MQTT_PK(CONNACK) | MQTT_PK(AUTH))                                \
	X(REQUEST_PROBLEM_INFORMATION, 0x17, "Request Problem Information", BYTE,             \
	  request_problem_info, MQTT_PK(CONNECT))                                             \
	X(WILL_DELAY_INTERVAL, 0x18, "Will Delay Interval", U32, will_delay_s, MQTT_PK_WILL)  \
	X(REQUEST_RESPONSE_INFORMATION, 0x19, "Request Response Information", BYTE,           \
	  request_response_info, MQTT_PK(CONNECT))                                            \
	X(RESPONSE_INFORMATION, 0x1A, "Response Information", UTF8, response_info,            \
	  MQTT_PK(CONNACK))                                                                   \
	X(SERVER_REFERENCE, 0x1C, "Server Reference", UTF8, server_reference,                 \
	  MQTT_PK(CONNACK) | MQTT_PK(DISCONNECT))                                             \
	X(REASON_STRING, 0x1F, "Reason String", UTF8, reason_string,                          \
	  MQTT_PK(CONNACK) | MQTT_PK_ACKS | MQTT_PK(PUBREL) | MQTT_PK(PUBCOMP) |              \
		  MQTT_PK(SUBACK) | MQTT_PK(UNSUBACK) | MQTT_PK(DISCONNECT) | MQTT_PK(AUTH))  \
	X(RECEIVE_MAXIMUM, 0x21, "Receive Maximum", U16, receive_max,                         \
	  MQTT_PK(CONNECT) | MQTT_PK(CONNACK))                                                \
	X(TOPIC_ALIAS_MAXIMUM, 0x22, "Topic Alias Maximum", U16, topic_alias_max,             \
	  MQTT_PK(CONNECT) | MQTT_PK(CONNACK))                                                \
	X(TOPIC_ALIAS, 0x23, "Topic Alias", U16, topic_alias, MQTT_PK(PUBLISH))               \
	X(MAXIMUM_QOS, 0x24, "Maximum QoS", BYTE, max_qos, MQTT_PK(CONNACK))                  \
	X(RETAIN_AVAILABLE, 0x25, "Retain Available", BYTE, retain_available, MQTT_PK(CONNACK)) \
	X(USER_PROPERTY, 0x26, "User Property", PAIR, user_prop_count, MQTT_PK_ANY)           \
	X(MAXIMUM_PACKET_SIZE, 0x27, "Maximum Packet Size", U32, max_packet_bytes,            \
	  MQTT_PK(CONNECT) | MQTT_PK(CONNACK))                                                \
	X(WILDCARD_SUBSCRIPTION_AVAILABLE, 0x28, "Wildcard Subscription Available", BYTE,     \
	  wildcard_sub_available, MQTT_PK(CONNACK))                                           \
	X(SUBSCRIPTION_IDENTIFIER_AVAILABLE, 0x29, "Subscription Identifier Available", BYTE, \
	  sub_id_available, MQTT_PK(CONNACK))                                                 \
	X(SHARED_SUBSCRIPTION_AVAILABLE, 0x2A, "Shared Subscription Available", BYTE,         \
	  shared_sub_available, MQTT_PK(CONNACK))

enum mqtt_prop_id {
#define MQTT_PROP_ENUM_(name, id, str, type, field, pk) MQTT_PROP_ID_##name = (id),
	MQTT_PROP_MAP(MQTT_PROP_ENUM_)
#undef MQTT_PROP_ENUM_
};

/* The bit of a property in mqtt_props.present. */
#define MQTT_PROP_BIT(name) (1ull << MQTT_PROP_ID_##name)

/* One row of the property table. */
struct mqtt_prop_info {
	uint8_t id;
	uint8_t type;	   /* enum mqtt_prop_type */
	uint16_t packets;  /* MQTT_PK() bits, MQTT_PK_WILL */
	const char *name;  /* "Session Expiry Interval" */
	size_t offset;	   /* of its field in struct mqtt_props */
};

/* The row of property `id`, or NULL if MQTT 5 defines no such property. */
const struct mqtt_prop_info *mqtt_prop_lookup(uint32_t id);

struct mqtt_user_prop {
	struct cfx_view name;
	struct cfx_view value;
};

/*
 * The properties of one packet (or of a will). `present` says which of
 * the single-valued fields hold a value: set MQTT_PROP_BIT(NAME) beside a
 * field to have it encoded. Values the decoder accepted are within the
 * ranges 3.x.2.x give (for example receive_max > 0, bytes that are
 * booleans 0 or 1, topic_alias > 0).
 *
 * User properties and subscription identifiers repeat. The decoder counts
 * them, sets their bit in `present` when there is at least one, and keeps
 * the whole list as `raw`; mqtt_props_next_user / _next_sub_id walk it in
 * wire order. To encode them, point `user_props` / `sub_ids` at an array
 * of `*_count` values; when an array is NULL, the first `*_count` ones
 * found in `raw` are encoded instead, so a decoded struct re-encodes as
 * it is (a broker forwarding a PUBLISH keeps its user properties in
 * order). Set a count to 0 to drop them.
 */
struct mqtt_props {
	uint64_t present;		     /* MQTT_PROP_BIT() of each property present */
	uint8_t payload_format;		     /* 0x01: 0 bytes, 1 UTF-8 */
	uint32_t message_expiry_s;	     /* 0x02 */
	struct cfx_view content_type;	     /* 0x03 */
	struct cfx_view response_topic;	     /* 0x08: a topic name */
	struct cfx_view correlation_data;    /* 0x09 */
	uint32_t session_expiry_s;	     /* 0x11: 0xFFFFFFFF = never */
	struct cfx_view assigned_client_id;  /* 0x12 */
	uint16_t server_keep_alive_s;	     /* 0x13 */
	struct cfx_view auth_method;	     /* 0x15 */
	struct cfx_view auth_data;	     /* 0x16 */
	uint8_t request_problem_info;	     /* 0x17: 0 or 1 */
	uint32_t will_delay_s;		     /* 0x18 */
	uint8_t request_response_info;	     /* 0x19: 0 or 1 */
	struct cfx_view response_info;	     /* 0x1A */
	struct cfx_view server_reference;    /* 0x1C */
	struct cfx_view reason_string;	     /* 0x1F */
	uint16_t receive_max;		     /* 0x21: > 0 */
	uint16_t topic_alias_max;	     /* 0x22 */
	uint16_t topic_alias;		     /* 0x23: > 0 */
	uint8_t max_qos;		     /* 0x24: 0 or 1 */
	uint8_t retain_available;	     /* 0x25: 0 or 1 */
	uint32_t max_packet_bytes;	     /* 0x27: > 0 */
	uint8_t wildcard_sub_available;	     /* 0x28: 0 or 1 */
	uint8_t sub_id_available;	     /* 0x29: 0 or 1 */
	uint8_t shared_sub_available;	     /* 0x2A: 0 or 1 */

	uint32_t user_prop_count;		  /* 0x26, <= MQTT_USER_PROPERTIES_MAX */
	const struct mqtt_user_prop *user_props;  /* to encode; NULL: take them from raw */
	uint32_t sub_id_count;			  /* 0x0B, <= MQTT_SUBSCRIPTION_IDS_MAX */
	const uint32_t *sub_ids;		  /* to encode; NULL: take them from raw */
	struct cfx_view raw;			  /* decoded: the property list's bytes */
};

/*
 * Walks the repeatable properties, from the arrays if set, else from raw:
 *
 *   struct mqtt_prop_iter it;
 *   struct mqtt_user_prop up;
 *   mqtt_prop_iter_init(&it, &pub.props);
 *   while (mqtt_props_next_user(&it, &up))
 *       ...
 *
 * Each returns 1 with the next value, 0 after the last one (at most
 * the count). One iterator walks one kind: init again for the other.
 */
struct mqtt_prop_iter {
	const struct mqtt_props *props;
	struct cfx_reader rd; /* over props->raw */
	uint32_t i;	      /* values handed out */
};

void mqtt_prop_iter_init(struct mqtt_prop_iter *it, const struct mqtt_props *props);
int mqtt_props_next_user(struct mqtt_prop_iter *it, struct mqtt_user_prop *up);
int mqtt_props_next_sub_id(struct mqtt_prop_iter *it, uint32_t *sub_id);

/* The first Subscription Identifier (SUBSCRIBE carries at most one), or 0. */
uint32_t mqtt_props_first_sub_id(const struct mqtt_props *props);

/* ------------------------------------------------------------------------
 * Packets
 * ------------------------------------------------------------------------ */

struct mqtt_will {
	struct mqtt_props props; /* v5 will properties */
	struct cfx_view topic;	 /* a topic name */
	struct cfx_view payload;
	uint8_t qos;
	uint8_t retain;
};

/* CONNECT (3.1) */
struct mqtt_connect {
	uint8_t version;      /* MQTT_V311 or MQTT_V5 */
	uint8_t clean_start;  /* Clean Session (3.1.1) / Clean Start (5.0) */
	uint8_t has_will;
	uint8_t has_username;
	uint8_t has_password;
	uint16_t keep_alive_s;
	struct mqtt_props props;
	struct cfx_view client_id; /* may be empty: see docs/design/mqtt-codec.md */
	struct mqtt_will will;	   /* if has_will */
	struct cfx_view username;  /* if has_username */
	struct cfx_view password;  /* if has_password: binary */
};

/* CONNACK (3.2). */
struct mqtt_connack {
	uint8_t session_present;
	uint8_t reason; /* MQTT 5 reason code, translated for 3.1.1 */
	struct mqtt_props props;
};

/* PUBLISH (3.3). */
struct mqtt_publish {
	uint8_t dup;
	uint8_t qos;
	uint8_t retain;
	uint16_t packet_id;    /* QoS 1 and 2 only, > 0 */
	struct cfx_view topic; /* empty only with a Topic Alias (v5) */
	struct mqtt_props props;
	struct cfx_view payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7). */
struct mqtt_ack {
	uint16_t packet_id; /* > 0 */
	uint8_t reason;	    /* v5; 0 for 3.1.1 */
	struct mqtt_props props;
};

/*
 * One SUBSCRIBE entry, or an UNSUBSCRIBE one (options then 0). To encode,
 * only `filter` and the options are used; the decoder also splits it.
 */
struct mqtt_subscription {
	struct cfx_view filter;	      /* as on the wire, "$share/g/a/+" */
	struct cfx_view share_name;   /* "g"; empty if not a shared subscription */
	struct cfx_view topic_filter; /* "a/+": filter without the $share part */
	uint8_t qos;		      /* maximum QoS, 0-2 */
	uint8_t no_local;	      /* v5 */
	uint8_t retain_as_published;  /* v5 */
	uint8_t retain_handling;      /* v5, 0-2 */
};

/*
 * SUBSCRIBE (3.8) and UNSUBSCRIBE (3.10): 1 to MQTT_SUBSCRIBE_TOPICS_MAX
 * entries. Decoded: `topic_count` and `raw` (walk them with
 * mqtt_topic_iter_init); to encode, point `topics` at `topic_count`
 * entries, or leave it NULL to encode those of `raw`.
 */
struct mqtt_subscribe {
	uint16_t packet_id; /* > 0 */
	struct mqtt_props props;
	uint32_t topic_count;
	const struct mqtt_subscription *topics; /* to encode; NULL: take them from raw */
	struct cfx_view raw;			/* decoded: the payload's bytes */
};

/*
 * SUBACK (3.9) and UNSUBACK (3.11): one reason code per entry of the
 * request, as bytes. Always MQTT 5 codes; a 3.1.1 SUBACK encodes codes of
 * 0x80 and above as 0x80, and a 3.1.1 UNSUBACK has none.
 */
struct mqtt_suback {
	uint16_t packet_id; /* > 0 */
	struct mqtt_props props;
	struct cfx_view reasons;
};

/* DISCONNECT (3.14) and AUTH (3.15). */
struct mqtt_disconnect {
	uint8_t reason; /* v5 */
	struct mqtt_props props;
};

/* Any packet; `type` says which member is valid. */
struct mqtt_packet {
	uint8_t type; /* enum mqtt_type */
	union {
		struct mqtt_connect connect;	 /* CONNECT */
		struct mqtt_connack connack;	 /* CONNACK */
		struct mqtt_publish publish;	 /* PUBLISH */
		struct mqtt_ack ack;		 /* PUBACK, PUBREC, PUBREL, PUBCOMP */
		struct mqtt_subscribe subscribe;   /* SUBSCRIBE */
		struct mqtt_subscribe unsubscribe; /* UNSUBSCRIBE */
		struct mqtt_suback suback;	   /* SUBACK */
		struct mqtt_suback unsuback;	   /* UNSUBACK */
		struct mqtt_disconnect disconnect; /* DISCONNECT */
		struct mqtt_disconnect auth;	   /* AUTH */
	};
};

/*
 * Walks the entries of a SUBSCRIBE or UNSUBSCRIBE (type MQTT_SUBSCRIBE or
 * MQTT_UNSUBSCRIBE), from `topics` if set, else from `raw`. next returns
 * 1 with an entry (filter split as mqtt_topic_filter_parse does), 0 after
 * the last one.
 */
struct mqtt_topic_iter {
	const struct mqtt_subscribe *sub;
	struct cfx_reader rd; /* over sub->raw */
	uint32_t i;
	uint8_t type;
};

void mqtt_topic_iter_init(struct mqtt_topic_iter *it, int type, const struct mqtt_subscribe *sub);
int mqtt_topic_next(struct mqtt_topic_iter *it, struct mqtt_subscription *entry);

/* ------------------------------------------------------------------------
 * Framing and decoding
 * ------------------------------------------------------------------------ */

/*
 * Looks at the start of the receive buffer: the fixed header, then the
 * Remaining Length's bytes. Returns 0 and sets *frame_bytes (the whole
 * packet, header included) if the whole packet is in [p, p+len);
 * CFX_NEED_MORE if not yet (call again with more bytes: it keeps no
 * state, at most 5 bytes are looked at again); CFX_EPARSE for a Remaining
 * Length of 5 bytes or an overlong one (reason 0x81); CFX_E2BIG as soon as
 * the length says the packet is over `packet_bytes_max` (reason 0x95:
 * Maximum Packet Size counts the whole packet, 3.1.2.11.4).
 */
int mqtt_frame_check(const uint8_t *p, size_t len, size_t packet_bytes_max, size_t *frame_bytes);

/*
 * Decodes one whole packet, exactly the `len` bytes at `p`.
 *   version: 0 while the connection has had no CONNECT (only a CONNECT is
 *            valid then, from a client), else MQTT_V311 or MQTT_V5; a
 *            second CONNECT is a Protocol Error.
 *   dir:     MQTT_FROM_CLIENT for what a broker receives, MQTT_FROM_SERVER
 *            for what a client receives; a packet the other side never
 *            sends is a Protocol Error.
 * Returns 0, with pkt filled and its views into [p, p+len); or CFX_EPARSE
 * with *err filled (pkt is then unspecified). For a CONNECT, the protocol
 * version the connection uses from then on is pkt->connect.version.
 */
int mqtt_decode(const uint8_t *p, size_t len, int version, enum mqtt_dir dir,
		struct mqtt_packet *pkt, struct mqtt_err *err);

/*
 * 1 if two packets hold the same values (views compared by content,
 * repeatable properties and entries in order, whichever of array or raw
 * holds them), else 0. Fields the wire does not carry are skipped: the
 * user name, password and will without their flags, the packet id of a
 * QoS 0 PUBLISH, single-valued properties without their `present` bit.
 * Encodings may differ (property order, short forms). For tests and the
 * fuzz target.
 */
int mqtt_packet_equal(const struct mqtt_packet *a, const struct mqtt_packet *b);

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

/*
 * Appends one packet of `pkt->type` in protocol `version` (4 or 5) and
 * returns its size. For 3.1.1, properties and v5-only fields are left out
 * and reason codes translated (CONNACK: mqtt_connack_v311_code, which must
 * not be -1; SUBACK: 0x80 and above become 0x80). Acks, DISCONNECT and
 * AUTH use the short forms of 3.4.2.1 / 3.14.2.1 / 3.15.2.1 when their
 * reason code is 0 and they have no properties. A CONNECT is encoded in
 * its own pkt->connect.version.
 */
size_t mqtt_encode(struct cfx_writer *wr, int version, const struct mqtt_packet *pkt);

size_t mqtt_encode_connect(struct cfx_writer *wr, const struct mqtt_connect *c);
size_t mqtt_encode_connack(struct cfx_writer *wr, int version, const struct mqtt_connack *ca);
size_t mqtt_encode_publish(struct cfx_writer *wr, int version, const struct mqtt_publish *pub);
/* type: MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL or MQTT_PUBCOMP */
size_t mqtt_encode_ack(struct cfx_writer *wr, int version, int type, const struct mqtt_ack *ack);
/* type: MQTT_SUBSCRIBE or MQTT_UNSUBSCRIBE */
size_t mqtt_encode_subscribe(struct cfx_writer *wr, int version, int type,
			     const struct mqtt_subscribe *sub);
/* type: MQTT_SUBACK or MQTT_UNSUBACK */
size_t mqtt_encode_suback(struct cfx_writer *wr, int version, int type,
			  const struct mqtt_suback *sa);
/* type: MQTT_DISCONNECT or MQTT_AUTH (v5 only) */
size_t mqtt_encode_disconnect(struct cfx_writer *wr, int version, int type,
			      const struct mqtt_disconnect *d);
/* type: MQTT_PINGREQ or MQTT_PINGRESP: two bytes */
size_t mqtt_encode_ping(struct cfx_writer *wr, int type);

/* Encoded size of a property list's contents (without its length prefix). */
size_t mqtt_props_size(const struct mqtt_props *props);

#endif
