/*
 * crash.h - shared parts of the kill -9 crash test (tests/crash/).
 *
 * The test is one program in two roles. The driver (crash_test.c) re-executes
 * itself as a writer (writer.c), kills it with SIGKILL at random moments and
 * then verifies the recovered store in-process (verify.c). Both sides agree
 * on two things defined here and in content.c:
 *
 *   - the content of every message is a pure function of (topic index,
 *     queue, offset), so the verifier regenerates what must be stored
 *     without any record of the bodies;
 *   - the ack log: one fixed-size record per acknowledged sync append,
 *     written by the writer only after the store acknowledged it.
 *
 * What the test checks, and how to replay a failure: tests/crash/README.md.
 * It does not simulate power loss (a kill -9 leaves the page cache intact);
 * torn writes, EIO and ENOSPC are the business of the cfx_file_ops tests.
 */
#ifndef CFX_TESTS_CRASH_CRASH_H
#define CFX_TESTS_CRASH_CRASH_H

#include <stddef.h>
#include <stdint.h>

#include "store/batch.h"
#include "store/store.h"

/* ------------------------------------------------------------------------
 * The data set: a few topics and queues, small files so roll-overs are frequent
 * ------------------------------------------------------------------------ */

#define CRASH_TOPICS		   2u
#define CRASH_QUEUES		   3u	 /* per topic */
#define CRASH_BATCH_MSGS_MAX	   20u	 /* messages in one append */
#define CRASH_BODY_BYTES_MAX	   8192u /* largest generated body */
#define CRASH_PROPS_MAX		   3u	 /* user properties per message */
#define CRASH_PROP_VALUE_BYTES_MAX 40u
#define CRASH_SEGMENT_BYTES	   (4u << 20) /* commit-log segment */
#define CRASH_BATCH_BYTES_MAX	   (256u << 10)
#define CRASH_MSG_BYTES_MAX	   (64u << 10)
#define CRASH_INDEX_ENTRIES	   1024u /* batch-index entries per file */
#define CRASH_KEY_INDEX_ENTRIES	   4096u /* key-index entries per file */

/* Paths inside the test directory. */
#define CRASH_STORE_SUBDIR "store"
#define CRASH_ACK_FILE	   "acks.log"

/* Exit status of a writer that found something wrong by itself. */
#define CRASH_WRITER_EXIT_FAIL 3

/* Bytes a writer sends on its status pipe, in this order. */
#define CRASH_ST_OPENING 'O' /* about to call cfx_store_open (recovery) */
#define CRASH_ST_READY	 'R' /* open; appenders are starting */
#define CRASH_ST_CLOSING 'C' /* SIGTERM seen, appenders joined, closing the store */
#define CRASH_ST_CLOSED	 'D' /* cfx_store_close returned 0 */

/* "crash-t0", "crash-t1": the topic of index `t`. */
const char *crash_topic_name(unsigned t);
static inline struct cfx_view crash_topic(unsigned t)
{
	return CFX_VIEW_STR(crash_topic_name(t));
}

/*
 * Store options shared by the writer and the verifier (they must agree on
 * the segment size). `store_dir` is borrowed for the life of the options.
 */
void crash_store_opts(struct cfx_store_opts *o, const char *store_dir);

/* ------------------------------------------------------------------------
 * Deterministic randomness (splitmix64): the same seed gives the same run
 * ------------------------------------------------------------------------ */

struct crash_rng {
	uint64_t s;
};

static inline uint64_t crash_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t crash_rng_next(struct crash_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return crash_mix64(r->s);
}

/* Uniform in [lo, hi] (hi - lo much smaller than 2^64; the bias is negligible). */
static inline uint64_t crash_rng_range(struct crash_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + crash_rng_next(r) % (hi - lo + 1);
}

/* ------------------------------------------------------------------------
 * Message content (content.c)
 * ------------------------------------------------------------------------ */

/* Storage behind one generated message; the cfx_msg points into it. */
struct crash_msg_buf {
	uint8_t body[CRASH_BODY_BYTES_MAX];
	char key[96];
	char tag[24];
	char msg_id[64];
	char prop_name[CRASH_PROPS_MAX][8];
	uint8_t prop_value[CRASH_PROPS_MAX][CRASH_PROP_VALUE_BYTES_MAX];
	struct cfx_prop props[CRASH_PROPS_MAX];
};

