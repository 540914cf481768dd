#!/usr/bin/env bash
# run-fuzzers.sh - runs every libFuzzer target of tests/fuzz for a while.
#
#   tests/fuzz/run-fuzzers.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR is a build configured with -DCFX_FUZZ=ON (`make fuzz` uses
# build-fuzz). Each target runs for SECONDS on its scratch corpus
# (BUILD_DIR/tests/fuzz/scratch/<target>, kept between runs so the work
# accumulates) plus the committed seeds (tests/fuzz/corpus/<target>, only
# read), with its dictionary. Crash, leak, timeout and out-of-memory inputs
# go to tests/fuzz/artifacts/ (gitignored). The committed corpus is never
# modified: README.md says how to merge new coverage or add a crasher.
#
# Exit status: 0 if no target failed, 1 if any found a problem, 2 on misuse.
set -u

here=$(cd "$(dirname "$0")" && pwd)
targets_all=(fuzz_entry fuzz_batch fuzz_compress fuzz_recovery fuzz_grpc fuzz_http fuzz_sqlfilter fuzz_pop_journal fuzz_lq_journal fuzz_kafka_codec fuzz_kafka fuzz_mqtt_packet fuzz_mqtt fuzz_ws)

if [ $# -lt 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
	exit 2
fi
build=$1
seconds=$2
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${targets_all[@]}")
case $seconds in
'' | *[!0-9]*)
	echo "$0: SECONDS must be a whole number" >&2
	exit 2
	;;
esac

artifacts=$here/artifacts
mkdir -p "$artifacts"
known=$(grep -cv '^\(#\|$\)' "$here/known-bugs.supp" 2>/dev/null || true)
[ "${known:-0}" -gt 0 ] && echo "note: $known known bug(s) suppressed, see $here/known-bugs.supp"

# Largest input per target: the recovery target needs room for a whole
# segment (8 KiB) and its preamble; decoders are fine with less.
max_len() {
	case $1 in
	fuzz_recovery) echo 20000 ;;
	fuzz_ws) echo 12000 ;; # past the 8 KiB header limit
	*) echo 8192 ;;
	esac
}

# UBSan findings are crashes too, except the known, not yet fixed ones listed
# in known-bugs.supp (each with its reproducer in crashers/); leaks are
# reported by ASan for every input.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$here/known-bugs.supp}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

failed=()
for t in "${targets[@]}"; do
	bin=$build/tests/fuzz/$t
	if [ ! -x "$bin" ]; then
		echo "$0: $bin is missing: configure $build with -DCFX_FUZZ=ON and build it" >&2
		exit 2
	fi
	scratch=$build/tests/fuzz/scratch/$t
	mkdir -p "$scratch"
	log=$build/tests/fuzz/$t.log
	echo "== $t: ${seconds}s, log in $log"
	"$bin" \
		-max_total_time="$seconds" \
		-timeout=10 \
		-rss_limit_mb=2048 \
		-max_len="$(max_len "$t")" \
		-dict="$here/$t.dict" \
		-artifact_prefix="$artifacts/$t-" \
		-print_final_stats=1 \
		"$scratch" "$here/corpus/$t" >"$log" 2>&1
	rc=$?
	grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" | sed 's/^/   /'
	if [ $rc -ne 0 ]; then
		echo "   FAILED (exit $rc): see $log"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz check failed|.*runtime error)' "$log" | head -5 | sed 's/^/   /'
		failed+=("$t")
	fi
done

if [ ${#failed[@]} -ne 0 ]; then
	echo "fuzzers that found problems: ${failed[*]} (inputs in $artifacts)"
	exit 1
fi
echo "all fuzzers ran clean"
