/*
 * jsonpath.h - the JSONPath subset used by EventBridge transforms: one
 * path to one value, compiled once and evaluated against many events.
 *
 * Grammar (bytes; no spaces anywhere):
 *
 *   path   := '$' { step }
 *   step   := '.' name                 member by name: $.data.id
 *           | '[' quoted ']'           member by any name: $['a b'], $["x.y"]
 *           | '[' index ']'            array element: $.items[0]
 *   name   := 1*( any byte except '.', '[', ']', '\'', '"', '*', '$' and
 *                 ASCII blanks/controls )
 *   quoted := '\'' chars '\'' | '"' chars '"'   ('\\' escapes '\\' or the quote)
 *   index  := [ '-' ] digit+           negative counts from the end: [-1] is the last
 *
 * Not supported (rejected with a message at compile time): wildcards
 * ('*'), recursive descent ('..'), slices, unions, filters ("?(...)").
 *
 * Evaluation returns the one value at the path, or NULL when a member or
 * element is missing or a step meets the wrong type (a name on an array,
 * an index on an object).
 */
#ifndef CFX_EVENTS_JSONPATH_H
#define CFX_EVENTS_JSONPATH_H

#include <jansson.h>
#include <stddef.h>

#define CFX_JSONPATH_BYTES_MAX 1024u /* expression text */
#define CFX_JSONPATH_STEPS_MAX 32u   /* steps after '$' */
#define CFX_JSONPATH_INDEX_MAX 1000000 /* |index| */

struct cfx_jsonpath;

/*
 * Compiles `expr` (`len` bytes, not necessarily NUL-terminated). Returns 0
 * and a new path in *out (free with cfx_jsonpath_free), or CFX_EPARSE /
 * CFX_E2BIG with *out = NULL and a message in err, e.g.
 * "jsonpath at column 7: wildcards are not supported".
 */
int cfx_jsonpath_compile(const char *expr, size_t len, struct cfx_jsonpath **out, char *err,
			 size_t err_len);

/* Frees `jp`; NULL is allowed. */
void cfx_jsonpath_free(struct cfx_jsonpath *jp);

/*
 * Returns the value at the path in `root`, borrowed from it (valid while
 * root lives and is not changed), or NULL. @thread any (jp is read-only).
 */
const json_t *cfx_jsonpath_eval(const struct cfx_jsonpath *jp, const json_t *root);

/* The expression as compiled (NUL-terminated, owned by jp). */
const char *cfx_jsonpath_text(const struct cfx_jsonpath *jp);

#endif
