/*
 * cmd_rule.c - `conflux rule create|list|describe|delete|test`: the rules
 * of an EventBridge bus over the admin HTTP API (/v1/buses/{bus}/rules),
 * and the pattern tester (/v1/rules/test). The pattern language:
 * docs/design/events-patterns.md; the guide: docs/eventbridge.md.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

#define RULE_TARGETS_MAX 64 /* --target options of one rule */

static const char usage_rule[] =
	"usage: conflux rule <subcommand> [options]\n"
	"\n"
	"  create BUS NAME --pattern P --target T[=TRANSFORM]...   create (or --replace) a rule\n"
	"  list BUS                                  the rules of a bus\n"
	"  describe BUS NAME                         one rule: pattern, targets, transforms\n"
	"  delete BUS NAME                           delete a rule\n"
	"  test --pattern P --event E                does the pattern match the event?\n"
	"\n"
	"P, E and TRANSFORM are JSON, or @FILE to read it from FILE (@- = stdin).\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_create[] =
	"usage: conflux rule create BUS NAME --pattern JSON|@FILE --target T[=TRANSFORM]...\n"
	"                           [--description D] [--disabled] [--replace] [--json]\n"
	"\n"
	"  --pattern P       the event pattern (docs/design/events-patterns.md)\n"
	"  --target T        a target that gets the matching events, as they are;\n"
	"                    repeat it for more targets (up to 64)\n"
	"  --target T=TRANSFORM\n"
	"                    the same, with a transform (JSON or @FILE) that reshapes\n"
	"                    the event for this target only; everything after the\n"
	"                    first '=' is the transform\n"
	"  --description D   free text\n"
	"  --disabled        create it switched off (no events are routed by it)\n"
	"  --replace         create it, or replace the rule of that name (PUT)\n"
	"\n"
	"Example:\n"
	"  conflux rule create orders big-orders \\\n"
	"    --pattern "
	"'{\"type\":[\"order.created\"],\"data\":{\"amount\":[{\"numeric\":[\">\",100]}]}}' \\\n"
	"    --target audit --target "
	"amounts='{\"type\":\"jsonpath\",\"path\":\"$.data.amount\"}'\n";

static const char usage_list[] = "usage: conflux rule list BUS [--json]\n"
				 "\n"
				 "Lists the rules of BUS with their state and targets.\n";

static const char usage_describe[] =
	"usage: conflux rule describe BUS NAME [--json]\n"
	"\n"
	"Shows one rule: its fields, its pattern and each target with its transform.\n";

static const char usage_delete[] = "usage: conflux rule delete BUS NAME [--json]\n"
				   "\n"
				   "Deletes the rule; deliveries it queued are still delivered.\n";

static const char usage_test[] =
	"usage: conflux rule test --pattern JSON|@FILE --event JSON|@FILE [--json]\n"
	"\n"
	"Asks the server whether the pattern matches the event (a CloudEvent in the\n"
	"JSON format). Prints \"matches\" (exit status 0) or \"does not match: REASON\"\n"
	"(exit status 1). Nothing is stored.\n";

/* "/v1/buses/<bus>/rules[/<rule>]", a new string. */
static char *rule_path(const char *bus, const char *rule)
{
	char *eb = cli_url_escape(bus), *er = rule ? cli_url_escape(rule) : NULL;
	size_t n = strlen(eb) + (er ? strlen(er) : 0) + 32;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/buses/%s/rules%s%s", eb, er ? "/" : "", er ? er : "");
	cfx_free(eb);
	cfx_free(er);
	return p;
}

/* Reads BUS [NAME] and the common options. -1 to go on, else the exit status. */
static int parse_bus_rule(struct cli *c, int argc, char **argv, const char **bus, const char **rule,
			  int want_rule)
{
	int r, done = 0;

	*bus = *rule = NULL;
	for (int i = 1; i < argc;) {
		CLI_COMMON(c, argc, argv, i);
		CLI_UNKNOWN(c, argv[i]);
		if (!*bus)
			*bus = argv[i++];
		else if (want_rule && !*rule)
			*rule = argv[i++];
		else
			return cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
	}
	if (!*bus)
		return cli_usage_error(c, "the bus name is missing");
	if (want_rule && !*rule)
		return cli_usage_error(c, "the rule name is missing");
	return -1;
}

