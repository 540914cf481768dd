/*
 * sqlfilter.h - RocketMQ's SQL92 message filters: a parser that compiles a
 * filter expression once, and an evaluator that runs it over the properties
 * of each message before the broker delivers it.
 *
 * The module stands alone: it knows nothing of the broker, the store or any
 * wire format. The caller hands cfx_sql_match a getter that returns the
 * value of a property by name; the message's tag is read through the same
 * getter under the name "TAGS". docs/filters.md is the user's guide, with
 * examples; this header is the contract.
 *
 * What it does not do: CONTAINS / STARTSWITH / ENDSWITH (RocketMQ 5 extras;
 * LIKE covers them), arithmetic, comments, and user-defined functions.
 *
 * Language (keywords case-insensitive, property names case-sensitive):
 *
 *   expr       := and_expr { OR and_expr }
 *   and_expr   := not_expr { AND not_expr }
 *   not_expr   := NOT not_expr | primary
 *   primary    := '(' expr ')' | TRUE | FALSE | predicate
 *   predicate  := value ( cmp_op value
 *                       | [NOT] BETWEEN value AND value
 *                       | [NOT] IN '(' item { ',' item } ')'
 *                       | IS [NOT] NULL
 *                       | [NOT] LIKE string [ ESCAPE string ] )
 *   cmp_op     := '=' | '<>' | '<' | '<=' | '>' | '>='
 *   value      := identifier | TAGS | string | integer | decimal | TRUE | FALSE | NULL
 *   item       := string | integer | decimal
 *   identifier := [A-Za-z_][A-Za-z0-9_.]*        (not a keyword)
 *   string     := "'" { any byte but "'" | "''" } "'"
 *   integer    := [+-]? digit+                    (must fit in int64_t)
 *   decimal    := [+-]? ( digit+ '.' digit* | '.' digit+ ) [ exponent ]
 *               | [+-]? digit+ exponent           exponent := [eE] [+-]? digit+
 *
 * So NOT binds tighter than AND, AND tighter than OR, and comparisons
 * tighter than all three: "NOT a = 1 OR b = 2 AND c = 3" is
 * "(NOT (a = 1)) OR ((b = 2) AND (c = 3))". The AND inside BETWEEN belongs
 * to it. A sign is part of a number only when written right before it
 * ("x > -5"). The left side of LIKE is a property, TAGS or a string; the
 * ESCAPE string is one byte. TRUE and FALSE compare only with = and <>.
 *
 * Semantics: three-valued logic, as in SQL. Every condition is TRUE, FALSE
 * or UNKNOWN; NOT UNKNOWN is UNKNOWN; AND is FALSE if any side is FALSE,
 * else UNKNOWN if any side is UNKNOWN; OR is TRUE if any side is TRUE, else
 * UNKNOWN if any side is UNKNOWN. A message matches only when the whole
 * expression is TRUE.
 *
 *  - A property value is a string of bytes. A missing property (the getter
 *    returns p == NULL) is NULL, like the literal NULL.
 *  - Any comparison, BETWEEN, IN or LIKE with a NULL side is UNKNOWN, so
 *    neither "x = 1" nor "NOT (x = 1)" matches a message without x; only
 *    IS NULL / IS NOT NULL test for absence (and are never UNKNOWN).
 *  - String with string: bytes, lexicographically (memcmp, then length).
 *    This holds for two properties too: "a < b" compares text.
 *  - String with number: the string is converted by the number grammar
 *    above, whole (no spaces; an integer that overflows int64_t becomes a
 *    decimal); a string that does not convert, or converts to an infinite
 *    value, makes the comparison FALSE whatever the operator ("x <> 5" is
 *    FALSE when x is "abc", and "NOT (x = 5)" is TRUE).
 *  - Number with number: by value, exactly, integers with decimals too
 *    ("1 = 1.0" is TRUE; 9007199254740993 > 9007199254740992.0).
 *  - String with TRUE/FALSE (= and <> only): equal when the string is
 *    "true" / "false" in any case. Boolean with boolean: equal when the same.
 *    Boolean with number: FALSE whatever the operator.
 *  - x BETWEEN a AND b is (x >= a AND x <= b); x IN (l1, ..., ln) is
 *    (x = l1 OR ... OR x = ln); the NOT forms negate those (UNKNOWN stays).
 *  - LIKE matches the whole value: '%' any run (also empty), '_' exactly one
 *    character, anything else itself, byte for byte (case-sensitive). A
 *    character is a UTF-8 sequence: a lead byte and the continuation bytes it
 *    announces, as many as follow; any other byte is one character by itself.
 *    With ESCAPE 'c', "c%", "c_" and "cc" stand for '%', '_' and 'c'; c before
 *    anything else is an error.
 *
 * Cost: compiling is linear in the text. Matching is linear in the size of
 * the expression and the values, except LIKE, which takes at most
 * (value length x pattern length) steps, and the pattern is bounded by
 * CFX_SQL_STRING_BYTES_MAX.
 */
