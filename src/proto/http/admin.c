/*
 * admin.c - the routes of the admin HTTP API: status, topics, groups and
 * their positions, messages; and the /metrics route (rendered by
 * metrics.c). JSON in and out through jansson; docs/admin-api.md has the
 * shapes and examples.
 *
 * A request goes: http.c frames it -> admin_handle finds the route (404
 * for an unknown path, 405 with Allow for a known path and another method)
 * -> the route parses its parameters and body strictly (unknown fields,
 * wrong types and out-of-range numbers are 400, before any side effect) ->
 * it calls the broker and maps the broker's error with status_of_cfx, the
 * one place where cfx_err becomes an HTTP status.
 *
 * Most routes answer at once. POST /v1/groups/{g}/dlq/redrive waits for
 * sync appends: it defers its answer (http_response_defer), the broker's
 * completion posts it back to the connection's loop, and svc->deferred
 * counts such answers so that shutdown can wait for them. The EventBridge
 * routes (/v1/buses, /v1/targets, /v1/rules/test) live in events.c and
 * defer the same way (admin_int.h shares the context and helpers).
 *
 * Once users exist (docs/security.md), every route but /metrics asks who is
 * calling (Authorization: Bearer <token> or Basic) and whether that user
 * may (each route's resource and action in the table); /metrics is open
 * to loopback clients. A Basic password the auth thread must check defers
 * the answer until it has.
 */
#include "proto/http/admin.h"
#include "proto/http/admin_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "base/base64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#define MESSAGES_MAX 100		  /* messages in one answer ("count") */
#define LOOKUP_DEFAULT 16		  /* messages of an id or key lookup without "count" */
#define MESSAGES_BYTES_MAX (4u << 20)	  /* body bytes of one answer (at least one message) */
#define PARAM_BYTES_MAX 1024		  /* one decoded path or query parameter */
#define RETRY_ATTEMPTS_MAX 1000
#define RETRY_DELAY_MS_MAX (24LL * 3600 * 1000)
#define RETRY_MULTIPLIER_MAX 100.0
#define DLQ_LIST_DEFAULT 100		  /* dead letters listed without "max" */
#define DLQ_LIST_MAX 1000
#define DLQ_REDRIVE_MAX 100000		  /* dead letters one re-drive looks at (the default) */

/* ------------------------------------------------------------------------
 * Requests: context, errors, parameters, bodies
 * ------------------------------------------------------------------------ */

/* struct admin_ctx, struct admin_qparam: admin_int.h */

void admin__reply_cfx(struct admin_ctx *x, int rc, const char *what)
{
	switch (rc) {
	case CFX_ENOENT:
		http_response_error(x->resp, 404, "%s does not exist", what);
		break;
	case CFX_EEXIST:
		http_response_error(x->resp, 409, "%s already exists", what);
		break;
	case CFX_ETOPIC:
		http_response_error(x->resp, 400,
				    "invalid topic name: 1 to 127 characters of a-z A-Z 0-9 _ - %% |");
		break;
	case CFX_EINVAL:
	case CFX_EQUEUE:
	case CFX_ERANGE:
		http_response_error(x->resp, 400, "%s: %s", what, cfx_strerror(rc));
		break;
	case CFX_ENOSPC:
	case CFX_EFSYNC:
		http_response_error(x->resp, 503, "%s", cfx_strerror(rc));
		break;
	default:
		http_response_error(x->resp, 500, "%s: %s", what, cfx_strerror(rc));
		break;
	}
}

/* reply_cfx for an error about one named thing: `topic "orders"`. */
static void reply_about(struct admin_ctx *x, int rc, const char *kind, const char *name)
{
	char what[160];

	snprintf(what, sizeof what, "%s \"%s\"", kind, name);
	admin__reply_cfx(x, rc, what);
}

/* admin_int.h */
bool admin__allowed(struct admin_ctx *x, enum cfx_auth_resource res, const char *name,
		    unsigned action)
{
	struct cfx_auth *a = x->svc->o.auth;
	struct cfx_auth_peer peer;

	if (!a || !cfx_auth_enabled(a))
		return true;
	cfx_auth_peer_parse(x->req->peer, &peer);
	if (cfx_auth_authorize(a, x->user, res, name, name ? strlen(name) : 0, action, &peer) == 0)
		return true;
	cfx_auth_note_denial(a, CFX_AUTH_HTTP, x->req->peer, x->user, action, res, name,
			     name ? strlen(name) : 0);
	http_response_error(x->resp, 403, "%s may not %s %s%s%s", x->user ? x->user : "anonymous",
			    cfx_auth_action_name(action), cfx_auth_resource_name(res),
			    name ? " " : "", name ? name : "");
	return false;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes [p, p+n) into a new string; `plus` turns '+' into a
 * space (query strings). Returns NULL for a bad escape, an encoded NUL or
 * a result over PARAM_BYTES_MAX.
 */
static char *url_decode(const uint8_t *p, size_t n, int plus)
{
	char *out, *o;

	if (n > 3 * PARAM_BYTES_MAX)
		return NULL;
	out = o = cfx_malloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%') {
			int hi = i + 2 < n ? hexval(p[i + 1]) : -1, lo = i + 2 < n ? hexval(p[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				cfx_free(out);
				return NULL;
			}
			*o++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*o++ = plus && p[i] == '+' ? ' ' : (char)p[i];
		}
	}
	*o = '\0';
	if ((size_t)(o - out) > PARAM_BYTES_MAX) {
		cfx_free(out);
		return NULL;
	}
	return out;
}

/* Splits the query "a=1&b=2" into x->q. Returns 0, or -1 with a 400 set. */
static int parse_query(struct admin_ctx *x, struct cfx_view qs)
{
	size_t i = 0;

	while (i < qs.len) {
		size_t j = i, eq = SIZE_MAX;
		while (j < qs.len && qs.p[j] != '&') {
			if (qs.p[j] == '=' && eq == SIZE_MAX)
				eq = j;
			j++;
		}
		if (j > i) {
			size_t klen = (eq == SIZE_MAX ? j : eq) - i;
			char *k = url_decode(qs.p + i, klen, 1);
			char *v = eq == SIZE_MAX ? cfx_strdup("")
						 : url_decode(qs.p + eq + 1, j - eq - 1, 1);
			if (!k || !v) {
				cfx_free(k);
				cfx_free(v);
				http_response_error(x->resp, 400, "malformed query string");
				return -1;
			}
			for (uint32_t n = 0; n < x->nq; n++)
				if (!strcmp(x->q[n].key, k)) {
					http_response_error(x->resp, 400, "query parameter \"%s\" given twice",
							    k);
					cfx_free(k);
					cfx_free(v);
					return -1;
				}
			if (x->nq == ADMIN_QUERY_PARAMS_MAX) {
				cfx_free(k);
				cfx_free(v);
				http_response_error(x->resp, 400, "too many query parameters");
				return -1;
			}
			x->q[x->nq++] = (struct admin_qparam){ k, v };
		}
		i = j + 1;
	}
	return 0;
}

const char *admin__query_get(const struct admin_ctx *x, const char *key)
{
	for (uint32_t i = 0; i < x->nq; i++)
		if (!strcmp(x->q[i].key, key))
			return x->q[i].value;
	return NULL;
}

/* Refuses query parameters other than `allowed` (NULL-terminated). */
int admin__query_only(struct admin_ctx *x, const char *const *allowed)
{
	for (uint32_t i = 0; i < x->nq; i++) {
		int ok = 0;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, x->q[i].key);
		if (!ok) {
			http_response_error(x->resp, 400, "unknown query parameter \"%s\"", x->q[i].key);
			return -1;
		}
	}
	return 0;
}

/* A decimal integer query parameter in [min, max]. 0 = absent, 1 = set, -1 = 400 set. */
int admin__query_int(struct admin_ctx *x, const char *key, int64_t min, int64_t max,
		     int64_t *out)
{
	const char *s = admin__query_get(x, key);
	char *end;
	long long v;

	if (!s)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max) {
		http_response_error(x->resp, 400, "query parameter \"%s\" must be an integer from "
				    "%" PRId64 " to %" PRId64, key, min, max);
		return -1;
	}
	*out = v;
	return 1;
}

/*
 * The request body as a JSON object (new reference), or NULL with the
 * error answer set: 415 unless it is application/json, 400 if it does not
 * parse or is not an object or has members other than `allowed` (NULL:
 * any member).
 */
