/*
 * housekeep.c - the housekeeper: everything slow that must stay off the
 * append path.
 *
 *  - prepares the next segment (create, reserve, header, sync) once the
 *    active one is half full, so a roll-over is a pointer swap;
 *  - pre-faults the mapping ahead of the writer (MADV_POPULATE_READ), so
 *    that appends do not take a full page fault every 4 KiB; read-faulting
 *    maps the (zero) pages without dirtying them, so nothing is written to
 *    disk twice (populating for write would make every flush write the
 *    zeroed pages ahead of the data too);
 *  - writes checkpoints: a position below which the log and every index
 *    are durable, which bounds the work of crash recovery;
 *  - applies retention by age and size, whole segments at a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/mman.h>

#include "base/clock.h"
#include "base/err.h"
#include "store/store_int.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define POPULATE_CHUNK (1u << 20)

void housekeep__kick(struct cfx_store *st)
{
	if (atomic_exchange(&st->hk_pending, 1))
		return; /* a kick is already on its way */
	pthread_mutex_lock(&st->hk_mu);
	st->hk_kick = 1;
	pthread_cond_signal(&st->hk_cv);
	pthread_mutex_unlock(&st->hk_mu);
}

int housekeep__next_segment(struct cfx_store *st, uint64_t base, struct seg **out)
{
	int rc = 0;

	pthread_mutex_lock(&st->prep_mu);
	if (st->prepared && st->prepared->base == base) {
		*out = st->prepared;
		st->prepared = NULL;
	} else {
		rc = seg__create(st->fops, st->log_dir, base, st->o.segment_bytes, out);
	}
	if (!rc)
		st->active_base = base;
	pthread_mutex_unlock(&st->prep_mu);
	return rc;
}

/* Creates the next segment ahead of need. */
static void prepare_next(struct cfx_store *st)
{
	uint64_t base, fill, size;
	struct seg *seg;
	int rc;

	pthread_mutex_lock(&st->append_mu);
	base = st->active->base + st->active->size;
	size = st->active->size;
	fill = st->write_pos - st->active->base;
	pthread_mutex_unlock(&st->append_mu);
	if (fill < size / 2)
		return;
	pthread_mutex_lock(&st->prep_mu);
	if (st->active_base >= base) {
		/* The appender rolled over since we looked: `base` is in use. */
		pthread_mutex_unlock(&st->prep_mu);
		return;
	}
	if (!st->prepared || st->prepared->base != base) {
		if (st->prepared) {
			atomic_store(&st->prepared->deleted, 1);
			seg__unref(st->prepared);
			st->prepared = NULL;
		}
		rc = seg__create(st->fops, st->log_dir, base, st->o.segment_bytes, &seg);
		if (rc)
			cfx_log_ratelimited(CFX_LOG_WARN, "store: cannot prepare the next segment: %s",
					    cfx_strerror(rc));
		else
			st->prepared = seg;
	}
	pthread_mutex_unlock(&st->prep_mu);
}

/* Pre-faults [populated, upto) of a segment in chunks. */
static void populate(struct cfx_store *st, struct seg *seg, uint64_t upto)
{
	uint64_t from = atomic_load(&seg->populated);

	if (upto > seg->size)
		upto = seg->size;
	from &= ~(uint64_t)(4096 - 1);
	while (st->populate_ok && from < upto && !atomic_load(&st->stopping)) {
		uint64_t len = CFX_MIN((uint64_t)POPULATE_CHUNK, upto - from);
		readahead(seg->fd, (off64_t)from, len);
		if (madvise(seg->map + from, len, MADV_POPULATE_READ) != 0) {
			if (errno == EINVAL || errno == ENOSYS) {
				cfx_log_info("store: MADV_POPULATE_READ unsupported; appends will "
					     "fault pages in");
				st->populate_ok = 0;
			}
			return;
		}
		from += len;
		atomic_store(&seg->populated, from);
	}
}

