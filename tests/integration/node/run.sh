#!/bin/sh
# Integration tests with the official RocketMQ 5 Node.js client against the
# confluxd of a build directory.
#
#   run.sh BUILD_DIR [TEST_FILE...]
#
# Installs the client from the committed package-lock.json (npm ci) when
# node_modules is missing or older than the lock file; that is the only
# network access. Then runs `node --test` on the numbered test files (all of
# them, or the ones given) with CONFLUXD=BUILD_DIR/confluxd. Exit status is
# non-zero when anything fails.
set -eu

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [TEST_FILE...]" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
shift
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
	npm ci --no-audit --no-fund
	touch node_modules
fi

if [ $# -eq 0 ]; then
	set -- [0-9][0-9]-*.test.mjs
fi

# The client writes stray log files under $HOME/logs/rocketmq (its push
# consumer ignores the logger it is given): keep them out of the real home.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cfx-node-home-XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
trap 'exit 130' INT TERM

# --test-force-exit: a client whose startup failed can leave its timers
# behind; the file's result is already known by then.
rc=0
CONFLUXD=${CONFLUXD:-$BUILD/confluxd} HOME=$SCRATCH \
	node --test --test-reporter=spec --test-force-exit --test-concurrency=2 "$@" || rc=$?
exit $rc
