#!/bin/sh
# fuzz/run-fuzzers.sh - builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and runs
# each for SECONDS on a temporary copy of its seed corpus with its dictionary. Exits non-zero at
# the first crash, leak, timeout or sanitizer report; the input that did it is kept and named.
#   fuzz/run-fuzzers.sh [SECONDS] [TARGET...]      (default 20 s, 0 = build only; targets:
#                                                    every fuzz/fuzz_<target>.c)
# Environment: FUZZ_BUILD_DIR (default <srcdir>/build-fuzz), FUZZ_JOBS (make -j).
set -eu

secs=${1:-20}
[ $# -gt 0 ] && shift
top=$(cd "$(dirname "$0")/.." && pwd)
# Default: every fuzz/fuzz_<target>.c (each needs its rule in Makefile.am's FUZZING block).
all=""
for f in "$top"/fuzz/fuzz_*.c; do
	t=${f##*/fuzz_}
	all="$all ${t%.c}"
done
targets=${*:-$all}
build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

case "$secs" in
''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
command -v clang >/dev/null 2>&1 || { echo "run-fuzzers: clang not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi)
mkdir -p "$build"
cd "$build"
if [ ! -f Makefile ] || ! grep -q -- '--enable-fuzzing' config.status 2>/dev/null; then
	"$top/configure" --enable-fuzzing CC=clang >configure.log 2>&1 ||
	    { cat configure.log >&2; echo "run-fuzzers: configure failed" >&2; exit 1; }
fi
progs=""
for t in $targets; do
	progs="$progs fuzz/fuzz_$t"
done
# Only the fuzzers: the rest of the tree is not needed here.
make -j"$jobs" $progs >make.log 2>&1 || { tail -50 make.log >&2; echo "run-fuzzers: build failed" >&2; exit 1; }
if [ "$secs" -eq 0 ]; then
	echo "run-fuzzers: built$progs in $build (0 s: nothing run)"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-fuzz.XXXXXX")
keep=0
cleanup() { [ "$keep" -eq 1 ] || rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
	corpus="$work/corpus-$t"
	mkdir -p "$corpus" "$work/artifacts-$t"
	# A copy: what the fuzzer finds must not land in the source tree.
	if [ -d "$top/fuzz/corpus/$t" ]; then
		cp "$top/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
	fi
	dict=""
	[ -f "$top/fuzz/$t.dict" ] && dict="-dict=$top/fuzz/$t.dict"
	# fuzz/<target>.options: extra libFuzzer flags, one line (later flags win), e.g. a longer
	# -timeout for a target that talks to itself over loopback (fuzz_redis).
	opts=""
	[ -f "$top/fuzz/$t.options" ] && opts=$(cat "$top/fuzz/$t.options")
	log="$work/$t.log"
	printf 'fuzz_%s: %ss ... ' "$t" "$secs"
	# shellcheck disable=SC2086 # $dict is empty or one word, $opts is split on purpose
	if "./fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -max_len=16384 -print_final_stats=1 -artifact_prefix="$work/artifacts-$t/" \
	    $dict $opts "$corpus" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
		echo "ok (${runs:-?} runs, corpus $(ls "$corpus" | wc -l) inputs)"
	else
		echo "FAILED"
		tail -60 "$log" >&2
		for a in "$work/artifacts-$t"/*; do
			[ -f "$a" ] && echo "run-fuzzers: reproduce with $build/fuzz/fuzz_$t $a" >&2
		done
		failed="$failed $t"
		keep=1
	fi
done

if [ -n "$failed" ]; then
	echo "run-fuzzers: failures in:$failed (inputs and logs kept in $work)" >&2
	exit 1
fi
echo "run-fuzzers: all targets ran ${secs}s without a finding"
