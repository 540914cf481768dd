/* Unit tests for src/store/store.c: appends, reads, lookups, retention, faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/fileops.h"
#include "store_test_util.h"

struct fx {
	char *dir;
	struct cfx_store_opts o;
	struct cfx_store *st;
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);
	cfx_log_set_level(CFX_LOG_ERROR);
	f->dir = tu_tmpdir();
	tu_small_opts(&f->o, f->dir);
	*state = f;
	return cfx_store_open(&f->o, &f->st, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->st)
		cfx_store_close(f->st);
	cfx_fault_clear_all();
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

static void reopen(struct fx *f, struct cfx_store_recovery *rec)
{
	assert_int_equal(cfx_store_close(f->st), 0);
	f->st = NULL;
	assert_int_equal(cfx_store_open(&f->o, &f->st, rec), 0);
}

/* ------------------------------------------------------------------------ */

static void test_round_trip_all_fields(void **state)
{
	struct fx *f = *state;
	struct cfx_prop props[2] = { { CFX_VIEW_STR("color"), CFX_VIEW_STR("blue") },
				     { CFX_VIEW_STR("empty"), CFX_VIEW_STR("") } };
	struct cfx_msg m = { .key = CFX_VIEW_STR("order-1 customer-9"),
			     .body = CFX_VIEW_STR("hello"),
			     .tag = CFX_VIEW_STR("TagA"),
			     .msg_id = CFX_VIEW_STR("MSGID-1"),
			     .born_ms = 1234567,
			     .flag = 42,
			     .props = props,
			     .prop_count = 2 };
	struct cfx_append_result ar;
	struct cfx_read_result res;
	struct cfx_prop p;
	size_t cur = 0;
	int64_t before = cfx_clock_wall_ms();

	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("t1"), 3, &m, 1,
					       CFX_DURABILITY_ASYNC, &ar), 0);
	assert_int_equal(ar.first_offset, 0);
	assert_int_equal(ar.count, 1);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("t1"), 3, 0, 10, 1 << 20, &res), 0);
	assert_int_equal(res.count, 1);
	assert_int_equal(res.next_offset, 1);
	assert_int_equal(res.end_offset, 1);
	const struct cfx_msg_view *v = &res.msgs[0];
	assert_true(cfx_view_eq_str(v->key, "order-1 customer-9"));
	assert_true(cfx_view_eq_str(v->body, "hello"));
	assert_true(cfx_view_eq_str(v->tag, "TagA"));
	assert_true(cfx_view_eq_str(v->msg_id, "MSGID-1"));
	assert_int_equal(v->born_ms, 1234567);
	assert_true(v->store_ms >= before && v->store_ms <= cfx_clock_wall_ms());
	assert_int_equal(v->flag, 42);
	assert_int_equal(cfx_msg_view_next_prop(v, &cur, &p), 1);
	assert_true(cfx_view_eq_str(p.name, "color") && cfx_view_eq_str(p.value, "blue"));
	assert_int_equal(cfx_msg_view_next_prop(v, &cur, &p), 1);
	assert_true(cfx_view_eq_str(p.name, "empty") && p.value.len == 0);
	assert_int_equal(cfx_msg_view_next_prop(v, &cur, &p), 0);
	cfx_read_result_free(&res);
}

