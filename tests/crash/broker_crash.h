/*
 * broker_crash.h - shared parts of the kill -9 crash test of the broker
 * (POP state, delayed messages, transactions; tests/crash/README.md).
 *
 * One program, three roles, all in broker_crash: the driver
 * (broker_crash.c) forks workers (broker_worker.c) that open the broker
 * and run producers and consumers until the driver kills them with
 * SIGKILL; then it opens the broker itself, which recovers it, and checks
 * the whole history recorded in the event log against what the broker
 * holds and delivers (broker_verify.c).
 *
 * What the roles agree on is defined here:
 *
 *   - the event log: fixed-size records that the workers and the verifier
 *     append (O_APPEND, one write(2) each) around every broker call: an
 *     intent before the call (SENDING, ACKING, COMMITTING...), the outcome
 *     after it returned or its callback reported success (SENT, ACKED,
 *     COMMITTED...), and every delivery (RECV). A kill -9 keeps what write(2)
 *     put in the page cache, so a record is lost only if the process died
 *     before writing it: an intent without an outcome is a call whose
 *     result is unknown, and the checks allow both results for it;
 *   - message bodies: a stream (pop, delay, transaction), an id unique over
 *     the history, and for delayed messages the due time, so that whatever
 *     the broker delivers or stores can be traced back to the log.
 *
 * A kill -9 keeps the page cache: this is not a power-failure test.
 */
#ifndef CFX_TESTS_CRASH_BROKER_CRASH_H
#define CFX_TESTS_CRASH_BROKER_CRASH_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "broker/broker.h"

/* ------------------------------------------------------------------------
 * The data set
 * ------------------------------------------------------------------------ */

#define BC_POP_TOPIC	 "crash-pop" /* NORMAL */
#define BC_POP_GROUP	 "crash-g"
#define BC_POP_QUEUES	 4u
#define BC_DELAY_TOPIC	 "crash-delay" /* DELAY */
#define BC_DELAY_GROUP	 "crash-dg"
#define BC_DELAY_QUEUES	 2u
#define BC_TXN_TOPIC	 "crash-txn" /* TRANSACTION */
#define BC_TXN_GROUP	 "crash-tg"
#define BC_TXN_QUEUES	 2u
#define BC_MAX_ATTEMPTS	 1000u /* groups never dead-letter in this test */
#define BC_SEGMENT_BYTES (32u << 20)

/* Consumers of the workers make messages invisible for 1-3 s: the verifier
 * waits this long after the last worker died before it calls a message
 * that did not come back "acknowledged". */
#define BC_INVISIBLE_MS_MIN 1000
#define BC_INVISIBLE_MS_MAX 3000
/* Delayed messages are due 100 ms to 3 s after their send. */
#define BC_DELAY_MS_MIN 100
#define BC_DELAY_MS_MAX 3000
/* A due delayed message (and anything else expected) must be delivered
 * within this long of its due time, or of the verification's start. */
#define BC_LATE_MS 5000

/* Paths inside the test directory. */
#define BC_DATA_SUBDIR "data"
#define BC_LOG_FILE    "events.log"

/* Exit status of a worker that found something wrong by itself. */
#define BC_WORKER_EXIT_FAIL 3

/* Bytes a worker sends on its status pipe. */
#define BC_ST_OPENING 'O' /* about to call cfx_broker_open (recovery) */
#define BC_ST_READY   'R' /* open; the workload is starting */
#define BC_ST_CLOSING 'C' /* SIGTERM seen, workload stopped, closing the broker */
#define BC_ST_CLOSED  'D' /* cfx_broker_close returned 0 */

/* The three kinds of traffic. */
enum bc_stream { BC_POP = 1, BC_DELAY = 2, BC_TXN = 3 };
#define BC_STREAMS 3u

const char *bcrash_stream_name(int stream); /* "pop", "delay", "txn" */
const char *bcrash_stream_topic(int stream);
const char *bcrash_stream_group(int stream);

/*
 * Broker options of every process of the test (they must agree on the
 * store's segment size). `data_dir` is borrowed for the life of `o`.
 * Transactions are never checked back (txn_check_first_ms: a day) unless
 * the caller changes it, so only the test resolves them.
 */
