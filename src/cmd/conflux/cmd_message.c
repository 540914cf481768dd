/*
 * cmd_message.c - `conflux message get`: looks messages up through the
 * admin HTTP API (GET /v1/messages by id, by key, by queue offset or by
 * time), and the printing of a message that `conflux consume` shares.
 *
 * A message is a JSON object of the admin API's shape: topic, queue,
 * offset, msg_id, tag, keys, born_ms, store_ms, properties, body (text) and
 * body_base64; consume adds attempt and message_group.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

static const char usage_message[] =
	"usage: conflux message get (--id ID | --topic T --key K |\n"
	"                            --topic T --queue Q --offset O [--count N] |\n"
	"                            --topic T --queue Q --time TIME) [--json]\n"
	"\n"
	"Looks messages up in the store:\n"
	"  --id ID                     by message id\n"
	"  --topic T --key K           by key (every message of T carrying key K)\n"
	"  --topic T --queue Q --offset O [--count N]\n"
	"                              N messages (default 1) of queue Q from offset O\n"
	"  --topic T --queue Q --time TIME\n"
	"                              the first message of queue Q stored at or after TIME\n"
	"                              (RFC 3339 or milliseconds since the epoch)\n"
	"Exit status 1 when nothing matches.\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

/* ------------------------------------------------------------------------
 * Printing
 * ------------------------------------------------------------------------ */

void cli_print_message(const json_t *m, int json)
{
	const json_t *keys = json_object_get(m, "keys"), *props = json_object_get(m, "properties");
	const char *body = cli_json_str(m, "body", NULL), *tag = cli_json_str(m, "tag", NULL);
	const char *group = cli_json_str(m, "message_group", NULL);
	char born[40];

	if (json) {
		char *s = json_dumps(m, JSON_COMPACT);
		if (s)
			puts(s);
		free(s);
		return;
	}
	printf("topic=%s queue=%lld offset=%lld id=%s", cli_json_str(m, "topic", "?"),
	       (long long)cli_json_int(m, "queue", -1), (long long)cli_json_int(m, "offset", -1),
	       cli_json_str(m, "msg_id", "-"));
	if (tag && *tag)
		printf(" tag=%s", tag);
	if (json_is_array(keys) && json_array_size(keys)) {
		size_t i;
		json_t *k;
		fputs(" keys=", stdout);
		json_array_foreach(keys, i, k) printf(
			"%s%s", i ? "," : "", json_is_string(k) ? json_string_value(k) : "?");
	}
	if (group)
		printf(" group=%s", group);
	if (cli_json_int(m, "attempt", 0) > 1)
		printf(" attempt=%lld", (long long)cli_json_int(m, "attempt", 0));
	cli_format_time(cli_json_int(m, "born_ms", 0), born, sizeof born);
	printf(" born=%s", born);
	if (json_is_object(props) && json_object_size(props)) {
		const char *k;
		json_t *v;
		int first = 1;
		fputs(" props={", stdout);
		json_object_foreach((json_t *)props, k, v)
		{
			char *s = cli_json_scalar(NULL, v);
			printf("%s%s=%s", first ? "" : ", ", k, s);
			cfx_free(s);
			first = 0;
		}
		fputc('}', stdout);
	}
	fputc('\n', stdout);
	if (body)
		printf("%s\n", body);
	else if (cli_json_str(m, "body_base64", NULL))
		printf("(binary body, base64) %s\n", cli_json_str(m, "body_base64", ""));
	else
		printf("(no body)\n");
}

/* ------------------------------------------------------------------------
 * message get
 * ------------------------------------------------------------------------ */

/* Appends "&name=escaped(value)" (or "?..." first) to the query in q. */
static void add_param(char *q, size_t len, const char *name, const char *value)
{
	char *esc = cli_url_escape(value);
	size_t at = strlen(q);

	snprintf(q + at, len - at, "%c%s=%s", strchr(q, '?') ? '&' : '?', name, esc);
	cfx_free(esc);
}

static int message_get(int argc, char **argv)
{
	struct cli c;
	const char *id = NULL, *topic = NULL, *key = NULL, *queue = NULL, *offset = NULL;
	const char *count = NULL, *when = NULL;
	char target[2048] = "/v1/messages", num[32];
	json_t *out = NULL, *list, *m;
	int64_t v;
	size_t i;
	int r, done = 0, rc;

	cli_init(&c, "message get", usage_message);
	for (int k = 1; k < argc;) {
		CLI_COMMON(&c, argc, argv, k);
		CLI_VALUE(&c, argc, argv, k, "--id", id);
		CLI_VALUE(&c, argc, argv, k, "--topic", topic);
		CLI_VALUE(&c, argc, argv, k, "--key", key);
		CLI_VALUE(&c, argc, argv, k, "--queue", queue);
		CLI_VALUE(&c, argc, argv, k, "--offset", offset);
		CLI_VALUE(&c, argc, argv, k, "--count", count);
		CLI_VALUE(&c, argc, argv, k, "--time", when);
		CLI_UNKNOWN(&c, argv[k]);
		return cli_usage_error(&c, "unexpected argument \"%s\"", argv[k]);
	}
	if (id) {
		if (topic || key || queue || offset || count || when)
			return cli_usage_error(&c, "--id takes no other selector");
		add_param(target, sizeof target, "id", id);
	} else if (topic && key) {
		if (queue || offset || count || when)
			return cli_usage_error(&c, "--key goes with --topic only");
		add_param(target, sizeof target, "topic", topic);
		add_param(target, sizeof target, "key", key);
	} else if (topic && queue && (offset || when) && !(offset && when)) {
		if (cli_int(&c, "--queue", queue, 0, 65535, &v))
			return CLI_EUSAGE;
		add_param(target, sizeof target, "topic", topic);
		add_param(target, sizeof target, "queue", queue);
		if (offset) {
			if (cli_int(&c, "--offset", offset, 0, INT64_MAX, &v))
				return CLI_EUSAGE;
			add_param(target, sizeof target, "offset", offset);
			if (count) {
				if (cli_int(&c, "--count", count, 1, 10000, &v))
					return CLI_EUSAGE;
				add_param(target, sizeof target, "count", count);
			}
		} else {
			if (count)
				return cli_usage_error(&c, "--count goes with --offset");
			if (cli_parse_time(when, &v))
				return cli_usage_error(&c,
						       "--time: \"%s\" is neither RFC 3339 nor "
						       "milliseconds since the epoch",
						       when);
			snprintf(num, sizeof num, "%lld", (long long)v);
			add_param(target, sizeof target, "time_ms", num);
		}
	} else {
		return cli_usage_error(&c, "say which messages: --id ID, --topic T --key K, "
					   "--topic T --queue Q --offset O, or --topic T --queue Q "
					   "--time TIME");
	}
	rc = admin_call(&c, "GET", target, NULL, &out, NULL);
	if (rc)
		return rc;
	list = cli_json_list(out, "messages");
	if (c.json)
		cli_json_print(out ? json_incref(out) : json_pack("{s:[]}", "messages"));
	else
		json_array_foreach(list, i, m) cli_print_message(m, 0);
	rc = list && json_array_size(list) ? CLI_OK : CLI_EFAIL;
	if (rc)
		cli_error(&c, "no message matches");
	json_decref(out);
	return rc;
}

int cli_message(int argc, char **argv)
{
	static const struct cli_sub subs[] = {{"get", message_get}};
	return cli_dispatch("message", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_message);
}
