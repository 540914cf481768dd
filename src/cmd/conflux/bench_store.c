/*
 * bench_store.c - `conflux bench store`: the storage engine measured
 * in-process, beside the machine's own limits measured in the same run.
 *
 * Baselines: sequential write of --dd-bytes in 1 MiB blocks followed by
 * one fdatasync on the same file system (what `dd bs=1M conv=fdatasync`
 * does), and memcpy bandwidth. Scenarios: async appends of 100 B and 1 KiB
 * messages, single and in batches of 100; sync appends from 1, 16 and 64
 * concurrent appenders (group commit); a sequential read of what was
 * written. Every figure is printed with its ratio to the baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/conf.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "cmd/conflux/cli.h"
#include "store/files.h"
#include "store/store.h"

struct bench_opts {
	const char *dir;
	int64_t bytes;
	int64_t dd_bytes;
	int64_t segment_bytes;
	int64_t sync_ms;
	int64_t fill;
	int keep;
	int json;
};

struct result {
	const char *name;
	double msgs_per_s;
	double mb_per_s;
	double vs;		/* ratio to the scenario's baseline */
	const char *vs_what;
	double extra;		/* scenario-specific */
	double extra2;
};

static struct result results[32];
static int nresults;

static void add_result(const char *name, double msgs, double bytes, double secs, double vs,
		       const char *vs_what)
{
	struct result *r = &results[nresults++];
	r->name = name;
	r->msgs_per_s = msgs / secs;
	r->mb_per_s = bytes / secs / 1e6;
	r->vs = vs;
	r->vs_what = vs_what;
}

static double now_s(void)
{
	return (double)cfx_clock_mono_ns() / 1e9;
}

/* ------------------------------------------------------------------------
 * Baselines
 * ------------------------------------------------------------------------ */

/* Writes `bytes` in 1 MiB blocks, then fdatasync: bytes/s. */
static double bench_dd(const char *dir, int64_t bytes)
{
	char path[4096];
	size_t bs = 1 << 20;
	char *buf = aligned_alloc(4096, bs);
	double t0, t;
	int fd;

	memset(buf, 0x5a, bs);
	snprintf(path, sizeof path, "%s/dd.tmp", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		free(buf);
		return 0;
	}
	t0 = now_s();
	for (int64_t done = 0; done < bytes; done += (int64_t)bs)
		if (write(fd, buf, bs) != (ssize_t)bs)
			break;
	fdatasync(fd);
	t = now_s() - t0;
	close(fd);
	unlink(path);
	free(buf);
	return (double)bytes / t;
}

static double bench_memcpy(void)
{
	size_t n = 256u << 20;
	char *a = malloc(n), *b = malloc(n);
	double best = 0;

	memset(a, 1, n);
	memset(b, 2, n);
	for (int i = 0; i < 4; i++) {
		double t0 = now_s();
		memcpy(b, a, n);
		double t = now_s() - t0;
		if ((double)n / t > best)
			best = (double)n / t;
		a[i] = b[n - 1 - i]; /* keep the copies observable */
	}
	free(a);
	free(b);
	return best;
}

/* ------------------------------------------------------------------------
 * Store scenarios
 * ------------------------------------------------------------------------ */

static struct cfx_store *open_fresh(const struct bench_opts *bo)
{
	struct cfx_store_opts o;
	struct cfx_store *st;
	char path[4096];
	int rc;

	snprintf(path, sizeof path, "%s/store", bo->dir);
	store__rmtree(path);
	cfx_store_opts_default(&o);
	o.dir = path;
	o.segment_bytes = (uint64_t)bo->segment_bytes;
	o.retention_ms = 0;
	rc = cfx_store_open(&o, &st, NULL);
	if (rc) {
		fprintf(stderr, "conflux bench: cannot open a store in %s: %s\n", path,
			cfx_strerror(rc));
		exit(1);
	}
	return st;
}

static void noop_cb(void *arg, const struct cfx_append_result *res)
{
	CFX_UNUSED(arg);
	CFX_UNUSED(res);
}

static const struct cfx_view topic = { (const uint8_t *)"bench", 5 };

