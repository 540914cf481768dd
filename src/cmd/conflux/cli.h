/*
 * cli.h - the subcommands of the conflux command-line tool, and what they
 * share: the common options (--server, --grpc, --json, --timeout, and the
 * credentials --user, --password, --password-file, --token), error
 * reporting with exit statuses, tables, and time and size formatting
 * (cli_util.c).
 *
 * Every subcommand is `int cli_xxx(int argc, char **argv)`: argv[0] is the
 * subcommand's own name, the return value is the process exit status.
 * The tool is single-threaded except for `conflux bench`, whose worker
 * threads use none of the helpers here but the formatting ones.
 */
#ifndef CFX_CMD_CONFLUX_CLI_H
#define CFX_CMD_CONFLUX_CLI_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "base/common.h"

#define CLI_VERSION "0.1.0"

/* Exit statuses (docs/cli.md). */
enum cli_exit {
	CLI_OK = 0,
	CLI_EFAIL = 1,	      /* the operation failed: the server refused it, or it broke */
	CLI_EUSAGE = 2,	      /* bad command line */
	CLI_EUNREACHABLE = 3, /* the server could not be reached at all */
};

#define CLI_ADDR_MAX	 256
#define CLI_USER_MAX	 128 /* bytes of a user name (the server's CFX_AUTH_USER_MAX) */
#define CLI_PASSWORD_MAX 255 /* bytes of a password (the server's CFX_AUTH_PASSWORD_MAX) */
#define CLI_TOKEN_MAX	 128 /* bytes of an admin token (the server's are 64 hex) */

/*
 * Credentials from the options (--user, --password or --password-file,
 * --token). Empty strings are "not given"; cli_credentials fills what the
 * options left out from CONFLUX_USER, CONFLUX_PASSWORD and CONFLUX_TOKEN.
 */
struct cli_creds {
	char user[CLI_USER_MAX + 1];
	char password[CLI_PASSWORD_MAX + 1];
	char token[CLI_TOKEN_MAX + 1];
	int password_given; /* --password or --password-file (an empty password counts) */
};

/* What every command gets from the common options. */
struct cli {
	const char *cmd;	   /* "topic create": prefix of messages */
	const char *usage;	   /* the command's --help text */
	char server[CLI_ADDR_MAX]; /* admin HTTP API, host:port */
	char grpc[CLI_ADDR_MAX];   /* gRPC API, host:port; "" = ask GET /v1/status */
	int json;		   /* --json: machine-readable output */
	int64_t timeout_ms;	   /* one request's deadline */
	int admin_optional;	   /* admin_call: an unreachable server is not reported */
	struct cli_creds creds;	   /* sign-in credentials from the options */
};

/*
 * Defaults: the common options given before the command, else --server
 * from CONFLUX_SERVER or 127.0.0.1:8080, and a 10 s timeout.
 */
void cli_init(struct cli *c, const char *cmd, const char *usage);
/*
 * Reads the common options before the command (argv[1..]); they become
 * every later cli_init's defaults. Returns how many arguments they took,
 * or -1 (message printed).
 */
int cli_global_options(int argc, char **argv);

/*
 * Option parsing. Options are "--name VALUE" or "--name=VALUE".
 *
 * cli_opt: if argv[*i] is option `name`, stores its value in *val, moves
 * *i past it and returns 1; returns 0 if argv[*i] is another argument, and
 * -1 (message printed) if the value is missing.
 * cli_flag: 1 if argv[*i] is the flag `name` (then *i moves on), else 0.
 * cli_common: consumes the common options, and --help, which prints the
 * usage and sets *exit_now (the command then returns CLI_OK); same return
 * values as cli_opt.
 */
int cli_opt(struct cli *c, int argc, char **argv, int *i, const char *name, const char **val);
int cli_flag(char **argv, int *i, const char *name);
int cli_common(struct cli *c, int argc, char **argv, int *i, int *exit_now);
/*
 * For commands without arguments of their own: takes the common options
 * (argv[1..]). Returns -1 to go on, or the exit status to return at once
 * (CLI_OK after --help, CLI_EUSAGE with the message printed).
 */
int cli_only_common(struct cli *c, int argc, char **argv);
/*
 * For commands taking one NAME and the common options: *name is the name.
 * Returns -1 to go on, or the exit status to return at once (as above;
 * "the `what` name is missing" when there is none).
 */
int cli_one_name(struct cli *c, int argc, char **argv, const char *what, const char **name);

