/*
 * pattern.c - EventBridge event patterns: the parser and validator, the
 * direct evaluator behind cfx_pattern_explain, and the compiled set that
 * matches one event against many rules at a cost that does not grow with
 * the number of rules.
 *
 * What it does not do: CloudEvents parsing (cloudevent.c), transforms
 * (transform.c), any I/O. The language and the structure are described in
 * docs/design/events-patterns.md; events/pattern.h is the contract.
 */
#include "events/pattern.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"
#include "base/hash.h"
#include "events/pattern_int.h"

/* ------------------------------------------------------------------------
 * Small helpers: ASCII case folding, growable id lists, error messages
 * ------------------------------------------------------------------------ */

static inline uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c; }

static void lower_copy(char *dst, const char *src, size_t len)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = (char)lower((uint8_t)src[i]);
}

static int eq_ignore_case(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (lower((uint8_t)a[i]) != lower((uint8_t)b[i]))
			return 0;
	return 1;
}

/* A growable array of 32-bit ids. */
struct ids {
	uint32_t *v;
	uint32_t n, cap;
};

static void ids_push(struct ids *l, uint32_t id)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->v = cfx_realloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = id;
}

static void ids_free(struct ids *l)
{
	CFX_FREE(l->v);
	l->n = l->cap = 0;
}

/* ------------------------------------------------------------------------
 * Parsing and validation
 *
 * One recursive descent over the jansson tree. The context carries the
 * encoded path (for the set) and a display path (for messages, with
 * "$or[i]" steps), and the first error; after an error every function
 * returns at once.
 * ------------------------------------------------------------------------ */

#define DISPLAY_BYTES_MAX 512u

struct pctx {
	struct pat *pat;
	char *err;
	size_t err_len;
	int rc;
	uint8_t path[PAT_PATH_BYTES_MAX];
	size_t path_len;
	char disp[DISPLAY_BYTES_MAX];
	size_t disp_len;
};

CFX_PRINTF(3, 4) static int fail(struct pctx *pc, int rc, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (pc->rc)
		return pc->rc;
	pc->rc = rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (pc->err && pc->err_len) {
		if (pc->disp_len)
			snprintf(pc->err, pc->err_len, "%s: %s", pc->disp, msg);
		else
			snprintf(pc->err, pc->err_len, "%s", msg);
	}
	return rc;
}

/* Appends ".key" (or "key" at the start) to the display path; returns the old length. */
static size_t disp_push(struct pctx *pc, const char *s, size_t len)
{
	size_t old = pc->disp_len, o = old;

	if (o && o + 1 < sizeof pc->disp)
		pc->disp[o++] = '.';
	for (size_t i = 0; i < len && o + 1 < sizeof pc->disp; i++)
		pc->disp[o++] = s[i];
	pc->disp[o] = '\0';
	pc->disp_len = o;
	return old;
}

static void disp_pop(struct pctx *pc, size_t old)
{
	pc->disp_len = old;
	pc->disp[old] = '\0';
}

static int count_conds(struct pctx *pc, uint32_t n)
{
	pc->pat->nconds += n;
	if (pc->pat->nconds > CFX_PATTERN_CONDITIONS_MAX)
		return fail(pc, CFX_E2BIG, "too many conditions (max %u)", CFX_PATTERN_CONDITIONS_MAX);
	return 0;
}

static int take_string(struct pctx *pc, const json_t *v, const char *what, uint32_t max, char **s,
		       uint32_t *len)
{
	size_t n;

	if (!json_is_string(v))
		return fail(pc, CFX_EPARSE, "%s needs a string", what);
	n = json_string_length(v);
	if (n > max)
		return fail(pc, CFX_E2BIG, "%s operand longer than %u bytes", what, max);
	*s = cfx_strndup(json_string_value(v), n);
	*len = (uint32_t)n;
	return 0;
}

static int take_string_lower(struct pctx *pc, const json_t *v, const char *what, char **s,
			     uint32_t *len)
{
	int rc = take_string(pc, v, what, CFX_PATTERN_STRING_BYTES_MAX, s, len);
	if (!rc)
		lower_copy(*s, *s, *len);
	return rc;
}

/* Double value of a JSON number (integers may round above 2^53). */
static double num_of(const json_t *v)
{
	double d = json_number_value(v);
	return d == 0 ? 0.0 : d; /* -0 equals 0 and must hash like it */
}

/* "prefix" / "suffix": a string, or {"equals-ignore-case": string}. */
static int parse_affix(struct pctx *pc, const json_t *v, struct pat_cond *c, int suffix)
{
	const char *what = suffix ? "suffix" : "prefix";

	if (json_is_object(v)) {
		const json_t *eic = json_object_get(v, "equals-ignore-case");
		if (json_object_size(v) != 1 || !eic)
			return fail(pc, CFX_EPARSE,
				    "%s takes a string or {\"equals-ignore-case\": string}", what);
		c->kind = suffix ? PC_SUFFIX_EIC : PC_PREFIX_EIC;
		return take_string_lower(pc, eic, what, &c->s, &c->len);
	}
	c->kind = suffix ? PC_SUFFIX : PC_PREFIX;
	return take_string(pc, v, what, CFX_PATTERN_STRING_BYTES_MAX, &c->s, &c->len);
}

/* Splits a wildcard at unescaped stars into literal pieces ("\*" a star, "\\" a backslash). */
static int parse_wildcard(struct pctx *pc, const json_t *v, struct pat_cond *c)
{
	const char *p;
	size_t n, o = 0, start = 0;

	if (!json_is_string(v))
		return fail(pc, CFX_EPARSE, "wildcard needs a string");
	p = json_string_value(v);
	n = json_string_length(v);
	if (n > PAT_WILDCARD_BYTES_MAX)
		return fail(pc, CFX_E2BIG, "wildcard longer than %u bytes", PAT_WILDCARD_BYTES_MAX);
	c->kind = PC_WILDCARD;
	c->s = cfx_malloc(n + 1);
	c->seg = cfx_malloc((n + 1) * sizeof *c->seg);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\\') {
			if (i + 1 >= n || (p[i + 1] != '*' && p[i + 1] != '\\'))
				return fail(pc, CFX_EPARSE,
					    "wildcard: a backslash must escape '*' or '\\'");
			c->s[o++] = p[++i];
		} else if (p[i] == '*') {
			c->seg[c->nseg++] = (uint32_t)(o - start);
			start = o;
		} else {
			c->s[o++] = p[i];
		}
	}
	c->seg[c->nseg++] = (uint32_t)(o - start);
	c->s[o] = '\0';
	c->len = (uint32_t)o;
	return 0;
}

static int parse_anything_but(struct pctx *pc, const json_t *v, struct pat_cond *c)
{
	static const char usage[] = "anything-but takes a string, a number, a list of them, or one "
				    "of prefix, suffix, equals-ignore-case";

	c->kind = PC_ANYTHING_BUT;
	if (json_is_string(v) || json_is_number(v) || json_is_array(v)) {
		size_t n = json_is_array(v) ? json_array_size(v) : 1;

		if (n == 0)
			return fail(pc, CFX_EPARSE, "anything-but list is empty");
		if (count_conds(pc, (uint32_t)n - 1))
			return pc->rc;
		c->ab_kind = PAB_VALUES;
		c->ab_vals = cfx_calloc(n, sizeof *c->ab_vals);
		for (size_t i = 0; i < n; i++) {
			const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
			struct pat_ab_val *av = &c->ab_vals[c->nab];

			if (json_is_number(e)) {
				av->num = num_of(e);
			} else if (json_is_string(e)) {
				if (take_string(pc, e, "anything-but", CFX_PATTERN_STRING_BYTES_MAX,
						&av->s, &av->len))
					return pc->rc;
			} else {
				return fail(pc, CFX_EPARSE,
					    "anything-but values must be strings or numbers");
			}
			c->nab++;
		}
		return 0;
	}
	if (json_is_object(v) && json_object_size(v) == 1) {
		const char *key = json_object_iter_key(json_object_iter((json_t *)v));
		const json_t *op = json_object_iter_value(json_object_iter((json_t *)v));

		if (strcmp(key, "prefix") == 0 || strcmp(key, "suffix") == 0) {
			c->ab_kind = key[0] == 'p' ? PAB_PREFIX : PAB_SUFFIX;
			c->ab_vals = cfx_calloc(1, sizeof *c->ab_vals);
			if (take_string(pc, op, key, CFX_PATTERN_STRING_BYTES_MAX, &c->ab_vals[0].s,
					&c->ab_vals[0].len))
				return pc->rc;
			c->nab = 1;
			return 0;
		}
		if (strcmp(key, "equals-ignore-case") == 0) {
			size_t n = json_is_array(op) ? json_array_size(op) : 1;

			if (n == 0)
				return fail(pc, CFX_EPARSE, "anything-but list is empty");
			if (count_conds(pc, (uint32_t)n - 1))
				return pc->rc;
			c->ab_kind = PAB_EIC;
			c->ab_vals = cfx_calloc(n, sizeof *c->ab_vals);
			for (size_t i = 0; i < n; i++) {
				const json_t *e = json_is_array(op) ? json_array_get(op, i) : op;
				if (take_string_lower(pc, e, "equals-ignore-case",
						      &c->ab_vals[i].s, &c->ab_vals[i].len))
					return pc->rc;
				c->nab++;
			}
			return 0;
		}
	}
	return fail(pc, CFX_EPARSE, "%s", usage);
}

/* Operator codes of "numeric". */
enum num_op { OP_EQ, OP_LT, OP_LE, OP_GT, OP_GE };

static int num_op_of(const json_t *v, enum num_op *op)
{
	static const struct {
		const char *name;
		enum num_op op;
	} ops[] = { { "=", OP_EQ }, { "<", OP_LT }, { "<=", OP_LE }, { ">", OP_GT }, { ">=", OP_GE } };

	if (!json_is_string(v))
		return -1;
	for (size_t i = 0; i < CFX_ARRAY_LEN(ops); i++)
		if (strcmp(json_string_value(v), ops[i].name) == 0) {
			*op = ops[i].op;
			return 0;
		}
	return -2;
}

