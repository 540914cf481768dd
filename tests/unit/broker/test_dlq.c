/*
 * Unit tests for src/broker/dlq.c: re-driving a group's dead-letter queue
 * to the origin topics, in pieces and across a restart, with the copies'
 * fields checked; messages that cannot be re-driven staying in place; a
 * DLQ filled by the broker itself (a group's last attempt); the argument
 * errors; and long runs whose sends all complete before they return.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "broker/broker.h"
#include "../store/store_test_util.h"

struct fx {
	char *dir;
	struct cfx_broker_opts o;
	struct cfx_broker *br;
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);

	cfx_log_set_level(CFX_LOG_ERROR - 1);
	f->dir = tu_tmpdir();
	cfx_broker_opts_default(&f->o);
	tu_small_opts(&f->o.store, f->dir);
	f->o.default_queues = 4;
	*state = f;
	return cfx_broker_open(&f->o, &f->br, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->br)
		cfx_broker_close(f->br);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	assert_int_equal(cfx_broker_close(f->br), 0);
	f->br = NULL;
	assert_int_equal(cfx_broker_open(&f->o, &f->br, NULL), 0);
}

/* ------------------------------------------------------------------------
 * Waiting for callbacks
 * ------------------------------------------------------------------------ */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	uint32_t n;
	int err;
};

static void waiter_init(struct waiter *w)
{
	memset(w, 0, sizeof *w);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

static void sent_cb(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->err = 0;
	for (uint32_t i = 0; i < n; i++)
		if (res[i].err)
			w->err = res[i].err;
	w->n = n;
	w->done++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void redriven_cb(void *arg, uint32_t n, int err)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->n = n;
	w->err = err;
	w->done++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Re-drives and waits: *err gets the first error; returns the count. */
static uint32_t redrive(struct fx *f, const char *group, uint32_t max, enum cfx_durability d,
			int *err)
{
	struct waiter w;

	waiter_init(&w);
	assert_int_equal(cfx_broker_dlq_redrive(f->br, CFX_VIEW_STR(group), max, d, redriven_cb,
						&w),
			 0);
	waiter_wait(&w);
	assert_int_equal(w.done, 1);
	*err = w.err;
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
	return w.n;
}

/*
 * Appends messages "<prefix>-<i>" to `dlq` the way the broker writes dead
 * letters: origin topic (NULL = none), origin id, attempts, plus a user
 * property, a tag and two keys.
 */
static void put_dead(struct fx *f, const char *dlq, const char *origin, const char *prefix,
		     int first, int n, const char *msg_group)
{
	struct cfx_send_msg m[64];
	struct cfx_prop props[64][5];
	char bodies[64][32], ids[64][40];
	struct waiter w;

	assert_true(n <= 64);
	for (int i = 0; i < n; i++) {
		int len = snprintf(bodies[i], sizeof bodies[i], "%s-%d", prefix, first + i);
		uint32_t np = 0;
		snprintf(ids[i], sizeof ids[i], "ID-%s-%d", prefix, first + i);
		props[i][np++] = (struct cfx_prop){ CFX_VIEW_STR("color"), CFX_VIEW_STR("red") };
		if (origin)
			props[i][np++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ORIGIN_TOPIC"),
							    CFX_VIEW_STR(origin) };
		props[i][np++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ORIGIN_MESSAGE_ID"),
						    CFX_VIEW_STR(ids[i]) };
		props[i][np++] = (struct cfx_prop){ CFX_VIEW_STR("DLQ_ATTEMPTS"), CFX_VIEW_STR("17") };
		if (msg_group)
			props[i][np++] = (struct cfx_prop){ CFX_VIEW_STR("__SHARDINGKEY"),
							    CFX_VIEW_STR(msg_group) };
		memset(&m[i], 0, sizeof m[i]);
		m[i].m.body = (struct cfx_view){ (uint8_t *)bodies[i], (size_t)len };
		m[i].m.key = CFX_VIEW_STR("k1 k2");
		m[i].m.tag = CFX_VIEW_STR("TagA");
		m[i].m.msg_id = CFX_VIEW_STR(ids[i]);
		m[i].m.born_ms = 1700000000000 + i;
		m[i].m.props = props[i];
		m[i].m.prop_count = np;
		m[i].type = CFX_MSG_NORMAL;
	}
	waiter_init(&w);
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR(dlq), m, (uint32_t)n,
					 CFX_DURABILITY_SYNC, sent_cb, &w),
			 0);
	waiter_wait(&w);
	assert_int_equal(w.err, 0);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
}

