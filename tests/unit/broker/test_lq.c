/*
 * Unit tests for src/broker/lq.c: light queues (names, ids, entry rings,
 * out-of-order acknowledgement, overflow, retained-style set, prefix
 * iteration, positions), their journal (reopen, crash images, torn and
 * damaged tails, snapshots and compaction, write failures, concurrent
 * writers) and their memory (idle-queue cost, memory back after drops).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "base/fileops.h"
#include "broker/lq.h"
#include "../store/store_test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define LQ_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LQ_TEST_SANITIZED 1
#endif
#endif

struct fx {
	char *dir;
	struct cfx_lq_opts o;
	struct cfx_lqs *lqs;
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);

	cfx_log_set_level(CFX_LOG_ERROR);
	f->dir = tu_tmpdir();
	cfx_lq_opts_default(&f->o);
	f->o.dir = f->dir;
	f->o.flush_interval_ms = -1; /* no thread: the tests sync and compact themselves */
	f->o.entries_max_per_queue = 64;
	f->o.queues_max = 1000000;
	*state = f;
	return cfx_lq_open(&f->o, &f->lqs);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	cfx_fault_clear_all();
	if (f->lqs)
		cfx_lq_close(f->lqs);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->lqs = NULL;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
}

static uint32_t qid(struct cfx_lqs *lqs, const char *name)
{
	uint32_t id = 0;
	assert_int_equal(cfx_lq_get(lqs, CFX_VIEW_STR(name), 1, &id), 0);
	assert_true(id > 0);
	return id;
}

static struct cfx_lq_entry ent(uint64_t off)
{
	return (struct cfx_lq_entry){ .topic = (uint16_t)(off % 7), .flags = (uint16_t)(off % 3),
				      .queue = (uint32_t)(off % 5), .offset = off };
}

static uint64_t push(struct cfx_lqs *lqs, uint32_t id, uint64_t off)
{
	struct cfx_lq_entry e = ent(off);
	uint64_t seq = 0;
	assert_int_equal(cfx_lq_push(lqs, id, &e, &seq), 0);
	return seq;
}

/* ------------------------------------------------------------------------
 * A digest of the whole visible state, to compare two engines
 * ------------------------------------------------------------------------ */

struct digest {
	struct cfx_lqs *lqs;
	uint32_t crc;
	uint64_t queues, entries;
};

static void digest_one(void *arg, struct cfx_view name, uint32_t id)
{
	struct digest *d = arg;
	uint8_t idb[4];

	cfx_store_le32(idb, id);
	d->crc = cfx_crc32c(d->crc, name.p, name.len);
	d->crc = cfx_crc32c(d->crc, idb, 4);
	d->queues++;
}

/* Queues (names, ids), bounds, entries with their sequences, and the given positions. */
static uint32_t digest(struct cfx_lqs *lqs)
{
	struct digest d = { .lqs = lqs };
	struct cfx_lq_entry out[64];
	uint64_t seqs[64];

	cfx_lq_foreach(lqs, (struct cfx_view){ NULL, 0 }, digest_one, &d);
	/* Ids are dense enough here to walk them all. */
	for (uint32_t id = 1; id < 5000; id++) {
		uint64_t head, tail, from;
		uint32_t n;
		if (cfx_lq_bounds(lqs, id, &head, &tail))
			continue;
		d.crc = cfx_crc32c(d.crc, &head, sizeof head);
		d.crc = cfx_crc32c(d.crc, &tail, sizeof tail);
		for (from = 0;; from = seqs[n - 1] + 1) {
			assert_int_equal(cfx_lq_read(lqs, id, from, out, seqs, 64, &n), 0);
			if (!n)
				break;
			d.crc = cfx_crc32c(d.crc, out, n * sizeof out[0]);
			d.crc = cfx_crc32c(d.crc, seqs, n * sizeof seqs[0]);
			d.entries += n;
		}
	}
	for (uint16_t t = 0; t < 4; t++)
		for (uint32_t q = 0; q < 8; q++) {
			uint64_t off = UINT64_MAX;
			int rc = cfx_lq_get_pos(lqs, t, q, &off);
			d.crc = cfx_crc32c(d.crc, &rc, sizeof rc);
			d.crc = cfx_crc32c(d.crc, &off, sizeof off);
		}
	struct cfx_lq_stats st;
	cfx_lq_stats(lqs, &st);
	assert_int_equal(st.queues, d.queues);
	assert_int_equal(st.entries, d.entries);
	d.crc = cfx_crc32c(d.crc, &d.queues, sizeof d.queues);
	return d.crc;
}