/* The JSON of option `what` as an object (a new reference), or NULL (usage error printed). */
static json_t *json_object_arg(struct cli *c, const char *what, const char *arg)
{
	json_t *v = cli_json_arg(c, what, arg);

	if (v && !json_is_object(v)) {
		json_decref(v);
		cli_usage_error(c, "%s: a JSON object is expected", what);
		return NULL;
	}
	return v;
}

/* {"target": T, "transform"?: {...}} from "T" or "T=TRANSFORM"; NULL on a usage error. */
static json_t *target_arg(struct cli *c, const char *arg)
{
	const char *eq = strchr(arg, '=');
	json_t *t;

	if (eq == arg || !*arg) {
		cli_usage_error(c, "--target: the target name is missing in \"%s\"", arg);
		return NULL;
	}
	if (!eq)
		return json_pack("{s:s}", "target", arg);
	t = json_pack("{s:s%}", "target", arg, (size_t)(eq - arg));
	json_t *tr = json_object_arg(c, "--target TRANSFORM", eq + 1);
	if (!tr) {
		json_decref(t);
		return NULL;
	}
	json_object_set_new(t, "transform", tr);
	return t;
}

static int rule_create(int argc, char **argv)
{
	struct cli c;
	const char *bus = NULL, *name = NULL, *pattern = NULL, *desc = NULL, *val;
	const char *targets[RULE_TARGETS_MAX];
	int ntargets = 0, disabled = 0, replace = 0;
	json_t *body = NULL, *arr, *out = NULL, *pat;
	char *path;
	int r, done = 0, rc;

	cli_init(&c, "rule create", usage_create);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--pattern", pattern);
		CLI_VALUE(&c, argc, argv, i, "--description", desc);
		CLI_FLAG(argv, i, "--disabled", disabled);
		CLI_FLAG(argv, i, "--replace", replace);
		if ((r = cli_opt(&c, argc, argv, &i, "--target", &val)) != 0) {
			if (r < 0)
				return CLI_EUSAGE;
			if (ntargets == RULE_TARGETS_MAX)
				return cli_usage_error(&c, "more than %d --target options",
						       RULE_TARGETS_MAX);
			targets[ntargets++] = val;
			continue;
		}
		CLI_UNKNOWN(&c, argv[i]);
		if (!bus)
			bus = argv[i++];
		else if (!name)
			name = argv[i++];
		else
			return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
	}
	if (!bus || !name)
		return cli_usage_error(&c, "the bus and the rule name are required");
	if (!pattern)
		return cli_usage_error(&c, "--pattern is required");
	if (!ntargets)
		return cli_usage_error(&c, "at least one --target is required");
	if (!(pat = json_object_arg(&c, "--pattern", pattern)))
		return CLI_EUSAGE;
	body = json_pack("{s:s, s:o, s:b}", "name", name, "pattern", pat, "enabled", !disabled);
	if (desc)
		json_object_set_new(body, "description", json_string(desc));
	arr = json_array();
	json_object_set_new(body, "targets", arr);
	for (int k = 0; k < ntargets; k++) {
		json_t *t = target_arg(&c, targets[k]);
		if (!t) {
			json_decref(body);
			return CLI_EUSAGE;
		}
		json_array_append_new(arr, t);
	}
	path = rule_path(bus, replace ? name : NULL);
	rc = admin_call(&c, replace ? "PUT" : "POST", path, body, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_incref(body));
			out = NULL;
		} else {
			printf("%s rule %s on bus %s (%d target%s)\n", replace ? "put" : "created",
			       name, bus, ntargets, ntargets == 1 ? "" : "s");
		}
	}
	json_decref(out);
	json_decref(body);
	return rc;
}

/* Compact JSON of `v`, a new string ("-" when absent). */
static char *json_text(const json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	char *out = cfx_strdup(s ? s : "-");

	free(s);
	return out;
}

