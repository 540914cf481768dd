/*
 * Unit tests for src/events/pattern.c: EventBridge event patterns.
 *
 * Every operator positive and negative, arrays in events, "$or", nesting,
 * validation errors (message and code), limits, the compiled set with many
 * rules (add, remove, duplicates, output bounds), explanations, and one set
 * matched from several threads. Patterns and events are written with single
 * quotes for readability (q() turns them into double quotes).
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
#include "events/pattern.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Returns a static copy of s with ' turned into " (two buffers, so two calls can be live). */
static const char *q(const char *s)
{
	static char buf[4][8192];
	static int which;
	char *b = buf[which++ & 3];
	size_t i;

	for (i = 0; s[i] && i + 1 < sizeof buf[0]; i++)
		b[i] = s[i] == '\'' ? '"' : s[i];
	b[i] = '\0';
	return b;
}

static json_t *ev(const char *s)
{
	json_error_t jerr;
	json_t *e = json_loads(q(s), JSON_DECODE_ANY, &jerr);

	if (!e)
		fail_msg("bad test event %s: %s", s, jerr.text);
	return e;
}

/*
 * Matches one pattern against one event three ways: a set with only this
 * rule, a set where it sits among unrelated rules, and explain. All must agree.
 */
static int match1(const char *pattern, const char *event)
{
	const char *p = q(pattern);
	struct cfx_pattern_set *ps = cfx_pattern_set_new(), *big = cfx_pattern_set_new();
	char err[256], why[256];
	uint32_t out[8];
	json_t *e = ev(event);
	size_t n, nb;
	int rc, ex;

	rc = cfx_pattern_set_add(ps, 7, p, strlen(p), err, sizeof err);
	if (rc)
		fail_msg("pattern %s: %s", pattern, err);
	for (uint32_t i = 0; i < 50; i++) {
		char other[128];
		snprintf(other, sizeof other, "{\"source\":[\"other-%u\"],\"zz\":[{\"exists\":true}]}", i);
		assert_int_equal(cfx_pattern_set_add(big, 100 + i, other, strlen(other), NULL, 0), 0);
	}
	assert_int_equal(cfx_pattern_set_add(big, 7, p, strlen(p), NULL, 0), 0);
	n = cfx_pattern_set_match(ps, e, out, 8);
	assert_true(n <= 1);
	if (n)
		assert_int_equal(out[0], 7);
	nb = cfx_pattern_set_match(big, e, out, 8);
	assert_int_equal(nb, n);
	ex = cfx_pattern_explain(p, strlen(p), e, why, sizeof why);
	assert_true(ex == 0 || ex == 1);
	if ((size_t)ex != n)
		fail_msg("set says %zu, explain says %d (%s) for %s on %s", n, ex, why, pattern, event);
	if (ex)
		assert_string_equal(why, "");
	else
		assert_true(why[0] != '\0');
	json_decref(e);
	cfx_pattern_set_free(ps);
	cfx_pattern_set_free(big);
	return (int)n;
}

#define YES(p, e) \
	do { \
		if (match1(p, e) != 1) \
			fail_msg("expected a match: %s on %s", p, e); \
	} while (0)
#define NO(p, e) \
	do { \
		if (match1(p, e) != 0) \
			fail_msg("expected no match: %s on %s", p, e); \
	} while (0)

/* Validation must fail with `code` and a message containing `needle`. */
static void bad(const char *pattern, int code, const char *needle)
{
	const char *p = q(pattern);
	char err[256];
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	int rc = cfx_pattern_validate(p, strlen(p), err, sizeof err);

	if (rc != code)
		fail_msg("%s: rc %d (%s), want %d", pattern, rc, err, code);
	if (!strstr(err, needle))
		fail_msg("%s: message \"%s\" lacks \"%s\"", pattern, err, needle);
	/* Adding fails the same way and leaves the set empty. */
	assert_int_equal(cfx_pattern_set_add(ps, 1, p, strlen(p), err, sizeof err), code);
	assert_int_equal(cfx_pattern_set_count(ps), 0);
	cfx_pattern_set_free(ps);
}

/* ------------------------------------------------------------------------
 * Exact values
 * ------------------------------------------------------------------------ */

static void test_exact_string(void **state)
{
	(void)state;
	YES("{'source':['acs.oss']}", "{'source':'acs.oss'}");
	NO("{'source':['acs.oss']}", "{'source':'acs.os'}");
	NO("{'source':['acs.oss']}", "{'source':'ACS.OSS'}");
	NO("{'source':['acs.oss']}", "{'type':'acs.oss'}");
	YES("{'source':['a','b','c']}", "{'source':'b'}");
	NO("{'source':['a','b','c']}", "{'source':'d'}");
	/* Strings never equal numbers. */
	NO("{'x':['5']}", "{'x':5}");
	NO("{'x':[5]}", "{'x':'5'}");
	YES("{'x':['']}", "{'x':''}");
	NO("{'x':['']}", "{'x':'a'}");
	NO("{'x':['']}", "{}");
}

