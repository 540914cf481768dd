/*
 * Unit tests for src/proto/grpc/server.c (with client.c as the peer): a
 * real HTTP/2 server on 127.0.0.1 serving a test service.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "proto/grpc/client.h"
#include "proto/grpc/grpc.h"

/* ------------------------------------------------------------------------
 * The test service
 * ------------------------------------------------------------------------ */

static void unary_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_send(call, msg, len);
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void stream_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	int n = len ? msg[0] : 0;
	for (int i = 0; i < n; i++) {
		uint8_t b = (uint8_t)i;
		grpc_call_send(call, &b, 1);
	}
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void bidi_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_send(call, msg, len);
}

static void bidi_half_close(struct grpc_call *call)
{
	grpc_call_finish(call, GRPC_OK, "bye");
}

static void fail_handler(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "bad input: 100% wrong\n");
}

/* Completion from another thread, posted back to the call's loop. */
struct later {
	struct grpc_call_ref ref;
	uint8_t byte;
	int delay_ms;
};

static _Atomic int later_found, later_lost;

static void later_done(void *arg)
{
	struct later *l = arg;
	struct grpc_call *call = grpc_call_ref_resolve(&l->ref);

	if (call) {
		later_found++;
		grpc_call_send(call, &l->byte, 1);
		grpc_call_finish(call, GRPC_OK, NULL);
	} else {
		later_lost++;
	}
	grpc_call_ref_release(&l->ref);
	free(l);
}

static void *later_thread(void *arg)
{
	struct later *l = arg;
	usleep((useconds_t)l->delay_ms * 1000);
	cfx_loop_post(l->ref.loop, later_done, l);
	return NULL;
}

static void later_msg(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct later *l = calloc(1, sizeof *l);
	pthread_t t;

	l->byte = len ? msg[0] : 0;
	l->delay_ms = len > 1 ? msg[1] * 10 : 20;
	grpc_call_ref_init(&l->ref, call);
	pthread_create(&t, NULL, later_thread, l);
	pthread_detach(t);
}

static const struct grpc_method methods[] = {
	{ "/test.Echo/Unary", GRPC_UNARY, unary_msg, NULL, NULL },
	{ "/test.Echo/Stream", GRPC_SERVER_STREAM, stream_msg, NULL, NULL },
	{ "/test.Echo/Bidi", GRPC_BIDI, bidi_msg, bidi_half_close, NULL },
	{ "/test.Echo/Fail", GRPC_UNARY, fail_handler, NULL, NULL },
	{ "/test.Echo/Later", GRPC_UNARY, later_msg, NULL, NULL },
};

static const struct grpc_service svc = {
	.methods = methods,
	.nmethods = CFX_ARRAY_LEN(methods),
	.message_bytes_max = 1 << 20,
};

static struct cfx_server *srv;
static int port;

static int setup(void **state)
{
	struct cfx_listener_opts o = { .name = "grpc", .addr = "127.0.0.1:0",
				       .proto = &grpc_conn_proto, .proto_arg = (void *)&svc };
	(void)state;
	if (cfx_server_new(&srv, 2) || cfx_server_listen(srv, &o, &port) || cfx_server_start(srv))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cfx_server_stop(srv, 2000);
	cfx_server_free(srv);
	return 0;
}

static struct grpc_client *client(void)
{
	struct grpc_client *cl;
	assert_int_equal(grpc_client_connect("127.0.0.1", port, 5000, &cl), 0);
	grpc_client_set_header(cl, "x-mq-client-id", "test-client");
	return cl;
}

/* ------------------------------------------------------------------------ */

static void test_unary(void **state)
{
	struct grpc_client *cl = client();
	uint8_t *resp;
	size_t len;
	int status;
	char *msg;
	(void)state;

	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Unary", "hello", 5, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_OK);
	assert_int_equal(len, 5);
	assert_memory_equal(resp, "hello", 5);
	cfx_free(resp);
	cfx_free(msg);
	/* An empty request message is a message too. */
	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Unary", "", 0, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_OK);
	assert_int_equal(len, 0);
	cfx_free(resp);
	grpc_client_close(cl);
}

static void test_unknown_method_is_unimplemented(void **state)
{
	struct grpc_client *cl = client();
	uint8_t *resp;
	size_t len;
	int status;
	char *msg;
	(void)state;

	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Nope", "x", 1, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_UNIMPLEMENTED);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "/test.Echo/Nope"));
	assert_null(resp);
	cfx_free(msg);
	/* The status message is percent-encoded where it must be. */
	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Fail", "x", 1, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_INVALID_ARGUMENT);
	assert_string_equal(msg, "bad input: 100%25 wrong%0A");
	cfx_free(msg);
	grpc_client_close(cl);
}