/* Collects the bodies stored in every queue of `topic`, sorted, joined by ','. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void topic_bodies(struct fx *f, const char *topic, char *out, size_t len)
{
	struct cfx_topic_info ti;
	char *v[512];
	size_t n = 0, at = 0;

	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR(topic), 0, &ti), 0);
	for (uint32_t q = 0; q < ti.queues; q++) {
		struct cfx_read_result rd;
		uint64_t off = 0;
		cfx_read_result_init(&rd);
		while (cfx_store_read(cfx_broker_store(f->br), CFX_VIEW_STR(topic), q, off, 64,
				      1 << 20, &rd) == 0 &&
		       rd.count) {
			for (uint32_t i = 0; i < rd.count; i++) {
				assert_true(n < CFX_ARRAY_LEN(v));
				v[n++] = cfx_strndup((const char *)rd.msgs[i].body.p,
						     rd.msgs[i].body.len);
			}
			off = rd.next_offset;
		}
		cfx_read_result_free(&rd);
	}
	qsort(v, n, sizeof *v, cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		at += (size_t)snprintf(out + at, len - at, "%s%s", i ? "," : "", v[i]);
		cfx_free(v[i]);
	}
}

static uint64_t dlq_position(struct fx *f, const char *group, uint32_t *inflight)
{
	struct cfx_dlq_position pos;

	assert_int_equal(cfx_broker_dlq_position(f->br, CFX_VIEW_STR(group), &pos), 0);
	if (inflight)
		*inflight = pos.inflight;
	return pos.position;
}

/* ------------------------------------------------------------------------ */

static void test_redrive_in_pieces(void **state)
{
	struct fx *f = *state;
	struct cfx_group_info gi;
	struct cfx_read_result rd;
	char got[4096];
	int err;

	assert_int_equal(cfx_broker_topic_create(f->br, "orders", CFX_MSG_NORMAL, 2), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "%DLQ%g", CFX_TOPIC_MIXED, 1), 0);
	put_dead(f, "%DLQ%g", "orders", "m", 0, 5, NULL);
	/* Never re-driven: the position is 0, the end 5. */
	assert_int_equal(dlq_position(f, "g", NULL), 0);

	assert_int_equal(redrive(f, "g", 2, CFX_DURABILITY_SYNC, &err), 2);
	assert_int_equal(err, 0);
	topic_bodies(f, "orders", got, sizeof got);
	assert_string_equal(got, "m-0,m-1");
	assert_int_equal(dlq_position(f, "g", NULL), 2);

	/* The copy: fields kept, DLQ_* dropped, a fresh message for the topic's groups. */
	cfx_read_result_init(&rd);
	for (uint32_t q = 0; q < 2; q++) {
		assert_int_equal(cfx_store_read(cfx_broker_store(f->br), CFX_VIEW_STR("orders"), q,
						0, 1, 1 << 20, &rd),
				 0);
		if (!rd.count)
			continue;
		const struct cfx_msg_view *v = &rd.msgs[0];
		struct cfx_prop p;
		size_t cur = 0;
		int props = 0;
		assert_true(cfx_view_eq_str(v->tag, "TagA"));
		assert_true(cfx_view_eq_str(v->key, "k1 k2"));
		assert_true(v->msg_id.len > 5 && !memcmp(v->msg_id.p, "ID-m-", 5));
		assert_true(v->born_ms >= 1700000000000 && v->born_ms < 1700000000005);
		while (cfx_msg_view_next_prop(v, &cur, &p) == 1) {
			assert_false(p.name.len >= 4 && !memcmp(p.name.p, "DLQ_", 4));
			assert_true(cfx_view_eq_str(p.name, "color") &&
				    cfx_view_eq_str(p.value, "red"));
			props++;
		}
		assert_int_equal(props, 1);
	}
	cfx_read_result_free(&rd);

	/* The position is the redrive group's, journaled: it survives a restart. */
	reopen(f);
	assert_int_equal(dlq_position(f, "g", NULL), 2);
	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_SYNC, &err), 3);
	assert_int_equal(err, 0);
	topic_bodies(f, "orders", got, sizeof got);
	assert_string_equal(got, "m-0,m-1,m-2,m-3,m-4");
	assert_int_equal(dlq_position(f, "g", NULL), 5);

	/* Nothing left: a second run finds nothing, and nothing is duplicated. */
	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_SYNC, &err), 0);
	assert_int_equal(err, 0);
	topic_bodies(f, "orders", got, sizeof got);
	assert_string_equal(got, "m-0,m-1,m-2,m-3,m-4");

	/* New dead letters are found by the next run. */
	put_dead(f, "%DLQ%g", "orders", "n", 0, 1, NULL);
	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_ASYNC, &err), 1);
	assert_int_equal(err, 0);
	topic_bodies(f, "orders", got, sizeof got);
	assert_string_equal(got, "m-0,m-1,m-2,m-3,m-4,n-0");

	/* The redrive group is a system group that never dead-letters. */
	assert_int_equal(cfx_broker_group_get(f->br, CFX_VIEW_STR("%REDRIVE%g"), 0, &gi), 0);
	assert_true(gi.retry.max_attempts >= 65536);
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("%DLQ%%REDRIVE%g"), 0,
					      &(struct cfx_topic_info){ 0 }),
			 CFX_ENOENT);
}

