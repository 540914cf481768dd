/*
 * cmd_bus.c - `conflux bus create|list|describe|delete|replay`: the
 * EventBridge's buses over the admin HTTP API (/v1/buses). Output is a
 * table for people or the server's JSON with --json. docs/eventbridge.md
 * explains buses; docs/cli.md lists the options.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

static const char usage_bus[] =
	"usage: conflux bus <subcommand> [options]\n"
	"\n"
	"  create NAME [--description D]                 create a bus (and its topic)\n"
	"  list                                          list buses\n"
	"  describe NAME                                 a bus and its rules\n"
	"  delete NAME                                   delete a bus and its rules (the\n"
	"                                                events stay in its topic)\n"
	"  replay BUS --from TIME --to TIME [--rule R]   route stored events again\n"
	"\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_create[] =
	"usage: conflux bus create NAME [--description TEXT] [--json]\n"
	"\n"
	"Creates an event bus: a topic of the same name that takes CloudEvents\n"
	"(POST /v1/buses/NAME/events, conflux event put) and the rules that route them.\n";

static const char usage_list[] = "usage: conflux bus list [--json]\n"
				 "\n"
				 "Lists the buses with their rule counts.\n";

static const char usage_describe[] = "usage: conflux bus describe NAME [--json]\n"
				     "\n"
				     "Shows a bus and its rules.\n";

static const char usage_delete[] =
	"usage: conflux bus delete NAME [--json]\n"
	"\n"
	"Deletes the bus and its rules. Its topic and the events in it stay\n"
	"(delete the topic with `conflux topic delete`). The default bus cannot go.\n";

static const char usage_replay[] =
	"usage: conflux bus replay BUS --from TIME --to TIME [--rule RULE] [--json]\n"
	"\n"
	"Routes the events BUS stored between the two times again, through every\n"
	"enabled rule or only RULE. TIME is RFC 3339 (2024-05-01T12:00:00Z) or\n"
	"milliseconds since the epoch. Targets get the events again: deliveries\n"
	"are at least once, so receivers must tolerate repeats.\n";

/* "/v1/buses/<escaped name><suffix>", a new string. */
static char *bus_path(const char *name, const char *suffix)
{
	char *esc = cli_url_escape(name);
	size_t n = strlen(esc) + strlen(suffix) + 16;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/buses/%s%s", esc, suffix);
	cfx_free(esc);
	return p;
}

/*
 * Reads NAME and the common options (and --description with `with_desc`).
 * Returns -1 to go on, else the exit status to return at once.
 */
static int parse_name(struct cli *c, int argc, char **argv, const char **name, const char **desc)
{
	int r, done = 0;

	*name = NULL;
	for (int i = 1; i < argc;) {
		CLI_COMMON(c, argc, argv, i);
		if (desc)
			CLI_VALUE(c, argc, argv, i, "--description", *desc);
		CLI_UNKNOWN(c, argv[i]);
		if (*name)
			return cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
		*name = argv[i++];
	}
	if (!*name)
		return cli_usage_error(c, "the bus name is missing");
	return -1;
}

static int bus_create(int argc, char **argv)
{
	struct cli c;
	const char *name, *desc = NULL;
	json_t *body, *out = NULL;
	int rc;

	cli_init(&c, "bus create", usage_create);
	if ((rc = parse_name(&c, argc, argv, &name, &desc)) >= 0)
		return rc;
	body = json_pack("{s:s}", "name", name);
	if (desc)
		json_object_set_new(body, "description", json_string(desc));
	rc = admin_call(&c, "POST", "/v1/buses", body, &out, NULL);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_incref(body));
			out = NULL;
		} else {
			printf("created bus %s\n", name);
		}
	}
	json_decref(out);
	json_decref(body);
	return rc;
}

