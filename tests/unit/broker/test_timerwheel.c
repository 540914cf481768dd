/* Unit tests for src/broker/timerwheel.c, on a simulated clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "broker/timerwheel.h"

struct log {
	uint64_t *ids;
	int64_t *fired_at;
	size_t n, cap;
	int64_t now;
	int64_t start; /* lateness counts for timers due after this */
	int64_t max_late, min_late;
	int early;
};

static void fire(void *arg, uint64_t id, int64_t due)
{
	struct log *l = arg;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->ids = realloc(l->ids, l->cap * sizeof *l->ids);
		l->fired_at = realloc(l->fired_at, l->cap * sizeof *l->fired_at);
	}
	l->ids[l->n] = id;
	l->fired_at[l->n] = l->now;
	l->n++;
	if (l->now < due)
		l->early++;
	if (due >= l->start && l->now - due > l->max_late)
		l->max_late = l->now - due;
}

static void advance_to(struct cfx_twheel *w, struct log *l, int64_t to, int64_t step)
{
	while (l->now < to) {
		l->now += step;
		cfx_twheel_advance(w, l->now, fire, l);
	}
}

static void test_fires_once_never_early_within_a_tick(void **state)
{
	int64_t start = 1700000000000;
	struct cfx_twheel *w = cfx_twheel_new(100, start);
	struct log l = { .now = start, .start = start };
	(void)state;

	/* Delays from 0 to 3 days, some identical, some in the past. */
	srand(7);
	for (uint64_t i = 0; i < 20000; i++) {
		int64_t d = (i % 10 == 0) ? -5000 : (int64_t)(((uint64_t)rand() << 16 ^ (uint64_t)rand()) %
							      (3LL * 86400 * 1000));
		cfx_twheel_add(w, start + d, i);
	}
	assert_int_equal(cfx_twheel_count(w), 20000);
	advance_to(w, &l, start + 3LL * 86400 * 1000 + 1000, 100);
	assert_int_equal(l.n, 20000);
	assert_int_equal(l.early, 0);
	assert_true(l.max_late <= 200); /* one tick plus the step */
	assert_int_equal(cfx_twheel_count(w), 0);
	/* Each exactly once. */
	char *seen = calloc(20000, 1);
	for (size_t i = 0; i < l.n; i++) {
		assert_int_equal(seen[l.ids[i]], 0);
		seen[l.ids[i]] = 1;
	}
	free(seen);
	free(l.ids);
	free(l.fired_at);
	cfx_twheel_free(w);
}

static void test_boundaries_and_big_jumps(void **state)
{
	int64_t start = 0;
	struct cfx_twheel *w = cfx_twheel_new(100, start);
	struct log l = { .now = start };
	/* Exactly on level boundaries, and beyond the top level (overflow). */
	int64_t dues[] = { 100, 59900, 60000, 60100, 3600000, 3600100, 86400000, 86400000 * 70LL };
	(void)state;

	for (size_t i = 0; i < (sizeof dues / sizeof dues[0]); i++)
		cfx_twheel_add(w, dues[i], i);
	/* One jump far ahead: everything due fires in order of ticks. */
	l.now = 86400000LL * 71;
	cfx_twheel_advance(w, l.now, fire, &l);
	assert_int_equal(l.n, (sizeof dues / sizeof dues[0]));
	for (size_t i = 0; i < l.n; i++)
		assert_int_equal(l.ids[i], i);
	free(l.ids);
	free(l.fired_at);
	cfx_twheel_free(w);
}

static void readd(void *arg, uint64_t id, int64_t due)
{
	struct cfx_twheel **w = arg;
	if (id < 5)
		cfx_twheel_add(*w, due + 1000, id + 1);
}

static void test_fire_may_add(void **state)
{
	struct cfx_twheel *w = cfx_twheel_new(100, 0);
	(void)state;

	cfx_twheel_add(w, 500, 0);
	for (int64_t t = 0; t <= 10000; t += 100)
		cfx_twheel_advance(w, t, readd, &w);
	assert_int_equal(cfx_twheel_count(w), 0);
	cfx_twheel_free(w);
}

static void test_memory_per_timer(void **state)
{
	struct cfx_twheel *w = cfx_twheel_new(100, 0);
	(void)state;

	for (uint64_t i = 0; i < 1000000; i++)
		cfx_twheel_add(w, (int64_t)(i * 86400000ULL / 1000000), i);
	/* 16 bytes per timer plus vector slack: well under 40. */
	assert_true(cfx_twheel_memory(w) / 1000000 < 40);
	cfx_twheel_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fires_once_never_early_within_a_tick),
		cmocka_unit_test(test_boundaries_and_big_jumps),
		cmocka_unit_test(test_fire_may_add),
		cmocka_unit_test(test_memory_per_timer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
