/*
 * http.c - HTTP/1.1: the request codec (http-parser does the parsing; this
 * file keeps what a request needs and enforces the limits), responses, and
 * the connection protocol. The routes live in admin.c, events.c and metrics.c.
 *
 * Codec states, per request:
 *
 *   idle --first byte--> head --headers complete--> body --message complete--> complete
 *     ^                   |  (limits: 431, 411,        |  (413 checked before          |
 *     |                   |   413, 417, 505)           |   the first body byte)        |
 *     +---------------------------- http_codec_next -----------------------------------+
 *   any state --malformed or over a limit--> dead (the caller answers and closes)
 *
 * http-parser calls back as it goes; on message complete (and on a
 * 100-continue expectation) the callback pauses it, so http_codec_feed
 * returns exactly the bytes of one request and pipelined requests are
 * framed one by one. The request line and headers are limited by
 * http-parser's own header-size check, set once to HTTP_HEAD_BYTES_MAX
 * (it counts every byte of the head, whitespace included).
 */
#include "proto/http/http.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "base/log.h"

enum { HDR_OTHER = 0, HDR_CONTENT_TYPE, HDR_EXPECT, HDR_AUTHORIZATION, HDR_CE };

/* ------------------------------------------------------------------------
 * The codec
 * ------------------------------------------------------------------------ */

static int fail(struct http_codec *hc, int status, const char *reason)
{
	if (!hc->err_status) {
		hc->err_status = status;
		hc->err_reason = reason;
	}
	return -1; /* makes http-parser stop with HPE_CB_* */
}

static int on_message_begin(http_parser *p)
{
	struct http_codec *hc = p->data;

	hc->in_message = 1;
	cfx_writer_reset(&hc->target);
	cfx_writer_reset(&hc->body);
	hc->field_len = 0;
	hc->in_value = 0;
	hc->cur_header = HDR_OTHER;
	hc->ctype_len = 0;
	hc->ctype_cut = 0;
	hc->expect_len = 0;
	hc->authz_len = 0;
	hc->nheaders = 0;
	hc->nce = 0;
	cfx_writer_reset(&hc->ce_bytes);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_codec *hc = p->data;

	/* http-parser bounds the head; this is only a second fence. */
	if (hc->target.len + len > HTTP_HEAD_BYTES_MAX)
		return fail(hc, 431, "the request target is too long");
	cfx_write_bytes(&hc->target, at, len);
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_codec *hc = p->data;

	if (hc->in_value || hc->nheaders == 0) {
		/* A new field starts (names may arrive in pieces across reads). */
		if (++hc->nheaders > HTTP_HEADERS_MAX)
			return fail(hc, 431, "too many header fields");
		hc->in_value = 0;
		hc->field_len = 0;
	}
	/* Names up to the buffer are kept (the longest that matters is a ce-
	 * attribute's); a longer one is remembered as too long. */
	for (size_t i = 0; i < len; i++) {
		if (hc->field_len < sizeof hc->field)
			hc->field[hc->field_len] = at[i];
		hc->field_len++;
	}
	return 0;
}

static int field_is(const struct http_codec *hc, const char *name)
{
	size_t n = strlen(name);
	return hc->field_len == n && !strncasecmp(hc->field, name, n);
}

/* Appends to a bounded buffer, keeping what fits. */
static void keep(char *buf, size_t cap, size_t *len, const char *at, size_t n)
{
	size_t k = *len < cap ? CFX_MIN(n, cap - *len) : 0;
	memcpy(buf + *len, at, k);
	*len += k;
}

/* Is the field being read a CloudEvents attribute ("ce-" + a name)? */
static int field_is_ce(const struct http_codec *hc)
{
	return hc->field_len >= 3 && !strncasecmp(hc->field, "ce-", 3);
}

/*
 * Starts keeping a ce-* field: its name now, its value as it comes. Every
 * limit is checked before a byte is kept.
 */
