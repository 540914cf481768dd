/*
 * pattern.h - EventBridge event patterns: validation, a compiled set of
 * many rules' patterns matched against one event at a time, and a
 * one-pattern explanation for `conflux rule test`.
 *
 * The module is a pure library: no sockets, no disk, no broker. Events are
 * CloudEvents in JSON structured form, already parsed into a jansson object
 * (attributes at the top level, the payload under "data"). The language is
 * the AWS / apache rocketmq-eventbridge one; docs/design/events-patterns.md
 * describes it with examples, the compiled structure and its costs. This
 * header is the contract.
 *
 * Language, in short:
 *
 *   pattern    := object with at least one member
 *   member     := key ':' ( pattern | '[' cond { ',' cond } ']' )
 *               | "$or" ':' '[' pattern { ',' pattern } ']'
 *   cond       := string | number | true | false | null
 *               | {"prefix": string | {"equals-ignore-case": string}}
 *               | {"suffix": string | {"equals-ignore-case": string}}
 *               | {"equals-ignore-case": string}
 *               | {"wildcard": string}                '*' any run, '\*' a star
 *               | {"anything-but": ab}
 *               | {"numeric": [op, number [, op, number]]}   op: = < <= > >=
 *               | {"exists": true | false}
 *               | {"cidr": "a.b.c.d/n" | "ipv6/n"}
 *   ab         := string | number | [ (string | number) ... ]
 *               | {"prefix": string} | {"suffix": string}
 *               | {"equals-ignore-case": string | [string ...]}
 *
 * Semantics. A pattern member names a path from the event's root. The
 * "values at a path" are the leaves (strings, numbers, true, false, null)
 * reached by following the keys, where an array at any step stands for each
 * of its elements (nested arrays are flattened; objects are not leaves). A
 * condition list is satisfied when ANY condition matches ANY value at its
 * path; a pattern matches when ALL its members are satisfied; "$or" is
 * satisfied when any of its patterns (read at the same level) matches.
 *
 *  - Exact: strings byte for byte; numbers by value (3 matches 3.0; both are
 *    compared as IEEE doubles); true/false/null only match themselves (null
 *    matches a JSON null, not an absent field). A string never equals a
 *    number.
 *  - prefix, suffix, equals-ignore-case, wildcard, cidr apply to string
 *    values only. Case folding is ASCII only.
 *  - anything-but matches a present leaf that is not excluded: exclusions
 *    are typed (the string "5" does not exclude the number 5), and prefix /
 *    suffix / equals-ignore-case exclusions exclude strings only, so a
 *    number, true, false or null leaf satisfies {"anything-but":{"prefix":"x"}}.
 *    It never matches an absent field.
 *  - numeric matches numbers only (a numeric-looking string does not).
 *  - exists:true matches when the path has at least one leaf; exists:false
 *    when it has none (absent, an object, or an empty array).
 *  - cidr: IPv4 dotted quads match IPv4 blocks, IPv6 addresses IPv6
 *    blocks (no mapping between the two). Host bits in the block are
 *    ignored; a block without "/n" is one address.
 *
 * Threads and locks: a compiled set is read-only during
 * cfx_pattern_set_match, so any number of threads may match against one set
 * at once. cfx_pattern_set_add / _remove / _free mutate it and need
 * exclusive access (the caller's lock, or copy-on-write of whole sets).
 */
#ifndef CFX_EVENTS_PATTERN_H
#define CFX_EVENTS_PATTERN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, checked when a pattern is validated or added. */
#define CFX_PATTERN_BYTES_MAX (64u * 1024u) /* pattern JSON text */
#define CFX_PATTERN_DEPTH_MAX 16u	     /* nested objects ("$or" levels count) */
#define CFX_PATTERN_FIELDS_MAX 256u	     /* members with a condition list */
#define CFX_PATTERN_CONDITIONS_MAX 1024u    /* conditions, anything-but values counted */
#define CFX_PATTERN_OR_BRANCHES_MAX 256u    /* alternatives after expanding every "$or" */
#define CFX_PATTERN_KEY_BYTES_MAX 255u	     /* one member name */
#define CFX_PATTERN_STRING_BYTES_MAX 4096u  /* one string operand */
#define CFX_PATTERN_SET_RULES_MAX (1u << 20) /* rules in one set */

struct cfx_pattern_set;

/*
 * Checks that `json` (`len` bytes, not necessarily NUL-terminated) is a
 * valid pattern. Returns 0, or CFX_EPARSE (not JSON or not a pattern) /
 * CFX_E2BIG (a limit) with a message in `err` (always NUL-terminated when
 * err_len > 0) naming the JSON path and the problem, e.g.
 * `data.amount: numeric needs an operator and a number`.
 */
int cfx_pattern_validate(const char *json, size_t len, char *err, size_t err_len);

/* Returns a new, empty set (never NULL; aborts on exhaustion). */
struct cfx_pattern_set *cfx_pattern_set_new(void);

/* Frees `ps` and everything in it; NULL is allowed. */
void cfx_pattern_set_free(struct cfx_pattern_set *ps);

/*
 * Compiles the pattern `json` as rule `rule_id` into `ps`. Returns 0;
 * CFX_EPARSE / CFX_E2BIG with `err` as for cfx_pattern_validate (the set is
 * unchanged); CFX_EEXIST if the id is already in the set; CFX_E2BIG when
 * the set holds CFX_PATTERN_SET_RULES_MAX rules. The text is only read.
 * Cost: O(pattern size) plus, for numeric conditions, a rebuild of the
 * range index of each field touched (O(r log r) in that field's ranges).
 * @locks exclusive access to ps.
 */
int cfx_pattern_set_add(struct cfx_pattern_set *ps, uint32_t rule_id, const char *json, size_t len,
			char *err, size_t err_len);

/*
 * Removes rule `rule_id`. Returns 0, or CFX_ENOENT. Rebuilds the indexes
 * from the remaining rules (O(total pattern size)): removals are rare.
 * @locks exclusive access to ps.
 */
int cfx_pattern_set_remove(struct cfx_pattern_set *ps, uint32_t rule_id);

/* Rules in the set. */
size_t cfx_pattern_set_count(const struct cfx_pattern_set *ps);

/*
 * Matches `event` (borrowed; any JSON value, normally an object) against
 * every rule of `ps`. Writes the ids of the matching rules, each once and in
 * no particular order, to out[0..max) and returns how many rules matched
 * (which may exceed max: the rest are not written). Cost: one walk of the
 * event's members that some pattern names, hash probes per value, and work
 * proportional to the conditions satisfied, independent of the rule count.
 * @thread any; many threads may match one set at once.
 */
size_t cfx_pattern_set_match(const struct cfx_pattern_set *ps, const json_t *event, uint32_t *out,
			     size_t max);

/*
 * Evaluates one pattern against `event` for `conflux rule test`. Returns 1
 * if it matches (`why` = ""), 0 if not, with the first reason found in
 * `why` ("data.amount: 50 is not > 100", "source: field absent"), or a
 * negative error (invalid pattern; the message is in `why`).
 * @thread any.
 */
int cfx_pattern_explain(const char *pattern, size_t plen, const json_t *event, char *why,
			size_t why_len);

#endif
