/*
 * broker_crash.c - the kill -9 crash test of the broker: the driver, and
 * what every role shares (message bodies, event log records, options).
 *
 *   broker_crash --iterations N --dir D [--seed S] [--epoch E]
 *
 * Each iteration forks a worker (broker_worker.c) that opens the broker in
 * D/data and runs producers and consumers of POP, delayed and
 * transactional messages, recording every call in D/events.log; after a
 * random 200 ms to 2 s the driver kills it with SIGKILL. Then it opens the
 * broker in this process, which recovers it, and verifies it against the
 * whole event log (broker_verify.c): the verifier resolves the open
 * transactions, drains every group and closes the broker cleanly. The
 * next iteration goes on with the same directory, so recovery runs on
 * state that was recovered before; every E iterations (default 20) the
 * directory starts over empty. Some iterations are variants, chosen by the
 * iteration number:
 *
 *   n % 10 == 0  clean-restart   a worker is stopped cleanly (SIGTERM,
 *                                cfx_broker_close), then another is killed
 *   n % 10 == 2  kill-at-timer-done  the worker kills itself right before
 *                                the journal write of a fired timer's
 *                                "done" mark (the window exactly-once
 *                                delivery across crashes is about;
 *                                broker_worker.c)
 *   n % 10 == 5  kill-at-txn-done  the same at a transaction's done mark
 *   n % 10 == 8  kill-in-callback the worker kills itself in the callback
 *                                of a delayed or transactional send or of
 *                                a commit, before recording the outcome
 *   n % 10 == 3  double          two workers are killed one after the other
 *                                before the verification (POP state, timers
 *                                and open transactions of a crashed run are
 *                                recovered and crash again)
 *   n % 10 == 7  kill-at-start   after the kill, one or two workers are
 *                                killed while they recover the broker or
 *                                just after (recovery of a recovery)
 *   otherwise    plain
 *
 * The workers fork from this process without exec: the driver has no
 * thread of its own when it forks (the verifier's broker is closed by
 * then, which joins its threads), which it checks before each fork.
 *
 * Every random choice derives from one seed, printed first. Timing still
 * differs from run to run, so a replay with --seed repeats the schedule,
 * not the interleaving. The first violation ends the run with status 1, a
 * message naming the iteration, the seed and the failing id, and the
 * records of that id in the event log. What is checked: broker_verify.c;
 * how to run it: README.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "broker_crash.h"

#define STATUS_TIMEOUT_MS 120000 /* a worker that does not report in this long is hung */
#define RUN_MS_MIN	  200
#define RUN_MS_MAX	  2000
#define START_KILLS_MAX	  2
#define TIMER_MARKS_MAX	  800 /* kill-at-timer-done: the n-th mark, n up to this */
#define TXN_MARKS_MAX	  150 /* kill-at-txn-done: commits only */
#define CALLBACK_KILL_MAX 400 /* kill-in-callback: the n-th callback, n up to this */

/* ------------------------------------------------------------------------
 * Shared by all roles
 * ------------------------------------------------------------------------ */

static const char *const stream_names[] = {"?", "pop", "delay", "txn"};
static const char *const stream_topics[] = {"?", BC_POP_TOPIC, BC_DELAY_TOPIC, BC_TXN_TOPIC};
static const char *const stream_groups[] = {"?", BC_POP_GROUP, BC_DELAY_GROUP, BC_TXN_GROUP};

const char *bcrash_stream_name(int stream)
{
	return stream >= 1 && stream <= (int)BC_STREAMS ? stream_names[stream] : "?";
}

const char *bcrash_stream_topic(int stream)
{
	CFX_ASSERT(stream >= 1 && stream <= (int)BC_STREAMS);
	return stream_topics[stream];
}

const char *bcrash_stream_group(int stream)
{
	CFX_ASSERT(stream >= 1 && stream <= (int)BC_STREAMS);
	return stream_groups[stream];
}

