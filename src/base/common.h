/*
 * common.h - small definitions every file of Conflux may use: assertions,
 * allocation that aborts on exhaustion, branch hints, min/max, and
 * unaligned little-endian loads and stores.
 *
 * Memory is bounded by limits and back-pressure, not by NULL checks after
 * every allocation: cfx_malloc and friends abort the process when the
 * system cannot satisfy them.
 */
#ifndef CFX_BASE_COMMON_H
#define CFX_BASE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CFX_LIKELY(x) __builtin_expect(!!(x), 1)
#define CFX_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CFX_UNUSED(x) ((void)(x))
#define CFX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CFX_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CFX_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CFX_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define CFX_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define CFX_NORETURN __attribute__((noreturn))

CFX_NORETURN void cfx_assert_fail(const char *expr, const char *file, int line);

/* Programmer errors. Stays on in release builds: keep the expression cheap. */
#define CFX_ASSERT(expr) \
	(CFX_LIKELY(expr) ? (void)0 : cfx_assert_fail(#expr, __FILE__, __LINE__))

/* Expensive checks, compiled only into debug builds. */
#ifdef CFX_DEBUG
#define CFX_DEBUG_ASSERT(expr) CFX_ASSERT(expr)
#else
#define CFX_DEBUG_ASSERT(expr) ((void)0)
#endif

void *cfx_malloc(size_t size);
void *cfx_calloc(size_t n, size_t size);
void *cfx_realloc(void *p, size_t size);
char *cfx_strdup(const char *s);
/* Copies exactly `n` bytes of the view `s` and adds a terminating NUL. */
char *cfx_strndup(const char *s, size_t n);
void cfx_free(void *p);

/* Frees `p` and sets it to NULL, so a second free is harmless. */
#define CFX_FREE(p) \
	do { \
		cfx_free(p); \
		(p) = NULL; \
	} while (0)

/* Unaligned little-endian access (the byte order of Conflux's own formats). */
static inline uint16_t cfx_load_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}
static inline uint32_t cfx_load_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}
static inline uint64_t cfx_load_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}
static inline void cfx_store_le16(void *p, uint16_t v) { memcpy(p, &v, sizeof v); }
static inline void cfx_store_le32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }
static inline void cfx_store_le64(void *p, uint64_t v) { memcpy(p, &v, sizeof v); }

/* Unaligned big-endian access (network formats: Kafka, MQTT, HTTP/2). */
static inline uint16_t cfx_load_be16(const void *p) { return __builtin_bswap16(cfx_load_le16(p)); }
static inline uint32_t cfx_load_be32(const void *p) { return __builtin_bswap32(cfx_load_le32(p)); }
static inline uint64_t cfx_load_be64(const void *p) { return __builtin_bswap64(cfx_load_le64(p)); }
static inline void cfx_store_be16(void *p, uint16_t v) { cfx_store_le16(p, __builtin_bswap16(v)); }
static inline void cfx_store_be32(void *p, uint32_t v) { cfx_store_le32(p, __builtin_bswap32(v)); }
static inline void cfx_store_be64(void *p, uint64_t v) { cfx_store_le64(p, __builtin_bswap64(v)); }

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Conflux's on-disk formats assume a little-endian host"
#endif

#endif
