/*
 * session.c - MQTT sessions: the table by client id, subscriptions,
 * delivery queues and in-flight messages, persistence.
 *
 * A clean session lives as long as its connection; its messages wait in
 * an in-memory ring. A persistent session (3.1.1 clean session 0, 5.0
 * session expiry > 0) also has a light queue "s/<client id>" whose entries
 * reference the stored QoS 1/2 messages it must receive; they are
 * acknowledged when the client completes them, so they survive the
 * connection and a restart. Its subscriptions are journaled in
 * <dir>/sessions (records below), replayed and rewritten at start.
 *
 * Locks: svc->mu (the table) before s->mu (one session). The fan-out
 * thread delivers under s->mu; the connection's loop sends under s->mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/hash.h"
#include "base/log.h"
#include "proto/mqtt/mqtt_int.h"

/* Journal records: [u32 length][u32 CRC-32C of the body][body], body =
 * type, u16 client id length, client id, then by type:
 *   'S' session is persistent: u32 expiry seconds
 *   'B' subscription: u8 qos, u8 no_local, u8 retain_as_published,
 *       u8 retain_handling, u32 subscription id, u16 length, filter
 *   'U' unsubscription: u16 length, filter
 *   'Q' an inbound QoS 2 packet id stored, until its PUBREL: u16 id
 *   'R' that PUBREL came: u16 id
 *   'E' session ended */
#define REC_BYTES_MAX (1u << 18)

/* ------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------ */

void mmsg_ref(struct mmsg *m)
{
	atomic_fetch_add(&m->refs, 1);
}

void mmsg_unref(struct mmsg *m)
{
	if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
		cfx_free(m->buf);
		cfx_free(m);
	}
}

static int prop_is(const struct cfx_prop *p, const char *name)
{
	size_t n = strlen(name);
	return p->name.len == n && !memcmp(p->name.p, name, n);
}

static uint32_t prop_u32(struct cfx_view v)
{
	uint32_t x = 0;
	for (size_t i = 0; i < v.len && i < 10 && v.p[i] >= '0' && v.p[i] <= '9'; i++)
		x = x * 10 + (uint32_t)(v.p[i] - '0');
	return x;
}

/* Copies a view into the message's buffer. */
static struct cfx_view keep(uint8_t **at, struct cfx_view v)
{
	struct cfx_view out = { *at, v.len };
	if (v.len)
		memcpy(*at, v.p, v.len);
	*at += v.len;
	return out;
}

struct mmsg *mmsg_of_view(const struct cfx_msg_view *v, uint32_t queue)
{
	struct cfx_view topic = { 0 }, ct = { 0 }, rt = { 0 }, corr = { 0 }, from = { 0 };
	size_t cursor = 0, bytes;
	struct cfx_prop p;
	struct mmsg *m;
	int64_t ttl = 0;
	uint8_t qos = 0, retain = 0, has_format = 0, format = 0;
	uint32_t nuser = 0;

	int is_event = 0;
	bytes = v->body.len;
	while (cfx_msg_view_next_prop(v, &cursor, &p) == 1) {
		if (prop_is(&p, "ce_specversion"))
			is_event = 1;
		bytes += p.name.len + p.value.len + sizeof(struct mqtt_user_prop);
		if (prop_is(&p, MQTT_PROP_TOPIC))
			topic = p.value;
		else if (prop_is(&p, MQTT_PROP_QOS))
			qos = (uint8_t)CFX_MIN(prop_u32(p.value), 2u);
		else if (prop_is(&p, MQTT_PROP_RETAIN))
			retain = p.value.len == 1 && p.value.p[0] == '1';
		else if (prop_is(&p, MQTT_PROP_CONTENT_TYPE))
			ct = p.value;
		else if (prop_is(&p, MQTT_PROP_RESPONSE_TOPIC))
			rt = p.value;
		else if (prop_is(&p, MQTT_PROP_CORRELATION))
			corr = p.value;
		else if (prop_is(&p, MQTT_PROP_CLIENT_ID))
			from = p.value;
		else if (prop_is(&p, MQTT_PROP_PAYLOAD_FORMAT)) {
			has_format = 1;
			format = (uint8_t)(prop_u32(p.value) ? 1 : 0);
		} else if (prop_is(&p, CFX_PROP_TTL_MS))
			ttl = prop_u32(p.value);
	}
	if (is_event && !ct.len) { /* a CloudEvent: its content type is MQTT's own property */
		cursor = 0;
		while (cfx_msg_view_next_prop(v, &cursor, &p) == 1)
			if (prop_is(&p, "content-type"))
				ct = p.value;
	}
	if (!topic.len && !v->key_null && v->key.len) { /* sent by another protocol */
		size_t n = 0;
		while (n < v->key.len && v->key.p[n] != ' ')
			n++;
		topic = (struct cfx_view){ v->key.p, n };
	}
	if (!topic.len || !mqtt_topic_is_valid(topic) || !mqtt_utf8_is_valid(topic.p, topic.len))
		return NULL;
	m = cfx_calloc(1, sizeof *m);
	atomic_init(&m->refs, 1);
	m->buf = cfx_malloc(bytes + topic.len + 1 + _Alignof(struct mqtt_user_prop));
	/* user property views first (aligned), then the bytes */
	uintptr_t align = _Alignof(struct mqtt_user_prop);
	m->user = (struct mqtt_user_prop *)(((uintptr_t)m->buf + align - 1) & ~(align - 1));
	uint8_t *at = (uint8_t *)m->user;
	cursor = 0;
	while (cfx_msg_view_next_prop(v, &cursor, &p) == 1)
		at += sizeof(struct mqtt_user_prop); /* room for every property, used or not */
	m->topic = keep(&at, topic);
	m->payload = keep(&at, v->body);
	m->content_type = keep(&at, ct);
	m->response_topic = keep(&at, rt);
	m->correlation = keep(&at, corr);
	m->publisher = keep(&at, from);
	cursor = 0;
	while (cfx_msg_view_next_prop(v, &cursor, &p) == 1 && nuser < MQTT_MSG_USER_PROPS_MAX) {
		if ((p.name.len >= 5 && !memcmp(p.name.p, "MQTT_", 5)) ||
		    (p.name.len >= 2 && !memcmp(p.name.p, "__", 2)))
			continue; /* the mapping's own properties */
		if (!mqtt_utf8_is_valid(p.name.p, p.name.len) ||
		    !mqtt_utf8_is_valid(p.value.p, p.value.len))
			continue;
		/* CloudEvents attributes are user properties by their own names (MQTT binding). */
		if (is_event && p.name.len > 3 && !memcmp(p.name.p, "ce_", 3))
			p.name = (struct cfx_view){ p.name.p + 3, p.name.len - 3 };
		else if (is_event && prop_is(&p, "content-type"))
			continue;
		m->user[nuser].name = keep(&at, p.name);
		m->user[nuser].value = keep(&at, p.value);
		nuser++;
	}
	m->nuser = nuser;
	m->qos = qos;
	m->retain = retain;
	m->has_format = has_format;
	m->format = format;
	m->expires_ms = ttl ? v->born_ms + ttl : 0;
	m->store_ms = v->store_ms;
	m->queue = queue;
	m->offset = v->offset;
	return m;
}

