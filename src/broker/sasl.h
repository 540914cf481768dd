/*
 * sasl.h - the server side of SASL SCRAM (RFC 5802, RFC 7677) and PLAIN
 * (RFC 4616), and the salted credentials SCRAM works from.
 *
 * Pure functions and a small state machine: no sockets, no disk, no
 * locks. The front ends (Kafka SaslAuthenticate, the admin API, MQTT
 * CONNECT) carry the messages; the user store (broker/auth.c) keeps the
 * credentials. What is stored is never the password but, as Kafka stores
 * it, the salt, the iteration count, StoredKey = H(HMAC(SaltedPassword,
 * "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key").
 *
 * What this does not do: SASLprep of user names and passwords (Kafka does
 * not either: names and passwords are compared as bytes), channel binding
 * ("p=" is refused; SCRAM-*-PLUS is never advertised), the client side.
 *
 * The exchange, for one connection:
 *
 *     INIT --start()--> STARTED --challenge()--> CHALLENGED --finish()--> DONE
 *       \                                                  \
 *        `-- any error --> FAILED <------------------------ `-- wrong proof, ...
 *
 *   INIT        zeroed struct (or cfx_scram_server_init).
 *   STARTED     client-first parsed: user name, gs2 header and
 *               client-first-message-bare copied; nothing looked up yet.
 *   CHALLENGED  credential copied (or a fake one for an unknown user),
 *               server nonce drawn, server-first-message kept: the
 *               AuthMessage can be computed from the struct alone.
 *   DONE        proof verified, server-final written. Secrets wiped.
 *   FAILED      terminal; secrets wiped. A new exchange needs a new init.
 *
 * An unknown user gets a fake credential whose salt and iteration count are
 * derived from the user name with a secret key (cfx_scram_fake_configure),
 * so the server-first of an unknown user looks like a real one and stays
 * the same across attempts; the exchange then fails at finish() exactly as
 * a wrong password does (same return value, same reply, same reason).
 *
 * @thread any; a struct cfx_scram_server belongs to one connection.
 */
#ifndef CFX_BROKER_SASL_H
#define CFX_BROKER_SASL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"

/* ------------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------------ */

enum cfx_scram_mech { CFX_SCRAM_SHA256, CFX_SCRAM_SHA512 };

#define CFX_SCRAM_SALT_MAX     64      /* bytes of a salt */
#define CFX_SCRAM_SALT_DEFAULT 32      /* bytes of a generated salt */
#define CFX_SCRAM_KEY_MAX      64      /* bytes of StoredKey / ServerKey (SHA-512) */
#define CFX_SCRAM_ITER_MIN     4096    /* RFC 7677's minimum, Kafka's too */
#define CFX_SCRAM_ITER_MAX     1000000 /* bounds the work one stored credential can cost */
#define CFX_SCRAM_PASSWORD_MAX 1024    /* bytes of a password given to derive / check */

struct cfx_scram_cred {
	enum cfx_scram_mech mech;
	uint32_t iterations; /* CFX_SCRAM_ITER_MIN .. CFX_SCRAM_ITER_MAX */
	uint8_t salt[CFX_SCRAM_SALT_MAX];
	uint8_t salt_len;		       /* 1 .. CFX_SCRAM_SALT_MAX */
	uint8_t stored_key[CFX_SCRAM_KEY_MAX]; /* H(ClientKey); cfx_scram_key_len bytes */
	uint8_t server_key[CFX_SCRAM_KEY_MAX]; /* HMAC(SaltedPassword, "Server Key") */
};

/* Bytes of the hash of `m`: 32 or 64. */
size_t cfx_scram_key_len(enum cfx_scram_mech m);
/* "SCRAM-SHA-256" or "SCRAM-SHA-512": the SASL mechanism name. */
const char *cfx_scram_mech_name(enum cfx_scram_mech m);
/* Parses a mechanism name (exact, case-sensitive). Returns 0 or CFX_EUNSUPPORTED. */
int cfx_scram_mech_parse(const char *name, size_t len, enum cfx_scram_mech *out);

/*
 * Derives the credential of `password` (PBKDF2-HMAC, then the two keys).
 * A NULL `salt` means: draw CFX_SCRAM_SALT_DEFAULT random bytes. Returns 0;
 * CFX_EINVAL for a salt length, iteration count or password length out of
 * bounds, or a password with a NUL byte (HMAC pads short keys with zeros,
 * so "pw" and "pw\0" would derive the same credential); CFX_ESYS when the random generator or the
 * KDF fails. The intermediate secrets are wiped. Costs one PBKDF2 of `iterations` rounds.
 */
