/*
 * tls.c - the TLS transport (OpenSSL, TLS 1.2 and later).
 *
 * The SSL object works on the socket directly; a read or write that needs
 * the other direction (renegotiation is off, but the handshake and
 * post-handshake messages need it) reports -EAGAIN and records what it
 * waits for, and `pending` asks the loop to watch for writability.
 */
#include "net/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

struct cfx_tls_ctx {
	pthread_mutex_t mu;
	SSL_CTX *ssl;
	char alpn[32]; /* wire format: length-prefixed */
	size_t alpn_len;
};

struct tls_conn {
	SSL *ssl;
	int want_write; /* the last operation needs the socket writable */
	char cn[128];
};

static void log_ssl_errors(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		cfx_log_error("tls: %s: %s", what, buf);
	}
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	struct cfx_tls_ctx *ctx = arg;
	unsigned char *sel;

	CFX_UNUSED(ssl);
	if (!ctx->alpn_len)
		return SSL_TLSEXT_ERR_NOACK;
	if (SSL_select_next_proto(&sel, outlen, (const unsigned char *)ctx->alpn,
				  (unsigned)ctx->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ssl_ctx(const struct cfx_tls_opts *o, struct cfx_tls_ctx *ctx)
{
	SSL_CTX *s = SSL_CTX_new(TLS_server_method());

	if (!s)
		return NULL;
	SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(s, o->cert_file) != 1) {
		log_ssl_errors(o->cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(s, o->key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(s) != 1) {
		log_ssl_errors(o->key_file);
		goto fail;
	}
	if (o->ca_file && *o->ca_file) {
		if (SSL_CTX_load_verify_locations(s, o->ca_file, NULL) != 1) {
			log_ssl_errors(o->ca_file);
			goto fail;
		}
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	SSL_CTX_set_alpn_select_cb(s, alpn_select, ctx);
	return s;
fail:
	SSL_CTX_free(s);
	return NULL;
}

int cfx_tls_ctx_new(const struct cfx_tls_opts *o, struct cfx_tls_ctx **out)
{
	struct cfx_tls_ctx *ctx = cfx_calloc(1, sizeof *ctx);

	pthread_mutex_init(&ctx->mu, NULL);
	if (o->alpn) {
		size_t n = strlen(o->alpn);
		CFX_ASSERT(n < sizeof ctx->alpn - 1);
		ctx->alpn[0] = (char)n;
		memcpy(ctx->alpn + 1, o->alpn, n);
		ctx->alpn_len = n + 1;
	}
	ctx->ssl = make_ssl_ctx(o, ctx);
	if (!ctx->ssl) {
		pthread_mutex_destroy(&ctx->mu);
		cfx_free(ctx);
		return CFX_EINVAL;
	}
	*out = ctx;
	return 0;
}

int cfx_tls_ctx_reload(struct cfx_tls_ctx *ctx, const struct cfx_tls_opts *o)
{
	SSL_CTX *s = make_ssl_ctx(o, ctx), *old;

	if (!s)
		return CFX_EINVAL;
	pthread_mutex_lock(&ctx->mu);
	old = ctx->ssl;
	ctx->ssl = s;
	pthread_mutex_unlock(&ctx->mu);
	SSL_CTX_free(old); /* reference counted: live connections keep theirs */
	return 0;
}

void cfx_tls_ctx_free(struct cfx_tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	pthread_mutex_destroy(&ctx->mu);
	cfx_free(ctx);
}

static ssize_t tls_result(struct cfx_conn *c, struct tls_conn *t, int r)
{
	int e = SSL_get_error(t->ssl, r);

	t->want_write = 0;
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		t->want_write = 1;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		return errno ? -errno : -EPIPE;
	default:
		cfx_log_ratelimited(CFX_LOG_WARN, "tls: %s: handshake or record error from %s",
				    cfx_listener_name(c->listener), c->peer);
		ERR_clear_error();
		return -EPROTO;
	}
}

static ssize_t tls_read(struct cfx_conn *c, void *buf, size_t n)
{
	struct tls_conn *t = c->transport;
	int r = SSL_read(t->ssl, buf, (int)CFX_MIN(n, (size_t)INT32_MAX));

	if (r > 0) {
		t->want_write = 0;
		return r;
	}
	return tls_result(c, t, r);
}

static ssize_t tls_writev(struct cfx_conn *c, const struct iovec *iov, int n)
{
	struct tls_conn *t = c->transport;
	ssize_t total = 0;

	if (!SSL_is_init_finished(t->ssl)) {
		int r = SSL_do_handshake(t->ssl);
		if (r != 1)
			return tls_result(c, t, r);
	}
	for (int i = 0; i < n; i++) {
		int r = SSL_write(t->ssl, iov[i].iov_base, (int)CFX_MIN(iov[i].iov_len, (size_t)INT32_MAX));
		if (r <= 0) {
			ssize_t e = tls_result(c, t, r);
			return total ? total : e;
		}
		total += r;
		if ((size_t)r < iov[i].iov_len)
			break;
	}
	t->want_write = 0;
	return total;
}

static int tls_pending(struct cfx_conn *c)
{
	struct tls_conn *t = c->transport;
	return t->want_write;
}

static void tls_free(struct cfx_conn *c)
{
	struct tls_conn *t = c->transport;

	if (!t)
		return;
	SSL_free(t->ssl);
	cfx_free(t);
	c->transport = NULL;
}

static const struct cfx_conn_ops tls_ops = {
	.read = tls_read,
	.writev = tls_writev,
	.pending = tls_pending,
	.free = tls_free,
};

int cfx_tls_attach(struct cfx_tls_ctx *ctx, struct cfx_conn *c)
{
	struct tls_conn *t = cfx_calloc(1, sizeof *t);

	pthread_mutex_lock(&ctx->mu);
	t->ssl = SSL_new(ctx->ssl);
	pthread_mutex_unlock(&ctx->mu);
	if (!t->ssl || SSL_set_fd(t->ssl, c->io.fd) != 1) {
		if (t->ssl)
			SSL_free(t->ssl);
		cfx_free(t);
		return CFX_ENOMEM;
	}
	SSL_set_accept_state(t->ssl);
	c->transport = t;
	c->ops = &tls_ops;
	return 0;
}

const char *cfx_tls_peer_cn(struct cfx_conn *c)
{
	struct tls_conn *t = c->transport;
	X509 *cert;

	if (c->ops != &tls_ops || !t)
		return NULL;
	if (t->cn[0])
		return t->cn;
	cert = SSL_get1_peer_certificate(t->ssl);
	if (!cert)
		return NULL;
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, t->cn, sizeof t->cn);
	X509_free(cert);
	return t->cn[0] ? t->cn : NULL;
}
