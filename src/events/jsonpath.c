/*
 * jsonpath.c - the JSONPath subset of events/jsonpath.h: a compiler from
 * the expression to a list of steps, and an evaluator that follows them.
 * No wildcards, so a path names at most one value.
 */
#include "events/jsonpath.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"

struct step {
	char *name;	 /* owned; NULL for an index step */
	size_t name_len; /* bytes of name */
	long index;	 /* index steps: >= 0 from the start, < 0 from the end */
};

struct cfx_jsonpath {
	struct step *steps;
	size_t n;
	char *text; /* owned copy of the expression */
};

CFX_PRINTF(4, 5) static int jp_fail(char *err, size_t err_len, size_t col, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (err && err_len)
		snprintf(err, err_len, "jsonpath at column %zu: %s", col, msg);
	return CFX_EPARSE;
}

static int is_name_byte(unsigned char c)
{
	return c > 0x20 && c != 0x7f && c != '.' && c != '[' && c != ']' && c != '\'' &&
	       c != '"' && c != '*' && c != '$';
}

void cfx_jsonpath_free(struct cfx_jsonpath *jp)
{
	if (!jp)
		return;
	for (size_t i = 0; i < jp->n; i++)
		cfx_free(jp->steps[i].name);
	cfx_free(jp->steps);
	cfx_free(jp->text);
	cfx_free(jp);
}

static struct step *push(struct cfx_jsonpath *jp)
{
	struct step *s = &jp->steps[jp->n++];
	memset(s, 0, sizeof *s);
	return s;
}

int cfx_jsonpath_compile(const char *expr, size_t len, struct cfx_jsonpath **out, char *err,
			 size_t err_len)
{
	struct cfx_jsonpath *jp;
	size_t i = 1;
	int rc = 0;

	*out = NULL;
	if (err && err_len)
		err[0] = '\0';
	if (!expr || len == 0 || expr[0] != '$')
		return jp_fail(err, err_len, 1, "a path starts with '$'");
	if (len > CFX_JSONPATH_BYTES_MAX) {
		if (err && err_len)
			snprintf(err, err_len, "jsonpath longer than %u bytes", CFX_JSONPATH_BYTES_MAX);
		return CFX_E2BIG;
	}
	jp = cfx_calloc(1, sizeof *jp);
	jp->steps = cfx_calloc(CFX_JSONPATH_STEPS_MAX, sizeof *jp->steps);
	jp->text = cfx_strndup(expr, len);
	while (i < len && !rc) {
		size_t col = i + 1;

		if (jp->n == CFX_JSONPATH_STEPS_MAX) {
			if (err && err_len)
				snprintf(err, err_len, "jsonpath has more than %u steps",
					 CFX_JSONPATH_STEPS_MAX);
			rc = CFX_E2BIG;
			break;
		}
		if (expr[i] == '.') {
			size_t start = ++i;
			struct step *s;

			if (i < len && expr[i] == '.') {
				rc = jp_fail(err, err_len, col, "recursive descent ('..') is not supported");
				break;
			}
			if (i < len && expr[i] == '*') {
				rc = jp_fail(err, err_len, col + 1, "wildcards are not supported");
				break;
			}
			while (i < len && is_name_byte((unsigned char)expr[i]))
				i++;
			if (i == start) {
				rc = jp_fail(err, err_len, col, "expected a name after '.'");
				break;
			}
			s = push(jp);
			s->name = cfx_strndup(expr + start, i - start);
			s->name_len = i - start;
		} else if (expr[i] == '[') {
			i++;
			if (i < len && (expr[i] == '\'' || expr[i] == '"')) {
				char quote = expr[i++], *name = cfx_malloc(len);
				size_t n = 0;
				int closed = 0;

				while (i < len) {
					char c = expr[i++];
					if (c == '\\' && i < len && (expr[i] == '\\' || expr[i] == quote)) {
						name[n++] = expr[i++];
					} else if (c == '\\') {
						break;
					} else if (c == quote) {
						closed = 1;
						break;
					} else {
						name[n++] = c;
					}
				}
				if (!closed || i >= len || expr[i] != ']') {
					cfx_free(name);
					rc = jp_fail(err, err_len, col,
						     "a quoted name needs a closing quote and ']' "
						     "(escapes: \\\\ and \\')");
					break;
				}
				i++;
				struct step *s = push(jp);
				s->name = name;
				s->name_len = n;
			} else {
				int neg = 0;
				long v = 0;
				size_t start;

				if (i < len && expr[i] == '*') {
					rc = jp_fail(err, err_len, col + 1, "wildcards are not supported");
					break;
				}
				if (i < len && (expr[i] == '?' || expr[i] == '(')) {
					rc = jp_fail(err, err_len, col + 1, "filters are not supported");
					break;
				}
				if (i < len && expr[i] == '-') {
					neg = 1;
					i++;
				}
				start = i;
				while (i < len && expr[i] >= '0' && expr[i] <= '9') {
					v = v * 10 + (expr[i] - '0');
					if (v > CFX_JSONPATH_INDEX_MAX) {
						rc = jp_fail(err, err_len, col, "index out of range");
						break;
					}
					i++;
				}
				if (rc)
					break;
				if (i == start) {
					rc = jp_fail(err, err_len, col,
						     "expected an index or a quoted name after '['");
					break;
				}
				if (i >= len || expr[i] != ']') {
					rc = jp_fail(err, err_len, i + 1,
						     (i < len && (expr[i] == ':' || expr[i] == ','))
							     ? "slices and unions are not supported"
							     : "expected ']'");
					break;
				}
				i++;
				push(jp)->index = neg ? -v : v;
				if (neg && v == 0) {
					rc = jp_fail(err, err_len, col, "index -0 is not allowed");
					break;
				}
			}
		} else {
			rc = jp_fail(err, err_len, col, "expected '.' or '['");
		}
	}
	if (rc) {
		cfx_jsonpath_free(jp);
		return rc;
	}
	*out = jp;
	return 0;
}

const json_t *cfx_jsonpath_eval(const struct cfx_jsonpath *jp, const json_t *root)
{
	const json_t *v = root;

	if (!jp)
		return NULL;
	for (size_t i = 0; i < jp->n && v; i++) {
		const struct step *s = &jp->steps[i];

		if (s->name) {
			v = json_is_object(v) ? json_object_getn(v, s->name, s->name_len) : NULL;
		} else if (json_is_array(v)) {
			size_t n = json_array_size(v);
			long idx = s->index < 0 ? (long)n + s->index : s->index;
			v = (idx >= 0 && (size_t)idx < n) ? json_array_get(v, (size_t)idx) : NULL;
		} else {
			v = NULL;
		}
	}
	return v;
}

const char *cfx_jsonpath_text(const struct cfx_jsonpath *jp) { return jp ? jp->text : ""; }
