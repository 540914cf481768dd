/*
 * lq.h - light queues: millions of small, named, durable queues whose
 * entries are references to messages already in the commit log (topic
 * index, queue, offset, flags: 16 bytes), never copies.
 *
 * Protocol-neutral. The MQTT front end keeps one per persistent session
 * (named by client id) and one per retained message (length one); others
 * may use them the same way. What it is not: a message store (the commit
 * log is), a subscription index, or a delivery engine: readers pull.
 *
 * Memory is the point: an idle queue is one small allocation holding its
 * name plus a slot in the id array and in the name table (about 64 bytes
 * with a short name, measured in tests/unit/broker/test_lq.c); an entry
 * ring exists only while a queue holds entries.
 *
 * Durability: every change is journaled in <dir>/journal (CRC-32C framed
 * records, written with write(2) before the call returns, so a kill -9
 * loses nothing acknowledged; fdatasync every flush_interval_ms bounds
 * what a power failure can forget) and compacted into <dir>/snapshot.
 * Record layouts: docs/design/mqtt.md, "Light queues", and lq.c.
 *
 * Threads: every function may be called from any thread, except that
 * cfx_lq_close must be the last call. One mutex guards the state; journal
 * writes happen outside it (group commit: one write(2) carries the records
 * of every caller waiting meanwhile).
 */
#ifndef CFX_BROKER_LQ_H
#define CFX_BROKER_LQ_H

#include "base/buf.h"
#include "base/common.h"
#include "base/fileops.h"

/* One entry: a reference to a stored message. The engine never reads it. */
struct cfx_lq_entry {
	uint16_t topic;	 /* index of the Conflux topic, in a table the caller defines */
	uint16_t flags;	 /* the caller's (MQTT: QoS, retain) */
	uint32_t queue;	 /* queue of that topic */
	uint64_t offset; /* offset of the message in that queue */
};
_Static_assert(sizeof(struct cfx_lq_entry) == 16, "light queue entries are 16 bytes");

#define CFX_LQ_NAME_BYTES_MAX 65535u
#define CFX_LQ_QUEUES_LIMIT (1u << 30)	    /* ceiling of queues_max */
#define CFX_LQ_ENTRIES_LIMIT (1u << 24)	    /* ceiling of entries_max_per_queue */
#define CFX_LQ_POSITIONS_MAX (1u << 20)	    /* (topic, queue) positions */

struct cfx_lq_opts {
	const char *dir;		 /* created if missing; holds journal and snapshot */
	const struct cfx_file_ops *fops; /* NULL: cfx_fileops_real */
	uint32_t entries_max_per_queue;	 /* beyond it the oldest entry is dropped */
	uint64_t queues_max;		 /* live queues at most; ids are 1..queues_max */
	/*
	 * > 0: a background thread fdatasyncs the journal this often (and
	 *      compacts it when due);
	 * = 0: every write is fdatasynced before the call returns (the thread
	 *      only compacts);
	 * < 0: no thread: the owner calls cfx_lq_sync and cfx_lq_compact.
	 */
	int64_t flush_interval_ms;
	uint64_t journal_bytes_min; /* never compact a journal smaller than this */
};

/* Defaults: 1000 entries per queue, 10,000,000 queues, 100 ms, 64 MiB. */
void cfx_lq_opts_default(struct cfx_lq_opts *o);

struct cfx_lqs;

/*
 * Opens the light queues of o->dir: loads <dir>/snapshot, replays
 * <dir>/journal (a torn or damaged tail is cut off with a warning; a
 * damaged snapshot, or a journal that does not follow it, is refused with
 * CFX_ECORRUPT; another format version with CFX_EVERSION). Returns 0 and
 * a new handle in *out, CFX_EINVAL for bad options, or an I/O error.
 */
int cfx_lq_open(const struct cfx_lq_opts *o, struct cfx_lqs **out);

/*
 * Compacts the journal if due, syncs it and frees everything. No other
 * call may run or follow. Returns 0, or the first journal error seen
 * (then what came after that error may be lost).
 */
int cfx_lq_close(struct cfx_lqs *lqs);

/*
 * Finds the queue `name` (1..CFX_LQ_NAME_BYTES_MAX bytes, borrowed until
 * return), or creates it (journaled) if `create`. Returns 0 with its id
 * (> 0) in *id; CFX_ENOENT if absent and !create; CFX_EINVAL for a bad
 * name; CFX_E2BIG when queues_max queues exist. Ids of dropped queues are
 * reused.
 */
