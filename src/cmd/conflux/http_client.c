/*
 * http_client.c - HTTP/1.1 requests to the admin API, and the JSON layer
 * the admin commands use on top of them.
 *
 * One connection per request ("Connection: close"): the tool makes a few
 * calls per run, so keeping connections alive would buy nothing. The
 * socket is non-blocking and every wait goes through poll(2) against one
 * deadline. The response is parsed by http-parser (status line, headers,
 * Content-Length or chunked bodies, or a body delimited by the close);
 * nothing here reads HTTP syntax by hand.
 */
#include "cmd/conflux/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "net/conn.h"

/* ------------------------------------------------------------------------
 * Transport
 * ------------------------------------------------------------------------ */

/* Waits for `events` on fd until the deadline; returns 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		int64_t left = deadline_ms - cfx_clock_mono_ms();
		struct pollfd p = {.fd = fd, .events = events};
		if (left <= 0)
			return 0;
		int r = poll(&p, 1, (int)CFX_MIN(left, 1000));
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (cli_stop) {
			errno = EINTR;
			return -1;
		}
	}
}

/* Connects to host:port before the deadline; returns the fd or -1 with a reason. */
static int dial(const char *hostport, int64_t deadline_ms, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL, *ai;
	char host[CLI_ADDR_MAX], port_s[16];
	int port, fd = -1, e = 0, one = 1;

	if (cfx_parse_hostport(hostport, host, sizeof host, &port) || port == 0) {
		snprintf(err, errlen, "\"%s\" is not a host:port address", hostport);
		return -1;
	}
	snprintf(port_s, sizeof port_s, "%d", port);
	int g = getaddrinfo(host, port_s, &hints, &res);
	if (g) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			int w = wait_fd(fd, POLLOUT, deadline_ms);
			socklen_t sl = sizeof e;
			if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
				break;
			if (w == 0)
				e = ETIMEDOUT;
			else if (w < 0)
				e = errno;
		} else {
			e = errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "%s", strerror(e ? e : ECONNREFUSED));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline_ms)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		int r = wait_fd(fd, POLLOUT, deadline_ms);
		if (r <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Response parsing (http-parser callbacks)
 * ------------------------------------------------------------------------ */

struct parse_state {
	struct http_response *resp;
	size_t cap;
	int complete;
	int too_big;
};

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct parse_state *ps = hp->data;
	struct http_response *r = ps->resp;

	if (r->len + len > HTTP_BODY_BYTES_MAX) {
		ps->too_big = 1;
		return -1;
	}
	if (r->len + len + 1 > ps->cap) {
		ps->cap = CFX_MAX(ps->cap * 2, r->len + len + 1);
		r->body = cfx_realloc(r->body, ps->cap);
	}
	memcpy(r->body + r->len, at, len);
	r->len += len;
	r->body[r->len] = '\0';
	return 0;
}

static int on_complete(http_parser *hp)
{
	struct parse_state *ps = hp->data;

	ps->complete = 1;
	ps->resp->status = (int)hp->status_code;
	/* Stop here: with Connection: close nothing more is expected. */
	http_parser_pause(hp, 1);
	return 0;
}

/* The request line, Host, and the fixed headers; the Authorization header comes on top. */
#define HEAD_BYTES_MAX (1024 + CLI_ADDR_MAX)

int http_request(const char *hostport, const char *method, const char *target, const char *body,
		 const char *authz, int64_t timeout_ms, struct http_response *resp, char *err,
		 size_t errlen)
{
	return http_request_typed(hostport, method, target, "application/json", body, authz,
				  timeout_ms, resp, err, errlen);
}

