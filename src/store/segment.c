/*
 * segment.c - commit-log segment files and the ordered list of them.
 *
 * A segment is a preallocated file of fixed size, mapped read-write as a
 * whole: appends are memcpy into the mapping, reads are pointers into it.
 * Preallocation (fallocate) reserves the blocks up front, so a full disk
 * shows up as an error when a segment is created, never as SIGBUS while
 * writing through the mapping.
 *
 * A segment is created as <name>.tmp, given its header, synced and only
 * then renamed: a file with the final name always has a durable header.
 *
 * Segments are reference counted: readers hold references while their
 * views point into the mapping; retention unlinks a segment and the last
 * reference unmaps it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "store/files.h"
#include "store/store_int.h"

void seg__path(char *buf, size_t len, const char *dir, uint64_t base)
{
	snprintf(buf, len, "%s/%020" PRIu64 ".seg", dir, base);
}

static struct seg *seg_alloc(const struct cfx_file_ops *fops, const char *path, int fd,
			     uint8_t *map, uint64_t base, uint64_t size)
{
	struct seg *seg = cfx_calloc(1, sizeof *seg);

	seg->base = base;
	seg->size = size;
	seg->fd = fd;
	seg->map = map;
	seg->path = cfx_strdup(path);
	seg->fops = fops;
	atomic_init(&seg->refs, 1);
	atomic_init(&seg->deleted, 0);
	atomic_init(&seg->populated, CFX_SEG_HEADER_BYTES);
	return seg;
}

int seg__create(const struct cfx_file_ops *fops, const char *dir, uint64_t base, uint64_t size,
		struct seg **out)
{
	char path[PATH_MAX];
	uint8_t hdr[CFX_SEG_HEADER_BYTES];
	struct cfx_seg_header h = { .version = CFX_SEG_VERSION,
				    .base_pos = base,
				    .segment_bytes = size,
				    .created_ms = cfx_clock_wall_ms() };
	uint8_t *map;
	int fd, rc;

	seg__path(path, sizeof path, dir, base);
	cfx_seg_header_encode(hdr, &h);
	rc = store__create_file(fops, path, size, hdr, sizeof hdr, &fd, &map);
	if (rc)
		return rc;
	*out = seg_alloc(fops, path, fd, map, base, size);
	return 0;
}

int seg__open(const struct cfx_file_ops *fops, const char *path, uint64_t expect_base,
	      struct seg **out)
{
	uint8_t hdr[CFX_SEG_HEADER_BYTES];
	struct cfx_seg_header h;
	struct stat stbuf;
	uint8_t *map;
	int fd, r;

	fd = fops->open(path, O_RDWR, 0);
	if (fd < 0)
		return cfx_err_from_errno(-fd);
	r = fops->fstat(fd, &stbuf);
	if (r < 0)
		goto io_err;
	if ((uint64_t)stbuf.st_size < CFX_SEG_HEADER_BYTES) {
		STORE_CORRUPT(path, 0, "segment shorter than its header");
		r = CFX_ECORRUPT;
		goto out;
	}
	r = cfx_pread_full(fops, fd, hdr, sizeof hdr, 0);
	if (r < 0)
		goto io_err;
	r = cfx_seg_header_decode(hdr, &h);
	if (r == CFX_EVERSION) {
		cfx_log_error("store: %s was written by a newer version of Conflux (segment format "
			      "%u); refusing to open it",
			      path, cfx_load_le32(hdr + 4));
		goto out;
	}
	if (r) {
		STORE_CORRUPT(path, 0, "bad segment header");
		goto out;
	}
	if (h.base_pos != expect_base || h.segment_bytes != (uint64_t)stbuf.st_size) {
		STORE_CORRUPT(path, 0, "segment header does not match its name or size");
		r = CFX_ECORRUPT;
		goto out;
	}
	map = fops->mmap(fd, h.segment_bytes, 1, &r);
	if (!map)
		goto io_err;
	*out = seg_alloc(fops, path, fd, map, h.base_pos, h.segment_bytes);
	return 0;
io_err:
	r = cfx_err_from_errno(-r);
out:
	fops->close(fd);
	return r;
}

void seg__ref(struct seg *seg)
{
	atomic_fetch_add_explicit(&seg->refs, 1, memory_order_relaxed);
}

void seg__unref(struct seg *seg)
{
	if (!seg || atomic_fetch_sub_explicit(&seg->refs, 1, memory_order_acq_rel) != 1)
		return;
	seg->fops->munmap(seg->map, seg->size);
	seg->fops->close(seg->fd);
	if (atomic_load(&seg->deleted))
		seg->fops->unlink(seg->path);
	cfx_free(seg->path);
	cfx_free(seg);
}

int seg__truncate_tail(struct seg *seg, uint64_t off)
{
	CFX_ASSERT(off >= CFX_SEG_HEADER_BYTES && off <= seg->size);
	return store__zero_tail(seg->fops, seg->fd, seg->map, seg->size, off);
}

/* ------------------------------------------------------------------------
 * The segment list
 * ------------------------------------------------------------------------ */

void seglist__init(struct seglist *sl)
{
	memset(sl, 0, sizeof *sl);
	pthread_rwlock_init(&sl->lock, NULL);
}

void seglist__destroy(struct seglist *sl)
{
	for (uint32_t i = 0; i < sl->n; i++)
		seg__unref(sl->v[i]);
	CFX_FREE(sl->v);
	sl->n = sl->cap = 0;
	pthread_rwlock_destroy(&sl->lock);
}

void seglist__push(struct seglist *sl, struct seg *seg)
{
	pthread_rwlock_wrlock(&sl->lock);
	CFX_ASSERT(sl->n == 0 || sl->v[sl->n - 1]->base + sl->v[sl->n - 1]->size == seg->base);
	if (sl->n == sl->cap) {
		sl->cap = sl->cap ? sl->cap * 2 : 16;
		sl->v = cfx_realloc(sl->v, sl->cap * sizeof *sl->v);
	}
	sl->v[sl->n++] = seg;
	pthread_rwlock_unlock(&sl->lock);
}

struct seg *seglist__find(struct seglist *sl, uint64_t pos)
{
	struct seg *found = NULL;
	uint32_t lo = 0, hi;

	pthread_rwlock_rdlock(&sl->lock);
	hi = sl->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct seg *s = sl->v[mid];
		if (pos < s->base)
			hi = mid;
		else if (pos >= s->base + s->size)
			lo = mid + 1;
		else {
			found = s;
			seg__ref(s);
			break;
		}
	}
	pthread_rwlock_unlock(&sl->lock);
	return found;
}
