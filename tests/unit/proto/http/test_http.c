/*
 * Unit tests for src/proto/http/http.c: the request codec on its own
 * (pipelining, requests split at every byte, the limits, malformed input,
 * the CloudEvents ce- fields and their limits), response encoding (extra
 * header lines too), and the connection protocol on memory connections
 * (net/conn.h) with a small echo service: answers in order, 400 and close
 * after garbage, close after "Connection: close" and at shutdown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/http/http.h"

/* ------------------------------------------------------------------------
 * The codec
 * ------------------------------------------------------------------------ */

/* Feeds all of `s` at once; returns the event and the bytes used. */
static enum http_event feed_str(struct http_codec *hc, const char *s, size_t *used)
{
	return http_codec_feed(hc, (const uint8_t *)s, strlen(s), used);
}

static void assert_view(struct cfx_view v, const char *s)
{
	assert_int_equal(v.len, strlen(s));
	assert_memory_equal(v.p, s, v.len);
}

static void test_simple_get(void **state)
{
	const char *r = "GET /v1/status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
	struct http_codec hc;
	size_t used;
	(void)state;

	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, r, &used), HTTP_EV_REQUEST);
	assert_int_equal(used, strlen(r));
	assert_int_equal(hc.req.method, HTTP_GET);
	assert_string_equal(hc.req.method_name, "GET");
	assert_view(hc.req.target, "/v1/status?x=1");
	assert_int_equal(hc.req.body.len, 0);
	assert_int_equal(hc.req.content_type.len, 0);
	assert_true(hc.req.keep_alive);
	http_codec_next(&hc);
	assert_false(http_codec_is_busy(&hc));
	http_codec_free(&hc);
}

static const char pipelined[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				"POST /b HTTP/1.1\r\nContent-Type: application/json\r\n"
				"Content-Length: 7\r\n\r\n{\"k\":1}"
				"DELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n";

/* The three requests of `pipelined`, checked as they come. */
static void check_pipelined(struct http_codec *hc, int i)
{
	switch (i) {
	case 0:
		assert_int_equal(hc->req.method, HTTP_GET);
		assert_view(hc->req.target, "/a");
		assert_true(hc->req.keep_alive);
		break;
	case 1:
		assert_int_equal(hc->req.method, HTTP_POST);
		assert_view(hc->req.target, "/b");
		assert_view(hc->req.content_type, "application/json");
		assert_view(hc->req.body, "{\"k\":1}");
		assert_true(hc->req.keep_alive);
		break;
	case 2:
		assert_int_equal(hc->req.method, HTTP_DELETE);
		assert_view(hc->req.target, "/c");
		assert_int_equal(hc->req.body.len, 0);
		assert_false(hc->req.keep_alive);
		break;
	default:
		fail();
	}
}

static void test_pipelined(void **state)
{
	const uint8_t *p = (const uint8_t *)pipelined;
	size_t n = sizeof pipelined - 1, used;
	struct http_codec hc;
	int seen = 0;
	(void)state;

	http_codec_init(&hc);
	while (n) {
		enum http_event ev = http_codec_feed(&hc, p, n, &used);
		assert_int_equal(ev, HTTP_EV_REQUEST);
		check_pipelined(&hc, seen++);
		http_codec_next(&hc);
		p += used;
		n -= used;
	}
	assert_int_equal(seen, 3);
	http_codec_free(&hc);
}

/* Feeds `pipelined` in pieces cut at `cuts`; every request must come out whole. */
static int feed_cut(const size_t *cuts, int ncuts)
{
	size_t n = sizeof pipelined - 1, from = 0;
	struct http_codec hc;
	int seen = 0;

	http_codec_init(&hc);
	for (int c = 0; c <= ncuts; c++) {
		size_t to = c < ncuts ? cuts[c] : n, used;
		const uint8_t *p = (const uint8_t *)pipelined + from;
		size_t len = to - from;

		while (len) {
			enum http_event ev = http_codec_feed(&hc, p, len, &used);
			assert_true(ev == HTTP_EV_REQUEST || ev == HTTP_EV_MORE);
			p += used;
			len -= used;
			if (ev == HTTP_EV_REQUEST) {
				check_pipelined(&hc, seen++);
				http_codec_next(&hc);
			} else {
				assert_int_equal(len, 0);
			}
		}
		from = to;
	}
	assert_false(http_codec_is_busy(&hc));
	http_codec_free(&hc);
	return seen;
}

static void test_split_at_every_byte(void **state)
{
	size_t n = sizeof pipelined - 1, cuts[2];
	(void)state;

	/* One cut anywhere, then two cuts anywhere. */
	for (size_t i = 1; i < n; i++) {
		cuts[0] = i;
		assert_int_equal(feed_cut(cuts, 1), 3);
	}
	for (size_t i = 1; i < n; i += 3)
		for (size_t j = i + 1; j < n; j += 5) {
			cuts[0] = i;
			cuts[1] = j;
			assert_int_equal(feed_cut(cuts, 2), 3);
		}
}

static void test_byte_by_byte(void **state)
{
	size_t n = sizeof pipelined - 1, used;
	struct http_codec hc;
	int seen = 0;
	(void)state;

	http_codec_init(&hc);
	for (size_t i = 0; i < n; i++) {
		enum http_event ev = http_codec_feed(&hc, (const uint8_t *)pipelined + i, 1, &used);
		assert_int_equal(used, 1);
		if (ev == HTTP_EV_REQUEST) {
			check_pipelined(&hc, seen++);
			http_codec_next(&hc);
		} else {
			assert_int_equal(ev, HTTP_EV_MORE);
			assert_true(http_codec_is_busy(&hc));
		}
	}
	assert_int_equal(seen, 3);
	http_codec_free(&hc);
}

/* A request with `nbytes` of header values spread over headers of 1000 bytes. */
static char *big_head(size_t nbytes, size_t per_header)
{
	struct cfx_writer w;

	cfx_writer_init(&w, nbytes + 256);
	cfx_write_bytes(&w, "GET / HTTP/1.1\r\n", 16);
	for (size_t i = 0; nbytes; i++) {
		size_t k = CFX_MIN(nbytes, per_header);
		char name[32];
		int nl = snprintf(name, sizeof name, "X-H%zu: ", i);
		cfx_write_bytes(&w, name, (size_t)nl);
		for (size_t j = 0; j < k; j++)
			cfx_write_u8(&w, 'v');
		cfx_write_bytes(&w, "\r\n", 2);
		nbytes -= k;
	}
	cfx_write_bytes(&w, "\r\n", 2);
	cfx_write_u8(&w, 0);
	return (char *)w.p;
}

static void expect_error(const char *req, int status)
{
	struct http_codec hc;
	size_t used;

	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, req, &used), HTTP_EV_ERROR);
	assert_int_equal(hc.err_status, status);
	assert_non_null(hc.err_reason);
	/* Dead from now on: nothing more is consumed. */
	assert_int_equal(feed_str(&hc, "GET / HTTP/1.1\r\n\r\n", &used), HTTP_EV_ERROR);
	assert_int_equal(used, 0);
	http_codec_free(&hc);
}

