/* Unit tests for src/base/fileops.c: full writes, atomic files, mkdir -p and fault injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/fileops.h"

/* Every test gets a fresh directory under /tmp and a clean fault table. */
struct fx {
	char dir[64];
	char path[PATH_MAX]; /* scratch */
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fx *f = cfx_calloc(1, sizeof *f);

	snprintf(f->dir, sizeof f->dir, "/tmp/cfx-fileops-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	cfx_fault_clear_all();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	cfx_fault_clear_all();
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	cfx_free(f);
	return 0;
}

/* Builds "<dir>/<name>" in the fixture's scratch buffer. */
static const char *in_dir(struct fx *f, const char *name)
{
	int n = snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
	assert_true(n > 0 && (size_t)n < sizeof f->path);
	return f->path;
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed + (i >> 8));
}

/* Reads the whole file at `path` into a new buffer; returns its size. */
static size_t slurp(const char *path, uint8_t **out)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	*out = cfx_malloc((size_t)st.st_size + 1);
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, *out, (size_t)st.st_size, 0), 0);
	close(fd);
	return (size_t)st.st_size;
}

static int open_rw(const struct cfx_file_ops *fops, const char *path)
{
	int fd = fops->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	return fd;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ------------------------------------------------------------------------
 * Full writes and reads
 * ------------------------------------------------------------------------ */

static void test_pwrite_pread_full(void **state)
{
	struct fx *f = *state;
	uint8_t data[10000], back[10000];
	int fd = open_rw(&cfx_fileops_real, in_dir(f, "data"));

	fill_pattern(data, sizeof data, 1);
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_real, fd, data, sizeof data, 4096), 0);
	/* The hole before the offset reads as zeros. */
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, 4096, 0), 0);
	for (size_t i = 0; i < 4096; i++)
		assert_int_equal(back[i], 0);
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, sizeof back, 4096), 0);
	assert_memory_equal(back, data, sizeof data);
	/* A zero-length write or read is a no-op. */
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_real, fd, data, 0, 0), 0);
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, 0, 1 << 20), 0);
	/* Reading past the end is ENODATA, not a silent short read. */
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, 100, 4096 + 9950), -ENODATA);
	assert_int_equal(cfx_fileops_real.close(fd), 0);
	/* Errors come back as -errno. */
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_real, fd, data, 10, 0), -EBADF);
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, 10, 0), -EBADF);
}

static void test_pwrite_full_loops_over_short_writes(void **state)
{
	struct fx *f = *state;
	uint8_t data[1000], *back;
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "short"));

	fill_pattern(data, sizeof data, 2);
	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .short_bytes = 7, .count = -1 });
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_fault, fd, data, sizeof data, 0), 0);
	/* 142 writes of 7 bytes and one of 6: every call was cut short (or exactly fitted). */
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 143);
	close(fd);
	assert_int_equal(slurp(f->path, &back), sizeof data);
	assert_memory_equal(back, data, sizeof data);
	cfx_free(back);
}

static void test_short_writes_limited_count(void **state)
{
	struct fx *f = *state;
	uint8_t data[100], back[100];
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "short3"));

	fill_pattern(data, sizeof data, 3);
	cfx_fault_set(CFX_FAULT_PWRITE,
		      (struct cfx_fault_rule){ .short_bytes = 10, .skip = 1, .count = 3 });
	/* The first call is skipped (a full write), so write in two parts. */
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_fault, fd, data, 5, 0), 0);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 0);
	/* Then three short writes of 10 bytes, and the remaining 65 in one go. */
	ssize_t w = cfx_fileops_fault.pwrite(fd, data + 5, 95, 5);
	assert_int_equal(w, 10);
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_fault, fd, data + 15, 85, 15), 0);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 3);
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, sizeof back, 0), 0);
	assert_memory_equal(back, data, sizeof data);
	close(fd);
}

/* A pwrite that makes no progress must not spin forever. */
static ssize_t zero_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	(void)fd;
	(void)buf;
	(void)n;
	(void)off;
	return 0;
}

/* Writes half of what it is asked, then fails: a partial write before an error. */
static int half_calls;
static ssize_t half_then_fail_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (half_calls++ == 0)
		return cfx_fileops_real.pwrite(fd, buf, n / 2, off);
	return -ENOSPC;
}

