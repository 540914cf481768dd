/*
 * Unit tests for src/broker (pop.c, send.c, meta.c): topics and groups,
 * sending, POP with invisibility, acknowledgement, handles, watches, and
 * recovery of the POP state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "base/err.h"
#include "base/clock.h"
#include "broker/broker.h"
#include "broker/sqlfilter.h"
#include "../store/store_test_util.h"

struct fx {
	char *dir;
	struct cfx_broker_opts o;
	struct cfx_broker *br;
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);

	cfx_log_set_level(CFX_LOG_ERROR);
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

struct sent {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	struct cfx_send_result res[64];
	uint32_t n;
};

static void sent_cb(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct sent *s = arg;
	pthread_mutex_lock(&s->mu);
	memcpy(s->res, res, n * sizeof *res);
	s->n = n;
	s->done = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Sends `n` messages with bodies "<prefix>-<i>" and tag `tag`; waits. */
static void send_n(struct fx *f, const char *topic, const char *prefix, int n, const char *tag,
		   const char *group, struct sent *s)
{
	struct cfx_send_msg m[64];
	char bodies[64][32];

	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	for (int i = 0; i < n; i++) {
		int len = snprintf(bodies[i], sizeof bodies[i], "%s-%d", prefix, i);
		memset(&m[i], 0, sizeof m[i]);
		m[i].m.body = (struct cfx_view){ (uint8_t *)bodies[i], (size_t)len };
		m[i].m.key_null = 1;
		m[i].m.tag = tag ? CFX_VIEW_STR(tag) : (struct cfx_view){ 0 };
		m[i].type = group ? CFX_MSG_FIFO : CFX_MSG_NORMAL;
		m[i].group = group ? CFX_VIEW_STR(group) : (struct cfx_view){ 0 };
	}
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR(topic), m, (uint32_t)n,
					 CFX_DURABILITY_SYNC, sent_cb, s), 0);
	pthread_mutex_lock(&s->mu);
	while (!s->done)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < n; i++)
		assert_int_equal(s->res[i].err, 0);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
}

static uint32_t pop(struct fx *f, const char *group, const char *topic, uint32_t max,
		    int64_t invisible_ms, struct cfx_pop_result *res)
{
	struct cfx_pop_req req = { .group = CFX_VIEW_STR(group), .topic = CFX_VIEW_STR(topic),
				   .max_msgs = max, .invisible_ms = invisible_ms };
	assert_int_equal(cfx_broker_pop(f->br, &req, res), 0);
	return res->count;
}

/* ------------------------------------------------------------------------ */

static void test_topics_persist_and_types(void **state)
{
	struct fx *f = *state;
	struct cfx_topic_info ti;

	assert_int_equal(cfx_broker_topic_create(f->br, "orders", CFX_MSG_FIFO, 3), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "orders", CFX_MSG_FIFO, 3), CFX_EEXIST);
	assert_int_equal(cfx_broker_topic_create(f->br, "bad name", CFX_MSG_FIFO, 3), CFX_ETOPIC);
	assert_int_equal(cfx_broker_topic_create(f->br, "q0", CFX_MSG_NORMAL, 0), CFX_EQUEUE);
	assert_int_equal(cfx_broker_topic_update(f->br, "orders", CFX_MSG_FIFO, 2), CFX_EQUEUE);
	assert_int_equal(cfx_broker_topic_update(f->br, "orders", CFX_TOPIC_MIXED, 5), 0);
	reopen(f);
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("orders"), 0, &ti), 0);
	assert_int_equal(ti.type, CFX_TOPIC_MIXED);
	assert_int_equal(ti.queues, 5);
	/* Auto-creation makes MIXED topics with the default queue count. */
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("auto"), 1, &ti), 0);
	assert_int_equal(ti.type, CFX_TOPIC_MIXED);
	assert_int_equal(ti.queues, 4);
	assert_int_equal(cfx_broker_topic_delete(f->br, "auto"), 0);
	assert_int_equal(cfx_broker_topic_get(f->br, CFX_VIEW_STR("auto"), 0, &ti), CFX_ENOENT);
	assert_true(cfx_broker_type_accepts(CFX_TOPIC_MIXED, CFX_MSG_DELAY));
	assert_false(cfx_broker_type_accepts(CFX_MSG_NORMAL, CFX_MSG_FIFO));
}

