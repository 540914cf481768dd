/*
 * conf.c - the settings engine behind the declarative tables.
 */
#include "base/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

#include "base/err.h"

/* ------------------------------------------------------------------------
 * Unit parsers
 * ------------------------------------------------------------------------ */

int cfx_parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0')
		return CFX_EINVAL;
	if (errno == ERANGE)
		return CFX_ERANGE;
	*out = v;
	return 0;
}

struct unit {
	const char *suffix;
	int64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, int64_t *out)
{
	char *end;
	long long v;

	while (isspace((unsigned char)*s))
		s++;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s)
		return CFX_EINVAL;
	if (errno == ERANGE)
		return CFX_ERANGE;
	while (isspace((unsigned char)*end))
		end++;
	/* Trailing whitespace is ignored after a unit as after a bare number. */
	size_t ulen = strlen(end);
	while (ulen && isspace((unsigned char)end[ulen - 1]))
		ulen--;
	if (ulen == 0) {
		*out = v;
		return 0;
	}
	for (const struct unit *u = units; u->suffix; u++) {
		if (strlen(u->suffix) == ulen && strncasecmp(end, u->suffix, ulen) == 0) {
			if (v != 0 && (v > INT64_MAX / u->mult || v < INT64_MIN / u->mult))
				return CFX_ERANGE;
			*out = v * u->mult;
			return 0;
		}
	}
	return CFX_EINVAL;
}

int cfx_parse_size(const char *s, int64_t *out)
{
	static const struct unit units[] = {
		{ "b", 1 },
		{ "k", 1024 },
		{ "kib", 1024 },
		{ "kb", 1000 },
		{ "m", 1024 * 1024 },
		{ "mib", 1024 * 1024 },
		{ "mb", 1000 * 1000 },
		{ "g", 1024LL * 1024 * 1024 },
		{ "gib", 1024LL * 1024 * 1024 },
		{ "gb", 1000LL * 1000 * 1000 },
		{ "t", 1024LL * 1024 * 1024 * 1024 },
		{ "tib", 1024LL * 1024 * 1024 * 1024 },
		{ "tb", 1000LL * 1000 * 1000 * 1000 },
		{ NULL, 0 },
	};
	return parse_with_units(s, units, out);
}

int cfx_parse_duration_ms(const char *s, int64_t *out)
{
	static const struct unit units[] = {
		{ "ms", 1 },
		{ "s", 1000 },
		{ "m", 60 * 1000 },
		{ "min", 60 * 1000 },
		{ "h", 3600 * 1000 },
		{ "d", 24 * 3600 * 1000 },
		{ NULL, 0 },
	};
	return parse_with_units(s, units, out);
}

int cfx_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < CFX_ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return CFX_EINVAL;
}

/* ------------------------------------------------------------------------
 * Table operations
 * ------------------------------------------------------------------------ */

/* Compares setting names treating '-' and '_' as the same character. */
static int name_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		char x = *a == '-' ? '_' : *a, y = *b == '-' ? '_' : *b;
		if (x != y)
			return 0;
		if (!x)
			return 1;
	}
}

const struct cfx_conf_def *cfx_conf_find(const struct cfx_conf_def *defs, size_t n,
					 const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (name_eq(defs[i].name, name) || (defs[i].cli && name_eq(defs[i].cli, name)))
			return &defs[i];
	return NULL;
}

static void errf(char *err, size_t len, const char *fmt, ...) CFX_PRINTF(3, 4);
static void errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static const char *type_name(enum cfx_conf_type t)
{
	switch (t) {
	case CFX_CONF_BOOL:
		return "bool";
	case CFX_CONF_INT:
		return "integer";
	case CFX_CONF_SIZE:
		return "size";
	case CFX_CONF_DURATION:
		return "duration";
	case CFX_CONF_STRING:
		return "string";
	case CFX_CONF_ENUM:
		return "enum";
	}
	return "?";
}

static int set_value(const struct cfx_conf_def *d, void *obj, const char *value, char *err,
		     size_t err_len)
{
	char *slot = (char *)obj + d->offset;
	int64_t v = 0;
	int rc = 0, b;

	switch (d->type) {
	case CFX_CONF_BOOL:
		rc = cfx_parse_bool(value, &b);
		if (!rc)
			*(int *)slot = b;
		break;
	case CFX_CONF_INT:
		rc = cfx_parse_int(value, &v);
		break;
	case CFX_CONF_SIZE:
		rc = cfx_parse_size(value, &v);
		break;
	case CFX_CONF_DURATION:
		rc = cfx_parse_duration_ms(value, &v);
		break;
	case CFX_CONF_STRING: {
		/* Copy first: `value` may be the current value itself. */
		char *copy = cfx_strdup(value);
		cfx_free(*(char **)slot);
		*(char **)slot = copy;
		return 0;
	}
	case CFX_CONF_ENUM:
		for (int i = 0; d->enum_names[i]; i++)
			if (strcasecmp(d->enum_names[i], value) == 0) {
				*(int *)slot = i;
				return 0;
			}
		rc = CFX_EINVAL;
		break;
	}
	if (rc) {
		errf(err, err_len, "%s: invalid %s value \"%s\"", d->name, type_name(d->type), value);
		return rc;
	}
	if (d->type == CFX_CONF_BOOL)
		return 0;
	if ((d->min || d->max) && (v < d->min || v > d->max)) {
		errf(err, err_len, "%s: value \"%s\" outside [%lld, %lld]", d->name, value,
		     (long long)d->min, (long long)d->max);
		return CFX_ERANGE;
	}
	*(int64_t *)slot = v;
	return 0;
}

