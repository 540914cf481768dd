/*
 * writer.c - the process the crash test kills: sync appends, recorded in
 * the ack log once acknowledged.
 *
 * The writer opens the store (running recovery if the last process died),
 * then a few appender threads append batches of 1..20 deterministic
 * messages (content.c) in CFX_DURABILITY_SYNC mode until SIGTERM or
 * SIGKILL. Each (topic, queue) belongs to exactly one thread, which is how
 * the thread knows the offsets a batch will get and can generate its
 * content up front. Threads mix cfx_store_append_wait with pipelined
 * cfx_store_append calls (several batches in flight, completed by the
 * store's flusher), so one fdatasync acknowledges many appends: group
 * commit is exercised the way a busy broker exercises it.
 *
 * Only after a completion reports err == 0 does the writer add the batch's
 * record to acks.log. Anything the writer finds wrong by itself (an
 * unexpected offset, a failed append) ends it with CRASH_WRITER_EXIT_FAIL,
 * which the driver reports as a failure.
 *
 * SIGTERM asks for a clean shutdown: stop appending, cfx_store_close (which
 * completes the appends still in flight), exit 0. The driver uses it for
 * the clean-restart and kill-during-close variants. Progress is reported on
 * the status pipe (CRASH_ST_* in crash.h) so the driver can time its kills.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "crash.h"

#define WRITER_THREADS_MAX  (CRASH_TOPICS * CRASH_QUEUES)
#define WRITER_INFLIGHT_MAX 8 /* pipelined appends per thread */

/* The next offset of one queue; touched only by the thread that owns it. */
struct wqueue {
	unsigned topic, queue;
	uint64_t next_offset;
};

struct appender {
	pthread_t thr;
	struct wqueue *qs[WRITER_THREADS_MAX];
	unsigned nq;
	struct crash_rng rng;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned inflight;	    /* callback appends not yet completed, under mu */
	struct crash_msg_buf *bufs; /* CRASH_BATCH_MSGS_MAX of them */
	struct cfx_msg msgs[CRASH_BATCH_MSGS_MAX];
};

/* One pipelined append, owned by its completion callback. */
struct pending {
	struct appender *ap;
	struct crash_ack ack;
};

static struct {
	struct cfx_store *st;
	int ack_fd;
	int status_fd;
	uint32_t run;
	atomic_int stop;
} W = { .ack_fd = -1, .status_fd = -1 };

