/*
 * kafka.h - the Kafka wire protocol front end (docs/design/kafka.md).
 *
 * A listener protocol (kafka_conn_proto) on the net layer: framing,
 * requests answered in order per connection, and the APIs served so far:
 * ApiVersions, Metadata, Produce, ListOffsets, Fetch, CreateTopics,
 * DeleteTopics, and the admin APIs of api_admin.c: CreatePartitions,
 * DescribeConfigs, DescribeCluster and OffsetForLeaderEpoch; and
 * InitProducerId for idempotent producers (api_init_producer_id.c, with the
 * sequence state of producers.c; no transactions). Every other API
 * is left out of ApiVersions; a client that sends one anyway is
 * disconnected (its response format is not known to be errorable).
 */
#ifndef CFX_PROTO_KAFKA_KAFKA_H
#define CFX_PROTO_KAFKA_KAFKA_H

#include <stdint.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "net/conn.h"

struct kafka_opts {
	const char *advertised_host; /* host in Metadata; NULL = the listener's */
	int advertised_port;	     /* port in Metadata; 0 = the listener's */
	size_t request_bytes_max;    /* larger frames close the connection */
	uint32_t inflight_max;	     /* requests in flight per connection before reading pauses */
	const char *cluster_id;
	uint32_t default_partitions; /* CreateTopics with num_partitions -1 */
	uint32_t group_initial_delay_ms; /* a new group waits this long for more members */
	struct cfx_auth *auth;	     /* users and policies (borrowed); NULL = no SASL */
};

struct kafka_coord;
struct kf_producers;

struct kafka_service {
	struct kafka_opts o;
	struct cfx_broker *br;
	char host[256];
	int port;
	struct kafka_coord *coord; /* the group coordinator (group.c) */
	struct kf_producers *producers; /* producer ids and sequences (producers.c) */
};

void kafka_opts_default(struct kafka_opts *o);
/* `br` is borrowed. The listener's proto_arg is the service. */
struct kafka_service *kafka_service_new(struct cfx_broker *br, const struct kafka_opts *o);
/* The address Metadata advertises when none is configured (after binding). */
void kafka_service_set_address(struct kafka_service *svc, const char *host, int port);
/* Stops the group coordinator's thread: after the loops stop, before they are freed. */
void kafka_service_stop(struct kafka_service *svc);
void kafka_service_free(struct kafka_service *svc);

extern const struct cfx_conn_proto kafka_conn_proto;

#endif
