#!/bin/sh
# MQTT: confluxd against Mosquitto, both on this machine, in the same run.
# mqtt_bench (libmosquitto, MQTT 3.1.1) drives the same scenarios against
# confluxd (scratch data directory, MQTT only) and against a Mosquitto
# broker started here on another loopback port with its own config file:
#   1. throughput, 100 B payloads, QoS 0 and QoS 1, 1 publisher -> 1
#      subscriber and 10 -> 10 (pair i on its own topic), REPEAT times each,
#      alternating the brokers; messages received per second end to end;
#      once with libmosquitto clients, once with mqtt_bench's own minimal
#      client (--raw: batched writes and reads), since on two cores shared
#      with the broker libmosquitto's system calls per message bound what a
#      broker can show;
#   2. CONNS idle connections with one subscription each, on fresh brokers:
#      connects per second and broker memory per connection;
#   3. RETAINED retained messages to as many distinct topics (confluxd's
#      light queues "r/<topic>"; Mosquitto's retained tree), on fresh
#      brokers: time to create them and broker memory; then 100 more
#      connections with one subscription each (connects per second with
#      that many retained topics present).
# Prints each JSON report and a summary with confluxd / Mosquitto ratios.
#
#   bench/mqtt.sh [DIR]     (BUILD=build-rel to use another build tree;
#                            CONNS, RETAINED, REPEAT, MQTT_PORT, MOSQ_PORT,
#                            HTTP_PORT change the defaults below)
set -eu

DIR=${1:-./bench-data/mqtt}
BUILD=${BUILD:-build}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
MQTT_PORT=${MQTT_PORT:-28883}
MOSQ_PORT=${MOSQ_PORT:-28884}
HTTP=127.0.0.1:${HTTP_PORT:-28080}
CONNS=${CONNS:-50000}
RETAINED=${RETAINED:-1000000}
REPEAT=${REPEAT:-3}

[ -x "$BUILD/mqtt_bench" ] || {
	echo "no $BUILD/mqtt_bench: install libmosquitto-dev (tools/install-deps.sh) and rebuild"
	exit 1
}
[ -x "$MOSQUITTO" ] || {
	echo "no $MOSQUITTO: the comparison needs the Mosquitto broker: apt-get install mosquitto"
	echo "(on a machine with systemd that also starts a system broker on port 1883:"
	echo " systemctl disable --now mosquitto stops it; this script runs its own)"
	exit 1
}

# Idle connections need one descriptor each in the broker (dash and bash
# both have ulimit -n and -H).
# shellcheck disable=SC3045
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck disable=SC3045
fds=$(ulimit -n)
if [ "$fds" != unlimited ] && [ "$fds" -lt $((CONNS + 256)) ]; then
	echo "note: open files are limited to $fds (hard limit): the idle scenario runs" \
		"$((fds - 256)) connections instead of $CONNS"
fi

rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
OUT=$DIR/results.jsonl
: >"$OUT"
cat >"$DIR/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 1000
log_dest stderr
log_type error
log_type warning
EOF

cpid=""
mpid=""
stop_brokers() {
	for p in $cpid $mpid; do
		if kill -TERM "$p" 2>/dev/null; then
			wait "$p" 2>/dev/null || true
		fi
	done
	cpid=""
	mpid=""
}
trap stop_brokers EXIT