void bcrash_broker_opts(struct cfx_broker_opts *o, const char *data_dir)
{
	cfx_broker_opts_default(o);
	o->store.dir = data_dir;
	o->store.segment_bytes = BC_SEGMENT_BYTES;
	o->store.populate_ahead_bytes = 1u << 20;
	/* Every message must stay: no retention. */
	o->store.retention_ms = 0;
	o->store.retention_bytes = 0;
	/* Topics and groups are created by the test: a lost one is an error. */
	o->auto_create = 0;
	o->txn_check_first_ms = 24 * 3600 * 1000LL;
	o->txn_check_interval_ms = 24 * 3600 * 1000LL;
}

void bcrash_body_encode(uint8_t out[BC_BODY_BYTES], const struct bc_body *b)
{
	cfx_store_le32(out, BC_BODY_MAGIC);
	cfx_store_le32(out + 4, (uint32_t)b->stream);
	cfx_store_le64(out + 8, b->id);
	cfx_store_le64(out + 16, (uint64_t)b->due_ms);
}

int bcrash_body_decode(const struct cfx_msg_view *v, struct bc_body *b)
{
	const uint8_t *p = v->body.p;

	if (v->body_null || v->body.len != BC_BODY_BYTES || cfx_load_le32(p) != BC_BODY_MAGIC)
		return -1;
	b->stream = (int)cfx_load_le32(p + 4);
	b->id = cfx_load_le64(p + 8);
	b->due_ms = (int64_t)cfx_load_le64(p + 16);
	return b->stream >= 1 && b->stream <= (int)BC_STREAMS ? 0 : -1;
}

void bcrash_msg_id(char *out, int stream, uint64_t id)
{
	snprintf(out, BC_MSG_ID_MAX, "bc-%s-%016" PRIx64, bcrash_stream_name(stream), id);
}

static const char *const rec_type_names[] = {
	"?",	   "SENDING", "SENT",	    "RECV",	 "ACKING",	"ACKED",
	"ACKFAIL", "NACKED",  "COMMITTING", "COMMITTED", "ROLLINGBACK", "ROLLEDBACK",
};

const char *bcrash_rec_type_name(int type)
{
	return type >= 1 && type <= BC_REC_TYPE_MAX ? rec_type_names[type] : "?";
}

void bcrash_rec_encode(uint8_t out[BC_REC_BYTES], const struct bc_rec *r)
{
	memset(out, 0, BC_REC_BYTES);
	out[0] = r->type;
	out[1] = r->stream;
	cfx_store_le16(out + 2, r->queue);
	cfx_store_le32(out + 4, (uint32_t)r->attempt);
	cfx_store_le64(out + 8, r->id);
	cfx_store_le64(out + 16, (uint64_t)r->t_ms);
	cfx_store_le64(out + 24, r->offset);
	cfx_store_le32(out + 32, r->run);
	if (r->type == BC_RECV)
		cfx_store_le64(out + 36, (uint64_t)r->aux);
	else
		memcpy(out + 36, r->txn, BC_TXN_ID_LEN);
	cfx_store_le32(out + 60, cfx_crc32c(0, out, 60));
}

const char *bcrash_rec_decode(const uint8_t in[BC_REC_BYTES], struct bc_rec *r)
{
	memset(r, 0, sizeof *r);
	if (cfx_load_le32(in + 60) != cfx_crc32c(0, in, 60))
		return "bad checksum";
	r->type = in[0];
	r->stream = in[1];
	r->queue = cfx_load_le16(in + 2);
	r->attempt = (int32_t)cfx_load_le32(in + 4);
	r->id = cfx_load_le64(in + 8);
	r->t_ms = (int64_t)cfx_load_le64(in + 16);
	r->offset = cfx_load_le64(in + 24);
	r->run = cfx_load_le32(in + 32);
	if (r->type == BC_RECV)
		r->aux = (int64_t)cfx_load_le64(in + 36);
	else
		memcpy(r->txn, in + 36, BC_TXN_ID_LEN);
	if (r->type < 1 || r->type > BC_REC_TYPE_MAX)
		return "unknown record type";
	if (r->stream < 1 || r->stream > BC_STREAMS)
		return "unknown stream";
	return NULL;
}

