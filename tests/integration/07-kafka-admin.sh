#!/bin/sh
# The Kafka admin APIs against a real confluxd, as raw requests in classic
# and flexible versions (kafka_admin.py; kcat has no admin commands), with
# kcat for the records: CreatePartitions grows a topic from 3 to 5
# partitions and kcat produces to partition 4 and consumes it back;
# shrinking, an equal count, bad assignments, duplicates and unknown topics
# get Kafka's errors; DescribeConfigs of a topic (retention.ms from
# store.retention_time ...), of the broker and of unknown resources;
# DescribeCluster; OffsetForLeaderEpoch gives the log end offset.
#
#   07-kafka-admin.sh BUILD_DIR
set -u
BUILD=$1
CLI=$BUILD/conflux
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
it_init kadmin
command -v kcat >/dev/null || fail "kcat is required (Debian package kcat; tools/install-deps.sh)"

it_start --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
	--mqtt-listen off --store.retention_time 48h
it_addr HTTP http
it_addr KAFKA kafka
export CONFLUX_SERVER=$HTTP
KC="timeout 60 kcat -b $KAFKA"
ka() { timeout 30 python3 "$HERE/kafka_admin.py" "$KAFKA" "$@"; }
# expect NAME FILE LINE...: FILE holds each LINE (a fixed string).
expect() {
	name=$1 file=$2
	shift 2
	for l in "$@"; do
		grep -qxF -- "$l" "$file" || fail "$name: no line '$l'"
	done
}

# ApiVersions lists the four APIs with the versions served.
ka apiversions >"$T/av.out" 2>"$T/av.err" || fail "ApiVersions"
expect ApiVersions "$T/av.out" "23 2-4" "32 1-4" "37 0-3" "60 0-1"

# CreatePartitions: validate_only changes nothing; then 3 -> 5 (v3, flexible).
"$CLI" topic create grow --type normal --queues 3 >"$T/create.out" 2>&1 || fail "topic create"
ka cp 0 --validate grow:5 >"$T/cp0.out" 2>"$T/cp0.err" || fail "CreatePartitions validate_only"
expect "CreatePartitions validate_only" "$T/cp0.out" "grow=0"
$KC -L -t grow >"$T/meta0.out" 2>&1 || fail "kcat -L"
grep -q 'topic "grow" with 3 partitions' "$T/meta0.out" || fail "validate_only changed the topic"
ka cp 3 grow:5 >"$T/cp1.out" 2>"$T/cp1.err" || fail "CreatePartitions v3"
expect "CreatePartitions v3" "$T/cp1.out" "grow=0"
$KC -L -t grow >"$T/meta1.out" 2>&1 || fail "kcat -L after growing"
grep -q 'topic "grow" with 5 partitions' "$T/meta1.out" || fail "the topic did not grow to 5"

# The new partition takes records at once and gives them back.
seq 1 7 | sed 's/^/p4-/' >"$T/p4.txt"
$KC -t grow -p 4 -P -l "$T/p4.txt" 2>"$T/p4.err" || fail "kcat produce to partition 4"
$KC -t grow -p 4 -C -o beginning -e -q -f '%p %o %s\n' >"$T/c4.out" 2>"$T/c4.err" ||
	fail "kcat consume partition 4"
seq 0 6 | awk '{ printf "4 %d p4-%d\n", $1, $1 + 1 }' | cmp -s - "$T/c4.out" ||
	fail "partition 4 gave back: $(cat "$T/c4.out")"

# Refusals, in classic (v1) and flexible (v2) versions.
ka cp 1 grow:4 >"$T/cp2.out" 2>"$T/cp2.err" || fail "CreatePartitions shrink"
grep -q '^grow=37 the topic has 5 partitions' "$T/cp2.out" || fail "shrink: $(cat "$T/cp2.out")"
ka cp 2 grow:5 nosuch:3 >"$T/cp3.out" 2>"$T/cp3.err" || fail "CreatePartitions equal"
grep -q '^grow=37 the topic already has 5 partitions' "$T/cp3.out" || fail "equal: $(cat "$T/cp3.out")"
grep -q '^nosuch=3 ' "$T/cp3.out" || fail "unknown topic: $(cat "$T/cp3.out")"
ka cp 2 --validate grow:7:0 >"$T/cp4.out" 2>"$T/cp4.err" || fail "CreatePartitions assignments"
grep -q '^grow=39 2 partitions added but 1 assignments given' "$T/cp4.out" ||
	fail "assignment count: $(cat "$T/cp4.out")"
ka cp 2 --validate grow:6:1 >"$T/cp5.out" 2>"$T/cp5.err" || fail "CreatePartitions other broker"
grep -q '^grow=39 ' "$T/cp5.out" || fail "assignment to node 1: $(cat "$T/cp5.out")"
ka cp 2 --validate grow:6:0 >"$T/cp6.out" 2>"$T/cp6.err" || fail "CreatePartitions node 0"
expect "assignment to node 0" "$T/cp6.out" "grow=0"
ka cp 0 grow:6 grow:7 >"$T/cp7.out" 2>"$T/cp7.err" || fail "CreatePartitions duplicates"
[ "$(grep -c '^grow=42 ' "$T/cp7.out")" = 2 ] || fail "duplicates: $(cat "$T/cp7.out")"
$KC -L -t grow >"$T/meta2.out" 2>&1 || fail "kcat -L after refusals"
grep -q 'topic "grow" with 5 partitions' "$T/meta2.out" || fail "a refused request changed the topic"

