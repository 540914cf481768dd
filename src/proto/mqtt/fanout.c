/*
 * fanout.c - the fan-out thread: tails the MQTT topic and hands each new
 * message to the sessions whose subscriptions match it.
 *
 * One position per queue of the topic, journaled in the light-queue store
 * (cfx_lq_set_pos) after the entries that the messages before it caused,
 * so a crash fans out again at most what came after the last position.
 * A new broker starts at the end of each queue: history is not replayed
 * to MQTT. The thread sleeps on a broker watch of the topic (woken by the
 * dispatch of new messages), at most 100 ms. A second thread ticks once a
 * second for session expiry.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "proto/mqtt/mqtt_int.h"

#define READ_MSGS_MAX 256
#define TARGETS_MAX 65536 /* sessions one message may go to */

/* Where a message goes: one entry per session (its subscriptions merged). */
struct target {
	struct msession *s;
	uint8_t qos;
	uint8_t retain_as_published;
	uint8_t nsub;
	uint32_t sub_ids[MQTT_SUB_IDS_PER_DELIVERY];
};

struct targets {
	struct target *v;
	uint32_t n, cap;
	struct mmsg *m;
	uint64_t serial; /* of the message being fanned out */
};

static void add_target(void *arg, const struct mqtt_sub *sub, int shared)
{
	struct targets *ts = arg;
	struct msession *s = sub->session;
	struct target *t = NULL;

	CFX_UNUSED(shared);
	/* A subscription gets what was stored after it was made; what came
	 * before is the retained message's business (MQTT 3.8.4). */
	if (ts->m->store_ms && ts->m->store_ms < sub->since_ms)
		return;
	if (sub->no_local && ts->m->publisher.len == strlen(s->client_id) &&
	    !memcmp(ts->m->publisher.p, s->client_id, ts->m->publisher.len))
		return; /* its own message, and it asked not to get those back */
	/* A session with several matching subscriptions is one target: the
	 * mark is the fan-out thread's own field, so no search is needed. */
	if (s->fo_serial == ts->serial && s->fo_idx < ts->n && ts->v[s->fo_idx].s == s)
		t = &ts->v[s->fo_idx];
	if (!t) {
		if (ts->n == TARGETS_MAX)
			return;
		if (ts->n == ts->cap) {
			ts->cap = ts->cap ? ts->cap * 2 : 16;
			ts->v = cfx_realloc(ts->v, ts->cap * sizeof *ts->v);
		}
		s->fo_serial = ts->serial;
		s->fo_idx = ts->n;
		t = &ts->v[ts->n++];
		memset(t, 0, sizeof *t);
		t->s = s;
		atomic_fetch_add(&s->refs, 1); /* held past the tree's lock */
	}
	t->qos = CFX_MAX(t->qos, sub->qos);
	t->retain_as_published |= sub->retain_as_published;
	if (sub->sub_id && t->nsub < MQTT_SUB_IDS_PER_DELIVERY)
		t->sub_ids[t->nsub++] = sub->sub_id;
}

static int is_available(void *session)
{
	struct msession *s = session;
	return s->conn != NULL || s->persistent; /* a racy hint is fine here */
}

/*
 * A retained message replaces the topic's retained one; an empty one
 * clears it, leaving a tombstone (MQTT_RETAINED_CLEARED) so that an older
 * message seen later cannot bring it back. Called twice per MQTT publish:
 * when the append completes (before the client's acknowledgement, so the
 * next subscriber sees it) and by the fan-out; only a newer message (a
 * later offset of the topic's one queue) changes anything.
 */
