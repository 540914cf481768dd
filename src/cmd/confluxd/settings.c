/*
 * settings.c - the settings table of confluxd.
 */
#include "cmd/confluxd/settings.h"

#include <stddef.h>

#define OFF(field) offsetof(struct cfx_settings, field)
#define KiB (1024LL)
#define MiB (1024LL * 1024)
#define GiB (1024LL * 1024 * 1024)
#define DAY_MS (24LL * 3600 * 1000)

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const durabilities[] = { "async", "sync", NULL };
static const char *const resolutions[] = { "rollback", "commit", NULL };

const struct cfx_conf_def cfx_settings_table[] = {
	{ "data_dir", "data-dir", CFX_CONF_STRING, OFF(data_dir), "./data", 0, 0, NULL, 0,
	  "Directory holding the commit log, indexes and checkpoint (created if missing)." },
	{ "log.level", "log-level", CFX_CONF_ENUM, OFF(log_level), "info", 0, 0, log_levels,
	  CFX_CONF_RELOADABLE, "Least severe level that is logged." },
	{ "store.segment_bytes", NULL, CFX_CONF_SIZE, OFF(segment_bytes), "1GiB", 1 * MiB,
	  256 * GiB, NULL, 0,
	  "Size of each commit-log segment file; must hold the largest batch. Existing "
	  "segments keep their size." },
	{ "store.index_entries_per_file", NULL, CFX_CONF_INT, OFF(index_entries_per_file),
	  "262144", 16, 1LL << 30, NULL, 0,
	  "Batch-index entries (40 bytes each) per queue index file." },
	{ "store.key_index_entries", NULL, CFX_CONF_INT, OFF(key_index_entries), "1048576", 16,
	  1LL << 30, NULL, 0, "Entries (24 bytes each) per key/message-id index file." },
	{ "store.flush_interval", NULL, CFX_CONF_DURATION, OFF(flush_interval_ms), "500ms", 1,
	  DAY_MS, NULL, 0,
	  "How often async appends are flushed to disk: the most an async append can lose "
	  "in a power failure." },
	{ "store.checkpoint_interval", NULL, CFX_CONF_DURATION, OFF(checkpoint_interval_ms), "5s",
	  100, DAY_MS, NULL, 0,
	  "How often a checkpoint records what is durable; bounds the log scanned after a "
	  "crash." },
	{ "store.retention_time", NULL, CFX_CONF_DURATION, OFF(retention_ms), "168h", 0,
	  3650 * DAY_MS, NULL, 0,
	  "Delete segments whose newest message is older than this (0 keeps everything)." },
	{ "store.retention_bytes", NULL, CFX_CONF_SIZE, OFF(retention_bytes), "0", 0,
	  1LL << 60, NULL, 0,
	  "Delete the oldest segments while the log is larger than this (0 = no limit)." },
	{ "store.retention_check_interval", NULL, CFX_CONF_DURATION,
	  OFF(retention_check_interval_ms), "10s", 100, DAY_MS, NULL, 0,
	  "How often retention is applied." },
	{ "store.message_bytes_max", NULL, CFX_CONF_SIZE, OFF(message_bytes_max), "4MiB", 1 * KiB,
	  1 * GiB, NULL, 0, "Largest message accepted (encoded size)." },
	{ "store.batch_bytes_max", NULL, CFX_CONF_SIZE, OFF(batch_bytes_max), "16MiB", 1 * KiB,
	  1 * GiB, NULL, 0, "Largest batch accepted (encoded size)." },
	{ "store.queues_per_topic_max", NULL, CFX_CONF_INT, OFF(queues_per_topic_max), "1024", 1,
	  65536, NULL, 0, "Queue ids of a topic are below this." },
	{ "store.verify_crc_on_read", NULL, CFX_CONF_BOOL, OFF(verify_crc_on_read), "true", 0, 0,
	  NULL, 0, "Check each entry's CRC32C when it is read, so damage is never served." },
	{ "store.populate_ahead", NULL, CFX_CONF_SIZE, OFF(populate_ahead_bytes), "16MiB", 0,
	  1 * GiB, NULL, 0,
	  "How much of the log is pre-faulted ahead of the writer (0 disables)." },
	{ "store.durability", NULL, CFX_CONF_ENUM, OFF(durability), "async", 0, 0, durabilities, 0,
	  "When a sent message is acknowledged: async (in the page cache; flushed every "
	  "store.flush_interval) or sync (on disk, group commit)." },

	{ "grpc.listen", "grpc-listen", CFX_CONF_STRING, OFF(grpc_listen), "127.0.0.1:8081", 0, 0,
	  NULL, 0, "Address of the RocketMQ 5 gRPC API (host:port, or off)." },
	{ "grpc.advertised", NULL, CFX_CONF_STRING, OFF(grpc_advertised), "", 0, 0, NULL, 0,
	  "host:port that routes tell clients to use; empty = the address the client dialled." },
	{ "http.listen", "http-listen", CFX_CONF_STRING, OFF(http_listen), "127.0.0.1:8080", 0, 0,
	  NULL, 0, "Address of the admin HTTP API and /metrics (host:port, or off)." },
	{ "kafka.listen", "kafka-listen", CFX_CONF_STRING, OFF(kafka_listen), "127.0.0.1:9092", 0, 0,
	  NULL, 0, "Address of the Kafka protocol (host:port, or off)." },
	{ "kafka.advertised", NULL, CFX_CONF_STRING, OFF(kafka_advertised), "", 0, 0, NULL, 0,
	  "host:port that Metadata tells Kafka clients to use; empty = the listener's address." },
	{ "mqtt.listen", "mqtt-listen", CFX_CONF_STRING, OFF(mqtt_listen), "127.0.0.1:1883", 0, 0,
	  NULL, 0, "Address of MQTT 3.1.1 and 5.0 (host:port, or off)." },
	{ "mqtt.ws_listen", "mqtt-ws-listen", CFX_CONF_STRING, OFF(mqtt_ws_listen), "off", 0, 0,
	  NULL, 0,
	  "Address of MQTT over WebSocket, subprotocol \"mqtt\" (host:port, e.g. "
	  "127.0.0.1:8083, or off); with mqtt.tls_cert it is wss." },
	{ "mqtt.ws_path", NULL, CFX_CONF_STRING, OFF(mqtt_ws_path), "/mqtt", 0, 0, NULL, 0,
	  "Request path of the MQTT WebSocket endpoint; other paths get 404 (empty = any path)." },
	{ "mqtt.topic", NULL, CFX_CONF_STRING, OFF(mqtt_topic), "mqtt", 0, 0, NULL, 0,
	  "The Conflux topic every MQTT message is stored in (created on start, MIXED); "
	  "RocketMQ and Kafka clients read and write MQTT traffic there." },
	{ "mqtt.session_queue_max", NULL, CFX_CONF_INT, OFF(mqtt_session_queue_max), "1000", 1,
	  1 << 24, NULL, 0,
	  "Messages a persistent session keeps while its client is away (and a connected "
	  "client's backlog); beyond it the oldest are dropped." },
	{ "mqtt.connections_max", NULL, CFX_CONF_INT, OFF(mqtt_connections_max), "1000000", 1,
	  100000000, NULL, 0, "MQTT connections at most." },
	{ "kafka.group_initial_rebalance_delay", NULL, CFX_CONF_DURATION, OFF(kafka_group_delay_ms),
	  "3s", 0, 300000, NULL, 0,
	  "How long a new Kafka consumer group waits for more members before its first "
	  "rebalance completes (Kafka's group.initial.rebalance.delay.ms)." },
	{ "grpc.tls_cert", NULL, CFX_CONF_STRING, OFF(grpc_tls_cert), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM certificate chain: with grpc.tls_key, the gRPC listener speaks TLS (ALPN h2); "
	  "re-read on SIGHUP." },
	{ "grpc.tls_key", NULL, CFX_CONF_STRING, OFF(grpc_tls_key), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE, "PEM private key of grpc.tls_cert." },
	{ "grpc.tls_client_ca", NULL, CFX_CONF_STRING, OFF(grpc_tls_client_ca), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM CA certificates: gRPC clients must present a certificate they signed (mutual TLS)." },
	{ "http.tls_cert", NULL, CFX_CONF_STRING, OFF(http_tls_cert), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM certificate chain: with http.tls_key, the HTTP listener speaks TLS; re-read on SIGHUP." },
	{ "http.tls_key", NULL, CFX_CONF_STRING, OFF(http_tls_key), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE, "PEM private key of http.tls_cert." },
	{ "http.tls_client_ca", NULL, CFX_CONF_STRING, OFF(http_tls_client_ca), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM CA certificates: HTTP clients must present a certificate they signed (mutual TLS)." },
	{ "kafka.tls_cert", NULL, CFX_CONF_STRING, OFF(kafka_tls_cert), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM certificate chain: with kafka.tls_key, the Kafka listener speaks TLS (clients: "
	  "security.protocol=ssl); re-read on SIGHUP." },
	{ "kafka.tls_key", NULL, CFX_CONF_STRING, OFF(kafka_tls_key), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE, "PEM private key of kafka.tls_cert." },
	{ "kafka.tls_client_ca", NULL, CFX_CONF_STRING, OFF(kafka_tls_client_ca), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM CA certificates: Kafka clients must present a certificate they signed (mutual TLS)." },
	{ "mqtt.tls_cert", NULL, CFX_CONF_STRING, OFF(mqtt_tls_cert), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM certificate chain: with mqtt.tls_key, the MQTT listener speaks TLS; re-read on "
	  "SIGHUP." },
	{ "mqtt.tls_key", NULL, CFX_CONF_STRING, OFF(mqtt_tls_key), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE, "PEM private key of mqtt.tls_cert." },
	{ "mqtt.tls_client_ca", NULL, CFX_CONF_STRING, OFF(mqtt_tls_client_ca), "", 0, 0, NULL,
	  CFX_CONF_RELOADABLE,
	  "PEM CA certificates: MQTT clients must present a certificate they signed (mutual TLS)." },
	{ "allow_anonymous", "allow-anonymous", CFX_CONF_BOOL, OFF(allow_anonymous), "false", 0, 0,
	  NULL, 0,
	  "Without users: allow listening on non-loopback addresses (off: such addresses are "
	  "refused at start). With users: clients that do not sign in act as the user "
	  "\"anonymous\" (off: they are refused). See docs/security.md." },
	{ "eventbridge.enabled", NULL, CFX_CONF_BOOL, OFF(eventbridge), "true", 0, 0, NULL, 0,
	  "Run the EventBridge: buses, rules and targets (docs/eventbridge.md); its HTTP routes "
	  "are on http.listen." },
	{ "eventbridge.event_bytes_max", NULL, CFX_CONF_SIZE, OFF(event_bytes_max), "64KiB",
	  1024, 16 * MiB, NULL, 0,
	  "Largest CloudEvent accepted (attribute names and values plus data)." },
	{ "eventbridge.webhook_timeout", NULL, CFX_CONF_DURATION, OFF(webhook_timeout_ms), "10s",
	  100, 600000, NULL, 0,
	  "Deadline of one HTTP delivery to a target (targets may set their own)." },
	{ "auth.scram_iterations", NULL, CFX_CONF_INT, OFF(auth_scram_iterations), "4096", 4096,
	  1000000, NULL, 0,
	  "PBKDF2 iterations of the salted credentials of new or changed passwords." },
	{ "net.threads", NULL, CFX_CONF_INT, OFF(net_threads), "0", 0, 256, NULL, 0,
	  "Network event loops (threads); 0 = one per CPU core." },
	{ "grpc.connections_max", NULL, CFX_CONF_INT, OFF(grpc_connections_max), "10000", 1,
	  1000000, NULL, 0, "gRPC connections at once; more are refused." },
	{ "net.idle_timeout", NULL, CFX_CONF_DURATION, OFF(idle_timeout_ms), "2m", 0, DAY_MS, NULL,
	  0, "Close connections idle this long (without open calls; 0 = never)." },

	{ "broker.name", NULL, CFX_CONF_STRING, OFF(broker_name), "conflux", 0, 0, NULL, 0,
	  "Name of this broker in routes." },
	{ "broker.auto_create", NULL, CFX_CONF_BOOL, OFF(auto_create), "true", 0, 0, NULL, 0,
	  "Create topics (type MIXED) and consumer groups on first use." },
	{ "broker.default_queues", NULL, CFX_CONF_INT, OFF(default_queues), "8", 1, 1024, NULL, 0,
	  "Queues of an automatically created topic." },
	{ "broker.message_body_max", NULL, CFX_CONF_SIZE, OFF(message_body_max), "4MiB", 1,
	  1 * GiB, NULL, 0, "Largest message body a producer may send." },
	{ "broker.long_poll_max", NULL, CFX_CONF_DURATION, OFF(long_poll_max_ms), "20s", 0,
	  3600000, NULL, 0, "Longest time a receive waits for messages." },
	{ "broker.pop_flush_interval", NULL, CFX_CONF_DURATION, OFF(pop_flush_interval_ms), "100ms",
	  1, 60000, NULL, 0,
	  "How often consumption state (acks) is flushed to disk: what a power failure can "
	  "forget and redeliver." },
	{ "broker.auto_renew_invisible", NULL, CFX_CONF_DURATION, OFF(auto_renew_invisible_ms),
	  "60s", 2000, 3600000, NULL, 0,
	  "Invisible duration of messages received by auto-renewing (push) consumers; renewed "
	  "while the consumer works on them and is alive." },
	{ "broker.timer_max", NULL, CFX_CONF_DURATION, OFF(timer_max_ms), "3d", 1000,
	  30LL * 24 * 3600 * 1000, NULL, 0,
	  "Longest delay of a delayed message (keep store.retention_time above it)." },
	{ "broker.txn_check_first", NULL, CFX_CONF_DURATION, OFF(txn_check_first_ms), "6s", 100,
	  3600000, NULL, 0, "When an open transaction is first checked back with its producer." },
	{ "broker.txn_check_interval", NULL, CFX_CONF_DURATION, OFF(txn_check_interval_ms), "30s",
	  100, 24 * 3600000LL, NULL, 0, "Time between later check-backs of an open transaction." },
	{ "broker.txn_check_max", NULL, CFX_CONF_INT, OFF(txn_check_max), "15", 0, 10000, NULL, 0,
	  "Check-backs before an open transaction gets broker.txn_check_default." },
	{ "broker.txn_check_default", NULL, CFX_CONF_ENUM, OFF(txn_check_default), "rollback", 0,
	  0, resolutions, 0, "What becomes of a transaction still open after its last check-back." },
};

const size_t cfx_settings_count = sizeof cfx_settings_table / sizeof cfx_settings_table[0];

void cfx_settings_to_store_opts(const struct cfx_settings *s, struct cfx_store_opts *o)
{
	cfx_store_opts_default(o);
	o->dir = s->data_dir;
	o->segment_bytes = (uint64_t)s->segment_bytes;
	o->index_entries_per_file = (uint32_t)s->index_entries_per_file;
	o->key_index_entries = (uint32_t)s->key_index_entries;
	o->flush_interval_ms = s->flush_interval_ms;
	o->checkpoint_interval_ms = s->checkpoint_interval_ms;
	o->retention_ms = s->retention_ms;
	o->retention_bytes = s->retention_bytes;
	o->retention_check_interval_ms = s->retention_check_interval_ms;
	o->msg_bytes_max = (uint32_t)s->message_bytes_max;
	o->batch_bytes_max = (uint32_t)s->batch_bytes_max;
	o->queues_per_topic_max = (uint32_t)s->queues_per_topic_max;
	o->verify_crc_on_read = s->verify_crc_on_read;
	o->populate_ahead_bytes = (uint64_t)s->populate_ahead_bytes;
}
