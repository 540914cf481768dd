/*
 * store.h - the storage engine: one commit log shared by all topics,
 * a batch index per queue, a key/id index, checkpoints and recovery.
 *
 * The store knows bytes, offsets and durability; it knows nothing of
 * groups or protocols. Front ends never include this header: they go
 * through the broker core (src/broker), which does.
 *
 * Threads. The store runs three threads of its own:
 *   - dispatcher: tails the log and builds the indexes; data becomes
 *     readable once dispatched;
 *   - flusher: group commit (one fdatasync completes every sync append it
 *     covers) and the periodic flush of async appends;
 *   - housekeeper: prepares the next segment ahead of time, pre-faults the
 *     mapped log ahead of the writer, writes checkpoints, applies retention.
 * Appends and reads may be called from any thread; they never wait for
 * disk I/O (sync appends complete later, through their callback).
 *
 * Layout and recovery: docs/storage.md.
 */
#ifndef CFX_STORE_STORE_H
#define CFX_STORE_STORE_H

#include "base/buf.h"
#include "base/common.h"
#include "base/fileops.h"
#include "store/batch.h"

struct cfx_store;

enum cfx_durability {
	CFX_DURABILITY_ASYNC = 0, /* acknowledged once in the page cache; flushed periodically */
	CFX_DURABILITY_SYNC = 1,  /* acknowledged once on disk (group commit) */
};

struct cfx_store_opts {
	const char *dir;		   /* data directory (created if missing) */
	uint64_t segment_bytes;		   /* commit-log segment size */
	uint32_t index_entries_per_file;   /* batch-index entries per index file */
	uint32_t key_index_entries;	   /* entries per key-index file */
	int64_t flush_interval_ms;	   /* async flush period */
	int64_t checkpoint_interval_ms;	   /* checkpoint period */
	int64_t retention_ms;		   /* delete segments older than this; 0 = keep */
	int64_t retention_bytes;	   /* keep the log under this size; 0 = no limit */
	int64_t retention_check_interval_ms;
	uint32_t msg_bytes_max;		   /* largest encoded message */
	uint32_t batch_bytes_max;	   /* largest encoded batch */
	uint32_t queues_per_topic_max;	   /* queue ids are < this */
	int verify_crc_on_read;		   /* check entry CRCs when reading */
	uint64_t populate_ahead_bytes;	   /* pre-fault this much of the log ahead of the writer */
	const struct cfx_file_ops *fops;   /* NULL: the real system calls */

	/*
	 * Called by the dispatcher after it made messages of (topic, queue)
	 * readable up to `end_offset`. Must be quick and must not call back
	 * into the store's append path. @thread dispatcher
	 */
	void (*on_dispatch)(void *arg, struct cfx_view topic, uint32_t queue_id,
			    uint64_t end_offset);
	void *on_dispatch_arg;
};

/* Fills `o` with the defaults documented in docs/configuration.md. */
void cfx_store_opts_default(struct cfx_store_opts *o);

/* What open found and did. */
struct cfx_store_recovery {
	int fresh;		    /* the directory held no log */
	int clean;		    /* last shutdown was clean: no scan was needed */
	int checkpoint_missing;	    /* indexes were rebuilt from the whole log */
	uint64_t log_start, log_end; /* log positions after recovery */
	uint32_t segments;
	uint32_t queues;
	uint64_t scanned_bytes;	    /* log bytes verified and re-indexed */
	uint64_t scanned_entries;
	uint64_t truncated_bytes;   /* torn or corrupt tail removed */
	const char *truncate_reason;
	int64_t elapsed_ms;
};

/*
 * Opens (creating if needed) the store in o->dir, recovering after a crash.
 * Returns 0, CFX_ELOCKED (another process has it), CFX_EVERSION (data of a
 * newer format: nothing is touched), CFX_ECORRUPT (damage recovery must not
 * guess about), or an I/O error. `rec` may be NULL.
 */
