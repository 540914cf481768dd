/*
 * store_int.h - structures shared by the files of the store module only.
 *
 * Lock order (outer first): append_mu -> flush_mu; append_mu -> segs.lock;
 * queues_lock -> queue.mu; keys_mu alone; disp_mu, hk_mu alone.
 * No lock is held across an fdatasync except a queue's or the key index's
 * own mutex at checkpoint time (which only delays that queue's indexing).
 */
#ifndef CFX_STORE_STORE_INT_H
#define CFX_STORE_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/fileops.h"
#include "base/log.h"
#include "store/format.h"
#include "store/store.h"

/* Logs corruption with the file, offset and source line (never silent). */
#define STORE_CORRUPT(path, off, why) \
	cfx_log_error("store: corrupt data in %s at offset %llu: %s (%s:%d)", (path), \
		      (unsigned long long)(off), (why), __FILE__, __LINE__)

/* ------------------------------------------------------------------------
 * Segments (segment.c)
 * ------------------------------------------------------------------------ */

struct seg {
	uint64_t base;		   /* log position of byte 0 */
	uint64_t size;		   /* bytes (== file size) */
	int fd;
	uint8_t *map;		   /* read-write shared mapping of the whole file */
	char *path;
	atomic_int refs;	   /* the segment list holds one */
	atomic_int deleted;	   /* unlink when the last reference goes */
	int64_t max_store_ms;	   /* newest store time (from the end marker once closed) */
	atomic_uint_fast64_t populated; /* file offset pre-faulted up to */
	const struct cfx_file_ops *fops;
};

/* The ordered list of live segments. */
struct seglist {
	pthread_rwlock_t lock;
	struct seg **v;
	uint32_t n, cap;
};

int seg__create(const struct cfx_file_ops *fops, const char *dir, uint64_t base, uint64_t size,
		struct seg **out);
int seg__open(const struct cfx_file_ops *fops, const char *path, uint64_t expect_base,
	      struct seg **out);
void seg__ref(struct seg *seg);
void seg__unref(struct seg *seg);
/* Zeroes the segment from file offset `off` to its end (drops a torn tail). */
int seg__truncate_tail(struct seg *seg, uint64_t off);
/* The path of the segment starting at `base` in `dir`. */
void seg__path(char *buf, size_t len, const char *dir, uint64_t base);

void seglist__init(struct seglist *sl);
void seglist__destroy(struct seglist *sl);
void seglist__push(struct seglist *sl, struct seg *seg);
/* Returns a new reference to the segment holding `pos`, or NULL. */
struct seg *seglist__find(struct seglist *sl, uint64_t pos);

/* ------------------------------------------------------------------------
 * Batch index of one queue (cq.c)
 * ------------------------------------------------------------------------ */

struct idxfile {
	uint64_t first_ord; /* ordinal of the file's first entry */
	uint32_t cap;	    /* entries the file holds */
	int fd;
	uint8_t *map;
	int dirty;	    /* written since the last checkpoint */
};

struct queue {
	struct queue *hnext;
	char *topic;
	uint16_t topic_len;
	uint32_t id;
	char *dir;

	/* append side, under st->append_mu */
	uint64_t next_offset;

	/* index side, under mu */
	pthread_mutex_t mu;
	struct idxfile **files;
	uint32_t nfiles, capfiles;
	uint64_t entries;	 /* ordinal of the next entry */
	atomic_uint_fast64_t end_offset; /* readable below this offset */
	atomic_uint_fast64_t start_offset; /* earliest offset still in the log */
};

struct cfx_store;

/*
 * Opens the index of a queue from its directory, keeping the valid prefix
 * of entries whose log position is below `limit` and zeroing the rest.
 */
