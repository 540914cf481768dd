/*
 * base64.c - strict base64, standard alphabet with padding (base64.h).
 *
 * Decoding works on groups of four characters. Only the last group may
 * hold padding: "xx==" carries one byte (the second character's low four
 * bits must be zero), "xxx=" two bytes (the third character's low two bits
 * must be zero). Those zero-bit rules are what makes the accepted encoding
 * of a byte string unique.
 */
#include "base/base64.h"

#include <stdbool.h>

#include "base/common.h"
#include "base/err.h"

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define BAD 0xffu

/* The 6-bit value of an alphabet character, or BAD ('=' included). */
static unsigned char_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return BAD;
}

size_t cfx_base64_encode(const uint8_t *src, size_t len, char *out, size_t out_max)
{
	size_t i = 0, o = 0;

	CFX_ASSERT(len <= (SIZE_MAX / 4) * 3 - 3);
	CFX_ASSERT(out_max >= CFX_BASE64_ENC_LEN(len) + 1);
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)src[i] << 16;
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

int cfx_base64_decode(const char *src, size_t len, uint8_t *out, size_t out_max, size_t *out_len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0;

	if (len % 4 != 0)
		return CFX_EPARSE;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		unsigned a = char_value(s[i]), b = char_value(s[i + 1]);
		unsigned c = char_value(s[i + 2]), d = char_value(s[i + 3]);
		size_t bytes = 3;

		if (a == BAD || b == BAD)
			return CFX_EPARSE;
		if (last && s[i + 2] == '=' && s[i + 3] == '=') {
			if (b & 0x0f)
				return CFX_EPARSE; /* non-zero unused bits */
			bytes = 1;
			c = d = 0;
		} else if (last && s[i + 3] == '=') {
			if (c == BAD || (c & 0x03))
				return CFX_EPARSE;
			bytes = 2;
			d = 0;
		} else if (c == BAD || d == BAD) {
			return CFX_EPARSE; /* includes '=' before the last group */
		}
		if (out_max - o < bytes)
			return CFX_E2BIG;
		uint32_t v = a << 18 | b << 12 | c << 6 | d;
		out[o++] = (uint8_t)(v >> 16);
		if (bytes > 1)
			out[o++] = (uint8_t)(v >> 8);
		if (bytes > 2)
			out[o++] = (uint8_t)v;
	}
	*out_len = o;
	return CFX_OK;
}
