/*
 * confluxd - the Conflux server.
 *
 * Reads its settings (defaults, then --config FILE, then command-line
 * overrides), opens the store (recovering after a crash), and runs until
 * SIGTERM or SIGINT, when it flushes, checkpoints and exits 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "broker/auth.h"
#include "bridge/bridge.h"
#include "broker/broker.h"
#include "cmd/confluxd/settings.h"
#include "net/conn.h"
#include "net/tls.h"
#include "net/ws.h"
#include "proto/grpc/rmq.h"
#include "proto/kafka/kafka.h"
#include "proto/mqtt/mqtt.h"
#include "proto/http/admin.h"
#include "store/store.h"

#define CFX_VERSION "0.1.0"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: confluxd [--config FILE] [--SETTING VALUE | --SETTING=VALUE ...]\n"
		"       confluxd --help | --version | --print-config-docs\n"
		"\n"
		"Starts with no config file at all; data goes to ./data unless --data-dir says "
		"otherwise.\n"
		"Sizes accept KiB/MiB/GiB (and KB/MB/GB), durations ms/s/m/h/d.\n"
		"\n"
		"Settings:\n");
	cfx_conf_print_help(cfx_settings_table, cfx_settings_count, out);
}

/* Splits "--name=value" or "--name value"; returns the index of the next arg. */
static int parse_opt(int argc, char **argv, int i, char *name, size_t name_len, const char **value)
{
	const char *arg = argv[i] + 2, *eq = strchr(arg, '=');

	if (eq) {
		snprintf(name, name_len, "%.*s", (int)(eq - arg), arg);
		*value = eq + 1;
		return i + 1;
	}
	snprintf(name, name_len, "%s", arg);
	*value = i + 1 < argc ? argv[i + 1] : NULL;
	return i + 2;
}

static int load_settings(int argc, char **argv, struct cfx_settings *s)
{
	char err[512], name[256];
	const char *value;
	int rc;

	rc = cfx_conf_defaults(cfx_settings_table, cfx_settings_count, s);
	CFX_ASSERT(rc == 0);
	/* The config file first, so that the command line overrides it. */
	for (int i = 1; i < argc;) {
		if (strncmp(argv[i], "--", 2) != 0) {
			fprintf(stderr, "confluxd: unexpected argument \"%s\"\n", argv[i]);
			return 2;
		}
		int next = parse_opt(argc, argv, i, name, sizeof name, &value);
		if (!value) {
			fprintf(stderr, "confluxd: --%s needs a value\n", name);
			return 2;
		}
		if (strcmp(name, "config") == 0) {
			rc = cfx_conf_load_file(cfx_settings_table, cfx_settings_count, s, value, err,
						sizeof err);
			if (rc) {
				fprintf(stderr, "confluxd: %s\n", err);
				return 2;
			}
		}
		i = next;
	}
	for (int i = 1; i < argc;) {
		int next = parse_opt(argc, argv, i, name, sizeof name, &value);
		if (strcmp(name, "config") != 0) {
			rc = cfx_conf_set(cfx_settings_table, cfx_settings_count, s, name, value, err,
					  sizeof err);
			if (rc) {
				fprintf(stderr, "confluxd: %s (see confluxd --help)\n", err);
				return 2;
			}
		}
		i = next;
	}
	return 0;
}

static void log_recovery(const char *dir, const struct cfx_store_recovery *r)
{
	if (r->fresh) {
		cfx_log_info("store: created a new store in %s", dir);
		return;
	}
	cfx_log_info("store: opened %s: %u segments, %u queues, log positions %" PRIu64
		     "..%" PRIu64,
		     dir, r->segments, r->queues, r->log_start, r->log_end);
	if (r->clean)
		cfx_log_info("store: last shutdown was clean; no scan needed (%" PRId64 " ms)",
			     r->elapsed_ms);
	else
		cfx_log_info("store: recovered after %s: re-indexed %" PRIu64 " entries (%" PRIu64
			     " bytes) in %" PRId64 " ms%s",
			     r->checkpoint_missing ? "losing the checkpoint" : "an unclean shutdown",
			     r->scanned_entries, r->scanned_bytes, r->elapsed_ms,
			     r->truncated_bytes ? "; the torn tail was cut off" : "");
}

