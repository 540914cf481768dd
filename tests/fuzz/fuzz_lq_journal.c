/*
 * fuzz_lq_journal.c - libFuzzer target for the replay of the light-queue
 * journal and snapshot (broker/lq.c: framing, CRCs, record decoding, the
 * application of every record type, epochs, torn-tail cutting).
 *
 * Input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl   FZ_LQ_* flags; bits 4-5 pick entries_max_per_queue
 *      1 |    1 | epoch  FZ_LQ_EPOCH: the journal header's epoch is this byte
 *      2 |    N | body   FZ_LQ_RAW: the file's bytes verbatim; otherwise records
 *        |      |        [len u8][payload], framed by the target with a correct
 *        |      |        CRC (so mutations reach the decoder), then the raw tail
 *
 * The body goes to <dir>/journal behind a journal header, or with
 * FZ_LQ_SNAPSHOT to <dir>/snapshot behind a snapshot header (the journal
 * then holds only its header). Each input gets a fresh directory in
 * /dev/shm (or $TMPDIR); the engine has small limits (1024 queues, at most
 * 64 entries each), so memory stays bounded whatever the bytes say.
 *
 * Checks beyond "no crash, no undefined behaviour, no leak, no hang":
 * - open succeeds, except with CFX_ECORRUPT or CFX_EVERSION when the
 *   snapshot or a header is in the fuzzer's hands (a damaged journal body
 *   is cut, never refused);
 * - every queue keeps its invariants (head <= tail, at most entries_max
 *   slots, reads see only [head, tail) in order, the stats agree);
 * - after a few operations, close and reopen give the same state, and so
 *   do a forced snapshot and another reopen.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "broker/lq.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_LQ_SNAPSHOT 0x01u /* the body is a snapshot's, not the journal's */
#define FZ_LQ_RAW 0x02u	     /* the body is written verbatim, headers included */
#define FZ_LQ_EPOCH 0x04u    /* the journal header's epoch comes from byte 1 */
#define FZ_LQ_CTRL_BYTES 2u
#define FZ_LQ_QUEUES_MAX 1024u

static char dir[64];

static void write_file(const char *name, const uint8_t *p, size_t len)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "wb");
	FZ_CHECK(f != NULL);
	FZ_CHECK(len == 0 || fwrite(p, 1, len, f) == len);
	fclose(f);
}

static void clean_dir(void)
{
	static const char *const names[] = { "journal",	    "journal.new",  "journal.damaged",
					     "snapshot",    "snapshot.tmp" };
	char path[128];

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
}

static void cleanup(void)
{
	clean_dir();
	rmdir(dir);
}

static void make_dir(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

	/* Errors only (damage is expected), unless CFX_FUZZ_VERBOSE is set. */
	cfx_log_set_level(getenv("CFX_FUZZ_VERBOSE") ? CFX_LOG_INFO : CFX_LOG_ERROR);
	snprintf(dir, sizeof dir, "%s/cfx-fuzz-lq-XXXXXX", base ? base : "/tmp");
	FZ_CHECK(mkdtemp(dir) != NULL);
	atexit(cleanup);
}

/* Appends a framed record (the engine's layout: len, CRC over len and payload). */
static void put_rec(struct cfx_writer *wr, const uint8_t *payload, size_t len)
{
	uint8_t hdr[8];

	cfx_store_le32(hdr, (uint32_t)len);
	cfx_store_le32(hdr + 4, cfx_crc32c(cfx_crc32c(0, hdr, 4), payload, len));
	cfx_write_bytes(wr, hdr, 8);
	cfx_write_bytes(wr, payload, len);
}

static void put_header(struct cfx_writer *wr, uint8_t type, uint64_t epoch)
{
	uint8_t p[10] = { type, 1 };

	cfx_store_le64(p + 2, epoch);
	put_rec(wr, p, sizeof p);
}

/* A summary of the visible state, checked queue by queue on the way. */
struct state {
	uint32_t ids[FZ_LQ_QUEUES_MAX];
	uint32_t n;
	uint32_t crc;
};

static void collect(void *arg, struct cfx_view name, uint32_t id)
{
	struct state *s = arg;

	FZ_CHECK(name.len >= 1 && name.len <= CFX_LQ_NAME_BYTES_MAX);
	FZ_CHECK(id >= 1 && id <= FZ_LQ_QUEUES_MAX);
	FZ_CHECK(s->n < FZ_LQ_QUEUES_MAX);
	s->ids[s->n++] = id;
	s->crc = cfx_crc32c(s->crc, name.p, name.len);
	s->crc = cfx_crc32c(s->crc, &id, sizeof id);
}

static uint32_t summarize(struct cfx_lqs *lqs, uint32_t entries_max, struct state *s)
{
	struct cfx_lq_entry out[64];
	uint64_t seqs[64], total = 0;
	struct cfx_lq_stats st;

	memset(s, 0, sizeof *s);
	cfx_lq_foreach(lqs, (struct cfx_view){ NULL, 0 }, collect, s);
	for (uint32_t i = 0; i < s->n; i++) {
		uint64_t head, tail;
		uint32_t n;
		FZ_CHECK(i == 0 || s->ids[i] > s->ids[i - 1]);
		FZ_CHECK(cfx_lq_bounds(lqs, s->ids[i], &head, &tail) == 0);
		FZ_CHECK(head <= tail && tail - head <= entries_max);
		FZ_CHECK(cfx_lq_read(lqs, s->ids[i], 0, out, seqs, 64, &n) == 0);
		FZ_CHECK(n <= tail - head);
		FZ_CHECK(n == 0 || seqs[0] == head); /* the head is never acknowledged */
		for (uint32_t k = 0; k < n; k++)
			FZ_CHECK(seqs[k] >= head && seqs[k] < tail && (k == 0 || seqs[k] > seqs[k - 1]));
		total += n;
		s->crc = cfx_crc32c(s->crc, &head, sizeof head);
		s->crc = cfx_crc32c(s->crc, &tail, sizeof tail);
		s->crc = cfx_crc32c(s->crc, out, n * sizeof out[0]);
		s->crc = cfx_crc32c(s->crc, seqs, n * sizeof seqs[0]);
	}
	cfx_lq_stats(lqs, &st);
	FZ_CHECK(st.queues == s->n);
	FZ_CHECK(st.entries == total);
	for (uint16_t t = 0; t < 4; t++) {
		uint64_t off = 0;
		int rc = cfx_lq_get_pos(lqs, t, t, &off);
		s->crc = cfx_crc32c(s->crc, &rc, sizeof rc);
		s->crc = cfx_crc32c(s->crc, &off, sizeof off);
	}
	return s->crc;
}

