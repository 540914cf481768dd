/*
 * crash_test.c - the kill -9 crash test of the store: the driver, and the
 * entry point of both roles.
 *
 *   crash_test --iterations N --dir D [--seed S]      drive N crashes
 *   crash_test --check --dir D                        verify D as it is, once
 *   crash_test --writer --dir D --seed S ...          the writer (internal)
 *
 * Each iteration starts a writer (this program again, writer.c), lets it
 * append for a random 20-400 ms, kills it with SIGKILL, then opens the
 * store in this process, which runs recovery, and verifies it (verify.c).
 * The store is closed cleanly and the next iteration continues on the same
 * directory, so recovery keeps running on data that was recovered before.
 * Some iterations are variants, chosen by the iteration number:
 *
 *   n % 10 == 0  clean-restart   a writer is stopped cleanly (SIGTERM) and a
 *                                second one is started and killed
 *   n % 10 == 5  kill-in-close   SIGTERM, then SIGKILL while the writer is
 *                                inside cfx_store_close
 *   n % 10 == 7  kill-at-start   after the kill, one to three writers are
 *                                killed during their own recovery or just
 *                                after it (recovery of a recovery)
 *   otherwise    plain
 *
 * Every random choice (delays, writer seeds, lookups) derives from one seed,
 * printed first. Timing still differs from run to run, so a replay with
 * --seed repeats the schedule, not the exact interleaving. Durations are
 * printed, never asserted. The first violation ends the run with status 1
 * and a message naming the iteration, the seed and what was wrong.
 *
 * What is checked: verify.c. How to run it: README.md.
 */
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
#include "base/err.h"
#include "base/log.h"
#include "crash.h"

#define STATUS_TIMEOUT_MS 120000 /* a writer that does not report in this long is hung */
#define KILL_DELAY_MS_MIN 20
#define KILL_DELAY_MS_MAX 400
#define START_KILLS_MAX	  3

static const char usage[] =
	"usage: crash_test [--iterations N] [--dir DIR] [--seed S] [--threads T]\n"
	"                  [--max-log-mb M] [--log-level quiet|error|warn|info]\n"
	"                  [--variants LIST]\n"
	"  --iterations N   crashes to run (default 25)\n"
	"  --dir DIR        test directory; its store/ and acks.log are removed first\n"
	"                   (default crash-data)\n"
	"  --seed S         seed of every random choice (default: from the clock); print\n"
	"                   on start, pass it again to replay a run's schedule\n"
	"  --threads T      appender threads of the writer (default 3)\n"
	"  --max-log-mb M   start over with an empty store once the log exceeds M MiB\n"
	"                   (default 512; bounds disk use and verification time)\n"
	"  --log-level L    store log level in both processes (default error)\n"
	"  --variants LIST  comma-separated variants to run: plain, clean-restart,\n"
	"                   kill-in-close, kill-at-start (default all); iterations of a\n"
	"                   variant left out run as plain\n"
	"       crash_test --check [--dir DIR]\n"
	"  recovers and verifies DIR as it is (nothing is removed), for post-mortems\n";

enum variant { V_PLAIN, V_CLEAN_RESTART, V_KILL_IN_CLOSE, V_KILL_AT_START };

static const char *const variant_names[] = { "plain", "clean-restart", "kill-in-close",
					     "kill-at-start" };

struct options {
	uint64_t iterations;
	const char *dir;
	uint64_t seed;
	unsigned threads;
	uint64_t max_log_bytes;
	const char *log_level;
	unsigned variants; /* bit per enum variant */
	const char *variants_arg;
};

struct driver {
	struct options opt;
	char exe[PATH_MAX];
	char store_dir[PATH_MAX];
	char ack_path[PATH_MAX];
	uint64_t iter; /* current iteration, 1-based */
	enum variant variant;
	int check_only; /* --check: never remove anything */
	uint32_t runs;	/* writer processes started */
	pid_t child;	/* live writer, or 0 */
	int child_fd;	/* its status pipe */
	uint64_t prev_end[CRASH_TOPICS][CRASH_QUEUES];
	int64_t last_open_us;  /* our last recovery of a crashed store */
	int64_t last_close_us; /* a writer's last clean close */

	/* totals for the summary */
	uint64_t kills, clean_closes, close_kills, close_won, start_kills, start_kills_early;
	uint64_t verified_stored, verified_acked, resets, truncated_bytes;
	int64_t open_us_max, verify_us_total;
};

