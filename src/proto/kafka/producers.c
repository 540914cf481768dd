/*
 * producers.c - Kafka producer ids and idempotent-producer sequence state.
 *
 * See producers.h for the contract and docs/kafka.md for the rules as
 * clients see them. What this file does not do: transactions (no
 * transactional ids, no markers), and no persistence of sequence state
 * (only the producer-id high-water mark is on disk).
 *
 * Layout in memory:
 *
 *   producers hash (id)             pstate hash (id, topic, partition)
 *        |                                 |
 *   struct producer --states list--> struct pstate --> entries[] (oldest first)
 *        ^ LRU list (most recent at the head), for idle and count eviction
 *
 * A pstate's entries are the batches accepted on that partition, newest
 * last: at most KF_SEQ_HISTORY, plus any older ones whose append is still
 * out (a pending entry is dropped only once it completes). A producer
 * with pending entries is never evicted, so a completion always finds its
 * entry unless the entry was forgotten on purpose (a failed append).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/fileops.h"
#include "base/log.h"
#include "proto/kafka/codec.h"
#include "proto/kafka/producers.h"

#define PID_FILE_MAGIC "conflux-kafka-producer-ids 1"

struct seq_entry {
	uint64_t serial;		/* unique in the table; never 0 */
	int16_t epoch;
	int32_t first_seq, last_seq;
	int64_t offset;			/* base offset; -1 while the append is out */
	struct kf_seq_waiter *waiters;	/* duplicates waiting for the append */
};

struct producer;

struct pstate {
	struct pstate *hnext;	/* pstate hash chain */
	struct pstate *pnext;	/* the producer's states, newest first */
	struct producer *pd;
	char *topic;		/* NUL-terminated copy */
	size_t topic_len;
	int32_t partition;
	uint32_t hash;
	int16_t epoch;		/* of the newest accepted batch */
	int restart;		/* the next batch starts the sequence afresh */
	uint32_t pending;	/* entries whose append is out */
	struct seq_entry *e;
	uint32_t n, cap;
};

struct producer {
	int64_t id;
	int16_t epoch;		/* newest known (its batches', InitProducerId's) */
	int64_t used_ms;	/* last batch or InitProducerId (monotonic) */
	uint32_t pending;	/* pending entries over all its states */
	uint32_t nstates;
	struct pstate *states;
	struct producer *hnext;
	struct producer *lru_prev, *lru_next;
};

struct kf_producers {
	pthread_mutex_t mu;
	struct kf_producers_limits lim;
	char *dir;		/* <data dir>/kafka; NULL: ids in memory only */
	int loaded;		/* next_id / reserved_to are known */
	int64_t next_id;	/* the next id handed out */
	int64_t reserved_to;	/* ids below this are reserved on disk */
	struct producer **pb;	/* producers hash */
	uint32_t pmask;
	uint32_t nproducers;
	struct pstate **sb;	/* pstate hash */
	uint32_t smask;
	uint32_t nstates;
	struct producer *lru_head, *lru_tail;
	uint64_t serial;
};

/* ------------------------------------------------------------------------
 * Hashing and lookup
 * ------------------------------------------------------------------------ */

static uint32_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return (uint32_t)x;
}

static uint32_t state_hash(int64_t id, struct cfx_view topic, int32_t partition)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the name */

	for (size_t i = 0; i < topic.len; i++) {
		h ^= topic.p[i];
		h *= 0x100000001b3ULL;
	}
	return mix64(h ^ ((uint64_t)id * 0x9e3779b97f4a7c15ULL) ^ (uint32_t)partition);
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t v = 16;

	while (v < n && v < (1u << 30))
		v <<= 1;
	return v;
}

static struct producer *producer_find(struct kf_producers *ps, int64_t id)
{
	for (struct producer *pd = ps->pb[mix64((uint64_t)id) & ps->pmask]; pd; pd = pd->hnext)
		if (pd->id == id)
			return pd;
	return NULL;
}

static struct pstate *state_find(struct kf_producers *ps, int64_t id, struct cfx_view topic,
				 int32_t partition)
{
	uint32_t h = state_hash(id, topic, partition);

	for (struct pstate *st = ps->sb[h & ps->smask]; st; st = st->hnext)
		if (st->hash == h && st->pd->id == id && st->partition == partition &&
		    st->topic_len == topic.len && memcmp(st->topic, topic.p, topic.len) == 0)
			return st;
	return NULL;
}

