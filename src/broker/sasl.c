/*
 * sasl.c - SCRAM-SHA-256/512 server exchange, PLAIN parsing, and the salted
 * credentials behind both (sasl.h).
 *
 * The formulas of RFC 5802 section 3, with H the mechanism's hash:
 *
 *     SaltedPassword  = PBKDF2-HMAC-H(password, salt, i)
 *     ClientKey       = HMAC(SaltedPassword, "Client Key")
 *     StoredKey       = H(ClientKey)
 *     ServerKey       = HMAC(SaltedPassword, "Server Key")
 *     AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
 *     ClientSignature = HMAC(StoredKey, AuthMessage)
 *     ClientProof     = ClientKey XOR ClientSignature
 *     ServerSignature = HMAC(ServerKey, AuthMessage)
 *
 * The server holds StoredKey and ServerKey only. It recovers ClientKey as
 * ClientProof XOR ClientSignature and accepts when H(ClientKey) equals
 * StoredKey (compared with CRYPTO_memcmp).
 *
 * Parsing never trusts a length: every message is bounded before it is
 * scanned, and every field is bounded before it is copied into the
 * fixed-size buffers of struct cfx_scram_server.
 */
#include "broker/sasl.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base/base64.h"
#include "base/common.h"
#include "base/err.h"

/* ------------------------------------------------------------------------
 * Hashes and MACs
 *
 * One HMAC implementation fetched once per process; each call makes its
 * own context, so any thread may run an exchange.
 * ------------------------------------------------------------------------ */

static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_impl;

static void mac_init(void)
{
	hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static const EVP_MD *mech_md(enum cfx_scram_mech m)
{
	return m == CFX_SCRAM_SHA512 ? EVP_sha512() : EVP_sha256();
}

static const char *mech_digest_name(enum cfx_scram_mech m)
{
	return m == CFX_SCRAM_SHA512 ? "SHA512" : "SHA256";
}

size_t cfx_scram_key_len(enum cfx_scram_mech m)
{
	return m == CFX_SCRAM_SHA512 ? 64 : 32;
}

const char *cfx_scram_mech_name(enum cfx_scram_mech m)
{
	return m == CFX_SCRAM_SHA512 ? "SCRAM-SHA-512" : "SCRAM-SHA-256";
}

int cfx_scram_mech_parse(const char *name, size_t len, enum cfx_scram_mech *out)
{
	if (len == 13 && memcmp(name, "SCRAM-SHA-256", 13) == 0) {
		*out = CFX_SCRAM_SHA256;
		return CFX_OK;
	}
	if (len == 13 && memcmp(name, "SCRAM-SHA-512", 13) == 0) {
		*out = CFX_SCRAM_SHA512;
		return CFX_OK;
	}
	return CFX_EUNSUPPORTED;
}

struct part {
	const void *p;
	size_t len;
};

/* out = HMAC-H(key, parts...), cfx_scram_key_len(m) bytes. Returns 0 or CFX_ESYS. */
static int hmac_parts(enum cfx_scram_mech m, const uint8_t *key, size_t key_len,
		      const struct part *parts, size_t n, uint8_t *out)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;
	size_t out_len = 0;
	int rc = CFX_ESYS;

	pthread_once(&mac_once, mac_init);
	if (!hmac_impl)
		return CFX_ESYS;
	ctx = EVP_MAC_CTX_new(hmac_impl);
	if (!ctx)
		return CFX_ESYS;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)mech_digest_name(m), 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, key, key_len, params))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (parts[i].len && !EVP_MAC_update(ctx, parts[i].p, parts[i].len))
			goto out;
	if (!EVP_MAC_final(ctx, out, &out_len, CFX_SCRAM_KEY_MAX))
		goto out;
	rc = out_len == cfx_scram_key_len(m) ? CFX_OK : CFX_ESYS;
out:
	EVP_MAC_CTX_free(ctx);
	return rc;
}

static int hmac1(enum cfx_scram_mech m, const uint8_t *key, size_t key_len, const void *p,
		 size_t len, uint8_t *out)
{
	struct part pt = {p, len};
	return hmac_parts(m, key, key_len, &pt, 1, out);
}