static void test_exact_number(void **state)
{
	(void)state;
	YES("{'x':[3]}", "{'x':3}");
	YES("{'x':[3]}", "{'x':3.0}");
	YES("{'x':[3.0]}", "{'x':3}");
	YES("{'x':[-0.0]}", "{'x':0}");
	YES("{'x':[1e3]}", "{'x':1000}");
	NO("{'x':[3]}", "{'x':3.5}");
	NO("{'x':[3]}", "{'x':true}");
	YES("{'x':[1, 2.5]}", "{'x':2.5}");
}

static void test_bool_null(void **state)
{
	(void)state;
	YES("{'x':[true]}", "{'x':true}");
	NO("{'x':[true]}", "{'x':false}");
	NO("{'x':[true]}", "{'x':'true'}");
	YES("{'x':[false]}", "{'x':false}");
	NO("{'x':[false]}", "{'x':0}");
	YES("{'x':[null]}", "{'x':null}");
	NO("{'x':[null]}", "{}");
	NO("{'x':[null]}", "{'x':'null'}");
	NO("{'x':[null]}", "{'x':[]}");
}

static void test_nested_and_arrays(void **state)
{
	(void)state;
	YES("{'data':{'order':{'id':['o1']}}}", "{'data':{'order':{'id':'o1'}}}");
	NO("{'data':{'order':{'id':['o1']}}}", "{'data':{'order':'o1'}}");
	NO("{'data':{'order':{'id':['o1']}}}", "{'data':{'id':'o1'}}");
	/* Any element of an array. */
	YES("{'data':{'tags':['b']}}", "{'data':{'tags':['a','b']}}");
	NO("{'data':{'tags':['c']}}", "{'data':{'tags':['a','b']}}");
	YES("{'data':{'tags':['b']}}", "{'data':{'tags':[['a'],['b']]}}");
	/* Arrays of objects on the way. */
	YES("{'data':{'items':{'sku':['k2']}}}", "{'data':{'items':[{'sku':'k1'},{'sku':'k2'}]}}");
	NO("{'data':{'items':{'sku':['k3']}}}", "{'data':{'items':[{'sku':'k1'},{'sku':'k2'}]}}");
	/* An object is not a leaf. */
	NO("{'data':['x']}", "{'data':{'a':'x'}}");
	/* AND across fields, OR within a list. */
	YES("{'source':['s'],'type':['t1','t2']}", "{'source':'s','type':'t2'}");
	NO("{'source':['s'],'type':['t1','t2']}", "{'source':'s','type':'t3'}");
	NO("{'source':['s'],'type':['t1']}", "{'type':'t1'}");
	/* Keys with dots are keys, not paths. */
	YES("{'a.b':['x']}", "{'a.b':'x'}");
	NO("{'a.b':['x']}", "{'a':{'b':'x'}}");
	NO("{'a':{'b':['x']}}", "{'a.b':'x'}");
	/* An event that is not an object. */
	NO("{'a':['x']}", "['x']");
	NO("{'a':['x']}", "'x'");
	YES("{'a':['x']}", "[{'a':'y'},{'a':'x'}]");
}

/* ------------------------------------------------------------------------
 * String operators
 * ------------------------------------------------------------------------ */

static void test_prefix_suffix(void **state)
{
	(void)state;
	YES("{'x':[{'prefix':'us-'}]}", "{'x':'us-east'}");
	YES("{'x':[{'prefix':'us-'}]}", "{'x':'us-'}");
	NO("{'x':[{'prefix':'us-'}]}", "{'x':'eu-west'}");
	NO("{'x':[{'prefix':'us-'}]}", "{'x':'US-east'}");
	NO("{'x':[{'prefix':'us-'}]}", "{'x':'us'}");
	NO("{'x':[{'prefix':'1'}]}", "{'x':12}");
	YES("{'x':[{'prefix':''}]}", "{'x':'anything'}");
	NO("{'x':[{'prefix':''}]}", "{'x':1}");
	YES("{'x':[{'suffix':'.png'}]}", "{'x':'a/b.png'}");
	NO("{'x':[{'suffix':'.png'}]}", "{'x':'a/b.PNG'}");
	NO("{'x':[{'suffix':'.png'}]}", "{'x':'png'}");
	YES("{'x':[{'prefix':{'equals-ignore-case':'US-'}}]}", "{'x':'us-east'}");
	YES("{'x':[{'prefix':{'equals-ignore-case':'us-'}}]}", "{'x':'US-EAST'}");
	NO("{'x':[{'prefix':{'equals-ignore-case':'us-'}}]}", "{'x':'eu-us-'}");
	YES("{'x':[{'suffix':{'equals-ignore-case':'.PNG'}}]}", "{'x':'a.png'}");
	NO("{'x':[{'suffix':{'equals-ignore-case':'.png'}}]}", "{'x':'a.jpg'}");
	/* Several lengths on one field. */
	YES("{'x':[{'prefix':'a'},{'prefix':'abc'},{'prefix':'abcdef'}]}", "{'x':'abcd'}");
	NO("{'x':[{'prefix':'b'},{'prefix':'abd'},{'prefix':'abcdef'}]}", "{'x':'abcd'}");
}

