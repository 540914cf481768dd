/*
 * cmd_acl.c - `conflux acl create|list|delete`, over the admin HTTP API
 * (/v1/acls): the policies of docs/security.md, which say who may do what
 * on which topic, group or the cluster, from where.
 *
 * The server checks every field (resource syntax, pattern, actions,
 * source address); this file only splits --actions into a list and shows
 * the answers.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

#define ACL_ACTIONS_MAX 16 /* entries of --actions (there are 8 action names) */

static const char usage_acl[] =
	"usage: conflux acl <subcommand> [options]\n"
	"\n"
	"  create --subject U --resource R --actions A,B,... [--pattern P] [--source CIDR]\n"
	"         [--deny]                  add a policy\n"
	"  list [--subject U]               list policies\n"
	"  delete ID                        delete a policy\n"
	"\n"
	"Super users only. Common options: --server HOST:PORT, --timeout DURATION,\n"
	"--json, and the sign-in options (conflux --help).\n";

static const char usage_create[] =
	"usage: conflux acl create --subject USER --resource RESOURCE --actions A,B,...\n"
	"                          [--pattern literal|prefixed|any] [--source CIDR] [--deny]\n"
	"                          [--json]\n"
	"\n"
	"  --subject USER     a user name, * (every signed-in user) or anonymous\n"
	"  --resource R       topic:NAME, group:NAME, cluster, or topic / group (any name)\n"
	"  --actions LIST     some of PUB, SUB, CREATE, UPDATE, DELETE, GET, LIST, or ALL\n"
	"  --pattern P        how NAME matches: literal (default with a name), prefixed\n"
	"                     (names starting with NAME), any (default without a name)\n"
	"  --source CIDR      only for clients from these addresses (10.0.0.0/8, ::1/128)\n"
	"  --deny             a deny policy (default: allow)\n"
	"\n"
	"The most specific matching policies decide, and among them deny wins; with\n"
	"none, the request is denied. Super users are not subject to policies.\n"
	"See docs/security.md.\n";

static const char usage_list[] = "usage: conflux acl list [--subject USER] [--json]\n"
				 "\n"
				 "Lists policies (those of one subject with --subject).\n";

static const char usage_delete[] = "usage: conflux acl delete ID [--json]\n"
				   "\n"
				   "Deletes the policy with this id (see conflux acl list).\n";

/* "PUB,SUB" of a policy's "actions" array, into buf. */
static void format_actions(const json_t *acts, char *buf, size_t len)
{
	const json_t *a;
	size_t i, at = 0;

	buf[0] = '\0';
	json_array_foreach(acts, i, a)
	{
		int n = snprintf(buf + at, len - at, "%s%s", i ? "," : "",
				 json_is_string(a) ? json_string_value(a) : "?");
		if (n < 0 || (size_t)n >= len - at)
			return;
		at += (size_t)n;
	}
}

/* ------------------------------------------------------------------------
 * create
 * ------------------------------------------------------------------------ */

/* --actions "pub, SUB" -> ["PUB","SUB"]; NULL after a usage error. */
static json_t *parse_actions(struct cli *c, const char *list)
{
	char *copy = cfx_strdup(list), *save = NULL;
	json_t *arr = json_array();

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*t))
			t++;
		size_t n = strlen(t);
		while (n && isspace((unsigned char)t[n - 1]))
			t[--n] = '\0';
		if (!n)
			continue;
		if (json_array_size(arr) == ACL_ACTIONS_MAX) {
			cli_usage_error(c, "--actions: at most %d actions", ACL_ACTIONS_MAX);
			goto fail;
		}
		for (char *p = t; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		json_array_append_new(arr, json_string(t));
	}
	if (!json_array_size(arr)) {
		cli_usage_error(c, "--actions: give some of PUB, SUB, CREATE, UPDATE, DELETE, GET, "
				   "LIST, ALL, separated by commas");
		goto fail;
	}
	cfx_free(copy);
	return arr;
fail:
	cfx_free(copy);
	json_decref(arr);
	return NULL;
}