static int hash1(enum cfx_scram_mech m, const uint8_t *p, size_t len, uint8_t *out)
{
	unsigned n = 0;

	if (!EVP_Digest(p, len, out, &n, mech_md(m), NULL))
		return CFX_ESYS;
	return n == cfx_scram_key_len(m) ? CFX_OK : CFX_ESYS;
}

/*
 * SaltedPassword, then ClientKey, StoredKey and (if server_key is not NULL)
 * ServerKey. Wipes SaltedPassword and ClientKey.
 */
static int derive_keys(enum cfx_scram_mech m, const char *password, size_t pw_len,
		       const uint8_t *salt, size_t salt_len, uint32_t iterations,
		       uint8_t *stored_key, uint8_t *server_key)
{
	uint8_t salted[CFX_SCRAM_KEY_MAX], client_key[CFX_SCRAM_KEY_MAX];
	size_t klen = cfx_scram_key_len(m);
	int rc = CFX_ESYS;

	if (!PKCS5_PBKDF2_HMAC(pw_len ? password : "", (int)pw_len, salt, (int)salt_len,
			       (int)iterations, mech_md(m), (int)klen, salted))
		goto out;
	rc = hmac1(m, salted, klen, "Client Key", 10, client_key);
	if (rc == 0)
		rc = hash1(m, client_key, klen, stored_key);
	if (rc == 0 && server_key)
		rc = hmac1(m, salted, klen, "Server Key", 10, server_key);
out:
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client_key, sizeof client_key);
	return rc;
}

/* ------------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------------ */

static bool cred_is_valid(const struct cfx_scram_cred *c)
{
	return (c->mech == CFX_SCRAM_SHA256 || c->mech == CFX_SCRAM_SHA512) &&
	       c->iterations >= CFX_SCRAM_ITER_MIN && c->iterations <= CFX_SCRAM_ITER_MAX &&
	       c->salt_len >= 1 && c->salt_len <= CFX_SCRAM_SALT_MAX;
}

int cfx_scram_cred_derive(enum cfx_scram_mech m, const char *password, size_t pw_len,
			  const uint8_t *salt, size_t salt_len, uint32_t iterations,
			  struct cfx_scram_cred *out)
{
	int rc;

	memset(out, 0, sizeof *out);
	if (m != CFX_SCRAM_SHA256 && m != CFX_SCRAM_SHA512)
		return CFX_EINVAL;
	if (pw_len == 0 || pw_len > CFX_SCRAM_PASSWORD_MAX || memchr(password, 0, pw_len))
		return CFX_EINVAL;
	if (iterations < CFX_SCRAM_ITER_MIN || iterations > CFX_SCRAM_ITER_MAX)
		return CFX_EINVAL;
	out->mech = m;
	out->iterations = iterations;
	if (salt) {
		if (salt_len < 1 || salt_len > CFX_SCRAM_SALT_MAX)
			return CFX_EINVAL;
		memcpy(out->salt, salt, salt_len);
		out->salt_len = (uint8_t)salt_len;
	} else {
		if (RAND_bytes(out->salt, CFX_SCRAM_SALT_DEFAULT) != 1)
			return CFX_ESYS;
		out->salt_len = CFX_SCRAM_SALT_DEFAULT;
	}
	rc = derive_keys(m, password, pw_len, out->salt, out->salt_len, iterations, out->stored_key,
			 out->server_key);
	if (rc)
		OPENSSL_cleanse(out, sizeof *out);
	return rc;
}

bool cfx_scram_cred_check(const struct cfx_scram_cred *c, const char *password, size_t pw_len)
{
	uint8_t stored[CFX_SCRAM_KEY_MAX];
	bool ok;

	if (!cred_is_valid(c) || pw_len == 0 || pw_len > CFX_SCRAM_PASSWORD_MAX ||
	    memchr(password, 0, pw_len))
		return false;
	if (derive_keys(c->mech, password, pw_len, c->salt, c->salt_len, c->iterations, stored,
			NULL))
		ok = false;
	else
		ok = CRYPTO_memcmp(stored, c->stored_key, cfx_scram_key_len(c->mech)) == 0;
	OPENSSL_cleanse(stored, sizeof stored);
	return ok;
}

