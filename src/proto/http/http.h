/*
 * http.h - HTTP/1.1 for the admin API and /metrics: a request codec on
 * top of http-parser, responses with a Content-Length, and the connection
 * protocol that joins them on the network layer (net/conn.h).
 *
 * The codec (http_codec_*) is a pure function of the bytes fed to it: no
 * socket, no broker, so it is unit-tested and fuzzed on its own. It frames
 * one request at a time (pipelined requests wait in the caller's input),
 * copies what a request needs out of the receive buffer (the target, the
 * Content-Type and Authorization headers, the CloudEvents `ce-*` headers,
 * the body), and enforces the limits below before buffering anything. What the routes do with a request is the service's business
 * (admin.c); what this file knows of them is one callback.
 *
 * Not supported, answered and then closed: request bodies without a
 * Content-Length (chunked uploads: 411), HTTP versions other than 1.x
 * (505), protocol upgrades (the request is answered, then the connection
 * closes instead of switching).
 */
#ifndef CFX_PROTO_HTTP_HTTP_H
#define CFX_PROTO_HTTP_HTTP_H

#include <http_parser.h>
#include <jansson.h>

#include "base/buf.h"
#include "events/cloudevent.h"
#include "net/conn.h"

/* Limits, checked before anything is buffered. */
#define HTTP_HEAD_BYTES_MAX (16u * 1024)  /* request line and headers: else 431 */
#define HTTP_HEADERS_MAX 100u		   /* header fields: else 431 */
#define HTTP_BODY_BYTES_MAX (1024u * 1024) /* Content-Length: else 413 */
#define HTTP_CTYPE_BYTES_MAX 128u	   /* a longer Content-Type is kept cut short */
#define HTTP_AUTHZ_BYTES_MAX 1024u	   /* an Authorization header (longer: 431) */
/* CloudEvents binary mode (docs/eventbridge.md): `ce-*` header fields are kept, within these. */
#define HTTP_CE_HEADERS_MAX 64u		   /* ce-* fields of one request: else 431 */
#define HTTP_CE_BYTES_MAX (8u * 1024)	   /* their names and values, in total: else 431 */
#define HTTP_CE_NAME_BYTES_MAX (3u + CFX_CE_NAME_BYTES_MAX) /* "ce-" + an attribute name: else 431 */
#define HTTP_FIELD_BYTES_MAX HTTP_CE_NAME_BYTES_MAX /* header names kept while reading one */

/* A complete request. Views point into the codec; valid until http_codec_next. */
struct http_request {
	int method;		      /* enum http_method */
	const char *method_name;      /* "GET", static */
	struct cfx_view target;	      /* the request target as sent ("/v1/topics?x=1") */
	struct cfx_view content_type; /* empty if absent */
	struct cfx_view body;	      /* empty if none */
	struct cfx_view authorization; /* the Authorization header; empty if absent */
	int content_type_cut;	      /* the Content-Type was longer than HTTP_CTYPE_BYTES_MAX */
	const struct cfx_ce_header *ce_headers; /* the ce-* fields in order, names as sent */
	size_t ce_headers_n;
	const char *peer;	      /* "ip:port" of the client; NULL outside a connection */
	int keep_alive;		      /* another request may follow on the connection */
};

enum http_event {
	HTTP_EV_MORE,	  /* every byte was consumed; a request needs more */
	HTTP_EV_CONTINUE, /* headers asked for "100 Continue" before their body */
	HTTP_EV_REQUEST,  /* a request is complete: codec.req */
	HTTP_EV_ERROR,	  /* malformed or over a limit: err_status, err_reason; the codec is dead */
};

