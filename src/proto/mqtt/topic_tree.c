/*
 * topic_tree.c - the MQTT subscription tree (API and contracts in
 * topic_tree.h; design in docs/design/mqtt.md, "Subscription tree").
 *
 * What it does: stores topic filters as a trie of levels, finds the
 * subscriptions matching a topic name, picks one member per share group.
 * What it does not: know sessions, persist anything, merge a session's
 * overlapping subscriptions, or validate UTF-8 (the packet codec does).
 *
 * The tree is sized for millions of subscriptions, most of them on
 * distinct filters ("dev/<id>/cmd"): most nodes have zero, one or two
 * children and at most one subscriber, so every structure starts at its
 * smallest and grows geometrically. Memory is the design's main budget;
 * the layout of each structure is given beside it.
 */
#include "proto/mqtt/topic_tree.h"

#include <limits.h>
#include <pthread.h>

#include "base/hash.h"

/* ------------------------------------------------------------------------
 * Structures
 *
 * A node is one level of one or more filters. Its exact children are held
 * in one of three shapes chosen by their count (nkids), so no flag is
 * needed: 0-1 child: the pointer itself; 2..KIDS_FEW_MAX: a small array
 * scanned linearly; more: an open-addressing hash table (linear probing,
 * backward-shift deletion, no tombstones). '+' and '#' children and share
 * groups are rare, so they live in a separate `node_ext`, allocated only
 * while one of them exists.
 *
 *   struct mqtt_node (34 bytes + key, one allocation)
 *   OFFSET | SIZE | FIELD
 *   0      | 8    | kids      one child / few[] / tab, by nkids
 *   8      | 8    | ext       '+', '#' children, share groups; NULL if none
 *   16     | 8    | subs      non-shared subscribers; NULL if none
 *   24     | 4    | key_hash  hash of the key, for the parent's table
 *   28     | 4    | nkids     exact children
 *   32     | 2    | key_len
 *   34     | n    | key       the level, not NUL-terminated
 *
 * A subscriber list is one allocation: a header, the subscriptions, and,
 * once it holds SUBS_INDEX_MIN slots, an index by session (open addressing,
 * twice as many uint32 slots as subscriptions, each 1 + the position in
 * s[], 0 = empty), so replacing or removing one of a million subscribers
 * of one filter does not scan them all.
 * ------------------------------------------------------------------------ */

#define KIDS_FEW_MAX 8u	   /* above: the children move to a hash table */
#define KIDS_TAB_MIN 16u   /* smallest table, slots */
#define SUBS_INDEX_MIN 32u /* subscriber capacity from which a list is indexed */

struct kid_tab {
	uint32_t cap;		   /* slots, a power of two */
	uint32_t unused;
	struct mqtt_node *slot[]; /* NULL = empty; at most 3/4 used */
};

struct mqtt_node {
	union {
		struct mqtt_node *one;	/* nkids == 1 */
		struct mqtt_node **few; /* 2 <= nkids <= KIDS_FEW_MAX, few_cap(nkids) slots */
		struct kid_tab *tab;	/* nkids > KIDS_FEW_MAX */
	} kids;
	struct node_ext *ext;	/* NULL unless one of its fields is set */
	struct sub_list *subs;	/* NULL when there is no non-shared subscriber */
	uint32_t key_hash;	/* key_hash() of key */
	uint32_t nkids;		/* exact children */
	uint16_t key_len;	/* bytes of key */
	char key[];
};

_Static_assert(offsetof(struct mqtt_node, key) == 34, "node header layout");

struct node_ext {
	struct mqtt_node *plus;	     /* the '+' child */
	struct mqtt_node *hash;	     /* the '#' child (it has no children itself) */
	struct share_group *groups; /* share groups subscribed to this node's filter */
};

struct sub_list {
	uint32_t n;		/* subscriptions in s[] */
	uint32_t cap;		/* slots of s[], a power of two */
	struct mqtt_sub s[];	/* then uint32_t index[2 * cap] if cap >= SUBS_INDEX_MIN */
};

struct share_group {
	struct share_group *next;
	struct sub_list *members; /* never NULL: a group without members is freed */
	uint32_t rr;		  /* round-robin position; atomic (advanced under the shared lock) */
	uint16_t name_len;
	char name[];
};

struct mqtt_tree {
	pthread_rwlock_t lock;
	struct mqtt_node *root;	/* the empty key; never freed before the tree */
	size_t count;		/* subscriptions; written under the lock, read atomically */
	size_t bytes;		/* allocated, requested sizes; as count */
};

/* ------------------------------------------------------------------------
 * Accounted allocation: every allocation of the tree goes through these,
 * so mqtt_tree_memory() is exact (requested sizes). Called with the lock
 * held exclusively (or by the sole owner, in new/free).
 * ------------------------------------------------------------------------ */

