/*
 * Unit tests for src/events/cloudevent.c: the CloudEvents 1.0 codec.
 *
 * The corpus in ce_corpus/ (see its README.md) is run whole: every valid
 * event is accepted and round-tripped through the JSON format, the JSON
 * batch format, the HTTP binary mode and the attribute lists of every
 * binding; every invalid one is refused with the message that
 * ce_corpus/expected_errors.txt names. The corpus runs with
 * event_bytes_max = 16 KiB so that its oversize case stays small; the
 * default limits are tested on generated events below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"
#include "events/cloudevent.h"

#define CORPUS_DIR	       CFX_TEST_FIXTURES "/../../events/ce_corpus"
#define CORPUS_EVENT_BYTES_MAX (16u * 1024)
#define HEADERS_MAX	       64u
#define PROPS_MAX	       80u

static struct cfx_ce_limits corpus_limits(void)
{
	struct cfx_ce_limits lim;

	cfx_ce_limits_default(&lim);
	lim.event_bytes_max = CORPUS_EVENT_BYTES_MAX;
	return lim;
}

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	p[n] = '\0';
	*len = (size_t)n;
	return p;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files of CORPUS_DIR/sub, sorted; *n of them. */
static char **list_dir(const char *sub, size_t *n)
{
	char path[512];
	char **names = NULL;
	struct dirent *de;
	size_t cap = 0;
	DIR *d;

	snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, sub);
	d = opendir(path);
	assert_non_null(d);
	*n = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof *names);
			assert_non_null(names);
		}
		names[(*n)++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, *n, sizeof *names, name_cmp);
	return names;
}

static void free_list(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The expected message of an invalid case ("invalid/x.json"); NULL if none. */
static char *expected_error(const char *rel)
{
	char path[512], *text, *line, *save = NULL, *found = NULL;
	size_t len;

	snprintf(path, sizeof path, "%s/expected_errors.txt", CORPUS_DIR);
	text = (char *)slurp(path, &len);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t');

		if (line[0] == '#' || !tab)
			continue;
		*tab = '\0';
		if (strcmp(line, rel) == 0) {
			found = strdup(tab + 1);
			break;
		}
	}
	free(text);
	return found;
}

/*
 * The binary-mode text format of ce_corpus: "Name: value" lines (LF or
 * CRLF), an empty line, then the body. Views point into `p`.
 */
