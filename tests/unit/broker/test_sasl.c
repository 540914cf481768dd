/*
 * Unit tests for src/broker/sasl.c: the RFC 7677 SCRAM-SHA-256 example
 * exchange byte for byte, SCRAM-SHA-512 exchanges against a client written
 * here from the formulas of RFC 5802, the failure paths (wrong password,
 * unknown user, nonce, channel binding, malformed and oversized messages),
 * saslname escapes, PLAIN, the stored credential's text form, and the
 * cleartext password check. Prints the cost of one derive / check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "base/err.h"
#include "broker/sasl.h"

#define S(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

static struct cfx_scram_cred derive(enum cfx_scram_mech m, const char *pw, const char *salt_b64,
				    uint32_t iter)
{
	struct cfx_scram_cred c;
	uint8_t salt[CFX_SCRAM_SALT_MAX];
	size_t salt_len = 0;

	if (salt_b64)
		assert_int_equal(
			cfx_base64_decode(salt_b64, strlen(salt_b64), salt, sizeof salt, &salt_len),
			0);
	assert_int_equal(cfx_scram_cred_derive(m, pw, strlen(pw), salt_b64 ? salt : NULL, salt_len,
					       iter, &c),
			 0);
	return c;
}

/* ------------------------------------------------------------------------
 * RFC 7677 section 3
 * ------------------------------------------------------------------------ */

