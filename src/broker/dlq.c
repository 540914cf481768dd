/*
 * dlq.c - re-driving a consumer group's dead-letter queue: the messages of
 * `%DLQ%<group>` go back to the topics they came from
 * (docs/design/messaging.md, "Retry and dead letters").
 *
 * Built on the broker's public API only, the way any consumer could do it:
 * the position is the POP cursor of the system group `%REDRIVE%<group>` on
 * the DLQ topic (journaled like every group's), a message is popped,
 * copied to its origin topic (DLQ_ORIGIN_TOPIC) with the caller's
 * durability, and acknowledged in the DLQ only once the origin topic has
 * stored the copy. A crash before the acknowledgement reaches the POP
 * journal's disk re-drives that message again (at least once): only the
 * messages in progress can be duplicated. That holds for
 * CFX_DURABILITY_SYNC; with ASYNC a crash may lose a copy whose
 * acknowledgement was synced first (the admin API uses SYNC).
 *
 * A message that cannot be re-driven (no DLQ_ORIGIN_TOPIC, an origin topic
 * that no longer exists or does not take it, a failed append) stays in the
 * DLQ: it is not acknowledged, it becomes visible again REDRIVE_RETRY_MS
 * later, and the next re-drive tries it again. It holds the redrive
 * group's committed offset back meanwhile.
 *
 * What this file does not do: FIFO order across the copies (each message
 * is its own send; copies with a message group keep it, so they land on
 * its queue; a copy for a delay topic is due at once), transactional
 * origin topics (a copy would be a half message nobody commits: left in
 * place), or more than one run's bookkeeping: two re-drives of one group
 * may run at once, and POP keeps them from taking the same message.
 * Messages past their time to live are not delivered to the redrive group
 * either (pop.c), so they are dropped from the DLQ, not re-driven.
 *
 * The work is a chain of steps. A step pops up to REDRIVE_BATCH messages
 * and issues one send per message; the completion of the step's last send
 * (on the store's flusher thread for sync durability, or before the send
 * returns) starts the next step. run() is a trampoline, so a chain of
 * synchronous completions loops instead of recursing. No lock of this file
 * is held while calling into the broker.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "broker/broker_int.h"

#define REDRIVE_BATCH 64	      /* messages of one step */
#define REDRIVE_INVISIBLE_MS 60000    /* a message in progress stays hidden this long */
#define REDRIVE_RETRY_MS 5000	      /* a message left in place is visible again after this */
#define REDRIVE_ATTEMPTS_MAX INT32_MAX /* the redrive group never dead-letters */
#define GROUP_NAME_MAX 120	      /* cfx_group_name_is_valid */

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

int cfx_broker_dlq_names(struct cfx_view group, char *dlq, char *redrive)
{
	if (!cfx_group_name_is_valid(group) ||
	    group.len + sizeof CFX_REDRIVE_PREFIX - 1 > GROUP_NAME_MAX)
		return CFX_EINVAL;
	snprintf(dlq, CFX_DLQ_NAME_MAX, "%s%.*s", CFX_DLQ_PREFIX, (int)group.len, group.p);
	snprintf(redrive, CFX_DLQ_NAME_MAX, "%s%.*s", CFX_REDRIVE_PREFIX, (int)group.len, group.p);
	return 0;
}

int cfx_broker_dlq_position(struct cfx_broker *br, struct cfx_view group,
			    struct cfx_dlq_position *pos)
{
	char dlq[CFX_DLQ_NAME_MAX], rg[CFX_DLQ_NAME_MAX];
	struct cfx_group_queue_state st;
	struct cfx_topic_info ti;
	uint64_t end;
	int rc;

