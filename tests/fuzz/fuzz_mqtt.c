/*
 * fuzz_mqtt.c - libFuzzer target for the MQTT front end end to end: framing,
 * the connection state machine, sessions, subscriptions, retained messages,
 * wills, the fan-out thread and the store (proto/mqtt/server.c, session.c,
 * fanout.c, topic_tree.c over a real broker), on memory connections
 * (net/conn.h) that this thread drives with cfx_loop_run_pending.
 *
 * Once per process: a loop (no thread runs it), a broker in a fresh
 * directory under /tmp (or $CFX_FUZZ_TMPDIR) with small segments, no
 * fsyncs and a log size limit, and an MQTT service over it (data in
 * <dir>/mqtt; session expiry capped at SESSION_EXPIRY_MAX_S so that the
 * sessions of earlier inputs go away). Every RECYCLE_INPUTS inputs the
 * service and the broker are closed and opened again: on the same
 * directory (the journals, persistent sessions and fan-out positions are
 * replayed) or, every second time, on a fresh one (so that a long run's
 * retained topics do not pile up). Logging is silenced unless
 * CFX_FUZZ_VERBOSE=1.
 *
 * Input (layout and flags in fuzz_common.h, FZ_MQTT_E2E_*): a flags byte,
 * then records [len u16 big-endian][bytes]. The top bit of len sends the
 * record to a second connection (opened on first use: session takeover,
 * one client publishing to another). Without FZ_MQTT_E2E_RAW a record is
 * one packet without its Remaining Length, which the target inserts after
 * the first byte (so mutations of a body keep the stream framed); with it,
 * records are fed as they are and the framing is in the bytes. A last
 * record shorter than its length is fed as is (a torn packet).
 *
 * Each record is fed from a task posted to the loop (the server runs on
 * its loop: cfx_loop_current() must be it), in pieces when the flags say
 * so. With FZ_MQTT_E2E_SETTLE_EACH the target then lets the store and the
 * fan-out thread catch up (settle), so that deliveries reach the client
 * before its next packet (which can then acknowledge them). With
 * FZ_MQTT_E2E_BATCH every record is queued before the loop runs once, so
 * what the server posts meanwhile (a takeover's kick, deliveries) runs
 * after all of them, as in a busy loop iteration. After the last
 * record it settles, frees the connections and runs the loop until quiet;
 * with FZ_MQTT_E2E_CLOSE_FIRST it frees them before settling, so that
 * append completions and deliveries posted later find them gone.
 *
 * Beyond "no crash, no out-of-bounds access, no undefined behaviour, no
 * leak, no hang", for each connection the target decodes what the client
 * sent as the server does (same limits, same state), and checks what the
 * server wrote, taken after every record:
 *  - whole packets only (mqtt_frame_check), each decoding with
 *    mqtt_decode(MQTT_FROM_SERVER) in the connection's version (the
 *    CONNECT's, or the level a refused CONNECT declared); nothing at all
 *    when no CONNECT could be read;
 *  - a CONNACK first and only once; a refusal (>= 0x80) and a DISCONNECT
 *    (v5 only) are the last packets; no session present after a clean
 *    start; an assigned client identifier for an empty one (v5);
 *  - answers in order and only to what was asked: the n-th PUBACK/PUBREC
 *    is of the n-th QoS 1/2 PUBLISH (type and packet id), PUBCOMP of
 *    PUBREL, PUBREL of the client's PUBREC, SUBACK of SUBSCRIBE (packet
 *    id, one reason per entry, never more than the QoS asked), UNSUBACK of
 *    UNSUBSCRIBE, PINGRESP of PINGREQ; never an AUTH;
 *  - the server's PUBLISHes: a topic, or an alias within the client's Topic
 *    Alias Maximum that names one the server set before; within the client's
 *    Maximum Packet Size, a QoS 1/2 packet identifier never reused
 *    (without DUP) before the client completed it, and no more QoS 1/2
 *    ones open than the client's Receive Maximum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fileops.h"
#include "base/log.h"
#include "broker/broker.h"
#include "broker/lq.h"
#include "fuzz_common.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/mqtt/mqtt.h"
#include "proto/mqtt/mqtt_int.h" /* the fan-out's positions: has it caught up? */
#include "proto/mqtt/packet.h"
#include "store/files.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MQTT_TOPIC "mqtt"
#define SESSION_EXPIRY_MAX_S 2	       /* offline sessions of earlier inputs expire */
#define PACKET_BYTES_MAX 4096	       /* after CONNECT: inputs can exceed it */
#define SESSION_QUEUE_MAX 16	       /* offline messages and the ring: drops are reachable */
#define KEEP_ALIVE_MAX_S 600	       /* so that CONNACK may carry Server Keep Alive */
#define RECYCLE_INPUTS 4000	       /* close and reopen the broker and service */
#define SETTLE_SLEEP_US 100	       /* between passes while others catch up */
#define SETTLE_QUIET_PASSES 3	       /* passes with nothing to run, fan-out caught up */
#define SETTLE_PASSES_MAX 300	       /* of one settle */
#define SETTLE_BUDGET_PASSES 1500      /* of all settles of one input */
#define DRAIN_PASSES_MAX 1000	       /* after freeing the connections */
#define RUN_ROUNDS_MAX 256	       /* cfx_loop_run_pending calls in one pass */
#define CONNS 2

