/*
 * test_bridge.c - the EventBridge runtime on a real broker in a temporary
 * directory: definitions and their validation, routing through rules and
 * transforms into topic targets, HTTP targets against a real HTTP server on
 * 127.0.0.1 (binary and structured mode, retries, dead letters, permanent
 * refusals), pull, replay, and everything again after a reopen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "bridge/bridge.h"
#include "broker/broker.h"
#include "../store/store_test_util.h"

#define WAIT_MS 15000

/* ------------------------------------------------------------------------
 * A tiny HTTP endpoint: answers each request with the next status of a
 * script (then 200), remembers the requests it got.
 * ------------------------------------------------------------------------ */

struct endpoint {
	int fd, port;
	SSL_CTX *tls;		/* https when set */
	int keepalive;		/* answer without Connection: close */
	int close_after;	/* keep-alive: close after this many requests (0 = never) */
	int conns;		/* connections accepted */
	pthread_t thr;
	pthread_mutex_t mu;
	int statuses[16];
	int nstatus, next;
	char last[8192];	/* the last request, head and body */
	int requests;
	int stop;
};

static void *endpoint_main(void *arg)
{
	struct endpoint *ep = arg;

	for (;;) {
		int c = accept(ep->fd, NULL, NULL);
		SSL *ssl = NULL;
		if (c < 0)
			break;
		if (ep->tls) {
			ssl = SSL_new(ep->tls);
			SSL_set_fd(ssl, c);
			if (SSL_accept(ssl) != 1) { /* a client that does not trust us */
				SSL_free(ssl);
				close(c);
				pthread_mutex_lock(&ep->mu);
				ep->requests++;
				pthread_mutex_unlock(&ep->mu);
				continue;
			}
		}
		pthread_mutex_lock(&ep->mu);
		int stop = ep->stop;
		ep->conns++;
		pthread_mutex_unlock(&ep->mu);
		/* An idle kept connection is closed after a second, as servers do. */
		struct timeval tv = { .tv_sec = 1 };
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		if (stop) {
			close(c);
			break;
		}
		/* Requests on this connection: one, or more with keep-alive. */
		for (int served = 1;; served++) {
			char buf[8192];
			size_t got = 0;
			/* Read the head, then Content-Length bytes of body. */
			for (;;) {
				ssize_t r = ssl ? SSL_read(ssl, buf + got, (int)(sizeof buf - 1 - got))
					    : recv(c, buf + got, sizeof buf - 1 - got, 0);
				if (r <= 0)
					break;
				got += (size_t)r;
				buf[got] = 0;
				char *end = strstr(buf, "\r\n\r\n");
				if (end) {
					const char *cl = strcasestr(buf, "Content-Length:");
					size_t want = cl ? (size_t)atoi(cl + 15) : 0;
					if (got >= (size_t)(end + 4 - buf) + want)
						break;
				}
			}
			if (got == 0)
				break; /* the client closed it */
			pthread_mutex_lock(&ep->mu);
			int status = ep->next < ep->nstatus ? ep->statuses[ep->next++] : 200;
			memcpy(ep->last, buf, got + 1);
			ep->requests++;
			int keep = ep->keepalive && !(ep->close_after && served >= ep->close_after);
			pthread_mutex_unlock(&ep->mu);
			char resp[160];
			int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 2\r\n%s\r\nok",
					 status, keep ? "" : "Connection: close\r\n");
			if (ssl)
				SSL_write(ssl, resp, n);
			else
				send(c, resp, (size_t)n, MSG_NOSIGNAL);
			if (!keep)
				break;
		}
		if (ssl) {
			SSL_shutdown(ssl);
			SSL_free(ssl);
		}
		close(c);
	}
	return NULL;
}

static void endpoint_start(struct endpoint *ep)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;

	memset(ep, 0, sizeof *ep);
	pthread_mutex_init(&ep->mu, NULL);
	ep->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(ep->fd >= 0);
	assert_int_equal(bind(ep->fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(ep->fd, 64), 0);
	getsockname(ep->fd, (struct sockaddr *)&a, &al);
	ep->port = ntohs(a.sin_port);
	pthread_create(&ep->thr, NULL, endpoint_main, ep);
}

