/*
 * client.c - the gRPC client: an nghttp2 client session on a blocking
 * socket, driven by poll(2). Events (messages, call ends) are queued in
 * arrival order and handed out by grpc_client_poll.
 */
#include "proto/grpc/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/common.h"
#include "base/err.h"
#include "proto/grpc/grpc.h"

#define MSG_BYTES_MAX (64u << 20)

struct ev_node {
	struct ev_node *next;
	struct grpc_client_event ev;
};

struct cstream {
	struct cstream *prev, *next; /* the client's open streams */
	int32_t id;
	uint8_t prefix[5];
	size_t prefix_len;
	uint8_t *msg;
	size_t msg_len, msg_got;
	int status;
	char *message;
	/* request body queued for sending */
	uint8_t *out;
	size_t out_len, out_off;
	int out_end;	/* half-close after the queued body */
	int deferred;
};

struct grpc_client {
	int fd;
	nghttp2_session *session;
	char **hdr_names, **hdr_values;
	int nhdrs;
	struct ev_node *ev_head, **ev_tail;
	uint32_t inflight;
	int failed;
	struct cstream *streams;
};

static void stream_unlink(struct grpc_client *cl, struct cstream *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		cl->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	cfx_free(s->msg);
	cfx_free(s->out);
	cfx_free(s->message);
	cfx_free(s);
	cl->inflight--;
}

static void push_event(struct grpc_client *cl, const struct grpc_client_event *ev)
{
	struct ev_node *n = cfx_malloc(sizeof *n);
	n->next = NULL;
	n->ev = *ev;
	*cl->ev_tail = n;
	cl->ev_tail = &n->next;
}

/* ------------------------------------------------------------------------
 * nghttp2 callbacks
 * ------------------------------------------------------------------------ */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct cstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	CFX_UNUSED(flags);
	CFX_UNUSED(user_data);
	if (!s)
		return 0;
	if (namelen == 11 && !memcmp(name, "grpc-status", 11)) {
		char v[16];
		size_t k = CFX_MIN(valuelen, sizeof v - 1);
		memcpy(v, value, k);
		v[k] = '\0';
		s->status = atoi(v);
	} else if (namelen == 12 && !memcmp(name, "grpc-message", 12)) {
		cfx_free(s->message);
		s->message = cfx_strndup((const char *)value, valuelen);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user_data)
{
	struct grpc_client *cl = user_data;
	struct cstream *s = nghttp2_session_get_stream_user_data(session, stream_id);

	CFX_UNUSED(flags);
	if (!s)
		return 0;
	while (len) {
		if (s->prefix_len < 5) {
			size_t k = CFX_MIN(len, 5 - s->prefix_len);
			memcpy(s->prefix + s->prefix_len, data, k);
			s->prefix_len += k;
			data += k;
			len -= k;
			if (s->prefix_len < 5)
				break;
			s->msg_len = cfx_load_be32(s->prefix + 1);
			if (s->msg_len > MSG_BYTES_MAX)
				return NGHTTP2_ERR_CALLBACK_FAILURE;
			s->msg = cfx_malloc(s->msg_len ? s->msg_len : 1);
			s->msg_got = 0;
		}
		size_t k = CFX_MIN(len, s->msg_len - s->msg_got);
		memcpy(s->msg + s->msg_got, data, k);
		s->msg_got += k;
		data += k;
		len -= k;
		if (s->msg_got == s->msg_len) {
			struct grpc_client_event ev = { .type = GRPC_EV_MESSAGE, .stream_id = stream_id,
							.data = s->msg, .len = s->msg_len };
			push_event(cl, &ev);
			s->msg = NULL;
			s->prefix_len = 0;
		}
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct grpc_client *cl = user_data;
	struct cstream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	struct grpc_client_event ev = { .type = GRPC_EV_END, .stream_id = stream_id };

	if (!s)
		return 0;
	ev.status = error_code == NGHTTP2_NO_ERROR ? s->status : -1;
	ev.message = s->message;
	s->message = NULL;
	push_event(cl, &ev);
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	stream_unlink(cl, s);
	return 0;
}

static ssize_t body_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			    void *user_data)
{
	struct cstream *s = source->ptr;
	size_t k = CFX_MIN(length, s->out_len - s->out_off);

	CFX_UNUSED(session);
	CFX_UNUSED(stream_id);
	CFX_UNUSED(user_data);
	memcpy(buf, s->out + s->out_off, k);
	s->out_off += k;
	if (s->out_off == s->out_len) {
		s->out_len = s->out_off = 0;
		if (s->out_end) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
			return (ssize_t)k;
		}
		if (k == 0) {
			s->deferred = 1;
			return NGHTTP2_ERR_DEFERRED;
		}
	}
	return (ssize_t)k;
}

