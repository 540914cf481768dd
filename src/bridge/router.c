/*
 * router.c - the router thread: new events of every bus, matched once
 * against the bus's compiled rules, become deliveries in their targets'
 * queues; then the events are acknowledged (docs/design/eventbridge.md).
 *
 * One round, per bus: pop up to ROUTE_BATCH events (group %SYS%EB%R%<bus>),
 * build each one's JSON once, match, apply each matching rule's transform
 * per target, append the deliveries to the targets' topics (waiting until
 * stored), acknowledge the events. When no bus had anything, the thread
 * waits for a broker watch on each bus (or a second).
 *
 * Replays run on this thread too, between rounds: they read the bus topic
 * by store time and route what they read the same way, without
 * acknowledging anything (they are not consumers of the bus).
 *
 * Locks: definitions are read under b->lock (read) while deliveries are
 * built; sends and acknowledgements happen without it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "bridge/bridge_int.h"

#define ROUTE_INVISIBLE_MS 60000
#define REPLAY_READ 256
#define MATCHES_MAX 1024

/* Deliveries built for one round, grouped by target when sent. */
struct delivery {
	char topic[CFX_BRIDGE_NAME_MAX + 32]; /* the target's queue, or its dead letters */
	char dlq[CFX_BRIDGE_NAME_MAX + 32];
	uint64_t queue_max;
	struct msg_builder mb;
	char *body;
	size_t body_len;
	int body_null;
};

struct round {
	struct delivery *v;
	uint32_t n, cap;
	uint64_t matches;
};

static void round_free(struct round *r)
{
	for (uint32_t i = 0; i < r->n; i++) {
		mb_free(&r->v[i].mb);
		cfx_free(r->v[i].body);
	}
	cfx_free(r->v);
	memset(r, 0, sizeof *r);
}

static struct delivery *round_add(struct round *r)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 16;
		r->v = cfx_realloc(r->v, r->cap * sizeof *r->v);
	}
	memset(&r->v[r->n], 0, sizeof r->v[0]);
	mb_init(&r->v[r->n].mb);
	return &r->v[r->n++];
}

static int emit_to_mb(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	mb_add(ctx, name, nlen, value, vlen);
	return 0;
}

/* Does the transform's output look like JSON? Then it is sent as JSON. */
static bool looks_json(const char *p, size_t n)
{
	json_error_t e;
	json_t *j = json_loadb(p, n, JSON_DECODE_ANY, &e);

	json_decref(j);
	return j != NULL;
}

/*
 * The deliveries of one event of `bus` (its message view `v`), for every
 * enabled rule that matches (or only `only_rule`). @locks b->lock (read)
 */
