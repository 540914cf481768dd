/*
 * Unit tests for src/proto/mqtt/topic_tree.c: filter and topic validation,
 * the matching rules of MQTT 5.0 section 4.7 (checked both on the pure
 * helper and on the tree), replace/unsubscribe/remove_session, shared
 * subscriptions, the children and subscriber-list shapes, concurrent
 * matching while the tree changes, and 200k subscriptions in and out with
 * the memory back to its baseline.
 *
 * Sessions are addresses in the array `sess`: the tree never dereferences
 * them, the tests compare them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <cmocka.h>

#include "base/err.h"
#include "proto/mqtt/topic_tree.h"

static char sess[64];
#define S(i) ((void *)&sess[(i)])

#define V(s) CFX_VIEW_STR(s)

/* What one mqtt_tree_match() delivered. */
struct got {
	size_t n;
	void *session[64];
	uint32_t sub_id[64];
	uint8_t qos[64];
	int shared[64];
};

static void collect(void *arg, const struct mqtt_sub *s, int shared)
{
	struct got *g = arg;

	if (g->n < 64) {
		g->session[g->n] = s->session;
		g->sub_id[g->n] = s->sub_id;
		g->qos[g->n] = s->qos;
		g->shared[g->n] = shared;
	}
	g->n++;
}

static struct got match(struct mqtt_tree *t, const char *topic)
{
	struct got g = { 0 };
	int rc = mqtt_tree_match(t, V(topic), collect, &g, NULL);

	assert_int_equal(rc, (int)g.n);
	return g;
}

static int sub(struct mqtt_tree *t, const char *filter, int session, uint32_t sub_id, uint8_t qos)
{
	struct mqtt_sub s = { .session = S(session), .sub_id = sub_id, .qos = qos };

	return mqtt_tree_subscribe(t, V(filter), &s);
}

/* ------------------------------------------------------------------------
 * Matching rules (MQTT 5.0 section 4.7)
 * ------------------------------------------------------------------------ */

static const struct {
	const char *filter, *topic;
	int matches;
} cases[] = {
	/* 4.7.1.2 multi-level wildcard */
	{ "sport/tennis/player1/#", "sport/tennis/player1", 1 },
	{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", 1 },
	{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1 },
	{ "sport/tennis/player1/#", "sport/tennis/player2", 0 },
	{ "sport/tennis/player1/#", "sport/tennis", 0 },
	{ "sport/#", "sport", 1 },
	{ "sport/#", "sports", 0 },
	{ "#", "sport/tennis", 1 },
	{ "#", "/", 1 },
	/* 4.7.1.3 single-level wildcard */
	{ "sport/tennis/+", "sport/tennis/player1", 1 },
	{ "sport/tennis/+", "sport/tennis/player2", 1 },
	{ "sport/tennis/+", "sport/tennis/player1/ranking", 0 },
	{ "sport/+", "sport", 0 },
	{ "sport/+", "sport/", 1 },
	{ "+/+", "/finance", 1 },
	{ "/+", "/finance", 1 },
	{ "+", "/finance", 0 },
	{ "+/tennis/#", "sport/tennis", 1 },
	{ "+/tennis/#", "sport/tennis/x/y", 1 },
	{ "+/#", "a", 1 },
	/* 4.7.2 topics beginning with $ */
	{ "#", "$SYS/x", 0 },
	{ "#", "$SYS", 0 },
	{ "+/monitor/Clients", "$SYS/monitor/Clients", 0 },
	{ "$SYS/#", "$SYS/monitor/Clients", 1 },
	{ "$SYS/#", "$SYS", 1 },
	{ "$SYS/monitor/+", "$SYS/monitor/Clients", 1 },
	{ "a/#", "a/$b", 1 },
	{ "a/+", "a/$b", 1 },
	/* 4.7.3 semantics: case, spaces, empty levels, leading '/' */
	{ "ACCOUNTS", "Accounts", 0 },
	{ "Accounts payable", "Accounts payable", 1 },
	{ "/finance", "finance", 0 },
	{ "finance", "/finance", 0 },
	{ "a//b", "a//b", 1 },
	{ "a/+/b", "a//b", 1 },
	{ "a/b", "a//b", 0 },
	{ "a//b", "a/b", 0 },
	{ "a/+", "a//b", 0 },
	{ "a/#", "a//b", 1 },
	{ "+/+/+", "//", 1 },
	{ "a/b/c", "a/b/c", 1 },
	{ "a/b/c", "a/b", 0 },
	{ "a/b", "a/b/c", 0 },
	/* the share prefix is not part of the filter */
	{ "$share/g/sport/#", "sport/x", 1 },
	{ "$share/g/#", "$SYS/x", 0 },
};

static void test_matches_pure(void **state)
{
	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		int m = mqtt_topic_matches(V(cases[i].filter), V(cases[i].topic));

		if (m != cases[i].matches)
			fail_msg("'%s' vs '%s': %d", cases[i].filter, cases[i].topic, m);
	}
	/* Invalid inputs never match. */
	assert_int_equal(mqtt_topic_matches(V("a/#/b"), V("a/x/b")), 0);
	assert_int_equal(mqtt_topic_matches(V("#"), V("a/+")), 0);
	assert_int_equal(mqtt_topic_matches(V("#"), V("")), 0);
}

