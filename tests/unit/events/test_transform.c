/*
 * Unit tests for src/events/jsonpath.c and src/events/transform.c: the
 * JSONPath subset (steps, quoting, negative indexes, rejected features,
 * limits) and the four transform kinds, with the template rendering table
 * of transform.h and the validation errors.
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
#include "base/err.h"
#include "events/jsonpath.h"
#include "events/transform.h"

static const char event_text[] =
	"{\"specversion\":\"1.0\",\"id\":\"42\",\"source\":\"shop\",\"type\":\"order.created\","
	"\"data\":{\"order\":{\"amount\":150,\"items\":[{\"sku\":\"k1\"},{\"sku\":\"k2\"}],"
	"\"note\":\"say \\\"hi\\\"\",\"ok\":true,\"none\":null},\"a b\":\"spaced\",\"x.y\":1,"
	"\"it's\":\"quoted\"}}";

static json_t *event(void)
{
	json_error_t jerr;
	json_t *e = json_loads(event_text, 0, &jerr);

	if (!e)
		fail_msg("event: %s", jerr.text);
	return e;
}

/* ------------------------------------------------------------------------
 * JSONPath
 * ------------------------------------------------------------------------ */

/* Compiles `expr` and returns the compact JSON of its value ("<none>" if NULL). */
static char *jp(const char *expr)
{
	static char buf[512];
	struct cfx_jsonpath *p;
	char err[128];
	json_t *e = event();
	const json_t *v;
	char *s;

	if (cfx_jsonpath_compile(expr, strlen(expr), &p, err, sizeof err) != 0)
		fail_msg("%s: %s", expr, err);
	assert_string_equal(cfx_jsonpath_text(p), expr);
	v = cfx_jsonpath_eval(p, e);
	s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	snprintf(buf, sizeof buf, "%s", s ? s : "<none>");
	free(s);
	cfx_jsonpath_free(p);
	json_decref(e);
	return buf;
}

static void jp_bad(const char *expr, int code, const char *needle)
{
	struct cfx_jsonpath *p = (struct cfx_jsonpath *)1;
	char err[160];
	int rc = cfx_jsonpath_compile(expr, strlen(expr), &p, err, sizeof err);

	if (rc != code || p != NULL || !strstr(err, needle))
		fail_msg("%s: rc %d, \"%s\", want %d and \"%s\"", expr, rc, err, code, needle);
}

static void test_jsonpath_eval(void **state)
{
	(void)state;
	assert_string_equal(jp("$.id"), "\"42\"");
	assert_string_equal(jp("$.data.order.amount"), "150");
	assert_string_equal(jp("$.data.order.items[0].sku"), "\"k1\"");
	assert_string_equal(jp("$.data.order.items[1]"), "{\"sku\":\"k2\"}");
	assert_string_equal(jp("$.data.order.items[-1].sku"), "\"k2\"");
	assert_string_equal(jp("$.data.order.items[-2].sku"), "\"k1\"");
	assert_string_equal(jp("$.data.order.items[2]"), "<none>");
	assert_string_equal(jp("$.data.order.items[-3]"), "<none>");
	assert_string_equal(jp("$['data']['a b']"), "\"spaced\"");
	assert_string_equal(jp("$.data[\"x.y\"]"), "1");
	assert_string_equal(jp("$.data['it\\'s']"), "\"quoted\"");
	assert_string_equal(jp("$.data.order.none"), "null");
	assert_string_equal(jp("$.data.order.ok"), "true");
	assert_string_equal(jp("$.nope"), "<none>");
	assert_string_equal(jp("$.id.deeper"), "<none>");
	assert_string_equal(jp("$.data[0]"), "<none>");
	assert_string_equal(jp("$.data.order.items.sku"), "<none>");
	assert_string_equal(jp("$.data.order.items[0]['sku']"), "\"k1\"");
	assert_true(strncmp(jp("$"), "{\"specversion\"", 14) == 0);
	assert_null(cfx_jsonpath_eval(NULL, NULL));
}