struct http_codec {
	http_parser parser;
	struct cfx_writer target;  /* request target, collected across reads */
	struct cfx_writer body;
	char field[HTTP_FIELD_BYTES_MAX]; /* the header name being read (longer ones are not kept) */
	size_t field_len;		   /* may exceed the buffer: the name's real length */
	int in_value;		   /* the last callback was a header value */
	int cur_header;		   /* what the current value is for (http.c) */
	char ctype[HTTP_CTYPE_BYTES_MAX];
	size_t ctype_len;
	char expect[32];
	char authz[HTTP_AUTHZ_BYTES_MAX];
	size_t authz_len;	   /* past the buffer: too long, refused */
	size_t expect_len;
	uint32_t nheaders;
	struct cfx_writer ce_bytes;	   /* names and values of the ce-* fields, back to back */
	struct {
		uint16_t name_off, name_len, value_off, value_len; /* into ce_bytes */
	} ce_at[HTTP_CE_HEADERS_MAX];
	struct cfx_ce_header ce[HTTP_CE_HEADERS_MAX]; /* req.ce_headers, built when complete */
	uint32_t nce;
	int ctype_cut;			   /* the Content-Type did not fit in ctype */
	int in_message;		   /* bytes of a request were seen, and it is not complete */
	int complete;		   /* req is valid (until http_codec_next) */
	int want_continue;	   /* HTTP_EV_CONTINUE is due */
	int dead;		   /* after an error */

	int err_status;		   /* HTTP_EV_ERROR: the status to answer (400, 411, 413, ...) */
	const char *err_reason;	   /* HTTP_EV_ERROR: why, static */
	struct http_request req;   /* HTTP_EV_REQUEST */
};

/* Prepares a codec for the first request of a connection. */
void http_codec_init(struct http_codec *hc);
/* Frees what the codec buffered. */
void http_codec_free(struct http_codec *hc);

/*
 * Parses `n` bytes (borrowed until return) and stops at the first event:
 * returns it, with *used = the bytes consumed up to it. After
 * HTTP_EV_REQUEST the caller answers hc->req, calls http_codec_next, then
 * feeds the rest of its input (pipelined requests). After HTTP_EV_CONTINUE
 * it sends "100 Continue" and feeds the rest. After HTTP_EV_ERROR the
 * caller answers err_status and closes the connection; later feeds return
 * HTTP_EV_ERROR again and consume nothing.
 */
enum http_event http_codec_feed(struct http_codec *hc, const uint8_t *p, size_t n, size_t *used);

/* Forgets the request just answered and gets ready for the next one. */
void http_codec_next(struct http_codec *hc);

