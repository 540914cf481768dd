/*
 * fuzz_recovery.c - libFuzzer target for crash recovery (store/recover.c)
 * and what it hands over: cfx_store_open on a data directory built from the
 * input, then reads of every queue, optional lookups and an append, a
 * close, and optionally a second open that must find a clean store.
 *
 * Input: a fixed preamble (FZ_REC_* in fuzz_common.h) whose first bytes
 * pick the scenario - where the log bytes go (after a valid segment header,
 * as the whole first segment, as a file of any size, or split over two
 * segments), whether a checkpoint exists and whether it is raw or built
 * from a few fields, whether index files exist, whether CRCs are resealed
 * (mutations then reach past the checksums) - followed by the slices the
 * scenario consumes. Each input gets a fresh directory, removed afterwards.
 *
 * The store runs on a file-operations table of our own: fsyncs are no-ops
 * (a fuzzing run must not wait for the disk) and every mapping is followed
 * by an inaccessible guard page, so a read past the end of a mapped segment
 * or index faults instead of silently reading a neighbouring mapping.
 *
 * Opening may fail with CFX_ECORRUPT or CFX_EVERSION; it must never crash,
 * hang or leak, and a store that did open must read, close and reopen.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "base/fileops.h"
#include "base/log.h"
#include "fuzz_common.h"
#include "store/files.h"
#include "store/format.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds that keep one input fast whatever it holds. */
#define READ_CALLS_MAX 4096u
#define READ_MSGS 16u
#define READ_BYTES 4096u
#define LOOKUPS_MAX 4u
#define LOOKUP_RESULTS_MAX 8u
#define QUEUE_OFFSET_SANE (1ull << 62) /* appends are checked below this */

/* ------------------------------------------------------------------------
 * A fast file-operations table with guard pages
 * ------------------------------------------------------------------------ */

static struct cfx_file_ops fast_ops;
static size_t page_bytes;

static int nosync(int fd)
{
	(void)fd;
	return 0;
}

static size_t guarded_span(size_t len)
{
	return CFX_ALIGN_UP(len, page_bytes) + page_bytes;
}

static void *guarded_mmap(int fd, size_t len, int writable, int *err)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	uint8_t *area, *p;

	area = mmap(NULL, guarded_span(len), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0);
	if (area == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	p = mmap(area, len, prot, MAP_SHARED | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		*err = -errno;
		munmap(area, guarded_span(len));
		return NULL;
	}
	return p;
}

static int guarded_munmap(void *p, size_t len)
{
	return munmap(p, guarded_span(len)) == 0 ? 0 : -errno;
}

/* ------------------------------------------------------------------------
 * The scratch directory
 * ------------------------------------------------------------------------ */

static char root_dir[256]; /* short, so every path below fits PATH_MAX */
static int verbose;	   /* CFX_FUZZ_VERBOSE=1: say what each input did */

static void remove_root(void)
{
	if (root_dir[0])
		store__rmtree(root_dir);
}

