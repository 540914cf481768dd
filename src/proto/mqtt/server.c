/*
 * server.c - MQTT connections: framing, the per-connection state machine,
 * publishing into the store, and sending to the client.
 *
 * CONNECT comes first (anything else closes the connection), then
 * PUBLISH/PUBACK/PUBREC/PUBREL/PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
 * DISCONNECT. An inbound QoS 1/2 PUBLISH is acknowledged once the store
 * has appended it; acknowledgements leave in the order the PUBLISHes came
 * (MQTT 4.6), through a queue of slots like the Kafka front end's. A slot
 * whose connection closed is an orphan and is freed by its append's
 * completion. Everything here runs on the connection's loop, except the
 * append completions, which post back to it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/log.h"
#include <openssl/crypto.h>

#include "events/cloudevent.h"
#include "store/format.h"
#include "net/tls.h"
#include "proto/mqtt/mqtt_int.h"

#define TOPIC_ALIASES_MAX 64 /* what this broker accepts from a client (v5) */
#define PUB_PROPS_MAX (8 + MQTT_USER_PROPERTIES_MAX)

/* An inbound PUBLISH waiting for its append, in arrival order. */
struct pub_slot {
	struct pub_slot *next;
	struct mconn *mc;  /* NULL once the connection is gone */
	struct mqtt_service *svc;
	struct cfx_loop *loop;
	uint8_t ack_type;  /* MQTT_PUBACK, MQTT_PUBREC, or 0 (QoS 0: nothing to send) */
	uint16_t pid;
	int err;
	int done;
	/* a retained message: its topic, where it was stored */
	char *retain_topic;
	uint8_t qos, empty;
	uint32_t queue;
	uint64_t offset;
	int stored;		  /* queue and offset are known */
	int no_wait;		  /* not in the MQTT topic: acknowledged once stored */
	struct cfx_timer timer;	  /* waiting for it to be readable */
};

struct mconn {
	struct mqtt_service *svc;
	struct cfx_conn *c;
	struct cfx_writer in;  /* a packet split across reads (allocated then) */
	struct msession *s;
	uint8_t version;
	uint8_t connected;
	uint8_t graceful;      /* DISCONNECT without will */
	uint16_t keep_alive_s;
	int64_t last_rx_ms;
	struct cfx_timer ka_timer;
	struct pub_slot *head, *tail;
	uint32_t pending;
	char **aliases;	    /* inbound topic aliases, 1-based; allocated on first use */
	char **out_aliases; /* ours towards the client, 1-based; allocated on first use */
	uint16_t out_alias_max, out_alias_next;
	struct mwill *will; /* sent if the connection ends badly */
	struct mident *id;  /* who signed in, once users exist; NULL = anonymous */
};

/* Who a connection signed in as (only allocated once users exist: idle
 * connections of a broker without users carry one pointer for it). */
struct mident {
	struct cfx_auth_peer peer;
	uint8_t *held_connect; /* a CONNECT waiting for its password check or SCRAM exchange */
	uint32_t held_len;
	int authing;	       /* a password check: input is held until it is done */
	struct cfx_scram_server *scram; /* MQTT 5 enhanced authentication under way */
	char *final;	       /* SCRAM server-final, sent in the CONNACK */
	size_t final_len;
	char user[];	       /* "" = anonymous */
};

#define AUTH_HELD_BYTES_MAX (64u << 10) /* input held while a password is checked */

/* ------------------------------------------------------------------------
 * Service
 * ------------------------------------------------------------------------ */

void mqtt_opts_default(struct mqtt_opts *o)
{
	memset(o, 0, sizeof *o);
	o->topic = "mqtt";
	o->queues = 8;
	o->session_queue_max = 1000;
	o->receive_max = 100;
	o->inflight_max = 1000;
	o->packet_bytes_max = MQTT_PACKET_BYTES_MAX;
	o->session_expiry_max_s = UINT32_MAX;
	o->durability = CFX_DURABILITY_ASYNC;
}

/* A retained topic found in the light queues at start. */
static void retained_known(void *arg, struct cfx_view name, uint32_t id)
{
	struct mqtt_service *svc = arg;
	mqtt_retained_add(svc->retained, (struct cfx_view){ name.p + 2, name.len - 2 }, id);
}

int mqtt_service_new(struct cfx_broker *br, const char *dir, const struct mqtt_opts *o,
		     struct mqtt_service **out)
{
	struct mqtt_service *svc = cfx_calloc(1, sizeof *svc);
	struct cfx_topic_info ti;
	struct cfx_lq_opts lo;
	char lqdir[4096];
	int rc;

	svc->o = *o;
	svc->br = br;
	svc->st = cfx_broker_store(br);
	svc->topic = cfx_strdup(o->topic);
	svc->dir = cfx_strdup(dir);
	svc->jfd = -1;
	pthread_mutex_init(&svc->mu, NULL);
	mkdir(dir, 0755);
	rc = cfx_broker_topic_get(br, CFX_VIEW_STR(o->topic), 0, &ti);
	if (rc == CFX_ENOENT) {
		rc = cfx_broker_topic_create(br, o->topic, CFX_TOPIC_MIXED, o->queues);
		if (!rc)
			rc = cfx_broker_topic_get(br, CFX_VIEW_STR(o->topic), 0, &ti);
	}
	if (rc) {
		cfx_log_error("mqtt: cannot use the topic %s: %s", o->topic, cfx_strerror(rc));
		goto fail;
	}
	svc->queues = ti.queues;
	svc->tree = mqtt_tree_new();
	cfx_lq_opts_default(&lo);
	snprintf(lqdir, sizeof lqdir, "%s/lq", dir);
	lo.dir = lqdir;
	lo.entries_max_per_queue = o->session_queue_max;
	rc = cfx_lq_open(&lo, &svc->lqs);
	if (rc) {
		cfx_log_error("mqtt: cannot open the light queues in %s: %s", lqdir, cfx_strerror(rc));
		goto fail;
	}
	svc->retained = mqtt_retained_new();
	cfx_lq_foreach(svc->lqs, CFX_VIEW_STR("r/"), retained_known, svc);
	rc = mqtt_sessions_open(svc);
	if (rc) {
		cfx_log_error("mqtt: cannot open the sessions journal in %s: %s", dir,
			      cfx_strerror(rc));
		goto fail;
	}
	rc = mqtt_fanout_start(svc);
	if (rc)
		goto fail;
	*out = svc;
	return 0;
fail:
	mqtt_service_free(svc);
	return rc ? rc : CFX_EIO;
}

static void metric(struct cfx_writer *out, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	char line[512];
	int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name,
			 help, name, type, name, v);
	if (n > 0)
		cfx_write_bytes(out, line, CFX_MIN((size_t)n, sizeof line - 1));
}

void mqtt_service_metrics(void *arg, struct cfx_writer *out)
{
	struct mqtt_service *svc = arg;
	struct cfx_lq_stats ls;
	uint32_t sessions;

	pthread_mutex_lock(&svc->mu);
	sessions = svc->nsessions;
	pthread_mutex_unlock(&svc->mu);
	cfx_lq_stats(svc->lqs, &ls);
	metric(out, "conflux_mqtt_sessions", "gauge", "MQTT sessions (connected and persistent).",
	       sessions);
	metric(out, "conflux_mqtt_subscriptions", "gauge", "MQTT subscriptions in the topic tree.",
	       mqtt_tree_count(svc->tree));
	metric(out, "conflux_mqtt_subscription_tree_bytes", "gauge",
	       "Memory of the MQTT subscription tree.", mqtt_tree_memory(svc->tree));
	metric(out, "conflux_mqtt_published_total", "counter",
	       "MQTT PUBLISH packets (and wills) stored.", atomic_load(&svc->published));
	metric(out, "conflux_mqtt_delivered_total", "counter", "Messages sent to MQTT clients.",
	       atomic_load(&svc->delivered));
	metric(out, "conflux_mqtt_dropped_total", "counter",
	       "Messages dropped for full session queues.", atomic_load(&svc->dropped));
	metric(out, "conflux_light_queues", "gauge",
	       "Light queues (persistent sessions, retained topics).", ls.queues);
	metric(out, "conflux_light_queue_entries", "gauge",
	       "Entries waiting in light queues.", ls.entries);
	metric(out, "conflux_light_queue_memory_bytes", "gauge",
	       "Memory of the light queues' in-memory state.", ls.bytes);
}

void mqtt_service_stop(struct mqtt_service *svc)
{
	if (svc)
		mqtt_fanout_stop(svc);
}

