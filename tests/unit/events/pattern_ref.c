/*
 * pattern_ref.c - the reference evaluator (see pattern_ref.h). Included by
 * the tests that use it, so everything here is static.
 */
#include "pattern_ref.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The path from the root: keys with their lengths. */
struct ref_path {
	const char *key[40];
	size_t len[40];
	size_t n;
};

struct ref_vals {
	const json_t *v[4096];
	size_t n;
};

/* Leaves reached by following the path; arrays stand for each element. */
static void ref_collect(const json_t *node, const struct ref_path *p, size_t at,
			struct ref_vals *out, unsigned depth)
{
	if (depth > 64)
		return;
	if (json_is_array(node)) {
		size_t i;
		json_t *el;
		json_array_foreach(node, i, el)
			ref_collect(el, p, at, out, depth + 1);
		return;
	}
	if (at == p->n) {
		if (!json_is_object(node) && out->n < 4096)
			out->v[out->n++] = node;
		return;
	}
	if (json_is_object(node)) {
		const json_t *child = json_object_getn(node, p->key[at], p->len[at]);
		if (child)
			ref_collect(child, p, at + 1, out, depth + 1);
	}
}

static int ref_lc(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int ref_ci_equal(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ref_lc((unsigned char)a[i]) != ref_lc((unsigned char)b[i]))
			return 0;
	return 1;
}

static int ref_starts(const json_t *v, const json_t *with, int ci)
{
	size_t n, m;
	if (!json_is_string(v))
		return 0;
	n = json_string_length(v);
	m = json_string_length(with);
	if (n < m)
		return 0;
	return ci ? ref_ci_equal(json_string_value(v), json_string_value(with), m)
		  : memcmp(json_string_value(v), json_string_value(with), m) == 0;
}

static int ref_ends(const json_t *v, const json_t *with, int ci)
{
	size_t n, m;
	if (!json_is_string(v))
		return 0;
	n = json_string_length(v);
	m = json_string_length(with);
	if (n < m)
		return 0;
	return ci ? ref_ci_equal(json_string_value(v) + n - m, json_string_value(with), m)
		  : memcmp(json_string_value(v) + n - m, json_string_value(with), m) == 0;
}

/*
 * Glob by dynamic programming over (pattern token, value prefix): '*' any
 * run, "\*" a star, "\\" a backslash. row[j]: the tokens so far match s[0..j).
 */
static int ref_glob(const char *p, size_t pn, const char *s, size_t sn)
{
	unsigned char *row = calloc(sn + 1, 1), *next = calloc(sn + 1, 1), *tmp;
	int ok;

	row[0] = 1;
	for (size_t i = 0; i < pn; i++) {
		int star = p[i] == '*';
		char lit = p[i];

		if (p[i] == '\\' && i + 1 < pn)
			lit = p[++i];
		memset(next, 0, sn + 1);
		for (size_t j = 0; j <= sn; j++) {
			if (star)
				next[j] = row[j] || (j > 0 && next[j - 1]);
			else
				next[j] = j > 0 && row[j - 1] && s[j - 1] == lit;
		}
		tmp = row;
		row = next;
		next = tmp;
	}
	ok = row[sn];
	free(row);
	free(next);
	return ok;
}

static int ref_num_eq(const json_t *a, const json_t *b)
{
	return json_is_number(a) && json_is_number(b) && json_number_value(a) == json_number_value(b);
}

static int ref_str_eq(const json_t *a, const json_t *b)
{
	return json_is_string(a) && json_is_string(b) &&
	       json_string_length(a) == json_string_length(b) &&
	       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
}

static int ref_excluded(const json_t *ab, const json_t *v)
{
	if (json_is_string(ab))
		return ref_str_eq(ab, v);
	if (json_is_number(ab))
		return ref_num_eq(ab, v);
	if (json_is_array(ab)) {
		size_t i;
		json_t *e;
		json_array_foreach(ab, i, e)
			if (ref_excluded(e, v))
				return 1;
		return 0;
	}
	/* An object with one operator. */
	const json_t *op;
	if ((op = json_object_get(ab, "prefix")))
		return ref_starts(v, op, 0);
	if ((op = json_object_get(ab, "suffix")))
		return ref_ends(v, op, 0);
	if ((op = json_object_get(ab, "equals-ignore-case"))) {
		const json_t *list = op;
		size_t i, n = json_is_array(list) ? json_array_size(list) : 1;
		for (i = 0; i < n; i++) {
			const json_t *w = json_is_array(list) ? json_array_get(list, i) : list;
			if (json_is_string(v) && json_string_length(v) == json_string_length(w) &&
			    ref_ci_equal(json_string_value(v), json_string_value(w), json_string_length(w)))
				return 1;
		}
	}
	return 0;
}