static void test_rfc7677_example(void **state)
{
	static const char first[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
	static const char snonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
	static const char server_first[] = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
					   "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
	static const char final[] = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
				    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	static const char server_final[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
	struct cfx_scram_cred c =
		derive(CFX_SCRAM_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
	struct cfx_scram_server s;
	char user[64], out[CFX_SCRAM_SERVER_FIRST_MAX];
	const char *why = NULL;
	size_t n;
	static const uint8_t zero[sizeof c] = {0};

	(void)state;
	cfx_scram_server_init(&s);
	assert_int_equal(
		cfx_scram_server_start(&s, CFX_SCRAM_SHA256, S(first), user, sizeof user, &why), 0);
	assert_string_equal(user, "user");
	assert_int_equal(s.state, CFX_SCRAM_STARTED);
	cfx_scram_server_force_nonce(&s, snonce, strlen(snonce));
	assert_int_equal(cfx_scram_server_challenge(&s, &c, out, sizeof out, &n), 0);
	assert_string_equal(out, server_first);
	assert_int_equal(n, strlen(server_first));
	assert_int_equal(cfx_scram_server_finish(&s, S(final), out, sizeof out, &n, &why), 0);
	assert_string_equal(out, server_final);
	assert_int_equal(n, strlen(server_final));
	assert_int_equal(s.state, CFX_SCRAM_DONE);
	assert_memory_equal(&s.cred, zero, sizeof zero); /* the keys were wiped */
}

/* ------------------------------------------------------------------------
 * A client, from RFC 5802 section 3
 * ------------------------------------------------------------------------ */

static const EVP_MD *md(enum cfx_scram_mech m)
{
	return m == CFX_SCRAM_SHA512 ? EVP_sha512() : EVP_sha256();
}

static void hmac(enum cfx_scram_mech m, const uint8_t *key, size_t klen, const void *p, size_t n,
		 uint8_t *out)
{
	unsigned len;
	assert_non_null(HMAC(md(m), key, (int)klen, p, n, out, &len));
	assert_int_equal(len, cfx_scram_key_len(m));
}

/* Encodes a user name as a saslname ("," -> "=2C", "=" -> "=3D"). */
static void saslname(const char *user, char *out)
{
	for (; *user; user++) {
		if (*user == ',')
			out = stpcpy(out, "=2C");
		else if (*user == '=')
			out = stpcpy(out, "=3D");
		else
			*out++ = *user;
	}
	*out = '\0';
}

struct client {
	enum cfx_scram_mech m;
	char gs2[64];
	char first[1024]; /* client-first-message */
	char final[1200]; /* client-final-message */
	uint8_t server_key[CFX_SCRAM_KEY_MAX];
	uint8_t server_sig[CFX_SCRAM_KEY_MAX];
};

static void client_first(struct client *cl, enum cfx_scram_mech m, const char *gs2,
			 const char *user, const char *cnonce)
{
	char name[512];

	memset(cl, 0, sizeof *cl);
	cl->m = m;
	saslname(user, name);
	snprintf(cl->gs2, sizeof cl->gs2, "%s", gs2);
	snprintf(cl->first, sizeof cl->first, "%sn=%s,r=%s", gs2, name, cnonce);
}

/* Builds client-final from server-first, with `password`. */
static void client_final(struct client *cl, const char *server_first, const char *password)
{
	size_t klen = cfx_scram_key_len(cl->m), salt_len, bare_off = strlen(cl->gs2);
	const char *r = server_first + 2, *sp = strstr(server_first, ",s="),
		   *ip = strstr(server_first, ",i=");
	uint8_t salt[CFX_SCRAM_SALT_MAX], salted[CFX_SCRAM_KEY_MAX], ckey[CFX_SCRAM_KEY_MAX];
	uint8_t skey[CFX_SCRAM_KEY_MAX], csig[CFX_SCRAM_KEY_MAX], proof[CFX_SCRAM_KEY_MAX];
	char auth[2048], without_proof[1024], gs2_b64[128], proof_b64[128];
	unsigned hl;

	assert_true(strncmp(server_first, "r=", 2) == 0 && sp && ip);
	assert_int_equal(
		cfx_base64_decode(sp + 3, (size_t)(ip - sp - 3), salt, sizeof salt, &salt_len), 0);
	unsigned iter = (unsigned)strtoul(ip + 3, NULL, 10);
	assert_true(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
				      (int)iter, md(cl->m), (int)klen, salted));
	hmac(cl->m, salted, klen, "Client Key", 10, ckey);
	assert_true(EVP_Digest(ckey, klen, skey, &hl, md(cl->m), NULL));
	hmac(cl->m, salted, klen, "Server Key", 10, cl->server_key);
	cfx_base64_encode((const uint8_t *)cl->gs2, strlen(cl->gs2), gs2_b64, sizeof gs2_b64);
	snprintf(without_proof, sizeof without_proof, "c=%s,r=%.*s", gs2_b64, (int)(sp - r), r);
	snprintf(auth, sizeof auth, "%s,%s,%s", cl->first + bare_off, server_first, without_proof);
	hmac(cl->m, skey, klen, auth, strlen(auth), csig);
	for (size_t i = 0; i < klen; i++)
		proof[i] = ckey[i] ^ csig[i];
	hmac(cl->m, cl->server_key, klen, auth, strlen(auth), cl->server_sig);
	cfx_base64_encode(proof, klen, proof_b64, sizeof proof_b64);
	snprintf(cl->final, sizeof cl->final, "%s,p=%s", without_proof, proof_b64);
}

/* Checks the server's "v=". */
static void client_check_final(const struct client *cl, const char *server_final)
{
	char b64[128];

	cfx_base64_encode(cl->server_sig, cfx_scram_key_len(cl->m), b64, sizeof b64);
	assert_true(strncmp(server_final, "v=", 2) == 0);
	assert_string_equal(server_final + 2, b64);
}

/*
 * Runs one exchange: the server has `cred` (NULL: unknown user), the client
 * uses `password`. Returns finish()'s result; server-final in out.
 */
static int exchange(enum cfx_scram_mech m, const struct cfx_scram_cred *cred, const char *user,
		    const char *password, char *out, size_t out_max, const char **why)
{
	struct cfx_scram_server s;
	struct client cl;
	char name[CFX_SCRAM_USER_MAX + 1], sf[CFX_SCRAM_SERVER_FIRST_MAX];
	size_t n;
	int rc;

	client_first(&cl, m, "n,,", user, "fyko+d2lbbFgONRv9qkxdawL");
	cfx_scram_server_init(&s);
	assert_int_equal(cfx_scram_server_start(&s, m, (const uint8_t *)cl.first, strlen(cl.first),
						name, sizeof name, why),
			 0);
	assert_string_equal(name, user);
	assert_int_equal(cfx_scram_server_challenge(&s, cred, sf, sizeof sf, &n), 0);
	assert_int_equal(strlen(sf), n);
	client_final(&cl, sf, password);
	rc = cfx_scram_server_finish(&s, (const uint8_t *)cl.final, strlen(cl.final), out, out_max,
				     &n, why);
	assert_int_equal(strlen(out), n);
	if (rc == 0)
		client_check_final(&cl, out);
	return rc;
}

static void test_sha512_exchange(void **state)
{
	struct cfx_scram_cred c = derive(CFX_SCRAM_SHA512, "s3cr3t p4ss", NULL, 4096);
	char out[CFX_SCRAM_SERVER_FINAL_MAX];
	const char *why;

	(void)state;
	assert_int_equal(c.salt_len, CFX_SCRAM_SALT_DEFAULT);
	assert_int_equal(
		exchange(CFX_SCRAM_SHA512, &c, "alice", "s3cr3t p4ss", out, sizeof out, &why), 0);
	/* SHA-256 through the same client, with more iterations. */
	c = derive(CFX_SCRAM_SHA256, "pw", NULL, 8192);
	assert_int_equal(exchange(CFX_SCRAM_SHA256, &c, "bob", "pw", out, sizeof out, &why), 0);
}

static void test_wrong_password(void **state)
{
	struct cfx_scram_cred c = derive(CFX_SCRAM_SHA512, "right", NULL, 4096);
	char out[CFX_SCRAM_SERVER_FINAL_MAX];
	const char *why;

	(void)state;
	assert_int_equal(exchange(CFX_SCRAM_SHA512, &c, "alice", "wrong", out, sizeof out, &why),
			 CFX_EAUTH);
	assert_string_equal(out, "e=invalid-proof");
	assert_string_equal(why, "invalid proof");
}

/* An unknown user goes through start and challenge like a real one and fails at finish. */
static void test_unknown_user(void **state)
{
	static const uint8_t key[32] = {1, 2, 3};
	struct cfx_scram_server s1, s2, s3;
	char user[64], sf1[CFX_SCRAM_SERVER_FIRST_MAX], sf2[CFX_SCRAM_SERVER_FIRST_MAX],
		sf3[CFX_SCRAM_SERVER_FIRST_MAX], out[CFX_SCRAM_SERVER_FINAL_MAX];
	const char *why, *why_wrong;
	size_t n;

	(void)state;
	assert_int_equal(cfx_scram_fake_configure(key, sizeof key, 4096), 0);
	assert_int_equal(cfx_scram_fake_configure(key, 8, 4096), CFX_EINVAL);
	assert_int_equal(cfx_scram_fake_configure(key, sizeof key, 100), CFX_EINVAL);

	cfx_scram_server_init(&s1);
	cfx_scram_server_init(&s2);
	cfx_scram_server_init(&s3);
	assert_int_equal(cfx_scram_server_start(&s1, CFX_SCRAM_SHA256, S("n,,n=ghost,r=abc"), user,
						sizeof user, &why),
			 0);
	assert_int_equal(cfx_scram_server_start(&s2, CFX_SCRAM_SHA256, S("n,,n=ghost,r=xyz"), user,
						sizeof user, &why),
			 0);
	assert_int_equal(cfx_scram_server_start(&s3, CFX_SCRAM_SHA256, S("n,,n=phantom,r=abc"),
						user, sizeof user, &why),
			 0);
	assert_int_equal(cfx_scram_server_challenge(&s1, NULL, sf1, sizeof sf1, &n), 0);
	assert_int_equal(cfx_scram_server_challenge(&s2, NULL, sf2, sizeof sf2, &n), 0);
	assert_int_equal(cfx_scram_server_challenge(&s3, NULL, sf3, sizeof sf3, &n), 0);
	/* Same shape as a real one: 32-byte salt (44 base64 characters), i=4096. */
	const char *s_at = strstr(sf1, ",s="), *i_at = strstr(sf1, ",i=");
	assert_non_null(s_at);
	assert_non_null(i_at);
	assert_int_equal(i_at - s_at - 3, CFX_BASE64_ENC_LEN(CFX_SCRAM_SALT_DEFAULT));
	assert_string_equal(i_at, ",i=4096");
	/* Stable per user name, different between names. */
	assert_string_equal(strstr(sf1, ",s="), strstr(sf2, ",s="));
	assert_string_not_equal(strstr(sf1, ",s="), strstr(sf3, ",s="));
	cfx_scram_server_clear(&s1);
	cfx_scram_server_clear(&s2);
	cfx_scram_server_clear(&s3);

	/* The full exchange fails exactly as a wrong password does. */
	struct cfx_scram_cred c = derive(CFX_SCRAM_SHA256, "right", NULL, 4096);
	char out_wrong[CFX_SCRAM_SERVER_FINAL_MAX];
	assert_int_equal(exchange(CFX_SCRAM_SHA256, &c, "ghost", "wrong", out_wrong,
				  sizeof out_wrong, &why_wrong),
			 CFX_EAUTH);
	assert_int_equal(exchange(CFX_SCRAM_SHA256, NULL, "ghost", "right", out, sizeof out, &why),
			 CFX_EAUTH);
	assert_string_equal(out, out_wrong);
	assert_string_equal(why, why_wrong);
}

/* ------------------------------------------------------------------------
 * Failures of step 3
 * ------------------------------------------------------------------------ */

/* Starts and challenges an exchange for user "u" with a fixed server nonce "SN". */
static void challenged(struct cfx_scram_server *s, const struct cfx_scram_cred *c,
		       const char *first)
{
	char user[64], sf[CFX_SCRAM_SERVER_FIRST_MAX];
	const char *why;
	size_t n;

	cfx_scram_server_init(s);
	assert_int_equal(cfx_scram_server_start(s, c->mech, (const uint8_t *)first, strlen(first),
						user, sizeof user, &why),
			 0);
	cfx_scram_server_force_nonce(s, "SN", 2);
	assert_int_equal(cfx_scram_server_challenge(s, c, sf, sizeof sf, &n), 0);
}

static int finish_str(struct cfx_scram_server *s, const char *final, char *out, size_t out_max,
		      const char **why)
{
	size_t n;
	return cfx_scram_server_finish(s, (const uint8_t *) final, strlen(final), out, out_max, &n,
				       why);
}

static void test_final_failures(void **state)
{
	struct cfx_scram_cred c = derive(CFX_SCRAM_SHA256, "pw", "QSXCR+Q6sek8bf92", 4096);
	static const char proof[] = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	static const struct {
		const char *first, *final, *e, *why;
		int rc;
	} cases[] = {
		/* Nonce: not the combined one. */
		{"n,,n=u,r=CN", "c=biws,r=CNXX,%s", "e=other-error", "nonce mismatch", CFX_EAUTH},
		{"n,,n=u,r=CN", "c=biws,r=CN,%s", "e=other-error", "nonce mismatch", CFX_EAUTH},
		/* The channel binding must echo the gs2 header as sent. */
		{"y,,n=u,r=CN", "c=biws,r=CNSN,%s", "e=channel-bindings-dont-match",
		 "channel binding does not echo the gs2 header", CFX_EAUTH},
		{"n,a=u,n=u,r=CN", "c=biws,r=CNSN,%s", "e=channel-bindings-dont-match",
		 "channel binding does not echo the gs2 header", CFX_EAUTH},
		/* Malformed. */
		{"n,,n=u,r=CN", "r=CNSN,%s", "e=invalid-encoding", "missing channel binding",
		 CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biw,r=CNSN,%s", "e=invalid-encoding",
		 "bad channel binding base64", CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,%s", "e=invalid-encoding", "missing nonce", CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,r=CNSN", "e=invalid-encoding", "missing proof", CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,r=CNSN,%s,x=1", "e=invalid-encoding",
		 "proof is not the last attribute", CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,r=CNSN,p=AAAA", "e=invalid-encoding", "bad proof encoding",
		 CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,r=CNSN,p=dHzb!apWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		 "e=invalid-encoding", "bad proof encoding", CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,r=CNSN,1x=y,%s", "e=invalid-encoding", "bad extension",
		 CFX_EPARSE},
		{"n,,n=u,r=CN", "c=biws,r=CNSN,,%s", "e=invalid-encoding", "bad extension",
		 CFX_EPARSE},
		/* Well-formed, with an extension before the proof, but the proof is wrong. */
		{"n,,n=u,r=CN", "c=biws,r=CNSN,ext=1,%s", "e=invalid-proof", "invalid proof",
		 CFX_EAUTH},
	};
	struct cfx_scram_server s;
	char final[512], out[CFX_SCRAM_SERVER_FINAL_MAX];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		challenged(&s, &c, cases[i].first);
		snprintf(final, sizeof final, cases[i].final, proof);
		assert_int_equal(finish_str(&s, final, out, sizeof out, &why), cases[i].rc);
		assert_string_equal(out, cases[i].e);
		assert_string_equal(why, cases[i].why);
		assert_int_equal(s.state, CFX_SCRAM_FAILED);
	}

	/* Oversized. */
	static char big[CFX_SCRAM_MSG_MAX + 2];
	memset(big, 'a', sizeof big - 1);
	challenged(&s, &c, "n,,n=u,r=CN");
	assert_int_equal(finish_str(&s, big, out, sizeof out, &why), CFX_E2BIG);
	/* No room for the e= reply: still refused, nothing written. */
	challenged(&s, &c, "n,,n=u,r=CN");
	size_t n = 99;
	assert_int_equal(cfx_scram_server_finish(&s, S("c=biws"), out, 4, &n, &why), CFX_EPARSE);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
	challenged(&s, &c, "n,,n=u,r=CN");
	assert_int_equal(cfx_scram_server_finish(&s, S("c=biws"), NULL, 0, &n, &why), CFX_EPARSE);
	/* A credential of another mechanism does not fit. */
	struct cfx_scram_cred c512 = derive(CFX_SCRAM_SHA512, "pw", NULL, 4096);
	char user[8], sf[CFX_SCRAM_SERVER_FIRST_MAX];
	cfx_scram_server_init(&s);
	assert_int_equal(cfx_scram_server_start(&s, CFX_SCRAM_SHA256, S("n,,n=u,r=CN"), user,
						sizeof user, &why),
			 0);
	assert_int_equal(cfx_scram_server_challenge(&s, &c512, sf, sizeof sf, &n), CFX_EINVAL);
	/* server-first that does not fit the caller's buffer. */
	cfx_scram_server_init(&s);
	assert_int_equal(cfx_scram_server_start(&s, CFX_SCRAM_SHA256, S("n,,n=u,r=CN"), user,
						sizeof user, &why),
			 0);
	assert_int_equal(cfx_scram_server_challenge(&s, &c, sf, 10, &n), CFX_E2BIG);
	assert_int_equal(s.state, CFX_SCRAM_FAILED);
}

/* ------------------------------------------------------------------------
 * Step 1
 * ------------------------------------------------------------------------ */

static int start_str(const char *first, char *user, size_t user_max, const char **why)
{
	struct cfx_scram_server s;
	int rc;

	cfx_scram_server_init(&s);
	rc = cfx_scram_server_start(&s, CFX_SCRAM_SHA256, (const uint8_t *)first, strlen(first),
				    user, user_max, why);
	assert_int_equal(s.state, rc ? CFX_SCRAM_FAILED : CFX_SCRAM_STARTED);
	return rc;
}

static void test_first_messages(void **state)
{
	static const struct {
		const char *msg;
		int rc;
		const char *user_or_why;
	} cases[] = {
		{"n,,n=user,r=abc", 0, "user"},
		{"y,,n=user,r=abc", 0, "user"},
		{"n,a=user,n=user,r=abc", 0, "user"},
		{"n,,n=user,r=abc,tokenauth=true", 0, "user"}, /* Kafka delegation tokens */
		{"n,,n=user,r=abc,a=1,bb=2=3", 0, "user"},
		{"n,,n=a=2Cb=3Dc,r=abc", 0, "a,b=c"},
		{"n,,n==3D=3D,r=abc", 0, "=="},
		{"n,a=a=2Cb,n=a=2Cb,r=x", 0, "a,b"},
		{"n,,n=\xc3\xa9t\xc3\xa9,r=x", 0, "\xc3\xa9t\xc3\xa9"},
		{"p=tls-unique,,n=user,r=abc", CFX_EUNSUPPORTED,
		 "channel binding is not supported"},
		{"n,,m=x,n=user,r=abc", CFX_EUNSUPPORTED, "mandatory extension not supported"},
		{"n,a=other,n=user,r=abc", CFX_EAUTH,
		 "authorization identity differs from the user"},
		{"", CFX_EPARSE, "missing gs2 header"},
		{"n", CFX_EPARSE, "missing gs2 header"},
		{"n,", CFX_EPARSE, "missing gs2 header"},
		{"n,,", CFX_EPARSE, "missing user name"},
		{"x,,n=user,r=abc", CFX_EPARSE, "bad channel-binding flag"},
		{"nn,,n=user,r=abc", CFX_EPARSE, "bad channel-binding flag"},
		{"n,b=u,n=user,r=abc", CFX_EPARSE, "bad authzid"},
		{"n,,r=abc", CFX_EPARSE, "missing user name"},
		{"n,,n=user", CFX_EPARSE, "missing nonce"},
		{"n,,n=user,", CFX_EPARSE, "missing nonce"},
		{"n,,n=user,s=abc", CFX_EPARSE, "missing nonce"},
		{"n,,n=user,r=", CFX_EPARSE, "bad nonce"},
		{"n,,n=user,r=a b", CFX_EPARSE, "bad nonce"},
		{"n,,n=user,r=a\x7f", CFX_EPARSE, "bad nonce"},
		{"n,,n=user,r=abc,", CFX_EPARSE, "bad extension"},
		{"n,,n=user,r=abc,x", CFX_EPARSE, "bad extension"},
		{"n,,n=user,r=abc,x=", CFX_EPARSE, "bad extension"},
		{"n,,n=user,r=abc,1=y", CFX_EPARSE, "bad extension"},
		{"n,,n=,r=abc", CFX_EPARSE, "empty user name"},
		{"n,,n=a=2c,r=abc", CFX_EPARSE, "bad '=' escape in a user name"},
		{"n,,n=a=41,r=abc", CFX_EPARSE, "bad '=' escape in a user name"},
		{"n,,n=a=,r=abc", CFX_EPARSE, "bad '=' escape in a user name"},
		{"n,,n=a=2,r=abc", CFX_EPARSE, "bad '=' escape in a user name"},
		{"n,,n=a=b,r=abc", CFX_EPARSE, "bad '=' escape in a user name"},
	};
	char user[CFX_SCRAM_USER_MAX + 1];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = start_str(cases[i].msg, user, sizeof user, &why);
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): rc %d, want %d (%s)", i, cases[i].msg, rc,
				 cases[i].rc, why ? why : "-");
		if (rc == 0)
			assert_string_equal(user, cases[i].user_or_why);
		else
			assert_string_equal(why, cases[i].user_or_why);
	}

	/* A NUL in a user name (counted length). */
	struct cfx_scram_server s;
	cfx_scram_server_init(&s);
	assert_int_equal(cfx_scram_server_start(&s, CFX_SCRAM_SHA256, S("n,,n=a\0b,r=x"), user,
						sizeof user, &why),
			 CFX_EPARSE);
	assert_string_equal(why, "NUL in a user name");
}

