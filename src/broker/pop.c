/*
 * pop.c - POP consumption: message-level load balancing with invisibility,
 * acknowledgement, receipt handles, long-poll watches, and the journal that
 * makes it all durable.
 *
 * State per (group, topic, queue), a cursor:
 *
 *   committed            next
 *       |  window of slots  |   new messages ...
 *   ----+-------------------+---------------->  queue offsets
 *       DONE/INFLIGHT slots  (never delivered)
 *
 * Every offset in [committed, next) has a slot: INFLIGHT (delivered, not
 * acknowledged: visible again at visible_at) or DONE (acknowledged, or
 * skipped by the filter). committed moves past the DONE prefix; it is the
 * group's consume offset. A pop hands out INFLIGHT slots whose time came
 * (attempt + 1) before new messages; the window is at most inflight_max
 * wide, so one stuck message cannot make memory grow without bound.
 *
 * Journal (pop/journal): records [len u32][crc32c u32][payload]; payload =
 * [type u8][seq u64][fields, little-endian]. Each state change is written
 * (write(2): page cache, so a kill -9 loses nothing) before it is
 * acknowledged to the client; the timer thread fdatasyncs it every
 * pop_flush_interval, which bounds what a power failure can forget (acks
 * younger than that may be redelivered: at-least-once). A snapshot
 * (pop/snapshot, same record format, replaced atomically) is written when
 * the journal grows past pop_journal_bytes_max; records with a sequence at
 * or below the snapshot's are skipped on replay.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/siphash.h"
#include "broker/broker_int.h"
#include "broker/sqlfilter.h"
#include "store/format.h"

/* SLOT_MOVING: in flight, its last attempt expired, and its copy is being
 * appended to the dead-letter queue; not journaled (after a crash it is
 * INFLIGHT again and moves again). */
/* SLOT_WAITING (FIFO groups): read, but an earlier message of its message
 * group is not done yet; delivered when it is. */
enum { SLOT_FREE = 0, SLOT_INFLIGHT = 1, SLOT_DONE = 2, SLOT_MOVING = 3, SLOT_WAITING = 4 };

enum rec_type {
	REC_DEFINE = 1, /* cursor id, group, topic, queue, committed */
	REC_POP = 2,	/* cursor, offset, pop_id, attempt, visible_at */
	REC_ACK = 3,	/* cursor, offset, pop_id */
	REC_CHANGE = 4, /* cursor, offset, new pop_id, visible_at */
	REC_SKIP = 5,	/* cursor, offset */
	REC_RESET = 6,	/* cursor, offset */
	REC_STATE = 7,	/* snapshot: cursor, committed, next, next_pop_id */
	REC_SNAP = 8,	/* snapshot header: the journal sequence it covers */
	REC_SYSDONE = 9,  /* kind (in the cursor field), offset: a system-queue entry is done */
	REC_SYSBASE = 10, /* snapshot: kind, offset below which all of that kind are done */
	REC_SYSBITS = 11, /* snapshot: kind, first offset, bitmap of done offsets */
	REC_POPG = 12,	  /* POP of a FIFO group: + message group hash */
	REC_WAIT = 13,	  /* cursor, offset, message group hash: read and held back */
	REC_SKIPN = 14,	  /* cursor, offsets [offset, next) skipped by the filter unread */
};

#define REC_BYTES_MAX 512
/* Bounds on what replayed records may make the state allocate (a damaged
 * journal that still passes its CRCs must not exhaust memory): windows far
 * beyond any inflight_max, done-sets far beyond any timer backlog. */
#define REPLAY_WINDOW_MAX (1u << 22)
#define SYSDONE_BITS_MAX (1ull << 31)
#define REPLAY_CURSORS_MAX (1u << 24)

static int pop_unlock(struct cfx_broker *br);
#define WINDOW_MAX_DEFAULT 65536

/* ------------------------------------------------------------------------
 * Cursors
 * ------------------------------------------------------------------------ */

static uint64_t cursor_hash(struct cfx_view g, struct cfx_view t, uint32_t q)
{
	uint64_t h = cfx_hash_bytes(CFX_HASH_SEED, g.p, g.len);
	h = cfx_hash_bytes(h ^ 0xff, t.p, t.len);
	return cfx_hash_mix64(h ^ q);
}

static struct cursor *cursor_find(struct cfx_broker *br, struct cfx_view g, struct cfx_view t,
				  uint32_t q)
{
	if (!br->ccap)
		return NULL;
	for (struct cursor *c = br->ctab[cursor_hash(g, t, q) & (br->ccap - 1)]; c; c = c->hnext)
		if (c->queue == q && c->glen == g.len && c->tlen == t.len &&
		    !memcmp(c->group, g.p, g.len) && !memcmp(c->topic, t.p, t.len))
			return c;
	return NULL;
}

static struct cursor *cursor_by_id(struct cfx_broker *br, uint32_t id)
{
	return id < br->cbyid_cap ? br->cbyid[id] : NULL;
}

static void ctab_insert(struct cfx_broker *br, struct cursor *c)
{
	if (br->ccount + 1 > br->ccap / 4 * 3) {
		uint32_t ncap = br->ccap ? br->ccap * 2 : 64;
		struct cursor **nt = cfx_calloc(ncap, sizeof *nt);
		for (uint32_t i = 0; i < br->ccap; i++)
			while (br->ctab[i]) {
				struct cursor *x = br->ctab[i];
				br->ctab[i] = x->hnext;
				uint64_t h = cursor_hash((struct cfx_view){ (uint8_t *)x->group, x->glen },
							 (struct cfx_view){ (uint8_t *)x->topic, x->tlen },
							 x->queue);
				x->hnext = nt[h & (ncap - 1)];
				nt[h & (ncap - 1)] = x;
			}
		cfx_free(br->ctab);
		br->ctab = nt;
		br->ccap = ncap;
	}
	uint64_t h = cursor_hash((struct cfx_view){ (uint8_t *)c->group, c->glen },
				 (struct cfx_view){ (uint8_t *)c->topic, c->tlen }, c->queue);
	c->hnext = br->ctab[h & (br->ccap - 1)];
	br->ctab[h & (br->ccap - 1)] = c;
	br->ccount++;
}

static struct cursor *cursor_new(struct cfx_broker *br, uint32_t id, struct cfx_view g,
				 struct cfx_view t, uint32_t q, uint64_t committed)
{
	struct cursor *c = cfx_calloc(1, sizeof *c);

	c->id = id;
	c->group = cfx_strndup((const char *)g.p, g.len);
	c->topic = cfx_strndup((const char *)t.p, t.len);
	c->glen = (uint16_t)g.len;
	c->tlen = (uint16_t)t.len;
	c->queue = q;
	c->committed = c->next = committed;
	c->earliest_visible = INT64_MAX;
	c->next_pop_id = 1;
	if (id >= br->next_cursor_id)
		br->next_cursor_id = id + 1;
	if (id >= br->cbyid_cap) {
		uint32_t ncap = br->cbyid_cap ? br->cbyid_cap : 64;
		while (ncap <= id)
			ncap *= 2;
		br->cbyid = cfx_realloc(br->cbyid, ncap * sizeof *br->cbyid);
		memset(br->cbyid + br->cbyid_cap, 0, (ncap - br->cbyid_cap) * sizeof *br->cbyid);
		br->cbyid_cap = ncap;
	}
	br->cbyid[id] = c;
	ctab_insert(br, c);
	return c;
}

static struct slot *slot_of(struct cursor *c, uint64_t off)
{
	return &c->ring[off & (c->cap - 1)];
}

/* Makes room in the window for offsets up to `upto` (exclusive). */
static int window_reserve(struct cursor *c, uint64_t upto, uint32_t max)
{
	uint64_t need = upto - c->committed;
	uint32_t ncap;

	if (need <= c->cap)
		return 0;
	if (need > max)
		return CFX_E2BIG;
	ncap = c->cap ? c->cap : 64;
	while (ncap < need)
		ncap *= 2;
	struct slot *nr = cfx_calloc(ncap, sizeof *nr);
	for (uint64_t o = c->committed; o < c->next; o++)
		nr[o & (ncap - 1)] = c->ring[o & (c->cap - 1)];
	cfx_free(c->ring);
	c->ring = nr;
	c->cap = ncap;
	return 0;
}

static void advance_committed(struct cursor *c)
{
	while (c->committed < c->next && slot_of(c, c->committed)->state == SLOT_DONE) {
		*slot_of(c, c->committed) = (struct slot){ 0 };
		c->committed++;
	}
}

/* ------------------------------------------------------------------------
 * Done-sets of the system queues (timers, half messages)
 * ------------------------------------------------------------------------ */

static int sysdone_test(const struct sysdone *d, uint64_t off)
{
	if (off < d->base)
		return 1;
	uint64_t i = off - d->base;
	return i / 64 < d->nw && (d->w[i / 64] >> (i % 64) & 1);
}

/* Drops whole words that are all done from the front. */
static void sysdone_compact(struct sysdone *d)
{
	uint32_t k = 0;

	while (k < d->nw && d->w[k] == UINT64_MAX)
		k++;
	if (!k)
		return;
	memmove(d->w, d->w + k, (d->nw - k) * sizeof *d->w);
	memset(d->w + d->nw - k, 0, k * sizeof *d->w);
	d->base += 64 * (uint64_t)k;
}

static void sysdone_set(struct sysdone *d, uint64_t off)
{
	if (off < d->base)
		return;
	uint64_t i = off - d->base;
	if (i >= SYSDONE_BITS_MAX) {
		cfx_log_ratelimited(CFX_LOG_ERROR, "broker: a system-queue entry %" PRIu64
				    " ahead of the oldest open one (%" PRIu64 ") is not recorded",
				    off, d->base);
		return;
	}
	if (i / 64 >= d->nw) {
		uint32_t nw = d->nw ? d->nw : 16;
		while (nw <= i / 64)
			nw *= 2;
		d->w = cfx_realloc(d->w, nw * sizeof *d->w);
		memset(d->w + d->nw, 0, (nw - d->nw) * sizeof *d->w);
		d->nw = nw;
	}
	d->w[i / 64] |= 1ull << (i % 64);
	if (i < 64)
		sysdone_compact(d);
}

/* Everything below `base` is done. */
static void sysdone_rebase(struct sysdone *d, uint64_t base)
{
	if (base <= d->base)
		return;
	uint64_t k = (base - d->base) / 64;
	if (k >= d->nw) {
		if (d->nw)
			memset(d->w, 0, d->nw * sizeof *d->w);
		d->base = base;
		return;
	}
	memmove(d->w, d->w + k, (d->nw - k) * sizeof *d->w);
	memset(d->w + d->nw - k, 0, k * sizeof *d->w);
	d->base += 64 * k;
	for (uint64_t o = d->base; o < base; o++)
		sysdone_set(d, o);
}

