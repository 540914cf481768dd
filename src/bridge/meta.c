/*
 * meta.c - buses, rules and targets: validation, the compiled pattern set
 * of each bus, and meta/eventbridge.json (replaced atomically on every
 * change, under the write lock, so that the file and memory agree).
 *
 * A change is validated fully and built aside first; only then is it
 * swapped in and saved. A failed save undoes it.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>

#include "base/base64.h"
#include "base/err.h"
#include "base/fileops.h"
#include "base/log.h"
#include "bridge/bridge_int.h"
#include "store/format.h"

#define DESCRIPTION_MAX 512
#define HEADERS_MAX 32
#define HEADER_BYTES_MAX 4096

/* ------------------------------------------------------------------------
 * Small checks
 * ------------------------------------------------------------------------ */

static int fail(char *err, size_t len, const char *fmt, ...) CFX_PRINTF(3, 4);
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return CFX_EINVAL;
}

/* Names of buses, rules and targets: as topic names, without '%'. */
static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > CFX_BRIDGE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
			return false;
	return true;
}

/* Refuses members other than `allowed`. */
static int only(json_t *o, const char *const *allowed, const char *what, char *err, size_t len)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v)
	{
		int ok = 0;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, key);
		if (!ok)
			return fail(err, len, "%s: unknown field \"%s\"", what, key);
	}
	return 0;
}

static int get_name(json_t *def, const char *what, const char **out, char *err, size_t len)
{
	json_t *v = json_object_get(def, "name");

	if (!json_is_string(v) || !name_ok(json_string_value(v)))
		return fail(err, len, "%s: \"name\" must be 1 to %d characters of a-z A-Z 0-9 . _ -",
			    what, CFX_BRIDGE_NAME_MAX);
	*out = json_string_value(v);
	return 0;
}

static int check_description(json_t *def, const char *what, char *err, size_t len)
{
	json_t *v = json_object_get(def, "description");

	if (v && (!json_is_string(v) || strlen(json_string_value(v)) > DESCRIPTION_MAX))
		return fail(err, len, "%s: \"description\" must be a string of at most %d bytes",
			    what, DESCRIPTION_MAX);
	return 0;
}