static void populate_ahead(struct cfx_store *st)
{
	uint64_t written = atomic_load(&st->written_pos), ahead = st->o.populate_ahead_bytes;
	struct seg *seg;

	if (!ahead || !st->populate_ok)
		return;
	seg = seglist__find(&st->segs, written);
	if (seg) {
		/* Hysteresis: wait until half the window is used, then refill it
		 * in large chunks rather than faulting a few pages per kick. */
		if (atomic_load(&seg->populated) < written - seg->base + ahead / 2)
			populate(st, seg, written - seg->base + ahead);
		/* Near the end: warm the start of the next segment too. */
		if (written - seg->base + ahead > seg->size) {
			pthread_mutex_lock(&st->prep_mu);
			if (st->prepared)
				populate(st, st->prepared, ahead);
			pthread_mutex_unlock(&st->prep_mu);
		}
		seg__unref(seg);
	}
}

/* ------------------------------------------------------------------------
 * Checkpoints
 * ------------------------------------------------------------------------ */

static int sync_indexes(struct cfx_store *st)
{
	int rc = 0;

	pthread_rwlock_rdlock(&st->queues_lock);
	for (uint32_t i = 0; i < st->qcap && !rc; i++)
		for (struct queue *q = st->qtab[i]; q && !rc; q = q->hnext) {
			pthread_mutex_lock(&q->mu);
			rc = cq__sync(st, q);
			pthread_mutex_unlock(&q->mu);
		}
	pthread_rwlock_unlock(&st->queues_lock);
	if (!rc) {
		pthread_mutex_lock(&st->keys.mu);
		rc = keyidx__sync(st);
		pthread_mutex_unlock(&st->keys.mu);
	}
	return rc;
}

int housekeep__checkpoint(struct cfx_store *st, int clean)
{
	struct cfx_checkpoint c = { 0 };
	uint8_t buf[CFX_CKPT_BYTES];
	char path[PATH_MAX];
	int rc;

	pthread_mutex_lock(&st->ckpt_mu);
	pthread_mutex_lock(&st->disp_mu);
	c.durable_pos = atomic_load(&st->dispatched_pos);
	c.idx_entries = st->disp_idx_entries;
	c.key_entries = st->disp_key_entries;
	pthread_mutex_unlock(&st->disp_mu);

	if (c.durable_pos <= atomic_load(&st->ckpt_durable_pos) && !clean) {
		pthread_mutex_unlock(&st->ckpt_mu);
		return 0; /* nothing new */
	}
	rc = flush__log_through(st, c.durable_pos);
	if (!rc)
		rc = sync_indexes(st);
	if (!rc) {
		c.log_end_pos = clean ? c.durable_pos : atomic_load(&st->written_pos);
		if (c.log_end_pos < c.durable_pos)
			c.log_end_pos = c.durable_pos;
		c.clean = clean && c.log_end_pos == c.durable_pos;
		c.written_ms = cfx_clock_wall_ms();
		cfx_checkpoint_encode(buf, &c);
		snprintf(path, sizeof path, "%s/checkpoint", st->dir);
		int r = cfx_write_file_atomic(st->fops, path, buf, sizeof buf);
		rc = r ? cfx_err_from_errno(-r) : 0;
	}
	if (!rc)
		atomic_store(&st->ckpt_durable_pos, c.durable_pos);
	else
		cfx_log_ratelimited(CFX_LOG_WARN, "store: checkpoint failed: %s", cfx_strerror(rc));
	pthread_mutex_unlock(&st->ckpt_mu);
	return rc;
}

/* ------------------------------------------------------------------------
 * Retention
 * ------------------------------------------------------------------------ */

