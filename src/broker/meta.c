/*
 * meta.c - topics and consumer groups, kept in memory and in
 * meta/topics.json and meta/groups.json (replaced atomically on every
 * change: write, fsync, rename, fsync the directory). Changes are rare;
 * lookups are a walk of a short list under a mutex.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "broker/broker_int.h"
#include "store/format.h"

static const char *const type_names[] = { NULL, "normal", "fifo", "delay", "transaction", "mixed" };

const char *cfx_msg_type_name(int type)
{
	return type >= 1 && type <= 5 ? type_names[type] : "unspecified";
}

int cfx_msg_type_parse(const char *s)
{
	for (int i = 1; i <= 5; i++)
		if (!strcasecmp(s, type_names[i]))
			return i;
	return 0;
}

int cfx_broker_type_accepts(int topic_type, int msg_type)
{
	return topic_type == CFX_TOPIC_MIXED || topic_type == msg_type;
}

int cfx_group_name_is_valid(struct cfx_view name)
{
	return name.len <= 120 && cfx_topic_name_is_valid(name);
}

/* ------------------------------------------------------------------------
 * Retry policies
 * ------------------------------------------------------------------------ */

void cfx_retry_policy_default(struct cfx_retry_policy *p)
{
	static const int64_t steps_s[] = { 1,	5,   10,  30,  60,  120, 180,  240,	 300,
					   360, 420, 480, 540, 600, 1200, 1800, 3600, 7200 };
	memset(p, 0, sizeof *p);
	p->max_attempts = 17;
	p->kind = CFX_BACKOFF_CUSTOMIZED;
	p->initial_ms = 1000;
	p->max_ms = 7200 * 1000;
	p->multiplier = 2;
	p->nsteps = CFX_ARRAY_LEN(steps_s);
	for (uint32_t i = 0; i < p->nsteps; i++)
		p->steps_ms[i] = steps_s[i] * 1000;
}

int64_t cfx_retry_delay_ms(const struct cfx_retry_policy *p, uint32_t attempt)
{
	if (attempt < 1)
		attempt = 1;
	if (p->kind == CFX_BACKOFF_CUSTOMIZED && p->nsteps) {
		uint32_t i = attempt - 1 < p->nsteps ? attempt - 1 : p->nsteps - 1;
		return p->steps_ms[i];
	}
	double d = (double)p->initial_ms;
	for (uint32_t i = 1; i < attempt && d < (double)p->max_ms; i++)
		d *= p->multiplier;
	return d > (double)p->max_ms ? p->max_ms : (int64_t)d;
}

/* ------------------------------------------------------------------------
 * Persistence
 * ------------------------------------------------------------------------ */

static int save_json(struct cfx_broker *br, const char *file, json_t *root)
{
	char path[PATH_MAX];
	char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	int r;

	json_decref(root);
	if (!text)
		return CFX_ENOMEM;
	snprintf(path, sizeof path, "%s/%s", br->meta_dir, file);
	r = cfx_write_file_atomic(br->fops, path, text, strlen(text));
	free(text);
	if (r) {
		cfx_log_error("broker: cannot save %s: %s", path, strerror(-r));
		return cfx_err_from_errno(-r);
	}
	return 0;
}

static int save_topics(struct cfx_broker *br)
{
	json_t *arr = json_array();

	for (struct topic_ent *t = br->topics; t; t = t->next)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:I}", "name", t->info.name,
						     "type", cfx_msg_type_name(t->info.type), "queues",
						     (int)t->info.queues, "created_ms",
						     (json_int_t)t->info.created_ms));
	return save_json(br, "topics.json", json_pack("{s:i, s:o}", "version", 1, "topics", arr));
}

static json_t *retry_to_json(const struct cfx_retry_policy *p)
{
	json_t *o = json_pack("{s:i, s:s}", "max_attempts", (int)p->max_attempts, "kind",
			      p->kind == CFX_BACKOFF_EXPONENTIAL ? "exponential" : "customized");
	if (p->kind == CFX_BACKOFF_EXPONENTIAL) {
		json_object_set_new(o, "initial_ms", json_integer(p->initial_ms));
		json_object_set_new(o, "max_ms", json_integer(p->max_ms));
		json_object_set_new(o, "multiplier", json_real(p->multiplier));
	} else {
		json_t *steps = json_array();
		for (uint32_t i = 0; i < p->nsteps; i++)
			json_array_append_new(steps, json_integer(p->steps_ms[i]));
		json_object_set_new(o, "steps_ms", steps);
	}
	return o;
}

