/*
 * Unit tests for src/broker/sqlfilter.c: RocketMQ SQL92 filters.
 *
 * Three tables: expressions evaluated against property sets (every
 * operator, precedence, three-valued logic, numeric conversions, LIKE,
 * TAGS, keywords in any case), malformed expressions with the error code
 * and column they must report, and the limits at and just past each bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"
#include "broker/sqlfilter.h"

/* ------------------------------------------------------------------------
 * A property set: "name=value" lines, '\n'-separated. "e=" is an empty
 * value; a name not listed is missing. The tag is the property "TAGS".
 * ------------------------------------------------------------------------ */

struct props {
	const char *text;
	unsigned calls; /* getter calls */
	char names[8][32];
};

static struct cfx_view get_prop(void *arg, struct cfx_view name)
{
	struct props *ps = arg;
	const char *s = ps->text;

	assert_non_null(name.p);
	assert_true(name.len > 0);
	if (ps->calls < 8 && name.len < sizeof ps->names[0]) {
		memcpy(ps->names[ps->calls], name.p, name.len);
		ps->names[ps->calls][name.len] = '\0';
	}
	ps->calls++;
	while (s && *s) {
		const char *eol = strchr(s, '\n'), *eq = strchr(s, '=');
		size_t line = eol ? (size_t)(eol - s) : strlen(s);

		if (eq && eq < s + line && (size_t)(eq - s) == name.len &&
		    memcmp(s, name.p, name.len) == 0)
			return (struct cfx_view){ (const uint8_t *)eq + 1, line - name.len - 1 };
		s = eol ? eol + 1 : NULL;
	}
	return (struct cfx_view){ NULL, 0 };
}

/* Compiles expr (which must compile) and matches it against props. */
static int match_str(const char *expr, const char *props)
{
	struct cfx_sql_filter *f = NULL;
	struct props ps = { .text = props };
	char err[128];
	int rc, m;

	rc = cfx_sql_compile(expr, strlen(expr), &f, err, sizeof err);
	if (rc != 0)
		fail_msg("\"%s\" did not compile: %s (%s)", expr, err, cfx_err_name(rc));
	m = cfx_sql_match(f, get_prop, &ps);
	cfx_sql_free(f);
	return m;
}

/* ------------------------------------------------------------------------
 * Evaluation table
 * ------------------------------------------------------------------------ */

struct eval_case {
	const char *expr;
	const char *props;
	int want;
};

#define P_NUM "a=1\nb=2\nc=3\nf=1.5\nneg=-3\nz=0"
#define P_STR "s=b\nt=hello\ne=\nw=abc\nten=10\nnine=9"

