/*
 * Unit tests for src/net/conn.c (and tls.c): a real server on 127.0.0.1
 * with an echo protocol, real client sockets in test threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "net/conn.h"
#include "net/tls.h"

/* ------------------------------------------------------------------------
 * The echo protocol, with a high-water mark observer
 * ------------------------------------------------------------------------ */

static atomic_size_t max_out_bytes;
static atomic_int opened, closed_count, shutdowns;

static int echo_open(struct cfx_conn *c)
{
	(void)c;
	atomic_fetch_add(&opened, 1);
	return 0;
}

static int echo_read(struct cfx_conn *c, const uint8_t *p, size_t n)
{
	cfx_conn_write(c, p, n);
	size_t out = cfx_conn_out_bytes(c), cur = atomic_load(&max_out_bytes);
	while (out > cur && !atomic_compare_exchange_weak(&max_out_bytes, &cur, out))
		;
	return 0;
}

static void echo_shutdown(struct cfx_conn *c)
{
	atomic_fetch_add(&shutdowns, 1);
	cfx_conn_close(c, "shutdown");
}

static void echo_close(struct cfx_conn *c)
{
	(void)c;
	atomic_fetch_add(&closed_count, 1);
}

static const struct cfx_conn_proto echo_proto = {
	.name = "echo",
	.on_open = echo_open,
	.on_read = echo_read,
	.on_shutdown = echo_shutdown,
	.on_close = echo_close,
};

static struct cfx_server *start_server(struct cfx_listener_opts *o, int *port)
{
	struct cfx_server *srv;

	assert_int_equal(cfx_server_new(&srv, 2), 0);
	o->name = "echo";
	o->addr = "127.0.0.1:0";
	o->proto = &echo_proto;
	assert_int_equal(cfx_server_listen(srv, o, port), 0);
	assert_true(*port > 0);
	assert_int_equal(cfx_server_start(srv), 0);
	return srv;
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* Reads until `n` bytes or EOF/timeout; returns bytes read. */
static size_t read_n(int fd, uint8_t *buf, size_t n, int timeout_ms)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) <= 0)
			break;
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/* ------------------------------------------------------------------------ */

struct client_arg {
	int port;
	size_t bytes;
	int ok;
};

static void *echo_client(void *p)
{
	struct client_arg *a = p;
	int fd = connect_to(a->port);
	uint8_t *out = malloc(a->bytes), *in = malloc(a->bytes);
	size_t sent = 0, got = 0;

	for (size_t i = 0; i < a->bytes; i++)
		out[i] = (uint8_t)(i * 7 + (size_t)a->port);
	/* Interleave writes and reads so neither side's buffers fill up. */
	while (got < a->bytes) {
		if (sent < a->bytes) {
			size_t k = CFX_MIN((size_t)32768, a->bytes - sent);
			ssize_t w = write(fd, out + sent, k);
			if (w > 0)
				sent += (size_t)w;
		}
		got += read_n(fd, in + got, CFX_MIN(sent - got, (size_t)65536), 5000);
	}
	a->ok = memcmp(in, out, a->bytes) == 0;
	close(fd);
	free(out);
	free(in);
	return NULL;
}

static void test_echo_many_clients(void **state)
{
	struct cfx_listener_opts o = { 0 };
	struct cfx_listener_stats st;
	pthread_t thr[8];
	struct client_arg args[8];
	int port;
	(void)state;

	struct cfx_server *srv = start_server(&o, &port);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct client_arg){ .port = port, .bytes = 1u << 20 };
		pthread_create(&thr[i], NULL, echo_client, &args[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(thr[i], NULL);
		assert_true(args[i].ok);
	}
	cfx_server_listener_stats(srv, "echo", &st);
	assert_int_equal(st.accepted, 8);
	cfx_server_stop(srv, 1000);
	cfx_server_free(srv);
}