static void test_head_limit(void **state)
{
	struct http_codec hc;
	size_t used;
	char *ok = big_head(HTTP_HEAD_BYTES_MAX - 1024, 1000);
	char *big = big_head(HTTP_HEAD_BYTES_MAX + 10, 1000);
	char *one = big_head(HTTP_HEAD_BYTES_MAX + 10, HTTP_HEAD_BYTES_MAX + 10);
	(void)state;

	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, ok, &used), HTTP_EV_REQUEST);
	http_codec_free(&hc);
	expect_error(big, 431);
	expect_error(one, 431);
	/* A long target counts too. */
	struct cfx_writer w;
	cfx_writer_init(&w, 0);
	cfx_write_bytes(&w, "GET /", 5);
	for (int i = 0; i < (int)HTTP_HEAD_BYTES_MAX; i++)
		cfx_write_u8(&w, 'a');
	cfx_write_bytes(&w, " HTTP/1.1\r\n\r\n", 14);
	expect_error((const char *)w.p, 431);
	cfx_writer_free(&w);
	free(ok);
	free(big);
	free(one);
}

static void test_too_many_headers(void **state)
{
	char *ok = big_head(HTTP_HEADERS_MAX, 1), *many = big_head(HTTP_HEADERS_MAX + 1, 1);
	struct http_codec hc;
	size_t used;
	(void)state;

	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, ok, &used), HTTP_EV_REQUEST);
	http_codec_free(&hc);
	expect_error(many, 431);
	free(ok);
	free(many);
}

static void test_body_limit(void **state)
{
	char head[128];
	struct http_codec hc;
	size_t used;
	uint8_t *body = calloc(1, HTTP_BODY_BYTES_MAX);
	(void)state;

	/* Exactly the limit: accepted, in pieces. */
	snprintf(head, sizeof head, "POST /x HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
		 HTTP_BODY_BYTES_MAX);
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, head, &used), HTTP_EV_MORE);
	assert_int_equal(http_codec_feed(&hc, body, HTTP_BODY_BYTES_MAX / 2, &used), HTTP_EV_MORE);
	assert_int_equal(http_codec_feed(&hc, body, HTTP_BODY_BYTES_MAX / 2, &used),
			 HTTP_EV_REQUEST);
	assert_int_equal(hc.req.body.len, HTTP_BODY_BYTES_MAX);
	http_codec_next(&hc);
	http_codec_free(&hc);

	/* One byte more: refused before any of the body is read. */
	snprintf(head, sizeof head, "POST /x HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
		 HTTP_BODY_BYTES_MAX + 1);
	expect_error(head, 413);
	free(body);
}

