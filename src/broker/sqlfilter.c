/*
 * sqlfilter.c - compiles RocketMQ SQL92 filter expressions into a small
 * tree and evaluates it over the properties of a message.
 *
 * The language and its semantics are the contract of sqlfilter.h; the
 * user's guide is docs/filters.md. This file has four parts: the lexer,
 * the recursive-descent parser (its recursion is bounded by
 * CFX_SQL_DEPTH_MAX), the layout of a compiled filter, and the evaluator.
 *
 * A compiled filter is one allocation: a header, then the operands, the
 * nodes and a pool of bytes (property names, string literals, LIKE
 * patterns). Nodes and operands refer to each other by index, never by
 * pointer, so the parser can build them in scratch arrays and the result is
 * a plain copy. Nothing in it changes after compilation, which is what
 * makes a filter shareable between threads.
 *
 * AND and OR are n-ary (a chain of siblings), so a long "a OR b OR c ..."
 * is wide, not deep: the tree is only as deep as the nesting of '(' and
 * NOT, which the parser bounds, and so the evaluator's recursion is
 * bounded too.
 */
#include "broker/sqlfilter.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define NONE UINT32_MAX

/* The deepest recursion of eval(): an OR and an AND per level of '(', then a leaf. */
#define EVAL_LEVELS_MAX (2u * CFX_SQL_DEPTH_MAX + 2u)

/* ------------------------------------------------------------------------
 * The compiled form
 * ------------------------------------------------------------------------ */

enum opd_kind {
	OPD_PROP, /* a property (TAGS too): u.s names it in the pool */
	OPD_STR,  /* a string literal, unescaped, in the pool; LIKE patterns normalised */
	OPD_INT,
	OPD_DBL,
	OPD_BOOL,
	OPD_NULL,
};

struct operand {
	union {
		int64_t i; /* OPD_INT */
		double d;  /* OPD_DBL, always finite */
		int b;	   /* OPD_BOOL: 0 or 1 */
		struct {
			uint32_t off; /* bytes into the pool */
			uint32_t len;
		} s; /* OPD_PROP, OPD_STR */
	} u;
	uint8_t kind; /* enum opd_kind */
};

enum node_kind {
	N_CONST,   /* bare TRUE or FALSE: ops[a].u.b */
	N_AND,	   /* children: a, then each child's `next` */
	N_OR,	   /* same */
	N_NOT,	   /* child: a */
	N_CMP,	   /* ops[a] cmp ops[a+1] */
	N_BETWEEN, /* ops[a] BETWEEN ops[a+1] AND ops[a+2] */
	N_IN,	   /* ops[a] IN (ops[a+1] .. ops[a+n]) */
	N_ISNULL,  /* ops[a] IS NULL */
	N_LIKE,	   /* ops[a] LIKE ops[a+1], a normalised pattern (see normalise_pattern) */
};

enum cmp_op { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

struct node {
	uint8_t kind;	 /* enum node_kind */
	uint8_t cmp;	 /* N_CMP: enum cmp_op */
	uint8_t negated; /* N_BETWEEN, N_IN, N_ISNULL, N_LIKE: the NOT form */
	uint32_t next;	 /* next sibling under an AND / OR, NONE for the last */
	uint32_t a;	 /* first child (N_AND, N_OR, N_NOT) or first operand */
	uint32_t n;	 /* N_IN: number of items */
};

struct cfx_sql_filter {
	uint32_t root;	     /* index of the top node */
	uint32_t ops_count;  /* entries of ops[] */
	uint32_t node_count; /* entries of nodes[] */
	uint32_t pool_bytes; /* bytes of pool[] */
	const struct operand *ops;
	const struct node *nodes;
	const uint8_t *pool;
	/* followed, in the same allocation, by ops[], nodes[] and pool[] */
};

/* ------------------------------------------------------------------------
 * Characters and numbers (shared by the lexer and the evaluator)
 * ------------------------------------------------------------------------ */

static int is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static int is_name_start(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(uint8_t c)
{
	return is_name_start(c) || is_digit(c) || c == '.';
}

static int is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static uint8_t ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* 1 if s[0..n) equals the lower-case ASCII word `w`, ignoring case. */
static int eq_nocase(const uint8_t *s, size_t n, const char *w)
{
	size_t wl = strlen(w);

	if (n != wl)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(s[i]) != (uint8_t)w[i])
			return 0;
	return 1;
}

/*
 * Scans the longest prefix of s[0..n) that is a number of the grammar in
 * sqlfilter.h: [+-]? (D+ ['.' D*] | '.' D+) [[eE] [+-]? D+]. Returns its
 * length (0 if none); *integral tells whether it has neither '.' nor an
 * exponent. An 'e' without digits after it is not part of the number.
 */
static size_t scan_number(const uint8_t *s, size_t n, int *integral)
{
	size_t i = 0, digits = 0;

	*integral = 1;
	if (i < n && (s[i] == '+' || s[i] == '-'))
		i++;
	while (i < n && is_digit(s[i])) {
		i++;
		digits++;
	}
	if (i < n && s[i] == '.') {
		size_t j = i + 1, frac = 0;

		while (j < n && is_digit(s[j])) {
			j++;
			frac++;
		}
		if (digits + frac == 0)
			return 0;
		digits += frac;
		i = j;
		*integral = 0;
	}
	if (digits == 0)
		return 0;
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1, exp_digits = 0;

		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		while (j < n && is_digit(s[j])) {
			j++;
			exp_digits++;
		}
		if (exp_digits) {
			i = j;
			*integral = 0;
		}
	}
	return i;
}

