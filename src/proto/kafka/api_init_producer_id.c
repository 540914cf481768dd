/*
 * api_init_producer_id.c - InitProducerId (API key 22), versions 0-4
 * (flexible from v2): producer ids for idempotent producers.
 *
 * Transactions are not served: a request with a transactional id gets
 * UNSUPPORTED_VERSION, the error a Kafka client reports when a broker
 * lacks the transactional APIs (docs/kafka.md). The ids and epochs come
 * from producers.c.
 *
 * Request (Kafka's InitProducerIdRequest.json):
 *   TransactionalId      nullable string   v0+
 *   TransactionTimeoutMs int32             v0+
 *   ProducerId           int64             v3+ (-1: none)
 *   ProducerEpoch        int16             v3+ (-1: none)
 * Response: ThrottleTimeMs int32, ErrorCode int16, ProducerId int64,
 * ProducerEpoch int16 (all versions).
 */
#include "base/clock.h"
#include "base/log.h"
#include "proto/kafka/kafka_int.h"
#include "proto/kafka/producers.h"

void kf_init_producer_id(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	int16_t v = r->h.api_version;
	int flex = r->flex, txn_null;
	int64_t have_id = -1, id = -1;
	int16_t have_epoch = -1, epoch = -1, err;

	kf_read_string(rd, flex, &txn_null); /* TransactionalId */
	kf_read_i32(rd);		     /* TransactionTimeoutMs: no transactions */
	if (v >= 3) {
		have_id = kf_read_i64(rd);
		have_epoch = kf_read_i16(rd);
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err) {
		cfx_log_ratelimited(CFX_LOG_INFO,
				    "kafka: %s: malformed InitProducerId v%d request; closing",
				    kc->c->peer, v);
		cfx_conn_close(kc->c, "malformed Kafka request");
		return;
	}
	if (!txn_null)
		err = KF_ERR_UNSUPPORTED_VERSION;
	else
		err = kf_producers_init_id(kc->svc->producers, have_id, have_epoch,
					   cfx_clock_mono_ms(), &id, &epoch);

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	kf_write_i32(w, 0);	/* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	/* Response: ErrorCode */
	kf_write_i64(w, id);	/* Response: ProducerId */
	kf_write_i16(w, epoch); /* Response: ProducerEpoch */
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}
