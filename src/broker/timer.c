/*
 * timer.c - delayed messages: stored in the system topic %SYS%TIMER until
 * due, held in a hierarchical timing wheel (16 bytes per pending timer),
 * then appended to their real topic exactly once.
 *
 * A delayed message is appended to %SYS%TIMER (queue 0) with properties
 * __REAL_TOPIC and __DELIVER_AT; its offset there is the timer's id. When
 * the append completes the id goes into the wheel. When the wheel fires it
 * (never before its time: a timer due at t fires at the first tick at or
 * after t), the message is appended to the real topic with property
 * __TIMER_ID = id, and once that append completes the id is marked done in
 * the POP journal (pop__sys_done). A recall marks it done before it fires.
 *
 * Restart: every entry of %SYS%TIMER from the done-set's base on that is
 * not done goes back into the wheel. A crash between the real append and
 * the done record would fire a timer twice; for timers already due at
 * restart the real topic is searched for the message id carrying this
 * __TIMER_ID first, so a timer fires exactly once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/err.h"
#include "broker/broker_int.h"
#include "broker/timerwheel.h"

#define TIMER_TICK_MS 20
#define SCAN_BATCH 256

static int view_to_i64(struct cfx_view v, int64_t *out)
{
	char buf[24], *end;

	if (!v.len || v.len >= sizeof buf)
		return 0;
	memcpy(buf, v.p, v.len);
	buf[v.len] = '\0';
	errno = 0;
	long long x = strtoll(buf, &end, 10);
	if (errno || *end)
		return 0;
	*out = x;
	return 1;
}

int broker__released(struct cfx_broker *br, const struct cfx_msg_view *v, const char *id_prop,
		     uint64_t id)
{
	struct cfx_read_result res;
	struct cfx_view real, tid;
	char want[24];
	int found = 0;

	if (!v->msg_id.len || !broker__prop(v, CFX_PROP_REAL_TOPIC, &real))
		return 0;
	snprintf(want, sizeof want, "%" PRIu64, id);
	cfx_read_result_init(&res);
	if (cfx_store_lookup_id(br->st, v->msg_id, 16, &res) == 0)
		for (uint32_t i = 0; i < res.count && !found; i++)
			found = cfx_view_eq(res.origins[i].topic, real) &&
				broker__prop(&res.msgs[i], id_prop, &tid) &&
				cfx_view_eq_str(tid, want);
	cfx_read_result_free(&res);
	return found;
}

int timer__open(struct cfx_broker *br)
{
	struct cfx_view topic = CFX_VIEW_STR(CFX_TIMER_TOPIC);
	int64_t now = cfx_clock_wall_ms();
	uint64_t from, start, end, fired = 0, pending = 0;
	struct cfx_read_result rd;
	int rc;

	br->tm_wheel = cfx_twheel_new(TIMER_TICK_MS, now);
	rc = cfx_broker_topic_get(br, topic, 0, &(struct cfx_topic_info){ 0 });
	if (rc == CFX_ENOENT)
		rc = cfx_broker_topic_create(br, CFX_TIMER_TOPIC, CFX_TOPIC_MIXED, 1);
	if (rc && rc != CFX_EEXIST)
		return rc;
	/* Back into the wheel: every entry not done. */
	cfx_store_queue_bounds(br->st, topic, 0, &start, &end);
	from = CFX_MAX(pop__sys_base(br, SYS_TIMER), start);
	cfx_read_result_init(&rd);
	while (from < end) {
		rc = cfx_store_read(br->st, topic, 0, from, SCAN_BATCH, 4u << 20, &rd);
		if (rc || rd.count == 0) {
			if (rc)
				cfx_log_error("broker: %s unreadable at offset %" PRIu64 ": %s",
					      CFX_TIMER_TOPIC, from, cfx_strerror(rc));
			break;
		}
		for (uint32_t i = 0; i < rd.count; i++) {
			const struct cfx_msg_view *v = &rd.msgs[i];
			struct cfx_view at;
			int64_t due = 0;

			if (pop__sys_is_done(br, SYS_TIMER, v->offset))
				continue;
			if (!broker__prop(v, CFX_PROP_DELIVER_AT, &at) || !view_to_i64(at, &due))
				due = now; /* damaged: deliver rather than lose */
			if (due <= now && broker__released(br, v, CFX_PROP_TIMER_ID, v->offset)) {
				pop__sys_done(br, SYS_TIMER, v->offset);
				fired++;
				continue;
			}
			cfx_twheel_add(br->tm_wheel, due, v->offset);
			pending++;
		}
		from = rd.next_offset;
	}
	cfx_read_result_free(&rd);
	cfx_log_info("broker: %" PRIu64 " delayed messages pending%s", pending,
		     fired ? " (some had fired just before a crash)" : "");
	return 0;
}

void timer__close(struct cfx_broker *br)
{
	if (!br->tm_wheel)
		return;
	cfx_twheel_free(br->tm_wheel);
	br->tm_wheel = NULL;
}

void timer__added(struct cfx_broker *br, uint64_t id, int64_t due_ms)
{
	pthread_mutex_lock(&br->tm_mu);
	cfx_twheel_add(br->tm_wheel, due_ms, id);
	pthread_mutex_unlock(&br->tm_mu);
}