static const size_t split_bytes[4] = { 0, 1, 3, 7 }; /* FZ_MQTT_E2E_SPLIT_MASK */

/* ------------------------------------------------------------------------
 * Once per process (and at each recycle)
 * ------------------------------------------------------------------------ */

static char root_dir[256];
static char mqtt_dir[300];
static struct cfx_loop *loop;
static struct cfx_broker *br;
static struct mqtt_service *svc;
static struct cfx_file_ops fast_ops;
static unsigned long inputs_run, recycles;
static int verbose;
static int settle_left; /* of SETTLE_BUDGET_PASSES, for the current input */

static int nosync(int fd)
{
	(void)fd;
	return 0;
}

/* Runs what is ready, a bounded number of times; returns what ran. */
static uint32_t run_ready(void)
{
	uint32_t ran = 0, n;

	for (int i = 0; i < RUN_ROUNDS_MAX && (n = cfx_loop_run_pending(loop)) != 0; i++)
		ran += n;
	return ran;
}

/* Has the fan-out read everything the store holds in the MQTT topic? */
static int fanout_caught_up(void)
{
	struct cfx_store *st = cfx_broker_store(br);

	for (uint32_t q = 0; q < svc->queues; q++) {
		uint64_t start, end, pos = 0;
		if (cfx_store_queue_bounds(st, CFX_VIEW_STR(MQTT_TOPIC), q, &start, &end))
			continue;
		if (cfx_lq_get_pos(svc->lqs, 0, q, &pos) || pos < end)
			return 0;
	}
	return 1;
}

/*
 * Lets appends complete (their completions post to the loop), the fan-out
 * read them and post deliveries, and the loop run all that: until a few
 * passes in a row find nothing to run with the fan-out caught up, within
 * the input's budget.
 */
static void settle(void)
{
	int quiet = 0;

	for (int i = 0; i < SETTLE_PASSES_MAX && settle_left > 0; i++, settle_left--) {
		if (run_ready())
			quiet = 0;
		else if (fanout_caught_up() && ++quiet >= SETTLE_QUIET_PASSES)
			return;
		usleep(SETTLE_SLEEP_US);
	}
	run_ready();
}