int http_request_typed(const char *hostport, const char *method, const char *target,
		       const char *content_type, const char *body, const char *authz,
		       int64_t timeout_ms, struct http_response *resp, char *err, size_t errlen)
{
	int64_t deadline = cfx_clock_mono_ms() + timeout_ms;
	size_t blen = body ? strlen(body) : 0;
	http_parser_settings hs;
	struct parse_state ps = {.resp = resp};
	http_parser hp;
	char head[HEAD_BYTES_MAX + sizeof "Authorization: \r\n" + CLI_AUTHZ_MAX];
	int fd, n, sent;

	memset(resp, 0, sizeof *resp);
	fd = dial(hostport, deadline, err, errlen);
	if (fd < 0)
		return -1;
	n = snprintf(head, sizeof head,
		     "%s %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "User-Agent: conflux/" CLI_VERSION "\r\n"
		     "Accept: application/json\r\n"
		     "Connection: close\r\n",
		     method, target, hostport);
	if (n < 0 || (size_t)n >= HEAD_BYTES_MAX - 128) {
		close(fd);
		snprintf(err, errlen, "request target too long");
		return -1;
	}
	if (authz && *authz) {
		CFX_ASSERT(strlen(authz) <= CLI_AUTHZ_MAX);
		n += snprintf(head + n, sizeof head - (size_t)n, "Authorization: %s\r\n", authz);
	}
	CFX_ASSERT(strlen(content_type) < 64); /* ours; the head keeps 128 bytes for these lines */
	if (body)
		n += snprintf(head + n, sizeof head - (size_t)n,
			      "Content-Type: %s\r\nContent-Length: %zu\r\n", content_type, blen);
	else if (!strcmp(method, "POST") || !strcmp(method, "PATCH") || !strcmp(method, "PUT"))
		n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: 0\r\n");
	n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
	CFX_ASSERT((size_t)n < sizeof head);
	sent = send_all(fd, head, (size_t)n, deadline);
	cli_wipe(head, sizeof head);
	if (sent || (blen && send_all(fd, body, blen, deadline))) {
		snprintf(err, errlen, "sending the request: %s", strerror(errno));
		close(fd);
		return -1;
	}

	http_parser_settings_init(&hs);
	hs.on_body = on_body;
	hs.on_message_complete = on_complete;
	http_parser_init(&hp, HTTP_RESPONSE);
	hp.data = &ps;
	while (!ps.complete) {
		char buf[16384];
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			int w = wait_fd(fd, POLLIN, deadline);
			if (w <= 0) {
				snprintf(err, errlen, "%s",
					 w == 0 ? "no answer in time" : strerror(errno));
				goto fail;
			}
			continue;
		}
		if (r < 0) {
			snprintf(err, errlen, "reading the answer: %s", strerror(errno));
			goto fail;
		}
		/* r == 0 tells the parser about the close: it ends a close-delimited body. */
		size_t used = http_parser_execute(&hp, &hs, buf, (size_t)r);
		if (ps.complete)
			break;
		if (HTTP_PARSER_ERRNO(&hp) != HPE_OK || used != (size_t)r) {
			snprintf(err, errlen, "%s",
				 ps.too_big ? "answer too large"
					    : http_errno_description(HTTP_PARSER_ERRNO(&hp)));
			goto fail;
		}
		if (r == 0) {
			snprintf(err, errlen, "the connection closed before a complete answer");
			goto fail;
		}
	}
	close(fd);
	return 0;
fail:
	close(fd);
	http_response_free(resp);
	return -1;
}

void http_response_free(struct http_response *resp)
{
	CFX_FREE(resp->body);
	resp->len = 0;
}

/* ------------------------------------------------------------------------
 * The admin API
 * ------------------------------------------------------------------------ */

/* After a 401 or 403: how to sign in, or why signing in did not help. */
static void auth_hint(int status, int signed_in, const char *target)
{
	int super_only = !strncmp(target, "/v1/users", 9) || !strncmp(target, "/v1/acls", 8);

	if (status == 401 && !signed_in)
		fputs("(the server asks who you are: sign in with --user NAME and --password PW,\n"
		      " --password-file FILE or CONFLUX_PASSWORD, or with an admin token:\n"
		      " --token TOKEN or CONFLUX_TOKEN; CONFLUX_USER names the user too.\n"
		      " See conflux --help.)\n",
		      stderr);
	else if (status == 401)
		fputs("(the credentials were refused: check the user name and password (--user,\n"
		      " --password, --password-file, CONFLUX_USER, CONFLUX_PASSWORD) or the token\n"
		      " (--token, CONFLUX_TOKEN); a disabled user cannot sign in.)\n",
		      stderr);
	else if (status == 403 && !signed_in)
		fputs("(not signed in: the request was made as the user \"anonymous\"; sign in\n"
		      " with --user or --token, or CONFLUX_USER or CONFLUX_TOKEN.)\n",
		      stderr);
	else if (status == 403 && super_only)
		fputs("(only super users manage users and policies.)\n", stderr);
	else if (status == 403)
		fputs("(signed in, but no policy allows this; a super user grants it with\n"
		      " `conflux acl create`.)\n",
		      stderr);
}

int admin_call(const struct cli *c, const char *method, const char *target, json_t *body,
	       json_t **out, int *status)
{
	return admin_call_typed(c, method, target, "application/json", body, out, status);
}

