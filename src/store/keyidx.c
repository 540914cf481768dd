/*
 * keyidx.c - the key and message-id index.
 *
 * A sequence of fixed-size hash files (format.h): a slot table holding the
 * newest entry of each slot, and entries appended in log order, each
 * pointing to the previous entry of its slot. A lookup walks the chains of
 * the newest file first and returns candidate log positions; the caller
 * confirms each candidate by decoding the message (hashes collide).
 *
 * Derived data, like the batch index: recovery keeps the valid prefix of
 * entries below the durable position and rebuilds the slot table of the
 * last file from its entries, so a slot never points at a lost entry.
 *
 * Locking: the caller holds st->keys.mu (except open/close).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>

#include "base/err.h"
#include "store/files.h"
#include "store/store_int.h"

static void kix_path(char *buf, size_t len, const char *dir, uint64_t first_ord)
{
	snprintf(buf, len, "%s/%020" PRIu64 ".kix", dir, first_ord);
}

static size_t kix_bytes(uint32_t slots, uint32_t cap)
{
	return CFX_KIX_HEADER_BYTES + (size_t)slots * 4 + (size_t)cap * CFX_KIX_ENTRY_BYTES;
}

static uint8_t *slot_ptr(const struct kixfile *f, uint32_t slot)
{
	return f->map + CFX_KIX_HEADER_BYTES + (size_t)slot * 4;
}

static uint8_t *entry_ptr(const struct kixfile *f, uint32_t n)
{
	return f->map + CFX_KIX_HEADER_BYTES + (size_t)f->slot_count * 4 +
	       (size_t)n * CFX_KIX_ENTRY_BYTES;
}

static void kix_close(struct cfx_store *st, struct kixfile *f)
{
	st->fops->munmap(f->map, f->map_bytes);
	st->fops->close(f->fd);
	cfx_free(f);
}

static void kix_delete(struct cfx_store *st, struct kixfile *f)
{
	char path[PATH_MAX];

	kix_path(path, sizeof path, st->keys.dir, f->first_ord);
	kix_close(st, f);
	st->fops->unlink(path);
}

static void files_push(struct keyidx *k, struct kixfile *f)
{
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 4;
		k->files = cfx_realloc(k->files, k->cap * sizeof *k->files);
	}
	k->files[k->n++] = f;
}

static int kix_open(struct cfx_store *st, uint64_t first_ord, struct kixfile **out)
{
	uint8_t hdr[CFX_KIX_HEADER_BYTES];
	char path[PATH_MAX];
	struct cfx_kix_header h;
	struct stat stbuf;
	struct kixfile *f;
	uint8_t *map;
	int fd, r;

	kix_path(path, sizeof path, st->keys.dir, first_ord);
	fd = st->fops->open(path, O_RDWR, 0);
	if (fd < 0)
		return cfx_err_from_errno(-fd);
	r = st->fops->fstat(fd, &stbuf);
	if (r == 0)
		r = cfx_pread_full(st->fops, fd, hdr, sizeof hdr, 0);
	if (r) {
		st->fops->close(fd);
		return r == -ENODATA ? CFX_ECORRUPT : cfx_err_from_errno(-r);
	}
	r = cfx_kix_header_decode(hdr, &h);
	if (r == 0 && (uint64_t)stbuf.st_size != kix_bytes(h.slot_count, h.entry_cap))
		r = CFX_ECORRUPT;
	if (r) {
		st->fops->close(fd);
		return r;
	}
	map = st->fops->mmap(fd, (size_t)stbuf.st_size, 1, &r);
	if (!map) {
		st->fops->close(fd);
		return cfx_err_from_errno(-r);
	}
	f = cfx_calloc(1, sizeof *f);
	f->first_ord = first_ord;
	f->slot_count = h.slot_count;
	f->entry_cap = h.entry_cap;
	f->fd = fd;
	f->map = map;
	f->map_bytes = (size_t)stbuf.st_size;
	*out = f;
	return 0;
}

/* The file and index of global ordinal `ord`, or NULL. */
static struct kixfile *file_of(const struct keyidx *k, uint64_t ord, uint32_t *n)
{
	for (uint32_t i = k->n; i-- > 0;) {
		struct kixfile *f = k->files[i];
		if (ord >= f->first_ord && ord < f->first_ord + f->entry_cap) {
			*n = (uint32_t)(ord - f->first_ord);
			return f;
		}
	}
	return NULL;
}