static void test_chunked_refused(void **state)
{
	(void)state;
	expect_error("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		     411);
	/* Any other transfer coding: 400 (http-parser). */
	expect_error("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_error("GARBAGE\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400);
	expect_error("GET / FTP/1.1\r\n\r\n", 400);
	expect_error("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400); /* a TLS hello */
	expect_error("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400);		  /* HTTP/2 preface */
	expect_error("GET / HTTP/2.0\r\n\r\n", 505);
	expect_error("GET / HTTP/1.1\r\nExpect: something\r\n\r\n", 417);
}

static void test_keep_alive_rules(void **state)
{
	static const struct {
		const char *req;
		int keep_alive;
	} cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 0 },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct http_codec hc;
		size_t used;
		http_codec_init(&hc);
		assert_int_equal(feed_str(&hc, cases[i].req, &used), HTTP_EV_REQUEST);
		assert_int_equal(hc.req.keep_alive, cases[i].keep_alive);
		http_codec_next(&hc);
		http_codec_free(&hc);
	}
}

static void test_expect_continue(void **state)
{
	const char *req = "POST /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\nhello";
	struct http_codec hc;
	size_t used, rest;
	(void)state;

	/* The event comes at the end of the head; the caller feeds on from there. */
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, req, &used), HTTP_EV_CONTINUE);
	assert_true(used <= strlen(req) - 5);
	rest = strlen(req) - used;
	assert_int_equal(http_codec_feed(&hc, (const uint8_t *)req + used, rest, &used),
			 HTTP_EV_REQUEST);
	assert_int_equal(used, rest);
	assert_view(hc.req.body, "hello");
	http_codec_next(&hc);
	/* Without a body there is nothing to wait for. */
	assert_int_equal(feed_str(&hc, "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", &used),
			 HTTP_EV_REQUEST);
	http_codec_next(&hc);
	http_codec_free(&hc);
}

static void test_last_content_type_wins(void **state)
{
	struct http_codec hc;
	size_t used;
	(void)state;

	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, "POST / HTTP/1.1\r\ncontent-TYPE: text/plain\r\n"
				       "Content-Type: application/json; charset=utf-8\r\n\r\n",
				  &used),
			 HTTP_EV_REQUEST);
	assert_view(hc.req.content_type, "application/json; charset=utf-8");
	http_codec_next(&hc);
	http_codec_free(&hc);
}

/* ------------------------------------------------------------------------
 * CloudEvents ce-* header fields
 * ------------------------------------------------------------------------ */

static void assert_ce(const struct http_request *req, size_t i, const char *name,
		      const char *value)
{
	assert_true(i < req->ce_headers_n);
	assert_int_equal(req->ce_headers[i].name_len, strlen(name));
	assert_memory_equal(req->ce_headers[i].name, name, strlen(name));
	assert_int_equal(req->ce_headers[i].value_len, strlen(value));
	assert_memory_equal(req->ce_headers[i].value, value, strlen(value));
}

static const char ce_request[] = "POST /v1/buses/default/events HTTP/1.1\r\n"
				 "CE-SpecVersion: 1.0\r\n"
				 "ce-id: 42\r\n"
				 "X-Other: not kept\r\n"
				 "Ce-Source: /orders%20eu\r\n"
				 "Content-Type: text/plain\r\n"
				 "ce-type: order.created\r\n"
				 "ce-empty:\r\n"
				 "Content-Length: 5\r\n\r\nhello"
				 "GET /next HTTP/1.1\r\n\r\n";

static void check_ce_request(struct http_codec *hc, int i)
{
	if (i == 1) {
		assert_int_equal(hc->req.ce_headers_n, 0); /* nothing left of the first request */
		assert_null(hc->req.ce_headers);
		return;
	}
	assert_int_equal(hc->req.ce_headers_n, 5);
	assert_ce(&hc->req, 0, "CE-SpecVersion", "1.0");
	assert_ce(&hc->req, 1, "ce-id", "42");
	assert_ce(&hc->req, 2, "Ce-Source", "/orders%20eu");
	assert_ce(&hc->req, 3, "ce-type", "order.created");
	assert_ce(&hc->req, 4, "ce-empty", "");
	assert_view(hc->req.content_type, "text/plain");
	assert_false(hc->req.content_type_cut);
	assert_view(hc->req.body, "hello");
}