int cfx_conf_set(const struct cfx_conf_def *defs, size_t n, void *obj, const char *name,
		 const char *value, char *err, size_t err_len)
{
	const struct cfx_conf_def *d = cfx_conf_find(defs, n, name);

	if (!d) {
		errf(err, err_len, "unknown setting \"%s\"", name);
		return CFX_ENOENT;
	}
	return set_value(d, obj, value, err, err_len);
}

int cfx_conf_defaults(const struct cfx_conf_def *defs, size_t n, void *obj)
{
	for (size_t i = 0; i < n; i++) {
		if (defs[i].type == CFX_CONF_STRING)
			*(char **)((char *)obj + defs[i].offset) = NULL;
		int rc = set_value(&defs[i], obj, defs[i].def, NULL, 0);
		if (rc)
			return rc;
	}
	return 0;
}

static char *trim(char *s)
{
	char *e;
	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int cfx_conf_load_file(const struct cfx_conf_def *defs, size_t n, void *obj, const char *path,
		       char *err, size_t err_len)
{
	char line[4096], sub[512];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		errf(err, err_len, "%s: %s", path, strerror(errno));
		return cfx_err_from_errno(errno);
	}
	while (fgets(line, sizeof line, f)) {
		char *s, *eq, *key, *val;
		size_t len = strlen(line);

		lineno++;
		if (len == sizeof line - 1 && line[len - 1] != '\n') {
			errf(err, err_len, "%s:%d: line too long", path, lineno);
			rc = CFX_EINVAL;
			break;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			errf(err, err_len, "%s:%d: expected \"key = value\"", path, lineno);
			rc = CFX_EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		len = strlen(val);
		if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
			val[len - 1] = '\0';
			val++;
		}
		rc = cfx_conf_set(defs, n, obj, key, val, sub, sizeof sub);
		if (rc) {
			errf(err, err_len, "%s:%d: %s", path, lineno, sub);
			break;
		}
	}
	fclose(f);
	return rc;
}

void cfx_conf_format(const struct cfx_conf_def *d, const void *obj, char *buf, size_t len)
{
	const char *slot = (const char *)obj + d->offset;

	switch (d->type) {
	case CFX_CONF_BOOL:
		snprintf(buf, len, "%s", *(const int *)slot ? "true" : "false");
		break;
	case CFX_CONF_INT:
	case CFX_CONF_SIZE:
	case CFX_CONF_DURATION:
		snprintf(buf, len, "%lld", (long long)*(const int64_t *)slot);
		break;
	case CFX_CONF_STRING:
		snprintf(buf, len, "%s", *(char *const *)slot ? *(char *const *)slot : "");
		break;
	case CFX_CONF_ENUM:
		snprintf(buf, len, "%s", d->enum_names[*(const int *)slot]);
		break;
	}
}

static void print_enum_names(const struct cfx_conf_def *d, FILE *out)
{
	for (int i = 0; d->enum_names[i]; i++)
		fprintf(out, "%s%s", i ? "|" : "", d->enum_names[i]);
}

void cfx_conf_print_help(const struct cfx_conf_def *defs, size_t n, FILE *out)
{
	for (size_t i = 0; i < n; i++) {
		const struct cfx_conf_def *d = &defs[i];
		fprintf(out, "  --%s", d->name);
		if (d->cli)
			fprintf(out, ", --%s", d->cli);
		fprintf(out, " <");
		if (d->type == CFX_CONF_ENUM)
			print_enum_names(d, out);
		else
			fprintf(out, "%s", type_name(d->type));
		fprintf(out, ">  (default: %s)\n      %s\n", *d->def ? d->def : "\"\"", d->help);
	}
}

void cfx_conf_print_markdown(const struct cfx_conf_def *defs, size_t n, FILE *out)
{
	fprintf(out, "| setting | type | default | range | reload | description |\n");
	fprintf(out, "|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		const struct cfx_conf_def *d = &defs[i];
		fprintf(out, "| `%s` | ", d->name);
		if (d->type == CFX_CONF_ENUM)
			print_enum_names(d, out);
		else
			fprintf(out, "%s", type_name(d->type));
		fprintf(out, " | `%s` | ", d->def);
		if (d->min || d->max)
			fprintf(out, "%lld – %lld", (long long)d->min, (long long)d->max);
		fprintf(out, " | %s | %s |\n", (d->flags & CFX_CONF_RELOADABLE) ? "yes" : "no",
			d->help);
	}
}

void cfx_conf_free(const struct cfx_conf_def *defs, size_t n, void *obj)
{
	for (size_t i = 0; i < n; i++)
		if (defs[i].type == CFX_CONF_STRING)
			CFX_FREE(*(char **)((char *)obj + defs[i].offset));
}