static int entry_ok(const struct keyidx *k, uint64_t ord, uint64_t limit)
{
	struct cfx_kix_entry ke;
	uint32_t n;
	struct kixfile *f = file_of(k, ord, &n);
	return f && cfx_kix_entry_decode(entry_ptr(f, n), &ke) && ke.log_pos < limit;
}

/*
 * Rebuilds the slot table of `f` from its first `count` entries, checking
 * each on the way: the count is cut at the first entry that does not
 * decode, points at or beyond `limit`, or goes back in the log (the binary
 * search that found the prefix assumes damage only at the tail).
 */
static void rebuild_slots(struct kixfile *f, uint64_t limit)
{
	struct cfx_kix_entry ke;

	memset(slot_ptr(f, 0), 0, (size_t)f->slot_count * 4);
	f->max_pos = 0;
	for (uint32_t i = 0; i < f->count; i++) {
		if (!cfx_kix_entry_decode(entry_ptr(f, i), &ke) || ke.log_pos >= limit ||
		    ke.log_pos < f->max_pos || ke.prev > i) {
			f->count = i;
			break;
		}
		cfx_store_le32(slot_ptr(f, (uint32_t)(ke.hash % f->slot_count)), i + 1);
		f->max_pos = ke.log_pos;
	}
	f->dirty = 1;
}

int keyidx__open(struct cfx_store *st, uint64_t limit)
{
	struct keyidx *k = &st->keys;
	uint64_t *ords, lo, hi;
	uint32_t n;
	int rc;

	rc = cfx_mkdir_p(st->fops, k->dir);
	if (rc)
		return cfx_err_from_errno(-rc);
	store__remove_tmp_files(k->dir);
	rc = store__list_numbered(k->dir, ".kix", &ords, &n);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < n && !rc; i++) {
		struct kixfile *f;
		if (k->n) {
			struct kixfile *last = k->files[k->n - 1];
			if (last->first_ord + last->entry_cap != ords[i]) {
				rc = CFX_ECORRUPT;
				break;
			}
		}
		rc = kix_open(st, ords[i], &f);
		if (!rc)
			files_push(k, f);
	}
	cfx_free(ords);
	if (rc)
		return rc; /* recovery rebuilds the index from the log */
	if (k->n == 0) {
		k->entries = 0;
		return 0;
	}

	lo = k->files[0]->first_ord;
	hi = k->files[k->n - 1]->first_ord + k->files[k->n - 1]->entry_cap;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (entry_ok(k, mid, limit))
			lo = mid + 1;
		else
			hi = mid;
	}
	k->entries = lo;
	while (k->n > 1 && k->files[k->n - 1]->first_ord >= k->entries)
		kix_delete(st, k->files[--k->n]);
	for (uint32_t i = 0; i < k->n; i++) {
		struct kixfile *f = k->files[i];
		uint64_t used = k->entries - f->first_ord;
		f->count = (uint32_t)(used < f->entry_cap ? used : f->entry_cap);
	}
	{
		struct kixfile *f = k->files[k->n - 1];
		rebuild_slots(f, limit);
		k->entries = f->first_ord + f->count;
		if (f->count < f->entry_cap) {
			size_t off = (size_t)(entry_ptr(f, f->count) - f->map);
			rc = store__zero_tail(st->fops, f->fd, f->map, f->map_bytes, off);
			if (rc)
				return rc;
		}
		for (uint32_t i = 0; i + 1 < k->n; i++) {
			struct cfx_kix_entry ke;
			struct kixfile *g = k->files[i];
			if (g->count && cfx_kix_entry_decode(entry_ptr(g, g->count - 1), &ke))
				g->max_pos = ke.log_pos;
		}
	}
	return 0;
}