struct mmsg *mqtt_read_msg(struct mqtt_service *svc, uint32_t queue, uint64_t offset)
{
	struct cfx_read_result res;
	struct mmsg *m = NULL;

	cfx_read_result_init(&res);
	if (cfx_store_read(svc->st, CFX_VIEW_STR(svc->topic), queue, offset, 1, 1, &res) == 0 &&
	    res.count && res.msgs[0].offset == offset)
		m = mmsg_of_view(&res.msgs[0], queue);
	cfx_read_result_free(&res);
	return m;
}

/* ------------------------------------------------------------------------
 * The journal
 * ------------------------------------------------------------------------ */

static void rec_begin(struct cfx_writer *w, char type, const char *client_id)
{
	size_t n = strlen(client_id);
	cfx_write_le32(w, 0); /* length, patched */
	cfx_write_le32(w, 0); /* CRC, patched */
	cfx_write_u8(w, (uint8_t)type);
	cfx_write_le16(w, (uint16_t)n);
	cfx_write_bytes(w, client_id, n);
}

static void rec_end(struct cfx_writer *w, size_t start)
{
	size_t body = w->len - start - 8;
	cfx_store_le32(w->p + start, (uint32_t)body);
	cfx_store_le32(w->p + start + 4, cfx_crc32c(0, w->p + start + 8, body));
}

static void rec_sub(struct cfx_writer *w, const char *client_id, const struct msub *sb)
{
	size_t start = w->len, n = strlen(sb->filter);
	rec_begin(w, 'B', client_id);
	cfx_write_u8(w, sb->opts.qos);
	cfx_write_u8(w, sb->opts.no_local);
	cfx_write_u8(w, sb->opts.retain_as_published);
	cfx_write_u8(w, sb->opts.retain_handling);
	cfx_write_le32(w, sb->opts.sub_id);
	cfx_write_le16(w, (uint16_t)n);
	cfx_write_bytes(w, sb->filter, n);
	rec_end(w, start);
}

static void rec_session(struct cfx_writer *w, const struct msession *s)
{
	size_t start = w->len;
	rec_begin(w, 'S', s->client_id);
	cfx_write_le32(w, s->expiry_s);
	rec_end(w, start);
}

/* Writes records to the journal (before the operation is acknowledged). */
static void journal_write(struct mqtt_service *svc, const struct cfx_writer *w)
{
	size_t at = 0;

	while (svc->jfd >= 0 && at < w->len) {
		ssize_t n = write(svc->jfd, w->p + at, w->len - at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cfx_log_ratelimited(CFX_LOG_ERROR, "mqtt: cannot write the sessions journal: %s",
					    strerror(errno));
			return;
		}
		at += (size_t)n;
	}
}

static void rec_pid(struct cfx_writer *w, char type, const char *client_id, uint16_t pid)
{
	size_t start = w->len;
	rec_begin(w, type, client_id);
	cfx_write_le16(w, pid);
	rec_end(w, start);
}

