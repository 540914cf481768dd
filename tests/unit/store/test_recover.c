/*
 * Unit tests for src/store/recover.c: what open does after a crash.
 *
 * A crash image is a copy of a live store's directory: a kill -9 leaves the
 * page cache, so the copy holds exactly what a restarted process finds.
 * The images are then damaged the way power loss or bad media would.
 *
 * Committed fixtures (tests/unit/store/fixtures/) pin the on-disk format:
 * `test_recover --generate-fixtures DIR` regenerates them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "store/format.h"
#include "store_test_util.h"

struct fx {
	char *dir;  /* the live store */
	char *img;  /* the crash image */
	struct cfx_store_opts o;
	struct cfx_store *st;
	uint64_t pos[256]; /* log position of each appended batch */
	int nbatches;
};

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);
	char path[PATH_MAX];

	cfx_log_set_level(CFX_LOG_ERROR - 1);
	f->dir = tu_tmpdir();
	snprintf(path, sizeof path, "%s/live", f->dir);
	tu_small_opts(&f->o, cfx_strdup(path));
	snprintf(path, sizeof path, "%s/image", f->dir);
	f->img = cfx_strdup(path);
	*state = f;
	return cfx_store_open(&f->o, &f->st, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->st)
		cfx_store_close(f->st);
	cfx_free((char *)f->o.dir);
	cfx_free(f->img);
	tu_rmdir(f->dir);
	cfx_free(f);
	return 0;
}

/* Appends `n` batches of 4 messages to queue 0 of "rc", remembering positions. */
static void fill(struct fx *f, int n)
{
	for (int i = 0; i < n; i++) {
		struct cfx_append_result ar;
		struct cfx_msg m[4];
		char body[4][300], id[4][40], key[4][40];
		uint64_t first = (uint64_t)f->nbatches * 4;
		for (int j = 0; j < 4; j++) {
			uint64_t off = first + (uint64_t)j;
			memset(&m[j], 0, sizeof m[j]);
			m[j].body.p = (uint8_t *)body[j];
			m[j].body.len = tu_body(body[j], sizeof body[j], "rc", 0, off);
			snprintf(id[j], sizeof id[j], "id-rc-0-%" PRIu64, off);
			snprintf(key[j], sizeof key[j], "k%" PRIu64 " q0", off);
			m[j].msg_id = CFX_VIEW_STR(id[j]);
			m[j].key = CFX_VIEW_STR(key[j]);
			m[j].tag = CFX_VIEW_STR(off % 2 ? "odd" : "even");
			m[j].born_ms = 1700000000000LL + (int64_t)off;
		}
		assert_int_equal(cfx_store_append_wait(f->st, TU_TOPIC("rc"), 0, m, 4,
						       CFX_DURABILITY_SYNC, &ar), 0);
		assert_int_equal(ar.first_offset, first);
		f->pos[f->nbatches++] = ar.log_pos;
	}
	assert_int_equal(cfx_store_wait_dispatched(f->st, 5000), 0);
}

/* Copies the live store as a kill -9 would leave it. */
static void crash_image(struct fx *f)
{
	assert_int_equal(tu_copy_tree(f->o.dir, f->img), 0);
}

static struct cfx_store *open_image(struct fx *f, struct cfx_store_recovery *rec, int *rc)
{
	struct cfx_store_opts o = f->o;
	struct cfx_store *st = NULL;
	o.dir = f->img;
	*rc = cfx_store_open(&o, &st, rec);
	return st;
}

/* The segment file and offset holding log position `pos` (segments are 64 KiB). */
static void seg_of(const char *dir, uint64_t pos, char *path, size_t len, off_t *off)
{
	uint64_t base = pos - pos % (64 * 1024);
	snprintf(path, len, "%s/commitlog/%020" PRIu64 ".seg", dir, base);
	*off = (off_t)(pos - base);
}

static uint64_t end_in(struct cfx_store *st, const char *topic)
{
	uint64_t s, e;
	cfx_store_queue_bounds(st, CFX_VIEW_STR(topic), 0, &s, &e);
	return e;
}

static uint64_t end_of(struct cfx_store *st)
{
	return end_in(st, "rc");
}

/* ------------------------------------------------------------------------ */