static void test_matches_tree(void **state)
{
	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct mqtt_tree *t = mqtt_tree_new();
		struct got g;

		assert_int_equal(sub(t, cases[i].filter, 1, 7, 1), 1);
		g = match(t, cases[i].topic);
		if (g.n != (size_t)cases[i].matches)
			fail_msg("tree: '%s' vs '%s': %zu", cases[i].filter, cases[i].topic, g.n);
		if (g.n) {
			assert_ptr_equal(g.session[0], S(1));
			assert_int_equal(g.sub_id[0], 7);
		}
		mqtt_tree__check(t);
		mqtt_tree_free(t);
	}

	/* All filters in one tree: each topic gets exactly its matching ones. */
	struct mqtt_tree *t = mqtt_tree_new();

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct mqtt_sub s = { .session = S(i % 64), .sub_id = (uint32_t)i + 1 };

		/* Same filter twice in the table: give each its own session. */
		assert_true(mqtt_tree_subscribe(t, V(cases[i].filter), &s) >= 0);
	}
	mqtt_tree__check(t);
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		size_t want = 0;
		struct got g = match(t, cases[i].topic);
		int seen[CFX_ARRAY_LEN(cases)] = { 0 };

		/* Expected: every distinct (filter, session) that matches. */
		for (size_t j = 0; j < CFX_ARRAY_LEN(cases); j++) {
			int dup = 0;

			for (size_t k = 0; k < j; k++)
				if (strcmp(cases[k].filter, cases[j].filter) == 0 && k % 64 == j % 64)
					dup = 1;
			if (!dup && mqtt_topic_matches(V(cases[j].filter), V(cases[i].topic)))
				want++;
		}
		assert_int_equal(g.n, want);
		for (size_t k = 0; k < g.n && k < 64; k++) {
			uint32_t id = g.sub_id[k];

			assert_true(id >= 1 && id <= CFX_ARRAY_LEN(cases));
			assert_true(mqtt_topic_matches(V(cases[id - 1].filter), V(cases[i].topic)));
			assert_int_equal(seen[id - 1], 0);
			seen[id - 1] = 1;
		}
	}
	mqtt_tree_free(t);
}