int cfx_scram_cred_format(const struct cfx_scram_cred *c, char *out, size_t out_max)
{
	char salt[CFX_BASE64_ENC_LEN(CFX_SCRAM_SALT_MAX) + 1];
	char stored[CFX_BASE64_ENC_LEN(CFX_SCRAM_KEY_MAX) + 1];
	char server[CFX_BASE64_ENC_LEN(CFX_SCRAM_KEY_MAX) + 1];
	size_t klen = cfx_scram_key_len(c->mech);
	int n;

	CFX_ASSERT(cred_is_valid(c));
	cfx_base64_encode(c->salt, c->salt_len, salt, sizeof salt);
	cfx_base64_encode(c->stored_key, klen, stored, sizeof stored);
	cfx_base64_encode(c->server_key, klen, server, sizeof server);
	n = snprintf(out, out_max, "%s:%u:%s:%s:%s", cfx_scram_mech_name(c->mech),
		     (unsigned)c->iterations, salt, stored, server);
	OPENSSL_cleanse(stored, sizeof stored);
	OPENSSL_cleanse(server, sizeof server);
	if (n < 0 || (size_t)n >= out_max) {
		if (out_max)
			OPENSSL_cleanse(out, out_max);
		return CFX_E2BIG;
	}
	return n;
}

/* Decimal without sign or leading zeros, at most 10 digits. */
static int parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
		return CFX_EPARSE;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return CFX_EPARSE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return CFX_EPARSE;
	*out = (uint32_t)v;
	return CFX_OK;
}

int cfx_scram_cred_parse(const char *s, size_t len, struct cfx_scram_cred *out)
{
	struct cfx_view f[5];
	size_t nf = 0, start = 0, got;
	size_t klen;

	memset(out, 0, sizeof *out);
	if (len >= CFX_SCRAM_CRED_TEXT_MAX)
		return CFX_EPARSE;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != ':')
			continue;
		if (nf == 5)
			return CFX_EPARSE;
		f[nf].p = (const uint8_t *)s + start;
		f[nf].len = i - start;
		nf++;
		start = i + 1;
	}
	if (nf != 5)
		return CFX_EPARSE;
	if (cfx_scram_mech_parse((const char *)f[0].p, f[0].len, &out->mech))
		return CFX_EPARSE;
	klen = cfx_scram_key_len(out->mech);
	if (parse_u32((const char *)f[1].p, f[1].len, &out->iterations) ||
	    out->iterations < CFX_SCRAM_ITER_MIN || out->iterations > CFX_SCRAM_ITER_MAX)
		goto bad;
	if (cfx_base64_decode((const char *)f[2].p, f[2].len, out->salt, sizeof out->salt, &got) ||
	    got == 0)
		goto bad;
	out->salt_len = (uint8_t)got;
	if (cfx_base64_decode((const char *)f[3].p, f[3].len, out->stored_key,
			      sizeof out->stored_key, &got) ||
	    got != klen)
		goto bad;
	if (cfx_base64_decode((const char *)f[4].p, f[4].len, out->server_key,
			      sizeof out->server_key, &got) ||
	    got != klen)
		goto bad;
	return CFX_OK;
bad:
	OPENSSL_cleanse(out, sizeof *out);
	return CFX_EPARSE;
}

/* ------------------------------------------------------------------------
 * Fake credentials for unknown users
 *
 * salt       = HMAC-SHA256(key, "salt" 0 mech user)        32 bytes
 * StoredKey  = HMAC-H(key, "stored" 0 mech user)
 * ServerKey  = HMAC-H(key, "server" 0 mech user)
 *
 * Stable for a user name while the key is, unpredictable without the key.
 * The keys only make the finish() work look like a real one: a fake
 * exchange fails whatever the proof (unknown_user).
 * ------------------------------------------------------------------------ */

#define FAKE_KEY_MIN	 16
#define FAKE_KEY_DEFAULT 32

static pthread_once_t fake_once = PTHREAD_ONCE_INIT;
static uint8_t fake_key[CFX_SCRAM_KEY_MAX];
static size_t fake_key_len;
static uint32_t fake_iterations = CFX_SCRAM_ITER_MIN;
static bool fake_configured;

static void fake_init(void)
{
	if (fake_configured)
		return;
	if (RAND_bytes(fake_key, FAKE_KEY_DEFAULT) == 1)
		fake_key_len = FAKE_KEY_DEFAULT;
}