static void test_send_chooses_queues(void **state)
{
	struct fx *f = *state;
	struct sent s;
	struct cfx_send_msg m = { .m = { .body = CFX_VIEW_STR("x") }, .type = CFX_MSG_FIFO };

	assert_int_equal(cfx_broker_topic_create(f->br, "plain", CFX_MSG_NORMAL, 4), 0);
	/* A wrong type is refused whole. */
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR("plain"), &m, 1, 0, sent_cb, &s),
			 CFX_EINVAL);
	/* A message group always lands on the same queue, in order. */
	assert_int_equal(cfx_broker_topic_create(f->br, "fifo", CFX_MSG_FIFO, 4), 0);
	send_n(f, "fifo", "g", 5, NULL, "group-A", &s);
	for (int i = 1; i < 5; i++) {
		assert_int_equal(s.res[i].queue, s.res[0].queue);
		assert_int_equal(s.res[i].offset, s.res[0].offset + (uint64_t)i);
	}
	uint32_t qa = s.res[0].queue;
	send_n(f, "fifo", "g", 1, NULL, "group-A", &s);
	assert_int_equal(s.res[0].queue, qa);
	/* Without a group, successive requests go round-robin. */
	uint32_t seen = 0;
	for (int i = 0; i < 8; i++) {
		send_n(f, "plain", "p", 1, NULL, NULL, &s);
		seen |= 1u << s.res[0].queue;
	}
	assert_int_equal(seen, 0xf);
}

static void test_pop_ack_and_positions(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res;
	struct sent s;
	int seen[20] = { 0 };

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "t", CFX_MSG_NORMAL, 4), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g1"), CFX_VIEW_STR("t")), 0);
	for (int b = 0; b < 4; b++)
		send_n(f, "t", "m", 5, NULL, NULL, &s);
	/* Everything once, in two pops; then nothing. */
	uint32_t total = 0;
	while (pop(f, "g1", "t", 12, 30000, &res)) {
		for (uint32_t i = 0; i < res.count; i++) {
			assert_int_equal(res.msgs[i].attempt, 1);
			assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g1"), CFX_VIEW_STR("t"),
							 res.msgs[i].handle), 0);
			/* A second ack of the same handle is refused. */
			assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g1"), CFX_VIEW_STR("t"),
							 res.msgs[i].handle), CFX_EINVAL);
			seen[res.msgs[i].queue * 5 + res.msgs[i].v.offset]++;
		}
		total += res.count;
	}
	assert_int_equal(total, 20);
	for (int i = 0; i < 20; i++)
		assert_int_equal(seen[i], 1);
	for (uint32_t q = 0; q < 4; q++) {
		struct cfx_group_queue_state gs;
		assert_int_equal(cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("g1"),
							      CFX_VIEW_STR("t"), q, &gs), 0);
		assert_int_equal(gs.committed, 5);
		assert_int_equal(gs.end, 5);
		assert_int_equal(gs.inflight, 0);
	}
	/* A second group sees the same messages independently (after a reset to 0). */
	assert_int_equal(cfx_broker_group_reset(f->br, CFX_VIEW_STR("g2"), CFX_VIEW_STR("t"), 0, -1), 0);
	total = 0;
	while (pop(f, "g2", "t", 32, 30000, &res))
		total += res.count;
	assert_int_equal(total, 20);
	cfx_pop_result_free(&res);
}

static void test_invisibility_redelivery_and_change(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res;
	struct sent s;
	char old[CFX_HANDLE_MAX], newh[CFX_HANDLE_MAX];

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "inv", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv")), 0);
	send_n(f, "inv", "x", 1, NULL, NULL, &s);
	assert_int_equal(pop(f, "g", "inv", 1, 200, &res), 1);
	strcpy(old, res.msgs[0].handle);
	/* Invisible meanwhile... */
	assert_int_equal(pop(f, "g", "inv", 1, 200, &res), 0);
	usleep(300000);
	/* ...then delivered again, attempt 2, and the old handle is stale. */
	assert_int_equal(pop(f, "g", "inv", 1, 10000, &res), 1);
	assert_int_equal(res.msgs[0].attempt, 2);
	assert_memory_equal(res.msgs[0].v.body.p, "x-0", 3);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv"), old), CFX_EINVAL);
	/* Change: a new handle; the previous one stops working. */
	strcpy(old, res.msgs[0].handle);
	assert_int_equal(cfx_broker_change_invisible(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv"),
						     old, 0, newh), 0);
	assert_string_not_equal(old, newh);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv"), old), CFX_EINVAL);
	/* Invisible 0 = a negative ack: visible again at once. */
	assert_int_equal(pop(f, "g", "inv", 1, 10000, &res), 1);
	assert_int_equal(res.msgs[0].attempt, 3);
	/* Forged, foreign and garbage handles are refused. */
	strcpy(old, res.msgs[0].handle);
	old[10] = old[10] == 'A' ? 'B' : 'A';
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv"), old), CFX_EINVAL);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("other"), CFX_VIEW_STR("inv"),
					 res.msgs[0].handle), CFX_EINVAL);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv"), "garbage"),
			 CFX_EINVAL);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("inv"),
					 res.msgs[0].handle), 0);
	cfx_pop_result_free(&res);
}

