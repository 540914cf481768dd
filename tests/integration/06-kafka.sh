#!/bin/sh
# The Kafka protocol with a real Kafka client (kcat, on librdkafka) against
# a real confluxd: metadata, topic creation and deletion, keyed produce with headers (auto-created topic
# and a topic made through the admin API), consume from the beginning with
# keys, headers and bodies compared exactly, ten thousand records from a
# file, and the same records across protocols: Kafka-produced ones received
# over the RocketMQ gRPC API (conflux consume) and RocketMQ-produced ones
# (conflux produce) consumed with kcat.
#
#   06-kafka.sh BUILD_DIR
set -u
BUILD=$1
CLI=$BUILD/conflux
. "$(dirname "$0")/lib.sh"
it_init kafka
command -v kcat >/dev/null || fail "kcat is required (Debian package kcat; tools/install-deps.sh)"

it_start --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
	--mqtt-listen off
it_addr HTTP http
it_addr KAFKA kafka
export CONFLUX_SERVER=$HTTP
KC="timeout 60 kcat -b $KAFKA"

# Metadata: this broker, and a topic made through the admin API with its partitions.
"$CLI" topic create orders --type normal --queues 3 >"$T/create.out" 2>&1 || fail "topic create"
$KC -L >"$T/meta.out" 2>"$T/meta.err" || fail "kcat -L"
grep -q "broker 0 at $KAFKA" "$T/meta.out" || fail "the broker is not in the metadata"
grep -q 'topic "orders" with 3 partitions' "$T/meta.out" || fail "topic orders not listed"

# Keyed records with headers, into an auto-created topic; read back exactly.
printf 'k1:first\nk2:second record\nk3:\nk4:last one\n' >"$T/in.txt"
$KC -t events -P -K: -H "source=test" -H "n=1" -l "$T/in.txt" 2>"$T/p1.err" || fail "kcat produce"
$KC -t events -C -o beginning -e -q -f '%k|%s|%h\n' >"$T/c1.out" 2>"$T/c1.err" ||
	fail "kcat consume"
sort "$T/c1.out" >"$T/c1.sorted"
printf 'k1|first|source=test,n=1\nk2|second record|source=test,n=1\nk3||source=test,n=1\nk4|last one|source=test,n=1\n' |
	sort >"$T/c1.want"
cmp -s "$T/c1.sorted" "$T/c1.want" || { diff "$T/c1.want" "$T/c1.sorted"; fail "records differ"; }

# Ten thousand records into partition 1, then all of them back, in order.
seq 1 10000 | sed 's/^/record-/' >"$T/many.txt"
$KC -t orders -p 1 -P -l "$T/many.txt" 2>"$T/p2.err" || fail "kcat produce 10000"
$KC -t orders -p 1 -C -o beginning -e -q -f '%o %s\n' >"$T/c2.out" 2>"$T/c2.err" ||
	fail "kcat consume 10000"
[ "$(wc -l <"$T/c2.out")" = 10000 ] || fail "expected 10000 records, got $(wc -l <"$T/c2.out")"
seq 0 9999 | paste -d' ' - "$T/many.txt" | cmp -s - "$T/c2.out" || fail "offsets or bodies differ"
# From an offset in the middle (inside a stored batch): exactly from there.
$KC -t orders -p 1 -C -o 5000 -c 3 -q -f '%o %s\n' >"$T/c3.out" 2>"$T/c3.err" ||
	fail "kcat consume from 5000"
printf '5000 record-5001\n5001 record-5002\n5002 record-5003\n' | cmp -s - "$T/c3.out" ||
	fail "consume from offset 5000: $(cat "$T/c3.out")"

# Kafka -> RocketMQ: the records of "events" over the gRPC API, key and headers kept.
"$CLI" group create kx >/dev/null 2>&1 || fail "group create"
"$CLI" group reset kx --topic events --earliest >/dev/null 2>&1 || fail "group reset"
timeout 60 "$CLI" consume events --group kx --count 4 --json >"$T/r1.out" 2>"$T/r1.err" ||
	fail "conflux consume of Kafka records"
