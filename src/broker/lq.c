/*
 * lq.c - light queues (lq.h): the name table, the entry rings, the
 * journal with its group commit, snapshots, and replay at open.
 *
 * Not here: what an entry means (the caller's), delivery, matching of
 * topic filters. The formats are described in docs/design/mqtt.md ("Light
 * queues"); the tables below are the reference.
 *
 * In memory
 * ---------
 *   byid[id]  -> struct lq  (one allocation: head, tail, ring, hash, name)
 *   slots[]   -> ids, open addressing over a keyed hash of the name
 *   lq.ring   -> entries [head, tail) at e[seq & (cap - 1)], plus one
 *                "acknowledged" bit per slot; allocated on the first push,
 *                halved when a quarter full, freed when empty
 *
 * Invariant of every queue: head == tail, or the entry at head is not
 * acknowledged (the head moves over acknowledged entries at once), and
 * tail - head <= entries_max_per_queue <= ring->cap.
 * Free ids are a list threaded through byid (odd values: next << 1 | 1).
 *
 * On disk: <dir>/journal and <dir>/snapshot, both sequences of records
 *
 *   OFFSET | SIZE | FIELD
 *        0 |    4 | len      payload bytes, 1..REC_PAYLOAD_MAX (le32)
 *        4 |    4 | crc      CRC-32C of the len field, then the payload
 *        8 |  len | payload  type u8, then the fields below (little-endian)
 *
 *   type       | fields                                      | where
 *   1 JHDR     | version u8, epoch u64                        | first record of the journal
 *   2 SNAP     | version u8, epoch u64 (the journal covered)  | first record of the snapshot
 *   3 DEFINE   | id u32, head u64, name_len u16, name         | create (head = 1) or snapshot
 *   4 PUSH     | id u32, entry (topic u16, flags u16, queue u32, offset u64)
 *   5 SET      | id u32, entry                                | clear, then push
 *   6 CLEAR    | id u32                                       | set without an entry
 *   7 ACK      | id u32, seq u64
 *   8 DROP     | id u32
 *   9 POS      | topic u16, queue u32, offset u64
 *
 * A snapshot is SNAP, then for each queue DEFINE (its head), a PUSH per
 * slot of [head, tail) and an ACK per acknowledged one, then the POS
 * records: replay rebuilds it with the same code that applies a journal,
 * and what replay allocates stays proportional to the bytes read (plus
 * the id array, bounded by queues_max).
 *
 * Compaction (cfx_lq_compact) writes journal.new (JHDR epoch E+1), the
 * snapshot (SNAP epoch E) through snapshot.tmp + fsync + rename + dir
 * fsync, then renames journal.new over the journal. At open, a journal
 * whose epoch is at most the snapshot's is already inside it (a crash
 * between the two renames) and is replaced; one with epoch E+1 is
 * replayed; anything else means a lost snapshot and is refused.
 *
 * Replay: a snapshot must be whole (it was fsynced before its rename):
 * damage there is CFX_ECORRUPT. In the journal, the first record that is
 * torn or fails its CRC ends it, as in the POP journal (pop.c): what
 * follows is copied to journal.damaged for inspection and cut off, with a
 * warning. Records that decode but make no sense (unknown id, duplicate
 * name, ack of nothing) are skipped and counted (stats.replay_ignored).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/siphash.h"
#include "broker/lq.h"

enum rec_type {
	REC_JHDR = 1,
	REC_SNAP = 2,
	REC_DEFINE = 3,
	REC_PUSH = 4,
	REC_SET = 5,
	REC_CLEAR = 6,
	REC_ACK = 7,
	REC_DROP = 8,
	REC_POS = 9,
};

#define LQ_FORMAT_VERSION 1
#define REC_HDR_BYTES 8u
#define REC_PAYLOAD_MAX (1u + 4u + 8u + 2u + CFX_LQ_NAME_BYTES_MAX)
#define JHDR_BYTES (REC_HDR_BYTES + 10u)
/* Sequences never pass this (a push at it is refused), so they cannot wrap;
 * replay accepts heads up to it, the same rule. */
#define SEQ_MAX (1ull << 63)
/* Replay reads files through a window this large (plus one record). */
#define READ_WINDOW_BYTES (1u << 20)
/* Estimated snapshot bytes, per queue (DEFINE without name) and per slot (PUSH). */
#define SNAP_QUEUE_BYTES (REC_HDR_BYTES + 15u)
#define SNAP_SLOT_BYTES (REC_HDR_BYTES + 21u)
#define SNAP_POS_BYTES (REC_HDR_BYTES + 15u)

#define LQ_CORRUPT(path, off, what) \
	cfx_log_error("lq: %s is damaged at byte %" PRIu64 ": %s (lq.c:%d)", (path), \
		      (uint64_t)(off), (what), __LINE__)

struct lq_ring {
	uint32_t cap;		 /* slots, a power of two */
	uint32_t live;		 /* entries not acknowledged */
	struct cfx_lq_entry e[]; /* then, if cap > 1, ceil(cap / 64) words of ack bits */
};

struct lq {
	uint64_t head;	      /* oldest sequence not acknowledged (tail if none) */
	uint64_t tail;	      /* sequence of the next push */
	struct lq_ring *ring; /* NULL when head == tail */
	uint32_t hash;	      /* keyed hash of the name */
	uint16_t nlen;	      /* name bytes, 1..65535 */
	uint8_t name[];	      /* not NUL-terminated */
};

struct lq_pos {
	uint64_t key; /* POS_USED | topic << 32 | queue; 0 = empty */
	uint64_t offset;
};
#define POS_USED (1ull << 48)

struct cfx_lqs {
	struct cfx_lq_opts o;
	char *dir;
	const struct cfx_file_ops *fops;
	pthread_mutex_t mu; /* everything below, unless said otherwise */

	/* Queues */
	struct lq **byid;  /* [0, id_cap): live, NULL (replay) or a free link (odd) */
	uint32_t id_cap;
	uint32_t id_hw;	   /* ids 1..id_hw were handed out */
	uint32_t free_head; /* first free id, 0 if none */
	uint32_t *slots;   /* name table: ids, 0 = empty; linear probing */
	uint32_t slot_cap; /* power of two, or 0 */
	uint8_t hkey[16];  /* of the name hash: a client cannot aim at one chain */
	uint64_t nqueues;
	uint64_t nentries;   /* not acknowledged */
	uint64_t nslots;     /* sum of tail - head */
	uint64_t name_bytes; /* sum of name lengths */
	uint64_t q_bytes;    /* queue allocations */
	uint64_t ring_bytes;
	uint64_t dropped;

	/* Positions */
	struct lq_pos *pos;
	uint32_t pos_cap, npos;

	/* Journal (see lq_unlock for the hand-off) */
	int jfd;
	uint64_t jepoch;
	uint64_t jbytes;	/* bytes in the file */
	struct cfx_writer jbuf; /* records not written yet, in order */
	struct cfx_writer jspare;
	uint64_t jqueued;	/* bytes ever put in jbuf */
	uint64_t jdone;		/* of those, bytes on disk (written or in a snapshot) */
	int jwriting;		/* a writer or a compaction owns the file */
	int jdirty;		/* written since the last fdatasync */
	int jerr;		/* sticky journal error */
	pthread_cond_t jcond;	/* jwriting or jdone changed */
	pthread_mutex_t maint_mu; /* cfx_lq_sync and cfx_lq_compact, one at a time */
	uint64_t snapshots;
	uint64_t ignored;

	/* Background sync and compaction */
	pthread_t thr;
	int thr_on;
	int thr_stop;		/* under thr_mu */
	pthread_mutex_t thr_mu;
	pthread_cond_t thr_cond;
};

