/*
 * rmq_renew.c - invisible-time renewal for auto-renewing consumers.
 *
 * A RocketMQ push consumer receives with auto_renew: it does not choose an
 * invisible duration and expects the server to keep its messages invisible
 * for as long as it works on them. Every message delivered to such a
 * receive is entered here (group, topic, receipt handle, client id); a
 * thread renews each one (cfx_broker_renew: same handle, RENEW_MS more)
 * shortly before its invisibility ends, for as long as
 *   - the message is not acknowledged, changed or dead-lettered (those
 *     remove the entry; a renewal that the broker refuses removes it too),
 *   - its client is alive (a Heartbeat or Telemetry settings within
 *     CLIENT_SILENCE_MS, and no NotifyClientTermination), and
 *   - RENEW_MAX_MS has not passed since the delivery.
 * When any of these ends, the message becomes visible again when its last
 * renewal runs out, and is redelivered.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/hash.h"
#include "base/log.h"
#include "proto/grpc/rmq.h"

#define RENEW_BUCKETS 4096
#define RENEW_STEP_MS 1000
#define RENEW_LEAD_MS 15000	       /* renew this long before the invisibility ends */
#define CLIENT_SILENCE_MS 60000	       /* a client not heard from this long is gone */
#define RENEW_MAX_MS (3 * 3600 * 1000) /* longest a message is kept invisible for a client */

struct renew_ent {
	struct renew_ent *next;
	char *group, *topic, *client;
	char handle[CFX_HANDLE_MAX];
	int64_t first_ms; /* delivery, wall clock */
	int64_t due_ms;	  /* next renewal, wall clock */
};

struct rmq_renewer {
	struct rmq_service *svc;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thr;
	int stopping, started;
	struct renew_ent *b[RENEW_BUCKETS];
	size_t count;
};

static uint32_t bucket(const char *handle)
{
	return (uint32_t)cfx_hash64(handle, strlen(handle)) & (RENEW_BUCKETS - 1);
}

static void ent_free(struct renew_ent *e)
{
	cfx_free(e->group);
	cfx_free(e->topic);
	cfx_free(e->client);
	cfx_free(e);
}

void rmq_renew_add(struct rmq_service *svc, const char *group, const char *topic,
		   const char *handle, const char *client, int64_t invisible_ms)
{
	struct rmq_renewer *r = svc->renewer;
	struct renew_ent *e;
	int64_t now = cfx_clock_wall_ms();

	if (!r || !r->started || !client)
		return;
	e = cfx_calloc(1, sizeof *e);
	e->group = cfx_strdup(group);
	e->topic = cfx_strdup(topic);
	e->client = cfx_strdup(client);
	snprintf(e->handle, sizeof e->handle, "%s", handle);
	e->first_ms = now;
	e->due_ms = now + (invisible_ms > RENEW_LEAD_MS ? invisible_ms - RENEW_LEAD_MS : 0);
	pthread_mutex_lock(&r->mu);
	uint32_t k = bucket(e->handle);
	e->next = r->b[k];
	r->b[k] = e;
	r->count++;
	pthread_mutex_unlock(&r->mu);
}

void rmq_renew_remove(struct rmq_service *svc, const char *handle)
{
	struct rmq_renewer *r = svc->renewer;
	struct renew_ent **pp, *e = NULL;

	if (!r || !handle || !r->count) /* a racy peek: most receivers do not renew */
		return;
	pthread_mutex_lock(&r->mu);
	for (pp = &r->b[bucket(handle)]; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->handle, handle)) {
			e = *pp;
			*pp = e->next;
			r->count--;
			break;
		}
	pthread_mutex_unlock(&r->mu);
	if (e)
		ent_free(e);
}

/* One pass: renews what is due, drops what must not be renewed any more. */
static void renew_pass(struct rmq_renewer *r)
{
	struct rmq_service *svc = r->svc;
	int64_t now = cfx_clock_wall_ms();
	struct renew_ent *due = NULL;

	/* Take the due entries out; the broker is called without the lock. */
	pthread_mutex_lock(&r->mu);
	for (uint32_t k = 0; k < RENEW_BUCKETS && r->count; k++)
		for (struct renew_ent **pp = &r->b[k]; *pp;) {
			struct renew_ent *e = *pp;
			if (e->due_ms > now) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			r->count--;
			e->next = due;
			due = e;
		}
	pthread_mutex_unlock(&r->mu);

	while (due) {
		struct renew_ent *e = due;
		due = e->next;
		int keep = now - e->first_ms < RENEW_MAX_MS &&
			   rmq_client_alive(svc, e->client, CLIENT_SILENCE_MS) &&
			   cfx_broker_renew(svc->br, CFX_VIEW_STR(e->group), CFX_VIEW_STR(e->topic),
					    e->handle, svc->o.auto_renew_invisible_ms) == 0;
		if (!keep) {
			ent_free(e);
			continue;
		}
		e->due_ms = now + CFX_MAX(svc->o.auto_renew_invisible_ms - RENEW_LEAD_MS,
					  (int64_t)RENEW_STEP_MS);
		pthread_mutex_lock(&r->mu);
		uint32_t k = bucket(e->handle);
		e->next = r->b[k];
		r->b[k] = e;
		r->count++;
		pthread_mutex_unlock(&r->mu);
	}
}

static void *renew_thread(void *arg)
{
	struct rmq_renewer *r = arg;

	pthread_mutex_lock(&r->mu);
	while (!r->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += RENEW_STEP_MS / 1000;
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (r->stopping)
			break;
		pthread_mutex_unlock(&r->mu);
		renew_pass(r);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

void rmq_renew_start(struct rmq_service *svc)
{
	struct rmq_renewer *r = cfx_calloc(1, sizeof *r);

	r->svc = svc;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	svc->renewer = r;
	if (pthread_create(&r->thr, NULL, renew_thread, r) == 0) {
		pthread_setname_np(r->thr, "cfx-renew");
		r->started = 1;
	} else {
		cfx_log_error("rmq: cannot start the renewal thread: auto-renewing consumers get "
			      "a fixed invisible duration");
	}
}

void rmq_renew_stop(struct rmq_service *svc)
{
	struct rmq_renewer *r = svc->renewer;

	if (!r)
		return;
	if (r->started) {
		pthread_mutex_lock(&r->mu);
		r->stopping = 1;
		pthread_cond_signal(&r->cv);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thr, NULL);
	}
	for (uint32_t k = 0; k < RENEW_BUCKETS; k++)
		while (r->b[k]) {
			struct renew_ent *e = r->b[k];
			r->b[k] = e->next;
			ent_free(e);
		}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	cfx_free(r);
	svc->renewer = NULL;
}

size_t rmq_renew_count(struct rmq_service *svc)
{
	struct rmq_renewer *r = svc->renewer;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->mu);
	size_t n = r->count;
	pthread_mutex_unlock(&r->mu);
	return n;
}
