/*
 * bridge.h - the EventBridge runtime: buses, rules, targets, ingress,
 * routing, delivery with retries and dead letters, pull, replay.
 *
 * Design and flow: docs/design/eventbridge.md. A bus is a topic of the same
 * name; an event is one message (body = data, `ce_<attr>` properties, the
 * `content-type` property). Definitions are JSON objects, as the admin API
 * and `conflux` speak them (shapes in docs/eventbridge.md); they live in
 * meta/eventbridge.json.
 *
 * @thread any: every function takes the bridge's own locks; callbacks say
 * which thread they run on.
 */
#ifndef CFX_BRIDGE_BRIDGE_H
#define CFX_BRIDGE_BRIDGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "events/cloudevent.h"

struct cfx_bridge;

#define CFX_BRIDGE_NAME_MAX 100	     /* bytes of a bus, rule or target name */
#define CFX_BRIDGE_DEFAULT_BUS "default"
#define CFX_BRIDGE_PULL_MAX 100	     /* events in one pull */

struct cfx_bridge_opts {
	struct cfx_broker *br;		 /* borrowed; outlives the bridge */
	const char *dir;		 /* where eventbridge.json lives (meta/) */
	enum cfx_durability durability;	 /* of stored events and deliveries */
	struct cfx_ce_limits limits;	 /* ingress validation */
	int64_t webhook_timeout_ms;	 /* default timeout of an HTTP delivery */
	const char *mqtt_topic;		 /* the Conflux topic of MQTT traffic (mqtt.topic); copied */
};

void cfx_bridge_opts_default(struct cfx_bridge_opts *o);
/* Loads the definitions, creates the default bus, starts the router and the targets' workers. */
int cfx_bridge_open(const struct cfx_bridge_opts *o, struct cfx_bridge **out);
/* Stops the threads (deliveries in flight finish or stay pending). Before the broker closes. */
void cfx_bridge_stop(struct cfx_bridge *b);
void cfx_bridge_free(struct cfx_bridge *b);

/* ------------------------------------------------------------------------
 * Definitions. `def` is borrowed (the caller keeps its reference).
 * Create/put validate `def` fully before any change; on
 * CFX_EINVAL `err` says what is wrong ("pattern: data.amount: ..."). Get and
 * list return new references (NULL: no such thing).
 * ------------------------------------------------------------------------ */

/* Bus: {"name", "description"?}. Creates its topic too. CFX_EEXIST, CFX_EINVAL. */
int cfx_bridge_bus_create(struct cfx_bridge *b, json_t *def, char *err, size_t err_len);
/* Deletes a bus and its rules (not its topic: the events stay readable). CFX_ENOENT; the default bus cannot go (CFX_EINVAL). */
int cfx_bridge_bus_delete(struct cfx_bridge *b, const char *name);
json_t *cfx_bridge_bus_get(struct cfx_bridge *b, const char *name);
json_t *cfx_bridge_bus_list(struct cfx_bridge *b);
bool cfx_bridge_bus_exists(struct cfx_bridge *b, const char *name);

/*
 * Rule of a bus: {"name", "description"?, "enabled"? (true), "pattern":
 * {...}, "targets": [{"target": NAME, "transform"?: {...}}]} (targets
 * must exist). `create` 1: CFX_EEXIST if it exists; 0: create or replace.
 */
int cfx_bridge_rule_put(struct cfx_bridge *b, const char *bus, json_t *def, int create, char *err,
			size_t err_len);
int cfx_bridge_rule_delete(struct cfx_bridge *b, const char *bus, const char *name);
json_t *cfx_bridge_rule_get(struct cfx_bridge *b, const char *bus, const char *name);
json_t *cfx_bridge_rule_list(struct cfx_bridge *b, const char *bus);