# DescribeConfigs of a topic (v1): the store's settings under Kafka's names.
ka dc 1 2:grow 2:nosuch 8:0 >"$T/dc1.out" 2>"$T/dc1.err" || fail "DescribeConfigs v1"
expect "DescribeConfigs v1" "$T/dc1.out" \
	"resource 2:grow error=0" \
	"  retention.ms=172800000 source=4 readonly=1 sensitive=0" \
	"  retention.bytes=-1 source=5 readonly=1 sensitive=0" \
	"  segment.bytes=33554432 source=4 readonly=1 sensitive=0" \
	"  max.message.bytes=4194304 source=5 readonly=1 sensitive=0" \
	"  cleanup.policy=delete source=5 readonly=1 sensitive=0" \
	"  message.timestamp.type=CreateTime source=5 readonly=1 sensitive=0" \
	"  compression.type=producer source=5 readonly=1 sensitive=0" \
	"  min.insync.replicas=1 source=5 readonly=1 sensitive=0" \
	"resource 2:nosuch error=3 the topic does not exist"
grep -q '^resource 8:0 error=42 ' "$T/dc1.out" || fail "unknown resource type: $(cat "$T/dc1.out")"
# v4 (flexible): the keys asked for only, with synonyms, types and documentation.
ka dc 4 --synonyms --docs 2:grow:retention.ms,cleanup.policy,no.such.key >"$T/dc2.out" \
	2>"$T/dc2.err" || fail "DescribeConfigs v4"
expect "DescribeConfigs v4" "$T/dc2.out" \
	"  retention.ms=172800000 source=4 readonly=1 sensitive=0 type=5 synonyms=log.retention.ms=172800000/4 doc" \
	"  cleanup.policy=delete source=5 readonly=1 sensitive=0 type=7 synonyms=log.cleanup.policy=delete/5 doc"
[ "$(grep -c '^  ' "$T/dc2.out")" = 2 ] || fail "configuration keys not honoured: $(cat "$T/dc2.out")"
# The broker: node 0 only.
ka dc 2 4:0 4:1 >"$T/dc3.out" 2>"$T/dc3.err" || fail "DescribeConfigs broker"
expect "DescribeConfigs broker" "$T/dc3.out" \
	"resource 4:0 error=0" \
	"  broker.id=0 source=5 readonly=1 sensitive=0" \
	"  log.dirs=$(cd "$T/data" && pwd -P) source=4 readonly=1 sensitive=0" \
	"  num.partitions=8 source=5 readonly=1 sensitive=0" \
	"  auto.create.topics.enable=true source=5 readonly=1 sensitive=0"
grep -q '^resource 4:1 error=42 ' "$T/dc3.out" || fail "another broker: $(cat "$T/dc3.out")"

# DescribeCluster: the cluster id and this broker, as Metadata advertises it.
for v in 0 1; do
	ka cluster $v >"$T/cl$v.out" 2>"$T/cl$v.err" || fail "DescribeCluster v$v"
	expect "DescribeCluster v$v" "$T/cl$v.out" "error=0" "cluster_id=conflux" "controller=0" \
		"broker 0 $KAFKA rack=None" "authorized_operations=-2147483648"
done
expect "DescribeCluster v1" "$T/cl1.out" "endpoint_type=1"
ka cluster 1 --ops 2 >"$T/cl2.out" 2>"$T/cl2.err" || fail "DescribeCluster controllers"
expect "DescribeCluster controllers" "$T/cl2.out" "endpoint_type=2" "authorized_operations=-2147483648"
grep -q '^error=114 ' "$T/cl2.out" || fail "controller endpoint: $(cat "$T/cl2.out")"
ka cluster 1 --ops >"$T/cl3.out" 2>"$T/cl3.err" || fail "DescribeCluster with operations"
expect "DescribeCluster with operations" "$T/cl3.out" "authorized_operations=8096"

# OffsetForLeaderEpoch: epoch 0 ends at the log end; later epochs are unknown (-1).
for v in 2 3 4; do
	ka olep $v grow:4:0 grow:1:0 grow:4:1 grow:4:-1 grow:4:0:1 grow:9:0 nosuch:0:0 \
		>"$T/ol$v.out" 2>"$T/ol$v.err" || fail "OffsetForLeaderEpoch v$v"
	expect "OffsetForLeaderEpoch v$v" "$T/ol$v.out" \
		"grow/4 error=0 epoch=0 end=7" \
		"grow/1 error=0 epoch=0 end=0" \
		"grow/4 error=0 epoch=-1 end=-1" \
		"grow/4 error=75 epoch=-1 end=-1" \
		"grow/9 error=3 epoch=-1 end=-1" \
		"nosuch/0 error=3 epoch=-1 end=-1"
	[ "$(grep -c '^grow/4 error=0 epoch=-1 end=-1$' "$T/ol$v.out")" = 2 ] ||
		fail "epoch 1 and -1: $(cat "$T/ol$v.out")"
done

kill -0 $PID 2>/dev/null || fail "confluxd died"
kill -TERM $PID
wait $PID || fail "confluxd exit status $? after SIGTERM"
PID=
echo "07-kafka-admin: OK"
