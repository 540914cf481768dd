/*
 * fuzz_cloudevent.c - libFuzzer target for the CloudEvents codec
 * (events/cloudevent.c): the JSON format, the JSON batch format, the HTTP
 * binary mode and the binary bindings' attribute lists.
 *
 * Input:
 * OFFSET | SIZE | FIELD
 *      0 |    1 | ctrl    bits 0-1 FZ_CE_MODE_*, FZ_CE_SMALL, bits 3-4 the binding
 *        |      |         of FZ_CE_MODE_PROPS (enum cfx_ce_binding)
 *      1 |    N | modes STRUCTURED and BATCH: the document;
 *        |      | modes HTTP and PROPS: "Name: value" lines (LF or CRLF), an empty
 *        |      | line, then the body. Lines without ':' are skipped. In PROPS
 *        |      | mode the content type is the value of the line named as the
 *        |      | binding's content-type key ("content-type" for MQTT), and there
 *        |      | is data only if the empty line is there.
 *
 * Beyond "no crash, no out-of-bounds read, no undefined behaviour, no
 * leak":
 *  - a parser returns 0, CFX_EPARSE, CFX_EMSGSIZE or CFX_EBATCHSIZE; a
 *    failure leaves the output empty and a non-empty message;
 *  - an accepted event has valid, unique, canonically ordered names, the
 *    required attributes, values that pass the checks of their types, and
 *    a size within the limit;
 *  - JSON round trip: to_structured, parse again: the same attributes and
 *    types, the same data bytes (JSON data: its compact form), and a
 *    second to_structured gives the same text;
 *  - every binding: emit the attributes, rebuild: the same event (extension
 *    types aside); HTTP also through cfx_ce_parse_http_binary;
 *  - batches: batch_to_json, parse again: the same events.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/common.h"
#include "base/err.h"
#include "events/cloudevent.h"
#include "fuzz_common.h"

#define FZ_CE_MODE_MASK	      0x03u
#define FZ_CE_MODE_STRUCTURED 0u
#define FZ_CE_MODE_BATCH      1u
#define FZ_CE_MODE_HTTP	      2u
#define FZ_CE_MODE_PROPS      3u
#define FZ_CE_SMALL	      0x04u /* small limits, so that they are hit often */
#define FZ_CE_BINDING_SHIFT   3u
#define FZ_CE_CTRL_BYTES      1u

#define FZ_CE_HEADERS_MAX 96u
#define FZ_CE_PROPS_MAX	  (CFX_CE_ATTRS_DEFAULT + 2u)
#define FZ_CE_ERR_BYTES	  256u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void limits(int small, struct cfx_ce_limits *lim)
{
	cfx_ce_limits_default(lim);
	if (small) {
		lim->event_bytes_max = 1024;
		lim->body_bytes_max = 16 * 1024;
		lim->batch_events_max = 4;
		lim->attrs_max = 8;
	}
}

/* ------------------------------------------------------------------------
 * Invariants of one accepted event
 * ------------------------------------------------------------------------ */

static const char *const core_order[] = {"specversion",	    "id",	  "source",  "type",
					 "datacontenttype", "dataschema", "subject", "time"};

/* Index in core_order, or its length for an extension. */
static size_t rank(const char *name)
{
	size_t i;

	for (i = 0; i < CFX_ARRAY_LEN(core_order); i++) {
		if (strcmp(core_order[i], name) == 0)
			break;
	}
	return i;
}