static void test_slow_reader_is_back_pressured(void **state)
{
	struct cfx_listener_opts o = { .output_bytes_max = 64 * 1024 };
	size_t total = 16u << 20, sent = 0, got = 0;
	uint8_t *buf = malloc(65536);
	int port, fd;
	(void)state;

	atomic_store(&max_out_bytes, 0);
	struct cfx_server *srv = start_server(&o, &port);
	fd = connect_to(port);
	/* Write without reading until the kernel buffers and the server stop us. */
	struct timeval tv = { .tv_sec = 1 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	memset(buf, 'b', 65536);
	while (sent < total) {
		ssize_t w = write(fd, buf, 65536);
		if (w <= 0)
			break; /* timed out: the server stopped reading */
		sent += (size_t)w;
	}
	assert_true(sent < total);
	/* The server queued a bounded amount (limit + one read), not everything sent. */
	assert_true(atomic_load(&max_out_bytes) <= 64 * 1024 + 65536);
	/* Now read: everything sent comes back. */
	while (got < sent) {
		size_t r = read_n(fd, buf, 65536, 5000);
		if (r == 0)
			break;
		got += r;
	}
	assert_int_equal(got, sent);
	close(fd);
	free(buf);
	cfx_server_stop(srv, 1000);
	cfx_server_free(srv);
}

static void test_connection_limit_and_idle_timeout(void **state)
{
	struct cfx_listener_opts o = { .conn_max = 2, .idle_ms = 200 };
	struct cfx_listener_stats st;
	uint8_t b;
	int port;
	(void)state;

	struct cfx_server *srv = start_server(&o, &port);
	int a = connect_to(port), c = connect_to(port);
	assert_int_equal(write(a, "x", 1), 1);
	assert_int_equal(read_n(a, &b, 1, 5000), 1);
	assert_int_equal(write(c, "y", 1), 1);
	assert_int_equal(read_n(c, &b, 1, 5000), 1);
	/* The third is over the limit: accepted and closed at once. */
	int d = connect_to(port);
	assert_int_equal(read_n(d, &b, 1, 5000), 0);
	cfx_server_listener_stats(srv, "echo", &st);
	assert_true(st.refused >= 1);
	/* Idle connections are closed by the server. */
	assert_int_equal(read_n(a, &b, 1, 10000), 0);
	assert_int_equal(read_n(c, &b, 1, 10000), 0);
	close(a);
	close(c);
	close(d);
	cfx_server_stop(srv, 1000);
	cfx_server_free(srv);
}

static void test_stop_asks_connections_to_finish(void **state)
{
	struct cfx_listener_opts o = { 0 };
	uint8_t b;
	int port;
	(void)state;

	atomic_store(&shutdowns, 0);
	struct cfx_server *srv = start_server(&o, &port);
	int a = connect_to(port);
	assert_int_equal(write(a, "x", 1), 1);
	assert_int_equal(read_n(a, &b, 1, 5000), 1);
	cfx_server_stop(srv, 2000);
	assert_int_equal(atomic_load(&shutdowns), 1);
	assert_int_equal(read_n(a, &b, 1, 5000), 0);
	close(a);
	cfx_server_free(srv);
}

static void test_bad_listen_address(void **state)
{
	struct cfx_server *srv;
	struct cfx_listener_opts o = { .name = "x", .addr = "nonsense", .proto = &echo_proto };
	char host[64];
	int port;
	(void)state;

	assert_int_equal(cfx_parse_hostport("[::1]:8081", host, sizeof host, &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 8081);
	assert_int_equal(cfx_parse_hostport("0.0.0.0:99999", host, sizeof host, &port), CFX_EINVAL);
	assert_int_equal(cfx_server_new(&srv, 1), 0);
	assert_int_equal(cfx_server_listen(srv, &o, &port), CFX_EINVAL);
	cfx_server_free(srv);
}

/* ------------------------------------------------------------------------
 * TLS
 * ------------------------------------------------------------------------ */

static void test_tls_echo_with_alpn(void **state)
{
	char dir[] = "/tmp/cfx-tls-XXXXXX", cmd[1024], cert[256], key[256];
	struct cfx_tls_opts to = { .alpn = "h2" };
	struct cfx_tls_ctx *ctx;
	struct cfx_listener_opts o = { 0 };
	const unsigned char *proto;
	unsigned proto_len;
	char buf[5];
	int port;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
		 "-subj /CN=localhost >/dev/null 2>&1",
		 key, cert);
	assert_int_equal(system(cmd), 0);
	to.cert_file = cert;
	to.key_file = key;
	assert_int_equal(cfx_tls_ctx_new(&to, &ctx), 0);
	o.tls = ctx;
	struct cfx_server *srv = start_server(&o, &port);

	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x02h2", 3);
	SSL *ssl = SSL_new(cctx);
	int fd = connect_to(port);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	SSL_get0_alpn_selected(ssl, &proto, &proto_len);
	assert_int_equal(proto_len, 2);
	assert_memory_equal(proto, "h2", 2);
	assert_int_equal(SSL_write(ssl, "hello", 5), 5);
	int got = 0;
	while (got < 5) {
		int r = SSL_read(ssl, buf + got, 5 - got);
		assert_true(r > 0);
		got += r;
	}
	assert_memory_equal(buf, "hello", 5);
	SSL_free(ssl);
	SSL_CTX_free(cctx);
	close(fd);

	/* Plaintext on a TLS port is refused without disturbing the server. */
	fd = connect_to(port);
	assert_int_equal(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	uint8_t b[64];
	size_t n = read_n(fd, b, sizeof b, 5000);
	(void)n; /* an alert or nothing, then EOF */
	close(fd);

	cfx_server_stop(srv, 1000);
	cfx_server_free(srv);
	cfx_tls_ctx_free(ctx);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_many_clients),
		cmocka_unit_test(test_slow_reader_is_back_pressured),
		cmocka_unit_test(test_connection_limit_and_idle_timeout),
		cmocka_unit_test(test_stop_asks_connections_to_finish),
		cmocka_unit_test(test_bad_listen_address),
		cmocka_unit_test(test_tls_echo_with_alpn),
	};
	cfx_log_set_level(CFX_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