static void test_tag_filter(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res;
	struct sent s;
	const char *tags[] = { "B" };
	struct cfx_pop_req req = { .group = CFX_VIEW_STR("g"), .topic = CFX_VIEW_STR("tags"),
				   .tags = tags, .ntags = 1, .max_msgs = 32, .invisible_ms = 30000 };

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "tags", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("tags")), 0);
	send_n(f, "tags", "a", 3, "A", NULL, &s);
	send_n(f, "tags", "b", 2, "B", NULL, &s);
	send_n(f, "tags", "c", 3, "A", NULL, &s);
	assert_int_equal(cfx_broker_pop(f->br, &req, &res), 0);
	assert_int_equal(res.count, 2);
	for (uint32_t i = 0; i < 2; i++) {
		assert_true(cfx_view_eq_str(res.msgs[i].v.tag, "B"));
		cfx_broker_ack(f->br, req.group, req.topic, res.msgs[i].handle);
	}
	/* Skipped messages count as done: the position is past all eight. */
	struct cfx_group_queue_state gs;
	cfx_broker_group_queue_state(f->br, req.group, req.topic, 0, &gs);
	assert_int_equal(gs.committed, 8);
	cfx_pop_result_free(&res);
}


/* Sends one message with properties (name=value pairs), waits. */
static void send_props(struct fx *f, const char *topic, const char *body, const char *const *kv,
		       uint32_t nkv)
{
	struct cfx_prop props[8];
	struct cfx_send_msg m;
	struct sent s;

	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	for (uint32_t i = 0; i < nkv; i++)
		props[i] = (struct cfx_prop){ CFX_VIEW_STR(kv[2 * i]), CFX_VIEW_STR(kv[2 * i + 1]) };
	memset(&m, 0, sizeof m);
	m.m.body = CFX_VIEW_STR(body);
	m.m.key_null = 1;
	m.m.born_ms = cfx_clock_wall_ms();
	m.m.props = props;
	m.m.prop_count = nkv;
	m.type = CFX_MSG_NORMAL;
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR(topic), &m, 1, CFX_DURABILITY_SYNC,
					 sent_cb, &s), 0);
	pthread_mutex_lock(&s.mu);
	while (!s.done)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	assert_int_equal(s.res[0].err, 0);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
}

static void test_dead_letter_after_max_attempts(void **state)
{
	struct fx *f = *state;
	struct cfx_group_info gi = { .name = "dg" };
	struct cfx_pop_result res;
	struct cfx_read_result rd;
	struct sent s;

	cfx_pop_result_init(&res);
	cfx_retry_policy_default(&gi.retry);
	gi.retry.max_attempts = 2;
	assert_int_equal(cfx_broker_group_create(f->br, &gi), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "dt", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("dg"), CFX_VIEW_STR("dt")), 0);
	send_n(f, "dt", "d", 1, "T", NULL, &s);
	/* Two deliveries, never acknowledged (invisible for 0 ms)... */
	assert_int_equal(pop(f, "dg", "dt", 8, 0, &res), 1);
	assert_int_equal(res.msgs[0].attempt, 1);
	assert_int_equal(pop(f, "dg", "dt", 8, 0, &res), 1);
	assert_int_equal(res.msgs[0].attempt, 2);
	/* ...then the next pop moves it to the dead-letter queue instead. */
	assert_int_equal(pop(f, "dg", "dt", 8, 0, &res), 0);
	cfx_read_result_init(&rd);
	for (int i = 0; i < 500; i++) {
		cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000);
		cfx_read_result_free(&rd);
		cfx_read_result_init(&rd);
		if (cfx_store_read(cfx_broker_store(f->br), CFX_VIEW_STR("%DLQ%dg"), 0, 0, 8, 1 << 20,
				   &rd) == 0 && rd.count)
			break;
		usleep(10000);
	}
	assert_int_equal(rd.count, 1);
	assert_true(cfx_view_eq_str(rd.msgs[0].body, "d-0"));
	assert_true(cfx_view_eq_str(rd.msgs[0].tag, "T"));
	size_t cur = 0;
	struct cfx_prop p;
	int seen = 0;
	while (cfx_msg_view_next_prop(&rd.msgs[0], &cur, &p)) {
		if (cfx_view_eq_str(p.name, "DLQ_ATTEMPTS"))
			seen += cfx_view_eq_str(p.value, "2");
		if (cfx_view_eq_str(p.name, "DLQ_ORIGIN_TOPIC"))
			seen += cfx_view_eq_str(p.value, "dt");
	}
	assert_int_equal(seen, 2);
	cfx_read_result_free(&rd);
	/* Done for the group: never delivered again, the position moved on. */
	struct cfx_group_queue_state gs;
	for (int i = 0; i < 500; i++) {
		cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("dg"), CFX_VIEW_STR("dt"), 0, &gs);
		if (gs.committed == 1)
			break;
		usleep(10000);
	}
	assert_int_equal(gs.committed, 1);
	assert_int_equal(pop(f, "dg", "dt", 8, 0, &res), 0);
	cfx_pop_result_free(&res);
}