/* A state with some of everything: drops, holes, overflow, set, positions. */
static void make_state(struct cfx_lqs *lqs, int round)
{
	char name[32];

	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "s/%d", i);
		uint32_t id = qid(lqs, name);
		for (int k = 0; k < i % 9; k++)
			push(lqs, id, (uint64_t)(round * 100000 + i * 10 + k));
		struct cfx_lq_entry e[2];
		uint64_t seqs[2];
		uint32_t n;
		assert_int_equal(cfx_lq_read(lqs, id, 0, e, seqs, 2, &n), 0);
		if (i % 4 == 1 && n == 2) /* ack the second entry: a hole */
			assert_int_equal(cfx_lq_ack(lqs, id, seqs[1]), 0);
		else if (i % 5 == 2 && n) /* ack the head */
			assert_int_equal(cfx_lq_ack(lqs, id, seqs[0]), 0);
		if (i % 11 == 3)
			assert_int_equal(cfx_lq_drop(lqs, id), 0);
	}
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof name, "r/a/%d", i);
		struct cfx_lq_entry e = ent((uint64_t)(i + round));
		assert_int_equal(cfx_lq_set(lqs, qid(lqs, name), i % 6 ? &e : NULL), 0);
	}
	uint32_t big = qid(lqs, "overflow");
	for (int k = 0; k < 100; k++)
		push(lqs, big, (uint64_t)k);
	assert_int_equal(cfx_lq_set_pos(lqs, 1, 2, 1000 + (uint64_t)round), 0);
	assert_int_equal(cfx_lq_set_pos(lqs, 3, 7, 77), 0);
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

static void test_create_find_drop(void **state)
{
	struct fx *f = *state;
	uint32_t a, b, id;

	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR("a"), 0, &id), CFX_ENOENT);
	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR(""), 1, &id), CFX_EINVAL);
	a = qid(f->lqs, "a");
	b = qid(f->lqs, "b");
	assert_int_not_equal(a, b);
	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR("a"), 0, &id), 0);
	assert_int_equal(id, a);
	assert_int_equal(qid(f->lqs, "b"), b);

	/* Binary names, and the longest one. */
	uint8_t bin[3] = { 0, 0xff, 0 };
	uint32_t c;
	assert_int_equal(cfx_lq_get(f->lqs, (struct cfx_view){ bin, 3 }, 1, &c), 0);
	char *longname = cfx_malloc(CFX_LQ_NAME_BYTES_MAX + 1);
	memset(longname, 'x', CFX_LQ_NAME_BYTES_MAX + 1);
	assert_int_equal(cfx_lq_get(f->lqs, (struct cfx_view){ (uint8_t *)longname,
							       CFX_LQ_NAME_BYTES_MAX + 1 },
				    1, &id),
			 CFX_EINVAL);
	uint32_t l;
	assert_int_equal(cfx_lq_get(f->lqs, (struct cfx_view){ (uint8_t *)longname,
							       CFX_LQ_NAME_BYTES_MAX },
				    1, &l),
			 0);

	assert_int_equal(cfx_lq_drop(f->lqs, a), 0);
	assert_int_equal(cfx_lq_drop(f->lqs, a), CFX_ENOENT);
	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR("a"), 0, &id), CFX_ENOENT);
	assert_int_equal(cfx_lq_push(f->lqs, a, &(struct cfx_lq_entry){ 0 }, NULL), CFX_ENOENT);
	assert_int_equal(cfx_lq_drop(f->lqs, 0), CFX_ENOENT);
	assert_int_equal(cfx_lq_drop(f->lqs, 999999), CFX_ENOENT);
	/* The id comes back for the next queue. */
	assert_int_equal(qid(f->lqs, "c"), a);

	reopen(f);
	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR("c"), 0, &id), 0);
	assert_int_equal(id, a);
	assert_int_equal(cfx_lq_get(f->lqs, (struct cfx_view){ bin, 3 }, 0, &id), 0);
	assert_int_equal(id, c);
	assert_int_equal(cfx_lq_get(f->lqs, (struct cfx_view){ (uint8_t *)longname,
							       CFX_LQ_NAME_BYTES_MAX },
				    0, &id),
			 0);
	assert_int_equal(id, l);
	cfx_free(longname);

	/* queues_max */
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->o.queues_max = 5;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	qid(f->lqs, "d");
	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR("e"), 1, &id), CFX_E2BIG);
	assert_int_equal(cfx_lq_drop(f->lqs, b), 0);
	qid(f->lqs, "e");
}