void bcrash_rec_format(const struct bc_rec *r, char *out, size_t cap)
{
	int n = snprintf(out, cap, "run %" PRIu32 " %-11s %s %016" PRIx64, r->run,
			 bcrash_rec_type_name(r->type), bcrash_stream_name(r->stream), r->id);

	if (n < 0 || (size_t)n >= cap)
		return;
	switch (r->type) {
	case BC_RECV:
		snprintf(out + n, cap - (size_t)n,
			 " queue %u offset %" PRIu64 " attempt %d at %" PRId64 " (stored %" PRId64
			 ")",
			 r->queue, r->offset, r->attempt, r->t_ms, r->aux);
		break;
	case BC_SENDING:
	case BC_SENT:
		if (r->stream == BC_DELAY)
			n += snprintf(out + n, cap - (size_t)n, " due %" PRId64, r->t_ms);
		if (r->type == BC_SENT && (size_t)n < cap)
			n += snprintf(out + n, cap - (size_t)n, " queue %u offset %" PRIu64,
				      r->queue, r->offset);
		if (r->txn[0] && (size_t)n < cap)
			snprintf(out + n, cap - (size_t)n, " txn %.*s", (int)BC_TXN_ID_LEN, r->txn);
		break;
	case BC_ACKFAIL:
		snprintf(out + n, cap - (size_t)n, " (%s)", cfx_err_name(-r->attempt));
		break;
	case BC_COMMITTING:
	case BC_COMMITTED:
	case BC_ROLLINGBACK:
	case BC_ROLLEDBACK:
		snprintf(out + n, cap - (size_t)n, " txn %.*s at %" PRId64, (int)BC_TXN_ID_LEN,
			 r->txn, r->t_ms);
		break;
	default:
		snprintf(out + n, cap - (size_t)n, " at %" PRId64, r->t_ms);
		break;
	}
}

void bcrash_sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------------
 * The driver
 * ------------------------------------------------------------------------ */

static const char usage[] =
	"usage: broker_crash [--iterations N] [--dir DIR] [--seed S] [--epoch E]\n"
	"                    [--log-level quiet|error|warn|info]\n"
	"  --iterations N   crashes to run (default 8)\n"
	"  --dir DIR        test directory; its data/ and events.log are removed first\n"
	"                   (default broker-crash-data)\n"
	"  --seed S         seed of every random choice (default: from the clock);\n"
	"                   printed on start, pass it again to replay a run's schedule\n"
	"  --epoch E        start over with an empty directory every E iterations\n"
	"                   (default 20)\n"
	"  --log-level L    broker log level in every process (default error)\n";

enum variant {
	V_PLAIN,
	V_CLEAN_RESTART,
	V_DOUBLE,
	V_KILL_AT_START,
	V_KILL_AT_TIMER_DONE,
	V_KILL_AT_TXN_DONE,
	V_KILL_IN_CALLBACK,
};

static const char *const variant_names[] = {
	"plain",	   "clean-restart",	 "double",
	"kill-at-start",   "kill-at-timer-done", "kill-at-txn-done",
	"kill-in-callback"};

struct options {
	uint64_t iterations;
	const char *dir;
	uint64_t seed;
	uint64_t epoch;
	const char *log_level;
};

struct driver {
	struct options opt;
	char exe[PATH_MAX];
	char data_dir[PATH_MAX];
	char log_path[PATH_MAX];
	uint64_t iter; /* current iteration, 1-based */
	enum variant variant;
	int verifying;
	uint32_t runs;	       /* processes that wrote records: workers and verifiers */
	pid_t child;	       /* live worker, or 0 */
	int child_fd;	       /* its status pipe */
	int64_t open_ms;       /* how long the last worker took to open the broker */
	uint32_t kill_at_done; /* for the next worker spawned */
	int kill_at_done_txn;
	uint32_t kill_in_callback;
	int64_t gone_ms; /* wall time the last worker died */

	/* totals for the summary */
	uint64_t kills, clean_closes, start_kills, start_kills_early, epochs;
	uint64_t self_kills, self_kills_early, self_kills_missed;
	struct bcrash_verify_stats sum; /* history totals of finished epochs */
	struct bcrash_verify_stats last;
	uint64_t txn_open_at_restart, timers_at_restart, drained;
};

static struct driver D;

