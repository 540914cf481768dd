/*
 * cmd_group.c - `conflux group create|list|describe|update|delete|reset`,
 * over the admin HTTP API (/v1/groups): consumer groups, their retry
 * policy, and their progress per topic and queue (committed offset, next
 * offset, in flight, end, lag).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

/* Steps of a customized back-off the server keeps (its CFX_BACKOFF_STEPS_MAX). */
#define BACKOFF_STEPS_MAX 32

static const char usage_group[] =
	"usage: conflux group <subcommand> [options]\n"
	"\n"
	"  create NAME [--fifo] [--max-attempts N] [--backoff SPEC]   create a consumer group\n"
	"  list                                   list groups\n"
	"  describe NAME                          a group and its lag per topic and queue\n"
	"  update NAME [--fifo|--no-fifo] [--max-attempts N] [--backoff SPEC]\n"
	"  delete NAME                            delete a group\n"
	"  reset NAME --topic T (--offset N | --time T | --earliest | --latest)\n"
	"                                         move the group's position on a topic\n"
	"\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_create[] =
	"usage: conflux group create NAME [--fifo] [--max-attempts N] [--backoff SPEC] [--json]\n"
	"\n"
	"  --fifo            deliver each message group in order, one message at a time\n"
	"  --max-attempts N  deliveries before a message goes to the dead-letter queue\n"
	"  --backoff SPEC    wait between deliveries:\n"
	"                      exponential:INITIAL,MAX,MULTIPLIER  e.g. exponential:1s,2m,2\n"
	"                      customized:D1,D2,...                 e.g. customized:1s,5s,30s\n"
	"Unset fields take the server's defaults (17 attempts, 1s 5s 10s 30s 1m ... 2h).\n";

static const char usage_update[] =
	"usage: conflux group update NAME [--fifo | --no-fifo] [--max-attempts N] "
	"[--backoff SPEC] [--json]\n"
	"\n"
	"Changes the given fields only; SPEC as for `conflux group create`.\n";

static const char usage_list[] = "usage: conflux group list [--json]\n"
				 "\n"
				 "Lists every consumer group with its ordering and retry policy.\n";

static const char usage_describe[] =
	"usage: conflux group describe NAME [--json]\n"
	"\n"
	"Shows the group and, for every topic it consumes, per queue: the committed\n"
	"offset (all below are acknowledged), the next offset to deliver, messages in\n"
	"flight (delivered, not acknowledged), the end offset and the lag.\n";

static const char usage_delete[] = "usage: conflux group delete NAME [--json]\n";

static const char usage_reset[] =
	"usage: conflux group reset NAME --topic T (--offset N | --time TIME | --earliest | "
	"--latest) [--json]\n"
	"\n"
	"Moves the group's position on every queue of topic T:\n"
	"  --offset N     to offset N (clamped to each queue's first and end offsets)\n"
	"  --time TIME    to the first message stored at or after TIME (RFC 3339, e.g.\n"
	"                 2024-05-01T12:00:00Z, or milliseconds since the epoch)\n"
	"  --earliest     to the first stored message\n"
	"  --latest       to the end: only messages sent from now on\n"
	"Messages in flight (delivered, not yet acknowledged) are forgotten.\n";

static char *group_path(const char *name, const char *suffix)
{
	char *esc = cli_url_escape(name);
	size_t n = strlen(esc) + strlen(suffix) + 16;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/groups/%s%s", esc, suffix);
	cfx_free(esc);
	return p;
}

/* ------------------------------------------------------------------------
 * Retry policies
 * ------------------------------------------------------------------------ */

/*
 * Parses --backoff into the fields of a retry object ("kind", and
 * "initial_ms" "max_ms" "multiplier" or "steps_ms"). Returns 0 or -1
 * (usage error printed).
 */
