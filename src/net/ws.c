/*
 * ws.c - the WebSocket transport: the Upgrade handshake (a small bounded
 * parser of our own), then frames through wslay's event API.
 *
 * It does not interpret the protocol's bytes, and it does not buffer a
 * whole message: wslay runs without message buffering, and the payload of
 * each binary frame chunk is handed up as it is unmasked. Design and the
 * reasons behind it: docs/design/websocket.md.
 *
 * States of a connection:
 *
 *   HANDSHAKE --valid request (ws_read)--> OPEN --close frame sent--> (closes)
 *       |                                   |
 *       +--bad request: refusal written-----+--protocol error: close frame
 *                     |                               |  written (1002, 1003, 1009)
 *                     v                               v
 *                   FAILED  <-------------------------+
 *
 * HANDSHAKE: `hs_in` holds the request bytes so far (below
 *   CFX_WS_HEADER_BYTES_MAX plus one read); nothing has been sent; bytes
 *   the protocol writes wait in `early`.
 * OPEN: `hs_in` is freed; `hs_out` holds what is left of the 101 answer,
 *   which goes out before any frame; wslay's queue holds at most one data
 *   frame (writev takes new bytes only once the queue is empty), so the
 *   connection's back-pressure still sees every byte not yet on the wire.
 * FAILED: read and writev report errors; the connection is closing.
 *
 * In-place decoding: ws_read reads the inner transport into the caller's
 * buffer and writes the unwrapped payload back into the same buffer. Each
 * payload byte comes from a distinct input byte read in the same call (at
 * the end of a wslay_event_recv, wslay's input buffer holds at most an
 * incomplete frame header), so the output never overtakes the input, and
 * nothing stays buffered in this layer that the socket would not announce.
 */
#include "net/ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "base/err.h"
#include "base/log.h"

/* Protocol bytes written before the handshake finished, at most (none in MQTT). */
#define EARLY_BYTES_MAX (64u << 10)
/* RFC 6455 section 1.3: appended to the client's key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24

/* Close status codes (RFC 6455 section 7.4.1). */
#define WS_CLOSE_UNSUPPORTED_DATA 1003

/* ------------------------------------------------------------------------
 * The Upgrade request
 * ------------------------------------------------------------------------ */