static void test_pwrite_full_no_progress_and_partial(void **state)
{
	struct fx *f = *state;
	struct cfx_file_ops ops = cfx_fileops_real;
	uint8_t data[64], back[64];
	int fd = open_rw(&cfx_fileops_real, in_dir(f, "zero"));

	fill_pattern(data, sizeof data, 4);
	ops.pwrite = zero_pwrite;
	assert_int_equal(cfx_pwrite_full(&ops, fd, data, sizeof data, 0), -EIO);

	ops.pwrite = half_then_fail_pwrite;
	half_calls = 0;
	assert_int_equal(cfx_pwrite_full(&ops, fd, data, sizeof data, 0), -ENOSPC);
	assert_int_equal(half_calls, 2);
	/* The range is partly written: exactly the first half. */
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, 32, 0), 0);
	assert_memory_equal(back, data, 32);
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, back, 33, 0), -ENODATA);
	close(fd);
}

/* ------------------------------------------------------------------------
 * Fault rules: skip, count, hits
 * ------------------------------------------------------------------------ */

static void test_fault_eio_once(void **state)
{
	struct fx *f = *state;
	uint8_t data[32];
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "eio"));

	fill_pattern(data, sizeof data, 5);
	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .errnum = EIO, .count = 1 });
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_fault, fd, data, sizeof data, 0), -EIO);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 1);
	/* Nothing was written by the failed call. */
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* The rule is spent. */
	assert_int_equal(cfx_pwrite_full(&cfx_fileops_fault, fd, data, sizeof data, 0), 0);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 1);
	close(fd);
}

static void test_fault_skip_then_count(void **state)
{
	struct fx *f = *state;
	static const int want[] = { 1, 1, 1, -ENOSPC, -ENOSPC, 1, 1 };
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "skip"));

	cfx_fault_set(CFX_FAULT_PWRITE,
		      (struct cfx_fault_rule){ .errnum = ENOSPC, .skip = 3, .count = 2 });
	for (size_t i = 0; i < CFX_ARRAY_LEN(want); i++) {
		ssize_t w = cfx_fileops_fault.pwrite(fd, "x", 1, (off_t)i);
		if (w != want[i])
			fail_msg("call %zu returned %zd, expected %d", i, w, want[i]);
		int64_t hits = i < 3 ? 0 : i < 5 ? (int64_t)i - 2 : 2;
		assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), hits);
	}
	/* Other operations were not affected. */
	assert_int_equal(cfx_fault_hits(CFX_FAULT_FDATASYNC), 0);
	assert_int_equal(cfx_fileops_fault.fdatasync(fd), 0);
	close(fd);
}

static void test_fault_until_cleared(void **state)
{
	struct fx *f = *state;
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "forever"));

	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .errnum = EIO, .count = -1 });
	for (int i = 0; i < 20; i++)
		assert_int_equal(cfx_fileops_fault.pwrite(fd, "ab", 2, 0), -EIO);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 20);
	cfx_fault_clear_all();
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 0);
	assert_int_equal(cfx_fileops_fault.pwrite(fd, "ab", 2, 0), 2);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 0);
	close(fd);
}

/* A rule with neither errnum nor short_bytes, or with count 0, does nothing. */
static void test_fault_inert_rules(void **state)
{
	struct fx *f = *state;
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "inert"));

	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .count = -1 });
	assert_int_equal(cfx_fileops_fault.pwrite(fd, "abc", 3, 0), 3);
	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .errnum = EIO, .count = 0 });
	assert_int_equal(cfx_fileops_fault.pwrite(fd, "abc", 3, 0), 3);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 0);
	/* A short rule longer than the write leaves it whole (but counts the call). */
	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .short_bytes = 100, .count = 1 });
	assert_int_equal(cfx_fileops_fault.pwrite(fd, "abc", 3, 0), 3);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_PWRITE), 1);
	close(fd);
}

