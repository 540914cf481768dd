/*
 * server.c - gRPC over HTTP/2: an nghttp2 server session per connection.
 *
 * nghttp2 parses frames, HPACK and flow control; this file turns streams
 * into calls. Request DATA is consumed as it arrives: gRPC messages are
 * framed as [compressed flag u8][length u32 big-endian][message], and each
 * complete message goes to the method (bounded by message_bytes_max before
 * anything is buffered). Responses are queued per call and handed to
 * nghttp2 through a data provider that defers while the queue is empty and
 * ends with trailers (grpc-status, grpc-message).
 *
 * Output is produced with nghttp2_session_mem_send into the connection's
 * buffer, once per loop iteration and only while the connection is below
 * its back-pressure mark; on_drain resumes it.
 */
#include "proto/grpc/grpc.h"

#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#define HEADERS_MAX 64		/* request headers kept per call */
#define HEADER_BYTES_MAX 16384	/* their total size */
#define STREAMS_MAX 1000	/* concurrent streams per connection */

struct hdr {
	char *name, *value;
};

struct out_msg {
	struct out_msg *next;
	size_t len, off;
	uint8_t data[];
};

struct grpc_call {
	struct h2conn *hc;
	struct grpc_call *prev, *next; /* the connection's open calls */
	int32_t stream_id;
	const struct grpc_method *method;
	void *data;
	struct hdr hdrs[HEADERS_MAX];
	int nhdrs;
	size_t hdr_bytes;
	char *path;
	int64_t deadline_ms;
	int content_ok;	     /* content-type is application/grpc* */

	/* request framing */
	uint8_t prefix[5];
	size_t prefix_len;
	uint8_t *msg;	     /* message being assembled */
	size_t msg_len, msg_got;

	/* response */
	struct out_msg *out_head, *out_tail;
	int headers_sent;    /* response headers submitted */
	int finished;	     /* grpc_call_finish called */
	int trailers_sent;
	int deferred;	     /* the data provider is waiting for output */
	enum grpc_status status;
	char *status_msg;
	int closed;	     /* the stream is gone */
	int half_closed;     /* the client sent END_STREAM */
	int delivered;	     /* unary: the request went to the handler */
	int admitted;	     /* grpc_service.admit said yes */
	char *user;	     /* signed in as; NULL = anonymous */
};

struct h2conn {
	struct cfx_conn *conn;
	nghttp2_session *session;
	const struct grpc_service *svc;
	int send_scheduled;
	int dead;	     /* a fatal error: closing */
	uint32_t nstreams;   /* calls open now */
	struct grpc_call *calls;
};

/* ------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------ */

void *grpc_call_data(const struct grpc_call *call)
{
	return call->data;
}

void grpc_call_set_data(struct grpc_call *call, void *data)
{
	call->data = data;
}

void *grpc_call_service_arg(const struct grpc_call *call)
{
	return call->hc->svc->arg;
}

const struct grpc_method *grpc_call_method(const struct grpc_call *call)
{
	return call->method;
}

const char *grpc_call_user(const struct grpc_call *call)
{
	return call->user;
}

void grpc_call_set_user(struct grpc_call *call, const char *user, size_t len)
{
	cfx_free(call->user);
	call->user = cfx_strndup(user, len);
}

const char *grpc_call_peer(const struct grpc_call *call)
{
	return call->hc->conn->peer;
}

const char *grpc_call_header(const struct grpc_call *call, const char *name)
{
	for (int i = 0; i < call->nhdrs; i++)
		if (!strcmp(call->hdrs[i].name, name))
			return call->hdrs[i].value;
	return NULL;
}

int64_t grpc_call_deadline_ms(const struct grpc_call *call)
{
	return call->deadline_ms;
}

struct cfx_conn *grpc_call_conn(const struct grpc_call *call)
{
	return call->hc->conn;
}

struct cfx_loop *grpc_call_loop(const struct grpc_call *call)
{
	return call->hc->conn->loop;
}

int grpc_call_is_finished(const struct grpc_call *call)
{
	return call->finished || call->closed;
}