/* ------------------------------------------------------------------------
 * Producers, states, eviction
 * ------------------------------------------------------------------------ */

static void lru_unlink(struct kf_producers *ps, struct producer *pd)
{
	if (pd->lru_prev)
		pd->lru_prev->lru_next = pd->lru_next;
	else
		ps->lru_head = pd->lru_next;
	if (pd->lru_next)
		pd->lru_next->lru_prev = pd->lru_prev;
	else
		ps->lru_tail = pd->lru_prev;
	pd->lru_prev = pd->lru_next = NULL;
}

static void lru_push_head(struct kf_producers *ps, struct producer *pd)
{
	pd->lru_next = ps->lru_head;
	if (ps->lru_head)
		ps->lru_head->lru_prev = pd;
	ps->lru_head = pd;
	if (!ps->lru_tail)
		ps->lru_tail = pd;
}

static void producer_touch(struct kf_producers *ps, struct producer *pd, int64_t now_ms)
{
	pd->used_ms = now_ms;
	if (ps->lru_head != pd) {
		lru_unlink(ps, pd);
		lru_push_head(ps, pd);
	}
}

static struct producer *producer_add(struct kf_producers *ps, int64_t id, int16_t epoch,
				     int64_t now_ms)
{
	struct producer *pd = cfx_calloc(1, sizeof *pd);
	uint32_t b = mix64((uint64_t)id) & ps->pmask;

	pd->id = id;
	pd->epoch = epoch;
	pd->used_ms = now_ms;
	pd->hnext = ps->pb[b];
	ps->pb[b] = pd;
	lru_push_head(ps, pd);
	ps->nproducers++;
	return pd;
}

/* Removes a state with nothing pending from the hash and its producer's list. */
static void state_remove(struct kf_producers *ps, struct pstate *st)
{
	struct pstate **pp;

	CFX_ASSERT(st->pending == 0);
	for (pp = &ps->sb[st->hash & ps->smask]; *pp != st; pp = &(*pp)->hnext)
		;
	*pp = st->hnext;
	for (pp = &st->pd->states; *pp != st; pp = &(*pp)->pnext)
		;
	*pp = st->pnext;
	st->pd->nstates--;
	ps->nstates--;
	cfx_free(st->topic);
	cfx_free(st->e);
	cfx_free(st);
}

static void producer_remove(struct kf_producers *ps, struct producer *pd)
{
	struct producer **pp;

	CFX_ASSERT(pd->pending == 0);
	while (pd->states)
		state_remove(ps, pd->states);
	for (pp = &ps->pb[mix64((uint64_t)pd->id) & ps->pmask]; *pp != pd; pp = &(*pp)->hnext)
		;
	*pp = pd->hnext;
	lru_unlink(ps, pd);
	ps->nproducers--;
	cfx_free(pd);
}

/*
 * Drops idle producers from the cold end of the LRU list, then the coldest
 * ones beyond the count limits; `keep` (the one being worked on) and
 * producers with appends out stay. Amortised: each call looks at a few.
 */
static void evict(struct kf_producers *ps, int64_t now_ms, struct producer *keep)
{
	struct producer *pd = ps->lru_tail;
	int budget = 64; /* producers looked at per call */

	while (pd && budget-- > 0) {
		struct producer *prev = pd->lru_prev;
		int idle = now_ms - pd->used_ms >= ps->lim.idle_ms;
		int over = ps->nproducers > ps->lim.producers_max || ps->nstates > ps->lim.states_max;

		if (!idle && !over)
			break; /* everything warmer is newer still */
		if (pd != keep && pd->pending == 0)
			producer_remove(ps, pd);
		pd = prev;
	}
}

static struct pstate *state_add(struct kf_producers *ps, struct producer *pd,
				struct cfx_view topic, int32_t partition, int16_t epoch)
{
	struct pstate *st;

	if (pd->nstates >= ps->lim.states_per_id_max) {
		/* Too many partitions for one id: drop its oldest state with
		 * nothing pending (the list is newest first). */
		struct pstate *old = NULL;
		for (struct pstate *s = pd->states; s; s = s->pnext)
			if (s->pending == 0)
				old = s;
		if (old)
			state_remove(ps, old);
	}
	st = cfx_calloc(1, sizeof *st);
	st->pd = pd;
	st->topic = cfx_strndup((const char *)topic.p, topic.len);
	st->topic_len = topic.len;
	st->partition = partition;
	st->hash = state_hash(pd->id, topic, partition);
	st->epoch = epoch;
	st->restart = 1;
	st->hnext = ps->sb[st->hash & ps->smask];
	ps->sb[st->hash & ps->smask] = st;
	st->pnext = pd->states;
	pd->states = st;
	pd->nstates++;
	ps->nstates++;
	return st;
}