static void endpoint_stop(struct endpoint *ep)
{
	pthread_mutex_lock(&ep->mu);
	ep->stop = 1;
	pthread_mutex_unlock(&ep->mu);
	shutdown(ep->fd, SHUT_RDWR);
	close(ep->fd);
	pthread_join(ep->thr, NULL);
}

static int endpoint_requests(struct endpoint *ep)
{
	pthread_mutex_lock(&ep->mu);
	int n = ep->requests;
	pthread_mutex_unlock(&ep->mu);
	return n;
}

/* ------------------------------------------------------------------------
 * Fixture
 * ------------------------------------------------------------------------ */

struct fx {
	char *dir;
	char meta[512];
	struct cfx_broker_opts o;
	struct cfx_broker *br;
	struct cfx_bridge *b;
};

static void bridge_open(struct fx *f)
{
	struct cfx_bridge_opts bo;

	cfx_bridge_opts_default(&bo);
	bo.br = f->br;
	bo.dir = f->meta;
	bo.webhook_timeout_ms = 2000;
	assert_int_equal(cfx_bridge_open(&bo, &f->b), 0);
}

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);

	cfx_log_set_level(getenv("CFX_TEST_LOG") ? CFX_LOG_INFO : CFX_LOG_ERROR - 1);
	f->dir = tu_tmpdir();
	snprintf(f->meta, sizeof f->meta, "%s/meta", f->dir);
	cfx_broker_opts_default(&f->o);
	tu_small_opts(&f->o.store, f->dir);
	f->o.default_queues = 4;
	*state = f;
	if (cfx_broker_open(&f->o, &f->br, NULL))
		return -1;
	bridge_open(f);
	return 0;
}

static void bridge_close(struct fx *f)
{
	cfx_bridge_stop(f->b);
	cfx_bridge_free(f->b);
	f->b = NULL;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->b)
		bridge_close(f);
	if (f->br)
		cfx_broker_close(f->br);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	bridge_close(f);
	assert_int_equal(cfx_broker_close(f->br), 0);
	f->br = NULL;
	assert_int_equal(cfx_broker_open(&f->o, &f->br, NULL), 0);
	bridge_open(f);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad test JSON: %s: %s", e.text, text);
	return j;
}

static int put_json(struct fx *f, int (*fn)(struct cfx_bridge *, json_t *, int, char *, size_t),
		    const char *text)
{
	char err[512];
	json_t *j = J(text);
	int rc = fn(f->b, j, 1, err, sizeof err);
	json_decref(j);
	return rc;
}

static int rule(struct fx *f, const char *bus, const char *text, char *err, size_t len)
{
	json_t *j = J(text);
	int rc = cfx_bridge_rule_put(f->b, bus, j, 1, err, len);
	json_decref(j);
	return rc;
}

struct done {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, err;
	uint64_t events, deliveries;
};

static void on_done(void *arg, int err)
{
	struct done *d = arg;
	pthread_mutex_lock(&d->mu);
	d->done = 1;
	d->err = err;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void on_replay(void *arg, int err, uint64_t events, uint64_t deliveries)
{
	struct done *d = arg;
	d->events = events;
	d->deliveries = deliveries;
	on_done(arg, err);
}

static void wait_done(struct done *d)
{
	pthread_mutex_lock(&d->mu);
	while (!d->done)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
}

/* Puts one structured event to bus and waits until it is stored. */
static void put_event(struct fx *f, const char *bus, const char *json_text)
{
	struct cfx_ce_limits lim;
	struct cfx_ce ce;
	char err[256];
	struct done d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0 };

	cfx_ce_limits_default(&lim);
	if (cfx_ce_parse_structured((const uint8_t *)json_text, strlen(json_text), &lim, &ce, err,
				    sizeof err))
		fail_msg("bad test event: %s", err);
	assert_int_equal(cfx_bridge_put(f->b, bus, &ce, 1, on_done, &d), 0);
	wait_done(&d);
	assert_int_equal(d.err, 0);
	cfx_ce_free(&ce);
}

/* Messages now in queue 0 of a one-queue topic. */
static uint32_t topic_count(struct fx *f, const char *topic)
{
	uint64_t start = 0, end = 0;
	if (cfx_store_queue_bounds(cfx_broker_store(f->br), CFX_VIEW_STR(topic), 0, &start, &end))
		return 0;
	return (uint32_t)(end - start);
}

