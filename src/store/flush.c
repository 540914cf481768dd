/*
 * flush.c - the flusher: group commit for sync appends and the periodic
 * flush of async ones.
 *
 * Sync appends queue a waiter (end position, callback) while still holding
 * the append lock, so waiters are ordered by position. The flusher takes
 * the current end of the written log as its target, runs one fdatasync per
 * segment the unflushed range touches, and completes every waiter the
 * target covers. Waiters that arrive during the fdatasync ride on the next
 * one: the more appenders wait, the more each fdatasync acknowledges.
 *
 * A failed fdatasync is never retried or ignored: the pages it covered may
 * be lost, so every waiter fails with CFX_EFSYNC and the store refuses
 * appends until a restart recovers from what is really on disk.
 */
#include <errno.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "store/store_int.h"

void flush__add_waiter(struct cfx_store *st, const struct sync_waiter *w)
{
	pthread_mutex_lock(&st->flush_mu);
	if (st->wcount == st->wcap) {
		uint32_t ncap = st->wcap ? st->wcap * 2 : 64;
		struct sync_waiter *nw = cfx_malloc(ncap * sizeof *nw);
		for (uint32_t i = 0; i < st->wcount; i++)
			nw[i] = st->waiters[(st->whead + i) % st->wcap];
		cfx_free(st->waiters);
		st->waiters = nw;
		st->wcap = ncap;
		st->whead = 0;
	}
	st->waiters[(st->whead + st->wcount) % st->wcap] = *w;
	st->wcount++;
	/* Wake the flusher only when it waits for this many: not while it syncs,
	 * and not for every member of a group it is gathering. */
	if (st->wcount >= st->flush_wake_at)
		pthread_cond_signal(&st->flush_cv);
	pthread_mutex_unlock(&st->flush_mu);
}

void flush__kick(struct cfx_store *st)
{
	pthread_mutex_lock(&st->flush_mu);
	pthread_cond_signal(&st->flush_cv);
	pthread_mutex_unlock(&st->flush_mu);
}

static void advance_flushed(struct cfx_store *st, uint64_t pos)
{
	uint_fast64_t cur = atomic_load(&st->flushed_pos);
	while (cur < pos && !atomic_compare_exchange_weak(&st->flushed_pos, &cur, pos))
		;
}

int flush__log_through(struct cfx_store *st, uint64_t target)
{
	uint64_t pos = atomic_load(&st->flushed_pos);
	int rc = 0;

	if (pos < atomic_load(&st->log_start))
		pos = atomic_load(&st->log_start);
	while (pos < target) {
		struct seg *seg = seglist__find(&st->segs, pos);
		if (!seg)
			break;
		int64_t t0 = cfx_clock_mono_ns();
		int r = st->fops->fdatasync(seg->fd);
		store__latency_record(&st->fsync_lat, cfx_clock_mono_ns() - t0);
		atomic_fetch_add(&st->fsyncs, 1);
		pos = seg->base + seg->size;
		seg__unref(seg);
		if (r) {
			cfx_log_error("store: fdatasync of the commit log failed: %s; the store is "
				      "read-only until restarted",
				      strerror(-r));
			atomic_store(&st->err, CFX_EFSYNC);
			rc = CFX_EFSYNC;
			break;
		}
	}
	if (!rc)
		advance_flushed(st, target);
	return rc;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Completes the waiters covered by `target` (all of them on error). */
static uint32_t take_done(struct cfx_store *st, uint64_t target, int err,
			  struct sync_waiter **out, uint32_t *out_cap)
{
	uint32_t n = 0;

	while (st->wcount) {
		struct sync_waiter *w = &st->waiters[st->whead];
		if (!err && w->end_pos > target)
			break;
		if (n == *out_cap) {
			*out_cap = *out_cap ? *out_cap * 2 : 64;
			*out = cfx_realloc(*out, *out_cap * sizeof **out);
		}
		(*out)[n] = *w;
		(*out)[n].res.err = err;
		n++;
		st->whead = (st->whead + 1) % st->wcap;
		st->wcount--;
	}
	return n;
}

void *flush__thread(void *arg)
{
	struct cfx_store *st = arg;
	struct sync_waiter *done = NULL;
	uint32_t done_cap = 0;
	int64_t next_async = cfx_clock_mono_ms() + st->o.flush_interval_ms;
	int64_t last_sync_ns = 0;
	uint32_t last_group = 0;

	pthread_mutex_lock(&st->flush_mu);
	for (;;) {
		uint64_t written = atomic_load_explicit(&st->written_pos, memory_order_acquire);
		uint64_t flushed = atomic_load(&st->flushed_pos);
		int64_t now = cfx_clock_mono_ms();
		int due = 0;

		if (st->wcount || st->flush_requested > flushed)
			due = 1;
		else if (written > flushed && now >= next_async)
			due = 1;
		else if (atomic_load(&st->stopping) && written <= flushed)
			break;
		else if (atomic_load(&st->stopping))
			due = 1;

		if (!due) {
			struct timespec ts;
			deadline_after(&ts, next_async > now ? next_async - now : st->o.flush_interval_ms);
			st->flush_wake_at = 1;
			pthread_cond_timedwait(&st->flush_cv, &st->flush_mu, &ts);
			continue;
		}

		/*
		 * Let the group gather. Appenders woken by the previous flush are
		 * still coming back; starting the next fdatasync for the first of
		 * them would split them into cohorts that alternate. So wait until
		 * as many waiters as the last flush completed are queued, at most
		 * for as long as that flush took. A lone appender never waits.
		 */
		if (st->wcount && st->wcount < last_group && !atomic_load(&st->stopping)) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += last_sync_ns;
			while (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			st->flush_wake_at = last_group;
			while (st->wcount < last_group &&
			       pthread_cond_timedwait(&st->flush_cv, &st->flush_mu, &ts) == 0)
				;
		}
		st->flush_wake_at = UINT32_MAX;

		/* Take the target before syncing: everything written so far. */
		uint64_t target = atomic_load_explicit(&st->written_pos, memory_order_acquire);
		int err = atomic_load(&st->err) == CFX_EFSYNC ? CFX_EFSYNC : 0;
		pthread_mutex_unlock(&st->flush_mu);
		int64_t t0 = cfx_clock_mono_ns();
		if (!err)
			err = flush__log_through(st, target);
		last_sync_ns = cfx_clock_mono_ns() - t0;
		atomic_fetch_add(&st->fsync_ns, (uint64_t)last_sync_ns);
		if (last_sync_ns > 2000000)
			last_sync_ns = 2000000;
		next_async = cfx_clock_mono_ms() + st->o.flush_interval_ms;
		pthread_mutex_lock(&st->flush_mu);

		uint32_t n = take_done(st, target, err, &done, &done_cap);
		last_group = n;
		if (err && st->flush_requested)
			st->flush_requested = 0;
		pthread_cond_broadcast(&st->flushed_cv);
		if (n) {
			pthread_mutex_unlock(&st->flush_mu);
			for (uint32_t i = 0; i < n; i++)
				done[i].cb(done[i].arg, &done[i].res);
			pthread_mutex_lock(&st->flush_mu);
		}
		if (err && atomic_load(&st->stopping) && !st->wcount)
			break;
	}
	pthread_mutex_unlock(&st->flush_mu);
	cfx_free(done);
	return NULL;
}
