/*
 * http_client.h - the conflux tool's client of the admin HTTP API
 * (docs/cli.md): one HTTP/1.1 request per connection, responses parsed by
 * http-parser, JSON bodies by jansson, errors of the form
 * {"error","reason"} shown with their HTTP status.
 *
 * Blocking, single-threaded; every call is bounded by the caller's timeout.
 */
#ifndef CFX_CMD_CONFLUX_HTTP_CLIENT_H
#define CFX_CMD_CONFLUX_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd/conflux/cli.h"

#define HTTP_BODY_BYTES_MAX (64u << 20) /* largest response body accepted */

struct http_response {
	int status; /* HTTP status code */
	char *body; /* NUL-terminated copy of the body (owned; http_response_free) */
	size_t len;
};

/*
 * Sends `method target` to `hostport` with an optional JSON body
 * (`body` NULL for none) and an optional Authorization header value
 * (`authz` NULL or "" for none; at most CLI_AUTHZ_MAX bytes; the request
 * head is wiped after sending since it holds it) and reads the whole
 * response. Returns 0 with
 * `resp` filled (any status), or -1 with a reason in `err` when the server
 * could not be reached, did not answer in `timeout_ms`, or answered
 * something that is not HTTP.
 */
int http_request(const char *hostport, const char *method, const char *target, const char *body,
		 const char *authz, int64_t timeout_ms, struct http_response *resp, char *err,
		 size_t errlen);
/* http_request with a body of another media type than application/json. */
int http_request_typed(const char *hostport, const char *method, const char *target,
		       const char *content_type, const char *body, const char *authz,
		       int64_t timeout_ms, struct http_response *resp, char *err, size_t errlen);
void http_response_free(struct http_response *resp);

/*
 * One admin API call: `body` (borrowed, may be NULL) is sent as JSON,
 * with the credentials of cli_credentials; a 2xx answer's JSON body is
 * returned in *out (a new reference; NULL when the body is empty; `out`
 * may be NULL). On failure the reason is printed ("server answered 404
 * not_found: ...", with a hint on the credentials after 401 and 403) and
 * the exit status returned: CLI_EFAIL for an error answer,
 * CLI_EUNREACHABLE when the server could not be reached (not printed when
 * c->admin_optional is set), CLI_EUSAGE when the credentials are
 * incomplete. When `status` is not NULL it receives the HTTP status (0
 * when no request was answered).
 */
int admin_call(const struct cli *c, const char *method, const char *target, json_t *body,
	       json_t **out, int *status);

/*
 * A list route: GET `path`, whose answer holds an array under `key`
 * ({"users": [...]}). With --json the answer is printed and *list is NULL
 * (nothing left to do); otherwise *list borrows from *out (json_decref it
 * when done). Returns CLI_OK or the exit status of the failure (reported).
 */
int admin_get_list(const struct cli *c, const char *path, const char *key, json_t **out,
		   json_t **list);

/* admin_call with the body sent as `content_type` (application/cloudevents+json). */
int admin_call_typed(const struct cli *c, const char *method, const char *target,
		     const char *content_type, json_t *body, json_t **out, int *status);

/*
 * The gRPC endpoint to use: --grpc if given, else "listeners.grpc" of
 * GET /v1/status (a wildcard host replaced by --server's host). Fills
 * c->grpc. Returns CLI_OK or an exit status (message printed).
 */
int admin_grpc_endpoint(struct cli *c);

#endif