static void test_sql_filter_and_ttl(void **state)
{
	struct fx *f = *state;
	struct cfx_sql_filter *sql;
	struct cfx_pop_result res;
	char err[128];
	const char *m1[] = { "a", "7", "b", "x" };
	const char *m2[] = { "a", "3", "b", "x" };
	const char *m3[] = { "a", "9" };
	const char *m4[] = { "a", "8", "b", "x", "CFX_TTL_MS", "1" };
	const char *m5[] = { "a", "6", "b", "x", "CFX_TTL_MS", "3600000" };
	const char *text = "a > 5 AND b = 'x'";

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_sql_compile(text, strlen(text), &sql, err, sizeof err), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "sq", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("sq")), 0);
	send_props(f, "sq", "m1", m1, 2);
	send_props(f, "sq", "m2", m2, 2);
	send_props(f, "sq", "m3", m3, 1);
	send_props(f, "sq", "m4", m4, 3); /* matches, but lives 1 ms */
	send_props(f, "sq", "m5", m5, 3);
	usleep(5000);
	struct cfx_pop_req req = { .group = CFX_VIEW_STR("g"), .topic = CFX_VIEW_STR("sq"),
				   .sql = sql, .max_msgs = 32, .invisible_ms = 30000 };
	assert_int_equal(cfx_broker_pop(f->br, &req, &res), 0);
	assert_int_equal(res.count, 2);
	assert_true(cfx_view_eq_str(res.msgs[0].v.body, "m1"));
	assert_true(cfx_view_eq_str(res.msgs[1].v.body, "m5"));
	cfx_pop_result_free(&res);
	cfx_sql_free(sql);
}


/* Sends one DELAY or TRANSACTION message; waits; returns its result. */
static struct cfx_send_result send_special(struct fx *f, const char *topic, const char *body,
					   int type, int64_t deliver_at)
{
	struct cfx_send_msg m;
	struct sent s;

	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	memset(&m, 0, sizeof m);
	m.m.body = CFX_VIEW_STR(body);
	m.m.key_null = 1;
	m.m.msg_id = CFX_VIEW_STR(body);
	m.type = type;
	m.deliver_at_ms = deliver_at;
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR(topic), &m, 1, CFX_DURABILITY_SYNC,
					 sent_cb, &s), 0);
	pthread_mutex_lock(&s.mu);
	while (!s.done)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	assert_int_equal(s.res[0].err, 0);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
	return s.res[0];
}

/* Pops until `n` messages came or about 10 s passed; returns the count. */
static uint32_t pop_wait(struct fx *f, const char *group, const char *topic, uint32_t n,
			 struct cfx_pop_result *res, int64_t *first_at)
{
	for (int i = 0; i < 1000; i++) {
		if (pop(f, group, topic, 8, 30000, res) >= n || res->count) {
			if (first_at)
				*first_at = cfx_clock_wall_ms();
			return res->count;
		}
		usleep(10000);
	}
	return 0;
}