static void *t_alloc(struct mqtt_tree *t, size_t size)
{
	__atomic_fetch_add(&t->bytes, size, __ATOMIC_RELAXED);
	return cfx_malloc(size);
}

static void *t_realloc(struct mqtt_tree *t, void *p, size_t old_size, size_t new_size)
{
	__atomic_fetch_add(&t->bytes, new_size - old_size, __ATOMIC_RELAXED);
	return cfx_realloc(p, new_size);
}

static void t_free(struct mqtt_tree *t, void *p, size_t size)
{
	__atomic_fetch_sub(&t->bytes, size, __ATOMIC_RELAXED);
	cfx_free(p);
}

/* ------------------------------------------------------------------------
 * Names: validation and level splitting (pure)
 * ------------------------------------------------------------------------ */

/* A filter split into its share group (len 0 when not shared) and the
 * filter proper. Both views point into the caller's bytes. */
struct filter {
	struct cfx_view group;
	struct cfx_view path;
};

/* Bytes of the level starting at p: up to the next '/' or `end`. */
static size_t level_len(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *slash = memchr(p, '/', (size_t)(end - p));
	return (size_t)((slash ? slash : end) - p);
}

static int is_plus(const uint8_t *p, size_t len)
{
	return len == 1 && p[0] == '+';
}

static int is_hash(const uint8_t *p, size_t len)
{
	return len == 1 && p[0] == '#';
}

/* A filter without the $share prefix: see mqtt_filter_is_valid(). */
static int path_is_valid(struct cfx_view f)
{
	size_t levels = 1;

	if (f.len == 0 || f.len > MQTT_FILTER_BYTES_MAX)
		return 0;
	for (size_t i = 0; i < f.len; i++) {
		switch (f.p[i]) {
		case '/':
			if (++levels > MQTT_FILTER_LEVELS_MAX)
				return 0;
			break;
		case '+':
			if ((i > 0 && f.p[i - 1] != '/') || (i + 1 < f.len && f.p[i + 1] != '/'))
				return 0;
			break;
		case '#':
			if ((i > 0 && f.p[i - 1] != '/') || i + 1 != f.len)
				return 0;
			break;
		case '\0':
			return 0;
		}
	}
	return 1;
}

/* Splits and validates `in`; returns 1 if valid. */
static int filter_parse(struct cfx_view in, struct filter *f)
{
	static const char share[] = "$share/";
	const size_t share_len = sizeof share - 1;

	if (in.len > MQTT_FILTER_BYTES_MAX)
		return 0;
	f->group = (struct cfx_view){ NULL, 0 };
	f->path = in;
	if (in.len >= share_len && memcmp(in.p, share, share_len) == 0) {
		const uint8_t *g = in.p + share_len, *end = in.p + in.len;
		const uint8_t *slash = memchr(g, '/', (size_t)(end - g));

		if (!slash || slash == g)
			return 0;
		for (const uint8_t *q = g; q < slash; q++)
			if (*q == '+' || *q == '#' || *q == '\0')
				return 0;
		f->group = (struct cfx_view){ g, (size_t)(slash - g) };
		f->path = (struct cfx_view){ slash + 1, (size_t)(end - slash - 1) };
	}
	return path_is_valid(f->path);
}

int mqtt_filter_is_valid(struct cfx_view filter)
{
	struct filter f;

	return filter_parse(filter, &f);
}

int mqtt_topic_is_valid(struct cfx_view topic)
{
	if (topic.len == 0 || topic.len > MQTT_FILTER_BYTES_MAX)
		return 0;
	for (size_t i = 0; i < topic.len; i++) {
		uint8_t c = topic.p[i];

		if (c == '+' || c == '#' || c == '\0')
			return 0;
	}
	return 1;
}

int mqtt_topic_matches(struct cfx_view filter, struct cfx_view topic)
{
	struct filter f;
	const uint8_t *fp, *fend, *tp, *tend;

	if (!filter_parse(filter, &f) || !mqtt_topic_is_valid(topic))
		return 0;
	fp = f.path.p;
	fend = fp + f.path.len;
	tp = topic.p;
	tend = tp + topic.len;
	if (tp[0] == '$' && (fp[0] == '+' || fp[0] == '#'))
		return 0;
	for (;;) {
		size_t flen = level_len(fp, fend), tlen = level_len(tp, tend);

		if (is_hash(fp, flen))
			return 1;
		if (!is_plus(fp, flen) && (flen != tlen || memcmp(fp, tp, flen) != 0))
			return 0;
		fp += flen;
		tp += tlen;
		if (tp == tend)	/* "x/#" also matches "x": only "/#" may be left */
			return fp == fend || (fend - fp == 2 && fp[1] == '#');
		if (fp == fend)
			return 0;
		fp++;
		tp++;
	}
}

