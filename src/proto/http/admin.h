/*
 * admin.h - the admin HTTP API (JSON under /v1/, admin.c) and the
 * Prometheus metrics (/metrics, metrics.c) of confluxd, served by the
 * HTTP/1.1 protocol of http.h on the `http.listen` address.
 *
 * Routes and their JSON: docs/admin-api.md. Metrics: docs/metrics.md.
 *
 * The service calls the broker core directly from the network loops;
 * every route is short, bounded work (metadata changes write a small file
 * under meta/, reads and lookups are bounded in count and bytes), except
 * the routes that wait for another thread: the dead-letter re-drive (sync
 * appends), EventBridge ingress and replay, and long polls of events
 * (events.c). They defer their answer (http.h) until the completion posts
 * it back to the loop.
 */
#ifndef CFX_PROTO_HTTP_ADMIN_H
#define CFX_PROTO_HTTP_ADMIN_H

#include <pthread.h>

#include "broker/auth.h"
#include "broker/broker.h"

struct cfx_bridge;
#include "net/conn.h"
#include "proto/http/http.h"

struct admin_opts {
	struct cfx_broker *br;	   /* borrowed; outlives the service */
	struct cfx_auth *auth;	   /* users and policies, borrowed; NULL = no authentication */
	struct cfx_bridge *bridge; /* the event bridge, borrowed; NULL = off */
	struct cfx_server *srv;	   /* for the listeners' connection counters; NULL = none */
	const char *version;	   /* of confluxd, copied */
	const char *broker_name;   /* copied */
	uint32_t default_queues;   /* queues of a topic created without "queues" */
};

#define ADMIN_LISTENERS_MAX 8
#define ADMIN_ADDR_MAX 272 /* "[host]:port" */

struct admin_listener {
	char name[16];		   /* "grpc", "http": the listener's name in cfx_listener_opts */
	char addr[ADMIN_ADDR_MAX]; /* bound "host:port"; "" = not listening */
};

/* A front end's own metrics, appended to /metrics (Prometheus text). */
typedef void (*admin_metrics_fn)(void *arg, struct cfx_writer *out);
#define ADMIN_METRICS_MAX 4

struct admin_service {
	struct admin_opts o;	   /* strings point into the fields below */
	struct {
		admin_metrics_fn fn;
		void *arg;
	} metrics[ADMIN_METRICS_MAX];
	uint32_t nmetrics;
	char version[32];
	char broker_name[128];
	struct http_service http;  /* the listener's proto_arg: &svc->http */
	int64_t start_wall_ms;	   /* when the service was created (process start, near enough) */
	int64_t start_mono_ms;
	struct admin_listener listeners[ADMIN_LISTENERS_MAX];
	uint32_t nlisteners;

	/* Answers deferred until broker work completes (dead-letter re-drives). */
	pthread_mutex_t mu;
	pthread_cond_t cv;	   /* signalled when `deferred` drops */
	uint32_t deferred;	   /* deferred answers not sent yet (re-drives, event ingress,
				      replays, long polls) */
	int stopping;		   /* admin_service_stop ran: no new ones */
	struct admin_poll *polls;  /* long polls waiting for events (events.c) */
};

/* Creates the service (copies what `o` points to, but not the broker and server). */
struct admin_service *admin_service_new(const struct admin_opts *o);
/*
 * Refuses new re-drives, event ingress and replays (503), makes the long
 * polls of events answer now (204), and waits until every deferred answer
 * was given: they are posted to the network loops, so call it while the
 * loops still run, before the server stops. NULL is ignored.
 * @thread main (not a network loop)
 */
void admin_service_stop(struct admin_service *svc);
/* Answers deferred and not sent yet (re-drives running, events awaited). @thread any */
uint32_t admin_service_deferred(struct admin_service *svc);
/*
 * Frees the service; the listener using it must be gone, and no answer
 * deferred (admin_service_stop, or admin_service_deferred() == 0). NULL is
 * ignored.
 */
void admin_service_free(struct admin_service *svc);

/*
 * Records the address listener `name` is bound to ("host:port"), or that it
 * is off (addr NULL or ""), for /v1/status and for the connection metrics.
 * @thread main, before the server starts
 */
void admin_service_set_listener(struct admin_service *svc, const char *name, const char *addr);

/* Adds a front end's metrics to /metrics; fn runs on a network loop while
 * the service lives. @thread main, before the server starts */
void admin_service_add_metrics(struct admin_service *svc, admin_metrics_fn fn, void *arg);

/* ------------------------------------------------------------------------
 * Shared by admin.c and metrics.c
 * ------------------------------------------------------------------------ */

/* One group's position on one queue. */
struct admin_pos {
	char *group, *topic;
	uint32_t queue;
	struct cfx_group_queue_state st;
};

/*
 * Collects the positions of `group` (group.p NULL: of every group) into a
 * new array sorted by group, topic and queue; *n gets its length. Free it
 * with admin__positions_free.
 */
struct admin_pos *admin__positions(struct cfx_broker *br, struct cfx_view group, size_t *n);
void admin__positions_free(struct admin_pos *v, size_t n);

/* Writes the Prometheus text exposition (format 0.0.4) into `out`. @thread loop */
void metrics_render(struct admin_service *svc, struct cfx_writer *out);

#endif
