#!/bin/sh
# conflux, the command-line tool, against a real confluxd: topics through
# the admin API, a tailing consumer and producers (arguments and stdin) over
# gRPC with every field checked, group lag before and after consuming, a
# reset to the earliest offset and a second pass, message lookup by id and
# key, the network benchmarks' JSON reports, and the failures a user meets
# (unknown topic, bad command lines, no server).
#
#   03-cli.sh BUILD_DIR
#
# JSON is checked with python3.
set -u
BUILD=$1
CLI=$BUILD/conflux
T=$(mktemp -d /tmp/cfx-it-cli-XXXXXX)
PID=
BG=
cleanup() {
	[ -n "$BG" ] && kill "$BG" 2>/dev/null
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$T"/*.out "$T"/*.err; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
	done
	[ -f "$T/log" ] && { echo "--- server log"; tail -n 30 "$T/log"; }
	exit 1
}
command -v python3 >/dev/null || fail "python3 is required to check JSON output"

# json FILE PYTHON-EXPR: the expression, over d = the JSON in FILE (or the
# list of objects of a JSON-lines FILE when the first line does not hold
# it all), must be true.
json() {
	python3 - "$1" "$2" <<'PY' || fail "JSON check failed on $1: $2"
import json, sys
text = open(sys.argv[1]).read()
try:
    d = json.loads(text)
except ValueError:
    d = [json.loads(l) for l in text.splitlines() if l.strip()]
ok = eval(sys.argv[2])
if not ok:
    print("JSON was:", text[:2000])
    sys.exit(1)
PY
}

# run NAME EXPECTED-STATUS ARGS...: runs conflux with a time limit, output in
# $T/NAME.out and $T/NAME.err, and checks its exit status.
run() {
	name=$1
	want=$2
	shift 2
	timeout 120 "$CLI" "$@" >"$T/$name.out" 2>"$T/$name.err"
	got=$?
	[ "$got" = "$want" ] || fail "conflux $* exited $got, expected $want"
}

# ---------------------------------------------------------------------------
# The server, on ports the system picks (the HTTP one read back from its log;
# the gRPC one is learned by the CLI from GET /v1/status)
# ---------------------------------------------------------------------------
"$BUILD/confluxd" --data-dir "$T/data" --grpc-listen 127.0.0.1:0 --kafka-listen off --mqtt-listen off --http-listen 127.0.0.1:0 \
	--store.segment_bytes 32MiB --store.populate_ahead 0 >"$T/log" 2>&1 &
PID=$!
i=0
until grep -q "confluxd ready" "$T/log"; do
	i=$((i + 1))
	kill -0 $PID 2>/dev/null || fail "confluxd exited during start"
	[ $i -gt 300 ] && fail "confluxd did not become ready"
	sleep 0.1
done
HTTP=$(sed -n 's/.*the admin API and \/metrics are on \([0-9.]*:[0-9]*\).*/\1/p' "$T/log")
[ -n "$HTTP" ] || fail "no admin API address in the server log"
CONFLUX_SERVER=$HTTP
export CONFLUX_SERVER

# ---------------------------------------------------------------------------
# --help everywhere
# ---------------------------------------------------------------------------
for c in "" topic "topic create" "topic list" "topic describe" "topic update" "topic delete" \
	group "group create" "group list" "group describe" "group update" "group delete" \
	"group reset" produce consume message "message get" bench "bench produce" \
	"bench consume" "bench e2e" "bench store"; do
	# shellcheck disable=SC2086 # the words of $c are the command
	run help 0 $c --help
	grep -q "usage: conflux" "$T/help.out" || fail "conflux $c --help prints no usage"
done

# ---------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------
run create 0 topic create orders --type normal --queues 4
grep -q "created topic orders" "$T/create.out" || fail "topic create message"
run create2 1 topic create orders --queues 4
grep -q "409" "$T/create2.err" || fail "second create: no 409 shown"
run badtype 2 topic create other --type weird
run list 0 topic list
grep -q "^orders  *normal  *4 " "$T/list.out" || fail "topic list table"
run listj 0 topic list --json
json "$T/listj.out" "any(t['name'] == 'orders' and t['queues'] == 4 for t in d['topics'])"
run desc 0 topic describe orders
grep -q "^QUEUE" "$T/desc.out" || fail "topic describe table"
run descj 0 topic describe orders --json
json "$T/descj.out" "d['name'] == 'orders' and d['type'] == 'normal' and len(d['queue_offsets']) == 4"
run nope 1 topic describe nope
grep -q "404" "$T/nope.err" && grep -q "nope" "$T/nope.err" || fail "unknown topic: no clear message"

# ---------------------------------------------------------------------------
# Produce while a consumer tails the topic
# ---------------------------------------------------------------------------
run gcreate 0 group create g1
grep -q "created group g1" "$T/gcreate.out" || fail "group create message"
timeout 120 "$CLI" consume orders --group g1 --count 5 --json >"$T/tail.out" 2>"$T/tail.err" &
BG=$!
i=0
until grep -q "consuming orders as group g1" "$T/tail.err"; do
	i=$((i + 1))
	kill -0 $BG 2>/dev/null || fail "consume exited before subscribing"
	[ $i -gt 100 ] && fail "consume did not subscribe"
	sleep 0.1
done

run p1 0 produce orders "hello one" "hello two" --tag T1 --key k1 --key k2 \
	--property color=red --property size=L
[ "$(grep -c '^01[0-9A-F]\{32\} offset=[0-9][0-9]*$' "$T/p1.out")" = 2 ] ||
	fail "produce does not print an id and offset per message"