static void test_crash_image_recovers_everything(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_store *st;
	int rc;

	fill(f, 10);
	crash_image(f);
	st = open_image(f, &rec, &rc);
	assert_int_equal(rc, 0);
	assert_false(rec.clean);
	assert_int_equal(rec.scanned_entries, 10); /* everything after the open checkpoint */
	assert_int_equal(rec.truncated_bytes, 0);
	assert_int_equal(end_of(st), 40);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), 40);
	cfx_store_close(st);
}

static void test_torn_last_entry_is_cut_and_offsets_stay_dense(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_store *st;
	char path[PATH_MAX], zeros[48] = { 0 };
	off_t off;
	int rc;

	fill(f, 6);
	crash_image(f);
	/* The last entry's final bytes never reached the disk. */
	seg_of(f->img, f->pos[5], path, sizeof path, &off);
	uint8_t hdr[8];
	assert_int_equal(tu_pread(path, hdr, 8, off), 0);
	uint32_t size = cfx_load_le32(hdr);
	assert_int_equal(tu_pwrite(path, zeros, sizeof zeros, off + size - sizeof zeros), 0);

	st = open_image(f, &rec, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(rec.truncate_reason);
	assert_true(rec.truncated_bytes > 0);
	assert_int_equal(end_of(st), 20);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), 20);
	/* The next append reuses the lost offsets: no gap. */
	f->nbatches = 5;
	struct cfx_store *live = f->st;
	f->st = st;
	fill(f, 1);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), 24);
	f->st = live;
	cfx_store_close(st);
}

static void test_bad_crc_in_the_middle_truncates_there(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_store *st;
	char path[PATH_MAX];
	off_t off;
	uint8_t b;
	int rc;

	fill(f, 8);
	crash_image(f);
	seg_of(f->img, f->pos[3], path, sizeof path, &off);
	assert_int_equal(tu_pread(path, &b, 1, off + 100), 0);
	b ^= 0x40;
	assert_int_equal(tu_pwrite(path, &b, 1, off + 100), 0);

	st = open_image(f, &rec, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(rec.truncate_reason, "bad entry checksum");
	assert_int_equal(end_of(st), 12);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), 12);
	/* Later entries are gone from every index too. */
	struct cfx_read_result res;
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_lookup_id(st, CFX_VIEW_STR("id-rc-0-30"), 4, &res), 0);
	assert_int_equal(res.count, 0);
	cfx_read_result_free(&res);
	cfx_store_close(st);
}

static void test_damage_below_the_checkpoint_is_never_served(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_read_result res;
	char path[PATH_MAX];
	off_t off;
	uint8_t b;

	fill(f, 8);
	assert_int_equal(cfx_store_close(f->st), 0);
	f->st = NULL;
	seg_of(f->o.dir, f->pos[2], path, sizeof path, &off);
	assert_int_equal(tu_pread(path, &b, 1, off + 90), 0);
	b ^= 1;
	assert_int_equal(tu_pwrite(path, &b, 1, off + 90), 0);

	assert_int_equal(cfx_store_open(&f->o, &f->st, &rec), 0);
	assert_true(rec.clean); /* no scan: the damage is found on read */
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("rc"), 0, 8, 10, 1 << 20, &res),
			 CFX_ECORRUPT);
	assert_int_equal(res.count, 0);
	/* A read that ends before the damage returns what is good. */
	assert_int_equal(cfx_store_read(f->st, TU_TOPIC("rc"), 0, 0, 100, 1 << 20, &res), 0);
	assert_int_equal(res.count, 8);
	/* Entries after it are fine. */
	assert_int_equal(tu_read_all(f->st, "rc", 0, 12), 20);
	cfx_read_result_free(&res);
}

static void test_zeroed_last_entry_is_the_end(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_store *st;
	char path[PATH_MAX];
	static char zeros[4096];
	off_t off;
	int rc;

	fill(f, 5);
	crash_image(f);
	seg_of(f->img, f->pos[4], path, sizeof path, &off);
	assert_int_equal(tu_pwrite(path, zeros, 2048, off), 0);
	st = open_image(f, &rec, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(end_of(st), 16);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), 16);
	cfx_store_close(st);
}