/* ------------------------------------------------------------------------
 * I/O
 * ------------------------------------------------------------------------ */

static int flush(struct grpc_client *cl)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(cl->session, &data);
		if (n < 0)
			return CFX_EIO;
		if (n == 0)
			return 0;
		while (n > 0) {
			ssize_t w = write(cl->fd, data, (size_t)n);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return cfx_err_from_errno(errno);
			}
			data += w;
			n -= w;
		}
	}
}

static int pump(struct grpc_client *cl, int64_t timeout_ms)
{
	struct pollfd p = { .fd = cl->fd, .events = POLLIN };
	uint8_t buf[65536];
	int r;

	if (flush(cl))
		return CFX_EIO;
	r = poll(&p, 1, (int)CFX_MIN(timeout_ms, (int64_t)INT32_MAX));
	if (r <= 0)
		return r < 0 && errno != EINTR ? cfx_err_from_errno(errno) : 0;
	ssize_t n = read(cl->fd, buf, sizeof buf);
	if (n == 0)
		return CFX_ECLOSED;
	if (n < 0)
		return errno == EINTR ? 0 : cfx_err_from_errno(errno);
	if (nghttp2_session_mem_recv(cl->session, buf, (size_t)n) < 0)
		return CFX_EPARSE;
	return flush(cl) ? CFX_EIO : 0;
}

int grpc_client_connect(const char *host, int port, int64_t timeout_ms,
			struct grpc_client **out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	nghttp2_session_callbacks *cbs;
	struct grpc_client *cl;
	char portstr[16];
	int fd, one = 1;

	snprintf(portstr, sizeof portstr, "%d", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0)
		return CFX_EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return cfx_err_from_errno(errno);
	}
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
		int e = errno;
		close(fd);
		freeaddrinfo(res);
		return cfx_err_from_errno(e);
	}
	freeaddrinfo(res);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

	cl = cfx_calloc(1, sizeof *cl);
	cl->fd = fd;
	cl->ev_tail = &cl->ev_head;
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_client_new(&cl->session, cbs, cl);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_settings_entry settings[] = { { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 8u << 20 } };
	nghttp2_submit_settings(cl->session, NGHTTP2_FLAG_NONE, settings, 1);
	nghttp2_session_set_local_window_size(cl->session, NGHTTP2_FLAG_NONE, 0, 64u << 20);
	if (flush(cl)) {
		grpc_client_close(cl);
		return CFX_EIO;
	}
	*out = cl;
	return 0;
}

void grpc_client_close(struct grpc_client *cl)
{
	if (!cl)
		return;
	while (cl->streams)
		stream_unlink(cl, cl->streams);
	nghttp2_session_del(cl->session);
	close(cl->fd);
	while (cl->ev_head) {
		struct ev_node *n = cl->ev_head;
		cl->ev_head = n->next;
		cfx_free(n->ev.data);
		cfx_free(n->ev.message);
		cfx_free(n);
	}
	for (int i = 0; i < cl->nhdrs; i++) {
		cfx_free(cl->hdr_names[i]);
		cfx_free(cl->hdr_values[i]);
	}
	cfx_free(cl->hdr_names);
	cfx_free(cl->hdr_values);
	cfx_free(cl);
}

void grpc_client_set_header(struct grpc_client *cl, const char *name, const char *value)
{
	for (int i = 0; i < cl->nhdrs; i++)
		if (!strcmp(cl->hdr_names[i], name)) {
			cfx_free(cl->hdr_values[i]);
			cl->hdr_values[i] = cfx_strdup(value);
			return;
		}
	cl->hdr_names = cfx_realloc(cl->hdr_names, (size_t)(cl->nhdrs + 1) * sizeof(char *));
	cl->hdr_values = cfx_realloc(cl->hdr_values, (size_t)(cl->nhdrs + 1) * sizeof(char *));
	cl->hdr_names[cl->nhdrs] = cfx_strdup(name);
	cl->hdr_values[cl->nhdrs] = cfx_strdup(value);
	cl->nhdrs++;
}

static void queue_body(struct cstream *s, const void *msg, size_t len, int end)
{
	size_t need = s->out_len + 5 + len;
	uint8_t *b = cfx_malloc(need);

	if (s->out_len)
		memcpy(b, s->out + s->out_off, s->out_len - s->out_off);
	size_t at = s->out_len - s->out_off;
	b[at] = 0;
	cfx_store_be32(b + at + 1, (uint32_t)len);
	if (len)
		memcpy(b + at + 5, msg, len);
	cfx_free(s->out);
	s->out = b;
	s->out_len = at + 5 + len;
	s->out_off = 0;
	s->out_end = end;
}