int pop__sys_is_done(struct cfx_broker *br, int kind, uint64_t offset)
{
	pthread_mutex_lock(&br->pop_mu);
	int done = sysdone_test(&br->sys[kind], offset);
	pop_unlock(br);
	return done;
}

uint64_t pop__sys_base(struct cfx_broker *br, int kind)
{
	pthread_mutex_lock(&br->pop_mu);
	uint64_t base = br->sys[kind].base;
	pop_unlock(br);
	return base;
}

/* ------------------------------------------------------------------------
 * Journal records
 * ------------------------------------------------------------------------ */

struct rec {
	uint8_t type;
	uint64_t seq;
	uint32_t cursor;
	uint64_t offset;	/* POP/ACK/CHANGE/SKIP/RESET; committed for DEFINE/STATE */
	uint64_t next;		/* STATE */
	uint32_t pop_id;	/* POP/ACK/CHANGE; next_pop_id for STATE */
	uint16_t attempt;
	uint32_t ghash; /* POPG, WAIT */
	int64_t visible_at;
	struct cfx_view group, topic; /* DEFINE */
	uint32_t queue;
	struct cfx_view bits; /* SYSBITS */
};

#define SYSBITS_BYTES 256

static size_t rec_encode(uint8_t *out, const struct rec *r)
{
	struct cfx_writer wr = { .p = out + 8, .len = 0, .cap = REC_BYTES_MAX - 8 };

	cfx_write_u8(&wr, r->type);
	cfx_write_le64(&wr, r->seq);
	cfx_write_le32(&wr, r->cursor);
	switch (r->type) {
	case REC_DEFINE:
		cfx_write_le16(&wr, (uint16_t)r->group.len);
		cfx_write_bytes(&wr, r->group.p, r->group.len);
		cfx_write_le16(&wr, (uint16_t)r->topic.len);
		cfx_write_bytes(&wr, r->topic.p, r->topic.len);
		cfx_write_le32(&wr, r->queue);
		cfx_write_le64(&wr, r->offset);
		break;
	case REC_POP:
	case REC_POPG:
	case REC_CHANGE:
		cfx_write_le64(&wr, r->offset);
		cfx_write_le32(&wr, r->pop_id);
		cfx_write_le16(&wr, r->attempt);
		cfx_write_le64(&wr, (uint64_t)r->visible_at);
		if (r->type == REC_POPG)
			cfx_write_le32(&wr, r->ghash);
		break;
	case REC_WAIT:
		cfx_write_le64(&wr, r->offset);
		cfx_write_le32(&wr, r->ghash);
		break;
	case REC_ACK:
		cfx_write_le64(&wr, r->offset);
		cfx_write_le32(&wr, r->pop_id);
		break;
	case REC_SKIP:
	case REC_RESET:
		cfx_write_le64(&wr, r->offset);
		break;
	case REC_SKIPN:
		cfx_write_le64(&wr, r->offset);
		cfx_write_le64(&wr, r->next);
		break;
	case REC_STATE:
		cfx_write_le64(&wr, r->offset);
		cfx_write_le64(&wr, r->next);
		cfx_write_le32(&wr, r->pop_id);
		break;
	case REC_SNAP:
		break;
	case REC_SYSDONE:
	case REC_SYSBASE:
		cfx_write_le64(&wr, r->offset);
		break;
	case REC_SYSBITS:
		cfx_write_le64(&wr, r->offset);
		cfx_write_le16(&wr, (uint16_t)r->bits.len);
		cfx_write_bytes(&wr, r->bits.p, r->bits.len);
		break;
	}
	CFX_ASSERT(wr.p == out + 8); /* never grew: records are small */
	cfx_store_le32(out, (uint32_t)wr.len);
	cfx_store_le32(out + 4, cfx_crc32c(0, out + 8, wr.len));
	return wr.len + 8;
}

/* Decodes one record at the reader; returns 1, 0 at a clean end, -1 if torn or damaged. */
static int rec_decode(struct cfx_reader *rd, struct rec *r)
{
	uint32_t len, crc;
	const uint8_t *p;

	if (cfx_reader_left(rd) == 0)
		return 0;
	len = cfx_read_le32(rd);
	crc = cfx_read_le32(rd);
	if (rd->err || len == 0 || len > REC_BYTES_MAX)
		return -1;
	p = cfx_read_bytes(rd, len, NULL);
	if (!p || cfx_crc32c(0, p, len) != crc)
		return -1;
	struct cfx_reader in = cfx_reader_make(p, len);
	memset(r, 0, sizeof *r);
	r->type = cfx_read_u8(&in);
	r->seq = cfx_read_le64(&in);
	r->cursor = cfx_read_le32(&in);
	switch (r->type) {
	case REC_DEFINE:
		r->group.len = cfx_read_le16(&in);
		r->group.p = cfx_read_bytes(&in, r->group.len, NULL);
		r->topic.len = cfx_read_le16(&in);
		r->topic.p = cfx_read_bytes(&in, r->topic.len, NULL);
		r->queue = cfx_read_le32(&in);
		r->offset = cfx_read_le64(&in);
		break;
	case REC_POP:
	case REC_POPG:
	case REC_CHANGE:
		r->offset = cfx_read_le64(&in);
		r->pop_id = cfx_read_le32(&in);
		r->attempt = cfx_read_le16(&in);
		r->visible_at = (int64_t)cfx_read_le64(&in);
		if (r->type == REC_POPG)
			r->ghash = cfx_read_le32(&in);
		break;
	case REC_WAIT:
		r->offset = cfx_read_le64(&in);
		r->ghash = cfx_read_le32(&in);
		break;
	case REC_ACK:
		r->offset = cfx_read_le64(&in);
		r->pop_id = cfx_read_le32(&in);
		break;
	case REC_SKIP:
	case REC_RESET:
		r->offset = cfx_read_le64(&in);
		break;
	case REC_SKIPN:
		r->offset = cfx_read_le64(&in);
		r->next = cfx_read_le64(&in);
		if (r->next < r->offset)
			return -1;
		break;
	case REC_STATE:
		r->offset = cfx_read_le64(&in);
		r->next = cfx_read_le64(&in);
		r->pop_id = cfx_read_le32(&in);
		break;
	case REC_SNAP:
		break;
	case REC_SYSDONE:
	case REC_SYSBASE:
		r->offset = cfx_read_le64(&in);
		break;
	case REC_SYSBITS:
		r->offset = cfx_read_le64(&in);
		r->bits.len = cfx_read_le16(&in);
		if (r->bits.len > SYSBITS_BYTES)
			return -1;
		r->bits.p = cfx_read_bytes(&in, r->bits.len, NULL);
		break;
	default:
		return -1;
	}
	if ((r->type == REC_SYSDONE || r->type == REC_SYSBASE || r->type == REC_SYSBITS) &&
	    r->cursor >= SYS_KINDS)
		return -1;
	return in.err || cfx_reader_left(&in) ? -1 : 1;
}

/*
 * Appends a record to the journal buffer. Records reach the file in one
 * write(2) when pop_mu is released (pop_unlock), before the operation that
 * made them returns, so a kill -9 never loses an acknowledged one.
 * @locks pop_mu
 */
static int journal(struct cfx_broker *br, struct rec *r)
{
	uint8_t buf[REC_BYTES_MAX];
	size_t n;

	r->seq = ++br->jseq;
	n = rec_encode(buf, r);
	if (!br->jbuf.p)
		cfx_writer_init(&br->jbuf, 4096);
	cfx_write_bytes(&br->jbuf, buf, n);
	return 0;
}

/* Writes the buffered records. @locks pop_mu */
static int journal_flush(struct cfx_broker *br)
{
	int rc = 0;

	if (!br->jbuf.len)
		return 0;
	if (br->jfd < 0 ||
	    cfx_pwrite_full(br->fops, br->jfd, br->jbuf.p, br->jbuf.len, (off_t)br->jbytes)) {
		cfx_log_ratelimited(CFX_LOG_ERROR, "broker: cannot write the POP journal: %s",
				    strerror(errno));
		rc = CFX_EIO;
	} else {
		br->jbytes += br->jbuf.len;
		br->jdirty = 1;
	}
	br->jbuf.len = 0;
	return rc;
}

/*
 * Releases pop_mu, then writes what the holder journaled. The write
 * happens outside pop_mu so that the next operation can proceed meanwhile;
 * jw_mu, taken before pop_mu is released, keeps the records in order.
 */
static int pop_unlock(struct cfx_broker *br)
{
	struct cfx_writer w;
	uint64_t at;
	int rc = 0;

	if (!br->jbuf.len || br->jfd < 0) {
		rc = journal_flush(br);
		pthread_mutex_unlock(&br->pop_mu);
		return rc;
	}
	pthread_mutex_lock(&br->jw_mu);
	w = br->jbuf;
	br->jbuf = br->jspare;
	br->jbuf.len = 0;
	at = br->jbytes;
	br->jbytes += w.len;
	br->jdirty = 1;
	pthread_mutex_unlock(&br->pop_mu);
	if (cfx_pwrite_full(br->fops, br->jfd, w.p, w.len, (off_t)at)) {
		cfx_log_ratelimited(CFX_LOG_ERROR, "broker: cannot write the POP journal: %s",
				    strerror(errno));
		rc = CFX_EIO;
	}
	w.len = 0;
	br->jspare = w;
	pthread_mutex_unlock(&br->jw_mu);
	return rc;
}

int pop__sys_done(struct cfx_broker *br, int kind, uint64_t offset)
{
	struct rec r = { .type = REC_SYSDONE, .cursor = (uint32_t)kind, .offset = offset };
	int rc = 0;

	pthread_mutex_lock(&br->pop_mu);
	if (!sysdone_test(&br->sys[kind], offset)) {
		rc = journal(br, &r);
		if (!rc)
			sysdone_set(&br->sys[kind], offset);
	} else {
		rc = CFX_EEXIST;
	}
	pop_unlock(br);
	return rc;
}

