/*
 * rmq_auth.c - parsing and checking the MQv2-HMAC-SHA1 request signature of
 * the RocketMQ 5 gRPC clients (rmq_auth.h).
 *
 * The value is "<algorithm> <field>, <field>, <field>". The broker of
 * RocketMQ splits it at the first space, then at ',', trims each field and
 * splits it at the first '='; it reads Credential (the part before the
 * first '/') and Signature (hex) and ignores the rest. Conflux accepts the
 * same values the official clients send, and refuses what none of them
 * sends: another algorithm, unknown or repeated fields, empty fields.
 */
#include "proto/grpc/rmq_auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/common.h"
#include "base/err.h"

#define ALGO_LEN      (sizeof CFX_RMQ_AUTH_ALGORITHM - 1)
#define DATE_TIME_MAX 64 /* bytes of an x-mq-date-time value we sign or verify */

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool view_is(const char *p, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	return len == n && memcmp(p, lit, n) == 0;
}

static int refuse(const char **why, const char *reason, int rc)
{
	*why = reason;
	return rc;
}

/* Whether the ';'-separated list `p` names the x-mq-date-time header. */
static bool signs_date_time(const char *p, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != ';')
			continue;
		if (view_is(p + start, i - start, CFX_RMQ_AUTH_DATE_HEADER))
			return true;
		start = i + 1;
	}
	return false;
}

int cfx_rmq_auth_parse(const char *authorization, size_t len, struct cfx_rmq_auth *out,
		       const char **why)
{
	const char *s = authorization;
	bool have_cred = false, have_signed = false, have_sig = false;
	size_t i;

	memset(out, 0, sizeof *out);
	*why = NULL;
	if (len > CFX_RMQ_AUTH_HEADER_MAX)
		return refuse(why, "authorization value too long", CFX_E2BIG);
	if (len < ALGO_LEN + 1 || memcmp(s, CFX_RMQ_AUTH_ALGORITHM, ALGO_LEN) != 0 ||
	    !is_ows(s[ALGO_LEN]))
		return refuse(why, "authorization is not MQv2-HMAC-SHA1", CFX_EPARSE);

	/* Fields: [OWS] key "=" value [OWS], separated by ','. */
	i = ALGO_LEN;
	while (i <= len) {
		size_t start, end, eq;
		const char *key, *val;
		size_t key_len, val_len;

		start = i;
		while (start < len && is_ows(s[start]))
			start++;
		end = start;
		while (end < len && s[end] != ',')
			end++;
		i = end + 1; /* past the ',' (or past the end: the loop ends) */
		while (end > start && is_ows(s[end - 1]))
			end--;
		if (end == start)
			return refuse(why, "empty field in authorization", CFX_EPARSE);
		for (eq = start; eq < end && s[eq] != '='; eq++)
			;
		if (eq == end)
			return refuse(why, "field without '=' in authorization", CFX_EPARSE);
		key = s + start;
		key_len = eq - start;
		val = s + eq + 1;
		val_len = end - eq - 1;
		if (val_len == 0)
			return refuse(why, "empty value in authorization", CFX_EPARSE);
		for (size_t k = 0; k < val_len; k++)
			if ((unsigned char)val[k] < 0x21 || (unsigned char)val[k] > 0x7e)
				return refuse(why, "bad character in authorization", CFX_EPARSE);

		if (view_is(key, key_len, "Credential")) {
			const char *slash;

			if (have_cred)
				return refuse(why, "Credential given twice", CFX_EPARSE);
			have_cred = true;
			slash = memchr(val, '/', val_len);
			out->access_key.p = (const uint8_t *)val;
			out->access_key.len = slash ? (size_t)(slash - val) : val_len;
			if (slash)
				out->scope = (struct cfx_view){(const uint8_t *)slash + 1,
							       val_len - out->access_key.len - 1};
			if (out->access_key.len == 0)
				return refuse(why, "empty access key", CFX_EPARSE);
			if (out->access_key.len > CFX_RMQ_AUTH_AK_MAX)
				return refuse(why, "access key too long", CFX_E2BIG);
		} else if (view_is(key, key_len, "SignedHeaders")) {
			if (have_signed)
				return refuse(why, "SignedHeaders given twice", CFX_EPARSE);
			have_signed = true;
			out->signed_headers = (struct cfx_view){(const uint8_t *)val, val_len};
		} else if (view_is(key, key_len, "Signature")) {
			if (have_sig)
				return refuse(why, "Signature given twice", CFX_EPARSE);
			have_sig = true;
			if (val_len != CFX_RMQ_AUTH_SIG_HEX)
				return refuse(why, "Signature is not 40 hex digits", CFX_EPARSE);
			for (size_t k = 0; k < CFX_RMQ_AUTH_SIG_LEN; k++) {
				int hi = hex_value(val[2 * k]), lo = hex_value(val[2 * k + 1]);
				if (hi < 0 || lo < 0)
					return refuse(why, "Signature is not 40 hex digits",
						      CFX_EPARSE);
				out->sig[k] = (uint8_t)(hi << 4 | lo);
			}
			out->signature = (struct cfx_view){(const uint8_t *)val, val_len};
		} else {
			return refuse(why, "unknown field in authorization", CFX_EPARSE);
		}
	}
	if (!have_cred)
		return refuse(why, "authorization without Credential", CFX_EPARSE);
	if (!have_sig)
		return refuse(why, "authorization without Signature", CFX_EPARSE);
	if (!have_signed ||
	    !signs_date_time((const char *)out->signed_headers.p, out->signed_headers.len))
		return refuse(why, "SignedHeaders does not name x-mq-date-time", CFX_EPARSE);
	return CFX_OK;
}

