#!/bin/sh
# MQTT with real clients (mosquitto_pub / mosquitto_sub, Debian
# mosquitto-clients) against a real confluxd: QoS 0, 1 and 2, wildcards,
# retained messages, MQTT 5 user properties and content type, a
# persistent session that gets the messages published while it was away
# (also across a SIGTERM restart and a kill -9), a last will, and the same
# messages across protocols: MQTT publishes read with kcat from the
# mapped Conflux topic, and a Kafka record with an MQTT_TOPIC header
# received by an MQTT subscriber.
#
#   08-mqtt.sh BUILD_DIR
set -u
BUILD=$1
. "$(dirname "$0")/lib.sh"
it_init mqtt
for c in mosquitto_pub mosquitto_sub kcat; do
	command -v $c >/dev/null || fail "$c is required (tools/install-deps.sh)"
done

start() { # the same ports after a restart
	it_start --grpc-listen off --http-listen 127.0.0.1:0 \
		--kafka-listen 127.0.0.1:${KPORT:-0} --mqtt-listen 127.0.0.1:${MPORT:-0}
	it_addr MQTT mqtt
	it_addr KAFKA kafka
	MPORT=${MQTT##*:}
	KPORT=${KAFKA##*:}
}
start
M="-h 127.0.0.1 -p $MPORT"
SUB="timeout 20 mosquitto_sub $M"
PUB="timeout 20 mosquitto_pub $M"

# Subscribes in the background; waits until the subscription is in place.
sub_bg() { # out-file args...
	out=$1
	shift
	stdbuf -oL $SUB "$@" -d >"$T/$out.raw" 2>&1 &
	SUBPID=$!
	i=0
	until grep -q "received SUBACK" "$T/$out.raw"; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "no SUBACK for $out"
		sleep 0.05
	done
}
lines() { grep -v '^Client \|^Subscribed \|^ ' "$T/$1.raw"; }

# QoS 0, 1 and 2 through wildcards, in order per topic.
sub_bg q -t 'a/+/x' -t 'b/#' -q 2 -v -C 6
$PUB -t a/1/x -m zero -q 0 || fail "publish QoS 0"
$PUB -t a/2/x -m one -q 1 || fail "publish QoS 1"
$PUB -t b/deep/er -m two -q 2 || fail "publish QoS 2"
$PUB -t a/1/y -m nomatch -q 1 || fail "publish"
for n in 1 2 3; do $PUB -t b -m "n$n" -q 1 || fail "publish $n"; done
wait $SUBPID
# Order is kept per topic (one topic, one queue); topics interleave freely.
lines q | sort >"$T/q.out"
printf 'a/1/x zero\na/2/x one\nb n1\nb n2\nb n3\nb/deep/er two\n' | cmp -s - "$T/q.out" ||
	fail "QoS 0/1/2 and wildcards: $(cat "$T/q.out")"
[ "$(lines q | grep '^b n')" = "$(printf 'b n1\nb n2\nb n3')" ] || fail "order within a topic"
grep -q "received PUBLISH (d0, q2" "$T/q.raw" || fail "no QoS 2 delivery"

# Retained: a later subscriber gets it at once; an empty retained message clears it.
$PUB -t r/t -m kept -r -q 1 || fail "retain"
$SUB -t 'r/#' -v -C 1 -W 5 >"$T/r.out" 2>&1 || fail "retained not delivered"
[ "$(cat "$T/r.out")" = "r/t kept" ] || fail "retained: $(cat "$T/r.out")"
$PUB -t r/t -n -r -q 1 || fail "clear retained"
$SUB -t 'r/#' -v -W 1 >"$T/r2.out" 2>&1
! grep -q kept "$T/r2.out" || fail "cleared retained message still delivered: $(cat "$T/r2.out")"

# Retained messages through wildcard filters (the retained-topic tree).
for t in rw/a/1 rw/b/2 rw/a/3 rw/a; do $PUB -t $t -m "v-$t" -r -q 1 || fail "retain $t"; done
[ "$($SUB -t 'rw/a/+' -v -C 2 -W 5 | sort | tr '\n' ' ')" = "rw/a/1 v-rw/a/1 rw/a/3 v-rw/a/3 " ] ||
	fail "retained through +"
[ "$($SUB -t 'rw/+/2' -v -C 1 -W 5)" = "rw/b/2 v-rw/b/2" ] || fail "retained through a middle +"
[ "$($SUB -t 'rw/a/#' -v -C 3 -W 5 | sort | tr '\n' ' ')" = "rw/a v-rw/a rw/a/1 v-rw/a/1 rw/a/3 v-rw/a/3 " ] ||
	fail "retained through # (parent included)"

# MQTT 5: user properties and content type arrive with the message.
sub_bg v5 -V 5 -t v/1 -C 1 -F '%t|%p|%P|%C'
$PUB -V 5 -t v/1 -m five -q 1 -D publish user-property k1 val1 -D publish content-type text/x ||
	fail "publish v5"
wait $SUBPID
[ "$(lines v5)" = "v/1|five|k1:val1|text/x" ] || fail "MQTT 5 properties: $(lines v5)"

# A persistent session gets what was published while it was away,
# after a reconnect, a SIGTERM restart and a kill -9.
sub_bg p1 -i keeper -c -q 1 -t 'p/#' -v -C 1
$PUB -t p/0 -m online -q 1 || fail "publish p/0"
wait $SUBPID
$PUB -t p/1 -m away1 -q 1 || fail "publish p/1"
$SUB -i keeper -c -q 1 -t 'p/#' -v -C 1 -W 5 >"$T/p2.out" 2>&1 || fail "reconnect"
[ "$(cat "$T/p2.out")" = "p/1 away1" ] || fail "after a reconnect: $(cat "$T/p2.out")"
$PUB -t p/2 -m away2 -q 1 || fail "publish p/2"
kill -TERM $PID && wait $PID
start
$SUB -i keeper -c -q 1 -t 'p/#' -v -C 1 -W 5 >"$T/p3.out" 2>&1 || fail "after SIGTERM"
[ "$(cat "$T/p3.out")" = "p/2 away2" ] || fail "after a restart: $(cat "$T/p3.out")"
$PUB -t p/3 -m away3 -q 2 || fail "publish p/3"
kill -9 $PID
wait $PID 2>/dev/null
start
$SUB -i keeper -c -q 1 -t 'p/#' -v -C 1 -W 5 >"$T/p4.out" 2>&1 || fail "after kill -9"
[ "$(cat "$T/p4.out")" = "p/3 away3" ] || fail "after kill -9: $(cat "$T/p4.out")"

# A last will, when its client goes away without DISCONNECT.
sub_bg w -t will/t -v -C 1
mosquitto_sub $M -i dies -t none --will-topic will/t --will-payload gone --will-qos 1 \
	>/dev/null 2>&1 &
dier=$!
sleep 0.5
kill -9 $dier
wait $dier 2>/dev/null
i=0
until [ "$(lines w)" = "will/t gone" ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "no last will: $(lines w)"
	sleep 0.05
done
wait $SUBPID

# MQTT 5 will delay: the will waits (with its properties), and a session that
# resumes in time cancels it.
sub_bg wd -V 5 -t 'wd/#' -F '%t|%p|%P' -C 1 -W 15
mosquitto_sub $M -V 5 -i delayed -c -x 60 -t none --will-topic wd/late --will-payload late \
	--will-qos 1 -D will will-delay-interval 1 -D will user-property wk wv >/dev/null 2>&1 &
dier=$!
mosquitto_sub $M -V 5 -i resumed -c -x 60 -t none --will-topic wd/cancelled \
	--will-payload no --will-qos 1 -D will will-delay-interval 2 >/dev/null 2>&1 &
dier2=$!
sleep 0.5
kill -9 $dier $dier2
wait $dier $dier2 2>/dev/null
$SUB -V 5 -i resumed -c -x 60 -t none -W 1 >/dev/null 2>&1 # back within the delay
wait $SUBPID
[ "$(lines wd)" = "wd/late|late|wk:wv" ] || fail "will delay: $(lines wd)"

# Across protocols: MQTT messages are records of the topic "mqtt".
KC="timeout 30 kcat -b $KAFKA"
$KC -t mqtt -C -o beginning -e -q -f '%h|%s\n' >"$T/k.out" 2>"$T/k.err" || fail "kcat consume"
grep -q 'MQTT_TOPIC=a/2/x,MQTT_QOS=1.*|one$' "$T/k.out" || fail "MQTT publish not seen by kcat"
# ... and a Kafka record with an MQTT_TOPIC header reaches MQTT subscribers.
sub_bg kx -t from/kafka -v -C 1
printf 'hello from kafka\n' | $KC -t mqtt -P -H MQTT_TOPIC=from/kafka || fail "kcat produce"
wait $SUBPID
[ "$(lines kx)" = "from/kafka hello from kafka" ] || fail "Kafka record over MQTT: $(lines kx)"

# $SYS statistics: retained in memory, not matched by a leading wildcard.
[ "$($SUB -t '$SYS/broker/version' -C 1 -W 15)" = conflux ] || fail "no \$SYS/broker/version"
$SUB -t '#' -v -W 1 2>/dev/null | grep -q '^\$SYS' && fail "# matched a \$SYS topic"

# The MQTT metrics.
it_addr HTTP http
curl -sf "http://$HTTP/metrics" >"$T/metrics.out" || fail "GET /metrics"
grep -q '^conflux_mqtt_published_total [1-9]' "$T/metrics.out" || fail "no published count"
grep -q '^conflux_mqtt_delivered_total [1-9]' "$T/metrics.out" || fail "no delivered count"
grep -q '^conflux_light_queues [1-9]' "$T/metrics.out" || fail "no light queues"

# CloudEvents to an EventBridge bus over MQTT ("$bus/<bus>"): MQTT 5 binary
# mode (user properties, Content Type) and structured mode (3.1.1); read back
# over the bus's HTTP pull. Invalid events and unknown buses are refused.
P=${MQTT##*:}
pull="http://$HTTP/v1/buses/default/events?group=mqtt-it&max=10"
curl -s -o /dev/null "$pull" # the group starts at the end of the bus
mosquitto_pub -p "$P" -V 5 -t '$bus/default' -q 1 -D publish user-property specversion 1.0 \
	-D publish user-property id m1 -D publish user-property source /mqtt \
	-D publish user-property type t.mqtt -D publish content-type application/json \
	-m '{"a":1}' || fail "binary event"
mosquitto_pub -p "$P" -V 311 -t '$bus/default' -q 1 \
	-m '{"specversion":"1.0","id":"m2","source":"/mqtt","type":"t.s","data":{"b":2}}' ||
	fail "structured event"
mosquitto_pub -p "$P" -V 5 -t '$bus/default' -q 1 -m '{"not":"an event"}' -d 2>&1 |
	grep -q "RC:153" || fail "an invalid event was not refused with 0x99"
mosquitto_pub -p "$P" -V 5 -t '$bus/nobus' -q 1 -m '{}' -d 2>&1 | grep -q "RC:144" ||
	fail "an unknown bus was not refused with 0x90"
# One event comes back in binary mode (ce- headers), several as a batch.
got=
for i in $(seq 50); do
	got="$got$(curl -s -i "$pull")"
	case $got in *m1*m2* | *m2*m1*) break ;; esac
	sleep 0.1
done
case $got in *'"id":"m1"'* | *'ce-id: m1'*) ;; *) fail "binary event not on the bus: $got" ;; esac
case $got in *'"id":"m2"'* | *'ce-id: m2'*) ;; *) fail "structured event not on the bus: $got" ;; esac
case $got in *'{"a":1}'*) ;; *) fail "binary event data: $got" ;; esac
case $got in *'{"b":2}'*) ;; *) fail "structured event data: $got" ;; esac
case $got in *'"not"'*) fail "an invalid event was stored: $got" ;; esac

kill -TERM $PID && wait $PID || fail "confluxd did not exit cleanly"
PID=
echo "08-mqtt: OK"