static void test_first_limits(void **state)
{
	static char msg[CFX_SCRAM_MSG_MAX + 64];
	char user[CFX_SCRAM_USER_MAX + 1], name[4 * CFX_SCRAM_USER_MAX];
	const char *why;

	(void)state;
	/* User name: 255 bytes decoded is fine, even as 255 escapes; 256 is not. */
	memset(name, 'u', CFX_SCRAM_USER_MAX);
	name[CFX_SCRAM_USER_MAX] = '\0';
	snprintf(msg, sizeof msg, "n,,n=%s,r=x", name);
	assert_int_equal(start_str(msg, user, sizeof user, &why), 0);
	assert_int_equal(strlen(user), CFX_SCRAM_USER_MAX);
	assert_int_equal(start_str(msg, user, CFX_SCRAM_USER_MAX, &why), CFX_E2BIG);
	snprintf(msg, sizeof msg, "n,,n=%su,r=x", name);
	assert_int_equal(start_str(msg, user, sizeof user, &why), CFX_E2BIG);
	assert_string_equal(why, "user name too long");
	name[0] = '\0';
	for (int i = 0; i < CFX_SCRAM_USER_MAX; i++)
		strcat(name, "=2C");
	snprintf(msg, sizeof msg, "y,a=%s,n=%s,r=x", name, name);
	assert_int_equal(start_str(msg, user, sizeof user, &why), 0);
	assert_int_equal(strlen(user), CFX_SCRAM_USER_MAX);
	snprintf(msg, sizeof msg, "y,a=%s=3D,n=%s,r=x", name, name);
	assert_int_equal(start_str(msg, user, sizeof user, &why), CFX_E2BIG);

	/* Nonce: CFX_SCRAM_NONCE_MAX bytes fine, one more not. */
	char nonce[CFX_SCRAM_NONCE_MAX + 2];
	memset(nonce, 'n', CFX_SCRAM_NONCE_MAX);
	nonce[CFX_SCRAM_NONCE_MAX] = '\0';
	snprintf(msg, sizeof msg, "n,,n=u,r=%s", nonce);
	assert_int_equal(start_str(msg, user, sizeof user, &why), 0);
	strcat(nonce, "n");
	snprintf(msg, sizeof msg, "n,,n=u,r=%s", nonce);
	assert_int_equal(start_str(msg, user, sizeof user, &why), CFX_E2BIG);
	assert_string_equal(why, "nonce too long");

	/* The whole message. */
	memset(msg, 0, sizeof msg);
	strcpy(msg, "n,,n=u,r=x,ext=");
	memset(msg + strlen(msg), 'v', CFX_SCRAM_MSG_MAX - strlen(msg));
	assert_int_equal(strlen(msg), CFX_SCRAM_MSG_MAX);
	assert_int_equal(start_str(msg, user, sizeof user, &why), 0);
	strcat(msg, "v");
	assert_int_equal(start_str(msg, user, sizeof user, &why), CFX_E2BIG);
	assert_string_equal(why, "client-first-message too long");
}