static struct driver D;

static int64_t mono_us(void)
{
	return cfx_clock_mono_ns() / 1000;
}

static void sleep_us(int64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Reports the violation and ends the run (killing a live writer first). */
CFX_PRINTF(1, 2) CFX_NORETURN static void die(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (D.child > 0) {
		kill(D.child, SIGKILL);
		waitpid(D.child, NULL, 0);
	}
	fflush(stdout);
	if (D.check_only) {
		fprintf(stderr, "\nFAIL (--check of %s):\n  %s\n", D.opt.dir, msg);
		exit(1);
	}
	fprintf(stderr,
		"\nFAIL at iteration %" PRIu64 " (%s, writer run %" PRIu32 ", seed %" PRIu64 "):\n"
		"  %s\n"
		"replay: %s --seed %" PRIu64 " --iterations %" PRIu64 " --dir %s --threads %u "
		"--max-log-mb %" PRIu64 "%s%s\n",
		D.iter, variant_names[D.variant], D.runs, D.opt.seed, msg, D.exe, D.opt.seed,
		D.iter, D.opt.dir, D.opt.threads, D.opt.max_log_bytes >> 20,
		D.opt.variants_arg ? " --variants " : "",
		D.opt.variants_arg ? D.opt.variants_arg : "");
	exit(1);
}

/* ------------------------------------------------------------------------
 * Writer processes
 * ------------------------------------------------------------------------ */

static void spawn_writer(uint64_t seed)
{
	char seed_s[24], run_s[16], fd_s[16], thr_s[16];
	int fds[2];
	pid_t pid, parent;

	if (pipe2(fds, O_CLOEXEC) != 0)
		die("pipe2: %s", strerror(errno));
	D.runs++;
	snprintf(seed_s, sizeof seed_s, "%" PRIu64, seed);
	snprintf(run_s, sizeof run_s, "%" PRIu32, D.runs);
	snprintf(fd_s, sizeof fd_s, "%d", fds[1]);
	snprintf(thr_s, sizeof thr_s, "%u", D.opt.threads);
	char *argv[] = {
		D.exe,	     "--writer", "--dir",	(char *)D.opt.dir,	 "--seed",
		seed_s,	     "--run",	 run_s,		"--status-fd",		 fd_s,
		"--threads", thr_s,	 "--log-level", (char *)D.opt.log_level, NULL,
	};

	fflush(stdout);
	fflush(stderr);
	parent = getpid();
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* A writer never outlives the driver (killed by a timeout, ^C...). */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(127);
		/* The status pipe's write end survives the exec; nothing else does. */
		if (fcntl(fds[1], F_SETFD, 0) != 0)
			_exit(127);
		execv(D.exe, argv);
		_exit(127);
	}
	close(fds[1]);
	D.child = pid;
	D.child_fd = fds[0];
}

/*
 * Waits for the writer to report `want` on its status pipe. Returns 1 once
 * seen, 0 if the writer closed the pipe (it exited) first. Dies on timeout.
 */
static int await_status(char want)
{
	int64_t deadline = cfx_clock_mono_ms() + STATUS_TIMEOUT_MS;

	for (;;) {
		struct pollfd pfd = { .fd = D.child_fd, .events = POLLIN };
		int64_t left = deadline - cfx_clock_mono_ms();
		char c;
		ssize_t n;

		if (left <= 0)
			die("writer run %" PRIu32 " did not report '%c' within %d s", D.runs, want,
			    STATUS_TIMEOUT_MS / 1000);
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		n = read(D.child_fd, &c, 1);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("reading the status pipe: %s", strerror(errno));
		}
		if (c == want)
			return 1;
	}
}

