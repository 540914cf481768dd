/*
 * verify.c - checking a recovered store against the ack log.
 *
 * Runs in the driver after each kill, on a store it has just opened (so
 * recovery has run). The checks, in order:
 *
 *  1. bounds: every queue starts at offset 0 (there is no retention) and
 *     ends no lower than the previous verification saw (what was recovered
 *     once and then closed cleanly must survive later crashes);
 *  2. density: reading each queue from its start offset returns every offset
 *     up to the end, each exactly once, in increasing order, and every
 *     message is byte-identical to the one generated for its offset (this
 *     covers the unacknowledged survivors too); reading at the end returns
 *     nothing and beyond it fails with CFX_EOFFSET;
 *  3. acknowledgements: every ack record is well formed, no two records
 *     claim the same offset of a queue (a lost and rewritten message would,
 *     since content depends only on the offset), each acked batch lies below
 *     its queue's end, and a read at its first offset returns its messages
 *     whose checksum equals the one the writer computed from its input;
 *  4. lookups: a random acknowledged message is found by its unique key and
 *     by its message id, exactly once, with the right offset and content.
 *
 * It never modifies the store or the ack log.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "crash.h"

#define SCAN_MSGS_MAX  1024
#define SCAN_BYTES_MAX (1u << 20)
#define LOOKUP_MAX     8
#define LOOKUP_PICKS   32 /* random acked messages tried for a key and an id */

struct ctx {
	struct cfx_store *st;
	struct cfx_read_result res;
	struct crash_msg_buf buf;
	char *why;
	size_t why_cap;
};

CFX_PRINTF(2, 3) static int fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, c->why_cap, fmt, ap);
	va_end(ap);
	return -1;
}

/* Compares a read message with the one generated for its offset. */
static int check_msg(struct ctx *c, unsigned t, unsigned q, const struct cfx_msg_view *v,
		     const char *what)
{
	struct cfx_msg want;
	char diff[256];

	crash_gen_msg(t, q, v->offset, &c->buf, &want);
	if (!crash_msg_equal(&want, v, diff, sizeof diff))
		return fail(c, "%s: %s/%u offset %" PRIu64 " is not the message written there: %s",
			    what, crash_topic_name(t), q, v->offset, diff);
	return 0;
}

/* ------------------------------------------------------------------------
 * 1 and 2: bounds and the dense scan of each queue
 * ------------------------------------------------------------------------ */

static int scan_queue(struct ctx *c, unsigned t, unsigned q, uint64_t prev_end, uint64_t *end_out,
		      uint64_t *msgs)
{
	struct cfx_view topic = crash_topic(t);
	const char *tn = crash_topic_name(t);
	uint64_t start, end, off;
	int rc;

	rc = cfx_store_queue_bounds(c->st, topic, q, &start, &end);
	if (rc)
		return fail(c, "cfx_store_queue_bounds(%s/%u): %s", tn, q, cfx_strerror(rc));
	*end_out = end;
	if (start != 0)
		return fail(c, "%s/%u starts at offset %" PRIu64 ", expected 0 (no retention)", tn,
			    q, start);
	if (end < prev_end)
		return fail(c,
			    "%s/%u ends at offset %" PRIu64 " but the previous verification read "
			    "it up to %" PRIu64 ": %" PRIu64 " recovered messages were lost",
			    tn, q, end, prev_end, prev_end - end);

	off = start;
	while (off < end) {
		rc = cfx_store_read(c->st, topic, q, off, SCAN_MSGS_MAX, SCAN_BYTES_MAX, &c->res);
		if (rc)
			return fail(c, "reading %s/%u at offset %" PRIu64 " (end %" PRIu64 "): %s",
				    tn, q, off, end, cfx_strerror(rc));
		if (c->res.count == 0)
			return fail(c,
				    "reading %s/%u at offset %" PRIu64 " returned no message, but "
				    "the queue ends at %" PRIu64 " (gap in offsets)",
				    tn, q, off, end);
		if (c->res.end_offset != end)
			return fail(c,
				    "reading %s/%u: end offset %" PRIu64 " changed to %" PRIu64
				    " on a store nobody writes to",
				    tn, q, end, c->res.end_offset);
		for (uint32_t i = 0; i < c->res.count; i++) {
			const struct cfx_msg_view *v = &c->res.msgs[i];
			if (v->offset != off + i)
				return fail(c,
					    "reading %s/%u from offset %" PRIu64
					    ": message %" PRIu32 " has offset %" PRIu64
					    ", expected %" PRIu64
					    " (offsets not dense and increasing)",
					    tn, q, off, i, v->offset, off + i);
			if (v->offset >= end)
				return fail(c,
					    "reading %s/%u returned offset %" PRIu64
					    " at or beyond the end %" PRIu64,
					    tn, q, v->offset, end);
			if (check_msg(c, t, q, v, "dense scan"))
				return -1;
		}
		off += c->res.count;
		if (c->res.next_offset != off)
			return fail(c,
				    "reading %s/%u: next_offset is %" PRIu64
				    " after offset %" PRIu64 " was returned",
				    tn, q, c->res.next_offset, off - 1);
		*msgs += c->res.count;
	}

	/* At the end: nothing, and no error; beyond it: out of range. */
	rc = cfx_store_read(c->st, topic, q, end, SCAN_MSGS_MAX, SCAN_BYTES_MAX, &c->res);
	if (rc || c->res.count)
		return fail(c,
			    "reading %s/%u at its end offset %" PRIu64 " returned %s and %" PRIu32
			    " messages, expected success and none",
			    tn, q, end, cfx_strerror(rc), c->res.count);
	rc = cfx_store_read(c->st, topic, q, end + 1, SCAN_MSGS_MAX, SCAN_BYTES_MAX, &c->res);
	if (rc != CFX_EOFFSET)
		return fail(c,
			    "reading %s/%u past its end (offset %" PRIu64
			    ") returned %s and %" PRIu32 " messages, expected EOFFSET",
			    tn, q, end + 1, cfx_strerror(rc), c->res.count);
	return 0;
}

