/*
 * fileops.c - the real file-operations table, helpers built on it, and the
 * fault-injecting table used by tests.
 */
#include "base/fileops.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Real operations
 * ------------------------------------------------------------------------ */

/* Turns a system call's -1/errno into -errno (evaluates `r` once). */
static inline int neg_errno(int r)
{
	return r < 0 ? -errno : r;
}
#define NEG_ERRNO(r) neg_errno(r)

static int real_open(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}

static int real_close(int fd)
{
	return NEG_ERRNO(close(fd));
}

static ssize_t real_pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r;
	do
		r = pread(fd, buf, n, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static ssize_t real_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t r;
	do
		r = pwrite(fd, buf, n, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int real_fdatasync(int fd)
{
	return NEG_ERRNO(fdatasync(fd));
}

static int real_fsync(int fd)
{
	return NEG_ERRNO(fsync(fd));
}

static int real_allocate(int fd, off_t off, off_t len)
{
	/* posix_fallocate returns the error number instead of setting errno,
	 * and falls back to writing zeros where fallocate is unsupported. */
	int r = posix_fallocate(fd, off, len);
	return r ? -r : 0;
}

static int real_ftruncate(int fd, off_t len)
{
	return NEG_ERRNO(ftruncate(fd, len));
}

static int real_zero_range(int fd, off_t off, off_t len)
{
	static const char zeros[65536];

	if (len <= 0)
		return 0;
	/* One call where the file system can (ext4, xfs): unwritten extents. */
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	/* Else free the blocks and reserve them again. */
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
		int r = posix_fallocate(fd, off, len);
		return r ? -r : 0;
	}
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	/* Else write zeros. */
	while (len > 0) {
		size_t n = len < (off_t)sizeof zeros ? (size_t)len : sizeof zeros;
		ssize_t w = pwrite(fd, zeros, n, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += w;
		len -= w;
	}
	return 0;
}

static int real_fstat(int fd, struct stat *st)
{
	return NEG_ERRNO(fstat(fd, st));
}

static void *real_mmap(int fd, size_t len, int writable, int *err)
{
	void *p = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	return p;
}

static int real_munmap(void *p, size_t len)
{
	return NEG_ERRNO(munmap(p, len));
}

static int real_rename(const char *from, const char *to)
{
	return NEG_ERRNO(rename(from, to));
}

static int real_unlink(const char *path)
{
	return NEG_ERRNO(unlink(path));
}

static int real_mkdir(const char *path, mode_t mode)
{
	return NEG_ERRNO(mkdir(path, mode));
}

const struct cfx_file_ops cfx_fileops_real = {
	.open = real_open,
	.close = real_close,
	.pread = real_pread,
	.pwrite = real_pwrite,
	.fdatasync = real_fdatasync,
	.fsync = real_fsync,
	.allocate = real_allocate,
	.ftruncate = real_ftruncate,
	.zero_range = real_zero_range,
	.fstat = real_fstat,
	.mmap = real_mmap,
	.munmap = real_munmap,
	.rename = real_rename,
	.unlink = real_unlink,
	.mkdir = real_mkdir,
};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

int cfx_pwrite_full(const struct cfx_file_ops *fops, int fd, const void *buf, size_t n, off_t off)
{
	const char *p = buf;

	while (n) {
		ssize_t w = fops->pwrite(fd, p, n, off);
		if (w < 0)
			return (int)w;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

int cfx_pread_full(const struct cfx_file_ops *fops, int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;

	while (n) {
		ssize_t r = fops->pread(fd, p, n, off);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -ENODATA;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int cfx_fsync_dir(const struct cfx_file_ops *fops, const char *dir)
{
	int fd = fops->open(dir, O_RDONLY | O_DIRECTORY, 0);
	int rc;

	if (fd < 0)
		return fd;
	rc = fops->fsync(fd);
	fops->close(fd);
	return rc;
}

static int write_atomic(const struct cfx_file_ops *fops, const char *path, const void *data,
			size_t len, mode_t mode, int fresh);

int cfx_write_file_atomic(const struct cfx_file_ops *fops, const char *path, const void *data,
			  size_t len)
{
	return write_atomic(fops, path, data, len, 0644, 0);
}

int cfx_write_file_atomic_mode(const struct cfx_file_ops *fops, const char *path,
			       const void *data, size_t len, mode_t mode)
{
	return write_atomic(fops, path, data, len, mode, 1);
}

static int write_atomic(const struct cfx_file_ops *fops, const char *path, const void *data,
			size_t len, mode_t mode, int fresh)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	int fd, rc;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	/* O_CREAT keeps the mode of a tmp file left by a crash: start afresh. */
	if (fresh)
		fops->unlink(tmp);
	fd = fops->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return fd;
	rc = cfx_pwrite_full(fops, fd, data, len, 0);
	if (!rc)
		rc = fops->fsync(fd);
	fops->close(fd);
	if (!rc)
		rc = fops->rename(tmp, path);
	if (rc) {
		fops->unlink(tmp);
		return rc;
	}
	snprintf(dir, sizeof dir, "%s", path);
	return cfx_fsync_dir(fops, dirname(dir));
}

int cfx_mkdir_p(const struct cfx_file_ops *fops, const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int r = fops->mkdir(buf, 0755);
		*p = '/';
		if (r < 0 && r != -EEXIST)
			return r;
	}
	int r = fops->mkdir(buf, 0755);
	if (r == -EEXIST) {
		/* Something is there already: success only if it is a directory. */
		struct stat st;
		return stat(buf, &st) == 0 && !S_ISDIR(st.st_mode) ? -EEXIST : 0;
	}
	return r < 0 ? r : 0;
}

/* ------------------------------------------------------------------------
 * Fault injection
 * ------------------------------------------------------------------------ */

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cfx_fault_rule fault_rules[CFX_FAULT_OP_COUNT];
static int64_t fault_hits[CFX_FAULT_OP_COUNT];

void cfx_fault_set(enum cfx_fault_op op, struct cfx_fault_rule rule)
{
	pthread_mutex_lock(&fault_mu);
	fault_rules[op] = rule;
	pthread_mutex_unlock(&fault_mu);
}

void cfx_fault_clear_all(void)
{
	pthread_mutex_lock(&fault_mu);
	memset(fault_rules, 0, sizeof fault_rules);
	memset(fault_hits, 0, sizeof fault_hits);
	pthread_mutex_unlock(&fault_mu);
}

int64_t cfx_fault_hits(enum cfx_fault_op op)
{
	pthread_mutex_lock(&fault_mu);
	int64_t h = fault_hits[op];
	pthread_mutex_unlock(&fault_mu);
	return h;
}

/*
 * Decides whether this call of `op` is affected. Returns the rule to apply
 * (errnum or short_bytes set) or a zeroed rule.
 */
static struct cfx_fault_rule fault_check(enum cfx_fault_op op)
{
	struct cfx_fault_rule hit = { 0 };
	struct cfx_fault_rule *r = &fault_rules[op];

	pthread_mutex_lock(&fault_mu);
	if (r->count != 0 && (r->errnum || r->short_bytes)) {
		if (r->skip > 0) {
			r->skip--;
		} else {
			hit = *r;
			if (r->count > 0)
				r->count--;
			fault_hits[op]++;
		}
	}
	pthread_mutex_unlock(&fault_mu);
	return hit;
}

static int fault_open(const char *path, int flags, mode_t mode)
{
	struct cfx_fault_rule h = fault_check(CFX_FAULT_OPEN);
	return h.errnum ? -h.errnum : real_open(path, flags, mode);
}

static ssize_t fault_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct cfx_fault_rule h = fault_check(CFX_FAULT_PWRITE);
	if (h.errnum)
		return -h.errnum;
	if (h.short_bytes && n > h.short_bytes)
		n = h.short_bytes;
	return real_pwrite(fd, buf, n, off);
}

static int fault_fdatasync(int fd)
{
	struct cfx_fault_rule h = fault_check(CFX_FAULT_FDATASYNC);
	return h.errnum ? -h.errnum : real_fdatasync(fd);
}

static int fault_fsync(int fd)
{
	struct cfx_fault_rule h = fault_check(CFX_FAULT_FDATASYNC);
	return h.errnum ? -h.errnum : real_fsync(fd);
}

static int fault_allocate(int fd, off_t off, off_t len)
{
	struct cfx_fault_rule h = fault_check(CFX_FAULT_ALLOCATE);
	return h.errnum ? -h.errnum : real_allocate(fd, off, len);
}

static void *fault_mmap(int fd, size_t len, int writable, int *err)
{
	struct cfx_fault_rule h = fault_check(CFX_FAULT_MMAP);
	if (h.errnum) {
		*err = -h.errnum;
		return NULL;
	}
	return real_mmap(fd, len, writable, err);
}

const struct cfx_file_ops cfx_fileops_fault = {
	.open = fault_open,
	.close = real_close,
	.pread = real_pread,
	.pwrite = fault_pwrite,
	.fdatasync = fault_fdatasync,
	.fsync = fault_fsync,
	.allocate = fault_allocate,
	.ftruncate = real_ftruncate,
	.zero_range = real_zero_range,
	.fstat = real_fstat,
	.mmap = fault_mmap,
	.munmap = real_munmap,
	.rename = real_rename,
	.unlink = real_unlink,
	.mkdir = real_mkdir,
};