/* Applies a record to the state (replay and snapshot load). @locks pop_mu */
static void apply(struct cfx_broker *br, const struct rec *r)
{
	struct cursor *c = r->type == REC_DEFINE ? NULL : cursor_by_id(br, r->cursor);

	switch (r->type) {
	case REC_DEFINE:
		if (r->cursor >= REPLAY_CURSORS_MAX || cursor_by_id(br, r->cursor) ||
		    r->group.len > 255 || r->topic.len > 255)
			return; /* damaged: ids are dense and names short */
		if (!cursor_find(br, r->group, r->topic, r->queue))
			cursor_new(br, r->cursor, r->group, r->topic, r->queue, r->offset);
		return;
	case REC_SNAP:
		return;
	case REC_SYSDONE:
		sysdone_set(&br->sys[r->cursor], r->offset);
		return;
	case REC_SYSBASE:
		sysdone_rebase(&br->sys[r->cursor], r->offset);
		return;
	case REC_SYSBITS:
		for (size_t i = 0; i < r->bits.len * 8; i++)
			if (r->bits.p[i / 8] & (1u << (i % 8)))
				sysdone_set(&br->sys[r->cursor], r->offset + i);
		return;
	}
	if (!c)
		return;
	switch (r->type) {
	case REC_STATE:
		c->committed = c->next = r->offset;
		c->next_pop_id = r->pop_id;
		if (r->next > r->offset && window_reserve(c, r->next, REPLAY_WINDOW_MAX) == 0) {
			for (uint64_t o = r->offset; o < r->next; o++)
				*slot_of(c, o) = (struct slot){ .state = SLOT_DONE };
			c->next = r->next; /* POP records follow for the in-flight ones */
		}
		return; /* committed moves only once they are applied */
	case REC_POP:
	case REC_POPG:
	case REC_WAIT:
	case REC_SKIP:
		if (r->offset < c->committed)
			break;
		if (window_reserve(c, r->offset + 1, REPLAY_WINDOW_MAX))
			break;
		while (c->next <= r->offset) /* gaps cannot happen; keep them DONE if they do */
			*slot_of(c, c->next++) = (struct slot){ .state = SLOT_DONE };
		if (slot_of(c, r->offset)->state == SLOT_WAITING)
			c->waiting--;
		if (r->type == REC_SKIP) {
			if (slot_of(c, r->offset)->state == SLOT_INFLIGHT)
				c->inflight--;
			*slot_of(c, r->offset) = (struct slot){ .state = SLOT_DONE };
		} else if (r->type == REC_WAIT) {
			if (slot_of(c, r->offset)->state == SLOT_INFLIGHT)
				c->inflight--;
			*slot_of(c, r->offset) = (struct slot){ .state = SLOT_WAITING, .ghash = r->ghash };
			c->waiting++;
		} else {
			struct slot *s = slot_of(c, r->offset);
			if (s->state != SLOT_INFLIGHT)
				c->inflight++;
			*s = (struct slot){ .state = SLOT_INFLIGHT, .attempt = r->attempt,
					    .pop_id = r->pop_id, .ghash = r->ghash,
					    .visible_at = r->visible_at };
			if (r->visible_at < c->earliest_visible)
				c->earliest_visible = r->visible_at;
			if (r->pop_id >= c->next_pop_id)
				c->next_pop_id = r->pop_id + 1;
		}
		break;
	case REC_SKIPN:
		if (r->next <= c->next)
			break; /* applied already (it only ever moves forward) */
		if (c->next == c->committed && r->offset <= c->next) {
			c->committed = c->next = r->next; /* nothing in flight: no slots needed */
			break;
		}
		if (window_reserve(c, r->next, REPLAY_WINDOW_MAX))
			break;
		while (c->next < r->next)
			*slot_of(c, c->next++) = (struct slot){ .state = SLOT_DONE };
		break;
	case REC_ACK:
		if (r->offset >= c->committed && r->offset < c->next &&
		    slot_of(c, r->offset)->state == SLOT_INFLIGHT) {
			slot_of(c, r->offset)->state = SLOT_DONE;
			c->inflight--;
		}
		break;
	case REC_CHANGE:
		if (r->offset >= c->committed && r->offset < c->next &&
		    slot_of(c, r->offset)->state == SLOT_INFLIGHT) {
			struct slot *s = slot_of(c, r->offset);
			s->pop_id = r->pop_id;
			s->visible_at = r->visible_at;
			if (r->visible_at < c->earliest_visible)
				c->earliest_visible = r->visible_at;
			if (r->pop_id >= c->next_pop_id)
				c->next_pop_id = r->pop_id + 1;
		}
		break;
	case REC_RESET:
		cfx_free(c->ring);
		c->ring = NULL;
		c->cap = 0;
		c->inflight = 0;
		c->committed = c->next = r->offset;
		c->waiting = 0;
		c->earliest_visible = INT64_MAX;
		break;
	}
	advance_committed(c);
}

/* ------------------------------------------------------------------------
 * Snapshot, open, close
 * ------------------------------------------------------------------------ */

static void path_in(struct cfx_broker *br, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", br->pop_dir, name);
}

/* Writes the whole state as records into a buffer. @locks pop_mu */
static void snapshot_build(struct cfx_broker *br, struct cfx_writer *wr)
{
	struct rec r = { .type = REC_SNAP, .seq = br->jseq };
	uint8_t buf[REC_BYTES_MAX];

	cfx_write_bytes(wr, buf, rec_encode(buf, &r));
	for (int k = 0; k < SYS_KINDS; k++) {
		const struct sysdone *d = &br->sys[k];
		r = (struct rec){ .type = REC_SYSBASE, .seq = br->jseq, .cursor = (uint32_t)k,
				  .offset = d->base };
		cfx_write_bytes(wr, buf, rec_encode(buf, &r));
		for (uint32_t w = 0; w < d->nw; w += SYSBITS_BYTES / 8) {
			uint8_t bits[SYSBITS_BYTES] = { 0 };
			int any = 0;
			for (uint32_t j = 0; j < SYSBITS_BYTES / 8 && w + j < d->nw; j++) {
				cfx_store_le64(bits + 8 * j, d->w[w + j]);
				any |= d->w[w + j] != 0;
			}
			if (!any)
				continue;
			r = (struct rec){ .type = REC_SYSBITS, .seq = br->jseq, .cursor = (uint32_t)k,
					  .offset = d->base + 64 * (uint64_t)w,
					  .bits = { bits, SYSBITS_BYTES } };
			cfx_write_bytes(wr, buf, rec_encode(buf, &r));
		}
	}
	for (uint32_t i = 0; i < br->ccap; i++)
		for (struct cursor *c = br->ctab[i]; c; c = c->hnext) {
			r = (struct rec){ .type = REC_DEFINE, .seq = br->jseq, .cursor = c->id,
					  .group = { (uint8_t *)c->group, c->glen },
					  .topic = { (uint8_t *)c->topic, c->tlen },
					  .queue = c->queue, .offset = c->committed };
			cfx_write_bytes(wr, buf, rec_encode(buf, &r));
			r = (struct rec){ .type = REC_STATE, .seq = br->jseq, .cursor = c->id,
					  .offset = c->committed, .next = c->next,
					  .pop_id = c->next_pop_id };
			cfx_write_bytes(wr, buf, rec_encode(buf, &r));
			for (uint64_t o = c->committed; o < c->next; o++) {
				struct slot *s = slot_of(c, o);
				if (s->state == SLOT_WAITING) {
					r = (struct rec){ .type = REC_WAIT, .seq = br->jseq,
							  .cursor = c->id, .offset = o,
							  .ghash = s->ghash };
					cfx_write_bytes(wr, buf, rec_encode(buf, &r));
					continue;
				}
				if (s->state != SLOT_INFLIGHT && s->state != SLOT_MOVING)
					continue;
				r = (struct rec){ .type = s->ghash ? REC_POPG : REC_POP, .seq = br->jseq,
						  .cursor = c->id, .offset = o, .pop_id = s->pop_id,
						  .attempt = s->attempt, .ghash = s->ghash,
						  .visible_at = s->visible_at };
				cfx_write_bytes(wr, buf, rec_encode(buf, &r));
			}
		}
}

/* Replaces the snapshot and starts an empty journal. @locks pop_mu */
static int snapshot_write(struct cfx_broker *br)
{
	char path[PATH_MAX];
	struct cfx_writer wr;
	int r;

	/* No journal write may be in progress while the journal is cut. */
	pthread_mutex_lock(&br->jw_mu);
	journal_flush(br); /* the journal stays a prefix of the state */
	cfx_writer_init(&wr, 4096);
	snapshot_build(br, &wr);
	path_in(br, "snapshot", path, sizeof path);
	r = cfx_write_file_atomic(br->fops, path, wr.p, wr.len);
	cfx_writer_free(&wr);
	if (r) {
		pthread_mutex_unlock(&br->jw_mu);
		cfx_log_error("broker: cannot write the POP snapshot: %s", strerror(-r));
		return cfx_err_from_errno(-r);
	}
	/* The snapshot covers every record so far: the journal starts over. */
	if (br->fops->ftruncate(br->jfd, 0) == 0 && br->fops->fdatasync(br->jfd) == 0) {
		br->jbytes = 0;
		br->jdirty = 0;
	}
	pthread_mutex_unlock(&br->jw_mu);
	return 0;
}

static int replay_buf(struct cfx_broker *br, const char *path, const uint8_t *data, size_t len,
		      uint64_t *snap_seq, int is_journal, uint64_t *valid_bytes);

static int replay_file(struct cfx_broker *br, const char *name, uint64_t *snap_seq, int is_journal,
		       uint64_t *valid_bytes)
{
	char path[PATH_MAX];
	struct stat stbuf;
	uint8_t *data;
	int fd, rc;

	path_in(br, name, path, sizeof path);
	fd = br->fops->open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd == -ENOENT ? 0 : cfx_err_from_errno(-fd);
	br->fops->fstat(fd, &stbuf);
	data = cfx_malloc((size_t)stbuf.st_size + 1);
	if (cfx_pread_full(br->fops, fd, data, (size_t)stbuf.st_size, 0) && stbuf.st_size) {
		br->fops->close(fd);
		cfx_free(data);
		return CFX_EIO;
	}
	br->fops->close(fd);
	rc = replay_buf(br, path, data, (size_t)stbuf.st_size, snap_seq, is_journal, valid_bytes);
	cfx_free(data);
	return rc;
}

/* Applies the records of a snapshot or journal image. @locks pop_mu */
static int replay_buf(struct cfx_broker *br, const char *path, const uint8_t *data, size_t len,
		      uint64_t *snap_seq, int is_journal, uint64_t *valid_bytes)
{
	struct cfx_reader rd = cfx_reader_make(data, len);
	struct rec r;
	int rc = 0;

	for (;;) {
		size_t at = rd.pos;
		int d = rec_decode(&rd, &r);
		if (d == 0)
			break;
		if (d < 0) {
			if (!is_journal) {
				cfx_log_error("broker: %s is damaged at byte %zu", path, at);
				rc = CFX_ECORRUPT;
			} else {
				cfx_log_warn("broker: POP journal ends with a torn record at byte %zu; "
					     "dropping it",
					     at);
			}
			rd.pos = at;
			break;
		}
		if (!is_journal && r.type == REC_SNAP)
			*snap_seq = r.seq;
		if (is_journal && r.seq <= *snap_seq)
			continue; /* already in the snapshot */
		apply(br, &r);
		if (r.seq > br->jseq)
			br->jseq = r.seq;
	}
	if (valid_bytes)
		*valid_bytes = rd.pos;
	return rc;
}

int pop__replay_bytes(struct cfx_broker *br, const uint8_t *p, size_t len)
{
	uint64_t snap_seq = 0;
	int rc;

	pthread_mutex_lock(&br->pop_mu);
	rc = replay_buf(br, "(bytes)", p, len, &snap_seq, 1, NULL);
	pthread_mutex_unlock(&br->pop_mu);
	return rc;
}