/* fdatasync and fsync share one rule; allocate, open and mmap have their own. */
static void test_fault_sync_allocate_open_mmap(void **state)
{
	struct fx *f = *state;
	int fd = open_rw(&cfx_fileops_fault, in_dir(f, "ops"));
	struct stat st;
	int err = 0;

	cfx_fault_set(CFX_FAULT_FDATASYNC, (struct cfx_fault_rule){ .errnum = EIO, .count = 2 });
	assert_int_equal(cfx_fileops_fault.fdatasync(fd), -EIO);
	assert_int_equal(cfx_fileops_fault.fsync(fd), -EIO);
	assert_int_equal(cfx_fileops_fault.fsync(fd), 0);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_FDATASYNC), 2);

	cfx_fault_set(CFX_FAULT_ALLOCATE, (struct cfx_fault_rule){ .errnum = ENOSPC, .count = 1 });
	assert_int_equal(cfx_fileops_fault.allocate(fd, 0, 8192), -ENOSPC);
	assert_int_equal(cfx_fileops_fault.fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(cfx_fileops_fault.allocate(fd, 0, 8192), 0);
	assert_int_equal(cfx_fileops_fault.fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 8192);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_ALLOCATE), 1);

	cfx_fault_set(CFX_FAULT_MMAP, (struct cfx_fault_rule){ .errnum = ENOMEM, .count = 1 });
	assert_null(cfx_fileops_fault.mmap(fd, 8192, 1, &err));
	assert_int_equal(err, -ENOMEM);
	uint8_t *m = cfx_fileops_fault.mmap(fd, 8192, 1, &err);
	assert_non_null(m);
	m[100] = 0x42;
	assert_int_equal(cfx_fileops_fault.munmap(m, 8192), 0);
	uint8_t b = 0;
	assert_int_equal(cfx_pread_full(&cfx_fileops_real, fd, &b, 1, 100), 0);
	assert_int_equal(b, 0x42);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_MMAP), 1);
	close(fd);

	cfx_fault_set(CFX_FAULT_OPEN, (struct cfx_fault_rule){ .errnum = EMFILE, .count = 1 });
	assert_int_equal(cfx_fileops_fault.open(f->path, O_RDONLY, 0), -EMFILE);
	fd = cfx_fileops_fault.open(f->path, O_RDONLY, 0);
	assert_true(fd >= 0);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_OPEN), 1);
	/* Descriptors are close-on-exec. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(cfx_fileops_fault.close(fd), 0);
}

/* The real table reports errors as -errno. */
static void test_real_ops_errors(void **state)
{
	struct fx *f = *state;
	int err = 0;

	assert_int_equal(cfx_fileops_real.open(in_dir(f, "missing/x"), O_RDONLY, 0), -ENOENT);
	assert_int_equal(cfx_fileops_real.close(-1), -EBADF);
	assert_int_equal(cfx_fileops_real.fsync(-1), -EBADF);
	assert_int_equal(cfx_fileops_real.fdatasync(-1), -EBADF);
	assert_int_equal(cfx_fileops_real.ftruncate(-1, 0), -EBADF);
	assert_int_equal(cfx_fileops_real.allocate(-1, 0, 10), -EBADF);
	assert_null(cfx_fileops_real.mmap(-1, 4096, 0, &err));
	assert_int_equal(err, -EBADF);
	assert_int_equal(cfx_fileops_real.unlink(in_dir(f, "nope")), -ENOENT);
	assert_int_equal(cfx_fileops_real.rename(in_dir(f, "nope"), "/tmp/cfx-never"), -ENOENT);
	assert_int_equal(cfx_fileops_real.mkdir(f->dir, 0755), -EEXIST);
}

/* ------------------------------------------------------------------------
 * Atomic files
 * ------------------------------------------------------------------------ */

static void test_write_file_atomic(void **state)
{
	struct fx *f = *state;
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	uint8_t data[5000], *back;

	snprintf(path, sizeof path, "%s", in_dir(f, "ckpt"));
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fill_pattern(data, sizeof data, 6);

	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_real, path, data, sizeof data), 0);
	assert_int_equal(slurp(path, &back), sizeof data);
	assert_memory_equal(back, data, sizeof data);
	cfx_free(back);
	assert_false(exists(tmp));

	/* Overwriting replaces the content entirely (a shorter file is not a prefix mix). */
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_real, path, "short", 5), 0);
	assert_int_equal(slurp(path, &back), 5);
	assert_memory_equal(back, "short", 5);
	cfx_free(back);
	assert_false(exists(tmp));

	/* An empty file is fine too. */
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_real, path, "", 0), 0);
	assert_int_equal(slurp(path, &back), 0);
	cfx_free(back);

	/* Short writes underneath do not change the result. */
	cfx_fault_set(CFX_FAULT_PWRITE, (struct cfx_fault_rule){ .short_bytes = 333, .count = -1 });
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_fault, path, data, sizeof data), 0);
	assert_true(cfx_fault_hits(CFX_FAULT_PWRITE) >= 15);
	assert_int_equal(slurp(path, &back), sizeof data);
	assert_memory_equal(back, data, sizeof data);
	cfx_free(back);
	assert_false(exists(tmp));
}

