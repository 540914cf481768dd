/*
 * hash.h - non-cryptographic hashing for in-memory tables and on-disk
 * index keys. The on-disk use fixes the function: changing it changes the
 * key-index format (docs/storage.md).
 */
#ifndef CFX_BASE_HASH_H
#define CFX_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Final avalanche of a 64-bit value (every input bit affects every output bit). */
static inline uint64_t cfx_hash_mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* FNV-1a over `len` bytes, continuing from `h` (start with CFX_HASH_SEED). */
#define CFX_HASH_SEED 0xcbf29ce484222325ULL
static inline uint64_t cfx_hash_bytes(uint64_t h, const void *p, size_t len)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* A well-mixed 64-bit hash of a byte string. */
static inline uint64_t cfx_hash64(const void *p, size_t len)
{
	return cfx_hash_mix64(cfx_hash_bytes(CFX_HASH_SEED, p, len));
}

#endif
