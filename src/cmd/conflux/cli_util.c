/*
 * cli_util.c - what the conflux subcommands share: common options, typed
 * option values, error messages and exit statuses, signals, aligned
 * tables, JSON output, and time, URL, base64 and text helpers.
 *
 * Nothing here talks to a server (http_client.c and rmq_client.c do).
 */
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/conf.h"
#include "cmd/conflux/cli.h"

volatile sig_atomic_t cli_stop;

/* Common options given before the command ("conflux --server X topic list"). */
static struct {
	char server[CLI_ADDR_MAX], grpc[CLI_ADDR_MAX];
	int json;
	int64_t timeout_ms;
} global;

void cli_init(struct cli *c, const char *cmd, const char *usage)
{
	const char *env = getenv("CONFLUX_SERVER");

	memset(c, 0, sizeof *c);
	c->cmd = cmd;
	c->usage = usage;
	snprintf(c->server, sizeof c->server, "%s",
		 global.server[0] ? global.server
		 : env && *env	  ? env
				  : "127.0.0.1:8080");
	snprintf(c->grpc, sizeof c->grpc, "%s", global.grpc);
	c->json = global.json;
	c->timeout_ms = global.timeout_ms ? global.timeout_ms : 10000;
}

int cli_global_options(int argc, char **argv)
{
	struct cli c;
	int i = 1, done = 0;

	cli_init(&c, "", "");
	while (i < argc && !strncmp(argv[i], "--", 2) && strcmp(argv[i], "--help") &&
	       strcmp(argv[i], "--version")) {
		int r = cli_common(&c, argc, argv, &i, &done);
		if (r < 0)
			return -1;
		if (r == 0) {
			fprintf(stderr, "conflux: unknown option %s before the command\n", argv[i]);
			return -1;
		}
	}
	snprintf(global.server, sizeof global.server, "%s", c.server);
	snprintf(global.grpc, sizeof global.grpc, "%s", c.grpc);
	global.json = c.json;
	global.timeout_ms = c.timeout_ms;
	return i - 1;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

int cli_opt(struct cli *c, int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		*i += 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		cli_usage_error(c, "%s needs a value", name);
		return -1;
	}
	*val = argv[*i + 1];
	*i += 2;
	return 1;
}

int cli_flag(char **argv, int *i, const char *name)
{
	if (strcmp(argv[*i], name) != 0)
		return 0;
	*i += 1;
	return 1;
}

int cli_common(struct cli *c, int argc, char **argv, int *i, int *exit_now)
{
	const char *v;
	int r;

	if (!strcmp(argv[*i], "--help") || !strcmp(argv[*i], "-h")) {
		fputs(c->usage, stdout);
		*exit_now = 1;
		*i += 1;
		return 1;
	}
	if (cli_flag(argv, i, "--json")) {
		c->json = 1;
		return 1;
	}
	if ((r = cli_opt(c, argc, argv, i, "--server", &v)) != 0) {
		if (r > 0)
			snprintf(c->server, sizeof c->server, "%s", v);
		return r;
	}
	if ((r = cli_opt(c, argc, argv, i, "--grpc", &v)) != 0) {
		if (r > 0)
			snprintf(c->grpc, sizeof c->grpc, "%s", v);
		return r;
	}
	if ((r = cli_opt(c, argc, argv, i, "--timeout", &v)) != 0) {
		if (r > 0 && cli_duration(c, "--timeout", v, &c->timeout_ms))
			return -1;
		if (r > 0 && c->timeout_ms <= 0) {
			cli_usage_error(c, "--timeout must be positive");
			return -1;
		}
		return r;
	}
	return 0;
}

