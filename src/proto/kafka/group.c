/*
 * group.c - the Kafka group coordinator and committed offsets.
 *
 * FindCoordinator names this broker. JoinGroup, SyncGroup, Heartbeat and
 * LeaveGroup run Kafka's classic group protocol (docs/design/kafka.md):
 *
 *   Empty --join--> PreparingRebalance --all joined or rebalance timeout-->
 *   CompletingRebalance --leader's SyncGroup--> Stable
 *
 * and back to PreparingRebalance when a member joins, leaves, changes its
 * protocols or misses its session timeout. Assignments are opaque bytes
 * chosen by the leader. Group state lives in memory, in one table behind
 * one mutex (connections of the same group arrive on different loops);
 * a JoinGroup or SyncGroup that has to wait keeps its request slot, and
 * the answer is written under the mutex and handed to the slot's loop.
 * A coordinator thread ticks every 100 ms for the deadlines.
 *
 * OffsetCommit and OffsetFetch use the broker core's group positions
 * (cfx_broker_offset_commit, cfx_broker_group_queue_state): journaled,
 * shared with RocketMQ consumers of the same group name, shown by
 * `conflux group describe` with their lag.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "base/clock.h"
#include "base/log.h"
#include "proto/kafka/kafka_int.h"

#define NODE_ID 0
#define GROUP_MEMBERS_MAX 1000	     /* members per group */
#define GROUP_PROTOCOLS_MAX 32	     /* protocols a member may offer */
#define GROUPS_MAX 100000	     /* groups the coordinator keeps */
#define SESSION_MS_MIN 1000	     /* accepted session timeouts */
#define SESSION_MS_MAX (30 * 60 * 1000)
#define TICK_MS 100

enum gstate { G_EMPTY, G_PREPARING, G_COMPLETING, G_STABLE };

static const char *const gstate_name[] = { "Empty", "PreparingRebalance",
					   "CompletingRebalance", "Stable" };

struct kproto {
	char *name;
	uint8_t *meta;
	size_t len;
};

/* A request slot waiting for its answer, and the loop that owns it. */
struct waiter {
	struct kreq *r;
	struct cfx_loop *loop;
};

struct member {
	struct member *next;
	char *id, *instance_id, *client_id, *host;
	int32_t session_ms, rebalance_ms;
	struct kproto *protos;
	uint32_t nprotos;
	uint8_t *assign;
	size_t assign_len;
	int64_t seen_ms;     /* last heartbeat or request */
	int joined;	     /* rejoined in this rebalance */
	struct waiter join;  /* JoinGroup waiting for the rebalance */
	struct waiter sync;  /* SyncGroup waiting for the leader */
};

/* A member id handed out with MEMBER_ID_REQUIRED, not joined yet (KIP-394). */
struct pending_id {
	struct pending_id *next;
	char *id;
	int64_t expires_ms;
};

struct group {
	struct group *next;
	char *id;
	enum gstate state;
	int32_t generation;
	char *protocol_type, *protocol, *leader;
	struct member *members;
	uint32_t nmembers;
	struct pending_id *pending;
	int64_t join_deadline_ms; /* PreparingRebalance: when it completes anyway */
	int64_t delay_until_ms;	  /* the initial rebalance delay of a new group */
};

/* An answer ready to go: posted to its loop after the mutex is released. */
struct outbox {
	struct waiter *v;
	uint32_t n, cap;
};

struct kafka_coord {
	struct kafka_service *svc;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int stop, stopped;
	struct group *groups;
	uint32_t ngroups;
};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static int view_is(struct cfx_view v, const char *s)
{
	return s && v.len == strlen(s) && (v.len == 0 || !memcmp(v.p, s, v.len));
}

static void outbox_add(struct outbox *ob, struct waiter w)
{
	if (!w.r)
		return;
	if (ob->n == ob->cap) {
		ob->cap = ob->cap ? ob->cap * 2 : 8;
		ob->v = cfx_realloc(ob->v, ob->cap * sizeof *ob->v);
	}
	ob->v[ob->n++] = w;
}

static void answer_task(void *arg)
{
	struct kreq *r = arg;

	r->pending = 0;
	kreq_done(r);
}

/* Hands every ready answer to its loop. Call without the mutex. */
static void outbox_send(struct outbox *ob)
{
	for (uint32_t i = 0; i < ob->n; i++)
		cfx_loop_post(ob->v[i].loop, answer_task, ob->v[i].r);
	cfx_free(ob->v);
	ob->v = NULL;
	ob->n = ob->cap = 0;
}

/* Makes a request slot wait for an answer from the coordinator. */
static struct waiter waiter_of(struct kconn *kc, struct kreq *r)
{
	r->pending = 1;
	return (struct waiter){ r, kc->c->loop };
}

static char *new_member_id(struct cfx_view client_id)
{
	uint8_t rnd[16];
	char hex[33], *id;
	size_t n = CFX_MIN(client_id.len, 100);

	if (RAND_bytes(rnd, sizeof rnd) != 1)
		for (size_t i = 0; i < sizeof rnd; i++)
			rnd[i] = (uint8_t)(cfx_clock_mono_ns() >> (i % 8 * 8)) ^ (uint8_t)i;
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	id = cfx_malloc(n + 1 + sizeof hex);
	memcpy(id, client_id.p, n);
	id[n] = '-';
	memcpy(id + n + 1, hex, sizeof hex);
	return id;
}

/* ------------------------------------------------------------------------
 * Groups and members
 * ------------------------------------------------------------------------ */

static struct group *group_find(struct kafka_coord *co, struct cfx_view id)
{
	for (struct group *g = co->groups; g; g = g->next)
		if (view_is(id, g->id))
			return g;
	return NULL;
}

static struct member *member_find(struct group *g, struct cfx_view id)
{
	for (struct member *m = g->members; m; m = m->next)
		if (view_is(id, m->id))
			return m;
	return NULL;
}

static void protos_free(struct member *m)
{
	for (uint32_t i = 0; i < m->nprotos; i++) {
		cfx_free(m->protos[i].name);
		cfx_free(m->protos[i].meta);
	}
	cfx_free(m->protos);
	m->protos = NULL;
	m->nprotos = 0;
}

static void member_free(struct member *m)
{
	protos_free(m);
	cfx_free(m->id);
	cfx_free(m->instance_id);
	cfx_free(m->client_id);
	cfx_free(m->host);
	cfx_free(m->assign);
	cfx_free(m);
}

static const struct kproto *member_proto(const struct member *m, const char *name)
{
	for (uint32_t i = 0; i < m->nprotos; i++)
		if (name && !strcmp(m->protos[i].name, name))
			return &m->protos[i];
	return NULL;
}