static size_t split_headers(uint8_t *p, size_t len, struct cfx_ce_header *h, size_t max,
			    const uint8_t **body, size_t *body_len)
{
	size_t i = 0, n = 0;

	*body = p + len;
	*body_len = 0;
	while (i < len) {
		size_t e = i, le;
		char *colon;

		while (e < len && p[e] != '\n')
			e++;
		le = e;
		if (le > i && p[le - 1] == '\r')
			le--;
		if (le == i) { /* the empty line */
			*body = p + (e < len ? e + 1 : len);
			*body_len = len - (size_t)(*body - p);
			break;
		}
		colon = memchr(p + i, ':', le - i);
		assert_non_null(colon);
		assert_true(n < max);
		h[n].name = (const char *)p + i;
		h[n].name_len = (size_t)((uint8_t *)colon - (p + i));
		h[n].value = colon + 1;
		h[n].value_len = le - (size_t)((uint8_t *)colon + 1 - p);
		n++;
		i = e + 1;
	}
	return n;
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

/* The compact form of JSON bytes, as the codec writes JSON data; NULL if not JSON. */
static char *canonical_json(const uint8_t *p, size_t len, size_t *out_len)
{
	json_t *v = json_loadb((const char *)p, len,
			       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	char *s;

	if (!v)
		return NULL;
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	*out_len = strlen(s);
	json_decref(v);
	return s;
}

static int attrs_equal(const struct cfx_ce *a, const struct cfx_ce *b, unsigned flags)
{
	struct cfx_ce x = *a, y = *b;

	x.data = y.data = NULL;
	x.data_len = y.data_len = 0;
	x.has_data = y.has_data = false;
	return cfx_ce_equal(&x, &y, flags);
}

/* b is a after a trip through the JSON format: equal, JSON data canonical. */
static void assert_same_after_json(const struct cfx_ce *a, const struct cfx_ce *b)
{
	size_t clen = 0;
	char *c;

	assert_true(attrs_equal(a, b, 0));
	assert_int_equal(a->has_data, b->has_data);
	if (a->data_len == b->data_len &&
	    (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0))
		return;
	/* Only JSON data may change, and only into its compact form. */
	c = canonical_json(a->data, a->data_len, &clen);
	assert_non_null(c);
	assert_int_equal(clen, b->data_len);
	assert_memory_equal(c, b->data, clen);
	free(c);
}

struct props {
	struct cfx_ce_header h[PROPS_MAX];
	char *mem[PROPS_MAX * 2];
	size_t n;
};

static int collect(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct props *pr = ctx;

	assert_true(pr->n < PROPS_MAX);
	assert_int_equal(strlen(name), nlen);
	assert_int_equal(strlen(value), vlen);
	pr->mem[2 * pr->n] = strdup(name);
	pr->mem[2 * pr->n + 1] = strdup(value);
	pr->h[pr->n] =
		(struct cfx_ce_header){pr->mem[2 * pr->n], nlen, pr->mem[2 * pr->n + 1], vlen};
	pr->n++;
	return 0;
}

static void props_free(struct props *pr)
{
	for (size_t i = 0; i < 2 * pr->n; i++)
		free(pr->mem[i]);
	pr->n = 0;
}

/* Every binding: emit the attributes, rebuild from them, compare. */
static void roundtrip_bindings(const struct cfx_ce *ce, const struct cfx_ce_limits *lim)
{
	const struct cfx_ce_attr *ct = cfx_ce_get(ce, "datacontenttype");
	static const enum cfx_ce_binding all[] = {CFX_CE_BINDING_HTTP, CFX_CE_BINDING_KAFKA,
						  CFX_CE_BINDING_MQTT, CFX_CE_BINDING_ROCKETMQ};
	char err[256];

	for (size_t k = 0; k < CFX_ARRAY_LEN(all); k++) {
		struct props pr = {.n = 0};
		struct cfx_ce back;
		int rc;

		assert_int_equal(cfx_ce_emit_attrs(ce, all[k], collect, &pr), 0);
		assert_int_equal(pr.n, ce->attrs_n - (ct ? 1 : 0));
		rc = cfx_ce_from_props(all[k], pr.h, pr.n, ct ? ct->value : NULL,
				       ct ? ct->value_len : 0, ce->data, ce->data_len, ce->has_data,
				       lim, &back, err, sizeof err);
		if (rc)
			fail_msg("binding %d: %s", (int)all[k], err);
		/* Exact for the core attributes; extensions come back as strings. */
		assert_true(cfx_ce_equal(ce, &back, CFX_CE_EQ_EXT_AS_STRING));
		cfx_ce_free(&back);

		/* HTTP once more as a request: Content-Type among the headers. */
		if (all[k] == CFX_CE_BINDING_HTTP) {
			if (ct) {
				assert_true(pr.n < PROPS_MAX);
				pr.h[pr.n++] = (struct cfx_ce_header){"Content-Type", 12, ct->value,
								      ct->value_len};
			}
			rc = cfx_ce_parse_http_binary(pr.h, pr.n, ce->data, ce->data_len, lim,
						      &back, err, sizeof err);
			if (rc)
				fail_msg("http binary: %s", err);
			assert_true(attrs_equal(ce, &back, CFX_CE_EQ_EXT_AS_STRING));
			/* HTTP cannot tell empty data from none. */
			assert_int_equal(back.has_data, ce->has_data && ce->data_len > 0);
			assert_int_equal(back.data_len, ce->data_len);
			if (ce->data_len)
				assert_memory_equal(back.data, ce->data, ce->data_len);
			cfx_ce_free(&back);
			if (ct)
				pr.n--;
		}
		props_free(&pr);
	}
}

/* The JSON format and then every binding; returns nothing, fails loudly. */
static void roundtrip(const struct cfx_ce *ce, const struct cfx_ce_limits *lim)
{
	struct cfx_ce again;
	size_t len, len2;
	char err[256];
	char *s, *s2;
	json_t *obj;
	int rc;

	s = cfx_ce_to_structured(ce, &len);
	assert_int_equal(strlen(s), len);
	rc = cfx_ce_parse_structured((const uint8_t *)s, len, lim, &again, err, sizeof err);
	if (rc)
		fail_msg("re-parse of %s: %s", s, err);
	assert_same_after_json(ce, &again);
	/* A second trip changes nothing. */
	s2 = cfx_ce_to_structured(&again, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(s, s2, len);
	cfx_free(s2);
	cfx_free(s);

	/* The jansson form has the same members. */
	obj = cfx_ce_to_json(&again);
	assert_int_equal(json_object_size(obj), again.attrs_n + (again.has_data ? 1 : 0));
	json_decref(obj);

	roundtrip_bindings(ce, lim);
	roundtrip_bindings(&again, lim);
	cfx_ce_free(&again);
}

static void roundtrip_batch(const struct cfx_ce *ces, size_t n, const struct cfx_ce_limits *lim)
{
	struct cfx_ce *back;
	size_t len, m;
	char err[256];
	char *s = cfx_ce_batch_to_json(ces, n, &len);

	assert_int_equal(
		cfx_ce_parse_batch((const uint8_t *)s, len, lim, &back, &m, err, sizeof err), 0);
	assert_int_equal(m, n);
	for (size_t i = 0; i < n; i++) {
		assert_same_after_json(&ces[i], &back[i]);
		roundtrip(&ces[i], lim);
	}
	cfx_ce_batch_free(back, m);
	cfx_free(s);
}

/* ------------------------------------------------------------------------
 * The corpus
 * ------------------------------------------------------------------------ */

static int is_batch_case(const char *name)
{
	return strncmp(name, "batch-", 6) == 0;
}

static void test_corpus_valid(void **state)
{
	struct cfx_ce_limits lim = corpus_limits();
	size_t n;
	char **names = list_dir("valid", &n);

	(void)state;
	assert_true(n >= 25);
	for (size_t i = 0; i < n; i++) {
		char path[512], err[256] = "";
		size_t len;
		uint8_t *p;
		int rc;

		snprintf(path, sizeof path, "%s/valid/%s", CORPUS_DIR, names[i]);
		p = slurp(path, &len);
		if (is_batch_case(names[i])) {
			struct cfx_ce *ces;
			size_t m;

			rc = cfx_ce_parse_batch(p, len, &lim, &ces, &m, err, sizeof err);
			if (rc)
				fail_msg("valid/%s refused: %s", names[i], err);
			roundtrip_batch(ces, m, &lim);
			cfx_ce_batch_free(ces, m);
		} else {
			struct cfx_ce ce;

			rc = cfx_ce_parse_structured(p, len, &lim, &ce, err, sizeof err);
			if (rc)
				fail_msg("valid/%s refused: %s", names[i], err);
			roundtrip(&ce, &lim);
			roundtrip_batch(&ce, 1, &lim);
			cfx_ce_free(&ce);
		}
		free(p);
	}
	free_list(names, n);
}

static void test_corpus_invalid(void **state)
{
	struct cfx_ce_limits lim = corpus_limits();
	size_t n;
	char **names = list_dir("invalid", &n);

	(void)state;
	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++) {
		char path[512], rel[300], err[256] = "";
		char *want;
		size_t len;
		uint8_t *p;
		int rc;

		snprintf(path, sizeof path, "%s/invalid/%s", CORPUS_DIR, names[i]);
		snprintf(rel, sizeof rel, "invalid/%s", names[i]);
		want = expected_error(rel);
		if (!want)
			fail_msg("%s has no line in expected_errors.txt", rel);
		p = slurp(path, &len);
		if (is_batch_case(names[i])) {
			struct cfx_ce *ces = (struct cfx_ce *)1;
			size_t m = 99;

			rc = cfx_ce_parse_batch(p, len, &lim, &ces, &m, err, sizeof err);
			/* All or nothing. */
			assert_null(ces);
			assert_int_equal(m, 0);
		} else {
			struct cfx_ce ce;

			rc = cfx_ce_parse_structured(p, len, &lim, &ce, err, sizeof err);
			if (rc == 0)
				fail_msg("%s accepted", rel);
			/* Nothing is left behind. */
			assert_int_equal(ce.attrs_n, 0);
			assert_null(ce.data);
		}
		if (rc == 0)
			fail_msg("%s accepted", rel);
		if (!strstr(err, want))
			fail_msg("%s: message \"%s\" lacks \"%s\"", rel, err, want);
		free(want);
		free(p);
	}
	free_list(names, n);
}

static void test_corpus_binary(void **state)
{
	struct cfx_ce_limits lim = corpus_limits();
	static const char *const dirs[] = {"binary_valid", "binary_invalid"};

	(void)state;
	for (size_t d = 0; d < 2; d++) {
		size_t n;
		char **names = list_dir(dirs[d], &n);

		assert_true(n >= 10);
		for (size_t i = 0; i < n; i++) {
			struct cfx_ce_header h[HEADERS_MAX];
			char path[512], rel[300], err[256] = "";
			const uint8_t *body;
			size_t len, hn, body_len;
			struct cfx_ce ce;
			uint8_t *p;
			int rc;

			snprintf(rel, sizeof rel, "%s/%s", dirs[d], names[i]);
			snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, rel);
			p = slurp(path, &len);
			hn = split_headers(p, len, h, HEADERS_MAX, &body, &body_len);
			rc = cfx_ce_parse_http_binary(h, hn, body, body_len, &lim, &ce, err,
						      sizeof err);
			if (d == 0) {
				if (rc)
					fail_msg("%s refused: %s", rel, err);
				roundtrip(&ce, &lim);
				cfx_ce_free(&ce);
			} else {
				char *want = expected_error(rel);

				if (!want)
					fail_msg("%s has no line in expected_errors.txt", rel);
				if (rc == 0)
					fail_msg("%s accepted", rel);
				if (!strstr(err, want))
					fail_msg("%s: message \"%s\" lacks \"%s\"", rel, err, want);
				free(want);
			}
			free(p);
		}
		free_list(names, n);
	}
}

/* ------------------------------------------------------------------------
 * Binary mode
 * ------------------------------------------------------------------------ */

#define HDR(n, v)                                                                                  \
	{                                                                                          \
		n, sizeof(n) - 1, v, sizeof(v) - 1                                                 \
	}
#define REQUIRED_HDRS                                                                              \
	HDR("ce-specversion", "1.0"), HDR("ce-id", "1"), HDR("ce-source", "/s"),                   \
		HDR("ce-type", "com.example.t")

static void test_http_binary_percent_decoding(void **state)
{
	static const struct {
		const char *raw, *want;
	} cases[] = {
		{"%E2%82%AC", "\xe2\x82\xac"},
		{"%25", "%"},
		{"100%25 sure", "100% sure"},
		{"%e2%82%ac", "\xe2\x82\xac"},
		{"Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro \xe2\x82\xac \xf0\x9f\x98\x80"},
		{"\"quoted %22 \\\"x\\\"\"", "quoted \" \"x\""},
		{"  padded\t", "padded"},
		{"\xe2\x82\xac", "\xe2\x82\xac"}, /* raw UTF-8 (obs-text) is accepted */
	};

	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct cfx_ce_header h[] = {REQUIRED_HDRS,
					    {"ce-subject", 10, cases[i].raw, strlen(cases[i].raw)}};
		const struct cfx_ce_attr *a;
		struct cfx_ce ce;
		char err[256];

		assert_int_equal(cfx_ce_parse_http_binary(h, CFX_ARRAY_LEN(h), NULL, 0, NULL, &ce,
							  err, sizeof err),
				 0);
		a = cfx_ce_get(&ce, "subject");
		assert_non_null(a);
		assert_string_equal(a->value, cases[i].want);
		assert_false(ce.has_data);
		cfx_ce_free(&ce);
	}
}