static int load_secret(struct cfx_broker *br)
{
	char path[PATH_MAX];
	int fd, r;

	path_in(br, "secret", path, sizeof path);
	fd = br->fops->open(path, O_RDONLY, 0);
	if (fd >= 0) {
		r = cfx_pread_full(br->fops, fd, br->secret, sizeof br->secret, 0);
		br->fops->close(fd);
		if (r == 0)
			return 0;
	}
	if (getrandom(br->secret, sizeof br->secret, 0) != (ssize_t)sizeof br->secret)
		return CFX_ESYS;
	r = cfx_write_file_atomic(br->fops, path, br->secret, sizeof br->secret);
	return r ? cfx_err_from_errno(-r) : 0;
}

int pop__open(struct cfx_broker *br)
{
	char path[PATH_MAX];
	uint64_t snap_seq = 0, valid = 0;
	int rc;

	rc = cfx_err_from_errno(-cfx_mkdir_p(br->fops, br->pop_dir));
	if (!rc)
		rc = load_secret(br);
	if (!rc)
		rc = replay_file(br, "snapshot", &snap_seq, 0, NULL);
	if (!rc)
		rc = replay_file(br, "journal", &snap_seq, 1, &valid);
	if (rc)
		return rc;
	if (br->jseq < snap_seq)
		br->jseq = snap_seq;
	path_in(br, "journal", path, sizeof path);
	br->jfd = br->fops->open(path, O_RDWR | O_CREAT, 0644);
	if (br->jfd < 0)
		return cfx_err_from_errno(-br->jfd);
	/* Cut a torn tail so that new records follow the last good one. */
	br->fops->ftruncate(br->jfd, (off_t)valid);
	br->jbytes = valid;
	cfx_log_info("broker: POP state: %u cursors", br->ccount);
	return 0;
}

void pop__close(struct cfx_broker *br)
{
	pthread_mutex_lock(&br->pop_mu);
	if (br->jfd >= 0) {
		snapshot_write(br);
		br->fops->close(br->jfd);
		br->jfd = -1;
	}
	for (uint32_t i = 0; i < br->ccap; i++)
		while (br->ctab[i]) {
			struct cursor *c = br->ctab[i];
			br->ctab[i] = c->hnext;
			cfx_free(c->ring);
			cfx_free(c->group);
			cfx_free(c->topic);
			cfx_free(c);
		}
	CFX_FREE(br->ctab);
	CFX_FREE(br->cbyid);
	for (int k = 0; k < SYS_KINDS; k++) {
		CFX_FREE(br->sys[k].w);
		br->sys[k] = (struct sysdone){ 0 };
	}
	cfx_writer_free(&br->jbuf);
	cfx_writer_free(&br->jspare);
	br->cbyid_cap = 0;
	br->ccap = br->ccount = 0;
	pop_unlock(br);
	/* The last step of the broker's teardown that may still count (nothing
	 * pops or sends any more): the traffic counters go with the POP state. */
	stats__free(br);
}

/* ------------------------------------------------------------------------
 * Receipt handles
 * ------------------------------------------------------------------------ */

/* Version 2 handles carry a SipHash-2-4 MAC (cheap: one is made for every
 * delivery and checked for every ack); version 1 (HMAC-SHA256) ones, from
 * before, are still accepted. */
#define HANDLE_VERSION 2
#define HANDLE_BODY 31 /* version 1, queue 4, offset 8, pop_id 4, pop_ms 8, invisible 4, attempt 2 */
#define HANDLE_MAC 9

struct handle {
	uint32_t queue;
	uint64_t offset;
	uint32_t pop_id;
	int64_t pop_ms;
	uint32_t invisible_ms;
	uint16_t attempt;
};

static void handle_mac(struct cfx_broker *br, struct cfx_view g, struct cfx_view t,
		       const uint8_t *body, uint8_t out[HANDLE_MAC])
{
	uint8_t msg[2 * 256 + HANDLE_BODY + 2], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = sizeof md;
	size_t n = 0;

	/* The handle is bound to its group and topic. */
	CFX_ASSERT(g.len < 256 && t.len < 256);
	memcpy(msg + n, g.p, g.len);
	n += g.len;
	msg[n++] = 0;
	memcpy(msg + n, t.p, t.len);
	n += t.len;
	msg[n++] = 0;
	memcpy(msg + n, body, HANDLE_BODY);
	n += HANDLE_BODY;
	if (body[0] == 1) {
		HMAC(EVP_sha256(), br->secret, sizeof br->secret, msg, n, md, &mdlen);
		memcpy(out, md, HANDLE_MAC);
		return;
	}
	/* 72 bits: SipHash under each half of the secret. */
	cfx_store_le64(out, cfx_siphash24(br->secret, msg, n));
	out[8] = (uint8_t)cfx_siphash24(br->secret + 16, msg, n);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void handle_encode(struct cfx_broker *br, struct cfx_view g, struct cfx_view t,
			  const struct handle *h, char out[CFX_HANDLE_MAX])
{
	uint8_t raw[HANDLE_BODY + HANDLE_MAC];
	size_t o = 0;

	raw[0] = HANDLE_VERSION;
	cfx_store_le32(raw + 1, h->queue);
	cfx_store_le64(raw + 5, h->offset);
	cfx_store_le32(raw + 13, h->pop_id);
	cfx_store_le64(raw + 17, (uint64_t)h->pop_ms);
	cfx_store_le32(raw + 25, h->invisible_ms);
	cfx_store_le16(raw + 29, h->attempt);
	handle_mac(br, g, t, raw, raw + HANDLE_BODY);
	/* 40 bytes -> 54 base64url characters (no padding). */
	for (size_t i = 0; i < sizeof raw; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16;
		size_t n = sizeof raw - i;
		if (n > 1)
			v |= (uint32_t)raw[i + 1] << 8;
		if (n > 2)
			v |= raw[i + 2];
		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		if (n > 1)
			out[o++] = b64url[(v >> 6) & 63];
		if (n > 2)
			out[o++] = b64url[v & 63];
	}
	out[o] = '\0';
}

static int b64val(char c)
{
	unsigned char u = (unsigned char)c;

	if (u >= 'A' && u <= 'Z')
		return u - 'A';
	if (u >= 'a' && u <= 'z')
		return u - 'a' + 26;
	if (u >= '0' && u <= '9')
		return u - '0' + 52;
	return u == '-' ? 62 : u == '_' ? 63 : -1;
}

static int handle_decode(struct cfx_broker *br, struct cfx_view g, struct cfx_view t,
			 const char *text, struct handle *h)
{
	uint8_t raw[HANDLE_BODY + HANDLE_MAC], mac[HANDLE_MAC];
	size_t len = strnlen(text, CFX_HANDLE_MAX), o = 0;

	if (len != 54)
		return CFX_EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		size_t n = CFX_MIN((size_t)4, len - i);
		for (size_t k = 0; k < 4; k++) {
			int x = k < n ? b64val(text[i + k]) : 0;
			if (x < 0)
				return CFX_EINVAL;
			v = v << 6 | (uint32_t)x;
		}
		for (size_t k = 0; k < n - 1 && o < sizeof raw; k++)
			raw[o++] = (uint8_t)(v >> (16 - 8 * k));
	}
	if (o != sizeof raw || (raw[0] != HANDLE_VERSION && raw[0] != 1))
		return CFX_EINVAL;
	handle_mac(br, g, t, raw, mac);
	if (CRYPTO_memcmp(mac, raw + HANDLE_BODY, HANDLE_MAC) != 0)
		return CFX_EINVAL;
	h->queue = cfx_load_le32(raw + 1);
	h->offset = cfx_load_le64(raw + 5);
	h->pop_id = cfx_load_le32(raw + 13);
	h->pop_ms = (int64_t)cfx_load_le64(raw + 17);
	h->invisible_ms = cfx_load_le32(raw + 25);
	h->attempt = cfx_load_le16(raw + 29);
	return 0;
}

/*
 * Handles of system-queue entries (recall handles of timers, transaction
 * ids of half messages): version (2 + kind), offset (8), MAC (9) over the
 * topic and those 9 bytes: 18 bytes, 24 base64url characters.
 */
#define SYS_HANDLE_BODY 9

static void sys_handle_mac(struct cfx_broker *br, struct cfx_view topic, const uint8_t *body,
			   uint8_t out[HANDLE_MAC])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = sizeof md;
	uint8_t msg[256 + 1 + SYS_HANDLE_BODY];
	size_t n = CFX_MIN(topic.len, (size_t)256);

	memcpy(msg, topic.p, n);
	msg[n++] = 0;
	memcpy(msg + n, body, SYS_HANDLE_BODY);
	n += SYS_HANDLE_BODY;
	HMAC(EVP_sha256(), br->secret, sizeof br->secret, msg, n, md, &mdlen);
	memcpy(out, md, HANDLE_MAC);
}

void broker__sys_handle(struct cfx_broker *br, int kind, struct cfx_view topic, uint64_t offset,
			char out[CFX_HANDLE_MAX])
{
	uint8_t raw[SYS_HANDLE_BODY + HANDLE_MAC];
	size_t o = 0;

	raw[0] = (uint8_t)(2 + kind);
	cfx_store_le64(raw + 1, offset);
	sys_handle_mac(br, topic, raw, raw + SYS_HANDLE_BODY);
	for (size_t i = 0; i < sizeof raw; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	out[o] = '\0';
}

int broker__sys_handle_decode(struct cfx_broker *br, int kind, struct cfx_view topic,
			      const char *text, uint64_t *offset)
{
	uint8_t raw[SYS_HANDLE_BODY + HANDLE_MAC], mac[HANDLE_MAC];
	size_t o = 0;

	if (!text || strnlen(text, 25) != 24)
		return CFX_EINVAL;
	for (size_t i = 0; i < 24; i += 4) {
		uint32_t v = 0;
		for (size_t k = 0; k < 4; k++) {
			int x = b64val(text[i + k]);
			if (x < 0)
				return CFX_EINVAL;
			v = v << 6 | (uint32_t)x;
		}
		raw[o++] = (uint8_t)(v >> 16);
		raw[o++] = (uint8_t)(v >> 8);
		raw[o++] = (uint8_t)v;
	}
	if (raw[0] != 2 + kind)
		return CFX_EINVAL;
	sys_handle_mac(br, topic, raw, mac);
	if (CRYPTO_memcmp(mac, raw + SYS_HANDLE_BODY, HANDLE_MAC) != 0)
		return CFX_EINVAL;
	*offset = cfx_load_le64(raw + 1);
	return 0;
}

/* ------------------------------------------------------------------------
 * Pop
 * ------------------------------------------------------------------------ */

void cfx_pop_result_init(struct cfx_pop_result *r)
{
	memset(r, 0, sizeof *r);
}

static void pop_result_reset(struct cfx_pop_result *r)
{
	for (uint32_t i = 0; i < r->nrd; i++)
		cfx_read_result_free(&r->rd[i]);
	r->nrd = 0;
	r->count = 0;
}

void cfx_pop_result_free(struct cfx_pop_result *r)
{
	pop_result_reset(r);
	CFX_FREE(r->msgs);
	r->cap = 0;
}

static struct cfx_read_result *result_rd(struct cfx_pop_result *r)
{
	if (r->nrd == CFX_ARRAY_LEN(r->rd))
		return NULL;
	cfx_read_result_init(&r->rd[r->nrd]);
	return &r->rd[r->nrd++];
}

static struct cfx_popped *result_push(struct cfx_pop_result *r)
{
	if (r->count == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 32;
		r->msgs = cfx_realloc(r->msgs, r->cap * sizeof *r->msgs);
	}
	return &r->msgs[r->count++];
}

int broker__prop(const struct cfx_msg_view *v, const char *name, struct cfx_view *out)
{
	size_t cur = 0;
	struct cfx_prop p;

	while (cfx_msg_view_next_prop(v, &cur, &p))
		if (cfx_view_eq_str(p.name, name)) {
			*out = p.value;
			return 1;
		}
	return 0;
}

int broker__read_sys(struct cfx_broker *br, const char *topic, uint64_t off,
		     struct cfx_read_result *rd)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		cfx_read_result_free(rd);
		cfx_read_result_init(rd);
		int rc = cfx_store_read(br->st, CFX_VIEW_STR(topic), 0, off, 1, 1, rd);
		if (!rc && rd->count && rd->msgs[0].offset == off)
			return 0;
		/* Appended (its send was answered) but maybe not indexed yet. */
		if (attempt == 0 && (rc || off >= rd->end_offset))
			cfx_store_wait_dispatched(br->st, 2000);
		else
			return rc ? rc : CFX_ENOENT;
	}
	return CFX_ENOENT;
}

