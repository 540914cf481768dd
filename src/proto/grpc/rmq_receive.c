/*
 * rmq_receive.c - the consuming RPCs: ReceiveMessage (POP with long
 * polling), AckMessage, ChangeInvisibleDuration and
 * ForwardMessageToDeadLetterQueue.
 *
 * A receive that finds nothing parks: it registers a one-shot watch with
 * the broker (woken by a new message or a redelivery time) and a timer on
 * its loop for the end of the poll, which is kept before the client's
 * deadline. The stream always ends the way the clients expect: a status,
 * the messages, a delivery timestamp, then the gRPC status.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "broker/sqlfilter.h"
#include "proto/grpc/rmq.h"

#define BATCH_MAX 32
#define INVISIBLE_MAX_MS (12LL * 3600 * 1000)
#define DEADLINE_RESERVE_MS 200

/* A parked receive. */
struct recv_state {
	struct cfx_pop_req req;
	char *group, *topic;
	char **tags;
	uint32_t ntags;
	struct cfx_sql_filter *sql;
	char *client;		 /* auto_renew: the client to renew for, else NULL */
	int64_t until_ms;	 /* monotonic: answer "not found" at this time */
	struct cfx_timer timer;
	uint64_t watch_id;
	struct recv_ticket *ticket; /* in flight to the watch, or NULL */
};

/* What a watch wake-up carries back to the loop. */
struct recv_ticket {
	struct grpc_call_ref ref;
};

static void state_free(struct recv_state *rs)
{
	for (uint32_t i = 0; i < rs->ntags; i++)
		cfx_free(rs->tags[i]);
	cfx_free(rs->tags);
	cfx_sql_free(rs->sql);
	cfx_free(rs->client);
	cfx_free(rs->group);
	cfx_free(rs->topic);
	cfx_free(rs);
}

/* ------------------------------------------------------------------------
 * Messages on the wire
 * ------------------------------------------------------------------------ */

