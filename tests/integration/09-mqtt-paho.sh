#!/bin/sh
# MQTT with a second real client, paho-mqtt (Debian python3-paho-mqtt),
# against a real confluxd, with MQTT 3.1.1 and 5.0: connect, subscribe with
# + and # filters, QoS 0, 1 and 2 publish and receive with byte-exact
# binary payloads (all 256 byte values), a retained message delivered on
# subscribe and cleared, and unsubscribe stopping delivery. The checks are
# in mqtt_paho.py; this script starts and stops the server.
#
#   09-mqtt-paho.sh BUILD_DIR
set -u
BUILD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/cfx-it-paho-XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	[ -s "$T/py.out" ] && { echo "--- mqtt_paho.py"; tail -n 30 "$T/py.out"; }
	[ -f "$T/log" ] && { echo "--- server log"; tail -n 30 "$T/log"; }
	exit 1
}

# The first python3 on PATH may be a separate installation without the
# Debian package: take one that has paho-mqtt.
PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null && "$p" -c 'import paho.mqtt.client' 2>/dev/null; then
		PY=$p
		break
	fi
done
[ -n "$PY" ] || fail "python3 with paho-mqtt is required (python3-paho-mqtt, tools/install-deps.sh)"

: >"$T/log"
"$BUILD/confluxd" --data-dir "$T/data" --grpc-listen off --http-listen 127.0.0.1:0 \
	--kafka-listen off --mqtt-listen 127.0.0.1:0 \
	--store.segment_bytes 32MiB --store.populate_ahead 0 >"$T/log" 2>&1 &
PID=$!
i=0
until grep -q "confluxd ready" "$T/log"; do
	i=$((i + 1))
	kill -0 $PID 2>/dev/null || fail "confluxd exited during start"
	[ $i -gt 300 ] && fail "confluxd did not become ready"
	sleep 0.1
done
MQTT=$(sed -n 's/.*MQTT 3.1.1 and 5.0 are on \([0-9.]*:[0-9]*\).*/\1/p' "$T/log")
[ -n "$MQTT" ] || fail "no MQTT address in the server log"

timeout 120 "$PY" "$HERE/mqtt_paho.py" "${MQTT%:*}" "${MQTT##*:}" "$$" >"$T/py.out" 2>&1 ||
	fail "mqtt_paho.py"
cat "$T/py.out"

kill -TERM $PID && wait $PID || fail "confluxd did not exit cleanly"
PID=
echo "09-mqtt-paho: OK"
