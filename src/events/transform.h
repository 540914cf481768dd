/*
 * transform.h - EventBridge transforms: what a rule's target receives,
 * computed from the matched event. A pure library (no I/O), like
 * pattern.h; the model is the rocketmq-eventbridge transform (ORIGINAL,
 * CONSTANT, JSONPATH, TEMPLATE) and the AWS input transformer.
 *
 * A transform is created from a JSON description:
 *
 *   {"type": "original"}                    the whole event, compact JSON
 *   {"type": "constant", "value": V}        V: a string is sent as its bytes,
 *                                           any other JSON value as compact JSON
 *   {"type": "jsonpath", "path": "$.data"}  the value at the path, compact JSON
 *                                           (strings quoted); absent: CFX_ENOENT
 *   {"type": "template",
 *    "variables": {"id": "$.id", "amount": "$.data.amount"},
 *    "template": "order ${id}: ${amount}"}
 *
 * Templates. Variables map a name ([A-Za-z0-9_.-], 1..64 bytes) to a
 * JSONPath (events/jsonpath.h); "${name}" in the template is replaced by the
 * variable's value, and every name used must be declared. There is no
 * escape for a literal "${". The template is JSON text when its first
 * non-blank byte is '{' or '['; it must then be valid JSON once its
 * placeholders are substituted (checked at creation). The value rendering:
 *
 *   placeholder                      string value      other value      absent
 *   text template                    its bytes         compact JSON     nothing
 *   JSON template, inside a string   escaped bytes     escaped JSON     nothing
 *   JSON template, elsewhere         quoted JSON       compact JSON     null
 *
 * so "order ${id}" gives `order 42`, and {"id": ${id}, "note": "n=${id}"}
 * gives {"id": "42", "note": "n=42"} for the string "42".
 *
 * Threads: a transform is read-only once created; any thread may apply it.
 */
#ifndef CFX_EVENTS_TRANSFORM_H
#define CFX_EVENTS_TRANSFORM_H

#include <jansson.h>
#include <stddef.h>

#define CFX_TRANSFORM_BYTES_MAX (64u * 1024u)	      /* description text */
#define CFX_TRANSFORM_TEMPLATE_BYTES_MAX (16u * 1024u) /* template string */
#define CFX_TRANSFORM_VARIABLES_MAX 100u	      /* as AWS InputPathsMap */
#define CFX_TRANSFORM_NAME_BYTES_MAX 64u	      /* variable name */
#define CFX_TRANSFORM_OUTPUT_BYTES_MAX (4u << 20)      /* one applied result */

enum cfx_transform_type {
	CFX_TRANSFORM_ORIGINAL,
	CFX_TRANSFORM_CONSTANT,
	CFX_TRANSFORM_JSONPATH,
	CFX_TRANSFORM_TEMPLATE,
};

struct cfx_transform;

/*
 * Creates a transform from its description (`len` bytes of JSON). Returns
 * 0 and *out (free with cfx_transform_free), or CFX_EPARSE / CFX_E2BIG with
 * *out = NULL and a message in err (NUL-terminated when err_len > 0), e.g.
 * `template uses undeclared variable "idd"`.
 */
int cfx_transform_new(const char *json, size_t len, struct cfx_transform **out, char *err,
		      size_t err_len);

/* Frees `tf`; NULL is allowed. */
void cfx_transform_free(struct cfx_transform *tf);

enum cfx_transform_type cfx_transform_type(const struct cfx_transform *tf);

/*
 * Applies `tf` to `event` (borrowed). Returns 0 with *out a new buffer of
 * *out_len bytes plus a terminating NUL (not counted), which the caller
 * frees with cfx_free; or CFX_ENOENT (jsonpath: nothing at the path),
 * CFX_E2BIG (the result would exceed CFX_TRANSFORM_OUTPUT_BYTES_MAX) or
 * CFX_EINVAL (the event cannot be encoded), with *out = NULL.
 * @thread any.
 */
int cfx_transform_apply(const struct cfx_transform *tf, const json_t *event, char **out,
			size_t *out_len);

#endif
