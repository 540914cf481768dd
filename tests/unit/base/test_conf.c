/* Unit tests for src/base/conf.c: unit parsers and the declarative settings engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "base/conf.h"
#include "base/err.h"

/* ------------------------------------------------------------------------
 * Unit parsers
 * ------------------------------------------------------------------------ */

#define KiB (1024LL)
#define MiB (1024LL * KiB)
#define GiB (1024LL * MiB)
#define TiB (1024LL * GiB)

struct num_case {
	const char *s;
	int rc;
	int64_t v; /* only when rc == 0 */
};

/* Runs `parse` over `cases`; on failure the output must be left untouched. */
static void check_num_cases(int (*parse)(const char *, int64_t *), const struct num_case *cases,
			    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t v = 0x5a5a5a5a;
		int rc = parse(cases[i].s, &v);

		if (rc != cases[i].rc)
			fail_msg("\"%s\": rc %s, expected %s", cases[i].s, cfx_err_name(rc),
				 cfx_err_name(cases[i].rc));
		if (rc == 0 && v != cases[i].v)
			fail_msg("\"%s\": %lld, expected %lld", cases[i].s, (long long)v,
				 (long long)cases[i].v);
		if (rc != 0 && v != 0x5a5a5a5a)
			fail_msg("\"%s\": output written on failure", cases[i].s);
	}
}

static void test_parse_size(void **state)
{
	static const struct num_case cases[] = {
		{ "0", 0, 0 },
		{ "512", 0, 512 },
		{ "1b", 0, 1 },
		{ "7B", 0, 7 },
		{ "1k", 0, KiB },
		{ "64KiB", 0, 64 * KiB },
		{ "64kib", 0, 64 * KiB },
		{ "64KIB", 0, 64 * KiB },
		{ "1KB", 0, 1000 },
		{ "3m", 0, 3 * MiB },
		{ "1MiB", 0, MiB },
		{ "1MB", 0, 1000 * 1000 },
		{ "2g", 0, 2 * GiB },
		{ "1GiB", 0, GiB },
		{ "1GB", 0, 1000LL * 1000 * 1000 },
		{ "1t", 0, TiB },
		{ "5TiB", 0, 5 * TiB },
		{ "1TB", 0, 1000LL * 1000 * 1000 * 1000 },
		{ "+16KiB", 0, 16 * KiB },
		/* Whitespace around the number and between number and unit. */
		{ "  64KiB", 0, 64 * KiB },
		{ "64 KiB", 0, 64 * KiB },
		{ "\t64\tKiB", 0, 64 * KiB },
		{ "64 ", 0, 64 },
		{ "64KiB ", 0, 64 * KiB },
		{ " 1 MiB \n", 0, MiB },
		/* Range of int64 exactly, then one past it. */
		{ "9223372036854775807", 0, INT64_MAX },
		{ "9223372036854775807b", 0, INT64_MAX },
		{ "9223372036854775808", CFX_ERANGE, 0 },
		{ "99999999999999999999KiB", CFX_ERANGE, 0 },
		{ "8388607TiB", 0, 8388607LL * TiB },
		{ "8388608TiB", CFX_ERANGE, 0 },
		{ "9007199254740991KiB", 0, 9007199254740991LL * KiB },
		{ "9007199254740992KiB", CFX_ERANGE, 0 },
		{ "9223372036854776TB", CFX_ERANGE, 0 },
		{ "-8388609TiB", CFX_ERANGE, 0 },
		/* Garbage. */
		{ "", CFX_EINVAL, 0 },
		{ "   ", CFX_EINVAL, 0 },
		{ "KiB", CFX_EINVAL, 0 },
		{ "abc", CFX_EINVAL, 0 },
		{ "1.5MiB", CFX_EINVAL, 0 },
		{ "1 2", CFX_EINVAL, 0 },
		{ "1PiB", CFX_EINVAL, 0 },
		{ "1KiBs", CFX_EINVAL, 0 },
		{ "1 Ki B", CFX_EINVAL, 0 },
		{ "0x10", CFX_EINVAL, 0 },
		{ "1ms", CFX_EINVAL, 0 },
		{ "1e3", CFX_EINVAL, 0 },
	};
	(void)state;
	check_num_cases(cfx_parse_size, cases, CFX_ARRAY_LEN(cases));
}