static int parse_backoff(struct cli *c, const char *spec, json_t *retry)
{
	char *toks[BACKOFF_STEPS_MAX + 1], *list, *save = NULL;
	int64_t v[BACKOFF_STEPS_MAX];
	size_t n = 0;
	int exponential, rc = -1;

	if (!strncmp(spec, "exponential:", 12)) {
		exponential = 1;
		list = cfx_strdup(spec + 12);
	} else if (!strncmp(spec, "customized:", 11)) {
		exponential = 0;
		list = cfx_strdup(spec + 11);
	} else {
		cli_usage_error(c,
				"--backoff: \"%s\" is neither exponential:INITIAL,MAX,MULTIPLIER "
				"nor customized:D1,D2,...",
				spec);
		return -1;
	}
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == CFX_ARRAY_LEN(toks)) {
			cli_usage_error(c, "--backoff: at most %d steps", BACKOFF_STEPS_MAX);
			goto out;
		}
		toks[n++] = t;
	}
	if (exponential) {
		char *end;
		double mult;

		if (n != 3) {
			cli_usage_error(c, "--backoff exponential:INITIAL,MAX,MULTIPLIER needs "
					   "exactly three values");
			goto out;
		}
		if (cli_duration(c, "--backoff", toks[0], &v[0]) ||
		    cli_duration(c, "--backoff", toks[1], &v[1]))
			goto out;
		mult = strtod(toks[2], &end);
		if (*end || end == toks[2] || !isfinite(mult) || mult < 1.0) {
			cli_usage_error(c, "--backoff: the multiplier \"%s\" must be a number >= 1",
					toks[2]);
			goto out;
		}
		if (v[0] <= 0 || v[1] < v[0]) {
			cli_usage_error(c, "--backoff: INITIAL must be positive and MAX at least "
					   "INITIAL");
			goto out;
		}
		json_object_set_new(retry, "kind", json_string("exponential"));
		json_object_set_new(retry, "initial_ms", json_integer(v[0]));
		json_object_set_new(retry, "max_ms", json_integer(v[1]));
		json_object_set_new(retry, "multiplier", json_real(mult));
		rc = 0;
		goto out;
	}
	if (n == 0 || n > BACKOFF_STEPS_MAX) {
		cli_usage_error(c, "--backoff customized: needs 1 to %d durations",
				BACKOFF_STEPS_MAX);
		goto out;
	}
	json_t *steps = json_array();
	for (size_t i = 0; i < n; i++) {
		if (cli_duration(c, "--backoff", toks[i], &v[i])) {
			json_decref(steps);
			goto out;
		}
		json_array_append_new(steps, json_integer(v[i]));
	}
	json_object_set_new(retry, "kind", json_string("customized"));
	json_object_set_new(retry, "steps_ms", steps);
	rc = 0;
out:
	cfx_free(list);
	return rc;
}

/* "17 attempts, customized 1s 5s 10s ..." for people. */
static void format_retry(const json_t *r, char *buf, size_t len)
{
	const char *kind = cli_json_str(r, "kind", NULL);
	int64_t attempts = cli_json_int(r, "max_attempts", 0);
	size_t at;

	if (!json_is_object(r)) {
		snprintf(buf, len, "-");
		return;
	}
	at = (size_t)snprintf(buf, len, "%lld attempts", (long long)attempts);
	if (at >= len || !kind)
		return;
	if (!strcmp(kind, "exponential")) {
		char a[32], b[32];
		const json_t *m = json_object_get(r, "multiplier");
		cli_format_duration(cli_json_int(r, "initial_ms", 0), a, sizeof a);
		cli_format_duration(cli_json_int(r, "max_ms", 0), b, sizeof b);
		snprintf(buf + at, len - at, ", exponential %s..%s x%g", a, b,
			 json_is_number(m) ? json_number_value(m) : 0.0);
		return;
	}
	at += (size_t)snprintf(buf + at, len - at, ", %s", kind);
	const json_t *steps = json_object_get(r, "steps_ms"), *s;
	size_t i;
	json_array_foreach(steps, i, s)
	{
		char d[32];
		if (at + 40 >= len) {
			snprintf(buf + at, len - at, " ...");
			return;
		}
		cli_format_duration(json_integer_value(s), d, sizeof d);
		at += (size_t)snprintf(buf + at, len - at, " %s", d);
	}
}

/* ------------------------------------------------------------------------
 * create, update
 * ------------------------------------------------------------------------ */

