/*
 * kafka_rdkafka.c - the idempotent producer of librdkafka against a real
 * confluxd, once per compression codec (run by 06-kafka-idempotence.sh).
 *
 *   kafka_rdkafka BROKER TOPIC_PREFIX [RECORDS]
 *
 * For each of none, gzip, snappy, lz4 and zstd: creates TOPIC_PREFIX-codec
 * with 3 partitions (CreateTopics), produces RECORDS keyed records with
 * headers (enable.idempotence, acks=all, linger.ms=5), and checks that
 * every delivery report succeeded, that the producer got a producer id
 * (statistics: idempotence state "Assigned"), that it raised no fatal and
 * no other error. Then reads every partition from the beginning (no
 * consumer group: one queue for the three) and checks the exact count,
 * each record's key, value and headers, that it sits at the partition and
 * offset its delivery report gave, per-partition order, and no duplicate.
 *
 * Exit status 0 if all is well; every failure is printed.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PARTITIONS 3
#define WAIT_S 60

struct rec {
	int delivered;	/* delivery reports seen (must end as 1) */
	int dr_err;
	int32_t partition;
	int64_t offset;
	int seen;	/* times consumed */
};

static struct rec *recs;
static long nrecs;
static int errors_seen, assigned;
static int64_t producer_id = -1;
static int failures;

static void fail(const char *fmt, ...)
{
	va_list ap;

	if (++failures > 20)
		return; /* enough to go on */
	va_start(ap, fmt);
	fputs("FAIL: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[256];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fail("%s=%s: %s", k, v, err);
		return -1;
	}
	return 0;
}

/* The value of record i: long enough, and repetitive enough, to compress. */
static size_t value_of(char *buf, size_t n, const char *codec, long i)
{
	int len = snprintf(buf, n, "value %s %05ld ", codec, i);
	for (int k = 0; k < 6; k++)
		len += snprintf(buf + len, n - (size_t)len, "lorem-ipsum-%ld-", i % 7);
	return (size_t)len;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	long i = (long)(intptr_t)m->_private;

	(void)rk;
	(void)opaque;
	if (i < 0 || i >= nrecs) {
		fail("delivery report for an unknown record");
		return;
	}
	recs[i].delivered++;
	recs[i].dr_err = m->err;
	recs[i].partition = m->partition;
	recs[i].offset = m->offset;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	errors_seen++;
	printf("producer error: %s: %s\n", rd_kafka_err2name(err), reason);
}

/* The JSON text after `"name":` and any blanks, or NULL. */
static const char *json_value(const char *json, const char *name)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof pat, "\"%s\":", name);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	for (p += strlen(pat); *p == ' '; p++)
		;
	return p;
}

/* The statistics say whether the idempotent producer got its id. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	const char *state = json_value(json, "idemp_state");
	const char *id = json_value(json, "producer_id");

	(void)rk;
	(void)len;
	(void)opaque;
	if (state && id && strncmp(state, "\"Assigned\"", 10) == 0) {
		assigned = 1;
		producer_id = strtoll(id, NULL, 10);
	}
	return 0; /* librdkafka frees json */
}

static int create_topic(rd_kafka_t *rk, const char *topic)
{
	char err[256];
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, PARTITIONS, 1, err, sizeof err);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;
	int rc = -1;

	if (!nt) {
		fail("NewTopic %s: %s", topic, err);
		return -1;
	}
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, WAIT_S * 1000);
	if (!ev) {
		fail("CreateTopics %s: no answer", topic);
	} else if (rd_kafka_event_error(ev)) {
		fail("CreateTopics %s: %s", topic, rd_kafka_event_error_string(ev));
	} else {
		size_t n;
		const rd_kafka_topic_result_t **res =
			rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
		if (n != 1 || rd_kafka_topic_result_error(res[0]))
			fail("CreateTopics %s: %s", topic,
			     n == 1 ? rd_kafka_topic_result_error_string(res[0]) : "no result");
		else
			rc = 0;
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	return rc;
}

