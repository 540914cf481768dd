/*
 * api_sasl.c - SaslHandshake (v0-v1) and SaslAuthenticate (v0-v2): PLAIN,
 * SCRAM-SHA-256 and SCRAM-SHA-512 on the core's users (docs/security.md),
 * and kf_authorize, the one place where a policy's answer becomes a Kafka
 * error code.
 *
 * A connection signs in with SaslHandshake (the mechanism), then one
 * SaslAuthenticate for PLAIN or two for SCRAM (client-first, then
 * client-final). Until it has, when users exist and anonymous clients are
 * not allowed, it may send nothing but ApiVersions and these two (server.c
 * closes it otherwise). A PLAIN password is checked on the auth thread:
 * the response waits in its slot (in order, like a Produce waiting for its
 * append). SCRAM needs no key derivation on the server, so it answers at once.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/log.h"
#include "proto/kafka/kafka_int.h"

enum { MECH_PLAIN = 1, MECH_SCRAM_SHA256, MECH_SCRAM_SHA512 };

struct kf_sasl {
	int mech;
	struct cfx_scram_server scram;
};

static const char *const mech_names[] = { "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" };

bool kf_auth_on(const struct kafka_service *svc)
{
	return svc->o.auth && cfx_auth_enabled(svc->o.auth);
}

bool kf_signed_in_enough(const struct kconn *kc)
{
	return kc->authed || !kf_auth_on(kc->svc) || cfx_auth_anonymous_ok(kc->svc->o.auth);
}

int16_t kf_authorize(struct kconn *kc, enum cfx_auth_resource res, struct cfx_view name,
		     unsigned action)
{
	struct cfx_auth *a = kc->svc->o.auth;
	char buf[CFX_AUTH_NAME_MAX + 1];
	struct cfx_auth_peer peer;

	if (!kf_auth_on(kc->svc))
		return KF_ERR_NONE;
	cfx_auth_peer_parse(kc->c->peer, &peer);
	if (cfx_auth_authorize(a, kc->user, res, (const char *)name.p, name.len, action, &peer) == 0)
		return KF_ERR_NONE;
	snprintf(buf, sizeof buf, "%.*s", (int)CFX_MIN(name.len, sizeof buf - 1), name.p);
	cfx_auth_note_denial(a, CFX_AUTH_KAFKA, kc->c->peer, kc->user, action, res, buf, strlen(buf));
	switch (res) {
	case CFX_AUTH_TOPIC:
		return KF_ERR_TOPIC_AUTHORIZATION_FAILED;
	case CFX_AUTH_GROUP:
		return KF_ERR_GROUP_AUTHORIZATION_FAILED;
	default:
		return KF_ERR_CLUSTER_AUTHORIZATION_FAILED;
	}
}

bool kf_may(struct kconn *kc, enum cfx_auth_resource res, struct cfx_view name, unsigned action)
{
	struct cfx_auth_peer peer;

	if (!kf_auth_on(kc->svc))
		return true;
	cfx_auth_peer_parse(kc->c->peer, &peer);
	return cfx_auth_authorize(kc->svc->o.auth, kc->user, res, (const char *)name.p, name.len,
				  action, &peer) == 0;
}

void kf_sasl_free(struct kconn *kc)
{
	if (kc->sasl) {
		cfx_scram_server_clear(&kc->sasl->scram);
		cfx_free(kc->sasl);
		kc->sasl = NULL;
	}
}

/* ------------------------------------------------------------------------
 * SaslHandshake
 * ------------------------------------------------------------------------ */