static void journal_one(struct mqtt_service *svc, char type, const struct msession *s,
			const struct msub *sb, struct cfx_view filter)
{
	struct cfx_writer w;
	size_t start;

	cfx_writer_init(&w, 128);
	switch (type) {
	case 'S':
		rec_session(&w, s);
		break;
	case 'B':
		rec_sub(&w, s->client_id, sb);
		break;
	default:
		start = w.len;
		rec_begin(&w, type, s->client_id);
		if (type == 'U') {
			cfx_write_le16(&w, (uint16_t)filter.len);
			cfx_write_bytes(&w, filter.p, filter.len);
		}
		rec_end(&w, start);
	}
	journal_write(svc, &w);
	cfx_writer_free(&w);
}

/* Inbound QoS 2 (MQTT 4.3.3): a packet id is remembered from its PUBLISH
 * until its PUBREL, so that a resent PUBLISH is not stored twice; for a
 * persistent session across restarts too. Returns 1 if it was new. */
int mqtt_session_qos2_begin(struct mqtt_service *svc, struct msession *s, uint16_t pid)
{
	int seen = 0;

	pthread_mutex_lock(&s->mu);
	for (uint32_t i = 0; i < s->nqos2 && !seen; i++)
		seen = s->qos2_in[i] == pid;
	if (!seen) {
		if (s->nqos2 == s->capqos2) {
			s->capqos2 = s->capqos2 ? s->capqos2 * 2 : 8;
			s->qos2_in = cfx_realloc(s->qos2_in, s->capqos2 * sizeof *s->qos2_in);
		}
		s->qos2_in[s->nqos2++] = pid;
		if (s->persistent && svc) {
			struct cfx_writer w;
			cfx_writer_init(&w, 32);
			rec_pid(&w, 'Q', s->client_id, pid);
			journal_write(svc, &w);
			cfx_writer_free(&w);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return !seen;
}

/* Its PUBREL: returns 1 if the id was known. */
int mqtt_session_qos2_end(struct mqtt_service *svc, struct msession *s, uint16_t pid)
{
	int found = 0;

	pthread_mutex_lock(&s->mu);
	for (uint32_t i = 0; i < s->nqos2; i++)
		if (s->qos2_in[i] == pid) {
			s->qos2_in[i] = s->qos2_in[--s->nqos2];
			found = 1;
			break;
		}
	if (found && s->persistent && svc) {
		struct cfx_writer w;
		cfx_writer_init(&w, 32);
		rec_pid(&w, 'R', s->client_id, pid);
		journal_write(svc, &w);
		cfx_writer_free(&w);
	}
	pthread_mutex_unlock(&s->mu);
	return found;
}

/* ------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------ */

static uint64_t id_hash(struct cfx_view id)
{
	return cfx_hash_bytes(CFX_HASH_SEED, id.p, id.len);
}

static struct msession *find(struct mqtt_service *svc, struct cfx_view id)
{
	if (!svc->tab_cap)
		return NULL;
	for (struct msession *s = svc->tab[id_hash(id) & (svc->tab_cap - 1)]; s; s = s->next)
		if (strlen(s->client_id) == id.len && !memcmp(s->client_id, id.p, id.len))
			return s;
	return NULL;
}

static void tab_insert(struct mqtt_service *svc, struct msession *s)
{
	if (svc->nsessions + 1 > svc->tab_cap / 4 * 3) {
		uint32_t ncap = svc->tab_cap ? svc->tab_cap * 2 : 1024;
		struct msession **nt = cfx_calloc(ncap, sizeof *nt);
		for (uint32_t i = 0; i < svc->tab_cap; i++)
			while (svc->tab[i]) {
				struct msession *x = svc->tab[i];
				svc->tab[i] = x->next;
				uint64_t h = id_hash(CFX_VIEW_STR(x->client_id)) & (ncap - 1);
				x->next = nt[h];
				nt[h] = x;
			}
		cfx_free(svc->tab);
		svc->tab = nt;
		svc->tab_cap = ncap;
	}
	uint64_t h = id_hash(CFX_VIEW_STR(s->client_id)) & (svc->tab_cap - 1);
	s->next = svc->tab[h];
	svc->tab[h] = s;
	svc->nsessions++;
}

static void tab_remove(struct mqtt_service *svc, struct msession *s)
{
	struct msession **pp = &svc->tab[id_hash(CFX_VIEW_STR(s->client_id)) & (svc->tab_cap - 1)];
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = s->next;
		svc->nsessions--;
	}
}

static struct msession *session_new(struct mqtt_service *svc, struct cfx_view id)
{
	struct msession *s = cfx_calloc(1, sizeof *s);
	s->svc = svc;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->refs, 1); /* the table's */
	s->client_id = cfx_strndup((const char *)id.p, id.len);
	s->next_pid = 1;
	s->recv_max = 65535;
	return s;
}

void msession_unref(struct mqtt_service *svc, struct msession *s)
{
	CFX_UNUSED(svc);
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (uint32_t i = 0; i < s->nsubs; i++)
		cfx_free(s->subs[i].filter);
	cfx_free(s->subs);
	for (uint32_t i = 0; i < s->out_n; i++)
		mmsg_unref(s->outq[(s->out_head + i) % s->out_cap].m);
	cfx_free(s->outq);
	for (uint32_t i = 0; i < s->ninfl; i++)
		mmsg_unref(s->infl[i].o.m);
	cfx_free(s->infl);
	cfx_free(s->qos2_in);
	mqtt_will_free(s->will);
	pthread_mutex_destroy(&s->mu);
	cfx_free(s->client_id);
	cfx_free(s);
}