static void services_open(void)
{
	struct cfx_broker_opts bo;
	struct mqtt_opts mo;

	cfx_broker_opts_default(&bo);
	bo.store.dir = root_dir;
	bo.store.fops = &fast_ops;
	bo.store.segment_bytes = 256 * 1024;
	bo.store.batch_bytes_max = 16 * 1024;
	bo.store.msg_bytes_max = 16 * 1024;
	bo.store.index_entries_per_file = 64;
	bo.store.key_index_entries = 64;
	bo.store.checkpoint_interval_ms = 3600 * 1000;
	bo.store.retention_ms = 0;
	bo.store.retention_bytes = 4 << 20; /* a long run must not fill /tmp */
	bo.store.retention_check_interval_ms = 1000;
	bo.store.populate_ahead_bytes = 0;
	bo.auto_create = 0;
	bo.pop_journal_bytes_max = 1 << 20;
	FZ_CHECK(cfx_broker_open(&bo, &br, NULL) == 0);
	mqtt_opts_default(&mo);
	mo.topic = MQTT_TOPIC;
	mo.queues = 4;
	mo.session_queue_max = SESSION_QUEUE_MAX;
	mo.packet_bytes_max = PACKET_BYTES_MAX;
	mo.keep_alive_max_s = KEEP_ALIVE_MAX_S;
	mo.session_expiry_max_s = SESSION_EXPIRY_MAX_S;
	FZ_CHECK(mqtt_service_new(br, mqtt_dir, &mo, &svc) == 0);
}

/*
 * No connection is open. The service's threads stop first (nothing more is
 * posted by them), completions already posted run, the broker closes (the
 * appends still out complete and post to the loop, which is still there),
 * and only then is the service freed: an append's completion uses it.
 */
static void services_close(void)
{
	mqtt_service_stop(svc);
	for (int i = 0; i < 20; i++) {
		run_ready();
		usleep(500);
	}
	cfx_broker_close(br);
	run_ready();
	mqtt_service_free(svc);
	run_ready();
	svc = NULL;
	br = NULL;
}

static void teardown(void)
{
	services_close();
	cfx_loop_free(loop);
	store__rmtree(root_dir);
}

static void make_dirs(void)
{
	const char *base = getenv("CFX_FUZZ_TMPDIR");

	if (!base || !*base)
		base = "/tmp";
	snprintf(root_dir, sizeof root_dir, "%s/cfx-fuzz-mqtt-XXXXXX", base);
	FZ_CHECK(mkdtemp(root_dir) != NULL);
	snprintf(mqtt_dir, sizeof mqtt_dir, "%s/mqtt", root_dir);
}

static void setup_once(void)
{
	if (loop)
		return;
	verbose = getenv("CFX_FUZZ_VERBOSE") != NULL;
	if (!verbose)
		cfx_log_set_level(CFX_LOG_ERROR - 1);
	make_dirs();
	fast_ops = cfx_fileops_real;
	fast_ops.fdatasync = nosync;
	fast_ops.fsync = nosync;
	FZ_CHECK(cfx_loop_new(&loop, "fuzz") == 0);
	services_open();
	atexit(teardown);
}

/* Restarts the broker and the service, on the same directory every other time. */
static void recycle(void)
{
	services_close();
	if (++recycles % 2 == 0) {
		store__rmtree(root_dir);
		make_dirs();
	}
	services_open();
}

/* ------------------------------------------------------------------------
 * What the client sent, decoded as the server decodes it
 * ------------------------------------------------------------------------ */

/* One entry of the lists below. */
struct owed {
	uint8_t type;	 /* packet type (answers, client acks) or QoS (in flight) */
	uint16_t pid;
	uint32_t count;	 /* SUBSCRIBE / UNSUBSCRIBE entries; in flight: 1 once completed */
	uint32_t qos_at; /* SUBSCRIBE: its entries' QoS in side.sub_qos */
	uint32_t record; /* client acks: record fed; in flight: record after which it was seen */
};

struct list {
	struct cfx_writer w; /* struct owed, back to back */
	size_t next;	     /* first entry not matched yet */
};

static void list_push(struct list *l, const struct owed *o)
{
	cfx_write_bytes(&l->w, o, sizeof *o);
}

static size_t list_len(const struct list *l)
{
	return l->w.len / sizeof(struct owed);
}

static struct owed *list_at(struct list *l, size_t i)
{
	return (struct owed *)(void *)l->w.p + i;
}

/* The next answer owed, or NULL if none is. */
static struct owed *list_take(struct list *l)
{
	return l->next < list_len(l) ? list_at(l, l->next++) : NULL;
}

