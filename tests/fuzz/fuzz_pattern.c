/*
 * fuzz_pattern.c - libFuzzer target for EventBridge patterns, JSONPath and
 * transforms (events/pattern.c, events/jsonpath.c, events/transform.c).
 *
 * Input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | mode    low 3 bits: FZ_PAT_*; the rest is unused
 *      1 |    N | text    the pattern (or path / transform description), up to the
 *        |      |         first NUL byte; after it, the event as JSON text (the
 *        |      |         fixed events below are used too, so seeds need none)
 *
 * Beyond "no crash, no out-of-bounds read, no undefined behaviour, no leak":
 *  - validate, add and explain accept and reject the same patterns, with a
 *    NUL-terminated message on failure;
 *  - for a valid pattern, the compiled set (alone and among other rules),
 *    cfx_pattern_explain and the reference evaluator of the unit tests
 *    (tests/unit/events/pattern_ref.c) agree on every event;
 *  - removing the rule leaves the other rules' results unchanged;
 *  - a compiled path evaluates to a value inside the event or NULL; a
 *    transform's output has the length it reports.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"
#include "events/jsonpath.h"
#include "events/pattern.h"
#include "events/transform.h"
#include "fuzz_common.h"

#include "../unit/events/pattern_ref.c"

#define FZ_PAT_VALIDATE 0u  /* validate only */
#define FZ_PAT_MATCH 1u	    /* compile into sets, match, compare with the reference */
#define FZ_PAT_EXPLAIN 2u   /* explain against the events */
#define FZ_PAT_JSONPATH 3u  /* compile the text as a JSONPath, evaluate */
#define FZ_PAT_TRANSFORM 4u /* create a transform from the text, apply */
#define FZ_PAT_MODES 5u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fixed_events[] = {
	"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"acs.oss\",\"type\":\"oss:Put\","
	"\"subject\":\"a/b.png\",\"data\":{\"amount\":150,\"ip\":\"10.0.0.7\",\"tags\":[\"x\",\"Y\"],"
	"\"items\":[{\"sku\":\"k1\",\"n\":1},{\"sku\":\"k2\",\"n\":2.5}],\"ok\":true,\"none\":null,"
	"\"v6\":\"2001:db8::1\",\"s\":\"\"}}",
	"{\"source\":\"x\",\"data\":[1,\"a\",[null,false],{\"a\":{\"b\":\"c\"}}]}",
	"{}",
	"[{\"a\":1},{\"a\":\"1\"}]",
	"\"text\"",
};

/* Other rules in the crowded set, so that the fuzzed one shares fields. */
static const char *const neighbours[] = {
	"{\"source\":[\"acs.oss\"]}",
	"{\"data\":{\"amount\":[{\"numeric\":[\">\",100]}]}}",
	"{\"data\":{\"tags\":[{\"anything-but\":\"x\"}]}}",
	"{\"$or\":[{\"a\":[1]},{\"subject\":[{\"suffix\":\".png\"}]}]}",
	"{\"data\":{\"s\":[\"\"],\"ok\":[true]}}",
};

static json_t *load_event(const char *s, size_t len)
{
	return json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static void check_err(const char *err, size_t cap)
{
	FZ_CHECK(memchr(err, '\0', cap) != NULL);
	FZ_CHECK(err[0] != '\0');
}

static size_t match_one(const struct cfx_pattern_set *ps, const json_t *e, uint32_t id)
{
	uint32_t out[16];
	size_t n = cfx_pattern_set_match(ps, e, out, 16), hits = 0;

	FZ_CHECK(n <= 16);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < i; k++)
			FZ_CHECK(out[k] != out[i]); /* each rule once */
		hits += out[i] == id;
	}
	return hits;
}