struct cfx_send_msg broker__copy(const struct cfx_msg_view *v, const struct cfx_prop *props,
				 uint32_t nprops, int type)
{
	return (struct cfx_send_msg){ .m = { .key = v->key,
					     .key_null = v->key_null,
					     .body = v->body,
					     .body_null = v->body_null,
					     .tag = v->tag,
					     .msg_id = v->msg_id,
					     .born_ms = v->born_ms,
					     .flag = v->flag,
					     .props = props,
					     .prop_count = nprops },
				      .type = type };
}

/* The SQL92 filter's view of a message: TAGS is the tag, any other name a
 * user property; a missing one is NULL (p == NULL). */
static struct cfx_view sql_get(void *arg, struct cfx_view name)
{
	const struct cfx_msg_view *v = arg;
	size_t cur = 0;
	struct cfx_prop p;

	if (cfx_view_eq_str(name, CFX_SQL_TAGS_NAME))
		return v->tag.len ? v->tag : (struct cfx_view){ 0 };
	while (cfx_msg_view_next_prop(v, &cur, &p))
		if (p.name.len == name.len && !memcmp(p.name.p, name.p, name.len))
			return p.value.p ? p.value : (struct cfx_view){ (const uint8_t *)"", 0 };
	return (struct cfx_view){ 0 };
}

/* Has the message's time to live (property __TTL_MS or CFX_TTL_MS, in ms
 * after its born time) passed? */
static int msg_expired(const struct cfx_msg_view *v, int64_t now)
{
	struct cfx_view ttl;
	char buf[24];
	char *end;

	if (!broker__prop(v, CFX_PROP_TTL_MS, &ttl) && !broker__prop(v, "CFX_TTL_MS", &ttl))
		return 0;
	if (ttl.len == 0 || ttl.len >= sizeof buf)
		return 0;
	memcpy(buf, ttl.p, ttl.len);
	buf[ttl.len] = '\0';
	errno = 0;
	long long ms = strtoll(buf, &end, 10);
	if (errno || *end || ms <= 0)
		return 0;
	return v->born_ms + ms <= now;
}

/* Does a message pass the request's filters (tags, SQL92)? */
static int filter_matches(const struct cfx_pop_req *req, const struct cfx_msg_view *v)
{
	if (req->tags) {
		uint32_t i;
		for (i = 0; i < req->ntags; i++)
			if (cfx_view_eq_str(v->tag, req->tags[i]))
				break;
		if (i == req->ntags)
			return 0;
	}
	if (req->sql && !cfx_sql_match(req->sql, sql_get, (void *)v))
		return 0;
	return 1;
}

static struct cursor *cursor_get(struct cfx_broker *br, struct cfx_view g, struct cfx_view t,
				 uint32_t q, uint64_t start)
{
	struct cursor *c = cursor_find(br, g, t, q);
	struct rec r;

	if (c)
		return c;
	c = cursor_new(br, br->next_cursor_id, g, t, q, start);
	r = (struct rec){ .type = REC_DEFINE, .cursor = c->id, .group = g, .topic = t,
			  .queue = q, .offset = start };
	journal(br, &r);
	return c;
}

static void deliver(struct cfx_broker *br, const struct cfx_pop_req *req, struct cursor *c,
		    const struct cfx_msg_view *v, uint32_t attempt, int64_t now,
		    struct cfx_pop_result *res, uint32_t ghash)
{
	struct slot *s = slot_of(c, v->offset);
	struct cfx_popped *p = result_push(res);
	struct handle h;
	struct rec r;

	if (s->state == SLOT_WAITING)
		c->waiting--;
	if (s->state != SLOT_INFLIGHT)
		c->inflight++;
	*s = (struct slot){ .state = SLOT_INFLIGHT, .attempt = (uint16_t)attempt,
			    .pop_id = c->next_pop_id++, .ghash = ghash,
			    .visible_at = now + req->invisible_ms };
	if (s->visible_at < c->earliest_visible)
		c->earliest_visible = s->visible_at;
	r = (struct rec){ .type = ghash ? REC_POPG : REC_POP, .cursor = c->id, .offset = v->offset,
			  .pop_id = s->pop_id, .attempt = s->attempt, .ghash = ghash,
			  .visible_at = s->visible_at };
	journal(br, &r);
	h = (struct handle){ .queue = c->queue, .offset = v->offset, .pop_id = s->pop_id,
			     .pop_ms = now, .invisible_ms = (uint32_t)req->invisible_ms,
			     .attempt = (uint16_t)attempt };
	p->v = *v;
	p->queue = c->queue;
	p->attempt = attempt;
	p->pop_ms = now;
	handle_encode(br, req->group, req->topic, &h, p->handle);
	stats__count_out(br, req->topic, 1, v->body.len);
}

/* One pop: the request, its result, and the dead-letter moves it decided. */
struct move {
	uint32_t cursor, queue, pop_id;
	uint64_t offset;
	uint16_t attempt;
};

struct pop_ctx {
	const struct cfx_pop_req *req;
	struct cfx_pop_result *res;
	int64_t now;
	uint32_t max_attempts;
	struct move *moves;
	uint32_t nmoves, capmoves;
	uint32_t *tag_hashes; /* of req->tags, for the store to skip batches */
};

/* Messages of one queue whose invisibility expired: redelivered, or, after
 * the group's last attempt, moved to its dead-letter queue. @locks pop_mu */
static void pop_expired(struct cfx_broker *br, struct pop_ctx *x, struct cursor *c)
{
	const struct cfx_pop_req *req = x->req;
	struct cfx_pop_result *res = x->res;
	int64_t earliest = INT64_MAX, now = x->now;

	if (c->earliest_visible > now)
		return;
	for (uint64_t o = c->committed; o < c->next; o++) {
		struct slot *s = slot_of(c, o);
		if (s->state != SLOT_INFLIGHT)
			continue;
		if (s->visible_at <= now && s->attempt >= x->max_attempts) {
			if (x->nmoves == x->capmoves) {
				x->capmoves = x->capmoves ? x->capmoves * 2 : 8;
				x->moves = cfx_realloc(x->moves, x->capmoves * sizeof *x->moves);
			}
			x->moves[x->nmoves++] = (struct move){ .cursor = c->id, .queue = c->queue,
							       .pop_id = s->pop_id, .offset = o,
							       .attempt = s->attempt };
			s->state = SLOT_MOVING;
			continue;
		}
		if (s->visible_at > now || res->count >= req->max_msgs) {
			if (s->visible_at < earliest)
				earliest = s->visible_at;
			continue;
		}
		struct cfx_read_result *rd = result_rd(res);
		if (!rd) {
			earliest = now; /* come back for the rest */
			break;
		}
		int rc = cfx_store_read(br->st, req->topic, c->queue, o, 1, 1, rd);
		if (rc || rd->count == 0 || rd->msgs[0].offset != o || msg_expired(&rd->msgs[0], now)) {
			/* Gone (retention), unreadable or past its time to live:
			 * nothing to redeliver. */
			s->state = SLOT_DONE;
			c->inflight--;
			struct rec r = { .type = REC_ACK, .cursor = c->id, .offset = o,
					 .pop_id = s->pop_id };
			journal(br, &r);
			continue;
		}
		deliver(br, req, c, &rd->msgs[0], s->attempt + 1u, now, res, s->ghash);
		if (s->visible_at < earliest)
			earliest = s->visible_at;
	}
	c->earliest_visible = earliest;
	advance_committed(c);
}

/* New messages of one queue. @locks pop_mu */
/* Marks [c->next, to) skipped (the store skipped those batches unread). @locks pop_mu */
static int skip_range(struct cfx_broker *br, struct cursor *c, uint64_t to, uint32_t wmax)
{
	if (to <= c->next)
		return 0;
	if (c->next != c->committed && window_reserve(c, to, wmax))
		return CFX_E2BIG;
	struct rec r = { .type = REC_SKIPN, .cursor = c->id, .offset = c->next, .next = to };
	journal(br, &r);
	apply(br, &r);
	return 0;
}