/* Async appends of `msg_bytes` messages, `batch` per append; returns msgs. */
static void bench_async(const struct bench_opts *bo, const char *name, size_t msg_bytes,
			uint32_t batch, double dd_bps, struct cfx_store **keep)
{
	struct cfx_store *st = open_fresh(bo);
	struct cfx_msg *msgs = calloc(batch, sizeof *msgs);
	char *body = malloc(msg_bytes);
	uint64_t total = (uint64_t)bo->bytes / msg_bytes, done = 0;
	double t0, t_append, t_total;

	memset(body, 'x', msg_bytes);
	for (uint32_t i = 0; i < batch; i++) {
		msgs[i].body = (struct cfx_view){ (uint8_t *)body, msg_bytes };
		msgs[i].key_null = 1;
		msgs[i].born_ms = cfx_clock_wall_ms();
	}
	t0 = now_s();
	while (done < total) {
		int rc = cfx_store_append(st, topic, (uint32_t)(done / batch) % 4, msgs, batch,
					  CFX_DURABILITY_ASYNC, noop_cb, NULL);
		if (rc) {
			fprintf(stderr, "append failed: %s\n", cfx_strerror(rc));
			exit(1);
		}
		done += batch;
	}
	t_append = now_s() - t0;
	cfx_store_sync(st);
	t_total = now_s() - t0;
	add_result(name, (double)done, (double)done * msg_bytes, t_total,
		   (double)done * msg_bytes / t_total / dd_bps, "dd");
	results[nresults - 1].extra = (double)done / t_append;
	free(msgs);
	free(body);
	if (keep)
		*keep = st;
	else
		cfx_store_close(st);
}

/*
 * Sync appends with `appenders` in flight at a time, driven from one thread
 * the way a network thread drives many connections: each completion (it
 * arrives on the store's flusher thread) is queued back to the driver,
 * which counts it and issues that appender's next append.
 */
struct sync_driver {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t *ready; /* appenders whose append completed */
	uint32_t nready;
	int failed;
};

struct sync_slot {
	struct sync_driver *d;
	uint32_t id;
};

