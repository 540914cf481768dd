/*
 * cq.c - the batch index of one queue ("consume queue").
 *
 * One fixed-size 40-byte entry per log entry of the queue (format.h), in
 * files of a fixed number of entries, named by the ordinal of their first
 * entry: queues/<topic>/<queue>/<ordinal, 20 digits>.idx. Entries are in
 * log order, so first_offset, store_ms and log_pos all increase with the
 * ordinal and every lookup is a binary search over mapped memory; nothing
 * of the index is loaded onto the heap.
 *
 * The index is derived data: the dispatcher builds it from the log, and
 * recovery cuts it back to its valid prefix and re-dispatches the rest.
 *
 * Locking: the caller holds q->mu for everything but cq__open/cq__close.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>

#include "base/err.h"
#include "store/files.h"
#include "store/store_int.h"

static void idx_path(char *buf, size_t len, const struct queue *q, uint64_t first_ord)
{
	snprintf(buf, len, "%s/%020" PRIu64 ".idx", q->dir, first_ord);
}

static void file_close(struct cfx_store *st, struct idxfile *f)
{
	st->fops->munmap(f->map, (size_t)f->cap * CFX_IDX_ENTRY_BYTES);
	st->fops->close(f->fd);
	cfx_free(f);
}

static void files_push(struct queue *q, struct idxfile *f)
{
	if (q->nfiles == q->capfiles) {
		q->capfiles = q->capfiles ? q->capfiles * 2 : 4;
		q->files = cfx_realloc(q->files, q->capfiles * sizeof *q->files);
	}
	q->files[q->nfiles++] = f;
}

/* The file holding ordinal `ord`, or NULL. */
static struct idxfile *file_of(const struct queue *q, uint64_t ord)
{
	uint32_t lo = 0, hi = q->nfiles;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct idxfile *f = q->files[mid];
		if (ord < f->first_ord)
			hi = mid;
		else if (ord >= f->first_ord + f->cap)
			lo = mid + 1;
		else
			return f;
	}
	return NULL;
}

static const uint8_t *entry_ptr(const struct queue *q, uint64_t ord)
{
	const struct idxfile *f = file_of(q, ord);
	return f ? f->map + (ord - f->first_ord) * CFX_IDX_ENTRY_BYTES : NULL;
}