static void test_ce_headers_kept(void **state)
{
	size_t n = sizeof ce_request - 1, used;
	(void)state;

	/* At once, then cut at every byte (names and values arrive in pieces). */
	for (size_t cut = 0; cut < n; cut++) {
		struct http_codec hc;
		const uint8_t *p = (const uint8_t *)ce_request;
		size_t off = 0;
		int seen = 0;

		http_codec_init(&hc);
		while (off < n) {
			size_t end = cut && off < cut ? cut : n;
			enum http_event ev = http_codec_feed(&hc, p + off, end - off, &used);
			off += used;
			if (ev == HTTP_EV_REQUEST) {
				check_ce_request(&hc, seen++);
				http_codec_next(&hc);
			} else {
				assert_int_equal(ev, HTTP_EV_MORE);
			}
		}
		assert_int_equal(seen, 2);
		http_codec_free(&hc);
	}
}

/* A request with `n` ce- fields "ce-aNNN: " + `vlen` bytes each. */
static char *ce_head(size_t n, size_t vlen)
{
	struct cfx_writer w;

	cfx_writer_init(&w, 0);
	cfx_write_bytes(&w, "GET / HTTP/1.1\r\n", 16);
	for (size_t i = 0; i < n; i++) {
		char name[32];
		int nl = snprintf(name, sizeof name, "ce-a%03zu: ", i);
		cfx_write_bytes(&w, name, (size_t)nl);
		for (size_t j = 0; j < vlen; j++)
			cfx_write_u8(&w, 'v');
		cfx_write_bytes(&w, "\r\n", 2);
	}
	cfx_write_bytes(&w, "\r\n", 2);
	cfx_write_u8(&w, 0);
	return (char *)w.p;
}

static void test_ce_limits(void **state)
{
	struct http_codec hc;
	size_t used;
	char *s;
	(void)state;

	/* HTTP_CE_HEADERS_MAX fields: kept; one more: 431. */
	s = ce_head(HTTP_CE_HEADERS_MAX, 1);
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, s, &used), HTTP_EV_REQUEST);
	assert_int_equal(hc.req.ce_headers_n, HTTP_CE_HEADERS_MAX);
	assert_ce(&hc.req, HTTP_CE_HEADERS_MAX - 1, "ce-a063", "v");
	http_codec_free(&hc);
	free(s);
	s = ce_head(HTTP_CE_HEADERS_MAX + 1, 1);
	expect_error(s, 431);
	free(s);

	/* HTTP_CE_BYTES_MAX of names and values exactly: kept; one byte more: 431. */
	size_t per = HTTP_CE_BYTES_MAX / 8 - 7; /* 8 fields of "ce-aNNN" (7) + value */
	s = ce_head(8, per);
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, s, &used), HTTP_EV_REQUEST);
	assert_int_equal(hc.req.ce_headers_n, 8);
	http_codec_free(&hc);
	free(s);
	s = ce_head(8, per);
	char *last = strstr(s, "ce-a007: ") + 9;
	size_t rest = strlen(last);
	char *bigger = malloc(strlen(s) + 2);
	memcpy(bigger, s, (size_t)(last - s));
	bigger[last - s] = 'v';
	memcpy(bigger + (last - s) + 1, last, rest + 1);
	expect_error(bigger, 431);
	free(bigger);
	free(s);

	/* A ce- name of HTTP_CE_NAME_BYTES_MAX: kept; longer: 431. Other long names are fine. */
	char req[512], name[128];
	memset(name, 'n', sizeof name);
	memcpy(name, "ce-", 3);
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%.*s: 1\r\n\r\n", (int)HTTP_CE_NAME_BYTES_MAX,
		 name);
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, req, &used), HTTP_EV_REQUEST);
	assert_int_equal(hc.req.ce_headers_n, 1);
	assert_int_equal(hc.req.ce_headers[0].name_len, HTTP_CE_NAME_BYTES_MAX);
	http_codec_free(&hc);
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%.*s: 1\r\n\r\n",
		 (int)HTTP_CE_NAME_BYTES_MAX + 1, name);
	expect_error(req, 431);
	memcpy(name, "x-e", 3);
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%.*s: 1\r\n\r\n", 120, name);
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, req, &used), HTTP_EV_REQUEST);
	assert_int_equal(hc.req.ce_headers_n, 0);
	http_codec_free(&hc);

	/* "cex-" and "c" are not ce- fields; "ce-" alone is (the event codec refuses it). */
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, "GET / HTTP/1.1\r\ncex-a: 1\r\nc: 2\r\nce-: 3\r\n\r\n", &used),
			 HTTP_EV_REQUEST);
	assert_int_equal(hc.req.ce_headers_n, 1);
	assert_ce(&hc.req, 0, "ce-", "3");
	http_codec_free(&hc);
}