/* A non-negative integer member within [min, max]; absent: dflt. */
static int get_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t dflt,
		   int64_t *out, const char *what, char *err, size_t len)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return fail(err, len, "%s: \"%s\" must be an integer from %lld to %lld", what, key,
			    (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

/* ------------------------------------------------------------------------
 * Targets
 * ------------------------------------------------------------------------ */

void bridge__target_free(struct target *t)
{
	if (!t)
		return;
	json_decref(t->def);
	SSL_CTX_free(t->ssl_ctx);
	cfx_free(t->extra_headers);
	cfx_free(t->threads);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	cfx_free(t);
}

/* "http://host[:port][/path]" */
static int parse_url(struct target *t, const char *url, char *err, size_t len)
{
	const char *p, *host, *slash, *colon;
	size_t hl;

	int tls = !strncasecmp(url, "https://", 8);

	if (!tls && strncasecmp(url, "http://", 7))
		return fail(err, len, "target %s: \"url\" must start with http:// or https://",
			    t->name);
	host = url + (tls ? 8 : 7);
	slash = strchr(host, '/');
	p = slash ? slash : host + strlen(host);
	colon = memchr(host, ':', (size_t)(p - host));
	hl = (size_t)((colon ? colon : p) - host);
	if (hl == 0 || hl >= sizeof t->host)
		return fail(err, len, "target %s: \"url\" has no host", t->name);
	memcpy(t->host, host, hl);
	t->host[hl] = 0;
	t->port = tls ? 443 : 80;
	if (tls) {
		/* TLS 1.2+, the system's CAs (or the target's ca_file, loaded by the caller). */
		t->ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (!t->ssl_ctx)
			return fail(err, len, "target %s: no TLS context", t->name);
		SSL_CTX_set_min_proto_version(t->ssl_ctx, TLS1_2_VERSION);
		SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_default_verify_paths(t->ssl_ctx);
	}
	if (colon) {
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if (end != p || port < 1 || port > 65535)
			return fail(err, len, "target %s: bad port in \"url\"", t->name);
		t->port = (int)port;
	}
	if (strlen(slash ? slash : "/") >= sizeof t->path)
		return fail(err, len, "target %s: \"url\" path too long", t->name);
	snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/");
	for (const char *c = t->path; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return fail(err, len, "target %s: \"url\" path has spaces or control "
				    "characters", t->name);
	return 0;
}

static bool header_text_ok(const char *s, int name)
{
	if (!*s)
		return !name ? true : false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || (name && (c == ':' || c == ' ')))
			return false;
	}
	return true;
}

static void append(char **buf, size_t *n, const char *fmt, ...) CFX_PRINTF(3, 4);
static void append(char **buf, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	*buf = cfx_realloc(*buf, *n + (size_t)k + 1);
	va_start(ap, fmt);
	vsnprintf(*buf + *n, (size_t)k + 1, fmt, ap);
	va_end(ap);
	*n += (size_t)k;
}

static int parse_http(struct target *t, json_t *def, char *err, size_t len)
{
	const char *url = json_string_value(json_object_get(def, "url"));
	const char *mode = json_string_value(json_object_get(def, "mode"));
	json_t *hdrs = json_object_get(def, "headers"), *auth = json_object_get(def, "auth"), *v;
	const char *key;
	size_t n = 0;
	int64_t to = 0;
	int rc;

	const char *ca = json_string_value(json_object_get(def, "ca_file"));

	if (!url)
		return fail(err, len, "target %s: an http target needs \"url\"", t->name);
	if ((rc = parse_url(t, url, err, len)))
		return rc;
	if (json_object_get(def, "ca_file")) {
		if (!ca || !t->ssl_ctx)
			return fail(err, len, "target %s: \"ca_file\" is the path of PEM CA "
				    "certificates, for an https url", t->name);
		if (SSL_CTX_load_verify_locations(t->ssl_ctx, ca, NULL) != 1)
			return fail(err, len, "target %s: cannot load CA certificates from %s",
				    t->name, ca);
	}
	if (mode && strcmp(mode, "binary") && strcmp(mode, "structured"))
		return fail(err, len, "target %s: \"mode\" is binary or structured", t->name);
	t->structured = mode && !strcmp(mode, "structured");
	if ((rc = get_int(def, "timeout_ms", 100, 600000, t->b->o.webhook_timeout_ms, &to,
			  t->name, err, len)))
		return rc;
	t->timeout_ms = to;
	if (hdrs && !json_is_object(hdrs))
		return fail(err, len, "target %s: \"headers\" is an object of strings", t->name);
	if (json_object_size(hdrs) > HEADERS_MAX)
		return fail(err, len, "target %s: at most %d headers", t->name, HEADERS_MAX);
	json_object_foreach(hdrs, key, v)
	{
		if (!json_is_string(v) || !header_text_ok(key, 1) ||
		    !header_text_ok(json_string_value(v), 0))
			return fail(err, len, "target %s: header \"%s\" is not a valid header", t->name,
				    key);
		if (!strcasecmp(key, "content-length") || !strcasecmp(key, "host") ||
		    !strcasecmp(key, "content-type") || !strncasecmp(key, "ce-", 3) ||
		    !strcasecmp(key, "connection") || !strcasecmp(key, "transfer-encoding"))
			return fail(err, len, "target %s: header \"%s\" is set by the delivery",
				    t->name, key);
		append(&t->extra_headers, &n, "%s: %s\r\n", key, json_string_value(v));
	}
	if (auth) {
		const char *type = json_string_value(json_object_get(auth, "type"));
		if (type && !strcmp(type, "basic")) {
			const char *u = json_string_value(json_object_get(auth, "user"));
			const char *p = json_string_value(json_object_get(auth, "password"));
			char raw[512], enc[700];
			if (!u || !p || strchr(u, ':') || snprintf(raw, sizeof raw, "%s:%s", u, p) >=
									   (int)sizeof raw)
				return fail(err, len, "target %s: basic auth needs \"user\" (without "
					    "':') and \"password\"", t->name);
			cfx_base64_encode((const uint8_t *)raw, strlen(raw), enc, sizeof enc);
			append(&t->extra_headers, &n, "Authorization: Basic %s\r\n", enc);
		} else if (type && !strcmp(type, "api_key")) {
			const char *h = json_string_value(json_object_get(auth, "header"));
			const char *val = json_string_value(json_object_get(auth, "value"));
			if (!h || !val || !header_text_ok(h, 1) || !header_text_ok(val, 0))
				return fail(err, len, "target %s: api_key auth needs \"header\" and "
					    "\"value\"", t->name);
			append(&t->extra_headers, &n, "%s: %s\r\n", h, val);
		} else {
			return fail(err, len, "target %s: \"auth\" type is basic or api_key", t->name);
		}
	}
	if (n > HEADER_BYTES_MAX)
		return fail(err, len, "target %s: headers longer than %d bytes", t->name,
			    HEADER_BYTES_MAX);
	return 0;
}

static int parse_retry(struct target *t, json_t *r, char *err, size_t len)
{
	static const char *const fields[] = { "strategy", "initial_ms", "max_ms", "interval_ms",
					      "max_attempts", "max_age_ms", NULL };
	const char *s = json_string_value(json_object_get(r, "strategy"));
	char what[CFX_BRIDGE_NAME_MAX + 16];
	int64_t v = 0;
	int rc;

	snprintf(what, sizeof what, "target %s: retry", t->name);
	if (r && !json_is_object(r))
		return fail(err, len, "%s must be an object", what);
	if (r && (rc = only(r, fields, what, err, len)))
		return rc;
	if (s && strcmp(s, "exponential") && strcmp(s, "backoff"))
		return fail(err, len, "%s: \"strategy\" is exponential or backoff", what);
	t->retry.strategy = s && !strcmp(s, "backoff") ? RETRY_BACKOFF : RETRY_EXPONENTIAL;
	if ((rc = get_int(r, "initial_ms", 10, 3600000, 1000, &t->retry.initial_ms, what, err,
			  len)) ||
	    (rc = get_int(r, "max_ms", 10, 86400000, 60000, &t->retry.max_ms, what, err, len)) ||
	    (rc = get_int(r, "interval_ms", 10, 86400000, 5000, &t->retry.interval_ms, what, err,
			  len)) ||
	    (rc = get_int(r, "max_attempts", 1, 1000, 10, &v, what, err, len)))
		return rc;
	t->retry.max_attempts = (uint32_t)v;
	if ((rc = get_int(r, "max_age_ms", 1000, 7LL * 86400000, 86400000, &t->retry.max_age_ms,
			  what, err, len)))
		return rc;
	if (t->retry.max_ms < t->retry.initial_ms)
		t->retry.max_ms = t->retry.initial_ms;
	return 0;
}

/* Builds a target from its definition (borrowed), or fails with err. */
static int target_build(struct cfx_bridge *b, json_t *def, struct target **out, char *err,
			size_t len)
{
	static const char *const fields[] = {
		"name", "description", "type", "url", "ca_file", "mode", "headers", "auth", "timeout_ms",
		"bus", "topic", "mqtt_topic", "retry", "dead_letter_topic", "concurrency",
		"queue_max", NULL
	};
	struct target *t;
	const char *name, *type, *dlq;
	int64_t v = 0;
	int rc;

	if (!json_is_object(def))
		return fail(err, len, "a target is a JSON object");
	if ((rc = get_name(def, "target", &name, err, len)) ||
	    (rc = only(def, fields, "target", err, len)) ||
	    (rc = check_description(def, "target", err, len)))
		return rc;
	t = cfx_calloc(1, sizeof *t);
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->b = b;
	snprintf(t->name, sizeof t->name, "%s", name);
	snprintf(t->topic, sizeof t->topic, "%%SYS%%EB%%T%%%s", name);
	type = json_string_value(json_object_get(def, "type"));
	if (!type) {
		rc = fail(err, len, "target %s: \"type\" is http, bus, topic or mqtt", name);
	} else if (!strcmp(type, "http")) {
		t->type = T_HTTP;
		rc = parse_http(t, def, err, len);
	} else if (!strcmp(type, "bus") || !strcmp(type, "topic") || !strcmp(type, "mqtt")) {
		const char *key = !strcmp(type, "bus") ? "bus" : !strcmp(type, "topic") ? "topic"
											  : "mqtt_topic";
		const char *d = json_string_value(json_object_get(def, key));
		t->type = !strcmp(type, "bus") ? T_BUS : !strcmp(type, "topic") ? T_TOPIC : T_MQTT;
		if (!d || !*d || strlen(d) >= sizeof t->dest)
			rc = fail(err, len, "target %s: a %s target needs \"%s\"", name, type, key);
		else if (t->type != T_MQTT && !cfx_topic_name_is_valid(CFX_VIEW_STR(d)))
			rc = fail(err, len, "target %s: \"%s\" is not a valid topic name", name, key);
		else if (t->type == T_MQTT && (strchr(d, '+') || strchr(d, '#')))
			rc = fail(err, len, "target %s: \"mqtt_topic\" has no wildcards", name);
		else
			snprintf(t->dest, sizeof t->dest, "%s", d);
	} else {
		rc = fail(err, len, "target %s: \"type\" is http, bus, topic or mqtt", name);
	}
	if (!rc)
		rc = parse_retry(t, json_object_get(def, "retry"), err, len);
	if (!rc)
		rc = get_int(def, "concurrency", 1, CONCURRENCY_MAX, 4, &v, name, err, len);
	if (!rc) {
		t->concurrency = (uint32_t)v;
		rc = get_int(def, "queue_max", 1, 100000000, QUEUE_MAX_DEFAULT, &v, name, err, len);
	}
	if (!rc) {
		t->queue_max = (uint64_t)v;
		dlq = json_string_value(json_object_get(def, "dead_letter_topic"));
		if (json_object_get(def, "dead_letter_topic") &&
		    (!dlq || !cfx_topic_name_is_valid(CFX_VIEW_STR(dlq)) ||
		     strlen(dlq) >= sizeof t->dlq))
			rc = fail(err, len, "target %s: \"dead_letter_topic\" is not a valid topic "
				  "name", name);
		else
			snprintf(t->dlq, sizeof t->dlq, dlq ? "%s" : "%%EB%%DLQ%%%s",
				 dlq ? dlq : name);
	}
	if (rc) {
		bridge__target_free(t);
		return rc;
	}
	t->def = json_deep_copy(def);
	*out = t;
	return 0;
}

struct target *bridge__target_find(struct cfx_bridge *b, const char *name)
{
	for (uint32_t i = 0; i < b->ntargets; i++)
		if (!strcmp(b->targets[i]->name, name))
			return b->targets[i];
	return NULL;
}

static bool target_in_use(struct cfx_bridge *b, const char *name)
{
	for (uint32_t i = 0; i < b->nbuses; i++)
		for (uint32_t k = 0; k < b->buses[i]->nrules; k++)
			for (uint32_t j = 0; j < b->buses[i]->rules[k]->ntargets; j++)
				if (!strcmp(b->buses[i]->rules[k]->targets[j].name, name))
					return true;
	return false;
}

/* ------------------------------------------------------------------------
 * Rules and buses
 * ------------------------------------------------------------------------ */

static void rule_free(struct rule *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->ntargets; i++)
		cfx_transform_free(r->targets[i].tf);
	json_decref(r->def);
	cfx_free(r);
}