static void test_missing_index_files_are_rebuilt(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_read_result res;
	char path[PATH_MAX];

	fill(f, 30); /* > 32 entries per index file: two files */
	assert_int_equal(cfx_store_close(f->st), 0);
	f->st = NULL;
	snprintf(path, sizeof path, "%s/queues/rc/0/00000000000000000000.idx", f->o.dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cfx_store_open(&f->o, &f->st, &rec), 0);
	assert_false(rec.clean);
	assert_int_equal(rec.scanned_entries, 30);
	assert_int_equal(tu_read_all(f->st, "rc", 0, 0), 120);

	assert_int_equal(cfx_store_close(f->st), 0);
	f->st = NULL;
	snprintf(path, sizeof path, "%s/keys", f->o.dir);
	store__rmtree(path);
	assert_int_equal(cfx_store_open(&f->o, &f->st, &rec), 0);
	assert_int_equal(rec.scanned_entries, 30);
	cfx_read_result_init(&res);
	assert_int_equal(cfx_store_lookup_key(f->st, TU_TOPIC("rc"), CFX_VIEW_STR("k77"), 4, &res), 0);
	assert_int_equal(res.count, 1);
	assert_int_equal(res.msgs[0].offset, 77);
	cfx_read_result_free(&res);
}

static void test_missing_checkpoint_rebuilds(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	char path[PATH_MAX];

	fill(f, 5);
	assert_int_equal(cfx_store_close(f->st), 0);
	f->st = NULL;
	snprintf(path, sizeof path, "%s/checkpoint", f->o.dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cfx_store_open(&f->o, &f->st, &rec), 0);
	assert_true(rec.checkpoint_missing);
	assert_int_equal(tu_read_all(f->st, "rc", 0, 0), 20);
}

static void test_torn_index_tail_is_dropped(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_store *st;
	char path[PATH_MAX], junk[200];
	int rc;

	fill(f, 6);
	crash_image(f);
	/* Garbage where the next index entries would go. */
	memset(junk, 0x5a, sizeof junk);
	snprintf(path, sizeof path, "%s/queues/rc/0/00000000000000000000.idx", f->img);
	assert_int_equal(tu_pwrite(path, junk, sizeof junk, 6 * 40), 0);
	st = open_image(f, &rec, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(end_of(st), 24);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), 24);
	cfx_store_close(st);
}

