/*
 * auth.c - users, policies, password checks on the auth thread, decisions.
 *
 * State: a sorted array of users and an array of policies under one rwlock
 * (reads: every authorization; writes: admin changes, rare). Each change is
 * saved to meta/auth.json while the write lock is held, so the file and the
 * memory never disagree for longer than the rename; a failed save undoes
 * the change in memory.
 *
 * Password checks cost one PBKDF2 (thousands of HMACs) and therefore run on
 * one auth thread fed by a bounded queue. A check that succeeded leaves a
 * keyed digest of (user, salt, password) in the user's small cache, so a
 * client that signs in again is answered at once on its own thread.
 *
 * Decisions follow docs/security.md: super users pass; otherwise the most
 * specific matching policies decide and deny wins among equals; no match
 * is a denial.
 */
#include "broker/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/fileops.h"
#include "base/log.h"

#define AUTH_FILE "auth.json"
#define AUTH_KEY_FILE "auth.key"
#define AUTH_VERSION 1
#define AUTH_FILE_BYTES_MAX (64u << 20)
#define NODE_KEY_LEN 32
#define GCM_NONCE_LEN 12
#define GCM_TAG_LEN 16
#define TOKEN_BYTES 32
#define TOKENS_MAX 16		/* per user */
#define CACHE_SLOTS 4		/* remembered good passwords per user */
#define QUEUE_MAX 1024		/* password checks waiting for the auth thread */
#define USERS_MAX 100000
#define ACLS_MAX 100000
#define DIGEST_LEN 32

struct user {
	struct cfx_auth_user_info info;
	struct cfx_scram_cred cred[2];	/* [CFX_SCRAM_SHA256], [CFX_SCRAM_SHA512] */
	uint8_t *secret;		/* the cleartext secret for HMAC schemes, or NULL */
	size_t secret_len;
	uint8_t tokens[TOKENS_MAX][DIGEST_LEN]; /* SHA-256 of each admin token */
	uint32_t ntokens;
	uint8_t cache[CACHE_SLOTS][DIGEST_LEN];	/* under auth->cache_lock */
	uint32_t ncache, cache_next;
};

struct acl_ent {
	struct cfx_auth_acl acl;
	struct cfx_auth_peer net;	/* parsed source */
	int bits;			/* its prefix length; -1 = anywhere */
};

struct job {
	struct job *next;
	char user[CFX_AUTH_USER_MAX + 1];
	char password[CFX_AUTH_PASSWORD_MAX + 1];
	size_t pw_len;
	cfx_auth_done_fn done;
	void *arg;
};

struct cfx_auth {
	char dir[PATH_MAX - 64];
	uint32_t iterations;
	int allow_anonymous;
	const struct cfx_file_ops *fops;

	pthread_rwlock_t lock;
	struct user **users;		/* sorted by name */
	size_t nusers, cap_users;
	struct acl_ent *acls;
	size_t nacls, cap_acls;
	uint64_t next_acl_id;
	atomic_int enabled;		/* nusers > 0 */

	uint8_t node_key[NODE_KEY_LEN];
	int have_node_key;
	uint8_t cache_key[32];		/* per process: cached digests mean nothing elsewhere */
	pthread_mutex_t cache_lock;

	pthread_t thread;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct job *qhead, *qtail;
	size_t qlen;
	int stopping;

	_Atomic uint64_t failures[CFX_AUTH_PROTO_N];
	_Atomic uint64_t denials[CFX_AUTH_PROTO_N][8];
	_Atomic uint64_t checks, cache_hits;
	struct cfx_log_ratelimit log_rl;
	pthread_mutex_t log_lock;
};

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

static const char *const action_names[] = { "PUB", "SUB", "CREATE", "UPDATE", "DELETE", "GET",
					    "LIST" };
static const char *const resource_names[] = { "cluster", "topic", "group" };
static const char *const pattern_names[] = { "literal", "prefixed", "any" };
static const char *const proto_names[] = { "grpc", "kafka", "mqtt", "http" };

const char *cfx_auth_resource_name(enum cfx_auth_resource r)
{
	return (unsigned)r < CFX_ARRAY_LEN(resource_names) ? resource_names[r] : "?";
}

const char *cfx_auth_pattern_name(enum cfx_auth_pattern p)
{
	return (unsigned)p < CFX_ARRAY_LEN(pattern_names) ? pattern_names[p] : "?";
}

const char *cfx_auth_proto_name(enum cfx_auth_proto p)
{
	return (unsigned)p < CFX_ARRAY_LEN(proto_names) ? proto_names[p] : "?";
}

const char *cfx_auth_action_name(unsigned bit)
{
	if (bit == CFX_AUTH_ALL)
		return "ALL";
	for (unsigned i = 0; i < CFX_ARRAY_LEN(action_names); i++)
		if (bit == 1u << i)
			return action_names[i];
	return "?";
}

int cfx_auth_resource_parse(const char *s, enum cfx_auth_resource *out)
{
	for (unsigned i = 0; i < CFX_ARRAY_LEN(resource_names); i++)
		if (!strcasecmp(s, resource_names[i])) {
			*out = (enum cfx_auth_resource)i;
			return 0;
		}
	return CFX_EINVAL;
}

int cfx_auth_pattern_parse(const char *s, enum cfx_auth_pattern *out)
{
	for (unsigned i = 0; i < CFX_ARRAY_LEN(pattern_names); i++)
		if (!strcasecmp(s, pattern_names[i])) {
			*out = (enum cfx_auth_pattern)i;
			return 0;
		}
	return CFX_EINVAL;
}

int cfx_auth_action_parse(const char *s, unsigned *out)
{
	if (!strcasecmp(s, "ALL")) {
		*out = CFX_AUTH_ALL;
		return 0;
	}
	for (unsigned i = 0; i < CFX_ARRAY_LEN(action_names); i++)
		if (!strcasecmp(s, action_names[i])) {
			*out = 1u << i;
			return 0;
		}
	return CFX_EINVAL;
}

static int action_index(unsigned bit)
{
	for (int i = 0; i < 7; i++)
		if (bit == 1u << i)
			return i;
	return 7;
}

/* ------------------------------------------------------------------------
 * Small helpers: names, addresses, digests, base64
 * ------------------------------------------------------------------------ */

static bool user_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFX_AUTH_USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '@' || c == '-'))
			return false;
	}
	/* Reserved subjects of policies. */
	return strcmp(s, "anonymous") != 0;
}

static int parse_addr(const char *s, size_t n, struct cfx_auth_peer *out)
{
	char buf[64];

	if (n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		/* An IPv4-mapped address is the IPv4 address. */
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (!memcmp(out->addr, mapped, 12)) {
			memmove(out->addr, out->addr + 12, 4);
			memset(out->addr + 4, 0, 12);
			out->family = 4;
		} else {
			out->family = 6;
		}
		return 0;
	}
	return -1;
}