void bridge__bus_free(struct bus *bus)
{
	if (!bus)
		return;
	for (uint32_t i = 0; i < bus->nrules; i++)
		rule_free(bus->rules[i]);
	cfx_free(bus->rules);
	cfx_pattern_set_free(bus->ps);
	json_decref(bus->def);
	cfx_free(bus);
}

struct bus *bridge__bus_find(struct cfx_bridge *b, const char *name)
{
	for (uint32_t i = 0; i < b->nbuses; i++)
		if (!strcmp(b->buses[i]->name, name))
			return b->buses[i];
	return NULL;
}

static int rule_build(struct cfx_bridge *b, const char *bus, json_t *def, struct rule **out,
		      char *err, size_t len)
{
	static const char *const fields[] = { "name", "description", "enabled", "pattern",
					      "targets", NULL };
	static const char *const tfields[] = { "target", "transform", NULL };
	json_t *pattern = json_object_get(def, "pattern"), *targets = json_object_get(def, "targets");
	json_t *en = json_object_get(def, "enabled"), *v;
	char what[2 * CFX_BRIDGE_NAME_MAX + 16], perr[512];
	const char *name;
	struct rule *r;
	char *text;
	size_t i;
	int rc;

	if (!json_is_object(def))
		return fail(err, len, "a rule is a JSON object");
	if ((rc = get_name(def, "rule", &name, err, len)) ||
	    (rc = only(def, fields, "rule", err, len)) ||
	    (rc = check_description(def, "rule", err, len)))
		return rc;
	snprintf(what, sizeof what, "rule %s", name);
	if (en && !json_is_boolean(en))
		return fail(err, len, "%s: \"enabled\" is true or false", what);
	if (!json_is_object(pattern))
		return fail(err, len, "%s: \"pattern\" must be a JSON object", what);
	text = json_dumps(pattern, JSON_COMPACT);
	rc = text ? cfx_pattern_validate(text, strlen(text), perr, sizeof perr) : CFX_ENOMEM;
	free(text);
	if (rc)
		return fail(err, len, "%s: pattern: %s", what, perr);
	if (!json_is_array(targets) || json_array_size(targets) == 0 ||
	    json_array_size(targets) > RULE_TARGETS_MAX)
		return fail(err, len, "%s: \"targets\" is an array of 1 to %d targets", what,
			    RULE_TARGETS_MAX);
	r = cfx_calloc(1, sizeof *r);
	snprintf(r->name, sizeof r->name, "%s", name);
	r->enabled = !en || json_is_true(en);
	json_array_foreach(targets, i, v)
	{
		const char *tn = json_string_value(json_object_get(v, "target"));
		json_t *tf = json_object_get(v, "transform");
		if (!json_is_object(v) || (rc = only(v, tfields, what, err, len))) {
			if (!rc)
				rc = fail(err, len, "%s: each target is {\"target\": NAME, "
					  "\"transform\"?: {...}}", what);
			break;
		}
		if (!tn || !bridge__target_find(b, tn)) {
			rc = fail(err, len, "%s: target \"%s\" does not exist", what, tn ? tn : "");
			break;
		}
		snprintf(r->targets[r->ntargets].name, sizeof r->targets[0].name, "%s", tn);
		if (tf) {
			char terr[512];
			text = json_is_object(tf) ? json_dumps(tf, JSON_COMPACT) : NULL;
			rc = text ? cfx_transform_new(text, strlen(text), &r->targets[r->ntargets].tf,
						      terr, sizeof terr)
				  : CFX_EINVAL;
			if (!text)
				snprintf(terr, sizeof terr, "must be a JSON object");
			free(text);
			if (rc) {
				rc = fail(err, len, "%s: target %s: transform: %s", what, tn, terr);
				r->ntargets++;
				break;
			}
		}
		r->ntargets++;
	}
	if (rc) {
		rule_free(r);
		return rc;
	}
	CFX_UNUSED(bus);
	r->def = json_deep_copy(def);
	if (!en)
		json_object_set_new(r->def, "enabled", json_true());
	*out = r;
	return 0;
}