void mqtt_service_free(struct mqtt_service *svc)
{
	if (!svc)
		return;
	mqtt_fanout_stop(svc);
	mqtt_sys_free(svc);
	mqtt_sessions_close(svc);
	if (svc->lqs)
		cfx_lq_close(svc->lqs);
	if (svc->tree)
		mqtt_tree_free(svc->tree);
	mqtt_retained_free(svc->retained);
	pthread_mutex_destroy(&svc->mu);
	cfx_free(svc->topic);
	cfx_free(svc->dir);
	cfx_free(svc);
}

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */

/*
 * Packets are encoded into one scratch buffer per network thread, then
 * copied into the connection's output queue at once (send_packet): an idle
 * connection owns no encoding buffer. Every encode is followed by its
 * send_packet (or a reset) before anything else can encode on the thread.
 */
static pthread_key_t out_key;
static pthread_once_t out_once = PTHREAD_ONCE_INIT;

static void out_free(void *p)
{
	cfx_writer_free(p);
	cfx_free(p);
}

static void out_key_init(void)
{
	pthread_key_create(&out_key, out_free);
}

static struct cfx_writer *outw(void)
{
	struct cfx_writer *w;

	pthread_once(&out_once, out_key_init);
	w = pthread_getspecific(out_key);
	if (!w) {
		w = cfx_malloc(sizeof *w);
		cfx_writer_init(w, 4096);
		pthread_setspecific(out_key, w);
	}
	return w;
}

static void send_packet(struct mconn *mc)
{
	struct cfx_writer *w = outw();

	cfx_conn_write(mc->c, w->p, w->len);
	cfx_writer_reset(w);
	if (w->cap > (256u << 10)) { /* a large packet passed: give the memory back */
		cfx_writer_free(w);
		cfx_writer_init(w, 4096);
	}
}

int mqtt_conn_can_send(struct mconn *mc)
{
	return cfx_conn_is_writable(mc->c);
}

int mqtt_conn_send_publish(struct mconn *mc, const struct outmsg *o, uint16_t pid, int dup)
{
	const struct mmsg *m = o->m;
	struct mqtt_publish pub = { .dup = (uint8_t)dup,
				    .qos = o->qos,
				    .retain = o->retain,
				    .packet_id = pid,
				    .topic = m->topic,
				    .payload = m->payload };

	uint16_t new_alias = 0;

	if (mc->version == MQTT_V5) {
		struct mqtt_props *p = &pub.props;
		if (mc->out_alias_max) {
			/* Topic aliases towards the client: a known topic goes as its alias
			 * alone; a new one takes a free alias (or the next, round robin). */
			uint16_t a = 0;
			if (!mc->out_aliases)
				mc->out_aliases = cfx_calloc(TOPIC_ALIASES_MAX + 1, sizeof(char *));
			for (uint16_t i = 1; i <= mc->out_alias_max && !a; i++)
				if (mc->out_aliases[i] && strlen(mc->out_aliases[i]) == m->topic.len &&
				    !memcmp(mc->out_aliases[i], m->topic.p, m->topic.len))
					a = i;
			if (a) {
				pub.topic = (struct cfx_view){ 0 };
			} else {
				a = (uint16_t)(mc->out_alias_next % mc->out_alias_max + 1);
				mc->out_alias_next++;
				cfx_free(mc->out_aliases[a]);
				mc->out_aliases[a] = cfx_strndup((const char *)m->topic.p, m->topic.len);
				new_alias = a;
			}
			p->present |= MQTT_PROP_BIT(TOPIC_ALIAS);
			p->topic_alias = a;
		}
		if (m->has_format) {
			p->present |= MQTT_PROP_BIT(PAYLOAD_FORMAT_INDICATOR);
			p->payload_format = m->format;
		}
		if (m->expires_ms) {
			int64_t left = (m->expires_ms - cfx_clock_wall_ms() + 999) / 1000;
			p->present |= MQTT_PROP_BIT(MESSAGE_EXPIRY_INTERVAL);
			p->message_expiry_s = (uint32_t)CFX_MAX(left, 1);
		}
		if (m->content_type.len) {
			p->present |= MQTT_PROP_BIT(CONTENT_TYPE);
			p->content_type = m->content_type;
		}
		if (m->response_topic.len) {
			p->present |= MQTT_PROP_BIT(RESPONSE_TOPIC);
			p->response_topic = m->response_topic;
		}
		if (m->correlation.len) {
			p->present |= MQTT_PROP_BIT(CORRELATION_DATA);
			p->correlation_data = m->correlation;
		}
		if (o->nsub) {
			p->present |= MQTT_PROP_BIT(SUBSCRIPTION_IDENTIFIER);
			p->sub_id_count = o->nsub;
			p->sub_ids = o->sub_ids;
		}
		if (m->nuser) {
			p->present |= MQTT_PROP_BIT(USER_PROPERTY);
			p->user_prop_count = m->nuser;
			p->user_props = m->user;
		}
	}
	mqtt_encode_publish(outw(), mc->version, &pub);
	if (mc->s && mc->s->max_packet && outw()->len > mc->s->max_packet) {
		cfx_writer_reset(outw()); /* larger than the client takes: not sent (MQTT 3.1.2-24) */
		if (new_alias) { /* the client never learnt it */
			cfx_free(mc->out_aliases[new_alias]);
			mc->out_aliases[new_alias] = NULL;
		}
		return 0;
	}
	send_packet(mc);
	return 1;
}

static void send_ack(struct mconn *mc, int type, uint16_t pid, int reason)
{
	struct mqtt_ack ack = { .packet_id = pid, .reason = (uint8_t)reason };
	mqtt_encode_ack(outw(), mc->version, type, &ack);
	send_packet(mc);
}

void mqtt_conn_send_pubrel(struct mconn *mc, uint16_t pid)
{
	send_ack(mc, MQTT_PUBREL, pid, 0);
}

static void send_disconnect(struct mconn *mc, int reason)
{
	if (mc->version != MQTT_V5 || !mc->connected)
		return;
	struct mqtt_disconnect d = { .reason = (uint8_t)reason };
	mqtt_encode_disconnect(outw(), mc->version, MQTT_DISCONNECT, &d);
	send_packet(mc);
}

/* Ends the connection, telling an MQTT 5 client why. */
void mqtt_conn_kick(struct mconn *mc, int reason)
{
	send_disconnect(mc, reason);
	cfx_conn_close(mc->c, mqtt_reason_name(reason));
}

/* ------------------------------------------------------------------------
 * Publishing into the store
 * ------------------------------------------------------------------------ */

static void slots_flush(struct mconn *mc)
{
	while (mc->head && mc->head->done) {
		struct pub_slot *sl = mc->head;
		mc->head = sl->next;
		if (!mc->head)
			mc->tail = NULL;
		mc->pending--;
		if (sl->ack_type) {
			int reason = sl->err ? MQTT_RC_UNSPECIFIED_ERROR : 0;
			if (sl->err && mc->version != MQTT_V5) {
				/* 3.1.1 has no negative acknowledgement: the client must retry. */
				cfx_free(sl);
				mqtt_conn_kick(mc, MQTT_RC_UNSPECIFIED_ERROR);
				continue;
			}
			send_ack(mc, sl->ack_type, sl->pid, reason);
		}
		cfx_free(sl);
	}
}

static void slot_done_task(void *arg);

static void slot_recheck(struct cfx_loop *loop, struct cfx_timer *t)
{
	CFX_UNUSED(loop);
	slot_done_task(t->data);
}

/* The append completed: acknowledged once the message is readable, so that
 * a subscription made after the PUBACK finds it (retained) and is not sent
 * it as live traffic. On the connection's loop. */
static void slot_done_task(void *arg)
{
	struct pub_slot *sl = arg;

	if (!sl->mc) {
		cfx_free(sl);
		return;
	}
	if (sl->stored && !sl->err && sl->ack_type && !sl->no_wait) {
		uint64_t start, end;
		cfx_store_queue_bounds(sl->svc->st, CFX_VIEW_STR(sl->svc->topic), sl->queue, &start,
				       &end);
		if (end <= sl->offset) {
			cfx_timer_start(sl->loop, &sl->timer, 1, slot_recheck, sl);
			return;
		}
	}
	sl->done = 1;
	slots_flush(sl->mc);
}

static void appended(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct pub_slot *sl = arg;

	sl->err = n ? res[0].err : CFX_EIO;
	if (!sl->err) {
		sl->stored = 1;
		sl->queue = res[0].queue;
		sl->offset = res[0].offset;
	}
	if (!sl->err && sl->retain_topic) /* visible to the next subscriber before the ack */
		mqtt_retain_update(sl->svc, CFX_VIEW_STR(sl->retain_topic), sl->qos, sl->empty,
				   res[0].queue, res[0].offset);
	cfx_free(sl->retain_topic);
	sl->retain_topic = NULL;
	cfx_loop_post(sl->loop, slot_done_task, sl);
}