/* The body of a create (with the name) or an update; NULL after a usage error. */
static json_t *group_body(struct cli *c, int argc, char **argv, int create, const char **name,
			  int *exit_code)
{
	const char *max_attempts = NULL, *backoff = NULL;
	int fifo = 0, no_fifo = 0, r, done = 0;
	json_t *body, *retry;

	*name = NULL;
	*exit_code = CLI_EUSAGE;
	for (int i = 1; i < argc;) {
		if ((r = cli_common(c, argc, argv, &i, &done)) != 0) {
			if (r < 0)
				return NULL;
			if (done)
				return *exit_code = CLI_OK, NULL;
			continue;
		}
		if (cli_flag(argv, &i, "--fifo")) {
			fifo = 1;
			continue;
		}
		if (!create && cli_flag(argv, &i, "--no-fifo")) {
			no_fifo = 1;
			continue;
		}
		if ((r = cli_opt(c, argc, argv, &i, "--max-attempts", &max_attempts)) ||
		    (r = cli_opt(c, argc, argv, &i, "--backoff", &backoff))) {
			if (r < 0)
				return NULL;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1]) {
			cli_usage_error(c, "unknown option %s", argv[i]);
			return NULL;
		}
		if (*name) {
			cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
			return NULL;
		}
		*name = argv[i++];
	}
	if (!*name) {
		cli_usage_error(c, "the group name is missing");
		return NULL;
	}
	if (fifo && no_fifo) {
		cli_usage_error(c, "--fifo and --no-fifo contradict each other");
		return NULL;
	}
	body = create ? json_pack("{s:s}", "name", *name) : json_object();
	if (fifo || no_fifo)
		json_object_set_new(body, "fifo", json_boolean(fifo));
	retry = json_object();
	if (max_attempts) {
		int64_t n;
		if (cli_int(c, "--max-attempts", max_attempts, 1, 1000, &n))
			goto bad;
		json_object_set_new(retry, "max_attempts", json_integer(n));
	}
	if (backoff && parse_backoff(c, backoff, retry))
		goto bad;
	if (json_object_size(retry))
		json_object_set(body, "retry", retry);
	json_decref(retry);
	if (!create && !json_object_size(body)) {
		json_decref(body);
		cli_usage_error(c, "nothing to change: give --fifo, --no-fifo, --max-attempts or "
				   "--backoff");
		return NULL;
	}
	return body;
bad:
	json_decref(retry);
	json_decref(body);
	return NULL;
}

static int group_create(int argc, char **argv)
{
	struct cli c;
	const char *name;
	json_t *body, *out = NULL;
	int rc;

	cli_init(&c, "group create", usage_create);
	body = group_body(&c, argc, argv, 1, &name, &rc);
	if (!body)
		return rc;
	rc = admin_call(&c, "POST", "/v1/groups", body, &out, NULL);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_incref(body));
			out = NULL;
		} else {
			char retry[256];
			const json_t *src = out ? out : body;
			format_retry(json_object_get(src, "retry"), retry, sizeof retry);
			printf("created group %s (%s%s%s)\n", name,
			       json_is_true(json_object_get(src, "fifo")) ? "fifo" : "not fifo",
			       strcmp(retry, "-") ? ", " : "", strcmp(retry, "-") ? retry : "");
		}
	}
	json_decref(out);
	json_decref(body);
	return rc;
}

static int group_update(int argc, char **argv)
{
	struct cli c;
	const char *name;
	json_t *body, *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "group update", usage_update);
	body = group_body(&c, argc, argv, 0, &name, &rc);
	if (!body)
		return rc;
	path = group_path(name, "");
	rc = admin_call(&c, "PATCH", path, body, &out, NULL);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_pack("{s:s}", "name", name));
			out = NULL;
		} else {
			printf("updated group %s\n", name);
		}
	}
	cfx_free(path);
	json_decref(out);
	json_decref(body);
	return rc;
}

/* ------------------------------------------------------------------------
 * list, describe, delete
 * ------------------------------------------------------------------------ */