static void test_read_middle_of_batch_and_limits(void **state)
{
	struct fx *f = *state;
	struct cfx_read_result res;

	tu_append(f->st, "t", 0, 0, 10, CFX_DURABILITY_ASYNC);
	tu_append(f->st, "t", 0, 10, 10, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	/* From the middle of the first batch, across into the second. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("t"), 0, 7, 5, 1 << 20, &res), 0);
	assert_int_equal(res.count, 5);
	for (uint32_t i = 0; i < 5; i++) {
		assert_int_equal(res.msgs[i].offset, 7 + i);
		assert_true(tu_msg_ok(&res.msgs[i], "t", 0));
	}
	assert_int_equal(res.next_offset, 12);
	/* A byte limit smaller than one message still returns one message. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("t"), 0, 19, 100, 1, &res), 0);
	assert_int_equal(res.count, 1);
	assert_int_equal(res.msgs[0].offset, 19);
	/* At the end: nothing, no error. Past the end: out of range. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("t"), 0, 20, 100, 1 << 20, &res), 0);
	assert_int_equal(res.count, 0);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("t"), 0, 21, 100, 1 << 20, &res),
			 CFX_EOFFSET);
	assert_int_equal(res.end_offset, 20);
	/* A queue that never held data reads empty at 0. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("t"), 1, 0, 100, 1 << 20, &res), 0);
	assert_int_equal(res.count, 0);
	assert_int_equal(tu_read_all(f->st, "t", 0, 0), 20);
	cfx_read_result_free(&res);
}


static void test_read_batches_as_stored(void **state)
{
	struct fx *f = *state;
	struct cfx_read_result res;
	struct cfx_batch_ref refs[8];
	uint32_t n;

	tu_append(f->st, "t", 0, 0, 5, CFX_DURABILITY_ASYNC);
	tu_append(f->st, "t", 0, 5, 5, CFX_DURABILITY_ASYNC);
	tu_append(f->st, "t", 0, 10, 5, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	/* From inside the second batch: the second and third, whole, as stored. */
	assert_int_equal(cfx_store_read_batches(f->st, TU_TOPIC("t"), 0, 7, 1 << 20, refs, 8, &n,
						&res), 0);
	assert_int_equal(n, 2);
	assert_int_equal(refs[0].first_offset, 5);
	assert_int_equal(refs[1].first_offset, 10);
	assert_int_equal(res.next_offset, 15);
	for (uint32_t i = 0; i < n; i++) {
		struct cfx_batch_rd b;
		struct cfx_msg_view m;
		const char *why;
		assert_int_equal(refs[i].count, 5);
		/* A RecordBatch v2 whose baseOffset is the queue offset: Kafka's form. */
		assert_int_equal(cfx_load_be64(refs[i].p), refs[i].first_offset);
		assert_int_equal(cfx_batch_open(&b, refs[i].p, refs[i].len, 1, &why), 0);
		for (uint32_t k = 0; k < 5; k++) {
			assert_int_equal(cfx_batch_next(&b, &m, &why), 1);
			assert_int_equal(m.offset, refs[i].first_offset + k);
			assert_true(tu_msg_ok(&m, "t", 0));
		}
	}
	/* A byte limit below one batch still returns one. */
	assert_int_equal(cfx_store_read_batches(f->st, TU_TOPIC("t"), 0, 0, 1, refs, 8, &n, &res),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(res.next_offset, 5);
	/* At the end nothing; past it out of range. */
	assert_int_equal(cfx_store_read_batches(f->st, TU_TOPIC("t"), 0, 15, 1 << 20, refs, 8, &n,
						&res), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cfx_store_read_batches(f->st, TU_TOPIC("t"), 0, 16, 1 << 20, refs, 8, &n,
						&res), CFX_EOFFSET);
	cfx_read_result_free(&res);
}

static void test_validation_errors(void **state)
{
	struct fx *f = *state;
	static char big[9000];
	struct cfx_msg m = { .body = CFX_VIEW_STR("x") }, mb = { .body = { (uint8_t *)big, sizeof big } };
	struct cfx_msg many[64];
	struct cfx_append_result ar;

	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("bad topic"), 0, &m, 1, 0, &ar),
			 CFX_ETOPIC);
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC(""), 0, &m, 1, 0, &ar), CFX_ETOPIC);
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("t"), 1024, &m, 1, 0, &ar),
			 CFX_EQUEUE);
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("t"), 0, &m, 0, 0, &ar), CFX_EINVAL);
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("t"), 0, &mb, 1, 0, &ar),
			 CFX_EMSGSIZE);
	for (int i = 0; i < 64; i++)
		many[i] = (struct cfx_msg){ .body = { (uint8_t *)big, 1000 } };
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("t"), 0, many, 64, 0, &ar),
			 CFX_EBATCHSIZE);
	/* Nothing was written. */
	uint64_t s, e;
	assert_int_equal(cfx_store_queue_bounds(f->st, TU_TOPIC("t"), 0, &s, &e), 0);
	assert_int_equal(e, 0);
}

