/* Unit tests for src/store/segment.c: segment files and the segment list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "store/store_int.h"
#include "store_test_util.h"

static void test_create_then_open(void **state)
{
	char *dir = tu_tmpdir(), path[PATH_MAX];
	struct seg *seg, *again;
	(void)state;

	assert_int_equal(seg__create(&cfx_fileops_real, dir, 65536, 8192, &seg), 0);
	assert_int_equal(seg->base, 65536);
	assert_int_equal(seg->size, 8192);
	memcpy(seg->map + 64, "payload", 7);
	seg__path(path, sizeof path, dir, 65536);
	assert_string_equal(path + strlen(dir), "/00000000000000065536.seg");
	assert_int_equal(seg__open(&cfx_fileops_real, path, 65536, &again), 0);
	assert_int_equal(again->size, 8192);
	assert_memory_equal(again->map + 64, "payload", 7);
	/* A name that disagrees with the header is refused. */
	seg__unref(again);
	assert_int_equal(seg__open(&cfx_fileops_real, path, 0, &again), CFX_ECORRUPT);
	/* No temporary file is left behind. */
	uint64_t *v;
	uint32_t n;
	assert_int_equal(store__list_numbered(dir, ".seg", &v, &n), 0);
	assert_int_equal(n, 1);
	cfx_free(v);
	seg__unref(seg);
	tu_rmdir(dir);
}

static void test_bad_headers(void **state)
{
	char *dir = tu_tmpdir(), path[PATH_MAX];
	struct seg *seg;
	uint8_t h[64];
	(void)state;

	assert_int_equal(seg__create(&cfx_fileops_real, dir, 0, 8192, &seg), 0);
	seg__unref(seg);
	seg__path(path, sizeof path, dir, 0);
	assert_int_equal(tu_pread(path, h, 64, 0), 0);

	h[20] ^= 1; /* bad CRC */
	assert_int_equal(tu_pwrite(path, h, 64, 0), 0);
	assert_int_equal(seg__open(&cfx_fileops_real, path, 0, &seg), CFX_ECORRUPT);
	h[20] ^= 1;
	cfx_store_le32(h + 4, 9); /* newer format */
	cfx_store_le32(h + 60, cfx_crc32c(0, h, 60));
	assert_int_equal(tu_pwrite(path, h, 64, 0), 0);
	assert_int_equal(seg__open(&cfx_fileops_real, path, 0, &seg), CFX_EVERSION);
	/* Shorter than a header. */
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(seg__open(&cfx_fileops_real, path, 0, &seg), CFX_ECORRUPT);
	assert_int_equal(seg__open(&cfx_fileops_real, "/nonexistent/x.seg", 0, &seg), CFX_ENOENT);
	tu_rmdir(dir);
}

static void test_truncate_tail_zeroes(void **state)
{
	char *dir = tu_tmpdir();
	struct seg *seg;
	(void)state;

	assert_int_equal(seg__create(&cfx_fileops_real, dir, 0, 16384, &seg), 0);
	memset(seg->map + 64, 0xab, 16384 - 64);
	assert_int_equal(seg__truncate_tail(seg, 1000), 0);
	assert_int_equal(seg->map[999], 0xab);
	for (size_t i = 1000; i < 16384; i++)
		assert_int_equal(seg->map[i], 0);
	struct stat stbuf;
	assert_int_equal(fstat(seg->fd, &stbuf), 0);
	assert_int_equal(stbuf.st_size, 16384);
	seg__unref(seg);
	tu_rmdir(dir);
}

static void test_enospc_on_create_leaves_nothing(void **state)
{
	char *dir = tu_tmpdir();
	struct seg *seg;
	uint64_t *v;
	uint32_t n;
	(void)state;

	cfx_fault_set(CFX_FAULT_ALLOCATE, (struct cfx_fault_rule){ .errnum = ENOSPC, .count = 1 });
	assert_int_equal(seg__create(&cfx_fileops_fault, dir, 0, 8192, &seg), CFX_ENOSPC);
	cfx_fault_clear_all();
	assert_int_equal(store__list_numbered(dir, ".seg", &v, &n), 0);
	assert_int_equal(n, 0);
	cfx_free(v);
	tu_rmdir(dir);
}

static void test_list_find_and_refs(void **state)
{
	char *dir = tu_tmpdir();
	struct seglist sl;
	struct seg *a, *b, *found;
	(void)state;

	seglist__init(&sl);
	assert_int_equal(seg__create(&cfx_fileops_real, dir, 0, 8192, &a), 0);
	assert_int_equal(seg__create(&cfx_fileops_real, dir, 8192, 8192, &b), 0);
	seglist__push(&sl, a);
	seglist__push(&sl, b);
	found = seglist__find(&sl, 8191);
	assert_ptr_equal(found, a);
	assert_int_equal(atomic_load(&a->refs), 2);
	seg__unref(found);
	assert_ptr_equal(seglist__find(&sl, 8192), b);
	seg__unref(b);
	assert_null(seglist__find(&sl, 16384));
	seglist__destroy(&sl);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_then_open),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_truncate_tail_zeroes),
		cmocka_unit_test(test_enospc_on_create_leaves_nothing),
		cmocka_unit_test(test_list_find_and_refs),
	};
	cfx_log_set_level(CFX_LOG_ERROR - 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