/*
 * Target: {"name", "type": "http"|"bus"|"topic"|"mqtt", then by type:
 *   http:  "url" ("http[s]://host[:port]/path"), "ca_file"? (https: PEM CAs to trust
 *          instead of the system's), "mode"? ("binary"|"structured"),
 *          "headers"? {name: value}, "auth"? {"type": "basic", "user", "password"} |
 *          {"type": "api_key", "header", "value"}, "timeout_ms"?
 *   bus:   "bus"; topic: "topic"; mqtt: "mqtt_topic"
 * and for all: "retry"? {"strategy": "exponential"|"backoff", "initial_ms",
 * "max_ms", "interval_ms", "max_attempts", "max_age_ms"},
 * "dead_letter_topic"?, "concurrency"? (1..64, default 4), "queue_max"?}.
 * Get adds "stats": {"pending", "delivered", "retried", "dead_lettered"}.
 * Deleting a target used by a rule: CFX_EBUSY-like CFX_EEXIST.
 */
int cfx_bridge_target_put(struct cfx_bridge *b, json_t *def, int create, char *err, size_t err_len);
int cfx_bridge_target_delete(struct cfx_bridge *b, const char *name);
json_t *cfx_bridge_target_get(struct cfx_bridge *b, const char *name);
json_t *cfx_bridge_target_list(struct cfx_bridge *b);

/* ------------------------------------------------------------------------
 * Ingress, pull, replay, test
 * ------------------------------------------------------------------------ */

/* Called once, on any thread, when the events are stored (err 0) or not. */
typedef void (*cfx_bridge_done_fn)(void *arg, int err);

/*
 * Stores `n` events (borrowed until return) in `bus`, all or none. Returns
 * 0 (done is called exactly once, maybe before returning), CFX_ENOENT (no
 * such bus), or another error without calling done.
 */
int cfx_bridge_put(struct cfx_bridge *b, const char *bus, const struct cfx_ce *ces, size_t n,
		   cfx_bridge_done_fn done, void *arg);

/*
 * Takes up to `max` events of `bus` for consumer group `group` (created on
 * first use; starts at the end of the bus), acknowledged at once: each
 * event goes to one pull of the group. Never blocks: *n = 0 means none now
 * (wait with cfx_bridge_watch). Events are new cfx_ce (cfx_ce_batch_free).
 * Returns 0, CFX_ENOENT (no bus), CFX_EINVAL (bad group name).
 */
int cfx_bridge_pull(struct cfx_bridge *b, const char *bus, const char *group, uint32_t max,
		    struct cfx_ce **out, size_t *n);
/* One-shot wake-up when `group` may have events on `bus` (cfx_broker_watch);
 * 0 when no watch was registered. */
uint64_t cfx_bridge_watch(struct cfx_bridge *b, const char *bus, const char *group,
			  void (*fn)(void *arg), void *arg);
/* Cancels a watch; returns 1 if it had not fired (fn will not be called). */
int cfx_bridge_unwatch(struct cfx_bridge *b, uint64_t id);
/* The ingress limits the bridge was opened with (eventbridge.event_bytes_max...). */
const struct cfx_ce_limits *cfx_bridge_limits(const struct cfx_bridge *b);

/* Result of a replay: events read and deliveries enqueued. */
typedef void (*cfx_bridge_replay_fn)(void *arg, int err, uint64_t events, uint64_t deliveries);
/*
 * Routes the events `bus` stored from `from_ms` to `to_ms` again, through
 * every enabled rule or only `rule` (NULL). Runs on the router thread; fn
 * is called there when done. Returns 0 or CFX_ENOENT (bus or rule).
 */
int cfx_bridge_replay(struct cfx_bridge *b, const char *bus, int64_t from_ms, int64_t to_ms,
		      const char *rule, cfx_bridge_replay_fn fn, void *arg);

/*
 * Whether `pattern` (JSON text) matches `event` (a CloudEvent in the JSON
 * format, validated). Returns 0 with *match and, when it does not match,
 * the first reason in `why`; CFX_EINVAL with the problem of the pattern or
 * the event in `why`.
 */
int cfx_bridge_rule_test(const char *pattern, size_t plen, const char *event, size_t elen,
			 bool *match, char *why, size_t why_len);

/* Counters for /metrics. */
struct cfx_bridge_stats {
	uint64_t events_in;	  /* stored by cfx_bridge_put */
	uint64_t events_routed;	  /* acknowledged by the router */
	uint64_t matches;	  /* (event, rule) pairs */
	uint64_t delivered, retried, dead_lettered;
};
void cfx_bridge_stats(struct cfx_bridge *b, struct cfx_bridge_stats *out);

#endif
