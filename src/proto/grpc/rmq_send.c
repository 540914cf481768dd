/*
 * rmq_send.c - SendMessage: validation as the RocketMQ proxy does it,
 * mapping onto the broker's send, and the asynchronous answer (the store
 * may acknowledge from its flusher thread; the answer is posted back to the
 * call's loop).
 */
#include <stdio.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "proto/grpc/rmq.h"

#define PROPS_MAX 128
#define PROPS_BYTES_MAX (16 * 1024)
#define GROUP_BYTES_MAX 64

/* Property names the clients may not set: the broker's own. */
static int is_system_property(const char *k)
{
	static const char *const names[] = {
		"KEYS", "TAGS", "UNIQ_KEY", "FLAG", "DELAY", "WAIT", "RETRY_TOPIC", "REAL_TOPIC",
		"REAL_QID", "TRAN_MSG", "PGROUP", "MIN_OFFSET", "MAX_OFFSET", "BUYER_ID",
		"ORIGIN_MESSAGE_ID", "TRANSFER_FLAG", "CORRECTION_FLAG", "MQ2_FLAG", "RECONSUME_TIME",
		"MSG_REGION", "TRACE_ON", "UNIQ_KEY", "MAX_RECONSUME_TIMES", "CONSUME_START_TIME",
		"POP_CK", "POP_CK_OFFSET", "1ST_POP_TIME", "TRANSACTION_PREPARED_QUEUE_OFFSET",
		"DUP_INFO", "EXTEND_UNIQ_INFO", "INSTANCE_ID", "CORRELATION_ID", "REPLY_TO_CLIENT",
		"TTL", "ARRIVE_TIME", "PUSH_REPLY_TIME", "CLUSTER", "MSG_TYPE", "INNER_MULTI_DISPATCH",
		"INNER_MULTI_QUEUE_OFFSET", "TRACE_CONTEXT", "__SHARDINGKEY", "__BORNHOST",
		"BORN_TIMESTAMP", "DLQ_ORIGIN_TOPIC", "DLQ_ORIGIN_MESSAGE_ID", "CHECK_IMMUNITY_TIME_IN_SECONDS",
		"TRANSACTION_CHECK_TIMES", "__CRC32#",
	};
	if (!strncmp(k, "TIMER_", 6))
		return 1;
	for (size_t i = 0; i < CFX_ARRAY_LEN(names); i++)
		if (!strcmp(k, names[i]))
			return 1;
	return 0;
}

static int has_control_chars(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

static int is_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t')
			return 0;
	return 1;
}

/* What one SendMessage waits for. */
struct send_ctx {
	struct grpc_call_ref ref;
	uint32_t count;
	char **ids;			/* message ids, to echo */
	uint8_t *txn;			/* per message: transactional */
	struct cfx_send_result *res;	/* filled by the broker */
	int failed;			/* whole-request error (RocketMQ code) */
	const char *why;
};

static void ctx_free(struct send_ctx *sc)
{
	for (uint32_t i = 0; i < sc->count; i++)
		cfx_free(sc->ids[i]);
	cfx_free(sc->ids);
	cfx_free(sc->txn);
	cfx_free(sc->res);
	grpc_call_ref_release(&sc->ref);
	cfx_free(sc);
}

