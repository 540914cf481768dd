/*
 * siphash.h - SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed
 * pseudo-random function for short inputs, used where a message
 * authentication code must be cheap (receipt handles are made and checked
 * for every message delivered and acknowledged).
 */
#ifndef CFX_BASE_SIPHASH_H
#define CFX_BASE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit SipHash-2-4 of p[0..len) under the 16-byte key k. */
uint64_t cfx_siphash24(const uint8_t k[16], const void *p, size_t len);

#endif