static int parse_numeric(struct pctx *pc, const json_t *v, struct pat_cond *c)
{
	static const char usage[] = "numeric needs an operator and a number";
	struct pat_range *r = &c->range;
	size_t n = json_is_array(v) ? json_array_size(v) : 0;

	c->kind = PC_NUMERIC;
	if (n != 2 && n != 4)
		return fail(pc, CFX_EPARSE, "%s", usage);
	for (size_t i = 0; i < n; i += 2) {
		const json_t *jo = json_array_get(v, i), *jn = json_array_get(v, i + 1);
		enum num_op op;
		double d;
		int rc = num_op_of(jo, &op);

		if (rc == -2)
			return fail(pc, CFX_EPARSE, "numeric: unknown operator \"%.32s\"",
				    json_string_value(jo));
		if (rc || !json_is_number(jn))
			return fail(pc, CFX_EPARSE, "%s", usage);
		d = num_of(jn);
		if (op == OP_EQ) {
			if (n != 2)
				return fail(pc, CFX_EPARSE, "numeric: \"=\" cannot be combined");
			r->has_lo = r->has_hi = r->lo_incl = r->hi_incl = 1;
			r->lo = r->hi = d;
		} else if (op == OP_GT || op == OP_GE) {
			if (r->has_lo)
				return fail(pc, CFX_EPARSE, "numeric: two lower bounds");
			r->has_lo = 1;
			r->lo_incl = op == OP_GE;
			r->lo = d;
		} else {
			if (r->has_hi)
				return fail(pc, CFX_EPARSE, "numeric: two upper bounds");
			r->has_hi = 1;
			r->hi_incl = op == OP_LE;
			r->hi = d;
		}
	}
	if (r->has_lo && r->has_hi &&
	    (r->lo > r->hi || (r->lo == r->hi && !(r->lo_incl && r->hi_incl))))
		return fail(pc, CFX_EPARSE, "numeric range is empty");
	return 0;
}

/* Parses "a.b.c.d/n" or "ipv6/n" (no "/n": one address); host bits are cleared. */
static int cidr_parse(const char *s, size_t len, uint8_t *family, uint8_t *bits, uint8_t *addr)
{
	char buf[64];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	unsigned long b;

	if (alen == 0 || alen >= sizeof buf)
		return -1;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1)
		*family = 4;
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		*family = 6;
	else
		return -1;
	b = *family == 4 ? 32 : 128;
	if (slash) {
		size_t dl = len - alen - 1;
		if (dl == 0 || dl > 3)
			return -1;
		b = 0;
		for (size_t i = 0; i < dl; i++) {
			char d = slash[1 + i];
			if (d < '0' || d > '9')
				return -1;
			b = b * 10 + (unsigned long)(d - '0');
		}
		if (b > (*family == 4 ? 32u : 128u))
			return -1;
	}
	*bits = (uint8_t)b;
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = b >= (i + 1) * 8 ? 8 : (b > i * 8 ? b - i * 8 : 0);
		addr[i] &= (uint8_t)(keep ? 0xffu << (8 - keep) : 0);
	}
	return 0;
}

static int parse_cond(struct pctx *pc, const json_t *v, struct pat_cond *c)
{
	const char *key;
	const json_t *op;

	c->src = v;
	switch (json_typeof(v)) {
	case JSON_STRING:
		c->kind = PC_STR;
		return take_string(pc, v, "value", CFX_PATTERN_STRING_BYTES_MAX, &c->s, &c->len);
	case JSON_INTEGER:
	case JSON_REAL:
		c->kind = PC_NUM;
		c->num = num_of(v);
		return 0;
	case JSON_TRUE:
		c->kind = PC_TRUE;
		return 0;
	case JSON_FALSE:
		c->kind = PC_FALSE;
		return 0;
	case JSON_NULL:
		c->kind = PC_NULL;
		return 0;
	case JSON_ARRAY:
		return fail(pc, CFX_EPARSE, "a condition cannot be an array");
	case JSON_OBJECT:
		break;
	}
	if (json_object_size(v) != 1)
		return fail(pc, CFX_EPARSE, "a condition object needs exactly one operator");
	key = json_object_iter_key(json_object_iter((json_t *)v));
	if (strlen(key) != json_object_iter_key_len(json_object_iter((json_t *)v)))
		return fail(pc, CFX_EPARSE, "unknown operator \"%.64s\"", key);
	op = json_object_iter_value(json_object_iter((json_t *)v));
	if (strcmp(key, "prefix") == 0)
		return parse_affix(pc, op, c, 0);
	if (strcmp(key, "suffix") == 0)
		return parse_affix(pc, op, c, 1);
	if (strcmp(key, "equals-ignore-case") == 0) {
		c->kind = PC_EIC;
		return take_string_lower(pc, op, "equals-ignore-case", &c->s, &c->len);
	}
	if (strcmp(key, "wildcard") == 0)
		return parse_wildcard(pc, op, c);
	if (strcmp(key, "anything-but") == 0)
		return parse_anything_but(pc, op, c);
	if (strcmp(key, "numeric") == 0)
		return parse_numeric(pc, op, c);
	if (strcmp(key, "exists") == 0) {
		if (!json_is_boolean(op))
			return fail(pc, CFX_EPARSE, "exists needs true or false");
		c->kind = PC_EXISTS;
		c->exists = json_is_true(op);
		return 0;
	}
	if (strcmp(key, "cidr") == 0) {
		c->kind = PC_CIDR;
		if (!json_is_string(op) || cidr_parse(json_string_value(op), json_string_length(op),
						      &c->family, &c->bits, c->addr))
			return fail(pc, CFX_EPARSE, "cidr needs an IPv4 or IPv6 block such as "
						    "\"10.0.0.0/24\"");
		return 0;
	}
	return fail(pc, CFX_EPARSE, "unknown operator \"%.64s\"", key);
}

static int parse_leaf(struct pctx *pc, const json_t *arr, uint32_t *leaf_out)
{
	struct pat *pat = pc->pat;
	struct pat_leaf *lf;
	size_t n = json_array_size(arr);

	if (n == 0)
		return fail(pc, CFX_EPARSE, "pattern array is empty");
	if (pat->nleaves >= CFX_PATTERN_FIELDS_MAX)
		return fail(pc, CFX_E2BIG, "too many fields (max %u)", CFX_PATTERN_FIELDS_MAX);
	if (count_conds(pc, (uint32_t)n))
		return pc->rc;
	if (pat->nleaves == pat->leaves_cap) {
		pat->leaves_cap = pat->leaves_cap ? pat->leaves_cap * 2 : 8;
		pat->leaves = cfx_realloc(pat->leaves, pat->leaves_cap * sizeof *pat->leaves);
	}
	*leaf_out = pat->nleaves;
	lf = &pat->leaves[pat->nleaves++];
	memset(lf, 0, sizeof *lf);
	lf->path = cfx_malloc(pc->path_len ? pc->path_len : 1);
	memcpy(lf->path, pc->path, pc->path_len);
	lf->path_len = (uint32_t)pc->path_len;
	lf->display = cfx_strdup(pc->disp);
	lf->conds = cfx_calloc(n, sizeof *lf->conds);
	for (size_t i = 0; i < n; i++) {
		struct pat_cond *c = &lf->conds[i];
		if (parse_cond(pc, json_array_get(arr, i), c)) {
			lf->nconds = (uint32_t)i + 1; /* free what this one took too */
			return pc->rc;
		}
	}
	lf->nconds = (uint32_t)n;
	return 0;
}

static int parse_object(struct pctx *pc, const json_t *obj, struct pat_node *node, unsigned depth)
{
	const char *key;
	size_t key_len;
	json_t *v;

	node->display = cfx_strdup(pc->disp);
	if (!json_is_object(obj))
		return fail(pc, CFX_EPARSE, "pattern must be a JSON object");
	if (json_object_size(obj) == 0)
		return fail(pc, CFX_EPARSE, "pattern object is empty");
	if (depth > CFX_PATTERN_DEPTH_MAX)
		return fail(pc, CFX_E2BIG, "pattern is nested too deeply (max %u)",
			    CFX_PATTERN_DEPTH_MAX);
	node->m = cfx_calloc(json_object_size(obj), sizeof *node->m);
	json_object_keylen_foreach((json_t *)obj, key, key_len, v)
	{
		struct pat_member *m = &node->m[node->n];
		size_t old_disp, old_path = pc->path_len;

		if (key_len == 3 && memcmp(key, "$or", 3) == 0) {
			size_t na = json_array_size(v);

			m->kind = PM_OR;
			node->n++;
			if (!json_is_array(v) || na == 0)
				return fail(pc, CFX_EPARSE, "$or needs a non-empty array of patterns");
			m->alts = cfx_calloc(na, sizeof *m->alts);
			for (size_t i = 0; i < na; i++) {
				char step[32];
				int sl = snprintf(step, sizeof step, "$or[%zu]", i);

				m->nalts++;
				old_disp = disp_push(pc, step, (size_t)sl);
				parse_object(pc, json_array_get(v, i), &m->alts[i], depth + 1);
				disp_pop(pc, old_disp);
				if (pc->rc)
					return pc->rc;
			}
			continue;
		}
		old_disp = disp_push(pc, key, key_len);
		if (key_len == 0 || key_len > CFX_PATTERN_KEY_BYTES_MAX) {
			node->n++;
			fail(pc, key_len ? CFX_E2BIG : CFX_EPARSE, "field name %s",
			     key_len ? "longer than 255 bytes" : "is empty");
			return pc->rc;
		}
		pc->path[pc->path_len++] = (uint8_t)key_len;
		memcpy(pc->path + pc->path_len, key, key_len);
		pc->path_len += key_len;
		if (json_is_object(v)) {
			m->kind = PM_OBJECT;
			m->child = cfx_calloc(1, sizeof *m->child);
			node->n++;
			parse_object(pc, v, m->child, depth + 1);
		} else if (json_is_array(v)) {
			m->kind = PM_LEAF;
			if (parse_leaf(pc, v, &m->leaf) == 0)
				node->n++;
		} else {
			fail(pc, CFX_EPARSE, "pattern leaf must be an array");
		}
		pc->path_len = old_path;
		disp_pop(pc, old_disp);
		if (pc->rc)
			return pc->rc;
	}
	return 0;
}

static void cond_free(struct pat_cond *c)
{
	cfx_free(c->s);
	cfx_free(c->seg);
	for (uint32_t i = 0; i < c->nab; i++)
		cfx_free(c->ab_vals[i].s);
	cfx_free(c->ab_vals);
}

