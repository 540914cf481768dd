/*
 * broker.h - the broker core: topics, groups, sending, and POP consumption
 * (message-level load balancing with invisibility and acknowledgement).
 *
 * Plain C, protocol-neutral: the RocketMQ gRPC, Kafka and MQTT front ends
 * all call this API; nothing here knows a wire format. The broker owns
 * the store (src/store) and its own metadata:
 *
 *   meta/topics.json, meta/groups.json   replaced atomically on change
 *   pop/journal                          POP operations, CRC-framed (pop.c)
 *   pop/snapshot                         POP state, replaced atomically
 *   pop/secret                           key of the receipt-handle MACs
 *
 * Thread safety: every function may be called from any thread; calls that
 * complete later do so through a callback on another thread (the store's
 * flusher), which the caller posts back to its own loop.
 */
#ifndef CFX_BROKER_BROKER_H
#define CFX_BROKER_BROKER_H

#include "base/buf.h"
#include "store/store.h"

struct cfx_broker;

/* Message types (values as in RocketMQ's MessageType) and topic types. */
enum cfx_msg_type {
	CFX_MSG_NORMAL = 1,
	CFX_MSG_FIFO = 2,
	CFX_MSG_DELAY = 3,
	CFX_MSG_TRANSACTION = 4,
	CFX_TOPIC_MIXED = 5, /* a topic type only: accepts all four */
};

const char *cfx_msg_type_name(int type);
/* Parses "normal|fifo|delay|transaction|mixed"; 0 if unknown. */
int cfx_msg_type_parse(const char *s);

struct cfx_broker_opts {
	struct cfx_store_opts store;	/* the broker opens the store (dir = data directory) */
	int auto_create;		/* create topics (MIXED) and groups on first use */
	uint32_t default_queues;	/* queues of an auto-created topic */
	int64_t pop_flush_interval_ms;	/* fdatasync of the POP journal */
	uint64_t pop_journal_bytes_max;	/* snapshot and restart the journal past this */
	uint32_t inflight_max;		/* window of in-flight messages per group and queue */
};

void cfx_broker_opts_default(struct cfx_broker_opts *o);

/*
 * Opens the store (recovering it; `rec` may be NULL), then the broker's
 * metadata and POP state. Returns 0 or the store's or the broker's error.
 */
int cfx_broker_open(const struct cfx_broker_opts *o, struct cfx_broker **out,
		    struct cfx_store_recovery *rec);
/* Flushes POP state, closes the store and frees the broker. Returns the store's close result. */
int cfx_broker_close(struct cfx_broker *br);

struct cfx_store *cfx_broker_store(struct cfx_broker *br);

/* ------------------------------------------------------------------------
 * Topics
 * ------------------------------------------------------------------------ */

struct cfx_topic_info {
	char name[128];
	int type;	   /* enum cfx_msg_type, or CFX_TOPIC_MIXED */
	uint32_t queues;
	int64_t created_ms;
};

/* Returns 0, CFX_EEXIST, CFX_ETOPIC (bad name), CFX_EINVAL (type, queues). */
int cfx_broker_topic_create(struct cfx_broker *br, const char *name, int type, uint32_t queues);
/* Looks a topic up; with `create` and auto-creation on, creates a NORMAL... MIXED topic. */
int cfx_broker_topic_get(struct cfx_broker *br, struct cfx_view name, int create,
			 struct cfx_topic_info *info);
/* Changes the type, or grows the queue count (queues never shrink: data lives there). */
int cfx_broker_topic_update(struct cfx_broker *br, const char *name, int type, uint32_t queues);
/* Forgets the topic (its stored messages age out with retention). */
int cfx_broker_topic_delete(struct cfx_broker *br, const char *name);
void cfx_broker_topic_foreach(struct cfx_broker *br,
			      void (*fn)(void *arg, const struct cfx_topic_info *t), void *arg);

/* ------------------------------------------------------------------------
 * Groups
 * ------------------------------------------------------------------------ */

enum cfx_backoff { CFX_BACKOFF_EXPONENTIAL = 1, CFX_BACKOFF_CUSTOMIZED = 2 };

