/*
 * send.c - sending: validation of types, the choice of queues, and the
 * appends to the store (one batch per queue), completed together.
 */
#include <stdlib.h>

#include "base/err.h"
#include "base/hash.h"
#include "broker/broker_int.h"

/* One send request: its appends complete independently, the caller once. */
struct send_op {
	pthread_mutex_t mu;
	uint32_t pending;	/* appends not completed yet */
	uint32_t count;
	struct cfx_send_result *res;
	uint32_t *msg_queue;	/* queue chosen for each message */
	cfx_send_cb cb;
	void *arg;
};

struct append_ctx {
	struct send_op *op;
	uint32_t queue;
};

static void op_finish(struct send_op *op)
{
	op->cb(op->arg, op->res, op->count);
	pthread_mutex_destroy(&op->mu);
	cfx_free(op->res);
	cfx_free(op->msg_queue);
	cfx_free(op);
}

static void append_done(void *arg, const struct cfx_append_result *ar)
{
	struct append_ctx *ac = arg;
	struct send_op *op = ac->op;
	uint64_t off = ar->first_offset;
	int last;

	pthread_mutex_lock(&op->mu);
	for (uint32_t i = 0; i < op->count; i++) {
		if (op->msg_queue[i] != ac->queue)
			continue;
		op->res[i].err = ar->err;
		op->res[i].queue = ac->queue;
		op->res[i].offset = off++;
	}
	last = --op->pending == 0;
	pthread_mutex_unlock(&op->mu);
	cfx_free(ac);
	if (last)
		op_finish(op);
}

int cfx_broker_send(struct cfx_broker *br, struct cfx_view topic, const struct cfx_send_msg *msgs,
		    uint32_t count, enum cfx_durability durability, cfx_send_cb cb, void *arg)
{
	struct cfx_topic_info ti;
	struct send_op *op;
	struct cfx_msg *batch;
	uint32_t rr;
	int rc;

	if (count == 0)
		return CFX_EINVAL;
	rc = cfx_broker_topic_get(br, topic, 1, &ti);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < count; i++) {
		if (!cfx_broker_type_accepts(ti.type, msgs[i].type))
			return CFX_EINVAL;
		if (msgs[i].type == CFX_MSG_DELAY || msgs[i].type == CFX_MSG_TRANSACTION)
			return CFX_EUNSUPPORTED;
	}

	op = cfx_calloc(1, sizeof *op);
	pthread_mutex_init(&op->mu, NULL);
	op->count = count;
	op->res = cfx_calloc(count, sizeof *op->res);
	op->msg_queue = cfx_calloc(count, sizeof *op->msg_queue);
	op->cb = cb;
	op->arg = arg;

	/* Queues: a message group always lands on the same queue (its order
	 * is kept); other messages share one round-robin queue per request. */
	rr = broker__topic_next_queue(br, topic, ti.queues);
	for (uint32_t i = 0; i < count; i++) {
		const struct cfx_send_msg *m = &msgs[i];
		op->msg_queue[i] = m->group.len ? (uint32_t)(cfx_hash64(m->group.p, m->group.len) %
							     ti.queues)
						: rr;
	}

	/* One append per queue used, in the order of first use. */
	batch = cfx_malloc(count * sizeof *batch);
	op->pending = 1; /* held until every append is issued */
	for (uint32_t i = 0; i < count; i++) {
		uint32_t q = op->msg_queue[i], n = 0;
		uint64_t bytes = 0;
		int seen = 0;

		for (uint32_t j = 0; j < i && !seen; j++)
			seen = op->msg_queue[j] == q;
		if (seen)
			continue;
		for (uint32_t j = i; j < count; j++)
			if (op->msg_queue[j] == q) {
				batch[n++] = msgs[j].m;
				bytes += msgs[j].m.body.len;
			}
		struct append_ctx *ac = cfx_malloc(sizeof *ac);
		ac->op = op;
		ac->queue = q;
		pthread_mutex_lock(&op->mu);
		op->pending++;
		pthread_mutex_unlock(&op->mu);
		rc = cfx_store_append(br->st, topic, q, batch, n, durability, append_done, ac);
		if (!rc)
			stats__count_in(br, topic, n, bytes); /* in the log (sync: durable later) */
		if (rc) {
			/* Nothing was written for this queue: its messages fail. */
			cfx_free(ac);
			pthread_mutex_lock(&op->mu);
			op->pending--;
			for (uint32_t j = 0; j < count; j++)
				if (op->msg_queue[j] == q) {
					op->res[j].err = rc;
					op->res[j].queue = q;
				}
			pthread_mutex_unlock(&op->mu);
		}
	}
	cfx_free(batch);
	pthread_mutex_lock(&op->mu);
	int last = --op->pending == 0;
	pthread_mutex_unlock(&op->mu);
	if (last)
		op_finish(op);
	return 0;
}