int cq__open(struct cfx_store *st, struct queue *q, uint64_t limit);
void cq__close(struct cfx_store *st, struct queue *q);
/* Appends one entry (creating files as needed). @locks q->mu held */
int cq__append(struct cfx_store *st, struct queue *q, const struct cfx_idx_entry *ie);
/* Copies the entry with ordinal `ord`. @locks q->mu held */
int cq__get(struct queue *q, uint64_t ord, struct cfx_idx_entry *ie);
/* Ordinal of the entry holding `offset` (the last entry with first_offset <= offset). */
int cq__find_offset(struct queue *q, uint64_t offset, uint64_t *ord);
/* Ordinal of the first entry with store_ms >= ts (== q->entries if none). */
uint64_t cq__find_time(struct queue *q, int64_t ts);
/* Ordinal of the first entry with log_pos >= pos (== q->entries if none). */
uint64_t cq__find_pos(struct queue *q, uint64_t pos);
/* Ordinal of the first entry still present (files may have been deleted). */
static inline uint64_t cq__first_ord(const struct queue *q)
{
	return q->nfiles ? q->files[0]->first_ord : q->entries;
}
/* Drops whole index files that only point below `log_start`. @locks q->mu */
void cq__retain(struct cfx_store *st, struct queue *q, uint64_t log_start);
/* fdatasyncs dirty files. @locks q->mu held */
int cq__sync(struct cfx_store *st, struct queue *q);

/* ------------------------------------------------------------------------
 * Key index (keyidx.c)
 * ------------------------------------------------------------------------ */

struct kixfile {
	uint64_t first_ord; /* ordinal of the file's first entry */
	uint32_t slot_count, entry_cap;
	uint32_t count;	    /* entries in use */
	uint64_t max_pos;   /* largest log position indexed */
	int fd;
	uint8_t *map;
	size_t map_bytes;
	int dirty;
};

struct keyidx {
	pthread_mutex_t mu;
	struct kixfile **files;
	uint32_t n, cap;
	char *dir;
	uint64_t entries; /* ordinal of the next entry */
};

int keyidx__open(struct cfx_store *st, uint64_t limit);
void keyidx__close(struct cfx_store *st);
/* Indexes one key or id at log_pos. @locks keys.mu held */
int keyidx__add(struct cfx_store *st, uint64_t hash, uint64_t log_pos);
/* Collects up to `max` candidate positions, newest first. @locks keys.mu held */
uint32_t keyidx__lookup(struct cfx_store *st, uint64_t hash, uint64_t *pos, uint32_t max);
int keyidx__sync(struct cfx_store *st);
void keyidx__retain(struct cfx_store *st, uint64_t log_start);

/* ------------------------------------------------------------------------
 * Flushing (flush.c)
 * ------------------------------------------------------------------------ */

struct sync_waiter {
	uint64_t end_pos; /* durable once flushed_pos >= end_pos */
	cfx_append_cb cb;
	void *arg;
	struct cfx_append_result res;
};

/* ------------------------------------------------------------------------
 * Latency histograms (store.c): the live side of cfx_store_latency
 * ------------------------------------------------------------------------ */

struct lat_hist {
	atomic_uint_fast64_t counts[CFX_STORE_LATENCY_BUCKETS + 1];
	atomic_uint_fast64_t sum_ns;
};

/* Counts one event that took `ns` nanoseconds. @thread any, lock-free */
void store__latency_record(struct lat_hist *h, int64_t ns);

/* ------------------------------------------------------------------------
 * The store
 * ------------------------------------------------------------------------ */

struct cfx_store {
	struct cfx_store_opts o;
	const struct cfx_file_ops *fops;
	char *dir;
	char *log_dir;
	char *queues_dir;
	int lock_fd;

	/* log */
	struct seglist segs;
	pthread_mutex_t append_mu;
	struct seg *active;		 /* under append_mu */
	uint64_t write_pos;		 /* under append_mu */
	int64_t last_store_ms;		 /* under append_mu */
	atomic_uint_fast64_t written_pos; /* published end of the written log */
	atomic_uint_fast64_t log_start;	 /* first position still stored */
	atomic_int err;			 /* sticky: CFX_EFSYNC after a failed flush */

