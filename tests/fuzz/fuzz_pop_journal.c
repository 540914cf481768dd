/*
 * fuzz_pop_journal.c - libFuzzer target for the broker's journal replay
 * (broker/pop.c: record decoding and the application of every record type
 * to the POP state, the FIFO slots, and the done-sets of delayed and half
 * messages).
 *
 * Input: a sequence of record payloads, each [len u8][len bytes]; the
 * target frames each with its length and a correct CRC-32C (so mutations
 * reach the decoder and apply() instead of dying at the checksum), appends
 * the input's raw tail unframed (a torn or damaged record), and replays the
 * image into one broker that lives for the whole run (state accumulates
 * across inputs, as across journals). Then it walks the group positions and
 * pops from every cursor it can name, so that whatever a record left behind
 * is used.
 *
 * Beyond "no crash, no out-of-bounds access, no undefined behaviour, no
 * leak, no hang": replay returns 0 (journal damage is tolerated and cut),
 * and memory stays bounded (REPLAY_WINDOW_MAX, SYSDONE_BITS_MAX,
 * REPLAY_CURSORS_MAX in pop.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "broker/broker_int.h"
#include "fuzz_common.h"
#include "store/files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cfx_broker *br;
static char dir[] = "/tmp/cfx-fuzz-pop-XXXXXX";

static void close_broker(void)
{
	cfx_broker_close(br);
	br = NULL;
	store__rmtree(dir);
}

static void open_broker(void)
{
	struct cfx_broker_opts o;

	cfx_log_set_level(CFX_LOG_ERROR); /* quiet: damage is expected */
	if (!mkdtemp(dir))
		abort();
	cfx_broker_opts_default(&o);
	o.store.dir = dir;
	o.store.segment_bytes = 32u << 20;
	FZ_CHECK(cfx_broker_open(&o, &br, NULL) == 0);
	atexit(close_broker);
}

struct names {
	char group[300], topic[300];
	int any;
};

static void first_position(void *arg, const char *group, const char *topic, uint32_t queue,
			   const struct cfx_group_queue_state *st)
{
	struct names *n = arg;

	(void)queue;
	FZ_CHECK(st->committed <= st->next);
	if (!n->any) {
		snprintf(n->group, sizeof n->group, "%s", group);
		snprintf(n->topic, sizeof n->topic, "%s", topic);
		n->any = 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfx_writer wr;
	size_t at = 0;

	if (!br)
		open_broker();
	cfx_writer_init(&wr, size + 64);
	while (at < size) {
		size_t len = data[at];
		if (at + 1 + len > size)
			break;
		uint8_t hdr[8];
		cfx_store_le32(hdr, (uint32_t)len);
		cfx_store_le32(hdr + 4, cfx_crc32c(0, data + at + 1, len));
		cfx_write_bytes(&wr, hdr, 8);
		cfx_write_bytes(&wr, data + at + 1, len);
		at += 1 + len;
	}
	cfx_write_bytes(&wr, data + at, size - at); /* an unframed tail */
	FZ_CHECK(pop__replay_bytes(br, wr.p, wr.len) == 0);
	cfx_writer_free(&wr);

	/* Use what the records left: positions, and a pop on a named cursor. */
	struct names n = { .any = 0 };
	cfx_broker_group_positions(br, (struct cfx_view){ NULL, 0 }, first_position, &n);
	if (n.any) {
		struct cfx_pop_result res;
		struct cfx_pop_req req = { .group = CFX_VIEW_STR(n.group),
					   .topic = CFX_VIEW_STR(n.topic),
					   .max_msgs = 4,
					   .invisible_ms = 1000 };
		cfx_pop_result_init(&res);
		cfx_broker_pop(br, &req, &res); /* the topic may not exist: any error is fine */
		cfx_pop_result_free(&res);
	}
	return 0;
}