	memset(pos, 0, sizeof *pos);
	rc = cfx_broker_dlq_names(group, dlq, rg);
	if (!rc)
		rc = cfx_broker_topic_get(br, CFX_VIEW_STR(dlq), 0, &ti);
	if (rc)
		return rc;
	cfx_store_queue_bounds(cfx_broker_store(br), CFX_VIEW_STR(dlq), 0, &pos->start, &end);
	rc = cfx_broker_group_queue_state(br, CFX_VIEW_STR(rg), CFX_VIEW_STR(dlq), 0, &st);
	pos->end = st.end;
	pos->position = rc ? 0 : st.committed;
	pos->inflight = rc ? 0 : st.inflight;
	return 0;
}

/* ------------------------------------------------------------------------
 * A run
 * ------------------------------------------------------------------------ */

/* A (queue, offset) of the DLQ. */
struct where {
	uint32_t queue;
	uint64_t offset;
};

/* One message of a step, from its pop to its send's completion. */
struct item {
	struct redrive *rd;
	struct where at;
	char handle[CFX_HANDLE_MAX];
};

struct redrive {
	struct cfx_broker *br;
	char dlq[CFX_DLQ_NAME_MAX], rgroup[CFX_DLQ_NAME_MAX];
	uint32_t max;			 /* messages to look at */
	uint32_t seen;			 /* looked at, re-driven or not (step only) */
	enum cfx_durability durability;
	void (*cb)(void *arg, uint32_t redriven, int err);
	void *arg;
	struct cfx_pop_result pr;	 /* the step's messages (step only) */
	struct cfx_prop *props;		 /* CFX_MSG_PROPS_MAX, for one copy at a time (step only) */
	struct item items[REDRIVE_BATCH];

	pthread_mutex_t mu;		 /* guards what follows; never held calling the broker */
	uint32_t redriven;
	int first_err;
	struct where *left;		 /* messages left in place by this run: a set */
	uint32_t nleft, capleft;	 /* capleft: 0 or a power of two */
	uint32_t pending;		 /* sends of the step not completed, +1 while issuing */
	int running;			 /* a thread is in run() */
	int again;			 /* the step completed while run() was busy */
};

static void note_err(struct redrive *rd, int err)
{
	pthread_mutex_lock(&rd->mu);
	if (!rd->first_err)
		rd->first_err = err;
	pthread_mutex_unlock(&rd->mu);
}

static uint32_t where_slot(struct where w, uint32_t cap)
{
	return (uint32_t)cfx_hash_mix64(w.offset * 0x9e3779b97f4a7c15ULL ^ w.queue) & (cap - 1);
}

/* Is `w` in the set of messages left in place? @locks rd->mu */
static int left_has(const struct redrive *rd, struct where w)
{
	if (!rd->capleft)
		return 0;
	for (uint32_t i = where_slot(w, rd->capleft);; i = (i + 1) & (rd->capleft - 1)) {
		const struct where *e = &rd->left[i];
		if (e->offset == UINT64_MAX)
			return 0;
		if (e->offset == w.offset && e->queue == w.queue)
			return 1;
	}
}

/* Adds `w` to the set (open addressing, at most half full). @locks rd->mu */
static void left_add(struct redrive *rd, struct where w)
{
	if (left_has(rd, w))
		return;
	if (2 * (rd->nleft + 1) > rd->capleft) {
		struct where *old = rd->left;
		uint32_t oldcap = rd->capleft;
		rd->capleft = oldcap ? oldcap * 2 : 64;
		rd->left = cfx_malloc(rd->capleft * sizeof *rd->left);
		for (uint32_t i = 0; i < rd->capleft; i++)
			rd->left[i] = (struct where){ 0, UINT64_MAX };
		rd->nleft = 0;
		for (uint32_t i = 0; i < oldcap; i++)
			if (old[i].offset != UINT64_MAX)
				left_add(rd, old[i]);
		cfx_free(old);
	}
	uint32_t i = where_slot(w, rd->capleft);
	while (rd->left[i].offset != UINT64_MAX)
		i = (i + 1) & (rd->capleft - 1);
	rd->left[i] = w;
	rd->nleft++;
}

