/*
 * Unit tests for src/proto/grpc/rmq_*.c: the RocketMQ service in-process
 * (broker, server on 127.0.0.1, our gRPC client), with an eye on bad input:
 * every mistake gets its RocketMQ code, and the server keeps serving.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "proto/grpc/client.h"
#include "proto/grpc/rmq.h"
#include "../../store/store_test_util.h"

#define P "/apache.rocketmq.v2.MessagingService/"

static char *dir;
static struct cfx_broker *br;
static struct rmq_service *svc;
static struct cfx_server *srv;
static int port;

static int setup(void **state)
{
	struct cfx_broker_opts bo;
	struct rmq_opts ro;
	(void)state;

	cfx_log_set_level(CFX_LOG_ERROR - 1);
	dir = tu_tmpdir();
	cfx_broker_opts_default(&bo);
	tu_small_opts(&bo.store, dir);
	bo.store.batch_bytes_max = 64 * 1024;
	bo.store.msg_bytes_max = 32 * 1024;
	bo.store.segment_bytes = 256 * 1024;
	if (cfx_broker_open(&bo, &br, NULL))
		return -1;
	rmq_opts_default(&ro);
	ro.max_body_bytes = 16 * 1024;
	ro.long_poll_max_ms = 30000;
	svc = rmq_service_new(br, &ro);
	struct cfx_listener_opts lo = { .name = "grpc", .addr = "127.0.0.1:0",
					.proto = &grpc_conn_proto, .proto_arg = &svc->grpc };
	if (cfx_server_new(&srv, 2) || cfx_server_listen(srv, &lo, &port) || cfx_server_start(srv))
		return -1;
	return cfx_broker_topic_create(br, "fifo_only", CFX_MSG_FIFO, 2);
}

static int teardown(void **state)
{
	(void)state;
	cfx_server_stop(srv, 2000);
	cfx_server_free(srv);
	rmq_service_free(svc);
	cfx_broker_close(br);
	tu_rmdir(dir);
	return 0;
}

static struct grpc_client *client(const char *id)
{
	struct grpc_client *cl;
	assert_int_equal(grpc_client_connect("127.0.0.1", port, 5000, &cl), 0);
	if (id)
		grpc_client_set_header(cl, "x-mq-client-id", id);
	return cl;
}

/* One unary call; returns the unpacked response (caller frees) and the gRPC status. */
static ProtobufCMessage *call(struct grpc_client *cl, const char *method,
			      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
			      int *gstatus)
{
	char path[128];
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = malloc(n ? n : 1), *resp;
	size_t rlen;
	char *msg;

	protobuf_c_message_pack(req, buf);
	snprintf(path, sizeof path, P "%s", method);
	assert_int_equal(grpc_client_unary(cl, path, buf, n, 5000, &resp, &rlen, gstatus, &msg), 0);
	free(buf);
	cfx_free(msg);
	ProtobufCMessage *out = resp ? protobuf_c_message_unpack(rd, NULL, rlen, resp) : NULL;
	cfx_free(resp);
	return out;
}

/* A SendMessage request of one message; fields to spoil are set by the caller. */
struct one_msg {
	PB(SendMessageRequest) req;
	PB(Message) m, *mp;
	PB(Resource) topic;
	PB(SystemProperties) sp;
	PB(Message__UserPropertiesEntry) prop, *propp;
	Google__Protobuf__Timestamp born;
};

static void one_msg_init(struct one_msg *o, const char *topic, const char *body)
{
	o->req = (PB(SendMessageRequest))APACHE__ROCKETMQ__V2__SEND_MESSAGE_REQUEST__INIT;
	o->m = (PB(Message))APACHE__ROCKETMQ__V2__MESSAGE__INIT;
	o->topic = (PB(Resource))APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	o->sp = (PB(SystemProperties))APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES__INIT;
	o->born = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	o->topic.name = (char *)topic;
	o->m.topic = &o->topic;
	o->m.body.data = (uint8_t *)body;
	o->m.body.len = strlen(body);
	o->sp.message_id = "0156F7E71C361B21BC024CCDBE00000001";
	o->sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL;
	o->born.seconds = 1700000000;
	o->sp.born_timestamp = &o->born;
	o->m.system_properties = &o->sp;
	o->mp = &o->m;
	o->req.n_messages = 1;
	o->req.messages = &o->mp;
}

static int send_code(struct grpc_client *cl, struct one_msg *o)
{
	int gs;
	PB(SendMessageResponse) *r = (PB(SendMessageResponse) *)call(
		cl, "SendMessage", &o->req.base, &apache__rocketmq__v2__send_message_response__descriptor,
		&gs);
	assert_int_equal(gs, GRPC_OK);
	assert_non_null(r);
	int code = (int)r->status->code;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return code;
}

/* ------------------------------------------------------------------------ */