static int is_tchar(uint8_t ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return 1;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int is_b64(uint8_t ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/';
}

static struct cfx_view trim_ows(const uint8_t *p, size_t n)
{
	while (n && (p[0] == ' ' || p[0] == '\t')) {
		p++;
		n--;
	}
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	return (struct cfx_view){ p, n };
}

static int view_eq_nocase(struct cfx_view v, const char *s)
{
	size_t n = strlen(s);
	return v.len == n && strncasecmp((const char *)v.p, s, n) == 0;
}

/* Whether the comma-separated list `v` holds `tok` (case-insensitive or not). */
static int list_has(struct cfx_view v, const char *tok, int nocase)
{
	size_t i = 0;

	while (i <= v.len) {
		size_t j = i;
		while (j < v.len && v.p[j] != ',')
			j++;
		struct cfx_view item = trim_ows(v.p + i, j - i);
		if (nocase ? view_eq_nocase(item, tok) : cfx_view_eq_str(item, tok))
			return 1;
		i = j + 1;
	}
	return 0;
}

/* Offset of the first CRLF in p[from..n), or n. */
static size_t find_crlf(const uint8_t *p, size_t from, size_t n)
{
	for (size_t i = from; i + 1 < n; i++)
		if (p[i] == '\r' && p[i + 1] == '\n')
			return i;
	return n;
}

static int refuse(int *status, const char **why, int st, const char *reason)
{
	*status = st;
	*why = reason;
	return CFX_EPARSE;
}

int cfx_ws_parse_request(const uint8_t *p, size_t n, const struct cfx_ws_opts *o,
			 struct cfx_ws_request *req, int *status, const char **why)
{
	size_t lim = CFX_MIN(n, (size_t)CFX_WS_HEADER_BYTES_MAX), head = 0, pos, le;
	int found = 0, host = 0, upgrade = 0, connection = 0, version = 0, version_ok = 0;
	int key_seen = 0;

	memset(req, 0, sizeof *req);
	for (size_t i = 0; i + 3 < lim; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
			head = i + 4;
			found = 1;
			break;
		}
	}
	if (!found) {
		if (n >= CFX_WS_HEADER_BYTES_MAX)
			return refuse(status, why, 400, "request headers too large");
		return CFX_NEED_MORE;
	}

	/* Request line: GET SP origin-form SP HTTP/1.1 */
	le = find_crlf(p, 0, head);
	if (le < 4 || memcmp(p, "GET ", 4) != 0)
		return refuse(status, why, 400, "method is not GET");
	pos = 4;
	size_t t0 = pos;
	while (pos < le && p[pos] > ' ' && p[pos] < 0x7f)
		pos++;
	if (pos == t0 || p[t0] != '/' || pos >= le || p[pos] != ' ')
		return refuse(status, why, 400, "bad request target");
	req->path.p = p + t0;
	req->path.len = pos - t0;
	for (size_t i = 0; i < req->path.len; i++) {
		if (req->path.p[i] == '?') {
			req->path.len = i;
			break;
		}
	}
	pos++;
	if (le - pos != 8 || memcmp(p + pos, "HTTP/1.1", 8) != 0)
		return refuse(status, why, 400, "not HTTP/1.1");

	/* Header lines up to the blank one. */
	for (pos = le + 2;; pos = le + 2) {
		struct cfx_view name, value;
		const uint8_t *colon;

		le = find_crlf(p, pos, head);
		CFX_ASSERT(le < head);
		if (le == pos)
			break; /* the blank line */
		if (p[pos] == ' ' || p[pos] == '\t')
			return refuse(status, why, 400, "folded header line");
		colon = memchr(p + pos, ':', le - pos);
		if (!colon || colon == p + pos)
			return refuse(status, why, 400, "malformed header line");
		name.p = p + pos;
		name.len = (size_t)(colon - name.p);
		for (size_t i = 0; i < name.len; i++)
			if (!is_tchar(name.p[i]))
				return refuse(status, why, 400, "bad header name");
		for (const uint8_t *q = colon + 1; q < p + le; q++)
			if ((*q < ' ' && *q != '\t') || *q == 0x7f)
				return refuse(status, why, 400, "control character in a header");
		value = trim_ows(colon + 1, (size_t)(p + le - colon - 1));

		if (view_eq_nocase(name, "Host")) {
			host++;
		} else if (view_eq_nocase(name, "Upgrade")) {
			upgrade |= list_has(value, "websocket", 1);
		} else if (view_eq_nocase(name, "Connection")) {
			connection |= list_has(value, "upgrade", 1);
		} else if (view_eq_nocase(name, "Sec-WebSocket-Version")) {
			version_ok = (version ? version_ok : 1) && cfx_view_eq_str(value, "13");
			version = 1;
		} else if (view_eq_nocase(name, "Sec-WebSocket-Key")) {
			if (key_seen++)
				return refuse(status, why, 400, "more than one Sec-WebSocket-Key");
			req->key = value;
		} else if (view_eq_nocase(name, "Sec-WebSocket-Protocol")) {
			if (o->subprotocol && *o->subprotocol)
				req->subprotocol_offered |= list_has(value, o->subprotocol, 0);
		} else if (view_eq_nocase(name, "Content-Length")) {
			if (!cfx_view_eq_str(value, "0"))
				return refuse(status, why, 400, "an Upgrade request has no body");
		} else if (view_eq_nocase(name, "Transfer-Encoding")) {
			return refuse(status, why, 400, "an Upgrade request has no body");
		}
	}

	if (!upgrade || !connection)
		return refuse(status, why, 426, "not a WebSocket upgrade (Upgrade: websocket, "
						"Connection: Upgrade)");
	if (!version || !version_ok)
		return refuse(status, why, 426, "Sec-WebSocket-Version must be 13");
	if (host != 1)
		return refuse(status, why, 400, "exactly one Host header is required");
	if (!key_seen)
		return refuse(status, why, 400, "Sec-WebSocket-Key is missing");
	if (req->key.len != WS_KEY_LEN || req->key.p[22] != '=' || req->key.p[23] != '=')
		return refuse(status, why, 400, "Sec-WebSocket-Key is not 16 bytes in base64");
	for (size_t i = 0; i < 22; i++)
		if (!is_b64(req->key.p[i]))
			return refuse(status, why, 400, "Sec-WebSocket-Key is not 16 bytes in base64");
	if (o->path && *o->path && !cfx_view_eq_str(req->path, o->path))
		return refuse(status, why, 404, "no WebSocket service at this path");
	if (o->subprotocol && *o->subprotocol && !req->subprotocol_offered)
		return refuse(status, why, 400, "the required subprotocol is not offered in "
						"Sec-WebSocket-Protocol");
	return (int)head;
}