static void test_jsonpath_errors(void **state)
{
	char long_path[CFX_JSONPATH_BYTES_MAX + 8];
	(void)state;

	jp_bad("", CFX_EPARSE, "starts with '$'");
	jp_bad("data.id", CFX_EPARSE, "starts with '$'");
	jp_bad("$.", CFX_EPARSE, "column 2: expected a name");
	jp_bad("$..id", CFX_EPARSE, "recursive descent");
	jp_bad("$.*", CFX_EPARSE, "wildcards are not supported");
	jp_bad("$.a[*]", CFX_EPARSE, "wildcards");
	jp_bad("$.a[?(@.x)]", CFX_EPARSE, "filters are not supported");
	jp_bad("$.a[0:2]", CFX_EPARSE, "slices and unions");
	jp_bad("$.a[0,1]", CFX_EPARSE, "slices and unions");
	jp_bad("$.a[", CFX_EPARSE, "expected an index");
	jp_bad("$.a[1", CFX_EPARSE, "expected ']'");
	jp_bad("$.a[-0]", CFX_EPARSE, "-0");
	jp_bad("$.a[99999999]", CFX_EPARSE, "index out of range");
	jp_bad("$['a", CFX_EPARSE, "closing quote");
	jp_bad("$['a']x", CFX_EPARSE, "expected '.' or '['");
	jp_bad("$['a\\x']", CFX_EPARSE, "closing quote");
	jp_bad("$a", CFX_EPARSE, "column 2: expected '.' or '['");
	jp_bad("$.a b", CFX_EPARSE, "expected '.' or '['");

	memset(long_path, 0, sizeof long_path);
	long_path[0] = '$';
	for (size_t i = 1; i < 2 * (CFX_JSONPATH_STEPS_MAX + 1); i += 2)
		memcpy(long_path + i, ".a", 2);
	jp_bad(long_path, CFX_E2BIG, "more than 32 steps");
	long_path[2 * CFX_JSONPATH_STEPS_MAX + 1] = '\0';
	assert_string_equal(jp(long_path), "<none>");
	memset(long_path + 1, 'a', CFX_JSONPATH_BYTES_MAX);
	long_path[1] = '.';
	long_path[CFX_JSONPATH_BYTES_MAX + 1] = '\0';
	jp_bad(long_path, CFX_E2BIG, "longer than");
}

/* ------------------------------------------------------------------------
 * Transforms
 * ------------------------------------------------------------------------ */

/* Creates the transform (must succeed), applies it to the test event, returns the text. */
static char *apply(const char *desc, int want_rc)
{
	static char buf[4096];
	struct cfx_transform *tf;
	char err[256], *out = (char *)1;
	size_t len = 99;
	json_t *e = event();
	int rc;

	if (cfx_transform_new(desc, strlen(desc), &tf, err, sizeof err) != 0)
		fail_msg("%s: %s", desc, err);
	rc = cfx_transform_apply(tf, e, &out, &len);
	assert_int_equal(rc, want_rc);
	if (rc) {
		assert_null(out);
		assert_int_equal(len, 0);
		buf[0] = '\0';
	} else {
		assert_int_equal(strlen(out), len);
		snprintf(buf, sizeof buf, "%s", out);
		cfx_free(out);
	}
	cfx_transform_free(tf);
	json_decref(e);
	return buf;
}

static void tf_bad(const char *desc, int code, const char *needle)
{
	struct cfx_transform *tf = (struct cfx_transform *)1;
	char err[256];
	int rc = cfx_transform_new(desc, strlen(desc), &tf, err, sizeof err);

	if (rc != code || tf != NULL || !strstr(err, needle))
		fail_msg("%s: rc %d, \"%s\", want %d and \"%s\"", desc, rc, err, code, needle);
}