static void test_delayed_messages(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res;
	int64_t now = cfx_clock_wall_ms(), got;
	char msg_id[64];

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "dl", CFX_MSG_DELAY, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dl")), 0);
	/* Beyond the maximum: refused. */
	struct cfx_send_msg m = { .m = { .body = CFX_VIEW_STR("x"), .key_null = 1 },
				  .type = CFX_MSG_DELAY,
				  .deliver_at_ms = now + f->o.timer_max_ms + 60000 };
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR("dl"), &m, 1, CFX_DURABILITY_ASYNC,
					 sent_cb, NULL),
			 CFX_ERANGE);
	struct cfx_send_result a = send_special(f, "dl", "due-300ms", CFX_MSG_DELAY, now + 300);
	struct cfx_send_result b = send_special(f, "dl", "recalled", CFX_MSG_DELAY, now + 400);
	assert_true(a.handle[0] && b.handle[0]);
	/* A recall handle is bound to its topic. */
	assert_int_equal(cfx_broker_recall(f->br, CFX_VIEW_STR("other"), b.handle, NULL, 0),
			 CFX_EINVAL);
	assert_int_equal(cfx_broker_recall(f->br, CFX_VIEW_STR("dl"), b.handle, msg_id,
					   sizeof msg_id), 0);
	assert_string_equal(msg_id, "recalled");
	assert_int_equal(cfx_broker_recall(f->br, CFX_VIEW_STR("dl"), b.handle, NULL, 0),
			 CFX_ENOENT);
	assert_int_equal(pop(f, "g", "dl", 8, 30000, &res), 0); /* not yet */
	assert_int_equal(pop_wait(f, "g", "dl", 1, &res, &got), 1);
	assert_true(got >= now + 300); /* never early */
	assert_true(cfx_view_eq_str(res.msgs[0].v.body, "due-300ms"));
	cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dl"), res.msgs[0].handle);
	/* A pending timer survives a restart and fires once; the recalled one never. */
	now = cfx_clock_wall_ms();
	send_special(f, "dl", "after-restart", CFX_MSG_DELAY, now + 500);
	reopen(f);
	assert_int_equal(cfx_broker_timers_pending(f->br, NULL), 1);
	assert_int_equal(pop_wait(f, "g", "dl", 1, &res, &got), 1);
	assert_true(got >= now + 500);
	assert_true(cfx_view_eq_str(res.msgs[0].v.body, "after-restart"));
	cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dl"), res.msgs[0].handle);
	usleep(300000);
	reopen(f);
	assert_int_equal(cfx_broker_timers_pending(f->br, NULL), 0);
	usleep(200000);
	assert_int_equal(pop(f, "g", "dl", 8, 30000, &res), 0);
	cfx_pop_result_free(&res);
}

static atomic_int checks;
static char checked_id[CFX_HANDLE_MAX];

static void checker(void *arg, const struct cfx_txn_check *c)
{
	(void)arg;
	if (cfx_view_eq_str(c->msg->body, "open"))
		snprintf(checked_id, sizeof checked_id, "%s", c->txn_id);
	checks++;
}

static void end_cb(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	(void)n;
	*(atomic_int *)arg = res[0].err ? -1 : 1;
}

static void test_transactions(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res;
	atomic_int done = 0;

	f->o.txn_check_first_ms = 200;
	f->o.txn_check_interval_ms = 200;
	f->o.txn_check_max = 1000;
	reopen(f);
	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "tx", CFX_MSG_TRANSACTION, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("tx")), 0);
	struct cfx_send_result c = send_special(f, "tx", "commit", CFX_MSG_TRANSACTION, 0);
	struct cfx_send_result r = send_special(f, "tx", "rollback", CFX_MSG_TRANSACTION, 0);
	send_special(f, "tx", "open", CFX_MSG_TRANSACTION, 0);
	assert_int_equal(pop(f, "g", "tx", 8, 30000, &res), 0); /* half messages are invisible */
	assert_int_equal(cfx_broker_end_transaction(f->br, CFX_VIEW_STR("tx"), r.handle, 0, NULL,
						    NULL), 0);
	assert_int_equal(cfx_broker_end_transaction(f->br, CFX_VIEW_STR("tx"), c.handle, 1, end_cb,
						    &done), 0);
	for (int i = 0; i < 500 && !done; i++)
		usleep(10000);
	assert_int_equal(done, 1);
	/* Resolved once only. */
	assert_int_equal(cfx_broker_end_transaction(f->br, CFX_VIEW_STR("tx"), c.handle, 1, NULL,
						    NULL), CFX_ENOENT);
	assert_int_equal(pop_wait(f, "g", "tx", 1, &res, NULL), 1);
	assert_true(cfx_view_eq_str(res.msgs[0].v.body, "commit"));
	cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("tx"), res.msgs[0].handle);
	/* The open one survives a restart and is checked back; the checker commits it. */
	reopen(f);
	assert_int_equal(cfx_broker_txn_open(f->br), 1);
	cfx_broker_set_txn_checker(f->br, checker, NULL);
	for (int i = 0; i < 1000 && !checks; i++)
		usleep(10000);
	assert_true(checks > 0);
	cfx_broker_set_txn_checker(f->br, NULL, NULL);
	done = 0;
	assert_int_equal(cfx_broker_end_transaction(f->br, CFX_VIEW_STR("tx"), checked_id, 1,
						    end_cb, &done), 0);
	for (int i = 0; i < 500 && !done; i++)
		usleep(10000);
	assert_int_equal(done, 1);
	assert_int_equal(pop_wait(f, "g", "tx", 1, &res, NULL), 1);
	assert_true(cfx_view_eq_str(res.msgs[0].v.body, "open"));
	assert_int_equal(cfx_broker_txn_open(f->br), 0);
	cfx_pop_result_free(&res);
}