/* ------------------------------------------------------------------------
 * Nodes and their exact children
 * ------------------------------------------------------------------------ */

static uint32_t key_hash(const uint8_t *p, size_t len)
{
	return (uint32_t)cfx_hash64(p, len);
}

static size_t node_size(const struct mqtt_node *node)
{
	return offsetof(struct mqtt_node, key) + node->key_len;
}

static struct mqtt_node *node_new(struct mqtt_tree *t, const uint8_t *key, size_t len)
{
	struct mqtt_node *node;

	CFX_ASSERT(len <= UINT16_MAX);
	node = t_alloc(t, offsetof(struct mqtt_node, key) + len);
	node->kids.one = NULL;
	node->ext = NULL;
	node->subs = NULL;
	node->key_hash = key_hash(key, len);
	node->nkids = 0;
	node->key_len = (uint16_t)len;
	if (len)
		memcpy(node->key, key, len);
	return node;
}

static int node_key_is(const struct mqtt_node *node, const uint8_t *p, size_t len)
{
	return node->key_len == len && memcmp(node->key, p, len) == 0;
}

/* Slots of the small array for n children (2 <= n <= KIDS_FEW_MAX). */
static uint32_t few_cap(uint32_t n)
{
	uint32_t cap = 2;

	while (cap < n)
		cap *= 2;
	return cap;
}

static size_t tab_size(uint32_t cap)
{
	return sizeof(struct kid_tab) + (size_t)cap * sizeof(struct mqtt_node *);
}

static struct kid_tab *tab_new(struct mqtt_tree *t, uint32_t cap)
{
	struct kid_tab *tab = t_alloc(t, tab_size(cap));

	memset(tab, 0, tab_size(cap));
	tab->cap = cap;
	return tab;
}

static void tab_put(struct kid_tab *tab, struct mqtt_node *c)
{
	uint32_t mask = tab->cap - 1, i = c->key_hash & mask;

	while (tab->slot[i])
		i = (i + 1) & mask;
	tab->slot[i] = c;
}

/* Removes `c` (present) with backward-shift deletion: each later entry of
 * the probe run moves back into the hole unless its home slot lies in the
 * cyclic range (hole, entry]. */
static void tab_del(struct kid_tab *tab, const struct mqtt_node *c)
{
	uint32_t mask = tab->cap - 1, i = c->key_hash & mask, j;

	while (tab->slot[i] != c) {
		CFX_ASSERT(tab->slot[i]);
		i = (i + 1) & mask;
	}
	for (j = i;;) {
		uint32_t home;

		j = (j + 1) & mask;
		if (!tab->slot[j])
			break;
		home = tab->slot[j]->key_hash & mask;
		if (j > i ? (home <= i || home > j) : (home <= i && home > j)) {
			tab->slot[i] = tab->slot[j];
			i = j;
		}
	}
	tab->slot[i] = NULL;
}

static struct kid_tab *tab_resize(struct mqtt_tree *t, struct kid_tab *old, uint32_t cap)
{
	struct kid_tab *tab = tab_new(t, cap);

	for (uint32_t i = 0; i < old->cap; i++)
		if (old->slot[i])
			tab_put(tab, old->slot[i]);
	t_free(t, old, tab_size(old->cap));
	return tab;
}

/* Returns the exact child with key (p, len), or NULL. Safe under the shared lock. */
static struct mqtt_node *kid_find(const struct mqtt_node *node, const uint8_t *p, size_t len)
{
	uint32_t n = node->nkids;

	if (n == 0)
		return NULL;
	if (n == 1)
		return node_key_is(node->kids.one, p, len) ? node->kids.one : NULL;
	if (n <= KIDS_FEW_MAX) {
		for (uint32_t i = 0; i < n; i++)
			if (node_key_is(node->kids.few[i], p, len))
				return node->kids.few[i];
		return NULL;
	}

	const struct kid_tab *tab = node->kids.tab;
	uint32_t h = key_hash(p, len), mask = tab->cap - 1;
	struct mqtt_node *c;

	for (uint32_t i = h & mask; (c = tab->slot[i]) != NULL; i = (i + 1) & mask)
		if (c->key_hash == h && node_key_is(c, p, len))
			return c;
	return NULL;
}

