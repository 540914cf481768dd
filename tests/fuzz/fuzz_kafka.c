/*
 * fuzz_kafka.c - libFuzzer target for the Kafka front end end to end:
 * framing, request headers, and the request bodies of every API served
 * (proto/kafka/server.c, api.c) over a real broker on a memory connection.
 *
 * Input: a flags byte, then requests, each [len u16 big-endian][bytes]:
 * the target puts Kafka's i32 size in front of each (so mutations reach
 * the headers and bodies instead of the framing), then feeds the stream,
 * in pieces of FZ_KAFKA_CHUNK bytes when the flags say so. A tail shorter
 * than its length is fed as is (a torn frame). The first two bytes of a
 * request are its API key: the seeds hold valid requests of each API.
 *
 * Beyond "no crash, no out-of-bounds access, no undefined behaviour, no
 * leak, no hang": the output is whole response frames (an i32 size that
 * matches, a correlation id).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "broker/broker.h"
#include "fuzz_common.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/kafka/kafka.h"
#include "store/files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_KAFKA_SPLIT 0x01u /* feed in pieces of FZ_KAFKA_CHUNK bytes */
#define FZ_KAFKA_CHUNK 7
#define QUIET_ROUNDS_MAX 64
#define SETTLE_ROUNDS_MAX 2000 /* produce completions come from the store's threads */

static struct cfx_loop *loop;
static struct cfx_broker *br;
static struct kafka_service *svc;
static char dir[] = "/tmp/cfx-fuzz-kafka-XXXXXX";
static struct cfx_writer out;

static void teardown(void)
{
	/* No more answers from the group coordinator; those it posted, and
	 * answers of orphaned produces waiting on a 1 ms timer, run here. */
	kafka_service_stop(svc);
	for (int i = 0; i < 100; i++) {
		while (cfx_loop_run_pending(loop))
			;
		usleep(1000);
	}
	kafka_service_free(svc);
	cfx_broker_close(br);
	cfx_loop_free(loop);
	cfx_writer_free(&out);
	store__rmtree(dir);
}

static void setup_once(void)
{
	struct cfx_broker_opts o;
	struct kafka_opts ko;

	if (loop)
		return;
	if (!getenv("CFX_FUZZ_VERBOSE"))
		cfx_log_set_level(CFX_LOG_ERROR - 1);
	FZ_CHECK(mkdtemp(dir) != NULL);
	cfx_broker_opts_default(&o);
	o.store.dir = dir;
	o.store.segment_bytes = 32u << 20;
	o.store.populate_ahead_bytes = 0;
	FZ_CHECK(cfx_broker_open(&o, &br, NULL) == 0);
	FZ_CHECK(cfx_loop_new(&loop, "fuzz") == 0);
	kafka_opts_default(&ko);
	ko.request_bytes_max = 1u << 20;
	ko.group_initial_delay_ms = 0; /* a lone member's JoinGroup is answered at once */
	svc = kafka_service_new(br, &ko);
	kafka_service_set_address(svc, "127.0.0.1", 9092);
	cfx_writer_init(&out, 4096);
	atexit(teardown);
}

/* The output is whole response frames, each with at least its correlation id. */
static void check_output(const struct cfx_writer *w)
{
	size_t at = 0;

	while (at + 4 <= w->len) {
		uint32_t n = cfx_load_be32(w->p + at);
		FZ_CHECK(n >= 4 && at + 4 + n <= w->len);
		at += 4 + n;
	}
	FZ_CHECK(at == w->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfx_writer in;
	struct cfx_conn *c;
	uint8_t flags;
	size_t at = 1;

	setup_once();
	if (size < 1)
		return 0;
	flags = data[0];
	cfx_writer_init(&in, size + 64);
	while (at + 2 <= size) {
		size_t len = (size_t)data[at] << 8 | data[at + 1];
		uint8_t hdr[4];
		at += 2;
		cfx_store_be32(hdr, (uint32_t)len);
		cfx_write_bytes(&in, hdr, 4);
		if (at + len > size) {
			cfx_write_bytes(&in, data + at, size - at); /* torn */
			at = size;
			break;
		}
		cfx_write_bytes(&in, data + at, len);
		at += len;
	}
	c = cfx_conn_new_memory(loop, &kafka_conn_proto, svc);
	cfx_writer_reset(&out);
	size_t chunk = (flags & FZ_KAFKA_SPLIT) ? FZ_KAFKA_CHUNK : (in.len ? in.len : 1);
	for (size_t off = 0; off < in.len; off += chunk)
		if (cfx_conn_feed(c, in.p + off, CFX_MIN(chunk, in.len - off)))
			break;
	/* Let appends complete (their answers are posted back to the loop). */
	for (int i = 0; i < SETTLE_ROUNDS_MAX; i++) {
		while (cfx_loop_run_pending(loop))
			;
		if (!c->proto_data || !c->proto->is_busy || !c->proto->is_busy(c))
			break;
		usleep(200);
	}
	cfx_conn_take_output(c, &out);
	check_output(&out);
	cfx_conn_free_memory(c);
	for (int i = 0; i < QUIET_ROUNDS_MAX && cfx_loop_run_pending(loop); i++)
		;
	cfx_writer_free(&in);
	return 0;
}