static void md5_hex(const uint8_t *p, size_t n, char out[33])
{
	static const char hex[] = "0123456789ABCDEF";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned len = 0;

	EVP_Digest(p, n, md, &len, EVP_md5(), NULL);
	for (unsigned i = 0; i < 16; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[32] = '\0';
}

static void set_ts(Google__Protobuf__Timestamp *t, int64_t ms)
{
	t->seconds = ms / 1000;
	t->nanos = (int32_t)(ms % 1000) * 1000000;
}

static char *dup_view(struct cfx_view v)
{
	return cfx_strndup(v.p ? (const char *)v.p : "", v.len);
}

/* Packs one delivered message as a ReceiveMessageResponse and sends it. */
void rmq_msg_fill(struct rmq_msg *b, struct rmq_service *svc, const char *topic,
		  const struct cfx_msg_view *v, uint32_t queue)
{
	size_t cur = 0, cap = 0;
	struct cfx_prop p;

	memset(b, 0, sizeof *b);
	b->m = (PB(Message))APACHE__ROCKETMQ__V2__MESSAGE__INIT;
	b->topic = (PB(Resource))APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	b->sp = (PB(SystemProperties))APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES__INIT;
	b->digest = (PB(Digest))APACHE__ROCKETMQ__V2__DIGEST__INIT;
	b->born = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	b->stored = b->born;
	b->deliver = b->born;
	b->inv = (Google__Protobuf__Duration)GOOGLE__PROTOBUF__DURATION__INIT;

	b->topic.name = (char *)topic;
	b->m.topic = &b->topic;
	b->m.body.data = (uint8_t *)v->body.p;
	b->m.body.len = v->body.len;
	md5_hex(v->body.p, v->body.len, b->md5);
	b->digest.type = APACHE__ROCKETMQ__V2__DIGEST_TYPE__MD5;
	b->digest.checksum = b->md5;
	b->sp.body_digest = &b->digest;
	b->sp.body_encoding = APACHE__ROCKETMQ__V2__ENCODING__IDENTITY;
	b->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL;
	if (v->msg_id.len) {
		b->sp.message_id = b->strs[b->nstr++] = dup_view(v->msg_id);
	} else {
		/* Stored without an id (a Kafka record): one derived from where it
		 * is, stable across deliveries: "K" + queue and offset in hex. */
		char id[48];
		snprintf(id, sizeof id, "K%08X%016" PRIX64, queue, v->offset);
		b->sp.message_id = b->strs[b->nstr++] = cfx_strdup(id);
	}
	if (v->tag.len) {
		b->sp._tag_case = APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___TAG_TAG;
		b->sp.tag = b->strs[b->nstr++] = dup_view(v->tag);
	}
	if (!v->key_null && v->key.len) {
		b->keybuf = dup_view(v->key);
		b->keys = cfx_calloc(v->key.len / 2 + 2, sizeof *b->keys);
		for (char *save = NULL, *k = strtok_r(b->keybuf, " ", &save); k;
		     k = strtok_r(NULL, " ", &save))
			b->keys[b->sp.n_keys++] = k;
		b->sp.keys = b->keys;
	}
	set_ts(&b->born, v->born_ms);
	set_ts(&b->stored, v->store_ms);
	b->sp.born_timestamp = &b->born;
	b->sp.store_timestamp = &b->stored;
	b->sp.store_host = (char *)svc->o.broker_name;
	b->sp.queue_id = (int32_t)queue;
	b->sp._queue_offset_case = APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___QUEUE_OFFSET_QUEUE_OFFSET;
	b->sp.queue_offset = (int64_t)v->offset;

	/* A CloudEvent stored in the Kafka binding (ce_* and content-type)
	 * shows in RocketMQ's: CE_* and CE_contentType (docs/eventbridge.md). */
	int is_event = 0;
	while (cfx_msg_view_next_prop(v, &cur, &p) && !is_event)
		is_event = cfx_view_eq_str(p.name, "ce_specversion");
	cur = 0;

	/* Properties: the internal ones become system properties or stay hidden. */
	while (cfx_msg_view_next_prop(v, &cur, &p)) {
		if (cfx_view_eq_str(p.name, "__SHARDINGKEY")) {
			b->sp._message_group_case =
				APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___MESSAGE_GROUP_MESSAGE_GROUP;
			b->sp.message_group = b->strs[b->nstr++] = dup_view(p.value);
			b->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO;
			continue;
		}
		if (cfx_view_eq_str(p.name, "__BORNHOST")) {
			b->sp.born_host = b->strs[b->nstr++] = dup_view(p.value);
			continue;
		}
		if (cfx_view_eq_str(p.name, "TRACE_CONTEXT")) {
			b->sp._trace_context_case =
				APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___TRACE_CONTEXT_TRACE_CONTEXT;
			b->sp.trace_context = b->strs[b->nstr++] = dup_view(p.value);
			continue;
		}
		if (cfx_view_eq_str(p.name, CFX_PROP_DELIVER_AT)) {
			char num[24];
			if (p.value.len && p.value.len < sizeof num) {
				memcpy(num, p.value.p, p.value.len);
				num[p.value.len] = '\0';
				set_ts(&b->deliver, strtoll(num, NULL, 10));
				b->sp.delivery_timestamp = &b->deliver;
				b->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__DELAY;
			}
			continue;
		}
		if (cfx_view_eq_str(p.name, CFX_PROP_TXN_ID)) {
			b->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__TRANSACTION;
			continue;
		}
		if (cfx_view_eq_str(p.name, CFX_PROP_TIMER_ID) ||
		    cfx_view_eq_str(p.name, CFX_PROP_REAL_TOPIC) ||
		    cfx_view_eq_str(p.name, CFX_PROP_PRODUCER_GROUP))
			continue;
		if (b->nprops == cap) {
			cap = cap ? cap * 2 : 8;
			b->ents = cfx_realloc(b->ents, cap * sizeof *b->ents);
		}
		b->ents[b->nprops] = (PB(Message__UserPropertiesEntry))
			APACHE__ROCKETMQ__V2__MESSAGE__USER_PROPERTIES_ENTRY__INIT;
		if (p.name.len > 3 && !memcmp(p.name.p, "ce_", 3)) {
			char *k = dup_view(p.name);
			memcpy(k, "CE_", 3);
			b->ents[b->nprops].key = k;
		} else if (is_event && cfx_view_eq_str(p.name, "content-type")) {
			b->ents[b->nprops].key = dup_view(CFX_VIEW_STR("CE_contentType"));
		} else {
			b->ents[b->nprops].key = dup_view(p.name);
		}
		b->ents[b->nprops].value = dup_view(p.value);
		b->nprops++;
	}
	if (b->nprops) {
		b->entp = cfx_calloc(b->nprops, sizeof *b->entp);
		for (size_t i = 0; i < b->nprops; i++)
			b->entp[i] = &b->ents[i];
		b->m.n_user_properties = b->nprops;
		b->m.user_properties = b->entp;
	}
	b->m.system_properties = &b->sp;
}

void rmq_msg_free(struct rmq_msg *b)
{
	for (size_t i = 0; i < b->nprops; i++) {
		cfx_free(b->ents[i].key);
		cfx_free(b->ents[i].value);
	}
	cfx_free(b->ents);
	cfx_free(b->entp);
	cfx_free(b->keys);
	cfx_free(b->keybuf);
	for (size_t i = 0; i < b->nstr; i++)
		cfx_free(b->strs[i]);
}

static void send_message(struct grpc_call *call, const struct recv_state *rs,
			 const struct cfx_popped *pm, int64_t invisible_ms)
{
	PB(ReceiveMessageResponse) resp = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__INIT;
	struct rmq_msg b;

	rmq_msg_fill(&b, rmq_svc(call), rs->topic, &pm->v, pm->queue);
	b.sp._receipt_handle_case =
		APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___RECEIPT_HANDLE_RECEIPT_HANDLE;
	b.sp.receipt_handle = (char *)pm->handle;
	b.sp._delivery_attempt_case =
		APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___DELIVERY_ATTEMPT_DELIVERY_ATTEMPT;
	b.sp.delivery_attempt = (int32_t)pm->attempt;
	b.inv.seconds = invisible_ms / 1000;
	b.inv.nanos = (int32_t)(invisible_ms % 1000) * 1000000;
	b.sp.invisible_duration = &b.inv;
	resp.content_case = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__CONTENT_MESSAGE;
	resp.message = &b.m;

	size_t n = PBF(receive_message_response, get_packed_size)(&resp);
	uint8_t *buf = cfx_malloc(n);
	PBF(receive_message_response, pack)(&resp, buf);
	grpc_call_send(call, buf, n);
	cfx_free(buf);
	rmq_msg_free(&b);
}

static void send_status(struct grpc_call *call, int code, const char *why)
{
	PB(ReceiveMessageResponse) resp = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	uint8_t buf[512];

	st.code = (PB(Code))code;
	st.message = (char *)why;
	resp.content_case = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__CONTENT_STATUS;
	resp.status = &st;
	size_t n = PBF(receive_message_response, get_packed_size)(&resp);
	CFX_ASSERT(n <= sizeof buf);
	PBF(receive_message_response, pack)(&resp, buf);
	grpc_call_send(call, buf, n);
}

/* The end of every receive: delivery timestamp, then the gRPC status. */
static void finish_receive(struct grpc_call *call)
{
	PB(ReceiveMessageResponse) resp = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__INIT;
	Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	uint8_t buf[64];

	set_ts(&now, cfx_clock_wall_ms());
	resp.content_case = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__CONTENT_DELIVERY_TIMESTAMP;
	resp.delivery_timestamp = &now;
	size_t n = PBF(receive_message_response, get_packed_size)(&resp);
	PBF(receive_message_response, pack)(&resp, buf);
	grpc_call_send(call, buf, n);
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void answer_error(struct grpc_call *call, int code, const char *why)
{
	send_status(call, code, why);
	finish_receive(call);
}

/* ------------------------------------------------------------------------
 * Receiving
 * ------------------------------------------------------------------------ */

static void try_receive(struct grpc_call *call, struct recv_state *rs);

static void watch_fired(void *arg);

static void ticket_task(void *arg)
{
	struct recv_ticket *t = arg;
	struct grpc_call *call = grpc_call_ref_resolve(&t->ref);

	grpc_call_ref_release(&t->ref);
	cfx_free(t);
	if (call) {
		struct recv_state *rs = grpc_call_data(call);
		if (rs && rs->ticket == t) {
			rs->ticket = NULL;
			rs->watch_id = 0;
			/* A receive that already answered (its poll ran out) must not pop
			 * messages it can no longer deliver. */
			if (!grpc_call_is_finished(call))
				try_receive(call, rs);
		}
	}
}

/* A watch fired (on a broker or store thread): go back to the loop. */
static void watch_fired(void *arg)
{
	struct recv_ticket *t = arg;
	cfx_loop_post(t->ref.loop, ticket_task, t);
}

static void timer_fired(struct cfx_loop *loop, struct cfx_timer *tm)
{
	struct grpc_call *call = tm->data;
	struct recv_state *rs = grpc_call_data(call);

	CFX_UNUSED(loop);
	try_receive(call, rs);
}

static void park(struct grpc_call *call, struct recv_state *rs)
{
	struct rmq_service *svc = rmq_svc(call);

	if (!rs->ticket) {
		struct recv_ticket *t = cfx_calloc(1, sizeof *t);
		grpc_call_ref_init(&t->ref, call);
		rs->ticket = t;
		rs->watch_id = cfx_broker_watch(svc->br, rs->req.group, rs->req.topic, watch_fired, t);
	}
	if (!cfx_timer_is_armed(&rs->timer))
		cfx_timer_start(grpc_call_loop(call), &rs->timer,
				rs->until_ms - cfx_clock_mono_ms(), timer_fired, call);
}

static void try_receive(struct grpc_call *call, struct recv_state *rs)
{
	struct rmq_service *svc = rmq_svc(call);
	struct cfx_pop_result res;
	int rc;

	cfx_pop_result_init(&res);
	rc = cfx_broker_pop(svc->br, &rs->req, &res);
	if (rc) {
		const char *why;
		int code = rc == CFX_ENOENT ? RMQ_CODE(TOPIC_NOT_FOUND) : rmq_code_from_cfx(rc, &why);
		cfx_timer_stop(grpc_call_loop(call), &rs->timer);
		answer_error(call, code, rc == CFX_ENOENT ? "topic or group not found" : why);
	} else if (res.count) {
		cfx_timer_stop(grpc_call_loop(call), &rs->timer);
		send_status(call, RMQ_CODE(OK), "OK");
		for (uint32_t i = 0; i < res.count; i++) {
			send_message(call, rs, &res.msgs[i], rs->req.invisible_ms);
			if (rs->client)
				rmq_renew_add(svc, rs->group, rs->topic, res.msgs[i].handle, rs->client,
					      rs->req.invisible_ms);
		}
		finish_receive(call);
	} else if (cfx_clock_mono_ms() >= rs->until_ms) {
		answer_error(call, RMQ_CODE(MESSAGE_NOT_FOUND), "no new message");
	} else {
		park(call, rs);
	}
	cfx_pop_result_free(&res);
}

void rmq_receive_close(struct grpc_call *call)
{
	struct rmq_service *svc = rmq_svc(call);
	struct recv_state *rs = grpc_call_data(call);

	if (!rs)
		return;
	cfx_timer_stop(grpc_call_loop(call), &rs->timer);
	if (rs->ticket) {
		/* Not fired yet: the ticket is ours to free; else it is on its way. */
		if (cfx_broker_unwatch(svc->br, rs->watch_id)) {
			grpc_call_ref_release(&rs->ticket->ref);
			cfx_free(rs->ticket);
		}
	}
	grpc_call_set_data(call, NULL);
	state_free(rs);
}

/* Parses "a || b || c" (spaces allowed); "*" or empty = all tags. */
static int parse_tags(const char *expr, struct recv_state *rs)
{
	char *copy = cfx_strdup(expr), *save = NULL;

	for (char *t = strtok_r(copy, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
		while (*t == ' ')
			t++;
		size_t n = strlen(t);
		while (n && t[n - 1] == ' ')
			t[--n] = '\0';
		if (!n)
			continue;
		if (!strcmp(t, "*")) {
			rs->ntags = 0;
			cfx_free(copy);
			return 0;
		}
		rs->tags = cfx_realloc(rs->tags, (rs->ntags + 1) * sizeof *rs->tags);
		rs->tags[rs->ntags++] = cfx_strdup(t);
	}
	cfx_free(copy);
	return 0;
}

static int64_t dur_ms(const Google__Protobuf__Duration *d)
{
	return d ? d->seconds * 1000 + d->nanos / 1000000 : -1;
}

void rmq_receive_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(ReceiveMessageRequest) *req = PBF(receive_message_request, unpack)(NULL, len, msg);
	struct recv_state *rs;
	struct cfx_sql_filter *sql = NULL;
	int64_t now = cfx_clock_mono_ms(), poll, invisible, deadline;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed ReceiveMessageRequest");
		return;
	}
	if (!rmq_client_id(call)) {
		answer_error(call, RMQ_CODE(CLIENT_ID_REQUIRED), "x-mq-client-id is required");
		goto out;
	}
	if (!req->message_queue || !req->group) {
		answer_error(call, RMQ_CODE(BAD_REQUEST), "group and message queue are required");
		goto out;
	}
	if (rmq_authorize(call, CFX_AUTH_TOPIC, rmq_resource(req->message_queue->topic),
			  CFX_AUTH_SUB) ||
	    rmq_authorize(call, CFX_AUTH_GROUP, rmq_resource(req->group), CFX_AUTH_SUB))
		goto out;
	if (req->filter_expression &&
	    req->filter_expression->type == APACHE__ROCKETMQ__V2__FILTER_TYPE__SQL) {
		const char *text = req->filter_expression->expression ? req->filter_expression->expression
								      : "";
		char why[200], msgbuf[300];
		if (cfx_sql_compile(text, strlen(text), &sql, why, sizeof why)) {
			snprintf(msgbuf, sizeof msgbuf, "illegal SQL92 filter expression: %s", why);
			answer_error(call, RMQ_CODE(ILLEGAL_FILTER_EXPRESSION), msgbuf);
			goto out;
		}
	}
	if (req->auto_renew) {
		invisible = svc->o.auto_renew_invisible_ms;
	} else {
		invisible = dur_ms(req->invisible_duration);
		if (invisible < svc->o.invisible_min_ms || invisible > INVISIBLE_MAX_MS) {
			answer_error(call, RMQ_CODE(ILLEGAL_INVISIBLE_TIME),
				     "invisible duration must be between 10 s and 12 h");
			goto out;
		}
	}
	/* Long polling: as asked, at most the maximum, ending before the deadline. */
	poll = dur_ms(req->long_polling_timeout);
	if (poll < 0 || poll > svc->o.long_poll_max_ms)
		poll = svc->o.long_poll_max_ms;
	deadline = grpc_call_deadline_ms(call);
	if (deadline && now + poll > deadline - DEADLINE_RESERVE_MS)
		poll = deadline - DEADLINE_RESERVE_MS - now;
	if (poll < 0)
		poll = 0;

	rs = cfx_calloc(1, sizeof *rs);
	rs->group = cfx_strdup(req->group->name);
	rs->topic = cfx_strdup(req->message_queue->topic ? req->message_queue->topic->name : "");
	if (sql) {
		rs->sql = sql;
		rs->req.sql = sql;
		sql = NULL;
	} else if (req->filter_expression && req->filter_expression->expression) {
		parse_tags(req->filter_expression->expression, rs);
	}
	rs->req.group = CFX_VIEW_STR(rs->group);
	rs->req.topic = CFX_VIEW_STR(rs->topic);
	rs->req.tags = rs->ntags ? (const char *const *)rs->tags : NULL;
	rs->req.ntags = rs->ntags;
	rs->req.max_msgs = req->batch_size > 0 && req->batch_size <= BATCH_MAX ? (uint32_t)req->batch_size
									      : BATCH_MAX;
	rs->req.invisible_ms = invisible;
	if (req->auto_renew)
		rs->client = cfx_strdup(rmq_client_id(call));
	rs->until_ms = now + poll;
	grpc_call_set_data(call, rs);
	try_receive(call, rs);
out:
	cfx_sql_free(sql);
	PBF(receive_message_request, free_unpacked)(req, NULL);
}

/* ------------------------------------------------------------------------
 * Acknowledging
 * ------------------------------------------------------------------------ */

void rmq_ack_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(AckMessageRequest) *req = PBF(ack_message_request, unpack)(NULL, len, msg);
	PB(AckMessageResponse) resp = APACHE__ROCKETMQ__V2__ACK_MESSAGE_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT, *est = NULL;
	PB(AckMessageResultEntry) *ents = NULL, **entp = NULL;
	int common = RMQ_CODE(OK);

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed AckMessageRequest");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_GROUP, rmq_resource(req->group), CFX_AUTH_SUB)) {
		PBF(ack_message_request, free_unpacked)(req, NULL);
		return;
	}
	resp.status = &st;
	if (!rmq_client_id(call)) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
		rmq_reply(call, &resp.base);
		goto out;
	}
	ents = cfx_calloc(req->n_entries + 1, sizeof *ents);
	entp = cfx_calloc(req->n_entries + 1, sizeof *entp);
	est = cfx_calloc(req->n_entries + 1, sizeof *est);
	const char **handles = cfx_calloc(req->n_entries + 1, sizeof *handles);
	int *errs = cfx_calloc(req->n_entries + 1, sizeof *errs);
	for (size_t i = 0; i < req->n_entries; i++) {
		handles[i] = req->entries[i]->receipt_handle;
		rmq_renew_remove(svc, handles[i]);
	}
	cfx_broker_ack_many(svc->br, rmq_resource(req->group), rmq_resource(req->topic), handles,
			    (uint32_t)req->n_entries, errs);
	for (size_t i = 0; i < req->n_entries; i++) {
		int rc = errs[i];
		int code = rc ? RMQ_CODE(INVALID_RECEIPT_HANDLE) : RMQ_CODE(OK);
		ents[i] = (PB(AckMessageResultEntry))APACHE__ROCKETMQ__V2__ACK_MESSAGE_RESULT_ENTRY__INIT;
		est[i] = (PB(Status))APACHE__ROCKETMQ__V2__STATUS__INIT;
		est[i].code = (PB(Code))code;
		est[i].message = rc ? "receipt handle is invalid or expired" : "OK";
		ents[i].status = &est[i];
		ents[i].message_id = req->entries[i]->message_id;
		ents[i].receipt_handle = req->entries[i]->receipt_handle;
		entp[i] = &ents[i];
		if (i == 0)
			common = code;
		else if (common != code)
			common = RMQ_CODE(MULTIPLE_RESULTS);
	}
	st.code = (PB(Code))common;
	st.message = common == RMQ_CODE(OK) ? "OK"
		     : req->n_entries	    ? est[0].message
					    : "OK";
	resp.n_entries = req->n_entries;
	resp.entries = entp;
	rmq_reply(call, &resp.base);
	cfx_free(handles);
	cfx_free(errs);