void bcrash_broker_opts(struct cfx_broker_opts *o, const char *data_dir);

/* ------------------------------------------------------------------------
 * Message bodies
 *
 * OFFSET | SIZE | FIELD
 *      0 |    4 | magic   "BCB1"
 *      4 |    4 | stream  enum bc_stream
 *      8 |    8 | id      unique over the history of the test directory
 *     16 |    8 | due_ms  delayed messages: deliver_at_ms; else 0
 *
 * Every message also has the message id "bc-<stream>-<id in hex>": the
 * broker recognises a delayed message or a commit that reached its topic
 * just before a crash by its message id.
 * ------------------------------------------------------------------------ */

#define BC_BODY_BYTES 24u
#define BC_BODY_MAGIC 0x31424342u
#define BC_MSG_ID_MAX 40u

struct bc_body {
	int stream;
	uint64_t id;
	int64_t due_ms;
};

void bcrash_body_encode(uint8_t out[BC_BODY_BYTES], const struct bc_body *b);
/* Returns 0, or -1 if `v` is not a body of this test. */
int bcrash_body_decode(const struct cfx_msg_view *v, struct bc_body *b);
/* Writes the message id of (stream, id) into `out` (BC_MSG_ID_MAX bytes). */
void bcrash_msg_id(char *out, int stream, uint64_t id);

/* Ids: the process's run number above, a per-stream counter below. */
static inline uint64_t bcrash_id_make(uint32_t run, uint32_t seq)
{
	return (uint64_t)run << 32 | seq;
}

/* ------------------------------------------------------------------------
 * Event log records
 *
 * events.log is a sequence of these 64-byte records, little-endian; 64
 * divides the page size, so no record straddles two pages and a kill
 * cannot tear one (the verifier still cuts a partial tail if it finds one):
 *
 * OFFSET | SIZE | FIELD
 *      0 |    1 | type     enum bc_rec_type
 *      1 |    1 | stream   enum bc_stream
 *      2 |    2 | queue    RECV, SENT: the queue of the message
 *      4 |    4 | attempt  RECV: the delivery attempt; ACKFAIL: -error;
 *        |      |          COMMITTING, ROLLINGBACK: 1 if a verifier resolves
 *        |      |          a transaction it found open, else 0
 *      8 |    8 | id       the message's id
 *     16 |    8 | t_ms     RECV: wall time at receipt; delayed SENDING and
 *        |      |          SENT: due time; otherwise wall time of the event
 *     24 |    8 | offset   RECV: queue offset of the message delivered;
 *        |      |          SENT: offset in the topic the send stored it in
 *     32 |    4 | run      the process that wrote it (driver's count)
 *     36 |   24 | txn      transaction records: the transaction id (24
 *        |      |          characters, no NUL). RECV: the store time of
 *        |      |          the message delivered (8 bytes, `aux`), then
 *        |      |          zeros; other records: zeros
 *     60 |    4 | crc      CRC32C of bytes [0, 60)
 * ------------------------------------------------------------------------ */

#define BC_REC_BYTES  64u
#define BC_TXN_ID_LEN 24u

enum bc_rec_type {
	BC_SENDING = 1,	     /* about to send it */
	BC_SENT = 2,	     /* the send's callback reported success */
	BC_RECV = 3,	     /* a pop returned it */
	BC_ACKING = 4,	     /* about to acknowledge it */
	BC_ACKED = 5,	     /* cfx_broker_ack returned 0 */
	BC_ACKFAIL = 6,	     /* cfx_broker_ack failed (a late ack): it comes back */
	BC_NACKED = 7,	     /* cfx_broker_change_invisible(0) returned 0 */
	BC_COMMITTING = 8,   /* about to commit its transaction */
	BC_COMMITTED = 9,    /* the commit's callback reported err 0 */
	BC_ROLLINGBACK = 10, /* about to roll it back */
	BC_ROLLEDBACK = 11,  /* the rollback returned 0 and its callback 0 */
	BC_REC_TYPE_MAX = 11,
};

