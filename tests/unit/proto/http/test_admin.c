/*
 * Unit tests for src/proto/http/admin.c and metrics.c: the admin routes
 * in-process, over a memory connection (net/conn.h) speaking HTTP/1.1 to an
 * admin service on a real broker in a temporary directory. Messages are
 * sent and popped through the broker API directly, so that positions, lag,
 * lookups (whose topic and queue come from the store's origins) and the
 * traffic counters and latency histograms of /metrics have data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "broker/stats.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/http/admin.h"
#include "../../store/store_test_util.h"

static char *dir;
static struct cfx_broker *br;
static struct admin_service *svc;
static struct cfx_loop *loop;
static struct cfx_conn *conn;
static struct cfx_writer out;

static int setup(void **state)
{
	struct cfx_broker_opts bo;
	struct admin_opts ao = { 0 };
	(void)state;

	cfx_log_set_level(CFX_LOG_ERROR - 1);
	dir = tu_tmpdir();
	cfx_broker_opts_default(&bo);
	tu_small_opts(&bo.store, dir);
	bo.store.queues_per_topic_max = 64;
	bo.auto_create = 0;
	if (cfx_broker_open(&bo, &br, NULL))
		return -1;
	ao.br = br;
	ao.version = "9.9.9";
	ao.broker_name = "unit \"broker\"";
	ao.default_queues = 3;
	svc = admin_service_new(&ao);
	admin_service_set_listener(svc, "grpc", NULL);
	admin_service_set_listener(svc, "http", "127.0.0.1:8080");
	if (cfx_loop_new(&loop, "test"))
		return -1;
	conn = cfx_conn_new_memory(loop, &http_conn_proto, &svc->http);
	cfx_writer_init(&out, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cfx_conn_free_memory(conn);
	while (cfx_loop_run_pending(loop))
		;
	cfx_loop_free(loop);
	cfx_writer_free(&out);
	admin_service_free(svc);
	cfx_broker_close(br);
	tu_rmdir(dir);
	return 0;
}

/* ------------------------------------------------------------------------
 * One request on the keep-alive connection: returns the status, *body the
 * body (NUL-terminated, in `out`), *json it parsed (or NULL; caller frees).
 * ------------------------------------------------------------------------ */

static int request(const char *method, const char *target, const char *body, const char **text,
		   json_t **json)
{
	char head[512];
	const char *p, *end;
	size_t blen = body ? strlen(body) : 0;
	int status, n;

	n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%s%s", method, target,
		     body ? "Content-Type: application/json\r\n" : "", body ? "" : "\r\n");
	if (body)
		n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n\r\n",
			      blen);
	assert_int_equal(cfx_conn_feed(conn, (const uint8_t *)head, (size_t)n), 0);
	if (body)
		assert_int_equal(cfx_conn_feed(conn, (const uint8_t *)body, blen), 0);
	for (int i = 0; i < 100 && cfx_loop_run_pending(loop); i++)
		;
	/* A deferred answer (a re-drive) comes once the broker's thread posts it. */
	for (int i = 0; i < 100000 && admin_service_deferred(svc); i++) {
		usleep(100);
		while (cfx_loop_run_pending(loop))
			;
	}
	assert_int_equal(admin_service_deferred(svc), 0);
	cfx_writer_reset(&out);
	cfx_conn_take_output(conn, &out);
	cfx_write_u8(&out, 0);
	p = (const char *)out.p;
	assert_int_equal(sscanf(p, "HTTP/1.1 %d ", &status), 1);
	end = strstr(p, "\r\n\r\n");
	assert_non_null(end);
	if (text)
		*text = end + 4;
	if (json) {
		*json = end[4] ? json_loads(end + 4, 0, NULL) : NULL;
		if (end[4])
			assert_non_null(*json);
	}
	return status;
}

static int64_t jint(json_t *o, const char *path)
{
	json_t *v = json_object_get(o, path);
	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	assert_true(json_is_string(v));
	return json_string_value(v);
}

static void sent(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	assert_int_equal(count, 1);
	assert_int_equal(res[0].err, 0);
	*(int *)arg = 1;
}

