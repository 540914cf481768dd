/*
 * cloudevent.h - the CloudEvents 1.0 codec: events as typed attributes plus
 * data bytes, read from and written to the JSON event format (structured
 * and batched modes), the HTTP binary mode, and the binary-mode attribute
 * lists of the Kafka, MQTT 5 and RocketMQ bindings.
 *
 * What it does: parse and validate (every rule of the specification that
 * can be checked on one event: required attributes, attribute names and
 * types, RFC 3339 times, URI and URI-reference syntax, RFC 2046 media
 * types, strict base64, UTF-8, size and nesting limits), encode back, and
 * compare. Every refusal fills a one-line message naming the attribute
 * (and, in a batch, the event) at fault.
 *
 * What it does not do: sockets, HTTP framing, storage, routing, event
 * patterns or transforms (src/events/pattern.*, transform.*), deduplication
 * of source+id. It is a pure library of bytes and jansson values.
 * See docs/design/events-cloudevents.md for the model, each mode's mapping
 * and the choices made where the specification leaves room.
 *
 * Facts come from CloudEvents 1.0.2: the core specification, the JSON event
 * format, and the HTTP, Kafka and MQTT protocol bindings; the RocketMQ
 * mapping follows the RocketMQ transport binding draft ("CE_" properties).
 *
 * @thread any: no global state.
 */
#ifndef CFX_EVENTS_CLOUDEVENT_H
#define CFX_EVENTS_CLOUDEVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------ */

/* The only specversion this codec reads and writes. */
#define CFX_CE_SPECVERSION "1.0"

/* Size of one event: the bytes of its attribute names and values plus its
 * data bytes (binding-neutral). The HTTP binding asks receivers to accept
 * at least 64 KiB; a deployment may configure more. */
#define CFX_CE_EVENT_BYTES_DEFAULT (64u * 1024)
/* One input document (a structured event or a whole batch), before parsing. */
#define CFX_CE_BODY_BYTES_DEFAULT   (1024u * 1024)
#define CFX_CE_BATCH_EVENTS_DEFAULT 1000u
/* Attributes of one event, the four required ones included. */
#define CFX_CE_ATTRS_DEFAULT 64u
/* Nesting of the data value of one event: `{}` and `[]` are depth 1. */
#define CFX_CE_DEPTH_DEFAULT 64u
/* Configured depth limits above this are a programmer error (jansson's own
 * parser recursion stops at 2048). */
#define CFX_CE_DEPTH_MAX 512u
/* Attribute names: the specification advises at most 20 characters (a
 * SHOULD); names up to CFX_CE_NAME_BYTES_MAX are accepted, longer refused. */
#define CFX_CE_NAME_BYTES_ADVISED 20u
#define CFX_CE_NAME_BYTES_MAX	  64u
/* The Integer type is a signed 32-bit value. */
#define CFX_CE_INT_MIN (-2147483647 - 1)
#define CFX_CE_INT_MAX 2147483647

struct cfx_ce_limits {
	size_t event_bytes_max;	 /* attribute names + values + data, bytes */
	size_t body_bytes_max;	 /* input document, bytes */
	size_t batch_events_max; /* events in one batch */
	size_t attrs_max;	 /* attributes in one event */
	size_t depth_max;	 /* nesting of `data`, levels (<= CFX_CE_DEPTH_MAX) */
};

/* Fills `lim` with the defaults above. */
void cfx_ce_limits_default(struct cfx_ce_limits *lim);

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

/*
 * The types of the specification's type system as the JSON format carries
 * them. The core attributes have fixed types (source URI_REF, dataschema
 * URI, time TIMESTAMP, the others STRING). An extension's type is what its
 * JSON value says: a string is STRING (the JSON format can tell no more),
 * true/false BOOL, an integer INT. In binary bindings every extension value
 * is a string, so it arrives as STRING.
 */
enum cfx_ce_type {
	CFX_CE_STRING,
	CFX_CE_BOOL,
	CFX_CE_INT,
	CFX_CE_URI,
	CFX_CE_URI_REF,
	CFX_CE_TIMESTAMP,
};

/* One attribute: its name and the canonical string encoding of its value
 * ("true"/"false", decimal integers without '+' or leading zeros, strings
 * as they came). Values never contain NUL or other control characters. */
struct cfx_ce_attr {
	char *name;	  /* [a-z0-9]+, NUL-terminated, owned */
	char *value;	  /* UTF-8, NUL-terminated, owned */
	size_t value_len; /* bytes, without the NUL */
	enum cfx_ce_type type;
};

/* Where the data bytes came from; decides nothing about equality. */
enum cfx_ce_data_kind {
	CFX_CE_DATA_NONE,
	CFX_CE_DATA_JSON,   /* a JSON `data` value: bytes are its compact serialization */
	CFX_CE_DATA_TEXT,   /* a JSON string `data` with a non-JSON datacontenttype */
	CFX_CE_DATA_BINARY, /* `data_base64`, or a binary-mode body */
};

