/*
 * events.c - the EventBridge routes of the admin HTTP API: CloudEvents
 * ingress (POST /v1/buses/{bus}/events, binary, structured and batched
 * modes), pull with long polling (GET /v1/buses/{bus}/events), buses,
 * rules, targets, replay, and the pattern tester. Shapes and examples:
 * docs/admin-api.md; the user guide: docs/eventbridge.md.
 *
 * What it does not do: parse or encode CloudEvents (events/cloudevent.c),
 * validate definitions, store, route or deliver events (src/bridge). The
 * routing, signing in and the route table are admin.c's; this file has
 * the handlers, reached through admin_int.h.
 *
 * Three kinds of answer wait for other threads and are deferred (http.h,
 * "Answering later"), counted in svc->deferred for shutdown:
 *
 *   ingress  cfx_bridge_put -> done (any thread) -> post -> put_answer
 *   replay   cfx_bridge_replay -> fn (router thread) -> post -> replay_answer
 *   pull     nothing now and wait_ms > 0: a long poll (below)
 *
 * A long poll (struct admin_poll) lives on the connection's loop:
 *
 *   waiting --watch fired (posted)--> pull: events -> answered
 *      |                                    none   -> watch again, pull once more
 *      +--deadline timer--> pull once more, else 204 -> answered
 *      +--admin__events_stop (posted)--> 204 -> answered
 *
 * Invariants: at most one watch is registered at a time; every path to
 * "answered" goes through poll_finish, once; the poll is freed when its
 * references drop to 0: one for the unanswered request, one per watch
 * registered and not cancelled, one per task posted and not run.
 * References are atomic because the stop task is posted from the thread
 * that stops the service; everything else runs on the poll's loop.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "bridge/bridge.h"
#include "events/cloudevent.h"
#include "net/loop.h"
#include "proto/http/admin_int.h"

#define PULL_WAIT_MS_MAX 30000	     /* wait_ms of one pull */
#define BRIDGE_ERR_BYTES 512	     /* a validation message of the bridge or the codec */
#define CT_CE "application/cloudevents+json"
#define CT_CE_BATCH "application/cloudevents-batch+json"

/* ------------------------------------------------------------------------
 * Shared pieces
 * ------------------------------------------------------------------------ */

/* The bridge, or NULL with a 404 set when it is off. */
static struct cfx_bridge *bridge_or_404(struct admin_ctx *x)
{
	struct cfx_bridge *b = x->svc->o.bridge;

	if (!b)
		http_response_error(x->resp, 404, "the event bridge is off");
	return b;
}

/*
 * Maps an error of a bridge call about `kind` "name": CFX_EINVAL is 400
 * with the bridge's message, CFX_ENOENT 404, CFX_EEXIST 409 (`conflict`
 * says why when it is not "already exists").
 */
static void reply_bridge(struct admin_ctx *x, int rc, const char *err, const char *kind,
			 const char *name, const char *conflict)
{
	char what[CFX_BRIDGE_NAME_MAX + 32];

	snprintf(what, sizeof what, "%s \"%.*s\"", kind, CFX_BRIDGE_NAME_MAX, name ? name : "");
	switch (rc) {
	case CFX_EINVAL:
		http_response_error(x->resp, 400, "%s", err && *err ? err : cfx_strerror(rc));
		break;
	case CFX_EEXIST:
		if (conflict)
			http_response_error(x->resp, 409, "%s %s", what, conflict);
		else
			http_response_error(x->resp, 409, "%s already exists", what);
		break;
	default:
		admin__reply_cfx(x, rc, what);
		break;
	}
}

/* Answers a definition the bridge returned (a new reference), or 404. */
static void reply_def(struct admin_ctx *x, int status, json_t *def, const char *kind,
		      const char *name)
{
	if (!def) {
		reply_bridge(x, CFX_ENOENT, NULL, kind, name, NULL);
		return;
	}
	http_response_json(x->resp, status, def);
}