/* Users whose names need escapes go through the whole exchange; the server nonce is sane. */
static void test_escaped_user_exchange(void **state)
{
	struct cfx_scram_cred c = derive(CFX_SCRAM_SHA512, "pw", NULL, 4096);
	char out[CFX_SCRAM_SERVER_FINAL_MAX];
	const char *why;
	struct cfx_scram_server s;
	char user[64], sf[CFX_SCRAM_SERVER_FIRST_MAX];
	size_t n;

	(void)state;
	assert_int_equal(exchange(CFX_SCRAM_SHA512, &c, "a,b=c", "pw", out, sizeof out, &why), 0);

	/* Random server nonce: CFX_SCRAM_SNONCE_LEN printable characters, no ','. */
	cfx_scram_server_init(&s);
	assert_int_equal(cfx_scram_server_start(&s, CFX_SCRAM_SHA512, S("n,,n=u,r=CN"), user,
						sizeof user, &why),
			 0);
	assert_int_equal(cfx_scram_server_challenge(&s, &c, sf, sizeof sf, &n), 0);
	const char *end = strchr(sf, ',');
	assert_int_equal(end - sf, 2 + 2 + CFX_SCRAM_SNONCE_LEN);
	for (const char *p = sf + 4; p < end; p++)
		assert_true(*p > 0x20 && *p < 0x7f && *p != ',');
	cfx_scram_server_clear(&s);
	assert_int_equal(s.state, CFX_SCRAM_INIT);
}