/*
 * Converts s[0..n), an integral number as scan_number found it, to *out.
 * Returns 0, or -1 if it does not fit in int64_t. Negative numbers are
 * accumulated as a magnitude up to 2^63, so INT64_MIN itself fits.
 */
static int parse_int(const uint8_t *s, size_t n, int64_t *out)
{
	uint64_t acc = 0, limit = (uint64_t)INT64_MAX;
	size_t i = 0;
	int neg = 0;

	if (i < n && (s[i] == '+' || s[i] == '-')) {
		neg = s[i] == '-';
		i++;
	}
	if (neg)
		limit += 1;
	for (; i < n; i++) {
		uint64_t d = (uint64_t)(s[i] - '0');

		if (acc > (limit - d) / 10)
			return -1;
		acc = acc * 10 + d;
	}
	if (!neg)
		*out = (int64_t)acc;
	else if (acc == (uint64_t)INT64_MAX + 1)
		*out = INT64_MIN;
	else
		*out = -(int64_t)acc;
	return 0;
}

/*
 * Converts s[0..n), a number as scan_number found it and at most
 * CFX_SQL_NUMBER_BYTES_MAX bytes, to a double. Returns 0, or -1 if the value
 * is not finite. The text was validated first, so strtod sees a plain
 * decimal; should the process run under a locale whose decimal point is
 * not '.', strtod stops early and the number is refused, never misread.
 */
static int parse_dbl(const uint8_t *s, size_t n, double *out)
{
	char buf[CFX_SQL_NUMBER_BYTES_MAX + 1];
	char *end;
	double d;

	CFX_ASSERT(n <= CFX_SQL_NUMBER_BYTES_MAX);
	memcpy(buf, s, n);
	buf[n] = '\0';
	d = strtod(buf, &end);
	if (end != buf + n || !isfinite(d))
		return -1;
	*out = d;
	return 0;
}

/* A number at run time: an integer, or a finite double. */
struct num {
	int is_int;
	int64_t i;
	double d;
};

/*
 * Converts a whole property value to a number, the way a literal would be
 * read except that an integer too large for int64_t becomes a double.
 * Returns 0, or -1 if the value is not a number.
 */
static int value_to_num(struct cfx_view v, struct num *out)
{
	int integral;

	if (v.len == 0 || v.len > CFX_SQL_NUMBER_BYTES_MAX)
		return -1;
	if (scan_number(v.p, v.len, &integral) != v.len)
		return -1;
	if (integral && parse_int(v.p, v.len, &out->i) == 0) {
		out->is_int = 1;
		return 0;
	}
	out->is_int = 0;
	return parse_dbl(v.p, v.len, &out->d);
}

/*
 * Compares an integer with a finite double exactly (converting the integer
 * to double would round above 2^53). Returns <0, 0, >0 as i <, =, > d.
 */
