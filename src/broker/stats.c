/*
 * stats.c - traffic counters per topic (stats.h).
 *
 * A fixed table of STATS_BUCKETS chains, indexed by the hash of the topic
 * name. Entries are only ever prepended (compare-and-swap on the bucket
 * head) and never removed until the broker closes, so a reader walks a
 * chain without a lock: the `next` pointer of an entry is written before
 * the entry is published and never changes. Two threads adding the same
 * topic at once cannot both succeed: the loser of the swap rescans the
 * entries prepended meanwhile, finds the winner's, and frees its own.
 *
 * The cost on the send and delivery paths is the hash, the chain walk and
 * two relaxed atomic adds. Relaxed order is enough: the counters are
 * independent totals, read by a scrape that needs no ordering with them.
 */
#include "broker/stats.h"

#include "base/err.h"
#include "base/hash.h"
#include "broker/broker_int.h"

struct tstat {
	struct tstat *next; /* immutable once published */
	atomic_uint_fast64_t msgs_in, bytes_in;
	atomic_uint_fast64_t msgs_out, bytes_out;
	uint16_t len;
	char name[]; /* NUL-terminated */
};

static _Atomic(struct tstat *) *bucket_of(struct cfx_broker *br, struct cfx_view topic)
{
	return &br->stats.buckets[cfx_hash64(topic.p, topic.len) % STATS_BUCKETS];
}

static struct tstat *scan(struct tstat *e, struct tstat *stop, struct cfx_view topic)
{
	for (; e && e != stop; e = e->next)
		if (e->len == topic.len && !memcmp(e->name, topic.p, topic.len))
			return e;
	return NULL;
}

/* The counters of `topic`, created on first use. Lock-free. */
static struct tstat *find_or_add(struct cfx_broker *br, struct cfx_view topic)
{
	_Atomic(struct tstat *) *b = bucket_of(br, topic);
	struct tstat *head = atomic_load_explicit(b, memory_order_acquire), *seen = NULL, *e;
	struct tstat *n = NULL;

	for (;;) {
		/* Only entries prepended since the last look can be new. */
		e = scan(head, seen, topic);
		if (e) {
			cfx_free(n); /* another thread added it first */
			return e;
		}
		if (!n) {
			CFX_ASSERT(topic.len <= UINT16_MAX);
			n = cfx_calloc(1, sizeof *n + topic.len + 1);
			n->len = (uint16_t)topic.len;
			memcpy(n->name, topic.p, topic.len);
		}
		n->next = head;
		seen = head;
		if (atomic_compare_exchange_weak_explicit(b, &head, n, memory_order_release,
							  memory_order_acquire))
			return n;
		/* `head` now holds the new head: rescan down to the old one. */
	}
}

void stats__count_in(struct cfx_broker *br, struct cfx_view topic, uint32_t msgs, uint64_t bytes)
{
	struct tstat *e = find_or_add(br, topic);

	atomic_fetch_add_explicit(&e->msgs_in, msgs, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->bytes_in, bytes, memory_order_relaxed);
}

void stats__count_out(struct cfx_broker *br, struct cfx_view topic, uint32_t msgs,
		      uint64_t bytes)
{
	struct tstat *e = find_or_add(br, topic);

	atomic_fetch_add_explicit(&e->msgs_out, msgs, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->bytes_out, bytes, memory_order_relaxed);
}

static void copy_out(struct tstat *e, struct cfx_topic_traffic *t)
{
	t->msgs_in = atomic_load_explicit(&e->msgs_in, memory_order_relaxed);
	t->bytes_in = atomic_load_explicit(&e->bytes_in, memory_order_relaxed);
	t->msgs_out = atomic_load_explicit(&e->msgs_out, memory_order_relaxed);
	t->bytes_out = atomic_load_explicit(&e->bytes_out, memory_order_relaxed);
}

int cfx_broker_topic_traffic(struct cfx_broker *br, struct cfx_view topic,
			     struct cfx_topic_traffic *out)
{
	struct tstat *e = scan(atomic_load_explicit(bucket_of(br, topic), memory_order_acquire),
			       NULL, topic);

	memset(out, 0, sizeof *out);
	if (!e)
		return CFX_ENOENT;
	copy_out(e, out);
	return 0;
}

void cfx_broker_traffic_foreach(struct cfx_broker *br,
				void (*fn)(void *arg, struct cfx_view topic,
					   const struct cfx_topic_traffic *t),
				void *arg)
{
	for (uint32_t i = 0; i < STATS_BUCKETS; i++) {
		struct tstat *e = atomic_load_explicit(&br->stats.buckets[i], memory_order_acquire);
		for (; e; e = e->next) {
			struct cfx_topic_traffic t;
			copy_out(e, &t);
			fn(arg, (struct cfx_view){ (const uint8_t *)e->name, e->len }, &t);
		}
	}
}

void stats__free(struct cfx_broker *br)
{
	for (uint32_t i = 0; i < STATS_BUCKETS; i++) {
		struct tstat *e = atomic_exchange(&br->stats.buckets[i], NULL);
		while (e) {
			struct tstat *next = e->next;
			cfx_free(e);
			e = next;
		}
	}
}