/* ------------------------------------------------------------------------
 * 3: the ack log
 * ------------------------------------------------------------------------ */

static int load_acks(struct ctx *c, const char *dir, struct crash_ack **out, size_t *n_out,
		     uint64_t *torn)
{
	char path[PATH_MAX];
	struct crash_ack *acks = NULL;
	struct stat sb;
	uint8_t *raw = NULL;
	size_t n = 0, got = 0;
	int fd, rc = 0;

	*out = NULL;
	*n_out = 0;
	*torn = 0;
	snprintf(path, sizeof path, "%s/%s", dir, CRASH_ACK_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : fail(c, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0) {
		rc = fail(c, "cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	raw = cfx_malloc((size_t)sb.st_size + 1);
	while (got < (size_t)sb.st_size) {
		ssize_t r = read(fd, raw + got, (size_t)sb.st_size - got);
		if (r <= 0) {
			rc = fail(c, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "short");
			goto out;
		}
		got += (size_t)r;
	}
	n = got / CRASH_ACK_BYTES;
	*torn = got % CRASH_ACK_BYTES;
	acks = cfx_malloc((n ? n : 1) * sizeof *acks);
	for (size_t i = 0; i < n; i++) {
		const char *bad = crash_ack_decode(raw + i * CRASH_ACK_BYTES, &acks[i]);
		if (bad) {
			rc = fail(c, "%s: record %zu (byte %zu) is damaged: %s", path, i,
				  i * CRASH_ACK_BYTES, bad);
			goto out;
		}
	}
out:
	close(fd);
	cfx_free(raw);
	if (rc) {
		cfx_free(acks);
		return rc;
	}
	*out = acks;
	*n_out = n;
	return 0;
}

static int ack_cmp(const void *a, const void *b)
{
	const struct crash_ack *x = a, *y = b;

	if (x->topic != y->topic)
		return x->topic < y->topic ? -1 : 1;
	if (x->queue != y->queue)
		return x->queue < y->queue ? -1 : 1;
	if (x->first_offset != y->first_offset)
		return x->first_offset < y->first_offset ? -1 : 1;
	return 0;
}

/* Reads the acked batch at its offsets and checks it against the writer's digest. */
static int check_ack(struct ctx *c, const struct crash_ack *a, uint64_t end)
{
	const char *tn = crash_topic_name(a->topic);
	uint64_t last = a->first_offset + a->count;
	uint32_t digest = 0;
	int rc;

	if (last > end)
		return fail(c,
			    "acknowledged messages lost: run %" PRIu32 " was acked for %s/%u "
			    "offsets %" PRIu64 "..%" PRIu64 ", but the queue ends at %" PRIu64,
			    a->run, tn, a->queue, a->first_offset, last - 1, end);
	rc = cfx_store_read(c->st, crash_topic(a->topic), a->queue, a->first_offset, a->count,
			    SIZE_MAX, &c->res);
	if (rc || c->res.count != a->count)
		return fail(c,
			    "reading the acked batch %s/%u offsets %" PRIu64 "..%" PRIu64
			    " (run %" PRIu32 "): %s, %" PRIu32 " of %" PRIu32 " messages",
			    tn, a->queue, a->first_offset, last - 1, a->run, cfx_strerror(rc),
			    c->res.count, a->count);
	for (uint32_t i = 0; i < a->count; i++) {
		const struct cfx_msg_view *v = &c->res.msgs[i];
		if (v->offset != a->first_offset + i)
			return fail(c,
				    "reading the acked batch %s/%u at %" PRIu64 ": message %" PRIu32
				    " has offset %" PRIu64,
				    tn, a->queue, a->first_offset, i, v->offset);
		digest = crash_digest_view(digest, v);
	}
	if (digest != a->digest)
		return fail(c,
			    "acked batch %s/%u offsets %" PRIu64 "..%" PRIu64 " (run %" PRIu32
			    ") reads back with checksum %08" PRIx32 ", the writer sent %08" PRIx32,
			    tn, a->queue, a->first_offset, last - 1, a->run, digest, a->digest);
	return 0;
}

/* ------------------------------------------------------------------------
 * 4: key and id lookups
 * ------------------------------------------------------------------------ */

static int check_lookup(struct ctx *c, unsigned t, unsigned q, uint64_t off, int by_id)
{
	const char *tn = crash_topic_name(t);
	const char *kind = by_id ? "id" : "key";
	struct cfx_msg want;
	char token[96];
	int rc;

	crash_gen_msg(t, q, off, &c->buf, &want);
	if (by_id) {
		rc = cfx_store_lookup_id(c->st, want.msg_id, LOOKUP_MAX, &c->res);
		snprintf(token, sizeof token, "%.*s", (int)want.msg_id.len,
			 (const char *)want.msg_id.p);
	} else {
		crash_gen_key_token(t, q, off, token, sizeof token);
		rc = cfx_store_lookup_key(c->st, crash_topic(t), CFX_VIEW_STR(token), LOOKUP_MAX,
					  &c->res);
	}
	if (rc)
		return fail(c, "lookup of %s/%u offset %" PRIu64 " by %s \"%s\": %s", tn, q, off,
			    kind, token, cfx_strerror(rc));
	if (c->res.count != 1)
		return fail(c,
			    "lookup of %s/%u offset %" PRIu64 " by %s \"%s\" found %" PRIu32
			    " messages, expected exactly 1",
			    tn, q, off, kind, token, c->res.count);
	if (c->res.msgs[0].offset != off)
		return fail(c, "lookup by %s \"%s\" returned offset %" PRIu64 ", expected %" PRIu64,
			    kind, token, c->res.msgs[0].offset, off);
	return check_msg(c, t, q, &c->res.msgs[0], by_id ? "lookup by id" : "lookup by key");
}

static int check_lookups(struct ctx *c, const struct crash_ack *acks, size_t n,
			 struct crash_rng *rng)
{
	int key_done = 0, id_done = 0;
	char token[96];

	for (int i = 0; n && i < LOOKUP_PICKS && !(key_done && id_done); i++) {
		const struct crash_ack *a = &acks[crash_rng_next(rng) % n];
		uint64_t off = a->first_offset + crash_rng_next(rng) % a->count;
		struct cfx_msg m;

		crash_gen_msg(a->topic, a->queue, off, &c->buf, &m);
		if (!key_done &&
		    crash_gen_key_token(a->topic, a->queue, off, token, sizeof token)) {
			if (check_lookup(c, a->topic, a->queue, off, 0))
				return -1;
			key_done = 1;
		}
		if (!id_done && m.msg_id.len) {
			if (check_lookup(c, a->topic, a->queue, off, 1))
				return -1;
			id_done = 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The whole verification
 * ------------------------------------------------------------------------ */

int crash_verify(struct cfx_store *st, const char *dir,
		 const uint64_t prev_end[CRASH_TOPICS][CRASH_QUEUES], struct crash_rng *rng,
		 struct crash_verify_stats *vs, char *why, size_t why_cap)
{
	struct ctx *c = cfx_calloc(1, sizeof *c);
	struct cfx_store_stats ss;
	struct crash_ack *acks = NULL;
	size_t n = 0;
	int rc = 0;

	memset(vs, 0, sizeof *vs);
	c->st = st;
	c->why = why;
	c->why_cap = why_cap;
	cfx_read_result_init(&c->res);

	for (unsigned t = 0; t < CRASH_TOPICS && !rc; t++)
		for (unsigned q = 0; q < CRASH_QUEUES && !rc; q++)
			rc = scan_queue(c, t, q, prev_end[t][q], &vs->end[t][q], &vs->stored_msgs);
	if (!rc)
		rc = load_acks(c, dir, &acks, &n, &vs->torn_ack_bytes);

	/* The writer acks out of order (pipelining, threads): sort by queue and offset. */
	if (!rc && n)
		qsort(acks, n, sizeof *acks, ack_cmp);
	for (size_t i = 0; i < n && !rc; i++) {
		const struct crash_ack *a = &acks[i], *p = i ? &acks[i - 1] : NULL;
		if (p && p->topic == a->topic && p->queue == a->queue &&
		    p->first_offset + p->count > a->first_offset) {
			rc = fail(c,
				  "two acknowledgements claim %s/%u offset %" PRIu64
				  " (runs %" PRIu32 " and %" PRIu32
				  "): an acked message was lost and its offset "
				  "given to another",
				  crash_topic_name(a->topic), a->queue, a->first_offset, p->run,
				  a->run);
			break;
		}
		rc = check_ack(c, a, vs->end[a->topic][a->queue]);
		vs->acks++;
		vs->acked_msgs += a->count;
	}
	if (!rc)
		rc = check_lookups(c, acks, n, rng);

	cfx_store_get_stats(st, &ss);
	vs->log_bytes = ss.log_bytes;
	cfx_free(acks);
	cfx_read_result_free(&c->res);
	cfx_free(c);
	return rc;
}
