/*
 * bridge.c - the EventBridge's life cycle, and events as stored messages:
 * ingress (cfx_bridge_put), pull, the pattern test, counters.
 *
 * An event is stored in the Kafka binding (docs/design/eventbridge.md):
 * body = data (a record without a value when the event has none), one
 * `ce_<attribute>` property per attribute, `content-type` for the data's
 * media type. Reading one back is cfx_ce_from_props of that binding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "bridge/bridge_int.h"

#define PULL_INVISIBLE_MS 30000

/* ------------------------------------------------------------------------
 * Messages under construction
 * ------------------------------------------------------------------------ */

void mb_init(struct msg_builder *mb)
{
	memset(mb, 0, sizeof *mb);
}

void mb_free(struct msg_builder *mb)
{
	cfx_free(mb->bytes);
	mb->bytes = NULL;
}

static size_t mb_put(struct msg_builder *mb, const char *p, size_t n)
{
	size_t at;

	if (mb->used + n > mb->cap) {
		mb->cap = CFX_MAX(2 * mb->cap, mb->used + n + 256);
		mb->bytes = cfx_realloc(mb->bytes, mb->cap);
	}
	at = mb->used;
	if (n)
		memcpy(mb->bytes + at, p, n);
	mb->used += n;
	return at;
}

void mb_add(struct msg_builder *mb, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (mb->nprops == MB_PROPS_MAX) {
		mb->full = 1;
		return;
	}
	mb->ent[mb->nprops].no = mb_put(mb, name, nlen);
	mb->ent[mb->nprops].nl = nlen;
	mb->ent[mb->nprops].vo = mb_put(mb, value, vlen);
	mb->ent[mb->nprops].vl = vlen;
	mb->nprops++;
}

static int add_ce_attr(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	mb_add(ctx, name, nlen, value, vlen);
	return 0;
}

void mb_add_event(struct msg_builder *mb, const struct cfx_ce *ce)
{
	const char *ct = cfx_ce_binary_content_type(ce);

	cfx_ce_emit_attrs(ce, CFX_CE_BINDING_KAFKA, add_ce_attr, mb);
	if (ct)
		mb_add(mb, PROP_CONTENT_TYPE, strlen(PROP_CONTENT_TYPE), ct, strlen(ct));
}

void mb_finish(struct msg_builder *mb)
{
	for (uint32_t i = 0; i < mb->nprops; i++) {
		mb->props[i].name = (struct cfx_view){ (const uint8_t *)mb->bytes + mb->ent[i].no,
						       mb->ent[i].nl };
		mb->props[i].value = (struct cfx_view){ (const uint8_t *)mb->bytes + mb->ent[i].vo,
							mb->ent[i].vl };
	}
}

/* ------------------------------------------------------------------------
 * Stored messages back to events
 * ------------------------------------------------------------------------ */

struct cfx_view bridge__prop(const struct cfx_msg_view *v, const char *name)
{
	size_t cursor = 0, n = strlen(name);
	struct cfx_prop p;

	while (cfx_msg_view_next_prop(v, &cursor, &p) == 1)
		if (p.name.len == n && !memcmp(p.name.p, name, n))
			return p.value;
	return (struct cfx_view){ NULL, 0 };
}

int bridge__event_of_msg(const struct cfx_msg_view *v, const struct cfx_ce_limits *lim,
			 struct cfx_ce *out, char *err, size_t err_len)
{
	struct cfx_ce_header h[MB_PROPS_MAX];
	struct cfx_view ct = { NULL, 0 };
	size_t cursor = 0, n = 0;
	struct cfx_prop p;

	while (cfx_msg_view_next_prop(v, &cursor, &p) == 1) {
		if (p.name.len == strlen(PROP_CONTENT_TYPE) &&
		    !memcmp(p.name.p, PROP_CONTENT_TYPE, p.name.len)) {
			ct = p.value;
			continue;
		}
		if (p.name.len < 3 || memcmp(p.name.p, CE_PREFIX, 3))
			continue;
		if (n == MB_PROPS_MAX) {
			snprintf(err, err_len, "more than %d attributes", MB_PROPS_MAX);
			return CFX_EPARSE;
		}
		h[n++] = (struct cfx_ce_header){ (const char *)p.name.p, p.name.len,
						 (const char *)p.value.p, p.value.len };
	}
	return cfx_ce_from_props(CFX_CE_BINDING_KAFKA, h, n, ct.p ? (const char *)ct.p : NULL,
				 ct.len, v->body.p, v->body.len, !v->body_null, lim, out, err,
				 err_len);
}