static bool wait_count(struct fx *f, const char *topic, uint32_t want)
{
	int64_t until = cfx_clock_mono_ms() + WAIT_MS;
	while (cfx_clock_mono_ms() < until) {
		if (topic_count(f, topic) >= want)
			return true;
		usleep(10000);
	}
	return false;
}

/* The property `name` of message `i` of queue 0 of `topic`, into out. */
static bool msg_prop(struct fx *f, const char *topic, uint64_t i, const char *name, char *out,
		     size_t len, char *body, size_t blen)
{
	struct cfx_read_result res;
	size_t cursor = 0;
	struct cfx_prop p;
	bool found = false;

	cfx_read_result_init(&res);
	out[0] = 0;
	if (cfx_store_read(cfx_broker_store(f->br), CFX_VIEW_STR(topic), 0, i, 1, 1, &res) == 0 &&
	    res.count) {
		while (cfx_msg_view_next_prop(&res.msgs[0], &cursor, &p) == 1)
			if (p.name.len == strlen(name) && !memcmp(p.name.p, name, p.name.len)) {
				snprintf(out, len, "%.*s", (int)p.value.len, p.value.p);
				found = true;
			}
		if (body)
			snprintf(body, blen, "%.*s", (int)res.msgs[0].body.len, res.msgs[0].body.p);
	}
	cfx_read_result_free(&res);
	return found;
}

/* ------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------ */

static void definitions_are_validated(void **state)
{
	struct fx *f = *state;
	char err[512];
	json_t *j;

	/* The default bus exists; a bus is a topic. */
	assert_true(cfx_bridge_bus_exists(f->b, "default"));
	assert_int_equal(cfx_bridge_bus_delete(f->b, "default"), CFX_EINVAL);
	j = J("{\"name\": \"orders\", \"description\": \"orders bus\"}");
	assert_int_equal(cfx_bridge_bus_create(f->b, j, err, sizeof err), 0);
	assert_int_equal(cfx_bridge_bus_create(f->b, j, err, sizeof err), CFX_EEXIST);
	json_decref(j);
	j = J("{\"name\": \"bad name\"}");
	assert_int_equal(cfx_bridge_bus_create(f->b, j, err, sizeof err), CFX_EINVAL);
	json_decref(j);
	j = J("{\"name\": \"x\", \"colour\": 1}");
	assert_int_equal(cfx_bridge_bus_create(f->b, j, err, sizeof err), CFX_EINVAL);
	assert_non_null(strstr(err, "colour"));
	json_decref(j);

	/* Targets */
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"t1\", \"type\": \"topic\", \"topic\": \"out1\"}"),
			 0);
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"t2\", \"type\": \"http\", \"url\": \"ftp://x\"}"),
			 CFX_EINVAL);
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"t3\", \"type\": \"http\", \"url\": \"http://h:99999/\"}"),
			 CFX_EINVAL);
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"t4\", \"type\": \"topic\", \"topic\": \"o\", "
				  "\"retry\": {\"max_attempts\": 0}}"),
			 CFX_EINVAL);
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"t5\", \"type\": \"http\", \"url\": \"http://h/\", "
				  "\"headers\": {\"Host\": \"evil\"}}"),
			 CFX_EINVAL);

	/* Rules: the pattern is checked, targets must exist. */
	assert_int_equal(rule(f, "orders",
			      "{\"name\": \"r1\", \"pattern\": {\"type\": [\"order.created\"]}, "
			      "\"targets\": [{\"target\": \"t1\"}]}",
			      err, sizeof err),
			 0);
	assert_int_equal(rule(f, "orders",
			      "{\"name\": \"r2\", \"pattern\": {\"type\": \"not-an-array\"}, "
			      "\"targets\": [{\"target\": \"t1\"}]}",
			      err, sizeof err),
			 CFX_EINVAL);
	assert_non_null(strstr(err, "pattern"));
	assert_int_equal(rule(f, "orders",
			      "{\"name\": \"r3\", \"pattern\": {\"id\": [\"x\"]}, \"targets\": [{\"target\": \"nope\"}]}",
			      err, sizeof err),
			 CFX_EINVAL);
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(rule(f, "nobus", "{\"name\": \"r\", \"pattern\": {}, \"targets\": []}", err,
			      sizeof err),
			 CFX_ENOENT);
	/* A target in use cannot go. */
	assert_int_equal(cfx_bridge_target_delete(f->b, "t1"), CFX_EEXIST);

	/* Everything is there after a reopen. */
	reopen(f);
	assert_true(cfx_bridge_bus_exists(f->b, "orders"));
	j = cfx_bridge_rule_get(f->b, "orders", "r1");
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "r1");
	json_decref(j);
	j = cfx_bridge_target_get(f->b, "t1");
	assert_non_null(j);
	json_decref(j);
	assert_int_equal(cfx_bridge_rule_delete(f->b, "orders", "r1"), 0);
	assert_int_equal(cfx_bridge_target_delete(f->b, "t1"), 0);
	assert_int_equal(cfx_bridge_bus_delete(f->b, "orders"), 0);
}

