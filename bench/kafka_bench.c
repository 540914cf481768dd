/*
 * kafka_bench.c - a Kafka-protocol producer and consumer benchmark on
 * librdkafka, for any broker that speaks Kafka (confluxd's kafka.listen).
 *
 *   kafka_bench BROKER TOPIC [--size BYTES] [--count N] [--partitions P] [--json]
 *   kafka_bench BROKER TOPIC --raw-only [--size BYTES] [--count N] [--partitions P]
 *
 * Produce: N records of BYTES (no key), acks=1, no compression, batching
 * on (linger.ms 5, up to 10,000 records or 1 MB per batch), spread over
 * the topic's partitions; timed from the first record to the last delivery
 * report. Fetch: the same records read back from the beginning of every
 * partition (no consumer group: one queue for all partitions), timed until
 * N records arrived. Prints records/s and MB/s of each (MB = 10^6 bytes of
 * record values).
 *
 * Raw fetch: the same records once more, read the way a follower replica
 * reads: Fetch v4 requests on one socket for every partition, each
 * response's record batches walked by their headers only (base offset,
 * length, last offset delta) to find the next offset, no record decoded.
 * This is what the broker serves when the client does not parse records;
 * the librdkafka figure above is bounded by the client's own record
 * handling on this 2-core machine.
 *
 * Raw produce: the same number of records again, as a client that
 * prepares its batches ahead would send them: one RecordBatch v2 of 1,000
 * records per partition per Produce v3 request (acks=1), 8 requests in
 * flight on one socket. This measures what the broker ingests when the
 * client costs little; librdkafka's own batching is the figure above.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
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

/* ------------------------------------------------------------------------
 * Raw fetch
 * ------------------------------------------------------------------------ */

static void put16(unsigned char **p, int v)
{
	*(*p)++ = (unsigned char)(v >> 8);
	*(*p)++ = (unsigned char)v;
}

static void put32(unsigned char **p, int32_t v)
{
	for (int i = 3; i >= 0; i--)
		*(*p)++ = (unsigned char)((uint32_t)v >> (i * 8));
}

static void put64(unsigned char **p, int64_t v)
{
	for (int i = 7; i >= 0; i--)
		*(*p)++ = (unsigned char)((uint64_t)v >> (i * 8));
}

static int64_t get(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return n == 2 ? (int16_t)v : n == 4 ? (int32_t)v : (int64_t)v;
}

