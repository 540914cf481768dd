/*
 * cmd_consume.c - `conflux consume TOPIC --group G`: tails a topic as a
 * consumer group over the RocketMQ gRPC API, the way a SimpleConsumer
 * does: QueryRoute, subscription settings on Telemetry (which registers
 * the group: a new group starts at the end of every queue), then
 * ReceiveMessage long polls, each answer printed and acknowledged
 * (AckMessage) before the next poll.
 *
 * It stops after --count messages or at SIGINT/SIGTERM: then the receive
 * in progress is abandoned (messages the server hands to it later stay
 * invisible for --invisible, then come back), what was already received
 * is printed and acknowledged, and the exit status is 0.
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"
#include "cmd/conflux/rmq_client.h"

#define POLL_SLICE_MS 200 /* how often a waiting receive looks at cli_stop */

static const char usage_consume[] =
	"usage: conflux consume TOPIC --group G [options]\n"
	"\n"
	"Receives messages of TOPIC as consumer group G, prints them and acknowledges\n"
	"them, until --count messages arrived or Ctrl-C. A group that never consumed\n"
	"TOPIC starts at its end (see `conflux group reset` to start elsewhere).\n"
	"\n"
	"  --group G            the consumer group (required)\n"
	"  --tag EXPR           only messages with these tags: \"a || b\" (default *)\n"
	"  --count N            stop after N messages (default: run until interrupted)\n"
	"  --invisible DURATION how long a received message stays hidden from other\n"
	"                       consumers before it is delivered again unless acknowledged\n"
	"                       (default 30s; the server accepts 10s to 12h)\n"
	"  --wait DURATION      long-polling time of one receive (default 20s)\n"
	"  --no-ack             do not acknowledge: the messages come back after --invisible\n"
	"  --server, --grpc, --timeout as for `conflux produce`\n"
	"  --json               one JSON object per message\n";

struct consume {
	struct cli c;
	const char *topic, *group, *tag;
	int64_t count, invisible_ms, wait_ms;
	int no_ack;
	struct rmq_cl *rc;
	char broker[128];
	uint64_t received;
};

/* A delivered message as JSON (the admin API's shape, plus attempt and message_group). */
static json_t *message_json(const RPB(Message) * m)
{
	const RPB(SystemProperties) *sp = m->system_properties;
	json_t *o = json_object(), *keys = json_array(), *props = json_object();
	char *b64 = cli_base64(m->body.data, m->body.len);

	json_object_set_new(o, "topic",
			    json_string(m->topic && m->topic->name ? m->topic->name : ""));
	json_object_set_new(o, "queue", json_integer(sp->queue_id));
	json_object_set_new(o, "offset",
			    json_integer(sp->_queue_offset_case ? sp->queue_offset : -1));
	json_object_set_new(o, "msg_id", json_string(sp->message_id ? sp->message_id : ""));
	if (sp->_tag_case)
		json_object_set_new(o, "tag", json_string(sp->tag));
	for (size_t i = 0; i < sp->n_keys; i++)
		json_array_append_new(keys, json_string(sp->keys[i]));
	json_object_set_new(o, "keys", keys);
	if (sp->born_timestamp)
		json_object_set_new(o, "born_ms",
				    json_integer(sp->born_timestamp->seconds * 1000 +
						 sp->born_timestamp->nanos / 1000000));
	if (sp->store_timestamp)
		json_object_set_new(o, "store_ms",
				    json_integer(sp->store_timestamp->seconds * 1000 +
						 sp->store_timestamp->nanos / 1000000));
	if (sp->_delivery_attempt_case)
		json_object_set_new(o, "attempt", json_integer(sp->delivery_attempt));
	if (sp->_message_group_case)
		json_object_set_new(o, "message_group", json_string(sp->message_group));
	for (size_t i = 0; i < m->n_user_properties; i++)
		json_object_set_new(props, m->user_properties[i]->key,
				    json_string(m->user_properties[i]->value));
	json_object_set_new(o, "properties", props);
	if (cli_is_text(m->body.data, m->body.len))
		json_object_set_new(o, "body",
				    json_stringn((const char *)m->body.data, m->body.len));
	else
		json_object_set_new(o, "body", json_null());
	json_object_set_new(o, "body_base64", json_string(b64));
	cfx_free(b64);
	return o;
}