static void test_push_read_ack_out_of_order(void **state)
{
	struct fx *f = *state;
	struct cfx_lq_entry out[16];
	uint64_t seqs[16], head, tail;
	uint32_t id = qid(f->lqs, "q"), n;

	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 1);
	assert_int_equal(tail, 1);
	for (uint64_t i = 0; i < 6; i++)
		assert_int_equal(push(f->lqs, id, 100 + i), 1 + i);

	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 16, &n), 0);
	assert_int_equal(n, 6);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(seqs[i], 1 + i);
		struct cfx_lq_entry want = ent(100 + i);
		assert_memory_equal(&out[i], &want, sizeof want);
	}
	/* Acks out of order: 3 and 2 leave the head at 1; reads skip them. */
	assert_int_equal(cfx_lq_ack(f->lqs, id, 3), 0);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 2), 0);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 3), CFX_ENOENT);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 7), CFX_ENOENT);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 0), CFX_ENOENT);
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 1);
	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 16, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(seqs[0], 1);
	assert_int_equal(seqs[1], 4);
	/* Reading from the middle, and a short max. */
	assert_int_equal(cfx_lq_read(f->lqs, id, 2, out, seqs, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(seqs[0], 4);
	assert_int_equal(seqs[1], 5);
	assert_int_equal(out[0].offset, 103);

	/* Acking the head moves it over 2 and 3, to 4. */
	assert_int_equal(cfx_lq_ack(f->lqs, id, 1), 0);
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 4);
	assert_int_equal(tail, 7);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 1), CFX_ENOENT);

	/* Acking everything empties the queue; sequences go on. */
	assert_int_equal(cfx_lq_ack(f->lqs, id, 6), 0);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 4), 0);
	assert_int_equal(cfx_lq_ack(f->lqs, id, 5), 0);
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 7);
	assert_int_equal(tail, 7);
	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 16, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(push(f->lqs, id, 1), 7);

	struct cfx_lq_stats st;
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.queues, 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(cfx_lq_read(f->lqs, 4242, 0, out, seqs, 16, &n), CFX_ENOENT);
}

/* A long queue with a sparse pattern of acks: the ring grows, shrinks, wraps. */
static void test_ring_model(void **state)
{
	struct fx *f = *state;
	uint32_t id = qid(f->lqs, "model");
	static uint8_t acked[20000];
	uint64_t head = 1, tail = 1, rnd = 12345, live = 0;

	for (int step = 0; step < 20000; step++) {
		rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
		if (tail - head < 64 && (rnd >> 33) % 3 != 0 && tail < 20000) {
			assert_int_equal(push(f->lqs, id, tail * 3), tail);
			acked[tail++] = 0;
			live++;
		} else if (tail > head) {
			uint64_t s = head + (rnd >> 40) % (tail - head);
			int rc = cfx_lq_ack(f->lqs, id, s);
			assert_int_equal(rc, acked[s] ? CFX_ENOENT : 0);
			if (!acked[s])
				live--;
			acked[s] = 1;
			while (head < tail && acked[head])
				head++;
		}
		if (step % 997 == 0) {
			uint64_t h, t;
			struct cfx_lq_entry out[64];
			uint64_t seqs[64];
			uint32_t n;
			assert_int_equal(cfx_lq_bounds(f->lqs, id, &h, &t), 0);
			assert_int_equal(h, head);
			assert_int_equal(t, tail);
			assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 64, &n), 0);
			assert_int_equal(n, live);
			for (uint32_t i = 0; i < n; i++) {
				assert_false(acked[seqs[i]]);
				assert_int_equal(out[i].offset, seqs[i] * 3);
			}
		}
	}
	uint32_t d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);
}