/* Sends one message and waits until it is readable. */
static void send_one(const char *topic, const char *id, const char *key, struct cfx_view body,
		     const struct cfx_prop *props, uint32_t nprops)
{
	struct cfx_send_msg m = { .type = CFX_MSG_NORMAL };
	int done = 0;

	m.m.body = body;
	m.m.msg_id = CFX_VIEW_STR(id);
	m.m.key = CFX_VIEW_STR(key);
	m.m.tag = CFX_VIEW_STR("tg");
	m.m.born_ms = 1234;
	m.m.props = props;
	m.m.prop_count = nprops;
	assert_int_equal(cfx_broker_send(br, CFX_VIEW_STR(topic), &m, 1, CFX_DURABILITY_ASYNC,
					 sent, &done),
			 0);
	assert_int_equal(done, 1);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(br), 5000), 0);
}

/* ------------------------------------------------------------------------
 * Tests (in order: they share the broker)
 * ------------------------------------------------------------------------ */

static void test_status(void **state)
{
	json_t *j, *l;
	(void)state;

	assert_int_equal(request("GET", "/v1/status", NULL, NULL, &j), 200);
	assert_string_equal(jstr(j, "version"), "9.9.9");
	assert_string_equal(jstr(j, "broker"), "unit \"broker\"");
	l = json_object_get(j, "listeners");
	assert_true(json_is_null(json_object_get(l, "grpc")));
	assert_string_equal(jstr(l, "http"), "127.0.0.1:8080");
	assert_int_equal(jint(json_object_get(j, "store"), "segments"), 1);
	assert_true(jint(j, "uptime_ms") >= 0);
	json_decref(j);
}

static void test_topics(void **state)
{
	json_t *j;
	(void)state;

	assert_int_equal(request("POST", "/v1/topics", "{\"name\":\"a\"}", NULL, &j), 201);
	assert_string_equal(jstr(j, "type"), "normal");
	assert_int_equal(jint(j, "queues"), 3); /* the service's default */
	json_decref(j);
	assert_int_equal(request("POST", "/v1/topics",
				 "{\"name\":\"%DLQ%x\",\"type\":\"mixed\",\"queues\":1}", NULL, &j),
			 201);
	json_decref(j);
	/* '%' in a name travels percent-encoded in the path. */
	assert_int_equal(request("GET", "/v1/topics/%25DLQ%25x", NULL, NULL, &j), 200);
	assert_string_equal(jstr(j, "name"), "%DLQ%x");
	assert_int_equal(json_array_size(json_object_get(j, "queue_offsets")), 1);
	json_decref(j);
	assert_int_equal(request("POST", "/v1/topics", "{\"name\":\"a\",\"queues\":65}", NULL, &j),
			 400);
	json_decref(j);
	assert_int_equal(request("POST", "/v1/topics", "{\"name\":\"a\"}", NULL, &j), 409);
	assert_string_equal(jstr(j, "error"), "conflict");
	json_decref(j);
	assert_int_equal(request("PATCH", "/v1/topics/a", "{\"queues\":64,\"type\":\"fifo\"}", NULL,
				 &j),
			 200);
	assert_int_equal(jint(j, "queues"), 64);
	assert_string_equal(jstr(j, "type"), "fifo");
	json_decref(j);
	assert_int_equal(request("PATCH", "/v1/topics/a", "{\"queues\":65}", NULL, &j), 400);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/topics", NULL, NULL, &j), 200);
	assert_int_equal(json_array_size(json_object_get(j, "topics")), 2);
	/* Sorted by name: "%DLQ%x" < "a". */
	assert_string_equal(jstr(json_array_get(json_object_get(j, "topics"), 0), "name"),
			    "%DLQ%x");
	json_decref(j);
	assert_int_equal(request("DELETE", "/v1/topics/a", NULL, NULL, NULL), 204);
	assert_int_equal(request("DELETE", "/v1/topics/a", NULL, NULL, &j), 404);
	json_decref(j);
}

static void test_groups(void **state)
{
	json_t *j, *r;
	(void)state;

	assert_int_equal(request("POST", "/v1/groups",
				 "{\"name\":\"g\",\"retry\":{\"kind\":\"exponential\","
				 "\"multiplier\":1.5}}",
				 NULL, &j),
			 201);
	r = json_object_get(j, "retry");
	assert_string_equal(jstr(r, "kind"), "exponential");
	assert_int_equal(jint(r, "max_attempts"), 17);
	assert_true(json_real_value(json_object_get(r, "multiplier")) == 1.5);
	assert_null(json_object_get(r, "steps_ms"));
	json_decref(j);
	/* Back to customized: the default steps come back. */
	assert_int_equal(request("PATCH", "/v1/groups/g", "{\"retry\":{\"kind\":\"customized\"}}",
				 NULL, &j),
			 200);
	r = json_object_get(j, "retry");
	assert_int_equal(json_array_size(json_object_get(r, "steps_ms")), 18);
	json_decref(j);
	assert_int_equal(request("PATCH", "/v1/groups/g",
				 "{\"retry\":{\"steps_ms\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,"
				 "17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33]}}",
				 NULL, &j),
			 400);
	json_decref(j);
	assert_int_equal(request("POST", "/v1/groups", "{\"name\":\"g\",\"name\":\"h\"}", NULL, &j),
			 400); /* duplicate members */
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/g", NULL, NULL, &j), 200);
	assert_int_equal(json_array_size(json_object_get(j, "topics")), 0);
	json_decref(j);
}

