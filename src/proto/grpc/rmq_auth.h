/*
 * rmq_auth.h - the request signature of the RocketMQ 5 gRPC clients.
 *
 * Every call of an official client (Java, Go, C++, Node.js, ...) with
 * credentials carries these metadata entries:
 *
 *   x-mq-date-time      20231107T120000Z            (yyyyMMdd'T'HHmmss'Z')
 *   authorization       MQv2-HMAC-SHA1 Credential=<AccessKey>[/<region>/<service>],
 *                         SignedHeaders=x-mq-date-time, Signature=<hex>
 *   x-mq-session-token  <token>                     (optional, STS credentials)
 *
 * (one line; a comma and a space between the fields). The signature is
 * HMAC-SHA1 keyed with the secret key over the bytes of the x-mq-date-time
 * value, in hex: upper case from Java and Node.js, lower case from Go.
 * Java and Node.js send Credential=<AccessKey>; C++ sends
 * <AccessKey>/<region>/<service> and Go <AccessKey>//Rocketmq. The broker of
 * RocketMQ keeps the part before the first '/' as the user name.
 *
 * Clock skew: Java, C++ and Node.js write the time in UTC; the Go client
 * formats its local time with a literal 'Z', so its x-mq-date-time is off
 * by the client's UTC offset. A caller that refuses old requests should
 * choose its window with that in mind.
 *
 * Pure functions: no sockets, no broker. Parsing is strict (bounded, exact
 * field names, no duplicates, no unknown fields) and says why it refuses.
 */
#ifndef CFX_PROTO_GRPC_RMQ_AUTH_H
#define CFX_PROTO_GRPC_RMQ_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define CFX_RMQ_AUTH_HEADER	  "authorization"
#define CFX_RMQ_AUTH_DATE_HEADER  "x-mq-date-time"
#define CFX_RMQ_AUTH_TOKEN_HEADER "x-mq-session-token"
#define CFX_RMQ_AUTH_ALGORITHM	  "MQv2-HMAC-SHA1"

#define CFX_RMQ_AUTH_HEADER_MAX 1024 /* bytes of the authorization value */
#define CFX_RMQ_AUTH_AK_MAX	255  /* bytes of an access key */
#define CFX_RMQ_AUTH_SIG_LEN	20   /* bytes of an HMAC-SHA1 */
#define CFX_RMQ_AUTH_SIG_HEX	40   /* its hex characters */
#define CFX_RMQ_AUTH_DATE_LEN	16   /* characters of "20231107T120000Z" */

/* A parsed authorization value. The views point into the parsed string. */
struct cfx_rmq_auth {
	struct cfx_view access_key;	/* Credential up to the first '/' */
	struct cfx_view scope;		/* after the first '/' ("region/service"); may be empty */
	struct cfx_view signed_headers; /* "x-mq-date-time" (';'-separated list) */
	struct cfx_view signature;	/* the hex text as sent */
	uint8_t sig[CFX_RMQ_AUTH_SIG_LEN]; /* the signature, decoded */
};

/*
 * Parses an authorization value (`len` bytes; borrowed: the views of *out
 * point into it). Requires the MQv2-HMAC-SHA1 algorithm, then Credential,
 * SignedHeaders and Signature exactly once each, in any order, separated
 * by ',' with optional spaces; SignedHeaders must include x-mq-date-time;
 * the access key is 1..CFX_RMQ_AUTH_AK_MAX printable bytes; the signature
 * is 40 hex digits of either case. Returns 0; CFX_E2BIG (value over
 * CFX_RMQ_AUTH_HEADER_MAX or access key too long) or CFX_EPARSE, with *why
 * a static reason.
 */
int cfx_rmq_auth_parse(const char *authorization, size_t len, struct cfx_rmq_auth *out,
		       const char **why);

/*
 * Whether `a` carries HMAC-SHA1(secret, date_time), compared in constant
 * time. `date_time` is the x-mq-date-time value as received (its format is
 * not checked here; see cfx_rmq_auth_date_parse). False for an empty secret.
 */
bool cfx_rmq_auth_verify(const struct cfx_rmq_auth *a, const char *date_time, size_t dt_len,
			 const uint8_t *secret, size_t secret_len);

/*
 * The client's side, for tests and Conflux's own clients: writes the
 * signature of `date_time` as 40 upper-case hex digits and a NUL.
 * Returns 0 or CFX_ESYS.
 */
int cfx_rmq_auth_sign(const uint8_t *secret, size_t secret_len, const char *date_time,
		      size_t dt_len, char out[CFX_RMQ_AUTH_SIG_HEX + 1]);

/*
 * Parses an x-mq-date-time value, exactly "YYYYMMDDTHHMMSSZ" (a real
 * calendar date, hours 00-23, no leap second), into milliseconds since the
 * Unix epoch (UTC). Returns 0 or CFX_EPARSE.
 */
int cfx_rmq_auth_date_parse(const char *s, size_t len, int64_t *unix_ms);

#endif