static void sync_done(void *arg, const struct cfx_append_result *res)
{
	struct sync_slot *slot = arg;
	struct sync_driver *d = slot->d;

	pthread_mutex_lock(&d->mu);
	if (res->err)
		d->failed = 1;
	d->ready[d->nready++] = slot->id;
	if (d->nready == 1)
		pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static double bench_sync(const struct bench_opts *bo, uint32_t appenders, double base_rate,
			 const char *name)
{
	struct cfx_store *st = open_fresh(bo);
	struct sync_driver d = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct sync_slot *slots = calloc(appenders, sizeof *slots);
	uint32_t *batch = calloc(appenders, sizeof *batch);
	struct cfx_store_stats stats;
	int64_t start = cfx_clock_mono_ns(), deadline = start + bo->sync_ms * 1000000;
	uint64_t total = 0, fsyncs0, fsync_ns0;
	uint32_t inflight = 0;
	char body[1024];
	struct cfx_msg m = { .body = { (uint8_t *)body, sizeof body }, .key_null = 1 };
	double secs;

	memset(body, 's', sizeof body);
	d.ready = calloc(appenders, sizeof *d.ready);
	cfx_store_get_stats(st, &stats);
	fsyncs0 = stats.fsyncs;
	fsync_ns0 = stats.fsync_ns;
	for (uint32_t i = 0; i < appenders; i++) {
		slots[i] = (struct sync_slot){ &d, i };
		m.born_ms = cfx_clock_wall_ms();
		if (cfx_store_append(st, topic, i % 8, &m, 1, CFX_DURABILITY_SYNC, sync_done,
				     &slots[i]) == 0)
			inflight++;
	}
	while (inflight) {
		uint32_t n;

		pthread_mutex_lock(&d.mu);
		while (d.nready == 0)
			pthread_cond_wait(&d.cv, &d.mu);
		n = d.nready;
		memcpy(batch, d.ready, n * sizeof *batch);
		d.nready = 0;
		pthread_mutex_unlock(&d.mu);
		inflight -= n;
		total += n;
		if (d.failed || cfx_clock_mono_ns() >= deadline)
			continue; /* drain */
		for (uint32_t i = 0; i < n; i++) {
			m.born_ms = cfx_clock_wall_ms();
			if (cfx_store_append(st, topic, batch[i] % 8, &m, 1, CFX_DURABILITY_SYNC,
					     sync_done, &slots[batch[i]]) == 0)
				inflight++;
		}
	}
	secs = (double)(cfx_clock_mono_ns() - start) / 1e9;
	cfx_store_get_stats(st, &stats);
	add_result(name, (double)total, (double)total * sizeof body, secs,
		   base_rate > 0 ? (double)total / secs / base_rate : 1.0, "sync x1");
	results[nresults - 1].extra =
		stats.fsyncs > fsyncs0 ? (double)total / (double)(stats.fsyncs - fsyncs0) : 0;
	results[nresults - 1].extra2 =
		stats.fsyncs > fsyncs0 ? (double)(stats.fsync_ns - fsync_ns0) /
						 (double)(stats.fsyncs - fsyncs0) / 1000.0
				       : 0;
	cfx_store_close(st);
	free(slots);
	free(batch);
	free(d.ready);
	return (double)total / secs;
}

static void bench_read(struct cfx_store *st, double mem_bps)
{
	struct cfx_read_result res;
	uint64_t msgs = 0, bytes = 0;
	double t0, t;

	cfx_store_wait_dispatched(st, 600000);
	cfx_read_result_init(&res);
	t0 = now_s();
	for (uint32_t q = 0; q < 4; q++) {
		uint64_t off = 0;
		for (;;) {
			int rc = cfx_store_read(st, topic, q, off, 1000, 4u << 20, &res);
			if (rc || res.count == 0)
				break;
			for (uint32_t i = 0; i < res.count; i++)
				bytes += res.msgs[i].body.len;
			msgs += res.count;
			off = res.next_offset;
		}
	}
	t = now_s() - t0;
	cfx_read_result_free(&res);
	add_result("read 1KiB sequential", (double)msgs, (double)bytes, t,
		   (double)bytes / t / mem_bps, "memcpy");
}

/* ------------------------------------------------------------------------
 * Fill mode (for memory measurements of confluxd on a large store)
 * ------------------------------------------------------------------------ */

static int fill(const struct bench_opts *bo)
{
	struct cfx_store_opts o;
	struct cfx_store *st;
	struct cfx_msg msgs[100];
	char body[1024];
	uint64_t done = 0, total = (uint64_t)bo->fill / sizeof body;
	int rc;

	cfx_store_opts_default(&o);
	o.dir = bo->dir;
	o.segment_bytes = (uint64_t)bo->segment_bytes;
	o.retention_ms = 0;
	rc = cfx_store_open(&o, &st, NULL);
	if (rc) {
		fprintf(stderr, "conflux bench: cannot open %s: %s\n", bo->dir, cfx_strerror(rc));
		return 1;
	}
	memset(body, 'f', sizeof body);
	for (int i = 0; i < 100; i++)
		msgs[i] = (struct cfx_msg){ .body = { (uint8_t *)body, sizeof body },
					    .key_null = 1,
					    .born_ms = cfx_clock_wall_ms() };
	while (done < total) {
		rc = cfx_store_append(st, topic, (uint32_t)(done / 100) % 8, msgs, 100,
				      CFX_DURABILITY_ASYNC, noop_cb, NULL);
		if (rc) {
			fprintf(stderr, "append failed: %s\n", cfx_strerror(rc));
			break;
		}
		done += 100;
	}
	cfx_store_close(st);
	printf("filled %s with %" PRIu64 " messages (%.2f GiB)\n", bo->dir, done,
	       (double)done * sizeof body / (1 << 30));
	return rc ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * Command line and report
 * ------------------------------------------------------------------------ */

static void rss(long *vm_kb, long *anon_kb, long *file_kb)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	*vm_kb = *anon_kb = *file_kb = 0;
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		sscanf(line, "VmRSS: %ld", vm_kb);
		sscanf(line, "RssAnon: %ld", anon_kb);
		sscanf(line, "RssFile: %ld", file_kb);
	}
	fclose(f);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: conflux bench store [options]\n"
		"  --dir DIR            where to write (default ./bench-data; removed afterwards)\n"
		"  --bytes SIZE         data written by each async scenario (default 2GiB)\n"
		"  --dd-bytes SIZE      size of the sequential-write baseline (default 2GiB)\n"
		"  --segment-bytes SIZE commit-log segment size (default 1GiB)\n"
		"  --sync-time DUR      duration of each sync scenario (default 3s)\n"
		"  --quick              tiny sizes: checks that the benchmark runs\n"
		"  --fill SIZE          only fill the store in --dir with SIZE of 1 KiB messages\n"
		"  --keep               keep --dir afterwards\n"
		"  --json               print results as JSON\n");
}

static int parse(int argc, char **argv, struct bench_opts *bo)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = 0;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--quick")) {
			bo->bytes = 16 << 20;
			bo->dd_bytes = 16 << 20;
			bo->sync_ms = 200;
			bo->segment_bytes = 32 << 20;
			continue;
		} else if (!strcmp(a, "--keep")) {
			bo->keep = 1;
			continue;
		} else if (!strcmp(a, "--json")) {
			bo->json = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "conflux bench store: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--dir"))
			bo->dir = v;
		else if (!strcmp(a, "--bytes"))
			rc = cfx_parse_size(v, &bo->bytes);
		else if (!strcmp(a, "--dd-bytes"))
			rc = cfx_parse_size(v, &bo->dd_bytes);
		else if (!strcmp(a, "--segment-bytes"))
			rc = cfx_parse_size(v, &bo->segment_bytes);
		else if (!strcmp(a, "--sync-time"))
			rc = cfx_parse_duration_ms(v, &bo->sync_ms);
		else if (!strcmp(a, "--fill"))
			rc = cfx_parse_size(v, &bo->fill);
		else {
			fprintf(stderr, "conflux bench store: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		if (rc) {
			fprintf(stderr, "conflux bench store: bad value for %s: %s\n", a, v);
			return 2;
		}
	}
	return 0;
}