/* Finds a user property of a message. */
/*
 * Leaves a message in the DLQ: visible again after REDRIVE_RETRY_MS, not
 * counted again by this run. Called from the step or a completion.
 */
static void leave(struct redrive *rd, struct where at, const char *handle, int err,
		  const char *why)
{
	char fresh[CFX_HANDLE_MAX];

	cfx_log_ratelimited(CFX_LOG_WARN, "broker: %s queue %" PRIu32 " offset %" PRIu64 ": "
			    "not re-driven (%s: %s); it stays in the dead-letter queue",
			    rd->dlq, at.queue, at.offset, why, cfx_strerror(err));
	/* Failing here (its handle expired) leaves it visible already. */
	cfx_broker_change_invisible(rd->br, CFX_VIEW_STR(rd->rgroup), CFX_VIEW_STR(rd->dlq),
				    handle, REDRIVE_RETRY_MS, fresh);
	pthread_mutex_lock(&rd->mu);
	left_add(rd, at);
	if (!rd->first_err)
		rd->first_err = err;
	pthread_mutex_unlock(&rd->mu);
}

static void run(struct redrive *rd);

/* A copy was stored in its origin topic (or failed to be). @thread any */
static void sent(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct item *it = arg;
	struct redrive *rd = it->rd;
	int last;

	CFX_UNUSED(n);
	if (res[0].err) {
		leave(rd, it->at, it->handle, res[0].err, "the origin topic did not store it");
	} else {
		int rc = cfx_broker_ack(rd->br, CFX_VIEW_STR(rd->rgroup), CFX_VIEW_STR(rd->dlq),
					it->handle);
		if (rc)
			cfx_log_ratelimited(CFX_LOG_WARN, "broker: %s queue %" PRIu32 " offset %"
					    PRIu64 ": re-driven, but not acknowledged (%s): it "
					    "will be re-driven again", rd->dlq, it->at.queue,
					    it->at.offset, cfx_strerror(rc));
		pthread_mutex_lock(&rd->mu);
		rd->redriven++;
		if (rc && !rd->first_err)
			rd->first_err = CFX_ETIMEDOUT; /* its handle expired: a late copy */
		pthread_mutex_unlock(&rd->mu);
	}
	pthread_mutex_lock(&rd->mu);
	last = --rd->pending == 0;
	pthread_mutex_unlock(&rd->mu);
	if (last)
		run(rd);
}

/*
 * Sends the copy of popped message `p` to its origin topic. Returns 0 (the
 * completion will run) or why it cannot be re-driven, with *why set.
 */
static int resend(struct redrive *rd, struct item *it, const struct cfx_popped *p,
		  const char **why)
{
	const struct cfx_msg_view *v = &p->v;
	struct cfx_view origin, mgroup = { 0 };
	struct cfx_topic_info ti;
	struct cfx_prop pr;
	uint32_t np = 0;
	size_t cur = 0;
	int rc;

	if (!broker__prop(v, "DLQ_ORIGIN_TOPIC", &origin) || origin.len == 0) {
		*why = "it has no DLQ_ORIGIN_TOPIC property";
		return CFX_EINVAL;
	}
	/* Not created on demand: a topic deleted since must not come back. */
	rc = cfx_broker_topic_get(rd->br, origin, 0, &ti);
	if (rc) {
		*why = "its origin topic does not exist";
		return rc;
	}
	while (np < CFX_MSG_PROPS_MAX && cfx_msg_view_next_prop(v, &cur, &pr) == 1) {
		if (pr.name.len >= 4 && !memcmp(pr.name.p, "DLQ_", 4))
			continue;
		if (cfx_view_eq_str(pr.name, "__SHARDINGKEY"))
			mgroup = pr.value;
		rd->props[np++] = pr;
	}
	if (ti.type == CFX_MSG_TRANSACTION) {
		/* A copy would be a half message waiting for a commit nobody sends. */
		*why = "its origin topic takes transactional messages only";
		return CFX_EINVAL;
	}
	/* A message group keeps the copy on its group's queue where the topic takes it. */
	struct cfx_send_msg m = broker__copy(v, rd->props, np, CFX_MSG_NORMAL);
	if (ti.type == CFX_MSG_FIFO || (mgroup.len && ti.type == CFX_TOPIC_MIXED)) {
		m.type = CFX_MSG_FIFO;
		m.group = mgroup;
	} else if (ti.type == CFX_MSG_DELAY) {
		m.type = CFX_MSG_DELAY; /* deliver_at_ms 0: due now */
	}
	it->rd = rd;
	it->at = (struct where){ p->queue, v->offset };
	snprintf(it->handle, sizeof it->handle, "%s", p->handle);
	pthread_mutex_lock(&rd->mu);
	rd->pending++;
	pthread_mutex_unlock(&rd->mu);
	rc = cfx_broker_send(rd->br, origin, &m, 1, rd->durability, sent, it);
	if (rc) {
		pthread_mutex_lock(&rd->mu);
		rd->pending--;
		pthread_mutex_unlock(&rd->mu);
		*why = "its origin topic refused it";
	}
	return rc;
}