void mqtt_retain_update(struct mqtt_service *svc, struct cfx_view topic, uint8_t qos, int empty,
			uint32_t queue, uint64_t offset)
{
	char name[MQTT_TOPIC_BYTES_MAX + 3];
	struct cfx_lq_entry cur, e = { .flags = (uint16_t)(qos | (empty ? MQTT_RETAINED_CLEARED : 0)),
				       .queue = queue,
				       .offset = offset };
	uint64_t head, tail, seq;
	uint32_t id, n = 0;
	int len = snprintf(name, sizeof name, "r/%.*s", (int)topic.len, (const char *)topic.p);
	struct cfx_view v = { (uint8_t *)name, (size_t)len };

	if (cfx_lq_get(svc->lqs, v, 1, &id))
		return;
	mqtt_retained_add(svc->retained, topic, id);
	cfx_log_debug(CFX_LOGC_NET, "mqtt: retained %.*s%s at %u/%" PRIu64, (int)topic.len,
		      (const char *)topic.p, empty ? " cleared" : "", queue, offset);
	if (cfx_lq_bounds(svc->lqs, id, &head, &tail) == 0 &&
	    cfx_lq_read(svc->lqs, id, head, &cur, &seq, 1, &n) == 0 && n && cur.queue == queue &&
	    cur.offset >= offset)
		return; /* what is there is as new or newer */
	cfx_lq_set(svc->lqs, id, &e);
}

static void fan_out(struct mqtt_service *svc, struct mmsg *m, struct targets *ts)
{
	ts->n = 0;
	ts->m = m;
	ts->serial++;
	if (m->retain)
		mqtt_retain_update(svc, m->topic, m->qos, m->payload.len == 0, m->queue, m->offset);
	mqtt_tree_match(svc->tree, m->topic, add_target, ts, is_available);
	cfx_log_debug(CFX_LOGC_NET, "mqtt: %.*s (queue %u offset %" PRIu64 ") to %u sessions",
		      (int)m->topic.len, (const char *)m->topic.p, m->queue, m->offset, ts->n);
	for (uint32_t i = 0; i < ts->n; i++) {
		struct target *t = &ts->v[i];
		/* Retain As Published keeps the flag; otherwise live messages go without it. */
		mqtt_session_deliver(svc, t->s, m, CFX_MIN(t->qos, m->qos),
				     t->retain_as_published ? m->retain : 0, t->sub_ids, t->nsub);
		msession_unref(svc, t->s);
	}
}

/* Reads and fans out what queue q has after *pos. Returns messages seen. */
static uint32_t drain_queue(struct mqtt_service *svc, uint32_t q, uint64_t *pos,
			    struct targets *ts)
{
	struct cfx_read_result res;
	uint32_t seen = 0;
	int rc;

	cfx_read_result_init(&res);
	rc = cfx_store_read(svc->st, CFX_VIEW_STR(svc->topic), q, *pos, READ_MSGS_MAX, 4u << 20,
			    &res);
	if (rc == CFX_EOFFSET) {
		/* Retention removed what was not fanned out yet, or the position is ahead. */
		*pos = *pos < res.start_offset ? res.start_offset : res.end_offset;
		cfx_read_result_free(&res);
		return 0;
	}
	for (uint32_t i = 0; rc == 0 && i < res.count; i++) {
		struct mmsg *m = mmsg_of_view(&res.msgs[i], q);
		seen++;
		if (!m)
			continue; /* not an MQTT message: no topic */
		fan_out(svc, m, ts);
		mmsg_unref(m);
	}
	if (rc == 0 || rc == CFX_ECORRUPT || rc == CFX_EUNSUPPORTED)
		*pos = res.next_offset > *pos ? res.next_offset : *pos;
	cfx_read_result_free(&res);
	return seen;
}

static void woken(void *arg)
{
	struct mqtt_service *svc = arg;

	pthread_mutex_lock(&svc->fo_mu);
	svc->fo_woken = 1;
	pthread_cond_broadcast(&svc->fo_cv); /* the tick thread waits on it too */
	pthread_mutex_unlock(&svc->fo_mu);
}

