/*
 * bridge_int.h - shared inside src/bridge only: the definitions in memory,
 * the threads, and the conversions between events and stored messages.
 */
#ifndef CFX_BRIDGE_BRIDGE_INT_H
#define CFX_BRIDGE_BRIDGE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "bridge/bridge.h"
#include "events/pattern.h"
#include "events/transform.h"

#define BRIDGE_FILE "eventbridge.json"
#define BRIDGE_VERSION 1
#define BUS_QUEUES 8
#define BUSES_MAX 1000
#define RULES_MAX 100000	   /* over all buses */
#define RULE_TARGETS_MAX 5	   /* as AWS */
#define TARGETS_MAX 1000
#define CONCURRENCY_MAX 64
#define QUEUE_MAX_DEFAULT 100000
#define ROUTE_BATCH 64		   /* events the router pops per bus and round */

/* Property names of deliveries (their other properties are the event's). */
#define PROP_RULE "eb_rule"
#define PROP_BUS "eb_bus"
#define PROP_TIME "eb_time"
#define PROP_ERROR "eb_error"
#define PROP_ATTEMPTS "eb_attempts"
#define PROP_CONTENT_TYPE "content-type"
#define CE_PREFIX "ce_"

enum target_type { T_HTTP, T_BUS, T_TOPIC, T_MQTT };
enum retry_strategy { RETRY_EXPONENTIAL, RETRY_BACKOFF };

struct retry {
	enum retry_strategy strategy;
	int64_t initial_ms, max_ms, interval_ms, max_age_ms;
	uint32_t max_attempts;
};

struct target;

/* A rule's use of a target (looked up by name when an event matches). */
struct rule_target {
	char name[CFX_BRIDGE_NAME_MAX + 1];
	struct cfx_transform *tf;	/* NULL = the original event */
};

struct rule {
	char name[CFX_BRIDGE_NAME_MAX + 1];
	json_t *def;			/* as given (normalized), for get/list and saving */
	int enabled;
	uint32_t id;			/* in the bus's pattern set */
	struct rule_target targets[RULE_TARGETS_MAX];
	uint32_t ntargets;
};

struct bus {
	char name[CFX_BRIDGE_NAME_MAX + 1];
	json_t *def;
	struct rule **rules;
	uint32_t nrules, cap;
	uint32_t next_id;
	struct cfx_pattern_set *ps;	/* the enabled rules, compiled */
	char group[CFX_BRIDGE_NAME_MAX + 16]; /* the router's: %SYS%EB%R%<bus> */
	uint64_t watch;			/* the router's wake-up, 0 = none */
};

struct target {
	char name[CFX_BRIDGE_NAME_MAX + 1];
	json_t *def;
	enum target_type type;
	/* http */
	char host[256];
	int port;
	struct ssl_ctx_st *ssl_ctx;	/* https: the client TLS context; NULL = http */
	char path[2048];
	int structured;
	char *extra_headers;		/* "Name: value\r\n"..., with the auth header */
	int64_t timeout_ms;
	/* bus, topic, mqtt */
	char dest[256];
	struct retry retry;
	char dlq[CFX_BRIDGE_NAME_MAX + 32];
	char topic[CFX_BRIDGE_NAME_MAX + 16];	/* its deliveries: %SYS%EB%T%<name> */
	uint32_t concurrency;
	uint64_t queue_max;
	/* workers */
	struct cfx_bridge *b;
	pthread_t *threads;
	uint32_t nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop, woken;
	_Atomic uint64_t delivered, retried, dead;
};

struct replay_req {
	struct replay_req *next;
	char bus[CFX_BRIDGE_NAME_MAX + 1];
	char rule[CFX_BRIDGE_NAME_MAX + 1]; /* "" = all */
	int64_t from_ms, to_ms;
	cfx_bridge_replay_fn fn;
	void *arg;
};

struct cfx_bridge {
	struct cfx_bridge_opts o;
	char dir[4096];
	char mqtt_topic[256];
	struct cfx_broker *br;
	pthread_rwlock_t lock;		/* buses, rules, targets */
	struct bus **buses;
	uint32_t nbuses, cap_buses;
	struct target **targets;
	uint32_t ntargets, cap_targets;
	uint32_t nrules_total;
	/* the router */
	pthread_t router;
	pthread_mutex_t rmu;
	pthread_cond_t rcv;
	int rstop, rwoken, started;
	struct replay_req *replays;
	_Atomic uint64_t events_in, events_routed, matches;
};

/* meta.c: definitions (callers hold b->lock as each says) */
int bridge__load(struct cfx_bridge *b);
int bridge__save(struct cfx_bridge *b); /* @locks write */
struct bus *bridge__bus_find(struct cfx_bridge *b, const char *name);
struct target *bridge__target_find(struct cfx_bridge *b, const char *name);
void bridge__bus_free(struct bus *bus);
void bridge__target_free(struct target *t);
int bridge__bus_add(struct cfx_bridge *b, json_t *def, char *err, size_t err_len); /* @locks write */

/* bridge.c: events and messages */
/* The event of a stored message (Kafka binding properties); 0 or an error. */
int bridge__event_of_msg(const struct cfx_msg_view *v, const struct cfx_ce_limits *lim,
			 struct cfx_ce *out, char *err, size_t err_len);
/* A message's properties that are not the event's (eb_*), looked up by name. */
struct cfx_view bridge__prop(const struct cfx_msg_view *v, const char *name);
/* Sends n messages to topic synchronously (waits for the store). */
int bridge__send_sync(struct cfx_bridge *b, struct cfx_view topic, const struct cfx_send_msg *msgs,
		      uint32_t n);

#define MB_PROPS_MAX 80

/* A message under construction: properties and the bytes they point into. */
struct msg_builder {
	struct cfx_prop props[MB_PROPS_MAX]; /* valid after mb_finish */
	struct { size_t no, nl, vo, vl; } ent[MB_PROPS_MAX];
	uint32_t nprops;
	char *bytes;			/* one arena for names and values */
	size_t used, cap;
	int full;			/* a property did not fit */
};
void mb_init(struct msg_builder *mb);
void mb_free(struct msg_builder *mb);
void mb_add(struct msg_builder *mb, const char *name, size_t nlen, const char *value, size_t vlen);
/* Adds the event's attributes as Kafka-binding properties (ce_*, content-type). */
void mb_add_event(struct msg_builder *mb, const struct cfx_ce *ce);
/* The views of the properties, once every mb_add is done (the arena no longer moves). */
void mb_finish(struct msg_builder *mb);

/* router.c */
int bridge__router_start(struct cfx_bridge *b);
void bridge__router_stop(struct cfx_bridge *b);
void bridge__router_wake(struct cfx_bridge *b);

/* deliver.c */
int bridge__target_start(struct cfx_bridge *b, struct target *t);
void bridge__target_stop(struct target *t);
/* The next delay of a retry policy after `attempt` failed attempts. */
int64_t bridge__retry_delay(const struct retry *r, uint32_t attempt);

#endif