/* Reaps the writer. Returns 1 if SIGKILL ended it, 0 if it exited with status 0. */
static int reap_writer(void)
{
	int ws;

	while (waitpid(D.child, &ws, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	D.child = 0;
	close(D.child_fd);
	D.child_fd = -1;
	if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL)
		return 1;
	if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
		return 0;
	if (WIFEXITED(ws) && WEXITSTATUS(ws) == CRASH_WRITER_EXIT_FAIL)
		die("writer run %" PRIu32 " found an error (its message is above)", D.runs);
	if (WIFEXITED(ws))
		die("writer run %" PRIu32 " exited with status %d", D.runs, WEXITSTATUS(ws));
	die("writer run %" PRIu32 " was killed by signal %d (%s)", D.runs, WTERMSIG(ws),
	    strsignal(WTERMSIG(ws)));
}

static void kill9(void)
{
	if (kill(D.child, SIGKILL) != 0 && errno != ESRCH)
		die("kill: %s", strerror(errno));
}

/* Starts a writer, waits until it appends, lets it run for a while. */
static void start_and_run(struct crash_rng *r, int64_t min_ms, int64_t max_ms)
{
	spawn_writer(crash_rng_next(r));
	if (!await_status(CRASH_ST_READY)) {
		reap_writer();
		die("writer run %" PRIu32 " exited before it was ready", D.runs);
	}
	sleep_us((int64_t)crash_rng_range(r, (uint64_t)min_ms * 1000, (uint64_t)max_ms * 1000));
}

/* The basic step: run a writer and kill -9 it at a random moment. */
static void crash_writer(struct crash_rng *r)
{
	start_and_run(r, KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX);
	kill9();
	if (!reap_writer())
		die("writer run %" PRIu32 " exited by itself before it was killed", D.runs);
	D.kills++;
}

/* Asks the writer for a clean close and waits for it to finish. */
static void close_writer_cleanly(void)
{
	int64_t t0;

	if (kill(D.child, SIGTERM) != 0)
		die("kill(SIGTERM): %s", strerror(errno));
	if (!await_status(CRASH_ST_CLOSING)) {
		reap_writer();
		die("writer run %" PRIu32 " exited before closing the store", D.runs);
	}
	t0 = mono_us();
	if (!await_status(CRASH_ST_CLOSED)) {
		reap_writer();
		die("writer run %" PRIu32 " exited without finishing cfx_store_close", D.runs);
	}
	D.last_close_us = mono_us() - t0;
	if (reap_writer())
		die("writer run %" PRIu32 " was killed after a clean close", D.runs);
	D.clean_closes++;
}

static void run_variant(struct crash_rng *r)
{
	switch (D.variant) {
	case V_PLAIN:
		crash_writer(r);
		break;

	case V_CLEAN_RESTART:
		start_and_run(r, KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX / 2);
		close_writer_cleanly();
		crash_writer(r);
		break;

	case V_KILL_IN_CLOSE: {
		/* Aim within the time a close took last time, a little beyond it. */
		int64_t close_us = D.last_close_us ? D.last_close_us : 5000;
		start_and_run(r, KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX);
		if (kill(D.child, SIGTERM) != 0)
			die("kill(SIGTERM): %s", strerror(errno));
		if (!await_status(CRASH_ST_CLOSING)) {
			reap_writer();
			die("writer run %" PRIu32 " exited before closing the store", D.runs);
		}
		sleep_us((int64_t)crash_rng_range(r, 0, (uint64_t)(close_us * 3 / 2 + 200)));
		kill9();
		if (reap_writer())
			D.close_kills++;
		else
			D.close_won++; /* the close finished first: still a valid run */
		break;
	}

	case V_KILL_AT_START: {
		/* Leave a crashed store, then kill writers while they recover it. */
		int64_t open_us = D.last_open_us ? D.last_open_us : 2000;
		unsigned k = (unsigned)crash_rng_range(r, 1, START_KILLS_MAX);
		crash_writer(r);
		for (unsigned i = 0; i < k; i++) {
			spawn_writer(crash_rng_next(r));
			if (!await_status(CRASH_ST_OPENING)) {
				reap_writer();
				die("writer run %" PRIu32 " exited before opening the store",
				    D.runs);
			}
			sleep_us((int64_t)crash_rng_range(r, 0, (uint64_t)(open_us * 2 + 1000)));
			kill9();
			/* Did it get past cfx_store_open? (the pipe holds what it sent) */
			int ready = 0;
			char c;
			while (read(D.child_fd, &c, 1) == 1)
				ready |= c == CRASH_ST_READY;
			if (!reap_writer())
				die("writer run %" PRIu32 " exited by itself before it was killed",
				    D.runs);
			D.start_kills++;
			D.start_kills_early += !ready;
		}
		break;
	}
	}
}

/* ------------------------------------------------------------------------
 * Recovery and verification in this process
 * ------------------------------------------------------------------------ */

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	CFX_UNUSED(sb);
	CFX_UNUSED(ftw);
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes the store and the ack log (only those: --dir may hold other files). */
static void wipe(void)
{
	if (nftw(D.store_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		die("cannot remove %s: %s", D.store_dir, strerror(errno));
	if (unlink(D.ack_path) != 0 && errno != ENOENT)
		die("cannot remove %s: %s", D.ack_path, strerror(errno));
	memset(D.prev_end, 0, sizeof D.prev_end);
}

static void recover_and_verify(struct crash_rng *r)
{
	struct cfx_store_recovery rec;
	struct crash_verify_stats vs;
	struct cfx_store_opts o;
	struct cfx_store *st;
	char why[1024];
	int64_t t0, open_us, verify_us;
	int rc;

	crash_store_opts(&o, D.store_dir);
	t0 = mono_us();
	rc = cfx_store_open(&o, &st, &rec);
	open_us = mono_us() - t0;
	if (rc)
		die("recovery failed: cfx_store_open(%s) returned %s", D.store_dir,
		    cfx_strerror(rc));
	D.last_open_us = open_us;
	D.open_us_max = CFX_MAX(D.open_us_max, open_us);
	D.truncated_bytes += rec.truncated_bytes;

	t0 = mono_us();
	if (crash_verify(st, D.opt.dir, (const uint64_t(*)[CRASH_QUEUES])D.prev_end, r, &vs, why,
			 sizeof why))
		die("%s", why);
	verify_us = mono_us() - t0;
	D.verify_us_total += verify_us;
	rc = cfx_store_close(st);
	if (rc)
		die("cfx_store_close after verification: %s", cfx_strerror(rc));
	memcpy(D.prev_end, vs.end, sizeof D.prev_end);
	D.verified_stored += vs.stored_msgs;
	D.verified_acked += vs.acked_msgs;

	if (D.check_only)
		printf("check: ");
	else
		printf("iter %" PRIu64 "/%" PRIu64 " %-13s ", D.iter, D.opt.iterations,
		       variant_names[D.variant]);
	printf("acked %" PRIu64 " msgs (%" PRIu64 " batches), stored %" PRIu64
	       "; recovery %.1f ms (%s%" PRIu64 " entries "
	       "scanned), truncated %" PRIu64 " B%s; verify %.0f ms; log %.0f MiB\n",
	       vs.acked_msgs, vs.acks, vs.stored_msgs, (double)open_us / 1000.0,
	       rec.clean ? "clean, " : "", rec.scanned_entries, rec.truncated_bytes,
	       vs.torn_ack_bytes ? ", torn ack record ignored" : "", (double)verify_us / 1000.0,
	       (double)vs.log_bytes / (1 << 20));
	fflush(stdout);

	if (vs.log_bytes > D.opt.max_log_bytes && !D.check_only) {
		printf("log over %" PRIu64 " MiB: starting over with an empty store\n",
		       D.opt.max_log_bytes >> 20);
		wipe();
		D.resets++;
	}
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
		fprintf(stderr, "crash_test: bad value for %s: %s\n%s", name, s, usage);
		exit(2);
	}
	return v;
}

static unsigned parse_variants(const char *list)
{
	unsigned bits = 1u << V_PLAIN;
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		unsigned v;

		for (v = 0; v < CFX_ARRAY_LEN(variant_names); v++)
			if (strlen(variant_names[v]) == len && !strncmp(p, variant_names[v], len))
				break;
		if (v == CFX_ARRAY_LEN(variant_names)) {
			fprintf(stderr, "crash_test: unknown variant in %s\n%s", list, usage);
			exit(2);
		}
		bits |= 1u << v;
		p += len + (p[len] == ',');
	}
	return bits;
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
		fprintf(stderr, "crash_test: unknown log level %s\n%s", name, usage);
		exit(2);
	}
	cfx_log_set_level(level);
}

