/*
 * events_match_bench.c - EventBridge pattern matching (events/pattern.c):
 * builds sets of 10, 1,000 and 10,000 rules with realistic patterns, then
 * matches one stream of CloudEvents (parsed once, up front) against each
 * set on one thread, and prints events per second, matches per event, the
 * build time, and the ratio of the 10,000-rule rate to the 10-rule rate.
 * Figures only, no verdicts.
 *
 *   build/events_match_bench [--events N] [--seconds S] [--seed X]
 *
 * The rule mix (by rule number mod 10): three exact source+type, one type
 * prefix + region, numeric range, anything-but status, exists on a nested
 * field, "$or" of region and amount, suffix on subject + source prefix,
 * and equals-ignore-case + wildcard. Sources, domains and tenants come from
 * large vocabularies so most events match a few rules at 10,000 rules and
 * almost none at 10.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events/pattern.h"

#define SOURCES 2000u
#define TENANTS 1000u
#define DOMAINS 50u

static const char *const regions[] = { "eu-west-1", "eu-central-1", "us-east-1", "us-west-2",
				       "ap-south-1", "ap-northeast-1", "sa-east-1", "ca-central-1" };
static const char *const statuses[] = { "new", "paid", "shipped", "cancelled", "failed", "refunded" };
static const char *const actions[] = { "created", "updated", "paid", "deleted" };

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rule_text(uint32_t i, char *p, size_t n)
{
	uint32_t s = rnd(SOURCES), d = rnd(DOMAINS), t = rnd(TENANTS);
	const char *r = regions[rnd(8)];

	switch (i % 10) {
	case 0:
	case 1:
	case 2:
		return snprintf(p, n,
				"{\"source\":[\"svc-%u\"],\"type\":[\"com.example.d%u.%s\","
				"\"com.example.d%u.%s\"]}",
				s, d, actions[rnd(4)], d, actions[rnd(4)]);
	case 3:
		return snprintf(p, n,
				"{\"type\":[{\"prefix\":\"com.tenant-%u.\"}],\"data\":{\"region\":[\"%s\"]}}",
				t, r);
	case 4: {
		uint32_t lo = rnd(1000);
		return snprintf(p, n,
				"{\"source\":[\"svc-%u\"],\"data\":{\"amount\":[{\"numeric\":[\">\",%u,"
				"\"<=\",%u]}]}}",
				s, lo, lo + 1 + rnd(2000));
	}
	case 5:
		return snprintf(p, n,
				"{\"source\":[\"svc-%u\"],\"data\":{\"status\":[{\"anything-but\":"
				"[\"cancelled\",\"failed\"]}]}}",
				s);
	case 6:
		return snprintf(p, n,
				"{\"source\":[\"svc-%u\"],\"data\":{\"customer\":{\"vip\":[{\"exists\":"
				"true}]}}}",
				s);
	case 7:
		return snprintf(p, n,
				"{\"source\":[\"svc-%u\"],\"$or\":[{\"data\":{\"region\":[\"%s\"]}},"
				"{\"data\":{\"amount\":[{\"numeric\":[\">\",%u]}]}}]}",
				s, r, 500 + rnd(2000));
	case 8:
		return snprintf(p, n,
				"{\"subject\":[{\"suffix\":\".png\"}],\"source\":[{\"prefix\":\"svc-%u\"}]}",
				s);
	default:
		return snprintf(p, n,
				"{\"source\":[\"svc-%u\"],\"data\":{\"customer\":{\"tier\":"
				"[{\"equals-ignore-case\":\"GOLD\"}]}},\"type\":[{\"wildcard\":"
				"\"com.example.*.paid\"}]}",
				s);
	}
}

static json_t *event_new(uint32_t i)
{
	char buf[1024];
	json_error_t jerr;
	json_t *e;
	uint32_t s = rnd(SOURCES), tenant = rnd(4) == 0;
	const char *action = actions[rnd(4)];
	char type[96];

	if (tenant)
		snprintf(type, sizeof type, "com.tenant-%u.order.%s", rnd(TENANTS), action);
	else
		snprintf(type, sizeof type, "com.example.d%u.%s", rnd(DOMAINS), action);
	snprintf(buf, sizeof buf,
		 "{\"specversion\":\"1.0\",\"id\":\"evt-%u\",\"source\":\"svc-%u\",\"type\":\"%s\","
		 "\"subject\":\"img/%u.%s\",\"time\":\"2024-06-11T10:00:00Z\","
		 "\"datacontenttype\":\"application/json\",\"data\":{\"amount\":%u.%u,"
		 "\"status\":\"%s\",\"region\":\"%s\",\"customer\":{\"id\":\"c%u\",%s\"tier\":\"%s\"},"
		 "\"items\":[{\"sku\":\"k%u\",\"qty\":%u},{\"sku\":\"k%u\",\"qty\":1}],"
		 "\"ip\":\"10.%u.%u.%u\"}}",
		 i, s, type, rnd(100000), rnd(3) ? "png" : "jpg", rnd(3000), rnd(100),
		 statuses[rnd(6)], regions[rnd(8)], rnd(100000), rnd(5) == 0 ? "\"vip\":true," : "",
		 rnd(2) ? "gold" : "silver", rnd(1000), 1 + rnd(5), rnd(1000), rnd(256), rnd(256),
		 rnd(256));
	e = json_loads(buf, 0, &jerr);
	if (!e) {
		fprintf(stderr, "events_match_bench: bad event %s: %s\n", buf, jerr.text);
		exit(1);
	}
	return e;
}

struct result {
	double rate;	   /* events per second */
	double per_event;  /* matches per event */
	double build_s;	   /* seconds to add every rule */
};