size_t cfx_broker_timers_pending(struct cfx_broker *br, size_t *memory)
{
	pthread_mutex_lock(&br->tm_mu);
	size_t n = cfx_twheel_count(br->tm_wheel);
	if (memory)
		*memory = cfx_twheel_memory(br->tm_wheel);
	pthread_mutex_unlock(&br->tm_mu);
	return n;
}

struct fired {
	uint64_t *ids;
	uint32_t n, cap;
};

static void collect(void *arg, uint64_t id, int64_t due_ms)
{
	struct fired *f = arg;

	CFX_UNUSED(due_ms);
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 64;
		f->ids = cfx_realloc(f->ids, f->cap * sizeof *f->ids);
	}
	f->ids[f->n++] = id;
}

struct fire_op {
	struct cfx_broker *br;
	uint64_t id;
};

static void fire_done(void *arg, const struct cfx_send_result *res, uint32_t n)
{
	struct fire_op *op = arg;
	int err = res[0].err;

	CFX_UNUSED(n);
	if (!err) {
		pop__sys_done(op->br, SYS_TIMER, op->id);
	} else if (err == CFX_ENOENT || err == CFX_EINVAL || err == CFX_ETOPIC) {
		cfx_log_ratelimited(CFX_LOG_WARN, "broker: delayed message %" PRIu64
				    " cannot go to its topic (%s): dropped",
				    op->id, cfx_strerror(err));
		pop__sys_done(op->br, SYS_TIMER, op->id);
	} else {
		/* The store refused (full, I/O): try again in a second. */
		timer__added(op->br, op->id, cfx_clock_wall_ms() + 1000);
	}
	cfx_free(op);
}

static void fire(struct cfx_broker *br, uint64_t id)
{
	struct cfx_read_result rd;
	struct cfx_view real;
	struct cfx_prop *props = NULL;
	char tid[24];
	int rc;

	if (pop__sys_is_done(br, SYS_TIMER, id))
		return; /* recalled */
	cfx_read_result_init(&rd);
	rc = broker__read_sys(br, CFX_TIMER_TOPIC, id, &rd);
	if (rc || !broker__prop(&rd.msgs[0], CFX_PROP_REAL_TOPIC, &real)) {
		cfx_log_ratelimited(CFX_LOG_WARN, "broker: delayed message %" PRIu64
				    " is gone or damaged: dropped",
				    id);
		pop__sys_done(br, SYS_TIMER, id);
		goto out;
	}
	const struct cfx_msg_view *v = &rd.msgs[0];
	uint32_t np = 0;
	size_t cur = 0;
	struct cfx_prop p;

	props = cfx_malloc(CFX_MSG_PROPS_MAX * sizeof *props);
	while (np < CFX_MSG_PROPS_MAX - 4 && cfx_msg_view_next_prop(v, &cur, &p))
		if (!cfx_view_eq_str(p.name, CFX_PROP_REAL_TOPIC))
			props[np++] = p;
	snprintf(tid, sizeof tid, "%" PRIu64, id);
	props[np++] = (struct cfx_prop){ CFX_VIEW_STR(CFX_PROP_TIMER_ID), CFX_VIEW_STR(tid) };
	struct cfx_send_msg m = broker__copy(v, props, np, CFX_MSG_DELAY);
	/* DELAY with deliver_at 0: due now */
	struct fire_op *op = cfx_malloc(sizeof *op);
	*op = (struct fire_op){ .br = br, .id = id };
	rc = cfx_broker_send(br, real, &m, 1, CFX_DURABILITY_ASYNC, fire_done, op);
	if (rc) {
		struct cfx_send_result r = { .err = rc };
		fire_done(op, &r, 1);
	}
out:
	cfx_free(props);
	cfx_read_result_free(&rd);
}

void timer__tick(struct cfx_broker *br)
{
	struct fired f = { 0 };

	if (!br->tm_wheel)
		return;
	pthread_mutex_lock(&br->tm_mu);
	cfx_twheel_advance(br->tm_wheel, cfx_clock_wall_ms(), collect, &f);
	pthread_mutex_unlock(&br->tm_mu);
	for (uint32_t i = 0; i < f.n; i++)
		fire(br, f.ids[i]);
	cfx_free(f.ids);
}

int cfx_broker_recall(struct cfx_broker *br, struct cfx_view topic, const char *handle,
		      char *msg_id, size_t msg_id_len)
{
	struct cfx_read_result rd;
	struct cfx_view real;
	uint64_t id;
	int rc;

	if (broker__sys_handle_decode(br, SYS_TIMER, topic, handle, &id))
		return CFX_EINVAL;
	cfx_read_result_init(&rd);
	rc = broker__read_sys(br, CFX_TIMER_TOPIC, id, &rd);
	if (rc ||
	    !broker__prop(&rd.msgs[0], CFX_PROP_REAL_TOPIC, &real) || !cfx_view_eq(real, topic)) {
		cfx_read_result_free(&rd);
		return CFX_ENOENT;
	}
	if (msg_id && msg_id_len)
		snprintf(msg_id, msg_id_len, "%.*s", (int)rd.msgs[0].msg_id.len,
			 (const char *)rd.msgs[0].msg_id.p);
	cfx_read_result_free(&rd);
	rc = pop__sys_done(br, SYS_TIMER, id);
	return rc == CFX_EEXIST ? CFX_ENOENT : rc; /* already delivered or recalled */
}