/*
 * Fills `m` with the message stored at `offset` of queue `queue` of topic
 * `t`. Every field (body, key, tag, id, flag, properties, born time) depends
 * on those three numbers only. `m` borrows from `b` until `b` is reused.
 */
void crash_gen_msg(unsigned t, unsigned queue, uint64_t offset, struct crash_msg_buf *b,
		   struct cfx_msg *m);

/* The unique key token of a generated message (written into `buf`); 0 if it has no key. */
int crash_gen_key_token(unsigned t, unsigned queue, uint64_t offset, char *buf, size_t cap);

/*
 * Checksum of a message's content, computed alike from what the writer
 * handed to the store (crash_digest_msg) and from what a read returned
 * (crash_digest_view). Start with 0 and chain over the messages of a batch.
 */
uint32_t crash_digest_msg(uint32_t crc, const struct cfx_msg *m);
uint32_t crash_digest_view(uint32_t crc, const struct cfx_msg_view *v);

/*
 * Compares a stored message with the generated one. Returns 1 if they are
 * identical; else 0 with the first difference described in `why`.
 */
int crash_msg_equal(const struct cfx_msg *want, const struct cfx_msg_view *got, char *why,
		    size_t why_cap);

/* ------------------------------------------------------------------------
 * Ack log records (content.c)
 *
 * acks.log is a sequence of these 32-byte records, little-endian:
 *
 * OFFSET | SIZE | FIELD
 *      0 |    4 | magic         "CFXA" (0x41584643)
 *      4 |    1 | topic         topic index, < CRASH_TOPICS
 *      5 |    1 | reserved      zero
 *      6 |    2 | queue         queue id, < CRASH_QUEUES
 *      8 |    8 | first_offset  offset of the batch's first message
 *     16 |    4 | count         messages in the batch, 1..CRASH_BATCH_MSGS_MAX
 *     20 |    4 | digest        crash_digest_msg chained over the batch
 *     24 |    4 | run           which writer process acknowledged it (driver's count)
 *     28 |    4 | crc           CRC32C of bytes [0, 28)
 *
 * A record is written with one write(2) after the append's completion said
 * err == 0. A kill -9 keeps what write(2) put in the page cache, so the only
 * damage the file can show is a torn last record (never seen in practice).
 * ------------------------------------------------------------------------ */

#define CRASH_ACK_MAGIC 0x41584643u
#define CRASH_ACK_BYTES 32u

struct crash_ack {
	uint8_t topic;
	uint16_t queue;
	uint64_t first_offset;
	uint32_t count;
	uint32_t digest;
	uint32_t run;
};

void crash_ack_encode(uint8_t out[CRASH_ACK_BYTES], const struct crash_ack *a);
/* Returns NULL, or a static reason why the bytes are not a valid record. */
const char *crash_ack_decode(const uint8_t in[CRASH_ACK_BYTES], struct crash_ack *a);

/* ------------------------------------------------------------------------
 * The two roles
 * ------------------------------------------------------------------------ */

struct crash_writer_args {
	const char *dir;  /* test directory: store/ and acks.log inside */
	uint64_t seed;	  /* batch sizes, queues, append modes, checkpoint interval */
	uint32_t run;	  /* stamped into every ack record */
	int status_fd;	  /* the status pipe, or -1 */
	unsigned threads; /* appender threads */
};

/* Runs the writer until SIGTERM (clean close, exit 0) or SIGKILL. Never returns. */
CFX_NORETURN void crash_writer_main(const struct crash_writer_args *a);

/* What one verification saw. */
struct crash_verify_stats {
	uint64_t acks;				  /* ack records checked */
	uint64_t acked_msgs;			  /* messages they cover */
	uint64_t stored_msgs;			  /* messages read in the dense scans */
	uint64_t torn_ack_bytes;		  /* a partial last ack record (ignored) */
	uint64_t end[CRASH_TOPICS][CRASH_QUEUES]; /* each queue's end offset */
	uint64_t log_bytes;			  /* size of the segment files */
};

/*
 * Verifies an open store against the ack log in `dir` (see README.md for
 * the list of checks). `prev_end` holds the end offsets the previous
 * verification saw (zeros the first time): nothing below them may be lost.
 * `rng` picks the messages looked up by key and id. Returns 0, or -1 with
 * the violation described in `why`.
 */
int crash_verify(struct cfx_store *st, const char *dir,
		 const uint64_t prev_end[CRASH_TOPICS][CRASH_QUEUES], struct crash_rng *rng,
		 struct crash_verify_stats *vs, char *why, size_t why_cap);

#endif