wait_port() {
	python3 - "$1" <<'PY'
import socket, sys, time
for _ in range(300):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

start_brokers() {
	rm -rf "$DIR/data"
	"$BUILD/confluxd" --data-dir "$DIR/data" --grpc-listen off --kafka-listen off \
		--http-listen "$HTTP" --mqtt-listen "127.0.0.1:$MQTT_PORT" \
		--mqtt.session_queue_max 1000000 >>"$DIR/confluxd.log" 2>&1 &
	cpid=$!
	"$MOSQUITTO" -c "$DIR/mosquitto.conf" >>"$DIR/mosquitto.log" 2>&1 &
	mpid=$!
	wait_port "$MQTT_PORT" || { echo "confluxd did not start"; cat "$DIR/confluxd.log"; exit 1; }
	wait_port "$MOSQ_PORT" || { echo "mosquitto did not start"; cat "$DIR/mosquitto.log"; exit 1; }
	sleep 0.2 # a broker that could not bind its port (taken by another process) is gone by now
	kill -0 "$cpid" 2>/dev/null || { echo "confluxd exited"; cat "$DIR/confluxd.log"; exit 1; }
	kill -0 "$mpid" 2>/dev/null || { echo "mosquitto exited"; cat "$DIR/mosquitto.log"; exit 1; }
}

# bench NAME ARGS...: one mqtt_bench run against the broker NAME.
bench() {
	name=$1
	shift
	if [ "$name" = confluxd ]; then
		addr=127.0.0.1:$MQTT_PORT pid=$cpid
	else
		addr=127.0.0.1:$MOSQ_PORT pid=$mpid
	fi
	"$BUILD/mqtt_bench" "$addr" "$@" --pid "$pid" --name "$name" >>"$OUT" ||
		echo "warning: mqtt_bench $* against $name did not complete cleanly (see its report)"
}

# 1. Throughput.
start_brokers
i=0
while [ $i -lt "$REPEAT" ]; do
	for raw in "" --raw; do
		for b in confluxd mosquitto; do
			bench $b throughput --qos 0 --pubs 1 --count 200000 $raw
			bench $b throughput --qos 1 --pubs 1 --count 200000 $raw
			bench $b throughput --qos 0 --pubs 10 --count 50000 $raw
			bench $b throughput --qos 1 --pubs 10 --count 20000 $raw
		done
	done
	i=$((i + 1))
done
stop_brokers

# 2. Idle connections, on fresh brokers (freed memory would be reused).
start_brokers
bench confluxd idle --conns "$CONNS" --bind-net 127.0.1
sleep 1
bench mosquitto idle --conns "$CONNS" --bind-net 127.0.2
stop_brokers

# 3. Retained topics (light queues), on fresh brokers.
start_brokers
bench confluxd retained --count "$RETAINED"
bench mosquitto retained --count "$RETAINED"
bench confluxd idle --conns 100 --bind-net 127.0.3 --label "idle after retained"
bench mosquitto idle --conns 100 --bind-net 127.0.4 --label "idle after retained"
stop_brokers
trap - EXIT

cat "$OUT"
python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(broker, scenario):
    return [r for r in rows if r["broker"] == broker and r["scenario"] == scenario]
def mark(ok):
    return "\u2714" if ok else "\u2718"
print("\nthroughput, 100 B, messages received per second (median of %d runs):"
      % max(1, len(pick("confluxd", "qos0 1x1"))))
for sc in ("qos0 1x1", "qos1 1x1", "qos0 10x10", "qos1 10x10", "raw qos0 1x1",
           "raw qos1 1x1", "raw qos0 10x10", "raw qos1 10x10"):
    c, m = pick("confluxd", sc), pick("mosquitto", sc)
    if not c or not m:
        continue
    if sc == "raw qos0 1x1":
        print("  the same with mqtt_bench's own client (--raw):")
    cm = statistics.median(r["msgs_per_s"] for r in c)
    mm = statistics.median(r["msgs_per_s"] for r in m)
    lost = sum(r["lost"] for r in c), sum(r["lost"] for r in m)
    cpu = statistics.median(r["broker_cpu_us_per_msg"] for r in c), \
          statistics.median(r["broker_cpu_us_per_msg"] for r in m)
    print("  %-14s confluxd %7.0f  mosquitto %7.0f  = %.2fx (target >= 2x %s); "
          "broker CPU %.1f vs %.1f us/msg; lost %d / %d"
          % (sc, cm, mm, cm / mm, mark(cm >= 2 * mm), cpu[0], cpu[1], lost[0], lost[1]))
c, m = pick("confluxd", "idle"), pick("mosquitto", "idle")
if c and m:
    c, m = c[0], m[0]
    print("\nidle connections (one subscription each): %d (requested %d)%s"
          % (c["connections"], c["requested"],
             "; the fd limit is lower than needed" if c["fd_limit_too_low"] else ""))
    print("  connects/s: confluxd %.0f, mosquitto %.0f = %.2fx"
          % (c["connects_per_s"], m["connects_per_s"],
             c["connects_per_s"] / max(m["connects_per_s"], 1)))
    print("  broker RSS per connection: confluxd %.0f B, mosquitto %.0f B = %.2fx (target <= 1x %s)"
          % (c["rss_bytes_per_conn"], m["rss_bytes_per_conn"],
             c["rss_bytes_per_conn"] / max(m["rss_bytes_per_conn"], 1),
             mark(c["rss_bytes_per_conn"] <= m["rss_bytes_per_conn"])))
c, m = pick("confluxd", "retained"), pick("mosquitto", "retained")
if c:
    c = c[0]
    print("\nretained topics (light queues): %d x %d B" % (c["topics"], c["size"]))
    print("  confluxd:  %.1f s (%.0f/s); RSS %.0f -> %.0f MiB (anon %.0f -> %.0f MiB), "
          "%.0f B per topic (target < 1 GiB %s)"
          % (c["seconds"], c["per_s"], c["rss_before_kib"] / 1024, c["rss_after_kib"] / 1024,
             c["anon_before_kib"] / 1024, c["anon_after_kib"] / 1024, c["rss_bytes_per_topic"],
             mark(c["rss_after_kib"] < 1024 * 1024)))
    if m:
        m = m[0]
        print("  mosquitto: %.1f s (%.0f/s); RSS %.0f -> %.0f MiB, %.0f B per topic"
              % (m["seconds"], m["per_s"], m["rss_before_kib"] / 1024,
                 m["rss_after_kib"] / 1024, m["rss_bytes_per_topic"]))
c, m = pick("confluxd", "idle after retained"), pick("mosquitto", "idle after retained")
if c and m:
    c, m = c[0], m[0]
    print("  then %d connections + SUBSCRIBE: confluxd %.0f/s, mosquitto %.0f/s = %.2fx"
          % (c["connections"], c["connects_per_s"], m["connects_per_s"],
             c["connects_per_s"] / max(m["connects_per_s"], 1)))
PY
rm -rf "$DIR"