int cfx_scram_cred_derive(enum cfx_scram_mech m, const char *password, size_t pw_len,
			  const uint8_t *salt, size_t salt_len, uint32_t iterations,
			  struct cfx_scram_cred *out);

/*
 * Checks a cleartext password (SASL PLAIN, MQTT CONNECT, HTTP Basic)
 * against a credential: recomputes StoredKey and compares in constant time.
 * False for an empty password or one with a NUL byte. Costs one PBKDF2: callers on an event loop
 * hand it to a worker thread.
 */
bool cfx_scram_cred_check(const struct cfx_scram_cred *c, const char *password, size_t pw_len);

/*
 * The persisted text form, one line without separators other than ':':
 *
 *     SCRAM-SHA-256:4096:<base64 salt>:<base64 StoredKey>:<base64 ServerKey>
 *
 * The iteration count is decimal without leading zeros; the keys have
 * exactly cfx_scram_key_len(mech) bytes.
 */
#define CFX_SCRAM_CRED_TEXT_MAX 320 /* bytes of the text form, NUL included */

/* Writes the text form and a NUL. Returns its length, or CFX_E2BIG if out_max is too small. */
int cfx_scram_cred_format(const struct cfx_scram_cred *c, char *out, size_t out_max);
/* Parses the text form strictly (len bytes, no NUL needed). Returns 0 or CFX_EPARSE. */
int cfx_scram_cred_parse(const char *s, size_t len, struct cfx_scram_cred *out);

/*
 * Sets the secret from which unknown users' fake salts are derived, and the
 * iteration count they show (the one real credentials use, so the two look
 * alike). Without a call, a random key drawn once per process and
 * CFX_SCRAM_ITER_MIN are used; a key kept on disk keeps fake salts stable
 * across restarts too. Returns 0 or CFX_EINVAL (key_len 16..64, iterations
 * in bounds).
 * @thread call at start-up, before any exchange runs.
 */
int cfx_scram_fake_configure(const uint8_t *key, size_t key_len, uint32_t iterations);

/* ------------------------------------------------------------------------
 * The SCRAM server exchange
 * ------------------------------------------------------------------------ */

#define CFX_SCRAM_MSG_MAX	   2048 /* bytes of a client-first or client-final message */
#define CFX_SCRAM_USER_MAX	   255	/* bytes of a decoded user name (and authzid) */
#define CFX_SCRAM_NONCE_MAX	   256	/* bytes of the client's nonce */
#define CFX_SCRAM_SNONCE_RAND	   24	/* random bytes in the server's nonce */
#define CFX_SCRAM_SNONCE_LEN	   32	/* its printable length (base64 of the 24 bytes) */
#define CFX_SCRAM_SNONCE_MAX	   64	/* a nonce forced by a test */
#define CFX_SCRAM_GS2_MAX	   800	/* bytes of the gs2 header as sent ("n,a=...,") */
#define CFX_SCRAM_SERVER_FIRST_MAX 512	/* bytes of server-first-message, NUL included */
#define CFX_SCRAM_SERVER_FINAL_MAX 128	/* bytes of server-final-message, NUL included */

enum cfx_scram_state {
	CFX_SCRAM_INIT = 0,
	CFX_SCRAM_STARTED,
	CFX_SCRAM_CHALLENGED,
	CFX_SCRAM_DONE,
	CFX_SCRAM_FAILED,
};

/*
 * One exchange. Plain data, owned by whoever embeds it (about 4.5 KiB):
 * no allocation, nothing to free; call cfx_scram_server_clear when the
 * exchange is abandoned midway so the copied keys do not linger.
 */
struct cfx_scram_server {
	enum cfx_scram_state state;
	enum cfx_scram_mech mech;
	bool unknown_user;   /* challenge() got no credential: finish() fails */
	uint16_t gs2_len;    /* gs2 header as sent, for the c= check */
	uint16_t bare_len;   /* client-first-message-bare */
	uint16_t cnonce_len; /* client nonce = nonce[0 .. cnonce_len) */
	uint16_t nonce_len;  /* client nonce + server nonce */
	uint16_t server_first_len;
	uint8_t forced_snonce_len; /* tests: 0 = draw a random server nonce */
	char gs2[CFX_SCRAM_GS2_MAX];
	char bare[CFX_SCRAM_MSG_MAX];
	char nonce[CFX_SCRAM_NONCE_MAX + CFX_SCRAM_SNONCE_MAX];
	char forced_snonce[CFX_SCRAM_SNONCE_MAX];
	char server_first[CFX_SCRAM_SERVER_FIRST_MAX];
	char user[CFX_SCRAM_USER_MAX + 1]; /* decoded, NUL-terminated */
	struct cfx_scram_cred cred;	   /* copy; wiped at DONE / FAILED */
};