static void events_are_routed_to_topics(void **state)
{
	struct fx *f = *state;
	char err[512], v[256], body[512];

	/* One queue each, so that the order of arrival can be checked. */
	assert_int_equal(cfx_broker_topic_create(f->br, "big-orders", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "all-orders", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"big\", \"type\": \"topic\", \"topic\": \"big-orders\"}"),
			 0);
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"all\", \"type\": \"topic\", \"topic\": \"all-orders\"}"),
			 0);
	assert_int_equal(rule(f, "default",
			      "{\"name\": \"big\", \"pattern\": {\"type\": [\"order\"], \"data\": "
			      "{\"amount\": [{\"numeric\": [\">\", 100]}]}}, \"targets\": [{\"target\": "
			      "\"big\", \"transform\": {\"type\": \"template\", \"variables\": {\"id\": "
			      "\"$.id\", \"amt\": \"$.data.amount\"}, \"template\": \"order ${id}: "
			      "${amt}\"}}]}",
			      err, sizeof err),
			 0);
	assert_int_equal(rule(f, "default",
			      "{\"name\": \"all\", \"pattern\": {\"source\": [{\"prefix\": \"/shop\"}]}, "
			      "\"targets\": [{\"target\": \"all\"}]}",
			      err, sizeof err),
			 0);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/shop/eu\",\"type\":\"order\","
		  "\"data\":{\"amount\":250}}");
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"e2\",\"source\":\"/shop/us\",\"type\":\"order\","
		  "\"data\":{\"amount\":50}}");
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"e3\",\"source\":\"/other\",\"type\":\"order\","
		  "\"data\":{\"amount\":500}}");
	assert_true(wait_count(f, "all-orders", 2));
	assert_true(wait_count(f, "big-orders", 2));
	usleep(200000);
	assert_int_equal(topic_count(f, "all-orders"), 2);
	assert_int_equal(topic_count(f, "big-orders"), 2);
	/* The original event, in the Kafka binding (the bus has 8 queues: the
	 * order of events across them is not kept). */
	for (uint64_t i = 0; i < 2; i++) {
		assert_true(msg_prop(f, "all-orders", i, "ce_id", v, sizeof v, body, sizeof body));
		if (!strcmp(v, "e1"))
			assert_string_equal(body, "{\"amount\":250}");
		else
			assert_string_equal(v, "e2");
		assert_true(msg_prop(f, "all-orders", i, "content-type", v, sizeof v, NULL, 0));
		assert_string_equal(v, "application/json");
		/* The bridge's own bookkeeping stays behind. */
		assert_false(msg_prop(f, "all-orders", i, "eb_rule", v, sizeof v, NULL, 0));
	}
	/* The transformed ones: the event with the template's output as data. */
	for (uint64_t i = 0; i < 2; i++) {
		assert_true(msg_prop(f, "big-orders", i, "ce_id", v, sizeof v, body, sizeof body));
		if (!strcmp(v, "e1"))
			assert_string_equal(body, "order e1: 250");
		else if (!strcmp(v, "e3"))
			assert_string_equal(body, "order e3: 500");
		else
			fail_msg("unexpected event %s in big-orders", v);
		assert_true(msg_prop(f, "big-orders", i, "content-type", v, sizeof v, NULL, 0));
		assert_string_equal(v, "text/plain; charset=utf-8");
	}

	/* Replay: the three events again, through rule "all" only. */
	struct done d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0 };
	assert_int_equal(cfx_bridge_replay(f->b, "default", 0, cfx_clock_wall_ms() + 1000, "all",
					   on_replay, &d),
			 0);
	wait_done(&d);
	assert_int_equal(d.err, 0);
	assert_int_equal(d.events, 3);
	assert_int_equal(d.deliveries, 2);
	assert_true(wait_count(f, "all-orders", 4));
	assert_int_equal(cfx_bridge_replay(f->b, "default", 0, 1, "nope", on_replay, &d),
			 CFX_ENOENT);

	/* A disabled rule matches nothing. */
	json_t *dis = J("{\"name\": \"all\", \"enabled\": false, \"pattern\": "
			"{\"type\": [\"x\"]}, \"targets\": [{\"target\": \"all\"}]}");
	assert_int_equal(cfx_bridge_rule_put(f->b, "default", dis, 0, err, sizeof err), 0);
	json_decref(dis);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"e4\",\"source\":\"/shop/eu\",\"type\":\"x\"}");
	usleep(500000);
	assert_int_equal(topic_count(f, "all-orders"), 4);
}