/* Forgets what a session holds: subscriptions, queues, in-flight. s->mu held. */
static void session_clear(struct mqtt_service *svc, struct msession *s)
{
	struct cfx_view filters[64];

	for (uint32_t i = 0; i < s->nsubs;) {
		uint32_t k = 0;
		for (; k < CFX_ARRAY_LEN(filters) && i + k < s->nsubs; k++)
			filters[k] = CFX_VIEW_STR(s->subs[i + k].filter);
		mqtt_tree_remove_session(svc->tree, s, filters, k);
		i += k;
	}
	for (uint32_t i = 0; i < s->nsubs; i++)
		cfx_free(s->subs[i].filter);
	s->nsubs = 0;
	for (uint32_t i = 0; i < s->out_n; i++)
		mmsg_unref(s->outq[(s->out_head + i) % s->out_cap].m);
	s->out_n = s->out_head = 0;
	for (uint32_t i = 0; i < s->ninfl; i++)
		mmsg_unref(s->infl[i].o.m);
	s->ninfl = 0;
	s->nqos2 = 0;
	if (s->lq) {
		cfx_lq_drop(svc->lqs, s->lq);
		s->lq = 0;
	}
	s->lq_next = 0;
}

/* Removes a session from the table and ends it. svc->mu held, s->mu not. */
static void session_end(struct mqtt_service *svc, struct msession *s)
{
	pthread_mutex_lock(&s->mu);
	if (s->will) { /* the session ends before the will delay did: the will goes now */
		mqtt_will_send(svc, s->will, s->client_id);
		s->will = NULL;
	}
	if (s->persistent)
		journal_one(svc, 'E', s, NULL, (struct cfx_view){ 0 });
	session_clear(svc, s);
	s->ended = 1;
	pthread_mutex_unlock(&s->mu);
	tab_remove(svc, s);
	msession_unref(svc, s);
}

static int lq_of(struct mqtt_service *svc, const char *client_id, int create, uint32_t *id)
{
	char name[MQTT_STRING_BYTES_MAX + 3];
	int n = snprintf(name, sizeof name, "s/%s", client_id);
	return cfx_lq_get(svc->lqs, (struct cfx_view){ (uint8_t *)name, (size_t)n }, create, id);
}

struct msession *mqtt_session_attach(struct mqtt_service *svc, struct cfx_view client_id,
				     int clean, uint32_t expiry_s, int version, struct mconn *mc,
				     struct cfx_conn_handle *h, struct cfx_loop *loop, int *present,
				     struct cfx_conn_handle **old_h, struct cfx_loop **old_loop)
{
	struct msession *s;

	*present = 0;
	*old_h = NULL;
	*old_loop = NULL;
	pthread_mutex_lock(&svc->mu);
	s = find(svc, client_id);
	if (s && clean) {
		/* Clean start: the old session (and its connection) is over. */
		pthread_mutex_lock(&s->mu);
		*old_h = s->h;
		*old_loop = s->loop;
		s->conn = NULL;
		s->h = NULL;
		pthread_mutex_unlock(&s->mu);
		session_end(svc, s);
		s = NULL;
	}
	if (!s) {
		s = session_new(svc, client_id);
		tab_insert(svc, s);
	} else {
		*present = s->persistent;
	}
	pthread_mutex_lock(&s->mu);
	if (s->conn) { /* the other connection is told on its loop */
		*old_h = s->h;
		*old_loop = s->loop;
	}
	int was = s->persistent;
	s->persistent = expiry_s > 0;
	s->expiry_s = expiry_s;
	s->version = version;
	s->conn = mc;
	s->loop = loop;
	s->h = h;
	s->gone_ms = 0;
	mqtt_will_free(s->will); /* the session resumed within the will delay */
	s->will = NULL;
	s->pump_posted = 0;
	if (s->persistent && (!was || s->expiry_s != expiry_s || !s->lq)) {
		journal_one(svc, 'S', s, NULL, (struct cfx_view){ 0 });
		for (uint32_t i = 0; !was && i < s->nsubs; i++)
			journal_one(svc, 'B', s, &s->subs[i], (struct cfx_view){ 0 });
	}
	if (s->persistent && !s->lq && lq_of(svc, s->client_id, 1, &s->lq))
		s->lq = 0;
	if (!s->persistent && was) {
		journal_one(svc, 'E', s, NULL, (struct cfx_view){ 0 });
		if (s->lq)
			cfx_lq_drop(svc->lqs, s->lq);
		s->lq = 0;
	}
	/* What was sent and not completed is sent again from the start. */
	uint64_t head = 0, tail = 0;
	if (s->lq && cfx_lq_bounds(svc->lqs, s->lq, &head, &tail) == 0)
		s->lq_next = head;
	for (uint32_t i = 0; i < s->ninfl; i++)
		mmsg_unref(s->infl[i].o.m);
	s->ninfl = 0;
	atomic_fetch_add(&s->refs, 1); /* the connection's */
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_unlock(&svc->mu);
	return s;
}

