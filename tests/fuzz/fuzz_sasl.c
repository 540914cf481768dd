/*
 * fuzz_sasl.c - libFuzzer target for the SASL primitives (broker/sasl.c)
 * and the strict base64 under them (base/base64.c).
 *
 * Input layout:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl    bits 0-2: mode (value % 5, below); FZ_SASL_* flags
 *      1 |    N | mode-specific bytes
 *
 * Modes:
 *   0  PLAIN: the rest is a PLAIN message (cfx_sasl_plain_parse).
 *   1  SCRAM step 1: the rest is a client-first-message.
 *   2  SCRAM exchange: [len u16 big-endian][client-first][rest]. The server
 *      holds the RFC 7677 credential (password "pencil", 4096 rounds) for
 *      every user, or none with FZ_SASL_UNKNOWN. The rest is the
 *      client-final-message; with FZ_SASL_PREFIX the target writes
 *      "c=<base64 gs2 header>,r=<combined nonce>" before it (so mutations
 *      reach the proof); with FZ_SASL_CLIENT the rest is a password and the
 *      target plays an honest client (RFC 5802 formulas, written here).
 *   3  credential text: the rest goes to cfx_scram_cred_parse.
 *   4  base64: the rest goes to cfx_base64_decode.
 *
 * Beyond "no crash, no out-of-bounds read, no undefined behaviour, no
 * leak":
 *  - every function returns one of its documented codes, with a reason
 *    exactly when it fails, and leaves the exchange in the state it says;
 *  - a decoded user name re-encodes to the "n=" field it came from, a
 *    parsed credential formats back to the very same text, and decoded
 *    base64 encodes back to the same characters (the encodings are
 *    canonical);
 *  - PLAIN views lie inside the input and respect the field limits;
 *  - an exchange succeeds if and only if the honest client used "pencil"
 *    for a known user, and then the server signature is the one the client
 *    computes; the keys are wiped once the exchange ends.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "base/err.h"
#include "broker/sasl.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_SASL_MODES	  5u
#define FZ_SASL_MODE_MASK 0x07u
#define FZ_SASL_SHA512	  0x08u /* mode 2: SCRAM-SHA-512 (else -256) */
#define FZ_SASL_UNKNOWN	  0x10u /* mode 2: the user does not exist */
#define FZ_SASL_PREFIX	  0x20u /* mode 2: the target writes c= and r= */
#define FZ_SASL_CLIENT	  0x40u /* mode 2: the rest is a password; honest client */

#define PASSWORD	    "pencil"
#define SALT_B64	    "W22ZaJ0SNY7soEsUEjb6gQ=="
#define CLIENT_PASSWORD_MAX 64u /* longer passwords are not tried (PBKDF2 per input) */

static const struct cfx_scram_cred *fixed_cred(enum cfx_scram_mech m)
{
	static struct cfx_scram_cred creds[2];
	static int ready[2];
	uint8_t salt[16];
	size_t salt_len;

	if (!ready[m]) {
		FZ_CHECK(cfx_base64_decode(SALT_B64, strlen(SALT_B64), salt, sizeof salt,
					   &salt_len) == 0);
		FZ_CHECK(cfx_scram_cred_derive(m, PASSWORD, strlen(PASSWORD), salt, salt_len, 4096,
					       &creds[m]) == 0);
		ready[m] = 1;
	}
	return &creds[m];
}

static int all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------ */

static void fuzz_plain(const uint8_t *p, size_t len)
{
	struct cfx_view z, u, pw;
	const char *why = NULL;
	int rc = cfx_sasl_plain_parse(p, len, &z, &u, &pw, &why);

	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_E2BIG || rc == CFX_EAUTH);
	FZ_CHECK((rc != 0) == (why != NULL));
	if (rc)
		return;
	FZ_CHECK(fz_view_within(z, p, len) && fz_view_within(u, p, len) &&
		 fz_view_within(pw, p, len));
	FZ_CHECK(u.len >= 1 && u.len <= CFX_SASL_PLAIN_FIELD_MAX);
	FZ_CHECK(pw.len >= 1 && pw.len <= CFX_SASL_PLAIN_FIELD_MAX);
	FZ_CHECK(z.len == 0 || cfx_view_eq(z, u));
	FZ_CHECK(!memchr(u.p, 0, u.len) && !memchr(pw.p, 0, pw.len));
	FZ_CHECK(z.len + u.len + pw.len + 2 == len);
}

