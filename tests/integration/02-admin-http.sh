#!/usr/bin/env bash
# The admin HTTP API and /metrics of a real confluxd, driven with curl:
# every route (status, topics, groups, positions and resets, messages by
# offset, time, id and key), their error answers, HTTP/1.1 behaviour
# (keep-alive, limits, malformed requests), and the metric names. Messages
# are produced and consumed over the gRPC API with curl too (HTTP/2 prior
# knowledge; the protobuf bytes are put together below), so that positions,
# lag and the traffic counters have something to show.
#
#   02-admin-http.sh BUILD_DIR
set -u
BUILD=$1
T=$(mktemp -d /tmp/cfx-it-XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	[ -f "$T/log" ] && tail -n 30 "$T/log"
	exit 1
}
command -v curl >/dev/null || fail "curl is required (tools/install-deps.sh installs it)"

# ---------------------------------------------------------------------------
# The server, on ports the system picks (read back from its log)
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
GRPC=$(sed -n 's/.*gRPC API is on \([0-9.]*:[0-9]*\).*/\1/p' "$T/log")
[ -n "$HTTP" ] && [ -n "$GRPC" ] || fail "no bound ports in the log"
URL=http://$HTTP

# ---------------------------------------------------------------------------
# Helpers: one request, then checks of its status and body
# ---------------------------------------------------------------------------
# req METHOD PATH [JSON-BODY [CONTENT-TYPE]]: sets CODE, BODY, LAST
req() {
	local out
	LAST="$1 $2"
	if [ $# -ge 3 ]; then
		out=$(curl -s -X "$1" -H "Content-Type: ${4:-application/json}" --data-binary "$3" \
			-w '\n%{http_code}' "$URL$2") || fail "$LAST: curl failed"
	else
		out=$(curl -s -X "$1" -w '\n%{http_code}' "$URL$2") || fail "$LAST: curl failed"
	fi
	CODE=${out##*$'\n'}
	BODY=${out%$'\n'*}
}

# expect STATUS [SUBSTRING...]: the last answer had STATUS and contains each SUBSTRING
expect() {
	local want=$1 s
	shift
	[ "$CODE" = "$want" ] || fail "$LAST: status $CODE, expected $want: $BODY"
	for s in "$@"; do
		case $BODY in
		*"$s"*) ;;
		*) fail "$LAST: \"$s\" not in $BODY" ;;
		esac
	done
}

# lacks SUBSTRING: the last answer does not contain it
lacks() {
	case $BODY in
	*"$1"*) fail "$LAST: unexpected \"$1\" in $BODY" ;;
	esac
}

# ---------------------------------------------------------------------------
# Protobuf for the gRPC calls, as hex strings (field numbers from
# src/proto/grpc/proto/apache/rocketmq/v2/*.proto)
# ---------------------------------------------------------------------------
hexstr() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
varint() {
	local v=$1 out=""
	while [ "$v" -ge 128 ]; do
		out="$out$(printf '%02x' $(((v & 127) | 128)))"
		v=$((v >> 7))
	done
	printf '%s%02x' "$out" "$v"
}
pb_bytes() { printf '%s%s%s' "$(varint $((($1 << 3) | 2)))" "$(varint $((${#2} / 2)))" "$2"; }
pb_str() { pb_bytes "$1" "$(hexstr "$2")"; }
pb_int() { printf '%s%s' "$(varint $(($1 << 3)))" "$(varint "$2")"; }

# grpc METHOD HEX-MESSAGE: one call; the response's bytes (hex) in RESP
grpc() {
	local msg=$2
	printf '%b' "$(printf '00%08x%s' $((${#msg} / 2)) "$msg" | sed 's/../\\x&/g')" >"$T/req.bin"
	curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
		-H 'x-mq-client-id: it-02-admin-http' --max-time 10 --data-binary @"$T/req.bin" \
		-D "$T/grpc.hdr" -o "$T/resp.bin" "http://$GRPC/apache.rocketmq.v2.MessagingService/$1" ||
		fail "gRPC $1: curl failed"
	grep -qi '^grpc-status: 0' "$T/grpc.hdr" || fail "gRPC $1: $(cat "$T/grpc.hdr")"
	RESP=$(od -An -v -tx1 "$T/resp.bin" | tr -d ' \n')
}