#ifndef CFX_BROKER_SQLFILTER_H
#define CFX_BROKER_SQLFILTER_H

#include "base/buf.h"

/* Limits; each is checked before the memory it bounds is used. Going over one is CFX_E2BIG. */
#define CFX_SQL_TEXT_BYTES_MAX	 4096u /* expression text */
#define CFX_SQL_DEPTH_MAX	 64u   /* nesting of '(' and NOT */
#define CFX_SQL_NODES_MAX	 512u  /* conditions plus AND, OR, NOT operators */
#define CFX_SQL_IN_ITEMS_MAX	 256u  /* items of one IN list */
#define CFX_SQL_STRING_BYTES_MAX 1024u /* one string literal, after '' became ' */
#define CFX_SQL_NAME_BYTES_MAX	 255u  /* one property name */
#define CFX_SQL_NUMBER_BYTES_MAX 128u  /* one number (a longer property value is not one) */

/* The name under which cfx_sql_match asks the getter for the message's tag. */
#define CFX_SQL_TAGS_NAME "TAGS"

/* A compiled expression. Immutable: any number of threads may match with it at once. */
struct cfx_sql_filter;

/*
 * The getter: returns a view of the value of property `name`, or a view
 * with p == NULL when the message has no such property (an empty value has
 * p != NULL and len 0). `name` lies in the filter and is valid during the
 * call; the returned bytes must stay valid until cfx_sql_match returns. The
 * tag is asked for as CFX_SQL_TAGS_NAME. It may be called any number of
 * times per match, for the same name too, and must answer alike each time.
 */
typedef struct cfx_view (*cfx_sql_get_fn)(void *arg, struct cfx_view name);

/*
 * Compiles the expression text[0..len) (need not be NUL-terminated; text
 * may be NULL when len is 0). Returns 0 and a new filter in *out (the
 * caller owns it: cfx_sql_free), or, with *out = NULL:
 *   CFX_EPARSE  malformed expression, or an integer that does not fit;
 *   CFX_E2BIG   a limit above was exceeded.
 * On failure a NUL-terminated message naming the 1-based byte column is
 * written to err[0..err_len) (truncated to fit; nothing when err_len is 0),
 * for example "expected ')' at column 17"; column len + 1 is the end.
 * @thread any
 */
int cfx_sql_compile(const char *text, size_t len, struct cfx_sql_filter **out, char *err,
		    size_t err_len);

/*
 * Evaluates `f` against one message whose properties `get` reads (called
 * with `arg`). Returns 1 if the expression is TRUE, 0 if it is FALSE or
 * UNKNOWN. Borrows f until return; allocates nothing. @thread any
 */
int cfx_sql_match(const struct cfx_sql_filter *f, cfx_sql_get_fn get, void *arg);

/* Frees a filter from cfx_sql_compile; NULL is a no-op. No match may still be running with it. */
void cfx_sql_free(struct cfx_sql_filter *f);

#endif