/* Zeroes `s` (state INIT). A zeroed struct is as good. */
void cfx_scram_server_init(struct cfx_scram_server *s);
/* Wipes the struct (keys included) and leaves it in INIT. */
void cfx_scram_server_clear(struct cfx_scram_server *s);

/*
 * Step 1: parses client-first-message (`len` bytes of `msg`, borrowed until
 * return), for mechanism `m`:
 *
 *     gs2-cbind-flag "," [ "a=" saslname ] "," "n=" saslname "," "r=" nonce [ "," ext ]*
 *
 * The cbind flag is 'n' or 'y' ('p' is refused: no channel binding); an
 * authzid must equal the user name; saslname escapes "=2C" and "=3D" are
 * decoded, any other '=' is refused; a "m=" mandatory extension is refused;
 * other extensions (Kafka's "tokenauth=true") are accepted and ignored.
 * The decoded user name goes to `user` with a NUL (`user_max` includes it).
 *
 * Returns 0 (state STARTED); CFX_EPARSE (malformed), CFX_E2BIG (a field or
 * the message over its limit, or `user_max` too small), CFX_EUNSUPPORTED
 * (channel binding, mandatory extension), CFX_EAUTH (authzid differs):
 * state FAILED and *why, a static reason, says what.
 */
int cfx_scram_server_start(struct cfx_scram_server *s, enum cfx_scram_mech m, const uint8_t *msg,
			   size_t len, char *user, size_t user_max, const char **why);

/*
 * Step 2: with the user's credential `c` (copied; NULL when the user does
 * not exist or is disabled: a fake one is used), writes
 *
 *     "r=" client-nonce server-nonce ",s=" base64(salt) ",i=" iterations
 *
 * and a NUL into `out`, its length into *out_len. The server nonce is
 * CFX_SCRAM_SNONCE_RAND random bytes in base64 (printable, no ',').
 * Returns 0 (state CHALLENGED); or, with state FAILED: CFX_EINVAL if `c`
 * is for another mechanism or out of bounds, CFX_E2BIG if the message does
 * not fit `out_max` (CFX_SCRAM_SERVER_FIRST_MAX always does), CFX_ESYS if
 * the random generator fails.
 * The state must be STARTED (asserts).
 */
int cfx_scram_server_challenge(struct cfx_scram_server *s, const struct cfx_scram_cred *c,
			       char *out, size_t out_max, size_t *out_len);

/*
 * Step 3: parses client-final-message
 *
 *     "c=" base64(gs2 header) ",r=" nonce [ "," ext ]* ",p=" base64(ClientProof)
 *
 * checks the channel-binding echo and the nonce, and verifies the proof in
 * constant time. On success writes server-final "v=" base64(ServerSignature)
 * and a NUL into `out` and returns 0 (state DONE). On failure returns
 * CFX_EPARSE (malformed) or CFX_EAUTH (binding echo, nonce or proof wrong;
 * unknown user) with state FAILED, *why set, and, when `out` has room,
 * the RFC 5802 reply "e=<server-error-value>" ("e=invalid-proof" for both a
 * wrong password and an unknown user). out_max >= CFX_SCRAM_SERVER_FINAL_MAX.
 * The state must be CHALLENGED (asserts).
 */
int cfx_scram_server_finish(struct cfx_scram_server *s, const uint8_t *msg, size_t len, char *out,
			    size_t out_max, size_t *out_len, const char **why);

/*
 * Tests only: the next challenge() uses `nonce` (printable, no ',', at most
 * CFX_SCRAM_SNONCE_MAX bytes) as the server nonce instead of random bytes,
 * to replay the RFC 7677 example. Call after start().
 */
void cfx_scram_server_force_nonce(struct cfx_scram_server *s, const char *nonce, size_t len);

/* ------------------------------------------------------------------------
 * PLAIN
 * ------------------------------------------------------------------------ */

#define CFX_SASL_PLAIN_FIELD_MAX 255 /* bytes of each of authzid, authcid, passwd */

/*
 * Parses a PLAIN message: [authzid] NUL authcid NUL passwd. The views point
 * into `msg` (valid as long as it is). authcid and passwd must not be
 * empty; an authzid must be empty or equal authcid. Returns 0; CFX_EPARSE
 * (not exactly two NULs, an empty field), CFX_E2BIG (a field over
 * CFX_SASL_PLAIN_FIELD_MAX), CFX_EAUTH (authzid differs), with *why set.
 */
int cfx_sasl_plain_parse(const uint8_t *msg, size_t len, struct cfx_view *authzid,
			 struct cfx_view *user, struct cfx_view *password, const char **why);

#endif
