#!/bin/sh
# EventBridge: CloudEvents ingest, rule matching and rule-to-webhook latency,
# all in one run:
#   1. rule matching on one core with 10, 1,000 and 10,000 rules
#      ($BUILD/events_match_bench, in process, before any server runs);
#   2. confluxd started on a scratch directory (gRPC and HTTP; Kafka and MQTT
#      off), then the rule-to-webhook latency: a bus with one rule whose
#      target is an HTTP webhook served by bench/eventbridge_latency.mjs;
#      the same helper sends RATE events/s (structured mode, keep-alive)
#      for LAT_SECONDS after 2 s of warm-up events it does not measure, each
#      carrying its send time in the extension `senttime`; the receiver
#      reports p50/p99/p999 of (arrival - senttime) and how many of the
#      measured events were delivered;
#   3. HTTP ingest: wrk (bench/eventbridge.lua) POSTs 1 KiB structured-mode
#      events with keep-alive over WRK_CONNS connections for 10 s to a bus
#      with no rules;
#   4. beside it, the gRPC ingest of the same server: `conflux bench produce`
#      with 1 KiB messages, 32 per SendMessage (the default) and 1 per call.
# The latency runs before the ingest runs so that the write-back of their
# gigabytes does not disturb it. Prints each report and a summary.
#
#   bench/eventbridge.sh [DIR]   (BUILD=build-rel to use another build tree;
#                                 GRPC_PORT, HTTP_PORT, HOOK_PORT, RATE,
#                                 LAT_SECONDS, WRK_CONNS change the defaults)
#
# Needs wrk (Debian: apt-get install wrk; not in tools/install-deps.sh, it is
# only for this benchmark) and node (the latency helper uses builtins only).
set -eu

DIR=${1:-./bench-data/eventbridge}
BUILD=${BUILD:-build}
GRPC=127.0.0.1:${GRPC_PORT:-28081}
HTTP=127.0.0.1:${HTTP_PORT:-28080}
HOOK_PORT=${HOOK_PORT:-28090}
RATE=${RATE:-5000}
LAT_SECONDS=${LAT_SECONDS:-20}
WRK_CONNS=${WRK_CONNS:-8}
HERE=$(cd "$(dirname "$0")" && pwd)

command -v wrk >/dev/null 2>&1 || {
	echo "no wrk: the HTTP ingest figure needs it (Debian: apt-get install wrk)"
	exit 1
}
command -v node >/dev/null 2>&1 || { echo "no node: the latency helper needs Node.js"; exit 1; }
for b in confluxd conflux events_match_bench; do
	[ -x "$BUILD/$b" ] || { echo "no $BUILD/$b: cmake --build $BUILD --target $b"; exit 1; }
done

rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# 1. Rule matching, in process.
"$BUILD/events_match_bench" >"$DIR/match.txt"
cat "$DIR/match.txt"

# 2. The server.
"$BUILD/confluxd" --data-dir "$DIR/data" --grpc-listen "$GRPC" --http-listen "$HTTP" \
	--kafka-listen off --mqtt-listen off >"$DIR/confluxd.log" 2>&1 &
pid=$!
rpid=""
trap 'kill $pid $rpid 2>/dev/null || true' EXIT
i=0
until grep -q "confluxd ready" "$DIR/confluxd.log"; do
	i=$((i + 1))
	[ $i -gt 300 ] && { echo "confluxd did not start"; cat "$DIR/confluxd.log"; exit 1; }
	sleep 0.1
done

admin() { # METHOD PATH JSON: fails unless 2xx
	curl -sS -f -o /dev/null -X "$1" -H 'Content-Type: application/json' -d "$3" "http://$HTTP$2"
}

# 2. Rule-to-webhook latency.
admin POST /v1/buses '{"name":"lat"}'
admin POST /v1/targets "{\"name\":\"hook\",\"type\":\"http\",\"url\":\"http://127.0.0.1:$HOOK_PORT/hook\",
	\"concurrency\":16,\"retry\":{\"strategy\":\"backoff\",\"interval_ms\":100}}"