int cfx_store_open(const struct cfx_store_opts *o, struct cfx_store **out,
		   struct cfx_store_recovery *rec);

/*
 * Stops the threads, dispatches and flushes everything, writes a clean
 * checkpoint and frees the store. Sync appends still pending complete
 * first. Returns 0 or the error that prevented a clean checkpoint.
 */
int cfx_store_close(struct cfx_store *st);

/* ------------------------------------------------------------------------
 * Appending
 * ------------------------------------------------------------------------ */

struct cfx_append_result {
	int err;		/* 0, or why the append did not become durable */
	uint64_t log_pos;	/* position of the entry */
	uint64_t first_offset;	/* queue offset of the first message */
	uint32_t count;		/* messages appended */
	int64_t store_ms;
};

typedef void (*cfx_append_cb)(void *arg, const struct cfx_append_result *res);

/*
 * Appends `count` messages as one batch to (topic, queue_id).
 *
 * Returns 0 if the batch was written to the log: `cb` will be called
 * exactly once, before this function returns for ASYNC and from the
 * flusher thread for SYNC (its result's err is then CFX_EFSYNC if the
 * flush failed). Returns an error without calling `cb` if nothing was
 * written: CFX_ETOPIC, CFX_EQUEUE, CFX_EMSGSIZE, CFX_EBATCHSIZE,
 * CFX_EINVAL, CFX_ENOSPC, CFX_EFSYNC (the store is read-only after a
 * failed flush), CFX_ECLOSED.
 *
 * @thread any  @locks takes the append lock briefly
 */
int cfx_store_append(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
		     const struct cfx_msg *msgs, uint32_t count, enum cfx_durability durability,
		     cfx_append_cb cb, void *arg);

/*
 * Appends an already encoded RecordBatch v2 (`batch`, `len` bytes; its
 * baseOffset is overwritten). `info` describes it (cfx_batch_encode fills
 * one). Same contract as cfx_store_append.
 */
int cfx_store_append_batch(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			   uint8_t *batch, size_t len, const struct cfx_batch_info *info,
			   uint32_t sys_flags, enum cfx_durability durability, cfx_append_cb cb,
			   void *arg);

/* Appends and waits for the completion; for tools and tests. */
int cfx_store_append_wait(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			  const struct cfx_msg *msgs, uint32_t count,
			  enum cfx_durability durability, struct cfx_append_result *res);

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

/*
 * Messages returned by a read. The views point into mapped log segments,
 * which stay mapped until cfx_read_result_release: the read copies nothing.
 * Messages of compressed batches are the exception: their records are
 * decompressed into buffers the result owns, and their views point there,
 * valid until the same release (the buffers are reused by the next read
 * and freed by cfx_read_result_free).
 */
struct cfx_read_result {
	struct cfx_msg_view *msgs;
	uint32_t count;
	uint64_t next_offset;	/* where the next read should start */
	uint64_t start_offset;	/* earliest offset still stored in the queue */
	uint64_t end_offset;	/* offset after the last readable message */
	size_t bytes;		/* encoded bytes of the returned records */
	/*
	 * Filled by the lookups only (cfx_store_lookup_key, cfx_store_lookup_id):
	 * where msgs[i] is stored. Not meaningful after cfx_store_read, whose
	 * caller named the queue.
	 */
	struct cfx_msg_origin *origins;
	/* private */
	uint32_t cap;
	void **refs;
	uint32_t nrefs, cap_refs;
	uint32_t cap_origins;
	struct cfx_writer *bufs;  /* decompressed records; [0, nbufs) in use */
	uint32_t nbufs, cap_bufs; /* [nbufs, cap_bufs) kept for reuse */
};

/* The queue a looked-up message is stored in. */
struct cfx_msg_origin {
	struct cfx_view topic; /* points into the log; valid as long as the message views */
	uint32_t queue_id;
};

