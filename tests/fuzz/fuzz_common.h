/*
 * fuzz_common.h - helpers shared by the fuzz targets of tests/fuzz and by
 * the corpus generator: the layout of the control bytes that open each
 * target's input, a checking macro that aborts (so libFuzzer and the replay
 * driver both report the input), and a walk over a decoded RecordBatch
 * that checks every view it is handed.
 *
 * Nothing here is part of the product; see tests/fuzz/README.md.
 */
#ifndef CFX_TESTS_FUZZ_COMMON_H
#define CFX_TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/batch.h"

/* ------------------------------------------------------------------------
 * Input layouts (the generator writes these; the targets read them)
 * ------------------------------------------------------------------------ */

/*
 * fuzz_batch input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | flags   FZ_BATCH_*
 *      1 |    N | one RecordBatch v2, exactly the rest of the input
 */
#define FZ_BATCH_VERIFY_CRC 0x01u /* cfx_batch_open checks Kafka's CRC */
#define FZ_BATCH_FIX_CRC 0x02u	  /* the target rewrites the CRC first */
#define FZ_BATCH_CTRL_BYTES 1u

/*
 * fuzz_entry input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | flags   FZ_ENTRY_*
 *      1 |    2 | start   second decode starts at (start % image length)
 *      3 |    N | image   log bytes; image byte i is at log position i
 */
#define FZ_ENTRY_VERIFY_CRC 0x01u	/* cfx_entry_decode checks the entry CRC */
#define FZ_ENTRY_VERIFY_BATCH_CRC 0x02u /* cfx_batch_open checks Kafka's CRC */
#define FZ_ENTRY_FIX_CRC 0x04u		/* reseal the CRCs of the entry chain first */
#define FZ_ENTRY_CTRL_BYTES 3u

/*
 * fuzz_compress input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl    bits 0-2: the codec (attributes & 7), then FZ_COMP_* flags
 *      1 |    1 | arg     FZ_COMP_TINY_LIMIT: output limit = arg * 64 bytes;
 *        |      |         FZ_COMP_AS_BATCH: the header claims arg % 16 + 1 records
 *      2 |    N | a compressed records section, exactly the rest of the input
 */
#define FZ_COMP_CODEC_MASK 0x07u
#define FZ_COMP_TINY_LIMIT 0x08u /* a limit of a few KiB, so limits are hit often */
#define FZ_COMP_AS_BATCH 0x10u	 /* decode the output as the records of a batch */
#define FZ_COMP_XERIAL 0x20u	 /* seeds only: the generator frames snappy as xerial */
#define FZ_COMP_CTRL_BYTES 2u
#define FZ_COMP_BYTES_MAX (1u << 20) /* the limit otherwise (the store's is larger) */

/*
 * fuzz_recovery input: a fixed preamble, then slices.
 * OFFSET | SIZE | FIELD
 *      0 |    1 | mode     FZ_REC_LAYOUT_MASK bits and FZ_REC_* flags
 *      1 |    1 | mode2    FZ_REC2_* flags
 *      2 |    2 | split    layout SPLIT: bytes of data that go to segment 0
 *      4 |    1 | idx_n    entries in the index-file slice (idx_n % 33)
 *      5 |    1 | kix_s    key-index slots (1 + kix_s % 32)
 *      6 |    1 | kix_c    key-index entry capacity (1 + kix_c % 32)
 *      7 |    1 | reserved
 *      8 |   64 | ckpt     raw checkpoint bytes, or the fields of a synthesised
 *        |      |          one: le64 durable_pos @0, le32 end-durable @8,
 *        |      |          u8 clean @12, le32 idx_entries @16, le32 key_entries @20
 *     72 |    … | slices   [index file: idx_n*40][key index body][log data]
 */
#define FZ_REC_LAYOUT_MASK 0x03u
#define FZ_REC_LAYOUT_AFTER_HDR 0u /* data follows a valid header in segment 0 */
#define FZ_REC_LAYOUT_RAW_SEG 1u   /* data is segment 0 from byte 0, padded to size */
#define FZ_REC_LAYOUT_RAW_FILE 2u  /* data is segment 0 exactly, any file size */
#define FZ_REC_LAYOUT_SPLIT 3u	   /* data split after headers of segments 0 and 1 */
#define FZ_REC_CKPT 0x04u	   /* write a checkpoint file */
#define FZ_REC_CKPT_RAW 0x08u	   /* ... from the raw 64 bytes (else synthesised) */
#define FZ_REC_EXTRA_SEG 0x10u	   /* one more empty, valid segment at the end */
#define FZ_REC_REOPEN 0x20u	   /* close, reopen and compare the queues */
#define FZ_REC_VERIFY_READ 0x40u   /* verify_crc_on_read */
#define FZ_REC_INDEXES 0x80u	   /* write the index-file slice (and key index) */