json_t *admin__body_object(struct admin_ctx *x, const char *const *allowed)
{
	struct cfx_view ct = x->req->content_type;
	json_error_t jerr;
	const char *key;
	json_t *o, *v;

	if (x->req->body.len == 0) {
		http_response_error(x->resp, 400, "a JSON object is required as the body");
		return NULL;
	}
	if (ct.len < 16 || strncasecmp((const char *)ct.p, "application/json", 16) ||
	    (ct.len > 16 && ct.p[16] != ';' && ct.p[16] != ' ')) {
		http_response_error(x->resp, 415, "the body must be JSON (Content-Type: "
				    "application/json)");
		return NULL;
	}
	o = json_loadb((const char *)x->req->body.p, x->req->body.len, JSON_REJECT_DUPLICATES,
		       &jerr);
	if (!o) {
		http_response_error(x->resp, 400, "malformed JSON at line %d, column %d: %s",
				    jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		http_response_error(x->resp, 400, "the body must be a JSON object");
		return NULL;
	}
	json_object_foreach(o, key, v)
	{
		int ok = !allowed; /* NULL: the caller checks the members */
		for (const char *const *a = allowed; a && *a && !ok; a++)
			ok = !strcmp(*a, key);
		if (!ok) {
			http_response_error(x->resp, 400, "unknown field \"%s\"", key);
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* An integer member in [min, max]. 0 = absent (or null), 1 = set, -1 = 400 set. */
int admin__member_int(struct admin_ctx *x, json_t *o, const char *key, int64_t min,
		      int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		http_response_error(x->resp, 400, "\"%s\" must be an integer from %" PRId64
				    " to %" PRId64, key, min, max);
		return -1;
	}
	*out = json_integer_value(v);
	return 1;
}

/* A string member. 0 = absent (or null), 1 = set, -1 = 400 set. */
int admin__member_str(struct admin_ctx *x, json_t *o, const char *key, const char **out)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		http_response_error(x->resp, 400, "\"%s\" must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

/* A boolean member. 0 = absent (or null), 1 = set, -1 = 400 set. */
int admin__member_bool(struct admin_ctx *x, json_t *o, const char *key, int *out)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		http_response_error(x->resp, 400, "\"%s\" must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 1;
}

/* Deferred answers, counted for admin_service_stop: admin_int.h */
struct http_later *admin__defer_begin(struct admin_ctx *x)
{
	struct admin_service *svc = x->svc;
	struct http_later *later = NULL;
	int stopping;

	pthread_mutex_lock(&svc->mu);
	stopping = svc->stopping;
	if (!stopping) {
		later = http_response_defer(x->resp);
		if (later)
			svc->deferred++;
	}
	pthread_mutex_unlock(&svc->mu);
	if (stopping)
		http_response_error(x->resp, 503, "the server is shutting down");
	else if (!later)
		http_response_error(x->resp, 500, "this request cannot wait for its answer here");
	return later;
}

void admin__defer_end(struct admin_service *svc)
{
	pthread_mutex_lock(&svc->mu);
	CFX_ASSERT(svc->deferred > 0);
	svc->deferred--;
	pthread_cond_broadcast(&svc->cv);
	pthread_mutex_unlock(&svc->mu);
}

/* ------------------------------------------------------------------------
 * JSON of broker objects
 * ------------------------------------------------------------------------ */

static json_t *topic_json(const struct cfx_topic_info *t)
{
	return json_pack("{s:s, s:s, s:I, s:I}", "name", t->name, "type",
			 cfx_msg_type_name(t->type), "queues", (json_int_t)t->queues, "created_ms",
			 (json_int_t)t->created_ms);
}

static json_t *retry_json(const struct cfx_retry_policy *p)
{
	json_t *o = json_pack("{s:I, s:s}", "max_attempts", (json_int_t)p->max_attempts, "kind",
			      p->kind == CFX_BACKOFF_EXPONENTIAL ? "exponential" : "customized");

	if (p->kind == CFX_BACKOFF_EXPONENTIAL) {
		json_object_set_new(o, "initial_ms", json_integer(p->initial_ms));
		json_object_set_new(o, "max_ms", json_integer(p->max_ms));
		json_object_set_new(o, "multiplier", json_real(p->multiplier));
	} else {
		json_t *steps = json_array();
		for (uint32_t i = 0; i < p->nsteps; i++)
			json_array_append_new(steps, json_integer(p->steps_ms[i]));
		json_object_set_new(o, "steps_ms", steps);
	}
	return o;
}

static json_t *group_json(const struct cfx_group_info *g)
{
	return json_pack("{s:s, s:b, s:o, s:I}", "name", g->name, "fifo", g->fifo, "retry",
			 retry_json(&g->retry), "created_ms", (json_int_t)g->created_ms);
}

static json_t *queue_state_json(uint32_t queue, const struct cfx_group_queue_state *st)
{
	uint64_t lag = st->end > st->committed ? st->end - st->committed : 0;

	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "queue", (json_int_t)queue, "committed",
			 (json_int_t)st->committed, "next", (json_int_t)st->next, "inflight",
			 (json_int_t)st->inflight, "end", (json_int_t)st->end, "lag",
			 (json_int_t)lag);
}

/* ------------------------------------------------------------------------
 * Group positions (also used by metrics.c)
 * ------------------------------------------------------------------------ */

struct pos_acc {
	struct admin_pos *v;
	size_t n, cap;
};

static void pos_add(void *arg, const char *group, const char *topic, uint32_t queue,
		    const struct cfx_group_queue_state *st)
{
	struct pos_acc *a = arg;

	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->v = cfx_realloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = (struct admin_pos){ cfx_strdup(group), cfx_strdup(topic), queue, *st };
}

static int pos_cmp(const void *pa, const void *pb)
{
	const struct admin_pos *a = pa, *b = pb;
	int c = strcmp(a->group, b->group);

	if (!c)
		c = strcmp(a->topic, b->topic);
	if (!c)
		c = a->queue < b->queue ? -1 : a->queue > b->queue;
	return c;
}

struct admin_pos *admin__positions(struct cfx_broker *br, struct cfx_view group, size_t *n)
{
	struct pos_acc a = { 0 };

	cfx_broker_group_positions(br, group, pos_add, &a);
	if (a.n)
		qsort(a.v, a.n, sizeof *a.v, pos_cmp);
	*n = a.n;
	return a.v;
}

void admin__positions_free(struct admin_pos *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cfx_free(v[i].group);
		cfx_free(v[i].topic);
	}
	cfx_free(v);
}

/* ------------------------------------------------------------------------
 * GET /v1/status
 * ------------------------------------------------------------------------ */

static void get_status(struct admin_ctx *x)
{
	struct admin_service *svc = x->svc;
	struct cfx_store_stats ss;
	json_t *lsn = json_object();

	cfx_store_get_stats(cfx_broker_store(x->br), &ss);
	for (uint32_t i = 0; i < svc->nlisteners; i++) {
		const struct admin_listener *l = &svc->listeners[i];
		json_object_set_new(lsn, l->name, l->addr[0] ? json_string(l->addr) : json_null());
	}
	http_response_json(
		x->resp, 200,
		json_pack("{s:s, s:s, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "version",
			  svc->version, "broker", svc->broker_name, "uptime_ms",
			  (json_int_t)(cfx_clock_mono_ms() - svc->start_mono_ms), "listeners", lsn,
			  "store", "log_start", (json_int_t)ss.log_start, "written_pos",
			  (json_int_t)ss.written_pos, "flushed_pos", (json_int_t)ss.flushed_pos,
			  "dispatched_pos", (json_int_t)ss.dispatched_pos, "log_bytes",
			  (json_int_t)ss.log_bytes, "segments", (json_int_t)ss.segments, "queues",
			  (json_int_t)ss.queues));
}

/* ------------------------------------------------------------------------
 * Topics
 * ------------------------------------------------------------------------ */

static void add_topic(void *arg, const struct cfx_topic_info *t)
{
	json_array_append_new(arg, topic_json(t));
}

static int by_name(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
		      json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/* Sorts an array of objects by their "name" (the broker keeps no order). */
static json_t *sorted_by_name(json_t *arr)
{
	size_t n = json_array_size(arr);
	json_t **v = cfx_malloc((n ? n : 1) * sizeof *v), *out = json_array();

	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof *v, by_name);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, v[i]);
	cfx_free(v);
	json_decref(arr);
	return out;
}

static void list_topics(struct admin_ctx *x)
{
	json_t *arr = json_array();

	cfx_broker_topic_foreach(x->br, add_topic, arr);
	http_response_json(x->resp, 200, json_pack("{s:o}", "topics", sorted_by_name(arr)));
}

/* The topic named by the path; 0, or -1 with the error answer set. */
static int path_topic(struct admin_ctx *x, struct cfx_topic_info *ti)
{
	int rc = cfx_broker_topic_get(x->br, CFX_VIEW_STR(x->param), 0, ti);

	if (rc) {
		reply_about(x, rc, "topic", x->param);
		return -1;
	}
	return 0;
}

/* "type": a topic type name. 0 = absent, 1 = set, -1 = 400 set. */
static int member_type(struct admin_ctx *x, json_t *o, int *type)
{
	const char *s;
	int r = admin__member_str(x, o, "type", &s);

	if (r <= 0)
		return r;
	*type = cfx_msg_type_parse(s);
	if (!*type) {
		http_response_error(x->resp, 400,
				    "\"type\" must be normal, fifo, delay, transaction or mixed");
		return -1;
	}
	return 1;
}

static void create_topic(struct admin_ctx *x)
{
	static const char *const fields[] = { "name", "type", "queues", NULL };
	struct cfx_topic_info ti;
	const char *name = NULL;
	int64_t queues = x->svc->o.default_queues;
	int type = CFX_MSG_NORMAL, rc;
	json_t *o = admin__body_object(x, fields);

	if (!o)
		return;
	if (admin__member_str(x, o, "name", &name) < 0 || member_type(x, o, &type) < 0 ||
	    admin__member_int(x, o, "queues", 1, UINT32_MAX, &queues) < 0)
		goto out;
	if (!name) {
		http_response_error(x->resp, 400, "\"name\" is required");
		goto out;
	}
	if (!admin__allowed(x, CFX_AUTH_TOPIC, name, CFX_AUTH_CREATE))
		goto out;
	rc = cfx_broker_topic_create(x->br, name, type, (uint32_t)queues);
	if (rc == CFX_EQUEUE) {
		http_response_error(x->resp, 400, "\"queues\" is beyond store.queues_per_topic_max");
		goto out;
	}
	if (!rc)
		rc = cfx_broker_topic_get(x->br, CFX_VIEW_STR(name), 0, &ti);
	if (rc) {
		char what[160];
		snprintf(what, sizeof what, "topic \"%.128s\"", name);
		admin__reply_cfx(x, rc, what);
		goto out;
	}
	http_response_json(x->resp, 201, topic_json(&ti));
out:
	json_decref(o);
}

static void get_topic(struct admin_ctx *x)
{
	struct cfx_store *st = cfx_broker_store(x->br);
	struct cfx_topic_info ti;
	json_t *t, *offsets;

	if (path_topic(x, &ti))
		return;
	offsets = json_array();
	for (uint32_t q = 0; q < ti.queues; q++) {
		uint64_t start, end;
		cfx_store_queue_bounds(st, CFX_VIEW_STR(ti.name), q, &start, &end);
		json_array_append_new(offsets, json_pack("{s:I, s:I, s:I}", "queue", (json_int_t)q,
							 "start_offset", (json_int_t)start,
							 "end_offset", (json_int_t)end));
	}
	t = topic_json(&ti);
	json_object_set_new(t, "queue_offsets", offsets);
	http_response_json(x->resp, 200, t);
}

static void update_topic(struct admin_ctx *x)
{
	static const char *const fields[] = { "type", "queues", NULL };
	struct cfx_topic_info ti;
	int64_t queues;
	int type, rc;
	json_t *o;

	if (path_topic(x, &ti))
		return;
	o = admin__body_object(x, fields);
	if (!o)
		return;
	type = ti.type;
	queues = ti.queues;
	if (member_type(x, o, &type) < 0 || admin__member_int(x, o, "queues", 1, UINT32_MAX, &queues) < 0)
		goto out;
	if (queues < ti.queues) {
		http_response_error(x->resp, 400, "queues may only grow (the topic has %u)",
				    ti.queues);
		goto out;
	}
	rc = cfx_broker_topic_update(x->br, ti.name, type, (uint32_t)queues);
	if (rc == CFX_EQUEUE) {
		http_response_error(x->resp, 400, "\"queues\" is beyond store.queues_per_topic_max");
		goto out;
	}
	if (!rc)
		rc = cfx_broker_topic_get(x->br, CFX_VIEW_STR(ti.name), 0, &ti);
	if (rc) {
		reply_about(x, rc, "topic", ti.name);
		goto out;
	}
	http_response_json(x->resp, 200, topic_json(&ti));
out:
	json_decref(o);
}

static void delete_topic(struct admin_ctx *x)
{
	struct cfx_topic_info ti;
	int rc;

	if (path_topic(x, &ti))
		return;
	rc = cfx_broker_topic_delete(x->br, ti.name);
	if (rc) {
		reply_about(x, rc, "topic", ti.name);
		return;
	}
	x->resp->status = 204;
}

/* ------------------------------------------------------------------------
 * Groups
 * ------------------------------------------------------------------------ */

static void add_group(void *arg, const struct cfx_group_info *g)
{
	json_array_append_new(arg, group_json(g));
}

static void list_groups(struct admin_ctx *x)
{
	json_t *arr = json_array();

	cfx_broker_group_foreach(x->br, add_group, arr);
	http_response_json(x->resp, 200, json_pack("{s:o}", "groups", sorted_by_name(arr)));
}

/* The group named by the path; 0, or -1 with the error answer set. */
static int path_group(struct admin_ctx *x, struct cfx_group_info *gi)
{
	int rc = cfx_broker_group_get(x->br, CFX_VIEW_STR(x->param), 0, gi);

	if (rc == CFX_EINVAL) {
		http_response_error(x->resp, 400, "invalid group name: 1 to 120 characters of "
				    "a-z A-Z 0-9 _ - %% |");
		return -1;
	}
	if (rc) {
		reply_about(x, rc, "group", x->param);
		return -1;
	}
	return 0;
}

/*
 * Applies a "retry" object onto `p` (the group's policy, or the default
 * for a new group). A change of "kind" keeps the other kind's fields for
 * later; customized without steps gets the default steps. Returns 0 or -1
 * with a 400 set; `p` is only valid on 0.
 */
static int parse_retry(struct admin_ctx *x, json_t *o, struct cfx_retry_policy *p)
{
	static const char *const fields[] = { "max_attempts", "kind", "initial_ms", "max_ms",
					      "multiplier", "steps_ms", NULL };
	const char *kind = NULL, *key;
	int64_t v;
	json_t *m;

	if (!json_is_object(o)) {
		http_response_error(x->resp, 400, "\"retry\" must be an object");
		return -1;
	}
	json_object_foreach(o, key, m)
	{
		int ok = 0;
		for (const char *const *a = fields; *a && !ok; a++)
			ok = !strcmp(*a, key);
		if (!ok) {
			http_response_error(x->resp, 400, "unknown field \"retry.%s\"", key);
			return -1;
		}
	}
	if (admin__member_str(x, o, "kind", &kind) < 0)
		return -1;
	if (kind) {
		int k = !strcmp(kind, "exponential")  ? CFX_BACKOFF_EXPONENTIAL
			: !strcmp(kind, "customized") ? CFX_BACKOFF_CUSTOMIZED
						      : 0;
		if (!k) {
			http_response_error(x->resp, 400,
					    "\"retry.kind\" must be exponential or customized");
			return -1;
		}
		if (k == CFX_BACKOFF_CUSTOMIZED && p->kind != k && !json_object_get(o, "steps_ms")) {
			struct cfx_retry_policy d;
			cfx_retry_policy_default(&d);
			memcpy(p->steps_ms, d.steps_ms, sizeof d.steps_ms);
			p->nsteps = d.nsteps;
		}
		p->kind = k;
	}
	switch (admin__member_int(x, o, "max_attempts", 1, RETRY_ATTEMPTS_MAX, &v)) {
	case -1:
		return -1;
	case 1:
		p->max_attempts = (uint32_t)v;
		break;
	}
	if (p->kind == CFX_BACKOFF_EXPONENTIAL) {
		if (json_object_get(o, "steps_ms")) {
			http_response_error(x->resp, 400, "\"retry.steps_ms\" is for kind customized");
			return -1;
		}
		if (admin__member_int(x, o, "initial_ms", 0, RETRY_DELAY_MS_MAX, &p->initial_ms) < 0 ||
		    admin__member_int(x, o, "max_ms", 0, RETRY_DELAY_MS_MAX, &p->max_ms) < 0)
			return -1;
		m = json_object_get(o, "multiplier");
		if (m) {
			double d = json_number_value(m);
			if (!json_is_number(m) || !isfinite(d) || d < 1 || d > RETRY_MULTIPLIER_MAX) {
				http_response_error(x->resp, 400,
						    "\"retry.multiplier\" must be a number from 1 to 100");
				return -1;
			}
			p->multiplier = d;
		}
		if (p->max_ms < p->initial_ms) {
			http_response_error(x->resp, 400,
					    "\"retry.max_ms\" must not be below \"retry.initial_ms\"");
			return -1;
		}
		return 0;
	}
	if (json_object_get(o, "initial_ms") || json_object_get(o, "max_ms") ||
	    json_object_get(o, "multiplier")) {
		http_response_error(x->resp, 400, "\"retry.initial_ms\", \"retry.max_ms\" and "
				    "\"retry.multiplier\" are for kind exponential");
		return -1;
	}
	m = json_object_get(o, "steps_ms");
	if (m) {
		size_t n = json_array_size(m);
		if (!json_is_array(m) || n < 1 || n > CFX_BACKOFF_STEPS_MAX) {
			http_response_error(x->resp, 400, "\"retry.steps_ms\" must be an array of 1 "
					    "to %d delays", CFX_BACKOFF_STEPS_MAX);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *s = json_array_get(m, i);
			if (!json_is_integer(s) || json_integer_value(s) < 0 ||
			    json_integer_value(s) > RETRY_DELAY_MS_MAX) {
				http_response_error(x->resp, 400, "\"retry.steps_ms\" holds integers "
						    "from 0 to %lld", RETRY_DELAY_MS_MAX);
				return -1;
			}
			p->steps_ms[i] = json_integer_value(s);
		}
		p->nsteps = (uint32_t)n;
	}
	return 0;
}

/* Applies "fifo" and "retry" of a body onto `g`. 0, or -1 with a 400 set. */
static int group_fields(struct admin_ctx *x, json_t *o, struct cfx_group_info *g)
{
	json_t *r = json_object_get(o, "retry");

	if (admin__member_bool(x, o, "fifo", &g->fifo) < 0)
		return -1;
	if (r && !json_is_null(r) && parse_retry(x, r, &g->retry))
		return -1;
	return 0;
}

static void create_group(struct admin_ctx *x)
{
	static const char *const fields[] = { "name", "fifo", "retry", NULL };
	struct cfx_group_info g = { 0 }, gi;
	const char *name = NULL;
	int rc;
	json_t *o = admin__body_object(x, fields);

	if (!o)
		return;
	cfx_retry_policy_default(&g.retry);
	if (admin__member_str(x, o, "name", &name) < 0 || group_fields(x, o, &g))
		goto out;
	if (!name) {
		http_response_error(x->resp, 400, "\"name\" is required");
		goto out;
	}
	if (strlen(name) >= sizeof g.name || !cfx_group_name_is_valid(CFX_VIEW_STR(name))) {
		http_response_error(x->resp, 400, "invalid group name: 1 to 120 characters of "
				    "a-z A-Z 0-9 _ - %% |");
		goto out;
	}
	if (!admin__allowed(x, CFX_AUTH_GROUP, name, CFX_AUTH_CREATE))
		goto out;
	memcpy(g.name, name, strlen(name) + 1);
	rc = cfx_broker_group_create(x->br, &g);
	if (!rc)
		rc = cfx_broker_group_get(x->br, CFX_VIEW_STR(name), 0, &gi);
	if (rc) {
		reply_about(x, rc, "group", g.name);
		goto out;
	}
	http_response_json(x->resp, 201, group_json(&gi));
out:
	json_decref(o);
}

/* {"topic", "queues": [...], "lag"} for the positions v[i..j) of one topic. */
static json_t *topic_positions_json(const struct admin_pos *v, size_t i, size_t j)
{
	json_t *queues = json_array();
	uint64_t lag = 0;

	for (size_t k = i; k < j; k++) {
		json_array_append_new(queues, queue_state_json(v[k].queue, &v[k].st));
		if (v[k].st.end > v[k].st.committed)
			lag += v[k].st.end - v[k].st.committed;
	}
	return json_pack("{s:s, s:o, s:I}", "topic", v[i].topic, "queues", queues, "lag",
			 (json_int_t)lag);
}

static void get_group(struct admin_ctx *x)
{
	struct cfx_group_info gi;
	struct admin_pos *v;
	size_t n;
	json_t *g, *topics;

	if (path_group(x, &gi))
		return;
	v = admin__positions(x->br, CFX_VIEW_STR(gi.name), &n);
	topics = json_array();
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && !strcmp(v[j].topic, v[i].topic))
			j++;
		json_array_append_new(topics, topic_positions_json(v, i, j));
		i = j;
	}
	admin__positions_free(v, n);
	g = group_json(&gi);
	json_object_set_new(g, "topics", topics);
	http_response_json(x->resp, 200, g);
}

