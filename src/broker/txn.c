/*
 * txn.c - transactional messages: half messages wait in the system topic
 * %SYS%HALF until the producer commits (the message is appended to its
 * real topic) or rolls back (it is dropped); open ones are checked back
 * through the front end that registered a checker, and resolved by the
 * configured default after the last check.
 *
 * Durability: the half message is in the commit log; its resolution is a
 * done mark in the POP journal (pop__sys_done), written after the commit's
 * append completed. At start, every half message from the done-set's base
 * on that is not done is open again; one whose commit reached the real
 * topic before a crash (found by message id and __TXN_ID) is marked done
 * instead, so a commit is applied exactly once. Check counts are not
 * journaled: after a restart the check-backs start over.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/err.h"
#include "broker/broker_int.h"

#define SCAN_BATCH 256

struct half {
	uint64_t off;
	int64_t next_check_ms;
	uint32_t checks;
	int resolving;
};

/* @locks txn_mu */
static struct half *half_find(struct cfx_broker *br, uint64_t off)
{
	for (uint32_t i = 0; i < br->txn_n; i++)
		if (br->txn_v[i].off == off)
			return &br->txn_v[i];
	return NULL;
}

/* @locks txn_mu */
static void half_remove(struct cfx_broker *br, uint64_t off)
{
	for (uint32_t i = 0; i < br->txn_n; i++)
		if (br->txn_v[i].off == off) {
			br->txn_v[i] = br->txn_v[--br->txn_n];
			return;
		}
}

static void half_add(struct cfx_broker *br, uint64_t off, int64_t next_check_ms)
{
	pthread_mutex_lock(&br->txn_mu);
	if (!half_find(br, off)) {
		if (br->txn_n == br->txn_cap) {
			br->txn_cap = br->txn_cap ? br->txn_cap * 2 : 64;
			br->txn_v = cfx_realloc(br->txn_v, br->txn_cap * sizeof *br->txn_v);
		}
		br->txn_v[br->txn_n++] = (struct half){ .off = off, .next_check_ms = next_check_ms };
	}
	pthread_mutex_unlock(&br->txn_mu);
}

void txn__added(struct cfx_broker *br, uint64_t off)
{
	half_add(br, off, cfx_clock_wall_ms() + br->o.txn_check_first_ms);
}

int txn__open(struct cfx_broker *br)
{
	struct cfx_view topic = CFX_VIEW_STR(CFX_HALF_TOPIC);
	int64_t now = cfx_clock_wall_ms();
	uint64_t from, start, end, open = 0;
	struct cfx_read_result rd;
	int rc;

	rc = cfx_broker_topic_get(br, topic, 0, &(struct cfx_topic_info){ 0 });
	if (rc == CFX_ENOENT)
		rc = cfx_broker_topic_create(br, CFX_HALF_TOPIC, CFX_TOPIC_MIXED, 1);
	if (rc && rc != CFX_EEXIST)
		return rc;
	cfx_store_queue_bounds(br->st, topic, 0, &start, &end);
	from = CFX_MAX(pop__sys_base(br, SYS_HALF), start);
	cfx_read_result_init(&rd);
	while (from < end) {
		rc = cfx_store_read(br->st, topic, 0, from, SCAN_BATCH, 4u << 20, &rd);
		if (rc || rd.count == 0)
			break;
		for (uint32_t i = 0; i < rd.count; i++) {
			const struct cfx_msg_view *v = &rd.msgs[i];
			if (pop__sys_is_done(br, SYS_HALF, v->offset))
				continue;
			if (broker__released(br, v, CFX_PROP_TXN_ID, v->offset)) {
				pop__sys_done(br, SYS_HALF, v->offset);
				continue;
			}
			half_add(br, v->offset, now + br->o.txn_check_first_ms);
			open++;
		}
		from = rd.next_offset;
	}
	cfx_read_result_free(&rd);
	cfx_log_info("broker: %" PRIu64 " open transactions", open);
	return 0;
}

void txn__close(struct cfx_broker *br)
{
	CFX_FREE(br->txn_v);
	br->txn_n = br->txn_cap = 0;
}

