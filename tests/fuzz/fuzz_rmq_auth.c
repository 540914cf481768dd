/*
 * fuzz_rmq_auth.c - libFuzzer target for the RocketMQ request signature
 * (proto/grpc/rmq_auth.c): the authorization value parser, the HMAC-SHA1
 * check, and the x-mq-date-time parser.
 *
 * Input layout:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl    FZ_RMQ_AUTH_* flags
 *      1 |    N | "<a>\n<date-time>\n<secret>" (missing parts are empty)
 *
 * <a> is the authorization value, or with FZ_RMQ_AUTH_BUILD an access key
 * (and optional "/scope") from which the target builds the value a Java
 * client would send, signed with <secret> over <date-time>.
 *
 * Beyond "no crash, no out-of-bounds read, no undefined behaviour":
 *  - parse returns 0, CFX_EPARSE or CFX_E2BIG, with a reason exactly when
 *    it fails; its views lie inside the value, the access key is 1..255
 *    bytes without '/', the signature view is 40 hex digits that decode to
 *    `sig`, and SignedHeaders names x-mq-date-time;
 *  - verify agrees with signing the date-time and comparing the hex
 *    without regard to case;
 *  - a value built from a valid access key parses and verifies;
 *  - a date-time that parses prints back to the same 16 characters.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/err.h"
#include "fuzz_common.h"
#include "proto/grpc/rmq_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_RMQ_AUTH_BUILD 0x01u /* <a> is an access key; the target writes the value */
#define FZ_RMQ_AUTH_LOWER 0x02u /* with BUILD: lower-case hex, as the Go client */

static size_t split(const uint8_t **p, size_t *len)
{
	const uint8_t *nl = memchr(*p, '\n', *len);
	size_t n = nl ? (size_t)(nl - *p) : *len;

	if (nl) {
		*p = nl + 1;
		*len -= n + 1;
	} else {
		*p += n;
		*len = 0;
	}
	return n;
}

static int is_valid_key(const uint8_t *p, size_t len)
{
	if (len == 0 || len > CFX_RMQ_AUTH_AK_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',' || p[i] == '/')
			return 0;
	return 1;
}

static void check_parsed(const char *v, size_t len, const struct cfx_rmq_auth *a)
{
	const uint8_t *base = (const uint8_t *)v;

	FZ_CHECK(fz_view_within(a->access_key, base, len) && fz_view_within(a->scope, base, len) &&
		 fz_view_within(a->signed_headers, base, len) &&
		 fz_view_within(a->signature, base, len));
	FZ_CHECK(is_valid_key(a->access_key.p, a->access_key.len));
	FZ_CHECK(a->signature.len == CFX_RMQ_AUTH_SIG_HEX);
	for (size_t k = 0; k < CFX_RMQ_AUTH_SIG_LEN; k++) {
		char hex[3] = {(char)a->signature.p[2 * k], (char)a->signature.p[2 * k + 1], 0};
		unsigned v2 = 0;
		FZ_CHECK(sscanf(hex, "%2x", &v2) == 1 && v2 == a->sig[k]);
	}
	FZ_CHECK(a->signed_headers.len >= strlen(CFX_RMQ_AUTH_DATE_HEADER));
}

static void check_verify(const struct cfx_rmq_auth *a, const char *dt, size_t dt_len,
			 const uint8_t *secret, size_t secret_len)
{
	char hex[CFX_RMQ_AUTH_SIG_HEX + 1], sent[CFX_RMQ_AUTH_SIG_HEX + 1];
	int rc = cfx_rmq_auth_sign(secret, secret_len, dt, dt_len, hex);
	bool ok = cfx_rmq_auth_verify(a, dt, dt_len, secret, secret_len);

	FZ_CHECK(rc == 0 || rc == CFX_EINVAL);
	if (rc) {
		FZ_CHECK(!ok);
		return;
	}
	memcpy(sent, a->signature.p, CFX_RMQ_AUTH_SIG_HEX);
	sent[CFX_RMQ_AUTH_SIG_HEX] = '\0';
	FZ_CHECK(ok == (strcasecmp(hex, sent) == 0));
}