static void test_segment_roll_over_and_reopen(void **state)
{
	struct fx *f = *state;
	struct cfx_store_stats stats;
	struct cfx_store_recovery rec;
	uint64_t off[3] = { 0 };

	/* ~40 batches of ~2.5 KiB each over 64 KiB segments: several roll-overs. */
	for (int i = 0; i < 120; i++) {
		uint32_t q = (uint32_t)i % 3;
		tu_append(f->st, "roll", q, off[q], 12, CFX_DURABILITY_ASYNC);
		off[q] += 12;
	}
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_store_get_stats(f->st, &stats);
	assert_true(stats.segments >= 3);
	for (uint32_t q = 0; q < 3; q++)
		assert_int_equal(tu_read_all(f->st, "roll", q, 0), (int64_t)off[q]);
	reopen(f, &rec);
	assert_true(rec.clean);
	assert_int_equal(rec.scanned_entries, 0);
	assert_int_equal(rec.queues, 3);
	for (uint32_t q = 0; q < 3; q++)
		assert_int_equal(tu_read_all(f->st, "roll", q, 0), (int64_t)off[q]);
	/* Appends continue the offsets. */
	tu_append(f->st, "roll", 0, off[0], 3, CFX_DURABILITY_SYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	assert_int_equal(tu_read_all(f->st, "roll", 0, 0), (int64_t)off[0] + 3);
}

static void test_offset_for_time(void **state)
{
	struct fx *f = *state;
	int64_t t_mid;
	uint64_t off;

	tu_append(f->st, "time", 0, 0, 5, CFX_DURABILITY_ASYNC);
	usleep(30000);
	t_mid = cfx_clock_wall_ms();
	usleep(30000);
	tu_append(f->st, "time", 0, 5, 5, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	assert_int_equal(cfx_store_offset_for_time(f->st, TU_TOPIC("time"), 0, 0, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(cfx_store_offset_for_time(f->st, TU_TOPIC("time"), 0, t_mid, &off), 0);
	assert_int_equal(off, 5);
	assert_int_equal(cfx_store_offset_for_time(f->st, TU_TOPIC("time"), 0,
						   cfx_clock_wall_ms() + 100000, &off), 0);
	assert_int_equal(off, 10);
}

static void test_key_and_id_lookup(void **state)
{
	struct fx *f = *state;
	struct cfx_read_result res;

	tu_append(f->st, "keys", 0, 0, 10, CFX_DURABILITY_ASYNC);
	tu_append(f->st, "keys", 1, 0, 10, CFX_DURABILITY_ASYNC);
	tu_append(f->st, "other", 0, 0, 10, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	/* Each space-separated key is indexed. */
	assert_int_equal(cfx_store_lookup_key(f->st, TU_TOPIC("keys"), CFX_VIEW_STR("k7"), 10, &res), 0);
	assert_int_equal(res.count, 2); /* offset 7 of queues 0 and 1 */
	for (uint32_t i = 0; i < res.count; i++)
		assert_int_equal(res.msgs[i].offset, 7);
	assert_int_equal(cfx_store_lookup_key(f->st, TU_TOPIC("keys"), CFX_VIEW_STR("q1"), 100, &res), 0);
	assert_int_equal(res.count, 10);
	assert_int_equal(cfx_store_lookup_key(f->st, TU_TOPIC("keys"), CFX_VIEW_STR("k7 q1"), 10, &res), 0);
	assert_int_equal(res.count, 0);
	assert_int_equal(cfx_store_lookup_key(f->st, TU_TOPIC("keys"), CFX_VIEW_STR("nope"), 10, &res), 0);
	assert_int_equal(res.count, 0);
	/* Ids are global. */
	assert_int_equal(cfx_store_lookup_id(f->st, CFX_VIEW_STR("id-other-0-4"), 10, &res), 0);
	assert_int_equal(res.count, 1);
	assert_true(tu_msg_ok(&res.msgs[0], "other", 0));
	assert_int_equal(res.msgs[0].offset, 4);
	cfx_read_result_free(&res);
}

static void test_key_index_roll_over_and_rebuild(void **state)
{
	struct fx *f = *state;
	struct cfx_read_result res;
	struct cfx_store_recovery rec;

	/* 64 entries per key file; 10 msgs x 2 keys + id = 30 per batch. */
	for (uint64_t i = 0; i < 20; i++)
		tu_append(f->st, "kr", 0, i * 10, 10, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_read_result_init(&res);
	for (uint64_t off = 0; off < 200; off += 13) {
		char id[40];
		snprintf(id, sizeof id, "id-kr-0-%" PRIu64, off);
		assert_int_equal(cfx_store_lookup_id(f->st, CFX_VIEW_STR(id), 4, &res), 0);
		assert_int_equal(res.count, 1);
		assert_int_equal(res.msgs[0].offset, off);
	}
	reopen(f, &rec);
	assert_int_equal(cfx_store_lookup_id(f->st, CFX_VIEW_STR("id-kr-0-199"), 4, &res), 0);
	assert_int_equal(res.count, 1);
	cfx_read_result_free(&res);
}

static void test_retention_by_size(void **state)
{
	struct fx *f = *state;
	struct cfx_read_result res;
	struct cfx_store_stats stats;
	uint64_t off = 0, start, end;

	for (int i = 0; i < 200; i++, off += 10)
		tu_append(f->st, "ret", 0, off, 10, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	cfx_store_get_stats(f->st, &stats);
	assert_true(stats.segments > 4);

	/* Nothing is deleted before a checkpoint covers it. */
	cfx_store_close(f->st);
	f->st = NULL;
	f->o.retention_bytes = 3 * 64 * 1024;
	assert_int_equal(cfx_store_open(&f->o, &f->st, NULL), 0);
	assert_true(cfx_store_retention_run(f->st) > 0);
	cfx_store_get_stats(f->st, &stats);
	assert_true(stats.segments <= 3);
	assert_true(stats.log_start > 0);

	assert_int_equal(cfx_store_queue_bounds(f->st, TU_TOPIC("ret"), 0, &start, &end), 0);
	assert_true(start > 0);
	assert_int_equal(end, off);
	cfx_read_result_init(&res);
	/* Below the earliest offset: out of range, with the new earliest offset. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("ret"), 0, 0, 10, 1 << 20, &res),
			 CFX_EOFFSET);
	assert_int_equal(res.start_offset, start);
	assert_int_equal(tu_read_all(f->st, "ret", 0, start), (int64_t)(end - start));
	/* Deleted messages are not found by id either. */
	assert_int_equal(cfx_store_lookup_id(f->st, CFX_VIEW_STR("id-ret-0-0"), 4, &res), 0);
	assert_int_equal(res.count, 0);
	cfx_read_result_free(&res);
	/* And the queue keeps its offsets across a restart. */
	struct cfx_store_recovery rec;
	reopen(f, &rec);
	uint64_t s2, e2;
	cfx_store_queue_bounds(f->st, TU_TOPIC("ret"), 0, &s2, &e2);
	assert_int_equal(s2, start);
	assert_int_equal(e2, end);
	tu_append(f->st, "ret", 0, end, 1, CFX_DURABILITY_SYNC);
}

static void test_retention_by_age(void **state)
{
	struct fx *f = *state;
	struct cfx_store_stats stats;
	uint64_t off = 0;

	for (int i = 0; i < 100; i++, off += 10)
		tu_append(f->st, "age", 0, off, 10, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	assert_int_equal(cfx_store_checkpoint(f->st), 0);
	cfx_store_close(f->st);
	f->st = NULL;
	f->o.retention_ms = 1;
	assert_int_equal(cfx_store_open(&f->o, &f->st, NULL), 0);
	usleep(20000);
	assert_true(cfx_store_retention_run(f->st) > 0);
	cfx_store_get_stats(f->st, &stats);
	assert_int_equal(stats.segments, 1); /* the active segment always stays */
}

static void test_sync_durability_counts_fsyncs(void **state)
{
	struct fx *f = *state;
	struct cfx_store_stats before, after;

	cfx_store_get_stats(f->st, &before);
	for (uint64_t i = 0; i < 5; i++)
		tu_append(f->st, "sync", 0, i, 1, CFX_DURABILITY_SYNC);
	cfx_store_get_stats(f->st, &after);
	assert_true(after.fsyncs >= before.fsyncs + 1);
	assert_true(after.flushed_pos >= after.written_pos - 0);
}

struct dispatch_seen {
	pthread_mutex_t mu;
	uint64_t end;
	int calls;
};

static void on_dispatch(void *arg, struct cfx_view topic, uint32_t q, uint64_t end)
{
	struct dispatch_seen *d = arg;
	pthread_mutex_lock(&d->mu);
	if (cfx_view_eq_str(topic, "wake") && q == 2)
		d->end = end;
	d->calls++;
	pthread_mutex_unlock(&d->mu);
}

static void test_on_dispatch_hook(void **state)
{
	struct fx *f = *state;
	struct dispatch_seen d = { .mu = PTHREAD_MUTEX_INITIALIZER };

	cfx_store_close(f->st);
	f->st = NULL;
	f->o.on_dispatch = on_dispatch;
	f->o.on_dispatch_arg = &d;
	assert_int_equal(cfx_store_open(&f->o, &f->st, NULL), 0);
	tu_append(f->st, "wake", 2, 0, 4, CFX_DURABILITY_ASYNC);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
	pthread_mutex_lock(&d.mu);
	assert_int_equal(d.end, 4);
	assert_true(d.calls >= 1);
	pthread_mutex_unlock(&d.mu);
	cfx_store_close(f->st);
	f->st = NULL;
}

static void test_second_open_is_refused(void **state)
{
	struct fx *f = *state;
	struct cfx_store *other;
	assert_int_equal(cfx_store_open(&f->o, &other, NULL), CFX_ELOCKED);
}

/* ------------------------------------------------------------------------
 * Faults
 * ------------------------------------------------------------------------ */

static void test_enospc_then_space_frees(void **state)
{
	struct fx *f = *state;
	struct cfx_msg m = { .body = CFX_VIEW_STR("0123456789012345678901234567890123456789") };
	struct cfx_append_result ar;
	uint64_t acked = 0;
	int rc = 0;

	cfx_store_close(f->st);
	f->st = NULL;
	f->o.fops = &cfx_fileops_fault;
	assert_int_equal(cfx_store_open(&f->o, &f->st, NULL), 0);
	/* The disk is full: no new file can be reserved. */
	cfx_fault_set(CFX_FAULT_ALLOCATE, (struct cfx_fault_rule){ .errnum = ENOSPC, .count = -1 });
	for (int i = 0; i < 5000 && rc == 0; i++) {
		rc = cfx_store_append_wait(f->st, TU_TOPIC("full"), 0, &m, 1, CFX_DURABILITY_SYNC, &ar);
		if (rc == 0)
			acked++;
	}
	assert_int_equal(rc, CFX_ENOSPC);
	assert_true(acked > 100);
	/* Still refused while full; what was acknowledged stays readable. */
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("full"), 0, &m, 1, 0, &ar),
			 CFX_ENOSPC);
	/* Space frees: appends succeed again, without a restart. */
	cfx_fault_clear_all();
	for (int i = 0; i < 10; i++)
		assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("full"), 0, &m, 1,
						       CFX_DURABILITY_SYNC, &ar), 0);
	assert_int_equal(ar.first_offset, acked + 9);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 10000), 0);
	struct cfx_store_recovery rec;
	reopen(f, &rec);
	uint64_t s, e;
	cfx_store_queue_bounds(f->st, TU_TOPIC("full"), 0, &s, &e);
	assert_int_equal(e, acked + 10);
}

static void test_failed_fsync_is_sticky(void **state)
{
	struct fx *f = *state;
	struct cfx_msg m = { .body = CFX_VIEW_STR("durable?") };
	struct cfx_append_result ar;
	struct cfx_store_stats stats;

	cfx_store_close(f->st);
	f->st = NULL;
	f->o.fops = &cfx_fileops_fault;
	assert_int_equal(cfx_store_open(&f->o, &f->st, NULL), 0);
	tu_append(f->st, "eio", 0, 0, 5, CFX_DURABILITY_SYNC);
	cfx_fault_set(CFX_FAULT_FDATASYNC, (struct cfx_fault_rule){ .errnum = EIO, .count = -1 });
	/* The append was written but never acknowledged as durable. */
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("eio"), 0, &m, 1,
					       CFX_DURABILITY_SYNC, &ar), CFX_EFSYNC);
	assert_true(cfx_fault_hits(CFX_FAULT_FDATASYNC) >= 1);
	/* From now on the store refuses appends, even once the disk recovers. */
	cfx_fault_clear_all();
	assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("eio"), 0, &m, 1, 0, &ar),
			 CFX_EFSYNC);
	cfx_store_get_stats(f->st, &stats);
	assert_int_equal(stats.err, CFX_EFSYNC);
	assert_int_equal(cfx_store_sync(f->st), CFX_EFSYNC);
	/* Close reports it; a restart recovers what is on disk. */
	assert_int_equal(cfx_store_close(f->st), CFX_EFSYNC);
	f->st = NULL;
	struct cfx_store_recovery rec;
	assert_int_equal(cfx_store_open(&f->o, &f->st, &rec), 0);
	assert_false(rec.clean);
	/* The acknowledged five are there; the unacknowledged one may be too. */
	struct cfx_read_result res;
	uint64_t s, e;
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("eio"), 0, 0, 5, 1 << 20, &res), 0);
	assert_int_equal(res.count, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_true(tu_msg_ok(&res.msgs[i], "eio", 0));
	cfx_read_result_free(&res);
	cfx_store_queue_bounds(f->st, TU_TOPIC("eio"), 0, &s, &e);
	assert_true(e == 5 || e == 6);
	tu_append(f->st, "eio", 0, e, 1, CFX_DURABILITY_SYNC);
}