static void route_one(struct cfx_bridge *b, struct bus *bus, const struct cfx_msg_view *v,
		      const char *only_rule, struct round *r)
{
	uint32_t ids[MATCHES_MAX];
	struct cfx_ce ce;
	char err[256], tbuf[24];
	size_t nm;
	json_t *ev;

	if (bridge__event_of_msg(v, &b->o.limits, &ce, err, sizeof err)) {
		cfx_log_ratelimited(CFX_LOG_INFO, "eventbridge: bus %s offset %" PRIu64
				    " is not a CloudEvent (%s): no rule sees it",
				    bus->name, v->offset, err);
		return;
	}
	ev = cfx_ce_to_json(&ce);
	nm = ev ? cfx_pattern_set_match(bus->ps, ev, ids, MATCHES_MAX) : 0;
	snprintf(tbuf, sizeof tbuf, "%" PRId64, v->store_ms);
	for (size_t i = 0; i < nm; i++) {
		struct rule *rule = ids[i] < bus->nrules ? bus->rules[ids[i]] : NULL;
		if (!rule || !rule->enabled || (only_rule && strcmp(rule->name, only_rule)))
			continue;
		r->matches++;
		for (uint32_t k = 0; k < rule->ntargets; k++) {
			struct rule_target *rt = &rule->targets[k];
			struct target *t = bridge__target_find(b, rt->name);
			struct delivery *d;
			char *out = NULL;
			size_t out_len = 0;

			if (!t)
				continue;
			if (rt->tf && cfx_transform_type(rt->tf) != CFX_TRANSFORM_ORIGINAL) {
				int rc = cfx_transform_apply(rt->tf, ev, &out, &out_len);
				if (rc) {
					cfx_log_ratelimited(CFX_LOG_INFO,
							    "eventbridge: rule %s, target %s: the "
							    "transform gives nothing (%s); not "
							    "delivered",
							    rule->name, t->name, cfx_strerror(rc));
					continue;
				}
			}
			d = round_add(r);
			snprintf(d->topic, sizeof d->topic, "%s", t->topic);
			snprintf(d->dlq, sizeof d->dlq, "%s", t->dlq);
			d->queue_max = t->queue_max;
			if (out) {
				/* The event with its data replaced by the transform's output:
				 * every attribute but datacontenttype (emit leaves it out),
				 * and the output's own content type. */
				const char *ct = looks_json(out, out_len) ? "application/json"
									  : "text/plain; charset=utf-8";
				cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_KAFKA, emit_to_mb, &d->mb);
				mb_add(&d->mb, PROP_CONTENT_TYPE, strlen(PROP_CONTENT_TYPE), ct,
				       strlen(ct));
				d->body = out;
				d->body_len = out_len;
			} else {
				mb_add_event(&d->mb, &ce);
				d->body_null = !ce.has_data;
				if (ce.has_data) {
					d->body = cfx_malloc(ce.data_len + 1);
					memcpy(d->body, ce.data, ce.data_len);
					d->body_len = ce.data_len;
				}
			}
			mb_add(&d->mb, PROP_RULE, strlen(PROP_RULE), rule->name, strlen(rule->name));
			mb_add(&d->mb, PROP_BUS, strlen(PROP_BUS), bus->name, strlen(bus->name));
			mb_add(&d->mb, PROP_TIME, strlen(PROP_TIME), tbuf, strlen(tbuf));
		}
	}
	json_decref(ev);
	cfx_ce_free(&ce);
}

/*
 * Appends the round's deliveries to their targets' queues (each target's
 * together); a queue over its limit gets them in its dead letters instead.
 * Returns 0 when everything is stored.
 */
static int round_send(struct cfx_bridge *b, struct round *r)
{
	int rc = 0;

	for (uint32_t i = 0; i < r->n; i++) {
		struct delivery *d = &r->v[i];
		struct cfx_group_queue_state qs;
		struct cfx_send_msg m = { 0 };
		const char *topic = d->topic;

		if (cfx_broker_group_queue_state(b->br, CFX_VIEW_STR(d->topic), CFX_VIEW_STR(d->topic),
						 0, &qs) == 0 &&
		    qs.end > qs.committed && qs.end - qs.committed >= d->queue_max) {
			static const char full[] = "target queue full";
			mb_add(&d->mb, PROP_ERROR, strlen(PROP_ERROR), full, strlen(full));
			topic = d->dlq;
			cfx_log_ratelimited(CFX_LOG_WARN, "eventbridge: %s holds %" PRIu64
					    " deliveries: new ones go to %s",
					    d->topic, qs.end - qs.committed, d->dlq);
		}
		mb_finish(&d->mb);
		m.type = CFX_MSG_NORMAL;
		m.m.props = d->mb.props;
		m.m.prop_count = d->mb.nprops;
		m.m.body = (struct cfx_view){ (const uint8_t *)d->body, d->body_len };
		m.m.body_null = d->body_null;
		m.m.key_null = 1;
		m.m.born_ms = cfx_clock_wall_ms();
		int src = bridge__send_sync(b, CFX_VIEW_STR(topic), &m, 1);
		if (src) {
			cfx_log_ratelimited(CFX_LOG_WARN, "eventbridge: a delivery to %s cannot be "
					    "stored: %s", topic, cfx_strerror(src));
			rc = src;
		}
	}
	return rc;
}

