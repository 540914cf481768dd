/*
 * pattern_ref.h - a reference evaluator of event patterns, for tests only.
 *
 * Written straight from the rules in src/events/pattern.h, over the raw
 * JSON of the pattern, with none of the compiled set's machinery: no
 * flattening, no hashing, no "$or" expansion, a backtracking wildcard.
 * The property test (test_pattern_prop.c) and the fuzz target
 * (tests/fuzz/fuzz_pattern.c) check the compiled set against it.
 * Include the .c file; nothing here is linked into the product.
 */
#ifndef CFX_TESTS_PATTERN_REF_H
#define CFX_TESTS_PATTERN_REF_H

#include <jansson.h>

/* 1 if the (valid) pattern matches the event, else 0. */
static int ref_match(const json_t *pattern, const json_t *event);

#endif
