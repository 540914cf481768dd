/*
 * cmd_user.c - `conflux user create|list|describe|update|delete|token` and
 * `conflux whoami`, over the admin HTTP API (/v1/users, /v1/whoami):
 * the users of docs/security.md, their roles, and their admin tokens.
 *
 * A new password comes from --password, --password-file FILE ("-" is
 * stdin), or the terminal (asked twice, without echo); it is never
 * printed. In `create` and `update` those two options name the user's
 * new password, so the sign-in password of that call goes before the
 * command or in the environment (docs/cli.md). A token is printed once,
 * by `token`, the only place a secret is written out.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

static const char usage_user[] =
	"usage: conflux user <subcommand> [options]\n"
	"\n"
	"  create NAME [--password PW | --password-file F] [--super] [--disabled]\n"
	"                                   create a user (asks for the password on a terminal)\n"
	"  list                             list users\n"
	"  describe NAME                    a user: role, enabled, tokens\n"
	"  update NAME [--password PW | --password-file F] [--super | --normal]\n"
	"              [--enable | --disable]   change a user\n"
	"  delete NAME                      delete a user and its policies\n"
	"  token NAME                       create an admin token for the user (shown once)\n"
	"\n"
	"Super users only, once users exist. Common options: --server HOST:PORT,\n"
	"--timeout DURATION, --json, and the sign-in options (conflux --help).\n";

static const char usage_create[] =
	"usage: conflux user create NAME [--password PW | --password-file FILE] [--super]\n"
	"                           [--disabled] [--json]\n"
	"\n"
	"  --password PW         the new user's password (visible to ps: prefer the others)\n"
	"  --password-file FILE  the password is the first line of FILE (- = stdin)\n"
	"                        without either, it is asked for twice on the terminal\n"
	"  --super               a super user: may do everything, manages users and policies\n"
	"  --disabled            create the user disabled (it cannot sign in)\n"
	"\n"
	"A name is 1 to 128 characters of a-z A-Z 0-9 . _ @ -. The first user of a\n"
	"server is created without signing in (the server is then open to loopback\n"
	"clients only); make it a super user. After the command, --password and\n"
	"--password-file are the new user's: to sign in, put the sign-in options\n"
	"before the command (conflux --user admin --password-file F user create ...)\n"
	"or use --token, CONFLUX_TOKEN, or CONFLUX_USER and CONFLUX_PASSWORD.\n";

static const char usage_list[] = "usage: conflux user list [--json]\n"
				 "\n"
				 "Lists users: name, role, enabled, number of tokens, created.\n";

static const char usage_describe[] = "usage: conflux user describe NAME [--json]\n";

static const char usage_update[] =
	"usage: conflux user update NAME [--password PW | --password-file FILE]\n"
	"                           [--super | --normal] [--enable | --disable] [--json]\n"
	"\n"
	"  --password PW, --password-file FILE   a new password (FILE - = stdin,\n"
	"                        asked for without echo on a terminal)\n"
	"  --super, --normal     change the role\n"
	"  --enable, --disable   a disabled user cannot sign in; its connections are\n"
	"                        refused at their next check\n"
	"Sign in as for `conflux user create`.\n";

static const char usage_delete[] =
	"usage: conflux user delete NAME [--json]\n"
	"\n"
	"Deletes the user, its tokens, and the policies whose subject it is.\n";

static const char usage_token[] =
	"usage: conflux user token NAME [--json]\n"
	"\n"
	"Creates an admin token for the user and prints it. It is shown this once\n"
	"(the server keeps only its hash). Use it with --token or CONFLUX_TOKEN.\n";

static const char usage_whoami[] =
	"usage: conflux whoami [--json]\n"
	"\n"
	"Asks the server who the given credentials (or none) sign in as\n"
	"(GET /v1/whoami), and whether it asks for credentials at all.\n";

/* "/v1/users/<escaped name><suffix>", a new string. */
static char *user_path(const char *name, const char *suffix)
{
	char *esc = cli_url_escape(name);
	size_t n = strlen(esc) + strlen(suffix) + 16;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/users/%s%s", esc, suffix);
	cfx_free(esc);
	return p;
}

struct user_args {
	const char *name;
	const char *password, *password_file; /* the user's new password, if given */
	int super, normal, disabled, enable, disable;
};

/*
 * Reads NAME, the common options and, with `opts` ("create" or "update"),
 * that subcommand's options. Returns -1 to go on, else the exit status to
 * return at once (after --help or a usage error).
 */