int cfx_store_retention_run(struct cfx_store *st)
{
	int64_t now = cfx_clock_wall_ms();
	uint64_t log_start;
	int deleted = 0;

	if (!st->o.retention_ms && !st->o.retention_bytes)
		return 0;
	pthread_mutex_lock(&st->ckpt_mu);
	for (;;) {
		struct seg *oldest = NULL;
		uint64_t total = 0;

		pthread_rwlock_wrlock(&st->segs.lock);
		for (uint32_t i = 0; i < st->segs.n; i++)
			total += st->segs.v[i]->size;
		if (st->segs.n > 1) {
			struct seg *s = st->segs.v[0];
			int too_big = st->o.retention_bytes && total > (uint64_t)st->o.retention_bytes;
			int too_old = st->o.retention_ms &&
				      s->max_store_ms < now - st->o.retention_ms;
			/* Only what the indexes are done with, and is on disk. */
			int settled = atomic_load(&st->dispatched_pos) >= s->base + s->size &&
				      atomic_load(&st->ckpt_durable_pos) >= s->base + s->size;
			if ((too_big || too_old) && settled) {
				oldest = s;
				memmove(st->segs.v, st->segs.v + 1, (st->segs.n - 1) * sizeof *st->segs.v);
				st->segs.n--;
				atomic_store(&st->log_start, st->segs.v[0]->base);
			}
		}
		pthread_rwlock_unlock(&st->segs.lock);
		if (!oldest)
			break;
		cfx_log_info("store: retention deletes segment %s (%s)", oldest->path,
			     st->o.retention_bytes && total > (uint64_t)st->o.retention_bytes
				     ? "log over its size limit"
				     : "older than the retention time");
		atomic_store(&oldest->deleted, 1);
		seg__unref(oldest);
		deleted++;
	}
	if (deleted) {
		log_start = atomic_load(&st->log_start);
		pthread_rwlock_rdlock(&st->queues_lock);
		for (uint32_t i = 0; i < st->qcap; i++)
			for (struct queue *q = st->qtab[i]; q; q = q->hnext) {
				pthread_mutex_lock(&q->mu);
				cq__retain(st, q, log_start);
				pthread_mutex_unlock(&q->mu);
			}
		pthread_rwlock_unlock(&st->queues_lock);
		pthread_mutex_lock(&st->keys.mu);
		keyidx__retain(st, log_start);
		pthread_mutex_unlock(&st->keys.mu);
	}
	pthread_mutex_unlock(&st->ckpt_mu);
	return deleted;
}

/* ------------------------------------------------------------------------
 * The thread
 * ------------------------------------------------------------------------ */

void *housekeep__thread(void *arg)
{
	struct cfx_store *st = arg;
	int64_t next_ckpt = cfx_clock_mono_ms() + st->o.checkpoint_interval_ms;
	int64_t next_ret = cfx_clock_mono_ms() + st->o.retention_check_interval_ms;

	pthread_mutex_lock(&st->hk_mu);
	while (!atomic_load(&st->stopping)) {
		int64_t now = cfx_clock_mono_ms(), wait = CFX_MIN(next_ckpt, next_ret) - now;
		if (!st->hk_kick && wait > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&st->hk_cv, &st->hk_mu, &ts);
		}
		st->hk_kick = 0;
		atomic_store(&st->hk_pending, 0);
		pthread_mutex_unlock(&st->hk_mu);
		if (atomic_load(&st->stopping)) {
			pthread_mutex_lock(&st->hk_mu);
			break;
		}

		populate_ahead(st);
		prepare_next(st);
		populate_ahead(st);
		now = cfx_clock_mono_ms();
		if (now >= next_ckpt) {
			housekeep__checkpoint(st, 0);
			next_ckpt = cfx_clock_mono_ms() + st->o.checkpoint_interval_ms;
		}
		if (now >= next_ret) {
			cfx_store_retention_run(st);
			next_ret = cfx_clock_mono_ms() + st->o.retention_check_interval_ms;
		}
		pthread_mutex_lock(&st->hk_mu);
	}
	pthread_mutex_unlock(&st->hk_mu);
	return NULL;
}
