/*
 * mqtt_int.h - shared by the files of the MQTT front end only.
 */
#ifndef CFX_PROTO_MQTT_MQTT_INT_H
#define CFX_PROTO_MQTT_MQTT_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/buf.h"
#include "broker/lq.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/mqtt/mqtt.h"
#include "proto/mqtt/packet.h"
#include "proto/mqtt/topic_tree.h"

/* Properties of an MQTT message in the store (docs/design/mqtt.md). */
#define MQTT_PROP_TOPIC "MQTT_TOPIC"
#define MQTT_PROP_QOS "MQTT_QOS"
#define MQTT_PROP_RETAIN "MQTT_RETAIN"
#define MQTT_PROP_CONTENT_TYPE "MQTT_CONTENT_TYPE"
#define MQTT_PROP_RESPONSE_TOPIC "MQTT_RESPONSE_TOPIC"
#define MQTT_PROP_CORRELATION "MQTT_CORRELATION_DATA"
#define MQTT_PROP_PAYLOAD_FORMAT "MQTT_PAYLOAD_FORMAT"
#define MQTT_PROP_CLIENT_ID "MQTT_CLIENT_ID" /* the publisher (no local) */

#define MQTT_SUB_IDS_PER_DELIVERY 8 /* subscription ids carried per message */
#define MQTT_SYS_TOPICS 16	    /* $SYS/broker/... values */
#define MQTT_SYS_INTERVAL_MS 10000  /* how often they are published */
#define MQTT_MSG_USER_PROPS_MAX 64

/* A stored message as the fan-out read it, shared by its deliveries. */
struct mmsg {
	atomic_uint refs;
	struct cfx_view topic, payload, content_type, response_topic, correlation, publisher;
	struct mqtt_user_prop *user; /* in buf */
	uint32_t nuser;
	uint8_t qos, retain, has_format, format;
	int64_t expires_ms;	/* wall clock; 0 = never */
	int64_t store_ms;	/* when it was stored; 0 = not stored */
	uint32_t queue;		/* where it is stored */
	uint64_t offset;
	uint8_t *buf;		/* the bytes the views point into */
};

struct mmsg *mmsg_of_view(const struct cfx_msg_view *v, uint32_t queue);
void mmsg_ref(struct mmsg *m);
void mmsg_unref(struct mmsg *m);

/* A subscription a session holds (for the tree, persistence and takeover). */
struct msub {
	char *filter;
	struct mqtt_sub opts; /* session pointer, qos, options, sub id */
};

/* A message waiting to be sent to an online session (clean sessions, and
 * QoS 0 of persistent ones). */
struct outmsg {
	struct mmsg *m;
	uint8_t qos, retain;
	uint8_t nsub;
	uint32_t sub_ids[MQTT_SUB_IDS_PER_DELIVERY];
};

/* A QoS 1/2 message sent and not completed yet. */
struct inflight {
	uint16_t pid;
	uint8_t qos;
	uint8_t released;   /* QoS 2: PUBREC came, PUBREL sent */
	struct outmsg o;    /* o.m NULL for a persistent session's entry after a restart */
	uint64_t lq_seq;    /* its light-queue entry, 0 if none */
};

/* A last will, copied out of its CONNECT: sent when the connection ends
 * badly, at once or after its will delay (MQTT 5) unless the session
 * resumes first. */
struct mwill {
	struct cfx_view topic, payload;
	struct mqtt_props props; /* views into buf (MQTT 5 will properties) */
	uint8_t qos, retain, version;
	uint32_t delay_s;
	int64_t due_ms;		 /* monotonic, while it waits */
	uint8_t *buf;
};

struct mwill *mqtt_will_new(const struct mqtt_connect *cn);
void mqtt_will_free(struct mwill *w);
/* Stores the will (no acknowledgement to anyone); frees it. @thread any */
void mqtt_will_send(struct mqtt_service *svc, struct mwill *w, const char *client_id);

struct mconn;

struct msession {
	/* Fields are ordered by size: a broker holds one per client. */
	struct msession *next; /* hash chain */
	struct mqtt_service *svc;
	pthread_mutex_t mu;
	char *client_id;
	int64_t gone_ms;	/* monotonic time it went offline; 0 while online */
	struct mconn *conn;	/* online: its connection, valid on `loop` */
	struct cfx_loop *loop;
	struct cfx_conn_handle *h; /* that connection's handle, counted on its loop */
	struct msub *subs;
	uint64_t lq_next;	/* next entry not sent yet */
	struct outmsg *outq;	/* ring */
	struct inflight *infl;
	uint16_t *qos2_in;	/* inbound QoS 2 packet ids until PUBREL */
	uint64_t dropped;
	struct mwill *will;	/* a delayed will waiting to be sent */
	/* the fan-out thread's own: the message it last added this session for */
	uint64_t fo_serial;
	atomic_uint refs;
	uint32_t expiry_s;	/* after the connection ends */
	uint32_t max_packet;	/* the client's maximum packet size; 0 = none */
	uint32_t nsubs, capsubs;
	uint32_t lq;		/* persistent: its light queue */
	uint32_t out_head, out_n, out_cap;
	uint32_t ninfl, capinfl;
	uint32_t nqos2, capqos2;
	uint32_t fo_idx;
	uint16_t recv_max;	/* the client's receive maximum */
	uint16_t next_pid;
	uint8_t persistent;	/* survives its connection (a light queue) */
	uint8_t ended;		/* removed from the table */
	uint8_t version;
	uint8_t pump_posted;
};