struct one {
	const char *name;
	char value[256];
};

static int find_one(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct one *o = ctx;

	(void)nlen;
	if (strcmp(name, o->name) == 0) {
		assert_true(vlen < sizeof o->value);
		memcpy(o->value, value, vlen + 1);
	}
	return 0;
}

static void test_http_emit_percent_encoding(void **state)
{
	struct cfx_ce_header h[] = {REQUIRED_HDRS,
				    HDR("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
				    HDR("ce-comexamplequote", "%22a%25b%22~!")};
	struct one o;
	struct cfx_ce ce;

	(void)state;
	assert_int_equal(cfx_ce_parse_http_binary(h, CFX_ARRAY_LEN(h), NULL, 0, NULL, &ce, NULL, 0),
			 0);
	o = (struct one){.name = "ce-subject"};
	assert_int_equal(cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_HTTP, find_one, &o), 0);
	assert_string_equal(o.value, "Euro%20%E2%82%AC%20%F0%9F%98%80");
	o = (struct one){.name = "ce-comexamplequote"};
	assert_int_equal(cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_HTTP, find_one, &o), 0);
	assert_string_equal(o.value, "%22a%25b%22~!");
	/* The other bindings carry the UTF-8 value as it is. */
	o = (struct one){.name = "ce_subject"};
	assert_int_equal(cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_KAFKA, find_one, &o), 0);
	assert_string_equal(o.value, "Euro \xe2\x82\xac \xf0\x9f\x98\x80");
	o = (struct one){.name = "subject"};
	assert_int_equal(cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_MQTT, find_one, &o), 0);
	assert_string_equal(o.value, "Euro \xe2\x82\xac \xf0\x9f\x98\x80");
	o = (struct one){.name = "CE_subject"};
	assert_int_equal(cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_ROCKETMQ, find_one, &o), 0);
	assert_string_equal(o.value, "Euro \xe2\x82\xac \xf0\x9f\x98\x80");
	cfx_ce_free(&ce);
}