/* ------------------------------------------------------------------------
 * PLAIN
 * ------------------------------------------------------------------------ */

static void test_plain(void **state)
{
	struct cfx_view z, u, p;
	const char *why;
	static uint8_t big[3 * CFX_SASL_PLAIN_FIELD_MAX + 3];

	(void)state;
	assert_int_equal(cfx_sasl_plain_parse(S("\0user\0pass"), &z, &u, &p, &why), 0);
	assert_int_equal(z.len, 0);
	assert_true(cfx_view_eq_str(u, "user"));
	assert_true(cfx_view_eq_str(p, "pass"));
	assert_int_equal(cfx_sasl_plain_parse(S("user\0user\0pa ss"), &z, &u, &p, &why), 0);
	assert_true(cfx_view_eq_str(z, "user"));
	assert_true(cfx_view_eq_str(p, "pa ss"));
	assert_int_equal(cfx_sasl_plain_parse(S("other\0user\0pass"), &z, &u, &p, &why), CFX_EAUTH);
	assert_int_equal(cfx_sasl_plain_parse(S("user\0pass"), &z, &u, &p, &why), CFX_EPARSE);
	assert_int_equal(cfx_sasl_plain_parse(S(""), &z, &u, &p, &why), CFX_EPARSE);
	assert_int_equal(cfx_sasl_plain_parse(NULL, 0, &z, &u, &p, &why), CFX_EPARSE);
	assert_int_equal(cfx_sasl_plain_parse(S("\0\0pass"), &z, &u, &p, &why), CFX_EPARSE);
	assert_int_equal(cfx_sasl_plain_parse(S("\0user\0"), &z, &u, &p, &why), CFX_EPARSE);
	assert_int_equal(cfx_sasl_plain_parse(S("\0user\0pa\0ss"), &z, &u, &p, &why), CFX_EPARSE);
	assert_string_equal(why, "NUL in the PLAIN password");

	/* 255 bytes per field is the limit. */
	memset(big, 'x', sizeof big);
	big[0] = 0;
	big[1 + CFX_SASL_PLAIN_FIELD_MAX] = 0;
	assert_int_equal(
		cfx_sasl_plain_parse(big, 2 + 2 * CFX_SASL_PLAIN_FIELD_MAX, &z, &u, &p, &why), 0);
	assert_int_equal(u.len, CFX_SASL_PLAIN_FIELD_MAX);
	assert_int_equal(p.len, CFX_SASL_PLAIN_FIELD_MAX);
	assert_int_equal(
		cfx_sasl_plain_parse(big, 3 + 2 * CFX_SASL_PLAIN_FIELD_MAX, &z, &u, &p, &why),
		CFX_E2BIG);
	assert_int_equal(cfx_sasl_plain_parse(big, sizeof big, &z, &u, &p, &why), CFX_E2BIG);
	assert_string_equal(why, "PLAIN message too long");
}