/* ------------------------------------------------------------------------
 * Sending and waiting
 * ------------------------------------------------------------------------ */

struct sync_send {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, err;
};

static void sync_done(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	struct sync_send *ss = arg;
	int err = 0;

	for (uint32_t i = 0; i < count && !err; i++)
		err = res[i].err;
	pthread_mutex_lock(&ss->mu);
	ss->err = err;
	ss->done = 1;
	pthread_cond_signal(&ss->cv);
	pthread_mutex_unlock(&ss->mu);
}

int bridge__send_sync(struct cfx_bridge *b, struct cfx_view topic, const struct cfx_send_msg *msgs,
		      uint32_t n)
{
	struct sync_send ss = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	int rc = cfx_broker_send(b->br, topic, msgs, n, b->o.durability, sync_done, &ss);

	if (rc)
		return rc;
	pthread_mutex_lock(&ss.mu);
	while (!ss.done)
		pthread_cond_wait(&ss.cv, &ss.mu);
	pthread_mutex_unlock(&ss.mu);
	return ss.err;
}

/* ------------------------------------------------------------------------
 * Ingress
 * ------------------------------------------------------------------------ */

struct put_ctx {
	struct cfx_bridge *b;
	cfx_bridge_done_fn done;
	void *arg;
	size_t n;
};

static void put_done(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	struct put_ctx *pc = arg;
	int err = 0;

	for (uint32_t i = 0; i < count && !err; i++)
		err = res[i].err;
	if (!err)
		atomic_fetch_add(&pc->b->events_in, pc->n);
	pc->done(pc->arg, err);
	cfx_free(pc);
}

int cfx_bridge_put(struct cfx_bridge *b, const char *bus, const struct cfx_ce *ces, size_t n,
		   cfx_bridge_done_fn done, void *arg)
{
	struct msg_builder *mbs;
	struct cfx_send_msg *msgs;
	struct put_ctx *pc;
	int64_t now = cfx_clock_wall_ms();
	int rc;

	if (!cfx_bridge_bus_exists(b, bus))
		return CFX_ENOENT;
	if (n == 0 || n > UINT32_MAX)
		return CFX_EINVAL;
	mbs = cfx_calloc(n, sizeof *mbs);
	msgs = cfx_calloc(n, sizeof *msgs);
	for (size_t i = 0; i < n; i++) {
		mb_init(&mbs[i]);
		mb_add_event(&mbs[i], &ces[i]);
		mb_finish(&mbs[i]);
		msgs[i].type = CFX_MSG_NORMAL;
		msgs[i].m.props = mbs[i].props;
		msgs[i].m.prop_count = mbs[i].nprops;
		msgs[i].m.body = (struct cfx_view){ ces[i].data, ces[i].data_len };
		msgs[i].m.body_null = !ces[i].has_data;
		msgs[i].m.key_null = 1;
		msgs[i].m.born_ms = now;
	}
	pc = cfx_calloc(1, sizeof *pc);
	*pc = (struct put_ctx){ b, done, arg, n };
	rc = cfx_broker_send(b->br, CFX_VIEW_STR(bus), msgs, (uint32_t)n, b->o.durability, put_done,
			     pc);
	if (rc)
		cfx_free(pc);
	for (size_t i = 0; i < n; i++)
		mb_free(&mbs[i]);
	cfx_free(mbs);
	cfx_free(msgs);
	return rc;
}

/* ------------------------------------------------------------------------
 * Pull
 * ------------------------------------------------------------------------ */

int cfx_bridge_pull(struct cfx_bridge *b, const char *bus, const char *group, uint32_t max,
		    struct cfx_ce **out, size_t *n)
{
	struct cfx_pop_result res;
	struct cfx_group_info gi;
	struct cfx_pop_req req = { 0 };
	const char **handles;
	int *errs, rc;
	size_t got = 0;

