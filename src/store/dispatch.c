/*
 * dispatch.c - the dispatcher: tails the commit log and builds the batch
 * and key indexes, making appended messages readable.
 *
 * It is the only writer of the indexes while the store runs; recovery
 * calls dispatch__entry the same way before the threads start, which is
 * why the indexes can always be rebuilt from the log.
 *
 * Progress is published as (dispatched_pos, index totals) under disp_mu,
 * so a checkpoint always sees a position and the index sizes that match.
 */
#include <inttypes.h>
#include <time.h>

#include "base/err.h"
#include "store/store_int.h"

/* Limits on what one message contributes to the key index. */
#define KEYS_PER_MSG_MAX 32
#define KEY_BYTES_MAX 1024

/* The key-index hashes of one entry, gathered before any is added. */
struct key_hashes {
	uint64_t *v;
	uint32_t n, cap;
	uint64_t local[256];
};

static void hashes_push(struct key_hashes *kh, uint64_t h)
{
	if (kh->n == kh->cap) {
		uint32_t ncap = kh->cap * 2;
		uint64_t *nv = cfx_malloc(ncap * sizeof *nv);
		memcpy(nv, kh->v, kh->n * sizeof *nv);
		if (kh->v != kh->local)
			cfx_free(kh->v);
		kh->v = nv;
		kh->cap = ncap;
	}
	kh->v[kh->n++] = h;
}

/*
 * One pass over an entry's batch: checks that it decodes completely and
 * matches the entry (with `check`), and gathers the hashes of its message
 * ids and keys (into `kh`, if not NULL), so that nothing is indexed for a
 * batch that turns out damaged: an entry is indexed whole or not at all.
 * Compressed batches are accepted as stored: the dispatcher does not
 * decompress them (the read path does, per read; docs/storage.md), so
 * their keys and ids are not indexed and a damaged compressed payload
 * shows only when it is read. Returns 0 or CFX_ECORRUPT.
 */
static int scan_batch(const struct cfx_entry *e, int check, struct key_hashes *kh)
{
	struct cfx_batch_rd b;
	struct cfx_msg_view m;
	int rc = cfx_batch_open(&b, e->payload.p, e->payload.len, 0, NULL);

	if (rc == CFX_EUNSUPPORTED)
		return 0;
	if (rc || (check && (b.count != e->msg_count || b.base_offset != e->queue_offset)))
		return CFX_ECORRUPT;
	while ((rc = cfx_batch_next(&b, &m, NULL)) == 1) {
		if (!kh)
			continue;
		if (m.msg_id.len && m.msg_id.len <= KEY_BYTES_MAX)
			hashes_push(kh, cfx_keyidx_hash(CFX_KEY_KIND_ID, e->topic, m.msg_id));
		if (m.key_null || m.key.len == 0)
			continue;
		/* Keys are space-separated; each one is indexed. */
		size_t i = 0;
		int n = 0;
		while (i < m.key.len && n < KEYS_PER_MSG_MAX) {
			size_t j = i;
			while (j < m.key.len && m.key.p[j] != ' ')
				j++;
			if (j > i && j - i <= KEY_BYTES_MAX) {
				struct cfx_view k = { m.key.p + i, j - i };
				hashes_push(kh, cfx_keyidx_hash(CFX_KEY_KIND_KEY, e->topic, k));
				n++;
			}
			i = j + 1;
		}
	}
	return rc == 0 ? 0 : CFX_ECORRUPT;
}

static int index_keys(struct cfx_store *st, const struct cfx_entry *e,
		      const struct key_hashes *kh)
{
	int rc = 0;

	pthread_mutex_lock(&st->keys.mu);
	for (uint32_t i = 0; i < kh->n && !rc; i++)
		rc = keyidx__add(st, kh->v[i], e->log_pos);
	pthread_mutex_unlock(&st->keys.mu);
	return rc;
}

