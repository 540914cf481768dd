/*
 * test_auth.c - users, policies and their precedence, password checks on the
 * auth thread and their cache, tokens, persistence across a reopen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "broker/auth.h"

struct fx {
	char dir[256];
	struct cfx_auth *a;
};

static struct cfx_auth *open_auth(const char *dir, int anon)
{
	struct cfx_auth_opts o = { .dir = dir, .scram_iterations = 4096, .allow_anonymous = anon };
	struct cfx_auth *a = NULL;
	int rc = cfx_auth_open(&o, &a);
	if (rc)
		fail_msg("cfx_auth_open: %d", rc);
	return a;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/cfx_test_auth_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->a = open_auth(f->dir, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[300];
	cfx_auth_close(f->a);
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* ---- a synchronous wrapper of the password check ---- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, rc;
};

static void on_done(void *arg, int rc)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	w->rc = rc;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Returns the check's result; *async tells whether it went to the auth thread. */
static int check(struct cfx_auth *a, const char *user, const char *pw, int *async)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	int rc = cfx_auth_password_check(a, user, strlen(user), pw, strlen(pw), on_done, &w);
	if (async)
		*async = rc == CFX_AGAIN;
	if (rc != CFX_AGAIN)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	return w.rc;
}

static uint64_t acl(struct cfx_auth *a, const char *subject, enum cfx_auth_resource r,
		    enum cfx_auth_pattern p, const char *name, unsigned actions, const char *source,
		    int deny)
{
	struct cfx_auth_acl c = { 0 };
	const char *why;
	snprintf(c.subject, sizeof c.subject, "%s", subject);
	c.resource = r;
	c.pattern = p;
	snprintf(c.name, sizeof c.name, "%s", name);
	c.actions = actions;
	snprintf(c.source, sizeof c.source, "%s", source ? source : "");
	c.deny = deny;
	assert_int_equal(cfx_auth_acl_create(a, &c, &why), 0);
	assert_true(c.id > 0);
	return c.id;
}

static int topic(struct cfx_auth *a, const char *user, const char *name, unsigned action,
		 const char *peer)
{
	struct cfx_auth_peer p;
	cfx_auth_peer_parse(peer ? peer : "127.0.0.1:5000", &p);
	return cfx_auth_authorize(a, user, CFX_AUTH_TOPIC, name, strlen(name), action, &p);
}

/* ---- tests ---- */

static void no_users_means_open(void **state)
{
	struct fx *f = *state;
	assert_false(cfx_auth_enabled(f->a));
	assert_true(cfx_auth_anonymous_ok(f->a));
	assert_int_equal(topic(f->a, NULL, "t", CFX_AUTH_PUB, NULL), CFX_OK);
}

static void user_names_and_passwords_are_checked(void **state)
{
	struct fx *f = *state;
	assert_int_equal(cfx_auth_user_create(f->a, "", "pw", 2, 0, 1), CFX_EINVAL);
	assert_int_equal(cfx_auth_user_create(f->a, "a b", "pw", 2, 0, 1), CFX_EINVAL);
	assert_int_equal(cfx_auth_user_create(f->a, "anonymous", "pw", 2, 0, 1), CFX_EINVAL);
	assert_int_equal(cfx_auth_user_create(f->a, "alice", "", 0, 0, 1), CFX_EINVAL);
	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), 0);
	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), CFX_EEXIST);
	assert_true(cfx_auth_enabled(f->a));
	assert_false(cfx_auth_anonymous_ok(f->a));
}

static void passwords_are_checked_off_thread_and_remembered(void **state)
{
	struct fx *f = *state;
	int async;
	struct cfx_auth_stats st;

	assert_int_equal(cfx_auth_user_create(f->a, "alice", "s3cret", 6, 0, 1), 0);
	assert_int_equal(check(f->a, "alice", "wrong", &async), CFX_EAUTH);
	assert_true(async);
	assert_int_equal(check(f->a, "bob", "s3cret", &async), CFX_EAUTH);
	assert_true(async);
	assert_int_equal(check(f->a, "alice", "s3cret", &async), CFX_OK);
	assert_true(async);
	assert_int_equal(check(f->a, "alice", "s3cret", &async), CFX_OK);
	assert_false(async); /* remembered */
	assert_int_equal(check(f->a, "alice", "s3cre", &async), CFX_EAUTH);
	assert_true(async);
	cfx_auth_stats(f->a, &st);
	assert_int_equal(st.checks, 4);
	assert_int_equal(st.check_cache_hits, 1);

	/* A new password forgets the old one, cache included. */
	assert_int_equal(cfx_auth_user_update(f->a, "alice", "other", 5, -1, -1), 0);
	assert_int_equal(check(f->a, "alice", "s3cret", NULL), CFX_EAUTH);
	assert_int_equal(check(f->a, "alice", "other", NULL), CFX_OK);
	/* A disabled user is refused at once. */
	assert_int_equal(cfx_auth_user_create(f->a, "root", "pw", 2, 1, 1), 0);
	assert_int_equal(cfx_auth_user_update(f->a, "alice", NULL, 0, -1, 0), 0);
	assert_int_equal(check(f->a, "alice", "other", &async), CFX_EAUTH);
	assert_false(async);
}