static void test_messages_and_positions(void **state)
{
	static const struct cfx_prop props[] = {
		{ { (const uint8_t *)"k\xff", 2 }, { (const uint8_t *)"v", 1 } },
		{ { (const uint8_t *)"color", 5 }, { (const uint8_t *)"red", 3 } },
	};
	struct cfx_pop_req pr = { 0 };
	struct cfx_pop_result res;
	json_t *j, *m, *t, *q;
	(void)state;

	assert_int_equal(cfx_broker_topic_create(br, "m1", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_topic_create(br, "m2", CFX_MSG_NORMAL, 1), 0);
	send_one("m1", "id-1", "k1 shared", CFX_VIEW_STR("text"), props, 2);
	send_one("m2", "id-2", "shared", (struct cfx_view){ (const uint8_t *)"\xc3\x28", 2 }, NULL,
		 0);
	send_one("m2", "id-1", "other", CFX_VIEW_STR("same id, other topic"), NULL, 0);

	/* An id lookup across topics: each message says where it lives. */
	assert_int_equal(request("GET", "/v1/messages?id=id-1", NULL, NULL, &j), 200);
	assert_int_equal(json_array_size(json_object_get(j, "messages")), 2);
	m = json_array_get(json_object_get(j, "messages"), 0); /* newest first */
	assert_string_equal(jstr(m, "topic"), "m2");
	assert_int_equal(jint(m, "offset"), 1);
	m = json_array_get(json_object_get(j, "messages"), 1);
	assert_string_equal(jstr(m, "topic"), "m1");
	assert_string_equal(jstr(m, "body"), "text");
	assert_string_equal(jstr(m, "tag"), "tg");
	assert_int_equal(jint(m, "born_ms"), 1234);
	assert_int_equal(json_array_size(json_object_get(m, "keys")), 2);
	assert_string_equal(jstr(json_object_get(m, "properties"), "color"), "red");
	/* A property name that is not UTF-8 is shown with U+FFFD. */
	assert_string_equal(jstr(json_object_get(m, "properties"), "k\xef\xbf\xbd"), "v");
	json_decref(j);

	/* A body that is not UTF-8: base64 only. */
	assert_int_equal(request("GET", "/v1/messages?topic=m2&queue=0&offset=0", NULL, NULL, &j),
			 200);
	m = json_array_get(json_object_get(j, "messages"), 0);
	assert_null(json_object_get(m, "body"));
	assert_string_equal(jstr(m, "body_base64"), "wyg=");
	assert_int_equal(jint(j, "next_offset"), 1);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/messages?topic=m2&key=shared", NULL, NULL, &j), 200);
	assert_int_equal(json_array_size(json_object_get(j, "messages")), 1);
	json_decref(j);

	/* A group pops one message of m2: positions, in flight, lag. */
	assert_int_equal(request("POST", "/v1/groups/g/reset", "{\"topic\":\"m2\",\"offset\":0}",
				 NULL, &j),
			 200);
	assert_int_equal(jint(j, "lag"), 2);
	json_decref(j);
	pr.group = CFX_VIEW_STR("g");
	pr.topic = CFX_VIEW_STR("m2");
	pr.max_msgs = 1;
	pr.invisible_ms = 60000;
	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_pop(br, &pr, &res), 0);
	assert_int_equal(res.count, 1);
	cfx_pop_result_free(&res);
	assert_int_equal(request("GET", "/v1/groups/g", NULL, NULL, &j), 200);
	t = json_array_get(json_object_get(j, "topics"), 0);
	assert_string_equal(jstr(t, "topic"), "m2");
	assert_int_equal(jint(t, "lag"), 2);
	q = json_array_get(json_object_get(t, "queues"), 0);
	assert_int_equal(jint(q, "committed"), 0);
	assert_int_equal(jint(q, "next"), 1);
	assert_int_equal(jint(q, "inflight"), 1);
	assert_int_equal(jint(q, "end"), 2);
	json_decref(j);
}