/* Writes a JoinGroup answer into the member's waiting slot. */
static void write_join(struct group *g, struct member *m, int16_t err, struct outbox *ob)
{
	struct kreq *r = m->join.r;
	struct cfx_writer *w;
	int16_t v;
	int flex, leader;
	size_t start;

	if (!r)
		return;
	w = &r->out;
	v = r->h.api_version;
	flex = r->flex;
	leader = !err && g->leader && !strcmp(g->leader, m->id);
	start = kreq_begin(r);
	if (v >= 2)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	    /* Response: ErrorCode */
	kf_write_i32(w, err ? -1 : g->generation);
	if (v >= 7)
		kf_write_string(w, CFX_VIEW_STR(g->protocol_type ? g->protocol_type : ""), flex,
				err || !g->protocol_type);
	if (v >= 7)
		kf_write_string(w, CFX_VIEW_STR(err || !g->protocol ? "" : g->protocol), flex,
				err || !g->protocol);
	else
		kf_write_string(w, CFX_VIEW_STR(err || !g->protocol ? "" : g->protocol), flex, 0);
	kf_write_string(w, CFX_VIEW_STR(err || !g->leader ? "" : g->leader), flex, 0);
	if (v >= 9)
		kf_write_bool(w, 0); /* Response: SkipAssignment */
	kf_write_string(w, CFX_VIEW_STR(m->id), flex, 0);
	kf_write_array_len(w, leader ? (int32_t)g->nmembers : 0, flex);
	for (struct member *x = leader ? g->members : NULL; x; x = x->next) {
		const struct kproto *p = member_proto(x, g->protocol);
		kf_write_string(w, CFX_VIEW_STR(x->id), flex, 0);
		if (v >= 5)
			kf_write_string(w, CFX_VIEW_STR(x->instance_id ? x->instance_id : ""), flex,
					!x->instance_id);
		kf_write_bytes(w, (struct cfx_view){ p ? p->meta : NULL, p ? p->len : 0 }, flex, 0);
		if (flex)
			kf_write_empty_tagged_fields(w);
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	outbox_add(ob, m->join);
	m->join = (struct waiter){ 0 };
}

/* Writes a SyncGroup answer into the member's waiting slot. */
static void write_sync(struct group *g, struct member *m, int16_t err, struct outbox *ob)
{
	struct kreq *r = m->sync.r;
	struct cfx_writer *w;
	int16_t v;
	int flex;
	size_t start;

	if (!r)
		return;
	w = &r->out;
	v = r->h.api_version;
	flex = r->flex;
	start = kreq_begin(r);
	if (v >= 1)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	    /* Response: ErrorCode */
	if (v >= 5) {
		kf_write_string(w, CFX_VIEW_STR(g->protocol_type ? g->protocol_type : ""), flex,
				err || !g->protocol_type);
		kf_write_string(w, CFX_VIEW_STR(g->protocol ? g->protocol : ""), flex,
				err || !g->protocol);
	}
	kf_write_bytes(w, (struct cfx_view){ err ? NULL : m->assign, err ? 0 : m->assign_len },
		       flex, 0);
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	outbox_add(ob, m->sync);
	m->sync = (struct waiter){ 0 };
}

static void start_rebalance(struct kafka_coord *co, struct group *g, int64_t now,
			    struct outbox *ob);
static void try_complete_join(struct kafka_coord *co, struct group *g, int64_t now,
			      struct outbox *ob);

/* Removes a member (left, expired, or not rejoined); the group rebalances. */
static void member_remove(struct kafka_coord *co, struct group *g, struct member *m, int64_t now,
			  struct outbox *ob)
{
	struct member **pp;

	write_join(g, m, KF_ERR_UNKNOWN_MEMBER_ID, ob);
	write_sync(g, m, KF_ERR_UNKNOWN_MEMBER_ID, ob);
	for (pp = &g->members; *pp != m; pp = &(*pp)->next)
		;
	*pp = m->next;
	g->nmembers--;
	if (g->leader && !strcmp(g->leader, m->id)) {
		cfx_free(g->leader);
		g->leader = NULL;
	}
	member_free(m);
	if (g->state == G_PREPARING)
		try_complete_join(co, g, now, ob);
	else
		start_rebalance(co, g, now, ob);
}

/* The protocol every member supports that most members prefer. */
static char *select_protocol(struct group *g)
{
	const char *best = NULL;
	uint32_t best_votes = 0;
	struct member *first = g->members;

	if (!first)
		return NULL;
	for (uint32_t i = 0; i < first->nprotos; i++) {
		const char *cand = first->protos[i].name;
		uint32_t votes = 0;
		int all = 1;
		for (struct member *m = g->members; m && all; m = m->next)
			all = member_proto(m, cand) != NULL;
		if (!all)
			continue;
		for (struct member *m = g->members; m; m = m->next) {
			/* a member votes for its first protocol every member supports */
			for (uint32_t k = 0; k < m->nprotos; k++) {
				int everyone = 1;
				for (struct member *x = g->members; x && everyone; x = x->next)
					everyone = member_proto(x, m->protos[k].name) != NULL;
				if (everyone) {
					votes += !strcmp(m->protos[k].name, cand);
					break;
				}
			}
		}
		if (!best || votes > best_votes) {
			best = cand;
			best_votes = votes;
		}
	}
	return best ? cfx_strdup(best) : NULL;
}

/* PreparingRebalance ends when every member has rejoined (after the
 * initial delay of a new group), or at the deadline without the others. */
static void try_complete_join(struct kafka_coord *co, struct group *g, int64_t now,
			      struct outbox *ob)
{
	int all = 1;

	CFX_UNUSED(co);
	if (g->state != G_PREPARING)
		return;
	for (struct member *m = g->members; m; m = m->next)
		all &= m->joined;
	if (!(all && now >= g->delay_until_ms) && now < g->join_deadline_ms)
		return;
	for (struct member *m = g->members, *next; m; m = next) {
		next = m->next;
		if (!m->joined) { /* did not rejoin in time */
			struct member **pp;
			write_sync(g, m, KF_ERR_UNKNOWN_MEMBER_ID, ob);
			for (pp = &g->members; *pp != m; pp = &(*pp)->next)
				;
			*pp = m->next;
			g->nmembers--;
			if (g->leader && !strcmp(g->leader, m->id)) {
				cfx_free(g->leader);
				g->leader = NULL;
			}
			member_free(m);
		}
	}
	g->generation++;
	cfx_free(g->protocol);
	g->protocol = NULL;
	if (!g->members) {
		g->state = G_EMPTY;
		cfx_free(g->protocol_type);
		g->protocol_type = NULL;
		return;
	}
	g->protocol = select_protocol(g);
	if (!g->leader)
		g->leader = cfx_strdup(g->members->id);
	g->state = G_COMPLETING;
	for (struct member *m = g->members; m; m = m->next) {
		cfx_free(m->assign);
		m->assign = NULL;
		m->assign_len = 0;
		m->joined = 0;
		m->seen_ms = now;
		write_join(g, m, KF_ERR_NONE, ob);
	}
}

/* Something changed: everyone must rejoin. */
static void start_rebalance(struct kafka_coord *co, struct group *g, int64_t now,
			    struct outbox *ob)
{
	int64_t rebalance_ms = 0;

	if (g->state == G_PREPARING) {
		try_complete_join(co, g, now, ob);
		return;
	}
	if (!g->members) {
		if (g->state != G_EMPTY)
			g->generation++;
		g->state = G_EMPTY;
		cfx_free(g->protocol);
		cfx_free(g->protocol_type);
		g->protocol = g->protocol_type = NULL;
		return;
	}
	for (struct member *m = g->members; m; m = m->next) {
		write_sync(g, m, KF_ERR_REBALANCE_IN_PROGRESS, ob);
		rebalance_ms = CFX_MAX(rebalance_ms, (int64_t)m->rebalance_ms);
	}
	if (g->state == G_EMPTY)
		g->delay_until_ms = now + co->svc->o.group_initial_delay_ms;
	g->state = G_PREPARING;
	g->join_deadline_ms = now + CFX_MAX(rebalance_ms, (int64_t)co->svc->o.group_initial_delay_ms);
	try_complete_join(co, g, now, ob);
}

static struct group *group_get(struct kafka_coord *co, struct cfx_view id)
{
	struct group *g = group_find(co, id);

	if (g || co->ngroups >= GROUPS_MAX)
		return g;
	g = cfx_calloc(1, sizeof *g);
	g->id = kafka__vdup(id);
	g->next = co->groups;
	co->groups = g;
	co->ngroups++;
	return g;
}

/* Drops an empty group with no members (its offsets stay in the core). */
static void group_maybe_drop(struct kafka_coord *co, struct group *g)
{
	struct group **pp;

	if (g->members || g->pending || g->state != G_EMPTY)
		return;
	for (pp = &co->groups; *pp != g; pp = &(*pp)->next)
		;
	*pp = g->next;
	co->ngroups--;
	cfx_free(g->id);
	cfx_free(g->protocol);
	cfx_free(g->protocol_type);
	cfx_free(g->leader);
	cfx_free(g);
}

/* The coordinator's clock: sessions, pending member ids, join deadlines. */
static void tick(struct kafka_coord *co, int64_t now, struct outbox *ob)
{
	for (struct group *g = co->groups, *gnext; g; g = gnext) {
		gnext = g->next;
		for (struct pending_id **pp = &g->pending; *pp;) {
			struct pending_id *p = *pp;
			if (now >= p->expires_ms) {
				*pp = p->next;
				cfx_free(p->id);
				cfx_free(p);
			} else {
				pp = &p->next;
			}
		}
		for (struct member *m = g->members, *next; m; m = next) {
			next = m->next;
			/* A member waiting in JoinGroup is bounded by the join deadline. */
			if (!m->join.r && now - m->seen_ms > m->session_ms) {
				cfx_log(CFX_LOG_INFO, "kafka: group %s: member %s missed its session "
						      "timeout (%d ms)",
					g->id, m->id, m->session_ms);
				member_remove(co, g, m, now, ob);
				next = g->members; /* the list changed: start over */
			}
		}
		try_complete_join(co, g, now, ob);
		group_maybe_drop(co, g);
	}
}

static void *coord_main(void *arg)
{
	struct kafka_coord *co = arg;
	struct outbox ob = { 0 };

	pthread_mutex_lock(&co->mu);
	while (!co->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&co->cv, &co->mu, &ts);
		if (co->stop)
			break;
		tick(co, cfx_clock_mono_ms(), &ob);
		if (ob.n) {
			pthread_mutex_unlock(&co->mu);
			outbox_send(&ob);
			pthread_mutex_lock(&co->mu);
		}
	}
	pthread_mutex_unlock(&co->mu);
	return NULL;
}