static void http_targets_retry_and_dead_letter(void **state)
{
	struct fx *f = *state;
	struct endpoint ep;
	char err[512], def[1024], v[256];

	endpoint_start(&ep);
	/* 500, timeout-free failure, then success: the third attempt succeeds. */
	ep.statuses[0] = 500;
	ep.statuses[1] = 503;
	ep.nstatus = 2;
	snprintf(def, sizeof def,
		 "{\"name\": \"hook\", \"type\": \"http\", \"url\": \"http://127.0.0.1:%d/in\", "
		 "\"headers\": {\"X-Team\": \"blue\"}, \"auth\": {\"type\": \"api_key\", "
		 "\"header\": \"X-Key\", \"value\": \"k1\"}, \"retry\": {\"strategy\": "
		 "\"backoff\", \"interval_ms\": 100, \"max_attempts\": 3}}",
		 ep.port);
	assert_int_equal(put_json(f, cfx_bridge_target_put, def), 0);
	assert_int_equal(rule(f, "default",
			      "{\"name\": \"hook\", \"pattern\": {\"type\": [\"ping\"]}, \"targets\": "
			      "[{\"target\": \"hook\"}]}",
			      err, sizeof err),
			 0);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"p1\",\"source\":\"/s\",\"type\":\"ping\","
		  "\"subject\":\"caf\\u00e9 50%\",\"data\":{\"n\":1}}");
	int64_t until = cfx_clock_mono_ms() + WAIT_MS;
	while (endpoint_requests(&ep) < 3 && cfx_clock_mono_ms() < until)
		usleep(10000);
	usleep(300000);
	assert_int_equal(endpoint_requests(&ep), 3);
	/* Binary mode: ce- headers (percent-encoded), the content type, the data. */
	assert_non_null(strstr(ep.last, "POST /in HTTP/1.1"));
	assert_non_null(strstr(ep.last, "ce-id: p1"));
	assert_non_null(strstr(ep.last, "ce-type: ping"));
	assert_non_null(strstr(ep.last, "ce-subject: caf%C3%A9%2050%25"));
	assert_non_null(strstr(ep.last, "Content-Type: application/json"));
	assert_non_null(strstr(ep.last, "X-Team: blue"));
	assert_non_null(strstr(ep.last, "X-Key: k1"));
	assert_non_null(strstr(ep.last, "\r\n\r\n{\"n\":1}"));
	assert_int_equal(topic_count(f, "%EB%DLQ%hook"), 0);

	/* Always failing: three attempts, then the dead letters with the reason. */
	pthread_mutex_lock(&ep.mu);
	for (int i = 0; i < 3; i++)
		ep.statuses[i] = 500;
	ep.nstatus = 3;
	ep.next = 0;
	ep.requests = 0;
	pthread_mutex_unlock(&ep.mu);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"p2\",\"source\":\"/s\",\"type\":\"ping\"}");
	assert_true(wait_count(f, "%EB%DLQ%hook", 1));
	assert_int_equal(endpoint_requests(&ep), 3);
	assert_true(msg_prop(f, "%EB%DLQ%hook", 0, "eb_error", v, sizeof v, NULL, 0));
	assert_non_null(strstr(v, "answered 500"));
	assert_true(msg_prop(f, "%EB%DLQ%hook", 0, "eb_attempts", v, sizeof v, NULL, 0));
	assert_string_equal(v, "3");

	/* A 400 cannot succeed later: dead at once. */
	pthread_mutex_lock(&ep.mu);
	ep.statuses[0] = 400;
	ep.nstatus = 1;
	ep.next = 0;
	ep.requests = 0;
	pthread_mutex_unlock(&ep.mu);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"p3\",\"source\":\"/s\",\"type\":\"ping\"}");
	assert_true(wait_count(f, "%EB%DLQ%hook", 2));
	assert_int_equal(endpoint_requests(&ep), 1);

	json_t *t = cfx_bridge_target_get(f->b, "hook");
	json_t *st = json_object_get(t, "stats");
	assert_int_equal(json_integer_value(json_object_get(st, "delivered")), 1);
	assert_int_equal(json_integer_value(json_object_get(st, "dead_lettered")), 2);
	assert_string_equal(json_string_value(json_object_get(json_object_get(t, "auth"), "value")),
			    "***");
	json_decref(t);

	/* Structured mode. */
	snprintf(def, sizeof def,
		 "{\"name\": \"hook\", \"type\": \"http\", \"url\": \"http://127.0.0.1:%d/s\", "
		 "\"mode\": \"structured\"}",
		 ep.port);
	json_t *jd = J(def);
	assert_int_equal(cfx_bridge_target_put(f->b, jd, 0, err, sizeof err), 0);
	json_decref(jd);
	pthread_mutex_lock(&ep.mu);
	ep.requests = 0;
	pthread_mutex_unlock(&ep.mu);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"p4\",\"source\":\"/s\",\"type\":\"ping\","
		  "\"data\":{\"n\":4}}");
	until = cfx_clock_mono_ms() + WAIT_MS;
	while (endpoint_requests(&ep) < 1 && cfx_clock_mono_ms() < until)
		usleep(10000);
	assert_non_null(strstr(ep.last, "Content-Type: application/cloudevents+json"));
	assert_non_null(strstr(ep.last, "\"id\":\"p4\""));
	assert_non_null(strstr(ep.last, "\"data\":{\"n\":4}"));
	endpoint_stop(&ep);
}