int cq__get(struct queue *q, uint64_t ord, struct cfx_idx_entry *ie)
{
	const uint8_t *p;

	if (ord < cq__first_ord(q) || ord >= q->entries)
		return CFX_ERANGE;
	p = entry_ptr(q, ord);
	if (!p || !cfx_idx_entry_decode(p, ie)) {
		cfx_log_error("store: index entry %" PRIu64 " of %s is damaged", ord, q->dir);
		return CFX_ECORRUPT;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Opening and recovery
 * ------------------------------------------------------------------------ */

static int file_open(struct cfx_store *st, struct queue *q, uint64_t first_ord,
		     struct idxfile **out)
{
	char path[PATH_MAX];
	struct stat stbuf;
	struct idxfile *f;
	uint8_t *map;
	int fd, r;

	idx_path(path, sizeof path, q, first_ord);
	fd = st->fops->open(path, O_RDWR, 0);
	if (fd < 0)
		return cfx_err_from_errno(-fd);
	r = st->fops->fstat(fd, &stbuf);
	if (r < 0 || stbuf.st_size <= 0 || stbuf.st_size % CFX_IDX_ENTRY_BYTES ||
	    stbuf.st_size / CFX_IDX_ENTRY_BYTES > UINT32_MAX) {
		st->fops->close(fd);
		return r < 0 ? cfx_err_from_errno(-r) : CFX_ECORRUPT;
	}
	map = st->fops->mmap(fd, (size_t)stbuf.st_size, 1, &r);
	if (!map) {
		st->fops->close(fd);
		return cfx_err_from_errno(-r);
	}
	f = cfx_calloc(1, sizeof *f);
	f->first_ord = first_ord;
	f->cap = (uint32_t)(stbuf.st_size / CFX_IDX_ENTRY_BYTES);
	f->fd = fd;
	f->map = map;
	*out = f;
	return 0;
}

static void file_delete(struct cfx_store *st, struct queue *q, struct idxfile *f)
{
	char path[PATH_MAX];

	idx_path(path, sizeof path, q, f->first_ord);
	file_close(st, f);
	st->fops->unlink(path);
}

static int entry_ok(const struct queue *q, uint64_t ord, uint64_t limit, struct cfx_idx_entry *ie)
{
	const uint8_t *p = entry_ptr(q, ord);
	return p && cfx_idx_entry_decode(p, ie) && ie->log_pos < limit;
}

int cq__open(struct cfx_store *st, struct queue *q, uint64_t limit)
{
	struct cfx_idx_entry ie;
	uint64_t *ords, lo, hi;
	uint32_t n;
	int rc;

	store__remove_tmp_files(q->dir);
	rc = store__list_numbered(q->dir, ".idx", &ords, &n);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		struct idxfile *f = NULL;
		char path[PATH_MAX];

		/* A file that does not continue its predecessor, or cannot be
		 * opened, ends the usable index: the rest is re-derived. */
		if (q->nfiles) {
			struct idxfile *last = q->files[q->nfiles - 1];
			if (last->first_ord + last->cap != ords[i])
				rc = CFX_ECORRUPT;
		}
		if (!rc)
			rc = file_open(st, q, ords[i], &f);
		if (rc) {
			idx_path(path, sizeof path, q, ords[i]);
			cfx_log_warn("store: dropping index file %s (%s)", path, cfx_strerror(rc));
			st->fops->unlink(path);
			rc = 0;
			continue;
		}
		files_push(q, f);
	}
	cfx_free(ords);
	if (q->nfiles == 0) {
		q->entries = 0;
		return 0;
	}

	/* Valid prefix: entries that decode and point below `limit`. */
	lo = q->files[0]->first_ord;
	hi = q->files[q->nfiles - 1]->first_ord + q->files[q->nfiles - 1]->cap;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (entry_ok(q, mid, limit, &ie))
			lo = mid + 1;
		else
			hi = mid;
	}
	q->entries = lo;

	/* Drop what lies beyond: later files, then the tail of the last one. */
	while (q->nfiles > 1 && q->files[q->nfiles - 1]->first_ord >= q->entries &&
	       q->files[q->nfiles - 1]->first_ord > q->files[0]->first_ord) {
		file_delete(st, q, q->files[--q->nfiles]);
	}
	{
		struct idxfile *f = q->files[q->nfiles - 1];
		uint64_t used = q->entries - f->first_ord;
		if (used < f->cap) {
			rc = store__zero_tail(st->fops, f->fd, f->map,
					      (uint64_t)f->cap * CFX_IDX_ENTRY_BYTES,
					      used * CFX_IDX_ENTRY_BYTES);
			if (rc)
				return rc;
		}
	}

	if (q->entries > q->files[0]->first_ord) {
		rc = cq__get(q, q->entries - 1, &ie);
		if (rc)
			return rc;
		atomic_store(&q->end_offset, ie.first_offset + ie.msg_count);
		q->next_offset = ie.first_offset + ie.msg_count;
	}
	return 0;
}

void cq__close(struct cfx_store *st, struct queue *q)
{
	for (uint32_t i = 0; i < q->nfiles; i++)
		file_close(st, q->files[i]);
	CFX_FREE(q->files);
	q->nfiles = q->capfiles = 0;
}

/* ------------------------------------------------------------------------
 * Appending
 * ------------------------------------------------------------------------ */

static int file_create(struct cfx_store *st, struct queue *q, uint64_t first_ord)
{
	char path[PATH_MAX];
	struct idxfile *f;
	uint64_t cap = st->o.index_entries_per_file;
	uint8_t *map;
	int fd, rc;

	rc = cfx_mkdir_p(st->fops, q->dir);
	if (rc)
		return cfx_err_from_errno(-rc);
	idx_path(path, sizeof path, q, first_ord);
	rc = store__create_file(st->fops, path, cap * CFX_IDX_ENTRY_BYTES, NULL, 0, &fd, &map);
	if (rc)
		return rc;
	f = cfx_calloc(1, sizeof *f);
	f->first_ord = first_ord;
	f->cap = (uint32_t)cap;
	f->fd = fd;
	f->map = map;
	files_push(q, f);
	return 0;
}