static void *fanout_main(void *arg)
{
	struct mqtt_service *svc = arg;
	uint64_t *pos = cfx_calloc(svc->queues, sizeof *pos);
	struct targets ts = { 0 };

	for (uint32_t q = 0; q < svc->queues; q++)
		if (cfx_lq_get_pos(svc->lqs, 0, q, &pos[q]) == 0) {
			cfx_log_debug(CFX_LOGC_NET, "mqtt: fan-out of queue %u resumes at %" PRIu64, q,
				      pos[q]);
		} else {
			uint64_t start, end;
			cfx_store_queue_bounds(svc->st, CFX_VIEW_STR(svc->topic), q, &start, &end);
			pos[q] = end;
			cfx_lq_set_pos(svc->lqs, 0, q, end);
		}
	for (;;) {
		pthread_mutex_lock(&svc->fo_mu);
		svc->fo_woken = 0;
		int stop = svc->stop;
		pthread_mutex_unlock(&svc->fo_mu);
		if (stop)
			break;
		/* Watch before reading, so that a dispatch in between wakes us. */
		uint64_t wid = cfx_broker_watch(svc->br, CFX_VIEW_STR(""), CFX_VIEW_STR(svc->topic),
						woken, svc);
		uint32_t seen = 0;
		for (uint32_t q = 0; q < svc->queues; q++) {
			uint64_t before = pos[q];
			seen += drain_queue(svc, q, &pos[q], &ts);
			if (pos[q] != before)
				cfx_lq_set_pos(svc->lqs, 0, q, pos[q]);
		}
		if (seen) {
			cfx_broker_unwatch(svc->br, wid);
			continue;
		}
		pthread_mutex_lock(&svc->fo_mu);
		if (!svc->fo_woken && !svc->stop) {
			struct timespec ts_;
			clock_gettime(CLOCK_REALTIME, &ts_);
			ts_.tv_nsec += 100 * 1000000L;
			if (ts_.tv_nsec >= 1000000000L) {
				ts_.tv_sec++;
				ts_.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&svc->fo_cv, &svc->fo_mu, &ts_);
		}
		pthread_mutex_unlock(&svc->fo_mu);
		cfx_broker_unwatch(svc->br, wid);
	}
	cfx_free(ts.v);
	cfx_free(pos);
	return NULL;
}

/* ------------------------------------------------------------------------
 * $SYS topics: broker statistics, like Mosquitto's, every 10 s at QoS 0,
 * retained in memory (a new subscriber gets the current values), never
 * stored in the commit log.
 * ------------------------------------------------------------------------ */

static struct mmsg *sys_msg(const char *topic, const char *value)
{
	size_t tl = strlen(topic), vl = strlen(value);
	struct mmsg *m = cfx_calloc(1, sizeof *m);

	atomic_init(&m->refs, 1);
	m->buf = cfx_malloc(tl + vl + 1);
	memcpy(m->buf, topic, tl);
	memcpy(m->buf + tl, value, vl);
	m->topic = (struct cfx_view){ m->buf, tl };
	m->payload = (struct cfx_view){ m->buf + tl, vl };
	m->queue = UINT32_MAX; /* not in the store */
	return m;
}

static void sys_publish(struct mqtt_service *svc, struct targets *ts)
{
	struct cfx_lq_stats ls;
	char v[MQTT_SYS_TOPICS][64];
	const char *t[MQTT_SYS_TOPICS];
	uint32_t n = 0, sessions;

	pthread_mutex_lock(&svc->mu);
	sessions = svc->nsessions;
	pthread_mutex_unlock(&svc->mu);
	cfx_lq_stats(svc->lqs, &ls);
#define SYS(topic, ...)                                   \
	do {                                              \
		t[n] = topic;                             \
		snprintf(v[n], sizeof v[n], __VA_ARGS__); \
		n++;                                      \
	} while (0)
	SYS("$SYS/broker/version", "conflux");
	SYS("$SYS/broker/uptime", "%" PRId64 " seconds",
	    (cfx_clock_mono_ms() - svc->start_mono_ms) / 1000);
	SYS("$SYS/broker/clients/connected", "%u", atomic_load(&svc->online));
	SYS("$SYS/broker/clients/total", "%u", sessions);
	SYS("$SYS/broker/messages/received", "%llu",
	    (unsigned long long)atomic_load(&svc->published));
	SYS("$SYS/broker/messages/sent", "%llu", (unsigned long long)atomic_load(&svc->delivered));
	SYS("$SYS/broker/messages/dropped", "%llu", (unsigned long long)atomic_load(&svc->dropped));
	SYS("$SYS/broker/subscriptions/count", "%zu", mqtt_tree_count(svc->tree));
	SYS("$SYS/broker/light queues/count", "%llu", (unsigned long long)ls.queues);
	SYS("$SYS/broker/light queues/entries", "%llu", (unsigned long long)ls.entries);
#undef SYS
	CFX_ASSERT(n <= MQTT_SYS_TOPICS);
	for (uint32_t i = 0; i < n; i++) {
		struct mmsg *m = sys_msg(t[i], v[i]);
		pthread_mutex_lock(&svc->sys_mu);
		if (i < svc->nsys)
			mmsg_unref(svc->sys[i]);
		svc->sys[i] = m;
		mmsg_ref(m);
		pthread_mutex_unlock(&svc->sys_mu);
		fan_out(svc, m, ts);
		mmsg_unref(m);
	}
	pthread_mutex_lock(&svc->sys_mu);
	svc->nsys = n;
	pthread_mutex_unlock(&svc->sys_mu);
}

