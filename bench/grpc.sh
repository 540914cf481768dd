#!/bin/sh
# The gRPC front end against the storage engine of the same run:
#   1. the in-process store benchmark (conflux bench store),
#   2. confluxd started on a scratch directory, then `conflux bench e2e`
#      (fixed 10k msg/s, produce -> receive latency) with 4 and 1 connections,
#      then `conflux bench produce` (1 KiB, 32 per SendMessage, 4 connections;
#      last, so that its gigabytes of write-back do not disturb the latencies),
#   3. `conflux bench consume`: POP receive + ack of a 2M-message backlog with
#      4 consumer connections, as a ratio to the produce rate.
# Prints each JSON report and a summary with the protocol overhead as a ratio.
#
#   bench/grpc.sh [DIR]        (BUILD=build-rel to use another build tree)
set -eu

DIR=${1:-./bench-data/grpc}
BUILD=${BUILD:-build}
GRPC=127.0.0.1:${GRPC_PORT:-28081}
HTTP=127.0.0.1:${HTTP_PORT:-28080}

rm -rf "$DIR"
mkdir -p "$DIR"
"$BUILD/conflux" bench store --dir "$DIR/store" --bytes 1GiB --dd-bytes 1GiB \
	--sync-time 1s --json >"$DIR/store.json"
cat "$DIR/store.json"

"$BUILD/confluxd" --data-dir "$DIR/data" --grpc-listen "$GRPC" --http-listen "$HTTP" --mqtt-listen off \
	>"$DIR/confluxd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
i=0
until grep -q "confluxd ready" "$DIR/confluxd.log"; do
	i=$((i + 1))
	[ $i -gt 300 ] && { echo "confluxd did not start"; cat "$DIR/confluxd.log"; exit 1; }
	sleep 0.1
done

"$BUILD/conflux" bench e2e --server "$HTTP" --grpc "$GRPC" --rate 10000 --duration 10s \
	--json >"$DIR/e2e4.json"
cat "$DIR/e2e4.json"
"$BUILD/conflux" bench e2e --server "$HTTP" --grpc "$GRPC" --rate 10000 --duration 10s \
	--connections 1 --json >"$DIR/e2e1.json"
cat "$DIR/e2e1.json"
"$BUILD/conflux" bench produce --server "$HTTP" --grpc "$GRPC" --duration 10s --json \
	>"$DIR/produce.json"
cat "$DIR/produce.json"
"$BUILD/conflux" bench consume --server "$HTTP" --grpc "$GRPC" --count 2000000 \
	--connections 4 --duration 60s --json >"$DIR/consume.json"
cat "$DIR/consume.json"
kill -TERM $pid
wait $pid || true
trap - EXIT

python3 - "$DIR" <<'PY'
import json, sys, os
d = sys.argv[1]
load = lambda n: json.load(open(os.path.join(d, n)))
store, prod = load("store.json"), load("produce.json")
by = {r["name"]: r for r in store["results"]}
x1, b100 = by["async 1KiB x1"], by["async 1KiB batch 100"]
print()
print("gRPC produce, 1 KiB, 32/call, 4 conns: %.0f msgs/s, %.1f MB/s"
      % (prod["msgs_per_s"], prod["mb_per_s"]))
print("  vs in-process store async 1 KiB x1:        %.2fx (%.0f msgs/s)"
      % (prod["msgs_per_s"] / x1["msgs_per_s"], x1["msgs_per_s"]))
print("  vs in-process store async 1 KiB batch 100: %.2fx (%.0f msgs/s)"
      % (prod["msgs_per_s"] / b100["msgs_per_s"], b100["msgs_per_s"]))
cons = load("consume.json")
print("POP receive+ack, 4 consumers: %.0f msgs/s, %.1f MB/s = %.2fx the produce rate"
      % (cons["msgs_per_s"], cons["mb_per_s"], cons["msgs_per_s"] / prod["msgs_per_s"]))
for n, label in (("e2e4.json", "4 conns"), ("e2e1.json", "1 conn")):
    e = load(n)
    l = e["latency_ms"]
    print("e2e at %d msg/s, %s: p50 %.2f ms  p99 %.2f ms  p999 %.2f ms  max %.2f ms"
          % (e["rate"], label, l["p50"], l["p99"], l["p999"], l["max"]))
PY
rm -rf "$DIR"