/* Adds `c`, whose key is not among node's children yet. */
static void kid_insert(struct mqtt_tree *t, struct mqtt_node *node, struct mqtt_node *c)
{
	uint32_t n = node->nkids;

	CFX_ASSERT(n < UINT32_MAX);
	if (n == 0) {
		node->kids.one = c;
	} else if (n == 1) {
		struct mqtt_node **few = t_alloc(t, 2 * sizeof *few);

		few[0] = node->kids.one;
		few[1] = c;
		node->kids.few = few;
	} else if (n < KIDS_FEW_MAX) {
		if (few_cap(n + 1) != few_cap(n))
			node->kids.few = t_realloc(t, node->kids.few, few_cap(n) * sizeof(void *),
						   few_cap(n + 1) * sizeof(void *));
		node->kids.few[n] = c;
	} else if (n == KIDS_FEW_MAX) {
		struct kid_tab *tab = tab_new(t, KIDS_TAB_MIN);

		for (uint32_t i = 0; i < n; i++)
			tab_put(tab, node->kids.few[i]);
		tab_put(tab, c);
		t_free(t, node->kids.few, few_cap(n) * sizeof(void *));
		node->kids.tab = tab;
	} else {
		struct kid_tab *tab = node->kids.tab;

		if (n + 1 > tab->cap / 4 * 3)
			tab = node->kids.tab = tab_resize(t, tab, tab->cap * 2);
		tab_put(tab, c);
	}
	node->nkids = n + 1;
}

/* Removes the child `c` (present). */
static void kid_remove(struct mqtt_tree *t, struct mqtt_node *node, struct mqtt_node *c)
{
	uint32_t n = node->nkids;

	CFX_ASSERT(n > 0);
	if (n == 1) {
		CFX_ASSERT(node->kids.one == c);
		node->kids.one = NULL;
	} else if (n == 2) {
		struct mqtt_node **few = node->kids.few;

		CFX_ASSERT(few[0] == c || few[1] == c);
		node->kids.one = few[0] == c ? few[1] : few[0];
		t_free(t, few, 2 * sizeof *few);
	} else if (n <= KIDS_FEW_MAX) {
		struct mqtt_node **few = node->kids.few;
		uint32_t i = 0;

		while (few[i] != c) {
			i++;
			CFX_ASSERT(i < n);
		}
		few[i] = few[n - 1];
		if (few_cap(n - 1) != few_cap(n))
			node->kids.few = t_realloc(t, few, few_cap(n) * sizeof(void *),
						   few_cap(n - 1) * sizeof(void *));
	} else if (n == KIDS_FEW_MAX + 1) {
		struct kid_tab *tab = node->kids.tab;
		struct mqtt_node **few = t_alloc(t, few_cap(n - 1) * sizeof *few);
		uint32_t k = 0;

		for (uint32_t i = 0; i < tab->cap; i++)
			if (tab->slot[i] && tab->slot[i] != c)
				few[k++] = tab->slot[i];
		CFX_ASSERT(k == n - 1);
		t_free(t, tab, tab_size(tab->cap));
		node->kids.few = few;
	} else {
		struct kid_tab *tab = node->kids.tab;

		tab_del(tab, c);
		if (tab->cap > KIDS_TAB_MIN && n - 1 < tab->cap / 8)
			node->kids.tab = tab_resize(t, tab, tab->cap / 2);
	}
	node->nkids = n - 1;
}

/* ------------------------------------------------------------------------
 * Wildcard children and share groups (node_ext)
 * ------------------------------------------------------------------------ */

static struct node_ext *ext_get(struct mqtt_tree *t, struct mqtt_node *node)
{
	if (!node->ext) {
		node->ext = t_alloc(t, sizeof *node->ext);
		memset(node->ext, 0, sizeof *node->ext);
	}
	return node->ext;
}

/* Frees node's ext once it holds nothing. */
static void ext_trim(struct mqtt_tree *t, struct mqtt_node *node)
{
	struct node_ext *x = node->ext;

	if (x && !x->plus && !x->hash && !x->groups) {
		t_free(t, x, sizeof *x);
		node->ext = NULL;
	}
}

static int node_is_empty(const struct mqtt_node *node)
{
	return node->nkids == 0 && !node->subs && !node->ext;
}

/* The child for the level (p, len) ('+', '#' or exact), or NULL. */
static struct mqtt_node *node_child(const struct mqtt_node *node, const uint8_t *p, size_t len)
{
	if (is_hash(p, len))
		return node->ext ? node->ext->hash : NULL;
	if (is_plus(p, len))
		return node->ext ? node->ext->plus : NULL;
	return kid_find(node, p, len);
}

/* As node_child(), creating the child when missing. */
static struct mqtt_node *node_child_make(struct mqtt_tree *t, struct mqtt_node *node,
					 const uint8_t *p, size_t len)
{
	struct mqtt_node *c = node_child(node, p, len);

	if (c)
		return c;
	c = node_new(t, p, len);
	if (is_hash(p, len))
		ext_get(t, node)->hash = c;
	else if (is_plus(p, len))
		ext_get(t, node)->plus = c;
	else
		kid_insert(t, node, c);
	return c;
}

/* Unlinks the child `c` from `parent` (c is then the caller's to free). */
static void node_detach(struct mqtt_tree *t, struct mqtt_node *parent, struct mqtt_node *c)
{
	struct node_ext *x = parent->ext;

	if (x && x->plus == c) {
		x->plus = NULL;
		ext_trim(t, parent);
	} else if (x && x->hash == c) {
		x->hash = NULL;
		ext_trim(t, parent);
	} else {
		kid_remove(t, parent, c);
	}
}

