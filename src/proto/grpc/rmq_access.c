/*
 * rmq_access.c - who a RocketMQ 5 call is, and what it may do
 * (docs/security.md).
 *
 * The official clients sign every call: `x-mq-date-time` and
 * `authorization: MQv2-HMAC-SHA1 Credential=<AccessKey>,
 * SignedHeaders=x-mq-date-time, Signature=<hex HMAC-SHA1(secret, date)>`
 * (rmq_auth.c parses and checks it). The access key is a user's name and the
 * secret key its password; the broker keeps the secret sealed under its
 * node key (broker/auth.c). A call that does not sign in where users exist,
 * or signs wrongly, or is more than RMQ_CLOCK_SKEW_MS off the broker's
 * clock, gets UNAUTHORIZED (40100); a signed-in call a policy denies gets
 * FORBIDDEN (40300). Both are answered in-band, as every RocketMQ status is:
 * each response message of MessagingService has its Status at field 1.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "base/clock.h"
#include "base/log.h"
#include "proto/grpc/rmq.h"
#include "proto/grpc/rmq_auth.h"

#define RMQ_CLOCK_SKEW_MS (15 * 60 * 1000) /* a signature older or newer is refused */
#define STATUS_MSG_MAX 200

/*
 * Answers with a response that carries only its Status (field 1 of every
 * MessagingService response), then ends the call.
 */
void rmq_reply_status_only(struct grpc_call *call, int code, const char *why)
{
	uint8_t buf[16 + STATUS_MSG_MAX];
	size_t wlen = why ? strlen(why) : 0, n = 0, st_len;
	uint32_t c = (uint32_t)code;

	if (wlen > STATUS_MSG_MAX)
		wlen = STATUS_MSG_MAX;
	/* Status: code (1, varint), message (2, string) */
	uint8_t st[8 + STATUS_MSG_MAX];
	size_t k = 0;
	st[k++] = 0x08;
	do {
		st[k++] = (uint8_t)((c & 0x7f) | (c > 0x7f ? 0x80 : 0));
		c >>= 7;
	} while (c);
	st[k++] = 0x12;
	st[k++] = (uint8_t)wlen; /* < 128 */
	memcpy(st + k, why, wlen);
	st_len = k + wlen;
	/* Response: status (1, message) */
	buf[n++] = 0x0a;
	if (st_len > 0x7f) {
		buf[n++] = (uint8_t)((st_len & 0x7f) | 0x80);
		buf[n++] = (uint8_t)(st_len >> 7);
	} else {
		buf[n++] = (uint8_t)st_len;
	}
	memcpy(buf + n, st, st_len);
	n += st_len;
	grpc_call_send(call, buf, n);
	grpc_call_finish(call, GRPC_OK, NULL);
}

static int unauthorized(struct rmq_service *svc, struct grpc_call *call, const char *user,
			const char *why)
{
	cfx_auth_note_failure(svc->o.auth, CFX_AUTH_GRPC, grpc_call_peer(call), user, why);
	rmq_reply_status_only(call, RMQ_CODE(UNAUTHORIZED), why);
	return -1;
}

int rmq_admit(void *arg, struct grpc_call *call)
{
	struct rmq_service *svc = arg;
	struct cfx_auth *a = svc->o.auth;
	const char *hdr, *date;
	struct cfx_rmq_auth ra;
	char user[CFX_AUTH_USER_MAX + 1];
	uint8_t secret[CFX_AUTH_PASSWORD_MAX];
	size_t secret_len = 0;
	int64_t when;
	const char *why = NULL;
	bool ok;

	if (!a || !cfx_auth_enabled(a))
		return 0;
	hdr = grpc_call_header(call, CFX_RMQ_AUTH_HEADER);
	if (!hdr) {
		if (cfx_auth_anonymous_ok(a))
			return 0;
		return unauthorized(svc, call, NULL,
				    "sign the request: the client needs an access key and secret");
	}
	if (cfx_rmq_auth_parse(hdr, strlen(hdr), &ra, &why))
		return unauthorized(svc, call, NULL, why ? why : "malformed authorization");
	if (ra.access_key.len > CFX_AUTH_USER_MAX)
		return unauthorized(svc, call, NULL, "access key too long");
	memcpy(user, ra.access_key.p, ra.access_key.len);
	user[ra.access_key.len] = 0;
	date = grpc_call_header(call, CFX_RMQ_AUTH_DATE_HEADER);
	if (!date || cfx_rmq_auth_date_parse(date, strlen(date), &when))
		return unauthorized(svc, call, user, "x-mq-date-time is missing or malformed");
	if (when < cfx_clock_wall_ms() - RMQ_CLOCK_SKEW_MS ||
	    when > cfx_clock_wall_ms() + RMQ_CLOCK_SKEW_MS)
		return unauthorized(svc, call, user,
				    "x-mq-date-time is more than 15 minutes off the broker's clock");
	if (cfx_auth_hmac_secret(a, user, strlen(user), secret, sizeof secret, &secret_len))
		return unauthorized(svc, call, user, "unknown access key or wrong signature");
	ok = cfx_rmq_auth_verify(&ra, date, strlen(date), secret, secret_len);
	OPENSSL_cleanse(secret, sizeof secret);
	if (!ok)
		return unauthorized(svc, call, user, "unknown access key or wrong signature");
	grpc_call_set_user(call, user, strlen(user));
	return 0;
}

int rmq_authorize(struct grpc_call *call, enum cfx_auth_resource res, struct cfx_view name,
		  unsigned action)
{
	struct rmq_service *svc = rmq_svc(call);
	struct cfx_auth *a = svc->o.auth;
	struct cfx_auth_peer peer;
	const char *user = grpc_call_user(call);
	char why[STATUS_MSG_MAX];

	if (!a || !cfx_auth_enabled(a))
		return 0;
	cfx_auth_peer_parse(grpc_call_peer(call), &peer);
	if (cfx_auth_authorize(a, user, res, (const char *)name.p, name.len, action, &peer) == 0)
		return 0;
	cfx_auth_note_denial(a, CFX_AUTH_GRPC, grpc_call_peer(call), user, action, res,
			     (const char *)name.p, name.len);
	snprintf(why, sizeof why, "%s may not %s %s %.*s", user ? user : "anonymous",
		 cfx_auth_action_name(action), cfx_auth_resource_name(res),
		 (int)CFX_MIN(name.len, 100), name.p);
	rmq_reply_status_only(call, RMQ_CODE(FORBIDDEN), why);
	return -1;
}

bool rmq_may(struct grpc_call *call, enum cfx_auth_resource res, struct cfx_view name,
	     unsigned action)
{
	struct cfx_auth *a = rmq_svc(call)->o.auth;
	struct cfx_auth_peer peer;

	if (!a || !cfx_auth_enabled(a))
		return true;
	cfx_auth_peer_parse(grpc_call_peer(call), &peer);
	return cfx_auth_authorize(a, grpc_call_user(call), res, (const char *)name.p, name.len,
				  action, &peer) == 0;
}