static void test_long_topics(void **state)
{
	struct mqtt_tree *t = mqtt_tree_new();
	size_t len = 60001;
	char *topic = malloc(len + 1), *filter = malloc(2 * MQTT_FILTER_LEVELS_MAX + 2);
	struct got g;
	(void)state;

	/* 30,001 levels: deeper than any filter, so only '#' reaches it. */
	for (size_t i = 0; i < len; i++)
		topic[i] = (i % 2) ? '/' : 'x';
	topic[len] = '\0';
	assert_int_equal(sub(t, "x/#", 1, 0, 0), 1);
	assert_int_equal(sub(t, "x/+/x", 2, 0, 0), 1);
	g = match(t, topic);
	assert_int_equal(g.n, 1);
	assert_ptr_equal(g.session[0], S(1));

	/* Exactly MQTT_FILTER_LEVELS_MAX levels is accepted, one more is not. */
	for (size_t i = 0; i < 2 * MQTT_FILTER_LEVELS_MAX - 1; i++)
		filter[i] = (i % 2) ? '/' : (i == 0 ? 'x' : '+');
	filter[2 * MQTT_FILTER_LEVELS_MAX - 1] = '\0';
	assert_int_equal(mqtt_filter_is_valid(V(filter)), 1);
	assert_int_equal(sub(t, filter, 3, 0, 0), 1);
	topic[2 * MQTT_FILTER_LEVELS_MAX - 1] = '\0';
	g = match(t, topic);
	assert_int_equal(g.n, 2); /* x/# and the 128-level filter */
	strcat(filter, "/y");
	assert_int_equal(mqtt_filter_is_valid(V(filter)), 0);
	assert_int_equal(sub(t, filter, 3, 0, 0), CFX_EINVAL);

	mqtt_tree__check(t);
	mqtt_tree_free(t);
	free(topic);
	free(filter);
}

/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------ */

static void test_validation(void **state)
{
	static const char *const bad[] = {
		"", "a/#/b", "a+", "#a", "a/b#", "+a/b", "a/+b", "sport/tennis#", "##", "++",
		"$share/g", "$share/g/", "$share//x", "$share/g+/x", "$share/g#/x", "$share/",
		"$share/g/a/#/b",
	};
	static const char *const good[] = {
		"#", "+", "/", "//", "a", "a/b", "+/+", "/+", "a/+/b/#", "$SYS/#", "$share",
		"$shared/x", "$share/g/x", "$share/g/#", "$share/g/+/a", "$share/group-1/$SYS/x",
		"a b/c", "a//b",
	};
	struct mqtt_tree *t = mqtt_tree_new();
	struct mqtt_sub s = { .session = S(1) };
	size_t base = mqtt_tree_memory(t);
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		if (mqtt_filter_is_valid(V(bad[i])))
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(mqtt_tree_subscribe(t, V(bad[i]), &s), CFX_EINVAL);
		assert_int_equal(mqtt_tree_unsubscribe(t, V(bad[i]), S(1)), 0);
	}
	assert_int_equal(mqtt_tree_count(t), 0);
	assert_int_equal(mqtt_tree_memory(t), base);
	for (size_t i = 0; i < CFX_ARRAY_LEN(good); i++) {
		if (!mqtt_filter_is_valid(V(good[i])))
			fail_msg("'%s' refused", good[i]);
		assert_int_equal(mqtt_tree_subscribe(t, V(good[i]), &s), 1);
	}
	assert_int_equal(mqtt_tree_count(t), CFX_ARRAY_LEN(good));
	mqtt_tree__check(t);

	/* NUL is never allowed; the length limit holds. */
	assert_int_equal(mqtt_filter_is_valid((struct cfx_view){ (const uint8_t *)"a\0b", 3 }), 0);
	assert_int_equal(mqtt_topic_is_valid((struct cfx_view){ (const uint8_t *)"a\0b", 3 }), 0);
	char *big = malloc(MQTT_FILTER_BYTES_MAX + 2);
	memset(big, 'a', MQTT_FILTER_BYTES_MAX + 1);
	big[MQTT_FILTER_BYTES_MAX + 1] = '\0';
	assert_int_equal(mqtt_topic_is_valid(V(big)), 0);
	assert_int_equal(mqtt_filter_is_valid(V(big)), 0);
	big[MQTT_FILTER_BYTES_MAX] = '\0';
	assert_int_equal(mqtt_topic_is_valid(V(big)), 1);
	assert_int_equal(mqtt_filter_is_valid(V(big)), 1);
	free(big);

	/* Topic names: no wildcards, not empty. */
	assert_int_equal(mqtt_topic_is_valid(V("a/b")), 1);
	assert_int_equal(mqtt_topic_is_valid(V("/")), 1);
	assert_int_equal(mqtt_topic_is_valid(V("$SYS/x")), 1);
	assert_int_equal(mqtt_topic_is_valid(V("")), 0);
	assert_int_equal(mqtt_topic_is_valid(V("a/+")), 0);
	assert_int_equal(mqtt_topic_is_valid(V("a/#")), 0);
	assert_int_equal(mqtt_tree_match(t, V("a/+"), collect, &(struct got){ 0 }, NULL), CFX_EINVAL);

	/* Options out of range. */
	s.qos = 3;
	assert_int_equal(mqtt_tree_subscribe(t, V("q"), &s), CFX_EINVAL);
	s.qos = 2;
	s.retain_handling = 3;
	assert_int_equal(mqtt_tree_subscribe(t, V("q"), &s), CFX_EINVAL);
	mqtt_tree_free(t);
}