static void add_prop(struct cfx_prop *props, uint32_t *n, const char *name, struct cfx_view v)
{
	props[(*n)++] = (struct cfx_prop){ CFX_VIEW_STR(name), v };
}

/* Scratch for the store properties of one message. */
struct pub_props {
	struct cfx_prop v[PUB_PROPS_MAX];
	uint32_t n;
	char qs[2], ttl[24], fmt[2];
};

/* The store properties of an MQTT message (docs/mqtt.md); views borrowed. */
static void build_props(struct pub_props *pb, struct cfx_view topic, uint8_t qos, uint8_t retain,
			const char *client_id, const struct mqtt_props *pp, int version)
{
	struct cfx_prop *props = pb->v;
	uint32_t n = 0;
	char *qs = pb->qs, *ttl = pb->ttl, *fmt = pb->fmt;

	qs[0] = (char)('0' + qos);
	qs[1] = 0;
	add_prop(props, &n, MQTT_PROP_TOPIC, topic);
	add_prop(props, &n, MQTT_PROP_QOS, CFX_VIEW_STR(qs));
	if (client_id)
		add_prop(props, &n, MQTT_PROP_CLIENT_ID, CFX_VIEW_STR(client_id));
	if (retain)
		add_prop(props, &n, MQTT_PROP_RETAIN, CFX_VIEW_STR("1"));
	if (pp && version == MQTT_V5) {
		if (pp->present & MQTT_PROP_BIT(CONTENT_TYPE))
			add_prop(props, &n, MQTT_PROP_CONTENT_TYPE, pp->content_type);
		if (pp->present & MQTT_PROP_BIT(RESPONSE_TOPIC))
			add_prop(props, &n, MQTT_PROP_RESPONSE_TOPIC, pp->response_topic);
		if (pp->present & MQTT_PROP_BIT(CORRELATION_DATA))
			add_prop(props, &n, MQTT_PROP_CORRELATION, pp->correlation_data);
		if (pp->present & MQTT_PROP_BIT(PAYLOAD_FORMAT_INDICATOR)) {
			fmt[0] = pp->payload_format ? '1' : '0';
			fmt[1] = 0;
			add_prop(props, &n, MQTT_PROP_PAYLOAD_FORMAT, CFX_VIEW_STR(fmt));
		}
		if (pp->present & MQTT_PROP_BIT(MESSAGE_EXPIRY_INTERVAL)) {
			snprintf(ttl, sizeof pb->ttl, "%" PRIu64, (uint64_t)pp->message_expiry_s * 1000);
			add_prop(props, &n, CFX_PROP_TTL_MS, CFX_VIEW_STR(ttl));
		}
		struct mqtt_prop_iter it;
		struct mqtt_user_prop up;
		mqtt_prop_iter_init(&it, pp);
		while (n < PUB_PROPS_MAX && mqtt_props_next_user(&it, &up) == 1)
			if (!(up.name.len >= 5 && !memcmp(up.name.p, "MQTT_", 5)) &&
			    !(up.name.len >= 2 && !memcmp(up.name.p, "__", 2)) &&
			    !((up.name.len == 4 && !memcmp(up.name.p, "TAGS", 4)) ||
			      (up.name.len == 8 && !memcmp(up.name.p, "UNIQ_KEY", 8)) ||
			      (up.name.len == 4 && !memcmp(up.name.p, "FLAG", 4))))
				props[n++] = (struct cfx_prop){ up.name, up.value };
	}
	pb->n = n;
}

/* Stores a PUBLISH; ack_type is sent once it is stored. */
static int publish(struct mconn *mc, struct cfx_view topic, struct cfx_view payload, uint8_t qos,
		   uint8_t retain, const struct mqtt_props *pp, int ack_type, uint16_t pid)
{
	struct mqtt_service *svc = mc->svc;
	struct pub_props pb;

	build_props(&pb, topic, qos, retain, mc->s ? mc->s->client_id : NULL, pp, mc->version);
	struct cfx_send_msg sm = {
		.m = { .key_null = 1, .body = payload, .born_ms = cfx_clock_wall_ms(),
		       .props = pb.v, .prop_count = pb.n },
		.type = CFX_MSG_FIFO,
		.group = topic, /* one MQTT topic, one queue: its order is kept */
	};
	struct pub_slot *sl = cfx_calloc(1, sizeof *sl);
	sl->mc = mc;
	sl->svc = svc;
	sl->loop = mc->c->loop;
	sl->ack_type = (uint8_t)ack_type;
	sl->pid = pid;
	if (retain) {
		sl->retain_topic = cfx_strndup((const char *)topic.p, topic.len);
		sl->qos = qos;
		sl->empty = payload.len == 0;
	}
	if (mc->tail)
		mc->tail->next = sl;
	else
		mc->head = sl;
	mc->tail = sl;
	mc->pending++;
	atomic_fetch_add(&svc->published, 1);
	int rc = cfx_broker_send(svc->br, CFX_VIEW_STR(svc->topic), &sm, 1,
				 qos ? svc->o.durability : CFX_DURABILITY_ASYNC, appended, sl);
	if (rc) {
		cfx_free(sl->retain_topic);
		sl->retain_topic = NULL;
		sl->err = rc;
		sl->done = 1;
		slots_flush(mc);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * CloudEvents to an EventBridge bus: PUBLISH to "$bus/<bus>"
 *
 * The MQTT binding of CloudEvents: MQTT 5 binary mode (attributes as user
 * properties, datacontenttype as the Content Type property, data as the
 * payload) when a user property "specversion" is present, else the
 * structured mode (the payload is the event in JSON). The event is stored
 * in the bus's topic as every bus event is (ce_* properties; see
 * docs/eventbridge.md). Invalid events are refused with 0x99 (MQTT 5) and
 * stored nowhere.
 * ------------------------------------------------------------------------ */

#define BUS_PREFIX "$bus/"

static bool mqtt_allowed(struct mconn *mc, struct cfx_view topic, unsigned action, size_t fixed);
#define BUS_EVENT_PROPS_MAX 80

struct ev_props {
	struct cfx_prop v[BUS_EVENT_PROPS_MAX];
	uint32_t n;
	char *bytes;
	size_t used, cap;
	size_t off[BUS_EVENT_PROPS_MAX][4];
};

static int ev_emit(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct ev_props *ep = ctx;

	if (ep->n == BUS_EVENT_PROPS_MAX)
		return -1;
	if (ep->used + nlen + vlen > ep->cap) {
		ep->cap = CFX_MAX(2 * ep->cap, ep->used + nlen + vlen + 256);
		ep->bytes = cfx_realloc(ep->bytes, ep->cap);
	}
	ep->off[ep->n][0] = ep->used;
	ep->off[ep->n][1] = nlen;
	memcpy(ep->bytes + ep->used, name, nlen);
	ep->used += nlen;
	ep->off[ep->n][2] = ep->used;
	ep->off[ep->n][3] = vlen;
	if (vlen)
		memcpy(ep->bytes + ep->used, value, vlen);
	ep->used += vlen;
	ep->n++;
	return 0;
}

static int publish_event(struct mconn *mc, struct cfx_view topic, const struct mqtt_publish *pub)
{
	struct mqtt_service *svc = mc->svc;
	struct cfx_view bus = { topic.p + strlen(BUS_PREFIX), topic.len - strlen(BUS_PREFIX) };
	int ack_type = pub->qos == 1 ? MQTT_PUBACK : pub->qos == 2 ? MQTT_PUBREC : 0;
	struct cfx_ce_header h[BUS_EVENT_PROPS_MAX];
	struct cfx_ce_limits lim;
	struct cfx_topic_info ti;
	struct ev_props ep = { 0 };
	struct cfx_ce ce;
	char err[256];
	size_t nh = 0;
	int binary = 0, rc, reason = 0;

	if (!bus.len || memchr(bus.p, '/', bus.len) || !cfx_topic_name_is_valid(bus) ||
	    cfx_broker_topic_get(svc->br, bus, 0, &ti)) {
		reason = MQTT_RC_TOPIC_NAME_INVALID;
		snprintf(err, sizeof err, "no bus %.*s", (int)CFX_MIN(bus.len, 100), bus.p);
		goto refuse;
	}
	if (!mqtt_allowed(mc, bus, CFX_AUTH_PUB, 0)) {
		reason = MQTT_RC_NOT_AUTHORIZED;
		snprintf(err, sizeof err, "not authorized");
		goto refuse;
	}
	if (mc->version == MQTT_V5) {
		struct mqtt_prop_iter it;
		struct mqtt_user_prop up;
		mqtt_prop_iter_init(&it, &pub->props);
		while (nh < BUS_EVENT_PROPS_MAX && mqtt_props_next_user(&it, &up)) {
			h[nh++] = (struct cfx_ce_header){ (const char *)up.name.p, up.name.len,
							  (const char *)up.value.p, up.value.len };
			binary |= up.name.len == 11 && !memcmp(up.name.p, "specversion", 11);
		}
	}
	cfx_ce_limits_default(&lim);
	if (binary) {
		const struct cfx_view *ct = (pub->props.present & MQTT_PROP_BIT(CONTENT_TYPE))
						    ? &pub->props.content_type
						    : NULL;
		rc = cfx_ce_from_props(CFX_CE_BINDING_MQTT, h, nh, ct ? (const char *)ct->p : NULL,
				       ct ? ct->len : 0, pub->payload.p, pub->payload.len,
				       pub->payload.len > 0, &lim, &ce, err, sizeof err);
	} else {
		rc = cfx_ce_parse_structured(pub->payload.p, pub->payload.len, &lim, &ce, err,
					     sizeof err);
	}
	if (rc) {
		reason = MQTT_RC_PAYLOAD_FORMAT_INVALID;
		goto refuse;
	}
	if (cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_KAFKA, ev_emit, &ep) == 0) {
		const char *ct = cfx_ce_binary_content_type(&ce);
		if (ct)
			ev_emit(&ep, "content-type", 12, ct, strlen(ct));
	}
	for (uint32_t i = 0; i < ep.n; i++)
		ep.v[i] = (struct cfx_prop){ { (const uint8_t *)ep.bytes + ep.off[i][0], ep.off[i][1] },
					     { (const uint8_t *)ep.bytes + ep.off[i][2], ep.off[i][3] } };
	struct cfx_send_msg sm = {
		.m = { .key_null = 1, .body = { ce.data, ce.data_len }, .body_null = !ce.has_data,
		       .born_ms = cfx_clock_wall_ms(), .props = ep.v, .prop_count = ep.n },
		.type = CFX_MSG_NORMAL,
	};
	struct pub_slot *sl = cfx_calloc(1, sizeof *sl);
	sl->mc = mc;
	sl->svc = svc;
	sl->loop = mc->c->loop;
	sl->ack_type = (uint8_t)ack_type;
	sl->pid = pub->packet_id;
	sl->no_wait = 1;
	if (mc->tail)
		mc->tail->next = sl;
	else
		mc->head = sl;
	mc->tail = sl;
	mc->pending++;
	rc = cfx_broker_send(svc->br, bus, &sm, 1, pub->qos ? svc->o.durability : CFX_DURABILITY_ASYNC,
			     appended, sl);
	if (rc) {
		sl->err = rc;
		sl->done = 1;
		slots_flush(mc);
	}
	cfx_free(ep.bytes);
	cfx_ce_free(&ce);
	return 0;
refuse:
	cfx_log_ratelimited(CFX_LOG_INFO, "mqtt: %s: an event for %.*s refused: %s", mc->c->peer,
			    (int)CFX_MIN(topic.len, 200), topic.p, err);
	/* 3.1.1 has no negative acknowledgement: acknowledged and dropped. */
	if (ack_type)
		send_ack(mc, ack_type, pub->packet_id, mc->version == MQTT_V5 ? reason : 0);
	return 0;
}

