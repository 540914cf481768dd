/*
 * rmq_client.h - the RocketMQ 5 gRPC calls the conflux tool makes
 * (produce, consume, bench): a client identity and message ids as the 5.x
 * SDKs make them, routes, the Telemetry settings handshake, SendMessage,
 * ReceiveMessage and AckMessage, over the blocking, pipelining gRPC
 * client of src/proto/grpc/client.h.
 *
 * Each call exists in two forms: a blocking one (rmq_send, rmq_ack), and
 * pack / start / parse pieces for callers that keep many calls in flight
 * on one connection and dispatch grpc_client events themselves (bench).
 *
 * One struct rmq_cl = one connection; use it from one thread at a time.
 * Errors: functions returning int give 0 on success and -1 with `e`
 * filled; RocketMQ refusals carry their Status code, transport failures
 * code 0 and a gRPC status or a connection error.
 */
#ifndef CFX_CMD_CONFLUX_RMQ_CLIENT_H
#define CFX_CMD_CONFLUX_RMQ_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "apache/rocketmq/v2/service.pb-c.h"
#include "cmd/conflux/cli.h"
#include "proto/grpc/client.h"

/* Short names of the generated types, codes and functions. */
#define RPB(t)	      Apache__Rocketmq__V2__##t
#define RPBF(msg, op) apache__rocketmq__v2__##msg##__##op
#define RCODE(c)      APACHE__ROCKETMQ__V2__CODE__##c
#define RCONTENT(c)   APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_RESPONSE__CONTENT_##c

#define RMQ_ID_LEN  34 /* hex characters of a v1 message id */
#define RMQ_PATH(m) "/apache.rocketmq.v2.MessagingService/" m

struct rmq_cl {
	struct grpc_client *gc;
	char addr[CLI_ADDR_MAX]; /* host:port dialled */
	char host[CLI_ADDR_MAX];
	int port;
	char client_id[320]; /* x-mq-client-id */
	int64_t timeout_ms;  /* unary calls' deadline */
	int32_t telemetry;   /* the open Telemetry stream, 0 = none */
	char user[CLI_USER_MAX + 1];	     /* signs every call when set (rmq_set_credentials) */
	char secret[CLI_PASSWORD_MAX + 1];
	int64_t signed_ms;		     /* when the signature headers were made */
};

/*
 * Signs every later call as `user` with its password as the secret key
 * (MQv2-HMAC-SHA1 over x-mq-date-time, as the RocketMQ clients do;
 * docs/security.md). An empty user signs nothing.
 */
void rmq_set_credentials(struct rmq_cl *rc, const char *user, const char *password);
/* Refreshes the signature headers when they are older than a minute (called before each call). */
void rmq_sign(struct rmq_cl *rc);

struct rmq_err {
	int code;	 /* RocketMQ Status.code; 0 = the call itself failed */
	int grpc_status; /* gRPC status when code is 0 (-1: reset or no answer) */
	char msg[512];
};

/* "TOPIC_NOT_FOUND (40402): topic not found", or the transport failure. */
void rmq_err_format(const struct rmq_err *e, char *buf, size_t len);
/* The name of a RocketMQ status code ("TOPIC_NOT_FOUND"), "UNKNOWN" if not one. */
const char *rmq_code_name(int code);

/*
 * Connects to `addr` (host:port of the gRPC API) with a fresh client id.
 * Returns 0 with *out set, or -1 with the reason (connection refused, ...).
 */
int rmq_connect(const char *addr, int64_t timeout_ms, struct rmq_cl **out, struct rmq_err *e);
/* Ends the Telemetry stream and closes the connection (NULL is fine). */
void rmq_close(struct rmq_cl *rc);
/* Says goodbye (NotifyClientTermination), best effort, bounded by the timeout. */
void rmq_goodbye(struct rmq_cl *rc, const char *group);

/* Writes a new v1 message id: 34 upper-case hex characters and a NUL. Thread-safe. */
void rmq_new_message_id(char out[RMQ_ID_LEN + 1]);

/* What a route says about a topic. */
struct rmq_route {
	char broker[128]; /* broker name of the first queue */
	uint32_t queues;
	uint32_t types; /* accepted message types: bit (1 << RPB(MessageType)) */
};

int rmq_query_route(struct rmq_cl *rc, const char *topic, struct rmq_route *rt, struct rmq_err *e);

/*
 * The Telemetry handshake, which real clients make before anything else:
 * opens the stream, sends the settings, waits for the server's answer.
 * A consumer's settings register its subscription (a new group starts at
 * the end of every queue). *max_body / *fifo receive what the server
 * says (may be NULL).
 */