static void test_content_type_cut(void **state)
{
	char req[512], ct[HTTP_CTYPE_BYTES_MAX + 2];
	struct http_codec hc;
	size_t used;
	(void)state;

	memset(ct, 'a', sizeof ct - 1);
	ct[sizeof ct - 1] = '\0';
	memcpy(ct, "text/", 5);
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\nContent-Type: %s\r\n\r\n", ct);
	http_codec_init(&hc);
	assert_int_equal(feed_str(&hc, req, &used), HTTP_EV_REQUEST);
	assert_int_equal(hc.req.content_type.len, HTTP_CTYPE_BYTES_MAX);
	assert_true(hc.req.content_type_cut);
	http_codec_next(&hc);
	/* The last Content-Type counts, and so does its length. */
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\nContent-Type: %s\r\nContent-Type: a/b\r\n\r\n",
		 ct);
	assert_int_equal(feed_str(&hc, req, &used), HTTP_EV_REQUEST);
	assert_view(hc.req.content_type, "a/b");
	assert_false(hc.req.content_type_cut);
	http_codec_free(&hc);
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------ */

static void test_status_token(void **state)
{
	char buf[64];
	(void)state;

	assert_string_equal(http_status_token(400, buf, sizeof buf), "bad_request");
	assert_string_equal(http_status_token(404, buf, sizeof buf), "not_found");
	assert_string_equal(http_status_token(413, buf, sizeof buf), "payload_too_large");
	assert_string_equal(http_status_token(431, buf, sizeof buf),
			    "request_header_fields_too_large");
	assert_string_equal(http_status_token(505, buf, sizeof buf), "http_version_not_supported");
}

static char *encoded(const struct http_response *resp, int keep_alive, int head_only)
{
	struct cfx_writer w;

	cfx_writer_init(&w, 0);
	http_response_encode(resp, keep_alive, head_only, &w);
	cfx_write_u8(&w, 0);
	return (char *)w.p;
}

static void test_response_encode(void **state)
{
	struct http_response resp;
	char *s;
	(void)state;

	http_response_init(&resp);
	http_response_error(&resp, 404, "no topic \"%s\"", "t");
	s = encoded(&resp, 1, 0);
	assert_string_equal(s, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
			       "Content-Length: 48\r\nCache-Control: no-store\r\n\r\n"
			       "{\"error\":\"not_found\",\"reason\":\"no topic \\\"t\\\"\"}\n");
	free(s);
	/* HEAD: the length of the body that is not sent. */
	s = encoded(&resp, 0, 1);
	assert_non_null(strstr(s, "Content-Length: 48\r\n"));
	assert_non_null(strstr(s, "Connection: close\r\n\r\n"));
	assert_null(strstr(s, "{"));
	free(s);
	http_response_free(&resp);

	http_response_init(&resp);
	resp.status = 204;
	s = encoded(&resp, 1, 0);
	assert_string_equal(s, "HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\n\r\n");
	free(s);
	http_response_free(&resp);

	/* A reason that is not UTF-8 still gives valid JSON. */
	http_response_init(&resp);
	http_response_error(&resp, 400, "bad \xff");
	s = encoded(&resp, 1, 0);
	assert_non_null(strstr(s, "\"error\":\"bad_request\""));
	free(s);
	http_response_free(&resp);
}