struct kafka_coord *kafka_coord_new(struct kafka_service *svc)
{
	struct kafka_coord *co = cfx_calloc(1, sizeof *co);

	co->svc = svc;
	pthread_mutex_init(&co->mu, NULL);
	pthread_cond_init(&co->cv, NULL);
	int rc = pthread_create(&co->thread, NULL, coord_main, co);
	CFX_ASSERT(rc == 0);
	pthread_setname_np(co->thread, "cfx-kgroups");
	return co;
}

void kafka_coord_stop(struct kafka_coord *co)
{
	if (!co || co->stopped)
		return;
	pthread_mutex_lock(&co->mu);
	co->stop = 1;
	pthread_cond_signal(&co->cv);
	pthread_mutex_unlock(&co->mu);
	pthread_join(co->thread, NULL);
	co->stopped = 1;
}

void kafka_coord_free(struct kafka_coord *co)
{
	if (!co)
		return;
	kafka_coord_stop(co);
	/* The loops are stopped and their connections closed: a slot still
	 * waiting is an orphan, which completing frees. */
	while (co->groups) {
		struct group *g = co->groups;
		co->groups = g->next;
		while (g->members) {
			struct member *m = g->members;
			g->members = m->next;
			if (m->join.r)
				answer_task(m->join.r);
			if (m->sync.r)
				answer_task(m->sync.r);
			member_free(m);
		}
		while (g->pending) {
			struct pending_id *p = g->pending;
			g->pending = p->next;
			cfx_free(p->id);
			cfx_free(p);
		}
		cfx_free(g->id);
		cfx_free(g->protocol);
		cfx_free(g->protocol_type);
		cfx_free(g->leader);
		cfx_free(g);
	}
	pthread_cond_destroy(&co->cv);
	pthread_mutex_destroy(&co->mu);
	cfx_free(co);
}

/* The core's group record, so that the group is listed and described;
 * first, whether the connection may consume as that group. */
static int16_t core_group(struct kconn *kc, struct cfx_view id)
{
	struct kafka_service *svc = kc->svc;
	struct cfx_group_info gi;
	int16_t err;
	int rc;

	if (!id.len || !cfx_group_name_is_valid(id))
		return KF_ERR_INVALID_GROUP_ID;
	if ((err = kf_authorize(kc, CFX_AUTH_GROUP, id, CFX_AUTH_SUB)))
		return err;
	rc = cfx_broker_group_get(svc->br, id, 0, &gi);
	if (rc == CFX_ENOENT) {
		memset(&gi, 0, sizeof gi);
		memcpy(gi.name, id.p, id.len);
		cfx_retry_policy_default(&gi.retry);
		gi.created_ms = cfx_clock_wall_ms();
		rc = cfx_broker_group_create(svc->br, &gi);
		if (rc == CFX_EEXIST)
			rc = 0;
	}
	return rc ? KF_ERR_COORDINATOR_NOT_AVAILABLE : KF_ERR_NONE;
}

/* ------------------------------------------------------------------------
 * FindCoordinator (v0-v4)
 * ------------------------------------------------------------------------ */