static void pop_new(struct cfx_broker *br, struct pop_ctx *x, struct cursor *c)
{
	const struct cfx_pop_req *req = x->req;
	struct cfx_pop_result *res = x->res;
	int64_t now = x->now;
	uint32_t wmax = br->o.inflight_max ? br->o.inflight_max : WINDOW_MAX_DEFAULT;
	uint64_t start, end;
	uint32_t scanned = 0;

	cfx_store_queue_bounds(br->st, req->topic, c->queue, &start, &end);
	if (c->next < start) {
		/* Retention deleted what this group never read: move on. */
		struct rec r = { .type = REC_RESET, .cursor = c->id, .offset = start };
		journal(br, &r);
		apply(br, &r);
	}
	while (res->count < req->max_msgs && c->next < end && scanned < 4096) {
		struct cfx_read_result *rd = result_rd(res);
		uint32_t want = req->max_msgs - res->count;
		if (!rd)
			break;
		if (window_reserve(c, c->next + want, wmax))
			break; /* too many in flight on this queue */
		int rc = cfx_store_read_tags(br->st, req->topic, c->queue, c->next,
					     req->tags || req->sql ? 64 : want, 1u << 20,
					     x->tag_hashes, req->ntags, rd);
		if (rc == CFX_ECORRUPT || rc == CFX_EUNSUPPORTED) {
			/* An unreadable batch is skipped, so the group is not stuck on it. */
			cfx_log_ratelimited(CFX_LOG_WARN, "broker: %s/%u: skipping an unreadable "
					    "batch at offset %" PRIu64 " for group %s",
					    c->topic, c->queue, c->next, c->group);
			while (c->next < rd->next_offset && window_reserve(c, c->next + 1, wmax) == 0) {
				struct rec r = { .type = REC_SKIP, .cursor = c->id, .offset = c->next };
				journal(br, &r);
				*slot_of(c, c->next++) = (struct slot){ .state = SLOT_DONE };
			}
			break;
		}
		if (rc)
			break;
		if (rd->count == 0) {
			/* Only batches the tag filter ruled out: step over them. */
			if (rd->next_offset <= c->next || skip_range(br, c, rd->next_offset, wmax))
				break;
			advance_committed(c);
			continue;
		}
		uint32_t i;
		for (i = 0; i < rd->count && res->count < req->max_msgs; i++) {
			const struct cfx_msg_view *v = &rd->msgs[i];
			if (window_reserve(c, v->offset + 1, wmax) ||
			    skip_range(br, c, v->offset, wmax))
				break;
			c->next = v->offset + 1;
			scanned++;
			if (!filter_matches(req, v) || msg_expired(v, now)) {
				struct rec r = { .type = REC_SKIP, .cursor = c->id, .offset = v->offset };
				journal(br, &r);
				*slot_of(c, v->offset) = (struct slot){ .state = SLOT_DONE };
				continue;
			}
			deliver(br, req, c, v, 1, now, res, 0);
		}
		/* All returned ones looked at: skipped batches after them too. */
		if (i == rd->count && skip_range(br, c, rd->next_offset, wmax))
			break;
	}
	advance_committed(c);
}

/* ------------------------------------------------------------------------
 * FIFO groups
 * ------------------------------------------------------------------------ */

/* The message-group hashes seen not done during one FIFO pop of a queue. */
struct gset {
	uint32_t *v;
	uint32_t cap, n;
};

static int gset_has(const struct gset *g, uint32_t h)
{
	if (!g->cap)
		return 0;
	for (uint32_t i = h & (g->cap - 1);; i = (i + 1) & (g->cap - 1)) {
		if (g->v[i] == h)
			return 1;
		if (g->v[i] == 0)
			return 0;
	}
}

static void gset_add(struct gset *g, uint32_t h)
{
	if (!h || gset_has(g, h))
		return;
	if ((g->n + 1) * 2 > g->cap) {
		struct gset ng = { .cap = g->cap ? g->cap * 2 : 64 };
		ng.v = cfx_calloc(ng.cap, sizeof *ng.v);
		for (uint32_t i = 0; i < g->cap; i++)
			if (g->v[i])
				gset_add(&ng, g->v[i]);
		cfx_free(g->v);
		*g = ng;
	}
	uint32_t i = h & (g->cap - 1);
	while (g->v[i])
		i = (i + 1) & (g->cap - 1);
	g->v[i] = h;
	g->n++;
}

/* The message group of a message as a non-zero hash, 0 if it has none. */
static uint32_t group_hash(const struct cfx_msg_view *v)
{
	struct cfx_view g;

	if (!broker__prop(v, CFX_PROP_MSG_GROUP, &g) || !g.len)
		return 0;
	return (uint32_t)cfx_hash64(g.p, g.len) | 1u;
}

/* Reads one message of the queue into `rd`; 0 if it is there. */
static int read_one(struct cfx_broker *br, struct cfx_view topic, uint32_t queue, uint64_t off,
		    struct cfx_read_result *rd)
{
	cfx_read_result_free(rd);
	cfx_read_result_init(rd);
	int rc = cfx_store_read(br->st, topic, queue, off, 1, 1, rd);
	return !rc && rd->count && rd->msgs[0].offset == off ? 0 : CFX_ENOENT;
}

/*
 * A FIFO group's pop of one queue. The window is walked from `committed`:
 * the first not-done message of each message group is the only one that
 * may be in flight; later ones wait. An expired in-flight message is
 * redelivered (or dead-lettered) before anything else of its group; a
 * waiting one is delivered once its group has nothing earlier in flight.
 * New messages whose group is busy are read and held back (REC_WAIT).
 * @locks pop_mu
 */
static void pop_fifo(struct cfx_broker *br, struct pop_ctx *x, struct cursor *c)
{
	const struct cfx_pop_req *req = x->req;
	struct cfx_pop_result *res = x->res;
	uint32_t wmax = br->o.inflight_max ? br->o.inflight_max : WINDOW_MAX_DEFAULT;
	int64_t now = x->now, earliest = INT64_MAX;
	struct gset busy = { 0 };
	struct cfx_read_result tmp;
	uint64_t start, end;

	cfx_read_result_init(&tmp);
	cfx_store_queue_bounds(br->st, req->topic, c->queue, &start, &end);
	if (c->next < start) {
		struct rec r = { .type = REC_RESET, .cursor = c->id, .offset = start };
		journal(br, &r);
		apply(br, &r);
	}
	for (uint64_t o = c->committed; o < c->next; o++) {
		struct slot *s = slot_of(c, o);
		switch (s->state) {
		case SLOT_DONE:
			continue;
		case SLOT_MOVING:
			gset_add(&busy, s->ghash);
			continue;
		case SLOT_INFLIGHT:
			if (s->visible_at > now || res->count >= req->max_msgs ||
			    (s->ghash && gset_has(&busy, s->ghash))) {
				earliest = CFX_MIN(earliest, s->visible_at);
				gset_add(&busy, s->ghash);
				continue;
			}
			gset_add(&busy, s->ghash);
			if (s->attempt >= x->max_attempts) {
				if (x->nmoves == x->capmoves) {
					x->capmoves = x->capmoves ? x->capmoves * 2 : 8;
					x->moves = cfx_realloc(x->moves, x->capmoves * sizeof *x->moves);
				}
				x->moves[x->nmoves++] = (struct move){ .cursor = c->id,
								       .queue = c->queue,
								       .pop_id = s->pop_id, .offset = o,
								       .attempt = s->attempt };
				s->state = SLOT_MOVING;
				continue;
			}
			if (read_one(br, req->topic, c->queue, o, &tmp) ||
			    msg_expired(&tmp.msgs[0], now)) {
				struct rec r = { .type = REC_ACK, .cursor = c->id, .offset = o,
						 .pop_id = s->pop_id };
				journal(br, &r);
				s->state = SLOT_DONE;
				c->inflight--;
				continue;
			}
			struct cfx_read_result *rd = result_rd(res);
			if (!rd) {
				earliest = now;
				continue;
			}
			read_one(br, req->topic, c->queue, o, rd);
			deliver(br, req, c, &rd->msgs[0], s->attempt + 1u, now, res, s->ghash);
			earliest = CFX_MIN(earliest, s->visible_at);
			continue;
		case SLOT_WAITING:
			if (res->count >= req->max_msgs || gset_has(&busy, s->ghash)) {
				gset_add(&busy, s->ghash);
				continue;
			}
			gset_add(&busy, s->ghash);
			struct cfx_read_result *rd2 = result_rd(res);
			if (!rd2)
				continue;
			if (read_one(br, req->topic, c->queue, o, rd2) ||
			    msg_expired(&rd2->msgs[0], now)) {
				struct rec r = { .type = REC_SKIP, .cursor = c->id, .offset = o };
				journal(br, &r);
				apply(br, &r);
				continue;
			}
			deliver(br, req, c, &rd2->msgs[0], 1, now, res, s->ghash);
			earliest = CFX_MIN(earliest, s->visible_at);
			continue;
		}
	}
	c->earliest_visible = earliest;
	/* New messages. */
	while (res->count < req->max_msgs && c->next < end) {
		struct cfx_read_result *rd = result_rd(res);
		if (!rd)
			break;
		int rc = cfx_store_read(br->st, req->topic, c->queue, c->next, 64, 1u << 20, rd);
		if (rc || rd->count == 0)
			break;
		uint32_t i;
		for (i = 0; i < rd->count && res->count < req->max_msgs; i++) {
			const struct cfx_msg_view *v = &rd->msgs[i];
			struct rec r = { .cursor = c->id, .offset = v->offset };
			if (window_reserve(c, v->offset + 1, wmax))
				break;
			c->next = v->offset + 1;
			if (!filter_matches(req, v) || msg_expired(v, now)) {
				r.type = REC_SKIP;
				journal(br, &r);
				*slot_of(c, v->offset) = (struct slot){ .state = SLOT_DONE };
				continue;
			}
			uint32_t gh = group_hash(v);
			if (gh && gset_has(&busy, gh)) {
				r.type = REC_WAIT;
				r.ghash = gh;
				journal(br, &r);
				*slot_of(c, v->offset) = (struct slot){ .state = SLOT_WAITING,
									.ghash = gh };
				c->waiting++;
				continue;
			}
			gset_add(&busy, gh);
			deliver(br, req, c, v, 1, now, res, gh);
		}
		if (i < rd->count && res->count < req->max_msgs)
			break; /* the window is full */
	}
	advance_committed(c);
	cfx_free(busy.v);
	cfx_read_result_free(&tmp);
}

/* Dead letters (below). */
struct dlq_arg {
	struct cfx_broker *br;
	struct move *move;  /* a move decided by a pop, or NULL */
	char *group, *topic; /* ForwardMessageToDeadLetterQueue: ack by handle */
	char handle[CFX_HANDLE_MAX];
	cfx_send_cb cb;
	void *arg;
};

static int dlq_append(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		      uint32_t queue, uint64_t offset, uint32_t attempts,
		      enum cfx_durability durability, cfx_send_cb cb, void *arg);
static void dlq_moved(void *arg, const struct cfx_send_result *res, uint32_t n);

int cfx_broker_pop(struct cfx_broker *br, const struct cfx_pop_req *req,
		   struct cfx_pop_result *res)
{
	struct cfx_topic_info ti;
	struct cfx_group_info gi;
	struct pop_ctx x = { .req = req, .res = res, .now = cfx_clock_wall_ms() };
	uint32_t first;
	int rc;

