/* Unit tests for src/base/err.c: error names, descriptions and errno mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"

/* Every row of the X-macro, expanded here independently of err.c. */
struct row {
	int value;
	const char *name;
	const char *desc;
};

static const struct row rows[] = {
#define ROW_(name, value, desc) { value, #name, desc },
	CFX_ERR_MAP(ROW_)
#undef ROW_
};

static void test_every_code_has_its_name_and_string(void **state)
{
	(void)state;
	assert_true(CFX_ARRAY_LEN(rows) >= 26);
	for (size_t i = 0; i < CFX_ARRAY_LEN(rows); i++) {
		assert_string_equal(cfx_err_name(rows[i].value), rows[i].name);
		assert_string_equal(cfx_strerror(rows[i].value), rows[i].desc);
		/* A description is a sentence fragment, never empty. */
		assert_true(strlen(rows[i].desc) > 0);
	}
}

/* Spot checks against literal text, so a broken X-macro cannot pass by itself. */
static void test_known_names_and_strings(void **state)
{
	(void)state;
	assert_string_equal(cfx_err_name(CFX_OK), "OK");
	assert_string_equal(cfx_strerror(CFX_OK), "success");
	assert_string_equal(cfx_err_name(CFX_AGAIN), "AGAIN");
	assert_string_equal(cfx_err_name(CFX_NEED_MORE), "NEED_MORE");
	assert_string_equal(cfx_strerror(CFX_NEED_MORE), "need more input");
	assert_string_equal(cfx_err_name(CFX_EINVAL), "EINVAL");
	assert_string_equal(cfx_strerror(CFX_EINVAL), "invalid argument");
	assert_string_equal(cfx_err_name(CFX_ECORRUPT), "ECORRUPT");
	assert_string_equal(cfx_strerror(CFX_ECORRUPT), "data corrupted");
	assert_string_equal(cfx_err_name(CFX_EVERSION), "EVERSION");
	assert_string_equal(cfx_err_name(CFX_ENOSPC), "ENOSPC");
	assert_string_equal(cfx_strerror(CFX_ENOSPC), "no space left on device");
	assert_string_equal(cfx_err_name(CFX_ELOCKED), "ELOCKED");
	assert_string_equal(cfx_err_name(CFX_EFSYNC), "EFSYNC");
	assert_non_null(strstr(cfx_strerror(CFX_EFSYNC), "read-only"));
	assert_int_equal(CFX_OK, 0);
	assert_int_equal(CFX_EPARSE, -30);
	assert_int_equal(CFX_EIO, -40);
}

/* 0 is success and failures are negative; values and names are unique. */
static void test_codes_are_distinct_and_signed(void **state)
{
	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(rows); i++) {
		if (rows[i].value == 0)
			assert_string_equal(rows[i].name, "OK");
		else
			assert_true(rows[i].value < 0);
		for (size_t j = i + 1; j < CFX_ARRAY_LEN(rows); j++) {
			assert_int_not_equal(rows[i].value, rows[j].value);
			assert_string_not_equal(rows[i].name, rows[j].name);
		}
	}
}

static int is_code(int v)
{
	for (size_t i = 0; i < CFX_ARRAY_LEN(rows); i++)
		if (rows[i].value == v)
			return 1;
	return 0;
}

static void test_unknown_codes(void **state)
{
	static const int unknown[] = { 1, 2, 100, -3, -9, -29, -34, -45, -1000, INT32_MIN,
				       INT32_MAX };
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(unknown); i++) {
		assert_false(is_code(unknown[i]));
		assert_string_equal(cfx_err_name(unknown[i]), "UNKNOWN");
		assert_string_equal(cfx_strerror(unknown[i]), "unknown error");
	}
	/* A sweep of the whole negative range in use: names are either a row's or UNKNOWN. */
	for (int v = -100; v <= 10; v++) {
		const char *n = cfx_err_name(v);
		if (is_code(v))
			assert_string_not_equal(n, "UNKNOWN");
		else
			assert_string_equal(n, "UNKNOWN");
	}
}

static void test_errno_mapping(void **state)
{
	static const struct {
		int errnum;
		int want;
	} cases[] = {
		{ 0, CFX_OK },
		{ EAGAIN, CFX_AGAIN },
		{ EWOULDBLOCK, CFX_AGAIN },
		{ EINVAL, CFX_EINVAL },
		{ ENOMEM, CFX_ENOMEM },
		{ ENOENT, CFX_ENOENT },
		{ EEXIST, CFX_EEXIST },
		{ ENOSPC, CFX_ENOSPC },
		{ EDQUOT, CFX_ENOSPC },
		{ EFBIG, CFX_ENOSPC },
		{ EIO, CFX_EIO },
		{ ERANGE, CFX_ERANGE },
		{ EOPNOTSUPP, CFX_EUNSUPPORTED },
		/* Anything else is a failed system call. */
		{ EBADF, CFX_ESYS },
		{ EPERM, CFX_ESYS },
		{ EACCES, CFX_ESYS },
		{ ENOTDIR, CFX_ESYS },
		{ EISDIR, CFX_ESYS },
		{ EMFILE, CFX_ESYS },
		{ 99999, CFX_ESYS },
		{ -5, CFX_ESYS },
	};
	(void)state;

	for (size_t i = 0; i < CFX_ARRAY_LEN(cases); i++) {
		int got = cfx_err_from_errno(cases[i].errnum);
		if (got != cases[i].want)
			fail_msg("errno %d mapped to %s, expected %s", cases[i].errnum,
				 cfx_err_name(got), cfx_err_name(cases[i].want));
	}
}

/* Mapped values always name a known code. */
static void test_errno_mapping_is_total(void **state)
{
	(void)state;
	for (int e = 0; e < 200; e++) {
		int got = cfx_err_from_errno(e);
		assert_true(is_code(got));
		assert_true(e == 0 ? got == CFX_OK : got < 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_code_has_its_name_and_string),
		cmocka_unit_test(test_known_names_and_strings),
		cmocka_unit_test(test_codes_are_distinct_and_signed),
		cmocka_unit_test(test_unknown_codes),
		cmocka_unit_test(test_errno_mapping),
		cmocka_unit_test(test_errno_mapping_is_total),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
