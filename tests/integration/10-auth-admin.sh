#!/bin/sh
# Authentication and policies of the admin API, driven through the conflux
# tool against a real confluxd (docs/security.md): open without users; the
# first user (a super user) switches authentication on; 401 with a hint
# without or with wrong credentials; Basic (--user/--password,
# --password-file, CONFLUX_USER/CONFLUX_PASSWORD) and Bearer tokens
# (CONFLUX_TOKEN); a normal user's policy allows exactly its actions (403
# for the rest, and for users and policies); deleting the policy denies
# again; a disabled user is refused; /metrics stays open to loopback and
# counts the failures and denials; users, tokens and policies survive a
# restart; meta/auth.json is private and holds no password or token; with
# allow_anonymous, clients that do not sign in get what "anonymous" policies
# grant (403 otherwise).
#
#   10-auth-admin.sh BUILD_DIR
#
# Password checks run on the server's auth thread; the tool simply waits
# for the answer, so nothing here depends on timing. JSON is checked with
# python3.
set -u
BUILD=$1
CLI=$BUILD/conflux
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
it_init auth
command -v python3 >/dev/null || fail "python3 is required to check JSON output"
command -v curl >/dev/null || fail "curl is required (tools/install-deps.sh installs it)"

ADMIN_PW='adm1n-Secret-pw'
ALICE_PW='al1ce-Secret-pw'
unset CONFLUX_USER CONFLUX_PASSWORD CONFLUX_TOKEN

# json FILE PYTHON-EXPR: the expression, over d = the JSON in FILE, must be true.
json() {
	python3 - "$1" "$2" <<'PY' || fail "JSON check failed on $1: $2"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text)
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
	timeout 60 "$CLI" "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null
	got=$?
	[ "$got" = "$want" ] || fail "$name: conflux $* exited $got, expected $want"
}

# has NAME PATTERN: $T/NAME.out or $T/NAME.err has a line matching PATTERN (grep -E).
has() {
	cat "$T/$1.out" "$T/$1.err" | grep -qE -- "$2" || fail "$1: no line matching '$2'"
}

# metric NAME-AND-LABELS: the sum of the samples whose line starts with it.
metric() {
	curl -s "http://$HTTP/metrics" | awk -v p="$1" 'index($0, p) == 1 { s += $NF } END { print s + 0 }'
}

start() {
	it_start --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --kafka-listen off \
		--mqtt-listen off "$@"
	it_addr HTTP http
	CONFLUX_SERVER=$HTTP
	export CONFLUX_SERVER
}

start

# No users: everything is open, and whoami says so.
run open-list 0 topic list
run open-whoami 0 whoami --json
json "$T/open-whoami.out" 'd == {"user": None, "super": True, "authentication": False}'

# The first user needs no credentials. Without a password and a terminal: exit 2.
run create-nopw 2 user create admin --super
has create-nopw 'stdin is not a terminal|password is missing'
run create-admin 0 user create admin --password "$ADMIN_PW" --super
has create-admin 'created user admin \(super\)'

# From now on the server asks who is calling.
run anon-list 1 topic list
has anon-list '401 unauthorized'
has anon-list '--user NAME.*--password'
has anon-list 'CONFLUX_TOKEN'
run admin-list 0 topic list --user admin --password "$ADMIN_PW"
run admin-global 0 --user admin --password "$ADMIN_PW" topic list
run wrong-pw 1 topic list --user admin --password wrong-password
has wrong-pw '401 unauthorized'
has wrong-pw 'credentials were refused'
run no-user 1 topic list --user nobody --password "$ADMIN_PW"
has no-user '401'
printf '%s\n' "$ADMIN_PW" >"$T/admin.pw"
run pw-file 0 topic list --user admin --password-file "$T/admin.pw"
CONFLUX_USER=admin CONFLUX_PASSWORD=$ADMIN_PW run env-basic 0 whoami --json
json "$T/env-basic.out" 'd == {"user": "admin", "super": True, "authentication": True}'
# Options win over the environment.
CONFLUX_USER=admin CONFLUX_PASSWORD=$ADMIN_PW run opt-wins 1 topic list --password wrong
has opt-wins '401'

