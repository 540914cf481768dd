/*
 * cmd_topic.c - `conflux topic create|list|describe|update|delete`, over
 * the admin HTTP API (/v1/topics). Output is a table for people or the
 * server's JSON with --json.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

static const char usage_topic[] =
	"usage: conflux topic <subcommand> [options]\n"
	"\n"
	"  create NAME [--type T] [--queues N]   create a topic\n"
	"  list                                  list topics\n"
	"  describe NAME                         a topic and the offsets of its queues\n"
	"  update NAME [--type T] [--queues N]   change the type, or add queues\n"
	"  delete NAME                           delete a topic\n"
	"\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_create[] =
	"usage: conflux topic create NAME [--type TYPE] [--queues N] [--json]\n"
	"\n"
	"  --type TYPE   normal (default), fifo, delay, transaction or mixed\n"
	"  --queues N    number of queues (default 8)\n"
	"  --server HOST:PORT, --timeout DURATION, --json as for every command\n";

static const char usage_list[] = "usage: conflux topic list [--json]\n"
				 "\n"
				 "Lists every topic with its type and queue count.\n";

static const char usage_describe[] =
	"usage: conflux topic describe NAME [--json]\n"
	"\n"
	"Shows a topic and, per queue, its first and end offsets and message count.\n";

static const char usage_update[] =
	"usage: conflux topic update NAME [--type TYPE] [--queues N] [--json]\n"
	"\n"
	"Changes the type, or grows the number of queues (queues never shrink).\n";

static const char usage_delete[] =
	"usage: conflux topic delete NAME [--json]\n"
	"\n"
	"Deletes the topic; its stored messages age out with retention.\n";

static const char *const types[] = {"normal", "fifo", "delay", "transaction", "mixed"};

static int check_type(struct cli *c, const char *type)
{
	for (size_t i = 0; i < CFX_ARRAY_LEN(types); i++)
		if (!strcasecmp(type, types[i]))
			return 0;
	cli_usage_error(c, "--type: \"%s\" is not one of normal, fifo, delay, transaction, mixed",
			type);
	return -1;
}

/* "/v1/topics/<escaped name><suffix>", a new string. */
static char *topic_path(const char *name)
{
	char *esc = cli_url_escape(name);
	size_t n = strlen(esc) + 16;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/topics/%s", esc);
	cfx_free(esc);
	return p;
}

struct topic_args {
	const char *name, *type;
	int64_t queues; /* -1 = not given */
};

/*
 * Reads NAME (and, `with_opts`, --type T --queues N) and the common
 * options. Returns -1 to go on, else the exit status to return at once
 * (after --help or a usage error).
 */
static int parse_topic_args(struct cli *c, int argc, char **argv, struct topic_args *ta,
			    int with_opts)
{
	const char *queues = NULL;
	int r, done = 0;

	ta->name = ta->type = NULL;
	ta->queues = -1;
	for (int i = 1; i < argc;) {
		CLI_COMMON(c, argc, argv, i);
		if (with_opts) {
			CLI_VALUE(c, argc, argv, i, "--type", ta->type);
			CLI_VALUE(c, argc, argv, i, "--queues", queues);
		}
		CLI_UNKNOWN(c, argv[i]);
		if (ta->name)
			return cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
		ta->name = argv[i++];
	}
	if (!ta->name)
		return cli_usage_error(c, "the topic name is missing");
	if (ta->type && check_type(c, ta->type))
		return CLI_EUSAGE;
	if (queues && cli_int(c, "--queues", queues, 1, 65536, &ta->queues))
		return CLI_EUSAGE;
	return -1; /* go on */
}

static int topic_create(int argc, char **argv)
{
	struct cli c;
	struct topic_args ta;
	json_t *body, *out = NULL;
	int rc;

	cli_init(&c, "topic create", usage_create);
	if ((rc = parse_topic_args(&c, argc, argv, &ta, 1)) >= 0)
		return rc;
	body = json_pack("{s:s, s:s, s:I}", "name", ta.name, "type", ta.type ? ta.type : "normal",
			 "queues", (json_int_t)(ta.queues > 0 ? ta.queues : 8));
	rc = admin_call(&c, "POST", "/v1/topics", body, &out, NULL);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_incref(body));
			out = NULL;
		} else {
			printf("created topic %s (%s, %lld queues)\n", ta.name,
			       cli_json_str(out, "type", ta.type ? ta.type : "normal"),
			       (long long)cli_json_int(out, "queues",
						       ta.queues > 0 ? ta.queues : 8));
		}
	}
	json_decref(out);
	json_decref(body);
	return rc;
}