/* ------------------------------------------------------------------------
 * Wills
 * ------------------------------------------------------------------------ */

static struct cfx_view rebase(struct cfx_view v, const uint8_t *from, size_t len, uint8_t *to)
{
	if (!v.len || v.p < from || v.p + v.len > from + len)
		return (struct cfx_view){ 0 };
	return (struct cfx_view){ to + (v.p - from), v.len };
}

struct mwill *mqtt_will_new(const struct mqtt_connect *cn)
{
	const struct mqtt_will *w = &cn->will;
	struct mwill *mw = cfx_calloc(1, sizeof *mw);
	size_t rl = w->props.raw.len;
	uint8_t *at;

	mw->buf = cfx_malloc(w->topic.len + w->payload.len + rl + 1);
	at = mw->buf;
	memcpy(at, w->topic.p, w->topic.len);
	mw->topic = (struct cfx_view){ at, w->topic.len };
	at += w->topic.len;
	if (w->payload.len)
		memcpy(at, w->payload.p, w->payload.len);
	mw->payload = (struct cfx_view){ at, w->payload.len };
	at += w->payload.len;
	mw->props = w->props;
	if (rl) {
		/* The properties' views point into their raw bytes: move them along. */
		memcpy(at, w->props.raw.p, rl);
		const uint8_t *from = w->props.raw.p;
		mw->props.raw = (struct cfx_view){ at, rl };
		mw->props.content_type = rebase(w->props.content_type, from, rl, at);
		mw->props.response_topic = rebase(w->props.response_topic, from, rl, at);
		mw->props.correlation_data = rebase(w->props.correlation_data, from, rl, at);
	}
	mw->props.user_props = NULL; /* iterated from raw */
	mw->props.sub_ids = NULL;
	mw->qos = w->qos;
	mw->retain = w->retain;
	mw->version = cn->version;
	if (cn->version == MQTT_V5 && (w->props.present & MQTT_PROP_BIT(WILL_DELAY_INTERVAL)))
		mw->delay_s = w->props.will_delay_s;
	return mw;
}

void mqtt_will_free(struct mwill *w)
{
	if (!w)
		return;
	cfx_free(w->buf);
	cfx_free(w);
}

struct will_sent {
	struct mqtt_service *svc;
	char *topic;
	uint8_t qos, retain, empty;
};

static void will_stored(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct will_sent *ws = arg;

	if (n && !res[0].err && ws->retain)
		mqtt_retain_update(ws->svc, CFX_VIEW_STR(ws->topic), ws->qos, ws->empty, res[0].queue,
				   res[0].offset);
	cfx_free(ws->topic);
	cfx_free(ws);
}

void mqtt_will_send(struct mqtt_service *svc, struct mwill *w, const char *client_id)
{
	struct pub_props pb;
	struct will_sent *ws = cfx_calloc(1, sizeof *ws);

	build_props(&pb, w->topic, w->qos, w->retain, client_id, &w->props, w->version);
	struct cfx_send_msg sm = {
		.m = { .key_null = 1, .body = w->payload, .born_ms = cfx_clock_wall_ms(),
		       .props = pb.v, .prop_count = pb.n },
		.type = CFX_MSG_FIFO,
		.group = w->topic,
	};
	ws->svc = svc;
	ws->topic = cfx_strndup((const char *)w->topic.p, w->topic.len);
	ws->qos = w->qos;
	ws->retain = w->retain;
	ws->empty = w->payload.len == 0;
	atomic_fetch_add(&svc->published, 1);
	if (cfx_broker_send(svc->br, CFX_VIEW_STR(svc->topic), &sm, 1, svc->o.durability,
			    will_stored, ws)) {
		cfx_free(ws->topic);
		cfx_free(ws);
	}
	mqtt_will_free(w);
}

/* ------------------------------------------------------------------------
 * Packets
 * ------------------------------------------------------------------------ */

static void keep_alive_check(struct cfx_loop *loop, struct cfx_timer *t)
{
	struct mconn *mc = t->data;
	int64_t limit = (int64_t)mc->keep_alive_s * 1500, idle = cfx_loop_now_ms(loop) - mc->last_rx_ms;

	if (idle >= limit) {
		cfx_log_debug(CFX_LOGC_NET, "mqtt: %s: keep alive timeout", mc->c->peer);
		mqtt_conn_kick(mc, MQTT_RC_KEEP_ALIVE_TIMEOUT);
		return;
	}
	cfx_timer_start(loop, t, limit - idle, keep_alive_check, mc);
}

/* On the loop of a connection whose session was taken over. */
static void kick_task(void *arg)
{
	struct cfx_conn_handle *h = arg;

	if (h->conn && h->conn->proto_data) {
		struct mconn *mc = h->conn->proto_data;
		mqtt_conn_kick(mc, MQTT_RC_SESSION_TAKEN_OVER);
	}
	cfx_conn_handle_put(h);
}