static void scram_and_hmac_credentials(void **state)
{
	struct fx *f = *state;
	struct cfx_scram_cred c;
	uint8_t secret[256];
	size_t n;

	assert_int_equal(cfx_auth_user_create(f->a, "svc", "pencil", 6, 0, 1), 0);
	assert_int_equal(cfx_auth_scram_cred(f->a, "svc", CFX_SCRAM_SHA512, &c), 0);
	assert_int_equal(c.mech, CFX_SCRAM_SHA512);
	assert_true(cfx_scram_cred_check(&c, "pencil", 6));
	assert_int_equal(cfx_auth_scram_cred(f->a, "svc", CFX_SCRAM_SHA256, &c), 0);
	assert_true(cfx_scram_cred_check(&c, "pencil", 6));
	assert_int_equal(cfx_auth_scram_cred(f->a, "nobody", CFX_SCRAM_SHA256, &c), CFX_ENOENT);
	assert_int_equal(cfx_auth_hmac_secret(f->a, "svc", 3, secret, sizeof secret, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(secret, "pencil", 6);
}

static void precedence(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), 0);
	assert_int_equal(cfx_auth_user_create(f->a, "root", "pw", 2, 1, 1), 0);
	/* Nothing allowed yet; anonymous refused; super users pass. */
	assert_int_equal(topic(f->a, "alice", "orders", CFX_AUTH_PUB, NULL), CFX_EDENIED);
	assert_int_equal(topic(f->a, NULL, "orders", CFX_AUTH_PUB, NULL), CFX_EDENIED);
	assert_int_equal(topic(f->a, "root", "orders", CFX_AUTH_DELETE, NULL), CFX_OK);
	assert_int_equal(topic(f->a, "ghost", "orders", CFX_AUTH_PUB, NULL), CFX_EDENIED);

	acl(f->a, "alice", CFX_AUTH_TOPIC, CFX_AUTH_PREFIXED, "orders", CFX_AUTH_PUB, NULL, 0);
	assert_int_equal(topic(f->a, "alice", "orders", CFX_AUTH_PUB, NULL), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "orders.eu", CFX_AUTH_PUB, NULL), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "order", CFX_AUTH_PUB, NULL), CFX_EDENIED);
	assert_int_equal(topic(f->a, "alice", "orders", CFX_AUTH_SUB, NULL), CFX_EDENIED);

	/* A longer prefix is more specific: its deny wins over the shorter allow. */
	acl(f->a, "alice", CFX_AUTH_TOPIC, CFX_AUTH_PREFIXED, "orders.secret", CFX_AUTH_ALL, NULL, 1);
	assert_int_equal(topic(f->a, "alice", "orders.secret.x", CFX_AUTH_PUB, NULL), CFX_EDENIED);
	assert_int_equal(topic(f->a, "alice", "orders.eu", CFX_AUTH_PUB, NULL), CFX_OK);
	/* A literal allow is more specific than any prefix. */
	acl(f->a, "alice", CFX_AUTH_TOPIC, CFX_AUTH_LITERAL, "orders.secret.ok", CFX_AUTH_PUB, NULL, 0);
	assert_int_equal(topic(f->a, "alice", "orders.secret.ok", CFX_AUTH_PUB, NULL), CFX_OK);
	/* At equal specificity deny wins, whoever it names. */
	acl(f->a, "*", CFX_AUTH_TOPIC, CFX_AUTH_LITERAL, "orders.secret.ok", CFX_AUTH_PUB, NULL, 1);
	assert_int_equal(topic(f->a, "alice", "orders.secret.ok", CFX_AUTH_PUB, NULL), CFX_EDENIED);
	/* Super users are not subject to policies. */
	assert_int_equal(topic(f->a, "root", "orders.secret.ok", CFX_AUTH_PUB, NULL), CFX_OK);

	/* "*" applies to every signed-in user, not to anonymous ones. */
	acl(f->a, "*", CFX_AUTH_GROUP, CFX_AUTH_ANY, "", CFX_AUTH_SUB, NULL, 0);
	assert_int_equal(cfx_auth_authorize(f->a, "alice", CFX_AUTH_GROUP, "g", 1, CFX_AUTH_SUB, NULL),
			 CFX_OK);
	assert_int_equal(cfx_auth_authorize(f->a, NULL, CFX_AUTH_GROUP, "g", 1, CFX_AUTH_SUB, NULL),
			 CFX_EDENIED);
	/* Resource types do not mix. */
	assert_int_equal(topic(f->a, "alice", "g", CFX_AUTH_SUB, NULL), CFX_EDENIED);

	/* A disabled user is denied even what policies allow. */
	assert_int_equal(cfx_auth_user_update(f->a, "alice", NULL, 0, -1, 0), 0);
	assert_int_equal(topic(f->a, "alice", "orders", CFX_AUTH_PUB, NULL), CFX_EDENIED);
}