/* Drops settled entries beyond the history, oldest first. */
static void state_trim(struct pstate *st)
{
	uint32_t drop = 0;

	while (st->n - drop > KF_SEQ_HISTORY && st->e[drop].offset >= 0)
		drop++;
	if (drop) {
		memmove(st->e, st->e + drop, (st->n - drop) * sizeof *st->e);
		st->n -= drop;
	}
}

static struct seq_entry *entry_find(struct pstate *st, uint64_t serial, uint32_t *at)
{
	for (uint32_t i = 0; i < st->n; i++)
		if (st->e[i].serial == serial) {
			*at = i;
			return &st->e[i];
		}
	return NULL;
}

static void entry_remove(struct pstate *st, uint32_t at)
{
	memmove(st->e + at, st->e + at + 1, (st->n - at - 1) * sizeof *st->e);
	st->n--;
}

/* ------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------ */

struct kf_producers *kf_producers_new(const char *dir, const struct kf_producers_limits *lim)
{
	struct kf_producers *ps = cfx_calloc(1, sizeof *ps);

	pthread_mutex_init(&ps->mu, NULL);
	if (lim) {
		ps->lim = *lim;
	} else {
		ps->lim.producers_max = KF_PRODUCERS_MAX;
		ps->lim.states_max = KF_PRODUCER_STATES_MAX;
		ps->lim.states_per_id_max = KF_PRODUCER_STATES_PER_ID_MAX;
		ps->lim.idle_ms = KF_PRODUCER_IDLE_MS;
	}
	CFX_ASSERT(ps->lim.producers_max > 0 && ps->lim.states_max > 0 &&
		   ps->lim.states_per_id_max > 0);
	ps->pmask = pow2_at_least(ps->lim.producers_max) - 1;
	ps->smask = pow2_at_least(ps->lim.states_max) - 1;
	ps->pb = cfx_calloc(ps->pmask + 1, sizeof *ps->pb);
	ps->sb = cfx_calloc(ps->smask + 1, sizeof *ps->sb);
	if (dir) {
		size_t n = strlen(dir) + sizeof "/kafka";
		ps->dir = cfx_malloc(n);
		snprintf(ps->dir, n, "%s/kafka", dir);
	} else {
		ps->loaded = 1;
		ps->reserved_to = INT64_MAX;
	}
	return ps;
}

void kf_producers_free(struct kf_producers *ps)
{
	if (!ps)
		return;
	while (ps->lru_head) {
		struct producer *pd = ps->lru_head;
		for (struct pstate *st = pd->states; st; st = st->pnext)
			st->pending = 0; /* shutting down: no completion will come */
		pd->pending = 0;
		producer_remove(ps, pd);
	}
	cfx_free(ps->pb);
	cfx_free(ps->sb);
	cfx_free(ps->dir);
	pthread_mutex_destroy(&ps->mu);
	cfx_free(ps);
}

void kf_producers_lock(struct kf_producers *ps)
{
	pthread_mutex_lock(&ps->mu);
}

void kf_producers_unlock(struct kf_producers *ps)
{
	pthread_mutex_unlock(&ps->mu);
}

void kf_producers_counts(struct kf_producers *ps, uint32_t *producers, uint32_t *states)
{
	pthread_mutex_lock(&ps->mu);
	*producers = ps->nproducers;
	*states = ps->nstates;
	pthread_mutex_unlock(&ps->mu);
}

/* ------------------------------------------------------------------------
 * Producer ids
 *
 * File <data dir>/kafka/producer_ids, one line, replaced atomically:
 *   conflux-kafka-producer-ids 1 <reserved_to>
 * Every id below reserved_to may have been handed out; a restart starts
 * there. A file that is there but unreadable is not guessed about: ids
 * then start from the wall clock in microseconds, above anything an
 * earlier run could have reached at fewer than a million ids a second.
 * ------------------------------------------------------------------------ */

static void pid_path(const struct kf_producers *ps, char *path, size_t n)
{
	snprintf(path, n, "%s/producer_ids", ps->dir);
}