static int stop_at_two(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	int *count = ctx;

	(void)name, (void)nlen, (void)value, (void)vlen;
	return ++*count == 2 ? 42 : 0;
}

static void test_emit_stops_on_callback_error(void **state)
{
	struct cfx_ce_header h[] = {REQUIRED_HDRS};
	struct cfx_ce ce;
	int count = 0;

	(void)state;
	assert_int_equal(cfx_ce_parse_http_binary(h, 4, NULL, 0, NULL, &ce, NULL, 0), 0);
	assert_int_equal(cfx_ce_emit_attrs(&ce, CFX_CE_BINDING_KAFKA, stop_at_two, &count), 42);
	assert_int_equal(count, 2);
	cfx_ce_free(&ce);
}

static void test_binary_to_structured_to_binary(void **state)
{
	static const char body[] = "{ \"a\" : [1, 2] }";
	struct cfx_ce_header h[] = {REQUIRED_HDRS, HDR("ce-time", "2018-04-05T03:56:24Z"),
				    HDR("ce-comexampleothervalue", "5"),
				    HDR("Content-Type", "application/json; charset=utf-8")};
	struct cfx_ce ce, again;
	size_t len;
	char *s;

	(void)state;
	assert_int_equal(cfx_ce_parse_http_binary(h, CFX_ARRAY_LEN(h), (const uint8_t *)body,
						  strlen(body), NULL, &ce, NULL, 0),
			 0);
	assert_int_equal(ce.data_kind, CFX_CE_DATA_BINARY);
	s = cfx_ce_to_structured(&ce, &len);
	/* JSON data is written as JSON (compact), extensions as strings. */
	assert_non_null(strstr(s, "\"data\":{\"a\":[1,2]}"));
	assert_non_null(strstr(s, "\"comexampleothervalue\":\"5\""));
	assert_int_equal(cfx_ce_parse_structured((const uint8_t *)s, len, NULL, &again, NULL, 0),
			 0);
	assert_true(attrs_equal(&ce, &again, 0));
	assert_int_equal(again.data_len, strlen("{\"a\":[1,2]}"));
	cfx_free(s);
	cfx_ce_free(&again);
	cfx_ce_free(&ce);
}

static void test_binary_content_type_implied(void **state)
{
	static const char doc[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
				  "\"type\":\"t\",\"data\":\"I'm just a string\"}";
	static const char nodata[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
				     "\"type\":\"t\"}";
	struct cfx_ce ce;

	(void)state;
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, strlen(doc), NULL, &ce, NULL, 0), 0);
	/* The JSON format implies application/json; the bytes are a JSON string. */
	assert_string_equal(cfx_ce_binary_content_type(&ce), "application/json");
	assert_int_equal(ce.data_len, strlen("\"I'm just a string\""));
	assert_memory_equal(ce.data, "\"I'm just a string\"", ce.data_len);
	assert_null(cfx_ce_get(&ce, "datacontenttype"));
	cfx_ce_free(&ce);
	assert_int_equal(cfx_ce_parse_structured((const uint8_t *)nodata, strlen(nodata), NULL, &ce,
						 NULL, 0),
			 0);
	assert_null(cfx_ce_binary_content_type(&ce));
	cfx_ce_free(&ce);
	assert_string_equal(cfx_ce_content_type_key(CFX_CE_BINDING_HTTP), "Content-Type");
	assert_string_equal(cfx_ce_content_type_key(CFX_CE_BINDING_KAFKA), "content-type");
	assert_null(cfx_ce_content_type_key(CFX_CE_BINDING_MQTT));
	assert_string_equal(cfx_ce_content_type_key(CFX_CE_BINDING_ROCKETMQ), "CE_contentType");
}