/* Each failure leaves the previous file exactly as it was, and no .tmp behind. */
static void test_write_file_atomic_failure_keeps_old(void **state)
{
	struct fx *f = *state;
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	uint8_t *back;
	static const struct {
		enum cfx_fault_op op;
		int errnum;
	} faults[] = {
		{ CFX_FAULT_PWRITE, EIO },
		{ CFX_FAULT_PWRITE, ENOSPC },
		{ CFX_FAULT_FDATASYNC, EIO }, /* the file's fsync */
		{ CFX_FAULT_OPEN, EACCES },
	};

	snprintf(path, sizeof path, "%s", in_dir(f, "state"));
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_real, path, "old-content", 11), 0);

	for (size_t i = 0; i < CFX_ARRAY_LEN(faults); i++) {
		cfx_fault_clear_all();
		cfx_fault_set(faults[i].op,
			      (struct cfx_fault_rule){ .errnum = faults[i].errnum, .count = 1 });
		int rc = cfx_write_file_atomic(&cfx_fileops_fault, path, "new-content-longer", 18);
		if (rc != -faults[i].errnum)
			fail_msg("fault %zu: rc %d, expected %d", i, rc, -faults[i].errnum);
		assert_int_equal(cfx_fault_hits(faults[i].op), 1);
		assert_int_equal(slurp(path, &back), 11);
		assert_memory_equal(back, "old-content", 11);
		cfx_free(back);
		assert_false(exists(tmp));
	}

	/* Part of the new content reached the .tmp file before the failure. */
	struct cfx_file_ops ops = cfx_fileops_real;
	ops.pwrite = half_then_fail_pwrite;
	half_calls = 0;
	assert_int_equal(cfx_write_file_atomic(&ops, path, "new-content-longer", 18), -ENOSPC);
	assert_int_equal(half_calls, 2);
	assert_int_equal(slurp(path, &back), 11);
	assert_memory_equal(back, "old-content", 11);
	cfx_free(back);
	assert_false(exists(tmp));

	/* A failed fsync of the directory comes after the rename: the new file is in place. */
	cfx_fault_clear_all();
	cfx_fault_set(CFX_FAULT_FDATASYNC,
		      (struct cfx_fault_rule){ .errnum = EIO, .skip = 1, .count = 1 });
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_fault, path, "newer", 5), -EIO);
	assert_int_equal(slurp(path, &back), 5);
	assert_memory_equal(back, "newer", 5);
	cfx_free(back);
	assert_false(exists(tmp));
}

static void test_write_file_atomic_bad_paths(void **state)
{
	struct fx *f = *state;
	char *longp = cfx_malloc(PATH_MAX + 16);

	const char *deep = in_dir(f, "no/such/file");
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_real, deep, "x", 1), -ENOENT);
	/* A name whose ".tmp" would not fit in PATH_MAX. */
	memset(longp, 'a', PATH_MAX + 15);
	longp[0] = '/';
	longp[PATH_MAX + 15] = '\0';
	assert_int_equal(cfx_write_file_atomic(&cfx_fileops_real, longp, "x", 1), -ENAMETOOLONG);
	cfx_free(longp);
}

/* ------------------------------------------------------------------------
 * Directories
 * ------------------------------------------------------------------------ */