	*out = NULL;
	*n = 0;
	if (!cfx_bridge_bus_exists(b, bus))
		return CFX_ENOENT;
	if (!cfx_group_name_is_valid(CFX_VIEW_STR(group)) || group[0] == '%')
		return CFX_EINVAL;
	if (max == 0 || max > CFX_BRIDGE_PULL_MAX)
		max = max ? CFX_BRIDGE_PULL_MAX : 1;
	/* A new group starts at the end of the bus (events from now on). */
	if (cfx_broker_group_get(b->br, CFX_VIEW_STR(group), 0, &gi) == CFX_ENOENT) {
		cfx_broker_group_get(b->br, CFX_VIEW_STR(group), 1, &gi);
		cfx_broker_subscribe(b->br, CFX_VIEW_STR(group), CFX_VIEW_STR(bus));
	}
	req.group = CFX_VIEW_STR(group);
	req.topic = CFX_VIEW_STR(bus);
	req.max_msgs = max;
	req.invisible_ms = PULL_INVISIBLE_MS;
	cfx_pop_result_init(&res);
	rc = cfx_broker_pop(b->br, &req, &res);
	if (rc) {
		cfx_pop_result_free(&res);
		return rc;
	}
	if (res.count) {
		*out = cfx_calloc(res.count, sizeof **out);
		handles = cfx_calloc(res.count, sizeof *handles);
		errs = cfx_calloc(res.count, sizeof *errs);
		for (uint32_t i = 0; i < res.count; i++) {
			char err[256];
			handles[i] = res.msgs[i].handle;
			/* Something that is not an event (a plain message on the bus
			 * topic) is skipped, as a consumer of the bus would. */
			if (bridge__event_of_msg(&res.msgs[i].v, &b->o.limits, &(*out)[got], err,
						 sizeof err) == 0)
				got++;
			else
				cfx_log_ratelimited(CFX_LOG_INFO, "eventbridge: bus %s offset %llu "
						    "is not a CloudEvent (%s); skipped", bus,
						    (unsigned long long)res.msgs[i].v.offset, err);
		}
		/* Delivered once to the group: acknowledged as it is handed out. */
		cfx_broker_ack_many(b->br, CFX_VIEW_STR(group), CFX_VIEW_STR(bus), handles, res.count,
				    errs);
		cfx_free(handles);
		cfx_free(errs);
		if (!got) {
			cfx_free(*out);
			*out = NULL;
		}
	}
	cfx_pop_result_free(&res);
	*n = got;
	return 0;
}

uint64_t cfx_bridge_watch(struct cfx_bridge *b, const char *bus, const char *group,
			  void (*fn)(void *arg), void *arg)
{
	return cfx_broker_watch(b->br, CFX_VIEW_STR(group), CFX_VIEW_STR(bus), fn, arg);
}

int cfx_bridge_unwatch(struct cfx_bridge *b, uint64_t id)
{
	return cfx_broker_unwatch(b->br, id);
}

const struct cfx_ce_limits *cfx_bridge_limits(const struct cfx_bridge *b)
{
	return &b->o.limits;
}

/* ------------------------------------------------------------------------
 * Testing a pattern
 * ------------------------------------------------------------------------ */