void cfx_broker_set_txn_checker(struct cfx_broker *br, cfx_txn_check_fn fn, void *arg)
{
	pthread_mutex_lock(&br->txn_mu);
	br->txn_check = fn;
	br->txn_check_arg = arg;
	pthread_mutex_unlock(&br->txn_mu);
}

size_t cfx_broker_txn_open(struct cfx_broker *br)
{
	pthread_mutex_lock(&br->txn_mu);
	size_t n = br->txn_n;
	pthread_mutex_unlock(&br->txn_mu);
	return n;
}

/* ------------------------------------------------------------------------
 * Resolution
 * ------------------------------------------------------------------------ */

/* The resolution of half message `off` failed: it is open again. */
static void resolving_clear(struct cfx_broker *br, uint64_t off)
{
	pthread_mutex_lock(&br->txn_mu);
	struct half *h = half_find(br, off);
	if (h)
		h->resolving = 0;
	pthread_mutex_unlock(&br->txn_mu);
}

struct end_op {
	struct cfx_broker *br;
	uint64_t off;
	cfx_send_cb cb;
	void *arg;
};

static void end_done(struct end_op *op, int err)
{
	struct cfx_broker *br = op->br;

	if (!err) {
		err = pop__sys_done(br, SYS_HALF, op->off);
		if (err == CFX_EEXIST)
			err = 0;
	}
	if (err) {
		resolving_clear(br, op->off);
	} else {
		pthread_mutex_lock(&br->txn_mu);
		half_remove(br, op->off);
		pthread_mutex_unlock(&br->txn_mu);
	}
	if (op->cb) {
		struct cfx_send_result r = { .err = err };
		op->cb(op->arg, &r, 1);
	}
	cfx_free(op);
}

static void committed(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	CFX_UNUSED(n);
	end_done(arg, res[0].err);
}

/* Commits or rolls back half message `off`. cb may be NULL. */
static int resolve(struct cfx_broker *br, struct cfx_view topic, uint64_t off, int commit,
		   cfx_send_cb cb, void *arg)
{
	struct cfx_read_result rd;
	struct cfx_view real;
	struct half *h;
	int rc;

	pthread_mutex_lock(&br->txn_mu);
	h = half_find(br, off);
	if (!h || h->resolving) {
		pthread_mutex_unlock(&br->txn_mu);
		return CFX_ENOENT; /* resolved already, or being resolved */
	}
	h->resolving = 1;
	pthread_mutex_unlock(&br->txn_mu);

	struct end_op *op = cfx_malloc(sizeof *op);
	*op = (struct end_op){ .br = br, .off = off, .cb = cb, .arg = arg };
	cfx_read_result_init(&rd);
	rc = broker__read_sys(br, CFX_HALF_TOPIC, off, &rd);
	if (rc ||
	    !broker__prop(&rd.msgs[0], CFX_PROP_REAL_TOPIC, &real) ||
	    (topic.p && !cfx_view_eq(real, topic))) {
		rc = rc ? rc : CFX_ENOENT;
		goto fail;
	}
	if (!commit) {
		cfx_read_result_free(&rd);
		end_done(op, 0);
		return 0;
	}
	const struct cfx_msg_view *v = &rd.msgs[0];
	struct cfx_prop *props = cfx_malloc(CFX_MSG_PROPS_MAX * sizeof *props);
	uint32_t np = 0;
	size_t cur = 0;
	struct cfx_prop p;
	char tid[24];

	while (np < CFX_MSG_PROPS_MAX - 4 && cfx_msg_view_next_prop(v, &cur, &p))
		if (!cfx_view_eq_str(p.name, CFX_PROP_REAL_TOPIC) &&
		    !cfx_view_eq_str(p.name, CFX_PROP_PRODUCER_GROUP))
			props[np++] = p;
	snprintf(tid, sizeof tid, "%" PRIu64, off);
	props[np++] = (struct cfx_prop){ CFX_VIEW_STR(CFX_PROP_TXN_ID), CFX_VIEW_STR(tid) };
	struct cfx_send_msg m = broker__copy(v, props, np, CFX_MSG_TRANSACTION);
	m.released = 1;
	rc = cfx_broker_send(br, real, &m, 1, CFX_DURABILITY_ASYNC, committed, op);
	cfx_free(props);
	cfx_read_result_free(&rd);
	if (rc) {
		resolving_clear(br, off);
		cfx_free(op);
	}
	return rc;
fail:
	cfx_read_result_free(&rd);
	resolving_clear(br, off);
	cfx_free(op);
	return rc;
}