/* One connection: the client's side as the server reads it, the answers it owes. */
struct side {
	char name;		 /* 'A' or 'B', for CFX_FUZZ_VERBOSE */
	struct cfx_conn *c;
	int closed;		 /* cfx_conn_feed said so: later input is dropped */
	struct cfx_writer in;	 /* every byte fed */
	size_t in_pos;		 /* bytes of `in` framed by the model */
	int version;		 /* of an accepted CONNECT; 0 before */
	int out_version;	 /* of the server's packets; 0: it may send none */
	int stopped;		 /* the server reads no further */
	uint8_t clean_start, empty_id;
	uint32_t max_packet;	 /* the client's Maximum Packet Size (v5); 0 = none */
	uint32_t receive_max;	 /* the client's Receive Maximum (v5; else 65535) */
	uint16_t alias_max;	 /* the client's Topic Alias Maximum (v5); 0 = none */
	struct cfx_writer *aliases; /* [1..alias_max]: the topic the server gave each alias */
	struct cfx_writer sub_qos; /* the QoS asked for, per SUBSCRIBE entry */
	struct list subacks, unsubacks, pubacks, pubrels, pubcomps;
	uint32_t pings, pongs;
	struct list client_acks; /* PUBACK / PUBCOMP the client sent */
	struct list inflight;	 /* the server's QoS 1/2 PUBLISHes (type = QoS) */
	int connack_seen, ended;
	struct cfx_writer out;	 /* the server's bytes taken after the current record */
};

static void side_init(struct side *sd)
{
	memset(sd, 0, sizeof *sd);
	cfx_writer_init(&sd->in, 256);
	cfx_writer_init(&sd->sub_qos, 64);
	cfx_writer_init(&sd->out, 1024);
	cfx_writer_init(&sd->subacks.w, 64);
	cfx_writer_init(&sd->unsubacks.w, 64);
	cfx_writer_init(&sd->pubacks.w, 64);
	cfx_writer_init(&sd->pubrels.w, 64);
	cfx_writer_init(&sd->pubcomps.w, 64);
	cfx_writer_init(&sd->client_acks.w, 64);
	cfx_writer_init(&sd->inflight.w, 64);
}

static void side_free(struct side *sd)
{
	if (sd->aliases) {
		for (uint32_t a = 0; a <= sd->alias_max; a++)
			cfx_writer_free(&sd->aliases[a]);
		cfx_free(sd->aliases);
	}
	cfx_writer_free(&sd->in);
	cfx_writer_free(&sd->sub_qos);
	cfx_writer_free(&sd->out);
	cfx_writer_free(&sd->subacks.w);
	cfx_writer_free(&sd->unsubacks.w);
	cfx_writer_free(&sd->pubacks.w);
	cfx_writer_free(&sd->pubrels.w);
	cfx_writer_free(&sd->pubcomps.w);
	cfx_writer_free(&sd->client_acks.w);
	cfx_writer_free(&sd->inflight.w);
}

/*
 * The server's QoS 1/2 PUBLISHes are completed by a PUBACK (QoS 1) or a
 * PUBCOMP (QoS 2) with their packet id, fed in the record after which the
 * PUBLISH was seen or later. One fed in that same record may have come
 * before the PUBLISH: counting it errs towards "completed", so the checks
 * never blame the server for the target's coarse view of time.
 */
static int completes(const struct owed *ack, const struct owed *f)
{
	return ack->pid == f->pid && ack->type == (f->type == 1 ? MQTT_PUBACK : MQTT_PUBCOMP) &&
	       ack->record >= f->record;
}

/* The client sent `ack` (PUBACK or PUBCOMP). */
static void client_completed(struct side *sd, const struct owed *ack)
{
	list_push(&sd->client_acks, ack);
	for (size_t i = 0; i < list_len(&sd->inflight); i++)
		if (completes(ack, list_at(&sd->inflight, i)))
			list_at(&sd->inflight, i)->count = 1; /* done */
}

