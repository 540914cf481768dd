/*
 * deliver.c - a target's workers: each pops one delivery of the target's
 * queue (group = topic = %SYS%EB%T%<target>), sends it, and acknowledges it;
 * a failure makes it invisible for the retry policy's next delay; the last
 * attempt, or an event older than max_age, sends it to the dead letters.
 *
 * HTTP targets get a blocking HTTP/1.1 POST with a deadline on every step
 * (connect, write, read the answer), on a connection each worker keeps
 * (keep-alive) while the endpoint lets it.
 * Bus, topic and MQTT targets get a send to the core, waiting until stored.
 *
 * Threads: `concurrency` workers per target, stopped and joined when the
 * target is replaced or deleted, or the bridge stops. A worker waits on
 * the target's condition variable, woken by a broker watch on its queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "bridge/bridge_int.h"

#define STATUS_LINE_MAX 1024
#define ERR_MAX 200

/* A failed attempt: retry later, or give up at once (what cannot succeed). */
enum outcome { OK = 0, RETRY, GIVE_UP };

int64_t bridge__retry_delay(const struct retry *r, uint32_t attempt)
{
	int64_t d;

	if (r->strategy == RETRY_BACKOFF)
		return r->interval_ms;
	d = r->initial_ms;
	for (uint32_t i = 1; i < attempt && d < r->max_ms; i++)
		d *= 2;
	return d > r->max_ms ? r->max_ms : d;
}

/* ------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------ */

static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - cfx_clock_mono_ms();
		struct pollfd p = { fd, ev, 0 };
		int n;
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)CFX_MIN(left, 1000));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int dial(const struct target *t, int64_t deadline, char *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai, *a;
	char port[8];
	int fd = -1, rc;

	snprintf(port, sizeof port, "%d", t->port);
	rc = getaddrinfo(t->host, port, &hints, &ai);
	if (rc) {
		snprintf(err, ERR_MAX, "cannot resolve %.64s: %s", t->host, gai_strerror(rc));
		return -1;
	}
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0)) {
			int soerr = 0;
			socklen_t sl = sizeof soerr;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (!soerr) {
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				break;
			}
			errno = soerr;
		}
		snprintf(err, ERR_MAX, "cannot connect to %.64s:%d: %.80s", t->host, t->port,
			 strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0 && !err[0])
		snprintf(err, ERR_MAX, "cannot connect to %.64s:%d", t->host, t->port);
	return fd;
}

/* One delivery's connection: a socket, and TLS above it for https targets. */
struct wconn {
	int fd;
	SSL *ssl;
};

/* Waits for what TLS wants (WANT_READ / WANT_WRITE) before the deadline. */
static int tls_wait(struct wconn *wc, int r, int64_t deadline)
{
	int e = SSL_get_error(wc->ssl, r);

	if (e == SSL_ERROR_WANT_READ)
		return wait_fd(wc->fd, POLLIN, deadline);
	if (e == SSL_ERROR_WANT_WRITE)
		return wait_fd(wc->fd, POLLOUT, deadline);
	return e == SSL_ERROR_ZERO_RETURN ? -ECONNRESET : -EPROTO;
}

static int send_all(struct wconn *wc, const char *p, size_t n, int64_t deadline)
{
	int fd = wc->fd;

	while (n && wc->ssl) {
		int w = SSL_write(wc->ssl, p, (int)CFX_MIN(n, (size_t)INT32_MAX));
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		int rc = tls_wait(wc, w, deadline);
		if (rc)
			return rc;
	}
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN)
			return -errno;
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc)
			return rc;
	}
	return 0;
}

#define RESPONSE_HEAD_MAX 8192	     /* a longer response head is refused */
#define RESPONSE_BODY_KEEP_MAX (1u << 20) /* a longer body: read no further, close */

