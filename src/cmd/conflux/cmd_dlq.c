/*
 * cmd_dlq.c - `conflux dlq list|redrive`: a consumer group's dead-letter
 * queue (the topic %DLQ%<group>) over the admin HTTP API
 * (GET /v1/groups/{g}/dlq, POST /v1/groups/{g}/dlq/redrive).
 *
 * `redrive` asks for REDRIVE_CHUNK messages per request, so that each
 * request stays well inside --timeout however large the queue is, and
 * adds up the answers; it stops when a request finds fewer messages than
 * it asked for. docs/cli.md has the output.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

#define LIST_MAX      1000	 /* the server's bound for ?max= */
#define REDRIVE_CHUNK 1000	 /* messages one request looks at */
#define REDRIVE_MAX   1000000000 /* --max */
#define PREVIEW_CHARS 40	 /* of a body, in the table */

static const char usage_dlq[] =
	"usage: conflux dlq <subcommand> GROUP [options]\n"
	"\n"
	"  list GROUP [--max N]      the dead letters of GROUP not re-driven yet\n"
	"  redrive GROUP [--max N]   send them back to the topics they came from\n"
	"\n"
	"A group's dead-letter queue is the topic %DLQ%GROUP: messages the group gave\n"
	"up on after its last delivery attempt, or that a consumer sent there.\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_list[] =
	"usage: conflux dlq list GROUP [--max N] [--json]\n"
	"\n"
	"Lists the messages of GROUP's dead-letter queue from where re-driving\n"
	"stands (the beginning if it never ran) to the end: offset, message id,\n"
	"origin topic, delivery attempts, tag and the start of the body.\n"
	"  --max N   at most N messages (1 to 1000, default 100)\n";

static const char usage_redrive[] =
	"usage: conflux dlq redrive GROUP [--max N] [--json]\n"
	"\n"
	"Sends the messages of GROUP's dead-letter queue back to their origin topics\n"
	"(property DLQ_ORIGIN_TOPIC), where GROUP receives them again as new messages,\n"
	"and removes each from the dead-letter queue once its copy is on disk.\n"
	"  --max N   at most N messages (default: all of them)\n"
	"Messages without an origin topic, or whose origin topic no longer exists,\n"
	"stay in the dead-letter queue; then the exit status is 1.\n";

static char *dlq_path(const char *group, const char *suffix)
{
	char *esc = cli_url_escape(group);
	size_t n = strlen(esc) + strlen(suffix) + 24;
	char *p = cfx_malloc(n);

	snprintf(p, n, "/v1/groups/%s/dlq%s", esc, suffix);
	cfx_free(esc);
	return p;
}

/* Reads GROUP, --max and the common options: -1 to go on, else the exit status. */
static int group_and_max(struct cli *c, int argc, char **argv, const char **group, const char **max)
{
	int r, done = 0;

	*group = NULL;
	*max = NULL;
	for (int i = 1; i < argc;) {
		CLI_COMMON(c, argc, argv, i);
		CLI_VALUE(c, argc, argv, i, "--max", *max);
		CLI_UNKNOWN(c, argv[i]);
		if (*group)
			return cli_usage_error(c, "unexpected argument \"%s\"", argv[i]);
		*group = argv[i++];
	}
	if (!*group)
		return cli_usage_error(c, "the group name is missing");
	return -1;
}

/* The start of a body for a table cell: one line, at most PREVIEW_CHARS characters. */
static void preview(const json_t *m, char *buf, size_t len)
{
	const char *body = cli_json_str(m, "body", NULL);
	size_t o = 0, chars = 0;

	if (!body && json_object_get(m, "body_base64")) {
		snprintf(buf, len, "(binary, %lld bytes)",
			 (long long)cli_json_int(m, "body_size", 0));
		return;
	}
	if (!body) {
		snprintf(buf, len, "(no body)");
		return;
	}
	for (const unsigned char *p = (const unsigned char *)body; *p && o + 8 < len; p++) {
		if ((*p & 0xc0) != 0x80 && chars++ == PREVIEW_CHARS) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		buf[o++] = *p < 0x20 || *p == 0x7f ? ' ' : (char)*p;
	}
	buf[o] = '\0';
}

