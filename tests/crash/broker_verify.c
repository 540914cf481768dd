/*
 * broker_verify.c - checking a recovered broker against the event log.
 *
 * Runs in the driver after the kills, on a broker it opens itself (so
 * recovery runs), over the whole history of the test directory: every
 * record any worker or verifier wrote since the directory was emptied.
 *
 *  1. Replay of the event log (checked record by record, in the order the
 *     records were written):
 *       - every record names an id whose SENDING came first; nothing is sent
 *         twice;
 *       - no message is delivered again after an ACKED (the broker journals
 *         an ack before cfx_broker_ack returns, and a kill keeps the page
 *         cache);
 *       - all deliveries of an id come from one stored copy (queue,
 *         offset): a second copy means a timer fired twice, a transaction
 *         was committed twice or a send was stored twice;
 *       - a delayed message is never received, nor stored in its topic,
 *         before its due time (no tolerance);
 *       - a rolled-back transaction is never delivered, and never both
 *         committed and rolled back.
 *  2. After the open: %SYS%TIMER and %SYS%HALF are read; what they hold
 *     must trace back to a SENDING. The open transactions are found by
 *     check-back (the verifier opens the broker with the first check 300 ms
 *     away and registers a checker): their number must be
 *     cfx_broker_txn_open(); none may be one that was committed or rolled
 *     back; every transaction sent and never resolved must be among them.
 *     Each is resolved by the transaction id the log recorded (or, for an
 *     orphan whose SENT the kill lost, the one the check-back gave): rolled
 *     back if the worker had started a rollback, else committed.
 *  3. The drain: the three groups are popped and every message acknowledged
 *     (recorded like a worker's receipts) until everything that must be
 *     delivered was: every SENT pop message, every delayed message that
 *     was SENT or is in %SYS%TIMER, every committed transaction; and past
 *     the time when anything the dead workers had in flight became visible
 *     again, until a round of pops returns nothing and no timer is pending.
 *     A delayed message must arrive within BC_LATE_MS of its due time (or of
 *     the drain's start), anything else within BC_LATE_MS of the moment
 *     in-flight messages are visible again.
 *  4. The real topics are read: each id is stored at most once, where it
 *     was delivered from; every stored message was delivered and
 *     acknowledged; every SENT message is stored (an async send is
 *     acknowledged once in the page cache); every delayed message fired,
 *     at or after its due time; every commit reached the topic, no
 *     rollback did; a second cfx_broker_end_transaction of any resolved
 *     transaction returns CFX_ENOENT; nothing is open or pending any more.
 *  5. The broker closes cleanly.
 *
 * A call whose outcome record is missing (killed in between) may have
 * taken effect or not; the checks accept both, but nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "broker_crash.h"

#define LOG_CHUNK_RECS	   16384
#define SCAN_MSGS_MAX	   1024
#define SCAN_BYTES_MAX	   (1u << 20)
#define DRAIN_MSGS_MAX	   32u
#define DRAIN_INVISIBLE_MS 60000 /* nothing the verifier received comes back during the drain */
#define DRAIN_MS_MAX	   120000
#define CHECKBACK_WAIT_MS  10000
#define CB_WAIT_MS	   10000
#define HISTORY_LINES_MAX  40

/* ------------------------------------------------------------------------
 * The history: one entry per id
 * ------------------------------------------------------------------------ */

enum {
	F_SENDING = 1u << 0,
	F_SENT = 1u << 1,
	F_ACKED = 1u << 2,	/* an ACKED record: never to be delivered again */
	F_COMMITTING = 1u << 3, /* a commit was started (by anyone) */
	F_COMMITTED = 1u << 4,
	F_ROLLINGBACK = 1u << 5, /* a rollback was started */
	F_ROLLEDBACK = 1u << 6,
	F_HAS_TXN = 1u << 7,	/* txn holds the transaction id */
	F_IN_SYS = 1u << 8,	/* stored in %SYS%TIMER or %SYS%HALF */
	F_CHECKED = 1u << 9,	/* named by a check-back of this verification */
	F_VRESOLVED = 1u << 10, /* resolved by a verifier */
};

enum { LAST_NONE = 0, LAST_RECV = 1, LAST_ACKING = 2, LAST_ACKED = 3 };

struct hent {
	uint64_t key;	      /* stream << 56 | id; 0: a free slot */
	int64_t due_ms;	      /* delayed messages */
	uint64_t recv_offset; /* where its deliveries came from */
	uint64_t copy_offset; /* where the last scan found it */
	int64_t copy_store_ms;
	uint32_t recv_queue, copy_queue;
	uint32_t nrecv, ncopies;
	uint32_t flags;
	uint8_t last;
	char txn[BC_TXN_ID_LEN];
};

struct hist {
	struct hent *v;
	size_t cap, n; /* cap: a power of two */
	uint64_t records;
	uint64_t redeliveries;
};

static uint64_t hkey(int stream, uint64_t id)
{
	return (uint64_t)stream << 56 | id;
}

static int hent_stream(const struct hent *e)
{
	return (int)(e->key >> 56);
}

static uint64_t hent_id(const struct hent *e)
{
	return e->key & (((uint64_t)1 << 56) - 1);
}

static struct hent *hist_slot(struct hent *v, size_t cap, uint64_t key)
{
	size_t i = bcrash_mix64(key) & (cap - 1);

	while (v[i].key && v[i].key != key)
		i = (i + 1) & (cap - 1);
	return &v[i];
}

static struct hent *hist_find(struct hist *h, uint64_t key)
{
	struct hent *e;