static void test_overflow_drops_oldest(void **state)
{
	struct fx *f = *state;
	struct cfx_lq_entry out[16];
	uint64_t seqs[16], head, tail;
	struct cfx_lq_stats st;
	uint32_t n, id;

	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->o.entries_max_per_queue = 4;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	id = qid(f->lqs, "ovf");
	for (uint64_t i = 1; i <= 6; i++)
		push(f->lqs, id, i);
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.dropped, 2);
	assert_int_equal(st.entries, 4);
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 3);
	assert_int_equal(tail, 7);
	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 16, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(out[0].offset, 3);

	/* With a hole behind the head: dropping the head also skips the hole. */
	assert_int_equal(cfx_lq_ack(f->lqs, id, 4), 0);
	push(f->lqs, id, 7); /* drops 3, head moves over 4 to 5 */
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 5);
	assert_int_equal(tail, 8);
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.dropped, 3);
	assert_int_equal(st.entries, 3);
	uint32_t d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);
}

static void test_set_retained(void **state)
{
	struct fx *f = *state;
	struct cfx_lq_entry out[4], e1 = ent(11), e2 = ent(22);
	uint64_t seqs[4], head, tail;
	uint32_t n, id = qid(f->lqs, "r/sensors/1");

	assert_int_equal(cfx_lq_set(f->lqs, id, &e1), 0);
	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(&out[0], &e1, sizeof e1);
	push(f->lqs, id, 5);
	assert_int_equal(cfx_lq_set(f->lqs, id, &e2), 0);
	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(&out[0], &e2, sizeof e2);
	assert_int_equal(seqs[0], 3);
	reopen(f);
	assert_int_equal(cfx_lq_read(f->lqs, id, 0, out, seqs, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(&out[0], &e2, sizeof e2);
	assert_int_equal(cfx_lq_set(f->lqs, id, NULL), 0);
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, tail);
	struct cfx_lq_stats st;
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.dropped, 0);
	reopen(f);
	assert_int_equal(cfx_lq_bounds(f->lqs, id, &head, &tail), 0);
	assert_int_equal(head, 4);
	assert_int_equal(tail, 4);
}

struct seen {
	char names[16][32];
	uint32_t ids[16];
	int n;
};

static void collect(void *arg, struct cfx_view name, uint32_t id)
{
	struct seen *s = arg;

	assert_true(s->n < 16);
	snprintf(s->names[s->n], sizeof s->names[0], "%.*s", (int)name.len, name.p);
	s->ids[s->n++] = id;
}

static void test_foreach_prefix(void **state)
{
	struct fx *f = *state;
	struct seen s = { .n = 0 };

	uint32_t a = qid(f->lqs, "r/a/b");
	qid(f->lqs, "s/client1");
	uint32_t c = qid(f->lqs, "r/a");
	qid(f->lqs, "r/");
	qid(f->lqs, "r");
	uint32_t d = qid(f->lqs, "r/x");
	cfx_lq_drop(f->lqs, d);

	cfx_lq_foreach(f->lqs, CFX_VIEW_STR("r/a"), collect, &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.names[0], "r/a/b");
	assert_int_equal(s.ids[0], a);
	assert_string_equal(s.names[1], "r/a");
	assert_int_equal(s.ids[1], c);
	s.n = 0;
	cfx_lq_foreach(f->lqs, CFX_VIEW_STR("r/"), collect, &s);
	assert_int_equal(s.n, 3);
	s.n = 0;
	cfx_lq_foreach(f->lqs, (struct cfx_view){ NULL, 0 }, collect, &s);
	assert_int_equal(s.n, 5);
	s.n = 0;
	cfx_lq_foreach(f->lqs, CFX_VIEW_STR("zzz"), collect, &s);
	assert_int_equal(s.n, 0);
}