static void source_addresses(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), 0);
	acl(f->a, "alice", CFX_AUTH_TOPIC, CFX_AUTH_ANY, "", CFX_AUTH_PUB, "10.1.0.0/16", 0);
	acl(f->a, "alice", CFX_AUTH_TOPIC, CFX_AUTH_ANY, "", CFX_AUTH_SUB, "::1", 0);
	assert_int_equal(topic(f->a, "alice", "t", CFX_AUTH_PUB, "10.1.200.3:999"), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "t", CFX_AUTH_PUB, "10.2.0.1:999"), CFX_EDENIED);
	assert_int_equal(topic(f->a, "alice", "t", CFX_AUTH_PUB, "[::ffff:10.1.0.1]:1"), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "t", CFX_AUTH_SUB, "[::1]:1"), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "t", CFX_AUTH_SUB, "127.0.0.1:1"), CFX_EDENIED);
	assert_int_equal(cfx_auth_authorize(f->a, "alice", CFX_AUTH_TOPIC, "t", 1, CFX_AUTH_PUB, NULL),
			 CFX_EDENIED);

	struct cfx_auth_acl bad = { .subject = "alice", .resource = CFX_AUTH_TOPIC,
				    .pattern = CFX_AUTH_ANY, .actions = CFX_AUTH_PUB };
	const char *why;
	snprintf(bad.source, sizeof bad.source, "10.0.0.0/33");
	assert_int_equal(cfx_auth_acl_create(f->a, &bad, &why), CFX_EINVAL);
	assert_non_null(why);
	snprintf(bad.source, sizeof bad.source, "%s", "");
	bad.actions = 0;
	assert_int_equal(cfx_auth_acl_create(f->a, &bad, &why), CFX_EINVAL);
}

static void filters(void **state)
{
	struct fx *f = *state;
	const char *flt;

	assert_int_equal(cfx_auth_user_create(f->a, "dev", "pw", 2, 0, 1), 0);
	acl(f->a, "dev", CFX_AUTH_TOPIC, CFX_AUTH_PREFIXED, "sensors/", CFX_AUTH_SUB, NULL, 0);
	flt = "sensors/+/temp";
	assert_int_equal(cfx_auth_authorize_filter(f->a, "dev", flt, strlen(flt), 8, NULL), CFX_OK);
	flt = "#";
	assert_int_equal(cfx_auth_authorize_filter(f->a, "dev", flt, 1, 0, NULL), CFX_EDENIED);
	flt = "sensors/a";
	assert_int_equal(cfx_auth_authorize_filter(f->a, "dev", flt, strlen(flt), strlen(flt), NULL),
			 CFX_OK);
	/* A deny under the filter refuses the wildcard, not exact names beside it. */
	acl(f->a, "dev", CFX_AUTH_TOPIC, CFX_AUTH_PREFIXED, "sensors/secret", CFX_AUTH_SUB, NULL, 1);
	flt = "sensors/#";
	assert_int_equal(cfx_auth_authorize_filter(f->a, "dev", flt, strlen(flt), 8, NULL),
			 CFX_EDENIED);
	flt = "sensors/a/#";
	assert_int_equal(cfx_auth_authorize_filter(f->a, "dev", flt, strlen(flt), 10, NULL), CFX_OK);
}

