/*
 * rmq_service.c - the RocketMQ 5 MessagingService: its method table, the
 * client registry, and the RPCs about routes, clients and settings
 * (QueryRoute, Heartbeat, Telemetry, QueryAssignment,
 * NotifyClientTermination), plus the ones answered NOT_IMPLEMENTED until
 * their semantics exist (EndTransaction, RecallMessage).
 *
 * Facts about the clients this follows (docs/design/grpc-api.md): they
 * require x-mq-client-id on every call; they connect to the endpoints a
 * route names; the Node client only uses queues with id 0, and its
 * producer needs an exponential back-off and a max body size in the
 * settings reply; Telemetry must answer each Settings at once and stay
 * open.
 */
#include "broker/sqlfilter.h"
#include "proto/grpc/rmq.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#define PATH_PREFIX "/apache.rocketmq.v2.MessagingService/"

void rmq_opts_default(struct rmq_opts *o)
{
	memset(o, 0, sizeof *o);
	o->broker_name = "conflux";
	o->durability = CFX_DURABILITY_ASYNC;
	o->max_body_bytes = 4 << 20;
	o->long_poll_max_ms = 20000;
	o->invisible_min_ms = 10000;
	o->auto_renew_invisible_ms = 60000;
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

void rmq_reply(struct grpc_call *call, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t stackbuf[4096], *buf = n <= sizeof stackbuf ? stackbuf : cfx_malloc(n);

	protobuf_c_message_pack(msg, buf);
	grpc_call_send(call, buf, n);
	grpc_call_finish(call, GRPC_OK, NULL);
	if (buf != stackbuf)
		cfx_free(buf);
}

int rmq_code_from_cfx(int err, const char **why)
{
	*why = cfx_strerror(err);
	switch (err) {
	case 0:
		return RMQ_CODE(OK);
	case CFX_ETOPIC:
		return RMQ_CODE(ILLEGAL_TOPIC);
	case CFX_ENOENT:
		return RMQ_CODE(NOT_FOUND);
	case CFX_EMSGSIZE:
		return RMQ_CODE(MESSAGE_BODY_TOO_LARGE);
	case CFX_EBATCHSIZE:
		return RMQ_CODE(PAYLOAD_TOO_LARGE);
	case CFX_EUNSUPPORTED:
		return RMQ_CODE(NOT_IMPLEMENTED);
	case CFX_EINVAL:
	case CFX_EQUEUE:
		return RMQ_CODE(BAD_REQUEST);
	case CFX_ENOSPC:
	case CFX_EFSYNC:
	case CFX_EIO:
		return RMQ_CODE(INTERNAL_SERVER_ERROR);
	default:
		return RMQ_CODE(INTERNAL_ERROR);
	}
}

const char *rmq_client_id(struct grpc_call *call)
{
	const char *id = grpc_call_header(call, "x-mq-client-id");
	return id && *id ? id : NULL;
}

struct cfx_view rmq_resource(const PB(Resource) * r)
{
	return r && r->name ? CFX_VIEW_STR(r->name) : (struct cfx_view){ (const uint8_t *)"", 0 };
}

static void set_duration(Google__Protobuf__Duration *d, int64_t ms)
{
	d->seconds = ms / 1000;
	d->nanos = (int32_t)(ms % 1000) * 1000000;
}

/* ------------------------------------------------------------------------
 * The client registry
 * ------------------------------------------------------------------------ */

#define CLIENTS_MAX 100000

struct rmq_client {
	struct rmq_client *next;
	char *id;
	int type;
	char *group;
	int64_t last_seen_ms;
};

static struct rmq_client *client_find(struct rmq_service *svc, const char *id)
{
	for (struct rmq_client *c = svc->clients; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

/* Records a client; returns 0 or CFX_E2BIG when the registry is full. */
static int client_touch(struct rmq_service *svc, const char *id, int type, const char *group)
{
	struct rmq_client *c;
	int rc = 0;

	pthread_mutex_lock(&svc->clients_mu);
	c = client_find(svc, id);
	if (!c && svc->nclients >= CLIENTS_MAX) {
		rc = CFX_E2BIG;
	} else if (!c) {
		c = cfx_calloc(1, sizeof *c);
		c->id = cfx_strdup(id);
		c->next = svc->clients;
		svc->clients = c;
		svc->nclients++;
	}
	if (c) {
		if (type)
			c->type = type;
		if (group && *group && (!c->group || strcmp(c->group, group))) {
			cfx_free(c->group);
			c->group = cfx_strdup(group);
		}
		c->last_seen_ms = cfx_clock_mono_ms();
	}
	pthread_mutex_unlock(&svc->clients_mu);
	return rc;
}

int rmq_client_alive(struct rmq_service *svc, const char *id, int64_t max_silence_ms)
{
	struct rmq_client *c;
	int alive;

	pthread_mutex_lock(&svc->clients_mu);
	c = client_find(svc, id);
	alive = c && cfx_clock_mono_ms() - c->last_seen_ms <= max_silence_ms;
	pthread_mutex_unlock(&svc->clients_mu);
	return alive;
}

static int client_forget(struct rmq_service *svc, const char *id)
{
	struct rmq_client **pp, *c = NULL;

	pthread_mutex_lock(&svc->clients_mu);
	for (pp = &svc->clients; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->id, id)) {
			c = *pp;
			*pp = c->next;
			svc->nclients--;
			break;
		}
	pthread_mutex_unlock(&svc->clients_mu);
	if (!c)
		return 0;
	cfx_free(c->id);
	cfx_free(c->group);
	cfx_free(c);
	return 1;
}

/* ------------------------------------------------------------------------
 * Routes
 * ------------------------------------------------------------------------ */

/* The endpoints to put in routes: advertised, else what the client dialled, else our address. */
struct endpoints_buf {
	PB(Endpoints) ep;
	PB(Address) addr;
	PB(Address) * addrs[1];
	char host[256];
};

static void route_endpoints(struct grpc_call *call, const PB(Endpoints) * asked,
			    struct endpoints_buf *b)
{
	struct rmq_service *svc = rmq_svc(call);
	int port = 0;

	b->ep = (PB(Endpoints))APACHE__ROCKETMQ__V2__ENDPOINTS__INIT;
	b->addr = (PB(Address))APACHE__ROCKETMQ__V2__ADDRESS__INIT;
	b->addrs[0] = &b->addr;
	if (svc->o.advertised && cfx_parse_hostport(svc->o.advertised, b->host, sizeof b->host,
						    &port) == 0) {
		b->addr.host = b->host;
		b->addr.port = port;
	} else if (asked && asked->n_addresses && asked->addresses[0]->host &&
		   *asked->addresses[0]->host) {
		/* Echo the access point: what the client reached us by works again. */
		snprintf(b->host, sizeof b->host, "%s", asked->addresses[0]->host);
		b->addr.host = b->host;
		b->addr.port = asked->addresses[0]->port;
	} else {
		struct sockaddr_storage ss = { 0 }; /* stays 0 if getsockname fails (no socket) */
		socklen_t sl = sizeof ss;
		getsockname(grpc_call_conn(call)->io.fd, (struct sockaddr *)&ss, &sl);
		if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, b->host,
				  sizeof b->host);
			b->addr.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		} else {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, b->host,
				  sizeof b->host);
			b->addr.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
		b->addr.host = b->host;
	}
	b->ep.scheme = strchr(b->host, ':') ? APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__IPv6
		       : inet_addr(b->host) != INADDR_NONE ? APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__IPv4
							   : APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__DOMAIN_NAME;
	b->ep.n_addresses = 1;
	b->ep.addresses = b->addrs;
}