static void node_free(struct pat_node *node)
{
	for (uint32_t i = 0; i < node->n; i++) {
		struct pat_member *m = &node->m[i];
		if (m->kind == PM_OBJECT && m->child) {
			node_free(m->child);
			cfx_free(m->child);
		} else if (m->kind == PM_OR) {
			for (uint32_t k = 0; k < m->nalts; k++)
				node_free(&m->alts[k]);
			cfx_free(m->alts);
		}
	}
	cfx_free(node->m);
	cfx_free(node->display);
}

void pattern__free(struct pat *pat)
{
	if (!pat)
		return;
	node_free(&pat->root);
	for (uint32_t i = 0; i < pat->nleaves; i++) {
		struct pat_leaf *lf = &pat->leaves[i];
		for (uint32_t k = 0; k < lf->nconds; k++)
			cond_free(&lf->conds[k]);
		cfx_free(lf->conds);
		cfx_free(lf->path);
		cfx_free(lf->display);
	}
	cfx_free(pat->leaves);
	cfx_free(pat);
}

/* Parses into a pattern whose conditions point into *doc (kept by the caller while needed). */
static int parse_doc(const char *json, size_t len, struct pat **out, json_t **doc, char *err,
		     size_t err_len)
{
	struct pctx *pc;
	json_error_t jerr;
	json_t *root;
	int rc;

	*out = NULL;
	*doc = NULL;
	if (err && err_len)
		err[0] = '\0';
	if (!json) {
		if (err && err_len)
			snprintf(err, err_len, "pattern is missing");
		return CFX_EPARSE;
	}
	if (len > CFX_PATTERN_BYTES_MAX) {
		if (err && err_len)
			snprintf(err, err_len, "pattern longer than %u bytes", CFX_PATTERN_BYTES_MAX);
		return CFX_E2BIG;
	}
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (err && err_len)
			snprintf(err, err_len, "not JSON: %s (line %d, column %d)", jerr.text,
				 jerr.line, jerr.column);
		return CFX_EPARSE;
	}
	pc = cfx_calloc(1, sizeof *pc);
	pc->pat = cfx_calloc(1, sizeof *pc->pat);
	pc->err = err;
	pc->err_len = err_len;
	parse_object(pc, root, &pc->pat->root, 1);
	rc = pc->rc;
	if (rc) {
		pattern__free(pc->pat);
		json_decref(root);
	} else {
		*out = pc->pat;
		*doc = root;
	}
	cfx_free(pc);
	return rc;
}

int pattern__parse(const char *json, size_t len, struct pat **out, char *err, size_t err_len)
{
	json_t *doc;
	int rc = parse_doc(json, len, out, &doc, err, err_len);

	if (rc == 0) {
		/* Nothing outside explain reads src: clear it rather than leave it dangling. */
		for (uint32_t i = 0; i < (*out)->nleaves; i++)
			for (uint32_t k = 0; k < (*out)->leaves[i].nconds; k++)
				(*out)->leaves[i].conds[k].src = NULL;
		json_decref(doc);
	}
	return rc;
}

/* ------------------------------------------------------------------------
 * "$or" expansion: a pattern becomes branches, each a list of leaf indices
 * that must all be satisfied (disjunctive normal form), bounded by
 * CFX_PATTERN_OR_BRANCHES_MAX at every step.
 * ------------------------------------------------------------------------ */

struct branches {
	struct ids *b;
	uint32_t n;
};

static void branches_free(struct branches *bs)
{
	for (uint32_t i = 0; i < bs->n; i++)
		ids_free(&bs->b[i]);
	CFX_FREE(bs->b);
	bs->n = 0;
}

/* Replaces *acc by its product with *rhs (every pair concatenated). */
static int branches_product(struct branches *acc, const struct branches *rhs)
{
	struct branches out;

	if ((uint64_t)acc->n * rhs->n > CFX_PATTERN_OR_BRANCHES_MAX)
		return CFX_E2BIG;
	out.n = acc->n * rhs->n;
	out.b = cfx_calloc(out.n ? out.n : 1, sizeof *out.b);
	for (uint32_t i = 0; i < acc->n; i++)
		for (uint32_t k = 0; k < rhs->n; k++) {
			struct ids *d = &out.b[i * rhs->n + k];
			for (uint32_t x = 0; x < acc->b[i].n; x++)
				ids_push(d, acc->b[i].v[x]);
			for (uint32_t x = 0; x < rhs->b[k].n; x++)
				ids_push(d, rhs->b[k].v[x]);
		}
	branches_free(acc);
	*acc = out;
	return 0;
}

static int expand(const struct pat_node *node, struct branches *out)
{
	int rc = 0;

	out->n = 1;
	out->b = cfx_calloc(1, sizeof *out->b);
	for (uint32_t i = 0; i < node->n && !rc; i++) {
		const struct pat_member *m = &node->m[i];
		struct branches sub = { 0 };

		if (m->kind == PM_LEAF) {
			for (uint32_t k = 0; k < out->n; k++)
				ids_push(&out->b[k], m->leaf);
			continue;
		}
		if (m->kind == PM_OBJECT) {
			rc = expand(m->child, &sub);
		} else {
			for (uint32_t a = 0; a < m->nalts && !rc; a++) {
				struct branches alt = { 0 };
				rc = expand(&m->alts[a], &alt);
				if (!rc && sub.n + alt.n > CFX_PATTERN_OR_BRANCHES_MAX)
					rc = CFX_E2BIG;
				if (!rc) {
					sub.b = cfx_realloc(sub.b, (sub.n + alt.n) * sizeof *sub.b);
					memcpy(sub.b + sub.n, alt.b, alt.n * sizeof *alt.b);
					sub.n += alt.n;
					cfx_free(alt.b);
				} else {
					branches_free(&alt);
				}
			}
		}
		if (!rc)
			rc = branches_product(out, &sub);
		branches_free(&sub);
	}
	if (rc)
		branches_free(out);
	return rc;
}

static int expand_or_fail(const struct pat *pat, struct branches *out, char *err, size_t err_len)
{
	int rc = expand(&pat->root, out);

	if (rc && err && err_len)
		snprintf(err, err_len, "too many $or alternatives after expansion (max %u)",
			 CFX_PATTERN_OR_BRANCHES_MAX);
	return rc;
}

int cfx_pattern_validate(const char *json, size_t len, char *err, size_t err_len)
{
	struct branches bs = { 0 };
	struct pat *pat;
	int rc = pattern__parse(json, len, &pat, err, err_len);

	if (rc)
		return rc;
	rc = expand_or_fail(pat, &bs, err, err_len);
	branches_free(&bs);
	pattern__free(pat);
	return rc;
}

/* ------------------------------------------------------------------------
 * One condition against one leaf value
 * ------------------------------------------------------------------------ */

/* '*'-only globbing over pieces: the first is a prefix, the last a suffix, the rest found in order. */
static int wildcard_match(const struct pat_cond *c, const char *v, size_t vlen)
{
	const char *s = c->s;
	size_t first = c->seg[0], last = c->seg[c->nseg - 1], pos, end;

	if (c->nseg == 1)
		return vlen == c->len && memcmp(v, s, vlen) == 0;
	if (vlen < first + last || memcmp(v, s, first) != 0 ||
	    memcmp(v + vlen - last, s + c->len - last, last) != 0)
		return 0;
	pos = first;
	end = vlen - last;
	s += first;
	for (uint32_t i = 1; i + 1 < c->nseg; i++) {
		size_t n = c->seg[i];
		const char *hit;

		if (n == 0)
			continue;
		hit = end > pos ? memmem(v + pos, end - pos, s, n) : NULL;
		if (!hit)
			return 0;
		pos = (size_t)(hit - v) + n;
		s += n;
	}
	return 1;
}

static int in_range(const struct pat_range *r, double d)
{
	if (r->has_lo && (r->lo_incl ? d < r->lo : d <= r->lo))
		return 0;
	if (r->has_hi && (r->hi_incl ? d > r->hi : d >= r->hi))
		return 0;
	return 1;
}

/* Parses a string leaf as an IP address; family 0 if it is not one. */
static uint8_t ip_parse(const char *s, size_t len, uint8_t *addr)
{
	char buf[64];

	if (len == 0 || len >= sizeof buf || memchr(s, '/', len) || memchr(s, '\0', len))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1)
		return 4;
	if (inet_pton(AF_INET6, buf, addr) == 1)
		return 6;
	return 0;
}

static void mask_bits(uint8_t *addr, unsigned bits)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= (i + 1) * 8 ? 8 : (bits > i * 8 ? bits - i * 8 : 0);
		addr[i] &= (uint8_t)(keep ? 0xffu << (8 - keep) : 0);
	}
}

static int ab_excludes(const struct pat_cond *c, const json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	size_t len = s ? json_string_length(v) : 0;

	for (uint32_t i = 0; i < c->nab; i++) {
		const struct pat_ab_val *av = &c->ab_vals[i];

		switch (c->ab_kind) {
		case PAB_VALUES:
			if (av->s ? (s && len == av->len && memcmp(s, av->s, len) == 0)
				  : (json_is_number(v) && num_of(v) == av->num))
				return 1;
			break;
		case PAB_PREFIX:
			if (s && len >= av->len && memcmp(s, av->s, av->len) == 0)
				return 1;
			break;
		case PAB_SUFFIX:
			if (s && len >= av->len && memcmp(s + len - av->len, av->s, av->len) == 0)
				return 1;
			break;
		case PAB_EIC:
			if (s && len == av->len && eq_ignore_case(s, av->s, len))
				return 1;
			break;
		}
	}
	return 0;
}