static void https_targets(void **state)
{
	struct fx *f = *state;
	struct endpoint ep;
	char err[512], def[2048], cmd[2048], cert[600], key[600];

	/* A self-signed certificate for 127.0.0.1, made by the openssl tool. */
	snprintf(cert, sizeof cert, "%s/ep.pem", f->dir);
	snprintf(key, sizeof key, "%s/ep.key", f->dir);
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
		 "-subj /CN=endpoint -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
		 key, cert);
	if (system(cmd) != 0)
		skip();
	endpoint_start(&ep);
	ep.tls = SSL_CTX_new(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate_file(ep.tls, cert, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ep.tls, key, SSL_FILETYPE_PEM), 1);

	/* Trusted through ca_file: delivered. */
	snprintf(def, sizeof def,
		 "{\"name\": \"tls\", \"type\": \"http\", \"url\": \"https://127.0.0.1:%d/in\", "
		 "\"ca_file\": \"%s\"}",
		 ep.port, cert);
	assert_int_equal(put_json(f, cfx_bridge_target_put, def), 0);
	/* Not trusted (the system's CAs only): dead at once, as retrying will not help. */
	snprintf(def, sizeof def,
		 "{\"name\": \"untrusted\", \"type\": \"http\", \"url\": "
		 "\"https://127.0.0.1:%d/in\"}",
		 ep.port);
	assert_int_equal(put_json(f, cfx_bridge_target_put, def), 0);
	assert_int_equal(rule(f, "default",
			      "{\"name\": \"tls\", \"pattern\": {\"type\": [\"secure\"]}, "
			      "\"targets\": [{\"target\": \"tls\"}, {\"target\": \"untrusted\"}]}",
			      err, sizeof err),
			 0);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"s1\",\"source\":\"/s\",\"type\":\"secure\","
		  "\"data\":{\"x\":1}}");
	assert_true(wait_count(f, "%EB%DLQ%untrusted", 1));
	char v[256];
	assert_true(msg_prop(f, "%EB%DLQ%untrusted", 0, "eb_error", v, sizeof v, NULL, 0));
	assert_non_null(strstr(v, "not trusted"));
	int64_t until = cfx_clock_mono_ms() + WAIT_MS;
	json_t *t = NULL;
	while (cfx_clock_mono_ms() < until) {
		json_decref(t);
		t = cfx_bridge_target_get(f->b, "tls");
		if (json_integer_value(json_object_get(json_object_get(t, "stats"), "delivered")) >= 1)
			break;
		usleep(20000);
	}
	assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "stats"), "delivered")),
			 1);
	json_decref(t);
	assert_non_null(strstr(ep.last, "ce-id: s1"));
	assert_non_null(strstr(ep.last, "{\"x\":1}"));
	/* A ca_file that is not there is refused when the target is made. */
	assert_int_equal(put_json(f, cfx_bridge_target_put,
				  "{\"name\": \"nofile\", \"type\": \"http\", \"url\": "
				  "\"https://h/\", \"ca_file\": \"/nonexistent.pem\"}"),
			 CFX_EINVAL);
	endpoint_stop(&ep);
	SSL_CTX_free(ep.tls);
}