/* Compiles the enabled rules of the bus into a new pattern set. */
static int bus_compile(struct bus *bus)
{
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	char err[256];

	for (uint32_t i = 0; i < bus->nrules; i++) {
		struct rule *r = bus->rules[i];
		char *text;
		int rc;
		r->id = i;
		if (!r->enabled)
			continue;
		text = json_dumps(json_object_get(r->def, "pattern"), JSON_COMPACT);
		rc = cfx_pattern_set_add(ps, i, text, strlen(text), err, sizeof err);
		free(text);
		if (rc) {
			cfx_log_error("eventbridge: bus %s, rule %s: %s", bus->name, r->name, err);
			cfx_pattern_set_free(ps);
			return rc;
		}
	}
	cfx_pattern_set_free(bus->ps);
	bus->ps = ps;
	return 0;
}

int bridge__bus_add(struct cfx_bridge *b, json_t *def, char *err, size_t len)
{
	static const char *const fields[] = { "name", "description", NULL };
	struct cfx_topic_info ti;
	const char *name;
	struct bus *bus;
	int rc;

	if (!json_is_object(def))
		return fail(err, len, "a bus is a JSON object");
	if ((rc = get_name(def, "bus", &name, err, len)) ||
	    (rc = only(def, fields, "bus", err, len)) ||
	    (rc = check_description(def, "bus", err, len)))
		return rc;
	if (bridge__bus_find(b, name))
		return CFX_EEXIST;
	if (b->nbuses >= BUSES_MAX)
		return fail(err, len, "at most %d buses", BUSES_MAX);
	rc = cfx_broker_topic_get(b->br, CFX_VIEW_STR(name), 0, &ti);
	if (rc == CFX_ENOENT)
		rc = cfx_broker_topic_create(b->br, name, CFX_MSG_NORMAL, BUS_QUEUES);
	if (rc && rc != CFX_EEXIST)
		return fail(err, len, "bus %s: its topic cannot be created: %s", name,
			    cfx_strerror(rc));
	bus = cfx_calloc(1, sizeof *bus);
	snprintf(bus->name, sizeof bus->name, "%s", name);
	snprintf(bus->group, sizeof bus->group, "%%SYS%%EB%%R%%%s", name);
	bus->def = json_deep_copy(def);
	bus->ps = cfx_pattern_set_new();
	if (b->nbuses == b->cap_buses) {
		b->cap_buses = b->cap_buses ? 2 * b->cap_buses : 8;
		b->buses = cfx_realloc(b->buses, b->cap_buses * sizeof *b->buses);
	}
	b->buses[b->nbuses++] = bus;
	/* The router starts at the end of the bus: events stored before it existed are history. */
	cfx_broker_subscribe(b->br, CFX_VIEW_STR(bus->group), CFX_VIEW_STR(name));
	return 0;
}