int pattern__cond_match(const struct pat_cond *c, const json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	size_t len = s ? json_string_length(v) : 0;

	switch (c->kind) {
	case PC_STR:
		return s && len == c->len && memcmp(s, c->s, len) == 0;
	case PC_NUM:
		return json_is_number(v) && num_of(v) == c->num;
	case PC_TRUE:
		return json_is_true(v);
	case PC_FALSE:
		return json_is_false(v);
	case PC_NULL:
		return json_is_null(v);
	case PC_PREFIX:
		return s && len >= c->len && memcmp(s, c->s, c->len) == 0;
	case PC_SUFFIX:
		return s && len >= c->len && memcmp(s + len - c->len, c->s, c->len) == 0;
	case PC_EIC:
		return s && len == c->len && eq_ignore_case(s, c->s, len);
	case PC_PREFIX_EIC:
		return s && len >= c->len && eq_ignore_case(s, c->s, c->len);
	case PC_SUFFIX_EIC:
		return s && len >= c->len && eq_ignore_case(s + len - c->len, c->s, c->len);
	case PC_WILDCARD:
		return s && wildcard_match(c, s, len);
	case PC_ANYTHING_BUT:
		return !ab_excludes(c, v);
	case PC_NUMERIC:
		return json_is_number(v) && in_range(&c->range, num_of(v));
	case PC_EXISTS:
		return 0;
	case PC_CIDR: {
		uint8_t addr[16];
		if (!s || ip_parse(s, len, addr) != c->family)
			return 0;
		mask_bits(addr, c->bits);
		return memcmp(addr, c->addr, 16) == 0;
	}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The direct evaluator (cfx_pattern_explain): the pattern tree over the
 * event, collecting the leaves at each path and saying why not.
 * ------------------------------------------------------------------------ */

/* Event arrays nested deeper than this are not looked into (by the set either). */
#define WALK_DEPTH_MAX 64u

struct vals {
	const json_t **v;
	size_t n, cap;
};

static void values_at(const json_t *node, const uint8_t *path, size_t plen, struct vals *out,
		      unsigned depth)
{
	if (depth > WALK_DEPTH_MAX)
		return;
	if (json_is_array(node)) {
		for (size_t i = 0; i < json_array_size(node); i++)
			values_at(json_array_get(node, i), path, plen, out, depth + 1);
	} else if (plen == 0) {
		if (!json_is_object(node)) {
			if (out->n == out->cap) {
				out->cap = out->cap ? out->cap * 2 : 8;
				out->v = cfx_realloc(out->v, out->cap * sizeof *out->v);
			}
			out->v[out->n++] = node;
		}
	} else if (json_is_object(node)) {
		const json_t *child = json_object_getn(node, (const char *)path + 1, path[0]);
		if (child)
			values_at(child, path + 1 + path[0], plen - 1 - path[0], out, depth + 1);
	}
}

struct why {
	char *buf;
	size_t len;
};

CFX_PRINTF(2, 3) static void why_set(struct why *w, const char *fmt, ...)
{
	va_list ap;

	if (!w || !w->buf || !w->len)
		return;
	va_start(ap, fmt);
	vsnprintf(w->buf, w->len, fmt, ap);
	va_end(ap);
}

/* Compact JSON of v, cut to fit `out`. */
static void json_brief(const json_t *v, char *out, size_t out_len)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	snprintf(out, out_len, "%s", s ? s : "?");
	if (s && strlen(s) >= out_len && out_len > 4)
		memcpy(out + out_len - 4, "...", 4);
	free(s);
}

static void explain_leaf(const struct pat_leaf *lf, const struct vals *vs, struct why *w)
{
	char vb[80], cb[96];

	if (vs->n == 0) {
		why_set(w, "%s: field absent", lf->display);
		return;
	}
	if (lf->nconds == 1 && lf->conds[0].kind == PC_EXISTS) {
		why_set(w, "%s: field present (exists: false)", lf->display);
		return;
	}
	json_brief(vs->v[0], vb, sizeof vb);
	if (vs->n > 1) {
		why_set(w, "%s: none of the %zu values matches", lf->display, vs->n);
		return;
	}
	if (lf->nconds > 1) {
		why_set(w, "%s: %s matches none of the %u conditions", lf->display, vb, lf->nconds);
		return;
	}
	const struct pat_cond *c = &lf->conds[0];
	if (c->kind == PC_NUMERIC) {
		static const char *lo_op[2] = { ">", ">=" }, *hi_op[2] = { "<", "<=" };
		const struct pat_range *r = &c->range;

		if (!json_is_number(vs->v[0]))
			why_set(w, "%s: %s is not a number", lf->display, vb);
		else if (r->has_lo && r->has_hi && r->lo == r->hi)
			why_set(w, "%s: %s is not = %.17g", lf->display, vb, r->lo);
		else if (r->has_lo && r->has_hi)
			why_set(w, "%s: %s is not %s %.17g and %s %.17g", lf->display, vb,
				lo_op[r->lo_incl], r->lo, hi_op[r->hi_incl], r->hi);
		else if (r->has_lo)
			why_set(w, "%s: %s is not %s %.17g", lf->display, vb, lo_op[r->lo_incl], r->lo);
		else
			why_set(w, "%s: %s is not %s %.17g", lf->display, vb, hi_op[r->hi_incl], r->hi);
		return;
	}
	json_brief(c->src, cb, sizeof cb);
	if (c->kind <= PC_NULL)
		why_set(w, "%s: %s is not %s", lf->display, vb, cb);
	else
		why_set(w, "%s: %s does not match %s", lf->display, vb, cb);
}

/* Whether a condition list is satisfied by the leaves at its path (any condition, any leaf). */
static int leaf_ok(const struct pat_leaf *lf, const json_t *const *v, size_t n)
{
	for (uint32_t i = 0; i < lf->nconds; i++) {
		const struct pat_cond *c = &lf->conds[i];

		if (c->kind == PC_EXISTS) {
			if (c->exists == (n > 0))
				return 1;
			continue;
		}
		for (size_t k = 0; k < n; k++)
			if (pattern__cond_match(c, v[k]))
				return 1;
	}
	return 0;
}

static int leaf_eval(const struct pat_leaf *lf, const json_t *event, struct why *w)
{
	struct vals vs = { 0 };
	int ok;

	values_at(event, lf->path, lf->path_len, &vs, 0);
	ok = leaf_ok(lf, vs.v, vs.n);
	if (!ok)
		explain_leaf(lf, &vs, w);
	cfx_free(vs.v);
	return ok;
}

static int node_eval(const struct pat *pat, const struct pat_node *node, const json_t *event,
		     struct why *w)
{
	for (uint32_t i = 0; i < node->n; i++) {
		const struct pat_member *m = &node->m[i];
		int ok = 0;

		if (m->kind == PM_LEAF) {
			ok = leaf_eval(&pat->leaves[m->leaf], event, w);
		} else if (m->kind == PM_OBJECT) {
			ok = node_eval(pat, m->child, event, w);
		} else {
			char first[192] = "";
			struct why fw = { first, sizeof first };

			for (uint32_t a = 0; a < m->nalts && !ok; a++)
				ok = node_eval(pat, &m->alts[a], event, a == 0 ? &fw : NULL);
			if (!ok)
				why_set(w, "%s%sno $or alternative matches (first: %s)", node->display,
					node->display[0] ? ": " : "", first);
		}
		if (!ok)
			return 0;
	}
	return 1;
}

int cfx_pattern_explain(const char *pattern, size_t plen, const json_t *event, char *why,
			size_t why_len)
{
	struct why w = { why, why_len };
	struct pat *pat;
	json_t *doc;
	struct branches bs = { 0 };
	int rc = parse_doc(pattern, plen, &pat, &doc, why, why_len);

	if (rc)
		return rc;
	rc = expand_or_fail(pat, &bs, why, why_len);
	branches_free(&bs);
	if (rc) {
		pattern__free(pat);
		json_decref(doc);
		return rc;
	}
	if (why && why_len)
		why[0] = '\0';
	rc = event ? node_eval(pat, &pat->root, event, &w) : 0;
	if (!event)
		why_set(&w, "no event");
	pattern__free(pat);
	json_decref(doc);
	return rc;
}

/* ------------------------------------------------------------------------
 * The compiled set
 *
 * Every rule's pattern is expanded into branches; each leaf of a branch
 * becomes a "clause" (one per branch it appears in). Per branch, the
 * cheapest clauses to index ("anchors") go into one hash table whose keys
 * are (field, kind, bytes): exact strings and numbers, lower-cased
 * strings, prefixes and suffixes (probed at each operand length the field
 * uses), CIDR blocks (probed at each prefix length used) and wildcard
 * literal prefixes/suffixes; numeric ranges go to a per-field segment
 * tree. Matching walks the event once along the paths some pattern names,
 * probes the table per value, counts satisfied anchors per branch in
 * scratch maps sized by the work done (not by the set), and verifies the
 * other clauses of the candidate branches directly on the kept leaves.
 * docs/design/events-patterns.md has the picture and the costs.
 * ------------------------------------------------------------------------ */

enum key_kind {
	K_PATH = 1, /* field 0: encoded path -> field index */
	K_RULE,	    /* field 0: rule id -> rule index */
	K_STR,
	K_NUM,
	K_TRUE,
	K_FALSE,
	K_NULL,
	K_EIC,
	K_PREFIX,
	K_PREFIX_EIC,
	K_SUFFIX,
	K_SUFFIX_EIC,
	K_WILD_P, /* wildcard item by its literal prefix */
	K_WILD_S, /* wildcard item by its literal suffix */
	K_CIDR4, /* key: bits, address */
	K_CIDR6,
};

/* Kinds probed at every operand length the field uses (struct field lens[]). */
enum len_kind { LK_PREFIX, LK_PREFIX_EIC, LK_SUFFIX, LK_SUFFIX_EIC, LK_WILD_P, LK_WILD_S,
		LK_COUNT };

static const uint8_t lk_key[LK_COUNT] = { K_PREFIX, K_PREFIX_EIC, K_SUFFIX, K_SUFFIX_EIC,
					  K_WILD_P, K_WILD_S };

static int kind_is_reversed(unsigned kind)
{
	return kind == K_SUFFIX || kind == K_SUFFIX_EIC || kind == K_WILD_S;
}

#define KEY_INLINE_BYTES 24u
#define IDS_INLINE 4u

struct entry {
	uint64_t hash;
	uint32_t field;
	uint32_t kind;
	uint32_t key_len;
	uint8_t *key; /* owned, or `inl` for keys of up to KEY_INLINE_BYTES */
	/* clause ids, or wildcard-item ids for K_WILD_*: in ids_inl up to IDS_INLINE, then in ids.v */
	struct ids ids;
	uint32_t ids_inl[IDS_INLINE];
	uint8_t inl[KEY_INLINE_BYTES];
};

static inline const uint32_t *entry_ids(const struct entry *e)
{
	return e->ids.v ? e->ids.v : e->ids_inl;
}

static void entry_push(struct entry *e, uint32_t id)
{
	if (!e->ids.v && e->ids.n < IDS_INLINE) {
		e->ids_inl[e->ids.n++] = id;
		return;
	}
	if (!e->ids.v) {
		e->ids.v = cfx_malloc(IDS_INLINE * 2 * sizeof *e->ids.v);
		memcpy(e->ids.v, e->ids_inl, sizeof e->ids_inl);
		e->ids.cap = IDS_INLINE * 2;
	}
	ids_push(&e->ids, id);
}

struct table {
	uint64_t *slot; /* low half: entry index + 1 (0 = empty); high half: the hash's high half */
	uint32_t cap;	/* power of two */
	struct entry *e;
	uint32_t n, ecap;
};

struct numidx {
	struct pat_range *r; /* ranges, with their clause in rc[] */
	uint32_t *rc;
	uint32_t nr, rcap;
	double *ep; /* sorted distinct finite endpoints */
	uint32_t nep;
	struct ids *node; /* segment tree over 2*nep+1 pieces, 1-based heap order */
	uint32_t nnodes;
	uint8_t dirty;
};

struct field {
	uint8_t is_leaf, is_interior;
	uint8_t has_checked; /* some checked clause reads this field's values */
	uint32_t kinds;	     /* 1 << K_* of the value kinds indexed here */
	struct ids lens[LK_COUNT];
	struct numidx num;
	uint64_t cidr4_bits;	/* bit b: a /b IPv4 block is indexed */
	uint64_t cidr6_bits[3]; /* bit b: a /b IPv6 block is indexed */
};

/*
 * A clause is "indexed" when every condition in it is selective (exact
 * values, prefixes, suffixes, ranges, blocks, wildcards with a literal
 * end): its conditions go into the table and satisfy it when probed. Any
 * other clause (anything-but, exists, a wildcard such as "*x*") is
 * "checked": it is evaluated directly, and only for branches whose indexed
 * clauses are all satisfied, so it costs nothing for rules that the
 * event's selective fields already rule out.
 */
struct clause {
	uint32_t branch;
	uint32_t field;
	const struct pat_leaf *leaf; /* the conditions, owned by the rule's pattern */
};

struct branch {
	uint32_t rule_id;
	uint32_t required; /* indexed clauses */
	uint32_t checked;  /* first of its checked clauses in cfx_pattern_set.checked */
	uint32_t nchecked;
};

struct item {
	uint32_t clause;
	const struct pat_cond *cond; /* wildcard items: verified on each candidate */
};

struct rule {
	uint32_t id;
	struct pat *pat; /* owned; kept so that a removal can rebuild the indexes */
};

struct cfx_pattern_set {
	struct table t;
	struct field *f;
	uint32_t nf, fcap;
	struct clause *c;
	uint32_t nc, ccap;
	struct branch *b;
	uint32_t nb, bcap;
	struct item *wild;
	uint32_t nwild, wildcap;
	struct ids checked;	 /* clause ids, each branch's checked clauses together */
	struct ids zero_branches; /* branches without indexed clauses: candidates for every event */
	struct rule *r;
	uint32_t nr, rcap;
	uint32_t root; /* field index of the empty path, or UINT32_MAX */
};

#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t fnv_step(uint64_t h, uint8_t c) { return (h ^ c) * FNV_PRIME; }

static uint64_t h_fwd(const void *p, size_t len)
{
	const uint8_t *s = p;
	uint64_t h = CFX_HASH_SEED;

	for (size_t i = 0; i < len; i++)
		h = fnv_step(h, s[i]);
	return h;
}

static uint64_t h_rev(const void *p, size_t len)
{
	const uint8_t *s = p;
	uint64_t h = CFX_HASH_SEED;

	for (size_t i = len; i > 0; i--)
		h = fnv_step(h, s[i - 1]);
	return h;
}

static inline uint64_t key_hash(uint64_t h, uint32_t field, uint32_t kind)
{
	return cfx_hash_mix64(h ^ ((((uint64_t)field << 8) | kind) * 0x9e3779b97f4a7c15ULL));
}

static const struct entry *t_find(const struct table *t, uint64_t hash, uint32_t field,
				  uint32_t kind, const void *key, size_t len)
{
	uint32_t mask, i;

	if (!t->cap)
		return NULL;
	mask = t->cap - 1;
	for (i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
		uint64_t s = t->slot[i];
		const struct entry *e;

		if (!s)
			return NULL;
		if ((uint32_t)(s >> 32) != (uint32_t)(hash >> 32))
			continue;
		e = &t->e[(uint32_t)s - 1];
		if (e->hash == hash && e->field == field && e->kind == kind && e->key_len == len &&
		    memcmp(e->key ? e->key : e->inl, key, len) == 0)
			return e;
	}
}

static void t_grow(struct table *t)
{
	uint32_t cap = t->cap ? t->cap * 2 : 1024;

	cfx_free(t->slot);
	t->slot = cfx_calloc(cap, sizeof *t->slot);
	t->cap = cap;
	for (uint32_t k = 0; k < t->n; k++) {
		uint32_t i = (uint32_t)t->e[k].hash & (cap - 1);
		while (t->slot[i])
			i = (i + 1) & (cap - 1);
		t->slot[i] = (t->e[k].hash & 0xffffffff00000000ULL) | (k + 1);
	}
}

/* Finds or creates the entry; returns its index (entries move when the array grows). */
static uint32_t t_upsert(struct table *t, uint64_t hash, uint32_t field, uint32_t kind,
			 const void *key, size_t len)
{
	const struct entry *found = t_find(t, hash, field, kind, key, len);
	struct entry *e;
	uint32_t i;

	if (found)
		return (uint32_t)(found - t->e);
	if ((t->n + 1) * 2 > t->cap)
		t_grow(t);
	if (t->n == t->ecap) {
		t->ecap = t->ecap ? t->ecap * 2 : 512;
		t->e = cfx_realloc(t->e, t->ecap * sizeof *t->e); /* inline keys move: fixed below */
	}
	e = &t->e[t->n];
	memset(e, 0, sizeof *e);
	e->hash = hash;
	e->field = field;
	e->kind = kind;
	e->key_len = (uint32_t)len;
	e->key = len <= KEY_INLINE_BYTES ? NULL : cfx_malloc(len);
	memcpy(e->key ? e->key : e->inl, key, len);
	for (i = (uint32_t)hash & (t->cap - 1); t->slot[i]; i = (i + 1) & (t->cap - 1))
		;
	t->slot[i] = (hash & 0xffffffff00000000ULL) | (t->n + 1);
	return t->n++;
}

/* Adds `id` under (field, kind, key); suffix kinds hash the key backwards. */
static void t_add(struct table *t, uint32_t field, uint32_t kind, const void *key, size_t len,
		  uint32_t id)
{
	uint64_t h = kind_is_reversed(kind) ? h_rev(key, len) : h_fwd(key, len);
	uint32_t i = t_upsert(t, key_hash(h, field, kind), field, kind, key, len);

	entry_push(&t->e[i], id);
}

static void t_free(struct table *t)
{
	for (uint32_t i = 0; i < t->n; i++) {
		cfx_free(t->e[i].key);
		ids_free(&t->e[i].ids);
	}
	CFX_FREE(t->e);
	CFX_FREE(t->slot);
	t->n = t->ecap = t->cap = 0;
}

/* The field of an encoded path whose forward FNV state is `h`, or UINT32_MAX. */
static uint32_t field_find_h(const struct cfx_pattern_set *ps, const uint8_t *path, size_t len,
			     uint64_t h)
{
	const struct entry *e = t_find(&ps->t, key_hash(h, 0, K_PATH), 0, K_PATH, path, len);
	return e ? entry_ids(e)[0] : UINT32_MAX;
}

static uint32_t field_find(const struct cfx_pattern_set *ps, const uint8_t *path, size_t len)
{
	return field_find_h(ps, path, len, h_fwd(path, len));
}

static uint32_t field_get(struct cfx_pattern_set *ps, const uint8_t *path, size_t len)
{
	uint32_t fi = field_find(ps, path, len);

	if (fi != UINT32_MAX)
		return fi;
	if (ps->nf == ps->fcap) {
		ps->fcap = ps->fcap ? ps->fcap * 2 : 16;
		ps->f = cfx_realloc(ps->f, ps->fcap * sizeof *ps->f);
	}
	fi = ps->nf++;
	memset(&ps->f[fi], 0, sizeof ps->f[fi]);
	t_add(&ps->t, 0, K_PATH, path, len, fi);
	return fi;
}

/* The field of a leaf path, marking every proper prefix (the root included) interior. */
static uint32_t field_of_leaf(struct cfx_pattern_set *ps, const uint8_t *path, size_t len)
{
	uint32_t fi;

	for (size_t i = 0; i < len; i += 1 + path[i]) {
		fi = field_get(ps, path, i);
		ps->f[fi].is_interior = 1;
		if (i == 0)
			ps->root = fi;
	}
	fi = field_get(ps, path, len);
	ps->f[fi].is_leaf = 1;
	return fi;
}

/* Inserts into a sorted id list unless present. */
static void lens_add(struct ids *l, uint32_t len)
{
	uint32_t i = 0;

	while (i < l->n && l->v[i] < len)
		i++;
	if (i < l->n && l->v[i] == len)
		return;
	ids_push(l, 0);
	memmove(l->v + i + 1, l->v + i, (l->n - 1 - i) * sizeof *l->v);
	l->v[i] = len;
}

static uint32_t item_new(struct item **arr, uint32_t *n, uint32_t *cap, uint32_t clause,
			 const struct pat_cond *cond)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*arr = cfx_realloc(*arr, *cap * sizeof **arr);
	}
	(*arr)[*n] = (struct item){ clause, cond };
	return (*n)++;
}

