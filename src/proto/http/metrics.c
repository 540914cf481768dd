/*
 * metrics.c - the Prometheus text exposition (format 0.0.4) of /metrics.
 *
 * Everything is read when scraped, from counters the broker, the store and
 * the network layer keep anyway: nothing here is on a hot path, and a
 * scrape costs a walk of the topics, the groups' positions and the
 * listeners. Names follow Prometheus' conventions: a `conflux_` prefix,
 * base units in the name (_bytes, _seconds), _total on counters; process
 * metrics use the standard `process_` names. docs/metrics.md lists every
 * metric with its type, labels and meaning.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bridge/bridge.h"
#include "broker/stats.h"
#include "proto/http/admin.h"

/* ------------------------------------------------------------------------
 * Writing the exposition
 * ------------------------------------------------------------------------ */

static void out_printf(struct cfx_writer *out, const char *fmt, ...) CFX_PRINTF(2, 3);

static void out_printf(struct cfx_writer *out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	CFX_ASSERT(n >= 0);
	/* One more byte for vsnprintf's NUL, which is then not counted. */
	char *d = (char *)cfx_writer_reserve(out, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	out->len += (size_t)n;
}

static void family(struct cfx_writer *out, const char *name, const char *type, const char *help)
{
	out_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format requires (backslash, quote, newline). */
static void label_value(struct cfx_writer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			cfx_write_u8(out, '\\'), cfx_write_u8(out, (uint8_t)*s);
		else if (*s == '\n')
			cfx_write_bytes(out, "\\n", 2);
		else
			cfx_write_u8(out, (uint8_t)*s);
	}
}

/* name{k1="v1"[,k2="v2"]} value: one sample with up to two labels (k2 may be NULL). */
static void sample(struct cfx_writer *out, const char *name, const char *k1, const char *v1,
		   const char *k2, const char *v2, uint64_t value)
{
	cfx_write_bytes(out, name, strlen(name));
	if (k1) {
		out_printf(out, "{%s=\"", k1);
		label_value(out, v1);
		if (k2) {
			out_printf(out, "\",%s=\"", k2);
			label_value(out, v2);
		}
		cfx_write_u8(out, '"');
		cfx_write_u8(out, '}');
	}
	out_printf(out, " %" PRIu64 "\n", value);
}

/* Nanoseconds as decimal seconds without an exponent or trailing zeros ("0.0025"). */
static void seconds(char *buf, size_t len, uint64_t ns)
{
	size_t n = (size_t)snprintf(buf, len, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u,
				    ns % 1000000000u);
	while (n > 1 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 1 && buf[n - 1] == '.')
		buf[--n] = '\0';
}

static void histogram(struct cfx_writer *out, const char *name, const char *help,
		      const struct cfx_latency_hist *h)
{
	char le[32];
	uint64_t cum = 0;

	family(out, name, "histogram", help);
	for (uint32_t i = 0; i < CFX_STORE_LATENCY_BUCKETS; i++) {
		cum += h->counts[i];
		seconds(le, sizeof le, (uint64_t)cfx_store_latency_bounds_ns[i]);
		out_printf(out, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le, cum);
	}
	cum += h->counts[CFX_STORE_LATENCY_BUCKETS];
	out_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	seconds(le, sizeof le, h->sum_ns);
	out_printf(out, "%s_sum %s\n%s_count %" PRIu64 "\n", name, le, name, cum);
}

/* ------------------------------------------------------------------------
 * Sources
 * ------------------------------------------------------------------------ */

/* Resident set size from /proc/self/statm (pages), or 0 if unreadable. */
static uint64_t rss_bytes(void)
{
	unsigned long long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	int ok;

	if (!f)
		return 0;
	ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
	fclose(f);
	return ok ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Names of the topics or the groups, sorted. */
struct names {
	char **v;
	size_t n, cap;
};

static void names_add(struct names *ns, const char *s)
{
	if (ns->n == ns->cap) {
		ns->cap = ns->cap ? ns->cap * 2 : 16;
		ns->v = cfx_realloc(ns->v, ns->cap * sizeof *ns->v);
	}
	ns->v[ns->n++] = cfx_strdup(s);
}

static void add_topic_name(void *arg, const struct cfx_topic_info *t)
{
	names_add(arg, t->name);
}

static void add_group_name(void *arg, const struct cfx_group_info *g)
{
	names_add(arg, g->name);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_sort(struct names *ns)
{
	if (ns->n)
		qsort(ns->v, ns->n, sizeof *ns->v, str_cmp);
}

static int names_has(const struct names *ns, const char *s)
{
	return ns->n && bsearch(&s, ns->v, ns->n, sizeof *ns->v, str_cmp) != NULL;
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		cfx_free(ns->v[i]);
	cfx_free(ns->v);
}

/* ------------------------------------------------------------------------
 * The families
 * ------------------------------------------------------------------------ */

static void render_process(struct admin_service *svc, struct cfx_writer *out)
{
	family(out, "conflux_build_info", "gauge",
	       "Always 1; the labels name the version of confluxd and the broker.");
	out_printf(out, "conflux_build_info{version=\"");
	label_value(out, svc->version);
	out_printf(out, "\",broker=\"");
	label_value(out, svc->broker_name);
	out_printf(out, "\"} 1\n");

	family(out, "process_start_time_seconds", "gauge",
	       "When the server started, in seconds since the Unix epoch.");
	out_printf(out, "process_start_time_seconds %" PRId64 ".%03d\n", svc->start_wall_ms / 1000,
		   (int)(svc->start_wall_ms % 1000));
	family(out, "process_resident_memory_bytes", "gauge", "Resident memory of the process.");
	out_printf(out, "process_resident_memory_bytes %" PRIu64 "\n", rss_bytes());
}

static void render_connections(struct admin_service *svc, struct cfx_writer *out)
{
	struct cfx_listener_stats ls[ADMIN_LISTENERS_MAX];
	static const struct {
		const char *name, *type, *help;
	} fam[3] = {
		{ "conflux_connections_open", "gauge", "Connections open now, per protocol." },
		{ "conflux_connections_accepted_total", "counter",
		  "Connections accepted since start, per protocol." },
		{ "conflux_connections_refused_total", "counter",
		  "Connections refused (over the limit or out of file descriptors), per protocol." },
	};

	CFX_ASSERT(svc->nlisteners <= ADMIN_LISTENERS_MAX);
	memset(ls, 0, sizeof ls);
	for (uint32_t i = 0; i < svc->nlisteners && i < ADMIN_LISTENERS_MAX; i++) {
		if (svc->o.srv && svc->listeners[i].addr[0])
			cfx_server_listener_stats(svc->o.srv, svc->listeners[i].name, &ls[i]);
	}
	for (int f = 0; f < 3; f++) {
		family(out, fam[f].name, fam[f].type, fam[f].help);
		for (uint32_t i = 0; i < svc->nlisteners && i < ADMIN_LISTENERS_MAX; i++) {
			uint64_t v = f == 0 ? ls[i].open : f == 1 ? ls[i].accepted : ls[i].refused;
			if (svc->listeners[i].addr[0])
				sample(out, fam[f].name, "protocol", svc->listeners[i].name, NULL, NULL,
				       v);
		}
	}
}

static void render_topics(struct cfx_broker *br, const struct names *topics,
			  struct cfx_writer *out)
{
	struct cfx_topic_traffic *t = cfx_calloc(topics->n ? topics->n : 1, sizeof *t);
	static const struct {
		const char *name, *help;
	} fam[4] = {
		{ "conflux_topic_messages_in_total", "Messages appended to the topic since start." },
		{ "conflux_topic_bytes_in_total", "Body bytes of the messages appended to the topic." },
		{ "conflux_topic_messages_out_total",
		  "Messages of the topic delivered to consumers (each delivery attempt)." },
		{ "conflux_topic_bytes_out_total", "Body bytes of the messages delivered." },
	};

	family(out, "conflux_topics", "gauge", "Topics defined.");
	out_printf(out, "conflux_topics %zu\n", topics->n);
	for (size_t i = 0; i < topics->n; i++)
		cfx_broker_topic_traffic(br, CFX_VIEW_STR(topics->v[i]), &t[i]);
	for (int f = 0; f < 4; f++) {
		family(out, fam[f].name, "counter", fam[f].help);
		for (size_t i = 0; i < topics->n; i++) {
			uint64_t v = f == 0   ? t[i].msgs_in
				     : f == 1 ? t[i].bytes_in
				     : f == 2 ? t[i].msgs_out
					      : t[i].bytes_out;
			sample(out, fam[f].name, "topic", topics->v[i], NULL, NULL, v);
		}
	}
	cfx_free(t);
}

static void render_groups(struct cfx_broker *br, const struct names *topics,
			  const struct names *groups, struct cfx_writer *out)
{
	size_t n;
	struct admin_pos *v = admin__positions(br, (struct cfx_view){ NULL, 0 }, &n);

	family(out, "conflux_groups", "gauge", "Consumer groups defined.");
	out_printf(out, "conflux_groups %zu\n", groups->n);
	/* Positions are sorted by group, topic, queue: sum each (group, topic) run. */
	for (int f = 0; f < 2; f++) {
		const char *name = f == 0 ? "conflux_group_lag_messages"
					  : "conflux_group_inflight_messages";
		family(out, name, "gauge",
		       f == 0 ? "Messages of the topic the group has not acknowledged yet "
				"(end offset - committed offset, summed over the queues)."
			      : "Messages of the topic delivered to the group and not acknowledged "
				"yet, invisible until their timeout.");
		for (size_t i = 0; i < n;) {
			size_t j = i;
			uint64_t sum = 0;
			for (; j < n && !strcmp(v[j].group, v[i].group) &&
			       !strcmp(v[j].topic, v[i].topic);
			     j++) {
				const struct cfx_group_queue_state *st = &v[j].st;
				if (f == 1)
					sum += st->inflight;
				else if (st->end > st->committed)
					sum += st->end - st->committed;
			}
			/* Positions outlive deleted groups and topics; those are not shown. */
			if (names_has(groups, v[i].group) && names_has(topics, v[i].topic))
				sample(out, name, "group", v[i].group, "topic", v[i].topic, sum);
			i = j;
		}
	}
	admin__positions_free(v, n);
}

static void render_store(struct cfx_broker *br, struct cfx_writer *out)
{
	struct cfx_store *st = cfx_broker_store(br);
	struct cfx_store_stats ss;
	struct cfx_store_latency lat;

	cfx_store_get_stats(st, &ss);
	cfx_store_get_latency(st, &lat);
	family(out, "conflux_store_log_bytes", "gauge", "Size of the commit-log segment files.");
	sample(out, "conflux_store_log_bytes", NULL, NULL, NULL, NULL, ss.log_bytes);
	family(out, "conflux_store_segments", "gauge", "Commit-log segment files.");
	sample(out, "conflux_store_segments", NULL, NULL, NULL, NULL, ss.segments);
	family(out, "conflux_store_queues", "gauge", "Queues that hold or held messages.");
	sample(out, "conflux_store_queues", NULL, NULL, NULL, NULL, ss.queues);
	family(out, "conflux_store_position_bytes", "gauge",
	       "Positions in the commit log: log_start (oldest byte kept), written (end of the "
	       "log), flushed (durable below), dispatched (readable below).");
	sample(out, "conflux_store_position_bytes", "position", "log_start", NULL, NULL,
	       ss.log_start);
	sample(out, "conflux_store_position_bytes", "position", "written", NULL, NULL,
	       ss.written_pos);
	sample(out, "conflux_store_position_bytes", "position", "flushed", NULL, NULL,
	       ss.flushed_pos);
	sample(out, "conflux_store_position_bytes", "position", "dispatched", NULL, NULL,
	       ss.dispatched_pos);
	family(out, "conflux_store_appends_total", "counter", "Batches appended to the log.");
	sample(out, "conflux_store_appends_total", NULL, NULL, NULL, NULL, ss.appends);
	family(out, "conflux_store_appended_messages_total", "counter",
	       "Messages appended to the log.");
	sample(out, "conflux_store_appended_messages_total", NULL, NULL, NULL, NULL, ss.messages);
	family(out, "conflux_store_fsyncs_total", "counter",
	       "fdatasync calls on commit-log segments.");
	sample(out, "conflux_store_fsyncs_total", NULL, NULL, NULL, NULL, ss.fsyncs);
	family(out, "conflux_store_read_only", "gauge",
	       "1 after a failed flush: the store refuses appends until restarted.");
	sample(out, "conflux_store_read_only", NULL, NULL, NULL, NULL, ss.err ? 1 : 0);
	histogram(out, "conflux_store_append_duration_seconds",
		  "Time of an append under the append lock, waiting for the lock included.",
		  &lat.append);
	histogram(out, "conflux_store_flush_duration_seconds",
		  "Time of one fdatasync of a commit-log segment.", &lat.flush);
}

static void render_messaging(struct cfx_broker *br, struct cfx_writer *out)
{
	size_t wheel_bytes = 0, timers = cfx_broker_timers_pending(br, &wheel_bytes);

	family(out, "conflux_delayed_messages_pending", "gauge",
	       "Delayed messages waiting for their delivery time.");
	sample(out, "conflux_delayed_messages_pending", NULL, NULL, NULL, NULL, timers);
	family(out, "conflux_timer_wheel_bytes", "gauge",
	       "Memory of the timing wheel that holds the pending delayed messages.");
	sample(out, "conflux_timer_wheel_bytes", NULL, NULL, NULL, NULL, wheel_bytes);
	family(out, "conflux_transactions_open", "gauge",
	       "Half messages of transactions neither committed nor rolled back yet.");
	sample(out, "conflux_transactions_open", NULL, NULL, NULL, NULL, cfx_broker_txn_open(br));
}

static void render_auth(struct cfx_auth *a, struct cfx_writer *out)
{
	struct cfx_auth_stats st;

	cfx_auth_stats(a, &st);
	family(out, "conflux_auth_failures_total", "counter",
	       "Sign-ins refused (wrong or unknown credentials, none where they are required).");
	for (int p = 0; p < CFX_AUTH_PROTO_N; p++)
		sample(out, "conflux_auth_failures_total", "protocol", cfx_auth_proto_name(p), NULL,
		       NULL, st.failures[p]);
	family(out, "conflux_auth_denials_total", "counter",
	       "Requests of signed-in (or anonymous) clients that policies denied.");
	for (int p = 0; p < CFX_AUTH_PROTO_N; p++)
		for (int i = 0; i < 8; i++)
			if (st.denials[p][i] || i < 2)
				sample(out, "conflux_auth_denials_total", "protocol",
				       cfx_auth_proto_name(p), "action",
				       i < 7 ? cfx_auth_action_name(1u << i) : "ADMIN",
				       st.denials[p][i]);
	family(out, "conflux_auth_password_checks_total", "counter",
	       "Password checks run on the auth thread (each one a key derivation).");
	sample(out, "conflux_auth_password_checks_total", NULL, NULL, NULL, NULL, st.checks);
	family(out, "conflux_auth_password_cache_hits_total", "counter",
	       "Password checks answered from the memory of earlier good ones.");
	sample(out, "conflux_auth_password_cache_hits_total", NULL, NULL, NULL, NULL,
	       st.check_cache_hits);
}

static void render_eventbridge(struct cfx_bridge *b, struct cfx_writer *out)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
		{ "conflux_eventbridge_events_in_total", "Events stored in buses by ingress.",
		  offsetof(struct cfx_bridge_stats, events_in) },
		{ "conflux_eventbridge_routed_total",
		  "Events the router matched against their bus's rules and acknowledged.",
		  offsetof(struct cfx_bridge_stats, events_routed) },
		{ "conflux_eventbridge_matches_total", "(event, rule) pairs that matched.",
		  offsetof(struct cfx_bridge_stats, matches) },
		{ "conflux_eventbridge_delivered_total",
		  "Deliveries a target accepted (HTTP 2xx, or stored in a bus, topic or MQTT topic).",
		  offsetof(struct cfx_bridge_stats, delivered) },
		{ "conflux_eventbridge_retried_total",
		  "Delivery attempts that failed and were scheduled again.",
		  offsetof(struct cfx_bridge_stats, retried) },
		{ "conflux_eventbridge_dead_lettered_total",
		  "Deliveries sent to a target's dead-letter topic.",
		  offsetof(struct cfx_bridge_stats, dead_lettered) },
	};
	struct cfx_bridge_stats st;

	cfx_bridge_stats(b, &st);
	for (size_t i = 0; i < CFX_ARRAY_LEN(counters); i++) {
		uint64_t v;
		memcpy(&v, (const char *)&st + counters[i].off, sizeof v);
		family(out, counters[i].name, "counter", counters[i].help);
		sample(out, counters[i].name, NULL, NULL, NULL, NULL, v);
	}
}

void metrics_render(struct admin_service *svc, struct cfx_writer *out)
{
	struct cfx_broker *br = svc->o.br;
	struct names topics = { 0 }, groups = { 0 };

	cfx_broker_topic_foreach(br, add_topic_name, &topics);
	cfx_broker_group_foreach(br, add_group_name, &groups);
	names_sort(&topics);
	names_sort(&groups);
	render_process(svc, out);
	render_connections(svc, out);
	render_topics(br, &topics, out);
	render_groups(br, &topics, &groups, out);
	render_store(br, out);
	render_messaging(br, out);
	if (svc->o.auth)
		render_auth(svc->o.auth, out);
	if (svc->o.bridge)
		render_eventbridge(svc->o.bridge, out);
	for (uint32_t i = 0; i < svc->nmetrics; i++)
		svc->metrics[i].fn(svc->metrics[i].arg, out);
	names_free(&topics);
	names_free(&groups);
}
