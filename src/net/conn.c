/*
 * conn.c - connections, the TCP transport, listeners and the server's
 * threads.
 *
 * Each loop has its own listening socket per listener (SO_REUSEPORT), so
 * the kernel spreads new connections over the loops and a connection lives
 * on the loop that accepted it. A spare descriptor per listener keeps
 * accept() from spinning when the process runs out of descriptors: it is
 * closed, the pending connection accepted and closed at once, and the
 * spare reopened (libuv's trick).
 *
 * Memory connections (the end of this file) have no socket: their owner
 * feeds them bytes and takes what the protocol wrote, so tests and fuzzers
 * drive a protocol in-process, with the same write, close and defer rules.
 */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "net/tls.h"
#include "net/ws.h"

#define CHUNK_BYTES 16384
#define READ_BYTES 65536

struct out_chunk {
	struct out_chunk *next;
	size_t len;  /* bytes in data */
	size_t off;  /* bytes already sent */
	size_t cap;
	const uint8_t *ext;	    /* bytes owned elsewhere (cfx_conn_write_ref), or NULL */
	void (*release)(void *arg); /* called when ext's bytes are no longer needed */
	void *arg;
	uint8_t data[];
};

static inline const uint8_t *chunk_bytes(const struct out_chunk *ch)
{
	return ch->ext ? ch->ext : ch->data;
}

static void chunk_free(struct out_chunk *ch)
{
	if (ch->release)
		ch->release(ch->arg);
	cfx_free(ch);
}

/* What the listeners of one name share across loops. */
struct lsn_shared {
	struct cfx_listener_opts o;
	char *name, *addr;
	atomic_uint_fast64_t accepted, refused, open;
};

struct cfx_listener {
	struct cfx_io io;
	struct lsn_shared *sh;
	struct cfx_server *srv;
	int loop_idx;
	int spare_fd;
};

struct loop_state {
	struct cfx_server *srv;
	struct cfx_loop *loop;
	pthread_t thread;
	struct cfx_conn *conns; /* list of open connections */
	uint32_t nconns;
	char name[16];
};

struct cfx_server {
	int nloops;
	struct loop_state *loops;
	struct cfx_listener **lsn; /* nlsn * nloops */
	struct lsn_shared **shared;
	int nlsn;
	int started;
};

static atomic_uint_fast64_t next_conn_id = 1;

/* ------------------------------------------------------------------------
 * TCP transport
 * ------------------------------------------------------------------------ */

static ssize_t tcp_read(struct cfx_conn *c, void *buf, size_t n)
{
	ssize_t r;
	do
		r = read(c->io.fd, buf, n);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r;
}

static ssize_t tcp_writev(struct cfx_conn *c, const struct iovec *iov, int n)
{
	ssize_t w;
	do
		w = writev(c->io.fd, iov, n);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return w;
}

static int tcp_pending(struct cfx_conn *c)
{
	CFX_UNUSED(c);
	return 0;
}

static void tcp_free(struct cfx_conn *c)
{
	CFX_UNUSED(c);
}

static const struct cfx_conn_ops tcp_ops = {
	.read = tcp_read,
	.writev = tcp_writev,
	.pending = tcp_pending,
	.free = tcp_free,
};

static const struct cfx_conn_ops mem_ops;
static void mem_conn_free(struct cfx_conn *c);

