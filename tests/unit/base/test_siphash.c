/*
 * Unit tests for src/base/siphash.c against the reference vectors of
 * SipHash-2-4 (key 00..0f, messages 00..(n-1)).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/siphash.h"

static void test_reference_vectors(void **state)
{
	uint8_t key[16], msg[64];

	(void)state;
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	assert_true(cfx_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ull);
	assert_true(cfx_siphash24(key, msg, 1) == 0x74f839c593dc67fdull);
	assert_true(cfx_siphash24(key, msg, 8) == 0x93f5f5799a932462ull);
	assert_true(cfx_siphash24(key, msg, 15) == 0xa129ca6149be45e5ull);
	assert_true(cfx_siphash24(key, msg, 63) == 0x958a324ceb064572ull);
}

static void test_key_and_input_matter(void **state)
{
	uint8_t k1[16] = { 1 }, k2[16] = { 2 };

	(void)state;
	assert_true(cfx_siphash24(k1, "abc", 3) != cfx_siphash24(k2, "abc", 3));
	assert_true(cfx_siphash24(k1, "abc", 3) != cfx_siphash24(k1, "abd", 3));
	assert_true(cfx_siphash24(k1, "abc", 3) != cfx_siphash24(k1, "abc\0", 4));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_vectors),
		cmocka_unit_test(test_key_and_input_matter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