# send TOPIC ID TAG KEY BODY-HEX: SendMessage of one NORMAL message with property color=blue
send() {
	local sp m
	sp="$(pb_str 1 "$3")$(pb_str 2 "$4")$(pb_str 2 common)$(pb_str 3 "$2")$(pb_int 6 1)"
	sp="$sp$(pb_bytes 7 "$(pb_int 1 1700000000)")"
	m="$(pb_bytes 1 "$(pb_str 2 "$1")")$(pb_bytes 2 "$(pb_str 1 color)$(pb_str 2 blue)")"
	m="$m$(pb_bytes 3 "$sp")$(pb_bytes 4 "$5")"
	grpc SendMessage "$(pb_bytes 1 "$m")"
	# SendMessageResponse.status.code = OK (20000): 0a LL 08 a0 9c 01
	case $RESP in
	00????????0a??08a09c01*) ;;
	*) fail "SendMessage to $1 was not OK: $RESP" ;;
	esac
}

# receive GROUP TOPIC: ReceiveMessage (batch 32, invisible 60 s, long poll 1 s)
receive() {
	local q
	q="$(pb_bytes 1 "$(pb_str 2 "$1")")$(pb_bytes 2 "$(pb_bytes 1 "$(pb_str 2 "$2")")")"
	q="$q$(pb_int 4 32)$(pb_bytes 5 "$(pb_int 1 60)")$(pb_bytes 7 "$(pb_int 1 1)")"
	grpc ReceiveMessage "$q"
}

# ---------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------
req GET /v1/status
expect 200 '"version":"' '"broker":"conflux"' '"uptime_ms":' \
	"\"listeners\":{\"grpc\":\"$GRPC\",\"http\":\"$HTTP\"}" '"store":{"log_start":' \
	'"written_pos":' '"flushed_pos":' '"dispatched_pos":' '"log_bytes":' '"segments":1' \
	'"queues":'

# ---------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------
req POST /v1/topics '{"name":"orders","type":"normal","queues":1}'
expect 201 '{"name":"orders","type":"normal","queues":1,"created_ms":'
req POST /v1/topics '{"name":"events","type":"FIFO","queues":2}'
expect 201 '"name":"events","type":"fifo","queues":2'
req POST /v1/topics '{"name":"plain"}'
expect 201 '"name":"plain","type":"normal","queues":8'
req POST /v1/topics '{"name":"orders","type":"normal","queues":1}'
expect 409 '"error":"conflict"' 'already exists'
req POST /v1/topics '{"name":"bad name!","type":"normal","queues":1}'
expect 400 '"error":"bad_request"' 'invalid topic name'
req POST /v1/topics '{"name":"t2","type":"weird","queues":1}'
expect 400 'type\" must be normal, fifo'
req POST /v1/topics '{"name":"t2","type":"normal","queues":0}'
expect 400 'queues\" must be an integer from 1'
req POST /v1/topics '{"name":"t2","type":"normal","queues":100000}'
expect 400 'queues_per_topic_max'
req POST /v1/topics '{"name":"t2","queues":"4"}'
expect 400 'queues\" must be an integer'
req POST /v1/topics '{"name":"t2","queue":4}'
expect 400 'unknown field \"queue\"'
req POST /v1/topics '{"queues":4}'
expect 400 '"name\" is required'
req POST /v1/topics '{"name":"t2",'
expect 400 'malformed JSON'
req POST /v1/topics '["t2"]'
expect 400 'must be a JSON object'
req POST /v1/topics '{"name":"t2"}' text/plain
expect 415 '"error":"unsupported_media_type"'
req POST /v1/topics
expect 400 'a JSON object is required'

