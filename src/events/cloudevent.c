/*
 * cloudevent.c - the CloudEvents 1.0 codec (cloudevent.h).
 *
 * Sections: messages, text checks (UTF-8, the String type, names, RFC 3339,
 * RFC 3986, RFC 2046, base64), building an event, the JSON format, the
 * binary bindings, encoders, and the rest (compare, free).
 *
 * Every check runs on untrusted bytes and fails softly with a static
 * reason; nothing here asserts on input. Lengths from the input are
 * compared with the limits of struct cfx_ce_limits before any loop over
 * attributes or allocation that depends on them.
 *
 * See docs/design/events-cloudevents.md.
 */
#include "events/cloudevent.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/err.h"

/* ------------------------------------------------------------------------
 * Messages
 *
 * Errors are one line. Names and values quoted in them come from the
 * input, so they are cut short and their unprintable bytes replaced.
 * ------------------------------------------------------------------------ */

#define QUOTE_BYTES_MAX 40u

static void CFX_PRINTF(3, 4) set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* Copies up to QUOTE_BYTES_MAX printable bytes of (s, len) into q. */
static const char *quote(char q[QUOTE_BYTES_MAX + 4], const char *s, size_t len)
{
	size_t i, n = CFX_MIN(len, (size_t)QUOTE_BYTES_MAX);

	for (i = 0; i < n; i++)
		q[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (len > n) {
		memcpy(q + n, "...", 3);
		n += 3;
	}
	q[n] = '\0';
	return q;
}

/* ------------------------------------------------------------------------
 * UTF-8 and the String type
 * ------------------------------------------------------------------------ */

/*
 * Decodes one UTF-8 sequence at p[0..len) into *cp; returns its length, or
 * 0 if it is not well formed (truncated, overlong, a surrogate, above
 * U+10FFFF).
 */
static size_t utf8_next(const uint8_t *p, size_t len, uint32_t *cp)
{
	uint32_t c = p[0], min;
	size_t n, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, c &= 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

static int utf8_is_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;
	uint32_t cp;

	while (i < len) {
		size_t n;

		if (p[i] < 0x80) { /* fast path */
			i++;
			continue;
		}
		n = utf8_next(p + i, len - i, &cp);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

/*
 * The String type: UTF-8 without the control characters U+0000-U+001F and
 * U+007F-U+009F and without Unicode noncharacters.
 */
static int check_string(const char *s, size_t len, const char **why)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_next(p + i, len - i, &cp);

		if (!n) {
			*why = "not valid UTF-8";
			return CFX_EPARSE;
		}
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
			*why = "control characters are not allowed in a String";
			return CFX_EPARSE;
		}
		if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe) {
			*why = "Unicode noncharacters are not allowed in a String";
			return CFX_EPARSE;
		}
		i += n;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Attribute names
 * ------------------------------------------------------------------------ */

int cfx_ce_check_name(const char *s, size_t len, const char **why)
{
	const char *dummy;

	if (!why)
		why = &dummy;
	if (len == 0) {
		*why = "an attribute name must not be empty";
		return CFX_EPARSE;
	}
	if (len > CFX_CE_NAME_BYTES_MAX) {
		*why = "attribute names are limited to 64 characters";
		return CFX_EPARSE;
	}
	for (size_t i = 0; i < len; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9'))) {
			*why = "attribute names are lower-case letters and digits only";
			return CFX_EPARSE;
		}
	}
	if (len == 4 && memcmp(s, "data", 4) == 0) {
		*why = "\"data\" is reserved and cannot be an attribute";
		return CFX_EPARSE;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * RFC 3339 timestamps
 *
 *   date-time = YYYY "-" MM "-" DD ("T" / "t") hh ":" mm ":" ss ["." 1*DIGIT]
 *               ("Z" / "z" / ("+" / "-") hh ":" mm)
 *
 * Second 60 (a leap second) only at 23:59 UTC, after applying the offset.
 * ------------------------------------------------------------------------ */

static int digits(const char *s, size_t n, int *v)
{
	int x = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 1;
}

static int is_leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap_year(y) ? 29 : days[m - 1];
}

int cfx_ce_check_time(const char *s, size_t len, const char **why)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	const char *dummy;
	size_t i;

	if (!why)
		why = &dummy;
	*why = "not an RFC 3339 timestamp (expected YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm))";
	if (len < 19 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
		return CFX_EPARSE;
	i = 19;
	if (i < len && s[i] == '.') {
		size_t f = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f) {
			*why = "not an RFC 3339 timestamp (empty fraction of a second)";
			return CFX_EPARSE;
		}
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		if (len - i < 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
		    !digits(s + i + 4, 2, &om)) {
			*why = "not an RFC 3339 timestamp (offset must be Z or +hh:mm / -hh:mm)";
			return CFX_EPARSE;
		}
		i += 6;
	} else {
		*why = "not an RFC 3339 timestamp (missing time offset)";
		return CFX_EPARSE;
	}
	if (i != len) {
		*why = "not an RFC 3339 timestamp (trailing characters)";
		return CFX_EPARSE;
	}
	if (mo < 1 || mo > 12) {
		*why = "not an RFC 3339 timestamp (month out of range)";
		return CFX_EPARSE;
	}
	if (d < 1 || d > days_in_month(y, mo)) {
		*why = "not an RFC 3339 timestamp (day out of range for the month)";
		return CFX_EPARSE;
	}
	if (h > 23 || mi > 59 || sec > 60) {
		*why = "not an RFC 3339 timestamp (time out of range)";
		return CFX_EPARSE;
	}
	if (oh > 23 || om > 59) {
		*why = "not an RFC 3339 timestamp (offset out of range)";
		return CFX_EPARSE;
	}
	if (sec == 60) {
		int utc = ((h * 60 + mi - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;

		if (utc != 23 * 60 + 59) {
			*why = "not an RFC 3339 timestamp (a leap second is only 23:59:60 UTC)";
			return CFX_EPARSE;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * RFC 3986 URI and URI-reference
 *
 * ASCII only (no IRIs); a scheme, an authority (userinfo, host as
 * reg-name, IPv4 or IP-literal, port), a path, a query, a fragment, each
 * from its own character set, with well-formed percent-encodings. A URI
 * (dataschema) must have a scheme; a fragment is accepted there too.
 * ------------------------------------------------------------------------ */

#define URI_UNRESERVED 0x01u
#define URI_SUBDELIM   0x02u

static unsigned uri_class(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '.' || c == '_' || c == '~')
		return URI_UNRESERVED;
	if (strchr("!$&'()*+,;=", c) && c)
		return URI_SUBDELIM;
	return 0;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Checks s[i..end) against unreserved / sub-delims / pct-encoded / `extra`. */
static int uri_run(const char *s, size_t i, size_t end, const char *extra)
{
	while (i < end) {
		char c = s[i];

		if (c == '%') {
			if (end - i < 3 || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
				return 0;
			i += 3;
			continue;
		}
		if (!uri_class(c) && !strchr(extra, c))
			return 0;
		i++;
	}
	return 1;
}

static int uri_authority(const char *s, size_t i, size_t end)
{
	const char *at = memchr(s + i, '@', end - i);
	size_t host;

	if (at) {
		size_t a = (size_t)(at - s);

		if (!uri_run(s, i, a, ":"))
			return 0;
		i = a + 1;
	}
	host = i;
	if (host < end && s[host] == '[') {
		const char *rb = memchr(s + host, ']', end - host);
		size_t r;

		if (!rb)
			return 0;
		r = (size_t)(rb - s);
		if (r == host + 1)
			return 0;
		for (size_t k = host + 1; k < r; k++) {
			if (!is_hex(s[k]) && s[k] != ':' && s[k] != '.' && !uri_class(s[k]))
				return 0;
		}
		i = r + 1;
		if (i < end && s[i] != ':')
			return 0;
	} else {
		while (i < end && s[i] != ':')
			i++;
		if (!uri_run(s, host, i, ""))
			return 0;
	}
	if (i < end) { /* ":" port */
		for (size_t k = i + 1; k < end; k++) {
			if (s[k] < '0' || s[k] > '9')
				return 0;
		}
	}
	return 1;
}

int cfx_ce_check_uri(const char *s, size_t len, int absolute, const char **why)
{
	size_t i = 0, end, k;
	const char *dummy;

	if (!why)
		why = &dummy;
	if (len == 0) {
		*why = "must not be empty";
		return CFX_EPARSE;
	}
	for (k = 0; k < len; k++) {
		if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] >= 0x7f) {
			*why = absolute
				       ? "not a URI (spaces, controls and non-ASCII must be "
					 "percent-encoded)"
				       : "not a URI-reference (spaces, controls and non-ASCII must "
					 "be percent-encoded)";
			return CFX_EPARSE;
		}
	}
	*why = absolute ? "not a URI (RFC 3986)" : "not a URI-reference (RFC 3986)";
	/* A scheme is there if a ':' comes before any of "/?#". */
	for (k = 0; k < len && !strchr("/?#:", s[k]); k++)
		;
	if (k < len && s[k] == ':') {
		if (k == 0 || !((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z'))
			return CFX_EPARSE;
		for (size_t j = 1; j < k; j++) {
			char c = s[j];

			if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') &&
			    c != '+' && c != '-' && c != '.')
				return CFX_EPARSE;
		}
		i = k + 1;
	} else if (absolute) {
		*why = "not an absolute URI (no scheme)";
		return CFX_EPARSE;
	}
	if (len - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
		i += 2;
		for (end = i; end < len && !strchr("/?#", s[end]); end++)
			;
		if (!uri_authority(s, i, end))
			return CFX_EPARSE;
		i = end;
	}
	for (end = i; end < len && s[end] != '?' && s[end] != '#'; end++)
		;
	if (!uri_run(s, i, end, ":@/"))
		return CFX_EPARSE;
	i = end;
	if (i < len && s[i] == '?') {
		for (end = ++i; end < len && s[end] != '#'; end++)
			;
		if (!uri_run(s, i, end, ":@/?"))
			return CFX_EPARSE;
		i = end;
	}
	if (i < len && s[i] == '#') {
		if (!uri_run(s, i + 1, len, ":@/?"))
			return CFX_EPARSE;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * RFC 2046 media types
 *
 *   type "/" subtype *( OWS ";" OWS attribute "=" ( token / quoted-string ) ) OWS
 *
 * token per RFC 2045 (no spaces, controls or tspecials); OWS as in HTTP.
 * ------------------------------------------------------------------------ */

static int is_token_char(char c)
{
	return (unsigned char)c > 0x20 && (unsigned char)c < 0x7f &&
	       !strchr("()<>@,;:\\\"/[]?=", c);
}

static size_t token_end(const char *s, size_t i, size_t len)
{
	while (i < len && is_token_char(s[i]))
		i++;
	return i;
}

static size_t skip_ows(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i;
}

/* Parses from s[i] a quoted-string; returns the index after it, or 0. */
static size_t quoted_end(const char *s, size_t i, size_t len)
{
	for (i++; i < len; i++) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] == '\\') {
			if (++i == len)
				return 0;
		} else if ((unsigned char)s[i] < 0x20 && s[i] != '\t') {
			return 0;
		} else if (s[i] == 0x7f) {
			return 0;
		}
	}
	return 0;
}

/*
 * Splits a media type: *type_len is the length of "type/subtype" (which
 * starts at s); *params the index of the first ';' (or len). Returns 0 or
 * CFX_EPARSE.
 */
static int media_type_split(const char *s, size_t len, size_t *type_len, size_t *params)
{
	size_t i = token_end(s, 0, len);

	if (i == 0 || i == len || s[i] != '/')
		return CFX_EPARSE;
	i = token_end(s, i + 1, len);
	if (s[i - 1] == '/')
		return CFX_EPARSE;
	*type_len = i;
	i = skip_ows(s, i, len);
	if (i < len && s[i] != ';')
		return CFX_EPARSE;
	*params = i;
	return 0;
}

/*
 * Walks the parameters from s[i] (a ';' or the end). If `charset_ok` is
 * not NULL, sets it to 0 when a charset parameter is not UTF-8.
 */
static int media_params(const char *s, size_t i, size_t len, int *charset_ok)
{
	while (i < len) {
		size_t a, a_end, v;

		if (s[i] != ';')
			return CFX_EPARSE;
		a = skip_ows(s, i + 1, len);
		a_end = token_end(s, a, len);
		if (a_end == a || a_end == len || s[a_end] != '=')
			return CFX_EPARSE;
		v = a_end + 1;
		if (v < len && s[v] == '"') {
			i = quoted_end(s, v, len);
			if (!i)
				return CFX_EPARSE;
		} else {
			i = token_end(s, v, len);
			if (i == v)
				return CFX_EPARSE;
		}
		if (charset_ok && a_end - a == 7 && strncasecmp(s + a, "charset", 7) == 0) {
			size_t vb = v, ve = i;

			if (s[vb] == '"')
				vb++, ve--;
			if (!((ve - vb == 5 && strncasecmp(s + vb, "utf-8", 5) == 0) ||
			      (ve - vb == 4 && strncasecmp(s + vb, "utf8", 4) == 0)))
				*charset_ok = 0;
		}
		i = skip_ows(s, i, len);
	}
	return 0;
}

int cfx_ce_check_media_type(const char *s, size_t len, const char **why)
{
	size_t tl, params;
	const char *dummy;

	if (!why)
		why = &dummy;
	*why = "not an RFC 2046 media type (expected type/subtype[; name=value]...)";
	if (media_type_split(s, len, &tl, &params) || media_params(s, params, len, NULL))
		return CFX_EPARSE;
	/* Whitespace is allowed around ';' only: HTTP would strip it at the ends. */
	if (s[len - 1] == ' ' || s[len - 1] == '\t') {
		*why = "not an RFC 2046 media type (trailing whitespace)";
		return CFX_EPARSE;
	}
	return 0;
}

static int ends_with_ci(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

/* "type/subtype" of a valid media type: JSON (subtype json or *+json)? */
static int media_is_json(const char *s, size_t len)
{
	size_t tl, params;

	if (media_type_split(s, len, &tl, &params))
		return 0;
	return ends_with_ci(s, tl, "/json") || ends_with_ci(s, tl, "+json");
}

/* Textual: type text, subtype xml or *+xml. */
static int media_is_text(const char *s, size_t len)
{
	size_t tl, params;

	if (media_type_split(s, len, &tl, &params))
		return 0;
	return (tl > 5 && strncasecmp(s, "text/", 5) == 0) || ends_with_ci(s, tl, "/xml") ||
	       ends_with_ci(s, tl, "+xml");
}

/* ------------------------------------------------------------------------
 * Base64 (RFC 4648 section 4, strict)
 *
 * The standard alphabet, padded to a multiple of four, no whitespace, no
 * line breaks, and zero pad bits: exactly the strings an encoder writes,
 * so that decode-then-encode gives the input back.
 * ------------------------------------------------------------------------ */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes into a new buffer (*out, *out_len); returns 0 or CFX_EPARSE. */
static int b64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, const char **why)
{
	size_t pad = 0, n, o = 0;
	uint8_t *d;

	if (len % 4) {
		*why = "invalid base64 (length is not a multiple of 4)";
		return CFX_EPARSE;
	}
	if (len && s[len - 1] == '=')
		pad = (len >= 2 && s[len - 2] == '=') ? 2 : 1;
	n = len / 4 * 3 - pad;
	d = cfx_malloc(n ? n : 1);
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int last = i + 4 == len;

		for (int k = 0; k < 4; k++) {
			v[k] = b64_val(s[i + k]);
			if (v[k] < 0 && !(last && s[i + k] == '=' && k >= 4 - (int)pad)) {
				*why = "invalid base64 (a character outside the standard "
				       "alphabet, or misplaced padding)";
				cfx_free(d);
				return CFX_EPARSE;
			}
		}
		d[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (last && pad == 2) {
			if (v[1] & 0x0f)
				goto bits;
			break;
		}
		d[o++] = (uint8_t)((v[1] & 0x0f) << 4 | v[2] >> 2);
		if (last && pad == 1) {
			if (v[2] & 0x03)
				goto bits;
			break;
		}
		d[o++] = (uint8_t)((v[2] & 0x03) << 6 | v[3]);
	}
	CFX_ASSERT(o == n);
	*out = d;
	*out_len = n;
	return 0;
bits:
	*why = "invalid base64 (non-zero pad bits)";
	cfx_free(d);
	return CFX_EPARSE;
}

/* Encodes into a new NUL-terminated string. */
static char *b64_encode(const uint8_t *p, size_t len, size_t *out_len)
{
	size_t n = (len + 2) / 3 * 4, o = 0;
	char *s = cfx_malloc(n + 1);

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		s[o++] = b64_alphabet[v >> 18];
		s[o++] = b64_alphabet[(v >> 12) & 63];
		s[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		s[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	CFX_ASSERT(o == n);
	s[n] = '\0';
	*out_len = n;
	return s;
}

/* ------------------------------------------------------------------------
 * Building an event
 *
 * A parser adds attributes one by one (each checked against its rules
 * as it comes), sets the data, then finishes: required attributes, the
 * canonical order, the size limit.
 * ------------------------------------------------------------------------ */

/* The core attributes, in canonical order, with their types. */
static const struct {
	const char *name;
	enum cfx_ce_type type;
} core[] = {
	{"specversion", CFX_CE_STRING},	    {"id", CFX_CE_STRING},
	{"source", CFX_CE_URI_REF},	    {"type", CFX_CE_STRING},
	{"datacontenttype", CFX_CE_STRING}, {"dataschema", CFX_CE_URI},
	{"subject", CFX_CE_STRING},	    {"time", CFX_CE_TIMESTAMP},
};
#define CORE_REQUIRED_N 4u
#define CORE_EXTENSION	CFX_ARRAY_LEN(core)

/* Index in core[], or CORE_EXTENSION. */
static size_t core_rank(const char *name, size_t len)
{
	for (size_t i = 0; i < CFX_ARRAY_LEN(core); i++) {
		if (strlen(core[i].name) == len && memcmp(core[i].name, name, len) == 0)
			return i;
	}
	return CORE_EXTENSION;
}

struct build {
	struct cfx_ce *ce;
	size_t cap;
	const struct cfx_ce_limits *lim;
	char *err;
	size_t err_len;
};

/* Checks a value of a string-encoded type against the rules of its attribute. */
static int check_value(struct build *b, const char *name, size_t rank, const char *v, size_t len)
{
	const char *why = NULL;
	int rc;

	rc = check_string(v, len, &why);
	if (rc)
		goto fail;
	switch (rank) {
	case 0: /* specversion */
		if (len != strlen(CFX_CE_SPECVERSION) || memcmp(v, CFX_CE_SPECVERSION, len) != 0) {
			char q[QUOTE_BYTES_MAX + 4];

			set_err(b->err, b->err_len,
				"specversion: unsupported version \"%s\" (only " CFX_CE_SPECVERSION
				" is supported)",
				quote(q, v, len));
			return CFX_EPARSE;
		}
		break;
	case 1: /* id */
	case 3: /* type */
	case 6: /* subject */
		if (len == 0) {
			why = "must be a non-empty string";
			rc = CFX_EPARSE;
		}
		break;
	case 2: /* source */
		rc = cfx_ce_check_uri(v, len, 0, &why);
		break;
	case 4: /* datacontenttype */
		rc = cfx_ce_check_media_type(v, len, &why);
		break;
	case 5: /* dataschema */
		rc = cfx_ce_check_uri(v, len, 1, &why);
		break;
	case 7: /* time */
		rc = cfx_ce_check_time(v, len, &why);
		break;
	default:
		break;
	}
	if (!rc)
		return 0;
fail:
	set_err(b->err, b->err_len, "%s: %s", name, why);
	return CFX_EPARSE;
}

/*
 * Adds one attribute; `name` has been checked by the caller. The value is
 * checked here unless its type is BOOL or INT (canonical by construction).
 */
static int build_add(struct build *b, const char *name, size_t nlen, const char *v, size_t vlen,
		     enum cfx_ce_type type)
{
	struct cfx_ce *ce = b->ce;
	size_t rank = core_rank(name, nlen);
	struct cfx_ce_attr *a;
	char q[QUOTE_BYTES_MAX + 4];
	int rc;

	for (size_t i = 0; i < ce->attrs_n; i++) {
		if (strlen(ce->attrs[i].name) == nlen &&
		    memcmp(ce->attrs[i].name, name, nlen) == 0) {
			set_err(b->err, b->err_len, "attribute \"%s\" appears more than once",
				quote(q, name, nlen));
			return CFX_EPARSE;
		}
	}
	if (ce->attrs_n >= b->lim->attrs_max) {
		set_err(b->err, b->err_len, "more than %zu attributes", b->lim->attrs_max);
		return CFX_EMSGSIZE;
	}
	if (type != CFX_CE_BOOL && type != CFX_CE_INT) {
		char nm[CFX_CE_NAME_BYTES_MAX + 1];

		memcpy(nm, name, nlen);
		nm[nlen] = '\0';
		rc = check_value(b, nm, rank, v, vlen);
		if (rc)
			return rc;
	}
	if (ce->attrs_n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		ce->attrs = cfx_realloc(ce->attrs, b->cap * sizeof *ce->attrs);
	}
	a = &ce->attrs[ce->attrs_n++];
	a->name = cfx_strndup(name, nlen);
	a->value = cfx_strndup(v, vlen);
	a->value_len = vlen;
	a->type = rank < CORE_EXTENSION ? core[rank].type : type;
	return 0;
}

static int attr_cmp(const void *x, const void *y)
{
	const struct cfx_ce_attr *a = x, *b = y;
	size_t ra = core_rank(a->name, strlen(a->name)), rb = core_rank(b->name, strlen(b->name));

	if (ra != rb)
		return ra < rb ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Required attributes, canonical order, size. */
static int build_finish(struct build *b)
{
	struct cfx_ce *ce = b->ce;
	size_t bytes;

	for (size_t r = 0; r < CORE_REQUIRED_N; r++) {
		if (!cfx_ce_get(ce, core[r].name)) {
			set_err(b->err, b->err_len, "missing required attribute \"%s\"",
				core[r].name);
			return CFX_EPARSE;
		}
	}
	if (ce->attrs_n > 1)
		qsort(ce->attrs, ce->attrs_n, sizeof *ce->attrs, attr_cmp);
	bytes = cfx_ce_event_bytes(ce);
	if (bytes > b->lim->event_bytes_max) {
		set_err(b->err, b->err_len, "event is %zu bytes, over the limit of %zu", bytes,
			b->lim->event_bytes_max);
		return CFX_EMSGSIZE;
	}
	return 0;
}

static const struct cfx_ce_limits *limits_or_default(const struct cfx_ce_limits *lim,
						     struct cfx_ce_limits *def)
{
	if (!lim) {
		cfx_ce_limits_default(def);
		return def;
	}
	CFX_ASSERT(lim->depth_max <= CFX_CE_DEPTH_MAX);
	return lim;
}

/* ------------------------------------------------------------------------
 * The JSON event format
 *
 * jansson reads the document with JSON_REJECT_DUPLICATES (a duplicate key
 * anywhere, in attributes or in data, is refused) and JSON_ALLOW_NUL
 * (data strings may hold U+0000; attribute strings are checked for
 * controls afterwards). Trailing bytes after the value are refused
 * (jansson's EOF check). Nesting is measured before jansson sees the
 * text, so the depth limit also bounds its recursion.
 * ------------------------------------------------------------------------ */

#define JSON_LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* The deepest nesting of [ and { outside strings, stopping above `limit`. */
static size_t json_depth(const uint8_t *p, size_t len, size_t limit)
{
	size_t depth = 0, max = 0;
	int in_str = 0;

	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (c == '[' || c == '{') {
			if (++depth > max) {
				max = depth;
				if (max > limit)
					return max;
			}
		} else if ((c == ']' || c == '}') && depth) {
			depth--;
		}
	}
	return max;
}

/* Checks size, UTF-8 and depth of a document, then loads it. */
static json_t *json_load_checked(const uint8_t *body, size_t len, const struct cfx_ce_limits *lim,
				 size_t envelope_depth, int *rc, char *err, size_t err_len)
{
	json_error_t jerr;
	json_t *root;

	if (len > lim->body_bytes_max) {
		set_err(err, err_len, "document is %zu bytes, over the limit of %zu", len,
			lim->body_bytes_max);
		*rc = CFX_EMSGSIZE;
		return NULL;
	}
	if (!utf8_is_valid(body, len)) {
		set_err(err, err_len, "not valid UTF-8");
		*rc = CFX_EPARSE;
		return NULL;
	}
	if (json_depth(body, len, lim->depth_max + envelope_depth) >
	    lim->depth_max + envelope_depth) {
		set_err(err, err_len, "data nests deeper than %zu levels", lim->depth_max);
		*rc = CFX_EPARSE; /* a structural limit, not a size: 400 at the HTTP ingress */
		return NULL;
	}
	root = json_loadb((const char *)body, len, JSON_LOAD_FLAGS | JSON_DECODE_ANY, &jerr);
	if (!root) {
		set_err(err, err_len, "not valid JSON: %s (line %d, column %d)", jerr.text,
			jerr.line, jerr.column);
		*rc = CFX_EPARSE;
	}
	return root;
}

/* Adds the attribute `key` with the JSON value `v` (not null). */
static int json_attr(struct build *b, const char *key, size_t klen, json_t *v)
{
	size_t rank = core_rank(key, klen);
	char num[24];

	switch (json_typeof(v)) {
	case JSON_STRING:
		return build_add(b, key, klen, json_string_value(v), json_string_length(v),
				 CFX_CE_STRING);
	case JSON_TRUE:
	case JSON_FALSE:
		if (rank < CORE_EXTENSION)
			break;
		return build_add(b, key, klen, json_is_true(v) ? "true" : "false",
				 json_is_true(v) ? 4 : 5, CFX_CE_BOOL);
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(v);

		if (rank < CORE_EXTENSION)
			break;
		if (i < CFX_CE_INT_MIN || i > CFX_CE_INT_MAX) {
			set_err(b->err, b->err_len,
				"%s: integer out of the 32-bit range of the Integer type", key);
			return CFX_EPARSE;
		}
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, i);
		return build_add(b, key, klen, num, strlen(num), CFX_CE_INT);
	}
	case JSON_REAL:
		if (rank < CORE_EXTENSION)
			break;
		set_err(b->err, b->err_len,
			"%s: a number with a fraction or exponent is not an attribute value "
			"(Integer is a whole number)",
			key);
		return CFX_EPARSE;
	default:
		if (rank < CORE_EXTENSION)
			break;
		set_err(b->err, b->err_len, "%s: objects and arrays are not attribute values", key);
		return CFX_EPARSE;
	}
	set_err(b->err, b->err_len, "%s: must be a string", key);
	return CFX_EPARSE;
}

/* Sets the data of b->ce from the members `data` / `data_base64`. */
static int json_data(struct build *b, json_t *data, json_t *b64)
{
	struct cfx_ce *ce = b->ce;
	const struct cfx_ce_attr *ct;
	const char *why;
	size_t n, written;

	if (data && b64) {
		set_err(b->err, b->err_len, "data and data_base64 are mutually exclusive");
		return CFX_EPARSE;
	}
	if (b64) {
		if (!json_is_string(b64)) {
			set_err(b->err, b->err_len, "data_base64: must be a string");
			return CFX_EPARSE;
		}
		if (b64_decode(json_string_value(b64), json_string_length(b64), &ce->data,
			       &ce->data_len, &why)) {
			set_err(b->err, b->err_len, "data_base64: %s", why);
			return CFX_EPARSE;
		}
		ce->has_data = true;
		ce->data_kind = CFX_CE_DATA_BINARY;
		return 0;
	}
	if (!data)
		return 0;
	ct = cfx_ce_get(ce, "datacontenttype");
	if (!ct || media_is_json(ct->value, ct->value_len)) {
		n = json_dumpb(data, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
		if (n == 0) { /* jansson could not encode what it decoded */
			set_err(b->err, b->err_len, "data: cannot be serialized");
			return CFX_EPARSE;
		}
		ce->data = cfx_malloc(n);
		written = json_dumpb(data, (char *)ce->data, n, JSON_COMPACT | JSON_ENCODE_ANY);
		CFX_ASSERT(written == n);
		ce->data_len = n;
		ce->data_kind = CFX_CE_DATA_JSON;
	} else {
		if (!json_is_string(data)) {
			set_err(b->err, b->err_len,
				"data: must be a string when datacontenttype is not JSON");
			return CFX_EPARSE;
		}
		n = json_string_length(data);
		ce->data = cfx_malloc(n ? n : 1);
		memcpy(ce->data, json_string_value(data), n);
		ce->data_len = n;
		ce->data_kind = CFX_CE_DATA_TEXT;
	}
	ce->has_data = true;
	return 0;
}

/* One event from a JSON object. */
static int json_event(json_t *obj, const struct cfx_ce_limits *lim, struct cfx_ce *out, char *err,
		      size_t err_len)
{
	struct build b = {.ce = out, .lim = lim, .err = err, .err_len = err_len};
	json_t *data = NULL, *b64 = NULL;
	char q[QUOTE_BYTES_MAX + 4];
	const char *why;
	int rc = 0;

	memset(out, 0, sizeof *out);
	if (!json_is_object(obj)) {
		set_err(err, err_len, "an event must be a JSON object");
		return CFX_EPARSE;
	}
	if (json_object_size(obj) > lim->attrs_max + 2) {
		set_err(err, err_len, "more than %zu attributes", lim->attrs_max);
		return CFX_EMSGSIZE;
	}
	for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
		const char *key = json_object_iter_key(it);
		size_t klen = json_object_iter_key_len(it);
		json_t *v = json_object_iter_value(it);

		if (klen == 4 && memcmp(key, "data", 4) == 0) {
			data = v;
			continue;
		}
		if (klen == 11 && memcmp(key, "data_base64", 11) == 0) {
			b64 = v;
			continue;
		}
		if (cfx_ce_check_name(key, klen, &why)) {
			set_err(err, err_len, "attribute name \"%s\": %s", quote(q, key, klen),
				why);
			rc = CFX_EPARSE;
			goto out;
		}
		if (json_is_null(v)) /* null is unset (JSON format 2.2) */
			continue;
		rc = json_attr(&b, key, klen, v);
		if (rc)
			goto out;
	}
	rc = json_data(&b, data, b64);
	if (rc)
		goto out;
	rc = build_finish(&b);
out:
	if (rc)
		cfx_ce_free(out);
	return rc;
}

int cfx_ce_parse_structured(const uint8_t *body, size_t len, const struct cfx_ce_limits *lim,
			    struct cfx_ce *out, char *err, size_t err_len)
{
	struct cfx_ce_limits def;
	json_t *root;
	int rc = 0;

	memset(out, 0, sizeof *out);
	lim = limits_or_default(lim, &def);
	root = json_load_checked(body, len, lim, 1, &rc, err, err_len);
	if (!root)
		return rc;
	rc = json_event(root, lim, out, err, err_len);
	json_decref(root);
	return rc;
}

int cfx_ce_parse_batch(const uint8_t *body, size_t len, const struct cfx_ce_limits *lim,
		       struct cfx_ce **out, size_t *n, char *err, size_t err_len)
{
	struct cfx_ce_limits def;
	struct cfx_ce *ces = NULL;
	size_t count, i;
	char why[256];
	json_t *root;
	int rc = 0;

	*out = NULL;
	*n = 0;
	lim = limits_or_default(lim, &def);
	root = json_load_checked(body, len, lim, 2, &rc, err, err_len);
	if (!root)
		return rc;
	if (!json_is_array(root)) {
		set_err(err, err_len, "a batch must be a JSON array of events");
		rc = CFX_EPARSE;
		goto out;
	}
	count = json_array_size(root);
	if (count > lim->batch_events_max) {
		set_err(err, err_len, "batch has %zu events, over the limit of %zu", count,
			lim->batch_events_max);
		rc = CFX_EBATCHSIZE;
		goto out;
	}
	if (count)
		ces = cfx_calloc(count, sizeof *ces);
	for (i = 0; i < count; i++) {
		why[0] = '\0';
		rc = json_event(json_array_get(root, i), lim, &ces[i], why, sizeof why);
		if (rc) {
			set_err(err, err_len, "event %zu of the batch: %s", i, why);
			cfx_ce_batch_free(ces, i);
			ces = NULL;
			goto out;
		}
	}
	*out = ces;
	*n = count;
out:
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------------------
 * Binary bindings
 * ------------------------------------------------------------------------ */

static const char *const binding_prefix[] = {
	[CFX_CE_BINDING_HTTP] = "ce-",
	[CFX_CE_BINDING_KAFKA] = "ce_",
	[CFX_CE_BINDING_MQTT] = "",
	[CFX_CE_BINDING_ROCKETMQ] = "CE_",
};

static const char *const binding_ct_key[] = {
	[CFX_CE_BINDING_HTTP] = "Content-Type",
	[CFX_CE_BINDING_KAFKA] = "content-type",
	[CFX_CE_BINDING_MQTT] = NULL,
	[CFX_CE_BINDING_ROCKETMQ] = "CE_contentType",
};

const char *cfx_ce_content_type_key(enum cfx_ce_binding b)
{
	CFX_ASSERT((unsigned)b < CFX_ARRAY_LEN(binding_ct_key));
	return binding_ct_key[b];
}

/*
 * An HTTP header value as the HTTP binding reads it: OWS trimmed, a
 * quoted-string unescaped (RFC 7230 3.2.6), then one round of percent-
 * decoding. Writes at most len bytes to `d`; returns the length or -1.
 */
static long http_value_decode(const char *s, size_t len, char *d, const char **why)
{
	size_t i = 0, o = 0, end = len;
	char *tmp = NULL;

	while (i < end && (s[i] == ' ' || s[i] == '\t'))
		i++;
	while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	if (i < end && s[i] == '"') {
		size_t q = quoted_end(s, i, end);

		if (q != end) {
			*why = "malformed quoted-string";
			return -1;
		}
		tmp = cfx_malloc(end - i);
		for (size_t k = i + 1; k < end - 1; k++) {
			if (s[k] == '\\')
				k++;
			tmp[o++] = s[k];
		}
		s = tmp;
		i = 0;
		end = o;
		o = 0;
	}
	while (i < end) {
		if (s[i] == '%') {
			if (end - i < 3 || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) {
				*why = "malformed percent-encoding";
				cfx_free(tmp);
				return -1;
			}
			d[o++] = (char)(hex_val(s[i + 1]) << 4 | hex_val(s[i + 2]));
			i += 3;
		} else {
			d[o++] = s[i++];
		}
	}
	cfx_free(tmp);
	return (long)o;
}

/* Matches the binding's prefix; returns the attribute-name part or NULL. */
static const char *prop_attr_name(enum cfx_ce_binding b, const struct cfx_ce_header *h,
				  size_t *nlen)
{
	const char *pre = binding_prefix[b];
	size_t pl = strlen(pre);

	if (h->name_len < pl)
		return NULL;
	if (b == CFX_CE_BINDING_HTTP ? strncasecmp(h->name, pre, pl) != 0
				     : memcmp(h->name, pre, pl) != 0)
		return NULL;
	*nlen = h->name_len - pl;
	return h->name + pl;
}

static int binary_event(enum cfx_ce_binding b, const struct cfx_ce_header *props, size_t n,
			const char *ct, size_t ct_len, const uint8_t *body, size_t len,
			bool has_data, const struct cfx_ce_limits *lim, struct cfx_ce *out,
			char *err, size_t err_len)
{
	struct build bd = {.ce = out, .lim = lim, .err = err, .err_len = err_len};
	const char *ct_key = binding_ct_key[b];
	char q[QUOTE_BYTES_MAX + 4], *buf = NULL;
	size_t bytes = len;
	int rc = 0;

	memset(out, 0, sizeof *out);
	/* Everything that can become the event is bounded before it is copied. */
	for (size_t i = 0; i < n; i++)
		bytes += props[i].name_len + props[i].value_len;
	if (ct)
		bytes += ct_len;
	if (bytes > lim->body_bytes_max) {
		set_err(err, err_len, "message is %zu bytes, over the limit of %zu", bytes,
			lim->body_bytes_max);
		return CFX_EMSGSIZE;
	}
	for (size_t i = 0; i < n; i++) {
		const struct cfx_ce_header *h = &props[i];
		char name[CFX_CE_NAME_BYTES_MAX + 1];
		const char *nm, *v = h->value, *why = NULL;
		size_t nlen;
		long vlen = (long)h->value_len;

		if (ct_key && h->name_len == strlen(ct_key) &&
		    (b == CFX_CE_BINDING_HTTP ? strncasecmp(h->name, ct_key, h->name_len)
					      : memcmp(h->name, ct_key, h->name_len)) == 0)
			continue;
		nm = prop_attr_name(b, h, &nlen);
		if (!nm)
			continue;
		if (b == CFX_CE_BINDING_MQTT && cfx_ce_check_name(nm, nlen, &why))
			continue; /* not CloudEvents metadata */
		if (nlen > CFX_CE_NAME_BYTES_MAX) {
			set_err(err, err_len,
				"attribute name \"%s\": attribute names are limited "
				"to 64 characters",
				quote(q, nm, nlen));
			rc = CFX_EPARSE;
			goto out;
		}
		for (size_t k = 0; k < nlen; k++) /* HTTP names are case-insensitive */
			name[k] = b == CFX_CE_BINDING_HTTP && nm[k] >= 'A' && nm[k] <= 'Z'
					  ? (char)(nm[k] | 0x20)
					  : nm[k];
		name[nlen] = '\0';
		if (cfx_ce_check_name(name, nlen, &why)) {
			set_err(err, err_len, "attribute name \"%s\": %s",
				quote(q, h->name, h->name_len), why);
			rc = CFX_EPARSE;
			goto out;
		}
		if (b == CFX_CE_BINDING_HTTP) {
			cfx_free(buf);
			buf = cfx_malloc(h->value_len ? h->value_len : 1);
			vlen = http_value_decode(h->value, h->value_len, buf, &why);
			if (vlen < 0) {
				set_err(err, err_len, "%s: %s", name, why);
				rc = CFX_EPARSE;
				goto out;
			}
			v = buf;
		}
		if (strcmp(name, "datacontenttype") == 0) {
			if (b == CFX_CE_BINDING_HTTP) {
				set_err(err, err_len,
					"a ce-datacontenttype header is not allowed: "
					"Content-Type carries it");
				rc = CFX_EPARSE;
				goto out;
			}
			if (ct && ((size_t)vlen != ct_len || memcmp(v, ct, ct_len) != 0)) {
				set_err(err, err_len,
					"datacontenttype: differs from the content "
					"type of the message");
				rc = CFX_EPARSE;
				goto out;
			}
			if (ct)
				continue; /* added below, from ct */
		}
		rc = build_add(&bd, name, nlen, v, (size_t)vlen, CFX_CE_STRING);
		if (rc)
			goto out;
	}
	if (ct) {
		rc = build_add(&bd, "datacontenttype", 15, ct, ct_len, CFX_CE_STRING);
		if (rc)
			goto out;
	}
	if (has_data) {
		out->data = cfx_malloc(len ? len : 1);
		if (len)
			memcpy(out->data, body, len);
		out->data_len = len;
		out->has_data = true;
		out->data_kind = CFX_CE_DATA_BINARY;
	}
	rc = build_finish(&bd);
out:
	cfx_free(buf);
	if (rc)
		cfx_ce_free(out);
	return rc;
}

int cfx_ce_from_props(enum cfx_ce_binding b, const struct cfx_ce_header *props, size_t n,
		      const char *content_type, size_t ct_len, const uint8_t *body, size_t len,
		      bool has_data, const struct cfx_ce_limits *lim, struct cfx_ce *out, char *err,
		      size_t err_len)
{
	struct cfx_ce_limits def;

	CFX_ASSERT((unsigned)b < CFX_ARRAY_LEN(binding_prefix));
	lim = limits_or_default(lim, &def);
	return binary_event(b, props, n, content_type, ct_len, body, len, has_data, lim, out, err,
			    err_len);
}

int cfx_ce_parse_http_binary(const struct cfx_ce_header *h, size_t n, const uint8_t *body,
			     size_t len, const struct cfx_ce_limits *lim, struct cfx_ce *out,
			     char *err, size_t err_len)
{
	struct cfx_ce_limits def;
	const char *ct = NULL;
	size_t ct_len = 0;

	memset(out, 0, sizeof *out);
	lim = limits_or_default(lim, &def);
	for (size_t i = 0; i < n; i++) {
		if (h[i].name_len == 12 && strncasecmp(h[i].name, "content-type", 12) == 0) {
			size_t s = 0, e = h[i].value_len;

			if (ct) {
				set_err(err, err_len, "Content-Type appears more than once");
				return CFX_EPARSE;
			}
			while (s < e && (h[i].value[s] == ' ' || h[i].value[s] == '\t'))
				s++;
			while (e > s && (h[i].value[e - 1] == ' ' || h[i].value[e - 1] == '\t'))
				e--;
			ct = h[i].value + s;
			ct_len = e - s;
		}
	}
	return binary_event(CFX_CE_BINDING_HTTP, h, n, ct, ct_len, body, len, len > 0, lim, out,
			    err, err_len);
}

enum cfx_ce_mode cfx_ce_http_mode(const char *content_type, size_t len)
{
	static const char ce[] = "application/cloudevents";
	static const char structured[] = "application/cloudevents+json";
	static const char batch[] = "application/cloudevents-batch+json";
	const char *s = content_type;
	size_t i = 0, tl, params;
	int charset_ok = 1;

	if (!s)
		return CFX_CE_MODE_BINARY;
	i = skip_ows(s, 0, len);
	s += i;
	len -= i;
	if (len < sizeof ce - 1 || strncasecmp(s, ce, sizeof ce - 1) != 0)
		return CFX_CE_MODE_BINARY;
	if (media_type_split(s, len, &tl, &params) || media_params(s, params, len, &charset_ok) ||
	    !charset_ok)
		return CFX_CE_MODE_UNSUPPORTED;
	if (tl == sizeof structured - 1 && strncasecmp(s, structured, tl) == 0)
		return CFX_CE_MODE_STRUCTURED;
	if (tl == sizeof batch - 1 && strncasecmp(s, batch, tl) == 0)
		return CFX_CE_MODE_BATCH;
	return CFX_CE_MODE_UNSUPPORTED;
}

const char *cfx_ce_binary_content_type(const struct cfx_ce *ce)
{
	const struct cfx_ce_attr *a = cfx_ce_get(ce, "datacontenttype");

	if (a)
		return a->value;
	return ce->has_data && ce->data_kind == CFX_CE_DATA_JSON ? "application/json" : NULL;
}

/* HTTP header values: space, '"', '%' and anything outside 0x21-0x7e as %XX. */
static int http_needs_pct(uint8_t c)
{
	return c <= 0x20 || c >= 0x7f || c == '"' || c == '%';
}

int cfx_ce_emit_attrs(const struct cfx_ce *ce, enum cfx_ce_binding b,
		      int (*emit)(void *ctx, const char *name, size_t nlen, const char *value,
				  size_t vlen),
		      void *ctx)
{
	static const char hex[] = "0123456789ABCDEF";
	char name[4 + CFX_CE_NAME_BYTES_MAX + 1];
	const char *pre;
	size_t pl;
	char *enc = NULL;
	int rc = 0;

	CFX_ASSERT((unsigned)b < CFX_ARRAY_LEN(binding_prefix));
	pre = binding_prefix[b];
	pl = strlen(pre);
	for (size_t i = 0; i < ce->attrs_n && !rc; i++) {
		const struct cfx_ce_attr *a = &ce->attrs[i];
		size_t nlen = strlen(a->name), vlen = a->value_len;
		const char *v = a->value;

		if (strcmp(a->name, "datacontenttype") == 0)
			continue;
		CFX_ASSERT(nlen <= CFX_CE_NAME_BYTES_MAX);
		memcpy(name, pre, pl);
		memcpy(name + pl, a->name, nlen + 1);
		if (b == CFX_CE_BINDING_HTTP) {
			size_t o = 0;

			cfx_free(enc);
			enc = cfx_malloc(vlen * 3 + 1);
			for (size_t k = 0; k < vlen; k++) {
				uint8_t c = (uint8_t)v[k];

				if (http_needs_pct(c)) {
					enc[o++] = '%';
					enc[o++] = hex[c >> 4];
					enc[o++] = hex[c & 15];
				} else {
					enc[o++] = (char)c;
				}
			}
			enc[o] = '\0';
			v = enc;
			vlen = o;
		}
		rc = emit(ctx, name, pl + nlen, v, vlen);
	}
	cfx_free(enc);
	return rc;
}

/* ------------------------------------------------------------------------
 * Encoding to the JSON format
 * ------------------------------------------------------------------------ */

/* The `data` member for the bytes of `ce`: sets *key and returns a new value. */
static json_t *data_value(const struct cfx_ce *ce, const char **key)
{
	const struct cfx_ce_attr *ct = cfx_ce_get(ce, "datacontenttype");
	const uint8_t *p = ce->data;
	size_t len = ce->data_len;
	json_t *v;
	char *b64;
	size_t b64_len;

	*key = "data";
	if (!ct || media_is_json(ct->value, ct->value_len)) {
		if (len && utf8_is_valid(p, len) &&
		    json_depth(p, len, CFX_CE_DEPTH_DEFAULT) <= CFX_CE_DEPTH_DEFAULT) {
			v = json_loadb((const char *)p, len, JSON_LOAD_FLAGS | JSON_DECODE_ANY,
				       NULL);
			if (v)
				return v;
		}
	} else if (media_is_text(ct->value, ct->value_len) && utf8_is_valid(p, len)) {
		return json_stringn_nocheck((const char *)p, len);
	}
	*key = "data_base64";
	b64 = b64_encode(p, len, &b64_len);
	v = json_stringn_nocheck(b64, b64_len);
	cfx_free(b64);
	return v;
}

json_t *cfx_ce_to_json(const struct cfx_ce *ce)
{
	json_t *obj = json_object();
	int rc;

	CFX_ASSERT(obj);
	for (size_t i = 0; i < ce->attrs_n; i++) {
		const struct cfx_ce_attr *a = &ce->attrs[i];
		json_t *v;

		switch (a->type) {
		case CFX_CE_BOOL:
			v = json_boolean(strcmp(a->value, "true") == 0);
			break;
		case CFX_CE_INT:
			v = json_integer(strtoll(a->value, NULL, 10));
			break;
		default:
			v = json_stringn_nocheck(a->value, a->value_len);
			break;
		}
		rc = json_object_set_new_nocheck(obj, a->name, v);
		CFX_ASSERT(rc == 0);
	}
	if (ce->has_data) {
		const char *key;
		json_t *v = data_value(ce, &key);

		rc = json_object_set_new_nocheck(obj, key, v);
		CFX_ASSERT(rc == 0);
	}
	return obj;
}

static char *dump(json_t *v, size_t *len)
{
	size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
	size_t written;
	char *s;

	CFX_ASSERT(n > 0);
	s = cfx_malloc(n + 1);
	written = json_dumpb(v, s, n, JSON_COMPACT);
	CFX_ASSERT(written == n);
	s[n] = '\0';
	if (len)
		*len = n;
	return s;
}

char *cfx_ce_to_structured(const struct cfx_ce *ce, size_t *len)
{
	json_t *obj = cfx_ce_to_json(ce);
	char *s = dump(obj, len);

	json_decref(obj);
	return s;
}

char *cfx_ce_batch_to_json(const struct cfx_ce *ces, size_t n, size_t *len)
{
	json_t *arr = json_array();
	char *s;

	for (size_t i = 0; i < n; i++) {
		int rc = json_array_append_new(arr, cfx_ce_to_json(&ces[i]));

		CFX_ASSERT(rc == 0);
	}
	s = dump(arr, len);
	json_decref(arr);
	return s;
}

/* ------------------------------------------------------------------------
 * The rest
 * ------------------------------------------------------------------------ */

void cfx_ce_limits_default(struct cfx_ce_limits *lim)
{
	lim->event_bytes_max = CFX_CE_EVENT_BYTES_DEFAULT;
	lim->body_bytes_max = CFX_CE_BODY_BYTES_DEFAULT;
	lim->batch_events_max = CFX_CE_BATCH_EVENTS_DEFAULT;
	lim->attrs_max = CFX_CE_ATTRS_DEFAULT;
	lim->depth_max = CFX_CE_DEPTH_DEFAULT;
}

const struct cfx_ce_attr *cfx_ce_get(const struct cfx_ce *ce, const char *name)
{
	for (size_t i = 0; i < ce->attrs_n; i++) {
		if (strcmp(ce->attrs[i].name, name) == 0)
			return &ce->attrs[i];
	}
	return NULL;
}

size_t cfx_ce_event_bytes(const struct cfx_ce *ce)
{
	size_t n = ce->data_len;

	for (size_t i = 0; i < ce->attrs_n; i++)
		n += strlen(ce->attrs[i].name) + ce->attrs[i].value_len;
	return n;
}

int cfx_ce_equal(const struct cfx_ce *a, const struct cfx_ce *b, unsigned flags)
{
	if (a->attrs_n != b->attrs_n || a->has_data != b->has_data || a->data_len != b->data_len)
		return 0;
	if (a->data_len && memcmp(a->data, b->data, a->data_len) != 0)
		return 0;
	for (size_t i = 0; i < a->attrs_n; i++) {
		const struct cfx_ce_attr *x = &a->attrs[i], *y = &b->attrs[i];

		if (strcmp(x->name, y->name) != 0 || x->value_len != y->value_len ||
		    memcmp(x->value, y->value, x->value_len) != 0)
			return 0;
		if (x->type != y->type && !((flags & CFX_CE_EQ_EXT_AS_STRING) &&
					    core_rank(x->name, strlen(x->name)) == CORE_EXTENSION))
			return 0;
	}
	return 1;
}

void cfx_ce_free(struct cfx_ce *ce)
{
	for (size_t i = 0; i < ce->attrs_n; i++) {
		cfx_free(ce->attrs[i].name);
		cfx_free(ce->attrs[i].value);
	}
	cfx_free(ce->attrs);
	cfx_free(ce->data);
	memset(ce, 0, sizeof *ce);
}

void cfx_ce_batch_free(struct cfx_ce *ces, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cfx_ce_free(&ces[i]);
	cfx_free(ces);
}