static void test_parse_duration(void **state)
{
	static const struct num_case cases[] = {
		{ "0", 0, 0 },
		{ "42", 0, 42 }, /* a bare number is milliseconds */
		{ "250ms", 0, 250 },
		{ "250MS", 0, 250 },
		{ "5s", 0, 5000 },
		{ "10m", 0, 600000 },
		{ "10min", 0, 600000 },
		{ "3h", 0, 3 * 3600 * 1000LL },
		{ "3d", 0, 3 * 86400 * 1000LL },
		{ "3650d", 0, 3650 * 86400 * 1000LL },
		{ " 5 s ", 0, 5000 },
		{ "5s\t", 0, 5000 },
		{ "  7", 0, 7 },
		{ "106751991167d", 0, 106751991167LL * 86400 * 1000 },
		{ "106751991168d", CFX_ERANGE, 0 },
		{ "2562047788015215h", CFX_ERANGE, 0 },
		{ "99999999999999999999", CFX_ERANGE, 0 },
		{ "", CFX_EINVAL, 0 },
		{ "s", CFX_EINVAL, 0 },
		{ "5x", CFX_EINVAL, 0 },
		{ "5 sec", CFX_EINVAL, 0 },
		{ "5w", CFX_EINVAL, 0 },
		{ "1.5s", CFX_EINVAL, 0 },
		{ "5KiB", CFX_EINVAL, 0 },
		{ "-", CFX_EINVAL, 0 },
	};
	(void)state;
	check_num_cases(cfx_parse_duration_ms, cases, CFX_ARRAY_LEN(cases));
}

static void test_parse_int(void **state)
{
	static const struct num_case cases[] = {
		{ "0", 0, 0 },
		{ "42", 0, 42 },
		{ "-42", 0, -42 },
		{ "+7", 0, 7 },
		{ " 42", 0, 42 },
		{ "9223372036854775807", 0, INT64_MAX },
		{ "-9223372036854775808", 0, INT64_MIN },
		{ "9223372036854775808", CFX_ERANGE, 0 },
		{ "-9223372036854775809", CFX_ERANGE, 0 },
		{ "", CFX_EINVAL, 0 },
		{ "x", CFX_EINVAL, 0 },
		{ "42x", CFX_EINVAL, 0 },
		{ "4 2", CFX_EINVAL, 0 },
		{ "1k", CFX_EINVAL, 0 }, /* units belong to sizes only */
		{ "1.0", CFX_EINVAL, 0 },
		{ "0x10", CFX_EINVAL, 0 },
	};
	(void)state;
	check_num_cases(cfx_parse_int, cases, CFX_ARRAY_LEN(cases));
}

static void test_parse_bool(void **state)
{
	static const char *const yes[] = { "true", "TRUE", "True", "yes", "YES", "on", "On", "1" };
	static const char *const no[] = { "false", "FALSE", "no", "No", "off", "OFF", "0" };
	static const char *const bad[] = { "", "2", "-1", "tru", "truex", "y", "n", "enable",
					   "10", "0x1", "onn" };
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(yes); i++) {
		int b = -1;
		assert_int_equal(cfx_parse_bool(yes[i], &b), 0);
		assert_int_equal(b, 1);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(no); i++) {
		int b = -1;
		assert_int_equal(cfx_parse_bool(no[i], &b), 0);
		assert_int_equal(b, 0);
	}
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad); i++) {
		int b = -1;
		if (cfx_parse_bool(bad[i], &b) != CFX_EINVAL)
			fail_msg("\"%s\" accepted as a bool", bad[i]);
		assert_int_equal(b, -1);
	}
}

/* ------------------------------------------------------------------------
 * A small settings table of our own
 * ------------------------------------------------------------------------ */

struct opts {
	int verbose;
	int64_t count;	  /* 1..100 */
	int64_t delta;	  /* any integer */
	int64_t buf_bytes; /* 1KiB..1GiB */
	int64_t wait_ms;
	char *name;
	char *label; /* default "" */
	int mode;
};

static const char *const modes[] = { "fast", "slow", "auto", NULL };

#define OFF(f) offsetof(struct opts, f)