static void test_short_writes(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;

	cfx_store_close(f->st);
	f->st = NULL;
	f->o.fops = &cfx_fileops_fault;
	/* Every pwrite (headers, checkpoints) comes back short: callers loop. */
	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .short_bytes = 7, .count = -1 });
	assert_int_equal(cfx_store_open(&f->o, &f->st, NULL), 0);
	for (uint64_t i = 0; i < 40; i++)
		tu_append(f->st, "short", 0, i * 10, 10, CFX_DURABILITY_SYNC);
	assert_int_equal(cfx_store_checkpoint(f->st), 0);
	assert_true(cfx_fault_hits(CFX_FAULT_PWRITE) > 0);
	reopen(f, &rec);
	assert_true(rec.clean);
	assert_int_equal(tu_read_all(f->st, "short", 0, 0), 400);
}

/* ------------------------------------------------------------------------
 * Concurrency
 * ------------------------------------------------------------------------ */

struct writer_arg {
	struct cfx_store *st;
	uint32_t queue;
	int batches;
};

static void *writer(void *p)
{
	struct writer_arg *w = p;
	struct cfx_msg m[4];
	char body[4][64];
	struct cfx_append_result ar;

	for (int i = 0; i < w->batches; i++) {
		for (int j = 0; j < 4; j++) {
			int n = snprintf(body[j], sizeof body[j], "q%u-b%d-m%d", w->queue, i, j);
			m[j] = (struct cfx_msg){ .body = { (uint8_t *)body[j], (size_t)n },
						 .key_null = 1 };
		}
		if (cfx_store_append_wait(w->st, TU_TOPIC("conc"), w->queue, m, 4,
					  i % 5 ? CFX_DURABILITY_ASYNC : CFX_DURABILITY_SYNC, &ar))
			abort();
	}
	return NULL;
}