void cfx_auth_peer_parse(const char *s, struct cfx_auth_peer *out)
{
	const char *end;

	memset(out, 0, sizeof *out);
	if (!s)
		return;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (end)
			parse_addr(s + 1, (size_t)(end - s - 1), out);
		return;
	}
	end = strrchr(s, ':');
	if (end && strchr(s, ':') == end) /* one colon: ip:port */
		parse_addr(s, (size_t)(end - s), out);
	else
		parse_addr(s, strlen(s), out);
}

/* Parses "addr[/bits]" into a network; returns 0 or -1. */
static int parse_cidr(const char *s, struct cfx_auth_peer *net, int *bits)
{
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	int maxbits;

	if (parse_addr(s, n, net))
		return -1;
	maxbits = net->family == 4 ? 32 : 128;
	if (!slash) {
		*bits = maxbits;
		return 0;
	}
	char *e;
	long b = strtol(slash + 1, &e, 10);
	if (!slash[1] || *e || b < 0 || b > maxbits)
		return -1;
	*bits = (int)b;
	return 0;
}

static bool cidr_covers(const struct acl_ent *e, const struct cfx_auth_peer *p)
{
	if (e->bits < 0)
		return true;
	if (!p || p->family != e->net.family)
		return false;
	int full = e->bits / 8, rest = e->bits % 8;
	if (memcmp(e->net.addr, p->addr, (size_t)full))
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((e->net.addr[full] & mask) != (p->addr[full] & mask))
			return false;
	}
	return true;
}

