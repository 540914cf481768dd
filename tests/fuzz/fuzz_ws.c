/*
 * fuzz_ws.c - libFuzzer target for the WebSocket transport (src/net/ws.c):
 * the Upgrade request parser and the frame layer (wslay underneath).
 *
 * Per input, two passes over the same client bytes:
 *
 *  1. cfx_ws_parse_request alone: a request it accepts ends with the blank
 *     line within the header limit, its views lie inside the input and its
 *     key has 24 characters; a refusal carries 400, 404 or 426 and a
 *     reason; "need more" happens only below the limit.
 *  2. The transport stacked on a scripted one (reads come from the input in
 *     the chunks the control byte asks for; writes go to a buffer that may
 *     take only a few bytes per call). Reads continue until the input is
 *     used up or the transport fails or ends. Payload never exceeds the
 *     bytes read and comes only after a 101; with FZ_WS_ECHO every payload
 *     byte is written back. What the server wrote must be a 101 or a
 *     refusal, then whole, unmasked, final frames (binary, pong, close),
 *     nothing after a close, and the binary payloads must be exactly the
 *     echoed bytes (a prefix of them once a close went out).
 *
 * Input layout:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl   FZ_WS_* below
 *      1 |    N | what a WebSocket client sends
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "fuzz_common.h"
#include "net/conn.h"
#include "net/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The control byte.
 *   bits 0-2  bytes per read: 0 = as many as asked, else read_bytes[ctrl & 7]
 *   bit 3     a valid Upgrade request goes before the input (frames get fuzzed)
 *   bit 4     the socket takes few bytes per write (back-pressure)
 *   bit 5     every payload byte read is written back (echo)
 *   bit 6     no path and no subprotocol required
 */
#define FZ_WS_READ_MASK 0x07u
#define FZ_WS_PREFIX 0x08u
#define FZ_WS_SMALL_WRITES 0x10u
#define FZ_WS_ECHO 0x20u
#define FZ_WS_ANY 0x40u

static const size_t read_bytes[8] = { 0, 1, 2, 3, 7, 64, 1000, 4096 };

#define GOOD_REQUEST                                  \
	"GET /mqtt HTTP/1.1\r\n"                      \
	"Host: localhost\r\n"                         \
	"Upgrade: websocket\r\n"                      \
	"Connection: Upgrade\r\n"                     \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
	"Sec-WebSocket-Protocol: mqtt\r\n"            \
	"Sec-WebSocket-Version: 13\r\n\r\n"

static const struct cfx_ws_opts mqtt_opts = { .path = "/mqtt", .subprotocol = "mqtt" };
static const struct cfx_ws_opts any_opts = { 0 };

/* ------------------------------------------------------------------------
 * Pass 1: the parser
 * ------------------------------------------------------------------------ */

static int inside(struct cfx_view v, const uint8_t *p, size_t n)
{
	return v.len == 0 || (v.p >= p && v.p + v.len <= p + n);
}

static void check_parser(const uint8_t *p, size_t n, const struct cfx_ws_opts *o)
{
	struct cfx_ws_request req;
	const char *why = NULL;
	int status = 0;
	int rc = cfx_ws_parse_request(p, n, o, &req, &status, &why);

	if (rc > 0) {
		FZ_CHECK((size_t)rc <= n && rc <= CFX_WS_HEADER_BYTES_MAX && rc >= 4);
		FZ_CHECK(memcmp(p + rc - 4, "\r\n\r\n", 4) == 0);
		FZ_CHECK(inside(req.path, p, (size_t)rc) && inside(req.key, p, (size_t)rc));
		FZ_CHECK(req.key.len == 24);
		FZ_CHECK(!o->subprotocol || req.subprotocol_offered);
		struct cfx_writer wr = { 0 };
		cfx_ws_write_accept(&wr, &req, o);
		FZ_CHECK(wr.len > 13 && memcmp(wr.p, "HTTP/1.1 101 ", 13) == 0);
		cfx_writer_free(&wr);
	} else if (rc == CFX_NEED_MORE) {
		FZ_CHECK(n < CFX_WS_HEADER_BYTES_MAX);
	} else {
		FZ_CHECK(rc == CFX_EPARSE);
		FZ_CHECK(status == 400 || status == 404 || status == 426);
		FZ_CHECK(why && *why);
	}
}