void mqtt_session_detach(struct mqtt_service *svc, struct msession *s, struct mconn *mc)
{
	pthread_mutex_lock(&svc->mu);
	pthread_mutex_lock(&s->mu);
	int mine = s->conn == mc;
	if (mine) {
		cfx_conn_handle_put(s->h); /* on its loop: detach runs there */
		s->h = NULL;
		s->conn = NULL;
		s->loop = NULL;
		s->gone_ms = cfx_clock_mono_ms();
		/* QoS 0 messages waiting for this connection go with it. */
		for (uint32_t i = 0; i < s->out_n; i++)
			mmsg_unref(s->outq[(s->out_head + i) % s->out_cap].m);
		s->out_n = s->out_head = 0;
	}
	int end = mine && !s->persistent && !s->ended;
	pthread_mutex_unlock(&s->mu);
	if (end)
		session_end(svc, s);
	pthread_mutex_unlock(&svc->mu);
	msession_unref(svc, s); /* the connection's */
}

void mqtt_sessions_expire(struct mqtt_service *svc, int64_t now_ms)
{
	pthread_mutex_lock(&svc->mu);
	for (uint32_t i = 0; i < svc->tab_cap; i++)
		for (struct msession *s = svc->tab[i], *next; s; s = next) {
			next = s->next;
			pthread_mutex_lock(&s->mu);
			struct mwill *w = s->will && s->will->due_ms <= now_ms ? s->will : NULL;
			if (w)
				s->will = NULL;
			pthread_mutex_unlock(&s->mu);
			if (w)
				mqtt_will_send(svc, w, s->client_id);
			if (s->gone_ms && s->expiry_s != UINT32_MAX &&
			    now_ms - s->gone_ms >= (int64_t)s->expiry_s * 1000) {
				cfx_log_debug(CFX_LOGC_NET, "mqtt: session %s expired", s->client_id);
				session_end(svc, s);
			}
		}
	pthread_mutex_unlock(&svc->mu);
}

/* ------------------------------------------------------------------------
 * Subscriptions
 * ------------------------------------------------------------------------ */