# A token, shown once, works through CONFLUX_TOKEN and --token; a bad one is 401.
run token 0 user token admin --user admin --password "$ADMIN_PW"
TOKEN=$(cat "$T/token.out")
echo "$TOKEN" | grep -qxE '[0-9a-f]{64}' || fail "user token printed '$TOKEN'"
CONFLUX_TOKEN=$TOKEN run token-whoami 0 whoami
has token-whoami '^admin \(super user\)$'
run token-opt 0 topic list --token "$TOKEN"
run token-bad 1 topic list --token 0000000000000000000000000000000000000000000000000000000000000000
has token-bad '401'
# gRPC: produce and consume sign their calls with the user's password (a
# token only signs in to the admin API); without credentials: refused.
run grpc-produce 0 produce signed zero --user admin --password "$ADMIN_PW"
# The group starts at the end of the topic: consume first, then produce.
timeout 60 "$CLI" consume signed --group g-signed --count 2 --wait 5s \
	--user admin --password "$ADMIN_PW" >"$T/grpc-consume.out" 2>"$T/grpc-consume.err" </dev/null &
CONSUMER=$!
sleep 2
run grpc-produce2 0 produce signed one two --user admin --password "$ADMIN_PW"
wait $CONSUMER || fail "the signed consumer failed: $(cat "$T/grpc-consume.err")"
has grpc-consume 'one'
run grpc-anon 1 produce signed three
has grpc-anon '40100|UNAUTHORIZED|sign'

CONFLUX_TOKEN=$TOKEN
export CONFLUX_TOKEN

# A normal user with one policy: CREATE and GET on topic orders.
printf '%s\n' "$ALICE_PW" >"$T/alice.pw"
run create-alice 0 user create alice --password-file "$T/alice.pw"
has create-alice 'created user alice \(normal\)'
run user-list 0 user list
has user-list '^alice +normal +yes +0 '
has user-list '^admin +super +yes +1 '
run user-list-json 0 user list --json
json "$T/user-list-json.out" \
	'sorted((u["name"], u["role"], u["enabled"]) for u in d["users"]) == [("admin", "super", True), ("alice", "normal", True)]'
run acl-create 0 acl create --subject alice --resource topic:orders --actions CREATE,get
has acl-create 'created policy [0-9]+: allow alice CREATE,GET on topic:orders \(literal\)'
run acl-list 0 acl list --json
json "$T/acl-list.out" \
	'[(a["subject"], a["resource"], a["pattern"], a["actions"], a["source"], a["decision"]) for a in d["acls"]] == [("alice", "topic:orders", "literal", ["CREATE", "GET"], "", "allow")]'
ACL_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["acls"][0]["id"])' "$T/acl-list.out")

ALICE="--user alice --password-file $T/alice.pw"
run alice-whoami 0 whoami $ALICE
has alice-whoami '^alice \(normal user\)$'
run alice-create 0 topic create orders --queues 2 $ALICE
run alice-describe 0 topic describe orders $ALICE
run alice-create-other 1 topic create other $ALICE
has alice-create-other '403 forbidden: alice may not CREATE topic other'
has alice-create-other 'acl create'
run alice-delete 1 topic delete orders $ALICE
has alice-delete '403'
run alice-list 1 topic list $ALICE
has alice-list '403'
run alice-users 1 user list $ALICE
has alice-users '403'
has alice-users 'only super users'
run alice-acl 1 acl create --subject alice --resource cluster --actions ALL $ALICE
has alice-acl '403'
run admin-describe 0 topic describe orders

# Without the policy, alice is denied what she could do.
run acl-delete 0 acl delete "$ACL_ID"
has acl-delete "deleted policy $ACL_ID"
run acl-empty 0 acl list --subject alice --json
json "$T/acl-empty.out" 'd == {"acls": []}'
run alice-describe2 1 topic describe orders $ALICE
has alice-describe2 '403'
run acl-delete-again 1 acl delete "$ACL_ID"
has acl-delete-again '404'

# A policy that must survive the restart: prefixed, from loopback, deny.
run acl-create2 0 acl create --subject alice --resource topic:logs- --pattern prefixed \
	--actions PUB,SUB --source 127.0.0.0/8 --deny
has acl-create2 'deny alice PUB,SUB on topic:logs- \(prefixed\) from 127.0.0.0/8'

# A disabled user cannot sign in.
run alice-disable 0 user update alice --disable
has alice-disable 'enabled +no'
run alice-disabled 1 topic describe orders $ALICE
has alice-disabled '401'
run user-describe 0 user describe alice --json
json "$T/user-describe.out" 'd["name"] == "alice" and d["enabled"] is False and d["role"] == "normal"'