static void send_grouped(struct fx *f, const char *topic, const char *body, const char *group)
{
	const char *kv[] = { CFX_PROP_MSG_GROUP, group };
	struct cfx_prop props[1] = { { CFX_VIEW_STR(kv[0]), CFX_VIEW_STR(kv[1]) } };
	struct cfx_send_msg m;
	struct sent s;

	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	memset(&m, 0, sizeof m);
	m.m.body = CFX_VIEW_STR(body);
	m.m.key_null = 1;
	m.m.props = props;
	m.m.prop_count = 1;
	m.type = CFX_MSG_FIFO;
	m.group = CFX_VIEW_STR(group);
	assert_int_equal(cfx_broker_send(f->br, CFX_VIEW_STR(topic), &m, 1, CFX_DURABILITY_SYNC,
					 sent_cb, &s), 0);
	pthread_mutex_lock(&s.mu);
	while (!s.done)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	assert_int_equal(s.res[0].err, 0);
	assert_int_equal(cfx_store_wait_dispatched(cfx_broker_store(f->br), 5000), 0);
}

/* Pops and returns the bodies received, space-separated, in order. */
static const char *pop_bodies(struct fx *f, struct cfx_pop_result *res, int64_t invisible)
{
	static char out[256];
	size_t n = 0;

	out[0] = '\0';
	pop(f, "fg", "ff", 8, invisible, res);
	for (uint32_t i = 0; i < res->count; i++)
		n += (size_t)snprintf(out + n, sizeof out - n, "%s%.*s", i ? " " : "",
				      (int)res->msgs[i].v.body.len, (const char *)res->msgs[i].v.body.p);
	return out;
}

static const char *handle_of(struct cfx_pop_result *res, const char *body)
{
	for (uint32_t i = 0; i < res->count; i++)
		if (cfx_view_eq_str(res->msgs[i].v.body, body))
			return res->msgs[i].handle;
	fail_msg("%s not received", body);
	return NULL;
}

static void test_fifo_order(void **state)
{
	struct fx *f = *state;
	struct cfx_group_info gi = { .name = "fg", .fifo = 1 };
	struct cfx_pop_result res;
	char h[CFX_HANDLE_MAX], nh[CFX_HANDLE_MAX];

	cfx_pop_result_init(&res);
	cfx_retry_policy_default(&gi.retry);
	gi.retry.max_attempts = 3;
	assert_int_equal(cfx_broker_group_create(f->br, &gi), 0);
	assert_int_equal(cfx_broker_topic_create(f->br, "ff", CFX_MSG_FIFO, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff")), 0);
	send_grouped(f, "ff", "A1", "A");
	send_grouped(f, "ff", "B1", "B");
	send_grouped(f, "ff", "A2", "A");
	send_grouped(f, "ff", "B2", "B");
	send_grouped(f, "ff", "A3", "A");
	/* One message per group at a time. */
	assert_string_equal(pop_bodies(f, &res, 30000), "A1 B1");
	snprintf(h, sizeof h, "%s", handle_of(&res, "A1"));
	snprintf(nh, sizeof nh, "%s", handle_of(&res, "B1"));
	assert_string_equal(pop_bodies(f, &res, 30000), "");
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff"), h), 0);
	assert_string_equal(pop_bodies(f, &res, 30000), "A2");
	snprintf(h, sizeof h, "%s", handle_of(&res, "A2"));
	/* A negative acknowledgement: B1 comes again before B2. */
	assert_int_equal(cfx_broker_change_invisible(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff"),
						     nh, 0, nh), 0);
	assert_string_equal(pop_bodies(f, &res, 30000), "B1");
	assert_int_equal(res.msgs[0].attempt, 2);
	snprintf(nh, sizeof nh, "%s", handle_of(&res, "B1"));
	/* The order holds across a restart. */
	reopen(f);
	assert_string_equal(pop_bodies(f, &res, 30000), "");
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff"), nh), 0);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff"), h), 0);
	assert_string_equal(pop_bodies(f, &res, 30000), "B2 A3");
	/* B2 is never acknowledged: after its last attempt it goes to the DLQ and
	 * the group moves on; A3 is acknowledged. */
	snprintf(nh, sizeof nh, "%s", handle_of(&res, "B2"));
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff"),
					handle_of(&res, "A3")), 0);
	assert_int_equal(cfx_broker_change_invisible(f->br, CFX_VIEW_STR("fg"), CFX_VIEW_STR("ff"),
						     nh, 0, nh), 0);
	send_grouped(f, "ff", "B3", "B");
	assert_string_equal(pop_bodies(f, &res, 0), "B2");
	assert_string_equal(pop_bodies(f, &res, 0), "B2");
	assert_int_equal(res.msgs[0].attempt, 3);
	const char *got = "";
	for (int i = 0; i < 500 && !*got; i++) {
		got = pop_bodies(f, &res, 30000);
		if (!*got)
			usleep(10000);
	}
	assert_string_equal(got, "B3");
	cfx_pop_result_free(&res);
}