static void sha256(const void *p, size_t n, uint8_t out[DIGEST_LEN])
{
	unsigned len = DIGEST_LEN;
	EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

static void password_digest(const struct cfx_auth *a, const struct user *u, const char *pw,
			    size_t pw_len, uint8_t out[DIGEST_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned len = DIGEST_LEN;

	CFX_ASSERT(ctx);
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, a->cache_key, sizeof a->cache_key);
	EVP_DigestUpdate(ctx, u->info.name, strlen(u->info.name) + 1);
	EVP_DigestUpdate(ctx, u->cred[0].salt, u->cred[0].salt_len);
	EVP_DigestUpdate(ctx, pw, pw_len);
	EVP_DigestFinal_ex(ctx, out, &len);
	EVP_MD_CTX_free(ctx);
}

static char *b64_encode(const uint8_t *p, size_t n)
{
	char *out = cfx_malloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* Strict enough for our own file: returns the decoded length or -1. */
static int b64_decode(const char *s, uint8_t *out, size_t max)
{
	size_t n = strlen(s);
	int len, pad = 0;

	if (n % 4 || n / 4 * 3 > max + 2)
		return -1;
	if (n && s[n - 1] == '=')
		pad++;
	if (n > 1 && s[n - 2] == '=')
		pad++;
	uint8_t *tmp = cfx_malloc(n / 4 * 3 + 1);
	len = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
	if (len < 0 || (size_t)(len - pad) > max) {
		cfx_free(tmp);
		return -1;
	}
	len -= pad;
	memcpy(out, tmp, (size_t)len);
	cfx_free(tmp);
	return len;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The node key and the encrypted HMAC secrets
 * ------------------------------------------------------------------------ */

static int node_key_load(struct cfx_auth *a, int create)
{
	char path[PATH_MAX];
	int fd;

	if (a->have_node_key)
		return 0;
	snprintf(path, sizeof path, "%s/%s", a->dir, AUTH_KEY_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, a->node_key, sizeof a->node_key);
		close(fd);
		if (n != (ssize_t)sizeof a->node_key) {
			cfx_log_error("auth: %s is damaged (not %d bytes)", path, NODE_KEY_LEN);
			return CFX_ECORRUPT;
		}
		a->have_node_key = 1;
		return 0;
	}
	if (errno != ENOENT || !create)
		return errno == ENOENT ? CFX_ENOENT : cfx_err_from_errno(errno);
	if (RAND_bytes(a->node_key, sizeof a->node_key) != 1)
		return CFX_ESYS;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cfx_err_from_errno(errno);
	if (write(fd, a->node_key, sizeof a->node_key) != (ssize_t)sizeof a->node_key ||
	    fsync(fd)) {
		int e = errno;
		close(fd);
		unlink(path);
		return cfx_err_from_errno(e);
	}
	close(fd);
	cfx_fsync_dir(a->fops, a->dir);
	a->have_node_key = 1;
	return 0;
}

/* nonce | ciphertext | tag, base64; the user name is authenticated with it. */
static char *secret_seal(struct cfx_auth *a, const char *user, const uint8_t *p, size_t n)
{
	uint8_t *buf = cfx_malloc(GCM_NONCE_LEN + n + GCM_TAG_LEN);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len = 0, ok;
	char *out = NULL;

	CFX_ASSERT(ctx);
	ok = RAND_bytes(buf, GCM_NONCE_LEN) == 1 &&
	     EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, a->node_key, buf) == 1 &&
	     EVP_EncryptUpdate(ctx, NULL, &len, (const uint8_t *)user, (int)strlen(user)) == 1 &&
	     EVP_EncryptUpdate(ctx, buf + GCM_NONCE_LEN, &len, p, (int)n) == 1 &&
	     EVP_EncryptFinal_ex(ctx, buf + GCM_NONCE_LEN + len, &len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN,
				 buf + GCM_NONCE_LEN + n) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (ok)
		out = b64_encode(buf, GCM_NONCE_LEN + n + GCM_TAG_LEN);
	OPENSSL_cleanse(buf, GCM_NONCE_LEN + n);
	cfx_free(buf);
	return out;
}

static int secret_open(struct cfx_auth *a, const char *user, const char *text, uint8_t **out,
		       size_t *out_len)
{
	uint8_t buf[GCM_NONCE_LEN + CFX_AUTH_PASSWORD_MAX + GCM_TAG_LEN];
	int n = b64_decode(text, buf, sizeof buf), len = 0, ok;
	EVP_CIPHER_CTX *ctx;
	uint8_t *pt;
	size_t ct_len;

	if (n < GCM_NONCE_LEN + GCM_TAG_LEN)
		return CFX_ECORRUPT;
	ct_len = (size_t)n - GCM_NONCE_LEN - GCM_TAG_LEN;
	pt = cfx_malloc(ct_len + 1);
	ctx = EVP_CIPHER_CTX_new();
	CFX_ASSERT(ctx);
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, a->node_key, buf) == 1 &&
	     EVP_DecryptUpdate(ctx, NULL, &len, (const uint8_t *)user, (int)strlen(user)) == 1 &&
	     EVP_DecryptUpdate(ctx, pt, &len, buf + GCM_NONCE_LEN, (int)ct_len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN,
				 buf + GCM_NONCE_LEN + ct_len) == 1 &&
	     EVP_DecryptFinal_ex(ctx, pt + len, &len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(buf, sizeof buf);
	if (!ok) {
		OPENSSL_cleanse(pt, ct_len);
		cfx_free(pt);
		return CFX_ECORRUPT;
	}
	*out = pt;
	*out_len = ct_len;
	return 0;
}

/* ------------------------------------------------------------------------
 * Users and policies in memory
 * ------------------------------------------------------------------------ */

static void user_free(struct user *u)
{
	if (!u)
		return;
	if (u->secret) {
		OPENSSL_cleanse(u->secret, u->secret_len);
		cfx_free(u->secret);
	}
	OPENSSL_cleanse(u, sizeof *u);
	cfx_free(u);
}

/* Index of `name`, or of where it would go (then *found = 0). @locks a->lock */
static size_t user_find(const struct cfx_auth *a, const char *name, size_t n, int *found)
{
	size_t lo = 0, hi = a->nusers;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *m = a->users[mid]->info.name;
		int c = strncmp(m, name, n);
		if (c == 0)
			c = m[n] ? 1 : 0;
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

static struct user *user_get(const struct cfx_auth *a, const char *name, size_t n)
{
	int found;
	size_t i = user_find(a, name, n, &found);
	return found ? a->users[i] : NULL;
}

static void user_insert(struct cfx_auth *a, struct user *u)
{
	int found;
	size_t i = user_find(a, u->info.name, strlen(u->info.name), &found);

	CFX_ASSERT(!found);
	if (a->nusers == a->cap_users) {
		a->cap_users = a->cap_users ? 2 * a->cap_users : 8;
		a->users = cfx_realloc(a->users, a->cap_users * sizeof *a->users);
	}
	memmove(a->users + i + 1, a->users + i, (a->nusers - i) * sizeof *a->users);
	a->users[i] = u;
	a->nusers++;
	atomic_store(&a->enabled, 1);
}

/*
 * Whether replacing `skip` (the user being deleted or changed) by `repl`
 * (NULL: gone) would take away the last enabled super user while users
 * remain: nobody could manage users and policies any more. @locks a->lock
 */
static bool leaves_no_super(const struct cfx_auth *a, const struct user *skip,
			    const struct user *repl)
{
	size_t left = 0, before = 0, after = 0;

	for (size_t i = 0; i < a->nusers; i++) {
		const struct user *u = a->users[i];
		before += u->info.super && u->info.enabled;
		if (u == skip)
			u = repl;
		if (!u)
			continue;
		left++;
		after += u->info.super && u->info.enabled;
	}
	return before > 0 && after == 0 && left > 0;
}

/* Fills the credentials (and the sealed secret) of u from a password. */
static int user_set_password(struct cfx_auth *a, struct user *u, const char *pw, size_t n)
{
	int rc;

	if (n == 0 || n > CFX_AUTH_PASSWORD_MAX)
		return CFX_EINVAL;
	rc = cfx_scram_cred_derive(CFX_SCRAM_SHA256, pw, n, NULL, 0, a->iterations, &u->cred[0]);
	if (!rc)
		rc = cfx_scram_cred_derive(CFX_SCRAM_SHA512, pw, n, NULL, 0, a->iterations,
					   &u->cred[1]);
	if (rc)
		return rc;
	if (u->secret) {
		OPENSSL_cleanse(u->secret, u->secret_len);
		cfx_free(u->secret);
	}
	u->secret = cfx_malloc(n);
	memcpy(u->secret, pw, n);
	u->secret_len = n;
	u->ncache = 0;
	return 0;
}

static int acl_validate(struct cfx_auth_acl *acl, struct acl_ent *e, const char **why)
{
	if (!acl->subject[0] || (strcmp(acl->subject, "*") && strcmp(acl->subject, "anonymous") &&
				 !user_name_ok(acl->subject))) {
		*why = "subject must be a user name, \"*\" or \"anonymous\"";
		return CFX_EINVAL;
	}
	if ((unsigned)acl->resource > CFX_AUTH_GROUP) {
		*why = "resource must be cluster, topic:NAME or group:NAME";
		return CFX_EINVAL;
	}
	if ((unsigned)acl->pattern > CFX_AUTH_ANY) {
		*why = "pattern must be literal, prefixed or any";
		return CFX_EINVAL;
	}
	if (acl->resource == CFX_AUTH_CLUSTER) {
		acl->pattern = CFX_AUTH_ANY;
		acl->name[0] = 0;
	}
	if (acl->pattern == CFX_AUTH_ANY)
		acl->name[0] = 0;
	else if (acl->pattern == CFX_AUTH_LITERAL && !acl->name[0]) {
		*why = "a literal resource needs a name";
		return CFX_EINVAL;
	}
	if (!acl->actions || (acl->actions & ~(unsigned)CFX_AUTH_ALL)) {
		*why = "actions must be some of PUB, SUB, CREATE, UPDATE, DELETE, GET, LIST, ALL";
		return CFX_EINVAL;
	}
	memset(e, 0, sizeof *e);
	e->bits = -1;
	if (acl->source[0] && parse_cidr(acl->source, &e->net, &e->bits)) {
		*why = "source must be an address or address/prefix-length";
		return CFX_EINVAL;
	}
	e->acl = *acl;
	return 0;
}

/* ------------------------------------------------------------------------
 * Persistence: meta/auth.json
 * ------------------------------------------------------------------------ */

static json_t *cred_json(const struct cfx_scram_cred *c)
{
	char buf[512];

	if (cfx_scram_cred_format(c, buf, sizeof buf) < 0)
		return json_null();
	return json_string(buf);
}

/* @locks a->lock (write) */
static int save_locked(struct cfx_auth *a)
{
	json_t *root = json_object(), *users = json_array(), *acls = json_array();
	char path[PATH_MAX], hexbuf[2 * DIGEST_LEN + 1];
	char *text;
	int rc = 0;

	for (size_t i = 0; i < a->nusers; i++) {
		const struct user *u = a->users[i];
		json_t *ju = json_object(), *tok = json_array();
		json_object_set_new(ju, "name", json_string(u->info.name));
		json_object_set_new(ju, "super", json_boolean(u->info.super));
		json_object_set_new(ju, "enabled", json_boolean(u->info.enabled));
		json_object_set_new(ju, "created_ms", json_integer(u->info.created_ms));
		json_object_set_new(ju, "scram_sha256", cred_json(&u->cred[0]));
		json_object_set_new(ju, "scram_sha512", cred_json(&u->cred[1]));
		if (u->secret) {
			char *sealed = secret_seal(a, u->info.name, u->secret, u->secret_len);
			if (!sealed) {
				rc = CFX_ESYS;
				json_decref(ju);
				json_decref(tok);
				goto out;
			}
			json_object_set_new(ju, "secret", json_string(sealed));
			cfx_free(sealed);
		}
		for (uint32_t t = 0; t < u->ntokens; t++) {
			hex(u->tokens[t], DIGEST_LEN, hexbuf);
			json_array_append_new(tok, json_string(hexbuf));
		}
		json_object_set_new(ju, "tokens", tok);
		json_array_append_new(users, ju);
	}
	for (size_t i = 0; i < a->nacls; i++) {
		const struct cfx_auth_acl *c = &a->acls[i].acl;
		json_t *acts = json_array();
		if (c->actions == CFX_AUTH_ALL)
			json_array_append_new(acts, json_string("ALL"));
		else
			for (unsigned b = 0; b < 7; b++)
				if (c->actions & (1u << b))
					json_array_append_new(acts, json_string(action_names[b]));
		json_array_append_new(
			acls, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:s, s:s}", "id",
					(json_int_t)c->id, "subject", c->subject, "resource",
					cfx_auth_resource_name(c->resource), "pattern",
					cfx_auth_pattern_name(c->pattern), "name", c->name,
					"actions", acts, "source", c->source, "decision",
					c->deny ? "deny" : "allow"));
	}
	json_object_set_new(root, "version", json_integer(AUTH_VERSION));
	json_object_set_new(root, "next_acl_id", json_integer((json_int_t)a->next_acl_id));
	json_object_set(root, "users", users);
	json_object_set(root, "acls", acls);
	text = json_dumps(root, JSON_INDENT(2));
	if (!text) {
		rc = CFX_ENOMEM;
		goto out;
	}
	snprintf(path, sizeof path, "%s/%s", a->dir, AUTH_FILE);
	rc = cfx_write_file_atomic_mode(a->fops, path, text, strlen(text), 0600);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (rc) {
		cfx_log_error("auth: cannot save %s: %s", path, strerror(-rc));
		rc = cfx_err_from_errno(-rc);
	}
out:
	json_decref(users);
	json_decref(acls);
	json_decref(root);
	return rc;
}