static int retry_from_json(json_t *o, struct cfx_retry_policy *p)
{
	const char *kind = json_string_value(json_object_get(o, "kind"));
	json_t *steps = json_object_get(o, "steps_ms");

	cfx_retry_policy_default(p);
	if (!json_is_object(o))
		return 0;
	if (json_is_integer(json_object_get(o, "max_attempts")))
		p->max_attempts = (uint32_t)json_integer_value(json_object_get(o, "max_attempts"));
	if (kind && !strcmp(kind, "exponential")) {
		p->kind = CFX_BACKOFF_EXPONENTIAL;
		p->nsteps = 0;
		p->initial_ms = json_integer_value(json_object_get(o, "initial_ms"));
		p->max_ms = json_integer_value(json_object_get(o, "max_ms"));
		p->multiplier = json_number_value(json_object_get(o, "multiplier"));
	} else if (json_is_array(steps)) {
		p->kind = CFX_BACKOFF_CUSTOMIZED;
		p->nsteps = 0;
		for (size_t i = 0; i < json_array_size(steps) && i < CFX_BACKOFF_STEPS_MAX; i++)
			p->steps_ms[p->nsteps++] = json_integer_value(json_array_get(steps, i));
	}
	if (p->max_attempts < 1 || (p->kind == CFX_BACKOFF_EXPONENTIAL &&
				    (p->initial_ms < 0 || p->max_ms < p->initial_ms ||
				     p->multiplier < 1)))
		return CFX_EINVAL;
	return 0;
}

static int save_groups(struct cfx_broker *br)
{
	json_t *arr = json_array();

	for (struct group_ent *g = br->groups; g; g = g->next)
		json_array_append_new(arr, json_pack("{s:s, s:b, s:o, s:I}", "name", g->info.name,
						     "fifo", g->info.fifo, "retry",
						     retry_to_json(&g->info.retry), "created_ms",
						     (json_int_t)g->info.created_ms));
	return save_json(br, "groups.json", json_pack("{s:i, s:o}", "version", 1, "groups", arr));
}

static json_t *load_json(struct cfx_broker *br, const char *file, const char *key, int *rc)
{
	char path[PATH_MAX];
	json_error_t err;
	json_t *root, *arr;

	*rc = 0;
	snprintf(path, sizeof path, "%s/%s", br->meta_dir, file);
	if (access(path, F_OK) != 0)
		return NULL;
	root = json_load_file(path, 0, &err);
	if (!root) {
		cfx_log_error("broker: %s: %s (line %d)", path, err.text, err.line);
		*rc = CFX_ECORRUPT;
		return NULL;
	}
	if (json_integer_value(json_object_get(root, "version")) > 1) {
		cfx_log_error("broker: %s was written by a newer version of Conflux", path);
		*rc = CFX_EVERSION;
		json_decref(root);
		return NULL;
	}
	arr = json_object_get(root, key);
	if (!json_is_array(arr)) {
		cfx_log_error("broker: %s has no \"%s\" list", path, key);
		*rc = CFX_ECORRUPT;
		json_decref(root);
		return NULL;
	}
	json_incref(arr);
	json_decref(root);
	return arr;
}

int meta__load(struct cfx_broker *br)
{
	json_t *arr, *v;
	size_t i;
	int rc;

	arr = load_json(br, "topics.json", "topics", &rc);
	if (rc)
		return rc;
	json_array_foreach(arr, i, v)
	{
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *type = json_string_value(json_object_get(v, "type"));
		struct topic_ent *t;

		if (!name || !cfx_topic_name_is_valid(CFX_VIEW_STR(name)) || !type ||
		    !cfx_msg_type_parse(type)) {
			cfx_log_warn("broker: skipping a malformed topic entry in topics.json");
			continue;
		}
		t = cfx_calloc(1, sizeof *t);
		snprintf(t->info.name, sizeof t->info.name, "%s", name);
		t->info.type = cfx_msg_type_parse(type);
		t->info.queues = (uint32_t)json_integer_value(json_object_get(v, "queues"));
		if (t->info.queues < 1)
			t->info.queues = 1;
		t->info.created_ms = json_integer_value(json_object_get(v, "created_ms"));
		t->next = br->topics;
		br->topics = t;
	}
	json_decref(arr);

	arr = load_json(br, "groups.json", "groups", &rc);
	if (rc)
		return rc;
	json_array_foreach(arr, i, v)
	{
		const char *name = json_string_value(json_object_get(v, "name"));
		struct group_ent *g;

		if (!name || !cfx_group_name_is_valid(CFX_VIEW_STR(name))) {
			cfx_log_warn("broker: skipping a malformed group entry in groups.json");
			continue;
		}
		g = cfx_calloc(1, sizeof *g);
		snprintf(g->info.name, sizeof g->info.name, "%s", name);
		g->info.fifo = json_is_true(json_object_get(v, "fifo"));
		g->info.created_ms = json_integer_value(json_object_get(v, "created_ms"));
		if (retry_from_json(json_object_get(v, "retry"), &g->info.retry))
			cfx_retry_policy_default(&g->info.retry);
		g->next = br->groups;
		br->groups = g;
	}
	json_decref(arr);
	return 0;
}