static void update_group(struct admin_ctx *x)
{
	static const char *const fields[] = { "fifo", "retry", NULL };
	struct cfx_group_info gi;
	int rc;
	json_t *o;

	if (path_group(x, &gi))
		return;
	o = admin__body_object(x, fields);
	if (!o)
		return;
	if (group_fields(x, o, &gi))
		goto out;
	rc = cfx_broker_group_update(x->br, &gi);
	if (!rc)
		rc = cfx_broker_group_get(x->br, CFX_VIEW_STR(gi.name), 0, &gi);
	if (rc) {
		reply_about(x, rc, "group", gi.name);
		goto out;
	}
	http_response_json(x->resp, 200, group_json(&gi));
out:
	json_decref(o);
}

static void delete_group(struct admin_ctx *x)
{
	struct cfx_group_info gi;
	int rc;

	if (path_group(x, &gi))
		return;
	rc = cfx_broker_group_delete(x->br, gi.name);
	if (rc) {
		reply_about(x, rc, "group", gi.name);
		return;
	}
	x->resp->status = 204;
}

static void reset_group(struct admin_ctx *x)
{
	static const char *const fields[] = { "topic", "offset", "timestamp_ms", NULL };
	struct cfx_group_info gi;
	struct cfx_topic_info ti;
	const char *topic = NULL;
	int64_t offset = -1, ts = -1;
	int has_off, has_ts, rc;
	json_t *o, *queues, *out;
	uint64_t lag = 0;

	if (path_group(x, &gi))
		return;
	o = admin__body_object(x, fields);
	if (!o)
		return;
	if (admin__member_str(x, o, "topic", &topic) < 0)
		goto out;
	has_off = admin__member_int(x, o, "offset", -1, INT64_MAX, &offset);
	if (has_off < 0)
		goto out;
	has_ts = admin__member_int(x, o, "timestamp_ms", 0, INT64_MAX, &ts);
	if (has_ts < 0)
		goto out;
	if (!topic || has_off + has_ts != 1) {
		http_response_error(x->resp, 400, "\"topic\" and exactly one of \"offset\" (-1 = "
				    "the end) and \"timestamp_ms\" are required");
		goto out;
	}
	rc = cfx_broker_topic_get(x->br, CFX_VIEW_STR(topic), 0, &ti);
	if (!rc)
		rc = cfx_broker_group_reset(x->br, CFX_VIEW_STR(gi.name), CFX_VIEW_STR(topic),
					    has_off ? offset : -1, has_ts ? ts : -1);
	if (rc) {
		char what[160];
		snprintf(what, sizeof what, "topic \"%.128s\"", topic);
		admin__reply_cfx(x, rc, what);
		goto out;
	}
	queues = json_array();
	for (uint32_t q = 0; q < ti.queues; q++) {
		struct cfx_group_queue_state st;
		cfx_broker_group_queue_state(x->br, CFX_VIEW_STR(gi.name), CFX_VIEW_STR(ti.name), q,
					     &st);
		json_array_append_new(queues, queue_state_json(q, &st));
		if (st.end > st.committed)
			lag += st.end - st.committed;
	}
	out = json_pack("{s:s, s:s, s:o, s:I}", "group", gi.name, "topic", ti.name, "queues",
			queues, "lag", (json_int_t)lag);
	http_response_json(x->resp, 200, out);
out:
	json_decref(o);
}