static void test_renew_keeps_the_handle(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res, again;
	struct sent s;
	char h[CFX_HANDLE_MAX];

	cfx_pop_result_init(&res);
	cfx_pop_result_init(&again);
	assert_int_equal(cfx_broker_topic_create(f->br, "rn", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("rn")), 0);
	send_n(f, "rn", "r", 1, NULL, NULL, &s);
	assert_int_equal(pop(f, "g", "rn", 8, 300, &res), 1);
	snprintf(h, sizeof h, "%s", res.msgs[0].handle);
	assert_int_equal(cfx_broker_renew(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("rn"), h, 5000), 0);
	assert_int_equal(cfx_broker_renew(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("other"), h, 5000),
			 CFX_EINVAL);
	usleep(500000); /* past the first invisible duration */
	assert_int_equal(pop(f, "g", "rn", 8, 300, &again), 0); /* still invisible */
	/* The renewal survives a restart, and the original handle still acks. */
	reopen(f);
	assert_int_equal(pop(f, "g", "rn", 8, 300, &again), 0);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("rn"), h), 0);
	assert_int_equal(cfx_broker_renew(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("rn"), h, 5000),
			 CFX_EINVAL);
	cfx_pop_result_free(&res);
	cfx_pop_result_free(&again);
}

static atomic_int woken;

static void wake_cb(void *arg)
{
	(void)arg;
	woken++;
}

static void test_watch_fires_on_new_message(void **state)
{
	struct fx *f = *state;
	struct sent s;

	assert_int_equal(cfx_broker_topic_create(f->br, "w", CFX_MSG_NORMAL, 1), 0);
	woken = 0;
	uint64_t id = cfx_broker_watch(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("w"), wake_cb, NULL);
	uint64_t id2 = cfx_broker_watch(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("other"), wake_cb, NULL);
	send_n(f, "w", "x", 1, NULL, NULL, &s);
	for (int i = 0; i < 100 && !woken; i++)
		usleep(10000);
	assert_int_equal(woken, 1);
	assert_int_equal(cfx_broker_unwatch(f->br, id), 0);  /* already fired */
	assert_int_equal(cfx_broker_unwatch(f->br, id2), 1); /* never fired */
}

