#!/bin/sh
# tests/chaos/run-chaos.sh - the chaos run (issue 10 item 8) against the sanitizer build:
#   tests/chaos/run-chaos.sh [MINUTES] [chaos.py options...]     (default 10 minutes)
# WSGATE_BIN defaults to build-asan/src/wsgate (configure --enable-sanitizers). Needs
# redis-server, node with tests/node/node_modules (ws) and python3-websockets, like the
# integration suite. Prints the figures and "chaos: N passed, N failed"; exit 0 when all passed.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
minutes=${1:-10}
[ $# -gt 0 ] && shift
export WSGATE_BIN="${WSGATE_BIN:-$top/build-asan/src/wsgate}"
export WSGATE_SRCDIR="$top"
[ -x "$WSGATE_BIN" ] || { echo "run-chaos: $WSGATE_BIN not built (mkdir build-asan && cd build-asan && ../configure --enable-sanitizers && make)" >&2; exit 2; }
# As CI's sanitizer stage: a small quarantine so RSS measures wsgate rather than ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:quarantine_size_mb=4:thread_local_quarantine_size_kb=256}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec python3 "$top/tests/chaos/chaos.py" --minutes "$minutes" "$@"