	/* queues: hash table keyed by (topic, id) */
	pthread_rwlock_t queues_lock;
	struct queue **qtab;
	uint32_t qcap, qcount;

	/* flusher */
	pthread_t flush_thr;
	pthread_mutex_t flush_mu;
	pthread_cond_t flush_cv;      /* wakes the flusher */
	pthread_cond_t flushed_cv;    /* signals cfx_store_sync callers */
	struct sync_waiter *waiters;  /* ring, under flush_mu */
	uint32_t wcap, whead, wcount;
	atomic_uint_fast64_t flushed_pos;
	uint64_t flush_requested;     /* under flush_mu: flush through this position */
	uint32_t flush_wake_at;	      /* under flush_mu: waiter count that wakes the flusher */
	atomic_uint_fast64_t fsyncs;
	atomic_uint_fast64_t fsync_ns;	/* total time spent in the flusher's fdatasync calls */

	/* dispatcher */
	pthread_t disp_thr;
	pthread_mutex_t disp_mu;
	pthread_cond_t disp_cv;	     /* wakes the dispatcher */
	pthread_cond_t dispatched_cv; /* signals waiters for dispatch */
	atomic_int disp_sleeping;    /* set under disp_mu before waiting; read by appenders */
	atomic_uint_fast64_t dispatched_pos;
	/* Index totals matching dispatched_pos, for checkpoints (under disp_mu). */
	uint64_t disp_idx_entries;
	uint64_t disp_key_entries;
	/* Running totals (dispatcher thread or recovery only). */
	uint64_t idx_entries;

	/* key index */
	struct keyidx keys;

	/* housekeeper */
	pthread_t hk_thr;
	pthread_mutex_t hk_mu;
	pthread_cond_t hk_cv;
	int hk_kick;		     /* under hk_mu: work requested */
	atomic_int hk_pending;	     /* a kick is on its way (cheap test for appenders) */
	pthread_mutex_t prep_mu;     /* segment creation; held across its I/O */
	struct seg *prepared;	     /* next segment, under prep_mu */
	uint64_t active_base;	     /* under prep_mu: base of the newest segment handed out */
	int populate_ok;	     /* MADV_POPULATE_READ works here */
	pthread_mutex_t ckpt_mu;     /* serializes checkpoints and retention */
	atomic_uint_fast64_t ckpt_durable_pos; /* durable_pos of the last checkpoint */

	atomic_int stopping;
	atomic_uint_fast64_t appends, messages;
	struct lat_hist append_lat;   /* successful appends, lock wait included */
	struct lat_hist fsync_lat;    /* each fdatasync of a log segment */
};

/* Queue map (store.c) */
struct queue *store__queue_get(struct cfx_store *st, struct cfx_view topic, uint32_t id,
			       int create);

/* Dispatch of one entry into the indexes (dispatch.c); used by recovery too. */
int dispatch__entry(struct cfx_store *st, const struct cfx_entry *e, int recovering);
void *dispatch__thread(void *arg);
void dispatch__kick(struct cfx_store *st);

/* Flusher (flush.c) */
void *flush__thread(void *arg);
void flush__add_waiter(struct cfx_store *st, const struct sync_waiter *w);
void flush__kick(struct cfx_store *st);
/* fdatasyncs the log through `pos`. @thread any but the appender */
int flush__log_through(struct cfx_store *st, uint64_t pos);

/* Housekeeper (housekeep.c) */
void *housekeep__thread(void *arg);
void housekeep__kick(struct cfx_store *st);
/* Takes the prepared next segment or creates it now. @locks append_mu held */
int housekeep__next_segment(struct cfx_store *st, uint64_t base, struct seg **out);
int housekeep__checkpoint(struct cfx_store *st, int clean);

/* Recovery (recover.c) */
int recover__run(struct cfx_store *st, struct cfx_store_recovery *rec);

#endif
