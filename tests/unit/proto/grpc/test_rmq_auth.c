/*
 * Unit tests for src/proto/grpc/rmq_auth.c: the authorization values the
 * official RocketMQ 5 clients send (Java / Node.js, Go, C++ forms), the
 * vector of the C++ client's own signing test, the header of the RocketMQ
 * broker's builder test, refusals of malformed values, and x-mq-date-time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <cmocka.h>

#include "base/base64.h"
#include "base/err.h"
#include "proto/grpc/rmq_auth.h"

#define SECRET(s) (const uint8_t *)(s), strlen(s)

static int parse(const char *v, struct cfx_rmq_auth *a, const char **why)
{
	return cfx_rmq_auth_parse(v, strlen(v), a, why);
}

/* rocketmq-clients cpp/source/base/tests/TlsHelperTest.cpp: a known HMAC-SHA1. */
static void test_known_vector(void **state)
{
	static const char data[] = "some random data for test purpose only";
	char hex[CFX_RMQ_AUTH_SIG_HEX + 1], value[256];
	struct cfx_rmq_auth a;
	const char *why;

	(void)state;
	assert_int_equal(cfx_rmq_auth_sign(SECRET("arbitrary-access-key"), data, strlen(data), hex),
			 0);
	assert_int_equal(strcasecmp(hex, "567868dc8e81f1e8095f88958edff1e07db4290e"), 0);
	assert_string_equal(hex, "567868DC8E81F1E8095F88958EDFF1E07DB4290E"); /* upper case */

	snprintf(value, sizeof value,
		 "MQv2-HMAC-SHA1 Credential=AK, SignedHeaders=x-mq-date-time, "
		 "Signature=567868dc8e81f1e8095f88958edff1e07db4290e");
	assert_int_equal(parse(value, &a, &why), 0);
	assert_true(cfx_rmq_auth_verify(&a, data, strlen(data), SECRET("arbitrary-access-key")));
	assert_false(
		cfx_rmq_auth_verify(&a, data, strlen(data) - 1, SECRET("arbitrary-access-key")));
	assert_false(cfx_rmq_auth_verify(&a, data, strlen(data), SECRET("arbitrary-access-kez")));
	assert_false(cfx_rmq_auth_verify(&a, data, strlen(data), NULL, 0));
}

/* apache/rocketmq DefaultAuthenticationContextBuilderTest: user "abc", hex -> base64. */
static void test_broker_builder_header(void **state)
{
	struct cfx_rmq_auth a;
	const char *why;
	char b64[64];

	(void)state;
	assert_int_equal(parse("MQv2-HMAC-SHA1 Credential=abc, SignedHeaders=x-mq-date-time, "
			       "Signature=D18A9CBCDDBA9041D6693268FEF15A989E64430B",
			       &a, &why),
			 0);
	assert_true(cfx_view_eq_str(a.access_key, "abc"));
	assert_int_equal(a.scope.len, 0);
	assert_true(cfx_view_eq_str(a.signed_headers, "x-mq-date-time"));
	assert_true(cfx_view_eq_str(a.signature, "D18A9CBCDDBA9041D6693268FEF15A989E64430B"));
	cfx_base64_encode(a.sig, sizeof a.sig, b64, sizeof b64);
	assert_string_equal(b64, "0YqcvN26kEHWaTJo/vFamJ5kQws=");
}

/* Each client's form, signed here for a known secret. */
static void test_client_forms(void **state)
{
	static const char dt[] = "20231107T120000Z";
	static const char *forms[] = {
		/* Java, Node.js: upper-case hex, bare access key. */
		"MQv2-HMAC-SHA1 Credential=%s, SignedHeaders=x-mq-date-time, Signature=%s",
		/* Go: AccessKey//Rocketmq, lower-case hex (lowered below). */
		"MQv2-HMAC-SHA1 Credential=%s//Rocketmq, SignedHeaders=x-mq-date-time, "
		"Signature=%s",
		/* C++: AccessKey/region/service. */
		"MQv2-HMAC-SHA1 Credential=%s/cn-hangzhou/aliyun, SignedHeaders=x-mq-date-time, "
		"Signature=%s",
		/* Fields in another order, tabs, no space after ',', a list of signed headers. */
		"MQv2-HMAC-SHA1\tSignature=%2$s ,Credential=%1$s,SignedHeaders=host;x-mq-date-time",
	};
	static const char *scopes[] = {"", "/Rocketmq", "cn-hangzhou/aliyun", ""};
	char hex[CFX_RMQ_AUTH_SIG_HEX + 1], value[512];
	struct cfx_rmq_auth a;
	const char *why;

	(void)state;
	assert_int_equal(cfx_rmq_auth_sign(SECRET("my-secret"), dt, strlen(dt), hex), 0);
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char sig[CFX_RMQ_AUTH_SIG_HEX + 1];
		memcpy(sig, hex, sizeof sig);
		if (i == 1)
			for (char *p = sig; *p; p++)
				if (*p >= 'A' && *p <= 'F')
					*p = (char)(*p - 'A' + 'a');
		snprintf(value, sizeof value, forms[i], "AK-123_x.y", sig);
		if (parse(value, &a, &why))
			fail_msg("form %zu refused: %s", i, why);
		assert_true(cfx_view_eq_str(a.access_key, "AK-123_x.y"));
		assert_true(cfx_view_eq_str(a.scope, scopes[i]));
		assert_true(cfx_rmq_auth_verify(&a, dt, strlen(dt), SECRET("my-secret")));
		assert_false(cfx_rmq_auth_verify(&a, "20231107T120001Z", 16, SECRET("my-secret")));
		assert_false(cfx_rmq_auth_verify(&a, dt, strlen(dt), SECRET("my-secreT")));
	}
}

