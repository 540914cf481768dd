/*
 * broker_worker.c - the process the broker crash test kills: producers and
 * consumers of POP, delayed and transactional messages, every call
 * recorded in the event log.
 *
 * The worker opens the broker in DIR/data (recovering it if the last
 * process died) with POP-journal, flush and checkpoint settings drawn from
 * its seed (small journals force snapshots), then runs seven threads until
 * SIGTERM (clean close) or SIGKILL:
 *
 *   pop producer     batches of 1-8 NORMAL messages to crash-pop, async;
 *                    SENDING before the send, SENT from its callback
 *   pop consumers    two: pop (1-16 messages, invisible 1-3 s), RECV each;
 *                    ack 70 % (ACKING, then ACKED once cfx_broker_ack
 *                    returned 0), nack 10 % (invisible 0), leave the rest
 *                    in flight: they come back
 *   delay producer   batches of 1-4 DELAY messages due 100 ms-3 s later
 *   delay consumer   RECV, ack 90 %, leave the rest
 *   txn producer     TRANSACTION messages; each is then committed (50 %:
 *                    COMMITTING, COMMITTED in the end_transaction
 *                    callback), rolled back (25 %: ROLLINGBACK,
 *                    ROLLEDBACK once it returned 0 and its callback said
 *                    0) after 0-300 ms, or left open (25 %)
 *   txn consumer     RECV, ack 90 %, leave the rest
 *
 * No check-back reaches it (the options put the first one a day away), so
 * only this process and the verifier resolve transactions.
 *
 * An intent is written before each call and an outcome after it, each with
 * one write(2) to a file opened with O_APPEND: what a record says happened
 * did happen, and a call whose outcome record is missing may or may not
 * have taken effect. Anything the worker finds wrong by itself (a failed
 * send, an unexpected error, a message that is not one of the test's) ends
 * it with BC_WORKER_EXIT_FAIL, which the driver reports as a failure.
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
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/fileops.h"
#include "base/log.h"
#include "broker_crash.h"

#define POP_BATCH_MAX	   8u
#define DELAY_BATCH_MAX	   4u
#define TXN_BATCH_MAX	   2u
#define SEND_BATCH_MAX	   8u
#define TXN_PENDING_MAX	   256u /* transactions waiting for their resolution */
#define TXN_RESOLVE_MS_MAX 300
#define CB_WAIT_MS	   10000 /* a callback that takes longer is a hang */

static struct {
	struct cfx_broker *br;
	int log_fd;
	int status_fd;
	uint32_t run;
	atomic_int stop;
	atomic_uint seq[BC_STREAMS + 1];
} W = {.log_fd = -1, .status_fd = -1};