int cq__append(struct cfx_store *st, struct queue *q, const struct cfx_idx_entry *ie)
{
	struct idxfile *f = q->nfiles ? q->files[q->nfiles - 1] : NULL;
	int rc;

	if (!f || q->entries >= f->first_ord + f->cap) {
		rc = file_create(st, q, q->entries);
		if (rc)
			return rc;
		f = q->files[q->nfiles - 1];
	}
	cfx_idx_entry_encode(f->map + (q->entries - f->first_ord) * CFX_IDX_ENTRY_BYTES, ie);
	f->dirty = 1;
	q->entries++;
	atomic_store_explicit(&q->end_offset, ie->first_offset + ie->msg_count,
			      memory_order_release);
	return 0;
}

int cq__sync(struct cfx_store *st, struct queue *q)
{
	for (uint32_t i = 0; i < q->nfiles; i++) {
		struct idxfile *f = q->files[i];
		if (!f->dirty)
			continue;
		int r = st->fops->fdatasync(f->fd);
		if (r)
			return cfx_err_from_errno(-r);
		f->dirty = 0;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------ */

enum key_field { BY_OFFSET, BY_TIME, BY_POS };

/*
 * Binary search for the first entry whose field is > value (BY_OFFSET:
 * first_offset > value) or >= value (BY_TIME, BY_POS).
 */
static uint64_t search(struct queue *q, enum key_field field, uint64_t value, int *err)
{
	uint64_t lo = cq__first_ord(q), hi = q->entries;
	struct cfx_idx_entry ie;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int rc = cq__get(q, mid, &ie), below;
		if (rc) {
			*err = rc;
			return mid;
		}
		switch (field) {
		case BY_OFFSET:
			below = ie.first_offset <= value;
			break;
		case BY_TIME:
			below = ie.store_ms < (int64_t)value;
			break;
		default:
			below = ie.log_pos < value;
			break;
		}
		if (below)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int cq__find_offset(struct queue *q, uint64_t offset, uint64_t *ord)
{
	int err = 0;
	uint64_t first = search(q, BY_OFFSET, offset, &err);

	if (err)
		return err;
	if (first == cq__first_ord(q))
		return CFX_EOFFSET;
	*ord = first - 1;
	return 0;
}

uint64_t cq__find_time(struct queue *q, int64_t ts)
{
	int err = 0;
	uint64_t ord = search(q, BY_TIME, (uint64_t)ts, &err);
	return err ? q->entries : ord;
}

uint64_t cq__find_pos(struct queue *q, uint64_t pos)
{
	int err = 0;
	uint64_t ord = search(q, BY_POS, pos, &err);
	return err ? q->entries : ord;
}

/* ------------------------------------------------------------------------
 * Retention
 * ------------------------------------------------------------------------ */

void cq__retain(struct cfx_store *st, struct queue *q, uint64_t log_start)
{
	struct cfx_idx_entry ie;
	uint64_t ord;

	/* A file goes when every entry of it points below log_start and the
	 * next file already holds an entry (the last file stays: it carries the
	 * queue's end offset). */
	while (q->nfiles > 1) {
		struct idxfile *f = q->files[0], *next = q->files[1];
		if (q->entries <= next->first_ord)
			break;
		if (cq__get(q, next->first_ord, &ie) || ie.log_pos > log_start)
			break;
		file_delete(st, q, f);
		memmove(q->files, q->files + 1, (q->nfiles - 1) * sizeof *q->files);
		q->nfiles--;
	}
	ord = cq__find_pos(q, log_start);
	if (ord < q->entries && cq__get(q, ord, &ie) == 0)
		atomic_store(&q->start_offset, ie.first_offset);
	else
		atomic_store(&q->start_offset, atomic_load(&q->end_offset));
}
