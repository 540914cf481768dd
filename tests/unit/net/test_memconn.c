/*
 * Unit tests for the memory connections of src/net/conn.c and for
 * cfx_loop_run_pending (src/net/loop.c): a protocol driven in-process.
 *
 * The gRPC server (src/proto/grpc/server.c) runs on a memory connection and
 * an nghttp2 client session plays the peer: its bytes are fed in, the
 * server's output goes back to it. A small echo protocol checks the close
 * and free rules in every state (ASan reports a use after free or a leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/grpc/grpc.h"

/* ------------------------------------------------------------------------
 * The test service
 * ------------------------------------------------------------------------ */

static int park_closed; /* on_close calls of parked calls */

static void echo_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_send(call, msg, len);
	grpc_call_finish(call, GRPC_OK, NULL);
}

/* Answered from another thread, through the loop's task queue. */
struct later {
	struct grpc_call_ref ref;
	uint8_t byte;
};

static void later_done(void *arg)
{
	struct later *l = arg;
	struct grpc_call *call = grpc_call_ref_resolve(&l->ref);

	if (call) {
		grpc_call_send(call, &l->byte, 1);
		grpc_call_finish(call, GRPC_OK, NULL);
	}
	grpc_call_ref_release(&l->ref);
	free(l);
}

static void *later_thread(void *arg)
{
	struct later *l = arg;

	usleep(20000);
	cfx_loop_post(l->ref.loop, later_done, l);
	return NULL;
}

static void later_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct later *l = calloc(1, sizeof *l);
	pthread_t t;

	l->byte = len ? msg[0] : 0;
	grpc_call_ref_init(&l->ref, call);
	assert_int_equal(pthread_create(&t, NULL, later_thread, l), 0);
	pthread_detach(t);
}

/* Never answers: only the end of the connection ends it. */
static void park_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	grpc_call_set_data(call, &park_closed);
}

static void park_close(struct grpc_call *call)
{
	int *n = grpc_call_data(call);
	if (n)
		(*n)++;
}

static const struct grpc_method methods[] = {
	{ "/test.Mem/Echo", GRPC_UNARY, echo_msg, NULL, NULL },
	{ "/test.Mem/Later", GRPC_UNARY, later_msg, NULL, NULL },
	{ "/test.Mem/Park", GRPC_SERVER_STREAM, park_msg, NULL, park_close },
};

static const struct grpc_service svc = {
	.methods = methods,
	.nmethods = CFX_ARRAY_LEN(methods),
	.message_bytes_max = 1 << 20,
};

/* ------------------------------------------------------------------------
 * The peer: an nghttp2 client session whose bytes go through memory
 * ------------------------------------------------------------------------ */

struct peer {
	nghttp2_session *s;
	const uint8_t *body;	/* request: a gRPC length-prefixed message */
	size_t body_len, body_off;
	int http_status;	/* :status of the response headers */
	int grpc_status;	/* from the trailers, -1 until they come */
	int headers_frames;	/* HEADERS frames received (response + trailers = 2) */
	int closed;		/* the stream closed */
	uint32_t close_code;
	int goaway;
	uint8_t data[4096];	/* response DATA, framing included */
	size_t data_len;
};

static int peer_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			  size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			  void *ud)
{
	struct peer *p = ud;
	char v[16];

	(void)s;
	(void)f;
	(void)flags;
	if (valuelen >= sizeof v)
		return 0;
	memcpy(v, value, valuelen);
	v[valuelen] = '\0';
	if (namelen == 7 && !memcmp(name, ":status", 7))
		p->http_status = atoi(v);
	else if (namelen == 11 && !memcmp(name, "grpc-status", 11))
		p->grpc_status = atoi(v);
	return 0;
}

static int peer_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
			size_t len, void *ud)
{
	struct peer *p = ud;

	(void)s;
	(void)flags;
	(void)id;
	assert_true(p->data_len + len <= sizeof p->data);
	memcpy(p->data + p->data_len, data, len);
	p->data_len += len;
	return 0;
}

static int peer_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct peer *p = ud;

	(void)s;
	if (f->hd.type == NGHTTP2_HEADERS)
		p->headers_frames++;
	if (f->hd.type == NGHTTP2_GOAWAY)
		p->goaway = 1;
	return 0;
}

static int peer_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct peer *p = ud;

	(void)s;
	(void)id;
	p->closed = 1;
	p->close_code = code;
	return 0;
}