#define CFX_BACKOFF_STEPS_MAX 32

struct cfx_retry_policy {
	uint32_t max_attempts;	/* deliveries before the dead-letter queue */
	int kind;		/* enum cfx_backoff */
	int64_t initial_ms, max_ms;
	double multiplier;
	int64_t steps_ms[CFX_BACKOFF_STEPS_MAX]; /* CUSTOMIZED */
	uint32_t nsteps;
};

struct cfx_group_info {
	char name[128];
	int fifo;
	struct cfx_retry_policy retry;
	int64_t created_ms;
};

/* The default policy: RocketMQ's 1s 5s 10s 30s 1m ... 2h, 17 attempts. */
void cfx_retry_policy_default(struct cfx_retry_policy *p);
/* The back-off before delivery attempt `attempt` + 1 (attempt >= 1). */
int64_t cfx_retry_delay_ms(const struct cfx_retry_policy *p, uint32_t attempt);

int cfx_broker_group_create(struct cfx_broker *br, const struct cfx_group_info *g);
int cfx_broker_group_get(struct cfx_broker *br, struct cfx_view name, int create,
			 struct cfx_group_info *info);
int cfx_broker_group_update(struct cfx_broker *br, const struct cfx_group_info *g);
int cfx_broker_group_delete(struct cfx_broker *br, const char *name);
void cfx_broker_group_foreach(struct cfx_broker *br,
			      void (*fn)(void *arg, const struct cfx_group_info *g), void *arg);

/* Returns 1 if `name` is a valid group name (topic rules, up to 120 bytes). */
int cfx_group_name_is_valid(struct cfx_view name);

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */

/* A message to send: the store's message plus what decides its queue. */
struct cfx_send_msg {
	struct cfx_msg m;
	int type;		    /* enum cfx_msg_type */
	struct cfx_view group;	    /* message group (FIFO); empty = none */
	int64_t deliver_at_ms;	    /* DELAY: absolute delivery time */
};

struct cfx_send_result {
	int err;	     /* per message */
	uint32_t queue;
	uint64_t offset;
};

/* Called once per send with one result per message. @thread any */
typedef void (*cfx_send_cb)(void *arg, const struct cfx_send_result *res, uint32_t count);

/*
 * Sends `count` messages to `topic` (auto-created if allowed). The broker
 * chooses each message's queue: a message group hashes to a stable queue,
 * others go round-robin. Returns 0 (cb is called exactly once, maybe
 * before returning) or an error for the whole request without calling cb:
 * CFX_ENOENT (no such topic), CFX_ETOPIC, CFX_EINVAL (a message's type does
 * not fit the topic: see cfx_broker_send_check), CFX_EUNSUPPORTED (delayed
 * and transactional messages are not served yet).
 */
int cfx_broker_send(struct cfx_broker *br, struct cfx_view topic, const struct cfx_send_msg *msgs,
		    uint32_t count, enum cfx_durability durability, cfx_send_cb cb, void *arg);

/* Does a message of `msg_type` fit a topic of `topic_type`? */
int cfx_broker_type_accepts(int topic_type, int msg_type);

/* ------------------------------------------------------------------------
 * POP consumption
 * ------------------------------------------------------------------------ */

#define CFX_HANDLE_MAX 96 /* receipt handle text, NUL included */

struct cfx_sql_filter;

/* A message's time to live in ms after its born time, as a decimal
 * property: set by front ends (MQTT 5 message expiry); RocketMQ clients may
 * set the user property CFX_TTL_MS. Expired messages are not delivered. */
#define CFX_PROP_TTL_MS "__TTL_MS"

struct cfx_pop_req {
	struct cfx_view group;
	struct cfx_view topic;
	const char *const *tags; /* accepted tags; NULL = all ("*") */
	uint32_t ntags;
	const struct cfx_sql_filter *sql; /* SQL92 filter on properties; NULL = none */
	uint32_t max_msgs;
	int64_t invisible_ms;
};

struct cfx_popped {
	struct cfx_msg_view v;	    /* points into the store; valid until the result is released */
	uint32_t queue;
	uint32_t attempt;	    /* delivery attempt, 1 on first delivery */
	int64_t pop_ms;
	char handle[CFX_HANDLE_MAX]; /* receipt handle */
};