void kf_sasl_handshake(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	int null, mech = 0;
	struct cfx_view m = kf_read_string(rd, 0, &null);
	struct cfx_writer *w = &r->out;
	int16_t err = KF_ERR_NONE;
	size_t start;

	if (rd->err || null) {
		kafka__bad_request(kc, r, "SaslHandshake");
		return;
	}
	for (int i = 0; i < 3 && !mech; i++)
		if (m.len == strlen(mech_names[i]) && !memcmp(m.p, mech_names[i], m.len))
			mech = i + 1;
	if (!kc->svc->o.auth || !mech)
		err = KF_ERR_UNSUPPORTED_SASL_MECHANISM;
	else if (kc->authed || kc->sasl)
		err = KF_ERR_ILLEGAL_SASL_STATE;
	else if (r->h.api_version == 0)
		/* v0 would be followed by bare SASL tokens outside Kafka's framing. */
		err = KF_ERR_UNSUPPORTED_VERSION;
	if (!err) {
		kc->sasl = cfx_calloc(1, sizeof *kc->sasl);
		kc->sasl->mech = mech;
	}
	start = kreq_begin(r);
	/* Response: ErrorCode, Mechanisms */
	kf_write_i16(w, err);
	kf_write_array_len(w, kc->svc->o.auth ? 3 : 0, 0);
	for (int i = 0; kc->svc->o.auth && i < 3; i++)
		kf_write_string(w, CFX_VIEW_STR(mech_names[i]), 0, 0);
	kf_end_response(w, start);
	kreq_done(r);
}

/* ------------------------------------------------------------------------
 * SaslAuthenticate
 * ------------------------------------------------------------------------ */

/* Response: ErrorCode, ErrorMessage, AuthBytes, [SessionLifetimeMs] */
static void authenticate_answer(struct kreq *r, int16_t err, const char *msg, const void *bytes,
				size_t len)
{
	struct cfx_writer *w = &r->out;
	size_t start = kreq_begin(r);

	kf_write_i16(w, err);
	kf_write_string(w, msg ? CFX_VIEW_STR(msg) : (struct cfx_view){ 0 }, r->flex, !msg);
	kf_write_bytes(w, (struct cfx_view){ bytes, len }, r->flex, 0);
	if (r->h.api_version >= 1)
		kf_write_i64(w, 0); /* no re-authentication required */
	if (r->flex)
		kf_write_empty_tagged_fields(w);
	kf_end_response(w, start);
}

static void signed_in(struct kconn *kc, const char *user, size_t len)
{
	cfx_free(kc->user);
	kc->user = cfx_strndup(user, len);
	kc->authed = 1;
	kf_sasl_free(kc);
	cfx_log_debug(CFX_LOGC_PROTO, "kafka: %s signed in as %s", kc->c->peer, kc->user);
}

static void refused(struct kconn *kc, struct kreq *r, const char *user, const char *why)
{
	cfx_auth_note_failure(kc->svc->o.auth, CFX_AUTH_KAFKA, kc->c->peer, user, why);
	kf_sasl_free(kc);
	authenticate_answer(r, KF_ERR_SASL_AUTHENTICATION_FAILED,
			    "Authentication failed: invalid user name or password", NULL, 0);
}

struct plain_wait {
	struct kreq *r;
	struct cfx_loop *loop;
	char user[CFX_AUTH_USER_MAX + 1];
	int rc;
};

/* The PLAIN password was checked. @thread loop */
static void plain_checked_task(void *arg)
{
	struct plain_wait *pw = arg;
	struct kreq *r = pw->r;
	struct kconn *kc = r->kc;

	r->pending = 0;
	if (kc) {
		if (pw->rc == 0) {
			signed_in(kc, pw->user, strlen(pw->user));
			authenticate_answer(r, KF_ERR_NONE, NULL, NULL, 0);
		} else {
			refused(kc, r, pw->user, "wrong user name or password");
		}
	}
	cfx_free(pw);
	kreq_done(r); /* frees an orphan */
}

/* @thread auth */
static void plain_checked(void *arg, int rc)
{
	struct plain_wait *pw = arg;

	pw->rc = rc;
	cfx_loop_post(pw->loop, plain_checked_task, pw);
}