static int rule_list(int argc, char **argv)
{
	static const char *const head[] = {"NAME", "ENABLED", "TARGETS", "PATTERN"};
	struct cli c;
	const char *bus, *unused;
	json_t *out = NULL, *list, *ru, *t;
	struct cli_table *tb;
	char *path;
	size_t i, k;
	int rc;

	cli_init(&c, "rule list", usage_list);
	if ((rc = parse_bus_rule(&c, argc, argv, &bus, &unused, 0)) >= 0)
		return rc;
	path = rule_path(bus, NULL);
	rc = admin_get_list(&c, path, "rules", &out, &list);
	cfx_free(path);
	if (rc || !list)
		return rc;
	tb = cli_table_new(4, head);
	json_array_foreach(list, i, ru)
	{
		struct cfx_writer w;
		char *pat = json_text(json_object_get(ru, "pattern"));
		cfx_writer_init(&w, 64);
		json_array_foreach(json_object_get(ru, "targets"), k, t)
		{
			const char *tn = cli_json_str(t, "target", "?");
			if (k)
				cfx_write_bytes(&w, ",", 1);
			cfx_write_bytes(&w, tn, strlen(tn));
		}
		cfx_write_u8(&w, 0);
		/* Long patterns are cut short: `rule describe` shows them whole. */
		if (strlen(pat) > 60)
			strcpy(pat + 57, "...");
		cli_table_addf(tb, "%s\t%s\t%s\t%s", cli_json_str(ru, "name", "?"),
			       json_is_false(json_object_get(ru, "enabled")) ? "no" : "yes",
			       w.len > 1 ? (char *)w.p : "-", pat);
		cfx_writer_free(&w);
		cfx_free(pat);
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int rule_describe(int argc, char **argv)
{
	static const char *const head[] = {"TARGET", "TRANSFORM"};
	struct cli c;
	const char *bus, *name;
	json_t *out = NULL, *t;
	char *path, *pat;
	size_t i;
	int rc;

	cli_init(&c, "rule describe", usage_describe);
	if ((rc = parse_bus_rule(&c, argc, argv, &bus, &name, 1)) >= 0)
		return rc;
	path = rule_path(bus, name);
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	if (c.json) {
		cli_json_print(out ? out : json_object());
		return CLI_OK;
	}
	cli_print_fields(out, stdout);
	pat = json_text(json_object_get(out, "pattern"));
	printf("pattern  %s\n", pat);
	cfx_free(pat);
	struct cli_table *tb = cli_table_new(2, head);
	json_array_foreach(json_object_get(out, "targets"), i, t)
	{
		char *tr = json_text(json_object_get(t, "transform"));
		cli_table_addf(tb, "%s\t%s", cli_json_str(t, "target", "?"), tr);
		cfx_free(tr);
	}
	putchar('\n');
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int rule_delete(int argc, char **argv)
{
	struct cli c;
	const char *bus, *name;
	json_t *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "rule delete", usage_delete);
	if ((rc = parse_bus_rule(&c, argc, argv, &bus, &name, 1)) >= 0)
		return rc;
	path = rule_path(bus, name);
	rc = admin_call(&c, "DELETE", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json)
			cli_json_print(json_pack("{s:s, s:s}", "deleted", name, "bus", bus));
		else
			printf("deleted rule %s of bus %s\n", name, bus);
	}
	json_decref(out);
	return rc;
}

static int rule_test(int argc, char **argv)
{
	struct cli c;
	const char *pattern = NULL, *event = NULL;
	json_t *body, *pat, *ev, *out = NULL;
	int r, done = 0, rc;

	cli_init(&c, "rule test", usage_test);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--pattern", pattern);
		CLI_VALUE(&c, argc, argv, i, "--event", event);
		CLI_UNKNOWN(&c, argv[i]);
		return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
	}
	if (!pattern || !event)
		return cli_usage_error(&c, "--pattern and --event are required");
	if (!(pat = json_object_arg(&c, "--pattern", pattern)))
		return CLI_EUSAGE;
	if (!(ev = json_object_arg(&c, "--event", event))) {
		json_decref(pat);
		return CLI_EUSAGE;
	}
	body = json_pack("{s:o, s:o}", "pattern", pat, "event", ev);
	rc = admin_call(&c, "POST", "/v1/rules/test", body, &out, NULL);
	json_decref(body);
	if (rc)
		return rc;
	int match = json_is_true(json_object_get(out, "match"));
	if (c.json) {
		cli_json_print(out ? out : json_object());
		out = NULL;
	} else if (match) {
		printf("matches\n");
	} else {
		printf("does not match: %s\n", cli_json_str(out, "reason", "(no reason given)"));
	}
	json_decref(out);
	return match ? CLI_OK : CLI_EFAIL;
}

int cli_rule(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", rule_create}, {"list", rule_list}, {"describe", rule_describe},
		{"delete", rule_delete}, {"test", rule_test},
	};
	return cli_dispatch("rule", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_rule);
}