static void test_positions(void **state)
{
	struct fx *f = *state;
	uint64_t off;

	assert_int_equal(cfx_lq_get_pos(f->lqs, 0, 0, &off), CFX_ENOENT);
	for (uint32_t q = 0; q < 100; q++)
		assert_int_equal(cfx_lq_set_pos(f->lqs, (uint16_t)(q % 3), q, q * 10), 0);
	assert_int_equal(cfx_lq_set_pos(f->lqs, 65535, UINT32_MAX, UINT64_MAX), 0);
	assert_int_equal(cfx_lq_set_pos(f->lqs, 1, 1, 5), 0);
	reopen(f);
	for (uint32_t q = 0; q < 100; q++) {
		assert_int_equal(cfx_lq_get_pos(f->lqs, (uint16_t)(q % 3), q, &off), 0);
		assert_int_equal(off, q == 1 ? 5 : q * 10);
		assert_int_equal(cfx_lq_get_pos(f->lqs, (uint16_t)(q % 3 + 3), q, &off),
				 CFX_ENOENT);
	}
	assert_int_equal(cfx_lq_get_pos(f->lqs, 65535, UINT32_MAX, &off), 0);
	assert_int_equal(off, UINT64_MAX);
	assert_int_equal(cfx_lq_compact(f->lqs, 1), 0);
	reopen(f);
	assert_int_equal(cfx_lq_get_pos(f->lqs, 2, 2, &off), 0);
	assert_int_equal(off, 20);
}

/* ------------------------------------------------------------------------
 * Durability
 * ------------------------------------------------------------------------ */

static void test_reopen_restores_exactly(void **state)
{
	struct fx *f = *state;

	make_state(f->lqs, 1);
	uint32_t d = digest(f->lqs);
	reopen(f); /* from the journal */
	assert_int_equal(digest(f->lqs), d);
	struct cfx_lq_stats st;
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.replay_ignored, 0);

	assert_int_equal(cfx_lq_compact(f->lqs, 1), 0);
	reopen(f); /* from the snapshot */
	assert_int_equal(digest(f->lqs), d);

	make_state(f->lqs, 2);
	d = digest(f->lqs);
	reopen(f); /* snapshot + journal */
	assert_int_equal(digest(f->lqs), d);
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.replay_ignored, 0);
}

/* Opens a copy of the live directory (what a kill -9 leaves) and compares. */
static void check_crash_image(struct fx *f, uint32_t want)
{
	char *imgdir = tu_tmpdir(), img[PATH_MAX];
	struct cfx_lq_opts o = f->o;
	struct cfx_lqs *l2;

	snprintf(img, sizeof img, "%s/image", imgdir);
	assert_int_equal(tu_copy_tree(f->dir, img), 0);
	o.dir = img;
	assert_int_equal(cfx_lq_open(&o, &l2), 0);
	assert_int_equal(digest(l2), want);
	assert_int_equal(cfx_lq_close(l2), 0);
	tu_rmdir(imgdir);
}