/* One whole packet from the client, in the order the server handles them. */
static void model_packet(struct side *sd, const uint8_t *p, size_t n, uint32_t record)
{
	struct mqtt_packet pkt;
	struct mqtt_err err = { 0 };
	struct owed o = { .record = record };

	if (mqtt_decode(p, n, sd->version, MQTT_FROM_CLIENT, &pkt, &err)) {
		if (!sd->version && err.version) /* a refused CONNECT may get a CONNACK */
			sd->out_version = err.version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
		sd->stopped = 1;
		return;
	}
	if (!sd->version && pkt.type != MQTT_CONNECT) {
		sd->stopped = 1;
		return;
	}
	o.type = pkt.type;
	switch (pkt.type) {
	case MQTT_CONNECT:
		sd->out_version = pkt.connect.version;
		sd->clean_start = pkt.connect.clean_start;
		sd->empty_id = pkt.connect.client_id.len == 0;
		if (sd->version || (sd->empty_id && !sd->clean_start)) {
			sd->stopped = 1; /* refused */
			return;
		}
		sd->version = pkt.connect.version;
		sd->receive_max = 65535;
		if (sd->version == MQTT_V5) {
			const struct mqtt_props *pr = &pkt.connect.props;
			if (pr->present & MQTT_PROP_BIT(MAXIMUM_PACKET_SIZE))
				sd->max_packet = pr->max_packet_bytes;
			if (pr->present & MQTT_PROP_BIT(RECEIVE_MAXIMUM))
				sd->receive_max = pr->receive_max;
			if (pr->present & MQTT_PROP_BIT(TOPIC_ALIAS_MAXIMUM))
				sd->alias_max = pr->topic_alias_max;
		}
		break;
	case MQTT_PUBLISH:
		if (pkt.publish.qos) {
			o.type = pkt.publish.qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
			o.pid = pkt.publish.packet_id;
			list_push(&sd->pubacks, &o);
		}
		break;
	case MQTT_PUBACK:
	case MQTT_PUBCOMP:
		o.pid = pkt.ack.packet_id;
		client_completed(sd, &o);
		break;
	case MQTT_PUBREC: /* always answered with a PUBREL */
		o.pid = pkt.ack.packet_id;
		list_push(&sd->pubrels, &o);
		break;
	case MQTT_PUBREL:
		o.pid = pkt.ack.packet_id;
		list_push(&sd->pubcomps, &o);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE: {
		struct mqtt_topic_iter it;
		struct mqtt_subscription e;
		o.pid = pkt.subscribe.packet_id;
		o.qos_at = (uint32_t)sd->sub_qos.len;
		mqtt_topic_iter_init(&it, pkt.type, &pkt.subscribe);
		while (mqtt_topic_next(&it, &e) == 1) {
			cfx_write_u8(&sd->sub_qos, e.qos);
			o.count++;
		}
		FZ_CHECK(o.count == pkt.subscribe.topic_count);
		list_push(pkt.type == MQTT_SUBSCRIBE ? &sd->subacks : &sd->unsubacks, &o);
		break;
	}
	case MQTT_PINGREQ:
		sd->pings++;
		break;
	default: /* DISCONNECT, AUTH: the connection ends */
		sd->stopped = 1;
		break;
	}
}

/* Frames what was fed so far, as the server's on_read does. */
static void model_advance(struct side *sd, uint32_t record)
{
	while (!sd->stopped && sd->in_pos < sd->in.len) {
		size_t frame;
		int rc = mqtt_frame_check(sd->in.p + sd->in_pos, sd->in.len - sd->in_pos,
					  sd->version ? PACKET_BYTES_MAX : MQTT_CONNECT_BYTES_MAX,
					  &frame);
		if (rc == CFX_NEED_MORE)
			return;
		if (rc) {
			sd->stopped = 1;
			return;
		}
		model_packet(sd, sd->in.p + sd->in_pos, frame, record);
		sd->in_pos += frame;
	}
}

/* ------------------------------------------------------------------------
 * What the server wrote
 * ------------------------------------------------------------------------ */

/* A QoS 1/2 PUBLISH from the server, seen after `record`: its packet id is
 * not in use, and the client's Receive Maximum holds. */
