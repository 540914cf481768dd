/*
 * send.c - sending: validation of types, the choice of queues, and the
 * appends to the store (one batch per queue), completed together.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/hash.h"
#include "broker/broker_int.h"

/* Queue markers for messages that go to a system topic first. */
#define Q_TIMER UINT32_MAX
#define Q_HALF (UINT32_MAX - 1)

/* One send request: its appends complete independently, the caller once. */
struct send_op {
	struct cfx_broker *br;
	char *topic;
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
	int64_t *due; /* Q_TIMER: due time of each message, in order */
};

static void op_finish(struct send_op *op)
{
	op->cb(op->arg, op->res, op->count);
	pthread_mutex_destroy(&op->mu);
	cfx_free(op->topic);
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

	uint32_t k = 0;

	pthread_mutex_lock(&op->mu);
	for (uint32_t i = 0; i < op->count; i++) {
		if (op->msg_queue[i] != ac->queue)
			continue;
		op->res[i].err = ar->err;
		op->res[i].queue = ac->queue >= Q_HALF ? 0 : ac->queue;
		op->res[i].offset = off;
		if (!ar->err && ac->queue == Q_TIMER) {
			broker__sys_handle(op->br, SYS_TIMER, CFX_VIEW_STR(op->topic), off,
					   op->res[i].handle);
			timer__added(op->br, off, ac->due[k]);
		} else if (!ar->err && ac->queue == Q_HALF) {
			broker__sys_handle(op->br, SYS_HALF, CFX_VIEW_STR(op->topic), off,
					   op->res[i].handle);
			txn__added(op->br, off);
		}
		off++;
		k++;
	}
	last = --op->pending == 0;
	pthread_mutex_unlock(&op->mu);
	cfx_free(ac->due);
	cfx_free(ac);
	if (last)
		op_finish(op);
}

/* Property arrays of messages bound for a system topic: theirs plus the
 * real topic and the delivery time or producer group. */
struct sysprops {
	struct cfx_prop *all;
	char (*num)[24];
};

static void sysprops_add(struct sysprops *sp, struct append_ctx *ac, struct cfx_view topic,
			 const struct cfx_send_msg *msgs, uint32_t count, const uint32_t *msg_queue,
			 uint32_t q, struct cfx_msg *batch)
{
	uint32_t n = 0, total = 0;

	for (uint32_t j = 0; j < count; j++)
		if (msg_queue[j] == q)
			total += msgs[j].m.prop_count + 2;
	sp->all = cfx_malloc(total * sizeof *sp->all);
	sp->num = cfx_calloc(count, sizeof *sp->num);
	if (q == Q_TIMER)
		ac->due = cfx_malloc(count * sizeof *ac->due);
	total = 0;
	for (uint32_t j = 0; j < count; j++) {
		const struct cfx_send_msg *m = &msgs[j];
		struct cfx_prop *p = sp->all + total;
		uint32_t np = m->m.prop_count;

		if (msg_queue[j] != q)
			continue;
		if (np)
			memcpy(p, m->m.props, np * sizeof *p);
		p[np++] = (struct cfx_prop){ CFX_VIEW_STR(CFX_PROP_REAL_TOPIC), topic };
		if (q == Q_TIMER) {
			snprintf(sp->num[j], sizeof sp->num[j], "%" PRId64, m->deliver_at_ms);
			p[np++] = (struct cfx_prop){ CFX_VIEW_STR(CFX_PROP_DELIVER_AT),
						     CFX_VIEW_STR(sp->num[j]) };
			ac->due[n] = m->deliver_at_ms;
		} else if (m->producer_group.len) {
			p[np++] = (struct cfx_prop){ CFX_VIEW_STR(CFX_PROP_PRODUCER_GROUP),
						     m->producer_group };
		}
		batch[n].props = p;
		batch[n].prop_count = np;
		total += np;
		n++;
	}
}

static void sysprops_free(struct sysprops *sp)
{
	cfx_free(sp->all);
	cfx_free(sp->num);
}

int cfx_broker_send(struct cfx_broker *br, struct cfx_view topic, const struct cfx_send_msg *msgs,
		    uint32_t count, enum cfx_durability durability, cfx_send_cb cb, void *arg)
{
	struct cfx_topic_info ti;
	struct send_op *op;
	struct cfx_msg *batch;
	int64_t now;
	uint32_t rr;
	int rc;

	if (count == 0)
		return CFX_EINVAL;
	rc = cfx_broker_topic_get(br, topic, 1, &ti);
	if (rc)
		return rc;
	now = cfx_clock_wall_ms();
	for (uint32_t i = 0; i < count; i++) {
		if (!cfx_broker_type_accepts(ti.type, msgs[i].type))
			return CFX_EINVAL;
		if (msgs[i].type == CFX_MSG_DELAY && !msgs[i].released &&
		    msgs[i].deliver_at_ms - now > br->o.timer_max_ms)
			return CFX_ERANGE;
	}

	op = cfx_calloc(1, sizeof *op);
	op->br = br;
	op->topic = cfx_strndup((const char *)topic.p, topic.len);
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
		if (m->type == CFX_MSG_DELAY && !m->released && m->deliver_at_ms > now)
			op->msg_queue[i] = Q_TIMER;
		else if (m->type == CFX_MSG_TRANSACTION && !m->released)
			op->msg_queue[i] = Q_HALF;
		else
			op->msg_queue[i] = m->group.len ? (uint32_t)(cfx_hash64(m->group.p,
										m->group.len) %
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
		struct append_ctx *ac = cfx_calloc(1, sizeof *ac);
		struct sysprops sp = { 0 };
		ac->op = op;
		ac->queue = q;
		for (uint32_t j = i; j < count; j++)
			if (op->msg_queue[j] == q) {
				batch[n++] = msgs[j].m;
				bytes += msgs[j].m.body.len;
			}
		if (q >= Q_HALF)
			sysprops_add(&sp, ac, topic, msgs, count, op->msg_queue, q, batch);
		pthread_mutex_lock(&op->mu);
		op->pending++;
		pthread_mutex_unlock(&op->mu);
		if (q >= Q_HALF)
			rc = cfx_store_append(br->st,
					      CFX_VIEW_STR(q == Q_TIMER ? CFX_TIMER_TOPIC : CFX_HALF_TOPIC),
					      0, batch, n, durability, append_done, ac);
		else
			rc = cfx_store_append(br->st, topic, q, batch, n, durability, append_done, ac);
		sysprops_free(&sp);
		if (!rc && q < Q_HALF)
			stats__count_in(br, topic, n, bytes); /* in the log (sync: durable later) */
		if (rc) {
			/* Nothing was written for this queue: its messages fail. */
			cfx_free(ac->due);
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
