/*
 * mqtt_bench.c - an MQTT load generator on libmosquitto, for any broker on
 * MQTT 3.1.1 (confluxd's mqtt.listen, Mosquitto) at a numeric IPv4 address.
 * Prints one JSON line per run; bench/mqtt.sh runs it against both brokers
 * and compares.
 *
 *   mqtt_bench HOST:PORT throughput [--qos Q] [--pubs N] [--count C] [--size B]
 *                                    [--window W] [--raw] [--pid PID] [--name NAME]
 *   mqtt_bench HOST:PORT idle [--conns N] [--bind-net A.B.C] [--window W]
 *                             [--pid PID] [--name NAME] [--label SCENARIO]
 *   mqtt_bench HOST:PORT retained [--count N] [--size B] [--window W]
 *                                 [--pid PID] [--name NAME]
 *
 * throughput: N publishers and N subscribers, each on its own connection;
 *   subscriber i subscribes to "mqb/<run>/<i>" at QoS Q, then publisher i
 *   sends C messages of B bytes (default 100) there at QoS Q, keeping up to
 *   W (default 1000) messages unwritten (QoS 0) or unacknowledged (QoS 1).
 *   Timed from the first publish to the last message received; messages
 *   not received within 3 s of the last publish are counted as lost.
 *   Publishers run in one thread, subscribers in another, each an epoll
 *   loop over libmosquitto's non-threaded interface. --raw: the same with
 *   a minimal client of our own instead of libmosquitto (batched writes and
 *   reads), to see the broker when the client is not the bottleneck.
 * idle: N connections (default 50,000), each with one QoS 0 subscription
 *   "mqi/<run>/<i>", W handshakes (CONNECT, SUBSCRIBE) in flight (default
 *   64: Mosquitto listens with a backlog of 100, and connections beyond it
 *   wait a second for the SYN to be sent again). Reports
 *   connections per second and the broker's memory before and after
 *   (VmRSS and RssAnon of /proc/PID/status; kernel socket buffers are not
 *   in them). Each source address A.B.C.z (--bind-net A.B.C, default
 *   127.0.1; z from 1) carries at most 4,000 connections, so the count is
 *   not bounded by one address's ephemeral ports (and bind(2) stays fast).
 *   Connections end with a reset (linger 0): no TIME_WAIT is left behind.
 *   --label names the scenario in the report (default "idle").
 * retained: one publisher sends N retained messages (default 1,000,000)
 *   of B bytes (default 16) to N distinct topics "mqr/<run>/<i>" at QoS 1,
 *   W unacknowledged; timed until the last PUBACK, then the broker's memory
 *   is read after 2 s (before and after, as for idle).
 *
 * The file descriptor limit is raised to what the run needs (to the hard
 * limit, or past it when the process may); libmosquitto takes three
 * descriptors per client (its socket and a socket pair). If that is not
 * enough the JSON says so ("fd_limit_too_low") and the idle count is
 * reduced to fit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONNS_PER_SOURCE 4000 /* per source address: bind(2) to port 0 slows as one fills */
#define FDS_SPARE 64	       /* descriptors beyond the connections */
#define FDS_PER_CLIENT 3       /* libmosquitto: the socket and a socket pair for wake-ups */
#define KEEP_ALIVE_S 600
#define LOST_AFTER_S 3.0 /* no message for this long after the last publish: lost */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_exact(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t k = read(fd, b, n);
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static void die(const char *what)
{
	fprintf(stderr, "mqtt_bench: %s\n", what);
	exit(1);
}

/* ------------------------------------------------------------------------
 * The broker's process: memory and CPU time from /proc
 * ------------------------------------------------------------------------ */

struct proc_mem {
	long rss_kib;  /* VmRSS */
	long anon_kib; /* RssAnon: heap and other anonymous memory */
};

static struct proc_mem proc_mem(int pid)
{
	struct proc_mem pm = { -1, -1 };
	char path[64], line[256];
	FILE *f;

	if (pid <= 0)
		return pm;
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return pm;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "VmRSS:", 6))
			pm.rss_kib = atol(line + 6);
		else if (!strncmp(line, "RssAnon:", 8))
			pm.anon_kib = atol(line + 8);
	}
	fclose(f);
	return pm;
}

/* User + system CPU seconds of a process (all its threads); -1 if unknown. */
static double proc_cpu_s(int pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* Raises RLIMIT_NOFILE towards `want`; returns the soft limit in force. */
static long fd_limit_raise(long want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -1;
	if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur >= want)
		return (long)rl.rlim_cur;
	if (rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max >= want) {
		rl.rlim_cur = (rlim_t)want;
	} else {
		struct rlimit up = { (rlim_t)want, (rlim_t)want };
		if (setrlimit(RLIMIT_NOFILE, &up) == 0) /* allowed with CAP_SYS_RESOURCE */
			return want;
		rl.rlim_cur = rl.rlim_max;
	}
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur == RLIM_INFINITY ? want : (long)rl.rlim_cur;
}

/* ------------------------------------------------------------------------
 * Clients in an epoll loop (libmosquitto's non-threaded interface)
 * ------------------------------------------------------------------------ */

enum cl_state { CL_CONNECTING, CL_CONNECTED, CL_SUBSCRIBED, CL_DEAD };

struct cl {
	struct mosquitto *m;
	struct drv *d;
	int fd;
	int out_armed;	      /* EPOLLOUT is in the interest set */
	enum cl_state state;
	long idx;
	/* publisher */
	long sent, done;      /* published; written (QoS 0) or acknowledged (QoS 1) */
	/* subscriber */
	long got;
};

struct drv {
	int ep;
	long failed;
	long connected, subscribed;
	const char *sub_topic_fmt; /* subscribe on CONNACK when set */
	const char *run;
	int sub_qos;
	_Atomic long got;	     /* messages received by this loop's clients */
	_Atomic double last_got_s;  /* when the last one came */
	double last_misc_s;
};