/* ------------------------------------------------------------------------
 * Pass 2: the transport on a scripted socket
 * ------------------------------------------------------------------------ */

static struct script {
	const uint8_t *in;
	size_t in_len, in_off, read_max;
	struct cfx_writer out;
	size_t write_room; /* bytes the socket takes until it is drained again */
	size_t drain;	   /* write_room after a drain */
} sc;

static ssize_t script_read(struct cfx_conn *c, void *buf, size_t n)
{
	size_t k = CFX_MIN(n, sc.in_len - sc.in_off);

	FZ_CHECK(c->transport == &sc);
	if (sc.read_max)
		k = CFX_MIN(k, sc.read_max);
	if (k == 0)
		return -EAGAIN;
	memcpy(buf, sc.in + sc.in_off, k);
	sc.in_off += k;
	return (ssize_t)k;
}

static ssize_t script_writev(struct cfx_conn *c, const struct iovec *iov, int n)
{
	size_t total = 0;

	FZ_CHECK(c->transport == &sc);
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
	CFX_UNUSED(c);
	return 0;
}

static void script_free(struct cfx_conn *c)
{
	CFX_UNUSED(c);
}

static const struct cfx_conn_ops script_ops = {
	.read = script_read,
	.writev = script_writev,
	.pending = script_pending,
	.free = script_free,
};

/* Writes p[0..n) through the transport as the connection's flush would. 0, or -1 once it failed. */
static int echo(struct cfx_conn *c, const uint8_t *p, size_t n, struct cfx_writer *echoed)
{
	size_t off = 0;
	int stalls = 0;

	while (off < n) {
		struct iovec iov = { .iov_base = (void *)(p + off), .iov_len = n - off };
		ssize_t w = c->ops->writev(c, &iov, 1);
		if (w == -EAGAIN) {
			FZ_CHECK(c->ops->pending(c)); /* EAGAIN means something waits */
			FZ_CHECK(++stalls < 1000000);
			sc.write_room = sc.drain; /* the socket drained a little */
			continue;
		}
		if (w < 0)
			return -1;
		FZ_CHECK((size_t)w <= n - off && w > 0);
		cfx_write_bytes(echoed, p + off, (size_t)w);
		off += (size_t)w;
	}
	return 0;
}

/*
 * Walks the server's frames after the handshake answer; appends binary
 * payloads to `bin`. `partial`: the connection failed, so its last frame
 * (the close, sent best effort) may be cut short.
 */
static void check_frames(const uint8_t *p, size_t n, struct cfx_writer *bin, int partial)
{
	size_t off = 0;
	int closed = 0;

	while (off < n) {
		size_t h = 2, len;

		FZ_CHECK(!closed); /* nothing after a close frame */
		if (partial && (n - off < 10 || n - off < 2 + (size_t)(p[off + 1] & 0x7f)))
			break;
		FZ_CHECK(n - off >= 2); /* whole frames only */
		FZ_CHECK((p[off] & 0xf0) == 0x80); /* FIN, no RSV bits */
		FZ_CHECK((p[off + 1] & 0x80) == 0); /* unmasked */
		len = p[off + 1] & 0x7f;
		if (len == 126) {
			FZ_CHECK(n - off >= 4);
			len = cfx_load_be16(p + off + 2);
			FZ_CHECK(len >= 126);
			h = 4;
		} else if (len == 127) {
			FZ_CHECK(n - off >= 10);
			uint64_t l64 = cfx_load_be64(p + off + 2);
			FZ_CHECK(l64 >= 65536 && l64 <= CFX_WS_OUT_FRAME_BYTES_MAX);
			len = (size_t)l64;
			h = 10;
		}
		FZ_CHECK(n - off - h >= len);
		switch (p[off] & 0x0f) {
		case 0x2:
			FZ_CHECK(len <= CFX_WS_OUT_FRAME_BYTES_MAX);
			cfx_write_bytes(bin, p + off + h, len);
			break;
		case 0x8:
			closed = 1;
			FZ_CHECK(len <= 125 && len != 1);
			break;
		case 0xA:
			FZ_CHECK(len <= 125);
			break;
		default:
			FZ_CHECK(!"unexpected server opcode");
		}
		off += h + len;
	}
}

