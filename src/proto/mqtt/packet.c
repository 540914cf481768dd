/*
 * packet.c - the MQTT 3.1.1 / 5.0 wire codec (see packet.h and
 * docs/design/mqtt-codec.md).
 *
 * Nothing here allocates and nothing reads a byte it has not checked is
 * there: every read of a packet goes through a struct cfx_reader bounded
 * by the packet's Remaining Length (or, inside a property list, by the
 * list's own length). Decoders read a whole packet, then test the sticky
 * error once. Encoders run each packet body twice through one function,
 * first counting, then writing, so the Remaining Length is known before
 * the first byte goes out and there is only one description of each
 * layout to keep right.
 */
#include "proto/mqtt/packet.h"

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

struct type_info {
	const char *name;
	int8_t flags;	 /* required fixed-header flags, -1: PUBLISH's own */
	uint8_t dir;	 /* enum mqtt_dir bits: who may send it */
	uint8_t v5_only; /* AUTH */
};

static const struct type_info types[16] = {
#define TYPE_ROW_(name, type, flags, dir, v5) [type] = { #name, (flags), (dir), (v5) },
	MQTT_TYPE_MAP(TYPE_ROW_)
#undef TYPE_ROW_
};

const char *mqtt_type_name(int type)
{
	if (type <= 0 || type > 15)
		return "RESERVED";
	return types[type].name;
}

const char *mqtt_reason_name(int code)
{
	switch (code) {
#define REASON_NAME_(name, code, str, pk) \
	case code:                        \
		return str;
		MQTT_REASON_MAP(REASON_NAME_)
#undef REASON_NAME_
	}
	return "Unknown reason code";
}

int mqtt_reason_is_allowed(int type, int code)
{
	unsigned pk = 0;

	if (type <= 0 || type > 15)
		return 0;
	switch (code) {
#define REASON_PK_(name, code, str, packets) \
	case code:                           \
		pk = (packets);              \
		break;
		MQTT_REASON_MAP(REASON_PK_)
#undef REASON_PK_
	default:
		return 0;
	}
	return (pk >> type) & 1;
}

int mqtt_connack_v311_code(int reason)
{
	switch (reason) {
	case MQTT_RC_SUCCESS:
		return MQTT_V311_ACCEPTED;
	case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
		return MQTT_V311_REFUSED_PROTOCOL_VERSION;
	case MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID:
		return MQTT_V311_REFUSED_IDENTIFIER_REJECTED;
	case MQTT_RC_BAD_USER_NAME_OR_PASSWORD:
	case MQTT_RC_BAD_AUTHENTICATION_METHOD:
		return MQTT_V311_REFUSED_BAD_USER_NAME_OR_PASSWORD;
	case MQTT_RC_NOT_AUTHORIZED:
	case MQTT_RC_BANNED:
		return MQTT_V311_REFUSED_NOT_AUTHORIZED;
	case MQTT_RC_UNSPECIFIED_ERROR:
	case MQTT_RC_IMPLEMENTATION_SPECIFIC_ERROR:
	case MQTT_RC_SERVER_UNAVAILABLE:
	case MQTT_RC_SERVER_BUSY:
	case MQTT_RC_QUOTA_EXCEEDED:
	case MQTT_RC_RETAIN_NOT_SUPPORTED:
	case MQTT_RC_QOS_NOT_SUPPORTED:
	case MQTT_RC_USE_ANOTHER_SERVER:
	case MQTT_RC_SERVER_MOVED:
	case MQTT_RC_CONNECTION_RATE_EXCEEDED:
		return MQTT_V311_REFUSED_SERVER_UNAVAILABLE;
	default:
		/* 0x81, 0x82, 0x90, 0x95, 0x99: a 3.1.1 server just closes. */
		return -1;
	}
}

int mqtt_connack_reason_of_v311(int rc)
{
	static const uint8_t reasons[] = {
		[MQTT_V311_ACCEPTED] = MQTT_RC_SUCCESS,
		[MQTT_V311_REFUSED_PROTOCOL_VERSION] = MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION,
		[MQTT_V311_REFUSED_IDENTIFIER_REJECTED] = MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID,
		[MQTT_V311_REFUSED_SERVER_UNAVAILABLE] = MQTT_RC_SERVER_UNAVAILABLE,
		[MQTT_V311_REFUSED_BAD_USER_NAME_OR_PASSWORD] = MQTT_RC_BAD_USER_NAME_OR_PASSWORD,
		[MQTT_V311_REFUSED_NOT_AUTHORIZED] = MQTT_RC_NOT_AUTHORIZED,
	};

	if (rc < 0 || (size_t)rc >= CFX_ARRAY_LEN(reasons))
		return -1;
	return reasons[rc];
}

/* Indexed by identifier; rows without a name are identifiers MQTT 5 does not define. */
#define PROP_ID_MAX 0x2A
static const struct mqtt_prop_info props_table[PROP_ID_MAX + 1] = {
#define PROP_ROW_(NAME, id, str, type, field, pk) \
	[id] = { (id), MQTT_PT_##type, (pk), str, offsetof(struct mqtt_props, field) },
	MQTT_PROP_MAP(PROP_ROW_)
#undef PROP_ROW_
};

const struct mqtt_prop_info *mqtt_prop_lookup(uint32_t id)
{
	if (id > PROP_ID_MAX || !props_table[id].name)
		return NULL;
	return &props_table[id];
}

static int prop_is_repeatable(uint32_t id)
{
	return id == MQTT_PROP_ID_USER_PROPERTY || id == MQTT_PROP_ID_SUBSCRIPTION_IDENTIFIER;
}

#define PROP_BITS_REPEATABLE (MQTT_PROP_BIT(USER_PROPERTY) | MQTT_PROP_BIT(SUBSCRIPTION_IDENTIFIER))

/* ------------------------------------------------------------------------
 * Primitives
 * ------------------------------------------------------------------------ */

uint32_t mqtt_read_varint(struct cfx_reader *rd)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < MQTT_VARINT_BYTES_MAX; i++) {
		const uint8_t *b = cfx_read_bytes(rd, 1, "truncated Variable Byte Integer");

		if (!b)
			return 0;
		v |= (uint32_t)(*b & 0x7f) << (7 * i);
		if (!(*b & 0x80)) {
			/* A last byte of 0 adds nothing: the value had a shorter form. */
			if (i > 0 && *b == 0) {
				cfx_reader_fail(rd, "overlong Variable Byte Integer");
				return 0;
			}
			return v;
		}
	}
	cfx_reader_fail(rd, "Variable Byte Integer longer than 4 bytes");
	return 0;
}

size_t mqtt_varint_size(uint32_t v)
{
	CFX_ASSERT(v <= MQTT_VARINT_MAX);
	return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : 4;
}

static size_t varint_encode(uint8_t out[MQTT_VARINT_BYTES_MAX], uint32_t v)
{
	size_t n = 0;

	CFX_ASSERT(v <= MQTT_VARINT_MAX);
	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		out[n++] = (uint8_t)(v ? b | 0x80 : b);
	} while (v);
	return n;
}

void mqtt_write_varint(struct cfx_writer *wr, uint32_t v)
{
	uint8_t tmp[MQTT_VARINT_BYTES_MAX];

	cfx_write_bytes(wr, tmp, varint_encode(tmp, v));
}

int mqtt_utf8_is_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		uint32_t cp, min;
		size_t n;

		if (c < 0x80) {
			if (c == 0)
				return 0;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0; /* a continuation byte first, or 0xF8-0xFF */
		}
		if (len - i < n)
			return 0;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

