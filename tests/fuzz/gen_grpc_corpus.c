/*
 * gen_grpc_corpus.c - writes the seeds of fuzz_grpc: for each RPC of the
 * RocketMQ MessagingService, what an HTTP/2 client sends after its preface
 * (SETTINGS, HEADERS with the gRPC metadata, DATA with a length-prefixed
 * request message), made with an nghttp2 client session and the protobuf-c
 * types, behind the control byte of fuzz_grpc.c; plus broken variants
 * (bad content type, compressed, truncated or oversized messages, two
 * messages on a unary call, a reset stream...) and a few frames written by
 * hand, with plain (not Huffman-coded) HPACK literals, so that the
 * dictionary's strings fit in where the fuzzer splices them.
 *
 *   gen_grpc_corpus tests/fuzz/corpus      (writes tests/fuzz/corpus/fuzz_grpc/)
 *
 * Deterministic: the same sources give the same files. Topic and group names
 * are the ones fuzz_grpc.c creates. Not run by the tests.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apache/rocketmq/v2/service.pb-c.h"
#include "base/buf.h"

#define PB(t) Apache__Rocketmq__V2__##t
#define PATH_PREFIX "/apache.rocketmq.v2.MessagingService/"

/* Control byte of fuzz_grpc.c (FZ_GRPC_*): keep in step with its layout comment. */
#define CTRL_SPLIT_1 0x01u	/* feed one byte at a time */
#define CTRL_SPLIT_64 0x0au	/* feed 64-byte chunks */
#define CTRL_SPLIT_512 0x0du	/* feed 512-byte chunks */
#define CTRL_PUMP_EACH 0x10u
#define CTRL_LINGER 0x20u
#define CTRL_SHUTDOWN 0x40u
#define CTRL_CLOSE_FIRST 0x80u

static const char client_magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const char *out_dir;

static void die(const char *what)
{
	fprintf(stderr, "gen_grpc_corpus: %s\n", what);
	exit(1);
}

/* ------------------------------------------------------------------------
 * Request bodies: gRPC length-prefixed messages
 * ------------------------------------------------------------------------ */

#define BODIES_MAX 64

struct body {
	struct cfx_writer wr; /* [flag u8][length u32 BE][message]... */
	size_t off;	      /* sent so far */
	int end;	      /* END_STREAM after the body */
	int trailers;	      /* end with a trailing HEADERS block (END_STREAM) instead */
};

/* Appends one framed message; `flag` 1 claims compression; `claim` != 0 lies about the length. */
static void body_add(struct body *b, const ProtobufCMessage *m, uint8_t flag, uint32_t claim)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *p;

	cfx_write_u8(&b->wr, flag);
	cfx_write_be32(&b->wr, claim ? claim : (uint32_t)n);
	p = cfx_writer_extend(&b->wr, n);
	protobuf_c_message_pack(m, p);
}

/* ------------------------------------------------------------------------
 * The client: an nghttp2 session whose output is collected
 * ------------------------------------------------------------------------ */

struct client {
	nghttp2_session *s;
	struct cfx_writer wr;	  /* what the client sent after the preface */
	size_t magic_seen;	  /* bytes of the preface skipped so far */
	struct body bodies[BODIES_MAX];
	int nbodies;
	int request_id;
	int keep_open;		  /* client_unary leaves the request side open */
};

/* What a call's HEADERS say (NULL fields are left out). */
struct meta {
	const char *client_id;
	const char *timeout;	  /* grpc-timeout */
	const char *content_type;
};

static const struct meta std_meta = { "fuzz-client@1", "3S", "application/grpc" };

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct body *b = src->ptr;
	size_t k = b->wr.len - b->off < length ? b->wr.len - b->off : length;

	(void)ud;
	memcpy(buf, b->wr.p + b->off, k);
	b->off += k;
	if (b->off == b->wr.len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (!b->end || b->trailers)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (b->trailers) {
			nghttp2_nv nv = { (uint8_t *)"x-mq-trailer", (uint8_t *)"done", 12, 4,
					  NGHTTP2_NV_FLAG_NONE };
			if (nghttp2_submit_trailer(s, id, &nv, 1))
				die("trailers");
		}
	}
	return (ssize_t)k;
}

static void client_open(struct client *cl)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20 },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 8192 },
	};

	memset(cl, 0, sizeof *cl);
	if (nghttp2_session_callbacks_new(&cbs) || nghttp2_session_client_new(&cl->s, cbs, cl))
		die("nghttp2 client session");
	nghttp2_session_callbacks_del(cbs);
	if (nghttp2_submit_settings(cl->s, NGHTTP2_FLAG_NONE, set, sizeof set / sizeof set[0]))
		die("SETTINGS");
	/* A connection window as large as the streams' (WINDOW_UPDATE on stream 0). */
	if (nghttp2_session_set_local_window_size(cl->s, NGHTTP2_FLAG_NONE, 0, 1 << 20))
		die("WINDOW_UPDATE");
}