#define FZ_REC2_FIX_CRC 0x01u /* reseal headers, entries and index entries first */
#define FZ_REC2_APPEND 0x02u  /* append to a recovered queue and read it back */
#define FZ_REC2_LOOKUP 0x04u  /* look read messages up by id and key */
#define FZ_REC2_KIX 0x08u     /* with FZ_REC_INDEXES: also write a key-index file */

#define FZ_REC_PREAMBLE_BYTES 72u
#define FZ_REC_CKPT_OFF 8u
#define FZ_REC_IDX_MAX 32u

/* Store sizes of the recovery target (check_opts in store.c). */
#define FZ_REC_SEGMENT_BYTES 8192u
#define FZ_REC_BATCH_BYTES_MAX 4096u
#define FZ_REC_MSG_BYTES_MAX 4096u
#define FZ_REC_INDEX_ENTRIES 64u
#define FZ_REC_KEY_INDEX_ENTRIES 64u

/*
 * fuzz_mqtt_packet input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl    FZ_MQTT_*
 *      1 |    N | stream  MQTT packets back to back, as a connection receives them
 */
#define FZ_MQTT_V5 0x01u	     /* connected as MQTT 5 (else 3.1.1) */
#define FZ_MQTT_FROM_SERVER 0x02u    /* decode as a client does */
#define FZ_MQTT_BEFORE_CONNECT 0x04u /* from a client: no CONNECT yet, it sets the version */
#define FZ_MQTT_SMALL_LIMIT 0x08u    /* packets over FZ_MQTT_SMALL_LIMIT_BYTES are too large */
#define FZ_MQTT_SMALL_LIMIT_BYTES 64u
#define FZ_MQTT_CTRL_BYTES 1u

/*
 * fuzz_mqtt input (the MQTT front end end to end):
 * OFFSET | SIZE | FIELD
 *      0 |    1 | flags   FZ_MQTT_E2E_*
 *      1 |    N | records [len u16 big-endian][len bytes], until the input ends
 *
 * Bit 15 of len sends the record to a second connection (FZ_MQTT_E2E_CONN_B);
 * the other bits are its length. Without FZ_MQTT_E2E_RAW a record is one
 * packet without its Remaining Length: the first byte (type and flags),
 * then the rest; the target writes Remaining Length = len - 1 after the
 * first byte. With it, the record is fed as it is. A last record shorter
 * than its length is fed as is (torn).
 */
#define FZ_MQTT_E2E_SPLIT_MASK 0x03u  /* feed each record whole, or in pieces of 1, 3, 7 bytes */
#define FZ_MQTT_E2E_RAW 0x04u	      /* records carry their own Remaining Length */
#define FZ_MQTT_E2E_SETTLE_EACH 0x08u /* let the store and the fan-out catch up after each record */
#define FZ_MQTT_E2E_CLOSE_FIRST 0x10u /* free the connections before the last settle */
#define FZ_MQTT_E2E_BATCH 0x20u	      /* queue every record, then run the loop once */
#define FZ_MQTT_E2E_CONN_B 0x8000u    /* in len: the record goes to the second connection */
#define FZ_MQTT_E2E_LEN_MASK 0x7fffu
#define FZ_MQTT_E2E_CTRL_BYTES 1u

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */

/* Aborts with a message: a violated invariant is a finding, like a crash. */
#define FZ_CHECK(cond) \
	((cond) ? (void)0 : fz_check_fail(#cond, __FILE__, __LINE__))

__attribute__((noreturn)) void fz_check_fail(const char *expr, const char *file, int line);

/* Reads every byte of [p, p+len) so that ASan checks it (returns a checksum). */
uint32_t fz_touch(const void *p, size_t len);

/* 1 if the view lies within [base, base+len) (an empty view may be anywhere). */
int fz_view_within(struct cfx_view v, const uint8_t *base, size_t len);

/*
 * Opens the batch at `p` (exactly `len` bytes), decodes every message and
 * every property, and checks that each view the decoder hands out lies in
 * the batch and that the counts agree with the header. Returns the result
 * of cfx_batch_open, or the first negative result of cfx_batch_next.
 * `msgs_out`, if not NULL, receives the number of messages decoded.
 */
int fz_walk_batch(const uint8_t *p, size_t len, int verify_crc, uint32_t *msgs_out);

/*
 * As fz_walk_batch, over a batch header at `p` (`len` bytes) whose records
 * are the `records_len` bytes at `records` (cfx_batch_open_records): every
 * view must lie in `records`.
 */
int fz_walk_records(const uint8_t *p, size_t len, const uint8_t *records, size_t records_len,
		    uint32_t *msgs_out);

/*
 * Compresses `len` bytes at `p` with `codec` (store/compress.h) as a Kafka
 * producer would, appending to `wr`; snappy in xerial framing if `xerial`
 * (blocks of `xerial_block` input bytes). For seeds and round trips.
 */
void fz_compress(int codec, int xerial, size_t xerial_block, const uint8_t *p, size_t len,
		 struct cfx_writer *wr);

#endif