void cfx_ws_accept_key(struct cfx_view key, char out[29])
{
	uint8_t buf[WS_KEY_LEN + sizeof WS_GUID], md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	int rc;

	CFX_ASSERT(key.len == WS_KEY_LEN);
	memcpy(buf, key.p, WS_KEY_LEN);
	memcpy(buf + WS_KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
	rc = EVP_Digest(buf, WS_KEY_LEN + sizeof WS_GUID - 1, md, &md_len, EVP_sha1(), NULL);
	CFX_ASSERT(rc == 1 && md_len == 20);
	rc = EVP_EncodeBlock((unsigned char *)out, md, 20);
	CFX_ASSERT(rc == 28);
}

static void write_str(struct cfx_writer *wr, const char *s)
{
	cfx_write_bytes(wr, s, strlen(s));
}

void cfx_ws_write_accept(struct cfx_writer *wr, const struct cfx_ws_request *req,
			 const struct cfx_ws_opts *o)
{
	char accept[29];

	cfx_ws_accept_key(req->key, accept);
	write_str(wr, "HTTP/1.1 101 Switching Protocols\r\n"
		      "Upgrade: websocket\r\n"
		      "Connection: Upgrade\r\n"
		      "Sec-WebSocket-Accept: ");
	write_str(wr, accept);
	write_str(wr, "\r\n");
	if (o->subprotocol && *o->subprotocol && req->subprotocol_offered) {
		write_str(wr, "Sec-WebSocket-Protocol: ");
		write_str(wr, o->subprotocol);
		write_str(wr, "\r\n");
	}
	write_str(wr, "\r\n");
}

void cfx_ws_write_refusal(struct cfx_writer *wr, int status, const char *why)
{
	char head[256];
	const char *text = status == 404 ? "Not Found"
			   : status == 426 ? "Upgrade Required"
					   : "Bad Request";
	int k;

	k = snprintf(head, sizeof head,
		     "HTTP/1.1 %d %s\r\n"
		     "%s"
		     "Connection: close\r\n"
		     "Content-Type: text/plain\r\n"
		     "Content-Length: %zu\r\n\r\n",
		     status, text,
		     status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : "",
		     strlen(why) + 1);
	CFX_ASSERT(k > 0 && (size_t)k < sizeof head);
	cfx_write_bytes(wr, head, (size_t)k);
	write_str(wr, why);
	write_str(wr, "\n");
}

/* ------------------------------------------------------------------------
 * The transport
 * ------------------------------------------------------------------------ */

enum ws_state { WS_HANDSHAKE, WS_OPEN, WS_FAILED };

struct ws_conn {
	struct cfx_conn *c;
	const struct cfx_ws_opts *o;
	const struct cfx_conn_ops *inner_ops; /* the transport underneath */
	void *inner;			      /* its c->transport */
	enum ws_state state;
	struct cfx_writer hs_in;  /* HANDSHAKE: request bytes so far */
	struct cfx_writer hs_out; /* answer to the request, not yet written */
	size_t hs_out_off;	  /* bytes of hs_out written */
	struct cfx_writer early;  /* HANDSHAKE: protocol bytes to send once open */
	wslay_event_context_ptr ev; /* OPEN */

	/* One ws_read: wslay reads in[in_off..in_len) and its payload goes to out. */
	const uint8_t *in;
	size_t in_len, in_off;
	uint8_t *out;
	size_t out_len;
	int frame_is_data;	 /* the frame being received is binary or a continuation */
	int refused;		 /* a frame was refused: a close is queued */
	int eof;		 /* the peer's close arrived: the next read reports the end */
	ssize_t inner_err;	 /* the last failure of the inner transport */
};

static const struct cfx_conn_ops ws_ops;

/*
 * Calls into the transport underneath see c as it was before the attach:
 * its ops and transport fields are swapped for the duration of the call.
 */
struct inner_saved {
	const struct cfx_conn_ops *ops;
	void *transport;
};

static struct inner_saved inner_enter(struct ws_conn *ws)
{
	struct inner_saved sv = { ws->c->ops, ws->c->transport };
	ws->c->ops = ws->inner_ops;
	ws->c->transport = ws->inner;
	return sv;
}

static void inner_leave(struct ws_conn *ws, struct inner_saved sv)
{
	ws->inner = ws->c->transport;
	ws->c->ops = sv.ops;
	ws->c->transport = sv.transport;
}

static ssize_t inner_read(struct ws_conn *ws, void *buf, size_t n)
{
	struct inner_saved sv = inner_enter(ws);
	ssize_t r = ws->inner_ops->read(ws->c, buf, n);
	inner_leave(ws, sv);
	return r;
}

static ssize_t inner_write(struct ws_conn *ws, const void *p, size_t n)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };
	struct inner_saved sv = inner_enter(ws);
	ssize_t w = ws->inner_ops->writev(ws->c, &iov, 1);
	inner_leave(ws, sv);
	return w;
}