static void check_transport(const uint8_t *p, size_t n, uint8_t ctrl)
{
	struct cfx_conn *c = calloc(1, sizeof *c);
	struct cfx_writer echoed = { 0 }, bin = { 0 };
	static uint8_t buf[65536];
	size_t payload = 0, reads = 0;
	int failed = 0;

	memset(&sc, 0, sizeof sc);
	sc.in = p;
	sc.in_len = n;
	sc.read_max = read_bytes[ctrl & FZ_WS_READ_MASK];
	sc.drain = (ctrl & FZ_WS_SMALL_WRITES) ? 1 + (n % 5) * 100 : SIZE_MAX;
	sc.write_room = sc.drain;
	c->io.fd = -1;
	c->ops = &script_ops;
	c->transport = &sc;
	cfx_ws_attach((ctrl & FZ_WS_ANY) ? &any_opts : &mqtt_opts, c);

	while (sc.in_off < sc.in_len) {
		size_t before = sc.in_off;
		ssize_t r;

		sc.write_room = sc.drain;
		r = c->ops->read(c, buf, sizeof buf);

		FZ_CHECK(++reads <= n + 1);
		if (r == 0 || (r < 0 && r != -EAGAIN)) {
			failed = r < 0;
			break;
		}
		if (r == -EAGAIN) {
			FZ_CHECK(sc.in_off > before); /* progress, or the input is used up */
			continue;
		}
		FZ_CHECK(cfx_ws_is_open(c));
		payload += (size_t)r;
		FZ_CHECK(payload <= sc.in_off);
		fz_touch(buf, (size_t)r);
		if ((ctrl & FZ_WS_ECHO) && echo(c, buf, (size_t)r, &echoed)) {
			failed = 1;
			break;
		}
	}
	/* Let everything queued go out. */
	sc.write_room = SIZE_MAX;
	if (!failed && c->ops->writev(c, NULL, 0) >= 0)
		FZ_CHECK(!c->ops->pending(c));

	const uint8_t *end = sc.out.len ? memmem(sc.out.p, sc.out.len, "\r\n\r\n", 4) : NULL;
	if (sc.out.len && !end) {
		/* Only a failed connection leaves its answer unfinished (best effort). */
		FZ_CHECK(failed);
		FZ_CHECK(memcmp(sc.out.p, "HTTP/1.1 ", CFX_MIN(sc.out.len, (size_t)9)) == 0);
	} else if (sc.out.len) {
		size_t head = (size_t)(end + 4 - sc.out.p);
		if (memcmp(sc.out.p, "HTTP/1.1 101 ", 13) == 0) {
			check_frames(sc.out.p + head, sc.out.len - head, &bin, failed);
			/* The binary payloads are the echoed bytes, or a prefix of them
			 * when a close went out first (later writes then fail). */
			FZ_CHECK(bin.len <= echoed.len);
			FZ_CHECK(bin.len == 0 || memcmp(bin.p, echoed.p, bin.len) == 0);
			if (!failed && !(sc.out.len > head && memmem(sc.out.p + head, sc.out.len - head,
								      "\x88", 1)))
				FZ_CHECK(bin.len == echoed.len);
		} else {
			FZ_CHECK(memcmp(sc.out.p, "HTTP/1.1 4", 10) == 0);
			FZ_CHECK(payload == 0 && !cfx_ws_is_open(c));
		}
	} else {
		FZ_CHECK(payload == 0);
	}
	c->ops->free(c);
	FZ_CHECK(c->ops == &script_ops && c->transport == &sc);
	free(c);
	cfx_writer_free(&sc.out);
	cfx_writer_free(&echoed);
	cfx_writer_free(&bin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int once;
	uint8_t ctrl;
	const uint8_t *p;
	size_t n;
	uint8_t *joined = NULL;

	if (!once) {
		cfx_log_set_level(CFX_LOG_ERROR);
		once = 1;
	}
	if (size < 1)
		return 0;
	ctrl = data[0];
	p = data + 1;
	n = size - 1;
	if (ctrl & FZ_WS_PREFIX) {
		size_t k = strlen(GOOD_REQUEST);
		joined = malloc(k + n + 1);
		memcpy(joined, GOOD_REQUEST, k);
		if (n)
			memcpy(joined + k, p, n);
		p = joined;
		n += k;
	}
	check_parser(p, n, (ctrl & FZ_WS_ANY) ? &any_opts : &mqtt_opts);
	check_transport(p, n, ctrl);
	free(joined);
	return 0;
}