static void test_pop_state_survives_restart_and_crash(void **state)
{
	struct fx *f = *state;
	struct cfx_pop_result res;
	struct sent s;
	char keep[CFX_HANDLE_MAX];

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "dur", CFX_MSG_NORMAL, 1), 0);
	assert_int_equal(cfx_broker_subscribe(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dur")), 0);
	send_n(f, "dur", "d", 6, NULL, NULL, &s);
	assert_int_equal(pop(f, "g", "dur", 6, 60000, &res), 6);
	/* Ack 0, 1, 3; keep 2 in flight with a handle; 4, 5 in flight. */
	for (int i = 0; i < 6; i++)
		if (i == 0 || i == 1 || i == 3)
			assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dur"),
							 res.msgs[i].handle), 0);
	strcpy(keep, res.msgs[2].handle);

	/* A clean restart: the handle still works, acked ones never come back. */
	reopen(f);
	assert_int_equal(pop(f, "g", "dur", 6, 60000, &res), 0);
	assert_int_equal(cfx_broker_ack(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dur"), keep), 0);
	struct cfx_group_queue_state gs;
	cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("g"), CFX_VIEW_STR("dur"), 0, &gs);
	assert_int_equal(gs.committed, 4);
	assert_int_equal(gs.inflight, 2);

	/* A crash (an image of the live directory): the journal restores it. */
	char *imgdir = tu_tmpdir(), img[PATH_MAX];
	snprintf(img, sizeof img, "%s/image", imgdir);
	assert_int_equal(tu_copy_tree(f->dir, img), 0);
	struct cfx_broker_opts o = f->o;
	o.store.dir = img;
	struct cfx_broker *b2;
	assert_int_equal(cfx_broker_open(&o, &b2, NULL), 0);
	cfx_broker_group_queue_state(b2, CFX_VIEW_STR("g"), CFX_VIEW_STR("dur"), 0, &gs);
	assert_int_equal(gs.committed, 4);
	assert_int_equal(gs.next, 6);
	assert_int_equal(gs.inflight, 2);
	cfx_broker_close(b2);
	tu_rmdir(imgdir);
	cfx_pop_result_free(&res);
}

/* A consumer's own commits (Kafka's OffsetCommit): set, clamped, replace
 * what was in flight, survive a crash image, and POP continues there. */
static void test_offset_commit(void **state)
{
	struct fx *f = *state;
	struct cfx_group_queue_state gs;
	struct cfx_pop_result res;
	struct sent s;

	cfx_pop_result_init(&res);
	assert_int_equal(cfx_broker_topic_create(f->br, "oc", CFX_MSG_FIFO, 2), 0);
	for (int i = 0; i < 5; i++)
		send_n(f, "oc", "o", 1, NULL, "k", &s); /* one message group: one queue */
	uint32_t q = s.res[0].queue;
	assert_int_equal(cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"),
						      q, &gs),
			 CFX_ENOENT);
	assert_int_equal(cfx_broker_offset_commit(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q, 3),
			 0);
	assert_int_equal(cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"),
						      q, &gs),
			 0);
	assert_int_equal(gs.committed, 3);
	assert_int_equal(gs.end, 5);
	/* Beyond the end: recorded as the end. Unknown topic and queue: errors. */
	assert_int_equal(cfx_broker_offset_commit(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q, 99),
			 0);
	cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q, &gs);
	assert_int_equal(gs.committed, 5);
	assert_int_equal(cfx_broker_offset_commit(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("nope"), 0, 1),
			 CFX_ENOENT);
	assert_int_equal(cfx_broker_offset_commit(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), 7, 1),
			 CFX_EQUEUE);
	/* Back to 1, with messages in flight: they are forgotten, POP resumes at 1. */
	assert_int_equal(cfx_broker_offset_commit(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q, 1),
			 0);
	assert_int_equal(pop(f, "kg", "oc", 2, 60000, &res), 2);
	assert_int_equal(res.msgs[0].v.offset, 1);
	assert_int_equal(cfx_broker_offset_commit(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q, 2),
			 0);
	cfx_broker_group_queue_state(f->br, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q, &gs);
	assert_int_equal(gs.committed, 2);
	assert_int_equal(gs.inflight, 0);

	/* A crash image of the live directory keeps the commit. */
	char *imgdir = tu_tmpdir(), img[PATH_MAX];
	snprintf(img, sizeof img, "%s/image", imgdir);
	assert_int_equal(tu_copy_tree(f->dir, img), 0);
	struct cfx_broker_opts o = f->o;
	o.store.dir = img;
	struct cfx_broker *b2;
	assert_int_equal(cfx_broker_open(&o, &b2, NULL), 0);
	assert_int_equal(cfx_broker_group_queue_state(b2, CFX_VIEW_STR("kg"), CFX_VIEW_STR("oc"), q,
						      &gs),
			 0);
	assert_int_equal(gs.committed, 2);
	assert_int_equal(gs.next, 2);
	cfx_broker_close(b2);
	tu_rmdir(imgdir);
	cfx_pop_result_free(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offset_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_topics_persist_and_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_chooses_queues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pop_ack_and_positions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invisibility_redelivery_and_change, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tag_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_after_max_attempts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sql_filter_and_ttl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delayed_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renew_keeps_the_handle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_fires_on_new_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pop_state_survives_restart_and_crash, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