/* ------------------------------------------------------------------------
 * GET /v1/messages
 * ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p[0..n), or 0 if it is not one. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates, beyond U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A JSON string of stored bytes; invalid UTF-8 becomes U+FFFD, so it never fails. */
static json_t *text_json(struct cfx_view v)
{
	json_t *s = json_stringn((const char *)v.p, v.len);
	struct cfx_writer w;

	if (s)
		return s;
	cfx_writer_init(&w, v.len + 16);
	for (size_t i = 0; i < v.len;) {
		size_t k = utf8_seq(v.p + i, v.len - i);
		if (k) {
			cfx_write_bytes(&w, v.p + i, k);
			i += k;
		} else {
			cfx_write_bytes(&w, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	s = json_stringn((const char *)w.p, w.len);
	cfx_writer_free(&w);
	CFX_ASSERT(s);
	return s;
}

static json_t *base64_json(struct cfx_view v)
{
	size_t cap = 4 * ((v.len + 2) / 3) + 1;
	unsigned char *out = cfx_malloc(cap);
	int n;
	json_t *s;

	CFX_ASSERT(v.len <= INT32_MAX);
	n = EVP_EncodeBlock(out, v.p, (int)v.len);
	CFX_ASSERT(n >= 0 && (size_t)n < cap);
	s = json_stringn((const char *)out, (size_t)n);
	cfx_free(out);
	return s;
}

static json_t *message_json(struct cfx_view topic, uint32_t queue, const struct cfx_msg_view *m)
{
	json_t *o = json_object(), *keys = json_array(), *props = json_object(), *body;
	struct cfx_prop pr;
	size_t cur = 0;

	json_object_set_new(o, "topic", text_json(topic));
	json_object_set_new(o, "queue", json_integer(queue));
	json_object_set_new(o, "offset", json_integer((json_int_t)m->offset));
	json_object_set_new(o, "msg_id", text_json(m->msg_id));
	json_object_set_new(o, "tag", m->tag.len ? text_json(m->tag) : json_null());
	/* Keys are stored space-separated. */
	for (size_t i = 0; !m->key_null && i < m->key.len;) {
		size_t j = i;
		while (j < m->key.len && m->key.p[j] != ' ')
			j++;
		if (j > i)
			json_array_append_new(keys, text_json((struct cfx_view){ m->key.p + i, j - i }));
		i = j + 1;
	}
	json_object_set_new(o, "keys", keys);
	json_object_set_new(o, "born_ms", json_integer(m->born_ms));
	json_object_set_new(o, "store_ms", json_integer(m->store_ms));
	while (cfx_msg_view_next_prop(m, &cur, &pr) == 1) {
		json_t *k = text_json(pr.name);
		json_object_set_new(props, json_string_value(k), text_json(pr.value));
		json_decref(k);
	}
	json_object_set_new(o, "properties", props);
	if (m->body_null) {
		json_object_set_new(o, "body_base64", json_null());
	} else {
		body = json_stringn((const char *)m->body.p, m->body.len);
		if (body)
			json_object_set_new(o, "body", body);
		json_object_set_new(o, "body_base64", base64_json(m->body));
	}
	return o;
}

/* Appends res->msgs to `arr` within the byte budget; topic and queue from res->origins or given. */
static void add_messages(json_t *arr, const struct cfx_read_result *res, struct cfx_view topic,
			 uint32_t queue, int use_origins, size_t *bytes)
{
	for (uint32_t i = 0; i < res->count; i++) {
		const struct cfx_msg_view *m = &res->msgs[i];
		if (json_array_size(arr) && *bytes + m->body.len > MESSAGES_BYTES_MAX)
			break;
		*bytes += m->body.len;
		json_array_append_new(arr, use_origins ? message_json(res->origins[i].topic,
								      res->origins[i].queue_id, m)
						       : message_json(topic, queue, m));
	}
}

static void get_messages(struct admin_ctx *x)
{
	static const char *const params[] = { "id", "topic", "key", "queue", "offset", "time_ms",
					      "count", NULL };
	struct cfx_store *st = cfx_broker_store(x->br);
	const char *id = admin__query_get(x, "id"), *topic = admin__query_get(x, "topic");
	const char *key = admin__query_get(x, "key");
	int64_t queue = 0, offset = 0, time_ms = 0, count = 0;
	int has_q, has_off, has_time, has_count, rc;
	struct cfx_read_result res;
	json_t *arr, *out;
	size_t bytes = 0;

	if (admin__query_only(x, params))
		return;
	if ((has_q = admin__query_int(x, "queue", 0, UINT32_MAX, &queue)) < 0 ||
	    (has_off = admin__query_int(x, "offset", 0, INT64_MAX, &offset)) < 0 ||
	    (has_time = admin__query_int(x, "time_ms", 0, INT64_MAX, &time_ms)) < 0 ||
	    (has_count = admin__query_int(x, "count", 1, MESSAGES_MAX, &count)) < 0)
		return;
	cfx_read_result_init(&res);
	arr = json_array();
	out = json_object();
	json_object_set(out, "messages", arr); /* first in the answer; `arr` stays ours too */
	if (id && !topic && !key && !has_q && !has_off && !has_time) {
		/* ?id=ID */
		rc = cfx_store_lookup_id(st, CFX_VIEW_STR(id), has_count ? (uint32_t)count
									 : LOOKUP_DEFAULT, &res);
		if (!rc)
			add_messages(arr, &res, (struct cfx_view){ 0 }, 0, 1, &bytes);
	} else if (topic && key && !id && !has_q && !has_off && !has_time) {
		/* ?topic=T&key=K */
		rc = cfx_store_lookup_key(st, CFX_VIEW_STR(topic), CFX_VIEW_STR(key),
					  has_count ? (uint32_t)count : LOOKUP_DEFAULT, &res);
		if (!rc)
			add_messages(arr, &res, (struct cfx_view){ 0 }, 0, 1, &bytes);
	} else if (topic && has_q && has_off + has_time == 1 && !id && !key) {
		/* ?topic=T&queue=Q&offset=O | &time_ms=MS, [&count=N] */
		uint64_t from = (uint64_t)offset;
		rc = 0;
		if (has_time)
			rc = cfx_store_offset_for_time(st, CFX_VIEW_STR(topic), (uint32_t)queue,
						       time_ms, &from);
		if (!rc)
			rc = cfx_store_read(st, CFX_VIEW_STR(topic), (uint32_t)queue, from,
					    has_count ? (uint32_t)count : 1, MESSAGES_BYTES_MAX, &res);
		if (rc == CFX_EOFFSET) {
			http_response_error(x->resp, 404, "offset %" PRIu64 " is outside the stored "
					    "offsets of %s queue %" PRId64 " (%" PRIu64 " to %" PRIu64 ")",
					    from, topic, queue, res.start_offset, res.end_offset);
			goto out;
		}
		if (!rc) {
			add_messages(arr, &res, CFX_VIEW_STR(topic), (uint32_t)queue, 0, &bytes);
			/* Where the next page starts: after the last message returned. */
			uint64_t next = json_array_size(arr)
						? res.msgs[json_array_size(arr) - 1].offset + 1
						: from;
			json_object_set_new(out, "next_offset", json_integer((json_int_t)next));
		}
	} else {
		http_response_error(x->resp, 400,
				    "give ?id=ID, or ?topic=T&key=K, or ?topic=T&queue=Q and one of "
				    "offset=O or time_ms=MS (each with an optional count=N)");
		goto out;
	}
	if (rc == CFX_EQUEUE) {
		http_response_error(x->resp, 400, "\"queue\" is beyond store.queues_per_topic_max");
		goto out;
	}
	if (rc == CFX_ECORRUPT || rc == CFX_EUNSUPPORTED) {
		http_response_error(x->resp, 500, "the batch holding this offset cannot be "
				    "decoded: %s", cfx_strerror(rc));
		goto out;
	}
	if (rc) {
		admin__reply_cfx(x, rc, "messages");
		goto out;
	}
	http_response_json(x->resp, 200, out);
	out = NULL;
out:
	json_decref(arr);
	json_decref(out);
	cfx_read_result_free(&res);
}

/* ------------------------------------------------------------------------
 * Dead letters: GET /v1/groups/{g}/dlq, POST /v1/groups/{g}/dlq/redrive
 * ------------------------------------------------------------------------ */

/* The DLQ position of the group in the path; 0, or -1 with the error answer set. */
static int path_dlq(struct admin_ctx *x, struct cfx_dlq_position *pos)
{
	int rc = cfx_broker_dlq_position(x->br, CFX_VIEW_STR(x->param), pos);

	if (rc == CFX_ENOENT)
		http_response_error(x->resp, 404, "group \"%.128s\" has no dead-letter queue (no "
				    "topic %s%.128s)", x->param, CFX_DLQ_PREFIX, x->param);
	else if (rc == CFX_EINVAL)
		http_response_error(x->resp, 400, "invalid group name for a dead-letter queue: 1 to "
				    "111 characters of a-z A-Z 0-9 _ - %% |");
	else if (rc)
		admin__reply_cfx(x, rc, "dead-letter queue");
	return rc ? -1 : 0;
}

/* A user property's value, or NULL (p NULL) if the message has none of that name. */
static struct cfx_view prop_value(const struct cfx_msg_view *m, const char *name)
{
	struct cfx_prop pr;
	size_t cur = 0;

	while (cfx_msg_view_next_prop(m, &cur, &pr) == 1)
		if (cfx_view_eq_str(pr.name, name))
			return pr.value.p ? pr.value : (struct cfx_view){ (const uint8_t *)"", 0 };
	return (struct cfx_view){ 0 };
}

/* DLQ_ATTEMPTS as a number, or null when absent or not a decimal count. */
static json_t *attempts_json(const struct cfx_msg_view *m)
{
	struct cfx_view v = prop_value(m, "DLQ_ATTEMPTS");
	uint64_t n = 0;

	if (!v.p || v.len == 0 || v.len > 9)
		return json_null();
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return json_null();
		n = n * 10 + (uint64_t)(v.p[i] - '0');
	}
	return json_integer((json_int_t)n);
}

static json_t *dlq_message_json(const struct cfx_msg_view *m)
{
	json_t *o = json_object(), *keys = json_array(), *props = json_object(), *body;
	struct cfx_view origin = prop_value(m, "DLQ_ORIGIN_TOPIC");
	struct cfx_view origin_id = prop_value(m, "DLQ_ORIGIN_MESSAGE_ID");
	struct cfx_prop pr;
	size_t cur = 0;

	json_object_set_new(o, "offset", json_integer((json_int_t)m->offset));
	json_object_set_new(o, "message_id", text_json(m->msg_id));
	json_object_set_new(o, "origin_topic", origin.p ? text_json(origin) : json_null());
	json_object_set_new(o, "origin_message_id",
			    origin_id.p ? text_json(origin_id) : json_null());
	json_object_set_new(o, "attempts", attempts_json(m));
	json_object_set_new(o, "tag", m->tag.len ? text_json(m->tag) : json_null());
	for (size_t i = 0; !m->key_null && i < m->key.len;) {
		size_t j = i;
		while (j < m->key.len && m->key.p[j] != ' ')
			j++;
		if (j > i)
			json_array_append_new(keys, text_json((struct cfx_view){ m->key.p + i, j - i }));
		i = j + 1;
	}
	json_object_set_new(o, "keys", keys);
	json_object_set_new(o, "born_ms", json_integer(m->born_ms));
	json_object_set_new(o, "store_ms", json_integer(m->store_ms));
	json_object_set_new(o, "body_size", json_integer((json_int_t)m->body.len));
	/* Text when it is UTF-8, else base64: one of the two, never both. */
	if (m->body_null) {
		json_object_set_new(o, "body", json_null());
	} else {
		body = json_stringn((const char *)m->body.p, m->body.len);
		json_object_set_new(o, body ? "body" : "body_base64", body ? body : base64_json(m->body));
	}
	while (cfx_msg_view_next_prop(m, &cur, &pr) == 1) {
		json_t *k = text_json(pr.name);
		json_object_set_new(props, json_string_value(k), text_json(pr.value));
		json_decref(k);
	}
	json_object_set_new(o, "properties", props);
	return o;
}

static void list_dlq(struct admin_ctx *x)
{
	static const char *const params[] = { "max", NULL };
	struct cfx_store *st = cfx_broker_store(x->br);
	char dlq[CFX_DLQ_NAME_MAX], rg[CFX_DLQ_NAME_MAX];
	struct cfx_dlq_position pos;
	struct cfx_read_result res;
	int64_t max = DLQ_LIST_DEFAULT;
	size_t bytes = 0;
	json_t *arr;
	uint64_t off;

	if (admin__query_only(x, params) || admin__query_int(x, "max", 1, DLQ_LIST_MAX, &max) < 0 ||
	    path_dlq(x, &pos))
		return;
	int named = cfx_broker_dlq_names(CFX_VIEW_STR(x->param), dlq, rg);
	CFX_ASSERT(named == 0); /* path_dlq checked the name */
	arr = json_array();
	cfx_read_result_init(&res);
	/* From the redrive position (messages below it were re-driven) to the end. */
	off = CFX_MAX(pos.position, pos.start);
	while (off < pos.end && json_array_size(arr) < (size_t)max && bytes < MESSAGES_BYTES_MAX) {
		int rc = cfx_store_read(st, CFX_VIEW_STR(dlq), 0, off,
					(uint32_t)max - (uint32_t)json_array_size(arr),
					MESSAGES_BYTES_MAX - bytes, &res);
		if (rc == CFX_EOFFSET && res.start_offset > off) {
			off = res.start_offset; /* retention went past it meanwhile */
			continue;
		}
		if ((rc == CFX_ECORRUPT || rc == CFX_EUNSUPPORTED) && res.next_offset > off) {
			off = res.next_offset; /* a batch that cannot be shown; the log says where */
			continue;
		}
		if (rc || res.count == 0)
			break;
		for (uint32_t i = 0; i < res.count && json_array_size(arr) < (size_t)max; i++) {
			const struct cfx_msg_view *m = &res.msgs[i];
			if (json_array_size(arr) && bytes + m->body.len > MESSAGES_BYTES_MAX) {
				bytes = MESSAGES_BYTES_MAX;
				break;
			}
			bytes += m->body.len;
			json_array_append_new(arr, dlq_message_json(m));
			off = m->offset + 1;
		}
	}
	cfx_read_result_free(&res);
	http_response_json(x->resp, 200,
			   json_pack("{s:s, s:s, s:I, s:I, s:o}", "group", x->param, "topic", dlq,
				     "position", (json_int_t)pos.position, "end",
				     (json_int_t)pos.end, "messages", arr));
}

/* A re-drive whose answer waits for the broker. */
struct redrive_call {
	struct admin_service *svc;
	struct http_later *later;
	struct cfx_loop *loop;
	char group[CFX_DLQ_NAME_MAX];
	int started;		/* cfx_broker_dlq_redrive took it */
	uint32_t redriven;
	int err;
};

/* Errors that say the broker cannot work now, rather than that a message is unfit. */
static int is_server_error(int err)
{
	return err == CFX_ENOSPC || err == CFX_EFSYNC || err == CFX_EIO || err == CFX_ESYS ||
	       err == CFX_ECLOSED || err == CFX_ENOMEM;
}

/* Builds and sends the answer. @thread the request's loop */
static void redrive_answer(void *arg)
{
	struct redrive_call *rc = arg;
	struct admin_service *svc = rc->svc;
	struct http_response resp;
	struct admin_ctx x = { .svc = svc, .br = svc->o.br, .resp = &resp };

	http_response_init(&resp);
	if (!rc->started) {
		if (rc->err == CFX_ENOENT)
			http_response_error(&resp, 404, "group \"%s\" has no dead-letter queue",
					    rc->group);
		else
			admin__reply_cfx(&x, rc->err, "dead-letter queue");
	} else if (rc->err && is_server_error(rc->err)) {
		/* Stopped by the broker: say how far it got. */
		int status = rc->err == CFX_ENOSPC || rc->err == CFX_EFSYNC ? 503 : 500;
		char token[64];
		http_response_json(&resp, status,
				   json_pack("{s:s, s:s, s:I}", "error",
					     http_status_token(status, token, sizeof token),
					     "reason", cfx_strerror(rc->err), "redriven",
					     (json_int_t)rc->redriven));
	} else if (rc->err) {
		/* Done, but some messages stay in the DLQ: the log names each. */
		char why[256];
		if (rc->err == CFX_ENOENT)
			snprintf(why, sizeof why, "the origin topic of a message does not exist; "
				 "such messages stay in the dead-letter queue (the server log names "
				 "them)");
		else if (rc->err == CFX_ETIMEDOUT)
			snprintf(why, sizeof why, "a message was stored in its origin topic too late "
				 "to be taken out of the dead-letter queue: it will be re-driven again");
		else if (rc->err == CFX_EINVAL)
			snprintf(why, sizeof why, "a message has no DLQ_ORIGIN_TOPIC property, or "
				 "its origin topic does not take it; such messages stay in the "
				 "dead-letter queue (the server log names them)");
		else
			snprintf(why, sizeof why, "a message could not be re-driven (%s); such "
				 "messages stay in the dead-letter queue (the server log names them)",
				 cfx_strerror(rc->err));
		http_response_json(&resp, 200, json_pack("{s:I, s:s}", "redriven",
							 (json_int_t)rc->redriven, "error", why));
	} else {
		http_response_json(&resp, 200,
				   json_pack("{s:I}", "redriven", (json_int_t)rc->redriven));
	}
	http_later_answer(rc->later, &resp);
	http_response_free(&resp);
	cfx_free(rc);
	pthread_mutex_lock(&svc->mu);
	svc->deferred--;
	pthread_cond_broadcast(&svc->cv);
	pthread_mutex_unlock(&svc->mu);
}

/* The broker finished. @thread any */
static void redrive_done(void *arg, uint32_t redriven, int err)
{
	struct redrive_call *rc = arg;

	rc->redriven = redriven;
	rc->err = err;
	cfx_loop_post(rc->loop, redrive_answer, rc);
}

static void redrive_dlq(struct admin_ctx *x)
{
	static const char *const fields[] = { "max", NULL };
	static const char *const params[] = { NULL };
	struct admin_service *svc = x->svc;
	struct cfx_dlq_position pos;
	struct redrive_call *rc;
	struct http_later *later;
	int64_t max = DLQ_REDRIVE_MAX;
	int stopping, err;

	if (admin__query_only(x, params))
		return;
	/* The body is optional: none, or {"max": N}. */
	if (x->req->body.len) {
		json_t *o = admin__body_object(x, fields);
		int r = o ? admin__member_int(x, o, "max", 1, DLQ_REDRIVE_MAX, &max) : -1;
		json_decref(o);
		if (r < 0)
			return;
	}
	if (path_dlq(x, &pos))
		return;
	pthread_mutex_lock(&svc->mu);
	stopping = svc->stopping;
	if (!stopping)
		svc->deferred++;
	pthread_mutex_unlock(&svc->mu);
	if (stopping) {
		http_response_error(x->resp, 503, "the server is shutting down");
		return;
	}
	later = http_response_defer(x->resp);
	if (!later) {
		http_response_error(x->resp, 500, "this request cannot wait for its answer here");
		pthread_mutex_lock(&svc->mu);
		svc->deferred--;
		pthread_cond_broadcast(&svc->cv);
		pthread_mutex_unlock(&svc->mu);
		return;
	}
	rc = cfx_calloc(1, sizeof *rc);
	rc->svc = svc;
	rc->later = later;
	rc->loop = http_later_loop(later);
	snprintf(rc->group, sizeof rc->group, "%s", x->param);
	rc->started = 1;
	/* Sync: a message leaves the DLQ only once its copy is on disk. */
	err = cfx_broker_dlq_redrive(x->br, CFX_VIEW_STR(x->param), (uint32_t)max,
				     CFX_DURABILITY_SYNC, redrive_done, rc);
	if (err) {
		rc->started = 0;
		rc->err = err;
		cfx_loop_post(rc->loop, redrive_answer, rc);
	}
}

/* ------------------------------------------------------------------------
 * GET /metrics
 * ------------------------------------------------------------------------ */

static void get_metrics(struct admin_ctx *x)
{
	x->resp->status = 200;
	x->resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	metrics_render(x->svc, &x->resp->body);
}

/* ------------------------------------------------------------------------
 * Users, tokens and policies (super users only; docs/security.md)
 * ------------------------------------------------------------------------ */

static bool auth_ready(struct admin_ctx *x)
{
	if (!x->svc->o.auth) {
		http_response_error(x->resp, 404, "authentication is not configured on this server");
		return false;
	}
	return true;
}

static json_t *user_json(const struct cfx_auth_user_info *u)
{
	return json_pack("{s:s, s:s, s:b, s:I, s:i}", "name", u->name, "role",
			 u->super ? "super" : "normal", "enabled", u->enabled, "created_ms",
			 (json_int_t)u->created_ms, "tokens", (int)u->tokens);
}

static void add_user(void *arg, const struct cfx_auth_user_info *u)
{
	json_array_append_new(arg, user_json(u));
}

static void list_users(struct admin_ctx *x)
{
	json_t *arr;

	if (!auth_ready(x))
		return;
	arr = json_array();
	cfx_auth_user_foreach(x->svc->o.auth, add_user, arr);
	http_response_json(x->resp, 200, json_pack("{s:o}", "users", arr));
}

/* "role": "super" | "normal" -> 1 | 0; absent -1; -2 = 400 set. */
static int member_role(struct admin_ctx *x, json_t *o)
{
	const char *role = NULL;
	int r = admin__member_str(x, o, "role", &role);

	if (r <= 0)
		return r < 0 ? -2 : -1;
	if (!strcmp(role, "super"))
		return 1;
	if (!strcmp(role, "normal"))
		return 0;
	http_response_error(x->resp, 400, "\"role\" must be \"super\" or \"normal\"");
	return -2;
}

static void create_user(struct admin_ctx *x)
{
	static const char *const fields[] = { "name", "password", "role", "enabled", NULL };
	struct cfx_auth_user_info ui;
	const char *name = NULL, *pw = NULL;
	int enabled = 1, super, rc;
	json_t *o;

	if (!auth_ready(x) || !(o = admin__body_object(x, fields)))
		return;
	if (admin__member_str(x, o, "name", &name) < 0 || admin__member_str(x, o, "password", &pw) < 0 ||
	    admin__member_bool(x, o, "enabled", &enabled) < 0 || (super = member_role(x, o)) == -2)
		goto out;
	if (!name || !pw) {
		http_response_error(x->resp, 400, "\"name\" and \"password\" are required");
		goto out;
	}
	rc = cfx_auth_user_create(x->svc->o.auth, name, pw, strlen(pw), super == 1, enabled);
	if (rc == CFX_EINVAL) {
		http_response_error(x->resp, 400, "a user name is 1 to %d characters of a-z A-Z "
				    "0-9 . _ @ - (not \"anonymous\"), a password 1 to %d bytes",
				    CFX_AUTH_USER_MAX, CFX_AUTH_PASSWORD_MAX);
		goto out;
	}
	if (!rc)
		rc = cfx_auth_user_get(x->svc->o.auth, name, &ui);
	if (rc) {
		reply_about(x, rc, "user", name);
		goto out;
	}
	http_response_json(x->resp, 201, user_json(&ui));
out:
	json_decref(o);
}

static void get_user(struct admin_ctx *x)
{
	struct cfx_auth_user_info ui;
	int rc;

	if (!auth_ready(x))
		return;
	rc = cfx_auth_user_get(x->svc->o.auth, x->param, &ui);
	if (rc) {
		reply_about(x, rc, "user", x->param);
		return;
	}
	http_response_json(x->resp, 200, user_json(&ui));
}

static void update_user(struct admin_ctx *x)
{
	static const char *const fields[] = { "password", "role", "enabled", NULL };
	struct cfx_auth_user_info ui;
	const char *pw = NULL;
	int enabled = -1, super, rc;
	json_t *o;

	if (!auth_ready(x) || !(o = admin__body_object(x, fields)))
		return;
	if (admin__member_str(x, o, "password", &pw) < 0 || admin__member_bool(x, o, "enabled", &enabled) < 0 ||
	    (super = member_role(x, o)) == -2)
		goto out;
	rc = cfx_auth_user_update(x->svc->o.auth, x->param, pw, pw ? strlen(pw) : 0, super,
				  enabled);
	if (rc == CFX_ELOCKED) {
		http_response_error(x->resp, 409, "user \"%s\" is the last enabled super user; "
				    "make another one first", x->param);
		goto out;
	}
	if (rc == CFX_EINVAL) {
		http_response_error(x->resp, 400, "a password is 1 to %d bytes",
				    CFX_AUTH_PASSWORD_MAX);
		goto out;
	}
	if (!rc)
		rc = cfx_auth_user_get(x->svc->o.auth, x->param, &ui);
	if (rc) {
		reply_about(x, rc, "user", x->param);
		goto out;
	}
	http_response_json(x->resp, 200, user_json(&ui));
out:
	json_decref(o);
}

static void delete_user(struct admin_ctx *x)
{
	int rc;

	if (!auth_ready(x))
		return;
	rc = cfx_auth_user_delete(x->svc->o.auth, x->param);
	if (rc == CFX_ELOCKED) {
		http_response_error(x->resp, 409, "user \"%s\" is the last enabled super user; "
				    "make another one first", x->param);
		return;
	}
	if (rc) {
		reply_about(x, rc, "user", x->param);
		return;
	}
	x->resp->status = 204;
}

static void create_token(struct admin_ctx *x)
{
	char tok[CFX_AUTH_TOKEN_LEN + 1];
	int rc;

	if (!auth_ready(x))
		return;
	rc = cfx_auth_token_create(x->svc->o.auth, x->param, tok);
	if (rc == CFX_E2BIG) {
		http_response_error(x->resp, 409, "user \"%s\" has the most tokens a user may have",
				    x->param);
		return;
	}
	if (rc) {
		reply_about(x, rc, "user", x->param);
		return;
	}
	http_response_json(x->resp, 201, json_pack("{s:s, s:s}", "user", x->param, "token", tok));
}

static json_t *acl_json(const struct cfx_auth_acl *c)
{
	json_t *acts = json_array();
	char res[CFX_AUTH_NAME_MAX + 16];

	if (c->actions == CFX_AUTH_ALL)
		json_array_append_new(acts, json_string("ALL"));
	else
		for (unsigned b = 0; b < 7; b++)
			if (c->actions & (1u << b))
				json_array_append_new(acts, json_string(cfx_auth_action_name(1u << b)));
	if (c->resource == CFX_AUTH_CLUSTER || c->pattern == CFX_AUTH_ANY)
		snprintf(res, sizeof res, "%s", cfx_auth_resource_name(c->resource));
	else
		snprintf(res, sizeof res, "%s:%s", cfx_auth_resource_name(c->resource), c->name);
	return json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:s}", "id", (json_int_t)c->id, "subject",
			 c->subject, "resource", res, "pattern", cfx_auth_pattern_name(c->pattern),
			 "actions", acts, "source", c->source, "decision",
			 c->deny ? "deny" : "allow");
}

