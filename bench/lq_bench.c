/*
 * lq_bench.c - light queues at scale (broker/lq.c): creates N queues named
 * "s/<i>" (default 1,000,000), pushes one entry to each, and reports the
 * create and push rates, the process's RSS before and after (from
 * /proc/self/statm) and per queue, then the time to reopen (replay of the
 * journal), to write a snapshot, and to reopen from it. Figures only, no
 * verdicts.
 *
 *   build/lq_bench [--queues N] [--dir DIR] [--flush-ms MS]
 *
 * DIR (default: a new directory under /tmp) is emptied of the engine's
 * files at the end.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "broker/lq.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t file_bytes(const char *dir, const char *name)
{
	char path[4096];
	FILE *f;
	long n;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		return 0;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fclose(f);
	return n > 0 ? (uint64_t)n : 0;
}

static void check(int rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "lq_bench: %s: %s\n", what, cfx_strerror(rc));
		exit(1);
	}
}

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
	uint32_t n = 1000000;
	const char *dir = NULL;
	char tmpl[] = "/tmp/cfx-lq-bench-XXXXXX";
	struct cfx_lq_opts o;
	struct cfx_lqs *lqs;
	struct cfx_lq_stats st;
	char name[32];
	double t0, t;

	cfx_lq_opts_default(&o);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--queues") && i + 1 < argc) {
			n = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--flush-ms") && i + 1 < argc) {
			o.flush_interval_ms = strtoll(argv[++i], NULL, 10);
		} else {
			fprintf(stderr, "usage: %s [--queues N] [--dir DIR] [--flush-ms MS]\n",
				argv[0]);
			return 2;
		}
	}
	if (!dir && !(dir = mkdtemp(tmpl))) {
		perror("mkdtemp");
		return 1;
	}
	cfx_log_set_level(CFX_LOG_WARN);
	o.dir = dir;
	o.queues_max = n > o.queues_max ? n : o.queues_max;

	uint64_t rss0 = rss_bytes();
	check(cfx_lq_open(&o, &lqs), "open");
	uint64_t rss_open = rss_bytes();

	t0 = now_s();
	for (uint32_t i = 0; i < n; i++) {
		uint32_t id;
		snprintf(name, sizeof name, "s/%u", i);
		check(cfx_lq_get(lqs, (struct cfx_view){ (const uint8_t *)name, strlen(name) }, 1,
				 &id),
		      "create");
	}
	t = now_s() - t0;
	uint64_t rss_idle = rss_bytes();
	cfx_lq_stats(lqs, &st);
	printf("queues:            %u\n", n);
	printf("create:            %.2f s, %.0f queues/s\n", t, n / t);
	printf("rss before open:   %.1f MiB\n", mib(rss0));
	printf("rss after open:    %.1f MiB\n", mib(rss_open));
	printf("rss idle queues:   %.1f MiB, %.1f bytes/queue (engine's count %.1f)\n",
	       mib(rss_idle), (double)(rss_idle - rss_open) / n, (double)st.bytes / n);

	t0 = now_s();
	for (uint32_t i = 1; i <= n; i++) {
		struct cfx_lq_entry e = { .topic = 1, .queue = i % 8, .offset = i };
		check(cfx_lq_push(lqs, i, &e, NULL), "push");
	}
	t = now_s() - t0;
	uint64_t rss_one = rss_bytes();
	cfx_lq_stats(lqs, &st);
	printf("push:              %.2f s, %.0f pushes/s\n", t, n / t);
	printf("rss one entry:     %.1f MiB, %.1f bytes/queue (engine's count %.1f)\n",
	       mib(rss_one), (double)(rss_one - rss_open) / n, (double)st.bytes / n);
	printf("journal:           %.1f MiB\n", mib(st.journal_bytes));

	t0 = now_s();
	check(cfx_lq_close(lqs), "close");
	printf("close:             %.2f s\n", now_s() - t0);

	t0 = now_s();
	check(cfx_lq_open(&o, &lqs), "reopen");
	t = now_s() - t0;
	cfx_lq_stats(lqs, &st);
	printf("reopen (journal):  %.2f s, %" PRIu64 " queues, %" PRIu64 " entries, rss %.1f MiB\n",
	       t, st.queues, st.entries, mib(rss_bytes()));

	t0 = now_s();
	check(cfx_lq_compact(lqs, 1), "compact");
	printf("snapshot:          %.2f s, %.1f MiB\n", now_s() - t0,
	       mib(file_bytes(dir, "snapshot")));
	check(cfx_lq_close(lqs), "close");

	t0 = now_s();
	check(cfx_lq_open(&o, &lqs), "reopen");
	t = now_s() - t0;
	cfx_lq_stats(lqs, &st);
	printf("reopen (snapshot): %.2f s, %" PRIu64 " queues, %" PRIu64 " entries, rss %.1f MiB\n",
	       t, st.queues, st.entries, mib(rss_bytes()));
	check(cfx_lq_close(lqs), "close");
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("peak rss:          %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);

	static const char *const files[] = { "journal", "snapshot", "journal.damaged" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	if (dir == tmpl)
		rmdir(dir);
	return 0;
}