static ssize_t peer_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct peer *p = ud;
	size_t k = CFX_MIN(length, p->body_len - p->body_off);

	(void)s;
	(void)id;
	(void)src;
	memcpy(buf, p->body + p->body_off, k);
	p->body_off += k;
	if (p->body_off == p->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

static void peer_init(struct peer *p)
{
	nghttp2_session_callbacks *cbs;

	memset(p, 0, sizeof *p);
	p->grpc_status = -1;
	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, peer_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, peer_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, peer_on_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, peer_on_close);
	assert_int_equal(nghttp2_session_client_new(&p->s, cbs, p), 0);
	nghttp2_session_callbacks_del(cbs);
	assert_int_equal(nghttp2_submit_settings(p->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE }

/* Submits one call whose request is `msg` (framed here into `frame`). */
static int32_t peer_call(struct peer *p, const char *path, const char *msg, uint8_t *frame)
{
	size_t len = strlen(msg);
	nghttp2_nv nv[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path),
			    NV(":authority", "memory"), NV("content-type", "application/grpc"),
			    NV("te", "trailers") };
	nghttp2_data_provider prd = { .read_callback = peer_body };
	int32_t id;

	frame[0] = 0;
	cfx_store_be32(frame + 1, (uint32_t)len);
	memcpy(frame + 5, msg, len);
	p->body = frame;
	p->body_len = 5 + len;
	p->body_off = 0;
	id = nghttp2_submit_request(p->s, NULL, nv, CFX_ARRAY_LEN(nv), &prd, NULL);
	assert_true(id > 0);
	return id;
}

/* Everything the peer wants to send, the client preface first. */
static void peer_take(struct peer *p, struct cfx_writer *wr)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(p->s, &data);
		assert_true(n >= 0);
		if (n == 0)
			return;
		cfx_write_bytes(wr, data, (size_t)n);
	}
}

/* Moves the peer's bytes to the server (in `chunk`-byte feeds), runs the
 * loop, and hands the server's answer back to the peer. Returns the
 * server's bytes. */
static size_t exchange(struct peer *p, struct cfx_loop *loop, struct cfx_conn *c, size_t chunk)
{
	struct cfx_writer in = { 0 }, out = { 0 };
	size_t got;

	peer_take(p, &in);
	for (size_t off = 0; off < in.len; off += chunk)
		assert_int_equal(cfx_conn_feed(c, in.p + off, CFX_MIN(chunk, in.len - off)), 0);
	while (cfx_loop_run_pending(loop))
		;
	got = cfx_conn_take_output(c, &out);
	assert_int_equal(got, out.len);
	if (out.len)
		assert_int_equal(nghttp2_session_mem_recv(p->s, out.p, out.len), (ssize_t)out.len);
	cfx_writer_free(&in);
	cfx_writer_free(&out);
	return got;
}

static void check_echo(const struct peer *p, const char *msg)
{
	size_t len = strlen(msg);

	assert_true(p->closed);
	assert_int_equal(p->close_code, NGHTTP2_NO_ERROR);
	assert_int_equal(p->http_status, 200);
	assert_int_equal(p->headers_frames, 2); /* response headers, then trailers */
	assert_int_equal(p->grpc_status, GRPC_OK);
	assert_int_equal(p->data_len, 5 + len);
	assert_int_equal(p->data[0], 0);
	assert_int_equal(cfx_load_be32(p->data + 1), len);
	assert_memory_equal(p->data + 5, msg, len);
}

static struct cfx_loop *new_loop(void)
{
	struct cfx_loop *loop;
	assert_int_equal(cfx_loop_new(&loop, "memtest"), 0);
	return loop;
}

/* ------------------------------------------------------------------------
 * gRPC through a memory connection
 * ------------------------------------------------------------------------ */

static void test_grpc_unary_call(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c = cfx_conn_new_memory(loop, &grpc_conn_proto, (void *)&svc);
	struct peer p;
	uint8_t frame[64];
	(void)state;

	assert_non_null(c);
	assert_int_equal(c->io.fd, -1);
	assert_string_equal(cfx_listener_name(c->listener), "memory");
	assert_ptr_equal(cfx_listener_proto_arg(c->listener), &svc);
	peer_init(&p);
	peer_call(&p, "/test.Mem/Echo", "hello, memory", frame);
	/* The server's SETTINGS, the response and its trailers come out at once. */
	assert_true(exchange(&p, loop, c, 1 << 20) > 0);
	check_echo(&p, "hello, memory");

	/* A second call on the same connection, fed one byte at a time. */
	memset(&p.data, 0, sizeof p.data);
	p.data_len = 0;
	p.closed = p.headers_frames = 0;
	p.grpc_status = -1;
	peer_call(&p, "/test.Mem/Echo", "again", frame);
	exchange(&p, loop, c, 1);
	check_echo(&p, "again");

	cfx_conn_free_memory(c);
	assert_int_equal(cfx_loop_run_pending(loop), 0);
	nghttp2_session_del(p.s);
	cfx_loop_free(loop);
}

