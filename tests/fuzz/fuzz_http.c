/*
 * fuzz_http.c - libFuzzer target for the HTTP/1.1 request codec
 * (src/proto/http/http.c) and the connection protocol around it, with the
 * admin API's routes (admin.c, metrics.c) behind it on request.
 *
 * Per input, two passes over the same bytes:
 *
 *  1. The codec alone, fed in the chunks the control byte asks for: every
 *     request it frames must lie inside the limits (target and body sizes),
 *     the bytes it reports used must add up to what it was given, and an
 *     error must carry one of the statuses the codec promises. The requests
 *     are remembered (methods, keep-alive) for pass 2.
 *  2. A memory connection (net/conn.h) speaking http_conn_proto, fed the
 *     same chunks, answered by an echo service or, with FZ_HTTP_ADMIN, by
 *     the real admin service over a broker. What the server wrote is parsed
 *     back with http-parser as responses: it must be well-formed, one final
 *     response per request framed in pass 1 (plus one for a codec error),
 *     each with a Content-Length (bodiless for HEAD, 204), Connection: close
 *     only on the last one, and the connection must be closing after it.
 *
 * Once per process: a loop that no thread runs, and for FZ_HTTP_ADMIN a
 * broker on a fresh directory in /dev/shm (or $CFX_FUZZ_TMPDIR, $TMPDIR)
 * with small segments, no fsyncs, no auto-creation, topic TopicTest (2
 * queues, three messages) and group GID_test; topics and groups an input
 * creates are deleted after it, so inputs do not see each other's.
 *
 * Input layout:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl   FZ_HTTP_* below
 *      1 |    N | what an HTTP/1.1 client sends
 */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/fileops.h"
#include "base/log.h"
#include "broker/broker.h"
#include "fuzz_common.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/http/admin.h"
#include "proto/http/http.h"
#include "store/files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The control byte.
 *   bits 0-3  how the input is split into feeds: 0 = one call, else
 *             chunks of feed_bytes[ctrl & 15]
 *   bit 4     run the loop (and take the output) after every feed
 *   bit 5     answer with the admin service (else an echo service)
 *   bit 6     shut the connection down politely after the input
 */
#define FZ_HTTP_SPLIT_MASK 0x0fu
#define FZ_HTTP_PUMP_EACH 0x10u
#define FZ_HTTP_ADMIN 0x20u
#define FZ_HTTP_SHUTDOWN 0x40u

static const size_t feed_bytes[16] = { 0, 1, 2, 3, 5, 7, 8, 13, 16, 31, 64, 100, 255, 512, 1000,
				       4096 };

#define REQUESTS_MAX 4096 /* remembered per input; more are only framed */
#define QUIET_ROUNDS_MAX 1000

/* ------------------------------------------------------------------------
 * Once per process
 * ------------------------------------------------------------------------ */

static char root_dir[256];
static struct cfx_loop *loop;
static struct cfx_broker *br;
static struct admin_service *admin;
static struct cfx_file_ops fast_ops;
static struct cfx_writer out;

static int nosync(int fd)
{
	(void)fd;
	return 0;
}

/* Answers {"method":..., "target_bytes":..., "body_bytes":...} (the bytes may not be UTF-8). */
static void echo(void *arg, const struct http_request *req, struct http_response *resp)
{
	(void)arg;
	http_response_json(resp, 200,
			   json_pack("{s:s, s:I, s:I}", "method", req->method_name, "target_bytes",
				     (json_int_t)req->target.len, "body_bytes",
				     (json_int_t)req->body.len));
}

static struct http_service echo_svc = { .handle = echo };

static void teardown(void)
{
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	admin_service_free(admin);
	if (br)
		cfx_broker_close(br);
	cfx_loop_free(loop);
	cfx_writer_free(&out);
	if (root_dir[0])
		store__rmtree(root_dir);
}

static void sent(void *arg, const struct cfx_send_result *res, uint32_t count)
{
	(void)arg;
	for (uint32_t i = 0; i < count; i++)
		FZ_CHECK(res[i].err == 0);
}