static void test_left_in_place(void **state)
{
	struct fx *f = *state;
	char got[4096];
	uint32_t inflight;
	int err;

	assert_int_equal(cfx_broker_topic_create(f->br, "orders", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "%DLQ%g", CFX_TOPIC_MIXED, 1), 0);
	put_dead(f, "%DLQ%g", "orders", "a", 0, 1, NULL); /* offset 0: fine */
	put_dead(f, "%DLQ%g", NULL, "b", 0, 1, NULL);	   /* 1: no origin */
	put_dead(f, "%DLQ%g", "gone", "c", 0, 1, NULL);	   /* 2: no such topic */
	put_dead(f, "%DLQ%g", "orders", "d", 0, 1, NULL); /* 3: fine */

	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_SYNC, &err), 2);
	assert_int_equal(err, CFX_EINVAL); /* the first problem: offset 1 has no origin */
	topic_bodies(f, "orders", got, sizeof got);
	assert_string_equal(got, "a-0,d-0");
	/* The two stay: they hold the position at 1, in flight for the redrive group. */
	assert_int_equal(dlq_position(f, "g", &inflight), 1);
	assert_int_equal(inflight, 2);
	/* Not auto-created by the re-drive. */
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("gone"), 0,
					      &(struct cfx_topic_info){ 0 }),
			 CFX_ENOENT);

	/* Hidden for a few seconds: a run right away finds nothing to do. */
	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_SYNC, &err), 0);
	assert_int_equal(err, 0);

	/* The origin topic appears; once visible again, that one goes. */
	assert_int_equal(cfx_broker_topic_create(f->br, "gone", CFX_MSG_NORMAL, 1), 0);
	usleep(5200 * 1000);
	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_SYNC, &err), 1);
	assert_int_equal(err, CFX_EINVAL);
	topic_bodies(f, "gone", got, sizeof got);
	assert_string_equal(got, "c-0");
	assert_int_equal(dlq_position(f, "g", &inflight), 1);
	assert_int_equal(inflight, 1);
}