/* ------------------------------------------------------------------------
 * Subscribe, replace, unsubscribe, remove_session
 * ------------------------------------------------------------------------ */

static void test_replace_and_unsubscribe(void **state)
{
	struct mqtt_tree *t = mqtt_tree_new();
	size_t base = mqtt_tree_memory(t);
	struct got g;
	(void)state;

	assert_int_equal(sub(t, "a/b", 1, 10, 0), 1);
	assert_int_equal(sub(t, "a/b", 1, 11, 2), 0); /* same session, same filter */
	assert_int_equal(mqtt_tree_count(t), 1);
	g = match(t, "a/b");
	assert_int_equal(g.n, 1);
	assert_int_equal(g.sub_id[0], 11);
	assert_int_equal(g.qos[0], 2);

	assert_int_equal(sub(t, "a/b", 2, 20, 1), 1);	      /* another session */
	assert_int_equal(sub(t, "$share/g/a/b", 1, 30, 1), 1); /* shared: distinct */
	assert_int_equal(sub(t, "$share/h/a/b", 1, 40, 1), 1); /* another group */
	assert_int_equal(sub(t, "$share/g/a/b", 1, 31, 0), 0);
	assert_int_equal(mqtt_tree_count(t), 4);
	g = match(t, "a/b");
	assert_int_equal(g.n, 4);
	mqtt_tree__check(t);

	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/b"), S(1)), 1);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/b"), S(1)), 0);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/c"), S(2)), 0);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a"), S(2)), 0);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/b/c"), S(2)), 0);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("$share/x/a/b"), S(1)), 0);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("$share/g/a/b"), S(2)), 0);
	g = match(t, "a/b");
	assert_int_equal(g.n, 3);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("$share/g/a/b"), S(1)), 1);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("$share/h/a/b"), S(1)), 1);
	g = match(t, "a/b");
	assert_int_equal(g.n, 1);
	assert_ptr_equal(g.session[0], S(2));
	assert_int_equal(g.shared[0], 0);
	mqtt_tree__check(t);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/b"), S(2)), 1);
	assert_int_equal(mqtt_tree_count(t), 0);
	assert_int_equal(mqtt_tree_memory(t), base);

	/* Wildcard nodes are pruned too, while a sibling stays. */
	assert_int_equal(sub(t, "a/+/c/#", 1, 0, 0), 1);
	assert_int_equal(sub(t, "a/+", 1, 0, 0), 1);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/+/c/#"), S(1)), 1);
	mqtt_tree__check(t);
	assert_int_equal(match(t, "a/x").n, 1);
	assert_int_equal(mqtt_tree_unsubscribe(t, V("a/+"), S(1)), 1);
	assert_int_equal(mqtt_tree_memory(t), base);
	mqtt_tree_free(t);
}