static int parse_user_args(struct cli *c, int argc, char **argv, struct user_args *ua,
			   const char *opts)
{
	int create = opts && !strcmp(opts, "create"), update = opts && !strcmp(opts, "update");
	int r, done = 0;

	memset(ua, 0, sizeof *ua);
	for (int i = 1; i < argc;) {
		/* Before the common options: here --password is the user's, not the sign-in. */
		if (create || update) {
			CLI_VALUE(c, argc, argv, i, "--password", ua->password);
			CLI_VALUE(c, argc, argv, i, "--password-file", ua->password_file);
			CLI_FLAG(argv, i, "--super", ua->super);
		}
		if (create)
			CLI_FLAG(argv, i, "--disabled", ua->disabled);
		if (update) {
			CLI_FLAG(argv, i, "--normal", ua->normal);
			CLI_FLAG(argv, i, "--enable", ua->enable);
			CLI_FLAG(argv, i, "--disable", ua->disable);
		}
		CLI_COMMON(c, argc, argv, i);
		CLI_UNKNOWN(c, argv[i]);
		if (ua->name)
			return cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
		ua->name = argv[i++];
	}
	if (!ua->name)
		return cli_usage_error(c, "the user name is missing");
	if (ua->password && ua->password_file)
		return cli_usage_error(c, "give --password or --password-file, not both");
	if (ua->super && ua->normal)
		return cli_usage_error(c, "give --super or --normal, not both");
	if (ua->enable && ua->disable)
		return cli_usage_error(c, "give --enable or --disable, not both");
	return -1;
}

/*
 * The new password of create/update into `pw`: the option, the file, or
 * (create, or update with "-") the terminal. Returns 0, 1 when update has
 * none, or -1 (message printed). Blanks the argv copy of --password.
 */
static int new_password(struct cli *c, struct user_args *ua, int ask, char *pw)
{
	if (ua->password) {
		size_t n = strlen(ua->password);
		if (n == 0 || n > CLI_PASSWORD_MAX) {
			cli_usage_error(c, "--password: a password is 1 to %d bytes",
					CLI_PASSWORD_MAX);
			return -1;
		}
		memcpy(pw, ua->password, n + 1);
		cli_wipe((char *)ua->password, n);
		return 0;
	}
	if (ua->password_file)
		return cli_read_password(c, ua->password_file, "Password: ", 1, pw) ? -1 : 0;
	if (!ask)
		return 1;
	if (!isatty(STDIN_FILENO)) {
		cli_usage_error(c, "the password is missing: give --password-file FILE (or "
				   "--password PW), or run on a terminal to be asked for it");
		return -1;
	}
	char prompt[CLI_USER_MAX + 40];
	snprintf(prompt, sizeof prompt, "Password for the new user %s: ", ua->name);
	return cli_read_password(c, NULL, prompt, 1, pw) ? -1 : 0;
}

/* Prints a user object for people: one line, or the fields. */
static void print_user(const json_t *u)
{
	cli_print_fields(u, stdout);
}

/* ------------------------------------------------------------------------
 * create, update
 * ------------------------------------------------------------------------ */

static int user_create(int argc, char **argv)
{
	struct cli c;
	struct user_args ua;
	char pw[CLI_PASSWORD_MAX + 1];
	json_t *body, *out = NULL;
	int rc;

	cli_init(&c, "user create", usage_create);
	if ((rc = parse_user_args(&c, argc, argv, &ua, "create")) >= 0)
		return rc;
	if (new_password(&c, &ua, 1, pw))
		return CLI_EUSAGE;
	body = json_pack("{s:s, s:s, s:s, s:b}", "name", ua.name, "password", pw, "role",
			 ua.super ? "super" : "normal", "enabled", !ua.disabled);
	cli_wipe(pw, sizeof pw);
	rc = admin_call(&c, "POST", "/v1/users", body, &out, NULL);
	json_decref(body);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_pack("{s:s}", "name", ua.name));
			out = NULL;
		} else {
			printf("created user %s (%s%s)\n", ua.name,
			       cli_json_str(out, "role", ua.super ? "super" : "normal"),
			       ua.disabled ? ", disabled" : "");
		}
	}
	json_decref(out);
	return rc;
}

static int user_update(int argc, char **argv)
{
	struct cli c;
	struct user_args ua;
	char pw[CLI_PASSWORD_MAX + 1];
	json_t *body, *out = NULL;
	char *path;
	int rc, no_pw;

	cli_init(&c, "user update", usage_update);
	if ((rc = parse_user_args(&c, argc, argv, &ua, "update")) >= 0)
		return rc;
	no_pw = new_password(&c, &ua, 0, pw);
	if (no_pw < 0)
		return CLI_EUSAGE;
	if (no_pw && !ua.super && !ua.normal && !ua.enable && !ua.disable)
		return cli_usage_error(&c, "nothing to change: give --password, "
					   "--password-file, --super, --normal, --enable or "
					   "--disable");
	body = json_object();
	if (!no_pw)
		json_object_set_new(body, "password", json_string(pw));
	cli_wipe(pw, sizeof pw);
	if (ua.super || ua.normal)
		json_object_set_new(body, "role", json_string(ua.super ? "super" : "normal"));
	if (ua.enable || ua.disable)
		json_object_set_new(body, "enabled", json_boolean(ua.enable));
	path = user_path(ua.name, "");
	rc = admin_call(&c, "PATCH", path, body, &out, NULL);
	cfx_free(path);
	json_decref(body);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_pack("{s:s}", "name", ua.name));
			out = NULL;
		} else {
			printf("updated user %s%s\n", ua.name, no_pw ? "" : " (new password)");
			print_user(out);
		}
	}
	json_decref(out);
	return rc;
}