static int load_user(struct cfx_auth *a, json_t *ju)
{
	struct user *u = cfx_calloc(1, sizeof *u);
	const char *name = json_string_value(json_object_get(ju, "name"));
	const char *c256 = json_string_value(json_object_get(ju, "scram_sha256"));
	const char *c512 = json_string_value(json_object_get(ju, "scram_sha512"));
	const char *secret = json_string_value(json_object_get(ju, "secret"));
	json_t *tok = json_object_get(ju, "tokens"), *t;
	size_t i;

	if (!name || !user_name_ok(name) || !c256 || !c512 ||
	    cfx_scram_cred_parse(c256, strlen(c256), &u->cred[0]) ||
	    cfx_scram_cred_parse(c512, strlen(c512), &u->cred[1]) ||
	    u->cred[0].mech != CFX_SCRAM_SHA256 || u->cred[1].mech != CFX_SCRAM_SHA512)
		goto bad;
	int found;
	user_find(a, name, strlen(name), &found);
	if (found)
		goto bad;
	snprintf(u->info.name, sizeof u->info.name, "%s", name);
	u->info.super = json_is_true(json_object_get(ju, "super"));
	u->info.enabled = json_is_true(json_object_get(ju, "enabled"));
	u->info.created_ms = json_integer_value(json_object_get(ju, "created_ms"));
	if (secret) {
		if (node_key_load(a, 0) || secret_open(a, name, secret, &u->secret, &u->secret_len))
			cfx_log_warn("auth: the HMAC secret of user %s cannot be read (%s/%s missing "
				     "or changed); set the password again for RocketMQ clients",
				     name, a->dir, AUTH_KEY_FILE);
	}
	json_array_foreach(tok, i, t)
	{
		if (u->ntokens == TOKENS_MAX || !json_is_string(t) ||
		    unhex(json_string_value(t), u->tokens[u->ntokens], DIGEST_LEN))
			goto bad;
		u->ntokens++;
	}
	u->info.tokens = u->ntokens;
	user_insert(a, u);
	return 0;
bad:
	user_free(u);
	return CFX_ECORRUPT;
}

static int load_acl(struct cfx_auth *a, json_t *jc)
{
	struct cfx_auth_acl acl = { 0 };
	struct acl_ent e;
	const char *why, *s;
	json_t *acts = json_object_get(jc, "actions"), *v;
	size_t i;

	acl.id = (uint64_t)json_integer_value(json_object_get(jc, "id"));
	s = json_string_value(json_object_get(jc, "subject"));
	if (!s || snprintf(acl.subject, sizeof acl.subject, "%s", s) >= (int)sizeof acl.subject)
		return CFX_ECORRUPT;
	s = json_string_value(json_object_get(jc, "resource"));
	if (!s || cfx_auth_resource_parse(s, &acl.resource))
		return CFX_ECORRUPT;
	s = json_string_value(json_object_get(jc, "pattern"));
	if (!s || cfx_auth_pattern_parse(s, &acl.pattern))
		return CFX_ECORRUPT;
	s = json_string_value(json_object_get(jc, "name"));
	if (!s || snprintf(acl.name, sizeof acl.name, "%s", s) >= (int)sizeof acl.name)
		return CFX_ECORRUPT;
	s = json_string_value(json_object_get(jc, "source"));
	if (s && snprintf(acl.source, sizeof acl.source, "%s", s) >= (int)sizeof acl.source)
		return CFX_ECORRUPT;
	json_array_foreach(acts, i, v)
	{
		unsigned bit;
		if (!json_is_string(v) || cfx_auth_action_parse(json_string_value(v), &bit))
			return CFX_ECORRUPT;
		acl.actions |= bit;
	}
	s = json_string_value(json_object_get(jc, "decision"));
	acl.deny = s && !strcmp(s, "deny");
	if (!acl.id || acl_validate(&acl, &e, &why))
		return CFX_ECORRUPT;
	if (a->nacls == a->cap_acls) {
		a->cap_acls = a->cap_acls ? 2 * a->cap_acls : 16;
		a->acls = cfx_realloc(a->acls, a->cap_acls * sizeof *a->acls);
	}
	a->acls[a->nacls++] = e;
	if (acl.id >= a->next_acl_id)
		a->next_acl_id = acl.id + 1;
	return 0;
}