out:
	cfx_free(ents);
	cfx_free(entp);
	cfx_free(est);
	PBF(ack_message_request, free_unpacked)(req, NULL);
}

void rmq_change_invisible(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(ChangeInvisibleDurationRequest) *req =
		PBF(change_invisible_duration_request, unpack)(NULL, len, msg);
	PB(ChangeInvisibleDurationResponse) resp =
		APACHE__ROCKETMQ__V2__CHANGE_INVISIBLE_DURATION_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	char handle[CFX_HANDLE_MAX] = "";
	int64_t d;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed request");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_GROUP, rmq_resource(req->group), CFX_AUTH_SUB)) {
		PBF(change_invisible_duration_request, free_unpacked)(req, NULL);
		return;
	}
	resp.status = &st;
	d = dur_ms(req->invisible_duration);
	rmq_renew_remove(svc, req->receipt_handle); /* the consumer decides from now on */
	if (!rmq_client_id(call)) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
	} else if (d < 0 || d > INVISIBLE_MAX_MS) {
		st.code = RMQ_CODE(ILLEGAL_INVISIBLE_TIME);
		st.message = "invisible duration must be between 0 and 12 h";
	} else if (cfx_broker_change_invisible(svc->br, rmq_resource(req->group),
					       rmq_resource(req->topic), req->receipt_handle, d,
					       handle)) {
		st.code = RMQ_CODE(INVALID_RECEIPT_HANDLE);
		st.message = "receipt handle is invalid or expired";
	} else {
		st.code = RMQ_CODE(OK);
		st.message = "OK";
		resp.receipt_handle = handle;
	}
	rmq_reply(call, &resp.base);
	PBF(change_invisible_duration_request, free_unpacked)(req, NULL);
}