static void http_keep_alive(void **state)
{
	struct fx *f = *state;
	struct endpoint ep;
	char err[512], def[1024];

	endpoint_start(&ep);
	ep.keepalive = 1;
	ep.close_after = 3; /* the endpoint ends the connection now and then */
	/* One worker: the endpoint serves one connection at a time. */
	snprintf(def, sizeof def,
		 "{\"name\": \"ka\", \"type\": \"http\", \"url\": \"http://127.0.0.1:%d/ka\", "
		 "\"concurrency\": 1}",
		 ep.port);
	assert_int_equal(put_json(f, cfx_bridge_target_put, def), 0);
	assert_int_equal(rule(f, "default",
			      "{\"name\": \"ka\", \"pattern\": {\"type\": [\"ka\"]}, "
			      "\"targets\": [{\"target\": \"ka\"}]}",
			      err, sizeof err),
			 0);
	for (int i = 0; i < 7; i++) {
		char ev[256];
		snprintf(ev, sizeof ev,
			 "{\"specversion\":\"1.0\",\"id\":\"k%d\",\"source\":\"/s\",\"type\":\"ka\"}",
			 i);
		put_event(f, "default", ev);
	}
	int64_t until = cfx_clock_mono_ms() + WAIT_MS;
	while (endpoint_requests(&ep) < 7 && cfx_clock_mono_ms() < until)
		usleep(10000);
	usleep(200000);
	assert_int_equal(endpoint_requests(&ep), 7);
	/* Several deliveries per connection; the closes cost no attempt. */
	pthread_mutex_lock(&ep.mu);
	int conns = ep.conns;
	pthread_mutex_unlock(&ep.mu);
	assert_true(conns >= 3 && conns < 7);
	json_t *t = cfx_bridge_target_get(f->b, "ka");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "stats"), "delivered")),
			 7);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "stats"), "retried")),
			 0);
	json_decref(t);
	endpoint_stop(&ep);
}

static void pending_deliveries_survive_a_reopen(void **state)
{
	struct fx *f = *state;
	struct endpoint ep;
	char err[512], def[1024];

	endpoint_start(&ep);
	/* The endpoint refuses for a while; the bridge is closed in between. */
	for (int i = 0; i < 8; i++)
		ep.statuses[i] = 503;
	ep.nstatus = 8;
	snprintf(def, sizeof def,
		 "{\"name\": \"slow\", \"type\": \"http\", \"url\": \"http://127.0.0.1:%d/\", "
		 "\"retry\": {\"strategy\": \"backoff\", \"interval_ms\": 200, \"max_attempts\": 100}}",
		 ep.port);
	assert_int_equal(put_json(f, cfx_bridge_target_put, def), 0);
	assert_int_equal(rule(f, "default",
			      "{\"name\": \"slow\", \"pattern\": {\"source\": [{\"exists\": true}]}, "
			      "\"targets\": [{\"target\": \"slow\"}]}",
			      err, sizeof err),
			 0);
	for (int i = 0; i < 5; i++) {
		char ev[256];
		snprintf(ev, sizeof ev,
			 "{\"specversion\":\"1.0\",\"id\":\"s%d\",\"source\":\"/s\",\"type\":\"t\"}", i);
		put_event(f, "default", ev);
	}
	assert_true(wait_count(f, "%SYS%EB%T%slow", 5));
	reopen(f);
	/* Every event gets through, at least once. */
	int64_t until = cfx_clock_mono_ms() + WAIT_MS;
	json_t *t = NULL;
	while (cfx_clock_mono_ms() < until) {
		json_decref(t);
		t = cfx_bridge_target_get(f->b, "slow");
		if (json_integer_value(json_object_get(json_object_get(t, "stats"), "delivered")) >= 5)
			break;
		usleep(20000);
	}
	assert_true(json_integer_value(json_object_get(json_object_get(t, "stats"), "delivered")) >=
		    5);
	json_decref(t);
	endpoint_stop(&ep);
}