/* ------------------------------------------------------------------------
 * Persistence
 * ------------------------------------------------------------------------ */

int bridge__save(struct cfx_bridge *b)
{
	json_t *root = json_object(), *buses = json_array(), *rules = json_array(),
	       *targets = json_array();
	char path[4200];
	char *text;
	int rc;

	for (uint32_t i = 0; i < b->nbuses; i++) {
		struct bus *bus = b->buses[i];
		json_array_append(buses, bus->def);
		for (uint32_t k = 0; k < bus->nrules; k++) {
			json_t *r = json_deep_copy(bus->rules[k]->def);
			json_object_set_new(r, "bus", json_string(bus->name));
			json_array_append_new(rules, r);
		}
	}
	for (uint32_t i = 0; i < b->ntargets; i++)
		json_array_append(targets, b->targets[i]->def);
	json_object_set_new(root, "version", json_integer(BRIDGE_VERSION));
	json_object_set_new(root, "buses", buses);
	json_object_set_new(root, "targets", targets);
	json_object_set_new(root, "rules", rules);
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	if (!text)
		return CFX_ENOMEM;
	snprintf(path, sizeof path, "%s/%s", b->dir, BRIDGE_FILE);
	/* Targets may hold credentials (basic auth, API keys): private. */
	rc = cfx_write_file_atomic_mode(&cfx_fileops_real, path, text, strlen(text), 0600);
	free(text);
	if (rc) {
		cfx_log_error("eventbridge: cannot save %s: %s", path, strerror(-rc));
		return cfx_err_from_errno(-rc);
	}
	return 0;
}

static int rule_insert(struct cfx_bridge *b, struct bus *bus, struct rule *r)
{
	if (b->nrules_total >= RULES_MAX)
		return CFX_E2BIG;
	if (bus->nrules == bus->cap) {
		bus->cap = bus->cap ? 2 * bus->cap : 8;
		bus->rules = cfx_realloc(bus->rules, bus->cap * sizeof *bus->rules);
	}
	bus->rules[bus->nrules++] = r;
	b->nrules_total++;
	return 0;
}