/* One read from the connection: > 0 bytes, 0 end of stream, or -errno. */
static ssize_t conn_read(struct wconn *wc, void *buf, size_t n, int64_t deadline)
{
	for (;;) {
		if (wc->ssl) {
			int k = SSL_read(wc->ssl, buf, (int)CFX_MIN(n, (size_t)INT32_MAX));
			if (k > 0)
				return k;
			if (SSL_get_error(wc->ssl, k) == SSL_ERROR_ZERO_RETURN)
				return 0;
			int rc = tls_wait(wc, k, deadline);
			if (rc)
				return rc;
			continue;
		}
		ssize_t r = recv(wc->fd, buf, n, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		int rc = wait_fd(wc->fd, POLLIN, deadline);
		if (rc)
			return rc;
	}
}

/* Whether the header block [p, p+n) has `name: value...` (case-insensitive); the value into out. */
static bool header_value(const char *p, size_t n, const char *name, char *out, size_t out_max)
{
	size_t nl = strlen(name);
	const char *end = p + n;

	for (const char *line = p; line < end;) {
		const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		if (!eol)
			eol = end;
		if ((size_t)(eol - line) > nl && !strncasecmp(line, name, nl) && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			size_t vl = CFX_MIN((size_t)(eol - v), out_max - 1);
			memcpy(out, v, vl);
			out[vl] = 0;
			return true;
		}
		line = eol + 2;
	}
	return false;
}

/*
 * Reads the response: the status code (or -errno), and whether the
 * connection may carry the next request (HTTP/1.1 without Connection:
 * close, a body delimited by Content-Length and read to its end).
 */
static int read_response(struct wconn *wc, int64_t deadline, bool *reusable)
{
	char buf[RESPONSE_HEAD_MAX + 1], v[64];
	size_t got = 0, head_len;
	char *end;
	int status;

	*reusable = false;
	for (;;) {
		ssize_t r = conn_read(wc, buf + got, RESPONSE_HEAD_MAX - got, deadline);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0)
			return (int)r;
		got += (size_t)r;
		buf[got] = 0;
		if ((end = strstr(buf, "\r\n\r\n")))
			break;
		if (got == RESPONSE_HEAD_MAX)
			return -EPROTO;
	}
	head_len = (size_t)(end + 4 - buf);
	if (sscanf(buf, "HTTP/1.%*d %3d", &status) != 1 || status < 100 || status > 999)
		return -EPROTO;
	int http11 = !strncmp(buf, "HTTP/1.1", 8);
	bool close_it = header_value(buf, head_len, "Connection", v, sizeof v) &&
			!strncasecmp(v, "close", 5);
	bool chunked = header_value(buf, head_len, "Transfer-Encoding", v, sizeof v);
	uint64_t body = 0;
	bool has_len = header_value(buf, head_len, "Content-Length", v, sizeof v);
	if (has_len) {
		char *e;
		body = strtoull(v, &e, 10);
		has_len = e != v && *e == 0;
	}
	if (status == 204 || status == 304) {
		has_len = true;
		body = 0;
	}
	if (!http11 || close_it || chunked || !has_len || body > RESPONSE_BODY_KEEP_MAX)
		return status; /* the connection goes after this answer */
	/* Read the rest of the body away so that the next answer starts clean. */
	uint64_t have = got - head_len;
	while (have < body) {
		char sink[4096];
		ssize_t r = conn_read(wc, sink, (size_t)CFX_MIN(sizeof sink, body - have), deadline);
		if (r <= 0)
			return status;
		have += (uint64_t)r;
	}
	*reusable = have == body;
	return status;
}

struct hdr_buf {
	char *p;
	size_t n, cap;
};

static void hb_add(struct hdr_buf *h, const char *a, size_t al, const char *b, size_t bl)
{
	if (h->n + al + bl + 4 > h->cap) {
		h->cap = CFX_MAX(2 * h->cap, h->n + al + bl + 1024);
		h->p = cfx_realloc(h->p, h->cap);
	}
	memcpy(h->p + h->n, a, al);
	h->n += al;
	memcpy(h->p + h->n, ": ", 2);
	h->n += 2;
	memcpy(h->p + h->n, b, bl);
	h->n += bl;
	memcpy(h->p + h->n, "\r\n", 2);
	h->n += 2;
}

static void hb_raw(struct hdr_buf *h, const void *p, size_t n)
{
	if (h->n + n > h->cap) {
		h->cap = CFX_MAX(2 * h->cap, h->n + n + 1024);
		h->p = cfx_realloc(h->p, h->cap);
	}
	memcpy(h->p + h->n, p, n);
	h->n += n;
}

