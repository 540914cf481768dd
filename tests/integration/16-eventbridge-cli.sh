#!/bin/sh
# The EventBridge end to end, through conflux and curl against a real
# confluxd: a bus, a topic target and a rule; `event put` of a matching and
# a non-matching event, of which only the first reaches the target topic;
# `rule test` both ways; HTTP ingress in the binary and batch modes (an
# invalid event in a batch is 400 and stores nothing); pull over HTTP
# (binary mode for one event, a batch for several, 204 when empty, a long
# poll that returns when an event arrives); replay routes stored events
# again; the EventBridge metrics.
#
#   16-eventbridge-cli.sh BUILD_DIR
#
# Needs curl and python3 (JSON checks).
set -u
BUILD=$1
CLI=$BUILD/conflux
. "$(dirname "$0")/lib.sh"
it_init eb
command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required to check JSON output"

# json FILE PYTHON-EXPR: the expression over d = the JSON in FILE must be true.
json() {
	python3 - "$1" "$2" <<'PY' || fail "JSON check failed on $1: $2"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text)
if not eval(sys.argv[2]):
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
	timeout 60 "$CLI" --server "$HTTP" "$@" >"$T/$name.out" 2>"$T/$name.err"
	got=$?
	[ "$got" = "$want" ] || fail "conflux $* exited $got, expected $want"
}

# req NAME EXPECTED-STATUS CURL-ARGS...: one HTTP request; the body in
# $T/NAME.out, the headers in $T/NAME.hdr, the status checked.
req() {
	name=$1
	want=$2
	shift 2
	got=$(curl -s -m 60 -o "$T/$name.out" -D "$T/$name.hdr" -w '%{http_code}' "$@")
	[ "$got" = "$want" ] || fail "curl $* answered $got, expected $want: $(cat "$T/$name.out")"
}

# header NAME FIELD VALUE: response header FIELD of request NAME is VALUE.
header() {
	v=$(tr -d '\r' <"$T/$1.hdr" | sed -n "s/^$2: //Ip" | head -n 1)
	[ "$v" = "$3" ] || fail "$1: header $2 is \"$v\", expected \"$3\""
}

# audit_count: how many messages the target topic audit-out holds (every queue).
audit_count() {
	n=0
	for q in 0 1 2 3 4 5 6 7; do
		c=$(curl -s "http://$HTTP/v1/messages?topic=audit-out&queue=$q&offset=0&count=100" |
			python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("messages", [])))' \
			2>/dev/null)
		n=$((n + ${c:-0}))
	done
	echo $n
}

# wait_audit N: waits until audit-out holds N messages (routing is asynchronous).
wait_audit() {
	i=0
	until [ "$(audit_count)" = "$1" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "audit-out holds $(audit_count) messages, expected $1"
		sleep 0.1
	done
}

it_start --http-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
	--mqtt-listen 127.0.0.1:0
it_addr HTTP http
U=http://$HTTP/v1/buses/orders/events

# --- Buses, targets, rules --------------------------------------------------
run bus_create 0 bus create orders --description "shop orders"
run bus_list 0 bus list --json
json "$T/bus_list.out" 'sorted(b["name"] for b in d["buses"]) == ["default", "orders"]'
run bus_list_table 0 bus list
grep -q "^orders  *0  *shop orders" "$T/bus_list_table.out" || fail "bus list table"
run bus_dup 1 bus create orders
grep -q "409" "$T/bus_dup.err" || fail "a second bus create is not 409"

run target_create 0 target create audit --type topic --topic audit-out --max-attempts 3
run target_bad 2 target create bad --type topic
run rule_create 0 rule create orders big \
	--pattern '{"type":["order.created"],"data":{"amount":[{"numeric":[">",100]}]}}' \
	--target audit
run rule_list 0 rule list orders --json
json "$T/rule_list.out" '[r["name"] for r in d["rules"]] == ["big"]'
run rule_describe 0 rule describe orders big
grep -q "numeric" "$T/rule_describe.out" || fail "rule describe shows no pattern"
run rule_unknown_target 1 rule create orders r2 --pattern '{"type":["x"]}' --target nope

# --- event put: one event matches, one does not -----------------------------
run put_match 0 event put orders --type order.created --source /shop --id m1 \
	--data '{"amount":150}' --ext region=eu
grep -q "put event m1 on bus orders" "$T/put_match.out" || fail "event put output"
run put_nomatch 0 event put orders --type order.created --source /shop --id n1 \
	--data '{"amount":50}'
run put_invalid 1 event put orders --type order.created --source 'not a uri' --id bad
wait_audit 1
curl -s "http://$HTTP/v1/messages?topic=audit-out&queue=0&offset=0" >"$T/audit0.out"
for q in 1 2 3 4 5 6 7; do
	curl -s "http://$HTTP/v1/messages?topic=audit-out&queue=$q&offset=0" >"$T/auditq.out"
	python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["messages"] else 1)' \
		"$T/auditq.out" && cp "$T/auditq.out" "$T/audit0.out"