/* What one receive brought. */
struct batch {
	json_t *msgs;		   /* array of message JSON */
	struct rmq_ack_item *acks; /* handles, strings owned (ids and handles) */
	size_t n;
	int code; /* RocketMQ status of the receive, 0 before it came */
	char why[256];
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		cfx_free((char *)b->acks[i].msg_id);
		cfx_free((char *)b->acks[i].handle);
	}
	cfx_free(b->acks);
	json_decref(b->msgs);
}

/*
 * Runs one ReceiveMessage to its end (or until interrupted). Returns
 * CLI_OK with what came in `b`, or an exit status (message printed).
 */
static int receive(struct consume *k, struct batch *b)
{
	struct rmq_recv_opts o = {.group = k->group,
				  .topic = k->topic,
				  .tag_expr = k->tag,
				  .broker = k->broker,
				  .batch = 32,
				  .invisible_ms = k->invisible_ms,
				  .wait_ms = k->wait_ms};
	struct rmq_err e;
	char why[700];
	int32_t id;

	memset(b, 0, sizeof *b);
	b->msgs = json_array();
	if (k->count)
		o.batch = (int32_t)CFX_MIN((int64_t)32, k->count - (int64_t)k->received);
	id = rmq_receive_start(k->rc, &o);
	if (id < 0) {
		rmq_err_transport(k->rc, id, &e);
		goto fail;
	}
	while (!cli_stop) {
		struct grpc_client_event ev;
		int r = grpc_client_poll(k->rc->gc, POLL_SLICE_MS, &ev);
		if (r < 0) {
			rmq_err_transport(k->rc, r, &e);
			goto fail;
		}
		if (r == 0)
			continue;
		if (ev.stream_id != id) {
			cfx_free(ev.data); /* the Telemetry stream's: nothing to act on */
			cfx_free(ev.message);
			continue;
		}
		if (ev.type == GRPC_EV_END) {
			if (ev.status != 0) {
				rmq_err_grpc(ev.status, ev.message, &e);
				cfx_free(ev.message);
				goto fail;
			}
			cfx_free(ev.message);
			break;
		}
		RPB(ReceiveMessageResponse) *resp = rmq_parse_receive(ev.data, ev.len);
		cfx_free(ev.data);
		if (!resp) {
			snprintf(e.msg, sizeof e.msg, "malformed ReceiveMessageResponse");
			e.code = e.grpc_status = 0;
			goto fail;
		}
		if (resp->content_case == RCONTENT(STATUS) && resp->status) {
			b->code = (int)resp->status->code;
			snprintf(b->why, sizeof b->why, "%s",
				 resp->status->message ? resp->status->message : "");
		} else if (resp->content_case == RCONTENT(MESSAGE) && resp->message &&
			   resp->message->system_properties) {
			const RPB(SystemProperties) *sp = resp->message->system_properties;
			b->acks = cfx_realloc(b->acks, (b->n + 1) * sizeof *b->acks);
			b->acks[b->n].msg_id = cfx_strdup(sp->message_id ? sp->message_id : "");
			b->acks[b->n].handle =
				cfx_strdup(sp->_receipt_handle_case ? sp->receipt_handle : "");
			b->n++;
			json_array_append_new(b->msgs, message_json(resp->message));
		}
		RPBF(receive_message_response, free_unpacked)(resp, NULL);
	}
	if (b->code && b->code != RCODE(OK) && b->code != RCODE(MESSAGE_NOT_FOUND)) {
		e.code = b->code;
		e.grpc_status = 0;
		snprintf(e.msg, sizeof e.msg, "%s", b->why);
		goto fail;
	}
	return CLI_OK;
fail:
	rmq_err_format(&e, why, sizeof why);
	cli_error(&k->c, "receiving from %s as %s: %s", k->topic, k->group, why);
	return e.code == 0 && e.grpc_status < 0 ? CLI_EUNREACHABLE : CLI_EFAIL;
}