/* Answers {"<key>": [...]} from a list the bridge returned (a new reference). */
static void reply_list(struct admin_ctx *x, const char *key, json_t *list)
{
	http_response_json(x->resp, 200, json_pack("{s:o}", key, list ? list : json_array()));
}

/*
 * The body of a PUT of `kind` named by the path: its "name", if given,
 * must be that name; if absent it is set. Returns the object (a new
 * reference) or NULL with the answer set.
 */
static json_t *named_body(struct admin_ctx *x, const char *kind, const char *name)
{
	json_t *o = admin__body_object(x, NULL);
	const char *given = NULL;

	if (!o)
		return NULL;
	if (admin__member_str(x, o, "name", &given) < 0) {
		json_decref(o);
		return NULL;
	}
	if (given && strcmp(given, name)) {
		http_response_error(x->resp, 400, "the %s in the body (\"%.*s\") is not the one of "
				    "the path (\"%.*s\")", kind, CFX_BRIDGE_NAME_MAX, given,
				    CFX_BRIDGE_NAME_MAX, name);
		json_decref(o);
		return NULL;
	}
	if (!given)
		json_object_set_new(o, "name", json_string(name));
	return o;
}

/* The body's "name", required; NULL with a 400 set. Borrowed from `o`. */
static const char *body_name(struct admin_ctx *x, json_t *o)
{
	const char *name = NULL;

	if (admin__member_str(x, o, "name", &name) < 0)
		return NULL;
	if (!name)
		http_response_error(x->resp, 400, "\"name\" is required");
	return name;
}

/* ------------------------------------------------------------------------
 * Buses: /v1/buses, /v1/buses/{bus}
 * ------------------------------------------------------------------------ */

void admin__bus_list(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);

	if (b)
		reply_list(x, "buses", cfx_bridge_bus_list(b));
}

void admin__bus_create(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);
	char err[BRIDGE_ERR_BYTES] = "";
	const char *name;
	json_t *o;
	int rc;

	if (!b || !(o = admin__body_object(x, NULL)))
		return;
	name = body_name(x, o);
	if (name && admin__allowed(x, CFX_AUTH_TOPIC, name, CFX_AUTH_CREATE)) {
		rc = cfx_bridge_bus_create(b, o, err, sizeof err);
		if (rc)
			reply_bridge(x, rc, err, "bus", name, NULL);
		else
			reply_def(x, 201, cfx_bridge_bus_get(b, name), "bus", name);
	}
	json_decref(o);
}

void admin__bus_get(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);

	if (b)
		reply_def(x, 200, cfx_bridge_bus_get(b, x->param), "bus", x->param);
}

void admin__bus_delete(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);
	int rc;

	if (!b)
		return;
	rc = cfx_bridge_bus_delete(b, x->param);
	if (rc == CFX_EINVAL)
		http_response_error(x->resp, 400, "the %s bus cannot be deleted",
				    CFX_BRIDGE_DEFAULT_BUS);
	else if (rc)
		reply_bridge(x, rc, NULL, "bus", x->param, NULL);
	else
		x->resp->status = 204;
}

/* ------------------------------------------------------------------------
 * Rules: /v1/buses/{bus}/rules, /v1/buses/{bus}/rules/{rule}, /v1/rules/test
 * ------------------------------------------------------------------------ */

/* The bridge, if the bus of the path exists (else 404). */
static struct cfx_bridge *bus_or_404(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);

	if (b && !cfx_bridge_bus_exists(b, x->param)) {
		reply_bridge(x, CFX_ENOENT, NULL, "bus", x->param, NULL);
		return NULL;
	}
	return b;
}

void admin__rule_list(struct admin_ctx *x)
{
	struct cfx_bridge *b = bus_or_404(x);

	if (b)
		reply_list(x, "rules", cfx_bridge_rule_list(b, x->param));
}