static int bus_list(int argc, char **argv)
{
	static const char *const head[] = {"NAME", "RULES", "DESCRIPTION"};
	struct cli c;
	json_t *out = NULL, *list, *b;
	struct cli_table *tb;
	size_t i;
	int rc;

	cli_init(&c, "bus list", usage_list);
	if ((rc = cli_only_common(&c, argc, argv)) >= 0)
		return rc;
	rc = admin_get_list(&c, "/v1/buses", "buses", &out, &list);
	if (rc || !list)
		return rc;
	tb = cli_table_new(3, head);
	json_array_foreach(list, i, b)
	{
		cli_table_addf(tb, "%s\t%lld\t%s", cli_json_str(b, "name", "?"),
			       (long long)cli_json_int(b, "rules", 0),
			       cli_json_str(b, "description", "-"));
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

/* "t1, t2 (transformed)": the targets of a rule, a new string. */
static char *rule_targets(const json_t *rule)
{
	json_t *ts = json_object_get(rule, "targets"), *t;
	struct cfx_writer w;
	size_t i;

	cfx_writer_init(&w, 64);
	json_array_foreach(ts, i, t)
	{
		const char *name = cli_json_str(t, "target", "?");
		if (i)
			cfx_write_bytes(&w, ", ", 2);
		cfx_write_bytes(&w, name, strlen(name));
		if (json_object_get(t, "transform"))
			cfx_write_bytes(&w, " (transformed)", 14);
	}
	if (!w.len)
		cfx_write_u8(&w, '-');
	cfx_write_u8(&w, 0);
	return (char *)w.p;
}

static int bus_describe(int argc, char **argv)
{
	static const char *const head[] = {"RULE", "ENABLED", "TARGETS"};
	struct cli c;
	const char *name;
	json_t *out = NULL, *rules = NULL, *list, *ru;
	char *path;
	size_t i;
	int rc;

	cli_init(&c, "bus describe", usage_describe);
	if ((rc = parse_name(&c, argc, argv, &name, NULL)) >= 0)
		return rc;
	path = bus_path(name, "");
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	path = bus_path(name, "/rules");
	rc = admin_call(&c, "GET", path, NULL, &rules, NULL);
	cfx_free(path);
	if (rc) {
		json_decref(out);
		return rc;
	}
	if (c.json) {
		json_t *o = out ? out : json_object();
		json_object_set(o, "rules",
				cli_json_list(rules, "rules") ? cli_json_list(rules, "rules")
							      : json_array());
		cli_json_print(o);
		json_decref(rules);
		return CLI_OK;
	}
	cli_print_fields(out, stdout);
	list = cli_json_list(rules, "rules");
	if (list && json_array_size(list)) {
		struct cli_table *tb = cli_table_new(3, head);
		json_array_foreach(list, i, ru)
		{
			char *ts = rule_targets(ru);
			json_t *en = json_object_get(ru, "enabled");
			cli_table_addf(tb, "%s\t%s\t%s", cli_json_str(ru, "name", "?"),
				       json_is_false(en) ? "no" : "yes", ts);
			cfx_free(ts);
		}
		putchar('\n');
		cli_table_print(tb, stdout);
	}
	json_decref(out);
	json_decref(rules);
	return CLI_OK;
}

static int bus_delete(int argc, char **argv)
{
	struct cli c;
	const char *name;
	json_t *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "bus delete", usage_delete);
	if ((rc = parse_name(&c, argc, argv, &name, NULL)) >= 0)
		return rc;
	path = bus_path(name, "");
	rc = admin_call(&c, "DELETE", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json)
			cli_json_print(json_pack("{s:s}", "deleted", name));
		else
			printf("deleted bus %s\n", name);
	}
	json_decref(out);
	return rc;
}

static int bus_replay(int argc, char **argv)
{
	struct cli c;
	const char *name = NULL, *from = NULL, *to = NULL, *rule = NULL;
	int64_t from_ms, to_ms;
	json_t *body, *out = NULL;
	char *path;
	int r, done = 0, rc;

	cli_init(&c, "bus replay", usage_replay);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--from", from);
		CLI_VALUE(&c, argc, argv, i, "--to", to);
		CLI_VALUE(&c, argc, argv, i, "--rule", rule);
		CLI_UNKNOWN(&c, argv[i]);
		if (name)
			return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
		name = argv[i++];
	}
	if (!name)
		return cli_usage_error(&c, "the bus name is missing");
	if (!from || !to)
		return cli_usage_error(&c, "--from and --to are required");
	if (cli_parse_time(from, &from_ms))
		return cli_usage_error(&c, "--from: \"%s\" is not RFC 3339 or milliseconds", from);
	if (cli_parse_time(to, &to_ms))
		return cli_usage_error(&c, "--to: \"%s\" is not RFC 3339 or milliseconds", to);
	if (from_ms > to_ms)
		return cli_usage_error(&c, "--from is after --to");
	body = json_pack("{s:I, s:I}", "from_ms", (json_int_t)from_ms, "to_ms", (json_int_t)to_ms);
	if (rule)
		json_object_set_new(body, "rule", json_string(rule));
	path = bus_path(name, "/replay");
	rc = admin_call(&c, "POST", path, body, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_object());
			out = NULL;
		} else {
			printf("replayed %lld event(s) of bus %s: %lld delivery(ies) queued\n",
			       (long long)cli_json_int(out, "events", 0), name,
			       (long long)cli_json_int(out, "deliveries", 0));
		}
	}
	json_decref(out);
	json_decref(body);
	return rc;
}

int cli_bus(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", bus_create}, {"list", bus_list},	{"describe", bus_describe},
		{"delete", bus_delete}, {"replay", bus_replay},
	};
	return cli_dispatch("bus", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_bus);
}