int mqtt_topic_name_check(struct cfx_view topic)
{
	if (topic.len == 0 || topic.len > MQTT_TOPIC_BYTES_MAX)
		return MQTT_RC_TOPIC_NAME_INVALID;
	if (memchr(topic.p, '+', topic.len) || memchr(topic.p, '#', topic.len))
		return MQTT_RC_TOPIC_NAME_INVALID;
	return 0;
}

int mqtt_topic_filter_check(struct cfx_view f)
{
	if (f.len == 0 || f.len > MQTT_TOPIC_BYTES_MAX)
		return MQTT_RC_TOPIC_FILTER_INVALID;
	for (size_t i = 0; i < f.len; i++) {
		int starts_level = i == 0 || f.p[i - 1] == '/';

		if (f.p[i] == '+') {
			/* '+' is a whole level: "a/+/b", not "a/x+". */
			if (!starts_level || (i + 1 < f.len && f.p[i + 1] != '/'))
				return MQTT_RC_TOPIC_FILTER_INVALID;
		} else if (f.p[i] == '#') {
			/* '#' is the whole last level: "a/#" or "#". */
			if (!starts_level || i + 1 != f.len)
				return MQTT_RC_TOPIC_FILTER_INVALID;
		}
	}
	return 0;
}

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_BYTES (sizeof(SHARE_PREFIX) - 1)

static int is_share_filter(struct cfx_view filter)
{
	return filter.len >= SHARE_PREFIX_BYTES && !memcmp(filter.p, SHARE_PREFIX, SHARE_PREFIX_BYTES);
}

int mqtt_topic_filter_parse(struct cfx_view filter, struct cfx_view *share_name,
			    struct cfx_view *topic_filter)
{
	const uint8_t *rest, *slash;
	size_t rest_len;

	*share_name = (struct cfx_view){ NULL, 0 };
	*topic_filter = filter;
	if (!is_share_filter(filter))
		return mqtt_topic_filter_check(filter);

	rest = filter.p + SHARE_PREFIX_BYTES;
	rest_len = filter.len - SHARE_PREFIX_BYTES;
	slash = memchr(rest, '/', rest_len);
	if (!slash || slash == rest)
		return MQTT_RC_TOPIC_FILTER_INVALID; /* no filter, or no share name */
	*share_name = (struct cfx_view){ rest, (size_t)(slash - rest) };
	if (memchr(share_name->p, '+', share_name->len) || memchr(share_name->p, '#', share_name->len))
		return MQTT_RC_TOPIC_FILTER_INVALID;
	*topic_filter = (struct cfx_view){ slash + 1, rest_len - share_name->len - 1 };
	return mqtt_topic_filter_check(*topic_filter);
}

int mqtt_topic_filter_has_wildcard(struct cfx_view filter)
{
	return filter.len && (memchr(filter.p, '+', filter.len) || memchr(filter.p, '#', filter.len));
}