void cfx_lq_opts_default(struct cfx_lq_opts *o)
{
	*o = (struct cfx_lq_opts){ .entries_max_per_queue = 1000,
				   .queues_max = 10000000,
				   .flush_interval_ms = 100,
				   .journal_bytes_min = 64u << 20 };
}

/* ------------------------------------------------------------------------
 * Ids and the name table
 * ------------------------------------------------------------------------ */

static int id_is_free_link(const struct lq *p)
{
	return ((uintptr_t)p & 1) != 0;
}

/* The live queue `id`, or NULL. */
static struct lq *q_of(const struct cfx_lqs *lqs, uint32_t id)
{
	if (id == 0 || id > lqs->id_hw)
		return NULL;
	struct lq *q = lqs->byid[id];
	return q && !id_is_free_link(q) ? q : NULL;
}

static void byid_reserve(struct cfx_lqs *lqs, uint32_t id)
{
	if (id < lqs->id_cap)
		return;
	uint64_t cap = CFX_MAX((uint64_t)id + 1, (uint64_t)lqs->id_cap + lqs->id_cap / 2);
	cap = CFX_MAX(cap, 64);
	cap = CFX_MIN(cap, lqs->o.queues_max + 1);
	CFX_ASSERT(cap > id);
	lqs->byid = cfx_realloc(lqs->byid, cap * sizeof *lqs->byid);
	memset(lqs->byid + lqs->id_cap, 0, (cap - lqs->id_cap) * sizeof *lqs->byid);
	lqs->id_cap = (uint32_t)cap;
}

static uint32_t id_alloc(struct cfx_lqs *lqs)
{
	uint32_t id = lqs->free_head;

	if (id) {
		lqs->free_head = (uint32_t)((uintptr_t)lqs->byid[id] >> 1);
		lqs->byid[id] = NULL;
		return id;
	}
	id = lqs->id_hw + 1;
	byid_reserve(lqs, id);
	lqs->id_hw = id;
	return id;
}

/* Frees the id array when no queue is left (memory back after a wave of drops). */
static void ids_release_if_empty(struct cfx_lqs *lqs)
{
	if (lqs->nqueues)
		return;
	CFX_FREE(lqs->byid);
	lqs->id_cap = lqs->id_hw = lqs->free_head = 0;
}

static void id_free(struct cfx_lqs *lqs, uint32_t id)
{
	lqs->byid[id] = (struct lq *)(((uintptr_t)lqs->free_head << 1) | 1);
	lqs->free_head = id;
	ids_release_if_empty(lqs);
}

/*
 * Replay places queues at the ids its records name and leaves NULL holes;
 * afterwards the holes become the free list, lowest id first out.
 */
static void ids_relink_free(struct cfx_lqs *lqs)
{
	lqs->free_head = 0;
	while (lqs->id_hw && !lqs->byid[lqs->id_hw])
		lqs->id_hw--;
	for (uint32_t id = lqs->id_hw; id >= 1; id--)
		if (!lqs->byid[id]) {
			lqs->byid[id] = (struct lq *)(((uintptr_t)lqs->free_head << 1) | 1);
			lqs->free_head = id;
		}
	ids_release_if_empty(lqs);
}

static uint32_t name_hash(const struct cfx_lqs *lqs, const uint8_t *p, size_t len)
{
	return (uint32_t)cfx_siphash24(lqs->hkey, p, len);
}

static int q_named(const struct lq *q, uint32_t h, const uint8_t *p, size_t len)
{
	return q->hash == h && q->nlen == len && memcmp(q->name, p, len) == 0;
}

/* The id of the queue named (p, len) with hash h, or 0. */
static uint32_t table_find(const struct cfx_lqs *lqs, uint32_t h, const uint8_t *p, size_t len)
{
	uint32_t mask = lqs->slot_cap - 1;

	if (!lqs->slot_cap)
		return 0;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		uint32_t id = lqs->slots[i];
		if (!id)
			return 0;
		if (q_named(lqs->byid[id], h, p, len))
			return id;
	}
}

static void table_place(uint32_t *slots, uint32_t cap, uint32_t h, uint32_t id)
{
	uint32_t i = h & (cap - 1);

	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = id;
}

static void table_resize(struct cfx_lqs *lqs, uint32_t cap)
{
	uint32_t *slots = cap ? cfx_calloc(cap, sizeof *slots) : NULL;

	for (uint32_t i = 0; i < lqs->slot_cap; i++)
		if (lqs->slots[i])
			table_place(slots, cap, lqs->byid[lqs->slots[i]]->hash, lqs->slots[i]);
	cfx_free(lqs->slots);
	lqs->slots = slots;
	lqs->slot_cap = cap;
}

/* Adds `id` (not in the table yet); `n` queues will be in it. Load <= 3/4. */
static void table_insert(struct cfx_lqs *lqs, uint32_t id, uint64_t n)
{
	if (n * 4 > (uint64_t)lqs->slot_cap * 3)
		table_resize(lqs, lqs->slot_cap ? lqs->slot_cap * 2 : 16);
	table_place(lqs->slots, lqs->slot_cap, lqs->byid[id]->hash, id);
}

/* Removes `id` (backward shift: no tombstones); `n` queues remain. */
static void table_remove(struct cfx_lqs *lqs, uint32_t id, uint64_t n)
{
	uint32_t mask = lqs->slot_cap - 1;
	uint32_t i = lqs->byid[id]->hash & mask;

	while (lqs->slots[i] != id)
		i = (i + 1) & mask;
	for (uint32_t j = (i + 1) & mask; lqs->slots[j]; j = (j + 1) & mask) {
		uint32_t home = lqs->byid[lqs->slots[j]]->hash & mask;
		/* Move slots[j] into the hole unless its home lies in (i, j]. */
		int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			lqs->slots[i] = lqs->slots[j];
			i = j;
		}
	}
	lqs->slots[i] = 0;
	if (n == 0)
		table_resize(lqs, 0);
	else if (lqs->slot_cap > 16 && n * 8 < lqs->slot_cap)
		table_resize(lqs, lqs->slot_cap / 2);
}

/* ------------------------------------------------------------------------
 * Queues and their rings
 * ------------------------------------------------------------------------ */

static size_t ring_size(uint32_t cap)
{
	return sizeof(struct lq_ring) + (size_t)cap * sizeof(struct cfx_lq_entry) +
	       (cap > 1 ? ((size_t)cap + 63) / 64 * 8 : 0);
}

static uint64_t *ring_bits(struct lq_ring *r)
{
	return (uint64_t *)(void *)(r->e + r->cap);
}

static int slot_acked(struct lq *q, uint64_t seq)
{
	struct lq_ring *r = q->ring;
	uint32_t i = (uint32_t)(seq & (r->cap - 1));

	return r->cap > 1 && ((ring_bits(r)[i / 64] >> (i % 64)) & 1);
}

static void slot_mark(struct lq *q, uint64_t seq, int acked)
{
	struct lq_ring *r = q->ring;
	uint32_t i = (uint32_t)(seq & (r->cap - 1));

	if (r->cap == 1) {
		CFX_ASSERT(!acked); /* a lone entry is the head: acking it empties the ring */
		return;
	}
	if (acked)
		ring_bits(r)[i / 64] |= 1ull << (i % 64);
	else
		ring_bits(r)[i / 64] &= ~(1ull << (i % 64));
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t c = 1;
	while (c < n)
		c <<= 1;
	return c;
}