static int dlq_list(int argc, char **argv)
{
	static const char *const head[] = {"OFFSET",   "MESSAGE ID", "ORIGIN TOPIC",
					   "ATTEMPTS", "TAG",	     "BODY"};
	struct cli c;
	const char *group, *max;
	char *path, query[32] = "";
	json_t *out = NULL, *list, *m;
	int64_t n = 0;
	size_t i;
	int rc;

	cli_init(&c, "dlq list", usage_list);
	if ((rc = group_and_max(&c, argc, argv, &group, &max)) >= 0)
		return rc;
	if (max) {
		if (cli_int(&c, "--max", max, 1, LIST_MAX, &n))
			return CLI_EUSAGE;
		snprintf(query, sizeof query, "?max=%lld", (long long)n);
	}
	path = dlq_path(group, query);
	rc = admin_call(&c, "GET", path, NULL, &out, NULL);
	cfx_free(path);
	if (rc)
		return rc;
	list = json_object_get(out, "messages");
	if (!json_is_array(list)) {
		json_decref(out);
		return cli_error(&c, "the answer has no list of messages");
	}
	if (c.json) {
		cli_json_print(out);
		return CLI_OK;
	}
	int64_t pos = cli_json_int(out, "position", 0), end = cli_json_int(out, "end", 0);
	printf("%s: %lld message%s not re-driven (offsets %lld to %lld)\n",
	       cli_json_str(out, "topic", "?"), (long long)(end > pos ? end - pos : 0),
	       end - pos == 1 ? "" : "s", (long long)pos, (long long)end);
	if (json_array_size(list)) {
		struct cli_table *tb = cli_table_new(6, head);
		json_array_foreach(list, i, m)
		{
			char body[4 * PREVIEW_CHARS + 16], attempts[24];
			const json_t *a = json_object_get(m, "attempts");
			if (json_is_integer(a))
				snprintf(attempts, sizeof attempts, "%lld",
					 (long long)json_integer_value(a));
			else
				snprintf(attempts, sizeof attempts, "-");
			preview(m, body, sizeof body);
			cli_table_addf(tb, "%lld\t%s\t%s\t%s\t%s\t%s",
				       (long long)cli_json_int(m, "offset", -1),
				       cli_json_str(m, "message_id", "-"),
				       cli_json_str(m, "origin_topic", "-"), attempts,
				       cli_json_str(m, "tag", "-"), body);
		}
		putchar('\n');
		cli_table_print(tb, stdout);
		if ((int64_t)json_array_size(list) < end - pos)
			printf("(%zu shown; --max shows up to %d)\n", json_array_size(list),
			       LIST_MAX);
	}
	json_decref(out);
	return CLI_OK;
}

static int dlq_redrive(int argc, char **argv)
{
	struct cli c;
	const char *group, *max;
	char *path, *why = NULL;
	int64_t want = REDRIVE_MAX, total = 0;
	int rc;

	cli_init(&c, "dlq redrive", usage_redrive);
	if ((rc = group_and_max(&c, argc, argv, &group, &max)) >= 0)
		return rc;
	if (max && cli_int(&c, "--max", max, 1, REDRIVE_MAX, &want))
		return CLI_EUSAGE;
	path = dlq_path(group, "/redrive");
	for (;;) {
		int64_t ask = want - total < REDRIVE_CHUNK ? want - total : REDRIVE_CHUNK, got;
		json_t *body = json_pack("{s:I}", "max", (json_int_t)ask), *out = NULL;

		rc = admin_call(&c, "POST", path, body, &out, NULL);
		json_decref(body);
		if (rc) {
			if (total)
				fprintf(stderr,
					"conflux dlq redrive: %lld message%s re-driven before "
					"that\n",
					(long long)total, total == 1 ? " was" : "s were");
			json_decref(out);
			cfx_free(path);
			cfx_free(why);
			return rc;
		}
		got = cli_json_int(out, "redriven", 0);
		total += got;
		if (cli_json_str(out, "error", NULL) && !why)
			why = cfx_strdup(cli_json_str(out, "error", ""));
		json_decref(out);
		/* Done: the limit, or a request that found fewer than it asked for
		 * (messages left in place count as looked at: go on while any moved). */
		if (total >= want || got == 0 || (got < ask && !why))
			break;
	}
	cfx_free(path);
	if (c.json) {
		json_t *o = json_pack("{s:s, s:I}", "group", group, "redriven", (json_int_t)total);
		if (why)
			json_object_set_new(o, "error", json_string(why));
		cli_json_print(o);
	} else {
		printf("re-drove %lld message%s of group %s to their origin topics\n",
		       (long long)total, total == 1 ? "" : "s", group);
	}
	if (why) {
		cli_error(&c, "%s", why);
		cfx_free(why);
		return CLI_EFAIL;
	}
	return CLI_OK;
}

int cli_dlq(int argc, char **argv)
{
	static const struct cli_sub subs[] = {{"list", dlq_list}, {"redrive", dlq_redrive}};
	return cli_dispatch("dlq", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_dlq);
}