static void drv_init(struct drv *d)
{
	memset(d, 0, sizeof *d);
	d->ep = epoll_create1(EPOLL_CLOEXEC);
	if (d->ep < 0)
		die("epoll_create1 failed");
}

static void cl_arm(struct cl *c)
{
	int want = mosquitto_want_write(c->m);
	if (c->state == CL_DEAD || want == c->out_armed)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
	if (epoll_ctl(c->d->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = want;
}

#define FAILURES_SHOWN 5 /* per loop; the rest are only counted */

/* A connection failed: says why (the first few times) and counts it. */
static void cl_fail(struct cl *c, const char *what, const char *why)
{
	if (c->state == CL_DEAD)
		return;
	if (c->d->failed < FAILURES_SHOWN)
		fprintf(stderr, "mqtt_bench: connection %ld %s: %s\n", c->idx, what, why);
	else if (c->d->failed == FAILURES_SHOWN)
		fprintf(stderr, "mqtt_bench: more failed connections, counted only\n");
	c->state = CL_DEAD;
	c->d->failed++;
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct cl *c = arg;
	char topic[128];

	if (rc) {
		cl_fail(c, "refused", mosquitto_connack_string(rc));
		return;
	}
	c->state = CL_CONNECTED;
	c->d->connected++;
	if (c->d->sub_topic_fmt) {
		snprintf(topic, sizeof topic, c->d->sub_topic_fmt, c->d->run, c->idx);
		int err = mosquitto_subscribe(m, NULL, topic, c->d->sub_qos);
		if (err != MOSQ_ERR_SUCCESS)
			cl_fail(c, "subscribe", mosquitto_strerror(err));
	}
}

static void on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
	struct cl *c = arg;

	(void)m;
	(void)mid;
	if (n < 1 || granted[0] > 2) {
		cl_fail(c, "subscribe", "refused");
		return;
	}
	c->state = CL_SUBSCRIBED;
	c->d->subscribed++;
}

static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	struct cl *c = arg;

	(void)m;
	(void)msg;
	c->got++;
	atomic_store_explicit(&c->d->got, atomic_load_explicit(&c->d->got, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&c->d->last_got_s, now_s(), memory_order_relaxed);
}

static void on_publish(struct mosquitto *m, void *arg, int mid)
{
	struct cl *c = arg;

	(void)m;
	(void)mid;
	c->done++;
}

static void on_disconnect(struct mosquitto *m, void *arg, int rc)
{
	struct cl *c = arg;

	(void)m;
	if (rc)
		cl_fail(c, "lost", mosquitto_strerror(rc));
	else
		c->state = CL_DEAD; /* our own DISCONNECT */
}

/* A new client connecting to host:port (from bind_addr when set). Returns
 * 0, or -1 with the client failed (counted in d->failed). */
static int cl_start(struct drv *d, struct cl *c, long idx, const char *id, const char *host,
		    int port, const char *bind_addr, int send_max)
{
	memset(c, 0, sizeof *c);
	c->d = d;
	c->idx = idx;
	c->fd = -1;
	c->m = mosquitto_new(id, true, c);
	if (!c->m) {
		cl_fail(c, "setup", strerror(errno));
		return -1;
	}
	mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
	if (send_max)
		mosquitto_int_option(c->m, MOSQ_OPT_SEND_MAXIMUM, send_max);
	mosquitto_connect_callback_set(c->m, on_connect);
	mosquitto_subscribe_callback_set(c->m, on_subscribe);
	mosquitto_message_callback_set(c->m, on_message);
	mosquitto_publish_callback_set(c->m, on_publish);
	mosquitto_disconnect_callback_set(c->m, on_disconnect);
	int rc = mosquitto_connect_bind_async(c->m, host, port, KEEP_ALIVE_S, bind_addr);
	if (rc != MOSQ_ERR_SUCCESS) {
		cl_fail(c, bind_addr ? "connect (from the --bind-net address)" : "connect",
			rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return -1;
	}
	c->fd = mosquitto_socket(c->m);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	c->out_armed = 1;
	if (c->fd < 0 || epoll_ctl(d->ep, EPOLL_CTL_ADD, c->fd, &ev)) {
		cl_fail(c, "epoll_ctl", strerror(errno));
		return -1;
	}
	return 0;
}

/* Closes with a reset: no TIME_WAIT left on the client side. */
static void cl_close(struct cl *c)
{
	if (!c->m)
		return;
	int fd = mosquitto_socket(c->m);
	if (fd >= 0) {
		struct linger lg = { 1, 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	mosquitto_destroy(c->m);
	c->m = NULL;
}

/* Reads and writes what is ready, for up to timeout_ms. */
static void drv_poll(struct drv *d, struct cl *all, long n, int timeout_ms)
{
	struct epoll_event ev[512];
	int k = epoll_wait(d->ep, ev, 512, timeout_ms);

	for (int i = 0; i < k; i++) {
		struct cl *c = ev[i].data.ptr;
		if (c->state == CL_DEAD)
			continue;
		if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
			/* One packet per call for QoS 0: call again until the socket is dry. */
			for (int j = 0; j < 256; j++) {
				errno = 0;
				int rc = mosquitto_loop_read(c->m, 1);
				if (rc) {
					cl_fail(c, "read", mosquitto_strerror(rc));
					break;
				}
				if (errno == EAGAIN || errno == EWOULDBLOCK || c->state == CL_DEAD)
					break;
			}
		}
		if (c->state != CL_DEAD && (ev[i].events & EPOLLOUT)) {
			int rc = mosquitto_loop_write(c->m, 1);
			if (rc)
				cl_fail(c, "write", mosquitto_strerror(rc));
		}
		cl_arm(c);
	}
	double t = now_s();
	if (all && t - d->last_misc_s >= 5) { /* keep alive */
		d->last_misc_s = t;
		for (long i = 0; i < n; i++)
			if (all[i].m && all[i].state != CL_DEAD)
				mosquitto_loop_misc(all[i].m);
	}
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

struct opts {
	char host[256];
	int port;
	const char *mode, *name, *bind_net, *label;
	int qos, pid, raw;
	long pubs, count, size, window, conns;
	char run[32];
};

static void usage(void)
{
	fprintf(stderr,
		"usage: mqtt_bench HOST:PORT throughput [--qos Q] [--pubs N] [--count C] [--size B]\n"
		"                                        [--window W] [--raw] [--pid PID] [--name NAME]\n"
		"       mqtt_bench HOST:PORT idle [--conns N] [--bind-net A.B.C] [--window W]\n"
		"                                 [--pid PID] [--name NAME] [--label SCENARIO]\n"
		"       mqtt_bench HOST:PORT retained [--count N] [--size B] [--window W]\n"
		"                                     [--pid PID] [--name NAME]\n");
	exit(2);
}

static void opts_parse(struct opts *o, int argc, char **argv)
{
	if (argc < 3)
		usage();
	const char *colon = strrchr(argv[1], ':');
	if (!colon || (size_t)(colon - argv[1]) >= sizeof o->host)
		usage();
	memcpy(o->host, argv[1], (size_t)(colon - argv[1]));
	o->host[colon - argv[1]] = 0;
	o->port = atoi(colon + 1);
	o->mode = argv[2];
	o->name = "broker";
	o->bind_net = "127.0.1";
	o->pubs = 1;
	o->window = 1000;
	o->conns = 50000;
	int retained = !strcmp(o->mode, "retained");
	if (!strcmp(o->mode, "idle"))
		o->window = 64; /* below Mosquitto's listen backlog (100): no SYN drops */
	o->count = retained ? 1000000 : 200000;
	o->size = retained ? 16 : 100;
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--raw")) {
			o->raw = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--qos"))
			o->qos = atoi(v);
		else if (!strcmp(a, "--pubs"))
			o->pubs = atol(v);
		else if (!strcmp(a, "--count"))
			o->count = atol(v);
		else if (!strcmp(a, "--size"))
			o->size = atol(v);
		else if (!strcmp(a, "--window"))
			o->window = atol(v);
		else if (!strcmp(a, "--conns"))
			o->conns = atol(v);
		else if (!strcmp(a, "--pid"))
			o->pid = atoi(v);
		else if (!strcmp(a, "--name"))
			o->name = v;
		else if (!strcmp(a, "--bind-net"))
			o->bind_net = v;
		else if (!strcmp(a, "--label"))
			o->label = v;
		else {
			fprintf(stderr, "mqtt_bench: unknown option %s\n", a);
			usage();
		}
	}
	if (o->port <= 0 || o->qos < 0 || o->qos > 1 || o->pubs < 1 || o->pubs > 1000 ||
	    o->count < 1 || o->size < 1 || o->size > (1 << 20) || o->window < 1 ||
	    o->window > 65535 || o->conns < 1 || o->conns > CONNS_PER_SOURCE * 254L)
		usage();
	snprintf(o->run, sizeof o->run, "%lx", (unsigned long)getpid() ^ (unsigned long)time(NULL));
}

/* ------------------------------------------------------------------------
 * throughput
 * ------------------------------------------------------------------------ */

struct sub_loop {
	struct drv *d;
	struct cl *subs;
	long n;
	atomic_int stop;
};

static void *sub_main(void *arg)
{
	struct sub_loop *sl = arg;
	while (!atomic_load(&sl->stop))
		drv_poll(sl->d, sl->subs, sl->n, 10);
	return NULL;
}

/* Polls until cond() holds or timeout_s passes; returns 0 if it holds. */
static int drv_wait(struct drv *d, struct cl *all, long n, long *count, long want, double timeout_s)
{
	double t0 = now_s();
	while (*count + d->failed < want && now_s() - t0 < timeout_s)
		drv_poll(d, all, n, 10);
	return *count == want ? 0 : -1;
}

#define RAW_BATCH 64 /* messages per burst (and per write for --raw) */

/* A publisher sends a burst once its window has room for one (or for the
 * rest), not for every acknowledgement: fewer wake-ups and larger writes. */
static int may_send(long sent, long done, const struct opts *o)
{
	long room = o->window - (sent - done), left = o->count - sent;
	long burst = o->window < RAW_BATCH ? o->window : RAW_BATCH;
	return left > 0 && room >= (left < burst ? left : burst);
}

/* One JSON line for a throughput run. */
static void print_throughput(const struct opts *o, const char *client, long sent, long got,
			     double secs, double pub_secs, double broker_cpu_s, double client_cpu_s,
			     long failed)
{
	long n = o->pubs;

	printf("{\"broker\":\"%s\",\"scenario\":\"%sqos%d %ldx%ld\",\"client\":\"%s\",\"qos\":%d,"
	       "\"publishers\":%ld,\"subscribers\":%ld,\"size\":%ld,\"window\":%ld,\"sent\":%ld,"
	       "\"received\":%ld,\"lost\":%ld,\"seconds\":%.3f,\"publish_seconds\":%.3f,"
	       "\"msgs_per_s\":%.0f,\"broker_cpu_s\":%.2f,\"broker_cpu_us_per_msg\":%.2f,"
	       "\"client_cpu_s\":%.2f,\"failed_connections\":%ld}\n",
	       o->name, o->raw ? "raw " : "", o->qos, n, n, client, o->qos, n, n, o->size, o->window,
	       sent, got, n * o->count - got, secs, pub_secs, secs > 0 ? got / secs : 0, broker_cpu_s,
	       broker_cpu_s >= 0 && got ? broker_cpu_s * 1e6 / (double)got : -1, client_cpu_s,
	       failed);
	fflush(stdout);
}

static int run_throughput(const struct opts *o)
{
	struct drv pd, sd;
	long n = o->pubs;
	struct cl *pubs = calloc((size_t)n, sizeof *pubs), *subs = calloc((size_t)n, sizeof *subs);
	char id[64], topic[128];
	char *payload = malloc((size_t)o->size);

	if (!pubs || !subs || !payload)
		die("out of memory");
	memset(payload, 'p', (size_t)o->size);
	long fd_lim = fd_limit_raise(2 * n * FDS_PER_CLIENT + FDS_SPARE);
	if (fd_lim < 2 * n * FDS_PER_CLIENT + FDS_SPARE)
		die("file descriptor limit too low for the connections");
	drv_init(&pd);
	drv_init(&sd);
	sd.sub_topic_fmt = "mqb/%s/%ld";
	sd.run = o->run;
	sd.sub_qos = o->qos;
	for (long i = 0; i < n; i++) {
		snprintf(id, sizeof id, "mqb-%s-s%ld", o->run, i);
		if (cl_start(&sd, &subs[i], i, id, o->host, o->port, NULL, 0))
			die("cannot connect a subscriber");
	}
	if (drv_wait(&sd, subs, n, &sd.subscribed, n, 30))
		die("subscribers did not all subscribe");
	for (long i = 0; i < n; i++) {
		snprintf(id, sizeof id, "mqb-%s-p%ld", o->run, i);
		if (cl_start(&pd, &pubs[i], i, id, o->host, o->port, NULL, (int)o->window))
			die("cannot connect a publisher");
	}
	if (drv_wait(&pd, pubs, n, &pd.connected, n, 30))
		die("publishers did not all connect");

	struct sub_loop sl = { .d = &sd, .subs = subs, .n = n };
	pthread_t thr;
	double cpu0 = proc_cpu_s(o->pid), self0 = self_cpu_s();
	double t0 = now_s(), t_pub = 0;
	if (pthread_create(&thr, NULL, sub_main, &sl))
		die("pthread_create failed");
	long want = n * o->count;
	for (;;) {
		int more = 0, room = 0;
		for (long i = 0; i < n; i++) {
			struct cl *c = &pubs[i];
			if (c->state == CL_DEAD)
				continue;
			snprintf(topic, sizeof topic, "mqb/%s/%ld", o->run, i);
			int burst = may_send(c->sent, c->done, o) ? RAW_BATCH : 0;
			for (int k = 0; k < burst && c->sent < o->count && c->sent - c->done < o->window;
			     k++) {
				int rc = mosquitto_publish(c->m, NULL, topic, (int)o->size, payload,
							   o->qos, false);
				if (rc) {
					cl_fail(c, "publish", mosquitto_strerror(rc));
					break;
				}
				c->sent++;
			}
			if (c->state == CL_DEAD)
				continue;
			cl_arm(c);
			more |= c->done < o->count;
			room |= may_send(c->sent, c->done, o);
		}
		if (!more)
			break;
		drv_poll(&pd, pubs, n, room ? 0 : 10);
	}
	t_pub = now_s();
	/* Wait for the deliveries; what has not come LOST_AFTER_S after the last one is lost. */
	for (;;) {
		long got = atomic_load(&sd.got);
		double last = atomic_load(&sd.last_got_s), t = now_s();
		if (got >= want || t - (last > t_pub ? last : t_pub) > LOST_AFTER_S || t - t0 > 600)
			break;
		usleep(1000);
	}
	atomic_store(&sl.stop, 1);
	pthread_join(thr, NULL);
	double cpu1 = proc_cpu_s(o->pid), self1 = self_cpu_s();
	long got = atomic_load(&sd.got), sent = 0;
	double t_end = atomic_load(&sd.last_got_s);
	for (long i = 0; i < n; i++)
		sent += pubs[i].done;
	if (t_end < t0)
		t_end = now_s();
	double secs = t_end - t0;
	print_throughput(o, "libmosquitto", sent, got, secs, t_pub - t0,
			 cpu0 >= 0 ? cpu1 - cpu0 : -1, self1 - self0, pd.failed + sd.failed);
	for (long i = 0; i < n; i++) {
		if (pubs[i].m && pubs[i].state != CL_DEAD)
			mosquitto_disconnect(pubs[i].m);
		if (subs[i].m && subs[i].state != CL_DEAD)
			mosquitto_disconnect(subs[i].m);
		cl_close(&pubs[i]);
		cl_close(&subs[i]);
	}
	free(pubs);
	free(subs);
	free(payload);
	return got == want && !pd.failed && !sd.failed ? 0 : 1;
}

/* ------------------------------------------------------------------------
 * throughput without libmosquitto (--raw)
 *
 * The same scenario with a minimal MQTT 3.1.1 client of our own: the
 * publisher writes its PUBLISHes 64 to a write(2), the subscriber reads
 * 256 KiB at a time and answers a chunk's QoS 1 messages with one write of
 * PUBACKs. libmosquitto spends two system calls per message sent (the
 * packet, and a byte to its wake-up socket pair) and three per message
 * received (type, length, rest); on two cores shared with the broker that
 * bounds what the broker can show.
 * ------------------------------------------------------------------------ */

#define RAW_IN_BYTES (256u << 10)

struct raw {
	int fd;
	long idx;
	uint8_t *in;		/* received, not parsed yet */
	size_t in_len;
	uint8_t *out;		/* to send */
	size_t out_len, out_pos, out_cap;
	long sent, done, queued; /* published; written (QoS 0) or acked (QoS 1); in out */
	long got;
	int dead;
};

static void raw_reserve(struct raw *r, size_t more)
{
	if (r->out_len + more <= r->out_cap)
		return;
	while (r->out_len + more > r->out_cap)
		r->out_cap = r->out_cap ? r->out_cap * 2 : 4096;
	r->out = realloc(r->out, r->out_cap);
	if (!r->out)
		die("out of memory");
}

static void raw_put(struct raw *r, const void *p, size_t n)
{
	raw_reserve(r, n);
	memcpy(r->out + r->out_len, p, n);
	r->out_len += n;
}

/* Fixed header: type and flags, then the remaining length as a varint. */
static void raw_put_header(struct raw *r, uint8_t b0, size_t len)
{
	uint8_t h[5];
	size_t k = 0;

	h[k++] = b0;
	do {
		h[k] = (uint8_t)(len & 127);
		len >>= 7;
		if (len)
			h[k] |= 128;
		k++;
	} while (len);
	raw_put(r, h, k);
}

static void raw_put_str(struct raw *r, const char *str)
{
	size_t n = strlen(str);
	uint8_t l[2] = { (uint8_t)(n >> 8), (uint8_t)n };
	raw_put(r, l, 2);
	raw_put(r, str, n);
}

/* Writes what is queued; returns -1 if the connection failed. */
static int raw_flush(struct raw *r)
{
	while (r->out_pos < r->out_len) {
		ssize_t k = write(r->fd, r->out + r->out_pos, r->out_len - r->out_pos);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (k <= 0) {
			fprintf(stderr, "mqtt_bench: raw connection %ld: write: %s\n", r->idx,
				k < 0 ? strerror(errno) : "closed");
			r->dead = 1;
			return -1;
		}
		r->out_pos += (size_t)k;
	}
	r->out_pos = r->out_len = 0;
	return 0;
}

/* Calls fn for each whole packet received; keeps a partial one. Returns -1
 * when the connection ended. */
static int raw_read(struct raw *r, void (*fn)(struct raw *r, const uint8_t *p, size_t hdr,
					      size_t len, void *arg),
		    void *arg)
{
	for (int reads = 0; reads < 4; reads++) {
		ssize_t k = read(r->fd, r->in + r->in_len, RAW_IN_BYTES - r->in_len);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (k <= 0) {
			fprintf(stderr, "mqtt_bench: raw connection %ld: read: %s\n", r->idx,
				k < 0 ? strerror(errno) : "closed by the broker");
			r->dead = 1;
			return -1;
		}
		r->in_len += (size_t)k;
		size_t pos = 0;
		while (r->in_len - pos >= 2) {
			size_t len = 0, hdr = 1;
			int shift = 0, whole = 0;
			while (hdr < 5 && pos + hdr < r->in_len) {
				uint8_t b = r->in[pos + hdr++];
				len |= (size_t)(b & 127) << shift;
				shift += 7;
				if (!(b & 128)) {
					whole = 1;
					break;
				}
			}
			if (whole && hdr + len > RAW_IN_BYTES)
				die("a packet larger than the receive buffer");
			if (!whole || r->in_len - pos < hdr + len)
				break;
			fn(r, r->in + pos, hdr, len, arg);
			pos += hdr + len;
		}
		memmove(r->in, r->in + pos, r->in_len - pos);
		r->in_len -= pos;
		if ((size_t)k < RAW_IN_BYTES / 2)
			return 0; /* most likely dry */
	}
	return 0;
}

static void raw_close(struct raw *r)
{
	if (r->fd >= 0) {
		if (!r->dead) {
			uint8_t d[2] = { 0xE0, 0 }; /* DISCONNECT */
			if (write(r->fd, d, 2) != 2) {
			}
		}
		close(r->fd);
	}
	free(r->in);
	free(r->out);
	r->fd = -1;
}

/* Reads exactly one packet, blocking (the handshakes). Returns its first
 * byte, the body in body[], or -1. */
static int raw_read_one(int fd, uint8_t *body, size_t cap, size_t *len)
{
	uint8_t b0, b;
	size_t n = 0;
	int shift = 0;

	if (read_exact(fd, &b0, 1))
		return -1;
	do {
		if (shift > 21 || read_exact(fd, &b, 1))
			return -1;
		n |= (size_t)(b & 127) << shift;
		shift += 7;
	} while (b & 128);
	if (n > cap || read_exact(fd, body, n))
		return -1;
	*len = n;
	return b0;
}

/* Connects (CONNECT, CONNACK), and subscribes when topic is set. */
static int raw_open(struct raw *r, const struct opts *o, long idx, const char *id,
		    const char *topic, int qos)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	uint8_t body[64];
	size_t len;
	int one = 1;

	memset(r, 0, sizeof *r);
	r->idx = idx;
	r->in = malloc(RAW_IN_BYTES);
	r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!r->in || r->fd < 0 || inet_pton(AF_INET, o->host, &sa.sin_addr) != 1 ||
	    connect(r->fd, (struct sockaddr *)&sa, sizeof sa))
		return -1;
	setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* CONNECT: "MQTT", level 4, clean session, keep alive, client id */
	raw_put_header(r, 0x10, 10 + 2 + strlen(id));
	raw_put_str(r, "MQTT");
	uint8_t vh[4] = { 4, 0x02, KEEP_ALIVE_S >> 8, KEEP_ALIVE_S & 255 };
	raw_put(r, vh, 4);
	raw_put_str(r, id);
	if (raw_flush(r) || raw_read_one(r->fd, body, sizeof body, &len) != 0x20 || len < 2 ||
	    body[1] != 0)
		return -1;
	if (topic) {
		raw_put_header(r, 0x82, 2 + 2 + strlen(topic) + 1);
		uint8_t pid[2] = { 0, 1 };
		raw_put(r, pid, 2);
		raw_put_str(r, topic);
		uint8_t q = (uint8_t)qos;
		raw_put(r, &q, 1);
		if (raw_flush(r) || raw_read_one(r->fd, body, sizeof body, &len) != 0x90 ||
		    len < 3 || body[2] > 2)
			return -1;
	}
	fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

struct raw_subs {
	struct raw *v;
	long n;
	atomic_int stop;
	_Atomic long got;
	_Atomic double last_got_s;
};

static void raw_on_sub_packet(struct raw *r, const uint8_t *p, size_t hdr, size_t len, void *arg)
{
	struct raw_subs *rs = arg;

	if ((p[0] >> 4) != 3)
		return; /* not a PUBLISH */
	r->got++;
	if (((p[0] >> 1) & 3) == 1 && len >= 4) {
		size_t tl = (size_t)p[hdr] << 8 | p[hdr + 1];
		if (2 + tl + 2 <= len) {
			uint8_t ack[4] = { 0x40, 2, p[hdr + 2 + tl], p[hdr + 3 + tl] };
			raw_put(r, ack, 4);
		}
	}
	atomic_store_explicit(&rs->got, atomic_load_explicit(&rs->got, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static void *raw_sub_main(void *arg)
{
	struct raw_subs *rs = arg;
	struct pollfd *pf = calloc((size_t)rs->n, sizeof *pf);

	if (!pf)
		die("out of memory");
	while (!atomic_load(&rs->stop)) {
		for (long i = 0; i < rs->n; i++) {
			pf[i].fd = rs->v[i].dead ? -1 : rs->v[i].fd;
			pf[i].events = (short)(POLLIN | (rs->v[i].out_len ? POLLOUT : 0));
		}
		if (poll(pf, (nfds_t)rs->n, 10) <= 0)
			continue;
		for (long i = 0; i < rs->n; i++) {
			struct raw *r = &rs->v[i];
			long before = atomic_load_explicit(&rs->got, memory_order_relaxed);
			if (pf[i].revents & (POLLIN | POLLERR | POLLHUP))
				raw_read(r, raw_on_sub_packet, rs);
			if (!r->dead && r->out_len)
				raw_flush(r);
			if (atomic_load_explicit(&rs->got, memory_order_relaxed) != before)
				atomic_store_explicit(&rs->last_got_s, now_s(), memory_order_relaxed);
		}
	}
	free(pf);
	return NULL;
}

static void raw_on_pub_packet(struct raw *r, const uint8_t *p, size_t hdr, size_t len, void *arg)
{
	(void)hdr;
	(void)len;
	(void)arg;
	if ((p[0] >> 4) == 4) /* PUBACK */
		r->done++;
}

static int raw_may_send(const struct raw *r, const struct opts *o)
{
	return !r->out_len && may_send(r->sent, r->done, o);
}

static int run_throughput_raw(const struct opts *o)
{
	long n = o->pubs;
	struct raw *pubs = calloc((size_t)n, sizeof *pubs), *subs = calloc((size_t)n, sizeof *subs);
	struct pollfd *pf = calloc((size_t)n, sizeof *pf);
	char id[64], topic[128];
	char *payload = malloc((size_t)o->size);
	long failed = 0;

	if (!pubs || !subs || !pf || !payload)
		die("out of memory");
	memset(payload, 'p', (size_t)o->size);
	if (fd_limit_raise(2 * n + FDS_SPARE) < 2 * n + FDS_SPARE)
		die("file descriptor limit too low for the connections");
	for (long i = 0; i < n; i++) {
		snprintf(id, sizeof id, "mqb-%s-s%ld", o->run, i);
		snprintf(topic, sizeof topic, "mqb/%s/%ld", o->run, i);
		if (raw_open(&subs[i], o, i, id, topic, o->qos))
			die("cannot connect and subscribe a subscriber");
	}
	for (long i = 0; i < n; i++) {
		snprintf(id, sizeof id, "mqb-%s-p%ld", o->run, i);
		if (raw_open(&pubs[i], o, i, id, NULL, 0))
			die("cannot connect a publisher");
	}

	struct raw_subs rs = { .v = subs, .n = n };
	pthread_t thr;
	double cpu0 = proc_cpu_s(o->pid), self0 = self_cpu_s();
	double t0 = now_s();
	if (pthread_create(&thr, NULL, raw_sub_main, &rs))
		die("pthread_create failed");
	long want = n * o->count;
	for (;;) {
		int more = 0, room = 0;
		for (long i = 0; i < n; i++) {
			struct raw *r = &pubs[i];
			if (r->dead)
				continue;
			if (raw_may_send(r, o)) {
				snprintf(topic, sizeof topic, "mqb/%s/%ld", o->run, i);
				size_t tl = strlen(topic);
				for (int k = 0; k < RAW_BATCH && r->sent < o->count &&
						r->sent - r->done < o->window;
				     k++) {
					raw_put_header(r, (uint8_t)(0x30 | o->qos << 1),
						       2 + tl + (o->qos ? 2 : 0) + (size_t)o->size);
					raw_put_str(r, topic);
					if (o->qos) {
						uint16_t pid = (uint16_t)(r->sent % 65535 + 1);
						uint8_t b[2] = { (uint8_t)(pid >> 8), (uint8_t)pid };
						raw_put(r, b, 2);
					}
					raw_put(r, payload, (size_t)o->size);
					r->sent++;
					r->queued++;
				}
			}
			if (r->out_len && raw_flush(r) == 0 && !r->out_len) {
				if (!o->qos)
					r->done += r->queued;
				r->queued = 0;
			}
			if (o->qos)
				raw_read(r, raw_on_pub_packet, NULL);
			if (r->dead) {
				failed++;
				continue;
			}
			more |= r->done < o->count;
			room |= raw_may_send(r, o);
			pf[i].fd = r->fd;
			pf[i].events = (short)(POLLIN | (r->out_len ? POLLOUT : 0));
		}
		if (!more)
			break;
		if (!room)
			poll(pf, (nfds_t)n, 10);
	}
	double t_pub = now_s();
	for (;;) {
		long got = atomic_load(&rs.got);
		double last = atomic_load(&rs.last_got_s), t = now_s();
		if (got >= want || t - (last > t_pub ? last : t_pub) > LOST_AFTER_S || t - t0 > 600)
			break;
		usleep(1000);
	}
	atomic_store(&rs.stop, 1);
	pthread_join(thr, NULL);
	double cpu1 = proc_cpu_s(o->pid), self1 = self_cpu_s();
	long got = atomic_load(&rs.got), sent = 0;
	double t_end = atomic_load(&rs.last_got_s);
	for (long i = 0; i < n; i++) {
		sent += pubs[i].done;
		failed += subs[i].dead;
	}
	if (t_end < t0)
		t_end = now_s();
	print_throughput(o, "raw", sent, got, t_end - t0, t_pub - t0, cpu0 >= 0 ? cpu1 - cpu0 : -1,
			 self1 - self0, failed);
	for (long i = 0; i < n; i++) {
		raw_close(&pubs[i]);
		raw_close(&subs[i]);
	}
	free(pubs);
	free(subs);
	free(pf);
	free(payload);
	return got == want && !failed ? 0 : 1;
}

/* ------------------------------------------------------------------------
 * idle
 * ------------------------------------------------------------------------ */

/* The soft "Max open files" of a process, from /proc/PID/limits; -1 if unknown. */
static long proc_fd_limit(int pid)
{
	char path[64], line[256];
	long lim = -1;
	FILE *f;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/limits", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Max open files", 14)) {
			lim = strncmp(line + 26, "unlimited", 9) ? atol(line + 26) : LONG_MAX;
			break;
		}
	fclose(f);
	return lim;
}

/* What one worker process reports to the parent. */
struct idle_report {
	long subscribed, failed;
	double t0, t1; /* CLOCK_MONOTONIC: comparable between processes */
};

/*
 * One worker: opens connections base..base+n-1 (window handshakes at a
 * time), reports, then keeps them open (answering keep alive) until the
 * parent writes to or closes `rfd`, and closes them all with a reset.
 */
static void idle_worker(const struct opts *o, long base, long n, long window, int wfd, int rfd)
{
	struct drv d;
	struct cl *cls = calloc((size_t)n, sizeof *cls);
	struct idle_report rep = { 0 };
	char id[64], addr[32];
	long started = 0;

	if (!cls)
		die("out of memory");
	drv_init(&d);
	d.sub_topic_fmt = "mqi/%s/%ld";
	d.run = o->run;
	d.sub_qos = 0;
	rep.t0 = now_s();
	while (d.subscribed + d.failed < n && now_s() - rep.t0 < 600) {
		while (started < n && started - d.subscribed - d.failed < window) {
			long i = base + started;
			snprintf(id, sizeof id, "mqi-%s-%ld", o->run, i);
			snprintf(addr, sizeof addr, "%s.%ld", o->bind_net, 1 + i / CONNS_PER_SOURCE);
			cl_start(&d, &cls[started], i, id, o->host, o->port, addr, 0);
			started++;
		}
		drv_poll(&d, NULL, 0, 10);
	}
	rep.t1 = now_s();
	rep.subscribed = d.subscribed;
	rep.failed = d.failed + (n - started);
	if (write(wfd, &rep, sizeof rep) != (ssize_t)sizeof rep)
		die("cannot report to the parent");
	for (;;) {
		char b;
		drv_poll(&d, cls, n, 100);
		if (read(rfd, &b, 1) != -1 || errno != EAGAIN)
			break; /* a byte, or the parent closed its end */
	}
	for (long i = 0; i < n; i++)
		cl_close(&cls[i]);
	_exit(0);
}

static int run_idle(const struct opts *o)
{
	long n = o->conns, need = n * FDS_PER_CLIENT + FDS_SPARE, fd_lim = fd_limit_raise(need);
	long broker_lim = proc_fd_limit(o->pid);
	int fd_short = 0;

	if (fd_lim < FDS_PER_CLIENT + FDS_SPARE)
		die("no file descriptors left");
	if (broker_lim > 0 && broker_lim - 256 < n) {
		/* The broker needs one descriptor per connection and some of its own. */
		n = broker_lim - 256;
		fd_short = 1;
		fprintf(stderr,
			"mqtt_bench: %s may open %ld files: %ld connections instead of %ld (raise its "
			"limit, ulimit -n, to run them all)\n",
			o->name, broker_lim, n, o->conns);
		if (n < 1)
			die("the broker has no file descriptors to spare");
	}
	/* libmosquitto's clients use three descriptors each: one process per share. */
	long per_proc = (fd_lim - FDS_SPARE) / FDS_PER_CLIENT;
	long procs = (n + per_proc - 1) / per_proc;
	long window = (o->window + procs - 1) / procs;
	pid_t *kids = calloc((size_t)procs, sizeof *kids);
	int *rd = calloc((size_t)procs, sizeof *rd), *wr = calloc((size_t)procs, sizeof *wr);
	if (!kids || !rd || !wr)
		die("out of memory");

	struct proc_mem m0 = proc_mem(o->pid);
	fflush(stdout);
	for (long k = 0; k < procs; k++) {
		int up[2], down[2];
		long base = k * n / procs, cnt = (k + 1) * n / procs - base;
		if (pipe(up) || pipe(down))
			die("pipe failed");
		kids[k] = fork();
		if (kids[k] < 0)
			die("fork failed");
		if (kids[k] == 0) {
			close(up[0]);
			close(down[1]);
			for (long j = 0; j < k; j++) {
				close(rd[j]);
				close(wr[j]);
			}
			fcntl(down[0], F_SETFL, O_NONBLOCK);
			idle_worker(o, base, cnt, window, up[1], down[0]);
		}
		close(up[1]);
		close(down[0]);
		rd[k] = up[0];
		wr[k] = down[1];
	}
	struct idle_report sum = { 0, 0, 1e300, 0 };
	for (long k = 0; k < procs; k++) {
		struct idle_report rep;
		if (read(rd[k], &rep, sizeof rep) != (ssize_t)sizeof rep) {
			fprintf(stderr, "mqtt_bench: worker %ld ended early\n", k);
			continue;
		}
		sum.subscribed += rep.subscribed;
		sum.failed += rep.failed;
		sum.t0 = rep.t0 < sum.t0 ? rep.t0 : sum.t0;
		sum.t1 = rep.t1 > sum.t1 ? rep.t1 : sum.t1;
	}
	sleep(2); /* let the broker settle */
	struct proc_mem m1 = proc_mem(o->pid);
	long ok = sum.subscribed;
	double secs = sum.t1 > sum.t0 ? sum.t1 - sum.t0 : 0;
	printf("{\"broker\":\"%s\",\"scenario\":\"%s\",\"connections\":%ld,\"requested\":%ld,"
	       "\"broker_fd_limit\":%ld,\"fd_limit_too_low\":%s,\"client_processes\":%ld,"
	       "\"failed\":%ld,\"seconds\":%.3f,\"connects_per_s\":%.0f,\"rss_before_kib\":%ld,"
	       "\"rss_after_kib\":%ld,\"anon_before_kib\":%ld,\"anon_after_kib\":%ld,"
	       "\"rss_bytes_per_conn\":%.0f,\"anon_bytes_per_conn\":%.0f}\n",
	       o->name, o->label ? o->label : "idle", ok, o->conns, broker_lim,
	       fd_short ? "true" : "false", procs, sum.failed, secs, secs > 0 ? ok / secs : 0,
	       m0.rss_kib, m1.rss_kib, m0.anon_kib, m1.anon_kib,
	       ok ? (double)(m1.rss_kib - m0.rss_kib) * 1024 / (double)ok : 0,
	       ok ? (double)(m1.anon_kib - m0.anon_kib) * 1024 / (double)ok : 0);
	fflush(stdout);
	for (long k = 0; k < procs; k++) {
		close(wr[k]);
		close(rd[k]);
	}
	for (long k = 0; k < procs; k++)
		waitpid(kids[k], NULL, 0);
	free(kids);
	free(rd);
	free(wr);
	return ok == n ? 0 : 1; /* fewer than asked for by the limit: said in the report */
}

/* ------------------------------------------------------------------------
 * retained
 * ------------------------------------------------------------------------ */

static int run_retained(const struct opts *o)
{
	struct drv d;
	struct cl c;
	char id[64], topic[128];
	char *payload = malloc((size_t)o->size);

	if (!payload)
		die("out of memory");
	memset(payload, 'r', (size_t)o->size);
	drv_init(&d);
	snprintf(id, sizeof id, "mqr-%s", o->run);
	if (cl_start(&d, &c, 0, id, o->host, o->port, NULL, (int)o->window))
		die("cannot connect");
	if (drv_wait(&d, &c, 1, &d.connected, 1, 30))
		die("did not connect");
	struct proc_mem m0 = proc_mem(o->pid);
	double t0 = now_s();
	while (c.state != CL_DEAD && c.done < o->count) {
		int burst = may_send(c.sent, c.done, o) ? RAW_BATCH : 0;
		for (int k = 0; k < burst && c.sent < o->count && c.sent - c.done < o->window; k++) {
			snprintf(topic, sizeof topic, "mqr/%s/%ld", o->run, c.sent);
			int rc = mosquitto_publish(c.m, NULL, topic, (int)o->size, payload, 1, true);
			if (rc) {
				cl_fail(&c, "publish", mosquitto_strerror(rc));
				break;
			}
			c.sent++;
		}
		cl_arm(&c);
		drv_poll(&d, &c, 1, may_send(c.sent, c.done, o) ? 0 : 10);
	}
	double t1 = now_s();
	while (now_s() - t1 < 2)
		drv_poll(&d, &c, 1, 100);
	struct proc_mem m1 = proc_mem(o->pid);
	double secs = t1 - t0;
	printf("{\"broker\":\"%s\",\"scenario\":\"retained\",\"topics\":%ld,\"size\":%ld,"
	       "\"acked\":%ld,\"seconds\":%.3f,\"per_s\":%.0f,\"rss_before_kib\":%ld,"
	       "\"rss_after_kib\":%ld,\"anon_before_kib\":%ld,\"anon_after_kib\":%ld,"
	       "\"rss_bytes_per_topic\":%.0f,\"anon_bytes_per_topic\":%.0f}\n",
	       o->name, o->count, o->size, c.done, secs, c.done / secs, m0.rss_kib, m1.rss_kib,
	       m0.anon_kib, m1.anon_kib,
	       c.done ? (double)(m1.rss_kib - m0.rss_kib) * 1024 / (double)c.done : 0,
	       c.done ? (double)(m1.anon_kib - m0.anon_kib) * 1024 / (double)c.done : 0);
	fflush(stdout);
	if (c.state != CL_DEAD)
		mosquitto_disconnect(c.m);
	cl_close(&c);
	free(payload);
	return c.done == o->count ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct opts o;
	int rc;

	memset(&o, 0, sizeof o);
	opts_parse(&o, argc, argv);
	mosquitto_lib_init();
	if (!strcmp(o.mode, "throughput"))
		rc = o.raw ? run_throughput_raw(&o) : run_throughput(&o);
	else if (!strcmp(o.mode, "idle"))
		rc = run_idle(&o);
	else if (!strcmp(o.mode, "retained"))
		rc = run_retained(&o);
	else
		usage();
	mosquitto_lib_cleanup();
	return rc;
}