int bridge__load(struct cfx_bridge *b)
{
	char path[4200], err[512];
	json_error_t jerr;
	json_t *root, *v;
	size_t i;
	int rc = 0;

	snprintf(path, sizeof path, "%s/%s", b->dir, BRIDGE_FILE);
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		FILE *f = fopen(path, "r");
		if (!f)
			return 0; /* none yet */
		fclose(f);
		cfx_log_error("eventbridge: %s: %s (line %d)", path, jerr.text, jerr.line);
		return CFX_ECORRUPT;
	}
	if (json_integer_value(json_object_get(root, "version")) != BRIDGE_VERSION) {
		json_decref(root);
		cfx_log_error("eventbridge: %s: unknown version", path);
		return CFX_EVERSION;
	}
	json_array_foreach(json_object_get(root, "buses"), i, v)
	{
		if ((rc = bridge__bus_add(b, v, err, sizeof err)))
			goto bad;
	}
	json_array_foreach(json_object_get(root, "targets"), i, v)
	{
		struct target *t;
		if ((rc = target_build(b, v, &t, err, sizeof err)))
			goto bad;
		if (b->ntargets == b->cap_targets) {
			b->cap_targets = b->cap_targets ? 2 * b->cap_targets : 8;
			b->targets = cfx_realloc(b->targets, b->cap_targets * sizeof *b->targets);
		}
		b->targets[b->ntargets++] = t;
	}
	json_array_foreach(json_object_get(root, "rules"), i, v)
	{
		const char *bn = json_string_value(json_object_get(v, "bus"));
		struct bus *bus = bn ? bridge__bus_find(b, bn) : NULL;
		json_t *def = json_deep_copy(v);
		struct rule *r;
		json_object_del(def, "bus");
		if (!bus) {
			json_decref(def);
			snprintf(err, sizeof err, "a rule of an unknown bus");
			rc = CFX_ECORRUPT;
			goto bad;
		}
		rc = rule_build(b, bn, def, &r, err, sizeof err);
		json_decref(def);
		if (rc || (rc = rule_insert(b, bus, r)))
			goto bad;
	}
	for (uint32_t k = 0; k < b->nbuses; k++)
		if ((rc = bus_compile(b->buses[k])))
			goto bad;
	json_decref(root);
	return 0;
bad:
	cfx_log_error("eventbridge: %s: %s", path, err);
	json_decref(root);
	return rc == CFX_EINVAL ? CFX_ECORRUPT : rc;
}

/* ------------------------------------------------------------------------
 * The API: buses
 * ------------------------------------------------------------------------ */

int cfx_bridge_bus_create(struct cfx_bridge *b, json_t *def, char *err, size_t err_len)
{
	int rc;

	err[0] = 0;
	pthread_rwlock_wrlock(&b->lock);
	rc = bridge__bus_add(b, def, err, err_len);
	if (!rc && (rc = bridge__save(b))) {
		bridge__bus_free(b->buses[--b->nbuses]);
	}
	pthread_rwlock_unlock(&b->lock);
	if (!rc)
		bridge__router_wake(b);
	return rc;
}

int cfx_bridge_bus_delete(struct cfx_bridge *b, const char *name)
{
	struct bus *bus = NULL;
	uint32_t i;
	int rc;

	if (!strcmp(name, CFX_BRIDGE_DEFAULT_BUS))
		return CFX_EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	for (i = 0; i < b->nbuses; i++)
		if (!strcmp(b->buses[i]->name, name)) {
			bus = b->buses[i];
			break;
		}
	if (!bus) {
		pthread_rwlock_unlock(&b->lock);
		return CFX_ENOENT;
	}
	memmove(b->buses + i, b->buses + i + 1, (b->nbuses - i - 1) * sizeof *b->buses);
	b->nbuses--;
	if ((rc = bridge__save(b))) {
		memmove(b->buses + i + 1, b->buses + i, (b->nbuses - i) * sizeof *b->buses);
		b->buses[i] = bus;
		b->nbuses++;
		bus = NULL;
	} else {
		b->nrules_total -= bus->nrules;
		if (bus->watch)
			cfx_broker_unwatch(b->br, bus->watch);
	}
	pthread_rwlock_unlock(&b->lock);
	bridge__bus_free(bus);
	return rc;
}

static json_t *bus_json(struct bus *bus)
{
	json_t *j = json_deep_copy(bus->def);
	json_object_set_new(j, "rules", json_integer(bus->nrules));
	return j;
}

json_t *cfx_bridge_bus_get(struct cfx_bridge *b, const char *name)
{
	json_t *j = NULL;
	struct bus *bus;

	pthread_rwlock_rdlock(&b->lock);
	if ((bus = bridge__bus_find(b, name)))
		j = bus_json(bus);
	pthread_rwlock_unlock(&b->lock);
	return j;
}

json_t *cfx_bridge_bus_list(struct cfx_bridge *b)
{
	json_t *arr = json_array();

	pthread_rwlock_rdlock(&b->lock);
	for (uint32_t i = 0; i < b->nbuses; i++)
		json_array_append_new(arr, bus_json(b->buses[i]));
	pthread_rwlock_unlock(&b->lock);
	return arr;
}

bool cfx_bridge_bus_exists(struct cfx_bridge *b, const char *name)
{
	bool r;

	pthread_rwlock_rdlock(&b->lock);
	r = bridge__bus_find(b, name) != NULL;
	pthread_rwlock_unlock(&b->lock);
	return r;
}

