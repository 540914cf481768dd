/*
 * broker_int.h - shared by the files of the broker module only.
 *
 * Locks: meta_mu (topics, groups) and pop_mu (cursors, journal) are never
 * held together; watch_mu (long-poll watches) is taken alone, and watch
 * callbacks run with no broker lock held.
 */
#ifndef CFX_BROKER_BROKER_INT_H
#define CFX_BROKER_BROKER_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/fileops.h"
#include "base/log.h"
#include "broker/broker.h"

struct topic_ent {
	struct topic_ent *next;
	struct cfx_topic_info info;
	atomic_uint rr; /* round-robin queue choice */
};

struct group_ent {
	struct group_ent *next;
	struct cfx_group_info info;
};

/* POP: one cursor per (group, topic, queue); see pop.c. */
struct slot {
	uint8_t state;	   /* SLOT_INFLIGHT, SLOT_DONE, SLOT_MOVING, SLOT_WAITING */
	uint16_t attempt;
	uint32_t pop_id;
	uint32_t ghash;	   /* FIFO groups: hash of the message group (0 = none) */
	int64_t visible_at; /* wall-clock ms */
};

struct cursor {
	struct cursor *hnext;
	uint32_t id;	   /* in the journal */
	char *group, *topic;
	uint16_t glen, tlen;
	uint32_t queue;
	uint64_t committed; /* everything below is done */
	uint64_t next;	    /* next offset never delivered */
	struct slot *ring;  /* slots of [committed, next), indexed by offset & (cap - 1) */
	uint32_t cap;
	uint32_t inflight;
	uint32_t waiting;	  /* FIFO: read, held back behind their group */
	int64_t earliest_visible; /* lower bound of in-flight visible_at */
	uint32_t next_pop_id;
};

/*
 * Traffic counters per topic (stats.c): a fixed table of insert-only
 * chains, read and extended without locks. All zero is a valid empty
 * table, so it needs no set-up; stats__free releases it at close.
 */
#define STATS_BUCKETS 256

struct tstat;

struct broker_stats {
	_Atomic(struct tstat *) buckets[STATS_BUCKETS];
};

/*
 * Which entries of a system queue (%SYS%TIMER, %SYS%HALF; queue 0) are
 * done (fired, recalled, resolved): all below `base`, and the set bits of
 * `w` above it (bit i = offset base + i). Kept under pop_mu, journaled
 * with the POP state.
 */
enum { SYS_TIMER = 0, SYS_HALF = 1, SYS_KINDS = 2 };

struct sysdone {
	uint64_t base;
	uint64_t *w;
	uint32_t nw;
};

struct half;

struct watch {
	struct watch *next;
	uint64_t id;
	char *group, *topic;
	void (*fn)(void *arg);
	void *arg;
};

struct cfx_broker {
	struct cfx_broker_opts o;
	struct cfx_store *st;
	const struct cfx_file_ops *fops;
	char *dir, *meta_dir, *pop_dir;

	/* metadata */
	pthread_mutex_t meta_mu;
	struct topic_ent *topics;
	struct group_ent *groups;

	/* POP */
	pthread_mutex_t pop_mu;
	struct cursor **ctab;
	uint32_t ccap, ccount;
	uint32_t next_cursor_id;
	struct cursor **cbyid;	/* cursors by journal id */
	uint32_t cbyid_cap;
	int jfd;		/* journal */
	uint64_t jseq;		/* sequence of the last record */
	uint64_t jbytes;
	int jdirty;		/* written since the last fdatasync */
	struct cfx_writer jbuf; /* records not written yet (pop.c: journal) */
	struct cfx_writer jspare; /* the other buffer, being written under jw_mu */
	pthread_mutex_t jw_mu;	/* journal writes, in order; taken under pop_mu */
	uint8_t secret[32];
	atomic_uint rr_pop;
	struct sysdone sys[SYS_KINDS];

	/* watches */
	pthread_mutex_t watch_mu;
	struct watch *watches;
	uint64_t next_watch_id;

	/* traffic counters */
	struct broker_stats stats;

	/* delayed messages (timer.c) */
	pthread_mutex_t tm_mu;
	struct cfx_twheel *tm_wheel;