struct acl_list {
	json_t *arr;
	const char *subject;
};

static void add_acl(void *arg, const struct cfx_auth_acl *c)
{
	struct acl_list *l = arg;

	if (!l->subject || !strcmp(l->subject, c->subject))
		json_array_append_new(l->arr, acl_json(c));
}

static void list_acls(struct admin_ctx *x)
{
	static const char *const params[] = { "subject", NULL };
	struct acl_list l;

	if (!auth_ready(x) || admin__query_only(x, params))
		return;
	l.arr = json_array();
	l.subject = admin__query_get(x, "subject");
	cfx_auth_acl_foreach(x->svc->o.auth, add_acl, &l);
	http_response_json(x->resp, 200, json_pack("{s:o}", "acls", l.arr));
}

static void create_acl(struct admin_ctx *x)
{
	static const char *const fields[] = { "subject", "resource", "pattern", "actions",
					      "source", "decision", NULL };
	struct cfx_auth_acl c = { 0 };
	const char *subject = NULL, *res = NULL, *pattern = NULL, *source = NULL, *decision = NULL;
	const char *why, *colon;
	json_t *o, *acts, *v;
	size_t i;
	int rc;

	if (!auth_ready(x) || !(o = admin__body_object(x, fields)))
		return;
	if (admin__member_str(x, o, "subject", &subject) < 0 || admin__member_str(x, o, "resource", &res) < 0 ||
	    admin__member_str(x, o, "pattern", &pattern) < 0 || admin__member_str(x, o, "source", &source) < 0 ||
	    admin__member_str(x, o, "decision", &decision) < 0)
		goto out;
	acts = json_object_get(o, "actions");
	if (!subject || !res || !json_is_array(acts) || !json_array_size(acts)) {
		http_response_error(x->resp, 400, "\"subject\", \"resource\" and \"actions\" (an "
				    "array) are required");
		goto out;
	}
	if (snprintf(c.subject, sizeof c.subject, "%s", subject) >= (int)sizeof c.subject) {
		http_response_error(x->resp, 400, "\"subject\" is too long");
		goto out;
	}
	/* "cluster", "topic", "topic:NAME", "group:NAME" */
	colon = strchr(res, ':');
	{
		char type[16];
		size_t tl = colon ? (size_t)(colon - res) : strlen(res);
		if (tl >= sizeof type) {
			http_response_error(x->resp, 400, "\"resource\" must be cluster, topic:NAME "
					    "or group:NAME");
			goto out;
		}
		memcpy(type, res, tl);
		type[tl] = 0;
		if (cfx_auth_resource_parse(type, &c.resource)) {
			http_response_error(x->resp, 400, "\"resource\" must be cluster, topic:NAME "
					    "or group:NAME");
			goto out;
		}
	}
	if (colon && snprintf(c.name, sizeof c.name, "%s", colon + 1) >= (int)sizeof c.name) {
		http_response_error(x->resp, 400, "the resource name is longer than %d bytes",
				    CFX_AUTH_NAME_MAX);
		goto out;
	}
	c.pattern = colon && c.name[0] ? CFX_AUTH_LITERAL : CFX_AUTH_ANY;
	if (pattern && cfx_auth_pattern_parse(pattern, &c.pattern)) {
		http_response_error(x->resp, 400, "\"pattern\" must be literal, prefixed or any");
		goto out;
	}
	json_array_foreach(acts, i, v)
	{
		unsigned bit;
		if (!json_is_string(v) || cfx_auth_action_parse(json_string_value(v), &bit)) {
			http_response_error(x->resp, 400, "\"actions\" are some of PUB, SUB, CREATE, "
					    "UPDATE, DELETE, GET, LIST, ALL");
			goto out;
		}
		c.actions |= bit;
	}
	if (source && snprintf(c.source, sizeof c.source, "%s", source) >= (int)sizeof c.source) {
		http_response_error(x->resp, 400, "\"source\" is too long");
		goto out;
	}
	if (decision && strcmp(decision, "allow") && strcmp(decision, "deny")) {
		http_response_error(x->resp, 400, "\"decision\" must be \"allow\" or \"deny\"");
		goto out;
	}
	c.deny = decision && !strcmp(decision, "deny");
	rc = cfx_auth_acl_create(x->svc->o.auth, &c, &why);
	if (rc == CFX_EINVAL) {
		http_response_error(x->resp, 400, "%s", why ? why : "invalid policy");
		goto out;
	}
	if (rc) {
		admin__reply_cfx(x, rc, "policy");
		goto out;
	}
	http_response_json(x->resp, 201, acl_json(&c));
out:
	json_decref(o);
}

