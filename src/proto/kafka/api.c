/*
 * api.c - the Kafka APIs served: Metadata, ListOffsets, Produce, Fetch.
 *
 * Requests are decoded field by field in schema order (versions as in
 * Kafka's message schemas; the dispatch table in server.c bounds them);
 * a decode error closes the connection. Produce appends each RecordBatch
 * as it came (the store's batch format is Kafka's); Fetch answers with the
 * stored batches' bytes.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "proto/kafka/kafka_int.h"
#include "proto/kafka/producers.h"
#include "store/format.h"

#define NODE_ID KF_NODE_ID
#define FETCH_REFS_MAX 256
#define FETCH_COPY_MAX (64u << 10) /* a partition's records below this are copied */

static int16_t kerr_of(int err)
{
	switch (err) {
	case 0:
		return KF_ERR_NONE;
	case CFX_ENOENT:
	case CFX_EQUEUE:
	case CFX_ETOPIC:
		return KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
	case CFX_EOFFSET:
		return KF_ERR_OFFSET_OUT_OF_RANGE;
	case CFX_EMSGSIZE:
	case CFX_EBATCHSIZE:
		return KF_ERR_MESSAGE_TOO_LARGE;
	case CFX_EINVAL:
		return KF_ERR_CORRUPT_MESSAGE;
	case CFX_ENOSPC:
	case CFX_EIO:
	case CFX_EFSYNC:
		return KF_ERR_KAFKA_STORAGE_ERROR;
	default:
		return KF_ERR_UNKNOWN_SERVER_ERROR;
	}
}

/* The topic (auto-created when allowed) and whether Kafka records fit it. */
static int16_t topic_of(struct kafka_service *svc, struct cfx_view name, int create,
			struct cfx_topic_info *ti)
{
	int rc = cfx_broker_topic_get(svc->br, name, create, ti);

	if (rc == CFX_ETOPIC)
		return KF_ERR_INVALID_TOPIC_EXCEPTION;
	return rc ? KF_ERR_UNKNOWN_TOPIC_OR_PARTITION : KF_ERR_NONE;
}

/* ------------------------------------------------------------------------
 * Metadata (v1-v9)
 * ------------------------------------------------------------------------ */

struct name_list {
	char **v;
	uint32_t n, cap;
};

static void collect_topic(void *arg, const struct cfx_topic_info *t)
{
	struct name_list *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = cfx_realloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = cfx_strdup(t->name);
}

static void write_int_array(struct cfx_writer *w, int flex, int32_t one)
{
	kf_write_array_len(w, one < 0 ? 0 : 1, flex);
	if (one >= 0)
		kf_write_i32(w, one);
}