/* Moves [head, tail) into a ring of `cap` slots (cap == 0: frees it). */
static void ring_resize(struct cfx_lqs *lqs, struct lq *q, uint32_t cap)
{
	struct lq_ring *old = q->ring, *r = NULL;

	CFX_ASSERT(cap == 0 || cap >= q->tail - q->head);
	if (cap) {
		r = cfx_malloc(ring_size(cap));
		r->cap = cap;
		r->live = old ? old->live : 0;
		if (cap > 1)
			memset(ring_bits(r), 0, (cap + 63) / 64 * 8);
		lqs->ring_bytes += ring_size(cap);
	}
	if (old) {
		for (uint64_t s = q->head; r && s < q->tail; s++) {
			r->e[s & (cap - 1)] = old->e[s & (old->cap - 1)];
			if (slot_acked(q, s)) {
				uint32_t i = (uint32_t)(s & (cap - 1));
				ring_bits(r)[i / 64] |= 1ull << (i % 64);
			}
		}
		lqs->ring_bytes -= ring_size(old->cap);
		cfx_free(old);
	}
	q->ring = r;
}

/* After the head moved: frees an empty ring, halves a sparse one. */
static void q_fit(struct cfx_lqs *lqs, struct lq *q)
{
	uint64_t n = q->tail - q->head;

	if (n == 0)
		ring_resize(lqs, q, 0);
	else if (q->ring->cap >= 8 && n <= q->ring->cap / 4)
		ring_resize(lqs, q, pow2_at_least(n) * 2);
}

/* Moves the head over acknowledged entries. */
static void q_advance(struct cfx_lqs *lqs, struct lq *q)
{
	while (q->head < q->tail && slot_acked(q, q->head)) {
		q->head++;
		lqs->nslots--;
	}
	q_fit(lqs, q);
}

static uint64_t q_push(struct cfx_lqs *lqs, struct lq *q, const struct cfx_lq_entry *e)
{
	uint64_t seq;

	if (q->tail - q->head >= lqs->o.entries_max_per_queue) {
		/* The oldest goes; by the invariant it is not acknowledged. */
		q->ring->live--;
		q->head++;
		lqs->nslots--;
		lqs->nentries--;
		lqs->dropped++;
		q_advance(lqs, q);
	}
	if (!q->ring || q->ring->cap < q->tail - q->head + 1)
		ring_resize(lqs, q, q->ring ? q->ring->cap * 2 : 1);
	seq = q->tail++;
	q->ring->e[seq & (q->ring->cap - 1)] = *e;
	slot_mark(q, seq, 0);
	q->ring->live++;
	lqs->nslots++;
	lqs->nentries++;
	return seq;
}

static int q_ack(struct cfx_lqs *lqs, struct lq *q, uint64_t seq)
{
	if (seq < q->head || seq >= q->tail || slot_acked(q, seq))
		return CFX_ENOENT;
	q->ring->live--;
	lqs->nentries--;
	if (seq == q->head) {
		q->head++;
		lqs->nslots--;
		q_advance(lqs, q);
	} else {
		slot_mark(q, seq, 1);
	}
	return 0;
}

static void q_clear(struct cfx_lqs *lqs, struct lq *q)
{
	if (!q->ring)
		return;
	lqs->nentries -= q->ring->live;
	lqs->nslots -= q->tail - q->head;
	q->head = q->tail;
	ring_resize(lqs, q, 0);
}

static size_t q_alloc_size(size_t nlen)
{
	return CFX_MAX(sizeof(struct lq), offsetof(struct lq, name) + nlen);
}

/* Creates the queue at `id` (free, below the array's capacity). */
static struct lq *q_new(struct cfx_lqs *lqs, uint32_t id, uint64_t head, const uint8_t *name,
			size_t nlen, uint32_t h)
{
	struct lq *q = cfx_malloc(q_alloc_size(nlen));

	q->head = q->tail = head;
	q->ring = NULL;
	q->hash = h;
	q->nlen = (uint16_t)nlen;
	memcpy(q->name, name, nlen);
	lqs->byid[id] = q;
	lqs->nqueues++;
	table_insert(lqs, id, lqs->nqueues);
	lqs->q_bytes += q_alloc_size(nlen);
	lqs->name_bytes += nlen;
	return q;
}

static void q_delete(struct cfx_lqs *lqs, uint32_t id, int replaying)
{
	struct lq *q = lqs->byid[id];

	q_clear(lqs, q);
	lqs->nqueues--;
	table_remove(lqs, id, lqs->nqueues);
	lqs->q_bytes -= q_alloc_size(q->nlen);
	lqs->name_bytes -= q->nlen;
	cfx_free(q);
	if (replaying)
		lqs->byid[id] = NULL;
	else
		id_free(lqs, id);
}

/* ------------------------------------------------------------------------
 * Positions
 * ------------------------------------------------------------------------ */

static uint64_t pos_key(uint16_t topic, uint32_t queue)
{
	return POS_USED | (uint64_t)topic << 32 | queue;
}

static struct lq_pos *pos_slot(struct lq_pos *tab, uint32_t cap, uint64_t key)
{
	uint32_t i = (uint32_t)cfx_hash_mix64(key) & (cap - 1);