static void delete_acl(struct admin_ctx *x)
{
	char *end;
	unsigned long long id;
	int rc;

	if (!auth_ready(x))
		return;
	errno = 0;
	id = strtoull(x->param, &end, 10);
	if (*end || errno || !id) {
		http_response_error(x->resp, 400, "a policy id is a positive integer");
		return;
	}
	rc = cfx_auth_acl_delete(x->svc->o.auth, id);
	if (rc) {
		reply_about(x, rc, "policy", x->param);
		return;
	}
	x->resp->status = 204;
}

/* GET /v1/whoami: who the request is signed in as. */
static void whoami(struct admin_ctx *x)
{
	struct cfx_auth *a = x->svc->o.auth;
	bool on = a && cfx_auth_enabled(a);

	http_response_json(x->resp, 200,
			   json_pack("{s:o, s:b, s:b}", "user",
				     x->user ? json_string(x->user) : json_null(), "super",
				     !on || cfx_auth_is_super(a, x->user), "authentication", on));
}

/* ------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------ */

enum route_kind {
	ROUTE_ADMIN, /* changes or reveals broker state: signed-in clients only */
	ROUTE_OPEN,  /* served to loopback clients without signing in (/metrics) */
};

/* Where the resource name of a route's authorization comes from. */
enum name_from { NAME_NONE, NAME_PARAM, NAME_QUERY_TOPIC };

#define ACT_SIGNED_IN 0	     /* any signed-in user (or the route checks for itself) */
#define ACT_SUPER (1u << 15) /* super users only */