done
json "$T/audit0.out" 'd["messages"][0]["properties"]["ce_id"] == "m1"'
json "$T/audit0.out" 'd["messages"][0]["properties"]["ce_region"] == "eu"'
json "$T/audit0.out" 'json.loads(d["messages"][0]["body"]) == {"amount": 150}'

# --- rule test ---------------------------------------------------------------
EV='{"specversion":"1.0","id":"1","source":"/s","type":"order.created","data":{"amount":7}}'
run test_yes 0 rule test --pattern '{"type":["order.created"]}' --event "$EV"
grep -qx "matches" "$T/test_yes.out" || fail "rule test: no \"matches\""
run test_no 1 rule test --pattern '{"data":{"amount":[{"numeric":[">",100]}]}}' --event "$EV"
grep -q "^does not match: " "$T/test_no.out" || fail "rule test: no reason"
run test_bad 1 rule test --pattern '{"type":"x"}' --event "$EV"

# --- HTTP ingress: binary, batch, errors -------------------------------------
# A pull group created now starts at the end of the bus.
req pull_empty 204 "$U?group=g1"
req bin 200 -X POST -H 'ce-specversion: 1.0' -H 'ce-id: b1' -H 'ce-source: /shop' \
	-H 'ce-type: order.created' -H 'ce-traceparent: a%20b' -H 'Content-Type: application/json' \
	--data-binary '{"amount": 500}' "$U"
json "$T/bin.out" 'd == {"accepted": 1}'
req batch 200 -X POST -H 'Content-Type: application/cloudevents-batch+json' --data-binary \
	'[{"specversion":"1.0","id":"c1","source":"/shop","type":"order.created","data":{"amount":101}},
	  {"specversion":"1.0","id":"c2","source":"/shop","type":"other"}]' "$U"
json "$T/batch.out" 'd == {"accepted": 2}'
req batch_bad 400 -X POST -H 'Content-Type: application/cloudevents-batch+json' --data-binary \
	'[{"specversion":"1.0","id":"x1","source":"/shop","type":"order.created","data":{"amount":999}},
	  {"specversion":"1.0","id":"x2","type":"t"}]' "$U"
json "$T/batch_bad.out" 'd["error"] == "bad_request" and "event 1" in d["reason"]'
req batch_empty 400 -X POST -H 'Content-Type: application/cloudevents-batch+json' \
	--data-binary '[]' "$U"
req bin_bad 400 -X POST -H 'ce-specversion: 1.0' -H 'ce-id: b2' -H 'ce-type: t' --data 'x' "$U"
req unsupported 415 -X POST -H 'Content-Type: application/cloudevents+xml' --data '<e/>' "$U"
req nobus 404 -X POST -H 'Content-Type: application/cloudevents+json' --data \
	'{"specversion":"1.0","id":"1","source":"/s","type":"t"}' "http://$HTTP/v1/buses/nope/events"