/* POST (create 1, name from the body) or PUT (create 0, name from the path). */
static void rule_put(struct admin_ctx *x, int create)
{
	struct cfx_bridge *b = bus_or_404(x);
	char err[BRIDGE_ERR_BYTES] = "";
	const char *name;
	json_t *o;
	int rc;

	if (!b)
		return;
	o = create ? admin__body_object(x, NULL) : named_body(x, "rule", x->param2);
	if (!o)
		return;
	name = body_name(x, o);
	if (name) {
		rc = cfx_bridge_rule_put(b, x->param, o, create, err, sizeof err);
		if (rc)
			reply_bridge(x, rc, err, "rule", name, NULL);
		else
			reply_def(x, create ? 201 : 200, cfx_bridge_rule_get(b, x->param, name),
				  "rule", name);
	}
	json_decref(o);
}

void admin__rule_create(struct admin_ctx *x)
{
	rule_put(x, 1);
}

void admin__rule_put(struct admin_ctx *x)
{
	rule_put(x, 0);
}

void admin__rule_get(struct admin_ctx *x)
{
	struct cfx_bridge *b = bus_or_404(x);

	if (b)
		reply_def(x, 200, cfx_bridge_rule_get(b, x->param, x->param2), "rule", x->param2);
}

void admin__rule_delete(struct admin_ctx *x)
{
	struct cfx_bridge *b = bus_or_404(x);
	int rc;

	if (!b)
		return;
	rc = cfx_bridge_rule_delete(b, x->param, x->param2);
	if (rc)
		reply_bridge(x, rc, NULL, "rule", x->param2, NULL);
	else
		x->resp->status = 204;
}

void admin__rule_test(struct admin_ctx *x)
{
	static const char *const fields[] = { "pattern", "event", NULL };
	struct cfx_bridge *b = bridge_or_404(x);
	char why[BRIDGE_ERR_BYTES] = "";
	char *pattern = NULL, *event = NULL;
	json_t *o;
	bool match = false;
	int rc;

	if (!b || !(o = admin__body_object(x, fields)))
		return;
	if (!json_is_object(json_object_get(o, "pattern")) ||
	    !json_is_object(json_object_get(o, "event"))) {
		http_response_error(x->resp, 400, "\"pattern\" and \"event\" are required, as JSON "
				    "objects");
		goto out;
	}
	pattern = json_dumps(json_object_get(o, "pattern"), JSON_COMPACT);
	event = json_dumps(json_object_get(o, "event"), JSON_COMPACT);
	CFX_ASSERT(pattern && event); /* objects jansson parsed always dump */
	rc = cfx_bridge_rule_test(pattern, strlen(pattern), event, strlen(event), &match, why,
				  sizeof why);
	if (rc == CFX_EINVAL) {
		http_response_error(x->resp, 400, "%s", why[0] ? why : "invalid pattern or event");
	} else if (rc) {
		admin__reply_cfx(x, rc, "rule test");
	} else if (match) {
		http_response_json(x->resp, 200, json_pack("{s:b}", "match", 1));
	} else {
		json_t *r = json_string(why[0] ? why : "no match");
		http_response_json(x->resp, 200, json_pack("{s:b, s:o}", "match", 0, "reason",
							   r ? r : json_string("no match")));
	}
out:
	free(pattern);
	free(event);
	json_decref(o);
}

/* ------------------------------------------------------------------------
 * Targets: /v1/targets, /v1/targets/{name}
 * ------------------------------------------------------------------------ */

void admin__target_list(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);

	if (b)
		reply_list(x, "targets", cfx_bridge_target_list(b));
}

static void target_put(struct admin_ctx *x, int create)
{
	struct cfx_bridge *b = bridge_or_404(x);
	char err[BRIDGE_ERR_BYTES] = "";
	const char *name;
	json_t *o;
	int rc;

	if (!b)
		return;
	o = create ? admin__body_object(x, NULL) : named_body(x, "target", x->param);
	if (!o)
		return;
	name = body_name(x, o);
	if (name) {
		rc = cfx_bridge_target_put(b, o, create, err, sizeof err);
		if (rc)
			reply_bridge(x, rc, err, "target", name, NULL);
		else
			reply_def(x, create ? 201 : 200, cfx_bridge_target_get(b, name), "target",
				  name);
	}
	json_decref(o);
}