static struct result run(uint32_t rules, json_t **events, uint32_t nevents, double seconds)
{
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	struct result res = { 0 };
	uint32_t out[256];
	uint64_t done = 0, matches = 0;
	char p[512], err[256];
	double t0 = now_s(), t1;

	rng = 0x1234567ULL + rules;
	for (uint32_t i = 0; i < rules; i++) {
		int n = rule_text(i, p, sizeof p);
		if (cfx_pattern_set_add(ps, i, p, (size_t)n, err, sizeof err) != 0) {
			fprintf(stderr, "events_match_bench: rule %s: %s\n", p, err);
			exit(1);
		}
	}
	res.build_s = now_s() - t0;

	/* Warm up, then match the stream over and over for `seconds`. */
	for (uint32_t i = 0; i < nevents; i++)
		cfx_pattern_set_match(ps, events[i], out, 256);
	t0 = now_s();
	do {
		for (uint32_t i = 0; i < nevents; i++)
			matches += cfx_pattern_set_match(ps, events[i], out, 256);
		done += nevents;
		t1 = now_s();
	} while (t1 - t0 < seconds);
	res.rate = (double)done / (t1 - t0);
	res.per_event = (double)matches / (double)done;
	cfx_pattern_set_free(ps);
	return res;
}

int main(int argc, char **argv)
{
	static const uint32_t sizes[] = { 10, 1000, 10000 };
	struct result res[3];
	uint32_t nevents = 20000;
	double seconds = 2.0;
	uint32_t only = 0; /* profiling: run one rule count only */
	json_t **events;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
			nevents = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			rng = strtoull(argv[++i], NULL, 10) | 1;
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = (uint32_t)strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--events N] [--seconds S] [--seed X] [--only RULES]\n", argv[0]);
			return 2;
		}
	}
	if (nevents == 0)
		nevents = 1;
	events = calloc(nevents, sizeof *events);
	for (uint32_t i = 0; i < nevents; i++)
		events[i] = event_new(i);

	printf("%-8s %14s %16s %12s\n", "rules", "events/s", "matches/event", "build ms");
	if (only) {
		struct result r = run(only, events, nevents, seconds);
		printf("%-8u %14.0f %16.3f %12.1f\n", only, r.rate, r.per_event, r.build_s * 1e3);
		return 0;
	}
	for (size_t k = 0; k < 3; k++) {
		res[k] = run(sizes[k], events, nevents, seconds);
		printf("%-8u %14.0f %16.3f %12.1f\n", sizes[k], res[k].rate, res[k].per_event,
		       res[k].build_s * 1e3);
	}
	printf("ratio 10000/10: %.2f\n", res[2].rate / res[0].rate);
	for (uint32_t i = 0; i < nevents; i++)
		json_decref(events[i]);
	free(events);
	return 0;
}