static int load(struct cfx_auth *a)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *root, *v;
	size_t i;
	int rc = 0;

	snprintf(path, sizeof path, "%s/%s", a->dir, AUTH_FILE);
	if (access(path, F_OK))
		return errno == ENOENT ? 0 : cfx_err_from_errno(errno);
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		cfx_log_error("auth: %s: %s (line %d)", path, root ? "not an object" : jerr.text,
			      jerr.line);
		json_decref(root);
		return CFX_ECORRUPT;
	}
	if (json_integer_value(json_object_get(root, "version")) != AUTH_VERSION) {
		cfx_log_error("auth: %s: unknown version", path);
		json_decref(root);
		return CFX_EVERSION;
	}
	a->next_acl_id = (uint64_t)json_integer_value(json_object_get(root, "next_acl_id"));
	if (a->next_acl_id == 0)
		a->next_acl_id = 1;
	json_array_foreach(json_object_get(root, "users"), i, v)
	{
		if ((rc = load_user(a, v)))
			break;
	}
	if (!rc)
		json_array_foreach(json_object_get(root, "acls"), i, v)
		{
			if ((rc = load_acl(a, v)))
				break;
		}
	json_decref(root);
	if (rc)
		cfx_log_error("auth: %s: a damaged entry", path);
	return rc;
}

/* ------------------------------------------------------------------------
 * The auth thread
 * ------------------------------------------------------------------------ */

/* Returns CFX_OK or CFX_EAUTH. Costs one key derivation whatever the user. */
static int check_slow(struct cfx_auth *a, const char *name, const char *pw, size_t pw_len)
{
	struct cfx_scram_cred cred;
	struct user *u;
	int known, ok;

	pthread_rwlock_rdlock(&a->lock);
	u = user_get(a, name, strlen(name));
	known = u && u->info.enabled;
	if (known)
		cred = u->cred[0];
	pthread_rwlock_unlock(&a->lock);
	if (!known) {
		/* The same work for an unknown user, so time tells nothing. */
		static const uint8_t salt[32];
		cfx_scram_cred_derive(CFX_SCRAM_SHA256, pw, pw_len ? pw_len : 1, salt,
				      sizeof salt, a->iterations, &cred);
		return CFX_EAUTH;
	}
	ok = cfx_scram_cred_check(&cred, pw, pw_len);
	if (ok) {
		uint8_t d[DIGEST_LEN];
		pthread_rwlock_rdlock(&a->lock);
		u = user_get(a, name, strlen(name));
		if (u && !memcmp(u->cred[0].salt, cred.salt, cred.salt_len)) {
			password_digest(a, u, pw, pw_len, d);
			pthread_mutex_lock(&a->cache_lock);
			memcpy(u->cache[u->cache_next], d, DIGEST_LEN);
			u->cache_next = (u->cache_next + 1) % CACHE_SLOTS;
			if (u->ncache < CACHE_SLOTS)
				u->ncache++;
			pthread_mutex_unlock(&a->cache_lock);
		}
		pthread_rwlock_unlock(&a->lock);
	}
	OPENSSL_cleanse(&cred, sizeof cred);
	return ok ? CFX_OK : CFX_EAUTH;
}

static void *auth_thread(void *arg)
{
	struct cfx_auth *a = arg;
	struct sched_param sp = { 0 };

	/* Key derivations only use CPU the network threads leave: a client
	 * guessing passwords cannot slow down the others (docs/security.md). */
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);

	pthread_mutex_lock(&a->qlock);
	for (;;) {
		while (!a->qhead && !a->stopping)
			pthread_cond_wait(&a->qcond, &a->qlock);
		struct job *j = a->qhead;
		if (!j)
			break;
		a->qhead = j->next;
		if (!a->qhead)
			a->qtail = NULL;
		a->qlen--;
		int stopping = a->stopping;
		pthread_mutex_unlock(&a->qlock);

		int rc = stopping ? CFX_ECLOSED : check_slow(a, j->user, j->password, j->pw_len);
		atomic_fetch_add(&a->checks, 1);
		OPENSSL_cleanse(j->password, sizeof j->password);
		j->done(j->arg, rc);
		cfx_free(j);
		pthread_mutex_lock(&a->qlock);
	}
	pthread_mutex_unlock(&a->qlock);
	return NULL;
}

int cfx_auth_password_check(struct cfx_auth *a, const char *user, size_t user_len,
			    const char *password, size_t pw_len, cfx_auth_done_fn done, void *arg)
{
	struct user *u;
	struct job *j;
	int hit = 0;

	if (user_len == 0 || user_len > CFX_AUTH_USER_MAX || pw_len > CFX_AUTH_PASSWORD_MAX)
		return CFX_EAUTH;
	pthread_rwlock_rdlock(&a->lock);
	u = user_get(a, user, user_len);
	if (u && !u->info.enabled) {
		pthread_rwlock_unlock(&a->lock);
		return CFX_EAUTH;
	}
	if (u) {
		uint8_t d[DIGEST_LEN];
		password_digest(a, u, password, pw_len, d);
		pthread_mutex_lock(&a->cache_lock);
		for (uint32_t i = 0; i < u->ncache && !hit; i++)
			hit = !CRYPTO_memcmp(u->cache[i], d, DIGEST_LEN);
		pthread_mutex_unlock(&a->cache_lock);
	}
	pthread_rwlock_unlock(&a->lock);
	if (hit) {
		atomic_fetch_add(&a->cache_hits, 1);
		return CFX_OK;
	}

	j = cfx_calloc(1, sizeof *j);
	memcpy(j->user, user, user_len);
	memcpy(j->password, password, pw_len);
	j->pw_len = pw_len;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&a->qlock);
	if (a->qlen >= QUEUE_MAX || a->stopping) {
		pthread_mutex_unlock(&a->qlock);
		OPENSSL_cleanse(j->password, sizeof j->password);
		cfx_free(j);
		return CFX_EAUTH;
	}
	if (a->qtail)
		a->qtail->next = j;
	else
		a->qhead = j;
	a->qtail = j;
	a->qlen++;
	pthread_cond_signal(&a->qcond);
	pthread_mutex_unlock(&a->qlock);
	return CFX_AGAIN;
}

/* ------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------ */

int cfx_auth_open(const struct cfx_auth_opts *o, struct cfx_auth **out)
{
	struct cfx_auth *a = cfx_calloc(1, sizeof *a);
	struct cfx_log_ratelimit rl = CFX_LOG_RATELIMIT_INIT(10, 1000);
	int rc;

	snprintf(a->dir, sizeof a->dir, "%s", o->dir);
	a->iterations = o->scram_iterations < 4096 ? 4096 : o->scram_iterations;
	a->allow_anonymous = o->allow_anonymous;
	a->fops = o->fops ? o->fops : &cfx_fileops_real;
	a->next_acl_id = 1;
	a->log_rl = rl;
	pthread_rwlock_init(&a->lock, NULL);
	pthread_mutex_init(&a->cache_lock, NULL);
	pthread_mutex_init(&a->qlock, NULL);
	pthread_mutex_init(&a->log_lock, NULL);
	pthread_cond_init(&a->qcond, NULL);
	if (RAND_bytes(a->cache_key, sizeof a->cache_key) != 1) {
		rc = CFX_ESYS;
		goto fail;
	}
	rc = cfx_mkdir_p(a->fops, a->dir);
	if (rc) {
		rc = cfx_err_from_errno(-rc);
		goto fail;
	}
	if ((rc = load(a)))
		goto fail;
	if (pthread_create(&a->thread, NULL, auth_thread, a)) {
		rc = CFX_ESYS;
		goto fail;
	}
	*out = a;
	return 0;
fail:
	a->thread = 0;
	cfx_auth_close(a);
	return rc;
}