static size_t accept_types(int topic_type, PB(MessageType) out[4])
{
	if (topic_type == CFX_TOPIC_MIXED) {
		for (int i = 0; i < 4; i++)
			out[i] = (PB(MessageType))(i + 1);
		return 4;
	}
	out[0] = (PB(MessageType))topic_type;
	return 1;
}

/* A route's queues: 0..n-1, READ_WRITE, on our one broker. Arrays sized by the caller. */
struct queues_buf {
	PB(Resource) topic;
	PB(Broker) broker;
	PB(MessageType) types[4];
	PB(MessageQueue) * mq;
	PB(MessageQueue) * *mqp;
	uint32_t n;
};

static void fill_queues(struct grpc_call *call, const struct cfx_topic_info *ti,
			const PB(Resource) * asked_topic, struct endpoints_buf *eb,
			struct queues_buf *qb, int32_t only_id)
{
	struct rmq_service *svc = rmq_svc(call);
	size_t ntypes = accept_types(ti->type, qb->types);

	qb->topic = (PB(Resource))APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	qb->topic.name = (char *)ti->name;
	if (asked_topic && asked_topic->resource_namespace)
		qb->topic.resource_namespace = asked_topic->resource_namespace;
	qb->broker = (PB(Broker))APACHE__ROCKETMQ__V2__BROKER__INIT;
	qb->broker.name = (char *)svc->o.broker_name;
	qb->broker.id = 0;
	qb->broker.endpoints = &eb->ep;
	qb->n = only_id == -2 ? ti->queues : 1;
	qb->mq = cfx_calloc(qb->n, sizeof *qb->mq);
	qb->mqp = cfx_calloc(qb->n, sizeof *qb->mqp);
	for (uint32_t i = 0; i < qb->n; i++) {
		PB(MessageQueue) *mq = &qb->mq[i];
		*mq = (PB(MessageQueue))APACHE__ROCKETMQ__V2__MESSAGE_QUEUE__INIT;
		mq->topic = &qb->topic;
		mq->id = only_id == -2 ? (int32_t)i : only_id;
		mq->permission = APACHE__ROCKETMQ__V2__PERMISSION__READ_WRITE;
		mq->broker = &qb->broker;
		mq->n_accept_message_types = ntypes;
		mq->accept_message_types = qb->types;
		qb->mqp[i] = mq;
	}
}