	pop_result_reset(res);
	if (req->max_msgs == 0 || req->invisible_ms < 0 || req->invisible_ms > UINT32_MAX)
		return CFX_EINVAL;
	rc = cfx_broker_topic_get(br, req->topic, 0, &ti);
	if (!rc)
		rc = cfx_broker_group_get(br, req->group, 1, &gi);
	if (rc)
		return rc;
	x.max_attempts = gi.retry.max_attempts ? gi.retry.max_attempts : 1;
	if (req->tags && req->ntags) {
		x.tag_hashes = cfx_malloc(req->ntags * sizeof *x.tag_hashes);
		for (uint32_t i = 0; i < req->ntags; i++)
			x.tag_hashes[i] = cfx_tag_hash(CFX_VIEW_STR(req->tags[i]));
	}
	first = atomic_fetch_add(&br->rr_pop, 1);
	pthread_mutex_lock(&br->pop_mu);
	if (gi.fifo) {
		for (uint32_t k = 0; k < ti.queues && res->count < req->max_msgs; k++) {
			uint32_t q = (first + k) % ti.queues;
			struct cursor *c = cursor_find(br, req->group, req->topic, q);
			if (!c)
				c = cursor_get(br, req->group, req->topic, q,
					       cfx_store_queue_next_offset(br->st, req->topic, q));
			pop_fifo(br, &x, c);
		}
		goto unlock;
	}
	/* Expired messages first, over all queues; then new ones. */
	for (uint32_t k = 0; k < ti.queues && res->count < req->max_msgs; k++) {
		uint32_t q = (first + k) % ti.queues;
		struct cursor *c = cursor_find(br, req->group, req->topic, q);
		if (c)
			pop_expired(br, &x, c);
	}
	for (uint32_t k = 0; k < ti.queues && res->count < req->max_msgs; k++) {
		uint32_t q = (first + k) % ti.queues;
		struct cursor *c = cursor_find(br, req->group, req->topic, q);
		if (!c) {
			/* A new group starts at the end: messages sent from now on. */
			c = cursor_get(br, req->group, req->topic, q,
				       cfx_store_queue_next_offset(br->st, req->topic, q));
		}
		pop_new(br, &x, c);
	}
unlock:
	pop_unlock(br);
	/* Dead letters, outside the lock: the copy completes through a callback. */
	for (uint32_t i = 0; i < x.nmoves; i++) {
		struct move *m = cfx_malloc(sizeof *m);
		*m = x.moves[i];
		struct dlq_arg *da = cfx_malloc(sizeof *da);
		*da = (struct dlq_arg){ .br = br, .move = m };
		rc = dlq_append(br, req->group, req->topic, m->queue, m->offset, m->attempt,
				CFX_DURABILITY_ASYNC, dlq_moved, da);
		if (rc) {
			struct cfx_send_result r = { .err = rc };
			dlq_moved(da, &r, 1);
		}
	}
	cfx_free(x.moves);
	cfx_free(x.tag_hashes);
	return 0;
}

int cfx_broker_subscribe(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic)
{
	struct cfx_topic_info ti;
	int rc = cfx_broker_topic_get(br, topic, 0, &ti);

	if (rc)
		return rc;
	pthread_mutex_lock(&br->pop_mu);
	for (uint32_t q = 0; q < ti.queues; q++) {
		if (cursor_find(br, group, topic, q))
			continue;
		cursor_get(br, group, topic, q, cfx_store_queue_next_offset(br->st, topic, q));
	}
	pop_unlock(br);
	return 0;
}

/* ------------------------------------------------------------------------
 * Ack and change
 * ------------------------------------------------------------------------ */

/* Finds the in-flight slot a handle names. @locks pop_mu */
static int handle_slot(struct cfx_broker *br, struct cfx_view g, struct cfx_view t, const char *text,
		       struct handle *h, struct cursor **cp, struct slot **sp)
{
	struct cursor *c;
	struct slot *s;

	if (handle_decode(br, g, t, text, h))
		return CFX_EINVAL;
	c = cursor_find(br, g, t, h->queue);
	if (!c || h->offset < c->committed || h->offset >= c->next)
		return CFX_EINVAL;
	s = slot_of(c, h->offset);
	if (s->state != SLOT_INFLIGHT || s->pop_id != h->pop_id)
		return CFX_EINVAL; /* acknowledged, or superseded by a newer handle */
	/* The slot decides expiry (a renewal moves it; the handle keeps its
	 * original times). Expired: the message may be redelivered already. */
	if (s->visible_at <= cfx_clock_wall_ms())
		return CFX_EINVAL;
	*cp = c;
	*sp = s;
	return 0;
}

/* Acknowledges one handle; *wake is set when a FIFO group has messages waiting. @locks pop_mu */
static int ack_locked(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		      const char *handle, int *wake)
{
	struct handle h;
	struct cursor *c;
	struct slot *s;
	int rc;

	rc = handle_slot(br, group, topic, handle, &h, &c, &s);
	if (rc)
		return rc;
	struct rec r = { .type = REC_ACK, .cursor = c->id, .offset = h.offset, .pop_id = h.pop_id };
	rc = journal(br, &r);
	if (rc)
		return rc;
	s->state = SLOT_DONE;
	c->inflight--;
	*wake |= c->waiting > 0; /* FIFO: the next of its group may go */
	advance_committed(c);
	return 0;
}

int cfx_broker_ack(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		   const char *handle)
{
	int rc, frc, wake = 0;

	pthread_mutex_lock(&br->pop_mu);
	rc = ack_locked(br, group, topic, handle, &wake);
	frc = pop_unlock(br);
	if (wake)
		broker__wake(br, group, topic);
	return rc ? rc : frc;
}

void cfx_broker_ack_many(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			 const char *const *handles, uint32_t n, int *err)
{
	int wake = 0, frc;

	pthread_mutex_lock(&br->pop_mu);
	for (uint32_t i = 0; i < n; i++)
		err[i] = ack_locked(br, group, topic, handles[i], &wake);
	frc = pop_unlock(br);
	for (uint32_t i = 0; i < n && frc; i++)
		if (!err[i])
			err[i] = frc;
	if (wake)
		broker__wake(br, group, topic);
}

int cfx_broker_change_invisible(struct cfx_broker *br, struct cfx_view group,
				struct cfx_view topic, const char *handle, int64_t invisible_ms,
				char *new_handle)
{
	int64_t now = cfx_clock_wall_ms();
	struct handle h;
	struct cursor *c;
	struct slot *s;
	int rc, wake = 0;

	if (invisible_ms < 0 || invisible_ms > UINT32_MAX)
		return CFX_ERANGE;
	pthread_mutex_lock(&br->pop_mu);
	rc = handle_slot(br, group, topic, handle, &h, &c, &s);
	if (!rc) {
		struct rec r = { .type = REC_CHANGE, .cursor = c->id, .offset = h.offset,
				 .pop_id = c->next_pop_id, .visible_at = now + invisible_ms };
		rc = journal(br, &r);
		if (!rc) {
			s->pop_id = c->next_pop_id++;
			s->visible_at = now + invisible_ms;
			if (s->visible_at < c->earliest_visible)
				c->earliest_visible = s->visible_at;
			h.pop_id = s->pop_id;
			h.pop_ms = now;
			h.invisible_ms = (uint32_t)invisible_ms;
			handle_encode(br, group, topic, &h, new_handle);
			wake = invisible_ms == 0;
		}
	}
	pop_unlock(br);
	if (wake)
		broker__wake(br, group, topic); /* a negative ack: visible now */
	return rc;
}

int cfx_broker_renew(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		     const char *handle, int64_t invisible_ms)
{
	int64_t now = cfx_clock_wall_ms();
	struct handle h;
	struct cursor *c;
	struct slot *s;
	int rc, frc;

	if (invisible_ms <= 0 || invisible_ms > UINT32_MAX)
		return CFX_ERANGE;
	pthread_mutex_lock(&br->pop_mu);
	rc = handle_slot(br, group, topic, handle, &h, &c, &s);
	if (!rc && s->visible_at < now + invisible_ms) {
		struct rec r = { .type = REC_CHANGE, .cursor = c->id, .offset = h.offset,
				 .pop_id = s->pop_id, .visible_at = now + invisible_ms };
		rc = journal(br, &r);
		if (!rc)
			s->visible_at = now + invisible_ms;
	}
	frc = pop_unlock(br);
	return rc ? rc : frc;
}

/* ------------------------------------------------------------------------
 * Group positions
 * ------------------------------------------------------------------------ */

int cfx_broker_group_queue_state(struct cfx_broker *br, struct cfx_view group,
				 struct cfx_view topic, uint32_t queue,
				 struct cfx_group_queue_state *st)
{
	uint64_t start;
	struct cursor *c;

	memset(st, 0, sizeof *st);
	cfx_store_queue_bounds(br->st, topic, queue, &start, &st->end);
	pthread_mutex_lock(&br->pop_mu);
	c = cursor_find(br, group, topic, queue);
	if (c) {
		st->committed = c->committed;
		st->next = c->next;
		st->inflight = c->inflight;
	}
	pop_unlock(br);
	return c ? 0 : CFX_ENOENT;
}

void cfx_broker_group_positions(struct cfx_broker *br, struct cfx_view group,
				void (*fn)(void *arg, const char *group, const char *topic,
					   uint32_t queue, const struct cfx_group_queue_state *st),
				void *arg)
{
	pthread_mutex_lock(&br->pop_mu);
	for (uint32_t i = 0; i < br->ccap; i++)
		for (struct cursor *c = br->ctab[i]; c; c = c->hnext) {
			struct cfx_group_queue_state st = { .committed = c->committed,
							    .next = c->next,
							    .inflight = c->inflight };
			uint64_t start;

			if (group.p && (c->glen != group.len || memcmp(c->group, group.p, group.len)))
				continue;
			cfx_store_queue_bounds(br->st,
					       (struct cfx_view){ (uint8_t *)c->topic, c->tlen },
					       c->queue, &start, &st.end);
			fn(arg, c->group, c->topic, c->queue, &st);
		}
	pop_unlock(br);
}

int cfx_broker_group_reset(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			   int64_t offset, int64_t ts_ms)
{
	struct cfx_topic_info ti;
	int rc = cfx_broker_topic_get(br, topic, 0, &ti);

	if (rc)
		return rc;
	pthread_mutex_lock(&br->pop_mu);
	for (uint32_t q = 0; q < ti.queues; q++) {
		uint64_t start, end, to;
		cfx_store_queue_bounds(br->st, topic, q, &start, &end);
		if (ts_ms >= 0)
			cfx_store_offset_for_time(br->st, topic, q, ts_ms, &to);
		else
			to = offset < 0 ? end : (uint64_t)offset;
		to = CFX_MAX(start, CFX_MIN(to, end));
		struct cursor *c = cursor_get(br, group, topic, q, to);
		struct rec r = { .type = REC_RESET, .cursor = c->id, .offset = to };
		journal(br, &r);
		apply(br, &r);
	}
	pop_unlock(br);
	broker__wake(br, group, topic);
	return 0;
}

