/*
 * api_admin.c - the Kafka admin APIs: CreatePartitions (v0-v3),
 * DescribeConfigs (v1-v4), DescribeCluster (v0-v1) and
 * OffsetForLeaderEpoch (v2-v4).
 *
 * Conflux is one broker (node KF_NODE_ID) that has led every partition
 * since it was created: each partition has one leader epoch, KF_LEADER_EPOCH,
 * the one Metadata and ListOffsets report. Topic settings are the store's
 * own, the same for every topic (one commit log holds them all), and no
 * Kafka API changes them, so DescribeConfigs reports them read-only.
 *
 * What this file does not do: per-topic configs, ACLs (no authorizer:
 * every operation is allowed), or controllers as an endpoint type of
 * their own. Requests are decoded field by field in the order of Kafka's
 * message schemas (CreatePartitionsRequest.json ...); one that does not
 * decode closes the connection, as everywhere in this front end.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proto/kafka/kafka_int.h"

/* Topics in one CreatePartitions request: each costs an entry here. */
#define CP_TOPICS_MAX 10000
/* Kafka's longest topic name. */
#define TOPIC_NAME_BYTES_MAX 249

/* A nullable error message: NULL is written as null. */
static void write_message(struct cfx_writer *w, const char *msg, int flex)
{
	kf_write_string(w, msg ? CFX_VIEW_STR(msg) : (struct cfx_view){0}, flex, msg == NULL);
}

/* Looks a topic up without creating it: its Kafka error, 0 if it exists. */
static int16_t topic_lookup(struct kafka_service *svc, struct cfx_view name,
			    struct cfx_topic_info *ti)
{
	int rc = cfx_broker_topic_get(svc->br, name, 0, ti);

	if (rc == CFX_ETOPIC)
		return KF_ERR_INVALID_TOPIC_EXCEPTION;
	return rc ? KF_ERR_UNKNOWN_TOPIC_OR_PARTITION : KF_ERR_NONE;
}

/* ------------------------------------------------------------------------
 * CreatePartitions (v0-v3; flexible from v2)
 *
 * Grows a topic's queue count. Queues never shrink (data lives in every
 * one), so an equal or smaller count is INVALID_PARTITIONS, as in Kafka.
 * The store creates a queue on its first append, so a new partition takes
 * records at once. The whole request is decoded before anything changes:
 * validate_only comes last.
 * ------------------------------------------------------------------------ */

struct cp_topic {
	struct cfx_view name;
	int32_t count;	 /* the partition count asked for */
	int32_t nassign; /* assignments given; -1: null (the broker places them) */
	int assign_bad;	 /* an assignment names another broker, or more than one */
	int dup;	 /* the name occurs more than once in the request */
};

static int cp_cmp_name(const void *a, const void *b)
{
	const struct cp_topic *x = *(const struct cp_topic *const *)a;
	const struct cp_topic *y = *(const struct cp_topic *const *)b;
	size_t n = CFX_MIN(x->name.len, y->name.len);
	int c = n ? memcmp(x->name.p, y->name.p, n) : 0;

	if (c)
		return c;
	return x->name.len < y->name.len ? -1 : x->name.len > y->name.len;
}

/* Marks the topics named more than once (Kafka answers all of them INVALID_REQUEST). */
static void cp_mark_duplicates(struct cp_topic *t, int32_t n)
{
	struct cp_topic **by_name;

	if (n < 2)
		return;
	by_name = cfx_malloc((size_t)n * sizeof *by_name);
	for (int32_t i = 0; i < n; i++)
		by_name[i] = &t[i];
	qsort(by_name, (size_t)n, sizeof *by_name, cp_cmp_name);
	for (int32_t i = 1; i < n; i++)
		if (cfx_view_eq(by_name[i - 1]->name, by_name[i]->name))
			by_name[i - 1]->dup = by_name[i]->dup = 1;
	cfx_free(by_name);
}

/*
 * Checks one topic of the request and, unless validate_only, grows it.
 * Returns its Kafka error; a failure leaves a message in why[why_len].
 */