static void pull_and_test(void **state)
{
	struct fx *f = *state;
	struct cfx_ce *ces;
	size_t n;
	bool match;
	char why[256];

	/* A new group starts at the end. */
	assert_int_equal(cfx_bridge_pull(f->b, "default", "g1", 10, &ces, &n), 0);
	assert_int_equal(n, 0);
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"q1\",\"source\":\"/s\",\"type\":\"t\","
		  "\"myext\":\"v\",\"data\":\"hello\",\"datacontenttype\":\"text/plain\"}");
	put_event(f, "default",
		  "{\"specversion\":\"1.0\",\"id\":\"q2\",\"source\":\"/s\",\"type\":\"t\"}");
	size_t total = 0;
	int64_t until = cfx_clock_mono_ms() + WAIT_MS;
	while (total < 2 && cfx_clock_mono_ms() < until) {
		assert_int_equal(cfx_bridge_pull(f->b, "default", "g1", 10, &ces, &n), 0);
		for (size_t i = 0; i < n; i++) {
			const struct cfx_ce_attr *id = cfx_ce_get(&ces[i], "id");
			assert_non_null(id);
			if (!strcmp(id->value, "q1")) {
				assert_non_null(cfx_ce_get(&ces[i], "myext"));
				assert_memory_equal(ces[i].data, "hello", 5);
			}
		}
		total += n;
		if (n)
			cfx_ce_batch_free(ces, n);
		else
			usleep(10000);
	}
	assert_int_equal(total, 2);
	/* Each event goes to one pull of the group. */
	assert_int_equal(cfx_bridge_pull(f->b, "default", "g1", 10, &ces, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cfx_bridge_pull(f->b, "nobus", "g1", 10, &ces, &n), CFX_ENOENT);

	const char *pat = "{\"data\": {\"amount\": [{\"numeric\": [\">\", 100]}]}}";
	const char *ev = "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\","
			 "\"data\":{\"amount\":50}}";
	assert_int_equal(cfx_bridge_rule_test(pat, strlen(pat), ev, strlen(ev), &match, why,
					      sizeof why),
			 0);
	assert_false(match);
	assert_non_null(strstr(why, "amount"));
	const char *ev2 = "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\","
			  "\"data\":{\"amount\":150}}";
	assert_int_equal(cfx_bridge_rule_test(pat, strlen(pat), ev2, strlen(ev2), &match, why,
					      sizeof why),
			 0);
	assert_true(match);
	assert_int_equal(cfx_bridge_rule_test("{", 1, ev2, strlen(ev2), &match, why, sizeof why),
			 CFX_EINVAL);
	assert_int_equal(cfx_bridge_rule_test(pat, strlen(pat), "{}", 2, &match, why, sizeof why),
			 CFX_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(definitions_are_validated, setup, teardown),
		cmocka_unit_test_setup_teardown(events_are_routed_to_topics, setup, teardown),
		cmocka_unit_test_setup_teardown(http_targets_retry_and_dead_letter, setup, teardown),
		cmocka_unit_test_setup_teardown(https_targets, setup, teardown),
		cmocka_unit_test_setup_teardown(http_keep_alive, setup, teardown),
		cmocka_unit_test_setup_teardown(pending_deliveries_survive_a_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(pull_and_test, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