static void test_malformed(void **state)
{
	static const char sig[] = "Signature=567868dc8e81f1e8095f88958edff1e07db4290e";
	static const struct {
		const char *fmt;
		int rc;
		const char *why;
	} cases[] = {
		{"MQv1-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "authorization is not MQv2-HMAC-SHA1"},
		{"mqv2-hmac-sha1 Credential=a, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "authorization is not MQv2-HMAC-SHA1"},
		{"MQv2-HMAC-SHA1", CFX_EPARSE, "authorization is not MQv2-HMAC-SHA1"},
		{"MQv2-HMAC-SHA1Credential=a, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "authorization is not MQv2-HMAC-SHA1"},
		{"", CFX_EPARSE, "authorization is not MQv2-HMAC-SHA1"},
		{"MQv2-HMAC-SHA1 ", CFX_EPARSE, "empty field in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, %s,", CFX_EPARSE,
		 "empty field in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a,, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "empty field in authorization"},
		{"MQv2-HMAC-SHA1 Credential, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "field without '=' in authorization"},
		{"MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "empty value in authorization"},
		{"MQv2-HMAC-SHA1 credential=a, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "unknown field in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, %s, Foo=bar",
		 CFX_EPARSE, "unknown field in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a, Credential=b, SignedHeaders=x-mq-date-time, %s",
		 CFX_EPARSE, "Credential given twice"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, %s, %s", CFX_EPARSE,
		 "Signature given twice"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=a, SignedHeaders=x-mq-date-time, %s",
		 CFX_EPARSE, "SignedHeaders given twice"},
		{"MQv2-HMAC-SHA1 SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "authorization without Credential"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time", CFX_EPARSE,
		 "authorization without Signature"},
		{"MQv2-HMAC-SHA1 Credential=a, %s", CFX_EPARSE,
		 "SignedHeaders does not name x-mq-date-time"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=host, %s", CFX_EPARSE,
		 "SignedHeaders does not name x-mq-date-time"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=X-MQ-DATE-TIME, %s", CFX_EPARSE,
		 "SignedHeaders does not name x-mq-date-time"},
		{"MQv2-HMAC-SHA1 Credential=/region/svc, SignedHeaders=x-mq-date-time, %s",
		 CFX_EPARSE, "empty access key"},
		{"MQv2-HMAC-SHA1 Credential=a b, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "bad character in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a\x01, SignedHeaders=x-mq-date-time, %s", CFX_EPARSE,
		 "bad character in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a\xc3\xa9, SignedHeaders=x-mq-date-time, %s",
		 CFX_EPARSE, "bad character in authorization"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, "
		 "Signature=567868dc8e81f1e8095f88958edff1e07db4290",
		 CFX_EPARSE, "Signature is not 40 hex digits"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, "
		 "Signature=567868dc8e81f1e8095f88958edff1e07db4290e0",
		 CFX_EPARSE, "Signature is not 40 hex digits"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, "
		 "Signature=567868dc8e81f1e8095f88958edff1e07db4290g",
		 CFX_EPARSE, "Signature is not 40 hex digits"},
		{"MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, "
		 "Signature=0YqcvN26kEHWaTJo/vFamJ5kQws=",
		 CFX_EPARSE, "Signature is not 40 hex digits"},
	};
	char value[512];
	struct cfx_rmq_auth a;
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(value, sizeof value, cases[i].fmt, sig, sig);
		int rc = parse(value, &a, &why);
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): rc %d (%s)", i, value, rc, why ? why : "-");
		assert_string_equal(why, cases[i].why);
	}

	/* Bounds: the access key and the whole value. */
	char ak[CFX_RMQ_AUTH_AK_MAX + 2];
	memset(ak, 'k', CFX_RMQ_AUTH_AK_MAX);
	ak[CFX_RMQ_AUTH_AK_MAX] = '\0';
	snprintf(value, sizeof value,
		 "MQv2-HMAC-SHA1 Credential=%s, SignedHeaders=x-mq-date-time, %s", ak, sig);
	assert_int_equal(parse(value, &a, &why), 0);
	assert_int_equal(a.access_key.len, CFX_RMQ_AUTH_AK_MAX);
	strcat(ak, "k");
	snprintf(value, sizeof value,
		 "MQv2-HMAC-SHA1 Credential=%s, SignedHeaders=x-mq-date-time, %s", ak, sig);
	assert_int_equal(parse(value, &a, &why), CFX_E2BIG);
	assert_string_equal(why, "access key too long");

	static const char mid[] = ", SignedHeaders=x-mq-date-time, ";
	static char big[CFX_RMQ_AUTH_HEADER_MAX + 2];
	int n = snprintf(big, sizeof big, "MQv2-HMAC-SHA1 Credential=a/");
	memset(big + n, 's', sizeof big - 1 - (size_t)n - strlen(sig) - strlen(mid));
	strcat(big, mid);
	strcat(big, sig);
	assert_int_equal(strlen(big), CFX_RMQ_AUTH_HEADER_MAX + 1);
	assert_int_equal(parse(big, &a, &why), CFX_E2BIG);
	assert_int_equal(cfx_rmq_auth_parse(big + 1, strlen(big) - 1, &a, &why), CFX_EPARSE);
	/* One byte less (the scope shortened), within the limit. */
	memmove(big + n, big + n + 1, strlen(big + n + 1) + 1);
	assert_int_equal(parse(big, &a, &why), 0);
	/* A NUL inside the counted length. */
	static const char with_nul[] =
		"MQv2-HMAC-SHA1 Credential=a\0b, SignedHeaders=x-mq-date-time, "
		"Signature=567868dc8e81f1e8095f88958edff1e07db4290e";
	assert_int_equal(cfx_rmq_auth_parse(with_nul, sizeof with_nul - 1, &a, &why), CFX_EPARSE);
	assert_string_equal(why, "bad character in authorization");
}

static void test_date(void **state)
{
	static const char *bad[] = {
		"",
		"20231107T120000",
		"20231107T120000Z0",
		"20231107t120000Z",
		"20231107T120000z",
		"2023-11-07T12:00:00Z",
		"20231107 120000Z",
		"2023110xT120000Z",
		"20231307T120000Z",
		"20230007T120000Z",
		"20231100T120000Z",
		"20231131T120000Z",
		"20230229T120000Z",
		"21000229T120000Z",
		"20231107T240000Z",
		"20231107T126000Z",
		"20231107T120060Z",
		"+0231107T120000Z",
		"20231107T12000-Z",
	};
	int64_t ms;

	(void)state;
	assert_int_equal(cfx_rmq_auth_date_parse("20231107T120000Z", 16, &ms), 0);
	assert_true(ms == 1699358400000LL);
	assert_int_equal(cfx_rmq_auth_date_parse("19700101T000000Z", 16, &ms), 0);
	assert_true(ms == 0);
	assert_int_equal(cfx_rmq_auth_date_parse("20231227T194619Z", 16, &ms), 0);
	assert_true(ms == 1703706379000LL);
	assert_int_equal(cfx_rmq_auth_date_parse("20240229T235959Z", 16, &ms), 0);
	assert_int_equal(cfx_rmq_auth_date_parse("20000229T000000Z", 16, &ms), 0);
	assert_int_equal(cfx_rmq_auth_date_parse("19691231T235959Z", 16, &ms), 0);
	assert_true(ms == -1000);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (cfx_rmq_auth_date_parse(bad[i], strlen(bad[i]), &ms) != CFX_EPARSE)
			fail_msg("accepted: %s", bad[i]);

	/* Against the C library, over a spread of instants (1970 .. 2100). */
	for (int64_t t = 0; t < 4102444800LL; t += 86400LL * 37 + 3671) {
		time_t tt = (time_t)t;
		struct tm tm;
		char text[32];
		gmtime_r(&tt, &tm);
		strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &tm);
		assert_int_equal(cfx_rmq_auth_date_parse(text, strlen(text), &ms), 0);
		assert_true(ms == t * 1000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vector), cmocka_unit_test(test_broker_builder_header),
		cmocka_unit_test(test_client_forms), cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