# b1 and c1 match the rule (m1 was routed before): 3 in the target topic, x1 never.
wait_audit 3

# --- Pull: several (a batch), one (binary mode), none (204), a long poll ----
req pull_batch 200 "$U?group=g1&max=10"
header pull_batch Content-Type application/cloudevents-batch+json
# The bus has 8 queues: the order across them is not the order of the puts.
json "$T/pull_batch.out" 'sorted(e["id"] for e in d) == ["b1", "c1", "c2"]'
json "$T/pull_batch.out" '[e for e in d if e["id"] == "b1"][0]["data"] == {"amount": 500}'
json "$T/pull_batch.out" '[e for e in d if e["id"] == "b1"][0]["traceparent"] == "a b"'
req put_one 200 -X POST -H 'Content-Type: application/cloudevents+json' --data \
	'{"specversion":"1.0","id":"s1","source":"/shop","type":"note","datacontenttype":"text/plain","data":"hello"}' "$U"
# Stored is not yet indexed: a short long poll waits for it.
req pull_one 200 "$U?group=g1&wait_ms=10000"
header pull_one ce-id s1
header pull_one ce-type note
header pull_one Content-Type text/plain
[ "$(cat "$T/pull_one.out")" = "hello" ] || fail "pull_one body: $(cat "$T/pull_one.out")"
req pull_none 204 "$U?group=g1&max=5"
req pull_head 405 -I "$U?group=g1"
req pull_nogroup 400 "$U"
# Long poll: an event put a second later ends it (well before wait_ms).
start=$(date +%s)
curl -s -m 30 -o "$T/lp.out" -D "$T/lp.hdr" "$U?group=g1&wait_ms=20000" &
LP=$!
sleep 1
req put_lp 200 -X POST -H 'Content-Type: application/cloudevents+json' --data \
	'{"specversion":"1.0","id":"lp1","source":"/shop","type":"late"}' "$U"
wait $LP || fail "the long poll failed"
[ $(($(date +%s) - start)) -lt 10 ] || fail "the long poll did not return when the event came"
header lp ce-id lp1
# Long poll with nothing coming: 204 at the deadline.
req lp_timeout 204 "$U?group=g1&wait_ms=500"

# --- Replay -------------------------------------------------------------------
before=$(audit_count)
run replay 0 bus replay orders --from 0 --to 2100-01-01T00:00:00Z --json
json "$T/replay.out" 'd["events"] >= 7 and d["deliveries"] == 3'
wait_audit $((before + 3))
run replay_rule 0 bus replay orders --from 0 --to 2100-01-01T00:00:00Z --rule big
grep -q "3 delivery" "$T/replay_rule.out" || fail "replay --rule output"
run replay_norule 1 bus replay orders --from 0 --to 2100-01-01T00:00:00Z --rule nope
run replay_usage 2 bus replay orders --from 0

# --- Metrics, describe, deletes ----------------------------------------------
curl -s "http://$HTTP/metrics" >"$T/metrics.out"
grep -q '^conflux_eventbridge_events_in_total [1-9]' "$T/metrics.out" || fail "events_in metric"
grep -q '^conflux_eventbridge_matches_total [1-9]' "$T/metrics.out" || fail "matches metric"
grep -q '^conflux_eventbridge_delivered_total [1-9]' "$T/metrics.out" || fail "delivered metric"
run target_describe 0 target describe audit --json
json "$T/target_describe.out" 'd["stats"]["delivered"] >= 3'
run target_in_use 1 target delete audit
run rule_delete 0 rule delete orders big
run target_delete 0 target delete audit
run bus_delete 0 bus delete orders
run bus_default 1 bus delete default

it_stop
echo "PASS: 16-eventbridge-cli"