static void test_from_props_per_binding(void **state)
{
	struct cfx_ce_header kafka[] = {
		HDR("ce_specversion", "1.0"), HDR("ce_id", "1"),
		HDR("ce_source", "/s"),	      HDR("ce_type", "t"),
		HDR("ce_flag", "true"),	      HDR("content-type", "text/plain"),
		HDR("CE_id", "not ours"),     HDR("other", "x")};
	struct cfx_ce_header rmq[] = {HDR("CE_specversion", "1.0"),
				      HDR("CE_id", "1"),
				      HDR("CE_source", "/s"),
				      HDR("CE_type", "t"),
				      HDR("CE_contentType", "text/plain"),
				      HDR("KEYS", "k1")};
	struct cfx_ce_header mqtt[] = {HDR("specversion", "1.0"),
				       HDR("id", "1"),
				       HDR("source", "/s"),
				       HDR("type", "t"),
				       HDR("datacontenttype", "text/plain"),
				       HDR("Not-CE", "skipped")};
	struct cfx_ce_header mqtt_bad[] = {HDR("specversion", "1.0"), HDR("id", "1"),
					   HDR("source", "/s"), HDR("type", "t"),
					   HDR("datacontenttype", "text/html")};
	struct cfx_ce_header kafka_bad[] = {HDR("ce_specversion", "1.0"), HDR("ce_id", "1"),
					    HDR("ce_source", "/s"), HDR("ce_type", "t"),
					    HDR("ce_Flag", "x")};
	const struct cfx_ce_attr *a;
	struct cfx_ce ce;
	char err[256];

	(void)state;
	/* Kafka: a record without a value has no data; "CE_id" is not a ce_ header. */
	assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_KAFKA, kafka, CFX_ARRAY_LEN(kafka),
					   "text/plain", 10, NULL, 0, false, NULL, &ce, err,
					   sizeof err),
			 0);
	assert_false(ce.has_data);
	assert_string_equal(cfx_ce_get(&ce, "id")->value, "1");
	a = cfx_ce_get(&ce, "flag");
	assert_non_null(a);
	assert_int_equal(a->type, CFX_CE_STRING); /* extension types are not carried */
	assert_string_equal(cfx_ce_get(&ce, "datacontenttype")->value, "text/plain");
	assert_int_equal(cfx_ce_get(&ce, "source")->type, CFX_CE_URI_REF);
	cfx_ce_free(&ce);

	/* RocketMQ: CE_contentType is skipped among the properties, given apart. */
	assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_ROCKETMQ, rmq, CFX_ARRAY_LEN(rmq),
					   "text/plain", 10, (const uint8_t *)"", 0, true, NULL,
					   &ce, err, sizeof err),
			 0);
	assert_true(ce.has_data);
	assert_int_equal(ce.data_len, 0);
	assert_int_equal(ce.attrs_n, 5);
	cfx_ce_free(&ce);

	/* MQTT: datacontenttype as a user property alone, or agreeing with Content Type. */
	assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_MQTT, mqtt, CFX_ARRAY_LEN(mqtt), NULL, 0,
					   (const uint8_t *)"hi", 2, true, NULL, &ce, err,
					   sizeof err),
			 0);
	assert_string_equal(cfx_ce_get(&ce, "datacontenttype")->value, "text/plain");
	assert_int_equal(ce.attrs_n, 5);
	cfx_ce_free(&ce);
	assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_MQTT, mqtt, CFX_ARRAY_LEN(mqtt),
					   "text/plain", 10, NULL, 0, false, NULL, &ce, err,
					   sizeof err),
			 0);
	assert_int_equal(ce.attrs_n, 5);
	cfx_ce_free(&ce);
	assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_MQTT, mqtt_bad, CFX_ARRAY_LEN(mqtt_bad),
					   "text/plain", 10, NULL, 0, false, NULL, &ce, err,
					   sizeof err),
			 CFX_EPARSE);
	assert_non_null(strstr(err, "datacontenttype: differs"));
	assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_KAFKA, kafka_bad,
					   CFX_ARRAY_LEN(kafka_bad), NULL, 0, NULL, 0, false, NULL,
					   &ce, err, sizeof err),
			 CFX_EPARSE);
	assert_non_null(strstr(err, "lower-case"));
}

/* ------------------------------------------------------------------------
 * Mode selection
 * ------------------------------------------------------------------------ */

static void test_http_mode(void **state)
{
	static const struct {
		const char *ct;
		enum cfx_ce_mode mode;
	} cases[] = {
		{"application/cloudevents+json", CFX_CE_MODE_STRUCTURED},
		{"application/cloudevents+json; charset=utf-8", CFX_CE_MODE_STRUCTURED},
		{"application/cloudevents+json; charset=UTF-8", CFX_CE_MODE_STRUCTURED},
		{"Application/CloudEvents+JSON;charset=\"utf-8\"", CFX_CE_MODE_STRUCTURED},
		{"  application/cloudevents+json ; charset=utf-8 ", CFX_CE_MODE_STRUCTURED},
		{"application/cloudevents-batch+json", CFX_CE_MODE_BATCH},
		{"application/cloudevents-batch+json; charset=UTF-8", CFX_CE_MODE_BATCH},
		{"application/cloudevents+json; charset=iso-8859-1", CFX_CE_MODE_UNSUPPORTED},
		{"application/cloudevents+avro", CFX_CE_MODE_UNSUPPORTED},
		{"application/cloudevents", CFX_CE_MODE_UNSUPPORTED},
		{"application/cloudevents-batch+avro", CFX_CE_MODE_UNSUPPORTED},
		{"application/cloudevents+json; charset", CFX_CE_MODE_UNSUPPORTED},
		{"application/json", CFX_CE_MODE_BINARY},
		{"application/json; charset=utf-8", CFX_CE_MODE_BINARY},
		{"text/plain", CFX_CE_MODE_BINARY},
		{"", CFX_CE_MODE_BINARY},
		{"application/cloudevent+json", CFX_CE_MODE_BINARY},
	};

	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		if (cfx_ce_http_mode(cases[i].ct, strlen(cases[i].ct)) != cases[i].mode)
			fail_msg("\"%s\": want mode %d", cases[i].ct, (int)cases[i].mode);
	}
	assert_int_equal(cfx_ce_http_mode(NULL, 0), CFX_CE_MODE_BINARY);
}

/* ------------------------------------------------------------------------
 * Batches and limits
 * ------------------------------------------------------------------------ */