/* ------------------------------------------------------------------------
 * The API: rules
 * ------------------------------------------------------------------------ */

int cfx_bridge_rule_put(struct cfx_bridge *b, const char *bus_name, json_t *def, int create,
			char *err, size_t err_len)
{
	struct rule *r, *old = NULL;
	struct bus *bus;
	uint32_t i;
	int rc;

	err[0] = 0;
	pthread_rwlock_wrlock(&b->lock);
	if (!(bus = bridge__bus_find(b, bus_name))) {
		pthread_rwlock_unlock(&b->lock);
		return CFX_ENOENT;
	}
	if ((rc = rule_build(b, bus_name, def, &r, err, err_len))) {
		pthread_rwlock_unlock(&b->lock);
		return rc;
	}
	for (i = 0; i < bus->nrules; i++)
		if (!strcmp(bus->rules[i]->name, r->name)) {
			old = bus->rules[i];
			break;
		}
	if (old && create) {
		pthread_rwlock_unlock(&b->lock);
		rule_free(r);
		return CFX_EEXIST;
	}
	if (old) {
		bus->rules[i] = r;
	} else if ((rc = rule_insert(b, bus, r))) {
		pthread_rwlock_unlock(&b->lock);
		rule_free(r);
		snprintf(err, err_len, "at most %d rules", RULES_MAX);
		return CFX_EINVAL;
	}
	rc = bus_compile(bus);
	if (!rc)
		rc = bridge__save(b);
	if (rc) { /* undo */
		if (old) {
			bus->rules[i] = old;
			old = r;
		} else {
			bus->nrules--;
			b->nrules_total--;
			old = r;
		}
		bus_compile(bus);
		if (!err[0])
			snprintf(err, err_len, "%s", cfx_strerror(rc));
	}
	pthread_rwlock_unlock(&b->lock);
	rule_free(old);
	return rc;
}

int cfx_bridge_rule_delete(struct cfx_bridge *b, const char *bus_name, const char *name)
{
	struct rule *r = NULL;
	struct bus *bus;
	uint32_t i;
	int rc;

	pthread_rwlock_wrlock(&b->lock);
	bus = bridge__bus_find(b, bus_name);
	for (i = 0; bus && i < bus->nrules; i++)
		if (!strcmp(bus->rules[i]->name, name)) {
			r = bus->rules[i];
			break;
		}
	if (!r) {
		pthread_rwlock_unlock(&b->lock);
		return CFX_ENOENT;
	}
	memmove(bus->rules + i, bus->rules + i + 1, (bus->nrules - i - 1) * sizeof *bus->rules);
	bus->nrules--;
	if ((rc = bus_compile(bus)) || (rc = bridge__save(b))) {
		memmove(bus->rules + i + 1, bus->rules + i, (bus->nrules - i) * sizeof *bus->rules);
		bus->rules[i] = r;
		bus->nrules++;
		bus_compile(bus);
		r = NULL;
	} else {
		b->nrules_total--;
	}
	pthread_rwlock_unlock(&b->lock);
	rule_free(r);
	return rc;
}

json_t *cfx_bridge_rule_get(struct cfx_bridge *b, const char *bus_name, const char *name)
{
	json_t *j = NULL;
	struct bus *bus;

	pthread_rwlock_rdlock(&b->lock);
	bus = bridge__bus_find(b, bus_name);
	for (uint32_t i = 0; bus && i < bus->nrules && !j; i++)
		if (!strcmp(bus->rules[i]->name, name)) {
			j = json_deep_copy(bus->rules[i]->def);
			json_object_set_new(j, "bus", json_string(bus->name));
		}
	pthread_rwlock_unlock(&b->lock);
	return j;
}

json_t *cfx_bridge_rule_list(struct cfx_bridge *b, const char *bus_name)
{
	json_t *arr = NULL;
	struct bus *bus;

	pthread_rwlock_rdlock(&b->lock);
	if ((bus = bridge__bus_find(b, bus_name))) {
		arr = json_array();
		for (uint32_t i = 0; i < bus->nrules; i++) {
			json_t *j = json_deep_copy(bus->rules[i]->def);
			json_object_set_new(j, "bus", json_string(bus->name));
			json_array_append_new(arr, j);
		}
	}
	pthread_rwlock_unlock(&b->lock);
	return arr;
}

/* ------------------------------------------------------------------------
 * The API: targets
 * ------------------------------------------------------------------------ */