void cfx_auth_close(struct cfx_auth *a)
{
	if (!a)
		return;
	if (a->thread) {
		pthread_mutex_lock(&a->qlock);
		a->stopping = 1;
		pthread_cond_signal(&a->qcond);
		pthread_mutex_unlock(&a->qlock);
		pthread_join(a->thread, NULL);
	}
	for (size_t i = 0; i < a->nusers; i++)
		user_free(a->users[i]);
	cfx_free(a->users);
	cfx_free(a->acls);
	pthread_rwlock_destroy(&a->lock);
	pthread_mutex_destroy(&a->cache_lock);
	pthread_mutex_destroy(&a->qlock);
	pthread_mutex_destroy(&a->log_lock);
	pthread_cond_destroy(&a->qcond);
	OPENSSL_cleanse(a, sizeof *a);
	cfx_free(a);
}

bool cfx_auth_enabled(const struct cfx_auth *a)
{
	return a && atomic_load(&((struct cfx_auth *)a)->enabled);
}

bool cfx_auth_anonymous_ok(const struct cfx_auth *a)
{
	return !cfx_auth_enabled(a) || a->allow_anonymous;
}

/* ------------------------------------------------------------------------
 * Users
 * ------------------------------------------------------------------------ */

int cfx_auth_user_create(struct cfx_auth *a, const char *name, const char *password,
			 size_t pw_len, int super, int enabled)
{
	struct user *u;
	int rc, found;

	if (!user_name_ok(name))
		return CFX_EINVAL;
	u = cfx_calloc(1, sizeof *u);
	snprintf(u->info.name, sizeof u->info.name, "%s", name);
	u->info.super = !!super;
	u->info.enabled = !!enabled;
	u->info.created_ms = cfx_clock_wall_ms();
	if ((rc = user_set_password(a, u, password, pw_len))) {
		user_free(u);
		return rc;
	}
	pthread_rwlock_wrlock(&a->lock);
	user_find(a, name, strlen(name), &found);
	if (found || a->nusers >= USERS_MAX) {
		pthread_rwlock_unlock(&a->lock);
		user_free(u);
		return found ? CFX_EEXIST : CFX_E2BIG;
	}
	if ((rc = node_key_load(a, 1))) {
		pthread_rwlock_unlock(&a->lock);
		user_free(u);
		return rc;
	}
	user_insert(a, u);
	if ((rc = save_locked(a))) {
		size_t i = user_find(a, name, strlen(name), &found);
		memmove(a->users + i, a->users + i + 1, (a->nusers - i - 1) * sizeof *a->users);
		a->nusers--;
		atomic_store(&a->enabled, a->nusers > 0);
		user_free(u);
	}
	pthread_rwlock_unlock(&a->lock);
	if (!rc)
		cfx_log_info("auth: user %s created (%s)", name, super ? "super" : "normal");
	return rc;
}

int cfx_auth_user_update(struct cfx_auth *a, const char *name, const char *password,
			 size_t pw_len, int super, int enabled)
{
	struct user *u, *nu = NULL;
	int rc, found;
	size_t i;

	if (password) {
		/* Derive outside the lock: it is the slow part. */
		nu = cfx_calloc(1, sizeof *nu);
		if ((rc = user_set_password(a, nu, password, pw_len))) {
			user_free(nu);
			return rc;
		}
	}
	pthread_rwlock_wrlock(&a->lock);
	i = user_find(a, name, strlen(name), &found);
	if (!found) {
		pthread_rwlock_unlock(&a->lock);
		user_free(nu);
		return CFX_ENOENT;
	}
	u = a->users[i];
	if (nu) {
		nu->info = u->info;
		memcpy(nu->tokens, u->tokens, sizeof u->tokens);
		nu->ntokens = u->ntokens;
	} else {
		nu = cfx_malloc(sizeof *nu);
		*nu = *u;
		nu->ncache = 0;
		if (u->secret) {
			nu->secret = cfx_malloc(u->secret_len);
			memcpy(nu->secret, u->secret, u->secret_len);
		}
	}
	if (super >= 0)
		nu->info.super = !!super;
	if (enabled >= 0)
		nu->info.enabled = !!enabled;
	if (leaves_no_super(a, u, nu)) {
		pthread_rwlock_unlock(&a->lock);
		user_free(nu);
		return CFX_ELOCKED;
	}
	a->users[i] = nu;
	if ((rc = save_locked(a))) {
		a->users[i] = u;
		u = nu;
	}
	pthread_rwlock_unlock(&a->lock);
	user_free(u);
	return rc;
}

int cfx_auth_user_delete(struct cfx_auth *a, const char *name)
{
	int rc, found;
	size_t i, kept = 0;
	struct user *u;
	struct acl_ent *saved;
	size_t nsaved;

	pthread_rwlock_wrlock(&a->lock);
	i = user_find(a, name, strlen(name), &found);
	if (!found) {
		pthread_rwlock_unlock(&a->lock);
		return CFX_ENOENT;
	}
	u = a->users[i];
	if (leaves_no_super(a, u, NULL)) {
		pthread_rwlock_unlock(&a->lock);
		return CFX_ELOCKED;
	}
	memmove(a->users + i, a->users + i + 1, (a->nusers - i - 1) * sizeof *a->users);
	a->nusers--;
	/* Its policies go with it. */
	nsaved = a->nacls;
	saved = cfx_malloc((nsaved ? nsaved : 1) * sizeof *saved);
	if (nsaved)
		memcpy(saved, a->acls, nsaved * sizeof *saved);
	for (size_t k = 0; k < a->nacls; k++)
		if (strcmp(a->acls[k].acl.subject, name))
			a->acls[kept++] = a->acls[k];
	a->nacls = kept;
	if ((rc = save_locked(a))) {
		if (nsaved)
			memcpy(a->acls, saved, nsaved * sizeof *saved);
		a->nacls = nsaved;
		memmove(a->users + i + 1, a->users + i, (a->nusers - i) * sizeof *a->users);
		a->users[i] = u;
		a->nusers++;
		u = NULL;
	}
	atomic_store(&a->enabled, a->nusers > 0);
	pthread_rwlock_unlock(&a->lock);
	cfx_free(saved);
	user_free(u);
	return rc;
}

int cfx_auth_user_get(struct cfx_auth *a, const char *name, struct cfx_auth_user_info *out)
{
	struct user *u;

	pthread_rwlock_rdlock(&a->lock);
	u = user_get(a, name, strlen(name));
	if (u)
		*out = u->info;
	pthread_rwlock_unlock(&a->lock);
	return u ? 0 : CFX_ENOENT;
}