ID1=$(sed -n '1s/ .*//p' "$T/p1.out")
printf 'line a\nline b\r\n\nline c' | timeout 60 "$CLI" produce orders --json >"$T/p2.out" \
	2>"$T/p2.err" || fail "produce from stdin failed"
json "$T/p2.out" "len(d) == 3 and all(len(m['msg_id']) == 34 and m['offset'] >= 0 for m in d)"
run p3 0 produce orders --quiet --json "quiet one"
json "$T/p3.out" "d['sent'] == 1 and d['topic'] == 'orders'"

wait $BG
rc=$?
BG=
[ $rc = 0 ] || fail "tailing consume exited $rc"
json "$T/tail.out" "sorted(m['body'] for m in d) == ['hello one', 'hello two', 'line a', 'line b', 'line c']"
json "$T/tail.out" "all(m['tag'] == 'T1' and m['keys'] == ['k1', 'k2'] and m['properties'] == {'color': 'red', 'size': 'L'} for m in d if m['body'].startswith('hello'))"
json "$T/tail.out" "[m['msg_id'] for m in d if m['body'] == 'hello one'] == ['$ID1']"
json "$T/tail.out" "all(m['topic'] == 'orders' and m['attempt'] == 1 for m in d)"
grep -q "5 messages received" "$T/tail.err" || fail "consume summary"

# The sixth message ("quiet one") is still there: consume it, in text form.
run c6 0 consume orders --group g1 --count 1
grep -q "^quiet one$" "$T/c6.out" || fail "text consume does not show the body"
grep -q "^topic=orders queue=[0-3] offset=[0-9]* id=01" "$T/c6.out" || fail "text consume header"

# ---------------------------------------------------------------------------
# Lag, reset, second pass
# ---------------------------------------------------------------------------
run gdesc 0 group describe g1 --json
json "$T/gdesc.out" "[t['lag'] for t in d['topics'] if t['topic'] == 'orders'] == [0]"
json "$T/gdesc.out" "sum(q['committed'] for t in d['topics'] for q in t['queues']) == 6"
run gdesct 0 group describe g1
grep -q "^orders  *total  *0$" "$T/gdesct.out" || fail "group describe: total lag 0 row"

run reset 0 group reset g1 --topic orders --earliest
grep -q "lag now 6" "$T/reset.out" || fail "reset: lag after reset"
run gdesc2 0 group describe g1 --json
json "$T/gdesc2.out" "[t['lag'] for t in d['topics'] if t['topic'] == 'orders'] == [6]"
run again 0 consume orders --group g1 --count 6 --json
json "$T/again.out" "sorted(m['body'] for m in d) == ['hello one', 'hello two', 'line a', 'line b', 'line c', 'quiet one']"
run gdesc3 0 group describe g1 --json
json "$T/gdesc3.out" "[t['lag'] for t in d['topics'] if t['topic'] == 'orders'] == [0]"
run latest 0 group reset g1 --topic orders --latest --json
json "$T/latest.out" "d['lag'] == 0"
run notime 2 group reset g1 --topic orders
run badtime 2 group reset g1 --topic orders --time yesterday

# ---------------------------------------------------------------------------
# Message lookup
# ---------------------------------------------------------------------------
run getid 0 message get --id "$ID1"
grep -q "^hello one$" "$T/getid.out" || fail "message get --id body"
grep -q "id=$ID1 tag=T1 keys=k1,k2" "$T/getid.out" || fail "message get --id header"
run getidj 0 message get --id "$ID1" --json
json "$T/getidj.out" "len(d['messages']) == 1 and d['messages'][0]['msg_id'] == '$ID1' and d['messages'][0]['body'] == 'hello one'"
run getkey 0 message get --topic orders --key k2 --json
json "$T/getkey.out" "sorted(m['body'] for m in d['messages']) == ['hello one', 'hello two']"
run getnone 1 message get --id 01000000000000000000000000000000FF
run getbad 2 message get --topic orders

# ---------------------------------------------------------------------------
# Benchmarks (the figures are not judged, only their sanity)
# ---------------------------------------------------------------------------
run bp 0 bench produce --duration 2s --json
json "$T/bp.out" "d['mode'] == 'produce' and d['messages'] > 0 and d['msgs_per_s'] > 0 and d['mb_per_s'] > 0 and d['errors'] == 0 and d['send_latency_ms']['p99'] >= d['send_latency_ms']['p50'] > 0"
run be 0 bench e2e --duration 2s --rate 1000 --json
json "$T/be.out" "d['mode'] == 'e2e' and d['sent'] >= 1000 and d['received'] == d['sent'] and d['errors'] == 0"
json "$T/be.out" "0 < d['latency_ms']['p50'] <= d['latency_ms']['p99'] <= d['latency_ms']['p999'] <= d['latency_ms']['max']"
json "$T/be.out" "500 < d['achieved_rate'] < 1500"
run bc 0 bench consume --count 20000 --json
json "$T/bc.out" "d['mode'] == 'consume' and d['messages'] == 20000 and d['fill']['messages'] == 20000 and d['msgs_per_s'] > 0 and d['errors'] == 0"

# ---------------------------------------------------------------------------
# Bad command lines, then no server
# ---------------------------------------------------------------------------
run badprop 2 produce orders x --property novalue
run nogroup 2 consume orders
run unknown 2 topic frobnicate
run badbatch 2 produce orders x --batch 0

kill -TERM $PID
wait $PID
PID=
run down 3 topic list
grep -q "cannot reach the admin API at $HTTP" "$T/down.err" || fail "server down: no clear message"
run down2 3 produce orders x
run down3 3 produce orders x --grpc 127.0.0.1:1
grep -q "cannot connect to the gRPC API" "$T/down3.err" || fail "gRPC down: no clear message"
echo "ok"
