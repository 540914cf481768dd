/*
 * conn.h - connections and listeners on the event loops.
 *
 * A connection is a socket owned by one loop, with a transport vtable (TCP
 * or TLS share one path) and a protocol (HTTP/2, HTTP/1.1, ...) that
 * consumes bytes and writes replies. Output is queued in a chain of chunks
 * and flushed once per loop iteration; while more than the listener's
 * output limit waits to be sent, the connection stops reading, so a slow
 * reader never makes the server buffer without bound.
 *
 * A connection is never freed inside its own callbacks: cfx_conn_close
 * marks it closing and frees it at the end of the loop iteration.
 *
 * Memory connections (the end of this file) carry a protocol without a
 * socket, so tests and fuzzers can drive it in-process.
 *
 * @thread loop: every function here runs on the connection's loop.
 */
#ifndef CFX_NET_CONN_H
#define CFX_NET_CONN_H

#include <sys/uio.h>

#include "base/common.h"
#include "net/loop.h"

struct cfx_conn;
struct cfx_listener;
struct cfx_server;

/* The protocol spoken on a connection. */
struct cfx_conn_proto {
	const char *name; /* "grpc", "http" */
	/* A new connection: set up c->proto_data. Returns 0 or closes it. */
	int (*on_open)(struct cfx_conn *c);
	/* Bytes arrived; the protocol consumes all of them. Non-zero closes. */
	int (*on_read)(struct cfx_conn *c, const uint8_t *p, size_t n);
	/* The output queue drained below the low-water mark. */
	void (*on_drain)(struct cfx_conn *c);
	/* The server is shutting down: finish politely (e.g. GOAWAY). */
	void (*on_shutdown)(struct cfx_conn *c);
	/* The connection closes: free c->proto_data. Called exactly once. */
	void (*on_close)(struct cfx_conn *c);
	/* May an idle connection be closed now? NULL = yes. */
	int (*is_busy)(struct cfx_conn *c);
};

/* The byte transport under a connection (TCP, TLS, WebSocket over either). */
struct cfx_conn_ops {
	/* > 0 bytes read, 0 end of stream, -EAGAIN, or -errno. */
	ssize_t (*read)(struct cfx_conn *c, void *buf, size_t n);
	/* > 0 bytes written, -EAGAIN, or -errno. */
	ssize_t (*writev)(struct cfx_conn *c, const struct iovec *iov, int n);
	/* Transport still holds bytes to send (TLS records). */
	int (*pending)(struct cfx_conn *c);
	void (*free)(struct cfx_conn *c);
};

struct out_chunk;

struct cfx_conn {
	struct cfx_io io;
	struct cfx_loop *loop;
	struct cfx_listener *listener;
	const struct cfx_conn_ops *ops;
	void *transport;	 /* TLS state */
	const struct cfx_conn_proto *proto;
	void *proto_data;
	uint64_t id;		 /* unique per process */
	char peer[64];		 /* "ip:port" */

	struct out_chunk *out_head, *out_tail;
	size_t out_bytes;	 /* queued, not yet written */
	int flush_scheduled;
	int read_paused;
	int closing;
	int shutting_down;
	const char *close_why;
	struct cfx_timer idle_timer;
	int64_t last_active_ms;
	struct cfx_conn_handle *handle; /* created on demand */
	struct cfx_conn *prev, *next; /* the loop's connections */
};

/* Queues `n` bytes for sending (copied). Ignored once the connection closes. */
void cfx_conn_write(struct cfx_conn *c, const void *p, size_t n);
/*
 * Queues the n bytes at p without copying them (after whatever is queued
 * already): they must stay valid until release(arg) is called, which
 * happens once they are written or the connection is closed (at once if
 * it is closing or n is 0). release may be NULL when a later call's
 * release covers these bytes too.
 */
void cfx_conn_write_ref(struct cfx_conn *c, const void *p, size_t n, void (*release)(void *arg),
			void *arg);
/* Bytes queued and not yet sent. */
static inline size_t cfx_conn_out_bytes(const struct cfx_conn *c)
{
	return c->out_bytes;
}
/* Whether the protocol should produce more output now (below the high-water mark). */
int cfx_conn_is_writable(const struct cfx_conn *c);
/* Closes the connection at the end of this loop iteration; `why` is logged at debug level. */
void cfx_conn_close(struct cfx_conn *c, const char *why);
/*
 * A handle outlives its connection, so that work completing later (posted
 * back to the loop) can find out whether the connection still exists.
 * Handles are counted on the loop's thread only.
 */
struct cfx_conn_handle {
	struct cfx_conn *conn; /* NULL once the connection is gone */
	uint32_t refs;
};
/* Returns the connection's handle with one more reference. */
struct cfx_conn_handle *cfx_conn_handle_get(struct cfx_conn *c);
void cfx_conn_handle_put(struct cfx_conn_handle *h);