/* One round on one bus. Returns the events routed. */
static uint32_t route_bus(struct cfx_bridge *b, const char *bus_name)
{
	struct cfx_pop_req req = { 0 };
	struct cfx_pop_result res;
	struct round r = { 0 };
	char group[CFX_BRIDGE_NAME_MAX + 16];
	const char **handles;
	int *errs;
	struct bus *bus;
	uint32_t n;

	snprintf(group, sizeof group, "%%SYS%%EB%%R%%%s", bus_name);
	req.group = CFX_VIEW_STR(group);
	req.topic = CFX_VIEW_STR(bus_name);
	req.max_msgs = ROUTE_BATCH;
	req.invisible_ms = ROUTE_INVISIBLE_MS;
	cfx_pop_result_init(&res);
	if (cfx_broker_pop(b->br, &req, &res) || res.count == 0) {
		cfx_pop_result_free(&res);
		return 0;
	}
	pthread_rwlock_rdlock(&b->lock);
	bus = bridge__bus_find(b, bus_name);
	for (uint32_t i = 0; bus && i < res.count; i++)
		route_one(b, bus, &res.msgs[i].v, NULL, &r);
	pthread_rwlock_unlock(&b->lock);
	n = res.count;
	if (round_send(b, &r) == 0) {
		handles = cfx_calloc(n, sizeof *handles);
		errs = cfx_calloc(n, sizeof *errs);
		for (uint32_t i = 0; i < n; i++)
			handles[i] = res.msgs[i].handle;
		cfx_broker_ack_many(b->br, req.group, req.topic, handles, n, errs);
		cfx_free(handles);
		cfx_free(errs);
		atomic_fetch_add(&b->events_routed, n);
		atomic_fetch_add(&b->matches, r.matches);
	}
	/* else: the events become visible again and are routed again */
	round_free(&r);
	cfx_pop_result_free(&res);
	return n;
}

/* ------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------ */

static void replay_run(struct cfx_bridge *b, struct replay_req *q)
{
	struct cfx_store *st = cfx_broker_store(b->br);
	struct cfx_topic_info ti;
	uint64_t events = 0, deliveries = 0;
	int rc = cfx_broker_topic_get(b->br, CFX_VIEW_STR(q->bus), 0, &ti);

	for (uint32_t qi = 0; !rc && qi < ti.queues; qi++) {
		uint64_t off = 0;
		int done = 0;
		if (cfx_store_offset_for_time(st, CFX_VIEW_STR(q->bus), qi, q->from_ms, &off))
			continue;
		while (!done) {
			struct cfx_read_result res;
			struct round r = { 0 };
			cfx_read_result_init(&res);
			if (cfx_store_read(st, CFX_VIEW_STR(q->bus), qi, off, REPLAY_READ, 4u << 20,
					   &res) ||
			    res.count == 0) {
				cfx_read_result_free(&res);
				break;
			}
			pthread_rwlock_rdlock(&b->lock);
			struct bus *bus = bridge__bus_find(b, q->bus);
			for (uint32_t i = 0; bus && i < res.count; i++) {
				if (res.msgs[i].store_ms > q->to_ms) {
					done = 1;
					break;
				}
				events++;
				route_one(b, bus, &res.msgs[i], q->rule[0] ? q->rule : NULL, &r);
			}
			if (!bus)
				done = 1;
			pthread_rwlock_unlock(&b->lock);
			off = res.next_offset;
			if (round_send(b, &r))
				rc = CFX_EIO;
			deliveries += r.n;
			round_free(&r);
			cfx_read_result_free(&res);
		}
	}
	cfx_log_info("eventbridge: replay of bus %s (%" PRId64 " to %" PRId64 " ms%s%s): %" PRIu64
		     " events, %" PRIu64 " deliveries",
		     q->bus, q->from_ms, q->to_ms, q->rule[0] ? ", rule " : "", q->rule, events,
		     deliveries);
	q->fn(q->arg, rc, events, deliveries);
}

