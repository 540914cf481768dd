/*
 * buf.h - the two buffer types of Conflux.
 *
 * cfx_reader is a non-owning cursor over untrusted bytes. Every read is
 * bounds-checked; a failed read sets the sticky `err` and returns zero, so
 * a decoder may read a whole structure and test `rd.err` once, before any
 * side effect. Reads never assert.
 *
 * cfx_writer is an owning, growable byte buffer. Writes into it cannot fail
 * (allocation aborts on exhaustion); back-patching of lengths and checksums
 * at a remembered position is supported.
 *
 * Varints: unsigned LEB128 (Kafka "unsigned varint") and zig-zag signed
 * varints (Kafka "varint"/"varlong"). Decoding rejects encodings longer
 * than the type allows and values that overflow it.
 */
#ifndef CFX_BASE_BUF_H
#define CFX_BASE_BUF_H

#include "base/common.h"
#include "base/err.h"

/* A borrowed byte range: valid only as long as its owner says. */
struct cfx_view {
	const uint8_t *p;
	size_t len;
};

#define CFX_VIEW_STR(s) ((struct cfx_view){ (const uint8_t *)(s), strlen(s) })

static inline int cfx_view_eq(struct cfx_view a, struct cfx_view b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline int cfx_view_eq_str(struct cfx_view a, const char *s)
{
	return cfx_view_eq(a, CFX_VIEW_STR(s));
}

struct cfx_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	int err;		/* sticky: first failure (CFX_EPARSE ...), 0 if none */
	const char *err_desc;	/* static reason of the first failure */
};

static inline struct cfx_reader cfx_reader_make(const void *p, size_t len)
{
	return (struct cfx_reader){ .p = p, .len = len };
}

static inline size_t cfx_reader_left(const struct cfx_reader *rd)
{
	return rd->err ? 0 : rd->len - rd->pos;
}

/* Records the first failure; later ones are ignored. */
void cfx_reader_fail(struct cfx_reader *rd, const char *desc);

/* Returns a pointer to the next `n` bytes and advances, or NULL (sets err). */
const uint8_t *cfx_read_bytes(struct cfx_reader *rd, size_t n, const char *what);
void cfx_read_skip(struct cfx_reader *rd, size_t n);

uint8_t cfx_read_u8(struct cfx_reader *rd);
uint16_t cfx_read_le16(struct cfx_reader *rd);
uint32_t cfx_read_le32(struct cfx_reader *rd);
uint64_t cfx_read_le64(struct cfx_reader *rd);
uint16_t cfx_read_be16(struct cfx_reader *rd);
uint32_t cfx_read_be32(struct cfx_reader *rd);
uint64_t cfx_read_be64(struct cfx_reader *rd);

/* Unsigned LEB128, at most 5 bytes / 10 bytes. */
uint32_t cfx_read_uvarint32(struct cfx_reader *rd);
uint64_t cfx_read_uvarint64(struct cfx_reader *rd);
/* Zig-zag signed varints (Kafka varint / varlong). */
int32_t cfx_read_varint32(struct cfx_reader *rd);
int64_t cfx_read_varint64(struct cfx_reader *rd);

/* An owning growable buffer. */
struct cfx_writer {
	uint8_t *p;
	size_t len;
	size_t cap;
};

void cfx_writer_init(struct cfx_writer *wr, size_t cap_hint);
void cfx_writer_free(struct cfx_writer *wr);
static inline void cfx_writer_reset(struct cfx_writer *wr) { wr->len = 0; }

/* Ensures room for `n` more bytes; returns a pointer to them (len unchanged). */
uint8_t *cfx_writer_reserve(struct cfx_writer *wr, size_t n);

/* Appends `n` uninitialised bytes and returns a pointer to them. */
static inline uint8_t *cfx_writer_extend(struct cfx_writer *wr, size_t n)
{
	uint8_t *d = (wr->cap - wr->len >= n) ? wr->p + wr->len : cfx_writer_reserve(wr, n);
	wr->len += n;
	return d;
}

static inline void cfx_write_bytes(struct cfx_writer *wr, const void *p, size_t n)
{
	if (n)
		memcpy(cfx_writer_extend(wr, n), p, n);
}
static inline void cfx_write_u8(struct cfx_writer *wr, uint8_t v) { *cfx_writer_extend(wr, 1) = v; }
static inline void cfx_write_le16(struct cfx_writer *wr, uint16_t v) { cfx_store_le16(cfx_writer_extend(wr, 2), v); }
static inline void cfx_write_le32(struct cfx_writer *wr, uint32_t v) { cfx_store_le32(cfx_writer_extend(wr, 4), v); }
static inline void cfx_write_le64(struct cfx_writer *wr, uint64_t v) { cfx_store_le64(cfx_writer_extend(wr, 8), v); }
static inline void cfx_write_be16(struct cfx_writer *wr, uint16_t v) { cfx_store_be16(cfx_writer_extend(wr, 2), v); }
static inline void cfx_write_be32(struct cfx_writer *wr, uint32_t v) { cfx_store_be32(cfx_writer_extend(wr, 4), v); }
static inline void cfx_write_be64(struct cfx_writer *wr, uint64_t v) { cfx_store_be64(cfx_writer_extend(wr, 8), v); }

void cfx_write_uvarint64(struct cfx_writer *wr, uint64_t v);
static inline void cfx_write_varint64(struct cfx_writer *wr, int64_t v)
{
	cfx_write_uvarint64(wr, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Size of the encodings, for size-first encoders. */
size_t cfx_uvarint_size(uint64_t v);
static inline size_t cfx_varint_size(int64_t v)
{
	return cfx_uvarint_size(((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Encodes into `out` (at least 10 bytes); returns the number of bytes. */
size_t cfx_uvarint_encode(uint8_t *out, uint64_t v);

#endif