void bcrash_fail(const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (D.child > 0) {
		kill(D.child, SIGKILL);
		waitpid(D.child, NULL, 0);
	}
	fflush(stdout);
	fprintf(stderr,
		"\nFAIL at iteration %" PRIu64 " (%s, %s run %" PRIu32 ", seed %" PRIu64 "):\n"
		"  %s\n"
		"replay: %s --seed %" PRIu64 " --iterations %" PRIu64 " --dir %s --epoch %" PRIu64
		"\n"
		"The directory is left as it was; the event log is %s.\n",
		D.iter, variant_names[D.variant], D.verifying ? "verifier" : "worker", D.runs,
		D.opt.seed, msg, D.exe, D.opt.seed, D.iter, D.opt.dir, D.opt.epoch, D.log_path);
	exit(1);
}

/* Forking a process with threads would copy locks held by them. */
static void check_single_threaded(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return; /* no procfs: trust the design */
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	if (n != 1)
		bcrash_fail("the driver has %d threads before a fork (a broker left open?)", n);
}

static void spawn_worker(uint64_t seed)
{
	struct bcrash_worker_args wa;
	int fds[2];
	pid_t pid, parent = getpid();

	if (pipe2(fds, O_CLOEXEC) != 0)
		bcrash_fail("pipe2: %s", strerror(errno));
	check_single_threaded();
	D.runs++;
	wa = (struct bcrash_worker_args){.dir = D.opt.dir,
					 .seed = seed,
					 .run = D.runs,
					 .status_fd = fds[1],
					 .log_level = D.opt.log_level,
					 .kill_at_done = D.kill_at_done,
					 .kill_at_done_txn = D.kill_at_done_txn,
					 .kill_in_callback = D.kill_in_callback};
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		bcrash_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		/* A worker never outlives the driver (killed by a timeout, ^C...). */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(127);
		close(fds[0]);
		bcrash_worker_main(&wa);
	}
	close(fds[1]);
	D.child = pid;
	D.child_fd = fds[0];
}

/* Waits for `want` on the status pipe: 1 once seen, 0 if the worker closed it first. */
static int await_status(char want)
{
	int64_t deadline = cfx_clock_mono_ms() + STATUS_TIMEOUT_MS;

	for (;;) {
		struct pollfd pfd = {.fd = D.child_fd, .events = POLLIN};
		int64_t left = deadline - cfx_clock_mono_ms();
		char c;
		ssize_t n;

		if (left <= 0)
			bcrash_fail("worker run %" PRIu32 " did not report '%c' within %d s",
				    D.runs, want, STATUS_TIMEOUT_MS / 1000);
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			bcrash_fail("poll: %s", strerror(errno));
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		n = read(D.child_fd, &c, 1);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			bcrash_fail("reading the status pipe: %s", strerror(errno));
		}
		if (c == want)
			return 1;
	}
}

/* Reaps the worker. Returns 1 if SIGKILL ended it, 0 if it exited with status 0. */
static int reap_worker(void)
{
	int ws;

	while (waitpid(D.child, &ws, 0) < 0)
		if (errno != EINTR)
			bcrash_fail("waitpid: %s", strerror(errno));
	D.child = 0;
	close(D.child_fd);
	D.child_fd = -1;
	D.gone_ms = cfx_clock_wall_ms();
	if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL)
		return 1;
	if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
		return 0;
	if (WIFEXITED(ws) && WEXITSTATUS(ws) == BC_WORKER_EXIT_FAIL)
		bcrash_fail("worker run %" PRIu32 " found an error (its message is above)", D.runs);
	if (WIFEXITED(ws))
		bcrash_fail("worker run %" PRIu32 " exited with status %d", D.runs,
			    WEXITSTATUS(ws));
	bcrash_fail("worker run %" PRIu32 " was killed by signal %d (%s)", D.runs, WTERMSIG(ws),
		    strsignal(WTERMSIG(ws)));
}

static void kill9(void)
{
	if (kill(D.child, SIGKILL) != 0 && errno != ESRCH)
		bcrash_fail("kill: %s", strerror(errno));
}