enum step_result {
	STEP_WAIT, /* sends are outstanding: the last completion calls run() */
	STEP_NEXT, /* the step completed: take the next one */
	STEP_DONE, /* nothing more to do */
};

/* Pops the next messages and sends their copies. @thread whichever runs run() */
static enum step_result step(struct redrive *rd)
{
	struct cfx_pop_req req = { .group = CFX_VIEW_STR(rd->rgroup),
				   .topic = CFX_VIEW_STR(rd->dlq),
				   .max_msgs = CFX_MIN(REDRIVE_BATCH, rd->max - rd->seen),
				   .invisible_ms = REDRIVE_INVISIBLE_MS };
	uint32_t fresh = 0, nitems = 0;
	int rc, last;

	if (rd->seen >= rd->max)
		return STEP_DONE;
	rc = cfx_broker_pop(rd->br, &req, &rd->pr);
	if (rc) {
		note_err(rd, rc);
		return STEP_DONE;
	}
	if (rd->pr.count == 0)
		return STEP_DONE;
	pthread_mutex_lock(&rd->mu);
	rd->pending = 1; /* held until every send is issued */
	pthread_mutex_unlock(&rd->mu);
	for (uint32_t i = 0; i < rd->pr.count; i++) {
		const struct cfx_popped *p = &rd->pr.msgs[i];
		struct where at = { p->queue, p->v.offset };
		const char *why = NULL;
		int again;

		pthread_mutex_lock(&rd->mu);
		again = left_has(rd, at);
		pthread_mutex_unlock(&rd->mu);
		if (again) {
			/* Left in place earlier in this run and visible again: hide it. */
			char fresh_handle[CFX_HANDLE_MAX];
			cfx_broker_change_invisible(rd->br, CFX_VIEW_STR(rd->rgroup),
						    CFX_VIEW_STR(rd->dlq), p->handle,
						    REDRIVE_RETRY_MS, fresh_handle);
			continue;
		}
		fresh++;
		rd->seen++;
		CFX_ASSERT(nitems < REDRIVE_BATCH);
		rc = resend(rd, &rd->items[nitems], p, &why);
		if (rc)
			leave(rd, at, p->handle, rc, why);
		else
			nitems++;
	}
	pthread_mutex_lock(&rd->mu);
	last = --rd->pending == 0;
	pthread_mutex_unlock(&rd->mu);
	/* Only messages this run left in place came back, and no new one: done. */
	if (!fresh && rd->pr.count < req.max_msgs)
		return STEP_DONE;
	return last ? STEP_NEXT : STEP_WAIT;
}