static void test_grpc_answer_posted_from_a_thread(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c = cfx_conn_new_memory(loop, &grpc_conn_proto, (void *)&svc);
	struct peer p;
	uint8_t frame[64];
	(void)state;

	peer_init(&p);
	peer_call(&p, "/test.Mem/Later", "L", frame);
	exchange(&p, loop, c, 7);
	assert_false(p.closed); /* the thread answers 20 ms later */
	for (int i = 0; i < 500 && !p.closed; i++) {
		usleep(2000);
		exchange(&p, loop, c, 7);
	}
	check_echo(&p, "L");
	cfx_conn_free_memory(c);
	nghttp2_session_del(p.s);
	cfx_loop_free(loop);
}

static void test_grpc_free_ends_parked_calls(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c = cfx_conn_new_memory(loop, &grpc_conn_proto, (void *)&svc);
	struct peer p;
	uint8_t frame[64];
	(void)state;

	park_closed = 0;
	peer_init(&p);
	peer_call(&p, "/test.Mem/Park", "x", frame);
	exchange(&p, loop, c, 1 << 20);
	assert_false(p.closed);
	assert_int_equal(p.http_status, 0); /* nothing answered */
	assert_int_equal(park_closed, 0);
	/* Freeing an open connection ends its calls at once. */
	cfx_conn_free_memory(c);
	assert_int_equal(park_closed, 1);
	while (cfx_loop_run_pending(loop))
		;
	assert_int_equal(park_closed, 1);
	nghttp2_session_del(p.s);
	cfx_loop_free(loop);
}

/* Finds a frame of `type` in the server's output (frame headers walked in order). */
static int has_frame(const struct cfx_writer *out, uint8_t type)
{
	size_t off = 0;

	while (off + 9 <= out->len) {
		const uint8_t *h = out->p + off;
		size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
		if (h[3] == type)
			return 1;
		off += 9 + len;
	}
	return 0;
}

