#!/bin/sh
# The Kafka protocol against the storage engine of the same run:
#   1. the in-process store benchmark (conflux bench store, 1 GiB scenarios),
#   2. confluxd on a scratch directory, then kafka_bench (librdkafka): 100 B
#      and 1 KiB records, acks=1, batching on, no compression, 4 partitions;
#      produce, then fetch everything back from the beginning; then the raw
#      fetch and raw produce of kafka_bench (the broker's side without
#      librdkafka's per-record costs: see bench/kafka_bench.c).
# Prints each JSON report and the produce rate as a ratio to the store's
# batched appends.
#
#   bench/kafka.sh [DIR]        (BUILD=build-rel to use another build tree)
set -eu

DIR=${1:-./bench-data/kafka}
BUILD=${BUILD:-build}
KAFKA=127.0.0.1:${KAFKA_PORT:-28092}
HTTP=127.0.0.1:${HTTP_PORT:-28080}

[ -x "$BUILD/kafka_bench" ] || { echo "no $BUILD/kafka_bench: install librdkafka-dev and rebuild"; exit 1; }
rm -rf "$DIR"
mkdir -p "$DIR"
"$BUILD/conflux" bench store --dir "$DIR/store" --bytes 1GiB --dd-bytes 1GiB \
	--sync-time 1s --json >"$DIR/store.json"
"$BUILD/confluxd" --data-dir "$DIR/data" --grpc-listen off --http-listen "$HTTP" \
	--kafka-listen "$KAFKA" --mqtt-listen off >"$DIR/confluxd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
i=0
until grep -q "confluxd ready" "$DIR/confluxd.log"; do
	i=$((i + 1))
	[ $i -gt 300 ] && { echo "confluxd did not start"; cat "$DIR/confluxd.log"; exit 1; }
	sleep 0.1
done
"$BUILD/conflux" --server "$HTTP" topic create kb100 --queues 4 >/dev/null
"$BUILD/conflux" --server "$HTTP" topic create kb1k --queues 4 >/dev/null
"$BUILD/kafka_bench" "$KAFKA" kb100 --size 100 --count 2000000 --partitions 4 --json \
	>"$DIR/k100.json"
"$BUILD/kafka_bench" "$KAFKA" kb1k --size 1024 --count 1000000 --partitions 4 --json \
	>"$DIR/k1k.json"
kill -TERM $pid
wait $pid || true
trap - EXIT
cat "$DIR/k100.json" "$DIR/k1k.json"

python3 - "$DIR" <<'PY'
import json, sys, os
d = sys.argv[1]
load = lambda n: json.load(open(os.path.join(d, n)))
store = {r["name"]: r for r in load("store.json")["results"]}
for n, s in (("k100.json", "async 100B batch 100"), ("k1k.json", "async 1KiB batch 100")):
    k = load(n)
    print("%5d B: produce %.0f records/s (%.1f MB/s) = %.2fx the store's %s (%.0f/s); "
          "fetch %.0f records/s, %.1f MB/s"
          % (k["size"], k["produce_records_per_s"], k["produce_mb_per_s"],
             k["produce_records_per_s"] / store[s]["msgs_per_s"], s, store[s]["msgs_per_s"],
             k["fetch_records_per_s"], k["fetch_mb_per_s"]))
    print("%5d B: raw produce %.0f records/s (%.1f MB/s) = %.2fx the store's %s; "
          "raw fetch %.0f records/s, %.1f MB/s of batches"
          % (k["size"], k["raw_produce_records_per_s"], k["raw_produce_mb_per_s"],
             k["raw_produce_records_per_s"] / store[s]["msgs_per_s"], s,
             k["raw_fetch_records_per_s"], k["raw_fetch_wire_mb_per_s"]))
PY
rm -rf "$DIR"