static int produce(const char *broker, const char *codec, const char *topic)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512], key[32], value[256], idx[24];
	rd_kafka_t *rk;
	int rc = 0;

	if (set(conf, "bootstrap.servers", broker) || set(conf, "enable.idempotence", "true") ||
	    set(conf, "acks", "all") || set(conf, "linger.ms", "5") ||
	    set(conf, "compression.codec", codec) || set(conf, "statistics.interval.ms", "100") ||
	    set(conf, "message.timeout.ms", "60000")) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk) {
		fail("producer: %s", err);
		return -1;
	}
	if (create_topic(rk, topic)) {
		rd_kafka_destroy(rk);
		return -1;
	}
	for (long i = 0; i < nrecs; i++) {
		rd_kafka_headers_t *h = rd_kafka_headers_new(3);
		size_t vlen = value_of(value, sizeof value, codec, i);
		rd_kafka_resp_err_t e;

		snprintf(key, sizeof key, "key-%05ld", i);
		snprintf(idx, sizeof idx, "%ld", i);
		rd_kafka_header_add(h, "idx", -1, idx, -1);
		rd_kafka_header_add(h, "codec", -1, codec, -1);
		rd_kafka_header_add(h, "nil", -1, NULL, 0);
		while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
					      RD_KAFKA_V_KEY(key, strlen(key)),
					      RD_KAFKA_V_VALUE(value, vlen), RD_KAFKA_V_HEADERS(h),
					      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					      RD_KAFKA_V_OPAQUE((void *)(intptr_t)i),
					      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 10);
		if (e) {
			rd_kafka_headers_destroy(h);
			fail("%s: produce %ld: %s", codec, i, rd_kafka_err2str(e));
			rc = -1;
			break;
		}
		if ((i & 255) == 0)
			rd_kafka_poll(rk, 0);
	}
	if (rd_kafka_flush(rk, WAIT_S * 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fail("%s: flush: %d records still queued", codec, rd_kafka_outq_len(rk));
		rc = -1;
	}
	for (double t = now_s(); !assigned && now_s() - t < 5;)
		rd_kafka_poll(rk, 50);
	if (!assigned || producer_id < 0)
		fail("%s: the idempotent producer got no producer id", codec);
	if (rd_kafka_fatal_error(rk, err, sizeof err))
		fail("%s: fatal idempotence error: %s", codec, err);
	if (errors_seen)
		fail("%s: the producer reported %d errors", codec, errors_seen);
	for (long i = 0; i < nrecs && !rc; i++) {
		if (recs[i].delivered != 1)
			fail("%s: record %ld: %d delivery reports", codec, i, recs[i].delivered);
		else if (recs[i].dr_err)
			fail("%s: record %ld: delivery failed: %s", codec, i,
			     rd_kafka_err2str(recs[i].dr_err));
	}
	rd_kafka_destroy(rk);
	return rc;
}

/* Is header `name` exactly `want` (NULL: a null value)? */
static int header_is(rd_kafka_headers_t *h, const char *name, const char *want)
{
	const void *v;
	size_t n;

	if (!h || rd_kafka_header_get_last(h, name, &v, &n))
		return 0;
	if (!want)
		return v == NULL;
	return v && n == strlen(want) && memcmp(v, want, n) == 0;
}

