/*
 * Unit tests for src/base/base64.c: the RFC 4648 test vectors both ways,
 * and the refusals of the strict decoder (length, alphabet, padding place,
 * non-zero unused bits, output bound).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/base64.h"
#include "base/err.h"

static const struct {
	const char *raw, *b64;
} vectors[] = {
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void **state)
{
	char enc[64];
	uint8_t dec[64];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		size_t len = strlen(vectors[i].raw);
		n = cfx_base64_encode((const uint8_t *)vectors[i].raw, len, enc, sizeof enc);
		assert_int_equal(n, strlen(vectors[i].b64));
		assert_int_equal(n, CFX_BASE64_ENC_LEN(len));
		assert_string_equal(enc, vectors[i].b64);
		assert_int_equal(cfx_base64_decode(vectors[i].b64, n, dec, sizeof dec, &n), 0);
		assert_int_equal(n, len);
		assert_memory_equal(dec, vectors[i].raw, len);
	}
}

static void test_all_bytes_round_trip(void **state)
{
	uint8_t raw[256], dec[256];
	char enc[CFX_BASE64_ENC_LEN(256) + 1];
	size_t n, got;

	(void)state;
	for (int i = 0; i < 256; i++)
		raw[i] = (uint8_t)(255 - i);
	for (size_t len = 0; len <= 256; len += 1) {
		n = cfx_base64_encode(raw, len, enc, sizeof enc);
		assert_int_equal(cfx_base64_decode(enc, n, dec, sizeof dec, &got), 0);
		assert_int_equal(got, len);
		assert_memory_equal(dec, raw, len);
	}
}

static void test_refusals(void **state)
{
	static const char *bad[] = {
		"Zg=",	    /* length not a multiple of 4 */
		"Zg",	    /* no padding */
		"Zh==",	    /* unused bits set ("Zg==" is canonical) */
		"Zm9=",	    /* unused bits set ("Zm8=" is canonical) */
		"Zg==Zg==", /* padding before the last group */
		"Z===",	    /* three '=' */
		"=Zg=",	    /* '=' first */
		"Zm9v\n",   /* whitespace */
		"Zm 9",	    /* space */
		"Zm-_",	    /* URL-safe alphabet */
		"Zm9\x80",  /* high byte */
		"Zg=a",	    /* '=' inside the last group */
	};
	uint8_t dec[16];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(cfx_base64_decode(bad[i], strlen(bad[i]), dec, sizeof dec, &n),
				 CFX_EPARSE);
	/* A NUL inside the counted length is a bad character too. */
	assert_int_equal(cfx_base64_decode("Zm\0v", 4, dec, sizeof dec, &n), CFX_EPARSE);
}

static void test_output_bound(void **state)
{
	uint8_t dec[8];
	size_t n;

	(void)state;
	assert_int_equal(cfx_base64_decode("Zm9vYmFy", 8, dec, 6, &n), 0);
	assert_int_equal(n, 6);
	assert_int_equal(cfx_base64_decode("Zm9vYmFy", 8, dec, 5, &n), CFX_E2BIG);
	assert_int_equal(cfx_base64_decode("Zm9vYg==", 8, dec, 4, &n), 0);
	assert_int_equal(cfx_base64_decode("Zm9vYg==", 8, dec, 3, &n), CFX_E2BIG);
	assert_int_equal(cfx_base64_decode("", 0, dec, 0, &n), 0);
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_all_bytes_round_trip),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_output_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
