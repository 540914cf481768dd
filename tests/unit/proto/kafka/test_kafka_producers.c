/*
 * Unit tests for src/proto/kafka/producers.c: producer ids (increasing,
 * persisted by blocks, never reused across a reopen, epoch bumps) and the
 * idempotent sequence rules (duplicates, gaps, epochs, wrap-around, pending
 * appends and their duplicates, failed appends, eviction limits).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/err.h"
#include "proto/kafka/codec.h"
#include "proto/kafka/producers.h"

static struct kf_seq_batch batch(int64_t pid, int16_t epoch, int32_t seq, int32_t n)
{
	return (struct kf_seq_batch){ .producer_id = pid,
				      .epoch = epoch,
				      .base_sequence = seq,
				      .last_offset_delta = n - 1,
				      .topic = CFX_VIEW_STR("t"),
				      .partition = 0 };
}

/* Begins a batch (under the lock) and, if it is appended, completes it at `offset`. */
static int put(struct kf_producers *ps, struct kf_seq_batch b, int64_t offset,
	       struct kf_seq_result *res)
{
	struct kf_seq_waiter w = { 0 };
	int v;

	kf_producers_lock(ps);
	v = kf_producers_begin(ps, &b, 1000, &w, res);
	kf_producers_unlock(ps);
	if (v == KF_SEQ_APPEND)
		kf_producers_complete(ps, b.producer_id, b.topic, b.partition, res->serial, 0,
				      offset);
	return v;
}

struct waited {
	struct kf_seq_waiter w;
	int calls, err;
	int64_t offset;
};

static void on_done(struct kf_seq_waiter *w, int err, int64_t offset)
{
	struct waited *d = (struct waited *)w;
	d->calls++;
	d->err = err;
	d->offset = offset;
}

static void test_ids_persist(void **state)
{
	char dir[] = "/tmp/cfx-producers-XXXXXX", path[256];
	int64_t id, last = -1;
	int16_t epoch;
	struct kf_producers *ps;

	(void)state;
	assert_non_null(mkdtemp(dir));
	ps = kf_producers_new(dir, NULL);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kf_producers_init_id(ps, -1, -1, 0, &id, &epoch), KF_ERR_NONE);
		assert_true(id > last);
		assert_int_equal(epoch, 0);
		last = id;
	}
	/* A bump of our own id: same id, next epoch. */
	assert_int_equal(kf_producers_init_id(ps, last, 0, 0, &id, &epoch), KF_ERR_NONE);
	assert_int_equal(id, last);
	assert_int_equal(epoch, 1);
	assert_int_equal(kf_producers_init_id(ps, last, 0, 0, &id, &epoch), KF_ERR_NONE);
	assert_int_equal(epoch, 2); /* the known epoch counts too */
	/* An id never handed out here: a fresh one. One -1 only: invalid. */
	assert_int_equal(kf_producers_init_id(ps, 1000000, 3, 0, &id, &epoch), KF_ERR_NONE);
	assert_int_equal(id, last + 1);
	assert_int_equal(epoch, 0);
	last = id;
	assert_int_equal(kf_producers_init_id(ps, 5, -1, 0, &id, &epoch), KF_ERR_INVALID_REQUEST);
	/* Exhausted epochs: a fresh id. */
	assert_int_equal(kf_producers_init_id(ps, 0, KF_PRODUCER_EPOCH_MAX, 0, &id, &epoch),
			 KF_ERR_NONE);
	assert_int_equal(id, last + 1);
	assert_int_equal(epoch, 0);
	last = id;
	kf_producers_free(ps);

	/* Reopened: ids go on above the reserved block, never below. */
	ps = kf_producers_new(dir, NULL);
	assert_int_equal(kf_producers_init_id(ps, -1, -1, 0, &id, &epoch), KF_ERR_NONE);
	assert_true(id >= KF_PID_BLOCK);
	assert_true(id > last);
	kf_producers_free(ps);

	/* A damaged file is not guessed about: ids start from the clock. */
	snprintf(path, sizeof path, "%s/kafka/producer_ids", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("garbage\n", f);
	fclose(f);
	ps = kf_producers_new(dir, NULL);
	assert_int_equal(kf_producers_init_id(ps, -1, -1, 0, &id, &epoch), KF_ERR_NONE);
	assert_true(id > 1000000000000000LL);
	kf_producers_free(ps);

	unlink(path);
	snprintf(path, sizeof path, "%s/kafka", dir);
	rmdir(path);
	rmdir(dir);
}