static void test_crash_images(void **state)
{
	struct fx *f = *state;

	make_state(f->lqs, 1);
	check_crash_image(f, digest(f->lqs));
	assert_int_equal(cfx_lq_compact(f->lqs, 1), 0);
	check_crash_image(f, digest(f->lqs));
	make_state(f->lqs, 2);
	uint32_t id = qid(f->lqs, "late");
	push(f->lqs, id, 1);
	check_crash_image(f, digest(f->lqs));

	/* A crash between the snapshot's rename and the journal's: the old
	 * journal (whose epoch the snapshot covers) must be skipped. */
	char jpath[PATH_MAX];
	snprintf(jpath, sizeof jpath, "%s/journal", f->dir);
	char *imgdir = tu_tmpdir(), cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof cmd, "cp %s %s/journal.old", jpath, imgdir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(cfx_lq_compact(f->lqs, 1), 0);
	uint32_t d = digest(f->lqs);
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->lqs = NULL;
	snprintf(cmd, sizeof cmd, "cp %s/journal.old %s", imgdir, jpath);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	assert_int_equal(digest(f->lqs), d);
	tu_rmdir(imgdir);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_torn_and_damaged(void **state)
{
	struct fx *f = *state;
	char jpath[PATH_MAX], dpath[PATH_MAX], spath[PATH_MAX];

	snprintf(jpath, sizeof jpath, "%s/journal", f->dir);
	snprintf(dpath, sizeof dpath, "%s/journal.damaged", f->dir);
	snprintf(spath, sizeof spath, "%s/snapshot", f->dir);
	make_state(f->lqs, 1);
	uint32_t d = digest(f->lqs);
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->lqs = NULL;

	/* A torn record at the end: the first 13 bytes of a PUSH. */
	off_t good = file_size(jpath);
	uint8_t torn[13] = { 21, 0, 0, 0, 1, 2, 3, 4, 4, 1, 0, 0, 0 };
	assert_int_equal(tu_pwrite(jpath, torn, sizeof torn, good), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	assert_int_equal(digest(f->lqs), d);
	assert_int_equal(file_size(jpath), good);
	assert_int_equal(file_size(dpath), sizeof torn);
	/* It goes on from there. */
	uint32_t id = qid(f->lqs, "after-torn");
	push(f->lqs, id, 9);
	d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->lqs = NULL;

	/* A flipped byte in the middle: the journal ends before it, the rest is kept aside. */
	off_t size = file_size(jpath);
	uint8_t b;
	assert_int_equal(tu_pread(jpath, &b, 1, size / 2), 0);
	b ^= 0x40;
	assert_int_equal(tu_pwrite(jpath, &b, 1, size / 2), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	assert_true(file_size(jpath) < size / 2 + 1);
	assert_true(file_size(dpath) >= size / 2);
	struct cfx_lq_stats st;
	cfx_lq_stats(f->lqs, &st);
	assert_true(st.queues > 0 && st.queues < 340);
	assert_int_equal(cfx_lq_compact(f->lqs, 1), 0);
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->lqs = NULL;

	/* A damaged snapshot is refused. */
	size = file_size(spath);
	assert_int_equal(tu_pread(spath, &b, 1, size / 2), 0);
	b ^= 0x01;
	assert_int_equal(tu_pwrite(spath, &b, 1, size / 2), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), CFX_ECORRUPT);
	assert_null(f->lqs);
	b ^= 0x01;
	assert_int_equal(tu_pwrite(spath, &b, 1, size / 2), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	assert_int_equal(cfx_lq_compact(f->lqs, 1), 0);
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->lqs = NULL;

	/* A journal that follows a snapshot which is gone is refused. */
	char moved[PATH_MAX];
	snprintf(moved, sizeof moved, "%s/snapshot.moved", f->dir);
	assert_int_equal(rename(spath, moved), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), CFX_ECORRUPT);
	assert_int_equal(rename(moved, spath), 0);

	/* So is a journal without a header, and another format version. */
	uint8_t hdr[18];
	assert_int_equal(tu_pread(jpath, hdr, sizeof hdr, 0), 0);
	uint8_t junk[18] = { 0 };
	assert_int_equal(tu_pwrite(jpath, junk, sizeof junk, 0), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), CFX_ECORRUPT);
	uint8_t v2[18];
	memcpy(v2, hdr, sizeof v2);
	v2[9] = 2;
	cfx_store_le32(v2 + 4, cfx_crc32c(cfx_crc32c(0, v2, 4), v2 + 8, 10));
	assert_int_equal(tu_pwrite(jpath, v2, sizeof v2, 0), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), CFX_EVERSION);
	assert_int_equal(tu_pwrite(jpath, hdr, sizeof hdr, 0), 0);
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
}