static void test_remove_session(void **state)
{
	static const char *const filters[] = {
		"a/b", "a/#", "+/b", "$share/g/a/b", "x/y/z", "never/subscribed",
	};
	struct cfx_view fv[CFX_ARRAY_LEN(filters)];
	struct mqtt_tree *t = mqtt_tree_new();
	size_t base = mqtt_tree_memory(t), with_other;
	struct got g;
	(void)state;

	assert_int_equal(sub(t, "a/b", 2, 0, 0), 1);
	assert_int_equal(sub(t, "$share/g/a/b", 2, 0, 0), 1);
	with_other = mqtt_tree_memory(t);
	for (size_t i = 0; i + 1 < CFX_ARRAY_LEN(filters); i++)
		assert_int_equal(sub(t, filters[i], 1, (uint32_t)i + 1, 1), 1);
	for (size_t i = 0; i < CFX_ARRAY_LEN(filters); i++)
		fv[i] = V(filters[i]);
	assert_int_equal(mqtt_tree_count(t), 7);

	assert_int_equal(mqtt_tree_remove_session(t, S(1), fv, CFX_ARRAY_LEN(fv)), 5);
	assert_int_equal(mqtt_tree_count(t), 2);
	/* Session 1's nodes are gone; the two shared lists keep their grown
	 * capacity (they shrink at a quarter full). */
	assert_true(mqtt_tree_memory(t) <= with_other + 2 * sizeof(struct mqtt_sub));
	mqtt_tree__check(t);
	g = match(t, "a/b");
	assert_int_equal(g.n, 2);
	assert_ptr_equal(g.session[0], S(2));
	assert_ptr_equal(g.session[1], S(2));
	assert_int_equal(mqtt_tree_remove_session(t, S(1), fv, CFX_ARRAY_LEN(fv)), 0);
	assert_int_equal(mqtt_tree_remove_session(t, S(2), fv, CFX_ARRAY_LEN(fv)), 2);
	assert_int_equal(mqtt_tree_memory(t), base);
	mqtt_tree_free(t);
}

static void test_one_session_many_matches(void **state)
{
	struct mqtt_tree *t = mqtt_tree_new();
	uint32_t ids = 0;
	struct got g;
	(void)state;

	assert_int_equal(sub(t, "a/+", 1, 1, 0), 1);
	assert_int_equal(sub(t, "a/#", 1, 2, 2), 1);
	assert_int_equal(sub(t, "a/b", 1, 4, 1), 1);
	assert_int_equal(sub(t, "#", 1, 8, 0), 1);
	assert_int_equal(sub(t, "a/c", 1, 16, 0), 1);
	g = match(t, "a/b");
	assert_int_equal(g.n, 4);
	for (size_t i = 0; i < g.n; i++) {
		assert_ptr_equal(g.session[i], S(1));
		assert_int_equal(g.shared[i], 0);
		ids |= g.sub_id[i];
	}
	assert_int_equal(ids, 1 | 2 | 4 | 8);
	mqtt_tree_free(t);
}

/* ------------------------------------------------------------------------
 * Shared subscriptions
 * ------------------------------------------------------------------------ */

struct counts {
	size_t per[64];
	size_t shared, plain;
};

static void count_cb(void *arg, const struct mqtt_sub *s, int shared)
{
	struct counts *c = arg;

	c->per[(char *)s->session - sess]++;
	if (shared)
		c->shared++;
	else
		c->plain++;
}

static int unavailable[64];

static int is_available(void *session)
{
	return !unavailable[(char *)session - sess];
}