static int int_dbl_cmp(int64_t i, double d)
{
	int64_t t;
	double frac;

	if (d >= 9223372036854775808.0) /* 2^63: above every int64_t */
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	t = (int64_t)d; /* in range: truncation toward zero is defined */
	if (i != t)
		return i < t ? -1 : 1;
	/* Same integer part: the fraction decides. d - t is exact in double. */
	frac = d - (double)t;
	return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int num_cmp(const struct num *x, const struct num *y)
{
	if (x->is_int && y->is_int)
		return x->i < y->i ? -1 : x->i > y->i;
	if (x->is_int)
		return int_dbl_cmp(x->i, y->d);
	if (y->is_int)
		return -int_dbl_cmp(y->i, x->d);
	return x->d < y->d ? -1 : x->d > y->d;
}

/* ------------------------------------------------------------------------
 * Lexer
 * ------------------------------------------------------------------------ */

enum tok_kind {
	T_END,
	T_ERROR, /* the lexer failed; the parser has the message */
	T_LPAREN,
	T_RPAREN,
	T_COMMA,
	T_EQ,
	T_NE,
	T_LT,
	T_LE,
	T_GT,
	T_GE,
	T_STR,
	T_INT,
	T_DBL,
	T_NAME,
	/* keywords */
	T_AND,
	T_OR,
	T_NOT,
	T_BETWEEN,
	T_IN,
	T_IS,
	T_NULL,
	T_LIKE,
	T_ESCAPE,
	T_TRUE,
	T_FALSE,
	T_TAGS,
};

static const struct {
	const char *word; /* lower case */
	enum tok_kind kind;
} keywords[] = {
	{ "and", T_AND },
	{ "or", T_OR },
	{ "not", T_NOT },
	{ "between", T_BETWEEN },
	{ "in", T_IN },
	{ "is", T_IS },
	{ "null", T_NULL },
	{ "like", T_LIKE },
	{ "escape", T_ESCAPE },
	{ "true", T_TRUE },
	{ "false", T_FALSE },
	{ "tags", T_TAGS },
};

struct token {
	enum tok_kind kind;
	size_t pos;	  /* byte offset of its first byte in the text */
	size_t len;	  /* bytes of text it covers */
	size_t str_bytes; /* T_STR: length once '' became ' */
	int64_t i;	  /* T_INT */
	double d;	  /* T_DBL */
};

struct parser {
	const uint8_t *s; /* the text, borrowed */
	size_t len;
	size_t pos;	  /* where the lexer reads next */
	struct token tok; /* the lookahead */
	uint32_t depth;	  /* open '(' and NOT right now */

	/* Scratch arrays, sized from len so that they cannot overflow (asserted). */
	struct node *nodes;
	uint32_t node_count, nodes_cap;
	struct operand *ops;
	uint32_t ops_count, ops_cap;
	uint8_t *pool;
	size_t pool_bytes, pool_cap;

	int rc;	      /* first failure, 0 while none */
	char *err;    /* the caller's message buffer */
	size_t err_len;
};

/* Records the first failure, at byte offset `pos`; later ones are ignored. */
CFX_PRINTF(4, 5)
static void fail(struct parser *p, int rc, size_t pos, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	if (p->rc)
		return;
	p->rc = rc;
	p->tok.kind = T_ERROR;
	if (!p->err || p->err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	snprintf(p->err, p->err_len, "%s at column %zu", what, pos + 1);
}

/* Lexes a string literal opening at p->pos (a quote) into p->tok. */
static void lex_string(struct parser *p)
{
	size_t start = p->pos, i = start + 1, bytes = 0;

	for (;;) {
		if (i >= p->len) {
			fail(p, CFX_EPARSE, start, "unterminated string");
			return;
		}
		if (p->s[i] == '\'') {
			if (i + 1 < p->len && p->s[i + 1] == '\'') {
				i += 2;
			} else {
				i++;
				break;
			}
		} else {
			i++;
		}
		if (++bytes > CFX_SQL_STRING_BYTES_MAX) {
			fail(p, CFX_E2BIG, start, "string longer than %u bytes",
			     CFX_SQL_STRING_BYTES_MAX);
			return;
		}
	}
	p->tok.kind = T_STR;
	p->tok.len = i - start;
	p->tok.str_bytes = bytes;
}

/* Lexes a number starting at p->pos (a digit, a sign or a '.', as checked). */
static void lex_number(struct parser *p)
{
	const uint8_t *s = p->s + p->pos;
	size_t avail = p->len - p->pos, n;
	int integral;

	n = scan_number(s, avail, &integral);
	if (n == 0 || (n < avail && is_name_char(s[n]))) {
		fail(p, CFX_EPARSE, p->pos, "malformed number");
		return;
	}
	if (n > CFX_SQL_NUMBER_BYTES_MAX) {
		fail(p, CFX_E2BIG, p->pos, "number longer than %u bytes", CFX_SQL_NUMBER_BYTES_MAX);
		return;
	}
	p->tok.len = n;
	if (integral) {
		if (parse_int(s, n, &p->tok.i) != 0) {
			fail(p, CFX_EPARSE, p->pos, "integer out of range");
			return;
		}
		p->tok.kind = T_INT;
	} else {
		if (parse_dbl(s, n, &p->tok.d) != 0) {
			fail(p, CFX_EPARSE, p->pos, "number out of range");
			return;
		}
		p->tok.kind = T_DBL;
	}
}

/* Lexes a name or keyword starting at p->pos. */
static void lex_name(struct parser *p)
{
	size_t i = p->pos + 1;

	while (i < p->len && is_name_char(p->s[i]))
		i++;
	p->tok.len = i - p->pos;
	if (p->tok.len > CFX_SQL_NAME_BYTES_MAX) {
		fail(p, CFX_E2BIG, p->pos, "name longer than %u bytes", CFX_SQL_NAME_BYTES_MAX);
		return;
	}
	p->tok.kind = T_NAME;
	for (size_t k = 0; k < CFX_ARRAY_LEN(keywords); k++) {
		if (eq_nocase(p->s + p->pos, p->tok.len, keywords[k].word)) {
			p->tok.kind = keywords[k].kind;
			break;
		}
	}
}

/* Advances to the next token. Once a failure is recorded it stays on T_ERROR. */
static void next(struct parser *p)
{
	uint8_t c, c1;

	if (p->rc)
		return;
	p->pos += p->tok.len;
	while (p->pos < p->len && is_space(p->s[p->pos]))
		p->pos++;
	p->tok = (struct token){ .kind = T_END, .pos = p->pos, .len = 0 };
	if (p->pos >= p->len)
		return;

	c = p->s[p->pos];
	c1 = p->pos + 1 < p->len ? p->s[p->pos + 1] : 0;
	p->tok.len = 1;
	switch (c) {
	case '(':
		p->tok.kind = T_LPAREN;
		return;
	case ')':
		p->tok.kind = T_RPAREN;
		return;
	case ',':
		p->tok.kind = T_COMMA;
		return;
	case '=':
		p->tok.kind = T_EQ;
		return;
	case '<':
		p->tok.kind = c1 == '>' ? T_NE : c1 == '=' ? T_LE : T_LT;
		p->tok.len = p->tok.kind == T_LT ? 1 : 2;
		return;
	case '>':
		p->tok.kind = c1 == '=' ? T_GE : T_GT;
		p->tok.len = p->tok.kind == T_GT ? 1 : 2;
		return;
	case '\'':
		lex_string(p);
		return;
	case '!':
		if (c1 == '=') {
			fail(p, CFX_EPARSE, p->pos, "'!=' is not SQL, write '<>'");
			return;
		}
		break;
	default:
		break;
	}
	if (is_digit(c) || c == '.' || c == '+' || c == '-') {
		int integral;

		if (scan_number(p->s + p->pos, p->len - p->pos, &integral) > 0) {
			lex_number(p);
			return;
		}
	}
	if (is_name_start(c)) {
		lex_name(p);
		return;
	}
	if (c >= 0x21 && c < 0x7f)
		fail(p, CFX_EPARSE, p->pos, "unexpected character '%c'", c);
	else
		fail(p, CFX_EPARSE, p->pos, "unexpected byte 0x%02x", c);
}

/* ------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------ */

static uint32_t parse_or(struct parser *p);

/* Adds a node; NONE (and a failure) past CFX_SQL_NODES_MAX. */
static uint32_t new_node(struct parser *p, enum node_kind kind, uint32_t a)
{
	struct node *n;

	if (p->rc)
		return NONE;
	if (p->node_count >= CFX_SQL_NODES_MAX) {
		fail(p, CFX_E2BIG, p->tok.pos, "more than %u conditions and operators",
		     CFX_SQL_NODES_MAX);
		return NONE;
	}
	/* Each node takes a token of its own (its operator or keyword): nodes_cap is enough. */
	CFX_ASSERT(p->node_count < p->nodes_cap);
	n = &p->nodes[p->node_count];
	*n = (struct node){ .kind = (uint8_t)kind, .next = NONE, .a = a };
	return p->node_count++;
}

/* Appends bytes to the pool (sized for the worst case: asserted). Returns their offset. */
static uint32_t pool_put(struct parser *p, const uint8_t *b, size_t n)
{
	size_t off = p->pool_bytes;

	CFX_ASSERT(n <= p->pool_cap - p->pool_bytes);
	if (n)
		memcpy(p->pool + off, b, n);
	p->pool_bytes += n;
	return (uint32_t)off;
}

/* Copies the current T_STR token's bytes, '' turned into ', to out (str_bytes bytes). */
static void unescape_string(const struct parser *p, uint8_t *out)
{
	const uint8_t *s = p->s + p->tok.pos + 1;
	size_t end = p->tok.len - 2, o = 0;

	for (size_t i = 0; i < end; i++) {
		out[o++] = s[i];
		if (s[i] == '\'')
			i++; /* the second quote of '' */
	}
	CFX_ASSERT(o == p->tok.str_bytes);
}

/*
 * Parses one value at the lookahead into a new operand and returns its
 * index, or NONE with a failure "expected <what>".
 */
static uint32_t parse_value(struct parser *p, const char *what)
{
	struct operand *o;
	uint8_t buf[CFX_SQL_STRING_BYTES_MAX];

	if (p->rc)
		return NONE;
	switch (p->tok.kind) {
	case T_NAME:
	case T_TAGS:
	case T_STR:
	case T_INT:
	case T_DBL:
	case T_TRUE:
	case T_FALSE:
	case T_NULL:
		break;
	default:
		fail(p, CFX_EPARSE, p->tok.pos, "expected %s", what);
		return NONE;
	}
	/* Each operand takes a token, each token a byte: ops_cap (len + 1) is enough. */
	CFX_ASSERT(p->ops_count < p->ops_cap);
	o = &p->ops[p->ops_count];
	*o = (struct operand){ 0 };
	switch (p->tok.kind) {
	case T_NAME:
		o->kind = OPD_PROP;
		o->u.s.len = (uint32_t)p->tok.len;
		o->u.s.off = pool_put(p, p->s + p->tok.pos, p->tok.len);
		break;
	case T_TAGS:
		/* Same length as the keyword, whatever its case: the pool bound holds. */
		o->kind = OPD_PROP;
		o->u.s.len = (uint32_t)strlen(CFX_SQL_TAGS_NAME);
		o->u.s.off = pool_put(p, (const uint8_t *)CFX_SQL_TAGS_NAME, o->u.s.len);
		break;
	case T_STR:
		o->kind = OPD_STR;
		unescape_string(p, buf);
		o->u.s.len = (uint32_t)p->tok.str_bytes;
		o->u.s.off = pool_put(p, buf, p->tok.str_bytes);
		break;
	case T_INT:
		o->kind = OPD_INT;
		o->u.i = p->tok.i;
		break;
	case T_DBL:
		o->kind = OPD_DBL;
		o->u.d = p->tok.d;
		break;
	case T_TRUE:
	case T_FALSE:
		o->kind = OPD_BOOL;
		o->u.b = p->tok.kind == T_TRUE;
		break;
	default:
		o->kind = OPD_NULL;
		break;
	}
	next(p);
	return p->ops_count++;
}

static int is_cmp_token(enum tok_kind k)
{
	return k >= T_EQ && k <= T_GE;
}

static enum cmp_op cmp_of_token(enum tok_kind k)
{
	switch (k) {
	case T_EQ:
		return CMP_EQ;
	case T_NE:
		return CMP_NE;
	case T_LT:
		return CMP_LT;
	case T_LE:
		return CMP_LE;
	case T_GT:
		return CMP_GT;
	default:
		return CMP_GE;
	}
}

/* value cmp_op value, the left operand parsed already (index v). */
static uint32_t parse_comparison(struct parser *p, uint32_t v)
{
	enum cmp_op op = cmp_of_token(p->tok.kind);
	size_t at = p->tok.pos;
	uint32_t r, n;

	next(p);
	r = parse_value(p, "a value");
	if (r == NONE)
		return NONE;
	if (op != CMP_EQ && op != CMP_NE &&
	    (p->ops[v].kind == OPD_BOOL || p->ops[r].kind == OPD_BOOL)) {
		fail(p, CFX_EPARSE, at, "TRUE and FALSE compare only with = and <>");
		return NONE;
	}
	n = new_node(p, N_CMP, v);
	if (n != NONE)
		p->nodes[n].cmp = (uint8_t)op;
	return n;
}

/* [NOT] BETWEEN value AND value, at BETWEEN. */
static uint32_t parse_between(struct parser *p, uint32_t v, int negated)
{
	size_t at = p->tok.pos;
	uint32_t lo, hi, n;

	next(p);
	lo = parse_value(p, "a value");
	if (lo == NONE)
		return NONE;
	if (p->tok.kind != T_AND) {
		fail(p, CFX_EPARSE, p->tok.pos, "expected AND");
		return NONE;
	}
	next(p);
	hi = parse_value(p, "a value");
	if (hi == NONE)
		return NONE;
	if (p->ops[v].kind == OPD_BOOL || p->ops[lo].kind == OPD_BOOL ||
	    p->ops[hi].kind == OPD_BOOL) {
		fail(p, CFX_EPARSE, at, "TRUE and FALSE compare only with = and <>");
		return NONE;
	}
	n = new_node(p, N_BETWEEN, v);
	if (n != NONE)
		p->nodes[n].negated = (uint8_t)negated;
	return n;
}

/* [NOT] IN '(' item {',' item} ')', at IN. */
static uint32_t parse_in(struct parser *p, uint32_t v, int negated)
{
	uint32_t count = 0, n;

	next(p);
	if (p->tok.kind != T_LPAREN) {
		fail(p, CFX_EPARSE, p->tok.pos, "expected '('");
		return NONE;
	}
	next(p);
	for (;;) {
		if (p->tok.kind != T_STR && p->tok.kind != T_INT && p->tok.kind != T_DBL) {
			fail(p, CFX_EPARSE, p->tok.pos, "expected a string or a number");
			return NONE;
		}
		if (count == CFX_SQL_IN_ITEMS_MAX) {
			fail(p, CFX_E2BIG, p->tok.pos, "IN list longer than %u items",
			     CFX_SQL_IN_ITEMS_MAX);
			return NONE;
		}
		if (parse_value(p, "a string or a number") == NONE)
			return NONE;
		count++;
		if (p->tok.kind == T_RPAREN)
			break;
		if (p->tok.kind != T_COMMA) {
			fail(p, CFX_EPARSE, p->tok.pos, "expected ',' or ')'");
			return NONE;
		}
		next(p);
	}
	next(p);
	n = new_node(p, N_IN, v);
	if (n != NONE) {
		p->nodes[n].negated = (uint8_t)negated;
		p->nodes[n].n = count;
	}
	return n;
}

/* IS [NOT] NULL, at IS. */
static uint32_t parse_is(struct parser *p, uint32_t v)
{
	int negated = 0;
	uint32_t n;

	next(p);
	if (p->tok.kind == T_NOT) {
		negated = 1;
		next(p);
	}
	if (p->tok.kind != T_NULL) {
		fail(p, CFX_EPARSE, p->tok.pos, "expected NULL");
		return NONE;
	}
	next(p);
	n = new_node(p, N_ISNULL, v);
	if (n != NONE)
		p->nodes[n].negated = (uint8_t)negated;
	return n;
}

/*
 * Rewrites a LIKE pattern raw[0..n) (escape character `esc`, or -1 for
 * none) into the form the matcher reads: '%' and '_' are wildcards, '\'
 * makes the next byte literal, and a run of '%' is one '%'. Writes at most
 * 2n bytes to the pool. Returns 0, or -1 if the escape character is
 * misused (the caller reports it).
 */
static int normalise_pattern(struct parser *p, const uint8_t *raw, size_t n, int esc)
{
	static const uint8_t pct = '%', und = '_';
	int after_pct = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = raw[i], lit[2] = { '\\', 0 };

		if (esc >= 0 && c == (uint8_t)esc) {
			if (i + 1 == n ||
			    (raw[i + 1] != '%' && raw[i + 1] != '_' && raw[i + 1] != (uint8_t)esc))
				return -1;
			lit[1] = raw[++i];
			pool_put(p, lit, 2);
			after_pct = 0;
		} else if (c == '%') {
			if (!after_pct)
				pool_put(p, &pct, 1);
			after_pct = 1;
		} else if (c == '_') {
			pool_put(p, &und, 1);
			after_pct = 0;
		} else if (c == '\\') {
			lit[1] = c;
			pool_put(p, lit, 2);
			after_pct = 0;
		} else {
			pool_put(p, &c, 1);
			after_pct = 0;
		}
	}
	return 0;
}

/* [NOT] LIKE string [ESCAPE string], at LIKE. */
static uint32_t parse_like(struct parser *p, uint32_t v, int negated)
{
	uint8_t raw[CFX_SQL_STRING_BYTES_MAX], esc_buf[CFX_SQL_STRING_BYTES_MAX];
	size_t raw_len, pat_pos;
	struct operand *o;
	uint32_t pat, n;
	int esc = -1;

	next(p);
	if (p->tok.kind != T_STR) {
		fail(p, CFX_EPARSE, p->tok.pos, "expected a string pattern");
		return NONE;
	}
	pat_pos = p->tok.pos;
	unescape_string(p, raw);
	raw_len = p->tok.str_bytes;
	next(p);
	if (p->tok.kind == T_ESCAPE) {
		next(p);
		if (p->tok.kind != T_STR) {
			fail(p, CFX_EPARSE, p->tok.pos, "expected a string");
			return NONE;
		}
		if (p->tok.str_bytes != 1) {
			fail(p, CFX_EPARSE, p->tok.pos, "ESCAPE takes exactly one byte");
			return NONE;
		}
		unescape_string(p, esc_buf);
		esc = esc_buf[0];
		next(p);
	}
	if (p->rc)
		return NONE;

	/* The pattern is the operand after the value. */
	CFX_ASSERT(p->ops_count < p->ops_cap);
	pat = p->ops_count++;
	o = &p->ops[pat];
	*o = (struct operand){ .kind = OPD_STR };
	o->u.s.off = (uint32_t)p->pool_bytes;
	if (normalise_pattern(p, raw, raw_len, esc) != 0) {
		fail(p, CFX_EPARSE, pat_pos,
		     "escape character not followed by '%%', '_' or itself");
		return NONE;
	}
	o->u.s.len = (uint32_t)(p->pool_bytes - o->u.s.off);
	n = new_node(p, N_LIKE, v);
	if (n != NONE)
		p->nodes[n].negated = (uint8_t)negated;
	return n;
}

/* predicate, or a bare TRUE / FALSE. */
static uint32_t parse_predicate(struct parser *p)
{
	enum tok_kind first = p->tok.kind;
	size_t at = p->tok.pos;
	int negated = 0;
	uint32_t v;

	v = parse_value(p, "an expression");
	if (v == NONE)
		return NONE;
	if (is_cmp_token(p->tok.kind))
		return parse_comparison(p, v);
	if (p->tok.kind == T_IS)
		return parse_is(p, v);
	if (p->tok.kind == T_NOT) {
		negated = 1;
		next(p);
		if (p->tok.kind != T_BETWEEN && p->tok.kind != T_IN && p->tok.kind != T_LIKE) {
			fail(p, CFX_EPARSE, p->tok.pos, "expected BETWEEN, IN or LIKE");
			return NONE;
		}
	}
	switch (p->tok.kind) {
	case T_BETWEEN:
		return parse_between(p, v, negated);
	case T_IN:
		return parse_in(p, v, negated);
	case T_LIKE:
		if (p->ops[v].kind != OPD_PROP && p->ops[v].kind != OPD_STR) {
			fail(p, CFX_EPARSE, at, "LIKE needs a property or a string on its left");
			return NONE;
		}
		return parse_like(p, v, negated);
	default:
		break;
	}
	if (first == T_TRUE || first == T_FALSE)
		return new_node(p, N_CONST, v);
	fail(p, CFX_EPARSE, p->tok.pos, "expected an operator");
	return NONE;
}

/* '(' expr ')' | predicate */
static uint32_t parse_primary(struct parser *p)
{
	uint32_t n;

	if (p->tok.kind != T_LPAREN)
		return parse_predicate(p);
	if (++p->depth > CFX_SQL_DEPTH_MAX) {
		fail(p, CFX_E2BIG, p->tok.pos, "nested deeper than %u levels", CFX_SQL_DEPTH_MAX);
		return NONE;
	}
	next(p);
	n = parse_or(p);
	if (n == NONE)
		return NONE;
	if (p->tok.kind != T_RPAREN) {
		fail(p, CFX_EPARSE, p->tok.pos, "expected ')'");
		return NONE;
	}
	next(p);
	p->depth--;
	return n;
}

/* NOT not_expr | primary */
static uint32_t parse_not(struct parser *p)
{
	uint32_t child;

	if (p->tok.kind != T_NOT)
		return parse_primary(p);
	if (++p->depth > CFX_SQL_DEPTH_MAX) {
		fail(p, CFX_E2BIG, p->tok.pos, "nested deeper than %u levels", CFX_SQL_DEPTH_MAX);
		return NONE;
	}
	next(p);
	child = parse_not(p);
	if (child == NONE)
		return NONE;
	p->depth--;
	return new_node(p, N_NOT, child);
}

/*
 * One n-ary level: sub { op sub }, where op is AND (sub = parse_not) or OR
 * (sub = parse_and). A single operand is returned as it is.
 */
static uint32_t parse_chain(struct parser *p, enum tok_kind op, enum node_kind kind,
			    uint32_t (*sub)(struct parser *))
{
	uint32_t first, last, n;

	first = sub(p);
	if (first == NONE || p->tok.kind != op)
		return first;
	n = new_node(p, kind, first);
	if (n == NONE)
		return NONE;
	last = first;
	while (p->tok.kind == op) {
		uint32_t c;

		next(p);
		c = sub(p);
		if (c == NONE)
			return NONE;
		p->nodes[last].next = c;
		last = c;
	}
	return n;
}

static uint32_t parse_and(struct parser *p)
{
	return parse_chain(p, T_AND, N_AND, parse_not);
}

static uint32_t parse_or(struct parser *p)
{
	return parse_chain(p, T_OR, N_OR, parse_and);
}

int cfx_sql_compile(const char *text, size_t len, struct cfx_sql_filter **out, char *err,
		    size_t err_len)
{
	struct parser p = {
		.s = (const uint8_t *)text, .len = len, .err = err, .err_len = err_len
	};
	struct cfx_sql_filter *f = NULL;
	size_t hdr, ops_bytes, nodes_bytes;
	uint8_t *block;
	uint32_t root;

	CFX_ASSERT(out != NULL);
	CFX_ASSERT(text != NULL || len == 0);
	*out = NULL;
	if (err && err_len)
		err[0] = '\0';
	if (len > CFX_SQL_TEXT_BYTES_MAX) {
		fail(&p, CFX_E2BIG, CFX_SQL_TEXT_BYTES_MAX, "expression longer than %u bytes",
		     CFX_SQL_TEXT_BYTES_MAX);
		return p.rc;
	}

	/*
	 * Scratch, bounded by the length just checked: a node or an operand
	 * takes at least one token and a token at least one byte; the pool
	 * takes at most two bytes per byte of text (a LIKE pattern's '\').
	 */
	p.nodes_cap = (uint32_t)CFX_MIN((size_t)CFX_SQL_NODES_MAX, len + 1);
	p.nodes = cfx_malloc(p.nodes_cap * sizeof *p.nodes);
	p.ops_cap = (uint32_t)len + 1;
	p.ops = cfx_malloc(p.ops_cap * sizeof *p.ops);
	p.pool_cap = 2 * len + 1;
	p.pool = cfx_malloc(p.pool_cap);

	next(&p);
	root = parse_or(&p);
	if (!p.rc && p.tok.kind != T_END)
		fail(&p, CFX_EPARSE, p.tok.pos, "expected AND, OR or the end");
	if (p.rc)
		goto out;
	CFX_ASSERT(root != NONE && p.depth == 0);

	/* One block: header, ops[], nodes[], pool[] (each array keeps its alignment). */
	hdr = CFX_ALIGN_UP(sizeof *f, (size_t)8);
	ops_bytes = (size_t)p.ops_count * sizeof *p.ops;
	nodes_bytes = (size_t)p.node_count * sizeof *p.nodes;
	block = cfx_malloc(hdr + ops_bytes + nodes_bytes + p.pool_bytes);
	f = (struct cfx_sql_filter *)(void *)block;
	f->root = root;
	f->ops_count = p.ops_count;
	f->node_count = p.node_count;
	f->pool_bytes = (uint32_t)p.pool_bytes;
	f->ops = (const struct operand *)(void *)(block + hdr);
	f->nodes = (const struct node *)(void *)(block + hdr + ops_bytes);
	f->pool = block + hdr + ops_bytes + nodes_bytes;
	if (ops_bytes)
		memcpy(block + hdr, p.ops, ops_bytes);
	memcpy(block + hdr + ops_bytes, p.nodes, nodes_bytes);
	if (p.pool_bytes)
		memcpy(block + hdr + ops_bytes + nodes_bytes, p.pool, p.pool_bytes);
	*out = f;
out:
	cfx_free(p.nodes);
	cfx_free(p.ops);
	cfx_free(p.pool);
	return p.rc;
}

void cfx_sql_free(struct cfx_sql_filter *f)
{
	cfx_free(f);
}

/* ------------------------------------------------------------------------
 * Evaluator
 * ------------------------------------------------------------------------ */

/* Truth values of three-valued logic. */
enum { TV_FALSE = 0, TV_TRUE = 1, TV_UNKNOWN = 2 };

static int tv_not(int t)
{
	return t == TV_UNKNOWN ? TV_UNKNOWN : !t;
}

/* An operand's value for one message. */
struct val {
	enum { V_NULL, V_STR, V_NUM, V_BOOL } kind;
	struct cfx_view s; /* V_STR */
	struct num num;	   /* V_NUM; V_STR once converted */
	int num_state;	   /* V_STR: 0 not tried yet, 1 converted, -1 not a number */
	int b;		   /* V_BOOL */
};

static struct cfx_view pool_view(const struct cfx_sql_filter *f, const struct operand *o)
{
	return (struct cfx_view){ f->pool + o->u.s.off, o->u.s.len };
}

static void load(const struct cfx_sql_filter *f, uint32_t oi, cfx_sql_get_fn get, void *arg,
		 struct val *v)
{
	const struct operand *o = &f->ops[oi];

	*v = (struct val){ .kind = V_NULL };
	switch (o->kind) {
	case OPD_PROP:
		v->s = get(arg, pool_view(f, o));
		if (v->s.p != NULL)
			v->kind = V_STR;
		break;
	case OPD_STR:
		v->kind = V_STR;
		v->s = pool_view(f, o);
		break;
	case OPD_INT:
		v->kind = V_NUM;
		v->num = (struct num){ .is_int = 1, .i = o->u.i };
		break;
	case OPD_DBL:
		v->kind = V_NUM;
		v->num = (struct num){ .is_int = 0, .d = o->u.d };
		break;
	case OPD_BOOL:
		v->kind = V_BOOL;
		v->b = o->u.b;
		break;
	default:
		break;
	}
}

/* The value as a number, converting (once) a string; NULL if it is not one. */
static const struct num *as_num(struct val *v)
{
	if (v->kind == V_NUM)
		return &v->num;
	if (v->kind != V_STR)
		return NULL;
	if (v->num_state == 0)
		v->num_state = value_to_num(v->s, &v->num) == 0 ? 1 : -1;
	return v->num_state > 0 ? &v->num : NULL;
}

static int bytes_cmp(struct cfx_view a, struct cfx_view b)
{
	size_t n = CFX_MIN(a.len, b.len);
	int c = n ? memcmp(a.p, b.p, n) : 0;

	if (c)
		return c < 0 ? -1 : 1;
	return a.len < b.len ? -1 : a.len > b.len;
}

static int apply_cmp(enum cmp_op op, int c)
{
	switch (op) {
	case CMP_EQ:
		return c == 0;
	case CMP_NE:
		return c != 0;
	case CMP_LT:
		return c < 0;
	case CMP_LE:
		return c <= 0;
	case CMP_GT:
		return c > 0;
	default:
		return c >= 0;
	}
}

/* a op b, by the rules of sqlfilter.h. */
static int compare(struct val *a, struct val *b, enum cmp_op op)
{
	const struct num *x, *y;
	int c;

	if (a->kind == V_NULL || b->kind == V_NULL)
		return TV_UNKNOWN;
	if (a->kind == V_BOOL || b->kind == V_BOOL) {
		int eq;

		/* The parser lets booleans meet = and <> only. */
		CFX_ASSERT(op == CMP_EQ || op == CMP_NE);
		if (a->kind == V_BOOL && b->kind == V_BOOL)
			eq = a->b == b->b;
		else if (a->kind == V_STR)
			eq = eq_nocase(a->s.p, a->s.len, b->b ? "true" : "false");
		else if (b->kind == V_STR)
			eq = eq_nocase(b->s.p, b->s.len, a->b ? "true" : "false");
		else
			return TV_FALSE; /* a boolean and a number */
		return (op == CMP_EQ) == eq ? TV_TRUE : TV_FALSE;
	}
	if (a->kind == V_NUM || b->kind == V_NUM) {
		x = as_num(a);
		y = as_num(b);
		if (!x || !y)
			return TV_FALSE;
		c = num_cmp(x, y);
	} else {
		c = bytes_cmp(a->s, b->s);
	}
	return apply_cmp(op, c) ? TV_TRUE : TV_FALSE;
}

/* Bytes in the character that starts at s[i] (see sqlfilter.h: a UTF-8 sequence or one byte). */
static size_t char_len(const uint8_t *s, size_t n, size_t i)
{
	uint8_t c = s[i];
	size_t want = 1, j;

	if (c >= 0xc0 && c <= 0xdf)
		want = 2;
	else if (c >= 0xe0 && c <= 0xef)
		want = 3;
	else if (c >= 0xf0 && c <= 0xf7)
		want = 4;
	for (j = i + 1; j < n && j < i + want && (s[j] & 0xc0) == 0x80; j++)
		;
	return j - i;
}

/*
 * Matches the whole of t against a normalised pattern pat (normalise_pattern).
 * On a mismatch the text goes back to just after where the last '%' began,
 * one character further, and the pattern to just after that '%': a later
 * '%' can absorb anything an earlier one could, so only the last one ever
 * needs retrying, and the work is at most len(t) x len(pat).
 */
static int like_match(struct cfx_view pat, struct cfx_view t)
{
	size_t pi = 0, ti = 0, star_p = SIZE_MAX, star_t = 0;

	for (;;) {
		if (pi < pat.len) {
			uint8_t c = pat.p[pi];

			if (c == '%') {
				star_p = ++pi;
				star_t = ti;
				if (pi == pat.len)
					return 1; /* a final '%' takes the rest */
				continue;
			}
			if (ti < t.len) {
				if (c == '_') {
					ti += char_len(t.p, t.len, ti);
					pi++;
					continue;
				}
				if (c == '\\') {
					CFX_ASSERT(pi + 1 < pat.len);
					c = pat.p[pi + 1];
				}
				if (t.p[ti] == c) {
					ti++;
					pi += pat.p[pi] == '\\' ? 2 : 1;
					continue;
				}
			}
		} else if (ti == t.len) {
			return 1;
		}
		/* Mismatch: let the last '%' take one more character, if there is one. */
		if (star_p == SIZE_MAX || star_t >= t.len)
			return 0;
		star_t += char_len(t.p, t.len, star_t);
		ti = star_t;
		pi = star_p;
	}
}

static int eval(const struct cfx_sql_filter *f, uint32_t ni, cfx_sql_get_fn get, void *arg,
		unsigned level)
{
	const struct node *n = &f->nodes[ni];
	struct val v, x, y;
	int r, acc;

	CFX_ASSERT(level <= EVAL_LEVELS_MAX);
	switch (n->kind) {
	case N_CONST:
		return f->ops[n->a].u.b ? TV_TRUE : TV_FALSE;
	case N_AND:
	case N_OR:
		/* AND stops at the first FALSE, OR at the first TRUE; UNKNOWN waits. */
		acc = n->kind == N_AND ? TV_TRUE : TV_FALSE;
		for (uint32_t c = n->a; c != NONE; c = f->nodes[c].next) {
			r = eval(f, c, get, arg, level + 1);
			if (r == TV_UNKNOWN)
				acc = TV_UNKNOWN;
			else if (r == (n->kind == N_AND ? TV_FALSE : TV_TRUE))
				return r;
		}
		return acc;
	case N_NOT:
		return tv_not(eval(f, n->a, get, arg, level + 1));
	case N_CMP:
		load(f, n->a, get, arg, &x);
		load(f, n->a + 1, get, arg, &y);
		return compare(&x, &y, (enum cmp_op)n->cmp);
	case N_BETWEEN:
		load(f, n->a, get, arg, &v);
		load(f, n->a + 1, get, arg, &x);
		r = compare(&v, &x, CMP_GE);
		if (r != TV_FALSE) {
			load(f, n->a + 2, get, arg, &y);
			acc = compare(&v, &y, CMP_LE);
			r = (r == TV_TRUE) ? acc : acc == TV_FALSE ? TV_FALSE : TV_UNKNOWN;
		}
		return n->negated ? tv_not(r) : r;
	case N_IN:
		load(f, n->a, get, arg, &v);
		if (v.kind == V_NULL)
			return TV_UNKNOWN;
		r = TV_FALSE;
		for (uint32_t i = 1; i <= n->n && r != TV_TRUE; i++) {
			load(f, n->a + i, get, arg, &x);
			acc = compare(&v, &x, CMP_EQ);
			if (acc != TV_FALSE)
				r = acc;
		}
		return n->negated ? tv_not(r) : r;
	case N_ISNULL:
		load(f, n->a, get, arg, &v);
		r = v.kind == V_NULL ? TV_TRUE : TV_FALSE;
		return n->negated ? tv_not(r) : r;
	case N_LIKE:
		load(f, n->a, get, arg, &v);
		if (v.kind == V_NULL)
			return TV_UNKNOWN;
		CFX_ASSERT(v.kind == V_STR);
		r = like_match(pool_view(f, &f->ops[n->a + 1]), v.s) ? TV_TRUE : TV_FALSE;
		return n->negated ? tv_not(r) : r;
	default:
		CFX_ASSERT(!"unknown node kind");
		return TV_FALSE;
	}
}

int cfx_sql_match(const struct cfx_sql_filter *f, cfx_sql_get_fn get, void *arg)
{
	CFX_ASSERT(f != NULL && get != NULL);
	return eval(f, f->root, get, arg, 0) == TV_TRUE;
}