static void check_pid_free(struct side *sd, const struct mqtt_publish *pub, uint32_t record)
{
	struct owed *f = NULL;
	uint32_t open = 0;

	for (size_t i = 0; i < list_len(&sd->inflight) && !f; i++)
		if (list_at(&sd->inflight, i)->pid == pub->packet_id)
			f = list_at(&sd->inflight, i);
	if (f && !pub->dup)
		FZ_CHECK(f->count); /* a packet identifier still in use */
	if (!f) {
		struct owed o = { 0 };
		list_push(&sd->inflight, &o);
		f = list_at(&sd->inflight, list_len(&sd->inflight) - 1);
	}
	f->type = pub->qos;
	f->pid = pub->packet_id;
	f->record = record;
	f->count = 0;
	/* Acknowledgements fed in this record (none later has been fed yet). */
	for (size_t i = list_len(&sd->client_acks); i-- > 0 && list_at(&sd->client_acks, i)->record >= record;)
		if (completes(list_at(&sd->client_acks, i), f))
			f->count = 1;
	for (size_t i = 0; i < list_len(&sd->inflight); i++)
		open += !list_at(&sd->inflight, i)->count;
	FZ_CHECK(open <= sd->receive_max);
}

/*
 * The topic of a PUBLISH from the server, as the client resolves it: a
 * topic alias is within the client's Topic Alias Maximum, sets the alias
 * when the topic is there, and otherwise names a topic it set before.
 */
static void check_topic(struct side *sd, const struct mqtt_publish *pub)
{
	uint16_t a;

	if (!(pub->props.present & MQTT_PROP_BIT(TOPIC_ALIAS))) {
		FZ_CHECK(pub->topic.len > 0);
		return;
	}
	a = pub->props.topic_alias;
	FZ_CHECK(sd->out_version == MQTT_V5 && a >= 1 && a <= sd->alias_max);
	if (!sd->aliases) {
		sd->aliases = cfx_calloc((size_t)sd->alias_max + 1, sizeof *sd->aliases);
		for (uint32_t i = 0; i <= sd->alias_max; i++)
			cfx_writer_init(&sd->aliases[i], 16);
	}
	if (pub->topic.len) {
		cfx_writer_reset(&sd->aliases[a]);
		cfx_write_bytes(&sd->aliases[a], pub->topic.p, pub->topic.len);
	} else {
		FZ_CHECK(sd->aliases[a].len > 0); /* an alias the server never set */
	}
}

static void check_answer(struct side *sd, const struct mqtt_packet *pkt, size_t frame,
			 uint32_t record)
{
	struct owed *o;

	if (pkt->type == MQTT_CONNACK) {
		const struct mqtt_connack *ca = &pkt->connack;
		FZ_CHECK(!sd->connack_seen);
		sd->connack_seen = 1;
		if (ca->reason) {
			FZ_CHECK(ca->reason >= 0x80 && !ca->session_present);
			sd->ended = 1;
			return;
		}
		FZ_CHECK(sd->version != 0); /* accepted: the model accepted it too */
		if (sd->clean_start)
			FZ_CHECK(!ca->session_present);
		if (sd->version == MQTT_V5 && sd->empty_id)
			FZ_CHECK(ca->props.present & MQTT_PROP_BIT(ASSIGNED_CLIENT_IDENTIFIER));
		return;
	}
	FZ_CHECK(sd->connack_seen); /* a CONNACK comes first */
	switch (pkt->type) {
	case MQTT_PUBLISH:
		check_topic(sd, &pkt->publish);
		if (sd->max_packet)
			FZ_CHECK(frame <= sd->max_packet);
		if (pkt->publish.qos)
			check_pid_free(sd, &pkt->publish, record);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
		o = list_take(&sd->pubacks);
		FZ_CHECK(o && o->type == pkt->type && o->pid == pkt->ack.packet_id);
		break;
	case MQTT_PUBREL:
		o = list_take(&sd->pubrels);
		FZ_CHECK(o && o->pid == pkt->ack.packet_id);
		break;
	case MQTT_PUBCOMP:
		o = list_take(&sd->pubcomps);
		FZ_CHECK(o && o->pid == pkt->ack.packet_id);
		break;
	case MQTT_SUBACK:
		o = list_take(&sd->subacks);
		FZ_CHECK(o && o->pid == pkt->suback.packet_id);
		FZ_CHECK(pkt->suback.reasons.len == o->count);
		for (uint32_t i = 0; i < o->count; i++) {
			uint8_t r = pkt->suback.reasons.p[i];
			FZ_CHECK(r >= 0x80 || r <= sd->sub_qos.p[o->qos_at + i]);
		}
		break;
	case MQTT_UNSUBACK:
		o = list_take(&sd->unsubacks);
		FZ_CHECK(o && o->pid == pkt->unsuback.packet_id);
		FZ_CHECK(pkt->unsuback.reasons.len == (sd->out_version == MQTT_V5 ? o->count : 0));
		break;
	case MQTT_PINGRESP:
		FZ_CHECK(++sd->pongs <= sd->pings);
		break;
	case MQTT_DISCONNECT:
		FZ_CHECK(sd->out_version == MQTT_V5);
		sd->ended = 1;
		break;
	default: /* AUTH: this server never starts one */
		FZ_CHECK(0);
	}
}