static void authenticate_plain(struct kconn *kc, struct kreq *r, struct cfx_view msg)
{
	struct cfx_view authzid, user, password;
	const char *why;
	struct plain_wait *pw;
	int rc;

	if (cfx_sasl_plain_parse(msg.p, msg.len, &authzid, &user, &password, &why) ||
	    user.len > CFX_AUTH_USER_MAX) {
		refused(kc, r, NULL, "malformed PLAIN message");
		kreq_done(r);
		return;
	}
	pw = cfx_calloc(1, sizeof *pw);
	pw->r = r;
	pw->loop = kc->c->loop;
	memcpy(pw->user, user.p, user.len);
	rc = cfx_auth_password_check(kc->svc->o.auth, (const char *)user.p, user.len,
				     (const char *)password.p, password.len, plain_checked, pw);
	if (rc == CFX_AGAIN) {
		r->pending = 1;
		return;
	}
	if (rc == 0) {
		signed_in(kc, pw->user, user.len);
		authenticate_answer(r, KF_ERR_NONE, NULL, NULL, 0);
	} else {
		refused(kc, r, pw->user, "wrong user name or password");
	}
	cfx_free(pw);
	kreq_done(r);
}

static void authenticate_scram(struct kconn *kc, struct kreq *r, struct cfx_view msg)
{
	struct cfx_scram_server *ss = &kc->sasl->scram;
	enum cfx_scram_mech m =
		kc->sasl->mech == MECH_SCRAM_SHA512 ? CFX_SCRAM_SHA512 : CFX_SCRAM_SHA256;
	char user[CFX_SCRAM_USER_MAX + 1], out[CFX_SCRAM_SERVER_FIRST_MAX];
	struct cfx_scram_cred cred;
	const char *why = NULL;
	size_t out_len = 0;
	int rc;

	if (ss->state == CFX_SCRAM_INIT) {
		rc = cfx_scram_server_start(ss, m, msg.p, msg.len, user, sizeof user, &why);
		if (rc) {
			refused(kc, r, NULL, why);
		} else {
			int known = strlen(user) <= CFX_AUTH_USER_MAX &&
				    cfx_auth_scram_cred(kc->svc->o.auth, user, m, &cred) == 0;
			rc = cfx_scram_server_challenge(ss, known ? &cred : NULL, out, sizeof out,
							&out_len);
			if (rc)
				refused(kc, r, user, "the SCRAM challenge failed");
			else
				authenticate_answer(r, KF_ERR_NONE, NULL, out, out_len);
		}
	} else if (ss->state == CFX_SCRAM_CHALLENGED) {
		snprintf(user, sizeof user, "%s", ss->user);
		rc = cfx_scram_server_finish(ss, msg.p, msg.len, out, sizeof out, &out_len, &why);
		if (rc) {
			refused(kc, r, user, why ? why : "wrong user name or password");
		} else {
			authenticate_answer(r, KF_ERR_NONE, NULL, out, out_len);
			signed_in(kc, user, strlen(user));
		}
	} else {
		refused(kc, r, NULL, "SCRAM exchange out of order");
	}
	OPENSSL_cleanse(&cred, sizeof cred);
	kreq_done(r);
}

void kf_sasl_authenticate(struct kconn *kc, struct kreq *r, struct cfx_reader *rd)
{
	int null;
	struct cfx_view msg = kf_read_bytes(rd, r->flex, &null);

	if (r->flex)
		kf_skip_tagged_fields(rd);
	if (rd->err || null) {
		kafka__bad_request(kc, r, "SaslAuthenticate");
		return;
	}
	if (!kc->sasl || kc->authed) {
		authenticate_answer(r, KF_ERR_ILLEGAL_SASL_STATE,
				    "SaslHandshake must come first, once", NULL, 0);
		kreq_done(r);
		return;
	}
	if (kc->sasl->mech == MECH_PLAIN)
		authenticate_plain(kc, r, msg);
	else
		authenticate_scram(kc, r, msg);
}