static int ref_numeric(const json_t *spec, double d)
{
	for (size_t i = 0; i + 1 < json_array_size(spec); i += 2) {
		const char *op = json_string_value(json_array_get(spec, i));
		double x = json_number_value(json_array_get(spec, i + 1));
		int ok = !strcmp(op, "=")    ? d == x
			 : !strcmp(op, "<")  ? d < x
			 : !strcmp(op, "<=") ? d <= x
			 : !strcmp(op, ">")  ? d > x
					     : d >= x;
		if (!ok)
			return 0;
	}
	return 1;
}

/* Bit i of an address, most significant first. */
static int ref_bit(const unsigned char *a, unsigned i) { return (a[i / 8] >> (7 - i % 8)) & 1; }

static int ref_cidr(const json_t *block, const json_t *v)
{
	char b[80], s[80];
	unsigned char ba[16], va[16];
	const char *slash;
	int fam, bits;

	if (!json_is_string(v) || json_string_length(v) >= sizeof s ||
	    json_string_length(block) >= sizeof b)
		return 0;
	memcpy(b, json_string_value(block), json_string_length(block) + 1);
	memcpy(s, json_string_value(v), json_string_length(v) + 1);
	if (strlen(s) != json_string_length(v))
		return 0;
	slash = strchr(b, '/');
	bits = -1;
	if (slash) {
		bits = atoi(slash + 1);
		b[slash - b] = '\0';
	}
	if (inet_pton(AF_INET, b, ba) == 1)
		fam = AF_INET;
	else if (inet_pton(AF_INET6, b, ba) == 1)
		fam = AF_INET6;
	else
		return 0;
	if (bits < 0)
		bits = fam == AF_INET ? 32 : 128;
	if (inet_pton(fam, s, va) != 1)
		return 0;
	for (int i = 0; i < bits; i++)
		if (ref_bit(ba, (unsigned)i) != ref_bit(va, (unsigned)i))
			return 0;
	return 1;
}

/* One condition against one leaf (exists is handled by the caller). */
static int ref_cond(const json_t *c, const json_t *v)
{
	const json_t *op;

	if (json_is_string(c))
		return ref_str_eq(c, v);
	if (json_is_number(c))
		return ref_num_eq(c, v);
	if (json_is_true(c) || json_is_false(c) || json_is_null(c))
		return json_typeof(c) == json_typeof(v);
	if ((op = json_object_get(c, "prefix")))
		return json_is_string(op) ? ref_starts(v, op, 0)
					  : ref_starts(v, json_object_get(op, "equals-ignore-case"), 1);
	if ((op = json_object_get(c, "suffix")))
		return json_is_string(op) ? ref_ends(v, op, 0)
					  : ref_ends(v, json_object_get(op, "equals-ignore-case"), 1);
	if ((op = json_object_get(c, "equals-ignore-case")))
		return json_is_string(v) && json_string_length(v) == json_string_length(op) &&
		       ref_starts(v, op, 1);
	if ((op = json_object_get(c, "wildcard")))
		return json_is_string(v) && ref_glob(json_string_value(op), json_string_length(op),
						     json_string_value(v), json_string_length(v));
	if ((op = json_object_get(c, "anything-but")))
		return !ref_excluded(op, v);
	if ((op = json_object_get(c, "numeric")))
		return json_is_number(v) && ref_numeric(op, json_number_value(v));
	if ((op = json_object_get(c, "cidr")))
		return ref_cidr(op, v);
	return 0;
}

static int ref_list(const json_t *conds, const json_t *event, const struct ref_path *p)
{
	struct ref_vals *vs = malloc(sizeof *vs);
	size_t i;
	json_t *c;
	int ok = 0;

	vs->n = 0;
	ref_collect(event, p, 0, vs, 0);
	json_array_foreach(conds, i, c)
	{
		const json_t *ex = json_is_object(c) ? json_object_get(c, "exists") : NULL;
		if (ex) {
			if (json_is_true(ex) == (vs->n > 0))
				ok = 1;
			continue;
		}
		for (size_t k = 0; k < vs->n && !ok; k++)
			ok = ref_cond(c, vs->v[k]);
		if (ok)
			break;
	}
	free(vs);
	return ok;
}

static int ref_object(const json_t *pat, const json_t *event, struct ref_path *p)
{
	const char *key;
	size_t key_len;
	json_t *v;

	json_object_keylen_foreach((json_t *)pat, key, key_len, v)
	{
		int ok = 0;

		if (key_len == 3 && memcmp(key, "$or", 3) == 0) {
			size_t i;
			json_t *alt;
			json_array_foreach(v, i, alt)
				if (ref_object(alt, event, p)) {
					ok = 1;
					break;
				}
		} else {
			p->key[p->n] = key;
			p->len[p->n] = key_len;
			p->n++;
			ok = json_is_object(v) ? ref_object(v, event, p) : ref_list(v, event, p);
			p->n--;
		}
		if (!ok)
			return 0;
	}
	return 1;
}

static int ref_match(const json_t *pattern, const json_t *event)
{
	struct ref_path p = { .n = 0 };
	return ref_object(pattern, event, &p);
}