int64_t grpc_parse_timeout_ms(const char *v)
{
	char *end;
	unsigned long long n;
	size_t len = strlen(v);

	if (len < 2 || len > 9 || !isdigit((unsigned char)v[0]))
		return -1;
	n = strtoull(v, &end, 10);
	if (end != v + len - 1)
		return -1;
	switch (*end) {
	case 'H':
		return (int64_t)n * 3600000;
	case 'M':
		return (int64_t)n * 60000;
	case 'S':
		return (int64_t)n * 1000;
	case 'm':
		return (int64_t)n;
	case 'u':
		return (int64_t)(n / 1000);
	case 'n':
		return (int64_t)(n / 1000000);
	default:
		return -1;
	}
}

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */

static void session_send(struct h2conn *hc)
{
	while (!hc->dead && cfx_conn_is_writable(hc->conn)) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(hc->session, &data);
		if (n < 0) {
			hc->dead = 1;
			cfx_conn_close(hc->conn, nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			break;
		cfx_conn_write(hc->conn, data, (size_t)n);
	}
	if (!hc->dead && !nghttp2_session_want_read(hc->session) &&
	    !nghttp2_session_want_write(hc->session))
		cfx_conn_close(hc->conn, "HTTP/2 session ended");
}

static void send_task(void *arg)
{
	struct cfx_conn_handle *h = arg;
	struct cfx_conn *c = h->conn;

	if (c && c->proto_data) {
		struct h2conn *hc = c->proto_data;
		hc->send_scheduled = 0;
		session_send(hc);
	}
	cfx_conn_handle_put(h);
}

/* Produces output at the end of this loop iteration (batches small writes). */
static void schedule_send(struct h2conn *hc)
{
	if (hc->send_scheduled || hc->dead)
		return;
	hc->send_scheduled = 1;
	cfx_loop_defer(hc->conn->loop, send_task, cfx_conn_handle_get(hc->conn));
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			    void *user_data)
{
	struct grpc_call *call = source->ptr;
	size_t n = 0;

	CFX_UNUSED(user_data);
	while (n < length && call->out_head) {
		struct out_msg *m = call->out_head;
		size_t k = CFX_MIN(length - n, m->len - m->off);
		memcpy(buf + n, m->data + m->off, k);
		m->off += k;
		n += k;
		if (m->off == m->len) {
			call->out_head = m->next;
			if (!call->out_head)
				call->out_tail = NULL;
			cfx_free(m);
		}
	}
	if (!call->out_head && call->finished) {
		char code[12];
		nghttp2_nv trailers[2];
		size_t nt = 1;

		snprintf(code, sizeof code, "%d", (int)call->status);
		trailers[0] = (nghttp2_nv){ (uint8_t *)"grpc-status", (uint8_t *)code, 11,
					    strlen(code), NGHTTP2_NV_FLAG_NONE };
		if (call->status_msg) {
			trailers[1] = (nghttp2_nv){ (uint8_t *)"grpc-message",
						    (uint8_t *)call->status_msg, 12,
						    strlen(call->status_msg), NGHTTP2_NV_FLAG_NONE };
			nt = 2;
		}
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(session, stream_id, trailers, nt) == 0)
			call->trailers_sent = 1;
		return (ssize_t)n;
	}
	if (n == 0) {
		call->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }

static void submit_headers(struct grpc_call *call)
{
	static const nghttp2_nv hdrs[] = { NV(":status", "200"),
					   NV("content-type", "application/grpc") };
	nghttp2_data_provider prd = { .source.ptr = call, .read_callback = data_read_cb };

	call->headers_sent = 1;
	nghttp2_submit_response(call->hc->session, call->stream_id, hdrs, CFX_ARRAY_LEN(hdrs), &prd);
}

/* A call that ends before any message: headers and status in one frame. */
static void submit_trailers_only(struct grpc_call *call)
{
	char code[12];
	nghttp2_nv nv[4] = { NV(":status", "200"), NV("content-type", "application/grpc") };
	size_t n = 3;

	snprintf(code, sizeof code, "%d", (int)call->status);
	nv[2] = (nghttp2_nv){ (uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code),
			      NGHTTP2_NV_FLAG_NONE };
	if (call->status_msg)
		nv[n++] = (nghttp2_nv){ (uint8_t *)"grpc-message", (uint8_t *)call->status_msg, 12,
					strlen(call->status_msg), NGHTTP2_NV_FLAG_NONE };
	call->headers_sent = 1;
	call->trailers_sent = 1;
	nghttp2_submit_response(call->hc->session, call->stream_id, nv, n, NULL);
}

static void resume(struct grpc_call *call)
{
	if (call->deferred) {
		call->deferred = 0;
		nghttp2_session_resume_data(call->hc->session, call->stream_id);
	}
	schedule_send(call->hc);
}

void grpc_call_send(struct grpc_call *call, const void *msg, size_t len)
{
	struct out_msg *m;

	if (call->finished || call->closed)
		return;
	m = cfx_malloc(sizeof *m + 5 + len);
	m->next = NULL;
	m->off = 0;
	m->len = 5 + len;
	m->data[0] = 0; /* not compressed */
	cfx_store_be32(m->data + 1, (uint32_t)len);
	if (len)
		memcpy(m->data + 5, msg, len);
	if (call->out_tail)
		call->out_tail->next = m;
	else
		call->out_head = m;
	call->out_tail = m;
	if (!call->headers_sent)
		submit_headers(call);
	resume(call);
}

/* Percent-encodes a status message as gRPC requires (printable ASCII kept). */
static char *encode_message(const char *msg)
{
	size_t n = strlen(msg);
	char *out = cfx_malloc(n * 3 + 1), *p = out;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)msg[i];
		if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
			*p++ = (char)ch;
		} else {
			sprintf(p, "%%%02X", ch);
			p += 3;
		}
	}
	*p = '\0';
	return out;
}

void grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message)
{
	if (call->finished || call->closed)
		return;
	call->finished = 1;
	call->status = status;
	if (message && *message)
		call->status_msg = encode_message(message);
	if (!call->headers_sent)
		submit_trailers_only(call);
	resume(call);
}

/* ------------------------------------------------------------------------
 * Call references
 * ------------------------------------------------------------------------ */

void grpc_call_ref_init(struct grpc_call_ref *ref, struct grpc_call *call)
{
	ref->h = cfx_conn_handle_get(call->hc->conn);
	ref->stream_id = call->stream_id;
	ref->loop = call->hc->conn->loop;
}

struct grpc_call *grpc_call_ref_resolve(const struct grpc_call_ref *ref)
{
	struct h2conn *hc;
	struct grpc_call *call;

	if (!ref->h || !ref->h->conn || !ref->h->conn->proto_data)
		return NULL;
	hc = ref->h->conn->proto_data;
	if (hc->dead)
		return NULL;
	call = nghttp2_session_get_stream_user_data(hc->session, ref->stream_id);
	return call && !call->closed ? call : NULL;
}

void grpc_call_ref_release(struct grpc_call_ref *ref)
{
	if (ref->h)
		cfx_conn_handle_put(ref->h);
	ref->h = NULL;
}

/* ------------------------------------------------------------------------
 * Receiving
 * ------------------------------------------------------------------------ */

static const struct grpc_method *find_method(const struct grpc_service *svc, const char *path)
{
	for (size_t i = 0; i < svc->nmethods; i++)
		if (!strcmp(svc->methods[i].path, path))
			return &svc->methods[i];
	return NULL;
}

static void call_free(struct grpc_call *call)
{
	for (int i = 0; i < call->nhdrs; i++) {
		cfx_free(call->hdrs[i].name);
		cfx_free(call->hdrs[i].value);
	}
	while (call->out_head) {
		struct out_msg *m = call->out_head;
		call->out_head = m->next;
		cfx_free(m);
	}
	cfx_free(call->path);
	cfx_free(call->user);
	cfx_free(call->msg);
	cfx_free(call->status_msg);
	cfx_free(call);
}