int admin_call_typed(const struct cli *c, const char *method, const char *target,
		     const char *content_type, json_t *body, json_t **out, int *status)
{
	struct http_response r;
	char err[256], *text = NULL, authz[CLI_AUTHZ_MAX + 1];
	json_t *j = NULL;
	int rc, signed_in;

	if (out)
		*out = NULL;
	if (status)
		*status = 0;
	if (cli_credentials(c, authz, sizeof authz))
		return CLI_EUSAGE;
	signed_in = authz[0] != '\0';
	if (body)
		text = json_dumps(body, JSON_COMPACT);
	rc = http_request_typed(c->server, method, target, content_type, text, authz, c->timeout_ms,
				&r, err, sizeof err);
	cli_wipe(authz, sizeof authz);
	if (text)
		cli_wipe(text, strlen(text)); /* may hold a password (user create, update) */
	free(text);
	if (rc) {
		if (c->admin_optional)
			return CLI_EUNREACHABLE;
		fprintf(stderr,
			"conflux %s: cannot reach the admin API at %s: %s\n"
			"(is confluxd running? The address comes from --server or "
			"CONFLUX_SERVER.)\n",
			c->cmd, c->server, err);
		return CLI_EUNREACHABLE;
	}
	if (status)
		*status = r.status;
	if (r.len) {
		json_error_t je;
		j = json_loadb(r.body, r.len, JSON_DECODE_ANY, &je);
	}
	if (r.status < 200 || r.status > 299) {
		const char *code = cli_json_str(j, "error", NULL);
		const char *reason = cli_json_str(j, "reason", NULL);
		if (code || reason)
			fprintf(stderr, "conflux %s: server answered %d %s%s%s\n", c->cmd, r.status,
				code ? code : "", code && reason ? ": " : "", reason ? reason : "");
		else
			fprintf(stderr, "conflux %s: server answered %d to %s %s%s%.200s\n", c->cmd,
				r.status, method, target, r.len ? ": " : "", r.len ? r.body : "");
		auth_hint(r.status, signed_in, target);
		json_decref(j);
		http_response_free(&r);
		return CLI_EFAIL;
	}
	if (r.len && !j) {
		fprintf(stderr, "conflux %s: the answer to %s %s is not JSON: %.200s\n", c->cmd,
			method, target, r.body);
		http_response_free(&r);
		return CLI_EFAIL;
	}
	http_response_free(&r);
	if (out)
		*out = j;
	else
		json_decref(j);
	return CLI_OK;
}

int admin_grpc_endpoint(struct cli *c)
{
	char host[CLI_ADDR_MAX], shost[CLI_ADDR_MAX];
	json_t *st = NULL;
	const char *g;
	int port, sport, rc;

	if (c->grpc[0])
		return CLI_OK;
	rc = admin_call(c, "GET", "/v1/status", NULL, &st, NULL);
	if (rc) {
		if (rc == CLI_EUNREACHABLE)
			fprintf(stderr, "(the gRPC address is learned from the admin API; give it "
					"with --grpc HOST:PORT to skip that)\n");
		return rc;
	}
	g = cli_json_str(json_object_get(st, "listeners"), "grpc", NULL);
	if (!g || cfx_parse_hostport(g, host, sizeof host, &port) || port == 0) {
		json_decref(st);
		return cli_error(c,
				 "the server at %s has no gRPC listener (GET /v1/status: "
				 "listeners.grpc); give one with --grpc HOST:PORT",
				 c->server);
	}
	/* A server listening on every interface is reached where its admin API was. */
	if ((!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !host[0]) &&
	    cfx_parse_hostport(c->server, shost, sizeof shost, &sport) == 0)
		snprintf(host, sizeof host, "%s", shost);
	snprintf(c->grpc, sizeof c->grpc, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	json_decref(st);
	return CLI_OK;
}

int admin_get_list(const struct cli *c, const char *path, const char *key, json_t **out,
		   json_t **list)
{
	int rc = admin_call(c, "GET", path, NULL, out, NULL);

	*list = NULL;
	if (rc)
		return rc;
	if (c->json) {
		cli_json_print(*out ? *out : json_object());
		*out = NULL;
		return CLI_OK;
	}
	*list = cli_json_list(*out, key);
	if (!*list) {
		json_decref(*out);
		*out = NULL;
		return cli_error(c, "the answer to GET %s has no list of %s", path, key);
	}
	return CLI_OK;
}