int mqtt_session_subscribe(struct mqtt_service *svc, struct msession *s,
			   const struct mqtt_subscription *sub, uint32_t sub_id, int *existed)
{
	struct mqtt_sub opts = { .session = s,
				 .sub_id = sub_id,
				 .qos = sub->qos,
				 .no_local = sub->no_local,
				 .retain_as_published = sub->retain_as_published,
				 .retain_handling = sub->retain_handling,
				 .since_ms = cfx_clock_wall_ms() };
	int rc;

	pthread_mutex_lock(&s->mu);
	for (uint32_t i = 0; i < s->nsubs; i++) /* a replaced subscription keeps its age */
		if (strlen(s->subs[i].filter) == sub->filter.len &&
		    !memcmp(s->subs[i].filter, sub->filter.p, sub->filter.len))
			opts.since_ms = s->subs[i].opts.since_ms;
	if (!svc->jfd_ready) /* restored at start: it predates everything still to fan out */
		opts.since_ms = 0;
	rc = mqtt_tree_subscribe(svc->tree, sub->filter, &opts);
	if (rc < 0) {
		pthread_mutex_unlock(&s->mu);
		return rc;
	}
	*existed = rc == 0;
	struct msub *sb = NULL;
	for (uint32_t i = 0; i < s->nsubs && !sb; i++)
		if (strlen(s->subs[i].filter) == sub->filter.len &&
		    !memcmp(s->subs[i].filter, sub->filter.p, sub->filter.len))
			sb = &s->subs[i];
	if (!sb) {
		if (s->nsubs == s->capsubs) {
			s->capsubs = s->capsubs ? s->capsubs * 2 : 1; /* most clients hold one */
			s->subs = cfx_realloc(s->subs, s->capsubs * sizeof *s->subs);
		}
		sb = &s->subs[s->nsubs++];
		sb->filter = cfx_strndup((const char *)sub->filter.p, sub->filter.len);
	}
	sb->opts = opts;
	if (s->persistent)
		journal_one(svc, 'B', s, sb, (struct cfx_view){ 0 });
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int mqtt_session_unsubscribe(struct mqtt_service *svc, struct msession *s, struct cfx_view filter)
{
	int found;

	pthread_mutex_lock(&s->mu);
	found = mqtt_tree_unsubscribe(svc->tree, filter, s) == 1;
	for (uint32_t i = 0; i < s->nsubs; i++)
		if (strlen(s->subs[i].filter) == filter.len &&
		    !memcmp(s->subs[i].filter, filter.p, filter.len)) {
			cfx_free(s->subs[i].filter);
			s->subs[i] = s->subs[--s->nsubs];
			break;
		}
	if (found && s->persistent)
		journal_one(svc, 'U', s, NULL, filter);
	pthread_mutex_unlock(&s->mu);
	return found;
}

/* ------------------------------------------------------------------------
 * Delivery
 * ------------------------------------------------------------------------ */

static void pump_task(void *arg)
{
	struct msession *s = arg;

	pthread_mutex_lock(&s->mu);
	s->pump_posted = 0;
	pthread_mutex_unlock(&s->mu);
	mqtt_session_pump(s->svc, s);
	msession_unref(s->svc, s);
}

/* Asks the session's loop to send. s->mu held. */
static void wake(struct msession *s)
{
	if (!s->conn || s->pump_posted)
		return;
	s->pump_posted = 1;
	atomic_fetch_add(&s->refs, 1);
	cfx_loop_post(s->loop, pump_task, s);
}

void mqtt_session_deliver(struct mqtt_service *svc, struct msession *s, struct mmsg *m,
			  uint8_t qos, uint8_t retain, const uint32_t *sub_ids, uint32_t nsub)
{
	pthread_mutex_lock(&s->mu);
	if (s->ended) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (s->persistent && qos > 0 && s->lq) {
		struct cfx_lq_entry e = { .topic = 0,
					  .flags = (uint16_t)(qos | (retain ? 4 : 0)),
					  .queue = m->queue,
					  .offset = m->offset };
		uint64_t seq;
		if (cfx_lq_push(svc->lqs, s->lq, &e, &seq) == 0)
			wake(s);
	} else if (s->conn) {
		if (s->out_n == s->out_cap) {
			if (s->out_cap >= svc->o.session_queue_max) { /* full: the oldest goes */
				struct outmsg *old = &s->outq[s->out_head];
				mmsg_unref(old->m);
				s->out_head = (s->out_head + 1) % s->out_cap;
				s->out_n--;
				s->dropped++;
				atomic_fetch_add(&svc->dropped, 1);
			} else {
				uint32_t ncap = s->out_cap ? s->out_cap * 2 : 16;
				struct outmsg *nq = cfx_malloc(ncap * sizeof *nq);
				for (uint32_t i = 0; i < s->out_n; i++)
					nq[i] = s->outq[(s->out_head + i) % s->out_cap];
				cfx_free(s->outq);
				s->outq = nq;
				s->out_head = 0;
				s->out_cap = ncap;
			}
		}
		struct outmsg *o = &s->outq[(s->out_head + s->out_n) % s->out_cap];
		mmsg_ref(m);
		*o = (struct outmsg){ .m = m, .qos = qos, .retain = retain };
		o->nsub = (uint8_t)CFX_MIN(nsub, (uint32_t)MQTT_SUB_IDS_PER_DELIVERY);
		memcpy(o->sub_ids, sub_ids, o->nsub * sizeof *sub_ids);
		s->out_n++;
		wake(s);
	} else {
		s->dropped++; /* QoS 0 for an offline session */
	}
	pthread_mutex_unlock(&s->mu);
}

static uint16_t take_pid(struct msession *s)
{
	for (;;) {
		uint16_t pid = s->next_pid++;
		if (!s->next_pid)
			s->next_pid = 1;
		int used = 0;
		for (uint32_t i = 0; i < s->ninfl && !used; i++)
			used = s->infl[i].pid == pid;
		if (!used && pid)
			return pid;
	}
}

static struct inflight *infl_add(struct msession *s)
{
	if (s->ninfl == s->capinfl) {
		s->capinfl = s->capinfl ? s->capinfl * 2 : 16;
		s->infl = cfx_realloc(s->infl, s->capinfl * sizeof *s->infl);
	}
	struct inflight *f = &s->infl[s->ninfl++];
	memset(f, 0, sizeof *f);
	return f;
}

/* Sends one message with a packet id if it needs one. s->mu held. */
static void send_one(struct msession *s, struct outmsg *o, uint64_t lq_seq)
{
	int64_t now = cfx_clock_wall_ms();

	if (o->m->expires_ms && o->m->expires_ms <= now) { /* expired on its way */
		if (lq_seq)
			cfx_lq_ack(s->svc->lqs, s->lq, lq_seq);
		mmsg_unref(o->m);
		return;
	}
	if (o->qos == 0) {
		mqtt_conn_send_publish(s->conn, o, 0, 0);
		mmsg_unref(o->m);
		return;
	}
	struct inflight *f = infl_add(s);
	f->pid = take_pid(s);
	f->qos = o->qos;
	f->o = *o;
	f->lq_seq = lq_seq;
	if (!mqtt_conn_send_publish(s->conn, o, f->pid, 0)) {
		/* Too large for the client: dropped, and done with as if it had
		 * been acknowledged (MQTT 5, 3.1.2-25). */
		if (lq_seq && s->lq)
			cfx_lq_ack(s->svc->lqs, s->lq, lq_seq);
		mmsg_unref(f->o.m);
		s->ninfl--;
	}
}

void mqtt_session_pump(struct mqtt_service *svc, struct msession *s)
{
	pthread_mutex_lock(&s->mu);
	if (!s->conn || s->loop != cfx_loop_current()) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	while (mqtt_conn_can_send(s->conn)) {
		if (s->out_n) {
			struct outmsg *o = &s->outq[s->out_head];
			if (o->qos && s->ninfl >= s->recv_max)
				break;
			struct outmsg one = *o;
			s->out_head = (s->out_head + 1) % s->out_cap;
			s->out_n--;
			send_one(s, &one, 0);
			atomic_fetch_add(&svc->delivered, 1);
			continue;
		}
		if (!s->lq || s->ninfl >= s->recv_max)
			break;
		struct cfx_lq_entry e[32];
		uint64_t seqs[32];
		uint32_t n = 0, want = CFX_MIN(32u, (uint32_t)(s->recv_max - s->ninfl));
		if (cfx_lq_read(svc->lqs, s->lq, s->lq_next, e, seqs, want, &n) || n == 0)
			break;
		for (uint32_t i = 0; i < n; i++) {
			s->lq_next = seqs[i] + 1;
			struct mmsg *m = mqtt_read_msg(svc, e[i].queue, e[i].offset);
			if (!m) { /* aged out of the store, or not an MQTT message */
				cfx_lq_ack(svc->lqs, s->lq, seqs[i]);
				continue;
			}
			struct outmsg o = { .m = m, .qos = (uint8_t)(e[i].flags & 3),
					    .retain = (e[i].flags & 4) != 0 };
			send_one(s, &o, seqs[i]);
			atomic_fetch_add(&svc->delivered, 1);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

int mqtt_session_acked(struct mqtt_service *svc, struct msession *s, int type, uint16_t pid)
{
	int rc = MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND;

	pthread_mutex_lock(&s->mu);
	for (uint32_t i = 0; i < s->ninfl; i++) {
		struct inflight *f = &s->infl[i];
		if (f->pid != pid)
			continue;
		if (type == MQTT_PUBREC && f->qos == 2) {
			f->released = 1;
			rc = 0;
			break;
		}
		if ((type == MQTT_PUBACK && f->qos == 1) || (type == MQTT_PUBCOMP && f->qos == 2)) {
			if (f->lq_seq && s->lq)
				cfx_lq_ack(svc->lqs, s->lq, f->lq_seq);
			mmsg_unref(f->o.m);
			s->infl[i] = s->infl[--s->ninfl];
			rc = 0;
			wake(s);
		}
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ------------------------------------------------------------------------
 * Retained messages
 * ------------------------------------------------------------------------ */

struct retained_list {
	uint32_t *ids;
	uint32_t n, cap;
	struct cfx_view filter;
};

static void collect_retained(void *arg, struct cfx_view name, uint32_t id)
{
	struct retained_list *rl = arg;
	struct cfx_view topic = { name.p + 2, name.len - 2 };

	if (!mqtt_topic_matches(rl->filter, topic))
		return;
	if (rl->n == rl->cap) {
		rl->cap = rl->cap ? rl->cap * 2 : 16;
		rl->ids = cfx_realloc(rl->ids, rl->cap * sizeof *rl->ids);
	}
	rl->ids[rl->n++] = id;
}

static void collect_retained_id(void *arg, uint32_t id)
{
	struct retained_list *rl = arg;

	if (rl->n == rl->cap) {
		rl->cap = rl->cap ? rl->cap * 2 : 16;
		rl->ids = cfx_realloc(rl->ids, rl->cap * sizeof *rl->ids);
	}
	rl->ids[rl->n++] = id;
}

void mqtt_session_send_retained(struct mqtt_service *svc, struct msession *s,
				struct cfx_view filter, uint8_t qos, uint32_t sub_id, int rap)
{
	struct retained_list rl = { .filter = filter };

	CFX_UNUSED(rap); /* retained messages sent for a new subscription keep their flag */
	if (!memchr(filter.p, '+', filter.len) && !memchr(filter.p, '#', filter.len)) {
		/* No wildcard: at most one retained message, found by name. */
		char name[MQTT_TOPIC_BYTES_MAX + 3];
		uint32_t id;
		int n = snprintf(name, sizeof name, "r/%.*s", (int)filter.len, (const char *)filter.p);
		if (cfx_lq_get(svc->lqs, (struct cfx_view){ (uint8_t *)name, (size_t)n }, 0, &id) == 0)
			collect_retained(&rl, (struct cfx_view){ (uint8_t *)name, (size_t)n }, id);
	} else {
		/* A wildcard: the tree of retained topics visits only what can match. */
		mqtt_retained_match(svc->retained, filter, collect_retained_id, &rl);
	}
	for (uint32_t i = 0; i < rl.n; i++) {
		struct cfx_lq_entry e;
		uint64_t head, tail, seq;
		uint32_t n = 0;
		if (cfx_lq_bounds(svc->lqs, rl.ids[i], &head, &tail) ||
		    cfx_lq_read(svc->lqs, rl.ids[i], head, &e, &seq, 1, &n) || !n ||
		    (e.flags & MQTT_RETAINED_CLEARED))
			continue;
		struct mmsg *m = mqtt_read_msg(svc, e.queue, e.offset);
		if (!m)
			continue;
		mqtt_session_deliver(svc, s, m, CFX_MIN(qos, m->qos), 1, &sub_id, sub_id ? 1 : 0);
		mmsg_unref(m);
	}
	cfx_free(rl.ids);
}

/* ------------------------------------------------------------------------
 * Open: replay the journal, restore persistent sessions, rewrite it
 * ------------------------------------------------------------------------ */

static void replay_record(struct mqtt_service *svc, struct cfx_reader *rd)
{
	char type = (char)cfx_read_u8(rd);
	uint16_t n = cfx_read_le16(rd);
	const uint8_t *id = cfx_read_bytes(rd, n, "client id");
	struct msession *s;

	if (rd->err || !n)
		return;
	s = find(svc, (struct cfx_view){ id, n });
	if (type == 'E') {
		if (s)
			session_end(svc, s);
		return;
	}
	if (!s) {
		s = session_new(svc, (struct cfx_view){ id, n });
		tab_insert(svc, s);
	}
	if (type == 'S') {
		s->persistent = 1;
		s->expiry_s = cfx_read_le32(rd);
	} else if (type == 'Q' || type == 'R') {
		uint16_t pid = cfx_read_le16(rd);
		if (!rd->err && type == 'Q')
			mqtt_session_qos2_begin(NULL, s, pid);
		else if (!rd->err)
			mqtt_session_qos2_end(NULL, s, pid);
	} else if (type == 'B' || type == 'U') {
		struct mqtt_subscription sub = { 0 };
		uint32_t sub_id = 0;
		int existed;
		if (type == 'B') {
			uint8_t qos = cfx_read_u8(rd), nl = cfx_read_u8(rd), rap = cfx_read_u8(rd);
			uint8_t rh = cfx_read_u8(rd);
			sub.qos = CFX_MIN(qos, (uint8_t)2);
			sub.no_local = nl & 1;
			sub.retain_as_published = rap & 1;
			sub.retain_handling = CFX_MIN(rh, (uint8_t)2);
			sub_id = cfx_read_le32(rd);
		}
		uint16_t fl = cfx_read_le16(rd);
		const uint8_t *f = cfx_read_bytes(rd, fl, "filter");
		if (rd->err)
			return;
		sub.filter = (struct cfx_view){ f, fl };
		if (type == 'B' && mqtt_filter_is_valid(sub.filter))
			mqtt_session_subscribe(svc, s, &sub, sub_id, &existed);
		else if (type == 'U')
			mqtt_session_unsubscribe(svc, s, sub.filter);
	}
}

int mqtt_sessions_open(struct mqtt_service *svc)
{
	char path[4096], tmp[4096];
	struct cfx_writer w;
	int64_t now = cfx_clock_mono_ms();

	snprintf(path, sizeof path, "%s/sessions", svc->dir);
	snprintf(tmp, sizeof tmp, "%s/sessions.tmp", svc->dir);
	svc->jfd = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		struct stat sb;
		if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
			size_t len = (size_t)sb.st_size, at = 0;
			uint8_t *buf = cfx_malloc(len);
			ssize_t got = pread(fd, buf, len, 0);
			len = got > 0 ? (size_t)got : 0;
			while (at + 8 <= len) {
				uint32_t body = cfx_load_le32(buf + at);
				if (body > REC_BYTES_MAX || at + 8 + body > len ||
				    cfx_load_le32(buf + at + 4) != cfx_crc32c(0, buf + at + 8, body))
					break; /* a torn tail: what follows was never acknowledged */
				struct cfx_reader rd = cfx_reader_make(buf + at + 8, body);
				replay_record(svc, &rd);
				at += 8 + body;
			}
			cfx_free(buf);
		}
		close(fd);
	}
	/* Rewrite the live state; sessions restored offline, their expiry from now. */
	cfx_writer_init(&w, 4096);
	for (uint32_t i = 0; i < svc->tab_cap; i++)
		for (struct msession *s = svc->tab[i], *next; s; s = next) {
			next = s->next;
			if (!s->persistent) { /* subscriptions without a session record */
				session_end(svc, s);
				continue;
			}
			s->gone_ms = now;
			if (lq_of(svc, s->client_id, 1, &s->lq))
				s->lq = 0;
			rec_session(&w, s);
			for (uint32_t k = 0; k < s->nsubs; k++)
				rec_sub(&w, s->client_id, &s->subs[k]);
			for (uint32_t k = 0; k < s->nqos2; k++)
				rec_pid(&w, 'Q', s->client_id, s->qos2_in[k]);
		}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		cfx_writer_free(&w);
		return CFX_EIO;
	}
	svc->jfd = fd;
	journal_write(svc, &w);
	cfx_writer_free(&w);
	if (fsync(fd) || rename(tmp, path)) {
		close(fd);
		svc->jfd = -1;
		return CFX_EIO;
	}
	int dfd = open(svc->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (svc->nsessions)
		cfx_log_info("mqtt: %u persistent sessions restored", svc->nsessions);
	svc->jfd_ready = 1;
	return 0;
}

void mqtt_sessions_close(struct mqtt_service *svc)
{
	pthread_mutex_lock(&svc->mu);
	for (uint32_t i = 0; i < svc->tab_cap; i++)
		while (svc->tab[i]) {
			struct msession *s = svc->tab[i];
			svc->tab[i] = s->next;
			pthread_mutex_lock(&s->mu);
			s->ended = 1;
			pthread_mutex_unlock(&s->mu);
			msession_unref(svc, s);
		}
	cfx_free(svc->tab);
	svc->tab = NULL;
	svc->tab_cap = svc->nsessions = 0;
	pthread_mutex_unlock(&svc->mu);
	if (svc->jfd >= 0)
		close(svc->jfd);
	svc->jfd = -1;
}
