/*
 * kafka_int.h - shared by the files of the Kafka front end only.
 */
#ifndef CFX_PROTO_KAFKA_KAFKA_INT_H
#define CFX_PROTO_KAFKA_KAFKA_INT_H

#include "base/buf.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/kafka/codec.h"
#include "proto/kafka/kafka.h"

struct kf_fetch;

/* Bytes of a response sent by reference (from the store's mapping) at
 * position `at` of the response's own bytes. */
struct kf_ref {
	size_t at;
	const uint8_t *p;
	size_t len;
};

/* This broker's node id (Metadata, DescribeCluster) and the leader epoch of
 * every partition: one node has led each partition since its creation. */
#define KF_NODE_ID 0
#define KF_LEADER_EPOCH 0

/* One request in a connection's queue. */
struct kreq {
	struct kreq *next;
	struct kconn *kc;	 /* NULL once the connection is gone */
	struct kf_req_header h;	 /* views into the frame: valid during the handler only */
	int flex;		 /* the flexible encoding */
	struct cfx_writer out;	 /* the framed response */
	int ready;		 /* out is complete (or silent) */
	int silent;		 /* acks=0 Produce: no response */
	int pending;		 /* work still out (completion frees an orphan) */
	struct kf_fetch *fetch;	 /* a Fetch waiting for data */
	struct kf_ref *refs;	 /* parts of the response not copied into out */
	uint32_t nrefs, caprefs;
	size_t ref_bytes;
	void (*release)(void *arg); /* releases what refs point into */
	void *release_arg;
};

struct kf_sasl;

struct kconn {
	struct cfx_conn *c;
	struct kafka_service *svc;
	struct cfx_writer in; /* bytes of requests not handled yet */
	struct kreq *head, *tail;
	uint32_t inflight;
	char *user;	       /* signed in as (SASL); NULL = anonymous */
	int authed;	       /* a SASL exchange succeeded */
	struct kf_sasl *sasl;  /* an exchange under way */
};

/* api_sasl.c: signing in and permissions (docs/security.md) */
void kf_sasl_handshake(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_sasl_authenticate(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_sasl_free(struct kconn *kc);
/* Whether users exist (then policies apply). */
bool kf_auth_on(const struct kafka_service *svc);
/* Whether the connection may send requests other than ApiVersions and SASL ones. */
bool kf_signed_in_enough(const struct kconn *kc);
/* KF_ERR_NONE, or the *_AUTHORIZATION_FAILED code of `res` (the denial is counted). */
int16_t kf_authorize(struct kconn *kc, enum cfx_auth_resource res, struct cfx_view name,
		     unsigned action);
/* The same question without counting a denial (what a listing leaves out). */
bool kf_may(struct kconn *kc, enum cfx_auth_resource res, struct cfx_view name, unsigned action);

/* server.c */
void kconn_flush(struct kconn *kc);
void kreq_done(struct kreq *r);
size_t kreq_begin(struct kreq *r);
/* Closes the connection of a request whose body does not decode. */
void kafka__bad_request(struct kconn *kc, struct kreq *r, const char *api);
/* A NUL-terminated copy of a view. */
char *kafka__vdup(struct cfx_view v);
/* Appends n bytes at p to the response by reference (see struct kf_ref). */
void kreq_add_ref(struct kreq *r, const uint8_t *p, size_t n);
/* Ends a response begun with kreq_begin: its size counts the references. */
void kreq_end(struct kreq *r, size_t start);

/* api.c: the handlers; each reads its request body from `rd` and either
 * completes the slot (kreq_done) or leaves work pending. */
void kf_metadata(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_list_offsets(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_produce(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_fetch(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_create_topics(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_delete_topics(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_fetch_cancel(struct kreq *r);

/* group.c: the group coordinator and committed offsets. */
struct kafka_coord *kafka_coord_new(struct kafka_service *svc);
void kafka_coord_stop(struct kafka_coord *co);
void kafka_coord_free(struct kafka_coord *co);
void kf_find_coordinator(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_join_group(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_sync_group(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_heartbeat(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_leave_group(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_offset_commit(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_offset_fetch(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_list_groups(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_describe_groups(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_fetch_free(struct kf_fetch *f);

/* api_init_producer_id.c: InitProducerId (idempotent producers; no transactions). */
void kf_init_producer_id(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);

/* api_admin.c: CreatePartitions, DescribeConfigs, DescribeCluster and
 * OffsetForLeaderEpoch; each answers at once (kreq_done). */
void kf_create_partitions(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_describe_configs(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_describe_cluster(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);
void kf_offset_for_leader_epoch(struct kconn *kc, struct kreq *r, struct cfx_reader *rd);

#endif