static int inner_pending(struct ws_conn *ws)
{
	struct inner_saved sv = inner_enter(ws);
	int r = ws->inner_ops->pending(ws->c);
	inner_leave(ws, sv);
	return r;
}

/* wslay's input: what the current ws_read has not handed it yet. */
static ssize_t ev_recv(wslay_event_context_ptr ev, uint8_t *buf, size_t len, int flags,
		       void *user)
{
	struct ws_conn *ws = user;
	size_t k = CFX_MIN(len, ws->in_len - ws->in_off);

	CFX_UNUSED(flags);
	if (k == 0) {
		wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	memcpy(buf, ws->in + ws->in_off, k);
	ws->in_off += k;
	return (ssize_t)k;
}

static ssize_t ev_send(wslay_event_context_ptr ev, const uint8_t *data, size_t len, int flags,
		       void *user)
{
	struct ws_conn *ws = user;
	ssize_t w = inner_write(ws, data, len);

	CFX_UNUSED(flags);
	if (w >= 0)
		return w;
	if (w == -EAGAIN) {
		wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
	} else {
		ws->inner_err = w;
		wslay_event_set_error(ev, WSLAY_ERR_CALLBACK_FAILURE);
	}
	return -1;
}

static void ev_frame_start(wslay_event_context_ptr ev,
			   const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
	struct ws_conn *ws = user;

	ws->frame_is_data = arg->opcode == WSLAY_BINARY_FRAME ||
			    arg->opcode == WSLAY_CONTINUATION_FRAME;
	if (arg->opcode == WSLAY_TEXT_FRAME && !ws->refused) {
		/* MQTT section 6.0: the stream travels in binary frames only. */
		ws->refused = 1;
		wslay_event_queue_close(ev, WS_CLOSE_UNSUPPORTED_DATA,
					(const uint8_t *)"binary frames only", 18);
	}
}

static void ev_frame_chunk(wslay_event_context_ptr ev,
			   const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user)
{
	struct ws_conn *ws = user;

	CFX_UNUSED(ev);
	if (!ws->frame_is_data || ws->refused || arg->data_length == 0)
		return;
	/* The in-place invariant (file header): output stays behind the input. */
	CFX_ASSERT(ws->out_len + arg->data_length <= ws->in_off);
	memmove(ws->out + ws->out_len, arg->data, arg->data_length);
	ws->out_len += arg->data_length;
}

static const struct wslay_event_callbacks ev_callbacks = {
	.recv_callback = ev_recv,
	.send_callback = ev_send,
	.on_frame_recv_start_callback = ev_frame_start,
	.on_frame_recv_chunk_callback = ev_frame_chunk,
};

/*
 * Sends what waits: the rest of the handshake answer, then wslay's queue.
 * Returns 0 when nothing is left, -EAGAIN when the inner transport is full,
 * or a negative errno.
 */
static ssize_t flush_out(struct ws_conn *ws)
{
	while (ws->hs_out_off < ws->hs_out.len) {
		ssize_t w = inner_write(ws, ws->hs_out.p + ws->hs_out_off,
					ws->hs_out.len - ws->hs_out_off);
		if (w < 0)
			return w;
		ws->hs_out_off += (size_t)w;
	}
	if (ws->hs_out.p) {
		cfx_writer_free(&ws->hs_out);
		ws->hs_out_off = 0;
	}
	if (ws->state != WS_OPEN)
		return 0;
	if (wslay_event_want_write(ws->ev)) {
		if (wslay_event_send(ws->ev) != 0)
			return ws->inner_err ? ws->inner_err : -EPIPE;
		if (wslay_event_want_write(ws->ev))
			return -EAGAIN;
	}
	return 0;
}

/* Queues one binary frame with the first protocol bytes of iov (at most a frame's worth). */
static ssize_t queue_frame(struct ws_conn *ws, const struct iovec *iov, int n)
{
	size_t total = 0;
	struct wslay_event_msg msg = { .opcode = WSLAY_BINARY_FRAME };
	uint8_t *gather = NULL;
	int rc;

	for (int i = 0; i < n && total < CFX_WS_OUT_FRAME_BYTES_MAX; i++)
		total += CFX_MIN(iov[i].iov_len, CFX_WS_OUT_FRAME_BYTES_MAX - total);
	if (total == 0)
		return 0;
	if (iov[0].iov_len >= total) {
		msg.msg = iov[0].iov_base;
	} else {
		size_t off = 0;
		gather = cfx_malloc(total);
		for (int i = 0; off < total; i++) {
			size_t k = CFX_MIN(iov[i].iov_len, total - off);
			memcpy(gather + off, iov[i].iov_base, k);
			off += k;
		}
		msg.msg = gather;
	}
	msg.msg_length = total;
	rc = wslay_event_queue_msg(ws->ev, &msg); /* copies the payload */
	cfx_free(gather);
	return rc ? -EPIPE : (ssize_t)total;
}

/*
 * Runs wslay over in[0..n) and writes the payload back into in (see the
 * file header). Returns the payload bytes, -EAGAIN for none, 0 once the
 * peer's close arrived with no payload before it, or -EPROTO.
 */
static ssize_t decode_in_place(struct ws_conn *ws, uint8_t *buf, size_t n)
{
	int rc;

	ws->in = buf;
	ws->in_len = n;
	ws->in_off = 0;
	ws->out = buf;
	ws->out_len = 0;
	rc = wslay_event_recv(ws->ev);
	ws->in = ws->out = NULL;
	if (rc == 0 && !ws->refused && wslay_event_get_read_enabled(ws->ev)) {
		if (wslay_event_want_write(ws->ev))
			flush_out(ws); /* a pong: errors show on the next write */
		return ws->out_len ? (ssize_t)ws->out_len : -EAGAIN;
	}
	/* A close frame arrived, or wslay queued one for a protocol error: it
	 * goes out now, best effort, as the connection ends. */
	flush_out(ws);
	if (wslay_event_get_close_received(ws->ev) && !ws->refused && rc == 0) {
		ws->eof = 1;
		return ws->out_len ? (ssize_t)ws->out_len : 0;
	}
	ws->state = WS_FAILED;
	cfx_log_debug(CFX_LOGC_NET, "ws: %s: frame refused (status %u)", ws->c->peer,
		      (unsigned)wslay_event_get_status_code_sent(ws->ev));
	return -EPROTO;
}

static ssize_t handshake_read(struct ws_conn *ws, uint8_t *buf, size_t n)
{
	struct cfx_ws_request req;
	const char *why = NULL;
	int status = 0, rc, init;
	ssize_t r = inner_read(ws, buf, n);
	size_t rest;

	if (r <= 0)
		return r;
	cfx_write_bytes(&ws->hs_in, buf, (size_t)r);
	rc = cfx_ws_parse_request(ws->hs_in.p, ws->hs_in.len, ws->o, &req, &status, &why);
	if (rc == CFX_NEED_MORE)
		return -EAGAIN;
	if (rc < 0) {
		cfx_log_ratelimited(CFX_LOG_WARN, "ws: %s: refused a WebSocket upgrade from %s: %d %s",
				    ws->c->listener ? cfx_listener_name(ws->c->listener) : "ws",
				    ws->c->peer, status, why);
		cfx_ws_write_refusal(&ws->hs_out, status, why);
		ws->state = WS_FAILED;
		flush_out(ws); /* best effort: the connection closes now */
		return -EPROTO;
	}
	cfx_ws_write_accept(&ws->hs_out, &req, ws->o);
	init = wslay_event_context_server_init(&ws->ev, &ev_callbacks, ws);
	CFX_ASSERT(init == 0); /* fails only when out of memory */
	wslay_event_config_set_no_buffering(ws->ev, 1);
	wslay_event_config_set_max_recv_msg_length(ws->ev, CFX_WS_FRAME_BYTES_MAX);
	ws->state = WS_OPEN;
	if (ws->early.len) {
		for (size_t off = 0; off < ws->early.len;) {
			struct iovec iov = { .iov_base = ws->early.p + off,
					     .iov_len = ws->early.len - off };
			ssize_t q = queue_frame(ws, &iov, 1);
			CFX_ASSERT(q > 0); /* a fresh context takes messages */
			off += (size_t)q;
		}
		cfx_writer_free(&ws->early);
	}
	cfx_log_debug(CFX_LOGC_NET, "ws: %s: WebSocket open on %.*s", ws->c->peer,
		      (int)req.path.len, (const char *)req.path.p);
	/* Frames the client sent right behind its request: at most what this
	 * read brought, since the request was incomplete before it. */
	rest = ws->hs_in.len - (size_t)rc;
	CFX_ASSERT(rest <= (size_t)r);
	memcpy(buf, ws->hs_in.p + rc, rest);
	cfx_writer_free(&ws->hs_in);
	r = flush_out(ws);
	if (r < 0 && r != -EAGAIN)
		return r;
	if (rest == 0)
		return -EAGAIN;
	return decode_in_place(ws, buf, rest);
}

static ssize_t ws_read(struct cfx_conn *c, void *buf, size_t n)
{
	struct ws_conn *ws = c->transport;
	ssize_t r;

	switch (ws->state) {
	case WS_HANDSHAKE:
		return handshake_read(ws, buf, n);
	case WS_OPEN:
		if (ws->eof)
			return 0;
		r = inner_read(ws, buf, n);
		if (r <= 0)
			return r;
		return decode_in_place(ws, buf, (size_t)r);
	case WS_FAILED:
		break;
	}
	return -EPROTO;
}

static ssize_t ws_writev(struct cfx_conn *c, const struct iovec *iov, int n)
{
	struct ws_conn *ws = c->transport;
	ssize_t r;

	switch (ws->state) {
	case WS_HANDSHAKE: {
		size_t total = 0;
		for (int i = 0; i < n; i++) {
			size_t k = CFX_MIN(iov[i].iov_len, EARLY_BYTES_MAX - ws->early.len);
			cfx_write_bytes(&ws->early, iov[i].iov_base, k);
			total += k;
		}
		/* A protocol that talks first gets this much before the client's request. */
		return total || n == 0 ? (ssize_t)total : -ENOBUFS;
	}
	case WS_OPEN:
		break;
	case WS_FAILED:
		return -EPIPE;
	}
	r = flush_out(ws);
	if (r < 0)
		return r;
	if (!wslay_event_get_write_enabled(ws->ev))
		return -EPIPE; /* our close frame is out: nothing may follow it */
	r = queue_frame(ws, iov, n);
	if (r <= 0)
		return r;
	ssize_t f = flush_out(ws);
	if (f < 0 && f != -EAGAIN)
		return f;
	return r;
}

static int ws_pending(struct cfx_conn *c)
{
	struct ws_conn *ws = c->transport;

	if (ws->hs_out_off < ws->hs_out.len)
		return 1;
	if (ws->state == WS_OPEN && wslay_event_want_write(ws->ev))
		return 1;
	return inner_pending(ws);
}

static void ws_free(struct cfx_conn *c)
{
	struct ws_conn *ws = c->transport;

	if (!ws)
		return;
	if (ws->ev)
		wslay_event_context_free(ws->ev);
	cfx_writer_free(&ws->hs_in);
	cfx_writer_free(&ws->hs_out);
	cfx_writer_free(&ws->early);
	c->ops = ws->inner_ops;
	c->transport = ws->inner;
	cfx_free(ws);
	c->ops->free(c);
}

static const struct cfx_conn_ops ws_ops = {
	.read = ws_read,
	.writev = ws_writev,
	.pending = ws_pending,
	.free = ws_free,
};

int cfx_ws_attach(const struct cfx_ws_opts *o, struct cfx_conn *c)
{
	struct ws_conn *ws = cfx_calloc(1, sizeof *ws);

	ws->c = c;
	ws->o = o;
	ws->inner_ops = c->ops;
	ws->inner = c->transport;
	ws->state = WS_HANDSHAKE;
	c->ops = &ws_ops;
	c->transport = ws;
	return 0;
}

int cfx_ws_is_open(const struct cfx_conn *c)
{
	const struct ws_conn *ws = c->transport;
	return c->ops == &ws_ops && ws->state == WS_OPEN;
}