static void test_origin_types(void **state)
{
	struct fx *f = *state;
	struct cfx_topic_info ti;
	char got[4096];
	int err;

	/* FIFO: the copy keeps its message group, so it lands on the group's queue. */
	assert_int_equal(cfx_broker_topic_create(f->br, "fifo", CFX_MSG_FIFO, 4), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "txn", CFX_MSG_TRANSACTION, 1), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "%DLQ%g", CFX_TOPIC_MIXED, 1), 0);
	put_dead(f, "%DLQ%g", "fifo", "f", 0, 3, "order-7");
	put_dead(f, "%DLQ%g", "txn", "t", 0, 1, NULL);
	assert_int_equal(redrive(f, "g", 1000, CFX_DURABILITY_SYNC, &err), 3);
	assert_int_equal(err, CFX_EINVAL); /* the transactional one stays */
	topic_bodies(f, "fifo", got, sizeof got);
	assert_string_equal(got, "f-0,f-1,f-2");
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("fifo"), 0, &ti), 0);
	int queues_used = 0;
	for (uint32_t q = 0; q < ti.queues; q++) {
		uint64_t start, end;
		cfx_store_queue_bounds(cfx_broker_store(f->br), CFX_VIEW_STR("fifo"), q, &start,
				       &end);
		if (end) {
			assert_int_equal(end, 3);
			queues_used++;
		}
	}
	assert_int_equal(queues_used, 1);
}

static void test_broker_dead_letters(void **state)
{
	struct fx *f = *state;
	struct cfx_group_info gi = { .name = "g" };
	struct cfx_pop_req req = { .group = CFX_VIEW_STR("g"), .topic = CFX_VIEW_STR("orders"),
				   .max_msgs = 16, .invisible_ms = 1 };
	struct cfx_pop_result pr;
	struct cfx_read_result rd;
	struct cfx_view attempts = { 0 };
	struct cfx_prop p;
	size_t cur = 0;
	struct waiter w;
	char got[4096];
	int err;

	/* One attempt, then the broker moves the message to %DLQ%g itself. */
	assert_int_equal(cfx_broker_topic_create(f->br, "orders", CFX_MSG_NORMAL, 1), 0);
	cfx_retry_policy_default(&gi.retry);
	gi.retry.max_attempts = 1;
	assert_int_equal(cfx_broker_group_create(f->br, &gi), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("orders")), 0);
	struct cfx_send_msg m = { .m = { .body = CFX_VIEW_STR("payload"), .key_null = 1,
					 .msg_id = CFX_VIEW_STR("ID-1") },
				  .type = CFX_MSG_NORMAL };
	waiter_init(&w);
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR("orders"), &m, 1,
					 CFX_DURABILITY_SYNC, sent_cb, &w),
			 0);
	waiter_wait(&w);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
	cfx_pop_result_init(&pr);
	assert_int_equal(cfx_broker_pop(f->br, &req, &pr), 0);
	assert_int_equal(pr.count, 1);
	for (int i = 0; i < 200; i++) {
		uint64_t start, end;
		usleep(10 * 1000);
		assert_int_equal(cfx_broker_pop(f->br, &req, &pr), 0);
		assert_int_equal(pr.count, 0);
		cfx_store_queue_bounds(cfx_broker_store(f->br), CFX_VIEW_STR("%DLQ%g"), 0, &start,
				       &end);
		if (end == 1)
			break;
	}
	cfx_pop_result_free(&pr);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
	cfx_read_result_init(&rd);
	assert_int_equal(cfx_store_read(cfx_broker_store(f->br), CFX_VIEW_STR("%DLQ%g"), 0, 0, 1,
					1 << 20, &rd),
			 0);
	assert_int_equal(rd.count, 1);
	while (cfx_msg_view_next_prop(&rd.msgs[0], &cur, &p) == 1)
		if (cfx_view_eq_str(p.name, "DLQ_ATTEMPTS"))
			attempts = p.value;
	assert_true(cfx_view_eq_str(attempts, "1"));
	cfx_read_result_free(&rd);

	/* Re-driven, the group gets it again, as a first attempt. */
	assert_int_equal(redrive(f, "g", 10, CFX_DURABILITY_SYNC, &err), 1);
	assert_int_equal(err, 0);
	topic_bodies(f, "orders", got, sizeof got);
	assert_string_equal(got, "payload,payload");
	req.invisible_ms = 30000;
	cfx_pop_result_init(&pr);
	assert_int_equal(cfx_broker_pop(f->br, &req, &pr), 0);
	assert_int_equal(pr.count, 1);
	assert_int_equal(pr.msgs[0].attempt, 1);
	assert_int_equal(pr.msgs[0].v.offset, 1);
	cfx_pop_result_free(&pr);
}