/*
 * Sign-in credentials.
 *
 * cli_credentials: the Authorization header value for the admin API in
 * `out` ("Bearer TOKEN" or "Basic base64(user:password)"), or "" when no
 * credentials were given. Options win over the environment: --token, then
 * --user/--password (a missing half taken from CONFLUX_USER or
 * CONFLUX_PASSWORD), then CONFLUX_TOKEN, then CONFLUX_USER with
 * CONFLUX_PASSWORD. A user without a password is asked for one on the
 * terminal (no echo), once per run. Returns 0, or -1 with a message
 * printed. `out` holds a secret: the caller wipes it (cli_wipe).
 */
#define CLI_AUTHZ_MAX 1024 /* an Authorization header value (the server's limit) */
int cli_credentials(const struct cli *c, char *out, size_t len);
/*
 * The user name and password of the same credentials, for signing gRPC
 * calls (a token cannot sign them): 1 with both filled, 0 when none (or
 * only a token) was given, -1 with a message printed. The caller wipes
 * the password.
 */
int cli_user_password(const struct cli *c, char user[CLI_USER_MAX + 1],
		      char password[CLI_PASSWORD_MAX + 1]);
/* rmq_set_credentials from the sign-in options (rmq_client.h); -1: message printed. */
struct rmq_cl;
int cli_sign_grpc(const struct cli *c, struct rmq_cl *rc);

/*
 * Reads a password: from the first line of FILE when `file` is not NULL
 * ("-" = stdin), else, or when `file` is "-" and stdin is a terminal,
 * from the terminal with echo off after `prompt` on stderr (asked twice
 * and compared when `confirm`). The line ending is
 * dropped. Returns 0, or -1 with a message printed (no terminal, an
 * unreadable file, a password over CLI_PASSWORD_MAX bytes).
 */
int cli_read_password(const struct cli *c, const char *file, const char *prompt, int confirm,
		      char out[CLI_PASSWORD_MAX + 1]);

/* Overwrites a secret in memory in a way the compiler keeps. */
void cli_wipe(void *p, size_t n);

/*
 * Shorthands for the option loops of the commands, which all read
 *   for (int i = 1; i < argc;) { CLI_COMMON(...); CLI_VALUE(...); ...; positional }
 * with `int r, done` declared: each consumes its argument and continues
 * the loop, or returns the exit status on a usage error or --help.
 */
#define CLI_COMMON(c, argc, argv, i)                                                               \
	if ((r = cli_common((c), (argc), (argv), &(i), &done)) != 0) {                             \
		if (r < 0)                                                                         \
			return CLI_EUSAGE;                                                         \
		if (done)                                                                          \
			return CLI_OK;                                                             \
		continue;                                                                          \
	}
#define CLI_VALUE(c, argc, argv, i, name, var)                                                     \
	if ((r = cli_opt((c), (argc), (argv), &(i), (name), &(var))) != 0) {                       \
		if (r < 0)                                                                         \
			return CLI_EUSAGE;                                                         \
		continue;                                                                          \
	}
#define CLI_FLAG(argv, i, name, var)                                                               \
	if (cli_flag((argv), &(i), (name))) {                                                      \
		(var) = 1;                                                                         \
		continue;                                                                          \
	}
/* An argument starting with '-' that no option took. */
#define CLI_UNKNOWN(c, arg)                                                                        \
	if ((arg)[0] == '-' && (arg)[1] != '\0')                                                   \
		return cli_usage_error((c), "unknown option %s", (arg));

/*
 * Typed values of options; each prints a usage error naming `what` and
 * returns -1 when the text is not a valid value, else 0.
 */
int cli_int(struct cli *c, const char *what, const char *s, int64_t min, int64_t max, int64_t *out);
int cli_duration(struct cli *c, const char *what, const char *s, int64_t *out_ms);
int cli_size(struct cli *c, const char *what, const char *s, int64_t *out);

/*
 * Errors. cli_usage_error prints "conflux CMD: MESSAGE" and a pointer to
 * --help, returns CLI_EUSAGE. cli_error prints "conflux CMD: MESSAGE" and
 * returns CLI_EFAIL. Both write to stderr.
 */
int cli_usage_error(const struct cli *c, const char *fmt, ...) CFX_PRINTF(2, 3);
int cli_error(const struct cli *c, const char *fmt, ...) CFX_PRINTF(2, 3);