static void check_event(const struct cfx_ce *ce, const struct cfx_ce_limits *lim)
{
	static const char *const required[] = {"specversion", "id", "source", "type"};

	FZ_CHECK(ce->attrs_n >= 4 && ce->attrs_n <= lim->attrs_max);
	FZ_CHECK(cfx_ce_event_bytes(ce) <= lim->event_bytes_max);
	for (size_t i = 0; i < 4; i++)
		FZ_CHECK(strcmp(ce->attrs[i].name, required[i]) == 0);
	FZ_CHECK(strcmp(ce->attrs[0].value, CFX_CE_SPECVERSION) == 0);
	for (size_t i = 0; i < ce->attrs_n; i++) {
		const struct cfx_ce_attr *a = &ce->attrs[i];

		FZ_CHECK(cfx_ce_check_name(a->name, strlen(a->name), NULL) == 0);
		FZ_CHECK(strlen(a->value) == a->value_len);
		if (i > 0) { /* canonical order */
			size_t r0 = rank(ce->attrs[i - 1].name), r1 = rank(a->name);

			FZ_CHECK(r0 < r1 || (r0 == r1 && r0 == CFX_ARRAY_LEN(core_order) &&
					     strcmp(ce->attrs[i - 1].name, a->name) < 0));
		}
		if (strcmp(a->name, "time") == 0)
			FZ_CHECK(cfx_ce_check_time(a->value, a->value_len, NULL) == 0);
		if (strcmp(a->name, "source") == 0)
			FZ_CHECK(cfx_ce_check_uri(a->value, a->value_len, 0, NULL) == 0);
		if (strcmp(a->name, "dataschema") == 0)
			FZ_CHECK(cfx_ce_check_uri(a->value, a->value_len, 1, NULL) == 0);
		if (strcmp(a->name, "datacontenttype") == 0)
			FZ_CHECK(cfx_ce_check_media_type(a->value, a->value_len, NULL) == 0);
		for (size_t j = 0; j < i; j++)
			FZ_CHECK(strcmp(ce->attrs[j].name, a->name) != 0);
	}
	FZ_CHECK(ce->has_data || (ce->data_len == 0 && ce->data_kind == CFX_CE_DATA_NONE));
	fz_touch(ce->data, ce->data_len);
}