int cfx_scram_fake_configure(const uint8_t *key, size_t key_len, uint32_t iterations)
{
	if (key_len < FAKE_KEY_MIN || key_len > sizeof fake_key)
		return CFX_EINVAL;
	if (iterations < CFX_SCRAM_ITER_MIN || iterations > CFX_SCRAM_ITER_MAX)
		return CFX_EINVAL;
	memcpy(fake_key, key, key_len);
	fake_key_len = key_len;
	fake_iterations = iterations;
	fake_configured = true;
	return CFX_OK;
}

static int fake_cred(enum cfx_scram_mech m, const char *user, size_t user_len,
		     struct cfx_scram_cred *out)
{
	uint8_t mb = (uint8_t)m;
	struct part parts[3] = {{NULL, 0}, {&mb, 1}, {user, user_len}};
	int rc;

	pthread_once(&fake_once, fake_init);
	if (fake_key_len == 0)
		return CFX_ESYS;
	memset(out, 0, sizeof *out);
	out->mech = m;
	out->iterations = fake_iterations;
	out->salt_len = CFX_SCRAM_SALT_DEFAULT;
	parts[0] = (struct part){"salt", 5}; /* with its NUL, as a separator */
	rc = hmac_parts(CFX_SCRAM_SHA256, fake_key, fake_key_len, parts, 3, out->salt);
	parts[0] = (struct part){"stored", 7};
	if (rc == 0)
		rc = hmac_parts(m, fake_key, fake_key_len, parts, 3, out->stored_key);
	parts[0] = (struct part){"server", 7};
	if (rc == 0)
		rc = hmac_parts(m, fake_key, fake_key_len, parts, 3, out->server_key);
	return rc;
}

/* ------------------------------------------------------------------------
 * Message fields
 *
 * SCRAM messages are comma-separated attributes "x=value". A cursor hands
 * out one field at a time; "a,,b" and "a," yield empty fields, which every
 * caller refuses.
 * ------------------------------------------------------------------------ */

struct fields {
	const uint8_t *p;
	size_t len, pos;
	bool done;
};

static bool next_field(struct fields *f, struct cfx_view *out)
{
	size_t i = f->pos;

	if (f->done)
		return false;
	while (i < f->len && f->p[i] != ',')
		i++;
	out->p = f->p + f->pos;
	out->len = i - f->pos;
	if (i == f->len)
		f->done = true;
	else
		f->pos = i + 1;
	return true;
}

static bool is_attr(struct cfx_view v, char name)
{
	return v.len >= 2 && v.p[0] == (uint8_t)name && v.p[1] == '=';
}

static struct cfx_view attr_value(struct cfx_view v)
{
	return (struct cfx_view){v.p + 2, v.len - 2};
}

/* printable = %x21-2B / %x2D-7E (no ','), 1 .. max bytes. */
static bool is_nonce(struct cfx_view v, size_t max)
{
	if (v.len == 0 || v.len > max)
		return false;
	for (size_t i = 0; i < v.len; i++)
		if (v.p[i] < 0x21 || v.p[i] > 0x7e || v.p[i] == ',')
			return false;
	return true;
}

/* An extension: 1*ALPHA "=" 1*value-char (no NUL; ',' cannot occur in a field). */
static bool is_extension(struct cfx_view v)
{
	size_t i = 0;

	while (i < v.len && ((v.p[i] >= 'a' && v.p[i] <= 'z') || (v.p[i] >= 'A' && v.p[i] <= 'Z')))
		i++;
	if (i == 0 || i >= v.len || v.p[i] != '=' || i + 1 == v.len)
		return false;
	for (i++; i < v.len; i++)
		if (v.p[i] == 0)
			return false;
	return true;
}

/*
 * Decodes a saslname: "=2C" -> ',', "=3D" -> '=', any other '=' or a NUL
 * is refused. At most `max` decoded bytes go to `out`, then a NUL.
 */
