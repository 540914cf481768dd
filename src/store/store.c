/*
 * store.c - the storage engine's public API: open and close, the queue
 * map, appends, reads and lookups.
 *
 * The append path is deliberately short: validate, encode outside any
 * lock, then under the append lock assign offsets, copy the batch into the
 * mapped segment, seal it with its CRC and publish the new end of the log.
 * Everything slow (disk syncs, index building, file creation) happens on
 * the store's own threads (flush.c, dispatch.c, housekeep.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/hash.h"
#include "store/compress.h"
#include "store/files.h"
#include "store/store_int.h"

void cfx_store_opts_default(struct cfx_store_opts *o)
{
	memset(o, 0, sizeof *o);
	o->dir = "./data";
	o->segment_bytes = 1ull << 30;
	o->index_entries_per_file = 262144;
	o->key_index_entries = 1u << 20;
	o->flush_interval_ms = 500;
	o->checkpoint_interval_ms = 5000;
	o->retention_ms = 168LL * 3600 * 1000;
	o->retention_bytes = 0;
	o->retention_check_interval_ms = 10000;
	o->msg_bytes_max = 4u << 20;
	o->batch_bytes_max = 16u << 20;
	o->queues_per_topic_max = 1024;
	o->verify_crc_on_read = 1;
	o->populate_ahead_bytes = 16u << 20;
}

/* ------------------------------------------------------------------------
 * The queue map
 * ------------------------------------------------------------------------ */

static uint64_t queue_hash(struct cfx_view topic, uint32_t id)
{
	return cfx_hash_mix64(cfx_hash_bytes(CFX_HASH_SEED, topic.p, topic.len) ^ id);
}

static void qtab_grow(struct cfx_store *st)
{
	uint32_t ncap = st->qcap ? st->qcap * 2 : 256;
	struct queue **nt = cfx_calloc(ncap, sizeof *nt);

	for (uint32_t i = 0; i < st->qcap; i++) {
		struct queue *q = st->qtab[i];
		while (q) {
			struct queue *next = q->hnext;
			uint32_t b = (uint32_t)(queue_hash((struct cfx_view){ (uint8_t *)q->topic,
									      q->topic_len },
							   q->id) &
						(ncap - 1));
			q->hnext = nt[b];
			nt[b] = q;
			q = next;
		}
	}
	cfx_free(st->qtab);
	st->qtab = nt;
	st->qcap = ncap;
}

static struct queue *qtab_find(struct cfx_store *st, struct cfx_view topic, uint32_t id,
			       uint64_t h)
{
	if (!st->qcap)
		return NULL;
	for (struct queue *q = st->qtab[h & (st->qcap - 1)]; q; q = q->hnext)
		if (q->id == id && q->topic_len == topic.len && !memcmp(q->topic, topic.p, topic.len))
			return q;
	return NULL;
}

struct queue *store__queue_get(struct cfx_store *st, struct cfx_view topic, uint32_t id,
			       int create)
{
	uint64_t h = queue_hash(topic, id);
	struct queue *q;
	char path[PATH_MAX];

	pthread_rwlock_rdlock(&st->queues_lock);
	q = qtab_find(st, topic, id, h);
	pthread_rwlock_unlock(&st->queues_lock);
	if (q || !create)
		return q;
	if (!cfx_topic_name_is_valid(topic) || id >= st->o.queues_per_topic_max)
		return NULL;

	pthread_rwlock_wrlock(&st->queues_lock);
	q = qtab_find(st, topic, id, h);
	if (!q) {
		if (st->qcount + 1 > st->qcap / 4 * 3)
			qtab_grow(st);
		q = cfx_calloc(1, sizeof *q);
		q->topic = cfx_strndup((const char *)topic.p, topic.len);
		q->topic_len = (uint16_t)topic.len;
		q->id = id;
		snprintf(path, sizeof path, "%s/%s/%" PRIu32, st->queues_dir, q->topic, id);
		q->dir = cfx_strdup(path);
		pthread_mutex_init(&q->mu, NULL);
		atomic_init(&q->end_offset, 0);
		atomic_init(&q->start_offset, 0);
		uint32_t b = (uint32_t)(h & (st->qcap - 1));
		q->hnext = st->qtab[b];
		st->qtab[b] = q;
		st->qcount++;
	}
	pthread_rwlock_unlock(&st->queues_lock);
	return q;
}

/* ------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------ */

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

static char *path_join(const char *a, const char *b)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof buf, "%s/%s", a, b);
	return cfx_strdup(buf);
}

#define BAD_OPT(...) \
	do { \
		cfx_log_error("store: " __VA_ARGS__); \
		return CFX_EINVAL; \
	} while (0)