static void free_queues(struct queues_buf *qb)
{
	cfx_free(qb->mq);
	cfx_free(qb->mqp);
}

static void query_route(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(QueryRouteRequest) *req = PBF(query_route_request, unpack)(NULL, len, msg);
	PB(QueryRouteResponse) resp = APACHE__ROCKETMQ__V2__QUERY_ROUTE_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	struct endpoints_buf eb;
	struct queues_buf qb = { 0 };
	struct cfx_topic_info ti;
	int rc;

	resp.status = &st;
	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed QueryRouteRequest");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_TOPIC, rmq_resource(req->topic), CFX_AUTH_GET)) {
		PBF(query_route_request, free_unpacked)(req, NULL);
		return;
	}
	if (!rmq_client_id(call)) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
	} else if ((rc = cfx_broker_topic_get(svc->br, rmq_resource(req->topic),
					      rmq_may(call, CFX_AUTH_TOPIC, rmq_resource(req->topic),
						      CFX_AUTH_CREATE),
					      &ti)) != 0) {
		st.code = rc == CFX_ETOPIC ? RMQ_CODE(ILLEGAL_TOPIC) : RMQ_CODE(TOPIC_NOT_FOUND);
		st.message = rc == CFX_ETOPIC ? "illegal topic name" : "topic not found";
	} else {
		route_endpoints(call, req->endpoints, &eb);
		fill_queues(call, &ti, req->topic, &eb, &qb, -2);
		resp.n_message_queues = qb.n;
		resp.message_queues = qb.mqp;
		st.code = RMQ_CODE(OK);
		st.message = "OK";
	}
	rmq_reply(call, &resp.base);
	free_queues(&qb);
	PBF(query_route_request, free_unpacked)(req, NULL);
}

static void query_assignment(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(QueryAssignmentRequest) *req = PBF(query_assignment_request, unpack)(NULL, len, msg);
	PB(QueryAssignmentResponse) resp = APACHE__ROCKETMQ__V2__QUERY_ASSIGNMENT_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	struct endpoints_buf eb;
	struct queues_buf qb = { 0 };
	struct cfx_topic_info ti;
	struct cfx_group_info gi;
	PB(Assignment) *as = NULL, **asp = NULL;
	int rc;

	resp.status = &st;
	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed QueryAssignmentRequest");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_TOPIC, rmq_resource(req->topic), CFX_AUTH_GET) ||
	    rmq_authorize(call, CFX_AUTH_GROUP, rmq_resource(req->group), CFX_AUTH_SUB)) {
		PBF(query_assignment_request, free_unpacked)(req, NULL);
		return;
	}
	if (!rmq_client_id(call)) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
	} else if ((rc = cfx_broker_topic_get(svc->br, rmq_resource(req->topic), 1, &ti)) != 0) {
		st.code = rc == CFX_ETOPIC ? RMQ_CODE(ILLEGAL_TOPIC) : RMQ_CODE(TOPIC_NOT_FOUND);
		st.message = "topic not found";
	} else if (cfx_broker_group_get(svc->br, rmq_resource(req->group), 1, &gi) != 0) {
		st.code = RMQ_CODE(ILLEGAL_CONSUMER_GROUP);
		st.message = "illegal or unknown consumer group";
	} else {
		/* Load balancing is per message (POP): one assignment for any queue
		 * (-1); a FIFO group gets one per queue. */
		route_endpoints(call, req->endpoints, &eb);
		fill_queues(call, &ti, req->topic, &eb, &qb, gi.fifo ? -2 : -1);
		as = cfx_calloc(qb.n, sizeof *as);
		asp = cfx_calloc(qb.n, sizeof *asp);
		for (uint32_t i = 0; i < qb.n; i++) {
			as[i] = (PB(Assignment))APACHE__ROCKETMQ__V2__ASSIGNMENT__INIT;
			as[i].message_queue = qb.mqp[i];
			asp[i] = &as[i];
		}
		resp.n_assignments = qb.n;
		resp.assignments = asp;
		st.code = RMQ_CODE(OK);
		st.message = "OK";
	}
	rmq_reply(call, &resp.base);
	cfx_free(as);
	cfx_free(asp);
	free_queues(&qb);
	PBF(query_assignment_request, free_unpacked)(req, NULL);
}