static int hmac_sha1(const uint8_t *secret, size_t secret_len, const char *data, size_t len,
		     uint8_t out[CFX_RMQ_AUTH_SIG_LEN])
{
	unsigned n = 0;

	if (secret_len == 0 || secret_len > INT32_MAX || len > DATE_TIME_MAX)
		return CFX_EINVAL;
	if (!HMAC(EVP_sha1(), secret, (int)secret_len, (const unsigned char *)data, len, out, &n) ||
	    n != CFX_RMQ_AUTH_SIG_LEN)
		return CFX_ESYS;
	return CFX_OK;
}

bool cfx_rmq_auth_verify(const struct cfx_rmq_auth *a, const char *date_time, size_t dt_len,
			 const uint8_t *secret, size_t secret_len)
{
	uint8_t expect[CFX_RMQ_AUTH_SIG_LEN];
	bool ok;

	if (hmac_sha1(secret, secret_len, date_time, dt_len, expect))
		return false;
	ok = CRYPTO_memcmp(expect, a->sig, sizeof expect) == 0;
	OPENSSL_cleanse(expect, sizeof expect);
	return ok;
}

int cfx_rmq_auth_sign(const uint8_t *secret, size_t secret_len, const char *date_time,
		      size_t dt_len, char out[CFX_RMQ_AUTH_SIG_HEX + 1])
{
	static const char digits[] = "0123456789ABCDEF";
	uint8_t sig[CFX_RMQ_AUTH_SIG_LEN];
	int rc;

	rc = hmac_sha1(secret, secret_len, date_time, dt_len, sig);
	if (rc)
		return rc;
	for (size_t k = 0; k < sizeof sig; k++) {
		out[2 * k] = digits[sig[k] >> 4];
		out[2 * k + 1] = digits[sig[k] & 15];
	}
	out[CFX_RMQ_AUTH_SIG_HEX] = '\0';
	return CFX_OK;
}

/* ------------------------------------------------------------------------
 * x-mq-date-time
 * ------------------------------------------------------------------------ */

static int digits_value(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t yy = y - (m <= 2);
	int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
	int64_t yoe = yy - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int cfx_rmq_auth_date_parse(const char *s, size_t len, int64_t *unix_ms)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, se;

	if (len != CFX_RMQ_AUTH_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
		return CFX_EPARSE;
	y = digits_value(s, 4);
	mo = digits_value(s + 4, 2);
	d = digits_value(s + 6, 2);
	h = digits_value(s + 9, 2);
	mi = digits_value(s + 11, 2);
	se = digits_value(s + 13, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
	    se > 59)
		return CFX_EPARSE;
	if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
		return CFX_EPARSE;
	*unix_ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000;
	return CFX_OK;
}