/* Collects what the session wants to send; the preface is the target's to add. */
static void client_flush(struct client *cl)
{
	for (;;) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(cl->s, &p);
		if (n < 0)
			die("nghttp2_session_mem_send");
		if (n == 0)
			return;
		while (n > 0 && cl->magic_seen < sizeof client_magic - 1) {
			if (*p != (uint8_t)client_magic[cl->magic_seen])
				die("the client session did not start with the preface");
			cl->magic_seen++;
			p++;
			n--;
		}
		cfx_write_bytes(&cl->wr, p, (size_t)n);
	}
}

static struct body *client_body(struct client *cl, int end)
{
	struct body *b;

	if (cl->nbodies == BODIES_MAX)
		die("too many calls in one seed");
	b = &cl->bodies[cl->nbodies++];
	cfx_writer_init(&b->wr, 256);
	b->end = end;
	return b;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE }

/* Starts a call on `method` (a name of the service, or a whole path) with body `b`
 * (NULL: HEADERS with END_STREAM only). Returns the stream id. */
static int32_t client_call(struct client *cl, const char *method, const struct meta *m,
			   struct body *b)
{
	char path[256], reqid[16];
	nghttp2_nv nv[12] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":path", ""),
			      NV(":authority", "127.0.0.1:8081") };
	nghttp2_data_provider prd = { .source.ptr = b, .read_callback = body_read };
	size_t n = 4;
	int32_t id;

	snprintf(path, sizeof path, "%s%s", method[0] == '/' ? "" : PATH_PREFIX, method);
	nv[2] = (nghttp2_nv)NV(":path", path);
	if (m->content_type)
		nv[n++] = (nghttp2_nv)NV("content-type", m->content_type);
	nv[n++] = (nghttp2_nv)NV("te", "trailers");
	if (m->client_id)
		nv[n++] = (nghttp2_nv)NV("x-mq-client-id", m->client_id);
	if (m->timeout)
		nv[n++] = (nghttp2_nv)NV("grpc-timeout", m->timeout);
	nv[n++] = (nghttp2_nv)NV("x-mq-language", "CPP");
	nv[n++] = (nghttp2_nv)NV("x-mq-protocol", "v2");
	nv[n++] = (nghttp2_nv)NV("x-mq-client-version", "5.0.7");
	snprintf(reqid, sizeof reqid, "req-%d", ++cl->request_id);
	nv[n++] = (nghttp2_nv)NV("x-mq-request-id", reqid);
	id = nghttp2_submit_request(cl->s, NULL, nv, n, b ? &prd : NULL, NULL);
	if (id <= 0)
		die("nghttp2_submit_request");
	return id;
}

/* A unary-style call: one message, then END_STREAM. */
static int32_t client_unary(struct client *cl, const char *method, const ProtobufCMessage *msg)
{
	struct body *b = client_body(cl, !cl->keep_open);

	body_add(b, msg, 0, 0);
	return client_call(cl, method, &std_meta, b);
}

/* Pads what the client sent so far to `len` bytes with a frame of an unknown type
 * (ignored by the server), so that a feed boundary of the target falls there. */
static void client_pad_to(struct client *cl, size_t len)
{
	static const uint8_t filler[256];
	size_t n;

	client_flush(cl);
	if (cl->wr.len + 9 > len || len - cl->wr.len - 9 > sizeof filler)
		die("cannot pad to the feed boundary");
	n = len - cl->wr.len - 9;
	cfx_write_u8(&cl->wr, 0);
	cfx_write_be16(&cl->wr, (uint16_t)n);
	cfx_write_u8(&cl->wr, 0xfa); /* type: not defined by RFC 9113 */
	cfx_write_u8(&cl->wr, 0);
	cfx_write_be32(&cl->wr, 0);
	cfx_write_bytes(&cl->wr, filler, n);
}

/* Writes <dir>/fuzz_grpc/<name>: the control byte, then the client's bytes. */
static void emit_bytes(const char *name, uint8_t ctrl, const uint8_t *p, size_t len)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof path, "%s/fuzz_grpc/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&ctrl, 1, 1, f) != 1 || (len && fwrite(p, 1, len, f) != len) ||
	    fclose(f) != 0)
		die(path);
	printf("%s (%zu bytes)\n", path, len + 1);
}

static void client_emit(struct client *cl, const char *name, uint8_t ctrl)
{
	client_flush(cl);
	emit_bytes(name, ctrl, cl->wr.p, cl->wr.len);
	for (int i = 0; i < cl->nbodies; i++)
		cfx_writer_free(&cl->bodies[i].wr);
	cfx_writer_free(&cl->wr);
	nghttp2_session_del(cl->s);
}

/* ------------------------------------------------------------------------
 * Request messages
 * ------------------------------------------------------------------------ */

/* Resource, Endpoints and the like, kept in one place per seed. */
struct parts {
	PB(Resource) topic, group;
	PB(Address) addr, *addrp;
	PB(Endpoints) ep;
	Google__Protobuf__Duration invisible, poll, timeout;
};