/* ------------------------------------------------------------------------
 * Clients
 * ------------------------------------------------------------------------ */

static void heartbeat(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(HeartbeatRequest) *req = PBF(heartbeat_request, unpack)(NULL, len, msg);
	PB(HeartbeatResponse) resp = APACHE__ROCKETMQ__V2__HEARTBEAT_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	const char *id = rmq_client_id(call);

	resp.status = &st;
	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed HeartbeatRequest");
		return;
	}
	if (!id) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
	} else if (client_touch(svc, id, (int)req->client_type,
				req->group ? req->group->name : NULL)) {
		st.code = RMQ_CODE(TOO_MANY_REQUESTS);
		st.message = "too many clients";
	} else {
		st.code = RMQ_CODE(OK);
		st.message = "OK";
	}
	rmq_reply(call, &resp.base);
	PBF(heartbeat_request, free_unpacked)(req, NULL);
}

static void notify_termination(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	PB(NotifyClientTerminationRequest) *req =
		PBF(notify_client_termination_request, unpack)(NULL, len, msg);
	PB(NotifyClientTerminationResponse) resp =
		APACHE__ROCKETMQ__V2__NOTIFY_CLIENT_TERMINATION_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	const char *id = rmq_client_id(call);

	resp.status = &st;
	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed request");
		return;
	}
	if (!id) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
	} else if (!client_forget(rmq_svc(call), id)) {
		st.code = RMQ_CODE(UNRECOGNIZED_CLIENT_TYPE);
		st.message = "unknown client";
	} else {
		st.code = RMQ_CODE(OK);
		st.message = "OK";
	}
	rmq_reply(call, &resp.base);
	PBF(notify_client_termination_request, free_unpacked)(req, NULL);
}

/* EndTransaction: the broker's completion comes back to the call's loop. */
struct end_ctx {
	struct grpc_call_ref ref;
	int err;
};

static void end_answer(void *arg)
{
	struct end_ctx *ec = arg;
	struct grpc_call *call = grpc_call_ref_resolve(&ec->ref);
	PB(EndTransactionResponse) resp = APACHE__ROCKETMQ__V2__END_TRANSACTION_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	const char *why = "OK";

	if (call) {
		st.code = (PB(Code))rmq_code_from_cfx(ec->err, &why);
		st.message = (char *)why;
		resp.status = &st;
		rmq_reply(call, &resp.base);
	}
	grpc_call_ref_release(&ec->ref);
	cfx_free(ec);
}

static void end_done(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct end_ctx *ec = arg;

	CFX_UNUSED(n);
	ec->err = res[0].err;
	cfx_loop_post(ec->ref.loop, end_answer, ec);
}

static void end_transaction(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(EndTransactionRequest) *req = PBF(end_transaction_request, unpack)(NULL, len, msg);
	PB(EndTransactionResponse) resp = APACHE__ROCKETMQ__V2__END_TRANSACTION_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	struct end_ctx *ec;
	int rc;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed EndTransactionRequest");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_TOPIC, rmq_resource(req->topic), CFX_AUTH_PUB)) {
		PBF(end_transaction_request, free_unpacked)(req, NULL);
		return;
	}
	resp.status = &st;
	if (!rmq_client_id(call)) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
		goto reply;
	}
	if (req->resolution != APACHE__ROCKETMQ__V2__TRANSACTION_RESOLUTION__COMMIT &&
	    req->resolution != APACHE__ROCKETMQ__V2__TRANSACTION_RESOLUTION__ROLLBACK) {
		/* "Unknown": the transaction stays open and is checked back later. */
		st.code = RMQ_CODE(OK);
		st.message = "OK: the transaction stays open";
		goto reply;
	}
	ec = cfx_calloc(1, sizeof *ec);
	grpc_call_ref_init(&ec->ref, call);
	rc = cfx_broker_end_transaction(
		svc->br, rmq_resource(req->topic), req->transaction_id,
		req->resolution == APACHE__ROCKETMQ__V2__TRANSACTION_RESOLUTION__COMMIT, end_done, ec);
	if (!rc)
		goto out;
	grpc_call_ref_release(&ec->ref);
	cfx_free(ec);
	st.code = RMQ_CODE(INVALID_TRANSACTION_ID);
	st.message = rc == CFX_EINVAL ? "malformed transaction id, or one of another topic"
		     : rc == CFX_ENOENT ? "the transaction is resolved already, or unknown"
					: (char *)"the transaction cannot be resolved now";
	if (rc != CFX_EINVAL && rc != CFX_ENOENT) {
		const char *why;
		st.code = (PB(Code))rmq_code_from_cfx(rc, &why);
	}