	while (tab[i].key && tab[i].key != key)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

static int pos_set(struct cfx_lqs *lqs, uint64_t key, uint64_t offset)
{
	struct lq_pos *p = lqs->pos_cap ? pos_slot(lqs->pos, lqs->pos_cap, key) : NULL;

	if (!p || !p->key) {
		if (lqs->npos >= CFX_LQ_POSITIONS_MAX)
			return CFX_E2BIG;
		if ((uint64_t)(lqs->npos + 1) * 4 > (uint64_t)lqs->pos_cap * 3) {
			uint32_t cap = lqs->pos_cap ? lqs->pos_cap * 2 : 16;
			struct lq_pos *tab = cfx_calloc(cap, sizeof *tab);
			for (uint32_t i = 0; i < lqs->pos_cap; i++)
				if (lqs->pos[i].key)
					*pos_slot(tab, cap, lqs->pos[i].key) = lqs->pos[i];
			cfx_free(lqs->pos);
			lqs->pos = tab;
			lqs->pos_cap = cap;
		}
		p = pos_slot(lqs->pos, lqs->pos_cap, key);
		p->key = key;
		lqs->npos++;
	}
	p->offset = offset;
	return 0;
}

/* ------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------ */

struct rec {
	uint8_t type;
	uint8_t version;       /* JHDR, SNAP */
	uint32_t id;
	uint64_t u64;	       /* epoch (JHDR, SNAP), head (DEFINE), seq (ACK) */
	struct cfx_lq_entry e; /* PUSH, SET; POS uses topic, queue, offset */
	struct cfx_view name;  /* DEFINE */
};

static size_t rec_payload_len(const struct rec *r)
{
	switch (r->type) {
	case REC_JHDR:
	case REC_SNAP:
		return 1 + 1 + 8;
	case REC_DEFINE:
		return 1 + 4 + 8 + 2 + r->name.len;
	case REC_PUSH:
	case REC_SET:
		return 1 + 4 + 16;
	case REC_CLEAR:
	case REC_DROP:
		return 1 + 4;
	case REC_ACK:
		return 1 + 4 + 8;
	case REC_POS:
		return 1 + 2 + 4 + 8;
	}
	CFX_ASSERT(!"unknown record type");
	return 0;
}

/* Appends one framed record to `wr` (size first, then the CRC over it). */
static void rec_put(struct cfx_writer *wr, const struct rec *r)
{
	size_t len = rec_payload_len(r);
	uint8_t *p = cfx_writer_extend(wr, REC_HDR_BYTES + len);
	struct cfx_writer w = { .p = p + REC_HDR_BYTES, .len = 0, .cap = len };

	cfx_write_u8(&w, r->type);
	switch (r->type) {
	case REC_JHDR:
	case REC_SNAP:
		cfx_write_u8(&w, r->version);
		cfx_write_le64(&w, r->u64);
		break;
	case REC_DEFINE:
		cfx_write_le32(&w, r->id);
		cfx_write_le64(&w, r->u64);
		cfx_write_le16(&w, (uint16_t)r->name.len);
		cfx_write_bytes(&w, r->name.p, r->name.len);
		break;
	case REC_PUSH:
	case REC_SET:
		cfx_write_le32(&w, r->id);
		cfx_write_le16(&w, r->e.topic);
		cfx_write_le16(&w, r->e.flags);
		cfx_write_le32(&w, r->e.queue);
		cfx_write_le64(&w, r->e.offset);
		break;
	case REC_CLEAR:
	case REC_DROP:
		cfx_write_le32(&w, r->id);
		break;
	case REC_ACK:
		cfx_write_le32(&w, r->id);
		cfx_write_le64(&w, r->u64);
		break;
	case REC_POS:
		cfx_write_le16(&w, r->e.topic);
		cfx_write_le32(&w, r->e.queue);
		cfx_write_le64(&w, r->e.offset);
		break;
	}
	CFX_ASSERT(w.p == p + REC_HDR_BYTES && w.len == len); /* sized exactly */
	cfx_store_le32(p, (uint32_t)len);
	cfx_store_le32(p + 4, cfx_crc32c(cfx_crc32c(0, p, 4), p + REC_HDR_BYTES, len));
}

/*
 * Decodes the record at p[0, avail). Returns its framed size, 0 if more
 * bytes are needed to tell, or -1 if it is damaged. `name` points into p.
 */
static long rec_get(const uint8_t *p, size_t avail, struct rec *r)
{
	uint32_t len;

	if (avail < REC_HDR_BYTES)
		return 0;
	len = cfx_load_le32(p);
	if (len == 0 || len > REC_PAYLOAD_MAX)
		return -1;
	if (avail < REC_HDR_BYTES + len)
		return 0;
	if (cfx_crc32c(cfx_crc32c(0, p, 4), p + REC_HDR_BYTES, len) != cfx_load_le32(p + 4))
		return -1;

	struct cfx_reader in = cfx_reader_make(p + REC_HDR_BYTES, len);
	memset(r, 0, sizeof *r);
	r->type = cfx_read_u8(&in);
	switch (r->type) {
	case REC_JHDR:
	case REC_SNAP:
		r->version = cfx_read_u8(&in);
		r->u64 = cfx_read_le64(&in);
		break;
	case REC_DEFINE:
		r->id = cfx_read_le32(&in);
		r->u64 = cfx_read_le64(&in);
		r->name.len = cfx_read_le16(&in);
		r->name.p = cfx_read_bytes(&in, r->name.len, "name");
		if (r->name.len == 0)
			return -1;
		break;
	case REC_PUSH:
	case REC_SET:
		r->id = cfx_read_le32(&in);
		r->e.topic = cfx_read_le16(&in);
		r->e.flags = cfx_read_le16(&in);
		r->e.queue = cfx_read_le32(&in);
		r->e.offset = cfx_read_le64(&in);
		break;
	case REC_CLEAR:
	case REC_DROP:
		r->id = cfx_read_le32(&in);
		break;
	case REC_ACK:
		r->id = cfx_read_le32(&in);
		r->u64 = cfx_read_le64(&in);
		break;
	case REC_POS:
		r->e.topic = cfx_read_le16(&in);
		r->e.queue = cfx_read_le32(&in);
		r->e.offset = cfx_read_le64(&in);
		break;
	default:
		return -1;
	}
	if (in.err || cfx_reader_left(&in))
		return -1;
	return (long)(REC_HDR_BYTES + len);
}

/* Applies a replayed record (snapshot or journal). @locks mu */
static void apply(struct cfx_lqs *lqs, const struct rec *r)
{
	struct lq *q = NULL;
	int ok = 1;

	if (r->type != REC_DEFINE && r->type != REC_POS && r->type != REC_JHDR &&
	    r->type != REC_SNAP) {
		q = q_of(lqs, r->id);
		if (!q) {
			lqs->ignored++;
			return;
		}
	}
	switch (r->type) {
	case REC_DEFINE: {
		uint32_t h = name_hash(lqs, r->name.p, r->name.len);
		if (r->id == 0 || r->id > lqs->o.queues_max || q_of(lqs, r->id) ||
		    lqs->nqueues >= lqs->o.queues_max || r->u64 == 0 || r->u64 > SEQ_MAX ||
		    table_find(lqs, h, r->name.p, r->name.len)) {
			ok = 0;
			break;
		}
		byid_reserve(lqs, r->id);
		if (r->id > lqs->id_hw)
			lqs->id_hw = r->id;
		q_new(lqs, r->id, r->u64, r->name.p, r->name.len, h);
		break;
	}
	case REC_PUSH:
		if ((ok = q->tail < SEQ_MAX))
			q_push(lqs, q, &r->e);
		break;
	case REC_SET:
		if ((ok = q->tail < SEQ_MAX)) {
			q_clear(lqs, q);
			q_push(lqs, q, &r->e);
		}
		break;
	case REC_CLEAR:
		q_clear(lqs, q);
		break;
	case REC_ACK:
		ok = q_ack(lqs, q, r->u64) == 0;
		break;
	case REC_DROP:
		q_delete(lqs, r->id, 1);
		break;
	case REC_POS:
		ok = pos_set(lqs, pos_key(r->e.topic, r->e.queue), r->e.offset) == 0;
		break;
	default: /* headers inside a file */
		ok = 0;
		break;
	}
	if (!ok)
		lqs->ignored++;
}

/* ------------------------------------------------------------------------
 * The journal: records are queued under mu, written outside it
 * ------------------------------------------------------------------------ */

/* Queues a record; it reaches the file before lq_unlock returns. @locks mu */
static void journal(struct cfx_lqs *lqs, const struct rec *r)
{
	size_t before = lqs->jbuf.len;

	rec_put(&lqs->jbuf, r);
	lqs->jqueued += lqs->jbuf.len - before;
}

/*
 * Takes the writer's role: writes every queued record in one write(2)
 * (and fdatasync, with flush_interval_ms == 0) with mu released, so that
 * other callers change the state and queue records meanwhile. Whoever
 * waits for records already taken waits on jcond. @locks mu (released
 * during the write)
 */
static void journal_write(struct cfx_lqs *lqs)
{
	struct cfx_writer w = lqs->jbuf;
	uint64_t end = lqs->jqueued, at = lqs->jbytes;
	int fd = lqs->jfd, r;

	CFX_ASSERT(!lqs->jwriting && w.len);
	lqs->jbuf = lqs->jspare;
	lqs->jbuf.len = 0;
	lqs->jwriting = 1;
	pthread_mutex_unlock(&lqs->mu);
	r = cfx_pwrite_full(lqs->fops, fd, w.p, w.len, (off_t)at);
	if (!r && lqs->o.flush_interval_ms == 0 && lqs->fops->fdatasync(fd))
		r = 1;
	pthread_mutex_lock(&lqs->mu);
	lqs->jwriting = 0;
	if (r) {
		lqs->jerr = r < 0 ? cfx_err_from_errno(-r) : CFX_EFSYNC;
		cfx_log_error("lq: cannot write the journal: %s; changes fail until reopened",
			      cfx_strerror(lqs->jerr));
	} else {
		lqs->jbytes += w.len;
		lqs->jdone = end;
		lqs->jdirty = lqs->o.flush_interval_ms != 0;
	}
	w.len = 0;
	lqs->jspare = w;
	pthread_cond_broadcast(&lqs->jcond);
}

/*
 * Releases mu once the records the caller queued are on disk (written by
 * the caller or by another caller that took them along). Returns 0, or
 * the journal's sticky error. @locks mu (released on return)
 */
static int lq_unlock(struct cfx_lqs *lqs)
{
	uint64_t mine = lqs->jqueued;
	int rc = 0;

	while (lqs->jdone < mine) {
		if (lqs->jerr) {
			rc = lqs->jerr;
			break;
		}
		if (lqs->jwriting)
			pthread_cond_wait(&lqs->jcond, &lqs->mu);
		else
			journal_write(lqs);
	}
	pthread_mutex_unlock(&lqs->mu);
	return rc;
}

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

static void path_in(const struct cfx_lqs *lqs, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", lqs->dir, name);
}

/*
 * Creates <dir>/journal.new holding a JHDR of `epoch`, synced; returns its
 * descriptor (open for writing) or -errno.
 */
static int journal_new(struct cfx_lqs *lqs, uint64_t epoch)
{
	char path[PATH_MAX];
	struct cfx_writer wr;
	int fd, r;

	path_in(lqs, "journal.new", path, sizeof path);
	fd = lqs->fops->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	cfx_writer_init(&wr, JHDR_BYTES);
	rec_put(&wr, &(struct rec){ .type = REC_JHDR, .version = LQ_FORMAT_VERSION, .u64 = epoch });
	CFX_ASSERT(wr.len == JHDR_BYTES);
	r = cfx_pwrite_full(lqs->fops, fd, wr.p, wr.len, 0);
	cfx_writer_free(&wr);
	if (!r)
		r = lqs->fops->fdatasync(fd);
	if (r) {
		lqs->fops->close(fd);
		lqs->fops->unlink(path);
		return r < 0 ? r : -EIO;
	}
	return fd;
}

/* Renames journal.new over the journal and syncs the directory. */
static int journal_install(struct cfx_lqs *lqs)
{
	char from[PATH_MAX], to[PATH_MAX];
	int r;

	path_in(lqs, "journal.new", from, sizeof from);
	path_in(lqs, "journal", to, sizeof to);
	r = lqs->fops->rename(from, to);
	return r ? r : cfx_fsync_dir(lqs->fops, lqs->dir);
}

/*
 * Writes the snapshot atomically (tmp, fsync, rename, dir fsync).
 * *renamed tells whether it replaced the old one (then even a failed
 * directory sync leaves it visible). Returns 0 or -errno.
 */
static int snapshot_put(struct cfx_lqs *lqs, const struct cfx_writer *img, int *renamed)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	int fd, r;