void admin__target_create(struct admin_ctx *x)
{
	target_put(x, 1);
}

void admin__target_put(struct admin_ctx *x)
{
	target_put(x, 0);
}

void admin__target_get(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);

	if (b)
		reply_def(x, 200, cfx_bridge_target_get(b, x->param), "target", x->param);
}

void admin__target_delete(struct admin_ctx *x)
{
	struct cfx_bridge *b = bridge_or_404(x);
	int rc;

	if (!b)
		return;
	rc = cfx_bridge_target_delete(b, x->param);
	if (rc)
		reply_bridge(x, rc, NULL, "target", x->param,
			     "is used by a rule: delete the rule or change its targets first");
	else
		x->resp->status = 204;
}

/* ------------------------------------------------------------------------
 * Ingress: POST /v1/buses/{bus}/events
 * ------------------------------------------------------------------------ */

/* An ingress whose answer waits until the events are stored. */
struct put_call {
	struct admin_service *svc;
	struct http_later *later;
	struct cfx_loop *loop;
	size_t n;	  /* events */
	int err;	  /* of the store */
	char bus[CFX_BRIDGE_NAME_MAX + 1];
};

/* @thread the request's loop */
static void put_answer(void *arg)
{
	struct put_call *pc = arg;
	struct admin_service *svc = pc->svc;
	struct http_response resp;
	struct admin_ctx x = { .svc = svc, .br = svc->o.br, .resp = &resp };

	http_response_init(&resp);
	if (pc->err)
		reply_bridge(&x, pc->err, NULL, "bus", pc->bus, NULL);
	else
		http_response_json(&resp, 200, json_pack("{s:I}", "accepted", (json_int_t)pc->n));
	http_later_answer(pc->later, &resp);
	http_response_free(&resp);
	cfx_free(pc);
	admin__defer_end(svc);
}

/* The events are stored, or not. @thread any */
static void put_done(void *arg, int err)
{
	struct put_call *pc = arg;

	pc->err = err;
	cfx_loop_post(pc->loop, put_answer, pc);
}

/*
 * Reads the event(s) of the request in its content mode. Returns 0 with
 * *ces (new, *n of them), or -1 with the answer set: 415 for a CloudEvents
 * format this server does not read, 413 over a size limit, 400 for
 * anything else wrong (the codec's message).
 */
static int read_events(struct admin_ctx *x, const struct cfx_ce_limits *lim, struct cfx_ce **ces,
		       size_t *n)
{
	const struct http_request *req = x->req;
	struct cfx_view ct = req->content_type;
	char err[BRIDGE_ERR_BYTES] = "";
	int rc;

	*ces = NULL;
	*n = 0;
	if (req->content_type_cut) {
		http_response_error(x->resp, 400, "the Content-Type is longer than %u bytes",
				    (unsigned)HTTP_CTYPE_BYTES_MAX);
		return -1;
	}
	switch (cfx_ce_http_mode(ct.len ? (const char *)ct.p : NULL, ct.len)) {
	case CFX_CE_MODE_UNSUPPORTED:
		http_response_error(x->resp, 415, "this CloudEvents format is not read here: send "
				    CT_CE ", " CT_CE_BATCH " or the binary mode (ce- headers)");
		return -1;
	case CFX_CE_MODE_STRUCTURED:
		*ces = cfx_calloc(1, sizeof **ces);
		rc = cfx_ce_parse_structured(req->body.p, req->body.len, lim, *ces, err, sizeof err);
		if (rc)
			CFX_FREE(*ces);
		else
			*n = 1;
		break;
	case CFX_CE_MODE_BATCH:
		rc = cfx_ce_parse_batch(req->body.p, req->body.len, lim, ces, n, err, sizeof err);
		if (rc == 0 && *n == 0) {
			http_response_error(x->resp, 400, "the batch is empty");
			return -1;
		}
		break;
	case CFX_CE_MODE_BINARY:
	default: {
		struct cfx_ce_header h[HTTP_CE_HEADERS_MAX + 1];
		size_t nh = req->ce_headers_n;

		CFX_ASSERT(nh <= HTTP_CE_HEADERS_MAX); /* the codec's limit */
		memcpy(h, req->ce_headers, nh * sizeof *h);
		if (ct.len)
			h[nh++] = (struct cfx_ce_header){ "Content-Type", 12, (const char *)ct.p,
							  ct.len };
		*ces = cfx_calloc(1, sizeof **ces);
		rc = cfx_ce_parse_http_binary(h, nh, req->body.p, req->body.len, lim, *ces, err,
					      sizeof err);
		if (rc)
			CFX_FREE(*ces);
		else
			*n = 1;
		break;
	}
	}
	if (rc == CFX_EMSGSIZE || rc == CFX_EBATCHSIZE) {
		http_response_error(x->resp, 413, "%s", err[0] ? err : cfx_strerror(rc));
		return -1;
	}
	if (rc) {
		http_response_error(x->resp, 400, "%s", err[0] ? err : cfx_strerror(rc));
		return -1;
	}
	return 0;
}