/*
 * The table key of an indexable condition (numeric ranges have none: they
 * go to the field's tree). Returns 0 and the key, or -1 if the condition
 * cannot be indexed (anything-but, exists, a wildcard with no literal end).
 */
static int cond_key(const struct pat_cond *c, uint32_t *kind, const void **key, size_t *len,
		    uint8_t *buf)
{
	static const uint32_t kinds[] = {
		[PC_STR] = K_STR,	    [PC_NUM] = K_NUM,	      [PC_TRUE] = K_TRUE,
		[PC_FALSE] = K_FALSE,	    [PC_NULL] = K_NULL,	      [PC_PREFIX] = K_PREFIX,
		[PC_SUFFIX] = K_SUFFIX,	    [PC_EIC] = K_EIC,	      [PC_PREFIX_EIC] = K_PREFIX_EIC,
		[PC_SUFFIX_EIC] = K_SUFFIX_EIC,
	};

	*key = c->s;
	*len = c->len;
	switch (c->kind) {
	case PC_NUM:
		*key = &c->num;
		*len = sizeof c->num;
		/* fall through */
	case PC_STR:
	case PC_PREFIX:
	case PC_SUFFIX:
	case PC_EIC:
	case PC_PREFIX_EIC:
	case PC_SUFFIX_EIC:
		*kind = kinds[c->kind];
		return 0;
	case PC_TRUE:
	case PC_FALSE:
	case PC_NULL:
		*kind = kinds[c->kind];
		*key = "";
		*len = 0;
		return 0;
	case PC_WILDCARD:
		if (c->seg[0] > 0 || c->nseg == 1) {
			*kind = K_WILD_P;
			*len = c->seg[0];
		} else if (c->seg[c->nseg - 1] > 0) {
			*kind = K_WILD_S;
			*len = c->seg[c->nseg - 1];
			*key = c->s + c->len - *len;
		} else {
			return -1;
		}
		return 0;
	case PC_CIDR:
		buf[0] = c->bits;
		memcpy(buf + 1, c->addr, 16);
		*kind = c->family == 4 ? K_CIDR4 : K_CIDR6;
		*key = buf;
		*len = c->family == 4 ? 5 : 17;
		return 0;
	case PC_NUMERIC:
		*kind = 0;
		return 0;
	case PC_ANYTHING_BUT:
	case PC_EXISTS:
		break;
	}
	return -1;
}