	if (!h->cap)
		return NULL;
	e = hist_slot(h->v, h->cap, key);
	return e->key ? e : NULL;
}

static struct hent *hist_add(struct hist *h, uint64_t key)
{
	struct hent *e;

	if ((h->n + 1) * 2 > h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 4096;
		struct hent *nv = cfx_calloc(ncap, sizeof *nv);

		for (size_t i = 0; i < h->cap; i++)
			if (h->v[i].key)
				*hist_slot(nv, ncap, h->v[i].key) = h->v[i];
		cfx_free(h->v);
		h->v = nv;
		h->cap = ncap;
	}
	e = hist_slot(h->v, h->cap, key);
	CFX_ASSERT(!e->key);
	e->key = key;
	h->n++;
	return e;
}

/*
 * Delivered and done with: acknowledged (nothing may deliver it again), or
 * its last event is an acknowledgement whose outcome the kill hid (if it
 * did not take, the message comes back and is received again). An ACKFAIL
 * after another consumer's ACKED (a late ack of an older delivery) does
 * not undo the ACKED.
 */
static int settled(const struct hent *e)
{
	return e->nrecv && ((e->flags & F_ACKED) || e->last == LAST_ACKING);
}

/* ------------------------------------------------------------------------
 * The verifier's state and failure reports
 * ------------------------------------------------------------------------ */

/* A transaction this verifier resolves. */
struct vres {
	uint64_t key;
	char txn[BC_TXN_ID_LEN + 1];
	int commit;
	atomic_int done;
	int err;
	int logged;
};

/* An open transaction named by a check-back. */
struct checked {
	char txn[BC_TXN_ID_LEN + 1];
	int ok; /* the half message is one of this test's, on crash-txn */
	struct bc_body b;
};

static struct {
	const struct bcrash_verify_args *a;
	char log_path[PATH_MAX];
	int log_fd;
	struct hist h;
	struct cfx_broker *br;
	int64_t drain_start_ms, settle_ms;

	pthread_mutex_t ck_mu;
	struct checked *ck;
	uint32_t nck, capck;

	struct vres *res;
	uint32_t nres;
} V;

/* Prints the records of one id that the event log holds, to stderr. */
static void dump_history(uint64_t key)
{
	uint8_t *buf = cfx_malloc((size_t)LOG_CHUNK_RECS * BC_REC_BYTES);
	uint64_t recno = 0, shown = 0, total = 0;
	int fd = open(V.log_path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		cfx_free(buf);
		return;
	}
	fprintf(stderr, "records of %s %016" PRIx64 " in %s:\n",
		bcrash_stream_name((int)(key >> 56)), key & (((uint64_t)1 << 56) - 1), V.log_path);
	while ((n = read(fd, buf, (size_t)LOG_CHUNK_RECS * BC_REC_BYTES)) > 0) {
		for (ssize_t off = 0; off + (ssize_t)BC_REC_BYTES <= n;
		     off += BC_REC_BYTES, recno++) {
			struct bc_rec r;
			char line[256];

			if (bcrash_rec_decode(buf + off, &r) || hkey(r.stream, r.id) != key)
				continue;
			total++;
			if (shown >= HISTORY_LINES_MAX)
				continue;
			bcrash_rec_format(&r, line, sizeof line);
			fprintf(stderr, "  #%" PRIu64 " %s\n", recno, line);
			shown++;
		}
	}
	if (total > shown)
		fprintf(stderr, "  ... %" PRIu64 " more\n", total - shown);
	close(fd);
	cfx_free(buf);
}

/* Prints where the store holds messages with the id's message id, to stderr. */
static void dump_copies(uint64_t key)
{
	struct cfx_read_result res;
	char msg_id[BC_MSG_ID_MAX];
	int rc;

	if (!V.br)
		return;
	bcrash_msg_id(msg_id, (int)(key >> 56), key & (((uint64_t)1 << 56) - 1));
	cfx_read_result_init(&res);
	rc = cfx_store_lookup_id(cfx_broker_store(V.br), CFX_VIEW_STR(msg_id), 16, &res);
	if (rc) {
		fprintf(stderr, "lookup of message id %s: %s\n", msg_id, cfx_strerror(rc));
	} else {
		fprintf(stderr, "stored copies of message id %s (newest first):%s\n", msg_id,
			res.count ? "" : " none");
		for (uint32_t i = 0; i < res.count; i++)
			fprintf(stderr, "  %.*s/%u offset %" PRIu64 ", stored at %" PRId64 "\n",
				(int)res.origins[i].topic.len, (const char *)res.origins[i].topic.p,
				res.origins[i].queue_id, res.msgs[i].offset, res.msgs[i].store_ms);
	}
	cfx_read_result_free(&res);
}

/* A violation about one id: its records, then the report. */
CFX_PRINTF(2, 3) CFX_NORETURN static void vfail(uint64_t key, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int n;

	n = snprintf(msg, sizeof msg, "%s %016" PRIx64 ": ", bcrash_stream_name((int)(key >> 56)),
		     key & (((uint64_t)1 << 56) - 1));
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
	va_end(ap);
	fflush(stdout);
	dump_history(key);
	dump_copies(key);
	bcrash_fail("%s", msg);
}

/* ------------------------------------------------------------------------
 * Replaying records
 * ------------------------------------------------------------------------ */

/*
 * Applies one record (the log's, or one the verifier just wrote) to the
 * history, checking what can be checked record by record.
 */