/* Starts a worker and waits until its workload runs. */
static void start_worker(struct bc_rng *r)
{
	int64_t t0;

	spawn_worker(bcrash_rng_next(r));
	if (!await_status(BC_ST_OPENING)) {
		reap_worker();
		bcrash_fail("worker run %" PRIu32 " exited before opening the broker", D.runs);
	}
	t0 = cfx_clock_mono_ms();
	if (!await_status(BC_ST_READY)) {
		reap_worker();
		bcrash_fail("worker run %" PRIu32 " exited before it was ready", D.runs);
	}
	D.open_ms = cfx_clock_mono_ms() - t0;
}

/* The basic step: run a worker for 200 ms to 2 s and kill -9 it. */
static void crash_worker(struct bc_rng *r)
{
	start_worker(r);
	bcrash_sleep_ms((int64_t)bcrash_rng_range(r, RUN_MS_MIN, RUN_MS_MAX));
	kill9();
	if (!reap_worker())
		bcrash_fail("worker run %" PRIu32 " exited by itself before it was killed", D.runs);
	D.kills++;
}

/*
 * Waits up to `ms` for the worker to die by itself (its status pipe
 * closes). Returns 1 if it did; *ready says whether it had reported READY.
 * With `until_ready`, returns 0 as soon as it reports READY.
 */