int main(int argc, char **argv)
{
	struct crash_writer_args wa = { .status_fd = -1, .threads = 3 };
	int writer = 0, check = 0, seed_given = 0;
	int64_t t_start;
	ssize_t n;

	D.opt.iterations = 25;
	D.opt.dir = "crash-data";
	D.opt.threads = 3;
	D.opt.max_log_bytes = 512ull << 20;
	D.opt.log_level = "error";
	D.opt.variants = ~0u;
	D.child_fd = -1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--writer") == 0) {
			writer = 1;
			continue;
		}
		if (strcmp(a, "--check") == 0) {
			check = 1;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "crash_test: unknown option or missing value: %s\n%s", a,
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
		else if (strcmp(a, "--threads") == 0)
			D.opt.threads = (unsigned)parse_u64(a, v);
		else if (strcmp(a, "--max-log-mb") == 0)
			D.opt.max_log_bytes = parse_u64(a, v) << 20;
		else if (strcmp(a, "--log-level") == 0)
			D.opt.log_level = v;
		else if (strcmp(a, "--variants") == 0)
			D.opt.variants = parse_variants(v), D.opt.variants_arg = v;
		else if (strcmp(a, "--run") == 0)
			wa.run = (uint32_t)parse_u64(a, v);
		else if (strcmp(a, "--status-fd") == 0)
			wa.status_fd = (int)parse_u64(a, v);
		else {
			fprintf(stderr, "crash_test: unknown option %s\n%s", a, usage);
			return 2;
		}
	}
	set_log_level(D.opt.log_level);

	if (writer) {
		wa.dir = D.opt.dir;
		wa.seed = D.opt.seed;
		wa.threads = D.opt.threads;
		crash_writer_main(&wa);
	}

	/* ---- the driver ---- */
	if (!seed_given)
		D.opt.seed =
			crash_mix64((uint64_t)cfx_clock_wall_ms() ^ ((uint64_t)getpid() << 32));
	if (D.opt.threads == 0)
		D.opt.threads = 1;
	n = readlink("/proc/self/exe", D.exe, sizeof D.exe - 1);
	if (n <= 0)
		die("readlink(/proc/self/exe): %s", strerror(errno));
	D.exe[n] = '\0';
	if (snprintf(D.store_dir, sizeof D.store_dir, "%s/%s", D.opt.dir, CRASH_STORE_SUBDIR) >=
		    (int)sizeof D.store_dir ||
	    snprintf(D.ack_path, sizeof D.ack_path, "%s/%s", D.opt.dir, CRASH_ACK_FILE) >=
		    (int)sizeof D.ack_path)
		die("directory name too long: %s", D.opt.dir);
	if (check) {
		struct crash_rng r = { D.opt.seed };
		D.check_only = 1;
		recover_and_verify(&r);
		printf("crash_test: %s verifies\n", D.opt.dir);
		return 0;
	}
	if (mkdir(D.opt.dir, 0755) != 0 && errno != EEXIST)
		die("cannot create %s: %s", D.opt.dir, strerror(errno));
	wipe();
	signal(SIGPIPE, SIG_IGN);

	printf("crash_test: seed %" PRIu64 ", %" PRIu64 " iterations, dir %s, %u writer threads\n",
	       D.opt.seed, D.opt.iterations, D.opt.dir, D.opt.threads);
	fflush(stdout);
	t_start = mono_us();
	for (D.iter = 1; D.iter <= D.opt.iterations; D.iter++) {
		struct crash_rng r = { crash_mix64(D.opt.seed ^ crash_mix64(D.iter)) };

		switch (D.iter % 10) {
		case 0:
			D.variant = V_CLEAN_RESTART;
			break;
		case 5:
			D.variant = V_KILL_IN_CLOSE;
			break;
		case 7:
			D.variant = V_KILL_AT_START;
			break;
		default:
			D.variant = V_PLAIN;
			break;
		}
		if (!(D.opt.variants & (1u << D.variant)))
			D.variant = V_PLAIN;
		run_variant(&r);
		recover_and_verify(&r);
	}
	D.iter = D.opt.iterations;

	printf("crash_test: PASS, seed %" PRIu64 ": %" PRIu64 " iterations in %.1f s; %" PRIu32
	       " writers: %" PRIu64 " killed while appending, %" PRIu64 " in close (%" PRIu64
	       " closed first), %" PRIu64 " at start (%" PRIu64 " before ready), %" PRIu64
	       " closed cleanly; verified %" PRIu64 " stored and %" PRIu64 " acked messages; "
	       "%" PRIu64 " bytes truncated by recovery; slowest recovery %.1f ms, verification "
	       "%.1f s in all; %" PRIu64 " restarts from empty\n",
	       D.opt.seed, D.opt.iterations, (double)(mono_us() - t_start) / 1e6, D.runs, D.kills,
	       D.close_kills, D.close_won, D.start_kills, D.start_kills_early, D.clean_closes,
	       D.verified_stored, D.verified_acked, D.truncated_bytes,
	       (double)D.open_us_max / 1000.0, (double)D.verify_us_total / 1e6, D.resets);
	return 0;
}
