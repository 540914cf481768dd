# Shared by the integration scripts (sourced, POSIX sh): a scratch
# directory removed at exit, a confluxd started on it and waited for, the
# addresses it logged, and a failure report with the outputs and the log.
#
#   . "$(dirname "$0")/lib.sh"
#   it_init kafka                  # T=/tmp/cfx-it-kafka-XXXXXX, PID cleanup on exit
#   it_start --kafka-listen 127.0.0.1:0 ...   # extra confluxd arguments
#   it_addr KAFKA kafka            # KAFKA=host:port of kafka, mqtt, http or grpc

# it_init NAME: the scratch directory $T and the cleanup of $PID and $T.
it_init() {
	T=$(mktemp -d "/tmp/cfx-it-$1-XXXXXX")
	PID=
	trap 'it_cleanup' EXIT
}

it_cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	rm -rf "$T"
}

# fail MESSAGE: reports the test's outputs ($T/*.out, $T/*.err) and the
# server log, then exits 1.
fail() {
	echo "FAIL: $*"
	for f in "$T"/*.out "$T"/*.err; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
	done
	[ -f "$T/log" ] && { echo "--- server log"; tail -n 30 "$T/log"; }
	exit 1
}

# it_start ARGS...: starts $BUILD/confluxd on $T/data (log in $T/log) with
# the test defaults and ARGS, and waits until it is ready. Sets PID.
it_start() {
	: >"$T/log"
	"$BUILD/confluxd" --data-dir "$T/data" --store.segment_bytes 32MiB \
		--store.populate_ahead 0 "$@" >"$T/log" 2>&1 &
	PID=$!
	i=0
	until grep -q "confluxd ready" "$T/log"; do
		i=$((i + 1))
		kill -0 $PID 2>/dev/null || fail "confluxd exited during start"
		[ $i -gt 300 ] && fail "confluxd did not become ready"
		sleep 0.1
	done
}

# it_addr VAR kafka|mqtt|http|grpc: sets VAR to the host:port that
# listener logged.
it_addr() {
	case $2 in
	kafka) pat='the Kafka protocol is on' ;;
	mqtt) pat='MQTT 3.1.1 and 5.0 are on' ;;
	http) pat='the admin API and \/metrics are on' ;;
	grpc) pat='gRPC API is on' ;;
	*) fail "it_addr: unknown listener $2" ;;
	esac
	a=$(sed -n "s/.*$pat \\([0-9.]*:[0-9]*\\).*/\\1/p" "$T/log" | tail -n 1)
	[ -n "$a" ] || fail "no $2 address in the server log"
	eval "$1=\$a"
}

# it_stop: SIGTERM, and the exit status must be 0.
it_stop() {
	kill -TERM $PID
	wait $PID || fail "confluxd exit status $? after SIGTERM"
	PID=
}