/* Is `addr` ("host:port") on the loopback interface? */
static int is_loopback(const char *addr)
{
	char host[256];
	int port;

	if (cfx_parse_hostport(addr, host, sizeof host, &port))
		return 0;
	return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

static int listen_enabled(const char *addr)
{
	return addr && *addr && strcmp(addr, "off") != 0;
}

#define HTTP_CONNECTIONS_MAX 1000 /* admin clients and scrapers at once */

/*
 * Writes the address a listener is bound to: `addr` with the port the
 * system chose when it asked for port 0 ("[v6]:port" for IPv6 hosts).
 */
static void bound_addr(const char *addr, int port, char *out, size_t len)
{
	char host[256];
	int want;

	if (cfx_parse_hostport(addr, host, sizeof host, &want)) {
		snprintf(out, len, "%s", addr);
		return;
	}
	snprintf(out, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* The secure default: no listener beyond loopback without authentication. */
static int check_exposure(const struct cfx_settings *s, struct cfx_auth *auth)
{
	const char *addrs[] = { s->grpc_listen, s->http_listen, s->kafka_listen, s->mqtt_listen,
				s->mqtt_ws_listen };
	const char *names[] = { "grpc.listen", "http.listen", "kafka.listen", "mqtt.listen",
				"mqtt.ws_listen" };

	for (size_t i = 0; i < CFX_ARRAY_LEN(addrs); i++) {
		if (!listen_enabled(addrs[i]) || is_loopback(addrs[i]))
			continue;
		if (cfx_auth_enabled(auth)) {
			if (s->allow_anonymous)
				cfx_log_warn("%s = %s: clients that do not sign in act as the user "
					     "\"anonymous\" (allow_anonymous = true)",
					     names[i], addrs[i]);
			continue;
		}
		if (!s->allow_anonymous) {
			cfx_log_error("%s = %s is not a loopback address and no authentication is "
				      "configured; set allow_anonymous = true to accept anonymous "
				      "clients from the network",
				      names[i], addrs[i]);
			return -1;
		}
		cfx_log_warn("%s = %s accepts anonymous clients from the network "
			     "(allow_anonymous = true)",
			     names[i], addrs[i]);
	}
	return 0;
}

/* TLS for a listener when its certificate and key are set; NULL (plaintext) otherwise. */
static int tls_for(const char *name, const char *cert, const char *key, const char *ca,
		   const char *alpn, struct cfx_tls_ctx **out)
{
	struct cfx_tls_opts to = { .cert_file = cert, .key_file = key, .ca_file = ca, .alpn = alpn };

	*out = NULL;
	if (!*cert && !*key)
		return 0;
	if (!*cert || !*key) {
		cfx_log_error("%s: TLS needs both %s.tls_cert and %s.tls_key", name, name, name);
		return CFX_EINVAL;
	}
	if (cfx_tls_ctx_new(&to, out)) {
		cfx_log_error("%s: cannot load the TLS certificate %s or key %s", name, cert, key);
		return CFX_EINVAL;
	}
	return 0;
}

/* SIGHUP: new certificates for listeners already speaking TLS. */
static void tls_reload(const char *name, struct cfx_tls_ctx *ctx, const char *cert,
		       const char *key, const char *ca, const char *alpn)
{
	struct cfx_tls_opts to = { .cert_file = cert, .key_file = key, .ca_file = ca, .alpn = alpn };

	if (!ctx)
		return;
	if (cfx_tls_ctx_reload(ctx, &to))
		cfx_log_warn("SIGHUP: %s keeps its old TLS certificate: the new one does not load",
			     name);
	else
		cfx_log_info("SIGHUP: %s TLS certificate reloaded", name);
}

int main(int argc, char **argv)
{
	struct cfx_tls_ctx *grpc_tls = NULL, *http_tls = NULL, *kafka_tls = NULL, *mqtt_tls = NULL;
	struct cfx_settings s;
	struct cfx_broker_opts bo;
	struct cfx_store_recovery rec;
	struct cfx_broker *br = NULL;
	struct cfx_auth *auth = NULL;
	struct cfx_bridge *bridge = NULL;
	struct cfx_server *srv = NULL;
	struct rmq_service *rmq = NULL;
	struct rmq_opts ro;
	struct admin_service *admin = NULL;
	char grpc_addr[ADMIN_ADDR_MAX] = "", http_addr[ADMIN_ADDR_MAX] = "";
	char kafka_addr[ADMIN_ADDR_MAX] = "";
	struct kafka_service *kafka = NULL;
	char mqtt_addr[ADMIN_ADDR_MAX] = "", mqtt_ws_addr[ADMIN_ADDR_MAX] = "";
	struct mqtt_service *mqtt = NULL;
	struct cfx_ws_opts mqtt_ws = { .subprotocol = "mqtt" }; /* lives as long as the server */
	int port;
	sigset_t sigs;
	int rc, sig, nthreads;

	/* Freed buffers stay with the allocator instead of going back to the
	 * kernel after every response: returning and re-faulting them cost
	 * more than the memory (they are reused at once under load). */
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf("confluxd %s\n", CFX_VERSION);
			return 0;
		}
		if (!strcmp(argv[i], "--print-config-docs")) {
			cfx_conf_print_markdown(cfx_settings_table, cfx_settings_count, stdout);
			return 0;
		}
	}
	rc = load_settings(argc, argv, &s);
	if (rc) {
		cfx_conf_free(cfx_settings_table, cfx_settings_count, &s);
		return rc;
	}
	cfx_log_set_level(s.log_level);

	/* Signals are taken synchronously by this thread; every thread started
	 * later inherits the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	cfx_log_info("confluxd %s starting; data directory %s", CFX_VERSION, s.data_dir);
	cfx_broker_opts_default(&bo);
	cfx_settings_to_store_opts(&s, &bo.store);
	bo.auto_create = s.auto_create;
	bo.default_queues = (uint32_t)s.default_queues;
	bo.pop_flush_interval_ms = s.pop_flush_interval_ms;
	bo.timer_max_ms = s.timer_max_ms;
	bo.txn_check_first_ms = s.txn_check_first_ms;
	bo.txn_check_interval_ms = s.txn_check_interval_ms;
	bo.txn_check_max = (uint32_t)s.txn_check_max;
	bo.txn_check_default_commit = s.txn_check_default == 1;
	if (s.retention_ms && s.retention_ms <= s.timer_max_ms)
		cfx_log_warn("store.retention_time (%" PRId64 " ms) is not above broker.timer_max "
			     "(%" PRId64 " ms): a delayed message may be deleted before it is due",
			     s.retention_ms, s.timer_max_ms);
	rc = cfx_broker_open(&bo, &br, &rec);
	if (rc) {
		cfx_log_error("cannot open %s: %s", s.data_dir, cfx_strerror(rc));
		cfx_conf_free(cfx_settings_table, cfx_settings_count, &s);
		return 1;
	}
	log_recovery(s.data_dir, &rec);

	/* Users and policies (meta/auth.json), then the exposure they allow. */
	{
		char adir[4096];
		struct cfx_auth_opts ao = { .dir = adir,
					    .scram_iterations = (uint32_t)s.auth_scram_iterations,
					    .allow_anonymous = s.allow_anonymous };
		snprintf(adir, sizeof adir, "%s/meta", s.data_dir);
		rc = cfx_auth_open(&ao, &auth);
		if (rc)
			cfx_log_error("cannot open the users and policies in %s: %s", adir,
				      cfx_strerror(rc));
		else if (check_exposure(&s, auth))
			rc = CFX_EINVAL;
		if (rc) {
			cfx_auth_close(auth);
			cfx_broker_close(br);
			cfx_conf_free(cfx_settings_table, cfx_settings_count, &s);
			return 2;
		}
		if (cfx_auth_enabled(auth))
			cfx_log_info("auth: clients sign in (users and policies in %s)", adir);
	}

	/* The EventBridge: buses, rules, targets (meta/eventbridge.json). */
	if (s.eventbridge) {
		char edir[4096];
		struct cfx_bridge_opts eo;
		cfx_bridge_opts_default(&eo);
		snprintf(edir, sizeof edir, "%s/meta", s.data_dir);
		eo.br = br;
		eo.dir = edir;
		eo.durability = s.durability == CFX_SETTINGS_SYNC ? CFX_DURABILITY_SYNC
								   : CFX_DURABILITY_ASYNC;
		eo.limits.event_bytes_max = (size_t)s.event_bytes_max;
		eo.webhook_timeout_ms = s.webhook_timeout_ms;
		eo.mqtt_topic = s.mqtt_topic;
		rc = cfx_bridge_open(&eo, &bridge);
		if (rc) {
			cfx_log_error("cannot start the EventBridge: %s", cfx_strerror(rc));
			cfx_auth_close(auth);
			cfx_broker_close(br);
			cfx_conf_free(cfx_settings_table, cfx_settings_count, &s);
			return 1;
		}
	}

	nthreads = s.net_threads ? (int)s.net_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	rc = tls_for("grpc", s.grpc_tls_cert, s.grpc_tls_key, s.grpc_tls_client_ca, "h2", &grpc_tls);
	if (!rc)
		rc = tls_for("kafka", s.kafka_tls_cert, s.kafka_tls_key, s.kafka_tls_client_ca, NULL,
			     &kafka_tls);
	if (!rc)
		rc = tls_for("mqtt", s.mqtt_tls_cert, s.mqtt_tls_key, s.mqtt_tls_client_ca, NULL,
			     &mqtt_tls);
	if (!rc)
		rc = tls_for("http", s.http_tls_cert, s.http_tls_key, s.http_tls_client_ca,
			     "http/1.1", &http_tls);
	if (!rc)
		rc = cfx_server_new(&srv, nthreads);
	if (!rc && listen_enabled(s.grpc_listen)) {
		rmq_opts_default(&ro);
		ro.broker_name = s.broker_name;
		ro.advertised = *s.grpc_advertised ? s.grpc_advertised : NULL;
		ro.durability = s.durability == CFX_SETTINGS_SYNC ? CFX_DURABILITY_SYNC
								  : CFX_DURABILITY_ASYNC;
		ro.max_body_bytes = s.message_body_max;
		ro.long_poll_max_ms = s.long_poll_max_ms;
		ro.auto_renew_invisible_ms = s.auto_renew_invisible_ms;
		ro.auth = auth;
		rmq = rmq_service_new(br, &ro);
		struct cfx_listener_opts lo = { .name = "grpc",
						.addr = s.grpc_listen,
						.proto = &grpc_conn_proto,
						.proto_arg = &rmq->grpc,
						.conn_max = (uint32_t)s.grpc_connections_max,
						.idle_ms = s.idle_timeout_ms,
						.tls = grpc_tls };
		rc = cfx_server_listen(srv, &lo, &port);
		if (!rc) {
			bound_addr(s.grpc_listen, port, grpc_addr, sizeof grpc_addr);
			cfx_log_info("grpc: the RocketMQ 5 gRPC API is on %s", grpc_addr);
		}
	}
	if (!rc && listen_enabled(s.http_listen)) {
		struct admin_opts ao = { .br = br,
					 .auth = auth,
					 .bridge = bridge,
					 .srv = srv,
					 .version = CFX_VERSION,
					 .broker_name = s.broker_name,
					 .default_queues = (uint32_t)s.default_queues };
		admin = admin_service_new(&ao);
		struct cfx_listener_opts lo = { .name = "http",
						.addr = s.http_listen,
						.proto = &http_conn_proto,
						.proto_arg = &admin->http,
						.conn_max = HTTP_CONNECTIONS_MAX,
						.idle_ms = s.idle_timeout_ms,
						.tls = http_tls };
		rc = cfx_server_listen(srv, &lo, &port);
		if (!rc) {
			bound_addr(s.http_listen, port, http_addr, sizeof http_addr);
			cfx_log_info("http: the admin API and /metrics are on %s", http_addr);
		}
	}
	if (!rc && listen_enabled(s.kafka_listen)) {
		struct kafka_opts ko;
		char host[256];
		int aport = 0;

		kafka_opts_default(&ko);
		ko.default_partitions = (uint32_t)s.default_queues;
		ko.group_initial_delay_ms = (uint32_t)s.kafka_group_delay_ms;
		ko.auth = auth;
		if (*s.kafka_advertised &&
		    cfx_parse_hostport(s.kafka_advertised, host, sizeof host, &aport) == 0) {
			ko.advertised_host = host;
			ko.advertised_port = aport;
		}
		kafka = kafka_service_new(br, &ko);
		struct cfx_listener_opts lo = { .name = "kafka",
						.addr = s.kafka_listen,
						.proto = &kafka_conn_proto,
						.proto_arg = kafka,
						.tls = kafka_tls,
						.conn_max = (uint32_t)s.grpc_connections_max,
						.idle_ms = s.idle_timeout_ms };
		rc = cfx_server_listen(srv, &lo, &port);
		if (!rc) {
			bound_addr(s.kafka_listen, port, kafka_addr, sizeof kafka_addr);
			if (cfx_parse_hostport(s.kafka_listen, host, sizeof host, &aport) == 0)
				kafka_service_set_address(kafka, host, port);
			cfx_log_info("kafka: the Kafka protocol is on %s", kafka_addr);
		}
	}
	if (!rc && (listen_enabled(s.mqtt_listen) || listen_enabled(s.mqtt_ws_listen))) {
		struct mqtt_opts mo;
		char mdir[4096];

		mqtt_opts_default(&mo);
		mo.topic = s.mqtt_topic;
		mo.auth = auth;
		mo.session_queue_max = (uint32_t)s.mqtt_session_queue_max;
		mo.durability = s.durability == CFX_SETTINGS_SYNC ? CFX_DURABILITY_SYNC
								   : CFX_DURABILITY_ASYNC;
		snprintf(mdir, sizeof mdir, "%s/mqtt", s.data_dir);
		rc = mqtt_service_new(br, mdir, &mo, &mqtt);
		if (!rc && listen_enabled(s.mqtt_listen)) {
			struct cfx_listener_opts lo = { .name = "mqtt",
							.addr = s.mqtt_listen,
							.proto = &mqtt_conn_proto,
							.proto_arg = mqtt,
							.tls = mqtt_tls,
							.conn_max = (uint32_t)s.mqtt_connections_max };
			rc = cfx_server_listen(srv, &lo, &port);
			if (!rc) {
				bound_addr(s.mqtt_listen, port, mqtt_addr, sizeof mqtt_addr);
				cfx_log_info("mqtt: MQTT 3.1.1 and 5.0 are on %s", mqtt_addr);
			}
		}
		if (!rc && listen_enabled(s.mqtt_ws_listen)) {
			/* The same service behind a WebSocket transport (wss with mqtt.tls_cert). */
			mqtt_ws.path = s.mqtt_ws_path;
			struct cfx_listener_opts lo = { .name = "mqtt_ws",
							.addr = s.mqtt_ws_listen,
							.proto = &mqtt_conn_proto,
							.proto_arg = mqtt,
							.tls = mqtt_tls,
							.ws = &mqtt_ws,
							.conn_max = (uint32_t)s.mqtt_connections_max };
			rc = cfx_server_listen(srv, &lo, &port);
			if (!rc) {
				bound_addr(s.mqtt_ws_listen, port, mqtt_ws_addr, sizeof mqtt_ws_addr);
				cfx_log_info("mqtt: MQTT over WebSocket is on %s://%s%s", mqtt_tls ? "wss" : "ws",
					     mqtt_ws_addr, s.mqtt_ws_path);
			}
		}
	}
	if (admin) {
		admin_service_set_listener(admin, "grpc", grpc_addr);
		admin_service_set_listener(admin, "http", http_addr);
		if (kafka_addr[0])
			admin_service_set_listener(admin, "kafka", kafka_addr);
		if (mqtt_addr[0])
			admin_service_set_listener(admin, "mqtt", mqtt_addr);
		if (mqtt_ws_addr[0])
			admin_service_set_listener(admin, "mqtt_ws", mqtt_ws_addr);
		if (mqtt)
			admin_service_add_metrics(admin, mqtt_service_metrics, mqtt);
	}
	if (!rc)
		rc = cfx_server_start(srv);
	if (rc) {
		cfx_log_error("cannot start the network listeners: %s", cfx_strerror(rc));
		cfx_server_free(srv);
		cfx_tls_ctx_free(grpc_tls);
		cfx_tls_ctx_free(http_tls);
		cfx_tls_ctx_free(kafka_tls);
		cfx_tls_ctx_free(mqtt_tls);
		admin_service_free(admin);
		rmq_service_free(rmq);
		kafka_service_free(kafka);
		mqtt_service_free(mqtt);
		cfx_bridge_stop(bridge);
		cfx_bridge_free(bridge);
		cfx_auth_close(auth);
		cfx_broker_close(br);
		cfx_conf_free(cfx_settings_table, cfx_settings_count, &s);
		return 1;
	}
	cfx_log_info("confluxd ready");

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			struct cfx_settings fresh;
			/* Re-read the settings; apply those marked reloadable. */
			if (load_settings(argc, argv, &fresh) == 0) {
				cfx_log_set_level(fresh.log_level);
				tls_reload("grpc", grpc_tls, fresh.grpc_tls_cert, fresh.grpc_tls_key,
					   fresh.grpc_tls_client_ca, "h2");
				tls_reload("http", http_tls, fresh.http_tls_cert, fresh.http_tls_key,
					   fresh.http_tls_client_ca, "http/1.1");
				tls_reload("kafka", kafka_tls, fresh.kafka_tls_cert, fresh.kafka_tls_key,
					   fresh.kafka_tls_client_ca, NULL);
				tls_reload("mqtt", mqtt_tls, fresh.mqtt_tls_cert, fresh.mqtt_tls_key,
					   fresh.mqtt_tls_client_ca, NULL);
				cfx_log_info("SIGHUP: settings reloaded (log.level = %s)",
					     cfx_conf_find(cfx_settings_table, cfx_settings_count, "log.level")
						     ->enum_names[fresh.log_level]);
			} else {
				cfx_log_warn("SIGHUP: settings not reloaded: the configuration is invalid");
			}
			cfx_conf_free(cfx_settings_table, cfx_settings_count, &fresh);
			continue;
		}
		break;
	}
	cfx_log_info("%s received; finishing requests, flushing and shutting down", strsignal(sig));
	cfx_broker_set_txn_checker(br, NULL, NULL); /* its commands go to the loops */
	/* Dead-letter re-drives answer through the loops: before they stop. */
	admin_service_stop(admin);
	cfx_server_stop(srv, 5000);
	kafka_service_stop(kafka); /* its coordinator answers through the loops */
	mqtt_service_stop(mqtt);   /* so does its fan-out */
	cfx_server_free(srv);
	cfx_tls_ctx_free(grpc_tls);
	cfx_tls_ctx_free(http_tls);
	cfx_tls_ctx_free(kafka_tls);
	cfx_tls_ctx_free(mqtt_tls);
	admin_service_free(admin);
	rmq_service_free(rmq);
	kafka_service_free(kafka);
	mqtt_service_free(mqtt);
	cfx_bridge_stop(bridge);
	cfx_bridge_free(bridge);
	cfx_auth_close(auth);
	rc = cfx_broker_close(br);
	if (rc)
		cfx_log_error("store: shutdown was not clean: %s", cfx_strerror(rc));
	else
		cfx_log_info("store: flushed and checkpointed; bye");
	cfx_conf_free(cfx_settings_table, cfx_settings_count, &s);
	return rc ? 1 : 0;
}