static int read_full(int fd, unsigned char *p, size_t n)
{
	while (n) {
		ssize_t k = read(fd, p, n);
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int dial(const char *broker)
{
	char host[256];
	const char *colon = strrchr(broker, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	int fd, one = 1;

	if (!colon || (size_t)(colon - broker) >= sizeof host)
		return -1;
	memcpy(host, broker, (size_t)(colon - broker));
	host[colon - broker] = 0;
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* Reads every partition from offset 0 up to `want` records in total.
 * Returns the records read, and the bytes of record batches in *bytes. */
static long raw_fetch(const char *broker, const char *topic, long partitions, long want,
		      long *bytes)
{
	int fd = dial(broker);
	int64_t *next = calloc((size_t)partitions, sizeof *next);
	size_t cap = 64u << 20;
	unsigned char *buf = malloc(cap), req[4096];
	long records = 0;
	int32_t corr = 0;

	*bytes = 0;
	if (fd < 0 || !next || !buf || strlen(topic) > 200 || partitions > 200)
		return -1;
	while (records < want) {
		unsigned char *p = req + 4;
		put16(&p, 1); /* Fetch */
		put16(&p, 4);
		put32(&p, ++corr);
		put16(&p, 2);
		memcpy(p, "kb", 2);
		p += 2;
		put32(&p, -1);	      /* replica id */
		put32(&p, 100);	      /* max wait ms */
		put32(&p, 1);	      /* min bytes */
		put32(&p, 52428800); /* max bytes */
		*p++ = 0;	      /* isolation: read uncommitted */
		put32(&p, 1);
		put16(&p, (int)strlen(topic));
		memcpy(p, topic, strlen(topic));
		p += strlen(topic);
		put32(&p, (int32_t)partitions);
		for (long k = 0; k < partitions; k++) {
			put32(&p, (int32_t)k);
			put64(&p, next[k]);
			put32(&p, 10485760); /* partition max bytes */
		}
		unsigned char *q = req;
		put32(&q, (int32_t)(p - req - 4));
		if (write(fd, req, (size_t)(p - req)) != p - req)
			return -1;
		unsigned char hdr[4];
		if (read_full(fd, hdr, 4))
			return -1;
		size_t n = (size_t)get(hdr, 4);
		if (n > cap)
			return -1;
		if (read_full(fd, buf, n))
			return -1;
		/* correlation id, throttle, topics */
		const unsigned char *r = buf + 8, *end = buf + n;
		int32_t nt = (int32_t)get(r, 4);
		r += 4;
		for (int32_t t = 0; t < nt && r < end; t++) {
			r += 2 + get(r, 2);
			int32_t np = (int32_t)get(r, 4);
			r += 4;
			for (int32_t k = 0; k < np && r < end; k++) {
				int32_t part = (int32_t)get(r, 4);
				int16_t err = (int16_t)get(r + 4, 2);
				r += 4 + 2 + 8 + 8;
				int32_t na = (int32_t)get(r, 4);
				r += 4 + (na > 0 ? na * 16 : 0);
				int32_t len = (int32_t)get(r, 4);
				r += 4;
				if (err || len < 0 || part < 0 || part >= partitions) {
					if (err)
						fprintf(stderr, "kafka_bench: raw fetch: error %d\n", err);
					return err ? -1 : records;
				}
				const unsigned char *b = r, *bend = r + len;
				while (bend - b >= 61) {
					int64_t base = get(b, 8);
					int32_t blen = (int32_t)get(b + 8, 4);
					if (blen < 49 || bend - b < 12 + blen)
						break; /* a partial batch at the end */
					int32_t last_delta = (int32_t)get(b + 23, 4);
					int32_t count = (int32_t)get(b + 57, 4);
					if (base + last_delta + 1 > next[part]) {
						records += count;
						next[part] = base + last_delta + 1;
					}
					*bytes += 12 + blen;
					b += 12 + blen;
				}
				r += len;
			}
		}
	}
	close(fd);
	free(next);
	free(buf);
	return records;
}

/* ------------------------------------------------------------------------
 * Raw produce
 * ------------------------------------------------------------------------ */

static uint32_t crc32c_table[256];

static uint32_t crc32c(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	if (!crc32c_table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t x = i;
			for (int k = 0; k < 8; k++)
				x = x & 1 ? (x >> 1) ^ 0x82f63b78u : x >> 1;
			crc32c_table[i] = x;
		}
	while (n--)
		c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

static void put_varint(unsigned char **p, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	while (z >= 0x80) {
		*(*p)++ = (unsigned char)(z | 0x80);
		z >>= 7;
	}
	*(*p)++ = (unsigned char)z;
}

/* One RecordBatch v2 of n records of `size` bytes (no key, no headers). */
static size_t make_batch(unsigned char *out, int n, long size)
{
	unsigned char *p = out + 61, *start = out;
	int64_t now = (int64_t)(now_s() * 1000);

	for (int i = 0; i < n; i++) {
		unsigned char rec[64], *r = rec;
		*r++ = 0; /* attributes */
		put_varint(&r, 0);  /* timestamp delta */
		put_varint(&r, i);  /* offset delta */
		put_varint(&r, -1); /* key: null */
		put_varint(&r, size);
		size_t head = (size_t)(r - rec);
		put_varint(&p, (int64_t)(head + (size_t)size + 1));
		memcpy(p, rec, head);
		p += head;
		memset(p, 'v', (size_t)size);
		p += size;
		*p++ = 0; /* headers: none */
	}
	unsigned char *h = out;
	put64(&h, 0);				 /* baseOffset */
	put32(&h, (int32_t)(p - start - 12));	 /* batchLength */
	put32(&h, -1);				 /* partitionLeaderEpoch */
	*h++ = 2;				 /* magic */
	unsigned char *crc_at = h;
	h += 4;
	put16(&h, 0);		/* attributes */
	put32(&h, n - 1);	/* lastOffsetDelta */
	put64(&h, now);		/* baseTimestamp */
	put64(&h, now);		/* maxTimestamp */
	put64(&h, -1);		/* producerId */
	put16(&h, -1);		/* producerEpoch */
	put32(&h, -1);		/* baseSequence */
	put32(&h, n);		/* records */
	put32(&crc_at, (int32_t)crc32c(out + 21, (size_t)(p - out - 21)));
	return (size_t)(p - start);
}

/* Sends `want` records in Produce v3 requests, `inflight` at a time. */
static long raw_produce(const char *broker, const char *topic, long partitions, long want,
			long size)
{
	const int per_batch = 1000, inflight = 8;
	int fd = dial(broker);
	size_t cap = (size_t)partitions * ((size_t)per_batch * (size_t)(size + 16) + 128) + 4096;
	unsigned char *req = malloc(cap), *batch = malloc(cap), hdr[4], *resp = malloc(1 << 20);
	long per_req = per_batch * partitions, sent = 0, acked = 0;
	int32_t corr = 0;

	if (fd < 0 || !req || !batch || !resp || strlen(topic) > 200 || partitions > 200 ||
	    size > 1 << 20)
		return -1;
	size_t blen = make_batch(batch, per_batch, size);
	unsigned char *p = req + 4;
	put16(&p, 0); /* Produce */
	put16(&p, 3);
	unsigned char *corr_at = p;
	put32(&p, 0);
	put16(&p, 2);
	memcpy(p, "kb", 2);
	p += 2;
	put16(&p, -1);	  /* transactional id: null */
	put16(&p, 1);	  /* acks */
	put32(&p, 30000); /* timeout */
	put32(&p, 1);
	put16(&p, (int)strlen(topic));
	memcpy(p, topic, strlen(topic));
	p += strlen(topic);
	put32(&p, (int32_t)partitions);
	for (long k = 0; k < partitions; k++) {
		put32(&p, (int32_t)k);
		put32(&p, (int32_t)blen);
		memcpy(p, batch, blen);
		p += blen;
	}
	size_t rlen = (size_t)(p - req);
	unsigned char *q = req;
	put32(&q, (int32_t)(rlen - 4));
	long in_flight = 0;
	while (acked < want) {
		while (sent < want && in_flight < inflight) {
			unsigned char *c = corr_at;
			put32(&c, ++corr);
			size_t at = 0;
			while (at < rlen) {
				ssize_t w = write(fd, req + at, rlen - at);
				if (w <= 0)
					return -1;
				at += (size_t)w;
			}
			sent += per_req;
			in_flight++;
		}
		if (read_full(fd, hdr, 4))
			return -1;
		size_t n = (size_t)get(hdr, 4);
		if (n > 1 << 20 || read_full(fd, resp, n))
			return -1;
		/* correlation id, topics [name, partitions [index, error, ...]] */
		const unsigned char *r = resp + 8;
		r += 2 + get(r, 2) + 4;
		int16_t err = (int16_t)get(r + 4, 2);
		if (err) {
			fprintf(stderr, "kafka_bench: raw produce: error %d\n", err);
			return -1;
		}
		in_flight--;
		acked += per_req;
	}
	close(fd);
	free(req);
	free(batch);
	free(resp);
	return acked;
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
	int json = 0, raw_only = 0;
	char err[512];

	if (argc < 3) {
		fprintf(stderr, "usage: kafka_bench BROKER TOPIC [--size BYTES] [--count N] "
				"[--partitions P] [--json] [--raw-only]\n");
		return 2;
	}
	broker = argv[1];
	topic = argv[2];
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "--raw-only"))
			raw_only = 1;
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

	if (raw_only) { /* an existing topic's first `count` records, raw fetch only */
		long raw_bytes = 0;
		double t0 = now_s();
		long raw = raw_fetch(broker, topic, partitions, count, &raw_bytes);
		double t1 = now_s();
		printf("raw fetch %ld records: %.0f records/s, %.1f MB/s (%.1f MB/s of batches)\n",
		       raw, raw / (t1 - t0), raw * (double)size / (t1 - t0) / 1e6,
		       raw_bytes / (t1 - t0) / 1e6);
		return raw == count ? 0 : 1;
	}

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

	long raw_bytes = 0;
	double t4 = now_s();
	long raw = raw_fetch(broker, topic, partitions, count, &raw_bytes);
	double t5 = now_s();
	if (raw != count) {
		fprintf(stderr, "kafka_bench: raw fetch read %ld of %ld records\n", raw, count);
		return 1;
	}

	double t6 = now_s();
	long rp = raw_produce(broker, topic, partitions, count, size);
	double t7 = now_s();
	if (rp < count) {
		fprintf(stderr, "kafka_bench: raw produce stored %ld of %ld records\n", rp, count);
		return 1;
	}

	double ps = t1 - t0, fs = t3 - t2, rs = t5 - t4, rps = t7 - t6;
	if (json)
		printf("{\"size\":%ld,\"count\":%ld,\"produce_seconds\":%.3f,\"produce_records_per_s\":"
		       "%.0f,\"produce_mb_per_s\":%.1f,\"fetch_seconds\":%.3f,\"fetched\":%ld,"
		       "\"fetch_records_per_s\":%.0f,\"fetch_mb_per_s\":%.1f,"
		       "\"raw_fetch_records_per_s\":%.0f,\"raw_fetch_mb_per_s\":%.1f,"
		       "\"raw_fetch_wire_mb_per_s\":%.1f,\"raw_produce_records_per_s\":%.0f,"
		       "\"raw_produce_mb_per_s\":%.1f}\n",
		       size, count, ps, count / ps, count * (double)size / ps / 1e6, fs, got,
		       got / fs, got_bytes / fs / 1e6, raw / rs, raw * (double)size / rs / 1e6,
		       raw_bytes / rs / 1e6, rp / rps, rp * (double)size / rps / 1e6);
	else
		printf("produce %ld x %ld B: %.0f records/s, %.1f MB/s\n"
		       "fetch   %ld records: %.0f records/s, %.1f MB/s\n"
		       "raw fetch %ld records: %.0f records/s, %.1f MB/s (%.1f MB/s of batches)\n"
		       "raw produce %ld records: %.0f records/s, %.1f MB/s\n",
		       count, size, count / ps, count * (double)size / ps / 1e6, got, got / fs,
		       got_bytes / fs / 1e6, raw, raw / rs, raw * (double)size / rs / 1e6,
		       raw_bytes / rs / 1e6, rp, rp / rps, rp * (double)size / rps / 1e6);
	return got == count ? 0 : 1;
}