static void finish(struct redrive *rd)
{
	uint32_t n;
	int err;

	pthread_mutex_lock(&rd->mu);
	n = rd->redriven;
	err = rd->first_err;
	pthread_mutex_unlock(&rd->mu);
	cfx_pop_result_free(&rd->pr);
	cfx_free(rd->props);
	cfx_free(rd->left);
	pthread_mutex_destroy(&rd->mu);
	void (*cb)(void *, uint32_t, int) = rd->cb;
	void *arg = rd->arg;
	cfx_free(rd);
	cb(arg, n, err);
}

/* Runs steps until one waits for its sends or the run is done. @thread any */
static void run(struct redrive *rd)
{
	pthread_mutex_lock(&rd->mu);
	if (rd->running) {
		rd->again = 1;
		pthread_mutex_unlock(&rd->mu);
		return;
	}
	rd->running = 1;
	pthread_mutex_unlock(&rd->mu);
	for (;;) {
		enum step_result s = step(rd);
		if (s == STEP_DONE) {
			/* No send is outstanding: nothing else calls run() now. */
			finish(rd);
			return;
		}
		pthread_mutex_lock(&rd->mu);
		if (s == STEP_NEXT || rd->again) {
			rd->again = 0;
			pthread_mutex_unlock(&rd->mu);
			continue;
		}
		rd->running = 0;
		pthread_mutex_unlock(&rd->mu);
		return;
	}
}

/* ------------------------------------------------------------------------
 * Starting
 * ------------------------------------------------------------------------ */

/* Creates the redrive group if needed, with a policy that never dead-letters. */
static int redrive_group_ensure(struct cfx_broker *br, const char *rgroup)
{
	struct cfx_group_info gi;
	int rc = cfx_broker_group_get(br, CFX_VIEW_STR(rgroup), 0, &gi);

	if (rc == CFX_ENOENT) {
		memset(&gi, 0, sizeof gi);
		snprintf(gi.name, sizeof gi.name, "%s", rgroup);
		cfx_retry_policy_default(&gi.retry);
		gi.retry.max_attempts = REDRIVE_ATTEMPTS_MAX;
		rc = cfx_broker_group_create(br, &gi);
		return rc == CFX_EEXIST ? 0 : rc;
	}
	if (!rc && gi.retry.max_attempts < REDRIVE_ATTEMPTS_MAX) {
		gi.retry.max_attempts = REDRIVE_ATTEMPTS_MAX;
		rc = cfx_broker_group_update(br, &gi);
	}
	return rc;
}

int cfx_broker_dlq_redrive(struct cfx_broker *br, struct cfx_view group, uint32_t max,
			   enum cfx_durability durability,
			   void (*cb)(void *arg, uint32_t redriven, int err), void *arg)
{
	struct cfx_group_queue_state st;
	struct cfx_topic_info ti;
	struct redrive *rd;
	int rc;

	if (max == 0)
		return CFX_EINVAL;
	rd = cfx_calloc(1, sizeof *rd);
	rc = cfx_broker_dlq_names(group, rd->dlq, rd->rgroup);
	if (!rc)
		rc = cfx_broker_topic_get(br, CFX_VIEW_STR(rd->dlq), 0, &ti);
	if (!rc)
		rc = redrive_group_ensure(br, rd->rgroup);
	/* A new POP cursor starts at the end; the first run starts at the beginning. */
	if (!rc && cfx_broker_group_queue_state(br, CFX_VIEW_STR(rd->rgroup),
						CFX_VIEW_STR(rd->dlq), 0, &st) == CFX_ENOENT)
		rc = cfx_broker_group_reset(br, CFX_VIEW_STR(rd->rgroup), CFX_VIEW_STR(rd->dlq), 0,
					    -1);
	if (rc) {
		cfx_free(rd);
		return rc;
	}
	rd->br = br;
	rd->max = max;
	rd->durability = durability;
	rd->cb = cb;
	rd->arg = arg;
	cfx_pop_result_init(&rd->pr);
	rd->props = cfx_malloc(CFX_MSG_PROPS_MAX * sizeof *rd->props);
	pthread_mutex_init(&rd->mu, NULL);
	run(rd);
	return 0;
}