static void parts_init(struct parts *p, const char *topic, const char *group)
{
	p->topic = (PB(Resource))APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	p->topic.name = (char *)topic;
	p->group = (PB(Resource))APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	p->group.name = (char *)group;
	p->addr = (PB(Address))APACHE__ROCKETMQ__V2__ADDRESS__INIT;
	p->addr.host = "127.0.0.1";
	p->addr.port = 8081;
	p->addrp = &p->addr;
	p->ep = (PB(Endpoints))APACHE__ROCKETMQ__V2__ENDPOINTS__INIT;
	p->ep.scheme = APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__IPv4;
	p->ep.n_addresses = 1;
	p->ep.addresses = &p->addrp;
	p->invisible = (Google__Protobuf__Duration)GOOGLE__PROTOBUF__DURATION__INIT;
	p->invisible.seconds = 30;
	p->poll = (Google__Protobuf__Duration)GOOGLE__PROTOBUF__DURATION__INIT;
	p->poll.nanos = 5 * 1000 * 1000; /* 5 ms: a long poll that ends while the target lingers */
	p->timeout = (Google__Protobuf__Duration)GOOGLE__PROTOBUF__DURATION__INIT;
	p->timeout.seconds = 3;
}

static void query_route(struct client *cl, const char *topic, int with_endpoints)
{
	struct parts p;
	PB(QueryRouteRequest) req = APACHE__ROCKETMQ__V2__QUERY_ROUTE_REQUEST__INIT;

	parts_init(&p, topic, "");
	req.topic = &p.topic;
	if (with_endpoints)
		req.endpoints = &p.ep;
	client_unary(cl, "QueryRoute", &req.base);
}

static void heartbeat(struct client *cl, const char *group, PB(ClientType) type)
{
	struct parts p;
	PB(HeartbeatRequest) req = APACHE__ROCKETMQ__V2__HEARTBEAT_REQUEST__INIT;

	parts_init(&p, "", group ? group : "");
	req.group = group ? &p.group : NULL;
	req.client_type = type;
	client_unary(cl, "Heartbeat", &req.base);
}

/* Telemetry with producer settings (group NULL) or consumer settings; `extra` adds an
 * answer to a server command and ends the request side with trailers. */
static void telemetry2(struct client *cl, const char *topic, const char *group, int half_close,
		       int extra)
{
	struct parts p;
	PB(TelemetryCommand) cmd = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__INIT;
	PB(Settings) set = APACHE__ROCKETMQ__V2__SETTINGS__INIT;
	PB(Publishing) pub = APACHE__ROCKETMQ__V2__PUBLISHING__INIT;
	PB(Subscription) sub = APACHE__ROCKETMQ__V2__SUBSCRIPTION__INIT;
	PB(SubscriptionEntry) ent = APACHE__ROCKETMQ__V2__SUBSCRIPTION_ENTRY__INIT, *entp = &ent;
	PB(FilterExpression) filter = APACHE__ROCKETMQ__V2__FILTER_EXPRESSION__INIT;
	PB(UA) ua = APACHE__ROCKETMQ__V2__UA__INIT;
	PB(Resource) *topicp;
	struct body *b = client_body(cl, half_close);

	parts_init(&p, topic, group ? group : "");
	topicp = &p.topic;
	set._client_type_case = APACHE__ROCKETMQ__V2__SETTINGS___CLIENT_TYPE_CLIENT_TYPE;
	set.access_point = &p.ep;
	set.request_timeout = &p.timeout;
	ua.language = APACHE__ROCKETMQ__V2__LANGUAGE__CPP;
	ua.version = "5.0.7";
	ua.platform = "linux";
	ua.hostname = "fuzz";
	set.user_agent = &ua;
	if (!group) {
		set.client_type = APACHE__ROCKETMQ__V2__CLIENT_TYPE__PRODUCER;
		pub.n_topics = 1;
		pub.topics = &topicp;
		set.pub_sub_case = APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_PUBLISHING;
		set.publishing = &pub;
	} else {
		set.client_type = APACHE__ROCKETMQ__V2__CLIENT_TYPE__SIMPLE_CONSUMER;
		filter.type = APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG;
		filter.expression = "*";
		ent.topic = &p.topic;
		ent.expression = &filter;
		sub.group = &p.group;
		sub.n_subscriptions = 1;
		sub.subscriptions = &entp;
		sub.long_polling_timeout = &p.timeout;
		set.pub_sub_case = APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_SUBSCRIPTION;
		set.subscription = &sub;
	}
	cmd.command_case = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_SETTINGS;
	cmd.settings = &set;
	body_add(b, &cmd.base, 0, 0);
	if (extra) {
		PB(TelemetryCommand) ans = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__INIT;
		PB(ThreadStackTrace) tst = APACHE__ROCKETMQ__V2__THREAD_STACK_TRACE__INIT;
		tst.nonce = "nonce-1";
		ans.command_case = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_THREAD_STACK_TRACE;
		ans.thread_stack_trace = &tst;
		body_add(b, &ans.base, 0, 0);
		body_add(b, &cmd.base, 0, 0); /* the settings again */
		b->trailers = 1;
	}
	client_call(cl, "Telemetry", &std_meta, b);
}

static void telemetry(struct client *cl, const char *topic, const char *group, int half_close)
{
	telemetry2(cl, topic, group, half_close, 0);
}