static void connack(struct mconn *mc, int reason, int present, const struct mqtt_props *props)
{
	struct mqtt_connack ca = { .session_present = (uint8_t)present, .reason = (uint8_t)reason };

	if (props)
		ca.props = *props;
	mqtt_encode_connack(outw(), mc->version, &ca);
	send_packet(mc);
}

/* ------------------------------------------------------------------------
 * Signing in and permissions (docs/security.md)
 * ------------------------------------------------------------------------ */

static bool auth_on(const struct mqtt_service *svc)
{
	return svc->o.auth && cfx_auth_enabled(svc->o.auth);
}

static void mident_free(struct mident *id)
{
	if (!id)
		return;
	cfx_free(id->held_connect);
	if (id->scram) {
		cfx_scram_server_clear(id->scram);
		cfx_free(id->scram);
	}
	cfx_free(id->final);
	cfx_free(id);
}

static struct mident *mident_new(struct mconn *mc, const char *user, size_t len)
{
	struct mident *id = cfx_calloc(1, sizeof *id + len + 1);

	cfx_auth_peer_parse(mc->c->peer, &id->peer);
	memcpy(id->user, user, len);
	id->user[len] = 0;
	return id;
}

/* Whether the connection may publish to / subscribe with `topic`; counts denials. */
static bool mqtt_allowed(struct mconn *mc, struct cfx_view topic, unsigned action, size_t fixed)
{
	struct cfx_auth *a = mc->svc->o.auth;
	struct cfx_auth_peer peer;
	const struct cfx_auth_peer *pp;
	const char *user = NULL;
	int rc;

	if (!auth_on(mc->svc))
		return true;
	if (mc->id) {
		pp = &mc->id->peer;
		user = mc->id->user[0] ? mc->id->user : NULL;
	} else {
		cfx_auth_peer_parse(mc->c->peer, &peer);
		pp = &peer;
	}
	if (action == CFX_AUTH_SUB)
		rc = cfx_auth_authorize_filter(a, user, (const char *)topic.p, topic.len, fixed, pp);
	else
		rc = cfx_auth_authorize(a, user, CFX_AUTH_TOPIC, (const char *)topic.p, topic.len,
					action, pp);
	if (rc == 0)
		return true;
	cfx_auth_note_denial(a, CFX_AUTH_MQTT, mc->c->peer, user, action, CFX_AUTH_TOPIC,
			     (const char *)topic.p, topic.len);
	return false;
}

/* Refuses a CONNECT with the reason for the version, and closes. */
static int refuse_connect(struct mconn *mc, int reason, const char *why)
{
	connack(mc, reason, 0, NULL);
	cfx_conn_close(mc->c, why);
	return -1;
}

struct auth_wait {
	struct cfx_conn_handle *h;
	struct cfx_loop *loop;
	int rc;
};

static int process_input(struct mconn *mc, const uint8_t *p, size_t n);
static int on_connect(struct mconn *mc, const struct mqtt_connect *cn);
static int scram_start(struct mconn *mc, const struct mqtt_connect *cn, const uint8_t *p,
		       size_t n);

/* The password check is done: go on with the CONNECT it held. @thread loop */
static void auth_done_task(void *arg)
{
	struct auth_wait *w = arg;
	struct cfx_conn *c = w->h->conn;
	struct mconn *mc = c ? c->proto_data : NULL;
	struct mqtt_packet pkt;
	struct mqtt_err err = { 0 };

	cfx_conn_handle_put(w->h);
	if (mc && mc->id && mc->id->authing && !c->closing) {
		mc->id->authing = 0;
		/* Decoded before: it decodes again. */
		int rc = mqtt_decode(mc->id->held_connect, mc->id->held_len, 0, MQTT_FROM_CLIENT, &pkt,
				     &err);
		CFX_ASSERT(rc == 0 && pkt.type == MQTT_CONNECT);
		mc->version = pkt.connect.version;
		if (w->rc) {
			cfx_auth_note_failure(mc->svc->o.auth, CFX_AUTH_MQTT, c->peer,
					      mc->id ? mc->id->user : NULL, "wrong user name or password");
			refuse_connect(mc, MQTT_RC_BAD_USER_NAME_OR_PASSWORD, "wrong MQTT credentials");
		} else if (on_connect(mc, &pkt.connect) == 0 && mc->in.len) {
			/* What the client sent meanwhile. */
			static const uint8_t none;
			process_input(mc, &none, 0);
		}
		if (mc->id) {
			cfx_free(mc->id->held_connect);
			mc->id->held_connect = NULL;
		}
	}
	cfx_free(w);
}

/* @thread auth */
static void auth_done(void *arg, int rc)
{
	struct auth_wait *w = arg;

	w->rc = rc;
	cfx_loop_post(w->loop, auth_done_task, w);
}

/* ------------------------------------------------------------------------
 * MQTT 5 enhanced authentication: SCRAM-SHA-256 / SCRAM-SHA-512
 *
 *   CONNECT (method, client-first) -> AUTH 0x18 (server-first)
 *   AUTH 0x18 (client-final)        -> CONNACK 0x00 (method, server-final)
 *
 * The CONNECT waits (a copy) until the exchange ends; a failure is CONNACK
 * 0x87, an unknown method 0x8C. Re-authentication is not offered.
 * ------------------------------------------------------------------------ */

static int scram_fail(struct mconn *mc, int reason, const char *user, const char *why)
{
	cfx_auth_note_failure(mc->svc->o.auth, CFX_AUTH_MQTT, mc->c->peer, user, why);
	return refuse_connect(mc, reason, "MQTT enhanced authentication failed");
}

static int scram_start(struct mconn *mc, const struct mqtt_connect *cn, const uint8_t *p,
		       size_t n)
{
	struct cfx_auth *a = mc->svc->o.auth;
	struct cfx_view m = cn->props.auth_method;
	enum cfx_scram_mech mech;
	char user[CFX_SCRAM_USER_MAX + 1], out[CFX_SCRAM_SERVER_FIRST_MAX];
	struct cfx_scram_cred cred;
	const char *why = NULL;
	size_t out_len;
	int known, rc;

	if (!auth_on(mc->svc) || cfx_scram_mech_parse((const char *)m.p, m.len, &mech))
		return scram_fail(mc, MQTT_RC_BAD_AUTHENTICATION_METHOD, NULL,
				  "unsupported authentication method");
	mc->id = mident_new(mc, "", 0);
	mc->id->scram = cfx_calloc(1, sizeof *mc->id->scram);
	rc = cfx_scram_server_start(mc->id->scram, mech, cn->props.auth_data.p,
				    cn->props.auth_data.len, user, sizeof user, &why);
	if (rc)
		return scram_fail(mc, MQTT_RC_NOT_AUTHORIZED, NULL, why);
	known = strlen(user) <= CFX_AUTH_USER_MAX && cfx_auth_scram_cred(a, user, mech, &cred) == 0;
	rc = cfx_scram_server_challenge(mc->id->scram, known ? &cred : NULL, out, sizeof out,
					&out_len);
	OPENSSL_cleanse(&cred, sizeof cred);
	if (rc)
		return scram_fail(mc, MQTT_RC_NOT_AUTHORIZED, user, "SCRAM challenge failed");
	mc->id->held_connect = cfx_malloc(n);
	memcpy(mc->id->held_connect, p, n);
	mc->id->held_len = (uint32_t)n;
	struct mqtt_disconnect au = { .reason = MQTT_RC_CONTINUE_AUTHENTICATION };
	au.props.present = MQTT_PROP_BIT(AUTHENTICATION_METHOD) | MQTT_PROP_BIT(AUTHENTICATION_DATA);
	au.props.auth_method = m;
	au.props.auth_data = (struct cfx_view){ (const uint8_t *)out, out_len };
	mqtt_encode_disconnect(outw(), MQTT_V5, MQTT_AUTH, &au);
	send_packet(mc);
	return 0;
}

