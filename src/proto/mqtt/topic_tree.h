/*
 * topic_tree.h - the MQTT subscription tree: topic filters -> subscribers.
 *
 * A trie over topic levels ('/'-separated). A filter's subscribers hang at
 * the node of its last level; '+' and '#' are separate children of a node,
 * so matching a topic name walks at most the exact, '+' and '#' branches of
 * each level. Shared subscriptions ("$share/<group>/<filter>") hang a share
 * group at the node of <filter>; a matching message goes to one member of
 * each group.
 *
 * The tree stores subscriptions, it does not know sessions: a session is an
 * opaque pointer the tree never dereferences, and the caller keeps the list
 * of filters each session subscribed (it must anyway: MQTT session state),
 * which it hands back to mqtt_tree_remove_session().
 *
 * Not here: UTF-8 validation of names (the packet codec does it), retained
 * messages (the retained store, which uses mqtt_topic_matches()), merging
 * of a session's overlapping subscriptions (the caller's callback).
 *
 * Threads: every function may be called from any thread. One reader-writer
 * lock guards the tree: mqtt_tree_match() takes it shared, so matches run
 * in parallel; subscribe, unsubscribe and remove_session take it
 * exclusively. Design notes: docs/design/mqtt.md, "Subscription tree".
 */
#ifndef CFX_PROTO_MQTT_TOPIC_TREE_H
#define CFX_PROTO_MQTT_TOPIC_TREE_H

#include "base/buf.h"

#define MQTT_FILTER_BYTES_MAX 65535u /* a filter or topic name, $share prefix included */
#define MQTT_FILTER_LEVELS_MAX 128u  /* levels of a filter (after any $share/<group>/) */

/* One subscription as stored (24 bytes). */
struct mqtt_sub {
	void *session;			/* opaque owner; never dereferenced by the tree */
	uint32_t sub_id;		/* MQTT 5 subscription identifier, 0 = none */
	uint8_t qos;			/* granted maximum QoS, 0-2 */
	uint8_t no_local;		/* MQTT 5 option, 0/1 */
	uint8_t retain_as_published;	/* MQTT 5 option, 0/1 */
	uint8_t retain_handling;	/* MQTT 5 option, 0-2 */
	int64_t since_ms;		/* the owner's: when it was made (wall ms; 0 = always) */
};

struct mqtt_tree;

/* Returns a new, empty tree. Free it with mqtt_tree_free(). */
struct mqtt_tree *mqtt_tree_new(void);

/* Frees the tree and every subscription in it. No other call may be running. */
void mqtt_tree_free(struct mqtt_tree *t);

/*
 * Adds the subscription `*s` (copied) of s->session to `filter`, or replaces
 * the options of that session's existing subscription to the same filter.
 * `filter` may be "$share/<group>/<filter>": the session then joins the
 * share group (and "$share/g/a" is a subscription distinct from "a").
 * `filter` is borrowed until return.
 * Returns 1 if the subscription is new, 0 if it replaced one, CFX_EINVAL if
 * the filter is invalid (mqtt_filter_is_valid()) or qos / retain_handling
 * are out of range. s->session must not be NULL.
 * @locks takes the tree's lock exclusively.
 */
int mqtt_tree_subscribe(struct mqtt_tree *t, struct cfx_view filter, const struct mqtt_sub *s);

/*
 * Removes the subscription of `session` to `filter` (spelt as subscribed,
 * "$share/..." included) and frees the nodes it leaves empty.
 * Returns 1 if there was one, 0 if not (an invalid filter has none).
 * @locks takes the tree's lock exclusively.
 */
int mqtt_tree_unsubscribe(struct mqtt_tree *t, struct cfx_view filter, void *session);

/*
 * Removes every subscription of `session` to the `n` filters `filters`
 * (the filters the session subscribed, as the caller recorded them), under
 * one acquisition of the lock: O(total length of the filters), independent
 * of the size of the tree. Filters the session no longer holds are skipped.
 * Returns the number of subscriptions removed.
 * @locks takes the tree's lock exclusively.
 */
size_t mqtt_tree_remove_session(struct mqtt_tree *t, void *session,
				const struct cfx_view *filters, size_t n);

/*
 * Calls fn(arg, sub, shared) for each subscription that matches the topic
 * name `topic` (borrowed until return):
 *  - non-shared: once per matching subscription, so a session with several
 *    matching filters is called several times (the caller merges: maximum
 *    QoS, every subscription identifier); shared = 0;
 *  - shared: once per matching share group, for one member chosen round
 *    robin, skipping members for which is_available(session) returns 0
 *    unless none is available (then the round-robin choice stands);
 *    shared = 1. is_available may be NULL (every member is available).
 * Names starting with '$' do not match filters starting with '+' or '#'.
 * `sub` is valid only during the call. fn and is_available run under the
 * shared lock: they must not call any mqtt_tree_* function that locks (a
 * waiting writer has precedence, so even a nested match could deadlock),
 * and should be quick.
 * Returns the number of calls to fn, or CFX_EINVAL if `topic` is not a valid
 * topic name (mqtt_topic_is_valid()).
 * @locks takes the tree's lock shared.
 */
int mqtt_tree_match(struct mqtt_tree *t, struct cfx_view topic,
		    void (*fn)(void *arg, const struct mqtt_sub *sub, int shared), void *arg,
		    int (*is_available)(void *session));

/* Returns the number of subscriptions (shared ones included). Lock-free. */
size_t mqtt_tree_count(const struct mqtt_tree *t);

/* Returns the bytes the tree has allocated (requested sizes, without the
 * allocator's own overhead), for metrics. Lock-free. */
size_t mqtt_tree_memory(const struct mqtt_tree *t);

/*
 * Pure helpers, no tree, no lock.
 */

/* Returns 1 if the topic name `topic` matches `filter`, else 0 (also when
 * either is invalid). A "$share/<group>/" prefix of the filter is ignored. */
int mqtt_topic_matches(struct cfx_view filter, struct cfx_view topic);

/* Returns 1 if `filter` is a valid topic filter: 1 to MQTT_FILTER_BYTES_MAX
 * bytes, no NUL, '+' and '#' only as whole levels, '#' only last, at most
 * MQTT_FILTER_LEVELS_MAX levels; or "$share/<group>/<filter>" where group
 * is non-empty without '/', '+', '#' and <filter> is valid. */
int mqtt_filter_is_valid(struct cfx_view filter);

/* Returns 1 if `topic` is a valid PUBLISH topic name: 1 to
 * MQTT_FILTER_BYTES_MAX bytes, no '+', '#' or NUL. */
int mqtt_topic_is_valid(struct cfx_view topic);

/* For tests: walks the whole tree, asserting its invariants (counts, child
 * tables, no empty node kept), and returns the subscriptions found.
 * @locks takes the tree's lock shared. */
size_t mqtt_tree__check(struct mqtt_tree *t);

#endif
