/* Unit tests for src/store/cq.c: the batch index of one queue. */
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
	struct cfx_store st; /* only fops and options are used by cq.c */
	struct queue q;
};

static void queue_init(struct fx *f)
{
	memset(&f->q, 0, sizeof f->q);
	pthread_mutex_init(&f->q.mu, NULL);
	f->q.dir = f->dir;
}

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);
	f->dir = tu_tmpdir();
	f->st.fops = &cfx_fileops_real;
	f->st.o.index_entries_per_file = 8;
	queue_init(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	cq__close(&f->st, &f->q);
	pthread_mutex_destroy(&f->q.mu);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

/* Entry i: batch of (i % 3 + 1) messages at log position 1000 * (i + 1). */
static void add_entries(struct fx *f, int n)
{
	uint64_t off = f->q.entries ? atomic_load(&f->q.end_offset) : 0;
	for (int k = 0; k < n; k++) {
		uint64_t i = f->q.entries;
		struct cfx_idx_entry ie = { .log_pos = 1000 * (i + 1),
					    .first_offset = off,
					    .store_ms = 5000 + 10 * (int64_t)i,
					    .entry_bytes = 128,
					    .msg_count = (uint32_t)(i % 3 + 1),
					    .tag_hash = 7 };
		assert_int_equal(cq__append(&f->st, &f->q, &ie), 0);
		off += ie.msg_count;
	}
}

static void test_append_across_files_and_lookups(void **state)
{
	struct fx *f = *state;
	struct cfx_idx_entry ie;
	uint64_t ord;

	add_entries(f, 20); /* 3 files of 8 */
	assert_int_equal(f->q.nfiles, 3);
	assert_int_equal(f->q.entries, 20);
	/* offsets: entry i covers (i%3+1) messages; total = 7*6 - ... */
	assert_int_equal(cq__get(&f->q, 19, &ie), 0);
	assert_int_equal(ie.log_pos, 20000);
	assert_int_equal(atomic_load(&f->q.end_offset), ie.first_offset + ie.msg_count);
	/* The entry holding an offset inside a batch. */
	assert_int_equal(cq__get(&f->q, 10, &ie), 0);
	assert_int_equal(cq__find_offset(&f->q, ie.first_offset + ie.msg_count - 1, &ord), 0);
	assert_int_equal(ord, 10);
	assert_int_equal(cq__find_offset(&f->q, ie.first_offset, &ord), 0);
	assert_int_equal(ord, 10);
	/* By time: first entry with store_ms >= t. */
	assert_int_equal(cq__find_time(&f->q, 5000 + 10 * 7 - 5), 7);
	assert_int_equal(cq__find_time(&f->q, 0), 0);
	assert_int_equal(cq__find_time(&f->q, 999999), 20);
	/* By log position. */
	assert_int_equal(cq__find_pos(&f->q, 12000), 11);
	assert_int_equal(cq__find_pos(&f->q, 12001), 12);
	assert_int_equal(cq__get(&f->q, 20, &ie), CFX_ERANGE);
}

static void test_reopen_keeps_valid_prefix_below_limit(void **state)
{
	struct fx *f = *state;
	struct cfx_idx_entry ie;

	add_entries(f, 20);
	uint64_t end = atomic_load(&f->q.end_offset);
	cq__close(&f->st, &f->q);
	queue_init(f);
	assert_int_equal(cq__open(&f->st, &f->q, UINT64_MAX), 0);
	assert_int_equal(f->q.entries, 20);
	assert_int_equal(atomic_load(&f->q.end_offset), end);
	assert_int_equal(f->q.next_offset, end);

	/* Entries at or above the limit are cut, and later files go. */
	cq__close(&f->st, &f->q);
	queue_init(f);
	assert_int_equal(cq__open(&f->st, &f->q, 7500), 0);
	assert_int_equal(f->q.entries, 7);
	assert_int_equal(f->q.nfiles, 1);
	assert_int_equal(cq__get(&f->q, 6, &ie), 0);
	assert_int_equal(atomic_load(&f->q.end_offset), ie.first_offset + ie.msg_count);
	/* The zeroed slots can be appended to again. */
	add_entries(f, 3);
	assert_int_equal(f->q.entries, 10);
	assert_int_equal(f->q.nfiles, 2);
}

static void test_torn_entry_ends_the_index(void **state)
{
	struct fx *f = *state;

	add_entries(f, 6);
	f->q.files[0]->map[4 * CFX_IDX_ENTRY_BYTES + 3] ^= 0xff; /* entry 4 torn */
	cq__close(&f->st, &f->q);
	queue_init(f);
	assert_int_equal(cq__open(&f->st, &f->q, UINT64_MAX), 0);
	assert_int_equal(f->q.entries, 4);
}

static void test_retention_drops_whole_files(void **state)
{
	struct fx *f = *state;
	struct cfx_idx_entry ie;

	add_entries(f, 20);
	/* Log now starts at 12500: entries 0..11 point below it. */
	cq__retain(&f->st, &f->q, 12500);
	assert_int_equal(f->q.nfiles, 2); /* entries 0-7 gone, 8-15 stay (some still live) */
	assert_int_equal(cq__first_ord(&f->q), 8);
	assert_int_equal(cq__get(&f->q, 12, &ie), 0);
	assert_int_equal(atomic_load(&f->q.start_offset), ie.first_offset);
	assert_int_equal(cq__get(&f->q, 3, &ie), CFX_ERANGE);
	/* The last file always stays, even when everything is below the start. */
	cq__retain(&f->st, &f->q, 1000000);
	assert_int_equal(f->q.nfiles, 1);
	assert_int_equal(atomic_load(&f->q.start_offset), atomic_load(&f->q.end_offset));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_across_files_and_lookups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_valid_prefix_below_limit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_entry_ends_the_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_drops_whole_files, setup, teardown),
	};
	cfx_log_set_level(CFX_LOG_ERROR - 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