	*renamed = 0;
	path_in(lqs, "snapshot.tmp", tmp, sizeof tmp);
	path_in(lqs, "snapshot", path, sizeof path);
	fd = lqs->fops->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	r = cfx_pwrite_full(lqs->fops, fd, img->p, img->len, 0);
	if (!r)
		r = lqs->fops->fsync(fd);
	lqs->fops->close(fd);
	if (!r)
		r = lqs->fops->rename(tmp, path);
	if (r) {
		lqs->fops->unlink(tmp);
		return r;
	}
	*renamed = 1;
	return cfx_fsync_dir(lqs->fops, lqs->dir);
}

/* The whole state as records: SNAP, queues with their slots, positions. @locks mu */
static void snapshot_build(struct cfx_lqs *lqs, struct cfx_writer *wr)
{
	rec_put(wr, &(struct rec){ .type = REC_SNAP, .version = LQ_FORMAT_VERSION,
				   .u64 = lqs->jepoch });
	for (uint32_t id = 1; id <= lqs->id_hw; id++) {
		struct lq *q = q_of(lqs, id);
		if (!q)
			continue;
		rec_put(wr, &(struct rec){ .type = REC_DEFINE, .id = id, .u64 = q->head,
					   .name = { q->name, q->nlen } });
		for (uint64_t s = q->head; s < q->tail; s++)
			rec_put(wr, &(struct rec){ .type = REC_PUSH, .id = id,
						   .e = q->ring->e[s & (q->ring->cap - 1)] });
		for (uint64_t s = q->head + 1; s < q->tail; s++)
			if (slot_acked(q, s))
				rec_put(wr, &(struct rec){ .type = REC_ACK, .id = id, .u64 = s });
	}
	for (uint32_t i = 0; i < lqs->pos_cap; i++)
		if (lqs->pos[i].key)
			rec_put(wr, &(struct rec){
					    .type = REC_POS,
					    .e = { .topic = (uint16_t)(lqs->pos[i].key >> 32),
						   .queue = (uint32_t)lqs->pos[i].key,
						   .offset = lqs->pos[i].offset } });
}

/* The snapshot the state would make, roughly, in bytes. @locks mu */
static uint64_t snapshot_estimate(const struct cfx_lqs *lqs)
{
	return JHDR_BYTES + lqs->nqueues * SNAP_QUEUE_BYTES + lqs->name_bytes +
	       lqs->nslots * SNAP_SLOT_BYTES + (uint64_t)lqs->npos * SNAP_POS_BYTES;
}

/* ------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------ */

/* A file read through a sliding window. */
struct src {
	const struct cfx_file_ops *fops;
	const char *path;
	int fd;
	uint64_t size; /* of the file */
	uint64_t base; /* file offset of buf[0] */
	uint8_t *buf;
	size_t len, pos, cap;
	int err; /* read failure (cfx_err) */
};

/* Makes at least `want` bytes available at pos if the file has them; returns how many are. */
static size_t src_fill(struct src *s, size_t want)
{
	size_t avail = s->len - s->pos;
	uint64_t left = s->size - (s->base + s->len);

	if (avail >= want || left == 0 || s->err)
		return avail;
	memmove(s->buf, s->buf + s->pos, avail);
	s->base += s->pos;
	s->pos = 0;
	s->len = avail;
	size_t n = (size_t)CFX_MIN((uint64_t)(s->cap - s->len), left);
	int r = cfx_pread_full(s->fops, s->fd, s->buf + s->len, n, (off_t)(s->base + s->len));
	if (r) {
		s->err = cfx_err_from_errno(-r);
		cfx_log_error("lq: cannot read %s: %s", s->path, cfx_strerror(s->err));
		return avail;
	}
	s->len += n;
	return s->len;
}

/* The next record: 1, 0 at the clean end, -1 if torn or damaged. *at = its offset. */
static int src_next(struct src *s, struct rec *r, uint64_t *at)
{
	size_t avail = src_fill(s, REC_HDR_BYTES);

	*at = s->base + s->pos;
	if (avail == 0)
		return 0;
	if (avail < REC_HDR_BYTES)
		return -1; /* the file ends inside a header */
	long n = rec_get(s->buf + s->pos, avail, r);
	if (n == 0) {
		avail = src_fill(s, REC_HDR_BYTES + cfx_load_le32(s->buf + s->pos));
		n = rec_get(s->buf + s->pos, avail, r);
	}
	if (n <= 0)
		return -1; /* still short: the file ends inside it */
	s->pos += (size_t)n;
	return 1;
}

/* Opens `name` for replay; 0, CFX_ENOENT if missing, or an error. */
static int src_open(struct cfx_lqs *lqs, struct src *s, const char *path)
{
	struct stat st;

	*s = (struct src){ .fops = lqs->fops, .path = path, .fd = -1 };
	s->fd = lqs->fops->open(path, O_RDONLY, 0);
	if (s->fd < 0)
		return s->fd == -ENOENT ? CFX_ENOENT : cfx_err_from_errno(-s->fd);
	if (lqs->fops->fstat(s->fd, &st) < 0) {
		lqs->fops->close(s->fd);
		return CFX_EIO;
	}
	s->size = (uint64_t)st.st_size;
	s->cap = READ_WINDOW_BYTES + REC_HDR_BYTES + REC_PAYLOAD_MAX;
	s->buf = cfx_malloc(s->cap);
	return 0;
}

static void src_close(struct src *s)
{
	if (s->fd >= 0)
		s->fops->close(s->fd);
	CFX_FREE(s->buf);
}