static const struct eval_case eval_cases[] = {
	/* = <> > >= < <= against integers, at and around the boundary */
	{ "a = 1", P_NUM, 1 },
	{ "a = 2", P_NUM, 0 },
	{ "a <> 1", P_NUM, 0 },
	{ "a <> 2", P_NUM, 1 },
	{ "b > 1", P_NUM, 1 },
	{ "b > 2", P_NUM, 0 },
	{ "b >= 2", P_NUM, 1 },
	{ "b >= 3", P_NUM, 0 },
	{ "b < 3", P_NUM, 1 },
	{ "b < 2", P_NUM, 0 },
	{ "b <= 2", P_NUM, 1 },
	{ "b <= 1", P_NUM, 0 },
	{ "1 = a", P_NUM, 1 },
	{ "3 > b", P_NUM, 1 },
	{ "a=1", P_NUM, 1 },
	{ "\ta\n=\r1\f", P_NUM, 1 },

	/* numeric conversion of property values */
	{ "f > 1", P_NUM, 1 },
	{ "f = 1.5", P_NUM, 1 },
	{ "f < 2", P_NUM, 1 },
	{ "f = 15e-1", P_NUM, 1 },
	{ "neg < -2", P_NUM, 1 },
	{ "neg = -3", P_NUM, 1 },
	{ "neg > -3.5", P_NUM, 1 },
	{ "z = 0", P_NUM, 1 },
	{ "z = -0.0", P_NUM, 1 },
	{ "a = 1.0", P_NUM, 1 },
	{ "v = 1", "v=01", 1 },
	{ "v = 1", "v=+1", 1 },
	{ "v = 1000", "v=1e3", 1 },
	{ "v = 1000", "v=1E+3", 1 },
	{ "v = 0.5", "v=.5", 1 },
	{ "v = 2", "v=2.", 1 },
	{ "v = 9223372036854775807", "v=9223372036854775807", 1 },
	{ "v = -9223372036854775808", "v=-9223372036854775808", 1 },
	/* too big for int64: a decimal, 2^63, above INT64_MAX */
	{ "v > 9223372036854775807", "v=9223372036854775808", 1 },
	/* exact comparison of integers with decimals past 2^53 */
	{ "v > 9007199254740992.0", "v=9007199254740993", 1 },
	{ "v = 9007199254740993", "v=9007199254740992.0", 0 },
	{ "v < 9007199254740993", "v=9007199254740992.0", 1 },
	/* values that do not convert: FALSE (not UNKNOWN) whatever the operator */
	{ "w = 1", P_STR, 0 },
	{ "w <> 1", P_STR, 0 },
	{ "w > 1", P_STR, 0 },
	{ "NOT (w = 1)", P_STR, 1 },
	{ "NOT (w <> 1)", P_STR, 1 },
	{ "e = 0", P_STR, 0 },
	{ "v = 1", "v= 1", 0 },
	{ "v = 1", "v=1 ", 0 },
	{ "v = 1", "v=1x", 0 },
	{ "v = 1", "v=0x1", 0 },
	{ "v > 0", "v=inf", 0 },
	{ "v > 0", "v=1e999", 0 },
	{ "v <> 0", "v=nan", 0 },
	{ "v = 1", "v=1e", 0 },
	{ "v = 0", "v=-", 0 },
	{ "v = 0", "v=.", 0 },
	/* a number against text converts the text, a string literal does not */
	{ "ten > 9", P_STR, 1 },
	{ "ten > '9'", P_STR, 0 },
	{ "ten > nine", P_STR, 0 },
	{ "ten < nine", P_STR, 1 },

	/* literals with literals */
	{ "1 = 1.0", "", 1 },
	{ "2 > 1.5", "", 1 },
	{ "-1.5 < -1", "", 1 },
	{ ".5 = 0.5", "", 1 },
	{ "1. = 1", "", 1 },
	{ "1e2 = 100", "", 1 },
	{ "+7 = 7", "", 1 },
	{ "-9223372036854775808 < 0", "", 1 },
	{ "9223372036854775807 > 9223372036854775806", "", 1 },
	{ "9007199254740993 > 9007199254740992.0", "", 1 },
	{ "-9223372036854775808 > -1e19", "", 1 },
	{ "9223372036854775807 < 1e19", "", 1 },
	{ "a > -1e300", P_NUM, 1 },
	{ "'5' = 5", "", 1 },
	{ "'abc' = 'abc'", "", 1 },
	{ "'abc' < 'abd'", "", 1 },
	{ "'x' = 1", "", 0 },

	/* strings: bytes, case-sensitive, shorter first */
	{ "t = 'hello'", P_STR, 1 },
	{ "t = 'Hello'", P_STR, 0 },
	{ "t <> 'Hello'", P_STR, 1 },
	{ "s > 'a'", P_STR, 1 },
	{ "s < 'ba'", P_STR, 1 },
	{ "s >= 'b'", P_STR, 1 },
	{ "s <= 'a'", P_STR, 0 },
	{ "e = ''", P_STR, 1 },
	{ "e < 'a'", P_STR, 1 },
	{ "q = 'it''s'", "q=it's", 1 },
	{ "q = ''''", "q='", 1 },
	{ "q = 'é'", "q=é", 1 },

	/* TRUE and FALSE */
	{ "TRUE", "", 1 },
	{ "FALSE", "", 0 },
	{ "NOT FALSE", "", 1 },
	{ "TRUE = TRUE", "", 1 },
	{ "TRUE <> FALSE", "", 1 },
	{ "TRUE = FALSE", "", 0 },
	{ "TRUE = 1", "", 0 },
	{ "TRUE <> 1", "", 0 },
	{ "NOT (TRUE = 1)", "", 1 },
	{ "v = TRUE", "v=true", 1 },
	{ "v = TRUE", "v=TRUE", 1 },
	{ "v = true", "v=True", 1 },
	{ "v = FALSE", "v=false", 1 },
	{ "v = TRUE", "v=false", 0 },
	{ "v <> TRUE", "v=false", 1 },
	{ "v = TRUE", "v=yes", 0 },
	{ "v <> TRUE", "v=yes", 1 },
	{ "v = TRUE", "v=1", 0 },
	{ "TRUE = v", "v=true", 1 },
	{ "'TRUE' = TRUE", "", 1 },
	{ "x = TRUE", "", 0 },
	{ "NOT (x = TRUE)", "", 0 },
	{ "TRUE AND a = 1", P_NUM, 1 },
	{ "FALSE OR a = 1", P_NUM, 1 },

	/* NULL and missing properties: UNKNOWN, so neither side of a NOT matches */
	{ "x = 1", P_NUM, 0 },
	{ "NOT (x = 1)", P_NUM, 0 },
	{ "x <> 1", P_NUM, 0 },
	{ "NOT (x <> 1)", P_NUM, 0 },
	{ "x > 'a'", P_NUM, 0 },
	{ "x = x", P_NUM, 0 },
	{ "a = NULL", P_NUM, 0 },
	{ "NOT (a = NULL)", P_NUM, 0 },
	{ "NULL = NULL", "", 0 },
	{ "NOT (NULL <> 1)", "", 0 },
	{ "A = 1", P_NUM, 0 }, /* names are case-sensitive */

	/* IS [NOT] NULL: never UNKNOWN */
	{ "x IS NULL", P_NUM, 1 },
	{ "x IS NOT NULL", P_NUM, 0 },
	{ "a IS NULL", P_NUM, 0 },
	{ "a IS NOT NULL", P_NUM, 1 },
	{ "e IS NOT NULL", P_STR, 1 },
	{ "NOT (x IS NULL)", P_NUM, 0 },
	{ "NULL IS NULL", "", 1 },
	{ "1 IS NOT NULL", "", 1 },
	{ "'' IS NULL", "", 0 },
	{ "TRUE IS NOT NULL", "", 1 },

	/* three-valued AND / OR / NOT */
	{ "x = 1 OR a = 1", P_NUM, 1 },
	{ "x = 1 OR a = 2", P_NUM, 0 },
	{ "NOT (x = 1 OR a = 2)", P_NUM, 0 },   /* U OR F = U */
	{ "NOT (x = 1 OR a = 1)", P_NUM, 0 },   /* U OR T = T */
	{ "x = 1 AND a = 1", P_NUM, 0 },
	{ "NOT (x = 1 AND a = 1)", P_NUM, 0 },  /* U AND T = U */
	{ "NOT (x = 1 AND a = 2)", P_NUM, 1 },  /* U AND F = F */
	{ "NOT (a = 2 AND x = 1)", P_NUM, 1 },
	{ "NOT NOT (x = 1)", P_NUM, 0 },
	{ "NOT NOT a = 1", P_NUM, 1 },
	{ "x = 1 OR TRUE", P_NUM, 1 },
	{ "x = 1 AND FALSE OR a = 1", P_NUM, 1 },
	{ "NOT (x = 1 OR y = 1 OR a = 2)", P_NUM, 0 },
	{ "NOT (x = 1 AND y = 1 AND a = 2)", P_NUM, 1 },

	/* precedence: NOT > AND > OR, comparisons tighter still */
	{ "a = 1 OR b = 1 AND c = 1", P_NUM, 1 },
	{ "(a = 1 OR b = 1) AND c = 1", P_NUM, 0 },
	{ "a = 2 AND b = 2 OR c = 3", P_NUM, 1 },
	{ "a = 2 AND (b = 2 OR c = 3)", P_NUM, 0 },
	{ "NOT a = 1 OR b = 2", P_NUM, 1 },
	{ "NOT a = 2 AND b = 2", P_NUM, 1 },
	{ "NOT (a = 2 OR b = 2)", P_NUM, 0 },
	{ "NOT a = 2 OR b = 2 AND c = 4", P_NUM, 1 },
	{ "NOT (a = 2) AND NOT (b = 1) AND NOT (c = 1)", P_NUM, 1 },
	{ "((((a = 1))))", P_NUM, 1 },
	{ "(a = 1) AND ((b = 2) OR (c = 9))", P_NUM, 1 },

	/* BETWEEN: inclusive at both ends */
	{ "c BETWEEN 1 AND 3", P_NUM, 1 },
	{ "c BETWEEN 3 AND 5", P_NUM, 1 },
	{ "c BETWEEN 4 AND 5", P_NUM, 0 },
	{ "c BETWEEN 1 AND 2", P_NUM, 0 },
	{ "c BETWEEN 5 AND 1", P_NUM, 0 },
	{ "c NOT BETWEEN 1 AND 2", P_NUM, 1 },
	{ "c NOT BETWEEN 1 AND 3", P_NUM, 0 },
	{ "f BETWEEN 1.5 AND 1.5", P_NUM, 1 },
	{ "c BETWEEN 2.5 AND 3.5", P_NUM, 1 },
	{ "neg BETWEEN -5 AND -3", P_NUM, 1 },
	{ "s BETWEEN 'a' AND 'c'", P_STR, 1 },
	{ "s BETWEEN 'c' AND 'd'", P_STR, 0 },
	{ "c BETWEEN a AND c", P_NUM, 1 }, /* properties: compared as text */
	{ "c BETWEEN 1 AND 3 AND a = 1", P_NUM, 1 },
	{ "c BETWEEN 1 AND 3 AND a = 2", P_NUM, 0 },
	{ "x BETWEEN 1 AND 5", P_NUM, 0 },
	{ "x NOT BETWEEN 1 AND 5", P_NUM, 0 },
	{ "c BETWEEN x AND 5", P_NUM, 0 },
	{ "NOT (c BETWEEN 4 AND x)", P_NUM, 1 }, /* F AND U = F */
	{ "NOT (c BETWEEN 1 AND x)", P_NUM, 0 }, /* T AND U = U */
	{ "w NOT BETWEEN 1 AND 5", P_STR, 1 },	 /* not a number: both sides FALSE */

	/* IN / NOT IN */
	{ "s IN ('a', 'b')", P_STR, 1 },
	{ "s IN ('a', 'c')", P_STR, 0 },
	{ "s IN ('b')", P_STR, 1 },
	{ "s NOT IN ('a', 'c')", P_STR, 1 },
	{ "s NOT IN ('a', 'b')", P_STR, 0 },
	{ "x IN ('a')", P_STR, 0 },
	{ "x NOT IN ('a')", P_STR, 0 },
	{ "NOT (x IN ('a'))", P_STR, 0 },
	{ "b IN (1, 2, 3)", P_NUM, 1 },
	{ "b IN (1.5, 2.0)", P_NUM, 1 },
	{ "f IN (1, 2)", P_NUM, 0 },
	{ "b IN ('2')", P_NUM, 1 },
	{ "b IN ('02')", P_NUM, 0 },
	{ "w IN (1, 'abc')", P_STR, 1 },
	{ "w NOT IN (1, 2)", P_STR, 1 },
	{ "q IN ('it''s', 'x')", "q=it's", 1 },
	{ "e IN ('')", P_STR, 1 },
	{ "3 IN (1, 2, 3)", "", 1 },
	{ "TRUE IN ('true')", "", 1 },

	/* LIKE */
	{ "t LIKE 'hello'", P_STR, 1 },
	{ "t LIKE 'hell'", P_STR, 0 },
	{ "t LIKE 'h%'", P_STR, 1 },
	{ "t LIKE '%o'", P_STR, 1 },
	{ "t LIKE '%l'", P_STR, 0 },
	{ "t LIKE '%ll%'", P_STR, 1 },
	{ "t LIKE '%xx%'", P_STR, 0 },
	{ "t LIKE 'h%l%o'", P_STR, 1 },
	{ "t LIKE 'h%%o'", P_STR, 1 },
	{ "t LIKE 'hello%'", P_STR, 1 },
	{ "t LIKE '%hello'", P_STR, 1 },
	{ "t LIKE 'h_llo'", P_STR, 1 },
	{ "t LIKE 'h_lo'", P_STR, 0 },
	{ "t LIKE '_____'", P_STR, 1 },
	{ "t LIKE '____'", P_STR, 0 },
	{ "t LIKE '______'", P_STR, 0 },
	{ "t LIKE '_%_'", P_STR, 1 },
	{ "t LIKE '%'", P_STR, 1 },
	{ "t LIKE ''", P_STR, 0 },
	{ "t LIKE 'HELLO'", P_STR, 0 },
	{ "t NOT LIKE 'h%'", P_STR, 0 },
	{ "t NOT LIKE 'x%'", P_STR, 1 },
	{ "e LIKE ''", P_STR, 1 },
	{ "e LIKE '%'", P_STR, 1 },
	{ "e LIKE '%%'", P_STR, 1 },
	{ "e LIKE '_'", P_STR, 0 },
	{ "x LIKE '%'", P_STR, 0 },
	{ "x NOT LIKE '%'", P_STR, 0 },
	{ "v LIKE '%abd'", "v=abcabcabd", 1 },
	{ "v LIKE 'a%c%d'", "v=abcabcabd", 1 },
	{ "v LIKE '%a_d'", "v=abcabcabd", 1 },
	{ "v LIKE '%a_c'", "v=abcabcabd", 0 },
	{ "v LIKE '%b%b%b%'", "v=abcabcabd", 1 },
	{ "v LIKE '%b%b%b%b%'", "v=abcabcabd", 0 },
	{ "v LIKE 'a.b*c[d]^$'", "v=a.b*c[d]^$", 1 },
	{ "v LIKE 'a.b'", "v=axb", 0 },
	{ "v LIKE 'a\\b'", "v=a\\b", 1 },
	{ "v LIKE 'a\\%'", "v=a\\xyz", 1 },
	{ "v LIKE 'a\\_'", "v=a_", 0 },
	{ "v LIKE 'it''s%'", "v=it's here", 1 },
	{ "v LIKE '50!%' ESCAPE '!'", "v=50%", 1 },
	{ "v LIKE '50!%' ESCAPE '!'", "v=500", 0 },
	{ "v LIKE '%!_%' ESCAPE '!'", "v=a_b", 1 },
	{ "v LIKE '%!_%' ESCAPE '!'", "v=ab", 0 },
	{ "v LIKE 'a!!b' ESCAPE '!'", "v=a!b", 1 },
	{ "v LIKE 'a\\%' ESCAPE '\\'", "v=a%", 1 },
	{ "v LIKE 'a\\%' ESCAPE '\\'", "v=ab", 0 },
	{ "v LIKE '_'", "v=é", 1 },
	{ "v LIKE '__'", "v=é", 0 },
	{ "v LIKE 'a___'", "v=aé€😀", 1 },
	{ "v LIKE '%€_'", "v=aé€😀", 1 },
	{ "v LIKE '_é%'", "v=aé€😀", 1 },
	{ "'abc' LIKE 'a%'", "", 1 },
	{ "'abc' NOT LIKE 'a%'", "", 0 },

	/* keywords in any case */
	{ "a = 1 aNd b = 2 oR c = 9", P_NUM, 1 },
	{ "s nOt In ('a')", P_STR, 1 },
	{ "c bEtWeEn 1 AnD 3", P_NUM, 1 },
	{ "x iS nUlL", P_NUM, 1 },
	{ "a Is NoT null", P_NUM, 1 },
	{ "t like 'h%' escape '!'", P_STR, 1 },
	{ "tRuE", "", 1 },
	{ "not false", "", 1 },
	{ "v = True", "v=true", 1 },

	/* TAGS reads the tag, in any case */
	{ "TAGS = 'TagA'", "TAGS=TagA", 1 },
	{ "tags = 'TagA'", "TAGS=TagA", 1 },
	{ "Tags <> 'TagB'", "TAGS=TagA", 1 },
	{ "TAGS IN ('TagA', 'TagB')", "TAGS=TagA", 1 },
	{ "TAGS LIKE 'Tag%'", "TAGS=TagA", 1 },
	{ "TAGS IS NULL", "a=1", 1 },
	{ "TAGS = 'TagA' AND a = 1", "TAGS=TagA\na=1", 1 },

	/* names with dots, underscores and digits */
	{ "user.id = 7", "user.id=7", 1 },
	{ "_x = 'y'", "_x=y", 1 },
	{ "a1.b_2.c = 'z'", "a1.b_2.c=z", 1 },
	{ "a.b = 1", "a=1", 0 },
};