static int emit_http(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	hb_add(ctx, name, nlen, value, vlen);
	return 0;
}

/*
 * TLS to an https target: SNI and the host name (or IP address) checked
 * against the certificate, trusted by the system's CAs or the target's
 * ca_file. -EPERM: the certificate is not trusted (retrying will not help).
 */
static int tls_connect(struct target *t, struct wconn *wc, int64_t deadline, char *err)
{
	struct in6_addr a6;
	struct in_addr a4;
	int r;

	wc->ssl = SSL_new(t->ssl_ctx);
	if (!wc->ssl) {
		snprintf(err, ERR_MAX, "TLS: out of memory");
		return -ENOMEM;
	}
	SSL_set_fd(wc->ssl, wc->fd);
	if (inet_pton(AF_INET, t->host, &a4) == 1 || inet_pton(AF_INET6, t->host, &a6) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(wc->ssl), t->host);
	} else {
		SSL_set_tlsext_host_name(wc->ssl, t->host);
		SSL_set1_host(wc->ssl, t->host);
	}
	while ((r = SSL_connect(wc->ssl)) != 1) {
		int e = SSL_get_error(wc->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			int rc = wait_fd(wc->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					 deadline);
			if (rc) {
				snprintf(err, ERR_MAX, "%.64s:%d: TLS handshake timed out", t->host,
					 t->port);
				return rc;
			}
			continue;
		}
		long v = SSL_get_verify_result(wc->ssl);
		if (v != X509_V_OK) {
			snprintf(err, ERR_MAX, "%.64s:%d: certificate not trusted: %.80s", t->host,
				 t->port, X509_verify_cert_error_string(v));
			return -EPERM;
		}
		snprintf(err, ERR_MAX, "%.64s:%d: TLS handshake failed", t->host, t->port);
		return -EPROTO;
	}
	return 0;
}

static void wconn_close(struct wconn *wc)
{
	if (wc->ssl) {
		SSL_shutdown(wc->ssl);
		SSL_free(wc->ssl);
		wc->ssl = NULL;
	}
	if (wc->fd >= 0)
		close(wc->fd);
	wc->fd = -1;
}

/* A fresh connection (and TLS); -EPERM: an untrusted certificate. */
static int wconn_open(struct target *t, struct wconn *wc, int64_t deadline, char *err)
{
	int rc;

	wc->ssl = NULL;
	wc->fd = dial(t, deadline, err);
	if (wc->fd < 0)
		return -ECONNREFUSED;
	if (t->ssl_ctx && (rc = tls_connect(t, wc, deadline, err))) {
		wconn_close(wc);
		return rc;
	}
	return 0;
}

/* Sends the request in one piece (small writes would wait on delayed ACKs);
 * returns 0 or -errno. */
static int send_request(struct target *t, struct wconn *wc, const char *head, const char *ct,
			const struct hdr_buf *h, const char *body, size_t len, int64_t deadline)
{
	struct hdr_buf req = { 0 };
	int rc;

	hb_raw(&req, head, strlen(head));
	if (ct) {
		hb_raw(&req, "Content-Type: ", 14);
		hb_raw(&req, ct, strlen(ct));
		hb_raw(&req, "\r\n", 2);
	}
	if (t->extra_headers)
		hb_raw(&req, t->extra_headers, strlen(t->extra_headers));
	if (h->n)
		hb_raw(&req, h->p, h->n);
	hb_raw(&req, "\r\n", 2);
	if (len)
		hb_raw(&req, body, len);
	rc = send_all(wc, req.p, req.n, deadline);
	cfx_free(req.p);
	return rc;
}

/*
 * One HTTP delivery on the worker's kept connection `wc` (fd -1: none):
 * HTTP/1.1 keep-alive, so a busy target is not one TCP (and TLS) handshake
 * per event. A kept connection the endpoint closed meanwhile fails at once;
 * the request then goes once more on a fresh connection.
 */