static void test_grpc_protocol_errors_close(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c = cfx_conn_new_memory(loop, &grpc_conn_proto, (void *)&svc);
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const uint8_t settings[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
	static const uint8_t unknown[] = { 0, 0, 4, 0xfa, 0, 0, 0, 0, 1, 1, 2, 3, 4 };
	static const uint8_t data0[] = { 0, 0, 1, 0, 0, 0, 0, 0, 0, 'x' };
	struct cfx_writer out = { 0 };
	(void)state;

	/* Not HTTP/2 at all: refused while reading. */
	assert_int_not_equal(cfx_conn_feed(c, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18), 0);
	assert_true(c->closing);
	assert_int_not_equal(cfx_conn_feed(c, settings, sizeof settings), 0);
	while (cfx_loop_run_pending(loop))
		;
	cfx_conn_take_output(c, &out);
	cfx_conn_free_memory(c);

	/* A connection error: nghttp2 answers GOAWAY, then the session ends and closes. */
	c = cfx_conn_new_memory(loop, &grpc_conn_proto, (void *)&svc);
	assert_int_equal(cfx_conn_feed(c, (const uint8_t *)preface, sizeof preface - 1), 0);
	assert_int_equal(cfx_conn_feed(c, settings, sizeof settings), 0);
	assert_int_equal(cfx_conn_feed(c, unknown, sizeof unknown), 0); /* ignored */
	assert_int_equal(cfx_conn_feed(c, data0, sizeof data0), 0);
	assert_false(c->closing);
	while (cfx_loop_run_pending(loop))
		;
	assert_true(c->closing); /* and torn down: the struct waits for its owner */
	cfx_writer_reset(&out);
	assert_true(cfx_conn_take_output(c, &out) > 0);
	assert_true(has_frame(&out, 4)); /* SETTINGS */
	assert_true(has_frame(&out, 7)); /* GOAWAY */
	assert_int_not_equal(cfx_conn_feed(c, settings, sizeof settings), 0);
	cfx_conn_free_memory(c);
	assert_int_equal(cfx_loop_run_pending(loop), 0);
	cfx_writer_free(&out);
	cfx_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * Close and free rules, with a protocol of our own
 * ------------------------------------------------------------------------ */

static int echo_opens, echo_closes, echo_drains;

static int echo_open(struct cfx_conn *c)
{
	echo_opens++;
	return cfx_listener_proto_arg(c->listener) == NULL; /* a NULL arg refuses */
}

/* Echoes; "q" closes from inside the callback; "!" fails. */
static int echo_read(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	if (n == 1 && p[0] == '!')
		return -1;
	cfx_conn_write(c, p, n);
	if (n == 1 && p[0] == 'q')
		cfx_conn_close(c, "quit");
	return 0;
}

static void echo_drain(struct cfx_conn *c)
{
	(void)c;
	echo_drains++;
}

static void echo_close(struct cfx_conn *c)
{
	(void)c;
	echo_closes++;
}

static const struct cfx_conn_proto echo_proto = {
	.name = "echo",
	.on_open = echo_open,
	.on_read = echo_read,
	.on_drain = echo_drain,
	.on_close = echo_close,
};

static void reset_counts(void)
{
	echo_opens = echo_closes = echo_drains = 0;
}

static void test_feed_and_take(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c;
	struct cfx_writer out = { 0 };
	static uint8_t big[100000];
	(void)state;

	reset_counts();
	c = cfx_conn_new_memory(loop, &echo_proto, &echo_opens);
	assert_int_equal(echo_opens, 1);
	assert_int_equal(cfx_conn_feed(c, (const uint8_t *)"abc", 3), 0);
	assert_int_equal(cfx_conn_feed(c, (const uint8_t *)"", 0), 0);
	/* Queued, not flushed: take_output finds it all the same. */
	assert_int_equal(cfx_conn_out_bytes(c), 3);
	assert_int_equal(cfx_conn_take_output(c, &out), 3);
	assert_int_equal(cfx_conn_out_bytes(c), 0);
	assert_memory_equal(out.p, "abc", 3);
	/* The flush still runs and reports the drain. */
	assert_true(cfx_loop_run_pending(loop) > 0);
	assert_int_equal(echo_drains, 1);

	/* Past the output mark the protocol is told to wait, until the flush. */
	memset(big, 'b', sizeof big);
	assert_int_equal(cfx_conn_feed(c, big, sizeof big), 0);
	assert_false(cfx_conn_is_writable(c));
	while (cfx_loop_run_pending(loop))
		;
	assert_true(cfx_conn_is_writable(c));
	cfx_writer_reset(&out);
	assert_int_equal(cfx_conn_take_output(c, &out), sizeof big);
	assert_int_equal(cfx_conn_take_output(c, &out), 0);
	cfx_conn_free_memory(c);
	assert_int_equal(echo_closes, 1);
	cfx_writer_free(&out);
	cfx_loop_free(loop);
}

static void test_close_inside_callback_is_deferred(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c;
	struct cfx_writer out = { 0 };
	(void)state;

	reset_counts();
	c = cfx_conn_new_memory(loop, &echo_proto, &echo_opens);
	/* The protocol closes itself: nothing is torn down before the loop runs. */
	assert_int_not_equal(cfx_conn_feed(c, (const uint8_t *)"q", 1), 0);
	assert_true(c->closing);
	assert_int_equal(echo_closes, 0);
	assert_int_not_equal(cfx_conn_feed(c, (const uint8_t *)"x", 1), 0);
	while (cfx_loop_run_pending(loop))
		;
	assert_int_equal(echo_closes, 1);
	/* What it wrote before closing is still there. */
	assert_int_equal(cfx_conn_take_output(c, &out), 1);
	assert_int_equal(out.p[0], 'q');
	cfx_conn_free_memory(c);
	assert_int_equal(echo_closes, 1);

	/* A failing on_read closes the same way; the owner frees it before the loop runs. */
	c = cfx_conn_new_memory(loop, &echo_proto, &echo_opens);
	assert_int_not_equal(cfx_conn_feed(c, (const uint8_t *)"!", 1), 0);
	assert_int_equal(echo_closes, 1);
	cfx_conn_free_memory(c); /* tears down now, frees from the queued close */
	assert_int_equal(echo_closes, 2);
	assert_true(cfx_loop_run_pending(loop) > 0);
	assert_int_equal(echo_closes, 2);
	cfx_writer_free(&out);
	cfx_loop_free(loop);
}

static void test_free_with_flush_pending(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c;
	(void)state;

	reset_counts();
	/* Written, then freed before the deferred flush ran. */
	c = cfx_conn_new_memory(loop, &echo_proto, &echo_opens);
	assert_int_equal(cfx_conn_feed(c, (const uint8_t *)"abc", 3), 0);
	assert_true(c->flush_scheduled);
	cfx_conn_free_memory(c);
	assert_int_equal(echo_closes, 1);
	assert_true(cfx_loop_run_pending(loop) >= 2); /* the flush, then the free */
	assert_int_equal(echo_drains, 0);	       /* a closed connection drains no more */

	/* Freed with nothing queued: at once. */
	c = cfx_conn_new_memory(loop, &echo_proto, &echo_opens);
	cfx_conn_free_memory(c);
	assert_int_equal(echo_closes, 2);
	assert_int_equal(cfx_loop_run_pending(loop), 0);

	/* Written, closed and freed before the loop ran; cfx_loop_free finishes it. */
	c = cfx_conn_new_memory(loop, &echo_proto, &echo_opens);
	assert_int_equal(cfx_conn_feed(c, (const uint8_t *)"abc", 3), 0);
	cfx_conn_close(c, "test");
	cfx_conn_free_memory(c);
	assert_int_equal(echo_closes, 3);
	cfx_loop_free(loop);
	cfx_conn_free_memory(NULL);
}

static void test_refused_open(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct cfx_conn *c;
	(void)state;

	reset_counts();
	c = cfx_conn_new_memory(loop, &echo_proto, NULL);
	assert_non_null(c);
	assert_true(c->closing);
	assert_int_not_equal(cfx_conn_feed(c, (const uint8_t *)"a", 1), 0);
	while (cfx_loop_run_pending(loop))
		;
	assert_int_equal(echo_closes, 1); /* on_close follows even a refused open */
	cfx_conn_free_memory(c);
	cfx_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * cfx_loop_run_pending
 * ------------------------------------------------------------------------ */

struct counts {
	int posted, deferred, timers;
	struct cfx_loop *loop;
};

static void deferred_fn(void *arg)
{
	((struct counts *)arg)->deferred++;
}

static void posted_fn(void *arg)
{
	struct counts *n = arg;
	n->posted++;
	cfx_loop_defer(n->loop, deferred_fn, n); /* runs in the same pass */
}

static void timer_fn(struct cfx_loop *loop, struct cfx_timer *t)
{
	(void)loop;
	((struct counts *)t->data)->timers++;
}

static void *poster(void *arg)
{
	struct counts *n = arg;
	cfx_loop_post(n->loop, posted_fn, n);
	return NULL;
}

static void test_run_pending(void **state)
{
	struct cfx_loop *loop = new_loop();
	struct counts n = { .loop = loop };
	struct cfx_timer now = { 0 }, later = { 0 };
	pthread_t t;
	(void)state;

	assert_int_equal(cfx_loop_run_pending(loop), 0);
	assert_int_equal(pthread_create(&t, NULL, poster, &n), 0);
	pthread_join(t, NULL);
	cfx_timer_start(loop, &now, 0, timer_fn, &n);
	cfx_timer_start(loop, &later, 60000, timer_fn, &n);
	assert_int_equal(cfx_loop_run_pending(loop), 3);
	assert_int_equal(n.posted, 1);
	assert_int_equal(n.deferred, 1);
	assert_int_equal(n.timers, 1);
	assert_true(cfx_timer_is_armed(&later));
	assert_int_equal(cfx_loop_run_pending(loop), 0); /* the eventfd was reset */
	cfx_timer_stop(loop, &later);
	cfx_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grpc_unary_call),
		cmocka_unit_test(test_grpc_answer_posted_from_a_thread),
		cmocka_unit_test(test_grpc_free_ends_parked_calls),
		cmocka_unit_test(test_grpc_protocol_errors_close),
		cmocka_unit_test(test_feed_and_take),
		cmocka_unit_test(test_close_inside_callback_is_deferred),
		cmocka_unit_test(test_free_with_flush_pending),
		cmocka_unit_test(test_refused_open),
		cmocka_unit_test(test_run_pending),
	};

	cfx_log_set_level(CFX_LOG_ERROR - 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
