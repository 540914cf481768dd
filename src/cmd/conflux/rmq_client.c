/*
 * rmq_client.c - RocketMQ 5 gRPC calls for the conflux tool: identity,
 * message ids, QueryRoute, the Telemetry handshake, SendMessage,
 * ReceiveMessage, AckMessage and NotifyClientTermination.
 *
 * What the server expects (docs/grpc.md, docs/design/grpc-api.md):
 * x-mq-client-id on every call; Settings on a Telemetry stream before a
 * consumer receives (that registers the subscription); message ids made
 * by the client in the v1 format; business errors answered in-band in
 * Status.code with gRPC OK.
 *
 * The v1 message id (reference notes, section 1.7): 17 bytes shown as 34
 * upper-case hex characters:
 *
 *   OFFSET | SIZE | FIELD
 *   0      | 1    | version, 0x01
 *   1      | 6    | low 6 bytes of a MAC address of this host
 *   7      | 2    | low 2 bytes of the process id
 *   9      | 4    | seconds since 2021-01-01T00:00:00Z (low 32 bits)
 *   13     | 4    | per-process sequence number
 *
 * All fields big-endian.
 */
#include "cmd/conflux/rmq_client.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/clock.h"
#include "base/err.h"
#include "net/conn.h"

#define EPOCH_2021_S	  1609459200LL
#define RECEIVE_BATCH_MAX 32
#define MESSAGE_GROUP_SET APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___MESSAGE_GROUP_MESSAGE_GROUP

/* ------------------------------------------------------------------------
 * Identity: host, MAC address, message ids, client ids
 * ------------------------------------------------------------------------ */

static pthread_once_t ident_once = PTHREAD_ONCE_INIT;
static uint8_t ident_mac[6];
static char ident_host[256];
static uint32_t ident_seq;   /* next message id sequence (atomic) */
static uint32_t ident_index; /* next client index (atomic) */