static int conn_is_memory(const struct cfx_conn *c)
{
	return c->ops == &mem_ops;
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

static struct loop_state *state_of(struct cfx_conn *c)
{
	return &c->listener->srv->loops[c->listener->loop_idx];
}

static void conn_update_io(struct cfx_conn *c)
{
	unsigned ev = 0;

	if (c->closing || conn_is_memory(c))
		return;
	if (!c->read_paused)
		ev |= CFX_IO_READ;
	if (c->out_bytes || c->ops->pending(c))
		ev |= CFX_IO_WRITE;
	cfx_io_modify(c->loop, &c->io, ev);
}

static void conn_free(void *arg)
{
	struct cfx_conn *c = arg;
	struct loop_state *ls;

	if (conn_is_memory(c)) {
		mem_conn_free(c);
		return;
	}
	ls = state_of(c);

	/* Best effort: what the protocol queued last (a GOAWAY, trailers) goes
	 * out if the socket takes it now; the close does not wait for it. */
	for (int i = 0; i < 8 && c->out_head; i++) {
		struct iovec iov[16];
		int n = 0;
		for (struct out_chunk *ch = c->out_head; ch && n < 16; ch = ch->next, n++) {
			iov[n].iov_base = (void *)(chunk_bytes(ch) + ch->off);
			iov[n].iov_len = ch->len - ch->off;
		}
		ssize_t w = c->ops->writev(c, iov, n);
		if (w <= 0)
			break;
		while (w > 0 && c->out_head) {
			struct out_chunk *ch = c->out_head;
			size_t left = ch->len - ch->off;
			if ((size_t)w < left) {
				ch->off += (size_t)w;
				w = 0;
			} else {
				w -= (ssize_t)left;
				c->out_head = ch->next;
				chunk_free(ch);
			}
		}
	}

	if (c->proto->on_close)
		c->proto->on_close(c);
	if (c->handle) {
		c->handle->conn = NULL; /* completions in flight find it gone */
		if (c->handle->refs == 0)
			cfx_free(c->handle);
	}
	cfx_timer_stop(c->loop, &c->idle_timer);
	cfx_io_stop(c->loop, &c->io);
	/* Input the protocol never read makes close() send a reset, which can
	 * destroy the last answer before the peer reads it (a refused request
	 * followed by more bytes): read what has arrived, then close. */
	for (int i = 0; i < 16; i++) {
		char sink[4096];
		if (recv(c->io.fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
			break;
	}
	close(c->io.fd);
	c->ops->free(c);
	while (c->out_head) {
		struct out_chunk *ch = c->out_head;
		c->out_head = ch->next;
		chunk_free(ch);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		ls->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ls->nconns--;
	atomic_fetch_sub(&c->listener->sh->open, 1);
	cfx_log_debug(CFX_LOGC_NET, "net: %s connection %s closed (%s)", c->listener->sh->name,
		      c->peer, c->close_why ? c->close_why : "done");
	cfx_free(c);
}

void cfx_conn_close(struct cfx_conn *c, const char *why)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->close_why = why;
	if (!conn_is_memory(c))
		cfx_io_modify(c->loop, &c->io, 0);
	cfx_loop_defer(c->loop, conn_free, c);
}

static int conn_flush(struct cfx_conn *c)
{
	struct iovec iov[16];

	while (c->out_head || c->ops->pending(c)) {
		int n = 0;
		for (struct out_chunk *ch = c->out_head; ch && n < 16; ch = ch->next, n++) {
			iov[n].iov_base = (void *)(chunk_bytes(ch) + ch->off);
			iov[n].iov_len = ch->len - ch->off;
		}
		ssize_t w = c->ops->writev(c, iov, n);
		if (w == -EAGAIN)
			break;
		if (w < 0) {
			cfx_conn_close(c, "write failed");
			return -1;
		}
		c->out_bytes -= (size_t)w;
		while (w > 0 && c->out_head) {
			struct out_chunk *ch = c->out_head;
			size_t left = ch->len - ch->off;
			if ((size_t)w < left) {
				ch->off += (size_t)w;
				w = 0;
			} else {
				w -= (ssize_t)left;
				c->out_head = ch->next;
				if (!c->out_head)
					c->out_tail = NULL;
				chunk_free(ch);
			}
		}
		if (n == 0 && !c->ops->pending(c))
			break;
	}
	/* Back-pressure: stop reading while too much waits to be sent. */
	size_t high = c->listener->sh->o.output_bytes_max;
	if (!c->read_paused && c->out_bytes > high) {
		c->read_paused = 1;
	} else if (c->read_paused && c->out_bytes <= high / 4) {
		c->read_paused = 0;
		if (c->proto->on_drain)
			c->proto->on_drain(c);
	} else if (c->out_bytes <= high / 4 && c->proto->on_drain && !c->closing) {
		c->proto->on_drain(c);
	}
	conn_update_io(c);
	return 0;
}

static void flush_task(void *arg)
{
	struct cfx_conn *c = arg;

	c->flush_scheduled = 0;
	if (!c->closing)
		conn_flush(c);
}

void cfx_conn_write(struct cfx_conn *c, const void *p, size_t n)
{
	const uint8_t *src = p;

	if (c->closing || n == 0)
		return;
	while (n) {
		struct out_chunk *ch = c->out_tail;
		if (!ch || ch->len == ch->cap) {
			size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
			ch = cfx_malloc(sizeof *ch + cap);
			*ch = (struct out_chunk){ .cap = cap };
			if (c->out_tail)
				c->out_tail->next = ch;
			else
				c->out_head = ch;
			c->out_tail = ch;
		}
		size_t k = CFX_MIN(n, ch->cap - ch->len);
		memcpy(ch->data + ch->len, src, k);
		ch->len += k;
		src += k;
		n -= k;
		c->out_bytes += k;
	}
	if (!c->flush_scheduled) {
		c->flush_scheduled = 1;
		cfx_loop_defer(c->loop, flush_task, c);
	}
}

void cfx_conn_write_ref(struct cfx_conn *c, const void *p, size_t n, void (*release)(void *arg),
			void *arg)
{
	struct out_chunk *ch;

	if (c->closing || n == 0) {
		if (release)
			release(arg);
		return;
	}
	ch = cfx_malloc(sizeof *ch);
	*ch = (struct out_chunk){ .len = n, .cap = n, .ext = p, .release = release, .arg = arg };
	if (c->out_tail)
		c->out_tail->next = ch;
	else
		c->out_head = ch;
	c->out_tail = ch;
	c->out_bytes += n;
	if (!c->flush_scheduled) {
		c->flush_scheduled = 1;
		cfx_loop_defer(c->loop, flush_task, c);
	}
}

int cfx_conn_is_writable(const struct cfx_conn *c)
{
	return !c->closing && c->out_bytes < c->listener->sh->o.output_bytes_max;
}

struct cfx_conn_handle *cfx_conn_handle_get(struct cfx_conn *c)
{
	if (!c->handle) {
		c->handle = cfx_calloc(1, sizeof *c->handle);
		c->handle->conn = c;
	}
	c->handle->refs++;
	return c->handle;
}

void cfx_conn_handle_put(struct cfx_conn_handle *h)
{
	if (--h->refs == 0 && !h->conn)
		cfx_free(h);
}

static void conn_io_cb(struct cfx_loop *loop, struct cfx_io *io, unsigned events)
{
	struct cfx_conn *c = io->data;
	uint8_t buf[READ_BYTES];

	CFX_UNUSED(loop);
	if (c->closing)
		return;
	if (events & CFX_IO_WRITE)
		if (conn_flush(c))
			return;
	if ((events & CFX_IO_READ) && !c->read_paused) {
		ssize_t r = c->ops->read(c, buf, sizeof buf);
		if (r == 0) {
			cfx_conn_close(c, "peer closed");
			return;
		}
		if (r < 0 && r != -EAGAIN) {
			cfx_conn_close(c, "read failed");
			return;
		}
		if (r > 0) {
			c->last_active_ms = cfx_loop_now_ms(c->loop);
			if (c->proto->on_read(c, buf, (size_t)r)) {
				cfx_conn_close(c, "protocol error");
				return;
			}
		}
	} else if (events & CFX_IO_ERROR) {
		cfx_conn_close(c, "socket error");
		return;
	}
	/* A TLS handshake may want to write although nothing is queued. */
	if (c->ops->pending(c))
		conn_update_io(c);
}

static void idle_cb(struct cfx_loop *loop, struct cfx_timer *t)
{
	struct cfx_conn *c = t->data;
	int64_t idle = c->listener->sh->o.idle_ms, quiet = cfx_loop_now_ms(loop) - c->last_active_ms;

	if (c->closing)
		return;
	if (quiet >= idle && !(c->proto->is_busy && c->proto->is_busy(c))) {
		cfx_conn_close(c, "idle");
		return;
	}
	cfx_timer_start(loop, t, quiet >= idle ? idle : idle - quiet, idle_cb, c);
}

/* ------------------------------------------------------------------------
 * Accepting
 * ------------------------------------------------------------------------ */

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
		port = ntohs(a->sin_port);
		snprintf(out, len, "%s:%d", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
		port = ntohs(a->sin6_port);
		snprintf(out, len, "[%s]:%d", host, port);
	} else {
		snprintf(out, len, "unix");
	}
}

static void accept_one(struct cfx_listener *l, int fd, const struct sockaddr_storage *ss)
{
	struct loop_state *ls = &l->srv->loops[l->loop_idx];
	struct lsn_shared *sh = l->sh;
	struct cfx_conn *c;
	int one = 1;

	if (sh->o.conn_max && atomic_load(&sh->open) >= sh->o.conn_max) {
		atomic_fetch_add(&sh->refused, 1);
		cfx_log_ratelimited(CFX_LOG_WARN, "net: %s: connection limit %u reached; refusing",
				    sh->name, sh->o.conn_max);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c = cfx_calloc(1, sizeof *c);
	c->io.fd = fd;
	c->io.cb = conn_io_cb;
	c->io.data = c;
	c->loop = ls->loop;
	c->listener = l;
	c->ops = &tcp_ops;
	c->proto = sh->o.proto;
	c->id = atomic_fetch_add(&next_conn_id, 1);
	c->last_active_ms = cfx_loop_now_ms(ls->loop);
	format_peer(ss, c->peer, sizeof c->peer);
	c->next = ls->conns;
	if (ls->conns)
		ls->conns->prev = c;
	ls->conns = c;
	ls->nconns++;
	atomic_fetch_add(&sh->open, 1);
	atomic_fetch_add(&sh->accepted, 1);
	if (cfx_io_start(ls->loop, &c->io, CFX_IO_READ)) {
		cfx_conn_close(c, "cannot watch socket");
		return;
	}
	if (sh->o.tls && cfx_tls_attach(sh->o.tls, c)) {
		cfx_conn_close(c, "TLS setup failed");
		return;
	}
	if (sh->o.ws && cfx_ws_attach(sh->o.ws, c)) {
		cfx_conn_close(c, "WebSocket setup failed");
		return;
	}
	if (c->proto->on_open && c->proto->on_open(c)) {
		cfx_conn_close(c, "protocol refused");
		return;
	}
	if (sh->o.idle_ms > 0)
		cfx_timer_start(ls->loop, &c->idle_timer, sh->o.idle_ms, idle_cb, c);
	cfx_log_debug(CFX_LOGC_NET, "net: %s connection from %s on %s", sh->name, c->peer,
		      cfx_loop_name(ls->loop));
}

static void accept_cb(struct cfx_loop *loop, struct cfx_io *io, unsigned events)
{
	struct cfx_listener *l = io->data;

	CFX_UNUSED(loop);
	CFX_UNUSED(events);
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(l->io.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			accept_one(l, fd, &ss);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && l->spare_fd >= 0) {
			/* Out of descriptors: refuse one connection with the spare. */
			close(l->spare_fd);
			l->spare_fd = -1;
			fd = accept(l->io.fd, NULL, NULL);
			if (fd >= 0)
				close(fd);
			l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			atomic_fetch_add(&l->sh->refused, 1);
			cfx_log_ratelimited(CFX_LOG_WARN, "net: %s: out of file descriptors; "
					    "refusing connections", l->sh->name);
			continue;
		}
		break; /* EAGAIN or an error worth no spin */
	}
}

/* ------------------------------------------------------------------------
 * Addresses
 * ------------------------------------------------------------------------ */

int cfx_parse_hostport(const char *s, char *host, size_t host_len, int *port)
{
	const char *colon;
	char *end;
	long p;
	size_t hl;

	if (s[0] == '[') {
		const char *close_br = strchr(s, ']');
		if (!close_br || close_br[1] != ':')
			return CFX_EINVAL;
		hl = (size_t)(close_br - s - 1);
		if (hl >= host_len)
			return CFX_EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		colon = close_br + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return CFX_EINVAL;
		hl = (size_t)(colon - s);
		if (hl >= host_len)
			return CFX_EINVAL;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 0 || p > 65535)
		return CFX_EINVAL;
	*port = (int)p;
	return 0;
}

static int bind_socket(const char *host, int port, int *out_fd, int *bound_port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char portstr[16];
	int fd = -1, one = 1, rc;

	snprintf(portstr, sizeof portstr, "%d", port);
	rc = getaddrinfo(*host ? host : NULL, portstr, &hints, &res);
	if (rc != 0)
		return CFX_EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto sys_err;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0)
		goto sys_err;
	if (bound_port) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		*bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	freeaddrinfo(res);
	*out_fd = fd;
	return 0;
sys_err:
	rc = cfx_err_from_errno(errno);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return rc;
}

/* ------------------------------------------------------------------------
 * The server
 * ------------------------------------------------------------------------ */

int cfx_server_new(struct cfx_server **out, int nloops)
{
	struct cfx_server *srv = cfx_calloc(1, sizeof *srv);
	int rc = 0;

	if (nloops < 1)
		nloops = 1;
	srv->nloops = nloops;
	srv->loops = cfx_calloc((size_t)nloops, sizeof *srv->loops);
	for (int i = 0; i < nloops && !rc; i++) {
		snprintf(srv->loops[i].name, sizeof srv->loops[i].name, "net-%d", i);
		srv->loops[i].srv = srv;
		rc = cfx_loop_new(&srv->loops[i].loop, srv->loops[i].name);
	}
	if (rc) {
		cfx_server_free(srv);
		return rc;
	}
	*out = srv;
	return 0;
}

int cfx_server_listen(struct cfx_server *srv, const struct cfx_listener_opts *o, int *bound_port)
{
	char host[256];
	int port, rc, got = 0;
	struct lsn_shared *sh;

	rc = cfx_parse_hostport(o->addr, host, sizeof host, &port);
	if (rc) {
		cfx_log_error("net: %s: bad listen address \"%s\" (expected host:port)", o->name,
			      o->addr);
		return rc;
	}
	sh = cfx_calloc(1, sizeof *sh);
	sh->o = *o;
	sh->name = cfx_strdup(o->name);
	sh->addr = cfx_strdup(o->addr);
	sh->o.name = sh->name;
	sh->o.addr = sh->addr;
	if (!sh->o.output_bytes_max)
		sh->o.output_bytes_max = 4u << 20;
	srv->shared = cfx_realloc(srv->shared, (size_t)(srv->nlsn + 1) * sizeof *srv->shared);
	srv->shared[srv->nlsn] = sh;
	srv->lsn = cfx_realloc(srv->lsn, (size_t)(srv->nlsn + 1) * (size_t)srv->nloops * sizeof *srv->lsn);
	for (int i = 0; i < srv->nloops; i++) {
		struct cfx_listener *l = cfx_calloc(1, sizeof *l);
		int fd = -1;

		/* Port 0: the first socket picks the port, the others share it. */
		rc = bind_socket(host, got ? got : port, &fd, i == 0 ? &got : NULL);
		if (rc) {
			cfx_log_error("net: %s: cannot listen on %s: %s", o->name, o->addr,
				      cfx_strerror(rc));
			cfx_free(l);
			srv->lsn[srv->nlsn * srv->nloops + i] = NULL;
			for (int j = i + 1; j < srv->nloops; j++)
				srv->lsn[srv->nlsn * srv->nloops + j] = NULL;
			srv->nlsn++;
			return rc;
		}
		l->io.fd = fd;
		l->io.cb = accept_cb;
		l->io.data = l;
		l->sh = sh;
		l->srv = srv;
		l->loop_idx = i;
		l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		srv->lsn[srv->nlsn * srv->nloops + i] = l;
		cfx_io_start(srv->loops[i].loop, &l->io, CFX_IO_READ);
	}
	srv->nlsn++;
	if (bound_port)
		*bound_port = got;
	cfx_log_info("net: %s listening on %s%s%s", o->name, o->addr, o->tls ? " (TLS)" : "",
		     o->ws ? " (WebSocket)" : "");
	return 0;
}

static void *loop_thread(void *arg)
{
	struct loop_state *ls = arg;
	cfx_loop_run(ls->loop);
	return NULL;
}

int cfx_server_start(struct cfx_server *srv)
{
	for (int i = 0; i < srv->nloops; i++) {
		char name[16];

		pthread_create(&srv->loops[i].thread, NULL, loop_thread, &srv->loops[i]);
		snprintf(name, sizeof name, "cfx-net%d", i & 0xffff);
		pthread_setname_np(srv->loops[i].thread, name);
	}
	srv->started = 1;
	return 0;
}

/* On each loop: stop accepting and ask every connection to finish. */
static void shutdown_task(void *arg)
{
	struct loop_state *ls = arg;
	struct cfx_server *srv = ls->srv;
	int idx = (int)(ls - srv->loops);

	for (int j = 0; j < srv->nlsn; j++) {
		struct cfx_listener *l = srv->lsn[j * srv->nloops + idx];
		if (l && l->io.fd >= 0) {
			cfx_io_stop(ls->loop, &l->io);
			close(l->io.fd);
			l->io.fd = -1;
		}
	}
	for (struct cfx_conn *c = ls->conns; c; c = c->next) {
		c->shutting_down = 1;
		if (c->proto->on_shutdown)
			c->proto->on_shutdown(c);
		else
			cfx_conn_close(c, "server shutting down");
	}
}

struct count_req {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;
	uint32_t open;
};

static void count_task(void *arg)
{
	struct count_req *r = ((void **)arg)[0];
	struct loop_state *ls = ((void **)arg)[1];

	pthread_mutex_lock(&r->mu);
	r->open += ls->nconns;
	r->pending--;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void close_all_task(void *arg)
{
	struct loop_state *ls = arg;
	for (struct cfx_conn *c = ls->conns; c; c = c->next)
		cfx_conn_close(c, "server stopped");
}

void cfx_server_stop(struct cfx_server *srv, int64_t drain_ms)
{
	if (!srv->started)
		return;
	for (int i = 0; i < srv->nloops; i++)
		cfx_loop_post(srv->loops[i].loop, shutdown_task, &srv->loops[i]);
	/* Wait for the connections to finish, polling every 20 ms. */
	for (int64_t waited = 0; waited <= drain_ms; waited += 20) {
		struct count_req r = { .mu = PTHREAD_MUTEX_INITIALIZER,
				       .cv = PTHREAD_COND_INITIALIZER,
				       .pending = srv->nloops };
		void **args = cfx_calloc((size_t)srv->nloops * 2, sizeof *args);
		for (int i = 0; i < srv->nloops; i++) {
			args[2 * i] = &r;
			args[2 * i + 1] = &srv->loops[i];
			cfx_loop_post(srv->loops[i].loop, count_task, &args[2 * i]);
		}
		pthread_mutex_lock(&r.mu);
		while (r.pending)
			pthread_cond_wait(&r.cv, &r.mu);
		pthread_mutex_unlock(&r.mu);
		cfx_free(args);
		if (r.open == 0)
			break;
		usleep(20000);
	}
	for (int i = 0; i < srv->nloops; i++) {
		cfx_loop_post(srv->loops[i].loop, close_all_task, &srv->loops[i]);
		cfx_loop_stop(srv->loops[i].loop);
	}
	for (int i = 0; i < srv->nloops; i++)
		pthread_join(srv->loops[i].thread, NULL);
	srv->started = 0;
}

void cfx_server_free(struct cfx_server *srv)
{
	if (!srv)
		return;
	for (int j = 0; j < srv->nlsn; j++) {
		for (int i = 0; i < srv->nloops; i++) {
			struct cfx_listener *l = srv->lsn[j * srv->nloops + i];
			if (!l)
				continue;
			if (l->io.fd >= 0)
				close(l->io.fd);
			if (l->spare_fd >= 0)
				close(l->spare_fd);
			cfx_free(l);
		}
		cfx_free(srv->shared[j]->name);
		cfx_free(srv->shared[j]->addr);
		cfx_free(srv->shared[j]);
	}
	cfx_free(srv->lsn);
	cfx_free(srv->shared);
	for (int i = 0; i < srv->nloops; i++) {
		/* Connections still open (never started or not drained) go now. */
		struct loop_state *ls = &srv->loops[i];
		while (ls->conns) {
			struct cfx_conn *c = ls->conns;
			ls->conns = c->next;
			if (c->proto->on_close)
				c->proto->on_close(c);
			if (c->handle) {
				c->handle->conn = NULL;
				if (c->handle->refs == 0)
					cfx_free(c->handle);
			}
			close(c->io.fd);
			c->ops->free(c);
			while (c->out_head) {
				struct out_chunk *ch = c->out_head;
				c->out_head = ch->next;
				chunk_free(ch);
			}
			cfx_free(c);
		}
		cfx_loop_free(ls->loop);
	}
	cfx_free(srv->loops);
	cfx_free(srv);
}

int cfx_server_loop_count(const struct cfx_server *srv)
{
	return srv->nloops;
}

struct cfx_loop *cfx_server_loop(struct cfx_server *srv, int i)
{
	return srv->loops[i].loop;
}

void *cfx_listener_proto_arg(const struct cfx_listener *l)
{
	return l->sh->o.proto_arg;
}

const char *cfx_listener_name(const struct cfx_listener *l)
{
	return l->sh->name;
}

void cfx_server_listener_stats(struct cfx_server *srv, const char *name,
			       struct cfx_listener_stats *st)
{
	memset(st, 0, sizeof *st);
	for (int j = 0; j < srv->nlsn; j++) {
		struct lsn_shared *sh = srv->shared[j];
		if (strcmp(sh->name, name) != 0)
			continue;
		st->accepted = atomic_load(&sh->accepted);
		st->refused = atomic_load(&sh->refused);
		st->open = atomic_load(&sh->open);
	}
}

/* ------------------------------------------------------------------------
 * Memory connections
 *
 * No socket and no server: the owner feeds input with cfx_conn_feed and
 * takes output with cfx_conn_take_output, and drives the loop itself with
 * cfx_loop_run_pending. Everything else is the socket path's: output is
 * queued in chunks and flushed by deferred work (into the transport's
 * buffer, which always takes all of it), and a close only marks the
 * connection and defers the teardown.
 *
 * Lifetime, with `torn_down` (on_close ran) and `owner_gone`
 * (cfx_conn_free_memory ran):
 *
 *   open --cfx_conn_close--> closing --deferred conn_free--> torn down
 *     |                         |                               |
 *     +---- cfx_conn_free_memory: tears down now if needed -----+
 *                               |
 *            freed at once, or by the deferred conn_free when one is
 *            queued (a close, or a flush that still holds the pointer)
 *
 * The struct outlives the teardown until the owner frees it, so the owner
 * may still take the last output (a GOAWAY) and see that it was closed.
 * ------------------------------------------------------------------------ */

#define MEM_OUTPUT_BYTES_MAX (16u << 10) /* small, so that tests meet back-pressure */

struct mem_conn {
	struct cfx_conn c;	 /* first: a struct cfx_conn * is a struct mem_conn * */
	struct cfx_listener l;	 /* private to this connection */
	struct lsn_shared sh;
	struct cfx_writer out;	 /* flushed output not taken yet */
	int torn_down;		 /* on_close ran; the protocol is gone */
	int owner_gone;		 /* cfx_conn_free_memory ran */
	char name[8];		 /* "memory": listener name and address */
};

static struct mem_conn *mem_of(struct cfx_conn *c)
{
	CFX_ASSERT(conn_is_memory(c));
	return (struct mem_conn *)c;
}

static ssize_t mem_read(struct cfx_conn *c, void *buf, size_t n)
{
	CFX_UNUSED(c);
	CFX_UNUSED(buf);
	CFX_UNUSED(n);
	return -EAGAIN; /* input arrives through cfx_conn_feed only */
}

static ssize_t mem_writev(struct cfx_conn *c, const struct iovec *iov, int n)
{
	struct mem_conn *mc = mem_of(c);
	size_t total = 0;

	for (int i = 0; i < n; i++) {
		cfx_write_bytes(&mc->out, iov[i].iov_base, iov[i].iov_len);
		total += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static int mem_pending(struct cfx_conn *c)
{
	CFX_UNUSED(c);
	return 0;
}

static void mem_free_transport(struct cfx_conn *c)
{
	CFX_UNUSED(c); /* the buffer lives until the owner frees the connection */
}

static const struct cfx_conn_ops mem_ops = {
	.read = mem_read,
	.writev = mem_writev,
	.pending = mem_pending,
	.free = mem_free_transport,
};

/* Moves what is still queued into the transport's buffer (a socket would send it). */
static void mem_move_queued(struct cfx_conn *c)
{
	struct mem_conn *mc = mem_of(c);

	while (c->out_head) {
		struct out_chunk *ch = c->out_head;
		cfx_write_bytes(&mc->out, chunk_bytes(ch) + ch->off, ch->len - ch->off);
		c->out_head = ch->next;
		chunk_free(ch);
	}
	c->out_tail = NULL;
	c->out_bytes = 0;
}

/* What conn_free does for a socket, minus the socket: the protocol lets go. */
static void mem_teardown(struct cfx_conn *c)
{
	struct mem_conn *mc = mem_of(c);

	CFX_ASSERT(c->closing && !mc->torn_down);
	mem_move_queued(c);
	mc->torn_down = 1;
	if (c->proto->on_close)
		c->proto->on_close(c);
	if (c->handle) {
		c->handle->conn = NULL; /* completions in flight find it gone */
		if (c->handle->refs == 0)
			cfx_free(c->handle);
		c->handle = NULL;
	}
	cfx_timer_stop(c->loop, &c->idle_timer);
	c->ops->free(c);
	cfx_log_debug(CFX_LOGC_NET, "net: memory connection %llu closed (%s)",
		      (unsigned long long)c->id, c->close_why ? c->close_why : "done");
}

static void mem_destroy(struct cfx_conn *c)
{
	struct mem_conn *mc = mem_of(c);

	CFX_ASSERT(mc->torn_down && !c->out_head && !c->handle);
	cfx_writer_free(&mc->out);
	cfx_free(mc);
}

/* The deferred conn_free of a memory connection. */
static void mem_conn_free(struct cfx_conn *c)
{
	struct mem_conn *mc = mem_of(c);

	if (!mc->torn_down)
		mem_teardown(c);
	if (mc->owner_gone)
		mem_destroy(c);
}

struct cfx_conn *cfx_conn_new_memory(struct cfx_loop *loop, const struct cfx_conn_proto *proto,
				     void *proto_arg)
{
	struct mem_conn *mc = cfx_calloc(1, sizeof *mc);
	struct cfx_conn *c = &mc->c;

	snprintf(mc->name, sizeof mc->name, "memory");
	mc->sh.name = mc->sh.addr = mc->name;
	mc->sh.o.name = mc->sh.o.addr = mc->name;
	mc->sh.o.proto = proto;
	mc->sh.o.proto_arg = proto_arg;
	mc->sh.o.output_bytes_max = MEM_OUTPUT_BYTES_MAX;
	atomic_init(&mc->sh.accepted, 1);
	atomic_init(&mc->sh.refused, 0);
	atomic_init(&mc->sh.open, 1);
	mc->l.io.fd = -1;
	mc->l.sh = &mc->sh;
	mc->l.spare_fd = -1;

	c->io.fd = -1;
	c->io.data = c;
	c->loop = loop;
	c->listener = &mc->l;
	c->ops = &mem_ops;
	c->proto = proto;
	c->id = atomic_fetch_add(&next_conn_id, 1);
	c->last_active_ms = cfx_loop_now_ms(loop);
	snprintf(c->peer, sizeof c->peer, "memory:%llu", (unsigned long long)c->id);
	if (proto->on_open && proto->on_open(c))
		cfx_conn_close(c, "protocol refused");
	return c;
}

int cfx_conn_feed(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	CFX_ASSERT(conn_is_memory(c));
	if (c->closing)
		return 1;
	if (n == 0)
		return 0; /* a socket never reports an empty read either */
	c->last_active_ms = cfx_loop_now_ms(c->loop);
	if (c->proto->on_read(c, p, n)) {
		cfx_conn_close(c, "protocol error");
		return 1;
	}
	return c->closing;
}

size_t cfx_conn_take_output(struct cfx_conn *c, struct cfx_writer *wr)
{
	struct mem_conn *mc = mem_of(c);
	size_t n;

	/* Queued but not flushed yet: the pending flush will find nothing and
	 * still give the protocol its on_drain. */
	mem_move_queued(c);
	n = mc->out.len;
	cfx_write_bytes(wr, mc->out.p, n);
	cfx_writer_reset(&mc->out);
	return n;
}

void cfx_conn_free_memory(struct cfx_conn *c)
{
	struct mem_conn *mc;
	int free_queued;

	if (!c)
		return;
	mc = mem_of(c);
	CFX_ASSERT(!mc->owner_gone);
	/* Closed but not torn down: the conn_free cfx_conn_close deferred is queued. */
	free_queued = c->closing && !mc->torn_down;
	if (!c->closing) {
		c->closing = 1;
		c->close_why = "freed by its owner";
	}
	if (!mc->torn_down)
		mem_teardown(c);
	mc->owner_gone = 1;
	if (free_queued)
		return;
	if (c->flush_scheduled) {
		/* flush_task holds the pointer: free after it, in the same deferred queue. */
		cfx_loop_defer(c->loop, conn_free, c);
		return;
	}
	mem_destroy(c);
}
