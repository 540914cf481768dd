/*
 * transform.c - EventBridge transforms (events/transform.h): parsing the
 * description, compiling a template into literal and placeholder pieces,
 * and rendering. Nothing here matches events (pattern.c) or sends them.
 */
#include "events/transform.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/err.h"
#include "events/jsonpath.h"

/* One piece of a compiled template: literal bytes, or a variable. */
struct piece {
	size_t off, len;   /* literal: bytes of tf->text */
	int var;	   /* -1 for a literal, else the index into tf->vars */
	uint8_t in_string; /* JSON template: the placeholder sits inside a string literal */
};

struct var {
	char *name; /* owned */
	struct cfx_jsonpath *path;
};

struct cfx_transform {
	enum cfx_transform_type type;
	char *constant; /* CONSTANT: owned rendered bytes */
	size_t constant_len;
	struct cfx_jsonpath *path; /* JSONPATH */
	struct var *vars;	   /* TEMPLATE */
	size_t nvars;
	char *text; /* TEMPLATE: owned template text */
	struct piece *pieces;
	size_t npieces;
	uint8_t is_json; /* TEMPLATE: JSON rendering rules */
};

CFX_PRINTF(3, 4) static int tf_fail(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err && err_len) {
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return CFX_EPARSE;
}

void cfx_transform_free(struct cfx_transform *tf)
{
	if (!tf)
		return;
	cfx_free(tf->constant);
	cfx_jsonpath_free(tf->path);
	for (size_t i = 0; i < tf->nvars; i++) {
		cfx_free(tf->vars[i].name);
		cfx_jsonpath_free(tf->vars[i].path);
	}
	cfx_free(tf->vars);
	cfx_free(tf->text);
	cfx_free(tf->pieces);
	cfx_free(tf);
}

enum cfx_transform_type cfx_transform_type(const struct cfx_transform *tf) { return tf->type; }

/* Compact JSON of any value, in a cfx_malloc'd buffer; NULL if jansson cannot encode it. */
static char *dump(const json_t *v, size_t *len)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), *copy;

	if (!s)
		return NULL;
	*len = strlen(s);
	copy = cfx_strndup(s, *len);
	free(s);
	return copy;
}

