/*
 * broker.c - opening and closing the broker: the store, the metadata, the
 * POP state, and the timer thread (POP journal flushes, wake-ups of long
 * polls whose messages became visible again, snapshots).
 */
#include <limits.h>
#include <stdio.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "broker/broker_int.h"

#define TICK_MS 50
#define TIMER_STEP_MS 10

void cfx_broker_opts_default(struct cfx_broker_opts *o)
{
	memset(o, 0, sizeof *o);
	cfx_store_opts_default(&o->store);
	o->auto_create = 1;
	o->default_queues = 8;
	o->pop_flush_interval_ms = 100;
	o->pop_journal_bytes_max = 64u << 20;
	o->inflight_max = 65536;
	o->timer_max_ms = 3 * 24 * 3600 * 1000LL;
	o->txn_check_first_ms = 6000;
	o->txn_check_interval_ms = 30000;
	o->txn_check_max = 15;
	o->txn_check_default_commit = 0;
}

struct cfx_store *cfx_broker_store(struct cfx_broker *br)
{
	return br->st;
}

const struct cfx_broker_opts *cfx_broker_opts_of(const struct cfx_broker *br)
{
	return &br->o;
}

/* The store dispatched messages of (topic, queue): wake its long polls. */
static void on_dispatch(void *arg, struct cfx_view topic, uint32_t queue_id, uint64_t end)
{
	struct cfx_broker *br = arg;

	CFX_UNUSED(queue_id);
	CFX_UNUSED(end);
	if (br->watches) /* a racy peek is fine: a missed wake-up is caught by the next tick */
		broker__wake(br, (struct cfx_view){ NULL, 0 }, topic);
}

static void *timer_thread(void *arg)
{
	struct cfx_broker *br = arg;
	int64_t last_flush = 0, last_pop = 0;

	pthread_mutex_lock(&br->timer_mu);
	while (!br->stopping) {
		/* Delayed messages pending: wake every TIMER_STEP_MS so that they
		 * fire within about one wheel tick of their time. */
		int64_t step = cfx_broker_timers_pending(br, NULL) ? TIMER_STEP_MS : TICK_MS;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += step * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&br->timer_cv, &br->timer_mu, &ts);
		if (br->stopping)
			break;
		pthread_mutex_unlock(&br->timer_mu);
		int64_t now = cfx_clock_mono_ms();
		timer__tick(br);
		if (now - last_pop >= TICK_MS) {
			txn__tick(br);
			pop__tick(br, now - last_flush >= br->o.pop_flush_interval_ms ? now : 0);
			last_flush = now;
			last_pop = now;
		}
		pthread_mutex_lock(&br->timer_mu);
	}
	pthread_mutex_unlock(&br->timer_mu);
	return NULL;
}

static char *join(const char *a, const char *b)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof buf, "%s/%s", a, b);
	return cfx_strdup(buf);
}

int cfx_broker_open(const struct cfx_broker_opts *o, struct cfx_broker **out,
		    struct cfx_store_recovery *rec)
{
	struct cfx_broker *br = cfx_calloc(1, sizeof *br);
	struct cfx_store_opts so = o->store;
	int rc;

	br->o = *o;
	br->fops = o->store.fops ? o->store.fops : &cfx_fileops_real;
	br->dir = cfx_strdup(o->store.dir);
	br->o.store.dir = br->dir; /* the caller's string need not outlive open */
	br->meta_dir = join(br->dir, "meta");
	br->pop_dir = join(br->dir, "pop");
	br->jfd = -1;
	pthread_mutex_init(&br->meta_mu, NULL);
	pthread_mutex_init(&br->pop_mu, NULL);
	pthread_mutex_init(&br->jw_mu, NULL);
	pthread_mutex_init(&br->watch_mu, NULL);
	pthread_mutex_init(&br->timer_mu, NULL);
	pthread_mutex_init(&br->tm_mu, NULL);
	pthread_mutex_init(&br->txn_mu, NULL);
	pthread_cond_init(&br->timer_cv, NULL);

	so.on_dispatch = on_dispatch;
	so.on_dispatch_arg = br;
	rc = cfx_store_open(&so, &br->st, rec);
	if (!rc)
		rc = cfx_err_from_errno(-cfx_mkdir_p(br->fops, br->meta_dir));
	if (!rc)
		rc = meta__load(br);
	if (!rc)
		rc = pop__open(br);
	if (!rc)
		rc = timer__open(br);
	if (!rc)
		rc = txn__open(br);
	if (rc) {
		cfx_broker_close(br);
		return rc;
	}
	pthread_create(&br->timer_thr, NULL, timer_thread, br);
	pthread_setname_np(br->timer_thr, "cfx-timer");
	*out = br;
	return 0;
}

int cfx_broker_close(struct cfx_broker *br)
{
	int rc = 0;

	if (!br)
		return 0;
	if (br->timer_thr) {
		pthread_mutex_lock(&br->timer_mu);
		br->stopping = 1;
		pthread_cond_signal(&br->timer_cv);
		pthread_mutex_unlock(&br->timer_mu);
		pthread_join(br->timer_thr, NULL);
	}
	timer__close(br);
	txn__close(br);
	pop__close(br);
	while (br->watches) {
		struct watch *w = br->watches;
		br->watches = w->next;
		cfx_free(w->group);
		cfx_free(w->topic);
		cfx_free(w);
	}
	meta__free(br);
	if (br->st)
		rc = cfx_store_close(br->st);
	pthread_mutex_destroy(&br->meta_mu);
	pthread_mutex_destroy(&br->pop_mu);
	pthread_mutex_destroy(&br->jw_mu);
	pthread_mutex_destroy(&br->watch_mu);
	pthread_mutex_destroy(&br->timer_mu);
	pthread_mutex_destroy(&br->tm_mu);
	pthread_mutex_destroy(&br->txn_mu);
	pthread_cond_destroy(&br->timer_cv);
	cfx_free(br->dir);
	cfx_free(br->meta_dir);
	cfx_free(br->pop_dir);
	cfx_free(br);
	return rc;
}