CFX_PRINTF(1, 2) CFX_NORETURN static void fatal(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof line, "crash_test writer (run %" PRIu32 ", pid %d): ", W.run,
		     (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
	_exit(CRASH_WRITER_EXIT_FAIL);
}

static void status(char c)
{
	if (W.status_fd >= 0 && write(W.status_fd, &c, 1) != 1)
		fatal("cannot write to the status pipe: %s", strerror(errno));
}

/* Appends one record to acks.log: called only after the acknowledgement. */
static void ack_write(const struct crash_ack *a)
{
	uint8_t rec[CRASH_ACK_BYTES];
	ssize_t n;

	crash_ack_encode(rec, a);
	n = write(W.ack_fd, rec, sizeof rec);
	if (n != (ssize_t)sizeof rec)
		fatal("write to the ack log returned %zd: %s", n,
		      n < 0 ? strerror(errno) : "short");
}

static void check_result(const struct crash_ack *a, const struct cfx_append_result *res)
{
	if (res->err)
		fatal("sync append to %s/%u at offset %" PRIu64 " completed with %s",
		      crash_topic_name(a->topic), a->queue, a->first_offset,
		      cfx_strerror(res->err));
	if (res->first_offset != a->first_offset || res->count != a->count)
		fatal("append to %s/%u got offsets %" PRIu64 "+%" PRIu32 ", expected %" PRIu64
		      "+%" PRIu32 " (this writer is the queue's only appender)",
		      crash_topic_name(a->topic), a->queue, res->first_offset, res->count,
		      a->first_offset, a->count);
}

/* Completion of a pipelined append. @thread the store's flusher */
static void append_done(void *arg, const struct cfx_append_result *res)
{
	struct pending *p = arg;
	struct appender *ap = p->ap;

	check_result(&p->ack, res);
	ack_write(&p->ack);
	cfx_free(p);
	pthread_mutex_lock(&ap->mu);
	ap->inflight--;
	pthread_cond_signal(&ap->cv);
	pthread_mutex_unlock(&ap->mu);
}

static void *appender_run(void *arg)
{
	struct appender *ap = arg;

	while (!atomic_load(&W.stop)) {
		struct wqueue *wq = ap->qs[crash_rng_next(&ap->rng) % ap->nq];
		uint32_t count = (uint32_t)crash_rng_range(&ap->rng, 1, CRASH_BATCH_MSGS_MAX);
		struct cfx_view topic = crash_topic(wq->topic);
		struct crash_ack ack = { .topic = (uint8_t)wq->topic,
					 .queue = (uint16_t)wq->queue,
					 .first_offset = wq->next_offset,
					 .count = count,
					 .run = W.run };
		int rc;

		for (uint32_t i = 0; i < count; i++) {
			crash_gen_msg(wq->topic, wq->queue, wq->next_offset + i, &ap->bufs[i],
				      &ap->msgs[i]);
			ack.digest = crash_digest_msg(ack.digest, &ap->msgs[i]);
		}
		if (crash_rng_next(&ap->rng) % 3 == 0) {
			struct cfx_append_result res;

			rc = cfx_store_append_wait(W.st, topic, wq->queue, ap->msgs, count,
						   CFX_DURABILITY_SYNC, &res);
			if (rc)
				fatal("cfx_store_append_wait to %s/%u: %s",
				      crash_topic_name(wq->topic), wq->queue, cfx_strerror(rc));
			check_result(&ack, &res);
			ack_write(&ack);
		} else {
			struct pending *p = cfx_malloc(sizeof *p);

			p->ap = ap;
			p->ack = ack;
			pthread_mutex_lock(&ap->mu);
			while (ap->inflight >= WRITER_INFLIGHT_MAX)
				pthread_cond_wait(&ap->cv, &ap->mu);
			ap->inflight++;
			pthread_mutex_unlock(&ap->mu);
			/* From here `p` belongs to the completion (which may run at once). */
			rc = cfx_store_append(W.st, topic, wq->queue, ap->msgs, count,
					      CFX_DURABILITY_SYNC, append_done, p);
			if (rc)
				fatal("cfx_store_append to %s/%u: %s", crash_topic_name(wq->topic),
				      wq->queue, cfx_strerror(rc));
		}
		wq->next_offset += count;
	}
	return NULL;
}

void crash_writer_main(const struct crash_writer_args *a)
{
	static const int64_t ckpt_choices_ms[] = { 25, 100, 400, 5000 };
	struct wqueue queues[CRASH_TOPICS * CRASH_QUEUES];
	struct appender *aps;
	struct cfx_store_recovery rec;
	struct cfx_store_opts o;
	struct crash_rng rng = { a->seed };
	char store_dir[PATH_MAX], ack_path[PATH_MAX];
	unsigned nthreads = CFX_MAX(1u, CFX_MIN(a->threads, WRITER_THREADS_MAX));
	sigset_t set;
	int rc, sig;

	/* SIGTERM is taken by sigwait below, in no thread of the store. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	W.run = a->run;
	W.status_fd = a->status_fd;

	if (snprintf(store_dir, sizeof store_dir, "%s/%s", a->dir, CRASH_STORE_SUBDIR) >=
		    (int)sizeof store_dir ||
	    snprintf(ack_path, sizeof ack_path, "%s/%s", a->dir, CRASH_ACK_FILE) >=
		    (int)sizeof ack_path)
		fatal("directory name too long");
	W.ack_fd = open(ack_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (W.ack_fd < 0)
		fatal("cannot open %s: %s", ack_path, strerror(errno));

	/* Checkpoints from very frequent to rarer than a whole run. */
	crash_store_opts(&o, store_dir);
	o.checkpoint_interval_ms = ckpt_choices_ms[crash_rng_next(&rng) % 4];
	if (crash_rng_next(&rng) % 4 == 0)
		o.populate_ahead_bytes = 0;

	status(CRASH_ST_OPENING);
	rc = cfx_store_open(&o, &W.st, &rec);
	if (rc)
		fatal("cfx_store_open(%s): %s", store_dir, cfx_strerror(rc));

	for (unsigned j = 0; j < CFX_ARRAY_LEN(queues); j++) {
		uint64_t start, end;
		queues[j].topic = j / CRASH_QUEUES;
		queues[j].queue = j % CRASH_QUEUES;
		rc = cfx_store_queue_bounds(W.st, crash_topic(queues[j].topic), queues[j].queue,
					    &start, &end);
		if (rc)
			fatal("cfx_store_queue_bounds: %s", cfx_strerror(rc));
		queues[j].next_offset = end;
	}
	aps = cfx_calloc(nthreads, sizeof *aps);
	for (unsigned k = 0; k < nthreads; k++) {
		aps[k].rng.s = crash_mix64(a->seed ^ (0xa99e0de0ULL + k));
		aps[k].bufs = cfx_malloc(CRASH_BATCH_MSGS_MAX * sizeof *aps[k].bufs);
		pthread_mutex_init(&aps[k].mu, NULL);
		pthread_cond_init(&aps[k].cv, NULL);
	}
	for (unsigned j = 0; j < CFX_ARRAY_LEN(queues); j++) {
		struct appender *ap = &aps[j % nthreads];
		ap->qs[ap->nq++] = &queues[j];
	}

	status(CRASH_ST_READY);
	for (unsigned k = 0; k < nthreads; k++)
		if (pthread_create(&aps[k].thr, NULL, appender_run, &aps[k]) != 0)
			fatal("pthread_create failed");

	do
		rc = sigwait(&set, &sig);
	while (rc == EINTR);
	atomic_store(&W.stop, 1);
	for (unsigned k = 0; k < nthreads; k++)
		pthread_join(aps[k].thr, NULL);

	/* Appends may still be in flight: close must complete them first. */
	status(CRASH_ST_CLOSING);
	rc = cfx_store_close(W.st);
	if (rc)
		fatal("cfx_store_close: %s", cfx_strerror(rc));
	for (unsigned k = 0; k < nthreads; k++) {
		if (aps[k].inflight)
			fatal("%u appends still pending after cfx_store_close returned",
			      aps[k].inflight);
		pthread_mutex_destroy(&aps[k].mu);
		pthread_cond_destroy(&aps[k].cv);
		cfx_free(aps[k].bufs);
	}
	cfx_free(aps);
	status(CRASH_ST_CLOSED);
	close(W.ack_fd);
	exit(0);
}