void meta__free(struct cfx_broker *br)
{
	while (br->topics) {
		struct topic_ent *t = br->topics;
		br->topics = t->next;
		cfx_free(t);
	}
	while (br->groups) {
		struct group_ent *g = br->groups;
		br->groups = g->next;
		cfx_free(g);
	}
}

/* ------------------------------------------------------------------------
 * Topics
 * ------------------------------------------------------------------------ */

static struct topic_ent *find_topic(struct cfx_broker *br, struct cfx_view name)
{
	for (struct topic_ent *t = br->topics; t; t = t->next)
		if (cfx_view_eq_str(name, t->info.name))
			return t;
	return NULL;
}

static int check_topic_args(struct cfx_broker *br, struct cfx_view name, int type, uint32_t queues)
{
	if (!cfx_topic_name_is_valid(name))
		return CFX_ETOPIC;
	if (type < CFX_MSG_NORMAL || type > CFX_TOPIC_MIXED)
		return CFX_EINVAL;
	if (queues < 1 || queues > br->o.store.queues_per_topic_max)
		return CFX_EQUEUE;
	return 0;
}

static int topic_create_locked(struct cfx_broker *br, struct cfx_view name, int type,
			       uint32_t queues, struct cfx_topic_info *out)
{
	struct topic_ent *t;
	int rc = check_topic_args(br, name, type, queues);

	if (rc)
		return rc;
	if (find_topic(br, name))
		return CFX_EEXIST;
	t = cfx_calloc(1, sizeof *t);
	memcpy(t->info.name, name.p, name.len);
	t->info.type = type;
	t->info.queues = queues;
	t->info.created_ms = cfx_clock_wall_ms();
	t->next = br->topics;
	br->topics = t;
	rc = save_topics(br);
	if (rc) {
		br->topics = t->next;
		cfx_free(t);
		return rc;
	}
	if (out)
		*out = t->info;
	cfx_log_info("broker: topic %s created (%s, %u queues)", t->info.name,
		     cfx_msg_type_name(type), queues);
	return 0;
}