static const struct cfx_conf_def defs[] = {
	{ "verbose", NULL, CFX_CONF_BOOL, OFF(verbose), "false", 0, 0, NULL, CFX_CONF_RELOADABLE,
	  "Log more." },
	{ "core.count", "count", CFX_CONF_INT, OFF(count), "10", 1, 100, NULL, 0,
	  "How many workers." },
	{ "core.delta", NULL, CFX_CONF_INT, OFF(delta), "-3", 0, 0, NULL, 0, "An offset." },
	{ "net.buf_bytes", "buf-size", CFX_CONF_SIZE, OFF(buf_bytes), "64KiB", 1 * KiB, 1 * GiB,
	  NULL, 0, "Socket buffer size." },
	{ "net.wait_time", NULL, CFX_CONF_DURATION, OFF(wait_ms), "5s", 0, 0, NULL,
	  CFX_CONF_RELOADABLE, "How long to wait." },
	{ "name", "node-name", CFX_CONF_STRING, OFF(name), "node-1", 0, 0, NULL, 0,
	  "Name of this node." },
	{ "label", NULL, CFX_CONF_STRING, OFF(label), "", 0, 0, NULL, 0, "Free text." },
	{ "mode", NULL, CFX_CONF_ENUM, OFF(mode), "slow", 0, 0, modes, 0, "Speed." },
};

#define NDEFS CFX_ARRAY_LEN(defs)

static int setup(void **state)
{
	struct opts *o = cfx_calloc(1, sizeof *o);
	if (cfx_conf_defaults(defs, NDEFS, o) != 0)
		return -1;
	*state = o;
	return 0;
}

static int teardown(void **state)
{
	struct opts *o = *state;
	cfx_conf_free(defs, NDEFS, o);
	cfx_free(o);
	return 0;
}

static void test_defaults(void **state)
{
	struct opts *o = *state;

	assert_int_equal(o->verbose, 0);
	assert_int_equal(o->count, 10);
	assert_int_equal(o->delta, -3);
	assert_int_equal(o->buf_bytes, 64 * KiB);
	assert_int_equal(o->wait_ms, 5000);
	assert_string_equal(o->name, "node-1");
	assert_non_null(o->label);
	assert_string_equal(o->label, "");
	assert_int_equal(o->mode, 1);
}

/* A table whose default does not parse, or is out of its own range, is refused. */
static void test_defaults_invalid(void **state)
{
	struct opts o;
	struct cfx_conf_def bad[2];
	(void)state;

	memcpy(bad, defs, sizeof bad); /* verbose, core.count */
	bad[1].def = "ten";
	memset(&o, 0, sizeof o);
	assert_int_equal(cfx_conf_defaults(bad, 2, &o), CFX_EINVAL);
	bad[1].def = "1000";
	assert_int_not_equal(cfx_conf_defaults(bad, 2, &o), 0);
	bad[0].def = "maybe";
	assert_int_equal(cfx_conf_defaults(bad, 1, &o), CFX_EINVAL);
}

static void test_find(void **state)
{
	(void)state;
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "core.count"), &defs[1]);
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "count"), &defs[1]);
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "net.buf_bytes"), &defs[3]);
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "net.buf-bytes"), &defs[3]);
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "buf-size"), &defs[3]);
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "buf_size"), &defs[3]);
	assert_ptr_equal(cfx_conf_find(defs, NDEFS, "node_name"), &defs[5]);
	/* Only '-' and '_' are interchangeable; case and '.' matter; no prefixes. */
	assert_null(cfx_conf_find(defs, NDEFS, "Count"));
	assert_null(cfx_conf_find(defs, NDEFS, "net_buf_bytes"));
	assert_null(cfx_conf_find(defs, NDEFS, "core.coun"));
	assert_null(cfx_conf_find(defs, NDEFS, "core.counts"));
	assert_null(cfx_conf_find(defs, NDEFS, ""));
	assert_null(cfx_conf_find(defs, NDEFS, "nope"));
	assert_null(cfx_conf_find(defs, 0, "verbose"));
}

static void test_set_by_name_and_cli(void **state)
{
	struct opts *o = *state;
	char err[256];

	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "core.count", "42", err, sizeof err), 0);
	assert_int_equal(o->count, 42);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "7", err, sizeof err), 0);
	assert_int_equal(o->count, 7);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf-size", "2MiB", err, sizeof err), 0);
	assert_int_equal(o->buf_bytes, 2 * MiB);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf_size", "3 KiB", err, sizeof err), 0);
	assert_int_equal(o->buf_bytes, 3 * KiB);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "net.buf-bytes", "4096", err, sizeof err), 0);
	assert_int_equal(o->buf_bytes, 4096);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "net.wait-time", "2m", err, sizeof err), 0);
	assert_int_equal(o->wait_ms, 120000);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "verbose", "on", err, sizeof err), 0);
	assert_int_equal(o->verbose, 1);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "verbose", "no", err, sizeof err), 0);
	assert_int_equal(o->verbose, 0);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "core.delta", "-9000", err, sizeof err), 0);
	assert_int_equal(o->delta, -9000);
	/* Other fields are untouched. */
	assert_int_equal(o->count, 7);
	assert_string_equal(o->name, "node-1");
	assert_int_equal(o->mode, 1);
}