/* ------------------------------------------------------------------------
 * Dead letters
 * ------------------------------------------------------------------------ */

struct dlq_ctx {
	struct grpc_call_ref ref;
	int err;
};

static void dlq_answer(void *arg)
{
	struct dlq_ctx *dc = arg;
	struct grpc_call *call = grpc_call_ref_resolve(&dc->ref);

	if (call) {
		PB(ForwardMessageToDeadLetterQueueResponse) resp =
			APACHE__ROCKETMQ__V2__FORWARD_MESSAGE_TO_DEAD_LETTER_QUEUE_RESPONSE__INIT;
		PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
		const char *why;
		st.code = dc->err == CFX_EINVAL ? RMQ_CODE(INVALID_RECEIPT_HANDLE)
						: (PB(Code))rmq_code_from_cfx(dc->err, &why);
		st.message = dc->err ? (char *)cfx_strerror(dc->err) : "OK";
		resp.status = &st;
		rmq_reply(call, &resp.base);
	}
	grpc_call_ref_release(&dc->ref);
	cfx_free(dc);
}

static void dlq_done(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct dlq_ctx *dc = arg;

	CFX_UNUSED(n);
	dc->err = res[0].err;
	cfx_loop_post(dc->ref.loop, dlq_answer, dc);
}

void rmq_forward_dlq(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(ForwardMessageToDeadLetterQueueRequest) *req =
		PBF(forward_message_to_dead_letter_queue_request, unpack)(NULL, len, msg);
	struct dlq_ctx *dc;
	int rc;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed request");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_GROUP, rmq_resource(req->group), CFX_AUTH_SUB)) {
		PBF(forward_message_to_dead_letter_queue_request, free_unpacked)(req, NULL);
		return;
	}
	rmq_renew_remove(svc, req->receipt_handle);
	dc = cfx_calloc(1, sizeof *dc);
	grpc_call_ref_init(&dc->ref, call);
	rc = rmq_client_id(call) ? cfx_broker_forward_dlq(svc->br, rmq_resource(req->group),
							  rmq_resource(req->topic),
							  req->receipt_handle, svc->o.durability,
							  dlq_done, dc)
				 : CFX_EINVAL;
	if (rc) {
		dc->err = rc;
		dlq_answer(dc);
	}
	PBF(forward_message_to_dead_letter_queue_request, free_unpacked)(req, NULL);
}
