/*
 * recover.c - bringing the store to a consistent state at open.
 *
 * Invariants after recovery (docs/storage.md, "Recovery"):
 *  1. The log is a sequence of valid entries from log_start to write_pos,
 *     followed by zeros; nothing after write_pos survives.
 *  2. Every index holds exactly the entries of the log below write_pos.
 *  3. A checkpoint with durable_pos = write_pos and clean = 0 is on disk.
 *
 * Algorithm:
 *  - open every segment (a header of a newer format refuses the open);
 *  - read the checkpoint; without one, drop the indexes and rebuild them
 *    from the whole log;
 *  - open each index, keeping its valid entries below the checkpoint's
 *    durable_pos; if they hold fewer entries than the checkpoint vouched
 *    for, files went missing: rebuild from the whole log;
 *  - scan the log from durable_pos, verifying each entry's CRC and
 *    re-dispatching it, up to the first entry that is not valid: the end;
 *  - zero everything after the end and delete later segments.
 * After a clean shutdown durable_pos is the end of the log: the scan reads
 * one word and stops.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/err.h"
#include "store/files.h"
#include "store/store_int.h"

static int read_checkpoint(struct cfx_store *st, struct cfx_checkpoint *c, int *found)
{
	char path[PATH_MAX];
	uint8_t buf[CFX_CKPT_BYTES + 1];
	ssize_t n;
	int fd, rc;

	*found = 0;
	snprintf(path, sizeof path, "%s/checkpoint", st->dir);
	fd = st->fops->open(path, O_RDONLY, 0);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return cfx_err_from_errno(-fd);
	n = st->fops->pread(fd, buf, sizeof buf, 0);
	st->fops->close(fd);
	if (n < 0)
		return cfx_err_from_errno((int)-n);
	rc = cfx_checkpoint_decode(buf, (size_t)n, c);
	if (rc == CFX_EVERSION) {
		cfx_log_error("store: %s was written by a newer version of Conflux; refusing to "
			      "open the store",
			      path);
		return rc;
	}
	if (rc) {
		cfx_log_warn("store: %s is damaged; rebuilding the indexes from the log", path);
		return 0;
	}
	*found = 1;
	return 0;
}

static int open_segments(struct cfx_store *st)
{
	uint64_t *bases;
	uint32_t n;
	int rc;

	store__remove_tmp_files(st->log_dir);
	rc = store__list_numbered(st->log_dir, ".seg", &bases, &n);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		struct seg *seg;

		seg__path(path, sizeof path, st->log_dir, bases[i]);
		rc = seg__open(st->fops, path, bases[i], &seg);
		if (rc)
			break;
		if (st->segs.n) {
			struct seg *prev = st->segs.v[st->segs.n - 1];
			if (prev->base + prev->size != seg->base) {
				STORE_CORRUPT(path, 0, "segment does not follow its predecessor");
				seg__unref(seg);
				rc = CFX_ECORRUPT;
				break;
			}
		}
		seglist__push(&st->segs, seg);
	}
	cfx_free(bases);
	return rc;
}

/* Opens every queue directory: queues/<topic>/<id>/. */
static int open_queues(struct cfx_store *st, uint64_t limit)
{
	char path[PATH_MAX];
	struct dirent *te, *qe;
	DIR *td, *qd;
	int rc = 0;

	td = opendir(st->queues_dir);
	if (!td)
		return errno == ENOENT ? 0 : cfx_err_from_errno(errno);
	while (!rc && (te = readdir(td)) != NULL) {
		struct cfx_view topic = CFX_VIEW_STR(te->d_name);
		if (te->d_name[0] == '.' || !cfx_topic_name_is_valid(topic))
			continue;
		snprintf(path, sizeof path, "%s/%s", st->queues_dir, te->d_name);
		qd = opendir(path);
		if (!qd)
			continue;
		while (!rc && (qe = readdir(qd)) != NULL) {
			char *end;
			unsigned long id;
			struct queue *q;

			if (qe->d_name[0] < '0' || qe->d_name[0] > '9')
				continue;
			errno = 0;
			id = strtoul(qe->d_name, &end, 10);
			if (*end || errno || id >= st->o.queues_per_topic_max)
				continue;
			q = store__queue_get(st, topic, (uint32_t)id, 1);
			if (!q)
				continue;
			pthread_mutex_lock(&q->mu);
			rc = cq__open(st, q, limit);
			st->idx_entries += q->entries;
			pthread_mutex_unlock(&q->mu);
		}
		closedir(qd);
	}
	closedir(td);
	return rc;
}