static void last_super_user_stays(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfx_auth_user_create(f->a, "root", "pw", 2, 1, 1), 0);
	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), 0);
	assert_int_equal(cfx_auth_user_update(f->a, "root", NULL, 0, 0, -1), CFX_ELOCKED);
	assert_int_equal(cfx_auth_user_update(f->a, "root", NULL, 0, -1, 0), CFX_ELOCKED);
	assert_int_equal(cfx_auth_user_delete(f->a, "root"), CFX_ELOCKED);
	assert_int_equal(cfx_auth_user_update(f->a, "alice", NULL, 0, 1, -1), 0);
	assert_int_equal(cfx_auth_user_delete(f->a, "root"), 0);
	/* The only user may go: the server is open again (loopback only). */
	assert_int_equal(cfx_auth_user_delete(f->a, "alice"), 0);
	assert_false(cfx_auth_enabled(f->a));
}

static void tokens(void **state)
{
	struct fx *f = *state;
	char tok[CFX_AUTH_TOKEN_LEN + 1], user[CFX_AUTH_USER_MAX + 1];

	assert_int_equal(cfx_auth_user_create(f->a, "ops", "pw", 2, 1, 1), 0);
	assert_int_equal(cfx_auth_token_create(f->a, "ops", tok), 0);
	assert_int_equal(strlen(tok), CFX_AUTH_TOKEN_LEN);
	assert_int_equal(cfx_auth_token_check(f->a, tok, strlen(tok), user), 0);
	assert_string_equal(user, "ops");
	tok[0] = tok[0] == 'a' ? 'b' : 'a';
	assert_int_equal(cfx_auth_token_check(f->a, tok, strlen(tok), user), CFX_EAUTH);
	assert_int_equal(cfx_auth_token_check(f->a, "short", 5, user), CFX_EAUTH);
	assert_int_equal(cfx_auth_token_create(f->a, "nobody", tok), CFX_ENOENT);
}

struct count {
	int users, acls;
};

static void count_user(void *arg, const struct cfx_auth_user_info *u)
{
	(void)u;
	((struct count *)arg)->users++;
}

static void count_acl(void *arg, const struct cfx_auth_acl *c)
{
	(void)c;
	((struct count *)arg)->acls++;
}

static void persisted_and_reloaded(void **state)
{
	struct fx *f = *state;
	char path[300], tok[CFX_AUTH_TOKEN_LEN + 1], user[CFX_AUTH_USER_MAX + 1], buf[65536];
	struct stat st;
	struct count n = { 0 };
	uint8_t secret[64];
	size_t len;
	FILE *fp;

	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw-alice-1", 10, 0, 1), 0);
	assert_int_equal(cfx_auth_user_create(f->a, "bob", "pw-bob-22", 9, 0, 1), 0);
	acl(f->a, "alice", CFX_AUTH_TOPIC, CFX_AUTH_LITERAL, "orders", CFX_AUTH_PUB, "10.0.0.0/8", 0);
	uint64_t id = acl(f->a, "bob", CFX_AUTH_TOPIC, CFX_AUTH_ANY, "", CFX_AUTH_SUB, NULL, 0);
	assert_int_equal(cfx_auth_token_create(f->a, "alice", tok), 0);
	assert_int_equal(cfx_auth_acl_delete(f->a, id), 0);
	assert_int_equal(cfx_auth_acl_delete(f->a, id), CFX_ENOENT);

	/* The file is private and holds no password. */
	snprintf(path, sizeof path, "%s/auth.json", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof path, "%s/auth.key", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof path, "%s/auth.json", f->dir);
	fp = fopen(path, "r");
	assert_non_null(fp);
	len = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	buf[len] = 0;
	assert_null(strstr(buf, "pw-alice-1"));
	assert_null(strstr(buf, "pw-bob-22"));
	assert_null(strstr(buf, tok));

	cfx_auth_close(f->a);
	f->a = NULL;
	f->a = open_auth(f->dir, 0);
	cfx_auth_user_foreach(f->a, count_user, &n);
	cfx_auth_acl_foreach(f->a, count_acl, &n);
	assert_int_equal(n.users, 2);
	assert_int_equal(n.acls, 1);
	assert_int_equal(topic(f->a, "alice", "orders", CFX_AUTH_PUB, "10.9.9.9:1"), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "orders", CFX_AUTH_PUB, "11.9.9.9:1"), CFX_EDENIED);
	assert_int_equal(check(f->a, "bob", "pw-bob-22", NULL), CFX_OK);
	assert_int_equal(cfx_auth_token_check(f->a, tok, strlen(tok), user), 0);
	assert_int_equal(cfx_auth_hmac_secret(f->a, "alice", 5, secret, sizeof secret, &len), 0);
	assert_memory_equal(secret, "pw-alice-1", 10);

	/* New policies continue the ids; deleting a user drops its policies. */
	uint64_t id2 = acl(f->a, "bob", CFX_AUTH_CLUSTER, CFX_AUTH_ANY, "", CFX_AUTH_LIST, NULL, 0);
	assert_true(id2 > id);
	assert_int_equal(cfx_auth_user_delete(f->a, "bob"), 0);
	assert_int_equal(cfx_auth_user_delete(f->a, "bob"), CFX_ENOENT);
	n.acls = 0;
	cfx_auth_acl_foreach(f->a, count_acl, &n);
	assert_int_equal(n.acls, 1);

	/* Without the node key the secret is gone, the SCRAM credentials stay. */
	cfx_auth_close(f->a);
	snprintf(path, sizeof path, "%s/auth.key", f->dir);
	assert_int_equal(unlink(path), 0);
	f->a = NULL;
	f->a = open_auth(f->dir, 0);
	assert_int_equal(cfx_auth_hmac_secret(f->a, "alice", 5, secret, sizeof secret, &len),
			 CFX_ENOENT);
	assert_int_equal(check(f->a, "alice", "pw-alice-1", NULL), CFX_OK);
}