static void test_eval_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(eval_cases); i++) {
		const struct eval_case *c = &eval_cases[i];
		int got = match_str(c->expr, c->props);

		if (got != c->want)
			fail_msg("row %zu: \"%s\" with {%s} gave %d, expected %d", i, c->expr,
				 c->props, got, c->want);
	}
}

/* ------------------------------------------------------------------------
 * Malformed expressions
 * ------------------------------------------------------------------------ */

struct bad_case {
	const char *expr;
	int rc;
	unsigned column;
	const char *what; /* a part of the message */
};

static const struct bad_case bad_cases[] = {
	{ "", CFX_EPARSE, 1, "expected an expression" },
	{ "   ", CFX_EPARSE, 4, "expected an expression" },
	{ "(a = 1 AND b = 2", CFX_EPARSE, 17, "expected ')'" },
	{ "((a = 1)", CFX_EPARSE, 9, "expected ')'" },
	{ "a = 1)", CFX_EPARSE, 6, "expected AND, OR or the end" },
	{ "a = 1 b = 2", CFX_EPARSE, 7, "expected AND, OR or the end" },
	{ "(a = 1) = TRUE", CFX_EPARSE, 9, "expected AND, OR or the end" },
	{ "a = ", CFX_EPARSE, 5, "expected a value" },
	{ "a == 1", CFX_EPARSE, 4, "expected a value" },
	{ "a = (1)", CFX_EPARSE, 5, "expected a value" },
	{ "a", CFX_EPARSE, 2, "expected an operator" },
	{ "NULL", CFX_EPARSE, 5, "expected an operator" },
	{ "'abc'", CFX_EPARSE, 6, "expected an operator" },
	{ "a 1", CFX_EPARSE, 3, "expected an operator" },
	{ "a-1 = 2", CFX_EPARSE, 2, "expected an operator" },
	{ "()", CFX_EPARSE, 2, "expected an expression" },
	{ "NOT", CFX_EPARSE, 4, "expected an expression" },
	{ "AND a = 1", CFX_EPARSE, 1, "expected an expression" },
	{ "and = 1", CFX_EPARSE, 1, "expected an expression" },
	{ "a = 1 AND", CFX_EPARSE, 10, "expected an expression" },
	{ "a = 1 OR OR b = 1", CFX_EPARSE, 10, "expected an expression" },
	{ "a != 1", CFX_EPARSE, 3, "'!=' is not SQL" },
	{ "a ! 1", CFX_EPARSE, 3, "unexpected character '!'" },
	{ "a # 1", CFX_EPARSE, 3, "unexpected character '#'" },
	{ "a = 1 \x01", CFX_EPARSE, 7, "unexpected byte 0x01" },
	{ "a = \"x\"", CFX_EPARSE, 5, "unexpected character '\"'" },
	{ "\xc3\xa9 = 1", CFX_EPARSE, 1, "unexpected byte 0xc3" },
	{ "- 1 = a", CFX_EPARSE, 1, "unexpected character '-'" },
	{ "a = .", CFX_EPARSE, 5, "unexpected character '.'" },
	{ "a = 'abc", CFX_EPARSE, 5, "unterminated string" },
	{ "a = 'it''", CFX_EPARSE, 5, "unterminated string" },
	{ "a = '", CFX_EPARSE, 5, "unterminated string" },
	{ "a = 9223372036854775808", CFX_EPARSE, 5, "integer out of range" },
	{ "a = -9223372036854775809", CFX_EPARSE, 5, "integer out of range" },
	{ "a = 99999999999999999999999", CFX_EPARSE, 5, "integer out of range" },
	{ "a = 1e999", CFX_EPARSE, 5, "number out of range" },
	{ "a = -1e999", CFX_EPARSE, 5, "number out of range" },
	{ "a = 12abc", CFX_EPARSE, 5, "malformed number" },
	{ "a = 1.2.3", CFX_EPARSE, 5, "malformed number" },
	{ "a = 1e", CFX_EPARSE, 5, "malformed number" },
	{ "a = 1_0", CFX_EPARSE, 5, "malformed number" },
	{ "a BETWEEN 1 5", CFX_EPARSE, 13, "expected AND" },
	{ "a BETWEEN 1 OR 5", CFX_EPARSE, 13, "expected AND" },
	{ "a BETWEEN AND 5", CFX_EPARSE, 11, "expected a value" },
	{ "a BETWEEN 1 AND", CFX_EPARSE, 16, "expected a value" },
	{ "a IN 'x'", CFX_EPARSE, 6, "expected '('" },
	{ "a IN ()", CFX_EPARSE, 7, "expected a string or a number" },
	{ "a IN ('x' 'y')", CFX_EPARSE, 11, "expected ',' or ')'" },
	{ "a IN ('x',)", CFX_EPARSE, 11, "expected a string or a number" },
	{ "a IN ('x'", CFX_EPARSE, 10, "expected ',' or ')'" },
	{ "a IN (NULL)", CFX_EPARSE, 7, "expected a string or a number" },
	{ "a IN (TRUE)", CFX_EPARSE, 7, "expected a string or a number" },
	{ "a IN (b)", CFX_EPARSE, 7, "expected a string or a number" },
	{ "a IS 1", CFX_EPARSE, 6, "expected NULL" },
	{ "a IS NOT 1", CFX_EPARSE, 10, "expected NULL" },
	{ "a IS", CFX_EPARSE, 5, "expected NULL" },
	{ "a NOT = 1", CFX_EPARSE, 7, "expected BETWEEN, IN or LIKE" },
	{ "a NOT NULL", CFX_EPARSE, 7, "expected BETWEEN, IN or LIKE" },
	{ "a LIKE b", CFX_EPARSE, 8, "expected a string pattern" },
	{ "a LIKE 1", CFX_EPARSE, 8, "expected a string pattern" },
	{ "1 LIKE 'x'", CFX_EPARSE, 1, "LIKE needs a property or a string" },
	{ "NULL LIKE 'x'", CFX_EPARSE, 1, "LIKE needs a property or a string" },
	{ "a LIKE 'x' ESCAPE 'ab'", CFX_EPARSE, 19, "ESCAPE takes exactly one byte" },
	{ "a LIKE 'x' ESCAPE ''", CFX_EPARSE, 19, "ESCAPE takes exactly one byte" },
	{ "a LIKE 'x' ESCAPE 1", CFX_EPARSE, 19, "expected a string" },
	{ "a LIKE 'x!' ESCAPE '!'", CFX_EPARSE, 8, "escape character" },
	{ "a LIKE 'x' ESCAPE '!' #", CFX_EPARSE, 23, "unexpected character '#'" },
	{ "a LIKE 'x!y' ESCAPE '!'", CFX_EPARSE, 8, "escape character" },
	{ "a > TRUE", CFX_EPARSE, 3, "compare only with = and <>" },
	{ "FALSE <= a", CFX_EPARSE, 7, "compare only with = and <>" },
	{ "TRUE BETWEEN 1 AND 2", CFX_EPARSE, 6, "compare only with = and <>" },
	{ "a BETWEEN 1 AND FALSE", CFX_EPARSE, 3, "compare only with = and <>" },
	{ "TRUE TRUE", CFX_EPARSE, 6, "expected AND, OR or the end" },
};