static void test_concurrent_appenders_keep_queues_dense(void **state)
{
	struct fx *f = *state;
	pthread_t thr[6];
	struct writer_arg args[6];
	struct cfx_read_result res;

	for (int i = 0; i < 6; i++) {
		args[i] = (struct writer_arg){ f->st, (uint32_t)i % 3, 150 };
		pthread_create(&thr[i], NULL, writer, &args[i]);
	}
	for (int i = 0; i < 6; i++)
		pthread_join(thr[i], NULL);
	assert_int_equal(cfx_store_wait_dispatched(f->st, 10000), 0);
	cfx_read_result_init(&res);
	for (uint32_t q = 0; q < 3; q++) {
		uint64_t off = 0;
		for (;;) {
			assert_int_equal(cfx_store_read(f->st, TU_TOPIC("conc"), q, off, 50, 1 << 20,
							&res), 0);
			if (!res.count)
				break;
			for (uint32_t i = 0; i < res.count; i++) {
				char pre[8];
				snprintf(pre, sizeof pre, "q%u-", q);
				assert_int_equal(res.msgs[i].offset, off);
				assert_memory_equal(res.msgs[i].body.p, pre, strlen(pre));
				off++;
			}
		}
		assert_int_equal(off, 2 * 150 * 4);
	}
	cfx_read_result_free(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_all_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_middle_of_batch_and_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_batches_as_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validation_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_roll_over_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offset_for_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_and_id_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_index_roll_over_and_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_by_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_by_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_durability_counts_fsyncs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_on_dispatch_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_open_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_then_space_frees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_fsync_is_sticky, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_appenders_keep_queues_dense, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
