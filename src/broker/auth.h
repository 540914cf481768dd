/*
 * auth.h - users, policies, and the checks every front end asks of them.
 *
 * One identity and permission model for all protocols (docs/security.md):
 * users with salted SCRAM credentials (never the password), roles and an
 * enabled flag; policies (subject, resource, pattern type, actions, source
 * address, allow/deny) with the precedence written down in the docs; admin
 * tokens. Everything lives in meta/auth.json, replaced atomically on each
 * change, and takes effect at once.
 *
 * Front ends sign a client in (a cleartext password, a SCRAM exchange, an
 * HMAC signature or a token), then ask cfx_auth_authorize for each request.
 * Password checks are expensive by design and run on the auth thread; the
 * answer comes back through a callback the front end posts to its loop.
 *
 * @thread any: every function takes the module's own locks.
 */
#ifndef CFX_BROKER_AUTH_H
#define CFX_BROKER_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/common.h"
#include "broker/sasl.h"

struct cfx_auth;
struct cfx_file_ops;

#define CFX_AUTH_USER_MAX 128	  /* bytes of a user name */
#define CFX_AUTH_PASSWORD_MAX 255 /* bytes of a password */
#define CFX_AUTH_NAME_MAX 255	  /* bytes of a policy's resource name */
#define CFX_AUTH_TOKEN_LEN 64	  /* hex characters of an admin token */

enum cfx_auth_action {
	CFX_AUTH_PUB = 1 << 0,
	CFX_AUTH_SUB = 1 << 1,
	CFX_AUTH_CREATE = 1 << 2,
	CFX_AUTH_UPDATE = 1 << 3,
	CFX_AUTH_DELETE = 1 << 4,
	CFX_AUTH_GET = 1 << 5,
	CFX_AUTH_LIST = 1 << 6,
	CFX_AUTH_ALL = (1 << 7) - 1,
};

enum cfx_auth_resource { CFX_AUTH_CLUSTER, CFX_AUTH_TOPIC, CFX_AUTH_GROUP };
enum cfx_auth_pattern { CFX_AUTH_LITERAL, CFX_AUTH_PREFIXED, CFX_AUTH_ANY };

/* Front ends, for counting and logging. */
enum cfx_auth_proto { CFX_AUTH_GRPC, CFX_AUTH_KAFKA, CFX_AUTH_MQTT, CFX_AUTH_HTTP, CFX_AUTH_PROTO_N };

struct cfx_auth_opts {
	const char *dir;		   /* where auth.json and auth.key live (meta/) */
	uint32_t scram_iterations;	   /* for new credentials; >= 4096 */
	int allow_anonymous;		   /* with users: anonymous clients act as "anonymous" */
	const struct cfx_file_ops *fops;   /* NULL = the real file system */
};

/* A client's address, parsed once per connection for source-address policies. */
struct cfx_auth_peer {
	int family; /* 0 unknown, 4 or 6 */
	uint8_t addr[16];
};

struct cfx_auth_user_info {
	char name[CFX_AUTH_USER_MAX + 1];
	int super;
	int enabled;
	int64_t created_ms;
	uint32_t tokens;
};

struct cfx_auth_acl {
	uint64_t id;				/* assigned by create */
	char subject[CFX_AUTH_USER_MAX + 1];	/* user, "*", or "anonymous" */
	enum cfx_auth_resource resource;
	enum cfx_auth_pattern pattern;
	char name[CFX_AUTH_NAME_MAX + 1];	/* empty for cluster and ANY */
	unsigned actions;			/* enum cfx_auth_action bits */
	char source[64];			/* "10.0.0.0/8"; empty = anywhere */
	int deny;
};

struct cfx_auth_stats {
	uint64_t failures[CFX_AUTH_PROTO_N];	/* sign-ins refused */
	uint64_t denials[CFX_AUTH_PROTO_N][8];	/* by action bit (PUB .. LIST) */
	uint64_t checks;			/* password checks run (auth thread) */
	uint64_t check_cache_hits;		/* answered from the cache */
};

/* Opens (loading auth.json if it exists) and starts the auth thread. */
int cfx_auth_open(const struct cfx_auth_opts *o, struct cfx_auth **out);
/* Stops the auth thread (pending checks complete with CFX_ECLOSED) and frees. */
void cfx_auth_close(struct cfx_auth *a);

/* Whether any user exists: then clients must sign in (or be allowed anonymous). */
bool cfx_auth_enabled(const struct cfx_auth *a);
/* Whether a client that does not sign in may go on (as "anonymous" when users exist). */
bool cfx_auth_anonymous_ok(const struct cfx_auth *a);

/* ---- users (admin) ---------------------------------------------------- */

/* Returns 0, CFX_EEXIST, CFX_EINVAL (name or password), or an I/O error. */
int cfx_auth_user_create(struct cfx_auth *a, const char *name, const char *password,
			 size_t pw_len, int super, int enabled);
/*
 * Changes what is given: password (NULL keeps it), super / enabled (-1 keeps).
 * Update and delete refuse (CFX_ELOCKED) to leave users without an enabled
 * super user: nobody could manage them then. Deleting every user is allowed.
 */
int cfx_auth_user_update(struct cfx_auth *a, const char *name, const char *password,
			 size_t pw_len, int super, int enabled);