/* Extracts N from "... at column N"; 0 if the message does not end so. */
static unsigned column_of(const char *msg)
{
	const char *at = strstr(msg, " at column ");
	char *end;
	unsigned long n;

	if (!at)
		return 0;
	n = strtoul(at + strlen(" at column "), &end, 10);
	return *end == '\0' ? (unsigned)n : 0;
}

static void expect_error(const char *expr, size_t len, int rc_want, unsigned col_want,
			 const char *what)
{
	struct cfx_sql_filter *f = (struct cfx_sql_filter *)(uintptr_t)1;
	char err[256];
	int rc;

	memset(err, 'X', sizeof err);
	rc = cfx_sql_compile(expr, len, &f, err, sizeof err);
	if (rc != rc_want || f != NULL || column_of(err) != col_want ||
	    (what && !strstr(err, what)))
		fail_msg("\"%.60s\": got %s \"%s\", expected %s \"%s\" at column %u", expr,
			 cfx_err_name(rc), err, cfx_err_name(rc_want), what ? what : "",
			 col_want);
}

static void test_malformed_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < CFX_ARRAY_LEN(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];

		expect_error(c->expr, strlen(c->expr), c->rc, c->column, c->what);
	}
}

/* ------------------------------------------------------------------------
 * Limits: the largest accepted input and the smallest refused one
 * ------------------------------------------------------------------------ */