static void test_set_unknown(void **state)
{
	struct opts *o = *state;
	char err[256];

	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "no.such", "1", err, sizeof err),
			 CFX_ENOENT);
	assert_non_null(strstr(err, "unknown setting"));
	assert_non_null(strstr(err, "no.such"));
	/* err may be NULL or empty. */
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "no.such", "1", NULL, 0), CFX_ENOENT);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "no.such", "1", err, 0), CFX_ENOENT);
}

static void test_set_invalid_and_range(void **state)
{
	struct opts *o = *state;
	char err[256];

	err[0] = '\0';
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "abc", err, sizeof err), CFX_EINVAL);
	assert_non_null(strstr(err, "core.count")); /* the canonical name, not the spelling */
	assert_non_null(strstr(err, "abc"));
	assert_int_equal(o->count, 10);

	/* Inclusive bounds. */
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "1", err, sizeof err), 0);
	assert_int_equal(o->count, 1);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "100", err, sizeof err), 0);
	assert_int_equal(o->count, 100);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "0", err, sizeof err), CFX_ERANGE);
	assert_non_null(strstr(err, "core.count"));
	assert_non_null(strstr(err, "[1, 100]"));
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "101", err, sizeof err),
			 CFX_ERANGE);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "count", "-5", err, sizeof err), CFX_ERANGE);
	assert_int_equal(o->count, 100);

	/* Size bounds are in bytes, whatever the unit. */
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf-size", "1023", err, sizeof err),
			 CFX_ERANGE);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf-size", "1KiB", err, sizeof err), 0);
	assert_int_equal(o->buf_bytes, KiB);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf-size", "1GiB", err, sizeof err), 0);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf-size", "1025MiB", err, sizeof err),
			 CFX_ERANGE);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "buf-size", "1TiB", err, sizeof err),
			 CFX_ERANGE);
	assert_int_equal(o->buf_bytes, GiB);
	/* An overflowing value is a range error too. */
	assert_int_equal(
		cfx_conf_set(defs, NDEFS, o, "buf-size", "99999999999TiB", err, sizeof err),
		CFX_ERANGE);
	assert_int_equal(o->buf_bytes, GiB);

	/* No range (0, 0) means any value. */
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "core.delta", "-9223372036854775808", err,
				      sizeof err),
			 0);
	assert_true(o->delta == INT64_MIN);

	/* Bad bool and duration leave the values alone. */
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "verbose", "sometimes", err, sizeof err),
			 CFX_EINVAL);
	assert_non_null(strstr(err, "bool"));
	assert_int_equal(o->verbose, 0);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "net.wait_time", "soon", err, sizeof err),
			 CFX_EINVAL);
	assert_non_null(strstr(err, "duration"));
	assert_int_equal(o->wait_ms, 5000);
}

static void test_set_enum(void **state)
{
	struct opts *o = *state;
	char err[256];

	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "mode", "fast", err, sizeof err), 0);
	assert_int_equal(o->mode, 0);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "mode", "AUTO", err, sizeof err), 0);
	assert_int_equal(o->mode, 2);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "mode", "medium", err, sizeof err),
			 CFX_EINVAL);
	assert_non_null(strstr(err, "mode"));
	assert_non_null(strstr(err, "medium"));
	assert_int_equal(o->mode, 2);
	/* An index is not a name. */
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "mode", "0", err, sizeof err), CFX_EINVAL);
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "mode", "", err, sizeof err), CFX_EINVAL);
	assert_int_equal(o->mode, 2);
}