void cfx_read_result_init(struct cfx_read_result *res);
/*
 * Drops the references of the last read and its decompressed records
 * (small buffers are kept for the next read); the result can be reused.
 */
void cfx_read_result_release(struct cfx_read_result *res);
void cfx_read_result_free(struct cfx_read_result *res);

/*
 * Reads up to `max_msgs` messages and about `max_bytes` bytes (at least one
 * message if any is available) from (topic, queue_id) starting at
 * `offset`, which may point into the middle of a batch.
 *
 * Returns 0 (count may be 0 at the end of the queue), CFX_EOFFSET if
 * `offset` is below start_offset or beyond end_offset (both are filled
 * in), CFX_ETOPIC/CFX_EQUEUE for bad names, and for a batch that cannot be
 * returned: CFX_ECORRUPT (it fails its checksum or does not decode,
 * compressed records included) or CFX_EUNSUPPORTED (a compressed batch
 * that expands beyond CFX_COMPRESS_OUTPUT_BYTES_MAX, or uses an unknown
 * codec; the Kafka front end still serves it as stored). Compressed
 * batches (gzip, snappy, lz4, zstd) are otherwise decoded like any other.
 * Nothing of an unreadable batch is returned; next_offset is then the
 * offset after it, so a caller may deliberately skip it. Messages read
 * before such a batch are returned with 0. Releases whatever `res` held
 * before. @thread any
 */
int cfx_store_read(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
		   uint64_t offset, uint32_t max_msgs, size_t max_bytes,
		   struct cfx_read_result *res);

/*
 * As cfx_store_read, but whole batches whose index entry shows that none of
 * their messages has one of the tags (`tag_hashes`, cfx_tag_hash values; a
 * batch of mixed tags is read and left to the caller to filter) are skipped
 * without being read: next_offset moves past them, also when no message is
 * returned. Offsets between `offset`, the returned messages and next_offset
 * that are not returned were skipped. tag_hashes NULL = no filter.
 */
int cfx_store_read_tags(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			uint64_t offset, uint32_t max_msgs, size_t max_bytes,
			const uint32_t *tag_hashes, uint32_t ntags, struct cfx_read_result *res);

/* A stored batch as it is in the log: a RecordBatch v2 (baseOffset set). */
struct cfx_batch_ref {
	const uint8_t *p; /* in the mapped log: valid while `res` pins it */
	size_t len;
	uint64_t first_offset;
	uint32_t count;
	int64_t store_ms;
};

/*
 * The stored batches of (topic, queue_id) from the one holding `offset`
 * (which may begin before it), in order, until they total max_bytes (the
 * first is returned whatever its size) or max_refs of them: the bytes the
 * Kafka front end serves without decoding them, compressed ones included.
 * `res` pins the segments (release it with cfx_read_result_free) and gets
 * start_offset, end_offset and next_offset (after the last batch). Returns
 * 0 (*nout may be 0 at the end of the queue) or the errors of
 * cfx_store_read. @thread any
 */
int cfx_store_read_batches(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			   uint64_t offset, size_t max_bytes, struct cfx_batch_ref *out,
			   uint32_t max_refs, uint32_t *nout, struct cfx_read_result *res);

/*
 * The offset the next message appended to the queue will get (messages
 * below it may still be on their way to the index). A consumer that starts
 * "from now on" starts here.
 */
uint64_t cfx_store_queue_next_offset(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id);

/* Earliest stored and next-to-be-written offsets of a queue (0, 0 if unknown). */
int cfx_store_queue_bounds(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			   uint64_t *start, uint64_t *end);

/*
 * The offset of the first message stored at or after `ts_ms` in the queue
 * (end_offset if none). Store timestamps never decrease within the log.
 */
int cfx_store_offset_for_time(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			      int64_t ts_ms, uint64_t *offset);

