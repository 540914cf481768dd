/*
 * fuzz_sqlfilter.c - libFuzzer target for the SQL92 filter compiler and
 * evaluator (broker/sqlfilter.c: cfx_sql_compile, cfx_sql_match).
 *
 * Input: the expression, up to the first NUL byte (all of the input if
 * there is none); then up to FZ_SQL_SETS_MAX property sets, separated by
 * NUL bytes. A property set is "name=value" lines separated by '\n'; a
 * line without '=' is skipped, and the first line with a name wins. The
 * tag is the line named TAGS. Every expression is also matched against a
 * fixed set and an empty one, so seeds need no property sets.
 *
 * Beyond "no crash, no out-of-bounds read, no undefined behaviour, no
 * leak, no hang":
 *  - compiling returns 0, CFX_EPARSE or CFX_E2BIG; a failure leaves *out
 *    NULL and a message ending "at column N" with 1 <= N <= len + 1;
 *  - the getter is only asked for names the grammar allows;
 *  - matching returns 0 or 1, the same each time;
 *  - if the expression compiles, "NOT (expr)" compiles too (or hits a
 *    limit) and never matches together with it, and "(expr) OR TRUE"
 *    always matches: three-valued logic holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "broker/sqlfilter.h"
#include "fuzz_common.h"

#define FZ_SQL_SETS_MAX 4u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Always evaluated, besides the sets of the input. */
static const char fixed_set[] = "a=1\nb=abc\nc=-2.5\nd=9223372036854775808\ne=\nt=hello\n"
				"x.y=true\nTAGS=TagA";

struct set {
	const uint8_t *p;
	size_t len;
};

static int is_name_byte(uint8_t c, int first)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_')
		return 1;
	return !first && ((c >= '0' && c <= '9') || c == '.');
}

static struct cfx_view get_prop(void *arg, struct cfx_view name)
{
	const struct set *s = arg;
	size_t i = 0;

	/* Names come from the expression's identifiers, or are TAGS. */
	FZ_CHECK(name.p != NULL && name.len > 0 && name.len <= CFX_SQL_NAME_BYTES_MAX);
	for (size_t k = 0; k < name.len; k++)
		FZ_CHECK(is_name_byte(name.p[k], k == 0));

	while (i < s->len) {
		const uint8_t *line = s->p + i, *nl, *eq;
		size_t line_len;

		nl = memchr(line, '\n', s->len - i);
		line_len = nl ? (size_t)(nl - line) : s->len - i;
		eq = memchr(line, '=', line_len);
		if (eq && (size_t)(eq - line) == name.len && memcmp(line, name.p, name.len) == 0)
			return (struct cfx_view){ eq + 1, line_len - name.len - 1 };
		i += line_len + 1;
	}
	return (struct cfx_view){ NULL, 0 };
}

/* Checks a failed compilation's outputs. */
static void check_failure(int rc, const struct cfx_sql_filter *f, const char *err, size_t len)
{
	const char *at;
	unsigned long col;
	char *end;

	FZ_CHECK(rc == CFX_EPARSE || rc == CFX_E2BIG);
	FZ_CHECK(f == NULL);
	at = strstr(err, " at column ");
	FZ_CHECK(at != NULL);
	col = strtoul(at + strlen(" at column "), &end, 10);
	FZ_CHECK(*end == '\0');
	FZ_CHECK(col >= 1 && col <= len + 1);
}

/* Matches f against s twice: the answers must be 0 or 1, and agree. */
static int match_twice(const struct cfx_sql_filter *f, const struct set *s)
{
	int m = cfx_sql_match(f, get_prop, (void *)s);

	FZ_CHECK(m == 0 || m == 1);
	FZ_CHECK(cfx_sql_match(f, get_prop, (void *)s) == m);
	return m;
}

/* Compiles head + expr + tail; returns the filter, or NULL when a limit refused it. */
static struct cfx_sql_filter *compile_wrapped(const char *head, const uint8_t *expr, size_t len,
					      const char *tail)
{
	size_t hl = strlen(head), tl = strlen(tail);
	char *text = malloc(hl + len + tl);
	struct cfx_sql_filter *f = NULL;
	int rc;

	FZ_CHECK(text != NULL);
	memcpy(text, head, hl);
	memcpy(text + hl, expr, len);
	memcpy(text + hl + len, tail, tl);
	rc = cfx_sql_compile(text, hl + len + tl, &f, NULL, 0);
	free(text);
	/* expr compiled: wrapping it may only run into the length, depth or node limits. */
	FZ_CHECK(rc == 0 || rc == CFX_E2BIG);
	FZ_CHECK((rc == 0) == (f != NULL));
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t len = nul ? (size_t)(nul - data) : size;
	struct set sets[FZ_SQL_SETS_MAX + 2];
	struct cfx_sql_filter *f = NULL, *neg, *any;
	size_t nsets = 0, pos;
	char err[160];
	int rc;

	/* The expression text goes in a buffer of its own size, so ASan sees a read past it. */
	uint8_t *text = malloc(len ? len : 1);
	FZ_CHECK(text != NULL);
	memcpy(text, data, len);
	memset(err, 'X', sizeof err);
	rc = cfx_sql_compile((const char *)text, len, &f, err, sizeof err);
	if (rc != 0) {
		check_failure(rc, f, err, len);
		free(text);
		return 0;
	}
	FZ_CHECK(f != NULL);

	sets[nsets++] = (struct set){ (const uint8_t *)fixed_set, sizeof fixed_set - 1 };
	sets[nsets++] = (struct set){ (const uint8_t *)"", 0 };
	pos = nul ? len + 1 : size;
	while (pos <= size && nul && nsets < FZ_SQL_SETS_MAX + 2) {
		const uint8_t *end = memchr(data + pos, 0, size - pos);
		size_t n = end ? (size_t)(end - (data + pos)) : size - pos;

		sets[nsets++] = (struct set){ data + pos, n };
		pos += n + 1;
	}

	neg = compile_wrapped("NOT (", text, len, ")");
	any = compile_wrapped("(", text, len, ") OR TRUE");
	for (size_t i = 0; i < nsets; i++) {
		int m = match_twice(f, &sets[i]);

		if (neg)
			FZ_CHECK(!(m && match_twice(neg, &sets[i])));
		if (any)
			FZ_CHECK(match_twice(any, &sets[i]) == 1);
	}
	cfx_sql_free(any);
	cfx_sql_free(neg);
	cfx_sql_free(f);
	free(text);
	return 0;
}
