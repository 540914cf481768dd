/*
 * fuzz_kafka_codec.c - libFuzzer target for the Kafka wire codec
 * (proto/kafka/codec.c): frame check, request header, primitive types,
 * tagged fields, RecordBatch v2 inspection and iteration.
 *
 * Input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | mode    FZ_KAFKA_*
 *      1 |    1 | api     with FZ_KAFKA_OVERRIDE: kf_apis[api % (kf_napis + 1)],
 *        |      |         or ControlledShutdown for the last value
 *      2 |    1 | version with FZ_KAFKA_OVERRIDE: min + version % (max - min + 2),
 *        |      |         so one version past the highest too
 *      3 |    1 | walk    seed of the generic walk over the body
 *      4 |    N | frame   what a client sends: i32 size, request header, body
 *
 * With FZ_KAFKA_OVERRIDE the key and version in the frame are replaced by
 * the chosen ones, so that mutations of the rest meet every header layout.
 * A frame whose size does not check out is still parsed (all bytes after
 * the size), so the size prefix does not shield the header parser.
 *
 * After the header, the body is read by a Produce or ApiVersions walker if
 * the header says so (both use only the codec's primitives), then by a
 * generic walk: a sequence of primitive reads picked by a PRNG seeded
 * from `walk`. Every record batch met is inspected and iterated.
 *
 * Beyond "no crash, no out-of-bounds read (each piece the codec reads is
 * in a buffer of exactly its size), no undefined behaviour, no leak":
 *  - results are among the documented ones; a failed read leaves the
 *    reader's position where it failed and makes later reads return 0;
 *  - every view lies inside the bytes it came from;
 *  - every primitive that was read re-encodes to exactly the bytes it was
 *    read from (one encoding per value: overlong varints are refused);
 *  - an accepted request header re-encodes to the bytes it took;
 *  - accepted batches agree with their own header fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "fuzz_common.h"
#include "proto/kafka/codec.h"

#define FZ_KAFKA_OVERRIDE 0x01u /* replace key and version, see above */
#define FZ_KAFKA_CTRL_BYTES 4u
#define FZ_KAFKA_WALK_STEPS_MAX 512u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An exact-size heap copy, so that ASan catches a read one byte past it. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);

	if (!d)
		abort();
	if (len)
		memcpy(d, p, len);
	return d;
}

/* The bytes a successful read took must be what the writer makes of the value. */
static void check_reencoded(const struct cfx_reader *rd, size_t before, const struct cfx_writer *wr)
{
	FZ_CHECK(rd->pos - before == wr->len);
	FZ_CHECK(memcmp(rd->p + before, wr->p, wr->len) == 0);
}

static void check_view(struct cfx_view v, const struct cfx_reader *rd)
{
	if (v.p)
		FZ_CHECK(fz_view_within(v, rd->p, rd->len));
	else
		FZ_CHECK(v.len == 0);
	fz_touch(v.p, v.len);
}

/* ------------------------------------------------------------------------
 * Record batches
 * ------------------------------------------------------------------------ */

static void check_meta(const uint8_t *p, size_t len, const struct kf_batch_meta *m)
{
	FZ_CHECK(m->magic == 2);
	FZ_CHECK(m->batch_bytes == len);
	FZ_CHECK((uint64_t)m->batch_length + KF_BATCH_LOG_OVERHEAD == len);
	FZ_CHECK(len >= KF_BATCH_HEADER_BYTES);
	FZ_CHECK(m->records.p == p + KF_BATCH_HEADER_BYTES);
	FZ_CHECK(m->records.len == len - KF_BATCH_HEADER_BYTES);
	FZ_CHECK(m->crc_ok == 0 || m->crc_ok == 1);
	FZ_CHECK(m->compression >= 0 && m->compression <= KF_COMPRESSION_ZSTD);
	FZ_CHECK(m->record_count >= 0 && m->last_offset_delta >= 0);
	FZ_CHECK((int64_t)m->record_count <= (int64_t)m->last_offset_delta + 1);
	if (m->compression == KF_COMPRESSION_NONE)
		FZ_CHECK((uint64_t)m->record_count * KF_RECORD_BYTES_MIN <= m->records.len);
	fz_touch(m->records.p, m->records.len);
}

