/*
 * cmd_target.c - `conflux target create|list|describe|delete`: where the
 * EventBridge delivers events (HTTP endpoints, buses, topics, MQTT topics),
 * with their retry policies and dead letters, over the admin HTTP API
 * (/v1/targets). The options build the target's JSON definition
 * (docs/eventbridge.md); `describe` shows its delivery counters too.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

#define TARGET_HEADERS_MAX 32 /* --header options */

static const char usage_target[] =
	"usage: conflux target <subcommand> [options]\n"
	"\n"
	"  create NAME --type http|bus|topic|mqtt ...   create (or --replace) a target\n"
	"  list                                         list targets\n"
	"  describe NAME                                a target and its delivery counters\n"
	"  delete NAME                                  delete a target no rule uses\n"
	"\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_create[] =
	"usage: conflux target create NAME --type TYPE [options] [--replace] [--json]\n"
	"\n"
	"Where events go, by --type:\n"
	"  http    --url http://HOST[:PORT]/PATH       POST each event there\n"
	"          [--mode binary|structured]          CloudEvents HTTP mode (default binary)\n"
	"          [--header NAME=VALUE]...            extra request headers\n"
	"          [--basic USER:PASSWORD | --api-key HEADER=VALUE]   credentials\n"
	"          [--request-timeout DURATION]        of one delivery (server default 10s)\n"
	"  bus     --bus BUS                           into another bus (routed again there)\n"
	"  topic   --topic TOPIC                       into a topic, as a message\n"
	"  mqtt    --mqtt-topic TOPIC                  to MQTT subscribers of TOPIC\n"
	"\n"
	"Retries and dead letters (every type):\n"
	"  --strategy exponential|backoff   exponential: initial * 2^(n-1), up to max;\n"
	"                                   backoff: a fixed interval (default exponential)\n"
	"  --initial-ms N, --max-ms N       exponential delays (defaults 1000, 60000)\n"
	"  --interval-ms N                  backoff delay (default 5000)\n"
	"  --max-attempts N                 attempts before the dead letters (default 10)\n"
	"  --max-age DURATION               older deliveries go to the dead letters (default 24h)\n"
	"  --dead-letter-topic TOPIC        default %EB%DLQ%NAME\n"
	"  --concurrency N                  deliveries in flight, 1..64 (default 4)\n"
	"  --queue-max N                    pending deliveries before new ones are dead-lettered\n"
	"                                   (default 100000)\n"
	"  --replace                        create it, or replace the target of that name (PUT)\n";

static const char usage_list[] = "usage: conflux target list [--json]\n"
				 "\n"
				 "Lists the targets with their type and destination.\n";

static const char usage_describe[] =
	"usage: conflux target describe NAME [--json]\n"
	"\n"
	"Shows a target, its retry policy and its counters: deliveries pending,\n"
	"delivered, retried and dead-lettered.\n";

static const char usage_delete[] =
	"usage: conflux target delete NAME [--json]\n"
	"\n"
	"Deletes a target; a target a rule still uses cannot be deleted (409).\n"
	"Deliveries already queued for it stay in its topic.\n";

/* "/v1/targets[/<escaped name>]", a new string. */
static char *target_path(const char *name)
{
	char *esc = name ? cli_url_escape(name) : NULL;
	size_t n = (esc ? strlen(esc) : 0) + 16;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/targets%s%s", esc ? "/" : "", esc ? esc : "");
	cfx_free(esc);
	return p;
}

/* Splits "K<sep>V" at the first `sep`: *k a new string, *v borrowed. -1 (usage error printed) if
 * none. */
static int split_kv(struct cli *c, const char *what, const char *arg, char sep, char **k,
		    const char **v)
{
	const char *s = strchr(arg, sep);

	if (!s || s == arg) {
		cli_usage_error(c, "%s: \"%s\" is not NAME%cVALUE", what, arg, sep);
		return -1;
	}
	*k = cfx_malloc((size_t)(s - arg) + 1);
	memcpy(*k, arg, (size_t)(s - arg));
	(*k)[s - arg] = '\0';
	*v = s + 1;
	return 0;
}