/* Replacing a string frees the old copy (LeakSanitizer checks) and copies the new one. */
static void test_set_string_replacement(void **state)
{
	struct opts *o = *state;
	char err[256], value[32], want[32];

	for (int i = 0; i < 50; i++) {
		snprintf(value, sizeof value, "node-%d", i);
		snprintf(want, sizeof want, "node-%d", i);
		assert_int_equal(cfx_conf_set(defs, NDEFS, o, "node-name", value, err, sizeof err),
				 0);
		/* The setting owns a copy: changing the caller's buffer changes nothing. */
		assert_ptr_not_equal(o->name, value);
		memset(value, 'x', sizeof value - 1);
		assert_string_equal(o->name, want);
	}
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "label", "", err, sizeof err), 0);
	assert_string_equal(o->label, "");
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "label", "a = b # c", err, sizeof err), 0);
	assert_string_equal(o->label, "a = b # c");
}

/* Setting a string to its own current value (value aliases the slot) must work. */
static void test_set_string_to_itself(void **state)
{
	struct opts *o = *state;
	char err[256];

	assert_int_equal(cfx_conf_set(defs, NDEFS, o, "name", o->name, err, sizeof err), 0);
	assert_string_equal(o->name, "node-1");
}

static void test_free_clears(void **state)
{
	struct opts *o = *state;

	cfx_conf_free(defs, NDEFS, o);
	assert_null(o->name);
	assert_null(o->label);
	/* A second free is harmless (teardown does one more). */
	cfx_conf_free(defs, NDEFS, o);
}

static void test_format(void **state)
{
	struct opts *o = *state;
	char buf[64];

	cfx_conf_format(&defs[0], o, buf, sizeof buf);
	assert_string_equal(buf, "false");
	o->verbose = 1;
	cfx_conf_format(&defs[0], o, buf, sizeof buf);
	assert_string_equal(buf, "true");
	cfx_conf_format(&defs[1], o, buf, sizeof buf);
	assert_string_equal(buf, "10");
	cfx_conf_format(&defs[2], o, buf, sizeof buf);
	assert_string_equal(buf, "-3");
	cfx_conf_format(&defs[3], o, buf, sizeof buf); /* sizes in bytes */
	assert_string_equal(buf, "65536");
	cfx_conf_format(&defs[4], o, buf, sizeof buf); /* durations in ms */
	assert_string_equal(buf, "5000");
	cfx_conf_format(&defs[5], o, buf, sizeof buf);
	assert_string_equal(buf, "node-1");
	cfx_conf_format(&defs[7], o, buf, sizeof buf);
	assert_string_equal(buf, "slow");

	/* A NULL string formats as empty. */
	CFX_FREE(o->label);
	cfx_conf_format(&defs[6], o, buf, sizeof buf);
	assert_string_equal(buf, "");

	/* Truncated into a small buffer, still terminated. */
	o->delta = INT64_MIN;
	cfx_conf_format(&defs[2], o, buf, 5);
	assert_string_equal(buf, "-922");

	/* The formatted value parses back to the same value. */
	char err[128];
	o->buf_bytes = 12345 * KiB;
	cfx_conf_format(&defs[3], o, buf, sizeof buf);
	o->buf_bytes = 0;
	assert_int_equal(cfx_conf_set(defs, NDEFS, o, defs[3].name, buf, err, sizeof err), 0);
	assert_int_equal(o->buf_bytes, 12345 * KiB);
}

/* ------------------------------------------------------------------------
 * Config files
 * ------------------------------------------------------------------------ */

/* Writes `text` to a new temporary file; returns its path (free with cfx_free). */
static char *write_tmp(const char *text)
{
	char tmpl[] = "/tmp/cfx-conf-XXXXXX";
	int fd = mkstemp(tmpl);
	size_t len = strlen(text);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return cfx_strdup(tmpl);
}

static int load_text(struct opts *o, const char *text, char *err, size_t err_len)
{
	char *path = write_tmp(text);
	int rc = cfx_conf_load_file(defs, NDEFS, o, path, err, err_len);
	unlink(path);
	cfx_free(path);
	return rc;
}

static void test_load_file(void **state)
{
	struct opts *o = *state;
	char err[256] = "";
	static const char text[] = "# a comment\n"
				   "\n"
				   "   # an indented comment\n"
				   "verbose = yes\n"
				   "core.count=33\n"
				   "  net.buf-bytes   =   8 MiB  \n"
				   "net.wait_time = \"10s\"\n"
				   "node-name = \"  spaced out  \"\n"
				   "label = a=b\n"
				   "mode = AUTO\r\n"
				   "\t\n"
				   "core.delta = 12"; /* last line without a newline */

	assert_int_equal(load_text(o, text, err, sizeof err), 0);
	assert_int_equal(o->verbose, 1);
	assert_int_equal(o->count, 33);
	assert_int_equal(o->buf_bytes, 8 * MiB);
	assert_int_equal(o->wait_ms, 10000);
	assert_string_equal(o->name, "  spaced out  ");
	assert_string_equal(o->label, "a=b");
	assert_int_equal(o->mode, 2);
	assert_int_equal(o->delta, 12);
}

