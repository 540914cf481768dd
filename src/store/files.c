/*
 * files.c - file-system helpers shared by the store's files: listing
 * numbered files, creating preallocated files atomically, zeroing tails,
 * removing trees.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "store/files.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int store__list_numbered(const char *dir, const char *suffix, uint64_t **out, uint32_t *n)
{
	size_t slen = strlen(suffix);
	uint32_t cap = 0, cnt = 0;
	uint64_t *v = NULL;
	struct dirent *de;
	DIR *d = opendir(dir);

	*out = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : cfx_err_from_errno(errno);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		char *end;
		unsigned long long num;

		/* exactly 20 digits followed by the suffix */
		if (len != 20 + slen || strcmp(de->d_name + 20, suffix) != 0)
			continue;
		errno = 0;
		num = strtoull(de->d_name, &end, 10);
		if (end != de->d_name + 20 || errno)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			v = cfx_realloc(v, cap * sizeof *v);
		}
		v[cnt++] = num;
	}
	closedir(d);
	if (cnt)
		qsort(v, cnt, sizeof *v, cmp_u64);
	*out = v;
	*n = cnt;
	return 0;
}

int store__remove_tmp_files(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return errno == ENOENT ? 0 : cfx_err_from_errno(errno);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			unlink(path);
		}
	}
	closedir(d);
	return 0;
}

int store__create_file(const struct cfx_file_ops *fops, const char *path, uint64_t size,
		       const void *head, size_t head_len, int *fd_out, uint8_t **map_out)
{
	char tmp[PATH_MAX + 8], dir[PATH_MAX];
	uint8_t *map = NULL;
	char *slash;
	int fd, r;

	/* Never replace a file that exists: it may be in use. */
	fd = fops->open(path, O_RDONLY, 0);
	if (fd >= 0) {
		fops->close(fd);
		cfx_log_error("store: refusing to create %s: it exists", path);
		return CFX_EEXIST;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = fops->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return cfx_err_from_errno(-fd);
	r = fops->allocate(fd, 0, (off_t)size);
	if (r == 0 && head_len)
		r = cfx_pwrite_full(fops, fd, head, head_len, 0);
	if (r == 0)
		r = fops->fdatasync(fd);
	if (r == 0)
		r = fops->rename(tmp, path);
	if (r == 0) {
		snprintf(dir, sizeof dir, "%s", path);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		r = cfx_fsync_dir(fops, slash ? dir : ".");
	}
	if (r == 0)
		map = fops->mmap(fd, size, 1, &r);
	if (r != 0 || !map) {
		int err = cfx_err_from_errno(-r);
		fops->close(fd);
		fops->unlink(tmp);
		fops->unlink(path);
		return err;
	}
	*fd_out = fd;
	*map_out = map;
	return 0;
}

int store__zero_tail(const struct cfx_file_ops *fops, int fd, uint8_t *map, uint64_t size,
		     uint64_t off)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t cut = CFX_ALIGN_UP(off, page);
	int r = 0;

	CFX_ASSERT(off <= size);
	if (cut > size)
		cut = size;
	/* Zero the partial page through the mapping, and have the file system
	 * zero the whole pages after it without writing them. The file keeps
	 * its size throughout, so a crash in the middle leaves it openable. */
	memset(map + off, 0, cut - off);
	if (cut < size)
		r = fops->zero_range(fd, (off_t)cut, (off_t)(size - cut));
	if (r == 0)
		r = fops->fdatasync(fd);
	return r ? cfx_err_from_errno(-r) : 0;
}

int store__rmtree(const char *path)
{
	char sub[PATH_MAX];
	struct dirent *de;
	struct stat stbuf;
	DIR *d;
	int rc = 0;

	if (lstat(path, &stbuf) != 0)
		return errno == ENOENT ? 0 : cfx_err_from_errno(errno);
	if (!S_ISDIR(stbuf.st_mode))
		return unlink(path) == 0 ? 0 : cfx_err_from_errno(errno);
	d = opendir(path);
	if (!d)
		return cfx_err_from_errno(errno);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
		int r = store__rmtree(sub);
		if (r && !rc)
			rc = r;
	}
	closedir(d);
	if (rmdir(path) != 0 && !rc)
		rc = cfx_err_from_errno(errno);
	return rc;
}