/* Reads the first non-zero MAC of a non-loopback interface; 0 if found. */
static int read_mac(uint8_t mac[6])
{
	DIR *d = opendir("/sys/class/net");
	struct dirent *de;
	int found = -1;

	if (!d)
		return -1;
	while (found && (de = readdir(d))) {
		char path[512], line[64];
		unsigned v[6];
		FILE *f;

		if (de->d_name[0] == '.' || !strcmp(de->d_name, "lo"))
			continue;
		snprintf(path, sizeof path, "/sys/class/net/%s/address", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof line, f) &&
		    sscanf(line, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) ==
			    6 &&
		    (v[0] | v[1] | v[2] | v[3] | v[4] | v[5])) {
			for (int i = 0; i < 6; i++)
				mac[i] = (uint8_t)v[i];
			found = 0;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

static void ident_init(void)
{
	if (read_mac(ident_mac)) {
		/* No hardware address: a random one, marked locally administered. */
		if (getrandom(ident_mac, sizeof ident_mac, 0) != (ssize_t)sizeof ident_mac)
			memset(ident_mac, 0x5a, sizeof ident_mac);
		ident_mac[0] |= 0x02;
	}
	if (gethostname(ident_host, sizeof ident_host - 1) != 0 || !ident_host[0])
		snprintf(ident_host, sizeof ident_host, "localhost");
	/* Start the sequence anywhere, so two runs with a recycled pid differ too. */
	if (getrandom(&ident_seq, sizeof ident_seq, 0) != (ssize_t)sizeof ident_seq)
		ident_seq = (uint32_t)cfx_clock_mono_ns();
}

void rmq_new_message_id(char out[RMQ_ID_LEN + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	uint8_t b[17];
	uint32_t secs, seq;
	uint16_t pid = (uint16_t)getpid();

	pthread_once(&ident_once, ident_init);
	seq = __atomic_fetch_add(&ident_seq, 1, __ATOMIC_RELAXED);
	secs = (uint32_t)(cfx_clock_wall_ms() / 1000 - EPOCH_2021_S);
	b[0] = 0x01;
	memcpy(b + 1, ident_mac, 6);
	cfx_store_be16(b + 7, pid);
	cfx_store_be32(b + 9, secs);
	cfx_store_be32(b + 13, seq);
	for (int i = 0; i < 17; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[RMQ_ID_LEN] = '\0';
}

/* "host@pid@index@<ms in base 36>", as the SDKs make client ids. */
static void new_client_id(char *out, size_t len)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	char b36[16], *p = b36 + sizeof b36 - 1;
	uint64_t ms = (uint64_t)cfx_clock_wall_ms();
	uint32_t index;

	pthread_once(&ident_once, ident_init);
	index = __atomic_fetch_add(&ident_index, 1, __ATOMIC_RELAXED);
	*p = '\0';
	do {
		*--p = digits[ms % 36];
		ms /= 36;
	} while (ms && p > b36);
	snprintf(out, len, "%s@%d@%u@%s", ident_host, (int)getpid(), index, p);
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

const char *rmq_code_name(int code)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&apache__rocketmq__v2__code__descriptor, code);
	return v ? v->name : "UNKNOWN";
}

static const char *grpc_status_name(int s)
{
	static const char *const names[] = {
		"OK",
		"CANCELLED",
		"UNKNOWN",
		"INVALID_ARGUMENT",
		"DEADLINE_EXCEEDED",
		"NOT_FOUND",
		"ALREADY_EXISTS",
		"PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION",
		"ABORTED",
		"OUT_OF_RANGE",
		"UNIMPLEMENTED",
		"INTERNAL",
		"UNAVAILABLE",
		"DATA_LOSS",
		"UNAUTHENTICATED",
	};
	return s >= 0 && s < (int)CFX_ARRAY_LEN(names) ? names[s] : "RESET";
}

void rmq_err_format(const struct rmq_err *e, char *buf, size_t len)
{
	if (e->code)
		snprintf(buf, len, "%s (%d): %s", rmq_code_name(e->code), e->code, e->msg);
	else if (e->grpc_status > 0)
		snprintf(buf, len, "gRPC %s (%d): %s", grpc_status_name(e->grpc_status),
			 e->grpc_status, e->msg);
	else
		snprintf(buf, len, "%s", e->msg);
}

static void set_err(struct rmq_err *e, int code, const char *fmt, ...) CFX_PRINTF(3, 4);
static void set_err(struct rmq_err *e, int code, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	e->grpc_status = 0;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

void rmq_err_transport(struct rmq_cl *rc, int err, struct rmq_err *e)
{
	set_err(e, 0, "the connection to %s failed: %s", rc->addr,
		err == CFX_ECLOSED ? "closed by the server" : cfx_strerror(err));
	e->grpc_status = -1;
}

void rmq_err_grpc(int status, const char *message, struct rmq_err *e)
{
	e->code = 0;
	e->grpc_status = status;
	snprintf(e->msg, sizeof e->msg, "%s",
		 message && *message ? message
		 : status < 0	     ? "the call was reset by the server"
				     : "no message");
}

/* A Status with an error code: 0 (fills e) when it is OK. */
static int check_status(const RPB(Status) * st, struct rmq_err *e)
{
	if (!st) {
		set_err(e, 0, "the answer carries no status");
		return -1;
	}
	if (st->code == RCODE(OK))
		return 0;
	set_err(e, (int)st->code, "%s", st->message && *st->message ? st->message : "(no reason)");
	return -1;
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

/* Why a TCP connection to host:port fails, for the message (errno text). */
static const char *probe(const char *host, int port, int64_t timeout_ms)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	char port_s[16];
	const char *why = NULL;
	int fd;

	snprintf(port_s, sizeof port_s, "%d", port);
	if (getaddrinfo(host, port_s, &hints, &res))
		return "cannot resolve the host name";
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		if (connect(fd, res->ai_addr, res->ai_addrlen) != 0)
			why = strerror(errno == EINPROGRESS ? ETIMEDOUT : errno);
		close(fd);
	} else {
		why = strerror(errno);
	}
	freeaddrinfo(res);
	return why;
}

int rmq_connect(const char *addr, int64_t timeout_ms, struct rmq_cl **out, struct rmq_err *e)
{
	struct rmq_cl *rc = cfx_calloc(1, sizeof *rc);
	int err;

	snprintf(rc->addr, sizeof rc->addr, "%s", addr);
	rc->timeout_ms = timeout_ms;
	if (cfx_parse_hostport(addr, rc->host, sizeof rc->host, &rc->port) || rc->port == 0) {
		set_err(e, 0, "\"%s\" is not a host:port address", addr);
		cfx_free(rc);
		return -1;
	}
	err = grpc_client_connect(rc->host, rc->port, timeout_ms, &rc->gc);
	if (err) {
		const char *why = probe(rc->host, rc->port, timeout_ms);
		set_err(e, 0, "cannot connect to the gRPC API at %s: %s", addr,
			why ? why : cfx_strerror(err));
		e->grpc_status = -1;
		cfx_free(rc);
		return -1;
	}
	new_client_id(rc->client_id, sizeof rc->client_id);
	grpc_client_set_header(rc->gc, "x-mq-client-id", rc->client_id);
	grpc_client_set_header(rc->gc, "x-mq-protocol", "v2");
	grpc_client_set_header(rc->gc, "x-mq-client-version", "conflux-cli/" CLI_VERSION);
	*out = rc;
	return 0;
}

void rmq_set_credentials(struct rmq_cl *rc, const char *user, const char *password)
{
	snprintf(rc->user, sizeof rc->user, "%s", user ? user : "");
	snprintf(rc->secret, sizeof rc->secret, "%s", password ? password : "");
	rc->signed_ms = 0;
	rmq_sign(rc);
}

void rmq_sign(struct rmq_cl *rc)
{
	char date[32], authz[512], hex[2 * 20 + 1];
	unsigned char mac[20];
	unsigned int maclen = sizeof mac;
	time_t now = time(NULL);
	struct tm tm;

	if (!rc->user[0] || cfx_clock_mono_ms() - rc->signed_ms < 60000)
		return;
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
	HMAC(EVP_sha1(), rc->secret, (int)strlen(rc->secret), (const unsigned char *)date,
	     strlen(date), mac, &maclen);
	for (unsigned i = 0; i < maclen; i++)
		snprintf(hex + 2 * i, 3, "%02X", mac[i]);
	snprintf(authz, sizeof authz,
		 "MQv2-HMAC-SHA1 Credential=%s, SignedHeaders=x-mq-date-time, Signature=%s",
		 rc->user, hex);
	grpc_client_set_header(rc->gc, "x-mq-date-time", date);
	grpc_client_set_header(rc->gc, "authorization", authz);
	rc->signed_ms = cfx_clock_mono_ms();
}

void rmq_close(struct rmq_cl *rc)
{
	if (!rc)
		return;
	/* Closing the connection ends the Telemetry stream with it. */
	grpc_client_close(rc->gc);
	cli_wipe(rc->secret, sizeof rc->secret);
	cfx_free(rc);
}

int rmq_wait(struct rmq_cl *rc, int32_t id, int64_t timeout_ms, uint8_t **resp, size_t *len,
	     struct rmq_err *e)
{
	int64_t deadline = cfx_clock_mono_ms() + timeout_ms;
	struct grpc_client_event ev;

	*resp = NULL;
	*len = 0;
	for (;;) {
		int64_t left = deadline - cfx_clock_mono_ms();
		int r = left > 0 ? grpc_client_poll(rc->gc, left, &ev) : 0;
		if (r < 0) {
			rmq_err_transport(rc, r, e);
			goto fail;
		}
		if (r == 0) {
			set_err(e, 0, "no answer from %s within %lld ms", rc->addr,
				(long long)timeout_ms);
			e->grpc_status = -1;
			goto fail;
		}
		if (ev.stream_id != id) {
			cfx_free(ev.data); /* another call's (the Telemetry stream's) */
			cfx_free(ev.message);
			continue;
		}
		if (ev.type == GRPC_EV_MESSAGE) {
			cfx_free(*resp);
			*resp = ev.data;
			*len = ev.len;
			continue;
		}
		if (ev.status != 0) {
			rmq_err_grpc(ev.status, ev.message, e);
			cfx_free(ev.message);
			goto fail;
		}
		cfx_free(ev.message);
		return 0;
	}
fail:
	CFX_FREE(*resp);
	*len = 0;
	return -1;
}

/* Packs a message into a new buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = cfx_malloc(*len ? *len : 1);
	protobuf_c_message_pack(m, buf);
	return buf;
}

/* One unary call: packs `req`, waits for the answer. */
static int unary(struct rmq_cl *rc, const char *path, const ProtobufCMessage *req, uint8_t **resp,
		 size_t *resp_len, struct rmq_err *e)
{
	size_t len;
	uint8_t *buf = pack(req, &len);
	int32_t id;

	rmq_sign(rc);
	id = grpc_client_start(rc->gc, path, buf, len, 1, rc->timeout_ms);

	cfx_free(buf);
	if (id < 0) {
		rmq_err_transport(rc, id, e);
		return -1;
	}
	if (rmq_wait(rc, id, rc->timeout_ms + 1000, resp, resp_len, e))
		return -1;
	if (!*resp) {
		set_err(e, 0, "the server ended %s without an answer", path);
		return -1;
	}
	return 0;
}

/* The access point: what we dialled, as the SDKs describe it. */
struct endpoints_buf {
	RPB(Endpoints) ep;
	RPB(Address) a;
	RPB(Address) * ap[1];
};

static void fill_endpoints(struct rmq_cl *rc, struct endpoints_buf *b)
{
	struct in6_addr a6;
	struct in_addr a4;

	b->ep = (RPB(Endpoints))APACHE__ROCKETMQ__V2__ENDPOINTS__INIT;
	b->a = (RPB(Address))APACHE__ROCKETMQ__V2__ADDRESS__INIT;
	b->a.host = rc->host;
	b->a.port = rc->port;
	b->ap[0] = &b->a;
	b->ep.scheme = inet_pton(AF_INET, rc->host, &a4) == 1
			       ? APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__IPv4
		       : inet_pton(AF_INET6, rc->host, &a6) == 1
			       ? APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__IPv6
			       : APACHE__ROCKETMQ__V2__ADDRESS_SCHEME__DOMAIN_NAME;
	b->ep.n_addresses = 1;
	b->ep.addresses = b->ap;
}

void rmq_goodbye(struct rmq_cl *rc, const char *group)
{
	RPB(NotifyClientTerminationRequest)
	req = APACHE__ROCKETMQ__V2__NOTIFY_CLIENT_TERMINATION_REQUEST__INIT;
	RPB(Resource) g = APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	struct rmq_err e;
	uint8_t *resp = NULL;
	size_t len;

	if (!rc)
		return;
	if (group) {
		g.name = (char *)group;
		req.group = &g;
	}
	unary(rc, RMQ_PATH("NotifyClientTermination"), &req.base, &resp, &len, &e);
	cfx_free(resp); /* best effort: the answer changes nothing */
}

/* ------------------------------------------------------------------------
 * Routes and settings
 * ------------------------------------------------------------------------ */

int rmq_query_route(struct rmq_cl *rc, const char *topic, struct rmq_route *rt, struct rmq_err *e)
{
	RPB(QueryRouteRequest) req = APACHE__ROCKETMQ__V2__QUERY_ROUTE_REQUEST__INIT;
	RPB(Resource) t = APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	RPB(QueryRouteResponse) * r;
	struct endpoints_buf eb;
	uint8_t *resp;
	size_t len;
	int rc2 = -1;

	memset(rt, 0, sizeof *rt);
	t.name = (char *)topic;
	req.topic = &t;
	fill_endpoints(rc, &eb);
	req.endpoints = &eb.ep;
	if (unary(rc, RMQ_PATH("QueryRoute"), &req.base, &resp, &len, e))
		return -1;
	r = RPBF(query_route_response, unpack)(NULL, len, resp);
	cfx_free(resp);
	if (!r) {
		set_err(e, 0, "malformed QueryRouteResponse");
		return -1;
	}
	if (check_status(r->status, e))
		goto out;
	if (r->n_message_queues == 0) {
		set_err(e, 0, "the route of topic %s has no queue", topic);
		goto out;
	}
	for (size_t i = 0; i < r->n_message_queues; i++) {
		const RPB(MessageQueue) *mq = r->message_queues[i];
		for (size_t k = 0; k < mq->n_accept_message_types; k++)
			if ((unsigned)mq->accept_message_types[k] < 32)
				rt->types |= 1u << mq->accept_message_types[k];
		if (i == 0 && mq->broker && mq->broker->name)
			snprintf(rt->broker, sizeof rt->broker, "%s", mq->broker->name);
	}
	rt->queues = (uint32_t)r->n_message_queues;
	rc2 = 0;
out:
	RPBF(query_route_response, free_unpacked)(r, NULL);
	return rc2;
}

static void set_duration(Google__Protobuf__Duration *d, int64_t ms)
{
	d->seconds = ms / 1000;
	d->nanos = (int32_t)(ms % 1000) * 1000000;
}

/*
 * Opens the Telemetry stream with `set` and waits for the server's
 * settings. Returns the answer (free with telemetry_command free_unpacked)
 * or NULL with `e` filled.
 */
static RPB(TelemetryCommand) * telemetry(struct rmq_cl *rc, RPB(Settings) * set, struct rmq_err *e)
{
	RPB(TelemetryCommand) cmd = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__INIT;
	RPB(UA) ua = APACHE__ROCKETMQ__V2__UA__INIT;
	Google__Protobuf__Duration timeout = GOOGLE__PROTOBUF__DURATION__INIT;
	struct endpoints_buf eb;
	int64_t deadline;
	size_t len;
	uint8_t *buf;

	fill_endpoints(rc, &eb);
	set->access_point = &eb.ep;
	set_duration(&timeout, rc->timeout_ms);
	set->request_timeout = &timeout;
	ua.version = "conflux-cli/" CLI_VERSION;
	ua.platform = "linux";
	ua.hostname = ident_host;
	set->user_agent = &ua;
	cmd.command_case = APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_SETTINGS;
	cmd.settings = set;
	buf = pack(&cmd.base, &len);
	/* No deadline: the stream lives as long as the client. */
	rmq_sign(rc);
	rc->telemetry = grpc_client_start(rc->gc, RMQ_PATH("Telemetry"), buf, len, 0, 0);
	cfx_free(buf);
	if (rc->telemetry < 0) {
		rmq_err_transport(rc, rc->telemetry, e);
		rc->telemetry = 0;
		return NULL;
	}
	deadline = cfx_clock_mono_ms() + rc->timeout_ms;
	for (;;) {
		struct grpc_client_event ev;
		int64_t left = deadline - cfx_clock_mono_ms();
		int r = left > 0 ? grpc_client_poll(rc->gc, left, &ev) : 0;
		if (r < 0) {
			rmq_err_transport(rc, r, e);
			return NULL;
		}
		if (r == 0) {
			set_err(e, 0, "no settings from %s within %lld ms", rc->addr,
				(long long)rc->timeout_ms);
			return NULL;
		}
		if (ev.stream_id != rc->telemetry) {
			cfx_free(ev.data);
			cfx_free(ev.message);
			continue;
		}
		if (ev.type == GRPC_EV_END) {
			rmq_err_grpc(ev.status, ev.message, e);
			if (!ev.status)
				set_err(e, 0, "the server closed the Telemetry stream");
			cfx_free(ev.message);
			rc->telemetry = 0;
			return NULL;
		}
		RPB(TelemetryCommand) *in = RPBF(telemetry_command, unpack)(NULL, ev.len, ev.data);
		cfx_free(ev.data);
		if (!in) {
			set_err(e, 0, "malformed TelemetryCommand from the server");
			return NULL;
		}
		if (in->status && check_status(in->status, e)) {
			RPBF(telemetry_command, free_unpacked)(in, NULL);
			return NULL;
		}
		if (in->command_case == APACHE__ROCKETMQ__V2__TELEMETRY_COMMAND__COMMAND_SETTINGS)
			return in;
		RPBF(telemetry_command, free_unpacked)(in, NULL); /* a server command: not ours */
	}
}

int rmq_settings_producer(struct rmq_cl *rc, const char *topic, int64_t *max_body,
			  struct rmq_err *e)
{
	RPB(Settings) set = APACHE__ROCKETMQ__V2__SETTINGS__INIT;
	RPB(Publishing) pub = APACHE__ROCKETMQ__V2__PUBLISHING__INIT;
	RPB(Resource) t = APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	RPB(Resource) * tp[1] = {&t};
	RPB(TelemetryCommand) * in;

	t.name = (char *)topic;
	pub.n_topics = 1;
	pub.topics = tp;
	pub.validate_message_type = 1;
	set._client_type_case = APACHE__ROCKETMQ__V2__SETTINGS___CLIENT_TYPE_CLIENT_TYPE;
	set.client_type = APACHE__ROCKETMQ__V2__CLIENT_TYPE__PRODUCER;
	set.pub_sub_case = APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_PUBLISHING;
	set.publishing = &pub;
	in = telemetry(rc, &set, e);
	if (!in)
		return -1;
	if (max_body) {
		const RPB(Settings) *got = in->settings;
		int pub = got->pub_sub_case == APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_PUBLISHING;
		*max_body = pub && got->publishing ? got->publishing->max_body_size : 0;
	}
	RPBF(telemetry_command, free_unpacked)(in, NULL);
	return 0;
}

int rmq_settings_consumer(struct rmq_cl *rc, const char *group, const char *topic,
			  const char *tag_expr, int64_t wait_ms, int *fifo, struct rmq_err *e)
{
	RPB(Settings) set = APACHE__ROCKETMQ__V2__SETTINGS__INIT;
	RPB(Subscription) sub = APACHE__ROCKETMQ__V2__SUBSCRIPTION__INIT;
	RPB(Resource) g = APACHE__ROCKETMQ__V2__RESOURCE__INIT, t = g;
	RPB(SubscriptionEntry) ent = APACHE__ROCKETMQ__V2__SUBSCRIPTION_ENTRY__INIT;
	RPB(SubscriptionEntry) * entp[1] = {&ent};
	RPB(FilterExpression) fe = APACHE__ROCKETMQ__V2__FILTER_EXPRESSION__INIT;
	Google__Protobuf__Duration poll = GOOGLE__PROTOBUF__DURATION__INIT;
	RPB(TelemetryCommand) * in;

	g.name = (char *)group;
	t.name = (char *)topic;
	fe.type = APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG;
	fe.expression = (char *)(tag_expr ? tag_expr : "*");
	ent.topic = &t;
	ent.expression = &fe;
	sub.group = &g;
	sub.n_subscriptions = 1;
	sub.subscriptions = entp;
	set_duration(&poll, wait_ms);
	sub.long_polling_timeout = &poll;
	set._client_type_case = APACHE__ROCKETMQ__V2__SETTINGS___CLIENT_TYPE_CLIENT_TYPE;
	set.client_type = APACHE__ROCKETMQ__V2__CLIENT_TYPE__SIMPLE_CONSUMER;
	set.pub_sub_case = APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_SUBSCRIPTION;
	set.subscription = &sub;
	in = telemetry(rc, &set, e);
	if (!in)
		return -1;
	if (fifo) {
		const RPB(Settings) *got = in->settings;
		int sub = got->pub_sub_case == APACHE__ROCKETMQ__V2__SETTINGS__PUB_SUB_SUBSCRIPTION;
		*fifo = sub && got->subscription ? got->subscription->fifo : 0;
	}
	RPBF(telemetry_command, free_unpacked)(in, NULL);
	return 0;
}

/* ------------------------------------------------------------------------
 * SendMessage
 * ------------------------------------------------------------------------ */

uint8_t *rmq_pack_send(const char *topic, struct rmq_msg_out *m, size_t n, size_t *len)
{
	RPB(SendMessageRequest) req = APACHE__ROCKETMQ__V2__SEND_MESSAGE_REQUEST__INIT;
	RPB(Resource) t = APACHE__ROCKETMQ__V2__RESOURCE__INIT;
	RPB(Message) *msgs = cfx_calloc(n, sizeof *msgs), **msgp = cfx_calloc(n, sizeof *msgp);
	RPB(SystemProperties) *sps = cfx_calloc(n, sizeof *sps);
	Google__Protobuf__Timestamp *born = cfx_calloc(n, sizeof *born);
	RPB(Message__UserPropertiesEntry) * ents, **entp;
	size_t nprops = 0, at = 0;
	int64_t now = cfx_clock_wall_ms();
	uint8_t *buf;

	pthread_once(&ident_once, ident_init);
	for (size_t i = 0; i < n; i++)
		nprops += m[i].nprops;
	ents = cfx_calloc(nprops + 1, sizeof *ents);
	entp = cfx_calloc(nprops + 1, sizeof *entp);
	t.name = (char *)topic;
	for (size_t i = 0; i < n; i++) {
		RPB(Message) *pm = &msgs[i];
		RPB(SystemProperties) *sp = &sps[i];

		rmq_new_message_id(m[i].id);
		*pm = (RPB(Message))APACHE__ROCKETMQ__V2__MESSAGE__INIT;
		*sp = (RPB(SystemProperties))APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES__INIT;
		born[i] = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		pm->topic = &t;
		pm->body.data = (uint8_t *)m[i].body;
		pm->body.len = m[i].len;
		sp->message_id = m[i].id;
		sp->body_encoding = APACHE__ROCKETMQ__V2__ENCODING__IDENTITY;
		sp->message_type = m[i].group ? APACHE__ROCKETMQ__V2__MESSAGE_TYPE__FIFO
					      : APACHE__ROCKETMQ__V2__MESSAGE_TYPE__NORMAL;
		born[i].seconds = (m[i].born_ms ? m[i].born_ms : now) / 1000;
		born[i].nanos = (int32_t)((m[i].born_ms ? m[i].born_ms : now) % 1000) * 1000000;
		sp->born_timestamp = &born[i];
		sp->born_host = ident_host;
		if (m[i].tag) {
			sp->_tag_case = APACHE__ROCKETMQ__V2__SYSTEM_PROPERTIES___TAG_TAG;
			sp->tag = (char *)m[i].tag;
		}
		sp->n_keys = m[i].nkeys;
		sp->keys = (char **)m[i].keys;
		if (m[i].group) {
			sp->_message_group_case = MESSAGE_GROUP_SET;
			sp->message_group = (char *)m[i].group;
		}
		pm->system_properties = sp;
		if (m[i].nprops) {
			pm->user_properties = &entp[at];
			pm->n_user_properties = m[i].nprops;
			for (size_t k = 0; k < m[i].nprops; k++, at++) {
				ents[at] = (RPB(Message__UserPropertiesEntry))
					APACHE__ROCKETMQ__V2__MESSAGE__USER_PROPERTIES_ENTRY__INIT;
				ents[at].key = (char *)m[i].props[k].key;
				ents[at].value = (char *)m[i].props[k].value;
				entp[at] = &ents[at];
			}
		}
		msgp[i] = pm;
	}
	req.n_messages = n;
	req.messages = msgp;
	buf = pack(&req.base, len);
	cfx_free(ents);
	cfx_free(entp);
	cfx_free(born);
	cfx_free(sps);
	cfx_free(msgp);
	cfx_free(msgs);
	return buf;
}

int rmq_parse_send(const uint8_t *p, size_t len, struct rmq_send_entry *ent, size_t n,
		   struct rmq_err *e)
{
	RPB(SendMessageResponse) *r = RPBF(send_message_response, unpack)(NULL, len, p);
	int count;

	if (!r) {
		set_err(e, 0, "malformed SendMessageResponse");
		return -1;
	}
	if (r->n_entries == 0) {
		/* The whole request was refused (or, oddly, nothing was sent). */
		count = check_status(r->status, e) ? -1 : 0;
		RPBF(send_message_response, free_unpacked)(r, NULL);
		return count;
	}
	count = (int)CFX_MIN(r->n_entries, n);
	for (int i = 0; i < count; i++) {
		const RPB(SendResultEntry) *se = r->entries[i];
		ent[i].code = se->status ? (int)se->status->code : 0;
		snprintf(ent[i].why, sizeof ent[i].why, "%s",
			 se->status && se->status->message ? se->status->message : "");
		snprintf(ent[i].msg_id, sizeof ent[i].msg_id, "%s",
			 se->message_id ? se->message_id : "");
		ent[i].offset = se->offset;
	}
	RPBF(send_message_response, free_unpacked)(r, NULL);
	return count;
}

int rmq_send(struct rmq_cl *rc, const char *topic, struct rmq_msg_out *m, size_t n,
	     struct rmq_send_entry *ent, struct rmq_err *e)
{
	size_t len;
	uint8_t *buf = rmq_pack_send(topic, m, n, &len), *resp;
	int32_t id =
		(rmq_sign(rc), grpc_client_start(rc->gc, RMQ_PATH("SendMessage"), buf, len, 1,
						 rc->timeout_ms));
	int got;

	cfx_free(buf);
	for (size_t i = 0; i < n; i++)
		ent[i] = (struct rmq_send_entry){.code = 0, .offset = -1};
	if (id < 0) {
		rmq_err_transport(rc, id, e);
		return -1;
	}
	if (rmq_wait(rc, id, rc->timeout_ms + 1000, &resp, &len, e))
		return -1;
	if (!resp) {
		set_err(e, 0, "the server ended SendMessage without an answer");
		return -1;
	}
	got = rmq_parse_send(resp, len, ent, n, e);
	cfx_free(resp);
	if (got < 0)
		return -1;
	if ((size_t)got != n) {
		set_err(e, 0, "the server answered %d results for %zu messages", got, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (ent[i].code != RCODE(OK)) {
			set_err(e, ent[i].code, "%s", ent[i].why[0] ? ent[i].why : "(no reason)");
			return -1;
		}
	return 0;
}

/* ------------------------------------------------------------------------
 * ReceiveMessage and AckMessage
 * ------------------------------------------------------------------------ */

int32_t rmq_receive_start(struct rmq_cl *rc, const struct rmq_recv_opts *o)
{
	RPB(ReceiveMessageRequest) req = APACHE__ROCKETMQ__V2__RECEIVE_MESSAGE_REQUEST__INIT;
	RPB(Resource) g = APACHE__ROCKETMQ__V2__RESOURCE__INIT, t = g;
	RPB(MessageQueue) mq = APACHE__ROCKETMQ__V2__MESSAGE_QUEUE__INIT;
	RPB(Broker) br = APACHE__ROCKETMQ__V2__BROKER__INIT;
	RPB(FilterExpression) fe = APACHE__ROCKETMQ__V2__FILTER_EXPRESSION__INIT;
	Google__Protobuf__Duration inv = GOOGLE__PROTOBUF__DURATION__INIT, poll = inv;
	struct endpoints_buf eb;
	size_t len;
	uint8_t *buf;
	int32_t id;

	g.name = (char *)o->group;
	t.name = (char *)o->topic;
	fill_endpoints(rc, &eb);
	br.name = (char *)(o->broker && *o->broker ? o->broker : "");
	br.endpoints = &eb.ep;
	mq.topic = &t;
	mq.id = -1; /* any queue: load balancing is per message (POP) */
	mq.permission = APACHE__ROCKETMQ__V2__PERMISSION__READ_WRITE;
	mq.broker = &br;
	fe.type = APACHE__ROCKETMQ__V2__FILTER_TYPE__TAG;
	fe.expression = (char *)(o->tag_expr ? o->tag_expr : "*");
	req.group = &g;
	req.message_queue = &mq;
	req.filter_expression = &fe;
	req.batch_size = CFX_MAX(1, CFX_MIN(o->batch, RECEIVE_BATCH_MAX));
	set_duration(&inv, o->invisible_ms);
	req.invisible_duration = &inv;
	set_duration(&poll, o->wait_ms);
	req.long_polling_timeout = &poll;
	buf = pack(&req.base, &len);
	rmq_sign(rc);
	id = grpc_client_start(rc->gc, RMQ_PATH("ReceiveMessage"), buf, len, 1,
			       o->wait_ms + rc->timeout_ms);
	cfx_free(buf);
	return id;
}

RPB(ReceiveMessageResponse) * rmq_parse_receive(const uint8_t *p, size_t len)
{
	return RPBF(receive_message_response, unpack)(NULL, len, p);
}

int32_t rmq_ack_start(struct rmq_cl *rc, const char *group, const char *topic,
		      const struct rmq_ack_item *it, size_t n)
{
	RPB(AckMessageRequest) req = APACHE__ROCKETMQ__V2__ACK_MESSAGE_REQUEST__INIT;
	RPB(Resource) g = APACHE__ROCKETMQ__V2__RESOURCE__INIT, t = g;
	RPB(AckMessageEntry) *ents = cfx_calloc(n + 1, sizeof *ents);
	RPB(AckMessageEntry) **entp = cfx_calloc(n + 1, sizeof *entp);
	size_t len;
	uint8_t *buf;
	int32_t id;

	g.name = (char *)group;
	t.name = (char *)topic;
	for (size_t i = 0; i < n; i++) {
		ents[i] = (RPB(AckMessageEntry))APACHE__ROCKETMQ__V2__ACK_MESSAGE_ENTRY__INIT;
		ents[i].message_id = (char *)it[i].msg_id;
		ents[i].receipt_handle = (char *)it[i].handle;
		entp[i] = &ents[i];
	}
	req.group = &g;
	req.topic = &t;
	req.n_entries = n;
	req.entries = entp;
	buf = pack(&req.base, &len);
	rmq_sign(rc);
	id = grpc_client_start(rc->gc, RMQ_PATH("AckMessage"), buf, len, 1, rc->timeout_ms);
	cfx_free(buf);
	cfx_free(ents);
	cfx_free(entp);
	return id;
}

int rmq_parse_ack(const uint8_t *p, size_t len, struct rmq_err *e)
{
	RPB(AckMessageResponse) *r = RPBF(ack_message_response, unpack)(NULL, len, p);
	int rc = 0;

	if (!r) {
		set_err(e, 0, "malformed AckMessageResponse");
		return -1;
	}
	for (size_t i = 0; i < r->n_entries && !rc; i++)
		if (r->entries[i]->status && r->entries[i]->status->code != RCODE(OK))
			rc = check_status(r->entries[i]->status, e);
	if (!rc)
		rc = check_status(r->status, e);
	RPBF(ack_message_response, free_unpacked)(r, NULL);
	return rc;
}

int rmq_ack(struct rmq_cl *rc, const char *group, const char *topic, const struct rmq_ack_item *it,
	    size_t n, struct rmq_err *e)
{
	int32_t id = rmq_ack_start(rc, group, topic, it, n);
	uint8_t *resp;
	size_t len;
	int r;

	if (id < 0) {
		rmq_err_transport(rc, id, e);
		return -1;
	}
	if (rmq_wait(rc, id, rc->timeout_ms + 1000, &resp, &len, e))
		return -1;
	if (!resp) {
		set_err(e, 0, "the server ended AckMessage without an answer");
		return -1;
	}
	r = rmq_parse_ack(resp, len, e);
	cfx_free(resp);
	return r;
}
