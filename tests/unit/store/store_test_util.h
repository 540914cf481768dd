/*
 * store_test_util.h - helpers shared by the store's unit tests: temporary
 * directories, small store options, deterministic messages, tree copies
 * (a copy of a live store's directory is exactly what a kill -9 leaves,
 * since the page cache survives the process).
 */
#ifndef CFX_TESTS_STORE_TEST_UTIL_H
#define CFX_TESTS_STORE_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "store/files.h"
#include "store/store.h"

static inline char *tu_tmpdir(void)
{
	char tmpl[] = "/tmp/cfx-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	if (!d)
		abort();
	return cfx_strdup(d);
}

static inline void tu_rmdir(char *dir)
{
	store__rmtree(dir);
	cfx_free(dir);
}

/* Small sizes so that roll-overs happen after a few messages. */
static inline void tu_small_opts(struct cfx_store_opts *o, const char *dir)
{
	cfx_store_opts_default(o);
	o->dir = dir;
	o->segment_bytes = 64 * 1024;
	o->batch_bytes_max = 16 * 1024;
	o->msg_bytes_max = 8 * 1024;
	o->index_entries_per_file = 32;
	o->key_index_entries = 64;
	o->checkpoint_interval_ms = 3600 * 1000; /* only explicit checkpoints */
	o->retention_ms = 0;
	o->retention_check_interval_ms = 3600 * 1000;
	o->populate_ahead_bytes = 0;
}

#define TU_TOPIC(s) ((struct cfx_view){ (const uint8_t *)(s), sizeof(s) - 1 })

/* Body of message `offset` of (topic, queue): deterministic, length varies. */
static inline size_t tu_body(char *buf, size_t cap, const char *topic, uint32_t queue,
			     uint64_t offset)
{
	int n = snprintf(buf, cap, "%s/%u/%" PRIu64 ":", topic, queue, offset);
	size_t len = (size_t)n + (offset * 37) % 200;
	if (len > cap)
		len = cap;
	for (size_t i = (size_t)n; i < len; i++)
		buf[i] = (char)('a' + (offset + i) % 26);
	return len;
}

/* Appends `count` deterministic messages as one batch; returns the first offset. */
static inline uint64_t tu_append(struct cfx_store *st, const char *topic, uint32_t queue,
				 uint64_t expect_first, uint32_t count, enum cfx_durability d)
{
	struct cfx_msg msgs[64];
	char bodies[64][300], ids[64][40], keys[64][40];
	struct cfx_append_result res;
	int rc;

	if (count > 64)
		abort();
	for (uint32_t i = 0; i < count; i++) {
		uint64_t off = expect_first + i;
		memset(&msgs[i], 0, sizeof msgs[i]);
		msgs[i].body.p = (uint8_t *)bodies[i];
		msgs[i].body.len = tu_body(bodies[i], sizeof bodies[i], topic, queue, off);
		snprintf(ids[i], sizeof ids[i], "id-%s-%u-%" PRIu64, topic, queue, off);
		msgs[i].msg_id = CFX_VIEW_STR(ids[i]);
		snprintf(keys[i], sizeof keys[i], "k%" PRIu64 " q%u", off, queue);
		msgs[i].key = CFX_VIEW_STR(keys[i]);
		msgs[i].tag = CFX_VIEW_STR(off % 2 ? "odd" : "even");
		msgs[i].born_ms = 1700000000000LL + (int64_t)off;
	}
	rc = cfx_store_append_wait(st, CFX_VIEW_STR(topic), queue, msgs, count, d, &res);
	if (rc) {
		fprintf(stderr, "tu_append: %s\n", cfx_strerror(rc));
		abort();
	}
	if (res.first_offset != expect_first) {
		fprintf(stderr, "tu_append: first offset %" PRIu64 ", expected %" PRIu64 "\n",
			res.first_offset, expect_first);
		abort();
	}
	return res.first_offset;
}

/* Checks that message view `m` is the deterministic message at its offset. */
static inline int tu_msg_ok(const struct cfx_msg_view *m, const char *topic, uint32_t queue)
{
	char body[300], id[40];
	size_t len = tu_body(body, sizeof body, topic, queue, m->offset);

	snprintf(id, sizeof id, "id-%s-%u-%" PRIu64, topic, queue, m->offset);
	return m->body.len == len && !memcmp(m->body.p, body, len) &&
	       cfx_view_eq_str(m->msg_id, id) &&
	       cfx_view_eq_str(m->tag, m->offset % 2 ? "odd" : "even") &&
	       m->born_ms == 1700000000000LL + (int64_t)m->offset;
}

/* Reads the whole queue from `from`; returns the number of good messages, -1 on a bad one. */
static inline int64_t tu_read_all(struct cfx_store *st, const char *topic, uint32_t queue,
				  uint64_t from)
{
	struct cfx_read_result res;
	uint64_t off = from;
	int64_t n = 0;

	cfx_read_result_init(&res);
	for (;;) {
		int rc = cfx_store_read(st, CFX_VIEW_STR(topic), queue, off, 7, 1 << 20, &res);
		if (rc) {
			n = -1;
			break;
		}
		if (res.count == 0)
			break;
		for (uint32_t i = 0; i < res.count; i++) {
			if (res.msgs[i].offset != off || !tu_msg_ok(&res.msgs[i], topic, queue)) {
				n = -1;
				goto out;
			}
			off++;
			n++;
		}
	}
out:
	cfx_read_result_free(&res);
	return n;
}

/* cp -r src dst (regular files and directories). */
static inline int tu_copy_tree(const char *src, const char *dst)
{
	char s[PATH_MAX], d[PATH_MAX];
	struct dirent *de;
	struct stat stbuf;
	DIR *dir;

	if (mkdir(dst, 0755) != 0)
		return -1;
	dir = opendir(src);
	if (!dir)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(s, sizeof s, "%s/%s", src, de->d_name) >= (int)sizeof s ||
		    snprintf(d, sizeof d, "%s/%s", dst, de->d_name) >= (int)sizeof d)
			return -1;
		if (stat(s, &stbuf) != 0)
			continue;
		if (S_ISDIR(stbuf.st_mode)) {
			if (tu_copy_tree(s, d))
				return -1;
			continue;
		}
		int in = open(s, O_RDONLY), out = open(d, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		char buf[65536];
		ssize_t r;
		while (in >= 0 && out >= 0 && (r = read(in, buf, sizeof buf)) > 0)
			if (write(out, buf, (size_t)r) != r)
				break;
		if (in >= 0)
			close(in);
		if (out >= 0)
			close(out);
	}
	closedir(dir);
	return 0;
}

/* Reads or writes `len` bytes at `off` of a file. */
static inline int tu_pread(const char *path, void *buf, size_t len, off_t off)
{
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? pread(fd, buf, len, off) : -1;
	if (fd >= 0)
		close(fd);
	return r == (ssize_t)len ? 0 : -1;
}

static inline int tu_pwrite(const char *path, const void *buf, size_t len, off_t off)
{
	int fd = open(path, O_WRONLY);
	ssize_t r = fd >= 0 ? pwrite(fd, buf, len, off) : -1;
	if (fd >= 0)
		close(fd);
	return r == (ssize_t)len ? 0 : -1;
}

#endif