static void apply(const struct bc_rec *r, uint64_t recno)
{
	uint64_t key = hkey(r->stream, r->id);
	struct hent *e = hist_find(&V.h, key);

	V.h.records++;
	if (r->type == BC_SENDING) {
		if (e)
			vfail(key, "sent twice (record #%" PRIu64 "): ids must be unique", recno);
		e = hist_add(&V.h, key);
		e->flags = F_SENDING;
		e->due_ms = r->stream == BC_DELAY ? r->t_ms : 0;
		return;
	}
	if (!e)
		vfail(key, "record #%" PRIu64 " (%s) names an id that was never sent", recno,
		      bcrash_rec_type_name(r->type));

	switch (r->type) {
	case BC_SENT:
		e->flags |= F_SENT;
		if (r->stream == BC_TXN) {
			memcpy(e->txn, r->txn, BC_TXN_ID_LEN);
			e->flags |= F_HAS_TXN;
		}
		break;

	case BC_RECV:
		if (e->nrecv && (e->recv_queue != r->queue || e->recv_offset != r->offset))
			vfail(key,
			      "delivered from two stored copies: queue %u offset %" PRIu64
			      " and queue %u offset %" PRIu64 " (record #%" PRIu64 ")%s",
			      e->recv_queue, e->recv_offset, r->queue, r->offset, recno,
			      r->stream == BC_DELAY ? ": the timer fired twice"
			      : r->stream == BC_TXN ? ": the transaction was committed twice"
						    : "");
		if (e->flags & F_ACKED)
			vfail(key,
			      "delivered again (record #%" PRIu64 ", attempt %d, queue %u offset "
			      "%" PRIu64 ") after an acknowledgement that succeeded",
			      recno, r->attempt, r->queue, r->offset);
		if (r->stream == BC_DELAY && r->t_ms < e->due_ms)
			vfail(key,
			      "received at %" PRId64 ", %" PRId64 " ms before its due time %" PRId64
			      " (record #%" PRIu64 ")",
			      r->t_ms, e->due_ms - r->t_ms, e->due_ms, recno);
		if (r->stream == BC_DELAY && r->aux < e->due_ms)
			vfail(key,
			      "stored in %s at %" PRId64 ", %" PRId64
			      " ms before its due time %" PRId64 " (record #%" PRIu64 ")",
			      BC_DELAY_TOPIC, r->aux, e->due_ms - r->aux, e->due_ms, recno);
		if (e->flags & F_ROLLEDBACK)
			vfail(key, "delivered (record #%" PRIu64 ") although rolled back", recno);
		if (r->attempt > 1)
			V.h.redeliveries++;
		e->nrecv++;
		e->recv_queue = r->queue;
		e->recv_offset = r->offset;
		e->last = LAST_RECV;
		break;

	case BC_ACKING:
		e->last = LAST_ACKING;
		break;

	case BC_ACKED:
		e->flags |= F_ACKED;
		e->last = LAST_ACKED;
		break;

	case BC_ACKFAIL:
		e->last = LAST_RECV; /* the ack did not take: it comes back */
		break;

	case BC_NACKED:
		break;

	case BC_COMMITTING:
	case BC_ROLLINGBACK:
		if ((e->flags & F_HAS_TXN) && memcmp(e->txn, r->txn, BC_TXN_ID_LEN) != 0)
			vfail(key, "record #%" PRIu64 " resolves transaction %.*s, sent as %.*s",
			      recno, (int)BC_TXN_ID_LEN, r->txn, (int)BC_TXN_ID_LEN, e->txn);
		memcpy(e->txn, r->txn, BC_TXN_ID_LEN);
		e->flags |= F_HAS_TXN | (r->type == BC_COMMITTING ? F_COMMITTING : F_ROLLINGBACK);
		if (r->attempt == 1)
			e->flags |= F_VRESOLVED;
		break;

	case BC_COMMITTED:
		if (e->flags & F_ROLLEDBACK)
			vfail(key,
			      "committed (record #%" PRIu64 ") after a rollback that succeeded",
			      recno);
		e->flags |= F_COMMITTED;
		break;

	case BC_ROLLEDBACK:
		if (e->flags & F_COMMITTED)
			vfail(key,
			      "rolled back (record #%" PRIu64 ") after a commit that succeeded",
			      recno);
		if (e->nrecv)
			vfail(key, "rolled back (record #%" PRIu64 ") although it was delivered",
			      recno);
		e->flags |= F_ROLLEDBACK;
		break;
	}
}

/* Writes a record of the verifier and applies it. */
static void vlog(struct bc_rec *r)
{
	uint8_t buf[BC_REC_BYTES];

	r->run = V.a->run;
	bcrash_rec_encode(buf, r);
	if (write(V.log_fd, buf, sizeof buf) != (ssize_t)sizeof buf)
		bcrash_fail("write to %s: %s", V.log_path, strerror(errno));
	apply(r, V.h.records);
}

/* `attempt`: 1 marks a resolution of a transaction the verifier found open. */
static void vlog_event(int type, const struct hent *e, const char *txn, int attempt)
{
	struct bc_rec r = {.type = (uint8_t)type,
			   .stream = (uint8_t)hent_stream(e),
			   .id = hent_id(e),
			   .t_ms = cfx_clock_wall_ms(),
			   .attempt = attempt};

	if (txn)
		memcpy(r.txn, txn, BC_TXN_ID_LEN);
	vlog(&r);
}