int mqtt_client_id_is_portable(struct cfx_view id)
{
	if (id.len == 0 || id.len > MQTT_CLIENT_ID_PORTABLE_BYTES)
		return 0;
	for (size_t i = 0; i < id.len; i++) {
		uint8_t c = id.p[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * Decoding context
 *
 * A struct dec wraps the reader over the packet body with what the error
 * needs beyond the reader's reason string: the MQTT 5 reason code. The
 * first failure wins; failures of the reader itself (truncation, bad
 * varints) leave the default, Malformed Packet.
 * ------------------------------------------------------------------------ */

struct dec {
	struct cfx_reader rd; /* the body: after the fixed header, Remaining Length bytes */
	uint8_t reason;	      /* of the first failure */
	uint8_t version;      /* MQTT_V311 or MQTT_V5 (CONNECT: set once read) */
	uint8_t dir;	      /* enum mqtt_dir */
	uint8_t type;
	uint8_t flags;		 /* fixed-header flags */
	uint8_t connect_version; /* CONNECT: the declared protocol level */
};

static void fail(struct dec *d, uint8_t reason, const char *desc)
{
	if (!d->rd.err) {
		cfx_reader_fail(&d->rd, desc);
		d->reason = reason;
	}
}

#define MALFORMED(d, desc) fail((d), MQTT_RC_MALFORMED_PACKET, (desc))
#define PROTOCOL_ERROR(d, desc) fail((d), MQTT_RC_PROTOCOL_ERROR, (desc))

static int is_v5(const struct dec *d)
{
	return d->version == MQTT_V5;
}

static uint8_t rd_u8(struct dec *d)
{
	return cfx_read_u8(&d->rd);
}

static uint16_t rd_u16(struct dec *d)
{
	return cfx_read_be16(&d->rd);
}

/* Binary Data (1.5.6): a two-byte length, then that many bytes. */
static struct cfx_view rd_binary(struct dec *d, const char *truncated)
{
	struct cfx_view v = { NULL, 0 };
	uint16_t n = rd_u16(d);

	v.p = cfx_read_bytes(&d->rd, n, truncated);
	v.len = v.p ? n : 0;
	return v;
}

/* UTF-8 Encoded String (1.5.4): Binary Data that must be well-formed UTF-8. */
static struct cfx_view rd_utf8(struct dec *d, const char *truncated, const char *ill_formed)
{
	struct cfx_view v = rd_binary(d, truncated);

	if (!d->rd.err && !mqtt_utf8_is_valid(v.p, v.len))
		MALFORMED(d, ill_formed);
	return v;
}

/* A non-zero Packet Identifier (2.2.1). */
static uint16_t rd_packet_id(struct dec *d)
{
	uint16_t id = rd_u16(d);

	if (!d->rd.err && id == 0)
		PROTOCOL_ERROR(d, "Packet Identifier 0");
	return id;
}

/* ------------------------------------------------------------------------
 * Properties
 * ------------------------------------------------------------------------ */

static void *prop_field(struct mqtt_props *pr, const struct mqtt_prop_info *info)
{
	return (uint8_t *)pr + info->offset;
}

static const void *prop_field_c(const struct mqtt_props *pr, const struct mqtt_prop_info *info)
{
	return (const uint8_t *)pr + info->offset;
}

/* Reads one property value of `info` into `pr` (the identifier is read). */
static void read_prop_value(struct dec *d, struct mqtt_props *pr, const struct mqtt_prop_info *info)
{
	void *field = prop_field(pr, info);
	struct cfx_view v;
	uint32_t u;

	switch (info->type) {
	case MQTT_PT_BYTE:
		/* Every byte property is a boolean, or 0/1 valued (3.1.2.11, 3.2.2.3). */
		u = rd_u8(d);
		if (!d->rd.err && u > 1)
			PROTOCOL_ERROR(d, "property byte is neither 0 nor 1");
		*(uint8_t *)field = (uint8_t)u;
		break;
	case MQTT_PT_U16:
		u = rd_u16(d);
		if (!d->rd.err && u == 0 &&
		    (info->id == MQTT_PROP_ID_RECEIVE_MAXIMUM || info->id == MQTT_PROP_ID_TOPIC_ALIAS))
			PROTOCOL_ERROR(d, info->id == MQTT_PROP_ID_TOPIC_ALIAS ? "Topic Alias 0"
									   : "Receive Maximum 0");
		*(uint16_t *)field = (uint16_t)u;
		break;
	case MQTT_PT_U32:
		u = cfx_read_be32(&d->rd);
		if (!d->rd.err && u == 0 && info->id == MQTT_PROP_ID_MAXIMUM_PACKET_SIZE)
			PROTOCOL_ERROR(d, "Maximum Packet Size 0");
		*(uint32_t *)field = u;
		break;
	case MQTT_PT_VARINT:
		/* Only the Subscription Identifier: counted, 1 .. 268,435,455. */
		u = mqtt_read_varint(&d->rd);
		if (!d->rd.err && u == 0)
			PROTOCOL_ERROR(d, "Subscription Identifier 0");
		if (++pr->sub_id_count > MQTT_SUBSCRIPTION_IDS_MAX)
			fail(d, MQTT_RC_QUOTA_EXCEEDED, "too many Subscription Identifiers");
		break;
	case MQTT_PT_UTF8:
		v = rd_utf8(d, "truncated string property", "ill-formed UTF-8 in a property");
		*(struct cfx_view *)field = v;
		break;
	case MQTT_PT_BINARY:
		v = rd_binary(d, "truncated binary property");
		*(struct cfx_view *)field = v;
		break;
	case MQTT_PT_PAIR:
		/* Only the User Property: counted, the views are read by iterators. */
		rd_utf8(d, "truncated User Property", "ill-formed UTF-8 in a User Property name");
		rd_utf8(d, "truncated User Property", "ill-formed UTF-8 in a User Property value");
		if (++pr->user_prop_count > MQTT_USER_PROPERTIES_MAX)
			fail(d, MQTT_RC_QUOTA_EXCEEDED, "too many User Properties");
		break;
	default:
		CFX_ASSERT(!"property type");
	}
}

/*
 * Reads a property list (2.2.2): its length, then properties until that
 * length is used up. `pk` is the MQTT_PK() bit of the packet (or
 * MQTT_PK_WILL). While the list is read the reader's end is pulled in to
 * the list's end, so that no value runs past it.
 */
static void read_props(struct dec *d, struct mqtt_props *pr, unsigned pk)
{
	uint32_t n = mqtt_read_varint(&d->rd);
	size_t body_len = d->rd.len;

	if (d->rd.err)
		return;
	if (n > cfx_reader_left(&d->rd)) {
		MALFORMED(d, "Property Length beyond the end of the packet");
		return;
	}
	pr->raw = (struct cfx_view){ d->rd.p + d->rd.pos, n };
	d->rd.len = d->rd.pos + n;
	while (!d->rd.err && d->rd.pos < d->rd.len) {
		uint32_t id = mqtt_read_varint(&d->rd);
		const struct mqtt_prop_info *info = mqtt_prop_lookup(id);

		if (d->rd.err)
			break;
		if (!info) {
			MALFORMED(d, "unknown property identifier");
			break;
		}
		if (!(info->packets & pk)) {
			PROTOCOL_ERROR(d, "property not allowed in this packet");
			break;
		}
		if (!prop_is_repeatable(id) && (pr->present & (1ull << id))) {
			PROTOCOL_ERROR(d, "property included more than once");
			break;
		}
		pr->present |= 1ull << id;
		read_prop_value(d, pr, info);
	}
	if (!d->rd.err)
		d->rd.len = body_len;
}

/* Checks shared by every property list that may carry these properties. */
static void check_props(struct dec *d, const struct mqtt_props *pr)
{
	/* 3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3 */
	if ((pr->present & MQTT_PROP_BIT(AUTHENTICATION_DATA)) &&
	    !(pr->present & MQTT_PROP_BIT(AUTHENTICATION_METHOD)))
		PROTOCOL_ERROR(d, "Authentication Data without an Authentication Method");
	/* 3.3.2.3.5: a Response Topic is a topic name. */
	if ((pr->present & MQTT_PROP_BIT(RESPONSE_TOPIC)) &&
	    mqtt_topic_name_check(pr->response_topic))
		fail(d, MQTT_RC_TOPIC_NAME_INVALID, "Response Topic is not a valid topic name");
}

/* ------------------------------------------------------------------------
 * Packet decoders
 *
 * Each reads the body of one packet type from d->rd; mqtt_decode has
 * checked the fixed header and will check that nothing is left over.
 * ------------------------------------------------------------------------ */

/* CONNECT (3.1) */
static void dec_connect(struct dec *d, struct mqtt_connect *c)
{
	struct cfx_view name;
	uint8_t level, flags;

	/* CONNECT: Protocol Name, Protocol Level */
	name = rd_utf8(d, "truncated Protocol Name", "ill-formed UTF-8 in the Protocol Name");
	level = rd_u8(d);
	if (d->rd.err)
		return;
	d->connect_version = level;
	if (cfx_view_eq_str(name, "MQIsdp") && level == MQTT_V31) {
		fail(d, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, "MQTT 3.1 (MQIsdp) is not supported");
		return;
	}
	if (!cfx_view_eq_str(name, "MQTT")) {
		fail(d, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, "unknown Protocol Name");
		return;
	}
	if (level != MQTT_V311 && level != MQTT_V5) {
		fail(d, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, "unsupported Protocol Level");
		return;
	}
	c->version = d->version = level;

	/* CONNECT: Connect Flags, Keep Alive */
	flags = rd_u8(d);
	c->keep_alive_s = rd_u16(d);
	if (d->rd.err)
		return;
	c->clean_start = (flags >> 1) & 1;
	c->has_will = (flags >> 2) & 1;
	c->will.qos = (flags >> 3) & 3;
	c->will.retain = (flags >> 5) & 1;
	c->has_password = (flags >> 6) & 1;
	c->has_username = (flags >> 7) & 1;
	if (flags & 0x01)
		MALFORMED(d, "CONNECT reserved flag set");
	else if (c->will.qos == 3)
		MALFORMED(d, "Will QoS 3");
	else if (!c->has_will && (c->will.qos || c->will.retain))
		MALFORMED(d, "Will QoS or Will Retain without a Will Flag");
	else if (level == MQTT_V311 && c->has_password && !c->has_username)
		MALFORMED(d, "Password Flag without User Name Flag");

	/* CONNECT: Properties (v5) */
	if (is_v5(d)) {
		read_props(d, &c->props, MQTT_PK(CONNECT));
		check_props(d, &c->props);
	}

	/* CONNECT payload: Client Identifier, Will Properties, Will Topic,
	 * Will Payload, User Name, Password */
	c->client_id = rd_utf8(d, "truncated Client Identifier",
			       "ill-formed UTF-8 in the Client Identifier");
	if (c->has_will) {
		if (is_v5(d)) {
			read_props(d, &c->will.props, MQTT_PK_WILL);
			check_props(d, &c->will.props);
		}
		c->will.topic = rd_utf8(d, "truncated Will Topic",
					"ill-formed UTF-8 in the Will Topic");
		c->will.payload = rd_binary(d, "truncated Will Payload");
		if (!d->rd.err && mqtt_topic_name_check(c->will.topic))
			fail(d, MQTT_RC_TOPIC_NAME_INVALID, "Will Topic is not a valid topic name");
	}
	if (c->has_username)
		c->username = rd_utf8(d, "truncated User Name", "ill-formed UTF-8 in the User Name");
	if (c->has_password)
		c->password = rd_binary(d, "truncated Password");

	/* 3.1.1 section 3.1.3.1: an empty id is for a clean session only. */
	if (level == MQTT_V311 && c->client_id.len == 0 && !c->clean_start)
		fail(d, MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID,
		     "empty Client Identifier without Clean Session");
}

/* CONNACK (3.2) */
static void dec_connack(struct dec *d, struct mqtt_connack *ca)
{
	uint8_t flags = rd_u8(d), code = rd_u8(d);
	int reason;

	if (d->rd.err)
		return;
	if (flags & 0xfe) {
		MALFORMED(d, "CONNACK reserved flags set");
		return;
	}
	ca->session_present = flags & 1;
	if (is_v5(d)) {
		reason = code;
		if (!mqtt_reason_is_allowed(MQTT_CONNACK, code))
			PROTOCOL_ERROR(d, "reason code not allowed in CONNACK");
		read_props(d, &ca->props, MQTT_PK(CONNACK));
		check_props(d, &ca->props);
	} else {
		reason = mqtt_connack_reason_of_v311(code);
		if (reason < 0) {
			PROTOCOL_ERROR(d, "unknown CONNACK return code");
			return;
		}
	}
	ca->reason = (uint8_t)reason;
	if (ca->session_present && ca->reason != MQTT_RC_SUCCESS)
		PROTOCOL_ERROR(d, "Session Present in a refusing CONNACK");
}

/* PUBLISH (3.3) */
static void dec_publish(struct dec *d, struct mqtt_publish *pub)
{
	pub->dup = (d->flags >> 3) & 1;
	pub->qos = (d->flags >> 1) & 3;
	pub->retain = d->flags & 1;
	if (pub->qos == 3) {
		MALFORMED(d, "PUBLISH QoS 3");
		return;
	}
	if (pub->qos == 0 && pub->dup) {
		MALFORMED(d, "DUP flag on a QoS 0 PUBLISH");
		return;
	}

	/* PUBLISH: Topic Name, Packet Identifier (QoS 1, 2), Properties (v5) */
	pub->topic = rd_utf8(d, "truncated Topic Name", "ill-formed UTF-8 in the Topic Name");
	if (pub->qos)
		pub->packet_id = rd_packet_id(d);
	if (is_v5(d)) {
		read_props(d, &pub->props, MQTT_PK(PUBLISH));
		check_props(d, &pub->props);
	}
	if (d->rd.err)
		return;

	if (pub->topic.len == 0) {
		/* 3.3.2.1 (3.1.1: 4.7.3): empty only if a Topic Alias stands in. */
		if (!is_v5(d))
			fail(d, MQTT_RC_TOPIC_NAME_INVALID, "empty Topic Name");
		else if (!(pub->props.present & MQTT_PROP_BIT(TOPIC_ALIAS)))
			PROTOCOL_ERROR(d, "empty Topic Name without a Topic Alias");
	} else if (mqtt_topic_name_check(pub->topic)) {
		fail(d, MQTT_RC_TOPIC_NAME_INVALID, "wildcard in a Topic Name");
	}
	/* 3.3.4: subscription identifiers travel only from server to client. */
	if (d->dir == MQTT_FROM_CLIENT && pub->props.sub_id_count)
		PROTOCOL_ERROR(d, "Subscription Identifier in a PUBLISH from a client");

	/* PUBLISH payload: the rest */
	pub->payload.len = cfx_reader_left(&d->rd);
	pub->payload.p = cfx_read_bytes(&d->rd, pub->payload.len, NULL);
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7) */
static void dec_ack(struct dec *d, struct mqtt_ack *ack)
{
	/* Packet Identifier, then in v5 an optional Reason Code and an
	 * optional property list: 2 bytes mean Success, 3 no properties. */
	ack->packet_id = rd_packet_id(d);
	if (!is_v5(d) || d->rd.err || cfx_reader_left(&d->rd) == 0)
		return;
	ack->reason = rd_u8(d);
	if (!mqtt_reason_is_allowed(d->type, ack->reason)) {
		PROTOCOL_ERROR(d, "reason code not allowed in this acknowledgement");
		return;
	}
	if (cfx_reader_left(&d->rd))
		read_props(d, &ack->props, 1u << d->type);
}

/* Reads and checks one SUBSCRIBE or UNSUBSCRIBE entry. */
static void dec_topic_entry(struct dec *d)
{
	struct cfx_view filter, share, topic_filter;
	uint8_t opts = 0;
	int shared;

	filter = rd_utf8(d, "truncated Topic Filter", "ill-formed UTF-8 in a Topic Filter");
	if (d->type == MQTT_SUBSCRIBE)
		opts = rd_u8(d);
	if (d->rd.err)
		return;
	if (mqtt_topic_filter_parse(filter, &share, &topic_filter)) {
		fail(d, MQTT_RC_TOPIC_FILTER_INVALID,
		     is_share_filter(filter) ? "invalid shared subscription" : "invalid Topic Filter");
		return;
	}
	if (d->type != MQTT_SUBSCRIBE)
		return;

	/* Subscription Options (3.8.3.1): QoS in bits 0-1; v5 adds No Local
	 * (2), Retain As Published (3), Retain Handling (4-5); the rest is
	 * reserved. */
	shared = share.len > 0;
	if (!is_v5(d)) {
		if (opts & 0xfc)
			MALFORMED(d, "reserved Subscription Options bits set");
		else if ((opts & 3) == 3)
			MALFORMED(d, "subscription QoS 3");
		return;
	}
	if (opts & 0xc0)
		MALFORMED(d, "reserved Subscription Options bits set");
	else if ((opts & 3) == 3)
		PROTOCOL_ERROR(d, "subscription QoS 3");
	else if (((opts >> 4) & 3) == 3)
		PROTOCOL_ERROR(d, "Retain Handling 3");
	else if (shared && (opts & 0x04))
		PROTOCOL_ERROR(d, "No Local on a shared subscription");
}

/* SUBSCRIBE (3.8), UNSUBSCRIBE (3.10) */
static void dec_subscribe(struct dec *d, struct mqtt_subscribe *sub)
{
	/* Packet Identifier, Properties (v5), then the entries */
	sub->packet_id = rd_packet_id(d);
	if (is_v5(d)) {
		read_props(d, &sub->props, 1u << d->type);
		if (sub->props.sub_id_count > 1)
			PROTOCOL_ERROR(d, "more than one Subscription Identifier in SUBSCRIBE");
	}
	if (d->rd.err)
		return;
	sub->raw = (struct cfx_view){ d->rd.p + d->rd.pos, cfx_reader_left(&d->rd) };
	while (!d->rd.err && cfx_reader_left(&d->rd)) {
		if (sub->topic_count == MQTT_SUBSCRIBE_TOPICS_MAX) {
			fail(d, MQTT_RC_QUOTA_EXCEEDED, "too many Topic Filters in one packet");
			return;
		}
		dec_topic_entry(d);
		sub->topic_count++;
	}
	if (!d->rd.err && sub->topic_count == 0)
		PROTOCOL_ERROR(d, "no Topic Filter in the packet");
}

/* SUBACK (3.9), UNSUBACK (3.11) */
static void dec_suback(struct dec *d, struct mqtt_suback *sa)
{
	sa->packet_id = rd_packet_id(d);
	if (d->type == MQTT_UNSUBACK && !is_v5(d))
		return; /* 3.1.1: the packet identifier only */
	if (is_v5(d))
		read_props(d, &sa->props, 1u << d->type);
	if (d->rd.err)
		return;
	sa->reasons.len = cfx_reader_left(&d->rd);
	sa->reasons.p = cfx_read_bytes(&d->rd, sa->reasons.len, NULL);
	if (sa->reasons.len == 0) {
		PROTOCOL_ERROR(d, "acknowledgement without a reason code");
		return;
	}
	if (sa->reasons.len > MQTT_SUBSCRIBE_TOPICS_MAX) {
		fail(d, MQTT_RC_QUOTA_EXCEEDED, "too many reason codes in one packet");
		return;
	}
	for (size_t i = 0; i < sa->reasons.len; i++) {
		uint8_t rc = sa->reasons.p[i];
		int ok = is_v5(d) ? mqtt_reason_is_allowed(d->type, rc)
				  : rc <= 2 || rc == MQTT_RC_UNSPECIFIED_ERROR;

		if (!ok) {
			PROTOCOL_ERROR(d, "reason code not allowed in this acknowledgement");
			return;
		}
	}
}

/* DISCONNECT (3.14), AUTH (3.15) */
static void dec_disconnect(struct dec *d, struct mqtt_disconnect *dc)
{
	if (!is_v5(d))
		return; /* 3.1.1: no variable header */
	/* An omitted Reason Code means Success; an omitted property list none. */
	if (cfx_reader_left(&d->rd)) {
		dc->reason = rd_u8(d);
		if (!mqtt_reason_is_allowed(d->type, dc->reason)) {
			PROTOCOL_ERROR(d, "reason code not allowed in this packet");
			return;
		}
		if (cfx_reader_left(&d->rd)) {
			read_props(d, &dc->props, 1u << d->type);
			check_props(d, &dc->props);
		}
		/* 3.15.2.2.2: every AUTH but the empty short form names its method. */
		if (d->type == MQTT_AUTH && !d->rd.err &&
		    !(dc->props.present & MQTT_PROP_BIT(AUTHENTICATION_METHOD)))
			PROTOCOL_ERROR(d, "AUTH without an Authentication Method");
	}
	/* 3.14.2.2.2 */
	if (d->type == MQTT_DISCONNECT && d->dir == MQTT_FROM_SERVER &&
	    (dc->props.present & MQTT_PROP_BIT(SESSION_EXPIRY_INTERVAL)))
		PROTOCOL_ERROR(d, "Session Expiry Interval in a DISCONNECT from the server");
}

/* ------------------------------------------------------------------------
 * Framing and dispatch
 * ------------------------------------------------------------------------ */

int mqtt_frame_check(const uint8_t *p, size_t len, size_t packet_bytes_max, size_t *frame_bytes)
{
	uint32_t v = 0;
	size_t header_bytes = 0, total;

	/* Byte 0 is the type and flags; the Remaining Length starts at 1. */
	for (unsigned i = 0; i < MQTT_VARINT_BYTES_MAX; i++) {
		uint8_t b;

		if (len < 2 + i)
			return CFX_NEED_MORE;
		b = p[1 + i];
		v |= (uint32_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (i > 0 && b == 0)
				return CFX_EPARSE; /* overlong */
			header_bytes = 2 + i;
			break;
		}
	}
	if (!header_bytes)
		return CFX_EPARSE; /* a fifth length byte */
	total = header_bytes + v;
	if (total > packet_bytes_max)
		return CFX_E2BIG;
	if (len < total)
		return CFX_NEED_MORE;
	*frame_bytes = total;
	return 0;
}

int mqtt_decode(const uint8_t *p, size_t len, int version, enum mqtt_dir dir,
		struct mqtt_packet *pkt, struct mqtt_err *err)
{
	struct cfx_reader hr = cfx_reader_make(p, len);
	struct dec d = { .reason = MQTT_RC_MALFORMED_PACKET };
	const struct type_info *ti;
	uint8_t b0;
	uint32_t rl;

	CFX_ASSERT(version == 0 || version == MQTT_V311 || version == MQTT_V5);
	CFX_ASSERT(dir == MQTT_FROM_CLIENT || (dir == MQTT_FROM_SERVER && version != 0));
	memset(pkt, 0, sizeof *pkt);
	*err = (struct mqtt_err){ 0 };

	/* Fixed header: type and flags, Remaining Length */
	b0 = cfx_read_u8(&hr);
	rl = mqtt_read_varint(&hr);
	d.rd = cfx_reader_make(hr.err ? p : p + hr.pos, hr.err ? 0 : rl);
	d.version = (uint8_t)version;
	d.dir = (uint8_t)dir;
	d.type = b0 >> 4;
	d.flags = b0 & 0x0f;
	pkt->type = d.type;
	ti = &types[d.type];
	if (hr.err)
		MALFORMED(&d, hr.err_desc);
	else if (rl != len - hr.pos)
		MALFORMED(&d, "Remaining Length does not match the packet's size");
	else if (d.type == 0)
		MALFORMED(&d, "reserved packet type 0");
	else if (version == 0 && d.type != MQTT_CONNECT)
		PROTOCOL_ERROR(&d, "first packet is not CONNECT");
	else if (version == MQTT_V311 && ti->v5_only)
		MALFORMED(&d, "AUTH is reserved in MQTT 3.1.1");
	else if (ti->flags >= 0 && d.flags != ti->flags)
		MALFORMED(&d, "invalid fixed header flags");
	else if (!(ti->dir & dir))
		PROTOCOL_ERROR(&d, "packet type not sent in this direction");
	else if (version != 0 && d.type == MQTT_CONNECT)
		PROTOCOL_ERROR(&d, "second CONNECT");
	if (d.rd.err)
		goto out;

	switch (d.type) {
	case MQTT_CONNECT:
		dec_connect(&d, &pkt->connect);
		break;
	case MQTT_CONNACK:
		dec_connack(&d, &pkt->connack);
		break;
	case MQTT_PUBLISH:
		dec_publish(&d, &pkt->publish);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		dec_ack(&d, &pkt->ack);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		dec_subscribe(&d, &pkt->subscribe);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		dec_suback(&d, &pkt->suback);
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		dec_disconnect(&d, &pkt->disconnect);
		break;
	default:
		break; /* PINGREQ, PINGRESP: nothing after the header */
	}
	if (!d.rd.err && cfx_reader_left(&d.rd))
		MALFORMED(&d, "bytes after the end of the packet");
out:
	if (!d.rd.err)
		return 0;
	err->reason = d.reason;
	err->version = d.connect_version;
	err->desc = d.rd.err_desc ? d.rd.err_desc : "malformed packet";
	return CFX_EPARSE;
}

/* ------------------------------------------------------------------------
 * Iterators
 *
 * Over a decoded list, values come from `raw`, which the decoder has
 * validated: the reads cannot fail, but a failure would only end the walk.
 * ------------------------------------------------------------------------ */

void mqtt_prop_iter_init(struct mqtt_prop_iter *it, const struct mqtt_props *props)
{
	it->props = props;
	it->rd = cfx_reader_make(props->raw.p, props->raw.len);
	it->i = 0;
}

/* Skips the value of a property of `type` (its identifier is read). */
static void skip_prop_value(struct cfx_reader *rd, int type)
{
	switch (type) {
	case MQTT_PT_BYTE:
		cfx_read_skip(rd, 1);
		break;
	case MQTT_PT_U16:
		cfx_read_skip(rd, 2);
		break;
	case MQTT_PT_U32:
		cfx_read_skip(rd, 4);
		break;
	case MQTT_PT_VARINT:
		mqtt_read_varint(rd);
		break;
	case MQTT_PT_PAIR:
		cfx_read_skip(rd, cfx_read_be16(rd));
		/* fall through */
	default:
		cfx_read_skip(rd, cfx_read_be16(rd));
		break;
	}
}

/* Moves the iterator's reader to just after the next identifier `want`;
 * returns 1, or 0 at the end of the list. */
static int raw_seek(struct mqtt_prop_iter *it, uint32_t want)
{
	while (!it->rd.err && cfx_reader_left(&it->rd)) {
		uint32_t id = mqtt_read_varint(&it->rd);
		const struct mqtt_prop_info *info = mqtt_prop_lookup(id);

		if (it->rd.err || !info)
			return 0;
		if (id == want)
			return 1;
		skip_prop_value(&it->rd, info->type);
	}
	return 0;
}

static struct cfx_view raw_string(struct cfx_reader *rd)
{
	struct cfx_view v = { NULL, 0 };
	uint16_t n = cfx_read_be16(rd);

	v.p = cfx_read_bytes(rd, n, NULL);
	v.len = v.p ? n : 0;
	return v;
}

int mqtt_props_next_user(struct mqtt_prop_iter *it, struct mqtt_user_prop *up)
{
	const struct mqtt_props *pr = it->props;

	if (it->i >= pr->user_prop_count)
		return 0;
	if (pr->user_props) {
		*up = pr->user_props[it->i++];
		return 1;
	}
	if (!raw_seek(it, MQTT_PROP_ID_USER_PROPERTY))
		return 0;
	up->name = raw_string(&it->rd);
	up->value = raw_string(&it->rd);
	if (it->rd.err)
		return 0;
	it->i++;
	return 1;
}

int mqtt_props_next_sub_id(struct mqtt_prop_iter *it, uint32_t *sub_id)
{
	const struct mqtt_props *pr = it->props;

	if (it->i >= pr->sub_id_count)
		return 0;
	if (pr->sub_ids) {
		*sub_id = pr->sub_ids[it->i++];
		return 1;
	}
	if (!raw_seek(it, MQTT_PROP_ID_SUBSCRIPTION_IDENTIFIER))
		return 0;
	*sub_id = mqtt_read_varint(&it->rd);
	if (it->rd.err)
		return 0;
	it->i++;
	return 1;
}

uint32_t mqtt_props_first_sub_id(const struct mqtt_props *props)
{
	struct mqtt_prop_iter it;
	uint32_t id = 0;

	mqtt_prop_iter_init(&it, props);
	return mqtt_props_next_sub_id(&it, &id) ? id : 0;
}

void mqtt_topic_iter_init(struct mqtt_topic_iter *it, int type, const struct mqtt_subscribe *sub)
{
	CFX_ASSERT(type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE);
	it->sub = sub;
	it->rd = cfx_reader_make(sub->raw.p, sub->raw.len);
	it->i = 0;
	it->type = (uint8_t)type;
}

int mqtt_topic_next(struct mqtt_topic_iter *it, struct mqtt_subscription *e)
{
	const struct mqtt_subscribe *sub = it->sub;
	uint8_t opts;

	if (it->i >= sub->topic_count)
		return 0;
	if (sub->topics) {
		*e = sub->topics[it->i];
		if (it->type != MQTT_SUBSCRIBE)
			e->qos = e->no_local = e->retain_as_published = e->retain_handling = 0;
	} else {
		memset(e, 0, sizeof *e);
		e->filter = raw_string(&it->rd);
		opts = it->type == MQTT_SUBSCRIBE ? cfx_read_u8(&it->rd) : 0;
		if (it->rd.err)
			return 0;
		e->qos = opts & 3;
		e->no_local = (opts >> 2) & 1;
		e->retain_as_published = (opts >> 3) & 1;
		e->retain_handling = (opts >> 4) & 3;
	}
	(void)mqtt_topic_filter_parse(e->filter, &e->share_name, &e->topic_filter);
	it->i++;
	return 1;
}

/* ------------------------------------------------------------------------
 * Equality
 * ------------------------------------------------------------------------ */

static int props_equal(const struct mqtt_props *a, const struct mqtt_props *b)
{
	struct mqtt_prop_iter ia, ib;
	struct mqtt_user_prop ua, ub;
	uint32_t sa, sb;
	uint64_t singles = a->present & ~PROP_BITS_REPEATABLE;

	if (singles != (b->present & ~PROP_BITS_REPEATABLE))
		return 0;
	for (uint32_t id = 0; id <= PROP_ID_MAX; id++) {
		const struct mqtt_prop_info *info = mqtt_prop_lookup(id);
		const void *fa, *fb;

		if (!info || !(singles & (1ull << id)))
			continue;
		fa = prop_field_c(a, info);
		fb = prop_field_c(b, info);
		switch (info->type) {
		case MQTT_PT_BYTE:
			if (*(const uint8_t *)fa != *(const uint8_t *)fb)
				return 0;
			break;
		case MQTT_PT_U16:
			if (*(const uint16_t *)fa != *(const uint16_t *)fb)
				return 0;
			break;
		case MQTT_PT_U32:
			if (*(const uint32_t *)fa != *(const uint32_t *)fb)
				return 0;
			break;
		default:
			if (!cfx_view_eq(*(const struct cfx_view *)fa, *(const struct cfx_view *)fb))
				return 0;
			break;
		}
	}
	if (a->user_prop_count != b->user_prop_count || a->sub_id_count != b->sub_id_count)
		return 0;
	mqtt_prop_iter_init(&ia, a);
	mqtt_prop_iter_init(&ib, b);
	for (uint32_t i = 0; i < a->user_prop_count; i++) {
		if (!mqtt_props_next_user(&ia, &ua) || !mqtt_props_next_user(&ib, &ub))
			return 0;
		if (!cfx_view_eq(ua.name, ub.name) || !cfx_view_eq(ua.value, ub.value))
			return 0;
	}
	mqtt_prop_iter_init(&ia, a);
	mqtt_prop_iter_init(&ib, b);
	for (uint32_t i = 0; i < a->sub_id_count; i++) {
		if (!mqtt_props_next_sub_id(&ia, &sa) || !mqtt_props_next_sub_id(&ib, &sb) ||
		    sa != sb)
			return 0;
	}
	return 1;
}

static int topics_equal(int type, const struct mqtt_subscribe *a, const struct mqtt_subscribe *b)
{
	struct mqtt_topic_iter ia, ib;
	struct mqtt_subscription ea, eb;

	if (a->topic_count != b->topic_count)
		return 0;
	mqtt_topic_iter_init(&ia, type, a);
	mqtt_topic_iter_init(&ib, type, b);
	for (uint32_t i = 0; i < a->topic_count; i++) {
		if (!mqtt_topic_next(&ia, &ea) || !mqtt_topic_next(&ib, &eb))
			return 0;
		if (!cfx_view_eq(ea.filter, eb.filter) || !cfx_view_eq(ea.share_name, eb.share_name) ||
		    !cfx_view_eq(ea.topic_filter, eb.topic_filter) || ea.qos != eb.qos ||
		    ea.no_local != eb.no_local || ea.retain_as_published != eb.retain_as_published ||
		    ea.retain_handling != eb.retain_handling)
			return 0;
	}
	return 1;
}

static int will_equal(const struct mqtt_will *a, const struct mqtt_will *b)
{
	return a->qos == b->qos && a->retain == b->retain && cfx_view_eq(a->topic, b->topic) &&
	       cfx_view_eq(a->payload, b->payload) && props_equal(&a->props, &b->props);
}

int mqtt_packet_equal(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case MQTT_CONNECT: {
		const struct mqtt_connect *x = &a->connect, *y = &b->connect;

		return x->version == y->version && x->clean_start == y->clean_start &&
		       x->has_will == y->has_will && x->has_username == y->has_username &&
		       x->has_password == y->has_password && x->keep_alive_s == y->keep_alive_s &&
		       props_equal(&x->props, &y->props) && cfx_view_eq(x->client_id, y->client_id) &&
		       (!x->has_will || will_equal(&x->will, &y->will)) &&
		       (!x->has_username || cfx_view_eq(x->username, y->username)) &&
		       (!x->has_password || cfx_view_eq(x->password, y->password));
	}
	case MQTT_CONNACK:
		return a->connack.session_present == b->connack.session_present &&
		       a->connack.reason == b->connack.reason &&
		       props_equal(&a->connack.props, &b->connack.props);
	case MQTT_PUBLISH: {
		const struct mqtt_publish *x = &a->publish, *y = &b->publish;

		return x->dup == y->dup && x->qos == y->qos && x->retain == y->retain &&
		       (x->qos == 0 || x->packet_id == y->packet_id) &&
		       cfx_view_eq(x->topic, y->topic) &&
		       props_equal(&x->props, &y->props) && cfx_view_eq(x->payload, y->payload);
	}
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		return a->ack.packet_id == b->ack.packet_id && a->ack.reason == b->ack.reason &&
		       props_equal(&a->ack.props, &b->ack.props);
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		return a->subscribe.packet_id == b->subscribe.packet_id &&
		       props_equal(&a->subscribe.props, &b->subscribe.props) &&
		       topics_equal(a->type, &a->subscribe, &b->subscribe);
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		return a->suback.packet_id == b->suback.packet_id &&
		       props_equal(&a->suback.props, &b->suback.props) &&
		       cfx_view_eq(a->suback.reasons, b->suback.reasons);
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		return a->disconnect.reason == b->disconnect.reason &&
		       props_equal(&a->disconnect.props, &b->disconnect.props);
	default:
		return 1;
	}
}

/* ------------------------------------------------------------------------
 * Encoding
 *
 * A struct enc either counts (wr == NULL) or appends. Each layout is
 * written once, as a put_* function, and run twice: the counting pass
 * gives the Remaining Length (and, nested, each Property Length) that the
 * writing pass puts in front.
 * ------------------------------------------------------------------------ */

struct enc {
	struct cfx_writer *wr; /* NULL: count only */
	size_t n;	       /* bytes counted or written */
};

static void put_bytes(struct enc *e, const void *p, size_t n)
{
	e->n += n;
	if (e->wr)
		cfx_write_bytes(e->wr, p, n);
}

static void put_u8(struct enc *e, uint8_t v)
{
	put_bytes(e, &v, 1);
}

static void put_u16(struct enc *e, uint16_t v)
{
	uint8_t b[2];

	cfx_store_be16(b, v);
	put_bytes(e, b, 2);
}

static void put_u32(struct enc *e, uint32_t v)
{
	uint8_t b[4];

	cfx_store_be32(b, v);
	put_bytes(e, b, 4);
}

static void put_varint(struct enc *e, uint32_t v)
{
	uint8_t b[MQTT_VARINT_BYTES_MAX];

	put_bytes(e, b, varint_encode(b, v));
}

/* UTF-8 Encoded String or Binary Data: the same layout. */
static void put_str(struct enc *e, struct cfx_view v)
{
	CFX_ASSERT(v.len <= MQTT_STRING_BYTES_MAX);
	put_u16(e, (uint16_t)v.len);
	put_bytes(e, v.p, v.len);
}

static void put_props_body(struct enc *e, const struct mqtt_props *pr)
{
	struct mqtt_prop_iter it;
	struct mqtt_user_prop up;
	uint32_t sub_id, i;

	for (uint32_t id = 0; id <= PROP_ID_MAX; id++) {
		const struct mqtt_prop_info *info = mqtt_prop_lookup(id);
		const void *f;

		if (!info)
			continue;
		if (id == MQTT_PROP_ID_SUBSCRIPTION_IDENTIFIER) {
			mqtt_prop_iter_init(&it, pr);
			for (i = 0; mqtt_props_next_sub_id(&it, &sub_id); i++) {
				CFX_ASSERT(sub_id > 0);
				put_varint(e, id);
				put_varint(e, sub_id);
			}
			CFX_ASSERT(i == pr->sub_id_count);
			continue;
		}
		if (id == MQTT_PROP_ID_USER_PROPERTY) {
			mqtt_prop_iter_init(&it, pr);
			for (i = 0; mqtt_props_next_user(&it, &up); i++) {
				put_varint(e, id);
				put_str(e, up.name);
				put_str(e, up.value);
			}
			CFX_ASSERT(i == pr->user_prop_count);
			continue;
		}
		if (!(pr->present & (1ull << id)))
			continue;
		f = prop_field_c(pr, info);
		put_varint(e, id);
		switch (info->type) {
		case MQTT_PT_BYTE:
			put_u8(e, *(const uint8_t *)f);
			break;
		case MQTT_PT_U16:
			put_u16(e, *(const uint16_t *)f);
			break;
		case MQTT_PT_U32:
			put_u32(e, *(const uint32_t *)f);
			break;
		default:
			put_str(e, *(const struct cfx_view *)f);
			break;
		}
	}
}

size_t mqtt_props_size(const struct mqtt_props *props)
{
	struct enc c = { NULL, 0 };

	put_props_body(&c, props);
	return c.n;
}

/* Property Length, then the properties. */
static void put_props(struct enc *e, const struct mqtt_props *pr)
{
	size_t n = mqtt_props_size(pr);

	CFX_ASSERT(n <= MQTT_VARINT_MAX);
	put_varint(e, (uint32_t)n);
	put_props_body(e, pr);
}

static void put_connect(struct enc *e, const struct mqtt_connect *c)
{
	int v5 = c->version == MQTT_V5;
	uint8_t flags = 0;

	CFX_ASSERT(c->version == MQTT_V311 || c->version == MQTT_V5);
	CFX_ASSERT(v5 || c->has_username || !c->has_password);
	if (c->has_will) {
		CFX_ASSERT(c->will.qos <= 2);
		flags |= 0x04 | (uint8_t)(c->will.qos << 3) | (c->will.retain ? 0x20 : 0);
	}
	flags |= (c->clean_start ? 0x02 : 0) | (c->has_password ? 0x40 : 0) |
		 (c->has_username ? 0x80 : 0);
	/* CONNECT: Protocol Name, Protocol Level, Connect Flags, Keep Alive */
	put_str(e, CFX_VIEW_STR("MQTT"));
	put_u8(e, c->version);
	put_u8(e, flags);
	put_u16(e, c->keep_alive_s);
	/* CONNECT: Properties */
	if (v5)
		put_props(e, &c->props);
	/* CONNECT: Client Identifier, Will Properties, Will Topic, Will
	 * Payload, User Name, Password */
	put_str(e, c->client_id);
	if (c->has_will) {
		if (v5)
			put_props(e, &c->will.props);
		put_str(e, c->will.topic);
		put_str(e, c->will.payload);
	}
	if (c->has_username)
		put_str(e, c->username);
	if (c->has_password)
		put_str(e, c->password);
}

static void put_connack(struct enc *e, int version, const struct mqtt_connack *ca)
{
	/* CONNACK: Acknowledge Flags, Reason Code / Return Code, Properties (v5) */
	put_u8(e, ca->session_present ? 1 : 0);
	if (version == MQTT_V5) {
		put_u8(e, ca->reason);
		put_props(e, &ca->props);
	} else {
		int rc = mqtt_connack_v311_code(ca->reason);

		CFX_ASSERT(rc >= 0);
		put_u8(e, (uint8_t)rc);
	}
}

static void put_publish(struct enc *e, int version, const struct mqtt_publish *pub)
{
	/* PUBLISH: Topic Name, Packet Identifier, Properties, Payload */
	put_str(e, pub->topic);
	if (pub->qos) {
		CFX_ASSERT(pub->packet_id != 0);
		put_u16(e, pub->packet_id);
	}
	if (version == MQTT_V5)
		put_props(e, &pub->props);
	put_bytes(e, pub->payload.p, pub->payload.len);
}

/* Reason Code and properties of the acks, DISCONNECT and AUTH, in their
 * shortest form: both left out for Success without properties, the
 * property list left out when empty. */
static void put_reason_and_props(struct enc *e, uint8_t reason, const struct mqtt_props *pr)
{
	size_t n = mqtt_props_size(pr);

	if (reason == 0 && n == 0)
		return;
	put_u8(e, reason);
	if (n)
		put_props(e, pr);
}

static void put_subscribe(struct enc *e, int version, int type, const struct mqtt_subscribe *sub)
{
	struct mqtt_topic_iter it;
	struct mqtt_subscription s;
	uint32_t i;

	CFX_ASSERT(sub->packet_id != 0);
	CFX_ASSERT(sub->topic_count >= 1);
	/* SUBSCRIBE / UNSUBSCRIBE: Packet Identifier, Properties (v5) */
	put_u16(e, sub->packet_id);
	if (version == MQTT_V5)
		put_props(e, &sub->props);
	/* Payload: Topic Filter (and Subscription Options), repeated */
	mqtt_topic_iter_init(&it, type, sub);
	for (i = 0; mqtt_topic_next(&it, &s); i++) {
		put_str(e, s.filter);
		if (type != MQTT_SUBSCRIBE)
			continue;
		CFX_ASSERT(s.qos <= 2 && s.retain_handling <= 2);
		if (version == MQTT_V5)
			put_u8(e, (uint8_t)(s.qos | (s.no_local ? 0x04 : 0) |
					    (s.retain_as_published ? 0x08 : 0) |
					    (s.retain_handling << 4)));
		else
			put_u8(e, s.qos);
	}
	CFX_ASSERT(i == sub->topic_count);
}

static void put_suback(struct enc *e, int version, int type, const struct mqtt_suback *sa)
{
	CFX_ASSERT(sa->packet_id != 0);
	/* SUBACK / UNSUBACK: Packet Identifier, Properties (v5), Reason Codes */
	put_u16(e, sa->packet_id);
	if (version == MQTT_V5) {
		put_props(e, &sa->props);
		put_bytes(e, sa->reasons.p, sa->reasons.len);
		return;
	}
	if (type == MQTT_UNSUBACK)
		return;
	for (size_t i = 0; i < sa->reasons.len; i++) {
		uint8_t rc = sa->reasons.p[i];

		put_u8(e, rc >= 0x80 ? 0x80 : rc);
	}
}

static void put_body(struct enc *e, int version, const struct mqtt_packet *pkt)
{
	switch (pkt->type) {
	case MQTT_CONNECT:
		put_connect(e, &pkt->connect);
		break;
	case MQTT_CONNACK:
		put_connack(e, version, &pkt->connack);
		break;
	case MQTT_PUBLISH:
		put_publish(e, version, &pkt->publish);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		/* Packet Identifier, then Reason Code and Properties (v5) */
		CFX_ASSERT(pkt->ack.packet_id != 0);
		put_u16(e, pkt->ack.packet_id);
		if (version == MQTT_V5)
			put_reason_and_props(e, pkt->ack.reason, &pkt->ack.props);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		put_subscribe(e, version, pkt->type, &pkt->subscribe);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		put_suback(e, version, pkt->type, &pkt->suback);
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		/* Reason Code, Properties (v5); nothing in 3.1.1 */
		if (version == MQTT_V5)
			put_reason_and_props(e, pkt->disconnect.reason, &pkt->disconnect.props);
		break;
	default:
		break; /* PINGREQ, PINGRESP */
	}
}

static uint8_t first_byte(const struct mqtt_packet *pkt)
{
	const struct type_info *ti = &types[pkt->type];
	const struct mqtt_publish *pub = &pkt->publish;

	if (ti->flags >= 0)
		return (uint8_t)(pkt->type << 4 | ti->flags);
	CFX_ASSERT(pub->qos <= 2);
	return (uint8_t)(pkt->type << 4 | (pub->dup ? 0x08 : 0) | pub->qos << 1 |
			 (pub->retain ? 0x01 : 0));
}

size_t mqtt_encode(struct cfx_writer *wr, int version, const struct mqtt_packet *pkt)
{
	struct enc c = { NULL, 0 }, w = { wr, 0 };
	size_t start = wr->len;

	CFX_ASSERT(pkt->type >= MQTT_CONNECT && pkt->type <= MQTT_AUTH);
	if (pkt->type == MQTT_CONNECT)
		version = pkt->connect.version;
	CFX_ASSERT(version == MQTT_V311 || version == MQTT_V5);
	CFX_ASSERT(version == MQTT_V5 || !types[pkt->type].v5_only);

	put_body(&c, version, pkt);
	CFX_ASSERT(c.n <= MQTT_REMAINING_LENGTH_MAX);
	/* Fixed header: type and flags, Remaining Length */
	cfx_write_u8(wr, first_byte(pkt));
	mqtt_write_varint(wr, (uint32_t)c.n);
	put_body(&w, version, pkt);
	CFX_ASSERT(w.n == c.n);
	return wr->len - start;
}

size_t mqtt_encode_connect(struct cfx_writer *wr, const struct mqtt_connect *c)
{
	struct mqtt_packet pkt = { .type = MQTT_CONNECT, .connect = *c };

	return mqtt_encode(wr, c->version, &pkt);
}

size_t mqtt_encode_connack(struct cfx_writer *wr, int version, const struct mqtt_connack *ca)
{
	struct mqtt_packet pkt = { .type = MQTT_CONNACK, .connack = *ca };

	return mqtt_encode(wr, version, &pkt);
}

size_t mqtt_encode_publish(struct cfx_writer *wr, int version, const struct mqtt_publish *pub)
{
	struct mqtt_packet pkt = { .type = MQTT_PUBLISH, .publish = *pub };

	return mqtt_encode(wr, version, &pkt);
}

size_t mqtt_encode_ack(struct cfx_writer *wr, int version, int type, const struct mqtt_ack *ack)
{
	struct mqtt_packet pkt = { .type = (uint8_t)type, .ack = *ack };

	CFX_ASSERT(type >= MQTT_PUBACK && type <= MQTT_PUBCOMP);
	return mqtt_encode(wr, version, &pkt);
}

size_t mqtt_encode_subscribe(struct cfx_writer *wr, int version, int type,
			     const struct mqtt_subscribe *sub)
{
	struct mqtt_packet pkt = { .type = (uint8_t)type, .subscribe = *sub };

	CFX_ASSERT(type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE);
	return mqtt_encode(wr, version, &pkt);
}

size_t mqtt_encode_suback(struct cfx_writer *wr, int version, int type,
			  const struct mqtt_suback *sa)
{
	struct mqtt_packet pkt = { .type = (uint8_t)type, .suback = *sa };

	CFX_ASSERT(type == MQTT_SUBACK || type == MQTT_UNSUBACK);
	return mqtt_encode(wr, version, &pkt);
}

size_t mqtt_encode_disconnect(struct cfx_writer *wr, int version, int type,
			      const struct mqtt_disconnect *d)
{
	struct mqtt_packet pkt = { .type = (uint8_t)type, .disconnect = *d };

	CFX_ASSERT(type == MQTT_DISCONNECT || type == MQTT_AUTH);
	return mqtt_encode(wr, version, &pkt);
}

size_t mqtt_encode_ping(struct cfx_writer *wr, int type)
{
	struct mqtt_packet pkt = { .type = (uint8_t)type };

	CFX_ASSERT(type == MQTT_PINGREQ || type == MQTT_PINGRESP);
	return mqtt_encode(wr, MQTT_V311, &pkt);
}