/* The stream is gone: tell the method, unlink and free the call. */
static void call_end(struct grpc_call *call)
{
	struct h2conn *hc = call->hc;

	call->closed = 1;
	hc->nstreams--;
	if (call->prev)
		call->prev->next = call->next;
	else
		hc->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	if (call->method && call->method->on_close)
		call->method->on_close(call);
	call_free(call);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct h2conn *hc = user_data;
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = cfx_calloc(1, sizeof *call);
	call->hc = hc;
	call->stream_id = frame->hd.stream_id;
	call->next = hc->calls;
	if (hc->calls)
		hc->calls->prev = call;
	hc->calls = call;
	hc->nstreams++;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	CFX_UNUSED(flags);
	CFX_UNUSED(user_data);
	if (!call || frame->hd.type != NGHTTP2_HEADERS)
		return 0; /* trailers of a request: ignored */
	call->hdr_bytes += namelen + valuelen;
	if (call->hdr_bytes > HEADER_BYTES_MAX)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	if (namelen == 5 && !memcmp(name, ":path", 5)) {
		cfx_free(call->path);
		call->path = cfx_strndup((const char *)value, valuelen);
		return 0;
	}
	if (namelen == 12 && !memcmp(name, "content-type", 12)) {
		call->content_ok = valuelen >= 16 && !memcmp(value, "application/grpc", 16);
		return 0;
	}
	if (namelen == 12 && !memcmp(name, "grpc-timeout", 12)) {
		char v[16];
		if (valuelen < sizeof v) {
			memcpy(v, value, valuelen);
			v[valuelen] = '\0';
			int64_t ms = grpc_parse_timeout_ms(v);
			if (ms >= 0)
				call->deadline_ms = cfx_clock_mono_ms() + ms;
		}
		return 0;
	}
	if (name[0] == ':' || call->nhdrs == HEADERS_MAX)
		return 0;
	call->hdrs[call->nhdrs].name = cfx_strndup((const char *)name, namelen);
	call->hdrs[call->nhdrs].value = cfx_strndup((const char *)value, valuelen);
	call->nhdrs++;
	return 0;
}

/* The request headers are complete: route the call. */
static void start_call(struct grpc_call *call)
{
	const struct grpc_service *svc = call->hc->svc;

	call->method = call->path ? find_method(svc, call->path) : NULL;
	if (!call->content_ok) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "content-type must be application/grpc");
		return;
	}
	if (!call->method) {
		char msg[300];
		snprintf(msg, sizeof msg, "method %s is not implemented",
			 call->path ? call->path : "(none)");
		grpc_call_finish(call, GRPC_UNIMPLEMENTED, msg);
	}
}

/* One complete request message. */
static void deliver(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	if (call->finished || !call->method)
		return;
	if (call->method->kind != GRPC_BIDI) {
		if (call->delivered) {
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
					 "more than one request message on a unary call");
			return;
		}
		call->delivered = 1;
	}
	if (!call->admitted) {
		const struct grpc_service *svc = call->hc->svc;
		if (svc->admit && svc->admit(svc->arg, call))
			return;
		call->admitted = 1;
	}
	call->method->on_message(call, msg, len);
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user_data)
{
	struct h2conn *hc = user_data;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	CFX_UNUSED(flags);
	if (!call || call->finished)
		return 0; /* discarded; flow control is consumed by nghttp2 */
	while (len) {
		if (call->prefix_len < 5) {
			size_t k = CFX_MIN(len, 5 - call->prefix_len);
			memcpy(call->prefix + call->prefix_len, data, k);
			call->prefix_len += k;
			data += k;
			len -= k;
			if (call->prefix_len < 5)
				break;
			if (call->prefix[0] != 0) {
				grpc_call_finish(call, GRPC_UNIMPLEMENTED,
						 "compressed request messages are not supported");
				return 0;
			}
			call->msg_len = cfx_load_be32(call->prefix + 1);
			if (call->msg_len > hc->svc->message_bytes_max) {
				char m[96];
				snprintf(m, sizeof m, "request message of %zu bytes exceeds %zu",
					 call->msg_len, hc->svc->message_bytes_max);
				grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, m);
				return 0;
			}
			call->msg_got = 0;
			if (call->msg_len == 0) {
				call->prefix_len = 0;
				deliver(call, (const uint8_t *)"", 0);
				continue;
			}
			/* Deliver straight from the frame when it holds the whole message. */
			if (len >= call->msg_len) {
				size_t k2 = call->msg_len;
				call->prefix_len = 0;
				deliver(call, data, k2);
				data += k2;
				len -= k2;
				if (call->finished)
					return 0;
				continue;
			}
			call->msg = cfx_malloc(call->msg_len);
		}
		size_t k = CFX_MIN(len, call->msg_len - call->msg_got);
		memcpy(call->msg + call->msg_got, data, k);
		call->msg_got += k;
		data += k;
		len -= k;
		if (call->msg_got == call->msg_len) {
			uint8_t *m = call->msg;
			call->msg = NULL;
			call->prefix_len = 0;
			deliver(call, m, call->msg_len);
			cfx_free(m);
			if (call->finished)
				return 0;
		}
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_call *call;

	CFX_UNUSED(user_data);
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		start_call(call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM && !call->half_closed) {
		call->half_closed = 1;
		if (call->finished || !call->method)
			return 0;
		if (call->prefix_len || call->msg) {
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "truncated request message");
			return 0;
		}
		if (call->method->kind != GRPC_BIDI && !call->delivered)
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "no request message");
		else if (call->method->kind == GRPC_BIDI && call->method->on_half_close)
			call->method->on_half_close(call);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	CFX_UNUSED(error_code);
	CFX_UNUSED(user_data);
	if (!call)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	call_end(call);
	return 0;
}