reply:
	rmq_reply(call, &resp.base);
out:
	PBF(end_transaction_request, free_unpacked)(req, NULL);
}

static void recall_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(RecallMessageRequest) *req = PBF(recall_message_request, unpack)(NULL, len, msg);
	PB(RecallMessageResponse) resp = APACHE__ROCKETMQ__V2__RECALL_MESSAGE_RESPONSE__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	char id[128] = "";
	int rc;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed RecallMessageRequest");
		return;
	}
	if (rmq_authorize(call, CFX_AUTH_TOPIC, rmq_resource(req->topic), CFX_AUTH_PUB)) {
		PBF(recall_message_request, free_unpacked)(req, NULL);
		return;
	}
	resp.status = &st;
	if (!rmq_client_id(call)) {
		st.code = RMQ_CODE(CLIENT_ID_REQUIRED);
		st.message = "x-mq-client-id is required";
	} else {
		rc = cfx_broker_recall(svc->br, rmq_resource(req->topic), req->recall_handle, id,
				       sizeof id);
		st.code = rc == 0		? RMQ_CODE(OK)
			  : rc == CFX_ENOENT	? RMQ_CODE(MESSAGE_NOT_FOUND)
						: RMQ_CODE(BAD_REQUEST);
		st.message = rc == 0		? "OK"
			     : rc == CFX_ENOENT ? "the message was delivered or recalled already"
						: "malformed recall handle, or one of another topic";
		resp.message_id = id;
	}
	rmq_reply(call, &resp.base);
	PBF(recall_message_request, free_unpacked)(req, NULL);
}

/* ------------------------------------------------------------------------
 * Telemetry: the settings handshake
 * ------------------------------------------------------------------------ */

static void producer_register(struct rmq_service *svc, struct grpc_call *call,
			      const PB(Publishing) * pub);

static void telemetry_fail(struct grpc_call *call, const char *why)
{
	grpc_call_finish(call, GRPC_INVALID_ARGUMENT, why);
}

