/*
 * base64.h - strict base64 (RFC 4648 section 4, the standard alphabet with
 * '=' padding), for the text forms of authentication data: SCRAM messages
 * (RFC 5802), stored credentials, HTTP Basic.
 *
 * The decoder accepts only the canonical encoding: a length that is a
 * multiple of 4, characters from the alphabet, at most two '=' and only at
 * the end, and zero bits where the last character carries unused bits. No
 * whitespace, no line breaks, no URL-safe alphabet. So every byte string has
 * exactly one accepted text form, which keeps comparisons of encoded values
 * meaningful.
 *
 * Not constant-time: do not decode secrets where the timing of a lookup
 * table could be observed by an attacker who chooses the input.
 */
#ifndef CFX_BASE_BASE64_H
#define CFX_BASE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters of the encoding of n bytes (without the terminating NUL). */
#define CFX_BASE64_ENC_LEN(n) ((((n) + 2) / 3) * 4)
/* Upper bound of the bytes decoded from n characters. */
#define CFX_BASE64_DEC_MAX(n) (((n) / 4) * 3)

/*
 * Encodes `len` bytes of `src` into `out` and adds a NUL. `out_max` must be
 * at least CFX_BASE64_ENC_LEN(len) + 1 (a programmer error otherwise:
 * asserts). Returns the characters written, without the NUL.
 */
size_t cfx_base64_encode(const uint8_t *src, size_t len, char *out, size_t out_max);

/*
 * Decodes `len` characters of `src` (not NUL-terminated) into `out`.
 * Returns 0 and sets *out_len; CFX_EPARSE for anything but the canonical
 * encoding; CFX_E2BIG when the result would exceed `out_max` bytes (nothing
 * is known about `out` then). The empty string decodes to zero bytes.
 */
int cfx_base64_decode(const char *src, size_t len, uint8_t *out, size_t out_max, size_t *out_len);

#endif