int cfx_broker_end_transaction(struct cfx_broker *br, struct cfx_view topic, const char *txn_id,
			       int commit, cfx_send_cb cb, void *arg)
{
	uint64_t off;

	if (broker__sys_handle_decode(br, SYS_HALF, topic, txn_id, &off))
		return CFX_EINVAL;
	if (pop__sys_is_done(br, SYS_HALF, off))
		return CFX_ENOENT;
	return resolve(br, topic, off, commit, cb, arg);
}

/* ------------------------------------------------------------------------
 * Check-backs
 * ------------------------------------------------------------------------ */

void txn__tick(struct cfx_broker *br)
{
	int64_t now = cfx_clock_wall_ms();
	uint64_t *check = NULL, *expire = NULL;
	uint32_t ncheck = 0, nexpire = 0;
	cfx_txn_check_fn fn;
	void *fnarg;

	pthread_mutex_lock(&br->txn_mu);
	if (br->txn_n == 0 || now < br->txn_next_ms) {
		pthread_mutex_unlock(&br->txn_mu);
		return;
	}
	br->txn_next_ms = now + 200;
	check = cfx_malloc(br->txn_n * sizeof *check);
	expire = cfx_malloc(br->txn_n * sizeof *expire);
	for (uint32_t i = 0; i < br->txn_n; i++) {
		struct half *h = &br->txn_v[i];
		if (h->resolving || h->next_check_ms > now)
			continue;
		if (h->checks >= br->o.txn_check_max) {
			expire[nexpire++] = h->off;
			continue;
		}
		h->checks++;
		h->next_check_ms = now + br->o.txn_check_interval_ms;
		check[ncheck++] = h->off;
	}
	pthread_mutex_unlock(&br->txn_mu);

	for (uint32_t i = 0; i < nexpire; i++) {
		cfx_log_ratelimited(CFX_LOG_INFO, "broker: transaction %" PRIu64 " unresolved after "
				    "%u checks: %s",
				    expire[i], br->o.txn_check_max,
				    br->o.txn_check_default_commit ? "committed" : "rolled back");
		resolve(br, (struct cfx_view){ 0 }, expire[i], br->o.txn_check_default_commit, NULL,
			NULL);
	}
	/* The checker runs under txn_mu, so that once cfx_broker_set_txn_checker
	 * (NULL) returns it is never called again. */
	pthread_mutex_lock(&br->txn_mu);
	fn = br->txn_check;
	fnarg = br->txn_check_arg;
	for (uint32_t i = 0; i < ncheck && fn; i++) {
		struct cfx_read_result rd;
		struct cfx_view real, pg = { 0 };

		cfx_read_result_init(&rd);
		if (cfx_store_read(br->st, CFX_VIEW_STR(CFX_HALF_TOPIC), 0, check[i], 1, 1, &rd) ==
			    0 &&
		    rd.count && rd.msgs[0].offset == check[i] &&
		    broker__prop(&rd.msgs[0], CFX_PROP_REAL_TOPIC, &real)) {
			struct cfx_txn_check c = { .topic = real, .msg = &rd.msgs[0] };
			broker__prop(&rd.msgs[0], CFX_PROP_PRODUCER_GROUP, &pg);
			c.producer_group = pg;
			broker__sys_handle(br, SYS_HALF, real, check[i], c.txn_id);
			fn(fnarg, &c);
		}
		cfx_read_result_free(&rd);
	}
	pthread_mutex_unlock(&br->txn_mu);
	cfx_free(check);
	cfx_free(expire);
}