void cfx_auth_user_foreach(struct cfx_auth *a,
			   void (*fn)(void *arg, const struct cfx_auth_user_info *u), void *arg)
{
	pthread_rwlock_rdlock(&a->lock);
	for (size_t i = 0; i < a->nusers; i++)
		fn(arg, &a->users[i]->info);
	pthread_rwlock_unlock(&a->lock);
}

int cfx_auth_token_create(struct cfx_auth *a, const char *name, char out[CFX_AUTH_TOKEN_LEN + 1])
{
	uint8_t tok[TOKEN_BYTES];
	struct user *u;
	int rc;

	if (RAND_bytes(tok, sizeof tok) != 1)
		return CFX_ESYS;
	pthread_rwlock_wrlock(&a->lock);
	u = user_get(a, name, strlen(name));
	if (!u || u->ntokens == TOKENS_MAX) {
		pthread_rwlock_unlock(&a->lock);
		return u ? CFX_E2BIG : CFX_ENOENT;
	}
	sha256(tok, sizeof tok, u->tokens[u->ntokens]);
	u->ntokens++;
	u->info.tokens = u->ntokens;
	if ((rc = save_locked(a))) {
		u->ntokens--;
		u->info.tokens = u->ntokens;
	}
	pthread_rwlock_unlock(&a->lock);
	if (!rc)
		hex(tok, sizeof tok, out);
	OPENSSL_cleanse(tok, sizeof tok);
	return rc;
}

int cfx_auth_token_check(struct cfx_auth *a, const char *token, size_t len,
			 char user_out[CFX_AUTH_USER_MAX + 1])
{
	uint8_t tok[TOKEN_BYTES], d[DIGEST_LEN];
	char buf[CFX_AUTH_TOKEN_LEN + 1];
	int rc = CFX_EAUTH;

	if (len != CFX_AUTH_TOKEN_LEN)
		return CFX_EAUTH;
	memcpy(buf, token, len);
	buf[len] = 0;
	if (unhex(buf, tok, sizeof tok))
		return CFX_EAUTH;
	sha256(tok, sizeof tok, d);
	pthread_rwlock_rdlock(&a->lock);
	for (size_t i = 0; i < a->nusers && rc; i++) {
		const struct user *u = a->users[i];
		for (uint32_t t = 0; t < u->ntokens; t++)
			if (!CRYPTO_memcmp(u->tokens[t], d, DIGEST_LEN) && u->info.enabled) {
				snprintf(user_out, CFX_AUTH_USER_MAX + 1, "%s", u->info.name);
				rc = 0;
				break;
			}
	}
	pthread_rwlock_unlock(&a->lock);
	OPENSSL_cleanse(tok, sizeof tok);
	return rc;
}

int cfx_auth_scram_cred(struct cfx_auth *a, const char *user, enum cfx_scram_mech mech,
			struct cfx_scram_cred *out)
{
	struct user *u;
	int rc = CFX_ENOENT;

	if ((unsigned)mech > CFX_SCRAM_SHA512)
		return CFX_EINVAL;
	pthread_rwlock_rdlock(&a->lock);
	u = user_get(a, user, strlen(user));
	if (u && u->info.enabled) {
		*out = u->cred[mech == CFX_SCRAM_SHA512];
		rc = 0;
	}
	pthread_rwlock_unlock(&a->lock);
	return rc;
}

int cfx_auth_hmac_secret(struct cfx_auth *a, const char *user, size_t user_len, uint8_t *out,
			 size_t out_max, size_t *out_len)
{
	struct user *u;
	int rc = CFX_ENOENT;

	pthread_rwlock_rdlock(&a->lock);
	u = user_get(a, user, user_len);
	if (u && u->info.enabled && u->secret && u->secret_len <= out_max) {
		memcpy(out, u->secret, u->secret_len);
		*out_len = u->secret_len;
		rc = 0;
	}
	pthread_rwlock_unlock(&a->lock);
	return rc;
}

/* ------------------------------------------------------------------------
 * Policies
 * ------------------------------------------------------------------------ */

int cfx_auth_acl_create(struct cfx_auth *a, struct cfx_auth_acl *acl, const char **why)
{
	struct acl_ent e;
	int rc;

	*why = NULL;
	if ((rc = acl_validate(acl, &e, why)))
		return rc;
	pthread_rwlock_wrlock(&a->lock);
	if (a->nacls >= ACLS_MAX) {
		pthread_rwlock_unlock(&a->lock);
		*why = "too many policies";
		return CFX_E2BIG;
	}
	if (a->nacls == a->cap_acls) {
		a->cap_acls = a->cap_acls ? 2 * a->cap_acls : 16;
		a->acls = cfx_realloc(a->acls, a->cap_acls * sizeof *a->acls);
	}
	e.acl.id = a->next_acl_id++;
	a->acls[a->nacls++] = e;
	if ((rc = save_locked(a))) {
		a->nacls--;
		a->next_acl_id--;
	} else {
		acl->id = e.acl.id;
	}
	pthread_rwlock_unlock(&a->lock);
	return rc;
}

int cfx_auth_acl_delete(struct cfx_auth *a, uint64_t id)
{
	int rc = CFX_ENOENT;

	pthread_rwlock_wrlock(&a->lock);
	for (size_t i = 0; i < a->nacls; i++) {
		if (a->acls[i].acl.id != id)
			continue;
		struct acl_ent e = a->acls[i];
		memmove(a->acls + i, a->acls + i + 1, (a->nacls - i - 1) * sizeof *a->acls);
		a->nacls--;
		if ((rc = save_locked(a))) {
			memmove(a->acls + i + 1, a->acls + i, (a->nacls - i) * sizeof *a->acls);
			a->acls[i] = e;
			a->nacls++;
		}
		break;
	}
	pthread_rwlock_unlock(&a->lock);
	return rc;
}

void cfx_auth_acl_foreach(struct cfx_auth *a,
			  void (*fn)(void *arg, const struct cfx_auth_acl *acl), void *arg)
{
	pthread_rwlock_rdlock(&a->lock);
	for (size_t i = 0; i < a->nacls; i++)
		fn(arg, &a->acls[i].acl);
	pthread_rwlock_unlock(&a->lock);
}

/* ------------------------------------------------------------------------
 * Decisions
 * ------------------------------------------------------------------------ */

/*
 * How specifically a policy names the resource, or -1 when it does not
 * cover it: literal beats every prefix, a longer prefix beats a shorter,
 * any is 0.
 */