static struct cfx_lqs *open_ok(const struct cfx_lq_opts *o)
{
	struct cfx_lqs *lqs = NULL;
	FZ_CHECK(cfx_lq_open(o, &lqs) == 0);
	return lqs;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t entries_max[4] = { 1, 2, 4, 64 };
	struct cfx_writer body, jrn;
	struct cfx_lq_opts o;
	struct cfx_lqs *lqs = NULL;
	struct state s;
	uint8_t ctrl, epoch;
	size_t at = FZ_LQ_CTRL_BYTES;

	if (size < FZ_LQ_CTRL_BYTES)
		return 0;
	if (!dir[0])
		make_dir();
	clean_dir();
	ctrl = data[0];
	epoch = data[1];

	cfx_lq_opts_default(&o);
	o.dir = dir;
	o.flush_interval_ms = -1;
	o.queues_max = FZ_LQ_QUEUES_MAX;
	o.entries_max_per_queue = entries_max[(ctrl >> 4) & 3];
	o.journal_bytes_min = 0;

	cfx_writer_init(&body, size + 64);
	cfx_writer_init(&jrn, 64);
	if (ctrl & FZ_LQ_RAW) {
		cfx_write_bytes(&body, data + at, size - at);
	} else {
		put_header(&body, (ctrl & FZ_LQ_SNAPSHOT) ? 2 : 1,
			   (ctrl & FZ_LQ_EPOCH) ? epoch : 1);
		while (at < size) {
			size_t len = data[at];
			if (at + 1 + len > size)
				break;
			put_rec(&body, data + at + 1, len);
			at += 1 + len;
		}
		cfx_write_bytes(&body, data + at, size - at); /* an unframed tail */
	}
	if (ctrl & FZ_LQ_SNAPSHOT) {
		write_file("snapshot", body.p, body.len);
		/* The journal that follows a snapshot of epoch `epoch`, or of 1. */
		put_header(&jrn, 1, (ctrl & FZ_LQ_EPOCH) ? (uint64_t)epoch + 1 : 2);
		write_file("journal", jrn.p, jrn.len);
	} else {
		write_file("journal", body.p, body.len);
	}
	int may_refuse = (ctrl & (FZ_LQ_SNAPSHOT | FZ_LQ_RAW)) || ((ctrl & FZ_LQ_EPOCH) && epoch != 1);
	int rc = cfx_lq_open(&o, &lqs);
	cfx_writer_free(&body);
	cfx_writer_free(&jrn);
	if (rc) {
		FZ_CHECK(may_refuse && (rc == CFX_ECORRUPT || rc == CFX_EVERSION));
		return 0;
	}

	summarize(lqs, o.entries_max_per_queue, &s);
	/* Use what the records left: push to and ack the first queue, add one. */
	if (s.n) {
		struct cfx_lq_entry e = { .topic = 1, .flags = 2, .queue = 3, .offset = 4 };
		uint64_t seq = 0, head, tail;
		rc = cfx_lq_push(lqs, s.ids[0], &e, &seq);
		FZ_CHECK(cfx_lq_bounds(lqs, s.ids[0], &head, &tail) == 0);
		if (rc == 0)
			FZ_CHECK(seq == tail - 1);
		else
			FZ_CHECK(rc == CFX_ERANGE && tail == 1ull << 63); /* sequences used up */
		if (head < tail)
			FZ_CHECK(cfx_lq_ack(lqs, s.ids[0], head) == 0);
		if (s.n > 1)
			FZ_CHECK(cfx_lq_drop(lqs, s.ids[s.n - 1]) == 0);
	}
	uint32_t id;
	rc = cfx_lq_get(lqs, CFX_VIEW_STR("fz"), 1, &id);
	FZ_CHECK(rc == 0 || rc == CFX_E2BIG);
	if (!rc)
		FZ_CHECK(cfx_lq_set(lqs, id, &(struct cfx_lq_entry){ .offset = 9 }) == 0);
	rc = cfx_lq_set_pos(lqs, 1, 1, 11);
	FZ_CHECK(rc == 0 || rc == CFX_E2BIG);
	uint32_t want = summarize(lqs, o.entries_max_per_queue, &s);

	/* Reopen: the same state, from the journal... */
	FZ_CHECK(cfx_lq_close(lqs) == 0);
	lqs = open_ok(&o);
	FZ_CHECK(summarize(lqs, o.entries_max_per_queue, &s) == want);
	/* ... and from a snapshot. */
	FZ_CHECK(cfx_lq_compact(lqs, 1) == 0);
	FZ_CHECK(cfx_lq_close(lqs) == 0);
	lqs = open_ok(&o);
	FZ_CHECK(summarize(lqs, o.entries_max_per_queue, &s) == want);
	FZ_CHECK(cfx_lq_close(lqs) == 0);
	return 0;
}