static void test_shared_round_robin(void **state)
{
	struct mqtt_tree *t = mqtt_tree_new();
	struct counts c = { 0 };
	(void)state;

	for (int i = 1; i <= 3; i++)
		assert_int_equal(sub(t, "$share/g/m/+", i, 0, 1), 1);
	assert_int_equal(sub(t, "$share/h/m/#", 4, 0, 1), 1); /* a group of one */
	assert_int_equal(sub(t, "m/x", 5, 0, 1), 1);	       /* not shared */
	for (int k = 0; k < 300; k++)
		assert_int_equal(mqtt_tree_match(t, V("m/x"), count_cb, &c, is_available), 3);
	assert_int_equal(c.per[1], 100);
	assert_int_equal(c.per[2], 100);
	assert_int_equal(c.per[3], 100);
	assert_int_equal(c.per[4], 300);
	assert_int_equal(c.per[5], 300);
	assert_int_equal(c.shared, 600);
	assert_int_equal(c.plain, 300);

	/* An unavailable member is skipped while another is available. */
	memset(&c, 0, sizeof c);
	unavailable[2] = 1;
	for (int k = 0; k < 300; k++)
		mqtt_tree_match(t, V("m/y"), count_cb, &c, is_available);
	assert_int_equal(c.per[2], 0);
	assert_int_equal(c.per[1] + c.per[3], 300);
	assert_true(c.per[1] >= 100 && c.per[3] >= 100);

	/* None available: the message still goes to one (round robin). */
	memset(&c, 0, sizeof c);
	unavailable[1] = unavailable[2] = unavailable[3] = unavailable[4] = 1;
	for (int k = 0; k < 300; k++)
		mqtt_tree_match(t, V("m/y"), count_cb, &c, is_available);
	assert_int_equal(c.per[1], 100);
	assert_int_equal(c.per[2], 100);
	assert_int_equal(c.per[3], 100);
	assert_int_equal(c.per[4], 300);
	memset(unavailable, 0, sizeof unavailable);

	/* A member leaving: the others share everything. */
	assert_int_equal(mqtt_tree_unsubscribe(t, V("$share/g/m/+"), S(2)), 1);
	memset(&c, 0, sizeof c);
	for (int k = 0; k < 300; k++)
		mqtt_tree_match(t, V("m/y"), count_cb, &c, NULL);
	assert_int_equal(c.per[1], 150);
	assert_int_equal(c.per[3], 150);
	mqtt_tree__check(t);
	mqtt_tree_free(t);
}

/* ------------------------------------------------------------------------
 * Shapes: children 0 -> 1 -> few -> table and back; indexed subscriber lists
 * ------------------------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void shuffle(int *a, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(rnd() % (uint64_t)(i + 1)), x = a[i];

		a[i] = a[j];
		a[j] = x;
	}
}

static void test_children_shapes(void **state)
{
	enum { N = 300 };
	struct mqtt_tree *t = mqtt_tree_new();
	size_t base = mqtt_tree_memory(t);
	int order[N], in[N] = { 0 };
	char name[32];
	(void)state;

	for (int i = 0; i < N; i++)
		order[i] = i;
	for (int round = 0; round < 3; round++) {
		shuffle(order, N);
		for (int k = 0; k < N; k++) {
			int i = order[k];

			snprintf(name, sizeof name, "p/%d", i);
			if (in[i]) {
				assert_int_equal(mqtt_tree_unsubscribe(t, V(name), S(1)), 1);
			} else {
				assert_int_equal(sub(t, name, 1, (uint32_t)i, 0), 1);
			}
			in[i] = !in[i];
			if (k % 7 == 0 || k < 20 || N - k < 20)
				mqtt_tree__check(t);
			/* Every present child is found, absent ones are not. */
			for (int j = 0; j < N; j += 13) {
				snprintf(name, sizeof name, "p/%d", j);
				assert_int_equal(match(t, name).n, (size_t)in[j]);
			}
		}
	}
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof name, "p/%d", i);
		if (in[i])
			assert_int_equal(mqtt_tree_unsubscribe(t, V(name), S(1)), 1);
	}
	assert_int_equal(mqtt_tree_memory(t), base);
	mqtt_tree_free(t);
}