CFX_PRINTF(1, 2) CFX_NORETURN static void fatal(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	n = snprintf(line, sizeof line, "broker_crash worker (run %" PRIu32 ", pid %d): ", W.run,
		     (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
	_exit(BC_WORKER_EXIT_FAIL);
}

static void status(char c)
{
	if (write(W.status_fd, &c, 1) != 1)
		fatal("cannot write to the status pipe: %s", strerror(errno));
}

/* Appends one record: one write(2), so a kill leaves it whole or absent. */
static void wlog(struct bc_rec *r)
{
	uint8_t buf[BC_REC_BYTES];
	ssize_t n;

	r->run = W.run;
	bcrash_rec_encode(buf, r);
	n = write(W.log_fd, buf, sizeof buf);
	if (n != (ssize_t)sizeof buf)
		fatal("write to the event log returned %zd: %s", n,
		      n < 0 ? strerror(errno) : "short");
}

static void wlog_event(int type, int stream, uint64_t id, const char *txn)
{
	struct bc_rec r = {.type = (uint8_t)type,
			   .stream = (uint8_t)stream,
			   .id = id,
			   .t_ms = cfx_clock_wall_ms()};

	if (txn)
		memcpy(r.txn, txn, BC_TXN_ID_LEN);
	wlog(&r);
}

static uint64_t next_id(int stream)
{
	return bcrash_id_make(W.run, atomic_fetch_add(&W.seq[stream], 1) + 1);
}

static void msg_make(struct cfx_send_msg *sm, uint8_t body[BC_BODY_BYTES], char *msg_id, int stream,
		     uint64_t id, int64_t due_ms)
{
	static const int types[] = {0, CFX_MSG_NORMAL, CFX_MSG_DELAY, CFX_MSG_TRANSACTION};
	struct bc_body b = {.stream = stream, .id = id, .due_ms = due_ms};

	bcrash_body_encode(body, &b);
	bcrash_msg_id(msg_id, stream, id);
	memset(sm, 0, sizeof *sm);
	sm->m.key_null = 1;
	sm->m.body = (struct cfx_view){body, BC_BODY_BYTES};
	sm->m.msg_id = CFX_VIEW_STR(msg_id);
	sm->m.born_ms = cfx_clock_wall_ms();
	sm->type = types[stream];
	sm->deliver_at_ms = due_ms;
}

/* A callback's completion, for the threads that wait for one. */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int err;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done = 0;
	w->err = 0;
}

static void waiter_signal(struct waiter *w, int err)
{
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(struct waiter *w, const char *what)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += CB_WAIT_MS / 1000;
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			fatal("the callback of %s did not come within %d s", what,
			      CB_WAIT_MS / 1000);
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

/* ------------------------------------------------------------------------
 * Killing the worker just before a chosen journal write
 *
 * A timer that fired or a transaction that was committed is marked done in
 * the broker's POP journal only after its copy reached the real topic; a
 * crash in between is what the broker's restart must recognise (by message
 * id) to deliver it exactly once. That window is a few microseconds wide,
 * so random kills rarely land in it. The kill-at-*-done variants aim at
 * it: the broker's file operations go through this table, which raises
 * SIGKILL in the process right before the write(2) of the POP journal that
 * carries the n-th done mark of a fired timer (the broker also writes such
 * marks while it recovers, so some of these kills interrupt a recovery),
 * or of a commit.
 *
 * It peeks at pop.c's record framing, [len u32][crc u32][payload], the
 * payload being [type u8 (REC_SYSDONE = 9)][seq u64][kind u32 (0 timers,
 * 1 half messages)][offset u64]. If that format changes, the kills land
 * elsewhere, never on a wrong verdict.
 * ------------------------------------------------------------------------ */

#define JOURNAL_SUFFIX	  "/pop/journal"
#define JREC_HEADER_BYTES 8u
#define JREC_SYSDONE	  9u
#define JREC_KIND_AT	  9u /* in the payload: after the type and the sequence */

static struct cfx_file_ops kill_fops;
static atomic_int journal_fd = -1;
static atomic_long marks_left; /* done marks let through before the kill */
static uint32_t marks_kind;    /* of timers (0) or of transactions (1) */
/* This thread is inside cfx_broker_end_transaction(commit): a mark it
 * writes is a commit's (the async append completes in the caller's thread,
 * so the whole commit runs there; if it did not, no mark would count and
 * the worker would be killed as usual). */
static _Thread_local int in_commit;

static int kf_open(const char *path, int flags, mode_t mode)
{
	size_t n = strlen(path), k = strlen(JOURNAL_SUFFIX);
	int fd = cfx_fileops_real.open(path, flags, mode);

	if (fd >= 0 && n >= k && strcmp(path + n - k, JOURNAL_SUFFIX) == 0)
		atomic_store(&journal_fd, fd);
	return fd;
}

/* Done marks of the kind aimed at, among the journal records in `p`. */
static long count_marks(const uint8_t *p, size_t n)
{
	size_t pos = 0;
	long c = 0;

	while (pos + JREC_HEADER_BYTES < n) {
		const uint8_t *payload = p + pos + JREC_HEADER_BYTES;
		uint32_t len = cfx_load_le32(p + pos);

		if (len == 0 || len > n - pos - JREC_HEADER_BYTES)
			break;
		c += len >= JREC_KIND_AT + 4 && payload[0] == JREC_SYSDONE &&
		     cfx_load_le32(payload + JREC_KIND_AT) == marks_kind;
		pos += JREC_HEADER_BYTES + len;
	}
	return c;
}

static ssize_t kf_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (fd == atomic_load(&journal_fd) && (marks_kind == 0 || in_commit)) {
		long c = count_marks(buf, n);
		if (c && atomic_fetch_sub(&marks_left, c) <= c) {
			kill(getpid(), SIGKILL);
			for (;;)
				pause();
		}
	}
	return cfx_fileops_real.pwrite(fd, buf, n, off);
}

/*
 * The kill-in-callback variant: the broker has done the work (a half
 * message or a timer stored, a commit applied and marked done), the worker
 * dies before it records that: an orphan transaction only a check-back
 * finds, a timer nobody knows about, a commit whose callback was lost.
 */
static atomic_long callbacks_left; /* 0: off */

static void maybe_die_in_callback(void)
{
	if (atomic_load(&callbacks_left) > 0 && atomic_fetch_sub(&callbacks_left, 1) == 1) {
		kill(getpid(), SIGKILL);
		for (;;)
			pause();
	}
}

/* ------------------------------------------------------------------------
 * Producers
 * ------------------------------------------------------------------------ */

/* One send; owned by its callback unless a thread waits for it. */
struct send_ctx {
	int stream;
	uint32_t n;
	uint64_t ids[SEND_BATCH_MAX];
	int64_t due_ms[SEND_BATCH_MAX];
	char txn[SEND_BATCH_MAX][BC_TXN_ID_LEN]; /* TRANSACTION: the transaction ids */
	struct waiter *w;			 /* NULL: the callback frees the context */
};

/* @thread any (the caller's, or the store's flusher) */
static void sent(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	struct send_ctx *c = arg;

	if (count != c->n)
		fatal("a send of %u messages completed with %u results", c->n, count);
	if (c->stream != BC_POP)
		maybe_die_in_callback();
	for (uint32_t i = 0; i < count; i++) {
		struct bc_rec r = {.type = BC_SENT,
				   .stream = (uint8_t)c->stream,
				   .id = c->ids[i],
				   .queue = (uint16_t)res[i].queue,
				   .offset = res[i].offset,
				   .t_ms = c->stream == BC_DELAY ? c->due_ms[i]
								 : cfx_clock_wall_ms()};

		if (res[i].err)
			fatal("the send of %s %016" PRIx64 " completed with %s",
			      bcrash_stream_name(c->stream), c->ids[i], cfx_strerror(res[i].err));
		if (c->stream == BC_TXN) {
			if (strnlen(res[i].handle, CFX_HANDLE_MAX) != BC_TXN_ID_LEN)
				fatal("transaction id \"%s\" of %016" PRIx64
				      " is not %u characters",
				      res[i].handle, c->ids[i], BC_TXN_ID_LEN);
			memcpy(r.txn, res[i].handle, BC_TXN_ID_LEN);
			memcpy(c->txn[i], res[i].handle, BC_TXN_ID_LEN);
		}
		wlog(&r);
	}
	if (c->w)
		waiter_signal(c->w, 0);
	else
		cfx_free(c);
}

/*
 * Sends `n` new messages of `stream` (SENDING for each first). A delayed
 * message is due `due_ms[i]`. With `w`, the caller waits for the callback
 * and `c` is its own; else `c` is allocated here and freed by the callback.
 */
static void send_batch(int stream, uint32_t n, const int64_t *due_ms, struct send_ctx *c,
		       struct waiter *w)
{
	struct cfx_send_msg msgs[SEND_BATCH_MAX];
	uint8_t bodies[SEND_BATCH_MAX][BC_BODY_BYTES];
	char msg_ids[SEND_BATCH_MAX][BC_MSG_ID_MAX];
	int rc;

	CFX_ASSERT(n >= 1 && n <= SEND_BATCH_MAX);
	if (!c)
		c = cfx_calloc(1, sizeof *c);
	c->stream = stream;
	c->n = n;
	c->w = w;
	for (uint32_t i = 0; i < n; i++) {
		struct bc_rec r = {.type = BC_SENDING, .stream = (uint8_t)stream};

		c->ids[i] = next_id(stream);
		c->due_ms[i] = due_ms ? due_ms[i] : 0;
		msg_make(&msgs[i], bodies[i], msg_ids[i], stream, c->ids[i], c->due_ms[i]);
		r.id = c->ids[i];
		r.t_ms = stream == BC_DELAY ? c->due_ms[i] : cfx_clock_wall_ms();
		wlog(&r);
	}
	/* From here `c` belongs to the callback, which may run at once. */
	rc = cfx_broker_send(W.br, CFX_VIEW_STR(bcrash_stream_topic(stream)), msgs, n,
			     CFX_DURABILITY_ASYNC, sent, c);
	if (rc)
		fatal("cfx_broker_send to %s: %s", bcrash_stream_topic(stream), cfx_strerror(rc));
}

struct thread {
	pthread_t thr;
	struct bc_rng rng;
	int stream;
	unsigned ack_pct, nack_pct; /* consumers */
};

static void *pop_producer(void *arg)
{
	struct thread *t = arg;

	while (!atomic_load(&W.stop)) {
		send_batch(BC_POP, (uint32_t)bcrash_rng_range(&t->rng, 1, POP_BATCH_MAX), NULL,
			   NULL, NULL);
		bcrash_sleep_ms((int64_t)bcrash_rng_range(&t->rng, 1, 4));
	}
	return NULL;
}

static void *delay_producer(void *arg)
{
	struct thread *t = arg;

	while (!atomic_load(&W.stop)) {
		uint32_t n = (uint32_t)bcrash_rng_range(&t->rng, 1, DELAY_BATCH_MAX);
		int64_t due[DELAY_BATCH_MAX], now = cfx_clock_wall_ms();

		for (uint32_t i = 0; i < n; i++)
			due[i] = now + (int64_t)bcrash_rng_range(&t->rng, BC_DELAY_MS_MIN,
								 BC_DELAY_MS_MAX);
		send_batch(BC_DELAY, n, due, NULL, NULL);
		bcrash_sleep_ms((int64_t)bcrash_rng_range(&t->rng, 2, 8));
	}
	return NULL;
}

/* A transaction waiting for its resolution. */
struct pending_txn {
	uint64_t id;
	char txn[BC_TXN_ID_LEN + 1];
	int64_t sent_ms; /* when its send's callback came */
	int64_t at_ms;	 /* when to resolve it */
	int commit;
};

struct end_ctx {
	uint64_t id;
	char txn[BC_TXN_ID_LEN];
};

/* The commit's callback. @thread any */
static void committed(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	struct end_ctx *e = arg;

	if (count != 1 || res[0].err)
		fatal("the commit of txn %016" PRIx64 " (%.*s) completed with %s", e->id,
		      (int)BC_TXN_ID_LEN, e->txn, count ? cfx_strerror(res[0].err) : "no result");
	maybe_die_in_callback();
	wlog_event(BC_COMMITTED, BC_TXN, e->id, e->txn);
	cfx_free(e);
}

/* The rollback's callback. @thread any */
static void rolled_back(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	waiter_signal(arg, count == 1 ? res[0].err : CFX_EINVAL);
}

static void resolve(const struct pending_txn *p)
{
	struct cfx_view topic = CFX_VIEW_STR(BC_TXN_TOPIC);
	int rc;

	if (p->commit) {
		struct end_ctx *e = cfx_malloc(sizeof *e);

		e->id = p->id;
		memcpy(e->txn, p->txn, BC_TXN_ID_LEN);
		wlog_event(BC_COMMITTING, BC_TXN, p->id, p->txn);
		in_commit = 1;
		rc = cfx_broker_end_transaction(W.br, topic, p->txn, 1, committed, e);
		in_commit = 0;
		if (rc) {
			cfx_free(e);
			fatal("cfx_broker_end_transaction(%s, commit) of the open txn %016" PRIx64
			      ", %" PRId64 " ms after its send completed: %s (%s)",
			      p->txn, p->id, cfx_clock_wall_ms() - p->sent_ms, cfx_err_name(rc),
			      cfx_strerror(rc));
		}
	} else {
		struct waiter w;

		waiter_init(&w);
		wlog_event(BC_ROLLINGBACK, BC_TXN, p->id, p->txn);
		rc = cfx_broker_end_transaction(W.br, topic, p->txn, 0, rolled_back, &w);
		if (rc)
			fatal("cfx_broker_end_transaction(%s, rollback) of the open txn %016" PRIx64
			      ", %" PRId64 " ms after its send completed: %s (%s)",
			      p->txn, p->id, cfx_clock_wall_ms() - p->sent_ms, cfx_err_name(rc),
			      cfx_strerror(rc));
		waiter_wait(&w, "a rollback");
		if (w.err)
			fatal("the rollback of txn %016" PRIx64 " (%s) completed with %s", p->id,
			      p->txn, cfx_strerror(w.err));
		wlog_event(BC_ROLLEDBACK, BC_TXN, p->id, p->txn);
	}
}

static void *txn_producer(void *arg)
{
	struct thread *t = arg;
	struct pending_txn *pend = cfx_calloc(TXN_PENDING_MAX, sizeof *pend);
	uint32_t npend = 0;

	while (!atomic_load(&W.stop)) {
		struct send_ctx c = {0};
		struct waiter w;
		uint32_t n = (uint32_t)bcrash_rng_range(&t->rng, 1, TXN_BATCH_MAX);
		int64_t now;

		waiter_init(&w);
		send_batch(BC_TXN, n, NULL, &c, &w);
		waiter_wait(&w, "a transactional send");
		now = cfx_clock_wall_ms();
		for (uint32_t i = 0; i < n; i++) {
			unsigned roll = (unsigned)(bcrash_rng_next(&t->rng) % 100);
			struct pending_txn p = {
				.id = c.ids[i], .commit = roll < 50, .sent_ms = now};

			if (roll >= 75)
				continue; /* left open: the verifier commits it */
			memcpy(p.txn, c.txn[i], BC_TXN_ID_LEN);
			p.at_ms = now + (int64_t)bcrash_rng_range(&t->rng, 0, TXN_RESOLVE_MS_MAX);
			if (npend == TXN_PENDING_MAX) {
				resolve(&pend[0]);
				pend[0] = pend[--npend];
			}
			pend[npend++] = p;
		}
		now = cfx_clock_wall_ms();
		for (uint32_t i = 0; i < npend;) {
			if (pend[i].at_ms > now) {
				i++;
				continue;
			}
			resolve(&pend[i]);
			pend[i] = pend[--npend];
		}
		bcrash_sleep_ms((int64_t)bcrash_rng_range(&t->rng, 2, 8));
	}
	cfx_free(pend);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Consumers
 * ------------------------------------------------------------------------ */

static void *consumer(void *arg)
{
	struct thread *t = arg;
	const char *topic = bcrash_stream_topic(t->stream), *group = bcrash_stream_group(t->stream);
	struct cfx_pop_req req = {.group = CFX_VIEW_STR(group), .topic = CFX_VIEW_STR(topic)};
	struct cfx_pop_result res;

	cfx_pop_result_init(&res);
	while (!atomic_load(&W.stop)) {
		int64_t now;
		int rc;

		req.max_msgs = (uint32_t)bcrash_rng_range(&t->rng, 1, 16);
		req.invisible_ms = (int64_t)bcrash_rng_range(&t->rng, BC_INVISIBLE_MS_MIN,
							     BC_INVISIBLE_MS_MAX);
		rc = cfx_broker_pop(W.br, &req, &res);
		if (rc)
			fatal("cfx_broker_pop(%s, %s): %s", group, topic, cfx_strerror(rc));
		if (res.count == 0) {
			bcrash_sleep_ms((int64_t)bcrash_rng_range(&t->rng, 1, 5));
			continue;
		}
		now = cfx_clock_wall_ms();
		for (uint32_t i = 0; i < res.count; i++) {
			const struct cfx_popped *p = &res.msgs[i];
			unsigned roll = (unsigned)(bcrash_rng_next(&t->rng) % 100);
			struct bc_body b;
			struct bc_rec r;

			if (bcrash_body_decode(&p->v, &b) || b.stream != t->stream)
				fatal("a pop of %s returned a message that is not one of this "
				      "test's "
				      "(queue %u offset %" PRIu64 ")",
				      topic, p->queue, p->v.offset);
			r = (struct bc_rec){.type = BC_RECV,
					    .stream = (uint8_t)t->stream,
					    .queue = (uint16_t)p->queue,
					    .attempt = (int32_t)p->attempt,
					    .id = b.id,
					    .t_ms = now,
					    .offset = p->v.offset,
					    .aux = p->v.store_ms};
			wlog(&r);
			if (roll < t->ack_pct) {
				wlog_event(BC_ACKING, t->stream, b.id, NULL);
				rc = cfx_broker_ack(W.br, req.group, req.topic, p->handle);
				if (rc == 0) {
					wlog_event(BC_ACKED, t->stream, b.id, NULL);
				} else if (rc == CFX_EINVAL) {
					/* Too late (the handle expired): it comes back. */
					r = (struct bc_rec){.type = BC_ACKFAIL,
							    .stream = (uint8_t)t->stream,
							    .id = b.id,
							    .attempt = -rc,
							    .t_ms = cfx_clock_wall_ms()};
					wlog(&r);
				} else {
					fatal("cfx_broker_ack(%s): %s", topic, cfx_strerror(rc));
				}
			} else if (roll < t->ack_pct + t->nack_pct) {
				char nh[CFX_HANDLE_MAX];
				rc = cfx_broker_change_invisible(W.br, req.group, req.topic,
								 p->handle, 0, nh);
				if (rc == 0)
					wlog_event(BC_NACKED, t->stream, b.id, NULL);
				else if (rc != CFX_EINVAL)
					fatal("cfx_broker_change_invisible(%s): %s", topic,
					      cfx_strerror(rc));
			}
		}
	}
	cfx_pop_result_free(&res);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------ */

void bcrash_worker_main(const struct bcrash_worker_args *a)
{
	static const uint64_t journal_choices[] = {16u << 10, 256u << 10, 64u << 20};
	static const int64_t flush_choices_ms[] = {10, 100, 1000};
	static const int64_t ckpt_choices_ms[] = {25, 100, 400, 5000};
	struct thread threads[] = {
		{.stream = BC_POP},				   /* producer */
		{.stream = BC_POP, .ack_pct = 70, .nack_pct = 10}, /* consumer */
		{.stream = BC_POP, .ack_pct = 70, .nack_pct = 10}, /* consumer */
		{.stream = BC_DELAY},				   /* producer */
		{.stream = BC_DELAY, .ack_pct = 90},		   /* consumer */
		{.stream = BC_TXN},				   /* producer */
		{.stream = BC_TXN, .ack_pct = 90},		   /* consumer */
	};
	void *(*const fns[])(void *) = {pop_producer, consumer,	    consumer, delay_producer,
					consumer,     txn_producer, consumer};
	struct cfx_broker_opts o;
	struct bc_rng rng = {a->seed};
	char data_dir[PATH_MAX], log_path[PATH_MAX];
	sigset_t set;
	int rc, sig;

	/* SIGTERM is taken by sigwait below; every thread, the broker's
	 * included, inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	W.run = a->run;
	W.status_fd = a->status_fd;

	if (snprintf(data_dir, sizeof data_dir, "%s/%s", a->dir, BC_DATA_SUBDIR) >=
		    (int)sizeof data_dir ||
	    snprintf(log_path, sizeof log_path, "%s/%s", a->dir, BC_LOG_FILE) >=
		    (int)sizeof log_path)
		fatal("directory name too long");
	W.log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (W.log_fd < 0)
		fatal("cannot open %s: %s", log_path, strerror(errno));

	bcrash_broker_opts(&o, data_dir);
	o.pop_journal_bytes_max = journal_choices[bcrash_rng_next(&rng) % 3];
	o.pop_flush_interval_ms = flush_choices_ms[bcrash_rng_next(&rng) % 3];
	o.store.checkpoint_interval_ms = ckpt_choices_ms[bcrash_rng_next(&rng) % 4];
	atomic_store(&callbacks_left, (long)a->kill_in_callback);
	if (a->kill_at_done) {
		kill_fops = cfx_fileops_real;
		kill_fops.open = kf_open;
		kill_fops.pwrite = kf_pwrite;
		marks_kind = a->kill_at_done_txn ? 1 : 0;
		atomic_store(&marks_left, (long)a->kill_at_done);
		o.store.fops = &kill_fops;
	}

	status(BC_ST_OPENING);
	rc = cfx_broker_open(&o, &W.br, NULL);
	if (rc)
		fatal("cfx_broker_open(%s): %s", data_dir, cfx_strerror(rc));
	status(BC_ST_READY);
	for (unsigned k = 0; k < CFX_ARRAY_LEN(threads); k++) {
		threads[k].rng.s = bcrash_mix64(a->seed ^ (0xb40c3e5ULL + k));
		if (pthread_create(&threads[k].thr, NULL, fns[k], &threads[k]) != 0)
			fatal("pthread_create failed");
	}

	do
		rc = sigwait(&set, &sig);
	while (rc == EINTR);
	atomic_store(&W.stop, 1);
	for (unsigned k = 0; k < CFX_ARRAY_LEN(threads); k++)
		pthread_join(threads[k].thr, NULL);
	status(BC_ST_CLOSING);
	rc = cfx_broker_close(W.br);
	if (rc)
		fatal("cfx_broker_close: %s", cfx_strerror(rc));
	status(BC_ST_CLOSED);
	close(W.log_fd);
	_exit(0);
}
