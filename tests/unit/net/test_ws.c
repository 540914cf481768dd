/*
 * Unit tests for the WebSocket transport (src/net/ws.c): the Upgrade
 * request parser and answers, and the frame layer stacked on a scripted
 * transport (its reads come from a test buffer, its writes go to another,
 * and it can report a full socket), the way the transport sits on TCP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "net/conn.h"
#include "net/ws.h"

static const struct cfx_ws_opts mqtt_opts = { .path = "/mqtt", .subprotocol = "mqtt" };

#define KEY "dGhlIHNhbXBsZSBub25jZQ==" /* RFC 6455 section 1.3 */
#define GOOD_REQUEST                                                                      \
	"GET /mqtt HTTP/1.1\r\n"                                                          \
	"Host: 127.0.0.1:8083\r\n"                                                        \
	"Upgrade: websocket\r\n"                                                          \
	"Connection: Upgrade\r\n"                                                         \
	"Sec-WebSocket-Key: " KEY "\r\n"                                                  \
	"Sec-WebSocket-Protocol: mqtt\r\n"                                                \
	"Sec-WebSocket-Version: 13\r\n\r\n"

/* ------------------------------------------------------------------------
 * The Upgrade request
 * ------------------------------------------------------------------------ */

static int parse(const char *s, int *status, const char **why, struct cfx_ws_request *req)
{
	return cfx_ws_parse_request((const uint8_t *)s, strlen(s), &mqtt_opts, req, status, why);
}