	/* transactions (txn.c) */
	pthread_mutex_t txn_mu;
	struct half *txn_v;	/* open half messages */
	uint32_t txn_n, txn_cap;
	int64_t txn_next_ms;
	cfx_txn_check_fn txn_check;
	void *txn_check_arg;

	/* timer thread */
	pthread_t timer_thr;
	pthread_mutex_t timer_mu;
	pthread_cond_t timer_cv;
	int stopping;
};

/* meta.c */
int meta__load(struct cfx_broker *br);
void meta__free(struct cfx_broker *br);
/* The next round-robin queue of a topic with `queues` queues. */
uint32_t broker__topic_next_queue(struct cfx_broker *br, struct cfx_view name, uint32_t queues);

/* pop.c */
int pop__open(struct cfx_broker *br);
void pop__close(struct cfx_broker *br);
/* One timer tick: flush the journal, wake watchers of expired messages, snapshot. */
void pop__tick(struct cfx_broker *br, int64_t now_ms);

/* A user property of a message; 1 with *out set, else 0. */
int broker__prop(const struct cfx_msg_view *v, const char *name, struct cfx_view *out);
/* Reads entry `off` of system topic `topic` (queue 0) into `rd` (reset
 * first), waiting briefly for the dispatcher if it is not indexed yet: a
 * send is answered before its message is indexed. 0 or an error. */
int broker__read_sys(struct cfx_broker *br, const char *topic, uint64_t off,
		     struct cfx_read_result *rd);
/* A message to send that copies a stored one (views into it) with other properties. */
struct cfx_send_msg broker__copy(const struct cfx_msg_view *v, const struct cfx_prop *props,
				 uint32_t nprops, int type);
/* Has the system-queue entry `id` (message v) reached its real topic already: is a
 * message with v's id there carrying property `id_prop` = id? (timer.c) */
int broker__released(struct cfx_broker *br, const struct cfx_msg_view *v, const char *id_prop,
		     uint64_t id);

/* Applies journal records from memory, as a replay does (tests, fuzzing). */
int pop__replay_bytes(struct cfx_broker *br, const uint8_t *p, size_t len);

/* Marks entry `offset` of system queue `kind` done (journaled); CFX_EEXIST if it was. */
int pop__sys_done(struct cfx_broker *br, int kind, uint64_t offset);
int pop__sys_is_done(struct cfx_broker *br, int kind, uint64_t offset);
/* Every entry below this offset is done. */
uint64_t pop__sys_base(struct cfx_broker *br, int kind);

/* Handles naming entry `offset` of system queue `kind`, bound to `topic`
 * (recall handles, transaction ids): 24 characters, MAC-verified. */
void broker__sys_handle(struct cfx_broker *br, int kind, struct cfx_view topic, uint64_t offset,
			char out[CFX_HANDLE_MAX]);
int broker__sys_handle_decode(struct cfx_broker *br, int kind, struct cfx_view topic,
			      const char *text, uint64_t *offset);

/* watch.c is in pop.c: wakes watchers of `topic` (all groups when group is NULL). */
void broker__wake(struct cfx_broker *br, struct cfx_view group, struct cfx_view topic);

/* timer.c: delayed messages. */
int timer__open(struct cfx_broker *br);
void timer__close(struct cfx_broker *br);
/* One tick: fires the timers that are due. */
void timer__tick(struct cfx_broker *br);
/* A delayed message was stored at `id` of %SYS%TIMER. */
void timer__added(struct cfx_broker *br, uint64_t id, int64_t due_ms);

/* txn.c: transactions. */
int txn__open(struct cfx_broker *br);
void txn__close(struct cfx_broker *br);
/* One tick: check-backs and default resolutions that are due. */
void txn__tick(struct cfx_broker *br);
/* A half message was stored at `off` of %SYS%HALF. */
void txn__added(struct cfx_broker *br, uint64_t off);

/* stats.c: counts `msgs` messages of `bytes` body bytes appended to / delivered from `topic`. */
void stats__count_in(struct cfx_broker *br, struct cfx_view topic, uint32_t msgs, uint64_t bytes);
void stats__count_out(struct cfx_broker *br, struct cfx_view topic, uint32_t msgs,
		      uint64_t bytes);
/* Frees the counters (broker teardown, once no thread counts any more). */
void stats__free(struct cfx_broker *br);

#endif