int cli_int(struct cli *c, const char *what, const char *s, int64_t min, int64_t max, int64_t *out)
{
	int64_t v;

	if (cfx_parse_int(s, &v) || v < min || v > max) {
		cli_usage_error(c, "%s: \"%s\" is not an integer in %lld..%lld", what, s,
				(long long)min, (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_duration(struct cli *c, const char *what, const char *s, int64_t *out_ms)
{
	if (cfx_parse_duration_ms(s, out_ms) || *out_ms < 0) {
		cli_usage_error(c, "%s: \"%s\" is not a duration (e.g. 500ms, 30s, 2m)", what, s);
		return -1;
	}
	return 0;
}

int cli_size(struct cli *c, const char *what, const char *s, int64_t *out)
{
	if (cfx_parse_size(s, out) || *out < 0) {
		cli_usage_error(c, "%s: \"%s\" is not a size (e.g. 100, 1KiB, 4MiB)", what, s);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Errors and signals
 * ------------------------------------------------------------------------ */

int cli_usage_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "conflux%s%s: ", *c->cmd ? " " : "", c->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see conflux%s%s --help)\n", *c->cmd ? " " : "", c->cmd);
	return CLI_EUSAGE;
}

int cli_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "conflux %s: ", c->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_EFAIL;
}

static void on_signal(int sig)
{
	CFX_UNUSED(sig);
	cli_stop = 1;
}

void cli_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocking poll(2) returns EINTR and the loop sees cli_stop. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

void cli_json_print(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));

	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	json_decref(v);
}

#define TABLE_COLS_MAX 16

struct cli_table {
	int ncols;
	char **cells; /* rows * ncols, row 0 = header */
	size_t rows, cap;
};

struct cli_table *cli_table_new(int ncols, const char *const *headers)
{
	struct cli_table *t = cfx_calloc(1, sizeof *t);

	CFX_ASSERT(ncols > 0 && ncols <= TABLE_COLS_MAX);
	t->ncols = ncols;
	if (headers)
		cli_table_add(t, headers);
	return t;
}

void cli_table_add(struct cli_table *t, const char *const *cells)
{
	if (t->rows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = cfx_realloc(t->cells, t->cap * (size_t)t->ncols * sizeof *t->cells);
	}
	for (int i = 0; i < t->ncols; i++)
		t->cells[t->rows * (size_t)t->ncols + (size_t)i] =
			cfx_strdup(cells[i] ? cells[i] : "");
	t->rows++;
}

void cli_table_addf(struct cli_table *t, const char *fmt, ...)
{
	const char *cells[TABLE_COLS_MAX] = {0};
	char buf[4096], *p = buf;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (int i = 0; i < t->ncols; i++) {
		cells[i] = p ? p : "";
		char *tab = p ? strchr(p, '\t') : NULL;
		if (tab)
			*tab = '\0';
		p = tab ? tab + 1 : NULL;
	}
	cli_table_add(t, cells);
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

void cli_table_print(struct cli_table *t, FILE *out)
{
	size_t width[TABLE_COLS_MAX] = {0};

	for (size_t r = 0; r < t->rows; r++)
		for (int i = 0; i < t->ncols; i++)
			width[i] = CFX_MAX(width[i],
					   text_width(t->cells[r * (size_t)t->ncols + (size_t)i]));
	for (size_t r = 0; r < t->rows; r++) {
		for (int i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
			if (i == t->ncols - 1) {
				fputs(s, out); /* no trailing blanks */
				break;
			}
			fprintf(out, "%s%*s", s, (int)(width[i] - text_width(s) + 2), "");
		}
		fputc('\n', out);
	}
	for (size_t k = 0; k < t->rows * (size_t)t->ncols; k++)
		cfx_free(t->cells[k]);
	cfx_free(t->cells);
	cfx_free(t);
}

/* ------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------ */

void cli_format_time(int64_t ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || !gmtime_r(&secs, &tm)) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

int cli_parse_time(const char *s, int64_t *out_ms)
{
	const char *p = s;
	struct tm tm;
	int y, mo, d, h, mi, sec, frac_ms = 0, off_min = 0;
	int64_t v;

	if (cfx_parse_int(s, &v) == 0) {
		if (v < 0)
			return -1;
		*out_ms = v;
		return 0;
	}
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
	    digits(&p, 2, &sec))
		return -1;
	if (*p == '.') {
		int scale = 100;
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac_ms += (*p - '0') * scale;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
			return -1;
		off_min = sign * (oh * 60 + om);
	} else {
		return -1;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	v = (int64_t)timegm(&tm);
	*out_ms = (v - (int64_t)off_min * 60) * 1000 + frac_ms;
	return *out_ms < 0 ? -1 : 0;
}

void cli_format_duration(int64_t ms, char *buf, size_t len)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = {{24 * 3600000LL, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
	size_t at = 0;

	if (ms % 1000 || ms == 0) {
		snprintf(buf, len, "%lldms", (long long)ms);
		return;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < CFX_ARRAY_LEN(units) && ms; i++) {
		if (ms < units[i].ms)
			continue;
		int n = snprintf(buf + at, len - at, "%lld%s", (long long)(ms / units[i].ms),
				 units[i].unit);
		if (n < 0 || (size_t)n >= len - at)
			return;
		at += (size_t)n;
		ms %= units[i].ms;
	}
}

/* ------------------------------------------------------------------------
 * Encodings
 * ------------------------------------------------------------------------ */

char *cli_url_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = cfx_malloc(n * 3 + 1), *o = out;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

char *cli_base64(const void *p, size_t n)
{
	char *out = cfx_malloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

int cli_is_text(const void *data, size_t n)
{
	const unsigned char *p = data, *end = p + n;

	while (p < end) {
		unsigned char ch = *p;
		size_t more;
		uint32_t cp;

		if (ch < 0x80) {
			if ((ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || ch == 0x7f)
				return 0;
			p++;
			continue;
		}
		if ((ch & 0xe0) == 0xc0) {
			more = 1;
			cp = ch & 0x1f;
		} else if ((ch & 0xf0) == 0xe0) {
			more = 2;
			cp = ch & 0x0f;
		} else if ((ch & 0xf8) == 0xf0) {
			more = 3;
			cp = ch & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(end - p) <= more)
			return 0;
		for (size_t k = 1; k <= more; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[k] & 0x3f);
		}
		/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) ||
		    (more == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += more + 1;
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * JSON
 * ------------------------------------------------------------------------ */

const char *cli_json_str(const json_t *o, const char *key, const char *dflt)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : dflt;
}

int64_t cli_json_int(const json_t *o, const char *key, int64_t dflt)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (int64_t)json_real_value(v);
	return dflt;
}

json_t *cli_json_list(json_t *v, const char *key)
{
	if (json_is_array(v))
		return v;
	v = json_object_get(v, key);
	return json_is_array(v) ? v : NULL;
}

char *cli_json_scalar(const char *key, const json_t *v)
{
	char buf[128];
	size_t kl = key ? strlen(key) : 0;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return cfx_strdup(json_string_value(v));
	case JSON_INTEGER:
		/* After 2001-09-09 in ms: a time, not a duration like uptime_ms. */
		if (kl > 3 && !strcmp(key + kl - 3, "_ms") &&
		    json_integer_value(v) > 1000000000000LL)
			cli_format_time(json_integer_value(v), buf, sizeof buf);
		else
			snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
		return cfx_strdup(buf);
	case JSON_REAL:
		snprintf(buf, sizeof buf, "%g", json_real_value(v));
		return cfx_strdup(buf);
	case JSON_TRUE:
		return cfx_strdup("yes");
	case JSON_FALSE:
		return cfx_strdup("no");
	case JSON_NULL:
		return cfx_strdup("-");
	default: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
		char *out = cfx_strdup(s ? s : "?");
		free(s);
		return out;
	}
	}
}

void cli_print_fields(const json_t *obj, FILE *out)
{
	struct cli_table *t;
	const char *key;
	json_t *v;

	if (!json_is_object(obj))
		return;
	t = cli_table_new(2, NULL);
	json_object_foreach((json_t *)obj, key, v)
	{
		if (json_is_array(v) || json_is_object(v))
			continue;
		char *s = cli_json_scalar(key, v);
		const char *cells[2] = {key, s};
		cli_table_add(t, cells);
		cfx_free(s);
	}
	cli_table_print(t, out);
}

int cli_dispatch(const char *cmd, int argc, char **argv, const struct cli_sub *subs, size_t n,
		 const char *usage)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return CLI_EUSAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return CLI_OK;
	}
	for (size_t i = 0; i < n; i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "conflux %s: unknown subcommand \"%s\"\n\n", cmd, argv[1]);
	fputs(usage, stderr);
	return CLI_EUSAGE;
}