int32_t grpc_client_start(struct grpc_client *cl, const char *path, const void *msg, size_t len,
			  int end, int64_t timeout_ms)
{
	nghttp2_nv nv[8 + 32];
	char timeout[24];
	size_t n = 0;
	struct cstream *s;
	int32_t id;

#define PUT(name, value) \
	nv[n++] = (nghttp2_nv){ (uint8_t *)(name), (uint8_t *)(value), strlen(name), strlen(value), \
				NGHTTP2_NV_FLAG_NONE }
	PUT(":method", "POST");
	PUT(":scheme", "http");
	PUT(":path", path);
	PUT(":authority", "conflux");
	PUT("content-type", "application/grpc");
	PUT("te", "trailers");
	if (timeout_ms > 0) {
		snprintf(timeout, sizeof timeout, "%lldm", (long long)timeout_ms);
		PUT("grpc-timeout", timeout);
	}
	for (int i = 0; i < cl->nhdrs && n < CFX_ARRAY_LEN(nv); i++)
		PUT(cl->hdr_names[i], cl->hdr_values[i]);
#undef PUT
	s = cfx_calloc(1, sizeof *s);
	s->status = -1;
	queue_body(s, msg, len, end);
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = body_read_cb };
	id = nghttp2_submit_request(cl->session, NULL, nv, n, &prd, s);
	if (id < 0) {
		cfx_free(s->out);
		cfx_free(s);
		return CFX_EINVAL;
	}
	s->id = id;
	s->next = cl->streams;
	if (cl->streams)
		cl->streams->prev = s;
	cl->streams = s;
	cl->inflight++;
	return flush(cl) ? CFX_EIO : id;
}

int grpc_client_send(struct grpc_client *cl, int32_t stream_id, const void *msg, size_t len,
		     int end)
{
	struct cstream *s = nghttp2_session_get_stream_user_data(cl->session, stream_id);

	if (!s)
		return CFX_ENOENT;
	queue_body(s, msg, len, end);
	if (s->deferred) {
		s->deferred = 0;
		nghttp2_session_resume_data(cl->session, stream_id);
	}
	return flush(cl) ? CFX_EIO : 0;
}

int grpc_client_poll(struct grpc_client *cl, int64_t timeout_ms, struct grpc_client_event *ev)
{
	int64_t deadline = cfx_clock_mono_ms() + timeout_ms;

	for (;;) {
		if (cl->ev_head) {
			struct ev_node *node = cl->ev_head;
			cl->ev_head = node->next;
			if (!cl->ev_head)
				cl->ev_tail = &cl->ev_head;
			*ev = node->ev;
			cfx_free(node);
			return 1;
		}
		if (cl->failed)
			return cl->failed;
		int64_t left = deadline - cfx_clock_mono_ms();
		if (left <= 0)
			return 0;
		int rc = pump(cl, left);
		if (rc < 0) {
			cl->failed = rc;
			return rc;
		}
	}
}

int grpc_client_unary(struct grpc_client *cl, const char *path, const void *req, size_t len,
		      int64_t timeout_ms, uint8_t **resp, size_t *resp_len, int *status,
		      char **message)
{
	struct grpc_client_event ev;
	int32_t id = grpc_client_start(cl, path, req, len, 1, timeout_ms);
	int64_t deadline = cfx_clock_mono_ms() + timeout_ms + 1000;

	*resp = NULL;
	*resp_len = 0;
	*status = -1;
	if (message)
		*message = NULL;
	if (id < 0)
		return id;
	for (;;) {
		int64_t left = deadline - cfx_clock_mono_ms();
		int rc = left > 0 ? grpc_client_poll(cl, left, &ev) : 0;
		if (rc <= 0)
			return rc ? rc : CFX_ETIMEDOUT;
		if (ev.stream_id != id) {
			cfx_free(ev.data);
			cfx_free(ev.message);
			continue; /* another call's event: dropped by this helper */
		}
		if (ev.type == GRPC_EV_MESSAGE) {
			cfx_free(*resp);
			*resp = ev.data;
			*resp_len = ev.len;
			continue;
		}
		*status = ev.status;
		if (message)
			*message = ev.message;
		else
			cfx_free(ev.message);
		return 0;
	}
}

uint32_t grpc_client_inflight(const struct grpc_client *cl)
{
	return cl->inflight;
}