int cfx_bridge_rule_test(const char *pattern, size_t plen, const char *event, size_t elen,
			 bool *match, char *why, size_t why_len)
{
	struct cfx_ce_limits lim;
	struct cfx_ce ce;
	char err[512];
	json_t *ev;
	int rc;

	*match = false;
	why[0] = 0;
	if (cfx_pattern_validate(pattern, plen, err, sizeof err)) {
		snprintf(why, why_len, "pattern: %s", err);
		return CFX_EINVAL;
	}
	cfx_ce_limits_default(&lim);
	if (cfx_ce_parse_structured((const uint8_t *)event, elen, &lim, &ce, err, sizeof err)) {
		snprintf(why, why_len, "event: %s", err);
		return CFX_EINVAL;
	}
	ev = cfx_ce_to_json(&ce);
	rc = cfx_pattern_explain(pattern, plen, ev, why, why_len);
	json_decref(ev);
	cfx_ce_free(&ce);
	if (rc < 0) {
		return CFX_EINVAL;
	}
	*match = rc == 1;
	if (*match)
		why[0] = 0;
	return 0;
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------ */

void cfx_bridge_opts_default(struct cfx_bridge_opts *o)
{
	memset(o, 0, sizeof *o);
	o->durability = CFX_DURABILITY_ASYNC;
	cfx_ce_limits_default(&o->limits);
	o->webhook_timeout_ms = 10000;
}

int cfx_bridge_open(const struct cfx_bridge_opts *o, struct cfx_bridge **out)
{
	struct cfx_bridge *b = cfx_calloc(1, sizeof *b);
	char err[256];
	int rc;

	b->o = *o;
	b->br = o->br;
	snprintf(b->dir, sizeof b->dir, "%s", o->dir);
	snprintf(b->mqtt_topic, sizeof b->mqtt_topic, "%s", o->mqtt_topic ? o->mqtt_topic : "mqtt");
	b->o.mqtt_topic = b->mqtt_topic;
	pthread_rwlock_init(&b->lock, NULL);
	pthread_mutex_init(&b->rmu, NULL);
	pthread_cond_init(&b->rcv, NULL);
	if ((rc = cfx_mkdir_p(&cfx_fileops_real, b->dir))) {
		rc = cfx_err_from_errno(-rc);
		goto fail;
	}
	if ((rc = bridge__load(b)))
		goto fail;
	if (!bridge__bus_find(b, CFX_BRIDGE_DEFAULT_BUS)) {
		json_t *def = json_pack("{s:s, s:s}", "name", CFX_BRIDGE_DEFAULT_BUS, "description",
					"the bus every server has");
		rc = bridge__bus_add(b, def, err, sizeof err);
		json_decref(def);
		if (!rc)
			rc = bridge__save(b);
		if (rc) {
			cfx_log_error("eventbridge: cannot create the default bus: %s", err);
			goto fail;
		}
	}
	b->started = 1;
	for (uint32_t i = 0; i < b->ntargets && !rc; i++)
		rc = bridge__target_start(b, b->targets[i]);
	if (!rc)
		rc = bridge__router_start(b);
	if (rc)
		goto fail;
	cfx_log_info("eventbridge: %u buses, %u rules, %u targets", b->nbuses, b->nrules_total,
		     b->ntargets);
	*out = b;
	return 0;
fail:
	cfx_bridge_stop(b);
	cfx_bridge_free(b);
	return rc;
}

void cfx_bridge_stop(struct cfx_bridge *b)
{
	if (!b)
		return;
	bridge__router_stop(b);
	pthread_rwlock_rdlock(&b->lock);
	for (uint32_t i = 0; i < b->ntargets; i++)
		bridge__target_stop(b->targets[i]);
	pthread_rwlock_unlock(&b->lock);
}

void cfx_bridge_free(struct cfx_bridge *b)
{
	if (!b)
		return;
	for (uint32_t i = 0; i < b->nbuses; i++)
		bridge__bus_free(b->buses[i]);
	for (uint32_t i = 0; i < b->ntargets; i++)
		bridge__target_free(b->targets[i]);
	while (b->replays) {
		struct replay_req *r = b->replays;
		b->replays = r->next;
		cfx_free(r);
	}
	cfx_free(b->buses);
	cfx_free(b->targets);
	pthread_rwlock_destroy(&b->lock);
	pthread_mutex_destroy(&b->rmu);
	pthread_cond_destroy(&b->rcv);
	cfx_free(b);
}

void cfx_bridge_stats(struct cfx_bridge *b, struct cfx_bridge_stats *out)
{
	memset(out, 0, sizeof *out);
	out->events_in = atomic_load(&b->events_in);
	out->events_routed = atomic_load(&b->events_routed);
	out->matches = atomic_load(&b->matches);
	pthread_rwlock_rdlock(&b->lock);
	for (uint32_t i = 0; i < b->ntargets; i++) {
		out->delivered += atomic_load(&b->targets[i]->delivered);
		out->retried += atomic_load(&b->targets[i]->retried);
		out->dead_lettered += atomic_load(&b->targets[i]->dead);
	}
	pthread_rwlock_unlock(&b->lock);
}