static int saslname_decode(struct cfx_view v, char *out, size_t max, size_t *out_len,
			   const char **why)
{
	size_t o = 0;

	if (v.len == 0) {
		*why = "empty user name";
		return CFX_EPARSE;
	}
	for (size_t i = 0; i < v.len; i++) {
		uint8_t ch = v.p[i];

		if (ch == 0) {
			*why = "NUL in a user name";
			return CFX_EPARSE;
		}
		if (ch == '=') {
			if (i + 2 < v.len && v.p[i + 1] == '2' && v.p[i + 2] == 'C')
				ch = ',';
			else if (i + 2 < v.len && v.p[i + 1] == '3' && v.p[i + 2] == 'D')
				ch = '=';
			else {
				*why = "bad '=' escape in a user name";
				return CFX_EPARSE;
			}
			i += 2;
		}
		if (o == max) {
			*why = "user name too long";
			return CFX_E2BIG;
		}
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	*out_len = o;
	return CFX_OK;
}

/* ------------------------------------------------------------------------
 * The SCRAM server exchange
 * ------------------------------------------------------------------------ */

void cfx_scram_server_init(struct cfx_scram_server *s)
{
	memset(s, 0, sizeof *s);
}

void cfx_scram_server_clear(struct cfx_scram_server *s)
{
	OPENSSL_cleanse(s, sizeof *s);
	s->state = CFX_SCRAM_INIT;
}

static void wipe_secrets(struct cfx_scram_server *s)
{
	OPENSSL_cleanse(&s->cred, sizeof s->cred);
}

static int start_fail(struct cfx_scram_server *s, const char **why, const char *reason, int rc)
{
	wipe_secrets(s);
	s->state = CFX_SCRAM_FAILED;
	*why = reason;
	return rc;
}

int cfx_scram_server_start(struct cfx_scram_server *s, enum cfx_scram_mech m, const uint8_t *msg,
			   size_t len, char *user, size_t user_max, const char **why)
{
	static const uint8_t empty[1];
	struct fields f = {.p = msg ? msg : empty, .len = len};
	struct cfx_view flag, authz, name, nonce, ext;
	char authz_buf[CFX_SCRAM_USER_MAX + 1];
	size_t user_len = 0, authz_len = 0, gs2_len;
	int rc;

	CFX_ASSERT(s->state == CFX_SCRAM_INIT);
	CFX_ASSERT(m == CFX_SCRAM_SHA256 || m == CFX_SCRAM_SHA512);
	s->mech = m;
	*why = NULL;
	if (len > CFX_SCRAM_MSG_MAX)
		return start_fail(s, why, "client-first-message too long", CFX_E2BIG);

	/* gs2-header: cbind flag, optional authzid. */
	if (!next_field(&f, &flag) || f.done)
		return start_fail(s, why, "missing gs2 header", CFX_EPARSE);
	if (flag.len >= 2 && flag.p[0] == 'p' && flag.p[1] == '=')
		return start_fail(s, why, "channel binding is not supported", CFX_EUNSUPPORTED);
	if (flag.len != 1 || (flag.p[0] != 'n' && flag.p[0] != 'y'))
		return start_fail(s, why, "bad channel-binding flag", CFX_EPARSE);
	if (!next_field(&f, &authz) || f.done)
		return start_fail(s, why, "missing gs2 header", CFX_EPARSE);
	if (authz.len) {
		if (!is_attr(authz, 'a'))
			return start_fail(s, why, "bad authzid", CFX_EPARSE);
		rc = saslname_decode(attr_value(authz), authz_buf, CFX_SCRAM_USER_MAX, &authz_len,
				     why);
		if (rc)
			return start_fail(s, why, *why, rc);
	}
	gs2_len = f.pos; /* at most "y," "a=" 3 * 255 "," since the authzid decoded */
	if (gs2_len > CFX_SCRAM_GS2_MAX)
		return start_fail(s, why, "gs2 header too long", CFX_E2BIG);

	/* client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions] */
	if (!next_field(&f, &name))
		return start_fail(s, why, "missing user name", CFX_EPARSE);
	if (is_attr(name, 'm'))
		return start_fail(s, why, "mandatory extension not supported", CFX_EUNSUPPORTED);
	if (!is_attr(name, 'n'))
		return start_fail(s, why, "missing user name", CFX_EPARSE);
	rc = saslname_decode(attr_value(name), s->user, CFX_SCRAM_USER_MAX, &user_len, why);
	if (rc)
		return start_fail(s, why, *why, rc);
	if (!next_field(&f, &nonce) || !is_attr(nonce, 'r'))
		return start_fail(s, why, "missing nonce", CFX_EPARSE);
	nonce = attr_value(nonce);
	if (nonce.len > CFX_SCRAM_NONCE_MAX)
		return start_fail(s, why, "nonce too long", CFX_E2BIG);
	if (!is_nonce(nonce, CFX_SCRAM_NONCE_MAX))
		return start_fail(s, why, "bad nonce", CFX_EPARSE);
	while (next_field(&f, &ext))
		if (!is_extension(ext))
			return start_fail(s, why, "bad extension", CFX_EPARSE);

	if (authz.len && (authz_len != user_len || memcmp(authz_buf, s->user, user_len) != 0))
		return start_fail(s, why, "authorization identity differs from the user",
				  CFX_EAUTH);
	if (user_len + 1 > user_max)
		return start_fail(s, why, "user name too long", CFX_E2BIG);

	memcpy(s->gs2, f.p, gs2_len);
	s->gs2_len = (uint16_t)gs2_len;
	memcpy(s->bare, f.p + gs2_len, len - gs2_len);
	s->bare_len = (uint16_t)(len - gs2_len);
	memcpy(s->nonce, nonce.p, nonce.len);
	s->cnonce_len = s->nonce_len = (uint16_t)nonce.len;
	memcpy(user, s->user, user_len + 1);
	s->state = CFX_SCRAM_STARTED;
	return CFX_OK;
}

void cfx_scram_server_force_nonce(struct cfx_scram_server *s, const char *nonce, size_t len)
{
	CFX_ASSERT(s->state == CFX_SCRAM_STARTED);
	CFX_ASSERT(is_nonce((struct cfx_view){(const uint8_t *)nonce, len}, CFX_SCRAM_SNONCE_MAX));
	memcpy(s->forced_snonce, nonce, len);
	s->forced_snonce_len = (uint8_t)len;
}

int cfx_scram_server_challenge(struct cfx_scram_server *s, const struct cfx_scram_cred *c,
			       char *out, size_t out_max, size_t *out_len)
{
	char salt[CFX_BASE64_ENC_LEN(CFX_SCRAM_SALT_MAX) + 1];
	const char *why;
	int n, rc;

	CFX_ASSERT(s->state == CFX_SCRAM_STARTED);
	*out_len = 0;
	if (c && (c->mech != s->mech || !cred_is_valid(c)))
		return start_fail(s, &why, "credential does not fit", CFX_EINVAL);
	/* The fake credential is computed for known users too: same work either way. */
	rc = fake_cred(s->mech, s->user, strlen(s->user), &s->cred);
	if (rc)
		return start_fail(s, &why, "no fake credential", rc);
	s->unknown_user = c == NULL;
	if (c)
		s->cred = *c;

	/* Server nonce: printable and without ',' (base64 has neither ',' nor spaces). */
	if (s->forced_snonce_len) {
		memcpy(s->nonce + s->cnonce_len, s->forced_snonce, s->forced_snonce_len);
		s->nonce_len = (uint16_t)(s->cnonce_len + s->forced_snonce_len);
	} else {
		uint8_t rnd[CFX_SCRAM_SNONCE_RAND];
		char text[CFX_BASE64_ENC_LEN(CFX_SCRAM_SNONCE_RAND) + 1];

		if (RAND_bytes(rnd, sizeof rnd) != 1)
			return start_fail(s, &why, "random generator failed", CFX_ESYS);
		cfx_base64_encode(rnd, sizeof rnd, text, sizeof text);
		memcpy(s->nonce + s->cnonce_len, text, CFX_SCRAM_SNONCE_LEN);
		s->nonce_len = (uint16_t)(s->cnonce_len + CFX_SCRAM_SNONCE_LEN);
	}

	cfx_base64_encode(s->cred.salt, s->cred.salt_len, salt, sizeof salt);
	n = snprintf(s->server_first, sizeof s->server_first, "r=%.*s,s=%s,i=%u", (int)s->nonce_len,
		     s->nonce, salt, (unsigned)s->cred.iterations);
	CFX_ASSERT(n > 0 && (size_t)n < sizeof s->server_first); /* sized by the limits */
	s->server_first_len = (uint16_t)n;
	if ((size_t)n + 1 > out_max)
		return start_fail(s, &why, "output buffer too small", CFX_E2BIG);
	memcpy(out, s->server_first, (size_t)n + 1);
	*out_len = (size_t)n;
	s->state = CFX_SCRAM_CHALLENGED;
	return CFX_OK;
}

/* Ends the exchange in FAILED with an RFC 5802 "e=" reply when it fits. */
static int finish_fail(struct cfx_scram_server *s, char *out, size_t out_max, size_t *out_len,
		       const char **why, const char *reason, const char *e_value, int rc)
{
	int n = -1;

	wipe_secrets(s);
	s->state = CFX_SCRAM_FAILED;
	*why = reason;
	*out_len = 0;
	if (out && out_max)
		n = snprintf(out, out_max, "e=%s", e_value);
	if (n > 0 && (size_t)n < out_max)
		*out_len = (size_t)n;
	else if (out && out_max)
		out[0] = '\0';
	return rc;
}

int cfx_scram_server_finish(struct cfx_scram_server *s, const uint8_t *msg, size_t len, char *out,
			    size_t out_max, size_t *out_len, const char **why)
{
	static const uint8_t empty[1];
	struct fields f = {.p = msg ? msg : empty, .len = len};
	struct cfx_view cb, nonce, v, proof_text = {NULL, 0};
	uint8_t gs2[CFX_SCRAM_GS2_MAX], proof[CFX_SCRAM_KEY_MAX];
	uint8_t client_sig[CFX_SCRAM_KEY_MAX], client_key[CFX_SCRAM_KEY_MAX];
	uint8_t stored[CFX_SCRAM_KEY_MAX], server_sig[CFX_SCRAM_KEY_MAX];
	char sig_text[CFX_BASE64_ENC_LEN(CFX_SCRAM_KEY_MAX) + 1];
	size_t klen = cfx_scram_key_len(s->mech), got, without_proof = 0;
	bool ok;
	int n, rc;

	CFX_ASSERT(s->state == CFX_SCRAM_CHALLENGED);
	*why = NULL;
	if (len > CFX_SCRAM_MSG_MAX)
		return finish_fail(s, out, out_max, out_len, why, "client-final-message too long",
				   "invalid-encoding", CFX_E2BIG);

	/* "c=" base64(gs2 header): for 'n' and 'y' there is no channel-binding data. */
	if (!next_field(&f, &cb) || !is_attr(cb, 'c'))
		return finish_fail(s, out, out_max, out_len, why, "missing channel binding",
				   "invalid-encoding", CFX_EPARSE);
	cb = attr_value(cb);
	if (cfx_base64_decode((const char *)cb.p, cb.len, gs2, sizeof gs2, &got))
		return finish_fail(s, out, out_max, out_len, why, "bad channel binding base64",
				   "invalid-encoding", CFX_EPARSE);
	if (got != s->gs2_len || memcmp(gs2, s->gs2, got) != 0)
		return finish_fail(s, out, out_max, out_len, why,
				   "channel binding does not echo the gs2 header",
				   "channel-bindings-dont-match", CFX_EAUTH);

	if (!next_field(&f, &nonce) || !is_attr(nonce, 'r'))
		return finish_fail(s, out, out_max, out_len, why, "missing nonce",
				   "invalid-encoding", CFX_EPARSE);
	nonce = attr_value(nonce);
	/* RFC 5802 wants the combined nonce echoed. Some Kafka clients (librdkafka)
	 * put their own nonce in front of it once more; Kafka brokers accept that
	 * (they check the end), so this does too, for exactly that form. */
	if (nonce.len == (size_t)s->cnonce_len + s->nonce_len &&
	    memcmp(nonce.p, s->nonce, s->cnonce_len) == 0) {
		nonce.p += s->cnonce_len;
		nonce.len -= s->cnonce_len;
	}
	if (nonce.len != s->nonce_len || memcmp(nonce.p, s->nonce, nonce.len) != 0)
		return finish_fail(s, out, out_max, out_len, why, "nonce mismatch", "other-error",
				   CFX_EAUTH);

	/* Extensions, then the proof, which must come last. */
	while (next_field(&f, &v)) {
		if (is_attr(v, 'p')) {
			if (!f.done)
				return finish_fail(s, out, out_max, out_len, why,
						   "proof is not the last attribute",
						   "invalid-encoding", CFX_EPARSE);
			proof_text = attr_value(v);
			without_proof = (size_t)(v.p - f.p) - 1;
			break;
		}
		if (!is_extension(v))
			return finish_fail(s, out, out_max, out_len, why, "bad extension",
					   "invalid-encoding", CFX_EPARSE);
	}
	if (!proof_text.p)
		return finish_fail(s, out, out_max, out_len, why, "missing proof",
				   "invalid-encoding", CFX_EPARSE);
	if (cfx_base64_decode((const char *)proof_text.p, proof_text.len, proof, sizeof proof,
			      &got) ||
	    got != klen)
		return finish_fail(s, out, out_max, out_len, why, "bad proof encoding",
				   "invalid-encoding", CFX_EPARSE);

	/* The proof. Same work for an unknown user, which then fails anyway. */
	struct part auth_msg[5] = {
		{s->bare, s->bare_len}, {",", 1}, {s->server_first, s->server_first_len}, {",", 1},
		{f.p, without_proof},
	};
	rc = hmac_parts(s->mech, s->cred.stored_key, klen, auth_msg, 5, client_sig);
	if (rc == 0) {
		for (size_t i = 0; i < klen; i++)
			client_key[i] = proof[i] ^ client_sig[i];
		rc = hash1(s->mech, client_key, klen, stored);
	}
	if (rc == 0)
		rc = hmac_parts(s->mech, s->cred.server_key, klen, auth_msg, 5, server_sig);
	ok = rc == 0 && CRYPTO_memcmp(stored, s->cred.stored_key, klen) == 0;
	ok = ok && !s->unknown_user;
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(client_sig, sizeof client_sig);
	OPENSSL_cleanse(stored, sizeof stored);
	if (!ok) {
		OPENSSL_cleanse(server_sig, sizeof server_sig);
		return finish_fail(s, out, out_max, out_len, why, "invalid proof", "invalid-proof",
				   rc ? rc : CFX_EAUTH);
	}

	cfx_base64_encode(server_sig, klen, sig_text, sizeof sig_text);
	OPENSSL_cleanse(server_sig, sizeof server_sig);
	wipe_secrets(s);
	n = snprintf(out, out_max, "v=%s", sig_text);
	if (n < 0 || (size_t)n >= out_max) {
		s->state = CFX_SCRAM_FAILED;
		*out_len = 0;
		*why = "output buffer too small";
		return CFX_E2BIG;
	}
	*out_len = (size_t)n;
	s->state = CFX_SCRAM_DONE;
	return CFX_OK;
}

/* ------------------------------------------------------------------------
 * PLAIN
 * ------------------------------------------------------------------------ */

int cfx_sasl_plain_parse(const uint8_t *msg, size_t len, struct cfx_view *authzid,
			 struct cfx_view *user, struct cfx_view *password, const char **why)
{
	const uint8_t *n1, *n2;

	*why = NULL;
	if (len > 3 * CFX_SASL_PLAIN_FIELD_MAX + 2) {
		*why = "PLAIN message too long";
		return CFX_E2BIG;
	}
	n1 = len ? memchr(msg, 0, len) : NULL;
	n2 = n1 ? memchr(n1 + 1, 0, len - (size_t)(n1 + 1 - msg)) : NULL;
	if (!n2) {
		*why = "PLAIN message needs two NUL separators";
		return CFX_EPARSE;
	}
	*authzid = (struct cfx_view){msg, (size_t)(n1 - msg)};
	*user = (struct cfx_view){n1 + 1, (size_t)(n2 - n1 - 1)};
	*password = (struct cfx_view){n2 + 1, len - (size_t)(n2 + 1 - msg)};
	if (memchr(password->p, 0, password->len)) {
		*why = "NUL in the PLAIN password";
		return CFX_EPARSE;
	}
	if (authzid->len > CFX_SASL_PLAIN_FIELD_MAX || user->len > CFX_SASL_PLAIN_FIELD_MAX ||
	    password->len > CFX_SASL_PLAIN_FIELD_MAX) {
		*why = "PLAIN field too long";
		return CFX_E2BIG;
	}
	if (user->len == 0 || password->len == 0) {
		*why = "empty PLAIN user or password";
		return CFX_EPARSE;
	}
	if (authzid->len && !cfx_view_eq(*authzid, *user)) {
		*why = "authorization identity differs from the user";
		return CFX_EAUTH;
	}
	return CFX_OK;
}