void kf_metadata(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	int16_t v = r->h.api_version;
	int flex = r->flex, auto_create = 1;
	struct name_list names = { 0 };
	int32_t n = kf_read_array_len(rd, flex);

	for (int32_t i = 0; i < n && !rd->err; i++) {
		int null;
		struct cfx_view t = kf_read_string(rd, flex, &null);
		if (flex)
			kf_skip_tagged_fields(rd);
		if (!rd->err && !null) {
			if (names.n == names.cap) {
				names.cap = names.cap ? names.cap * 2 : 8;
				names.v = cfx_realloc(names.v, names.cap * sizeof *names.v);
			}
			names.v[names.n++] = kafka__vdup(t);
		}
	}
	if (v >= 4)
		auto_create = kf_read_bool(rd);
	if (v >= 8) {
		kf_read_bool(rd); /* include cluster authorized operations */
		kf_read_bool(rd); /* include topic authorized operations */
	}
	if (rd->err) {
		for (uint32_t i = 0; i < names.n; i++)
			cfx_free(names.v[i]);
		cfx_free(names.v);
		kafka__bad_request(kc, r, "Metadata");
		return;
	}
	if (n < 0) { /* null: all topics, those the client may see */
		uint32_t kept = 0;
		cfx_broker_topic_foreach(svc->br, collect_topic, &names);
		for (uint32_t i = 0; i < names.n; i++) {
			if (kf_may(kc, CFX_AUTH_TOPIC, CFX_VIEW_STR(names.v[i]), CFX_AUTH_GET))
				names.v[kept++] = names.v[i];
			else
				cfx_free(names.v[i]);
		}
		names.n = kept;
	}

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	if (v >= 3)
		kf_write_i32(w, 0); /* throttle time */
	kf_write_array_len(w, 1, flex);
	kf_write_i32(w, NODE_ID);
	kf_write_string(w, CFX_VIEW_STR(svc->host), flex, 0);
	kf_write_i32(w, svc->port);
	kf_write_string(w, (struct cfx_view){ 0 }, flex, 1); /* rack */
	if (flex)
		kf_write_empty_tagged_fields(w);
	if (v >= 2)
		kf_write_string(w, CFX_VIEW_STR(svc->o.cluster_id), flex, 0);
	kf_write_i32(w, NODE_ID); /* controller */
	kf_write_array_len(w, (int32_t)names.n, flex);
	for (uint32_t i = 0; i < names.n; i++) {
		struct cfx_topic_info ti = { 0 };
		int16_t err = n >= 0 ? kf_authorize(kc, CFX_AUTH_TOPIC, CFX_VIEW_STR(names.v[i]),
						    CFX_AUTH_GET)
				     : KF_ERR_NONE;
		if (!err)
			err = topic_of(svc, CFX_VIEW_STR(names.v[i]), auto_create && n >= 0 &&
					       kf_may(kc, CFX_AUTH_TOPIC, CFX_VIEW_STR(names.v[i]),
						      CFX_AUTH_CREATE), &ti);
		uint32_t parts = err ? 0 : ti.queues;

		kf_write_i16(w, err);
		kf_write_string(w, CFX_VIEW_STR(names.v[i]), flex, 0);
		kf_write_bool(w, names.v[i][0] == '%'); /* the broker's own topics are internal */
		kf_write_array_len(w, (int32_t)parts, flex);
		for (uint32_t p = 0; p < parts; p++) {
			kf_write_i16(w, KF_ERR_NONE);
			kf_write_i32(w, (int32_t)p);
			kf_write_i32(w, NODE_ID);
			if (v >= 7)
				kf_write_i32(w, 0); /* leader epoch */
			write_int_array(w, flex, NODE_ID); /* replicas */
			write_int_array(w, flex, NODE_ID); /* in-sync replicas */
			if (v >= 5)
				write_int_array(w, flex, -1); /* offline replicas: none */
			if (flex)
				kf_write_empty_tagged_fields(w);
		}
		if (v >= 8)
			kf_write_i32(w, INT32_MIN); /* authorized operations: not computed */
		if (flex)
			kf_write_empty_tagged_fields(w);
		cfx_free(names.v[i]);
	}
	cfx_free(names.v);
	if (v >= 8)
		kf_write_i32(w, INT32_MIN);
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * ListOffsets (v1-v5)
 * ------------------------------------------------------------------------ */

void kf_list_offsets(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	struct cfx_store *st = cfx_broker_store(svc->br);
	int16_t v = r->h.api_version;
	struct cfx_writer body;
	int32_t nt;

	kf_read_i32(rd); /* replica id */
	if (v >= 2)
		kf_read_i8(rd); /* isolation level: no transactions, both are the same */
	nt = kf_read_array_len(rd, 0);
	cfx_writer_init(&body, 256);
	kf_write_array_len(&body, nt < 0 ? 0 : nt, 0);
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		int null;
		struct cfx_view topic = kf_read_string(rd, 0, &null);
		int32_t np = kf_read_array_len(rd, 0);
		struct cfx_topic_info ti = { 0 };
		int16_t terr = rd->err ? 0 : kf_authorize(kc, CFX_AUTH_TOPIC, topic, CFX_AUTH_GET);

		if (!terr && !rd->err)
			terr = topic_of(svc, topic, 0, &ti);

		kf_write_string(&body, topic, 0, 0);
		kf_write_array_len(&body, np < 0 ? 0 : np, 0);
		for (int32_t k = 0; k < np && !rd->err; k++) {
			int32_t part = kf_read_i32(rd);
			if (v >= 4)
				kf_read_i32(rd); /* current leader epoch */
			int64_t ts = kf_read_i64(rd);
			int16_t err = terr;
			uint64_t start = 0, end = 0, off = 0;

			if (!err && (part < 0 || (uint32_t)part >= ti.queues))
				err = KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
			if (!err) {
				cfx_store_queue_bounds(st, topic, (uint32_t)part, &start, &end);
				if (ts == -2)
					off = start;
				else if (ts == -1)
					off = end;
				else if (ts >= 0)
					cfx_store_offset_for_time(st, topic, (uint32_t)part, ts, &off);
				else
					err = KF_ERR_INVALID_REQUEST;
			}
			kf_write_i32(&body, part);
			kf_write_i16(&body, err);
			kf_write_i64(&body, -1); /* timestamp of the found record: not looked up */
			kf_write_i64(&body, err ? -1 : (int64_t)off);
			if (v >= 4)
				kf_write_i32(&body, 0); /* leader epoch */
		}
	}
	if (rd->err) {
		cfx_writer_free(&body);
		kafka__bad_request(kc, r, "ListOffsets");
		return;
	}
	size_t start = kreq_begin(r);
	if (v >= 2)
		kf_write_i32(&r->out, 0); /* throttle time */
	cfx_write_bytes(&r->out, body.p, body.len);
	cfx_writer_free(&body);
	kf_end_response(&r->out, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * Produce (v3-v9)
 *
 * Batches with a producer id (idempotent producers) go through the sequence
 * table first (producers.h): in order -> appended and recorded as pending;
 * a retry of a stored batch -> NONE with its original offset, nothing
 * appended; a retry of one still being appended -> answered with that
 * append's result when it completes; a gap or a fenced epoch -> that
 * partition's error. Offsets reach the table in produce_settle, on the
 * loop, once the request's appends are all done.
 * ------------------------------------------------------------------------ */

struct p_part {
	int32_t index;
	int16_t err;
	uint32_t first_app, napps; /* its appends in prod->apps */
};

struct p_topic {
	char *name;
	struct p_part *parts;
	uint32_t nparts;
};

struct p_app {
	struct produce *pr;
	int err;
	uint64_t offset;
	uint32_t count;
	uint32_t queue;
	/* Idempotent batches (producers.h): */
	const char *topic;	   /* the request's copy of the name */
	int64_t producer_id;	   /* -1: not idempotent */
	uint64_t serial;	   /* its pending sequence entry; 0 once settled */
	struct kf_seq_waiter w;	   /* a duplicate waiting for its original's append */
};

struct produce {
	struct kreq *r;
	struct cfx_loop *loop;
	struct kafka_service *svc;
	struct p_topic *topics;
	uint32_t ntopics;
	struct p_app *apps;
	uint32_t napps, capapps;
	atomic_uint left; /* appends not completed, plus one while they are issued */
	struct cfx_timer timer; /* waiting for the appends to be readable */
};

static void produce_free(struct produce *pr)
{
	for (uint32_t i = 0; i < pr->ntopics; i++) {
		cfx_free(pr->topics[i].name);
		cfx_free(pr->topics[i].parts);
	}
	cfx_free(pr->topics);
	cfx_free(pr->apps);
	cfx_free(pr);
}

/* Are the appended records readable (indexed) yet? An append is
 * acknowledged before the dispatcher indexes it; a Kafka client that
 * produces and then asks for the end offset must see its records. */
static int produce_visible(struct produce *pr)
{
	struct cfx_store *st = cfx_broker_store(pr->svc->br);

	for (uint32_t i = 0; i < pr->ntopics; i++)
		for (uint32_t k = 0; k < pr->topics[i].nparts; k++) {
			struct p_part *p = &pr->topics[i].parts[k];
			for (uint32_t a = 0; a < p->napps; a++) {
				struct p_app *ap = &pr->apps[p->first_app + a];
				uint64_t start, end;
				if (ap->err)
					continue;
				cfx_store_queue_bounds(st, CFX_VIEW_STR(pr->topics[i].name), ap->queue,
						       &start, &end);
				if (end < ap->offset + ap->count)
					return 0;
			}
		}
	return 1;
}

static void produce_answer(void *arg);

static void produce_recheck(struct cfx_loop *loop, struct cfx_timer *t)
{
	CFX_UNUSED(loop);
	produce_answer(t->data);
}

/* Tells the sequence table how the idempotent appends ended (their offsets,
 * or that they failed). Not in the append callback: that may run inside
 * cfx_store_append_batch, under the table's lock. Once per request. */
static void produce_settle(struct produce *pr)
{
	for (uint32_t i = 0; i < pr->napps; i++) {
		struct p_app *a = &pr->apps[i];
		if (!a->serial)
			continue;
		kf_producers_complete(pr->svc->producers, a->producer_id, CFX_VIEW_STR(a->topic),
				      (int32_t)a->queue, a->serial, a->err,
				      a->err ? -1 : (int64_t)a->offset);
		a->serial = 0;
	}
}

/* All appends done: the response, on the connection's loop. */
static void produce_answer(void *arg)
{
	struct produce *pr = arg;
	struct kreq *r = pr->r;

	produce_settle(pr);
	if (r->kc && !r->silent && !produce_visible(pr)) {
		cfx_timer_start(pr->loop, &pr->timer, 1, produce_recheck, pr);
		return;
	}
	struct cfx_store *st = cfx_broker_store(pr->svc->br);
	int16_t v = r->h.api_version;
	int flex = r->flex;

	r->pending = 0;
	if (!r->silent && r->kc) {
		struct cfx_writer *w = &r->out;
		size_t start = kreq_begin(r);
		kf_write_array_len(w, (int32_t)pr->ntopics, flex);
		for (uint32_t i = 0; i < pr->ntopics; i++) {
			struct p_topic *t = &pr->topics[i];
			kf_write_string(w, CFX_VIEW_STR(t->name), flex, 0);
			kf_write_array_len(w, (int32_t)t->nparts, flex);
			for (uint32_t k = 0; k < t->nparts; k++) {
				struct p_part *p = &t->parts[k];
				int16_t err = p->err;
				int64_t base = -1;
				uint64_t lstart = 0, lend = 0;

				for (uint32_t a = 0; a < p->napps && !err; a++)
					err = kerr_of(pr->apps[p->first_app + a].err);
				if (!err && p->napps)
					base = (int64_t)pr->apps[p->first_app].offset;
				if (!err)
					cfx_store_queue_bounds(st, CFX_VIEW_STR(t->name), (uint32_t)p->index,
							       &lstart, &lend);
				kf_write_i32(w, p->index);
				kf_write_i16(w, err);
				kf_write_i64(w, base);
				kf_write_i64(w, -1); /* log append time: CreateTime is kept */
				if (v >= 5)
					kf_write_i64(w, err ? -1 : (int64_t)lstart);
				if (v >= 8) {
					kf_write_array_len(w, 0, flex); /* record errors */
					kf_write_string(w, (struct cfx_view){ 0 }, flex, 1);
				}
				if (flex)
					kf_write_empty_tagged_fields(w);
			}
			if (flex)
				kf_write_empty_tagged_fields(w);
		}
		kf_write_i32(w, 0); /* throttle time */
		if (flex)
			kf_write_empty_tagged_fields(w);
		kf_end_response(w, start);
	}
	produce_free(pr);
	kreq_done(r);
}

static void appended(void *arg, const struct cfx_append_result *res)
{
	struct p_app *a = arg;
	struct produce *pr = a->pr;

	a->err = res->err;
	a->offset = res->first_offset;
	if (atomic_fetch_sub(&pr->left, 1) == 1)
		cfx_loop_post(pr->loop, produce_answer, pr);
}

/* A duplicate's original append ended (@thread any): it shares the result. */
static void duplicate_settled(struct kf_seq_waiter *w, int err, int64_t offset)
{
	struct p_app *a = (struct p_app *)((char *)w - offsetof(struct p_app, w));
	struct cfx_append_result res = { .err = err, .first_offset = err ? 0 : (uint64_t)offset };

	appended(a, &res);
}

void kf_produce(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	struct cfx_store *st = cfx_broker_store(svc->br);
	struct produce *pr = cfx_calloc(1, sizeof *pr);
	int64_t now_ms = cfx_clock_mono_ms();
	int flex = r->flex, null;
	int16_t acks;
	int32_t nt;

	pr->r = r;
	pr->loop = kc->c->loop;
	pr->svc = svc;
	kf_read_string(rd, flex, &null); /* transactional id: transactions are not served */
	acks = kf_read_i16(rd);
	kf_read_i32(rd); /* timeout */
	nt = kf_read_array_len(rd, flex);
	if (!rd->err && nt > 0)
		pr->topics = cfx_calloc((size_t)nt, sizeof *pr->topics);
	/* First pass: decode and validate everything, so that a malformed
	 * request appends nothing. Views stay valid until the handler returns. */
	struct cfx_reader save = *rd;
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		kf_read_string(rd, flex, &null);
		int32_t np = kf_read_array_len(rd, flex);
		for (int32_t k = 0; k < np && !rd->err; k++) {
			kf_read_i32(rd);
			struct cfx_view rec = kf_read_bytes(rd, flex, &null);
			int nb = rd->err || null ? 0 : kf_batches_count(rec.p, rec.len);
			pr->capapps += nb > 0 ? (uint32_t)nb : 0;
			if (flex)
				kf_skip_tagged_fields(rd);
		}
		if (flex)
			kf_skip_tagged_fields(rd);
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || nt < 0 || (acks != 0 && acks != 1 && acks != -1)) {
		produce_free(pr);
		kafka__bad_request(kc, r, "Produce");
		return;
	}
	*rd = save;
	pr->apps = cfx_calloc(pr->capapps + 1, sizeof *pr->apps); /* never reallocated: appends point in */
	r->silent = acks == 0;
	r->pending = 1;
	atomic_store(&pr->left, 1);
	pr->ntopics = (uint32_t)nt;
	for (int32_t i = 0; i < nt; i++) {
		struct p_topic *t = &pr->topics[i];
		struct cfx_view name = kf_read_string(rd, flex, &null);
		struct cfx_topic_info ti = { 0 };
		int32_t np = kf_read_array_len(rd, flex);
		int16_t terr = kf_authorize(kc, CFX_AUTH_TOPIC, name, CFX_AUTH_PUB);

		if (!terr) /* auto-creation needs CREATE too */
			terr = topic_of(svc, name, kf_may(kc, CFX_AUTH_TOPIC, name, CFX_AUTH_CREATE),
					&ti);
		if (!terr && !cfx_broker_type_accepts(ti.type, CFX_MSG_NORMAL))
			terr = KF_ERR_INVALID_RECORD;
		t->name = kafka__vdup(name);
		t->nparts = (uint32_t)(np < 0 ? 0 : np);
		t->parts = cfx_calloc(t->nparts + 1, sizeof *t->parts);
		for (int32_t k = 0; k < np; k++) {
			struct p_part *p = &t->parts[k];
			struct cfx_view records;
			struct kf_batch_iter it;
			struct kf_batch_meta m;
			struct cfx_view b;
			int brc, idem = 0;

			p->index = kf_read_i32(rd);
			records = kf_read_bytes(rd, flex, &null);
			if (flex)
				kf_skip_tagged_fields(rd);
			p->err = terr;
			if (!p->err && (p->index < 0 || (uint32_t)p->index >= ti.queues))
				p->err = KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
			if (p->err || null)
				continue;
			/* Check every batch of the partition before appending any. */
			kf_batch_iter_init(&it, records.p, records.len);
			while ((brc = kf_batch_next(&it, &b, &m)) == 1 && !p->err) {
				if (!m.crc_ok || m.record_count <= 0)
					p->err = KF_ERR_CORRUPT_MESSAGE;
				else if (m.is_transactional || m.is_control)
					p->err = KF_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT;
				idem |= m.producer_id >= 0;
			}
			if (brc < 0)
				p->err = brc == CFX_EUNSUPPORTED ? KF_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT
								 : KF_ERR_CORRUPT_MESSAGE;
			if (p->err)
				continue;
			p->first_app = pr->napps;
			/* Idempotent batches are judged and appended under the
			 * sequence table's lock: the log gets them in the order
			 * they were judged, whichever connection they came on. */
			if (idem)
				kf_producers_lock(svc->producers);
			kf_batch_iter_init(&it, records.p, records.len);
			it.check_crc = 0; /* checked in the pass above: the same bytes */
			while (!p->err && kf_batch_next(&it, &b, &m) == 1) {
				struct cfx_batch_info info = {
					.count = (uint32_t)m.record_count,
					.tag_hash = CFX_TAG_HASH_NONE,
					.has_keys = m.compression == KF_COMPRESSION_NONE,
					.record_bytes_max = b.len,
				};
				struct kf_seq_batch sb = {
					.producer_id = m.producer_id,
					.epoch = m.producer_epoch,
					.base_sequence = m.base_sequence,
					.last_offset_delta = m.last_offset_delta,
					.topic = CFX_VIEW_STR(t->name),
					.partition = p->index,
				};
				CFX_ASSERT(pr->napps < pr->capapps);
				struct p_app *a = &pr->apps[pr->napps];
				a->pr = pr;
				a->count = info.count;
				a->queue = (uint32_t)p->index;
				a->topic = t->name;
				a->producer_id = -1;
				if (m.producer_id >= 0) {
					struct kf_seq_result sr;
					int verdict;

					a->w.done = duplicate_settled;
					verdict = kf_producers_begin(svc->producers, &sb, now_ms, &a->w, &sr);
					if (verdict == KF_SEQ_REJECT) {
						p->err = sr.err;
						break;
					}
					if (verdict != KF_SEQ_APPEND) {
						/* A retry: answered with the original's offset
						 * (now, or once its append completes). */
						if (verdict == KF_SEQ_WAIT)
							atomic_fetch_add(&pr->left, 1);
						else
							a->offset = (uint64_t)sr.offset;
						pr->napps++;
						p->napps++;
						continue;
					}
					a->producer_id = m.producer_id;
					a->serial = sr.serial;
				}
				/* Stored under this broker's leader epoch, as Kafka's
				 * leader stamps it (the producer's is usually -1). */
				cfx_store_be32((uint8_t *)b.p + KF_BATCH_LEADER_EPOCH_OFF,
					       (uint32_t)KF_LEADER_EPOCH);
				atomic_fetch_add(&pr->left, 1);
				int rc = cfx_store_append_batch(st, name, (uint32_t)p->index,
								(uint8_t *)b.p, b.len, &info, 0,
								acks == -1 ? CFX_DURABILITY_SYNC
									   : CFX_DURABILITY_ASYNC,
								appended, a);
				pr->napps++;
				p->napps++;
				if (rc) {
					a->err = rc;
					atomic_fetch_sub(&pr->left, 1);
					if (a->serial) /* nothing written: the sequence stays */
						kf_producers_abort(svc->producers, &sb, a->serial);
					a->serial = 0;
				}
			}
			if (idem)
				kf_producers_unlock(svc->producers);
		}
		if (flex)
			kf_skip_tagged_fields(rd);
	}
	if (atomic_fetch_sub(&pr->left, 1) == 1)
		produce_answer(pr); /* everything completed already (or nothing to append) */
}

/* ------------------------------------------------------------------------
 * Fetch (v4-v11)
 * ------------------------------------------------------------------------ */

struct f_part {
	int32_t index;
	int64_t offset;
	int32_t max_bytes;
};

struct f_topic {
	char *name;
	struct f_part *parts;
	uint32_t nparts;
	int16_t err; /* TOPIC_AUTHORIZATION_FAILED: not read */
};

/* A broker watch of a waiting fetch (one per topic): what the dispatcher's
 * wake-up carries back to the connection's loop. */
struct f_ticket {
	struct cfx_loop *loop;
	struct cfx_conn_handle *h; /* counted on the loop */
	uint64_t fetch_id;
	uint32_t topic;		   /* index in the fetch */
	uint64_t watch_id;
};

struct kf_fetch {
	struct kreq *r;
	struct kafka_service *svc;
	struct f_topic *topics;
	uint32_t ntopics;
	int32_t min_bytes, max_bytes;
	struct cfx_timer timer; /* max_wait */
	struct cfx_loop *loop;
	uint64_t id;
	struct f_ticket **tickets; /* per topic while waiting; NULL once fired */
};

static void ticket_free(struct f_ticket *t)
{
	cfx_conn_handle_put(t->h);
	cfx_free(t);
}

/* Stops the watches of a fetch that is answered or cancelled. @thread loop */
static void fetch_unwatch(struct kf_fetch *f)
{
	for (uint32_t i = 0; f->tickets && i < f->ntopics; i++) {
		struct f_ticket *t = f->tickets[i];
		if (!t)
			continue;
		f->tickets[i] = NULL;
		/* A watch that fired already has its wake-up on the way: that
		 * task finds no fetch and frees the ticket. */
		if (cfx_broker_unwatch(f->svc->br, t->watch_id))
			ticket_free(t);
	}
}

void kf_fetch_free(struct kf_fetch *f)
{
	fetch_unwatch(f);
	cfx_free(f->tickets);
	for (uint32_t i = 0; i < f->ntopics; i++) {
		cfx_free(f->topics[i].name);
		cfx_free(f->topics[i].parts);
	}
	cfx_free(f->topics);
	cfx_free(f);
}

void kf_fetch_cancel(struct kreq *r)
{
	struct kf_fetch *f = r->fetch;

	cfx_timer_stop(f->loop, &f->timer);
	r->fetch = NULL;
	r->pending = 0;
	kf_fetch_free(f);
}

/* Bytes available now, up to what the fetch would take. */
static size_t fetch_available(struct kf_fetch *f)
{
	struct cfx_store *st = cfx_broker_store(f->svc->br);
	size_t total = 0;

	for (uint32_t i = 0; i < f->ntopics; i++)
		for (uint32_t k = 0; k < f->topics[i].nparts && !f->topics[i].err; k++) {
			struct f_part *p = &f->topics[i].parts[k];
			uint64_t start, end;
			if (cfx_store_queue_bounds(st, CFX_VIEW_STR(f->topics[i].name),
						   (uint32_t)CFX_MAX(p->index, 0), &start, &end) == 0 &&
			    p->offset >= 0 && (uint64_t)p->offset < end)
				total += 1; /* something: the exact size does not matter here */
		}
	return total;
}

/* The store's segments a response's references point into, pinned until
 * the connection has written them. */
struct f_pins {
	struct cfx_read_result *v;
	uint32_t n, cap;
};

static void pins_release(void *arg)
{
	struct f_pins *pins = arg;

	for (uint32_t i = 0; i < pins->n; i++)
		cfx_read_result_free(&pins->v[i]);
	cfx_free(pins->v);
	cfx_free(pins);
}

static void fetch_answer(struct kf_fetch *f)
{
	struct kreq *r = f->r;
	struct cfx_store *st = cfx_broker_store(f->svc->br);
	int16_t v = r->h.api_version;
	struct cfx_writer *w = &r->out;
	struct cfx_batch_ref *refs = cfx_malloc(FETCH_REFS_MAX * sizeof *refs);
	struct cfx_read_result rd;
	struct f_pins *pins = NULL;
	size_t start = kreq_begin(r), total = 0;

	cfx_read_result_init(&rd);
	kf_write_i32(w, 0); /* throttle time */
	if (v >= 7) {
		kf_write_i16(w, KF_ERR_NONE);
		kf_write_i32(w, 0); /* no fetch session: every fetch is a full one */
	}
	kf_write_array_len(w, (int32_t)f->ntopics, 0);
	for (uint32_t i = 0; i < f->ntopics; i++) {
		struct f_topic *t = &f->topics[i];
		struct cfx_topic_info ti = { 0 };
		int16_t terr = t->err ? t->err : topic_of(f->svc, CFX_VIEW_STR(t->name), 0, &ti);

		kf_write_string(w, CFX_VIEW_STR(t->name), 0, 0);
		kf_write_array_len(w, (int32_t)t->nparts, 0);
		for (uint32_t k = 0; k < t->nparts; k++) {
			struct f_part *p = &t->parts[k];
			int16_t err = terr;
			uint64_t lstart = 0, lend = 0;
			uint32_t n = 0;

			if (!err && (p->index < 0 || (uint32_t)p->index >= ti.queues))
				err = KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
			if (!err) {
				cfx_store_queue_bounds(st, CFX_VIEW_STR(t->name), (uint32_t)p->index,
						       &lstart, &lend);
				if (p->offset < 0 || (uint64_t)p->offset < lstart ||
				    (uint64_t)p->offset > lend)
					err = KF_ERR_OFFSET_OUT_OF_RANGE;
			}
			if (!err && (uint64_t)p->offset < lend &&
			    (total < (size_t)f->max_bytes || total == 0)) {
				size_t want = (size_t)CFX_MAX(p->max_bytes, 1);
				int rc = cfx_store_read_batches(st, CFX_VIEW_STR(t->name),
								(uint32_t)p->index, (uint64_t)p->offset,
								want, refs, FETCH_REFS_MAX, &n, &rd);
				if (rc)
					err = kerr_of(rc);
			}
			kf_write_i32(w, p->index);
			kf_write_i16(w, err);
			kf_write_i64(w, err ? -1 : (int64_t)lend); /* high watermark */
			kf_write_i64(w, err ? -1 : (int64_t)lend); /* last stable offset */
			if (v >= 5)
				kf_write_i64(w, err ? -1 : (int64_t)lstart);
			kf_write_array_len(w, -1, 0); /* aborted transactions: none */
			if (v >= 11)
				kf_write_i32(w, -1); /* preferred read replica */
			size_t bytes = 0;
			for (uint32_t b = 0; b < n; b++)
				bytes += refs[b].len;
			kf_write_i32(w, (int32_t)bytes);
			total += bytes;
			if (bytes < FETCH_COPY_MAX) { /* small: copying is cheaper than a reference */
				for (uint32_t b = 0; b < n; b++)
					cfx_write_bytes(w, refs[b].p, refs[b].len);
				cfx_read_result_free(&rd);
				cfx_read_result_init(&rd);
				continue;
			}
			/* Sent from the log's mapping: the segments stay pinned until written. */
			for (uint32_t b = 0; b < n; b++)
				kreq_add_ref(r, refs[b].p, refs[b].len);
			if (!pins) {
				pins = cfx_calloc(1, sizeof *pins);
				r->release = pins_release;
				r->release_arg = pins;
			}
			if (pins->n == pins->cap) {
				pins->cap = pins->cap ? pins->cap * 2 : 4;
				pins->v = cfx_realloc(pins->v, pins->cap * sizeof *pins->v);
			}
			pins->v[pins->n++] = rd; /* moved: rd starts afresh */
			cfx_read_result_init(&rd);
		}
	}
	cfx_read_result_free(&rd);
	cfx_free(refs);
	kreq_end(r, start);
}

/* Answers a waiting fetch with what there is. @thread loop */
static void fetch_finish(struct kf_fetch *f)
{
	struct kreq *r = f->r;

	cfx_timer_stop(f->loop, &f->timer);
	fetch_answer(f);
	r->fetch = NULL;
	r->pending = 0;
	kf_fetch_free(f);
	kreq_done(r);
}

static void fetch_deadline(struct cfx_loop *loop, struct cfx_timer *t)
{
	CFX_UNUSED(loop);
	fetch_finish(t->data);
}

static void fetch_woken(void *arg);

/* Asks the broker to say when topic i of the fetch gets new records. @thread loop */
static void fetch_watch(struct kf_fetch *f, struct kconn *kc, uint32_t i)
{
	struct f_ticket *t = cfx_calloc(1, sizeof *t);

	t->loop = f->loop;
	t->h = cfx_conn_handle_get(kc->c);
	t->fetch_id = f->id;
	t->topic = i;
	f->tickets[i] = t;
	t->watch_id = cfx_broker_watch(f->svc->br, CFX_VIEW_STR(""),
				       CFX_VIEW_STR(f->topics[i].name), fetch_woken, t);
}

/* A wake-up on the loop: the fetch, if it still waits, answers or watches again. */
static void fetch_woken_task(void *arg)
{
	struct f_ticket *t = arg;
	struct cfx_conn *c = t->h->conn;
	struct kconn *kc = c ? c->proto_data : NULL;

	for (struct kreq *r = kc ? kc->head : NULL; r; r = r->next) {
		struct kf_fetch *f = r->fetch;
		if (!f || f->id != t->fetch_id || f->tickets[t->topic] != t)
			continue;
		f->tickets[t->topic] = NULL;
		if (fetch_available(f))
			fetch_finish(f);
		else
			fetch_watch(f, kc, t->topic);
		break;
	}
	ticket_free(t);
}

/* A watch fired (on the dispatcher's thread): back to the loop. */
static void fetch_woken(void *arg)
{
	struct f_ticket *t = arg;

	cfx_loop_post(t->loop, fetch_woken_task, t);
}

void kf_fetch(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kf_fetch *f = cfx_calloc(1, sizeof *f);
	int16_t v = r->h.api_version;
	int32_t max_wait, nt;
	int null;

	f->r = r;
	f->svc = kc->svc;
	f->loop = kc->c->loop;
	kf_read_i32(rd); /* replica id */
	max_wait = kf_read_i32(rd);
	f->min_bytes = kf_read_i32(rd);
	f->max_bytes = kf_read_i32(rd);
	kf_read_i8(rd); /* isolation level: no transactions */
	if (v >= 7) {
		kf_read_i32(rd); /* session id */
		kf_read_i32(rd); /* session epoch */
	}
	nt = kf_read_array_len(rd, 0);
	if (!rd->err && nt > 0)
		f->topics = cfx_calloc((size_t)nt, sizeof *f->topics);
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		struct f_topic *t = &f->topics[i];
		struct cfx_view name = kf_read_string(rd, 0, &null);
		int32_t np = kf_read_array_len(rd, 0);
		f->ntopics++;
		t->name = kafka__vdup(name);
		if (!rd->err)
			t->err = kf_authorize(kc, CFX_AUTH_TOPIC, name, CFX_AUTH_SUB);
		if (np > 0 && !rd->err)
			t->parts = cfx_calloc((size_t)np, sizeof *t->parts);
		for (int32_t k = 0; k < np && !rd->err; k++) {
			struct f_part *p = &t->parts[k];
			p->index = kf_read_i32(rd);
			if (v >= 9)
				kf_read_i32(rd); /* current leader epoch */
			p->offset = kf_read_i64(rd);
			if (v >= 5)
				kf_read_i64(rd); /* the follower's log start offset */
			p->max_bytes = kf_read_i32(rd);
			t->nparts++;
		}
	}
	if (v >= 7) {
		int32_t nf = kf_read_array_len(rd, 0); /* forgotten topics: sessions are not kept */
		for (int32_t i = 0; i < nf && !rd->err; i++) {
			kf_read_string(rd, 0, &null);
			int32_t np = kf_read_array_len(rd, 0);
			for (int32_t k = 0; k < np && !rd->err; k++)
				kf_read_i32(rd);
		}
	}
	if (v >= 11)
		kf_read_string(rd, 0, &null); /* rack */
	if (rd->err || nt < 0) {
		kf_fetch_free(f);
		kafka__bad_request(kc, r, "Fetch");
		return;
	}
	if (f->max_bytes <= 0)
		f->max_bytes = INT32_MAX;
	if (max_wait > 0 && fetch_available(f) == 0) {
		/* Nothing yet: wait for a dispatch to one of the topics, or max_wait.
		 * The watches go in before the second look, so no record slips by. */
		static uint64_t next_id; /* per process; loops only compare */
		f->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
		f->tickets = cfx_calloc(f->ntopics + 1, sizeof *f->tickets);
		for (uint32_t i = 0; i < f->ntopics; i++)
			fetch_watch(f, kc, i);
		if (fetch_available(f) == 0) {
			r->fetch = f;
			r->pending = 1;
			cfx_timer_start(f->loop, &f->timer, max_wait, fetch_deadline, f);
			return;
		}
	}
	fetch_answer(f);
	kf_fetch_free(f);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * CreateTopics (v2-v4), DeleteTopics (v1-v3)
 * ------------------------------------------------------------------------ */

struct ct_result {
	struct cfx_view name;
	int32_t parts;
	int16_t err;
	const char *why;
};

void kf_create_topics(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	struct ct_result *res = NULL;
	int32_t nt = kf_read_array_len_min(rd, 0, 2 + 4 + 2 + 4 + 4);
	int validate_only;
	int null;

	if (nt > 0 && !rd->err)
		res = cfx_calloc((size_t)nt, sizeof *res);
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		struct ct_result *t = &res[i];
		int32_t parts, nassign, nconf;
		int16_t rf;

		t->name = kf_read_string(rd, 0, NULL);
		parts = kf_read_i32(rd);
		rf = kf_read_i16(rd);
		nassign = kf_read_array_len(rd, 0);
		for (int32_t a = 0; a < nassign && !rd->err; a++) {
			kf_read_i32(rd);
			int32_t nb = kf_read_array_len(rd, 0);
			for (int32_t b = 0; b < nb && !rd->err; b++)
				if (kf_read_i32(rd) != 0 && !t->err) {
					t->err = KF_ERR_INVALID_REPLICA_ASSIGNMENT;
					t->why = "this cluster has one broker, node 0";
				}
		}
		nconf = kf_read_array_len(rd, 0);
		for (int32_t c = 0; c < nconf && !rd->err; c++) {
			kf_read_string(rd, 0, NULL);
			kf_read_string(rd, 0, &null);
		}
		if (!t->err && nconf > 0) {
			/* Accepting settings that would not be applied would be a lie. */
			t->err = KF_ERR_INVALID_CONFIG;
			t->why = "topic configs are not supported by this version of Conflux";
		}
		if (!t->err && rf != -1 && rf != 1) {
			t->err = KF_ERR_INVALID_REPLICATION_FACTOR;
			t->why = "this cluster has one broker: the replication factor is 1";
		}
		if (nassign > 0)
			parts = nassign;
		if (parts == -1)
			parts = (int32_t)svc->o.default_partitions;
		if (!t->err && (parts < 1 || parts > 1024)) {
			t->err = KF_ERR_INVALID_PARTITIONS;
			t->why = "the partition count must be 1 to 1024";
		}
		t->parts = parts; /* created once the whole request decoded */
	}
	kf_read_i32(rd); /* timeout */
	validate_only = kf_read_bool(rd);
	if (rd->err || nt < 0) {
		cfx_free(res);
		kafka__bad_request(kc, r, "CreateTopics");
		return;
	}
	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	kf_write_i32(w, 0); /* throttle time */
	kf_write_array_len(w, nt, 0);
	for (int32_t i = 0; i < nt; i++) {
		struct ct_result *t = &res[i];
		if (!t->err) {
			char name[256];
			struct cfx_topic_info ti;
			int rc;

			snprintf(name, sizeof name, "%.*s", (int)CFX_MIN(t->name.len, (size_t)255),
				 (const char *)t->name.p);
			if (t->name.len > 249 || name[0] == '%') {
				t->err = KF_ERR_INVALID_TOPIC_EXCEPTION;
				t->why = "invalid topic name";
			} else if ((t->err = kf_authorize(kc, CFX_AUTH_TOPIC, t->name,
							  CFX_AUTH_CREATE))) {
				t->why = "not authorized to create the topic";
			} else if (validate_only) {
				rc = cfx_broker_topic_get(svc->br, CFX_VIEW_STR(name), 0, &ti);
				if (rc == 0) {
					t->err = KF_ERR_TOPIC_ALREADY_EXISTS;
					t->why = "the topic exists";
				} else if (rc == CFX_ETOPIC) {
					t->err = KF_ERR_INVALID_TOPIC_EXCEPTION;
					t->why = "invalid topic name";
				}
			} else {
				rc = cfx_broker_topic_create(svc->br, name, CFX_TOPIC_MIXED,
							     (uint32_t)t->parts);
				if (rc == CFX_EEXIST) {
					t->err = KF_ERR_TOPIC_ALREADY_EXISTS;
					t->why = "the topic exists";
				} else if (rc == CFX_ETOPIC) {
					t->err = KF_ERR_INVALID_TOPIC_EXCEPTION;
					t->why = "invalid topic name";
				} else if (rc) {
					t->err = KF_ERR_UNKNOWN_SERVER_ERROR;
					t->why = cfx_strerror(rc);
				}
			}
		}
		kf_write_string(w, t->name, 0, 0);
		kf_write_i16(w, t->err);
		kf_write_string(w, t->why ? CFX_VIEW_STR(t->why) : (struct cfx_view){ 0 }, 0,
				!t->why);
	}
	kf_end_response(w, start);
	cfx_free(res);
	kreq_done(r);
}