void admin__events_put(struct admin_ctx *x)
{
	static const char *const params[] = { NULL };
	struct cfx_bridge *b = bridge_or_404(x);
	struct cfx_ce_limits lim;
	struct http_later *later;
	struct put_call *pc;
	struct cfx_ce *ces;
	size_t n;
	int rc;

	if (!b || admin__query_only(x, params))
		return;
	if (!cfx_bridge_bus_exists(b, x->param)) {
		reply_bridge(x, CFX_ENOENT, NULL, "bus", x->param, NULL);
		return;
	}
	lim = *cfx_bridge_limits(x->svc->o.bridge);
	if (read_events(x, &lim, &ces, &n))
		return; /* nothing stored */
	later = admin__defer_begin(x);
	if (!later) {
		cfx_ce_batch_free(ces, n);
		return;
	}
	pc = cfx_calloc(1, sizeof *pc);
	pc->svc = x->svc;
	pc->later = later;
	pc->loop = http_later_loop(later);
	pc->n = n;
	snprintf(pc->bus, sizeof pc->bus, "%s", x->param);
	/* All or nothing; `done` may run before this returns, on any thread. */
	rc = cfx_bridge_put(b, x->param, ces, n, put_done, pc);
	cfx_ce_batch_free(ces, n);
	if (rc) {
		pc->err = rc;
		cfx_loop_post(pc->loop, put_answer, pc);
	}
}

/* ------------------------------------------------------------------------
 * Pull: GET /v1/buses/{bus}/events?group=G&max=N&wait_ms=W
 * ------------------------------------------------------------------------ */

/* Emits one attribute as a ce- header line of the response. */
static int emit_header(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	return http_response_header(ctx, name, nlen, value, vlen);
}

/*
 * One event in the HTTP binary mode: ce- headers, Content-Type, the data as
 * the body. Returns -1 (headers and type left unset) when its attributes do
 * not fit the response's header limits; the caller then answers in the
 * structured mode.
 */
static int answer_binary(struct http_response *resp, const struct cfx_ce *ce)
{
	const char *ct = cfx_ce_binary_content_type(ce);

	if (cfx_ce_emit_attrs(ce, CFX_CE_BINDING_HTTP, emit_header, resp) ||
	    (ct && http_response_content_type(resp, ct, strlen(ct)))) {
		cfx_writer_reset(&resp->headers);
		resp->nheaders = 0;
		resp->content_type = NULL;
		CFX_FREE(resp->ctype_owned);
		return -1;
	}
	resp->status = 200;
	if (ce->has_data)
		cfx_write_bytes(&resp->body, ce->data, ce->data_len);
	return 0;
}

