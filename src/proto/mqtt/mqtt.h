/*
 * mqtt.h - the MQTT 3.1.1 and 5.0 front end (docs/design/mqtt.md).
 *
 * A listener protocol (mqtt_conn_proto) on the net layer. Every PUBLISH is
 * a stored message of one Conflux topic (`mqtt` by default); a fan-out
 * thread tails that topic and delivers each message to the matching
 * sessions, so messages sent to it over any protocol reach MQTT
 * subscribers. Persistent sessions and retained messages are light queues
 * (broker/lq.h) in <data dir>/mqtt.
 */
#ifndef CFX_PROTO_MQTT_MQTT_H
#define CFX_PROTO_MQTT_MQTT_H

#include <stdint.h>

#include "base/buf.h"
#include "broker/auth.h"
#include "broker/broker.h"
#include "net/conn.h"

struct mqtt_opts {
	const char *topic;	      /* the Conflux topic of all MQTT traffic */
	uint32_t queues;	      /* its queues when created */
	uint32_t session_queue_max;   /* messages an offline session keeps */
	uint16_t receive_max;	      /* QoS 1/2 from one client in flight (announced) */
	uint16_t inflight_max;	      /* QoS 1/2 in flight to one client */
	uint32_t packet_bytes_max;    /* larger packets close the connection */
	uint16_t keep_alive_max_s;    /* 0: the client's */
	uint32_t session_expiry_max_s; /* cap on a session's expiry */
	enum cfx_durability durability; /* of QoS 1/2 publishes before their acknowledgement */
	struct cfx_auth *auth;	      /* users and policies (borrowed); NULL = none */
};

struct mqtt_service;

void mqtt_opts_default(struct mqtt_opts *o);
/* Opens the front end's state (light queues in <dir>); `br` is borrowed.
 * Starts the fan-out thread. The listener's proto_arg is the service. */
int mqtt_service_new(struct cfx_broker *br, const char *dir, const struct mqtt_opts *o,
		     struct mqtt_service **out);
/* Stops the fan-out and tick threads: after the loops stop, before they are freed. */
void mqtt_service_stop(struct mqtt_service *svc);
void mqtt_service_free(struct mqtt_service *svc);

/* Appends the MQTT metrics (Prometheus text, docs/metrics.md). @thread any */
void mqtt_service_metrics(void *svc, struct cfx_writer *out);

extern const struct cfx_conn_proto mqtt_conn_proto;

#endif