static enum outcome deliver_http(struct target *t, const struct cfx_ce *ce, struct wconn *wc,
				 char *err)
{
	int64_t deadline = cfx_clock_mono_ms() + t->timeout_ms;
	struct hdr_buf h = { 0 };
	const char *body, *ct;
	char *structured = NULL, head[2600];
	size_t len;
	int rc, status = 0;
	bool reusable = false;
	enum outcome out;

	if (t->structured) {
		structured = cfx_ce_to_structured(ce, &len);
		body = structured;
		ct = "application/cloudevents+json; charset=utf-8";
	} else {
		cfx_ce_emit_attrs(ce, CFX_CE_BINDING_HTTP, emit_http, &h);
		body = (const char *)ce->data;
		len = ce->has_data ? ce->data_len : 0;
		ct = cfx_ce_binary_content_type(ce);
	}
	snprintf(head, sizeof head,
		 "POST %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: conflux-eventbridge\r\n"
		 "Content-Length: %zu\r\n",
		 t->path, t->host, t->port, len);
	err[0] = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		int kept = wc->fd >= 0;
		if (!kept && (rc = wconn_open(t, wc, deadline, err))) {
			out = rc == -EPERM ? GIVE_UP : RETRY;
			goto done;
		}
		rc = send_request(t, wc, head, ct, &h, body, len, deadline);
		status = rc ? rc : read_response(wc, deadline, &reusable);
		if (!reusable)
			wconn_close(wc);
		/* A kept connection that was closed under us: once more, fresh. */
		if (kept && (status == -ECONNRESET || status == -EPIPE) && attempt == 0)
			continue;
		break;
	}
	if (status < 0) {
		snprintf(err, ERR_MAX, "%.64s:%d: %.80s", t->host, t->port,
			 status == -ETIMEDOUT ? "timed out" : strerror(-status));
		out = RETRY;
	} else if (status >= 200 && status <= 299) {
		out = OK;
	} else {
		snprintf(err, ERR_MAX, "%.64s:%d answered %d", t->host, t->port, status);
		/* A request the endpoint refuses as such will not succeed later. */
		out = status >= 400 && status <= 499 && status != 408 && status != 429 ? GIVE_UP
											: RETRY;
	}
done:
	cfx_free(structured);
	cfx_free(h.p);
	return out;
}

/* ------------------------------------------------------------------------
 * Bus, topic and MQTT targets: a send to the core
 * ------------------------------------------------------------------------ */

static enum outcome deliver_send(struct target *t, const struct cfx_msg_view *v, char *err)
{
	struct msg_builder mb;
	struct cfx_send_msg m = { 0 };
	size_t cursor = 0;
	struct cfx_prop p;
	const char *topic = t->type == T_MQTT ? t->b->mqtt_topic : t->dest;
	int rc;

	mb_init(&mb);
	while (cfx_msg_view_next_prop(v, &cursor, &p) == 1)
		if (!(p.name.len > 3 && !memcmp(p.name.p, "eb_", 3)))
			mb_add(&mb, (const char *)p.name.p, p.name.len, (const char *)p.value.p,
			       p.value.len);
	m.type = CFX_MSG_NORMAL;
	if (t->type == T_MQTT) {
		mb_add(&mb, "MQTT_TOPIC", 10, t->dest, strlen(t->dest));
		mb_add(&mb, "MQTT_QOS", 8, "1", 1);
		m.type = CFX_MSG_FIFO;
		m.group = CFX_VIEW_STR(t->dest);
	}
	mb_finish(&mb);
	m.m.props = mb.props;
	m.m.prop_count = mb.nprops;
	m.m.body = v->body;
	m.m.body_null = v->body_null;
	m.m.key_null = 1;
	m.m.born_ms = cfx_clock_wall_ms();
	rc = bridge__send_sync(t->b, CFX_VIEW_STR(topic), &m, 1);
	mb_free(&mb);
	if (rc) {
		snprintf(err, ERR_MAX, "cannot send to topic %.100s: %.60s", topic, cfx_strerror(rc));
		/* A topic that does not exist will not appear by retrying soon, but may later. */
		return RETRY;
	}
	return OK;
}

/* ------------------------------------------------------------------------
 * One delivery
 * ------------------------------------------------------------------------ */