struct bc_rec {
	uint8_t type;
	uint8_t stream;
	uint16_t queue;
	int32_t attempt;
	uint64_t id;
	int64_t t_ms;
	uint64_t offset;
	uint32_t run;
	int64_t aux;
	char txn[BC_TXN_ID_LEN]; /* not NUL-terminated; all zero if none */
};

const char *bcrash_rec_type_name(int type);
void bcrash_rec_encode(uint8_t out[BC_REC_BYTES], const struct bc_rec *r);
/* Returns NULL, or a static reason why the bytes are not a valid record. */
const char *bcrash_rec_decode(const uint8_t in[BC_REC_BYTES], struct bc_rec *r);
/* One line describing a record, for failure reports. */
void bcrash_rec_format(const struct bc_rec *r, char *out, size_t cap);

/* ------------------------------------------------------------------------
 * The roles
 * ------------------------------------------------------------------------ */

struct bcrash_worker_args {
	const char *dir; /* test directory: data/ and events.log inside */
	uint64_t seed;	 /* every random choice of the workload */
	uint32_t run;	 /* stamped into ids and records */
	int status_fd;	 /* the status pipe */
	const char *log_level;
	/* > 0: kill yourself (SIGKILL) just before the write of the POP journal
	 * that carries the broker's n-th "done" mark of a timer
	 * (kill_at_done_txn 0) or of a transaction (1). */
	uint32_t kill_at_done;
	int kill_at_done_txn;
	/* > 0: kill yourself in the n-th success callback of a delayed or
	 * transactional send or of a commit, before recording it. */
	uint32_t kill_in_callback;
};

/* Runs a worker until SIGTERM (clean close, exit 0) or SIGKILL. Never returns. */
CFX_NORETURN void bcrash_worker_main(const struct bcrash_worker_args *a);

struct bcrash_verify_args {
	const char *dir;	 /* test directory */
	uint32_t run;		 /* stamped into the verifier's own records */
	int64_t workers_gone_ms; /* wall time at which the last worker died */
	uint64_t seed;		 /* broker options of the verifier */
};

/* What one verification saw, and totals of the history so far. */
struct bcrash_verify_stats {
	/* at the restart */
	uint64_t open_ms;
	uint64_t txn_open;	 /* cfx_broker_txn_open right after the open */
	uint64_t timers_pending; /* cfx_broker_timers_pending right after the open */
	uint64_t checked_back;	 /* open transactions the check-backs named */
	uint64_t drained;	 /* messages the verifier received */
	uint64_t drain_ms;
	uint64_t torn_bytes; /* partial last record of the log, cut */
	/* history of the test directory */
	uint64_t records;
	uint64_t pop_sent, pop_acked, redeliveries;
	uint64_t delay_sent, timers_fired;
	uint64_t txn_sent, txn_committed, txn_rolled_back, txn_left_open, txn_orphans;
	uint64_t rerecovered; /* commits found done after a crash (callback lost) */
};

/*
 * Opens the broker in DIR/data (recovering it), checks it against the
 * event log, resolves the open transactions, drains every group, checks
 * again and closes it cleanly. A violation calls bcrash_fail (never
 * returns).
 */
void bcrash_verify(const struct bcrash_verify_args *a, struct bcrash_verify_stats *vs);

/* Reports a violation (or a failure of the test itself) and exits 1. @thread main */
CFX_PRINTF(1, 2) CFX_NORETURN void bcrash_fail(const char *fmt, ...);

/* ------------------------------------------------------------------------
 * Deterministic randomness (splitmix64), as in the store crash test
 * ------------------------------------------------------------------------ */

struct bc_rng {
	uint64_t s;
};

static inline uint64_t bcrash_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t bcrash_rng_next(struct bc_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return bcrash_mix64(r->s);
}

/* Uniform in [lo, hi]. */
static inline uint64_t bcrash_rng_range(struct bc_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + bcrash_rng_next(r) % (hi - lo + 1);
}

/* Sleeps `ms` milliseconds (restarting after signals). */
void bcrash_sleep_ms(int64_t ms);

#endif