int cli_bench_store(int argc, char **argv)
{
	struct bench_opts bo = { .dir = "./bench-data",
				 .bytes = 2LL << 30,
				 .dd_bytes = 2LL << 30,
				 .segment_bytes = 1LL << 30,
				 .sync_ms = 3000 };
	struct cfx_store *kept = NULL;
	double dd_bps, mem_bps, sync1;
	long vm, anon, file;
	int rc = parse(argc, argv, &bo);

	if (rc)
		return rc;
	cfx_log_set_level(CFX_LOG_WARN);
	if (cfx_mkdir_p(&cfx_fileops_real, bo.dir)) {
		fprintf(stderr, "conflux bench store: cannot create %s\n", bo.dir);
		return 1;
	}
	if (bo.fill)
		return fill(&bo);

	/* The disk is shared and noisy: the baseline is the better of two runs. */
	dd_bps = bench_dd(bo.dir, bo.dd_bytes);
	dd_bps = CFX_MAX(dd_bps, bench_dd(bo.dir, bo.dd_bytes));
	mem_bps = bench_memcpy();
	if (!bo.json) {
		printf("conflux bench store: %s, crc32c %s\n", bo.dir, cfx_crc32c_impl());
		printf("baseline: sequential write %.2f GiB + fdatasync (dd bs=1M conv=fdatasync), "
		       "best of 2: %.2f GB/s; memcpy %.1f GB/s\n",
		       (double)bo.dd_bytes / (1 << 30), dd_bps / 1e9, mem_bps / 1e9);
		fflush(stdout);
	}

	bench_async(&bo, "async 1KiB x1", 1024, 1, dd_bps, &kept);
	bench_read(kept, mem_bps);
	cfx_store_close(kept);
	bench_async(&bo, "async 100B x1", 100, 1, dd_bps, NULL);
	bench_async(&bo, "async 100B batch 100", 100, 100, dd_bps, NULL);
	bench_async(&bo, "async 1KiB batch 100", 1024, 100, dd_bps, NULL);
	sync1 = bench_sync(&bo, 1, 0, "sync 1KiB, 1 appender");
	results[nresults - 1].vs = 1.0;
	bench_sync(&bo, 16, sync1, "sync 1KiB, 16 appenders");
	bench_sync(&bo, 64, sync1, "sync 1KiB, 64 appenders");
	rss(&vm, &anon, &file);

	if (bo.json) {
		printf("{\"dd_bytes_per_s\": %.0f, \"memcpy_bytes_per_s\": %.0f, \"results\": [",
		       dd_bps, mem_bps);
		for (int i = 0; i < nresults; i++)
			printf("%s{\"name\": \"%s\", \"msgs_per_s\": %.0f, \"mb_per_s\": %.1f, "
			       "\"ratio\": %.3f, \"ratio_to\": \"%s\"}",
			       i ? ", " : "", results[i].name, results[i].msgs_per_s,
			       results[i].mb_per_s, results[i].vs, results[i].vs_what);
		printf("], \"rss_kb\": %ld, \"rss_anon_kb\": %ld}\n", vm, anon);
	} else {
		printf("\n%-26s %14s %10s %10s   %s\n", "scenario", "msgs/s", "MB/s", "ratio",
		       "notes");
		for (int i = 0; i < nresults; i++) {
			const struct result *r = &results[i];
			printf("%-26s %14.0f %10.1f %9.2fx %-8s", r->name, r->msgs_per_s, r->mb_per_s,
			       r->vs, r->vs_what);
			if (!strncmp(r->name, "async", 5))
				printf(" (acked %.0f msgs/s before the final fdatasync)", r->extra);
			else if (!strncmp(r->name, "sync", 4))
				printf(" (%.1f appends per fdatasync of %.0f us)", r->extra, r->extra2);
			printf("\n");
		}
		printf("\nprocess memory after the runs: RSS %ld KiB (heap and other anonymous "
		       "%ld KiB, mapped files %ld KiB)\n",
		       vm, anon, file);
	}
	if (!bo.keep)
		store__rmtree(bo.dir);
	return 0;
}