static void test_response_extra_headers(void **state)
{
	struct http_response resp;
	char *s, big[HTTP_RESP_CTYPE_BYTES_MAX + 1];
	(void)state;

	http_response_init(&resp);
	resp.status = 200;
	assert_int_equal(http_response_content_type(&resp, "text/plain; charset=utf-8", 25), 0);
	assert_int_equal(http_response_header(&resp, "ce-id", 5, "42", 2), 0);
	assert_int_equal(http_response_header(&resp, "ce-source", 9, "/a%20b", 6), 0);
	/* Nothing that could split the head or break the field syntax. */
	assert_int_equal(http_response_header(&resp, "ce-x", 4, "a\r\nX: y", 7), -1);
	assert_int_equal(http_response_header(&resp, "ce x", 4, "a", 1), -1);
	assert_int_equal(http_response_header(&resp, "ce:x", 4, "a", 1), -1);
	assert_int_equal(http_response_header(&resp, "", 0, "a", 1), -1);
	assert_int_equal(http_response_header(&resp, "ce-y", 4, "\xc3\xa9", 2), -1);
	assert_int_equal(http_response_content_type(&resp, "a/b\r\n", 5), -1);
	memset(big, 'a', sizeof big);
	assert_int_equal(http_response_content_type(&resp, big, sizeof big), -1);
	cfx_write_bytes(&resp.body, "hi", 2);
	s = encoded(&resp, 1, 0);
	assert_string_equal(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
			       "ce-id: 42\r\nce-source: /a%20b\r\nContent-Length: 2\r\n"
			       "Cache-Control: no-store\r\n\r\nhi");
	free(s);
	/* A JSON body replaces the type, not the extra lines. */
	http_response_json(&resp, 200, json_pack("{s:i}", "a", 1));
	s = encoded(&resp, 1, 0);
	assert_non_null(strstr(s, "Content-Type: application/json\r\nce-id: 42\r\n"));
	free(s);
	http_response_free(&resp);

	/* The limits: lines, then bytes. */
	http_response_init(&resp);
	for (uint32_t i = 0; i < HTTP_RESP_HEADERS_MAX; i++)
		assert_int_equal(http_response_header(&resp, "ce-a", 4, "v", 1), 0);
	assert_int_equal(http_response_header(&resp, "ce-a", 4, "v", 1), -1);
	http_response_free(&resp);
	http_response_init(&resp);
	char *v = malloc(HTTP_RESP_HEADER_BYTES_MAX);
	memset(v, 'v', HTTP_RESP_HEADER_BYTES_MAX);
	assert_int_equal(http_response_header(&resp, "a", 1, v, HTTP_RESP_HEADER_BYTES_MAX - 5), 0);
	assert_int_equal(http_response_header(&resp, "b", 1, v, 0), -1);
	free(v);
	http_response_free(&resp);
}

/* A request deferred once (a password being checked) may be deferred again by its route. */
static void test_response_reuse_later(void **state)
{
	struct http_response resp;
	struct http_later *ticket = (struct http_later *)&resp; /* only compared */
	(void)state;

	http_response_init(&resp);
	assert_null(http_response_defer(&resp)); /* not on a connection */
	http_response_reuse_later(&resp, ticket);
	assert_ptr_equal(http_response_defer(&resp), ticket);
	assert_true(resp.deferred);
	http_response_free(&resp);
}

/* ------------------------------------------------------------------------
 * The connection protocol, on memory connections
 * ------------------------------------------------------------------------ */

static int handled;

/* Answers {"method": M, "target": T, "body": B}. */
static void echo(void *arg, const struct http_request *req, struct http_response *resp)
{
	(void)arg;
	handled++;
	http_response_json(resp, 200,
			   json_pack("{s:s, s:s%, s:s%}", "method", req->method_name, "target",
				     (const char *)req->target.p, req->target.len, "body",
				     (const char *)req->body.p, req->body.len));
}

static struct http_service echo_svc = { .handle = echo };

struct fixture {
	struct cfx_loop *loop;
	struct cfx_conn *c;
	struct cfx_writer out;
};

static int conn_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	cfx_log_set_level(CFX_LOG_ERROR - 1);
	if (cfx_loop_new(&f->loop, "test"))
		return -1;
	f->c = cfx_conn_new_memory(f->loop, &http_conn_proto, &echo_svc);
	cfx_writer_init(&f->out, 0);
	handled = 0;
	*state = f;
	return 0;
}

static int conn_teardown(void **state)
{
	struct fixture *f = *state;

	cfx_conn_free_memory(f->c);
	while (cfx_loop_run_pending(f->loop))
		;
	cfx_loop_free(f->loop);
	cfx_writer_free(&f->out);
	free(f);
	return 0;
}

/* Runs the loop until quiet and takes the output, as a NUL-terminated string. */
static const char *pump(struct fixture *f)
{
	for (int i = 0; i < 100 && cfx_loop_run_pending(f->loop); i++)
		;
	cfx_writer_reset(&f->out);
	cfx_conn_take_output(f->c, &f->out);
	cfx_write_u8(&f->out, 0);
	f->out.len--;
	return (const char *)f->out.p;
}

