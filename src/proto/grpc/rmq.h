/*
 * rmq.h - the RocketMQ 5 gRPC front end (package apache.rocketmq.v2,
 * service MessagingService): shared by its handler files only.
 *
 * It speaks the wire format (protobuf-c messages, RocketMQ status codes in
 * every response) and calls the broker core; it never touches the store's
 * files. Business errors are answered in-band (gRPC OK, Status.code);
 * gRPC status codes are for transport problems only.
 */
#ifndef CFX_PROTO_GRPC_RMQ_H
#define CFX_PROTO_GRPC_RMQ_H

#include <pthread.h>

#include "apache/rocketmq/v2/service.pb-c.h"
#include "broker/auth.h"
#include "broker/broker.h"
#include "proto/grpc/grpc.h"

/* Short names for the generated types and functions. */
#define PB(t) Apache__Rocketmq__V2__##t
#define PBF(msg, op) apache__rocketmq__v2__##msg##__##op
#define RMQ_CODE(c) APACHE__ROCKETMQ__V2__CODE__##c

struct rmq_opts {
	const char *broker_name;   /* the one broker in every route */
	const char *advertised;	   /* "host:port" clients should use; NULL = the address they dialled */
	enum cfx_durability durability;
	int64_t max_body_bytes;
	int64_t long_poll_max_ms;  /* ReceiveMessage waits at most this long */
	int64_t invisible_min_ms;  /* smallest invisible duration a receive may ask for */
	int64_t auto_renew_invisible_ms; /* invisible duration of auto-renewing consumers */
	struct cfx_auth *auth;	   /* users and policies (borrowed); NULL = none */
};

struct rmq_client;

struct rmq_service {
	struct rmq_opts o;
	struct cfx_broker *br;
	struct grpc_service grpc;
	pthread_mutex_t clients_mu;
	struct rmq_client *clients;
	uint32_t nclients;
	struct rmq_producer *producers; /* Telemetry streams of producers */
	struct rmq_renewer *renewer;	/* rmq_renew.c */
	uint64_t next_producer_id;
	uint32_t next_check;
};

/* Creates the service; `br` is borrowed. The grpc_service to listen with is &svc->grpc. */
struct rmq_service *rmq_service_new(struct cfx_broker *br, const struct rmq_opts *o);
void rmq_service_free(struct rmq_service *svc);
void rmq_opts_default(struct rmq_opts *o);

/* ------------------------------------------------------------------------
 * Shared by the handler files (rmq_*.c)
 * ------------------------------------------------------------------------ */

static inline struct rmq_service *rmq_svc(struct grpc_call *call)
{
	return grpc_call_service_arg(call);
}

/* Packs `msg` and sends it as the call's response, then finishes with gRPC OK. */
void rmq_reply(struct grpc_call *call, const ProtobufCMessage *msg);
/* Maps a broker error to a RocketMQ code and a reason. */
int rmq_code_from_cfx(int err, const char **why);
/* The x-mq-client-id of the call, or NULL (then the RPC answers CLIENT_ID_REQUIRED). */
const char *rmq_client_id(struct grpc_call *call);
/* A stored message as a RocketMQ Message (rmq_receive.c). Strings the
 * message points to are owned by the struct until rmq_msg_free; the body,
 * topic and broker name are borrowed. Callers may set more fields (receipt
 * handle, attempt, invisible duration via `inv`). */
struct rmq_msg {
	PB(Message) m;
	PB(Resource) topic;
	PB(SystemProperties) sp;
	PB(Digest) digest;
	Google__Protobuf__Timestamp born, stored, deliver;
	Google__Protobuf__Duration inv;
	PB(Message__UserPropertiesEntry) *ents, **entp;
	size_t nprops;
	char md5[33], *keybuf, **keys, *strs[8];
	size_t nstr;
};

void rmq_msg_fill(struct rmq_msg *b, struct rmq_service *svc, const char *topic,
		  const struct cfx_msg_view *v, uint32_t queue);
void rmq_msg_free(struct rmq_msg *b);

/* Has client `id` been heard from (Heartbeat, Telemetry settings) within max_silence_ms? */
int rmq_client_alive(struct rmq_service *svc, const char *id, int64_t max_silence_ms);

/* rmq_renew.c: invisible-time renewal of messages delivered to auto-renewing receives. */
void rmq_renew_start(struct rmq_service *svc);
void rmq_renew_stop(struct rmq_service *svc);
void rmq_renew_add(struct rmq_service *svc, const char *group, const char *topic,
		   const char *handle, const char *client, int64_t invisible_ms);
/* The message of `handle` was acknowledged, changed or dead-lettered: stop renewing it. */
void rmq_renew_remove(struct rmq_service *svc, const char *handle);
size_t rmq_renew_count(struct rmq_service *svc);

/* A Resource's name as a view (namespace ignored). */
struct cfx_view rmq_resource(const PB(Resource) * r);

/* rmq_access.c: signatures and permissions (docs/security.md) */
int rmq_admit(void *arg, struct grpc_call *call);
/* 0 if allowed; else the call is answered FORBIDDEN (and counted): return. */
int rmq_authorize(struct grpc_call *call, enum cfx_auth_resource res, struct cfx_view name,
		  unsigned action);
/* The same question, without answering or counting. */
bool rmq_may(struct grpc_call *call, enum cfx_auth_resource res, struct cfx_view name,
	     unsigned action);
/* A response carrying only its Status (field 1 of every MessagingService response). */
void rmq_reply_status_only(struct grpc_call *call, int code, const char *why);

/* Handlers */
void rmq_send_message(struct grpc_call *call, const uint8_t *msg, size_t len);
void rmq_receive_message(struct grpc_call *call, const uint8_t *msg, size_t len);
void rmq_receive_close(struct grpc_call *call);
void rmq_ack_message(struct grpc_call *call, const uint8_t *msg, size_t len);
void rmq_change_invisible(struct grpc_call *call, const uint8_t *msg, size_t len);
void rmq_forward_dlq(struct grpc_call *call, const uint8_t *msg, size_t len);

/* Fills a MessageQueue's broker (endpoints from the request or the advertised address). */
struct rmq_route_ctx;

#endif