/* Returns a new string: `n` copies of `unit` between `head` and `tail`. */
static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
	size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
	char *s = cfx_malloc(hl + ul * n + tl + 1), *w = s;

	memcpy(w, head, hl);
	w += hl;
	for (size_t i = 0; i < n; i++, w += ul)
		memcpy(w, unit, ul);
	memcpy(w, tail, tl + 1);
	return s;
}

static void expect_compiles(const char *expr, const char *props, int want)
{
	struct cfx_sql_filter *f = NULL;
	struct props ps = { .text = props };
	char err[128];
	int rc = cfx_sql_compile(expr, strlen(expr), &f, err, sizeof err);

	if (rc != 0)
		fail_msg("\"%.60s...\" (%zu bytes) did not compile: %s", expr, strlen(expr), err);
	assert_int_equal(cfx_sql_match(f, get_prop, &ps), want);
	cfx_sql_free(f);
}

static void test_limit_text_length(void **state)
{
	char *s;

	(void)state;
	/* Exactly CFX_SQL_TEXT_BYTES_MAX bytes, then one more. */
	s = repeat("a = 1", " ", CFX_SQL_TEXT_BYTES_MAX - 5, "");
	assert_int_equal(strlen(s), CFX_SQL_TEXT_BYTES_MAX);
	expect_compiles(s, "a=1", 1);
	cfx_free(s);
	s = repeat("a = 1", " ", CFX_SQL_TEXT_BYTES_MAX - 4, "");
	expect_error(s, strlen(s), CFX_E2BIG, CFX_SQL_TEXT_BYTES_MAX + 1, "longer than 4096");
	cfx_free(s);
}