static int feed(struct fixture *f, const char *s)
{
	return cfx_conn_feed(f->c, (const uint8_t *)s, strlen(s));
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void test_conn_pipelined_in_order(void **state)
{
	struct fixture *f = *state;
	const char *out, *a, *b, *c;

	assert_int_equal(feed(f, pipelined), 0);
	out = pump(f);
	assert_int_equal(handled, 3);
	assert_int_equal(count(out, "HTTP/1.1 200 OK\r\n"), 3);
	a = strstr(out, "\"target\":\"/a\"");
	b = strstr(out, "\"body\":\"{\\\"k\\\":1}\"");
	c = strstr(out, "\"target\":\"/c\"");
	assert_true(a && b && c && a < b && b < c);
	/* The third asked to close: answered with Connection: close, then closed. */
	assert_int_equal(count(out, "Connection: close"), 1);
	assert_true(f->c->closing);
}

static void test_conn_split_reads(void **state)
{
	struct fixture *f = *state;
	const char *req = "POST /split HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";

	for (const char *p = req; *p; p++) {
		assert_int_equal(cfx_conn_feed(f->c, (const uint8_t *)p, 1), 0);
		pump(f);
		if (p[1])
			assert_int_equal(handled, 0);
	}
	assert_int_equal(handled, 1);
	/* Keep-alive: the connection takes another request. */
	assert_int_equal(feed(f, "GET /again HTTP/1.1\r\n\r\n"), 0);
	assert_non_null(strstr(pump(f), "\"target\":\"/again\""));
	assert_false(f->c->closing);
}

static void test_conn_malformed_400_and_close(void **state)
{
	struct fixture *f = *state;
	const char *out;

	/* A good request, then garbage, then a request that must not be served. */
	feed(f, "GET /ok HTTP/1.1\r\n\r\nBOGUS LINE\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
	out = pump(f);
	assert_int_equal(handled, 1);
	assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
	assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "\"error\":\"bad_request\""));
	assert_null(strstr(out, "/never"));
	assert_true(f->c->closing);
	assert_int_equal(feed(f, "GET / HTTP/1.1\r\n\r\n"), 1);
}

static void test_conn_limits_answered(void **state)
{
	struct fixture *f = *state;
	char head[128];

	snprintf(head, sizeof head, "POST /x HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
		 HTTP_BODY_BYTES_MAX + 1);
	feed(f, head);
	assert_non_null(strstr(pump(f), "HTTP/1.1 413 Payload Too Large\r\n"));
	assert_true(f->c->closing);
	assert_int_equal(handled, 0);
}