void kf_delete_topics(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	int32_t nt = kf_read_array_len_min(rd, 0, 2);
	struct cfx_view *names = NULL;

	if (nt > 0 && !rd->err)
		names = cfx_calloc((size_t)nt, sizeof *names);
	for (int32_t i = 0; i < nt && !rd->err; i++)
		names[i] = kf_read_string(rd, 0, NULL);
	kf_read_i32(rd); /* timeout */
	if (rd->err || nt < 0) {
		cfx_free(names);
		kafka__bad_request(kc, r, "DeleteTopics");
		return;
	}
	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	kf_write_i32(w, 0); /* throttle time */
	kf_write_array_len(w, nt, 0);
	for (int32_t i = 0; i < nt; i++) {
		char name[256];
		int16_t err = KF_ERR_NONE;

		snprintf(name, sizeof name, "%.*s", (int)CFX_MIN(names[i].len, (size_t)255),
			 (const char *)names[i].p);
		if (names[i].len > 249 || name[0] == '%')
			err = KF_ERR_INVALID_TOPIC_EXCEPTION; /* the broker's own topics stay */
		else if ((err = kf_authorize(kc, CFX_AUTH_TOPIC, names[i], CFX_AUTH_DELETE)))
			;
		else if (cfx_broker_topic_delete(svc->br, name))
			err = KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
		kf_write_string(w, names[i], 0, 0);
		kf_write_i16(w, err);
	}
	kf_end_response(w, start);
	cfx_free(names);
	kreq_done(r);
}
