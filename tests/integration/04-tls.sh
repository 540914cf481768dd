#!/bin/sh
# TLS on the listeners: certificates from a test CA made here with openssl;
# HTTPS admin requests, gRPC's ALPN h2, mutual TLS refusing a client without
# a certificate, plaintext refused on a TLS port, and a certificate reloaded
# on SIGHUP.
#
#   04-tls.sh BUILD_DIR
set -u
BUILD=$1
T=$(mktemp -d /tmp/cfx-tls-XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; [ -f "$T/log" ] && tail -20 "$T/log"; exit 1; }
cd "$T" || exit 1

# A CA, a server certificate for 127.0.0.1, a client certificate.
mkcert() { # name cn
	openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" \
		>/dev/null 2>&1 || fail "openssl req $1"
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
		-extfile "$1.ext" -out "$1.pem" >/dev/null 2>&1 || fail "openssl x509 $1"
}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 \
	-subj "/CN=conflux test CA" >/dev/null 2>&1 || fail "openssl CA"
mkcert server "conflux server one"
mkcert client "conflux client"
mkcert device "mqtt-device-1"

start() { # extra args...
	: >"$T/log"
	"$BUILD/confluxd" --data-dir "$T/data" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
		--kafka-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
		--grpc.tls_cert "$T/server.pem" --grpc.tls_key "$T/server.key" \
		--http.tls_cert "$T/server.pem" --http.tls_key "$T/server.key" \
		--kafka.tls_cert "$T/server.pem" --kafka.tls_key "$T/server.key" \
		--mqtt.tls_cert "$T/server.pem" --mqtt.tls_key "$T/server.key" "$@" \
		>"$T/log" 2>&1 &
	PID=$!
	i=0
	until grep -q "confluxd ready" "$T/log"; do
		i=$((i + 1))
		kill -0 $PID 2>/dev/null || fail "confluxd exited during start"
		[ $i -gt 300 ] && fail "confluxd did not become ready"
		sleep 0.1
	done
	GRPC=$(sed -n 's/.*gRPC API is on \(.*\)$/\1/p' "$T/log" | head -1)
	HTTP=$(sed -n 's/.*admin API and \/metrics are on \(.*\)$/\1/p' "$T/log" | head -1)
	KAFKA=$(sed -n 's/.*the Kafka protocol is on \(.*\)$/\1/p' "$T/log" | head -1)
	MQTT=$(sed -n 's/.*MQTT 3.1.1 and 5.0 are on \(.*\)$/\1/p' "$T/log" | head -1)
	[ -n "$GRPC" ] && [ -n "$HTTP" ] && [ -n "$KAFKA" ] && [ -n "$MQTT" ] ||
		fail "listener addresses not logged"
}

stop() {
	kill -TERM $PID
	wait $PID
	[ $? = 0 ] || fail "exit status"
	PID=
}