static void test_accept_key(void **state)
{
	char out[29];

	(void)state;
	cfx_ws_accept_key(CFX_VIEW_STR(KEY), out);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_parse_good(void **state)
{
	struct cfx_ws_request req;
	const char *why = NULL;
	int status = 0;
	const char *s = "GET /mqtt?x=1 HTTP/1.1\r\n"
			"host: a\r\n"
			"UPGRADE: WebSocket\r\n"
			"connection: keep-alive, Upgrade\r\n"
			"sec-websocket-key:   " KEY "  \r\n"
			"Sec-WebSocket-Protocol: wamp, mqttv3.1\r\n"
			"Sec-WebSocket-Protocol: mqtt\r\n"
			"Sec-WebSocket-Version: 13\r\n"
			"Origin: http://example\r\n\r\n"
			"\x82\x80"; /* a frame behind it */
	struct cfx_writer wr = { 0 };

	(void)state;
	assert_int_equal(parse(s, &status, &why, &req), (int)strlen(s) - 2);
	assert_true(cfx_view_eq_str(req.path, "/mqtt"));
	assert_true(cfx_view_eq_str(req.key, KEY));
	assert_true(req.subprotocol_offered);

	cfx_ws_write_accept(&wr, &req, &mqtt_opts);
	cfx_write_u8(&wr, 0);
	assert_string_equal((char *)wr.p, "HTTP/1.1 101 Switching Protocols\r\n"
					  "Upgrade: websocket\r\n"
					  "Connection: Upgrade\r\n"
					  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
					  "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
	cfx_writer_free(&wr);
}

static void test_parse_need_more(void **state)
{
	struct cfx_ws_request req;
	const char *why = NULL;
	int status = 0;
	const char *full = GOOD_REQUEST;
	char part[sizeof GOOD_REQUEST];

	(void)state;
	for (size_t n = 0; n < strlen(full); n++) {
		memcpy(part, full, n);
		assert_int_equal(cfx_ws_parse_request((const uint8_t *)part, n, &mqtt_opts, &req,
						      &status, &why),
				 CFX_NEED_MORE);
	}
	assert_int_equal(parse(full, &status, &why, &req), (int)strlen(full));
}

static void test_parse_oversized(void **state)
{
	struct cfx_ws_request req;
	const char *why = NULL;
	int status = 0;
	size_t n = CFX_WS_HEADER_BYTES_MAX + 100;
	char *big = malloc(n + 1);

	(void)state;
	/* A request whose headers never end within the limit. */
	memcpy(big, "GET /mqtt HTTP/1.1\r\n", 20);
	for (size_t i = 20; i < n; i += 10)
		memcpy(big + i, "X-Pad: ab\n", CFX_MIN((size_t)10, n - i));
	big[n] = 0;
	assert_int_equal(cfx_ws_parse_request((uint8_t *)big, CFX_WS_HEADER_BYTES_MAX - 1,
					      &mqtt_opts, &req, &status, &why),
			 CFX_NEED_MORE);
	assert_int_equal(cfx_ws_parse_request((uint8_t *)big, n, &mqtt_opts, &req, &status, &why),
			 CFX_EPARSE);
	assert_int_equal(status, 400);
	/* The blank line just past the limit does not count either. */
	memcpy(big + CFX_WS_HEADER_BYTES_MAX - 2, "\r\n\r\n", 4);
	assert_int_equal(cfx_ws_parse_request((uint8_t *)big, n, &mqtt_opts, &req, &status, &why),
			 CFX_EPARSE);
	free(big);
}

/* GOOD_REQUEST with one line replaced (or removed when `with` is ""). */
static char *variant(const char *line, const char *with)
{
	const char *good = GOOD_REQUEST;
	const char *at = strstr(good, line);
	size_t n = strlen(good) + strlen(with) + 1;
	char *s = malloc(n);

	assert_non_null(at);
	snprintf(s, n, "%.*s%s%s", (int)(at - good), good, with, at + strlen(line));
	return s;
}

static void expect_refused(const char *line, const char *with, int want_status)
{
	struct cfx_ws_request req;
	const char *why = NULL;
	int status = 0;
	char *s = variant(line, with);

	assert_int_equal(parse(s, &status, &why, &req), CFX_EPARSE);
	assert_int_equal(status, want_status);
	assert_non_null(why);
	free(s);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	expect_refused("Sec-WebSocket-Key: " KEY "\r\n", "", 400);
	expect_refused(KEY, "dGhlIHNhbXBsZSBub25jZQ=", 400);		  /* 23 characters */
	expect_refused(KEY, "dGhlIHNhbXBsZSBub25j*Q==", 400);	  /* not base64 */
	expect_refused(KEY, "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: " KEY, 400);
	expect_refused("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426);
	expect_refused("Sec-WebSocket-Version: 13\r\n", "", 426);
	expect_refused("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13\r\n"
						    "Sec-WebSocket-Version: 12", 426);
	expect_refused("Sec-WebSocket-Protocol: mqtt\r\n", "", 400);
	expect_refused("Sec-WebSocket-Protocol: mqtt", "Sec-WebSocket-Protocol: MQTT, mqttv3.1", 400);
	expect_refused("Upgrade: websocket\r\n", "", 426);
	expect_refused("Connection: Upgrade", "Connection: keep-alive", 426);
	expect_refused("Host: 127.0.0.1:8083\r\n", "", 400);
	expect_refused("GET /mqtt", "GET /other", 404);
	expect_refused("GET /mqtt", "POST /mqtt", 400);
	expect_refused("GET /mqtt", "GET  /mqtt", 400);
	expect_refused("HTTP/1.1", "HTTP/1.0", 400);
	expect_refused("Host:", " Host:", 400);		  /* folded onto the request line */
	expect_refused("Host: 127", "Host 127", 400);	  /* no colon */
	expect_refused("Host:", "Ho st:", 400);		  /* bad name */
	expect_refused("127.0.0.1", "127.\x01", 400);	  /* control character */
	expect_refused("Host: 127.0.0.1:8083\r\n", "Host: a\r\nContent-Length: 5\r\n", 400);
	expect_refused("Host: 127.0.0.1:8083\r\n", "Host: a\r\nTransfer-Encoding: chunked\r\n", 400);
}

static void test_refusal_answer(void **state)
{
	struct cfx_writer wr = { 0 };

	(void)state;
	cfx_ws_write_refusal(&wr, 426, "Sec-WebSocket-Version must be 13");
	cfx_write_u8(&wr, 0);
	assert_non_null(strstr((char *)wr.p, "HTTP/1.1 426 Upgrade Required\r\n"));
	assert_non_null(strstr((char *)wr.p, "Sec-WebSocket-Version: 13\r\n"));
	assert_non_null(strstr((char *)wr.p, "Content-Length: 33\r\n\r\nSec-WebSocket-Version must be 13\n"));
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * A scripted transport under the WebSocket one
 * ------------------------------------------------------------------------ */

static struct script {
	struct cfx_writer in; /* what the peer sent */
	size_t in_off;
	size_t read_max;      /* bytes per read at most (0 = all) */
	int eof;	      /* after `in`, the peer closed */
	struct cfx_writer out; /* what reached the peer */
	size_t write_room;    /* bytes the socket takes before it is full (SIZE_MAX = all) */
	int freed;
} sc;

static ssize_t script_read(struct cfx_conn *c, void *buf, size_t n)
{
	size_t left = sc.in.len - sc.in_off;

	assert_ptr_equal(c->transport, &sc);
	if (left == 0)
		return sc.eof ? 0 : -EAGAIN;
	n = CFX_MIN(n, left);
	if (sc.read_max)
		n = CFX_MIN(n, sc.read_max);
	memcpy(buf, sc.in.p + sc.in_off, n);
	sc.in_off += n;
	return (ssize_t)n;
}

static ssize_t script_writev(struct cfx_conn *c, const struct iovec *iov, int n)
{
	size_t total = 0;

	assert_ptr_equal(c->transport, &sc);
	for (int i = 0; i < n && sc.write_room; i++) {
		size_t k = CFX_MIN(iov[i].iov_len, sc.write_room);
		cfx_write_bytes(&sc.out, iov[i].iov_base, k);
		sc.write_room -= k;
		total += k;
	}
	return total ? (ssize_t)total : (n ? -EAGAIN : 0);
}

static int script_pending(struct cfx_conn *c)
{
	(void)c;
	return 0;
}

static void script_free(struct cfx_conn *c)
{
	assert_ptr_equal(c->transport, &sc);
	sc.freed = 1;
}

static const struct cfx_conn_ops script_ops = {
	.read = script_read,
	.writev = script_writev,
	.pending = script_pending,
	.free = script_free,
};

static struct cfx_conn *open_conn(void)
{
	struct cfx_conn *c = calloc(1, sizeof *c);

	cfx_writer_free(&sc.in);
	cfx_writer_free(&sc.out);
	memset(&sc, 0, sizeof sc);
	sc.write_room = SIZE_MAX;
	snprintf(c->peer, sizeof c->peer, "test");
	c->io.fd = -1;
	c->ops = &script_ops;
	c->transport = &sc;
	assert_int_equal(cfx_ws_attach(&mqtt_opts, c), 0);
	return c;
}

static void close_conn(struct cfx_conn *c)
{
	c->ops->free(c);
	assert_true(sc.freed);
	assert_ptr_equal(c->ops, &script_ops);
	free(c);
	cfx_writer_free(&sc.in);
	cfx_writer_free(&sc.out);
}

static void peer_sends(const void *p, size_t n)
{
	cfx_write_bytes(&sc.in, p, n);
}

/* Appends a client frame; mask = 0 sends it unmasked. */
static void peer_frame(int fin, int opcode, const void *payload, size_t n, int mask)
{
	uint8_t hdr[14], key[4] = { 0x37, 0xfa, 0x21, 0x3d };
	size_t h = 0;

	hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
	if (n < 126) {
		hdr[h++] = (uint8_t)((mask ? 0x80 : 0) | n);
	} else if (n < 65536) {
		hdr[h++] = (uint8_t)((mask ? 0x80 : 0) | 126);
		cfx_store_be16(hdr + h, (uint16_t)n);
		h += 2;
	} else {
		hdr[h++] = (uint8_t)((mask ? 0x80 : 0) | 127);
		cfx_store_be64(hdr + h, n);
		h += 8;
	}
	if (mask) {
		memcpy(hdr + h, key, 4);
		h += 4;
	}
	peer_sends(hdr, h);
	for (size_t i = 0; i < n; i++) {
		uint8_t b = ((const uint8_t *)payload)[i];
		cfx_write_u8(&sc.in, mask ? b ^ key[i % 4] : b);
	}
}

/* Reads through the transport until it reports nothing more; returns the last result. */
static ssize_t read_all(struct cfx_conn *c, struct cfx_writer *got)
{
	uint8_t buf[65536];
	ssize_t r;

	for (;;) {
		r = c->ops->read(c, buf, sizeof buf);
		if (r > 0) {
			cfx_write_bytes(got, buf, (size_t)r);
			continue;
		}
		if (r == -EAGAIN && sc.in_off < sc.in.len)
			continue; /* a read that carried only frame headers */
		return r;
	}
}

/* A server frame at out[*off]: returns its opcode and payload; checks that it is unmasked. */
static int server_frame(size_t *off, struct cfx_writer *payload)
{
	const uint8_t *p = sc.out.p + *off;
	size_t n, h = 2;

	assert_true(sc.out.len - *off >= 2);
	assert_int_equal(p[1] & 0x80, 0); /* server frames are not masked */
	n = p[1] & 0x7f;
	if (n == 126) {
		n = cfx_load_be16(p + 2);
		h = 4;
	} else if (n == 127) {
		n = (size_t)cfx_load_be64(p + 2);
		h = 10;
	}
	assert_true(sc.out.len - *off >= h + n);
	if (payload)
		cfx_write_bytes(payload, p + h, n);
	*off += h + n;
	return p[0] & 0x0f;
}

/* Opens the WebSocket: the request in, the 101 out. Returns the offset after the 101. */
static size_t handshake(struct cfx_conn *c)
{
	struct cfx_writer got = { 0 };
	const char *end;

	peer_sends(GOOD_REQUEST, strlen(GOOD_REQUEST));
	assert_int_equal(read_all(c, &got), -EAGAIN);
	assert_int_equal(got.len, 0);
	assert_true(cfx_ws_is_open(c));
	cfx_write_u8(&sc.out, 0);
	sc.out.len--;
	assert_memory_equal(sc.out.p, "HTTP/1.1 101 ", 13);
	end = strstr((char *)sc.out.p, "\r\n\r\n");
	assert_non_null(end);
	cfx_writer_free(&got);
	return (size_t)(end + 4 - (char *)sc.out.p);
}

/* ------------------------------------------------------------------------
 * Handshake on the transport
 * ------------------------------------------------------------------------ */

static void test_handshake_split_reads(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer got = { 0 };

	(void)state;
	sc.read_max = 7; /* the request arrives in small pieces */
	peer_sends(GOOD_REQUEST, strlen(GOOD_REQUEST));
	peer_frame(1, 0x2, "\x10\x02hi", 4, 1); /* and a frame right behind it */
	assert_int_equal(read_all(c, &got), -EAGAIN);
	assert_int_equal(got.len, 4);
	assert_memory_equal(got.p, "\x10\x02hi", 4);
	assert_non_null(strstr((char *)sc.out.p, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
	assert_int_equal(c->ops->pending(c), 0);
	cfx_writer_free(&got);
	close_conn(c);
}

static void test_handshake_refused(void **state)
{
	struct cfx_conn *c = open_conn();
	char *bad = variant("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 7");
	uint8_t buf[4096];
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };

	(void)state;
	peer_sends(bad, strlen(bad));
	free(bad);
	assert_int_equal(c->ops->read(c, buf, sizeof buf), -EPROTO);
	assert_false(cfx_ws_is_open(c));
	cfx_write_u8(&sc.out, 0);
	assert_non_null(strstr((char *)sc.out.p, "HTTP/1.1 426 Upgrade Required\r\n"));
	assert_int_equal(c->ops->read(c, buf, sizeof buf), -EPROTO);
	assert_int_equal(c->ops->writev(c, &iov, 1), -EPIPE);
	close_conn(c);
}

static void test_handshake_oversized(void **state)
{
	struct cfx_conn *c = open_conn();
	uint8_t buf[65536];
	ssize_t r;

	(void)state;
	peer_sends("GET /mqtt HTTP/1.1\r\n", 20);
	for (int i = 0; i < 1000; i++)
		peer_sends("X-Padding: 0123456789\r\n", 23);
	sc.read_max = 1000;
	do
		r = c->ops->read(c, buf, sizeof buf);
	while (r == -EAGAIN);
	assert_int_equal(r, -EPROTO);
	assert_true(sc.in_off <= CFX_WS_HEADER_BYTES_MAX + 1000);
	cfx_write_u8(&sc.out, 0);
	assert_non_null(strstr((char *)sc.out.p, "HTTP/1.1 400 Bad Request\r\n"));
	close_conn(c);
}

/* Protocol bytes written before the request arrived go out once it is answered. */
static void test_write_before_open(void **state)
{
	struct cfx_conn *c = open_conn();
	struct iovec iov = { .iov_base = "early", .iov_len = 5 };
	struct cfx_writer pl = { 0 };
	size_t off;

	(void)state;
	assert_int_equal(c->ops->writev(c, &iov, 1), 5);
	assert_int_equal(sc.out.len, 0);
	off = handshake(c);
	assert_int_equal(server_frame(&off, &pl), 0x2);
	assert_int_equal(pl.len, 5);
	assert_memory_equal(pl.p, "early", 5);
	cfx_writer_free(&pl);
	close_conn(c);
}

/* ------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------ */

static void test_binary_frames(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer got = { 0 };
	static uint8_t big[200000];

	(void)state;
	handshake(c);
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7);
	peer_frame(1, 0x2, "abc", 3, 1);
	peer_frame(1, 0x2, "", 0, 1);
	peer_frame(1, 0x2, big, 300, 1);      /* 16-bit length */
	peer_frame(1, 0x2, big, sizeof big, 1); /* 64-bit length */
	sc.read_max = 1000;
	assert_int_equal(read_all(c, &got), -EAGAIN);
	assert_int_equal(got.len, 3 + 300 + sizeof big);
	assert_memory_equal(got.p, "abc", 3);
	assert_memory_equal(got.p + 3, big, 300);
	assert_memory_equal(got.p + 303, big, sizeof big);
	cfx_writer_free(&got);
	close_conn(c);
}

static void test_fragmented_with_ping(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer got = { 0 }, pl = { 0 };
	size_t off;

	(void)state;
	off = handshake(c);
	peer_frame(0, 0x2, "MQ", 2, 1);
	peer_frame(1, 0x9, "png", 3, 1); /* a ping between the fragments */
	peer_frame(0, 0x0, "TT", 2, 1);
	peer_frame(1, 0x0, "!", 1, 1);
	assert_int_equal(read_all(c, &got), -EAGAIN);
	assert_int_equal(got.len, 5);
	assert_memory_equal(got.p, "MQTT!", 5);
	assert_int_equal(server_frame(&off, &pl), 0xA); /* pong, same payload */
	assert_int_equal(pl.len, 3);
	assert_memory_equal(pl.p, "png", 3);
	assert_int_equal(off, sc.out.len);
	cfx_writer_free(&got);
	cfx_writer_free(&pl);
	close_conn(c);
}

/* A continuation without a first fragment, or a new message inside one, is a protocol error. */
static void test_bad_fragments(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer got = { 0 }, pl = { 0 };
	size_t off;

	(void)state;
	off = handshake(c);
	peer_frame(1, 0x0, "x", 1, 1);
	assert_int_equal(read_all(c, &got), -EPROTO);
	assert_int_equal(server_frame(&off, &pl), 0x8);
	assert_int_equal(cfx_load_be16(pl.p), 1002);
	cfx_writer_free(&pl);
	close_conn(c);

	c = open_conn();
	off = handshake(c);
	peer_frame(0, 0x2, "x", 1, 1);
	peer_frame(1, 0x2, "y", 1, 1);
	assert_int_equal(read_all(c, &got), -EPROTO);
	assert_int_equal(server_frame(&off, &pl), 0x8);
	assert_int_equal(cfx_load_be16(pl.p), 1002);
	cfx_writer_free(&got);
	cfx_writer_free(&pl);
	close_conn(c);
}

/* A close frame went out with `code` (0: without a status code), and the connection failed. */
static void expect_closed_with(struct cfx_conn *c, size_t off, int code)
{
	struct cfx_writer got = { 0 }, pl = { 0 };
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };

	assert_int_equal(read_all(c, &got), -EPROTO);
	assert_int_equal(got.len, 0);
	assert_int_equal(server_frame(&off, &pl), 0x8);
	if (code) {
		assert_true(pl.len >= 2);
		assert_int_equal(cfx_load_be16(pl.p), code);
	} else {
		assert_int_equal(pl.len, 0);
	}
	assert_int_equal(c->ops->writev(c, &iov, 1), -EPIPE);
	cfx_writer_free(&got);
	cfx_writer_free(&pl);
}

static void test_unmasked_refused(void **state)
{
	struct cfx_conn *c = open_conn();
	size_t off = handshake(c);

	(void)state;
	peer_frame(1, 0x2, "abc", 3, 0);
	expect_closed_with(c, off, 1002);
	close_conn(c);
}

static void test_text_refused(void **state)
{
	struct cfx_conn *c = open_conn();
	size_t off = handshake(c);

	(void)state;
	peer_frame(1, 0x1, "hello", 5, 1);
	expect_closed_with(c, off, 1003);
	close_conn(c);
}

static void test_oversized_frame(void **state)
{
	struct cfx_conn *c = open_conn();
	size_t off = handshake(c);
	uint8_t hdr[14 + 16] = { 0x82, 0x80 | 127 };

	(void)state;
	/* The frame claims more than the limit; wslay checks the length when
	 * the first payload bytes arrive. */
	cfx_store_be64(hdr + 2, (uint64_t)CFX_WS_FRAME_BYTES_MAX + 1);
	memset(hdr + 10, 0x11, sizeof hdr - 10);
	peer_sends(hdr, sizeof hdr);
	expect_closed_with(c, off, 1009);
	close_conn(c);
}

static void test_oversized_control_frame(void **state)
{
	struct cfx_conn *c = open_conn();
	size_t off = handshake(c);
	uint8_t ping[200] = { 0 };

	(void)state;
	/* Control frames carry 125 bytes at most: wslay's frame layer fails,
	 * and the close it sends has no status code. */
	peer_frame(1, 0x9, ping, sizeof ping, 1);
	expect_closed_with(c, off, 0);
	close_conn(c);
}

static void test_close_answered(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer got = { 0 }, pl = { 0 };
	uint8_t buf[256];
	size_t off = handshake(c);

	(void)state;
	peer_frame(1, 0x2, "\xe0\x00", 2, 1); /* MQTT DISCONNECT just before the close */
	peer_frame(1, 0x8, "\x03\xe8" "bye", 5, 1);
	assert_int_equal(read_all(c, &got), 0); /* the data, then the end */
	assert_int_equal(got.len, 2);
	assert_memory_equal(got.p, "\xe0\x00", 2);
	assert_int_equal(server_frame(&off, &pl), 0x8);
	assert_int_equal(cfx_load_be16(pl.p), 1000);
	assert_int_equal(c->ops->read(c, buf, sizeof buf), 0);
	cfx_writer_free(&got);
	cfx_writer_free(&pl);
	close_conn(c);
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

static void test_writev_frames(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer pl = { 0 };
	static uint8_t big[CFX_WS_OUT_FRAME_BYTES_MAX + 1000];
	struct iovec iov[3] = { { "ab", 2 }, { "cd", 2 }, { big, sizeof big } };
	size_t off = handshake(c), sent = 0;

	(void)state;
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)i;
	/* Several iovecs make one frame, up to the frame limit. */
	while (sent < 4 + sizeof big) {
		struct iovec rest[3];
		int n = 0;
		size_t skip = sent;
		for (int i = 0; i < 3; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			rest[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
			rest[n++].iov_len = iov[i].iov_len - skip;
			skip = 0;
		}
		ssize_t w = c->ops->writev(c, rest, n);
		assert_true(w > 0 && (size_t)w <= CFX_WS_OUT_FRAME_BYTES_MAX);
		sent += (size_t)w;
	}
	assert_int_equal(server_frame(&off, &pl), 0x2);
	assert_int_equal(pl.len, CFX_WS_OUT_FRAME_BYTES_MAX);
	assert_int_equal(server_frame(&off, &pl), 0x2);
	assert_int_equal(off, sc.out.len);
	assert_int_equal(pl.len, 4 + sizeof big);
	assert_memory_equal(pl.p, "abcd", 4);
	assert_memory_equal(pl.p + 4, big, sizeof big);
	cfx_writer_free(&pl);
	close_conn(c);
}

/* A full socket: the frame waits in wslay, and no new bytes are taken meanwhile. */
static void test_writev_backpressure(void **state)
{
	struct cfx_conn *c = open_conn();
	struct cfx_writer pl = { 0 };
	struct iovec one = { .iov_base = "0123456789", .iov_len = 10 };
	size_t off = handshake(c);

	(void)state;
	sc.write_room = 3; /* part of the frame header only */
	assert_int_equal(c->ops->writev(c, &one, 1), 10);
	assert_true(c->ops->pending(c));
	assert_int_equal(c->ops->writev(c, &one, 1), -EAGAIN);
	assert_int_equal(c->ops->writev(c, NULL, 0), -EAGAIN);
	sc.write_room = SIZE_MAX;
	assert_int_equal(c->ops->writev(c, NULL, 0), 0);
	assert_false(c->ops->pending(c));
	assert_int_equal(server_frame(&off, &pl), 0x2);
	assert_int_equal(pl.len, 10);
	assert_int_equal(off, sc.out.len);
	cfx_writer_free(&pl);
	close_conn(c);
}

/* The 101 answer waits for room too, and goes out before any frame. */
static void test_answer_backpressure(void **state)
{
	struct cfx_conn *c = open_conn();
	struct iovec one = { .iov_base = "x", .iov_len = 1 };
	struct cfx_writer got = { 0 }, pl = { 0 };
	size_t off;

	(void)state;
	sc.write_room = 20;
	peer_sends(GOOD_REQUEST, strlen(GOOD_REQUEST));
	assert_int_equal(read_all(c, &got), -EAGAIN);
	assert_true(cfx_ws_is_open(c));
	assert_int_equal(sc.out.len, 20);
	assert_true(c->ops->pending(c));
	assert_int_equal(c->ops->writev(c, &one, 1), -EAGAIN);
	sc.write_room = SIZE_MAX;
	assert_int_equal(c->ops->writev(c, &one, 1), 1);
	cfx_write_u8(&sc.out, 0);
	sc.out.len--;
	off = (size_t)(strstr((char *)sc.out.p, "\r\n\r\n") + 4 - (char *)sc.out.p);
	assert_int_equal(server_frame(&off, &pl), 0x2);
	assert_int_equal(off, sc.out.len);
	cfx_writer_free(&got);
	cfx_writer_free(&pl);
	close_conn(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_need_more),
		cmocka_unit_test(test_parse_oversized),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_refusal_answer),
		cmocka_unit_test(test_handshake_split_reads),
		cmocka_unit_test(test_handshake_refused),
		cmocka_unit_test(test_handshake_oversized),
		cmocka_unit_test(test_write_before_open),
		cmocka_unit_test(test_binary_frames),
		cmocka_unit_test(test_fragmented_with_ping),
		cmocka_unit_test(test_bad_fragments),
		cmocka_unit_test(test_unmasked_refused),
		cmocka_unit_test(test_text_refused),
		cmocka_unit_test(test_oversized_frame),
		cmocka_unit_test(test_oversized_control_frame),
		cmocka_unit_test(test_close_answered),
		cmocka_unit_test(test_writev_frames),
		cmocka_unit_test(test_writev_backpressure),
		cmocka_unit_test(test_answer_backpressure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