static void telemetry_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct rmq_service *svc = rmq_svc(call);
	PB(TelemetryCommand) *in = PBF(telemetry_command, unpack)(NULL, len, msg);
	PB(TelemetryCommand) out = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__INIT;
	PB(Status) st = APACHE__ROCKETMQ__V2__STATUS__INIT;
	PB(Settings) set = APACHE__ROCKETMQ__V2__SETTINGS__INIT;
	PB(Publishing) pub = APACHE__ROCKETMQ__V2__PUBLISHING__INIT;
	PB(Subscription) sub = APACHE__ROCKETMQ__V2__SUBSCRIPTION__INIT;
	PB(RetryPolicy) retry = APACHE__ROCKETMQ__V2__RETRY_POLICY__INIT;
	PB(ExponentialBackoff) expo = APACHE__ROCKETMQ__V2__EXPONENTIAL_BACKOFF__INIT;
	PB(CustomizedBackoff) custom = APACHE__ROCKETMQ__V2__CUSTOMIZED_BACKOFF__INIT;
	PB(Metric) metric = APACHE__ROCKETMQ__V2__METRIC__INIT;
	Google__Protobuf__Duration d_init = GOOGLE__PROTOBUF__DURATION__INIT, d_max = d_init,
				   d_poll = d_init, steps[CFX_BACKOFF_STEPS_MAX];
	Google__Protobuf__Duration *stepp[CFX_BACKOFF_STEPS_MAX];
	const char *id = rmq_client_id(call);
	char filter_why[256];
	int bad_filter = 0;
	PB(Settings) *cs;

	if (!in) {
		telemetry_fail(call, "malformed TelemetryCommand");
		return;
	}
	if (in->command_case != APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_SETTINGS) {
		/* Answers to server commands (stack traces, verifications): nothing to do. */
		PBF(telemetry_command, free_unpacked)(in, NULL);
		return;
	}
	if (!id) {
		PBF(telemetry_command, free_unpacked)(in, NULL);
		telemetry_fail(call, "x-mq-client-id is required");
		return;
	}
	cs = in->settings;
	set._client_type_case = cs->_client_type_case;
	set.client_type = cs->client_type;
	set.access_point = cs->access_point;
	set.request_timeout = cs->request_timeout;
	set.user_agent = cs->user_agent;
	set.metric = &metric; /* no metrics pushed to the server */
	set.backoff_policy = &retry;

	if (cs->pub_sub_case == APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_PUBLISHING) {
		/* Producers: three attempts, exponential back-off 10 ms .. 1 s. */
		retry.max_attempts = 3;
		set_duration(&d_init, 10);
		set_duration(&d_max, 1000);
		expo.initial = &d_init;
		expo.max = &d_max;
		expo.multiplier = 2;
		retry.strategy_case = APACHE__ROCKETMQ__V2__RETRY_POLICY__STRATEGY_EXPONENTIAL_BACKOFF;
		retry.exponential_backoff = &expo;
		if (cs->publishing) {
			pub.n_topics = cs->publishing->n_topics;
			pub.topics = cs->publishing->topics;
		}
		pub.max_body_size = (int32_t)svc->o.max_body_bytes;
		pub.validate_message_type = 1;
		producer_register(svc, call, cs->publishing);
		set.pub_sub_case = APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_PUBLISHING;
		set.publishing = &pub;
		client_touch(svc, id, (int)cs->client_type, NULL);
	} else if (cs->pub_sub_case == APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_SUBSCRIPTION &&
		   cs->subscription) {
		struct cfx_group_info gi;
		struct cfx_view group = rmq_resource(cs->subscription->group);

		if (cfx_broker_group_get(svc->br, group, 1, &gi)) {
			PBF(telemetry_command, free_unpacked)(in, NULL);
			telemetry_fail(call, "illegal or unknown consumer group");
			return;
		}
		/* SQL92 expressions are checked here, at subscription: a malformed
		 * one is named in the answer's status (receives refuse it too). */
		for (size_t i = 0; i < cs->subscription->n_subscriptions && !bad_filter; i++) {
			const PB(FilterExpression) *fe = cs->subscription->subscriptions[i]->expression;
			struct cfx_sql_filter *f = NULL;
			char why[200];
			if (!fe || fe->type != APACHE__ROCKETMQ__V2__FILTER_TYPE__SQL)
				continue;
			const char *text = fe->expression ? fe->expression : "";
			if (cfx_sql_compile(text, strlen(text), &f, why, sizeof why)) {
				snprintf(filter_why, sizeof filter_why,
					 "illegal SQL92 filter expression: %s", why);
				bad_filter = 1;
			}
			cfx_sql_free(f);
		}
		/* Register the subscriptions: a new group starts at the end. */
		for (size_t i = 0; i < cs->subscription->n_subscriptions; i++) {
			struct cfx_topic_info ti;
			struct cfx_view topic = rmq_resource(cs->subscription->subscriptions[i]->topic);
			if (cfx_broker_topic_get(svc->br, topic, 1, &ti) == 0)
				cfx_broker_subscribe(svc->br, group, topic);
		}
		sub.group = cs->subscription->group;
		sub.n_subscriptions = cs->subscription->n_subscriptions;
		sub.subscriptions = cs->subscription->subscriptions;
		sub._fifo_case = APACHE__ROCKETMQ__V2__SUBSCRIPTION___FIFO_FIFO;
		sub.fifo = gi.fifo;
		sub._receive_batch_size_case =
			APACHE__ROCKETMQ__V2__SUBSCRIPTION___RECEIVE_BATCH_SIZE_RECEIVE_BATCH_SIZE;
		sub.receive_batch_size = 32;
		set_duration(&d_poll, svc->o.long_poll_max_ms);
		sub.long_polling_timeout = &d_poll;
		retry.max_attempts = (int32_t)gi.retry.max_attempts;
		if (gi.retry.kind == CFX_BACKOFF_EXPONENTIAL) {
			set_duration(&d_init, gi.retry.initial_ms);
			set_duration(&d_max, gi.retry.max_ms);
			expo.initial = &d_init;
			expo.max = &d_max;
			expo.multiplier = (float)gi.retry.multiplier;
			retry.strategy_case =
				APACHE__ROCKETMQ__V2__RETRY_POLICY__STRATEGY_EXPONENTIAL_BACKOFF;
			retry.exponential_backoff = &expo;
		} else {
			for (uint32_t i = 0; i < gi.retry.nsteps; i++) {
				steps[i] = (Google__Protobuf__Duration)GOOGLE__PROTOBUF__DURATION__INIT;
				set_duration(&steps[i], gi.retry.steps_ms[i]);
				stepp[i] = &steps[i];
			}
			custom.n_next = gi.retry.nsteps;
			custom.next = stepp;
			retry.strategy_case =
				APACHE__ROCKETMQ__V2__RETRY_POLICY__STRATEGY_CUSTOMIZED_BACKOFF;
			retry.customized_backoff = &custom;
		}
		set.pub_sub_case = APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_SUBSCRIPTION;
		set.subscription = &sub;
		client_touch(svc, id, (int)cs->client_type, gi.name);
	} else {
		PBF(telemetry_command, free_unpacked)(in, NULL);
		telemetry_fail(call, "settings carry neither publishing nor subscription");
		return;
	}

	st.code = RMQ_CODE(OK);
	st.message = "OK";
	if (bad_filter) {
		st.code = RMQ_CODE(ILLEGAL_FILTER_EXPRESSION);
		st.message = filter_why;
	}
	out.status = &st;
	out.command_case = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_SETTINGS;
	out.settings = &set;
	size_t n = PBF(telemetry_command, get_packed_size)(&out);
	uint8_t *buf = cfx_malloc(n);
	PBF(telemetry_command, pack)(&out, buf);
	grpc_call_send(call, buf, n); /* the stream stays open for server commands */
	cfx_free(buf);
	PBF(telemetry_command, free_unpacked)(in, NULL);
}