req GET /v1/topics
# Sorted by name; "default" is the EventBridge's default bus (docs/eventbridge.md).
expect 200 '{"topics":[{"name":"default","type":"normal","queues":8,"created_ms":' \
	'{"name":"events","type":"fifo","queues":2,"created_ms":' \
	'{"name":"orders","type":"normal","queues":1,' '{"name":"plain",'
req GET /v1/topics/orders
expect 200 '"name":"orders"' '"queue_offsets":[{"queue":0,"start_offset":0,"end_offset":0}]'
req GET /v1/topics/nope
expect 404 '"error":"not_found"' 'topic \"nope\" does not exist'
req GET /v1/topics/bad%20name
expect 400 'invalid topic name'
req GET /v1/topics/bad%zz
expect 400 'malformed name'

req PATCH /v1/topics/events '{"queues":4}'
expect 200 '"name":"events","type":"fifo","queues":4'
req PATCH /v1/topics/events '{"type":"mixed"}'
expect 200 '"type":"mixed","queues":4'
req PATCH /v1/topics/events '{"queues":2}'
expect 400 'queues may only grow'
req PATCH /v1/topics/events '{"type":1}'
expect 400 'type\" must be a string'
req PATCH /v1/topics/nope '{"queues":9}'
expect 404
req DELETE /v1/topics/plain
expect 204
[ -z "$BODY" ] || fail "204 with a body: $BODY"
req GET /v1/topics/plain
expect 404
req DELETE /v1/topics/plain
expect 404
req PUT /v1/topics/orders '{}'
expect 405 '"error":"method_not_allowed"' 'GET, HEAD, PATCH, DELETE'
curl -s -D - -o /dev/null -X PUT "$URL/v1/topics/orders" | grep -qi '^Allow: GET, HEAD, PATCH, DELETE' ||
	fail "405 without an Allow header"
req GET /v1/nowhere
expect 404 'no such resource'
req GET /v1/topics/
expect 404

# ---------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------
req POST /v1/groups '{"name":"billing"}'
expect 201 '{"name":"billing","fifo":false,"retry":{"max_attempts":17,"kind":"customized","steps_ms":[1000,5000,' \
	'"created_ms":'
req POST /v1/groups \
	'{"name":"audit","fifo":true,"retry":{"kind":"exponential","max_attempts":5,"initial_ms":100,"max_ms":2000,"multiplier":3}}'
expect 201 '"name":"audit","fifo":true,"retry":{"max_attempts":5,"kind":"exponential","initial_ms":100,"max_ms":2000,"multiplier":3'
req POST /v1/groups '{"name":"billing"}'
expect 409
req POST /v1/groups '{"name":"x y"}'
expect 400 'invalid group name'
req POST /v1/groups '{"name":"g3","retry":{"kind":"linear"}}'
expect 400 'retry.kind'
req POST /v1/groups '{"name":"g3","retry":{"max_attempts":0}}'
expect 400 'max_attempts'
req POST /v1/groups '{"name":"g3","retry":{"kind":"exponential","initial_ms":500,"max_ms":100}}'
expect 400 'retry.max_ms'
req POST /v1/groups '{"name":"g3","retry":{"steps_ms":[]}}'
expect 400 'retry.steps_ms'
req POST /v1/groups '{"name":"g3","retry":{"kind":"customized","multiplier":2}}'
expect 400 'kind exponential'
req POST /v1/groups '{"name":"g3","fifo":"yes"}'
expect 400 'fifo\" must be true or false'
req GET /v1/groups
expect 200 '{"groups":[{"name":"audit","fifo":true,' '{"name":"billing","fifo":false,'
req PATCH /v1/groups/audit '{"fifo":false,"retry":{"kind":"customized","steps_ms":[10,20,30],"max_attempts":3}}'
expect 200 '"name":"audit","fifo":false,"retry":{"max_attempts":3,"kind":"customized","steps_ms":[10,20,30]}'
req PATCH /v1/groups/audit '{"retry":{"max_attempts":4}}'
expect 200 '"retry":{"max_attempts":4,"kind":"customized","steps_ms":[10,20,30]}'
req PATCH /v1/groups/nope '{"fifo":true}'
expect 404 'group \"nope\" does not exist'
req GET /v1/groups/billing
expect 200 '"name":"billing"' '"topics":[]'
req GET /v1/groups/nope
expect 404
req DELETE /v1/groups/audit
expect 204
req GET /v1/groups/audit
expect 404