struct mqtt_service {
	struct mqtt_opts o;
	struct cfx_broker *br;
	struct cfx_store *st;
	char *topic;
	uint32_t queues;
	char *dir;
	struct mqtt_tree *tree;
	struct cfx_lqs *lqs;
	struct mqtt_retained *retained;
	/* sessions */
	pthread_mutex_t mu;
	struct msession **tab;
	uint32_t tab_cap, nsessions;
	int jfd;			/* sessions journal */
	int jfd_ready;			/* replayed: subscriptions now are new ones */
	uint64_t next_client_no;
	/* fan-out and tick threads */
	pthread_t fanout_thr, tick_thr;
	pthread_mutex_t fo_mu;
	pthread_cond_t fo_cv;
	int fo_woken, stop, started;
	atomic_ullong published, delivered, dropped, connects;
	atomic_uint online;		/* connected clients */
	int64_t start_mono_ms;
	/* $SYS topics: current values, kept in memory (not stored) */
	pthread_mutex_t sys_mu;
	struct mmsg *sys[MQTT_SYS_TOPICS];
	uint32_t nsys;
};

/* session.c */
int mqtt_sessions_open(struct mqtt_service *svc);
void mqtt_sessions_close(struct mqtt_service *svc);
/* Takes the session of client_id (creating or resetting it) for a new
 * connection; *present says whether earlier state was kept. */
struct msession *mqtt_session_attach(struct mqtt_service *svc, struct cfx_view client_id,
				     int clean, uint32_t expiry_s, int version, struct mconn *mc,
				     struct cfx_conn_handle *h, struct cfx_loop *loop, int *present,
				     struct cfx_conn_handle **old_h, struct cfx_loop **old_loop);
/* The connection went away (graceful or not). */
void mqtt_session_detach(struct mqtt_service *svc, struct msession *s, struct mconn *mc);
void msession_unref(struct mqtt_service *svc, struct msession *s);
int mqtt_session_subscribe(struct mqtt_service *svc, struct msession *s,
			   const struct mqtt_subscription *sub, uint32_t sub_id, int *existed);
int mqtt_session_unsubscribe(struct mqtt_service *svc, struct msession *s, struct cfx_view filter);
int mqtt_session_qos2_begin(struct mqtt_service *svc, struct msession *s, uint16_t pid);
int mqtt_session_qos2_end(struct mqtt_service *svc, struct msession *s, uint16_t pid);
/* The fan-out: hand a message to a session. */
void mqtt_session_deliver(struct mqtt_service *svc, struct msession *s, struct mmsg *m,
			  uint8_t qos, uint8_t retain, const uint32_t *sub_ids, uint32_t nsub);
/* Expired sessions go (tick thread). */
void mqtt_sessions_expire(struct mqtt_service *svc, int64_t now_ms);
/* Sends what the session may send now; on its connection's loop. */
void mqtt_session_pump(struct mqtt_service *svc, struct msession *s);
/* An acknowledgement from the client (PUBACK, PUBREC, PUBCOMP). Returns 0 or
 * MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND. */
int mqtt_session_acked(struct mqtt_service *svc, struct msession *s, int type, uint16_t pid);
/* Retained messages matching a new subscription. */
void mqtt_session_send_retained(struct mqtt_service *svc, struct msession *s,
				struct cfx_view filter, uint8_t qos, uint32_t sub_id, int rap);
/* Reads the stored message at (queue, offset) of the MQTT topic. */
struct mmsg *mqtt_read_msg(struct mqtt_service *svc, uint32_t queue, uint64_t offset);

/* retained.c: the retained topics' names as a tree of levels. */
struct mqtt_retained;
struct mqtt_retained *mqtt_retained_new(void);
void mqtt_retained_free(struct mqtt_retained *r);
/* Records that `topic`'s retained message is light queue `id`. @thread any */
void mqtt_retained_add(struct mqtt_retained *r, struct cfx_view topic, uint32_t id);
/* Calls fn for the light queue of every retained topic `filter` matches
 * ($-topics not by a leading wildcard); fn must not call back in. */
void mqtt_retained_match(struct mqtt_retained *r, struct cfx_view filter,
			 void (*fn)(void *arg, uint32_t id), void *arg);

/* fanout.c */
/* Sends the current $SYS values matching a new subscription. */
void mqtt_sys_send(struct mqtt_service *svc, struct msession *s, struct cfx_view filter,
		   uint32_t sub_id);
void mqtt_sys_free(struct mqtt_service *svc);
#define MQTT_RETAINED_CLEARED 8 /* light-queue entry flag: a cleared retained message */
void mqtt_retain_update(struct mqtt_service *svc, struct cfx_view topic, uint8_t qos, int empty,
			uint32_t queue, uint64_t offset);
int mqtt_fanout_start(struct mqtt_service *svc);
void mqtt_fanout_stop(struct mqtt_service *svc);

/* server.c: sending on a connection (its loop). */
/* Returns 1 if sent, 0 if dropped (larger than the client's maximum packet size). */
int mqtt_conn_send_publish(struct mconn *mc, const struct outmsg *o, uint16_t pid, int dup);
void mqtt_conn_send_pubrel(struct mconn *mc, uint16_t pid);
int mqtt_conn_can_send(struct mconn *mc);
void mqtt_conn_kick(struct mconn *mc, int reason);

#endif