static int ce_begin(struct http_codec *hc)
{
	if (hc->field_len > sizeof hc->field)
		return fail(hc, 431, "a ce- header name is longer than 67 bytes");
	if (hc->nce == HTTP_CE_HEADERS_MAX)
		return fail(hc, 431, "more than 64 ce- header fields");
	if (hc->ce_bytes.len + hc->field_len > HTTP_CE_BYTES_MAX)
		return fail(hc, 431, "the ce- header fields exceed 8 KiB");
	hc->ce_at[hc->nce].name_off = (uint16_t)hc->ce_bytes.len;
	hc->ce_at[hc->nce].name_len = (uint16_t)hc->field_len;
	cfx_write_bytes(&hc->ce_bytes, hc->field, hc->field_len);
	hc->ce_at[hc->nce].value_off = (uint16_t)hc->ce_bytes.len;
	hc->ce_at[hc->nce].value_len = 0;
	hc->nce++;
	return 0;
}

static int ce_value(struct http_codec *hc, const char *at, size_t len)
{
	if (hc->ce_bytes.len + len > HTTP_CE_BYTES_MAX)
		return fail(hc, 431, "the ce- header fields exceed 8 KiB");
	cfx_write_bytes(&hc->ce_bytes, at, len);
	hc->ce_at[hc->nce - 1].value_len += (uint16_t)len;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_codec *hc = p->data;

	if (!hc->in_value) {
		hc->in_value = 1;
		if (field_is(hc, "content-type")) {
			hc->cur_header = HDR_CONTENT_TYPE;
			hc->ctype_len = 0; /* a repeated header: the last one counts */
			hc->ctype_cut = 0;
		} else if (field_is(hc, "expect")) {
			hc->cur_header = HDR_EXPECT;
			hc->expect_len = 0;
		} else if (field_is(hc, "authorization")) {
			hc->cur_header = HDR_AUTHORIZATION;
			hc->authz_len = 0;
		} else if (field_is_ce(hc)) {
			hc->cur_header = HDR_CE;
			if (ce_begin(hc))
				return -1;
		} else {
			hc->cur_header = HDR_OTHER;
		}
	}
	if (hc->cur_header == HDR_CONTENT_TYPE) {
		if (hc->ctype_len + len > sizeof hc->ctype)
			hc->ctype_cut = 1;
		keep(hc->ctype, sizeof hc->ctype, &hc->ctype_len, at, len);
	} else if (hc->cur_header == HDR_CE) {
		return ce_value(hc, at, len);
	} else if (hc->cur_header == HDR_EXPECT)
		keep(hc->expect, sizeof hc->expect, &hc->expect_len, at, len);
	else if (hc->cur_header == HDR_AUTHORIZATION) {
		if (hc->authz_len + len > sizeof hc->authz)
			return fail(hc, 431, "the Authorization header is longer than 1 KiB");
		keep(hc->authz, sizeof hc->authz, &hc->authz_len, at, len);
	}
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_codec *hc = p->data;
	int has_length = (p->flags & F_CONTENTLENGTH) != 0;

	if (p->http_major != 1)
		return fail(hc, 505, "only HTTP/1.0 and HTTP/1.1 are served here");
	if (p->flags & F_CHUNKED)
		return fail(hc, 411, "chunked request bodies are not accepted: send a Content-Length");
	if (has_length && p->content_length > HTTP_BODY_BYTES_MAX)
		return fail(hc, 413, "the request body is larger than 1 MiB");
	if (hc->expect_len) {
		if (hc->expect_len != 12 || strncasecmp(hc->expect, "100-continue", 12))
			return fail(hc, 417, "the only expectation served is 100-continue");
		if (has_length && p->content_length > 0) {
			hc->want_continue = 1;
			http_parser_pause(p, 1);
		}
	}
	/* The body buffer grows as bytes arrive, not by what the client announced. */
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_codec *hc = p->data;

	/* Content-Length was checked; chunked bodies were refused. */
	if (hc->body.len + len > HTTP_BODY_BYTES_MAX)
		return fail(hc, 413, "the request body is larger than 1 MiB");
	cfx_write_bytes(&hc->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_codec *hc = p->data;
	struct http_request *req = &hc->req;

	req->method = (int)p->method;
	req->method_name = http_method_str((enum http_method)p->method);
	req->target = (struct cfx_view){ hc->target.p, hc->target.len };
	req->content_type = (struct cfx_view){ (const uint8_t *)hc->ctype, hc->ctype_len };
	req->body = (struct cfx_view){ hc->body.p, hc->body.len };
	req->authorization = (struct cfx_view){ (const uint8_t *)hc->authz, hc->authz_len };
	req->content_type_cut = hc->ctype_cut;
	/* The ce- views point into ce_bytes, which no longer grows. */
	for (uint32_t i = 0; i < hc->nce; i++)
		hc->ce[i] = (struct cfx_ce_header){
			(const char *)hc->ce_bytes.p + hc->ce_at[i].name_off, hc->ce_at[i].name_len,
			(const char *)hc->ce_bytes.p + hc->ce_at[i].value_off, hc->ce_at[i].value_len
		};
	req->ce_headers = hc->nce ? hc->ce : NULL;
	req->ce_headers_n = hc->nce;
	/* After an upgrade request the rest of the stream is not HTTP/1.1. */
	req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	hc->complete = 1;
	http_parser_pause(p, 1); /* one request at a time */
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* http-parser's head limit is one setting for the process: set it once. */
static pthread_once_t limit_once = PTHREAD_ONCE_INIT;

static void set_head_limit(void)
{
	http_parser_set_max_header_size(HTTP_HEAD_BYTES_MAX);
}

void http_codec_init(struct http_codec *hc)
{
	pthread_once(&limit_once, set_head_limit);
	memset(hc, 0, sizeof *hc);
	http_parser_init(&hc->parser, HTTP_REQUEST);
	hc->parser.data = hc;
	cfx_writer_init(&hc->target, 256);
	cfx_writer_init(&hc->body, 0);
	cfx_writer_init(&hc->ce_bytes, 0);
}

void http_codec_free(struct http_codec *hc)
{
	cfx_writer_free(&hc->target);
	cfx_writer_free(&hc->body);
	cfx_writer_free(&hc->ce_bytes);
}

/* Maps an error of http-parser itself (not of our callbacks) to a status. */
static void parser_error(struct http_codec *hc, enum http_errno e)
{
	switch (e) {
	case HPE_HEADER_OVERFLOW:
		hc->err_status = 431;
		hc->err_reason = "the request line and headers exceed 16 KiB";
		break;
	case HPE_INVALID_METHOD:
		hc->err_status = 400;
		hc->err_reason = "unknown request method";
		break;
	case HPE_INVALID_TRANSFER_ENCODING:
		hc->err_status = 400;
		hc->err_reason = "Transfer-Encoding other than chunked, or chunked not last";
		break;
	default:
		hc->err_status = 400;
		hc->err_reason = http_errno_description(e);
		break;
	}
}

enum http_event http_codec_feed(struct http_codec *hc, const uint8_t *p, size_t n, size_t *used)
{
	enum http_errno e;
	size_t k;

	*used = 0;
	if (hc->dead)
		return HTTP_EV_ERROR;
	CFX_ASSERT(!hc->complete); /* http_codec_next first */
	if (n == 0)
		return HTTP_EV_MORE; /* zero bytes would tell http-parser the stream ended */
	k = http_parser_execute(&hc->parser, &settings, (const char *)p, n);
	*used = k;
	e = HTTP_PARSER_ERRNO(&hc->parser);
	if (e == HPE_PAUSED) {
		http_parser_pause(&hc->parser, 0);
		if (hc->complete)
			return HTTP_EV_REQUEST;
		CFX_ASSERT(hc->want_continue);
		hc->want_continue = 0;
		return HTTP_EV_CONTINUE;
	}
	if (e != HPE_OK || k != n) {
		hc->dead = 1;
		if (!hc->err_status) {
			if (e == HPE_OK) { /* stopped early without a request: never expected */
				hc->err_status = 400;
				hc->err_reason = "unexpected bytes after the request";
			} else {
				parser_error(hc, e);
			}
		}
		return HTTP_EV_ERROR;
	}
	return HTTP_EV_MORE;
}

void http_codec_next(struct http_codec *hc)
{
	CFX_ASSERT(hc->complete);
	hc->complete = 0;
	hc->in_message = 0;
	memset(&hc->req, 0, sizeof hc->req);
	/* A large body's buffer is not kept for the next small request. */
	if (hc->body.cap > 64 * 1024) {
		cfx_writer_free(&hc->body);
		cfx_writer_init(&hc->body, 0);
	}
	cfx_writer_reset(&hc->body);
	cfx_writer_reset(&hc->target);
	cfx_writer_reset(&hc->ce_bytes);
	hc->nce = 0;
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------ */

void http_response_init(struct http_response *resp)
{
	memset(resp, 0, sizeof *resp);
	cfx_writer_init(&resp->body, 0);
	cfx_writer_init(&resp->headers, 0);
}

void http_response_free(struct http_response *resp)
{
	cfx_writer_free(&resp->body);
	cfx_writer_free(&resp->headers);
	CFX_FREE(resp->ctype_owned);
}

/* RFC 7230 tchar. */
static int is_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value we write: visible ASCII, spaces and tabs. */
static int is_value(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)v[i];
		if (c != '\t' && (c < 0x20 || c > 0x7e))
			return 0;
	}
	return 1;
}

int http_response_header(struct http_response *resp, const char *name, size_t nlen,
			 const char *value, size_t vlen)
{
	if (nlen == 0 || !is_value(value, vlen))
		return -1;
	for (size_t i = 0; i < nlen; i++)
		if (!is_tchar((uint8_t)name[i]))
			return -1;
	if (resp->nheaders == HTTP_RESP_HEADERS_MAX ||
	    resp->headers.len + nlen + vlen + 4 > HTTP_RESP_HEADER_BYTES_MAX)
		return -1;
	/* Response: Name: value CRLF */
	cfx_write_bytes(&resp->headers, name, nlen);
	cfx_write_bytes(&resp->headers, ": ", 2);
	cfx_write_bytes(&resp->headers, value, vlen);
	cfx_write_bytes(&resp->headers, "\r\n", 2);
	resp->nheaders++;
	return 0;
}

int http_response_content_type(struct http_response *resp, const char *ct, size_t len)
{
	char *copy;

	if (len == 0 || len > HTTP_RESP_CTYPE_BYTES_MAX || !is_value(ct, len))
		return -1;
	copy = cfx_malloc(len + 1);
	memcpy(copy, ct, len);
	copy[len] = '\0';
	cfx_free(resp->ctype_owned);
	resp->ctype_owned = copy;
	resp->content_type = copy;
	return 0;
}

void http_response_json(struct http_response *resp, int status, json_t *v)
{
	char *text = json_dumps(v, JSON_COMPACT);

	CFX_ASSERT(text); /* only fails on allocation or on values we never build */
	json_decref(v);
	resp->status = status;
	resp->content_type = "application/json";
	cfx_writer_reset(&resp->body);
	cfx_write_bytes(&resp->body, text, strlen(text));
	cfx_write_u8(&resp->body, '\n');
	free(text);
}

const char *http_status_token(int status, char *buf, size_t len)
{
	const char *s = http_status_str((enum http_status)status);
	size_t o = 0;

	CFX_ASSERT(len > 0);
	for (; *s && o + 1 < len; s++) {
		char ch = *s;
		if (ch >= 'A' && ch <= 'Z')
			buf[o++] = (char)(ch - 'A' + 'a');
		else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
			buf[o++] = ch;
		else if (o && buf[o - 1] != '_')
			buf[o++] = '_';
	}
	while (o && buf[o - 1] == '_')
		o--;
	buf[o] = '\0';
	return buf;
}

void http_response_error(struct http_response *resp, int status, const char *fmt, ...)
{
	char reason[512], token[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	http_status_token(status, token, sizeof token);
	/* json_string refuses invalid UTF-8: a reason quoting client bytes may have it. */
	json_t *r = json_string(reason);
	if (!r)
		r = json_string("(the reason quoted bytes that are not UTF-8)");
	http_response_json(resp, status, json_pack("{s:s, s:o}", "error", token, "reason", r));
}

void http_response_encode(const struct http_response *resp, int keep_alive, int head_only,
			  struct cfx_writer *out)
{
	char head[512];
	int n;

	n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n", resp->status,
		     http_status_str((enum http_status)resp->status));
	CFX_ASSERT(n > 0 && (size_t)n < sizeof head);
	cfx_write_bytes(out, head, (size_t)n);
	if (resp->content_type) {
		/* Up to HTTP_RESP_CTYPE_BYTES_MAX: written in pieces, not through `head`. */
		cfx_write_bytes(out, "Content-Type: ", 14);
		cfx_write_bytes(out, resp->content_type, strlen(resp->content_type));
		cfx_write_bytes(out, "\r\n", 2);
	}
	cfx_write_bytes(out, resp->headers.p, resp->headers.len);
	if (resp->allow) {
		n = snprintf(head, sizeof head, "Allow: %s\r\n", resp->allow);
		CFX_ASSERT(n > 0 && (size_t)n < sizeof head);
		cfx_write_bytes(out, head, (size_t)n);
	}
	if (resp->www_authenticate) {
		n = snprintf(head, sizeof head, "WWW-Authenticate: %s\r\n", resp->www_authenticate);
		CFX_ASSERT(n > 0 && (size_t)n < sizeof head);
		cfx_write_bytes(out, head, (size_t)n);
	}
	/* 204 and 304 carry no body and, for 204, no Content-Length either. */
	if (resp->status != 204 && resp->status != 304) {
		n = snprintf(head, sizeof head, "Content-Length: %zu\r\n", resp->body.len);
		cfx_write_bytes(out, head, (size_t)n);
	}
	if (resp->status >= 200)
		cfx_write_bytes(out, "Cache-Control: no-store\r\n", 25);
	if (!keep_alive)
		cfx_write_bytes(out, "Connection: close\r\n", 19);
	cfx_write_bytes(out, "\r\n", 2);
	if (!head_only && resp->status != 204 && resp->status != 304)
		cfx_write_bytes(out, resp->body.p, resp->body.len);
}

/* ------------------------------------------------------------------------
 * The connection protocol
 * ------------------------------------------------------------------------ */

struct h1conn {
	struct cfx_conn *conn;
	const struct http_service *svc;
	struct http_codec codec;
	struct cfx_writer out;	 /* a response being encoded */
	int close_after_flush;	 /* the last response is queued: close once it is sent */
	int shutting_down;	 /* answer the requests received, then close */
	struct http_later *later; /* the deferred answer awaited, or NULL */
	struct cfx_writer held;	 /* input that arrived meanwhile (empty when later is NULL) */
};

/* A deferred answer: what sending it needs once the request is gone. */
struct http_later {
	struct cfx_conn_handle *h; /* finds the connection, if it still exists */
	struct cfx_loop *loop;
	int keep_alive;		   /* the client's wish when it asked */
	int head_only;		   /* a HEAD request */
	const char *method_name;   /* static */
	char target[128];	   /* for the log, cut short */
};

/* Closes once everything queued went out (or now, if nothing is queued). */
static void close_when_sent(struct h1conn *hc, const char *why)
{
	hc->close_after_flush = 1;
	if (cfx_conn_out_bytes(hc->conn) == 0)
		cfx_conn_close(hc->conn, why);
}

static void send_response(struct h1conn *hc, const struct http_response *resp, int keep_alive,
			  int head_only)
{
	cfx_writer_reset(&hc->out);
	http_response_encode(resp, keep_alive, head_only, &hc->out);
	cfx_conn_write(hc->conn, hc->out.p, hc->out.len);
	/* Do not keep a large response's buffer around. */
	if (hc->out.cap > 256 * 1024) {
		cfx_writer_free(&hc->out);
		cfx_writer_init(&hc->out, 4096);
	}
}

/*
 * Answers the request just framed. `more`: bytes of the connection's input
 * follow it. When the server shuts down, the requests already received are
 * still answered; the last of them says Connection: close.
 */
static void serve(struct h1conn *hc, int more)
{
	const struct http_request *req = &hc->codec.req;
	struct http_response resp;
	int keep_alive = req->keep_alive && !(hc->shutting_down && !more);

	http_response_init(&resp);
	resp.h1 = hc;
	hc->codec.req.peer = hc->conn->peer;
	hc->svc->handle(hc->svc->arg, req, &resp);
	if (resp.deferred) {
		cfx_log_debug(CFX_LOGC_PROTO, "http: %s: %s %.*s -> answered later", hc->conn->peer,
			      req->method_name, (int)CFX_MIN(req->target.len, 200), req->target.p);
		http_response_free(&resp);
		return;
	}
	if (resp.status == 0)
		http_response_error(&resp, 500, "the request was not answered");
	cfx_log_debug(CFX_LOGC_PROTO, "http: %s: %s %.*s -> %d (%zu bytes)", hc->conn->peer,
		      req->method_name, (int)CFX_MIN(req->target.len, 200), req->target.p,
		      resp.status, resp.body.len);
	send_response(hc, &resp, keep_alive, req->method == HTTP_HEAD);
	http_response_free(&resp);
	if (!keep_alive)
		hc->close_after_flush = 1; /* on_drain closes once it is sent */
}

static void reject(struct h1conn *hc)
{
	struct http_response resp;

	cfx_log_ratelimited(CFX_LOG_INFO, "http: %s: %d for a malformed request: %s",
			    hc->conn->peer, hc->codec.err_status, hc->codec.err_reason);
	http_response_init(&resp);
	http_response_error(&resp, hc->codec.err_status, "%s", hc->codec.err_reason);
	send_response(hc, &resp, 0, 0);
	http_response_free(&resp);
	hc->close_after_flush = 1;
}

/* ------------------------------------------------------------------------
 * Deferred answers
 * ------------------------------------------------------------------------ */

struct http_later *http_response_defer(struct http_response *resp)
{
	struct h1conn *hc = resp->h1;
	const struct http_request *req;
	struct http_later *later;

	if (resp->later) {
		/* Deferred once already (http_response_reuse_later): the same ticket. */
		CFX_ASSERT(!resp->deferred);
		resp->deferred = 1;
		return resp->later;
	}
	if (!hc)
		return NULL;
	CFX_ASSERT(!hc->later && !resp->deferred);
	req = &hc->codec.req;
	later = cfx_calloc(1, sizeof *later);
	later->h = cfx_conn_handle_get(hc->conn);
	later->loop = hc->conn->loop;
	later->keep_alive = req->keep_alive;
	later->head_only = req->method == HTTP_HEAD;
	later->method_name = req->method_name;
	snprintf(later->target, sizeof later->target, "%.*s",
		 (int)CFX_MIN(req->target.len, sizeof later->target - 1), req->target.p);
	hc->later = later;
	resp->deferred = 1;
	return later;
}

void http_response_reuse_later(struct http_response *resp, struct http_later *later)
{
	resp->later = later;
}

struct cfx_loop *http_later_loop(const struct http_later *later)
{
	return later->loop;
}

/* Is the connection waiting for something before it may close? */
static int is_waiting(const struct h1conn *hc)
{
	return hc->later || http_codec_is_busy(&hc->codec);
}

/*
 * Frames and answers requests from `n` bytes until they run out, the
 * connection is to close (the rest is dropped), or an answer is deferred.
 * Returns the bytes used.
 */
static size_t consume(struct h1conn *hc, const uint8_t *p, size_t n)
{
	size_t total = n;

	/* Once the last response is decided, whatever else comes is dropped. */
	while (n && !hc->close_after_flush && !hc->later) {
		size_t used;
		enum http_event ev = http_codec_feed(&hc->codec, p, n, &used);

		p += used;
		n -= used;
		switch (ev) {
		case HTTP_EV_MORE:
			break;
		case HTTP_EV_CONTINUE:
			cfx_conn_write(hc->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			break;
		case HTTP_EV_REQUEST:
			serve(hc, n > 0);
			http_codec_next(&hc->codec);
			break;
		case HTTP_EV_ERROR:
			reject(hc);
			break;
		}
	}
	return hc->close_after_flush ? total : total - n;
}

/* Keeps input that arrived while an answer is deferred. Returns -1 if over the limit. */
static int hold(struct h1conn *hc, const uint8_t *p, size_t n)
{
	if (!n)
		return 0;
	if (hc->held.len + n > HTTP_HELD_BYTES_MAX) {
		cfx_log_ratelimited(CFX_LOG_INFO, "http: %s: over %u bytes of pipelined requests "
				    "while an answer is pending; closing", hc->conn->peer,
				    (unsigned)HTTP_HELD_BYTES_MAX);
		cfx_conn_close(hc->conn, "too much pipelined input");
		return -1;
	}
	cfx_write_bytes(&hc->held, p, n);
	return 0;
}

void http_later_answer(struct http_later *later, const struct http_response *resp)
{
	struct cfx_conn *c = later->h->conn;
	struct h1conn *hc = c && !c->closing ? c->proto_data : NULL;

	if (hc && hc->later == later) {
		int keep_alive = later->keep_alive && !(hc->shutting_down && !hc->held.len);
		const struct http_response *r = resp;
		struct http_response fallback;

		if (resp->status == 0) {
			http_response_init(&fallback);
			http_response_error(&fallback, 500, "the request was not answered");
			r = &fallback;
		}
		cfx_log_debug(CFX_LOGC_PROTO, "http: %s: %s %s -> %d (%zu bytes, answered later)",
			      c->peer, later->method_name, later->target, r->status, r->body.len);
		hc->later = NULL;
		send_response(hc, r, keep_alive, later->head_only);
		if (r == &fallback)
			http_response_free(&fallback);
		if (!keep_alive) {
			hc->close_after_flush = 1; /* on_drain closes once it is sent */
			cfx_writer_reset(&hc->held);
		} else if (hc->held.len) {
			/* The requests that waited, in order. */
			struct cfx_writer in = hc->held;
			size_t used;
			cfx_writer_init(&hc->held, 0);
			used = consume(hc, in.p, in.len);
			hold(hc, in.p + used, in.len - used);
			cfx_writer_free(&in);
		}
		if (hc->shutting_down && !hc->close_after_flush && !is_waiting(hc))
			close_when_sent(hc, "server shutting down");
	}
	cfx_conn_handle_put(later->h);
	cfx_free(later);
}

/* ------------------------------------------------------------------------
 * Connection callbacks
 * ------------------------------------------------------------------------ */

static int h1_open(struct cfx_conn *c)
{
	struct h1conn *hc = cfx_calloc(1, sizeof *hc);

	hc->conn = c;
	hc->svc = cfx_listener_proto_arg(c->listener);
	http_codec_init(&hc->codec);
	cfx_writer_init(&hc->out, 4096);
	cfx_writer_init(&hc->held, 0);
	c->proto_data = hc;
	return 0;
}

static int h1_read(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	struct h1conn *hc = c->proto_data;
	size_t used = hc->later ? 0 : consume(hc, p, n);

	if (hold(hc, p + used, n - used))
		return 0;
	if (hc->shutting_down && !hc->close_after_flush && !is_waiting(hc))
		close_when_sent(hc, "server shutting down");
	return 0;
}

static void h1_drain(struct cfx_conn *c)
{
	struct h1conn *hc = c->proto_data;

	if (hc && hc->close_after_flush && cfx_conn_out_bytes(c) == 0)
		cfx_conn_close(c, "response sent");
}

static void h1_shutdown(struct cfx_conn *c)
{
	struct h1conn *hc = c->proto_data;

	hc->shutting_down = 1;
	/* Between requests: close (after what is queued). Else the request in
	 * progress, or the deferred answer, goes out with Connection: close. */
	if (!is_waiting(hc))
		close_when_sent(hc, "server shutting down");
}

/* A deferred answer keeps an idle connection open; a slow request does not. */
static int h1_is_busy(struct cfx_conn *c)
{
	struct h1conn *hc = c->proto_data;

	return hc && hc->later;
}

static void h1_close(struct cfx_conn *c)
{
	struct h1conn *hc = c->proto_data;

	if (!hc)
		return;
	/* A deferred answer still on its way finds the connection gone (its handle). */
	http_codec_free(&hc->codec);
	cfx_writer_free(&hc->out);
	cfx_writer_free(&hc->held);
	c->proto_data = NULL;
	cfx_free(hc);
}

const struct cfx_conn_proto http_conn_proto = {
	.name = "http",
	.on_open = h1_open,
	.on_read = h1_read,
	.on_drain = h1_drain,
	.on_shutdown = h1_shutdown,
	.on_close = h1_close,
	.is_busy = h1_is_busy,
};