/* Answers on the call's loop. */
static void send_answer(void *arg)
{
	struct send_ctx *sc = arg;
	struct grpc_call *call = grpc_call_ref_resolve(&sc->ref);
	PB(SendMessageResponse) resp = APACHE__ROCKETMQ__V2__SEND_MESSAGE_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	PB(SendResultEntry) *entries, **ep;
	PB(Status) *est;
	int common = -1;

	if (!call) {
		ctx_free(sc); /* the client went away; the messages are stored anyway */
		return;
	}
	entries = cfx_calloc(sc->count, sizeof *entries);
	ep = cfx_calloc(sc->count, sizeof *ep);
	est = cfx_calloc(sc->count, sizeof *est);
	for (uint32_t i = 0; i < sc->count; i++) {
		const char *why;
		int code = rmq_code_from_cfx(sc->res[i].err, &why);
		entries[i] = (PB(SendResultEntry))APACHE__ROCKETMQ__V2__SEND_RESULT_ENTRY__INIT;
		est[i] = (PB(Status))APACHE__ROCKETMQ__V2__STATUS__INIT;
		est[i].code = (PB(Code))code;
		est[i].message = code == RMQ_CODE(OK) ? "OK" : (char *)why;
		entries[i].status = &est[i];
		entries[i].message_id = sc->ids[i];
		entries[i].offset = (int64_t)sc->res[i].offset;
		if (sc->res[i].handle[0] && sc->txn[i])
			entries[i].transaction_id = sc->res[i].handle;
		else if (sc->res[i].handle[0])
			entries[i].recall_handle = sc->res[i].handle;
		ep[i] = &entries[i];
		common = common == -1 || common == code ? code : RMQ_CODE(MULTIPLE_RESULTS);
	}
	st.code = (PB(Code))common;
	st.message = common == RMQ_CODE(OK) ? "OK" : est[0].message;
	resp.status = &st;
	resp.n_entries = sc->count;
	resp.entries = ep;
	rmq_reply(call, &resp.base);
	cfx_free(entries);
	cfx_free(ep);
	cfx_free(est);
	ctx_free(sc);
}

/* The broker's completion, on any thread. */
static void send_done(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	struct send_ctx *sc = arg;

	memcpy(sc->res, res, count * sizeof *res);
	cfx_loop_post(sc->ref.loop, send_answer, sc);
}

static void reply_status(struct grpc_call *call, int code, const char *why)
{
	PB(SendMessageResponse) resp = APACHE__ROCKETMQ__V2__SEND_MESSAGE_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;

	st.code = (PB(Code))code;
	st.message = (char *)why;
	resp.status = &st;
	rmq_reply(call, &resp.base);
}

/* Checks one message; returns a RocketMQ code (OK) and a reason. */
static int check_message(struct rmq_service *svc, const PB(Message) * m, const char **why)
{
	const PB(SystemProperties) *sp = m->system_properties;
	size_t props_bytes = 0;

	if (!sp || !sp->message_id || !*sp->message_id) {
		*why = "message id is required";
		return RMQ_CODE(ILLEGAL_MESSAGE_ID);
	}
	if (m->body.len == 0) {
		*why = "message body is empty";
		return RMQ_CODE(MESSAGE_BODY_EMPTY);
	}
	if ((int64_t)m->body.len > svc->o.max_body_bytes) {
		*why = "message body is larger than the limit";
		return RMQ_CODE(MESSAGE_BODY_TOO_LARGE);
	}
	if (sp->_tag_case && (is_blank(sp->tag) || strchr(sp->tag, '|') ||
			      has_control_chars(sp->tag))) {
		*why = "tag is blank or contains '|' or control characters";
		return RMQ_CODE(ILLEGAL_MESSAGE_TAG);
	}
	for (size_t i = 0; i < sp->n_keys; i++) {
		if (is_blank(sp->keys[i]) || has_control_chars(sp->keys[i])) {
			*why = "a key is blank or contains control characters";
			return RMQ_CODE(ILLEGAL_MESSAGE_KEY);
		}
		props_bytes += strlen(sp->keys[i]);
	}
	if (sp->_message_group_case && (is_blank(sp->message_group) ||
					strlen(sp->message_group) >= GROUP_BYTES_MAX ||
					has_control_chars(sp->message_group))) {
		*why = "message group is blank, too long or contains control characters";
		return RMQ_CODE(ILLEGAL_MESSAGE_GROUP);
	}
	if (m->n_user_properties > PROPS_MAX) {
		*why = "too many user properties";
		return RMQ_CODE(MESSAGE_PROPERTIES_TOO_LARGE);
	}
	for (size_t i = 0; i < m->n_user_properties; i++) {
		const char *k = m->user_properties[i]->key, *v = m->user_properties[i]->value;
		if (!*k || is_system_property(k) || has_control_chars(k) || has_control_chars(v)) {
			*why = "a user property name is empty, reserved, or has control characters";
			return RMQ_CODE(ILLEGAL_MESSAGE_PROPERTY_KEY);
		}
		props_bytes += strlen(k) + strlen(v);
	}
	if (sp->_tag_case)
		props_bytes += strlen(sp->tag);
	if (props_bytes > PROPS_BYTES_MAX) {
		*why = "properties, tag and keys exceed 16 KiB";
		return RMQ_CODE(MESSAGE_PROPERTIES_TOO_LARGE);
	}
	return RMQ_CODE(OK);
}