/* A message of `topic`; `group` makes it a FIFO message. */
struct msg_parts {
	PB(Message) m;
	PB(Resource) topic;
	PB(SystemProperties) sp;
	PB(Message__UserPropertiesEntry) prop, *propp;
	Google__Protobuf__Timestamp born;
	char *keys[2];
	char id[40];
};

static void msg_init(struct msg_parts *mp, const char *topic, int i, const char *group,
		     const char *body)
{
	mp->m = (PB(Message))APACHE__ROCKETMQ__V2__MESSAGE__INIT;
	mp->topic = (PB(Resource))APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	mp->topic.name = (char *)topic;
	mp->sp = (PB(SystemProperties))APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES__INIT;
	mp->prop = (PB(Message__UserPropertiesEntry))
		APACHE__ROCKETMQ__V2__MESSAGE__USER_PROPERTIES_ENTRY__INIT;
	mp->born = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	snprintf(mp->id, sizeof mp->id, "0156F7E71C361B21BC024CCDBE0000000%d", i);
	mp->sp.message_id = mp->id;
	mp->sp._tag_case = APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___TAG_TAG;
	mp->sp.tag = "TagA";
	mp->keys[0] = "key-one";
	mp->keys[1] = "key-two";
	mp->sp.n_keys = 2;
	mp->sp.keys = mp->keys;
	mp->sp.body_encoding = APACHE__ROCKETMQ__V2__ENCODING__IDENTITY;
	mp->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL;
	mp->born.seconds = 1700000000 + i;
	mp->sp.born_timestamp = &mp->born;
	mp->sp.born_host = "10.0.0.7";
	if (group) {
		mp->sp._message_group_case =
			APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___MESSAGE_GROUP_MESSAGE_GROUP;
		mp->sp.message_group = (char *)group;
		mp->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO;
	}
	mp->prop.key = "color";
	mp->prop.value = "blue";
	mp->propp = &mp->prop;
	mp->m.n_user_properties = 1;
	mp->m.user_properties = &mp->propp;
	mp->m.topic = &mp->topic;
	mp->m.system_properties = &mp->sp;
	mp->m.body.data = (uint8_t *)body;
	mp->m.body.len = strlen(body);
}

/* SendMessage with `n` messages (at most 4) of `topic`. */
static void send_message(struct client *cl, const char *topic, int n, const char *group,
			 void (*spoil)(struct msg_parts *))
{
	static const char *const bodies[] = { "hello, conflux", "second body", "3", "four!" };
	PB(SendMessageRequest) req = APACHE__ROCKETMQ__V2__SEND_MESSAGE_REQUEST__INIT;
	struct msg_parts mp[4];
	PB(Message) *mptr[4];

	for (int i = 0; i < n; i++) {
		msg_init(&mp[i], topic, i, group, bodies[i]);
		if (spoil)
			spoil(&mp[i]);
		mptr[i] = &mp[i].m;
	}
	req.n_messages = (size_t)n;
	req.messages = mptr;
	client_unary(cl, "SendMessage", &req.base);
}

static void spoil_reserved_property(struct msg_parts *mp)
{
	mp->prop.key = "UNIQ_KEY";
	mp->sp.tag = " ";
}

static void query_assignment(struct client *cl, const char *topic, const char *group)
{
	struct parts p;
	PB(QueryAssignmentRequest) req = APACHE__ROCKETMQ__V2__QUERY_ASSIGNMENT_REQUEST__INIT;

	parts_init(&p, topic, group);
	req.topic = &p.topic;
	req.group = &p.group;
	req.endpoints = &p.ep;
	client_unary(cl, "QueryAssignment", &req.base);
}

/* ReceiveMessage; `poll_ms` < 0 leaves the long-polling timeout out. */
static void receive(struct client *cl, const char *topic, const char *group, int poll_ms,
		    PB(FilterType) ftype, const char *expr, int64_t invisible_s)
{
	struct parts p;
	PB(ReceiveMessageRequest) req = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_REQUEST__INIT;
	PB(MessageQueue) mq = APACHE__ROCKETMQ__V2__MESSAGE_QUEUE__INIT;
	PB(FilterExpression) filter = APACHE__ROCKETMQ__V2__FILTER_EXPRESSION__INIT;

	parts_init(&p, topic, group);
	mq.topic = &p.topic;
	mq.id = -1;
	mq.permission = APACHE__ROCKETMQ__V2__PERMISSION__READ_WRITE;
	filter.type = ftype;
	filter.expression = (char *)expr;
	req.group = &p.group;
	req.message_queue = &mq;
	req.filter_expression = &filter;
	req.batch_size = 4;
	p.invisible.seconds = invisible_s;
	req.invisible_duration = &p.invisible;
	if (poll_ms >= 0) {
		p.poll.seconds = poll_ms / 1000;
		p.poll.nanos = (poll_ms % 1000) * 1000000;
		req.long_polling_timeout = &p.poll;
	}
	client_unary(cl, "ReceiveMessage", &req.base);
}

/* A receipt handle of the right shape that the broker's MAC rejects. */
#define FAKE_HANDLE "AQAAAAlUb3BpY1Rlc3QAAAAAAAAAAAAAAQAAAY8pXq3AAAB1MAAAAAEAAAAAAAAAB6q7zN3u_wAR"