/* ------------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------------ */

static void test_cred_text(void **state)
{
	struct cfx_scram_cred c, back;
	char text[CFX_SCRAM_CRED_TEXT_MAX];
	int n;

	(void)state;
	for (int m = CFX_SCRAM_SHA256; m <= CFX_SCRAM_SHA512; m++) {
		c = derive((enum cfx_scram_mech)m, "pw", NULL, 4096);
		n = cfx_scram_cred_format(&c, text, sizeof text);
		assert_true(n > 0);
		assert_int_equal((size_t)n, strlen(text));
		assert_int_equal(cfx_scram_cred_parse(text, (size_t)n, &back), 0);
		assert_memory_equal(&back, &c, sizeof c);
		assert_int_equal(cfx_scram_cred_format(&c, text, (size_t)n), CFX_E2BIG);
	}
	/* The largest credential fits CFX_SCRAM_CRED_TEXT_MAX. */
	memset(&c, 0xff, sizeof c);
	c.mech = CFX_SCRAM_SHA512;
	c.iterations = CFX_SCRAM_ITER_MAX;
	c.salt_len = CFX_SCRAM_SALT_MAX;
	n = cfx_scram_cred_format(&c, text, sizeof text);
	assert_true(n > 0);

	/* The RFC 7677 credential, by hand. */
	c = derive(CFX_SCRAM_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
	n = cfx_scram_cred_format(&c, text, sizeof text);
	assert_true(strncmp(text, "SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:", 44) == 0);

	static const char *bad[] = {
		"",
		"SCRAM-SHA-256",
		"SCRAM-SHA-1:4096:W22ZaJ0SNY7soEsUEjb6gQ==:AAAA:AAAA",
		"scram-sha-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
		"SCRAM-SHA-256:04096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
		"SCRAM-SHA-256:4095:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
		"SCRAM-SHA-256:1000001:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
		"SCRAM-SHA-256:99999999999:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
		"SCRAM-SHA-256:+4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
		"SCRAM-SHA-256:4096::%s:%s",
		"SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ=:%s:%s",
		"SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s:",
		"SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s",
		"SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%sAAAA",
		"SCRAM-SHA-512:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s", /* 32-byte keys for SHA-512 */
		" SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s",
	};
	char stored[64], server[64], line[512];
	cfx_base64_encode(c.stored_key, 32, stored, sizeof stored);
	cfx_base64_encode(c.server_key, 32, server, sizeof server);
	snprintf(line, sizeof line, "SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:%s:%s", stored,
		 server);
	assert_string_equal(line, text);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(line, sizeof line, bad[i], stored, server);
		if (cfx_scram_cred_parse(line, strlen(line), &back) != CFX_EPARSE)
			fail_msg("accepted: %s", line);
	}
	/* The salt may be 1..64 bytes. */
	snprintf(line, sizeof line, "SCRAM-SHA-256:4096:AA==:%s:%s", stored, server);
	assert_int_equal(cfx_scram_cred_parse(line, strlen(line), &back), 0);
	assert_int_equal(back.salt_len, 1);
}

