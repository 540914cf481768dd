/*
 * stats.h - traffic counters of the broker, per topic: messages and body
 * bytes sent in (appended to the store) and delivered out (handed to a
 * consumer by POP, redeliveries included).
 *
 * Counters start at zero when the broker opens and only grow; they are
 * what /metrics exports as conflux_topic_*_total (docs/metrics.md). A topic
 * gets its counters on its first message; deleting the topic does not
 * reset them, so a topic created again under the same name continues them,
 * as a Prometheus counter must.
 *
 * Counting costs a hash of the topic name, a walk of a short chain and
 * two relaxed atomic adds; nothing takes a lock.
 */
#ifndef CFX_BROKER_STATS_H
#define CFX_BROKER_STATS_H

#include "broker/broker.h"

struct cfx_topic_traffic {
	uint64_t msgs_in;   /* messages appended */
	uint64_t bytes_in;  /* their body bytes */
	uint64_t msgs_out;  /* messages delivered by POP (each delivery attempt) */
	uint64_t bytes_out; /* their body bytes */
};

/*
 * Copies the counters of `topic`. Returns 0, or CFX_ENOENT (all zero) if
 * no message of it was sent or delivered since the broker opened.
 * @thread any
 */
int cfx_broker_topic_traffic(struct cfx_broker *br, struct cfx_view topic,
			     struct cfx_topic_traffic *out);

/*
 * Calls fn once for every topic that has counters, in no particular order.
 * `topic` is valid during the call; counters keep moving meanwhile, so each
 * copy is a snapshot of its own. fn may call into the broker. @thread any
 */
void cfx_broker_traffic_foreach(struct cfx_broker *br,
				void (*fn)(void *arg, struct cfx_view topic,
					   const struct cfx_topic_traffic *t),
				void *arg);

#endif