static void test_server_stream_and_bidi(void **state)
{
	struct grpc_client *cl = client();
	struct grpc_client_event ev;
	uint8_t n = 50;
	int got = 0, ended = 0;
	(void)state;

	int32_t id = grpc_client_start(cl, "/test.Echo/Stream", &n, 1, 1, 5000);
	assert_true(id > 0);
	while (!ended && grpc_client_poll(cl, 5000, &ev) == 1) {
		if (ev.type == GRPC_EV_MESSAGE) {
			assert_int_equal(ev.len, 1);
			assert_int_equal(ev.data[0], got);
			got++;
		} else {
			assert_int_equal(ev.status, GRPC_OK);
			ended = 1;
		}
		cfx_free(ev.data);
		cfx_free(ev.message);
	}
	assert_int_equal(got, 50);

	/* Bidi: each message echoed as it arrives, status after the half-close. */
	id = grpc_client_start(cl, "/test.Echo/Bidi", "a", 1, 0, 5000);
	assert_true(id > 0);
	assert_int_equal(grpc_client_poll(cl, 5000, &ev), 1);
	assert_int_equal(ev.type, GRPC_EV_MESSAGE);
	assert_memory_equal(ev.data, "a", 1);
	cfx_free(ev.data);
	assert_int_equal(grpc_client_send(cl, id, "bc", 2, 1), 0);
	assert_int_equal(grpc_client_poll(cl, 5000, &ev), 1);
	assert_int_equal(ev.type, GRPC_EV_MESSAGE);
	assert_memory_equal(ev.data, "bc", 2);
	cfx_free(ev.data);
	assert_int_equal(grpc_client_poll(cl, 5000, &ev), 1);
	assert_int_equal(ev.type, GRPC_EV_END);
	assert_int_equal(ev.status, GRPC_OK);
	assert_string_equal(ev.message, "bye");
	cfx_free(ev.message);
	grpc_client_close(cl);
}

static void test_many_calls_in_flight_complete_later(void **state)
{
	struct grpc_client *cl = client();
	struct grpc_client_event ev;
	int32_t ids[100];
	int seen[100] = { 0 }, ended = 0;
	(void)state;

	later_found = 0;
	for (int i = 0; i < 100; i++) {
		uint8_t req[2] = { (uint8_t)i, (uint8_t)(i % 5) };
		ids[i] = grpc_client_start(cl, "/test.Echo/Later", req, 2, 1, 5000);
		assert_true(ids[i] > 0);
	}
	while (ended < 100 && grpc_client_poll(cl, 10000, &ev) == 1) {
		int i = 0;
		while (i < 100 && ids[i] != ev.stream_id)
			i++;
		assert_true(i < 100);
		if (ev.type == GRPC_EV_MESSAGE) {
			assert_int_equal(ev.data[0], i);
			seen[i]++;
		} else {
			assert_int_equal(ev.status, GRPC_OK);
			ended++;
		}
		cfx_free(ev.data);
		cfx_free(ev.message);
	}
	assert_int_equal(ended, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(later_found, 100);
	grpc_client_close(cl);
}

static void test_completion_after_the_client_left(void **state)
{
	struct grpc_client *cl = client();
	uint8_t req[2] = { 7, 30 }; /* completes after 300 ms */
	(void)state;

	later_lost = 0;
	assert_true(grpc_client_start(cl, "/test.Echo/Later", req, 2, 1, 5000) > 0);
	usleep(50000);
	grpc_client_close(cl); /* gone before the completion */
	for (int i = 0; i < 100 && later_lost == 0; i++)
		usleep(20000);
	assert_int_equal(later_lost, 1);
}

static void test_oversized_message_is_refused(void **state)
{
	struct grpc_client *cl = client();
	size_t big = (1u << 20) + 1;
	uint8_t *req = calloc(1, big), *resp;
	size_t len;
	int status;
	char *msg;
	(void)state;

	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Unary", req, big, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_RESOURCE_EXHAUSTED);
	cfx_free(msg);
	cfx_free(resp);
	/* The connection still serves. */
	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Unary", "ok", 2, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_OK);
	cfx_free(resp);
	cfx_free(msg);
	free(req);
	grpc_client_close(cl);
}

static void test_garbage_closes_only_that_connection(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct grpc_client *cl = client();
	char buf[256];
	uint8_t *resp;
	size_t len;
	int status;
	char *msg;
	(void)state;

	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(write(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 27);
	/* The server answers (a GOAWAY) and closes. */
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) > 0)
		;
	assert_int_equal(r, 0);
	close(fd);
	assert_int_equal(grpc_client_unary(cl, "/test.Echo/Unary", "still", 5, 5000, &resp, &len,
					   &status, &msg), 0);
	assert_int_equal(status, GRPC_OK);
	cfx_free(resp);
	cfx_free(msg);
	grpc_client_close(cl);
}

static void test_parse_timeout(void **state)
{
	(void)state;
	assert_int_equal(grpc_parse_timeout_ms("100m"), 100);
	assert_int_equal(grpc_parse_timeout_ms("5S"), 5000);
	assert_int_equal(grpc_parse_timeout_ms("2M"), 120000);
	assert_int_equal(grpc_parse_timeout_ms("1H"), 3600000);
	assert_int_equal(grpc_parse_timeout_ms("3000000u"), 3000);
	assert_int_equal(grpc_parse_timeout_ms("5000000000n"), -1); /* 10 digits: too long */
	assert_int_equal(grpc_parse_timeout_ms("5x"), -1);
	assert_int_equal(grpc_parse_timeout_ms("m"), -1);
	assert_int_equal(grpc_parse_timeout_ms(""), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary),
		cmocka_unit_test(test_unknown_method_is_unimplemented),
		cmocka_unit_test(test_server_stream_and_bidi),
		cmocka_unit_test(test_many_calls_in_flight_complete_later),
		cmocka_unit_test(test_completion_after_the_client_left),
		cmocka_unit_test(test_oversized_message_is_refused),
		cmocka_unit_test(test_garbage_closes_only_that_connection),
		cmocka_unit_test(test_parse_timeout),
	};
	signal(SIGPIPE, SIG_IGN);
	cfx_log_set_level(CFX_LOG_ERROR);
	return cmocka_run_group_tests(tests, setup, teardown);
}
