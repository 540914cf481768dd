/*
 * bench_rmq.c - `conflux bench produce|consume|e2e`: a running confluxd
 * measured over the RocketMQ gRPC API.
 *
 * Each connection is one thread with one gRPC client keeping --inflight
 * calls in flight (pipelined on the HTTP/2 connection):
 *
 *   produce  SendMessage calls of --batch messages of --size bytes, as fast
 *            as the server answers, for --duration or --count messages;
 *            msgs/s, MB/s (10^6 body bytes) and the latency of the calls.
 *   consume  a backlog is made first (a fresh topic is filled with --count
 *            messages; with --topic the group is reset to the earliest
 *            offset), then consumers drain it with ReceiveMessage and
 *            AckMessage: receive msgs/s and MB/s.
 *   e2e      producers send at a fixed total --rate, each message carrying
 *            its send time (property bench_sent_ns, wall clock); consumers
 *            receive concurrently; percentiles of the produce-to-receive
 *            latency, after a --warmup whose messages are not measured.
 *
 * Latencies go into a log-bucketed histogram in the manner of HDR
 * histograms: exact below 128 us, then 64 buckets per power of two (at
 * most 1.6 % relative error), so any run length costs the same memory.
 *
 * Threads share only the atomic counters of struct bench; the main thread
 * sets the stop flags, prints progress, joins, and reports.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"
#include "cmd/conflux/rmq_client.h"

#define SENT_PROP	"bench_sent_ns"
#define CONNS_MAX	256
#define INFLIGHT_MAX	256
#define BATCH_MAX	1024
#define RECEIVE_WAIT_MS 1000 /* long poll of the bench consumers */
#define INVISIBLE_MS	60000
#define DRAIN_IDLE_MS	3000  /* consume: the backlog is drained after this long without news */
#define E2E_DRAIN_MS	10000 /* e2e: wait at most this long for the last messages */

static const char usage_bench[] =
	"usage: conflux bench produce|consume|e2e [options]\n"
	"       conflux bench store [options]    (the storage engine in-process)\n"
	"\n"
	"Benchmarks a running confluxd over the RocketMQ gRPC API.\n"
	"  produce   send as fast as the server acknowledges: msgs/s, MB/s, call latency\n"
	"  consume   drain a backlog with receive + ack: msgs/s, MB/s\n"
	"  e2e       send at a fixed --rate while consuming: produce-to-receive latency\n"
	"\n"
	"  --topic T          topic (default: a fresh bench-XXXXXXXX topic, NORMAL)\n"
	"  --queues N         queues of the fresh topic (default 8)\n"
	"  --group G          consumer group (consume, e2e; default: a fresh one)\n"
	"  --size SIZE        message body size (default 1KiB)\n"
	"  --batch N          messages per SendMessage call (default 32)\n"
	"  --connections N    connections, one thread each (default 4; consume and e2e\n"
	"                     use N producer and N consumer connections)\n"
	"  --inflight N       calls in flight per connection (default 8)\n"
	"  --duration DUR     how long to run (default 10s)\n"
	"  --count N          stop after N messages instead (consume: the backlog made\n"
	"                     in a fresh topic, default 100000)\n"
	"  --rate N           e2e: messages per second, in total (default 10000)\n"
	"  --warmup DUR       e2e: send this long first without keeping latencies (default\n"
	"                     1s: the first messages of fresh queues wait for their files)\n"
	"  --server, --grpc, --timeout as for every command; --json for a JSON report\n"
	"\n"
	"MB/s counts message bodies in 10^6 bytes. A progress line is printed on stderr\n"
	"every second when stderr is a terminal. Exit status 1 if any call failed.\n";

/* ------------------------------------------------------------------------
 * Histogram
 * ------------------------------------------------------------------------ */

#define HIST_SUB     64 /* buckets per power of two */
#define HIST_BUCKETS (58 * HIST_SUB + 2 * HIST_SUB)

struct hist {
	uint64_t n, sum, min, max;
	uint64_t b[HIST_BUCKETS];
};

static size_t hist_index(uint64_t v)
{
	int msb = 63 - __builtin_clzll(v | 1);
	int shift = msb > 6 ? msb - 6 : 0;

	return (size_t)shift * HIST_SUB + (size_t)(v >> shift);
}