# /metrics: open to loopback without credentials, and it counted.
code=$(curl -s -o "$T/metrics.out" -w '%{http_code}' "http://$HTTP/metrics")
[ "$code" = 200 ] || fail "/metrics without credentials answered $code"
failures=$(metric 'conflux_auth_failures_total{protocol="http"}')
denials=$(metric 'conflux_auth_denials_total{protocol="http"')
[ "$failures" -gt 0 ] || fail "conflux_auth_failures_total{protocol=\"http\"} is $failures"
[ "$denials" -gt 0 ] || fail "conflux_auth_denials_total{protocol=\"http\",...} is $denials"
grep -q '^conflux_auth_password_checks_total ' "$T/metrics.out" ||
	fail "no conflux_auth_password_checks_total"
# Other routes are not open: curl without credentials is 401 with WWW-Authenticate.
curl -s -D "$T/curl-head.out" -o /dev/null "http://$HTTP/v1/status"
grep -q '^HTTP/1.1 401' "$T/curl-head.out" || fail "/v1/status without credentials: $(head -n1 "$T/curl-head.out")"
grep -qi '^WWW-Authenticate: .*Basic' "$T/curl-head.out" || fail "no WWW-Authenticate on a 401"

# The secrets are not in the files and not in any output of the tool.
[ "$(stat -c %a "$T/data/meta/auth.json")" = 600 ] ||
	fail "meta/auth.json has mode $(stat -c %a "$T/data/meta/auth.json")"
for secret in "$ADMIN_PW" "$ALICE_PW" "$TOKEN"; do
	grep -qF -- "$secret" "$T/data/meta/auth.json" && fail "meta/auth.json holds a secret"
	grep -qF -- "$secret" "$T/log" && fail "the server log holds a secret"
done
for f in "$T"/*.out "$T"/*.err; do
	[ "$f" = "$T/token.out" ] && continue
	grep -qF -- "$ADMIN_PW" "$f" && fail "$f shows the admin password"
	grep -qF -- "$ALICE_PW" "$f" && fail "$f shows alice's password"
	grep -qF -- "$TOKEN" "$f" && fail "$f shows the token"
done

# A restart keeps users, tokens and policies.
it_stop
start
CONFLUX_TOKEN= run r-anon2 1 topic list
has r-anon2 '401'
run r-token 0 whoami
has r-token '^admin \(super user\)$'
run r-basic 0 topic describe orders --user admin --password "$ADMIN_PW"
run r-users 0 user list --json
json "$T/r-users.out" \
	'sorted((u["name"], u["role"], u["enabled"], u["tokens"]) for u in d["users"]) == [("admin", "super", True, 1), ("alice", "normal", False, 0)]'
run r-acls 0 acl list --json
json "$T/r-acls.out" \
	'[(a["subject"], a["resource"], a["pattern"], a["actions"], a["source"], a["decision"]) for a in d["acls"]] == [("alice", "topic:logs-", "prefixed", ["PUB", "SUB"], "127.0.0.0/8", "deny")]'
run r-alice 1 topic describe orders $ALICE
has r-alice '401'
run r-enable 0 user update alice --enable --normal
run r-alice2 1 topic describe orders $ALICE
has r-alice2 '403'

# Deleting a user deletes its policies.
run r-delete 0 user delete alice
run r-acls2 0 acl list --json
json "$T/r-acls2.out" 'd == {"acls": []}'
run r-gone 1 user describe alice
has r-gone '404'

# allow_anonymous: clients that do not sign in are "anonymous", who may do
# only what policies for "anonymous" grant.
it_stop
start --allow-anonymous true
CONFLUX_TOKEN=
export CONFLUX_TOKEN
run an-list 1 topic list
has an-list '403'
has an-list 'anonymous'
run an-whoami 0 whoami --json
json "$T/an-whoami.out" 'd == {"user": None, "super": False, "authentication": True}'
run an-acl 0 acl create --subject anonymous --resource cluster --actions LIST --token "$TOKEN"
run an-list2 0 topic list
has an-list2 '^orders '
run an-describe 1 topic describe orders
has an-describe '403'
# Wrong credentials are still refused, not taken for anonymous.
run an-wrong 1 topic list --user admin --password wrong-password
has an-wrong '401'

it_stop
echo "PASS"