static void test_original_constant_jsonpath(void **state)
{
	struct cfx_transform *tf;
	json_t *e, *back;
	char *out;
	size_t len;
	(void)state;

	/* original: the event, compact, round-trips. */
	assert_int_equal(cfx_transform_new("{\"type\":\"original\"}", 19, &tf, NULL, 0), 0);
	assert_int_equal(cfx_transform_type(tf), CFX_TRANSFORM_ORIGINAL);
	e = event();
	assert_int_equal(cfx_transform_apply(tf, e, &out, &len), 0);
	back = json_loadb(out, len, 0, NULL);
	assert_non_null(back);
	assert_true(json_equal(back, e));
	assert_null(strchr(out, '\n'));
	cfx_free(out);
	json_decref(back);
	json_decref(e);
	cfx_transform_free(tf);

	assert_string_equal(apply("{\"type\":\"constant\",\"value\":\"hello\"}", 0), "hello");
	assert_string_equal(apply("{\"type\":\"constant\",\"value\":\"\"}", 0), "");
	assert_string_equal(apply("{\"type\":\"constant\",\"value\":{\"a\": [1, 2]}}", 0),
			    "{\"a\":[1,2]}");
	assert_string_equal(apply("{\"type\":\"constant\",\"value\":7}", 0), "7");
	assert_string_equal(apply("{\"type\":\"constant\",\"value\":null}", 0), "null");

	assert_string_equal(apply("{\"type\":\"jsonpath\",\"path\":\"$.data.order.amount\"}", 0),
			    "150");
	assert_string_equal(apply("{\"type\":\"jsonpath\",\"path\":\"$.id\"}", 0), "\"42\"");
	assert_string_equal(apply("{\"type\":\"jsonpath\",\"path\":\"$.data.order.items[-1]\"}", 0),
			    "{\"sku\":\"k2\"}");
	apply("{\"type\":\"jsonpath\",\"path\":\"$.missing\"}", CFX_ENOENT);
}

static void test_template_text(void **state)
{
	(void)state;
	assert_string_equal(
		apply("{\"type\":\"template\",\"variables\":{\"id\":\"$.id\"},\"template\":\"order "
		      "${id}\"}",
		      0),
		"order 42");
	assert_string_equal(
		apply("{\"type\":\"template\",\"variables\":{\"n\":\"$.data.order.amount\","
		      "\"o\":\"$.data.order.items[0]\",\"m\":\"$.missing\",\"t\":\"$.data.order.ok\"},"
		      "\"template\":\"${n}|${o}|${m}|${t}|${n}\"}",
		      0),
		"150|{\"sku\":\"k1\"}||true|150");
	/* No variables, and a lone '$' or '{' is literal. */
	assert_string_equal(apply("{\"type\":\"template\",\"template\":\"cost $5 {x}\"}", 0),
			    "cost $5 {x}");
	assert_string_equal(
		apply("{\"type\":\"template\",\"variables\":{\"note\":\"$.data.order.note\"},"
		      "\"template\":\"note: ${note}\"}",
		      0),
		"note: say \"hi\"");
}

static void test_template_json(void **state)
{
	char *s;
	json_t *j;
	(void)state;

	s = apply("{\"type\":\"template\",\"variables\":{\"id\":\"$.id\",\"n\":\"$.data.order."
		  "amount\",\"note\":\"$.data.order.note\",\"m\":\"$.missing\",\"o\":\"$.data.order."
		  "items[1]\"},"
		  "\"template\":\"{\\\"id\\\": ${id}, \\\"n\\\": ${n}, \\\"m\\\": ${m}, \\\"o\\\": "
		  "${o}, \\\"text\\\": \\\"id=${id} note=${note} o=${o} m=${m}\\\"}\"}",
		  0);
	assert_string_equal(s, "{\"id\": \"42\", \"n\": 150, \"m\": null, \"o\": {\"sku\":\"k2\"}, "
			       "\"text\": \"id=42 note=say \\\"hi\\\" o={\\\"sku\\\":\\\"k2\\\"} m=\"}");
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "text")),
			    "id=42 note=say \"hi\" o={\"sku\":\"k2\"} m=");
	json_decref(j);
	/* An array template, and an escaped quote inside a literal string. */
	s = apply("{\"type\":\"template\",\"variables\":{\"id\":\"$.id\"},"
		  "\"template\":\" [\\\"a\\\\\\\"${id}\\\", ${id}]\"}",
		  0);
	assert_string_equal(s, " [\"a\\\"42\", \"42\"]");
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_array_get(j, 0)), "a\"42");
	json_decref(j);
}

