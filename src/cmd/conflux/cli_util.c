/*
 * cli_util.c - what the conflux subcommands share: common options, typed
 * option values, sign-in credentials and password prompts, error messages
 * and exit statuses, signals, aligned tables, JSON output, and time, URL,
 * base64 and text helpers.
 *
 * Nothing here talks to a server (http_client.c and rmq_client.c do).
 * Secrets (passwords, tokens) are never printed; the copies this file
 * makes are wiped when they are no longer needed, and the argv strings
 * they came from are blanked so that ps(1) does not show them.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/conf.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/rmq_client.h"

volatile sig_atomic_t cli_stop;

/* Common options given before the command ("conflux --server X topic list"). */
static struct {
	char server[CLI_ADDR_MAX], grpc[CLI_ADDR_MAX];
	int json;
	int64_t timeout_ms;
	struct cli_creds creds;
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
	c->creds = global.creds;
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
	global.creds = c.creds;
	cli_wipe(&c.creds, sizeof c.creds);
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

/*
 * A user name goes into "user:password" of Basic credentials: no ':' and
 * no control characters (the server checks the rest of its syntax).
 */
static int check_user(struct cli *c, const char *what, const char *u)
{
	size_t n = strlen(u);

	if (n == 0 || n > CLI_USER_MAX || strchr(u, ':')) {
		cli_usage_error(c, "%s: a user name is 1 to %d characters, without ':'", what,
				CLI_USER_MAX);
		return -1;
	}
	for (const char *p = u; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			cli_usage_error(c, "%s: the user name has a control character", what);
			return -1;
		}
	return 0;
}

/* A token goes into a header as it is: visible ASCII only. */
static int check_token(struct cli *c, const char *what, const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > CLI_TOKEN_MAX) {
		cli_usage_error(c, "%s: a token is 1 to %d characters", what, CLI_TOKEN_MAX);
		return -1;
	}
	for (const char *p = t; *p; p++)
		if (*p <= ' ' || *p > '~') {
			cli_usage_error(c, "%s: a token has only visible ASCII characters", what);
			return -1;
		}
	return 0;
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
	if ((r = cli_opt(c, argc, argv, i, "--user", &v)) != 0) {
		if (r > 0 && check_user(c, "--user", v))
			return -1;
		if (r > 0)
			snprintf(c->creds.user, sizeof c->creds.user, "%s", v);
		return r;
	}
	if ((r = cli_opt(c, argc, argv, i, "--password", &v)) != 0) {
		if (r > 0) {
			if (strlen(v) > CLI_PASSWORD_MAX) {
				cli_usage_error(c, "--password: longer than %d bytes",
						CLI_PASSWORD_MAX);
				return -1;
			}
			snprintf(c->creds.password, sizeof c->creds.password, "%s", v);
			c->creds.password_given = 1;
			cli_wipe((char *)v, strlen(v));
		}
		return r;
	}
	if ((r = cli_opt(c, argc, argv, i, "--password-file", &v)) != 0) {
		if (r > 0) {
			if (cli_read_password(c, v, NULL, 0, c->creds.password))
				return -1;
			c->creds.password_given = 1;
		}
		return r;
	}
	if ((r = cli_opt(c, argc, argv, i, "--token", &v)) != 0) {
		if (r > 0) {
			if (check_token(c, "--token", v))
				return -1;
			snprintf(c->creds.token, sizeof c->creds.token, "%s", v);
			cli_wipe((char *)v, strlen(v));
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
 * Credentials
 *
 * The admin API takes "Authorization: Bearer TOKEN" or "Basic
 * base64(user:password)" (docs/security.md). Passwords come from an
 * option, a file, the environment or the terminal; the terminal is read
 * with echo off, and a signal during the prompt puts the echo back before
 * the process dies.
 * ------------------------------------------------------------------------ */

void cli_wipe(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

static struct termios tty_saved;
static volatile sig_atomic_t tty_restore;

static void on_prompt_signal(int sig)
{
	if (tty_restore)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Reads one line from fd into out (at most CLI_PASSWORD_MAX bytes, line
 * ending dropped). Returns the length, -1 on a read error, -2 when too long.
 */
static int read_line(int fd, char out[CLI_PASSWORD_MAX + 1])
{
	size_t n = 0;
	int too_long = 0;

	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0 || ch == '\n')
			break;
		if (n < CLI_PASSWORD_MAX)
			out[n++] = ch;
		else
			too_long = 1;
	}
	if (n && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	if (too_long) {
		cli_wipe(out, CLI_PASSWORD_MAX + 1);
		return -2;
	}
	return (int)n;
}

/* Prompts on stderr and reads a line from the terminal on stdin without echo. */
static int prompt_password(const char *prompt, char out[CLI_PASSWORD_MAX + 1])
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
	struct sigaction sa, old[CFX_ARRAY_LEN(sigs)];
	struct termios t;
	int n;

	if (tcgetattr(STDIN_FILENO, &tty_saved))
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_prompt_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t k = 0; k < CFX_ARRAY_LEN(sigs); k++)
		sigaction(sigs[k], &sa, &old[k]);
	t = tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	tty_restore = 1;
	fputs(prompt, stderr);
	fflush(stderr);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	n = read_line(STDIN_FILENO, out);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
	tty_restore = 0;
	for (size_t k = 0; k < CFX_ARRAY_LEN(sigs); k++)
		sigaction(sigs[k], &old[k], NULL);
	return n;
}

int cli_read_password(const struct cli *c, const char *file, const char *prompt, int confirm,
		      char out[CLI_PASSWORD_MAX + 1])
{
	char again[CLI_PASSWORD_MAX + 1];
	int n;

	if (file && !strcmp(file, "-") && isatty(STDIN_FILENO))
		file = NULL; /* "-" on a terminal: asked for without echo */
	if (!prompt)
		prompt = "Password: ";
	if (file) {
		int fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
		if (fd < 0) {
			cli_error(c, "cannot read the password file %s: %s", file, strerror(errno));
			return -1;
		}
		n = read_line(fd, out);
		if (fd != STDIN_FILENO)
			close(fd);
		if (n == -1) {
			cli_error(c, "cannot read the password file %s: %s", file, strerror(errno));
			return -1;
		}
		if (n == -2) {
			cli_error(c, "the password in %s is longer than %d bytes", file,
				  CLI_PASSWORD_MAX);
			return -1;
		}
		if (n == 0) {
			cli_error(c, "the first line of %s is empty: no password", file);
			return -1;
		}
		return 0;
	}
	if (!isatty(STDIN_FILENO)) {
		cli_error(c, "a password is needed and stdin is not a terminal to ask for it; "
			     "give --password-file FILE (or --password)");
		return -1;
	}
	n = prompt_password(prompt, out);
	if (n <= 0) {
		cli_wipe(out, CLI_PASSWORD_MAX + 1);
		cli_error(c, "%s",
			  n == 0    ? "no password given"
			  : n == -2 ? "the password is longer than 255 bytes"
				    : "cannot read the password from the terminal");
		return -1;
	}
	if (confirm) {
		n = prompt_password("Again: ", again);
		int same = n >= 0 && !strcmp(again, out);
		cli_wipe(again, sizeof again);
		if (!same) {
			cli_wipe(out, CLI_PASSWORD_MAX + 1);
			cli_error(c, "the passwords do not match");
			return -1;
		}
	}
	return 0;
}

/* A password asked for on the terminal, kept for the later requests of this run. */
static struct {
	int have;
	char user[CLI_USER_MAX + 1];
	char password[CLI_PASSWORD_MAX + 1];
} asked;

static int basic(const struct cli *c, const char *user, const char *password, char *out, size_t len)
{
	char plain[CLI_USER_MAX + 1 + CLI_PASSWORD_MAX + 1];
	size_t ul = strlen(user), pl;

	if (!password) {
		if (!asked.have || strcmp(asked.user, user)) {
			char prompt[CLI_USER_MAX + 32];
			snprintf(prompt, sizeof prompt, "Password for %s: ", user);
			if (!isatty(STDIN_FILENO)) {
				cli_error(c,
					  "no password for user %s: give --password, "
					  "--password-file FILE or CONFLUX_PASSWORD%s",
					  user,
					  strncmp(c->cmd, "user ", 5)
						  ? ""
						  : " (in `user create` and `user update` "
						    "the sign-in options go before the command)");
				return -1;
			}
			if (cli_read_password(c, NULL, prompt, 0, asked.password))
				return -1;
			snprintf(asked.user, sizeof asked.user, "%s", user);
			asked.have = 1;
		}
		password = asked.password;
	}
	pl = strlen(password);
	if (ul > CLI_USER_MAX || pl > CLI_PASSWORD_MAX || strchr(user, ':') || !ul) {
		cli_error(c,
			  "the user name must be 1 to %d characters without ':', the password "
			  "at most %d bytes",
			  CLI_USER_MAX, CLI_PASSWORD_MAX);
		return -1;
	}
	memcpy(plain, user, ul);
	plain[ul] = ':';
	memcpy(plain + ul + 1, password, pl);
	CFX_ASSERT(len >= 6 + 4 * ((ul + 1 + pl + 2) / 3) + 1);
	memcpy(out, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)plain, (int)(ul + 1 + pl));
	cli_wipe(plain, sizeof plain);
	return 0;
}

static int bearer(const struct cli *c, const char *token, const char *from, char *out, size_t len)
{
	size_t n = strlen(token);

	for (const char *p = token; *p; p++)
		if (*p <= ' ' || *p > '~')
			n = 0;
	if (n == 0 || n > CLI_TOKEN_MAX) {
		cli_error(c, "%s: a token is 1 to %d visible ASCII characters", from,
			  CLI_TOKEN_MAX);
		return -1;
	}
	CFX_ASSERT(len > 7 + n);
	snprintf(out, len, "Bearer %s", token);
	return 0;
}

int cli_credentials(const struct cli *c, char *out, size_t len)
{
	const struct cli_creds *cr = &c->creds;
	const char *env_user = getenv("CONFLUX_USER"), *env_pw = getenv("CONFLUX_PASSWORD");
	const char *env_token = getenv("CONFLUX_TOKEN");

	CFX_ASSERT(len >= CLI_AUTHZ_MAX);
	out[0] = '\0';
	if (env_user && !*env_user)
		env_user = NULL;
	if (env_token && !*env_token)
		env_token = NULL;
	if (cr->token[0])
		return bearer(c, cr->token, "--token", out, len);
	if (cr->user[0] || cr->password_given) {
		const char *user = cr->user[0] ? cr->user : env_user;
		if (!user) {
			cli_error(c, "--password needs a user name: --user NAME or CONFLUX_USER");
			return -1;
		}
		return basic(c, user, cr->password_given ? cr->password : env_pw, out, len);
	}
	if (env_token)
		return bearer(c, env_token, "CONFLUX_TOKEN", out, len);
	if (env_user)
		return basic(c, env_user, env_pw, out, len);
	return 0;
}

int cli_only_common(struct cli *c, int argc, char **argv)
{
	int r, done = 0;

	for (int k = 1; k < argc;) {
		CLI_COMMON(c, argc, argv, k);
		CLI_UNKNOWN(c, argv[k]);
		return cli_usage_error(c, "unexpected argument \"%s\"", argv[k]);
	}
	return -1;
}

int cli_one_name(struct cli *c, int argc, char **argv, const char *what, const char **name)
{
	int r, done = 0;

	*name = NULL;
	for (int i = 1; i < argc;) {
		CLI_COMMON(c, argc, argv, i);
		CLI_UNKNOWN(c, argv[i]);
		if (*name)
			return cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
		*name = argv[i++];
	}
	if (!*name)
		return cli_usage_error(c, "the %s name is missing", what);
	return -1;
}

int cli_user_password(const struct cli *c, char user[CLI_USER_MAX + 1],
		      char password[CLI_PASSWORD_MAX + 1])
{
	char authz[CLI_AUTHZ_MAX];
	unsigned char plain[CLI_AUTHZ_MAX];
	int n, rc = 0;

	user[0] = password[0] = '\0';
	if (cli_credentials(c, authz, sizeof authz))
		return -1;
	if (!strncmp(authz, "Basic ", 6)) {
		/* What cli_credentials encoded: "user:password" (the user has no ':'). */
		size_t el = strlen(authz + 6);
		n = EVP_DecodeBlock(plain, (const unsigned char *)authz + 6, (int)el);
		if (n > 0 && el >= 1 && authz[6 + el - 1] == '=')
			n--;
		if (n > 0 && el >= 2 && authz[6 + el - 2] == '=')
			n--;
		const unsigned char *colon = n > 0 ? memchr(plain, ':', (size_t)n) : NULL;
		if (colon && (size_t)(colon - plain) <= CLI_USER_MAX &&
		    (size_t)(n - (colon - plain) - 1) <= CLI_PASSWORD_MAX) {
			memcpy(user, plain, (size_t)(colon - plain));
			user[colon - plain] = '\0';
			memcpy(password, colon + 1, (size_t)(n - (colon - plain) - 1));
			password[n - (colon - plain) - 1] = '\0';
			rc = 1;
		}
	}
	cli_wipe(plain, sizeof plain);
	cli_wipe(authz, sizeof authz);
	return rc;
}

int cli_sign_grpc(const struct cli *c, struct rmq_cl *rc)
{
	char user[CLI_USER_MAX + 1], pw[CLI_PASSWORD_MAX + 1];
	int r = cli_user_password(c, user, pw);

	if (r > 0)
		rmq_set_credentials(rc, user, pw);
	cli_wipe(pw, sizeof pw);
	return r < 0 ? -1 : 0;
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

json_t *cli_json_arg(struct cli *c, const char *what, const char *arg)
{
	const char *text = arg;
	char *buf = NULL;
	size_t len = strlen(arg);
	json_error_t je;
	json_t *v;

	if (arg[0] == '@') {
		const char *path = arg + 1;
		FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
		size_t n;
		if (!f) {
			cli_usage_error(c, "%s: cannot read %s: %s", what, path, strerror(errno));
			return NULL;
		}
		buf = cfx_malloc(CLI_JSON_ARG_BYTES_MAX + 1);
		n = fread(buf, 1, CLI_JSON_ARG_BYTES_MAX + 1, f);
		if (f != stdin)
			fclose(f);
		if (n > CLI_JSON_ARG_BYTES_MAX) {
			cfx_free(buf);
			cli_usage_error(c, "%s: %s is larger than 1 MiB", what, path);
			return NULL;
		}
		text = buf;
		len = n;
	}
	v = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	cfx_free(buf);
	if (!v)
		cli_usage_error(c, "%s: not JSON (line %d, column %d: %s)", what, je.line,
				je.column, je.text);
	return v;
}