struct target_opts {
	const char *name, *type, *url, *mode, *basic, *api_key, *req_timeout, *bus, *topic,
		*mqtt_topic, *strategy, *initial_ms, *max_ms, *interval_ms, *max_attempts, *max_age,
		*dlq, *concurrency, *queue_max;
	const char *headers[TARGET_HEADERS_MAX];
	int nheaders, replace;
};

/* Sets integer member `key` of `o` from option `what` in [min, max]. -1 on a usage error. */
static int set_int(struct cli *c, json_t *o, const char *key, const char *what, const char *s,
		   int64_t min, int64_t max)
{
	int64_t v;

	if (!s)
		return 0;
	if (cli_int(c, what, s, min, max, &v))
		return -1;
	json_object_set_new(o, key, json_integer(v));
	return 0;
}

/* The JSON definition from the options (a new reference), or NULL after a usage error. */
static json_t *target_def(struct cli *c, const struct target_opts *t)
{
	json_t *def = json_pack("{s:s, s:s}", "name", t->name, "type", t->type);
	json_t *retry = json_object();
	int64_t ms;

#define NEED(opt, var)                                                                             \
	if (!(var)) {                                                                              \
		cli_usage_error(c, "--type %s needs %s", t->type, opt);                            \
		goto fail;                                                                         \
	}
#define ONLY_HTTP(opt, var)                                                                        \
	if ((var) && strcmp(t->type, "http")) {                                                    \
		cli_usage_error(c, "%s is for --type http only", opt);                             \
		goto fail;                                                                         \
	}
	ONLY_HTTP("--url", t->url);
	ONLY_HTTP("--mode", t->mode);
	ONLY_HTTP("--basic", t->basic);
	ONLY_HTTP("--api-key", t->api_key);
	ONLY_HTTP("--request-timeout", t->req_timeout);
	ONLY_HTTP("--header", t->nheaders ? "" : NULL);
	if (!strcmp(t->type, "http")) {
		NEED("--url", t->url);
		json_object_set_new(def, "url", json_string(t->url));
		if (t->mode) {
			if (strcmp(t->mode, "binary") && strcmp(t->mode, "structured")) {
				cli_usage_error(c, "--mode: \"%s\" is not binary or structured",
						t->mode);
				goto fail;
			}
			json_object_set_new(def, "mode", json_string(t->mode));
		}
		if (t->nheaders) {
			json_t *h = json_object();
			json_object_set_new(def, "headers", h);
			for (int i = 0; i < t->nheaders; i++) {
				char *k;
				const char *v;
				if (split_kv(c, "--header", t->headers[i], '=', &k, &v))
					goto fail;
				json_object_set_new(h, k, json_string(v));
				cfx_free(k);
			}
		}
		if (t->basic && t->api_key) {
			cli_usage_error(c, "--basic and --api-key exclude each other");
			goto fail;
		}
		if (t->basic || t->api_key) {
			char *k;
			const char *v;
			if (split_kv(c, t->basic ? "--basic" : "--api-key",
				     t->basic ? t->basic : t->api_key, t->basic ? ':' : '=', &k,
				     &v))
				goto fail;
			if (t->basic)
				json_object_set_new(def, "auth",
						    json_pack("{s:s, s:s, s:s}", "type", "basic",
							      "user", k, "password", v));
			else
				json_object_set_new(def, "auth",
						    json_pack("{s:s, s:s, s:s}", "type", "api_key",
							      "header", k, "value", v));
			cfx_free(k);
		}
		if (t->req_timeout) {
			if (cli_duration(c, "--request-timeout", t->req_timeout, &ms))
				goto fail;
			json_object_set_new(def, "timeout_ms", json_integer(ms));
		}
	} else if (!strcmp(t->type, "bus")) {
		NEED("--bus", t->bus);
		json_object_set_new(def, "bus", json_string(t->bus));
	} else if (!strcmp(t->type, "topic")) {
		NEED("--topic", t->topic);
		json_object_set_new(def, "topic", json_string(t->topic));
	} else if (!strcmp(t->type, "mqtt")) {
		NEED("--mqtt-topic", t->mqtt_topic);
		json_object_set_new(def, "mqtt_topic", json_string(t->mqtt_topic));
	} else {
		cli_usage_error(c, "--type: \"%s\" is not http, bus, topic or mqtt", t->type);
		goto fail;
	}
	if ((t->bus && strcmp(t->type, "bus")) || (t->topic && strcmp(t->type, "topic")) ||
	    (t->mqtt_topic && strcmp(t->type, "mqtt"))) {
		cli_usage_error(c, "--bus, --topic and --mqtt-topic go with --type bus, topic and "
				   "mqtt");
		goto fail;
	}
#undef NEED
#undef ONLY_HTTP
	if (t->strategy) {
		if (strcmp(t->strategy, "exponential") && strcmp(t->strategy, "backoff")) {
			cli_usage_error(c, "--strategy: \"%s\" is not exponential or backoff",
					t->strategy);
			goto fail;
		}
		json_object_set_new(retry, "strategy", json_string(t->strategy));
	}
	if (set_int(c, retry, "initial_ms", "--initial-ms", t->initial_ms, 1, INT64_MAX) ||
	    set_int(c, retry, "max_ms", "--max-ms", t->max_ms, 1, INT64_MAX) ||
	    set_int(c, retry, "interval_ms", "--interval-ms", t->interval_ms, 1, INT64_MAX) ||
	    set_int(c, retry, "max_attempts", "--max-attempts", t->max_attempts, 1, 1000000))
		goto fail;
	if (t->max_age) {
		if (cli_duration(c, "--max-age", t->max_age, &ms))
			goto fail;
		json_object_set_new(retry, "max_age_ms", json_integer(ms));
	}
	if (json_object_size(retry))
		json_object_set(def, "retry", retry);
	if (t->dlq)
		json_object_set_new(def, "dead_letter_topic", json_string(t->dlq));
	if (set_int(c, def, "concurrency", "--concurrency", t->concurrency, 1, 64) ||
	    set_int(c, def, "queue_max", "--queue-max", t->queue_max, 1, INT64_MAX))
		goto fail;
	json_decref(retry);
	return def;
fail:
	json_decref(retry);
	json_decref(def);
	return NULL;
}

