/*
 * ws.h - the WebSocket transport (RFC 6455, server side): a connection's
 * byte stream carried in WebSocket binary frames, stacked on TCP or TLS.
 *
 * A listener with cfx_listener_opts.ws set attaches it after accept (and
 * after TLS, which makes it wss). The transport first reads the HTTP/1.1
 * Upgrade request and answers it (101, or 400/404/426 and a close); then
 * its read() returns the payload of the client's binary frames and its
 * writev() sends the protocol's bytes as binary frames, so the protocol
 * above (MQTT) sees the same byte stream as on a plain socket. Framing,
 * ping/pong and the close handshake are wslay's (event API, no message
 * buffering). Design: docs/design/websocket.md.
 *
 * It does not do extensions (permessage-deflate), text frames or HTTP
 * keep-alive before the upgrade.
 */
#ifndef CFX_NET_WS_H
#define CFX_NET_WS_H

#include "base/buf.h"
#include "net/conn.h"

/* Bytes of the Upgrade request (request line and headers) at most. */
#define CFX_WS_HEADER_BYTES_MAX 8192
/* Payload of one client frame at most; larger frames close with 1009. */
#define CFX_WS_FRAME_BYTES_MAX (16u << 20)
/* Protocol bytes sent in one server frame at most. */
#define CFX_WS_OUT_FRAME_BYTES_MAX (64u << 10)

struct cfx_ws_opts {
	const char *path;	 /* request path to accept, e.g. "/mqtt"; NULL or "" = any */
	const char *subprotocol; /* must be offered in Sec-WebSocket-Protocol; NULL = none */
};

/* What a valid Upgrade request says; views point into the parsed bytes. */
struct cfx_ws_request {
	struct cfx_view path; /* request target without the query */
	struct cfx_view key;  /* Sec-WebSocket-Key, 24 base64 characters */
	int subprotocol_offered; /* the configured subprotocol was among those offered */
};

/*
 * Parses the HTTP/1.1 Upgrade request at the start of p[0..n) and checks
 * it against `o` (borrowed until return). Returns the bytes of the request
 * (> 0, up to and including the blank line), CFX_NEED_MORE when the blank
 * line is not there yet (and n < CFX_WS_HEADER_BYTES_MAX), or CFX_EPARSE
 * with *status (400, 404 or 426) and *why (static) set. Pure: no I/O.
 */
int cfx_ws_parse_request(const uint8_t *p, size_t n, const struct cfx_ws_opts *o,
			 struct cfx_ws_request *req, int *status, const char **why);
/* Writes Sec-WebSocket-Accept for `key` into out (28 characters and a NUL). */
void cfx_ws_accept_key(struct cfx_view key, char out[29]);
/* Appends the 101 answer to a valid request to `wr`. */
void cfx_ws_write_accept(struct cfx_writer *wr, const struct cfx_ws_request *req,
			 const struct cfx_ws_opts *o);
/* Appends the refusal (`status` from cfx_ws_parse_request, `why` as the body) to `wr`. */
void cfx_ws_write_refusal(struct cfx_writer *wr, int status, const char *why);

/*
 * Stacks the WebSocket transport on c's current one (TCP, TLS or any
 * other cfx_conn_ops), which it then drives and frees. `o` is borrowed for
 * the connection's lifetime (the listener's options live as long as the
 * server). Returns 0. @thread loop
 */
int cfx_ws_attach(const struct cfx_ws_opts *o, struct cfx_conn *c);
/* Whether the Upgrade handshake of a WebSocket connection is done. */
int cfx_ws_is_open(const struct cfx_conn *c);

#endif