struct cfx_pop_result {
	struct cfx_popped *msgs;
	uint32_t count, cap;
	struct cfx_read_result rd[8]; /* keeps the segments the views point into */
	uint32_t nrd;
};

void cfx_pop_result_init(struct cfx_pop_result *r);
void cfx_pop_result_free(struct cfx_pop_result *r);

/*
 * Takes up to max_msgs messages of `topic` for `group`: messages whose
 * invisibility expired first (attempt + 1), then new ones, over all queues.
 * Never blocks; 0 messages means nothing is available now (the caller may
 * wait with cfx_broker_watch). Returns 0 or CFX_ENOENT (no topic/group),
 * CFX_EINVAL. `res` is reset first.
 */
int cfx_broker_pop(struct cfx_broker *br, const struct cfx_pop_req *req,
		   struct cfx_pop_result *res);

/*
 * Registers `group` as a consumer of `topic`: queues it has no position on
 * yet start at their end (messages sent from now on). Idempotent.
 */
int cfx_broker_subscribe(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic);

/*
 * Acknowledges a message: removes it from the group's in-flight set.
 * Returns 0, or CFX_EINVAL for a handle that is malformed, forged, of
 * another group or topic, expired, or superseded (redelivered or changed).
 */
int cfx_broker_ack(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		   const char *handle);

/*
 * Makes an in-flight message invisible for `invisible_ms` from now (0 =
 * visible at once, a negative acknowledgement) and writes its new handle
 * into `new_handle` (CFX_HANDLE_MAX bytes). Errors as cfx_broker_ack.
 */
int cfx_broker_change_invisible(struct cfx_broker *br, struct cfx_view group,
				struct cfx_view topic, const char *handle, int64_t invisible_ms,
				char *new_handle);

/*
 * Moves an in-flight message to the group's dead-letter queue
 * (`%DLQ%<group>`, created on demand, one queue), with properties
 * DLQ_ORIGIN_TOPIC and DLQ_ORIGIN_MESSAGE_ID, then acknowledges it. `cb`
 * gets one result (the stored copy's queue and offset). Errors as
 * cfx_broker_ack, or the store's.
 */
int cfx_broker_forward_dlq(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			   const char *handle, enum cfx_durability durability, cfx_send_cb cb,
			   void *arg);

/*
 * Long polling: calls fn(arg) (on the dispatcher or timer thread) the next
 * time a message may have become available to `group` on `topic`: a new
 * message dispatched, or an in-flight one becoming visible. One-shot;
 * returns a watch id for cfx_broker_unwatch.
 */
uint64_t cfx_broker_watch(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			  void (*fn)(void *arg), void *arg);
/* Cancels a watch; returns 1 if it had not fired. */
int cfx_broker_unwatch(struct cfx_broker *br, uint64_t id);

/* Consume progress of a group on one queue. */
struct cfx_group_queue_state {
	uint64_t committed;  /* everything below is acknowledged */
	uint64_t next;	     /* next offset never delivered */
	uint32_t inflight;
	uint64_t end;	     /* the queue's end offset */
};
int cfx_broker_group_queue_state(struct cfx_broker *br, struct cfx_view group,
				 struct cfx_view topic, uint32_t queue,
				 struct cfx_group_queue_state *st);

/*
 * Calls fn for every (topic, queue) on which `group` has a position, or, if
 * group.p is NULL, for every position of every group; in no particular
 * order. `end` is the queue's end offset now; the lag is end - committed.
 * fn runs under the broker's POP lock: it must be quick and must not call
 * into the broker; the strings are valid during the call. @thread any
 */
void cfx_broker_group_positions(struct cfx_broker *br, struct cfx_view group,
				void (*fn)(void *arg, const char *group, const char *topic,
					   uint32_t queue, const struct cfx_group_queue_state *st),
				void *arg);

/* Moves a group's position on every queue of a topic to `offset` (or to the time). */
int cfx_broker_group_reset(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			   int64_t offset, int64_t ts_ms);

#endif
