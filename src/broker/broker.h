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

#define CFX_HANDLE_MAX 96 /* receipt handle text, NUL included */

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
	int64_t timer_max_ms;		/* longest delay of a delayed message */
	int64_t txn_check_first_ms;	/* first check-back of an open transaction */
	int64_t txn_check_interval_ms;	/* later check-backs */
	uint32_t txn_check_max;		/* check-backs before the default resolution */
	int txn_check_default_commit;	/* resolution after the last check: 1 commit, 0 rollback */
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
/* The options the broker was opened with (store.dir is the broker's own
 * copy); valid until cfx_broker_close. @thread any: they never change. */
const struct cfx_broker_opts *cfx_broker_opts_of(const struct cfx_broker *br);

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
/* Every topic but the broker's system topics (%SYS%...). */
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
/* Every group but the broker's own (%SYS%...: the EventBridge's router and targets). */
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
	int64_t deliver_at_ms;	    /* DELAY: absolute delivery time (past or 0: now) */
	struct cfx_view producer_group; /* TRANSACTION: who to ask about it (may be empty) */
	int released;		    /* internal: a due timer or committed half message */
};

struct cfx_send_result {
	int err;	     /* per message */
	uint32_t queue;
	uint64_t offset;
	/* A delayed message: its recall handle; a half message: its
	 * transaction id; else empty. */
	char handle[CFX_HANDLE_MAX];
};

/* System topics: delayed messages wait in the first, half (transactional,
 * not yet committed) messages in the second; one queue each. */
#define CFX_TIMER_TOPIC "%SYS%TIMER"
#define CFX_HALF_TOPIC "%SYS%HALF"
/* Properties the broker sets on system copies. */
#define CFX_PROP_REAL_TOPIC "__REAL_TOPIC"
#define CFX_PROP_DELIVER_AT "__DELIVER_AT"
#define CFX_PROP_TIMER_ID "__TIMER_ID"
#define CFX_PROP_TXN_ID "__TXN_ID"
#define CFX_PROP_PRODUCER_GROUP "__PRODUCER_GROUP"


/* Called once per send with one result per message. @thread any */
typedef void (*cfx_send_cb)(void *arg, const struct cfx_send_result *res, uint32_t count);

/*
 * Sends `count` messages to `topic` (auto-created if allowed). The broker
 * chooses each message's queue: a message group hashes to a stable queue,
 * others go round-robin. Returns 0 (cb is called exactly once, maybe
 * before returning) or an error for the whole request without calling cb:
 * CFX_ENOENT (no such topic), CFX_ETOPIC, CFX_EINVAL (a message's type does
 * not fit the topic: see cfx_broker_type_accepts), CFX_ERANGE (a delivery
 * time beyond the maximum delay).
 *
 * A DELAY message due in the future waits in CFX_TIMER_TOPIC and its result
 * carries a recall handle; a TRANSACTION message waits as a half message in
 * CFX_HALF_TOPIC until cfx_broker_end_transaction, and its result carries
 * the transaction id. Their queue and offset are those of the system topic.
 */
int cfx_broker_send(struct cfx_broker *br, struct cfx_view topic, const struct cfx_send_msg *msgs,
		    uint32_t count, enum cfx_durability durability, cfx_send_cb cb, void *arg);

/*
 * Cancels a delayed message that has not been delivered yet, named by the
 * recall handle its send returned; writes its message id. Returns 0,
 * CFX_EINVAL (malformed or forged handle, or one of another topic) or
 * CFX_ENOENT (delivered or recalled already).
 */
int cfx_broker_recall(struct cfx_broker *br, struct cfx_view topic, const char *handle,
		      char *msg_id, size_t msg_id_len);

/* ------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

/*
 * Commits (the half message is appended to its topic; cb gets that
 * result) or rolls back (dropped; cb gets err 0) the transaction `txn_id`
 * that a send of a TRANSACTION message returned. cb may be NULL. Returns 0
 * (cb is called), CFX_EINVAL (malformed or forged id, another topic's) or
 * CFX_ENOENT (resolved already, or being resolved).
 */
int cfx_broker_end_transaction(struct cfx_broker *br, struct cfx_view topic, const char *txn_id,
			       int commit, cfx_send_cb cb, void *arg);

/* An open transaction to check back with its producer. Valid during the call. */
struct cfx_txn_check {
	struct cfx_view topic;		/* the real topic */
	struct cfx_view producer_group; /* as sent; may be empty */
	char txn_id[CFX_HANDLE_MAX];
	const struct cfx_msg_view *msg;	/* the half message (its properties include
					 * the broker's __REAL_TOPIC) */
};

typedef void (*cfx_txn_check_fn)(void *arg, const struct cfx_txn_check *c);

/* Who checks back open transactions (the front end); called on the broker's timer thread. */
void cfx_broker_set_txn_checker(struct cfx_broker *br, cfx_txn_check_fn fn, void *arg);
/* Open transactions. */
size_t cfx_broker_txn_open(struct cfx_broker *br);

/* Delayed messages waiting, and the bytes the timing wheel holds for them. */
size_t cfx_broker_timers_pending(struct cfx_broker *br, size_t *memory);

/* Does a message of `msg_type` fit a topic of `topic_type`? */
int cfx_broker_type_accepts(int topic_type, int msg_type);

