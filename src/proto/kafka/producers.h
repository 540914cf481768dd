/*
 * producers.h - Kafka producer ids and idempotent-producer sequence state
 * (docs/design/kafka.md, "Idempotent producers").
 *
 * Two things, both for the idempotent producer (KIP-98):
 *
 *   - producer ids for InitProducerId: handed out in increasing order and
 *     never reused across restarts. The high-water mark lives in
 *     <data dir>/kafka/producer_ids, replaced atomically; ids are reserved
 *     a block at a time (KF_PID_BLOCK), so the file is written once per
 *     block, and a restart skips what is left of the block.
 *
 *   - per (producer id, topic, partition), the sequence ranges of the last
 *     KF_SEQ_HISTORY batches and their base offsets, to find duplicates
 *     (answered with the original offset, appended once) and gaps
 *     (OUT_OF_ORDER_SEQUENCE_NUMBER), and the producer's epoch, to fence
 *     stale batches (INVALID_PRODUCER_EPOCH).
 *
 * The sequence state is in memory only: after a restart, or once a producer
 * has been idle for KF_PRODUCER_IDLE_MS or evicted by the count limits, its
 * next batch on a partition is taken as the new start of its sequence (as
 * Kafka does when producer state has expired). Nothing here knows the wire
 * format or the store.
 *
 * Appends complete asynchronously, so a batch goes through two steps: at
 * decode time kf_producers_begin judges it against everything accepted
 * before (pending ones included) and records it as pending; when its append
 * completes, kf_producers_complete fills in its offset (or, if the append
 * failed, forgets it). The caller holds the table's lock across begin and
 * the store append, so that batches of one producer and partition reach
 * the log in the order they were judged even if they arrive on two
 * connections at once.
 *
 * @thread any: one mutex guards the table.
 */
#ifndef CFX_PROTO_KAFKA_PRODUCERS_H
#define CFX_PROTO_KAFKA_PRODUCERS_H

#include <stdint.h>

#include "base/buf.h"

/* Limits (the defaults of struct kf_producers_limits). */
#define KF_PRODUCERS_MAX 10000		       /* producer ids with state */
#define KF_PRODUCER_STATES_MAX 100000	       /* (producer, partition) states in all */
#define KF_PRODUCER_STATES_PER_ID_MAX 10000    /* partitions one producer id keeps */
#define KF_PRODUCER_IDLE_MS (15 * 60 * 1000)   /* state of a producer idle this long goes */
#define KF_SEQ_HISTORY 5		       /* batches remembered per partition (Kafka's 5) */
#define KF_PID_BLOCK 1000		       /* producer ids reserved per file write */
#define KF_PRODUCER_EPOCH_MAX (INT16_MAX - 1)  /* past it: a new producer id */

struct kf_producers;

struct kf_producers_limits {
	uint32_t producers_max;
	uint32_t states_max;
	uint32_t states_per_id_max;
	int64_t idle_ms;
};

/*
 * `dir` is the data directory (the file is <dir>/kafka/producer_ids,
 * created on the first InitProducerId); NULL keeps ids in memory only
 * (tests). `lim` NULL: the defaults above. Returns a new table.
 */
struct kf_producers *kf_producers_new(const char *dir, const struct kf_producers_limits *lim);
void kf_producers_free(struct kf_producers *ps);

/*
 * InitProducerId without a transactional id. `have_id` / `have_epoch` are
 * the request's ProducerId / ProducerEpoch (v3+; -1 / -1 before): both -1
 * asks for a fresh id (epoch 0); an id this broker handed out asks for an
 * epoch bump (max of the given and the known epoch, plus one; a fresh id
 * once the epoch would pass KF_PRODUCER_EPOCH_MAX); an id it never handed
 * out gets a fresh one. Returns a Kafka error code: NONE (*id, *epoch
 * set), INVALID_REQUEST (only one of the two is -1), or
 * COORDINATOR_LOAD_IN_PROGRESS (the next block of ids could not be
 * reserved on disk: the client retries). May write the file (fsync).
 * @locks takes the table's lock
 */
int16_t kf_producers_init_id(struct kf_producers *ps, int64_t have_id, int16_t have_epoch,
			     int64_t now_ms, int64_t *id, int16_t *epoch);

/* ------------------------------------------------------------------------
 * Sequence checks
 * ------------------------------------------------------------------------ */

/* An idempotent batch, as its RecordBatch header and the request say. */
struct kf_seq_batch {
	int64_t producer_id;	/* >= 0 */
	int16_t epoch;
	int32_t base_sequence;
	int32_t last_offset_delta; /* the batch covers base .. base + delta (wrapping) */
	struct cfx_view topic;
	int32_t partition;
};

/*
 * A duplicate of a batch whose append is still out waits for it: `done`
 * is called once, with the original append's result (err 0 and its base
 * offset, or its cfx error), from the thread that completes the original,
 * never under the table's lock. Embedded in the caller's own structure.
 */
struct kf_seq_waiter {
	struct kf_seq_waiter *next;
	void (*done)(struct kf_seq_waiter *w, int err, int64_t offset);
};

enum kf_seq_verdict {
	KF_SEQ_APPEND = 1,    /* in order: append it; *serial names its pending entry */
	KF_SEQ_DUPLICATE = 2, /* seen and stored: answer NONE with *offset, append nothing */
	KF_SEQ_WAIT = 3,      /* seen, its append still out: `w` is called later */
	KF_SEQ_REJECT = 4,    /* *err: OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH,
			       * INVALID_RECORD (no epoch or sequence) */
};

struct kf_seq_result {
	int16_t err;	 /* REJECT: the Kafka error code */
	int64_t offset;	 /* DUPLICATE: the original's base offset */
	uint64_t serial; /* APPEND: for kf_producers_abort / kf_producers_complete */
};

/* The lock kf_producers_begin and kf_producers_abort need; hold it across
 * begin and the store append. Nothing else in the table may be called with it held. */
void kf_producers_lock(struct kf_producers *ps);
void kf_producers_unlock(struct kf_producers *ps);

/*
 * Judges batch `b` (rules in docs/kafka.md): returns an enum kf_seq_verdict
 * and fills `res`. On KF_SEQ_WAIT the waiter `w` (its `done` set by the
 * caller) is registered; it must stay valid until called. On KF_SEQ_APPEND
 * the batch is recorded as pending: the caller must call exactly one of
 * kf_producers_abort (still under the lock, if the append was not even
 * written) or kf_producers_complete (once it completed). @locks held
 */
int kf_producers_begin(struct kf_producers *ps, const struct kf_seq_batch *b, int64_t now_ms,
		       struct kf_seq_waiter *w, struct kf_seq_result *res);

/* The append of the batch just begun failed at once: forget it (the
 * sequence is not advanced). @locks held */
void kf_producers_abort(struct kf_producers *ps, const struct kf_seq_batch *b, uint64_t serial);

/*
 * The append of a batch begun with `serial` completed: err 0 and its base
 * offset, or a cfx error. A failed append is forgotten and the partition's
 * next batch is taken as a new start of its sequence (the client retries
 * the failed one; see docs/kafka.md). Calls the waiters of its duplicates.
 * @locks takes the table's lock
 */
void kf_producers_complete(struct kf_producers *ps, int64_t producer_id, struct cfx_view topic,
			   int32_t partition, uint64_t serial, int err, int64_t offset);

/* Counts, for tests and metrics. @locks takes the table's lock */
void kf_producers_counts(struct kf_producers *ps, uint32_t *producers, uint32_t *states);

#endif
