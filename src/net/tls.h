/*
 * tls.h - TLS for any listener (OpenSSL): a server context per listener and
 * a transport that plugs into cfx_conn_ops.
 */
#ifndef CFX_NET_TLS_H
#define CFX_NET_TLS_H

#include "net/conn.h"

struct cfx_tls_ctx;

struct cfx_tls_opts {
	const char *cert_file;	/* PEM certificate chain */
	const char *key_file;	/* PEM private key */
	const char *ca_file;	/* clients must present a certificate signed by it (NULL = no mTLS) */
	const char *alpn;	/* protocol to offer, e.g. "h2"; NULL = none */
};

/* Loads the certificate and key. Returns 0 or CFX_EINVAL (logged with the reason). */
int cfx_tls_ctx_new(const struct cfx_tls_opts *o, struct cfx_tls_ctx **out);
void cfx_tls_ctx_free(struct cfx_tls_ctx *ctx);
/* Replaces the certificate and key (SIGHUP); connections in progress keep theirs. */
int cfx_tls_ctx_reload(struct cfx_tls_ctx *ctx, const struct cfx_tls_opts *o);

/* Makes `c` speak TLS (server side). @thread loop */
int cfx_tls_attach(struct cfx_tls_ctx *ctx, struct cfx_conn *c);

/* The verified client certificate's subject CN, or NULL. */
const char *cfx_tls_peer_cn(struct cfx_conn *c);

#endif
