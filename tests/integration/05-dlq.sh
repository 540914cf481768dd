#!/bin/sh
# Dead letters end to end, against a real confluxd: a group with one
# delivery attempt receives three messages without acknowledging them, the
# broker moves them to %DLQ%g1 on the next receive; `conflux dlq list`
# shows them, `conflux dlq redrive` sends them back to their origin topic in
# two goes, and the group receives them again as first attempts. Then a
# dead letter without an origin stays where it is, the position survives a
# restart, the admin API checks its parameters, and the failures a user
# meets (no such DLQ, bad command lines) are clear.
#
#   05-dlq.sh BUILD_DIR
#
# DLQ_ORIGIN_TOPIC is a property the gRPC API refuses from producers (the
# broker's own), so the dead letters are made the real way: by a group's
# last attempt running out. JSON is checked with python3.
set -u
BUILD=$1
CLI=$BUILD/conflux
T=$(mktemp -d /tmp/cfx-it-dlq-XXXXXX)
PID=
cleanup() {
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
command -v curl >/dev/null || fail "curl is required (tools/install-deps.sh installs it)"

# json FILE PYTHON-EXPR: the expression, over d = the JSON in FILE (or the
# list of objects of a JSON-lines FILE), must be true.
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

# run NAME EXPECTED-STATUS ARGS...: conflux with a time limit, output in
# $T/NAME.out and $T/NAME.err, and its exit status checked.
run() {
	name=$1
	want=$2
	shift 2
	timeout 120 "$CLI" "$@" >"$T/$name.out" 2>"$T/$name.err"
	got=$?
	[ "$got" = "$want" ] || fail "conflux $* exited $got, expected $want"
}

# status METHOD PATH [BODY]: the HTTP status of one admin API request.
status() {
	if [ $# -ge 3 ]; then
		curl -s -o "$T/curl.out" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
			--data-binary "$3" "http://$HTTP$2"
	else
		curl -s -o "$T/curl.out" -w '%{http_code}' -X "$1" "http://$HTTP$2"
	fi
}

# start: confluxd on ports the system picks, the HTTP one read from its log.
start() {
	: >"$T/log"
	"$BUILD/confluxd" --data-dir "$T/data" --grpc-listen 127.0.0.1:0 --kafka-listen off --mqtt-listen off \
		--http-listen 127.0.0.1:0 --store.segment_bytes 32MiB --store.populate_ahead 0 \
		>"$T/log" 2>&1 &
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
}

stop() {
	kill -TERM $PID
	wait $PID
	rc=$?
	PID=
	[ $rc = 0 ] || fail "confluxd exited $rc on SIGTERM"
}

start

for c in dlq "dlq list" "dlq redrive"; do
	# shellcheck disable=SC2086 # the words of $c are the command
	run help 0 $c --help
	grep -q "usage: conflux dlq" "$T/help.out" || fail "conflux $c --help prints no usage"
done

# ---------------------------------------------------------------------------
# Dead letters, made by the broker: one attempt, not acknowledged
# ---------------------------------------------------------------------------
run topic 0 topic create orders --type normal --queues 2
run group 0 group create g1 --max-attempts 1
run p 0 produce orders one two three --tag T1 --key k1 --property color=red
run reset 0 group reset g1 --topic orders --earliest
run c1 0 consume orders --group g1 --count 3 --no-ack --invisible 10s --json
json "$T/c1.out" "sorted(m['body'] for m in d) == ['one', 'three', 'two']"
sleep 10.5
# The next receive finds their last attempt used: the broker moves them.
timeout 4 "$CLI" consume orders --group g1 --count 1 --wait 2s --json >"$T/c2.out" 2>"$T/c2.err"
[ -s "$T/c2.out" ] && fail "a message past its last attempt was delivered again"
i=0
while :; do
	run l0 0 dlq list g1 --json
	python3 -c "import json,sys; sys.exit(len(json.load(open('$T/l0.out'))['messages']) != 3)" &&
		break
	i=$((i + 1))
	[ $i -gt 50 ] && fail "the three messages did not reach %DLQ%g1"
	sleep 0.2
done

run l1 0 dlq list g1 --json
json "$T/l1.out" "d['group'] == 'g1' and d['topic'] == '%DLQ%g1' and d['position'] == 0 and d['end'] == 3"
json "$T/l1.out" "sorted(m['body'] for m in d['messages']) == ['one', 'three', 'two']"
json "$T/l1.out" "all(m['origin_topic'] == 'orders' and m['attempts'] == 1 and m['tag'] == 'T1' and m['keys'] == ['k1'] and m['properties']['color'] == 'red' and m['body_size'] == len(m['body']) for m in d['messages'])"
json "$T/l1.out" "[m['offset'] for m in d['messages']] == [0, 1, 2]"
json "$T/l1.out" "all(m['origin_message_id'] == m['message_id'] for m in d['messages'])"
run lt 0 dlq list g1
grep -q "^%DLQ%g1: 3 messages not re-driven (offsets 0 to 3)$" "$T/lt.out" ||
	fail "dlq list: no summary line"
[ "$(grep -c '^[0-2]  *01[0-9A-F]*  *orders  *1  *T1  *[a-z]*$' "$T/lt.out")" = 3 ] ||
	fail "dlq list: the table rows"
run lmax 0 dlq list g1 --max 1 --json
json "$T/lmax.out" "len(d['messages']) == 1"

# ---------------------------------------------------------------------------
# Re-drive in two goes
# ---------------------------------------------------------------------------
run r1 0 dlq redrive g1 --max 2 --json
json "$T/r1.out" "d == {'group': 'g1', 'redriven': 2}"
run l2 0 dlq list g1 --json
json "$T/l2.out" "d['position'] == 2 and len(d['messages']) == 1 and d['messages'][0]['offset'] == 2"
run r2 0 dlq redrive g1
grep -q "^re-drove 1 message of group g1" "$T/r2.out" || fail "dlq redrive: its report"
run r3 0 dlq redrive g1 --json
json "$T/r3.out" "d['redriven'] == 0"
run l3 0 dlq list g1 --json
json "$T/l3.out" "d['position'] == 3 and d['messages'] == []"

# The group gets them again, as new messages: a first attempt, no DLQ_*.
run c3 0 consume orders --group g1 --count 3 --json
json "$T/c3.out" "sorted(m['body'] for m in d) == ['one', 'three', 'two']"
json "$T/c3.out" "all(m['attempt'] == 1 and m['tag'] == 'T1' and m['properties'] == {'color': 'red'} for m in d)"
# Copies, not the originals: other (queue, offset) places.
ORIG=$(python3 -c "import json; print([(m['queue'], m['offset']) for m in map(json.loads, open('$T/c1.out'))])")
json "$T/c3.out" "all((m['queue'], m['offset']) not in $ORIG for m in d)"
ID=$(python3 -c "import json; print(json.loads(open('$T/c3.out').readline())['msg_id'])")
# One id, three places: the original and the copy in orders, the dead letter.
run get 0 message get --id "$ID" --json
json "$T/get.out" "sorted(m['topic'] for m in d['messages']) == ['%DLQ%g1', 'orders', 'orders']"

# ---------------------------------------------------------------------------
# A dead letter without an origin stays
# ---------------------------------------------------------------------------
run dt 0 topic create '%DLQ%g2' --type mixed --queues 1
run po 0 produce '%DLQ%g2' orphan
# The produce is acknowledged once stored; the index that lists it follows.
i=0
until "$CLI" dlq list g2 --json 2>/dev/null | grep -q orphan; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "the orphan never shows in dlq list g2"
	sleep 0.1
done
run r4 1 dlq redrive g2
grep -q "^re-drove 0 messages of group g2" "$T/r4.out" || fail "dlq redrive g2: its report"
grep -q "DLQ_ORIGIN_TOPIC" "$T/r4.err" || fail "dlq redrive g2: no reason for what stayed"
run l4 0 dlq list g2 --json
json "$T/l4.out" "len(d['messages']) == 1 and d['messages'][0]['origin_topic'] is None and d['messages'][0]['body'] == 'orphan'"
grep -q "not re-driven (it has no DLQ_ORIGIN_TOPIC property" "$T/log" ||
	fail "the server log does not say which message stayed"

# ---------------------------------------------------------------------------
# The admin API's parameters, and the failures a user meets
# ---------------------------------------------------------------------------
[ "$(status GET '/v1/groups/g1/dlq?max=0')" = 400 ] || fail "?max=0 is not 400"
[ "$(status GET '/v1/groups/g1/dlq?max=1001')" = 400 ] || fail "?max=1001 is not 400"
[ "$(status GET '/v1/groups/g1/dlq?max=x')" = 400 ] || fail "?max=x is not 400"
[ "$(status GET '/v1/groups/g1/dlq?other=1')" = 400 ] || fail "an unknown parameter is not 400"
[ "$(status POST /v1/groups/g1/dlq/redrive '{"max":0}')" = 400 ] || fail "max 0 is not 400"
[ "$(status POST /v1/groups/g1/dlq/redrive '{"max":100001}')" = 400 ] || fail "max 100001 is not 400"
[ "$(status POST /v1/groups/g1/dlq/redrive '{"max":"1"}')" = 400 ] || fail "max \"1\" is not 400"
[ "$(status POST /v1/groups/g1/dlq/redrive '{"limit":1}')" = 400 ] || fail "an unknown field is not 400"
[ "$(status POST /v1/groups/g1/dlq/redrive)" = 200 ] || fail "a body-less redrive is not 200"
json "$T/curl.out" "d == {'redriven': 0}"
[ "$(status GET /v1/groups/nope/dlq)" = 404 ] || fail "an unknown DLQ is not 404"

run nope 1 dlq redrive nope
grep -q "404 not_found: group \"nope\" has no dead-letter queue" "$T/nope.err" ||
	fail "redrive of an unknown group: no clear message"
run nopel 1 dlq list nope
run nogroup 2 dlq redrive
run badmax 2 dlq redrive g1 --max 0
run badmax2 2 dlq list g1 --max 1001
run badsub 2 dlq frobnicate g1

# ---------------------------------------------------------------------------
# The position is journaled: it survives a restart
# ---------------------------------------------------------------------------
stop
start
run l5 0 dlq list g1 --json
json "$T/l5.out" "d['position'] == 3 and d['end'] == 3 and d['messages'] == []"
run r5 0 dlq redrive g1 --json
json "$T/r5.out" "d['redriven'] == 0"
stop
echo "ok"