/* The answer to a pull of `n` events (borrowed): 204, binary, structured or a batch. */
static void answer_events(struct http_response *resp, const struct cfx_ce *ces, size_t n)
{
	char *text;
	size_t len;

	if (n == 0) {
		resp->status = 204;
		return;
	}
	if (n == 1 && answer_binary(resp, &ces[0]) == 0)
		return;
	if (n == 1) {
		text = cfx_ce_to_structured(&ces[0], &len);
		resp->content_type = CT_CE;
	} else {
		text = cfx_ce_batch_to_json(ces, n, &len);
		resp->content_type = CT_CE_BATCH;
	}
	resp->status = 200;
	cfx_write_bytes(&resp->body, text, len);
	cfx_free(text);
}

/* Answers an error of cfx_bridge_pull. */
static void reply_pull_error(struct admin_ctx *x, int rc, const char *bus, const char *group)
{
	if (rc == CFX_EINVAL)
		http_response_error(x->resp, 400, "invalid group name \"%.*s\"", CFX_BRIDGE_NAME_MAX,
				    group);
	else
		reply_bridge(x, rc, NULL, "bus", bus, NULL);
}

/* A long poll: see the diagram at the top of the file. */
struct admin_poll {
	struct admin_service *svc;
	struct cfx_bridge *b;
	struct cfx_loop *loop;
	struct http_later *later;
	struct cfx_timer deadline;
	uint64_t watch_id;	   /* the watch registered, 0 = none */
	uint32_t max;		   /* events in the answer */
	atomic_int refs;	   /* see the invariants at the top */
	int answered;		   /* poll_finish ran */
	int stop_posted;	   /* admin__events_stop posted its task (under svc->mu) */
	struct admin_poll *next, **pprev; /* svc->polls, under svc->mu, until answered */
	char *bus, *group;
};

static void poll_unref(struct admin_poll *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	cfx_free(p->bus);
	cfx_free(p->group);
	cfx_free(p);
}

/* Answers with `n` events (borrowed) or the error `rc`, and lets go. */
static void poll_finish(struct admin_poll *p, int rc, const struct cfx_ce *ces, size_t n)
{
	struct admin_service *svc = p->svc;
	struct http_response resp;
	struct admin_ctx x = { .svc = svc, .br = svc->o.br, .resp = &resp };

	CFX_ASSERT(!p->answered);
	p->answered = 1;
	cfx_timer_stop(p->loop, &p->deadline);
	/* A watch that had not fired is ours to drop; one that fired has a task on its way. */
	if (p->watch_id && cfx_bridge_unwatch(p->b, p->watch_id) == 1)
		atomic_fetch_sub(&p->refs, 1); /* the request's reference is still held */
	p->watch_id = 0;
	http_response_init(&resp);
	if (rc)
		reply_pull_error(&x, rc, p->bus, p->group);
	else
		answer_events(&resp, ces, n);
	http_later_answer(p->later, &resp);
	http_response_free(&resp);
	pthread_mutex_lock(&svc->mu);
	*p->pprev = p->next;
	if (p->next)
		p->next->pprev = p->pprev;
	pthread_mutex_unlock(&svc->mu);
	poll_unref(p);	       /* the request's reference: svc is not touched after it */
	admin__defer_end(svc); /* may let admin_service_stop return */
}

/* Pulls once; answers if there are events (or an error). Returns 1 if answered. */
static int poll_pull(struct admin_poll *p)
{
	struct cfx_ce *ces = NULL;
	size_t n = 0;
	int rc = cfx_bridge_pull(p->b, p->bus, p->group, p->max, &ces, &n);

	if (rc == 0 && n == 0)
		return 0;
	poll_finish(p, rc, ces, n);
	cfx_ce_batch_free(ces, n);
	return 1;
}

static void poll_watch(struct admin_poll *p);

/* The watch fired: pull, or watch again. @thread p->loop */
static void poll_woken(void *arg)
{
	struct admin_poll *p = arg;

	if (!p->answered) {
		p->watch_id = 0; /* this one fired */
		/* Watch before the second look, so an event stored in between wakes us. */
		if (!poll_pull(p)) {
			poll_watch(p);
			poll_pull(p);
		}
	}
	poll_unref(p); /* the watch's reference, carried by this task */
}