static void count_only(void *arg, const struct mqtt_sub *s, int shared)
{
	(void)s;
	(void)shared;
	(*(size_t *)arg)++;
}

static void test_many_subscribers_one_filter(void **state)
{
	enum { N = 5000 };
	struct mqtt_tree *t = mqtt_tree_new();
	size_t base = mqtt_tree_memory(t);
	char *many = malloc(N);
	int order[N];
	struct mqtt_sub s = { 0 };
	size_t calls = 0;
	(void)state;

	for (int i = 0; i < N; i++) {
		order[i] = i;
		s.session = many + i;
		s.sub_id = (uint32_t)i;
		assert_int_equal(mqtt_tree_subscribe(t, V("all/#"), &s), 1);
		s.qos = 1;
		assert_int_equal(mqtt_tree_subscribe(t, V("all/#"), &s), 0);
		s.qos = 0;
		assert_int_equal(mqtt_tree_subscribe(t, V("$share/g/all/#"), &s), 1);
	}
	mqtt_tree__check(t);
	assert_int_equal(mqtt_tree_match(t, V("all/x"), count_only, &calls, NULL), N + 1);
	assert_int_equal(calls, N + 1);
	shuffle(order, N);
	for (int k = 0; k < N; k++) {
		assert_int_equal(mqtt_tree_unsubscribe(t, V("all/#"), many + order[k]), 1);
		assert_int_equal(mqtt_tree_unsubscribe(t, V("all/#"), many + order[k]), 0);
		if (k % 500 == 0)
			mqtt_tree__check(t);
	}
	for (int k = 0; k < N; k++)
		assert_int_equal(mqtt_tree_unsubscribe(t, V("$share/g/all/#"), many + k), 1);
	assert_int_equal(mqtt_tree_count(t), 0);
	assert_int_equal(mqtt_tree_memory(t), base);
	mqtt_tree_free(t);
	free(many);
}

/* ------------------------------------------------------------------------
 * Concurrency: 4 matching threads while one thread changes the tree
 * ------------------------------------------------------------------------ */

struct conc {
	struct mqtt_tree *t;
	int stop;	 /* atomic */
	size_t errors;	 /* atomic */
	size_t matches;	 /* atomic */
};

static void conc_cb(void *arg, const struct mqtt_sub *s, int shared)
{
	size_t *n = arg;

	(void)shared;
	if ((char *)s->session >= sess && (char *)s->session < sess + sizeof sess)
		(*n)++;
	else
		*n += 1000000;
}

static void *matcher(void *arg)
{
	struct conc *c = arg;
	uint64_t x = (uint64_t)(uintptr_t)&x;
	char topic[32];

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		size_t n = 0;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* The stable subscriptions: exactly 2 on "c/stable", 1 shared. */
		mqtt_tree_match(c->t, V("c/stable"), conc_cb, &n, NULL);
		if (n != 2)
			__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED);
		snprintf(topic, sizeof topic, "c/%u/x", (unsigned)(x % 512));
		n = 0;
		mqtt_tree_match(c->t, V(topic), conc_cb, &n, NULL);
		if (n >= 1000000)
			__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->matches, 2, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_concurrency(void **state)
{
	struct conc c = { .t = mqtt_tree_new() };
	pthread_t th[4];
	char f[64];
	(void)state;

	assert_int_equal(sub(c.t, "c/stable", 0, 0, 0), 1);
	assert_int_equal(sub(c.t, "$share/g/c/stable", 1, 0, 0), 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, matcher, &c), 0);
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 512; i++) {
			snprintf(f, sizeof f, (i % 3) ? "c/%d/x" : "$share/s%d/c/+/x", i);
			assert_int_equal(sub(c.t, f, 2 + i % 60, (uint32_t)i, 1), 1);
		}
		assert_int_equal(sub(c.t, "c/+/x/#", 63, 0, 0), 1);
		for (int i = 0; i < 512; i++) {
			snprintf(f, sizeof f, (i % 3) ? "c/%d/x" : "$share/s%d/c/+/x", i);
			assert_int_equal(mqtt_tree_unsubscribe(c.t, V(f), S(2 + i % 60)), 1);
		}
		assert_int_equal(mqtt_tree_unsubscribe(c.t, V("c/+/x/#"), S(63)), 1);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(c.errors, 0);
	assert_true(c.matches > 0);
	assert_int_equal(mqtt_tree_count(c.t), 2);
	mqtt_tree__check(c.t);
	mqtt_tree_free(c.t);
}