struct route {
	const char *pattern; /* path segments; "*" matches one segment, a {name} (two at most) */
	const char *allow;   /* the methods, for 405 answers */
	enum route_kind kind;
	struct {
		int method;
		void (*fn)(struct admin_ctx *x);
		enum cfx_auth_resource res;
		unsigned action;	/* one enum cfx_auth_action bit, ACT_SIGNED_IN or ACT_SUPER */
		enum name_from name;
	} m[3];
};

#define CLUSTER_LIST CFX_AUTH_CLUSTER, CFX_AUTH_LIST, NAME_NONE
#define SIGNED_IN CFX_AUTH_CLUSTER, ACT_SIGNED_IN, NAME_NONE
#define SUPER CFX_AUTH_CLUSTER, ACT_SUPER, NAME_NONE
#define TOPIC(act) CFX_AUTH_TOPIC, CFX_AUTH_##act, NAME_PARAM
#define GROUP(act) CFX_AUTH_GROUP, CFX_AUTH_##act, NAME_PARAM
#define CLUSTER(act) CFX_AUTH_CLUSTER, CFX_AUTH_##act, NAME_NONE

static const struct route routes[] = {
	{ "/v1/status", "GET, HEAD", ROUTE_ADMIN, { { HTTP_GET, get_status, SIGNED_IN } } },
	{ "/v1/whoami", "GET, HEAD", ROUTE_ADMIN, { { HTTP_GET, whoami, SIGNED_IN } } },
	{ "/v1/topics", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, list_topics, CLUSTER_LIST }, { HTTP_POST, create_topic, SIGNED_IN } } },
	{ "/v1/topics/*", "GET, HEAD, PATCH, DELETE", ROUTE_ADMIN,
	  { { HTTP_GET, get_topic, TOPIC(GET) },
	    { HTTP_PATCH, update_topic, TOPIC(UPDATE) },
	    { HTTP_DELETE, delete_topic, TOPIC(DELETE) } } },
	{ "/v1/groups", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, list_groups, CLUSTER_LIST }, { HTTP_POST, create_group, SIGNED_IN } } },
	{ "/v1/groups/*", "GET, HEAD, PATCH, DELETE", ROUTE_ADMIN,
	  { { HTTP_GET, get_group, GROUP(GET) },
	    { HTTP_PATCH, update_group, GROUP(UPDATE) },
	    { HTTP_DELETE, delete_group, GROUP(DELETE) } } },
	{ "/v1/groups/*/reset", "POST", ROUTE_ADMIN, { { HTTP_POST, reset_group, GROUP(UPDATE) } } },
	{ "/v1/groups/*/dlq", "GET, HEAD", ROUTE_ADMIN, { { HTTP_GET, list_dlq, GROUP(GET) } } },
	{ "/v1/groups/*/dlq/redrive", "POST", ROUTE_ADMIN,
	  { { HTTP_POST, redrive_dlq, GROUP(UPDATE) } } },
	{ "/v1/messages", "GET, HEAD", ROUTE_ADMIN,
	  { { HTTP_GET, get_messages, CFX_AUTH_TOPIC, CFX_AUTH_SUB, NAME_QUERY_TOPIC } } },
	{ "/v1/users", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, list_users, SUPER }, { HTTP_POST, create_user, SUPER } } },
	{ "/v1/users/*", "GET, HEAD, PATCH, DELETE", ROUTE_ADMIN,
	  { { HTTP_GET, get_user, SUPER },
	    { HTTP_PATCH, update_user, SUPER },
	    { HTTP_DELETE, delete_user, SUPER } } },
	{ "/v1/users/*/tokens", "POST", ROUTE_ADMIN, { { HTTP_POST, create_token, SUPER } } },
	{ "/v1/acls", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, list_acls, SUPER }, { HTTP_POST, create_acl, SUPER } } },
	{ "/v1/acls/*", "DELETE", ROUTE_ADMIN, { { HTTP_DELETE, delete_acl, SUPER } } },
	/* The EventBridge (events.c): a bus is authorized as its topic. */
	{ "/v1/buses", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, admin__bus_list, CLUSTER_LIST },
	    { HTTP_POST, admin__bus_create, SIGNED_IN } } }, /* CREATE on the topic in the body */
	{ "/v1/buses/*", "GET, HEAD, DELETE", ROUTE_ADMIN,
	  { { HTTP_GET, admin__bus_get, TOPIC(GET) },
	    { HTTP_DELETE, admin__bus_delete, TOPIC(DELETE) } } },
	{ "/v1/buses/*/events", "GET, POST", ROUTE_ADMIN,
	  { { HTTP_POST, admin__events_put, TOPIC(PUB) },
	    { HTTP_GET, admin__events_pull, TOPIC(SUB) } } }, /* and SUB on the group */
	{ "/v1/buses/*/replay", "POST", ROUTE_ADMIN,
	  { { HTTP_POST, admin__bus_replay, TOPIC(UPDATE) } } },
	{ "/v1/buses/*/rules", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, admin__rule_list, TOPIC(GET) },
	    { HTTP_POST, admin__rule_create, TOPIC(UPDATE) } } },
	{ "/v1/buses/*/rules/*", "GET, HEAD, PUT, DELETE", ROUTE_ADMIN,
	  { { HTTP_GET, admin__rule_get, TOPIC(GET) },
	    { HTTP_PUT, admin__rule_put, TOPIC(UPDATE) },
	    { HTTP_DELETE, admin__rule_delete, TOPIC(UPDATE) } } },
	{ "/v1/rules/test", "POST", ROUTE_ADMIN, { { HTTP_POST, admin__rule_test, SIGNED_IN } } },
	{ "/v1/targets", "GET, HEAD, POST", ROUTE_ADMIN,
	  { { HTTP_GET, admin__target_list, CLUSTER_LIST },
	    { HTTP_POST, admin__target_create, CLUSTER(UPDATE) } } },
	{ "/v1/targets/*", "GET, HEAD, PUT, DELETE", ROUTE_ADMIN,
	  { { HTTP_GET, admin__target_get, CLUSTER(GET) },
	    { HTTP_PUT, admin__target_put, CLUSTER(UPDATE) },
	    { HTTP_DELETE, admin__target_delete, CLUSTER(UPDATE) } } },
	{ "/metrics", "GET, HEAD", ROUTE_OPEN, { { HTTP_GET, get_metrics, SIGNED_IN } } },
};

#define ROUTE_STARS_MAX 2 /* {name} segments of one route */

/*
 * Does the raw path match `pattern`? Segment by segment; each "*" takes one
 * non-empty segment, whose raw bytes go to star[0], then star[1].
 */
static int path_matches(const char *pattern, struct cfx_view path,
			struct cfx_view star[ROUTE_STARS_MAX])
{
	const char *pp = pattern;
	size_t i = 0, nstar = 0;

	while (*pp && i < path.len) {
		if (*pp != '/' || path.p[i] != '/')
			return 0;
		pp++;
		i++;
		size_t j = i;
		while (j < path.len && path.p[j] != '/')
			j++;
		const char *pe = strchr(pp, '/');
		size_t plen = pe ? (size_t)(pe - pp) : strlen(pp);
		if (plen == 1 && *pp == '*') {
			if (j == i)
				return 0;
			CFX_ASSERT(nstar < ROUTE_STARS_MAX); /* a route with more is a programmer error */
			star[nstar++] = (struct cfx_view){ path.p + i, j - i };
		} else if (plen != j - i || memcmp(pp, path.p + i, plen)) {
			return 0;
		}
		pp += plen;
		i = j;
	}
	return !*pp && i == path.len;
}

/* ------------------------------------------------------------------------
 * Signing in: Bearer tokens, Basic passwords (checked on the auth thread)
 * ------------------------------------------------------------------------ */

static void unauthorized(struct admin_ctx *x, const char *user, const char *why)
{
	struct cfx_auth *a = x->svc->o.auth;

	cfx_auth_note_failure(a, CFX_AUTH_HTTP, x->req->peer, user, why);
	http_response_error(x->resp, 401, "%s", why);
	x->resp->www_authenticate = "Basic realm=\"conflux\", Bearer realm=\"conflux\"";
}

static bool peer_is_loopback(const char *peer)
{
	struct cfx_auth_peer p;
	static const uint8_t v6_loopback[16] = { [15] = 1 };

	cfx_auth_peer_parse(peer, &p);
	return (p.family == 4 && p.addr[0] == 127) ||
	       (p.family == 6 && !memcmp(p.addr, v6_loopback, 16));
}

static void handle_as(struct admin_service *svc, const struct http_request *req,
		      struct http_response *resp, const char *user, int signed_in);

/* A request waiting for its Basic password check; owns copies of the request. */
struct pending_basic {
	struct admin_service *svc;
	struct cfx_loop *loop;
	struct http_later *later;
	struct http_request req;
	struct cfx_ce_header *ce;  /* copies of req.ce_headers (names and values owned) */
	char peer[64];
	char user[CFX_AUTH_USER_MAX + 1];
	int rc;
};

static void pending_basic_free(struct pending_basic *pb)
{
	for (size_t i = 0; pb->ce && i < pb->req.ce_headers_n; i++) {
		cfx_free((void *)pb->ce[i].name);
		cfx_free((void *)pb->ce[i].value);
	}
	cfx_free(pb->ce);
	cfx_free((void *)pb->req.target.p);
	cfx_free((void *)pb->req.content_type.p);
	cfx_free((void *)pb->req.body.p);
	cfx_free(pb);
}

static void basic_checked_task(void *arg)
{
	struct pending_basic *pb = arg;
	struct admin_service *svc = pb->svc;
	struct http_response resp;

	if (pb->later) {
		http_response_init(&resp);
		/* A route that defers (ingress, replay, a long poll) takes the ticket on. */
		http_response_reuse_later(&resp, pb->later);
		if (pb->rc == 0) {
			handle_as(svc, &pb->req, &resp, pb->user, 1);
		} else {
			struct admin_ctx x = { .svc = svc, .req = &pb->req, .resp = &resp };
			unauthorized(&x, pb->user, "wrong user name or password");
		}
		if (!resp.deferred) {
			if (resp.status == 0)
				http_response_error(&resp, 500, "the request was not answered");
			http_later_answer(pb->later, &resp);
		}
		http_response_free(&resp);
		pthread_mutex_lock(&svc->mu);
		svc->deferred--;
		pthread_cond_broadcast(&svc->cv);
		pthread_mutex_unlock(&svc->mu);
	}
	pending_basic_free(pb);
}

/* @thread auth */
static void basic_checked(void *arg, int rc)
{
	struct pending_basic *pb = arg;

	pb->rc = rc;
	cfx_loop_post(pb->loop, basic_checked_task, pb);
}

static struct cfx_view view_dup(struct cfx_view v)
{
	uint8_t *p = cfx_malloc(v.len + 1);
	memcpy(p, v.p, v.len);
	p[v.len] = 0;
	return (struct cfx_view){ p, v.len };
}

/*
 * Who is asking. Returns 0 to go on (x->user set, or NULL for anonymous
 * where that is allowed), 1 when the answer is set (401), 2 when it was
 * deferred until the password is checked.
 */