/* The value of the sample line that starts with `prefix` ("name{labels} "), or -1. */
static long long metric(const char *text, const char *prefix)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, prefix, strlen(prefix)))
			return atoll(p + strlen(prefix));
	return -1;
}

static void test_metrics(void **state)
{
	struct cfx_topic_traffic tt;
	const char *text;
	(void)state;

	assert_int_equal(cfx_broker_topic_traffic(br, CFX_VIEW_STR("m2"), &tt), 0);
	assert_int_equal(tt.msgs_in, 2);
	assert_int_equal(tt.bytes_in, 2 + 20);
	assert_int_equal(tt.msgs_out, 1);
	assert_int_equal(tt.bytes_out, 2);
	assert_int_equal(cfx_broker_topic_traffic(br, CFX_VIEW_STR("nope"), &tt), CFX_ENOENT);

	assert_int_equal(request("GET", "/metrics", NULL, &text, NULL), 200);
	assert_int_equal(metric(text, "conflux_topic_messages_in_total{topic=\"m2\"} "), 2);
	assert_int_equal(metric(text, "conflux_topic_bytes_in_total{topic=\"m2\"} "), 22);
	assert_int_equal(metric(text, "conflux_topic_messages_out_total{topic=\"m2\"} "), 1);
	assert_int_equal(metric(text, "conflux_topic_messages_in_total{topic=\"m1\"} "), 1);
	assert_int_equal(metric(text, "conflux_group_lag_messages{group=\"g\",topic=\"m2\"} "), 2);
	assert_int_equal(metric(text, "conflux_group_inflight_messages{group=\"g\",topic=\"m2\"} "),
			 1);
	assert_int_equal(metric(text, "conflux_store_appends_total "), 3);
	assert_int_equal(metric(text, "conflux_store_append_duration_seconds_count "), 3);
	assert_int_equal(metric(text, "conflux_store_append_duration_seconds_bucket{le=\"+Inf\"} "),
			 3);
	assert_non_null(strstr(text, "conflux_build_info{version=\"9.9.9\",broker=\"unit "
				     "\\\"broker\\\"\"} 1\n"));
	/* The gRPC listener is off and there is no server: no connection samples for it. */
	assert_null(strstr(text, "protocol=\"grpc\""));
	assert_non_null(strstr(text, "# TYPE conflux_store_flush_duration_seconds histogram\n"));
}

static void test_errors(void **state)
{
	json_t *j;
	(void)state;

	assert_int_equal(request("GET", "/v1/groups/bad%20name", NULL, NULL, &j), 400);
	json_decref(j);
	assert_int_equal(request("POST", "/v1/groups/g/reset", "{\"topic\":\"nope\",\"offset\":0}",
				 NULL, &j),
			 404);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/messages?topic=m1&queue=64&offset=0", NULL, NULL, &j),
			 400);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/messages?topic=m1&queue=0&offset=5", NULL, NULL, &j),
			 404);
	json_decref(j);
	assert_int_equal(request("DELETE", "/v1/status", NULL, NULL, &j), 405);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/status/", NULL, NULL, &j), 404);
	json_decref(j);
	assert_int_equal(request("GET", "http://host/v1/status?", NULL, NULL, &j), 200);
	json_decref(j);
}