static int message_type(const PB(SystemProperties) * sp)
{
	switch (sp->message_type) {
	case APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL:
		return CFX_MSG_NORMAL;
	case APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO:
		return CFX_MSG_FIFO;
	case APACHE__ROCKETMQ__V2__MESSAGE_TYPE__DELAY:
		return CFX_MSG_DELAY;
	case APACHE__ROCKETMQ__V2__MESSAGE_TYPE__TRANSACTION:
		return CFX_MSG_TRANSACTION;
	default:
		/* Unspecified: what the properties say. */
		if (sp->delivery_timestamp)
			return CFX_MSG_DELAY;
		return sp->_message_group_case ? CFX_MSG_FIFO : CFX_MSG_NORMAL;
	}
}

static int64_t ts_ms(const Google__Protobuf__Timestamp *t)
{
	return t ? t->seconds * 1000 + t->nanos / 1000000 : 0;
}

void rmq_send_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(SendMessageRequest) *req = PBF(send_message_request, unpack)(NULL, len, msg);
	struct cfx_send_msg *sm = NULL;
	struct cfx_prop *props = NULL;
	char **keys = NULL;
	struct cfx_topic_info ti;
	struct cfx_view topic;
	const char *why = NULL;
	int code = RMQ_CODE(OK), rc;
	uint32_t n;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed SendMessageRequest");
		return;
	}
	n = (uint32_t)req->n_messages;
	if (!rmq_client_id(call)) {
		code = RMQ_CODE(CLIENT_ID_REQUIRED);
		why = "x-mq-client-id is required";
		goto fail;
	}
	if (n == 0) {
		code = RMQ_CODE(MESSAGE_CORRUPTED);
		why = "no message in the request";
		goto fail;
	}
	topic = rmq_resource(req->messages[0]->topic);
	for (uint32_t i = 0; i < n && code == RMQ_CODE(OK); i++) {
		if (!cfx_view_eq(rmq_resource(req->messages[i]->topic), topic)) {
			code = RMQ_CODE(BAD_REQUEST);
			why = "all messages of one request must share their topic";
		} else {
			code = check_message(svc, req->messages[i], &why);
		}
	}
	if (code != RMQ_CODE(OK))
		goto fail;
	if (rmq_authorize(call, CFX_AUTH_TOPIC, topic, CFX_AUTH_PUB)) {
		PBF(send_message_request, free_unpacked)(req, NULL);
		return;
	}
	rc = cfx_broker_topic_get(svc->br, topic, rmq_may(call, CFX_AUTH_TOPIC, topic, CFX_AUTH_CREATE),
				  &ti);
	if (rc) {
		code = rc == CFX_ETOPIC ? RMQ_CODE(ILLEGAL_TOPIC) : RMQ_CODE(TOPIC_NOT_FOUND);
		why = rc == CFX_ETOPIC ? "illegal topic name" : "topic not found";
		goto fail;
	}

	/* Map onto the broker: keys joined by spaces, internal properties for
	 * what delivery must give back (message group, born host, trace). */
	sm = cfx_calloc(n, sizeof *sm);
	props = cfx_calloc((size_t)n * (PROPS_MAX + 3), sizeof *props);
	keys = cfx_calloc(n, sizeof *keys);
	for (uint32_t i = 0; i < n; i++) {
		const PB(Message) *m = req->messages[i];
		const PB(SystemProperties) *sp = m->system_properties;
		struct cfx_prop *p = props + (size_t)i * (PROPS_MAX + 3);
		uint32_t np = 0;

		sm[i].type = message_type(sp);
		if (!cfx_broker_type_accepts(ti.type, sm[i].type)) {
			code = RMQ_CODE(MESSAGE_PROPERTY_CONFLICT_WITH_TYPE);
			why = "the message type does not match the topic's type";
			goto fail;
		}
		if (sp->n_keys) {
			size_t kl = 0;
			for (size_t k = 0; k < sp->n_keys; k++)
				kl += strlen(sp->keys[k]) + 1;
			keys[i] = cfx_malloc(kl);
			keys[i][0] = '\0';
			for (size_t k = 0; k < sp->n_keys; k++) {
				if (k)
					strcat(keys[i], " ");
				strcat(keys[i], sp->keys[k]);
			}
			sm[i].m.key = CFX_VIEW_STR(keys[i]);
		} else {
			sm[i].m.key_null = 1;
		}
		sm[i].m.body = (struct cfx_view){ m->body.data, m->body.len };
		if (sp->_tag_case)
			sm[i].m.tag = CFX_VIEW_STR(sp->tag);
		sm[i].m.msg_id = CFX_VIEW_STR(sp->message_id);
		sm[i].m.born_ms = sp->born_timestamp ? ts_ms(sp->born_timestamp) : 0;
		for (size_t k = 0; k < m->n_user_properties; k++) {
			/* The CloudEvents binding of RocketMQ (CE_*, CE_contentType) is
			 * stored as Kafka's (ce_*, content-type): one form in the store. */
			char *key = m->user_properties[k]->key;
			if (!strcmp(key, "CE_contentType"))
				strcpy(key, "content-type"); /* shorter: fits in place */
			else if (!strncmp(key, "CE_", 3) && key[3])
				memcpy(key, "ce_", 3);
			p[np++] = (struct cfx_prop){ CFX_VIEW_STR(key),
						     CFX_VIEW_STR(m->user_properties[k]->value) };
		}
		if (sp->_message_group_case) {
			p[np++] = (struct cfx_prop){ CFX_VIEW_STR("__SHARDINGKEY"),
						     CFX_VIEW_STR(sp->message_group) };
			sm[i].group = CFX_VIEW_STR(sp->message_group);
		}
		if (sp->born_host && *sp->born_host)
			p[np++] = (struct cfx_prop){ CFX_VIEW_STR("__BORNHOST"),
						     CFX_VIEW_STR(sp->born_host) };
		if (sp->_trace_context_case && *sp->trace_context)
			p[np++] = (struct cfx_prop){ CFX_VIEW_STR("TRACE_CONTEXT"),
						     CFX_VIEW_STR(sp->trace_context) };
		sm[i].m.props = p;
		sm[i].m.prop_count = np;
		sm[i].deliver_at_ms = ts_ms(sp->delivery_timestamp);
	}

	struct send_ctx *sc = cfx_calloc(1, sizeof *sc);
	grpc_call_ref_init(&sc->ref, call);
	sc->count = n;
	sc->ids = cfx_calloc(n, sizeof *sc->ids);
	sc->res = cfx_calloc(n, sizeof *sc->res);
	sc->txn = cfx_calloc(n, 1);
	for (uint32_t i = 0; i < n; i++) {
		sc->ids[i] = cfx_strdup(req->messages[i]->system_properties->message_id);
		sc->txn[i] = sm[i].type == CFX_MSG_TRANSACTION;
	}
	rc = cfx_broker_send(svc->br, topic, sm, n, svc->o.durability, send_done, sc);
	if (rc) {
		ctx_free(sc);
		if (rc == CFX_ERANGE) {
			code = RMQ_CODE(ILLEGAL_DELIVERY_TIME);
			why = "the delivery time is beyond the maximum delay (broker.timer_max)";
		} else if (rc == CFX_EINVAL) {
			code = RMQ_CODE(MESSAGE_PROPERTY_CONFLICT_WITH_TYPE);
			why = "the message type does not match the topic's type";
		} else {
			code = rmq_code_from_cfx(rc, &why);
		}
		goto fail;
	}
	goto out;
fail:
	reply_status(call, code, why);
out:
	if (keys)
		for (uint32_t i = 0; i < n; i++)
			cfx_free(keys[i]);
	cfx_free(keys);
	cfx_free(props);
	cfx_free(sm);
	PBF(send_message_request, free_unpacked)(req, NULL);
}