/* ------------------------------------------------------------------------
 * Telemetry: producers' streams, for transaction check-backs
 * ------------------------------------------------------------------------ */

/* A producer's open Telemetry stream and the topics it publishes to. Lives
 * on the stream's loop (created there, removed by the call's on_close). */
struct rmq_producer {
	struct rmq_producer *next;
	uint64_t id;
	struct grpc_call_ref ref;
	char **topics;
	size_t ntopics;
};

static void producer_set_topics(struct rmq_producer *p, const PB(Publishing) * pub)
{
	for (size_t i = 0; i < p->ntopics; i++)
		cfx_free(p->topics[i]);
	cfx_free(p->topics);
	p->topics = NULL;
	p->ntopics = 0;
	if (!pub || !pub->n_topics)
		return;
	p->topics = cfx_calloc(pub->n_topics, sizeof *p->topics);
	for (size_t i = 0; i < pub->n_topics; i++) {
		struct cfx_view t = rmq_resource(pub->topics[i]);
		p->topics[p->ntopics++] = cfx_strndup((const char *)t.p, t.len);
	}
}

/* Registers (or updates) the producer stream of `call`. @thread loop */
static void producer_register(struct rmq_service *svc, struct grpc_call *call,
			      const PB(Publishing) * pub)
{
	struct rmq_producer *p = grpc_call_data(call);

	pthread_mutex_lock(&svc->clients_mu);
	if (!p) {
		p = cfx_calloc(1, sizeof *p);
		p->id = ++svc->next_producer_id;
		grpc_call_ref_init(&p->ref, call);
		p->next = svc->producers;
		svc->producers = p;
		grpc_call_set_data(call, p);
	}
	producer_set_topics(p, pub);
	pthread_mutex_unlock(&svc->clients_mu);
}

static void telemetry_close(struct grpc_call *call)
{
	struct rmq_service *svc = rmq_svc(call);
	struct rmq_producer *p = grpc_call_data(call), **pp;

	if (!p)
		return;
	pthread_mutex_lock(&svc->clients_mu);
	for (pp = &svc->producers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&svc->clients_mu);
	grpc_call_set_data(call, NULL);
	producer_set_topics(p, NULL);
	grpc_call_ref_release(&p->ref);
	cfx_free(p);
}

struct check_cmd {
	struct rmq_service *svc;
	uint64_t producer;
	uint8_t *buf;
	size_t len;
};

/* On the producer stream's loop: send the command if the stream is still there. */
static void check_send(void *arg)
{
	struct check_cmd *cc = arg;
	struct rmq_producer *p;
	struct grpc_call *call = NULL;

	pthread_mutex_lock(&cc->svc->clients_mu);
	for (p = cc->svc->producers; p && p->id != cc->producer; p = p->next)
		;
	pthread_mutex_unlock(&cc->svc->clients_mu);
	if (p)
		call = grpc_call_ref_resolve(&p->ref);
	if (call && !grpc_call_is_finished(call))
		grpc_call_send(call, cc->buf, cc->len);
	cfx_free(cc->buf);
	cfx_free(cc);
}

/*
 * The broker asks about an open transaction (timer thread): a
 * RecoverOrphanedTransactionCommand goes to one producer stream that
 * publishes to the topic (in turn), which answers with EndTransaction.
 */
