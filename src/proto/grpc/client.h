/*
 * client.h - a small gRPC client over HTTP/2 (nghttp2), for the conflux
 * CLI, benchmarks and tests. One connection, blocking I/O driven by
 * grpc_client_poll; many calls may be in flight (pipelining).
 */
#ifndef CFX_PROTO_GRPC_CLIENT_H
#define CFX_PROTO_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct grpc_client;

enum grpc_client_event_type {
	GRPC_EV_MESSAGE = 1, /* a response message of a call */
	GRPC_EV_END = 2,     /* a call ended: status and message */
};

struct grpc_client_event {
	enum grpc_client_event_type type;
	int32_t stream_id;
	uint8_t *data;	/* MESSAGE: owned by the caller (free with cfx_free) */
	size_t len;
	int status;	/* END: grpc-status (-1 if the stream was reset) */
	char *message;	/* END: grpc-message, owned by the caller, may be NULL */
};

/* Connects with TCP (h2c prior knowledge). Returns 0 or a cfx_err. */
int grpc_client_connect(const char *host, int port, int64_t timeout_ms,
			struct grpc_client **out);
void grpc_client_close(struct grpc_client *cl);

/* Metadata sent with every call from now on (lower-case name). */
void grpc_client_set_header(struct grpc_client *cl, const char *name, const char *value);

/*
 * Starts a call with one request message (`end` half-closes the request
 * side). Returns the stream id (> 0) or a negative cfx_err.
 */
int32_t grpc_client_start(struct grpc_client *cl, const char *path, const void *msg, size_t len,
			  int end, int64_t timeout_ms);
/* Sends another request message on a streaming call. */
int grpc_client_send(struct grpc_client *cl, int32_t stream_id, const void *msg, size_t len,
		     int end);
/*
 * Waits up to `timeout_ms` for the next event. Returns 1 with `ev` filled,
 * 0 on timeout, or a negative cfx_err if the connection failed.
 */
int grpc_client_poll(struct grpc_client *cl, int64_t timeout_ms, struct grpc_client_event *ev);

/* One unary call, waiting for its end. *resp is owned by the caller. */
int grpc_client_unary(struct grpc_client *cl, const char *path, const void *req, size_t len,
		      int64_t timeout_ms, uint8_t **resp, size_t *resp_len, int *status,
		      char **message);

/* Calls in flight. */
uint32_t grpc_client_inflight(const struct grpc_client *cl);

#endif
