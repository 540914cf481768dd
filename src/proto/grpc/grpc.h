/*
 * grpc.h - a gRPC server over HTTP/2 (nghttp2) on the network layer.
 *
 * Knows HTTP/2 framing, gRPC message framing, metadata, deadlines, status
 * trailers and streaming; knows nothing of RocketMQ. A service registers
 * methods (path, kind, callbacks); each request stream becomes a call the
 * handlers answer with grpc_call_send and grpc_call_finish, right away or
 * later: work finishing on another thread posts back to the call's loop and
 * re-finds the call through a grpc_call_ref, which tells when the stream or
 * connection went away meanwhile.
 *
 * @thread loop for everything but grpc_call_ref_post.
 */
#ifndef CFX_PROTO_GRPC_GRPC_H
#define CFX_PROTO_GRPC_GRPC_H

#include "base/buf.h"
#include "net/conn.h"

/* gRPC status codes (the transport's, not RocketMQ's in-band codes). */
enum grpc_status {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_UNAUTHENTICATED = 16,
};

enum grpc_kind {
	GRPC_UNARY,	    /* one request, one response */
	GRPC_SERVER_STREAM, /* one request, many responses */
	GRPC_BIDI,	    /* many requests, many responses */
};

struct grpc_call;

struct grpc_method {
	const char *path; /* "/package.Service/Method" */
	enum grpc_kind kind;
	/*
	 * A complete request message arrived (`msg` is valid during the call).
	 * Unary and server-streaming methods get exactly one, after the client
	 * half-closed.
	 */
	void (*on_message)(struct grpc_call *call, const uint8_t *msg, size_t len);
	/* The client half-closed a bidi stream (optional). */
	void (*on_half_close)(struct grpc_call *call);
	/* The call ended for any reason: free call->data (optional). */
	void (*on_close)(struct grpc_call *call);
};

struct grpc_service {
	const struct grpc_method *methods;
	size_t nmethods;
	void *arg;		  /* available to handlers as grpc_call_service_arg */
	size_t message_bytes_max; /* largest request message accepted */
	/*
	 * Optional: asked once per call, before its first message reaches the
	 * method. Returns 0 to go on (after grpc_call_set_user, if the call
	 * signed in), or non-zero after answering and finishing the call itself.
	 */
	int (*admit)(void *arg, struct grpc_call *call);
};

/* The protocol to attach to a listener (cfx_listener_opts.proto_arg = the service). */
extern const struct cfx_conn_proto grpc_conn_proto;

/* Handler state: set and freed by the method's own callbacks. */
void *grpc_call_data(const struct grpc_call *call);
void grpc_call_set_data(struct grpc_call *call, void *data);
void *grpc_call_service_arg(const struct grpc_call *call);
const struct grpc_method *grpc_call_method(const struct grpc_call *call);

/* Who the call signed in as (grpc_service.admit); NULL = anonymous. */
const char *grpc_call_user(const struct grpc_call *call);
/* Sets it (copied). */
void grpc_call_set_user(struct grpc_call *call, const char *user, size_t len);
/* The client's "ip:port". */
const char *grpc_call_peer(const struct grpc_call *call);

/* Request metadata (lower-case name); NULL if absent. */
const char *grpc_call_header(const struct grpc_call *call, const char *name);
/* Monotonic deadline in ms from grpc-timeout, or 0 for none. */
int64_t grpc_call_deadline_ms(const struct grpc_call *call);
struct cfx_conn *grpc_call_conn(const struct grpc_call *call);
struct cfx_loop *grpc_call_loop(const struct grpc_call *call);

/* Queues one response message (headers go out first, once). */
void grpc_call_send(struct grpc_call *call, const void *msg, size_t len);
/* Ends the call with a status (trailers). Idempotent; later sends are ignored. */
void grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message);
int grpc_call_is_finished(const struct grpc_call *call);

/* A way back to a call from work done elsewhere. */
struct grpc_call_ref {
	struct cfx_conn_handle *h;
	int32_t stream_id;
	struct cfx_loop *loop;
};
/* Takes a reference (on the call's loop). */
void grpc_call_ref_init(struct grpc_call_ref *ref, struct grpc_call *call);
/* The call, or NULL if its stream or connection is gone. @thread loop */
struct grpc_call *grpc_call_ref_resolve(const struct grpc_call_ref *ref);
/* Drops the reference. @thread loop */
void grpc_call_ref_release(struct grpc_call_ref *ref);

/* Parses a grpc-timeout value ("100m", "5S"); returns ms or -1. */
int64_t grpc_parse_timeout_ms(const char *v);

#endif