admin POST /v1/buses/lat/rules '{"name":"all","pattern":{"type":["bench.latency"]},"targets":[{"target":"hook"}]}'
node "$HERE/eventbridge_latency.mjs" receive --port "$HOOK_PORT" --idle-ms 5000 --dump "$DIR/latency-us.txt" \
	--max-ms $(((LAT_SECONDS + 120) * 1000)) >"$DIR/latency.json" 2>"$DIR/receiver.err" &
rpid=$!
i=0
until grep -q listening "$DIR/receiver.err"; do
	i=$((i + 1))
	[ $i -gt 100 ] && { echo "the webhook receiver did not start"; cat "$DIR/receiver.err"; exit 1; }
	sleep 0.1
done
node "$HERE/eventbridge_latency.mjs" send --url "http://$HTTP/v1/buses/lat/events" \
	--rate "$RATE" --seconds "$LAT_SECONDS" >"$DIR/sender.json"
cat "$DIR/sender.json"
wait $rpid
rpid=""
cat "$DIR/latency.json"
curl -sS "http://$HTTP/v1/targets/hook" >"$DIR/target.json"
cat "$DIR/target.json"
echo

# 3. HTTP ingest with wrk.
admin POST /v1/buses '{"name":"ingest"}'
wrk -t2 -c"$WRK_CONNS" -d10s --latency -s "$HERE/eventbridge.lua" \
	"http://$HTTP/v1/buses/ingest/events" >"$DIR/wrk.txt"
cat "$DIR/wrk.txt"
curl -sS "http://$HTTP/v1/topics/ingest" >"$DIR/ingest-topic.json"

# 4. gRPC ingest of the same server.
"$BUILD/conflux" bench produce --server "$HTTP" --grpc "$GRPC" --size 1KiB --duration 10s \
	--json >"$DIR/produce32.json"
cat "$DIR/produce32.json"
"$BUILD/conflux" bench produce --server "$HTTP" --grpc "$GRPC" --size 1KiB --batch 1 \
	--duration 10s --json >"$DIR/produce1.json"
cat "$DIR/produce1.json"

kill -TERM $pid
wait $pid || true
trap - EXIT

python3 - "$DIR" "$WRK_CONNS" <<'PY'
import json, os, re, sys
d, conns = sys.argv[1], sys.argv[2]
load = lambda n: json.load(open(os.path.join(d, n)))
text = lambda n: open(os.path.join(d, n)).read()

print()
print("rule matching, one core (events_match_bench):")
for line in text("match.txt").splitlines():
    print("  " + line)

wrk = text("wrk.txt")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
m = re.search(r"(\d+) requests in", wrk)
reqs = int(m.group(1)) if m else 0
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", wrk)
non2xx = int(non2xx.group(1)) if non2xx else 0
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", wrk, re.M))
topic = load("ingest-topic.json")
stored = sum(q["end_offset"] - q["start_offset"] for q in topic["queue_offsets"])
p32, p1 = load("produce32.json"), load("produce1.json")
print("HTTP ingest, structured 1 KiB events, wrk %s connections: %.0f events/s "
      "(%d requests, %d not 200, %d stored; request p50 %s, p99 %s)"
      % (conns, rps, reqs, non2xx, stored, lat.get("50"), lat.get("99")))
print("gRPC ingest, 1 KiB, 32 per SendMessage: %.0f msgs/s -> HTTP is %.2fx"
      % (p32["msgs_per_s"], rps / p32["msgs_per_s"]))
print("gRPC ingest, 1 KiB, 1 per SendMessage:  %.0f msgs/s -> HTTP is %.2fx"
      % (p1["msgs_per_s"], rps / p1["msgs_per_s"]))

s, l = load("sender.json"), load("latency.json")
lm = l["latency_ms"]
print("rule -> webhook at %d events/s asked (%d achieved), %d sent after %d warm-up events, "
      "%d answered 200: delivered %d distinct / %d sent = %.4f (%d deliveries)"
      % (s["rate_asked"], s["rate_achieved"], s["sent"], s["warmup_sent"], s["answered_200"],
         l["distinct"], s["sent"], l["distinct"] / max(1, s["sent"]), l["deliveries"]))
print("  latency p50 %s ms  p99 %s ms  p999 %s ms  max %s ms"
      % (lm["p50"], lm["p99"], lm["p999"], lm["max"]))
PY
rm -rf "$DIR/data"