/*
 * An event. attrs are in canonical order: specversion, id, source, type,
 * then datacontenttype, dataschema, subject, time when present, then the
 * extensions sorted by name. Names are unique.
 */
struct cfx_ce {
	struct cfx_ce_attr *attrs;
	size_t attrs_n;
	uint8_t *data;	 /* the data as a binary-mode body would carry it, owned */
	size_t data_len; /* bytes */
	bool has_data;	 /* false: no data at all (distinct from empty data) */
	enum cfx_ce_data_kind data_kind;
};

/* Releases what `ce` owns and zeroes it; `ce` itself is the caller's. */
void cfx_ce_free(struct cfx_ce *ce);

/* Frees `n` events and the array (as returned by cfx_ce_parse_batch). */
void cfx_ce_batch_free(struct cfx_ce *ces, size_t n);

/* The attribute named `name`, or NULL. Borrowed from `ce`. */
const struct cfx_ce_attr *cfx_ce_get(const struct cfx_ce *ce, const char *name);

/* The size of `ce` as limited by event_bytes_max. */
size_t cfx_ce_event_bytes(const struct cfx_ce *ce);

/* Equality flags. */
#define CFX_CE_EQ_EXT_AS_STRING 0x1u /* extension types may differ (binary bindings) */

/* 1 if `a` and `b` have the same attributes (names, values and, unless
 * flags say otherwise, types) and the same data bytes (has_data too). */
int cfx_ce_equal(const struct cfx_ce *a, const struct cfx_ce *b, unsigned flags);

/* ------------------------------------------------------------------------
 * Parsing
 *
 * Every parser returns 0 and fills *out, or a negative cfx_err and leaves
 * *out empty: CFX_EPARSE (invalid input), CFX_EMSGSIZE (an event over
 * event_bytes_max, a document over body_bytes_max, too many attributes or
 * too deep data), CFX_EBATCHSIZE (too many events in a batch). `err`
 * (may be NULL) receives a one-line message, e.g.
 * `time: not an RFC 3339 timestamp (month out of range)`. `lim` NULL means
 * the defaults. Input bytes are borrowed until return; nothing in *out
 * points into them.
 * ------------------------------------------------------------------------ */

/* One event in the JSON format (application/cloudevents+json). */
int cfx_ce_parse_structured(const uint8_t *body, size_t len, const struct cfx_ce_limits *lim,
			    struct cfx_ce *out, char *err, size_t err_len);

/*
 * A JSON batch (application/cloudevents-batch+json): all or nothing. On
 * success *out is a new array of *n events (NULL when the batch is empty),
 * released with cfx_ce_batch_free. A failure names the event by its index
 * in the array, from 0: `event 3 of the batch: missing required attribute
 * "source"`.
 */
int cfx_ce_parse_batch(const uint8_t *body, size_t len, const struct cfx_ce_limits *lim,
		       struct cfx_ce **out, size_t *n, char *err, size_t err_len);

/* A header, property or user property: a borrowed (name, value) view. */
struct cfx_ce_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/*
 * The HTTP binary mode: `ce-` headers (names case-insensitive) become
 * attributes after RFC 7230 quoted-string unescaping and one round of
 * percent-decoding; Content-Type becomes datacontenttype; a non-empty
 * body becomes the data (HTTP cannot tell an empty body from none). Other
 * headers are ignored. A `ce-datacontenttype` header, a repeated
 * attribute or a repeated Content-Type is refused.
 */
int cfx_ce_parse_http_binary(const struct cfx_ce_header *h, size_t n, const uint8_t *body,
			     size_t len, const struct cfx_ce_limits *lim, struct cfx_ce *out,
			     char *err, size_t err_len);

/* How an HTTP message carries its event(s), from its Content-Type. */
enum cfx_ce_mode {
	CFX_CE_MODE_BINARY,	 /* any other media type, or none */
	CFX_CE_MODE_STRUCTURED,	 /* application/cloudevents+json */
	CFX_CE_MODE_BATCH,	 /* application/cloudevents-batch+json */
	CFX_CE_MODE_UNSUPPORTED, /* application/cloudevents* in another format or
				    charset: the spec allows forwarding it as binary;
				    a receiver that parses answers 415 */
};

/* Media types compare case-insensitively; parameters are allowed, and a
 * charset parameter of a JSON mode must be UTF-8. `content_type` may be
 * NULL (no header). */
enum cfx_ce_mode cfx_ce_http_mode(const char *content_type, size_t len);

/* ------------------------------------------------------------------------
 * Binary bindings
 * ------------------------------------------------------------------------ */

