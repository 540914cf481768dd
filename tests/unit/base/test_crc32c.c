/* Unit tests for src/base/crc32c.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/crc32c.h"

static void test_check_value(void **state)
{
	(void)state;
	assert_int_equal(cfx_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(cfx_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(cfx_crc32c(0, "", 0), 0);
}

static void test_hw_matches_table_all_lengths(void **state)
{
	uint8_t buf[3 * 4096 * 2 + 77];
	(void)state;
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t len = 0; len < sizeof buf; len += (len < 1024 ? 1 : 97))
		for (size_t off = 0; off < 8; off += 3)
			if (off + len <= sizeof buf)
				assert_int_equal(cfx_crc32c(0, buf + off, len),
						 cfx_crc32c_sw(0, buf + off, len));
}

static void test_chaining(void **state)
{
	uint8_t buf[20000];
	(void)state;
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i ^ (i >> 8));
	uint32_t whole = cfx_crc32c(0, buf, sizeof buf);
	for (size_t cut = 0; cut < sizeof buf; cut += 1237)
		assert_int_equal(cfx_crc32c(cfx_crc32c(0, buf, cut), buf + cut, sizeof buf - cut),
				 whole);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_hw_matches_table_all_lengths),
		cmocka_unit_test(test_chaining),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