static void test_send_validation_codes(void **state)
{
	struct grpc_client *cl = client("test-client");
	static char big[20000];
	struct one_msg o;
	(void)state;

	one_msg_init(&o, "valid_topic", "hello");
	assert_int_equal(send_code(cl, &o), RMQ_CODE(OK));

	one_msg_init(&o, "valid_topic", "");
	assert_int_equal(send_code(cl, &o), RMQ_CODE(MESSAGE_BODY_EMPTY));

	memset(big, 'x', sizeof big - 1);
	one_msg_init(&o, "valid_topic", big);
	assert_int_equal(send_code(cl, &o), RMQ_CODE(MESSAGE_BODY_TOO_LARGE));

	one_msg_init(&o, "valid_topic", "x");
	o.sp.message_id = "";
	assert_int_equal(send_code(cl, &o), RMQ_CODE(ILLEGAL_MESSAGE_ID));

	one_msg_init(&o, "valid_topic", "x");
	o.sp._tag_case = APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___TAG_TAG;
	o.sp.tag = "a|b";
	assert_int_equal(send_code(cl, &o), RMQ_CODE(ILLEGAL_MESSAGE_TAG));

	one_msg_init(&o, "valid_topic", "x");
	o.prop = (PB(Message__UserPropertiesEntry))APACHE__ROCKETMQ__V2__MESSAGE__USER_PROPERTIES_ENTRY__INIT;
	o.prop.key = "UNIQ_KEY";
	o.prop.value = "forged";
	o.propp = &o.prop;
	o.m.n_user_properties = 1;
	o.m.user_properties = &o.propp;
	assert_int_equal(send_code(cl, &o), RMQ_CODE(ILLEGAL_MESSAGE_PROPERTY_KEY));

	one_msg_init(&o, "bad topic!", "x");
	assert_int_equal(send_code(cl, &o), RMQ_CODE(ILLEGAL_TOPIC));

	/* A normal message to a FIFO topic: refused with the type-conflict code. */
	one_msg_init(&o, "fifo_only", "x");
	assert_int_equal(send_code(cl, &o), RMQ_CODE(MESSAGE_PROPERTY_CONFLICT_WITH_TYPE));

	/* A delivery time beyond the maximum delay: refused with its own code. */
	Google__Protobuf__Timestamp far = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	one_msg_init(&o, "valid_topic", "x");
	o.sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__DELAY;
	far.seconds = time(NULL) + 365 * 24 * 3600;
	o.sp.delivery_timestamp = &far;
	assert_int_equal(send_code(cl, &o), RMQ_CODE(ILLEGAL_DELIVERY_TIME));
	grpc_client_close(cl);
}

static void test_client_id_is_required(void **state)
{
	struct grpc_client *cl = client(NULL);
	struct one_msg o;
	(void)state;

	one_msg_init(&o, "valid_topic", "hello");
	assert_int_equal(send_code(cl, &o), RMQ_CODE(CLIENT_ID_REQUIRED));
	grpc_client_close(cl);
}

static void test_bad_receipt_handles(void **state)
{
	struct grpc_client *cl = client("test-client");
	PB(AckMessageRequest) req = APACHE__ROCKETMQ__V2__ACK_MESSAGE_REQUEST__INIT;
	PB(AckMessageEntry) e = APACHE__ROCKETMQ__V2__ACK_MESSAGE_ENTRY__INIT, *ep = &e;
	PB(Resource) g = APACHE__ROCKETMQ__V2__RESOURCE__INIT, t = g;
	int gs;
	(void)state;

	g.name = "group1";
	t.name = "valid_topic";
	req.group = &g;
	req.topic = &t;
	e.message_id = "x";
	e.receipt_handle = "not-a-handle";
	req.n_entries = 1;
	req.entries = &ep;
	PB(AckMessageResponse) *r = (PB(AckMessageResponse) *)call(
		cl, "AckMessage", &req.base, &apache__rocketmq__v2__ack_message_response__descriptor, &gs);
	assert_int_equal(gs, GRPC_OK);
	assert_int_equal(r->status->code, RMQ_CODE(INVALID_RECEIPT_HANDLE));
	assert_int_equal(r->n_entries, 1);
	assert_int_equal(r->entries[0]->status->code, RMQ_CODE(INVALID_RECEIPT_HANDLE));
	protobuf_c_message_free_unpacked(&r->base, NULL);
	grpc_client_close(cl);
}