start
# HTTPS with the CA: the admin API answers.
curl -sf --cacert ca.pem "https://$HTTP/v1/status" | grep -q '"broker"' || fail "https status"
# gRPC: the handshake verifies and negotiates h2.
out=$(echo | openssl s_client -connect "$GRPC" -alpn h2 -CAfile ca.pem 2>&1)
echo "$out" | grep -q "ALPN protocol: h2" || fail "no ALPN h2: $out"
echo "$out" | grep -q "Verify return code: 0" || fail "certificate not verified"
# Plaintext on a TLS port gets no HTTP answer.
curl -s --max-time 5 "http://$HTTP/v1/status" | grep -q broker && fail "plaintext answered"
# MQTT over TLS: a publish reaches a subscriber; plaintext gets nowhere.
MP="-h 127.0.0.1 -p ${MQTT##*:} --cafile ca.pem"
command -v mosquitto_sub >/dev/null || fail "mosquitto_sub is required (tools/install-deps.sh)"
timeout 10 mosquitto_sub $MP -t tls/t -C 1 >mq.out 2>&1 &
SUB=$!
sleep 0.5
timeout 10 mosquitto_pub $MP -t tls/t -m secret -q 1 || fail "mosquitto_pub over TLS"
wait $SUB
[ "$(cat mq.out)" = "secret" ] || fail "MQTT over TLS: $(cat mq.out)"
timeout 5 mosquitto_pub -h 127.0.0.1 -p ${MQTT##*:} -t tls/t -m plain -q 1 2>/dev/null &&
	fail "plaintext MQTT accepted on a TLS port"
# Kafka over TLS: produce and consume with kcat (hostname verified: the SAN is 127.0.0.1).
command -v kcat >/dev/null || fail "kcat is required (tools/install-deps.sh)"
KS="-b $KAFKA -X security.protocol=ssl -X ssl.ca.location=ca.pem"
echo "over tls" | timeout 20 kcat $KS -t tlstopic -P || fail "kcat produce over TLS"
[ "$(timeout 20 kcat $KS -t tlstopic -C -o beginning -e -q)" = "over tls" ] ||
	fail "kcat consume over TLS"
timeout 10 kcat -b "$KAFKA" -L -m 3 >/dev/null 2>&1 && fail "plaintext Kafka accepted on a TLS port"

# A new certificate, re-read on SIGHUP: new connections see it.
mkcert server "conflux server two"
kill -HUP $PID
i=0
until grep -q "http TLS certificate reloaded" "$T/log"; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "no reload"
	sleep 0.1
done
echo | openssl s_client -connect "$HTTP" -CAfile ca.pem 2>/dev/null |
	grep -q "subject=CN = conflux server two" || fail "reloaded certificate not served"
stop

# Mutual TLS: a client without a certificate is refused, one with is served.
start --http.tls_client_ca "$T/ca.pem"
curl -s --max-time 5 --cacert ca.pem "https://$HTTP/v1/status" | grep -q broker &&
	fail "served without a client certificate"
curl -sf --cacert ca.pem --cert client.pem --key client.key "https://$HTTP/v1/status" |
	grep -q '"broker"' || fail "refused a client certificate"
stop

# MQTT with mutual TLS and users: a certificate whose common name is a user's
# name signs the client in as that user, without a password.
start --mqtt.tls_client_ca "$T/ca.pem"
api() { # method path body [user:password]
	curl -sf --cacert ca.pem ${4:+-u "$4"} -X "$1" -H 'Content-Type: application/json' \
		--data-binary "$3" "https://$HTTP$2" >/dev/null || fail "$1 $2"
}
api POST /v1/users '{"name":"admin","password":"pw-admin","role":"super"}'
api POST /v1/users '{"name":"mqtt-device-1","password":"unused-pw"}' admin:pw-admin
api POST /v1/acls '{"subject":"mqtt-device-1","resource":"topic:dev/","pattern":"prefixed","actions":["PUB","SUB"]}' admin:pw-admin
MD="-h 127.0.0.1 -p ${MQTT##*:} --cafile ca.pem --cert device.pem --key device.key"
timeout 10 mosquitto_sub $MD -t dev/t -C 1 >md.out 2>&1 &
SUB=$!
sleep 0.5
timeout 10 mosquitto_pub $MD -t dev/t -m by-cert -q 1 || fail "mosquitto_pub with a user's certificate"
wait $SUB
grep -q by-cert md.out || fail "the subscriber signed in by certificate got nothing: $(cat md.out)"
# Outside its policies: refused (3.1.1 has no negative PUBACK: the message is dropped).
timeout 10 mosquitto_sub $MD -t other/t -C 1 -W 2 -V 5 >mo.out 2>&1
grep -q "denied\|not authorised\|Not authorized" mo.out || fail "subscription outside the policy: $(cat mo.out)"
# A certificate that names no user, and no user name: not authorized.
timeout 10 mosquitto_pub -h 127.0.0.1 -p ${MQTT##*:} --cafile ca.pem --cert client.pem \
	--key client.key -t dev/t -m x -q 1 2>mc.err && fail "a certificate of no user was accepted"
grep -qi "not authori" mc.err || fail "refusal reason: $(cat mc.err)"
stop
echo ok