void mqtt_sys_send(struct mqtt_service *svc, struct msession *s, struct cfx_view filter,
		   uint32_t sub_id)
{
	struct mmsg *ms[MQTT_SYS_TOPICS];
	uint32_t n = 0;

	if (!filter.len || filter.p[0] != '$')
		return; /* wildcards at the start do not match $-topics */
	pthread_mutex_lock(&svc->sys_mu);
	for (uint32_t i = 0; i < svc->nsys; i++)
		if (mqtt_topic_matches(filter, svc->sys[i]->topic)) {
			ms[n++] = svc->sys[i];
			mmsg_ref(svc->sys[i]);
		}
	pthread_mutex_unlock(&svc->sys_mu);
	for (uint32_t i = 0; i < n; i++) {
		mqtt_session_deliver(svc, s, ms[i], 0, 1, &sub_id, sub_id ? 1 : 0);
		mmsg_unref(ms[i]);
	}
}

void mqtt_sys_free(struct mqtt_service *svc)
{
	for (uint32_t i = 0; i < svc->nsys; i++)
		mmsg_unref(svc->sys[i]);
	svc->nsys = 0;
}

static void *tick_main(void *arg)
{
	struct mqtt_service *svc = arg;
	struct targets ts = { 0 };
	int64_t next_sys = cfx_clock_mono_ms();

	for (;;) {
		pthread_mutex_lock(&svc->fo_mu);
		if (!svc->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&svc->fo_cv, &svc->fo_mu, &ts);
		}
		int stop = svc->stop;
		pthread_mutex_unlock(&svc->fo_mu);
		if (stop)
			break;
		int64_t now = cfx_clock_mono_ms();
		mqtt_sessions_expire(svc, now);
		if (now >= next_sys) {
			sys_publish(svc, &ts);
			next_sys = now + MQTT_SYS_INTERVAL_MS;
		}
	}
	cfx_free(ts.v);
	return NULL;
}

int mqtt_fanout_start(struct mqtt_service *svc)
{
	svc->start_mono_ms = cfx_clock_mono_ms();
	pthread_mutex_init(&svc->sys_mu, NULL);
	pthread_mutex_init(&svc->fo_mu, NULL);
	pthread_cond_init(&svc->fo_cv, NULL);
	if (pthread_create(&svc->fanout_thr, NULL, fanout_main, svc))
		return CFX_EIO;
	if (pthread_create(&svc->tick_thr, NULL, tick_main, svc)) {
		woken(svc);
		pthread_mutex_lock(&svc->fo_mu);
		svc->stop = 1;
		pthread_cond_broadcast(&svc->fo_cv);
		pthread_mutex_unlock(&svc->fo_mu);
		pthread_join(svc->fanout_thr, NULL);
		return CFX_EIO;
	}
	pthread_setname_np(svc->fanout_thr, "cfx-mqtt-fan");
	pthread_setname_np(svc->tick_thr, "cfx-mqtt-tick");
	svc->started = 1;
	return 0;
}

void mqtt_fanout_stop(struct mqtt_service *svc)
{
	if (!svc->started)
		return;
	pthread_mutex_lock(&svc->fo_mu);
	svc->stop = 1;
	pthread_cond_broadcast(&svc->fo_cv);
	pthread_mutex_unlock(&svc->fo_mu);
	pthread_join(svc->fanout_thr, NULL);
	pthread_join(svc->tick_thr, NULL);
	svc->started = 0;
}