int rmq_settings_producer(struct rmq_cl *rc, const char *topic, int64_t *max_body,
			  struct rmq_err *e);
int rmq_settings_consumer(struct rmq_cl *rc, const char *group, const char *topic,
			  const char *tag_expr, int64_t wait_ms, int *fifo, struct rmq_err *e);

/* ------------------------------------------------------------------------
 * SendMessage
 * ------------------------------------------------------------------------ */

struct rmq_prop {
	const char *key, *value;
};

struct rmq_msg_out {
	const void *body;
	size_t len;
	const char *tag; /* NULL = none */
	const char *const *keys;
	size_t nkeys;
	const struct rmq_prop *props;
	size_t nprops;
	const char *group;	 /* message group (a FIFO message), NULL = none */
	int64_t born_ms;	 /* 0 = now */
	char id[RMQ_ID_LEN + 1]; /* set by rmq_pack_send */
};

struct rmq_send_entry {
	int code; /* RocketMQ status of this message */
	char why[256];
	char msg_id[RMQ_ID_LEN + 30];
	int64_t offset;
};

/*
 * Packs a SendMessageRequest of `n` messages to `topic`, giving each a new
 * message id (m[i].id) and born time. Returns a new buffer (cfx_free) of
 * *len bytes.
 */
uint8_t *rmq_pack_send(const char *topic, struct rmq_msg_out *m, size_t n, size_t *len);
/*
 * Reads a SendMessageResponse into up to `n` entries. Returns the number
 * of entries, or -1 (e filled) when the whole request was refused or the
 * answer is malformed. A per-message refusal is in its entry's code.
 */
int rmq_parse_send(const uint8_t *p, size_t len, struct rmq_send_entry *ent, size_t n,
		   struct rmq_err *e);
/*
 * Sends and waits. Returns 0 when every message was stored; -1 with `e`
 * set otherwise (per-message results stay in `ent`, whose codes tell which).
 */
int rmq_send(struct rmq_cl *rc, const char *topic, struct rmq_msg_out *m, size_t n,
	     struct rmq_send_entry *ent, struct rmq_err *e);

/* ------------------------------------------------------------------------
 * ReceiveMessage and AckMessage
 * ------------------------------------------------------------------------ */

struct rmq_recv_opts {
	const char *group, *topic;
	const char *tag_expr; /* "a || b", NULL = "*" */
	const char *broker;   /* broker name from the route */
	int32_t batch;	      /* at most this many messages (<= 32) */
	int64_t invisible_ms;
	int64_t wait_ms; /* long polling */
};

/*
 * Starts a ReceiveMessage call; its deadline leaves the server the whole
 * long poll plus the unary timeout. Returns the stream id or a negative
 * cfx_err. Its events are: messages (rmq_parse_receive each), then END.
 */
int32_t rmq_receive_start(struct rmq_cl *rc, const struct rmq_recv_opts *o);
/* Unpacks one response of a receive stream (free with RPBF(receive_message_response,
 * free_unpacked)). */
RPB(ReceiveMessageResponse) * rmq_parse_receive(const uint8_t *p, size_t len);

struct rmq_ack_item {
	const char *msg_id, *handle;
};

int32_t rmq_ack_start(struct rmq_cl *rc, const char *group, const char *topic,
		      const struct rmq_ack_item *it, size_t n);
/* 0 when every entry was acknowledged; -1 with the first refusal in `e`. */
int rmq_parse_ack(const uint8_t *p, size_t len, struct rmq_err *e);
int rmq_ack(struct rmq_cl *rc, const char *group, const char *topic, const struct rmq_ack_item *it,
	    size_t n, struct rmq_err *e);

/*
 * Waits for the end of call `id` and returns its last response message in
 * *resp (cfx_free; NULL if none). Events of other calls that arrive
 * meanwhile are discarded. Returns 0 when the call ended with gRPC OK.
 */
int rmq_wait(struct rmq_cl *rc, int32_t id, int64_t timeout_ms, uint8_t **resp, size_t *len,
	     struct rmq_err *e);

/* Fills `e` for a connection failure (grpc_client_poll/start error `rc`). */
void rmq_err_transport(struct rmq_cl *rc, int err, struct rmq_err *e);
/* Fills `e` for a call that ended with a non-OK gRPC status. */
void rmq_err_grpc(int status, const char *message, struct rmq_err *e);

#endif