/* ------------------------------------------------------------------------
 * The connection protocol
 * ------------------------------------------------------------------------ */

static int h2_open(struct cfx_conn *c)
{
	struct h2conn *hc = cfx_calloc(1, sizeof *hc);
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, STREAMS_MAX },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20 },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HEADER_BYTES_MAX },
	};

	hc->conn = c;
	hc->svc = cfx_listener_proto_arg(c->listener);
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_option_new(&opt);
	nghttp2_option_set_max_send_header_block_length(opt, HEADER_BYTES_MAX * 4);
	nghttp2_session_server_new2(&hc->session, cbs, hc, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	/* A bigger connection window: many streams may be uploading at once. */
	nghttp2_session_set_local_window_size(hc->session, NGHTTP2_FLAG_NONE, 0, 16u << 20);
	nghttp2_submit_settings(hc->session, NGHTTP2_FLAG_NONE, settings, CFX_ARRAY_LEN(settings));
	c->proto_data = hc;
	schedule_send(hc);
	return 0;
}

static int h2_read(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	struct h2conn *hc = c->proto_data;
	ssize_t r = nghttp2_session_mem_recv(hc->session, p, n);

	if (r < 0) {
		cfx_log_ratelimited(CFX_LOG_INFO, "grpc: closing connection from %s: %s", c->peer,
				    nghttp2_strerror((int)r));
		/* Send what nghttp2 prepared (a GOAWAY), then close. */
		session_send(hc);
		hc->dead = 1;
		return -1;
	}
	schedule_send(hc);
	return 0;
}

static void h2_drain(struct cfx_conn *c)
{
	struct h2conn *hc = c->proto_data;
	if (hc && (nghttp2_session_want_write(hc->session)))
		schedule_send(hc);
}

static void h2_shutdown(struct cfx_conn *c)
{
	struct h2conn *hc = c->proto_data;

	/* A graceful GOAWAY: streams in progress may finish, no new ones. */
	nghttp2_submit_goaway(hc->session, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(hc->session), NGHTTP2_NO_ERROR,
			      NULL, 0);
	schedule_send(hc);
}

static void h2_close(struct cfx_conn *c)
{
	struct h2conn *hc = c->proto_data;

	if (!hc)
		return;
	hc->dead = 1;
	/* nghttp2_session_del does not report the streams it drops: end them here. */
	while (hc->calls)
		call_end(hc->calls);
	nghttp2_session_del(hc->session);
	c->proto_data = NULL;
	cfx_free(hc);
}

/* A connection with a call open (a Telemetry stream, a long poll) is not idle. */
static int h2_busy(struct cfx_conn *c)
{
	struct h2conn *hc = c->proto_data;
	return hc && hc->nstreams > 0;
}

const struct cfx_conn_proto grpc_conn_proto = {
	.name = "grpc",
	.on_open = h2_open,
	.on_read = h2_read,
	.on_drain = h2_drain,
	.on_shutdown = h2_shutdown,
	.on_close = h2_close,
	.is_busy = h2_busy,
};