void kf_find_coordinator(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	int8_t key_type = 0;
	struct cfx_view keys[64];
	int32_t nkeys = 0;

	if (v <= 3) {
		kf_read_string(rd, flex, &null); /* the group id: every key is ours */
		nkeys = 1;
	}
	if (v >= 1)
		key_type = kf_read_i8(rd);
	if (v >= 4) {
		nkeys = kf_read_array_len(rd, flex);
		if (nkeys > (int32_t)CFX_ARRAY_LEN(keys))
			cfx_reader_fail(rd, "too many coordinator keys");
		for (int32_t i = 0; i < nkeys && !rd->err; i++)
			keys[i] = kf_read_string(rd, flex, &null);
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || nkeys < 0) {
		kafka__bad_request(kc, r, "FindCoordinator");
		return;
	}
	/* Groups are served here; transactions are not (no transactional ids). */
	int16_t err = key_type == 0 ? KF_ERR_NONE : KF_ERR_COORDINATOR_NOT_AVAILABLE;
	const char *msg = err ? "transactions are not served by this broker" : NULL;
	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 1)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	if (v <= 3) {
		kf_write_i16(w, err);
		if (v >= 1)
			kf_write_string(w, CFX_VIEW_STR(msg ? msg : ""), flex, !msg);
		kf_write_i32(w, err ? -1 : NODE_ID);
		kf_write_string(w, CFX_VIEW_STR(err ? "" : svc->host), flex, 0);
		kf_write_i32(w, err ? -1 : svc->port);
	} else {
		kf_write_array_len(w, nkeys, flex);
		for (int32_t i = 0; i < nkeys; i++) {
			kf_write_string(w, keys[i], flex, 0);
			kf_write_i32(w, err ? -1 : NODE_ID);
			kf_write_string(w, CFX_VIEW_STR(err ? "" : svc->host), flex, 0);
			kf_write_i32(w, err ? -1 : svc->port);
			kf_write_i16(w, err);
			kf_write_string(w, CFX_VIEW_STR(msg ? msg : ""), flex, !msg);
			kf_write_empty_tagged_fields(w);
		}
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * JoinGroup (v0-v9)
 * ------------------------------------------------------------------------ */

/* A JoinGroup answered at once with an error (no member state involved). */
static void join_error(struct kreq *r, int16_t err, struct cfx_view member_id)
{
	struct cfx_writer *w = &r->out;
	int16_t v = r->h.api_version;
	int flex = r->flex;
	size_t start = kreq_begin(r);

	if (v >= 2)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	    /* Response: ErrorCode */
	kf_write_i32(w, -1);	    /* Response: GenerationId */
	if (v >= 7)
		kf_write_string(w, (struct cfx_view){ 0 }, flex, 1); /* ProtocolType */
	kf_write_string(w, (struct cfx_view){ 0 }, flex, v >= 7); /* ProtocolName */
	kf_write_string(w, (struct cfx_view){ 0 }, flex, 0);	   /* Leader */
	if (v >= 9)
		kf_write_bool(w, 0); /* SkipAssignment */
	kf_write_string(w, member_id, flex, 0);
	kf_write_array_len(w, 0, flex); /* Members */
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* Do the offered protocols fit the group's (type, and one protocol every member supports)? */
static int protocols_fit(const struct group *g, struct cfx_view type, const struct kproto *protos,
			 uint32_t n)
{
	if (!g->members)
		return 1;
	if (!view_is(type, g->protocol_type))
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		int all = 1;
		for (const struct member *m = g->members; m && all; m = m->next)
			all = member_proto(m, protos[i].name) != NULL;
		if (all)
			return 1;
	}
	return 0;
}

static int protocols_equal(const struct member *m, const struct kproto *protos, uint32_t n)
{
	if (m->nprotos != n)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(m->protos[i].name, protos[i].name) || m->protos[i].len != protos[i].len ||
		    (protos[i].len && memcmp(m->protos[i].meta, protos[i].meta, protos[i].len)))
			return 0;
	return 1;
}

void kf_join_group(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	struct kafka_coord *co = svc->coord;
	int16_t v = r->h.api_version;
	int flex = r->flex, null, instance_null = 1;
	struct cfx_view gid, member_id, instance = { 0 }, ptype;
	struct kproto protos[GROUP_PROTOCOLS_MAX];
	int32_t session_ms, rebalance_ms, np, nread = 0;
	struct outbox ob = { 0 };
	int16_t err;

	gid = kf_read_string(rd, flex, &null);
	session_ms = kf_read_i32(rd);
	rebalance_ms = v >= 1 ? kf_read_i32(rd) : session_ms;
	member_id = kf_read_string(rd, flex, &null);
	if (v >= 5)
		instance = kf_read_string(rd, flex, &instance_null);
	ptype = kf_read_string(rd, flex, &null);
	np = kf_read_array_len(rd, flex);
	if (np > GROUP_PROTOCOLS_MAX)
		cfx_reader_fail(rd, "too many group protocols");
	for (int32_t i = 0; i < np && !rd->err; i++) {
		struct cfx_view name = kf_read_string(rd, flex, &null);
		struct cfx_view meta = kf_read_bytes(rd, flex, &null);
		if (flex)
			kf_skip_tagged_fields(rd);
		if (rd->err)
			break;
		protos[nread++] = (struct kproto){ kafka__vdup(name), (uint8_t *)meta.p, meta.len };
	}
	if (v >= 8)
		kf_read_string(rd, flex, &null); /* Reason: logged by the client */
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || np < 0) {
		for (int32_t i = 0; i < nread; i++)
			cfx_free(protos[i].name);
		kafka__bad_request(kc, r, "JoinGroup");
		return;
	}
	err = core_group(kc, gid);
	if (!err && (session_ms < SESSION_MS_MIN || session_ms > SESSION_MS_MAX))
		err = KF_ERR_INVALID_SESSION_TIMEOUT;
	if (!err && (!ptype.len || np == 0))
		err = KF_ERR_INCONSISTENT_GROUP_PROTOCOL;
	if (rebalance_ms <= 0)
		rebalance_ms = session_ms;

	struct member *m = NULL;
	char *new_id = NULL;
	int64_t now = cfx_clock_mono_ms();
	pthread_mutex_lock(&co->mu);
	struct group *g = err ? NULL : group_get(co, gid);
	if (!err && !g)
		err = KF_ERR_COORDINATOR_NOT_AVAILABLE;
	if (!err && !protocols_fit(g, ptype, protos, (uint32_t)np))
		err = KF_ERR_INCONSISTENT_GROUP_PROTOCOL;
	if (!err && !member_id.len) {
		/* A static member coming back replaces its earlier incarnation. */
		if (!instance_null)
			for (struct member *x = g->members; x; x = x->next)
				if (x->instance_id && view_is(instance, x->instance_id)) {
					member_remove(co, g, x, now, &ob);
					break;
				}
		new_id = new_member_id(r->h.client_id.len ? r->h.client_id
							  : CFX_VIEW_STR("consumer"));
		if (v >= 4) {
			/* KIP-394: the member learns its id first and joins with it. */
			struct pending_id *p = cfx_calloc(1, sizeof *p);
			p->id = new_id;
			p->expires_ms = now + session_ms;
			p->next = g->pending;
			g->pending = p;
			err = KF_ERR_MEMBER_ID_REQUIRED;
			member_id = CFX_VIEW_STR(new_id);
		}
	} else if (!err) {
		m = member_find(g, member_id);
		if (!m) {
			struct pending_id **pp = &g->pending;
			while (*pp && !view_is(member_id, (*pp)->id))
				pp = &(*pp)->next;
			if (*pp) {
				struct pending_id *p = *pp;
				*pp = p->next;
				new_id = p->id;
				cfx_free(p);
			} else {
				err = KF_ERR_UNKNOWN_MEMBER_ID;
			}
		}
	}
	if (!err && !m && g->nmembers >= GROUP_MEMBERS_MAX)
		err = KF_ERR_GROUP_MAX_SIZE_REACHED;
	if (err) {
		/* The answer carries the id (MEMBER_ID_REQUIRED): write it under the lock. */
		join_error(r, err, member_id);
		if (g)
			group_maybe_drop(co, g);
		pthread_mutex_unlock(&co->mu);
		if (err != KF_ERR_MEMBER_ID_REQUIRED)
			cfx_free(new_id);
		for (int32_t i = 0; i < np; i++)
			cfx_free(protos[i].name);
		outbox_send(&ob);
		return;
	}
	int changed = 1;
	if (!m) {
		struct member **pp = &g->members;
		m = cfx_calloc(1, sizeof *m);
		m->id = new_id;
		m->client_id = r->h.client_id_null ? cfx_strdup("") : kafka__vdup(r->h.client_id);
		m->host = cfx_strdup(kc->c->peer);
		if (!instance_null)
			m->instance_id = kafka__vdup(instance);
		while (*pp)
			pp = &(*pp)->next;
		*pp = m;
		g->nmembers++;
	} else {
		changed = !protocols_equal(m, protos, (uint32_t)np);
		if (m->join.r)
			write_join(g, m, KF_ERR_REBALANCE_IN_PROGRESS, &ob); /* superseded */
	}
	protos_free(m);
	m->protos = cfx_calloc((size_t)np, sizeof *m->protos);
	for (int32_t i = 0; i < np; i++) {
		m->protos[i].name = protos[i].name;
		m->protos[i].len = protos[i].len;
		m->protos[i].meta = cfx_malloc(protos[i].len + 1);
		if (protos[i].len)
			memcpy(m->protos[i].meta, protos[i].meta, protos[i].len);
	}
	m->nprotos = (uint32_t)np;
	m->session_ms = session_ms;
	m->rebalance_ms = rebalance_ms;
	m->seen_ms = now;
	m->join = waiter_of(kc, r);
	m->joined = 1;
	if (!g->protocol_type)
		g->protocol_type = kafka__vdup(ptype);
	switch (g->state) {
	case G_PREPARING:
		try_complete_join(co, g, now, &ob);
		break;
	case G_COMPLETING:
	case G_STABLE:
		/* A follower rejoining unchanged gets the current generation again. */
		if (!changed && !(g->leader && !strcmp(g->leader, m->id))) {
			m->joined = 0;
			write_join(g, m, KF_ERR_NONE, &ob);
			break;
		}
		start_rebalance(co, g, now, &ob);
		break;
	case G_EMPTY:
		start_rebalance(co, g, now, &ob);
		break;
	}
	pthread_mutex_unlock(&co->mu);
	outbox_send(&ob);
}