/* Is a request partly received (bytes seen, not complete yet)? */
static inline int http_codec_is_busy(const struct http_codec *hc)
{
	return hc->in_message && !hc->complete;
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------ */

struct h1conn;

/* Extra header lines of one response (http_response_header). */
#define HTTP_RESP_HEADERS_MAX 80u		/* lines */
#define HTTP_RESP_HEADER_BYTES_MAX (16u * 1024) /* their bytes, in total */
#define HTTP_RESP_CTYPE_BYTES_MAX 1024u		/* a Content-Type set by http_response_content_type */

struct http_response {
	int status;		  /* 200, 404, ... */
	const char *content_type; /* static, or ctype_owned; NULL = no Content-Type */
	const char *allow;	  /* 405: methods for the Allow header, static */
	const char *www_authenticate; /* 401: the challenge, static */
	struct cfx_writer body;
	struct cfx_writer headers; /* extra header lines "Name: value\r\n", owned */
	uint32_t nheaders;	   /* lines in `headers` */
	char *ctype_owned;	   /* the copy http_response_content_type made, owned */
	/* private to http.c */
	struct h1conn *h1;	  /* the connection answering it; NULL outside one */
	int deferred;		  /* http_response_defer was called */
	struct http_later *later; /* a ticket taken before: http_response_defer hands it on */
};

/* Prepares an empty response: status 0, no body. */
void http_response_init(struct http_response *resp);
/* Frees the response's body, extra headers and owned Content-Type. */
void http_response_free(struct http_response *resp);

/*
 * Adds the header line "name: value" (borrowed; copied). The name must be
 * an RFC 7230 token and the value printable ASCII, spaces and tabs (no CR,
 * LF, NUL); both are checked, so bytes from stored data cannot split the
 * head. Returns 0, or -1 (nothing added) for a bad name or value, or when
 * HTTP_RESP_HEADERS_MAX lines or HTTP_RESP_HEADER_BYTES_MAX bytes would be
 * exceeded. Content-Length, Connection and the headers the fields above
 * set are http.c's: do not add them here.
 */
int http_response_header(struct http_response *resp, const char *name, size_t nlen,
			 const char *value, size_t vlen);

/*
 * Sets a Content-Type that is not a static string (a copy is owned by the
 * response and freed with it). Returns 0, or -1 (unchanged) when it is
 * longer than HTTP_RESP_CTYPE_BYTES_MAX or has bytes a header value may
 * not have.
 */
int http_response_content_type(struct http_response *resp, const char *ct, size_t len);

/* Sets a JSON body (compact, UTF-8). Takes ownership of `v`. */
void http_response_json(struct http_response *resp, int status, json_t *v);

/*
 * Sets the error body {"error": TOKEN, "reason": REASON}: TOKEN names the
 * status in snake case ("not_found", "payload_too_large"), REASON says what
 * was wrong in words.
 */
void http_response_error(struct http_response *resp, int status, const char *fmt, ...)
	CFX_PRINTF(3, 4);

/* The snake-case token of a status ("bad_request"), into `buf`. */
const char *http_status_token(int status, char *buf, size_t len);

/*
 * Appends the status line, headers and (unless `head_only`, for HEAD
 * requests) the body of `resp` to `out`, with a Content-Length always and
 * "Connection: close" unless `keep_alive`.
 */
void http_response_encode(const struct http_response *resp, int keep_alive, int head_only,
			  struct cfx_writer *out);

/* ------------------------------------------------------------------------
 * Answering later
 *
 * A handler whose answer waits for work completing on another thread (an
 * append the store acknowledges after its fdatasync) defers it instead of
 * blocking the loop: it calls http_response_defer, returns, and the
 * completion posts a task to http_later_loop(later) that builds the answer
 * and calls http_later_answer. Until then the connection answers nothing
 * else: pipelined requests wait (up to HTTP_HELD_BYTES_MAX of them, beyond
 * which the connection closes), the idle timeout does not apply, and a
 * server shutdown waits for the answer (within its drain time).
 * ------------------------------------------------------------------------ */

#define HTTP_HELD_BYTES_MAX (HTTP_HEAD_BYTES_MAX + HTTP_BODY_BYTES_MAX) /* pipelined input kept */

struct http_later;

/*
 * Defers the answer of the request being handled; `resp` is then ignored.
 * Returns the ticket to answer with, or NULL when the request is not on a
 * connection (then the handler must answer in `resp` now). The request's
 * views die when the handler returns: copy what the answer needs.
 * @thread loop, inside http_service.handle
 */
struct http_later *http_response_defer(struct http_response *resp);

/*
 * For a service that deferred a request itself and handles it later (a
 * password checked on another thread): `resp`, the response it then
 * builds, may be deferred again, and http_response_defer returns `later`
 * (then the handler owns it, and the service must not answer with it).
 */
void http_response_reuse_later(struct http_response *resp, struct http_later *later);

/* The loop the answer must be given on. @thread any */
struct cfx_loop *http_later_loop(const struct http_later *later);

/*
 * Sends `resp` (borrowed) as the deferred answer, then serves the requests
 * that waited; drops it if the connection closed meanwhile. Frees `later`.
 * @thread http_later_loop(later)
 */
void http_later_answer(struct http_later *later, const struct http_response *resp);

/* ------------------------------------------------------------------------
 * The connection protocol
 * ------------------------------------------------------------------------ */

/*
 * What answers the requests of a listener: its proto_arg (cfx_listener_opts)
 * is a struct http_service, borrowed for as long as the listener lives.
 */
struct http_service {
	/*
	 * Answers one request by filling `resp` (initialised, status 0; left
	 * at 0 it becomes a 500), or defers the answer (http_response_defer).
	 * Runs on the connection's loop and must not block on anything but
	 * short, bounded work.
	 */
	void (*handle)(void *arg, const struct http_request *req, struct http_response *resp);
	void *arg;
};

/*
 * HTTP/1.1 with keep-alive and pipelining: requests are answered in order,
 * one at a time (a deferred answer holds the ones behind it). A connection closes after a response when the client asks
 * (Connection: close, HTTP/1.0 without keep-alive), after a codec error
 * (its 4xx/5xx answer goes first), and on server shutdown between requests.
 */
extern const struct cfx_conn_proto http_conn_proto;

#endif