static void test_load_file_quotes(void **state)
{
	struct opts *o = *state;
	char err[256];

	/* "" is an empty string; a lone quote or an unbalanced one is kept as text. */
	assert_int_equal(load_text(o, "label = \"\"\n", err, sizeof err), 0);
	assert_string_equal(o->label, "");
	assert_int_equal(load_text(o, "label = \"\n", err, sizeof err), 0);
	assert_string_equal(o->label, "\"");
	assert_int_equal(load_text(o, "label = \"abc\n", err, sizeof err), 0);
	assert_string_equal(o->label, "\"abc");
	assert_int_equal(load_text(o, "label = \"# not a comment\"\n", err, sizeof err), 0);
	assert_string_equal(o->label, "# not a comment");
	/* Later lines win. */
	assert_int_equal(load_text(o, "count = 2\ncount = 3\n", err, sizeof err), 0);
	assert_int_equal(o->count, 3);
	/* An empty file changes nothing. */
	assert_int_equal(load_text(o, "", err, sizeof err), 0);
	assert_int_equal(o->count, 3);
}

static void test_load_file_unknown_key(void **state)
{
	struct opts *o = *state;
	char err[256] = "";

	assert_int_equal(load_text(o, "verbose = 1\n# x\nbogus = 5\ncount = 50\n", err, sizeof err),
			 CFX_ENOENT);
	assert_non_null(strstr(err, ":3:"));
	assert_non_null(strstr(err, "bogus"));
	/* Loading stops at the error. */
	assert_int_equal(o->count, 10);
}

static void test_load_file_missing_equals(void **state)
{
	struct opts *o = *state;
	char err[256] = "";

	assert_int_equal(load_text(o, "count = 5\nverbose true\n", err, sizeof err), CFX_EINVAL);
	assert_non_null(strstr(err, ":2:"));
	assert_non_null(strstr(err, "key = value"));
}

static void test_load_file_bad_values(void **state)
{
	struct opts *o = *state;
	char err[256] = "";

	assert_int_equal(load_text(o, "\n\ncount = 500\n", err, sizeof err), CFX_ERANGE);
	assert_non_null(strstr(err, ":3:"));
	assert_non_null(strstr(err, "core.count"));
	assert_int_equal(o->count, 10);

	assert_int_equal(load_text(o, "mode = turbo\n", err, sizeof err), CFX_EINVAL);
	assert_non_null(strstr(err, ":1:"));
	assert_non_null(strstr(err, "turbo"));
	/* "= value" has an empty key: unknown. */
	assert_int_equal(load_text(o, "= 5\n", err, sizeof err), CFX_ENOENT);
}

static void test_load_file_long_line(void **state)
{
	struct opts *o = *state;
	char err[256] = "";
	size_t n = 6000;
	char *text = cfx_malloc(n + 64);

	memcpy(text, "count = 5\nlabel = ", 18);
	memset(text + 18, 'z', n);
	strcpy(text + 18 + n, "\ncount = 6\n");
	assert_int_equal(load_text(o, text, err, sizeof err), CFX_EINVAL);
	assert_non_null(strstr(err, ":2:"));
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(o->count, 5);
	/* The tail of the long line is not taken for a line of its own. */
	assert_string_equal(o->label, "");

	/* A line just under the limit is fine. */
	memcpy(text, "label = ", 8);
	memset(text + 8, 'y', 4000);
	strcpy(text + 8 + 4000, "\n");
	assert_int_equal(load_text(o, text, err, sizeof err), 0);
	assert_int_equal(strlen(o->label), 4000);
	cfx_free(text);
}

static void test_load_file_missing(void **state)
{
	struct opts *o = *state;
	char err[256] = "";

	assert_int_equal(cfx_conf_load_file(defs, NDEFS, o, "/tmp/cfx-no-such-dir/none.conf", err,
					    sizeof err),
			 CFX_ENOENT);
	assert_non_null(strstr(err, "/tmp/cfx-no-such-dir/none.conf"));
	assert_int_equal(cfx_conf_load_file(defs, NDEFS, o, "/tmp/cfx-no-such-dir/none.conf", NULL,
					    0),
			 CFX_ENOENT);
}