/* ------------------------------------------------------------------------
 * SyncGroup (v0-v5), Heartbeat (v0-v4), LeaveGroup (v0-v5)
 * ------------------------------------------------------------------------ */

static void sync_error(struct kreq *r, int16_t err)
{
	struct cfx_writer *w = &r->out;
	int16_t v = r->h.api_version;
	int flex = r->flex;
	size_t start = kreq_begin(r);

	if (v >= 1)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	    /* Response: ErrorCode */
	if (v >= 5) {
		kf_write_string(w, (struct cfx_view){ 0 }, flex, 1); /* ProtocolType */
		kf_write_string(w, (struct cfx_view){ 0 }, flex, 1); /* ProtocolName */
	}
	kf_write_bytes(w, (struct cfx_view){ 0 }, flex, 0); /* Assignment */
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* The member a request names, checked as Kafka does: known, this generation. */
static int16_t member_check(struct group *g, struct cfx_view member_id, int32_t generation,
			    struct member **out)
{
	struct member *m = g ? member_find(g, member_id) : NULL;

	*out = m;
	if (!m || g->state == G_EMPTY)
		return KF_ERR_UNKNOWN_MEMBER_ID;
	if (generation != g->generation)
		return KF_ERR_ILLEGAL_GENERATION;
	return KF_ERR_NONE;
}

struct sync_assign {
	struct cfx_view member, assign;
};

void kf_sync_group(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_coord *co = kc->svc->coord;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_view gid, member_id;
	int32_t generation, na;
	struct sync_assign *as = NULL;
	struct outbox ob = { 0 };

	gid = kf_read_string(rd, flex, &null);
	generation = kf_read_i32(rd);
	member_id = kf_read_string(rd, flex, &null);
	if (v >= 3)
		kf_read_string(rd, flex, &null); /* GroupInstanceId */
	if (v >= 5) {
		kf_read_string(rd, flex, &null); /* ProtocolType */
		kf_read_string(rd, flex, &null); /* ProtocolName */
	}
	na = kf_read_array_len_min(rd, flex, 2);
	if (na > GROUP_MEMBERS_MAX)
		cfx_reader_fail(rd, "too many assignments");
	if (na > 0 && !rd->err)
		as = cfx_calloc((size_t)na, sizeof *as);
	for (int32_t i = 0; i < na && !rd->err; i++) {
		as[i].member = kf_read_string(rd, flex, &null);
		as[i].assign = kf_read_bytes(rd, flex, &null);
		if (flex)
			kf_skip_tagged_fields(rd);
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err) {
		cfx_free(as);
		kafka__bad_request(kc, r, "SyncGroup");
		return;
	}

	int64_t now = cfx_clock_mono_ms();
	struct member *m;
	pthread_mutex_lock(&co->mu);
	struct group *g = group_find(co, gid);
	int16_t err = member_check(g, member_id, generation, &m);
	if (!err && g->state == G_PREPARING)
		err = KF_ERR_REBALANCE_IN_PROGRESS;
	if (err) {
		sync_error(r, err);
	} else {
		m->seen_ms = now;
		if (m->sync.r)
			write_sync(g, m, KF_ERR_REBALANCE_IN_PROGRESS, &ob); /* superseded */
		m->sync = waiter_of(kc, r);
		if (g->state == G_STABLE) {
			write_sync(g, m, KF_ERR_NONE, &ob);
		} else if (g->leader && !strcmp(g->leader, m->id)) {
			for (int32_t i = 0; i < na; i++) {
				struct member *x = member_find(g, as[i].member);
				if (!x)
					continue;
				cfx_free(x->assign);
				x->assign = cfx_malloc(as[i].assign.len + 1);
				if (as[i].assign.len)
					memcpy(x->assign, as[i].assign.p, as[i].assign.len);
				x->assign_len = as[i].assign.len;
			}
			g->state = G_STABLE;
			cfx_log(CFX_LOG_INFO, "kafka: group %s: generation %d stable with %u members "
					      "(protocol %s)",
				g->id, g->generation, g->nmembers, g->protocol ? g->protocol : "-");
			for (struct member *x = g->members; x; x = x->next)
				write_sync(g, x, KF_ERR_NONE, &ob);
		}
	}
	pthread_mutex_unlock(&co->mu);
	cfx_free(as);
	outbox_send(&ob);
}

void kf_heartbeat(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_coord *co = kc->svc->coord;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_view gid, member_id;
	int32_t generation;
	struct member *m;

	gid = kf_read_string(rd, flex, &null);
	generation = kf_read_i32(rd);
	member_id = kf_read_string(rd, flex, &null);
	if (v >= 3)
		kf_read_string(rd, flex, &null); /* GroupInstanceId */
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err) {
		kafka__bad_request(kc, r, "Heartbeat");
		return;
	}
	pthread_mutex_lock(&co->mu);
	struct group *g = group_find(co, gid);
	int16_t err = member_check(g, member_id, generation, &m);
	if (m)
		m->seen_ms = cfx_clock_mono_ms();
	if (!err && g->state == G_PREPARING)
		err = KF_ERR_REBALANCE_IN_PROGRESS;
	pthread_mutex_unlock(&co->mu);

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 1)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	    /* Response: ErrorCode */
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

#define LEAVE_MAX 1000