/* Deletes the user and its policies. Returns 0, CFX_ENOENT or CFX_ELOCKED (above). */
int cfx_auth_user_delete(struct cfx_auth *a, const char *name);
int cfx_auth_user_get(struct cfx_auth *a, const char *name, struct cfx_auth_user_info *out);
void cfx_auth_user_foreach(struct cfx_auth *a,
			   void (*fn)(void *arg, const struct cfx_auth_user_info *u), void *arg);
/* A new admin token for the user, written as CFX_AUTH_TOKEN_LEN hex + NUL into out. */
int cfx_auth_token_create(struct cfx_auth *a, const char *name, char out[CFX_AUTH_TOKEN_LEN + 1]);

/* ---- policies (admin) ------------------------------------------------- */

/* Validates and stores the policy; fills acl->id. On CFX_EINVAL, *why says what is wrong. */
int cfx_auth_acl_create(struct cfx_auth *a, struct cfx_auth_acl *acl, const char **why);
int cfx_auth_acl_delete(struct cfx_auth *a, uint64_t id);
void cfx_auth_acl_foreach(struct cfx_auth *a,
			  void (*fn)(void *arg, const struct cfx_auth_acl *acl), void *arg);

/* Names and parsers of the enums, for the admin API and the CLI. */
const char *cfx_auth_resource_name(enum cfx_auth_resource r);
const char *cfx_auth_pattern_name(enum cfx_auth_pattern p);
const char *cfx_auth_action_name(unsigned action_bit);
int cfx_auth_resource_parse(const char *s, enum cfx_auth_resource *out);
int cfx_auth_pattern_parse(const char *s, enum cfx_auth_pattern *out);
int cfx_auth_action_parse(const char *s, unsigned *out);

/* ---- authentication --------------------------------------------------- */

typedef void (*cfx_auth_done_fn)(void *arg, int rc);

/*
 * Checks a user's cleartext password. Returns CFX_OK or CFX_EAUTH when the
 * answer is known at once (remembered from an earlier check; a disabled user),
 * or CFX_AGAIN when the check was queued to the auth thread, which then calls
 * done(arg, CFX_OK | CFX_EAUTH | CFX_ECLOSED) on its own thread. A full queue
 * is CFX_EAUTH. The password is copied.
 */
int cfx_auth_password_check(struct cfx_auth *a, const char *user, size_t user_len,
			    const char *password, size_t pw_len, cfx_auth_done_fn done, void *arg);
/* The user's SCRAM credential for `mech`, for a SCRAM exchange. CFX_ENOENT: no such enabled user. */
int cfx_auth_scram_cred(struct cfx_auth *a, const char *user, enum cfx_scram_mech mech,
			struct cfx_scram_cred *out);
/* The user's secret for HMAC signatures (RocketMQ). CFX_ENOENT: no such enabled user or no secret. */
int cfx_auth_hmac_secret(struct cfx_auth *a, const char *user, size_t user_len, uint8_t *out,
			 size_t out_max, size_t *out_len);
/* An admin token: on success the user's name goes to user_out. */
int cfx_auth_token_check(struct cfx_auth *a, const char *token, size_t len,
			 char user_out[CFX_AUTH_USER_MAX + 1]);

/* ---- authorization ---------------------------------------------------- */

/*
 * May `user` (NULL = anonymous) do `action` (one bit) on the resource from
 * `peer` (NULL = unknown: only policies without a source apply)? Returns
 * CFX_OK or CFX_EDENIED. With no users at all everything is allowed.
 */
int cfx_auth_authorize(struct cfx_auth *a, const char *user, enum cfx_auth_resource res,
		       const char *name, size_t name_len, unsigned action,
		       const struct cfx_auth_peer *peer);
/*
 * SUB on a subscription filter (MQTT) whose first fixed_len bytes come
 * before its first wildcard: allowed when a policy allows that prefix (or
 * the literal filter, or any topic) and no deny policy names topics the
 * filter could match. fixed_len >= len is an exact name.
 */
int cfx_auth_authorize_filter(struct cfx_auth *a, const char *user, const char *filter,
			      size_t len, size_t fixed_len, const struct cfx_auth_peer *peer);
/* Whether the user exists, is enabled and is a super user. */
bool cfx_auth_is_super(struct cfx_auth *a, const char *user);

/* Parses "ip:port", "[v6]:port" or a bare address. Unknown forms leave family 0. */
void cfx_auth_peer_parse(const char *s, struct cfx_auth_peer *out);

/* ---- counting and logging --------------------------------------------- */

/* Counts a refused sign-in and logs it (rate-limited). Never pass a secret. */
void cfx_auth_note_failure(struct cfx_auth *a, enum cfx_auth_proto p, const char *peer,
			   const char *user, const char *why);
/* Counts a denied request and logs it (rate-limited). */
void cfx_auth_note_denial(struct cfx_auth *a, enum cfx_auth_proto p, const char *peer,
			  const char *user, unsigned action, enum cfx_auth_resource res,
			  const char *name, size_t name_len);
void cfx_auth_stats(struct cfx_auth *a, struct cfx_auth_stats *out);
const char *cfx_auth_proto_name(enum cfx_auth_proto p);

#endif