int cfx_lq_get(struct cfx_lqs *lqs, struct cfx_view name, int create, uint32_t *id);

/* Drops queue `id` and its entries (journaled). 0 or CFX_ENOENT. */
int cfx_lq_drop(struct cfx_lqs *lqs, uint32_t id);

/*
 * Appends a copy of `e`; its sequence number goes to *seq (may be NULL).
 * Sequences start at 1 and grow by one per push. A queue holding
 * entries_max_per_queue entries first drops its oldest (counted in
 * stats.dropped). Journaled before return. 0, CFX_ENOENT, or CFX_ERANGE
 * once the sequences reach 2^63 (a queue's lifetime; not in practice).
 */
int cfx_lq_push(struct cfx_lqs *lqs, uint32_t id, const struct cfx_lq_entry *e, uint64_t *seq);

/*
 * Replaces the whole content by `e` (retained messages): the entries go
 * (acknowledged, not counted as dropped), then `e` is pushed. e == NULL
 * only clears. Journaled as one record. 0, CFX_ENOENT or CFX_ERANGE (as push).
 */
int cfx_lq_set(struct cfx_lqs *lqs, uint32_t id, const struct cfx_lq_entry *e);

/*
 * Copies up to `max` entries not yet acknowledged, from sequence `from`
 * on (below the head reads from the head), into out[] and their sequences
 * into seqs[] (may be NULL); *n gets the number copied. 0 or CFX_ENOENT.
 */
int cfx_lq_read(struct cfx_lqs *lqs, uint32_t id, uint64_t from, struct cfx_lq_entry *out,
		uint64_t *seqs, uint32_t max, uint32_t *n);

/*
 * Acknowledges the entry `seq`, in any order; the head moves past every
 * acknowledged entry at its front. Journaled before return. 0; CFX_ENOENT
 * if the queue or an unacknowledged entry `seq` does not exist.
 */
int cfx_lq_ack(struct cfx_lqs *lqs, uint32_t id, uint64_t seq);

/* [*head, *tail): the sequences not yet acknowledged lie there. 0 or CFX_ENOENT. */
int cfx_lq_bounds(struct cfx_lqs *lqs, uint32_t id, uint64_t *head, uint64_t *tail);

/*
 * Calls fn(arg, name, id) for every queue whose name starts with `prefix`
 * (all of them for an empty prefix), in id order. O(queues). `name` is
 * valid during the call only. fn runs under the engine's mutex: it must
 * not call cfx_lq_* functions, and should be quick.
 */
void cfx_lq_foreach(struct cfx_lqs *lqs, struct cfx_view prefix,
		    void (*fn)(void *arg, struct cfx_view name, uint32_t id), void *arg);

/*
 * A durable u64 per (topic, queue) in the same journal (the MQTT fan-out
 * keeps its tail positions there, after the pushes they caused). set: 0,
 * or CFX_E2BIG beyond CFX_LQ_POSITIONS_MAX keys. get: 0 or CFX_ENOENT.
 */
int cfx_lq_set_pos(struct cfx_lqs *lqs, uint16_t topic, uint32_t queue, uint64_t offset);
int cfx_lq_get_pos(struct cfx_lqs *lqs, uint16_t topic, uint32_t queue, uint64_t *offset);

struct cfx_lq_stats {
	uint64_t queues;	 /* live queues */
	uint64_t entries;	 /* entries not acknowledged, all queues */
	uint64_t dropped;	 /* entries dropped by overflow since open */
	uint64_t bytes;		 /* heap bytes of the in-memory state (requested sizes) */
	uint64_t journal_bytes;	 /* size of the current journal */
	uint64_t snapshots;	 /* compactions since open */
	uint64_t replay_ignored; /* replayed records that did not apply (damage) */
};
void cfx_lq_stats(struct cfx_lqs *lqs, struct cfx_lq_stats *st);

/*
 * fdatasyncs the journal if written since the last sync. A failure makes
 * the journal's error sticky: later changes fail with it until reopened.
 * Returns 0 or that error (CFX_EFSYNC).
 */
int cfx_lq_sync(struct cfx_lqs *lqs);

/*
 * Writes a snapshot of the whole state (snapshot.tmp, fsync, rename, dir
 * fsync) and restarts the journal, if `force` or if the journal outgrew
 * both journal_bytes_min and twice the state's estimated snapshot size.
 * Reads go on meanwhile; changes wait for the snapshot to be on disk.
 * Returns 0 or an I/O error.
 */
int cfx_lq_compact(struct cfx_lqs *lqs, int force);

#endif
