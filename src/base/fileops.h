/*
 * fileops.h - the file-operations table every store file access goes
 * through.
 *
 * Production code uses cfx_fileops_real (thin wrappers around the system
 * calls). Tests swap in cfx_fileops_fault, which forwards to the real calls
 * but can be told to fail chosen operations (ENOSPC on allocation, EIO on
 * sync, short writes), the way SQLite's crash-simulating VFS does.
 *
 * Convention: every function returns >= 0 on success and -errno on failure
 * (mmap returns NULL and sets *err). Short writes are possible; callers loop
 * with cfx_pwrite_full.
 */
#ifndef CFX_BASE_FILEOPS_H
#define CFX_BASE_FILEOPS_H

#include <sys/stat.h>
#include <sys/types.h>

#include "base/common.h"

struct cfx_file_ops {
	int (*open)(const char *path, int flags, mode_t mode);
	int (*close)(int fd);
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	/* Reserves blocks for [off, off+len): a later write there cannot hit ENOSPC. */
	int (*allocate)(int fd, off_t off, off_t len);
	int (*ftruncate)(int fd, off_t len);
	/*
	 * Makes [off, off+len) read as zeros, keeping the file size and the
	 * blocks reserved. Crash-safe: the size never changes, so an interrupted
	 * call leaves a file of the right size (its range zero or old data).
	 */
	int (*zero_range)(int fd, off_t off, off_t len);
	int (*fstat)(int fd, struct stat *st);
	void *(*mmap)(int fd, size_t len, int writable, int *err);
	int (*munmap)(void *p, size_t len);
	int (*rename)(const char *from, const char *to);
	int (*unlink)(const char *path);
	int (*mkdir)(const char *path, mode_t mode);
};

extern const struct cfx_file_ops cfx_fileops_real;

/*
 * Writes all `n` bytes at `off`, looping over short writes. Returns 0 or
 * -errno. After a failure the range may be partly written.
 */
int cfx_pwrite_full(const struct cfx_file_ops *fops, int fd, const void *buf, size_t n, off_t off);
int cfx_pread_full(const struct cfx_file_ops *fops, int fd, void *buf, size_t n, off_t off);

/* fsyncs a directory so that a rename or create in it is durable. */
int cfx_fsync_dir(const struct cfx_file_ops *fops, const char *dir);

/*
 * Writes `len` bytes to `path` atomically: write `path`.tmp, fsync, rename,
 * fsync the directory. Returns 0 or -errno.
 */
int cfx_write_file_atomic(const struct cfx_file_ops *fops, const char *path, const void *data,
			  size_t len);
/* The same, creating the file with `mode` (0600 for secrets). */
int cfx_write_file_atomic_mode(const struct cfx_file_ops *fops, const char *path,
			       const void *data, size_t len, mode_t mode);

/* Creates `path` and any missing parents (mkdir -p). Returns 0 or -errno. */
int cfx_mkdir_p(const struct cfx_file_ops *fops, const char *path);

/* ------------------------------------------------------------------------
 * Fault injection (tests, crash tests)
 * ------------------------------------------------------------------------ */

enum cfx_fault_op {
	CFX_FAULT_PWRITE,
	CFX_FAULT_FDATASYNC, /* also fsync */
	CFX_FAULT_ALLOCATE,
	CFX_FAULT_OPEN,
	CFX_FAULT_MMAP,
	CFX_FAULT_OP_COUNT,
};

/*
 * One rule per operation: after `skip` more successful calls, the next
 * `count` calls fail with `-errnum` (count < 0: until cleared).
 * For PWRITE, `short_bytes` > 0 instead truncates each affected write to
 * that many bytes (a short write, not an error).
 */
struct cfx_fault_rule {
	int errnum;
	int64_t skip;
	int64_t count;
	size_t short_bytes;
};

extern const struct cfx_file_ops cfx_fileops_fault;

void cfx_fault_set(enum cfx_fault_op op, struct cfx_fault_rule rule);
void cfx_fault_clear_all(void);
/* Number of calls of `op` that were made to fail so far. */
int64_t cfx_fault_hits(enum cfx_fault_op op);

#endif