/* Prints the batch's messages and acknowledges them. */
static int deliver(struct consume *k, struct batch *b)
{
	struct rmq_err e;
	size_t i;
	json_t *m;
	char why[700];

	json_array_foreach(b->msgs, i, m) cli_print_message(m, k->c.json);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		cli_stop = 1; /* the reader went away: acknowledge nothing more, stop */
		return CLI_EFAIL;
	}
	if (k->no_ack || b->n == 0) {
		k->received += b->n;
		return CLI_OK;
	}
	if (rmq_ack(k->rc, k->group, k->topic, b->acks, b->n, &e)) {
		rmq_err_format(&e, why, sizeof why);
		return cli_error(&k->c,
				 "acknowledging %zu messages: %s (they will be delivered "
				 "again)",
				 b->n, why);
	}
	k->received += b->n;
	return CLI_OK;
}

int cli_consume(int argc, char **argv)
{
	struct consume k;
	const char *count = NULL, *invisible = NULL, *wait = NULL;
	struct rmq_route rt;
	struct rmq_err e;
	char why[700];
	int r, done = 0, rc;

	memset(&k, 0, sizeof k);
	cli_init(&k.c, "consume", usage_consume);
	k.invisible_ms = 30000;
	k.wait_ms = 20000;
	for (int i = 1; i < argc;) {
		CLI_COMMON(&k.c, argc, argv, i);
		CLI_VALUE(&k.c, argc, argv, i, "--group", k.group);
		CLI_VALUE(&k.c, argc, argv, i, "--tag", k.tag);
		CLI_VALUE(&k.c, argc, argv, i, "--count", count);
		CLI_VALUE(&k.c, argc, argv, i, "--invisible", invisible);
		CLI_VALUE(&k.c, argc, argv, i, "--wait", wait);
		CLI_FLAG(argv, i, "--no-ack", k.no_ack);
		CLI_UNKNOWN(&k.c, argv[i]);
		if (k.topic)
			return cli_usage_error(&k.c, "unexpected argument \"%s\"", argv[i]);
		k.topic = argv[i++];
	}
	if (!k.topic)
		return cli_usage_error(&k.c, "the topic is missing");
	if (!k.group)
		return cli_usage_error(&k.c, "--group is required");
	if (count && cli_int(&k.c, "--count", count, 1, INT64_MAX, &k.count))
		return CLI_EUSAGE;
	if (invisible && cli_duration(&k.c, "--invisible", invisible, &k.invisible_ms))
		return CLI_EUSAGE;
	if (wait && cli_duration(&k.c, "--wait", wait, &k.wait_ms))
		return CLI_EUSAGE;

	rc = admin_grpc_endpoint(&k.c);
	if (rc)
		return rc;
	if (rmq_connect(k.c.grpc, k.c.timeout_ms, &k.rc, &e)) {
		rmq_err_format(&e, why, sizeof why);
		cli_error(&k.c, "%s", why);
		return CLI_EUNREACHABLE;
	}
	if (cli_sign_grpc(&k.c, k.rc))
		return CLI_EUSAGE;
	if (rmq_query_route(k.rc, k.topic, &rt, &e) ||
	    rmq_settings_consumer(k.rc, k.group, k.topic, k.tag, k.wait_ms, NULL, &e)) {
		rmq_err_format(&e, why, sizeof why);
		rc = cli_error(&k.c, "subscribing %s to %s: %s", k.group, k.topic, why);
		goto out;
	}
	snprintf(k.broker, sizeof k.broker, "%s", rt.broker);
	cli_catch_signals();
	fprintf(stderr, "conflux consume: consuming %s as group %s%s\n", k.topic, k.group,
		k.count ? "" : " (Ctrl-C to stop)");
	while (!cli_stop && (!k.count || (int64_t)k.received < k.count)) {
		struct batch b;
		rc = receive(&k, &b);
		if (rc == CLI_OK || b.n)
			rc = deliver(&k, &b) ? CLI_EFAIL : rc;
		batch_free(&b);
		if (rc)
			break;
	}
	if (rc == CLI_OK)
		fprintf(stderr, "conflux consume: %llu messages received%s\n",
			(unsigned long long)k.received, k.no_ack ? " (not acknowledged)" : "");
	rmq_goodbye(k.rc, k.group);
out:
	rmq_close(k.rc);
	return rc;
}