int cfx_broker_topic_create(struct cfx_broker *br, const char *name, int type, uint32_t queues)
{
	pthread_mutex_lock(&br->meta_mu);
	int rc = topic_create_locked(br, CFX_VIEW_STR(name), type, queues, NULL);
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

int cfx_broker_topic_get(struct cfx_broker *br, struct cfx_view name, int create,
			 struct cfx_topic_info *info)
{
	struct topic_ent *t;
	int rc = 0;

	if (!cfx_topic_name_is_valid(name))
		return CFX_ETOPIC;
	pthread_mutex_lock(&br->meta_mu);
	t = find_topic(br, name);
	if (t)
		*info = t->info;
	else if (create && br->o.auto_create)
		rc = topic_create_locked(br, name, CFX_TOPIC_MIXED, br->o.default_queues, info);
	else
		rc = CFX_ENOENT;
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

uint32_t broker__topic_next_queue(struct cfx_broker *br, struct cfx_view name, uint32_t queues)
{
	uint32_t q = 0;

	pthread_mutex_lock(&br->meta_mu);
	struct topic_ent *t = find_topic(br, name);
	if (t)
		q = atomic_fetch_add(&t->rr, 1) % queues;
	pthread_mutex_unlock(&br->meta_mu);
	return q;
}

int cfx_broker_topic_update(struct cfx_broker *br, const char *name, int type, uint32_t queues)
{
	struct topic_ent *t;
	int rc;

	pthread_mutex_lock(&br->meta_mu);
	t = find_topic(br, CFX_VIEW_STR(name));
	rc = t ? check_topic_args(br, CFX_VIEW_STR(name), type, queues) : CFX_ENOENT;
	if (!rc && queues < t->info.queues)
		rc = CFX_EQUEUE; /* data lives in every queue: they never shrink */
	if (!rc) {
		struct cfx_topic_info old = t->info;
		t->info.type = type;
		t->info.queues = queues;
		rc = save_topics(br);
		if (rc)
			t->info = old;
	}
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

int cfx_broker_topic_delete(struct cfx_broker *br, const char *name)
{
	struct topic_ent **pp, *t = NULL;
	int rc = CFX_ENOENT;

	pthread_mutex_lock(&br->meta_mu);
	for (pp = &br->topics; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->info.name, name)) {
			t = *pp;
			*pp = t->next;
			break;
		}
	if (t) {
		rc = save_topics(br);
		if (rc) {
			t->next = br->topics;
			br->topics = t;
		} else {
			cfx_free(t);
		}
	}
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

void cfx_broker_topic_foreach(struct cfx_broker *br,
			      void (*fn)(void *arg, const struct cfx_topic_info *t), void *arg)
{
	pthread_mutex_lock(&br->meta_mu);
	for (struct topic_ent *t = br->topics; t; t = t->next)
		if (strncmp(t->info.name, "%SYS%", 5) != 0) /* the broker's own: not listed */
			fn(arg, &t->info);
	pthread_mutex_unlock(&br->meta_mu);
}

/* ------------------------------------------------------------------------
 * Groups
 * ------------------------------------------------------------------------ */

static struct group_ent *find_group(struct cfx_broker *br, struct cfx_view name)
{
	for (struct group_ent *g = br->groups; g; g = g->next)
		if (cfx_view_eq_str(name, g->info.name))
			return g;
	return NULL;
}

static int group_create_locked(struct cfx_broker *br, const struct cfx_group_info *in)
{
	struct group_ent *g;
	int rc;

	if (!cfx_group_name_is_valid(CFX_VIEW_STR(in->name)))
		return CFX_EINVAL;
	if (find_group(br, CFX_VIEW_STR(in->name)))
		return CFX_EEXIST;
	g = cfx_calloc(1, sizeof *g);
	g->info = *in;
	if (!g->info.retry.max_attempts)
		cfx_retry_policy_default(&g->info.retry);
	g->info.created_ms = cfx_clock_wall_ms();
	g->next = br->groups;
	br->groups = g;
	rc = save_groups(br);
	if (rc) {
		br->groups = g->next;
		cfx_free(g);
		return rc;
	}
	cfx_log_info("broker: group %s created%s", g->info.name, g->info.fifo ? " (FIFO)" : "");
	return 0;
}

int cfx_broker_group_create(struct cfx_broker *br, const struct cfx_group_info *g)
{
	pthread_mutex_lock(&br->meta_mu);
	int rc = group_create_locked(br, g);
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

int cfx_broker_group_get(struct cfx_broker *br, struct cfx_view name, int create,
			 struct cfx_group_info *info)
{
	struct group_ent *g;
	int rc = 0;

	if (!cfx_group_name_is_valid(name))
		return CFX_EINVAL;
	pthread_mutex_lock(&br->meta_mu);
	g = find_group(br, name);
	if (!g && create && br->o.auto_create) {
		struct cfx_group_info in = { 0 };
		memcpy(in.name, name.p, name.len);
		cfx_retry_policy_default(&in.retry);
		rc = group_create_locked(br, &in);
		g = rc ? NULL : find_group(br, name);
	}
	if (g)
		*info = g->info;
	else if (!rc)
		rc = CFX_ENOENT;
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

int cfx_broker_group_update(struct cfx_broker *br, const struct cfx_group_info *in)
{
	struct group_ent *g;
	int rc = 0;

	pthread_mutex_lock(&br->meta_mu);
	g = find_group(br, CFX_VIEW_STR(in->name));
	if (!g) {
		rc = CFX_ENOENT;
	} else {
		struct cfx_group_info old = g->info;
		g->info.fifo = in->fifo;
		g->info.retry = in->retry;
		rc = save_groups(br);
		if (rc)
			g->info = old;
	}
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

int cfx_broker_group_delete(struct cfx_broker *br, const char *name)
{
	struct group_ent **pp, *g = NULL;
	int rc = CFX_ENOENT;

	pthread_mutex_lock(&br->meta_mu);
	for (pp = &br->groups; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->info.name, name)) {
			g = *pp;
			*pp = g->next;
			break;
		}
	if (g) {
		rc = save_groups(br);
		if (rc) {
			g->next = br->groups;
			br->groups = g;
		} else {
			cfx_free(g);
		}
	}
	pthread_mutex_unlock(&br->meta_mu);
	return rc;
}

void cfx_broker_group_foreach(struct cfx_broker *br,
			      void (*fn)(void *arg, const struct cfx_group_info *g), void *arg)
{
	pthread_mutex_lock(&br->meta_mu);
	for (struct group_ent *g = br->groups; g; g = g->next)
		if (strncmp(g->info.name, "%SYS%", 5) != 0) /* the broker's own: not listed */
			fn(arg, &g->info);
	pthread_mutex_unlock(&br->meta_mu);
}