static void test_snapshot_compaction_cycle(void **state)
{
	struct fx *f = *state;
	char jpath[PATH_MAX];
	struct cfx_lq_stats st;
	off_t peak = 0;

	snprintf(jpath, sizeof jpath, "%s/journal", f->dir);
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->o.journal_bytes_min = 64 * 1024;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);

	uint32_t ids[50];
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof name, "c/%d", i);
		ids[i] = qid(f->lqs, name);
	}
	/* Many pushes and acks over a small live state. */
	for (int round = 0; round < 400; round++) {
		for (int i = 0; i < 50; i++) {
			uint64_t s = push(f->lqs, ids[i], (uint64_t)round);
			if (s > 3)
				assert_int_equal(cfx_lq_ack(f->lqs, ids[i], s - 3), 0);
		}
		if (round % 20 == 0) {
			assert_int_equal(cfx_lq_compact(f->lqs, 0), 0);
			off_t sz = file_size(jpath);
			if (sz > peak)
				peak = sz;
		}
	}
	cfx_lq_stats(f->lqs, &st);
	assert_true(st.snapshots >= 3);
	/* The journal stays near the threshold instead of growing with traffic
	 * (40,000 pushes and acks are over 1.6 MB of records). */
	assert_true(peak < 4 * 64 * 1024);
	assert_int_equal(st.entries, 50 * 3);
	uint32_t d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);

	/* The background thread compacts too. */
	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->o.flush_interval_ms = 5;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	for (int round = 0; round < 400; round++)
		for (int i = 0; i < 50; i++) {
			uint64_t s = push(f->lqs, ids[i], (uint64_t)round);
			assert_int_equal(cfx_lq_ack(f->lqs, ids[i], s - 3), 0);
		}
	for (int i = 0; i < 200; i++) {
		cfx_lq_stats(f->lqs, &st);
		if (st.snapshots)
			break;
		usleep(10000);
	}
	assert_true(st.snapshots >= 1);
	d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);
}

/* A write that fails makes the journal's error sticky; what was acknowledged survives. */
static void test_write_failure_is_sticky(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->o.fops = &cfx_fileops_fault;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	uint32_t id = qid(f->lqs, "f");
	push(f->lqs, id, 1);
	uint32_t d = digest(f->lqs);

	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .errnum = ENOSPC, .count = 1 });
	struct cfx_lq_entry e = ent(2);
	assert_int_equal(cfx_lq_push(f->lqs, id, &e, NULL), CFX_ENOSPC);
	assert_int_equal(cfx_lq_push(f->lqs, id, &e, NULL), CFX_ENOSPC);
	uint32_t x;
	assert_int_equal(cfx_lq_get(f->lqs, CFX_VIEW_STR("g"), 1, &x), CFX_ENOSPC);
	assert_int_equal(cfx_lq_close(f->lqs), CFX_ENOSPC);
	f->lqs = NULL;
	cfx_fault_clear_all();
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	assert_int_equal(digest(f->lqs), d);

	/* A failed fdatasync too. */
	push(f->lqs, id, 3);
	cfx_fault_set(CFX_FAULT_FDATASYNC, (struct cfx_fault_rule){ .errnum = EIO, .count = 1 });
	assert_int_equal(cfx_lq_sync(f->lqs), CFX_EFSYNC);
	assert_int_equal(cfx_lq_push(f->lqs, id, &e, NULL), CFX_EFSYNC);
	cfx_fault_clear_all();
	d = digest(f->lqs);
	assert_int_equal(cfx_lq_close(f->lqs), CFX_EFSYNC);
	f->lqs = NULL;
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	assert_int_equal(digest(f->lqs), d);

	/* A snapshot that cannot be written leaves everything as it was. */
	cfx_fault_set(CFX_FAULT_OPEN, (struct cfx_fault_rule){ .errnum = ENOSPC, .count = 1 });
	assert_int_equal(cfx_lq_compact(f->lqs, 1), CFX_ENOSPC);
	cfx_fault_clear_all();
	push(f->lqs, id, 4);
	d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);
	f->o.fops = NULL;
}