static void test_equals_ignore_case(void **state)
{
	(void)state;
	YES("{'x':[{'equals-ignore-case':'Alice'}]}", "{'x':'aLICE'}");
	NO("{'x':[{'equals-ignore-case':'Alice'}]}", "{'x':'alicia'}");
	NO("{'x':[{'equals-ignore-case':'Alice'}]}", "{'x':'alice '}");
	NO("{'x':[{'equals-ignore-case':'1'}]}", "{'x':1}");
	YES("{'x':[{'equals-ignore-case':''}]}", "{'x':''}");
}

static void test_wildcard(void **state)
{
	(void)state;
	YES("{'x':[{'wildcard':'a*b*'}]}", "{'x':'a1b2'}");
	YES("{'x':[{'wildcard':'a*b*'}]}", "{'x':'ab'}");
	NO("{'x':[{'wildcard':'a*b*'}]}", "{'x':'ba'}");
	YES("{'x':[{'wildcard':'*/lib/*'}]}", "{'x':'/usr/lib/x.so'}");
	NO("{'x':[{'wildcard':'*/lib/*'}]}", "{'x':'/usr/lib64/x.so'}");
	YES("{'x':[{'wildcard':'*.png'}]}", "{'x':'a.png'}");
	NO("{'x':[{'wildcard':'*.png'}]}", "{'x':'a.png.txt'}");
	YES("{'x':[{'wildcard':'*'}]}", "{'x':''}");
	NO("{'x':[{'wildcard':'*'}]}", "{'x':5}");
	YES("{'x':[{'wildcard':'*mid*'}]}", "{'x':'a mid b'}");
	NO("{'x':[{'wildcard':'*mid*'}]}", "{'x':'a mi d'}");
	YES("{'x':[{'wildcard':'exact'}]}", "{'x':'exact'}");
	NO("{'x':[{'wildcard':'exact'}]}", "{'x':'exactly'}");
	/* The pieces may not overlap: "aba" is not "ab*ba". */
	NO("{'x':[{'wildcard':'ab*ba'}]}", "{'x':'aba'}");
	YES("{'x':[{'wildcard':'ab*ba'}]}", "{'x':'abba'}");
	YES("{'x':[{'wildcard':'a*b*c'}]}", "{'x':'abbbc'}");
	NO("{'x':[{'wildcard':'a*c*c'}]}", "{'x':'abc'}");
	/* An escaped star is literal. */
	YES("{'x':[{'wildcard':'a\\\\*b'}]}", "{'x':'a*b'}");
	NO("{'x':[{'wildcard':'a\\\\*b'}]}", "{'x':'axb'}");
	YES("{'x':[{'wildcard':'a\\\\\\\\b'}]}", "{'x':'a\\\\b'}");
}

static void test_anything_but(void **state)
{
	(void)state;
	YES("{'x':[{'anything-but':'a'}]}", "{'x':'b'}");
	NO("{'x':[{'anything-but':'a'}]}", "{'x':'a'}");
	NO("{'x':[{'anything-but':'a'}]}", "{}");
	YES("{'x':[{'anything-but':'a'}]}", "{'x':5}");
	YES("{'x':[{'anything-but':'a'}]}", "{'x':null}");
	YES("{'x':[{'anything-but':['a','b']}]}", "{'x':'c'}");
	NO("{'x':[{'anything-but':['a','b']}]}", "{'x':'b'}");
	NO("{'x':[{'anything-but':[100, 200]}]}", "{'x':100.0}");
	YES("{'x':[{'anything-but':[100, 200]}]}", "{'x':150}");
	YES("{'x':[{'anything-but':[100]}]}", "{'x':'100'}");
	/* Any element not excluded. */
	YES("{'x':[{'anything-but':'a'}]}", "{'x':['a','b']}");
	NO("{'x':[{'anything-but':'a'}]}", "{'x':['a','a']}");
	NO("{'x':[{'anything-but':'a'}]}", "{'x':[]}");
	YES("{'x':[{'anything-but':{'prefix':'tmp-'}}]}", "{'x':'prod-1'}");
	NO("{'x':[{'anything-but':{'prefix':'tmp-'}}]}", "{'x':'tmp-1'}");
	YES("{'x':[{'anything-but':{'prefix':'1'}}]}", "{'x':12}");
	YES("{'x':[{'anything-but':{'suffix':'.log'}}]}", "{'x':'a.txt'}");
	NO("{'x':[{'anything-but':{'suffix':'.log'}}]}", "{'x':'a.log'}");
	YES("{'x':[{'anything-but':{'equals-ignore-case':'ALICE'}}]}", "{'x':'bob'}");
	NO("{'x':[{'anything-but':{'equals-ignore-case':'ALICE'}}]}", "{'x':'alice'}");
	NO("{'x':[{'anything-but':{'equals-ignore-case':['bob','ALICE']}}]}", "{'x':'Bob'}");
	YES("{'x':[{'anything-but':{'equals-ignore-case':['bob','ALICE']}}]}", "{'x':'carol'}");
	/* Two anything-but conditions on one field are independent. */
	YES("{'x':[{'anything-but':'a'},{'anything-but':'b'}]}", "{'x':'a'}");
	NO("{'x':[{'anything-but':'a'}],'y':[{'anything-but':'b'}]}", "{'x':'c','y':'b'}");
}