/* ------------------------------------------------------------------------
 * POP consumption
 * ------------------------------------------------------------------------ */


struct cfx_sql_filter;

/* A message's time to live in ms after its born time, as a decimal
 * property: set by front ends (MQTT 5 message expiry); RocketMQ clients may
 * set the user property CFX_TTL_MS. Expired messages are not delivered. */
#define CFX_PROP_TTL_MS "__TTL_MS"
/* A message's message group (FIFO order), as a property. */
#define CFX_PROP_MSG_GROUP "__SHARDINGKEY"

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

/* Acknowledges n messages of one group and topic at once (one journal
 * write); err[i] as cfx_broker_ack would return for handles[i]. */
void cfx_broker_ack_many(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			 const char *const *handles, uint32_t n, int *err);

/*
 * Makes an in-flight message invisible for `invisible_ms` from now (0 =
 * visible at once, a negative acknowledgement) and writes its new handle
 * into `new_handle` (CFX_HANDLE_MAX bytes). Errors as cfx_broker_ack.
 */
int cfx_broker_change_invisible(struct cfx_broker *br, struct cfx_view group,
				struct cfx_view topic, const char *handle, int64_t invisible_ms,
				char *new_handle);

/*
 * Keeps an in-flight message invisible until `invisible_ms` from now (never
 * shortens it), with the same handle: for consumers whose front end renews
 * on their behalf while they work (RocketMQ auto-renew). Errors as
 * cfx_broker_ack, CFX_ERANGE for a bad duration.
 */
int cfx_broker_renew(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
		     const char *handle, int64_t invisible_ms);

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

/*
 * A consumer's own commit of its position (Kafka's OffsetCommit): the
 * group's committed offset on one queue becomes `offset` (the next offset
 * to consume; one beyond the queue's end is recorded as the end), anything
 * in flight there is forgotten. Journaled before it returns. The committed
 * position reads back with cfx_broker_group_queue_state. Returns 0,
 * CFX_ENOENT (no topic), CFX_EQUEUE, or the journal's write error.
 * @thread any
 */
int cfx_broker_offset_commit(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic,
			    uint32_t queue, uint64_t offset);

/* ------------------------------------------------------------------------
 * Dead letters
 *
 * A group's dead-letter queue is the topic `%DLQ%<group>` (one queue,
 * created on demand, MIXED). Re-driving sends its messages back to their
 * origin topics (property DLQ_ORIGIN_TOPIC); the position is the POP cursor
 * of the system group `%REDRIVE%<group>` on the DLQ topic (dlq.c).
 * ------------------------------------------------------------------------ */

#define CFX_DLQ_PREFIX "%DLQ%"
#define CFX_REDRIVE_PREFIX "%REDRIVE%"
#define CFX_DLQ_NAME_MAX 128 /* the names below, NUL included */

/*
 * Writes the DLQ topic and the redrive group of `group` into `dlq` and
 * `redrive` (CFX_DLQ_NAME_MAX bytes each). Returns 0, or CFX_EINVAL for an
 * invalid group name or one too long to have a redrive group (a group
 * name of at most 111 bytes: the redrive group is a group name too).
 */
int cfx_broker_dlq_names(struct cfx_view group, char *dlq, char *redrive);

struct cfx_dlq_position {
	uint64_t position; /* the redrive group's committed offset on queue 0; 0 if it never ran */
	uint64_t start;	   /* the first offset still stored in the DLQ */
	uint64_t end;	   /* the DLQ's end offset */
	uint32_t inflight; /* messages being re-driven, or left in place by a re-drive */
};

/* Where re-driving `group`'s DLQ stands. Returns 0, CFX_ENOENT (no DLQ), CFX_EINVAL. */
int cfx_broker_dlq_position(struct cfx_broker *br, struct cfx_view group,
			    struct cfx_dlq_position *pos);

/*
 * Re-sends up to `max` messages of `%DLQ%<group>` to their origin topics
 * (DLQ_ORIGIN_TOPIC; the copy drops the DLQ_* properties and gets a fresh
 * attempt count), each acknowledged in the DLQ once its origin topic has
 * stored it, so a crash re-drives at most the in-progress ones again. The
 * position is the POP cursor of the system group `%REDRIVE%<group>` on the
 * DLQ topic (it starts at the DLQ's beginning, not its end). Messages
 * without DLQ_ORIGIN_TOPIC, or whose origin topic no longer exists or
 * refuses them, count as looked at and stay in the DLQ (visible again a
 * few seconds later, for the next re-drive). cb(arg, redriven, first_error)
 * is called once, on any thread, maybe before this returns; first_error
 * is 0, the reason a message stayed (CFX_EINVAL: no DLQ_ORIGIN_TOPIC or a
 * transactional origin topic; CFX_ENOENT: no origin topic; the send's
 * error), CFX_ETIMEDOUT (a copy was stored too late to acknowledge the
 * message: it will be re-driven again), or the pop's error. Returns 0 or
 * an error without calling cb: CFX_ENOENT (no such DLQ), CFX_EINVAL (bad
 * group name, max 0), or the broker's error creating the redrive group.
 */
int cfx_broker_dlq_redrive(struct cfx_broker *br, struct cfx_view group, uint32_t max,
			   enum cfx_durability durability,
			   void (*cb)(void *arg, uint32_t redriven, int err), void *arg);

#endif