/* The client's AUTH during the exchange: its client-final. */
static int scram_continue(struct mconn *mc, const struct mqtt_disconnect *au)
{
	struct mident *id = mc->id;
	char out[CFX_SCRAM_SERVER_FINAL_MAX], user[CFX_SCRAM_USER_MAX + 1];
	const char *why = NULL;
	struct mqtt_packet pkt;
	struct mqtt_err err = { 0 };
	size_t out_len;
	int rc;

	snprintf(user, sizeof user, "%s", id->scram->user);
	if (au->reason != MQTT_RC_CONTINUE_AUTHENTICATION ||
	    !(au->props.present & MQTT_PROP_BIT(AUTHENTICATION_METHOD)) ||
	    !cfx_view_eq_str(au->props.auth_method, cfx_scram_mech_name(id->scram->mech)))
		return scram_fail(mc, MQTT_RC_PROTOCOL_ERROR, user, "AUTH out of step");
	rc = cfx_scram_server_finish(id->scram, au->props.auth_data.p, au->props.auth_data.len, out,
				     sizeof out, &out_len, &why);
	if (rc)
		return scram_fail(mc, MQTT_RC_NOT_AUTHORIZED, user, why ? why : "wrong password");
	/* Signed in: the identity gets the user's name, the CONNECT goes on. */
	struct mident *nid = mident_new(mc, user, strlen(user));
	nid->scram = id->scram;
	nid->held_connect = id->held_connect;
	nid->held_len = id->held_len;
	nid->final = cfx_malloc(out_len + 1);
	memcpy(nid->final, out, out_len);
	nid->final_len = out_len;
	id->scram = NULL;
	id->held_connect = NULL;
	mident_free(id);
	mc->id = nid;
	rc = mqtt_decode(nid->held_connect, nid->held_len, 0, MQTT_FROM_CLIENT, &pkt, &err);
	CFX_ASSERT(rc == 0 && pkt.type == MQTT_CONNECT);
	return on_connect(mc, &pkt.connect);
}

/*
 * A CONNECT: without users, or anonymous where allowed, it goes on at once;
 * a user name and password are checked first. Returns 0, -1 (closed), or 1
 * when the check runs on the auth thread (input is held until it is done).
 */
static int connect_or_check(struct mconn *mc, const struct mqtt_connect *cn, const uint8_t *p,
			    size_t n)
{
	struct mqtt_service *svc = mc->svc;
	struct cfx_auth *a = svc->o.auth;
	struct auth_wait *w;
	int rc;

	mc->version = cn->version;
	if (cn->version == MQTT_V5 && (cn->props.present & MQTT_PROP_BIT(AUTHENTICATION_METHOD)))
		return scram_start(mc, cn, p, n);
	if (!auth_on(svc))
		return on_connect(mc, cn);
	if (!cn->has_username) {
		/* A client certificate (mutual TLS) whose common name is a user's name
		 * signs the client in as that user: the certificate is the credential. */
		const char *cert_user = cfx_tls_peer_cn(mc->c);
		struct cfx_auth_user_info ui;
		if (cert_user && *cert_user && cfx_auth_user_get(a, cert_user, &ui) == 0 &&
		    ui.enabled) {
			mc->id = mident_new(mc, cert_user, strlen(cert_user));
			return on_connect(mc, cn);
		}
		if (!cfx_auth_anonymous_ok(a)) {
			cfx_auth_note_failure(a, CFX_AUTH_MQTT, mc->c->peer, NULL,
					      "no user name where one is required");
			return refuse_connect(mc, MQTT_RC_NOT_AUTHORIZED, "MQTT client without credentials");
		}
		mc->id = mident_new(mc, "", 0);
		return on_connect(mc, cn);
	}
	if (!cn->username.len || cn->username.len > CFX_AUTH_USER_MAX || !cn->has_password) {
		cfx_auth_note_failure(a, CFX_AUTH_MQTT, mc->c->peer, NULL,
				      "a user name without a password");
		return refuse_connect(mc, MQTT_RC_BAD_USER_NAME_OR_PASSWORD, "MQTT credentials incomplete");
	}
	mc->id = mident_new(mc, (const char *)cn->username.p, cn->username.len);
	w = cfx_calloc(1, sizeof *w);
	w->h = cfx_conn_handle_get(mc->c);
	w->loop = mc->c->loop;
	rc = cfx_auth_password_check(a, (const char *)cn->username.p, cn->username.len,
				     (const char *)cn->password.p, cn->password.len, auth_done, w);
	if (rc == CFX_AGAIN) {
		mc->id->authing = 1;
		mc->id->held_connect = cfx_malloc(n);
		memcpy(mc->id->held_connect, p, n);
		mc->id->held_len = (uint32_t)n;
		return 1;
	}
	cfx_conn_handle_put(w->h);
	cfx_free(w);
	if (rc) {
		cfx_auth_note_failure(a, CFX_AUTH_MQTT, mc->c->peer, mc->id->user,
				      "wrong user name or password");
		return refuse_connect(mc, MQTT_RC_BAD_USER_NAME_OR_PASSWORD, "wrong MQTT credentials");
	}
	return on_connect(mc, cn);
}

static int on_connect(struct mconn *mc, const struct mqtt_connect *cn)
{
	struct mqtt_service *svc = mc->svc;
	struct mqtt_props out = { 0 };
	char assigned[64];
	struct cfx_view id = cn->client_id;
	uint32_t expiry;
	int present;
	struct cfx_conn_handle *old_h;
	struct cfx_loop *old_loop;

	mc->version = cn->version;
	if (!id.len) {
		if (!cn->clean_start) { /* 3.1.1: a persistent session needs a name */
			connack(mc, MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID, 0, NULL);
			cfx_conn_close(mc->c, "empty client id without clean session");
			return -1;
		}
		snprintf(assigned, sizeof assigned, "cfx-%" PRIx64 "-%" PRIu64,
			 (uint64_t)cfx_clock_wall_ms(), (uint64_t)atomic_fetch_add(&svc->connects, 1));
		id = CFX_VIEW_STR(assigned);
		if (mc->version == MQTT_V5) {
			out.present |= MQTT_PROP_BIT(ASSIGNED_CLIENT_IDENTIFIER);
			out.assigned_client_id = id;
		}
	}
	if (mc->version == MQTT_V5)
		expiry = (cn->props.present & MQTT_PROP_BIT(SESSION_EXPIRY_INTERVAL))
				 ? cn->props.session_expiry_s
				 : 0;
	else
		expiry = cn->clean_start ? 0 : UINT32_MAX;
	if (expiry > svc->o.session_expiry_max_s) {
		expiry = svc->o.session_expiry_max_s;
		if (mc->version == MQTT_V5) {
			out.present |= MQTT_PROP_BIT(SESSION_EXPIRY_INTERVAL);
			out.session_expiry_s = expiry;
		}
	}
	mc->keep_alive_s = cn->keep_alive_s;
	if (svc->o.keep_alive_max_s && (!mc->keep_alive_s || mc->keep_alive_s > svc->o.keep_alive_max_s)) {
		mc->keep_alive_s = svc->o.keep_alive_max_s;
		if (mc->version == MQTT_V5) {
			out.present |= MQTT_PROP_BIT(SERVER_KEEP_ALIVE);
			out.server_keep_alive_s = mc->keep_alive_s;
		}
	}
	if (cn->has_will && mqtt_allowed(mc, cn->will.topic, CFX_AUTH_PUB, 0))
		mc->will = mqtt_will_new(cn);
	mc->s = mqtt_session_attach(svc, id, cn->clean_start, expiry, mc->version, mc,
				    cfx_conn_handle_get(mc->c), mc->c->loop, &present, &old_h,
				    &old_loop);
	/* The limits are this connection's: none of an earlier one's carry over.
	 * QoS 1/2 messages in flight to the client: at most the server's window
	 * (mqtt_opts.inflight_max, 1000), fewer if the client's Receive Maximum says so. */
	mc->s->recv_max = svc->o.inflight_max;
	mc->s->max_packet = 0;
	if (mc->version == MQTT_V5) {
		if (cn->props.present & MQTT_PROP_BIT(RECEIVE_MAXIMUM))
			mc->s->recv_max = CFX_MIN(cn->props.receive_max, svc->o.inflight_max);
		if (cn->props.present & MQTT_PROP_BIT(MAXIMUM_PACKET_SIZE))
			mc->s->max_packet = cn->props.max_packet_bytes;
		if (cn->props.present & MQTT_PROP_BIT(TOPIC_ALIAS_MAXIMUM))
			mc->out_alias_max = CFX_MIN(cn->props.topic_alias_max, (uint16_t)TOPIC_ALIASES_MAX);
		out.present |= MQTT_PROP_BIT(RECEIVE_MAXIMUM) | MQTT_PROP_BIT(TOPIC_ALIAS_MAXIMUM) |
			       MQTT_PROP_BIT(MAXIMUM_PACKET_SIZE);
		out.receive_max = svc->o.receive_max;
		out.topic_alias_max = TOPIC_ALIASES_MAX;
		out.max_packet_bytes = svc->o.packet_bytes_max;
	}
	if (old_h) {
		/* Session takeover: the other connection ends, on its own loop. */
		cfx_log_info("mqtt: client %.*s connected again; the earlier connection is closed",
			     (int)id.len, (const char *)id.p);
		cfx_loop_post(old_loop, kick_task, old_h);
	}
	if (mc->id && mc->id->final) { /* enhanced authentication: the server's proof */
		out.present |= MQTT_PROP_BIT(AUTHENTICATION_METHOD) |
			       MQTT_PROP_BIT(AUTHENTICATION_DATA);
		out.auth_method = CFX_VIEW_STR(cfx_scram_mech_name(mc->id->scram->mech));
		out.auth_data = (struct cfx_view){ (const uint8_t *)mc->id->final,
						   mc->id->final_len };
	}
	mc->connected = 1;
	atomic_fetch_add(&svc->online, 1);
	connack(mc, 0, present, &out);
	if (mc->id && mc->id->scram) {
		cfx_scram_server_clear(mc->id->scram);
		cfx_free(mc->id->scram);
		mc->id->scram = NULL;
		cfx_free(mc->id->final);
		mc->id->final = NULL;
		cfx_free(mc->id->held_connect);
		mc->id->held_connect = NULL;
	}
	if (mc->keep_alive_s)
		cfx_timer_start(mc->c->loop, &mc->ka_timer, (int64_t)mc->keep_alive_s * 1500,
				keep_alive_check, mc);
	mqtt_session_pump(svc, mc->s);
	return 0;
}