static int target_create(int argc, char **argv)
{
	struct cli c;
	struct target_opts t = {0};
	const char *val;
	json_t *def, *out = NULL;
	char *path;
	int r, done = 0, rc;

	cli_init(&c, "target create", usage_create);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--type", t.type);
		CLI_VALUE(&c, argc, argv, i, "--url", t.url);
		CLI_VALUE(&c, argc, argv, i, "--mode", t.mode);
		CLI_VALUE(&c, argc, argv, i, "--basic", t.basic);
		CLI_VALUE(&c, argc, argv, i, "--api-key", t.api_key);
		CLI_VALUE(&c, argc, argv, i, "--request-timeout", t.req_timeout);
		CLI_VALUE(&c, argc, argv, i, "--bus", t.bus);
		CLI_VALUE(&c, argc, argv, i, "--topic", t.topic);
		CLI_VALUE(&c, argc, argv, i, "--mqtt-topic", t.mqtt_topic);
		CLI_VALUE(&c, argc, argv, i, "--strategy", t.strategy);
		CLI_VALUE(&c, argc, argv, i, "--initial-ms", t.initial_ms);
		CLI_VALUE(&c, argc, argv, i, "--max-ms", t.max_ms);
		CLI_VALUE(&c, argc, argv, i, "--interval-ms", t.interval_ms);
		CLI_VALUE(&c, argc, argv, i, "--max-attempts", t.max_attempts);
		CLI_VALUE(&c, argc, argv, i, "--max-age", t.max_age);
		CLI_VALUE(&c, argc, argv, i, "--dead-letter-topic", t.dlq);
		CLI_VALUE(&c, argc, argv, i, "--concurrency", t.concurrency);
		CLI_VALUE(&c, argc, argv, i, "--queue-max", t.queue_max);
		CLI_FLAG(argv, i, "--replace", t.replace);
		if ((r = cli_opt(&c, argc, argv, &i, "--header", &val)) != 0) {
			if (r < 0)
				return CLI_EUSAGE;
			if (t.nheaders == TARGET_HEADERS_MAX)
				return cli_usage_error(&c, "more than %d --header options",
						       TARGET_HEADERS_MAX);
			t.headers[t.nheaders++] = val;
			continue;
		}
		CLI_UNKNOWN(&c, argv[i]);
		if (t.name)
			return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
		t.name = argv[i++];
	}
	if (!t.name)
		return cli_usage_error(&c, "the target name is missing");
	if (!t.type)
		return cli_usage_error(&c, "--type is required (http, bus, topic or mqtt)");
	if (!(def = target_def(&c, &t)))
		return CLI_EUSAGE;
	path = target_path(t.replace ? t.name : NULL);
	rc = admin_call(&c, t.replace ? "PUT" : "POST", path, def, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json) {
			cli_json_print(out ? out : json_incref(def));
			out = NULL;
		} else {
			printf("%s target %s (%s)\n", t.replace ? "put" : "created", t.name,
			       t.type);
		}
	}
	json_decref(out);
	json_decref(def);
	return rc;
}