/* A document of one event with `data_len` bytes of text data. */
static char *event_with_data(size_t data_len, size_t *len)
{
	static const char head[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
				   "\"type\":\"t\",\"datacontenttype\":\"text/plain\",\"data\":\"";
	size_t n = strlen(head) + data_len + 2;
	char *s = malloc(n + 1);

	memcpy(s, head, strlen(head));
	memset(s + strlen(head), 'x', data_len);
	memcpy(s + strlen(head) + data_len, "\"}", 3);
	*len = n;
	return s;
}

static void test_event_size_limit(void **state)
{
	/* specversion1.0 + id1 + source/s + typet + datacontenttypetext/plain */
	const size_t attrs_bytes = 14 + 3 + 8 + 5 + 25;
	struct cfx_ce_limits lim;
	struct cfx_ce ce;
	char err[256], *s;
	size_t len;

	(void)state;
	cfx_ce_limits_default(&lim);
	assert_int_equal(lim.event_bytes_max, 64 * 1024);
	s = event_with_data(64 * 1024 - attrs_bytes, &len);
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)s, len, NULL, &ce, err, sizeof err), 0);
	assert_int_equal(cfx_ce_event_bytes(&ce), 64 * 1024);
	roundtrip(&ce, &lim);
	cfx_ce_free(&ce);
	free(s);
	s = event_with_data(64 * 1024 - attrs_bytes + 1, &len);
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)s, len, NULL, &ce, err, sizeof err),
		CFX_EMSGSIZE);
	assert_string_equal(err, "event is 65537 bytes, over the limit of 65536");
	/* Configurable up. */
	lim.event_bytes_max = 128 * 1024;
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)s, len, &lim, &ce, err, sizeof err), 0);
	cfx_ce_free(&ce);
	/* The document limit comes first. */
	lim.body_bytes_max = 1024;
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)s, len, &lim, &ce, err, sizeof err),
		CFX_EMSGSIZE);
	assert_non_null(strstr(err, "document is"));
	free(s);
}

static void test_batch_all_or_nothing(void **state)
{
	static const char good[] = "{\"specversion\":\"1.0\",\"id\":\"%d\",\"source\":\"/s\","
				   "\"type\":\"t\"}";
	struct cfx_ce_limits lim;
	struct cfx_ce *ces;
	char doc[4096], err[256];
	size_t o = 0, n;

	(void)state;
	cfx_ce_limits_default(&lim);
	o += (size_t)snprintf(doc + o, sizeof doc - o, "[");
	for (int i = 0; i < 5; i++)
		o += (size_t)snprintf(doc + o, sizeof doc - o, good, i), doc[o++] = ',';
	o += (size_t)snprintf(doc + o, sizeof doc - o,
			      "{\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"t\"}]");
	assert_int_equal(
		cfx_ce_parse_batch((const uint8_t *)doc, o, &lim, &ces, &n, err, sizeof err),
		CFX_EPARSE);
	assert_null(ces);
	assert_int_equal(n, 0);
	assert_string_equal(err, "event 5 of the batch: missing required attribute \"source\"");

	/* The same five good events alone pass; the count limit. */
	o = 0;
	o += (size_t)snprintf(doc + o, sizeof doc - o, "[");
	for (int i = 0; i < 5; i++)
		o += (size_t)snprintf(doc + o, sizeof doc - o, good, i), doc[o++] = ',';
	doc[o - 1] = ']';
	assert_int_equal(
		cfx_ce_parse_batch((const uint8_t *)doc, o, &lim, &ces, &n, err, sizeof err), 0);
	assert_int_equal(n, 5);
	assert_string_equal(cfx_ce_get(&ces[4], "id")->value, "4");
	cfx_ce_batch_free(ces, n);
	lim.batch_events_max = 4;
	assert_int_equal(
		cfx_ce_parse_batch((const uint8_t *)doc, o, &lim, &ces, &n, err, sizeof err),
		CFX_EBATCHSIZE);
	assert_string_equal(err, "batch has 5 events, over the limit of 4");
	assert_null(ces);
}

static void test_attrs_and_depth_limits(void **state)
{
	struct cfx_ce_limits lim;
	char doc[8192], err[256];
	struct cfx_ce ce;
	size_t o;

	(void)state;
	cfx_ce_limits_default(&lim);
	o = (size_t)snprintf(
		doc, sizeof doc,
		"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"");
	for (int i = 0; i < 61; i++)
		o += (size_t)snprintf(doc + o, sizeof doc - o, ",\"x%d\":%d", i, i);
	doc[o++] = '}';
	/* 4 + 60 = 64 attributes pass, 65 do not. */
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, o, &lim, &ce, err, sizeof err),
		CFX_EMSGSIZE);
	assert_string_equal(err, "more than 64 attributes");
	lim.attrs_max = 65;
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, o, &lim, &ce, err, sizeof err), 0);
	assert_int_equal(ce.attrs_n, 65);
	/* Extensions sort by name after the core attributes. */
	assert_string_equal(ce.attrs[0].name, "specversion");
	assert_string_equal(ce.attrs[3].name, "type");
	assert_string_equal(ce.attrs[4].name, "x0");
	assert_string_equal(ce.attrs[5].name, "x1");
	assert_string_equal(ce.attrs[6].name, "x10");
	cfx_ce_free(&ce);

	/* Depth: a configured limit. */
	cfx_ce_limits_default(&lim);
	lim.depth_max = 3;
	o = (size_t)snprintf(doc, sizeof doc,
			     "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":"
			     "\"t\",\"data\":[[[\"[[[[ not nesting\"]]]}");
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, o, &lim, &ce, err, sizeof err), 0);
	cfx_ce_free(&ce);
	o = (size_t)snprintf(doc, sizeof doc,
			     "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":"
			     "\"t\",\"data\":[[[{}]]]}");
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, o, &lim, &ce, err, sizeof err),
		CFX_EPARSE);
	assert_string_equal(err, "data nests deeper than 3 levels");
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */

static void test_check_time(void **state)
{
	static const char *const good[] = {"1985-04-12T23:20:50.52Z",
					   "1996-12-19T16:39:57-08:00",
					   "1990-12-31T23:59:60Z",
					   "1990-12-31T15:59:60-08:00",
					   "1937-01-01T12:00:27.87+00:20",
					   "0000-01-01T00:00:00Z",
					   "9999-12-31T23:59:59.999999999999Z",
					   "2024-02-29T00:00:00z",
					   "2016-06-30T23:59:60Z",
					   "2017-01-01T00:59:60+01:00"};
	static const char *const bad[] = {"1985-04-12T23:20:50.52",
					  "1985-04-12 23:20:50Z",
					  "1985-04-12T23:20Z",
					  "85-04-12T23:20:50Z",
					  "1985-4-12T23:20:50Z",
					  "1985-04-12T23:20:50+0100",
					  "1985-04-12T23:20:50+01",
					  "1985-04-12T23:20:50.Z",
					  "1985-04-12T23:20:50ZZ",
					  "2023-02-29T00:00:00Z",
					  "2100-02-29T00:00:00Z",
					  "2024-06-31T00:00:00Z",
					  "2024-00-10T00:00:00Z",
					  "2024-01-10T00:60:00Z",
					  "2024-01-10T12:00:60Z",
					  "2024-01-10T23:59:60+00:01",
					  "+1985-04-12T23:20:50Z",
					  "1985-04-12T23:20:50+24:00",
					  "",
					  "1985-04-12T23:20:50Z "};

	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(good); i++) {
		const char *why = NULL;

		if (cfx_ce_check_time(good[i], strlen(good[i]), &why))
			fail_msg("\"%s\" refused: %s", good[i], why);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		if (cfx_ce_check_time(bad[i], strlen(bad[i]), NULL) == 0)
			fail_msg("\"%s\" accepted", bad[i]);
	}
}

static void test_check_uri(void **state)
{
	static const char *const refs[] = {"https://github.com/cloudevents",
					   "mailto:cncf-wg-serverless@lists.cncf.io",
					   "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
					   "/cloudevents/spec/pull/123",
					   "1-555-123-4567",
					   "//host/path",
					   "a/b:c",
					   "?q",
					   "#f",
					   "http://[::1]/",
					   "http://h:/",
					   "x+y.z-w:rest",
					   "%41"};
	static const char *const bad_refs[] = {
		"",	  " /a",   "/a b",	    ":x",	   "1a:b",
		"/a%4",	  "/a%zz", "http://a@b@c/", "http://[::1", "http://h:8a/",
		"/a#b#c", "/a\"b", "/caf\xc3\xa9",  "http://[]/"};
	static const char *const uris[] = {"https://example.com/s.json", "urn:x",
					   "https://e.com/s.json#/defs/a", "tag:a,b:c"};
	static const char *const bad_uris[] = {"/s.json", "s.json", "//host/s", ""};

	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(refs); i++) {
		if (cfx_ce_check_uri(refs[i], strlen(refs[i]), 0, NULL))
			fail_msg("\"%s\" refused", refs[i]);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_refs); i++) {
		if (cfx_ce_check_uri(bad_refs[i], strlen(bad_refs[i]), 0, NULL) == 0)
			fail_msg("\"%s\" accepted", bad_refs[i]);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(uris); i++) {
		if (cfx_ce_check_uri(uris[i], strlen(uris[i]), 1, NULL))
			fail_msg("\"%s\" refused", uris[i]);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_uris); i++) {
		if (cfx_ce_check_uri(bad_uris[i], strlen(bad_uris[i]), 1, NULL) == 0)
			fail_msg("\"%s\" accepted", bad_uris[i]);
	}
}

