/*
 * pattern_int.h - the parsed form of one event pattern, shared inside
 * src/events (pattern.c compiles it into a set and evaluates it directly
 * for explanations). Not an API: include events/pattern.h.
 *
 * A pattern parses into a tree of objects (struct pat_node) whose members
 * are condition lists (leaves), nested objects, or "$or" alternatives. The
 * leaves are also collected in one array (pat->leaves) so that the set can
 * refer to them by index; "$or" is expanded into branches of leaf indices
 * (disjunctive normal form) when the pattern is added to a set.
 *
 * Paths are encoded as segments, each one length byte followed by that
 * many bytes of the member name, so any key (dots, NUL bytes) is
 * unambiguous; keys longer than CFX_PATTERN_KEY_BYTES_MAX never match.
 */
#ifndef CFX_EVENTS_PATTERN_INT_H
#define CFX_EVENTS_PATTERN_INT_H

#include <jansson.h>
#include <stdint.h>

#include "events/pattern.h"

/* Longest encoded path: every level's key at its longest. */
#define PAT_PATH_BYTES_MAX ((CFX_PATTERN_DEPTH_MAX + 1u) * (CFX_PATTERN_KEY_BYTES_MAX + 1u))
/* Wildcard operands are shorter than other strings: matching costs their length times the value's. */
#define PAT_WILDCARD_BYTES_MAX 256u

enum pat_cond_kind {
	PC_STR,	       /* exact string: s */
	PC_NUM,	       /* exact number: num */
	PC_TRUE,
	PC_FALSE,
	PC_NULL,
	PC_PREFIX,     /* s */
	PC_SUFFIX,     /* s */
	PC_EIC,	       /* equals-ignore-case: s, lower-cased */
	PC_PREFIX_EIC, /* s, lower-cased */
	PC_SUFFIX_EIC, /* s, lower-cased */
	PC_WILDCARD,   /* s = the literal pieces back to back, seg[] their lengths */
	PC_ANYTHING_BUT,
	PC_NUMERIC, /* range */
	PC_EXISTS,  /* exists */
	PC_CIDR,    /* family, bits, addr */
};

enum pat_ab_kind {
	PAB_VALUES, /* ab_vals: strings and numbers */
	PAB_PREFIX, /* ab_vals[0].s */
	PAB_SUFFIX, /* ab_vals[0].s */
	PAB_EIC,    /* ab_vals: strings, lower-cased */
};

struct pat_ab_val {
	char *s;      /* owned; NULL for a number */
	uint32_t len; /* bytes of s */
	double num;
};

struct pat_range {
	double lo, hi;
	uint8_t has_lo, has_hi;
	uint8_t lo_incl, hi_incl;
};

struct pat_cond {
	enum pat_cond_kind kind;
	const json_t *src; /* the condition in the parsed JSON; valid only while it lives */
	char *s;	   /* owned string operand, see the kinds */
	uint32_t len;	   /* bytes of s */
	double num;
	uint8_t exists;
	/* wildcard: nseg literal pieces (nseg - 1 stars); pieces are cut from s in order */
	uint32_t *seg;
	uint32_t nseg;
	/* anything-but */
	enum pat_ab_kind ab_kind;
	struct pat_ab_val *ab_vals;
	uint32_t nab;
	/* numeric */
	struct pat_range range;
	/* cidr */
	uint8_t family; /* 4 or 6 */
	uint8_t bits;
	uint8_t addr[16]; /* host bits cleared */
};

/* One member with a condition list. */
struct pat_leaf {
	uint8_t *path; /* owned, encoded segments */
	uint32_t path_len;
	char *display; /* owned, "data.amount" */
	struct pat_cond *conds;
	uint32_t nconds;
};

enum pat_member_kind { PM_LEAF, PM_OBJECT, PM_OR };

struct pat_node;

struct pat_member {
	enum pat_member_kind kind;
	uint32_t leaf;		/* PM_LEAF: index into pat->leaves */
	struct pat_node *child; /* PM_OBJECT */
	struct pat_node *alts;	/* PM_OR: nalts objects */
	uint32_t nalts;
};

struct pat_node {
	struct pat_member *m;
	uint32_t n;
	char *display; /* owned, where this object sits ("" at the root) */
};

struct pat {
	struct pat_node root;
	struct pat_leaf *leaves;
	uint32_t nleaves, leaves_cap;
	uint32_t nconds; /* against CFX_PATTERN_CONDITIONS_MAX */
};

/* Parses and validates; on failure returns CFX_EPARSE / CFX_E2BIG, *out = NULL, message in err. */
int pattern__parse(const char *json, size_t len, struct pat **out, char *err, size_t err_len);
void pattern__free(struct pat *pat);

/* Whether a condition matches one leaf value (never PC_EXISTS). */
int pattern__cond_match(const struct pat_cond *c, const json_t *v);

#endif