static void test_transform_errors(void **state)
{
	char big[CFX_TRANSFORM_BYTES_MAX + 8];
	(void)state;

	tf_bad("", CFX_EPARSE, "not JSON");
	tf_bad("[]", CFX_EPARSE, "a transform is a JSON object");
	tf_bad("{}", CFX_EPARSE, "needs a \"type\"");
	tf_bad("{\"type\":\"copy\"}", CFX_EPARSE, "unknown transform type \"copy\"");
	tf_bad("{\"type\":\"constant\"}", CFX_EPARSE, "constant needs a \"value\"");
	tf_bad("{\"type\":\"jsonpath\"}", CFX_EPARSE, "needs a \"path\"");
	tf_bad("{\"type\":\"jsonpath\",\"path\":\"$..a\"}", CFX_EPARSE, "recursive descent");
	tf_bad("{\"type\":\"template\"}", CFX_EPARSE, "\"template\" must be a string");
	tf_bad("{\"type\":\"template\",\"template\":\"x\",\"variables\":[]}", CFX_EPARSE,
	       "\"variables\" must be an object");
	tf_bad("{\"type\":\"template\",\"template\":\"${idd}\",\"variables\":{\"id\":\"$.id\"}}",
	       CFX_EPARSE, "template uses undeclared variable \"idd\"");
	tf_bad("{\"type\":\"template\",\"template\":\"${id\",\"variables\":{\"id\":\"$.id\"}}",
	       CFX_EPARSE, "is not closed");
	tf_bad("{\"type\":\"template\",\"template\":\"x\",\"variables\":{\"id\":5}}", CFX_EPARSE,
	       "must be a JSONPath string");
	tf_bad("{\"type\":\"template\",\"template\":\"x\",\"variables\":{\"id\":\"$.*\"}}",
	       CFX_EPARSE, "variable \"id\": jsonpath at column 3: wildcards");
	tf_bad("{\"type\":\"template\",\"template\":\"x\",\"variables\":{\"a b\":\"$.id\"}}",
	       CFX_EPARSE, "variable name \"a b\"");
	tf_bad("{\"type\":\"template\",\"template\":\"{\\\"a\\\": ${id\\\"}\","
	       "\"variables\":{\"id\":\"$.id\"}}",
	       CFX_EPARSE, "undeclared");
	tf_bad("{\"type\":\"template\",\"template\":\"{\\\"a\\\": ${id}\","
	       "\"variables\":{\"id\":\"$.id\"}}",
	       CFX_EPARSE, "not JSON once substituted");
	tf_bad("{\"type\":\"template\",\"template\":\"{\\\"a\\\": \\\"${id}}\","
	       "\"variables\":{\"id\":\"$.id\"}}",
	       CFX_EPARSE, "not JSON once substituted");
	tf_bad("{\"type\":\"original\",\"type\":\"constant\"}", CFX_EPARSE, "duplicate");

	memset(big, ' ', sizeof big);
	memcpy(big, "{\"type\":\"original\"}", 19);
	{
		struct cfx_transform *tf;
		assert_int_equal(cfx_transform_new(big, CFX_TRANSFORM_BYTES_MAX, &tf, NULL, 0), 0);
		cfx_transform_free(tf);
		assert_int_equal(cfx_transform_new(big, CFX_TRANSFORM_BYTES_MAX + 1, &tf, NULL, 0),
				 CFX_E2BIG);
		assert_null(tf);
	}
	cfx_transform_free(NULL);
}

static void test_transform_output_limit(void **state)
{
	/* A template repeating a large value exceeds the output bound. */
	struct cfx_transform *tf;
	char desc[1024], *out;
	size_t len, o;
	json_t *e = json_object();
	char *blob = cfx_malloc(1u << 20);
	(void)state;

	memset(blob, 'x', (1u << 20) - 1);
	blob[(1u << 20) - 1] = '\0';
	json_object_set_new(e, "big", json_string(blob));
	o = (size_t)snprintf(desc, sizeof desc,
			     "{\"type\":\"template\",\"variables\":{\"b\":\"$.big\"},\"template\":\"");
	for (int i = 0; i < 5; i++)
		o += (size_t)snprintf(desc + o, sizeof desc - o, "${b}");
	snprintf(desc + o, sizeof desc - o, "\"}");
	assert_int_equal(cfx_transform_new(desc, strlen(desc), &tf, NULL, 0), 0);
	assert_int_equal(cfx_transform_apply(tf, e, &out, &len), CFX_E2BIG);
	assert_null(out);
	cfx_transform_free(tf);
	json_decref(e);
	cfx_free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jsonpath_eval),
		cmocka_unit_test(test_jsonpath_errors),
		cmocka_unit_test(test_original_constant_jsonpath),
		cmocka_unit_test(test_template_text),
		cmocka_unit_test(test_template_json),
		cmocka_unit_test(test_transform_errors),
		cmocka_unit_test(test_transform_output_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