struct worker {
	struct cfx_lqs *lqs;
	int n;
	uint32_t id;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 3000; i++) {
		struct cfx_lq_entry e = ent((uint64_t)i);
		uint64_t seq;
		if (cfx_lq_push(w->lqs, w->id, &e, &seq) != 0)
			abort();
		if (i % 2 && cfx_lq_ack(w->lqs, w->id, seq) != 0)
			abort();
	}
	return NULL;
}

/* Writers in parallel share writes (group commit); all of it is in the journal. */
static void test_concurrent_writers(void **state)
{
	struct fx *f = *state;
	pthread_t t[4];
	struct worker w[4];

	assert_int_equal(cfx_lq_close(f->lqs), 0);
	f->o.flush_interval_ms = 2;
	f->o.entries_max_per_queue = 100000;
	f->o.journal_bytes_min = 32 * 1024; /* compactions race with the writers */
	assert_int_equal(cfx_lq_open(&f->o, &f->lqs), 0);
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof name, "w/%d", i);
		w[i] = (struct worker){ .lqs = f->lqs, .n = i, .id = qid(f->lqs, name) };
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	struct cfx_lq_stats st;
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.entries, 4 * 1500);
	/* Let a compaction the thread may be running finish: a copy taken during
	 * its renames would not be a point-in-time image. */
	assert_int_equal(cfx_lq_sync(f->lqs), 0);
	assert_int_equal(cfx_lq_compact(f->lqs, 0), 0);
	check_crash_image(f, digest(f->lqs));
	uint32_t d = digest(f->lqs);
	reopen(f);
	assert_int_equal(digest(f->lqs), d);
}

/* ------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------ */

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void test_memory_many_queues(void **state)
{
	struct fx *f = *state;
	enum { N = 200000 };
	struct cfx_lq_stats st0, st;
	char name[32];
	uint64_t name_bytes = 0;

	cfx_lq_stats(f->lqs, &st0);
	size_t h0 = heap_in_use();
	for (uint32_t i = 0; i < N; i++) {
		int len = snprintf(name, sizeof name, "s/%u", i);
		name_bytes += (uint64_t)len;
		assert_int_equal(qid(f->lqs, name), i + 1);
	}
	size_t h1 = heap_in_use();
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.queues, N);
	double per_q = (double)(h1 - h0) / N, per_q_stats = (double)(st.bytes - st0.bytes) / N;
	double names = (double)name_bytes / N;
	printf("idle light queue: %.1f heap bytes each (names of %.1f bytes; engine's own "
	       "count %.1f), %u queues\n",
	       per_q, names, per_q_stats, (unsigned)N);
#ifndef LQ_TEST_SANITIZED
	assert_true(per_q <= 96 + names);
#endif
	/* One entry each, then all acknowledged: the rings come and go. */
	for (uint32_t i = 1; i <= N; i += 7)
		push(f->lqs, i, i);
	for (uint32_t i = 1; i <= N; i += 7)
		assert_int_equal(cfx_lq_ack(f->lqs, i, 1), 0);
	for (uint32_t i = 1; i <= N; i++)
		assert_int_equal(cfx_lq_drop(f->lqs, i), 0);
	size_t h2 = heap_in_use();
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.queues, 0);
	printf("after dropping them: heap %+ld bytes against before, engine's count %+ld\n",
	       (long)h2 - (long)h0, (long)st.bytes - (long)st0.bytes);
	/* The journal buffers may have grown a little; everything else is back. */
	assert_true(st.bytes <= st0.bytes + 64 * 1024);
#ifndef LQ_TEST_SANITIZED
	assert_true(h2 <= h0 + 256 * 1024);
#endif
	/* And the journal says the same. */
	reopen(f);
	cfx_lq_stats(f->lqs, &st);
	assert_int_equal(st.queues, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_find_drop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_read_ack_out_of_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overflow_drops_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_retained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_positions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_restores_exactly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_and_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_compaction_cycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_is_sticky, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_many_queues, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