static int authenticate(struct admin_ctx *x, const struct route *r, char *user)
{
	struct cfx_auth *a = x->svc->o.auth;
	struct cfx_view h = x->req->authorization;
	const struct http_request *req = x->req;

	if (!a || !cfx_auth_enabled(a))
		return 0;
	if (r->kind == ROUTE_OPEN && peer_is_loopback(req->peer))
		return 0;
	if (h.len == 0) {
		if (cfx_auth_anonymous_ok(a))
			return 0;
		unauthorized(x, NULL, "sign in with Authorization: Basic or Bearer");
		return 1;
	}
	if (h.len > 7 && !strncasecmp((const char *)h.p, "Bearer ", 7)) {
		if (cfx_auth_token_check(a, (const char *)h.p + 7, h.len - 7, user)) {
			unauthorized(x, NULL, "unknown or revoked token");
			return 1;
		}
		x->user = user;
		return 0;
	}
	if (h.len > 6 && !strncasecmp((const char *)h.p, "Basic ", 6)) {
		uint8_t dec[HTTP_AUTHZ_BYTES_MAX];
		size_t n = 0;
		const uint8_t *colon;
		int rc;

		if (cfx_base64_decode((const char *)h.p + 6, h.len - 6, dec, sizeof dec, &n) ||
		    !(colon = memchr(dec, ':', n)) || colon == dec ||
		    (size_t)(colon - dec) > CFX_AUTH_USER_MAX) {
			unauthorized(x, NULL, "malformed Basic credentials");
			return 1;
		}
		size_t ulen = (size_t)(colon - dec);
		memcpy(user, dec, ulen);
		user[ulen] = 0;
		struct cfx_loop *loop = cfx_loop_current();
		struct pending_basic *pb = NULL;
		if (loop) {
			pb = cfx_calloc(1, sizeof *pb);
			pb->svc = x->svc;
			pb->loop = loop;
			snprintf(pb->user, sizeof pb->user, "%s", user);
		}
		rc = cfx_auth_password_check(a, user, ulen, (const char *)colon + 1,
					     n - ulen - 1, pb ? basic_checked : NULL, pb);
		OPENSSL_cleanse(dec, sizeof dec);
		if (rc != CFX_AGAIN) {
			if (pb)
				cfx_free(pb);
			if (rc) {
				unauthorized(x, user, "wrong user name or password");
				return 1;
			}
			x->user = user;
			return 0;
		}
		/* The check runs on the auth thread: answer when it is done. */
		pthread_mutex_lock(&x->svc->mu);
		if (!x->svc->stopping)
			pb->later = http_response_defer(x->resp);
		if (pb->later)
			x->svc->deferred++;
		pthread_mutex_unlock(&x->svc->mu);
		if (!pb->later) {
			/* basic_checked_task only frees it. */
			http_response_error(x->resp, 503, "the server is shutting down");
			return 1;
		}
		pb->req = *req;
		pb->req.target = view_dup(req->target);
		pb->req.content_type = view_dup(req->content_type);
		pb->req.body = view_dup(req->body);
		if (req->ce_headers_n) {
			pb->ce = cfx_calloc(req->ce_headers_n, sizeof *pb->ce);
			for (size_t i = 0; i < req->ce_headers_n; i++) {
				const struct cfx_ce_header *h = &req->ce_headers[i];
				struct cfx_view n = view_dup((struct cfx_view){
					(const uint8_t *)h->name, h->name_len });
				struct cfx_view v = view_dup((struct cfx_view){
					(const uint8_t *)h->value, h->value_len });
				pb->ce[i] = (struct cfx_ce_header){ (const char *)n.p, n.len,
								    (const char *)v.p, v.len };
			}
		}
		pb->req.ce_headers = pb->ce;
		pb->req.authorization = (struct cfx_view){ 0 };
		snprintf(pb->peer, sizeof pb->peer, "%s", req->peer ? req->peer : "");
		pb->req.peer = pb->peer;
		return 2;
	}
	unauthorized(x, NULL, "the Authorization scheme must be Basic or Bearer");
	return 1;
}

/* Whether the signed-in user may call the route; sets 403 if not. */
static bool route_allowed(struct admin_ctx *x, enum cfx_auth_resource res, unsigned action,
			  enum name_from from)
{
	struct cfx_auth *a = x->svc->o.auth;
	const char *name = NULL;

	if (!a || !cfx_auth_enabled(a) || action == ACT_SIGNED_IN)
		return true;
	if (action == ACT_SUPER) {
		if (cfx_auth_is_super(a, x->user))
			return true;
		cfx_auth_note_denial(a, CFX_AUTH_HTTP, x->req->peer, x->user, CFX_AUTH_ALL,
				     CFX_AUTH_CLUSTER, NULL, 0);
		http_response_error(x->resp, 403, "only super users manage users and policies");
		return false;
	}
	if (from == NAME_PARAM)
		name = x->param;
	else if (from == NAME_QUERY_TOPIC) {
		name = admin__query_get(x, "topic");
		if (!name && !cfx_auth_is_super(a, x->user)) {
			http_response_error(x->resp, 403, "only super users look messages up "
					    "without naming their topic");
			return false;
		}
		if (!name)
			return true;
	}
	return admin__allowed(x, res, name, action);
}

static void handle_as(struct admin_service *svc, const struct http_request *req,
		      struct http_response *resp, const char *signed_in_as, int signed_in)
{
	struct admin_ctx x = { .svc = svc, .req = req, .resp = resp };
	struct http_parser_url u;
	struct cfx_view path, query = { 0 }, star[ROUTE_STARS_MAX] = { { 0 } };
	const struct route *r = NULL;
	size_t mi = 0;
	char user[CFX_AUTH_USER_MAX + 1];

	x.br = x.svc->o.br;
	http_parser_url_init(&u);
	if (http_parser_parse_url((const char *)req->target.p, req->target.len,
				  req->method == HTTP_CONNECT, &u) ||
	    !(u.field_set & (1u << UF_PATH))) {
		http_response_error(resp, 400, "malformed request target");
		return;
	}
	path = (struct cfx_view){ req->target.p + u.field_data[UF_PATH].off,
				  u.field_data[UF_PATH].len };
	if (u.field_set & (1u << UF_QUERY))
		query = (struct cfx_view){ req->target.p + u.field_data[UF_QUERY].off,
					   u.field_data[UF_QUERY].len };
	for (size_t i = 0; i < CFX_ARRAY_LEN(routes) && !r; i++) {
		memset(star, 0, sizeof star); /* a route that failed late may have set some */
		if (path_matches(routes[i].pattern, path, star))
			r = &routes[i];
	}
	if (!r) {
		http_response_error(resp, 404, "no such resource: %.*s",
				    (int)CFX_MIN(path.len, 200), path.p);
		return;
	}
	/* HEAD is GET without the body (http.c leaves the body out). */
	for (mi = 0; mi < CFX_ARRAY_LEN(r->m); mi++)
		if (r->m[mi].fn && (r->m[mi].method == req->method ||
				    (req->method == HTTP_HEAD && r->m[mi].method == HTTP_GET)))
			break;
	if (mi == CFX_ARRAY_LEN(r->m)) {
		http_response_error(resp, 405, "%s is not allowed on %s (allowed: %s)",
				    req->method_name, r->pattern, r->allow);
		resp->allow = r->allow;
		return;
	}
	if (signed_in) {
		x.user = signed_in_as;
	} else {
		int rc = authenticate(&x, r, user);
		if (rc)
			return;
	}
	if (star[0].p) {
		x.param = url_decode(star[0].p, star[0].len, 0);
		if (star[1].p && x.param)
			x.param2 = url_decode(star[1].p, star[1].len, 0);
		if (!x.param || (star[1].p && !x.param2)) {
			cfx_free(x.param);
			http_response_error(resp, 400, "malformed name in the path");
			return;
		}
	}
	if (parse_query(&x, query) == 0 &&
	    route_allowed(&x, r->m[mi].res, r->m[mi].action, r->m[mi].name))
		r->m[mi].fn(&x);
	cfx_free(x.param);
	cfx_free(x.param2);
	for (uint32_t i = 0; i < x.nq; i++) {
		cfx_free(x.q[i].key);
		cfx_free(x.q[i].value);
	}
}

static void admin_handle(void *arg, const struct http_request *req, struct http_response *resp)
{
	handle_as(arg, req, resp, NULL, 0);
}

/* ------------------------------------------------------------------------
 * The service
 * ------------------------------------------------------------------------ */

struct admin_service *admin_service_new(const struct admin_opts *o)
{
	struct admin_service *svc = cfx_calloc(1, sizeof *svc);

	svc->o = *o;
	snprintf(svc->version, sizeof svc->version, "%s", o->version ? o->version : "");
	snprintf(svc->broker_name, sizeof svc->broker_name, "%s",
		 o->broker_name ? o->broker_name : "");
	svc->o.version = svc->version;
	svc->o.broker_name = svc->broker_name;
	if (!svc->o.default_queues)
		svc->o.default_queues = 8;
	svc->http.handle = admin_handle;
	svc->http.arg = svc;
	svc->start_wall_ms = cfx_clock_wall_ms();
	svc->start_mono_ms = cfx_clock_mono_ms();
	pthread_mutex_init(&svc->mu, NULL);
	pthread_cond_init(&svc->cv, NULL);
	return svc;
}

void admin_service_stop(struct admin_service *svc)
{
	if (!svc)
		return;
	pthread_mutex_lock(&svc->mu);
	svc->stopping = 1;
	pthread_mutex_unlock(&svc->mu);
	admin__events_stop(svc); /* long polls answer now */
	pthread_mutex_lock(&svc->mu);
	if (svc->deferred)
		cfx_log_info("http: waiting for %u deferred answer(s) (re-drives, event "
			     "ingress, replays, long polls)", svc->deferred);
	while (svc->deferred)
		pthread_cond_wait(&svc->cv, &svc->mu);
	pthread_mutex_unlock(&svc->mu);
}

uint32_t admin_service_deferred(struct admin_service *svc)
{
	uint32_t n;

	pthread_mutex_lock(&svc->mu);
	n = svc->deferred;
	pthread_mutex_unlock(&svc->mu);
	return n;
}

void admin_service_free(struct admin_service *svc)
{
	if (!svc)
		return;
	CFX_ASSERT(admin_service_deferred(svc) == 0);
	pthread_mutex_destroy(&svc->mu);
	pthread_cond_destroy(&svc->cv);
	cfx_free(svc);
}

void admin_service_add_metrics(struct admin_service *svc, admin_metrics_fn fn, void *arg)
{
	CFX_ASSERT(svc->nmetrics < ADMIN_METRICS_MAX);
	svc->metrics[svc->nmetrics].fn = fn;
	svc->metrics[svc->nmetrics].arg = arg;
	svc->nmetrics++;
}

void admin_service_set_listener(struct admin_service *svc, const char *name, const char *addr)
{
	struct admin_listener *l = NULL;

	for (uint32_t i = 0; i < svc->nlisteners && !l; i++)
		if (!strcmp(svc->listeners[i].name, name))
			l = &svc->listeners[i];
	if (!l) {
		CFX_ASSERT(svc->nlisteners < ADMIN_LISTENERS_MAX);
		l = &svc->listeners[svc->nlisteners++];
		snprintf(l->name, sizeof l->name, "%s", name);
	}
	snprintf(l->addr, sizeof l->addr, "%s", addr ? addr : "");
}