static void open_broker(void)
{
	const char *base = getenv("CFX_FUZZ_TMPDIR");
	struct cfx_broker_opts bo;
	struct cfx_group_info g = { 0 };
	struct cfx_send_msg m[3];
	struct admin_opts ao = { 0 };
	struct stat sb;

	if (!base && stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
	    access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	if (!base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(root_dir, sizeof root_dir, "%s/cfx-fuzz-http-XXXXXX", base);
	FZ_CHECK(mkdtemp(root_dir) != NULL);

	fast_ops = cfx_fileops_real;
	fast_ops.fdatasync = nosync;
	fast_ops.fsync = nosync;
	cfx_broker_opts_default(&bo);
	bo.store.dir = root_dir;
	bo.store.fops = &fast_ops;
	bo.store.segment_bytes = 64 * 1024;
	bo.store.batch_bytes_max = 16 * 1024;
	bo.store.msg_bytes_max = 8 * 1024;
	bo.store.index_entries_per_file = 64;
	bo.store.key_index_entries = 64;
	bo.store.checkpoint_interval_ms = 3600 * 1000;
	bo.store.retention_ms = 0;
	bo.store.populate_ahead_bytes = 0;
	bo.store.queues_per_topic_max = 16;
	bo.auto_create = 0;
	bo.pop_journal_bytes_max = 1 << 20;
	FZ_CHECK(cfx_broker_open(&bo, &br, NULL) == 0);
	FZ_CHECK(cfx_broker_topic_create(br, "TopicTest", CFX_MSG_NORMAL, 2) == 0);
	snprintf(g.name, sizeof g.name, "GID_test");
	cfx_retry_policy_default(&g.retry);
	FZ_CHECK(cfx_broker_group_create(br, &g) == 0);
	memset(m, 0, sizeof m);
	for (int i = 0; i < 3; i++) {
		static const char *const bodies[] = { "hello", "{\"n\":1}", "\xff\xfe" };
		static const char *const ids[] = { "ID0", "ID1", "ID2" };
		m[i].type = CFX_MSG_NORMAL;
		m[i].m.body = CFX_VIEW_STR(bodies[i]);
		m[i].m.msg_id = CFX_VIEW_STR(ids[i]);
		m[i].m.key = CFX_VIEW_STR("k1 k2");
		m[i].m.tag = CFX_VIEW_STR("tagA");
	}
	FZ_CHECK(cfx_broker_send(br, CFX_VIEW_STR("TopicTest"), m, 3, CFX_DURABILITY_ASYNC, sent,
				 NULL) == 0);
	FZ_CHECK(cfx_store_wait_dispatched(cfx_broker_store(br), 5000) == 0);

	ao.br = br;
	ao.version = "fuzz";
	ao.broker_name = "fuzz";
	ao.default_queues = 2;
	admin = admin_service_new(&ao);
	admin_service_set_listener(admin, "http", "127.0.0.1:1");
}

static void setup_once(void)
{
	if (loop)
		return;
	if (!getenv("CFX_FUZZ_VERBOSE"))
		cfx_log_set_level(CFX_LOG_ERROR - 1);
	FZ_CHECK(cfx_loop_new(&loop, "fuzz") == 0);
	cfx_writer_init(&out, 4096);
	atexit(teardown);
}

/* What an input created: deleted again, so the tables stay small. */
struct names {
	char v[64][128];
	int n;
};

static void extra_topic(void *arg, const struct cfx_topic_info *t)
{
	struct names *ns = arg;
	if (strcmp(t->name, "TopicTest") && ns->n < 64)
		snprintf(ns->v[ns->n++], sizeof ns->v[0], "%s", t->name);
}

static void extra_group(void *arg, const struct cfx_group_info *g)
{
	struct names *ns = arg;
	if (strcmp(g->name, "GID_test") && ns->n < 64)
		snprintf(ns->v[ns->n++], sizeof ns->v[0], "%s", g->name);
}

static void clean_broker(void)
{
	struct names ns;

	do {
		ns.n = 0;
		cfx_broker_topic_foreach(br, extra_topic, &ns);
		for (int i = 0; i < ns.n; i++)
			FZ_CHECK(cfx_broker_topic_delete(br, ns.v[i]) == 0);
	} while (ns.n);
	do {
		ns.n = 0;
		cfx_broker_group_foreach(br, extra_group, &ns);
		for (int i = 0; i < ns.n; i++)
			FZ_CHECK(cfx_broker_group_delete(br, ns.v[i]) == 0);
	} while (ns.n);
}

/* ------------------------------------------------------------------------
 * Pass 1: the codec alone
 * ------------------------------------------------------------------------ */

struct framed {
	int method[REQUESTS_MAX];
	int keep_alive[REQUESTS_MAX];
	uint32_t n;	/* requests framed (all of them, even past REQUESTS_MAX) */
	int error;	/* the codec failed after them */
	int continues;	/* 100-continue events */
};

static void codec_pass(const uint8_t *p, size_t size, size_t chunk, struct framed *fr)
{
	struct http_codec hc;

	memset(fr, 0, sizeof *fr);
	http_codec_init(&hc);
	for (size_t off = 0; off < size && !fr->error;) {
		size_t len = CFX_MIN(chunk, size - off), used;
		const uint8_t *q = p + off;

		off += len;
		/* Once a request said it is the last, the connection stops there too. */
		while (len && !fr->error &&
		       !(fr->n && fr->n <= REQUESTS_MAX && !fr->keep_alive[fr->n - 1])) {
			enum http_event ev = http_codec_feed(&hc, q, len, &used);
			FZ_CHECK(used <= len);
			q += used;
			len -= used;
			switch (ev) {
			case HTTP_EV_MORE:
				FZ_CHECK(len == 0);
				break;
			case HTTP_EV_CONTINUE:
				fr->continues++;
				break;
			case HTTP_EV_REQUEST:
				FZ_CHECK(hc.req.target.len <= HTTP_HEAD_BYTES_MAX);
				FZ_CHECK(hc.req.body.len <= HTTP_BODY_BYTES_MAX);
				FZ_CHECK(hc.req.content_type.len <= HTTP_CTYPE_BYTES_MAX);
				FZ_CHECK(hc.req.method_name != NULL);
				fz_touch(hc.req.target.p, hc.req.target.len);
				fz_touch(hc.req.body.p, hc.req.body.len);
				if (fr->n < REQUESTS_MAX) {
					fr->method[fr->n] = hc.req.method;
					fr->keep_alive[fr->n] = hc.req.keep_alive;
				}
				fr->n++;
				http_codec_next(&hc);
				break;
			case HTTP_EV_ERROR:
				FZ_CHECK(hc.err_reason != NULL);
				FZ_CHECK(hc.err_status == 400 || hc.err_status == 411 ||
					 hc.err_status == 413 || hc.err_status == 417 ||
					 hc.err_status == 431 || hc.err_status == 505);
				fr->error = 1;
				break;
			}
		}
		if (fr->n && fr->n <= REQUESTS_MAX && !fr->keep_alive[fr->n - 1])
			break;
	}
	http_codec_free(&hc);
}

/* ------------------------------------------------------------------------
 * Pass 2: the connection, and its output parsed back as responses
 * ------------------------------------------------------------------------ */

struct resp_chk {
	const struct framed *fr;
	uint32_t finals;	/* final (non-1xx) responses seen */
	uint32_t continues;
	int status;
	int closing;		/* the response being read says Connection: close */
	int closed;		/* a complete response said it */
	int in_conn_hdr;	/* the header being read is Connection */
};

static int r_message_begin(http_parser *p)
{
	struct resp_chk *rc = p->data;
	rc->closing = 0;
	return 0;
}

static int r_header_field(http_parser *p, const char *at, size_t len)
{
	struct resp_chk *rc = p->data;
	rc->in_conn_hdr = len == 10 && !strncasecmp(at, "Connection", 10);
	return 0;
}

static int r_header_value(http_parser *p, const char *at, size_t len)
{
	struct resp_chk *rc = p->data;
	if (rc->in_conn_hdr && len == 5 && !strncasecmp(at, "close", 5))
		rc->closing = 1;
	return 0;
}

static int r_headers_complete(http_parser *p)
{
	struct resp_chk *rc = p->data;
	uint32_t i = rc->finals;

	rc->status = p->status_code;
	FZ_CHECK(p->http_major == 1 && p->http_minor == 1);
	if (rc->status == 100) {
		rc->continues++;
		return 0;
	}
	/* Nothing may follow a response that said Connection: close. */
	FZ_CHECK(!rc->closed);
	FZ_CHECK((p->flags & F_CONTENTLENGTH) || rc->status == 204);
	FZ_CHECK(!(p->flags & F_CHUNKED));
	/* A HEAD request gets the length of a body that is not sent. */
	if (i < rc->fr->n && i < REQUESTS_MAX && rc->fr->method[i] == HTTP_HEAD)
		return 1;
	return 0;
}

static int r_message_complete(http_parser *p)
{
	struct resp_chk *rc = p->data;

	if (rc->status != 100)
		rc->finals++;
	if (rc->closing)
		rc->closed = 1;
	return 0;
}

static void check_output(const struct cfx_writer *w, const struct framed *fr, int closing)
{
	static const http_parser_settings s = {
		.on_message_begin = r_message_begin,
		.on_header_field = r_header_field,
		.on_header_value = r_header_value,
		.on_headers_complete = r_headers_complete,
		.on_message_complete = r_message_complete,
	};
	struct resp_chk rc = { .fr = fr };
	http_parser p;
	size_t n;

	http_parser_init(&p, HTTP_RESPONSE);
	p.data = &rc;
	n = w->len ? http_parser_execute(&p, &s, (const char *)w->p, w->len) : 0;
	FZ_CHECK(HTTP_PARSER_ERRNO(&p) == HPE_OK);
	FZ_CHECK(n == w->len);
	/* One answer per framed request (none cut short), and one for the error
	 * that ended them; a 100 Continue for each request that asked. */
	FZ_CHECK(rc.finals == fr->n + (fr->error ? 1u : 0u));
	FZ_CHECK(rc.continues == (uint32_t)fr->continues);
	/* After a last answer that says so, the connection closes. */
	if (fr->error || (fr->n && fr->n <= REQUESTS_MAX && !fr->keep_alive[fr->n - 1]))
		FZ_CHECK(rc.closed && closing);
}

static void pump(struct cfx_conn *c)
{
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	/* A dead-letter re-drive answers once the broker is done, from its thread. */
	while (admin && admin_service_deferred(admin)) {
		usleep(100);
		for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
			;
	}
	cfx_conn_take_output(c, &out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct framed fr;
	struct cfx_conn *c;
	uint8_t ctrl;
	size_t chunk;

	setup_once();
	if (size < 1)
		return 0;
	ctrl = data[0];
	data++;
	size--;
	chunk = feed_bytes[ctrl & FZ_HTTP_SPLIT_MASK];
	if (chunk == 0)
		chunk = size ? size : 1;
	if ((ctrl & FZ_HTTP_ADMIN) && !br)
		open_broker();

	codec_pass(data, size, chunk, &fr);

	c = cfx_conn_new_memory(loop, &http_conn_proto,
				(ctrl & FZ_HTTP_ADMIN) ? &admin->http : &echo_svc);
	cfx_writer_reset(&out);
	for (size_t off = 0; off < size; off += chunk) {
		int closed = cfx_conn_feed(c, data + off, CFX_MIN(chunk, size - off));
		if (ctrl & FZ_HTTP_PUMP_EACH)
			pump(c);
		if (closed)
			break;
	}
	if ((ctrl & FZ_HTTP_SHUTDOWN) && !c->closing) {
		c->shutting_down = 1;
		c->proto->on_shutdown(c);
	}
	pump(c);
	check_output(&out, &fr, c->closing);
	cfx_conn_free_memory(c);
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	if (ctrl & FZ_HTTP_ADMIN)
		clean_broker();
	return 0;
}