/* Puts a dead letter of `origin` (NULL: none) into %DLQ%<group>. */
static void put_dead(const char *dlq, const char *origin, const char *id, struct cfx_view body,
		     const char *attempts)
{
	struct cfx_prop props[4];
	uint32_t n = 0;

	props[n++] = (struct cfx_prop){ CFX_VIEW_STR("color"), CFX_VIEW_STR("red") };
	if (origin)
		props[n++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ORIGIN_TOPIC"),
						CFX_VIEW_STR(origin) };
	props[n++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ORIGIN_MESSAGE_ID"), CFX_VIEW_STR(id) };
	if (attempts)
		props[n++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ATTEMPTS"),
						CFX_VIEW_STR(attempts) };
	send_one(dlq, id, "k1 k2", body, props, n);
}

static void test_dlq(void **state)
{
	json_t *j, *m, *ms;
	const char *text;
	(void)state;

	assert_int_equal(request("POST", "/v1/topics", "{\"name\":\"dq\",\"queues\":2}", NULL, NULL),
			 201);
	assert_int_equal(cfx_broker_topic_create(br, "%DLQ%dg", CFX_TOPIC_MIXED, 1), 0);
	put_dead("%DLQ%dg", "dq", "D1", CFX_VIEW_STR("first"), "3");
	put_dead("%DLQ%dg", "dq", "D2", (struct cfx_view){ (const uint8_t *)"\xff\x00", 2 }, NULL);
	put_dead("%DLQ%dg", "dq", "D3", CFX_VIEW_STR("third"), "x7");

	/* The list, from the beginning (never re-driven). */
	assert_int_equal(request("GET", "/v1/groups/dg/dlq", NULL, NULL, &j), 200);
	assert_string_equal(jstr(j, "group"), "dg");
	assert_string_equal(jstr(j, "topic"), "%DLQ%dg");
	assert_int_equal(jint(j, "position"), 0);
	assert_int_equal(jint(j, "end"), 3);
	ms = json_object_get(j, "messages");
	assert_int_equal(json_array_size(ms), 3);
	m = json_array_get(ms, 0);
	assert_int_equal(jint(m, "offset"), 0);
	assert_string_equal(jstr(m, "message_id"), "D1");
	assert_string_equal(jstr(m, "origin_topic"), "dq");
	assert_string_equal(jstr(m, "origin_message_id"), "D1");
	assert_int_equal(jint(m, "attempts"), 3);
	assert_string_equal(jstr(m, "tag"), "tg");
	assert_int_equal(json_array_size(json_object_get(m, "keys")), 2);
	assert_int_equal(jint(m, "born_ms"), 1234);
	assert_true(jint(m, "store_ms") > 0);
	assert_int_equal(jint(m, "body_size"), 5);
	assert_string_equal(jstr(m, "body"), "first");
	assert_null(json_object_get(m, "body_base64"));
	assert_string_equal(jstr(json_object_get(m, "properties"), "color"), "red");
	/* Not UTF-8: base64 only; no or a bad DLQ_ATTEMPTS: null. */
	m = json_array_get(ms, 1);
	assert_null(json_object_get(m, "body"));
	assert_string_equal(jstr(m, "body_base64"), "/wA=");
	assert_true(json_is_null(json_object_get(m, "attempts")));
	assert_true(json_is_null(json_object_get(json_array_get(ms, 2), "attempts")));
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/dg/dlq?max=1", NULL, NULL, &j), 200);
	assert_int_equal(json_array_size(json_object_get(j, "messages")), 1);
	json_decref(j);

	/* Parameters are checked before anything happens. */
	static const char *const bad_gets[] = { "?max=0", "?max=1001", "?max=abc", "?max=-1",
						"?max=", "?max=1&max=2", "?count=1" };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_gets); i++) {
		char target[64];
		snprintf(target, sizeof target, "/v1/groups/dg/dlq%s", bad_gets[i]);
		assert_int_equal(request("GET", target, NULL, NULL, &j), 400);
		json_decref(j);
	}
	static const char *const bad_bodies[] = { "{\"max\":0}", "{\"max\":100001}",
						  "{\"max\":\"2\"}", "{\"max\":1.5}", "{\"maxx\":1}",
						  "[1]", "{" };
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_bodies); i++) {
		assert_int_equal(request("POST", "/v1/groups/dg/dlq/redrive", bad_bodies[i], NULL,
					 &j),
				 400);
		json_decref(j);
	}
	assert_int_equal(request("POST", "/v1/groups/dg/dlq/redrive?max=1", NULL, NULL, &j), 400);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/dg/dlq", NULL, NULL, &j), 200);
	assert_int_equal(jint(j, "position"), 0); /* none of them moved anything */
	json_decref(j);

	/* Re-drive two, then the rest; the list follows the position. */
	assert_int_equal(request("POST", "/v1/groups/dg/dlq/redrive", "{\"max\":2}", NULL, &j),
			 200);
	assert_int_equal(jint(j, "redriven"), 2);
	assert_null(json_object_get(j, "error"));
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/dg/dlq", NULL, NULL, &j), 200);
	assert_int_equal(jint(j, "position"), 2);
	ms = json_object_get(j, "messages");
	assert_int_equal(json_array_size(ms), 1);
	assert_string_equal(jstr(json_array_get(ms, 0), "message_id"), "D3");
	json_decref(j);
	assert_int_equal(request("POST", "/v1/groups/dg/dlq/redrive", NULL, NULL, &j), 200);
	assert_int_equal(jint(j, "redriven"), 1);
	json_decref(j);
	assert_int_equal(request("POST", "/v1/groups/dg/dlq/redrive", "{}", NULL, &j), 200);
	assert_int_equal(jint(j, "redriven"), 0);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/dg/dlq", NULL, NULL, &j), 200);
	assert_int_equal(jint(j, "position"), 3);
	assert_int_equal(json_array_size(json_object_get(j, "messages")), 0);
	json_decref(j);
	/* In the origin topic now, the DLQ_* properties gone. */
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(br), 5000), 0);
	assert_int_equal(request("GET", "/v1/messages?id=D2", NULL, NULL, &j), 200);
	ms = json_object_get(j, "messages");
	assert_true(json_array_size(ms) >= 1);
	int in_origin = 0;
	for (size_t i = 0; i < json_array_size(ms); i++) {
		m = json_array_get(ms, i);
		if (strcmp(jstr(m, "topic"), "dq"))
			continue;
		in_origin++;
		assert_null(json_object_get(json_object_get(m, "properties"), "DLQ_ORIGIN_TOPIC"));
		assert_string_equal(jstr(json_object_get(m, "properties"), "color"), "red");
	}
	assert_int_equal(in_origin, 1);
	json_decref(j);

	/* A message without an origin stays, and the answer says why. */
	put_dead("%DLQ%dg", NULL, "D4", CFX_VIEW_STR("orphan"), NULL);
	assert_int_equal(request("POST", "/v1/groups/dg/dlq/redrive", NULL, NULL, &j), 200);
	assert_int_equal(jint(j, "redriven"), 0);
	assert_non_null(strstr(jstr(j, "error"), "DLQ_ORIGIN_TOPIC"));
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/dg/dlq", NULL, NULL, &j), 200);
	assert_int_equal(jint(j, "position"), 3);
	ms = json_object_get(j, "messages");
	assert_int_equal(json_array_size(ms), 1);
	assert_true(json_is_null(json_object_get(json_array_get(ms, 0), "origin_topic")));
	json_decref(j);

	/* No such DLQ; a name too long for a redrive group; the methods. */
	assert_int_equal(request("GET", "/v1/groups/nobody/dlq", NULL, &text, &j), 404);
	assert_non_null(strstr(text, "no dead-letter queue"));
	json_decref(j);
	assert_int_equal(request("POST", "/v1/groups/nobody/dlq/redrive", NULL, NULL, &j), 404);
	assert_string_equal(jstr(j, "error"), "not_found");
	json_decref(j);
	char target[200];
	snprintf(target, sizeof target, "/v1/groups/%0112d/dlq", 0);
	assert_int_equal(request("GET", target, NULL, NULL, &j), 400);
	json_decref(j);
	assert_int_equal(request("GET", "/v1/groups/dg/dlq/redrive", NULL, NULL, &j), 405);
	json_decref(j);
	assert_int_equal(request("DELETE", "/v1/groups/dg/dlq", NULL, NULL, &j), 405);
	json_decref(j);
}