int cfx_bridge_replay(struct cfx_bridge *b, const char *bus, int64_t from_ms, int64_t to_ms,
		      const char *rule, cfx_bridge_replay_fn fn, void *arg)
{
	struct replay_req *q;
	struct bus *bu;
	int found = 1;

	pthread_rwlock_rdlock(&b->lock);
	bu = bridge__bus_find(b, bus);
	if (bu && rule) {
		found = 0;
		for (uint32_t i = 0; i < bu->nrules && !found; i++)
			found = !strcmp(bu->rules[i]->name, rule);
	}
	pthread_rwlock_unlock(&b->lock);
	if (!bu || !found)
		return CFX_ENOENT;
	if (from_ms < 0 || to_ms < from_ms)
		return CFX_EINVAL;
	q = cfx_calloc(1, sizeof *q);
	snprintf(q->bus, sizeof q->bus, "%s", bus);
	snprintf(q->rule, sizeof q->rule, "%s", rule ? rule : "");
	q->from_ms = from_ms;
	q->to_ms = to_ms;
	q->fn = fn;
	q->arg = arg;
	pthread_mutex_lock(&b->rmu);
	q->next = b->replays;
	b->replays = q;
	b->rwoken = 1;
	pthread_cond_signal(&b->rcv);
	pthread_mutex_unlock(&b->rmu);
	return 0;
}

/* ------------------------------------------------------------------------
 * The thread
 * ------------------------------------------------------------------------ */

void bridge__router_wake(struct cfx_bridge *b)
{
	pthread_mutex_lock(&b->rmu);
	b->rwoken = 1;
	pthread_cond_signal(&b->rcv);
	pthread_mutex_unlock(&b->rmu);
}

static void watch_fired(void *arg)
{
	bridge__router_wake(arg);
}

static void *router_main(void *arg)
{
	struct cfx_bridge *b = arg;
	char (*names)[CFX_BRIDGE_NAME_MAX + 1] = NULL;
	uint64_t *watches = NULL;
	uint32_t cap = 0;

	for (;;) {
		uint32_t n, routed = 0;
		struct replay_req *q;

		pthread_mutex_lock(&b->rmu);
		if (b->rstop) {
			pthread_mutex_unlock(&b->rmu);
			break;
		}
		q = b->replays;
		b->replays = NULL;
		b->rwoken = 0;
		pthread_mutex_unlock(&b->rmu);
		while (q) {
			struct replay_req *next = q->next;
			replay_run(b, q);
			cfx_free(q);
			q = next;
		}

		/* The buses now (a bus deleted meanwhile just yields nothing). */
		pthread_rwlock_rdlock(&b->lock);
		n = b->nbuses;
		if (n > cap) {
			cap = n;
			names = cfx_realloc(names, cap * sizeof *names);
			watches = cfx_realloc(watches, cap * sizeof *watches);
		}
		for (uint32_t i = 0; i < n; i++)
			snprintf(names[i], sizeof names[i], "%s", b->buses[i]->name);
		pthread_rwlock_unlock(&b->lock);

		for (uint32_t i = 0; i < n; i++)
			routed += route_bus(b, names[i]);
		if (routed)
			continue;

		/* Nothing anywhere: wait for a bus to get something, or a second. */
		for (uint32_t i = 0; i < n; i++) {
			char group[CFX_BRIDGE_NAME_MAX + 16];
			snprintf(group, sizeof group, "%%SYS%%EB%%R%%%s", names[i]);
			watches[i] = cfx_broker_watch(b->br, CFX_VIEW_STR(group),
						      CFX_VIEW_STR(names[i]), watch_fired, b);
		}
		/* A message may have slipped in before the watches: look once more. */
		for (uint32_t i = 0; i < n && !routed; i++)
			routed += route_bus(b, names[i]);
		if (!routed) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_mutex_lock(&b->rmu);
			while (!b->rwoken && !b->rstop)
				if (pthread_cond_timedwait(&b->rcv, &b->rmu, &ts))
					break;
			pthread_mutex_unlock(&b->rmu);
		}
		for (uint32_t i = 0; i < n; i++)
			if (watches[i])
				cfx_broker_unwatch(b->br, watches[i]);
	}
	cfx_free(names);
	cfx_free(watches);
	return NULL;
}

int bridge__router_start(struct cfx_bridge *b)
{
	if (pthread_create(&b->router, NULL, router_main, b))
		return CFX_ESYS;
	return 0;
}

void bridge__router_stop(struct cfx_bridge *b)
{
	if (!b->router)
		return;
	pthread_mutex_lock(&b->rmu);
	b->rstop = 1;
	pthread_cond_signal(&b->rcv);
	pthread_mutex_unlock(&b->rmu);
	pthread_join(b->router, NULL);
	b->router = 0;
}
