#!/bin/sh
# Memory of confluxd: idle on an empty store, then after recovering a store
# holding SIZE of data (default 10GiB). Prints VmRSS, RssAnon (heap and other
# anonymous memory) and RssFile (mapped files) in KiB.
#
#   bench/rss.sh [SIZE] [DIR]
set -eu

SIZE=${1:-10GiB}
DIR=${2:-./bench-data/rss}
BUILD=${BUILD:-build}

rss_of() { # pid
	awk '/^VmRSS|^RssAnon|^RssFile/ { printf "%s %s KiB  ", $1, $2 } END { print "" }' \
		"/proc/$1/status"
}

measure() { # label datadir
	log="$DIR/confluxd.log"
	"$BUILD/confluxd" --data-dir "$2" >"$log" 2>&1 &
	pid=$!
	i=0
	until grep -q "confluxd ready" "$log"; do
		i=$((i + 1))
		[ $i -gt 600 ] && { echo "confluxd did not start"; cat "$log"; kill $pid; exit 1; }
		sleep 0.1
	done
	sleep 2
	printf '%-40s ' "$1"
	rss_of $pid
	kill -TERM $pid
	wait $pid
}

rm -rf "$DIR"
mkdir -p "$DIR"
measure "idle, empty store:" "$DIR/empty"
"$BUILD/conflux" bench store --fill "$SIZE" --dir "$DIR/full" --keep
measure "idle, after recovering $SIZE:" "$DIR/full"
du -sh "$DIR/full"
rm -rf "$DIR"