void kf_leave_group(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_coord *co = kc->svc->coord;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_view gid, *ids = NULL, *inst = NULL;
	int16_t *errs = NULL;
	int32_t n = 1;
	struct outbox ob = { 0 };

	gid = kf_read_string(rd, flex, &null);
	if (v >= 3) {
		n = kf_read_array_len_min(rd, flex, 2);
		if (n > LEAVE_MAX)
			cfx_reader_fail(rd, "too many members");
	}
	if (n > 0 && !rd->err) {
		ids = cfx_calloc((size_t)n, sizeof *ids);
		inst = cfx_calloc((size_t)n, sizeof *inst);
		errs = cfx_calloc((size_t)n, sizeof *errs);
	}
	for (int32_t i = 0; i < n && !rd->err; i++) {
		int inull = 1;
		ids[i] = kf_read_string(rd, flex, &null);
		if (v >= 3) {
			inst[i] = kf_read_string(rd, flex, &inull);
			if (inull)
				inst[i] = (struct cfx_view){ 0 };
			if (v >= 5)
				kf_read_string(rd, flex, &null); /* Reason */
			if (flex)
				kf_skip_tagged_fields(rd);
		}
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || n < 0) {
		cfx_free(ids);
		cfx_free(inst);
		cfx_free(errs);
		kafka__bad_request(kc, r, "LeaveGroup");
		return;
	}

	int64_t now = cfx_clock_mono_ms();
	int16_t top = KF_ERR_NONE;
	pthread_mutex_lock(&co->mu);
	struct group *g = group_find(co, gid);
	for (int32_t i = 0; i < n; i++) {
		struct member *m = NULL;
		if (g && ids[i].len)
			m = member_find(g, ids[i]);
		for (struct member *x = g && !ids[i].len && inst[i].len ? g->members : NULL; x && !m;
		     x = x->next)
			if (x->instance_id && view_is(inst[i], x->instance_id))
				m = x;
		if (!m) {
			errs[i] = KF_ERR_UNKNOWN_MEMBER_ID;
			continue;
		}
		cfx_log(CFX_LOG_INFO, "kafka: group %s: member %s left", g->id, m->id);
		member_remove(co, g, m, now, &ob);
	}
	if (g)
		group_maybe_drop(co, g);
	pthread_mutex_unlock(&co->mu);
	outbox_send(&ob);
	if (v < 3)
		top = errs[0];

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 1)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_i16(w, top);	    /* Response: ErrorCode */
	if (v >= 3) {
		kf_write_array_len(w, n, flex);
		for (int32_t i = 0; i < n; i++) {
			kf_write_string(w, ids[i], flex, 0);
			kf_write_string(w, inst[i], flex, !inst[i].len);
			kf_write_i16(w, errs[i]);
			if (flex)
				kf_write_empty_tagged_fields(w);
		}
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	cfx_free(ids);
	cfx_free(inst);
	cfx_free(errs);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * OffsetCommit (v2-v9) and OffsetFetch (v1-v9)
 * ------------------------------------------------------------------------ */

#define COMMIT_METADATA_MAX 4096 /* Kafka's offset.metadata.max.bytes */

static int16_t commit_err_of(int rc)
{
	switch (rc) {
	case 0:
		return KF_ERR_NONE;
	case CFX_ENOENT:
	case CFX_EQUEUE:
	case CFX_ETOPIC:
		return KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
	case CFX_EINVAL:
		return KF_ERR_INVALID_GROUP_ID;
	default:
		return KF_ERR_KAFKA_STORAGE_ERROR;
	}
}

/* May this request commit for the group? (Kafka's generation fencing.) */
static int16_t commit_allowed(struct kafka_coord *co, struct cfx_view gid, int32_t generation,
			      struct cfx_view member_id)
{
	int16_t err = KF_ERR_NONE;
	struct member *m;

	pthread_mutex_lock(&co->mu);
	struct group *g = group_find(co, gid);
	if (generation < 0 && !member_id.len) {
		/* A consumer outside the group protocol (assign()): only while no member runs. */
		if (g && g->nmembers)
			err = KF_ERR_UNKNOWN_MEMBER_ID;
	} else {
		err = member_check(g, member_id, generation, &m);
		if (!err && g->state == G_COMPLETING)
			err = KF_ERR_REBALANCE_IN_PROGRESS;
		if (m)
			m->seen_ms = cfx_clock_mono_ms();
	}
	pthread_mutex_unlock(&co->mu);
	return err;
}

void kf_offset_commit(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_view gid, member_id = { 0 };
	int32_t generation = -1, nt;

	gid = kf_read_string(rd, flex, &null);
	if (v >= 1) {
		generation = kf_read_i32(rd);
		member_id = kf_read_string(rd, flex, &null);
	}
	if (v >= 7)
		kf_read_string(rd, flex, &null); /* GroupInstanceId */
	if (v >= 2 && v <= 4)
		kf_read_i64(rd); /* RetentionTimeMs: offsets are kept with the group */
	/* Decode everything first: a malformed request commits nothing. */
	struct cfx_reader save = *rd;
	nt = kf_read_array_len(rd, flex);
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		kf_read_string(rd, flex, &null);
		int32_t np = kf_read_array_len(rd, flex);
		for (int32_t k = 0; k < np && !rd->err; k++) {
			kf_read_i32(rd);
			kf_read_i64(rd);
			if (v >= 6)
				kf_read_i32(rd);
			kf_read_string(rd, flex, &null);
			if (flex)
				kf_skip_tagged_fields(rd);
		}
		if (flex)
			kf_skip_tagged_fields(rd);
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || nt < 0) {
		kafka__bad_request(kc, r, "OffsetCommit");
		return;
	}
	*rd = save;

	int16_t gerr = core_group(kc, gid);
	if (!gerr)
		gerr = commit_allowed(svc->coord, gid, generation, member_id);
	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 3)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	nt = kf_read_array_len(rd, flex);
	kf_write_array_len(w, nt, flex);
	for (int32_t i = 0; i < nt; i++) {
		struct cfx_view topic = kf_read_string(rd, flex, &null);
		int32_t np = kf_read_array_len(rd, flex);
		kf_write_string(w, topic, flex, 0);
		kf_write_array_len(w, np, flex);
		for (int32_t k = 0; k < np; k++) {
			int32_t index = kf_read_i32(rd);
			int64_t offset = kf_read_i64(rd);
			int16_t err = gerr;
			if (v >= 6)
				kf_read_i32(rd); /* CommittedLeaderEpoch */
			struct cfx_view meta = kf_read_string(rd, flex, &null);
			if (flex)
				kf_skip_tagged_fields(rd);
			if (!err && meta.len > COMMIT_METADATA_MAX)
				err = KF_ERR_OFFSET_METADATA_TOO_LARGE;
			if (!err && (index < 0 || offset < 0))
				err = index < 0 ? KF_ERR_UNKNOWN_TOPIC_OR_PARTITION
						: KF_ERR_INVALID_COMMIT_OFFSET_SIZE;
			if (!err)
				err = commit_err_of(cfx_broker_offset_commit(svc->br, gid, topic,
									     (uint32_t)index,
									     (uint64_t)offset));
			kf_write_i32(w, index); /* Response: PartitionIndex */
			kf_write_i16(w, err);	/* Response: ErrorCode */
			if (flex)
				kf_write_empty_tagged_fields(w);
		}
		if (flex) {
			kf_skip_tagged_fields(rd);
			kf_write_empty_tagged_fields(w);
		}
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* One partition of an OffsetFetch answer. */
static void write_committed(struct kafka_service *svc, struct cfx_writer *w, int16_t v, int flex,
			    struct cfx_view gid, struct cfx_view topic, int32_t index)
{
	struct cfx_group_queue_state st;
	int64_t offset = -1;

	if (index >= 0 && !cfx_broker_group_queue_state(svc->br, gid, topic, (uint32_t)index, &st))
		offset = (int64_t)st.committed;
	kf_write_i32(w, index);	 /* Response: PartitionIndex */
	kf_write_i64(w, offset); /* Response: CommittedOffset */
	if (v >= 5)
		kf_write_i32(w, -1); /* Response: CommittedLeaderEpoch */
	kf_write_string(w, CFX_VIEW_STR(""), flex, 0); /* Response: Metadata */
	kf_write_i16(w, KF_ERR_NONE);
	if (flex)
		kf_write_empty_tagged_fields(w);
}

/* Every (topic, partition) a group has a position on, sorted by topic. */
struct position {
	char *topic;
	uint32_t queue;
};

struct positions {
	struct position *v;
	uint32_t n, cap;
};

static void collect_position(void *arg, const char *group, const char *topic, uint32_t queue,
			     const struct cfx_group_queue_state *st)
{
	struct positions *ps = arg;

	CFX_UNUSED(group);
	CFX_UNUSED(st);
	if (topic[0] == '%') /* the core's own retry and system topics */
		return;
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 16;
		ps->v = cfx_realloc(ps->v, ps->cap * sizeof *ps->v);
	}
	ps->v[ps->n++] = (struct position){ cfx_strdup(topic), queue };
}