static void test_limit_depth(void **state)
{
	char *s, *t;

	(void)state;
	s = repeat("", "(", CFX_SQL_DEPTH_MAX, "a = 1");
	t = repeat(s, ")", CFX_SQL_DEPTH_MAX, "");
	expect_compiles(t, "a=1", 1);
	cfx_free(s);
	cfx_free(t);
	s = repeat("", "(", CFX_SQL_DEPTH_MAX + 1, "a = 1");
	t = repeat(s, ")", CFX_SQL_DEPTH_MAX + 1, "");
	expect_error(t, strlen(t), CFX_E2BIG, CFX_SQL_DEPTH_MAX + 1, "nested deeper than 64");
	cfx_free(s);
	cfx_free(t);

	/* NOT counts too: 64 of them are fine (an even number: TRUE)... */
	s = repeat("", "NOT ", CFX_SQL_DEPTH_MAX, "a = 1");
	expect_compiles(s, "a=1", 1);
	cfx_free(s);
	/* ...65 are not; the 65th NOT is at column 4 * 64 + 1. */
	s = repeat("", "NOT ", CFX_SQL_DEPTH_MAX + 1, "a = 1");
	expect_error(s, strlen(s), CFX_E2BIG, 4 * CFX_SQL_DEPTH_MAX + 1, "nested deeper");
	cfx_free(s);

	/* Mixed, and the deepest evaluation: (NOT (NOT ... (x = 1 OR a = 1 AND b = 2)...)) */
	s = repeat("", "(NOT ", CFX_SQL_DEPTH_MAX / 2, "(x = 1 OR a = 1 AND b = 2 OR c = 4)");
	t = repeat(s, ")", CFX_SQL_DEPTH_MAX / 2, "");
	expect_error(t, strlen(t), CFX_E2BIG, 5 * (CFX_SQL_DEPTH_MAX / 2) + 1, "nested");
	cfx_free(s);
	cfx_free(t);
	s = repeat("", "(NOT ", CFX_SQL_DEPTH_MAX / 2 - 1, "(x = 1 OR a = 1 AND b = 2 OR c = 4)");
	t = repeat(s, ")", CFX_SQL_DEPTH_MAX / 2 - 1, "");
	expect_compiles(t, "a=1\nb=2", 0); /* 31 NOTs of TRUE */
	expect_compiles(t, "a=1\nb=3", 0); /* UNKNOWN through 31 NOTs */
	expect_compiles(t, "a=1\nb=3\nx=2\nc=4", 0);
	expect_compiles(t, "a=1\nb=3\nx=2\nc=5", 1);
	cfx_free(s);
	cfx_free(t);

	/*
	 * The deepest tree: an OR over an AND at the top and inside each of the
	 * 64 parentheses, and the AND must evaluate its last operand every time.
	 */
	s = repeat("a=2 OR a=1 AND ", "(a=2 OR a=1 AND ", CFX_SQL_DEPTH_MAX - 1,
		   "(a=3 OR a=1 AND a=1)");
	t = repeat(s, ")", CFX_SQL_DEPTH_MAX - 1, "");
	expect_compiles(t, "a=1", 1);
	expect_compiles(t, "a=2", 1);
	expect_compiles(t, "a=4", 0);
	cfx_free(s);
	cfx_free(t);
}