/* Takes what the server wrote since the last time and checks it. */
static void take_and_check(struct side *sd, uint32_t record)
{
	size_t at = 0;

	if (!sd->c)
		return;
	cfx_writer_reset(&sd->out);
	cfx_conn_take_output(sd->c, &sd->out);
	while (at < sd->out.len) {
		struct mqtt_packet pkt;
		struct mqtt_err err = { 0 };
		size_t frame;
		FZ_CHECK(sd->out_version != 0); /* no CONNECT could be read: no answer */
		FZ_CHECK(!sd->ended);		/* nothing after a refusal or a DISCONNECT */
		FZ_CHECK(mqtt_frame_check(sd->out.p + at, sd->out.len - at,
					  MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame) == 0);
		if (mqtt_decode(sd->out.p + at, frame, sd->out_version, MQTT_FROM_SERVER, &pkt, &err)) {
			fprintf(stderr, "fuzz_mqtt: the server wrote a %s that does not decode: %s\n",
				mqtt_type_name(sd->out.p[at] >> 4), err.desc ? err.desc : "?");
			FZ_CHECK(0);
		}
		if (verbose)
			fprintf(stderr, "fuzz_mqtt: %s -> client %c\n", mqtt_type_name(pkt.type), sd->name);
		check_answer(sd, &pkt, frame, record);
		at += frame;
	}
}

/* ------------------------------------------------------------------------
 * Feeding
 * ------------------------------------------------------------------------ */

struct feed_job {
	struct side *sd;
	const uint8_t *p;
	size_t n;
};

/* On the loop, as a socket read would be. */
static void feed_task(void *arg)
{
	struct feed_job *j = arg;

	if (!j->sd->closed)
		j->sd->closed = cfx_conn_feed(j->sd->c, j->p, j->n);
}

static void feed(struct side *sd, const uint8_t *p, size_t n, size_t piece)
{
	for (size_t off = 0; off < n && !sd->closed; off += piece) {
		struct feed_job j = { sd, p + off, CFX_MIN(piece, n - off) };
		cfx_loop_post(loop, feed_task, &j);
		run_ready();
	}
}

/*
 * FZ_MQTT_E2E_BATCH: every piece of every record is queued before the loop
 * runs, as when many reads arrive in one iteration; what the server posts
 * meanwhile (a takeover's kick, deliveries, completions) runs after them.
 */
struct batch {
	struct cfx_writer bytes; /* the records, back to back */
	struct cfx_writer jobs;	 /* struct feed_job, `p` as an offset into `bytes` */
};

static void batch_add(struct batch *b, struct side *sd, const uint8_t *p, size_t n, size_t piece)
{
	for (size_t off = 0; off < n; off += piece) {
		struct feed_job j = { sd, (const uint8_t *)(uintptr_t)(b->bytes.len + off),
				      CFX_MIN(piece, n - off) };
		cfx_write_bytes(&b->jobs, &j, sizeof j);
	}
	cfx_write_bytes(&b->bytes, p, n);
}