static void close_queues(struct cfx_store *st)
{
	pthread_rwlock_wrlock(&st->queues_lock);
	for (uint32_t i = 0; i < st->qcap; i++) {
		struct queue *q = st->qtab[i];
		while (q) {
			struct queue *next = q->hnext;
			cq__close(st, q);
			pthread_mutex_destroy(&q->mu);
			cfx_free(q->topic);
			cfx_free(q->dir);
			cfx_free(q);
			q = next;
		}
		st->qtab[i] = NULL;
	}
	st->qcount = 0;
	pthread_rwlock_unlock(&st->queues_lock);
	st->idx_entries = 0;
}

/* Opens the indexes, keeping what lies below `limit`. */
static int open_indexes(struct cfx_store *st, uint64_t limit)
{
	int rc = open_queues(st, limit);
	if (!rc)
		rc = keyidx__open(st, limit);
	return rc;
}

static int drop_indexes(struct cfx_store *st)
{
	int rc;

	close_queues(st);
	keyidx__close(st);
	st->keys.entries = 0;
	rc = store__rmtree(st->queues_dir);
	if (!rc)
		rc = store__rmtree(st->keys.dir);
	if (!rc)
		rc = cfx_err_from_errno(-cfx_mkdir_p(st->fops, st->queues_dir));
	if (!rc)
		rc = cfx_err_from_errno(-cfx_mkdir_p(st->fops, st->keys.dir));
	return rc;
}

/*
 * Does index entry `ord` of `q` describe the log entry it points at? Checks
 * the bounds of the position and the entry's topic, queue, offsets and size.
 */
static int idx_entry_matches_log(struct cfx_store *st, struct queue *q, uint64_t ord,
				 uint64_t durable, struct cfx_idx_entry *ie)
{
	struct cfx_entry e;
	struct seg *seg;
	int ok;

	if (cq__get(q, ord, ie) != 0 || ie->log_pos >= durable || ie->log_pos % CFX_ENTRY_ALIGN)
		return 0;
	seg = seglist__find(&st->segs, ie->log_pos);
	if (!seg)
		return 1; /* deleted by retention: nothing to compare with */
	ok = ie->log_pos >= seg->base + CFX_SEG_HEADER_BYTES &&
	     cfx_entry_decode(seg->map + (ie->log_pos - seg->base), seg->size - (ie->log_pos - seg->base),
			      ie->log_pos, 0, &e, NULL) == 0 &&
	     e.type == CFX_ENTRY_BATCH && e.queue_id == q->id && e.queue_offset == ie->first_offset &&
	     e.msg_count == ie->msg_count && e.entry_bytes == ie->entry_bytes &&
	     e.topic.len == q->topic_len && !memcmp(e.topic.p, q->topic, q->topic_len);
	seg__unref(seg);
	return ok;
}

/*
 * A cheap consistency check of every queue index against the log: its
 * first and last kept entries must describe the log entries they point at,
 * in order. It catches index files from another point in time than the log
 * (a partial restore) and damage at either end; damage in between is found
 * by reads, which check every entry they use.
 */
static int queues_match_log(struct cfx_store *st, uint64_t durable)
{
	struct cfx_idx_entry first, last;

	for (uint32_t i = 0; i < st->qcap; i++)
		for (struct queue *q = st->qtab[i]; q; q = q->hnext) {
			uint64_t lo = cq__first_ord(q);
			if (q->entries == lo)
				continue;
			if (!idx_entry_matches_log(st, q, lo, durable, &first) ||
			    !idx_entry_matches_log(st, q, q->entries - 1, durable, &last) ||
			    last.log_pos < first.log_pos ||
			    last.first_offset + last.msg_count < first.first_offset + (q->entries - lo)) {
				cfx_log_warn("store: the index of %s/%u does not match the log; "
					     "rebuilding the indexes from the log",
					     q->topic, q->id);
				return 0;
			}
		}
	return 1;
}

/* Newest store time found in the queue indexes (store times never decrease). */
static int64_t max_indexed_store_ms(struct cfx_store *st)
{
	struct cfx_idx_entry ie;
	int64_t max = 0;

	for (uint32_t i = 0; i < st->qcap; i++)
		for (struct queue *q = st->qtab[i]; q; q = q->hnext)
			if (q->entries > cq__first_ord(q) && cq__get(q, q->entries - 1, &ie) == 0 &&
			    ie.store_ms > max)
				max = ie.store_ms;
	return max;
}