static void damaged_file_is_refused(void **state)
{
	struct fx *f = *state;
	char path[300];
	struct cfx_auth_opts o = { .dir = f->dir, .scram_iterations = 4096 };
	struct cfx_auth *a = NULL;
	FILE *fp;

	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), 0);
	snprintf(path, sizeof path, "%s/auth.json", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("{\"version\": 1, \"users\": [{\"name\": \"alice\"}]}", fp);
	fclose(fp);
	assert_int_equal(cfx_auth_open(&o, &a), CFX_ECORRUPT);
	fp = fopen(path, "w");
	fputs("{\"version\": 99}", fp);
	fclose(fp);
	assert_int_equal(cfx_auth_open(&o, &a), CFX_EVERSION);
	fp = fopen(path, "w");
	fputs("not json", fp);
	fclose(fp);
	assert_int_equal(cfx_auth_open(&o, &a), CFX_ECORRUPT);
}

static void anonymous_with_users(void **state)
{
	struct fx *f = *state;
	cfx_auth_close(f->a);
	f->a = NULL;
	f->a = open_auth(f->dir, 1);
	assert_int_equal(cfx_auth_user_create(f->a, "alice", "pw", 2, 0, 1), 0);
	assert_true(cfx_auth_anonymous_ok(f->a));
	assert_int_equal(topic(f->a, NULL, "public", CFX_AUTH_SUB, NULL), CFX_EDENIED);
	acl(f->a, "anonymous", CFX_AUTH_TOPIC, CFX_AUTH_LITERAL, "public", CFX_AUTH_SUB, NULL, 0);
	assert_int_equal(topic(f->a, NULL, "public", CFX_AUTH_SUB, NULL), CFX_OK);
	assert_int_equal(topic(f->a, "alice", "public", CFX_AUTH_SUB, NULL), CFX_EDENIED);
}

static void names(void **state)
{
	(void)state;
	unsigned a;
	enum cfx_auth_resource r;
	enum cfx_auth_pattern p;
	assert_int_equal(cfx_auth_action_parse("sub", &a), 0);
	assert_int_equal(a, CFX_AUTH_SUB);
	assert_int_equal(cfx_auth_action_parse("ALL", &a), 0);
	assert_int_equal(a, CFX_AUTH_ALL);
	assert_int_equal(cfx_auth_action_parse("PUBLISH", &a), CFX_EINVAL);
	assert_string_equal(cfx_auth_action_name(CFX_AUTH_LIST), "LIST");
	assert_int_equal(cfx_auth_resource_parse("group", &r), 0);
	assert_int_equal(r, CFX_AUTH_GROUP);
	assert_int_equal(cfx_auth_pattern_parse("prefixed", &p), 0);
	assert_int_equal(p, CFX_AUTH_PREFIXED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(no_users_means_open, setup, teardown),
		cmocka_unit_test_setup_teardown(user_names_and_passwords_are_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(passwords_are_checked_off_thread_and_remembered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(scram_and_hmac_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(precedence, setup, teardown),
		cmocka_unit_test_setup_teardown(source_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(filters, setup, teardown),
		cmocka_unit_test_setup_teardown(last_super_user_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(persisted_and_reloaded, setup, teardown),
		cmocka_unit_test_setup_teardown(damaged_file_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(anonymous_with_users, setup, teardown),
		cmocka_unit_test(names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