/* The delivery, as it was, into the dead letters with why and how often. */
static void dead_letter(struct target *t, const struct cfx_popped *pm, const char *why)
{
	struct msg_builder mb;
	struct cfx_send_msg m = { 0 };
	size_t cursor = 0;
	struct cfx_prop p;
	char attempts[16];
	int rc;

	mb_init(&mb);
	while (cfx_msg_view_next_prop(&pm->v, &cursor, &p) == 1)
		mb_add(&mb, (const char *)p.name.p, p.name.len, (const char *)p.value.p, p.value.len);
	mb_add(&mb, PROP_ERROR, strlen(PROP_ERROR), why, strlen(why));
	snprintf(attempts, sizeof attempts, "%u", pm->attempt);
	mb_add(&mb, PROP_ATTEMPTS, strlen(PROP_ATTEMPTS), attempts, strlen(attempts));
	mb_finish(&mb);
	m.type = CFX_MSG_NORMAL;
	m.m.props = mb.props;
	m.m.prop_count = mb.nprops;
	m.m.body = pm->v.body;
	m.m.body_null = pm->v.body_null;
	m.m.key_null = 1;
	m.m.born_ms = cfx_clock_wall_ms();
	rc = bridge__send_sync(t->b, CFX_VIEW_STR(t->dlq), &m, 1);
	mb_free(&mb);
	if (rc) {
		/* Not acknowledged: it comes back and is dead-lettered again. */
		cfx_log_ratelimited(CFX_LOG_WARN, "eventbridge: target %s: cannot store a dead "
				    "letter in %s: %s", t->name, t->dlq, cfx_strerror(rc));
		return;
	}
	cfx_broker_ack(t->b->br, CFX_VIEW_STR(t->topic), CFX_VIEW_STR(t->topic), pm->handle);
	atomic_fetch_add(&t->dead, 1);
	cfx_log_ratelimited(CFX_LOG_INFO, "eventbridge: target %s: a delivery went to %s after "
			    "%u attempts: %s", t->name, t->dlq, pm->attempt, why);
}

static void handle(struct target *t, const struct cfx_popped *pm, struct wconn *wc)
{
	struct cfx_bridge *b = t->b;
	struct cfx_view tv = bridge__prop(&pm->v, PROP_TIME);
	char err[ERR_MAX + 1] = "", tbuf[24];
	int64_t born = 0;
	enum outcome out;

	if (tv.len && tv.len < sizeof tbuf) {
		memcpy(tbuf, tv.p, tv.len);
		tbuf[tv.len] = 0;
		born = strtoll(tbuf, NULL, 10);
	}
	if (born && cfx_clock_wall_ms() - born > t->retry.max_age_ms) {
		dead_letter(t, pm, "the event is older than the retry policy's max_age_ms");
		return;
	}
	if (t->type == T_HTTP) {
		struct cfx_ce ce;
		if (bridge__event_of_msg(&pm->v, &b->o.limits, &ce, err, sizeof err)) {
			char why[ERR_MAX + 32];
			snprintf(why, sizeof why, "not a CloudEvent: %s", err);
			dead_letter(t, pm, why);
			return;
		}
		out = deliver_http(t, &ce, wc, err);
		cfx_ce_free(&ce);
	} else {
		out = deliver_send(t, &pm->v, err);
	}
	if (out == OK) {
		cfx_broker_ack(b->br, CFX_VIEW_STR(t->topic), CFX_VIEW_STR(t->topic), pm->handle);
		atomic_fetch_add(&t->delivered, 1);
		return;
	}
	if (out == GIVE_UP || pm->attempt >= t->retry.max_attempts) {
		dead_letter(t, pm, err);
		return;
	}
	/* Later: invisible for the policy's delay, then the next attempt. */
	char nh[CFX_HANDLE_MAX];
	cfx_broker_change_invisible(b->br, CFX_VIEW_STR(t->topic), CFX_VIEW_STR(t->topic),
				    pm->handle, bridge__retry_delay(&t->retry, pm->attempt), nh);
	atomic_fetch_add(&t->retried, 1);
	cfx_log_ratelimited(CFX_LOG_INFO, "eventbridge: target %s: attempt %u failed (%s); "
			    "again in %" PRId64 " ms",
			    t->name, pm->attempt, err, bridge__retry_delay(&t->retry, pm->attempt));
}

/* ------------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------------ */