static void ack(struct client *cl)
{
	struct parts p;
	PB(AckMessageRequest) req = APACHE__ROCKETMQ__V2__ACK_MESSAGE_REQUEST__INIT;
	PB(AckMessageEntry) e[2], *ep[2];

	parts_init(&p, "TopicTest", "GID_test");
	for (int i = 0; i < 2; i++) {
		e[i] = (PB(AckMessageEntry))APACHE__ROCKETMQ__V2__ACK_MESSAGE_ENTRY__INIT;
		e[i].message_id = "0156F7E71C361B21BC024CCDBE00000000";
		e[i].receipt_handle = i ? "not-a-handle" : FAKE_HANDLE;
		ep[i] = &e[i];
	}
	req.group = &p.group;
	req.topic = &p.topic;
	req.n_entries = 2;
	req.entries = ep;
	client_unary(cl, "AckMessage", &req.base);
}

static void change_invisible(struct client *cl)
{
	struct parts p;
	PB(ChangeInvisibleDurationRequest) req =
		APACHE__ROCKETMQ__V2__CHANGE_INVISIBLE_DURATION_REQUEST__INIT;

	parts_init(&p, "TopicTest", "GID_test");
	req.group = &p.group;
	req.topic = &p.topic;
	req.receipt_handle = FAKE_HANDLE;
	req.invisible_duration = &p.invisible;
	req.message_id = "0156F7E71C361B21BC024CCDBE00000000";
	client_unary(cl, "ChangeInvisibleDuration", &req.base);
}

static void forward_dlq(struct client *cl)
{
	struct parts p;
	PB(ForwardMessageToDeadLetterQueueRequest) req =
		APACHE__ROCKETMQ__V2__FORWARD_MESSAGE_TO_DEAD_LETTER_QUEUE_REQUEST__INIT;

	parts_init(&p, "TopicTest", "GID_test");
	req.group = &p.group;
	req.topic = &p.topic;
	req.receipt_handle = FAKE_HANDLE;
	req.message_id = "0156F7E71C361B21BC024CCDBE00000000";
	req.delivery_attempt = 17;
	req.max_delivery_attempts = 16;
	client_unary(cl, "ForwardMessageToDeadLetterQueue", &req.base);
}

static void end_transaction(struct client *cl)
{
	struct parts p;
	PB(EndTransactionRequest) req = APACHE__ROCKETMQ__V2__END_TRANSACTION_REQUEST__INIT;

	parts_init(&p, "TopicTest", "");
	req.topic = &p.topic;
	req.message_id = "0156F7E71C361B21BC024CCDBE00000000";
	req.transaction_id = "tx-1";
	req.resolution = APACHE__ROCKETMQ__V2__TRANSACTION_RESOLUTION__COMMIT;
	req.source = APACHE__ROCKETMQ__V2__TRANSACTION_SOURCE__SOURCE_CLIENT;
	client_unary(cl, "EndTransaction", &req.base);
}

static void recall(struct client *cl)
{
	struct parts p;
	PB(RecallMessageRequest) req = APACHE__ROCKETMQ__V2__RECALL_MESSAGE_REQUEST__INIT;

	parts_init(&p, "TopicTest", "");
	req.topic = &p.topic;
	req.recall_handle = "recall-handle";
	client_unary(cl, "RecallMessage", &req.base);
}

static void notify_termination(struct client *cl, const char *group)
{
	struct parts p;
	PB(NotifyClientTerminationRequest) req =
		APACHE__ROCKETMQ__V2__NOTIFY_CLIENT_TERMINATION_REQUEST__INIT;

	parts_init(&p, "", group);
	req.group = &p.group;
	client_unary(cl, "NotifyClientTermination", &req.base);
}

/* ------------------------------------------------------------------------
 * Frames by hand: plain HPACK literals, odd frame sequences
 * ------------------------------------------------------------------------ */

static void frame(struct cfx_writer *wr, uint8_t type, uint8_t flags, uint32_t sid,
		  const void *payload, size_t len)
{
	cfx_write_u8(wr, (uint8_t)(len >> 16));
	cfx_write_be16(wr, (uint16_t)len);
	cfx_write_u8(wr, type);
	cfx_write_u8(wr, flags);
	cfx_write_be32(wr, sid);
	cfx_write_bytes(wr, payload, len);
}

/* An HPACK integer with an n-bit prefix (RFC 7541, 5.1); `first` holds the pattern bits. */
static void hpack_int(struct cfx_writer *wr, uint8_t first, int nbits, size_t v)
{
	size_t max = (1u << nbits) - 1;

	if (v < max) {
		cfx_write_u8(wr, (uint8_t)(first | v));
		return;
	}
	cfx_write_u8(wr, (uint8_t)(first | max));
	for (v -= max; v >= 128; v >>= 7)
		cfx_write_u8(wr, (uint8_t)(0x80 | (v & 0x7f)));
	cfx_write_u8(wr, (uint8_t)v);
}

/* "Literal header field without indexing, new name", neither string Huffman-coded. */
static void hpack_literal(struct cfx_writer *wr, const char *name, const char *value)
{
	cfx_write_u8(wr, 0x00);
	hpack_int(wr, 0x00, 7, strlen(name));
	cfx_write_bytes(wr, name, strlen(name));
	hpack_int(wr, 0x00, 7, strlen(value));
	cfx_write_bytes(wr, value, strlen(value));
}