static void test_conn_chunked_answered(void **state)
{
	struct fixture *f = *state;

	feed(f, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
	assert_non_null(strstr(pump(f), "HTTP/1.1 411 Length Required\r\n"));
	assert_true(f->c->closing);
}

static void test_conn_continue(void **state)
{
	struct fixture *f = *state;
	const char *out;

	feed(f, "POST /c HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
	out = pump(f);
	assert_string_equal(out, "HTTP/1.1 100 Continue\r\n\r\n");
	feed(f, "hi");
	out = pump(f);
	assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
	assert_non_null(strstr(out, "\"body\":\"hi\""));
}

static void test_conn_shutdown(void **state)
{
	struct fixture *f = *state;

	/* In the middle of a request: it is answered, with Connection: close. */
	feed(f, "GET /slow HTTP/1.1\r\n");
	f->c->shutting_down = 1;
	f->c->proto->on_shutdown(f->c);
	pump(f);
	assert_false(f->c->closing);
	feed(f, "\r\n");
	assert_non_null(strstr(pump(f), "Connection: close"));
	assert_true(f->c->closing);
}

static void test_conn_shutdown_idle(void **state)
{
	struct fixture *f = *state;

	f->c->shutting_down = 1;
	f->c->proto->on_shutdown(f->c);
	pump(f);
	assert_true(f->c->closing);
}

/* ------------------------------------------------------------------------
 * Deferred answers
 * ------------------------------------------------------------------------ */

static struct http_later *ticket;

/* Defers "/later..." (the ticket goes to `ticket`); echoes anything else. */
static void later_or_echo(void *arg, const struct http_request *req, struct http_response *resp)
{
	if (req->target.len >= 6 && !memcmp(req->target.p, "/later", 6)) {
		handled++;
		assert_null(ticket);
		ticket = http_response_defer(resp);
		assert_non_null(ticket);
		return;
	}
	echo(arg, req, resp);
}

static struct http_service later_svc = { .handle = later_or_echo };

static int later_setup(void **state)
{
	struct fixture *f;

	conn_setup(state);
	f = *state;
	cfx_conn_free_memory(f->c);
	while (cfx_loop_run_pending(f->loop))
		;
	f->c = cfx_conn_new_memory(f->loop, &http_conn_proto, &later_svc);
	ticket = NULL;
	return 0;
}

/* Answers the deferred request with {"later": true}, as a completion task would. */
static void answer_later(struct fixture *f)
{
	struct http_response resp;

	assert_non_null(ticket);
	assert_ptr_equal(http_later_loop(ticket), f->loop);
	http_response_init(&resp);
	http_response_json(&resp, 200, json_pack("{s:b}", "later", 1));
	http_later_answer(ticket, &resp);
	http_response_free(&resp);
	ticket = NULL;
}

static void test_conn_deferred_holds_pipelined(void **state)
{
	struct fixture *f = *state;
	const char *out, *a, *b;

	assert_int_equal(feed(f, "GET /later HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 0);
	assert_string_equal(pump(f), "");
	assert_int_equal(handled, 1); /* /b waits behind the deferred answer */
	assert_true(f->c->proto->is_busy(f->c)); /* the idle timeout leaves it alone */
	assert_int_equal(feed(f, "GET /c HTTP/1.1\r\n\r\n"), 0);
	assert_string_equal(pump(f), "");
	answer_later(f);
	out = pump(f);
	assert_int_equal(handled, 3);
	assert_int_equal(count(out, "HTTP/1.1 200 OK\r\n"), 3);
	a = strstr(out, "{\"later\":true}");
	b = strstr(out, "\"target\":\"/b\"");
	assert_true(a && b && a < b && b < strstr(out, "\"target\":\"/c\""));
	assert_false(f->c->proto->is_busy(f->c));
	assert_false(f->c->closing);
	/* Another deferred request on the same connection. */
	assert_int_equal(feed(f, "GET /later2 HTTP/1.1\r\n\r\n"), 0);
	assert_string_equal(pump(f), "");
	answer_later(f);
	assert_non_null(strstr(pump(f), "{\"later\":true}"));
}

static void test_conn_deferred_head_and_close(void **state)
{
	struct fixture *f = *state;
	const char *out;

	feed(f, "HEAD /later HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
	assert_string_equal(pump(f), "");
	answer_later(f);
	out = pump(f);
	assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "Content-Length: 15\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_null(strstr(out, "later\":"));	/* HEAD: no body */
	assert_null(strstr(out, "/never"));
	assert_int_equal(handled, 1);
	assert_true(f->c->closing);
}

static void test_conn_deferred_shutdown(void **state)
{
	struct fixture *f = *state;

	feed(f, "GET /later HTTP/1.1\r\n\r\n");
	pump(f);
	f->c->shutting_down = 1;
	f->c->proto->on_shutdown(f->c);
	pump(f);
	assert_false(f->c->closing); /* the answer is still owed */
	answer_later(f);
	assert_non_null(strstr(pump(f), "Connection: close\r\n"));
	assert_true(f->c->closing);
}

static void test_conn_deferred_shutdown_pipelined(void **state)
{
	struct fixture *f = *state;
	const char *out;

	/* Requests received before the shutdown are all answered; the last says close. */
	feed(f, "GET /later HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
	pump(f);
	f->c->shutting_down = 1;
	f->c->proto->on_shutdown(f->c);
	pump(f);
	answer_later(f);
	out = pump(f);
	assert_int_equal(count(out, "HTTP/1.1 200 OK\r\n"), 3);
	assert_int_equal(count(out, "Connection: close\r\n"), 1);
	assert_true(strstr(out, "Connection: close\r\n") > strstr(out, "\"target\":\"/b\""));
	assert_true(f->c->closing);
}

static void test_conn_deferred_gone(void **state)
{
	struct fixture *f = *state;

	feed(f, "GET /later HTTP/1.1\r\n\r\n");
	pump(f);
	cfx_conn_close(f->c, "peer went away");
	pump(f);
	answer_later(f); /* dropped: nothing to write to, nothing leaks */
	assert_string_equal(pump(f), "");
}

static void test_conn_deferred_held_limit(void **state)
{
	struct fixture *f = *state;
	size_t n = HTTP_HELD_BYTES_MAX + 1;
	uint8_t *junk = malloc(n);

	feed(f, "GET /later HTTP/1.1\r\n\r\n");
	pump(f);
	memset(junk, 'x', n);
	/* Pipelined input is kept up to the limit; past it, the connection closes. */
	assert_int_equal(cfx_conn_feed(f->c, junk, n - 1), 0);
	assert_false(f->c->closing);
	cfx_conn_feed(f->c, junk, 1);
	pump(f);
	assert_true(f->c->closing);
	free(junk);
	answer_later(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_split_at_every_byte),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_head_limit),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_chunked_refused),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_keep_alive_rules),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_last_content_type_wins),
		cmocka_unit_test(test_ce_headers_kept),
		cmocka_unit_test(test_ce_limits),
		cmocka_unit_test(test_content_type_cut),
		cmocka_unit_test(test_status_token),
		cmocka_unit_test(test_response_encode),
		cmocka_unit_test(test_response_extra_headers),
		cmocka_unit_test(test_response_reuse_later),
		cmocka_unit_test_setup_teardown(test_conn_pipelined_in_order, conn_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_split_reads, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_malformed_400_and_close, conn_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_limits_answered, conn_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_chunked_answered, conn_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_continue, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_shutdown, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_shutdown_idle, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_deferred_holds_pipelined, later_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_deferred_head_and_close, later_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_deferred_shutdown, later_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_deferred_shutdown_pipelined, later_setup,
						conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_deferred_gone, later_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_conn_deferred_held_limit, later_setup,
						conn_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