/* @thread the bridge's (any) */
static void poll_fired(void *arg)
{
	struct admin_poll *p = arg;

	cfx_loop_post(p->loop, poll_woken, p);
}

static void poll_watch(struct admin_poll *p)
{
	CFX_ASSERT(!p->watch_id);
	atomic_fetch_add(&p->refs, 1);
	p->watch_id = cfx_bridge_watch(p->b, p->bus, p->group, poll_fired, p);
	if (!p->watch_id)
		atomic_fetch_sub(&p->refs, 1); /* never fires: the deadline answers */
}

/* The first look after the handler returned (a watch is registered). */
static void poll_recheck(void *arg)
{
	struct admin_poll *p = arg;

	if (!p->answered)
		poll_pull(p);
	poll_unref(p);
}

static void poll_deadline(struct cfx_loop *loop, struct cfx_timer *t)
{
	struct admin_poll *p = t->data;

	CFX_UNUSED(loop);
	if (!p->answered && !poll_pull(p))
		poll_finish(p, 0, NULL, 0); /* 204 */
}

static void poll_stop_task(void *arg)
{
	struct admin_poll *p = arg;

	if (!p->answered)
		poll_finish(p, 0, NULL, 0); /* 204 */
	poll_unref(p);
}

void admin__events_stop(struct admin_service *svc)
{
	pthread_mutex_lock(&svc->mu);
	for (struct admin_poll *p = svc->polls; p; p = p->next)
		if (!p->stop_posted) {
			p->stop_posted = 1;
			atomic_fetch_add(&p->refs, 1);
			cfx_loop_post(p->loop, poll_stop_task, p);
		}
	pthread_mutex_unlock(&svc->mu);
}

void admin__events_pull(struct admin_ctx *x)
{
	static const char *const params[] = { "group", "max", "wait_ms", NULL };
	struct cfx_bridge *b = bridge_or_404(x);
	const char *group = admin__query_get(x, "group");
	int64_t max = 1, wait_ms = 0;
	struct http_later *later;
	struct admin_poll *p;
	struct cfx_ce *ces = NULL;
	size_t n = 0;
	int rc;

	if (!b)
		return;
	if (x->req->method == HTTP_HEAD) {
		/* A pull takes events: HEAD would lose them. */
		http_response_error(x->resp, 405, "HEAD is not allowed on /v1/buses/*/events "
				    "(allowed: GET, POST)");
		x->resp->allow = "GET, POST";
		return;
	}
	if (admin__query_only(x, params) ||
	    admin__query_int(x, "max", 1, CFX_BRIDGE_PULL_MAX, &max) < 0 ||
	    admin__query_int(x, "wait_ms", 0, PULL_WAIT_MS_MAX, &wait_ms) < 0)
		return;
	if (!group || !*group) {
		http_response_error(x->resp, 400, "query parameter \"group\" is required");
		return;
	}
	if (!admin__allowed(x, CFX_AUTH_GROUP, group, CFX_AUTH_SUB))
		return;
	rc = cfx_bridge_pull(b, x->param, group, (uint32_t)max, &ces, &n);
	if (rc || n || wait_ms == 0) {
		if (rc)
			reply_pull_error(x, rc, x->param, group);
		else
			answer_events(x->resp, ces, n);
		cfx_ce_batch_free(ces, n);
		return;
	}
	/* Nothing now: wait for the bus, up to wait_ms. */
	later = admin__defer_begin(x);
	if (!later)
		return;
	p = cfx_calloc(1, sizeof *p);
	p->svc = x->svc;
	p->b = b;
	p->loop = http_later_loop(later);
	p->later = later;
	p->max = (uint32_t)max;
	p->bus = cfx_strdup(x->param);
	p->group = cfx_strdup(group);
	atomic_init(&p->refs, 1);
	pthread_mutex_lock(&x->svc->mu);
	p->next = x->svc->polls;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &x->svc->polls;
	x->svc->polls = p;
	pthread_mutex_unlock(&x->svc->mu);
	cfx_timer_start(p->loop, &p->deadline, wait_ms, poll_deadline, p);
	poll_watch(p);
	/* An event stored between the pull above and the watch: look once more, from the loop. */
	atomic_fetch_add(&p->refs, 1);
	cfx_loop_post(p->loop, poll_recheck, p);
}