/* The middle of bucket `i`. */
static uint64_t hist_value(size_t i)
{
	if (i < 2 * HIST_SUB)
		return i;
	unsigned shift = (unsigned)(i / HIST_SUB - 1);
	uint64_t mant = i - (uint64_t)shift * HIST_SUB;
	return (mant << shift) + ((1ull << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	if (!h->n || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->n++;
	h->sum += v;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
	if (!h->n)
		return;
	for (size_t i = 0; i < HIST_BUCKETS; i++)
		into->b[i] += h->b[i];
	if (!into->n || h->min < into->min)
		into->min = h->min;
	into->max = CFX_MAX(into->max, h->max);
	into->n += h->n;
	into->sum += h->sum;
}

/* The value at quantile q (0..1), clamped to the observed range. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;

	if (!h->n)
		return 0;
	rank = CFX_MAX(rank, 1);
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			return CFX_MAX(h->min, CFX_MIN(h->max, hist_value(i)));
	}
	return h->max;
}

/* {"p50","p99","p999","max","min","mean"} in ms from a histogram in us. */
static json_t *hist_json(const struct hist *h)
{
	return json_pack(
		"{s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "p50", (double)hist_quantile(h, 0.50) / 1000,
		"p99", (double)hist_quantile(h, 0.99) / 1000, "p999",
		(double)hist_quantile(h, 0.999) / 1000, "max", (double)h->max / 1000, "min",
		(double)h->min / 1000, "mean", h->n ? (double)h->sum / (double)h->n / 1000 : 0.0,
		"samples", (json_int_t)h->n);
}

static void hist_print(const char *what, const struct hist *h)
{
	printf("%-22s p50 %.3f ms   p99 %.3f ms   p99.9 %.3f ms   max %.3f ms   (%" PRIu64
	       " samples)\n",
	       what, (double)hist_quantile(h, 0.50) / 1000, (double)hist_quantile(h, 0.99) / 1000,
	       (double)hist_quantile(h, 0.999) / 1000, (double)h->max / 1000, h->n);
}

/* ------------------------------------------------------------------------
 * Shared state
 * ------------------------------------------------------------------------ */

enum mode { MODE_PRODUCE, MODE_CONSUME, MODE_E2E };

struct bench {
	struct cli c;
	enum mode mode;
	char topic[128], group[128];
	int64_t size, batch, conns, inflight, duration_ms, count, rate, queues, warmup_ms;
	char *body;
	int64_t measure_from_ns; /* e2e: latencies of messages sent before (wall) are not kept */
	/* shared between threads (__atomic) */
	int stop_produce, stop_consume;
	uint64_t claimed; /* messages handed to calls, against `target` */
	uint64_t target;  /* messages to send in all (0 = until stopped) */
	uint64_t sent, sent_bytes, recv, recv_bytes, errors;
	int64_t last_recv_ns; /* monotonic time of the latest message received */
	pthread_mutex_t mu;
	char first_error[600];
};

struct worker {
	struct bench *b;
	struct rmq_cl *rc;
	pthread_t th;
	int64_t rate;  /* producer: messages per second, 0 = unpaced */
	int e2e;       /* producer: stamp send times; consumer: measure latency */
	struct hist h; /* produce: call latency; e2e consumer: delivery latency (us) */
	int done;
};

static uint64_t load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static int flag(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void set_flag(int *p)
{
	__atomic_store_n(p, 1, __ATOMIC_RELEASE);
}

/* Records a failure (the first one is reported) and stops the run. */
static void fail(struct bench *b, const char *fmt, ...) CFX_PRINTF(2, 3);
static void fail(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	add(&b->errors, 1);
	pthread_mutex_lock(&b->mu);
	if (!b->first_error[0]) {
		va_start(ap, fmt);
		vsnprintf(b->first_error, sizeof b->first_error, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&b->mu);
	set_flag(&b->stop_produce);
	set_flag(&b->stop_consume);
}

static void fail_rmq(struct bench *b, const char *what, const struct rmq_err *e)
{
	char why[700];

	rmq_err_format(e, why, sizeof why);
	fail(b, "%s: %s", what, why);
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * Producers
 * ------------------------------------------------------------------------ */

struct pcall {
	int32_t id;
	uint32_t n;
	int64_t t0_ns;
	uint8_t *resp;
	size_t len;
};

/* Handles the end of a SendMessage call. */
static void send_ended(struct worker *w, struct pcall *pc, const struct grpc_client_event *ev,
		       struct rmq_send_entry *ent)
{
	struct bench *b = w->b;
	struct rmq_err e;
	int got;

	if (ev->status != 0) {
		rmq_err_grpc(ev->status, ev->message, &e);
		fail_rmq(b, "SendMessage", &e);
		return;
	}
	got = pc->resp ? rmq_parse_send(pc->resp, pc->len, ent, pc->n, &e) : -1;
	if (got < 0) {
		if (!pc->resp)
			snprintf(e.msg, sizeof e.msg, "no answer"), e.code = 0, e.grpc_status = 0;
		fail_rmq(b, "SendMessage", &e);
		return;
	}
	for (int i = 0; i < got; i++)
		if (ent[i].code != RCODE(OK)) {
			fail(b, "SendMessage: %s (%d): %s", rmq_code_name(ent[i].code), ent[i].code,
			     ent[i].why);
			return;
		}
	add(&b->sent, (uint64_t)got);
	add(&b->sent_bytes, (uint64_t)got * (uint64_t)b->size);
	hist_add(&w->h, (uint64_t)(cfx_clock_mono_ns() - pc->t0_ns) / 1000);
}

static void *producer_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	size_t batch = (size_t)b->batch;
	struct pcall *calls = cfx_calloc((size_t)b->inflight, sizeof *calls);
	struct rmq_msg_out *m = cfx_calloc(batch, sizeof *m);
	struct rmq_prop *props = cfx_calloc(batch, sizeof *props);
	struct rmq_send_entry *ent = cfx_calloc(batch, sizeof *ent);
	char(*stamps)[24] = cfx_calloc(batch, sizeof *stamps);
	int64_t start = cfx_clock_mono_ns();
	uint64_t started = 0; /* messages this thread put in calls */
	uint32_t ncalls = 0;
	int more = 1;

	for (;;) {
		int stopping = flag(&b->stop_produce);

		while (more && !stopping && ncalls < (uint32_t)b->inflight) {
			uint64_t n = batch;
			if (w->rate) {
				double due = (double)(cfx_clock_mono_ns() - start) / 1e9 *
					     (double)w->rate;
				if ((double)started + 1 > due)
					break;
				n = CFX_MIN(n, (uint64_t)(due - (double)started));
			}
			if (b->target) {
				uint64_t at = __atomic_fetch_add(&b->claimed, n, __ATOMIC_RELAXED);
				if (at >= b->target) {
					more = 0;
					break;
				}
				n = CFX_MIN(n, b->target - at);
			}
			for (size_t i = 0; i < n; i++) {
				m[i] = (struct rmq_msg_out){.body = b->body,
							    .len = (size_t)b->size};
				if (w->e2e) {
					snprintf(stamps[i], sizeof stamps[i], "%lld",
						 (long long)wall_ns());
					props[i] = (struct rmq_prop){SENT_PROP, stamps[i]};
					m[i].props = &props[i];
					m[i].nprops = 1;
				}
			}
			size_t len;
			uint8_t *req = rmq_pack_send(b->topic, m, n, &len);
			rmq_sign(w->rc);
			int64_t t0 = cfx_clock_mono_ns();
			int32_t id = grpc_client_start(w->rc->gc, RMQ_PATH("SendMessage"), req, len,
						       1, w->rc->timeout_ms);
			cfx_free(req);
			if (id < 0) {
				struct rmq_err e;
				rmq_err_transport(w->rc, id, &e);
				fail_rmq(b, "SendMessage", &e);
				more = 0;
				break;
			}
			calls[ncalls++] = (struct pcall){.id = id, .n = (uint32_t)n, .t0_ns = t0};
			started += n;
		}
		if (ncalls == 0 && (stopping || !more))
			break;

		/*
		 * Wait for answers; a paced producer wakes up when its next message
		 * is due, but sleeps at least a millisecond: spinning would take a
		 * core from the server it measures. Messages due meanwhile go out
		 * together, each stamped when it is sent.
		 */
		int64_t wait_ms = 100;
		if (w->rate && more && !stopping && ncalls < (uint32_t)b->inflight) {
			double next_s = (double)(started + 1) / (double)w->rate;
			int64_t due_ns = start + (int64_t)(next_s * 1e9);
			wait_ms = CFX_MAX(1, CFX_MIN(100, (due_ns - cfx_clock_mono_ns() + 999999) /
								  1000000));
		}
		struct grpc_client_event ev;
		int r = grpc_client_poll(w->rc->gc, wait_ms, &ev);
		if (r < 0) {
			struct rmq_err e;
			rmq_err_transport(w->rc, r, &e);
			fail_rmq(b, "SendMessage", &e);
			break;
		}
		if (r == 0)
			continue;
		uint32_t k = 0;
		while (k < ncalls && calls[k].id != ev.stream_id)
			k++;
		if (k == ncalls) {
			cfx_free(ev.data); /* the Telemetry stream's */
			cfx_free(ev.message);
			continue;
		}
		if (ev.type == GRPC_EV_MESSAGE) {
			cfx_free(calls[k].resp);
			calls[k].resp = ev.data;
			calls[k].len = ev.len;
			continue;
		}
		send_ended(w, &calls[k], &ev, ent);
		cfx_free(ev.message);
		cfx_free(calls[k].resp);
		calls[k] = calls[--ncalls];
	}
	for (uint32_t k = 0; k < ncalls; k++)
		cfx_free(calls[k].resp);
	cfx_free(calls);
	cfx_free(m);
	cfx_free(props);
	cfx_free(ent);
	cfx_free(stamps);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Consumers
 * ------------------------------------------------------------------------ */

struct ccall {
	int32_t id;
	int is_ack;
	struct rmq_ack_item *items; /* receive: handles to acknowledge (strings owned) */
	size_t n, cap;
	int code; /* receive: RocketMQ status */
	char why[160];
	uint8_t *resp; /* ack: the answer */
	size_t len;
};

static void ccall_free(struct ccall *cc)
{
	for (size_t i = 0; i < cc->n; i++) {
		cfx_free((char *)cc->items[i].msg_id);
		cfx_free((char *)cc->items[i].handle);
	}
	cfx_free(cc->items);
	cfx_free(cc->resp);
	memset(cc, 0, sizeof *cc);
}

/* One message of a receive: count it, time it, keep its handle. */
static void received(struct worker *w, struct ccall *cc, const RPB(Message) * m)
{
	struct bench *b = w->b;
	const RPB(SystemProperties) *sp = m->system_properties;

	if (!sp)
		return;
	add(&b->recv, 1);
	add(&b->recv_bytes, m->body.len);
	__atomic_store_n(&b->last_recv_ns, cfx_clock_mono_ns(), __ATOMIC_RELAXED);
	if (w->e2e)
		for (size_t i = 0; i < m->n_user_properties; i++)
			if (!strcmp(m->user_properties[i]->key, SENT_PROP)) {
				int64_t sent = strtoll(m->user_properties[i]->value, NULL, 10);
				int64_t lat = wall_ns() - sent;
				if (sent >= b->measure_from_ns)
					hist_add(&w->h, (uint64_t)CFX_MAX(lat, 0) / 1000);
				break;
			}
	if (cc->n == cc->cap) {
		cc->cap = cc->cap ? cc->cap * 2 : 32;
		cc->items = cfx_realloc(cc->items, cc->cap * sizeof *cc->items);
	}
	cc->items[cc->n].msg_id = cfx_strdup(sp->message_id ? sp->message_id : "");
	cc->items[cc->n].handle = cfx_strdup(sp->_receipt_handle_case ? sp->receipt_handle : "");
	cc->n++;
}

static void *consumer_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	size_t cap = (size_t)b->inflight * 2;
	struct ccall *calls = cfx_calloc(cap, sizeof *calls);
	size_t ncalls = 0, nrecv = 0, nacks = 0;
	struct rmq_recv_opts o = {.group = b->group,
				  .topic = b->topic,
				  .batch = 32,
				  .invisible_ms = INVISIBLE_MS,
				  .wait_ms = RECEIVE_WAIT_MS};
	struct rmq_err e;

	for (;;) {
		int stopping = flag(&b->stop_consume);

		while (!stopping && nrecv < (size_t)b->inflight && ncalls < cap) {
			int32_t id = rmq_receive_start(w->rc, &o);
			if (id < 0) {
				rmq_err_transport(w->rc, id, &e);
				fail_rmq(b, "ReceiveMessage", &e);
				stopping = 1;
				break;
			}
			calls[ncalls++] = (struct ccall){.id = id};
			nrecv++;
		}
		/* Stopping abandons the receives; acknowledgements in flight are awaited. */
		if (stopping && nacks == 0)
			break;
		struct grpc_client_event ev;
		int r = grpc_client_poll(w->rc->gc, 100, &ev);
		if (r < 0) {
			rmq_err_transport(w->rc, r, &e);
			fail_rmq(b, "ReceiveMessage", &e);
			break;
		}
		if (r == 0)
			continue;
		size_t k = 0;
		while (k < ncalls && calls[k].id != ev.stream_id)
			k++;
		if (k == ncalls) {
			cfx_free(ev.data);
			cfx_free(ev.message);
			continue;
		}
		struct ccall *cc = &calls[k];
		if (ev.type == GRPC_EV_MESSAGE && cc->is_ack) {
			cfx_free(cc->resp);
			cc->resp = ev.data;
			cc->len = ev.len;
			continue;
		}
		if (ev.type == GRPC_EV_MESSAGE) {
			RPB(ReceiveMessageResponse) *resp = rmq_parse_receive(ev.data, ev.len);
			cfx_free(ev.data);
			if (!resp) {
				fail(b, "ReceiveMessage: malformed response");
				continue;
			}
			if (resp->content_case == RCONTENT(STATUS) && resp->status) {
				cc->code = (int)resp->status->code;
				snprintf(cc->why, sizeof cc->why, "%s",
					 resp->status->message ? resp->status->message : "");
			} else if (resp->content_case == RCONTENT(MESSAGE) && resp->message) {
				received(w, cc, resp->message);
			}
			RPBF(receive_message_response, free_unpacked)(resp, NULL);
			continue;
		}
		/* The call ended. */
		if (ev.status != 0) {
			rmq_err_grpc(ev.status, ev.message, &e);
			fail_rmq(b, cc->is_ack ? "AckMessage" : "ReceiveMessage", &e);
		} else if (cc->is_ack) {
			if (!cc->resp || rmq_parse_ack(cc->resp, cc->len, &e))
				fail_rmq(b, "AckMessage", &e);
		} else if (cc->code && cc->code != RCODE(OK) &&
			   cc->code != RCODE(MESSAGE_NOT_FOUND)) {
			fail(b, "ReceiveMessage: %s (%d): %s", rmq_code_name(cc->code), cc->code,
			     cc->why);
		}
		cfx_free(ev.message);
		if (!cc->is_ack && cc->n) {
			/* Acknowledge what this receive brought, without waiting. */
			int32_t id = rmq_ack_start(w->rc, b->group, b->topic, cc->items, cc->n);
			nrecv--;
			if (id < 0) {
				rmq_err_transport(w->rc, id, &e);
				fail_rmq(b, "AckMessage", &e);
				ccall_free(cc);
				calls[k] = calls[--ncalls];
				continue;
			}
			ccall_free(cc);
			cc->id = id;
			cc->is_ack = 1;
			nacks++;
			continue;
		}
		if (cc->is_ack)
			nacks--;
		else
			nrecv--;
		ccall_free(cc);
		calls[k] = calls[--ncalls];
	}
	for (size_t k = 0; k < ncalls; k++)
		ccall_free(&calls[k]);
	cfx_free(calls);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------ */

static void fresh_name(char *out, size_t len)
{
	uint32_t r;

	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
		r = (uint32_t)cfx_clock_mono_ns() ^ (uint32_t)getpid();
	snprintf(out, len, "bench-%08x", r);
}

/*
 * Makes the fresh topic through the admin API; without one (only --grpc
 * given) the server creates it on first use (broker.auto_create), with
 * its default queue count and type MIXED.
 */
static int create_topic(struct bench *b, int grpc_given)
{
	json_t *body = json_pack("{s:s, s:s, s:I}", "name", b->topic, "type", "normal", "queues",
				 (json_int_t)b->queues);
	int rc;

	b->c.admin_optional = grpc_given;
	rc = admin_call(&b->c, "POST", "/v1/topics", body, NULL, NULL);
	b->c.admin_optional = 0;
	json_decref(body);
	if (rc == CLI_EUNREACHABLE && grpc_given) {
		fprintf(stderr,
			"conflux bench: no admin API at %s: topic %s is created on first "
			"use with the server's defaults\n",
			b->c.server, b->topic);
		return CLI_OK;
	}
	return rc;
}

/* Connects `n` workers; consumers subscribe. Returns CLI_OK or an exit status. */
static int connect_workers(struct bench *b, struct worker *w, size_t n, int consumer)
{
	struct rmq_err e;
	char why[700];

	for (size_t i = 0; i < n; i++) {
		w[i].b = b;
		if (rmq_connect(b->c.grpc, b->c.timeout_ms, &w[i].rc, &e)) {
			rmq_err_format(&e, why, sizeof why);
			cli_error(&b->c, "%s", why);
			return CLI_EUNREACHABLE;
		}
		if (cli_sign_grpc(&b->c, w[i].rc))
			return CLI_EUSAGE;
		if (!consumer && i == 0) {
			struct rmq_route rt;
			if (rmq_query_route(w[i].rc, b->topic, &rt, &e))
				goto fail;
		}
		if (consumer ? rmq_settings_consumer(w[i].rc, b->group, b->topic, NULL,
						     RECEIVE_WAIT_MS, NULL, &e)
			     : rmq_settings_producer(w[i].rc, b->topic, NULL, &e))
			goto fail;
	}
	return CLI_OK;
fail:
	rmq_err_format(&e, why, sizeof why);
	return cli_error(&b->c, "%s %s: %s", consumer ? "subscribing to" : "producing to", b->topic,
			 why);
}

static void close_workers(struct worker *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rmq_close(w[i].rc);
}

/* ------------------------------------------------------------------------
 * Running
 * ------------------------------------------------------------------------ */

static void progress(struct bench *b, int64_t t0_ns, int show)
{
	double s = (double)(cfx_clock_mono_ns() - t0_ns) / 1e9;
	uint64_t sent = load(&b->sent), recv = load(&b->recv);

	if (!show || s <= 0)
		return;
	fprintf(stderr, "\r\033[K%5.0fs", s);
	if (b->mode != MODE_CONSUME || load(&b->recv) == 0)
		fprintf(stderr, "  sent %" PRIu64 " (%.0f msg/s, %.1f MB/s)", sent,
			(double)sent / s, (double)load(&b->sent_bytes) / s / 1e6);
	if (b->mode != MODE_PRODUCE)
		fprintf(stderr, "  received %" PRIu64 " (%.0f msg/s)", recv, (double)recv / s);
	fflush(stderr);
}

static int all_done(struct worker *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE))
			return 0;
	return 1;
}

static void start_workers(struct worker *w, size_t n, void *(*fn)(void *))
{
	for (size_t i = 0; i < n; i++) {
		w[i].done = 0;
		int rc = pthread_create(&w[i].th, NULL, fn, &w[i]);
		CFX_ASSERT(rc == 0);
	}
}

static void join_workers(struct worker *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pthread_join(w[i].th, NULL);
}

/*
 * Runs the producers until their budget is spent (target) or until
 * `duration_ms` passed (0 = no limit), or a stop. Returns the seconds the
 * producers ran.
 */
static double run_producers(struct bench *b, struct worker *p, size_t np, int64_t duration_ms,
			    int show)
{
	int64_t t0 = cfx_clock_mono_ns(), last_print = t0;

	b->stop_produce = 0;
	start_workers(p, np, producer_main);
	while (!all_done(p, np)) {
		usleep(20000);
		int64_t now = cfx_clock_mono_ns();
		if (cli_stop || (duration_ms && now - t0 >= duration_ms * 1000000))
			set_flag(&b->stop_produce);
		if (now - last_print >= 1000000000) {
			progress(b, t0, show);
			last_print = now;
		}
	}
	join_workers(p, np);
	return (double)(cfx_clock_mono_ns() - t0) / 1e9;
}

/* ------------------------------------------------------------------------
 * The three benchmarks
 * ------------------------------------------------------------------------ */

static json_t *base_report(struct bench *b, const char *mode)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "mode", mode, "topic", b->topic, "size",
			 (json_int_t)b->size, "batch", (json_int_t)b->batch, "connections",
			 (json_int_t)b->conns, "inflight", (json_int_t)b->inflight);
}

static json_t *rate_json(uint64_t msgs, uint64_t bytes, double secs)
{
	return json_pack("{s:I, s:I, s:f, s:f, s:f}", "messages", (json_int_t)msgs, "bytes",
			 (json_int_t)bytes, "seconds", secs, "msgs_per_s",
			 secs > 0 ? (double)msgs / secs : 0.0, "mb_per_s",
			 secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
}

static int bench_produce(struct bench *b, int show)
{
	struct worker *p = cfx_calloc((size_t)b->conns, sizeof *p);
	struct hist h;
	double secs;
	int rc;

	rc = connect_workers(b, p, (size_t)b->conns, 0);
	if (rc)
		goto out;
	b->target = (uint64_t)b->count;
	secs = run_producers(b, p, (size_t)b->conns, b->count ? 0 : b->duration_ms, show);
	if (show)
		fprintf(stderr, "\r\033[K");
	memset(&h, 0, sizeof h);
	for (int64_t i = 0; i < b->conns; i++)
		hist_merge(&h, &p[i].h);
	if (b->c.json) {
		json_t *r = base_report(b, "produce");
		json_object_update_new(r, rate_json(load(&b->sent), load(&b->sent_bytes), secs));
		json_object_set_new(r, "errors", json_integer((json_int_t)load(&b->errors)));
		json_object_set_new(r, "send_latency_ms", hist_json(&h));
		cli_json_print(r);
	} else {
		printf("produce: %" PRIu64 " messages of %lld bytes to %s in %.2f s over %lld "
		       "connections (batch %lld, %lld in flight each)\n",
		       load(&b->sent), (long long)b->size, b->topic, secs, (long long)b->conns,
		       (long long)b->batch, (long long)b->inflight);
		printf("throughput             %.0f msgs/s   %.1f MB/s\n",
		       (double)load(&b->sent) / secs, (double)load(&b->sent_bytes) / secs / 1e6);
		hist_print("SendMessage latency", &h);
	}
out:
	close_workers(p, (size_t)b->conns);
	cfx_free(p);
	return rc;
}

/* Consume: subscribe, make a backlog, drain it. */
static int bench_consume(struct bench *b, int show, int topic_given)
{
	size_t n = (size_t)b->conns;
	struct worker *p = cfx_calloc(n, sizeof *p), *c = cfx_calloc(n, sizeof *c);
	uint64_t fill_msgs = 0, fill_bytes = 0;
	double fill_secs = 0, secs = 0;
	int64_t t0, last_print;
	int rc;

	rc = connect_workers(b, c, n, 1); /* subscribes: a new group starts at the end */
	if (rc)
		goto out;
	if (topic_given) {
		/* Drain what the topic holds: the group goes back to the earliest offset. */
		char *esc = cli_url_escape(b->group), path[512];
		json_t *body = json_pack("{s:s, s:i}", "topic", b->topic, "offset", 0);
		snprintf(path, sizeof path, "/v1/groups/%s/reset", esc);
		cfx_free(esc);
		rc = admin_call(&b->c, "POST", path, body, NULL, NULL);
		json_decref(body);
		if (rc)
			goto out;
	} else {
		rc = connect_workers(b, p, n, 0);
		if (rc)
			goto out;
		b->target = (uint64_t)(b->count ? b->count : 100000);
		fill_secs = run_producers(b, p, n, 0, show);
		fill_msgs = load(&b->sent);
		fill_bytes = load(&b->sent_bytes);
		if (show)
			fprintf(stderr, "\r\033[Kfilled %s with %" PRIu64 " messages in %.2f s\n",
				b->topic, fill_msgs, fill_secs);
		if (load(&b->errors))
			goto report;
	}
	/* Drain: until the backlog (or --count) is received, --duration passes, or it is quiet. */
	t0 = last_print = cfx_clock_mono_ns();
	b->last_recv_ns = t0;
	start_workers(c, n, consumer_main);
	for (;;) {
		usleep(20000);
		int64_t now = cfx_clock_mono_ns();
		uint64_t got = load(&b->recv);
		int64_t last = __atomic_load_n(&b->last_recv_ns, __ATOMIC_RELAXED);
		if (cli_stop || flag(&b->stop_consume) ||
		    (b->duration_ms && now - t0 >= b->duration_ms * 1000000) ||
		    (!topic_given && got >= fill_msgs) ||
		    (topic_given && b->count && got >= (uint64_t)b->count) ||
		    (got && now - last >= (int64_t)DRAIN_IDLE_MS * 1000000))
			break;
		if (now - last_print >= 1000000000) {
			progress(b, t0, show);
			last_print = now;
		}
	}
	set_flag(&b->stop_consume);
	join_workers(c, n);
	if (show)
		fprintf(stderr, "\r\033[K");
	secs = (double)(__atomic_load_n(&b->last_recv_ns, __ATOMIC_RELAXED) - t0) / 1e9;
	if (secs <= 0)
		secs = (double)(cfx_clock_mono_ns() - t0) / 1e9;
report:
	if (b->c.json) {
		json_t *r = base_report(b, "consume");
		json_object_set_new(r, "group", json_string(b->group));
		if (!topic_given)
			json_object_set_new(r, "fill", rate_json(fill_msgs, fill_bytes, fill_secs));
		json_object_update_new(r, rate_json(load(&b->recv), load(&b->recv_bytes), secs));
		json_object_set_new(r, "errors", json_integer((json_int_t)load(&b->errors)));
		cli_json_print(r);
	} else {
		if (!topic_given)
			printf("fill (produce)         %.0f msgs/s   %.1f MB/s   (%" PRIu64
			       " messages)\n",
			       fill_secs > 0 ? (double)fill_msgs / fill_secs : 0.0,
			       fill_secs > 0 ? (double)fill_bytes / fill_secs / 1e6 : 0.0,
			       fill_msgs);
		printf("consume: %" PRIu64 " messages of %s as %s in %.2f s over %lld connections "
		       "(%lld receives in flight each)\n",
		       load(&b->recv), b->topic, b->group, secs, (long long)b->conns,
		       (long long)b->inflight);
		printf("throughput             %.0f msgs/s   %.1f MB/s\n",
		       secs > 0 ? (double)load(&b->recv) / secs : 0.0,
		       secs > 0 ? (double)load(&b->recv_bytes) / secs / 1e6 : 0.0);
	}
out:
	close_workers(c, n);
	close_workers(p, n);
	cfx_free(c);
	cfx_free(p);
	return rc;
}

/* End to end: paced producers and concurrent consumers. */
static int bench_e2e(struct bench *b, int show)
{
	size_t n = (size_t)b->conns;
	struct worker *p = cfx_calloc(n, sizeof *p), *c = cfx_calloc(n, sizeof *c);
	struct hist h;
	double secs;
	int64_t t_end;
	int rc;

	rc = connect_workers(b, c, n, 1);
	if (!rc)
		rc = connect_workers(b, p, n, 0);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		/* The rate split evenly; the first producers take the remainder. */
		p[i].rate = b->rate / b->conns + ((int64_t)i < b->rate % b->conns);
		p[i].e2e = c[i].e2e = 1;
	}
	b->target = (uint64_t)b->count;
	b->measure_from_ns = wall_ns() + b->warmup_ms * 1000000;
	start_workers(c, n, consumer_main);
	secs = run_producers(b, p, n, b->count ? 0 : b->warmup_ms + b->duration_ms, show);
	/* Let the consumers catch up with what was sent. */
	t_end = cfx_clock_mono_ns();
	while (!cli_stop && !flag(&b->stop_consume) && load(&b->recv) < load(&b->sent) &&
	       cfx_clock_mono_ns() - t_end < (int64_t)E2E_DRAIN_MS * 1000000)
		usleep(20000);
	set_flag(&b->stop_consume);
	join_workers(c, n);
	if (show)
		fprintf(stderr, "\r\033[K");
	memset(&h, 0, sizeof h);
	for (size_t i = 0; i < n; i++)
		hist_merge(&h, &c[i].h);
	uint64_t sent = load(&b->sent), recv = load(&b->recv);
	if (b->c.json) {
		json_t *r = base_report(b, "e2e");
		json_object_set_new(r, "group", json_string(b->group));
		json_object_set_new(r, "rate", json_integer((json_int_t)b->rate));
		json_object_set_new(r, "warmup_seconds", json_real((double)b->warmup_ms / 1000));
		json_object_set_new(r, "seconds", json_real(secs));
		json_object_set_new(r, "sent", json_integer((json_int_t)sent));
		json_object_set_new(r, "received", json_integer((json_int_t)recv));
		json_object_set_new(r, "achieved_rate",
				    json_real(secs > 0 ? (double)sent / secs : 0));
		json_object_set_new(r, "errors", json_integer((json_int_t)load(&b->errors)));
		json_object_set_new(r, "latency_ms", hist_json(&h));
		cli_json_print(r);
	} else {
		printf("e2e: %" PRIu64
		       " messages of %lld bytes sent at %.0f msgs/s (asked %lld) to "
		       "%s in %.2f s; %" PRIu64 " received by %s\n",
		       sent, (long long)b->size, secs > 0 ? (double)sent / secs : 0.0,
		       (long long)b->rate, b->topic, secs, recv, b->group);
		hist_print("produce->receive", &h);
		if (b->warmup_ms)
			printf("(latencies of the first %.1f s of sending, the warm-up, are left "
			       "out)\n",
			       (double)b->warmup_ms / 1000);
	}
	if (recv < sent && !load(&b->errors))
		fprintf(stderr,
			"conflux bench e2e: %" PRIu64 " messages were not received within "
			"%d s after the last send\n",
			sent - recv, E2E_DRAIN_MS / 1000);
out:
	close_workers(c, n);
	close_workers(p, n);
	cfx_free(c);
	cfx_free(p);
	return rc;
}

/* ------------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------------ */

int cli_bench_rmq(int argc, char **argv)
{
	struct bench b;
	const char *mode, *topic = NULL, *group = NULL, *size = NULL, *batch = NULL;
	const char *conns = NULL, *inflight = NULL, *duration = NULL, *count = NULL;
	const char *rate = NULL, *queues = NULL, *warmup = NULL;
	int r, done = 0, rc, grpc_given, show;

	memset(&b, 0, sizeof b);
	cli_init(&b.c, "bench", usage_bench);
	if (argc < 2) {
		fputs(usage_bench, stderr);
		return CLI_EUSAGE;
	}
	mode = argv[1];
	if (!strcmp(mode, "--help") || !strcmp(mode, "-h") || !strcmp(mode, "help")) {
		fputs(usage_bench, stdout);
		return CLI_OK;
	}
	if (!strcmp(mode, "produce"))
		b.mode = MODE_PRODUCE, b.c.cmd = "bench produce";
	else if (!strcmp(mode, "consume"))
		b.mode = MODE_CONSUME, b.c.cmd = "bench consume";
	else if (!strcmp(mode, "e2e"))
		b.mode = MODE_E2E, b.c.cmd = "bench e2e";
	else
		return cli_usage_error(&b.c,
				       "unknown benchmark \"%s\" (produce, consume, e2e, "
				       "store)",
				       mode);
	for (int i = 2; i < argc;) {
		CLI_COMMON(&b.c, argc, argv, i);
		CLI_VALUE(&b.c, argc, argv, i, "--topic", topic);
		CLI_VALUE(&b.c, argc, argv, i, "--group", group);
		CLI_VALUE(&b.c, argc, argv, i, "--size", size);
		CLI_VALUE(&b.c, argc, argv, i, "--batch", batch);
		CLI_VALUE(&b.c, argc, argv, i, "--connections", conns);
		CLI_VALUE(&b.c, argc, argv, i, "--inflight", inflight);
		CLI_VALUE(&b.c, argc, argv, i, "--duration", duration);
		CLI_VALUE(&b.c, argc, argv, i, "--count", count);
		CLI_VALUE(&b.c, argc, argv, i, "--rate", rate);
		CLI_VALUE(&b.c, argc, argv, i, "--queues", queues);
		CLI_VALUE(&b.c, argc, argv, i, "--warmup", warmup);
		CLI_UNKNOWN(&b.c, argv[i]);
		return cli_usage_error(&b.c, "unexpected argument \"%s\"", argv[i]);
	}
	b.size = 1024;
	b.batch = 32;
	b.conns = 4;
	b.inflight = 8;
	b.duration_ms = 10000;
	b.rate = 10000;
	b.queues = 8;
	b.warmup_ms = 1000;
	if ((size && cli_size(&b.c, "--size", size, &b.size)) ||
	    (batch && cli_int(&b.c, "--batch", batch, 1, BATCH_MAX, &b.batch)) ||
	    (conns && cli_int(&b.c, "--connections", conns, 1, CONNS_MAX, &b.conns)) ||
	    (inflight && cli_int(&b.c, "--inflight", inflight, 1, INFLIGHT_MAX, &b.inflight)) ||
	    (duration && cli_duration(&b.c, "--duration", duration, &b.duration_ms)) ||
	    (count && cli_int(&b.c, "--count", count, 1, INT64_MAX / 2, &b.count)) ||
	    (rate && cli_int(&b.c, "--rate", rate, 1, 100000000, &b.rate)) ||
	    (queues && cli_int(&b.c, "--queues", queues, 1, 1024, &b.queues)) ||
	    (warmup && cli_duration(&b.c, "--warmup", warmup, &b.warmup_ms)))
		return CLI_EUSAGE;
	if (b.size < 1 || b.size > (64 << 20))
		return cli_usage_error(&b.c, "--size must be 1 byte to 64 MiB");
	if (duration && b.duration_ms <= 0)
		return cli_usage_error(&b.c, "--duration must be positive");
	if (b.mode == MODE_E2E && b.rate < b.conns)
		return cli_usage_error(&b.c, "--rate must be at least --connections");
	if (group && b.mode == MODE_PRODUCE)
		return cli_usage_error(&b.c, "--group is for consume and e2e");

	grpc_given = b.c.grpc[0] != '\0';
	rc = admin_grpc_endpoint(&b.c);
	if (rc)
		return rc;
	pthread_mutex_init(&b.mu, NULL);
	b.body = cfx_malloc((size_t)b.size);
	for (int64_t i = 0; i < b.size; i++)
		b.body[i] = (char)('a' + i % 26);
	if (topic) {
		snprintf(b.topic, sizeof b.topic, "%s", topic);
	} else {
		fresh_name(b.topic, sizeof b.topic);
		rc = create_topic(&b, grpc_given);
		if (rc)
			goto out;
	}
	if (group)
		snprintf(b.group, sizeof b.group, "%s", group);
	else
		fresh_name(b.group, sizeof b.group);
	cli_catch_signals();
	show = isatty(2);
	if (b.mode == MODE_PRODUCE)
		rc = bench_produce(&b, show);
	else if (b.mode == MODE_CONSUME)
		rc = bench_consume(&b, show, topic != NULL);
	else
		rc = bench_e2e(&b, show);
	if (rc == CLI_OK && load(&b.errors)) {
		cli_error(&b.c, "%" PRIu64 " failed calls; the first: %s", load(&b.errors),
			  b.first_error);
		rc = CLI_EFAIL;
	}
out:
	cfx_free(b.body);
	pthread_mutex_destroy(&b.mu);
	return rc;
}