/* Inspects `field` as one batch and walks it as a records field. */
static void walk_records(struct cfx_view field)
{
	uint8_t *p = dup_exact(field.p, field.len);
	struct kf_batch_meta m;
	struct kf_batch_iter it;
	struct cfx_view b;
	size_t end = 0;
	int rc, n = 0;

	rc = kf_batch_inspect(p, field.len, &m);
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_EUNSUPPORTED);
	if (rc == 0)
		check_meta(p, field.len, &m);

	kf_batch_iter_init(&it, p, field.len);
	while ((rc = kf_batch_next(&it, &b, &m)) == 1) {
		/* Batches are back to back from the start of the field. */
		FZ_CHECK(b.p == p + end);
		FZ_CHECK(fz_view_within(b, p, field.len));
		check_meta(b.p, b.len, &m);
		end += b.len;
		n++;
	}
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_EUNSUPPORTED);
	FZ_CHECK(it.pos == end);
	if (rc == 0)
		FZ_CHECK(end == field.len);
	FZ_CHECK(kf_batch_next(&it, &b, &m) == rc); /* the outcome sticks */
	FZ_CHECK(kf_batches_count(p, field.len) == (rc ? rc : n));
	free(p);
}

/* ------------------------------------------------------------------------
 * Body walkers
 * ------------------------------------------------------------------------ */

static void skip_tags(struct cfx_reader *rd, int flexible)
{
	if (flexible)
		kf_skip_tagged_fields(rd);
}

/* Produce (any version the header allows): the fields, then every batch. */
static void walk_produce(struct cfx_reader *rd, int16_t version, int flexible)
{
	int32_t ntopics, nparts;
	int null;

	/* Request: TransactionalId (v3+), Acks, TimeoutMs */
	if (version >= 3)
		check_view(kf_read_string(rd, flexible, &null), rd);
	kf_read_i16(rd);
	kf_read_i32(rd);
	/* Request: TopicData */
	ntopics = kf_read_array_len(rd, flexible);
	for (int32_t t = 0; t < ntopics && !rd->err; t++) {
		/* Request: Name (v0-12) or TopicId (v13+) */
		if (version >= 13)
			kf_read_uuid(rd);
		else
			check_view(kf_read_string(rd, flexible, NULL), rd);
		/* Request: PartitionData */
		nparts = kf_read_array_len(rd, flexible);
		for (int32_t i = 0; i < nparts && !rd->err; i++) {
			struct cfx_view records;

			/* Request: Index, Records */
			kf_read_i32(rd);
			records = kf_read_bytes(rd, flexible, &null);
			check_view(records, rd);
			if (!rd->err && !null)
				walk_records(records);
			skip_tags(rd, flexible);
		}
		skip_tags(rd, flexible);
	}
	skip_tags(rd, flexible);
}

/* ApiVersions v3+: ClientSoftwareName, ClientSoftwareVersion, tags. */
static void walk_api_versions(struct cfx_reader *rd, int flexible)
{
	if (!flexible)
		return;
	check_view(kf_read_string(rd, 1, NULL), rd);
	check_view(kf_read_string(rd, 1, NULL), rd);
	kf_skip_tagged_fields(rd);
}