/* ------------------------------------------------------------------------
 * Replay: POST /v1/buses/{bus}/replay {"from_ms", "to_ms", "rule"?}
 * ------------------------------------------------------------------------ */

struct replay_call {
	struct admin_service *svc;
	struct http_later *later;
	struct cfx_loop *loop;
	int err;
	uint64_t events, deliveries;
	char bus[CFX_BRIDGE_NAME_MAX + 1];
	char rule[CFX_BRIDGE_NAME_MAX + 1]; /* "" = every rule */
};

/* @thread the request's loop */
static void replay_answer(void *arg)
{
	struct replay_call *rc = arg;
	struct admin_service *svc = rc->svc;
	struct http_response resp;
	struct admin_ctx x = { .svc = svc, .br = svc->o.br, .resp = &resp };

	http_response_init(&resp);
	if (rc->err == CFX_ENOENT && rc->rule[0])
		http_response_error(&resp, 404, "bus \"%s\" or its rule \"%s\" does not exist",
				    rc->bus, rc->rule);
	else if (rc->err)
		reply_bridge(&x, rc->err, NULL, "bus", rc->bus, NULL);
	else
		http_response_json(&resp, 200, json_pack("{s:I, s:I}", "events",
							 (json_int_t)rc->events, "deliveries",
							 (json_int_t)rc->deliveries));
	http_later_answer(rc->later, &resp);
	http_response_free(&resp);
	cfx_free(rc);
	admin__defer_end(svc);
}

/* @thread the router's */
static void replay_done(void *arg, int err, uint64_t events, uint64_t deliveries)
{
	struct replay_call *rc = arg;

	rc->err = err;
	rc->events = events;
	rc->deliveries = deliveries;
	cfx_loop_post(rc->loop, replay_answer, rc);
}

void admin__bus_replay(struct admin_ctx *x)
{
	static const char *const fields[] = { "from_ms", "to_ms", "rule", NULL };
	struct cfx_bridge *b = bus_or_404(x);
	struct http_later *later;
	struct replay_call *rc;
	const char *rule = NULL;
	int64_t from_ms = -1, to_ms = -1;
	json_t *o;
	int err;

	if (!b || !(o = admin__body_object(x, fields)))
		return;
	if (admin__member_int(x, o, "from_ms", 0, INT64_MAX, &from_ms) < 0 ||
	    admin__member_int(x, o, "to_ms", 0, INT64_MAX, &to_ms) < 0 ||
	    admin__member_str(x, o, "rule", &rule) < 0)
		goto out;
	if (from_ms < 0 || to_ms < 0) {
		http_response_error(x->resp, 400, "\"from_ms\" and \"to_ms\" are required");
		goto out;
	}
	if (from_ms > to_ms) {
		http_response_error(x->resp, 400, "\"from_ms\" is after \"to_ms\"");
		goto out;
	}
	if (rule && (!*rule || strlen(rule) > CFX_BRIDGE_NAME_MAX)) {
		http_response_error(x->resp, 400, "\"rule\" must be a rule name");
		goto out;
	}
	if (!(later = admin__defer_begin(x)))
		goto out;
	rc = cfx_calloc(1, sizeof *rc);
	rc->svc = x->svc;
	rc->later = later;
	rc->loop = http_later_loop(later);
	snprintf(rc->bus, sizeof rc->bus, "%s", x->param);
	snprintf(rc->rule, sizeof rc->rule, "%s", rule ? rule : "");
	err = cfx_bridge_replay(b, x->param, from_ms, to_ms, rule, replay_done, rc);
	if (err) {
		rc->err = err;
		cfx_loop_post(rc->loop, replay_answer, rc);
	}
out:
	json_decref(o);
}