static int check_opts(const struct cfx_store_opts *o)
{
	uint64_t entry_max = cfx_entry_size(CFX_TOPIC_MAX, o->batch_bytes_max);
	uint64_t seg_min = entry_max + CFX_SEG_HEADER_BYTES + CFX_ENTRY_END_BYTES;

	if (!o->dir || !*o->dir)
		BAD_OPT("no data directory given");
	if (o->segment_bytes % 4096)
		BAD_OPT("segment size %" PRIu64 " is not a multiple of 4096", o->segment_bytes);
	if (o->segment_bytes < seg_min)
		BAD_OPT("segment size %" PRIu64 " cannot hold the largest batch (batch_bytes_max "
			"%" PRIu32 " needs segments of at least %" PRIu64 " bytes)",
			o->segment_bytes, o->batch_bytes_max, CFX_ALIGN_UP(seg_min, (uint64_t)4096));
	if (o->index_entries_per_file < 16 || o->key_index_entries < 16)
		BAD_OPT("index files must hold at least 16 entries");
	if (o->msg_bytes_max == 0 || o->msg_bytes_max > o->batch_bytes_max)
		BAD_OPT("message_bytes_max must be between 1 and batch_bytes_max");
	if (o->queues_per_topic_max == 0 || o->flush_interval_ms <= 0 ||
	    o->checkpoint_interval_ms <= 0 || o->retention_check_interval_ms <= 0)
		BAD_OPT("queue limit and intervals must be positive");
	return 0;
}

static void store_free(struct cfx_store *st)
{
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
	}
	cfx_free(st->qtab);
	keyidx__close(st);
	if (st->prepared) {
		atomic_store(&st->prepared->deleted, 1);
		seg__unref(st->prepared);
	}
	seglist__destroy(&st->segs);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	pthread_mutex_destroy(&st->append_mu);
	pthread_rwlock_destroy(&st->queues_lock);
	pthread_mutex_destroy(&st->flush_mu);
	pthread_cond_destroy(&st->flush_cv);
	pthread_cond_destroy(&st->flushed_cv);
	pthread_mutex_destroy(&st->disp_mu);
	pthread_cond_destroy(&st->disp_cv);
	pthread_cond_destroy(&st->dispatched_cv);
	pthread_mutex_destroy(&st->keys.mu);
	pthread_mutex_destroy(&st->hk_mu);
	pthread_cond_destroy(&st->hk_cv);
	pthread_mutex_destroy(&st->prep_mu);
	pthread_mutex_destroy(&st->ckpt_mu);
	cfx_free(st->waiters);
	cfx_free(st->keys.dir);
	cfx_free(st->queues_dir);
	cfx_free(st->log_dir);
	cfx_free(st->dir);
	cfx_free(st);
}

static int lock_dir(struct cfx_store *st)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/LOCK", st->dir);
	st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (st->lock_fd < 0)
		return cfx_err_from_errno(errno);
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return errno == EWOULDBLOCK ? CFX_ELOCKED : cfx_err_from_errno(errno);
	return 0;
}

int cfx_store_open(const struct cfx_store_opts *o, struct cfx_store **out,
		   struct cfx_store_recovery *rec_out)
{
	struct cfx_store_recovery rec_local, *rec = rec_out ? rec_out : &rec_local;
	struct cfx_store *st;
	int rc;

	rc = check_opts(o);
	if (rc)
		return rc;
	st = cfx_calloc(1, sizeof *st);
	st->o = *o;
	st->fops = o->fops ? o->fops : &cfx_fileops_real;
	st->lock_fd = -1;
	st->dir = cfx_strdup(o->dir);
	st->o.dir = st->dir;
	st->log_dir = path_join(st->dir, "commitlog");
	st->queues_dir = path_join(st->dir, "queues");
	st->keys.dir = path_join(st->dir, "keys");
	st->populate_ok = 1;
	seglist__init(&st->segs);
	pthread_mutex_init(&st->append_mu, NULL);
	pthread_rwlock_init(&st->queues_lock, NULL);
	pthread_mutex_init(&st->flush_mu, NULL);
	st->flush_wake_at = 1;
	cond_init_mono(&st->flush_cv);
	cond_init_mono(&st->flushed_cv);
	pthread_mutex_init(&st->disp_mu, NULL);
	cond_init_mono(&st->disp_cv);
	cond_init_mono(&st->dispatched_cv);
	pthread_mutex_init(&st->keys.mu, NULL);
	pthread_mutex_init(&st->hk_mu, NULL);
	cond_init_mono(&st->hk_cv);
	pthread_mutex_init(&st->prep_mu, NULL);
	pthread_mutex_init(&st->ckpt_mu, NULL);

	rc = cfx_err_from_errno(-cfx_mkdir_p(st->fops, st->dir));
	if (!rc)
		rc = lock_dir(st);
	if (!rc)
		rc = cfx_err_from_errno(-cfx_mkdir_p(st->fops, st->log_dir));
	if (!rc)
		rc = cfx_err_from_errno(-cfx_mkdir_p(st->fops, st->queues_dir));
	if (!rc)
		rc = recover__run(st, rec);
	if (!rc) {
		/* Mark the store as running: a crash from now on is unclean. */
		rc = housekeep__checkpoint(st, 0);
		if (!rc && atomic_load(&st->ckpt_durable_pos) != st->write_pos)
			rc = CFX_EIO;
	}
	if (rc) {
		store_free(st);
		return rc;
	}
	pthread_create(&st->disp_thr, NULL, dispatch__thread, st);
	pthread_create(&st->flush_thr, NULL, flush__thread, st);
	pthread_create(&st->hk_thr, NULL, housekeep__thread, st);
	pthread_setname_np(st->disp_thr, "cfx-dispatch");
	pthread_setname_np(st->flush_thr, "cfx-flush");
	pthread_setname_np(st->hk_thr, "cfx-housekeep");
	*out = st;
	return 0;
}