/* Cuts a partial last record (a write the kill interrupted), then replays the log. */
static void load_log(struct bcrash_verify_stats *vs)
{
	uint8_t *buf;
	struct stat sb;
	ssize_t n;
	int fd;

	fd = open(V.log_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || fstat(fd, &sb) != 0)
		bcrash_fail("cannot open %s: %s", V.log_path, strerror(errno));
	if (sb.st_size % BC_REC_BYTES) {
		vs->torn_bytes = (uint64_t)sb.st_size % BC_REC_BYTES;
		if (ftruncate(fd, sb.st_size - (off_t)vs->torn_bytes) != 0)
			bcrash_fail("ftruncate(%s): %s", V.log_path, strerror(errno));
	}
	buf = cfx_malloc((size_t)LOG_CHUNK_RECS * BC_REC_BYTES);
	while ((n = read(fd, buf, (size_t)LOG_CHUNK_RECS * BC_REC_BYTES)) > 0) {
		if (n % BC_REC_BYTES)
			bcrash_fail("%s: short read", V.log_path);
		for (ssize_t off = 0; off < n; off += BC_REC_BYTES) {
			struct bc_rec r;
			const char *why = bcrash_rec_decode(buf + off, &r);

			if (why)
				bcrash_fail("%s: record #%" PRIu64 " is damaged (%s)", V.log_path,
					    V.h.records, why);
			apply(&r, V.h.records);
		}
	}
	if (n < 0)
		bcrash_fail("read(%s): %s", V.log_path, strerror(errno));
	cfx_free(buf);
	close(fd);
	V.log_fd = open(V.log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (V.log_fd < 0)
		bcrash_fail("cannot open %s: %s", V.log_path, strerror(errno));
}

/* ------------------------------------------------------------------------
 * Reading what the store holds
 * ------------------------------------------------------------------------ */

enum scan_kind { SCAN_REAL, SCAN_SYS };

/*
 * Reads every message of `topic`: each must be one of the test's, of
 * `stream`, sent once. SCAN_REAL records its copy (queue, offset, store
 * time); SCAN_SYS marks it F_IN_SYS.
 */
static void scan_topic(const char *topic, uint32_t queues, int stream, enum scan_kind kind)
{
	struct cfx_store *st = cfx_broker_store(V.br);
	struct cfx_view t = CFX_VIEW_STR(topic);
	struct cfx_read_result rd;

	cfx_read_result_init(&rd);
	for (uint32_t q = 0; q < queues; q++) {
		uint64_t start = 0, end = 0, off;
		int rc = cfx_store_queue_bounds(st, t, q, &start, &end);

		if (rc)
			bcrash_fail("cfx_store_queue_bounds(%s/%u): %s", topic, q,
				    cfx_strerror(rc));
		if (start != 0)
			bcrash_fail("%s/%u starts at offset %" PRIu64 " (there is no retention)",
				    topic, q, start);
		for (off = start; off < end;) {
			rc = cfx_store_read(st, t, q, off, SCAN_MSGS_MAX, SCAN_BYTES_MAX, &rd);
			if (rc)
				bcrash_fail("reading %s/%u at offset %" PRIu64 " (end %" PRIu64
					    "): %s",
					    topic, q, off, end, cfx_strerror(rc));
			if (rd.count == 0)
				bcrash_fail("reading %s/%u at offset %" PRIu64
					    " returned nothing before "
					    "the end %" PRIu64,
					    topic, q, off, end);
			for (uint32_t i = 0; i < rd.count; i++) {
				const struct cfx_msg_view *v = &rd.msgs[i];
				struct bc_body b;
				struct hent *e;

				if (v->offset != off)
					bcrash_fail("%s/%u: offset %" PRIu64 " read where %" PRIu64
						    " was expected (offsets must be dense)",
						    topic, q, v->offset, off);
				off++;
				if (bcrash_body_decode(v, &b) || b.stream != stream)
					bcrash_fail("%s/%u offset %" PRIu64
						    " holds a message that is not "
						    "one of this test's %s messages",
						    topic, q, v->offset,
						    bcrash_stream_name(stream));
				e = hist_find(&V.h, hkey(b.stream, b.id));
				if (!e)
					bcrash_fail("%s %016" PRIx64
						    " is stored in %s/%u offset %" PRIu64
						    " but was never sent (no SENDING record)",
						    bcrash_stream_name(b.stream), b.id, topic, q,
						    v->offset);
				if (b.stream == BC_DELAY && b.due_ms != e->due_ms)
					vfail(e->key,
					      "stored with due time %" PRId64
					      ", sent with %" PRId64,
					      b.due_ms, e->due_ms);
				if (kind == SCAN_SYS) {
					if (e->flags & F_IN_SYS)
						vfail(e->key,
						      "stored twice in %s (again at offset %" PRIu64
						      ")",
						      topic, v->offset);
					e->flags |= F_IN_SYS;
					continue;
				}
				if (e->ncopies)
					vfail(e->key,
					      "stored twice in %s: queue %u offset %" PRIu64
					      " and queue %u offset %" PRIu64,
					      topic, e->copy_queue, e->copy_offset, q, v->offset);
				e->ncopies++;
				e->copy_queue = q;
				e->copy_offset = v->offset;
				e->copy_store_ms = v->store_ms;
			}
		}
	}
	cfx_read_result_free(&rd);
}

/* ------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

/* Check-back of an open transaction. @thread the broker's timer thread */
static void on_check(void *arg, const struct cfx_txn_check *c)
{
	struct checked ck = {0};

	CFX_UNUSED(arg);
	memcpy(ck.txn, c->txn_id,
	       CFX_MIN(strnlen(c->txn_id, CFX_HANDLE_MAX), (size_t)BC_TXN_ID_LEN));
	ck.ok = strnlen(c->txn_id, CFX_HANDLE_MAX) == BC_TXN_ID_LEN &&
		cfx_view_eq_str(c->topic, BC_TXN_TOPIC) && c->msg &&
		bcrash_body_decode(c->msg, &ck.b) == 0 && ck.b.stream == BC_TXN;
	pthread_mutex_lock(&V.ck_mu);
	for (uint32_t i = 0; i < V.nck; i++)
		if (strcmp(V.ck[i].txn, ck.txn) == 0) {
			pthread_mutex_unlock(&V.ck_mu);
			return; /* checked again: counted once */
		}
	if (V.nck == V.capck) {
		V.capck = V.capck ? V.capck * 2 : 64;
		V.ck = cfx_realloc(V.ck, V.capck * sizeof *V.ck);
	}
	V.ck[V.nck++] = ck;
	pthread_mutex_unlock(&V.ck_mu);
}

/* The end_transaction callback of a verifier's resolution. @thread any */
static void resolved(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	struct vres *x = arg;

	x->err = count == 1 ? res[0].err : CFX_EINVAL;
	atomic_store(&x->done, 1);
}

/* Records the outcome of the resolutions that completed. */
static uint32_t collect_resolutions(void)
{
	uint32_t pending = 0;

	for (uint32_t i = 0; i < V.nres; i++) {
		struct vres *x = &V.res[i];
		struct hent *e;

		if (x->logged)
			continue;
		if (!atomic_load(&x->done)) {
			pending++;
			continue;
		}
		e = hist_find(&V.h, x->key);
		if (x->err)
			vfail(x->key,
			      "the verifier's %s of the open transaction %s completed with %s",
			      x->commit ? "commit" : "rollback", x->txn, cfx_strerror(x->err));
		vlog_event(x->commit ? BC_COMMITTED : BC_ROLLEDBACK, e, x->txn, 0);
		x->logged = 1;
	}
	return pending;
}

/*
 * Finds the open transactions by check-back, checks them against the log
 * and resolves them. Returns how many were checked back.
 */
static uint64_t resolve_open(uint64_t txn_open)
{
	int64_t deadline = cfx_clock_mono_ms() + CHECKBACK_WAIT_MS;
	uint32_t nck;

	for (;;) {
		pthread_mutex_lock(&V.ck_mu);
		nck = V.nck;
		pthread_mutex_unlock(&V.ck_mu);
		if (nck >= txn_open || cfx_clock_mono_ms() > deadline)
			break;
		bcrash_sleep_ms(20);
	}
	/* No more check-backs: the next is a day away. */
	cfx_broker_set_txn_checker(V.br, NULL, NULL);
	if (nck != txn_open)
		bcrash_fail("cfx_broker_txn_open() said %" PRIu64 " transactions were open after "
			    "the restart, check-backs named %u within %d s",
			    txn_open, nck, CHECKBACK_WAIT_MS / 1000);

	V.res = cfx_calloc(nck ? nck : 1, sizeof *V.res);
	for (uint32_t i = 0; i < nck; i++) {
		struct checked *c = &V.ck[i];
		struct hent *e;
		struct vres *x;
		int rc;

		if (!c->ok)
			bcrash_fail(
				"a check-back named transaction %s, whose half message is not one "
				"of this test's on %s",
				c->txn, BC_TXN_TOPIC);
		e = hist_find(&V.h, hkey(BC_TXN, c->b.id));
		if (!e)
			bcrash_fail("txn %016" PRIx64
				    " is open (check-back of %s) but was never sent",
				    c->b.id, c->txn);
		if (e->flags & F_CHECKED)
			vfail(e->key, "named by two check-backs, as %s and %.*s", c->txn,
			      (int)BC_TXN_ID_LEN, e->txn);
		e->flags |= F_CHECKED;
		if (!(e->flags & F_IN_SYS))
			vfail(e->key, "open (check-back of %s) but not in %s", c->txn,
			      CFX_HALF_TOPIC);
		if (e->flags & (F_COMMITTED | F_ROLLEDBACK))
			vfail(e->key,
			      "open again after the restart (check-back of %s), although its %s "
			      "succeeded before",
			      c->txn, e->flags & F_COMMITTED ? "commit" : "rollback");
		if ((e->flags & F_HAS_TXN) && memcmp(e->txn, c->txn, BC_TXN_ID_LEN) != 0)
			vfail(e->key, "checked back as transaction %s, sent as %.*s", c->txn,
			      (int)BC_TXN_ID_LEN, e->txn);

		/* Resolve it by the id the log has, as a producer would after a restart. */
		x = &V.res[V.nres++];
		x->key = e->key;
		if (e->flags & F_HAS_TXN)
			memcpy(x->txn, e->txn, BC_TXN_ID_LEN);
		else
			memcpy(x->txn, c->txn, BC_TXN_ID_LEN);
		x->commit = !(e->flags & F_ROLLINGBACK);
		vlog_event(x->commit ? BC_COMMITTING : BC_ROLLINGBACK, e, x->txn, 1);
		rc = cfx_broker_end_transaction(V.br, CFX_VIEW_STR(BC_TXN_TOPIC), x->txn, x->commit,
						resolved, x);
		if (rc)
			vfail(e->key,
			      "cfx_broker_end_transaction(%s, %s) of an open transaction "
			      "returned %s",
			      x->txn, x->commit ? "commit" : "rollback", cfx_strerror(rc));
	}

	/* Transactions not open any more must have been resolved by someone. */
	for (size_t i = 0; i < V.h.cap; i++) {
		struct hent *e = &V.h.v[i];

		if (!e->key || hent_stream(e) != BC_TXN || (e->flags & F_CHECKED))
			continue;
		if (e->flags & (F_COMMITTING | F_ROLLINGBACK))
			continue; /* resolved, or being resolved when the worker died */
		if (e->flags & F_SENT)
			vfail(e->key,
			      "sent as transaction %.*s and never resolved, but not open after "
			      "the restart",
			      (int)BC_TXN_ID_LEN, e->txn);
		if (e->flags & F_IN_SYS)
			vfail(e->key, "in %s, never resolved, but not open after the restart",
			      CFX_HALF_TOPIC);
	}
	return nck;
}

/* A second resolution of any transaction that is resolved must be refused. */
static void check_resolved_refused(void)
{
	for (size_t i = 0; i < V.h.cap; i++) {
		struct hent *e = &V.h.v[i];
		char txn[BC_TXN_ID_LEN + 1];
		int rc;

		if (!e->key || hent_stream(e) != BC_TXN || !(e->flags & F_HAS_TXN))
			continue;
		memcpy(txn, e->txn, BC_TXN_ID_LEN);
		txn[BC_TXN_ID_LEN] = '\0';
		rc = cfx_broker_end_transaction(V.br, CFX_VIEW_STR(BC_TXN_TOPIC), txn, 1, NULL,
						NULL);
		if (rc != CFX_ENOENT)
			vfail(e->key,
			      "a second cfx_broker_end_transaction(%s, commit) of the resolved "
			      "transaction returned %s, not ENOENT",
			      txn, rc ? cfx_err_name(rc) : "0 (it committed it again)");
	}
}

/* ------------------------------------------------------------------------
 * The drain
 * ------------------------------------------------------------------------ */

/* Must this id still be delivered? */
static int must_deliver(const struct hent *e)
{
	switch (hent_stream(e)) {
	case BC_POP:
		return (e->flags & F_SENT) != 0;
	case BC_DELAY:
		return (e->flags & (F_SENT | F_IN_SYS)) != 0;
	default:
		return (e->flags & F_COMMITTING) != 0;
	}
}

/* The latest time at which an outstanding id may still arrive. */
static int64_t deliver_by_ms(const struct hent *e)
{
	if (hent_stream(e) == BC_DELAY && e->nrecv == 0)
		return CFX_MAX(e->due_ms, V.drain_start_ms) + BC_LATE_MS;
	return CFX_MAX(V.settle_ms, V.drain_start_ms) + BC_LATE_MS;
}

/* Counts the ids still to be delivered; fails on one that is late. */
static uint64_t outstanding(int64_t now)
{
	uint64_t n = 0;

	for (size_t i = 0; i < V.h.cap; i++) {
		struct hent *e = &V.h.v[i];

		if (!e->key || settled(e) || !must_deliver(e))
			continue;
		if (now > deliver_by_ms(e)) {
			if (hent_stream(e) == BC_DELAY && e->nrecv == 0)
				vfail(e->key,
				      "due at %" PRId64 " and not delivered %" PRId64
				      " ms later (%s, %s)",
				      e->due_ms, now - CFX_MAX(e->due_ms, V.drain_start_ms),
				      e->flags & F_SENT ? "its send succeeded"
							: "its send's outcome "
							  "is unknown",
				      e->flags & F_IN_SYS ? "it is in " CFX_TIMER_TOPIC
							  : "it is not in " CFX_TIMER_TOPIC);
			vfail(e->key,
			      "not delivered and acknowledged %d ms after the dead workers' "
			      "in-flight messages became visible again (delivered %u times, "
			      "%s)",
			      BC_LATE_MS, e->nrecv,
			      e->flags & F_ACKED ? "acked" : "never acknowledged");
		}
		n++;
	}
	return n;
}

/* Pops and acknowledges what one group gets now. Returns the number of messages. */
static uint32_t drain_once(int stream, struct cfx_pop_result *res)
{
	const char *topic = bcrash_stream_topic(stream), *group = bcrash_stream_group(stream);
	struct cfx_pop_req req = {.group = CFX_VIEW_STR(group),
				  .topic = CFX_VIEW_STR(topic),
				  .max_msgs = DRAIN_MSGS_MAX,
				  .invisible_ms = DRAIN_INVISIBLE_MS};
	int64_t now;
	int rc;

	rc = cfx_broker_pop(V.br, &req, res);
	if (rc)
		bcrash_fail("cfx_broker_pop(%s, %s) in the verifier: %s", group, topic,
			    cfx_strerror(rc));
	now = cfx_clock_wall_ms();
	for (uint32_t i = 0; i < res->count; i++) {
		const struct cfx_popped *p = &res->msgs[i];
		struct bc_body b;
		struct bc_rec r;
		struct hent *e;

		if (bcrash_body_decode(&p->v, &b) || b.stream != stream)
			bcrash_fail("a pop of %s returned a message that is not one of this test's "
				    "(queue %u offset %" PRIu64 ")",
				    topic, p->queue, p->v.offset);
		e = hist_find(&V.h, hkey(stream, b.id));
		if (e && stream == BC_DELAY && e->nrecv == 0 &&
		    now > CFX_MAX(e->due_ms, V.drain_start_ms) + BC_LATE_MS)
			vfail(e->key,
			      "delivered at %" PRId64 ", %" PRId64 " ms after its due time %" PRId64
			      " (limit %d ms)",
			      now, now - e->due_ms, e->due_ms, BC_LATE_MS);
		r = (struct bc_rec){.type = BC_RECV,
				    .stream = (uint8_t)stream,
				    .queue = (uint16_t)p->queue,
				    .attempt = (int32_t)p->attempt,
				    .id = b.id,
				    .t_ms = now,
				    .offset = p->v.offset,
				    .aux = p->v.store_ms};
		vlog(&r);
		e = hist_find(&V.h, hkey(stream, b.id));
		vlog_event(BC_ACKING, e, NULL, 0);
		rc = cfx_broker_ack(V.br, req.group, req.topic, p->handle);
		if (rc)
			vfail(e->key, "cfx_broker_ack of a handle just received returned %s",
			      cfx_strerror(rc));
		vlog_event(BC_ACKED, e, NULL, 0);
	}
	return res->count;
}

static void drain(struct bcrash_verify_stats *vs)
{
	struct cfx_pop_result res;
	int64_t t0 = cfx_clock_mono_ms(), last_scan = 0;
	int quiet = 0;

	cfx_pop_result_init(&res);
	for (;;) {
		uint32_t got = 0, pending;
		int64_t now;

		for (int s = 1; s <= (int)BC_STREAMS; s++)
			got += drain_once(s, &res);
		vs->drained += got;
		pending = collect_resolutions();
		if (cfx_clock_mono_ms() - t0 > DRAIN_MS_MAX)
			bcrash_fail("the drain did not end within %d s: %" PRIu64
				    " ids outstanding, "
				    "%u resolutions pending, %zu timers pending",
				    DRAIN_MS_MAX / 1000, outstanding(INT64_MIN), pending,
				    cfx_broker_timers_pending(V.br, NULL));
		if (got) {
			quiet = 0;
			continue;
		}
		now = cfx_clock_wall_ms();
		if (now - last_scan >= 100 || quiet) {
			uint64_t left = outstanding(now);
			last_scan = now;
			if (left == 0 && pending == 0 && now >= V.settle_ms &&
			    cfx_broker_timers_pending(V.br, NULL) == 0) {
				/* One more empty round after everything settled: done. */
				if (quiet++)
					break;
				continue;
			}
		}
		bcrash_sleep_ms(10);
	}
	cfx_pop_result_free(&res);
	vs->drain_ms = (uint64_t)(cfx_clock_mono_ms() - t0);
}

/* ------------------------------------------------------------------------
 * The final state
 * ------------------------------------------------------------------------ */

static void check_final(void)
{
	for (size_t i = 0; i < V.h.cap; i++) {
		struct hent *e = &V.h.v[i];
		int stream = hent_stream(e);

		if (!e->key)
			continue;
		if (e->ncopies && !settled(e))
			vfail(e->key,
			      "stored in queue %u offset %" PRIu64 " but not delivered and "
			      "acknowledged by the end of the drain (delivered %u times)",
			      e->copy_queue, e->copy_offset, e->nrecv);
		if (e->nrecv && !e->ncopies)
			vfail(e->key,
			      "delivered from queue %u offset %" PRIu64 " but no longer stored",
			      e->recv_queue, e->recv_offset);
		if (e->nrecv &&
		    (e->recv_queue != e->copy_queue || e->recv_offset != e->copy_offset))
			vfail(e->key,
			      "delivered from queue %u offset %" PRIu64 ", stored at queue %u "
			      "offset %" PRIu64,
			      e->recv_queue, e->recv_offset, e->copy_queue, e->copy_offset);
		switch (stream) {
		case BC_POP:
			if ((e->flags & F_SENT) && !e->ncopies)
				vfail(e->key, "lost: its send succeeded, it is not stored in %s",
				      BC_POP_TOPIC);
			break;
		case BC_DELAY:
			if ((e->flags & F_SENT) && !(e->flags & F_IN_SYS) && !e->ncopies)
				vfail(e->key,
				      "lost: its send succeeded, it is neither in %s nor in %s",
				      CFX_TIMER_TOPIC, BC_DELAY_TOPIC);
			if ((e->flags & (F_SENT | F_IN_SYS)) && !e->ncopies)
				vfail(e->key, "never fired: %s, due at %" PRId64,
				      e->flags & F_IN_SYS ? "it is in " CFX_TIMER_TOPIC
							  : "its send succeeded",
				      e->due_ms);
			if (e->ncopies && e->copy_store_ms < e->due_ms)
				vfail(e->key,
				      "fired early: stored in %s at %" PRId64 ", due at %" PRId64,
				      BC_DELAY_TOPIC, e->copy_store_ms, e->due_ms);
			break;
		default:
			if ((e->flags & F_SENT) && !(e->flags & F_IN_SYS))
				vfail(e->key, "its send succeeded but it is not in %s",
				      CFX_HALF_TOPIC);
			if ((e->flags & F_COMMITTING) && !e->ncopies)
				vfail(e->key, "committed but not in %s (%s)", BC_TXN_TOPIC,
				      e->flags & F_COMMITTED
					      ? "the commit succeeded"
					      : "the commit's outcome was unknown and "
						"the transaction was not open");
			if ((e->flags & F_ROLLINGBACK) && e->ncopies)
				vfail(e->key,
				      "rolled back but stored in %s at queue %u offset %" PRIu64,
				      BC_TXN_TOPIC, e->copy_queue, e->copy_offset);
			if (e->ncopies && !(e->flags & F_COMMITTING))
				vfail(e->key, "stored in %s although nobody committed it",
				      BC_TXN_TOPIC);
			if ((e->flags & F_IN_SYS) && !(e->flags & (F_COMMITTING | F_ROLLINGBACK)))
				vfail(e->key,
				      "in %s and still unresolved after the verifier resolved "
				      "every open transaction",
				      CFX_HALF_TOPIC);
			break;
		}
	}
}

static void history_stats(struct bcrash_verify_stats *vs)
{
	vs->records = V.h.records;
	vs->redeliveries = V.h.redeliveries;
	for (size_t i = 0; i < V.h.cap; i++) {
		const struct hent *e = &V.h.v[i];

		if (!e->key)
			continue;
		switch (hent_stream(e)) {
		case BC_POP:
			vs->pop_sent += (e->flags & F_SENT) != 0;
			vs->pop_acked += (e->flags & F_ACKED) != 0;
			break;
		case BC_DELAY:
			vs->delay_sent += (e->flags & F_SENT) != 0;
			vs->timers_fired += e->ncopies;
			break;
		default:
			vs->txn_sent += (e->flags & F_SENT) != 0;
			/* Resolutions of the workers; the verifiers' are "left open". */
			vs->txn_committed += (e->flags & F_COMMITTED) && !(e->flags & F_VRESOLVED);
			vs->txn_rolled_back +=
				(e->flags & F_ROLLEDBACK) && !(e->flags & F_VRESOLVED);
			vs->txn_left_open += (e->flags & F_VRESOLVED) && (e->flags & F_SENT);
			vs->txn_orphans += (e->flags & F_VRESOLVED) && !(e->flags & F_SENT);
			vs->rerecovered += (e->flags & F_COMMITTING) && !(e->flags & F_COMMITTED) &&
					   !(e->flags & F_VRESOLVED);
			break;
		}
	}
}

/* ------------------------------------------------------------------------
 * The verification
 * ------------------------------------------------------------------------ */

void bcrash_verify(const struct bcrash_verify_args *a, struct bcrash_verify_stats *vs)
{
	static const uint64_t journal_choices[] = {16u << 10, 256u << 10, 64u << 20};
	struct cfx_broker_opts o;
	char data_dir[PATH_MAX];
	struct bc_rng rng = {a->seed};
	uint64_t txn_open;
	int64_t t0;
	int rc;

	memset(&V, 0, sizeof V);
	V.a = a;
	V.log_fd = -1;
	pthread_mutex_init(&V.ck_mu, NULL);
	snprintf(V.log_path, sizeof V.log_path, "%s/%s", a->dir, BC_LOG_FILE);
	snprintf(data_dir, sizeof data_dir, "%s/%s", a->dir, BC_DATA_SUBDIR);

	/* 1. The history so far. */
	load_log(vs);

	/* 2. Recovery, and what it found. */
	bcrash_broker_opts(&o, data_dir);
	o.pop_journal_bytes_max = journal_choices[bcrash_rng_next(&rng) % 3];
	o.txn_check_first_ms = 300; /* the checker is registered by then */
	t0 = cfx_clock_mono_ms();
	rc = cfx_broker_open(&o, &V.br, NULL);
	if (rc)
		bcrash_fail("recovery failed: cfx_broker_open(%s) returned %s", data_dir,
			    cfx_strerror(rc));
	cfx_broker_set_txn_checker(V.br, on_check, NULL);
	vs->open_ms = (uint64_t)(cfx_clock_mono_ms() - t0);
	txn_open = cfx_broker_txn_open(V.br);
	vs->txn_open = txn_open;
	vs->timers_pending = cfx_broker_timers_pending(V.br, NULL);
	scan_topic(CFX_TIMER_TOPIC, 1, BC_DELAY, SCAN_SYS);
	scan_topic(CFX_HALF_TOPIC, 1, BC_TXN, SCAN_SYS);
	V.drain_start_ms = cfx_clock_wall_ms();
	V.settle_ms = a->workers_gone_ms + BC_INVISIBLE_MS_MAX + 500;
	vs->checked_back = resolve_open(txn_open);

	/* 3. Everything that must be delivered is. */
	drain(vs);

	/* 4. What the store holds. */
	scan_topic(BC_POP_TOPIC, BC_POP_QUEUES, BC_POP, SCAN_REAL);
	scan_topic(BC_DELAY_TOPIC, BC_DELAY_QUEUES, BC_DELAY, SCAN_REAL);
	scan_topic(BC_TXN_TOPIC, BC_TXN_QUEUES, BC_TXN, SCAN_REAL);
	check_final();
	check_resolved_refused();
	if (cfx_broker_txn_open(V.br) != 0)
		bcrash_fail(
			"%zu transactions are still open after the verifier resolved all %" PRIu64
			" that were open",
			cfx_broker_txn_open(V.br), txn_open);
	if (cfx_broker_timers_pending(V.br, NULL) != 0)
		bcrash_fail("%zu timers are pending after the drain",
			    cfx_broker_timers_pending(V.br, NULL));
	history_stats(vs);

	/* 5. A clean close. */
	rc = cfx_broker_close(V.br);
	V.br = NULL;
	if (rc)
		bcrash_fail("cfx_broker_close after the verification: %s", cfx_strerror(rc));
	close(V.log_fd);
	cfx_free(V.h.v);
	cfx_free(V.ck);
	cfx_free(V.res);
	pthread_mutex_destroy(&V.ck_mu);
}