static void fuzz_date(const char *s, size_t len)
{
	int64_t ms = 0;
	int rc = cfx_rmq_auth_date_parse(s, len, &ms);
	char text[64];
	struct tm tm;
	time_t t;

	FZ_CHECK(rc == 0 || rc == CFX_EPARSE);
	if (rc)
		return;
	FZ_CHECK(len == CFX_RMQ_AUTH_DATE_LEN && ms % 1000 == 0);
	t = (time_t)(ms / 1000);
	FZ_CHECK(gmtime_r(&t, &tm) != NULL);
	snprintf(text, sizeof text, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	FZ_CHECK(strlen(text) == len && memcmp(text, s, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char built[CFX_RMQ_AUTH_HEADER_MAX * 2];
	const uint8_t *p, *a_p, *dt_p, *secret;
	size_t len, a_len, dt_len, secret_len;
	struct cfx_rmq_auth a;
	const char *why = NULL;
	uint8_t ctrl;
	int rc;

	if (size < 1)
		return 0;
	ctrl = data[0];
	p = data + 1;
	len = size - 1;
	a_p = p;
	a_len = split(&p, &len);
	dt_p = p;
	dt_len = split(&p, &len);
	secret = p;
	secret_len = len;

	fuzz_date((const char *)dt_p, dt_len);

	if (ctrl & FZ_RMQ_AUTH_BUILD) {
		char hex[CFX_RMQ_AUTH_SIG_HEX + 1];
		const uint8_t *slash = memchr(a_p, '/', a_len);
		size_t key_len = slash ? (size_t)(slash - a_p) : a_len;
		int n;

		if (a_len > CFX_RMQ_AUTH_HEADER_MAX)
			return 0;
		if (cfx_rmq_auth_sign(secret, secret_len, (const char *)dt_p, dt_len, hex))
			return 0;
		if (ctrl & FZ_RMQ_AUTH_LOWER)
			for (char *h = hex; *h; h++)
				if (*h >= 'A' && *h <= 'F')
					*h = (char)(*h - 'A' + 'a');
		/* memcpy, not "%.*s": the access key may hold a NUL. */
		n = snprintf(built, sizeof built, "MQv2-HMAC-SHA1 Credential=");
		memcpy(built + n, a_p, a_len);
		n += (int)a_len;
		n += snprintf(built + n, sizeof built - (size_t)n,
			      ", SignedHeaders=x-mq-date-time, Signature=%s", hex);
		FZ_CHECK(n > 0 && (size_t)n < sizeof built);
		rc = cfx_rmq_auth_parse(built, (size_t)n, &a, &why);
		FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_E2BIG);
		FZ_CHECK((rc != 0) == (why != NULL));
		int scope_ok = 1;
		for (size_t i = key_len; i < a_len; i++)
			if (a_p[i] < 0x21 || a_p[i] > 0x7e || a_p[i] == ',')
				scope_ok = 0;
		int valid = is_valid_key(a_p, key_len) && scope_ok;
		if (valid && (size_t)n <= CFX_RMQ_AUTH_HEADER_MAX)
			FZ_CHECK(rc == 0);
		if (rc)
			return 0;
		check_parsed(built, (size_t)n, &a);
		/* Otherwise the key may have lost spaces around it, or ended at a ','. */
		if (valid)
			FZ_CHECK(a.access_key.len == key_len &&
				 memcmp(a.access_key.p, a_p, key_len) == 0);
		if (valid || a.signature.p >= (const uint8_t *)built + n - CFX_RMQ_AUTH_SIG_HEX)
			FZ_CHECK(cfx_rmq_auth_verify(&a, (const char *)dt_p, dt_len, secret,
						     secret_len));
		return 0;
	}

	rc = cfx_rmq_auth_parse((const char *)a_p, a_len, &a, &why);
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_E2BIG);
	FZ_CHECK((rc != 0) == (why != NULL));
	if (rc)
		return 0;
	check_parsed((const char *)a_p, a_len, &a);
	check_verify(&a, (const char *)dt_p, dt_len, secret, secret_len);
	return 0;
}
