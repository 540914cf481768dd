/*
 * cmd_event.c - `conflux event put`: sends one CloudEvent to an
 * EventBridge bus, in the structured mode (POST /v1/buses/{bus}/events,
 * Content-Type: application/cloudevents+json). The server validates the
 * event; this command only assembles it (docs/eventbridge.md).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"

#define EVENT_EXTS_MAX 60 /* --ext options (the server allows 64 attributes in all) */

static const char usage_event[] =
	"usage: conflux event put BUS --type T --source S [options]\n"
	"\n"
	"  put BUS   send one CloudEvent to a bus\n"
	"\n"
	"Common options: --server HOST:PORT, --timeout DURATION, --json.\n";

static const char usage_put[] =
	"usage: conflux event put BUS --type TYPE --source SOURCE [options] [--json]\n"
	"\n"
	"  --type TYPE            the event type (order.created)\n"
	"  --source URI           the source, a URI reference (/shop/eu)\n"
	"  --id ID                default: a random UUID\n"
	"  --subject S            the subject attribute\n"
	"  --time TIME            RFC 3339 (default: none; `now` for the current time)\n"
	"  --data JSON|@FILE      JSON data (datacontenttype application/json)\n"
	"  --data-text TEXT       text data (datacontenttype text/plain)\n"
	"  --content-type TYPE    another datacontenttype for the data\n"
	"  --dataschema URI       the dataschema attribute\n"
	"  --ext NAME=VALUE       an extension attribute (a string); repeat for more\n"
	"\n"
	"Prints the id of the event once the server stored it.\n";

/* A random (version 4) UUID into buf[37]. */
static int random_uuid(char buf[37])
{
	uint8_t b[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof b)
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

static int event_put(int argc, char **argv)
{
	struct cli c;
	const char *bus = NULL, *type = NULL, *source = NULL, *id = NULL, *subject = NULL;
	const char *time = NULL, *data = NULL, *text = NULL, *ctype = NULL, *schema = NULL, *val;
	const char *exts[EVENT_EXTS_MAX];
	int nexts = 0, r, done = 0, rc;
	char uuid[37], *path, *esc;
	json_t *ev, *out = NULL;

	cli_init(&c, "event put", usage_put);
	for (int i = 1; i < argc;) {
		CLI_COMMON(&c, argc, argv, i);
		CLI_VALUE(&c, argc, argv, i, "--type", type);
		CLI_VALUE(&c, argc, argv, i, "--source", source);
		CLI_VALUE(&c, argc, argv, i, "--id", id);
		CLI_VALUE(&c, argc, argv, i, "--subject", subject);
		CLI_VALUE(&c, argc, argv, i, "--time", time);
		CLI_VALUE(&c, argc, argv, i, "--data", data);
		CLI_VALUE(&c, argc, argv, i, "--data-text", text);
		CLI_VALUE(&c, argc, argv, i, "--content-type", ctype);
		CLI_VALUE(&c, argc, argv, i, "--dataschema", schema);
		if ((r = cli_opt(&c, argc, argv, &i, "--ext", &val)) != 0) {
			if (r < 0)
				return CLI_EUSAGE;
			if (nexts == EVENT_EXTS_MAX)
				return cli_usage_error(&c, "more than %d --ext options",
						       EVENT_EXTS_MAX);
			exts[nexts++] = val;
			continue;
		}
		CLI_UNKNOWN(&c, argv[i]);
		if (bus)
			return cli_usage_error(&c, "unexpected argument \"%s\"", argv[i]);
		bus = argv[i++];
	}
	if (!bus)
		return cli_usage_error(&c, "the bus name is missing");
	if (!type || !source)
		return cli_usage_error(&c, "--type and --source are required");
	if (data && text)
		return cli_usage_error(&c, "--data and --data-text exclude each other");
	if (ctype && !data && !text)
		return cli_usage_error(&c, "--content-type describes --data or --data-text");
	if (!id) {
		if (random_uuid(uuid))
			return cli_error(&c, "cannot read /dev/urandom for a random id: give --id");
		id = uuid;
	}
	ev = json_pack("{s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", id, "source", source,
		       "type", type);
	if (subject)
		json_object_set_new(ev, "subject", json_string(subject));
	if (schema)
		json_object_set_new(ev, "dataschema", json_string(schema));
	if (time) {
		char now[40];
		if (!strcmp(time, "now")) {
			cli_format_time(cfx_clock_wall_ms(), now, sizeof now);
			time = now;
		}
		json_object_set_new(ev, "time", json_string(time));
	}
	if (data) {
		json_t *d = cli_json_arg(&c, "--data", data);
		if (!d) {
			json_decref(ev);
			return CLI_EUSAGE;
		}
		json_object_set_new(ev, "data", d);
		json_object_set_new(ev, "datacontenttype",
				    json_string(ctype ? ctype : "application/json"));
	} else if (text) {
		json_t *t = json_string(text);
		if (!t) {
			json_decref(ev);
			return cli_usage_error(&c, "--data-text: not UTF-8");
		}
		json_object_set_new(ev, "data", t);
		json_object_set_new(ev, "datacontenttype",
				    json_string(ctype ? ctype : "text/plain"));
	}
	for (int k = 0; k < nexts; k++) {
		const char *eq = strchr(exts[k], '=');
		if (!eq || eq == exts[k]) {
			json_decref(ev);
			return cli_usage_error(&c, "--ext: \"%s\" is not NAME=VALUE", exts[k]);
		}
		char *name = cfx_malloc((size_t)(eq - exts[k]) + 1);
		memcpy(name, exts[k], (size_t)(eq - exts[k]));
		name[eq - exts[k]] = '\0';
		if (json_object_get(ev, name)) {
			json_decref(ev);
			rc = cli_usage_error(&c, "--ext: \"%s\" is set already", name);
			cfx_free(name);
			return rc;
		}
		json_object_set_new(ev, name, json_string(eq + 1));
		cfx_free(name);
	}
	esc = cli_url_escape(bus);
	size_t plen = strlen(esc) + 32;
	path = cfx_malloc(plen);
	snprintf(path, plen, "/v1/buses/%s/events", esc);
	cfx_free(esc);
	rc = admin_call_typed(&c, "POST", path, "application/cloudevents+json", ev, &out, NULL);
	cfx_free(path);
	if (rc == CLI_OK) {
		if (c.json)
			cli_json_print(json_pack("{s:s, s:s, s:I}", "bus", bus, "id", id,
						 "accepted",
						 (json_int_t)cli_json_int(out, "accepted", 1)));
		else
			printf("put event %s on bus %s\n", id, bus);
	}
	json_decref(out);
	json_decref(ev);
	return rc;
}

int cli_event(int argc, char **argv)
{
	static const struct cli_sub subs[] = {
		{"put", event_put},
	};
	return cli_dispatch("event", argc, argv, subs, CFX_ARRAY_LEN(subs), usage_event);
}