int cfx_bridge_target_put(struct cfx_bridge *b, json_t *def, int create, char *err, size_t err_len)
{
	struct target *t, *old = NULL;
	struct cfx_topic_info ti;
	uint32_t i;
	int rc;

	err[0] = 0;
	if ((rc = target_build(b, def, &t, err, err_len)))
		return rc;
	/* Its deliveries' topic and group (one queue: a target is one queue of work). */
	rc = cfx_broker_topic_get(b->br, CFX_VIEW_STR(t->topic), 0, &ti);
	if (rc == CFX_ENOENT)
		rc = cfx_broker_topic_create(b->br, t->topic, CFX_MSG_NORMAL, 1);
	if (rc && rc != CFX_EEXIST) {
		snprintf(err, err_len, "target %s: its delivery topic cannot be created: %s", t->name,
			 cfx_strerror(rc));
		bridge__target_free(t);
		return rc;
	}
	pthread_rwlock_wrlock(&b->lock);
	for (i = 0; i < b->ntargets; i++)
		if (!strcmp(b->targets[i]->name, t->name)) {
			old = b->targets[i];
			break;
		}
	if (old && create) {
		pthread_rwlock_unlock(&b->lock);
		bridge__target_free(t);
		return CFX_EEXIST;
	}
	if (old) {
		b->targets[i] = t;
	} else if (b->ntargets >= TARGETS_MAX) {
		pthread_rwlock_unlock(&b->lock);
		bridge__target_free(t);
		snprintf(err, err_len, "at most %d targets", TARGETS_MAX);
		return CFX_EINVAL;
	} else {
		if (b->ntargets == b->cap_targets) {
			b->cap_targets = b->cap_targets ? 2 * b->cap_targets : 8;
			b->targets = cfx_realloc(b->targets, b->cap_targets * sizeof *b->targets);
		}
		b->targets[b->ntargets++] = t;
	}
	if ((rc = bridge__save(b))) {
		if (old)
			b->targets[i] = old;
		else
			b->ntargets--;
		old = t;
		t = NULL;
	}
	pthread_rwlock_unlock(&b->lock);
	/* Workers: the old ones stop (their deliveries stay queued), new ones start. */
	if (old) {
		bridge__target_stop(old);
		bridge__target_free(old);
	}
	if (t && b->started)
		bridge__target_start(b, t);
	return rc;
}

int cfx_bridge_target_delete(struct cfx_bridge *b, const char *name)
{
	struct target *t = NULL;
	uint32_t i;
	int rc;

	pthread_rwlock_wrlock(&b->lock);
	for (i = 0; i < b->ntargets; i++)
		if (!strcmp(b->targets[i]->name, name)) {
			t = b->targets[i];
			break;
		}
	if (!t) {
		pthread_rwlock_unlock(&b->lock);
		return CFX_ENOENT;
	}
	if (target_in_use(b, name)) {
		pthread_rwlock_unlock(&b->lock);
		return CFX_EEXIST;
	}
	memmove(b->targets + i, b->targets + i + 1, (b->ntargets - i - 1) * sizeof *b->targets);
	b->ntargets--;
	if ((rc = bridge__save(b))) {
		memmove(b->targets + i + 1, b->targets + i, (b->ntargets - i) * sizeof *b->targets);
		b->targets[i] = t;
		b->ntargets++;
		t = NULL;
	}
	pthread_rwlock_unlock(&b->lock);
	if (t) {
		bridge__target_stop(t);
		bridge__target_free(t);
	}
	return rc;
}

static json_t *target_json(struct cfx_bridge *b, struct target *t)
{
	json_t *j = json_deep_copy(t->def);
	struct cfx_group_queue_state qs = { 0 };
	uint64_t pending = 0;

	/* Credentials are not shown again. */
	json_t *auth = json_object_get(j, "auth");
	if (auth) {
		if (json_object_get(auth, "password"))
			json_object_set_new(auth, "password", json_string("***"));
		if (json_object_get(auth, "value"))
			json_object_set_new(auth, "value", json_string("***"));
	}
	if (cfx_broker_group_queue_state(b->br, CFX_VIEW_STR(t->topic), CFX_VIEW_STR(t->topic), 0,
					 &qs) == 0) {
		uint64_t start = 0, end = 0;
		cfx_store_queue_bounds(cfx_broker_store(b->br), CFX_VIEW_STR(t->topic), 0, &start,
				       &end);
		pending = end > qs.committed ? end - qs.committed : 0;
	}
	json_object_set_new(j, "dead_letter_topic", json_string(t->dlq));
	json_object_set_new(
		j, "stats",
		json_pack("{s:I, s:I, s:I, s:I}", "pending", (json_int_t)pending, "delivered",
			  (json_int_t)atomic_load(&t->delivered), "retried",
			  (json_int_t)atomic_load(&t->retried), "dead_lettered",
			  (json_int_t)atomic_load(&t->dead)));
	return j;
}

json_t *cfx_bridge_target_get(struct cfx_bridge *b, const char *name)
{
	json_t *j = NULL;
	struct target *t;

	pthread_rwlock_rdlock(&b->lock);
	if ((t = bridge__target_find(b, name)))
		j = target_json(b, t);
	pthread_rwlock_unlock(&b->lock);
	return j;
}

json_t *cfx_bridge_target_list(struct cfx_bridge *b)
{
	json_t *arr = json_array();

	pthread_rwlock_rdlock(&b->lock);
	for (uint32_t i = 0; i < b->ntargets; i++)
		json_array_append_new(arr, target_json(b, b->targets[i]));
	pthread_rwlock_unlock(&b->lock);
	return arr;
}