/* A header block for a call, all literals. */
static void plain_headers(struct cfx_writer *hb, const char *method)
{
	char path[256];

	snprintf(path, sizeof path, PATH_PREFIX "%s", method);
	hpack_literal(hb, ":method", "POST");
	hpack_literal(hb, ":scheme", "http");
	hpack_literal(hb, ":path", path);
	hpack_literal(hb, ":authority", "localhost");
	hpack_literal(hb, "content-type", "application/grpc+proto");
	hpack_literal(hb, "te", "trailers");
	hpack_literal(hb, "x-mq-client-id", "plain-client");
	hpack_literal(hb, "grpc-timeout", "500m");
}

static void plain_query_route(struct cfx_writer *wr, uint32_t sid, int split_headers)
{
	struct cfx_writer hb = { 0 }, msg = { 0 };
	struct parts p;
	PB(QueryRouteRequest) req = APACHE__ROCKETMQ__V2__QUERY_ROUTE_REQUEST__INIT;
	size_t n;

	plain_headers(&hb, "QueryRoute");
	if (split_headers) {
		/* HEADERS without END_HEADERS, the rest in a CONTINUATION. */
		size_t half = hb.len / 2;
		frame(wr, 0x1, 0x0, sid, hb.p, half);
		frame(wr, 0x9, 0x4, sid, hb.p + half, hb.len - half);
	} else {
		frame(wr, 0x1, 0x4, sid, hb.p, hb.len); /* END_HEADERS */
	}
	parts_init(&p, "TopicTest", "");
	req.topic = &p.topic;
	n = protobuf_c_message_get_packed_size(&req.base);
	cfx_write_u8(&msg, 0);
	cfx_write_be32(&msg, (uint32_t)n);
	protobuf_c_message_pack(&req.base, cfx_writer_extend(&msg, n));
	frame(wr, 0x0, 0x1, sid, msg.p, msg.len); /* DATA, END_STREAM */
	cfx_writer_free(&hb);
	cfx_writer_free(&msg);
}