static void test_dlq_pipelined(void **state)
{
	static const char reqs[] = "POST /v1/groups/pg/dlq/redrive HTTP/1.1\r\nHost: t\r\n\r\n"
				   "GET /v1/groups/pg/dlq HTTP/1.1\r\nHost: t\r\n\r\n";
	const char *a, *b;
	(void)state;

	/* The request behind a re-drive waits for its answer, then sees its effect. */
	assert_int_equal(cfx_broker_topic_create(br, "%DLQ%pg", CFX_TOPIC_MIXED, 1), 0);
	put_dead("%DLQ%pg", "dq", "P1", CFX_VIEW_STR("p"), "1");
	assert_int_equal(cfx_conn_feed(conn, (const uint8_t *)reqs, sizeof reqs - 1), 0);
	for (int i = 0; i < 100000 && admin_service_deferred(svc); i++) {
		usleep(100);
		while (cfx_loop_run_pending(loop))
			;
	}
	while (cfx_loop_run_pending(loop))
		;
	cfx_writer_reset(&out);
	cfx_conn_take_output(conn, &out);
	cfx_write_u8(&out, 0);
	a = strstr((const char *)out.p, "{\"redriven\":1}");
	b = strstr((const char *)out.p, "\"position\":1");
	assert_true(a && b && a < b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_topics),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_messages_and_positions),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_dlq),
		cmocka_unit_test(test_dlq_pipelined),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
