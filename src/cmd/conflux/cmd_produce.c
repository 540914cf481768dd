/*
 * cmd_produce.c - `conflux produce TOPIC [MESSAGE...]`: sends messages over
 * the RocketMQ gRPC API (SendMessage), the way the 5.x producers do:
 * QueryRoute, producer settings on Telemetry, then batches of messages
 * with client-made v1 ids, born time, and type NORMAL or FIFO (--group).
 *
 * Messages come from the arguments or, when there are none, from stdin,
 * one per line (a trailing "\r" is dropped, empty lines are skipped).
 * Lines are batched up to --batch per SendMessage, but a batch is sent as
 * soon as stdin has nothing more to give, so an interactive producer
 * sends each line as it is typed.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cmd/conflux/cli.h"
#include "cmd/conflux/http_client.h"
#include "cmd/conflux/rmq_client.h"

#define KEYS_MAX       32
#define PROPS_MAX      128
#define BATCH_MAX      1024
#define LINE_BYTES_MAX (64u << 20)

static const char usage_produce[] =
	"usage: conflux produce TOPIC [MESSAGE...] [options]\n"
	"\n"
	"Sends each MESSAGE argument, or else each line of stdin (empty lines are skipped),\n"
	"and prints every message's id and queue offset.\n"
	"\n"
	"  --tag TAG            the messages' tag\n"
	"  --key KEY            a key (repeatable; messages can be looked up by key)\n"
	"  --property K=V       a user property (repeatable)\n"
	"  --group G            message group: FIFO messages, kept in order per group\n"
	"  --batch N            at most N messages per SendMessage call (default 32)\n"
	"  --quiet              print only a summary\n"
	"  --server HOST:PORT   admin API, asked for the gRPC address (default 127.0.0.1:8080)\n"
	"  --grpc HOST:PORT     the gRPC API itself (then the admin API is not used)\n"
	"  --timeout DURATION   deadline of one call (default 10s)\n"
	"  --json               one JSON object per message (or the summary with --quiet)\n";

struct produce {
	struct cli c;
	const char *topic, *tag, *group;
	const char *keys[KEYS_MAX];
	size_t nkeys;
	struct rmq_prop props[PROPS_MAX];
	size_t nprops;
	int64_t batch;
	int quiet;
	struct rmq_cl *rc;
	/* progress */
	uint64_t sent;
	uint64_t bytes;
};

/*
 * Sends `n` bodies in one call and prints the results. Returns CLI_OK or
 * the exit status after a failure (message printed).
 */
static int send_batch(struct produce *p, char **bodies, size_t *lens, size_t n)
{
	struct rmq_msg_out *m = cfx_calloc(n, sizeof *m);
	struct rmq_send_entry *ent = cfx_calloc(n, sizeof *ent);
	struct rmq_err e;
	int rc = CLI_OK;

	for (size_t i = 0; i < n; i++) {
		m[i].body = bodies[i];
		m[i].len = lens[i];
		m[i].tag = p->tag;
		m[i].keys = p->keys;
		m[i].nkeys = p->nkeys;
		m[i].props = p->props;
		m[i].nprops = p->nprops;
		m[i].group = p->group;
	}
	int failed = rmq_send(p->rc, p->topic, m, n, ent, &e);
	for (size_t i = 0; i < n; i++) {
		int ok = ent[i].code == RCODE(OK);
		if (ok) {
			p->sent++;
			p->bytes += lens[i];
		}
		if (p->quiet || (!ok && ent[i].code == 0))
			continue;
		if (p->c.json) {
			json_t *o = json_pack("{s:s, s:s, s:I}", "topic", p->topic, "msg_id",
					      ent[i].msg_id[0] ? ent[i].msg_id : m[i].id, "offset",
					      (json_int_t)ent[i].offset);
			if (!ok)
				json_object_set_new(o, "error",
						    json_pack("{s:i, s:s, s:s}", "code",
							      ent[i].code, "name",
							      rmq_code_name(ent[i].code), "reason",
							      ent[i].why));
			cli_json_print(o);
		} else if (ok) {
			printf("%s offset=%lld\n", ent[i].msg_id[0] ? ent[i].msg_id : m[i].id,
			       (long long)ent[i].offset);
		}
	}
	if (failed) {
		char why[700];
		rmq_err_format(&e, why, sizeof why);
		cli_error(&p->c, "sending to %s failed after %llu messages: %s", p->topic,
			  (unsigned long long)p->sent, why);
		rc = e.code == 0 && e.grpc_status < 0 ? CLI_EUNREACHABLE : CLI_EFAIL;
	}
	fflush(stdout);
	cfx_free(m);
	cfx_free(ent);
	return rc;
}

