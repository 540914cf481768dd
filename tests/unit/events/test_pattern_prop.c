/*
 * Property test for src/events/pattern.c: random patterns and events from a
 * seeded generator; the compiled set (many rules at once, with removals),
 * cfx_pattern_explain and the reference evaluator (pattern_ref.c) must agree
 * on every event.
 *
 * The generator draws from small vocabularies of keys, strings and numbers
 * so that rules and events meet often: every operator, arrays in events,
 * nested objects, "$or" at several levels, absent fields and nulls.
 * Deterministic: a failure prints the seed, the rule and the event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "events/pattern.h"

#include "pattern_ref.c"

/* ------------------------------------------------------------------------
 * Generator
 * ------------------------------------------------------------------------ */

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * 0x2545f4914f6cdd1dULL) >> 33) % n;
}

static const char *const top_keys[] = { "source", "type", "subject", "a", "b" };
static const char *const data_keys[] = { "x", "y", "tags", "n", "ip" };
static const char *const strs[] = { "",	    "a",       "ab",	  "abc",	 "Abc",
				     "b",	    "ba",      "x.png",	  "X.PNG",	 "10.0.0.1",
				     "10.0.1.5", "192.168.1.1", "2001:db8::1", "a*b", "tmp-1",
				     "TMP-2",	    "ab.ab",   "aba" };
static const double nums[] = { -1, 0, 0.5, 1, 2, 3, 5, 10, 100, 1e9 };
static const char *const affixes[] = { "", "a", "ab", "A", "b", ".png", "tmp", "10.", "x", "ba" };
static const char *const globs[] = { "a*", "*b", "*", "a*b*", "*.png", "a\\*b", "*0.*", "ab*ba",
				     "a*a", "abc", "**" };
static const char *const cidrs[] = { "10.0.0.0/24", "10.0.0.0/8",    "192.168.0.0/16",
				     "2001:db8::/32", "0.0.0.0/0",   "10.0.0.1",
				     "10.0.1.0/25",  "::/0" };

static json_t *gen_leaf_value(void)
{
	switch (rnd(8)) {
	case 0:
	case 1:
	case 2:
		return json_string(strs[rnd(CFX_ARRAY_LEN(strs))]);
	case 3:
	case 4:
		return rnd(2) ? json_integer((json_int_t)nums[rnd(CFX_ARRAY_LEN(nums))])
			      : json_real(nums[rnd(CFX_ARRAY_LEN(nums))]);
	case 5:
		return json_boolean(rnd(2));
	case 6:
		return json_null();
	default:
		return json_string(affixes[rnd(CFX_ARRAY_LEN(affixes))]);
	}
}

static json_t *gen_event_value(int depth)
{
	uint32_t k = rnd(10);

	if (k < 7 || depth > 2)
		return gen_leaf_value();
	if (k < 9) {
		json_t *a = json_array();
		for (uint32_t i = rnd(4); i > 0; i--)
			json_array_append_new(a, depth < 2 && rnd(5) == 0 ? gen_event_value(depth + 1)
									  : gen_leaf_value());
		return a;
	}
	json_t *o = json_object();
	for (uint32_t i = rnd(3); i > 0; i--)
		json_object_set_new(o, data_keys[rnd(CFX_ARRAY_LEN(data_keys))],
				    gen_event_value(depth + 1));
	return o;
}

static json_t *gen_event(void)
{
	json_t *e = json_object(), *data;

	for (size_t i = 0; i < CFX_ARRAY_LEN(top_keys); i++)
		if (rnd(3))
			json_object_set_new(e, top_keys[i], gen_event_value(2));
	if (rnd(5)) {
		uint32_t shape = rnd(6);
		if (shape == 0) {
			data = gen_leaf_value();
		} else if (shape == 1) {
			data = json_array();
			for (uint32_t i = rnd(3); i > 0; i--) {
				json_t *o = json_object();
				json_object_set_new(o, data_keys[rnd(5)], gen_event_value(1));
				json_array_append_new(data, o);
			}
		} else {
			data = json_object();
			for (size_t i = 0; i < CFX_ARRAY_LEN(data_keys); i++)
				if (rnd(2))
					json_object_set_new(data, data_keys[i], gen_event_value(1));
		}
		json_object_set_new(e, "data", data);
	}
	return e;
}