/* Encodes a user name as a saslname. Returns its length. */
static size_t saslname(const char *user, char *out)
{
	char *o = out;
	for (; *user; user++) {
		if (*user == ',')
			o = stpcpy(o, "=2C");
		else if (*user == '=')
			o = stpcpy(o, "=3D");
		else
			*o++ = *user;
	}
	*o = '\0';
	return (size_t)(o - out);
}

/* Runs step 1 and checks it. Returns its result. */
static int checked_start(struct cfx_scram_server *s, enum cfx_scram_mech m, const uint8_t *p,
			 size_t len, char *user)
{
	char enc[3 * CFX_SCRAM_USER_MAX + 1];
	const char *why = NULL;
	int rc;

	cfx_scram_server_init(s);
	rc = cfx_scram_server_start(s, m, p, len, user, CFX_SCRAM_USER_MAX + 1, &why);
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_E2BIG || rc == CFX_EUNSUPPORTED ||
		 rc == CFX_EAUTH);
	FZ_CHECK((rc != 0) == (why != NULL));
	FZ_CHECK(s->state == (rc ? CFX_SCRAM_FAILED : CFX_SCRAM_STARTED));
	if (rc)
		return rc;
	FZ_CHECK(len <= CFX_SCRAM_MSG_MAX);
	FZ_CHECK(strlen(user) >= 1 && strlen(user) <= CFX_SCRAM_USER_MAX);
	FZ_CHECK(strcmp(user, s->user) == 0);
	/* gs2 header + bare = the message; bare starts with the user's "n=" field. */
	FZ_CHECK((size_t)s->gs2_len + s->bare_len == len);
	FZ_CHECK(memcmp(s->gs2, p, s->gs2_len) == 0 && s->gs2[s->gs2_len - 1] == ',');
	FZ_CHECK(memcmp(s->bare, p + s->gs2_len, s->bare_len) == 0);
	size_t n = saslname(user, enc);
	FZ_CHECK(s->bare_len >= n + 3 && memcmp(s->bare, "n=", 2) == 0 &&
		 memcmp(s->bare + 2, enc, n) == 0 && s->bare[2 + n] == ',');
	FZ_CHECK(s->cnonce_len >= 1 && s->cnonce_len <= CFX_SCRAM_NONCE_MAX);
	return 0;
}

static void fuzz_start(const uint8_t *p, size_t len)
{
	struct cfx_scram_server s;
	char user[CFX_SCRAM_USER_MAX + 1];

	checked_start(&s, CFX_SCRAM_SHA256, p, len, user);
}

/* ------------------------------------------------------------------------ */

static const EVP_MD *md(enum cfx_scram_mech m)
{
	return m == CFX_SCRAM_SHA512 ? EVP_sha512() : EVP_sha256();
}

static void hmac(enum cfx_scram_mech m, const uint8_t *key, size_t klen, const void *p, size_t n,
		 uint8_t *out)
{
	unsigned len;
	FZ_CHECK(HMAC(md(m), key, (int)klen, p, n, out, &len) != NULL);
}

/*
 * The honest client's final message for `server_first` and `pw`; the
 * expected server signature goes to sig.
 */