static int consume(const char *broker, const char *codec, const char *topic)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512], value[256], idx[24];
	int64_t last_off[PARTITIONS];
	long last_idx[PARTITIONS], got = 0;
	int eof[PARTITIONS] = { 0 }, neof = 0;
	rd_kafka_t *rk;

	if (set(conf, "bootstrap.servers", broker) || set(conf, "enable.partition.eof", "true") ||
	    set(conf, "check.crcs", "true") || set(conf, "fetch.wait.max.ms", "100")) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (!rk) {
		fail("consumer: %s", err);
		return -1;
	}
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	for (int p = 0; p < PARTITIONS; p++) {
		last_off[p] = -1;
		last_idx[p] = -1;
		if (rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q))
			fail("%s: cannot consume partition %d", codec, p);
	}
	for (double t0 = now_s(); neof < PARTITIONS && now_s() - t0 < WAIT_S;) {
		rd_kafka_message_t *m = rd_kafka_consume_queue(q, 100);
		if (!m)
			continue;
		int p = m->partition;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (p >= 0 && p < PARTITIONS && !eof[p]++)
				neof++;
		} else if (m->err) {
			fail("%s: consume: %s", codec, rd_kafka_message_errstr(m));
		} else {
			rd_kafka_headers_t *h = NULL;
			long i = -1;
			char key[32];
			size_t vlen;

			got++;
			if (m->key_len < sizeof key) {
				memcpy(key, m->key, m->key_len);
				key[m->key_len] = '\0';
				if (sscanf(key, "key-%ld", &i) != 1 || i < 0 || i >= nrecs)
					i = -1;
			}
			if (i < 0) {
				fail("%s: unexpected key at %d/%" PRId64, codec, p, m->offset);
				rd_kafka_message_destroy(m);
				continue;
			}
			rd_kafka_message_headers(m, &h);
			vlen = value_of(value, sizeof value, codec, i);
			snprintf(idx, sizeof idx, "%ld", i);
			if (recs[i].seen++)
				fail("%s: record %ld read twice (at %d/%" PRId64 ")", codec, i, p,
				     m->offset);
			if (m->len != vlen || memcmp(m->payload, value, vlen) != 0)
				fail("%s: record %ld: wrong value", codec, i);
			if (!header_is(h, "idx", idx) || !header_is(h, "codec", codec) ||
			    !header_is(h, "nil", NULL) || rd_kafka_header_cnt(h) != 3)
				fail("%s: record %ld: wrong headers", codec, i);
			if (p != recs[i].partition || m->offset != recs[i].offset)
				fail("%s: record %ld at %d/%" PRId64 ", delivered to %d/%" PRId64, codec,
				     i, p, m->offset, recs[i].partition, recs[i].offset);
			if (p >= 0 && p < PARTITIONS) {
				if (m->offset <= last_off[p] || i <= last_idx[p])
					fail("%s: partition %d out of order at offset %" PRId64, codec,
					     p, m->offset);
				last_off[p] = m->offset;
				last_idx[p] = i;
			}
		}
		rd_kafka_message_destroy(m);
	}
	if (neof < PARTITIONS)
		fail("%s: only %d partitions read to their end", codec, neof);
	for (int p = 0; p < PARTITIONS; p++)
		rd_kafka_consume_stop(rkt, p);
	rd_kafka_queue_destroy(q);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	if (got != nrecs)
		fail("%s: read %ld records, produced %ld", codec, got, nrecs);
	for (long i = 0; i < nrecs; i++)
		if (recs[i].seen != 1) {
			fail("%s: record %ld read %d times", codec, i, recs[i].seen);
			break;
		}
	printf("%s: %ld records, producer id %" PRId64 ", partitions used:", codec, got,
	       producer_id);
	for (int p = 0; p < PARTITIONS; p++)
		printf(" %d", last_off[p] >= 0);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const codecs[] = { "none", "gzip", "snappy", "lz4", "zstd" };
	char topic[256];

	if (argc < 3) {
		fprintf(stderr, "usage: kafka_rdkafka BROKER TOPIC_PREFIX [RECORDS]\n");
		return 2;
	}
	nrecs = argc > 3 ? atol(argv[3]) : 2000;
	if (nrecs <= 0)
		return 2;
	recs = calloc((size_t)nrecs, sizeof *recs);
	for (size_t c = 0; c < sizeof codecs / sizeof codecs[0]; c++) {
		int before = failures;

		memset(recs, 0, (size_t)nrecs * sizeof *recs);
		errors_seen = assigned = 0;
		producer_id = -1;
		snprintf(topic, sizeof topic, "%s-%s", argv[2], codecs[c]);
		if (produce(argv[1], codecs[c], topic) == 0)
			consume(argv[1], codecs[c], topic);
		if (failures != before)
			printf("%s: FAILED\n", codecs[c]);
	}
	free(recs);
	if (failures)
		printf("kafka_rdkafka: %d failures\n", failures);
	return failures ? 1 : 0;
}