static int position_cmp(const void *a, const void *b)
{
	const struct position *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);
	return c ? c : (x->queue > y->queue) - (x->queue < y->queue);
}

/* The topics part of an OffsetFetch answer for one group; reads the
 * request's topics (or null = all the group's positions). */
static void write_group_offsets(struct kafka_service *svc, struct cfx_reader *rd,
				struct cfx_writer *w, int16_t v, int flex, struct cfx_view gid)
{
	int null;
	int32_t nt = kf_read_array_len(rd, flex);

	if (nt >= 0) {
		kf_write_array_len(w, nt, flex);
		for (int32_t i = 0; i < nt; i++) {
			struct cfx_view topic = kf_read_string(rd, flex, &null);
			int32_t np = kf_read_array_len(rd, flex);
			kf_write_string(w, topic, flex, 0);
			kf_write_array_len(w, np, flex);
			for (int32_t k = 0; k < np; k++)
				write_committed(svc, w, v, flex, gid, topic, kf_read_i32(rd));
			if (flex) {
				kf_skip_tagged_fields(rd);
				kf_write_empty_tagged_fields(w);
			}
		}
		return;
	}
	struct positions ps = { 0 };
	cfx_broker_group_positions(svc->br, gid.len ? gid : CFX_VIEW_STR(""), collect_position, &ps);
	if (ps.n)
		qsort(ps.v, ps.n, sizeof *ps.v, position_cmp);
	int32_t ntopics = 0;
	for (uint32_t i = 0; i < ps.n; i++)
		ntopics += i == 0 || strcmp(ps.v[i].topic, ps.v[i - 1].topic);
	kf_write_array_len(w, ntopics, flex);
	for (uint32_t i = 0; i < ps.n;) {
		uint32_t j = i;
		while (j < ps.n && !strcmp(ps.v[j].topic, ps.v[i].topic))
			j++;
		kf_write_string(w, CFX_VIEW_STR(ps.v[i].topic), flex, 0);
		kf_write_array_len(w, (int32_t)(j - i), flex);
		for (uint32_t k = i; k < j; k++)
			write_committed(svc, w, v, flex, gid, CFX_VIEW_STR(ps.v[i].topic),
					(int32_t)ps.v[k].queue);
		if (flex)
			kf_write_empty_tagged_fields(w);
		i = j;
	}
	for (uint32_t i = 0; i < ps.n; i++)
		cfx_free(ps.v[i].topic);
	cfx_free(ps.v);
}

/* Skips one group's topics in an OffsetFetch request (the validation pass). */
static void skip_fetch_topics(struct cfx_reader *rd, int flex)
{
	int null;
	int32_t nt = kf_read_array_len(rd, flex);

	for (int32_t i = 0; i < nt && !rd->err; i++) {
		kf_read_string(rd, flex, &null);
		int32_t np = kf_read_array_len_min(rd, flex, 4);
		for (int32_t k = 0; k < np && !rd->err; k++)
			kf_read_i32(rd);
		if (flex)
			kf_skip_tagged_fields(rd);
	}
}