for k in k1 k2 k3 k4; do
	grep -q "\"keys\":\[\"$k\"\]" "$T/r1.out" || fail "key $k not received over gRPC"
done
grep -q '"body":"second record"' "$T/r1.out" || fail "body not received over gRPC"
grep -q '"properties":{"source":"test","n":"1"}' "$T/r1.out" || fail "headers are not properties"
grep -q '"msg_id":"K' "$T/r1.out" || fail "Kafka records get no message id over gRPC"

# RocketMQ -> Kafka: a message sent over gRPC, consumed with kcat.
printf 'from rocketmq\n' | "$CLI" produce orders --key rk --tag T1 --property p=x \
	>"$T/p3.out" 2>"$T/p3.err" || fail "conflux produce"
$KC -t orders -C -o beginning -e -q -f '%k|%s|%h\n' >"$T/c4.out" 2>"$T/c4.err" ||
	fail "kcat consume of a RocketMQ message"
grep -q '^rk|from rocketmq|TAGS=T1,.*p=x' "$T/c4.out" || fail "RocketMQ message not seen by kcat"

# CreateTopics / DeleteTopics, as an admin client sends them (raw requests:
# kcat has no admin commands). Results: name -> error code.
kadmin() {
	python3 - "$KAFKA" "$@" <<'PY'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
op, args = sys.argv[2], sys.argv[3:]
def s16(b): return struct.pack(">h", len(b)) + b
if op == "create":  # name:partitions[:replication]...
    body = struct.pack(">i", len(args))
    for a in args:
        f = a.split(":")
        rf = int(f[2]) if len(f) > 2 else -1
        body += s16(f[0].encode()) + struct.pack(">ihii", int(f[1]), rf, 0, 0)
    body += struct.pack(">ib", 5000, 0)
    key, ver = 19, 2
else:
    body = struct.pack(">i", len(args)) + b"".join(s16(a.encode()) for a in args)
    body += struct.pack(">i", 5000)
    key, ver = 20, 1
req = struct.pack(">hhi", key, ver, 7) + s16(b"it") + body
c = socket.create_connection((host, int(port)), timeout=20)
c.sendall(struct.pack(">i", len(req)) + req)
def recv(n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x: raise SystemExit("connection closed")
        b += x
    return b
n = struct.unpack(">i", recv(4))[0]
r = recv(n)
corr, throttle, cnt = struct.unpack(">iii", r[:12])
at = 12
for _ in range(cnt):
    ln = struct.unpack(">h", r[at:at+2])[0]; name = r[at+2:at+2+ln].decode(); at += 2 + ln
    err = struct.unpack(">h", r[at:at+2])[0]; at += 2
    if op == "create":
        ml = struct.unpack(">h", r[at:at+2])[0]; at += 2 + max(ml, 0)
    print(f"{name}={err}")
PY
}
kadmin create made:3 made2:2 bad:0 rf3:1:3 >"$T/ct.out" 2>"$T/ct.err" || fail "CreateTopics"
printf 'made=0\nmade2=0\nbad=37\nrf3=38\n' | cmp -s - "$T/ct.out" || fail "CreateTopics results: $(cat "$T/ct.out")"
kadmin create made:3 >"$T/ct2.out" 2>&1 || fail "CreateTopics again"
grep -q '^made=36$' "$T/ct2.out" || fail "a second create is not TOPIC_ALREADY_EXISTS"
$KC -L -t made >"$T/meta2.out" 2>&1 || fail "kcat -L -t made"
grep -q 'topic "made" with 3 partitions' "$T/meta2.out" || fail "created topic not in the metadata"
kadmin delete made2 nosuch >"$T/dt.out" 2>"$T/dt.err" || fail "DeleteTopics"
printf 'made2=0\nnosuch=3\n' | cmp -s - "$T/dt.out" || fail "DeleteTopics results: $(cat "$T/dt.out")"

kill -TERM $PID
wait $PID || fail "confluxd exit status $? after SIGTERM"
PID=
echo "06-kafka: OK"