static void test_numeric(void **state)
{
	(void)state;
	YES("{'x':[{'numeric':['>',0]}]}", "{'x':1}");
	NO("{'x':[{'numeric':['>',0]}]}", "{'x':0}");
	YES("{'x':[{'numeric':['>=',0]}]}", "{'x':0}");
	NO("{'x':[{'numeric':['>=',0]}]}", "{'x':-0.5}");
	YES("{'x':[{'numeric':['<',10]}]}", "{'x':9.99}");
	NO("{'x':[{'numeric':['<',10]}]}", "{'x':10}");
	YES("{'x':[{'numeric':['<=',10]}]}", "{'x':10}");
	YES("{'x':[{'numeric':['=',5]}]}", "{'x':5.0}");
	NO("{'x':[{'numeric':['=',5]}]}", "{'x':5.0001}");
	YES("{'x':[{'numeric':['>',0,'<=',5]}]}", "{'x':5}");
	NO("{'x':[{'numeric':['>',0,'<=',5]}]}", "{'x':0}");
	NO("{'x':[{'numeric':['>',0,'<=',5]}]}", "{'x':6}");
	YES("{'x':[{'numeric':['<=',5,'>',0]}]}", "{'x':3}");
	NO("{'x':[{'numeric':['>',0]}]}", "{'x':'5'}");
	NO("{'x':[{'numeric':['>',0]}]}", "{}");
	YES("{'x':[{'numeric':['>',0]}]}", "{'x':[-1, 3]}");
	/* Overlapping ranges on one field. */
	YES("{'x':[{'numeric':['>',0,'<',10]},{'numeric':['>',5,'<',20]}]}", "{'x':15}");
	NO("{'x':[{'numeric':['>',0,'<',10]},{'numeric':['>',5,'<',20]}]}", "{'x':20}");
	YES("{'data':{'order':{'amount':[{'numeric':['>',100]}]}}}",
	    "{'data':{'order':{'amount':150}}}");
}

static void test_exists(void **state)
{
	(void)state;
	YES("{'x':[{'exists':true}]}", "{'x':'a'}");
	YES("{'x':[{'exists':true}]}", "{'x':null}");
	YES("{'x':[{'exists':true}]}", "{'x':[1]}");
	NO("{'x':[{'exists':true}]}", "{}");
	NO("{'x':[{'exists':true}]}", "{'x':{'y':1}}");
	NO("{'x':[{'exists':true}]}", "{'x':[]}");
	YES("{'x':[{'exists':false}]}", "{}");
	YES("{'x':[{'exists':false}]}", "{'x':{'y':1}}");
	YES("{'x':[{'exists':false}]}", "{'x':[]}");
	NO("{'x':[{'exists':false}]}", "{'x':'a'}");
	NO("{'x':[{'exists':false}]}", "{'x':null}");
	/* Mixed with other conditions and fields. */
	YES("{'x':[{'exists':false},'a'],'y':['b']}", "{'x':'a','y':'b'}");
	YES("{'x':[{'exists':false},'a'],'y':['b']}", "{'y':'b'}");
	NO("{'x':[{'exists':false},'a'],'y':['b']}", "{'x':'c','y':'b'}");
	NO("{'x':[{'exists':false}],'y':['b']}", "{'x':1,'y':'b'}");
	YES("{'x':[{'exists':false},{'exists':true}]}", "{'x':1}");
	YES("{'data':{'err':[{'exists':false}]}}", "{'data':'text'}");
}