int cfx_store_close(struct cfx_store *st)
{
	int rc;

	if (!st)
		return 0;
	pthread_mutex_lock(&st->append_mu);
	atomic_store(&st->stopping, 1);
	pthread_mutex_unlock(&st->append_mu);

	pthread_mutex_lock(&st->disp_mu);
	pthread_cond_broadcast(&st->disp_cv);
	pthread_mutex_unlock(&st->disp_mu);
	pthread_join(st->disp_thr, NULL);
	flush__kick(st);
	pthread_join(st->flush_thr, NULL);
	pthread_mutex_lock(&st->hk_mu);
	pthread_cond_broadcast(&st->hk_cv);
	pthread_mutex_unlock(&st->hk_mu);
	pthread_join(st->hk_thr, NULL);

	rc = atomic_load(&st->err);
	if (!rc) {
		/* Clean only if every entry was dispatched; else the next open scans. */
		int clean = atomic_load(&st->dispatched_pos) == atomic_load(&st->written_pos);
		rc = housekeep__checkpoint(st, clean);
	}
	store_free(st);
	return rc;
}

/* ------------------------------------------------------------------------
 * Appending
 * ------------------------------------------------------------------------ */

/* Closes the active segment with an end marker and moves to the next. @locks append_mu */
static int roll(struct cfx_store *st)
{
	struct seg *cur = st->active, *next;
	uint8_t *p;
	int rc;

	rc = housekeep__next_segment(st, cur->base + cur->size, &next);
	if (rc)
		return rc;
	p = cur->map + (st->write_pos - cur->base);
	cfx_entry_end_encode(p, (uint32_t)(cur->base + cur->size - st->write_pos), st->last_store_ms);
	cur->max_store_ms = st->last_store_ms;
	seglist__push(&st->segs, next);
	st->active = next;
	st->write_pos = next->base + CFX_SEG_HEADER_BYTES;
	return 0;
}

static int check_target(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id)
{
	if (!cfx_topic_name_is_valid(topic))
		return CFX_ETOPIC;
	if (queue_id >= st->o.queues_per_topic_max)
		return CFX_EQUEUE;
	return 0;
}

int cfx_store_append_batch(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			   uint8_t *batch, size_t len, const struct cfx_batch_info *info,
			   uint32_t sys_flags, enum cfx_durability durability, cfx_append_cb cb,
			   void *arg)
{
	struct cfx_append_result res = { 0 };
	struct cfx_entry e = { 0 };
	struct queue *q;
	struct seg *seg;
	uint32_t entry_bytes;
	int64_t t0, t1;
	int rc, kick_hk = 0;

	rc = check_target(st, topic, queue_id);
	if (rc)
		return rc;
	if (info->count == 0 || len < CFX_KBATCH_HEADER_BYTES ||
	    cfx_batch_records_count(batch) != info->count)
		return CFX_EINVAL;
	if (info->record_bytes_max > st->o.msg_bytes_max)
		return CFX_EMSGSIZE;
	if (len > st->o.batch_bytes_max)
		return CFX_EBATCHSIZE;
	q = store__queue_get(st, topic, queue_id, 1);
	CFX_ASSERT(q);
	entry_bytes = cfx_entry_size(topic.len, len);

	t0 = cfx_clock_mono_ns();
	pthread_mutex_lock(&st->append_mu);
	if (atomic_load(&st->stopping)) {
		rc = CFX_ECLOSED;
		goto out;
	}
	rc = atomic_load(&st->err);
	if (rc)
		goto out;
	seg = st->active;
	if (st->write_pos - seg->base + entry_bytes + CFX_ENTRY_END_BYTES > seg->size) {
		rc = roll(st);
		if (rc)
			goto out;
		seg = st->active;
		kick_hk = 1;
	}

	e.store_ms = cfx_clock_wall_ms();
	if (e.store_ms < st->last_store_ms)
		e.store_ms = st->last_store_ms; /* store times never go backwards */
	st->last_store_ms = e.store_ms;
	e.log_pos = st->write_pos;
	e.queue_offset = q->next_offset;
	q->next_offset += info->count;
	e.queue_id = queue_id;
	e.msg_count = info->count;
	e.tag_hash = info->tag_hash;
	e.sys_flags = sys_flags;
	e.attrs = info->has_keys ? CFX_ENTRY_ATTR_HAS_KEYS : 0;
	e.topic = topic;
	e.payload_bytes = (uint32_t)len;

	uint8_t *p = seg->map + (st->write_pos - seg->base);
	cfx_batch_set_base_offset(batch, e.queue_offset);
	memcpy(p + CFX_ENTRY_HEADER_BYTES + topic.len, batch, len);
	cfx_entry_seal(p, &e);
	st->write_pos += entry_bytes;
	atomic_store(&st->written_pos, st->write_pos); /* seq_cst: see dispatch__kick */

	res.log_pos = e.log_pos;
	res.first_offset = e.queue_offset;
	res.count = info->count;
	res.store_ms = e.store_ms;
	if (durability == CFX_DURABILITY_SYNC) {
		struct sync_waiter w = { .end_pos = st->write_pos, .cb = cb, .arg = arg, .res = res };
		flush__add_waiter(st, &w);
	}
	atomic_fetch_add_explicit(&st->appends, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->messages, info->count, memory_order_relaxed);
	/* Ask the housekeeper to pre-fault or prepare before the writer needs it. */
	if (st->write_pos - seg->base + st->o.populate_ahead_bytes / 2 > atomic_load(&seg->populated) ||
	    st->write_pos - seg->base > seg->size / 2)
		kick_hk = 1;
out:
	t1 = cfx_clock_mono_ns();
	pthread_mutex_unlock(&st->append_mu);
	if (rc)
		return rc;
	store__latency_record(&st->append_lat, t1 - t0);
	dispatch__kick(st);
	if (kick_hk)
		housekeep__kick(st);
	if (durability != CFX_DURABILITY_SYNC)
		cb(arg, &res);
	return 0;
}

