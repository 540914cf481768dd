/*
 * bench_timer.c - `conflux bench timers`: delayed messages measured in
 * process, on a broker opened in a scratch directory.
 *
 * Phase 1 (memory): --pending delayed messages with delivery times spread
 * uniformly over --spread (starting an hour from now, so none fires), sent
 * in batches of 100. Reported: the timing wheel's bytes per pending timer,
 * and the growth of the process's anonymous memory per pending timer
 * (everything the broker keeps in memory for them).
 *
 * Phase 2 (accuracy): for --duration, --rate delayed messages per second,
 * each due --delay after it is sent, while a consumer (long polling through
 * cfx_broker_watch, like a receive) takes them. Lateness = the time the
 * consumer got the message minus its delivery time; reported as p50, p99,
 * max. A message delivered early counts as an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/log.h"
#include "broker/broker.h"
#include "cmd/conflux/cli.h"
#include "store/files.h"

struct topts {
	const char *dir;
	int64_t pending;
	int64_t spread_ms;
	int64_t rate;
	int64_t duration_ms;
	int64_t delay_ms;
	int json;
};

static long anon_kb(void)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		sscanf(line, "RssAnon: %ld", &kb);
	fclose(f);
	return kb;
}

/* Completion counting for async sends. */
static atomic_long sends_done, send_errors;

static void sent(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	CFX_UNUSED(arg);
	for (uint32_t i = 0; i < n; i++)
		if (res[i].err)
			send_errors++;
	sends_done += n;
}

static int send_delayed(struct cfx_broker *br, const char *topic, uint32_t n, const int64_t *due)
{
	static const char body[128] = "delayed";
	struct cfx_send_msg m[100];

	for (uint32_t i = 0; i < n; i++)
		m[i] = (struct cfx_send_msg){ .m = { .body = { (const uint8_t *)body, sizeof body },
						     .key_null = 1,
						     .born_ms = cfx_clock_wall_ms() },
					      .type = CFX_MSG_DELAY,
					      .deliver_at_ms = due[i] };
	return cfx_broker_send(br, CFX_VIEW_STR(topic), m, n, CFX_DURABILITY_ASYNC, sent, NULL);
}

static void wait_sends(long want)
{
	while (sends_done < want)
		usleep(1000);
}

/* Phase 2's consumer. */
struct consumer {
	struct cfx_broker *br;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int woken, stop;
	int64_t *late;
	long nlate, caplate, early;
};

static void on_wake(void *arg)
{
	struct consumer *c = arg;
	pthread_mutex_lock(&c->mu);
	c->woken = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static int64_t due_of(const struct cfx_msg_view *v)
{
	size_t cur = 0;
	struct cfx_prop p;
	char buf[24];

	while (cfx_msg_view_next_prop(v, &cur, &p))
		if (cfx_view_eq_str(p.name, CFX_PROP_DELIVER_AT) && p.value.len < sizeof buf) {
			memcpy(buf, p.value.p, p.value.len);
			buf[p.value.len] = '\0';
			return strtoll(buf, NULL, 10);
		}
	return -1;
}

static void *consume(void *arg)
{
	struct consumer *c = arg;
	struct cfx_pop_result res;
	struct cfx_pop_req req = { .group = CFX_VIEW_STR("bench-timers"),
				   .topic = CFX_VIEW_STR("bench-accuracy"),
				   .max_msgs = 32,
				   .invisible_ms = 60000 };

	cfx_pop_result_init(&res);
	while (!c->stop) {
		pthread_mutex_lock(&c->mu);
		c->woken = 0;
		pthread_mutex_unlock(&c->mu);
		uint64_t w = cfx_broker_watch(c->br, req.group, req.topic, on_wake, c);
		if (cfx_broker_pop(c->br, &req, &res) == 0 && res.count) {
			int64_t now = cfx_clock_wall_ms();
			cfx_broker_unwatch(c->br, w);
			for (uint32_t i = 0; i < res.count; i++) {
				int64_t due = due_of(&res.msgs[i].v);
				if (due >= 0) {
					if (now < due)
						c->early++;
					if (c->nlate == c->caplate) {
						c->caplate = c->caplate ? c->caplate * 2 : 4096;
						c->late = cfx_realloc(c->late,
								      (size_t)c->caplate * sizeof *c->late);
					}
					c->late[c->nlate++] = now - due;
				}
				cfx_broker_ack(c->br, req.group, req.topic, res.msgs[i].handle);
			}
			continue;
		}
		/* Nothing now: wait for a wake-up (or 50 ms). */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&c->mu);
		while (!c->woken && !c->stop &&
		       pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&c->mu);
		cfx_broker_unwatch(c->br, w);
	}
	cfx_pop_result_free(&res);
	return NULL;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: conflux bench timers [options]\n"
		"  --dir DIR        scratch directory (default ./bench-data/timers; removed)\n"
		"  --pending N      delayed messages held for the memory phase (default 1000000)\n"
		"  --spread DUR     their delivery times spread over DUR (default 24h)\n"
		"  --rate N         accuracy phase: delayed messages per second (default 10000)\n"
		"  --delay DUR      accuracy phase: each due DUR after it is sent (default 2s)\n"
		"  --duration DUR   accuracy phase: how long to send (default 10s)\n"
		"  --json           print results as JSON\n");
}