/* Loads <dir>/snapshot; *epoch = the journal epoch it covers (0 without one). */
static int load_snapshot(struct cfx_lqs *lqs, uint64_t *epoch)
{
	char path[PATH_MAX];
	struct src s;
	struct rec r;
	uint64_t at;
	int rc, d;

	*epoch = 0;
	path_in(lqs, "snapshot", path, sizeof path);
	rc = src_open(lqs, &s, path);
	if (rc)
		return rc == CFX_ENOENT ? 0 : rc;
	d = src_next(&s, &r, &at);
	if (d <= 0 || r.type != REC_SNAP) {
		rc = s.err ? s.err : CFX_ECORRUPT;
		if (!s.err)
			LQ_CORRUPT(path, at, "no snapshot header");
		goto out;
	}
	if (r.version != LQ_FORMAT_VERSION) {
		cfx_log_error("lq: %s has format version %u; this build reads %u", path, r.version,
			      LQ_FORMAT_VERSION);
		rc = CFX_EVERSION;
		goto out;
	}
	*epoch = r.u64;
	while ((d = src_next(&s, &r, &at)) > 0)
		apply(lqs, &r);
	if (s.err) {
		rc = s.err;
	} else if (d < 0) {
		LQ_CORRUPT(path, at, "torn or failed record in a snapshot");
		rc = CFX_ECORRUPT;
	}
out:
	src_close(&s);
	return rc;
}

/* Copies bytes [from, size) of the journal to journal.damaged before they are cut. */
static void keep_damaged(struct cfx_lqs *lqs, struct src *s, uint64_t from)
{
	char path[PATH_MAX];
	uint8_t *buf = cfx_malloc(READ_WINDOW_BYTES);
	int fd, r = 0;

	path_in(lqs, "journal.damaged", path, sizeof path);
	fd = lqs->fops->open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		r = fd;
	for (uint64_t o = from; !r && o < s->size;) {
		size_t n = (size_t)CFX_MIN((uint64_t)READ_WINDOW_BYTES, s->size - o);
		r = cfx_pread_full(lqs->fops, s->fd, buf, n, (off_t)o);
		if (!r)
			r = cfx_pwrite_full(lqs->fops, fd, buf, n, (off_t)(o - from));
		o += n;
	}
	if (!r)
		r = lqs->fops->fsync(fd);
	if (fd >= 0)
		lqs->fops->close(fd);
	if (r)
		cfx_log_error("lq: cannot save the damaged journal tail to %s: %s", path,
			      strerror(-r));
	cfx_free(buf);
}

/*
 * Replays <dir>/journal if it follows the snapshot of `snap_epoch`.
 * *valid = bytes of good records (0: start a new journal), *epoch its epoch.
 */
static int load_journal(struct cfx_lqs *lqs, uint64_t snap_epoch, uint64_t *valid,
			uint64_t *epoch)
{
	char path[PATH_MAX];
	struct src s;
	struct rec r;
	uint64_t at = 0;
	int rc, d;

	*valid = 0;
	path_in(lqs, "journal", path, sizeof path);
	rc = src_open(lqs, &s, path);
	if (rc)
		return rc == CFX_ENOENT ? 0 : rc;
	d = src_next(&s, &r, &at);
	if (s.err || d == 0) { /* an empty file: as if there were none */
		rc = s.err;
		goto out;
	}
	/* A journal is renamed into place only once its header is synced. */
	if (d < 0 || r.type != REC_JHDR) {
		LQ_CORRUPT(path, 0, "no journal header");
		rc = CFX_ECORRUPT;
		goto out;
	}
	if (r.version != LQ_FORMAT_VERSION) {
		cfx_log_error("lq: %s has format version %u; this build reads %u", path, r.version,
			      LQ_FORMAT_VERSION);
		rc = CFX_EVERSION;
		goto out;
	}
	if (r.u64 <= snap_epoch) {
		cfx_log_info("lq: %s (epoch %" PRIu64 ") is inside the snapshot (epoch %" PRIu64
			     "); starting a new one",
			     path, r.u64, snap_epoch);
		goto out;
	}
	if (r.u64 != snap_epoch + 1) {
		cfx_log_error("lq: %s has epoch %" PRIu64 " but the snapshot covers %" PRIu64
			      ": a snapshot is missing",
			      path, r.u64, snap_epoch);
		rc = CFX_ECORRUPT;
		goto out;
	}
	*epoch = r.u64;
	while ((d = src_next(&s, &r, &at)) > 0)
		apply(lqs, &r);
	if (s.err) {
		rc = s.err;
		goto out;
	}
	*valid = at;
	if (d < 0) {
		cfx_log_warn("lq: %s is torn or damaged at byte %" PRIu64 " of %" PRIu64
			     "; the rest is cut off (copied to journal.damaged)",
			     path, at, s.size);
		keep_damaged(lqs, &s, at);
	}
out:
	src_close(&s);
	return rc;
}

/* ------------------------------------------------------------------------
 * Open, close, background work
 * ------------------------------------------------------------------------ */

static void *lq_thread(void *arg)
{
	struct cfx_lqs *lqs = arg;
	int64_t period_ms = lqs->o.flush_interval_ms > 0 ? lqs->o.flush_interval_ms : 1000;
	struct timespec ts;

	pthread_mutex_lock(&lqs->thr_mu);
	while (!lqs->thr_stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += period_ms / 1000;
		ts.tv_nsec += (period_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&lqs->thr_cond, &lqs->thr_mu, &ts);
		if (lqs->thr_stop)
			break;
		pthread_mutex_unlock(&lqs->thr_mu);
		if (lqs->o.flush_interval_ms > 0)
			cfx_lq_sync(lqs);
		cfx_lq_compact(lqs, 0);
		pthread_mutex_lock(&lqs->thr_mu);
	}
	pthread_mutex_unlock(&lqs->thr_mu);
	return NULL;
}

static void lq_free(struct cfx_lqs *lqs)
{
	for (uint32_t id = 1; id <= lqs->id_hw; id++) {
		struct lq *q = q_of(lqs, id);
		if (q) {
			cfx_free(q->ring);
			cfx_free(q);
		}
	}
	cfx_free(lqs->byid);
	cfx_free(lqs->slots);
	cfx_free(lqs->pos);
	cfx_writer_free(&lqs->jbuf);
	cfx_writer_free(&lqs->jspare);
	if (lqs->jfd >= 0)
		lqs->fops->close(lqs->jfd);
	pthread_mutex_destroy(&lqs->mu);
	pthread_mutex_destroy(&lqs->maint_mu);
	pthread_mutex_destroy(&lqs->thr_mu);
	pthread_cond_destroy(&lqs->jcond);
	pthread_cond_destroy(&lqs->thr_cond);
	cfx_free(lqs->dir);
	cfx_free(lqs);
}

