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
. "$HERE/lib.sh"
it_init paho

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

it_start --grpc-listen off --http-listen 127.0.0.1:0 --kafka-listen off --mqtt-listen 127.0.0.1:0
it_addr MQTT mqtt

timeout 120 "$PY" "$HERE/mqtt_paho.py" "${MQTT%:*}" "${MQTT##*:}" "$$" >"$T/py.out" 2>&1 ||
	fail "mqtt_paho.py"
cat "$T/py.out"

kill -TERM $PID && wait $PID || fail "confluxd did not exit cleanly"
PID=
echo "09-mqtt-paho: OK"
