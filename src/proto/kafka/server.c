/*
 * server.c - Kafka connections: framing, in-order responses, dispatch.
 *
 * Every request gets a slot in its connection's queue when it arrives; a
 * handler fills the slot's response at once (Metadata, ListOffsets) or
 * later (Produce waits for its appends, Fetch for data or its max wait).
 * Responses leave strictly in request order, as Kafka requires. A slot
 * whose work is still out when its connection closes is orphaned and
 * freed by that work's completion (all on the connection's loop).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "net/loop.h"
#include "proto/kafka/kafka_int.h"
#include "proto/kafka/producers.h"

void kafka_opts_default(struct kafka_opts *o)
{
	memset(o, 0, sizeof *o);
	o->request_bytes_max = KF_FRAME_BYTES_MAX;
	o->inflight_max = 64;
	o->cluster_id = "conflux";
	o->default_partitions = 8;
	o->group_initial_delay_ms = 3000;
}

struct kafka_service *kafka_service_new(struct cfx_broker *br, const struct kafka_opts *o)
{
	struct kafka_service *svc = cfx_calloc(1, sizeof *svc);

	svc->o = *o;
	svc->br = br;
	if (o->advertised_host)
		snprintf(svc->host, sizeof svc->host, "%s", o->advertised_host);
	svc->port = o->advertised_port;
	svc->coord = kafka_coord_new(svc);
	svc->producers = kf_producers_new(cfx_broker_opts_of(br)->store.dir, NULL);
	return svc;
}

void kafka_service_set_address(struct kafka_service *svc, const char *host, int port)
{
	if (!svc->host[0])
		snprintf(svc->host, sizeof svc->host, "%s", host);
	if (!svc->port)
		svc->port = port;
}

void kafka_service_stop(struct kafka_service *svc)
{
	if (svc)
		kafka_coord_stop(svc->coord);
}

void kafka_service_free(struct kafka_service *svc)
{
	if (!svc)
		return;
	kafka_coord_free(svc->coord);
	kf_producers_free(svc->producers);
	cfx_free(svc);
}

/* ------------------------------------------------------------------------
 * Request slots
 * ------------------------------------------------------------------------ */

static void kreq_free(struct kreq *r)
{
	if (r->release)
		r->release(r->release_arg);
	cfx_free(r->refs);
	cfx_writer_free(&r->out);
	if (r->fetch)
		kf_fetch_free(r->fetch);
	cfx_free(r);
}

/* Queues a response on the connection: its own bytes copied, its
 * references (fetched batches) by reference, released once written. */
static void kreq_send(struct kconn *kc, struct kreq *r)
{
	size_t pos = 0;

	for (uint32_t i = 0; i < r->nrefs; i++) {
		struct kf_ref *ref = &r->refs[i];
		int last = i + 1 == r->nrefs;
		cfx_conn_write(kc->c, r->out.p + pos, ref->at - pos);
		cfx_conn_write_ref(kc->c, ref->p, ref->len, last ? r->release : NULL,
				   last ? r->release_arg : NULL);
		pos = ref->at;
	}
	if (r->nrefs)
		r->release = NULL; /* the connection releases them now */
	cfx_conn_write(kc->c, r->out.p + pos, r->out.len - pos);
}

void kreq_add_ref(struct kreq *r, const uint8_t *p, size_t n)
{
	struct kf_ref *last = r->nrefs ? &r->refs[r->nrefs - 1] : NULL;

	if (!n)
		return;
	r->ref_bytes += n;
	if (last && last->at == r->out.len && last->p + last->len == p) {
		last->len += n; /* adjacent in the log: one reference */
		return;
	}
	if (r->nrefs == r->caprefs) {
		r->caprefs = r->caprefs ? r->caprefs * 2 : 16;
		r->refs = cfx_realloc(r->refs, r->caprefs * sizeof *r->refs);
	}
	r->refs[r->nrefs++] = (struct kf_ref){ r->out.len, p, n };
}

void kreq_end(struct kreq *r, size_t start)
{
	kf_end_response(&r->out, start);
	cfx_store_be32(r->out.p + start, (uint32_t)(r->out.len - start - 4 + r->ref_bytes));
}

/* Sends the ready responses at the head of the queue, in order. @thread loop */
void kconn_flush(struct kconn *kc)
{
	while (kc->head && kc->head->ready) {
		struct kreq *r = kc->head;
		kc->head = r->next;
		if (!kc->head)
			kc->tail = NULL;
		kc->inflight--;
		if (!r->silent)
			kreq_send(kc, r);
		kreq_free(r);
	}
}