static void check_failure(int rc, const char *err)
{
	FZ_CHECK(rc == CFX_EPARSE || rc == CFX_EMSGSIZE || rc == CFX_EBATCHSIZE);
	FZ_CHECK(err[0] != '\0');
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

/* b came back from the JSON format: JSON data may only have become compact. */
static void check_same_after_json(const struct cfx_ce *a, const struct cfx_ce *b)
{
	struct cfx_ce x = *a, y = *b;
	json_t *v;
	char *c;

	x.has_data = y.has_data = false;
	x.data_len = y.data_len = 0;
	FZ_CHECK(cfx_ce_equal(&x, &y, 0));
	FZ_CHECK(a->has_data == b->has_data);
	if (a->data_len == b->data_len && (!a->data_len || !memcmp(a->data, b->data, a->data_len)))
		return;
	v = json_loadb((const char *)a->data, a->data_len,
		       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	FZ_CHECK(v != NULL);
	c = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	FZ_CHECK(c && strlen(c) == b->data_len && memcmp(c, b->data, b->data_len) == 0);
	free(c);
	json_decref(v);
}

/* The limits to read our own output with: its document may be longer. */
static struct cfx_ce_limits relaxed(const struct cfx_ce_limits *lim, size_t doc_len)
{
	struct cfx_ce_limits r = *lim;

	r.body_bytes_max = CFX_MAX(r.body_bytes_max, doc_len);
	return r;
}

struct props {
	struct cfx_ce_header h[FZ_CE_PROPS_MAX + 1];
	char *mem[2 * FZ_CE_PROPS_MAX];
	size_t n;
};

static int collect(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct props *pr = ctx;

	FZ_CHECK(pr->n < FZ_CE_PROPS_MAX);
	FZ_CHECK(strlen(name) == nlen && strlen(value) == vlen);
	pr->mem[2 * pr->n] = cfx_strndup(name, nlen);
	pr->mem[2 * pr->n + 1] = cfx_strndup(value, vlen);
	pr->h[pr->n] =
		(struct cfx_ce_header){pr->mem[2 * pr->n], nlen, pr->mem[2 * pr->n + 1], vlen};
	pr->n++;
	return 0;
}

static void roundtrip_bindings(const struct cfx_ce *ce, const struct cfx_ce_limits *lim)
{
	const struct cfx_ce_attr *ct = cfx_ce_get(ce, "datacontenttype");
	char err[FZ_CE_ERR_BYTES];

	for (int b = CFX_CE_BINDING_HTTP; b <= CFX_CE_BINDING_ROCKETMQ; b++) {
		struct props pr = {.n = 0};
		struct cfx_ce back;
		int rc;

		FZ_CHECK(cfx_ce_emit_attrs(ce, (enum cfx_ce_binding)b, collect, &pr) == 0);
		rc = cfx_ce_from_props((enum cfx_ce_binding)b, pr.h, pr.n, ct ? ct->value : NULL,
				       ct ? ct->value_len : 0, ce->data, ce->data_len, ce->has_data,
				       lim, &back, err, sizeof err);
		if (rc)
			fprintf(stderr, "binding %d: %s\n", b, err);
		FZ_CHECK(rc == 0);
		FZ_CHECK(cfx_ce_equal(ce, &back, CFX_CE_EQ_EXT_AS_STRING));
		cfx_ce_free(&back);
		if (b == CFX_CE_BINDING_HTTP) {
			struct cfx_ce x, y;

			if (ct)
				pr.h[pr.n++] = (struct cfx_ce_header){"content-type", 12, ct->value,
								      ct->value_len};
			rc = cfx_ce_parse_http_binary(pr.h, pr.n, ce->data, ce->data_len, lim,
						      &back, err, sizeof err);
			FZ_CHECK(rc == 0);
			x = *ce, y = back;
			x.has_data = y.has_data = false;
			FZ_CHECK(cfx_ce_equal(&x, &y, CFX_CE_EQ_EXT_AS_STRING));
			FZ_CHECK(back.has_data == (ce->has_data && ce->data_len > 0));
			cfx_ce_free(&back);
			if (ct)
				pr.n--;
		}
		for (size_t i = 0; i < 2 * pr.n; i++)
			cfx_free(pr.mem[i]);
	}
}

static void roundtrip(const struct cfx_ce *ce, const struct cfx_ce_limits *lim)
{
	struct cfx_ce_limits r;
	char err[FZ_CE_ERR_BYTES];
	struct cfx_ce again;
	size_t len, len2;
	char *s, *s2;
	json_t *obj;
	int rc;

	check_event(ce, lim);
	s = cfx_ce_to_structured(ce, &len);
	FZ_CHECK(strlen(s) == len);
	r = relaxed(lim, len);
	rc = cfx_ce_parse_structured((const uint8_t *)s, len, &r, &again, err, sizeof err);
	if (rc)
		fprintf(stderr, "re-parse: %s\n", err);
	FZ_CHECK(rc == 0);
	check_same_after_json(ce, &again);
	s2 = cfx_ce_to_structured(&again, &len2);
	FZ_CHECK(len == len2 && memcmp(s, s2, len) == 0);
	cfx_free(s2);
	cfx_free(s);
	obj = cfx_ce_to_json(&again);
	FZ_CHECK(json_object_size(obj) == again.attrs_n + (again.has_data ? 1u : 0u));
	json_decref(obj);
	roundtrip_bindings(ce, lim);
	cfx_ce_free(&again);
}

static void roundtrip_batch(const struct cfx_ce *ces, size_t n, const struct cfx_ce_limits *lim)
{
	char err[FZ_CE_ERR_BYTES];
	struct cfx_ce_limits r;
	struct cfx_ce *back;
	size_t len, m;
	char *s = cfx_ce_batch_to_json(ces, n, &len);
	int rc;

	r = relaxed(lim, len);
	rc = cfx_ce_parse_batch((const uint8_t *)s, len, &r, &back, &m, err, sizeof err);
	FZ_CHECK(rc == 0 && m == n);
	for (size_t i = 0; i < n; i++)
		check_same_after_json(&ces[i], &back[i]);
	cfx_ce_batch_free(back, m);
	cfx_free(s);
}

/* ------------------------------------------------------------------------
 * The header text of modes HTTP and PROPS
 * ------------------------------------------------------------------------ */

static size_t split_headers(const uint8_t *p, size_t len, struct cfx_ce_header *h,
			    const uint8_t **body, size_t *body_len, int *has_blank)
{
	size_t i = 0, n = 0;

	*body = p + len;
	*body_len = 0;
	*has_blank = 0;
	while (i < len) {
		size_t e = i, le;
		const uint8_t *colon;

		while (e < len && p[e] != '\n')
			e++;
		le = e;
		if (le > i && p[le - 1] == '\r')
			le--;
		if (le == i) {
			*body = p + (e < len ? e + 1 : len);
			*body_len = len - (size_t)(*body - p);
			*has_blank = 1;
			break;
		}
		colon = memchr(p + i, ':', le - i);
		if (colon && n < FZ_CE_HEADERS_MAX) {
			h[n].name = (const char *)p + i;
			h[n].name_len = (size_t)(colon - (p + i));
			h[n].value = (const char *)colon + 1;
			h[n].value_len = le - (size_t)(colon + 1 - p);
			n++;
		}
		i = e + 1;
	}
	return n;
}

/* ------------------------------------------------------------------------
 * The target
 * ------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfx_ce_header h[FZ_CE_HEADERS_MAX];
	char err[FZ_CE_ERR_BYTES] = "";
	struct cfx_ce_limits lim;
	const uint8_t *p, *body;
	size_t len, hn, body_len;
	struct cfx_ce ce;
	int rc, has_blank;
	uint8_t ctrl;

	if (size < FZ_CE_CTRL_BYTES)
		return 0;
	ctrl = data[0];
	p = data + FZ_CE_CTRL_BYTES;
	len = size - FZ_CE_CTRL_BYTES;
	limits(ctrl & FZ_CE_SMALL, &lim);

	switch (ctrl & FZ_CE_MODE_MASK) {
	case FZ_CE_MODE_STRUCTURED:
		(void)cfx_ce_http_mode((const char *)p, CFX_MIN(len, (size_t)64));
		rc = cfx_ce_parse_structured(p, len, &lim, &ce, err, sizeof err);
		break;
	case FZ_CE_MODE_BATCH: {
		struct cfx_ce *ces = NULL;
		size_t n = 0;

		rc = cfx_ce_parse_batch(p, len, &lim, &ces, &n, err, sizeof err);
		if (rc) {
			check_failure(rc, err);
			FZ_CHECK(ces == NULL && n == 0);
			return 0;
		}
		FZ_CHECK(n <= lim.batch_events_max);
		for (size_t i = 0; i < n; i++)
			roundtrip(&ces[i], &lim);
		roundtrip_batch(ces, n, &lim);
		cfx_ce_batch_free(ces, n);
		return 0;
	}
	case FZ_CE_MODE_HTTP:
		hn = split_headers(p, len, h, &body, &body_len, &has_blank);
		rc = cfx_ce_parse_http_binary(h, hn, body, body_len, &lim, &ce, err, sizeof err);
		break;
	default: {
		enum cfx_ce_binding b = (enum cfx_ce_binding)((ctrl >> FZ_CE_BINDING_SHIFT) & 3u);
		const char *key = cfx_ce_content_type_key(b);
		const char *ct = NULL;
		size_t ct_len = 0;

		if (!key)
			key = "content-type";
		hn = split_headers(p, len, h, &body, &body_len, &has_blank);
		for (size_t i = 0; i < hn; i++) {
			if (h[i].name_len == strlen(key) &&
			    strncasecmp(h[i].name, key, h[i].name_len) == 0) {
				ct = h[i].value;
				ct_len = h[i].value_len;
			}
		}
		rc = cfx_ce_from_props(b, h, hn, ct, ct_len, body, body_len, has_blank, &lim, &ce,
				       err, sizeof err);
		break;
	}
	}
	if (rc) {
		check_failure(rc, err);
		FZ_CHECK(ce.attrs_n == 0 && ce.attrs == NULL && ce.data == NULL);
		return 0;
	}
	roundtrip(&ce, &lim);
	roundtrip_batch(&ce, 1, &lim);
	cfx_ce_free(&ce);
	return 0;
}