static int name_ok(const char *s, size_t len)
{
	if (len == 0 || len > CFX_TRANSFORM_NAME_BYTES_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * Templates
 * ------------------------------------------------------------------------ */

static void add_piece(struct cfx_transform *tf, size_t off, size_t len, int var, int in_string)
{
	if (var < 0 && len == 0)
		return;
	tf->pieces = cfx_realloc(tf->pieces, (tf->npieces + 1) * sizeof *tf->pieces);
	tf->pieces[tf->npieces++] = (struct piece){ off, len, var, (uint8_t)in_string };
}

/*
 * Cuts the template into pieces. In a JSON template, string literals are
 * tracked (quotes and backslash escapes outside placeholders) so that each
 * placeholder knows whether it sits inside one.
 */
static int compile_template(struct cfx_transform *tf, char *err, size_t err_len)
{
	const char *t = tf->text;
	size_t n = strlen(t), lit = 0, i = 0;
	int in_str = 0;

	while (i < n) {
		if (t[i] == '$' && i + 1 < n && t[i + 1] == '{') {
			const char *close = memchr(t + i + 2, '}', n - i - 2);
			size_t name_len;
			int var = -1;

			if (!close)
				return tf_fail(err, err_len, "template: \"${\" at byte %zu is not closed",
					       i);
			name_len = (size_t)(close - (t + i + 2));
			for (size_t k = 0; k < tf->nvars; k++)
				if (strlen(tf->vars[k].name) == name_len &&
				    memcmp(tf->vars[k].name, t + i + 2, name_len) == 0)
					var = (int)k;
			if (var < 0)
				return tf_fail(err, err_len,
					       "template uses undeclared variable \"%.*s\"",
					       (int)CFX_MIN(name_len, 64), t + i + 2);
			add_piece(tf, lit, i - lit, -1, 0);
			add_piece(tf, 0, 0, var, in_str);
			i = (size_t)(close - t) + 1;
			lit = i;
			continue;
		}
		if (tf->is_json) {
			if (in_str && t[i] == '\\' && i + 1 < n) {
				i += 2;
				continue;
			}
			if (t[i] == '"')
				in_str = !in_str;
		}
		i++;
	}
	add_piece(tf, lit, n - lit, -1, 0);
	return 0;
}

struct out {
	struct cfx_writer wr;
	int rc;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->rc)
		return;
	if (n > CFX_TRANSFORM_OUTPUT_BYTES_MAX - o->wr.len) {
		o->rc = CFX_E2BIG;
		return;
	}
	cfx_write_bytes(&o->wr, p, n);
}

/* Writes `s` as the inside of a JSON string literal (escaped, no quotes). */
static void put_escaped(struct out *o, const char *s, size_t len)
{
	json_t *js = json_stringn_nocheck(s, len);
	size_t n = 0;
	char *enc = js ? dump(js, &n) : NULL;

	json_decref(js);
	if (!enc || n < 2) {
		if (!o->rc)
			o->rc = CFX_EINVAL;
	} else {
		put(o, enc + 1, n - 2);
	}
	cfx_free(enc);
}

/* Renders one variable's value by the table in transform.h. */
static void put_value(struct out *o, const struct cfx_transform *tf, const struct piece *pc,
		      const json_t *v)
{
	size_t n = 0;
	char *enc;

	if (!v) {
		if (tf->is_json && !pc->in_string)
			put(o, "null", 4);
		return;
	}
	if (json_is_string(v) && (!tf->is_json || pc->in_string)) {
		if (pc->in_string)
			put_escaped(o, json_string_value(v), json_string_length(v));
		else
			put(o, json_string_value(v), json_string_length(v));
		return;
	}
	enc = dump(v, &n);
	if (!enc) {
		if (!o->rc)
			o->rc = CFX_EINVAL;
		return;
	}
	if (pc->in_string)
		put_escaped(o, enc, n);
	else
		put(o, enc, n);
	cfx_free(enc);
}

static void render(const struct cfx_transform *tf, const json_t *event, struct out *o)
{
	for (size_t i = 0; i < tf->npieces && !o->rc; i++) {
		const struct piece *pc = &tf->pieces[i];

		if (pc->var < 0)
			put(o, tf->text + pc->off, pc->len);
		else
			put_value(o, tf, pc,
				  event ? cfx_jsonpath_eval(tf->vars[pc->var].path, event) : NULL);
	}
}

static int parse_template(struct cfx_transform *tf, const json_t *desc, char *err, size_t err_len)
{
	const json_t *vars = json_object_get(desc, "variables"),
		     *tmpl = json_object_get(desc, "template");
	const char *key;
	size_t key_len, tlen;
	json_t *v;
	int rc;

	if (!json_is_string(tmpl))
		return tf_fail(err, err_len, "template: \"template\" must be a string");
	tlen = json_string_length(tmpl);
	if (tlen > CFX_TRANSFORM_TEMPLATE_BYTES_MAX) {
		tf_fail(err, err_len, "template longer than %u bytes",
			CFX_TRANSFORM_TEMPLATE_BYTES_MAX);
		return CFX_E2BIG;
	}
	if (strlen(json_string_value(tmpl)) != tlen)
		return tf_fail(err, err_len, "template contains a NUL byte");
	if (vars && !json_is_object(vars))
		return tf_fail(err, err_len, "template: \"variables\" must be an object");
	if (json_object_size(vars) > CFX_TRANSFORM_VARIABLES_MAX) {
		tf_fail(err, err_len, "template has more than %u variables",
			CFX_TRANSFORM_VARIABLES_MAX);
		return CFX_E2BIG;
	}
	tf->vars = cfx_calloc(json_object_size(vars) + 1, sizeof *tf->vars);
	if (vars)
		json_object_keylen_foreach((json_t *)vars, key, key_len, v)
		{
			struct var *var = &tf->vars[tf->nvars];
			char perr[160];

			if (!name_ok(key, key_len))
				return tf_fail(err, err_len,
					       "variable name \"%.64s\" must be 1-64 of [A-Za-z0-9_.-]",
					       key);
			if (!json_is_string(v))
				return tf_fail(err, err_len, "variable \"%s\" must be a JSONPath string",
					       key);
			rc = cfx_jsonpath_compile(json_string_value(v), json_string_length(v),
						  &var->path, perr, sizeof perr);
			if (rc) {
				tf_fail(err, err_len, "variable \"%s\": %s", key, perr);
				return rc;
			}
			var->name = cfx_strndup(key, key_len);
			tf->nvars++;
		}
	tf->text = cfx_strndup(json_string_value(tmpl), tlen);
	for (size_t i = 0; i < tlen; i++) {
		char c = tf->text[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		tf->is_json = c == '{' || c == '[';
		break;
	}
	rc = compile_template(tf, err, err_len);
	if (rc)
		return rc;
	if (tf->is_json) {
		/* Every variable absent: the result must still be JSON. */
		struct out o = { .rc = 0 };
		json_error_t jerr;
		json_t *probe;

		cfx_writer_init(&o.wr, tlen + 16);
		render(tf, NULL, &o);
		probe = o.rc ? NULL : json_loadb((const char *)o.wr.p, o.wr.len, JSON_DECODE_ANY, &jerr);
		cfx_writer_free(&o.wr);
		if (!probe)
			return tf_fail(err, err_len,
				       "template starts like JSON but is not JSON once substituted: "
				       "%s (column %d)",
				       jerr.text, jerr.column);
		json_decref(probe);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Create and apply
 * ------------------------------------------------------------------------ */

int cfx_transform_new(const char *json, size_t len, struct cfx_transform **out, char *err,
		      size_t err_len)
{
	struct cfx_transform *tf;
	json_error_t jerr;
	json_t *desc;
	const char *type;
	int rc = 0;

	*out = NULL;
	if (err && err_len)
		err[0] = '\0';
	if (!json)
		return tf_fail(err, err_len, "transform is missing");
	if (len > CFX_TRANSFORM_BYTES_MAX) {
		tf_fail(err, err_len, "transform longer than %u bytes", CFX_TRANSFORM_BYTES_MAX);
		return CFX_E2BIG;
	}
	desc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!desc)
		return tf_fail(err, err_len, "not JSON: %s (line %d, column %d)", jerr.text,
			       jerr.line, jerr.column);
	if (!json_is_object(desc)) {
		json_decref(desc);
		return tf_fail(err, err_len, "a transform is a JSON object");
	}
	type = json_string_value(json_object_get(desc, "type"));
	tf = cfx_calloc(1, sizeof *tf);
	if (!type) {
		rc = tf_fail(err, err_len, "transform needs a \"type\" string");
	} else if (strcmp(type, "original") == 0) {
		tf->type = CFX_TRANSFORM_ORIGINAL;
	} else if (strcmp(type, "constant") == 0) {
		const json_t *v = json_object_get(desc, "value");

		tf->type = CFX_TRANSFORM_CONSTANT;
		if (!v)
			rc = tf_fail(err, err_len, "constant needs a \"value\"");
		else if (json_is_string(v))
			tf->constant = cfx_strndup(json_string_value(v),
						   tf->constant_len = json_string_length(v));
		else if (!(tf->constant = dump(v, &tf->constant_len)))
			rc = tf_fail(err, err_len, "constant: value cannot be encoded");
	} else if (strcmp(type, "jsonpath") == 0) {
		const json_t *p = json_object_get(desc, "path");

		tf->type = CFX_TRANSFORM_JSONPATH;
		if (!json_is_string(p))
			rc = tf_fail(err, err_len, "jsonpath needs a \"path\" string");
		else
			rc = cfx_jsonpath_compile(json_string_value(p), json_string_length(p),
						  &tf->path, err, err_len);
	} else if (strcmp(type, "template") == 0) {
		tf->type = CFX_TRANSFORM_TEMPLATE;
		rc = parse_template(tf, desc, err, err_len);
	} else {
		rc = tf_fail(err, err_len,
			     "unknown transform type \"%.32s\" (original, constant, jsonpath, "
			     "template)",
			     type);
	}
	json_decref(desc);
	if (rc) {
		cfx_transform_free(tf);
		return rc;
	}
	*out = tf;
	return 0;
}

int cfx_transform_apply(const struct cfx_transform *tf, const json_t *event, char **out,
			size_t *out_len)
{
	struct out o = { .rc = 0 };
	const json_t *v;
	char *enc;
	size_t n = 0;

	*out = NULL;
	*out_len = 0;
	CFX_ASSERT(tf);
	cfx_writer_init(&o.wr, 256);
	switch (tf->type) {
	case CFX_TRANSFORM_ORIGINAL:
	case CFX_TRANSFORM_JSONPATH:
		v = tf->type == CFX_TRANSFORM_ORIGINAL ? event : cfx_jsonpath_eval(tf->path, event);
		if (!v) {
			o.rc = tf->type == CFX_TRANSFORM_ORIGINAL ? CFX_EINVAL : CFX_ENOENT;
			break;
		}
		enc = dump(v, &n);
		if (!enc)
			o.rc = CFX_EINVAL;
		else
			put(&o, enc, n);
		cfx_free(enc);
		break;
	case CFX_TRANSFORM_CONSTANT:
		put(&o, tf->constant, tf->constant_len);
		break;
	case CFX_TRANSFORM_TEMPLATE:
		render(tf, event, &o);
		break;
	}
	if (o.rc) {
		cfx_writer_free(&o.wr);
		return o.rc;
	}
	cfx_write_u8(&o.wr, 0);
	*out = (char *)o.wr.p;
	*out_len = o.wr.len - 1;
	return 0;
}