static int16_t cp_apply(struct kafka_service *svc, const struct cp_topic *t, int validate_only,
			char *why, size_t why_len)
{
	const struct cfx_broker_opts *bo = cfx_broker_opts_of(svc->br);
	struct cfx_topic_info ti;
	int16_t err;
	int rc;

	if (t->dup) {
		snprintf(why, why_len, "the topic is named more than once in the request");
		return KF_ERR_INVALID_REQUEST;
	}
	err = t->name.len > TOPIC_NAME_BYTES_MAX ? KF_ERR_INVALID_TOPIC_EXCEPTION
						 : topic_lookup(svc, t->name, &ti);
	if (err) {
		snprintf(why, why_len, "%s",
			 err == KF_ERR_INVALID_TOPIC_EXCEPTION ? "invalid topic name"
							       : "the topic does not exist");
		return err;
	}
	if (ti.name[0] == '%') {
		snprintf(why, why_len, "the broker's own topics keep their partitions");
		return KF_ERR_INVALID_TOPIC_EXCEPTION;
	}
	if (t->count >= 0 && (uint32_t)t->count == ti.queues) {
		snprintf(why, why_len, "the topic already has %" PRIu32 " partitions", ti.queues);
		return KF_ERR_INVALID_PARTITIONS;
	}
	if (t->count < 0 || (uint32_t)t->count < ti.queues) {
		snprintf(why, why_len,
			 "the topic has %" PRIu32 " partitions; %" PRId32
			 " would not be an increase (partitions never shrink)",
			 ti.queues, t->count);
		return KF_ERR_INVALID_PARTITIONS;
	}
	if ((uint32_t)t->count > bo->store.queues_per_topic_max) {
		snprintf(why, why_len, "at most %" PRIu32 " partitions per topic",
			 bo->store.queues_per_topic_max);
		return KF_ERR_INVALID_PARTITIONS;
	}
	if (t->nassign >= 0 && (uint32_t)t->nassign != (uint32_t)t->count - ti.queues) {
		snprintf(why, why_len,
			 "%" PRIu32 " partitions added but %" PRId32 " assignments given",
			 (uint32_t)t->count - ti.queues, t->nassign);
		return KF_ERR_INVALID_REPLICA_ASSIGNMENT;
	}
	if (t->assign_bad) {
		snprintf(why, why_len, "this cluster has one broker: each assignment must be [%d]",
			 KF_NODE_ID);
		return KF_ERR_INVALID_REPLICA_ASSIGNMENT;
	}
	if (validate_only)
		return KF_ERR_NONE;
	rc = cfx_broker_topic_update(svc->br, ti.name, ti.type, (uint32_t)t->count);
	if (rc == CFX_ENOENT) {
		snprintf(why, why_len, "the topic does not exist");
		return KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	if (rc == CFX_EQUEUE) { /* grown further by someone else meanwhile */
		snprintf(why, why_len, "the topic's partition count changed meanwhile");
		return KF_ERR_INVALID_PARTITIONS;
	}
	if (rc) {
		snprintf(why, why_len, "%s", cfx_strerror(rc));
		return KF_ERR_UNKNOWN_SERVER_ERROR;
	}
	cfx_log_info("kafka: topic %s grown from %" PRIu32 " to %" PRId32 " partitions", ti.name,
		     ti.queues, t->count);
	return KF_ERR_NONE;
}

void kf_create_partitions(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	int flex = r->flex;
	/* Smallest topic: name, count, null assignments (and its tagged fields). */
	int32_t nt = kf_read_array_len_min(rd, flex, flex ? 7 : 10);
	struct cp_topic *topics = NULL;
	int validate_only;

	if (!rd->err && nt > CP_TOPICS_MAX)
		cfx_reader_fail(rd, "too many topics");
	if (!rd->err && nt > 0)
		topics = cfx_calloc((size_t)nt, sizeof *topics);
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		struct cp_topic *t = &topics[i];

		t->name = kf_read_string(rd, flex, NULL);
		t->count = kf_read_i32(rd);
		t->nassign = kf_read_array_len_min(rd, flex, flex ? 2 : 4);
		for (int32_t a = 0; a < t->nassign && !rd->err; a++) {
			int32_t nb = kf_read_array_len_min(rd, flex, 4);
			if (nb != 1)
				t->assign_bad = 1;
			for (int32_t b = 0; b < nb && !rd->err; b++)
				if (kf_read_i32(rd) != KF_NODE_ID)
					t->assign_bad = 1;
			if (flex)
				kf_skip_tagged_fields(rd);
		}
		if (flex)
			kf_skip_tagged_fields(rd);
	}
	kf_read_i32(rd); /* timeout: the change is done before the answer */
	validate_only = kf_read_bool(rd);
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || nt < 0) {
		cfx_free(topics);
		kafka__bad_request(kc, r, "CreatePartitions");
		return;
	}
	cp_mark_duplicates(topics, nt);

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	kf_write_i32(w, 0);		 /* Response: ThrottleTimeMs */
	kf_write_array_len(w, nt, flex); /* Response: Results */
	for (int32_t i = 0; i < nt; i++) {
		char why[192];
		int16_t err = kf_authorize(kc, CFX_AUTH_TOPIC, topics[i].name, CFX_AUTH_UPDATE);

		if (err)
			snprintf(why, sizeof why, "not authorized to change the topic");
		else
			err = cp_apply(kc->svc, &topics[i], validate_only, why, sizeof why);

		kf_write_string(w, topics[i].name, flex, 0); /* Results: Name */
		kf_write_i16(w, err);			     /* Results: ErrorCode */
		write_message(w, err ? why : NULL, flex);    /* Results: ErrorMessage */
		if (flex)
			kf_write_empty_tagged_fields(w);
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	cfx_free(topics);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * DescribeConfigs (v1-v4; flexible from v4)
 *
 * Resource types TOPIC and BROKER. A topic's configs are what Conflux does
 * for every topic, under Kafka's names: the store's retention, segment and
 * message size settings (STATIC_BROKER_CONFIG when confluxd was configured
 * away from its default, else DEFAULT_CONFIG), and fixed behaviour
 * (cleanup.policy=delete ...) as DEFAULT_CONFIG. Retention and segments
 * belong to the one commit log that all topics share, not to a partition.
 * ------------------------------------------------------------------------ */

enum {
	RES_TOPIC = 2,
	RES_BROKER = 4,
};

/* ConfigSource */
enum {
	SRC_STATIC_BROKER = 4,
	SRC_DEFAULT = 5,
};

/* ConfigType (v3+) */
enum {
	TYPE_BOOLEAN = 1,
	TYPE_STRING = 2,
	TYPE_INT = 3,
	TYPE_LONG = 5,
	TYPE_LIST = 7,
};

#define CFGS_MAX      16
#define CFG_NUM_BYTES 24

struct cfg {
	const char *name;
	const char *value;
	int8_t source;
	int8_t type;
	const char *synonym; /* the broker-wide name behind a topic config; NULL: the name */
	const char *doc;
};

struct cfg_set {
	struct cfg v[CFGS_MAX];
	uint32_t n;
	char num[CFGS_MAX][CFG_NUM_BYTES]; /* values of numeric configs */
	uint32_t nnum;
	char dir[PATH_MAX];
};

static const char *cfg_num(struct cfg_set *s, int64_t v)
{
	CFX_ASSERT(s->nnum < CFGS_MAX);
	snprintf(s->num[s->nnum], CFG_NUM_BYTES, "%" PRId64, v);
	return s->num[s->nnum++];
}

static void cfg_add(struct cfg_set *s, const char *name, const char *value, int is_default,
		    int8_t type, const char *synonym, const char *doc)
{
	CFX_ASSERT(s->n < CFGS_MAX);
	s->v[s->n++] = (struct cfg){
		.name = name,
		.value = value,
		.source = is_default ? SRC_DEFAULT : SRC_STATIC_BROKER,
		.type = type,
		.synonym = synonym,
		.doc = doc,
	};
}

/* The settings both resource types show, under the topic's or the broker's names. */
static void cfg_add_store(struct cfg_set *s, const struct cfx_store_opts *so,
			  const struct cfx_store_opts *def, int broker)
{
	cfg_add(s, broker ? "message.max.bytes" : "max.message.bytes",
		cfg_num(s, so->msg_bytes_max), so->msg_bytes_max == def->msg_bytes_max, TYPE_INT,
		broker ? NULL : "message.max.bytes",
		"The largest record batch a producer may send (store.message_bytes_max).");
	cfg_add(s, broker ? "log.retention.bytes" : "retention.bytes",
		cfg_num(s, so->retention_bytes ? so->retention_bytes : -1),
		so->retention_bytes == def->retention_bytes, TYPE_LONG,
		broker ? NULL : "log.retention.bytes",
		"Size limit of the commit log that all topics share (store.retention_bytes); "
		"-1: none.");
	cfg_add(s, broker ? "log.retention.ms" : "retention.ms",
		cfg_num(s, so->retention_ms ? so->retention_ms : -1),
		so->retention_ms == def->retention_ms, TYPE_LONG,
		broker ? NULL : "log.retention.ms",
		"Age after which a segment of the commit log is deleted (store.retention_time); "
		"-1: kept.");
	cfg_add(s, broker ? "log.segment.bytes" : "segment.bytes",
		cfg_num(s, (int64_t)so->segment_bytes), so->segment_bytes == def->segment_bytes,
		TYPE_INT, broker ? NULL : "log.segment.bytes",
		"Size of a segment of the commit log that all topics share (store.segment_bytes).");
}

static void cfg_topic(struct kafka_service *svc, struct cfg_set *s)
{
	const struct cfx_broker_opts *bo = cfx_broker_opts_of(svc->br);
	struct cfx_broker_opts def;

	cfx_broker_opts_default(&def);
	cfg_add(s, "cleanup.policy", "delete", 1, TYPE_LIST, "log.cleanup.policy",
		"Segments past retention are deleted; Conflux does not compact.");
	cfg_add(s, "compression.type", "producer", 1, TYPE_STRING, "compression.type",
		"Batches are stored as the producer compressed them.");
	cfg_add(s, "message.timestamp.type", "CreateTime", 1, TYPE_STRING,
		"log.message.timestamp.type", "Records keep the producer's timestamps.");
	cfg_add(s, "min.insync.replicas", "1", 1, TYPE_INT, "min.insync.replicas",
		"One broker: acks=-1 waits for the record to be on disk here.");
	cfg_add_store(s, &bo->store, &def.store, 0);
}

static void cfg_broker(struct kafka_service *svc, struct cfg_set *s)
{
	const struct cfx_broker_opts *bo = cfx_broker_opts_of(svc->br);
	struct cfx_broker_opts def;

	cfx_broker_opts_default(&def);
	if (!realpath(bo->store.dir, s->dir))
		snprintf(s->dir, sizeof s->dir, "%s", bo->store.dir);
	cfg_add(s, "auto.create.topics.enable", bo->auto_create ? "true" : "false",
		!bo->auto_create == !def.auto_create, TYPE_BOOLEAN, NULL,
		"Topics are created on first use (broker.auto_create).");
	cfg_add(s, "broker.id", cfg_num(s, KF_NODE_ID), 1, TYPE_INT, NULL,
		"This broker's node id: the only broker of the cluster.");
	cfg_add(s, "default.replication.factor", "1", 1, TYPE_INT, NULL,
		"One broker: every partition has one replica.");
	cfg_add(s, "log.dirs", s->dir, strcmp(bo->store.dir, def.store.dir) == 0, TYPE_STRING, NULL,
		"The data directory (data_dir).");
	cfg_add(s, "num.partitions", cfg_num(s, svc->o.default_partitions),
		svc->o.default_partitions == def.default_queues, TYPE_INT, NULL,
		"Partitions of an auto-created topic (broker.default_queues).");
	cfg_add_store(s, &bo->store, &def.store, 1);
}

/* Is `name` among the keys asked for? `keys` is positioned on the (already
 * decoded) ConfigurationKeys array; a null or empty one asks for all. */
static int cfg_wanted(struct cfx_reader keys, int flex, const char *name)
{
	int32_t n = kf_read_array_len(&keys, flex);

	if (n <= 0)
		return 1;
	for (int32_t i = 0; i < n; i++)
		if (cfx_view_eq_str(kf_read_string(&keys, flex, NULL), name))
			return 1;
	return 0;
}

static void write_config(struct cfx_writer *w, int16_t v, int flex, const struct cfg *c,
			 int synonyms, int docs)
{
	kf_write_string(w, CFX_VIEW_STR(c->name), flex, 0);  /* Configs: Name */
	kf_write_string(w, CFX_VIEW_STR(c->value), flex, 0); /* Configs: Value */
	kf_write_bool(w, 1);	   /* Configs: ReadOnly (no Kafka API alters them) */
	kf_write_i8(w, c->source); /* Configs: ConfigSource */
	kf_write_bool(w, 0);	   /* Configs: IsSensitive */
	kf_write_array_len(w, synonyms ? 1 : 0, flex); /* Configs: Synonyms */
	if (synonyms) {
		kf_write_string(w, CFX_VIEW_STR(c->synonym ? c->synonym : c->name), flex, 0);
		kf_write_string(w, CFX_VIEW_STR(c->value), flex, 0);
		kf_write_i8(w, c->source);
		if (flex)
			kf_write_empty_tagged_fields(w);
	}
	if (v >= 3) {
		kf_write_i8(w, c->type);		      /* Configs: ConfigType */
		write_message(w, docs ? c->doc : NULL, flex); /* Configs: Documentation */
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
}

/* Is a broker resource name this broker's id ("0", also "00" as Kafka parses it)? */
static int is_this_broker(struct cfx_view name)
{
	uint64_t id = 0;

	if (!name.len || name.len > 10)
		return 0;
	for (size_t i = 0; i < name.len; i++) {
		if (name.p[i] < '0' || name.p[i] > '9')
			return 0;
		id = id * 10 + (uint64_t)(name.p[i] - '0');
	}
	return id == KF_NODE_ID;
}

/* One resource's result. `keys` is positioned on its ConfigurationKeys. */
static void describe_resource(struct kconn *kc, struct kreq *r, int8_t type,
			      struct cfx_view name, struct cfx_reader keys, int synonyms, int docs)
{
	struct kafka_service *svc = kc->svc;
	struct cfx_writer *w = &r->out;
	int16_t v = r->h.api_version;
	int flex = r->flex;
	struct cfg_set *s = cfx_calloc(1, sizeof *s);
	const char *why = NULL;
	int16_t err = KF_ERR_NONE;
	struct cfx_topic_info ti;

	if (type == RES_TOPIC) {
		err = name.len > TOPIC_NAME_BYTES_MAX ? KF_ERR_INVALID_TOPIC_EXCEPTION
			: kf_authorize(kc, CFX_AUTH_TOPIC, name, CFX_AUTH_GET)
			? KF_ERR_TOPIC_AUTHORIZATION_FAILED
			: topic_lookup(svc, name, &ti);
		if (err == KF_ERR_TOPIC_AUTHORIZATION_FAILED)
			why = "not authorized to describe the topic";
		else if (err == KF_ERR_INVALID_TOPIC_EXCEPTION)
			why = "invalid topic name";
		else if (err)
			why = "the topic does not exist";
		else
			cfg_topic(svc, s);
	} else if (type == RES_BROKER) {
		if (is_this_broker(name)) {
			cfg_broker(svc, s);
		} else if (name.len) { /* empty: the cluster-wide dynamic defaults, none here */
			err = KF_ERR_INVALID_REQUEST;
			why = "this cluster has one broker, node 0";
		}
	} else {
		err = KF_ERR_INVALID_REQUEST;
		why = "only topics (2) and brokers (4) have configs here";
	}
	kf_write_i16(w, err);		   /* Results: ErrorCode */
	write_message(w, why, flex);	   /* Results: ErrorMessage */
	kf_write_i8(w, type);		   /* Results: ResourceType */
	kf_write_string(w, name, flex, 0); /* Results: ResourceName */
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->n; i++)
		n += (uint32_t)cfg_wanted(keys, flex, s->v[i].name);
	kf_write_array_len(w, (int32_t)n, flex); /* Results: Configs */
	for (uint32_t i = 0; i < s->n; i++)
		if (cfg_wanted(keys, flex, s->v[i].name))
			write_config(w, v, flex, &s->v[i], synonyms, docs);
	if (flex)
		kf_write_empty_tagged_fields(w);
	cfx_free(s);
}

/* Reads one resource (ResourceType, ResourceName, ConfigurationKeys);
 * *keys is left on its ConfigurationKeys. */
static void read_resource(struct cfx_reader *rd, int flex, int8_t *type, struct cfx_view *name,
			  struct cfx_reader *keys)
{
	int32_t nk;

	*type = kf_read_i8(rd);
	*name = kf_read_string(rd, flex, NULL);
	*keys = *rd;
	nk = kf_read_array_len_min(rd, flex, flex ? 1 : 2);
	for (int32_t k = 0; k < nk && !rd->err; k++)
		kf_read_string(rd, flex, NULL);
	if (flex)
		kf_skip_tagged_fields(rd);
}

void kf_describe_configs(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	int16_t v = r->h.api_version;
	int flex = r->flex, synonyms, docs = 0;
	/* Smallest resource: type, name, null keys (and its tagged fields). */
	int32_t n = kf_read_array_len_min(rd, flex, flex ? 4 : 7);
	struct cfx_reader first = *rd;
	int8_t type;
	struct cfx_view name;
	struct cfx_reader keys;

	/* First pass: the whole request must decode, and the flags come last. */
	for (int32_t i = 0; i < n && !rd->err; i++)
		read_resource(rd, flex, &type, &name, &keys);
	synonyms = kf_read_bool(rd);
	if (v >= 3)
		docs = kf_read_bool(rd);
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || n < 0) {
		kafka__bad_request(kc, r, "DescribeConfigs");
		return;
	}

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	kf_write_i32(w, 0);		/* Response: ThrottleTimeMs */
	kf_write_array_len(w, n, flex); /* Response: Results */
	*rd = first;
	for (int32_t i = 0; i < n; i++) {
		read_resource(rd, flex, &type, &name, &keys);
		describe_resource(kc, r, type, name, keys, synonyms, docs);
	}
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * DescribeCluster (v0-v1; always flexible)
 * ------------------------------------------------------------------------ */

#define ENDPOINT_BROKERS     1
#define ENDPOINT_CONTROLLERS 2
/* With no authorizer every cluster operation is allowed: Kafka's bits for
 * CREATE (5), ALTER (7), DESCRIBE (8), CLUSTER_ACTION (9), DESCRIBE_CONFIGS
 * (10), ALTER_CONFIGS (11) and IDEMPOTENT_WRITE (12). */
#define CLUSTER_OPERATIONS_ALL 0x1fa0

void kf_describe_cluster(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	int16_t v = r->h.api_version;
	int flex = r->flex, ops;
	int8_t endpoint = ENDPOINT_BROKERS;
	const char *why = NULL;
	int16_t err = KF_ERR_NONE;

	ops = kf_read_bool(rd);
	if (v >= 1)
		endpoint = kf_read_i8(rd);
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err) {
		kafka__bad_request(kc, r, "DescribeCluster");
		return;
	}
	if (endpoint == ENDPOINT_CONTROLLERS) {
		err = KF_ERR_MISMATCHED_ENDPOINT_TYPE;
		why = "this is a broker endpoint; the broker is its own controller";
	} else if (endpoint != ENDPOINT_BROKERS) {
		err = KF_ERR_UNSUPPORTED_ENDPOINT_TYPE;
		why = "unknown endpoint type";
	}

	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);
	kf_write_i32(w, 0);	     /* Response: ThrottleTimeMs */
	kf_write_i16(w, err);	     /* Response: ErrorCode */
	write_message(w, why, flex); /* Response: ErrorMessage */
	if (v >= 1)
		kf_write_i8(w, endpoint); /* Response: EndpointType */
	kf_write_string(w, CFX_VIEW_STR(err ? "" : svc->o.cluster_id), flex, 0); /* ClusterId */
	kf_write_i32(w, err ? -1 : KF_NODE_ID);	  /* Response: ControllerId */
	kf_write_array_len(w, err ? 0 : 1, flex); /* Response: Brokers */
	if (!err) {
		kf_write_i32(w, KF_NODE_ID);			      /* Brokers: BrokerId */
		kf_write_string(w, CFX_VIEW_STR(svc->host), flex, 0); /* Brokers: Host */
		kf_write_i32(w, svc->port);			      /* Brokers: Port */
		kf_write_string(w, (struct cfx_view){0}, flex, 1);    /* Brokers: Rack */
		if (flex)
			kf_write_empty_tagged_fields(w);
	}
	kf_write_i32(w, ops && !err ? CLUSTER_OPERATIONS_ALL
				    : INT32_MIN); /* ClusterAuthorizedOperations */
	if (flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * OffsetForLeaderEpoch (v2-v4; flexible from v4)
 *
 * The end offset of a leader epoch: with one epoch since the partition's
 * beginning, that of the current epoch is the log end offset. As in
 * Kafka's epoch cache: epoch -1 (undefined) and epochs above the current
 * one answer epoch -1 and offset -1; an epoch below the first one answers
 * itself and the first offset still stored. CurrentLeaderEpoch fences as
 * in Kafka: below the current epoch FENCED_LEADER_EPOCH, above it
 * UNKNOWN_LEADER_EPOCH, -1 no check.
 * ------------------------------------------------------------------------ */

void kf_offset_for_leader_epoch(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	struct kafka_service *svc = kc->svc;
	struct cfx_store *st = cfx_broker_store(svc->br);
	int16_t v = r->h.api_version;
	int flex = r->flex;
	struct cfx_writer body;
	int32_t nt;

	if (v >= 3)
		kf_read_i32(rd); /* replica id: consumers and followers get the same answer */
	/* Smallest topic: name, partitions (and its tagged fields). */
	nt = kf_read_array_len_min(rd, flex, flex ? 3 : 6);
	cfx_writer_init(&body, 256);
	kf_write_array_len(&body, nt < 0 ? 0 : nt, flex); /* Response: Topics */
	for (int32_t i = 0; i < nt && !rd->err; i++) {
		struct cfx_view topic = kf_read_string(rd, flex, NULL);
		int32_t np = kf_read_array_len_min(rd, flex, flex ? 13 : 12);
		struct cfx_topic_info ti = {0};
		int16_t terr = rd->err ? KF_ERR_NONE : topic_lookup(svc, topic, &ti);

		kf_write_string(&body, topic, flex, 0);		  /* Topics: Topic */
		kf_write_array_len(&body, np < 0 ? 0 : np, flex); /* Topics: Partitions */
		for (int32_t k = 0; k < np && !rd->err; k++) {
			int32_t part = kf_read_i32(rd);
			int32_t current = kf_read_i32(rd);
			int32_t epoch = kf_read_i32(rd);
			int16_t err = terr;
			int32_t end_epoch = -1;
			int64_t end_offset = -1;
			uint64_t lstart = 0, lend = 0;

			if (flex)
				kf_skip_tagged_fields(rd);
			if (!err && (part < 0 || (uint32_t)part >= ti.queues))
				err = KF_ERR_UNKNOWN_TOPIC_OR_PARTITION;
			if (!err && current != -1 && current < KF_LEADER_EPOCH)
				err = KF_ERR_FENCED_LEADER_EPOCH;
			if (!err && current > KF_LEADER_EPOCH)
				err = KF_ERR_UNKNOWN_LEADER_EPOCH;
			if (!err) {
				/* A queue with no record yet has no bounds: 0 and 0. */
				cfx_store_queue_bounds(st, topic, (uint32_t)part, &lstart, &lend);
				if (epoch == KF_LEADER_EPOCH) {
					end_epoch = epoch;
					end_offset = (int64_t)lend;
				} else if (epoch < -1) {
					end_epoch = epoch;
					end_offset = (int64_t)lstart;
				}
			}
			kf_write_i16(&body, err);	 /* Partitions: ErrorCode */
			kf_write_i32(&body, part);	 /* Partitions: Partition */
			kf_write_i32(&body, end_epoch);	 /* Partitions: LeaderEpoch */
			kf_write_i64(&body, end_offset); /* Partitions: EndOffset */
			if (flex)
				kf_write_empty_tagged_fields(&body);
		}
		if (flex) {
			kf_skip_tagged_fields(rd);
			kf_write_empty_tagged_fields(&body);
		}
	}
	if (flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || nt < 0) {
		cfx_writer_free(&body);
		kafka__bad_request(kc, r, "OffsetForLeaderEpoch");
		return;
	}
	size_t start = kreq_begin(r);
	kf_write_i32(&r->out, 0); /* Response: ThrottleTimeMs */
	cfx_write_bytes(&r->out, body.p, body.len);
	cfx_writer_free(&body);
	if (flex)
		kf_write_empty_tagged_fields(&r->out);
	kf_end_response(&r->out, start);
	kreq_done(r);
}