int cfx_store_append(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
		     const struct cfx_msg *msgs, uint32_t count, enum cfx_durability durability,
		     cfx_append_cb cb, void *arg)
{
	struct cfx_batch_info info;
	struct cfx_writer wr;
	size_t hint = CFX_KBATCH_HEADER_BYTES;
	int rc;

	rc = check_target(st, topic, queue_id);
	if (rc)
		return rc;
	if (count == 0)
		return CFX_EINVAL;
	for (uint32_t i = 0; i < count; i++) {
		if (msgs[i].body.len > st->o.msg_bytes_max)
			return CFX_EMSGSIZE;
		hint += msgs[i].body.len + msgs[i].key.len + 64;
		if (hint > st->o.batch_bytes_max + (size_t)count * 64)
			return CFX_EBATCHSIZE;
	}
	cfx_writer_init(&wr, hint);
	rc = cfx_batch_encode(&wr, msgs, count, &info);
	if (!rc)
		rc = cfx_store_append_batch(st, topic, queue_id, wr.p, wr.len, &info, 0, durability,
					    cb, arg);
	cfx_writer_free(&wr);
	return rc;
}

struct append_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	struct cfx_append_result res;
};

static void append_wait_cb(void *arg, const struct cfx_append_result *res)
{
	struct append_wait *w = arg;
	pthread_mutex_lock(&w->mu);
	w->res = *res;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int cfx_store_append_wait(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			  const struct cfx_msg *msgs, uint32_t count,
			  enum cfx_durability durability, struct cfx_append_result *res)
{
	struct append_wait w = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	int rc = cfx_store_append(st, topic, queue_id, msgs, count, durability, append_wait_cb, &w);

	if (!rc) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.res.err;
		if (res)
			*res = w.res;
	}
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return rc;
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

void cfx_read_result_init(struct cfx_read_result *res)
{
	memset(res, 0, sizeof *res);
}

/*
 * Decompression buffers of a result larger than this are freed on release
 * rather than kept for the next read: a consumer that once met a large
 * compressed batch does not hold its memory for good.
 */
#define READ_BUF_KEEP_BYTES (1u << 20)

void cfx_read_result_release(struct cfx_read_result *res)
{
	for (uint32_t i = 0; i < res->nrefs; i++)
		seg__unref(res->refs[i]);
	for (uint32_t i = 0; i < res->nbufs; i++) {
		if (res->bufs[i].cap > READ_BUF_KEEP_BYTES)
			cfx_writer_free(&res->bufs[i]);
		else
			cfx_writer_reset(&res->bufs[i]);
	}
	res->nrefs = 0;
	res->nbufs = 0;
	res->count = 0;
	res->bytes = 0;
}

void cfx_read_result_free(struct cfx_read_result *res)
{
	cfx_read_result_release(res);
	for (uint32_t i = 0; i < res->cap_bufs; i++)
		cfx_writer_free(&res->bufs[i]);
	CFX_FREE(res->msgs);
	CFX_FREE(res->refs);
	CFX_FREE(res->origins);
	CFX_FREE(res->bufs);
	res->cap = res->cap_refs = res->cap_origins = res->cap_bufs = 0;
}

/* An empty buffer owned by `res` until its release (res_buf_drop gives it back). */
static struct cfx_writer *res_buf(struct cfx_read_result *res)
{
	struct cfx_writer *wr;

	if (res->nbufs == res->cap_bufs) {
		uint32_t ncap = res->cap_bufs ? res->cap_bufs * 2 : 2;
		res->bufs = cfx_realloc(res->bufs, ncap * sizeof *res->bufs);
		memset(res->bufs + res->cap_bufs, 0, (ncap - res->cap_bufs) * sizeof *res->bufs);
		res->cap_bufs = ncap;
	}
	wr = &res->bufs[res->nbufs++];
	if (!wr->p)
		cfx_writer_init(wr, 0);
	cfx_writer_reset(wr);
	return wr;
}

/* Gives back the buffer res_buf returned last, unused. */
static void res_buf_drop(struct cfx_read_result *res)
{
	CFX_ASSERT(res->nbufs > 0);
	res->nbufs--;
	if (res->bufs[res->nbufs].cap > READ_BUF_KEEP_BYTES)
		cfx_writer_free(&res->bufs[res->nbufs]);
}

static void res_keep(struct cfx_read_result *res, struct seg *seg)
{
	if (res->nrefs && res->refs[res->nrefs - 1] == seg) {
		seg__unref(seg); /* already held */
		return;
	}
	if (res->nrefs == res->cap_refs) {
		res->cap_refs = res->cap_refs ? res->cap_refs * 2 : 4;
		res->refs = cfx_realloc(res->refs, res->cap_refs * sizeof *res->refs);
	}
	res->refs[res->nrefs++] = seg;
}

static struct cfx_msg_view *res_push(struct cfx_read_result *res)
{
	if (res->count == res->cap) {
		res->cap = res->cap ? res->cap * 2 : 16;
		res->msgs = cfx_realloc(res->msgs, res->cap * sizeof *res->msgs);
	}
	return &res->msgs[res->count++];
}

/*
 * Opens the compressed batch of `e` (whose header `b` holds) over its
 * records, decompressed into a buffer owned by `res`. Returns 0,
 * CFX_ECORRUPT (*why says how), or CFX_EUNSUPPORTED for a batch this store
 * will not expand (over CFX_COMPRESS_OUTPUT_BYTES_MAX, unknown codec).
 */
static int open_compressed(struct cfx_read_result *res, const struct cfx_entry *e,
			   struct cfx_batch_rd *b, const char *path, uint64_t off, const char **why)
{
	struct cfx_writer *wr = res_buf(res);
	int codec = cfx_batch_codec(b);
	int rc;

	rc = cfx_compress_decode(codec, e->payload.p + CFX_KBATCH_HEADER_BYTES,
				 e->payload.len - CFX_KBATCH_HEADER_BYTES,
				 CFX_COMPRESS_OUTPUT_BYTES_MAX, wr, why);
	if (rc == CFX_E2BIG || rc == CFX_EUNSUPPORTED) {
		cfx_log_ratelimited(CFX_LOG_WARN,
				    "store: the %s batch at %s+%llu is not decoded: %s",
				    cfx_compress_codec_name(codec), path, (unsigned long long)off,
				    *why);
		rc = CFX_EUNSUPPORTED;
	}
	if (!rc)
		rc = cfx_batch_open_records(b, e->payload.p, e->payload.len, 0, wr->p, wr->len,
					    why);
	if (rc)
		res_buf_drop(res);
	return rc == CFX_EPARSE ? CFX_ECORRUPT : rc;
}

/*
 * Decodes the log entry at `pos`, checking that it is the entry the caller
 * expects. On success the segment reference is kept in `res`, and so are
 * the decompressed records of a compressed batch.
 */
static int load_entry(struct cfx_store *st, uint64_t pos, struct cfx_read_result *res,
		      struct cfx_entry *e, struct cfx_batch_rd *b)
{
	const char *why = NULL;
	struct seg *seg = seglist__find(&st->segs, pos);
	int rc;

	if (!seg)
		return CFX_EOFFSET; /* deleted by retention meanwhile */
	rc = cfx_entry_decode(seg->map + (pos - seg->base), seg->size - (pos - seg->base), pos,
			      st->o.verify_crc_on_read, e, &why);
	if (rc == 0 && e->type != CFX_ENTRY_BATCH) {
		rc = CFX_ECORRUPT;
		why = "index points at an end marker";
	}
	if (rc == 0)
		rc = cfx_batch_open(b, e->payload.p, e->payload.len, 0, &why);
	if (rc == CFX_EUNSUPPORTED && cfx_batch_is_compressed(b))
		rc = open_compressed(res, e, b, seg->path, pos - seg->base, &why);
	if (rc == CFX_EPARSE || rc == CFX_NEED_MORE || rc == CFX_EVERSION)
		rc = CFX_ECORRUPT;
	if (rc) {
		if (rc == CFX_ECORRUPT)
			STORE_CORRUPT(seg->path, pos - seg->base, why ? why : "bad entry");
		seg__unref(seg);
		return rc;
	}
	res_keep(res, seg);
	return 0;
}

#define READ_IDX_CHUNK 32

/*
 * The start of every read: resets `res` (start, end and next offsets),
 * finds the queue and the index position of `offset`. Returns 0 with *qp
 * set when there is something to read, 0 with *qp NULL when there is
 * nothing (at the end, an empty queue read at 0, or !want), or an error
 * (CFX_EOFFSET outside the queue).
 */
static int read_begin(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
		      uint64_t offset, int want, struct cfx_read_result *res, struct queue **qp,
		      uint64_t *ord)
{
	struct queue *q;
	int rc;

	*qp = NULL;
	cfx_read_result_release(res);
	res->next_offset = offset;
	res->start_offset = res->end_offset = 0;
	rc = check_target(st, topic, queue_id);
	if (rc)
		return rc;
	q = store__queue_get(st, topic, queue_id, 0);
	if (!q)
		return offset == 0 ? 0 : CFX_EOFFSET;
	res->start_offset = atomic_load(&q->start_offset);
	res->end_offset = atomic_load_explicit(&q->end_offset, memory_order_acquire);
	if (offset < res->start_offset || offset > res->end_offset)
		return CFX_EOFFSET;
	if (offset == res->end_offset || !want)
		return 0;
	pthread_mutex_lock(&q->mu);
	rc = cq__find_offset(q, offset, ord);
	pthread_mutex_unlock(&q->mu);
	if (!rc)
		*qp = q;
	return rc;
}

/* Up to READ_IDX_CHUNK index entries from position `ord`; *rc gets an index error. */
static uint32_t idx_chunk(struct queue *q, uint64_t ord, struct cfx_idx_entry *ies, int *rc)
{
	uint32_t n = 0;

	pthread_mutex_lock(&q->mu);
	while (n < READ_IDX_CHUNK && ord + n < q->entries && !*rc)
		*rc = cq__get(q, ord + n, &ies[n]), n += !*rc;
	pthread_mutex_unlock(&q->mu);
	return n;
}

/* Could a batch whose index entry says `tag_hash` hold a message with one of the tags? */
static int tags_may_match(uint32_t tag_hash, const uint32_t *tag_hashes, uint32_t ntags)
{
	if (!tag_hashes || tag_hash == CFX_TAG_HASH_MIXED)
		return 1;
	for (uint32_t i = 0; i < ntags; i++)
		if (tag_hashes[i] == tag_hash)
			return 1;
	return 0;
}

int cfx_store_read(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
		   uint64_t offset, uint32_t max_msgs, size_t max_bytes,
		   struct cfx_read_result *res)
{
	return cfx_store_read_tags(st, topic, queue_id, offset, max_msgs, max_bytes, NULL, 0, res);
}

int cfx_store_read_tags(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			uint64_t offset, uint32_t max_msgs, size_t max_bytes,
			const uint32_t *tag_hashes, uint32_t ntags, struct cfx_read_result *res)
{
	struct cfx_idx_entry ies[READ_IDX_CHUNK];
	struct queue *q;
	uint64_t ord, cur = offset, skip_to = 0;
	int rc;

	rc = read_begin(st, topic, queue_id, offset, max_msgs > 0, res, &q, &ord);
	if (rc || !q)
		return rc;
	while (res->count < max_msgs && (res->count == 0 || res->bytes < max_bytes)) {
		uint32_t n = idx_chunk(q, ord, ies, &rc);
		if (n == 0)
			break;
		for (uint32_t i = 0; i < n && !rc; i++) {
			struct cfx_entry e;
			struct cfx_batch_rd b;
			struct cfx_msg_view m;
			const char *why = NULL;
			int more = 0;

			skip_to = ies[i].first_offset + ies[i].msg_count;
			if (!tags_may_match(ies[i].tag_hash, tag_hashes, ntags)) {
				/* The index says no message of this batch can match. */
				if (skip_to > cur)
					cur = skip_to;
				continue;
			}
			rc = load_entry(st, ies[i].log_pos, res, &e, &b);
			if (!rc && (e.queue_offset != ies[i].first_offset || e.queue_id != queue_id ||
				    !cfx_view_eq(e.topic, topic)))
				rc = CFX_ECORRUPT;
			while (!rc && (more = cfx_batch_next(&b, &m, &why)) == 1) {
				if (m.offset < cur)
					continue;
				m.store_ms = e.store_ms;
				*res_push(res) = m;
				res->bytes += m.record_bytes;
				cur = m.offset + 1;
				if (res->count >= max_msgs || res->bytes >= max_bytes)
					break;
			}
			if (!rc && more < 0)
				rc = CFX_ECORRUPT;
			if (res->count >= max_msgs || res->bytes >= max_bytes)
				break;
		}
		if (rc || res->count >= max_msgs || res->bytes >= max_bytes)
			break;
		ord += n;
	}
	res->next_offset = cur;
	/* What was gathered before a damaged entry is still good to return. */
	if (rc == CFX_EOFFSET) {
		res->start_offset = atomic_load(&q->start_offset);
		if (res->count == 0)
			return rc;
	}
	if (rc && res->count == 0 && skip_to)
		res->next_offset = skip_to; /* the caller may skip the unreadable batch */
	return res->count ? 0 : rc;
}

int cfx_store_read_batches(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			   uint64_t offset, size_t max_bytes, struct cfx_batch_ref *out,
			   uint32_t max_refs, uint32_t *nout, struct cfx_read_result *res)
{
	struct cfx_idx_entry ies[READ_IDX_CHUNK];
	size_t bytes = 0;
	struct queue *q;
	uint64_t ord;
	int rc;

	*nout = 0;
	rc = read_begin(st, topic, queue_id, offset, max_refs > 0, res, &q, &ord);
	if (rc || !q)
		return rc;
	while (*nout < max_refs && (*nout == 0 || bytes < max_bytes)) {
		uint32_t n = idx_chunk(q, ord, ies, &rc);
		if (n == 0)
			break;
		for (uint32_t i = 0; i < n && !rc; i++) {
			const char *why = NULL;
			struct cfx_entry e;
			struct seg *seg;

			if (*nout == max_refs || (*nout && bytes >= max_bytes))
				break;
			seg = seglist__find(&st->segs, ies[i].log_pos); /* a reference */
			if (!seg) {
				rc = CFX_EOFFSET; /* deleted by retention meanwhile */
				break;
			}
			rc = cfx_entry_decode(seg->map + (ies[i].log_pos - seg->base),
					      seg->size - (ies[i].log_pos - seg->base), ies[i].log_pos,
					      st->o.verify_crc_on_read, &e, &why);
			if (!rc && (e.type != CFX_ENTRY_BATCH || e.queue_offset != ies[i].first_offset ||
				    e.queue_id != queue_id || !cfx_view_eq(e.topic, topic)))
				rc = CFX_ECORRUPT;
			if (rc) {
				if (rc != CFX_EOFFSET)
					STORE_CORRUPT(seg->path, ies[i].log_pos - seg->base,
						      why ? why : "bad entry");
				seg__unref(seg);
				rc = rc == CFX_EOFFSET ? rc : CFX_ECORRUPT;
				break;
			}
			res_keep(res, seg);
			out[*nout] = (struct cfx_batch_ref){ .p = e.payload.p,
							     .len = e.payload.len,
							     .first_offset = e.queue_offset,
							     .count = e.msg_count,
							     .store_ms = e.store_ms };
			(*nout)++;
			bytes += e.payload.len;
			res->next_offset = e.queue_offset + e.msg_count;
		}
		if (rc)
			break;
		ord += n;
	}
	return *nout ? 0 : rc;
}

uint64_t cfx_store_queue_next_offset(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id)
{
	struct queue *q;
	uint64_t next = 0;

	if (check_target(st, topic, queue_id))
		return 0;
	q = store__queue_get(st, topic, queue_id, 0);
	if (q) {
		pthread_mutex_lock(&st->append_mu);
		next = q->next_offset;
		pthread_mutex_unlock(&st->append_mu);
	}
	return next;
}

int cfx_store_queue_bounds(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			   uint64_t *start, uint64_t *end)
{
	struct queue *q;
	int rc = check_target(st, topic, queue_id);

	*start = *end = 0;
	if (rc)
		return rc;
	q = store__queue_get(st, topic, queue_id, 0);
	if (q) {
		*start = atomic_load(&q->start_offset);
		*end = atomic_load(&q->end_offset);
	}
	return 0;
}

int cfx_store_offset_for_time(struct cfx_store *st, struct cfx_view topic, uint32_t queue_id,
			      int64_t ts_ms, uint64_t *offset)
{
	struct cfx_idx_entry ie;
	struct queue *q;
	uint64_t ord;
	int rc = check_target(st, topic, queue_id);

	*offset = 0;
	if (rc)
		return rc;
	q = store__queue_get(st, topic, queue_id, 0);
	if (!q)
		return 0;
	pthread_mutex_lock(&q->mu);
	ord = cq__find_time(q, ts_ms);
	if (ord < q->entries && cq__get(q, ord, &ie) == 0)
		*offset = ie.first_offset;
	else
		*offset = atomic_load(&q->end_offset);
	pthread_mutex_unlock(&q->mu);
	if (*offset < atomic_load(&q->start_offset))
		*offset = atomic_load(&q->start_offset);
	return 0;
}

/* ------------------------------------------------------------------------
 * Key and id lookups
 * ------------------------------------------------------------------------ */

static int key_has_token(struct cfx_view keys, struct cfx_view key)
{
	size_t i = 0;

	while (i < keys.len) {
		size_t j = i;
		while (j < keys.len && keys.p[j] != ' ')
			j++;
		if (j - i == key.len && !memcmp(keys.p + i, key.p, key.len))
			return 1;
		i = j + 1;
	}
	return 0;
}

#define LOOKUP_CANDIDATES_MAX 256

static int lookup(struct cfx_store *st, enum cfx_key_kind kind, struct cfx_view topic,
		  struct cfx_view key, uint32_t max, struct cfx_read_result *res)
{
	uint64_t pos[LOOKUP_CANDIDATES_MAX], log_start = atomic_load(&st->log_start);
	uint32_t n;

	cfx_read_result_release(res);
	if (!res->origins) {
		res->cap_origins = 16;
		res->origins = cfx_malloc(res->cap_origins * sizeof *res->origins);
	}
	if (key.len == 0 || max == 0)
		return 0;
	pthread_mutex_lock(&st->keys.mu);
	n = keyidx__lookup(st, cfx_keyidx_hash(kind, topic, key), pos, LOOKUP_CANDIDATES_MAX);
	pthread_mutex_unlock(&st->keys.mu);

	for (uint32_t i = 0; i < n && res->count < max; i++) {
		struct cfx_entry e;
		struct cfx_batch_rd b;
		struct cfx_msg_view m;
		int dup = 0;

		for (uint32_t j = 0; j < i && !dup; j++)
			dup = pos[j] == pos[i];
		if (dup || pos[i] < log_start ||
		    pos[i] >= atomic_load_explicit(&st->dispatched_pos, memory_order_acquire))
			continue;
		if (load_entry(st, pos[i], res, &e, &b))
			continue; /* skipped: damaged or deleted meanwhile */
		if (kind == CFX_KEY_KIND_KEY && !cfx_view_eq(e.topic, topic))
			continue;
		while (res->count < max && cfx_batch_next(&b, &m, NULL) == 1) {
			int match = kind == CFX_KEY_KIND_ID
					    ? cfx_view_eq(m.msg_id, key)
					    : (!m.key_null && key_has_token(m.key, key));
			if (!match)
				continue;
			m.store_ms = e.store_ms;
			*res_push(res) = m;
			res->bytes += m.record_bytes;
			if (res->count > res->cap_origins) {
				res->cap_origins = res->cap;
				res->origins = cfx_realloc(res->origins,
							   res->cap_origins * sizeof *res->origins);
			}
			res->origins[res->count - 1] =
				(struct cfx_msg_origin){ .topic = e.topic, .queue_id = e.queue_id };
		}
	}
	return 0;
}

int cfx_store_lookup_key(struct cfx_store *st, struct cfx_view topic, struct cfx_view key,
			 uint32_t max, struct cfx_read_result *res)
{
	if (!cfx_topic_name_is_valid(topic))
		return CFX_ETOPIC;
	return lookup(st, CFX_KEY_KIND_KEY, topic, key, max, res);
}

int cfx_store_lookup_id(struct cfx_store *st, struct cfx_view msg_id, uint32_t max,
			struct cfx_read_result *res)
{
	return lookup(st, CFX_KEY_KIND_ID, (struct cfx_view){ NULL, 0 }, msg_id, max, res);
}

/* ------------------------------------------------------------------------
 * State and maintenance
 * ------------------------------------------------------------------------ */

void cfx_store_foreach_queue(struct cfx_store *st,
			     void (*fn)(void *arg, const struct cfx_queue_info *qi), void *arg)
{
	pthread_rwlock_rdlock(&st->queues_lock);
	for (uint32_t i = 0; i < st->qcap; i++)
		for (struct queue *q = st->qtab[i]; q; q = q->hnext) {
			struct cfx_queue_info qi = {
				.topic = { (uint8_t *)q->topic, q->topic_len },
				.queue_id = q->id,
				.start_offset = atomic_load(&q->start_offset),
				.end_offset = atomic_load(&q->end_offset),
			};
			fn(arg, &qi);
		}
	pthread_rwlock_unlock(&st->queues_lock);
}

void cfx_store_get_stats(struct cfx_store *st, struct cfx_store_stats *s)
{
	memset(s, 0, sizeof *s);
	s->log_start = atomic_load(&st->log_start);
	s->written_pos = atomic_load(&st->written_pos);
	s->flushed_pos = atomic_load(&st->flushed_pos);
	s->dispatched_pos = atomic_load(&st->dispatched_pos);
	pthread_rwlock_rdlock(&st->segs.lock);
	s->segments = st->segs.n;
	for (uint32_t i = 0; i < st->segs.n; i++)
		s->log_bytes += st->segs.v[i]->size;
	pthread_rwlock_unlock(&st->segs.lock);
	pthread_rwlock_rdlock(&st->queues_lock);
	s->queues = st->qcount;
	pthread_rwlock_unlock(&st->queues_lock);
	s->appends = atomic_load(&st->appends);
	s->messages = atomic_load(&st->messages);
	s->fsyncs = atomic_load(&st->fsyncs);
	s->fsync_ns = atomic_load(&st->fsync_ns);
	s->err = atomic_load(&st->err);
}

/* ------------------------------------------------------------------------
 * Latency histograms
 * ------------------------------------------------------------------------ */

const int64_t cfx_store_latency_bounds_ns[CFX_STORE_LATENCY_BUCKETS] = {
	1000,	    2500,	5000,	    10000,	 25000,	     50000,	  100000,   250000,
	500000,	    1000000,	2500000,    5000000,	 10000000,   25000000,	  50000000, 100000000,
	250000000,  500000000,	1000000000, 2500000000LL, 5000000000LL, 10000000000LL,
};

void store__latency_record(struct lat_hist *h, int64_t ns)
{
	uint32_t lo = 0, hi = CFX_STORE_LATENCY_BUCKETS;

	if (ns < 0)
		ns = 0; /* the monotonic clock never goes back; be safe anyway */
	/* The first bucket whose bound is >= ns (the last one if none). */
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (cfx_store_latency_bounds_ns[mid] < ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	atomic_fetch_add_explicit(&h->counts[lo], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

static void latency_copy(struct lat_hist *h, struct cfx_latency_hist *out)
{
	for (uint32_t i = 0; i <= CFX_STORE_LATENCY_BUCKETS; i++)
		out->counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
	out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

void cfx_store_get_latency(struct cfx_store *st, struct cfx_store_latency *out)
{
	latency_copy(&st->append_lat, &out->append);
	latency_copy(&st->fsync_lat, &out->flush);
}

int cfx_store_sync(struct cfx_store *st)
{
	uint64_t target = atomic_load(&st->written_pos);
	int rc;

	pthread_mutex_lock(&st->flush_mu);
	if (st->flush_requested < target)
		st->flush_requested = target;
	pthread_cond_signal(&st->flush_cv);
	while (atomic_load(&st->flushed_pos) < target && !atomic_load(&st->err))
		pthread_cond_wait(&st->flushed_cv, &st->flush_mu);
	rc = atomic_load(&st->err);
	pthread_mutex_unlock(&st->flush_mu);
	return rc;
}

int cfx_store_wait_dispatched(struct cfx_store *st, int64_t timeout_ms)
{
	uint64_t target = atomic_load(&st->written_pos);
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&st->disp_mu);
	while (atomic_load(&st->dispatched_pos) < target && !rc) {
		if (atomic_load(&st->err) == CFX_ECORRUPT)
			rc = CFX_ECORRUPT;
		else if (pthread_cond_timedwait(&st->dispatched_cv, &st->disp_mu, &ts) == ETIMEDOUT)
			rc = CFX_ETIMEDOUT;
	}
	pthread_mutex_unlock(&st->disp_mu);
	return rc;
}

int cfx_store_checkpoint(struct cfx_store *st)
{
	return housekeep__checkpoint(st, 0);
}