/*
 * Attribute names per binding, and where datacontenttype travels (never in
 * the list cfx_ce_emit_attrs produces; the caller writes it):
 *
 *   binding   | attribute name     | value                  | datacontenttype in
 *   HTTP      | "ce-" + name       | percent-encoded        | Content-Type header
 *   KAFKA     | "ce_" + name       | as is (UTF-8)          | "content-type" header
 *   MQTT      | name (MQTT 5 user  | as is (UTF-8)          | the PUBLISH Content Type
 *             |   property)        |                        |   property (not a user property)
 *   ROCKETMQ  | "CE_" + name       | as is (UTF-8)          | "CE_contentType" property
 *
 * Conflux stores an event as a message with ROCKETMQ properties: the
 * event's data is the body.
 */
enum cfx_ce_binding {
	CFX_CE_BINDING_HTTP,
	CFX_CE_BINDING_KAFKA,
	CFX_CE_BINDING_MQTT,
	CFX_CE_BINDING_ROCKETMQ,
};

/* The header/property name that carries datacontenttype in `b`, or NULL
 * for MQTT (a packet property of its own). */
const char *cfx_ce_content_type_key(enum cfx_ce_binding b);

/*
 * The content type a binary-mode message of `ce` carries: datacontenttype
 * if set, else "application/json" when the data came from a JSON-format
 * `data` value (the JSON format implies it and the specification asks
 * translations to say so), else NULL. Borrowed from `ce` or static.
 */
const char *cfx_ce_binary_content_type(const struct cfx_ce *ce);

/*
 * Calls `emit` once per attribute of `ce` except datacontenttype, in
 * canonical order, with the name and value as binding `b` writes them
 * (NUL-terminated, valid until `emit` returns). A non-zero return of
 * `emit` stops the walk and is returned; otherwise 0.
 */
int cfx_ce_emit_attrs(const struct cfx_ce *ce, enum cfx_ce_binding b,
		      int (*emit)(void *ctx, const char *name, size_t nlen, const char *value,
				  size_t vlen),
		      void *ctx);

/*
 * Rebuilds an event from a binary-mode message of binding `b`: its
 * headers/properties `props` (those without the binding's prefix are not
 * CloudEvents metadata and are skipped; for MQTT, user properties whose
 * names are not attribute names), the content type (`content_type` NULL:
 * none) and the body (`has_data` false: no data, e.g. a Kafka record
 * without a value). Extension values come back as STRING; core attributes
 * keep their types. HTTP values are unquoted and percent-decoded. A
 * prefixed datacontenttype property is refused for HTTP and must agree
 * with `content_type` elsewhere. Errors as for the parsers above.
 */
int cfx_ce_from_props(enum cfx_ce_binding b, const struct cfx_ce_header *props, size_t n,
		      const char *content_type, size_t ct_len, const uint8_t *body, size_t len,
		      bool has_data, const struct cfx_ce_limits *lim, struct cfx_ce *out, char *err,
		      size_t err_len);

/* ------------------------------------------------------------------------
 * Encoding to the JSON format
 *
 * How data is written: when datacontenttype declares JSON (subtype `json`
 * or ending in `+json`) or is absent, and the data bytes are one JSON
 * value (UTF-8, no duplicate keys, nesting within CFX_CE_DEPTH_DEFAULT),
 * as `data` holding that value; when it is textual (type `text`, subtype
 * `xml` or ending in `+xml`) and the bytes are UTF-8, as a `data` string;
 * otherwise as `data_base64`. JSON data is written in jansson's compact form, so an
 * event read from the JSON format comes back byte for byte; JSON data
 * that arrived as other bytes (a binary-mode body with spaces) comes back
 * as the same JSON value in compact form.
 * ------------------------------------------------------------------------ */

/* The structured form as a new jansson object (a new reference), for rule
 * matching; attributes keep their JSON types. */
json_t *cfx_ce_to_json(const struct cfx_ce *ce);

/* The structured form as compact JSON text: a new NUL-terminated buffer of
 * *len bytes (len may be NULL), released with cfx_free. */
char *cfx_ce_to_structured(const struct cfx_ce *ce, size_t *len);

/* A JSON batch of `n` events, as cfx_ce_to_structured. */
char *cfx_ce_batch_to_json(const struct cfx_ce *ces, size_t n, size_t *len);

/* ------------------------------------------------------------------------
 * Checks, for other modules (patterns, transforms, the admin API)
 *
 * Each returns 0, or CFX_EPARSE with *why (may be NULL) set to a static
 * reason.
 * ------------------------------------------------------------------------ */

/* An attribute name: [a-z0-9]+, 1..CFX_CE_NAME_BYTES_MAX bytes, not "data". */
int cfx_ce_check_name(const char *s, size_t len, const char **why);
/* RFC 3339 date-time, strictly (ranges, month lengths, leap years and seconds). */
int cfx_ce_check_time(const char *s, size_t len, const char **why);
/* RFC 3986 URI-reference (absolute 0) or URI with a scheme (absolute 1). */
int cfx_ce_check_uri(const char *s, size_t len, int absolute, const char **why);
/* RFC 2046 media type with optional parameters. */
int cfx_ce_check_media_type(const char *s, size_t len, const char **why);

#endif