/* ------------------------------------------------------------------------
 * Scale: 200k subscriptions in and out
 * ------------------------------------------------------------------------ */

static void test_scale(void **state)
{
	enum { N = 200000 };
	struct mqtt_tree *t = mqtt_tree_new();
	size_t base = mqtt_tree_memory(t), full;
	char f[48];
	struct got g;
	(void)state;

	for (int i = 0; i < N; i++) {
		snprintf(f, sizeof f, "dev/%d/cmd", i);
		assert_int_equal(sub(t, f, i % 64, (uint32_t)i, 1), 1);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(f, sizeof f, "dev/%d/#", i * 1000);
		assert_int_equal(sub(t, f, i % 64, 0, 0), 1);
	}
	assert_int_equal(sub(t, "dev/+/cmd", 0, 0, 0), 1);
	assert_int_equal(mqtt_tree_count(t), N + 101);
	assert_int_equal(mqtt_tree__check(t), N + 101);
	full = mqtt_tree_memory(t);
	print_message("200k+101 subscriptions: %zu bytes, %.1f bytes/subscription\n", full,
		      (double)(full - base) / (N + 101));
	assert_true((full - base) / (N + 101) < 200);

	g = match(t, "dev/5000/cmd");
	assert_int_equal(g.n, 3);
	g = match(t, "dev/5001/cmd");
	assert_int_equal(g.n, 2);
	assert_int_equal(g.sub_id[0] + g.sub_id[1], 5001);
	g = match(t, "dev/200000/cmd");
	assert_int_equal(g.n, 1);

	/* Out in another order than in. */
	for (int i = N - 1; i >= 0; i -= 2) {
		snprintf(f, sizeof f, "dev/%d/cmd", i);
		assert_int_equal(mqtt_tree_unsubscribe(t, V(f), S(i % 64)), 1);
	}
	mqtt_tree__check(t);
	for (int i = N - 2; i >= 0; i -= 2) {
		snprintf(f, sizeof f, "dev/%d/cmd", i);
		assert_int_equal(mqtt_tree_unsubscribe(t, V(f), S(i % 64)), 1);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(f, sizeof f, "dev/%d/#", i * 1000);
		assert_int_equal(mqtt_tree_unsubscribe(t, V(f), S(i % 64)), 1);
	}
	assert_int_equal(mqtt_tree_unsubscribe(t, V("dev/+/cmd"), S(0)), 1);
	assert_int_equal(mqtt_tree_count(t), 0);
	assert_int_equal(mqtt_tree__check(t), 0);
	assert_int_equal(mqtt_tree_memory(t), base);
	assert_int_equal(match(t, "dev/1/cmd").n, 0);
	mqtt_tree_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_pure),
		cmocka_unit_test(test_matches_tree),
		cmocka_unit_test(test_long_topics),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_replace_and_unsubscribe),
		cmocka_unit_test(test_remove_session),
		cmocka_unit_test(test_one_session_many_matches),
		cmocka_unit_test(test_shared_round_robin),
		cmocka_unit_test(test_children_shapes),
		cmocka_unit_test(test_many_subscribers_one_filter),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_scale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