static json_t *op1(const char *op, json_t *v)
{
	json_t *o = json_object();
	json_object_set_new(o, op, v);
	return o;
}

static json_t *gen_string_list(const char *const *from, size_t n, int lower_ok)
{
	json_t *a = json_array();
	(void)lower_ok;
	for (uint32_t i = 1 + rnd(2); i > 0; i--)
		json_array_append_new(a, json_string(from[rnd((uint32_t)n)]));
	return a;
}

static json_t *gen_cond(void)
{
	json_t *v;

	switch (rnd(17)) {
	case 0:
	case 1:
		return json_string(strs[rnd(CFX_ARRAY_LEN(strs))]);
	case 2:
		return rnd(2) ? json_integer((json_int_t)nums[rnd(CFX_ARRAY_LEN(nums))])
			      : json_real(nums[rnd(CFX_ARRAY_LEN(nums))]);
	case 3:
		return rnd(3) == 0 ? json_null() : json_boolean(rnd(2));
	case 4:
		return op1("prefix", json_string(affixes[rnd(CFX_ARRAY_LEN(affixes))]));
	case 5:
		return op1("suffix", json_string(affixes[rnd(CFX_ARRAY_LEN(affixes))]));
	case 6:
		return op1("equals-ignore-case", json_string(strs[rnd(CFX_ARRAY_LEN(strs))]));
	case 7:
		return op1(rnd(2) ? "prefix" : "suffix",
			   op1("equals-ignore-case",
			       json_string(affixes[rnd(CFX_ARRAY_LEN(affixes))])));
	case 8:
		return op1("wildcard", json_string(globs[rnd(CFX_ARRAY_LEN(globs))]));
	case 9:
	case 10:
		switch (rnd(6)) {
		case 0:
			v = json_string(strs[rnd(CFX_ARRAY_LEN(strs))]);
			break;
		case 1:
			v = json_real(nums[rnd(CFX_ARRAY_LEN(nums))]);
			break;
		case 2:
			v = json_array();
			for (uint32_t i = 1 + rnd(3); i > 0; i--)
				json_array_append_new(
					v, rnd(2) ? json_string(strs[rnd(CFX_ARRAY_LEN(strs))])
						  : json_integer((json_int_t)nums[rnd(
							    CFX_ARRAY_LEN(nums))]));
			break;
		case 3:
			v = op1(rnd(2) ? "prefix" : "suffix",
				json_string(affixes[rnd(CFX_ARRAY_LEN(affixes))]));
			break;
		default:
			v = op1("equals-ignore-case",
				rnd(2) ? json_string(strs[rnd(CFX_ARRAY_LEN(strs))])
				       : gen_string_list(strs, CFX_ARRAY_LEN(strs), 1));
			break;
		}
		return op1("anything-but", v);
	case 11:
	case 12: {
		static const char *const lo_ops[] = { ">", ">=" }, *const hi_ops[] = { "<", "<=" };
		double a = nums[rnd(CFX_ARRAY_LEN(nums))], b = nums[rnd(CFX_ARRAY_LEN(nums))];
		json_t *spec = json_array();
		uint32_t shape = rnd(4);

		if (shape == 0) {
			json_array_append_new(spec, json_string("="));
			json_array_append_new(spec, json_real(a));
		} else if (shape == 1) {
			json_array_append_new(spec, json_string(lo_ops[rnd(2)]));
			json_array_append_new(spec, json_real(a));
		} else if (shape == 2) {
			json_array_append_new(spec, json_string(hi_ops[rnd(2)]));
			json_array_append_new(spec, json_integer((json_int_t)a));
		} else {
			if (a == b)
				b = a + 1;
			json_array_append_new(spec, json_string(lo_ops[rnd(2)]));
			json_array_append_new(spec, json_real(a < b ? a : b));
			json_array_append_new(spec, json_string(hi_ops[rnd(2)]));
			json_array_append_new(spec, json_real(a < b ? b : a));
		}
		return op1("numeric", spec);
	}
	case 13:
	case 14:
		return op1("exists", json_boolean(rnd(2)));
	default:
		return op1("cidr", json_string(cidrs[rnd(CFX_ARRAY_LEN(cidrs))]));
	}
}

static json_t *gen_cond_list(void)
{
	json_t *a = json_array();
	for (uint32_t i = 1 + (rnd(3) == 0 ? rnd(3) : 0); i > 0; i--)
		json_array_append_new(a, gen_cond());
	return a;
}