static void run_pattern(const char *text, size_t len, json_t **events, size_t nevents,
			unsigned mode)
{
	char err[256], why[256];
	struct cfx_pattern_set *solo, *crowd;
	json_t *pat_json;
	int vrc = cfx_pattern_validate(text, len, err, sizeof err);

	FZ_CHECK(vrc == 0 || vrc == CFX_EPARSE || vrc == CFX_E2BIG);
	if (vrc)
		check_err(err, sizeof err);
	if (mode == FZ_PAT_VALIDATE)
		return;

	if (mode == FZ_PAT_EXPLAIN) {
		for (size_t i = 0; i < nevents; i++) {
			int rc = cfx_pattern_explain(text, len, events[i], why, sizeof why);
			FZ_CHECK(vrc ? rc == vrc : (rc == 0 || rc == 1));
			FZ_CHECK(memchr(why, '\0', sizeof why) != NULL);
			FZ_CHECK(rc != 0 || why[0] != '\0');
		}
		return;
	}

	solo = cfx_pattern_set_new();
	crowd = cfx_pattern_set_new();
	for (uint32_t i = 0; i < CFX_ARRAY_LEN(neighbours); i++)
		FZ_CHECK(cfx_pattern_set_add(crowd, 100 + i, neighbours[i], strlen(neighbours[i]), NULL,
					     0) == 0);
	FZ_CHECK(cfx_pattern_set_add(solo, 7, text, len, err, sizeof err) == vrc);
	FZ_CHECK(cfx_pattern_set_add(crowd, 7, text, len, NULL, 0) == vrc);
	pat_json = vrc ? NULL : json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	FZ_CHECK(vrc || pat_json);
	for (size_t i = 0; i < nevents; i++) {
		size_t a = match_one(solo, events[i], 7), b = match_one(crowd, events[i], 7);
		int ex = cfx_pattern_explain(text, len, events[i], why, sizeof why);

		if (vrc) {
			FZ_CHECK(a == 0 && b == 0 && ex == vrc);
			continue;
		}
		FZ_CHECK(a == b);
		FZ_CHECK((size_t)ex == a);
		FZ_CHECK(ref_match(pat_json, events[i]) == (int)a);
	}
	/* The neighbours do not depend on the fuzzed rule. */
	if (!vrc) {
		FZ_CHECK(cfx_pattern_set_remove(crowd, 7) == 0);
		for (size_t i = 0; i < nevents; i++) {
			uint32_t out[16];
			size_t n = cfx_pattern_set_match(crowd, events[i], out, 16);
			for (size_t k = 0; k < n; k++)
				FZ_CHECK(out[k] >= 100);
		}
	}
	json_decref(pat_json);
	cfx_pattern_set_free(solo);
	cfx_pattern_set_free(crowd);
}

static void run_jsonpath(const char *text, size_t len, json_t **events, size_t nevents)
{
	struct cfx_jsonpath *jp;
	char err[256];
	int rc = cfx_jsonpath_compile(text, len, &jp, err, sizeof err);

	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_E2BIG);
	if (rc) {
		FZ_CHECK(jp == NULL);
		check_err(err, sizeof err);
		return;
	}
	for (size_t i = 0; i < nevents; i++) {
		const json_t *v = cfx_jsonpath_eval(jp, events[i]);
		if (v)
			FZ_CHECK(json_typeof(v) <= JSON_NULL);
	}
	cfx_jsonpath_free(jp);
}

static void run_transform(const char *text, size_t len, json_t **events, size_t nevents)
{
	struct cfx_transform *tf;
	char err[256];
	int rc = cfx_transform_new(text, len, &tf, err, sizeof err);

	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_E2BIG);
	if (rc) {
		FZ_CHECK(tf == NULL);
		check_err(err, sizeof err);
		return;
	}
	for (size_t i = 0; i < nevents; i++) {
		char *out;
		size_t out_len;
		int arc = cfx_transform_apply(tf, events[i], &out, &out_len);

		FZ_CHECK(arc == 0 || arc == CFX_ENOENT || arc == CFX_E2BIG || arc == CFX_EINVAL);
		if (arc == 0) {
			FZ_CHECK(out != NULL && out[out_len] == '\0');
			fz_touch(out, out_len);
			cfx_free(out);
		} else {
			FZ_CHECK(out == NULL);
		}
	}
	cfx_transform_free(tf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *events[CFX_ARRAY_LEN(fixed_events) + 1];
	size_t nevents = 0, text_len;
	const char *text, *nul;
	unsigned mode;
	char *copy;

	if (size < 1)
		return 0;
	mode = (data[0] & 7u) % FZ_PAT_MODES;
	/* An exact-size copy, so ASan sees a read past the text. */
	copy = malloc(size - 1 ? size - 1 : 1);
	if (!copy)
		abort();
	memcpy(copy, data + 1, size - 1);
	text = copy;
	nul = memchr(text, '\0', size - 1);
	text_len = nul ? (size_t)(nul - text) : size - 1;

	for (size_t i = 0; i < CFX_ARRAY_LEN(fixed_events); i++) {
		events[nevents] = load_event(fixed_events[i], strlen(fixed_events[i]));
		FZ_CHECK(events[nevents] != NULL);
		nevents++;
	}
	if (nul) {
		json_t *e = load_event(nul + 1, size - 1 - text_len - 1);
		if (e)
			events[nevents++] = e;
	}

	switch (mode) {
	case FZ_PAT_VALIDATE:
	case FZ_PAT_MATCH:
	case FZ_PAT_EXPLAIN:
		run_pattern(text, text_len, events, nevents, mode);
		break;
	case FZ_PAT_JSONPATH:
		run_jsonpath(text, text_len, events, nevents);
		break;
	default:
		run_transform(text, text_len, events, nevents);
		break;
	}
	for (size_t i = 0; i < nevents; i++)
		json_decref(events[i]);
	free(copy);
	return 0;
}
