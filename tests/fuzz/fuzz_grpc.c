/*
 * fuzz_grpc.c - libFuzzer target for the whole RocketMQ front end: HTTP/2
 * (nghttp2) -> gRPC framing -> protobuf-c -> the MessagingService handlers
 * (src/proto/grpc/rmq_*.c) -> the broker, on a memory connection
 * (net/conn.h) that a single thread drives with cfx_loop_run_pending.
 *
 * Once per process: a loop (never run by a thread of its own) and a broker
 * on a fresh directory in /dev/shm (or $CFX_FUZZ_TMPDIR, $TMPDIR) with small
 * segments, no fsyncs, a log size limit, no auto-creation (so the topic and
 * group tables stay small whatever the inputs name) and the resources the
 * seeds use: topics TopicTest (normal), fifo_topic (FIFO) and mixed_topic
 * (mixed), groups GID_test and GID_fifo (FIFO). Logging is silenced
 * (CFX_FUZZ_VERBOSE=1 keeps it).
 *
 * Per input: a RocketMQ service (it holds the client registry, so inputs do
 * not see each other's clients; the broker's messages and in-flight records
 * do carry over), a memory connection, the client preface, then the input
 * after its control byte, fed as the control byte says; then the pending
 * work of the loop, a few rounds, taking the output each time; then the
 * connection is freed (which must end its calls: parked long polls cancel
 * their broker watch and loop timer), and the loop runs until quiet so that
 * deferred frees and completions already posted run before the next input.
 *
 * Input layout:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl   FZ_GRPC_* below
 *      1 |    N | what an HTTP/2 client sends after its preface
 *
 * It must never crash, leak, hang or read out of bounds, and what the
 * server writes must be well-formed gRPC over HTTP/2 (check_output).
 */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
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
#include "proto/grpc/rmq.h"
#include "store/files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The control byte (gen_grpc_corpus.c writes the same values).
 *   bits 0-3  how the input is split into cfx_conn_feed calls: 0 = one
 *             call, else chunks of feed_bytes[ctrl & 15]
 *   bit 4     run the loop (and take the output) after every feed
 *   bit 5     linger: keep running the loop for up to LINGER_MS while calls
 *             are open, so short long polls time out and completions from the
 *             broker's threads (watches woken by the dispatcher) arrive; with
 *             bit 4, after every feed too (within LINGER_BUDGET_MS per input),
 *             so that input can come after a poll ran out
 *   bit 6     shut down politely after the input (on_shutdown: GOAWAY)
 *   bit 7     close the connection (cfx_conn_close) right after the input,
 *             before the loop runs again: completions still to come (answers
 *             posted by the broker) find their call gone
 */
#define FZ_GRPC_SPLIT_MASK 0x0fu
#define FZ_GRPC_PUMP_EACH 0x10u
#define FZ_GRPC_LINGER 0x20u
#define FZ_GRPC_SHUTDOWN 0x40u
#define FZ_GRPC_CLOSE_FIRST 0x80u

static const size_t feed_bytes[16] = { 0, 1, 2, 3, 5, 8, 9, 13, 16, 31, 64, 100, 255, 512, 1000,
				       4096 };

#define ROUNDS_MAX 64	      /* loop passes after the input, whatever keeps posting */
#define LINGER_MS 12	      /* with FZ_GRPC_LINGER; long polls are capped below it */
#define LINGER_BUDGET_MS 40   /* all lingering of one input */
#define LONG_POLL_MAX_MS 8    /* rmq_opts.long_poll_max_ms */
#define QUIET_ROUNDS_MAX 1000 /* passes to let deferred frees finish after the input */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ------------------------------------------------------------------------
 * Once per process
 * ------------------------------------------------------------------------ */

static char root_dir[256];
static struct cfx_loop *loop;
static struct cfx_broker *br;
static struct rmq_opts ro;
static struct cfx_file_ops fast_ops;
static struct cfx_writer out; /* the server's bytes of the current input */
static int verbose;	      /* CFX_FUZZ_VERBOSE=1: logs on, each call's end printed */
static int64_t linger_left_ms; /* of LINGER_BUDGET_MS, for the current input */

static int nosync(int fd)
{
	(void)fd;
	return 0;
}