static size_t client_final(const struct cfx_scram_server *s, enum cfx_scram_mech m,
			   const char *server_first, const uint8_t *pw, size_t pw_len, char *out,
			   size_t out_max, uint8_t *sig)
{
	size_t klen = cfx_scram_key_len(m), salt_len;
	const char *sp = strstr(server_first, ",s="), *ip = strstr(server_first, ",i=");
	uint8_t salt[CFX_SCRAM_SALT_MAX], salted[CFX_SCRAM_KEY_MAX], ckey[CFX_SCRAM_KEY_MAX];
	uint8_t skey[CFX_SCRAM_KEY_MAX], csig[CFX_SCRAM_KEY_MAX], proof[CFX_SCRAM_KEY_MAX];
	uint8_t server_key[CFX_SCRAM_KEY_MAX];
	char gs2_b64[CFX_BASE64_ENC_LEN(CFX_SCRAM_GS2_MAX) + 1], proof_b64[128];
	unsigned hl;
	int n;

	FZ_CHECK(sp && ip);
	FZ_CHECK(cfx_base64_decode(sp + 3, (size_t)(ip - sp - 3), salt, sizeof salt, &salt_len) ==
		 0);
	FZ_CHECK(PKCS5_PBKDF2_HMAC((const char *)pw, (int)pw_len, salt, (int)salt_len, 4096, md(m),
				   (int)klen, salted));
	hmac(m, salted, klen, "Client Key", 10, ckey);
	FZ_CHECK(EVP_Digest(ckey, klen, skey, &hl, md(m), NULL));
	hmac(m, salted, klen, "Server Key", 10, server_key);
	cfx_base64_encode((const uint8_t *)s->gs2, s->gs2_len, gs2_b64, sizeof gs2_b64);
	n = snprintf(out, out_max, "c=%s,r=%.*s", gs2_b64, (int)(sp - server_first - 2),
		     server_first + 2);
	FZ_CHECK(n > 0 && (size_t)n < out_max);

	/* AuthMessage = bare "," server-first "," without-proof */
	static char auth[CFX_SCRAM_MSG_MAX + CFX_SCRAM_SERVER_FIRST_MAX + CFX_SCRAM_MSG_MAX + 2];
	size_t a = 0;
	memcpy(auth, s->bare, s->bare_len);
	a += s->bare_len;
	auth[a++] = ',';
	memcpy(auth + a, server_first, strlen(server_first));
	a += strlen(server_first);
	auth[a++] = ',';
	memcpy(auth + a, out, (size_t)n);
	a += (size_t)n;
	hmac(m, skey, klen, auth, a, csig);
	for (size_t i = 0; i < klen; i++)
		proof[i] = ckey[i] ^ csig[i];
	hmac(m, server_key, klen, auth, a, sig);
	cfx_base64_encode(proof, klen, proof_b64, sizeof proof_b64);
	int k = snprintf(out + n, out_max - (size_t)n, ",p=%s", proof_b64);
	FZ_CHECK(k > 0 && (size_t)k < out_max - (size_t)n);
	return (size_t)n + (size_t)k;
}

static void fuzz_exchange(uint8_t ctrl, const uint8_t *p, size_t len)
{
	enum cfx_scram_mech m = (ctrl & FZ_SASL_SHA512) ? CFX_SCRAM_SHA512 : CFX_SCRAM_SHA256;
	const struct cfx_scram_cred *cred = (ctrl & FZ_SASL_UNKNOWN) ? NULL : fixed_cred(m);
	static struct cfx_scram_server s;
	static char final[2 * CFX_SCRAM_MSG_MAX + CFX_BASE64_ENC_LEN(CFX_SCRAM_GS2_MAX)];
	char user[CFX_SCRAM_USER_MAX + 1], sf[CFX_SCRAM_SERVER_FIRST_MAX];
	char out[CFX_SCRAM_SERVER_FINAL_MAX];
	uint8_t sig[CFX_SCRAM_KEY_MAX];
	const uint8_t *rest;
	size_t first_len, rest_len, final_len, n;
	const char *why = NULL;
	int rc, honest = 0;

	if (len < 2)
		return;
	first_len = (size_t)p[0] << 8 | p[1];
	if (first_len > len - 2)
		first_len = len - 2;
	rest = p + 2 + first_len;
	rest_len = len - 2 - first_len;
	if (checked_start(&s, m, p + 2, first_len, user))
		return;

	rc = cfx_scram_server_challenge(&s, cred, sf, sizeof sf, &n);
	FZ_CHECK(rc == 0 && s.state == CFX_SCRAM_CHALLENGED && n == strlen(sf));
	FZ_CHECK(s.unknown_user == (cred == NULL));
	FZ_CHECK(memcmp(sf, "r=", 2) == 0 && memcmp(sf + 2, s.nonce, s.nonce_len) == 0);
	FZ_CHECK(s.nonce_len == s.cnonce_len + CFX_SCRAM_SNONCE_LEN);
	for (size_t i = 0; i < s.nonce_len; i++)
		FZ_CHECK(s.nonce[i] > 0x20 && s.nonce[i] < 0x7f && s.nonce[i] != ',');

	if ((ctrl & FZ_SASL_CLIENT) && rest_len <= CLIENT_PASSWORD_MAX && rest_len > 0) {
		final_len = client_final(&s, m, sf, rest, rest_len, final, sizeof final, sig);
		honest = 1;
	} else if (ctrl & FZ_SASL_PREFIX) {
		char gs2_b64[CFX_BASE64_ENC_LEN(CFX_SCRAM_GS2_MAX) + 1];
		cfx_base64_encode((const uint8_t *)s.gs2, s.gs2_len, gs2_b64, sizeof gs2_b64);
		int k = snprintf(final, sizeof final, "c=%s,r=%.*s", gs2_b64, (int)s.nonce_len,
				 s.nonce);
		FZ_CHECK(k > 0 && (size_t)k < sizeof final);
		final_len = (size_t)k + CFX_MIN(rest_len, sizeof final - (size_t)k);
		memcpy(final + k, rest, final_len - (size_t)k);
	} else {
		final_len = CFX_MIN(rest_len, sizeof final);
		memcpy(final, rest, final_len);
	}

	rc = cfx_scram_server_finish(&s, (const uint8_t *) final, final_len, out, sizeof out, &n,
				     &why);
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE || rc == CFX_EAUTH || rc == CFX_E2BIG);
	FZ_CHECK((rc != 0) == (why != NULL));
	FZ_CHECK(n == strlen(out));
	FZ_CHECK(all_zero(&s.cred, sizeof s.cred));
	/*
	 * HMAC pads short keys with zero bytes, so "pencil" followed by NULs
	 * gives the same SaltedPassword: SCRAM cannot tell them apart.
	 */
	size_t pw_len = rest_len;
	while (pw_len > 0 && rest[pw_len - 1] == 0)
		pw_len--;
	int should_pass =
		honest && cred && pw_len == strlen(PASSWORD) && memcmp(rest, PASSWORD, pw_len) == 0;
	if (honest && !should_pass)
		FZ_CHECK(rc == CFX_EAUTH && strcmp(out, "e=invalid-proof") == 0);
	FZ_CHECK((rc == 0) == should_pass);
	if (rc == 0) {
		char b64[CFX_BASE64_ENC_LEN(CFX_SCRAM_KEY_MAX) + 1];
		FZ_CHECK(s.state == CFX_SCRAM_DONE);
		cfx_base64_encode(sig, cfx_scram_key_len(m), b64, sizeof b64);
		FZ_CHECK(memcmp(out, "v=", 2) == 0 && strcmp(out + 2, b64) == 0);
	} else {
		FZ_CHECK(s.state == CFX_SCRAM_FAILED);
		FZ_CHECK(memcmp(out, "e=", 2) == 0);
	}
	cfx_scram_server_clear(&s);
}