# ---------------------------------------------------------------------------
# Messages: three into "orders" over gRPC, one of them not UTF-8
# ---------------------------------------------------------------------------
T0=$(($(date +%s) * 1000 - 1000))
send orders MSG-A tagA key-a "$(hexstr 'hello world')"
send orders MSG-B tagB key-b "$(hexstr '{"n":2}')"
send orders MSG-C tagC key-c ff00fe

req GET '/v1/messages?topic=orders&queue=0&offset=0&count=10'
expect 200 '{"messages":[{"topic":"orders","queue":0,"offset":0,"msg_id":"MSG-A","tag":"tagA","keys":["key-a","common"],"born_ms":1700000000000,"store_ms":' \
	'"properties":{"color":"blue"},"body":"hello world","body_base64":"aGVsbG8gd29ybGQ="}' \
	'"offset":1,"msg_id":"MSG-B"' '"body":"{\"n\":2}"' \
	'"offset":2,"msg_id":"MSG-C","tag":"tagC","keys":["key-c","common"]' \
	'"properties":{"color":"blue"},"body_base64":"/wD+"}' '"next_offset":3'
req GET '/v1/messages?topic=orders&queue=0&offset=1'
expect 200 '"msg_id":"MSG-B"' '"next_offset":2'
lacks MSG-C
req GET '/v1/messages?topic=orders&queue=0&offset=3'
expect 200 '{"messages":[],"next_offset":3}'
req GET '/v1/messages?topic=orders&queue=0&offset=4'
expect 404 'outside the stored offsets'
req GET "/v1/messages?topic=orders&queue=0&time_ms=$T0&count=2"
expect 200 '"msg_id":"MSG-A"' '"msg_id":"MSG-B"'
lacks MSG-C
req GET '/v1/messages?topic=orders&queue=0&time_ms=99999999999999'
expect 200 '"messages":[]'
req GET '/v1/messages?id=MSG-B'
expect 200 '{"messages":[{"topic":"orders","queue":0,"offset":1,"msg_id":"MSG-B"'
req GET '/v1/messages?id=NO-SUCH-ID'
expect 200 '{"messages":[]}'
req GET '/v1/messages?topic=orders&key=common&count=2'
expect 200 '"msg_id":"MSG-C"' '"msg_id":"MSG-B"'
lacks MSG-A
req GET '/v1/messages?topic=orders&key=key-a'
expect 200 '"msg_id":"MSG-A"'
lacks MSG-B
req GET /v1/messages
expect 400 'give ?id=ID'
req GET '/v1/messages?topic=orders&queue=0'
expect 400 'give ?id=ID'
req GET '/v1/messages?topic=orders&queue=0&offset=0&time_ms=1'
expect 400
req GET '/v1/messages?topic=orders&queue=0&offset=-1'
expect 400 'offset\" must be an integer'
req GET '/v1/messages?topic=orders&queue=0&offset=0&count=1000'
expect 400 'count\" must be an integer from 1 to 100'
req GET '/v1/messages?id=MSG-A&colour=red'
expect 400 'unknown query parameter'
req GET '/v1/messages?id=MSG-A&id=MSG-B'
expect 400 'given twice'
req GET '/v1/messages?topic=bad!&key=k'
expect 400 'invalid topic name'
req GET '/v1/topics/orders'
expect 200 '"queue_offsets":[{"queue":0,"start_offset":0,"end_offset":3}]'