static void target_wake(void *arg)
{
	struct target *t = arg;

	pthread_mutex_lock(&t->mu);
	t->woken = 1;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

static void *worker_main(void *arg)
{
	struct target *t = arg;
	struct cfx_bridge *b = t->b;
	struct cfx_pop_req req = { 0 };
	struct cfx_pop_result res;
	struct wconn wc = { -1, NULL }; /* this worker's kept HTTP connection */

	req.group = CFX_VIEW_STR(t->topic);
	req.topic = CFX_VIEW_STR(t->topic);
	req.max_msgs = 1;
	/* Invisible while it is being delivered: longer than any attempt takes. */
	req.invisible_ms = (t->type == T_HTTP ? t->timeout_ms : 10000) + 30000;
	cfx_pop_result_init(&res);
	for (;;) {
		pthread_mutex_lock(&t->mu);
		int stop = t->stop;
		t->woken = 0;
		pthread_mutex_unlock(&t->mu);
		if (stop)
			break;
		if (cfx_broker_pop(b->br, &req, &res) == 0 && res.count) {
			handle(t, &res.msgs[0], &wc);
			continue;
		}
		/* Nothing now: wait for the queue (a watch), or a second. */
		uint64_t w = cfx_broker_watch(b->br, req.group, req.topic, target_wake, t);
		if (cfx_broker_pop(b->br, &req, &res) == 0 && res.count) {
			cfx_broker_unwatch(b->br, w);
			handle(t, &res.msgs[0], &wc);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_mutex_lock(&t->mu);
		while (!t->woken && !t->stop)
			if (pthread_cond_timedwait(&t->cv, &t->mu, &ts))
				break;
		pthread_mutex_unlock(&t->mu);
		cfx_broker_unwatch(b->br, w);
	}
	wconn_close(&wc);
	cfx_pop_result_free(&res);
	return NULL;
}

int bridge__target_start(struct cfx_bridge *b, struct target *t)
{
	struct cfx_group_info gi;
	struct cfx_topic_info ti;
	int rc;

	/* Its queue, its dead letters, and the group that works the queue:
	 * attempts are counted by this code, never by the core. */
	const char *topics[] = { t->topic, t->dlq };
	for (int i = 0; i < 2; i++) {
		rc = cfx_broker_topic_get(b->br, CFX_VIEW_STR(topics[i]), 0, &ti);
		if (rc == CFX_ENOENT)
			rc = cfx_broker_topic_create(b->br, topics[i], CFX_MSG_NORMAL, 1);
		if (rc && rc != CFX_EEXIST) {
			cfx_log_error("eventbridge: target %s: topic %s: %s", t->name, topics[i],
				      cfx_strerror(rc));
			return rc;
		}
	}
	rc = cfx_broker_group_get(b->br, CFX_VIEW_STR(t->topic), 0, &gi);
	if (rc == CFX_ENOENT) {
		memset(&gi, 0, sizeof gi);
		snprintf(gi.name, sizeof gi.name, "%s", t->topic);
		cfx_retry_policy_default(&gi.retry);
		gi.retry.max_attempts = INT32_MAX;
		gi.created_ms = cfx_clock_wall_ms();
		rc = cfx_broker_group_create(b->br, &gi);
		if (rc == CFX_EEXIST)
			rc = 0;
		if (!rc) /* from the start of the queue: nothing queued is skipped */
			cfx_broker_group_reset(b->br, CFX_VIEW_STR(t->topic), CFX_VIEW_STR(t->topic),
					       0, 0);
	}
	if (rc) {
		cfx_log_error("eventbridge: target %s: group: %s", t->name, cfx_strerror(rc));
		return rc;
	}
	t->threads = cfx_calloc(t->concurrency, sizeof *t->threads);
	for (uint32_t i = 0; i < t->concurrency; i++) {
		if (pthread_create(&t->threads[i], NULL, worker_main, t))
			break;
		t->nthreads++;
	}
	return t->nthreads ? 0 : CFX_ESYS;
}

void bridge__target_stop(struct target *t)
{
	pthread_mutex_lock(&t->mu);
	t->stop = 1;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	for (uint32_t i = 0; i < t->nthreads; i++)
		pthread_join(t->threads[i], NULL);
	t->nthreads = 0;
}