int cfx_broker_offset_commit(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			    uint32_t queue, uint64_t offset)
{
	struct cfx_topic_info ti;
	uint64_t start, end;
	int rc = cfx_broker_topic_get(br, topic, 0, &ti);

	if (rc)
		return rc;
	if (queue >= ti.queues)
		return CFX_EQUEUE;
	cfx_store_queue_bounds(br->st, topic, queue, &start, &end);
	if (offset > end)
		offset = end;
	pthread_mutex_lock(&br->pop_mu);
	struct cursor *c = cursor_get(br, group, topic, queue, offset);
	if (c->committed != offset || c->next != offset || c->inflight) {
		struct rec r = { .type = REC_RESET, .cursor = c->id, .offset = offset };
		journal(br, &r);
		apply(br, &r);
	}
	rc = pop_unlock(br);
	return rc;
}

/* ------------------------------------------------------------------------
 * Watches (long polling)
 * ------------------------------------------------------------------------ */

uint64_t cfx_broker_watch(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			  void (*fn)(void *arg), void *arg)
{
	struct watch *w = cfx_calloc(1, sizeof *w);

	w->group = cfx_strndup((const char *)group.p, group.len);
	w->topic = cfx_strndup((const char *)topic.p, topic.len);
	w->fn = fn;
	w->arg = arg;
	uint64_t id;

	pthread_mutex_lock(&br->watch_mu);
	id = w->id = ++br->next_watch_id;
	w->next = br->watches;
	br->watches = w;
	pthread_mutex_unlock(&br->watch_mu);
	return id; /* not w->id: the watch may have fired and gone already */
}

int cfx_broker_unwatch(struct cfx_broker *br, uint64_t id)
{
	struct watch **pp, *w = NULL;

	pthread_mutex_lock(&br->watch_mu);
	for (pp = &br->watches; *pp; pp = &(*pp)->next)
		if ((*pp)->id == id) {
			w = *pp;
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&br->watch_mu);
	if (!w)
		return 0;
	cfx_free(w->group);
	cfx_free(w->topic);
	cfx_free(w);
	return 1;
}

void broker__wake(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic)
{
	struct watch *fire = NULL, **pp;

	pthread_mutex_lock(&br->watch_mu);
	for (pp = &br->watches; *pp;) {
		struct watch *w = *pp;
		if (cfx_view_eq_str(topic, w->topic) && (!group.p || cfx_view_eq_str(group, w->group))) {
			*pp = w->next;
			w->next = fire;
			fire = w;
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&br->watch_mu);
	while (fire) {
		struct watch *w = fire;
		fire = w->next;
		w->fn(w->arg);
		cfx_free(w->group);
		cfx_free(w->topic);
		cfx_free(w);
	}
}

/* ------------------------------------------------------------------------
 * The timer tick
 * ------------------------------------------------------------------------ */

struct due {
	char *group, *topic;
};

void pop__tick(struct cfx_broker *br, int64_t now_ms)
{
	struct due *due = NULL;
	uint32_t ndue = 0, capdue = 0;
	int64_t now = cfx_clock_wall_ms();

	CFX_UNUSED(now_ms);
	/*
	 * Sync the journal without holding pop_mu: an fdatasync can take
	 * milliseconds, and every receive and ack would wait behind it. Records
	 * appended meanwhile mark the journal dirty again for the next tick.
	 * The descriptor stays open until the timer thread has been joined.
	 */
	pthread_mutex_lock(&br->pop_mu);
	int jfd = br->jdirty ? br->jfd : -1;
	br->jdirty = 0;
	pop_unlock(br);
	if (jfd >= 0 && br->fops->fdatasync(jfd) != 0) {
		cfx_log_ratelimited(CFX_LOG_ERROR, "broker: fdatasync of the POP journal failed: %s",
				    strerror(errno));
		pthread_mutex_lock(&br->pop_mu);
		br->jdirty = 1;
		pop_unlock(br);
	}
	pthread_mutex_lock(&br->pop_mu);
	if (br->jbytes > br->o.pop_journal_bytes_max)
		snapshot_write(br);
	/* In-flight messages that became visible: wake their long polls. */
	for (uint32_t i = 0; i < br->ccap; i++)
		for (struct cursor *c = br->ctab[i]; c; c = c->hnext) {
			if (!c->inflight || c->earliest_visible > now)
				continue;
			if (ndue == capdue) {
				capdue = capdue ? capdue * 2 : 16;
				due = cfx_realloc(due, capdue * sizeof *due);
			}
			due[ndue].group = cfx_strdup(c->group);
			due[ndue].topic = cfx_strdup(c->topic);
			ndue++;
		}
	pop_unlock(br);
	for (uint32_t i = 0; i < ndue; i++) {
		broker__wake(br, CFX_VIEW_STR(due[i].group), CFX_VIEW_STR(due[i].topic));
		cfx_free(due[i].group);
		cfx_free(due[i].topic);
	}
	cfx_free(due);
}

/* ------------------------------------------------------------------------
 * Dead letters
 * ------------------------------------------------------------------------ */

/*
 * Appends a copy of the message at (topic, queue, offset) to the group's
 * dead-letter queue `%DLQ%<group>` (created on demand, one queue): body,
 * tag, keys, id and properties, plus DLQ_ORIGIN_TOPIC,
 * DLQ_ORIGIN_MESSAGE_ID and DLQ_ATTEMPTS. Returns 0 (cb is called) or an
 * error (it is not).
 */
static int dlq_append(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		      uint32_t queue, uint64_t offset, uint32_t attempts,
		      enum cfx_durability durability, cfx_send_cb cb, void *arg)
{
	struct cfx_read_result rd;
	char dlq[160], att[16];
	int rc;

	if (snprintf(dlq, sizeof dlq, "%%DLQ%%%.*s", (int)group.len, group.p) >= 128)
		return CFX_ETOPIC;
	if (cfx_broker_topic_get(br, CFX_VIEW_STR(dlq), 0, &(struct cfx_topic_info){ 0 }) ==
	    CFX_ENOENT) {
		rc = cfx_broker_topic_create(br, dlq, CFX_TOPIC_MIXED, 1);
		if (rc && rc != CFX_EEXIST)
			return rc;
	}
	snprintf(att, sizeof att, "%u", attempts);
	cfx_read_result_init(&rd);
	rc = cfx_store_read(br->st, topic, queue, offset, 1, 1, &rd);
	if (!rc && (rd.count == 0 || rd.msgs[0].offset != offset))
		rc = CFX_ENOENT;
	if (!rc) {
		const struct cfx_msg_view *v = &rd.msgs[0];
		struct cfx_prop *props = cfx_malloc(CFX_MSG_PROPS_MAX * sizeof *props);
		uint32_t np = 0;
		size_t cur = 0;
		struct cfx_prop p;

		while (np < CFX_MSG_PROPS_MAX - 6 && cfx_msg_view_next_prop(v, &cur, &p))
			if (!cfx_view_eq_str(p.name, "DLQ_ORIGIN_TOPIC") &&
			    !cfx_view_eq_str(p.name, "DLQ_ORIGIN_MESSAGE_ID") &&
			    !cfx_view_eq_str(p.name, "DLQ_ATTEMPTS"))
				props[np++] = p;
		props[np++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ORIGIN_TOPIC"), topic };
		props[np++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ORIGIN_MESSAGE_ID"), v->msg_id };
		props[np++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ATTEMPTS"), CFX_VIEW_STR(att) };
		struct cfx_send_msg m = broker__copy(v, props, np, CFX_MSG_NORMAL);
		rc = cfx_broker_send(br, CFX_VIEW_STR(dlq), &m, 1, durability, cb, arg);
		cfx_free(props);
	}
	cfx_read_result_free(&rd);
	return rc;
}

static void dlq_arg_free(struct dlq_arg *da)
{
	cfx_free(da->move);
	cfx_free(da->group);
	cfx_free(da->topic);
	cfx_free(da);
}

/* A dead-letter move decided by a pop completed: the slot is done, or, if
 * the copy failed, visible again a second later to be tried again. */
static void dlq_moved(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct dlq_arg *da = arg;
	struct cfx_broker *br = da->br;
	struct move *m = da->move;
	int64_t now = cfx_clock_wall_ms();
	char *wg = NULL, *wt = NULL;
	struct cursor *c;

	CFX_UNUSED(n);
	pthread_mutex_lock(&br->pop_mu);
	c = cursor_by_id(br, m->cursor);
	if (c && m->offset >= c->committed && m->offset < c->next) {
		struct slot *s = slot_of(c, m->offset);
		if (s->state == SLOT_MOVING && s->pop_id == m->pop_id) {
			struct rec r = { .type = REC_ACK, .cursor = c->id, .offset = m->offset,
					 .pop_id = m->pop_id };
			if (res[0].err || journal(br, &r)) {
				cfx_log_ratelimited(CFX_LOG_WARN,
						    "broker: %s/%u offset %" PRIu64 ": cannot move to "
						    "the dead-letter queue of %s: %s",
						    c->topic, c->queue, m->offset, c->group,
						    cfx_strerror(res[0].err ? res[0].err : CFX_EIO));
				s->state = SLOT_INFLIGHT;
				s->visible_at = now + 1000;
				if (s->visible_at < c->earliest_visible)
					c->earliest_visible = s->visible_at;
			} else {
				s->state = SLOT_DONE;
				c->inflight--;
				advance_committed(c);
				if (c->waiting) {
					wg = cfx_strdup(c->group);
					wt = cfx_strdup(c->topic);
				}
			}
		}
	}
	pop_unlock(br);
	if (wg) /* FIFO: the next message of its group may go */
		broker__wake(br, CFX_VIEW_STR(wg), CFX_VIEW_STR(wt));
	cfx_free(wg);
	cfx_free(wt);
	dlq_arg_free(da);
}

/* ForwardMessageToDeadLetterQueue: stored in the DLQ, the original is acknowledged. */
static void dlq_forwarded(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct dlq_arg *da = arg;
	struct cfx_send_result r = res[0];

	CFX_UNUSED(n);
	if (!r.err) {
		int rc = cfx_broker_ack(da->br, CFX_VIEW_STR(da->group), CFX_VIEW_STR(da->topic),
					da->handle);
		if (rc)
			r.err = rc;
	}
	da->cb(da->arg, &r, 1);
	dlq_arg_free(da);
}

int cfx_broker_forward_dlq(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			   const char *handle, enum cfx_durability durability, cfx_send_cb cb,
			   void *arg)
{
	struct dlq_arg *da;
	struct handle h;
	struct cursor *c;
	struct slot *s;
	int rc;

	pthread_mutex_lock(&br->pop_mu);
	rc = handle_slot(br, group, topic, handle, &h, &c, &s);
	pop_unlock(br);
	if (rc)
		return rc;
	da = cfx_calloc(1, sizeof *da);
	da->br = br;
	da->group = cfx_strndup((const char *)group.p, group.len);
	da->topic = cfx_strndup((const char *)topic.p, topic.len);
	snprintf(da->handle, sizeof da->handle, "%s", handle);
	da->cb = cb;
	da->arg = arg;
	rc = dlq_append(br, group, topic, h.queue, h.offset, h.attempt, durability, dlq_forwarded,
			da);
	if (rc)
		dlq_arg_free(da);
	return rc;
}