static void test_cidr(void **state)
{
	(void)state;
	YES("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.77'}");
	NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.1.77'}");
	NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0'}");
	NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'not an ip'}");
	YES("{'ip':[{'cidr':'10.0.0.5/8'}]}", "{'ip':'10.200.0.1'}");
	YES("{'ip':[{'cidr':'0.0.0.0/0'}]}", "{'ip':'1.2.3.4'}");
	YES("{'ip':[{'cidr':'1.2.3.4'}]}", "{'ip':'1.2.3.4'}");
	NO("{'ip':[{'cidr':'1.2.3.4'}]}", "{'ip':'1.2.3.5'}");
	YES("{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db8:1::1'}");
	NO("{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db9::1'}");
	NO("{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':'::ffff:10.0.0.1'}");
	NO("{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':167772161}");
	YES("{'ip':[{'cidr':'192.168.0.0/16'},{'cidr':'10.0.0.0/8'}]}", "{'ip':'10.1.1.1'}");
}

static void test_or(void **state)
{
	(void)state;
	const char *p = "{'source':['s'],'$or':[{'type':['a']},{'data':{'n':[{'numeric':['>',5]}]}}]}";

	YES(p, "{'source':'s','type':'a'}");
	YES(p, "{'source':'s','type':'b','data':{'n':6}}");
	NO(p, "{'source':'s','type':'b','data':{'n':5}}");
	NO(p, "{'source':'t','type':'a'}");
	/* $or nested in an object, and $or inside $or. */
	YES("{'data':{'$or':[{'a':['1']},{'b':['2']}]}}", "{'data':{'b':'2'}}");
	NO("{'data':{'$or':[{'a':['1']},{'b':['2']}]}}", "{'b':'2'}");
	YES("{'$or':[{'$or':[{'a':['1']},{'b':['2']}]},{'c':['3']}]}", "{'b':'2'}");
	/* Two $or lists at one level are both required. */
	YES("{'$or':[{'a':['1']},{'b':['2']}],'x':{'$or':[{'c':['3']},{'d':['4']}]}}",
	    "{'a':'1','x':{'d':'4'}}");
	NO("{'$or':[{'a':['1']},{'b':['2']}],'x':{'$or':[{'c':['3']},{'d':['4']}]}}",
	   "{'a':'1','x':{'e':'4'}}");
	/* A branch of only exists:false. */
	YES("{'$or':[{'a':[{'exists':false}]},{'b':['2']}]}", "{'b':'3'}");
	NO("{'$or':[{'a':[{'exists':false}]},{'b':['2']}]}", "{'a':1,'b':'3'}");
}

/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------ */

static void test_validation(void **state)
{
	char err[128];
	(void)state;

	bad("[1]", CFX_EPARSE, "pattern must be a JSON object");
	bad("{", CFX_EPARSE, "not JSON");
	bad("{}", CFX_EPARSE, "pattern object is empty");
	bad("{'source':'x'}", CFX_EPARSE, "source: pattern leaf must be an array");
	bad("{'source':[]}", CFX_EPARSE, "source: pattern array is empty");
	bad("{'data':{}}", CFX_EPARSE, "data: pattern object is empty");
	bad("{'data':{'amount':[{'numeric':['>']}]}}", CFX_EPARSE,
	    "data.amount: numeric needs an operator and a number");
	bad("{'a':[{'numeric':['>','5']}]}", CFX_EPARSE, "numeric needs an operator and a number");
	bad("{'a':[{'numeric':['!',5]}]}", CFX_EPARSE, "unknown operator \"!\"");
	bad("{'a':[{'numeric':['>',5,'>',6]}]}", CFX_EPARSE, "two lower bounds");
	bad("{'a':[{'numeric':['<',5,'<=',6]}]}", CFX_EPARSE, "two upper bounds");
	bad("{'a':[{'numeric':['=',5,'<',6]}]}", CFX_EPARSE, "cannot be combined");
	bad("{'a':[{'numeric':['>',5,'<',5]}]}", CFX_EPARSE, "range is empty");
	bad("{'a':[{'numeric':['>',6,'<',5]}]}", CFX_EPARSE, "range is empty");
	bad("{'a':[{'numeric':'>5'}]}", CFX_EPARSE, "numeric needs");
	bad("{'a':[{'prefx':'x'}]}", CFX_EPARSE, "a: unknown operator \"prefx\"");
	bad("{'a':[{'prefix':'x','suffix':'y'}]}", CFX_EPARSE, "exactly one operator");
	bad("{'a':[{}]}", CFX_EPARSE, "exactly one operator");
	bad("{'a':[{'prefix':5}]}", CFX_EPARSE, "prefix needs a string");
	bad("{'a':[{'prefix':{'equals':'x'}}]}", CFX_EPARSE, "prefix takes a string");
	bad("{'a':[{'suffix':['x']}]}", CFX_EPARSE, "suffix needs a string");
	bad("{'a':[{'equals-ignore-case':1}]}", CFX_EPARSE, "equals-ignore-case needs a string");
	bad("{'a':[{'wildcard':'a\\\\b'}]}", CFX_EPARSE, "backslash");
	bad("{'a':[{'wildcard':'a\\\\'}]}", CFX_EPARSE, "backslash");
	bad("{'a':[{'anything-but':[]}]}", CFX_EPARSE, "anything-but list is empty");
	bad("{'a':[{'anything-but':[true]}]}", CFX_EPARSE, "strings or numbers");
	bad("{'a':[{'anything-but':{'wildcard':'x'}}]}", CFX_EPARSE, "anything-but takes");
	bad("{'a':[{'anything-but':null}]}", CFX_EPARSE, "anything-but takes");
	bad("{'a':[{'exists':'yes'}]}", CFX_EPARSE, "exists needs true or false");
	bad("{'a':[{'cidr':'10.0.0.0/33'}]}", CFX_EPARSE, "cidr needs");
	bad("{'a':[{'cidr':'10.0.0/8'}]}", CFX_EPARSE, "cidr needs");
	bad("{'a':[{'cidr':'::/129'}]}", CFX_EPARSE, "cidr needs");
	bad("{'a':[{'cidr':'10.0.0.0/'}]}", CFX_EPARSE, "cidr needs");
	bad("{'a':[['x']]}", CFX_EPARSE, "cannot be an array");
	bad("{'$or':[]}", CFX_EPARSE, "$or needs a non-empty array");
	bad("{'$or':{'a':['x']}}", CFX_EPARSE, "$or needs");
	bad("{'$or':[{'a':['x']},{'b':'y'}]}", CFX_EPARSE, "$or[1].b: pattern leaf must be an array");
	bad("{'$or':[{'a':['x']},5]}", CFX_EPARSE, "$or[1]: pattern must be a JSON object");
	bad("{'':['x']}", CFX_EPARSE, "field name is empty");
	bad("{'a':['x'],'a':['y']}", CFX_EPARSE, "duplicate");

	/* Good ones validate. */
	assert_int_equal(cfx_pattern_validate(q("{'a':['x']}"), 11, err, sizeof err), 0);
	assert_string_equal(err, "");
	/* A NULL or short error buffer is fine. */
	assert_int_equal(cfx_pattern_validate("{}", 2, NULL, 0), CFX_EPARSE);
	assert_int_equal(cfx_pattern_validate("{}", 2, err, 1), CFX_EPARSE);
	assert_string_equal(err, "");
	assert_int_equal(cfx_pattern_validate(NULL, 0, err, sizeof err), CFX_EPARSE);
	/* Not NUL-terminated: only len bytes are read. */
	assert_int_equal(cfx_pattern_validate("{\"a\":[1]}garbage", 9, err, sizeof err), 0);
}