int cli_bench_timers(int argc, char **argv)
{
	struct topts o = { .dir = "./bench-data/timers",
			   .pending = 1000000,
			   .spread_ms = 24 * 3600 * 1000LL,
			   .rate = 10000,
			   .duration_ms = 10000,
			   .delay_ms = 2000 };
	struct cfx_broker_opts bo;
	struct cfx_broker *br;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--json")) {
			o.json = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "conflux bench timers: %s needs a value\n", a);
			return 2;
		}
		i++;
		rc = 0;
		if (!strcmp(a, "--dir"))
			o.dir = v;
		else if (!strcmp(a, "--pending"))
			rc = cfx_parse_size(v, &o.pending);
		else if (!strcmp(a, "--spread"))
			rc = cfx_parse_duration_ms(v, &o.spread_ms);
		else if (!strcmp(a, "--rate"))
			rc = cfx_parse_size(v, &o.rate);
		else if (!strcmp(a, "--delay"))
			rc = cfx_parse_duration_ms(v, &o.delay_ms);
		else if (!strcmp(a, "--duration"))
			rc = cfx_parse_duration_ms(v, &o.duration_ms);
		else {
			fprintf(stderr, "conflux bench timers: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		if (rc || o.rate <= 0 || o.spread_ms <= 0) {
			fprintf(stderr, "conflux bench timers: bad value for %s: %s\n", a, v);
			return 2;
		}
	}

	cfx_log_set_level(CFX_LOG_WARN);
	store__rmtree(o.dir);
	cfx_broker_opts_default(&bo);
	bo.store.dir = o.dir;
	bo.store.segment_bytes = 256u << 20;
	bo.timer_max_ms = o.spread_ms + 2 * 3600 * 1000LL;
	rc = cfx_broker_open(&bo, &br, NULL);
	if (rc) {
		fprintf(stderr, "conflux bench timers: cannot open a broker in %s: %s\n", o.dir,
			cfx_strerror(rc));
		return 1;
	}
	cfx_broker_topic_create(br, "bench-delay", CFX_MSG_DELAY, 1);
	cfx_broker_topic_create(br, "bench-accuracy", CFX_MSG_DELAY, 4);

	/* Phase 1: memory per pending timer. */
	size_t wheel0, wheel1;
	long anon0, anon1;
	int64_t t0 = cfx_clock_mono_ms(), base = cfx_clock_wall_ms() + 3600 * 1000LL;
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	cfx_broker_timers_pending(br, &wheel0);
	anon0 = anon_kb();
	for (long sent_n = 0; sent_n < o.pending;) {
		int64_t due[100];
		uint32_t n = (uint32_t)CFX_MIN(100L, o.pending - sent_n);
		for (uint32_t k = 0; k < n; k++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			due[k] = base + (int64_t)(seed % (uint64_t)o.spread_ms);
		}
		if (send_delayed(br, "bench-delay", n, due)) {
			fprintf(stderr, "conflux bench timers: send failed\n");
			return 1;
		}
		sent_n += n;
		if (sent_n % 100000 == 0)
			wait_sends(sent_n); /* bounded in-flight */
	}
	wait_sends(o.pending);
	int64_t fill_ms = cfx_clock_mono_ms() - t0;
	size_t pending = cfx_broker_timers_pending(br, &wheel1);
	anon1 = anon_kb();

	/* Phase 2: firing accuracy. */
	struct consumer c = { .br = br };
	pthread_t thr;
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	cfx_broker_subscribe(br, CFX_VIEW_STR("bench-timers"), CFX_VIEW_STR("bench-accuracy"));
	pthread_create(&thr, NULL, consume, &c);
	long want = sends_done, total = 0;
	int64_t start = cfx_clock_mono_ms();
	while (cfx_clock_mono_ms() - start < o.duration_ms) {
		int64_t elapsed = cfx_clock_mono_ms() - start;
		long target = (long)(elapsed * o.rate / 1000);
		while (total < target) {
			int64_t due[100];
			uint32_t n = (uint32_t)CFX_MIN(100L, target - total);
			int64_t now = cfx_clock_wall_ms();
			for (uint32_t k = 0; k < n; k++)
				due[k] = now + o.delay_ms;
			send_delayed(br, "bench-accuracy", n, due);
			total += n;
		}
		usleep(2000);
	}
	want += total;
	wait_sends(want);
	/* Wait for the last ones to come due and be consumed. */
	for (int i = 0; i < 600 && c.nlate < total; i++)
		usleep(50000);
	c.stop = 1;
	on_wake(&c);
	pthread_join(thr, NULL);

	qsort(c.late, (size_t)c.nlate, sizeof *c.late, cmp64);
	int64_t p50 = c.nlate ? c.late[c.nlate / 2] : -1;
	int64_t p99 = c.nlate ? c.late[(size_t)((double)c.nlate * 0.99)] : -1;
	int64_t mx = c.nlate ? c.late[c.nlate - 1] : -1;
	double per_timer_wheel = pending ? (double)(wheel1 - wheel0) / (double)pending : 0;
	double per_timer_anon = pending ? (double)(anon1 - anon0) * 1024.0 / (double)pending : 0;

	if (o.json) {
		printf("{\"pending\":%zu,\"fill_seconds\":%.2f,\"wheel_bytes_per_timer\":%.1f,"
		       "\"anon_bytes_per_timer\":%.1f,\"rate\":%" PRId64 ",\"delay_ms\":%" PRId64
		       ",\"fired\":%ld,\"sent\":%ld,\"early\":%ld,\"send_errors\":%ld,"
		       "\"lateness_ms\":{\"p50\":%" PRId64 ",\"p99\":%" PRId64 ",\"max\":%" PRId64
		       "}}\n",
		       pending, fill_ms / 1000.0, per_timer_wheel, per_timer_anon, o.rate, o.delay_ms,
		       c.nlate, total, c.early, (long)send_errors, p50, p99, mx);
	} else {
		printf("pending delayed messages: %zu (sent in %.1f s)\n", pending, fill_ms / 1000.0);
		printf("  timing wheel:        %.1f bytes per pending timer\n", per_timer_wheel);
		printf("  process heap growth: %.1f bytes per pending timer\n", per_timer_anon);
		printf("firing at %" PRId64 " timers/s, due %" PRId64 " ms after sending: %ld of %ld "
		       "delivered, %ld early\n",
		       o.rate, o.delay_ms, c.nlate, total, c.early);
		printf("  lateness: p50 %" PRId64 " ms, p99 %" PRId64 " ms, max %" PRId64 " ms\n", p50,
		       p99, mx);
	}
	cfx_free(c.late);
	cfx_broker_close(br);
	store__rmtree(o.dir);
	return c.early || send_errors || c.nlate < total ? 1 : 0;
}