static void test_cred_check(void **state)
{
	struct cfx_scram_cred c, c2;
	uint8_t salt[CFX_SCRAM_SALT_MAX + 1] = {0};

	(void)state;
	for (int m = CFX_SCRAM_SHA256; m <= CFX_SCRAM_SHA512; m++) {
		c = derive((enum cfx_scram_mech)m, "correct horse", NULL, 4096);
		assert_true(cfx_scram_cred_check(&c, "correct horse", 13));
		assert_false(cfx_scram_cred_check(&c, "correct hors", 12));
		assert_false(cfx_scram_cred_check(&c, "correct horsE", 13));
		assert_false(cfx_scram_cred_check(&c, "", 0));
		/* Same HMAC key as "correct horse": refused for its NUL. */
		assert_false(cfx_scram_cred_check(&c, "correct horse\0", 14));
		/* A fresh random salt each time. */
		c2 = derive((enum cfx_scram_mech)m, "correct horse", NULL, 4096);
		assert_memory_not_equal(c.salt, c2.salt, c.salt_len);
		assert_memory_not_equal(c.stored_key, c2.stored_key, cfx_scram_key_len(c.mech));
	}
	/* RFC 7677: the check agrees with the exchange's credential. */
	c = derive(CFX_SCRAM_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
	assert_true(cfx_scram_cred_check(&c, "pencil", 6));

	assert_int_equal(cfx_scram_cred_derive(CFX_SCRAM_SHA256, "pw", 2, NULL, 0, 4095, &c),
			 CFX_EINVAL);
	assert_int_equal(cfx_scram_cred_derive(CFX_SCRAM_SHA256, "pw", 2, salt, 0, 4096, &c),
			 CFX_EINVAL);
	assert_int_equal(cfx_scram_cred_derive(CFX_SCRAM_SHA256, "pw", 2, salt,
					       CFX_SCRAM_SALT_MAX + 1, 4096, &c),
			 CFX_EINVAL);
	assert_int_equal(cfx_scram_cred_derive(CFX_SCRAM_SHA256, "", 0, NULL, 0, 4096, &c),
			 CFX_EINVAL);
	assert_int_equal(cfx_scram_cred_derive(CFX_SCRAM_SHA256, "p\0w", 3, NULL, 0, 4096, &c),
			 CFX_EINVAL);
	assert_int_equal(cfx_scram_cred_derive(CFX_SCRAM_SHA256, "pw", CFX_SCRAM_PASSWORD_MAX + 1,
					       NULL, 0, 4096, &c),
			 CFX_EINVAL);

	enum cfx_scram_mech m;
	assert_int_equal(cfx_scram_mech_parse("SCRAM-SHA-512", 13, &m), 0);
	assert_int_equal(m, CFX_SCRAM_SHA512);
	assert_string_equal(cfx_scram_mech_name(m), "SCRAM-SHA-512");
	assert_int_equal(cfx_scram_mech_parse("SCRAM-SHA-256", 13, &m), 0);
	assert_int_equal(m, CFX_SCRAM_SHA256);
	assert_string_equal(cfx_scram_mech_name(m), "SCRAM-SHA-256");
	assert_int_equal(cfx_scram_mech_parse("SCRAM-SHA-1", 11, &m), CFX_EUNSUPPORTED);
	assert_int_equal(cfx_scram_mech_parse("PLAIN", 5, &m), CFX_EUNSUPPORTED);
	assert_int_equal(cfx_scram_key_len(CFX_SCRAM_SHA256), 32);
	assert_int_equal(cfx_scram_key_len(CFX_SCRAM_SHA512), 64);
}

/* Not a test of speed (no assertion): prints what one PBKDF2 costs here. */
static void test_kdf_timing(void **state)
{
	enum { ROUNDS = 20 };
	struct cfx_scram_cred c;
	struct timespec t0, t1;

	(void)state;
	for (int m = CFX_SCRAM_SHA256; m <= CFX_SCRAM_SHA512; m++) {
		double derive_us, check_us;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < ROUNDS; i++)
			assert_int_equal(cfx_scram_cred_derive((enum cfx_scram_mech)m, "password",
							       8, NULL, 0, 4096, &c),
					 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		derive_us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
			     (double)(t1.tv_nsec - t0.tv_nsec)) /
			    1e3 / ROUNDS;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < ROUNDS; i++)
			assert_true(cfx_scram_cred_check(&c, "password", 8));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		check_us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
			    (double)(t1.tv_nsec - t0.tv_nsec)) /
			   1e3 / ROUNDS;
		printf("kdf: %s i=4096: derive %.0f us, check %.0f us\n",
		       cfx_scram_mech_name((enum cfx_scram_mech)m), derive_us, check_us);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_example),
		cmocka_unit_test(test_sha512_exchange),
		cmocka_unit_test(test_wrong_password),
		cmocka_unit_test(test_unknown_user),
		cmocka_unit_test(test_final_failures),
		cmocka_unit_test(test_first_messages),
		cmocka_unit_test(test_first_limits),
		cmocka_unit_test(test_escaped_user_exchange),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_cred_text),
		cmocka_unit_test(test_cred_check),
		cmocka_unit_test(test_kdf_timing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