static void txn_check(void *arg, const struct cfx_txn_check *c)
{
	struct rmq_service *svc = arg;
	PB(TelemetryCommand) out = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__INIT;
	PB(RecoverOrphanedTransactionCommand) rc =
		APACHE__ROCKETMQ__V2__RECOVER_ORPHANED_TRANSACTION_COMMAND__INIT;
	struct rmq_producer *p, *pick = NULL;
	uint32_t n = 0, want;
	struct loop_target {
		uint64_t id;
		struct cfx_loop *loop;
	} target;
	struct rmq_msg b;
	char *topic;

	topic = cfx_strndup((const char *)c->topic.p, c->topic.len);
	pthread_mutex_lock(&svc->clients_mu);
	for (p = svc->producers; p; p = p->next)
		for (size_t i = 0; i < p->ntopics; i++)
			if (!strcmp(p->topics[i], topic)) {
				n++;
				break;
			}
	want = n ? svc->next_check++ % n : 0;
	for (p = svc->producers; p && !pick; p = p->next)
		for (size_t i = 0; i < p->ntopics; i++)
			if (!strcmp(p->topics[i], topic)) {
				if (want-- == 0)
					pick = p;
				break;
			}
	if (pick)
		target = (struct loop_target){ pick->id, pick->ref.loop };
	pthread_mutex_unlock(&svc->clients_mu);
	if (!pick) {
		cfx_log_ratelimited(CFX_LOG_INFO, "rmq: no producer of %s is connected to check "
				    "an open transaction back",
				    topic);
		cfx_free(topic);
		return;
	}
	rmq_msg_fill(&b, svc, topic, c->msg, 0);
	b.sp.message_type = APACHE__ROCKETMQ__V2__MESSAGE_TYPE__TRANSACTION;
	rc.message = &b.m;
	rc.transaction_id = (char *)c->txn_id;
	out.command_case = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_RECOVER_ORPHANED_TRANSACTION_COMMAND;
	out.recover_orphaned_transaction_command = &rc;
	struct check_cmd *cc = cfx_calloc(1, sizeof *cc);
	cc->svc = svc;
	cc->producer = target.id;
	cc->len = PBF(telemetry_command, get_packed_size)(&out);
	cc->buf = cfx_malloc(cc->len);
	PBF(telemetry_command, pack)(&out, cc->buf);
	rmq_msg_free(&b);
	cfx_free(topic);
	cfx_loop_post(target.loop, check_send, cc);
}

static void telemetry_half_close(struct grpc_call *call)
{
	grpc_call_finish(call, GRPC_OK, NULL);
}

/* ------------------------------------------------------------------------
 * The service
 * ------------------------------------------------------------------------ */

static const struct grpc_method methods[] = {
	{ PATH_PREFIX "QueryRoute", GRPC_UNARY, query_route, NULL, NULL },
	{ PATH_PREFIX "Heartbeat", GRPC_UNARY, heartbeat, NULL, NULL },
	{ PATH_PREFIX "SendMessage", GRPC_UNARY, rmq_send_message, NULL, NULL },
	{ PATH_PREFIX "QueryAssignment", GRPC_UNARY, query_assignment, NULL, NULL },
	{ PATH_PREFIX "ReceiveMessage", GRPC_SERVER_STREAM, rmq_receive_message, NULL,
	  rmq_receive_close },
	{ PATH_PREFIX "AckMessage", GRPC_UNARY, rmq_ack_message, NULL, NULL },
	{ PATH_PREFIX "ForwardMessageToDeadLetterQueue", GRPC_UNARY, rmq_forward_dlq, NULL, NULL },
	{ PATH_PREFIX "EndTransaction", GRPC_UNARY, end_transaction, NULL, NULL },
	{ PATH_PREFIX "Telemetry", GRPC_BIDI, telemetry_message, telemetry_half_close,
	  telemetry_close },
	{ PATH_PREFIX "NotifyClientTermination", GRPC_UNARY, notify_termination, NULL, NULL },
	{ PATH_PREFIX "ChangeInvisibleDuration", GRPC_UNARY, rmq_change_invisible, NULL, NULL },
	{ PATH_PREFIX "RecallMessage", GRPC_UNARY, recall_message, NULL, NULL },
};

struct rmq_service *rmq_service_new(struct cfx_broker *br, const struct rmq_opts *o)
{
	struct rmq_service *svc = cfx_calloc(1, sizeof *svc);

	svc->o = *o;
	svc->br = br;
	svc->grpc.methods = methods;
	svc->grpc.nmethods = CFX_ARRAY_LEN(methods);
	svc->grpc.arg = svc;
	svc->grpc.admit = rmq_admit;
	/* A SendMessage of 32 maximal messages, with room for their metadata. */
	svc->grpc.message_bytes_max = (size_t)o->max_body_bytes * 32 + (1u << 20);
	if (svc->grpc.message_bytes_max > (256u << 20))
		svc->grpc.message_bytes_max = 256u << 20;
	pthread_mutex_init(&svc->clients_mu, NULL);
	cfx_broker_set_txn_checker(br, txn_check, svc);
	rmq_renew_start(svc);
	return svc;
}

void rmq_service_free(struct rmq_service *svc)
{
	if (!svc)
		return;
	cfx_broker_set_txn_checker(svc->br, NULL, NULL);
	rmq_renew_stop(svc);
	while (svc->clients) {
		struct rmq_client *c = svc->clients;
		svc->clients = c->next;
		cfx_free(c->id);
		cfx_free(c->group);
		cfx_free(c);
	}
	pthread_mutex_destroy(&svc->clients_mu);
	cfx_free(svc);
}