/* ------------------------------------------------------------------------ */

static void fuzz_cred(const uint8_t *p, size_t len)
{
	struct cfx_scram_cred c;
	char text[CFX_SCRAM_CRED_TEXT_MAX];
	int rc = cfx_scram_cred_parse((const char *)p, len, &c), n;

	FZ_CHECK(rc == 0 || rc == CFX_EPARSE);
	if (rc) {
		FZ_CHECK(all_zero(&c, sizeof c));
		return;
	}
	n = cfx_scram_cred_format(&c, text, sizeof text);
	FZ_CHECK(n > 0 && (size_t)n == len && memcmp(text, p, len) == 0);
}

static void fuzz_base64(const uint8_t *p, size_t len)
{
	static uint8_t dec[CFX_BASE64_DEC_MAX(1u << 16) + 3];
	static char enc[sizeof dec * 2];
	size_t n;
	int rc;

	if (len > (1u << 16))
		return;
	rc = cfx_base64_decode((const char *)p, len, dec, sizeof dec, &n);
	FZ_CHECK(rc == 0 || rc == CFX_EPARSE);
	if (rc)
		return;
	FZ_CHECK(n <= CFX_BASE64_DEC_MAX(len));
	FZ_CHECK(cfx_base64_encode(dec, n, enc, sizeof enc) == len);
	FZ_CHECK(memcmp(enc, p, len) == 0);
	/* One byte less room: refused as too big (unless empty). */
	if (n)
		FZ_CHECK(cfx_base64_decode((const char *)p, len, dec, n - 1, &n) == CFX_E2BIG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t ctrl;

	if (size < 1)
		return 0;
	ctrl = data[0];
	data++;
	size--;
	switch ((ctrl & FZ_SASL_MODE_MASK) % FZ_SASL_MODES) {
	case 0:
		fuzz_plain(data, size);
		break;
	case 1:
		fuzz_start(data, size);
		break;
	case 2:
		fuzz_exchange(ctrl, data, size);
		break;
	case 3:
		fuzz_cred(data, size);
		break;
	default:
		fuzz_base64(data, size);
		break;
	}
	return 0;
}
