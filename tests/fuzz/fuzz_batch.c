/*
 * fuzz_batch.c - libFuzzer target for the RecordBatch v2 decoder
 * (store/batch.c: cfx_batch_open, cfx_batch_next, cfx_msg_view_next_prop).
 *
 * Input: one flags byte (FZ_BATCH_* in fuzz_common.h), then the batch. The
 * batch ends exactly where the input ends, so ASan sees any read past it.
 * With FZ_BATCH_FIX_CRC the target first rewrites Kafka's CRC, so mutations
 * get past the checksum when verification is on.
 *
 * Beyond "no crash, no out-of-bounds read, no leak", a batch that decodes
 * completely must survive a round trip: its messages, re-encoded with
 * cfx_batch_encode, decode (CRC checked) to the same keys, bodies, tags,
 * ids, flags, timestamps (which wrap modulo 2^64, as Kafka's do) and
 * properties.
 */
#include <stdint.h>
#include <stdlib.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "fuzz_common.h"
#include "store/batch.h"

/* Round trips are for batches of modest size; the walk covers the rest. */
#define ROUNDTRIP_MSGS_MAX 256u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct decoded {
	struct cfx_msg_view *views;
	struct cfx_msg *msgs;
	struct cfx_prop **props;
	uint32_t n;
};

static void decoded_free(struct decoded *d)
{
	for (uint32_t i = 0; i < d->n; i++)
		free(d->props[i]);
	free(d->props);
	free(d->msgs);
	free(d->views);
}

/* The user properties of `m`, in order; *count receives how many. */
static struct cfx_prop *collect_props(const struct cfx_msg_view *m, uint32_t *count)
{
	struct cfx_prop *v = malloc(((size_t)m->header_count + 1) * sizeof *v);
	size_t cursor = 0;
	uint32_t n = 0;

	FZ_CHECK(v != NULL);
	while (n <= m->header_count && cfx_msg_view_next_prop(m, &cursor, &v[n]) == 1)
		n++;
	FZ_CHECK(n <= m->header_count);
	*count = n;
	return v;
}

/* Decodes every message of a batch that fz_walk_batch accepted. */
static int decode_all(const uint8_t *p, size_t len, struct decoded *d)
{
	struct cfx_batch_rd b;
	int rc;

	memset(d, 0, sizeof *d);
	rc = cfx_batch_open(&b, p, len, 0, NULL);
	if (rc || b.count > ROUNDTRIP_MSGS_MAX)
		return -1;
	d->views = calloc(b.count, sizeof *d->views);
	d->msgs = calloc(b.count, sizeof *d->msgs);
	d->props = calloc(b.count, sizeof *d->props);
	FZ_CHECK(d->views && d->msgs && d->props);
	while (d->n < b.count && cfx_batch_next(&b, &d->views[d->n], NULL) == 1) {
		const struct cfx_msg_view *m = &d->views[d->n];
		struct cfx_msg *out = &d->msgs[d->n];

		out->key = m->key;
		out->key_null = m->key_null;
		out->body = m->body;
		out->body_null = m->body_null;
		out->tag = m->tag;
		out->msg_id = m->msg_id;
		out->born_ms = m->born_ms;
		out->flag = m->flag;
		d->props[d->n] = collect_props(m, &out->prop_count);
		out->props = d->props[d->n];
		d->n++;
	}
	return d->n == b.count ? 0 : -1;
}

static void roundtrip(const uint8_t *p, size_t len)
{
	struct cfx_batch_info info;
	struct cfx_writer wr;
	struct cfx_batch_rd b;
	struct cfx_msg_view m;
	struct decoded d;
	int rc;

	if (decode_all(p, len, &d) != 0) {
		decoded_free(&d);
		return;
	}
	cfx_writer_init(&wr, len + 64);
	rc = cfx_batch_encode(&wr, d.msgs, d.n, &info);
	if (rc == CFX_E2BIG) {
		/* More properties than the encoder accepts (the decoder allows
		 * CFX_MSG_PROPS_MAX headers in all, reserved ones included). */
		goto out;
	}
	FZ_CHECK(rc == 0);
	FZ_CHECK(info.count == d.n);
	FZ_CHECK(cfx_batch_open(&b, wr.p, wr.len, 1, NULL) == 0);
	FZ_CHECK(b.count == d.n);
	for (uint32_t i = 0; i < d.n; i++) {
		const struct cfx_msg *want = &d.msgs[i];
		struct cfx_prop *props;
		uint32_t nprops;

		FZ_CHECK(cfx_batch_next(&b, &m, NULL) == 1);
		FZ_CHECK(m.offset == i);
		FZ_CHECK(m.key_null == want->key_null && cfx_view_eq(m.key, want->key));
		FZ_CHECK(m.body_null == want->body_null && cfx_view_eq(m.body, want->body));
		FZ_CHECK(cfx_view_eq(m.tag, want->tag));
		FZ_CHECK(cfx_view_eq(m.msg_id, want->msg_id));
		FZ_CHECK(m.flag == want->flag);
		FZ_CHECK(m.born_ms == want->born_ms);
		props = collect_props(&m, &nprops);
		FZ_CHECK(nprops == want->prop_count);
		for (uint32_t j = 0; j < nprops; j++) {
			FZ_CHECK(cfx_view_eq(props[j].name, want->props[j].name));
			FZ_CHECK(cfx_view_eq(props[j].value, want->props[j].value));
		}
		free(props);
	}
	FZ_CHECK(cfx_batch_next(&b, &m, NULL) == 0);
out:
	cfx_writer_free(&wr);
	decoded_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t flags, *batch;
	size_t len;
	uint32_t msgs;
	int rc;

	if (size < FZ_BATCH_CTRL_BYTES)
		return 0;
	flags = data[0];
	len = size - FZ_BATCH_CTRL_BYTES;
	/* A private copy of exactly the batch: mutable for the CRC fix, and
	 * ending where the batch ends. */
	batch = calloc(1, len ? len : 1);
	FZ_CHECK(batch != NULL);
	if (len)
		memcpy(batch, data + FZ_BATCH_CTRL_BYTES, len);
	if ((flags & FZ_BATCH_FIX_CRC) && len >= CFX_KBATCH_HEADER_BYTES)
		cfx_store_be32(batch + CFX_KBATCH_OFF_CRC,
			       cfx_crc32c(0, batch + CFX_KBATCH_OFF_ATTRIBUTES,
					  len - CFX_KBATCH_OFF_ATTRIBUTES));

	rc = fz_walk_batch(batch, len, flags & FZ_BATCH_VERIFY_CRC, &msgs);
	if (rc == 0)
		roundtrip(batch, len);
	free(batch);
	return 0;
}