static void test_check_name_and_media_type(void **state)
{
	const char *why;

	(void)state;
	assert_int_equal(cfx_ce_check_name("comexampleextension1", 20, NULL), 0);
	assert_int_equal(cfx_ce_check_name("a0", 2, NULL), 0);
	assert_int_equal(cfx_ce_check_name("data", 4, &why), CFX_EPARSE);
	assert_non_null(strstr(why, "reserved"));
	assert_int_equal(cfx_ce_check_name("dataa", 5, NULL), 0);
	assert_int_equal(cfx_ce_check_name("Id", 2, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_name("", 0, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_name("a.b", 3, NULL), CFX_EPARSE);

	assert_int_equal(cfx_ce_check_media_type("application/json", 16, NULL), 0);
	assert_int_equal(cfx_ce_check_media_type("text/plain ; charset=\"a;b\" ; x=y", 32, NULL),
			 0);
	assert_int_equal(cfx_ce_check_media_type("a/b;", 4, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type("a/", 2, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type("/b", 2, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type("a/b c", 5, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type("a/b ", 4, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type("a/b; c=d\t", 9, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type(" a/b", 4, NULL), CFX_EPARSE);
	assert_int_equal(cfx_ce_check_media_type("a/b; c=\"d", 9, NULL), CFX_EPARSE);
}

/* ------------------------------------------------------------------------
 * The JSON form
 * ------------------------------------------------------------------------ */

static void test_to_json_types_and_data(void **state)
{
	static const char doc[] =
		"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\","
		"\"n\":-7,\"b\":false,\"s\":\"5\",\"datacontenttype\":\"application/json\","
		"\"data\":{\"x\" : [1, 2.5, \"\\u20ac\"]}}";
	json_t *obj, *d;
	struct cfx_ce ce;

	(void)state;
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, strlen(doc), NULL, &ce, NULL, 0), 0);
	assert_int_equal(cfx_ce_get(&ce, "n")->type, CFX_CE_INT);
	assert_string_equal(cfx_ce_get(&ce, "n")->value, "-7");
	assert_int_equal(cfx_ce_get(&ce, "b")->type, CFX_CE_BOOL);
	assert_int_equal(cfx_ce_get(&ce, "s")->type, CFX_CE_STRING);
	assert_int_equal(ce.data_kind, CFX_CE_DATA_JSON);
	/* JSON data bytes are jansson's compact form. */
	assert_int_equal(ce.data_len, strlen("{\"x\":[1,2.5,\"\xe2\x82\xac\"]}"));
	assert_memory_equal(ce.data, "{\"x\":[1,2.5,\"\xe2\x82\xac\"]}", ce.data_len);
	obj = cfx_ce_to_json(&ce);
	assert_true(json_is_integer(json_object_get(obj, "n")));
	assert_int_equal(json_integer_value(json_object_get(obj, "n")), -7);
	assert_true(json_is_false(json_object_get(obj, "b")));
	assert_true(json_is_string(json_object_get(obj, "s")));
	d = json_object_get(obj, "data");
	assert_true(json_is_object(d));
	assert_int_equal(json_array_size(json_object_get(d, "x")), 3);
	assert_null(json_object_get(obj, "data_base64"));
	json_decref(obj);
	cfx_ce_free(&ce);
}

static void test_data_representations(void **state)
{
	static const struct {
		const char *ct; /* NULL: none */
		const char *data;
		size_t len;
		const char *want; /* in the structured text */
	} cases[] = {
		{NULL, "{\"a\":1}", 7, "\"data\":{\"a\":1}"},
		{NULL, "not json", 8, "\"data_base64\":\"bm90IGpzb24=\""},
		{"application/json", "\"s\"", 3, "\"data\":\"s\""},
		{"application/json", "{bad", 4, "\"data_base64\":\"e2JhZA==\""},
		{"application/cloudevents+json", "[]", 2, "\"data\":[]"},
		{"text/plain", "caf\xc3\xa9", 5, "\"data\":\"caf\xc3\xa9\""},
		{"text/plain", "\xff", 1, "\"data_base64\":\"/w==\""},
		{"application/xml", "<a/>", 4, "\"data\":\"<a/>\""},
		{"application/atom+xml", "<a/>", 4, "\"data\":\"<a/>\""},
		{"application/octet-stream", "abc", 3, "\"data_base64\":\"YWJj\""},
		{"image/png", "", 0, "\"data_base64\":\"\""},
		{"application/json", "{\"a\":1,\"a\":2}", 13,
		 "\"data_base64\":\"eyJhIjoxLCJhIjoyfQ==\""},
	};

	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		struct cfx_ce_header h[] = {REQUIRED_HDRS, HDR("x", "")};
		struct cfx_ce ce;
		size_t n = 4, len;
		char *s;

		if (cases[i].ct) {
			h[4] = (struct cfx_ce_header){"Content-Type", 12, cases[i].ct,
						      strlen(cases[i].ct)};
			n = 5;
		}
		assert_int_equal(cfx_ce_from_props(CFX_CE_BINDING_HTTP, h, n, cases[i].ct,
						   cases[i].ct ? strlen(cases[i].ct) : 0,
						   (const uint8_t *)cases[i].data, cases[i].len,
						   true, NULL, &ce, NULL, 0),
				 0);
		s = cfx_ce_to_structured(&ce, &len);
		if (!strstr(s, cases[i].want))
			fail_msg("case %zu: %s lacks %s", i, s, cases[i].want);
		roundtrip(&ce, NULL);
		cfx_free(s);
		cfx_ce_free(&ce);
	}
}

static void test_null_attributes_are_unset(void **state)
{
	static const char doc[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
				  "\"type\":\"t\",\"subject\":null,\"time\":null,\"ext\":null}";
	struct cfx_ce ce;

	(void)state;
	assert_int_equal(
		cfx_ce_parse_structured((const uint8_t *)doc, strlen(doc), NULL, &ce, NULL, 0), 0);
	assert_int_equal(ce.attrs_n, 4);
	assert_false(ce.has_data);
	cfx_ce_free(&ce);
}

static void test_equal(void **state)
{
	static const char a[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
				"\"type\":\"t\",\"n\":5}";
	static const char b[] = "{\"n\":\"5\",\"type\":\"t\",\"source\":\"/s\",\"id\":\"1\","
				"\"specversion\":\"1.0\"}";
	struct cfx_ce x, y;

	(void)state;
	assert_int_equal(cfx_ce_parse_structured((const uint8_t *)a, strlen(a), NULL, &x, NULL, 0),
			 0);
	assert_int_equal(cfx_ce_parse_structured((const uint8_t *)b, strlen(b), NULL, &y, NULL, 0),
			 0);
	/* Member order does not matter; the extension's type does, unless told. */
	assert_false(cfx_ce_equal(&x, &y, 0));
	assert_true(cfx_ce_equal(&x, &y, CFX_CE_EQ_EXT_AS_STRING));
	cfx_ce_free(&x);
	cfx_ce_free(&y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_valid),
		cmocka_unit_test(test_corpus_invalid),
		cmocka_unit_test(test_corpus_binary),
		cmocka_unit_test(test_http_binary_percent_decoding),
		cmocka_unit_test(test_http_emit_percent_encoding),
		cmocka_unit_test(test_emit_stops_on_callback_error),
		cmocka_unit_test(test_binary_to_structured_to_binary),
		cmocka_unit_test(test_binary_content_type_implied),
		cmocka_unit_test(test_from_props_per_binding),
		cmocka_unit_test(test_http_mode),
		cmocka_unit_test(test_event_size_limit),
		cmocka_unit_test(test_batch_all_or_nothing),
		cmocka_unit_test(test_attrs_and_depth_limits),
		cmocka_unit_test(test_check_time),
		cmocka_unit_test(test_check_uri),
		cmocka_unit_test(test_check_name_and_media_type),
		cmocka_unit_test(test_to_json_types_and_data),
		cmocka_unit_test(test_data_representations),
		cmocka_unit_test(test_null_attributes_are_unset),
		cmocka_unit_test(test_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