static void test_limits(void **state)
{
	char *p = cfx_malloc(CFX_PATTERN_BYTES_MAX + 64), err[256];
	size_t o;
	(void)state;

	/* Depth: 16 nested objects are fine, 17 are not. */
	for (unsigned depth = 16; depth <= 17; depth++) {
		o = 0;
		for (unsigned i = 0; i < depth; i++)
			o += (size_t)sprintf(p + o, "{\"k\":");
		o += (size_t)sprintf(p + o, "[1]");
		for (unsigned i = 0; i < depth; i++)
			p[o++] = '}';
		assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err),
				 depth == 16 ? 0 : CFX_E2BIG);
	}
	assert_non_null(strstr(err, "too deeply"));

	/* Fields: 256 fine, 257 not. */
	for (unsigned n = 256; n <= 257; n++) {
		o = (size_t)sprintf(p, "{");
		for (unsigned i = 0; i < n; i++)
			o += (size_t)sprintf(p + o, "%s\"f%u\":[1]", i ? "," : "", i);
		o += (size_t)sprintf(p + o, "}");
		assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), n == 256 ? 0 : CFX_E2BIG);
	}
	assert_non_null(strstr(err, "too many fields"));

	/* Conditions. */
	o = (size_t)sprintf(p, "{\"a\":[");
	for (unsigned i = 0; i < CFX_PATTERN_CONDITIONS_MAX + 1; i++)
		o += (size_t)sprintf(p + o, "%s%u", i ? "," : "", i);
	o += (size_t)sprintf(p + o, "]}");
	assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), CFX_E2BIG);
	assert_non_null(strstr(err, "a: too many conditions"));

	/* $or expansion: 2^8 = 256 branches fine, 2^9 not. */
	for (unsigned n = 8; n <= 9; n++) {
		o = (size_t)sprintf(p, "{");
		for (unsigned i = 0; i < n; i++)
			o += (size_t)sprintf(p + o, "%s\"k%u\":{\"$or\":[{\"a\":[1]},{\"b\":[2]}]}",
					     i ? "," : "", i);
		o += (size_t)sprintf(p + o, "}");
		assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), n == 8 ? 0 : CFX_E2BIG);
	}
	assert_non_null(strstr(err, "$or"));

	/* Bytes. */
	memset(p, ' ', CFX_PATTERN_BYTES_MAX + 1);
	memcpy(p, "{\"a\":[1]}", 9);
	assert_int_equal(cfx_pattern_validate(p, CFX_PATTERN_BYTES_MAX, err, sizeof err), 0);
	assert_int_equal(cfx_pattern_validate(p, CFX_PATTERN_BYTES_MAX + 1, err, sizeof err),
			 CFX_E2BIG);

	/* A key of 255 bytes is fine, 256 is not; long strings. */
	o = (size_t)sprintf(p, "{\"%0255d\":[1]}", 0);
	assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), 0);
	o = (size_t)sprintf(p, "{\"%0256d\":[1]}", 0);
	assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), CFX_E2BIG);
	o = (size_t)sprintf(p, "{\"a\":[\"%04097d\"]}", 0);
	assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), CFX_E2BIG);
	o = (size_t)sprintf(p, "{\"a\":[{\"wildcard\":\"%0257d\"}]}", 0);
	assert_int_equal(cfx_pattern_validate(p, o, err, sizeof err), CFX_E2BIG);
	cfx_free(p);
}