static uint32_t next_rand(uint32_t *s)
{
	/* xorshift32; the seed is never 0. */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* One primitive read picked by `op`; re-encodes what it read. */
static void walk_step(struct cfx_reader *rd, unsigned op, int flexible, struct cfx_writer *wr)
{
	size_t before = rd->pos;
	struct cfx_view v = { NULL, 0 }, data;
	uint32_t tag;
	int null = 0, is_bytes = 0, exact = 1;
	int32_t n;

	cfx_writer_reset(wr);
	switch (op % 14) {
	case 0:
		kf_write_i8(wr, kf_read_i8(rd));
		break;
	case 1:
		kf_write_i16(wr, kf_read_i16(rd));
		break;
	case 2:
		kf_write_i32(wr, kf_read_i32(rd));
		break;
	case 3:
		kf_write_i64(wr, kf_read_i64(rd));
		break;
	case 4:
		kf_write_uvarint(wr, kf_read_uvarint(rd));
		break;
	case 5:
		kf_write_varint(wr, kf_read_varint(rd));
		break;
	case 6:
		kf_write_varlong(wr, kf_read_varlong(rd));
		break;
	case 7:
	case 8:
		flexible = op % 14 == 8;
		v = kf_read_string(rd, flexible, &null);
		kf_write_string(wr, v, flexible, null);
		FZ_CHECK(rd->err || wr->len == kf_string_size(v.len, flexible, null));
		break;
	case 9:
		is_bytes = 1;
		v = kf_read_bytes(rd, flexible, &null);
		kf_write_bytes(wr, v, flexible, null);
		FZ_CHECK(rd->err || wr->len == kf_bytes_size(v.len, flexible, null));
		break;
	case 10:
		n = kf_read_array_len(rd, flexible);
		FZ_CHECK(n >= -1);
		FZ_CHECK(rd->err || n == -1 || (size_t)n <= cfx_reader_left(rd));
		kf_write_array_len(wr, n, flexible);
		break;
	case 11: {
		uint32_t count = kf_read_tagged_count(rd);

		exact = 0;
		FZ_CHECK(rd->err || count <= cfx_reader_left(rd) / 2);
		for (uint32_t i = 0; i < count && !rd->err; i++) {
			kf_read_tagged_field(rd, &tag, &data);
			check_view(data, rd);
		}
		break;
	}
	case 12: {
		struct kf_uuid id = kf_read_uuid(rd);
		kf_write_uuid(wr, &id);
		break;
	}
	default:
		kf_read_bool(rd);
		exact = 0;
		break;
	}

	check_view(v, rd);
	if (rd->err) {
		/* A failed read stays where it failed, and so do later reads. */
		FZ_CHECK(rd->pos >= before && rd->pos <= rd->len);
		before = rd->pos;
		FZ_CHECK(kf_read_i8(rd) == 0 && kf_read_uvarint(rd) == 0 && rd->pos == before);
		FZ_CHECK(cfx_reader_left(rd) == 0);
		return;
	}
	if (exact)
		check_reencoded(rd, before, wr);
	if (is_bytes && !null)
		walk_records(v);
}

static void walk_generic(const uint8_t *p, size_t len, int flexible, uint8_t seed)
{
	struct cfx_reader rd = cfx_reader_make(p, len);
	struct cfx_writer wr;
	uint32_t s = 0x9e3779b9u ^ ((uint32_t)seed * 0x01000193u);

	cfx_writer_init(&wr, 64);
	for (unsigned i = 0; i < FZ_KAFKA_WALK_STEPS_MAX && !rd.err && cfx_reader_left(&rd); i++)
		walk_step(&rd, next_rand(&s) >> 8, flexible, &wr);
	cfx_writer_free(&wr);
}

/* ------------------------------------------------------------------------
 * The request
 * ------------------------------------------------------------------------ */

static void check_header(const struct cfx_reader *rd, size_t start, const struct kf_req_header *h)
{
	struct cfx_writer wr;
	size_t cmp;

	FZ_CHECK(h->header_version == kf_request_header_version(h->api_key, h->api_version));
	FZ_CHECK(h->header_bytes == rd->pos - start);
	FZ_CHECK(h->client_id_null ? h->client_id.p == NULL : h->header_version >= 1);
	check_view(h->client_id, rd);
	/* Re-encoded, the header is the bytes it took (up to its tags, which
	 * are written empty). */
	cfx_writer_init(&wr, 64);
	kf_write_request_header(&wr, h, h->header_version);
	cmp = h->header_version == 2 ? wr.len - 1 : wr.len;
	FZ_CHECK(cmp <= h->header_bytes);
	FZ_CHECK(memcmp(wr.p, rd->p + start, cmp) == 0);
	if (h->header_version < 2)
		FZ_CHECK(wr.len == h->header_bytes);
	cfx_writer_free(&wr);
}

/* A response to the request must frame itself. */
static void check_response(const struct kf_req_header *h)
{
	int hv = kf_response_header_version(h->api_key, h->api_version);
	struct cfx_writer wr;
	size_t start;

	if (hv < 0)
		return;
	FZ_CHECK(hv == 0 || hv == 1);
	cfx_writer_init(&wr, 32);
	start = kf_begin_response(&wr, h->correlation_id, hv);
	kf_write_i16(&wr, KF_ERR_UNSUPPORTED_VERSION);
	kf_end_response(&wr, start);
	FZ_CHECK(cfx_load_be32(wr.p) == wr.len - 4);
	FZ_CHECK((int32_t)cfx_load_be32(wr.p + 4) == h->correlation_id);
	FZ_CHECK(wr.len == 4 + 4 + (size_t)hv + 2);
	cfx_writer_free(&wr);
}

static void override_api(uint8_t *frame, size_t len, uint8_t api, uint8_t version)
{
	int16_t key, min, max, ver;

	if (len < 8)
		return;
	if (api % (kf_napis + 1) == kf_napis) {
		key = KF_API_CONTROLLED_SHUTDOWN;
		min = 0;
		max = 3;
	} else {
		const struct kf_api_info *info = &kf_apis[api % (kf_napis + 1)];
		key = info->key;
		min = info->min_version;
		max = info->max_version;
	}
	ver = (int16_t)(min + version % (max - min + 2));
	cfx_store_be16(frame + 4, (uint16_t)key);
	cfx_store_be16(frame + 6, (uint16_t)ver);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kf_req_header h;
	struct cfx_reader rd;
	uint8_t *frame, *req;
	size_t frame_len, req_off, req_len, fb = 0;
	int rc, flexible;

	if (size < FZ_KAFKA_CTRL_BYTES)
		return 0;
	frame_len = size - FZ_KAFKA_CTRL_BYTES;
	frame = dup_exact(data + FZ_KAFKA_CTRL_BYTES, frame_len);
	if (data[0] & FZ_KAFKA_OVERRIDE)
		override_api(frame, frame_len, data[1], data[2]);

	rc = kf_frame_check(frame, frame_len, 8192, &fb);
	FZ_CHECK(rc == 0 || rc == CFX_NEED_MORE || rc == CFX_EPARSE || rc == CFX_E2BIG);
	req_off = frame_len < 4 ? frame_len : 4;
	req_len = frame_len - req_off;
	if (rc == 0) {
		FZ_CHECK(fb >= 12 && fb <= frame_len && fb <= 4 + 8192);
		req_len = fb - 4;
	}
	/* The request alone, so that reading past its end is caught. */
	req = dup_exact(frame + req_off, req_len);
	free(frame);

	rd = cfx_reader_make(req, req_len);
	rc = kf_parse_request_header(&rd, &h);
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_EUNSUPPORTED);
	if (rc == CFX_EPARSE) {
		FZ_CHECK(rd.err == CFX_EPARSE && rd.err_desc != NULL);
		FZ_CHECK(h.client_id.p == NULL);
		/* Walk the bytes anyway: the primitives do not care. */
		walk_generic(req, req_len, data[3] & 1, data[3]);
		free(req);
		return 0;
	}
	if (rc == CFX_EUNSUPPORTED) {
		FZ_CHECK(rd.err == 0 && rd.pos == 8 && h.header_version == -1);
		FZ_CHECK(kf_api_lookup(h.api_key) == NULL);
		walk_generic(req + rd.pos, req_len - rd.pos, data[3] & 1, data[3]);
		free(req);
		return 0;
	}
	check_header(&rd, 0, &h);
	check_response(&h);

	flexible = kf_api_is_flexible(h.api_key, h.api_version);
	FZ_CHECK(flexible == (h.header_version == 2) || h.api_key == KF_API_CONTROLLED_SHUTDOWN);
	{
		/* The structured walkers read from a copy of the body. */
		struct cfx_reader body = cfx_reader_make(req + rd.pos, req_len - rd.pos);

		if (h.api_key == KF_API_PRODUCE)
			walk_produce(&body, h.api_version, flexible);
		else if (h.api_key == KF_API_API_VERSIONS)
			walk_api_versions(&body, flexible);
		FZ_CHECK(body.pos <= body.len);
	}
	walk_generic(req + rd.pos, req_len - rd.pos, flexible, data[3]);
	free(req);
	return 0;
}