void keyidx__close(struct cfx_store *st)
{
	struct keyidx *k = &st->keys;

	for (uint32_t i = 0; i < k->n; i++)
		kix_close(st, k->files[i]);
	CFX_FREE(k->files);
	k->n = k->cap = 0;
}

static int kix_create(struct cfx_store *st, uint64_t first_ord)
{
	struct keyidx *k = &st->keys;
	struct cfx_kix_header h;
	uint8_t hdr[CFX_KIX_HEADER_BYTES];
	char path[PATH_MAX];
	struct kixfile *f;
	uint8_t *map;
	int fd, rc;

	h.version = CFX_KIX_VERSION;
	h.entry_cap = st->o.key_index_entries;
	h.slot_count = h.entry_cap / 2 > 1024 ? h.entry_cap / 2 : 1024;
	cfx_kix_header_encode(hdr, &h);
	kix_path(path, sizeof path, k->dir, first_ord);
	rc = store__create_file(st->fops, path, kix_bytes(h.slot_count, h.entry_cap), hdr,
			       sizeof hdr, &fd, &map);
	if (rc)
		return rc;
	f = cfx_calloc(1, sizeof *f);
	f->first_ord = first_ord;
	f->slot_count = h.slot_count;
	f->entry_cap = h.entry_cap;
	f->fd = fd;
	f->map = map;
	f->map_bytes = kix_bytes(h.slot_count, h.entry_cap);
	files_push(k, f);
	return 0;
}

int keyidx__add(struct cfx_store *st, uint64_t hash, uint64_t log_pos)
{
	struct keyidx *k = &st->keys;
	struct kixfile *f = k->n ? k->files[k->n - 1] : NULL;
	struct cfx_kix_entry ke;
	uint8_t *slot;
	int rc;

	if (!f || f->count >= f->entry_cap) {
		rc = kix_create(st, k->entries);
		if (rc)
			return rc;
		f = k->files[k->n - 1];
	}
	slot = slot_ptr(f, (uint32_t)(hash % f->slot_count));
	ke.hash = hash;
	ke.log_pos = log_pos;
	ke.prev = cfx_load_le32(slot);
	cfx_kix_entry_encode(entry_ptr(f, f->count), &ke);
	f->count++;
	cfx_store_le32(slot, f->count);
	f->max_pos = log_pos;
	f->dirty = 1;
	k->entries++;
	return 0;
}

uint32_t keyidx__lookup(struct cfx_store *st, uint64_t hash, uint64_t *pos, uint32_t max)
{
	struct keyidx *k = &st->keys;
	uint32_t found = 0;

	for (uint32_t i = k->n; i-- > 0 && found < max;) {
		struct kixfile *f = k->files[i];
		uint32_t cur = cfx_load_le32(slot_ptr(f, (uint32_t)(hash % f->slot_count)));
		uint32_t steps = 0;

		/* Chains only point backwards; the step bound guards against a
		 * damaged file creating a cycle. */
		while (cur && cur <= f->count && found < max && steps++ < f->count) {
			struct cfx_kix_entry ke;
			if (!cfx_kix_entry_decode(entry_ptr(f, cur - 1), &ke))
				break;
			if (ke.hash == hash && (found == 0 || pos[found - 1] != ke.log_pos))
				pos[found++] = ke.log_pos;
			if (ke.prev >= cur)
				break;
			cur = ke.prev;
		}
	}
	return found;
}

int keyidx__sync(struct cfx_store *st)
{
	struct keyidx *k = &st->keys;

	for (uint32_t i = 0; i < k->n; i++) {
		struct kixfile *f = k->files[i];
		if (!f->dirty)
			continue;
		int r = st->fops->fdatasync(f->fd);
		if (r)
			return cfx_err_from_errno(-r);
		f->dirty = 0;
	}
	return 0;
}

void keyidx__retain(struct cfx_store *st, uint64_t log_start)
{
	struct keyidx *k = &st->keys;

	while (k->n > 1 && k->files[0]->max_pos < log_start) {
		kix_delete(st, k->files[0]);
		memmove(k->files, k->files + 1, (k->n - 1) * sizeof *k->files);
		k->n--;
	}
}