static void test_limit_nodes(void **state)
{
	char *s;

	(void)state;
	/* n comparisons under one OR are n + 1 nodes. */
	s = repeat("", "a=2 OR ", CFX_SQL_NODES_MAX - 2, "a=1");
	expect_compiles(s, "a=1", 1);
	expect_compiles(s, "a=3", 0);
	cfx_free(s);
	s = repeat("", "a=2 OR ", CFX_SQL_NODES_MAX - 1, "a=1");
	expect_error(s, strlen(s), CFX_E2BIG, 7 * (CFX_SQL_NODES_MAX - 1) + 4, "more than 512");
	cfx_free(s);
	/* The 513th node can be an operator too: the AND after a full parenthesis. */
	s = repeat("(", "a=2 OR ", CFX_SQL_NODES_MAX - 2, "a=1) AND a=1");
	expect_error(s, strlen(s), CFX_E2BIG, 1 + 7 * (CFX_SQL_NODES_MAX - 2) + 6, "more than 512");
	cfx_free(s);
}

static void test_limit_in_list(void **state)
{
	char *s;

	(void)state;
	s = repeat("a IN (", "'x',", CFX_SQL_IN_ITEMS_MAX - 1, "'y')");
	expect_compiles(s, "a=y", 1);
	expect_compiles(s, "a=z", 0);
	cfx_free(s);
	/* The 257th item starts at column 7 + 4 * 256. */
	s = repeat("a IN (", "'x',", CFX_SQL_IN_ITEMS_MAX, "'y')");
	expect_error(s, strlen(s), CFX_E2BIG, 7 + 4 * CFX_SQL_IN_ITEMS_MAX, "IN list longer");
	cfx_free(s);
}

static void test_limit_string(void **state)
{
	char *s, *v;

	(void)state;
	s = repeat("a = '", "x", CFX_SQL_STRING_BYTES_MAX, "'");
	v = repeat("a=", "x", CFX_SQL_STRING_BYTES_MAX, "");
	expect_compiles(s, v, 1);
	cfx_free(s);
	cfx_free(v);
	/* '' counts as one byte. */
	s = repeat("a = '", "''", CFX_SQL_STRING_BYTES_MAX, "'");
	v = repeat("a=", "'", CFX_SQL_STRING_BYTES_MAX, "");
	expect_compiles(s, v, 1);
	cfx_free(s);
	cfx_free(v);
	s = repeat("a = '", "x", CFX_SQL_STRING_BYTES_MAX + 1, "'");
	expect_error(s, strlen(s), CFX_E2BIG, 5, "string longer than 1024");
	cfx_free(s);
	/* A LIKE pattern of the largest size, all backslashes (twice as long inside). */
	s = repeat("a LIKE '", "\\", CFX_SQL_STRING_BYTES_MAX, "'");
	v = repeat("a=", "\\", CFX_SQL_STRING_BYTES_MAX, "");
	expect_compiles(s, v, 1);
	cfx_free(s);
	cfx_free(v);
}

static void test_limit_name_and_number(void **state)
{
	char *s, *v;

	(void)state;
	s = repeat("", "n", CFX_SQL_NAME_BYTES_MAX, " = 1");
	v = repeat("", "n", CFX_SQL_NAME_BYTES_MAX, "=1");
	expect_compiles(s, v, 1);
	cfx_free(s);
	cfx_free(v);
	s = repeat("", "n", CFX_SQL_NAME_BYTES_MAX + 1, " = 1");
	expect_error(s, strlen(s), CFX_E2BIG, 1, "name longer than 255");
	cfx_free(s);

	/* Numbers: 128 bytes, as a literal and as a value; 129 is too long for either. */
	s = repeat("a = ", "0", CFX_SQL_NUMBER_BYTES_MAX - 1, "7");
	v = repeat("a=", "0", CFX_SQL_NUMBER_BYTES_MAX - 1, "7");
	expect_compiles(s, "a=7", 1);
	expect_compiles("a = 7", v, 1);
	cfx_free(s);
	cfx_free(v);
	s = repeat("a = ", "0", CFX_SQL_NUMBER_BYTES_MAX, "7");
	v = repeat("a=", "0", CFX_SQL_NUMBER_BYTES_MAX, "7");
	expect_error(s, strlen(s), CFX_E2BIG, 5, "number longer than 128");
	expect_compiles("a = 7", v, 0);
	cfx_free(s);
	cfx_free(v);
}