/* Where a target delivers, for the tables: the URL, bus, topic or MQTT topic. */
static const char *destination(const json_t *t)
{
	static const char *const keys[] = {"url", "bus", "topic", "mqtt_topic"};

	for (size_t i = 0; i < CFX_ARRAY_LEN(keys); i++)
		if (cli_json_str(t, keys[i], NULL))
			return cli_json_str(t, keys[i], NULL);
	return "-";
}

static int target_list(int argc, char **argv)
{
	static const char *const head[] = {"NAME", "TYPE", "DESTINATION", "DEAD LETTERS"};
	struct cli c;
	json_t *out = NULL, *list, *t;
	struct cli_table *tb;
	size_t i;
	int rc;

	cli_init(&c, "target list", usage_list);
	if ((rc = cli_only_common(&c, argc, argv)) >= 0)
		return rc;
	rc = admin_get_list(&c, "/v1/targets", "targets", &out, &list);
	if (rc || !list)
		return rc;
	tb = cli_table_new(4, head);
	json_array_foreach(list, i, t)
	{
		cli_table_addf(tb, "%s\t%s\t%s\t%s", cli_json_str(t, "name", "?"),
			       cli_json_str(t, "type", "?"), destination(t),
			       cli_json_str(t, "dead_letter_topic", "-"));
	}
	cli_table_print(tb, stdout);
	json_decref(out);
	return CLI_OK;
}

/* Prints the members of object member `key` of `o` under a title, if it is there. */
static void print_section(const json_t *o, const char *key, const char *title)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_object(v) || !json_object_size(v))
		return;
	printf("\n%s\n", title);
	cli_print_fields(v, stdout);
}

static int target_describe(int argc, char **argv)
{
	struct cli c;
	const char *name;
	json_t *out = NULL, *auth;
	char *path;
	int rc;

	cli_init(&c, "target describe", usage_describe);
	if ((rc = cli_one_name(&c, argc, argv, "target", &name)) >= 0)
		return rc;
	path = target_path(name);
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	if (c.json) {
		cli_json_print(out ? out : json_object());
		return CLI_OK;
	}
	cli_print_fields(out, stdout);
	print_section(out, "headers", "headers");
	auth = json_object_get(out, "auth");
	if (json_is_object(auth)) {
		/* The secret is not shown, whatever the server answers. */
		json_t *shown = json_deep_copy(auth);
		if (json_object_get(shown, "password"))
			json_object_set_new(shown, "password", json_string("***"));
		if (json_object_get(shown, "value"))
			json_object_set_new(shown, "value", json_string("***"));
		printf("\nauth\n");
		cli_print_fields(shown, stdout);
		json_decref(shown);
	}
	print_section(out, "retry", "retry");
	print_section(out, "stats", "deliveries");
	json_decref(out);
	return CLI_OK;
}

static int target_delete(int argc, char **argv)
{
	struct cli c;
	const char *name;
	json_t *out = NULL;
	char *path;
	int rc;

	cli_init(&c, "target delete", usage_delete);
	if ((rc = cli_one_name(&c, argc, argv, "target", &name)) >= 0)
		return rc;
	path = target_path(name);
	rc = admin_call(&c, "DELETE", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json)
			cli_json_print(json_pack("{s:s}", "deleted", name));
		else
			printf("deleted target %s\n", name);
	}
	json_decref(out);
	return rc;
}

int cli_target(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"create", target_create},
		{"list", target_list},
		{"describe", target_describe},
		{"delete", target_delete},
	};
	return cli_dispatch("target", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_target);
}