static long specificity(const struct cfx_auth_acl *p, const char *name, size_t n)
{
	size_t plen;

	switch (p->pattern) {
	case CFX_AUTH_ANY:
		return 0;
	case CFX_AUTH_PREFIXED:
		plen = strlen(p->name);
		return plen <= n && !memcmp(p->name, name, plen) ? (long)plen + 1 : -1;
	case CFX_AUTH_LITERAL:
		return strlen(p->name) == n && !memcmp(p->name, name, n) ? LONG_MAX : -1;
	}
	return -1;
}

static bool subject_applies(const struct cfx_auth_acl *p, const char *user)
{
	if (!user)
		return !strcmp(p->subject, "anonymous");
	return !strcmp(p->subject, "*") || !strcmp(p->subject, user);
}

int cfx_auth_authorize(struct cfx_auth *a, const char *user, enum cfx_auth_resource res,
		       const char *name, size_t name_len, unsigned action,
		       const struct cfx_auth_peer *peer)
{
	long best = -1;
	int allow = 0, deny = 0;

	if (!cfx_auth_enabled(a))
		return CFX_OK;
	pthread_rwlock_rdlock(&a->lock);
	if (user) {
		struct user *u = user_get(a, user, strlen(user));
		if (!u || !u->info.enabled) {
			pthread_rwlock_unlock(&a->lock);
			return CFX_EDENIED;
		}
		if (u->info.super) {
			pthread_rwlock_unlock(&a->lock);
			return CFX_OK;
		}
	} else if (!a->allow_anonymous) {
		pthread_rwlock_unlock(&a->lock);
		return CFX_EDENIED;
	}
	for (size_t i = 0; i < a->nacls; i++) {
		const struct acl_ent *e = &a->acls[i];
		const struct cfx_auth_acl *p = &e->acl;
		long s;
		if (p->resource != res || !(p->actions & action) || !subject_applies(p, user) ||
		    !cidr_covers(e, peer))
			continue;
		s = res == CFX_AUTH_CLUSTER ? 0 : specificity(p, name, name_len);
		if (s < 0 || s < best)
			continue;
		if (s > best) {
			best = s;
			allow = deny = 0;
		}
		if (p->deny)
			deny = 1;
		else
			allow = 1;
	}
	pthread_rwlock_unlock(&a->lock);
	return allow && !deny ? CFX_OK : CFX_EDENIED;
}

int cfx_auth_authorize_filter(struct cfx_auth *a, const char *user, const char *filter,
			      size_t len, size_t fixed_len, const struct cfx_auth_peer *peer)
{
	long best = -1;
	int allow = 0, deny = 0, under = 0;

	if (fixed_len >= len)
		return cfx_auth_authorize(a, user, CFX_AUTH_TOPIC, filter, len, CFX_AUTH_SUB, peer);
	if (!cfx_auth_enabled(a))
		return CFX_OK;
	pthread_rwlock_rdlock(&a->lock);
	if (user) {
		struct user *u = user_get(a, user, strlen(user));
		if (!u || !u->info.enabled) {
			pthread_rwlock_unlock(&a->lock);
			return CFX_EDENIED;
		}
		if (u->info.super) {
			pthread_rwlock_unlock(&a->lock);
			return CFX_OK;
		}
	} else if (!a->allow_anonymous) {
		pthread_rwlock_unlock(&a->lock);
		return CFX_EDENIED;
	}
	for (size_t i = 0; i < a->nacls; i++) {
		const struct acl_ent *e = &a->acls[i];
		const struct cfx_auth_acl *p = &e->acl;
		long s;
		if (p->resource != CFX_AUTH_TOPIC || !(p->actions & CFX_AUTH_SUB) ||
		    !subject_applies(p, user) || !cidr_covers(e, peer))
			continue;
		/* A deny for names the filter could match refuses the whole filter. */
		if (p->deny && p->pattern != CFX_AUTH_ANY && strlen(p->name) >= fixed_len &&
		    !memcmp(p->name, filter, fixed_len))
			under = 1;
		if (p->pattern == CFX_AUTH_LITERAL)
			s = specificity(p, filter, len);
		else
			s = specificity(p, filter, fixed_len);
		if (s < 0 || s < best)
			continue;
		if (s > best) {
			best = s;
			allow = deny = 0;
		}
		if (p->deny)
			deny = 1;
		else
			allow = 1;
	}
	pthread_rwlock_unlock(&a->lock);
	return allow && !deny && !under ? CFX_OK : CFX_EDENIED;
}

bool cfx_auth_is_super(struct cfx_auth *a, const char *user)
{
	struct user *u;
	bool r;

	if (!user)
		return false;
	pthread_rwlock_rdlock(&a->lock);
	u = user_get(a, user, strlen(user));
	r = u && u->info.enabled && u->info.super;
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ------------------------------------------------------------------------
 * Counting and logging
 * ------------------------------------------------------------------------ */

static int log_allowed(struct cfx_auth *a)
{
	int ok;

	if (CFX_LOG_WARN > cfx_log_level_cur)
		return 0;
	pthread_mutex_lock(&a->log_lock);
	ok = cfx_log_ratelimit_allow(&a->log_rl);
	pthread_mutex_unlock(&a->log_lock);
	return ok;
}

void cfx_auth_note_failure(struct cfx_auth *a, enum cfx_auth_proto p, const char *peer,
			   const char *user, const char *why)
{
	if ((unsigned)p >= CFX_AUTH_PROTO_N)
		return;
	atomic_fetch_add(&a->failures[p], 1);
	if (log_allowed(a))
		cfx_log_warn("auth: %s sign-in refused: peer %s, user \"%.*s\": %s",
			     cfx_auth_proto_name(p), peer ? peer : "?", CFX_AUTH_USER_MAX,
			     user ? user : "", why ? why : "wrong credentials");
}

void cfx_auth_note_denial(struct cfx_auth *a, enum cfx_auth_proto p, const char *peer,
			  const char *user, unsigned action, enum cfx_auth_resource res,
			  const char *name, size_t name_len)
{
	if ((unsigned)p >= CFX_AUTH_PROTO_N)
		return;
	atomic_fetch_add(&a->denials[p][action_index(action)], 1);
	if (log_allowed(a))
		cfx_log_warn("auth: %s denied: peer %s, user %s, %s on %s %.*s", cfx_auth_proto_name(p),
			     peer ? peer : "?", user ? user : "(anonymous)",
			     cfx_auth_action_name(action), cfx_auth_resource_name(res),
			     (int)(name_len > 255 ? 255 : name_len), name ? name : "");
}

void cfx_auth_stats(struct cfx_auth *a, struct cfx_auth_stats *out)
{
	memset(out, 0, sizeof *out);
	for (int p = 0; p < CFX_AUTH_PROTO_N; p++) {
		out->failures[p] = atomic_load(&a->failures[p]);
		for (int i = 0; i < 8; i++)
			out->denials[p][i] = atomic_load(&a->denials[p][i]);
	}
	out->checks = atomic_load(&a->checks);
	out->check_cache_hits = atomic_load(&a->cache_hits);
}