static int sync_all(struct cfx_store *st)
{
	int rc = 0;

	for (uint32_t i = 0; i < st->qcap && !rc; i++)
		for (struct queue *q = st->qtab[i]; q && !rc; q = q->hnext)
			rc = cq__sync(st, q);
	if (!rc)
		rc = keyidx__sync(st);
	for (uint32_t i = 0; i < st->segs.n && !rc; i++) {
		int r = st->fops->fdatasync(st->segs.v[i]->fd);
		rc = r ? cfx_err_from_errno(-r) : 0;
	}
	return rc;
}

int recover__run(struct cfx_store *st, struct cfx_store_recovery *rec)
{
	struct cfx_checkpoint ckpt = { 0 };
	int64_t t0 = cfx_clock_mono_ms(), max_ms = 0;
	uint64_t start, durable, pos;
	struct seg *seg;
	int found, rc, rebuild = 0;

	memset(rec, 0, sizeof *rec);
	rc = open_segments(st);
	if (!rc)
		rc = read_checkpoint(st, &ckpt, &found);
	if (rc)
		return rc;

	if (st->segs.n == 0) {
		/* A new store (or one whose log is gone: its indexes are void). */
		rec->fresh = 1;
		rc = drop_indexes(st);
		if (!rc)
			rc = seg__create(st->fops, st->log_dir, 0, st->o.segment_bytes, &seg);
		if (rc)
			return rc;
		seglist__push(&st->segs, seg);
		rc = keyidx__open(st, 0);
		if (rc)
			return rc;
		found = 0;
	}

	start = st->segs.v[0]->base;
	durable = start + CFX_SEG_HEADER_BYTES;
	if (!found) {
		if (!rec->fresh) {
			cfx_log_warn("store: no usable checkpoint; rebuilding the indexes from the log");
			rec->checkpoint_missing = 1;
			rebuild = 1;
		}
	} else {
		if (ckpt.durable_pos > durable)
			durable = ckpt.durable_pos;
		seg = seglist__find(&st->segs, durable);
		if (!seg) {
			cfx_log_error("store: the checkpoint vouches for log data up to %" PRIu64
				      " but the log ends before it; refusing to open",
				      ckpt.durable_pos);
			return CFX_ECORRUPT;
		}
		/* A position the writer could have published: aligned, after the
		 * segment header, with room for an end marker behind it. */
		if (durable % CFX_ENTRY_ALIGN || durable < seg->base + CFX_SEG_HEADER_BYTES ||
		    durable + CFX_ENTRY_END_BYTES > seg->base + seg->size) {
			cfx_log_warn("store: the checkpoint's position %" PRIu64
				     " is not an entry boundary; rebuilding the indexes from the log",
				     ckpt.durable_pos);
			rec->checkpoint_missing = 1;
			rebuild = 1;
			found = 0;
		}
		seg__unref(seg);
		rec->clean = found && ckpt.clean && ckpt.durable_pos == ckpt.log_end_pos;
	}

	if (!rec->fresh && !rebuild) {
		rc = open_indexes(st, durable);
		if (rc == CFX_ECORRUPT || rc == CFX_EVERSION) {
			cfx_log_warn("store: index files are damaged (%s); rebuilding them from the log",
				     cfx_strerror(rc));
			rebuild = 1;
		} else if (rc) {
			return rc;
		} else if (!queues_match_log(st, durable)) {
			rebuild = 1;
		} else if (st->idx_entries < ckpt.idx_entries || st->keys.entries < ckpt.key_entries) {
			cfx_log_warn("store: index files are missing entries (%" PRIu64 " of %" PRIu64
				     " batch entries, %" PRIu64 " of %" PRIu64
				     " key entries); rebuilding them from the log",
				     st->idx_entries, ckpt.idx_entries, st->keys.entries,
				     ckpt.key_entries);
			rebuild = 1;
		}
	}
	if (rebuild) {
		rec->clean = 0;
		durable = start + CFX_SEG_HEADER_BYTES;
		rc = drop_indexes(st);
		if (!rc)
			rc = keyidx__open(st, 0);
		if (rc)
			return rc;
	}
	max_ms = max_indexed_store_ms(st);

	/* Scan forward from the durable position. `seg` holds `pos`, with room
	 * for an end marker after it (the writer guarantees both). */
	pos = durable;
	seg = seglist__find(&st->segs, pos);
	CFX_ASSERT(seg);
	for (;;) {
		struct cfx_entry e;
		const char *why = NULL;
		uint64_t off = pos - seg->base;

		rc = cfx_entry_decode(seg->map + off, seg->size - off, pos, 1, &e, &why);
		if (rc == CFX_EVERSION) {
			cfx_log_error("store: %s holds an entry of a newer format at offset %" PRIu64
				      "; refusing to open",
				      seg->path, off);
			seg__unref(seg);
			return rc;
		}
		if (rc == CFX_NEED_MORE)
			break;
		if (rc == 0 && e.type == CFX_ENTRY_BATCH &&
		    off + e.entry_bytes + CFX_ENTRY_END_BYTES > seg->size) {
			rc = CFX_ECORRUPT;
			why = "entry overruns the end of its segment";
		}
		if (rc == CFX_ECORRUPT) {
			STORE_CORRUPT(seg->path, off, why);
			rec->truncate_reason = why;
			break;
		}
		if (e.type == CFX_ENTRY_END) {
			struct seg *next = seglist__find(&st->segs, seg->base + seg->size);
			if (!next) {
				rec->truncate_reason = "end marker without a following segment";
				break;
			}
			seg__unref(seg);
			seg = next;
			pos = seg->base + CFX_SEG_HEADER_BYTES;
			continue;
		}
		rc = dispatch__entry(st, &e, 1);
		if (rc == CFX_ECORRUPT) {
			STORE_CORRUPT(seg->path, off, "entry does not continue its queue");
			rec->truncate_reason = "entry does not continue its queue";
			break;
		}
		if (rc) {
			seg__unref(seg);
			return rc;
		}
		if (e.store_ms > max_ms)
			max_ms = e.store_ms;
		rec->scanned_entries++;
		rec->scanned_bytes += e.entry_bytes;
		pos += e.entry_bytes;
	}

	/* Everything after `pos` goes: the rest of its segment, later segments. */
	if (!rec->clean || st->segs.v[st->segs.n - 1] != seg || rec->truncate_reason) {
		uint64_t off = pos - seg->base;
		if (cfx_load_le64(seg->map + off) != 0 || rec->truncate_reason)
			rec->truncated_bytes += seg->size - off;
		rc = seg__truncate_tail(seg, off);
		if (rc) {
			seg__unref(seg);
			return rc;
		}
	}
	pthread_rwlock_wrlock(&st->segs.lock);
	while (st->segs.v[st->segs.n - 1] != seg) {
		struct seg *last = st->segs.v[--st->segs.n];
		cfx_log_warn("store: deleting segment %s after the end of the log", last->path);
		if (cfx_load_le64(last->map + CFX_SEG_HEADER_BYTES) != 0)
			rec->truncated_bytes += last->size; /* it held data, not just a header */
		atomic_store(&last->deleted, 1);
		seg__unref(last);
	}
	pthread_rwlock_unlock(&st->segs.lock);
	if (rec->truncated_bytes)
		cfx_log_warn("store: log truncated at position %" PRIu64 " (%s)", pos,
			     rec->truncate_reason ? rec->truncate_reason : "data after the end");

	/* Closed segments: their newest store time is at most the first of the next. */
	for (uint32_t i = 0; i + 1 < st->segs.n; i++) {
		struct seg *next = st->segs.v[i + 1];
		struct cfx_entry e;
		if (cfx_entry_decode(next->map + CFX_SEG_HEADER_BYTES,
				     next->size - CFX_SEG_HEADER_BYTES, next->base + CFX_SEG_HEADER_BYTES,
				     0, &e, NULL) == 0)
			st->segs.v[i]->max_store_ms = e.store_ms;
		else
			st->segs.v[i]->max_store_ms = max_ms;
	}
	seg->max_store_ms = max_ms;
	atomic_store(&seg->populated, pos - seg->base);

	st->active = seg;
	st->active_base = seg->base;
	seg__unref(seg);
	st->write_pos = pos;
	st->last_store_ms = max_ms;
	atomic_store(&st->written_pos, pos);
	atomic_store(&st->flushed_pos, pos);
	atomic_store(&st->dispatched_pos, pos);
	atomic_store(&st->log_start, start);
	st->disp_idx_entries = st->idx_entries;
	st->disp_key_entries = st->keys.entries;

	/* Every queue's earliest offset given the log start. */
	for (uint32_t i = 0; i < st->qcap; i++)
		for (struct queue *q = st->qtab[i]; q; q = q->hnext)
			cq__retain(st, q, start);

	rc = sync_all(st);
	if (rc)
		return rc;
	rec->log_start = start;
	rec->log_end = pos;
	rec->segments = st->segs.n;
	rec->queues = st->qcount;
	rec->elapsed_ms = cfx_clock_mono_ms() - t0;
	return 0;
}