/* A pattern built to backtrack, against a long value: bounded work, correct answer. */
static void test_like_backtracking(void **state)
{
	char *v;

	(void)state;
	v = repeat("v=", "a", 4000, "");
	expect_compiles("v LIKE '%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%b'", v, 0);
	expect_compiles("v LIKE '%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a'", v, 1);
	expect_compiles("v LIKE '%aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab%'", v, 0);
	expect_compiles("v LIKE '%_a'", v, 1);
	cfx_free(v);
}

/* ------------------------------------------------------------------------
 * API details
 * ------------------------------------------------------------------------ */

static void test_api_edges(void **state)
{
	struct cfx_sql_filter *f = NULL;
	struct props ps = { .text = "a=1\nTAGS=T" };
	char err[8];

	(void)state;
	/* The text need not be NUL-terminated: only len bytes are read. */
	assert_int_equal(cfx_sql_compile("a = 1 garbage", 5, &f, NULL, 0), 0);
	assert_int_equal(cfx_sql_match(f, get_prop, &ps), 1);
	cfx_sql_free(f);

	/* NULL text with length 0 is the empty expression. */
	assert_int_equal(cfx_sql_compile(NULL, 0, &f, NULL, 0), CFX_EPARSE);
	assert_null(f);

	/* The message is truncated to the buffer and NUL-terminated. */
	memset(err, 'X', sizeof err);
	assert_int_equal(cfx_sql_compile("(", 1, &f, err, sizeof err), CFX_EPARSE);
	assert_int_equal(strlen(err), sizeof err - 1);
	assert_int_equal(cfx_sql_compile("(", 1, &f, err, 1), CFX_EPARSE);
	assert_string_equal(err, "");

	/* The getter is asked for TAGS under its canonical name, and for names as written. */
	assert_int_equal(cfx_sql_compile("tags = 'T' AND a.b_c = 1", 24, &f, NULL, 0), 0);
	ps.calls = 0;
	assert_int_equal(cfx_sql_match(f, get_prop, &ps), 0);
	assert_int_equal(ps.calls, 2);
	assert_string_equal(ps.names[0], CFX_SQL_TAGS_NAME);
	assert_string_equal(ps.names[1], "a.b_c");
	cfx_sql_free(f);

	/* AND stops at the first FALSE, OR at the first TRUE. */
	assert_int_equal(cfx_sql_compile("a = 2 AND b = 1", 15, &f, NULL, 0), 0);
	ps.calls = 0;
	assert_int_equal(cfx_sql_match(f, get_prop, &ps), 0);
	assert_int_equal(ps.calls, 1);
	cfx_sql_free(f);
	assert_int_equal(cfx_sql_compile("a = 1 OR b = 1", 14, &f, NULL, 0), 0);
	ps.calls = 0;
	assert_int_equal(cfx_sql_match(f, get_prop, &ps), 1);
	assert_int_equal(ps.calls, 1);
	cfx_sql_free(f);

	cfx_sql_free(NULL);
}

/* One filter, several threads matching at once (run under TSan to check). */
struct shared {
	const struct cfx_sql_filter *f;
	int ok;
};

static void *match_many(void *arg)
{
	struct shared *sh = arg;

	sh->ok = 1;
	for (int i = 0; i < 2000; i++) {
		struct props yes = { .text = "TAGS=TagA\nprice=15.5\nregion=eu-west" };
		struct props no = { .text = "TAGS=TagA\nprice=25\nregion=eu-west" };

		if (cfx_sql_match(sh->f, get_prop, &yes) != 1 ||
		    cfx_sql_match(sh->f, get_prop, &no) != 0)
			sh->ok = 0;
	}
	return NULL;
}

static void test_shared_between_threads(void **state)
{
	const char *expr = "TAGS IN ('TagA', 'TagB') AND price BETWEEN 10 AND 20 "
			   "AND region LIKE 'eu-%'";
	struct cfx_sql_filter *f = NULL;
	struct shared sh[4];
	pthread_t th[4];

	(void)state;
	assert_int_equal(cfx_sql_compile(expr, strlen(expr), &f, NULL, 0), 0);
	for (int i = 0; i < 4; i++) {
		sh[i].f = f;
		assert_int_equal(pthread_create(&th[i], NULL, match_many, &sh[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_true(sh[i].ok);
	}
	cfx_sql_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eval_table),
		cmocka_unit_test(test_malformed_table),
		cmocka_unit_test(test_limit_text_length),
		cmocka_unit_test(test_limit_depth),
		cmocka_unit_test(test_limit_nodes),
		cmocka_unit_test(test_limit_in_list),
		cmocka_unit_test(test_limit_string),
		cmocka_unit_test(test_limit_name_and_number),
		cmocka_unit_test(test_like_backtracking),
		cmocka_unit_test(test_api_edges),
		cmocka_unit_test(test_shared_between_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