static void test_many_async(void **state)
{
	struct fx *f = *state;
	struct cfx_topic_info ti;
	uint64_t total = 0;
	int err;

	/* Async sends complete before they return: 500 messages in steps, no recursion. */
	assert_int_equal(cfx_broker_topic_create(f->br, "orders", CFX_MSG_NORMAL, 3), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "%DLQ%big", CFX_TOPIC_MIXED, 1), 0);
	for (int i = 0; i < 500; i += 50)
		put_dead(f, "%DLQ%big", "orders", "m", i, 50, NULL);
	assert_int_equal(redrive(f, "big", 130, CFX_DURABILITY_ASYNC, &err), 130);
	assert_int_equal(err, 0);
	assert_int_equal(redrive(f, "big", 100000, CFX_DURABILITY_ASYNC, &err), 370);
	assert_int_equal(err, 0);
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("orders"), 0, &ti), 0);
	for (uint32_t q = 0; q < ti.queues; q++) {
		uint64_t start, end;
		cfx_store_queue_bounds(cfx_broker_store(f->br), CFX_VIEW_STR("orders"), q, &start,
				       &end);
		total += end;
	}
	assert_int_equal(total, 500);
	assert_int_equal(dlq_position(f, "big", NULL), 500);
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	struct cfx_dlq_position pos;
	char name[130], dlq[CFX_DLQ_NAME_MAX], rg[CFX_DLQ_NAME_MAX];
	struct waiter w;

	waiter_init(&w);
	/* No DLQ, a bad name, nothing to do: refused, and cb is not called. */
	assert_int_equal(cfx_broker_dlq_redrive(f->br, CFX_VIEW_STR("nobody"), 10,
						CFX_DURABILITY_SYNC, redriven_cb, &w),
			 CFX_ENOENT);
	assert_int_equal(cfx_broker_dlq_position(f->br, CFX_VIEW_STR("nobody"), &pos), CFX_ENOENT);
	assert_int_equal(cfx_broker_dlq_redrive(f->br, CFX_VIEW_STR("bad name"), 10,
						CFX_DURABILITY_SYNC, redriven_cb, &w),
			 CFX_EINVAL);
	assert_int_equal(cfx_broker_topic_create(f->br, "%DLQ%g", CFX_TOPIC_MIXED, 1), 0);
	assert_int_equal(cfx_broker_dlq_redrive(f->br, CFX_VIEW_STR("g"), 0, CFX_DURABILITY_SYNC,
						redriven_cb, &w),
			 CFX_EINVAL);
	assert_int_equal(w.done, 0);
	/* An empty DLQ: 0, no error. */
	int err;
	assert_int_equal(redrive(f, "g", 10, CFX_DURABILITY_SYNC, &err), 0);
	assert_int_equal(err, 0);

	/* Names: a group of 111 bytes has a redrive group, one of 112 has not. */
	memset(name, 'x', sizeof name);
	name[111] = '\0';
	assert_int_equal(cfx_broker_dlq_names(CFX_VIEW_STR(name), dlq, rg), 0);
	assert_int_equal(strlen(rg), 120);
	assert_string_equal(dlq + 5, name);
	name[111] = 'x';
	name[112] = '\0';
	assert_int_equal(cfx_broker_dlq_names(CFX_VIEW_STR(name), dlq, rg), CFX_EINVAL);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_redrive_in_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_left_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_origin_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broker_dead_letters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_async, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