static void test_route_unknown_topic_and_garbage(void **state)
{
	struct grpc_client *cl = client("test-client");
	PB(QueryRouteRequest) req = APACHE__ROCKETMQ__V2__QUERY_ROUTE_REQUEST__INIT;
	PB(Resource) t = APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	int gs;
	(void)state;

	t.name = "fifo_only";
	req.topic = &t;
	PB(QueryRouteResponse) *r = (PB(QueryRouteResponse) *)call(
		cl, "QueryRoute", &req.base, &apache__rocketmq__v2__query_route_response__descriptor, &gs);
	assert_int_equal(r->status->code, RMQ_CODE(OK));
	assert_int_equal(r->n_message_queues, 2);
	assert_int_equal(r->message_queues[0]->id, 0);
	assert_int_equal(r->message_queues[0]->permission, APACHE__ROCKETMQ__V2__PERMISSION__READ_WRITE);
	assert_int_equal(r->message_queues[0]->n_accept_message_types, 1);
	assert_int_equal(r->message_queues[0]->accept_message_types[0],
			 APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO);
	assert_int_equal(r->message_queues[0]->broker->endpoints->addresses[0]->port, port);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* A request that is not protobuf at all: a transport error, not a crash. */
	uint8_t *resp;
	size_t rlen;
	char *msg;
	assert_int_equal(grpc_client_unary(cl, P "QueryRoute", "\xff\xff\xff\xff", 4, 5000, &resp,
					   &rlen, &gs, &msg), 0);
	assert_int_equal(gs, GRPC_INVALID_ARGUMENT);
	cfx_free(msg);
	cfx_free(resp);
	/* Methods the server does not serve: gRPC UNIMPLEMENTED. */
	assert_int_equal(grpc_client_unary(cl, P "PullMessage", "", 0, 5000, &resp, &rlen, &gs, &msg), 0);
	assert_int_equal(gs, GRPC_UNIMPLEMENTED);
	cfx_free(msg);
	cfx_free(resp);

	/* Garbage on the port: that connection closes, others carry on. */
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char junk[512];
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	memset(junk, 0x41, sizeof junk);
	assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	while (read(fd, junk, sizeof junk) > 0)
		;
	close(fd);
	r = (PB(QueryRouteResponse) *)call(cl, "QueryRoute", &req.base,
					   &apache__rocketmq__v2__query_route_response__descriptor, &gs);
	assert_int_equal(r->status->code, RMQ_CODE(OK));
	protobuf_c_message_free_unpacked(&r->base, NULL);
	grpc_client_close(cl);
}

static void test_receive_ends_before_the_deadline(void **state)
{
	struct grpc_client *cl = client("test-client");
	PB(ReceiveMessageRequest) req = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_REQUEST__INIT;
	PB(Resource) g = APACHE__ROCKETMQ__V2__RESOURCE__INIT, t = g;
	PB(MessageQueue) mq = APACHE__ROCKETMQ__V2__MESSAGE_QUEUE__INIT;
	Google__Protobuf__Duration inv = GOOGLE__PROTOBUF__DURATION__INIT, poll = inv;
	struct grpc_client_event ev;
	uint8_t buf[256];
	int got_status = 0, got_ts = 0, ended = 0;
	(void)state;

	g.name = "g_recv";
	t.name = "valid_topic";
	mq.topic = &t;
	req.group = &g;
	req.message_queue = &mq;
	req.batch_size = 8;
	inv.seconds = 30;
	req.invisible_duration = &inv;
	poll.seconds = 30; /* the server's maximum too */
	req.long_polling_timeout = &poll;
	size_t n = PBF(receive_message_request, get_packed_size)(&req);
	PBF(receive_message_request, pack)(&req, buf);
	int64_t t0 = cfx_clock_mono_ms();
	/* A client deadline of 700 ms: the stream must end before it. */
	int32_t id = grpc_client_start(cl, P "ReceiveMessage", buf, n, 1, 700);
	assert_true(id > 0);
	while (!ended && grpc_client_poll(cl, 5000, &ev) == 1) {
		if (ev.type == GRPC_EV_MESSAGE) {
			PB(ReceiveMessageResponse) *r = PBF(receive_message_response, unpack)(NULL, ev.len, ev.data);
			assert_non_null(r);
			if (r->content_case == APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__CONTENT_STATUS) {
				assert_int_equal(r->status->code, RMQ_CODE(MESSAGE_NOT_FOUND));
				got_status = 1;
			} else if (r->content_case ==
				   APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__CONTENT_DELIVERY_TIMESTAMP) {
				got_ts = 1;
			}
			PBF(receive_message_response, free_unpacked)(r, NULL);
		} else {
			assert_int_equal(ev.status, GRPC_OK);
			ended = 1;
		}
		cfx_free(ev.data);
		cfx_free(ev.message);
	}
	assert_true(ended && got_status && got_ts);
	/* Not a timing measurement: without honouring the deadline the stream
	 * would have lasted the whole 30 s poll. */
	assert_true(cfx_clock_mono_ms() - t0 < 15000);
	grpc_client_close(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_validation_codes),
		cmocka_unit_test(test_client_id_is_required),
		cmocka_unit_test(test_bad_receipt_handles),
		cmocka_unit_test(test_route_unknown_topic_and_garbage),
		cmocka_unit_test(test_receive_ends_before_the_deadline),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