int cfx_lq_open(const struct cfx_lq_opts *o, struct cfx_lqs **out)
{
	struct cfx_lqs *lqs;
	pthread_condattr_t ca;
	char path[PATH_MAX];
	uint64_t snap_epoch = 0, jepoch = 0, valid = 0;
	int rc;

	*out = NULL;
	if (!o->dir || !*o->dir || strlen(o->dir) > PATH_MAX - 32 || o->entries_max_per_queue == 0 ||
	    o->entries_max_per_queue > CFX_LQ_ENTRIES_LIMIT || o->queues_max == 0 ||
	    o->queues_max > CFX_LQ_QUEUES_LIMIT)
		return CFX_EINVAL;
	lqs = cfx_calloc(1, sizeof *lqs);
	lqs->o = *o;
	lqs->dir = cfx_strdup(o->dir);
	lqs->o.dir = lqs->dir;
	lqs->fops = o->fops ? o->fops : &cfx_fileops_real;
	lqs->jfd = -1;
	pthread_mutex_init(&lqs->mu, NULL);
	pthread_mutex_init(&lqs->maint_mu, NULL);
	pthread_mutex_init(&lqs->thr_mu, NULL);
	pthread_cond_init(&lqs->jcond, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lqs->thr_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (getrandom(lqs->hkey, sizeof lqs->hkey, 0) != (ssize_t)sizeof lqs->hkey) {
		rc = CFX_ESYS;
		goto fail;
	}

	rc = cfx_err_from_errno(-cfx_mkdir_p(lqs->fops, lqs->dir));
	if (rc)
		goto fail;
	path_in(lqs, "journal.new", path, sizeof path); /* leftovers of a compaction */
	lqs->fops->unlink(path);
	path_in(lqs, "snapshot.tmp", path, sizeof path);
	lqs->fops->unlink(path);

	pthread_mutex_lock(&lqs->mu);
	rc = load_snapshot(lqs, &snap_epoch);
	if (!rc)
		rc = load_journal(lqs, snap_epoch, &valid, &jepoch);
	ids_relink_free(lqs);
	lqs->dropped = 0;
	pthread_mutex_unlock(&lqs->mu);
	if (rc)
		goto fail;

	path_in(lqs, "journal", path, sizeof path);
	if (valid) {
		lqs->jfd = lqs->fops->open(path, O_RDWR, 0644);
		if (lqs->jfd < 0) {
			rc = cfx_err_from_errno(-lqs->jfd);
			goto fail;
		}
		/* Cut a torn tail so that new records follow the last good one. */
		int r = lqs->fops->ftruncate(lqs->jfd, (off_t)valid);
		if (r) {
			rc = cfx_err_from_errno(-r);
			goto fail;
		}
		lqs->jepoch = jepoch;
		lqs->jbytes = valid;
	} else {
		lqs->jfd = journal_new(lqs, snap_epoch + 1);
		if (lqs->jfd < 0) {
			rc = cfx_err_from_errno(-lqs->jfd);
			goto fail;
		}
		int r = journal_install(lqs);
		if (r) {
			rc = cfx_err_from_errno(-r);
			goto fail;
		}
		lqs->jepoch = snap_epoch + 1;
		lqs->jbytes = JHDR_BYTES;
	}
	if (lqs->ignored)
		cfx_log_warn("lq: %" PRIu64 " replayed records did not apply (damage?)",
			     lqs->ignored);
	cfx_log_info("lq: %s: %" PRIu64 " queues, %" PRIu64 " entries, journal %" PRIu64
		     " bytes (epoch %" PRIu64 ")",
		     lqs->dir, lqs->nqueues, lqs->nentries, lqs->jbytes, lqs->jepoch);

	if (o->flush_interval_ms >= 0) {
		if (pthread_create(&lqs->thr, NULL, lq_thread, lqs) != 0) {
			rc = CFX_ESYS;
			goto fail;
		}
		lqs->thr_on = 1;
	}
	*out = lqs;
	return 0;
fail:
	lq_free(lqs);
	return rc;
}

int cfx_lq_close(struct cfx_lqs *lqs)
{
	int rc;

	if (lqs->thr_on) {
		pthread_mutex_lock(&lqs->thr_mu);
		lqs->thr_stop = 1;
		pthread_cond_signal(&lqs->thr_cond);
		pthread_mutex_unlock(&lqs->thr_mu);
		pthread_join(lqs->thr, NULL);
	}
	rc = cfx_lq_compact(lqs, 0);
	int src = cfx_lq_sync(lqs);
	if (!rc)
		rc = src;
	lq_free(lqs);
	return rc;
}

int cfx_lq_sync(struct cfx_lqs *lqs)
{
	int rc;

	pthread_mutex_lock(&lqs->maint_mu);
	pthread_mutex_lock(&lqs->mu);
	rc = lqs->jerr;
	if (!rc && lqs->jdirty) {
		int fd = lqs->jfd;
		lqs->jdirty = 0; /* a write landing meanwhile sets it again */
		pthread_mutex_unlock(&lqs->mu);
		int r = lqs->fops->fdatasync(fd);
		pthread_mutex_lock(&lqs->mu);
		if (r) {
			lqs->jerr = rc = CFX_EFSYNC;
			cfx_log_error("lq: fdatasync of the journal failed: %s; changes fail until "
				      "reopened",
				      strerror(-r));
		}
	}
	pthread_mutex_unlock(&lqs->mu);
	pthread_mutex_unlock(&lqs->maint_mu);
	return rc;
}

int cfx_lq_compact(struct cfx_lqs *lqs, int force)
{
	struct cfx_writer img, pending;
	uint64_t covered, epoch, at;
	int rc = 0, r, nfd, oldfd, renamed = 0;

	pthread_mutex_lock(&lqs->maint_mu);
	pthread_mutex_lock(&lqs->mu);
	while (lqs->jwriting && !lqs->jerr)
		pthread_cond_wait(&lqs->jcond, &lqs->mu);
	if (lqs->jerr || (!force && lqs->jbytes <= CFX_MAX(lqs->o.journal_bytes_min,
							    2 * snapshot_estimate(lqs)))) {
		rc = lqs->jerr;
		pthread_mutex_unlock(&lqs->mu);
		pthread_mutex_unlock(&lqs->maint_mu);
		return rc;
	}
	/* Own the file: records queued from now on wait for the new journal. */
	lqs->jwriting = 1;
	cfx_writer_init(&img, (size_t)CFX_MIN(snapshot_estimate(lqs) + 4096, 1ull << 30));
	snapshot_build(lqs, &img);
	covered = lqs->jqueued; /* the snapshot holds the effect of every queued record */
	pending = lqs->jbuf;	/* kept for the old journal, should the snapshot fail */
	lqs->jbuf = lqs->jspare;
	lqs->jbuf.len = 0;
	lqs->jspare = (struct cfx_writer){ 0 };
	epoch = lqs->jepoch;
	oldfd = lqs->jfd;
	at = lqs->jbytes;
	pthread_mutex_unlock(&lqs->mu);

	nfd = journal_new(lqs, epoch + 1);
	r = nfd < 0 ? nfd : snapshot_put(lqs, &img, &renamed);
	if (!r)
		r = journal_install(lqs);

	pthread_mutex_lock(&lqs->mu);
	if (!r) {
		lqs->fops->close(oldfd);
		lqs->jfd = nfd;
		lqs->jbytes = JHDR_BYTES;
		lqs->jepoch = epoch + 1;
		lqs->jdone = covered;
		lqs->jdirty = 0;
		lqs->snapshots++;
	} else if (!renamed) {
		/* Nothing changed on disk: the queued records go to the old journal. */
		char path[PATH_MAX];
		path_in(lqs, "journal.new", path, sizeof path);
		if (nfd >= 0) {
			lqs->fops->close(nfd);
			lqs->fops->unlink(path);
		}
		cfx_log_error("lq: cannot write a snapshot: %s", strerror(-r));
		rc = cfx_err_from_errno(-r);
		r = pending.len ? cfx_pwrite_full(lqs->fops, oldfd, pending.p, pending.len, (off_t)at)
				: 0;
		if (!r && pending.len && lqs->o.flush_interval_ms == 0 && lqs->fops->fdatasync(oldfd))
			r = -EIO;
		if (r) {
			lqs->jerr = cfx_err_from_errno(-r);
		} else {
			lqs->jbytes += pending.len;
			lqs->jdone = covered;
			lqs->jdirty = 1;
		}
	} else {
		/* The snapshot covers the old journal's epoch: that journal must not grow. */
		if (nfd >= 0)
			lqs->fops->close(nfd);
		cfx_log_error("lq: snapshot written but the journal could not be replaced: %s; "
			      "changes fail until reopened",
			      strerror(-r));
		lqs->jdone = covered;
		lqs->jerr = rc = cfx_err_from_errno(-r);
	}
	pending.len = 0;
	lqs->jspare = pending;
	lqs->jwriting = 0;
	pthread_cond_broadcast(&lqs->jcond);
	pthread_mutex_unlock(&lqs->mu);
	pthread_mutex_unlock(&lqs->maint_mu);
	cfx_writer_free(&img);
	return rc;
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

int cfx_lq_get(struct cfx_lqs *lqs, struct cfx_view name, int create, uint32_t *id)
{
	uint32_t h, found;

	if (name.len == 0 || name.len > CFX_LQ_NAME_BYTES_MAX)
		return CFX_EINVAL;
	h = name_hash(lqs, name.p, name.len);
	pthread_mutex_lock(&lqs->mu);
	found = table_find(lqs, h, name.p, name.len);
	if (found || !create) {
		pthread_mutex_unlock(&lqs->mu);
		*id = found;
		return found ? 0 : CFX_ENOENT;
	}
	if (lqs->jerr || lqs->nqueues >= lqs->o.queues_max) {
		int rc = lqs->jerr ? lqs->jerr : CFX_E2BIG;
		pthread_mutex_unlock(&lqs->mu);
		return rc;
	}
	found = id_alloc(lqs);
	q_new(lqs, found, 1, name.p, name.len, h);
	journal(lqs, &(struct rec){ .type = REC_DEFINE, .id = found, .u64 = 1, .name = name });
	*id = found;
	return lq_unlock(lqs);
}

/* Locks mu and finds a queue that may change; NULL (mu released, *rc set) if not. */
static struct lq *lock_for_change(struct cfx_lqs *lqs, uint32_t id, int *rc)
{
	struct lq *q;

	pthread_mutex_lock(&lqs->mu);
	q = q_of(lqs, id);
	*rc = lqs->jerr ? lqs->jerr : q ? 0 : CFX_ENOENT;
	if (*rc) {
		pthread_mutex_unlock(&lqs->mu);
		return NULL;
	}
	return q;
}

int cfx_lq_drop(struct cfx_lqs *lqs, uint32_t id)
{
	int rc;

	if (!lock_for_change(lqs, id, &rc))
		return rc;
	q_delete(lqs, id, 0);
	journal(lqs, &(struct rec){ .type = REC_DROP, .id = id });
	return lq_unlock(lqs);
}

int cfx_lq_push(struct cfx_lqs *lqs, uint32_t id, const struct cfx_lq_entry *e, uint64_t *seq)
{
	struct lq *q;
	uint64_t s;
	int rc;

	if (!(q = lock_for_change(lqs, id, &rc)))
		return rc;
	if (q->tail >= SEQ_MAX) {
		pthread_mutex_unlock(&lqs->mu);
		return CFX_ERANGE;
	}
	s = q_push(lqs, q, e);
	journal(lqs, &(struct rec){ .type = REC_PUSH, .id = id, .e = *e });
	rc = lq_unlock(lqs);
	if (!rc && seq)
		*seq = s;
	return rc;
}

int cfx_lq_set(struct cfx_lqs *lqs, uint32_t id, const struct cfx_lq_entry *e)
{
	struct lq *q;
	int rc;

	if (!(q = lock_for_change(lqs, id, &rc)))
		return rc;
	if (e && q->tail >= SEQ_MAX) {
		pthread_mutex_unlock(&lqs->mu);
		return CFX_ERANGE;
	}
	q_clear(lqs, q);
	if (e) {
		q_push(lqs, q, e);
		journal(lqs, &(struct rec){ .type = REC_SET, .id = id, .e = *e });
	} else {
		journal(lqs, &(struct rec){ .type = REC_CLEAR, .id = id });
	}
	return lq_unlock(lqs);
}

int cfx_lq_ack(struct cfx_lqs *lqs, uint32_t id, uint64_t seq)
{
	struct lq *q;
	int rc;

	if (!(q = lock_for_change(lqs, id, &rc)))
		return rc;
	rc = q_ack(lqs, q, seq);
	if (rc) {
		pthread_mutex_unlock(&lqs->mu);
		return rc;
	}
	journal(lqs, &(struct rec){ .type = REC_ACK, .id = id, .u64 = seq });
	return lq_unlock(lqs);
}

int cfx_lq_read(struct cfx_lqs *lqs, uint32_t id, uint64_t from, struct cfx_lq_entry *out,
		uint64_t *seqs, uint32_t max, uint32_t *n)
{
	struct lq *q;
	uint32_t k = 0;

	pthread_mutex_lock(&lqs->mu);
	q = q_of(lqs, id);
	if (q)
		for (uint64_t s = CFX_MAX(from, q->head); s < q->tail && k < max; s++) {
			if (slot_acked(q, s))
				continue;
			out[k] = q->ring->e[s & (q->ring->cap - 1)];
			if (seqs)
				seqs[k] = s;
			k++;
		}
	pthread_mutex_unlock(&lqs->mu);
	*n = k;
	return q ? 0 : CFX_ENOENT;
}

int cfx_lq_bounds(struct cfx_lqs *lqs, uint32_t id, uint64_t *head, uint64_t *tail)
{
	struct lq *q;

	pthread_mutex_lock(&lqs->mu);
	q = q_of(lqs, id);
	if (q) {
		*head = q->head;
		*tail = q->tail;
	}
	pthread_mutex_unlock(&lqs->mu);
	return q ? 0 : CFX_ENOENT;
}

void cfx_lq_foreach(struct cfx_lqs *lqs, struct cfx_view prefix,
		    void (*fn)(void *arg, struct cfx_view name, uint32_t id), void *arg)
{
	pthread_mutex_lock(&lqs->mu);
	for (uint32_t id = 1; id <= lqs->id_hw; id++) {
		struct lq *q = q_of(lqs, id);
		if (q && q->nlen >= prefix.len &&
		    (prefix.len == 0 || memcmp(q->name, prefix.p, prefix.len) == 0))
			fn(arg, (struct cfx_view){ q->name, q->nlen }, id);
	}
	pthread_mutex_unlock(&lqs->mu);
}

int cfx_lq_set_pos(struct cfx_lqs *lqs, uint16_t topic, uint32_t queue, uint64_t offset)
{
	int rc;

	pthread_mutex_lock(&lqs->mu);
	rc = lqs->jerr ? lqs->jerr : pos_set(lqs, pos_key(topic, queue), offset);
	if (rc) {
		pthread_mutex_unlock(&lqs->mu);
		return rc;
	}
	journal(lqs, &(struct rec){ .type = REC_POS,
				    .e = { .topic = topic, .queue = queue, .offset = offset } });
	return lq_unlock(lqs);
}

int cfx_lq_get_pos(struct cfx_lqs *lqs, uint16_t topic, uint32_t queue, uint64_t *offset)
{
	struct lq_pos *p = NULL;

	pthread_mutex_lock(&lqs->mu);
	if (lqs->pos_cap) {
		p = pos_slot(lqs->pos, lqs->pos_cap, pos_key(topic, queue));
		if (p->key)
			*offset = p->offset;
		else
			p = NULL;
	}
	pthread_mutex_unlock(&lqs->mu);
	return p ? 0 : CFX_ENOENT;
}

void cfx_lq_stats(struct cfx_lqs *lqs, struct cfx_lq_stats *st)
{
	pthread_mutex_lock(&lqs->mu);
	*st = (struct cfx_lq_stats){
		.queues = lqs->nqueues,
		.entries = lqs->nentries,
		.dropped = lqs->dropped,
		.bytes = sizeof *lqs + lqs->q_bytes + lqs->ring_bytes +
			 (uint64_t)lqs->id_cap * sizeof *lqs->byid +
			 (uint64_t)lqs->slot_cap * sizeof *lqs->slots +
			 (uint64_t)lqs->pos_cap * sizeof *lqs->pos + lqs->jbuf.cap + lqs->jspare.cap,
		.journal_bytes = lqs->jbytes,
		.snapshots = lqs->snapshots,
		.replay_ignored = lqs->ignored,
	};
	pthread_mutex_unlock(&lqs->mu);
}