static void test_sequences(void **state)
{
	struct kf_producers *ps = kf_producers_new(NULL, NULL);
	struct kf_seq_result res;

	(void)state;
	/* An unknown producer starts anywhere (state lost or expired). */
	assert_int_equal(put(ps, batch(7, 0, 40, 10), 100, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, batch(7, 0, 50, 5), 110, &res), KF_SEQ_APPEND);
	/* Retries of either: the original offsets. */
	assert_int_equal(put(ps, batch(7, 0, 40, 10), -1, &res), KF_SEQ_DUPLICATE);
	assert_int_equal(res.offset, 100);
	assert_int_equal(put(ps, batch(7, 0, 50, 5), -1, &res), KF_SEQ_DUPLICATE);
	assert_int_equal(res.offset, 110);
	/* A gap, a same-start different-length batch, an overlap. */
	assert_int_equal(put(ps, batch(7, 0, 56, 1), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(res.err, KF_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	assert_int_equal(put(ps, batch(7, 0, 40, 3), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(res.err, KF_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	/* Only the last five are remembered. */
	for (int i = 0; i < 5; i++)
		assert_int_equal(put(ps, batch(7, 0, 55 + i, 1), 200 + i, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, batch(7, 0, 55, 1), -1, &res), KF_SEQ_DUPLICATE);
	assert_int_equal(put(ps, batch(7, 0, 50, 5), -1, &res), KF_SEQ_REJECT);
	/* Another partition of the same producer has its own sequence. */
	struct kf_seq_batch other = batch(7, 0, 0, 1);
	other.partition = 1;
	assert_int_equal(put(ps, other, 0, &res), KF_SEQ_APPEND);
	/* A newer epoch starts at 0; the old one is fenced from then on. */
	assert_int_equal(put(ps, batch(7, 1, 60, 1), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(res.err, KF_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	assert_int_equal(put(ps, batch(7, 1, 0, 2), 300, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, batch(7, 0, 60, 1), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(res.err, KF_ERR_INVALID_PRODUCER_EPOCH);
	/* Per partition, as Kafka: one that has not seen epoch 1 takes epoch 0 on. */
	other.epoch = 0;
	other.base_sequence = 1;
	assert_int_equal(put(ps, other, 1, &res), KF_SEQ_APPEND);
	/* No epoch or sequence with a producer id. */
	assert_int_equal(put(ps, batch(7, 1, -1, 1), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(res.err, KF_ERR_INVALID_RECORD);
	/* Sequences wrap from INT32_MAX to 0. */
	assert_int_equal(put(ps, batch(8, 0, INT32_MAX - 1, 4), 0, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, batch(8, 0, 2, 1), 4, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, batch(8, 0, INT32_MAX - 1, 4), -1, &res), KF_SEQ_DUPLICATE);
	/* InitProducerId bumps from the newest epoch it knows, batches included. */
	int64_t id;
	int16_t epoch;
	assert_int_equal(kf_producers_init_id(ps, -1, -1, 0, &id, &epoch), KF_ERR_NONE);
	assert_int_equal(put(ps, batch(id, 0, 0, 1), 0, &res), KF_SEQ_APPEND);
	assert_int_equal(kf_producers_init_id(ps, id, 0, 0, &id, &epoch), KF_ERR_NONE);
	assert_int_equal(epoch, 1);
	assert_int_equal(put(ps, batch(id, 1, 0, 1), 1, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, batch(id, 0, 1, 1), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(res.err, KF_ERR_INVALID_PRODUCER_EPOCH);
	assert_int_equal(put(ps, batch(id, 3, 0, 1), 2, &res), KF_SEQ_APPEND);
	assert_int_equal(kf_producers_init_id(ps, id, 1, 0, &id, &epoch), KF_ERR_NONE);
	assert_int_equal(epoch, 4);
	kf_producers_free(ps);
}

/* Two batches in flight, a retry of the first while its append is out, a
 * failed append, an append refused at once. */
static void test_pending(void **state)
{
	struct kf_producers *ps = kf_producers_new(NULL, NULL);
	struct kf_seq_batch b1 = batch(3, 0, 0, 10), b2 = batch(3, 0, 10, 10), b3 = batch(3, 0, 20, 5);
	struct kf_seq_result r1, r2, r3, res;
	struct waited d = { .w.done = on_done }, d2 = { .w.done = on_done };

	(void)state;
	kf_producers_lock(ps);
	assert_int_equal(kf_producers_begin(ps, &b1, 0, NULL, &r1), KF_SEQ_APPEND);
	assert_int_equal(kf_producers_begin(ps, &b2, 0, NULL, &r2), KF_SEQ_APPEND); /* judged after b1 */
	assert_int_equal(kf_producers_begin(ps, &b1, 0, &d.w, &res), KF_SEQ_WAIT);
	kf_producers_unlock(ps);
	assert_int_equal(d.calls, 0);
	kf_producers_complete(ps, 3, b1.topic, 0, r1.serial, 0, 500);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, 0);
	assert_int_equal(d.offset, 500);

	/* b2 fails after being accepted: its duplicate shares the failure,
	 * and the next batch (the client's retry of b2) is a new start. */
	kf_producers_lock(ps);
	assert_int_equal(kf_producers_begin(ps, &b2, 0, &d2.w, &res), KF_SEQ_WAIT);
	kf_producers_unlock(ps);
	kf_producers_complete(ps, 3, b2.topic, 0, r2.serial, CFX_EFSYNC, -1);
	assert_int_equal(d2.calls, 1);
	assert_int_equal(d2.err, CFX_EFSYNC);
	assert_int_equal(put(ps, b2, 600, &res), KF_SEQ_APPEND);
	assert_int_equal(put(ps, b2, -1, &res), KF_SEQ_DUPLICATE);
	assert_int_equal(res.offset, 600);

	/* An append that is refused at once leaves the sequence where it was. */
	kf_producers_lock(ps);
	assert_int_equal(kf_producers_begin(ps, &b3, 0, NULL, &r3), KF_SEQ_APPEND);
	kf_producers_abort(ps, &b3, r3.serial);
	kf_producers_unlock(ps);
	assert_int_equal(put(ps, batch(3, 0, 25, 1), -1, &res), KF_SEQ_REJECT);
	assert_int_equal(put(ps, b3, 700, &res), KF_SEQ_APPEND);
	kf_producers_free(ps);
}

static void test_limits(void **state)
{
	struct kf_producers_limits lim = {
		.producers_max = 4, .states_max = 6, .states_per_id_max = 3, .idle_ms = 1000
	};
	struct kf_producers *ps = kf_producers_new(NULL, &lim);
	struct kf_seq_result res;
	struct kf_seq_waiter w = { 0 };
	uint32_t np, ns;

	(void)state;
	/* One producer on five partitions keeps three. */
	for (int32_t p = 0; p < 5; p++) {
		struct kf_seq_batch b = batch(1, 0, 0, 1);
		b.partition = p;
		assert_int_equal(put(ps, b, p, &res), KF_SEQ_APPEND);
	}
	kf_producers_counts(ps, &np, &ns);
	assert_int_equal(np, 1);
	assert_int_equal(ns, 3);
	/* More producers than allowed: the coldest go, unless an append is out. */
	struct kf_seq_batch pend = batch(2, 0, 0, 1);
	struct kf_seq_result rp;
	kf_producers_lock(ps);
	assert_int_equal(kf_producers_begin(ps, &pend, 1000, &w, &rp), KF_SEQ_APPEND);
	kf_producers_unlock(ps);
	for (int64_t id = 10; id < 20; id++)
		assert_int_equal(put(ps, batch(id, 0, 0, 1), 0, &res), KF_SEQ_APPEND);
	kf_producers_counts(ps, &np, &ns);
	assert_true(np <= 4);
	assert_true(ns <= 6);
	/* The pending one is still there and completes; producer 1 was evicted
	 * and starts afresh anywhere. */
	kf_producers_complete(ps, 2, pend.topic, 0, rp.serial, 0, 9);
	assert_int_equal(put(ps, batch(2, 0, 0, 1), -1, &res), KF_SEQ_DUPLICATE);
	assert_int_equal(put(ps, batch(1, 0, 77, 1), 1, &res), KF_SEQ_APPEND);
	/* Idle producers go after idle_ms. */
	struct kf_seq_batch late = batch(99, 0, 0, 1);
	kf_producers_lock(ps);
	assert_int_equal(kf_producers_begin(ps, &late, 1000 + 5000, &w, &res), KF_SEQ_APPEND);
	kf_producers_unlock(ps);
	kf_producers_complete(ps, 99, late.topic, 0, res.serial, 0, 0);
	kf_producers_counts(ps, &np, &ns);
	assert_int_equal(np, 1);
	kf_producers_free(ps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids_persist),
		cmocka_unit_test(test_sequences),
		cmocka_unit_test(test_pending),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