static void pid_load(struct kf_producers *ps)
{
	char path[4096], buf[128];
	FILE *f;
	int64_t v = -1;

	pid_path(ps, path, sizeof path);
	f = fopen(path, "r");
	if (!f && errno == ENOENT) {
		ps->next_id = ps->reserved_to = 0; /* a fresh data directory */
	} else {
		size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
		char tail;

		buf[n] = '\0';
		if (!f || sscanf(buf, PID_FILE_MAGIC " %" SCNd64 "%c", &v, &tail) != 2 ||
		    tail != '\n' || v < 0) {
			v = cfx_clock_wall_ms() * 1000;
			cfx_log_error("kafka: %s is unreadable or malformed; producer ids start "
				      "at %" PRId64 " (from the clock)",
				      path, v);
		}
		ps->next_id = ps->reserved_to = v;
	}
	if (f)
		fclose(f);
	ps->loaded = 1;
}

/* Makes sure next_id is reserved on disk. Returns 0 or -errno. @locks held */
static int pid_reserve(struct kf_producers *ps)
{
	char path[4096], line[96];
	int64_t to;
	int rc;

	if (ps->next_id < ps->reserved_to)
		return 0;
	CFX_ASSERT(ps->dir);
	to = ps->next_id + KF_PID_BLOCK;
	rc = cfx_mkdir_p(&cfx_fileops_real, ps->dir);
	if (rc == 0) {
		pid_path(ps, path, sizeof path);
		snprintf(line, sizeof line, PID_FILE_MAGIC " %" PRId64 "\n", to);
		rc = cfx_write_file_atomic(&cfx_fileops_real, path, line, strlen(line));
	}
	if (rc) {
		cfx_log_ratelimited(CFX_LOG_ERROR, "kafka: cannot reserve producer ids in %s: %s",
				    ps->dir, strerror(-rc));
		return rc;
	}
	ps->reserved_to = to;
	return 0;
}

int16_t kf_producers_init_id(struct kf_producers *ps, int64_t have_id, int16_t have_epoch,
			     int64_t now_ms, int64_t *id, int16_t *epoch)
{
	int16_t err = KF_ERR_NONE;

	*id = -1;
	*epoch = -1;
	if ((have_id < 0) != (have_epoch < 0))
		return KF_ERR_INVALID_REQUEST;
	pthread_mutex_lock(&ps->mu);
	if (!ps->loaded)
		pid_load(ps);
	if (have_id >= 0 && have_id < ps->next_id) {
		/* A producer of ours asks for a new epoch (librdkafka after a
		 * timed-out or out-of-order batch, once its batches in flight
		 * are done); each partition fences the older epochs once it
		 * sees a batch of the new one. */
		struct producer *pd = producer_find(ps, have_id);
		int32_t e = CFX_MAX(have_epoch, pd ? pd->epoch : 0) + 1;

		if (e <= KF_PRODUCER_EPOCH_MAX) {
			if (!pd)
				pd = producer_add(ps, have_id, (int16_t)e, now_ms);
			pd->epoch = (int16_t)e;
			producer_touch(ps, pd, now_ms);
			evict(ps, now_ms, pd);
			*id = have_id;
			*epoch = (int16_t)e;
			goto out;
		}
		/* The epochs of this id are used up: a fresh id. */
	}
	if (pid_reserve(ps)) {
		err = KF_ERR_COORDINATOR_LOAD_IN_PROGRESS;
		goto out;
	}
	*id = ps->next_id++;
	*epoch = 0;
out:
	pthread_mutex_unlock(&ps->mu);
	return err;
}

/* ------------------------------------------------------------------------
 * Sequence checks
 * ------------------------------------------------------------------------ */

/* Sequence numbers wrap from INT32_MAX to 0 (Kafka's DefaultRecordBatch). */
static int32_t seq_add(int32_t seq, int32_t n)
{
	return (int32_t)(((int64_t)seq + n) % ((int64_t)INT32_MAX + 1));
}

int kf_producers_begin(struct kf_producers *ps, const struct kf_seq_batch *b, int64_t now_ms,
		       struct kf_seq_waiter *w, struct kf_seq_result *res)
{
	struct producer *pd;
	struct pstate *st;
	int32_t first = b->base_sequence, last;