static json_t *gen_pattern(int depth, int in_data)
{
	json_t *p = json_object();
	uint32_t members = 1 + rnd(3);

	for (uint32_t i = 0; i < members; i++) {
		uint32_t k = rnd(10);
		const char *key = in_data ? data_keys[rnd(CFX_ARRAY_LEN(data_keys))]
					  : top_keys[rnd(CFX_ARRAY_LEN(top_keys))];

		if (k == 0 && depth < 3 && !json_object_get(p, "$or")) {
			json_t *alts = json_array();
			for (uint32_t a = 2 + rnd(2); a > 0; a--)
				json_array_append_new(alts, gen_pattern(depth + 1, in_data));
			json_object_set_new(p, "$or", alts);
		} else if (k <= 3 && !in_data && depth < 3) {
			json_object_set_new(p, "data", gen_pattern(depth + 1, 1));
		} else {
			json_object_set_new(p, key, gen_cond_list());
		}
	}
	return p;
}

/* ------------------------------------------------------------------------
 * The property
 * ------------------------------------------------------------------------ */

#define RULES 120u

static void run_seed(uint64_t seed, unsigned events)
{
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	json_t *pats[RULES];
	char *texts[RULES];
	uint8_t live[RULES];
	uint32_t out[RULES];
	unsigned matched = 0, checked = 0;
	char err[256], why[256];

	rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (uint32_t r = 0; r < RULES; r++) {
		pats[r] = gen_pattern(0, 0);
		texts[r] = json_dumps(pats[r], JSON_COMPACT);
		if (cfx_pattern_set_add(ps, r, texts[r], strlen(texts[r]), err, sizeof err) != 0)
			fail_msg("seed %llu: generated pattern rejected: %s: %s",
				 (unsigned long long)seed, texts[r], err);
		live[r] = 1;
	}
	for (unsigned i = 0; i < events; i++) {
		json_t *e = gen_event();
		uint8_t got[RULES] = { 0 };
		size_t n;

		/* Churn: now and then a rule leaves or comes back. */
		if (i % 97 == 0) {
			uint32_t r = rnd(RULES);
			if (live[r])
				assert_int_equal(cfx_pattern_set_remove(ps, r), 0);
			else
				assert_int_equal(cfx_pattern_set_add(ps, r, texts[r], strlen(texts[r]),
								     NULL, 0),
						 0);
			live[r] ^= 1;
		}
		n = cfx_pattern_set_match(ps, e, out, RULES);
		assert_true(n <= RULES);
		for (size_t k = 0; k < n; k++) {
			assert_true(out[k] < RULES);
			assert_false(got[out[k]]); /* each once */
			got[out[k]] = 1;
		}
		for (uint32_t r = 0; r < RULES; r++) {
			int want = live[r] && ref_match(pats[r], e);

			if (got[r] != want) {
				char *es = json_dumps(e, JSON_COMPACT);
				fail_msg("seed %llu event %u: set %d, reference %d\n  rule %s\n  event %s",
					 (unsigned long long)seed, i, got[r], want, texts[r], es);
			}
			if (live[r] && (i % 7 == 0)) {
				int ex = cfx_pattern_explain(texts[r], strlen(texts[r]), e, why,
							     sizeof why);
				if (ex != want) {
					char *es = json_dumps(e, JSON_COMPACT);
					fail_msg("seed %llu event %u: explain %d (%s), reference %d\n"
						 "  rule %s\n  event %s",
						 (unsigned long long)seed, i, ex, why, want, texts[r], es);
				}
			}
			matched += (unsigned)want;
			checked++;
		}
		json_decref(e);
	}
	print_message("seed %llu: %u events, %u rule checks, %u matches\n",
		      (unsigned long long)seed, events, checked, matched);
	/* The generator must produce matches, or the test proves little. */
	assert_true(matched > checked / 100);
	for (uint32_t r = 0; r < RULES; r++) {
		json_decref(pats[r]);
		free(texts[r]);
	}
	cfx_pattern_set_free(ps);
}

static void test_fixed_seed(void **state)
{
	(void)state;
	run_seed(20240611, 20000);
}

static void test_more_seeds(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 4; seed++)
		run_seed(seed, 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_seed),
		cmocka_unit_test(test_more_seeds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