/* A slot's work finished (its response is written or it is silent). @thread loop */
void kreq_done(struct kreq *r)
{
	r->ready = 1;
	if (!r->kc) { /* its connection is gone */
		kreq_free(r);
		return;
	}
	kconn_flush(r->kc);
}

/* A request body that does not decode: the connection goes (Kafka
 * clients reconnect). */
void kafka__bad_request(struct kconn *kc, struct kreq *r, const char *api)
{
	cfx_log_ratelimited(CFX_LOG_INFO, "kafka: %s: malformed %s v%d request; closing",
			    kc->c->peer, api, r->h.api_version);
	cfx_conn_close(kc->c, "malformed Kafka request");
}

char *kafka__vdup(struct cfx_view v)
{
	return cfx_strndup((const char *)v.p, v.len);
}

/* Starts the response of a request (header per the API and version). */
size_t kreq_begin(struct kreq *r)
{
	return kf_begin_response(&r->out, r->h.correlation_id,
				 kf_response_header_version(r->h.api_key, r->h.api_version));
}

/* ------------------------------------------------------------------------
 * ApiVersions and the dispatch table
 * ------------------------------------------------------------------------ */

static void api_versions(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);

/* What this version of Conflux serves: keep docs/kafka.md in step. */
static const struct kf_handler {
	int16_t key, min_version, max_version;
	void (*fn)(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
} handlers[] = {
	{ KF_API_PRODUCE, 3, 9, kf_produce },
	{ KF_API_FETCH, 4, 11, kf_fetch },
	{ KF_API_LIST_OFFSETS, 1, 5, kf_list_offsets },
	{ KF_API_METADATA, 1, 9, kf_metadata },
	{ KF_API_OFFSET_COMMIT, 2, 9, kf_offset_commit },
	{ KF_API_OFFSET_FETCH, 1, 9, kf_offset_fetch },
	{ KF_API_FIND_COORDINATOR, 0, 4, kf_find_coordinator },
	{ KF_API_JOIN_GROUP, 0, 9, kf_join_group },
	{ KF_API_HEARTBEAT, 0, 4, kf_heartbeat },
	{ KF_API_LEAVE_GROUP, 0, 5, kf_leave_group },
	{ KF_API_SYNC_GROUP, 0, 5, kf_sync_group },
	{ KF_API_DESCRIBE_GROUPS, 0, 5, kf_describe_groups },
	{ KF_API_LIST_GROUPS, 0, 5, kf_list_groups },
	{ KF_API_API_VERSIONS, 0, 3, api_versions },
	{ KF_API_CREATE_TOPICS, 2, 4, kf_create_topics },
	{ KF_API_DELETE_TOPICS, 1, 3, kf_delete_topics },
	{ KF_API_INIT_PRODUCER_ID, 0, 4, kf_init_producer_id },
	{ KF_API_OFFSET_FOR_LEADER_EPOCH, 2, 4, kf_offset_for_leader_epoch },
	{ KF_API_DESCRIBE_CONFIGS, 1, 4, kf_describe_configs },
	{ KF_API_CREATE_PARTITIONS, 0, 3, kf_create_partitions },
	{ KF_API_DESCRIBE_CLUSTER, 0, 1, kf_describe_cluster },
	{ KF_API_SASL_HANDSHAKE, 0, 1, kf_sasl_handshake },
	{ KF_API_SASL_AUTHENTICATE, 0, 2, kf_sasl_authenticate },
};

static const struct kf_handler *handler_of(int16_t key)
{
	for (size_t i = 0; i < CFX_ARRAY_LEN(handlers); i++)
		if (handlers[i].key == key)
			return &handlers[i];
	return NULL;
}

static void api_versions(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	/* A version this broker does not know gets a v0 answer naming
	 * UNSUPPORTED_VERSION and the versions it does serve (KIP-511). */
	int ok = r->h.api_version <= 3;
	int16_t v = ok ? r->h.api_version : 0;
	int flex = v >= 3;
	size_t start;

	CFX_UNUSED(kc);
	CFX_UNUSED(rd); /* client software name and version (v3+): informational */
	start = kf_begin_response(&r->out, r->h.correlation_id, 0);
	kf_write_i16(&r->out, ok ? KF_ERR_NONE : KF_ERR_UNSUPPORTED_VERSION);
	kf_write_array_len(&r->out, (int32_t)CFX_ARRAY_LEN(handlers), flex);
	for (size_t i = 0; i < CFX_ARRAY_LEN(handlers); i++) {
		kf_write_i16(&r->out, handlers[i].key);
		kf_write_i16(&r->out, handlers[i].min_version);
		kf_write_i16(&r->out, handlers[i].max_version);
		if (flex)
			kf_write_empty_tagged_fields(&r->out);
	}
	if (v >= 1)
		kf_write_i32(&r->out, 0); /* throttle time */
	if (flex)
		kf_write_empty_tagged_fields(&r->out);
	kf_end_response(&r->out, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * The connection protocol
 * ------------------------------------------------------------------------ */

static int on_open(struct cfx_conn *c)
{
	struct kconn *kc = cfx_calloc(1, sizeof *kc);

	kc->c = c;
	kc->svc = cfx_listener_proto_arg(c->listener);
	cfx_writer_init(&kc->in, 4096);
	c->proto_data = kc;
	return 0;
}

/* One whole request frame (size prefix included). Returns 0 or closes. */
static int handle_frame(struct kconn *kc, uint8_t *p, size_t n)
{
	struct cfx_reader rd = cfx_reader_make(p + 4, n - 4);
	const struct kf_handler *hd;
	struct kreq *r;
	int rc;

	r = cfx_calloc(1, sizeof *r);
	rc = kf_parse_request_header(&rd, &r->h);
	hd = rc ? NULL : handler_of(r->h.api_key);
	if (!hd || (r->h.api_key != KF_API_API_VERSIONS &&
		    (r->h.api_version < hd->min_version || r->h.api_version > hd->max_version))) {
		cfx_log_ratelimited(CFX_LOG_INFO, "kafka: %s: %s v%d is not served; closing",
				    kc->c->peer,
				    kf_api_lookup(r->h.api_key) ? kf_api_lookup(r->h.api_key)->name
								: "an unknown API",
				    r->h.api_version);
		cfx_free(r);
		cfx_conn_close(kc->c, "unsupported Kafka request");
		return -1;
	}
	if (!kf_signed_in_enough(kc) && r->h.api_key != KF_API_API_VERSIONS &&
	    r->h.api_key != KF_API_SASL_HANDSHAKE && r->h.api_key != KF_API_SASL_AUTHENTICATE) {
		cfx_auth_note_failure(kc->svc->o.auth, CFX_AUTH_KAFKA, kc->c->peer, NULL,
				      "a request before signing in (SASL)");
		cfx_free(r);
		cfx_conn_close(kc->c, "Kafka request before SASL authentication");
		return -1;
	}
	r->kc = kc;
	r->flex = kf_api_is_flexible(r->h.api_key, r->h.api_version);
	cfx_writer_init(&r->out, 256);
	if (kc->tail)
		kc->tail->next = r;
	else
		kc->head = r;
	kc->tail = r;
	kc->inflight++;
	hd->fn(kc, r, &rd);
	return kc->c->closing ? -1 : 0;
}

static int on_read(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	struct kconn *kc = c->proto_data;
	size_t pos = 0;

	cfx_write_bytes(&kc->in, p, n);
	while (pos < kc->in.len) {
		size_t frame;
		int rc = kf_frame_check(kc->in.p + pos, kc->in.len - pos,
					kc->svc->o.request_bytes_max, &frame);
		if (rc == CFX_NEED_MORE)
			break;
		if (rc) {
			cfx_conn_close(c, rc == CFX_E2BIG ? "Kafka request too large"
							  : "malformed Kafka frame");
			return -1;
		}
		if (handle_frame(kc, kc->in.p + pos, frame))
			return -1;
		pos += frame;
	}
	/* Views into handled frames are gone by now: handlers copy what they keep. */
	memmove(kc->in.p, kc->in.p + pos, kc->in.len - pos);
	kc->in.len -= pos;
	return 0;
}

static void on_close(struct cfx_conn *c)
{
	struct kconn *kc = c->proto_data;

	if (!kc)
		return;
	while (kc->head) {
		struct kreq *r = kc->head;
		kc->head = r->next;
		if (r->fetch)
			kf_fetch_cancel(r); /* a waiting fetch just stops */
		if (r->pending) {
			r->kc = NULL; /* its completion (an append) frees it */
			r->next = NULL;
		} else {
			kreq_free(r);
		}
	}
	cfx_writer_free(&kc->in);
	kf_sasl_free(kc);
	cfx_free(kc->user);
	cfx_free(kc);
	c->proto_data = NULL;
}

static int is_busy(struct cfx_conn *c)
{
	struct kconn *kc = c->proto_data;
	return kc && kc->head != NULL;
}

const struct cfx_conn_proto kafka_conn_proto = {
	.name = "kafka",
	.on_open = on_open,
	.on_read = on_read,
	.on_close = on_close,
	.is_busy = is_busy,
};
