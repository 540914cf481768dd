/*
 * kafka_bench.c - a Kafka-protocol producer and consumer benchmark on
 * librdkafka, for any broker that speaks Kafka (confluxd's kafka.listen).
 *
 *   kafka_bench BROKER TOPIC [--size BYTES] [--count N] [--partitions P] [--json]
 *
 * Produce: N records of BYTES (no key), acks=1, no compression, batching
 * on (linger.ms 5, up to 10,000 records or 1 MB per batch), spread over
 * the topic's partitions; timed from the first record to the last delivery
 * report. Fetch: the same records read back from the beginning of every
 * partition (no consumer group: one queue for all partitions), timed until
 * N records arrived. Prints records/s and MB/s of each (MB = 10^6 bytes of
 * record values).
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long delivered, failed;
static long got, got_bytes;

static void consume_cb(rd_kafka_message_t *m, void *opaque)
{
	(void)opaque;
	if (!m->err) {
		got++;
		got_bytes += (long)m->len;
	}
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		failed++;
	else
		delivered++;
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[256];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka_bench: %s=%s: %s\n", k, v, err);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *broker, *topic;
	long count = 1000000, size = 100, partitions = 4;
	int json = 0;
	char err[512];

	if (argc < 3) {
		fprintf(stderr, "usage: kafka_bench BROKER TOPIC [--size BYTES] [--count N] "
				"[--partitions P] [--json]\n");
		return 2;
	}
	broker = argv[1];
	topic = argv[2];
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (i + 1 < argc && !strcmp(argv[i], "--size"))
			size = atol(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--count"))
			count = atol(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--partitions"))
			partitions = atol(argv[++i]);
		else {
			fprintf(stderr, "kafka_bench: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (count <= 0 || size <= 0 || partitions <= 0)
		return 2;

	/* Produce. */
	rd_kafka_conf_t *pc = rd_kafka_conf_new();
	if (set(pc, "bootstrap.servers", broker) || set(pc, "acks", "1") ||
	    set(pc, "linger.ms", "5") || set(pc, "batch.num.messages", "10000") ||
	    set(pc, "batch.size", "1000000") || set(pc, "compression.codec", "none") ||
	    set(pc, "queue.buffering.max.messages", "2000000") ||
	    set(pc, "queue.buffering.max.kbytes", "2097151"))
		return 1;
	rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
	rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
	if (!p) {
		fprintf(stderr, "kafka_bench: %s\n", err);
		return 1;
	}
	char *value = malloc((size_t)size);
	memset(value, 'v', (size_t)size);
	double t0 = now_s();
	for (long i = 0; i < count; i++) {
		while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
					 RD_KAFKA_V_PARTITION((int32_t)(i % partitions)),
					 RD_KAFKA_V_VALUE(value, (size_t)size),
					 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(p, 1);
		if ((i & 1023) == 0)
			rd_kafka_poll(p, 0);
	}
	rd_kafka_flush(p, 120000);
	double t1 = now_s();
	rd_kafka_destroy(p);
	if (delivered != count) {
		fprintf(stderr, "kafka_bench: %ld of %ld records delivered, %ld failed\n", delivered,
			count, failed);
		return 1;
	}

	/* Fetch: every partition from the beginning into one queue. */
	rd_kafka_conf_t *cc = rd_kafka_conf_new();
	if (set(cc, "bootstrap.servers", broker) || set(cc, "fetch.max.bytes", "52428800") ||
	    set(cc, "fetch.message.max.bytes", "10485760") ||
	    set(cc, "queued.max.messages.kbytes", "1000000") || set(cc, "fetch.wait.max.ms", "100"))
		return 1;
	rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
	if (!c) {
		fprintf(stderr, "kafka_bench: %s\n", err);
		return 1;
	}
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
	rd_kafka_queue_t *q = rd_kafka_queue_new(c);
	double t2 = now_s();
	for (long k = 0; k < partitions; k++)
		if (rd_kafka_consume_start_queue(rkt, (int32_t)k, RD_KAFKA_OFFSET_BEGINNING, q)) {
			fprintf(stderr, "kafka_bench: cannot consume partition %ld\n", k);
			return 1;
		}
	/* The callback form: no message objects to hand back and forth. */
	while (got < count && now_s() - t2 < 300)
		rd_kafka_consume_callback_queue(q, 10, consume_cb, NULL);
	double t3 = now_s();
	for (long k = 0; k < partitions; k++)
		rd_kafka_consume_stop(rkt, (int32_t)k);
	rd_kafka_queue_destroy(q);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(c);
	free(value);

	double ps = t1 - t0, fs = t3 - t2;
	if (json)
		printf("{\"size\":%ld,\"count\":%ld,\"produce_seconds\":%.3f,\"produce_records_per_s\":"
		       "%.0f,\"produce_mb_per_s\":%.1f,\"fetch_seconds\":%.3f,\"fetched\":%ld,"
		       "\"fetch_records_per_s\":%.0f,\"fetch_mb_per_s\":%.1f}\n",
		       size, count, ps, count / ps, count * (double)size / ps / 1e6, fs, got,
		       got / fs, got_bytes / fs / 1e6);
	else
		printf("produce %ld x %ld B: %.0f records/s, %.1f MB/s\n"
		       "fetch   %ld records: %.0f records/s, %.1f MB/s\n",
		       count, size, count / ps, count * (double)size / ps / 1e6, got, got / fs,
		       got_bytes / fs / 1e6);
	return got == count ? 0 : 1;
}