static void raw_seeds(void)
{
	static const uint8_t ping[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	static const uint8_t wupd[4] = { 0, 0x10, 0, 0 };
	static const uint8_t prio[5] = { 0, 0, 0, 0, 15 };
	static const uint8_t rst[4] = { 0, 0, 0, 8 }; /* CANCEL */
	struct cfx_writer wr = { 0 };

	/* SETTINGS, a call in plain literals. */
	frame(&wr, 0x4, 0x0, 0, NULL, 0);
	plain_query_route(&wr, 1, 0);
	emit_bytes("raw-plain-hpack-query-route", 0, wr.p, wr.len);

	/* The same with CONTINUATION, then PING, WINDOW_UPDATE, PRIORITY, a SETTINGS ack. */
	cfx_writer_reset(&wr);
	frame(&wr, 0x4, 0x0, 0, NULL, 0);
	frame(&wr, 0x6, 0x0, 0, ping, sizeof ping);
	frame(&wr, 0x8, 0x0, 0, wupd, sizeof wupd);
	frame(&wr, 0x2, 0x0, 3, prio, sizeof prio);
	plain_query_route(&wr, 1, 1);
	frame(&wr, 0x4, 0x1, 0, NULL, 0);
	frame(&wr, 0x3, 0x0, 1, rst, sizeof rst);
	emit_bytes("raw-continuation-ping-window", CTRL_PUMP_EACH, wr.p, wr.len);

	/* DATA on stream 0: a connection error, answered with GOAWAY. */
	cfx_writer_reset(&wr);
	frame(&wr, 0x4, 0x0, 0, NULL, 0);
	frame(&wr, 0x0, 0x0, 0, "xxxx", 4);
	emit_bytes("broken-data-on-stream-0", 0, wr.p, wr.len);

	/* A request on an even (server) stream id, then a GOAWAY from the client. */
	cfx_writer_reset(&wr);
	frame(&wr, 0x4, 0x0, 0, NULL, 0);
	plain_query_route(&wr, 2, 0);
	emit_bytes("broken-even-stream", 0, wr.p, wr.len);

	/* Nothing after the preface. */
	emit_bytes("empty", 0, NULL, 0);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * The seeds
 * ------------------------------------------------------------------------ */

static void rpc_seeds(void)
{
	struct client cl;

	client_open(&cl);
	query_route(&cl, "TopicTest", 1);
	client_emit(&cl, "query-route", 0);
	/* No endpoints in the request: the route names the connection's own address,
	 * which a memory connection does not have (rmq_service.c, route_endpoints). */
	client_open(&cl);
	query_route(&cl, "mixed_topic", 0);
	client_emit(&cl, "regress-route-endpoints-without-socket", 0);
	client_open(&cl);
	query_route(&cl, "NoSuchTopic", 1);
	client_emit(&cl, "query-route-unknown-topic", CTRL_SPLIT_1);

	client_open(&cl);
	heartbeat(&cl, NULL, APACHE__ROCKETMQ__V2__CLIENT_TYPE__PRODUCER);
	client_emit(&cl, "heartbeat-producer", 0);
	client_open(&cl);
	heartbeat(&cl, "GID_test", APACHE__ROCKETMQ__V2__CLIENT_TYPE__SIMPLE_CONSUMER);
	client_emit(&cl, "heartbeat-consumer", 0);

	client_open(&cl);
	telemetry(&cl, "TopicTest", NULL, 0); /* the stream stays open */
	client_emit(&cl, "telemetry-producer", CTRL_SHUTDOWN);
	client_open(&cl);
	telemetry(&cl, "TopicTest", "GID_test", 1);
	client_emit(&cl, "telemetry-consumer", 0);
	client_open(&cl);
	telemetry(&cl, "fifo_topic", "GID_fifo", 0);
	client_emit(&cl, "telemetry-consumer-fifo", CTRL_CLOSE_FIRST | CTRL_PUMP_EACH);
	client_open(&cl);
	telemetry2(&cl, "TopicTest", NULL, 0, 1);
	client_emit(&cl, "telemetry-two-settings-trailers", CTRL_SPLIT_64 | CTRL_PUMP_EACH);

	client_open(&cl);
	send_message(&cl, "TopicTest", 1, NULL, NULL);
	client_emit(&cl, "send-one", 0);
	client_open(&cl);
	send_message(&cl, "mixed_topic", 3, NULL, NULL);
	client_emit(&cl, "send-several", CTRL_SPLIT_64);
	client_open(&cl);
	send_message(&cl, "fifo_topic", 2, "order-42", NULL);
	client_emit(&cl, "send-fifo", 0);
	client_open(&cl);
	send_message(&cl, "TopicTest", 1, "order-7", NULL); /* FIFO message, normal topic */
	client_emit(&cl, "send-type-conflict", 0);
	client_open(&cl);
	send_message(&cl, "TopicTest", 2, NULL, spoil_reserved_property);
	client_emit(&cl, "send-reserved-property", 0);

	/* Enough answers at once to go past the output mark: back-pressure, then drains. */
	client_open(&cl);
	for (int i = 0; i < 60; i++)
		query_route(&cl, "TopicTest", 1);
	client_emit(&cl, "many-calls-back-pressure", 0);

	client_open(&cl);
	query_assignment(&cl, "TopicTest", "GID_test");
	client_emit(&cl, "query-assignment", 0);
	client_open(&cl);
	query_assignment(&cl, "fifo_topic", "GID_fifo");
	client_emit(&cl, "query-assignment-fifo", 0);

	client_open(&cl);
	receive(&cl, "TopicTest", "GID_test", 5, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG, "*", 30);
	client_emit(&cl, "receive-short-poll", CTRL_LINGER);
	client_open(&cl);
	receive(&cl, "mixed_topic", "GID_test", 20000, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG,
		"TagA || TagB", 30);
	client_emit(&cl, "receive-parked", 0); /* freed while parked */
	client_open(&cl);
	receive(&cl, "fifo_topic", "GID_fifo", -1, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG, "*", 60);
	client_emit(&cl, "receive-fifo", CTRL_LINGER | CTRL_PUMP_EACH);
	client_open(&cl);
	receive(&cl, "TopicTest", "GID_test", 5, APACHE__ROCKETMQ__V2__FILTER_TYPE__SQL, "a > 1",
		30);
	client_emit(&cl, "receive-sql-filter", 0);
	client_open(&cl);
	receive(&cl, "TopicTest", "GID_test", 5, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG, "*", 1);
	client_emit(&cl, "receive-bad-invisible", 0);

	client_open(&cl);
	ack(&cl);
	client_emit(&cl, "ack-bad-handles", 0);
	client_open(&cl);
	change_invisible(&cl);
	client_emit(&cl, "change-invisible-bad-handle", 0);
	client_open(&cl);
	forward_dlq(&cl);
	client_emit(&cl, "forward-dlq-bad-handle", 0);
	client_open(&cl);
	end_transaction(&cl);
	client_emit(&cl, "end-transaction", 0);
	client_open(&cl);
	recall(&cl);
	client_emit(&cl, "recall-message", 0);
	client_open(&cl);
	heartbeat(&cl, "GID_test", APACHE__ROCKETMQ__V2__CLIENT_TYPE__SIMPLE_CONSUMER);
	notify_termination(&cl, "GID_test");
	client_emit(&cl, "notify-client-termination", CTRL_PUMP_EACH);
	client_open(&cl);
	query_route(&cl, "TopicTest", 1);
	{
		struct body *b = client_body(&cl, 1);
		PB(Resource) r = APACHE__ROCKETMQ__V2__RESOURCE__INIT;
		r.name = "x";
		body_add(b, &r.base, 0, 0);
		client_call(&cl, "/apache.rocketmq.v2.MessagingService/PullMessage", &std_meta, b);
		client_call(&cl, "/grpc.health.v1.Health/Check", &std_meta, NULL);
	}
	client_emit(&cl, "unknown-method", 0);

	/* A client's life on one connection: route, settings, send, receive, bye. */
	client_open(&cl);
	query_route(&cl, "TopicTest", 1);
	heartbeat(&cl, NULL, APACHE__ROCKETMQ__V2__CLIENT_TYPE__PRODUCER);
	telemetry(&cl, "TopicTest", NULL, 0);
	send_message(&cl, "TopicTest", 2, NULL, NULL);
	receive(&cl, "TopicTest", "GID_test", 5, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG, "TagA",
		30);
	notify_termination(&cl, "GID_test");
	client_emit(&cl, "session", CTRL_LINGER | CTRL_SPLIT_64);

	/* A receive whose poll runs out (its request side left open, so the stream
	 * lives on), then, in the next feed after the target lingered, a send
	 * that wakes the receive's stale watch: the answered receive must not pop
	 * the message (rmq_receive.c, ticket_task). */
	client_open(&cl);
	cl.keep_open = 1;
	receive(&cl, "TopicTest", "GID_test", 5, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG, "*", 30);
	cl.keep_open = 0;
	client_pad_to(&cl, 512);
	send_message(&cl, "TopicTest", 1, NULL, NULL);
	client_emit(&cl, "regress-late-wakeup-after-poll-ended",
		    CTRL_SPLIT_512 | CTRL_PUMP_EACH | CTRL_LINGER);
}

static void broken_seeds(void)
{
	struct client cl;
	struct parts p;
	PB(QueryRouteRequest) qr = APACHE__ROCKETMQ__V2__QUERY_ROUTE_REQUEST__INIT;
	struct meta m;
	struct body *b;

	parts_init(&p, "TopicTest", "GID_test");
	qr.topic = &p.topic;

	client_open(&cl);
	m = std_meta;
	m.content_type = "text/plain";
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 0);
	client_call(&cl, "QueryRoute", &m, b);
	client_emit(&cl, "broken-content-type", 0);

	client_open(&cl);
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 1, 0);
	client_call(&cl, "QueryRoute", &std_meta, b);
	client_emit(&cl, "broken-compressed", 0);

	client_open(&cl);
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 100); /* claims more than follows */
	client_call(&cl, "QueryRoute", &std_meta, b);
	client_emit(&cl, "broken-truncated", 0);

	client_open(&cl);
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 0xffffffffu);
	client_call(&cl, "SendMessage", &std_meta, b);
	client_emit(&cl, "broken-oversized", 0);

	client_open(&cl);
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 0);
	body_add(b, &qr.base, 0, 0);
	client_call(&cl, "QueryRoute", &std_meta, b);
	client_emit(&cl, "broken-two-messages", 0);

	/* A second SendMessage request while the first one's answer is on its way. */
	client_open(&cl);
	{
		struct msg_parts mp;
		PB(SendMessageRequest) sr = APACHE__ROCKETMQ__V2__SEND_MESSAGE_REQUEST__INIT;
		PB(Message) *mptr = &mp.m;
		msg_init(&mp, "mixed_topic", 0, NULL, "twice");
		sr.n_messages = 1;
		sr.messages = &mptr;
		b = client_body(&cl, 1);
		body_add(b, &sr.base, 0, 0);
		body_add(b, &sr.base, 0, 0);
		client_call(&cl, "SendMessage", &std_meta, b);
	}
	client_emit(&cl, "broken-two-sends", 0);

	client_open(&cl);
	m = std_meta;
	m.client_id = NULL;
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 0);
	client_call(&cl, "QueryRoute", &m, b);
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 0);
	client_call(&cl, "ReceiveMessage", &m, b);
	client_emit(&cl, "broken-no-client-id", 0);

	client_open(&cl);
	b = client_body(&cl, 1);
	cfx_write_u8(&b->wr, 0);
	cfx_write_be32(&b->wr, 6);
	cfx_write_bytes(&b->wr, "\x0a\xff\xff\xff\xff\x0f", 6); /* a length past the end */
	client_call(&cl, "SendMessage", &std_meta, b);
	client_emit(&cl, "broken-garbage-protobuf", 0);

	client_open(&cl);
	m = std_meta;
	m.timeout = "99999999H";
	b = client_body(&cl, 1);
	body_add(b, &qr.base, 0, 0);
	client_call(&cl, "QueryRoute", &m, b);
	client_emit(&cl, "broken-bad-timeout", 0);

	client_open(&cl);
	client_call(&cl, "Heartbeat", &std_meta, NULL); /* END_STREAM without a message */
	client_emit(&cl, "broken-no-message", 0);

	/* A parked receive whose stream the client resets. */
	client_open(&cl);
	receive(&cl, "TopicTest", "GID_test", 20000, APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG, "*",
		30);
	client_flush(&cl);
	/* The receive is the session's first stream: id 1. */
	if (nghttp2_submit_rst_stream(cl.s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL))
		die("RST_STREAM");
	client_emit(&cl, "broken-rst-parked-receive", CTRL_PUMP_EACH);
}

int main(int argc, char **argv)
{
	char path[1024];

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR   (writes CORPUS_DIR/fuzz_grpc/)\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	snprintf(path, sizeof path, "%s/fuzz_grpc", out_dir);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		die(path);
	rpc_seeds();
	broken_seeds();
	raw_seeds();
	return 0;
}