static void test_hole_before_a_later_segment(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	struct cfx_store *st;
	struct cfx_store_stats stats;
	char path[PATH_MAX];
	static char zeros[64 * 1024];
	off_t off;
	int rc, i;

	fill(f, 180);
	cfx_store_get_stats(f->st, &stats);
	assert_true(stats.segments >= 3);
	crash_image(f);
	/* Lose the end of the first segment (its last entries and end marker):
	 * the entries of later segments follow a hole and must go too. */
	for (i = 0; f->pos[i + 1] < 64 * 1024; i++)
		;
	seg_of(f->img, f->pos[i], path, sizeof path, &off);
	assert_int_equal(tu_pwrite(path, zeros, (size_t)(64 * 1024 - off), off), 0);
	st = open_image(f, &rec, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(rec.segments, 1);
	assert_int_equal(end_of(st), (uint64_t)i * 4);
	assert_int_equal(tu_read_all(st, "rc", 0, 0), i * 4);
	cfx_store_close(st);
}

static void reseal64(uint8_t b[64])
{
	cfx_store_le32(b + 60, cfx_crc32c(0, b, 60));
}

static void test_newer_format_versions_are_refused_untouched(void **state)
{
	struct fx *f = *state;
	struct cfx_store_recovery rec;
	char path[PATH_MAX];
	uint8_t b[64], after[64];
	int rc;

	fill(f, 4);
	crash_image(f);
	/* A segment header of format 2. */
	snprintf(path, sizeof path, "%s/commitlog/%020d.seg", f->img, 0);
	assert_int_equal(tu_pread(path, b, 64, 0), 0);
	cfx_store_le32(b + 4, 2);
	reseal64(b);
	assert_int_equal(tu_pwrite(path, b, 64, 0), 0);
	assert_null(open_image(f, &rec, &rc));
	assert_int_equal(rc, CFX_EVERSION);
	assert_int_equal(tu_pread(path, after, 64, 0), 0);
	assert_memory_equal(b, after, 64);
	cfx_store_le32(b + 4, 1);
	reseal64(b);
	assert_int_equal(tu_pwrite(path, b, 64, 0), 0);

	/* An entry of format 2 (with a valid checksum) after the checkpoint. */
	char seg[PATH_MAX];
	off_t off;
	seg_of(f->img, f->pos[2], seg, sizeof seg, &off);
	uint8_t hdr[8];
	assert_int_equal(tu_pread(seg, hdr, 8, off), 0);
	uint32_t size = cfx_load_le32(hdr);
	uint8_t *entry = cfx_malloc(size);
	assert_int_equal(tu_pread(seg, entry, size, off), 0);
	entry[9] = 2;
	cfx_store_le32(entry + 4, cfx_crc32c(0, entry + 8, size - 8));
	assert_int_equal(tu_pwrite(seg, entry, size, off), 0);
	assert_null(open_image(f, &rec, &rc));
	assert_int_equal(rc, CFX_EVERSION);
	cfx_free(entry);

	/* A checkpoint of format 2. */
	snprintf(path, sizeof path, "%s/checkpoint", f->o.dir);
	assert_int_equal(cfx_store_close(f->st), 0);
	f->st = NULL;
	assert_int_equal(tu_pread(path, b, 64, 0), 0);
	cfx_store_le32(b + 4, 2);
	reseal64(b);
	assert_int_equal(tu_pwrite(path, b, 64, 0), 0);
	assert_int_equal(cfx_store_open(&f->o, &f->st, &rec), CFX_EVERSION);
	f->st = NULL;
}

/* ------------------------------------------------------------------------
 * Committed fixtures
 * ------------------------------------------------------------------------ */

/* Fixture stores: 8 KiB segments, queue 0 of topic "fx", batches of 4. */
static void fixture_opts(struct cfx_store_opts *o, const char *dir)
{
	tu_small_opts(o, dir);
	o->segment_bytes = 8192;
	o->batch_bytes_max = 2048;
	o->msg_bytes_max = 1024;
	o->index_entries_per_file = 16;
	o->key_index_entries = 16;
}

static struct cfx_store *open_fixture(const char *name, char **tmp, struct cfx_store_recovery *rec,
				      int *rc)
{
	char src[PATH_MAX], dst[PATH_MAX];
	struct cfx_store_opts o;
	struct cfx_store *st = NULL;

	*tmp = tu_tmpdir();
	snprintf(src, sizeof src, "%s/%s", CFX_TEST_FIXTURES, name);
	snprintf(dst, sizeof dst, "%s/store", *tmp);
	if (tu_copy_tree(src, dst))
		fail_msg("fixture %s missing", src);
	fixture_opts(&o, dst);
	*rc = cfx_store_open(&o, &st, rec);
	return st;
}

static void check_fixture(const char *name, int want_rc, uint64_t want_end)
{
	struct cfx_store_recovery rec;
	char *tmp;
	int rc;
	struct cfx_store *st = open_fixture(name, &tmp, &rec, &rc);

	assert_int_equal(rc, want_rc);
	if (!rc) {
		assert_int_equal(end_in(st, "fx"), want_end);
		/* Fixture messages follow the same deterministic pattern. */
		struct cfx_read_result res;
		uint64_t n = 0, off = 0;
		cfx_read_result_init(&res);
		while (cfx_store_read(st, TU_TOPIC("fx"), 0, off, 10, 1 << 20, &res) == 0 &&
		       res.count) {
			for (uint32_t i = 0; i < res.count; i++, n++, off++) {
				assert_int_equal(res.msgs[i].offset, off);
				assert_true(tu_msg_ok(&res.msgs[i], "fx", 0));
			}
		}
		assert_int_equal(n, want_end);
		cfx_read_result_free(&res);
		cfx_store_close(st);
	}
	tu_rmdir(tmp);
}

static void test_fixture_torn_tail(void **state)
{
	(void)state;
	check_fixture("torn-tail", 0, 16);
}

static void test_fixture_bad_crc_middle(void **state)
{
	(void)state;
	check_fixture("bad-crc-middle", 0, 8);
}

static void test_fixture_zero_tail(void **state)
{
	(void)state;
	check_fixture("zero-tail", 0, 16);
}

static void test_fixture_future_version(void **state)
{
	(void)state;
	check_fixture("future-version", CFX_EVERSION, 0);
}

static void test_fixture_no_checkpoint(void **state)
{
	(void)state;
	check_fixture("no-checkpoint", 0, 20);
}

/* Writes the fixtures: 5 sync batches of 4, imaged while open, then damaged. */
static int generate_fixtures(const char *root)
{
	static const char *const names[] = { "torn-tail", "bad-crc-middle", "zero-tail",
					     "future-version", "no-checkpoint" };
	char live[PATH_MAX], dst[PATH_MAX], seg[PATH_MAX];

	cfx_mkdir_p(&cfx_fileops_real, root);
	for (size_t k = 0; k < CFX_ARRAY_LEN(names); k++) {
		struct cfx_store_opts o;
		struct cfx_store *st;
		uint64_t pos[5];
		char *tmp = tu_tmpdir();

		snprintf(live, sizeof live, "%s/live", tmp);
		fixture_opts(&o, live);
		if (cfx_store_open(&o, &st, NULL))
			return 1;
		for (int i = 0; i < 5; i++) {
			struct cfx_append_result ar;
			tu_append(st, "fx", 0, (uint64_t)i * 4, 4, CFX_DURABILITY_SYNC);
			cfx_store_queue_bounds(st, TU_TOPIC("fx"), 0, &ar.first_offset, &ar.log_pos);
			(void)ar;
		}
		cfx_store_wait_dispatched(st, 5000);
		/* positions: walk the index through reads is not exposed; find entries by scan */
		snprintf(dst, sizeof dst, "%s/%s", root, names[k]);
		store__rmtree(dst);
		if (tu_copy_tree(live, dst))
			return 1;
		cfx_store_close(st);
		store__rmtree(tmp);
		cfx_free(tmp);
		snprintf(dst, sizeof dst, "%s/%s/LOCK", root, names[k]);
		unlink(dst);

		/* Entry positions, walking the first segment's entries. */
		uint64_t p = 64;
		int n = 0;
		snprintf(seg, sizeof seg, "%s/%s/commitlog/%020d.seg", root, names[k], 0);
		while (n < 5) {
			uint8_t h[12];
			if (tu_pread(seg, h, sizeof h, (off_t)p))
				return 1;
			if (h[10] == CFX_ENTRY_END) {
				/* next segment */
				return fprintf(stderr, "fixture batches must fit one segment\n"), 1;
			}
			pos[n++] = p;
			p += cfx_load_le32(h);
		}
		uint8_t buf[64];
		static uint8_t zeros[2048];
		switch (k) {
		case 0: { /* torn-tail: the last 16 bytes of the last entry are lost */
			uint8_t h[4];
			tu_pread(seg, h, 4, (off_t)pos[4]);
			tu_pwrite(seg, zeros, 16, (off_t)(pos[4] + cfx_load_le32(h) - 16));
			break;
		}
		case 1: /* bad-crc-middle: a flipped bit inside the third entry */
			tu_pread(seg, buf, 1, (off_t)pos[2] + 80);
			buf[0] ^= 0x10;
			tu_pwrite(seg, buf, 1, (off_t)pos[2] + 80);
			break;
		case 2: { /* zero-tail: the last entry never reached the disk */
			uint8_t h[4];
			tu_pread(seg, h, 4, (off_t)pos[4]);
			tu_pwrite(seg, zeros, cfx_load_le32(h), (off_t)pos[4]);
			break;
		}
		case 3: /* future-version: the segment header says format 2 */
			tu_pread(seg, buf, 64, 0);
			cfx_store_le32(buf + 4, 2);
			reseal64(buf);
			tu_pwrite(seg, buf, 64, 0);
			break;
		case 4: /* no-checkpoint */
			snprintf(dst, sizeof dst, "%s/%s/checkpoint", root, names[k]);
			unlink(dst);
			break;
		}
		printf("fixture %s written\n", names[k]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crash_image_recovers_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_last_entry_is_cut_and_offsets_stay_dense,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_crc_in_the_middle_truncates_there, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_damage_below_the_checkpoint_is_never_served,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_zeroed_last_entry_is_the_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_index_files_are_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_checkpoint_rebuilds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_index_tail_is_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hole_before_a_later_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_format_versions_are_refused_untouched,
						setup, teardown),
		cmocka_unit_test(test_fixture_torn_tail),
		cmocka_unit_test(test_fixture_bad_crc_middle),
		cmocka_unit_test(test_fixture_zero_tail),
		cmocka_unit_test(test_fixture_future_version),
		cmocka_unit_test(test_fixture_no_checkpoint),
	};
	if (argc == 3 && !strcmp(argv[1], "--generate-fixtures")) {
		cfx_log_set_level(CFX_LOG_ERROR);
		return generate_fixtures(argv[2]);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