/*
 * Messages of `topic` whose keys include `key`, newest first, at most
 * `max`. Results are appended to `res` (released first), with their queue
 * in res->origins.
 */
int cfx_store_lookup_key(struct cfx_store *st, struct cfx_view topic, struct cfx_view key,
			 uint32_t max, struct cfx_read_result *res);

/* The message(s) with id `msg_id`, newest first, at most `max`; res->origins says where. */
int cfx_store_lookup_id(struct cfx_store *st, struct cfx_view msg_id, uint32_t max,
			struct cfx_read_result *res);

/* ------------------------------------------------------------------------
 * Queues, state and maintenance
 * ------------------------------------------------------------------------ */

struct cfx_queue_info {
	struct cfx_view topic; /* valid during the callback */
	uint32_t queue_id;
	uint64_t start_offset;
	uint64_t end_offset;
};

/* Calls `fn` for every queue that has ever held data. @thread any */
void cfx_store_foreach_queue(struct cfx_store *st,
			     void (*fn)(void *arg, const struct cfx_queue_info *qi), void *arg);

struct cfx_store_stats {
	uint64_t log_start;	 /* first position still stored */
	uint64_t written_pos;	 /* end of the written log */
	uint64_t flushed_pos;	 /* durable below this position */
	uint64_t dispatched_pos; /* indexed below this position */
	uint64_t log_bytes;	 /* bytes of segment files */
	uint32_t segments;
	uint32_t queues;
	uint64_t appends;	 /* batches appended since open */
	uint64_t messages;	 /* messages appended since open */
	uint64_t fsyncs;	 /* fdatasync calls of the flusher */
	uint64_t fsync_ns;	 /* time spent in them */
	int err;		 /* sticky error (CFX_EFSYNC) or 0 */
};

void cfx_store_get_stats(struct cfx_store *st, struct cfx_store_stats *stats);

/*
 * Latency histograms, counted since open with fixed buckets. Bucket i
 * counts the events that took at most cfx_store_latency_bounds_ns[i] and
 * more than the bound before it; the last bucket (index
 * CFX_STORE_LATENCY_BUCKETS) counts the slower ones. The bounds go 1-2.5-5
 * per decade, from 1 us to 10 s:
 *
 *   1us 2.5us 5us 10us 25us 50us 100us 250us 500us 1ms 2.5ms 5ms 10ms 25ms
 *   50ms 100ms 250ms 500ms 1s 2.5s 5s 10s
 *
 * Recording costs two relaxed atomic adds (the bucket and the sum) and two
 * clock reads; the counters are read without stopping anyone, so a copy
 * may be a few events off between its buckets and its sum.
 */
#define CFX_STORE_LATENCY_BUCKETS 22
extern const int64_t cfx_store_latency_bounds_ns[CFX_STORE_LATENCY_BUCKETS];

struct cfx_latency_hist {
	uint64_t counts[CFX_STORE_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative */
	uint64_t sum_ns;				 /* total time of the events */
};

struct cfx_store_latency {
	/* Every successful append (cfx_store_append, cfx_store_append_batch):
	 * from asking for the append lock to releasing it, so lock waits count. */
	struct cfx_latency_hist append;
	/* Every fdatasync of a commit-log segment (flusher, checkpoints). */
	struct cfx_latency_hist flush;
};

/* Copies the latency histograms. @thread any */
void cfx_store_get_latency(struct cfx_store *st, struct cfx_store_latency *out);

/* Flushes everything written so far to disk and waits. */
int cfx_store_sync(struct cfx_store *st);

/* Waits until everything written so far is dispatched (readable). */
int cfx_store_wait_dispatched(struct cfx_store *st, int64_t timeout_ms);

/* Writes a checkpoint now (also done periodically). */
int cfx_store_checkpoint(struct cfx_store *st);

/* Applies retention now (also done periodically). Returns segments deleted. */
int cfx_store_retention_run(struct cfx_store *st);

#endif