	memset(res, 0, sizeof *res);
	res->offset = -1;
	CFX_ASSERT(b->producer_id >= 0);
	if (b->epoch < 0 || first < 0 || b->last_offset_delta < 0) {
		res->err = KF_ERR_INVALID_RECORD;
		return KF_SEQ_REJECT;
	}
	last = seq_add(first, b->last_offset_delta);
	pd = producer_find(ps, b->producer_id);
	if (!pd)
		pd = producer_add(ps, b->producer_id, b->epoch, now_ms);
	producer_touch(ps, pd, now_ms);
	st = state_find(ps, b->producer_id, b->topic, b->partition);
	if (!st)
		st = state_add(ps, pd, b->topic, b->partition, b->epoch);
	/* Epochs are fenced per partition, as Kafka does: a client that
	 * bumped its epoch on its own (the Java client) may still retry an
	 * older-epoch batch on a partition that has not seen the new one. */
	if (b->epoch < st->epoch) {
		res->err = KF_ERR_INVALID_PRODUCER_EPOCH;
		return KF_SEQ_REJECT;
	}
	/* A retry of a batch of this epoch: stored (its offset) or on its way. */
	for (uint32_t i = 0; i < st->n; i++) {
		struct seq_entry *e = &st->e[i];
		if (e->epoch != b->epoch || e->first_seq != first || e->last_seq != last)
			continue;
		if (e->offset >= 0) {
			res->offset = e->offset;
			return KF_SEQ_DUPLICATE;
		}
		w->next = e->waiters;
		e->waiters = w;
		return KF_SEQ_WAIT;
	}
	if (!st->restart) {
		if (b->epoch > st->epoch) {
			/* A new epoch starts its sequence at 0. */
			if (first != 0) {
				res->err = KF_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
				return KF_SEQ_REJECT;
			}
		} else if (st->n == 0 || first != seq_add(st->e[st->n - 1].last_seq, 1)) {
			res->err = KF_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
			return KF_SEQ_REJECT;
		}
	}
	if (st->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : KF_SEQ_HISTORY + 1;
		st->e = cfx_realloc(st->e, st->cap * sizeof *st->e);
	}
	st->e[st->n++] = (struct seq_entry){
		.serial = ++ps->serial,
		.epoch = b->epoch,
		.first_seq = first,
		.last_seq = last,
		.offset = -1,
	};
	st->epoch = b->epoch;
	st->restart = 0;
	if (b->epoch > pd->epoch)
		pd->epoch = b->epoch;
	st->pending++;
	pd->pending++;
	res->serial = ps->serial;
	evict(ps, now_ms, pd);
	return KF_SEQ_APPEND;
}

void kf_producers_abort(struct kf_producers *ps, const struct kf_seq_batch *b, uint64_t serial)
{
	struct pstate *st = state_find(ps, b->producer_id, b->topic, b->partition);
	uint32_t at;
	struct seq_entry *e = st ? entry_find(st, serial, &at) : NULL;

	CFX_ASSERT(e && e->offset < 0 && !e->waiters); /* begun under this same lock hold */
	entry_remove(st, at);
	st->pending--;
	st->pd->pending--;
	if (st->n == 0)
		st->restart = 1; /* nothing accepted here: as if never seen */
	else
		st->epoch = st->e[st->n - 1].epoch; /* it may have opened a new epoch */
}

void kf_producers_complete(struct kf_producers *ps, int64_t producer_id, struct cfx_view topic,
			   int32_t partition, uint64_t serial, int err, int64_t offset)
{
	struct kf_seq_waiter *waiters = NULL;
	struct pstate *st;
	struct seq_entry *e = NULL;
	uint32_t at = 0;

	pthread_mutex_lock(&ps->mu);
	st = state_find(ps, producer_id, topic, partition);
	if (st)
		e = entry_find(st, serial, &at);
	CFX_ASSERT(e && e->offset < 0); /* pending entries are never dropped */
	waiters = e->waiters;
	e->waiters = NULL;
	st->pending--;
	st->pd->pending--;
	if (err) {
		/* Not stored: forget it, and take the partition's next batch
		 * (normally the client's retry of this one) as a new start.
		 * Batches after it that were accepted meanwhile keep their
		 * entries; their duplicates are still recognised. */
		entry_remove(st, at);
		st->restart = 1;
	} else {
		CFX_ASSERT(offset >= 0);
		e->offset = offset;
		state_trim(st);
	}
	pthread_mutex_unlock(&ps->mu);
	while (waiters) {
		struct kf_seq_waiter *w = waiters;
		waiters = w->next;
		w->done(w, err, err ? -1 : offset);
	}
}
