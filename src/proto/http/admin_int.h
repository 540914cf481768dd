/*
 * admin_int.h - shared by the files of the admin API only (admin.c, the
 * routing and the core routes; events.c, the EventBridge routes): the
 * context of one request, the strict parsers of parameters and bodies, the
 * mapping of cfx_err to statuses, authorization, and the counting of
 * deferred answers that shutdown waits for. Not an API: admin.h is.
 *
 * @thread loop: everything here runs on the connection's loop, inside
 * http_service.handle, unless it says otherwise.
 */
#ifndef CFX_PROTO_HTTP_ADMIN_INT_H
#define CFX_PROTO_HTTP_ADMIN_INT_H

#include <stdbool.h>

#include "proto/http/admin.h"

#define ADMIN_QUERY_PARAMS_MAX 8 /* query parameters of one request */

struct admin_qparam {
	char *key, *value; /* decoded, NUL-terminated */
};

struct admin_ctx {
	struct admin_service *svc;
	struct cfx_broker *br;
	const struct http_request *req;
	struct http_response *resp;
	char *param;			   /* the decoded first {name} of the path, if the route has one */
	char *param2;			   /* the decoded second {name} (/v1/buses/{bus}/rules/{rule}) */
	struct admin_qparam q[ADMIN_QUERY_PARAMS_MAX]; /* the decoded query */
	uint32_t nq;
	const char *user;		   /* signed in as; NULL = anonymous (or no users) */
};

/* The one mapping of broker errors to statuses; `what` names the object. */
void admin__reply_cfx(struct admin_ctx *x, int rc, const char *what);

/*
 * Whether the signed-in user may do `action` (one enum cfx_auth_action bit)
 * on the resource; if not, a 403 is set, counted and logged.
 */
bool admin__allowed(struct admin_ctx *x, enum cfx_auth_resource res, const char *name,
		    unsigned action);

/* A query parameter's decoded value (borrowed from x), or NULL. */
const char *admin__query_get(const struct admin_ctx *x, const char *key);
/* Refuses query parameters other than `allowed` (NULL-terminated): -1 with a 400 set, or 0. */
int admin__query_only(struct admin_ctx *x, const char *const *allowed);
/* A decimal integer query parameter in [min, max]. 0 = absent, 1 = set, -1 = 400 set. */
int admin__query_int(struct admin_ctx *x, const char *key, int64_t min, int64_t max,
		     int64_t *out);

/*
 * The request body as a JSON object (new reference), or NULL with the
 * error answer set: 415 unless it is application/json, 400 if it does not
 * parse, is not an object, or has members other than `allowed`
 * (NULL-terminated; `allowed` NULL: any member, the callee checks them).
 */
json_t *admin__body_object(struct admin_ctx *x, const char *const *allowed);
/* Members of a body: 0 = absent (or null), 1 = set, -1 = 400 set. */
int admin__member_int(struct admin_ctx *x, json_t *o, const char *key, int64_t min, int64_t max,
		      int64_t *out);
int admin__member_str(struct admin_ctx *x, json_t *o, const char *key, const char **out);
int admin__member_bool(struct admin_ctx *x, json_t *o, const char *key, int *out);

/*
 * Deferring an answer past the handler (http.h, "Answering later"), counted
 * in svc->deferred so that admin_service_stop waits for it.
 *
 * admin__defer_begin: returns the ticket, or NULL with the answer set (503
 * while the service stops, 500 outside a connection). admin__defer_end:
 * the answer was given (http_later_answer); @thread any.
 */
struct http_later *admin__defer_begin(struct admin_ctx *x);
void admin__defer_end(struct admin_service *svc);

/* ------------------------------------------------------------------------
 * The EventBridge routes (events.c; docs/admin-api.md, docs/eventbridge.md).
 * Each answers 404 when the service has no bridge (admin_opts.bridge NULL).
 * ------------------------------------------------------------------------ */

void admin__bus_list(struct admin_ctx *x);     /* GET /v1/buses */
void admin__bus_create(struct admin_ctx *x);   /* POST /v1/buses */
void admin__bus_get(struct admin_ctx *x);      /* GET /v1/buses/{bus} */
void admin__bus_delete(struct admin_ctx *x);   /* DELETE /v1/buses/{bus} */
void admin__events_put(struct admin_ctx *x);   /* POST /v1/buses/{bus}/events (deferred) */
void admin__events_pull(struct admin_ctx *x);  /* GET /v1/buses/{bus}/events (may wait) */
void admin__bus_replay(struct admin_ctx *x);   /* POST /v1/buses/{bus}/replay (deferred) */
void admin__rule_list(struct admin_ctx *x);    /* GET /v1/buses/{bus}/rules */
void admin__rule_create(struct admin_ctx *x);  /* POST /v1/buses/{bus}/rules */
void admin__rule_get(struct admin_ctx *x);     /* GET /v1/buses/{bus}/rules/{rule} */
void admin__rule_put(struct admin_ctx *x);     /* PUT /v1/buses/{bus}/rules/{rule} */
void admin__rule_delete(struct admin_ctx *x);  /* DELETE /v1/buses/{bus}/rules/{rule} */
void admin__rule_test(struct admin_ctx *x);    /* POST /v1/rules/test */
void admin__target_list(struct admin_ctx *x);  /* GET /v1/targets */
void admin__target_create(struct admin_ctx *x); /* POST /v1/targets */
void admin__target_get(struct admin_ctx *x);   /* GET /v1/targets/{name} */
void admin__target_put(struct admin_ctx *x);   /* PUT /v1/targets/{name} */
void admin__target_delete(struct admin_ctx *x); /* DELETE /v1/targets/{name} */

/*
 * Makes the long polls waiting for events answer now (204), so that
 * admin_service_stop does not wait up to their wait_ms. Called with
 * svc->stopping set. @thread any
 */
void admin__events_stop(struct admin_service *svc);

#endif