void kf_offset_fetch(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_reader save = *rd;
	int32_t ng = 1;

	/* Validation pass. */
	if (v <= 7) {
		kf_read_string(rd, flex, &null);
		skip_fetch_topics(rd, flex);
	} else {
		ng = kf_read_array_len(rd, flex);
		for (int32_t i = 0; i < ng && !rd->err; i++) {
			kf_read_string(rd, flex, &null);
			if (v >= 9) {
				kf_read_string(rd, flex, &null); /* MemberId */
				kf_read_i32(rd);		 /* MemberEpoch */
			}
			skip_fetch_topics(rd, flex);
			if (flex)
				kf_skip_tagged_fields(rd);
		}
	}
	if (v >= 7)
		kf_read_bool(rd); /* RequireStable: commits are never pending here */
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || ng < 0) {
		kafka__bad_request(kc, r, "OffsetFetch");
		return;
	}
	*rd = save;

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 3)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	if (v <= 7) {
		struct cfx_view gid = kf_read_string(rd, flex, &null);
		int16_t gerr = kf_authorize(kc, CFX_AUTH_GROUP, gid, CFX_AUTH_SUB);
		write_group_offsets(svc, rd, w, v, flex, gerr ? CFX_VIEW_STR("") : gid);
		if (v >= 2)
			kf_write_i16(w, gerr); /* Response: ErrorCode */
	} else {
		ng = kf_read_array_len(rd, flex);
		kf_write_array_len(w, ng, flex);
		for (int32_t i = 0; i < ng; i++) {
			struct cfx_view gid = kf_read_string(rd, flex, &null);
			if (v >= 9) {
				kf_read_string(rd, flex, &null);
				kf_read_i32(rd);
			}
			int16_t gerr = kf_authorize(kc, CFX_AUTH_GROUP, gid, CFX_AUTH_SUB);
			kf_write_string(w, gid, flex, 0);
			write_group_offsets(svc, rd, w, v, flex, gerr ? CFX_VIEW_STR("") : gid);
			kf_write_i16(w, gerr); /* Response: ErrorCode */
			kf_skip_tagged_fields(rd);
			kf_write_empty_tagged_fields(w);
		}
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * ListGroups (v0-v5) and DescribeGroups (v0-v5)
 * ------------------------------------------------------------------------ */

/* A group as listed: its state, or Empty for a core group without members. */
struct listed {
	char *id, *type;
	const char *state;
};

struct listing {
	struct listed *v;
	uint32_t n, cap;
	struct kafka_coord *co; /* mutex held while listing */
};

static void listing_add(struct listing *ls, const char *id, const char *type, const char *state)
{
	if (ls->n == ls->cap) {
		ls->cap = ls->cap ? ls->cap * 2 : 16;
		ls->v = cfx_realloc(ls->v, ls->cap * sizeof *ls->v);
	}
	ls->v[ls->n++] = (struct listed){ cfx_strdup(id), cfx_strdup(type ? type : ""), state };
}

static void collect_core_group(void *arg, const struct cfx_group_info *gi)
{
	struct listing *ls = arg;

	if (gi->name[0] == '%' || group_find(ls->co, CFX_VIEW_STR(gi->name)))
		return;
	listing_add(ls, gi->name, "", gstate_name[G_EMPTY]);
}

static int state_wanted(const char *state, const struct cfx_view *filter, int32_t n)
{
	if (n <= 0)
		return 1;
	for (int32_t i = 0; i < n; i++)
		if (filter[i].len == strlen(state) && !strncasecmp((const char *)filter[i].p, state,
								    filter[i].len))
			return 1;
	return 0;
}

#define FILTER_MAX 16

void kf_list_groups(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_coord *co = kc->svc->coord;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_view states[FILTER_MAX];
	int32_t ns = 0, ntypes = 0;
	int classic = 1;

	if (v >= 4) {
		ns = kf_read_array_len(rd, flex);
		if (ns > FILTER_MAX)
			cfx_reader_fail(rd, "too many states");
		for (int32_t i = 0; i < ns && !rd->err; i++)
			states[i] = kf_read_string(rd, flex, &null);
	}
	if (v >= 5) {
		ntypes = kf_read_array_len(rd, flex);
		if (ntypes > FILTER_MAX)
			cfx_reader_fail(rd, "too many types");
		classic = ntypes <= 0;
		for (int32_t i = 0; i < ntypes && !rd->err; i++) {
			struct cfx_view t = kf_read_string(rd, flex, &null);
			if (t.len == 7 && !strncasecmp((const char *)t.p, "classic", 7))
				classic = 1;
		}
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err) {
		kafka__bad_request(kc, r, "ListGroups");
		return;
	}

	struct listing ls = { .co = co };
	pthread_mutex_lock(&co->mu);
	for (struct group *g = co->groups; g; g = g->next)
		listing_add(&ls, g->id, g->protocol_type, gstate_name[g->state]);
	cfx_broker_group_foreach(kc->svc->br, collect_core_group, &ls);
	pthread_mutex_unlock(&co->mu);

	/* Only the groups the client may see (GET on the group). */
	uint32_t kept = 0;
	for (uint32_t i = 0; i < ls.n; i++) {
		if (kf_may(kc, CFX_AUTH_GROUP, CFX_VIEW_STR(ls.v[i].id), CFX_AUTH_GET)) {
			ls.v[kept++] = ls.v[i];
		} else {
			cfx_free(ls.v[i].id);
			cfx_free(ls.v[i].type);
		}
	}
	ls.n = kept;

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	int32_t n = 0;
	for (uint32_t i = 0; i < ls.n; i++)
		n += classic && state_wanted(ls.v[i].state, states, ns);
	if (v >= 1)
		kf_write_i32(w, 0);	   /* Response: ThrottleTimeMs */
	kf_write_i16(w, KF_ERR_NONE); /* Response: ErrorCode */
	kf_write_array_len(w, n, flex);
	for (uint32_t i = 0; i < ls.n; i++) {
		if (classic && state_wanted(ls.v[i].state, states, ns)) {
			kf_write_string(w, CFX_VIEW_STR(ls.v[i].id), flex, 0);
			kf_write_string(w, CFX_VIEW_STR(ls.v[i].type), flex, 0);
			if (v >= 4)
				kf_write_string(w, CFX_VIEW_STR(ls.v[i].state), flex, 0);
			if (v >= 5)
				kf_write_string(w, CFX_VIEW_STR("classic"), flex, 0);
			if (flex)
				kf_write_empty_tagged_fields(w);
		}
		cfx_free(ls.v[i].id);
		cfx_free(ls.v[i].type);
	}
	cfx_free(ls.v);
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

#define DESCRIBE_MAX 1000

void kf_describe_groups(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	struct kafka_coord *co = svc->coord;
	int16_t v = r->h.api_version;
	int flex = r->flex, null;
	struct cfx_reader save;
	int32_t n;

	n = kf_read_array_len_min(rd, flex, 1);
	if (n > DESCRIBE_MAX)
		cfx_reader_fail(rd, "too many groups");
	save = *rd;
	for (int32_t i = 0; i < n && !rd->err; i++)
		kf_read_string(rd, flex, &null);
	if (v >= 3)
		kf_read_bool(rd); /* IncludeAuthorizedOperations */
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || n < 0) {
		kafka__bad_request(kc, r, "DescribeGroups");
		return;
	}
	*rd = save;

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 1)
		kf_write_i32(w, 0); /* Response: ThrottleTimeMs */
	kf_write_array_len(w, n, flex);
	for (int32_t i = 0; i < n; i++) {
		struct cfx_view gid = kf_read_string(rd, flex, &null);
		struct cfx_group_info gi;
		int16_t err = KF_ERR_NONE;
		const char *state;
		int16_t aerr = gid.len ? kf_authorize(kc, CFX_AUTH_GROUP, gid, CFX_AUTH_GET) : 0;

		pthread_mutex_lock(&co->mu);
		struct group *g = aerr ? NULL : group_find(co, gid); /* a denied group shows nothing */
		if (aerr)
			state = "";
		else if (g)
			state = gstate_name[g->state];
		else if (gid.len && cfx_group_name_is_valid(gid) &&
			 !cfx_broker_group_get(svc->br, gid, 0, &gi))
			state = gstate_name[G_EMPTY];
		else
			state = "Dead";
		if (!gid.len)
			err = KF_ERR_INVALID_GROUP_ID;
		else if (aerr)
			err = aerr;
		kf_write_i16(w, err); /* Response: ErrorCode */
		kf_write_string(w, gid, flex, 0);
		kf_write_string(w, CFX_VIEW_STR(state), flex, 0);
		kf_write_string(w, CFX_VIEW_STR(g && g->protocol_type ? g->protocol_type : ""), flex, 0);
		kf_write_string(w, CFX_VIEW_STR(g && g->protocol ? g->protocol : ""), flex, 0);
		kf_write_array_len(w, g ? (int32_t)g->nmembers : 0, flex);
		for (struct member *m = g ? g->members : NULL; m; m = m->next) {
			const struct kproto *p = member_proto(m, g->protocol);
			kf_write_string(w, CFX_VIEW_STR(m->id), flex, 0);
			if (v >= 4)
				kf_write_string(w, CFX_VIEW_STR(m->instance_id ? m->instance_id : ""),
						flex, !m->instance_id);
			kf_write_string(w, CFX_VIEW_STR(m->client_id), flex, 0);
			kf_write_string(w, CFX_VIEW_STR(m->host), flex, 0);
			kf_write_bytes(w, (struct cfx_view){ p ? p->meta : NULL, p ? p->len : 0 }, flex, 0);
			kf_write_bytes(w, (struct cfx_view){ m->assign, m->assign_len }, flex, 0);
			if (flex)
				kf_write_empty_tagged_fields(w);
		}
		pthread_mutex_unlock(&co->mu);
		if (v >= 3)
			kf_write_i32(w, INT32_MIN); /* Response: AuthorizedOperations (not asked) */
		if (flex)
			kf_write_empty_tagged_fields(w);
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}