static int await_death(int64_t ms, int *ready, int until_ready)
{
	int64_t deadline = cfx_clock_mono_ms() + ms;

	for (;;) {
		struct pollfd pfd = {.fd = D.child_fd, .events = POLLIN};
		int64_t left = deadline - cfx_clock_mono_ms();
		char c;
		ssize_t n;

		if (left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			bcrash_fail("poll: %s", strerror(errno));
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		n = read(D.child_fd, &c, 1);
		if (n == 0)
			return 1;
		if (n < 0 && errno != EINTR)
			bcrash_fail("reading the status pipe: %s", strerror(errno));
		if (n == 1 && c == BC_ST_READY) {
			*ready = 1;
			if (until_ready)
				return 0;
		}
	}
}

static void run_variant(struct bc_rng *r)
{
	switch (D.variant) {
	case V_PLAIN:
		crash_worker(r);
		break;

	case V_DOUBLE:
		crash_worker(r);
		crash_worker(r);
		break;

	case V_CLEAN_RESTART:
		start_worker(r);
		bcrash_sleep_ms((int64_t)bcrash_rng_range(r, RUN_MS_MIN, RUN_MS_MAX / 2));
		if (kill(D.child, SIGTERM) != 0)
			bcrash_fail("kill(SIGTERM): %s", strerror(errno));
		if (!await_status(BC_ST_CLOSED)) {
			reap_worker();
			bcrash_fail("worker run %" PRIu32 " exited without closing the broker",
				    D.runs);
		}
		if (reap_worker())
			bcrash_fail("worker run %" PRIu32 " was killed after a clean close",
				    D.runs);
		D.clean_closes++;
		crash_worker(r);
		break;

	case V_KILL_AT_TIMER_DONE:
	case V_KILL_AT_TXN_DONE:
	case V_KILL_IN_CALLBACK: {
		/* The worker kills itself at a "done" mark of a timer or a
		 * transaction, or in a callback (broker_worker.c); if it has not
		 * after the longest run, it is killed as usual. */
		int ready = 0;

		if (D.variant == V_KILL_AT_TIMER_DONE)
			D.kill_at_done = (uint32_t)bcrash_rng_range(r, 1, TIMER_MARKS_MAX);
		else if (D.variant == V_KILL_AT_TXN_DONE)
			D.kill_at_done = (uint32_t)bcrash_rng_range(r, 1, TXN_MARKS_MAX);
		else
			D.kill_in_callback = (uint32_t)bcrash_rng_range(r, 1, CALLBACK_KILL_MAX);
		D.kill_at_done_txn = D.variant == V_KILL_AT_TXN_DONE;
		spawn_worker(bcrash_rng_next(r));
		D.kill_at_done = 0;
		D.kill_at_done_txn = 0;
		D.kill_in_callback = 0;
		if (await_death(STATUS_TIMEOUT_MS, &ready, 1) ||
		    await_death(RUN_MS_MAX + 1000, &ready, 0)) {
			if (!reap_worker())
				bcrash_fail("worker run %" PRIu32 " exited by itself (status 0)",
					    D.runs);
			D.self_kills++;
			D.self_kills_early += !ready;
			break;
		}
		kill9();
		if (!reap_worker())
			bcrash_fail("worker run %" PRIu32 " exited by itself before it was killed",
				    D.runs);
		D.kills++;
		D.self_kills_missed++;
		break;
	}

	case V_KILL_AT_START: {
		unsigned k = (unsigned)bcrash_rng_range(r, 1, START_KILLS_MAX);
		crash_worker(r);
		for (unsigned i = 0; i < k; i++) {
			int64_t open_ms = D.open_ms ? D.open_ms : 20;
			int ready = 0;
			char c;

			spawn_worker(bcrash_rng_next(r));
			if (!await_status(BC_ST_OPENING)) {
				reap_worker();
				bcrash_fail("worker run %" PRIu32
					    " exited before opening the broker",
					    D.runs);
			}
			bcrash_sleep_ms(
				(int64_t)bcrash_rng_range(r, 0, (uint64_t)open_ms * 2 + 20));
			kill9();
			/* Did it get past cfx_broker_open? (the pipe holds what it sent) */
			while (read(D.child_fd, &c, 1) == 1)
				ready |= c == BC_ST_READY;
			if (!reap_worker())
				bcrash_fail("worker run %" PRIu32 " exited by itself before it was "
					    "killed",
					    D.runs);
			D.start_kills++;
			D.start_kills_early += !ready;
		}
		break;
	}
	}
}

/* ------------------------------------------------------------------------
 * The test directory
 * ------------------------------------------------------------------------ */

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	CFX_UNUSED(sb);
	CFX_UNUSED(ftw);
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes the broker's data and the event log (only those: --dir may hold other files). */
static void wipe(void)
{
	if (nftw(D.data_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		bcrash_fail("cannot remove %s: %s", D.data_dir, strerror(errno));
	if (unlink(D.log_path) != 0 && errno != ENOENT)
		bcrash_fail("cannot remove %s: %s", D.log_path, strerror(errno));
}

/*
 * A fresh broker: the three topics, their groups (which never dead-letter
 * here) subscribed before the first send, since a group first seen starts
 * at the end of a queue.
 */
static void setup(void)
{
	static const int types[] = {0, CFX_MSG_NORMAL, CFX_MSG_DELAY, CFX_MSG_TRANSACTION};
	static const uint32_t queues[] = {0, BC_POP_QUEUES, BC_DELAY_QUEUES, BC_TXN_QUEUES};
	struct cfx_broker_opts o;
	struct cfx_broker *br;
	int rc;

	bcrash_broker_opts(&o, D.data_dir);
	rc = cfx_broker_open(&o, &br, NULL);
	if (rc)
		bcrash_fail("cfx_broker_open(%s) of an empty directory: %s", D.data_dir,
			    cfx_strerror(rc));
	for (int s = 1; s <= (int)BC_STREAMS; s++) {
		struct cfx_group_info g = {0};

		rc = cfx_broker_topic_create(br, bcrash_stream_topic(s), types[s], queues[s]);
		if (rc)
			bcrash_fail("cfx_broker_topic_create(%s): %s", bcrash_stream_topic(s),
				    cfx_strerror(rc));
		snprintf(g.name, sizeof g.name, "%s", bcrash_stream_group(s));
		cfx_retry_policy_default(&g.retry);
		g.retry.max_attempts = BC_MAX_ATTEMPTS;
		rc = cfx_broker_group_create(br, &g);
		if (rc)
			bcrash_fail("cfx_broker_group_create(%s): %s", g.name, cfx_strerror(rc));
		rc = cfx_broker_subscribe(br, CFX_VIEW_STR(bcrash_stream_group(s)),
					  CFX_VIEW_STR(bcrash_stream_topic(s)));
		if (rc)
			bcrash_fail("cfx_broker_subscribe(%s): %s", bcrash_stream_group(s),
				    cfx_strerror(rc));
	}
	rc = cfx_broker_close(br);
	if (rc)
		bcrash_fail("cfx_broker_close after the set-up: %s", cfx_strerror(rc));
}

static void sum_stats(struct bcrash_verify_stats *to, const struct bcrash_verify_stats *s)
{
	to->records += s->records;
	to->pop_sent += s->pop_sent;
	to->pop_acked += s->pop_acked;
	to->redeliveries += s->redeliveries;
	to->delay_sent += s->delay_sent;
	to->timers_fired += s->timers_fired;
	to->txn_sent += s->txn_sent;
	to->txn_committed += s->txn_committed;
	to->txn_rolled_back += s->txn_rolled_back;
	to->txn_left_open += s->txn_left_open;
	to->txn_orphans += s->txn_orphans;
	to->rerecovered += s->rerecovered;
}

static void verify(uint64_t seed)
{
	struct bcrash_verify_args va;
	struct bcrash_verify_stats *vs = &D.last;

	D.runs++;
	va = (struct bcrash_verify_args){
		.dir = D.opt.dir, .run = D.runs, .workers_gone_ms = D.gone_ms, .seed = seed};
	memset(vs, 0, sizeof *vs);
	D.verifying = 1;
	bcrash_verify(&va, vs);
	D.verifying = 0;
	D.txn_open_at_restart += vs->txn_open;
	D.timers_at_restart += vs->timers_pending;
	D.drained += vs->drained;

	printf("iter %" PRIu64 "/%" PRIu64 " %-13s restart: open %" PRIu64 " ms, %" PRIu64
	       " txns open (%" PRIu64 " checked back), %" PRIu64 " timers pending; drained %" PRIu64
	       " msgs in %.1f s%s | history: pop sent %" PRIu64 " acked %" PRIu64
	       " redelivered %" PRIu64 "; delay sent %" PRIu64 " fired %" PRIu64
	       "; txn sent %" PRIu64 " committed %" PRIu64 " rolled back %" PRIu64
	       " left open %" PRIu64 "\n",
	       D.iter, D.opt.iterations, variant_names[D.variant], vs->open_ms, vs->txn_open,
	       vs->checked_back, vs->timers_pending, vs->drained, (double)vs->drain_ms / 1000.0,
	       vs->torn_bytes ? " (torn log tail cut)" : "", vs->pop_sent, vs->pop_acked,
	       vs->redeliveries, vs->delay_sent, vs->timers_fired, vs->txn_sent, vs->txn_committed,
	       vs->txn_rolled_back, vs->txn_left_open);
	fflush(stdout);
}

/* ------------------------------------------------------------------------
 * Options and main
 * ------------------------------------------------------------------------ */

static uint64_t parse_u64(const char *name, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (!*s || *end || errno) {
		fprintf(stderr, "broker_crash: bad value for %s: %s\n%s", name, s, usage);
		exit(2);
	}
	return v;
}

static void set_log_level(const char *name)
{
	int level;

	if (strcmp(name, "quiet") == 0) {
		cfx_log_level_cur = -1; /* below ERROR: nothing is written */
		return;
	}
	level = cfx_log_level_parse(name);
	if (level < 0) {
		fprintf(stderr, "broker_crash: unknown log level %s\n%s", name, usage);
		exit(2);
	}
	cfx_log_set_level(level);
}

int main(int argc, char **argv)
{
	int seed_given = 0;
	int64_t t_start;
	ssize_t n;

	D.opt.iterations = 8;
	D.opt.dir = "broker-crash-data";
	D.opt.epoch = 20;
	D.opt.log_level = "error";
	D.child_fd = -1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "broker_crash: unknown option or missing value: %s\n%s", a,
				usage);
			return 2;
		}
		i++;
		if (strcmp(a, "--iterations") == 0)
			D.opt.iterations = parse_u64(a, v);
		else if (strcmp(a, "--dir") == 0)
			D.opt.dir = v;
		else if (strcmp(a, "--seed") == 0)
			D.opt.seed = parse_u64(a, v), seed_given = 1;
		else if (strcmp(a, "--epoch") == 0)
			D.opt.epoch = parse_u64(a, v);
		else if (strcmp(a, "--log-level") == 0)
			D.opt.log_level = v;
		else {
			fprintf(stderr, "broker_crash: unknown option %s\n%s", a, usage);
			return 2;
		}
	}
	set_log_level(D.opt.log_level);
	if (!seed_given)
		D.opt.seed =
			bcrash_mix64((uint64_t)cfx_clock_wall_ms() ^ ((uint64_t)getpid() << 32));
	if (D.opt.epoch == 0)
		D.opt.epoch = 1;
	n = readlink("/proc/self/exe", D.exe, sizeof D.exe - 1);
	if (n <= 0)
		bcrash_fail("readlink(/proc/self/exe): %s", strerror(errno));
	D.exe[n] = '\0';
	if (snprintf(D.data_dir, sizeof D.data_dir, "%s/%s", D.opt.dir, BC_DATA_SUBDIR) >=
		    (int)sizeof D.data_dir ||
	    snprintf(D.log_path, sizeof D.log_path, "%s/%s", D.opt.dir, BC_LOG_FILE) >=
		    (int)sizeof D.log_path)
		bcrash_fail("directory name too long: %s", D.opt.dir);
	if (mkdir(D.opt.dir, 0755) != 0 && errno != EEXIST)
		bcrash_fail("cannot create %s: %s", D.opt.dir, strerror(errno));
	signal(SIGPIPE, SIG_IGN);

	printf("broker_crash: seed %" PRIu64 ", %" PRIu64 " iterations, dir %s, starting over "
	       "every %" PRIu64 "\n",
	       D.opt.seed, D.opt.iterations, D.opt.dir, D.opt.epoch);
	fflush(stdout);
	t_start = cfx_clock_mono_ms();
	for (D.iter = 1; D.iter <= D.opt.iterations; D.iter++) {
		struct bc_rng r = {bcrash_mix64(D.opt.seed ^ bcrash_mix64(D.iter))};

		if ((D.iter - 1) % D.opt.epoch == 0) {
			if (D.iter > 1) {
				sum_stats(&D.sum, &D.last);
				printf("starting over with an empty directory\n");
			}
			wipe();
			setup();
			D.epochs++;
		}
		switch (D.iter % 10) {
		case 0:
			D.variant = V_CLEAN_RESTART;
			break;
		case 3:
			D.variant = V_DOUBLE;
			break;
		case 7:
			D.variant = V_KILL_AT_START;
			break;
		case 2:
			D.variant = V_KILL_AT_TIMER_DONE;
			break;
		case 5:
			D.variant = V_KILL_AT_TXN_DONE;
			break;
		case 8:
			D.variant = V_KILL_IN_CALLBACK;
			break;
		default:
			D.variant = V_PLAIN;
			break;
		}
		run_variant(&r);
		verify(bcrash_rng_next(&r));
	}
	D.iter = D.opt.iterations;
	sum_stats(&D.sum, &D.last);

	printf("broker_crash: PASS, seed %" PRIu64 ": %" PRIu64 " iterations in %.1f s, %" PRIu64
	       " epochs; workers: %" PRIu64 " killed while running, %" PRIu64 " at start (%" PRIu64
	       " before ready), %" PRIu64 " killed themselves (%" PRIu64
	       " while recovering, %" PRIu64 " killed as usual: their point never came), %" PRIu64
	       " closed cleanly; pop: %" PRIu64 " sent, %" PRIu64 " acked, %" PRIu64
	       " redeliveries; delay: %" PRIu64 " sent, %" PRIu64 " timers fired (%" PRIu64
	       " pending at restarts); txn: %" PRIu64 " sent, %" PRIu64 " committed, %" PRIu64
	       " rolled back, %" PRIu64 " left open (%" PRIu64 " open at restarts, %" PRIu64
	       " orphans found by check-back, %" PRIu64
	       " commits whose callback the kill lost); %" PRIu64 " msgs drained by verifiers\n",
	       D.opt.seed, D.opt.iterations, (double)(cfx_clock_mono_ms() - t_start) / 1000.0,
	       D.epochs, D.kills, D.start_kills, D.start_kills_early, D.self_kills,
	       D.self_kills_early, D.self_kills_missed, D.clean_closes, D.sum.pop_sent,
	       D.sum.pop_acked, D.sum.redeliveries, D.sum.delay_sent, D.sum.timers_fired,
	       D.timers_at_restart, D.sum.txn_sent, D.sum.txn_committed, D.sum.txn_rolled_back,
	       D.sum.txn_left_open, D.txn_open_at_restart, D.sum.txn_orphans, D.sum.rerecovered,
	       D.drained);
	return 0;
}