/* Picks a RAM-backed place if there is one: recovery creates many files. */
static void setup_once(void)
{
	const char *base = getenv("CFX_FUZZ_TMPDIR");
	struct stat sb;

	if (root_dir[0])
		return;
	if (!base && stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
	    access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	if (!base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(root_dir, sizeof root_dir, "%s/cfx-fuzz-rec-XXXXXX", base);
	FZ_CHECK(mkdtemp(root_dir) != NULL);
	atexit(remove_root);
	verbose = getenv("CFX_FUZZ_VERBOSE") != NULL;

	page_bytes = (size_t)sysconf(_SC_PAGESIZE);
	fast_ops = cfx_fileops_real;
	fast_ops.fdatasync = nosync;
	fast_ops.fsync = nosync;
	fast_ops.mmap = guarded_mmap;
	fast_ops.munmap = guarded_munmap;
}

static void write_file(const char *path, const void *p, size_t len, size_t file_bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	FZ_CHECK(fd >= 0);
	FZ_CHECK(len == 0 || write(fd, p, len) == (ssize_t)len);
	FZ_CHECK(ftruncate(fd, (off_t)file_bytes) == 0);
	close(fd);
}

static void make_dir(const char *path)
{
	FZ_CHECK(cfx_mkdir_p(&cfx_fileops_real, path) == 0);
}

/* ------------------------------------------------------------------------
 * Building the data directory from the input
 * ------------------------------------------------------------------------ */

/* A cursor over the slices that follow the preamble. */
struct slicer {
	const uint8_t *p;
	size_t len;
};

/* Takes up to `n` bytes (fewer at the end of the input). */
static struct cfx_view take(struct slicer *s, size_t n)
{
	struct cfx_view v = { s->p, CFX_MIN(n, s->len) };

	s->p += v.len;
	s->len -= v.len;
	return v;
}

/* Rewrites the CRCs of the chain of entries from `off` in one segment image. */
static void reseal_entries(uint8_t *seg, size_t seg_bytes, size_t off)
{
	while (off + 8 <= seg_bytes) {
		uint32_t size = cfx_load_le32(seg + off);
		uint8_t *p = seg + off;

		if (size == 0 || size % CFX_ENTRY_ALIGN || size < CFX_ENTRY_END_BYTES ||
		    size > seg_bytes - off)
			return;
		if (p[10] == CFX_ENTRY_END) {
			cfx_store_le32(p + 4, cfx_crc32c(0, p + 8, CFX_ENTRY_END_BYTES - 8));
			return; /* the end marker covers the rest of the segment */
		}
		if (size <= CFX_ENTRY_HEADER_BYTES)
			return;
		cfx_store_le32(p + 4, cfx_crc32c(0, p + 8, size - 8));
		off += size;
	}
}

static void seal_header64(uint8_t *p)
{
	cfx_store_le32(p + 60, cfx_crc32c(0, p, 60));
}

static void put_seg_header(uint8_t *seg, uint64_t base, uint64_t seg_bytes)
{
	struct cfx_seg_header h = { .version = CFX_SEG_VERSION,
				    .base_pos = base,
				    .segment_bytes = seg_bytes,
				    .created_ms = 1700000000000 };
	cfx_seg_header_encode(seg, &h);
}

static void write_segment(const char *dir, uint64_t base, const uint8_t *p, size_t len,
			  size_t file_bytes)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/commitlog/%020llu.seg", dir, (unsigned long long)base);
	write_file(path, p, len, file_bytes);
}

/*
 * Names the index slice after the first entry of segment 0 if it has a
 * usable topic and queue, so the index describes a queue the log holds.
 */
static void index_queue_dir(char *out, size_t cap, const char *dir, const uint8_t *seg0,
			    size_t seg0_bytes)
{
	const uint8_t *e = seg0 + CFX_SEG_HEADER_BYTES;
	char topic[CFX_TOPIC_MAX + 1] = "fuzz";
	uint32_t queue_id = 0;

	if (seg0_bytes >= CFX_SEG_HEADER_BYTES + CFX_ENTRY_HEADER_BYTES + CFX_TOPIC_MAX) {
		uint16_t tlen = cfx_load_le16(e + 56);
		struct cfx_view t = { e + CFX_ENTRY_HEADER_BYTES, tlen };
		if (cfx_topic_name_is_valid(t) && cfx_load_le32(e + 40) < 1024) {
			memcpy(topic, t.p, tlen);
			topic[tlen] = '\0';
			queue_id = cfx_load_le32(e + 40);
		}
	}
	snprintf(out, cap, "%s/queues/%s/%u", dir, topic, queue_id);
}

static void build_dir(const char *dir, const uint8_t *data, size_t size)
{
	uint8_t mode = data[0], mode2 = data[1];
	unsigned layout = mode & FZ_REC_LAYOUT_MASK;
	int fix = mode2 & FZ_REC2_FIX_CRC;
	struct slicer s = { data + FZ_REC_PREAMBLE_BYTES, size - FZ_REC_PREAMBLE_BYTES };
	struct cfx_view idx = { NULL, 0 }, kix = { NULL, 0 }, log;
	const size_t seg_bytes = FZ_REC_SEGMENT_BYTES, room = seg_bytes - CFX_SEG_HEADER_BYTES;
	uint32_t kix_slots = 1 + data[5] % 32, kix_cap = 1 + data[6] % 32;
	uint8_t *seg0, *seg1 = NULL;
	size_t seg0_bytes = seg_bytes, last_end;
	char path[PATH_MAX];

	make_dir(dir);
	snprintf(path, sizeof path, "%s/commitlog", dir);
	make_dir(path);

	if (mode & FZ_REC_INDEXES) {
		idx = take(&s, (size_t)(data[4] % (FZ_REC_IDX_MAX + 1)) * CFX_IDX_ENTRY_BYTES);
		if (mode2 & FZ_REC2_KIX)
			kix = take(&s, (size_t)kix_slots * 4 +
					       (size_t)kix_cap * CFX_KIX_ENTRY_BYTES);
	}
	log = take(&s, s.len);

	/* Segment 0 (and 1 when split). */
	switch (layout) {
	case FZ_REC_LAYOUT_AFTER_HDR:
		seg0 = calloc(1, seg_bytes);
		FZ_CHECK(seg0 != NULL);
		put_seg_header(seg0, 0, seg_bytes);
		memcpy(seg0 + CFX_SEG_HEADER_BYTES, log.p, CFX_MIN(log.len, room));
		break;
	case FZ_REC_LAYOUT_RAW_SEG:
		seg0 = calloc(1, seg_bytes);
		FZ_CHECK(seg0 != NULL);
		memcpy(seg0, log.p, CFX_MIN(log.len, seg_bytes));
		if (fix)
			seal_header64(seg0);
		break;
	case FZ_REC_LAYOUT_RAW_FILE:
		seg0_bytes = log.len;
		seg0 = malloc(seg0_bytes ? seg0_bytes : 1);
		FZ_CHECK(seg0 != NULL);
		memcpy(seg0, log.p, log.len);
		if (fix && seg0_bytes >= CFX_SEG_HEADER_BYTES)
			seal_header64(seg0);
		break;
	default: {
		size_t split = cfx_load_le16(data + 2) % (log.len + 1);
		seg0 = calloc(1, seg_bytes);
		seg1 = calloc(1, seg_bytes);
		FZ_CHECK(seg0 != NULL && seg1 != NULL);
		put_seg_header(seg0, 0, seg_bytes);
		put_seg_header(seg1, seg_bytes, seg_bytes);
		memcpy(seg0 + CFX_SEG_HEADER_BYTES, log.p, CFX_MIN(split, room));
		memcpy(seg1 + CFX_SEG_HEADER_BYTES, log.p + split, CFX_MIN(log.len - split, room));
		break;
	}
	}
	if (fix) {
		reseal_entries(seg0, seg0_bytes, CFX_SEG_HEADER_BYTES);
		if (seg1)
			reseal_entries(seg1, seg_bytes, CFX_SEG_HEADER_BYTES);
	}
	write_segment(dir, 0, seg0, seg0_bytes, seg0_bytes);
	last_end = seg0_bytes;
	if (seg1) {
		write_segment(dir, seg_bytes, seg1, seg_bytes, seg_bytes);
		last_end = 2 * seg_bytes;
	}
	if (mode & FZ_REC_EXTRA_SEG) {
		uint8_t hdr[CFX_SEG_HEADER_BYTES];
		put_seg_header(hdr, last_end, seg_bytes);
		write_segment(dir, last_end, hdr, sizeof hdr, seg_bytes);
	}

	/* The checkpoint. */
	if (mode & FZ_REC_CKPT) {
		const uint8_t *c = data + FZ_REC_CKPT_OFF;
		uint8_t buf[CFX_CKPT_BYTES];
		struct cfx_checkpoint ck;

		if (mode & FZ_REC_CKPT_RAW) {
			memcpy(buf, c, sizeof buf);
			if (fix)
				seal_header64(buf);
		} else {
			memset(&ck, 0, sizeof ck);
			ck.durable_pos = cfx_load_le64(c);
			ck.log_end_pos = ck.durable_pos + cfx_load_le32(c + 8);
			ck.clean = c[12] & 1;
			ck.written_ms = 1700000000000;
			ck.idx_entries = cfx_load_le32(c + 16);
			ck.key_entries = cfx_load_le32(c + 20);
			cfx_checkpoint_encode(buf, &ck);
		}
		snprintf(path, sizeof path, "%s/checkpoint", dir);
		write_file(path, buf, sizeof buf, sizeof buf);
	}

	/* Index files. */
	if (idx.len) {
		size_t n = idx.len / CFX_IDX_ENTRY_BYTES * CFX_IDX_ENTRY_BYTES;
		char qdir[PATH_MAX - 32];
		uint8_t *buf;

		if (n) {
			buf = malloc(n);
			FZ_CHECK(buf != NULL);
			memcpy(buf, idx.p, n);
			for (size_t off = 0; fix && off < n; off += CFX_IDX_ENTRY_BYTES) {
				uint8_t *ie = buf + off;
				if (cfx_load_le32(ie + 24) != 0)
					cfx_store_le32(ie + 36, cfx_crc32c(0, ie, 36));
			}
			index_queue_dir(qdir, sizeof qdir, dir, seg0, seg0_bytes);
			make_dir(qdir);
			snprintf(path, sizeof path, "%s/%020d.idx", qdir, 0);
			write_file(path, buf, n, n);
			free(buf);
		}
	}
	if (mode & FZ_REC_INDEXES && mode2 & FZ_REC2_KIX) {
		struct cfx_kix_header h = { .version = CFX_KIX_VERSION,
					    .slot_count = kix_slots,
					    .entry_cap = kix_cap };
		size_t body = (size_t)kix_slots * 4 + (size_t)kix_cap * CFX_KIX_ENTRY_BYTES;
		uint8_t *buf = calloc(1, CFX_KIX_HEADER_BYTES + body);
		uint8_t *ents = buf + CFX_KIX_HEADER_BYTES + (size_t)kix_slots * 4;

		FZ_CHECK(buf != NULL);
		cfx_kix_header_encode(buf, &h);
		memcpy(buf + CFX_KIX_HEADER_BYTES, kix.p, kix.len);
		for (uint32_t i = 0; fix && i < kix_cap; i++) {
			uint8_t *e = ents + (size_t)i * CFX_KIX_ENTRY_BYTES;
			if (cfx_load_le64(e) != 0)
				cfx_store_le32(e + 20, cfx_crc32c(0, e, 20));
		}
		snprintf(path, sizeof path, "%s/keys", dir);
		make_dir(path);
		snprintf(path, sizeof path, "%s/keys/%020d.kix", dir, 0);
		write_file(path, buf, CFX_KIX_HEADER_BYTES + body, CFX_KIX_HEADER_BYTES + body);
		free(buf);
	}
	free(seg0);
	free(seg1);
}

/* ------------------------------------------------------------------------
 * Exercising the recovered store
 * ------------------------------------------------------------------------ */

struct qrec {
	char topic[CFX_TOPIC_MAX + 1];
	size_t topic_len;
	uint32_t id;
	uint64_t start, end;
	int appended; /* append_and_read added a message */
};

struct qlist {
	struct qrec *v;
	size_t n, cap;
};

static void collect_queue(void *arg, const struct cfx_queue_info *qi)
{
	struct qlist *ql = arg;
	struct qrec *q;

	if (ql->n == ql->cap) {
		ql->cap = ql->cap ? ql->cap * 2 : 16;
		ql->v = realloc(ql->v, ql->cap * sizeof *ql->v);
		FZ_CHECK(ql->v != NULL);
	}
	q = &ql->v[ql->n++];
	FZ_CHECK(qi->topic.len >= 1 && qi->topic.len <= CFX_TOPIC_MAX);
	memcpy(q->topic, qi->topic.p, qi->topic.len);
	q->topic[qi->topic.len] = '\0';
	q->topic_len = qi->topic.len;
	q->id = qi->queue_id;
	q->start = qi->start_offset;
	q->end = qi->end_offset;
	q->appended = 0;
}

static int qrec_cmp(const void *a, const void *b)
{
	const struct qrec *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	if (c)
		return c;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void list_queues(struct cfx_store *st, struct qlist *ql)
{
	ql->n = 0;
	cfx_store_foreach_queue(st, collect_queue, ql);
	if (ql->n)
		qsort(ql->v, ql->n, sizeof *ql->v, qrec_cmp);
}

static struct cfx_view qtopic(const struct qrec *q)
{
	return (struct cfx_view){ (const uint8_t *)q->topic, q->topic_len };
}

/* The first space-separated token of a key. */
static struct cfx_view first_token(struct cfx_view key)
{
	size_t i = 0, j;

	while (i < key.len && key.p[i] == ' ')
		i++;
	for (j = i; j < key.len && key.p[j] != ' ';)
		j++;
	return (struct cfx_view){ key.p + i, j - i };
}

static int has_token(struct cfx_view keys, struct cfx_view tok)
{
	size_t i = 0;

	while (i < keys.len) {
		size_t j = i;
		while (j < keys.len && keys.p[j] != ' ')
			j++;
		if (j - i == tok.len && !memcmp(keys.p + i, tok.p, tok.len))
			return 1;
		i = j + 1;
	}
	return 0;
}

/* Looks a read message up by its id and by its first key: every hit matches. */
static void check_lookups(struct cfx_store *st, const struct qrec *q, const struct cfx_msg_view *m)
{
	struct cfx_read_result res;
	int rc;

	cfx_read_result_init(&res);
	if (m->msg_id.len) {
		rc = cfx_store_lookup_id(st, m->msg_id, LOOKUP_RESULTS_MAX, &res);
		FZ_CHECK(rc == 0 && res.count <= LOOKUP_RESULTS_MAX);
		for (uint32_t i = 0; i < res.count; i++)
			FZ_CHECK(cfx_view_eq(res.msgs[i].msg_id, m->msg_id));
	}
	if (!m->key_null) {
		struct cfx_view tok = first_token(m->key);
		rc = cfx_store_lookup_key(st, qtopic(q), tok, LOOKUP_RESULTS_MAX, &res);
		FZ_CHECK(rc == 0 && res.count <= LOOKUP_RESULTS_MAX);
		for (uint32_t i = 0; i < res.count; i++)
			FZ_CHECK(!res.msgs[i].key_null && has_token(res.msgs[i].key, tok));
	}
	cfx_read_result_free(&res);
}

/*
 * Reads a queue from its start to its end. Stored batches are trusted for
 * their message offsets (only the entry CRC guards them), so a damaged but
 * CRC-valid batch may return odd offsets: the loop only insists on progress.
 */
static void read_queue(struct cfx_store *st, const struct qrec *q, int lookups)
{
	struct cfx_read_result res;
	uint64_t offset = q->start;
	uint32_t looked = 0;

	cfx_read_result_init(&res);
	for (uint32_t calls = 0; calls < READ_CALLS_MAX && offset < q->end; calls++) {
		int rc = cfx_store_read(st, qtopic(q), q->id, offset, READ_MSGS, READ_BYTES, &res);

		if (rc) {
			if (verbose)
				fprintf(stderr, "fuzz_recovery: read %s/%u at %llu: %s\n", q->topic,
					q->id, (unsigned long long)offset, cfx_err_name(rc));
			/* Unreadable batches are reported (store.h), never returned. */
			FZ_CHECK(rc == CFX_ECORRUPT || rc == CFX_EOFFSET || rc == CFX_EUNSUPPORTED);
			break;
		}
		FZ_CHECK(res.count <= READ_MSGS);
		for (uint32_t i = 0; i < res.count; i++) {
			const struct cfx_msg_view *m = &res.msgs[i];
			fz_touch(m->key.p, m->key.len);
			fz_touch(m->body.p, m->body.len);
			fz_touch(m->headers.p, m->headers.len);
			if (lookups && looked < LOOKUPS_MAX) {
				check_lookups(st, q, m);
				looked++;
			}
		}
		if (res.count == 0 || res.next_offset <= offset)
			break;
		offset = res.next_offset;
	}
	cfx_read_result_free(&res);
}

/* A recovered store takes an append and serves it back. */
static void append_and_read(struct cfx_store *st, struct qlist *ql)
{
	static const char body[] = "appended after recovery";
	struct cfx_msg msg = { 0 };
	struct cfx_append_result ar;
	struct cfx_read_result res;
	struct qrec *q = NULL;
	int rc;

	for (size_t i = 0; i < ql->n && !q; i++)
		if (ql->v[i].end < QUEUE_OFFSET_SANE)
			q = &ql->v[i];
	if (!q) {
		/* No usable queue: start one (it joins the list for the reopen). */
		struct cfx_queue_info qi = { .topic = CFX_VIEW_STR("fzappend"), .queue_id = 0 };
		rc = cfx_store_queue_bounds(st, qi.topic, 0, &qi.start_offset, &qi.end_offset);
		if (rc != 0 || qi.end_offset >= QUEUE_OFFSET_SANE)
			return;
		collect_queue(ql, &qi);
		q = &ql->v[ql->n - 1];
	}
	msg.body = CFX_VIEW_STR(body);
	msg.key = CFX_VIEW_STR("fz-key");
	msg.msg_id = CFX_VIEW_STR("fz-id");
	msg.born_ms = 1700000000000;
	rc = cfx_store_append_wait(st, qtopic(q), q->id, &msg, 1, CFX_DURABILITY_ASYNC, &ar);
	FZ_CHECK(rc == 0);
	FZ_CHECK(ar.first_offset == q->end && ar.count == 1);
	FZ_CHECK(cfx_store_wait_dispatched(st, 10000) == 0);

	cfx_read_result_init(&res);
	rc = cfx_store_read(st, qtopic(q), q->id, ar.first_offset, 1, READ_BYTES, &res);
	if (verbose)
		fprintf(stderr,
			"fuzz_recovery: appended %s/%u offset %llu at %llu; read: %s, %u messages, "
			"queue [%llu, %llu)\n",
			q->topic, q->id, (unsigned long long)ar.first_offset,
			(unsigned long long)ar.log_pos, cfx_err_name(rc), res.count,
			(unsigned long long)res.start_offset, (unsigned long long)res.end_offset);
	FZ_CHECK(rc == 0 && res.count == 1);
	FZ_CHECK(res.msgs[0].offset == ar.first_offset);
	FZ_CHECK(cfx_view_eq(res.msgs[0].body, msg.body));
	cfx_read_result_free(&res);
	q->end = ar.first_offset + 1;
	q->appended = 1;
	qsort(ql->v, ql->n, sizeof *ql->v, qrec_cmp);
}

static void store_opts(struct cfx_store_opts *o, const char *dir, int verify_read)
{
	cfx_store_opts_default(o);
	o->dir = dir;
	o->segment_bytes = FZ_REC_SEGMENT_BYTES;
	o->batch_bytes_max = FZ_REC_BATCH_BYTES_MAX;
	o->msg_bytes_max = FZ_REC_MSG_BYTES_MAX;
	o->index_entries_per_file = FZ_REC_INDEX_ENTRIES;
	o->key_index_entries = FZ_REC_KEY_INDEX_ENTRIES;
	o->populate_ahead_bytes = 0;
	o->checkpoint_interval_ms = 3600 * 1000;
	o->retention_ms = 0;
	o->retention_check_interval_ms = 3600 * 1000;
	o->verify_crc_on_read = verify_read;
	o->fops = &fast_ops;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfx_store_recovery rec;
	struct cfx_store_opts o;
	struct cfx_store *st = NULL;
	struct qlist before = { 0 }, after = { 0 };
	char dir[sizeof root_dir + 8];
	uint8_t mode, mode2;
	int rc;

	if (size < FZ_REC_PREAMBLE_BYTES)
		return 0;
	setup_once();
	cfx_log_level_cur = CFX_LOG_ERROR - 1; /* corrupt inputs are the point: no noise */
	mode = data[0];
	mode2 = data[1];
	snprintf(dir, sizeof dir, "%s/data", root_dir);
	store__rmtree(dir);
	build_dir(dir, data, size);

	store_opts(&o, dir, (mode & FZ_REC_VERIFY_READ) != 0);
	if (verbose)
		cfx_log_level_cur = CFX_LOG_WARN;
	memset(&rec, 0, sizeof rec);
	rc = cfx_store_open(&o, &st, &rec);
	if (verbose)
		fprintf(stderr,
			"fuzz_recovery: open %s: clean %d, no checkpoint %d, log [%llu, %llu), "
			"%u segments, %u queues, %llu entries scanned, %llu bytes truncated (%s)\n",
			cfx_err_name(rc), rec.clean, rec.checkpoint_missing,
			(unsigned long long)rec.log_start, (unsigned long long)rec.log_end,
			rec.segments, rec.queues, (unsigned long long)rec.scanned_entries,
			(unsigned long long)rec.truncated_bytes,
			rec.truncate_reason ? rec.truncate_reason : "-");
	if (rc) {
		FZ_CHECK(rc == CFX_ECORRUPT || rc == CFX_EVERSION);
		goto out;
	}
	FZ_CHECK(rec.segments >= 1);
	FZ_CHECK(rec.log_end >= rec.log_start + CFX_SEG_HEADER_BYTES);

	list_queues(st, &before);
	FZ_CHECK(before.n == rec.queues);
	for (size_t i = 0; verbose && i < before.n; i++)
		fprintf(stderr, "fuzz_recovery: queue %s/%u [%llu, %llu)\n", before.v[i].topic,
			before.v[i].id, (unsigned long long)before.v[i].start,
			(unsigned long long)before.v[i].end);
	for (size_t i = 0; i < before.n; i++)
		read_queue(st, &before.v[i], mode2 & FZ_REC2_LOOKUP);
	if (mode2 & FZ_REC2_APPEND)
		append_and_read(st, &before);
	FZ_CHECK(cfx_store_close(st) == 0);
	st = NULL;

	if (mode & FZ_REC_REOPEN) {
		/* A clean close leaves a store that opens without a scan, unchanged. */
		rc = cfx_store_open(&o, &st, &rec);
		FZ_CHECK(rc == 0);
		list_queues(st, &after);
		FZ_CHECK(rec.clean);
		FZ_CHECK(after.n == before.n);
		for (size_t i = 0; i < after.n; i++) {
			FZ_CHECK(qrec_cmp(&after.v[i], &before.v[i]) == 0);
			FZ_CHECK(after.v[i].end == before.v[i].end);
			if (!before.v[i].appended)
				FZ_CHECK(after.v[i].start == before.v[i].start);
		}
		FZ_CHECK(cfx_store_close(st) == 0);
		st = NULL;
	}
out:
	free(before.v);
	free(after.v);
	store__rmtree(dir);
	return 0;
}