static int topic_update(int argc, char **argv)
{
	struct cli c;
	struct topic_args ta;
	json_t *body, *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "topic update", usage_update);
	if ((rc = parse_topic_args(&c, argc, argv, &ta, 1)) >= 0)
		return rc;
	if (!ta.type && ta.queues < 0)
		return cli_usage_error(&c, "nothing to change: give --type or --queues");
	body = json_object();
	if (ta.type)
		json_object_set_new(body, "type", json_string(ta.type));
	if (ta.queues > 0)
		json_object_set_new(body, "queues", json_integer(ta.queues));
	path = topic_path(ta.name);
	rc = admin_call(&c, "PATCH", path, body, &out, NULL);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_pack("{s:s}", "name", ta.name));
			out = NULL;
		} else {
			printf("updated topic %s\n", ta.name);
			cli_print_fields(out, stdout);
		}
	}
	cfx_free(path);
	json_decref(out);
	json_decref(body);
	return rc;
}

static int topic_delete(int argc, char **argv)
{
	struct cli c;
	struct topic_args ta;
	json_t *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "topic delete", usage_delete);
	if ((rc = parse_topic_args(&c, argc, argv, &ta, 0)) >= 0)
		return rc;
	path = topic_path(ta.name);
	rc = admin_call(&c, "DELETE", path, NULL, &out, NULL);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_pack("{s:s}", "deleted", ta.name));
			out = NULL;
		} else {
			printf("deleted topic %s\n", ta.name);
		}
	}
	cfx_free(path);
	json_decref(out);
	return rc;
}

static int topic_list(int argc, char **argv)
{
	static const char *const head[] = {"NAME", "TYPE", "QUEUES", "CREATED"};
	struct cli c;
	json_t *out = NULL, *list, *t;
	struct cli_table *tb;
	size_t i;
	int rc;

	cli_init(&c, "topic list", usage_list);
	if ((rc = cli_only_common(&c, argc, argv)) >= 0)
		return rc;
	rc = admin_get_list(&c, "/v1/topics", "topics", &out, &list);
	if (rc || !list)
		return rc;
	tb = cli_table_new(4, head);
	json_array_foreach(list, i, t)
	{
		char created[40];
		cli_format_time(cli_json_int(t, "created_ms", 0), created, sizeof created);
		cli_table_addf(tb, "%s\t%s\t%lld\t%s", cli_json_str(t, "name", "?"),
			       cli_json_str(t, "type", "-"),
			       (long long)cli_json_int(t, "queues", 0), created);
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int topic_describe(int argc, char **argv)
{
	static const char *const head[] = {"QUEUE", "START", "END", "MESSAGES"};
	struct cli c;
	struct topic_args ta;
	json_t *out = NULL, *qs, *q;
	char *path;
	size_t i;
	int rc;

	cli_init(&c, "topic describe", usage_describe);
	if ((rc = parse_topic_args(&c, argc, argv, &ta, 0)) >= 0)
		return rc;
	path = topic_path(ta.name);
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	if (c.json) {
		cli_json_print(out ? out : json_object());
		return CLI_OK;
	}
	cli_print_fields(out, stdout);
	qs = json_object_get(out, "queue_offsets");
	if (json_is_array(qs) && json_array_size(qs)) {
		struct cli_table *tb = cli_table_new(4, head);
		int64_t total = 0;
		json_array_foreach(qs, i, q)
		{
			int64_t start = cli_json_int(q, "start_offset", 0);
			int64_t end = cli_json_int(q, "end_offset", 0);
			total += end - start;
			cli_table_addf(tb, "%lld\t%lld\t%lld\t%lld",
				       (long long)cli_json_int(q, "queue", (int64_t)i),
				       (long long)start, (long long)end, (long long)(end - start));
		}
		cli_table_addf(tb, "total\t\t\t%lld", (long long)total);
		putchar('\n');
		cli_table_print(tb, stdout);
	}
	json_decref(out);
	return CLI_OK;
}

int cli_topic(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", topic_create}, {"list", topic_list},	    {"describe", topic_describe},
		{"update", topic_update}, {"delete", topic_delete},
	};
	return cli_dispatch("topic", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_topic);
}