static int group_list(int argc, char **argv)
{
	static const char *const head[] = {"NAME", "FIFO", "RETRY", "CREATED"};
	struct cli c;
	json_t *out = NULL, *list, *g;
	struct cli_table *tb;
	size_t i;
	int rc;

	cli_init(&c, "group list", usage_list);
	if ((rc = cli_only_common(&c, argc, argv)) >= 0)
		return rc;
	rc = admin_get_list(&c, "/v1/groups", "groups", &out, &list);
	if (rc || !list)
		return rc;
	tb = cli_table_new(4, head);
	json_array_foreach(list, i, g)
	{
		char created[40], retry[256];
		cli_format_time(cli_json_int(g, "created_ms", 0), created, sizeof created);
		format_retry(json_object_get(g, "retry"), retry, sizeof retry);
		cli_table_addf(tb, "%s\t%s\t%s\t%s", cli_json_str(g, "name", "?"),
			       json_is_true(json_object_get(g, "fifo")) ? "yes" : "no", retry,
			       created);
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int group_describe(int argc, char **argv)
{
	static const char *const head[] = {"TOPIC",    "QUEUE", "COMMITTED", "NEXT",
					   "INFLIGHT", "END",	"LAG"};
	struct cli c;
	const char *name;
	json_t *out = NULL, *topics, *t, *q;
	char *path, retry[512];
	size_t i, k;
	int rc;

	cli_init(&c, "group describe", usage_describe);
	if ((rc = cli_one_name(&c, argc, argv, "group", &name)) >= 0)
		return rc;
	path = group_path(name, "");
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	if (c.json) {
		cli_json_print(out ? out : json_object());
		return CLI_OK;
	}
	cli_print_fields(out, stdout);
	if (json_is_object(json_object_get(out, "retry"))) {
		format_retry(json_object_get(out, "retry"), retry, sizeof retry);
		printf("retry       %s\n", retry);
	}
	topics = json_object_get(out, "topics");
	if (!json_is_array(topics) || !json_array_size(topics)) {
		printf("\n(the group consumes no topic yet)\n");
		json_decref(out);
		return CLI_OK;
	}
	struct cli_table *tb = cli_table_new(7, head);
	json_array_foreach(topics, i, t)
	{
		const char *tn = cli_json_str(t, "topic", "?");
		int64_t sum = 0;
		json_array_foreach(json_object_get(t, "queues"), k, q)
		{
			int64_t lag = cli_json_int(q, "lag", 0);
			sum += lag;
			cli_table_addf(tb, "%s\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld", tn,
				       (long long)cli_json_int(q, "queue", (int64_t)k),
				       (long long)cli_json_int(q, "committed", 0),
				       (long long)cli_json_int(q, "next", 0),
				       (long long)cli_json_int(q, "inflight", 0),
				       (long long)cli_json_int(q, "end", 0), (long long)lag);
		}
		cli_table_addf(tb, "%s\ttotal\t\t\t\t\t%lld", tn,
			       (long long)cli_json_int(t, "lag", sum));
	}
	putchar('\n');
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

static int group_delete(int argc, char **argv)
{
	struct cli c;
	const char *name;
	json_t *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "group delete", usage_delete);
	if ((rc = cli_one_name(&c, argc, argv, "group", &name)) >= 0)
		return rc;
	path = group_path(name, "");
	rc = admin_call(&c, "DELETE", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_pack("{s:s}", "deleted", name));
			out = NULL;
		} else {
			printf("deleted group %s\n", name);
		}
	}
	json_decref(out);
	return rc;
}

/* ------------------------------------------------------------------------
 * reset
 * ------------------------------------------------------------------------ */

static int group_reset(int argc, char **argv)
{
	struct cli c;
	const char *name = NULL, *topic = NULL, *offset = NULL, *when = NULL;
	int earliest = 0, latest = 0, r, done = 0, rc;
	int64_t v = 0;
	json_t *body, *out = NULL;
	char *path, what[96];

	cli_init(&c, "group reset", usage_reset);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--topic", topic);
		CLI_VALUE(&c, argc, argv, i, "--offset", offset);
		CLI_VALUE(&c, argc, argv, i, "--time", when);
		CLI_FLAG(argv, i, "--earliest", earliest);
		CLI_FLAG(argv, i, "--latest", latest);
		CLI_UNKNOWN(&c, argv[i]);
		if (name)
			return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
		name = argv[i++];
	}
	if (!name)
		return cli_usage_error(&c, "the group name is missing");
	if (!topic)
		return cli_usage_error(&c, "--topic is required");
	if (!!offset + !!when + earliest + latest != 1)
		return cli_usage_error(&c, "give exactly one of --offset, --time, --earliest, "
					   "--latest");
	if (offset && cli_int(&c, "--offset", offset, 0, INT64_MAX, &v))
		return CLI_EUSAGE;
	if (when && cli_parse_time(when, &v))
		return cli_usage_error(&c,
				       "--time: \"%s\" is neither RFC 3339 "
				       "(2024-05-01T12:00:00Z) nor milliseconds since the epoch",
				       when);
	if (latest)
		v = -1; /* the server's word for the end of every queue */
	body = json_pack("{s:s}", "topic", topic);
	if (when) {
		json_object_set_new(body, "timestamp_ms", json_integer(v));
		char t[40];
		cli_format_time(v, t, sizeof t);
		snprintf(what, sizeof what, "the first message at or after %s", t);
	} else {
		json_object_set_new(body, "offset", json_integer(v));
		snprintf(what, sizeof what, "%s",
			 earliest ? "the earliest offset"
			 : latest ? "the end (latest)"
				  : "");
		if (offset)
			snprintf(what, sizeof what, "offset %lld", (long long)v);
	}
	path = group_path(name, "/reset");
	rc = admin_call(&c, "POST", path, body, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_incref(body));
			out = NULL;
		} else {
			printf("reset group %s on topic %s to %s", name, topic, what);
			if (json_is_integer(json_object_get(out, "lag")))
				printf("; lag now %lld",
				       (long long)json_integer_value(json_object_get(out, "lag")));
			putchar('\n');
		}
	}
	json_decref(out);
	json_decref(body);
	return rc;
}

int cli_group(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", group_create}, {"list", group_list},	    {"describe", group_describe},
		{"update", group_update}, {"delete", group_delete}, {"reset", group_reset},
	};
	return cli_dispatch("group", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_group);
}
