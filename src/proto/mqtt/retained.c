/*
 * retained.c - the names of the retained topics as a tree of levels, so
 * that a wildcard SUBSCRIBE visits only the topics its filter can match
 * instead of every retained topic.
 *
 * Each node is one topic level; a node whose topic has (or had) a retained
 * message holds the id of its light queue ("r/<topic>"). A node's children
 * are a short array, or an open-addressing table once there are more than
 * RT_SMALL of them. Nodes are never removed: a cleared retained message
 * keeps its light queue (a tombstone), so the tree only grows with the
 * topics ever retained. One mutex; the walks are short.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "proto/mqtt/mqtt_int.h"

#define RT_SMALL 8

struct rnode {
	struct rnode **kids; /* RT_SMALL or fewer: packed; more: a hash table of cap slots */
	uint32_t nkids, cap;
	uint32_t id;	     /* light queue of the topic ending here, 0 = none */
	uint16_t len;
	char name[];
};

struct mqtt_retained {
	pthread_mutex_t mu;
	struct rnode *root;
};

static struct rnode *node_new(const uint8_t *name, size_t len)
{
	struct rnode *n = cfx_calloc(1, sizeof *n + len + 1);
	n->len = (uint16_t)len;
	if (len)
		memcpy(n->name, name, len);
	return n;
}

static uint64_t level_hash(const uint8_t *p, size_t len)
{
	return cfx_hash_bytes(CFX_HASH_SEED, p, len);
}

static int node_is(const struct rnode *n, const uint8_t *p, size_t len)
{
	return n->len == len && (len == 0 || !memcmp(n->name, p, len));
}

static struct rnode *child_find(const struct rnode *n, const uint8_t *p, size_t len)
{
	if (n->cap <= RT_SMALL) {
		for (uint32_t i = 0; i < n->nkids; i++)
			if (node_is(n->kids[i], p, len))
				return n->kids[i];
		return NULL;
	}
	for (uint64_t h = level_hash(p, len);; h++) {
		struct rnode *k = n->kids[h & (n->cap - 1)];
		if (!k || node_is(k, p, len))
			return k;
	}
}

static void table_put(struct rnode **tab, uint32_t cap, struct rnode *k)
{
	uint64_t h = level_hash((const uint8_t *)k->name, k->len);
	while (tab[h & (cap - 1)])
		h++;
	tab[h & (cap - 1)] = k;
}

static void child_add(struct rnode *n, struct rnode *k)
{
	if (n->cap <= RT_SMALL && n->nkids < RT_SMALL) {
		if (n->nkids == n->cap) {
			n->cap = n->cap ? n->cap * 2 : 2;
			n->kids = cfx_realloc(n->kids, n->cap * sizeof *n->kids);
		}
		n->kids[n->nkids++] = k;
		return;
	}
	if (n->cap <= RT_SMALL || (n->nkids + 1) * 4 > n->cap * 3) { /* to a table, or a larger one */
		uint32_t ncap = n->cap <= RT_SMALL ? 32 : n->cap * 2;
		struct rnode **tab = cfx_calloc(ncap, sizeof *tab);
		if (n->cap <= RT_SMALL) {
			for (uint32_t i = 0; i < n->nkids; i++)
				table_put(tab, ncap, n->kids[i]);
		} else {
			for (uint32_t i = 0; i < n->cap; i++)
				if (n->kids[i])
					table_put(tab, ncap, n->kids[i]);
		}
		cfx_free(n->kids);
		n->kids = tab;
		n->cap = ncap;
	}
	table_put(n->kids, n->cap, k);
	n->nkids++;
}

static struct rnode *kid_at(const struct rnode *n, uint32_t i)
{
	return n->kids[i]; /* NULL for an empty slot of a table */
}

static uint32_t kid_slots(const struct rnode *n)
{
	return n->cap <= RT_SMALL ? n->nkids : n->cap;
}

struct mqtt_retained *mqtt_retained_new(void)
{
	struct mqtt_retained *r = cfx_calloc(1, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
	r->root = node_new(NULL, 0);
	return r;
}

static void node_free(struct rnode *n)
{
	for (uint32_t i = 0; i < kid_slots(n); i++)
		if (kid_at(n, i))
			node_free(kid_at(n, i));
	cfx_free(n->kids);
	cfx_free(n);
}

void mqtt_retained_free(struct mqtt_retained *r)
{
	if (!r)
		return;
	node_free(r->root);
	pthread_mutex_destroy(&r->mu);
	cfx_free(r);
}

void mqtt_retained_add(struct mqtt_retained *r, struct cfx_view topic, uint32_t id)
{
	size_t at = 0;

	pthread_mutex_lock(&r->mu);
	struct rnode *n = r->root;
	for (;;) {
		size_t end = at;
		while (end < topic.len && topic.p[end] != '/')
			end++;
		struct rnode *k = child_find(n, topic.p + at, end - at);
		if (!k) {
			k = node_new(topic.p + at, end - at);
			child_add(n, k);
		}
		n = k;
		if (end >= topic.len)
			break;
		at = end + 1;
	}
	n->id = id;
	pthread_mutex_unlock(&r->mu);
}

struct walk {
	void (*fn)(void *arg, uint32_t id);
	void *arg;
};

static void all_below(const struct rnode *n, const struct walk *w)
{
	if (n->id)
		w->fn(w->arg, n->id);
	for (uint32_t i = 0; i < kid_slots(n); i++)
		if (kid_at(n, i))
			all_below(kid_at(n, i), w);
}

/* Matches the filter's levels from `at` against the subtree under n. */
static void match(const struct rnode *n, struct cfx_view f, size_t at, int first,
		  const struct walk *w)
{
	size_t end = at;
	while (end < f.len && f.p[end] != '/')
		end++;
	size_t len = end - at;
	int last = end >= f.len;

	if (len == 1 && f.p[at] == '#') {
		/* "a/#" matches "a" too (the parent), and everything below. */
		if (!first && n->id)
			w->fn(w->arg, n->id);
		for (uint32_t i = 0; i < kid_slots(n); i++) {
			const struct rnode *k = kid_at(n, i);
			if (k && !(first && k->len && k->name[0] == '$'))
				all_below(k, w);
		}
		return;
	}
	if (len == 1 && f.p[at] == '+') {
		for (uint32_t i = 0; i < kid_slots(n); i++) {
			const struct rnode *k = kid_at(n, i);
			if (!k || (first && k->len && k->name[0] == '$'))
				continue;
			if (last) {
				if (k->id)
					w->fn(w->arg, k->id);
			} else {
				match(k, f, end + 1, 0, w);
			}
		}
		return;
	}
	const struct rnode *k = child_find(n, f.p + at, len);
	if (!k)
		return;
	if (last) {
		if (k->id)
			w->fn(w->arg, k->id);
		return;
	}
	match(k, f, end + 1, 0, w);
}

void mqtt_retained_match(struct mqtt_retained *r, struct cfx_view filter,
			 void (*fn)(void *arg, uint32_t id), void *arg)
{
	struct walk w = { fn, arg };

	if (!filter.len)
		return;
	pthread_mutex_lock(&r->mu);
	match(r->root, filter, 0, 1, &w);
	pthread_mutex_unlock(&r->mu);
}