/* At exit: let posted completions run, close the broker, remove its directory. */
static void teardown(void)
{
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	cfx_broker_close(br);
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	cfx_loop_free(loop);
	cfx_writer_free(&out);
	if (root_dir[0])
		store__rmtree(root_dir);
}

static void create_resources(void)
{
	struct cfx_group_info g = { 0 };

	FZ_CHECK(cfx_broker_topic_create(br, "TopicTest", CFX_MSG_NORMAL, 4) == 0);
	FZ_CHECK(cfx_broker_topic_create(br, "fifo_topic", CFX_MSG_FIFO, 2) == 0);
	FZ_CHECK(cfx_broker_topic_create(br, "mixed_topic", CFX_TOPIC_MIXED, 2) == 0);
	snprintf(g.name, sizeof g.name, "GID_test");
	cfx_retry_policy_default(&g.retry);
	FZ_CHECK(cfx_broker_group_create(br, &g) == 0);
	snprintf(g.name, sizeof g.name, "GID_fifo");
	g.fifo = 1;
	g.retry.max_attempts = 3;
	FZ_CHECK(cfx_broker_group_create(br, &g) == 0);
}

static void setup_once(void)
{
	const char *base = getenv("CFX_FUZZ_TMPDIR");
	struct cfx_broker_opts bo;
	struct stat sb;

	if (loop)
		return;
	verbose = getenv("CFX_FUZZ_VERBOSE") != NULL;
	if (!verbose)
		cfx_log_set_level(CFX_LOG_ERROR - 1);
	if (!base && stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
	    access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	if (!base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(root_dir, sizeof root_dir, "%s/cfx-fuzz-grpc-XXXXXX", base);
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
	bo.store.retention_bytes = 2 << 20; /* a long run must not fill /dev/shm */
	bo.store.retention_check_interval_ms = 1000;
	bo.store.populate_ahead_bytes = 0;
	bo.auto_create = 0;
	bo.pop_journal_bytes_max = 1 << 20;
	bo.inflight_max = 1024;
	FZ_CHECK(cfx_broker_open(&bo, &br, NULL) == 0);
	create_resources();

	rmq_opts_default(&ro);
	ro.max_body_bytes = 4096;
	ro.long_poll_max_ms = LONG_POLL_MAX_MS;
	FZ_CHECK(cfx_loop_new(&loop, "fuzz") == 0);
	cfx_writer_init(&out, 4096);
	atexit(teardown);
}

/* ------------------------------------------------------------------------
 * Driving the connection
 * ------------------------------------------------------------------------ */

/* Takes what the server wrote; returns the number of bytes. */
static size_t take_output(struct cfx_conn *c)
{
	return cfx_conn_take_output(c, &out);
}

/* Runs the loop until nothing is ready (bounded), taking the output; with
 * `linger`, keeps going for up to LINGER_MS (and what is left of the input's
 * budget) while calls are open, so that timers and other threads catch up. */
static void pump(struct cfx_conn *c, int linger)
{
	int64_t start = cfx_clock_mono_ms();
	int64_t until = start + CFX_MIN(LINGER_MS, linger_left_ms);

	for (int i = 0; i < ROUNDS_MAX; i++) {
		uint32_t ran = cfx_loop_run_pending(loop);
		take_output(c);
		if (ran)
			continue;
		if (!linger || c->closing || !c->proto->is_busy(c) || cfx_clock_mono_ms() >= until)
			break;
		usleep(1000);
	}
	if (linger)
		linger_left_ms -= cfx_clock_mono_ms() - start;
}

/* ------------------------------------------------------------------------
 * Checking what the server wrote
 *
 * The output of one connection is walked frame by frame: every frame whole,
 * on stream 0 or on a client stream (odd id); every header block decodes
 * (HPACK, in order, one decoder per connection); a stream's first block has
 * :status 200 and its last one (END_STREAM) a grpc-status between 0 and 16;
 * DATA never ends a stream (trailers do) and carries whole gRPC messages,
 * uncompressed. With CFX_FUZZ_VERBOSE=1 each call's end is printed, with the
 * RocketMQ Status.code of its first response message when it has one.
 * ------------------------------------------------------------------------ */

#define CHECK_STREAMS_MAX 64 /* streams followed per input; more are only framed */

struct stream_chk {
	uint32_t id;
	int headers_seen;	/* the response headers came */
	uint8_t prefix[5];	/* gRPC message prefix being read */
	size_t prefix_len;
	size_t msg_left;	/* bytes of the current message still to come */
	uint8_t head[16];	/* the first bytes of the first message (verbose) */
	size_t head_len;
	uint32_t messages;
};

static struct stream_chk *stream_find(struct stream_chk *st, int *n, uint32_t id)
{
	for (int i = 0; i < *n; i++)
		if (st[i].id == id)
			return &st[i];
	if (*n == CHECK_STREAMS_MAX)
		return NULL;
	memset(&st[*n], 0, sizeof st[*n]);
	st[*n].id = id;
	return &st[(*n)++];
}

/* Reads a protobuf varint from p[0..len); returns bytes used, 0 if cut short. */
static size_t peek_varint(const uint8_t *p, size_t len, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < len && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

/* Status.code of a response whose field 1 is a Status, or -1. */
static int peek_rmq_code(const uint8_t *p, size_t len)
{
	uint64_t sublen, code;
	size_t k;

	if (len < 2 || p[0] != 0x0a)
		return -1;
	k = peek_varint(p + 1, len - 1, &sublen);
	if (!k || 1 + k >= len || p[1 + k] != 0x08)
		return -1;
	return peek_varint(p + 2 + k, len - 2 - k, &code) ? (int)code : -1;
}

/* DATA of a followed stream: gRPC messages [flag u8][length u32 BE][message]. */
static void check_data(struct stream_chk *s, const uint8_t *p, size_t len)
{
	while (len) {
		size_t k;

		if (s->prefix_len < 5) {
			k = CFX_MIN(len, 5 - s->prefix_len);
			memcpy(s->prefix + s->prefix_len, p, k);
			s->prefix_len += k;
			p += k;
			len -= k;
			if (s->prefix_len < 5)
				return;
			FZ_CHECK(s->prefix[0] == 0); /* never compressed */
			s->msg_left = cfx_load_be32(s->prefix + 1);
			s->messages++;
			if (s->msg_left == 0)
				s->prefix_len = 0;
			continue;
		}
		k = CFX_MIN(len, s->msg_left);
		if (s->messages == 1 && s->head_len < sizeof s->head) {
			size_t h = CFX_MIN(k, sizeof s->head - s->head_len);
			memcpy(s->head + s->head_len, p, h);
			s->head_len += h;
		}
		s->msg_left -= k;
		p += k;
		len -= k;
		if (s->msg_left == 0)
			s->prefix_len = 0; /* the message is complete */
	}
}

/* One complete header block of stream `s` (NULL: not followed). */
static void check_block(nghttp2_hd_inflater *inf, struct stream_chk *s, int end_stream,
			const uint8_t *p, size_t len)
{
	int status = -1, grpc_status = -1, has_status = 0;

	for (;;) {
		nghttp2_nv nv;
		int fl = 0;
		ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &fl, p, len, 1);

		FZ_CHECK(r >= 0);
		p += r;
		len -= (size_t)r;
		if (fl & NGHTTP2_HD_INFLATE_EMIT) {
			char v[16];
			size_t k = CFX_MIN(nv.valuelen, sizeof v - 1);
			memcpy(v, nv.value, k);
			v[k] = '\0';
			if (nv.namelen == 7 && !memcmp(nv.name, ":status", 7)) {
				has_status = 1;
				status = atoi(v);
			} else if (nv.namelen == 11 && !memcmp(nv.name, "grpc-status", 11)) {
				FZ_CHECK(nv.valuelen >= 1 && nv.valuelen <= 2);
				grpc_status = atoi(v);
			}
		}
		if (fl & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(inf);
			break;
		}
		if (!(fl & NGHTTP2_HD_INFLATE_EMIT) && len == 0)
			break;
	}
	if (!s)
		return;
	if (!s->headers_seen) {
		FZ_CHECK(has_status && status == 200);
		s->headers_seen = 1;
	} else {
		FZ_CHECK(!has_status); /* trailers */
	}
	if (end_stream) {
		FZ_CHECK(grpc_status >= 0 && grpc_status <= 16);
		FZ_CHECK(s->prefix_len == 0 && s->msg_left == 0); /* no message cut short */
		if (verbose)
			fprintf(stderr, "fuzz_grpc: stream %u: grpc-status %d, %u message(s), "
				"RocketMQ code %d\n", s->id, grpc_status, s->messages,
				peek_rmq_code(s->head, s->head_len));
	}
}

static void check_output(const struct cfx_writer *w)
{
	struct stream_chk st[CHECK_STREAMS_MAX];
	struct cfx_writer block = { 0 };
	nghttp2_hd_inflater *inf;
	uint32_t block_sid = 0;
	int nst = 0, block_end_stream = 0, in_block = 0;
	size_t off = 0;

	FZ_CHECK(nghttp2_hd_inflate_new(&inf) == 0);
	while (off < w->len) {
		FZ_CHECK(w->len - off >= 9);
		const uint8_t *h = w->p + off, *pl = h + 9;
		size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
		uint8_t type = h[3], flags = h[4];
		uint32_t sid = cfx_load_be32(h + 5) & 0x7fffffffu;

		FZ_CHECK(w->len - off - 9 >= len);
		FZ_CHECK(sid == 0 || (sid & 1));
		FZ_CHECK(type != 0x5); /* no PUSH_PROMISE */
		off += 9 + len;
		/* A header block is HEADERS then CONTINUATIONs, with nothing between. */
		FZ_CHECK(!in_block || (type == 0x9 && sid == block_sid));
		if (type == 0x1) { /* HEADERS */
			FZ_CHECK(sid != 0);
			if (flags & 0x8) { /* PADDED */
				FZ_CHECK(len >= 1 && pl[0] < len);
				len -= 1 + pl[0];
				pl++;
			}
			if (flags & 0x20) { /* PRIORITY */
				FZ_CHECK(len >= 5);
				pl += 5;
				len -= 5;
			}
			cfx_writer_reset(&block);
			block_sid = sid;
			block_end_stream = flags & 0x1;
		}
		if (type == 0x1 || type == 0x9) {
			FZ_CHECK(type == 0x1 || in_block);
			cfx_write_bytes(&block, pl, len);
			in_block = !(flags & 0x4);
			if (!in_block)
				check_block(inf, stream_find(st, &nst, sid), block_end_stream,
					    block.p, block.len);
		} else if (type == 0x0) { /* DATA */
			struct stream_chk *s = stream_find(st, &nst, sid);
			FZ_CHECK(sid != 0 && !(flags & 0x1));
			if (flags & 0x8) {
				FZ_CHECK(len >= 1 && pl[0] < len);
				len -= 1 + pl[0];
				pl++;
			}
			if (s) {
				FZ_CHECK(s->headers_seen);
				check_data(s, pl, len);
			}
		}
	}
	nghttp2_hd_inflate_del(inf);
	cfx_writer_free(&block);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmq_service *svc;
	struct cfx_conn *c;
	uint8_t ctrl;
	size_t chunk;
	int closed;

	setup_once();
	if (size < 1)
		return 0;
	ctrl = data[0];
	data++;
	size--;
	chunk = feed_bytes[ctrl & FZ_GRPC_SPLIT_MASK];
	if (chunk == 0)
		chunk = size ? size : 1;

	linger_left_ms = LINGER_BUDGET_MS;
	svc = rmq_service_new(br, &ro);
	c = cfx_conn_new_memory(loop, &grpc_conn_proto, &svc->grpc);
	cfx_writer_reset(&out);
	closed = cfx_conn_feed(c, (const uint8_t *)preface, sizeof preface - 1);
	FZ_CHECK(!closed);
	for (size_t off = 0; off < size && !closed; off += chunk) {
		closed = cfx_conn_feed(c, data + off, CFX_MIN(chunk, size - off));
		if (ctrl & FZ_GRPC_PUMP_EACH)
			pump(c, ctrl & FZ_GRPC_LINGER);
	}
	FZ_CHECK(!closed || c->closing);
	if ((ctrl & FZ_GRPC_SHUTDOWN) && !c->closing) {
		c->shutting_down = 1;
		c->proto->on_shutdown(c);
	}
	if (ctrl & FZ_GRPC_CLOSE_FIRST)
		cfx_conn_close(c, "closed by the fuzz target");
	pump(c, ctrl & FZ_GRPC_LINGER);
	take_output(c);
	cfx_conn_free_memory(c);
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	check_output(&out);
	rmq_service_free(svc);
	return 0;
}