/* ------------------------------------------------------------------------
 * Server and listeners
 * ------------------------------------------------------------------------ */

struct cfx_tls_ctx;
struct cfx_ws_opts;

struct cfx_listener_opts {
	const char *name;	      /* "grpc", "http", for logs and metrics */
	const char *addr;	      /* "host:port"; port 0 picks a free port */
	const struct cfx_conn_proto *proto;
	void *proto_arg;	      /* available to the protocol as listener data */
	uint32_t conn_max;	      /* connections at once (0 = no limit) */
	int64_t idle_ms;	      /* close connections idle this long (0 = never) */
	size_t output_bytes_max;      /* back-pressure threshold */
	struct cfx_tls_ctx *tls;      /* NULL = plaintext */
	const struct cfx_ws_opts *ws; /* WebSocket above TCP/TLS (net/ws.h); NULL = none;
				       * borrowed for the server's lifetime */
};

/* Creates a server with `nloops` event loops (threads start in cfx_server_start). */
int cfx_server_new(struct cfx_server **out, int nloops);
/* Binds a listener on every loop (SO_REUSEPORT). Fills *bound_port. @thread main, before start */
int cfx_server_listen(struct cfx_server *srv, const struct cfx_listener_opts *o, int *bound_port);
int cfx_server_start(struct cfx_server *srv);
/*
 * Stops accepting, asks every connection to finish (on_shutdown), waits up
 * to `drain_ms` for them to close, then stops the loops and joins them.
 */
void cfx_server_stop(struct cfx_server *srv, int64_t drain_ms);
void cfx_server_free(struct cfx_server *srv);

int cfx_server_loop_count(const struct cfx_server *srv);
struct cfx_loop *cfx_server_loop(struct cfx_server *srv, int i);

/* Listener data for the protocol (cfx_listener_opts.proto_arg). */
void *cfx_listener_proto_arg(const struct cfx_listener *l);
const char *cfx_listener_name(const struct cfx_listener *l);

/* Counters of one listener (all loops). */
struct cfx_listener_stats {
	uint64_t accepted;
	uint64_t refused;	/* over the connection limit or out of fds */
	uint64_t open;		/* open now */
};
void cfx_server_listener_stats(struct cfx_server *srv, const char *name,
			       struct cfx_listener_stats *st);

/* Splits "host:port" ("[v6]:port" too). Returns 0 or CFX_EINVAL. */
int cfx_parse_hostport(const char *s, char *host, size_t host_len, int *port);

/* ------------------------------------------------------------------------
 * Memory connections: a protocol driven in-process (tests, fuzzers)
 *
 * A memory connection has no socket (io.fd is -1) and belongs to no server.
 * Its owner feeds it input, takes the output the protocol wrote, and runs
 * the loop's pending work with cfx_loop_run_pending, all on one thread.
 * Writes, back-pressure, closing and the deferred teardown follow the rules
 * of socket connections; output is flushed (by deferred work) into a buffer
 * that takes everything, so reading never pauses. Its listener is private:
 * named "memory", no idle timeout, a 16 KiB output mark, and `proto_arg`
 * as cfx_listener_proto_arg.
 * ------------------------------------------------------------------------ */

struct cfx_writer;

/*
 * Opens a memory connection on `loop` speaking `proto` (both borrowed until
 * the connection is freed) and calls proto->on_open. Never NULL: if on_open
 * refuses, the connection is already closing (cfx_conn_feed returns 1).
 * The caller owns it and must release it with cfx_conn_free_memory.
 */
struct cfx_conn *cfx_conn_new_memory(struct cfx_loop *loop, const struct cfx_conn_proto *proto,
				     void *proto_arg);
/*
 * Hands `n` bytes (borrowed until return) to proto->on_read, as if they had
 * been read from a socket. Returns 0, or 1 if the connection is closing (the
 * protocol failed or closed it now or earlier; the input is then dropped).
 */
int cfx_conn_feed(struct cfx_conn *c, const uint8_t *p, size_t n);
/*
 * Appends everything the protocol wrote and the owner has not taken yet to
 * `wr` (flushed or still queued), and forgets it. Also works once the
 * connection closed, for what it wrote last. Returns the number of bytes.
 */
size_t cfx_conn_take_output(struct cfx_conn *c, struct cfx_writer *wr);
/*
 * Releases a memory connection, open or closing: calls proto->on_close now
 * if that has not happened yet, and frees the connection now, or in deferred
 * work already queued for it (the next cfx_loop_run_pending or cfx_loop_free
 * finishes it). Never call it from the connection's own callbacks. NULL is
 * ignored.
 */
void cfx_conn_free_memory(struct cfx_conn *c);

#endif