/* Sends the MESSAGE arguments in batches. */
static int produce_args(struct produce *p, char **msgs, size_t n)
{
	size_t *lens = cfx_calloc(n, sizeof *lens);
	int rc = CLI_OK;

	for (size_t i = 0; i < n; i++)
		lens[i] = strlen(msgs[i]);
	for (size_t at = 0; at < n && rc == CLI_OK; at += (size_t)p->batch)
		rc = send_batch(p, msgs + at, lens + at, CFX_MIN((size_t)p->batch, n - at));
	cfx_free(lens);
	return rc;
}

/* Is more input waiting on fd 0 right now? */
static int input_waiting(void)
{
	struct pollfd pf = {.fd = 0, .events = POLLIN};
	return poll(&pf, 1, 0) > 0;
}

/* Sends the lines of stdin. */
static int produce_stdin(struct produce *p)
{
	size_t cap = 65536, len = 0, nb = 0, batch = (size_t)p->batch;
	char *buf = cfx_malloc(cap);
	char **bodies = cfx_calloc(batch, sizeof *bodies);
	size_t *lens = cfx_calloc(batch, sizeof *lens);
	int eof = 0, rc = CLI_OK;

	while (rc == CLI_OK && !(eof && len == 0 && nb == 0)) {
		if (!eof && !cli_stop) {
			if (len == cap) {
				if (cap >= LINE_BYTES_MAX) {
					rc = cli_error(&p->c,
						       "a line of stdin is longer than %u bytes",
						       LINE_BYTES_MAX);
					break;
				}
				cap *= 2;
				buf = cfx_realloc(buf, cap);
			}
			ssize_t r = read(0, buf + len, cap - len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = cli_error(&p->c, "reading stdin: %s", strerror(errno));
				break;
			}
			if (r == 0)
				eof = 1;
			len += (size_t)r;
		} else {
			eof = 1; /* interrupted: send what was read, then stop */
		}
		/* Cut complete lines (and, at the end, the last unterminated one). */
		size_t start = 0;
		for (;;) {
			char *nl = memchr(buf + start, '\n', len - start);
			size_t end = nl ? (size_t)(nl - buf) : len;
			if (!nl && !(eof && end > start))
				break;
			size_t l = end - start;
			if (l && buf[start + l - 1] == '\r')
				l--;
			if (l) {
				bodies[nb] = cfx_strndup(buf + start, l);
				lens[nb++] = l;
			}
			start = nl ? end + 1 : len;
			if (nb == batch) {
				rc = send_batch(p, bodies, lens, nb);
				for (size_t i = 0; i < nb; i++)
					cfx_free(bodies[i]);
				nb = 0;
				if (rc)
					break;
			}
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		if (rc == CLI_OK && nb && (eof || !input_waiting())) {
			rc = send_batch(p, bodies, lens, nb);
			for (size_t i = 0; i < nb; i++)
				cfx_free(bodies[i]);
			nb = 0;
		}
	}
	for (size_t i = 0; i < nb; i++)
		cfx_free(bodies[i]);
	cfx_free(bodies);
	cfx_free(lens);
	cfx_free(buf);
	return rc;
}

/* Checks the message type against what the topic accepts (as SDKs validate). */
static int check_type(struct produce *p, const struct rmq_route *rt)
{
	uint32_t want = p->group ? APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO
				 : APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL;

	if (!rt->types || (rt->types & (1u << want)))
		return CLI_OK;
	if (rt->types & (1u << APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO))
		return cli_error(&p->c, "topic %s takes FIFO messages only: give --group",
				 p->topic);
	if (rt->types & (1u << APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL))
		return cli_error(&p->c, "topic %s takes normal messages only: drop --group",
				 p->topic);
	return cli_error(&p->c,
			 "topic %s takes %s messages only, which conflux produce does not "
			 "send",
			 p->topic,
			 rt->types & (1u << APACHE__ROCKETMQ__V2__MESSAGE_TYPE__DELAY)
				 ? "delayed"
				 : "transactional");
}

int cli_produce(int argc, char **argv)
{
	struct produce p;
	char **msgs = cfx_calloc((size_t)argc + 1, sizeof *msgs);
	const char *v, *batch = NULL;
	size_t nmsgs = 0;
	struct rmq_route rt;
	struct rmq_err e;
	char why[700];
	int64_t t0;
	int r = 0, done = 0, rc;

	memset(&p, 0, sizeof p);
	cli_init(&p.c, "produce", usage_produce);
	p.batch = 32;
	for (int i = 1; i < argc;) {
		if ((r = cli_common(&p.c, argc, argv, &i, &done)) != 0) {
			if (r < 0 || done)
				goto usage_out;
			continue;
		}
		if ((r = cli_opt(&p.c, argc, argv, &i, "--key", &v)) != 0) {
			if (r < 0)
				goto usage_out;
			if (p.nkeys == KEYS_MAX) {
				cli_usage_error(&p.c, "at most %d keys", KEYS_MAX);
				goto usage_out;
			}
			p.keys[p.nkeys++] = v;
			continue;
		}
		if ((r = cli_opt(&p.c, argc, argv, &i, "--property", &v)) != 0) {
			const char *eq = r > 0 ? strchr(v, '=') : NULL;
			if (r < 0)
				goto usage_out;
			if (!eq || eq == v) {
				cli_usage_error(&p.c, "--property: \"%s\" is not NAME=VALUE", v);
				goto usage_out;
			}
			if (p.nprops == PROPS_MAX) {
				cli_usage_error(&p.c, "at most %d properties", PROPS_MAX);
				goto usage_out;
			}
			/* Split in place: argv strings are ours to edit. */
			char *kv = (char *)v;
			kv[eq - v] = '\0';
			p.props[p.nprops++] = (struct rmq_prop){kv, eq + 1};
			continue;
		}
		if ((r = cli_opt(&p.c, argc, argv, &i, "--tag", &p.tag)) ||
		    (r = cli_opt(&p.c, argc, argv, &i, "--group", &p.group)) ||
		    (r = cli_opt(&p.c, argc, argv, &i, "--batch", &batch))) {
			if (r < 0)
				goto usage_out;
			continue;
		}
		if (cli_flag(argv, &i, "--quiet")) {
			p.quiet = 1;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] && strcmp(argv[i], "--")) {
			cli_usage_error(&p.c, "unknown option %s", argv[i]);
			goto usage_out;
		}
		if (!strcmp(argv[i], "--")) { /* the rest are messages, even "-x" */
			for (i++; i < argc; i++)
				msgs[nmsgs++] = argv[i];
			break;
		}
		if (!p.topic)
			p.topic = argv[i++];
		else
			msgs[nmsgs++] = argv[i++];
	}
	if (!p.topic) {
		cli_usage_error(&p.c, "the topic is missing");
		goto usage_out;
	}
	if (batch && cli_int(&p.c, "--batch", batch, 1, BATCH_MAX, &p.batch))
		goto usage_out;

	rc = admin_grpc_endpoint(&p.c);
	if (rc)
		goto out;
	if (rmq_connect(p.c.grpc, p.c.timeout_ms, &p.rc, &e)) {
		rmq_err_format(&e, why, sizeof why);
		cli_error(&p.c, "%s", why);
		rc = CLI_EUNREACHABLE;
		goto out;
	}
	if (cli_sign_grpc(&p.c, p.rc)) {
		rc = CLI_EUSAGE;
		goto out;
	}
	if (rmq_query_route(p.rc, p.topic, &rt, &e) ||
	    rmq_settings_producer(p.rc, p.topic, NULL, &e)) {
		rmq_err_format(&e, why, sizeof why);
		rc = cli_error(&p.c, "topic %s: %s", p.topic, why);
		goto out;
	}
	if ((rc = check_type(&p, &rt)) != CLI_OK)
		goto out;
	cli_catch_signals();
	t0 = cfx_clock_mono_ms();
	rc = nmsgs ? produce_args(&p, msgs, nmsgs) : produce_stdin(&p);
	if (p.quiet && rc == CLI_OK) {
		int64_t ms = cfx_clock_mono_ms() - t0;
		if (p.c.json)
			cli_json_print(json_pack("{s:s, s:I, s:I, s:I}", "topic", p.topic, "sent",
						 (json_int_t)p.sent, "bytes", (json_int_t)p.bytes,
						 "elapsed_ms", (json_int_t)ms));
		else
			printf("sent %llu messages (%llu bytes) to %s in %lld ms\n",
			       (unsigned long long)p.sent, (unsigned long long)p.bytes, p.topic,
			       (long long)ms);
	}
	rmq_goodbye(p.rc, NULL);
out:
	rmq_close(p.rc);
	cfx_free(msgs);
	return rc;
usage_out:
	cfx_free(msgs);
	return done ? CLI_OK : CLI_EUSAGE;
}