static size_t group_size(size_t name_len)
{
	return offsetof(struct share_group, name) + name_len;
}

/* The group named `name` at node, or NULL; *prev_next is set to the link
 * that points at it (for unlinking). */
static struct share_group *group_find(const struct mqtt_node *node, struct cfx_view name,
				      struct share_group ***prev_next)
{
	struct share_group **link;

	if (!node->ext)
		return NULL;
	for (link = &node->ext->groups; *link; link = &(*link)->next) {
		struct share_group *g = *link;

		if (g->name_len == name.len && memcmp(g->name, name.p, name.len) == 0) {
			if (prev_next)
				*prev_next = link;
			return g;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Subscriber lists
 * ------------------------------------------------------------------------ */

static size_t list_size(uint32_t cap)
{
	size_t size = sizeof(struct sub_list) + (size_t)cap * sizeof(struct mqtt_sub);

	if (cap >= SUBS_INDEX_MIN)
		size += 2 * (size_t)cap * sizeof(uint32_t);
	return size;
}

/* The session index of l (2 * cap slots), or NULL while l is small. */
static uint32_t *list_index(const struct sub_list *l)
{
	return l->cap >= SUBS_INDEX_MIN ? (uint32_t *)(uintptr_t)(l->s + l->cap) : NULL;
}

static uint32_t session_hash(const void *session)
{
	return (uint32_t)cfx_hash_mix64((uint64_t)(uintptr_t)session);
}

static void index_put(struct sub_list *l, uint32_t *ix, uint32_t pos)
{
	uint32_t mask = 2 * l->cap - 1, i = session_hash(l->s[pos].session) & mask;

	while (ix[i])
		i = (i + 1) & mask;
	ix[i] = pos + 1;
}

static void index_rebuild(struct sub_list *l)
{
	uint32_t *ix = list_index(l);

	if (!ix)
		return;
	memset(ix, 0, 2 * (size_t)l->cap * sizeof *ix);
	for (uint32_t pos = 0; pos < l->n; pos++)
		index_put(l, ix, pos);
}

/* The index slot holding position `pos` of `session`. */
static uint32_t index_slot(const struct sub_list *l, const uint32_t *ix, const void *session,
			   uint32_t pos)
{
	uint32_t mask = 2 * l->cap - 1, i = session_hash(session) & mask;

	while (ix[i] != pos + 1) {
		CFX_ASSERT(ix[i]);
		i = (i + 1) & mask;
	}
	return i;
}

/* Removes the index entry of position `pos` (s[] still intact). */
static void index_del(struct sub_list *l, uint32_t *ix, uint32_t pos)
{
	uint32_t mask = 2 * l->cap - 1, i = index_slot(l, ix, l->s[pos].session, pos), j;

	for (j = i;;) {
		uint32_t home;

		j = (j + 1) & mask;
		if (!ix[j])
			break;
		home = session_hash(l->s[ix[j] - 1].session) & mask;
		if (j > i ? (home <= i || home > j) : (home <= i && home > j)) {
			ix[i] = ix[j];
			i = j;
		}
	}
	ix[i] = 0;
}

/* Position of session's subscription in l (may be NULL), or -1. */
static int64_t list_find(const struct sub_list *l, const void *session)
{
	const uint32_t *ix;

	if (!l)
		return -1;
	ix = list_index(l);
	if (ix) {
		uint32_t mask = 2 * l->cap - 1;

		for (uint32_t i = session_hash(session) & mask; ix[i]; i = (i + 1) & mask)
			if (l->s[ix[i] - 1].session == session)
				return ix[i] - 1;
		return -1;
	}
	for (uint32_t pos = 0; pos < l->n; pos++)
		if (l->s[pos].session == session)
			return pos;
	return -1;
}

/* Adds *s to *lp (allocated on first use) or replaces the same session's
 * entry. Returns 1 if added, 0 if replaced. */
static int list_put(struct mqtt_tree *t, struct sub_list **lp, const struct mqtt_sub *s)
{
	struct sub_list *l = *lp;
	int64_t pos = list_find(l, s->session);
	uint32_t *ix;

	if (pos >= 0) {
		l->s[pos] = *s;
		return 0;
	}
	if (!l) {
		l = t_alloc(t, list_size(1));
		l->n = 0;
		l->cap = 1;
	} else if (l->n == l->cap) {
		CFX_ASSERT(l->cap <= UINT32_MAX / 4);
		l = t_realloc(t, l, list_size(l->cap), list_size(l->cap * 2));
		l->cap *= 2;
		index_rebuild(l);
	}
	l->s[l->n] = *s;
	ix = list_index(l);
	if (ix)
		index_put(l, ix, l->n);
	l->n++;
	*lp = l;
	return 1;
}

/* Removes position `pos` of *lp (the last entry moves into its place);
 * shrinks the list at a quarter full and frees it when empty. */
static void list_del(struct mqtt_tree *t, struct sub_list **lp, uint32_t pos)
{
	struct sub_list *l = *lp;
	uint32_t *ix = list_index(l), last = l->n - 1;

	CFX_ASSERT(pos < l->n);
	if (ix)
		index_del(l, ix, pos);
	if (pos != last) {
		l->s[pos] = l->s[last];
		if (ix)
			ix[index_slot(l, ix, l->s[pos].session, last)] = pos + 1;
	}
	l->n = last;
	if (l->n == 0) {
		t_free(t, l, list_size(l->cap));
		*lp = NULL;
		return;
	}
	if (l->cap > 1 && l->n <= l->cap / 4) {
		l = t_realloc(t, l, list_size(l->cap), list_size(l->cap / 2));
		l->cap /= 2;
		index_rebuild(l);
		*lp = l;
	}
}

/* ------------------------------------------------------------------------
 * The tree
 * ------------------------------------------------------------------------ */

struct mqtt_tree *mqtt_tree_new(void)
{
	struct mqtt_tree *t = cfx_calloc(1, sizeof *t);
	pthread_rwlockattr_t attr;
	int rc;

	/* Matches run continuously on the fan-out threads: without writer
	 * preference, a SUBSCRIBE could wait for ever. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = pthread_rwlock_init(&t->lock, &attr);
	CFX_ASSERT(rc == 0);
	pthread_rwlockattr_destroy(&attr);
	t->root = node_new(t, (const uint8_t *)"", 0);
	return t;
}

static void node_free_all(struct mqtt_tree *t, struct mqtt_node *node)
{
	uint32_t n = node->nkids;

	if (n == 1) {
		node_free_all(t, node->kids.one);
	} else if (n >= 2 && n <= KIDS_FEW_MAX) {
		for (uint32_t i = 0; i < n; i++)
			node_free_all(t, node->kids.few[i]);
		t_free(t, node->kids.few, few_cap(n) * sizeof(void *));
	} else if (n > KIDS_FEW_MAX) {
		struct kid_tab *tab = node->kids.tab;

		for (uint32_t i = 0; i < tab->cap; i++)
			if (tab->slot[i])
				node_free_all(t, tab->slot[i]);
		t_free(t, tab, tab_size(tab->cap));
	}
	if (node->ext) {
		struct node_ext *x = node->ext;
		struct share_group *g, *next;

		if (x->plus)
			node_free_all(t, x->plus);
		if (x->hash)
			node_free_all(t, x->hash);
		for (g = x->groups; g; g = next) {
			next = g->next;
			t_free(t, g->members, list_size(g->members->cap));
			t_free(t, g, group_size(g->name_len));
		}
		t_free(t, x, sizeof *x);
	}
	if (node->subs)
		t_free(t, node->subs, list_size(node->subs->cap));
	t_free(t, node, node_size(node));
}

void mqtt_tree_free(struct mqtt_tree *t)
{
	if (!t)
		return;
	node_free_all(t, t->root);
	CFX_ASSERT(t->bytes == 0);
	pthread_rwlock_destroy(&t->lock);
	cfx_free(t);
}

int mqtt_tree_subscribe(struct mqtt_tree *t, struct cfx_view filter, const struct mqtt_sub *s)
{
	struct filter f;
	struct mqtt_node *node;
	const uint8_t *p, *end;
	int rc;

	CFX_ASSERT(s->session);
	if (!filter_parse(filter, &f) || s->qos > 2 || s->retain_handling > 2)
		return CFX_EINVAL;

	pthread_rwlock_wrlock(&t->lock);
	node = t->root;
	p = f.path.p;
	end = p + f.path.len;
	for (;;) {
		size_t len = level_len(p, end);

		node = node_child_make(t, node, p, len);
		if (p + len == end)
			break;
		p += len + 1;
	}
	if (f.group.len) {
		struct share_group *g = group_find(node, f.group, NULL);

		if (!g) {
			struct node_ext *x = ext_get(t, node);

			g = t_alloc(t, group_size(f.group.len));
			g->members = NULL;
			g->rr = 0;
			g->name_len = (uint16_t)f.group.len;
			memcpy(g->name, f.group.p, f.group.len);
			g->next = x->groups;
			x->groups = g;
		}
		rc = list_put(t, &g->members, s);
	} else {
		rc = list_put(t, &node->subs, s);
	}
	if (rc == 1)
		__atomic_fetch_add(&t->count, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* mqtt_tree_unsubscribe() with the lock held exclusively. */
static int unsubscribe_locked(struct mqtt_tree *t, struct cfx_view filter, void *session)
{
	struct mqtt_node *path[MQTT_FILTER_LEVELS_MAX + 1], *node;
	struct filter f;
	size_t depth = 0;
	const uint8_t *p, *end;
	int64_t pos;

	if (!filter_parse(filter, &f))
		return 0;
	path[0] = t->root;
	p = f.path.p;
	end = p + f.path.len;
	for (;;) {
		size_t len = level_len(p, end);
		struct mqtt_node *c = node_child(path[depth], p, len);

		if (!c)
			return 0;
		CFX_ASSERT(depth < MQTT_FILTER_LEVELS_MAX);
		path[++depth] = c;
		if (p + len == end)
			break;
		p += len + 1;
	}
	node = path[depth];
	if (f.group.len) {
		struct share_group **link, *g = group_find(node, f.group, &link);

		if (!g || (pos = list_find(g->members, session)) < 0)
			return 0;
		list_del(t, &g->members, (uint32_t)pos);
		if (!g->members) {
			*link = g->next;
			t_free(t, g, group_size(g->name_len));
			ext_trim(t, node);
		}
	} else {
		if ((pos = list_find(node->subs, session)) < 0)
			return 0;
		list_del(t, &node->subs, (uint32_t)pos);
	}
	__atomic_fetch_sub(&t->count, 1, __ATOMIC_RELAXED);

	/* Free the nodes left empty, from the leaf up. */
	while (depth > 0 && node_is_empty(path[depth])) {
		node_detach(t, path[depth - 1], path[depth]);
		t_free(t, path[depth], node_size(path[depth]));
		depth--;
	}
	return 1;
}

int mqtt_tree_unsubscribe(struct mqtt_tree *t, struct cfx_view filter, void *session)
{
	int rc;

	pthread_rwlock_wrlock(&t->lock);
	rc = unsubscribe_locked(t, filter, session);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

size_t mqtt_tree_remove_session(struct mqtt_tree *t, void *session,
				const struct cfx_view *filters, size_t n)
{
	size_t removed = 0;

	pthread_rwlock_wrlock(&t->lock);
	for (size_t i = 0; i < n; i++)
		removed += (size_t)unsubscribe_locked(t, filters[i], session);
	pthread_rwlock_unlock(&t->lock);
	return removed;
}

size_t mqtt_tree_count(const struct mqtt_tree *t)
{
	return __atomic_load_n(&t->count, __ATOMIC_RELAXED);
}

size_t mqtt_tree_memory(const struct mqtt_tree *t)
{
	return sizeof *t + __atomic_load_n(&t->bytes, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------
 * Matching (under the shared lock)
 *
 * Recursion follows the tree, one frame per level of a stored filter, so
 * its depth is bounded by MQTT_FILTER_LEVELS_MAX + 1 whatever the length
 * of the topic name.
 * ------------------------------------------------------------------------ */

struct match_ctx {
	void (*fn)(void *arg, const struct mqtt_sub *sub, int shared);
	void *arg;
	int (*is_available)(void *session);
	size_t calls;
};

/* One member of g: the next in round-robin order that is available, or
 * the round-robin choice itself when none is. */
static void deliver_shared(struct share_group *g, struct match_ctx *mc)
{
	const struct sub_list *l = g->members;
	uint32_t n = l->n, start, pick;

	start = __atomic_fetch_add(&g->rr, 1, __ATOMIC_RELAXED) % n;
	pick = start;
	if (mc->is_available) {
		for (uint32_t k = 0; k < n; k++) {
			uint32_t i = start + k < n ? start + k : start + k - n;

			if (mc->is_available(l->s[i].session)) {
				pick = i;
				break;
			}
		}
	}
	mc->fn(mc->arg, &l->s[pick], 1);
	mc->calls++;
}

/* Every subscription of the filter that ends at node. */
static void deliver(const struct mqtt_node *node, struct match_ctx *mc)
{
	const struct sub_list *l = node->subs;

	if (l) {
		for (uint32_t i = 0; i < l->n; i++)
			mc->fn(mc->arg, &l->s[i], 0);
		mc->calls += l->n;
	}
	if (node->ext)
		for (struct share_group *g = node->ext->groups; g; g = g->next)
			deliver_shared(g, mc);
}

static void match_level(const struct mqtt_node *node, const uint8_t *p, const uint8_t *end,
			int first, struct match_ctx *mc);

/* The topic's level ending at `next` matched child c. */
static void match_child(const struct mqtt_node *c, const uint8_t *next, const uint8_t *end,
			struct match_ctx *mc)
{
	if (next == end) {
		deliver(c, mc);
		if (c->ext && c->ext->hash) /* "a/#" matches "a" */
			deliver(c->ext->hash, mc);
	} else if (c->nkids || c->ext) {
		match_level(c, next + 1, end, 0, mc);
	}
}

/* Matches the topic's level starting at p (and the rest) below node. */
static void match_level(const struct mqtt_node *node, const uint8_t *p, const uint8_t *end,
			int first, struct match_ctx *mc)
{
	size_t len = level_len(p, end);
	const struct mqtt_node *c = kid_find(node, p, len);
	const struct node_ext *x = node->ext;

	if (c)
		match_child(c, p + len, end, mc);
	/* "$SYS/..." and the like are not matched by a leading wildcard. */
	if (x && !(first && len > 0 && p[0] == '$')) {
		if (x->plus)
			match_child(x->plus, p + len, end, mc);
		if (x->hash)
			deliver(x->hash, mc);
	}
}

int mqtt_tree_match(struct mqtt_tree *t, struct cfx_view topic,
		    void (*fn)(void *arg, const struct mqtt_sub *sub, int shared), void *arg,
		    int (*is_available)(void *session))
{
	struct match_ctx mc = { .fn = fn, .arg = arg, .is_available = is_available };

	if (!mqtt_topic_is_valid(topic))
		return CFX_EINVAL;
	pthread_rwlock_rdlock(&t->lock);
	match_level(t->root, topic.p, topic.p + topic.len, 1, &mc);
	pthread_rwlock_unlock(&t->lock);
	return mc.calls > INT_MAX ? INT_MAX : (int)mc.calls;
}

/* ------------------------------------------------------------------------
 * Consistency check (tests)
 * ------------------------------------------------------------------------ */

static size_t check_list(const struct sub_list *l)
{
	CFX_ASSERT(l->n > 0 && l->n <= l->cap);
	CFX_ASSERT((l->cap & (l->cap - 1)) == 0);
	for (uint32_t pos = 0; pos < l->n; pos++) {
		CFX_ASSERT(l->s[pos].session);
		CFX_ASSERT(list_find(l, l->s[pos].session) == pos);
	}
	return l->n;
}

static size_t check_node(const struct mqtt_node *node, int is_root)
{
	size_t subs = 0;
	uint32_t n = node->nkids;

	CFX_ASSERT(is_root || !node_is_empty(node));
	CFX_ASSERT(node->key_hash == key_hash((const uint8_t *)node->key, node->key_len));
	if (node->subs)
		subs += check_list(node->subs);
	if (node->ext) {
		const struct node_ext *x = node->ext;

		CFX_ASSERT(x->plus || x->hash || x->groups);
		if (x->plus) {
			CFX_ASSERT(is_plus((const uint8_t *)x->plus->key, x->plus->key_len));
			subs += check_node(x->plus, 0);
		}
		if (x->hash) {
			CFX_ASSERT(is_hash((const uint8_t *)x->hash->key, x->hash->key_len));
			CFX_ASSERT(x->hash->nkids == 0);
			CFX_ASSERT(!x->hash->ext || (!x->hash->ext->plus && !x->hash->ext->hash));
			subs += check_node(x->hash, 0);
		}
		for (const struct share_group *g = x->groups; g; g = g->next) {
			CFX_ASSERT(g->name_len > 0 && g->members);
			CFX_ASSERT(group_find(node, (struct cfx_view){ (const uint8_t *)g->name,
								      g->name_len }, NULL) == g);
			subs += check_list(g->members);
		}
	}
	if (n == 1) {
		subs += check_node(node->kids.one, 0);
	} else if (n >= 2 && n <= KIDS_FEW_MAX) {
		for (uint32_t i = 0; i < n; i++)
			subs += check_node(node->kids.few[i], 0);
	} else if (n > KIDS_FEW_MAX) {
		const struct kid_tab *tab = node->kids.tab;
		uint32_t used = 0;

		CFX_ASSERT(tab->cap >= KIDS_TAB_MIN && (tab->cap & (tab->cap - 1)) == 0);
		CFX_ASSERT(n <= tab->cap / 4 * 3);
		for (uint32_t i = 0; i < tab->cap; i++) {
			const struct mqtt_node *c = tab->slot[i];

			if (!c)
				continue;
			used++;
			CFX_ASSERT(kid_find(node, (const uint8_t *)c->key, c->key_len) == c);
			subs += check_node(c, 0);
		}
		CFX_ASSERT(used == n);
	}
	for (uint32_t i = 0; n >= 2 && n <= KIDS_FEW_MAX && i < n; i++) {
		const struct mqtt_node *c = node->kids.few[i];

		CFX_ASSERT(kid_find(node, (const uint8_t *)c->key, c->key_len) == c);
	}
	return subs;
}

size_t mqtt_tree__check(struct mqtt_tree *t)
{
	size_t subs;

	pthread_rwlock_rdlock(&t->lock);
	subs = check_node(t->root, 1);
	CFX_ASSERT(subs == mqtt_tree_count(t));
	pthread_rwlock_unlock(&t->lock);
	return subs;
}