/* ------------------------------------------------------------------------
 * Help and docs
 * ------------------------------------------------------------------------ */

/* Runs `print` into memory; returns a malloc'd string. */
static char *capture(void (*print)(const struct cfx_conf_def *, size_t, FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	print(defs, NDEFS, f);
	fclose(f);
	assert_non_null(buf);
	return buf;
}

/* Returns the line of `text` that contains `needle` (static copy), or fails. */
static const char *line_with(const char *text, const char *needle)
{
	static char line[1024];
	const char *p = strstr(text, needle), *b, *e;

	if (!p)
		fail_msg("\"%s\" not found in:\n%s", needle, text);
	for (b = p; b > text && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	if (!e)
		e = p + strlen(p);
	snprintf(line, sizeof line, "%.*s", (int)(e - b), b);
	return line;
}

static void test_print_help(void **state)
{
	char *out = capture(cfx_conf_print_help);
	(void)state;

	assert_non_null(strstr(line_with(out, "--core.count"), "--count"));
	assert_non_null(strstr(line_with(out, "--core.count"), "<integer>"));
	assert_non_null(strstr(line_with(out, "--core.count"), "(default: 10)"));
	assert_non_null(strstr(out, "How many workers."));
	assert_non_null(strstr(line_with(out, "--net.buf_bytes"), "--buf-size <size>"));
	assert_non_null(strstr(line_with(out, "--net.buf_bytes"), "(default: 64KiB)"));
	assert_non_null(strstr(line_with(out, "--net.wait_time"), "<duration>"));
	assert_non_null(strstr(line_with(out, "--verbose"), "<bool>"));
	assert_non_null(strstr(line_with(out, "--name"), "--node-name <string>"));
	assert_non_null(strstr(line_with(out, "--mode"), "<fast|slow|auto>"));
	/* An empty default is shown as "". */
	assert_non_null(strstr(line_with(out, "--label"), "(default: \"\")"));
	/* Every setting appears once, in table order. */
	const char *prev = out;
	for (size_t i = 0; i < NDEFS; i++) {
		char opt[64];
		snprintf(opt, sizeof opt, "  --%s ", defs[i].name);
		const char *at = strstr(out, opt);
		if (!at && defs[i].cli) {
			snprintf(opt, sizeof opt, "  --%s,", defs[i].name);
			at = strstr(out, opt);
		}
		assert_non_null(at);
		assert_true(at >= prev);
		prev = at;
	}
	free(out);
}

static void test_print_markdown(void **state)
{
	char *out = capture(cfx_conf_print_markdown);
	const char *l;
	(void)state;

	static const char head[] = "| setting | type | default | range | reload | description |\n";

	assert_memory_equal(out, head, sizeof head - 1);
	assert_non_null(strstr(out, "|---|---|---|---|---|---|\n"));
	l = line_with(out, "`core.count`");
	assert_non_null(strstr(l, "| integer |"));
	assert_non_null(strstr(l, "`10`"));
	assert_non_null(strstr(l, "1 – 100"));
	assert_non_null(strstr(l, "| no |"));
	assert_non_null(strstr(l, "How many workers."));
	l = line_with(out, "`net.buf_bytes`");
	assert_non_null(strstr(l, "| size |"));
	assert_non_null(strstr(l, "1024 – 1073741824"));
	l = line_with(out, "`net.wait_time`");
	assert_non_null(strstr(l, "| duration |"));
	assert_non_null(strstr(l, "| yes |"));
	assert_null(strstr(l, "–")); /* no range shown for (0, 0) */
	l = line_with(out, "`mode`");
	assert_non_null(strstr(l, "fast|slow|auto"));
	assert_non_null(strstr(l, "`slow`"));
	/* One row per setting plus the two header rows. */
	size_t lines = 0;
	for (const char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, NDEFS + 2);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_int),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test(test_defaults_invalid),
		cmocka_unit_test(test_find),
		cmocka_unit_test_setup_teardown(test_set_by_name_and_cli, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_invalid_and_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_enum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_string_replacement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_string_to_itself, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_clears, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file_quotes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file_unknown_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file_missing_equals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file_long_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file_missing, setup, teardown),
		cmocka_unit_test(test_print_help),
		cmocka_unit_test(test_print_markdown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