static int acl_create(int argc, char **argv)
{
	struct cli c;
	const char *subject = NULL, *resource = NULL, *pattern = NULL, *actions = NULL;
	const char *source = NULL;
	int deny = 0, r, done = 0, rc;
	json_t *body, *acts, *out = NULL;

	cli_init(&c, "acl create", usage_create);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--subject", subject);
		CLI_VALUE(&c, argc, argv, i, "--resource", resource);
		CLI_VALUE(&c, argc, argv, i, "--pattern", pattern);
		CLI_VALUE(&c, argc, argv, i, "--actions", actions);
		CLI_VALUE(&c, argc, argv, i, "--source", source);
		CLI_FLAG(argv, i, "--deny", deny);
		CLI_UNKNOWN(&c, argv[i]);
		return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
	}
	if (!subject || !resource || !actions)
		return cli_usage_error(&c, "--subject, --resource and --actions are required");
	if (!(acts = parse_actions(&c, actions)))
		return CLI_EUSAGE;
	body = json_pack("{s:s, s:s, s:o, s:s}", "subject", subject, "resource", resource,
			 "actions", acts, "decision", deny ? "deny" : "allow");
	if (pattern)
		json_object_set_new(body, "pattern", json_string(pattern));
	if (source)
		json_object_set_new(body, "source", json_string(source));
	rc = admin_call(&c, "POST", "/v1/acls", body, &out, NULL);
	json_decref(body);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_object());
			out = NULL;
		} else {
			char acts_s[128];
			const char *src = cli_json_str(out, "source", "");
			format_actions(json_object_get(out, "actions"), acts_s, sizeof acts_s);
			printf("created policy %lld: %s %s %s on %s (%s)%s%s\n",
			       (long long)cli_json_int(out, "id", 0),
			       cli_json_str(out, "decision", "?"),
			       cli_json_str(out, "subject", "?"), acts_s,
			       cli_json_str(out, "resource", "?"),
			       cli_json_str(out, "pattern", "?"), *src ? " from " : "", src);
		}
	}
	json_decref(out);
	return rc;
}

/* ------------------------------------------------------------------------
 * list, delete
 * ------------------------------------------------------------------------ */

static int acl_list(int argc, char **argv)
{
	static const char *const head[] = {"ID",       "SUBJECT", "DECISION", "ACTIONS",
					   "RESOURCE", "PATTERN", "SOURCE"};
	struct cli c;
	const char *subject = NULL;
	json_t *out = NULL, *list, *p;
	struct cli_table *tb;
	char target[64 + 3 * (CLI_USER_MAX + 1)];
	size_t i;
	int r, done = 0, rc;

	cli_init(&c, "acl list", usage_list);
	for (int k = 1; k < argc;) {
		CLI_COMMON(&c, argc, argv, k);
		CLI_VALUE(&c, argc, argv, k, "--subject", subject);
		CLI_UNKNOWN(&c, argv[k]);
		return cli_usage_error(&c, "unexpected argument \"%s\"", argv[k]);
	}
	if (subject) {
		if (strlen(subject) > CLI_USER_MAX)
			return cli_usage_error(&c, "--subject: longer than %d characters",
					       CLI_USER_MAX);
		char *esc = cli_url_escape(subject);
		snprintf(target, sizeof target, "/v1/acls?subject=%s", esc);
		cfx_free(esc);
	} else {
		snprintf(target, sizeof target, "/v1/acls");
	}
	rc = admin_get_list(&c, target, "acls", &out, &list);
	if (rc || !list)
		return rc;
	tb = cli_table_new(7, head);
	json_array_foreach(list, i, p)
	{
		char acts[128];
		const char *src = cli_json_str(p, "source", "");
		format_actions(json_object_get(p, "actions"), acts, sizeof acts);
		cli_table_addf(tb, "%lld\t%s\t%s\t%s\t%s\t%s\t%s",
			       (long long)cli_json_int(p, "id", 0), cli_json_str(p, "subject", "?"),
			       cli_json_str(p, "decision", "?"), acts,
			       cli_json_str(p, "resource", "?"), cli_json_str(p, "pattern", "?"),
			       *src ? src : "-");
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int acl_delete(int argc, char **argv)
{
	struct cli c;
	const char *id_s = NULL;
	char target[64];
	int64_t id;
	int r, done = 0, rc;

	cli_init(&c, "acl delete", usage_delete);
	for (int k = 1; k < argc;) {
		CLI_COMMON(&c, argc, argv, k);
		CLI_UNKNOWN(&c, argv[k]);
		if (id_s)
			return cli_usage_error(&c, "unexpected argument \"%s\"", argv[k]);
		id_s = argv[k++];
	}
	if (!id_s)
		return cli_usage_error(&c, "the policy id is missing (see conflux acl list)");
	if (cli_int(&c, "ID", id_s, 1, INT64_MAX, &id))
		return CLI_EUSAGE;
	snprintf(target, sizeof target, "/v1/acls/%lld", (long long)id);
	rc = admin_call(&c, "DELETE", target, NULL, NULL, NULL);
	if (rc == CLI_OK) {
		if (c.json)
			cli_json_print(json_pack("{s:I}", "deleted", (json_int_t)id));
		else
			printf("deleted policy %lld\n", (long long)id);
	}
	return rc;
}

int cli_acl(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", acl_create},
		{"list", acl_list},
		{"delete", acl_delete},
	};
	return cli_dispatch("acl", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_acl);
}