# ---------------------------------------------------------------------------
# Group positions: reset, consume, lag
# ---------------------------------------------------------------------------
req POST /v1/groups/billing/reset '{"topic":"orders","offset":0}'
expect 200 '{"group":"billing","topic":"orders","queues":[{"queue":0,"committed":0,"next":0,"inflight":0,"end":3,"lag":3}],"lag":3}'
req POST /v1/groups/billing/reset '{"topic":"orders","offset":-1}'
expect 200 '"committed":3,"next":3,"inflight":0,"end":3,"lag":0'
req POST /v1/groups/billing/reset "{\"topic\":\"orders\",\"timestamp_ms\":$T0}"
expect 200 '"committed":0,"next":0,"inflight":0,"end":3,"lag":3'
req POST /v1/groups/billing/reset '{"topic":"orders","offset":1,"timestamp_ms":5}'
expect 400 'exactly one of'
req POST /v1/groups/billing/reset '{"offset":1}'
expect 400 'exactly one of'
req POST /v1/groups/billing/reset '{"topic":"nope","offset":0}'
expect 404 'topic \"nope\"'
req POST /v1/groups/nope/reset '{"topic":"orders","offset":0}'
expect 404 'group \"nope\"'
req GET /v1/groups/billing/reset
expect 405

receive billing orders
req GET /v1/groups/billing
expect 200 '"topics":[{"topic":"orders","queues":[{"queue":0,"committed":0,"next":3,"inflight":3,"end":3,"lag":3}],"lag":3}]'

# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
curl -s -D "$T/mhdr" -o "$T/metrics" "$URL/metrics" || fail "GET /metrics"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$T/mhdr" || fail "metrics content type"
for m in \
	'conflux_build_info{version="' \
	'process_start_time_seconds ' \
	'process_resident_memory_bytes ' \
	'conflux_connections_open{protocol="http"} ' \
	'conflux_connections_open{protocol="grpc"} ' \
	'conflux_connections_accepted_total{protocol="grpc"} ' \
	'conflux_connections_refused_total{protocol="http"} 0' \
	'conflux_topics 3' \
	'conflux_groups 1' \
	'conflux_topic_messages_in_total{topic="orders"} 3' \
	'conflux_topic_bytes_in_total{topic="orders"} 21' \
	'conflux_topic_messages_out_total{topic="orders"} 3' \
	'conflux_topic_bytes_out_total{topic="orders"} 21' \
	'conflux_topic_messages_in_total{topic="events"} 0' \
	'conflux_group_lag_messages{group="billing",topic="orders"} 3' \
	'conflux_group_inflight_messages{group="billing",topic="orders"} 3' \
	'conflux_store_log_bytes ' \
	'conflux_store_segments 1' \
	'conflux_store_queues ' \
	'conflux_store_position_bytes{position="written"} ' \
	'conflux_store_position_bytes{position="flushed"} ' \
	'conflux_store_position_bytes{position="dispatched"} ' \
	'conflux_store_position_bytes{position="log_start"} 0' \
	'conflux_store_appends_total 3' \
	'conflux_store_appended_messages_total 3' \
	'conflux_store_fsyncs_total ' \
	'conflux_store_read_only 0' \
	'conflux_store_append_duration_seconds_bucket{le="0.000001"} ' \
	'conflux_store_append_duration_seconds_bucket{le="+Inf"} 3' \
	'conflux_store_append_duration_seconds_count 3' \
	'conflux_store_append_duration_seconds_sum ' \
	'conflux_store_flush_duration_seconds_bucket{le="10"} ' \
	'conflux_store_flush_duration_seconds_count ' \
	'# TYPE conflux_store_flush_duration_seconds histogram' \
	'conflux_delayed_messages_pending 0' \
	'conflux_transactions_open 0' \
	'# TYPE conflux_timer_wheel_bytes gauge' \
	'# TYPE conflux_topic_messages_in_total counter' \
	'# TYPE conflux_group_lag_messages gauge'; do
	grep -qF "$m" "$T/metrics" || fail "metric line \"$m\" missing"