static int on_publish(struct mconn *mc, struct mqtt_publish *pub)
{
	struct cfx_view topic = pub->topic;

	if (mc->version == MQTT_V5 && (pub->props.present & MQTT_PROP_BIT(TOPIC_ALIAS))) {
		uint16_t a = pub->props.topic_alias;
		if (!a || a > TOPIC_ALIASES_MAX) {
			mqtt_conn_kick(mc, MQTT_RC_TOPIC_ALIAS_INVALID);
			return -1;
		}
		if (!mc->aliases)
			mc->aliases = cfx_calloc(TOPIC_ALIASES_MAX + 1, sizeof(char *));
		if (topic.len) {
			cfx_free(mc->aliases[a]);
			mc->aliases[a] = cfx_strndup((const char *)topic.p, topic.len);
		} else if (mc->aliases[a]) {
			topic = CFX_VIEW_STR(mc->aliases[a]);
		} else {
			mqtt_conn_kick(mc, MQTT_RC_PROTOCOL_ERROR);
			return -1;
		}
	}
	if (topic.len > strlen(BUS_PREFIX) && !memcmp(topic.p, BUS_PREFIX, strlen(BUS_PREFIX)) &&
	    mqtt_topic_is_valid(topic))
		return publish_event(mc, topic, pub);
	if (!topic.len || !mqtt_topic_is_valid(topic) ||
	    (topic.len > 0 && topic.p[0] == '$')) { /* $-topics are the broker's */
		mqtt_conn_kick(mc, MQTT_RC_TOPIC_NAME_INVALID);
		return -1;
	}
	if (!mqtt_allowed(mc, topic, CFX_AUTH_PUB, 0)) {
		/* Nothing is stored. MQTT 5 says why; 3.1.1 has no negative
		 * acknowledgement: the message is acknowledged and dropped. */
		int reason = mc->version == MQTT_V5 ? MQTT_RC_NOT_AUTHORIZED : 0;
		if (pub->qos == 1)
			send_ack(mc, MQTT_PUBACK, pub->packet_id, reason);
		else if (pub->qos == 2)
			send_ack(mc, MQTT_PUBREC, pub->packet_id, reason);
		return 0;
	}
	if (pub->qos == 2) {
		if (!mqtt_session_qos2_begin(mc->svc, mc->s, pub->packet_id)) {
			/* a resend: stored already */
			if (!mc->head)
				send_ack(mc, MQTT_PUBREC, pub->packet_id, 0);
			else {
				struct pub_slot *sl = cfx_calloc(1, sizeof *sl);
				*sl = (struct pub_slot){ .mc = mc, .loop = mc->c->loop, .ack_type = MQTT_PUBREC,
							 .pid = pub->packet_id, .done = 1 };
				mc->tail->next = sl;
				mc->tail = sl;
				mc->pending++;
			}
			return 0;
		}
	}
	return publish(mc, topic, pub->payload, pub->qos, pub->retain, &pub->props,
		       pub->qos == 1 ? MQTT_PUBACK : pub->qos == 2 ? MQTT_PUBREC : 0, pub->packet_id);
}

static void on_pubrel(struct mconn *mc, uint16_t pid)
{
	int found = mqtt_session_qos2_end(mc->svc, mc->s, pid);

	send_ack(mc, MQTT_PUBCOMP, pid, found ? 0 : MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND);
}

static int on_subscribe(struct mconn *mc, const struct mqtt_subscribe *sub)
{
	struct mqtt_service *svc = mc->svc;
	uint8_t reasons[MQTT_SUBSCRIBE_TOPICS_MAX];
	struct mqtt_subscription subs[MQTT_SUBSCRIBE_TOPICS_MAX];
	int existed[MQTT_SUBSCRIBE_TOPICS_MAX];
	struct mqtt_topic_iter it;
	uint32_t n = 0, sub_id = 0;

	if (mc->version == MQTT_V5)
		sub_id = mqtt_props_first_sub_id(&sub->props);
	mqtt_topic_iter_init(&it, MQTT_SUBSCRIBE, sub);
	while (n < MQTT_SUBSCRIBE_TOPICS_MAX && mqtt_topic_next(&it, &subs[n]) == 1) {
		struct cfx_view tf = subs[n].topic_filter;
		size_t fixed = 0;
		while (fixed < tf.len && tf.p[fixed] != '+' && tf.p[fixed] != '#')
			fixed++;
		if (!mqtt_allowed(mc, tf, CFX_AUTH_SUB, fixed)) {
			existed[n] = 0;
			reasons[n++] = MQTT_RC_NOT_AUTHORIZED;
			continue;
		}
		int rc = mqtt_session_subscribe(svc, mc->s, &subs[n], sub_id, &existed[n]);
		reasons[n] = rc ? MQTT_RC_TOPIC_FILTER_INVALID : subs[n].qos;
		n++;
	}
	struct mqtt_suback sa = { .packet_id = sub->packet_id,
				  .reasons = { reasons, n } };
	mqtt_encode_suback(outw(), mc->version, MQTT_SUBACK, &sa);
	send_packet(mc);
	/* Retained messages, after the SUBACK (MQTT 3.3.1-9 / retain handling). */
	for (uint32_t i = 0; i < n; i++) {
		if (reasons[i] >= 0x80 || subs[i].share_name.len)
			continue;
		if (subs[i].retain_handling == 2 || (subs[i].retain_handling == 1 && existed[i]))
			continue;
		mqtt_session_send_retained(svc, mc->s, subs[i].topic_filter, subs[i].qos, sub_id,
					   subs[i].retain_as_published);
		mqtt_sys_send(svc, mc->s, subs[i].topic_filter, sub_id);
	}
	mqtt_session_pump(svc, mc->s);
	return 0;
}

static int on_unsubscribe(struct mconn *mc, const struct mqtt_subscribe *un)
{
	uint8_t reasons[MQTT_SUBSCRIBE_TOPICS_MAX];
	struct mqtt_subscription e;
	struct mqtt_topic_iter it;
	uint32_t n = 0;

	mqtt_topic_iter_init(&it, MQTT_UNSUBSCRIBE, un);
	while (n < MQTT_SUBSCRIBE_TOPICS_MAX && mqtt_topic_next(&it, &e) == 1) {
		int found = mqtt_session_unsubscribe(mc->svc, mc->s, e.filter);
		reasons[n++] = found ? 0 : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
	}
	struct mqtt_suback ua = { .packet_id = un->packet_id, .reasons = { reasons, n } };
	mqtt_encode_suback(outw(), mc->version, MQTT_UNSUBACK, &ua);
	send_packet(mc);
	return 0;
}