static void test_fsync_dir(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfx_fsync_dir(&cfx_fileops_real, f->dir), 0);
	assert_int_equal(cfx_fsync_dir(&cfx_fileops_real, in_dir(f, "missing")), -ENOENT);
	close(open_rw(&cfx_fileops_real, in_dir(f, "plain")));
	assert_int_equal(cfx_fsync_dir(&cfx_fileops_real, f->path), -ENOTDIR);

	cfx_fault_set(CFX_FAULT_FDATASYNC, (struct cfx_fault_rule){ .errnum = EIO, .count = 1 });
	assert_int_equal(cfx_fsync_dir(&cfx_fileops_fault, f->dir), -EIO);
	assert_int_equal(cfx_fault_hits(CFX_FAULT_FDATASYNC), 1);
	assert_int_equal(cfx_fsync_dir(&cfx_fileops_fault, f->dir), 0);
	cfx_fault_set(CFX_FAULT_OPEN, (struct cfx_fault_rule){ .errnum = EMFILE, .count = 1 });
	assert_int_equal(cfx_fsync_dir(&cfx_fileops_fault, f->dir), -EMFILE);
}

static void test_mkdir_p(void **state)
{
	struct fx *f = *state;
	char p[PATH_MAX];

	snprintf(p, sizeof p, "%s", in_dir(f, "a/b/c/d"));
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, p), 0);
	assert_true(is_dir(p));
	assert_true(is_dir(in_dir(f, "a/b")));
	/* Again: everything exists, still fine. */
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, p), 0);
	/* A sibling under existing parents, with a trailing slash and doubled slashes. */
	snprintf(p, sizeof p, "%s", in_dir(f, "a//b/e/"));
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, p), 0);
	assert_true(is_dir(in_dir(f, "a/b/e")));
	/* The root and the fixture's own directory exist already. */
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, "/"), 0);
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, f->dir), 0);
}

static void test_mkdir_p_errors(void **state)
{
	struct fx *f = *state;
	char p[PATH_MAX];
	char *longp = cfx_malloc(PATH_MAX + 2);

	/* A parent that is a regular file. */
	close(open_rw(&cfx_fileops_real, in_dir(f, "file")));
	snprintf(p, sizeof p, "%s", in_dir(f, "file/sub"));
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, p), -ENOTDIR);
	/* The path itself is a regular file: not a directory, so not a success. */
	snprintf(p, sizeof p, "%s", in_dir(f, "file"));
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, p), -EEXIST);
	/* Empty or over-long paths. */
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, ""), -ENAMETOOLONG);
	memset(longp, 'b', PATH_MAX + 1);
	longp[PATH_MAX + 1] = '\0';
	assert_int_equal(cfx_mkdir_p(&cfx_fileops_real, longp), -ENAMETOOLONG);
	cfx_free(longp);
}

/* mkdir_p goes through the table's mkdir, so a test can see every call. */
static int mkdir_calls;
static int counting_mkdir(const char *path, mode_t mode)
{
	mkdir_calls++;
	return cfx_fileops_real.mkdir(path, mode);
}

static int failing_mkdir(const char *path, mode_t mode)
{
	(void)path;
	(void)mode;
	return -EACCES;
}

static void test_mkdir_p_uses_table(void **state)
{
	struct fx *f = *state;
	struct cfx_file_ops ops = cfx_fileops_real;
	char p[PATH_MAX];

	ops.mkdir = counting_mkdir;
	mkdir_calls = 0;
	snprintf(p, sizeof p, "%s", in_dir(f, "x/y"));
	assert_int_equal(cfx_mkdir_p(&ops, p), 0);
	/* One call per component of the absolute path: /tmp, /tmp/cfx-..., x, y. */
	assert_int_equal(mkdir_calls, 4);
	assert_true(is_dir(p));

	ops.mkdir = failing_mkdir;
	snprintf(p, sizeof p, "%s", in_dir(f, "x/z"));
	assert_int_equal(cfx_mkdir_p(&ops, p), -EACCES);
	assert_false(exists(p));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_pwrite_pread_full),
		T(test_pwrite_full_loops_over_short_writes),
		T(test_short_writes_limited_count),
		T(test_pwrite_full_no_progress_and_partial),
		T(test_fault_eio_once),
		T(test_fault_skip_then_count),
		T(test_fault_until_cleared),
		T(test_fault_inert_rules),
		T(test_fault_sync_allocate_open_mmap),
		T(test_real_ops_errors),
		T(test_write_file_atomic),
		T(test_write_file_atomic_failure_keeps_old),
		T(test_write_file_atomic_bad_paths),
		T(test_fsync_dir),
		T(test_mkdir_p),
		T(test_mkdir_p_errors),
		T(test_mkdir_p_uses_table),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