done
# HEAD: the headers of GET, no body.
curl -s -I "$URL/metrics" >"$T/head" || fail "HEAD /metrics"
grep -q '^HTTP/1.1 200' "$T/head" && grep -qi '^Content-Length: [1-9]' "$T/head" ||
	fail "HEAD /metrics: $(cat "$T/head")"
# Every sample line is NAME[{labels}] VALUE, with a number for the value.
bad=$(grep -v '^#' "$T/metrics" | grep -Ev '^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$' | head -3)
[ -z "$bad" ] || fail "malformed metric lines: $bad"

# ---------------------------------------------------------------------------
# HTTP/1.1: keep-alive, limits, malformed requests
# ---------------------------------------------------------------------------
curl -sv "$URL/v1/status" "$URL/metrics" -o /dev/null -o /dev/null 2>"$T/v" || fail "keep-alive"
grep -q 'Re-using existing connection' "$T/v" || fail "keep-alive: the connection was not reused"
# A body over 1 MiB: 413 before the body is read.
head -c 1100000 /dev/zero | tr '\0' 'a' >"$T/big"
code=$(curl -s -o "$T/b" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary @"$T/big" "$URL/v1/topics")
[ "$code" = 413 ] || fail "large body: $code"
grep -q '"error":"payload_too_large"' "$T/b" || fail "large body: $(cat "$T/b")"
# Headers over 16 KiB: 431.
code=$(curl -s -o "$T/b" -w '%{http_code}' -H "X-Big: $(head -c 17000 /dev/zero | tr '\0' b)" \
	"$URL/v1/status")
[ "$code" = 431 ] || fail "large headers: $code"
# A chunked upload: 411.
code=$(curl -s -o "$T/b" -w '%{http_code}' -H 'Content-Type: application/json' \
	-H 'Transfer-Encoding: chunked' --data-binary '{"name":"chunky"}' "$URL/v1/topics")
[ "$code" = 411 ] || fail "chunked body: $code"
req GET /v1/topics/chunky
expect 404
# Raw bytes over a socket: garbage is answered with 400, then the server closes.
raw() {
	local host=${HTTP%:*} port=${HTTP##*:}
	exec 3<>"/dev/tcp/$host/$port" || fail "cannot connect to $HTTP"
	printf '%b' "$1" >&3
	timeout 5 cat <&3 >"$T/raw"
	local rc=$?
	exec 3<&-
	[ $rc = 0 ] || fail "the server did not close the connection after: $1"
}
raw 'HELLO WORLD\r\n\r\n'
grep -q '^HTTP/1.1 400 Bad Request' "$T/raw" || fail "garbage: $(cat "$T/raw")"
grep -q '^Connection: close' "$T/raw" || fail "garbage: no Connection: close"
# Two pipelined requests, the second asking to close: two answers in order, then EOF.
raw 'GET /v1/topics/orders HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/groups/billing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
[ "$(grep -c '^HTTP/1.1 200 OK' "$T/raw")" = 2 ] || fail "pipelining: $(cat "$T/raw")"
grep -q '"name":"orders"' "$T/raw" && grep -q '"name":"billing"' "$T/raw" || fail "pipelining bodies"
raw 'GET /v1/status HTTP/2.0\r\n\r\n'
grep -q '^HTTP/1.1 505' "$T/raw" || fail "HTTP/2.0 request line: $(cat "$T/raw")"

# ---------------------------------------------------------------------------
# Shutdown: clean, and the server still answered everything above
# ---------------------------------------------------------------------------
grep -q 'ERROR' "$T/log" && fail "errors in the log"
kill -TERM $PID
wait $PID
rc=$?
PID=
[ $rc = 0 ] || fail "exit status $rc after SIGTERM"
grep -q "flushed and checkpointed" "$T/log" || fail "no clean shutdown"
echo "ok"