static int handle_packet(struct mconn *mc, const uint8_t *p, size_t n)
{
	struct mqtt_packet pkt;
	struct mqtt_err err = { 0 };
	/* Before CONNACK only a CONNECT, or the AUTH of an exchange under way (MQTT 5). */
	int ver = mc->connected || (mc->id && mc->id->scram) ? mc->version : 0;
	int rc = mqtt_decode(p, n, ver, MQTT_FROM_CLIENT, &pkt, &err);

	if (rc) {
		cfx_log_ratelimited(CFX_LOG_INFO, "mqtt: %s: %s; closing", mc->c->peer,
				    err.desc ? err.desc : "malformed packet");
		if (!mc->connected && err.version) {
			mc->version = err.version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
			if (err.reason == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION ||
			    err.reason == MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID)
				connack(mc, err.reason, 0, NULL);
		} else {
			mqtt_conn_kick(mc, err.reason ? err.reason : MQTT_RC_MALFORMED_PACKET);
		}
		cfx_conn_close(mc->c, "malformed MQTT packet");
		return -1;
	}
	if (!mc->connected && pkt.type == MQTT_AUTH && mc->id && mc->id->scram &&
	    mc->id->held_connect)
		return scram_continue(mc, &pkt.auth) ? -1 : 0;
	if (!mc->connected && pkt.type != MQTT_CONNECT) {
		cfx_conn_close(mc->c, "MQTT packet before CONNECT");
		return -1;
	}
	if (mc->connected && mc->s->conn != mc) { /* taken over by a newer connection */
		mqtt_conn_kick(mc, MQTT_RC_SESSION_TAKEN_OVER);
		return -1;
	}
	switch (pkt.type) {
	case MQTT_CONNECT:
		if (mc->connected || mc->id) { /* a second CONNECT, also during a sign-in */
			mqtt_conn_kick(mc, MQTT_RC_PROTOCOL_ERROR);
			return -1;
		}
		return connect_or_check(mc, &pkt.connect, p, n);
	case MQTT_PUBLISH:
		return on_publish(mc, &pkt.publish);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		if (mqtt_session_acked(mc->svc, mc->s, pkt.type, pkt.ack.packet_id) == 0 &&
		    pkt.type == MQTT_PUBREC)
			mqtt_conn_send_pubrel(mc, pkt.ack.packet_id);
		else if (pkt.type == MQTT_PUBREC) /* unknown id: release it anyway (4.3.3) */
			send_ack(mc, MQTT_PUBREL, pkt.ack.packet_id,
				 MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND);
		return 0;
	case MQTT_PUBREL:
		on_pubrel(mc, pkt.ack.packet_id);
		return 0;
	case MQTT_SUBSCRIBE:
		return on_subscribe(mc, &pkt.subscribe);
	case MQTT_UNSUBSCRIBE:
		return on_unsubscribe(mc, &pkt.unsubscribe);
	case MQTT_PINGREQ:
		mqtt_encode_ping(outw(), MQTT_PINGRESP);
		send_packet(mc);
		return 0;
	case MQTT_DISCONNECT:
		mc->graceful = !(mc->version == MQTT_V5 &&
				 pkt.disconnect.reason == MQTT_RC_DISCONNECT_WITH_WILL);
		if (mc->version == MQTT_V5 &&
		    (pkt.disconnect.props.present & MQTT_PROP_BIT(SESSION_EXPIRY_INTERVAL))) {
			pthread_mutex_lock(&mc->s->mu);
			mc->s->expiry_s = pkt.disconnect.props.session_expiry_s;
			pthread_mutex_unlock(&mc->s->mu);
		}
		cfx_conn_close(mc->c, "client disconnected");
		return -1;
	case MQTT_AUTH:
		mqtt_conn_kick(mc, MQTT_RC_BAD_AUTHENTICATION_METHOD);
		return -1;
	default:
		mqtt_conn_kick(mc, MQTT_RC_PROTOCOL_ERROR);
		return -1;
	}
}

/* ------------------------------------------------------------------------
 * The connection protocol
 * ------------------------------------------------------------------------ */

static int on_open(struct cfx_conn *c)
{
	struct mconn *mc = cfx_calloc(1, sizeof *mc);

	mc->svc = cfx_listener_proto_arg(c->listener);
	mc->c = c;
	mc->last_rx_ms = cfx_loop_now_ms(c->loop);
	/* Idle connections stay small: `in` holds only a packet split across
	 * reads (allocated then); packets are encoded in a per-thread buffer. */
	c->proto_data = mc;
	return 0;
}

static int on_read(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	struct mconn *mc = c->proto_data;

	mc->last_rx_ms = cfx_loop_now_ms(c->loop);
	if (mc->id && mc->id->authing) { /* held until the password check is done */
		if (mc->in.len + n > AUTH_HELD_BYTES_MAX) {
			cfx_conn_close(c, "too much input while signing in");
			return -1;
		}
		cfx_write_bytes(&mc->in, p, n);
		return 0;
	}
	return process_input(mc, p, n);
}

/*
 * Decodes and handles the whole packets of what arrived (after what is held
 * in mc->in); keeps a split tail, or everything after a CONNECT whose
 * password is being checked.
 */
static int process_input(struct mconn *mc, const uint8_t *p, size_t n)
{
	const uint8_t *buf = p;
	size_t pos = 0, len = n;

	if (mc->in.len) { /* the rest of a split packet: continue it */
		cfx_write_bytes(&mc->in, p, n);
		buf = mc->in.p;
		len = mc->in.len;
	}
	/* Whole packets are decoded where they lie (the views live until the
	 * handler returns); only a split tail is kept. */
	while (pos < len) {
		size_t frame;
		int rc = mqtt_frame_check(buf + pos, len - pos,
					  mc->connected ? mc->svc->o.packet_bytes_max
							: MQTT_CONNECT_BYTES_MAX,
					  &frame);
		if (rc == CFX_NEED_MORE)
			break;
		if (rc) {
			mqtt_conn_kick(mc, rc == CFX_E2BIG ? MQTT_RC_PACKET_TOO_LARGE
							 : MQTT_RC_MALFORMED_PACKET);
			return -1;
		}
		int hr = handle_packet(mc, buf + pos, frame);
		if (hr < 0)
			return -1;
		pos += frame;
		if (hr > 0) /* signing in: the rest waits */
			break;
	}
	if (buf != mc->in.p) {
		if (pos < len)
			cfx_write_bytes(&mc->in, buf + pos, len - pos);
		return 0;
	}
	if (pos)
		memmove(mc->in.p, mc->in.p + pos, mc->in.len - pos);
	mc->in.len -= pos;
	if (!mc->in.len && mc->in.cap > 16384) /* a large packet passed: give it back */
		cfx_writer_free(&mc->in);
	return 0;
}

static void on_drain(struct cfx_conn *c)
{
	struct mconn *mc = c->proto_data;

	if (mc && mc->s && mc->connected)
		mqtt_session_pump(mc->svc, mc->s);
}

static void on_close(struct cfx_conn *c)
{
	struct mconn *mc = c->proto_data;

	if (!mc)
		return;
	cfx_timer_stop(c->loop, &mc->ka_timer);
	if (mc->will && !mc->graceful && mc->s && mc->s->conn == mc) {
		struct msession *s = mc->s;
		pthread_mutex_lock(&s->mu);
		if (mc->will->delay_s && s->persistent && s->expiry_s) {
			/* MQTT 5 will delay: it waits, unless the session resumes first. */
			mqtt_will_free(s->will);
			uint32_t d = CFX_MIN(mc->will->delay_s, s->expiry_s);
			mc->will->due_ms = cfx_clock_mono_ms() + (int64_t)d * 1000;
			s->will = mc->will;
			mc->will = NULL;
		}
		pthread_mutex_unlock(&s->mu);
		if (mc->will) {
			mqtt_will_send(mc->svc, mc->will, s->client_id);
			mc->will = NULL;
		}
	}
	/* Appends still out become orphans, freed by their completion (or by
	 * the timer waiting for them to be readable). */
	while (mc->head) {
		struct pub_slot *sl = mc->head;
		mc->head = sl->next;
		if (sl->done)
			cfx_free(sl);
		else
			sl->mc = NULL;
	}
	if (mc->connected)
		atomic_fetch_sub(&mc->svc->online, 1);
	if (mc->s)
		mqtt_session_detach(mc->svc, mc->s, mc);
	for (int i = 0; i <= TOPIC_ALIASES_MAX; i++) {
		if (mc->aliases)
			cfx_free(mc->aliases[i]);
		if (mc->out_aliases)
			cfx_free(mc->out_aliases[i]);
	}
	cfx_free(mc->aliases);
	cfx_free(mc->out_aliases);
	mqtt_will_free(mc->will);
	mident_free(mc->id);
	cfx_writer_free(&mc->in);
	cfx_free(mc);
	c->proto_data = NULL;
}

static int is_busy(struct cfx_conn *c)
{
	CFX_UNUSED(c);
	return 1; /* idle MQTT connections stay: keep alive decides */
}

const struct cfx_conn_proto mqtt_conn_proto = {
	.name = "mqtt",
	.on_open = on_open,
	.on_read = on_read,
	.on_drain = on_drain,
	.on_close = on_close,
	.is_busy = is_busy,
};