/* ------------------------------------------------------------------------
 * list, describe, delete, token
 * ------------------------------------------------------------------------ */

static int user_list(int argc, char **argv)
{
	static const char *const head[] = {"NAME", "ROLE", "ENABLED", "TOKENS", "CREATED"};
	struct cli c;
	json_t *out = NULL, *list, *u;
	struct cli_table *tb;
	size_t i;
	int rc;

	cli_init(&c, "user list", usage_list);
	if ((rc = cli_only_common(&c, argc, argv)) >= 0)
		return rc;
	rc = admin_get_list(&c, "/v1/users", "users", &out, &list);
	if (rc || !list)
		return rc;
	tb = cli_table_new(5, head);
	json_array_foreach(list, i, u)
	{
		char created[40];
		cli_format_time(cli_json_int(u, "created_ms", 0), created, sizeof created);
		cli_table_addf(tb, "%s\t%s\t%s\t%lld\t%s", cli_json_str(u, "name", "?"),
			       cli_json_str(u, "role", "-"),
			       json_is_false(json_object_get(u, "enabled")) ? "no" : "yes",
			       (long long)cli_json_int(u, "tokens", 0), created);
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int user_describe(int argc, char **argv)
{
	struct cli c;
	struct user_args ua;
	json_t *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "user describe", usage_describe);
	if ((rc = parse_user_args(&c, argc, argv, &ua, NULL)) >= 0)
		return rc;
	path = user_path(ua.name, "");
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	if (c.json) {
		cli_json_print(out ? out : json_object());
		return CLI_OK;
	}
	print_user(out);
	json_decref(out);
	return CLI_OK;
}

static int user_delete(int argc, char **argv)
{
	struct cli c;
	struct user_args ua;
	char *path;
	int rc;

	cli_init(&c, "user delete", usage_delete);
	if ((rc = parse_user_args(&c, argc, argv, &ua, NULL)) >= 0)
		return rc;
	path = user_path(ua.name, "");
	rc = admin_call(&c, "DELETE", path, NULL, NULL, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json)
			cli_json_print(json_pack("{s:s}", "deleted", ua.name));
		else
			printf("deleted user %s and its policies\n", ua.name);
	}
	return rc;
}

static int user_token(int argc, char **argv)
{
	struct cli c;
	struct user_args ua;
	json_t *out = NULL;
	const char *tok;
	char *path;
	int rc;

	cli_init(&c, "user token", usage_token);
	if ((rc = parse_user_args(&c, argc, argv, &ua, NULL)) >= 0)
		return rc;
	path = user_path(ua.name, "/tokens");
	rc = admin_call(&c, "POST", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	tok = cli_json_str(out, "token", NULL);
	if (!tok) {
		json_decref(out);
		return cli_error(&c, "the answer has no token");
	}
	if (c.json) {
		cli_json_print(out);
		return CLI_OK;
	}
	/* The token alone on stdout, so that TOKEN=$(conflux user token NAME) works. */
	printf("%s\n", tok);
	if (isatty(STDOUT_FILENO))
		fprintf(stderr,
			"(a token for %s, shown only this once: use it with --token or "
			"CONFLUX_TOKEN)\n",
			ua.name);
	json_decref(out);
	return CLI_OK;
}

int cli_user(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", user_create}, {"list", user_list},	  {"describe", user_describe},
		{"update", user_update}, {"delete", user_delete}, {"token", user_token},
	};
	return cli_dispatch("user", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_user);
}

/* ------------------------------------------------------------------------
 * whoami
 * ------------------------------------------------------------------------ */

int cli_whoami(int argc, char **argv)
{
	struct cli c;
	json_t *out = NULL;
	const char *user;
	int rc, super;

	cli_init(&c, "whoami", usage_whoami);
	if ((rc = cli_only_common(&c, argc, argv)) >= 0)
		return rc;
	rc = admin_call(&c, "GET", "/v1/whoami", NULL, &out, NULL);
	if (rc)
		return rc;
	if (c.json) {
		cli_json_print(out ? out : json_object());
		return CLI_OK;
	}
	user = cli_json_str(out, "user", NULL);
	super = json_is_true(json_object_get(out, "super"));
	if (!json_is_true(json_object_get(out, "authentication")))
		printf("the server has no users: no one signs in, every request is allowed\n");
	else if (user)
		printf("%s (%s user)\n", user, super ? "super" : "normal");
	else
		printf("anonymous (not signed in: policies for \"anonymous\" apply)\n");
	json_decref(out);
	return CLI_OK;
}