static void batch_run(struct batch *b)
{
	struct feed_job *j = (struct feed_job *)(void *)b->jobs.p;
	size_t n = b->jobs.len / sizeof *j;

	for (size_t i = 0; i < n; i++) {
		j[i].p = b->bytes.p + (uintptr_t)j[i].p;
		cfx_loop_post(loop, feed_task, &j[i]);
	}
	run_ready();
}

static void free_conns(struct side *sides)
{
	for (int k = 0; k < CONNS; k++) {
		cfx_conn_free_memory(sides[k].c);
		sides[k].c = NULL;
	}
}

/* Appends one record's bytes to `rec`: as they are (raw), or with the
 * Remaining Length the target computes put after the first byte. */
static void record_bytes(struct cfx_writer *rec, const uint8_t *p, size_t avail, size_t len,
			 int raw)
{
	cfx_writer_reset(rec);
	if (raw || !avail) {
		cfx_write_bytes(rec, p, avail);
		return;
	}
	cfx_write_u8(rec, p[0]);
	mqtt_write_varint(rec, (uint32_t)(len - 1));
	cfx_write_bytes(rec, p + 1, avail - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct side sides[CONNS];
	struct cfx_writer rec;
	struct batch batch;
	uint8_t flags;
	size_t at = FZ_MQTT_E2E_CTRL_BYTES, piece;
	uint32_t record = 0;

	setup_once();
	if (size < FZ_MQTT_E2E_CTRL_BYTES)
		return 0;
	if (++inputs_run % RECYCLE_INPUTS == 0)
		recycle();
	flags = data[0];
	piece = split_bytes[flags & FZ_MQTT_E2E_SPLIT_MASK];
	settle_left = SETTLE_BUDGET_PASSES;
	for (int k = 0; k < CONNS; k++) {
		side_init(&sides[k]);
		sides[k].name = (char)('A' + k);
	}
	cfx_writer_init(&rec, 256);
	cfx_writer_init(&batch.bytes, size + 64);
	cfx_writer_init(&batch.jobs, 256);

	while (at + 2 <= size) {
		uint16_t hdr = cfx_load_be16(data + at);
		size_t len = hdr & FZ_MQTT_E2E_LEN_MASK, avail;
		struct side *sd = &sides[(hdr & FZ_MQTT_E2E_CONN_B) ? 1 : 0];
		at += 2;
		avail = CFX_MIN(len, size - at); /* less: a torn last record */
		record_bytes(&rec, data + at, avail, len, (flags & FZ_MQTT_E2E_RAW) != 0);
		at += avail;
		record++;
		if (!rec.len)
			continue;
		if (!sd->c)
			sd->c = cfx_conn_new_memory(loop, &mqtt_conn_proto, svc);
		cfx_write_bytes(&sd->in, rec.p, rec.len);
		model_advance(sd, record);
		if (flags & FZ_MQTT_E2E_BATCH) {
			batch_add(&batch, sd, rec.p, rec.len, piece ? piece : rec.len);
			continue;
		}
		feed(sd, rec.p, rec.len, piece ? piece : rec.len);
		if (flags & FZ_MQTT_E2E_SETTLE_EACH)
			settle();
		for (int k = 0; k < CONNS; k++)
			take_and_check(&sides[k], record);
	}
	batch_run(&batch);
	if (flags & FZ_MQTT_E2E_CLOSE_FIRST) {
		for (int k = 0; k < CONNS; k++)
			take_and_check(&sides[k], record);
		free_conns(sides);
		settle();
	} else {
		settle();
		for (int k = 0; k < CONNS; k++)
			take_and_check(&sides[k], record);
		free_conns(sides);
	}
	/* Completions and deliveries posted for the freed connections, deferred frees. */
	settle_left = DRAIN_PASSES_MAX;
	settle();
	for (int k = 0; k < CONNS; k++)
		side_free(&sides[k]);
	cfx_writer_free(&rec);
	cfx_writer_free(&batch.bytes);
	cfx_writer_free(&batch.jobs);
	return 0;
}
