/* Unit tests for src/store/keyidx.c: the key and message-id index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/err.h"
#include "store/store_int.h"
#include "store_test_util.h"

struct fx {
	char *dir;
	struct cfx_store st; /* only fops, options and keys are used by keyidx.c */
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);
	char path[PATH_MAX];

	f->dir = tu_tmpdir();
	snprintf(path, sizeof path, "%s/keys", f->dir);
	f->st.fops = &cfx_fileops_real;
	f->st.o.key_index_entries = 16; /* 1024 slots: collisions need equal slots */
	f->st.keys.dir = cfx_strdup(path);
	*state = f;
	return keyidx__open(&f->st, 0);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	keyidx__close(&f->st);
	cfx_free(f->st.keys.dir);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

static void reopen(struct fx *f, uint64_t limit)
{
	keyidx__close(&f->st);
	f->st.keys.entries = 0;
	assert_int_equal(keyidx__open(&f->st, limit), 0);
}

static void test_add_and_lookup_newest_first(void **state)
{
	struct fx *f = *state;
	uint64_t pos[8];

	/* hash 5 at positions 100, 300, 500; hash 5 + 1024 shares its slot. */
	assert_int_equal(keyidx__add(&f->st, 5, 100), 0);
	assert_int_equal(keyidx__add(&f->st, 5 + 1024, 200), 0);
	assert_int_equal(keyidx__add(&f->st, 5, 300), 0);
	assert_int_equal(keyidx__add(&f->st, 5, 300), 0); /* same batch: deduplicated */
	assert_int_equal(keyidx__add(&f->st, 5, 500), 0);
	assert_int_equal(keyidx__lookup(&f->st, 5, pos, 8), 3);
	assert_int_equal(pos[0], 500);
	assert_int_equal(pos[1], 300);
	assert_int_equal(pos[2], 100);
	assert_int_equal(keyidx__lookup(&f->st, 5 + 1024, pos, 8), 1);
	assert_int_equal(pos[0], 200);
	assert_int_equal(keyidx__lookup(&f->st, 77, pos, 8), 0);
	assert_int_equal(keyidx__lookup(&f->st, 5, pos, 2), 2);
}

static void test_across_files_and_reopen(void **state)
{
	struct fx *f = *state;
	uint64_t pos[64];

	for (uint64_t i = 0; i < 50; i++) /* 16 per file: 4 files */
		assert_int_equal(keyidx__add(&f->st, 9 + (i % 2) * 1024, 1000 + i * 10), 0);
	assert_int_equal(f->st.keys.n, 4);
	assert_int_equal(keyidx__lookup(&f->st, 9, pos, 64), 25);
	assert_int_equal(pos[0], 1000 + 48 * 10);
	assert_int_equal(pos[24], 1000);
	assert_int_equal(keyidx__sync(&f->st), 0);

	reopen(f, UINT64_MAX);
	assert_int_equal(f->st.keys.entries, 50);
	assert_int_equal(keyidx__lookup(&f->st, 9, pos, 64), 25);

	/* Cut at log position 1200: entries 20.. are dropped, slots rebuilt. */
	reopen(f, 1200);
	assert_int_equal(f->st.keys.entries, 20);
	assert_int_equal(f->st.keys.n, 2);
	assert_int_equal(keyidx__lookup(&f->st, 9, pos, 64), 10);
	assert_int_equal(pos[0], 1000 + 18 * 10);
	assert_int_equal(keyidx__add(&f->st, 9, 5000), 0);
	assert_int_equal(keyidx__lookup(&f->st, 9, pos, 64), 11);
	assert_int_equal(pos[0], 5000);
	assert_int_equal(pos[1], 1000 + 18 * 10);
}

static void test_retention(void **state)
{
	struct fx *f = *state;
	uint64_t pos[64];

	for (uint64_t i = 0; i < 40; i++)
		assert_int_equal(keyidx__add(&f->st, 3, 100 + i), 0);
	keyidx__retain(&f->st, 100 + 20); /* the first file (0..15) only points below */
	assert_int_equal(f->st.keys.n, 2);
	assert_int_equal(keyidx__lookup(&f->st, 3, pos, 64), 24);
	keyidx__retain(&f->st, 1000000); /* the last file stays */
	assert_int_equal(f->st.keys.n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_and_lookup_newest_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_across_files_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
	};
	cfx_log_set_level(CFX_LOG_ERROR - 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