/*
 * What indexing a clause would cost at match time, estimated from the set
 * as it is: the postings already under each of its keys (rules sharing a
 * value) plus a small penalty for the kinds probed at several lengths or
 * walked in a tree. UINT64_MAX if the clause cannot be indexed.
 */
static uint64_t clause_cost(const struct cfx_pattern_set *ps, const struct pat_leaf *lf)
{
	uint32_t fi = field_find(ps, lf->path, lf->path_len);
	uint64_t cost = 0;

	for (uint32_t i = 0; i < lf->nconds; i++) {
		const struct pat_cond *c = &lf->conds[i];
		const struct entry *e = NULL;
		uint8_t buf[17];
		const void *key;
		uint32_t kind;
		size_t len;

		if (cond_key(c, &kind, &key, &len, buf))
			return UINT64_MAX;
		if (c->kind == PC_NUMERIC) {
			cost += 4 + (fi == UINT32_MAX ? 0 : ps->f[fi].num.nr);
			continue;
		}
		if (fi != UINT32_MAX) {
			uint64_t h = kind_is_reversed(kind) ? h_rev(key, len) : h_fwd(key, len);
			e = t_find(&ps->t, key_hash(h, fi, kind), fi, kind, key, len);
		}
		cost += 1 + (e ? e->ids.n : 0) + (kind == K_STR || kind == K_NUM ? 0 : 2);
	}
	return cost;
}

/* Indexes one condition of anchor clause `ci` on field `fi`. */
static void index_cond(struct cfx_pattern_set *ps, uint32_t fi, uint32_t ci,
		       const struct pat_cond *c)
{
	struct field *f = &ps->f[fi];
	uint8_t buf[17];
	const void *key;
	uint32_t kind, id = ci;
	size_t len;
	int rc = cond_key(c, &kind, &key, &len, buf);

	CFX_ASSERT(rc == 0); /* only indexable clauses become anchors */
	if (c->kind == PC_NUMERIC) {
		struct numidx *nx = &f->num;
		if (nx->nr == nx->rcap) {
			nx->rcap = nx->rcap ? nx->rcap * 2 : 8;
			nx->r = cfx_realloc(nx->r, nx->rcap * sizeof *nx->r);
			nx->rc = cfx_realloc(nx->rc, nx->rcap * sizeof *nx->rc);
		}
		nx->r[nx->nr] = c->range;
		nx->rc[nx->nr++] = ci;
		nx->dirty = 1;
		return;
	}
	if (kind == K_WILD_P || kind == K_WILD_S)
		id = item_new(&ps->wild, &ps->nwild, &ps->wildcap, ci, c);
	t_add(&ps->t, fi, kind, key, len, id);
	f->kinds |= 1u << kind;
	for (int lk = 0; lk < LK_COUNT; lk++)
		if (lk_key[lk] == kind)
			lens_add(&f->lens[lk], (uint32_t)len);
	if (kind == K_CIDR4)
		f->cidr4_bits |= 1ull << c->bits;
	else if (kind == K_CIDR6)
		f->cidr6_bits[c->bits / 64] |= 1ull << (c->bits % 64);
}