/* ------------------------------------------------------------------------
 * The set
 * ------------------------------------------------------------------------ */

static int has(const uint32_t *ids, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

static void test_set_many(void **state)
{
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	uint32_t out[4096];
	char p[256], err[128];
	json_t *e;
	size_t n;
	(void)state;

	/* 3000 rules: exact on source, prefix on type, numeric on data.n, one each per id. */
	for (uint32_t i = 0; i < 1000; i++) {
		snprintf(p, sizeof p, "{\"source\":[\"src-%u\"]}", i);
		assert_int_equal(cfx_pattern_set_add(ps, i, p, strlen(p), err, sizeof err), 0);
		snprintf(p, sizeof p, "{\"type\":[{\"prefix\":\"t.%u.\"}]}", i);
		assert_int_equal(cfx_pattern_set_add(ps, 1000 + i, p, strlen(p), err, sizeof err), 0);
		snprintf(p, sizeof p, "{\"data\":{\"n\":[{\"numeric\":[\">=\",%u,\"<\",%u]}]}}", i,
			 i + 10);
		assert_int_equal(cfx_pattern_set_add(ps, 2000 + i, p, strlen(p), err, sizeof err), 0);
	}
	assert_int_equal(cfx_pattern_set_count(ps), 3000);
	/* Same id twice. */
	assert_int_equal(cfx_pattern_set_add(ps, 5, "{\"a\":[1]}", 9, err, sizeof err), CFX_EEXIST);

	e = ev("{'source':'src-17','type':'t.42.created','data':{'n':500}}");
	n = cfx_pattern_set_match(ps, e, out, CFX_ARRAY_LEN(out));
	assert_int_equal(n, 1 + 1 + 10);
	assert_true(has(out, n, 17));
	assert_true(has(out, n, 1042));
	for (uint32_t i = 491; i <= 500; i++)
		assert_true(has(out, n, 2000 + i));
	/* The output bound: the count is still the total. */
	assert_int_equal(cfx_pattern_set_match(ps, e, out, 3), 12);
	assert_int_equal(cfx_pattern_set_match(ps, e, NULL, 0), 12);

	/* Remove and rematch. */
	assert_int_equal(cfx_pattern_set_remove(ps, 17), 0);
	assert_int_equal(cfx_pattern_set_remove(ps, 17), CFX_ENOENT);
	assert_int_equal(cfx_pattern_set_remove(ps, 2495), 0);
	n = cfx_pattern_set_match(ps, e, out, CFX_ARRAY_LEN(out));
	assert_int_equal(n, 10);
	assert_false(has(out, n, 17));
	assert_false(has(out, n, 2495));
	/* The id can be added again. */
	assert_int_equal(cfx_pattern_set_add(ps, 17, "{\"source\":[\"src-17\"]}", 21, err, sizeof err),
			 0);
	assert_int_equal(cfx_pattern_set_match(ps, e, out, CFX_ARRAY_LEN(out)), 11);
	json_decref(e);
	cfx_pattern_set_free(ps);
}

static void test_set_rule_once(void **state)
{
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	const char *p = q("{'$or':[{'a':['1']},{'b':['2']},{'c':[{'exists':false}]}]}");
	uint32_t out[4];
	json_t *e = ev("{'a':'1','b':'2'}");
	(void)state;

	assert_int_equal(cfx_pattern_set_add(ps, 9, p, strlen(p), NULL, 0), 0);
	/* Three branches match; the rule is reported once. */
	assert_int_equal(cfx_pattern_set_match(ps, e, out, 4), 1);
	assert_int_equal(out[0], 9);
	json_decref(e);
	/* An empty set, a NULL set or event. */
	assert_int_equal(cfx_pattern_set_remove(ps, 9), 0);
	e = ev("{'a':'1'}");
	assert_int_equal(cfx_pattern_set_match(ps, e, out, 4), 0);
	assert_int_equal(cfx_pattern_set_match(NULL, e, out, 4), 0);
	assert_int_equal(cfx_pattern_set_match(ps, NULL, out, 4), 0);
	json_decref(e);
	cfx_pattern_set_free(ps);
	cfx_pattern_set_free(NULL);
}

/* ------------------------------------------------------------------------
 * Explain
 * ------------------------------------------------------------------------ */

static void expect_why(const char *pattern, const char *event, const char *want)
{
	char why[256];
	const char *p = q(pattern);
	json_t *e = ev(event);
	int rc = cfx_pattern_explain(p, strlen(p), e, why, sizeof why);

	json_decref(e);
	if (rc != 0 || strcmp(why, q(want)) != 0)
		fail_msg("%s on %s: rc %d, \"%s\", want \"%s\"", pattern, event, rc, why, q(want));
}

static void test_explain(void **state)
{
	char why[128];
	json_t *e;
	(void)state;

	expect_why("{'data':{'amount':[{'numeric':['>',100]}]}}", "{'data':{'amount':50}}",
		   "data.amount: 50 is not > 100");
	expect_why("{'data':{'amount':[{'numeric':['>',0,'<=',5]}]}}", "{'data':{'amount':6}}",
		   "data.amount: 6 is not > 0 and <= 5");
	expect_why("{'a':[{'numeric':['=',5]}]}", "{'a':6}", "a: 6 is not = 5");
	expect_why("{'a':[{'numeric':['<',5]}]}", "{'a':'x'}", "a: 'x' is not a number");
	expect_why("{'source':['s']}", "{}", "source: field absent");
	expect_why("{'source':['s']}", "{'source':'t'}", "source: 't' is not 's'");
	expect_why("{'a':[{'prefix':'x'}]}", "{'a':'y'}", "a: 'y' does not match {'prefix':'x'}");
	expect_why("{'a':[{'exists':false}]}", "{'a':1}", "a: field present (exists: false)");
	expect_why("{'a':['x','y']}", "{'a':'z'}", "a: 'z' matches none of the 2 conditions");
	expect_why("{'a':['x']}", "{'a':['y','z']}", "a: none of the 2 values matches");
	expect_why("{'d':{'$or':[{'a':['1']},{'b':['2']}]}}", "{'d':{}}",
		   "d: no $or alternative matches (first: d.$or[0].a: field absent)");
	expect_why("{'$or':[{'a':['1']},{'b':['2']}]}", "{}",
		   "no $or alternative matches (first: $or[0].a: field absent)");

	e = ev("{'a':1}");
	assert_int_equal(cfx_pattern_explain("{\"a\":[1]}", 9, e, why, sizeof why), 1);
	assert_string_equal(why, "");
	assert_int_equal(cfx_pattern_explain("{\"a\":1}", 7, e, why, sizeof why), CFX_EPARSE);
	assert_string_equal(why, "a: pattern leaf must be an array");
	assert_int_equal(cfx_pattern_explain("{\"a\":[2]}", 9, e, NULL, 0), 0);
	assert_int_equal(cfx_pattern_explain("{\"a\":[2]}", 9, NULL, why, sizeof why), 0);
	json_decref(e);
}

/* ------------------------------------------------------------------------
 * Threads: one set, many readers
 * ------------------------------------------------------------------------ */

struct reader {
	const struct cfx_pattern_set *ps;
	json_t *e;
	int bad;
};

static void *read_loop(void *arg)
{
	struct reader *r = arg;
	uint32_t out[64];

	for (int i = 0; i < 2000; i++)
		if (cfx_pattern_set_match(r->ps, r->e, out, 64) != 3)
			r->bad++;
	return NULL;
}

static void test_threads(void **state)
{
	struct cfx_pattern_set *ps = cfx_pattern_set_new();
	struct reader rd[4];
	pthread_t th[4];
	json_t *e = ev("{'source':'s','data':{'n':5,'tags':['x','y']}}");
	const char *pats[] = { "{'source':['s']}", "{'data':{'n':[{'numeric':['>',1]}]}}",
			       "{'data':{'tags':[{'anything-but':'x'}]}}", "{'source':['t']}" };
	(void)state;

	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(cfx_pattern_set_add(ps, i, q(pats[i]), strlen(pats[i]), NULL, 0), 0);
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct reader){ ps, e, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, read_loop, &rd[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rd[i].bad, 0);
	}
	json_decref(e);
	cfx_pattern_set_free(ps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_string),
		cmocka_unit_test(test_exact_number),
		cmocka_unit_test(test_bool_null),
		cmocka_unit_test(test_nested_and_arrays),
		cmocka_unit_test(test_prefix_suffix),
		cmocka_unit_test(test_equals_ignore_case),
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_anything_but),
		cmocka_unit_test(test_numeric),
		cmocka_unit_test(test_exists),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_or),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_set_many),
		cmocka_unit_test(test_set_rule_once),
		cmocka_unit_test(test_explain),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