int dispatch__entry(struct cfx_store *st, const struct cfx_entry *e, int recovering)
{
	struct cfx_idx_entry ie, last;
	struct key_hashes kh = { .v = kh.local, .cap = CFX_ARRAY_LEN(kh.local) };
	int keys = (e->attrs & CFX_ENTRY_ATTR_HAS_KEYS) != 0;
	struct queue *q;
	int rc = 0, done = 0;

	/* The appender encoded live entries itself, except batches that came
	 * from a client (those have keys to index); what recovery reads back
	 * from disk is checked too, so that no index holds half an entry. */
	if ((recovering || keys) && scan_batch(e, 1, keys ? &kh : NULL)) {
		rc = CFX_ECORRUPT;
		goto out;
	}
	q = store__queue_get(st, e->topic, e->queue_id, 1);
	if (!q) {
		rc = CFX_ECORRUPT; /* bad topic name or queue id in a valid entry */
		goto out;
	}
	pthread_mutex_lock(&q->mu);
	if (q->entries > cq__first_ord(q)) {
		rc = cq__get(q, q->entries - 1, &last);
		if (!rc && last.log_pos >= e->log_pos)
			done = 1; /* indexed before a retried key-index failure */
		else if (!rc && last.first_offset + last.msg_count != e->queue_offset) {
			cfx_log_error("store: entry at %" PRIu64 " has offset %" PRIu64
				      " but queue %.*s/%u expects %" PRIu64,
				      e->log_pos, e->queue_offset, (int)e->topic.len, e->topic.p,
				      e->queue_id, last.first_offset + last.msg_count);
			rc = CFX_ECORRUPT;
		}
	}
	if (!rc && !done) {
		ie.log_pos = e->log_pos;
		ie.first_offset = e->queue_offset;
		ie.store_ms = e->store_ms;
		ie.entry_bytes = e->entry_bytes;
		ie.msg_count = e->msg_count;
		ie.tag_hash = e->tag_hash;
		if (q->entries == cq__first_ord(q))
			atomic_store(&q->start_offset, e->queue_offset);
		rc = cq__append(st, q, &ie);
		if (!rc) {
			st->idx_entries++;
			if (q->next_offset < e->queue_offset + e->msg_count)
				q->next_offset = e->queue_offset + e->msg_count;
		}
	}
	pthread_mutex_unlock(&q->mu);
	if (!rc && keys)
		rc = index_keys(st, e, &kh);
	if (!rc && st->o.on_dispatch && !recovering)
		st->o.on_dispatch(st->o.on_dispatch_arg, e->topic, e->queue_id,
				  e->queue_offset + e->msg_count);
out:
	if (kh.v != kh.local)
		cfx_free(kh.v);
	return rc;
}

static void publish(struct cfx_store *st, uint64_t pos)
{
	pthread_mutex_lock(&st->disp_mu);
	atomic_store_explicit(&st->dispatched_pos, pos, memory_order_release);
	st->disp_idx_entries = st->idx_entries;
	pthread_mutex_lock(&st->keys.mu);
	st->disp_key_entries = st->keys.entries;
	pthread_mutex_unlock(&st->keys.mu);
	pthread_cond_broadcast(&st->dispatched_cv);
	pthread_mutex_unlock(&st->disp_mu);
}

/*
 * Called after the end of the log was published (a sequentially consistent
 * store). The dispatcher announces that it sleeps (also sequentially
 * consistent) before it re-checks the end of the log under disp_mu, so one
 * of the two always sees the other: an appender only takes the lock when
 * the dispatcher really is about to sleep.
 */
void dispatch__kick(struct cfx_store *st)
{
	if (!atomic_load(&st->disp_sleeping))
		return;
	pthread_mutex_lock(&st->disp_mu);
	pthread_cond_signal(&st->disp_cv);
	pthread_mutex_unlock(&st->disp_mu);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

void *dispatch__thread(void *arg)
{
	struct cfx_store *st = arg;
	uint64_t pos = atomic_load(&st->dispatched_pos);

	for (;;) {
		uint64_t end;

		pthread_mutex_lock(&st->disp_mu);
		while (pos == atomic_load(&st->written_pos) && !atomic_load(&st->stopping)) {
			atomic_store(&st->disp_sleeping, 1);
			if (pos == atomic_load(&st->written_pos))
				pthread_cond_wait(&st->disp_cv, &st->disp_mu);
			atomic_store(&st->disp_sleeping, 0);
		}
		pthread_mutex_unlock(&st->disp_mu);
		end = atomic_load_explicit(&st->written_pos, memory_order_acquire);
		if (pos == end && atomic_load(&st->stopping))
			break;

		int stalled = 0;
		while (pos < end && !stalled) {
			struct seg *seg = seglist__find(&st->segs, pos);
			struct cfx_entry e;
			const char *why = NULL;
			int rc;

			CFX_ASSERT(seg);
			rc = cfx_entry_decode(seg->map + (pos - seg->base), seg->size - (pos - seg->base),
					      pos, 0, &e, &why);
			if (rc == 0 && e.type == CFX_ENTRY_END) {
				pos = seg->base + seg->size + CFX_SEG_HEADER_BYTES;
				seg__unref(seg);
				continue;
			}
			if (rc == 0)
				rc = dispatch__entry(st, &e, 0);
			else
				STORE_CORRUPT(seg->path, pos - seg->base, why ? why : "undecodable entry");
			seg__unref(seg);
			if (rc == CFX_ECORRUPT || rc == CFX_EVERSION) {
				/* Never index what cannot be trusted; a restart recovers. */
				atomic_store(&st->err, CFX_ECORRUPT);
				stalled = 1;
			} else if (rc) {
				/* Disk full or I/O error while growing an index: retry. */
				cfx_log_ratelimited(CFX_LOG_WARN, "store: indexing stalled: %s",
						    cfx_strerror(rc));
				stalled = 1;
			} else {
				pos += e.entry_bytes;
			}
		}
		publish(st, pos);
		if (stalled && atomic_load(&st->err) == CFX_ECORRUPT) {
			/* Nothing more can be indexed until a restart recovers. */
			pthread_mutex_lock(&st->disp_mu);
			while (!atomic_load(&st->stopping))
				pthread_cond_wait(&st->disp_cv, &st->disp_mu);
			pthread_mutex_unlock(&st->disp_mu);
			break;
		}
		if (stalled) {
			if (atomic_load(&st->stopping))
				break;
			sleep_ms(100);
		}
	}
	return NULL;
}