/* Set by SIGINT/SIGTERM once cli_catch_signals ran; commands poll it. */
extern volatile sig_atomic_t cli_stop;
void cli_catch_signals(void);

/*
 * Output.
 */

/* Prints `v` as one compact JSON line on stdout; takes ownership of `v`. */
void cli_json_print(json_t *v);

/* A table printed with aligned columns; cells are copied; `headers` NULL = no header row. */
struct cli_table;
struct cli_table *cli_table_new(int ncols, const char *const *headers);
void cli_table_add(struct cli_table *t, const char *const *cells);
/* Adds one row from printf-formatted cells separated by '\t'. */
void cli_table_addf(struct cli_table *t, const char *fmt, ...) CFX_PRINTF(2, 3);
/* Prints (header first) and frees the table. */
void cli_table_print(struct cli_table *t, FILE *out);

/* Formats wall-clock ms as RFC 3339 UTC with milliseconds ("2024-05-01T12:00:00.123Z"). */
void cli_format_time(int64_t ms, char *buf, size_t len);
/*
 * Parses RFC 3339 ("2024-05-01T12:00:00Z", fractional seconds and a
 * +hh:mm offset allowed, 'T' or ' ') or plain milliseconds since the epoch.
 * Returns 0 or -1.
 */
int cli_parse_time(const char *s, int64_t *out_ms);
/* Formats a duration in ms as "250ms", "5s", "2m", "1h30m". */
void cli_format_duration(int64_t ms, char *buf, size_t len);

/* Percent-encodes `s` for a URL path segment or query value. Returns a new string. */
char *cli_url_escape(const char *s);
/* Base64 (standard alphabet, padded). Returns a new string. */
char *cli_base64(const void *p, size_t n);
/* Is [p, p+n) valid UTF-8 without control characters other than \t \n \r? */
int cli_is_text(const void *p, size_t n);

/* JSON accessors that tolerate absent or mistyped members. */
const char *cli_json_str(const json_t *o, const char *key, const char *dflt);
int64_t cli_json_int(const json_t *o, const char *key, int64_t dflt);

/*
 * A JSON value given on the command line as text, or as @FILE (the file's
 * contents, "@-" = stdin), for options like --pattern. Returns a new
 * reference, or NULL with a usage error naming `what` printed (unreadable
 * file, over CLI_JSON_ARG_BYTES_MAX, malformed JSON).
 */
#define CLI_JSON_ARG_BYTES_MAX (1u << 20) /* the server's body limit */
json_t *cli_json_arg(struct cli *c, const char *what, const char *arg);

/* The array in `v` itself, or in its member `key` (list answers of either shape). */
json_t *cli_json_list(json_t *v, const char *key);

/*
 * A JSON scalar for people: strings as they are, booleans yes/no, null as
 * "-", and integers under a key ending in "_ms" that look like wall-clock
 * times (created_ms, born_ms) as RFC 3339. Returns a new string.
 */
char *cli_json_scalar(const char *key, const json_t *v);
/* Prints the scalar members of `obj` as an aligned "name  value" list. */
void cli_print_fields(const json_t *obj, FILE *out);

/* Prints one message as the consume and message-get commands show it. */
void cli_print_message(const json_t *m, int json);

/* A command with subcommands ("topic create"): argv[0] is the command. */
struct cli_sub {
	const char *name;
	int (*fn)(int argc, char **argv); /* argv[0] = the subcommand */
};
int cli_dispatch(const char *cmd, int argc, char **argv, const struct cli_sub *subs, size_t n,
		 const char *usage);

/* Subcommands */
int cli_bench_store(int argc, char **argv);
int cli_bench_timers(int argc, char **argv);
int cli_bench_rmq(int argc, char **argv);
int cli_topic(int argc, char **argv);
int cli_group(int argc, char **argv);
int cli_produce(int argc, char **argv);
int cli_consume(int argc, char **argv);
int cli_message(int argc, char **argv);
int cli_dlq(int argc, char **argv);
int cli_user(int argc, char **argv);
int cli_acl(int argc, char **argv);
int cli_whoami(int argc, char **argv);
int cli_bus(int argc, char **argv);    /* cmd_bus.c: EventBridge buses, replay */
int cli_rule(int argc, char **argv);   /* cmd_rule.c: rules, and the pattern tester */
int cli_target(int argc, char **argv); /* cmd_target.c: targets */
int cli_event(int argc, char **argv);  /* cmd_event.c: event put */

#endif
