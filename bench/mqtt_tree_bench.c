/*
 * mqtt_tree_bench.c - a micro benchmark of the MQTT subscription tree
 * (src/proto/mqtt/topic_tree.c), in process, no server.
 *
 *   mqtt_tree_bench [--subs N] [--matches M] [--threads T]
 *
 * Inserts N (default 1,000,000) subscriptions "dev/<i>/cmd", one session
 * each, then 1,000 wildcard ones: 10 sessions on "dev/+/cmd", 490 on
 * "dev/+/s<k>" (which the topics below do not reach) and 500 on
 * "dev/<i>/#" (every N/500-th device). Reports the insert rate, bytes per
 * subscription twice (mqtt_tree_memory(): requested sizes; RSS delta from
 * /proc/self/statm: what the process really paid, allocator included), the
 * match rate of M (default 2,000,000) random topics "dev/<r>/cmd" on 1 and
 * on T threads (default 4), and the removal rate. Prints figures only: no
 * assertion on time.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/mqtt/topic_tree.h"

#define TOPICS 65536u /* pre-built random topic names, cycled through */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Names packed in one buffer: name i is buf + off[i], len[i] bytes. */
struct names {
	char *buf;
	size_t *off;
	uint16_t *len;
};

static void names_make(struct names *nm, size_t n, const char *fmt, const uint64_t *arg)
{
	size_t at = 0;

	nm->buf = malloc(n * 24);
	nm->off = malloc(n * sizeof *nm->off);
	nm->len = malloc(n * sizeof *nm->len);
	if (!nm->buf || !nm->off || !nm->len) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(nm->buf + at, 24, fmt, arg ? arg[i] : (uint64_t)i);

		if (w < 0 || w >= 24) {
			fprintf(stderr, "name too long\n");
			exit(1);
		}

		nm->off[i] = at;
		nm->len[i] = (uint16_t)w;
		at += (size_t)w;
	}
}

static struct cfx_view names_at(const struct names *nm, size_t i)
{
	return (struct cfx_view){ (const uint8_t *)nm->buf + nm->off[i], nm->len[i] };
}

static void names_free(struct names *nm)
{
	free(nm->buf);
	free(nm->off);
	free(nm->len);
}

static void *session_of(size_t i)
{
	return (void *)(uintptr_t)((i + 1) * 64);
}

static void count_cb(void *arg, const struct mqtt_sub *s, int shared)
{
	(void)s;
	(void)shared;
	(*(size_t *)arg)++;
}

struct matcher {
	struct mqtt_tree *t;
	const struct names *topics;
	size_t first, count;
	size_t calls;
};

static void *match_run(void *arg)
{
	struct matcher *m = arg;

	for (size_t i = 0; i < m->count; i++)
		mqtt_tree_match(m->t, names_at(m->topics, (m->first + i) % TOPICS), count_cb,
				&m->calls, NULL);
	return NULL;
}

static void match_bench(struct mqtt_tree *t, const struct names *topics, size_t total,
			unsigned threads)
{
	pthread_t th[64];
	struct matcher m[64];
	size_t calls = 0;
	double t0 = now_s(), dt;

	for (unsigned k = 0; k < threads; k++) {
		m[k] = (struct matcher){ .t = t, .topics = topics, .first = k * 7919u,
					 .count = total / threads };
		if (pthread_create(&th[k], NULL, match_run, &m[k]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	for (unsigned k = 0; k < threads; k++) {
		pthread_join(th[k], NULL);
		calls += m[k].calls;
	}
	dt = now_s() - t0;
	printf("match, %u thread%s: %zu topics in %.3f s: %.0f matches/s, %.0f deliveries/s "
	       "(%.2f per topic)\n",
	       threads, threads > 1 ? "s" : "", total / threads * threads, dt,
	       (double)(total / threads * threads) / dt, (double)calls / dt,
	       (double)calls / (double)(total / threads * threads));
}

int main(int argc, char **argv)
{
	size_t n = 1000000, matches = 2000000;
	unsigned threads = 4;
	struct names filters, topics;
	uint64_t *rnd, x = 0x9e3779b97f4a7c15ULL;
	struct mqtt_tree *t;
	size_t mem0, rss0, mem1, rss1, subs;
	double t0, dt;
	char f[32];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--subs") == 0 && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--matches") == 0 && i + 1 < argc)
			matches = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = (unsigned)strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--subs N] [--matches M] [--threads T]\n", argv[0]);
			return 2;
		}
	}
	if (n < 500 || threads < 1 || threads > 64) {
		fprintf(stderr, "--subs must be >= 500, --threads 1..64\n");
		return 2;
	}

	/* Names first, so that neither the timings nor the RSS delta include them. */
	names_make(&filters, n, "dev/%" PRIu64 "/cmd", NULL);
	rnd = malloc(TOPICS * sizeof *rnd);
	for (size_t i = 0; i < TOPICS; i++)
		rnd[i] = xorshift(&x) % n;
	names_make(&topics, TOPICS, "dev/%" PRIu64 "/cmd", rnd);

	t = mqtt_tree_new();
	mem0 = mqtt_tree_memory(t);
	rss0 = rss_bytes();

	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		struct mqtt_sub s = { .session = session_of(i), .qos = 1 };

		mqtt_tree_subscribe(t, names_at(&filters, i), &s);
	}
	dt = now_s() - t0;
	for (size_t k = 0; k < 1000; k++) {
		struct mqtt_sub s = { .session = session_of(n + k), .qos = 1 };

		if (k < 10)
			snprintf(f, sizeof f, "dev/+/cmd");
		else if (k < 500)
			snprintf(f, sizeof f, "dev/+/s%zu", k);
		else
			snprintf(f, sizeof f, "dev/%zu/#", (k - 500) * (n / 500));
		mqtt_tree_subscribe(t, CFX_VIEW_STR(f), &s);
	}
	subs = mqtt_tree_count(t);
	mem1 = mqtt_tree_memory(t);
	rss1 = rss_bytes();
	printf("insert: %zu subscriptions \"dev/<i>/cmd\" in %.3f s: %.0f subscriptions/s\n", n,
	       dt, (double)n / dt);
	printf("memory: %zu subscriptions (+1,000 wildcard): mqtt_tree_memory %.1f MB = %.1f "
	       "bytes/subscription; RSS delta %.1f MB = %.1f bytes/subscription\n",
	       subs, (double)(mem1 - mem0) / 1e6, (double)(mem1 - mem0) / (double)subs,
	       (double)(rss1 - rss0) / 1e6, (double)(rss1 - rss0) / (double)subs);

	match_bench(t, &topics, matches, 1);
	if (threads > 1)
		match_bench(t, &topics, matches, threads);

	t0 = now_s();
	for (size_t i = 0; i < n; i++)
		mqtt_tree_unsubscribe(t, names_at(&filters, i), session_of(i));
	dt = now_s() - t0;
	printf("unsubscribe: %zu in %.3f s: %.0f/s; left: %zu subscriptions, %zu bytes "
	       "(empty tree: %zu)\n",
	       n, dt, (double)n / dt, mqtt_tree_count(t), mqtt_tree_memory(t), mem0);

	mqtt_tree_free(t);
	names_free(&filters);
	names_free(&topics);
	free(rnd);
	return 0;
}
