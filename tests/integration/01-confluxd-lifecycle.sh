#!/bin/sh
# confluxd starts with no config, shuts down cleanly on SIGTERM and SIGINT
# (exit 0), reports a clean restart, recovers after kill -9, and refuses bad
# settings with a clear message.
#
#   01-confluxd-lifecycle.sh BUILD_DIR
set -u
BUILD=$1
T=$(mktemp -d /tmp/cfx-it-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; [ -f "$T/log" ] && cat "$T/log"; exit 1; }

start() { # args...
	: >"$T/log"
	"$BUILD/confluxd" "$@" >"$T/log" 2>&1 &
	PID=$!
	i=0
	until grep -q "confluxd ready" "$T/log"; do
		i=$((i + 1))
		kill -0 $PID 2>/dev/null || fail "confluxd exited during start"
		[ $i -gt 300 ] && fail "confluxd did not become ready"
		sleep 0.1
	done
}

stop() { # signal; sets RC to the exit status
	kill -"$1" $PID
	wait $PID
	RC=$?
}

# Later starts use free ports, so that nothing else on the machine matters.
PORTS="--grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --kafka-listen off --mqtt-listen off"

# No config at all: data in ./data of the working directory, default ports.
cd "$T" || exit 1
start
[ -f "$T/data/checkpoint" ] || fail "no ./data/checkpoint"
grep -q "created a new store in ./data" "$T/log" || fail "no creation message"
stop TERM
[ $RC = 0 ] || fail "SIGTERM exit status ($RC)"
grep -q "flushed and checkpointed" "$T/log" || fail "no clean-shutdown message"

start --data-dir "$T/data" $PORTS
grep -q "last shutdown was clean" "$T/log" || fail "restart not seen as clean"
stop INT
[ $RC = 0 ] || fail "SIGINT exit status ($RC)"

start --data-dir "$T/data" $PORTS
kill -9 $PID
wait $PID 2>/dev/null
start --data-dir "$T/data" $PORTS
grep -q "recovered after an unclean shutdown" "$T/log" || fail "crash not seen as unclean"

# A second server on the same directory is refused.
"$BUILD/confluxd" --data-dir "$T/data" $PORTS >"$T/log2" 2>&1
rc=$?
[ $rc = 1 ] || fail "second instance exit status $rc"
grep -q "in use by another process" "$T/log2" || fail "second instance message"
stop TERM
[ $RC = 0 ] || fail "exit status after recovery ($RC)"

# A config file, with a command-line override winning over it.
cat >"$T/conflux.conf" <<CONF
# comment
data_dir = "$T/other"
store.segment_bytes = 32MiB
log.level = debug
CONF
start --config "$T/conflux.conf" --log-level info $PORTS
[ -f "$T/other/commitlog/00000000000000000000.seg" ] || fail "config data_dir not used"
[ "$(stat -c %s "$T/other/commitlog/00000000000000000000.seg")" = 33554432 ] ||
	fail "config segment size not used"
stop TERM
[ $RC = 0 ] || fail "exit status with config ($RC)"

# Settings the store cannot work with are explained.
"$BUILD/confluxd" --data-dir "$T/x" $PORTS --store.segment_bytes 8MiB >"$T/log" 2>&1
[ $? = 1 ] || fail "unusable segment size accepted"
grep -q "cannot hold the largest batch" "$T/log" || fail "unusable segment size message"

# Bad settings: exit status 2 and a message naming the setting.
"$BUILD/confluxd" --store.segment_bytes banana >"$T/log" 2>&1
[ $? = 2 ] || fail "bad value exit status"
grep -q "store.segment_bytes" "$T/log" || fail "bad value message"
"$BUILD/confluxd" --no-such-setting 1 >"$T/log" 2>&1
[ $? = 2 ] || fail "unknown setting exit status"
"$BUILD/confluxd" --help | grep -q "store.retention_time" || fail "--help lists settings"
echo "ok"