/* ------------------------------------------------------------------------
 * Numeric ranges: a segment tree over the pieces cut by the distinct
 * endpoints (below the first, each endpoint, each gap, above the last).
 * A range is stored in O(log n) nodes; a value collects the ranges of the
 * nodes on one root-to-leaf walk.
 * ------------------------------------------------------------------------ */

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Index of the first endpoint >= d (nep if none). */
static uint32_t ep_lower(const struct numidx *nx, double d)
{
	uint32_t lo = 0, hi = nx->nep;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (nx->ep[mid] < d)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void seg_insert(struct numidx *nx, uint32_t node, uint32_t l, uint32_t r, uint32_t a,
		       uint32_t b, uint32_t ci)
{
	uint32_t mid;

	if (a <= l && r <= b) {
		ids_push(&nx->node[node], ci);
		return;
	}
	mid = l + (r - l) / 2;
	if (a <= mid)
		seg_insert(nx, node * 2, l, mid, a, b, ci);
	if (b > mid)
		seg_insert(nx, node * 2 + 1, mid + 1, r, a, b, ci);
}

static void numidx_clear_tree(struct numidx *nx)
{
	for (uint32_t i = 0; i < nx->nnodes; i++)
		ids_free(&nx->node[i]);
	CFX_FREE(nx->node);
	CFX_FREE(nx->ep);
	nx->nnodes = nx->nep = 0;
}

static void numidx_build(struct numidx *nx)
{
	uint32_t pieces, n = 0;

	numidx_clear_tree(nx);
	nx->dirty = 0;
	if (!nx->nr)
		return;
	nx->ep = cfx_malloc(2 * nx->nr * sizeof *nx->ep);
	for (uint32_t i = 0; i < nx->nr; i++) {
		if (nx->r[i].has_lo)
			nx->ep[n++] = nx->r[i].lo;
		if (nx->r[i].has_hi)
			nx->ep[n++] = nx->r[i].hi;
	}
	qsort(nx->ep, n, sizeof *nx->ep, dbl_cmp);
	nx->nep = 0;
	for (uint32_t i = 0; i < n; i++)
		if (nx->nep == 0 || nx->ep[nx->nep - 1] != nx->ep[i])
			nx->ep[nx->nep++] = nx->ep[i];
	pieces = 2 * nx->nep + 1;
	nx->nnodes = 4 * pieces;
	nx->node = cfx_calloc(nx->nnodes, sizeof *nx->node);
	for (uint32_t i = 0; i < nx->nr; i++) {
		const struct pat_range *r = &nx->r[i];
		uint32_t a = 0, b = pieces - 1;

		if (r->has_lo)
			a = 2 * ep_lower(nx, r->lo) + 1 + (r->lo_incl ? 0 : 1);
		if (r->has_hi)
			b = 2 * ep_lower(nx, r->hi) + 1 - (r->hi_incl ? 0 : 1);
		if (a <= b)
			seg_insert(nx, 1, 0, pieces - 1, a, b, nx->rc[i]);
	}
}

static void numidx_free(struct numidx *nx)
{
	numidx_clear_tree(nx);
	CFX_FREE(nx->r);
	CFX_FREE(nx->rc);
	nx->nr = nx->rcap = 0;
}

/* ------------------------------------------------------------------------
 * Building: add a rule's branches; remove rebuilds from the kept rules.
 * ------------------------------------------------------------------------ */

/* A clause this cheap to index (see clause_cost) is indexed besides the anchor. */
#define ANCHOR_COST_MAX 4u

static void compile_rule(struct cfx_pattern_set *ps, const struct rule *rule,
			 const struct branches *bs)
{
	const struct pat *pat = rule->pat;

	for (uint32_t bi = 0; bi < bs->n; bi++) {
		const struct ids *br = &bs->b[bi];
		uint32_t b = ps->nb, required = 0, first_checked = ps->checked.n;

		if (ps->nb == ps->bcap) {
			ps->bcap = ps->bcap ? ps->bcap * 2 : 64;
			ps->b = cfx_realloc(ps->b, ps->bcap * sizeof *ps->b);
		}
		ps->nb++;
		/*
		 * Anchors: the cheapest clause to index, and any other as cheap as
		 * ANCHOR_COST_MAX, so that candidates are close to matches; the other
		 * clauses are checked on candidates.
		 */
		uint32_t anchor = UINT32_MAX;
		uint64_t best = UINT64_MAX, cost[CFX_PATTERN_FIELDS_MAX];
		for (uint32_t k = 0; k < br->n; k++) {
			cost[k] = clause_cost(ps, &pat->leaves[br->v[k]]);
			if (cost[k] < best) {
				best = cost[k];
				anchor = k;
			}
		}
		for (uint32_t k = 0; k < br->n; k++) {
			const struct pat_leaf *lf = &pat->leaves[br->v[k]];
			uint32_t fi = field_of_leaf(ps, lf->path, lf->path_len);
			uint32_t ci = ps->nc;

			if (ps->nc == ps->ccap) {
				ps->ccap = ps->ccap ? ps->ccap * 2 : 64;
				ps->c = cfx_realloc(ps->c, ps->ccap * sizeof *ps->c);
			}
			ps->c[ps->nc++] = (struct clause){ b, fi, lf };
			if (k != anchor && cost[k] > ANCHOR_COST_MAX) {
				ids_push(&ps->checked, ci);
				ps->f[fi].has_checked = 1;
				continue;
			}
			required++;
			for (uint32_t x = 0; x < lf->nconds; x++)
				index_cond(ps, fi, ci, &lf->conds[x]);
		}
		ps->b[b] = (struct branch){ rule->id, required, first_checked,
					    ps->checked.n - first_checked };
		if (!required)
			ids_push(&ps->zero_branches, b);
	}
	for (uint32_t i = 0; i < ps->nf; i++)
		if (ps->f[i].num.dirty)
			numidx_build(&ps->f[i].num);
}

static void index_free(struct cfx_pattern_set *ps)
{
	for (uint32_t i = 0; i < ps->nf; i++) {
		struct field *f = &ps->f[i];
		for (int k = 0; k < LK_COUNT; k++)
			ids_free(&f->lens[k]);
		numidx_free(&f->num);
	}
	CFX_FREE(ps->f);
	CFX_FREE(ps->c);
	CFX_FREE(ps->b);
	CFX_FREE(ps->wild);
	ids_free(&ps->checked);
	ids_free(&ps->zero_branches);
	t_free(&ps->t);
	ps->nf = ps->fcap = ps->nc = ps->ccap = ps->nb = ps->bcap = 0;
	ps->nwild = ps->wildcap = 0;
	ps->root = UINT32_MAX;
}

struct cfx_pattern_set *cfx_pattern_set_new(void)
{
	struct cfx_pattern_set *ps = cfx_calloc(1, sizeof *ps);

	ps->root = UINT32_MAX;
	return ps;
}

void cfx_pattern_set_free(struct cfx_pattern_set *ps)
{
	if (!ps)
		return;
	index_free(ps);
	for (uint32_t i = 0; i < ps->nr; i++)
		pattern__free(ps->r[i].pat);
	cfx_free(ps->r);
	cfx_free(ps);
}

size_t cfx_pattern_set_count(const struct cfx_pattern_set *ps) { return ps ? ps->nr : 0; }

static int rule_index(const struct cfx_pattern_set *ps, uint32_t id, uint32_t *idx)
{
	for (uint32_t i = 0; i < ps->nr; i++)
		if (ps->r[i].id == id) {
			*idx = i;
			return 1;
		}
	return 0;
}

static int rule_exists(const struct cfx_pattern_set *ps, uint32_t id)
{
	return t_find(&ps->t, key_hash(h_fwd(&id, sizeof id), 0, K_RULE), 0, K_RULE, &id,
		      sizeof id) != NULL;
}

int cfx_pattern_set_add(struct cfx_pattern_set *ps, uint32_t rule_id, const char *json, size_t len,
			char *err, size_t err_len)
{
	struct branches bs = { 0 };
	struct pat *pat;
	struct rule *rule;
	int rc;

	CFX_ASSERT(ps);
	rc = pattern__parse(json, len, &pat, err, err_len);
	if (rc)
		return rc;
	rc = expand_or_fail(pat, &bs, err, err_len);
	if (rc) {
		pattern__free(pat);
		return rc;
	}
	if (rule_exists(ps, rule_id) || ps->nr >= CFX_PATTERN_SET_RULES_MAX) {
		rc = ps->nr >= CFX_PATTERN_SET_RULES_MAX ? CFX_E2BIG : CFX_EEXIST;
		if (err && err_len)
			snprintf(err, err_len, rc == CFX_EEXIST ? "rule %u is already in the set"
								: "too many rules in the set",
				 rule_id);
		branches_free(&bs);
		pattern__free(pat);
		return rc;
	}
	if (ps->nr == ps->rcap) {
		ps->rcap = ps->rcap ? ps->rcap * 2 : 16;
		ps->r = cfx_realloc(ps->r, ps->rcap * sizeof *ps->r);
	}
	rule = &ps->r[ps->nr++];
	rule->id = rule_id;
	rule->pat = pat;
	t_add(&ps->t, 0, K_RULE, &rule_id, sizeof rule_id, ps->nr - 1);
	compile_rule(ps, rule, &bs);
	branches_free(&bs);
	return 0;
}

int cfx_pattern_set_remove(struct cfx_pattern_set *ps, uint32_t rule_id)
{
	uint32_t idx;

	CFX_ASSERT(ps);
	if (!rule_index(ps, rule_id, &idx))
		return CFX_ENOENT;
	pattern__free(ps->r[idx].pat);
	ps->r[idx] = ps->r[--ps->nr];
	index_free(ps);
	for (uint32_t i = 0; i < ps->nr; i++) {
		struct branches bs = { 0 };
		int rc = expand(&ps->r[i].pat->root, &bs);

		CFX_ASSERT(rc == 0); /* it expanded when it was added */
		t_add(&ps->t, 0, K_RULE, &ps->r[i].id, sizeof ps->r[i].id, i);
		compile_rule(ps, &ps->r[i], &bs);
		branches_free(&bs);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Matching
 *
 * Per-call scratch: small open-addressing maps of 32-bit ids that start
 * on the stack and grow on the heap, so a call costs what the event
 * touches, never a pass over the set.
 * ------------------------------------------------------------------------ */

#define MAP_INLINE 64u
#define EMPTY_KEY UINT32_MAX

struct umap {
	uint32_t *k, *v;
	uint32_t cap, n;
	uint32_t ik[MAP_INLINE], iv[MAP_INLINE];
};

static void umap_init(struct umap *m)
{
	m->k = m->ik;
	m->v = m->iv;
	m->cap = MAP_INLINE;
	m->n = 0;
	memset(m->ik, 0xff, sizeof m->ik);
}

static void umap_fini(struct umap *m)
{
	if (m->k != m->ik) {
		cfx_free(m->k);
		cfx_free(m->v);
	}
}

static inline uint32_t umap_slot(uint32_t key, uint32_t mask)
{
	return (uint32_t)(((uint64_t)key * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}

static void umap_grow(struct umap *m)
{
	uint32_t cap = m->cap * 2, *k = cfx_malloc(cap * sizeof *k), *v = cfx_malloc(cap * sizeof *v);

	memset(k, 0xff, cap * sizeof *k);
	for (uint32_t i = 0; i < m->cap; i++) {
		uint32_t j;
		if (m->k[i] == EMPTY_KEY)
			continue;
		for (j = umap_slot(m->k[i], cap - 1); k[j] != EMPTY_KEY; j = (j + 1) & (cap - 1))
			;
		k[j] = m->k[i];
		v[j] = m->v[i];
	}
	umap_fini(m);
	m->k = k;
	m->v = v;
	m->cap = cap;
}

/* Returns the value slot of `key`, inserting it with value `init` (*is_new = 1) if absent. */
static uint32_t *umap_get(struct umap *m, uint32_t key, uint32_t init, int *is_new)
{
	uint32_t mask, i;

	if ((m->n + 1) * 2 > m->cap)
		umap_grow(m);
	mask = m->cap - 1;
	for (i = umap_slot(key, mask); m->k[i] != EMPTY_KEY; i = (i + 1) & mask)
		if (m->k[i] == key) {
			*is_new = 0;
			return &m->v[i];
		}
	m->k[i] = key;
	m->v[i] = init;
	m->n++;
	*is_new = 1;
	return &m->v[i];
}

static const uint32_t *umap_find(const struct umap *m, uint32_t key)
{
	uint32_t mask = m->cap - 1;

	for (uint32_t i = umap_slot(key, mask); m->k[i] != EMPTY_KEY; i = (i + 1) & mask)
		if (m->k[i] == key)
			return &m->v[i];
	return NULL;
}

#define KEPT_INLINE 64u

/* A leaf of a field that checked clauses read. */
struct kept {
	uint32_t field;
	const json_t *v;
};

struct mctx {
	const struct cfx_pattern_set *ps;
	struct umap sat;   /* clause -> 1: satisfied (branches needing several) */
	struct umap count; /* branch -> indexed clauses satisfied */
	struct ids done;   /* candidate branches (may repeat) */
	struct kept *kept; /* leaves of fields with checked clauses, in walk order */
	uint32_t nkept, kept_cap;
	struct kept kept_inl[KEPT_INLINE];
	uint32_t done_inl[KEPT_INLINE];
	char low[CFX_PATTERN_STRING_BYTES_MAX]; /* lower-cased value (its first bytes) */
	uint8_t path[PAT_PATH_BYTES_MAX];
};

static void done_push(struct mctx *m, uint32_t b)
{
	if (m->done.n == m->done.cap) {
		uint32_t cap = m->done.cap * 2;
		uint32_t *v = cfx_malloc(cap * sizeof *v);

		memcpy(v, m->done.v, m->done.n * sizeof *v);
		if (m->done.v != m->done_inl)
			cfx_free(m->done.v);
		m->done.v = v;
		m->done.cap = cap;
	}
	m->done.v[m->done.n++] = b;
}

static void satisfy(struct mctx *m, uint32_t ci)
{
	const struct clause *c = &m->ps->c[ci];
	uint32_t required = m->ps->b[c->branch].required;
	int is_new;
	uint32_t *n;

	/* One indexed clause (the usual anchor): a candidate at once; repeats are harmless. */
	if (required == 1) {
		done_push(m, c->branch);
		return;
	}
	umap_get(&m->sat, ci, 1, &is_new);
	if (!is_new)
		return;
	n = umap_get(&m->count, c->branch, 0, &is_new);
	if (++*n == required)
		done_push(m, c->branch);
}

static void satisfy_all(struct mctx *m, const struct entry *e)
{
	if (e)
		for (uint32_t i = 0; i < e->ids.n; i++)
			satisfy(m, entry_ids(e)[i]);
}

static const struct entry *probe(const struct mctx *m, uint32_t fi, uint32_t kind, uint64_t h,
				 const void *key, size_t len)
{
	return t_find(&m->ps->t, key_hash(h, fi, kind), fi, kind, key, len);
}

/* Calls fn on the entry of every operand length of `lk` that fits in s (backwards for suffixes). */
typedef void (*affix_fn)(struct mctx *m, const struct entry *e, const char *s, size_t len);

static void probe_affixes(struct mctx *m, uint32_t fi, enum len_kind lk, const char *s, size_t len,
			  affix_fn fn)
{
	const struct ids *lens = &m->ps->f[fi].lens[lk];
	uint32_t kind = lk_key[lk];
	int rev = kind_is_reversed(kind);
	uint64_t h = CFX_HASH_SEED;
	size_t done = 0;

	for (uint32_t i = 0; i < lens->n && lens->v[i] <= len; i++) {
		size_t l = lens->v[i];
		const char *key = rev ? s + len - l : s;
		const struct entry *e;

		for (; done < l; done++)
			h = fnv_step(h, (uint8_t)(rev ? s[len - 1 - done] : s[done]));
		e = probe(m, fi, kind, h, key, l);
		if (e)
			fn(m, e, s, len);
	}
}

static void on_clauses(struct mctx *m, const struct entry *e, const char *s, size_t len)
{
	CFX_UNUSED(s);
	CFX_UNUSED(len);
	satisfy_all(m, e);
}

/* Wildcard candidates: the clause is satisfied if the whole wildcard matches. */
static void on_wild(struct mctx *m, const struct entry *e, const char *s, size_t len)
{
	for (uint32_t i = 0; i < e->ids.n; i++) {
		const struct item *it = &m->ps->wild[entry_ids(e)[i]];
		if (wildcard_match(it->cond, s, len))
			satisfy(m, it->clause);
	}
}

static void match_cidr(struct mctx *m, uint32_t fi, const char *s, size_t len)
{
	const struct field *f = &m->ps->f[fi];
	uint8_t addr[16], key[17];
	uint8_t fam;

	if (!f->cidr4_bits && !(f->cidr6_bits[0] | f->cidr6_bits[1] | f->cidr6_bits[2]))
		return;
	fam = ip_parse(s, len, addr);
	if (!fam)
		return;
	for (unsigned b = 0; b <= (fam == 4 ? 32u : 128u); b++) {
		int on = fam == 4 ? (f->cidr4_bits >> b) & 1 : (f->cidr6_bits[b / 64] >> (b % 64)) & 1;
		size_t klen = fam == 4 ? 5 : 17;

		if (!on)
			continue;
		key[0] = (uint8_t)b;
		memcpy(key + 1, addr, 16);
		mask_bits(key + 1, b);
		satisfy_all(m, probe(m, fi, fam == 4 ? K_CIDR4 : K_CIDR6, h_fwd(key, klen), key, klen));
	}
}

static void match_string(struct mctx *m, uint32_t fi, const char *s, size_t len)
{
	const struct field *f = &m->ps->f[fi];
	size_t low_len;

	if (f->kinds & (1u << K_STR))
		satisfy_all(m, probe(m, fi, K_STR, h_fwd(s, len), s, len));
	probe_affixes(m, fi, LK_PREFIX, s, len, on_clauses);
	probe_affixes(m, fi, LK_SUFFIX, s, len, on_clauses);
	probe_affixes(m, fi, LK_WILD_P, s, len, on_wild);
	probe_affixes(m, fi, LK_WILD_S, s, len, on_wild);
	match_cidr(m, fi, s, len);
	if (!(f->kinds & (1u << K_EIC)) && !f->lens[LK_PREFIX_EIC].n && !f->lens[LK_SUFFIX_EIC].n)
		return;
	/* Operands are at most CFX_PATTERN_STRING_BYTES_MAX: fold only what can take part. */
	if (len <= sizeof m->low) {
		lower_copy(m->low, s, len);
		if (f->kinds & (1u << K_EIC))
			satisfy_all(m, probe(m, fi, K_EIC, h_fwd(m->low, len), m->low, len));
		probe_affixes(m, fi, LK_PREFIX_EIC, m->low, len, on_clauses);
		probe_affixes(m, fi, LK_SUFFIX_EIC, m->low, len, on_clauses);
	} else {
		low_len = sizeof m->low;
		lower_copy(m->low, s, low_len);
		probe_affixes(m, fi, LK_PREFIX_EIC, m->low, low_len, on_clauses);
		lower_copy(m->low, s + len - low_len, low_len);
		probe_affixes(m, fi, LK_SUFFIX_EIC, m->low, low_len, on_clauses);
	}
}

static void match_number(struct mctx *m, uint32_t fi, double d)
{
	const struct field *f = &m->ps->f[fi];
	const struct numidx *nx = &f->num;

	if (f->kinds & (1u << K_NUM))
		satisfy_all(m, probe(m, fi, K_NUM, h_fwd(&d, sizeof d), &d, sizeof d));
	if (nx->nnodes) {
		uint32_t i = ep_lower(nx, d), piece, node = 1, l = 0, r = 2 * nx->nep;

		piece = (i < nx->nep && nx->ep[i] == d) ? 2 * i + 1 : 2 * i;
		for (;;) {
			const struct ids *ids = &nx->node[node];
			uint32_t mid;

			for (uint32_t k = 0; k < ids->n; k++)
				satisfy(m, ids->v[k]);
			if (l == r)
				break;
			mid = l + (r - l) / 2;
			if (piece <= mid) {
				node = node * 2;
				r = mid;
			} else {
				node = node * 2 + 1;
				l = mid + 1;
			}
		}
	}
}

/* Keeps a leaf of a field that checked clauses read. */
static void keep_value(struct mctx *m, uint32_t fi, const json_t *v)
{
	if (m->nkept == m->kept_cap) {
		uint32_t cap = m->kept_cap * 2;
		struct kept *k = cfx_malloc(cap * sizeof *k);

		memcpy(k, m->kept, m->nkept * sizeof *k);
		if (m->kept != m->kept_inl)
			cfx_free(m->kept);
		m->kept = k;
		m->kept_cap = cap;
	}
	m->kept[m->nkept++] = (struct kept){ fi, v };
}

static void match_leaf(struct mctx *m, uint32_t fi, const json_t *v)
{
	const struct field *f = &m->ps->f[fi];

	if (f->has_checked)
		keep_value(m, fi, v);
	switch (json_typeof(v)) {
	case JSON_STRING:
		match_string(m, fi, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		match_number(m, fi, num_of(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL: {
		uint32_t k = json_is_true(v) ? K_TRUE : json_is_false(v) ? K_FALSE : K_NULL;
		if (f->kinds & (1u << k))
			satisfy_all(m, probe(m, fi, k, h_fwd("", 0), "", 0));
		break;
	}
	default:
		break;
	}
}

/*
 * Walks the event along indexed paths; `fi` is the field of `node`'s path
 * (plen bytes of m->path, whose FNV state is `h`: a child's path hash
 * continues its parent's).
 */
static void walk(struct mctx *m, const json_t *node, size_t plen, uint64_t h, uint32_t fi,
		 unsigned depth)
{
	const struct field *f = &m->ps->f[fi];

	if (depth > WALK_DEPTH_MAX)
		return;
	if (json_is_array(node)) {
		for (size_t i = 0; i < json_array_size(node); i++)
			walk(m, json_array_get(node, i), plen, h, fi, depth + 1);
	} else if (json_is_object(node)) {
		const char *key;
		size_t key_len;
		json_t *child;

		if (!f->is_interior)
			return;
		json_object_keylen_foreach((json_t *)node, key, key_len, child)
		{
			uint64_t ch = fnv_step(h, (uint8_t)key_len);
			uint32_t cf;

			if (key_len == 0 || key_len > CFX_PATTERN_KEY_BYTES_MAX ||
			    plen + 1 + key_len > sizeof m->path)
				continue;
			m->path[plen] = (uint8_t)key_len;
			memcpy(m->path + plen + 1, key, key_len);
			for (size_t k = 0; k < key_len; k++)
				ch = fnv_step(ch, (uint8_t)key[k]);
			cf = field_find_h(m->ps, m->path, plen + 1 + key_len, ch);
			if (cf != UINT32_MAX)
				walk(m, child, plen + 1 + key_len, ch, cf, depth + 1);
		}
	} else if (f->is_leaf) {
		match_leaf(m, fi, node);
	}
}

/* A candidate branch matches when each of its checked clauses holds on the kept leaves. */
static int branch_checks_hold(const struct mctx *m, uint32_t b)
{
	const struct branch *br = &m->ps->b[b];
	const json_t *inl[KEPT_INLINE], **v = inl;
	int ok = 1;

	if (br->nchecked && m->nkept > KEPT_INLINE)
		v = cfx_malloc(m->nkept * sizeof *v);
	for (uint32_t i = 0; i < br->nchecked && ok; i++) {
		const struct clause *c = &m->ps->c[m->ps->checked.v[br->checked + i]];
		size_t n = 0;

		for (uint32_t k = 0; k < m->nkept; k++)
			if (m->kept[k].field == c->field)
				v[n++] = m->kept[k].v;
		ok = leaf_ok(c->leaf, v, n);
	}
	if (v != inl)
		cfx_free(v);
	return ok;
}

size_t cfx_pattern_set_match(const struct cfx_pattern_set *ps, const json_t *event, uint32_t *out,
			     size_t max)
{
	struct mctx m;
	struct umap emitted;
	size_t nmatch = 0;

	if (!ps || !event || ps->root == UINT32_MAX)
		return 0;
	m.ps = ps;
	m.done = (struct ids){ m.done_inl, 0, KEPT_INLINE };
	m.kept = m.kept_inl;
	m.nkept = 0;
	m.kept_cap = KEPT_INLINE;
	umap_init(&m.sat);
	umap_init(&m.count);
	umap_init(&emitted);

	walk(&m, event, 0, CFX_HASH_SEED, ps->root, 0);

	for (int pass = 0; pass < 2; pass++) {
		const struct ids *l = pass ? &ps->zero_branches : &m.done;
		for (uint32_t i = 0; i < l->n; i++) {
			uint32_t b = l->v[i];
			int is_new;

			if (umap_find(&emitted, ps->b[b].rule_id) || !branch_checks_hold(&m, b))
				continue;
			umap_get(&emitted, ps->b[b].rule_id, 1, &is_new);
			if (nmatch < max)
				out[nmatch] = ps->b[b].rule_id;
			nmatch++;
		}
	}

	if (m.kept != m.kept_inl)
		cfx_free(m.kept);
	if (m.done.v != m.done_inl)
		cfx_free(m.done.v);
	umap_fini(&m.sat);
	umap_fini(&m.count);
	umap_fini(&emitted);
	return nmatch;
}
